//! Network by name: a sandboxed tree whose only way out is the supervisor's egress proxy.
//!
//! A session runs in "proxy mode" when its sandbox confines (not danger-full-access), its
//! network is off, and some rule could let something out (`network_rule` allow/prompt in
//! the rules files, `--allow-domain`). Its tree then gets a network namespace with only
//! loopback (`kernel::namespaces::net`); the proxy's listening socket lives on that
//! loopback, and the supervisor accepts on it from outside and connects upstream from its
//! own namespace ([`proxy`]). HTTP absolute-form requests, `CONNECT` tunnels (no TLS
//! interception) and SOCKS5 `CONNECT` are served; every connection is decided by the
//! rules ([`policy::network`]) and, whatever the names say, refused when the destination
//! is a loopback, private, link-local or metadata address not allowed by address
//! ([`address`]).
//!
//! Owns: the egress settings, the per-session proxy and its audit lines. Must never connect
//! anywhere a rule did not allow, and never give the tree the host's network instead.

pub mod address;
pub mod proxy;
mod socks5;

use std::collections::HashMap;
use std::net::IpAddr;

use policy::Decision;
use policy::network::{NetworkPolicy, NetworkRule};
use serde::Serialize;

/// The proxy's port on the tree's loopback (its own namespace: no other listener there).
pub const PROXY_PORT: u16 = 3128;

/// The egress flags: `--allow-domain`, `--deny-domain`, `--proxy-resolve`.
#[derive(Debug, Clone, Default)]
pub struct EgressOptions {
    /// `HOST[:PORT]` (`*.example.com` too) the tree may reach through the proxy.
    pub allow: Vec<String>,
    /// `HOST[:PORT]` the tree may never reach, whatever else allows it.
    pub deny: Vec<String>,
    /// `HOST=IP`: the proxy resolves HOST to IP instead of asking DNS (tests, offline
    /// mirrors). Does not allow anything by itself: a private IP still needs an allow
    /// rule naming it.
    pub resolve: Vec<String>,
}

/// Why the egress settings are refused.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error("{0}")]
    Flag(String),
    #[error(
        "--allow-domain needs a network namespace for the sandboxed tree, and none can be made \
         here: {0}\n(the network stays off; run `execgate doctor` for details)"
    )]
    NoNamespace(String),
}

/// The egress rules and resolutions of every session of a supervisor.
#[derive(Debug, Clone)]
pub struct Egress {
    pub(crate) policy: NetworkPolicy,
    pub(crate) resolve: HashMap<String, Vec<IpAddr>>,
    /// How the namespace is made here, or why it cannot be.
    pub(crate) namespace: Result<(), String>,
}

impl Egress {
    /// The rules files' `network_rule`s, then the flags (deny ones are kept whatever the
    /// order: the strictest rule wins). `namespace`: whether this host can make the tree's
    /// network namespace (and if not, why). Flags that allow something where no namespace
    /// can be made are an error; rules files alone then leave the network off.
    pub fn new(
        rules: &NetworkPolicy,
        options: &EgressOptions,
        namespace: Result<(), String>,
    ) -> Result<Egress, EgressError> {
        let mut policy = rules.clone();
        for raw in &options.allow {
            policy.push(
                NetworkRule::from_flag("--allow-domain", raw, Decision::Allow)
                    .map_err(EgressError::Flag)?,
            );
        }
        for raw in &options.deny {
            policy.push(
                NetworkRule::from_flag("--deny-domain", raw, Decision::Forbidden)
                    .map_err(EgressError::Flag)?,
            );
        }
        let mut resolve: HashMap<String, Vec<IpAddr>> = HashMap::new();
        for raw in &options.resolve {
            let (host, ip) = raw.split_once('=').ok_or_else(|| {
                EgressError::Flag(format!("--proxy-resolve {raw}: expected HOST=IP"))
            })?;
            let ip: IpAddr = ip.trim().parse().map_err(|_| {
                EgressError::Flag(format!(
                    "--proxy-resolve {raw}: `{ip}` is not an IP address"
                ))
            })?;
            resolve
                .entry(policy::network::normalize(host))
                .or_default()
                .push(ip);
        }
        if let Err(why) = &namespace
            && !options.allow.is_empty()
        {
            return Err(EgressError::NoNamespace(why.clone()));
        }
        if let Err(why) = &namespace
            && policy.opens_anything()
        {
            tracing::warn!(
                "network_rule allows hosts, but no network namespace can be made here ({why}): \
                 the network stays off"
            );
        }
        Ok(Egress {
            policy,
            resolve,
            namespace,
        })
    }

    /// Whether sessions with the network off get the proxy.
    pub fn proxied(&self) -> bool {
        self.namespace.is_ok() && self.policy.opens_anything()
    }

    pub fn rules(&self) -> &NetworkPolicy {
        &self.policy
    }
}

/// The variables that announce the proxy to the tree (both cases: curl reads only the
/// lower-case `http_proxy`, other tools only the upper-case forms).
pub fn proxy_env() -> Vec<(String, String)> {
    let http = format!("http://127.0.0.1:{PROXY_PORT}");
    let socks = format!("socks5h://127.0.0.1:{PROXY_PORT}");
    let no_proxy = "localhost,127.0.0.1,::1".to_owned();
    let mut env = Vec::new();
    for (name, value) in [
        ("HTTP_PROXY", &http),
        ("HTTPS_PROXY", &http),
        ("ALL_PROXY", &socks),
        ("NO_PROXY", &no_proxy),
    ] {
        env.push((name.to_owned(), value.clone()));
        env.push((name.to_ascii_lowercase(), value.clone()));
    }
    env
}

/// One connection through the proxy, as the audit log records it.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionRecord {
    /// Always `"network"`: tells these lines from exec records.
    pub kind: &'static str,
    pub session: u64,
    /// `http`, `connect` or `socks5`.
    pub protocol: &'static str,
    pub host: String,
    pub port: u16,
    /// `allow` or `deny`.
    pub decision: &'static str,
    /// Why: the rule that decided (`file:line`, or the flag), or the refusal.
    pub reason: String,
    /// The address connected to, when allowed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Bytes from the tree to the destination.
    pub bytes_up: u64,
    /// Bytes from the destination to the tree.
    pub bytes_down: u64,
    pub duration_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(allow: &[&str]) -> EgressOptions {
        EgressOptions {
            allow: allow.iter().map(|s| (*s).to_owned()).collect(),
            ..EgressOptions::default()
        }
    }

    #[test]
    fn allow_domain_without_a_namespace_is_refused_naming_what_is_missing() {
        let missing = Err("unshare(CLONE_NEWNET) in a user namespace: EPERM".to_owned());
        let err = Egress::new(&NetworkPolicy::default(), &options(&["pypi.org"]), missing)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("--allow-domain needs a network namespace"),
            "{err}"
        );
        assert!(
            err.contains("unshare(CLONE_NEWNET) in a user namespace: EPERM"),
            "{err}"
        );
        assert!(err.contains("the network stays off"), "{err}");
    }

    #[test]
    fn rules_files_alone_leave_the_network_off_where_no_namespace_can_be_made() {
        let rules = NetworkPolicy::new(vec![
            NetworkRule::from_flag("x", "pypi.org", Decision::Allow).unwrap(),
        ]);
        let egress = Egress::new(&rules, &options(&[]), Err("no".to_owned())).unwrap();
        assert!(!egress.proxied());
        let egress = Egress::new(&rules, &options(&[]), Ok(())).unwrap();
        assert!(egress.proxied());
    }

    #[test]
    fn only_rules_that_can_open_something_start_the_proxy() {
        let mut only_deny = options(&[]);
        only_deny.deny.push("evil.test".to_owned());
        let egress = Egress::new(&NetworkPolicy::default(), &only_deny, Ok(())).unwrap();
        assert!(!egress.proxied());
    }

    #[test]
    fn proxy_resolve_needs_host_equals_ip() {
        for bad in ["pypi.org", "pypi.org=not-an-ip"] {
            let mut o = options(&[]);
            o.resolve.push(bad.to_owned());
            let err = Egress::new(&NetworkPolicy::default(), &o, Ok(()))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(&format!("--proxy-resolve {bad}")), "{err}");
        }
        let mut o = options(&[]);
        o.resolve.push("Mirror.Test.=10.0.0.1".to_owned());
        let egress = Egress::new(&NetworkPolicy::default(), &o, Ok(())).unwrap();
        assert_eq!(
            egress.resolve["mirror.test"],
            vec!["10.0.0.1".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn the_proxy_is_announced_in_both_cases() {
        let env = proxy_env();
        for name in [
            "HTTP_PROXY",
            "http_proxy",
            "HTTPS_PROXY",
            "https_proxy",
            "NO_PROXY",
        ] {
            assert!(env.iter().any(|(k, _)| k == name), "{name}");
        }
        assert!(
            env.iter()
                .any(|(k, v)| k == "ALL_PROXY" && v.starts_with("socks5h://127.0.0.1:"))
        );
    }
}

//! Which hosts the sandboxed tree may reach through the supervisor's egress proxy: Codex's
//! `network_rule(host, protocol, decision, justification)` from the rules files, plus the
//! person's `--allow-domain` / `--deny-domain` flags.
//!
//! Matching: a rule's host is one name or IP literal matched exactly (case and a trailing
//! dot ignored), as Codex does; ours also take `*.example.com` from the flags (any name
//! strictly below `example.com`). A rule without a port covers 80 and 443 only. Several
//! matching rules: the strictest decision wins (forbidden > prompt > allow). No rule:
//! [`NetworkPolicy::decide`] answers `None` and the caller denies (or asks).
//!
//! The protocol of a `network_rule` is kept for the report but does not narrow the match:
//! the proxy cannot tell a CONNECT tunnel's protocol, and Codex's own proxy keys its
//! decisions on the host.
//!
//! Pure: no resolution, no I/O. Whether a resolved address is private is the proxy's
//! question, answered with [`NetworkPolicy::allows_address`].

use std::net::IpAddr;

use serde::Serialize;

use crate::decision::Decision;

/// The ports a rule without one covers.
pub const DEFAULT_PORTS: [u16; 2] = [80, 443];

/// One host rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetworkRule {
    /// Lowercase, without trailing dot; `*.suffix` for a wildcard (flags only).
    pub host: String,
    /// `None`: [`DEFAULT_PORTS`].
    pub port: Option<u16>,
    pub decision: Decision,
    /// `network_rule`'s protocol, or `flag` for `--allow-domain` / `--deny-domain`.
    pub protocol: String,
    pub justification: Option<String>,
    /// `file:line` of the `network_rule` call, or the flag.
    pub origin: String,
}

impl NetworkRule {
    /// Whether this rule covers `host` (normalised by the caller) and `port`.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        let port_ok = match self.port {
            Some(p) => p == port,
            None => DEFAULT_PORTS.contains(&port),
        };
        port_ok
            && match self.host.strip_prefix("*.") {
                Some(suffix) => host
                    .strip_suffix(suffix)
                    .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
                None => self.host == host,
            }
    }

    /// A rule from `--allow-domain` / `--deny-domain HOST[:PORT]` (`*.example.com` too).
    pub fn from_flag(flag: &str, raw: &str, decision: Decision) -> Result<NetworkRule, String> {
        let (host, port) = parse_host(raw, true).map_err(|why| format!("{flag} {raw}: {why}"))?;
        Ok(NetworkRule {
            host,
            port,
            decision,
            protocol: "flag".to_owned(),
            justification: None,
            origin: flag.to_owned(),
        })
    }
}

/// The egress rules of a session, in load order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkPolicy {
    rules: Vec<NetworkRule>,
}

impl NetworkPolicy {
    pub fn new(rules: Vec<NetworkRule>) -> NetworkPolicy {
        NetworkPolicy { rules }
    }

    pub fn rules(&self) -> &[NetworkRule] {
        &self.rules
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether any rule can let something out (allow or prompt): only then does a session
    /// need the proxy at all.
    pub fn opens_anything(&self) -> bool {
        self.rules.iter().any(|r| r.decision != Decision::Forbidden)
    }

    pub fn push(&mut self, rule: NetworkRule) {
        self.rules.push(rule);
    }

    /// The strictest rule covering `host:port`, if any. `host` is normalised here.
    pub fn decide(&self, host: &str, port: u16) -> Option<&NetworkRule> {
        let host = normalize(host);
        self.rules
            .iter()
            .filter(|r| r.matches(&host, port))
            .max_by_key(|r| r.decision)
    }

    /// Whether `addr:port` was allowed by address: an allow rule naming that IP literal,
    /// and no stricter one. What lets a destination that resolves to a loopback, private
    /// or link-local address through.
    pub fn allows_address(&self, addr: IpAddr, port: u16) -> bool {
        self.decide(&addr.to_string(), port)
            .is_some_and(|r| r.decision == Decision::Allow)
    }

    /// The rule forbidding `addr:port` by its literal, if any: a destination the proxy
    /// refuses whichever allowed name resolves to it (the strictest rule wins for the
    /// address as for the name).
    pub fn forbids_address(&self, addr: IpAddr, port: u16) -> Option<&NetworkRule> {
        let addr = addr.to_canonical();
        self.decide(&addr.to_string(), port)
            .filter(|r| r.decision == Decision::Forbidden)
    }
}

/// Lowercase, without surrounding whitespace, trailing dots or IPv6 brackets.
pub fn normalize(host: &str) -> String {
    let host = host.trim();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Checks a host as Codex does for `network_rule` and splits off its port: one host name
/// or IP literal with an optional `:port` (`[v6]:port` for IPv6); no scheme, path, query,
/// fragment or whitespace. `wildcard`: a leading `*.` is accepted (our flags).
pub fn parse_host(raw: &str, wildcard: bool) -> Result<(String, Option<u16>), &'static str> {
    let mut host = raw.trim();
    let mut port = None;
    if host.is_empty() {
        return Err("cannot be empty");
    }
    if host.contains('/') || host.contains('?') || host.contains('#') {
        return Err("must be a host name or IP literal, without scheme or path");
    }
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    // Our flags refuse a port out of range; a rules file keeps loading as Codex's does, and
    // its rule then matches no connection (port 0).
    let parse_port = |p: &str| -> Result<u16, &'static str> {
        match p.parse::<u16>().ok().filter(|p| *p > 0) {
            Some(port) => Ok(port),
            None if wildcard => Err("has a port out of range (1-65535)"),
            None => Ok(0),
        }
    };
    if let Some(bracketed) = host.strip_prefix('[') {
        let Some((inside, rest)) = bracketed.split_once(']') else {
            return Err("has an invalid bracketed IPv6 literal");
        };
        if !rest.is_empty() {
            match rest.strip_prefix(':') {
                Some(p) if digits(p) => port = Some(parse_port(p)?),
                _ => {
                    return Err(
                        "has something after the bracketed IPv6 literal that is not a port",
                    );
                }
            }
        }
        host = inside;
    } else if host.matches(':').count() == 1
        && let Some((name, p)) = host.split_once(':')
        && !name.is_empty()
    {
        // Codex takes `host:443.` as a host (the dot is trimmed below); so does a rules
        // file here. Our flags say what is wrong.
        let p_trimmed = p.trim_end_matches('.');
        if digits(p) || (!wildcard && digits(p_trimmed)) {
            port = Some(parse_port(p_trimmed)?);
            host = name;
        } else if wildcard {
            return Err("has something after the host that is not a port");
        }
    }
    let normalized = host.trim_end_matches('.').trim().to_ascii_lowercase();
    if normalized.is_empty() {
        return Err("cannot be empty");
    }
    let body = match normalized.strip_prefix("*.") {
        Some(rest) if wildcard => rest,
        _ => &normalized,
    };
    if body.contains('*') {
        return Err(if wildcard {
            "may only start with `*.` as a wildcard (`*.example.com`)"
        } else {
            "must be one specific host, not a wildcard"
        });
    }
    if body.is_empty() || body.chars().any(char::is_whitespace) {
        return Err("cannot contain whitespace");
    }
    Ok((normalized, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(raw: &str, decision: Decision) -> NetworkRule {
        NetworkRule::from_flag("--allow-domain", raw, decision).unwrap()
    }

    #[test]
    fn exact_names_with_default_ports() {
        let policy = NetworkPolicy::new(vec![rule("pypi.org", Decision::Allow)]);
        assert!(policy.decide("pypi.org", 443).is_some());
        assert!(policy.decide("PyPI.org.", 80).is_some());
        assert!(policy.decide("pypi.org", 22).is_none());
        assert!(policy.decide("files.pypi.org", 443).is_none());
        assert!(policy.decide("evilpypi.org", 443).is_none());
    }

    #[test]
    fn wildcards_match_strictly_below() {
        let policy = NetworkPolicy::new(vec![rule("*.example.com:8080", Decision::Allow)]);
        assert!(policy.decide("a.example.com", 8080).is_some());
        assert!(policy.decide("a.b.example.com", 8080).is_some());
        assert!(policy.decide("example.com", 8080).is_none());
        assert!(policy.decide("badexample.com", 8080).is_none());
        assert!(policy.decide("a.example.com", 443).is_none());
    }

    #[test]
    fn the_strictest_rule_wins() {
        let policy = NetworkPolicy::new(vec![
            rule("*.example.com", Decision::Allow),
            rule("bad.example.com", Decision::Forbidden),
        ]);
        assert_eq!(
            policy.decide("bad.example.com", 443).unwrap().decision,
            Decision::Forbidden
        );
        assert_eq!(
            policy.decide("ok.example.com", 443).unwrap().decision,
            Decision::Allow
        );
    }

    #[test]
    fn addresses_are_allowed_only_by_an_ip_literal_rule() {
        let policy = NetworkPolicy::new(vec![
            rule("127.0.0.2:8080", Decision::Allow),
            rule("[::1]:8080", Decision::Allow),
            rule("internal.test:8080", Decision::Allow),
        ]);
        assert!(policy.allows_address("127.0.0.2".parse().unwrap(), 8080));
        assert!(policy.allows_address("::1".parse().unwrap(), 8080));
        assert!(!policy.allows_address("127.0.0.3".parse().unwrap(), 8080));
        assert!(!policy.allows_address("127.0.0.2".parse().unwrap(), 443));
    }

    #[test]
    fn an_address_denied_by_literal_is_forbidden_whatever_name_leads_there() {
        let policy = NetworkPolicy::new(vec![
            rule("203.0.113.9", Decision::Forbidden),
            rule("*.example.com", Decision::Allow),
        ]);
        assert!(
            policy
                .forbids_address("203.0.113.9".parse().unwrap(), 443)
                .is_some()
        );
        assert!(
            policy
                .forbids_address("::ffff:203.0.113.9".parse().unwrap(), 443)
                .is_some()
        );
        assert!(
            policy
                .forbids_address("203.0.113.9".parse().unwrap(), 22)
                .is_none()
        );
        assert!(
            policy
                .forbids_address("203.0.113.8".parse().unwrap(), 443)
                .is_none()
        );
    }

    #[test]
    fn lookalikes_of_allowed_names_are_not_allowed() {
        let policy = NetworkPolicy::new(vec![
            rule("*.example.com", Decision::Allow),
            rule("exact.org", Decision::Allow),
        ]);
        for bad in [
            "evil-example.com",
            "example.com.evil.org",
            "xexample.com",
            "example.com",
            ".example.com",
            "a.example.com.evil",
            "exact.org.evil.org",
            "xexact.org",
            "sub.exact.org",
            "exact.org\0",
            "ｅｘａｃｔ.org",
        ] {
            assert!(policy.decide(bad, 443).is_none(), "{bad}");
        }
        for good in ["A.Example.COM.", "exact.org.", "EXACT.ORG"] {
            assert!(policy.decide(good, 443).is_some(), "{good}");
        }
    }

    #[test]
    fn bad_hosts_say_why() {
        for (raw, why) in [
            ("https://x.org", "without scheme"),
            ("x.org:http", "not a port"),
            ("x.org:70000", "out of range"),
            ("a*.x.org", "wildcard"),
            ("", "empty"),
        ] {
            let err = NetworkRule::from_flag("--allow-domain", raw, Decision::Allow).unwrap_err();
            assert!(err.contains(why), "{raw}: {err}");
        }
        assert_eq!(
            parse_host("*.x.org", false).unwrap_err(),
            "must be one specific host, not a wildcard"
        );
    }
}

//! The session flags `supervise`, `init` and `mcp` share, and the one place they become a
//! policy, a sandbox, an environment and a [`Supervisor`].
//!
//! Every flag that shapes a session is declared here once, with one help text. What is
//! not a session flag (the command, `--timeout`, `--on-prompt` for the terminal; the MCP
//! server's call defaults) lives with its subcommand.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use policy::{LoadOptions, Policy};
use supervisor::cgroup::{parse_memory_max, parse_pids_max};
use supervisor::{
    BackendRequest, CgroupLimits, ResourceLimits, SandboxMode, SandboxPolicy, Supervisor,
};

use crate::environment::{EnvPolicy, InheritEnv};

/// The exec-policy flags (also `check`'s).
#[derive(Debug, Clone, clap::Args)]
pub struct PolicyArgs {
    /// A rules file, or a directory of `*.rules` files (repeatable). Loaded after the
    /// default directories ($CODEX_HOME/rules, $XDG_CONFIG_HOME/execgate/rules).
    #[arg(short = 'r', long = "rules", value_name = "PATH")]
    pub rules: Vec<PathBuf>,

    /// Load only the --rules paths, not the default directories.
    #[arg(long)]
    pub no_default_rules: bool,

    /// Admin rules (repeatable): a `.rules` file or directory, or a Codex
    /// `requirements.toml` (its `[rules] prefix_rules`). Prompt and forbidden only, matched
    /// on their own: no user rule can weaken them; the strictest decision wins.
    #[arg(long = "admin-rules", value_name = "PATH")]
    pub admin_rules: Vec<PathBuf>,
}

impl PolicyArgs {
    /// Loads the policy; a rules file that does not load is an error, never ignored.
    pub fn load(&self) -> anyhow::Result<Policy> {
        let mut options = LoadOptions::from_env(self.rules.clone(), !self.no_default_rules);
        options.admin_rules.clone_from(&self.admin_rules);
        let policy = Policy::load(&options)?;
        tracing::debug!(
            rules = policy.rule_count(),
            sources = ?policy.sources(),
            "exec policy loaded"
        );
        Ok(policy)
    }
}

/// The flags of every session, whichever subcommand runs it.
#[derive(Debug, Clone, clap::Args)]
pub struct SessionArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,

    /// Sandbox for allowed execs: read-only, workspace-write, danger-full-access (no
    /// sandbox at all, network included). For `mcp`, until the client sends a Codex
    /// sandbox state.
    #[arg(long, value_name = "MODE", default_value = "workspace-write", value_parser = parse_mode)]
    pub sandbox: SandboxMode,

    /// Extra writable directory for workspace-write (repeatable); it must exist.
    #[arg(long = "writable-root", value_name = "DIR")]
    pub writable_roots: Vec<PathBuf>,

    /// Allow outbound network (AF_INET/AF_INET6) inside the sandbox (danger-full-access
    /// always has it).
    #[arg(long)]
    pub network: bool,

    /// With the network off, a unix socket file outside the session that its programs may
    /// connect to (repeatable), e.g. /run/user/1000/ssh-agent.sock. Others outside fail
    /// with EACCES; sockets the session listens on itself always work.
    #[arg(long = "allow-unix-socket", value_name = "PATH")]
    pub allow_unix_sockets: Vec<PathBuf>,

    /// With the network off, a host the sandboxed tree may reach through execgate's egress
    /// proxy (repeatable): HOST or HOST:PORT (ports default to 80 and 443), `*.example.com`
    /// for every name below it, or an IP literal (the one way to reach a loopback or
    /// private address). The tree then runs in a network namespace with only loopback and
    /// HTTP_PROXY/HTTPS_PROXY/ALL_PROXY set; rules files' `network_rule`s count too. Refused
    /// where no network namespace can be made (`execgate doctor` says).
    #[arg(long = "allow-domain", value_name = "HOST[:PORT]")]
    pub allow_domains: Vec<String>,

    /// A host the egress proxy never connects to, whatever allows it (repeatable).
    #[arg(long = "deny-domain", value_name = "HOST[:PORT]")]
    pub deny_domains: Vec<String>,

    /// The egress proxy resolves HOST to IP instead of asking DNS (repeatable; for tests
    /// and offline mirrors). It allows nothing by itself: a loopback or private IP still
    /// needs an --allow-domain naming that IP.
    #[arg(long = "proxy-resolve", value_name = "HOST=IP")]
    pub proxy_resolve: Vec<String>,

    /// Refuse to run a command unless every sandbox restriction is enforced on this kernel.
    #[arg(long)]
    pub require_sandbox: bool,

    /// The environment a session starts from: `all` of execgate's own, `core` (HOME,
    /// LOGNAME, PATH, SHELL, USER, USERNAME, TMPDIR, TEMP, TMP, LANG, LANGUAGE, LC_*, TERM), or
    /// `none`. Either way, variables whose names look like credentials (containing KEY,
    /// SECRET, TOKEN, PASSWORD, PASSWD, CREDENTIAL, AUTH, COOKIE, SESSION; any case) are
    /// left out unless named by --pass-env.
    #[arg(long, value_name = "BASE", value_enum, default_value_t = InheritEnv::All)]
    pub inherit_env: InheritEnv,

    /// Pass this variable of execgate's environment to sessions even if its name looks
    /// like a credential or --inherit-env leaves it out (repeatable).
    #[arg(long = "pass-env", value_name = "NAME")]
    pub pass_env: Vec<String>,

    /// Pass the caller's value of this variable to escalated commands (repeatable). They
    /// run outside the sandbox, so they get execgate's own PATH, HOME, USER, LOGNAME,
    /// SHELL, LANG, LANGUAGE, LC_*, TERM, TZ and TMPDIR and nothing else of the caller's;
    /// loader, interpreter and tool hooks (LD_*, BASH_ENV, PYTHON*, GIT_*, MAKEFLAGS, ...)
    /// are never passed, even when named.
    #[arg(long = "escalate-env", value_name = "NAME")]
    pub escalate_env: Vec<String>,

    /// A resource limit for every process of the session, as NAME=VALUE (repeatable):
    /// as, cpu (seconds), fsize, nproc, nofile, core; sizes take K, M, G, T; `unlimited`
    /// keeps the inherited limit. Defaults: fsize=64G, nofile=1024, core=0.
    #[arg(long = "limit", value_name = "NAME=VALUE", value_parser = ResourceLimits::check_spec)]
    pub limits: Vec<String>,

    /// Most processes and threads the session may have at once (its cgroup's pids.max,
    /// escalated commands included); `max` or `unlimited` lifts it. Default 512.
    #[arg(long, value_name = "N", value_parser = |s: &str| parse_pids_max(s).map(|_| s.to_owned()))]
    pub pids_max: Option<String>,

    /// Most memory the session may use (its cgroup's memory.max), in bytes with K, M, G
    /// or T; `max` or `unlimited` lifts it. Default: half of the machine's memory.
    #[arg(long, value_name = "BYTES", value_parser = |s: &str| parse_memory_max(s).map(|_| s.to_owned()))]
    pub memory_max: Option<String>,

    /// Append one JSON line per decided exec to FILE.
    #[arg(long, value_name = "FILE")]
    pub audit: Option<PathBuf>,

    /// How execs are decided: `unotify` (a stock bash under seccomp user notification:
    /// every exec of the tree), `wrapper` (a patched bash asking through
    /// execgate-execve-wrapper: only that shell's own execs), or `auto` (unotify where the
    /// kernel and container allow it, else wrapper, with a notice on stderr).
    #[arg(long, value_name = "BACKEND", default_value = "auto")]
    pub backend: BackendRequest,

    /// The patched bash for the wrapper backend (default: $EXECGATE_PATCHED_BASH, else
    /// $EXECGATE_PATCHED_SHELLS/bin/bash, else ../libexec/execgate/bash next to execgate).
    /// Must be an executable file, whatever the backend.
    #[arg(long, value_name = "PATH")]
    pub patched_bash: Option<PathBuf>,

    /// A question nobody answers within SECONDS is denied, with a message saying so (the
    /// program fails as if forbidden). Time spent waiting for a person does not count
    /// against a session's timeout; this is what bounds it.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_PROMPT_TIMEOUT_SECS)]
    pub prompt_timeout: f64,

    /// Where "always" at a question stores its rule, as Codex does: one
    /// `prefix_rule(pattern=[...], decision="allow")` line appended to FILE (default:
    /// $CODEX_HOME/rules/default.rules, Codex's own, when the default rules are loaded).
    /// FILE is loaded as a rules file when it exists. Never inside a writable root.
    #[arg(long, value_name = "FILE", conflicts_with = "no_amend_rules")]
    pub amend_rules: Option<PathBuf>,

    /// "Always" lasts until the session ends; no rule is written.
    #[arg(long)]
    pub no_amend_rules: bool,
}

/// How long a question waits for a person by default: five minutes.
pub const DEFAULT_PROMPT_TIMEOUT_SECS: f64 = 300.0;

fn parse_mode(s: &str) -> Result<SandboxMode, String> {
    s.parse()
        .map_err(|e: <SandboxMode as std::str::FromStr>::Err| e.to_string())
}

/// The checked session flags: what every session of this process starts from.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub sandbox: SandboxPolicy,
    /// The whole environment of a session (the supervisor's own is not inherited).
    pub env: Vec<(String, String)>,
    pub limits: ResourceLimits,
    /// pids and memory limits of the session's cgroup.
    pub cgroup_limits: CgroupLimits,
    /// How long a question waits for an answer before it is denied.
    pub prompt_timeout: Duration,
    /// The rules file "always" appends to (`--amend-rules`, else Codex's default file);
    /// `None`: "always" lasts for the session only.
    pub amend_rules: Option<PathBuf>,
}

impl SessionArgs {
    /// The flags given (anything not at its default), by name: `init` refuses them when
    /// its command is the MCP server, which takes them after `mcp`.
    pub fn given(&self) -> Vec<&'static str> {
        let given = [
            (!self.policy.rules.is_empty(), "--rules"),
            (self.policy.no_default_rules, "--no-default-rules"),
            (self.sandbox != SandboxMode::WorkspaceWrite, "--sandbox"),
            (!self.writable_roots.is_empty(), "--writable-root"),
            (self.network, "--network"),
            (self.require_sandbox, "--require-sandbox"),
            (!self.allow_domains.is_empty(), "--allow-domain"),
            (!self.deny_domains.is_empty(), "--deny-domain"),
            (!self.proxy_resolve.is_empty(), "--proxy-resolve"),
            (self.inherit_env != InheritEnv::All, "--inherit-env"),
            (!self.pass_env.is_empty(), "--pass-env"),
            (!self.escalate_env.is_empty(), "--escalate-env"),
            (!self.limits.is_empty(), "--limit"),
            (self.pids_max.is_some(), "--pids-max"),
            (self.memory_max.is_some(), "--memory-max"),
            (self.audit.is_some(), "--audit"),
            (self.backend != BackendRequest::Auto, "--backend"),
            (self.patched_bash.is_some(), "--patched-bash"),
            (
                self.prompt_timeout != DEFAULT_PROMPT_TIMEOUT_SECS,
                "--prompt-timeout",
            ),
            (self.amend_rules.is_some(), "--amend-rules"),
            (self.no_amend_rules, "--no-amend-rules"),
        ];
        given
            .into_iter()
            .filter_map(|(given, name)| given.then_some(name))
            .collect()
    }

    /// Checks the flags and builds what each session gets, from execgate's own
    /// environment. Every error names the flag.
    pub fn config(&self) -> anyhow::Result<SessionConfig> {
        let mut writable_roots = Vec::with_capacity(self.writable_roots.len());
        for root in &self.writable_roots {
            writable_roots.push(existing_dir("--writable-root", root)?);
        }
        // Under `wrapper` the supervisor refuses it, saying where it looked and how to
        // build one; under `auto` it would otherwise be ignored whenever unotify works.
        if let Some(bash) = &self.patched_bash
            && self.backend != BackendRequest::Wrapper
        {
            check_executable("--patched-bash", bash)?;
        }
        for socket in &self.allow_unix_sockets {
            use std::os::unix::fs::FileTypeExt;
            match std::fs::metadata(socket) {
                Ok(meta) if meta.file_type().is_socket() => {}
                Ok(_) => anyhow::bail!("--allow-unix-socket {}: not a socket", socket.display()),
                Err(err) => anyhow::bail!("--allow-unix-socket {}: {err}", socket.display()),
            }
        }
        let sandbox = SandboxPolicy {
            writable_roots,
            // danger-full-access confines nothing, the network included (as the same mode
            // from a Codex sandbox state does).
            network: self.network || self.sandbox == SandboxMode::DangerFullAccess,
            require_full: self.require_sandbox,
            allow_unix_sockets: self.allow_unix_sockets.clone(),
            ..SandboxPolicy::new(self.sandbox)
        };
        let env = EnvPolicy {
            inherit: self.inherit_env,
            pass: self.pass_env.clone(),
        }
        .build(std::env::vars_os());
        let prompt_timeout = match self.prompt_timeout {
            secs if secs.is_finite() && secs > 0.0 => Duration::from_secs_f64(secs),
            secs => anyhow::bail!("--prompt-timeout {secs}: must be a positive number of seconds"),
        };
        let amend_rules = self.amend_file_outside(&sandbox.writable_roots)?;
        Ok(SessionConfig {
            sandbox,
            env,
            prompt_timeout,
            amend_rules,
            // Each spec was checked when the arguments were parsed.
            limits: ResourceLimits::from_specs(&self.limits)?,
            cgroup_limits: {
                let default = CgroupLimits::default();
                // Each was checked when the arguments were parsed.
                let pids_max = self.pids_max.as_deref().map(parse_pids_max).transpose();
                let memory_max = self.memory_max.as_deref().map(parse_memory_max).transpose();
                CgroupLimits {
                    pids_max: pids_max
                        .map_err(|e| anyhow::anyhow!("--pids-max: {e}"))?
                        .unwrap_or(default.pids_max),
                    memory_max: memory_max
                        .map_err(|e| anyhow::anyhow!("--memory-max: {e}"))?
                        .unwrap_or(default.memory_max),
                }
            },
        })
    }

    /// The file "always" appends to, absolute, its directory's symlinks resolved (so a
    /// writable-root check sees where it is): `--amend-rules`, else Codex's default file
    /// when the default rules are loaded, else none.
    pub fn amend_file(&self) -> anyhow::Result<Option<PathBuf>> {
        if self.no_amend_rules {
            return Ok(None);
        }
        let file = match &self.amend_rules {
            Some(file) => std::path::absolute(file)
                .with_context(|| format!("--amend-rules {}", file.display()))?,
            None if self.policy.no_default_rules => return Ok(None),
            None => match policy::amend::default_file(&LoadOptions::from_env(Vec::new(), true)) {
                Some(file) => file,
                None => return Ok(None),
            },
        };
        // The deepest existing ancestor, resolved: the rest is created on the first "always".
        let mut existing = file.as_path();
        let mut rest = Vec::new();
        while let Some(parent) = existing.parent() {
            rest.push(existing.file_name().unwrap_or_default().to_owned());
            existing = parent;
            if let Ok(real) = std::fs::canonicalize(existing) {
                let mut resolved = real;
                resolved.extend(rest.iter().rev());
                return Ok(Some(resolved));
            }
        }
        Ok(Some(file))
    }

    /// The one place a [`Supervisor`] is built: loads the policy and starts it. Needs the
    /// tokio runtime. A fallback notice (auto chose the wrapper backend) goes to stderr.
    pub fn supervisor(&self) -> anyhow::Result<Supervisor> {
        let mut policy_args = self.policy.clone();
        // An `--amend-rules` file holds the approvals of earlier sessions: load it.
        if let Some(file) = self.amend_rules.as_ref().filter(|_| !self.no_amend_rules)
            && file.is_file()
            && !policy_args.rules.contains(file)
        {
            policy_args.rules.push(file.clone());
        }
        let policy = Arc::new(policy_args.load()?);
        // Once per start, as `check` does: allow rules that hand out a shell outside the
        // sandbox (a bare `git`, `bash`, `make`, ...), each with file:line and what to write.
        for warning in policy.lint() {
            eprintln!("execgate: warning: {warning}");
        }
        let supervisor = Supervisor::new(
            policy,
            supervisor::SupervisorOptions {
                audit: self.audit.clone(),
                backend: self.backend,
                patched_bash: self.patched_bash.clone(),
                escalate_env: self.escalate_env.clone(),
                egress: supervisor::EgressOptions {
                    allow: self.allow_domains.clone(),
                    deny: self.deny_domains.clone(),
                    resolve: self.proxy_resolve.clone(),
                },
            },
        )?;
        if let Some(notice) = supervisor.notice() {
            eprintln!("{notice}");
        }
        Ok(supervisor)
    }
}

impl SessionArgs {
    /// [`SessionArgs::amend_file`], never inside a writable root, where the agent could
    /// write rules of its own: an explicit `--amend-rules` there is an error, Codex's
    /// default file there turns amendments off with a warning.
    pub fn amend_file_outside(
        &self,
        writable_roots: &[PathBuf],
    ) -> anyhow::Result<Option<PathBuf>> {
        let Some(file) = self.amend_file()? else {
            return Ok(None);
        };
        for root in writable_roots {
            let real = std::fs::canonicalize(root).unwrap_or_else(|_| root.clone());
            if !file.starts_with(root) && !file.starts_with(&real) {
                continue;
            }
            if self.amend_rules.is_some() {
                anyhow::bail!(
                    "--amend-rules {}: inside the writable root {}, where the agent could write \
                     rules itself; keep it outside every writable root (or --no-amend-rules)",
                    file.display(),
                    root.display()
                );
            }
            tracing::warn!(
                "{} is inside the writable root {}: \"remember\" is not offered (--amend-rules FILE elsewhere)",
                file.display(),
                root.display()
            );
            return Ok(None);
        }
        Ok(Some(file))
    }
}

/// `path` as an absolute, existing directory; else one error naming the flag.
pub fn existing_dir(flag: &str, path: &Path) -> anyhow::Result<PathBuf> {
    let absolute =
        std::path::absolute(path).with_context(|| format!("{flag} {}", path.display()))?;
    match std::fs::metadata(&absolute) {
        Ok(meta) if meta.is_dir() => Ok(absolute),
        Ok(_) => anyhow::bail!("{flag} {}: not a directory", path.display()),
        Err(err) => anyhow::bail!("{flag} {}: {}", path.display(), io_reason(&err)),
    }
}

fn check_executable(flag: &str, path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() && meta.permissions().mode() & 0o111 != 0 => Ok(()),
        Ok(_) => anyhow::bail!("{flag} {}: not an executable file", path.display()),
        Err(err) => anyhow::bail!("{flag} {}: {}", path.display(), io_reason(&err)),
    }
}

/// "no such file or directory" rather than "No such file or directory (os error 2)".
fn io_reason(err: &std::io::Error) -> String {
    match err.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_owned(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        _ => err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        session: SessionArgs,
    }

    fn parse(args: &[&str]) -> Result<SessionArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("x").chain(args.iter().copied())).map(|c| c.session)
    }

    #[test]
    fn defaults() {
        let args = parse(&[]).unwrap();
        assert!(args.given().is_empty());
        let config = args.config().unwrap();
        assert_eq!(
            config.sandbox,
            SandboxPolicy::new(SandboxMode::WorkspaceWrite)
        );
    }

    #[test]
    fn danger_full_access_has_network() {
        let config = parse(&["--sandbox", "danger-full-access"])
            .unwrap()
            .config()
            .unwrap();
        assert!(config.sandbox.network);
        let config = parse(&["--sandbox", "read-only"])
            .unwrap()
            .config()
            .unwrap();
        assert!(!config.sandbox.network);
    }

    #[test]
    fn a_missing_writable_root_is_one_clear_error() {
        let err = parse(&["--writable-root", "/nonexistent-root-xyz"])
            .unwrap()
            .config()
            .unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "--writable-root /nonexistent-root-xyz: no such file or directory"
        );
        let err = parse(&["--writable-root", "/etc/passwd"])
            .unwrap()
            .config()
            .unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "--writable-root /etc/passwd: not a directory"
        );
    }

    #[test]
    fn a_missing_patched_bash_is_an_error_whatever_the_backend() {
        // `wrapper`: the supervisor's own refusal (tests/supervise_wrapper.rs).
        for backend in ["auto", "unotify"] {
            let err = parse(&["--backend", backend, "--patched-bash", "/nonexistent"])
                .unwrap()
                .config()
                .unwrap_err();
            assert_eq!(
                format!("{err:#}"),
                "--patched-bash /nonexistent: no such file or directory"
            );
        }
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(parse(&["--sandbox", "yolo"]).is_err());
        assert!(parse(&["--backend", "ptrace"]).is_err());
        assert!(parse(&["--inherit-env", "some"]).is_err());
        assert!(parse(&["--limit", "bogus=1"]).is_err());
    }
}

//! `execgate mcp`'s command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use supervisor::{BackendRequest, SandboxMode, SandboxPolicy};

use crate::server::ServerSettings;

/// Serve the `shell` tool over MCP on stdin/stdout (logs go to stderr).
#[derive(Debug, Clone, Parser)]
#[command(about = "Serve the `shell` MCP tool on stdin/stdout; logs go to stderr")]
pub struct Args {
    /// A rules file, or a directory of `*.rules` files (repeatable). Loaded after the
    /// default directories ($CODEX_HOME/rules, $XDG_CONFIG_HOME/execgate/rules).
    #[arg(short = 'r', long = "rules", value_name = "PATH")]
    pub rules: Vec<PathBuf>,

    /// Load only the --rules paths, not the default directories.
    #[arg(long)]
    pub no_default_rules: bool,

    /// Sandbox for allowed programs until the client sends a Codex sandbox state.
    #[arg(long, value_name = "MODE", default_value = "workspace-write", value_parser = parse_mode)]
    pub sandbox: SandboxMode,

    /// Extra writable directory for workspace-write; repeat for several.
    #[arg(long = "writable-root", value_name = "DIR")]
    pub writable_roots: Vec<PathBuf>,

    /// Allow outbound network (AF_INET/AF_INET6) inside the sandbox.
    #[arg(long)]
    pub network: bool,

    /// Refuse to run a command unless every sandbox restriction can be enforced.
    #[arg(long)]
    pub require_sandbox: bool,

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
    #[arg(long, value_name = "PATH")]
    pub patched_bash: Option<PathBuf>,

    /// `timeout_ms` for calls that give none.
    #[arg(long, value_name = "MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub default_timeout_ms: u64,

    /// Cap on each of stdout, stderr and the interleaved output, in bytes (head and tail kept).
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    pub max_output_bytes: usize,

    /// A resource limit for every process of the session, as NAME=VALUE (repeatable):
    /// as, cpu (seconds), fsize, nproc, nofile, core; sizes take K, M, G, T; `unlimited`
    /// keeps the inherited limit. Defaults: fsize=64G, nofile=1024, core=0.
    #[arg(long = "limit", value_name = "NAME=VALUE", value_parser = supervisor::ResourceLimits::check_spec)]
    pub limits: Vec<String>,
}

impl Args {
    /// The sandbox given by `--sandbox`, `--writable-root` and `--network`.
    pub fn sandbox_policy(&self) -> SandboxPolicy {
        let mut policy = SandboxPolicy::new(self.sandbox);
        policy.writable_roots = self.writable_roots.clone();
        policy.network = self.network;
        policy.require_full = self.require_sandbox;
        policy
    }

    /// What the server does when a call does not say otherwise.
    pub fn settings(&self) -> ServerSettings {
        ServerSettings {
            sandbox: self.sandbox_policy(),
            default_timeout: Duration::from_millis(self.default_timeout_ms),
            max_output_bytes: self.max_output_bytes,
            // Each was checked when the arguments were parsed.
            limits: supervisor::ResourceLimits::from_specs(&self.limits).unwrap_or_default(),
        }
    }
}

fn parse_mode(s: &str) -> Result<SandboxMode, String> {
    s.parse()
        .map_err(|e: <SandboxMode as std::str::FromStr>::Err| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let args = Args::try_parse_from(["mcp"]).unwrap();
        let s = args.settings();
        assert_eq!(s.sandbox, SandboxPolicy::new(SandboxMode::WorkspaceWrite));
        assert_eq!(s.default_timeout, Duration::from_secs(10));
        assert_eq!(s.max_output_bytes, 1 << 20);
        assert!(args.rules.is_empty() && !args.no_default_rules && args.audit.is_none());
        assert_eq!(args.backend, BackendRequest::Auto);
        assert!(args.patched_bash.is_none());
    }

    #[test]
    fn every_flag() {
        let args = Args::try_parse_from([
            "mcp",
            "--rules",
            "/a.rules",
            "--rules",
            "/b.rules",
            "--no-default-rules",
            "--sandbox",
            "read-only",
            "--writable-root",
            "/w",
            "--network",
            "--audit",
            "/log",
            "--default-timeout-ms",
            "500",
            "--max-output-bytes",
            "4096",
            "--backend",
            "wrapper",
            "--patched-bash",
            "/opt/bash",
        ])
        .unwrap();
        assert_eq!(args.backend, BackendRequest::Wrapper);
        assert_eq!(args.patched_bash, Some(PathBuf::from("/opt/bash")));
        assert_eq!(
            args.rules,
            [PathBuf::from("/a.rules"), PathBuf::from("/b.rules")]
        );
        let s = args.settings();
        assert_eq!(s.sandbox.mode, SandboxMode::ReadOnly);
        assert_eq!(s.sandbox.writable_roots, [PathBuf::from("/w")]);
        assert!(s.sandbox.network && args.no_default_rules);
        assert_eq!(s.default_timeout, Duration::from_millis(500));
        assert_eq!(s.max_output_bytes, 4096);
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(Args::try_parse_from(["mcp", "--sandbox", "yolo"]).is_err());
        assert!(Args::try_parse_from(["mcp", "--backend", "ptrace"]).is_err());
        assert!(Args::try_parse_from(["mcp", "--default-timeout-ms", "0"]).is_err());
    }
}

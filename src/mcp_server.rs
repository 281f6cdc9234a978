//! `execgate mcp`: the `shell` MCP tool on stdin/stdout, every session supervised.
//!
//! The command line is parsed here (the `mcp` crate parses none): the session flags every
//! subcommand shares, plus the defaults of a call. Under workspace-write the writable
//! roots are the server's working directory and each `--writable-root`, until the client
//! sends a Codex sandbox state, whose roots then apply; a call's `workdir` is where its
//! command runs, never a grant.

use std::future::Future;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use mcp::ServerSettings;
use supervisor::SandboxMode;

use crate::session_args::SessionArgs;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub session: SessionArgs,

    /// `timeout_ms` for calls that give none.
    #[arg(long, value_name = "MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub default_timeout_ms: u64,

    /// Cap on each of stdout, stderr and the interleaved output, in bytes (head and tail kept).
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    pub max_output_bytes: usize,

    /// Cap on a whole `shell` response as sent (both copies of the result, every field,
    /// after invalid bytes became U+FFFD), in bytes; output is cut further to fit.
    #[arg(long, value_name = "BYTES", default_value_t = mcp::budget::DEFAULT_MAX_RESPONSE_BYTES,
          value_parser = parse_response_budget)]
    pub max_response_bytes: usize,

    /// Run the login start-up files in every `login: true` call (`bash -lc`), asking about
    /// their execs each time, instead of once per server as a snapshot every login call
    /// starts from (nobody asked about their execs; see the README).
    #[arg(long)]
    pub no_login_snapshot: bool,
}

fn parse_response_budget(raw: &str) -> Result<usize, String> {
    let min = mcp::budget::MIN_MAX_RESPONSE_BYTES;
    match raw.parse::<usize>() {
        Ok(n) if n >= min => Ok(n),
        Ok(_) => Err(format!(
            "at least {min} bytes: a result's fixed fields need room"
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// `execgate mcp ARGS` as `init` finds it in its command (`ARGS` after `mcp`).
#[derive(Debug, clap::Parser)]
#[command(name = "execgate mcp", about = crate::MCP_ABOUT)]
pub struct Command {
    #[command(flatten)]
    pub args: Args,
}

impl Args {
    /// What the server does when a call does not say otherwise. `workspace` (the server's
    /// working directory) is writable under workspace-write, as Codex's cwd is, unless it
    /// is `/`: a client that starts its servers in `/` has not chosen a workspace.
    pub fn settings(&self, workspace: &Path) -> anyhow::Result<ServerSettings> {
        let config = self.session.config()?;
        let mut sandbox = config.sandbox;
        if sandbox.mode == SandboxMode::WorkspaceWrite {
            if workspace == Path::new("/") {
                tracing::warn!(
                    "the server runs in /, which is not made writable: give --writable-root"
                );
            } else if !sandbox.writable_roots.iter().any(|r| r == workspace) {
                sandbox.writable_roots.insert(0, workspace.to_owned());
            }
        }
        // Checked again: the workspace became a writable root.
        let amend_rules = self.session.amend_file_outside(&sandbox.writable_roots)?;
        Ok(ServerSettings {
            sandbox,
            env: config.env,
            default_timeout: Duration::from_millis(self.default_timeout_ms),
            max_output_bytes: self.max_output_bytes,
            max_response_bytes: self.max_response_bytes,
            limits: config.limits,
            cgroup_limits: config.cgroup_limits,
            prompt_timeout: config.prompt_timeout,
            amend_rules,
            login_snapshot: !self.no_login_snapshot,
        })
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    serve(args, std::future::pending::<()>).map(|_| ExitCode::SUCCESS)
}

/// Serves until the client goes away (`None`) or `stop` resolves (`Some` of its output).
/// `stop` is made inside the runtime once the supervisor runs, before serving, so it may
/// install signal handlers.
pub fn serve<F, Fut, T>(args: Args, stop: F) -> anyhow::Result<Option<T>>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = T>,
{
    let workspace = std::env::current_dir().context("the current directory")?;
    let settings = args.settings(&workspace)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(async {
        let supervisor = args.session.supervisor()?;
        // One call after another: the next call's cgroup is made while the client thinks.
        supervisor.prepare_cgroups_ahead();
        let sessions = Arc::new(mcp::supervised::SupervisedSessions::new(Arc::new(
            supervisor,
        )));
        let stopped = stop();
        Ok::<_, anyhow::Error>(mcp::serve_stdio_until(sessions, settings, stopped).await?)
    });
    // A stdin read may still be parked on its blocking thread if the loop ended for another
    // reason (stdout closed): do not wait for it.
    runtime.shutdown_timeout(Duration::from_millis(200));
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::path::PathBuf;
    use supervisor::{BackendRequest, SandboxPolicy};

    fn parse(args: &[&str]) -> Args {
        Command::try_parse_from(std::iter::once("mcp").chain(args.iter().copied()))
            .unwrap()
            .args
    }

    #[test]
    fn defaults() {
        let args = parse(&[]);
        let s = args.settings(Path::new("/srv/work")).unwrap();
        let mut want = SandboxPolicy::new(SandboxMode::WorkspaceWrite);
        want.writable_roots = vec![PathBuf::from("/srv/work")];
        assert_eq!(s.sandbox, want);
        assert_eq!(s.default_timeout, Duration::from_secs(10));
        assert_eq!(s.max_output_bytes, 1 << 20);
        assert_eq!(s.max_response_bytes, 2 << 20);
        assert!(args.session.given().is_empty());
        assert_eq!(args.session.backend, BackendRequest::Auto);
    }

    #[test]
    fn slash_is_not_an_implicit_workspace() {
        let s = parse(&[]).settings(Path::new("/")).unwrap();
        assert!(s.sandbox.writable_roots.is_empty());
    }

    #[test]
    fn every_flag() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap();
        let args = parse(&[
            "--rules",
            "/a.rules",
            "--rules",
            "/b.rules",
            "--no-default-rules",
            "--sandbox",
            "read-only",
            "--writable-root",
            root,
            "--network",
            "--audit",
            "/log",
            "--default-timeout-ms",
            "500",
            "--max-output-bytes",
            "4096",
            "--max-response-bytes",
            "100000",
            "--backend",
            "wrapper",
            "--pass-env",
            "OPENAI_API_KEY",
            "--inherit-env",
            "core",
        ]);
        assert_eq!(args.session.backend, BackendRequest::Wrapper);
        assert_eq!(
            args.session.policy.rules,
            [PathBuf::from("/a.rules"), PathBuf::from("/b.rules")]
        );
        let s = args.settings(Path::new("/srv")).unwrap();
        assert_eq!(s.sandbox.mode, SandboxMode::ReadOnly);
        assert_eq!(s.sandbox.writable_roots, [PathBuf::from(root)]);
        assert!(s.sandbox.network && args.session.policy.no_default_rules);
        assert_eq!(s.default_timeout, Duration::from_millis(500));
        assert_eq!(s.max_output_bytes, 4096);
        assert_eq!(s.max_response_bytes, 100_000);
    }

    #[test]
    fn a_writable_root_that_does_not_exist_stops_the_server_at_start() {
        let err = parse(&["--writable-root", "/nonexistent-root-xyz"])
            .settings(Path::new("/srv"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "--writable-root /nonexistent-root-xyz: no such file or directory"
        );
    }

    #[test]
    fn bad_values_are_refused() {
        for bad in [
            &["--sandbox", "yolo"][..],
            &["--backend", "ptrace"],
            &["--default-timeout-ms", "0"],
            &["--max-response-bytes", "100"],
        ] {
            assert!(
                Command::try_parse_from(std::iter::once("mcp").chain(bad.iter().copied())).is_err()
            );
        }
    }
}

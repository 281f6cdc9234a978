//! `execgate init [supervise flags] -- CMD ARGS...`: `supervise` with the duties of a
//! container's PID 1, as tini does them (the signal side is in `crate::signals`).
//!
//! - **Reap orphans.** The supervisor is a child subreaper (PID 1 is one by nature), so
//!   processes orphaned by escalated commands, and whatever is left when the command's own
//!   leader exits, become our children: on every SIGCHLD the unregistered zombies are reaped
//!   (`ChildRegistry::reap_orphans` never takes a status a spawner waits for). While the
//!   command's leader lives, orphans inside the session go to it (it is a subreaper too, so
//!   the teardown can find them); bash reaps those itself.
//! - **Forward signals.** SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 go to the
//!   session's process group, and execgate keeps waiting: the command decides what they
//!   mean. PID 1 of a PID namespace gets no default action for signals it does not handle,
//!   so without this `docker stop` would wait for its SIGKILL.
//! - **Exit with the command's status** (128 + N when a signal N ended it), after the
//!   session's teardown: no process of the tree is left behind.
//!
//! It never runs anything unsupervised: if the supervisor cannot start here (a container
//! profile that blocks seccomp user notification, say), it exits 2 with the reason.
//!
//! **The MCP server as PID 1.** `execgate init -- execgate mcp ...` (the image's default
//! CMD) cannot be supervised like any other command: a session's filter forbids the nested
//! listener the MCP server needs, and supervisors do not nest. When the command is this
//! very executable (the same file as `/proc/self/exe`, found the way exec would find it)
//! with the `mcp` subcommand, init serves MCP in-process instead: the MCP server supervises
//! every session it starts, so nothing runs unsupervised. The init duties stay: orphans
//! are reaped on SIGCHLD, and SIGTERM or SIGINT end the server at once, as a client
//! disconnect does (every running call's tree is killed), with status 128 + the signal.
//! Any other command, including another `execgate` binary, is supervised as usual.

use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;

use crate::supervise::{self, Mode};
use crate::{mcp_server, signals};

pub fn run(args: supervise::Args) -> anyhow::Result<ExitCode> {
    if std::process::id() != 1 {
        tracing::debug!("execgate init is not PID 1; it reaps the orphans it is given");
    }
    if let Some(mcp_args) = own_mcp(args.command()) {
        let flags = args.flags_given();
        if !flags.is_empty() {
            anyhow::bail!(
                "{} apply to a supervised command, not to the MCP server, which supervises \
                 its own sessions: pass the MCP server's flags after `mcp` (see `execgate mcp \
                 --help`)",
                flags.join(", ")
            );
        }
        let mcp_args = match mcp_server::Command::try_parse_from(mcp_args) {
            Ok(parsed) => parsed.args,
            // --help, --version, or a bad flag: clap prints and exits as `execgate mcp` would.
            Err(err) => err.exit(),
        };
        return serve_mcp(mcp_args);
    }
    supervise::run_as(args, Mode::Init)
}

/// `Some(["mcp", flags...])` when `command` runs this very executable's `mcp` subcommand.
fn own_mcp(command: &[String]) -> Option<&[String]> {
    let (program, rest) = command.split_first()?;
    if rest.first().map(String::as_str) != Some("mcp") {
        return None;
    }
    let own = std::fs::metadata("/proc/self/exe").ok()?;
    let path_var = std::env::var_os("PATH");
    let found = resolve(program, path_var.as_deref())?;
    let theirs = std::fs::metadata(found).ok()?;
    (own.dev() == theirs.dev() && own.ino() == theirs.ino()).then_some(rest)
}

/// Where exec would find `program`: as given if it has a slash, else the first executable
/// file of that name in `PATH`.
fn resolve(program: &str, path_var: Option<&OsStr>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let path = PathBuf::from(program);
        return executable(&path).then_some(path);
    }
    let path_var = path_var.unwrap_or_else(|| OsStr::new("/usr/local/bin:/usr/bin:/bin"));
    std::env::split_paths(path_var)
        .map(|dir| dir.join(program))
        .find(|p| executable(p))
}

/// The MCP server in-process, with PID 1's duties while it serves.
fn serve_mcp(args: mcp_server::Args) -> anyhow::Result<ExitCode> {
    match mcp_server::serve(args, signals::mcp_stop)? {
        // The client went away: a normal end.
        None => Ok(ExitCode::SUCCESS),
        Some(Ok(status)) => {
            tracing::info!(status, "stopped by a signal; every session was killed");
            Ok(ExitCode::from(status))
        }
        Some(Err(err)) => Err(anyhow::anyhow!("installing PID 1's signal handlers: {err}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn only_this_executable_with_mcp_is_served_in_process() {
        let me = std::fs::read_link("/proc/self/exe").unwrap();
        let me = me.to_str().unwrap();
        let cmd = strings(&[me, "mcp", "--sandbox", "read-only"]);
        assert_eq!(own_mcp(&cmd), Some(&cmd[1..]));
        // Not the mcp subcommand, another program, or nothing at all.
        assert_eq!(own_mcp(&strings(&[me, "doctor"])), None);
        assert_eq!(own_mcp(&strings(&[me])), None);
        assert_eq!(own_mcp(&strings(&["/bin/sh", "mcp"])), None);
        assert_eq!(own_mcp(&strings(&["no-such-program-xyz", "mcp"])), None);
        assert_eq!(own_mcp(&[]), None);
    }

    #[test]
    fn programs_resolve_as_exec_would() {
        let path = OsStr::new("/nonexistent:/bin");
        assert_eq!(resolve("sh", Some(path)), Some(PathBuf::from("/bin/sh")));
        assert_eq!(resolve("/bin/sh", None), Some(PathBuf::from("/bin/sh")));
        assert_eq!(resolve("no-such-program-xyz", Some(path)), None);
        // A directory is not an executable.
        assert_eq!(resolve("/bin", None), None);
    }
}

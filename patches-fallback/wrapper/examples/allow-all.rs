//! A stand-in supervisor that answers `run` to every exec and logs each request as a
//! JSON line: for trying a patched shell by hand, running a shell's own test suite
//! through the wrapper, or timing the path.
//!
//! ```sh
//! cargo build -p execgate-execve-wrapper --examples
//! target/debug/examples/allow-all --log /tmp/execs.jsonl -- \
//!     .cache/patched-shells/bin/bash -c 'echo hi | cat'
//! ```

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use escalate_protocol::SOCKET_ENV;
use escalate_protocol::server::EscalateServer;
use nix::fcntl::{FcntlArg, FdFlag, fcntl};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let mut log: Option<PathBuf> = None;
    let mut wrapper: Option<PathBuf> = None;
    let mut command = Vec::new();
    while let Some(a) = args.next() {
        match a.to_str() {
            Some("--log") => log = args.next().map(PathBuf::from),
            Some("--wrapper") => wrapper = args.next().map(PathBuf::from),
            Some("--") => {
                command.extend(args.by_ref());
                break;
            }
            _ => bail!("usage: allow-all [--log FILE] [--wrapper PATH] -- COMMAND ARGS..."),
        }
    }
    if command.is_empty() {
        bail!("usage: allow-all [--log FILE] [--wrapper PATH] -- COMMAND ARGS...");
    }
    let wrapper = match wrapper {
        Some(w) => w,
        // target/<profile>/examples/allow-all -> target/<profile>/execgate-execve-wrapper
        None => std::env::current_exe()?
            .parent()
            .and_then(|p| p.parent())
            .context("where is the wrapper? pass --wrapper")?
            .join("execgate-execve-wrapper"),
    };
    let log = match log {
        Some(p) => Some(Arc::new(Mutex::new(
            std::fs::File::create(&p).with_context(|| format!("{}", p.display()))?,
        ))),
        None => None,
    };

    let (server, shell_fd) = EscalateServer::pair()?;
    // Inheritable, and high: clear of the fds scripts use (3-9) and bash hands out
    // for `{var}>` redirections (10 up).
    let high = fcntl(&shell_fd, FcntlArg::F_DUPFD(100))?;
    // SAFETY: F_DUPFD just returned a new fd that nothing else in the process owns.
    let shell_fd = unsafe { OwnedFd::from_raw_fd(high) };
    fcntl(&shell_fd, FcntlArg::F_SETFD(FdFlag::empty()))?;
    tokio::spawn(async move {
        loop {
            let Ok(incoming) = server.accept().await else {
                continue;
            };
            let log = log.clone();
            tokio::spawn(async move {
                let Ok((req, responder)) = incoming.read_request().await else {
                    return;
                };
                if let Some(log) = log {
                    let line = serde_json::json!({
                        "path": req.path.to_string_lossy(),
                        "argv": req.argv.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>(),
                        "cwd": req.cwd.to_string_lossy(),
                    });
                    let _ = writeln!(log.lock().unwrap(), "{line}");
                }
                let _ = responder.run().await;
            });
        }
    });

    let status = tokio::process::Command::new(&command[0])
        .args(&command[1..])
        .env("EXEC_WRAPPER", &wrapper)
        .env(SOCKET_ENV, shell_fd.as_raw_fd().to_string())
        .status()
        .await
        .with_context(|| format!("running {:?}", command[0]))?;
    std::process::exit(status.code().unwrap_or(128));
}

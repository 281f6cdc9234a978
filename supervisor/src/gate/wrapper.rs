//! The wrapper backend: a patched bash (or zsh) runs `execgate-execve-wrapper` for every
//! exec it makes, and the wrapper asks us over the escalate protocol
//! (`patches-fallback/README.md`).
//!
//! Each wrapper's connection is a task on the runtime: the decision is the same
//! [`Shared::decide`] the unotify backend uses, answered through a oneshot; a prompt or an
//! escalated copy holds only its own connection, never the others. An escalated copy runs
//! outside the sandbox on the fds the wrapper sent, and the wrapper exits with its exact
//! status (or dies of the same signal).
//!
//! Only the patched shell's own execs come here: a program that execs by itself (python's
//! `subprocess`, `make`, `/bin/sh`) is not seen, and runs inside the sandbox.

use std::ffi::OsString;
use std::io::{self, Write};
use std::os::fd::{OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use escalate_protocol::server::{EscalateServer, Escalation, Incoming, Responder};
use escalate_protocol::{EscalateRequest, ProtocolError, SOCKET_ENV};
use kernel::pidfd::PidFd;

use super::decision::{ExecFacts, Gate};
use super::{Shared, shown};
use crate::escalate::{self};

use crate::session::ExitStatus;
use crate::spawn::SessionError;

/// The shell's descriptor for the rendezvous socket: high, clear of the fds scripts use
/// (3-9) and those bash hands out for `{var}>` (10 up).
pub(crate) const RENDEZVOUS_FD: RawFd = 100;

/// The patched shells and the wrapper binary, as found at start-up.
#[derive(Debug, Clone)]
pub(crate) struct Tools {
    bash: PathBuf,
    zsh: Option<PathBuf>,
    wrapper: PathBuf,
}

impl Tools {
    pub(crate) fn from_found(found: &kernel::detect::PatchedShell) -> Option<Tools> {
        Some(Tools {
            bash: found.bash.path.clone()?,
            zsh: found.zsh.path.clone(),
            wrapper: found.wrapper.path.clone()?,
        })
    }

    /// The patched shells and the wrapper binary: what a session must not replace.
    pub(crate) fn paths(&self) -> impl Iterator<Item = &PathBuf> {
        [Some(&self.bash), self.zsh.as_ref(), Some(&self.wrapper)]
            .into_iter()
            .flatten()
    }

    /// The patched shell standing in for `argv0` (`bash`, `/bin/bash`, `zsh`...).
    pub(crate) fn shell_for(&self, argv0: &str) -> Result<PathBuf, SessionError> {
        match Path::new(argv0).file_name().and_then(|n| n.to_str()) {
            Some("bash") => Ok(self.bash.clone()),
            Some("zsh") => self
                .zsh
                .clone()
                .ok_or_else(|| SessionError::NoPatchedShell {
                    shell: "zsh",
                    why: format!(
                        "none found (${} or ${}/bin/zsh; build it with \
                     patches-fallback/build-shells zsh)",
                        kernel::detect::patched_shell::ZSH_ENV,
                        kernel::detect::patched_shell::SHELLS_ENV
                    ),
                }),
            _ => Err(SessionError::NotAShell(argv0.to_owned())),
        }
    }

    /// The variables that make the patched shell ask: the wrapper, and our socket.
    pub(crate) fn set_env(&self, env: &mut crate::spawn::ChildEnv) {
        env.set("EXEC_WRAPPER".into(), self.wrapper.clone().into_os_string());
        env.set(SOCKET_ENV.into(), RENDEZVOUS_FD.to_string().into());
        env.remove("BASH_EXEC_WRAPPER");
        env.remove("EXEC_WRAPPER_SHELL");
    }
}

/// The session's stop channel on the runtime: readable (end-of-file) once the session
/// drops its end.
pub(crate) fn stop_signal(
    stop: std::os::unix::net::UnixStream,
) -> io::Result<tokio::net::UnixStream> {
    stop.set_nonblocking(true)?;
    tokio::net::UnixStream::from_std(stop)
}

async fn stopped(stop: &tokio::net::UnixStream) {
    let mut byte = [0u8; 1];
    loop {
        if stop.readable().await.is_err() {
            return;
        }
        match stop.try_read(&mut byte) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            _ => return,
        }
    }
}

/// Serves the session's wrappers until the session stops; then every connection still
/// open is dropped (the wrapper reads that as a denial; teardown kills the tree anyway).
pub(crate) async fn serve(
    shared: Arc<Shared>,
    server: EscalateServer,
    stop: tokio::net::UnixStream,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            () = stopped(&stop) => return,
            incoming = server.accept() => match incoming {
                Ok(incoming) => {
                    connections.spawn(connection(shared.clone(), incoming));
                }
                Err(ProtocolError::BadHello) => tracing::debug!("a malformed wrapper hello"),
                Err(err) => {
                    tracing::error!("the exec wrapper's socket: {err}");
                    return;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// The wrapper backend's [`Gate`]: each answer goes back over the wrapper's connection,
/// on the runtime.
#[derive(Debug, Clone)]
struct Wrapped {
    runtime: tokio::runtime::Handle,
}

/// One wrapper waiting for its answer.
struct Waiting {
    pid: i32,
    request: EscalateRequest,
    argv: Vec<String>,
    responder: Responder,
}

impl Gate for Wrapped {
    type Pending = Waiting;
    type Caller = WrapperCaller;

    fn still_waiting(&self, _: &Waiting) -> bool {
        // A wrapper that went away fails its answer harmlessly, and an escalation finds
        // it gone when it asks for its fds.
        true
    }

    fn facts(&self, p: &Waiting) -> ExecFacts {
        ExecFacts {
            pid: p.pid,
            program: p.request.path.clone(),
            argv: p.argv.clone(),
            cwd: p.request.cwd.clone(),
            ppid: u32::try_from(p.pid).ok().and_then(kernel::procfs::ppid_of),
        }
    }

    fn run(&self, p: Waiting) {
        self.runtime.spawn(async move {
            if let Err(err) = p.responder.run().await {
                tracing::debug!(pid = p.pid, "answering the wrapper: {err}");
            }
        });
    }

    fn deny(&self, p: Waiting, reason: &str) {
        let line = format!("execgate: denied `{}`: {reason}", shown(&p.argv));
        self.runtime.spawn(async move {
            if let Err(err) = p.responder.deny(&line).await {
                tracing::debug!(pid = p.pid, "answering the wrapper: {err}");
            }
        });
    }

    fn caller_env(&self, p: &Waiting) -> Vec<OsString> {
        p.request
            .env
            .iter()
            .map(|(k, v)| {
                let mut entry = k.clone();
                entry.push("=");
                entry.push(v);
                entry
            })
            .collect()
    }

    fn escalation(&self, p: Waiting) -> Option<(WrapperCaller, escalate::Requested)> {
        let env = self.caller_env(&p);
        let requested = escalate::Requested {
            path: p.request.path,
            argv: p.request.argv,
            env,
            cwd: p.request.cwd,
        };
        let caller = WrapperCaller {
            runtime: self.runtime.clone(),
            responder: Some(p.responder),
            escalation: None,
            process: u32::try_from(p.pid)
                .ok()
                .and_then(|pid| PidFd::open(pid).ok()),
        };
        Some((caller, requested))
    }
}

/// One exec, from the wrapper's request to the decision (which answers it).
async fn connection(shared: Arc<Shared>, incoming: Incoming) {
    let pid = incoming.peer_pid().unwrap_or(-1);
    let (request, responder) = match incoming.read_request().await {
        Ok(read) => read,
        Err(err) => {
            tracing::debug!(pid, "unreadable wrapper request: {err}");
            return;
        }
    };
    if shared.cgroup.is_none()
        && let (Some(tree), Ok(pid)) = (shared.tree.get(), u32::try_from(pid))
    {
        // Without a cgroup, teardown finds members by what it saw exec.
        tree.record_exec(pid);
    }
    let argv: Vec<String> = request
        .argv
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    // The patched shell names the program as it found it (`./ls` too): decided as the
    // absolute path the kernel will run.
    let program = request
        .cwd
        .join(&request.path)
        .to_string_lossy()
        .into_owned();
    let gate = Wrapped {
        runtime: shared.runtime.clone(),
    };
    let waiting = Waiting {
        pid,
        request,
        argv: argv.clone(),
        responder,
    };
    shared.decide(&gate, waiting, &program, &argv);
}

/// The wrapper of an escalated exec: it sends its fds 0, 1, 2 over its connection, waits,
/// and exits with the status we report (or dies of the same signal).
struct WrapperCaller {
    runtime: tokio::runtime::Handle,
    responder: Option<Responder>,
    escalation: Option<Escalation>,
    /// The wrapper's process (from `SO_PEERCRED`): the copy dies with it.
    process: Option<PidFd>,
}

impl escalate::Caller for WrapperCaller {
    fn hold(&mut self) -> bool {
        let Some(responder) = self.responder.take() else {
            return false;
        };
        match self.runtime.block_on(responder.escalate()) {
            Ok(escalation) => {
                self.escalation = Some(escalation);
                true
            }
            Err(err) => {
                tracing::debug!("the wrapper went away before sending its fds: {err}");
                false
            }
        }
    }

    fn stdio(&mut self) -> Result<[Option<OwnedFd>; 3], String> {
        let mut stdio: [Option<OwnedFd>; 3] = [None, None, None];
        if let Some(escalation) = &mut self.escalation {
            for (n, fd) in std::mem::take(&mut escalation.fds) {
                if let Some(slot) = usize::try_from(n).ok().and_then(|i| stdio.get_mut(i)) {
                    *slot = Some(fd);
                }
            }
        }
        Ok(stdio)
    }

    fn process(&self) -> Option<&PidFd> {
        self.process.as_ref()
    }

    fn refuse(self, command: &str, why: &escalate::Refused) {
        // As a shell reports an exec that failed: 127 for a missing program, else 126.
        let (code, line) = match why {
            escalate::Refused::Spawn(err) => (
                if err.kind() == io::ErrorKind::NotFound {
                    127
                } else {
                    126
                },
                format!("execgate: escalated copy of `{command}` failed to start: {err}\n"),
            ),
            escalate::Refused::Stdio(error) => (
                126,
                format!("execgate: `{command}` was not run outside the sandbox: {error}\n"),
            ),
        };
        if let Some(stderr) = self.escalation.as_ref().and_then(|e| e.fd(2))
            && kernel::pidfd::wait_writable(stderr, 100)
            && let Ok(fd) = stderr.try_clone_to_owned()
        {
            let _ = std::fs::File::from(fd).write_all(line.as_bytes());
        }
        self.hand_back(ExitStatus::Exited(code));
    }

    fn hand_back(self, status: ExitStatus) -> bool {
        let Some(escalation) = self.escalation else {
            return false;
        };
        let status = match status {
            ExitStatus::Exited(code) => escalate_protocol::ExitStatus::Code(code),
            ExitStatus::Signaled(sig) => escalate_protocol::ExitStatus::Signal(sig),
        };
        match self.runtime.block_on(escalation.report_exit(status)) {
            Ok(()) => true,
            Err(err) => {
                tracing::debug!("the wrapper went away before its status: {err}");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tools(zsh: bool) -> Tools {
        Tools {
            bash: "/opt/patched/bash".into(),
            zsh: zsh.then(|| "/opt/patched/zsh".into()),
            wrapper: "/opt/execgate-execve-wrapper".into(),
        }
    }

    #[test]
    fn only_a_shell_can_be_the_session_s_program() {
        let t = tools(false);
        assert_eq!(t.shell_for("bash").unwrap(), Path::new("/opt/patched/bash"));
        assert_eq!(
            t.shell_for("/usr/bin/bash").unwrap(),
            Path::new("/opt/patched/bash")
        );
        let err = t.shell_for("python3").unwrap_err().to_string();
        assert!(
            err.contains("`python3`") && err.contains("only sees the execs"),
            "{err}"
        );
        let err = t.shell_for("zsh").unwrap_err().to_string();
        assert!(
            err.contains("patched zsh") && err.contains("build-shells zsh"),
            "{err}"
        );
        assert_eq!(
            tools(true).shell_for("zsh").unwrap(),
            Path::new("/opt/patched/zsh")
        );
    }
}

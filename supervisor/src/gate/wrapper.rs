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
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use escalate_protocol::server::{EscalateServer, Escalation, Incoming, Responder};
use escalate_protocol::{EscalateRequest, ProtocolError, SOCKET_ENV};
use kernel::pidfd::PidFd;
use policy::Evaluation;
use tokio::sync::oneshot;

use super::decision::{ExecFacts, Gate};
use super::{SessionError, Shared, now_ms, shown};
use crate::escalate::{self, Registry};
use crate::exec_request;
use crate::session::{Decider, ExitStatus, RanIn};
use crate::teardown::ChildRegistry;

/// The shell's descriptor for the rendezvous socket: high, clear of the fds scripts use
/// (3-9) and those bash hands out for `{var}>` (10 up).
pub(super) const RENDEZVOUS_FD: RawFd = 100;

/// The patched shells and the wrapper binary, as found at start-up.
#[derive(Debug, Clone)]
pub(super) struct Tools {
    bash: PathBuf,
    zsh: Option<PathBuf>,
    wrapper: PathBuf,
}

impl Tools {
    pub(super) fn from_found(found: &kernel::detect::PatchedShell) -> Option<Tools> {
        Some(Tools {
            bash: found.bash.path.clone()?,
            zsh: found.zsh.path.clone(),
            wrapper: found.wrapper.path.clone()?,
        })
    }

    /// The patched shell standing in for `argv0` (`bash`, `/bin/bash`, `zsh`...).
    pub(super) fn shell_for(&self, argv0: &str) -> Result<PathBuf, SessionError> {
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
    pub(super) fn set_env(&self, cmd: &mut Command) {
        cmd.env("EXEC_WRAPPER", &self.wrapper)
            .env(SOCKET_ENV, RENDEZVOUS_FD.to_string())
            .env_remove("BASH_EXEC_WRAPPER")
            .env_remove("EXEC_WRAPPER_SHELL");
    }
}

/// The session's stop channel on the runtime: readable (end-of-file) once the session
/// drops its end.
pub(super) fn stop_signal(
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
pub(super) async fn serve(
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

/// What the decision says to the connection's task.
enum Reply {
    Run,
    /// The line the wrapper prints on its stderr.
    Deny(String),
    Escalate {
        eval: Evaluation,
        decider: Decider,
        facts: ExecFacts,
    },
}

/// The wrapper backend's [`Gate`]: the answer goes back to the connection's task.
#[derive(Debug, Clone, Copy)]
struct Wrapped;

/// One wrapper waiting for its answer.
struct Waiting {
    pid: i32,
    program: PathBuf,
    argv: Vec<String>,
    cwd: PathBuf,
    reply: oneshot::Sender<Reply>,
}

impl Gate for Wrapped {
    type Pending = Waiting;

    fn still_waiting(&self, p: &Waiting) -> bool {
        !p.reply.is_closed()
    }

    fn facts(&self, p: &Waiting) -> ExecFacts {
        ExecFacts {
            pid: p.pid,
            program: p.program.clone(),
            argv: p.argv.clone(),
            cwd: p.cwd.clone(),
            ppid: u32::try_from(p.pid).ok().and_then(exec_request::ppid_of),
        }
    }

    fn run(&self, p: Waiting) {
        let _ = p.reply.send(Reply::Run);
    }

    fn deny(&self, p: Waiting, reason: &str) {
        let line = format!("execgate: denied `{}`: {reason}", shown(&p.argv));
        let _ = p.reply.send(Reply::Deny(line));
    }

    fn escalate(&self, _: &Arc<Shared>, p: Waiting, eval: Evaluation, decider: Decider) {
        // Read now, while the wrapper waits: its parent is the shell that exec'd it.
        let facts = self.facts(&p);
        let _ = p.reply.send(Reply::Escalate {
            eval,
            decider,
            facts,
        });
    }
}

/// One exec, from the wrapper's request to its answer (and, escalated, the copy's end).
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
    let program = request.path.to_string_lossy().into_owned();
    let (reply, answer) = oneshot::channel();
    let waiting = Waiting {
        pid,
        program: request.path.clone(),
        argv: argv.clone(),
        cwd: request.cwd.clone(),
        reply,
    };
    shared.decide(&Wrapped, waiting, &program, &argv);
    let sent = match answer.await {
        Ok(Reply::Run) => responder.run().await,
        Ok(Reply::Deny(line)) => responder.deny(&line).await,
        Ok(Reply::Escalate {
            eval,
            decider,
            facts,
        }) => {
            escalated(&shared, request, responder, eval, decider, facts).await;
            Ok(())
        }
        // The session is ending (its prompt was dropped): the wrapper reads a denial.
        Err(_) => Ok(()),
    };
    if let Err(err) = sent {
        tracing::debug!(pid, "answering the wrapper: {err}");
    }
}

/// Runs the supervisor's copy on the wrapper's fds, records it, and hands the status back.
async fn escalated(
    shared: &Arc<Shared>,
    request: EscalateRequest,
    responder: Responder,
    eval: Evaluation,
    decider: Decider,
    facts: ExecFacts,
) {
    let time_ms = now_ms();
    let store = |status: Option<ExitStatus>, duration: Option<Duration>, reason: String| {
        let mut record = shared.make_record(
            facts.clone(),
            Some(&eval),
            decider,
            RanIn::Escalated,
            reason,
        );
        record.time_ms = time_ms;
        record.status = status;
        record.duration_ms = duration.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        shared.store(record);
    };
    let mut escalation = match responder.escalate().await {
        Ok(escalation) => escalation,
        Err(err) => {
            tracing::debug!("the wrapper went away before sending its fds: {err}");
            store(None, None, "the caller went away during escalation".into());
            return;
        }
    };
    let mut stdio: [Option<OwnedFd>; 3] = [None, None, None];
    for (n, fd) in std::mem::take(&mut escalation.fds) {
        if let Some(slot) = usize::try_from(n).ok().and_then(|i| stdio.get_mut(i)) {
            *slot = Some(fd);
        }
    }
    let stderr = stdio[2].as_ref().and_then(|fd| fd.try_clone().ok());
    let copy = escalate::Copy {
        path: request.path,
        argv: request.argv,
        env: request
            .env
            .into_iter()
            .map(|(k, v)| {
                let mut entry = k;
                entry.push("=");
                entry.push(v);
                entry
            })
            .collect::<Vec<OsString>>(),
        cwd: request.cwd,
        marker: shared.marker.clone(),
        cgroup: shared.cgroup.as_ref().and_then(|cg| cg.joiner().ok()),
    };
    let started = Instant::now();
    let (copy_tx, copy_rx) = oneshot::channel::<Arc<PidFd>>();
    let this = shared.clone();
    // Forking happens on the spawner thread and waiting blocks: off the runtime.
    let waited = tokio::task::spawn_blocking(move || {
        let mut copy = copy;
        let cgroup = copy.cgroup.take();
        let mut child = ChildRegistry::global().spawn(
            || escalate::spawn_copy(&copy, stdio, cgroup),
            |c| Some(c.id()),
        )?;
        let pid = child.id();
        if let Ok(pidfd) = PidFd::open(pid).map(Arc::new) {
            this.started(pid, pidfd.clone());
            let _ = copy_tx.send(pidfd);
        }
        // Our own child, never traced: a plain waitpid on its pid is safe.
        let waited = child.wait();
        ChildRegistry::global().release(pid);
        this.finished(pid);
        Ok::<_, io::Error>(escalate::convert(waited))
    });
    tokio::pin!(waited);
    let outcome = tokio::select! {
        outcome = &mut waited => outcome,
        () = escalation.wrapper_gone() => {
            // The wrapper was killed (a Ctrl-C, a timeout of its own): the copy stands in
            // for its exec and must not run on, outside the sandbox, without it.
            if let Ok(copy) = copy_rx.await {
                let _ = copy.send_signal(libc::SIGKILL);
            }
            waited.await
        }
    };
    let status = match outcome {
        Ok(Ok(status)) => {
            store(Some(status), Some(started.elapsed()), eval.reason());
            status
        }
        Ok(Err(err)) => {
            // As a shell reports an exec that failed: 127 for a missing program, else 126.
            let code = if err.kind() == io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            if let Some(fd) = stderr {
                let line = format!(
                    "execgate: escalated copy of `{}` failed to start: {err}\n",
                    shown(&facts.argv)
                );
                if kernel::pidfd::wait_writable(fd.as_fd(), 100) {
                    let _ = std::fs::File::from(fd).write_all(line.as_bytes());
                }
            }
            store(None, None, format!("escalated copy failed to start: {err}"));
            ExitStatus::Exited(code)
        }
        Err(err) => {
            store(None, None, format!("escalated copy lost: {err}"));
            ExitStatus::Exited(126)
        }
    };
    report(escalation, status).await;
}

async fn report(escalation: Escalation, status: ExitStatus) {
    let status = match status {
        ExitStatus::Exited(code) => escalate_protocol::ExitStatus::Code(code),
        ExitStatus::Signaled(sig) => escalate_protocol::ExitStatus::Signal(sig),
    };
    if let Err(err) = escalation.report_exit(status).await {
        tracing::debug!("the wrapper went away before its status: {err}");
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

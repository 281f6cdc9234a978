//! The unotify backend: a seccomp user-notification listener pauses every exec of the
//! tree; one OS thread per session receives them, reads each exec from the paused caller,
//! and answers (continue, deny) or hands it to a prompt or an escalation.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use kernel::memory::MemoryAccess;
use kernel::pidfd::PidFd;
use kernel::remote_fd::{self, FdHandoff};
use kernel::seccomp::listener::{Event, Listener, Notification};

use super::decision::{ExecFacts, Gate};
use super::{Shared, pidfd_of, shown, tell_caller};
use crate::escalate;
use crate::exec_request::{self, ExecRequest};
use crate::routing::{self, Action};
use crate::sandbox::SandboxMode;
use crate::session::{Decider, ExitStatus, RanIn};
use kernel::ptrace::{self, Resume, Stop};

/// The notification thread: receive the listener from the child, then serve until the
/// tree is gone or the session stops.
pub(crate) fn serve(
    shared: &Arc<Shared>,
    channel: UnixStream,
    stop: UnixStream,
    stopped: Option<Arc<AtomicBool>>,
) {
    let listener = match kernel::process::recv_fd(channel.as_raw_fd()) {
        Ok(Some(fd)) => Arc::new(Listener::from_fd(fd)),
        // The child failed before installing its filter; spawn reports why.
        Ok(None) => return,
        Err(err) => {
            tracing::error!("receiving the seccomp listener: {err}");
            return;
        }
    };
    drop(channel);
    if !listener.set_sync_wakeup() {
        tracing::debug!("no SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (Linux 6.6): slower round trips");
    }
    loop {
        let event = match &stopped {
            Some(stopped) => listener.wait_blocking(stopped),
            None => listener.wait(stop.as_fd()),
        };
        match event {
            Ok(Event::Notification(n)) => shared.handle(&listener, n),
            Ok(Event::Hangup) | Ok(Event::Stopped) => return,
            Err(err) => {
                tracing::error!("seccomp listener: {err}");
                return;
            }
        }
    }
}

impl Shared {
    fn handle(self: &Arc<Self>, listener: &Arc<Listener>, n: Notification) {
        if i64::from(n.nr) == libc::SYS_connect {
            self.handle_connect(listener, n);
            return;
        }
        let req = match ExecRequest::read(&n, self.inner.reach.memory) {
            Ok(req) => req,
            Err(err) => {
                tracing::debug!(pid = n.pid, "unreadable exec: {err}");
                let _ = listener.respond_errno(n.id, err.errno());
                return;
            }
        };
        if self.cgroup.is_none()
            && let Some(tree) = self.tree.get()
        {
            // Without a cgroup, teardown finds members by what it saw exec.
            tree.record_exec(n.pid);
        }
        if !self.first_exec_seen.swap(true, Ordering::AcqRel) {
            // The session's own program, started by us: it runs in the sandbox undecided;
            // everything it execs is decided. Paused, so its pid names it.
            if let Ok(program) = pidfd_of(n.pid) {
                let _ = self.program.set(program);
            }
            let record = self.record_paused(
                || req.facts(),
                None,
                Decider::Supervisor,
                RanIn::Sandbox,
                || "the session's own program".into(),
            );
            let _ = listener.respond_continue(n.id);
            self.store_some(record);
            return;
        }
        let argv = req.argv_lossy();
        let program = req.path.to_string_lossy().into_owned();
        let eval = self.inner.policy.evaluate_exec(&program, &argv);
        let action = routing::route(&eval, self.sandbox.mode);
        // The hot path: an exec that stays in the sandbox, with no audit line to write.
        // Neither `NOTIF_ID_VALID` nor a `stat` is needed: an answer to a notification
        // whose caller died (so whose pid may name another process now) is refused by the
        // kernel, and a path that names nothing fails in the caller's exec as it would
        // without us. Two syscalls fewer on every sandboxed exec.
        if action == Action::Continue && self.inner.audit.is_none() {
            let _ = listener.respond_continue(n.id);
            return;
        }
        // What we read is only meaningful if the caller is still the one paused.
        if !listener.id_valid(n.id) {
            return;
        }
        if !req.by_fd {
            // A path that names nothing fails as the kernel would, without a decision:
            // execvp's PATH walk must not ask a person once per directory, nor fill the
            // audit log.
            if let Err(err) = std::fs::metadata(&req.path) {
                let errno = err.raw_os_error().unwrap_or(libc::ENOENT);
                let _ = listener.respond_errno(n.id, errno);
                return;
            }
        }
        let pending = Unotified {
            n,
            req,
            reach: self.inner.reach,
            outside: false,
        };
        self.decide_evaluated(listener, pending, &program, &argv, eval, action);
    }

    /// One exec of an escalated copy's tree (`from` names the escalated command): decided by
    /// the same policy, but it already runs outside the sandbox, so an allowed exec
    /// continues there, a forbidden one fails with the reason, and a prompt asks.
    pub(crate) fn handle_escalated(
        self: &Arc<Self>,
        listener: &Arc<Listener>,
        n: Notification,
        from: &str,
    ) {
        let req = match ExecRequest::read(&n, self.inner.reach.memory) {
            Ok(req) => req,
            Err(err) => {
                let _ = listener.respond_errno(n.id, err.errno());
                return;
            }
        };
        let argv = req.argv_lossy();
        let program = req.path.to_string_lossy().into_owned();
        let eval = self.inner.policy.evaluate_exec(&program, &argv);
        let action = routing::route(&eval, SandboxMode::DangerFullAccess);
        if action == Action::Continue && self.inner.audit.is_none() {
            let _ = listener.respond_continue(n.id);
            return;
        }
        if !listener.id_valid(n.id) {
            return;
        }
        if !req.by_fd && std::fs::metadata(&req.path).is_err() {
            let _ = listener.respond_errno(n.id, libc::ENOENT);
            return;
        }
        tracing::debug!(from, program, "an exec of an escalated command's tree");
        let pending = Unotified {
            n,
            req,
            reach: self.inner.reach,
            outside: true,
        };
        self.decide_evaluated(listener, pending, &program, &argv, eval, action);
    }
}

/// An exec paused by the seccomp listener.
pub(crate) struct Unotified {
    n: Notification,
    req: ExecRequest,
    reach: Reach,
    /// An exec of an escalated copy's tree, outside the sandbox.
    outside: bool,
}

/// How the supervisor reaches into a paused caller, decided once at start.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reach {
    /// How its fds are copied (`pidfd_getfd`, or the /proc reopen where a container
    /// profile blocks it).
    pub fd_handoff: FdHandoff,
    /// How its exec arguments are read (`process_vm_readv`, or `/proc/PID/mem`).
    pub memory: MemoryAccess,
    /// The filter waits killably (5.19+): answer the exec, then catch the caller's stop.
    /// Otherwise: interrupt first, which withdraws the notification.
    pub wait_killable: bool,
}

/// The unotify backend: the listener answers the paused exec.
impl Gate for Arc<Listener> {
    type Pending = Unotified;

    fn runs_outside(&self, p: &Unotified) -> bool {
        p.outside
    }

    fn still_waiting(&self, p: &Unotified) -> bool {
        self.id_valid(p.n.id)
    }

    fn facts(&self, p: &Unotified) -> ExecFacts {
        p.req.facts()
    }

    fn run(&self, p: Unotified) {
        let _ = self.respond_continue(p.n.id);
    }

    type Caller = PausedCaller;

    fn deny(&self, p: Unotified, reason: &str) {
        let line = format!(
            "execgate: denied `{}`: {reason}",
            shown(&p.req.argv_lossy())
        );
        tell_caller(p.req.tid, p.reach.fd_handoff, line);
        let _ = self.respond_errno(p.n.id, libc::EACCES);
    }

    fn caller_env(&self, p: &Unotified) -> Vec<std::ffi::OsString> {
        p.req.read_env(p.reach.memory).unwrap_or_default()
    }

    fn escalation(&self, p: Unotified) -> Option<(PausedCaller, escalate::Requested)> {
        let env = match p.req.read_env(p.reach.memory) {
            Ok(env) => env,
            Err(err) => {
                let _ = self.respond_errno(p.n.id, err.errno());
                return None;
            }
        };
        // Gone already: nothing to answer.
        let process = pidfd_of(p.req.tid).ok()?;
        let requested = escalate::Requested {
            cwd: exec_request::cwd_of(p.req.tid),
            path: p.req.path,
            argv: p.req.argv,
            env,
        };
        let caller = PausedCaller {
            listener: self.clone(),
            id: p.n.id,
            tid: p.req.tid,
            reach: p.reach,
            process,
            answered: false,
        };
        Some((caller, requested))
    }
}

impl ExecRequest {
    /// Read from `/proc` while the caller is paused.
    fn facts(&self) -> ExecFacts {
        ExecFacts {
            pid: i32::try_from(self.tid).unwrap_or(-1),
            program: self.path.clone(),
            argv: self.argv_lossy(),
            cwd: exec_request::cwd_of(self.tid),
            ppid: exec_request::ppid_of(self.tid),
        }
    }
}

/// The caller of an escalated exec, paused in its `execve`: held by ptrace while the copy
/// runs where a signal could withdraw the notification, and ended with the copy's status
/// by rewriting its registers (`exit_group(status)`).
pub(crate) struct PausedCaller {
    listener: Arc<Listener>,
    id: u64,
    tid: u32,
    reach: Reach,
    process: PidFd,
    /// Answered (or handed back): dropping it unanswered fails the exec with `EAGAIN`.
    answered: bool,
}

impl escalate::Caller for PausedCaller {
    fn hold(&mut self) -> bool {
        // Withdraw-first kernels: hold the caller in a ptrace stop for the whole run, so a
        // signal cannot withdraw the notification and restart the exec as a second request.
        let held = if self.reach.wait_killable {
            self.listener.id_valid(self.id)
        } else {
            matches!(stop_caller(self.tid), Ok(true))
        };
        // A caller that is gone needs no answer.
        self.answered = !held;
        held
    }

    fn stdio(&mut self) -> Result<[Option<OwnedFd>; 3], String> {
        caller_stdio(self.reach.fd_handoff, &self.process, self.tid)
    }

    fn process(&self) -> Option<&PidFd> {
        Some(&self.process)
    }

    fn refuse(mut self, command: &str, why: &escalate::Refused) {
        let errno = match why {
            escalate::Refused::Stdio(error) => {
                let line =
                    format!("execgate: `{command}` was not run outside the sandbox: {error}");
                tell_caller(self.tid, self.reach.fd_handoff, line);
                libc::EACCES
            }
            // Still paused in its exec: the answer is simply that errno, as a real exec
            // would have failed.
            escalate::Refused::Spawn(err) => err.raw_os_error().unwrap_or(libc::ENOEXEC),
        };
        self.fail(errno);
    }

    fn hand_back(mut self, status: ExitStatus) -> bool {
        self.answered = true;
        let resume = Resume::ExitGroup(status.code() & 0xff);
        match status {
            // Mirror a death by signal: queue the signal for the stopped caller, with
            // exit_group(128+sig) behind it in case the caller ignores or handles it.
            ExitStatus::Signaled(sig) => finish_with(&self, resume, Some(sig)),
            ExitStatus::Exited(_) => finish_with(&self, resume, None),
        }
    }
}

impl PausedCaller {
    /// The exec fails with `errno`: answered directly while the caller waits killably,
    /// else through the ptrace stop it is held in.
    fn fail(&mut self, errno: i32) {
        self.answered = true;
        if self.reach.wait_killable {
            let _ = self.listener.respond_errno(self.id, errno);
        } else {
            finish_with(self, Resume::Fail(errno), None);
        }
    }
}

impl Drop for PausedCaller {
    fn drop(&mut self) {
        if !self.answered {
            self.fail(libc::EAGAIN);
        }
    }
}

/// Copies of the caller's fds 0, 1 and 2; `None` for one the caller has closed. Any other
/// failure is the whole escalation's: a command must not run with a substitute for the
/// stream it was given.
fn caller_stdio(
    fd_handoff: FdHandoff,
    caller: &PidFd,
    tid: u32,
) -> Result<[Option<OwnedFd>; 3], String> {
    const NAMES: [&str; 3] = ["stdin", "stdout", "stderr"];
    let mut stdio: [Option<OwnedFd>; 3] = [None, None, None];
    for (fd, slot) in (0..).zip(stdio.iter_mut()) {
        match remote_fd::copy_fd(fd_handoff, caller, tid, fd) {
            Ok(copy) => *slot = Some(copy),
            Err(err) if err.is_not_open() => {}
            Err(err) => {
                let name = NAMES.get(fd as usize).copied().unwrap_or("fd");
                let hint = if fd_handoff == FdHandoff::ProcReopen {
                    "; pidfd_getfd, which would hand it over, is blocked here (see `execgate doctor`)"
                } else {
                    ""
                };
                return Err(format!("its {name} cannot be handed over: {err}{hint}"));
            }
        }
    }
    Ok(stdio)
}

/// Seize and interrupt the caller, and wait until it is stopped. `Ok(false)`: it is gone.
fn stop_caller(tid: u32) -> io::Result<bool> {
    ptrace::seize(tid)?;
    ptrace::interrupt(tid)?;
    loop {
        match ptrace::wait_stop(tid)? {
            Stop::Interrupt => return Ok(true),
            Stop::Gone => return Ok(false),
            // A signal arrived first: suppress it, we are about to end the caller anyway.
            Stop::Signal(_) => {
                ptrace::interrupt(tid)?;
                continue;
            }
        }
    }
}

/// Brings the caller to a stop right after its exec returned, sets how it resumes (with
/// `signal` queued first, if any), and detaches. False when the caller is gone.
fn finish_with(caller: &PausedCaller, resume: Resume, signal: Option<i32>) -> bool {
    let tid = caller.tid;
    if caller.reach.wait_killable {
        // The caller waits killably: interrupt (it keeps waiting), then answer with any
        // errno. It stops before running one instruction of its own, the errno in rax.
        if ptrace::seize(tid).is_err() || ptrace::interrupt(tid).is_err() {
            return false;
        }
        if caller
            .listener
            .respond_errno(caller.id, libc::EPERM)
            .is_err()
        {
            // Gone (ENOENT): killed while we ran.
            let _ = ptrace::detach(tid);
            return false;
        }
        match ptrace::wait_stop(tid) {
            Ok(Stop::Interrupt) | Ok(Stop::Signal(_)) => {}
            Ok(Stop::Gone) | Err(_) => return false,
        }
    }
    let set = ptrace::set_resume(tid, resume);
    if let (Ok(()), Some(sig)) = (&set, signal) {
        let _ = caller.process.send_signal(sig);
    }
    let detached = ptrace::detach(tid);
    set.is_ok() && detached.is_ok()
}

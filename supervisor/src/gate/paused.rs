//! The unotify backend's waiting exec: how one paused in its `execve` is answered
//! (continue, fail with an errno and a line on its stderr) and, when escalated, how it is
//! held while the copy runs, how its stdin/stdout/stderr are handed over and how it ends
//! with the copy's status (the [`escalate::Caller`] of this backend).
//!
//! Below the decision: [`super::decision`] and [`crate::escalate`] call in here, nothing
//! here calls back up.

use std::cell::OnceCell;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;

use kernel::memory::ExecRequest;
use kernel::memory::MemoryAccess;
use kernel::pidfd::PidFd;
use kernel::procfs;
use kernel::ptrace::{self, Resume, Stop};
use kernel::remote_fd::{self, FdHandoff};
use kernel::seccomp::listener::{Listener, Notification};

use super::decision::{ExecFacts, Gate};
use super::shown;
use crate::escalate;
use crate::session::ExitStatus;

/// An exec paused by the seccomp listener.
pub(crate) struct Unotified {
    pub n: Notification,
    pub req: ExecRequest,
    pub reach: Reach,
    /// An exec of an escalated copy's tree, outside the sandbox.
    pub outside: bool,
    /// The caller's working directory, read once while it waits: the escalation checks
    /// and the copy use the same reading (a thread of the caller could `chdir` between
    /// two), and `/proc/PID/cwd` costs a path lookup and a permission check each time.
    pub cwd: OnceCell<PathBuf>,
}

impl Unotified {
    pub fn new(n: Notification, req: ExecRequest, reach: Reach, outside: bool) -> Unotified {
        Unotified {
            n,
            req,
            reach,
            outside,
            cwd: OnceCell::new(),
        }
    }

    fn cwd(&self) -> &PathBuf {
        self.cwd.get_or_init(|| procfs::cwd_of(self.req.tid))
    }
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
        ExecFacts {
            ppid: procfs::ppid_of(p.req.tid),
            ..self.escalation_facts(p)
        }
    }

    fn escalation_facts(&self, p: &Unotified) -> ExecFacts {
        // No parent: only the record needs it, and it is read while the copy runs
        // (`Caller::parent`) rather than before it can start (a /proc open and render).
        ExecFacts {
            pid: i32::try_from(p.req.tid).unwrap_or(-1),
            program: p.req.path.clone(),
            argv: p.req.argv_lossy(),
            cwd: p.cwd().clone(),
            ppid: None,
        }
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
        let process = PidFd::of_thread(p.req.tid).ok()?;
        let requested = escalate::Requested {
            // The directory the checks saw (read once while it waits).
            cwd: p.cwd().clone(),
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
            stopped: false,
            answered: false,
        };
        Some((caller, requested))
    }
}

/// Who execs what, from where: read from `/proc` while the caller is paused.
pub(crate) fn facts_of(req: &ExecRequest) -> ExecFacts {
    ExecFacts {
        pid: i32::try_from(req.tid).unwrap_or(-1),
        program: req.path.clone(),
        argv: req.argv_lossy(),
        cwd: procfs::cwd_of(req.tid),
        ppid: procfs::ppid_of(req.tid),
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
    /// Held in a ptrace stop right after its exec syscall (by [`stop_caller`] before the
    /// copy starts, or by [`escalate::Caller::park`] while it runs): what is left to do
    /// at the end is set its registers and detach.
    stopped: bool,
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
            let stopped = matches!(stop_caller(self.tid), Ok(true));
            self.stopped = stopped;
            stopped
        };
        // A caller that is gone needs no answer.
        self.answered = !held;
        held
    }

    fn park(&mut self) {
        // The caller waits killably: while the copy runs, take it to the stop the hand-back
        // needs (interrupt, answer its exec with an errno it never sees, catch the stop),
        // so that after the copy's exit only its registers are left to set. Off the
        // critical path: the copy is already running on its own.
        if !self.reach.wait_killable || self.stopped || self.answered {
            return;
        }
        match park_caller(&self.listener, self.id, self.tid) {
            Parked::Stopped => self.stopped = true,
            // Killed while the copy starts: nothing to answer, nothing to hand back (and
            // its exit, which the copy's watch sees, kills the copy).
            Parked::Gone => self.answered = true,
            // Not seized (ptrace refused): the hand-back tries again the slow way.
            Parked::NotSeized => {}
        }
    }

    fn stdio(&mut self) -> Result<[Option<OwnedFd>; 3], String> {
        caller_stdio(self.reach.fd_handoff, &self.process, self.tid)
    }

    fn process(&self) -> Option<&PidFd> {
        Some(&self.process)
    }

    fn parent(&self) -> Option<i32> {
        // Held (answered not yet, or in our ptrace stop), so its pid still names it unless
        // it was killed and reaped meanwhile: a pid that can still be signalled (0: only
        // checked) after the read was not reused before it.
        let ppid = procfs::ppid_of(self.tid)?;
        self.process.send_signal(0).is_ok().then_some(ppid)
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
        if self.answered && !self.stopped {
            // Parked and found gone.
            return false;
        }
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
        if self.reach.wait_killable && !self.stopped {
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
    if caller.reach.wait_killable && !caller.stopped {
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
    if set.is_err() || detached.is_err() {
        // Killed while held: a traced zombie is ours to collect before its own parent
        // (the shell waiting for it) can see it exit.
        let _ = ptrace::wait_stop(tid);
        return false;
    }
    true
}

/// How [`park_caller`] left the caller.
enum Parked {
    /// In a ptrace stop right after its exec syscall, which returned an errno.
    Stopped,
    /// Killed (and collected).
    Gone,
    /// Not seized; still waiting in its exec.
    NotSeized,
}

/// Seize and interrupt a caller waiting killably in its exec, answer the exec with an
/// errno, and wait for the stop it takes before running one instruction of its own.
fn park_caller(listener: &Listener, id: u64, tid: u32) -> Parked {
    if ptrace::seize(tid).is_err() {
        return Parked::NotSeized;
    }
    if ptrace::interrupt(tid).is_err() || listener.respond_errno(id, libc::EPERM).is_err() {
        // Gone (ENOENT: killed while we ran): collect it if it became our traced zombie.
        if ptrace::detach(tid).is_err() {
            let _ = ptrace::wait_stop(tid);
        }
        return Parked::Gone;
    }
    match ptrace::wait_stop(tid) {
        // A signal-delivery stop is as good: the same registers, and the detach at the
        // end suppresses that signal (the caller is about to be ended anyway).
        Ok(Stop::Interrupt) | Ok(Stop::Signal(_)) => Parked::Stopped,
        Ok(Stop::Gone) | Err(_) => Parked::Gone,
    }
}

/// Writes `line` on the caller's stderr: why its exec was refused. Bounded: a stderr
/// nobody reads must not stall the notification thread. With the /proc reopen hand-off a
/// stderr that is a regular file gets the line at its current offset, which the caller's
/// own next write does not move past (a separate open file description).
fn tell_caller(tid: u32, handoff: FdHandoff, mut line: String) {
    let Ok(pidfd) = PidFd::of_thread(tid) else {
        return;
    };
    let fd = match kernel::remote_fd::copy_fd(handoff, &pidfd, tid, 2) {
        Ok(fd) => fd,
        Err(err) => {
            tracing::debug!(tid, "cannot reach the caller's stderr: {err}");
            return;
        }
    };
    // One write of at most PIPE_BUF bytes into a writable pipe never blocks.
    if line.len() > 4000 {
        let mut cut = 4000;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push_str("...");
    }
    line.push('\n');
    if kernel::pidfd::wait_writable(fd.as_fd(), 100) {
        let _ = std::fs::File::from(fd).write_all(line.as_bytes());
    }
}

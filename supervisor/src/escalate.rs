//! Escalation: run the supervisor's own copy of a checked exec outside the sandbox, on the
//! caller's stdin/stdout/stderr, in its cwd, with its environment; then end the paused
//! caller with exactly that status.
//!
//! The copy is what was checked: the path, argv and env read while the caller was paused.
//! Nothing the caller does afterwards changes what runs, which is why escalation never uses
//! `SECCOMP_USER_NOTIF_FLAG_CONTINUE`. One OS thread does the whole sequence, since ptrace
//! belongs to the thread that seized.

use std::ffi::OsString;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kernel::pidfd::PidFd;
use kernel::remote_fd::{self, FdHandoff};
use kernel::seccomp::listener::Listener;

use crate::session::ExitStatus;
use kernel::ptrace::{self, Resume, Stop};

/// What to run, as read from the paused caller.
#[derive(Debug)]
pub struct Job {
    pub notification_id: u64,
    pub tid: u32,
    /// The filter waits killably (5.19+): answer the exec, then catch the caller's stop.
    /// Otherwise: interrupt first, which withdraws the notification.
    pub wait_killable: bool,
    /// How the caller's stdin/stdout/stderr are copied.
    pub fd_handoff: FdHandoff,
    pub copy: Copy,
}

/// The supervisor's own copy of a checked exec (both backends run it the same way).
#[derive(Debug)]
pub struct Copy {
    pub path: PathBuf,
    pub argv: Vec<OsString>,
    /// `NAME=value` entries, in order.
    pub env: Vec<OsString>,
    pub cwd: PathBuf,
    /// The session's marker variable, so teardown recognises the copy and its children.
    pub marker: (String, String),
    /// Joins the session's cgroup before exec, so a timeout kills the copy's tree too.
    pub cgroup: Option<crate::cgroup::CgroupJoiner>,
}

/// How an escalation ended.
#[derive(Debug)]
pub enum Outcome {
    /// The copy ran; the caller was ended with this status.
    Ran {
        status: ExitStatus,
        duration: Duration,
    },
    /// The copy could not start; the caller's exec failed with this errno, as a real
    /// exec would have.
    SpawnFailed { error: String },
    /// One of the caller's stdin/stdout/stderr could not be handed over (a socket under the
    /// /proc reopen hand-off): nothing ran, the exec failed with `EACCES` and the reason
    /// went to the caller's stderr where that could be reached. Never run on a wrong fd.
    StdioUnavailable { error: String },
    /// The caller went away (killed) before or while we ran.
    CallerGone,
}

/// Hooks the session needs: register the copy's process so teardown can kill it.
pub trait Registry: Send + Sync {
    fn started(&self, pid: u32, pidfd: Arc<PidFd>);
    fn finished(&self, pid: u32);
}

/// Runs one escalation to its end. Blocking: call on a thread of its own.
pub fn run(mut job: Job, listener: &Listener, registry: &dyn Registry) -> Outcome {
    let caller = match crate::gate::pidfd_of(job.tid) {
        Ok(p) => p,
        Err(_) => return Outcome::CallerGone,
    };
    // Withdraw-first kernels: hold the caller in a ptrace stop for the whole run, so a
    // signal cannot withdraw the notification and restart the exec as a second request.
    if !job.wait_killable {
        match stop_caller(job.tid) {
            Ok(true) => {}
            Ok(false) | Err(_) => return Outcome::CallerGone,
        }
    } else if !listener.id_valid(job.notification_id) {
        return Outcome::CallerGone;
    }

    let stdio = match caller_stdio(&job, &caller) {
        Ok(stdio) => stdio,
        Err(error) => {
            let argv: Vec<String> = job
                .copy
                .argv
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            let line = format!(
                "execgate: `{}` was not run outside the sandbox: {error}",
                crate::shown(&argv)
            );
            crate::gate::tell_caller(job.tid, job.fd_handoff, line);
            if job.wait_killable {
                let _ = listener.respond_errno(job.notification_id, libc::EACCES);
            } else {
                finish(&job, listener, &caller, Resume::Fail(libc::EACCES));
            }
            return Outcome::StdioUnavailable { error };
        }
    };
    let started = Instant::now();
    let cgroup = job.copy.cgroup.take();
    let spawned = crate::teardown::ChildRegistry::global()
        .spawn(|| spawn_copy(&job.copy, stdio, cgroup), |c| Some(c.id()));
    let mut child = match spawned {
        Ok(child) => child,
        Err(err) => {
            let errno = err.raw_os_error().unwrap_or(libc::ENOEXEC);
            if job.wait_killable {
                // Still paused in its exec: the answer is simply that errno.
                let _ = listener.respond_errno(job.notification_id, errno);
            } else {
                finish(&job, listener, &caller, Resume::Fail(errno));
            }
            return Outcome::SpawnFailed {
                error: err.to_string(),
            };
        }
    };
    let pid = child.id();
    let copy = PidFd::open(pid).map(Arc::new);
    if let Ok(copy) = &copy {
        registry.started(pid, copy.clone());
    }
    // The copy stands in for the caller's exec: if the caller is killed while it runs
    // (`timeout`, a signal to its process group), the copy must not run on, outside the
    // sandbox, after its caller is gone. Which signal killed the caller is not ours to
    // read, so the copy gets SIGKILL.
    if let Ok(copy) = &copy
        && kernel::pidfd::first_exited(&[copy.as_ref(), &caller]).ok() == Some(1)
    {
        let _ = copy.send_signal(libc::SIGKILL);
    }
    // Our own child, never traced: a plain waitpid on its pid is safe.
    let waited = child.wait();
    crate::teardown::ChildRegistry::global().release(pid);
    registry.finished(pid);
    let duration = started.elapsed();
    let status = convert(waited);
    let resume = Resume::ExitGroup(status.code() & 0xff);
    if let ExitStatus::Signaled(sig) = status {
        // Mirror a death by signal: queue the signal for the stopped caller, with
        // exit_group(128+sig) behind it in case the caller ignores or handles it.
        if finish_with_signal(&job, listener, &caller, resume, sig) {
            return Outcome::Ran { status, duration };
        }
        return Outcome::CallerGone;
    }
    if finish(&job, listener, &caller, resume) {
        Outcome::Ran { status, duration }
    } else {
        Outcome::CallerGone
    }
}

/// Copies of the caller's fds 0, 1 and 2; `None` for one the caller has closed (the copy
/// gets `/dev/null` there). Any other failure is the whole escalation's: a command must not
/// run with a substitute for the stream it was given.
fn caller_stdio(job: &Job, caller: &PidFd) -> Result<[Option<OwnedFd>; 3], String> {
    const NAMES: [&str; 3] = ["stdin", "stdout", "stderr"];
    let mut stdio: [Option<OwnedFd>; 3] = [None, None, None];
    for (fd, slot) in (0..).zip(stdio.iter_mut()) {
        match remote_fd::copy_fd(job.fd_handoff, caller, job.tid, fd) {
            Ok(copy) => *slot = Some(copy),
            Err(err) if err.is_not_open() => {}
            Err(err) => {
                let name = NAMES.get(fd as usize).copied().unwrap_or("fd");
                let hint = if job.fd_handoff == FdHandoff::ProcReopen {
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

/// A copy's wait status as the shell sees it (255 when it could not be read).
pub(crate) fn convert(waited: io::Result<std::process::ExitStatus>) -> ExitStatus {
    match waited {
        Ok(st) => match (st.code(), st.signal()) {
            (Some(code), _) => ExitStatus::Exited(code),
            (None, Some(sig)) => ExitStatus::Signaled(sig),
            _ => ExitStatus::Exited(255),
        },
        Err(_) => ExitStatus::Exited(255),
    }
}

/// Starts the copy on the caller's fds 0, 1, 2 (`/dev/null` for one it did not have).
pub(crate) fn spawn_copy(
    job: &Copy,
    stdio: [Option<OwnedFd>; 3],
    cgroup: Option<crate::cgroup::CgroupJoiner>,
) -> io::Result<std::process::Child> {
    let mut cmd = Command::new(&job.path);
    if let Some(arg0) = job.argv.first() {
        cmd.arg0(arg0);
    }
    cmd.args(job.argv.iter().skip(1));
    cmd.env_clear();
    for var in &job.env {
        let bytes = var.as_bytes();
        if let Some(eq) = bytes.iter().position(|&b| b == b'=') {
            cmd.env(
                std::ffi::OsStr::from_bytes(&bytes[..eq]),
                std::ffi::OsStr::from_bytes(&bytes[eq + 1..]),
            );
        }
    }
    cmd.env(&job.marker.0, &job.marker.1);
    cmd.current_dir(&job.cwd);
    let [stdin, stdout, stderr] = stdio;
    cmd.stdin(stdin.map(Stdio::from).unwrap_or_else(Stdio::null));
    cmd.stdout(stdout.map(Stdio::from).unwrap_or_else(Stdio::null));
    cmd.stderr(stderr.map(Stdio::from).unwrap_or_else(Stdio::null));
    let mut hooks: Vec<kernel::process::ChildHook> = Vec::new();
    if let Some(joiner) = cgroup {
        hooks.push(Box::new(move || {
            joiner
                .join_in_child()
                .map_err(|e| io::Error::from_raw_os_error(e as i32))
        }));
    }
    kernel::process::die_with_supervisor(&mut cmd, hooks);
    crate::spawner::spawn(cmd)
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

/// Brings the caller to a stop right after its exec returned, sets how it resumes, and
/// detaches. False when the caller is gone.
fn finish(job: &Job, listener: &Listener, caller: &PidFd, resume: Resume) -> bool {
    finish_with(job, listener, caller, resume, None)
}

fn finish_with_signal(
    job: &Job,
    listener: &Listener,
    caller: &PidFd,
    resume: Resume,
    sig: i32,
) -> bool {
    finish_with(job, listener, caller, resume, Some(sig))
}

fn finish_with(
    job: &Job,
    listener: &Listener,
    caller: &PidFd,
    resume: Resume,
    signal: Option<i32>,
) -> bool {
    if job.wait_killable {
        // The caller waits killably: interrupt (it keeps waiting), then answer with any
        // errno. It stops before running one instruction of its own, the errno in rax.
        if ptrace::seize(job.tid).is_err() || ptrace::interrupt(job.tid).is_err() {
            return false;
        }
        if listener
            .respond_errno(job.notification_id, libc::EPERM)
            .is_err()
        {
            // Gone (ENOENT): killed while we ran.
            let _ = ptrace::detach(job.tid);
            return false;
        }
        match ptrace::wait_stop(job.tid) {
            Ok(Stop::Interrupt) | Ok(Stop::Signal(_)) => {}
            Ok(Stop::Gone) | Err(_) => return false,
        }
    }
    let set = ptrace::set_resume(job.tid, resume);
    if let (Ok(()), Some(sig)) = (&set, signal) {
        let _ = caller.send_signal(sig);
    }
    let detached = ptrace::detach(job.tid);
    set.is_ok() && detached.is_ok()
}

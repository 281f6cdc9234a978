//! The ptrace half of escalation: end a paused exec with a status of our choosing.
//!
//! A seccomp answer can only set a return value, and a failed exec makes bash exit
//! 126/127. So the supervisor seizes the paused caller, lets its exec syscall return (or,
//! on kernels without `WAIT_KILLABLE_RECV`, interrupts it), and rewrites its registers so
//! the syscall instruction runs again as `exit_group(status)`. `orig_rax = -1` keeps the
//! kernel from restarting the exec. Everything here must run on ONE thread per tracee:
//! ptrace belongs to the thread that seized.
//!
//! Owns: seize, interrupt, wait for a stop, detach (portable, here) and the register
//! rewrite (one file per architecture: `x86_64.rs`, `aarch64.rs`). Must never decide whether
//! an exec is escalated, nor trace anything but a paused caller of our own session.

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "x86_64")]
mod x86_64;

#[cfg(target_arch = "aarch64")]
pub use aarch64::set_resume;
#[cfg(target_arch = "x86_64")]
pub use x86_64::set_resume;

use std::io;

/// How a `waitpid` on a tracee came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// `PTRACE_EVENT_STOP` (from `PTRACE_INTERRUPT`).
    Interrupt,
    /// A signal-delivery stop; the signal is suppressed on detach.
    Signal(i32),
    /// The tracee is gone (killed while we waited).
    Gone,
}

pub(crate) fn pid(tid: u32) -> libc::pid_t {
    libc::pid_t::try_from(tid).unwrap_or(libc::pid_t::MAX)
}

pub(crate) fn ptrace(req: libc::c_uint, tid: u32, data: usize) -> io::Result<()> {
    // SAFETY: requests used here take no pointer in `addr`; `data` is either an integer
    // (options, signal) or, for GETREGS/SETREGS, a pointer the caller keeps valid.
    let ret = unsafe {
        libc::ptrace(
            req,
            pid(tid),
            std::ptr::null_mut::<libc::c_void>(),
            data as *mut libc::c_void,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `PTRACE_SEIZE` without options: the tracee keeps running (or waiting).
pub fn seize(tid: u32) -> io::Result<()> {
    ptrace(libc::PTRACE_SEIZE, tid, 0)
}

/// `PTRACE_INTERRUPT`: stop at the next chance, as `PTRACE_EVENT_STOP`.
pub fn interrupt(tid: u32) -> io::Result<()> {
    ptrace(libc::PTRACE_INTERRUPT, tid, 0)
}

/// `PTRACE_DETACH`, letting the tracee run on with no signal injected.
pub fn detach(tid: u32) -> io::Result<()> {
    ptrace(libc::PTRACE_DETACH, tid, 0)
}

/// Waits for the tracee's next stop (`waitpid(tid, __WALL)`: never `-1`, which would
/// steal other processes' statuses).
pub fn wait_stop(tid: u32) -> io::Result<Stop> {
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid int for the kernel to fill.
        let ret = unsafe { libc::waitpid(pid(tid), &mut status, libc::__WALL) };
        if ret < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            if err.raw_os_error() == Some(libc::ECHILD) {
                return Ok(Stop::Gone);
            }
            return Err(err);
        }
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            return Ok(Stop::Gone);
        }
        if libc::WIFSTOPPED(status) {
            let event = (status >> 16) & 0xff;
            if event == libc::PTRACE_EVENT_STOP {
                return Ok(Stop::Interrupt);
            }
            return Ok(Stop::Signal(libc::WSTOPSIG(status)));
        }
    }
}

/// What the stopped tracee should do when it runs again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// Re-run the syscall instruction as `exit_group(code)`.
    ExitGroup(i32),
    /// Make the interrupted syscall return `-errno` (kernels without
    /// `WAIT_KILLABLE_RECV`, where the exec was withdrawn rather than answered).
    Fail(i32),
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub fn set_resume(_tid: u32, _resume: Resume) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "escalation hand-back is implemented for x86_64 only",
    ))
}

//! pidfds: a stable handle on a process (no pid reuse races), a way to copy its file
//! descriptors (`pidfd_getfd`, 5.6), and to signal it (`pidfd_send_signal`, 5.1).
//!
//! Owns: every `pidfd_*` syscall (open, getfd, send_signal, waitid on a pidfd) and the
//! process-group kill helpers. Must never reap a process that is being traced (see
//! [`PidFd::try_reap`]) nor decide when to kill: the supervisor does.

use crate::process::ExitStatus;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// An open pidfd.
#[derive(Debug)]
pub struct PidFd {
    fd: OwnedFd,
}

impl PidFd {
    /// `pidfd_open(pid, 0)`: `pid` must be a thread-group leader.
    pub fn open(pid: u32) -> io::Result<PidFd> {
        // SAFETY: pidfd_open takes two integers and returns a new fd or -1.
        let fd = crate::cvt(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0u32) })?;
        // SAFETY: the kernel just returned this descriptor (CLOEXEC) and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw(fd)) };
        Ok(PidFd { fd })
    }

    /// A pidfd for the process thread `tid` belongs to (`pidfd_open` wants a thread-group
    /// leader; a notification names the calling thread).
    pub fn of_thread(tid: u32) -> io::Result<PidFd> {
        match PidFd::open(tid) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                let tgid = crate::procfs::read_status(tid)?
                    .tgid
                    .ok_or_else(|| io::Error::other("no Tgid in /proc status"))?;
                PidFd::open(tgid)
            }
            other => other,
        }
    }

    /// A pidfd the kernel handed us another way (`CLONE_PIDFD`).
    pub(crate) fn from_owned(fd: OwnedFd) -> PidFd {
        PidFd { fd }
    }

    /// `pidfd_getfd`: a copy (CLOEXEC) of the process's descriptor `target`.
    pub fn get_fd(&self, target: RawFd) -> io::Result<OwnedFd> {
        getfd_raw(self.fd.as_raw_fd(), target)
    }

    /// `pidfd_send_signal(pidfd, sig, NULL, 0)`.
    pub fn send_signal(&self, sig: i32) -> io::Result<()> {
        send_signal_raw(self.fd.as_raw_fd(), sig)
    }

    /// Reaps the process if it has exited (`waitid(P_PIDFD, WEXITED | WNOHANG)`). Only
    /// exits are collected, so a ptrace stop is never consumed here by accident... as long
    /// as the process is not traced: call it once the pidfd is readable (the process is
    /// gone), never while an escalation holds it.
    pub fn try_reap(&self) -> io::Result<Option<ExitStatus>> {
        // SAFETY: siginfo_t is plain old data.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid siginfo_t for the kernel to fill.
        crate::cvt_int(unsafe {
            libc::waitid(
                libc::P_PIDFD,
                self.fd.as_raw_fd() as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG,
            )
        })?;
        // SAFETY: waitid filled `info` for a child (si_pid is 0 when nothing was ready).
        let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
        if pid == 0 {
            return Ok(None);
        }
        Ok(Some(match info.si_code {
            libc::CLD_EXITED => ExitStatus::Exited(status),
            _ => ExitStatus::Signaled(status),
        }))
    }
}

impl PidFd {
    /// Blocks until the process has exited, then reaps it. `Ok(None)`: it was reaped by
    /// someone else (a tracer's `waitpid`).
    pub fn wait_exit(&self) -> io::Result<Option<ExitStatus>> {
        loop {
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: `pfd` is one valid pollfd for the duration of the call.
            let ret = unsafe { libc::poll(&mut pfd, 1, -1) };
            if ret < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            match self.try_reap() {
                Ok(Some(status)) => return Ok(Some(status)),
                Ok(None) => continue,
                Err(e) if e.raw_os_error() == Some(libc::ECHILD) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }
}

/// `kill(-pgid, sig)`: signal a whole process group.
pub fn kill_process_group(pgid: u32, sig: i32) -> io::Result<()> {
    let pgid =
        libc::pid_t::try_from(pgid).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    if pgid <= 1 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: kill(2) takes integers; a negative pid names a process group.
    crate::cvt_int(unsafe { libc::kill(-pgid, sig) })?;
    Ok(())
}

/// Blocks until one of `pidfds` is readable (its process has exited) and returns its index.
/// Reaps nothing: usable for processes that are not our children.
pub fn first_exited(pidfds: &[&PidFd]) -> io::Result<usize> {
    let mut fds: Vec<libc::pollfd> = pidfds
        .iter()
        .map(|p| libc::pollfd {
            fd: p.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let count = libc::nfds_t::try_from(fds.len()).map_err(io::Error::other)?;
    loop {
        // SAFETY: `fds` is a valid array of `count` pollfd for the duration of the call.
        let ret = unsafe { libc::poll(fds.as_mut_ptr(), count, -1) };
        if ret < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        if let Some(i) = fds.iter().position(|f| f.revents != 0) {
            return Ok(i);
        }
    }
}

/// `kill(pid, sig)` for a process the caller knows is not yet reaped (its own child).
pub fn kill_unreaped_child(pid: u32, sig: i32) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    if pid <= 1 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: kill(2) takes integers; an unreaped child's pid cannot have been reused.
    crate::cvt_int(unsafe { libc::kill(pid, sig) })?;
    Ok(())
}

/// Waits up to `timeout_ms` for `fd` to be writable.
pub fn wait_writable(fd: BorrowedFd<'_>, timeout_ms: i32) -> bool {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: `pfd` is one valid pollfd for the duration of the call.
    let ready = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
    ready == 1 && pfd.revents & libc::POLLOUT != 0
}

fn raw(fd: libc::c_long) -> RawFd {
    // File descriptors fit in an int by definition; the kernel returned one.
    RawFd::try_from(fd).unwrap_or(-1)
}

impl AsFd for PidFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for PidFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// `pidfd_getfd(pidfd, target, 0)` on any descriptor number (detection passes -1 to learn
/// whether the call exists: a kernel that has it answers `EBADF`).
pub(crate) fn getfd_raw(pidfd: RawFd, target: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_getfd takes three integers and returns a new fd or -1.
    let fd = crate::cvt(unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd, target, 0u32) })?;
    // SAFETY: the kernel just returned this descriptor (CLOEXEC) and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(raw(fd)) })
}

/// `pidfd_send_signal(pidfd, sig, NULL, 0)` on any descriptor number (see [`getfd_raw`]).
pub(crate) fn send_signal_raw(pidfd: RawFd, sig: i32) -> io::Result<()> {
    // SAFETY: integers and a NULL siginfo, which the kernel accepts.
    crate::cvt(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd,
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn get_fd_copies_a_pipe_end_of_a_child() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pidfd = PidFd::open(child.id()).unwrap();
        // The child's stdin is the read end of our pipe: write, read it back via the copy.
        let copy = pidfd.get_fd(0).unwrap();
        child.stdin.as_mut().unwrap().write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        std::fs::File::from(copy).read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");
        pidfd.send_signal(libc::SIGKILL).unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn first_exited_names_the_process_that_ended_without_reaping_it() {
        let spawn = || {
            std::process::Command::new("sleep")
                .arg("5")
                .spawn()
                .unwrap()
        };
        let (mut running, mut ending) = (spawn(), spawn());
        let (a, b) = (
            PidFd::open(running.id()).unwrap(),
            PidFd::open(ending.id()).unwrap(),
        );
        b.send_signal(libc::SIGKILL).unwrap();
        assert_eq!(first_exited(&[&a, &b]).unwrap(), 1);
        // Not reaped by first_exited: the parent still collects the status.
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&ending.wait().unwrap()),
            Some(libc::SIGKILL)
        );
        a.send_signal(libc::SIGKILL).unwrap();
        running.wait().unwrap();
    }
}

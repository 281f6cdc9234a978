//! The session's own pseudo-terminal (as `sudo`'s `use_pty`): the pair is opened here
//! before the fork, the child makes the slave its controlling terminal, and the
//! supervisor's relay copies the window size through the master.
//!
//! Owns: `openpty`, `TIOCSCTTY`, `TIOCGWINSZ`/`TIOCSWINSZ`, the child's `setsid` +
//! `dup2` onto its standard descriptors, and the masks over other terminals' paths. Must never read or write terminal data (the
//! relay in `supervisor::terminal` does) nor decide whether a session gets a terminal.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;

/// A fresh pseudo-terminal pair, both ends close-on-exec in the supervisor.
#[derive(Debug)]
pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
}

/// The terminal's window size (`struct winsize`).
pub type WindowSize = libc::winsize;

/// Opens a pseudo-terminal pair with `size` (if any). The slave is opened `O_NOCTTY`
/// (glibc's and musl's `openpty`), so it never becomes the supervisor's own controlling
/// terminal, and both ends are close-on-exec: only [`ControllingTerminal`] hands the slave
/// to the session.
pub fn open(size: Option<&WindowSize>) -> io::Result<Pty> {
    let (mut master, mut slave): (libc::c_int, libc::c_int) = (-1, -1);
    let size_ptr = size.map_or(std::ptr::null(), std::ptr::from_ref);
    // SAFETY: master and slave are valid ints for the kernel to fill; name and termios are
    // null (not wanted); `size_ptr` is null or points to a winsize alive for the call.
    crate::cvt_int(unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            size_ptr,
        )
    })?;
    // SAFETY: openpty succeeded: both descriptors are open and owned by nobody else.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    for fd in [&master, &slave] {
        // SAFETY: fcntl with integer arguments on a descriptor we own.
        crate::cvt_int(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) })?;
    }
    Ok(Pty { master, slave })
}

/// `TIOCGWINSZ`: the window size of the terminal `fd`.
pub fn window_size(fd: BorrowedFd<'_>) -> io::Result<WindowSize> {
    // SAFETY: winsize is plain old data.
    let mut size: WindowSize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ fills a winsize; `size` is valid for the call.
    crate::cvt_int(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut size) })?;
    Ok(size)
}

/// `TIOCSWINSZ`: sets the window size of the terminal `fd` (on a master: the pair's, and
/// the slave's foreground process group gets `SIGWINCH`).
pub fn set_window_size(fd: BorrowedFd<'_>, size: &WindowSize) -> io::Result<()> {
    // SAFETY: TIOCSWINSZ reads a winsize; `size` is valid for the call.
    crate::cvt_int(unsafe {
        libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, std::ptr::from_ref(size))
    })?;
    Ok(())
}

/// `TIOCGPTPEER` (Linux 4.13): a new descriptor of the slave of `master`, opened
/// `O_NOCTTY` and close-on-exec; to read the slave's settings, which the master does not
/// share.
pub fn open_peer(master: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: TIOCGPTPEER takes open flags as an integer and returns a new descriptor.
    let fd = crate::cvt_int(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, flags) })?;
    // SAFETY: the ioctl returned a new descriptor, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// What the session's child does to take its own terminal: a new session (`setsid`),
/// the slave as its controlling terminal (`TIOCSCTTY`), and the slave on each standard
/// descriptor that was the person's terminal; the others (a pipe, a file) stay.
#[derive(Debug, Clone)]
pub struct ControllingTerminal {
    slave: Arc<OwnedFd>,
    /// Which of descriptors 0, 1, 2 get the slave.
    replace: [bool; 3],
}

impl PartialEq for ControllingTerminal {
    fn eq(&self, other: &Self) -> bool {
        self.slave.as_raw_fd() == other.slave.as_raw_fd() && self.replace == other.replace
    }
}

impl Eq for ControllingTerminal {}

impl ControllingTerminal {
    pub fn new(slave: OwnedFd, replace: [bool; 3]) -> ControllingTerminal {
        ControllingTerminal {
            slave: Arc::new(slave),
            replace,
        }
    }

    /// Which of descriptors 0, 1, 2 get the slave.
    pub fn replaces(&self) -> [bool; 3] {
        self.replace
    }

    /// The slave's path (`/dev/pts/N`), as `/proc/self/fd` names it.
    pub fn slave_path(&self) -> io::Result<PathBuf> {
        std::fs::read_link(format!("/proc/self/fd/{}", self.slave.as_raw_fd()))
    }

    /// Child side (a confinement step, only async-signal-safe calls): must run in the
    /// process that becomes the session's program, and that process must not lead a
    /// process group (`setsid` fails with `EPERM` then). The slave's own descriptor stays
    /// close-on-exec; the copies on 0-2 are inherited.
    pub fn enter_in_child(&self) -> io::Result<()> {
        // SAFETY: setsid takes no arguments; async-signal-safe.
        crate::cvt_int(unsafe { libc::setsid() })?;
        let slave = self.slave.as_raw_fd();
        // SAFETY: ioctl with an integer argument on an open descriptor (0: do not steal a
        // terminal that is another session's; a fresh slave is nobody's).
        crate::cvt_int(unsafe { libc::ioctl(slave, libc::TIOCSCTTY, 0) })?;
        for (target, replace) in (0..).zip(self.replace) {
            if replace {
                // SAFETY: dup2 on open descriptors; async-signal-safe.
                crate::cvt_int(unsafe { libc::dup2(slave, target) })?;
            }
        }
        Ok(())
    }
}

/// Terminals the session must not reach by path (the person's, other sessions'): each is
/// covered by a bind mount of `/dev/null` in the tree's own mount namespace, so opening
/// `/dev/pts/N` there opens `/dev/null`. Terminals made after the session started (by
/// the session itself through `/dev/ptmx`, say) stay visible.
#[derive(Debug, Clone, Default)]
pub struct TerminalMasks {
    paths: Vec<CString>,
    /// The child is already in a private mount namespace of its own (the PID namespace
    /// step made one): no second one.
    in_own_namespace: bool,
}

impl TerminalMasks {
    /// `paths`: absolute paths of terminal devices, listed before the fork.
    /// `in_own_namespace`: the child will already be in a private mount namespace of its
    /// own when it applies them.
    pub fn new(paths: &[PathBuf], in_own_namespace: bool) -> io::Result<TerminalMasks> {
        let paths = paths
            .iter()
            .map(|p| CString::new(p.as_os_str().as_bytes()).map_err(io::Error::other))
            .collect::<io::Result<_>>()?;
        Ok(TerminalMasks {
            paths,
            in_own_namespace,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// Child side (async-signal-safe: raw syscalls on prepared strings), with
    /// `CAP_SYS_ADMIN` over its mount namespace (before the capabilities are dropped): a
    /// private mount namespace of its own unless it is in one already (nothing propagates
    /// back to the host), then `/dev/null` bound over each path. A path gone since it was
    /// listed is skipped.
    pub fn apply_in_child(&self) -> io::Result<()> {
        if self.paths.is_empty() {
            return Ok(());
        }
        if !self.in_own_namespace {
            // SAFETY: unshare takes an integer flag set.
            crate::cvt_int(unsafe { libc::unshare(libc::CLONE_NEWNS) })?;
            crate::namespaces::make_mounts_private()?;
        }
        for path in &self.paths {
            // SAFETY: both are valid NUL-terminated strings for the duration of the call.
            let ret = unsafe {
                libc::mount(
                    c"/dev/null".as_ptr(),
                    path.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                )
            };
            if ret < 0 {
                let err = io::Error::last_os_error();
                if err.raw_os_error() != Some(libc::ENOENT) {
                    return Err(err);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn a_new_pair_carries_the_size_it_was_given() {
        // SAFETY: winsize is plain old data.
        let mut size: WindowSize = unsafe { std::mem::zeroed() };
        size.ws_row = 33;
        size.ws_col = 101;
        let pty = open(Some(&size)).unwrap();
        let got = window_size(pty.slave.as_fd()).unwrap();
        assert_eq!((got.ws_row, got.ws_col), (33, 101));
        size.ws_col = 80;
        set_window_size(pty.master.as_fd(), &size).unwrap();
        assert_eq!(window_size(pty.slave.as_fd()).unwrap().ws_col, 80);
        // SAFETY: fcntl F_GETFD on descriptors we own.
        let flags = unsafe { libc::fcntl(pty.slave.as_raw_fd(), libc::F_GETFD) };
        assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
    }
}

//! The fail-closed watchdog: a forked process that kills the supervisor's whole cgroup
//! when the supervisor dies.
//!
//! `PR_SET_PDEATHSIG` reaches only the supervisor's direct children; a sandboxed
//! grandchild orphaned by the supervisor's death would live on (unable to exec: the
//! listener is gone). The watchdog blocks reading a pipe whose only write end the
//! supervisor holds; end of file means the supervisor is gone, and one write of `1` to the
//! supervisor cgroup's `cgroup.kill` ends every session's tree at once.
//!
//! Forked without exec from a multi-threaded process: the child only makes
//! async-signal-safe calls, and closes every descriptor but its two (a copied listener fd
//! would keep the tree's execs waiting instead of failing).
//!
//! Owns: the watchdog process and its pipe. Must never outlive its purpose: it exits when
//! the pipe closes, after writing `cgroup.kill` if the supervisor died.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Forks the watchdog. `kill_file` is an open `cgroup.kill`. Returns the supervisor's end
/// of the pipe: keep it open for as long as the supervisor lives.
pub fn spawn(kill_file: &OwnedFd) -> io::Result<OwnedFd> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for the kernel to fill.
    crate::cvt_int(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 returned two fresh descriptors that nothing else owns.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let kill_fd = kill_file.as_raw_fd();
    let read_fd = read_end.as_raw_fd();
    // The child below only calls async-signal-safe functions (setsid, sigaction, dup2,
    // close_range, read, write, _exit) and never returns into Rust code.
    let pid = crate::process::fork()?;
    if pid == 0 {
        // SAFETY: async-signal-safe calls only, on descriptors valid in the child.
        unsafe { watch(read_fd, kill_fd) }
    }
    drop(read_end);
    Ok(write_end)
}

/// The watchdog's whole life. Never returns.
///
/// # Safety
/// Call only in a freshly forked child; `read_fd` and `kill_fd` must be open.
unsafe fn watch(read_fd: libc::c_int, kill_fd: libc::c_int) -> ! {
    // SAFETY: async-signal-safe syscalls only, on integers and stack buffers.
    unsafe {
        // Out of the terminal's process group: Ctrl-C for the supervisor is not for us.
        libc::setsid();
        for sig in [
            libc::SIGINT,
            libc::SIGTERM,
            libc::SIGHUP,
            libc::SIGQUIT,
            libc::SIGPIPE,
        ] {
            libc::signal(sig, libc::SIG_IGN);
        }
        // Keep exactly the pipe (as 0) and cgroup.kill (as 1).
        if libc::dup2(read_fd, 0) < 0 || libc::dup2(kill_fd, 1) < 0 {
            libc::_exit(1);
        }
        libc::syscall(libc::SYS_close_range, 2u32, u32::MAX, 0u32);
        let mut byte = [0u8; 1];
        loop {
            let n = libc::read(0, byte.as_mut_ptr().cast(), 1);
            if n == 0 {
                break;
            }
            if n < 0 && *libc::__errno_location() != libc::EINTR {
                break;
            }
        }
        libc::write(1, b"1".as_ptr().cast(), 1);
        libc::_exit(0)
    }
}

//! execgate's kernel boundary, one module per kernel mechanism. Every raw syscall and
//! every `unsafe` of execgate lives here (and in the exec wrapper binary), each in a small
//! function that turns `-1/errno` into an error naming the step and carries a `SAFETY:`
//! comment naming its invariant.
//!
//! - [`seccomp`]: the filter program and the user-notification listener.
//! - [`memory`]: reading a paused process's memory.
//! - [`pidfd`]: pidfds (open, wait, signal, `pidfd_getfd`).
//! - [`ptrace`]: ending a paused exec with a chosen status (one file per architecture).
//! - [`process`]: every fork and clone, and what runs between fork and exec.
//! - [`namespaces`]: the PID and mount namespaces of the sandboxed tree.
//! - [`procfs`]: the one parser of each `/proc` file execgate reads.
//! - [`capabilities`]: the one capability check.
//! - [`remote_fd`]: copying descriptors out of a paused process.
//! - [`unix_socket`]: unix socket addresses, `sock_diag`, connecting on a caller's behalf.
//! - [`terminal`]: the session's own pseudo-terminal (`openpty`, `TIOCSCTTY`, window size).
//! - [`watchdog`]: the process that kills a session's tree if the supervisor dies.
//! - [`mod@detect`]: feature detection, run once per process start.
//!
//! Must never decide anything: policy lives in `policy`, sessions and backend choice in
//! `supervisor`.

pub mod capabilities;
pub mod detect;
pub mod memory;
pub mod namespaces;
pub mod pidfd;
pub mod process;
pub mod procfs;
pub mod ptrace;
pub mod remote_fd;
pub mod seccomp;
pub mod terminal;
pub mod unix_socket;
pub mod watchdog;

pub use detect::{Features, detect};

use std::io;

/// `-1/errno` to `io::Error`, for the raw calls below.
pub(crate) fn cvt(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Like [`cvt`] for calls returning `c_int`.
pub(crate) fn cvt_int(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

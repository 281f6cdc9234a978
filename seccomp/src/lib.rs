//! execgate's kernel boundary. Every raw syscall of the exec path lives here, each in a
//! small function that turns `-1/errno` into an error naming the step.
//!
//! Owns: the seccomp filter program ([`filter`]), the user-notification listener
//! ([`listener`]), reading a paused process's memory ([`memory`]), pidfds ([`pidfd`]), and
//! what runs in the child between fork and exec ([`child`]). Must never decide anything:
//! policy lives in `policy`, sessions in `supervisor`.

pub mod child;
pub mod filter;
pub mod listener;
pub mod memory;
pub mod mount_ns;
pub mod pid_ns;
pub mod pidfd;
pub mod remote_fd;
pub mod watchdog;

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

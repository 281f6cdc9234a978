//! Namespaces for the sandboxed tree: a PID namespace with its own `/proc` ([`pid`]) and a
//! private mount namespace with read-only binds ([`mount`]).
//!
//! Owns: `unshare`, the namespace's mounts and uid/gid maps. Must never fork by itself
//! outside [`crate::process`]'s rules (only async-signal-safe calls between fork and exec)
//! and never decide whether a session gets a namespace (the supervisor does, from
//! [`mod@crate::detect`]).

pub mod mount;
pub mod pid;

use std::io;

/// Makes every mount of this (new) mount namespace private, so nothing mounted below
/// propagates back to the host. Async-signal-safe: one raw syscall.
pub(crate) fn make_mounts_private() -> io::Result<()> {
    // SAFETY: valid NUL-terminated strings (or NULL) for the duration of the call.
    crate::cvt_int(unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    })?;
    Ok(())
}

/// Mounts a fresh `proc` on `/proc` (by the first process of a new PID namespace, so it
/// shows only that namespace). Async-signal-safe: one raw syscall.
pub(crate) fn mount_proc() -> io::Result<()> {
    // SAFETY: valid NUL-terminated strings for the duration of the call.
    crate::cvt_int(unsafe {
        libc::mount(
            c"proc".as_ptr(),
            c"/proc".as_ptr(),
            c"proc".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        )
    })?;
    Ok(())
}

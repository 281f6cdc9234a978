//! Namespaces for the sandboxed tree: a PID namespace with its own `/proc` ([`pid`]), a
//! private mount namespace with read-only binds ([`mount`]), IPC, UTS and cgroup
//! namespaces ([`ISOLATION`]) made with the PID one, and in proxy mode a network namespace
//! with only loopback ([`net`]).
//!
//! Owns: `unshare`, the namespace's mounts and uid/gid maps. Must never fork by itself
//! outside [`crate::process`]'s rules (only async-signal-safe calls between fork and exec)
//! and never decide whether a session gets a namespace (the supervisor does, from
//! [`mod@crate::detect`]).

pub mod mount;
pub mod net;
pub mod pid;

use std::io;

/// The namespaces made with the PID and mount ones, so the tree reaches nothing of the
/// host through them: IPC (SysV segments, semaphores, message queues and POSIX message
/// queues of processes outside), UTS (a host name change stays inside) and cgroup (the
/// session's cgroup is the tree's root: it cannot move itself out of it, and its limits).
/// The cgroup namespace is made after the child joined the session's cgroup.
pub const ISOLATION: libc::c_int = libc::CLONE_NEWIPC | libc::CLONE_NEWUTS | libc::CLONE_NEWCGROUP;

/// The names of the namespaces a session's tree runs in, for the session report.
pub fn names(user_namespace: bool) -> Vec<String> {
    let mut names: Vec<String> = ["pid", "mount", "ipc", "uts", "cgroup"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    if user_namespace {
        names.push("user".to_owned());
    }
    names
}

/// `unshare(`[`ISOLATION`]`)` on its own, for a child that holds `CAP_SYS_ADMIN` but gets no
/// PID namespace (whose `unshare` otherwise makes these too). Async-signal-safe: one raw
/// syscall.
pub fn unshare_isolation_in_child() -> io::Result<()> {
    // SAFETY: unshare takes an integer flag set.
    crate::cvt_int(unsafe { libc::unshare(ISOLATION) })?;
    Ok(())
}

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

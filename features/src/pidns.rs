//! A PID namespace with its own `/proc` for the sandboxed tree (so it cannot read other
//! processes' environments): `unshare(CLONE_NEWPID | CLONE_NEWNS)` and a `proc` mount made
//! by the namespace's first process. Needs `CAP_SYS_ADMIN`; container engines' default
//! profiles refuse it. Probed in a throwaway child, whose mount namespace is private.

use crate::{Feature, KernelVersion, child};

/// Mount namespaces and the PID namespace's own procfs predate every kernel we run on.
pub const PID_NAMESPACE_SINCE: KernelVersion = KernelVersion::new(3, 8, 0);

const UNSHARE: usize = 0;
const PRIVATE: usize = 1;
const FORK: usize = 2;
const MOUNT: usize = 3;

/// The child: unshare, make mounts private, fork the namespace's PID 1 and have it mount
/// `/proc` (raw `clone`: the caller may be multi-threaded).
fn probe(report: &mut [i32; 4]) {
    // SAFETY: integer flags; only in the forked, single-threaded probe child.
    if unsafe { libc::unshare(libc::CLONE_NEWPID | libc::CLONE_NEWNS) } != 0 {
        report[UNSHARE] = child::errno();
        return;
    }
    // SAFETY: valid NUL-terminated strings (or NULL) for the duration of the call.
    let private = unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    if private != 0 {
        report[PRIVATE] = child::errno();
        return;
    }
    // SAFETY: clone with SIGCHLD only is fork; the child makes raw syscalls only.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::c_ulong::try_from(libc::SIGCHLD).unwrap_or(17),
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if pid < 0 {
        report[FORK] = child::errno();
        return;
    }
    if pid == 0 {
        // SAFETY: valid NUL-terminated strings for the duration of the call.
        let mounted = unsafe {
            libc::mount(
                c"proc".as_ptr(),
                c"/proc".as_ptr(),
                c"proc".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                std::ptr::null(),
            )
        };
        let code = if mounted == 0 { 0 } else { child::errno() };
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(code) }
    }
    let mut status = 0;
    // SAFETY: waitpid on our own child with a valid int to fill.
    if unsafe { libc::waitpid(libc::pid_t::try_from(pid).unwrap_or(-1), &mut status, 0) } < 0 {
        report[MOUNT] = child::errno();
    } else if libc::WIFEXITED(status) {
        report[MOUNT] = libc::WEXITSTATUS(status);
    } else {
        report[MOUNT] = libc::EINTR;
    }
}

pub(crate) fn detect() -> Feature {
    let since = PID_NAMESPACE_SINCE;
    match child::run(probe) {
        Ok([0, 0, 0, 0]) => Feature::probed(
            true,
            since,
            "unshare(CLONE_NEWPID|CLONE_NEWNS) and a /proc of its own succeeded",
        ),
        Ok(report) => {
            let (step, errno) = [
                ("unshare(CLONE_NEWPID|CLONE_NEWNS)", report[UNSHARE]),
                ("making mounts private", report[PRIVATE]),
                ("fork in the namespace", report[FORK]),
                ("mounting /proc in the namespace", report[MOUNT]),
            ]
            .into_iter()
            .find(|(_, e)| *e != 0)
            .unwrap_or(("probe", 0));
            let mut detail = format!("{step}: {}", crate::errno_name_raw(errno));
            if errno == libc::EPERM {
                detail.push_str(" (needs CAP_SYS_ADMIN)");
            }
            Feature::probed(false, since, detail)
        }
        Err(e) => Feature::probed(false, since, format!("probe child: {e}")),
    }
}

pub(crate) fn unknown() -> Feature {
    Feature::probed(false, PID_NAMESPACE_SINCE, "not reported")
}

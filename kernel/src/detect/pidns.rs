//! A PID namespace with its own `/proc` for the sandboxed tree (so it cannot read other
//! processes' environments), with the IPC, UTS and cgroup namespaces made in the same call
//! (`crate::namespaces::ISOLATION`): `unshare(CLONE_NEWPID | CLONE_NEWNS | ...)` and a `proc` mount made
//! by the namespace's first process. With `CAP_SYS_ADMIN` directly; without it, inside a
//! new user namespace that maps only our own uid and gid (unprivileged user namespaces:
//! often allowed on hosts, refused by container engines' default profiles and by some
//! distributions' policies). Probed the way the supervisor will do it, in a throwaway
//! child whose mount namespace is private.

use crate::detect::{Feature, KernelVersion};
use crate::process::throwaway as child;

/// Mount namespaces and the PID namespace's own procfs predate every kernel we run on.
pub const PID_NAMESPACE_SINCE: KernelVersion = KernelVersion::new(3, 8, 0);

const UNSHARE: usize = 0;
const PRIVATE: usize = 1;
const FORK: usize = 2;
const MOUNT: usize = 3;
const MAPS: usize = 4;

fn probe_privileged(report: &mut [i32; 5]) {
    probe(report, false);
}

fn probe_user_namespace(report: &mut [i32; 5]) {
    probe(report, true);
}

/// `N N 1\n` for an id, in a stack buffer (no allocation in the probe child).
fn id_map_line(id: u32, out: &mut [u8; 32]) -> usize {
    let mut digits = [0u8; 10];
    let mut n = id;
    let mut len = 0;
    loop {
        digits[len] = b'0' + u8::try_from(n % 10).unwrap_or(0);
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut at = 0;
    for _ in 0..2 {
        for i in (0..len).rev() {
            out[at] = digits[i];
            at += 1;
        }
        out[at] = b' ';
        at += 1;
    }
    out[at] = b'1';
    out[at + 1] = b'\n';
    at + 2
}

/// Writes `bytes` to a /proc file: 0 or errno.
fn write_proc(path: &std::ffi::CStr, bytes: &[u8]) -> i32 {
    // SAFETY: a valid NUL-terminated path; raw syscalls only.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return child::errno();
    }
    // SAFETY: `bytes` is valid for its length; `fd` was just opened.
    let written = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
    let code = if usize::try_from(written).ok() == Some(bytes.len()) {
        0
    } else {
        child::errno()
    };
    // SAFETY: closing the fd opened above.
    unsafe { libc::close(fd) };
    code
}

/// The child: unshare (with a user namespace first, when asked), make mounts private,
/// fork the namespace's PID 1 and have it mount `/proc` (raw `clone`: the caller may be
/// multi-threaded).
fn probe(report: &mut [i32; 5], user_namespace: bool) {
    let mut flags = libc::CLONE_NEWPID | libc::CLONE_NEWNS | crate::namespaces::ISOLATION;
    if user_namespace {
        flags |= libc::CLONE_NEWUSER;
    }
    // SAFETY: getuid/getgid cannot fail; read before the unshare changes the view.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    // SAFETY: integer flags; only in the forked, single-threaded probe child.
    if unsafe { libc::unshare(flags) } != 0 {
        report[UNSHARE] = child::errno();
        return;
    }
    if user_namespace {
        let mut line = [0u8; 32];
        let n = id_map_line(uid, &mut line);
        let mut code = write_proc(c"/proc/self/setgroups", b"deny");
        if code == 0 {
            code = write_proc(c"/proc/self/uid_map", &line[..n]);
        }
        if code == 0 {
            let n = id_map_line(gid, &mut line);
            code = write_proc(c"/proc/self/gid_map", &line[..n]);
        }
        if code != 0 {
            report[MAPS] = code;
            return;
        }
    }
    if let Err(e) = crate::namespaces::make_mounts_private() {
        report[PRIVATE] = e.raw_os_error().unwrap_or(libc::EIO);
        return;
    }
    let pid = match crate::process::fork() {
        Ok(pid) => pid,
        Err(e) => {
            report[FORK] = e.raw_os_error().unwrap_or(libc::EIO);
            return;
        }
    };
    if pid == 0 {
        let code = match crate::namespaces::mount_proc() {
            Ok(()) => 0,
            Err(e) => e.raw_os_error().unwrap_or(libc::EIO),
        };
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

/// Probes the way the supervisor will make the namespace: directly with `CAP_SYS_ADMIN`
/// (`cap_sys_admin`), else inside a user namespace.
pub(crate) fn detect(cap_sys_admin: bool) -> Feature {
    let since = PID_NAMESPACE_SINCE;
    let (probe, how): (fn(&mut [i32; 5]), &str) = if cap_sys_admin {
        (probe_privileged, "with CAP_SYS_ADMIN")
    } else {
        (
            probe_user_namespace,
            "in a user namespace (no CAP_SYS_ADMIN)",
        )
    };
    match child::run(probe) {
        Ok([0, 0, 0, 0, 0]) => Feature::probed(
            true,
            since,
            format!(
                "unshare(CLONE_NEWPID|CLONE_NEWNS|CLONE_NEWIPC|CLONE_NEWUTS|CLONE_NEWCGROUP) and a /proc of its own succeeded {how}"
            ),
        ),
        Ok(report) => {
            let detail = crate::detect::failed_namespace_step(
                &[
                    (
                        "unshare(CLONE_NEWPID|CLONE_NEWNS|CLONE_NEWIPC|CLONE_NEWUTS|CLONE_NEWCGROUP)",
                        report[UNSHARE],
                    ),
                    ("writing the user namespace's uid/gid maps", report[MAPS]),
                    ("making mounts private", report[PRIVATE]),
                    ("fork in the namespace", report[FORK]),
                    ("mounting /proc in the namespace", report[MOUNT]),
                ],
                how,
                cap_sys_admin,
            );
            Feature::probed(false, since, detail)
        }
        Err(e) => Feature::probed(false, since, format!("probe child: {e}")),
    }
}

pub(crate) fn unknown() -> Feature {
    Feature::probed(false, PID_NAMESPACE_SINCE, "not reported")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_map_lines_are_written_without_allocating() {
        let mut line = [0u8; 32];
        let n = id_map_line(0, &mut line);
        assert_eq!(&line[..n], b"0 0 1\n");
        let n = id_map_line(65534, &mut line);
        assert_eq!(&line[..n], b"65534 65534 1\n");
        let n = id_map_line(u32::MAX, &mut line);
        assert_eq!(&line[..n], b"4294967295 4294967295 1\n");
    }
}

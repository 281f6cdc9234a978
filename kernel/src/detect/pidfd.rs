//! pidfds: `pidfd_send_signal` (5.1), `pidfd_open` (5.3), `pidfd_getfd` (5.6).
//!
//! The supervisor duplicates a paused child's stdin/stdout/stderr with `pidfd_getfd` and
//! signals it with `pidfd_send_signal`. Each is probed with arguments the kernel rejects
//! after it has recognised the syscall: `ENOSYS` means the kernel (or a seccomp filter
//! above us) does not have it; any other errno means it is there.

use std::io;

use crate::detect::{Feature, KernelVersion};

pub const SEND_SIGNAL_SINCE: KernelVersion = KernelVersion::new(5, 1, 0);
pub const OPEN_SINCE: KernelVersion = KernelVersion::new(5, 3, 0);
pub const GETFD_SINCE: KernelVersion = KernelVersion::new(5, 6, 0);

/// What detection found out about pidfds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pidfd {
    pub open: Feature,
    pub getfd: Feature,
    pub send_signal: Feature,
}

/// `pidfd_open(getpid(), 0)`; the fd is closed again.
fn pidfd_open_self() -> io::Result<()> {
    crate::pidfd::PidFd::open(std::process::id()).map(drop)
}

/// `pidfd_getfd(-1, 0, 0)`: a valid kernel fails with `EBADF`.
fn pidfd_getfd_bad_fd() -> io::Error {
    match crate::pidfd::getfd_raw(-1, 0) {
        // Not expected; the descriptor is closed on drop.
        Ok(_) => io::Error::other("pidfd_getfd(-1) unexpectedly succeeded"),
        Err(e) => e,
    }
}

/// `pidfd_send_signal(-1, 0, NULL, 0)`: a valid kernel fails with `EBADF`. Signal 0 would
/// only test, and fd -1 cannot refer to a process.
fn pidfd_send_signal_bad_fd() -> io::Error {
    match crate::pidfd::send_signal_raw(-1, 0) {
        Ok(()) => io::Error::other("pidfd_send_signal(-1) unexpectedly succeeded"),
        Err(e) => e,
    }
}

/// With pidfd -1 the kernel checks the fd first, so its answer is `EBADF`. Anything
/// else came from elsewhere: `ENOSYS` from an old kernel (or a filter), `EPERM` from a
/// container's seccomp profile (Docker's default answers `EPERM` for `pidfd_getfd`
/// without `CAP_SYS_PTRACE`).
fn from_bad_args(call: &str, err: &io::Error, since: KernelVersion) -> Feature {
    Feature::probed(
        err.raw_os_error() == Some(libc::EBADF),
        since,
        format!("{call}: {}", crate::detect::errno_name(err)),
    )
}

pub(crate) fn detect() -> Pidfd {
    let open = match pidfd_open_self() {
        Ok(()) => Feature::probed(true, OPEN_SINCE, "pidfd_open(self) returned a pidfd"),
        Err(e) => Feature::probed(
            false,
            OPEN_SINCE,
            format!("pidfd_open(self): {}", crate::detect::errno_name(&e)),
        ),
    };
    Pidfd {
        open,
        getfd: from_bad_args("pidfd_getfd(-1, 0, 0)", &pidfd_getfd_bad_fd(), GETFD_SINCE),
        send_signal: from_bad_args(
            "pidfd_send_signal(-1, 0, NULL, 0)",
            &pidfd_send_signal_bad_fd(),
            SEND_SIGNAL_SINCE,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enosys_or_eperm_means_missing_and_ebadf_means_present() {
        let enosys = io::Error::from_raw_os_error(libc::ENOSYS);
        let ebadf = io::Error::from_raw_os_error(libc::EBADF);
        assert!(!from_bad_args("x", &enosys, GETFD_SINCE).available);
        assert!(from_bad_args("x", &ebadf, GETFD_SINCE).available);
        assert!(!from_bad_args("x", &io::Error::other("odd"), GETFD_SINCE).available);
        let eperm = io::Error::from_raw_os_error(libc::EPERM);
        assert!(!from_bad_args("x", &eperm, GETFD_SINCE).available);
    }
}

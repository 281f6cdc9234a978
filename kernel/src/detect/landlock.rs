//! Landlock: which ABI version the kernel offers, or why there is none.
//!
//! `landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)` returns the ABI
//! version; `ENOSYS` means the kernel was built without Landlock (or is older than 5.13),
//! `EOPNOTSUPP` that it was built with it but Landlock is not in the boot-time LSM list.

use std::io;

use serde::{Deserialize, Serialize};

use crate::detect::{How, KernelVersion};

pub const SINCE: KernelVersion = KernelVersion::new(5, 13, 0);

/// `LANDLOCK_CREATE_RULESET_VERSION` from `<linux/landlock.h>`.
const CREATE_RULESET_VERSION: u32 = 1 << 0;

/// The first kernel of each ABI version, 1-based: `ABI_SINCE[n - 1]` introduced ABI `n`.
pub const ABI_SINCE: [KernelVersion; 7] = [
    KernelVersion::new(5, 13, 0),
    KernelVersion::new(5, 19, 0),
    KernelVersion::new(6, 2, 0),
    KernelVersion::new(6, 7, 0),
    KernelVersion::new(6, 10, 0),
    KernelVersion::new(6, 12, 0),
    KernelVersion::new(6, 15, 0),
];

/// Why there is (or is no) Landlock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LandlockStatus {
    /// The ABI version was returned.
    Enabled,
    /// Built in, but not enabled at boot (`EOPNOTSUPP`): add `landlock` to `lsm=`.
    DisabledAtBoot,
    /// `ENOSYS`: not built into this kernel, too old, or hidden by a seccomp filter.
    NotInKernel,
    /// Any other error (e.g. `EPERM` from a container's seccomp filter).
    Unavailable,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Landlock {
    /// The ABI version, `None` when Landlock cannot be used.
    pub abi: Option<u32>,
    pub status: LandlockStatus,
    pub how: How,
    pub detail: String,
    /// The first kernel with Landlock (ABI 1).
    pub since: KernelVersion,
}

impl Landlock {
    pub fn available(&self) -> bool {
        self.abi.is_some()
    }

    /// Interprets the result of the version query.
    pub fn from_result(result: Result<u32, io::Error>) -> Self {
        let call = "landlock_create_ruleset(VERSION)";
        let (abi, status, detail) = match result {
            Ok(abi) => (
                Some(abi),
                LandlockStatus::Enabled,
                format!("{call} = {abi}"),
            ),
            Err(e) => {
                let status = match e.raw_os_error() {
                    Some(libc::ENOSYS) => LandlockStatus::NotInKernel,
                    Some(libc::EOPNOTSUPP) => LandlockStatus::DisabledAtBoot,
                    _ => LandlockStatus::Unavailable,
                };
                let hint = match status {
                    LandlockStatus::DisabledAtBoot => {
                        " (built in but not enabled: boot with lsm=landlock,...)"
                    }
                    LandlockStatus::NotInKernel => {
                        " (not built into this kernel, or older than 5.13)"
                    }
                    _ => "",
                };
                (
                    None,
                    status,
                    format!("{call}: {}{hint}", crate::detect::errno_name(&e)),
                )
            }
        };
        Self {
            abi,
            status,
            how: How::Probe,
            detail,
            since: SINCE,
        }
    }
}

/// `landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)`.
fn abi_version() -> io::Result<u32> {
    // SAFETY: with the VERSION flag the kernel requires a NULL attr and size 0 and
    // touches no memory.
    let r = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            CREATE_RULESET_VERSION,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    u32::try_from(r).map_err(io::Error::other)
}

pub fn detect() -> Landlock {
    Landlock::from_result(abi_version())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_reasons() {
        let l = Landlock::from_result(Ok(6));
        assert_eq!((l.abi, l.status), (Some(6), LandlockStatus::Enabled));
        let l = Landlock::from_result(Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP)));
        assert_eq!((l.abi, l.status), (None, LandlockStatus::DisabledAtBoot));
        assert!(l.detail.contains("lsm=landlock"), "{}", l.detail);
        let l = Landlock::from_result(Err(io::Error::from_raw_os_error(libc::ENOSYS)));
        assert_eq!((l.abi, l.status), (None, LandlockStatus::NotInKernel));
        let l = Landlock::from_result(Err(io::Error::from_raw_os_error(libc::EPERM)));
        assert_eq!((l.abi, l.status), (None, LandlockStatus::Unavailable));
    }

    #[test]
    fn abi_table_is_increasing() {
        assert!(ABI_SINCE.windows(2).all(|w| w[0] < w[1]));
    }
}

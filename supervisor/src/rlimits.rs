//! Per-session resource limits: chosen and clamped in the parent before fork
//! ([`ResourceLimits::prepare`]), applied in the child with `setrlimit`
//! ([`PreparedLimits::apply_in_child`]). A limit hit is the program's failure (`SIGXFSZ`,
//! `SIGXCPU`, `EMFILE`, `ENOMEM`, `EAGAIN` from fork), never the supervisor's: nothing here
//! runs in the supervisor process after preparation.
//!
//! # Defaults, and why
//! - `open_files`: soft 1024 (what `select(2)` users expect), hard 65536 or the inherited
//!   hard limit if lower. Programs that need more raise their soft limit up to the hard one.
//! - `file_size`: 64 GiB. A runaway `yes > f` or a log loop fails with `SIGXFSZ`/`EFBIG`
//!   before it fills the disk; real artefacts (images, datasets) fit below it.
//! - `core_size`: 0. A crash inside the sandbox must not write a core next to the user's
//!   files (or hand it to a core_pattern helper running outside the sandbox).
//! - `address_space`: not set. `RLIMIT_AS` counts reservations, not use: JVMs, V8 (the
//!   4 GiB pointer cage, 10 GiB per wasm memory), Go and sanitizers reserve far more than
//!   they touch and fail to start under any useful cap. Memory belongs to a cgroup's
//!   `memory.max`; the flag exists for those who want it anyway.
//! - `cpu_seconds`: not set. It is per process, and the session's timeout already bounds
//!   wall time; a per-process CPU cap would kill a long build that the timeout allows.
//!   When set, the soft limit sends `SIGXCPU` and the hard limit (5 s later) `SIGKILL`.
//! - `processes`: not set. `RLIMIT_NPROC` counts every process of the *real uid* on the
//!   machine, not the session's: a cap of N for a user who already runs N processes
//!   (other sessions, the desktop) makes every fork in the session fail at once, and for
//!   root (`CAP_SYS_ADMIN`/`CAP_SYS_RESOURCE`) the kernel ignores it entirely. The session's
//!   cgroup is the place for a process cap (`pids.max`); the flag sets `RLIMIT_NPROC` for
//!   those who run sessions under a dedicated uid.
//!
//! A requested value above the inherited hard limit is clamped to it (raising a hard limit
//! needs `CAP_SYS_RESOURCE`); the clamp is visible in [`PreparedLimits::limits`].

use nix::errno::Errno;
use nix::sys::resource::{Resource, getrlimit, rlim_t, setrlimit};
use serde::{Deserialize, Serialize};

/// One GiB in bytes.
const GIB: u64 = 1 << 30;

/// Extra hard-limit seconds after the `RLIMIT_CPU` soft limit: `SIGXCPU` first, then `SIGKILL`.
const CPU_GRACE_SECONDS: u64 = 5;

/// The session's limits; `None` leaves the inherited limit untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceLimits {
    /// `RLIMIT_AS`, bytes.
    pub address_space: Option<u64>,
    /// `RLIMIT_CPU`, seconds of CPU time per process.
    pub cpu_seconds: Option<u64>,
    /// `RLIMIT_FSIZE`, bytes per file written.
    pub file_size: Option<u64>,
    /// `RLIMIT_NPROC`, processes of the real uid (machine-wide, see the module doc).
    pub processes: Option<u64>,
    /// `RLIMIT_NOFILE` soft limit; the hard limit is `max(this, 65536)` clamped to the
    /// inherited hard limit.
    pub open_files: Option<u64>,
    /// `RLIMIT_CORE`, bytes.
    pub core_size: Option<u64>,
}

impl Default for ResourceLimits {
    fn default() -> Self {
        ResourceLimits {
            address_space: None,
            cpu_seconds: None,
            file_size: Some(64 * GIB),
            processes: None,
            open_files: Some(1024),
            core_size: Some(0),
        }
    }
}

/// Error preparing the limits.
#[derive(Debug, thiserror::Error)]
pub enum RlimitError {
    #[error("reading the supervisor's {resource} limit: {source}")]
    GetLimit {
        resource: &'static str,
        source: Errno,
    },
}

/// A resource, its name, and the wanted (soft, hard) pair if any.
type Wanted = (Resource, &'static str, Option<(u64, u64)>);

/// One limit ready for `setrlimit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PreparedLimit {
    #[serde(skip)]
    resource: Resource,
    pub name: &'static str,
    pub soft: rlim_t,
    pub hard: rlim_t,
}

/// Limits computed before fork; the child applies them without allocating.
#[derive(Debug, Clone, Copy)]
pub struct PreparedLimits {
    limits: [Option<PreparedLimit>; 6],
}

impl ResourceLimits {
    /// No limit set at all: the supervisor's limits are inherited unchanged.
    pub fn inherit() -> Self {
        ResourceLimits {
            address_space: None,
            cpu_seconds: None,
            file_size: None,
            processes: None,
            open_files: None,
            core_size: None,
        }
    }

    /// Compute the (soft, hard) pairs in the parent, clamped to the inherited hard limits.
    pub fn prepare(&self) -> Result<PreparedLimits, RlimitError> {
        let wanted: [Wanted; 6] = [
            (
                Resource::RLIMIT_AS,
                "address_space",
                self.address_space.map(|v| (v, v)),
            ),
            (
                Resource::RLIMIT_CPU,
                "cpu_seconds",
                self.cpu_seconds
                    .map(|v| (v, v.saturating_add(CPU_GRACE_SECONDS))),
            ),
            (
                Resource::RLIMIT_FSIZE,
                "file_size",
                self.file_size.map(|v| (v, v)),
            ),
            (
                Resource::RLIMIT_NPROC,
                "processes",
                self.processes.map(|v| (v, v)),
            ),
            (
                Resource::RLIMIT_NOFILE,
                "open_files",
                self.open_files.map(|v| (v, v.max(65536))),
            ),
            (
                Resource::RLIMIT_CORE,
                "core_size",
                self.core_size.map(|v| (v, v)),
            ),
        ];
        let mut limits = [None; 6];
        for (slot, (resource, name, want)) in limits.iter_mut().zip(wanted) {
            let Some((soft, hard)) = want else { continue };
            let (_, current_hard) =
                getrlimit(resource).map_err(|source| RlimitError::GetLimit {
                    resource: name,
                    source,
                })?;
            let hard = hard.min(current_hard);
            let soft = soft.min(hard);
            *slot = Some(PreparedLimit {
                resource,
                name,
                soft,
                hard,
            });
        }
        Ok(PreparedLimits { limits })
    }
}

impl PreparedLimits {
    /// The limits that will be set, after clamping (for the audit log).
    pub fn limits(&self) -> impl Iterator<Item = &PreparedLimit> {
        self.limits.iter().flatten()
    }

    /// Child side, between fork and exec: `setrlimit` each prepared limit. Async-signal-safe
    /// (a fixed array, one syscall per limit, no allocation).
    pub fn apply_in_child(&self) -> Result<(), Errno> {
        for limit in self.limits.iter().flatten() {
            setrlimit(limit.resource, limit.soft, limit.hard)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_cap_files_and_cores_but_not_memory_cpu_or_processes() {
        let prepared = ResourceLimits::default().prepare().unwrap();
        let names: Vec<&str> = prepared.limits().map(|l| l.name).collect();
        assert_eq!(names, ["file_size", "open_files", "core_size"]);
        let nofile = prepared.limits().find(|l| l.name == "open_files").unwrap();
        assert_eq!(nofile.soft, 1024);
        assert!(nofile.hard >= 1024);
    }

    #[test]
    fn requests_above_the_inherited_hard_limit_are_clamped() {
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        let limits = ResourceLimits {
            open_files: Some(u64::MAX),
            ..ResourceLimits::inherit()
        };
        let prepared = limits.prepare().unwrap();
        let nofile = prepared.limits().next().unwrap();
        assert_eq!((nofile.soft, nofile.hard), (hard, hard));
    }

    #[test]
    fn cpu_hard_limit_leaves_a_grace_period() {
        let limits = ResourceLimits {
            cpu_seconds: Some(10),
            ..ResourceLimits::inherit()
        };
        let prepared = limits.prepare().unwrap();
        let cpu = prepared.limits().next().unwrap();
        let (_, inherited) = getrlimit(Resource::RLIMIT_CPU).unwrap();
        assert_eq!(cpu.soft, 10.min(inherited));
        assert_eq!(cpu.hard, 15.min(inherited));
    }
}

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

/// A `--limit NAME=VALUE` that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--limit {spec}: {why}")]
pub struct LimitSpecError {
    pub spec: String,
    pub why: String,
}

impl ResourceLimits {
    /// The names [`ResourceLimits::set`] takes, as `prlimit(1)` spells them.
    pub const NAMES: [&'static str; 6] = ["as", "cpu", "fsize", "nproc", "nofile", "core"];

    /// Applies one `NAME=VALUE` (`nofile=4096`, `fsize=1G`, `cpu=60`, `as=unlimited`):
    /// sizes take K, M, G or T (powers of 1024); `unlimited` leaves the limit inherited.
    pub fn set(&mut self, spec: &str) -> Result<(), LimitSpecError> {
        let err = |why: String| LimitSpecError {
            spec: spec.to_owned(),
            why,
        };
        let (name, value) = spec
            .split_once('=')
            .ok_or_else(|| err("want NAME=VALUE, e.g. nofile=4096".into()))?;
        let slot = match name.trim() {
            "as" => &mut self.address_space,
            "cpu" => &mut self.cpu_seconds,
            "fsize" => &mut self.file_size,
            "nproc" => &mut self.processes,
            "nofile" => &mut self.open_files,
            "core" => &mut self.core_size,
            other => {
                return Err(err(format!(
                    "unknown limit `{other}` (known: {})",
                    Self::NAMES.join(", ")
                )));
            }
        };
        let value = value.trim();
        if value == "unlimited" {
            *slot = None;
            return Ok(());
        }
        let (digits, unit) = match value.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
            Some((at, _)) => value.split_at(at),
            None => (value, ""),
        };
        if digits.is_empty() {
            return Err(err(format!("`{value}` is not a number or `unlimited`")));
        }
        let shift = match unit {
            "" => 0,
            "K" | "k" => 10,
            "M" | "m" => 20,
            "G" | "g" => 30,
            "T" | "t" => 40,
            other => return Err(err(format!("unknown unit `{other}` (K, M, G, T)"))),
        };
        let number: u64 = digits
            .parse()
            .map_err(|_| err(format!("`{value}` is not a number or `unlimited`")))?;
        let scaled = number
            .checked_mul(1u64 << shift)
            .ok_or_else(|| err(format!("`{value}` is too large")))?;
        *slot = Some(scaled);
        Ok(())
    }

    /// Checks one `NAME=VALUE` (for command-line parsers): the spec back, or why not.
    pub fn check_spec(spec: &str) -> Result<String, LimitSpecError> {
        ResourceLimits::default()
            .set(spec)
            .map(|()| spec.to_owned())
    }

    /// The defaults with each `NAME=VALUE` applied in order.
    pub fn from_specs<S: AsRef<str>>(specs: &[S]) -> Result<ResourceLimits, LimitSpecError> {
        let mut limits = ResourceLimits::default();
        for spec in specs {
            limits.set(spec.as_ref())?;
        }
        Ok(limits)
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
    fn limit_specs_parse_like_prlimit_and_errors_say_what_is_wrong() {
        let limits = ResourceLimits::from_specs(&[
            "nofile=4096",
            "fsize=1G",
            "cpu=60",
            "as=unlimited",
            "nproc=512",
            "core=4k",
        ])
        .unwrap();
        assert_eq!(limits.open_files, Some(4096));
        assert_eq!(limits.file_size, Some(GIB));
        assert_eq!(limits.cpu_seconds, Some(60));
        assert_eq!(limits.address_space, None);
        assert_eq!(limits.processes, Some(512));
        assert_eq!(limits.core_size, Some(4096));
        // Untouched limits keep their defaults; the last setting wins.
        let limits = ResourceLimits::from_specs(&["cpu=1", "cpu=2"]).unwrap();
        assert_eq!(limits.cpu_seconds, Some(2));
        assert_eq!(limits.open_files, ResourceLimits::default().open_files);
        for (spec, says) in [
            ("nofile", "want NAME=VALUE"),
            (
                "stack=1M",
                "unknown limit `stack` (known: as, cpu, fsize, nproc, nofile, core)",
            ),
            ("fsize=1X", "unknown unit `X`"),
            ("nofile=lots", "`lots` is not a number"),
            ("fsize=99999999999T", "too large"),
        ] {
            let err = ResourceLimits::from_specs(&[spec]).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("--limit {spec}: ")) && err.contains(says),
                "{err}"
            );
        }
    }

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

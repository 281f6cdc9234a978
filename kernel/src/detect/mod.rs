//! Kernel feature detection: what the running kernel and this process offer (seccomp
//! user notification and its flags, pidfds, Landlock, ptrace permission, user namespaces,
//! cgroup v2, and where the patched shell and exec wrapper are), and how each answer was
//! found (a probe, or the kernel version when no probe could answer).
//!
//! Owns: running every probe, once per process start ([`detect`] is called by
//! `Supervisor::new` and by `execgate doctor`; the result is passed down, never re-probed
//! per session). Must never change the calling process: anything irreversible (installing
//! a seccomp filter, NO_NEW_PRIVS, unsharing) happens in a forked child that exits. Must
//! never choose a backend (that is `supervisor::backend`) or render anything.

mod capabilities;
mod cgroup;
pub mod kernel;
pub mod landlock;
pub mod patched_shell;
pub mod pidfd;
mod pidns;
mod process;
mod process_vm;
mod ptrace;
mod seccomp;
mod userns;

use std::io;

use serde::{Deserialize, Serialize};

pub use cgroup::Cgroup;
pub use kernel::{Kernel, KernelVersion};
pub use landlock::{Landlock, LandlockStatus};
pub use patched_shell::PatchedShell;
pub use pidfd::Pidfd;
pub use process::Process;
pub use ptrace::Ptrace;
pub use seccomp::{NotifSizes, Seccomp};
pub use userns::UserNamespaces;

/// How a value was determined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum How {
    /// By trying it on this kernel, in this process's situation.
    Probe,
    /// From the kernel version, because no probe could answer (the detail says why).
    KernelVersion,
}

/// One kernel feature: whether it is there, how that was found out, and which kernel
/// introduced it (what to upgrade to when it is missing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feature {
    pub available: bool,
    pub how: How,
    /// What was tried and what came back, e.g. `pidfd_getfd(-1, 0, 0): EBADF`.
    pub detail: String,
    /// The first mainline kernel with the feature.
    pub since: KernelVersion,
}

impl Feature {
    pub fn probed(available: bool, since: KernelVersion, detail: impl Into<String>) -> Self {
        Self {
            available,
            how: How::Probe,
            detail: detail.into(),
            since,
        }
    }

    /// Decides by the kernel version, keeping the reason no probe could decide.
    pub fn by_version(kernel: &Kernel, since: KernelVersion, why: &str) -> Self {
        let available = kernel.at_least(since);
        let cmp = match kernel.version {
            Some(_) if available => ">=",
            Some(_) => "<",
            None => "unparsable, assumed <",
        };
        Self {
            available,
            how: How::KernelVersion,
            detail: format!("{why}; by version: {} {cmp} {since}", kernel.release),
            since,
        }
    }

    /// `needs Linux X.Y` when missing, for messages that name the kernel to upgrade to.
    pub fn needs(&self) -> Option<String> {
        (!self.available).then(|| format!("needs Linux {}.{}", self.since.major, self.since.minor))
    }

    /// Like [`Feature::needs`], but a feature missing on a kernel new enough to have it
    /// is called what it is: blocked (a seccomp filter or an LSM hides it).
    pub fn missing_on(&self, kernel: &Kernel) -> Option<String> {
        if self.available {
            return None;
        }
        let since = format!("{}.{}", self.since.major, self.since.minor);
        Some(if kernel.at_least(self.since) {
            format!("blocked here: Linux has it since {since}; a seccomp filter or LSM hides it")
        } else {
            format!("needs Linux {since}")
        })
    }
}

/// Everything [`detect`] found out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Features {
    pub kernel: Kernel,
    pub seccomp: Seccomp,
    pub pidfd: Pidfd,
    /// `process_vm_readv`: reading a paused exec's arguments (else `/proc/PID/mem`).
    #[serde(default = "process_vm::unreported")]
    pub process_vm_readv: Feature,
    pub landlock: Landlock,
    pub ptrace: Ptrace,
    pub user_namespaces: UserNamespaces,
    /// A PID namespace with its own `/proc` for the sandboxed tree.
    #[serde(default = "pidns::unknown")]
    pub pid_namespace: Feature,
    /// A network namespace with only loopback for the sandboxed tree (egress by name
    /// through the supervisor's proxy), made as the PID namespace is.
    #[serde(default = "pidns::unknown")]
    pub network_namespace: Feature,
    /// The sandboxed tree can empty its capability sets (bounding set too when this
    /// process holds `CAP_SETPCAP`).
    #[serde(default = "capabilities::unknown")]
    pub capability_drop: Feature,
    pub cgroup: Cgroup,
    pub process: Process,
    /// The patched-shell backend's pieces (older reports have none: nothing found).
    #[serde(default)]
    pub patched_shell: PatchedShell,
}

/// Probes the running kernel and this process. Never fails: what cannot be found out is
/// reported as missing, with the reason in its `detail`.
pub fn detect() -> Features {
    detect_with(Probes::all())
}

/// Which of the optional probes [`detect_with`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probes {
    /// Whether a network namespace can be made for the sandboxed tree: needed only when
    /// something may open a host (the egress proxy); making and tearing one down is the
    /// dearest probe (milliseconds of CPU on a loaded VM).
    pub network_namespace: bool,
}

impl Probes {
    /// Every probe (`execgate doctor`).
    pub fn all() -> Self {
        Probes {
            network_namespace: true,
        }
    }
}

/// [`detect`] with the optional probes chosen: one left out is reported unavailable,
/// saying it was not probed.
pub fn detect_with(probes: Probes) -> Features {
    let kernel = kernel::uname().unwrap_or_else(|e| Kernel {
        release: format!("unknown (uname: {e})"),
        version: None,
        machine: String::new(),
    });
    let status = crate::procfs::read_self_status();
    let cap = |bit| crate::capabilities::has(status.cap_eff, bit);
    // The probes that fork a throwaway child mostly wait: for the kernel to make and tear
    // down namespaces (an RCU grace period each, milliseconds on a VM). Run side by side,
    // they cost about the slowest one instead of their sum: a session's start-up.
    let cap_eff = status.cap_eff;
    let sys_admin = cap(crate::capabilities::CAP_SYS_ADMIN);
    std::thread::scope(|scope| {
        let user_namespaces = beside(scope, "userns", userns::detect);
        let pid_namespace = beside(scope, "pidns", move || pidns::detect(sys_admin));
        let ptrace = beside(scope, "ptrace", move || ptrace::detect(cap_eff));
        let network_namespace = beside(scope, "netns", move || {
            if probes.network_namespace {
                crate::namespaces::net::detect(sys_admin)
            } else {
                crate::namespaces::net::not_probed()
            }
        });
        let cap_setpcap = cap(crate::capabilities::CAP_SETPCAP);
        let capability_drop = beside(scope, "caps", move || capabilities::detect(cap_setpcap));
        Features {
            seccomp: seccomp::detect(&kernel),
            pidfd: pidfd::detect(),
            process_vm_readv: process_vm::detect(),
            landlock: landlock::detect(),
            ptrace: ptrace(),
            user_namespaces: user_namespaces(),
            pid_namespace: pid_namespace(),
            network_namespace: network_namespace(),
            capability_drop: capability_drop(),
            cgroup: cgroup::detect(&kernel),
            process: process::detect(&status),
            patched_shell: patched_shell::locate(None),
            kernel: kernel.clone(),
        }
    })
}

/// Starts `probe` on a thread of `scope` and returns what gives its result: the thread's,
/// or, where no thread could be had, the probe run there and then. A probe that panicked
/// panics the caller.
fn beside<'scope, T: Send + 'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    name: &str,
    probe: impl Fn() -> T + Send + Copy + 'scope,
) -> impl FnOnce() -> T + 'scope {
    let thread = std::thread::Builder::new()
        .name(format!("execgate-probe-{name}"))
        .spawn_scoped(scope, probe);
    move || match thread {
        Ok(thread) => thread
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p)),
        Err(_) => probe(),
    }
}

/// What a namespace probe's report says: the first step that failed, its errno, and why
/// `EPERM` there usually happens (`steps`: each step's name and the errno it reported, 0
/// for success).
pub(crate) fn failed_namespace_step(
    steps: &[(&str, i32)],
    how: &str,
    cap_sys_admin: bool,
) -> String {
    let (step, errno) = steps
        .iter()
        .copied()
        .find(|(_, e)| *e != 0)
        .unwrap_or(("probe", 0));
    let mut detail = format!("{step} {how}: {}", errno_name_raw(errno));
    if errno == libc::EPERM && cap_sys_admin {
        detail.push_str(" (a seccomp profile or LSM refuses it)");
    } else if errno == libc::EPERM {
        detail.push_str(" (unprivileged user namespaces refused here; CAP_SYS_ADMIN would do)");
    }
    detail
}

/// `EBADF`-style name of an io::Error's errno, or its text when it has none.
pub(crate) fn errno_name(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(code) => errno_name_raw(code),
        None => err.to_string(),
    }
}

pub(crate) fn errno_name_raw(code: i32) -> String {
    let name = match code {
        0 => "success",
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EBADF => "EBADF",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EINVAL => "EINVAL",
        libc::ENOTTY => "ENOTTY",
        libc::ENOSPC => "ENOSPC",
        libc::ENOSYS => "ENOSYS",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EUSERS => "EUSERS",
        _ => return format!("errno {code}"),
    };
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_left_out_says_so_and_the_others_still_run() {
        let some = detect_with(Probes {
            network_namespace: false,
        });
        assert!(!some.network_namespace.available);
        assert!(
            some.network_namespace.detail.contains("not probed"),
            "{:?}",
            some.network_namespace
        );
        let all = detect();
        assert!(
            !all.network_namespace.detail.contains("not probed"),
            "{:?}",
            all.network_namespace
        );
        assert_eq!(some.pid_namespace, all.pid_namespace);
        assert_eq!(some.capability_drop, all.capability_drop);
        assert_eq!(some.user_namespaces, all.user_namespaces);
    }
}

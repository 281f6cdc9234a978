//! The one seccomp filter program a session's tree runs under.
//!
//! It is installed last in the child, with `SECCOMP_FILTER_FLAG_NEW_LISTENER`, and holds
//! both halves of the exec gate:
//! - `execve`/`execveat` raise a user notification: the supervisor decides each one;
//! - the in-sandbox denials that keep that decision meaningful: `ptrace` and
//!   `process_vm_writev` (no rewriting another process between check and exec), a nested
//!   `seccomp(..., NEW_LISTENER)` (a later listener on execve would answer before ours),
//!   `io_uring_*` (syscalls that bypass this filter), and, with the network off, every
//!   socket family but `AF_UNIX`;
//! - with [`FilterOptions::host`], what a sandboxed build never needs and a host never
//!   wants touched ([`HOST_WIDE`]: eBPF, perf, fanotify, keyrings, modules, kexec, reboot,
//!   swap, the kernel log, process accounting, clocks, host names, file handles) and the
//!   terminal ioctls that push input (`TIOCSTI`) or drive the console (`TIOCLINUX`). All
//!   refused with `EPERM`, so programs fail as they would unprivileged.
//!
//! One program rather than two, because a filter installed first that denies
//! `NEW_LISTENER` would refuse our own listener. Foreign syscall ABIs (i386 `int 0x80`, x32)
//! kill the process: libseccomp emits the architecture check, and x32 numbers count as a
//! foreign architecture in a native x86_64 filter.
//!
//! The program is built before fork (libseccomp allocates) and exported as raw BPF, so the
//! child only issues one `seccomp(2)` call.
//!
//! Owns: the BPF program (which syscalls stop, which fail). Must never install it in the
//! supervisor itself: only the child installs it (`crate::process::confine_in_child`).

use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{FromRawFd, OwnedFd};

use libseccomp::{
    ScmpAction, ScmpArgCompare, ScmpCompareOp, ScmpFilterAttr, ScmpFilterContext, ScmpSyscall,
};

/// What the filter enforces besides the exec notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterOptions {
    /// Allow sockets of every family (network on). Off: only `AF_UNIX`.
    pub network: bool,
    /// With the network off, allow `AF_INET` and `AF_INET6` sockets too: the tree runs in a
    /// network namespace with only loopback (egress through the supervisor's proxy), which
    /// confines them. Every other family stays refused.
    pub inet: bool,
    /// `execve`/`execveat` raise a user notification. Off for the patched-shell backend,
    /// which decides execs through the wrapper and keeps only the in-sandbox denials.
    pub notify_exec: bool,
    /// With the network off, `connect` raises a user notification: the supervisor decides
    /// which unix sockets the tree may reach (a listener is needed, for either backend).
    pub notify_connect: bool,
    /// Refuse the host-wide operations of [`HOST_WIDE`] and `ioctl(TIOCSTI|TIOCLINUX)`.
    /// Off only for `danger-full-access`, which confines nothing.
    pub host: bool,
}

/// Syscalls that act on the whole host (or read what belongs to it), refused with `EPERM`
/// when [`FilterOptions::host`] is set. Capabilities are dropped in the tree as well; this
/// is the second wall, and it holds where the tree keeps a capability (root of its own
/// user namespace) or a call needs none (`keyctl` on the user's own keyring,
/// `perf_event_open` under a lax `perf_event_paranoid`).
pub const HOST_WIDE: &[&str] = &[
    "bpf",
    "perf_event_open",
    "fanotify_init",
    "add_key",
    "request_key",
    "keyctl",
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "reboot",
    "swapon",
    "swapoff",
    "syslog",
    "acct",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "sethostname",
    "setdomainname",
    "open_by_handle_at",
];

/// `ioctl` requests refused when [`FilterOptions::host`] is set: pushing bytes into a
/// terminal's input (`TIOCSTI`: the person's shell would read them) and the Linux console
/// controls (`TIOCLINUX`, which can paste a selection as input too).
#[allow(clippy::unnecessary_cast)] // the request type differs between libc targets
pub const HOST_IOCTLS: [u64; 2] = [libc::TIOCSTI as u64, libc::TIOCLINUX as u64];

/// Why the filter program could not be built.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("building the seccomp filter with libseccomp: {step}: {source}")]
    Libseccomp {
        step: &'static str,
        #[source]
        source: libseccomp::error::SeccompError,
    },
    #[error("exporting the seccomp filter as BPF: {0}")]
    Export(#[source] std::io::Error),
}

/// A classic-BPF seccomp program, ready for `seccomp(SECCOMP_SET_MODE_FILTER)`. Built
/// once and shared: a clone (one per escalated copy, for its exec listener) is a reference
/// count, not a copy of the instructions; the kernel takes its own copy at each install.
#[derive(Clone)]
pub struct BpfProgram {
    insns: std::sync::Arc<[libc::sock_filter]>,
}

impl std::fmt::Debug for BpfProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BpfProgram")
            .field("len", &self.insns.len())
            .finish()
    }
}

impl BpfProgram {
    /// Number of BPF instructions.
    pub fn len(&self) -> usize {
        self.insns.len()
    }

    /// True for an empty program (never produced by [`build`]).
    pub fn is_empty(&self) -> bool {
        self.insns.is_empty()
    }

    pub(crate) fn as_fprog(&self) -> libc::sock_fprog {
        libc::sock_fprog {
            // A seccomp program is at most BPF_MAXINSNS (4096) long; libseccomp refuses more.
            len: u16::try_from(self.insns.len()).unwrap_or(u16::MAX),
            filter: self.insns.as_ptr().cast_mut(),
        }
    }
}

/// The errno the in-sandbox denials answer with.
const DENY_ERRNO: i32 = libc::EPERM;

/// Builds the session filter.
pub fn build(options: FilterOptions) -> Result<BpfProgram, FilterError> {
    let lib = |step| move |source| FilterError::Libseccomp { step, source };
    let mut ctx = ScmpFilterContext::new(ScmpAction::Allow).map_err(lib("create context"))?;
    ctx.set_act_badarch(ScmpAction::KillProcess)
        .map_err(lib("set bad-architecture action"))?;
    // No-new-privs is set explicitly (and earlier) by the child; don't let libseccomp do it.
    ctx.set_filter_attr(ScmpFilterAttr::CtlNnp, 0)
        .map_err(lib("disable libseccomp's NNP"))?;

    if options.notify_exec {
        for name in ["execve", "execveat"] {
            let sc = ScmpSyscall::from_name(name).map_err(lib("resolve exec syscall"))?;
            ctx.add_rule(ScmpAction::Notify, sc)
                .map_err(lib("add exec notification"))?;
        }
    }
    for name in [
        "ptrace",
        "process_vm_writev",
        "io_uring_setup",
        "io_uring_enter",
        "io_uring_register",
    ] {
        // A syscall unknown to this libseccomp/arch has nothing to deny.
        if let Ok(sc) = ScmpSyscall::from_name(name) {
            ctx.add_rule(ScmpAction::Errno(DENY_ERRNO), sc)
                .map_err(lib("add syscall denial"))?;
        }
    }
    if options.host {
        for name in HOST_WIDE {
            // Unknown to this libseccomp/arch (kexec_file_load on some): nothing to deny.
            if let Ok(sc) = ScmpSyscall::from_name(name) {
                ctx.add_rule(ScmpAction::Errno(DENY_ERRNO), sc)
                    .map_err(lib("add host-wide denial"))?;
            }
        }
        let ioctl = ScmpSyscall::from_name("ioctl").map_err(lib("resolve ioctl"))?;
        for request in HOST_IOCTLS {
            // The kernel takes the request as an unsigned int: compare the low 32 bits
            // only, so garbage in the upper half cannot slip past.
            ctx.add_rule_conditional(
                ScmpAction::Errno(DENY_ERRNO),
                ioctl,
                &[ScmpArgCompare::new(
                    1,
                    ScmpCompareOp::MaskedEqual(0xffff_ffff),
                    request,
                )],
            )
            .map_err(lib("deny terminal ioctls"))?;
        }
    }
    let seccomp = ScmpSyscall::from_name("seccomp").map_err(lib("resolve seccomp"))?;
    let new_listener = libc::SECCOMP_FILTER_FLAG_NEW_LISTENER;
    ctx.add_rule_conditional(
        ScmpAction::Errno(DENY_ERRNO),
        seccomp,
        &[ScmpArgCompare::new(
            1,
            ScmpCompareOp::MaskedEqual(new_listener),
            new_listener,
        )],
    )
    .map_err(lib("deny nested listeners"))?;

    if !options.network {
        let socket = ScmpSyscall::from_name("socket").map_err(lib("resolve socket"))?;
        if options.inet {
            // One rule per refused family (a rule compares an argument once): every family
            // above AF_INET6, and each below it but AF_UNIX and AF_INET. A value with any
            // upper bit set is above AF_INET6 too, so it is refused as well.
            ctx.add_rule_conditional(
                ScmpAction::Errno(libc::EACCES),
                socket,
                &[ScmpArgCompare::new(
                    0,
                    ScmpCompareOp::Greater,
                    libc::AF_INET6 as u64,
                )],
            )
            .map_err(lib("deny non-inet sockets"))?;
            for family in 0..libc::AF_INET6 {
                if family == libc::AF_UNIX || family == libc::AF_INET {
                    continue;
                }
                ctx.add_rule_conditional(
                    ScmpAction::Errno(libc::EACCES),
                    socket,
                    &[ScmpArgCompare::new(
                        0,
                        ScmpCompareOp::Equal,
                        u64::try_from(family).unwrap_or(0),
                    )],
                )
                .map_err(lib("deny non-inet sockets"))?;
            }
        } else {
            ctx.add_rule_conditional(
                ScmpAction::Errno(libc::EACCES),
                socket,
                &[ScmpArgCompare::new(
                    0,
                    ScmpCompareOp::NotEqual,
                    libc::AF_UNIX as u64,
                )],
            )
            .map_err(lib("deny non-unix sockets"))?;
        }
        if options.notify_connect {
            let connect = ScmpSyscall::from_name("connect").map_err(lib("resolve connect"))?;
            ctx.add_rule(ScmpAction::Notify, connect)
                .map_err(lib("add connect notification"))?;
        }
    }

    export(&ctx)
}

/// libseccomp 2.5 only exports to a file descriptor: go through a memfd.
pub(crate) fn export(ctx: &ScmpFilterContext) -> Result<BpfProgram, FilterError> {
    let mut file = std::fs::File::from(memfd("execgate-bpf").map_err(FilterError::Export)?);
    ctx.export_bpf(&file)
        .map_err(|source| FilterError::Libseccomp {
            step: "export BPF",
            source,
        })?;
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0)).map_err(FilterError::Export)?;
    file.read_to_end(&mut bytes).map_err(FilterError::Export)?;
    let size = std::mem::size_of::<libc::sock_filter>();
    if bytes.is_empty() || bytes.len() % size != 0 {
        return Err(FilterError::Export(std::io::Error::other(format!(
            "libseccomp exported {} bytes, not a whole number of instructions",
            bytes.len()
        ))));
    }
    let insns = bytes
        .chunks_exact(size)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect::<Vec<_>>()
        .into();
    Ok(BpfProgram { insns })
}

fn memfd(name: &str) -> std::io::Result<OwnedFd> {
    let cname = std::ffi::CString::new(name).map_err(std::io::Error::other)?;
    // SAFETY: `cname` is a valid NUL-terminated string for the duration of the call.
    let fd = crate::cvt_int(unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC) })?;
    // SAFETY: memfd_create returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_a_program_for_both_network_settings() {
        let off = build(FilterOptions {
            network: false,
            inet: false,
            notify_exec: true,
            notify_connect: true,
            host: true,
        })
        .unwrap();
        let on = build(FilterOptions {
            network: true,
            inet: false,
            notify_exec: true,
            notify_connect: true,
            host: true,
        })
        .unwrap();
        let plain = build(FilterOptions {
            network: false,
            inet: false,
            notify_exec: false,
            notify_connect: false,
            host: true,
        })
        .unwrap();
        let danger = build(FilterOptions {
            network: true,
            inet: false,
            notify_exec: true,
            notify_connect: true,
            host: false,
        })
        .unwrap();
        // Every host-wide call is known here: none is silently skipped on x86_64/aarch64.
        for name in HOST_WIDE {
            assert!(ScmpSyscall::from_name(name).is_ok(), "{name}");
        }
        // The host-wide denials add instructions.
        assert!(
            danger.len() < on.len(),
            "danger={} on={}",
            danger.len(),
            on.len()
        );
        // The exec notification adds instructions.
        assert!(plain.len() < off.len());
        assert!(!off.is_empty());
        // The connect notification adds instructions where the network is off.
        let off_no_connect = build(FilterOptions {
            network: false,
            inet: false,
            notify_exec: true,
            notify_connect: false,
            host: true,
        })
        .unwrap();
        assert!(off_no_connect.len() < off.len());
        // The socket rule adds instructions.
        assert!(off.len() > on.len(), "off={} on={}", off.len(), on.len());
    }
}

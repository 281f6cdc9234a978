//! Capabilities: whether this process holds one (`CapEff:` in `/proc/self/status`, parsed
//! by [`crate::procfs`]), and dropping every set in a sandboxed child ([`DropAll`]).
//!
//! Why the drop: execgate's main users run it as root, and a tree that keeps root's
//! capabilities reaches the host through everything Landlock does not cover (SysV IPC,
//! keyrings, `fanotify`, `bpf`, the clock, the host name). After the set-up steps that need
//! them (mounts, namespaces, Landlock), the child empties its bounding, ambient,
//! inheritable, permitted and effective sets; with `NO_NEW_PRIVS` after it, no exec can
//! give any back (not even a set-uid-root program or root's own exec).
//!
//! Owns: the capability numbers execgate asks about, the bit test, and the drop. Must
//! never raise a capability, nor drop one in the supervisor itself: [`DropAll::apply_in_child`]
//! runs only between fork and exec.

use std::io;

/// `CAP_SETPCAP`'s bit: needed to drop from the bounding set.
pub const CAP_SETPCAP: u32 = 8;
/// `CAP_SYS_PTRACE`'s bit in the capability masks.
pub const CAP_SYS_PTRACE: u32 = 19;
/// `CAP_SYS_ADMIN`'s bit in the capability masks.
pub const CAP_SYS_ADMIN: u32 = 21;

/// Whether an effective capability mask (`None`: unreadable) holds `cap`.
pub fn has(cap_eff: Option<u64>, cap: u32) -> bool {
    cap_eff.is_some_and(|mask| mask & (1u64 << cap) != 0)
}

/// Whether this process holds `CAP_SYS_ADMIN` (mount namespaces, read-only binds, a PID
/// namespace without a user namespace).
pub fn have_cap_sys_admin() -> bool {
    has(crate::procfs::read_self_status().cap_eff, CAP_SYS_ADMIN)
}

/// Whether this process holds `CAP_SETPCAP` (its children can empty their bounding set).
pub fn have_cap_setpcap() -> bool {
    has(crate::procfs::read_self_status().cap_eff, CAP_SETPCAP)
}

/// The kernel's highest capability number (`/proc/sys/kernel/cap_last_cap`), read before
/// fork. Falls back to 63 (the masks' width): dropping a number the kernel does not know
/// fails with `EINVAL`, which [`DropAll::apply_in_child`] takes as the end.
pub fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(63)
}

/// Emptying every capability set of a child, prepared before fork.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DropAll {
    last_cap: u32,
    /// Empty the bounding set too. It takes `CAP_SETPCAP`: held by a root supervisor, and
    /// by a child that made its own user namespace. Without it (an unprivileged supervisor
    /// outside any namespace) the bounding set stays, and binds nothing: the child holds no
    /// capability, and `NO_NEW_PRIVS` keeps exec from granting one.
    bounding: bool,
}

/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

impl DropAll {
    /// `bounding`: whether the child will hold `CAP_SETPCAP` when it drops.
    pub fn new(bounding: bool) -> DropAll {
        DropAll {
            last_cap: last_cap(),
            bounding,
        }
    }

    /// With a fixed last capability (63: the drop stops at the kernel's own last one),
    /// for probe children that cannot read a file.
    pub(crate) const fn with_fallback(bounding: bool) -> DropAll {
        DropAll {
            last_cap: 63,
            bounding,
        }
    }

    /// Whether the bounding set is emptied too.
    pub fn bounding(&self) -> bool {
        self.bounding
    }

    /// Child side: ambient cleared, bounding set emptied (when asked), then inheritable,
    /// permitted and effective emptied by one `capset`. Raw syscalls on integers and a stack
    /// buffer only: async-signal-safe. Any failure fails the child (closed, not open).
    pub fn apply_in_child(&self) -> io::Result<()> {
        // SAFETY: prctl with integer arguments is async-signal-safe.
        crate::cvt_int(unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL,
                0,
                0,
                0,
            )
        })?;
        if self.bounding {
            for cap in 0..=self.last_cap {
                let cap = libc::c_ulong::from(cap);
                // SAFETY: prctl with integer arguments is async-signal-safe.
                let held = unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap, 0, 0, 0) };
                if held < 0 {
                    // EINVAL: past the kernel's last capability (the fallback of 63).
                    break;
                }
                if held == 1 {
                    // SAFETY: as above.
                    crate::cvt_int(unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) })?;
                }
            }
        }
        let mut header = CapHeader {
            version: CAPABILITY_VERSION_3,
            pid: 0,
        };
        let data = [CapData {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        }; 2];
        // SAFETY: `header` and `data` are valid for the call (version 3 reads two CapData);
        // capset is a raw syscall, async-signal-safe.
        crate::cvt(unsafe {
            libc::syscall(
                libc::SYS_capset,
                &mut header as *mut CapHeader,
                data.as_ptr(),
            )
        })?;
        Ok(())
    }
}

/// What is left after a drop, read with raw calls (usable in a probe child): a bit per set
/// still holding something: 1 effective, 2 permitted, 4 inheritable, 8 bounding, 16
/// ambient.
pub(crate) fn leftover_in_child() -> i32 {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    let mut left = 0;
    // SAFETY: `header` and `data` are valid for the call; capget fills two CapData.
    if unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut header as *mut CapHeader,
            data.as_mut_ptr(),
        )
    } < 0
    {
        return 1 | 2 | 4;
    }
    for d in data {
        left |= i32::from(d.effective != 0) | i32::from(d.permitted != 0) << 1;
        left |= i32::from(d.inheritable != 0) << 2;
    }
    for cap in 0..64 {
        // SAFETY: prctl with integer arguments is async-signal-safe.
        let held = unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap, 0, 0, 0) };
        if held < 0 {
            break;
        }
        if held == 1 {
            left |= 8;
        }
        // SAFETY: as above.
        let ambient =
            unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_IS_SET, cap, 0, 0) };
        if ambient == 1 {
            left |= 16;
        }
    }
    left
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits() {
        assert!(has(Some(1 << 21), CAP_SYS_ADMIN));
        assert!(!has(Some(1 << 19), CAP_SYS_ADMIN));
        assert!(has(Some(0x1ff_ffff_ffff), CAP_SYS_PTRACE));
        assert!(!has(None, CAP_SYS_PTRACE));
    }

    #[test]
    fn the_kernels_last_capability_is_read() {
        // CAP_AUDIT_READ (37) is in every kernel we run on.
        assert!((37..64).contains(&last_cap()), "{}", last_cap());
    }
}

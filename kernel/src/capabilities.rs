//! Capabilities: the one check of whether this process holds a capability (`CapEff:` in
//! `/proc/self/status`, parsed by [`crate::procfs`]).
//!
//! Owns: the capability numbers execgate asks about and the bit test. Must never raise,
//! drop or otherwise change a capability.

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
}

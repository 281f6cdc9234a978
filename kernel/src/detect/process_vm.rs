//! `process_vm_readv` (3.2): how the supervisor reads a paused exec's path, argv and env.
//!
//! Probed on our own memory, which needs no permission: an answer other than the bytes
//! means a seccomp filter hides the call (Docker's default profile allows it only with
//! `CAP_SYS_PTRACE`, answering `EPERM`). The supervisor then reads `/proc/PID/mem`.

use std::io;

use crate::detect::{Feature, KernelVersion};

pub const READV_SINCE: KernelVersion = KernelVersion::new(3, 2, 0);

/// Reads one byte of our own stack with `process_vm_readv`.
fn read_own_byte() -> io::Result<()> {
    let source = [0x5au8; 1];
    let mut dest = [0u8; 1];
    let local = libc::iovec {
        iov_base: dest.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let remote = libc::iovec {
        iov_base: source.as_ptr().cast_mut().cast(),
        iov_len: 1,
    };
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    // SAFETY: `local` points to `dest`, writable for 1 byte; `remote` names `source` in
    // our own address space, readable for 1 byte; both outlive the call.
    let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    match n {
        1 if dest == source => Ok(()),
        n if n < 0 => Err(io::Error::last_os_error()),
        n => Err(io::Error::other(format!(
            "read {n} bytes, not the one expected"
        ))),
    }
}

pub(crate) fn from_result(result: &io::Result<()>) -> Feature {
    match result {
        Ok(()) => Feature::probed(true, READV_SINCE, "process_vm_readv(self, 1 byte): read"),
        Err(e) => Feature::probed(
            false,
            READV_SINCE,
            format!(
                "process_vm_readv(self, 1 byte): {}",
                crate::detect::errno_name(e)
            ),
        ),
    }
}

/// For a report written before `process_vm_readv` was probed (the kernel-matrix fixtures):
/// every kernel since 3.2 has it, and those reports came from bare VMs without a filter.
pub(crate) fn unreported() -> Feature {
    Feature {
        available: true,
        how: crate::detect::How::KernelVersion,
        detail: "not in this report (written before process_vm_readv was probed); assumed \
                 present"
            .to_owned(),
        since: READV_SINCE,
    }
}

pub(crate) fn detect() -> Feature {
    from_result(&read_own_byte())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_memory_here_and_names_the_errno_otherwise() {
        // The test process runs under no profile that blocks it (CI runs as root, bare).
        let here = detect();
        assert!(here.available, "{here:?}");
        let blocked = from_result(&Err(io::Error::from_raw_os_error(libc::EPERM)));
        assert!(!blocked.available);
        assert_eq!(blocked.detail, "process_vm_readv(self, 1 byte): EPERM");
    }
}

//! The x86_64 register rewrite: `orig_rax = -1` (no restart), then either `rax =
//! exit_group, rdi = code, rip -= 2` (run the two-byte `syscall` again) or `rax = -errno`.

use std::io;

use super::{Resume, ptrace};

/// Rewrites the registers of a tracee stopped right after its exec syscall.
pub fn set_resume(tid: u32, resume: Resume) -> io::Result<()> {
    // SAFETY: user_regs_struct is plain old data, filled by GETREGS below.
    let mut regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
    ptrace(
        libc::PTRACE_GETREGS,
        tid,
        &mut regs as *mut libc::user_regs_struct as usize,
    )?;
    // Not a syscall any more: the kernel must not restart the exec.
    regs.orig_rax = u64::MAX;
    match resume {
        Resume::ExitGroup(code) => {
            regs.rax = libc::SYS_exit_group as u64;
            regs.rdi = code as u64;
            // `syscall` is two bytes (0f 05); run it again with the new number.
            regs.rip -= 2;
        }
        Resume::Fail(errno) => regs.rax = (-i64::from(errno)) as u64,
    }
    ptrace(
        libc::PTRACE_SETREGS,
        tid,
        &regs as *const libc::user_regs_struct as usize,
    )
}

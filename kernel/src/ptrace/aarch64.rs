//! The aarch64 register rewrite: not implemented yet (escalation hand-back fails with
//! `Unsupported`, as before this file existed). It needs `PTRACE_GETREGSET`/`SETREGSET`
//! with `NT_PRSTATUS` (`x8 = exit_group`, `x0 = code`, `pc -= 4`) and `NT_ARM_SYSTEM_CALL`
//! set to -1 so the kernel does not restart the exec.

use std::io;

use super::Resume;

pub fn set_resume(_tid: u32, _resume: Resume) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "escalation hand-back is implemented for x86_64 only",
    ))
}

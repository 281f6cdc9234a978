//! Whether this process may ptrace its own descendants: the escalation hand-back in the
//! unotify backend seizes the paused child (`PTRACE_SEIZE` + `PTRACE_INTERRUPT`).
//!
//! Yama's `ptrace_scope` (0 classic, 1 descendants only, 2 `CAP_SYS_PTRACE` only, 3 never)
//! and the capability are reported, and a real `PTRACE_SEIZE` of a forked child that does
//! nothing decides, because a seccomp filter or another LSM can forbid it regardless.

use std::io;

use serde::{Deserialize, Serialize};

use crate::detect::How;
use crate::process::throwaway as child;

use crate::capabilities::CAP_SYS_PTRACE;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ptrace {
    /// A forked child could be seized.
    pub permitted: bool,
    /// `/proc/sys/kernel/yama/ptrace_scope`, absent without Yama.
    pub yama_ptrace_scope: Option<u8>,
    /// `CAP_SYS_PTRACE` is in the effective set.
    pub cap_sys_ptrace: bool,
    pub how: How,
    pub detail: String,
}

/// Whether Yama (alone) lets a process with or without `CAP_SYS_PTRACE` trace its child.
pub fn yama_allows_child(scope: Option<u8>, cap_sys_ptrace: bool) -> bool {
    match scope {
        None | Some(0) | Some(1) => true,
        Some(2) => cap_sys_ptrace,
        Some(_) => false,
    }
}

pub fn has_cap_sys_ptrace(cap_eff: Option<u64>) -> bool {
    crate::capabilities::has(cap_eff, CAP_SYS_PTRACE)
}

/// The child: dies with its parent, and otherwise waits to be killed.
fn idle_child(_: &mut [i32; 1]) {
    // SAFETY: integer arguments only; runs in the forked child, async-signal-safe.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    loop {
        // SAFETY: pause(2) has no preconditions and is async-signal-safe.
        unsafe { libc::pause() };
    }
}

/// `ptrace(PTRACE_SEIZE, pid, 0, 0)`.
fn seize(pid: libc::pid_t) -> io::Result<()> {
    // SAFETY: PTRACE_SEIZE takes no pointers (addr 0, data 0 = no options).
    let r = unsafe { libc::ptrace(libc::PTRACE_SEIZE, pid, 0, 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `kill(pid, SIGKILL)`.
fn kill(pid: libc::pid_t) {
    // SAFETY: integer arguments; `pid` is our own unreaped child, so it cannot have been
    // recycled for another process.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// Forks an idle child, seizes it, kills and reaps it.
fn seize_probe() -> io::Result<()> {
    let pid = child::fork()?;
    if pid == 0 {
        idle_child(&mut [0]);
        // SAFETY: never reached (idle_child loops); _exit is async-signal-safe.
        unsafe { libc::_exit(0) }
    }
    let result = seize(pid);
    kill(pid);
    // The child dies by SIGKILL, which `waitpid` reports as an error status: ignore it.
    let _ = child::waitpid(pid);
    result
}

pub(crate) fn detect(cap_eff: Option<u64>) -> Ptrace {
    let yama_ptrace_scope = std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
        .ok()
        .and_then(|s| s.trim().parse().ok());
    let cap_sys_ptrace = has_cap_sys_ptrace(cap_eff);
    let (permitted, detail) = match seize_probe() {
        Ok(()) => (true, "PTRACE_SEIZE of a forked child succeeded".to_owned()),
        Err(e) => {
            let culprit = if yama_allows_child(yama_ptrace_scope, cap_sys_ptrace) {
                "not Yama: a seccomp filter or another LSM"
            } else {
                "Yama's ptrace_scope"
            };
            (
                false,
                format!(
                    "PTRACE_SEIZE of a forked child: {} (forbidden by {culprit})",
                    crate::detect::errno_name(&e)
                ),
            )
        }
    };
    Ptrace {
        permitted,
        yama_ptrace_scope,
        cap_sys_ptrace,
        how: How::Probe,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yama_scopes() {
        assert!(yama_allows_child(None, false));
        assert!(yama_allows_child(Some(1), false));
        assert!(!yama_allows_child(Some(2), false));
        assert!(yama_allows_child(Some(2), true));
        assert!(!yama_allows_child(Some(3), true));
    }

    #[test]
    fn capability_bit() {
        assert!(has_cap_sys_ptrace(Some(0x1ff_ffff_ffff)));
        assert!(!has_cap_sys_ptrace(Some(0)));
        assert!(!has_cap_sys_ptrace(Some(!(1 << 19))));
        assert!(!has_cap_sys_ptrace(None));
    }
}

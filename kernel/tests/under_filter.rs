//! Detection inside a process that is already under someone else's seccomp filter, the
//! way a container runtime's profile can hide syscalls: `execgate-probe` runs under a
//! filter that answers `pidfd_getfd` with ENOSYS and `seccomp(SECCOMP_SET_MODE_FILTER)`
//! with EPERM. The probes must say so (missing, or decided by the kernel version because
//! no listener could be made), and the backend must keep `unotify` with the `/proc/PID/fd`
//! reopen as its stdio hand-off, naming the blocked `pidfd_getfd`. Runs on the real kernel; x86_64 only (the filter hard-codes its numbers).

#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

use std::os::unix::process::CommandExt;
use std::process::Command;

const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x15;
const BPF_RET_K: u16 = 0x06;
/// `offsetof(struct seccomp_data, nr)` and the low half of `args[0]` (little endian).
const NR: u32 = 0;
const ARG0_LO: u32 = 16;

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

fn container_like_filter() -> Vec<libc::sock_filter> {
    let errno = |e: i32| libc::SECCOMP_RET_ERRNO | e.unsigned_abs();
    vec![
        insn(BPF_LD_W_ABS, 0, 0, NR),
        insn(BPF_JEQ_K, 0, 1, 438), // pidfd_getfd
        insn(BPF_RET_K, 0, 0, errno(libc::ENOSYS)),
        insn(BPF_JEQ_K, 0, 3, 317), // seccomp
        insn(BPF_LD_W_ABS, 0, 0, ARG0_LO),
        insn(BPF_JEQ_K, 0, 1, libc::SECCOMP_SET_MODE_FILTER),
        insn(BPF_RET_K, 0, 0, errno(libc::EPERM)),
        insn(BPF_RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ]
}

/// `prctl(PR_SET_NO_NEW_PRIVS)` then `seccomp(SET_MODE_FILTER, 0, prog)`, in the forked
/// child before exec: raw syscalls only, no allocation.
fn install(prog: &libc::sock_fprog) -> std::io::Result<()> {
    // SAFETY: integer arguments only; runs in the forked child before exec.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `prog` points to a sock_fprog whose filter array outlives the call (it is
    // owned by the closure that calls us).
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            prog as *const libc::sock_fprog,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[test]
fn probes_under_a_container_like_filter() {
    let mut filter = container_like_filter();
    let prog = libc::sock_fprog {
        len: u16::try_from(filter.len()).unwrap(),
        filter: filter.as_mut_ptr(),
    };
    let prog_addr = &prog as *const libc::sock_fprog as usize;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_execgate-probe"));
    cmd.arg("--json");
    let in_child = move || {
        // SAFETY: `prog` (and the `filter` it points to) outlive `output()`, which forks
        // and runs this closure before returning.
        let prog = unsafe { &*(prog_addr as *const libc::sock_fprog) };
        install(prog)
    };
    // SAFETY: the closure makes only raw, async-signal-safe syscalls (prctl, seccomp) on
    // data prepared before the fork.
    unsafe { cmd.pre_exec(in_child) };
    let out = cmd.output().unwrap();
    drop(filter);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let f: kernel::detect::Features = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("{f:#?}");

    assert_eq!(f.process.seccomp_mode, Some(2));
    assert!(f.process.seccomp_filters.is_none_or(|n| n >= 1));
    assert_eq!(f.process.no_new_privs, Some(true));
    // GET_ACTION_AVAIL is still allowed: the probe answers.
    assert!(f.seccomp.user_notif.available);
    assert_eq!(f.seccomp.user_notif.how, kernel::detect::How::Probe);
    // No listener can be made: decided by version, and the detail says why.
    let cont = &f.seccomp.continue_flag;
    assert_eq!(cont.how, kernel::detect::How::KernelVersion, "{cont:?}");
    assert!(
        cont.detail.contains("NEW_LISTENER filter: EPERM"),
        "{cont:?}"
    );
    assert!(!f.pidfd.getfd.available);
    assert!(
        f.pidfd.getfd.detail.contains("ENOSYS"),
        "{:?}",
        f.pidfd.getfd
    );
    assert!(f.pidfd.open.available);

    let choice = supervisor::backend::choose(&f);
    if f.kernel
        .at_least(kernel::detect::KernelVersion::new(5, 6, 0))
    {
        assert_eq!(
            choice.chosen,
            supervisor::backend::Backend::Unotify,
            "{choice:?}"
        );
        assert_eq!(
            choice.stdio_handoff,
            Some(kernel::remote_fd::FdHandoff::ProcReopen)
        );
        let want =
            "stdio hand-off: /proc/PID/fd reopen (pidfd_getfd blocked here: Linux has it since 5.6";
        assert!(choice.notes[0].starts_with(want), "{:?}", choice.notes);
        assert!(choice.notes[0].contains("ENOSYS"), "{:?}", choice.notes);
    }
}

//! Detection on the kernel these tests run on. Asserts only what every kernel this
//! project supports (or, when older, what the running kernel's version implies) must
//! report, so the test says something true on the build machine and on a CI runner.

use kernel::detect::{How, KernelVersion};
use supervisor::backend::{Backend, choose};

fn at_least(major: u32, minor: u32) -> bool {
    let f = kernel::detect();
    f.kernel.at_least(KernelVersion::new(major, minor, 0))
}

#[test]
fn live_detection_matches_the_running_kernel_version() {
    let f = kernel::detect();
    let v = f.kernel.version.expect("uname release parses");
    eprintln!("{f:#?}");
    let ge = |maj, min| v >= KernelVersion::new(maj, min, 0);
    // Syscalls that can only be missing on older kernels (or under a container's filter,
    // which would show in process.seccomp_mode).
    if f.process.seccomp_mode == Some(0) {
        assert_eq!(
            f.seccomp.user_notif.available,
            ge(5, 0),
            "{:?}",
            f.seccomp.user_notif
        );
        assert_eq!(f.pidfd.open.available, ge(5, 3), "{:?}", f.pidfd.open);
        assert_eq!(f.pidfd.getfd.available, ge(5, 6), "{:?}", f.pidfd.getfd);
        assert_eq!(
            f.pidfd.send_signal.available,
            ge(5, 1),
            "{:?}",
            f.pidfd.send_signal
        );
        assert_eq!(
            f.seccomp.continue_flag.available,
            ge(5, 5),
            "{:?}",
            f.seccomp.continue_flag
        );
        assert_eq!(f.seccomp.addfd.available, ge(5, 9), "{:?}", f.seccomp.addfd);
        assert_eq!(
            f.seccomp.wait_killable_recv.available,
            ge(5, 19),
            "{:?}",
            f.seccomp.wait_killable_recv
        );
        assert_eq!(f.seccomp.continue_flag.how, How::Probe);
    } else {
        eprintln!("SKIP strict syscall checks: this process is already under seccomp");
    }
    if ge(5, 0) {
        let sizes = f
            .seccomp
            .notif_sizes
            .expect("GET_NOTIF_SIZES answers on 5.0+");
        assert!(
            sizes.seccomp_notif >= 80 && sizes.seccomp_notif_resp >= 24 && sizes.seccomp_data >= 64
        );
    }
    // Detection must not have changed us.
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let after = kernel::procfs::parse_status(&status);
    assert_eq!(after.no_new_privs, f.process.no_new_privs);
    assert_eq!(after.seccomp, f.process.seccomp_mode);
}

#[test]
fn this_6_18_machine_has_everything_unotify_needs() {
    if !at_least(6, 18) {
        eprintln!("SKIP: the running kernel is older than 6.18; the matrix covers older ones");
        return;
    }
    let f = kernel::detect();
    if f.process.euid != 0 || f.process.seccomp_mode != Some(0) {
        eprintln!(
            "SKIP: needs root outside any seccomp filter (euid {}, seccomp {:?})",
            f.process.euid, f.process.seccomp_mode
        );
        return;
    }
    assert!(f.ptrace.permitted, "{:?}", f.ptrace);
    assert!(f.user_namespaces.available, "{:?}", f.user_namespaces);
    // Landlock 6.18 is ABI 7 or newer, unless the LSM is not enabled at boot.
    if f.landlock.status == kernel::detect::LandlockStatus::Enabled {
        assert!(f.landlock.abi.unwrap() >= 7, "{:?}", f.landlock);
    }
    if f.cgroup.v2_mount.is_some() && f.cgroup.writable {
        assert!(f.cgroup.kill.available, "{:?}", f.cgroup);
    }
    assert_eq!(choose(&f).chosen, Backend::Unotify, "{:#?}", choose(&f));
}

#[test]
fn probe_binary_prints_json() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_execgate-probe"))
        .arg("--json")
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The features only: the backend choice is added by `execgate doctor --json`.
    assert!(v["kernel"]["release"].is_string());
    let f: kernel::Features = serde_json::from_value(v).unwrap();
    assert!(f.pidfd.open.available, "{f:#?}");
}

//! Limits applied in a real child: a limit hit is the program's failure.

use std::os::unix::process::CommandExt;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use supervisor::ResourceLimits;

fn bash_with_limits(
    limits: ResourceLimits,
    script: &str,
    dir: &std::path::Path,
) -> std::process::Output {
    let prepared = limits.prepare().expect("prepare limits");
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(script).current_dir(dir);
    // SAFETY: apply_in_child only calls setrlimit over a fixed array: no allocation, only
    // async-signal-safe syscalls.
    unsafe {
        cmd.pre_exec(move || {
            prepared
                .apply_in_child()
                .map_err(|e| std::io::Error::from_raw_os_error(e as i32))
        });
    }
    cmd.output().expect("spawn bash")
}

#[test]
fn file_size_limit_kills_the_writer_with_sigxfsz() {
    let dir = tempfile::tempdir().unwrap();
    let limits = ResourceLimits {
        file_size: Some(1 << 20),
        ..ResourceLimits::default()
    };
    // `head` is killed by SIGXFSZ (25); bash reports 128+25 and the file stops at 1 MiB.
    let out = bash_with_limits(
        limits,
        "head -c 10M /dev/zero > f; echo status=$?",
        dir.path(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("status=153"), "{stdout}");
    assert_eq!(
        std::fs::metadata(dir.path().join("f")).unwrap().len(),
        1 << 20
    );
    assert!(out.status.success(), "the shell itself carries on");
}

#[test]
fn file_size_limit_is_efbig_when_sigxfsz_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let limits = ResourceLimits {
        file_size: Some(1 << 20),
        ..ResourceLimits::inherit()
    };
    let out = bash_with_limits(
        limits,
        "trap '' XFSZ; head -c 10M /dev/zero > f; echo status=$?",
        dir.path(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("status=1"), "{stdout}");
    assert!(stderr.contains("File too large"), "{stderr}");
}

#[test]
fn open_files_limit_gives_emfile() {
    let dir = tempfile::tempdir().unwrap();
    let limits = ResourceLimits {
        open_files: Some(16),
        ..ResourceLimits::inherit()
    };
    let out = bash_with_limits(
        limits,
        "ulimit -Sn; for i in $(seq 20 40); do eval \"exec $i</dev/null\" || { echo failed_at=$i; exit 3; }; done",
        dir.path(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("16\n"), "{stdout}");
    // fds >= the soft limit cannot be opened at all.
    assert!(stdout.contains("failed_at=20"), "{stdout}");
}

#[test]
fn cpu_limit_ends_a_busy_loop_with_sigxcpu() {
    let dir = tempfile::tempdir().unwrap();
    let limits = ResourceLimits {
        cpu_seconds: Some(1),
        ..ResourceLimits::inherit()
    };
    let out = bash_with_limits(limits, "while :; do :; done", dir.path());
    assert_eq!(
        out.status.signal(),
        Some(nix::libc::SIGXCPU),
        "{:?}",
        out.status
    );
}

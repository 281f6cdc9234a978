//! Preparing and dropping the sandbox pieces leaves the supervisor's fd count unchanged
//! (the "same fd count after 200 sessions", for this module's part). Alone in its
//! binary: parallel tests would open fds of their own meanwhile.

use std::os::unix::process::CommandExt;
use std::process::Command;

use supervisor::sandbox::landlock;
use supervisor::{SandboxMode, SandboxPolicy, SessionCgroup};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn two_hundred_prepared_sandboxes_leave_no_fd_behind() {
    let repo = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(repo.path().join(".git/hooks")).unwrap();
    std::fs::write(repo.path().join("README"), "x").unwrap();
    let policy = SandboxPolicy::new(SandboxMode::WorkspaceWrite);
    let cgroups_usable = SessionCgroup::create(&format!("fdleak-probe-{}", std::process::id()))
        .map(drop)
        .map_err(|e| eprintln!("note: cgroup part skipped: {e}"))
        .is_ok();

    let before = open_fds();
    for i in 0..200 {
        let mut prepared = landlock::prepare(
            &policy,
            repo.path(),
            None,
            landlock::Protection::LandlockSiblings,
            landlock::probe_kernel_abi(),
        )
        .unwrap();
        let cgroup = cgroups_usable
            .then(|| SessionCgroup::create(&format!("fdleak-{}-{i}", std::process::id())).unwrap());
        let joiner = cgroup.as_ref().map(|cg| cg.joiner().unwrap());
        let limits = supervisor::ResourceLimits::default().prepare().unwrap();
        let mut cmd = Command::new("true");
        // SAFETY: only the allocation-free child-side calls (setrlimit, write on a
        // pre-opened fd, prctl + landlock_restrict_self).
        unsafe {
            cmd.pre_exec(move || {
                let errno = |e: nix::errno::Errno| std::io::Error::from_raw_os_error(e as i32);
                if let Some(j) = &joiner {
                    j.join_in_child().map_err(errno)?;
                }
                limits.apply_in_child().map_err(errno)?;
                prepared.restrict_self_in_child().map_err(errno)
            });
        }
        assert!(cmd.status().unwrap().success());
        drop(cmd);
        if let Some(cg) = cgroup {
            cg.remove().unwrap();
        }
    }
    assert_eq!(open_fds(), before, "fds leaked over 200 sandboxed spawns");
}

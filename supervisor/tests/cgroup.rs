//! A real session cgroup on this machine: join before exec, kill the whole tree.

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use supervisor::cgroup::{self, KillMethod};
use supervisor::{CgroupError, SessionCgroup};

/// Create a session cgroup, or skip (through testkit) saying why cgroup v2 is unusable here.
macro_rules! session_cgroup_or_skip {
    ($id:expr) => {
        testkit::ok_or_skip!(
            SessionCgroup::create(&format!("test-{}-{}", std::process::id(), $id)).map_err(
                |e| format!("no usable cgroup v2 (needs root or a delegated cgroup): {e}")
            )
        )
    };
}

fn spawn_in(cg: &SessionCgroup, script: &str) -> std::process::Child {
    let joiner = cg.joiner().expect("open cgroup.procs");
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(script);
    // SAFETY: join_in_child is one write(2) on an fd opened before fork: no allocation,
    // async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            joiner
                .join_in_child()
                .map_err(|e| std::io::Error::from_raw_os_error(e as i32))
        });
    }
    cmd.spawn().expect("spawn bash")
}

fn wait_for_pids(cg: &SessionCgroup, at_least: usize) -> Vec<i32> {
    let start = Instant::now();
    loop {
        let pids = cg.pids().unwrap();
        if pids.len() >= at_least {
            return pids;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "only {pids:?} appeared"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn alive(pid: i32) -> bool {
    // A zombie is dead for our purposes; its reaper is not us for orphans.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit_once(')')
                .map(|(_, r)| r.trim_start().chars().next());
            !matches!(state, Some(Some('Z' | 'X')))
        }
        Err(_) => false,
    }
}

#[test]
fn the_child_joins_before_exec() {
    let cg = session_cgroup_or_skip!("join");
    let mut child = spawn_in(&cg, "cat /proc/self/cgroup > /dev/null; sleep 5");
    let pids = wait_for_pids(&cg, 1);
    assert!(pids.contains(&(child.id() as i32)), "{pids:?}");
    let own = std::fs::read_to_string(format!("/proc/{}/cgroup", child.id())).unwrap();
    let name = cg.path().file_name().unwrap().to_str().unwrap();
    assert!(own.contains(name), "{own}");
    cg.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn kill_takes_down_setsid_double_fork_term_ignoring_and_stopped_processes() {
    let cg = session_cgroup_or_skip!("tree");
    let script = r#"
        setsid sleep 1000 &
        (sleep 1000 &)
        (trap "" TERM; exec sleep 1000) &
        sleep 1000 & kill -STOP $!
        trap "" TERM
        sleep 1000
    "#;
    let mut child = spawn_in(&cg, script);
    // bash + 5 sleeps (the double-forked subshell exits).
    let pids = wait_for_pids(&cg, 6);
    let method = cg.kill().expect("kill the session cgroup");
    assert_eq!(
        method,
        KillMethod::CgroupKill,
        "this kernel has cgroup.kill"
    );
    assert!(cg.pids().unwrap().is_empty());
    let status = child.wait().unwrap();
    assert!(!status.success());
    let start = Instant::now();
    while pids.iter().any(|&p| alive(p)) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "survivors: {pids:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let path = cg.path().to_owned();
    cg.remove().unwrap();
    assert!(!path.exists());
}

#[test]
fn drop_kills_and_removes() {
    let cg = session_cgroup_or_skip!("drop");
    let mut child = spawn_in(&cg, "sleep 1000");
    wait_for_pids(&cg, 1);
    let path = cg.path().to_owned();
    drop(cg);
    assert!(!path.exists());
    child.wait().unwrap();
}

#[test]
fn unusable_cgroup_dirs_are_reported_with_the_path() {
    let err = SessionCgroup::create_in(std::path::Path::new("/proc/execgate"), "x").unwrap_err();
    assert!(matches!(err, CgroupError::Create { .. }), "{err}");
    assert!(err.to_string().contains("/proc/execgate"), "{err}");
    // And the supervisor's own cgroup is found on this machine (or the reason is given).
    match cgroup::own_cgroup_dir() {
        Ok(dir) => assert!(dir.exists(), "{}", dir.display()),
        Err(e) => testkit::skip(format!("the supervisor's own cgroup: {e}")),
    }
}

#[test]
fn the_pre_5_14_path_freezes_and_signals_until_empty() {
    let cg = session_cgroup_or_skip!("freeze");
    let script = r#"
        setsid sleep 1000 &
        (sleep 1000 &)
        trap "" TERM
        while :; do sleep 1000 & wait; done
    "#;
    let mut child = spawn_in(&cg, script);
    let pids = wait_for_pids(&cg, 4);
    let method = cg.kill_by_signals().expect("kill by signals");
    assert_eq!(method, KillMethod::FreezeAndSignal);
    assert!(cg.pids().unwrap().is_empty());
    child.wait().unwrap();
    let start = Instant::now();
    while pids.iter().any(|&p| alive(p)) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "survivors: {pids:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn doctor_probe_says_what_this_machine_has() {
    match cgroup::probe() {
        Ok(support) => {
            assert!(support.parent.exists());
            assert!(
                support.kill && support.freeze,
                "kernel 5.14+ has both: {support:?}"
            );
        }
        Err(e) => testkit::skip(format!("no usable cgroup v2 here: {e}")),
    }
}

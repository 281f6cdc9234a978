//! The no-cgroup teardown on real process trees: setsid, double fork, SIGTERM ignored,
//! SIGSTOP, leaders that exit first, and a second session that must survive.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use supervisor::teardown::{self, SessionTree, scan_proc};

fn me() -> i32 {
    std::process::id() as i32
}

/// A session under test; whatever happens, its tree is killed when the test ends.
struct Session {
    child: Child,
    tree: SessionTree,
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.tree.kill_all();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawn a session leader the way the supervisor does: own process group, subreaper,
/// marker in the environment.
fn spawn_session(id: &str, script: &str) -> Session {
    teardown::become_subreaper().expect("PR_SET_CHILD_SUBREAPER");
    let (k, v) = teardown::marker_env(id);
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(script).env(k, v).process_group(0);
    // SAFETY: child_become_subreaper is one prctl: async-signal-safe, no allocation.
    unsafe {
        cmd.pre_exec(|| {
            teardown::child_become_subreaper()
                .map_err(|e| std::io::Error::from_raw_os_error(e as i32))
        });
    }
    let child = cmd.spawn().expect("spawn bash");
    let tree = SessionTree::new(id, child.id()).expect("track the tree");
    Session { child, tree }
}

fn wait_members(tree: &SessionTree, at_least: usize) -> Vec<i32> {
    let start = Instant::now();
    loop {
        let live = tree.live_members().unwrap();
        if live.len() >= at_least {
            return live;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "only {live:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// None of `pids` is alive, and none is a zombie waiting for us.
fn assert_gone(pids: &[i32]) {
    let table = scan_proc().unwrap();
    for p in table.iter().filter(|p| pids.contains(&p.pid)) {
        assert!(
            p.state == 'Z' && p.ppid != me(),
            "pid {} still there: state {} ppid {}",
            p.pid,
            p.state,
            p.ppid
        );
    }
}

fn id(name: &str) -> String {
    format!("test-{}-{name}", std::process::id())
}

#[test]
fn setsid_double_fork_term_ignoring_and_stopped_processes_all_die_without_zombies() {
    let Session { child, tree } = &mut spawn_session(
        &id("tree"),
        r#"setsid sleep 1000 & (sleep 1000 &) ; sleep 1000 & kill -STOP $! ; trap "" TERM; sleep 1000"#,
    );
    // The leader (bash exec's its last command, SIGTERM still ignored) and three sleeps.
    let pids = wait_members(tree, 4);
    let report = tree.kill_all().unwrap();
    assert!(report.survivors.is_empty(), "{report:?}");
    assert!(report.killed.contains(&(child.id() as i32)), "{report:?}");
    child.wait().unwrap();
    assert_gone(&pids);
    assert!(tree.live_members().unwrap().is_empty());
}

#[test]
fn orphans_of_a_leader_that_already_exited_are_found_and_reaped() {
    let Session { child, tree } = &mut spawn_session(
        &id("exited"),
        "setsid sleep 1000 & (sleep 1000 &) ; sleep 0.2; exit 0",
    );
    let pids = wait_members(tree, 3);
    assert!(child.wait().unwrap().success());
    // Now the sleeps are the supervisor's (subreaper) children, outside any leader.
    let report = tree.kill_all().unwrap();
    assert!(report.survivors.is_empty(), "{report:?}");
    assert!(report.reaped.len() >= 2, "{report:?}");
    assert_gone(&pids);
}

#[test]
fn an_exec_with_a_cleaned_environment_is_found_when_recorded() {
    let Session { child, tree } =
        &mut spawn_session(&id("envi"), "setsid env -i sleep 1000 & sleep 0.3; exit 0");
    let start = Instant::now();
    // Play the supervisor's part: the exec of `sleep` was a notification; record its pid.
    let sleeper = loop {
        let found = scan_proc().unwrap().into_iter().find(|p| {
            std::fs::read(format!("/proc/{}/environ", p.pid)).is_ok_and(|e| e.is_empty())
                && std::fs::read_to_string(format!("/proc/{}/cmdline", p.pid))
                    .is_ok_and(|c| c == "sleep\x001000\x00")
        });
        if let Some(p) = found.filter(|p| p.pgid != me()) {
            break p.pid;
        }
        assert!(start.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(10));
    };
    tree.record_exec(sleeper as u32);
    child.wait().unwrap();
    let report = tree.kill_all().unwrap();
    assert!(report.killed.contains(&sleeper), "{report:?}");
    assert_gone(&[sleeper]);
}

#[test]
fn only_this_sessions_processes_die() {
    let Session {
        child: a,
        tree: tree_a,
    } = &mut spawn_session(&id("a"), "setsid sleep 1000 & (sleep 1000 &); sleep 1000");
    let Session {
        child: b,
        tree: tree_b,
    } = &mut spawn_session(&id("b"), "setsid sleep 1000 & (sleep 1000 &); sleep 1000");
    let a_pids = wait_members(tree_a, 3);
    let b_pids = wait_members(tree_b, 3);
    assert!(a_pids.iter().all(|p| !b_pids.contains(p)));

    tree_a.kill_all().unwrap();
    a.wait().unwrap();
    assert_gone(&a_pids);
    let b_live = tree_b.live_members().unwrap();
    assert_eq!(
        b_live.len(),
        b_pids.len(),
        "session b lost processes: {b_live:?}"
    );
    assert!(b.try_wait().unwrap().is_none());

    tree_b.kill_all().unwrap();
    b.wait().unwrap();
    assert_gone(&b_pids);
}

#[test]
fn with_a_cgroup_the_tree_dies_and_the_orphans_zombies_are_reaped() {
    let cg = testkit::ok_or_skip!(
        supervisor::SessionCgroup::create(&id("cg"))
            .map_err(|e| format!("no usable cgroup v2 (needs root or a delegated cgroup): {e}"))
    );
    let joiner = cg.joiner().unwrap();
    teardown::become_subreaper().unwrap();
    let name = id("cg");
    let (k, v) = teardown::marker_env(&name);
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg("setsid sleep 1000 & (sleep 1000 &); sleep 0.2; exit 0")
        .env(k, v)
        .process_group(0);
    // SAFETY: one write(2) on a pre-opened fd and one prctl: async-signal-safe, no allocation.
    unsafe {
        cmd.pre_exec(move || {
            joiner
                .join_in_child()
                .and_then(|()| teardown::child_become_subreaper())
                .map_err(|e| std::io::Error::from_raw_os_error(e as i32))
        });
    }
    let child = cmd.spawn().unwrap();
    let mut session = Session {
        tree: SessionTree::new(&name, child.id()).unwrap(),
        child,
    };
    let pids = wait_members(&session.tree, 3);
    session.child.wait().unwrap(); // the leader exits first: the sleeps are now ours
    let report = session.tree.kill_all_in(Some(&cg)).unwrap();
    assert_eq!(report.cgroup_error, None);
    assert!(report.survivors.is_empty(), "{report:?}");
    assert_eq!(report.reaped.len(), 2, "{report:?}");
    assert!(cg.pids().unwrap().is_empty());
    assert_gone(&pids);
}

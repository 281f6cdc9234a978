//! The process-wide orphan reaper, alone in its test binary: it reaps every unregistered
//! zombie child, which would include other tests' children.

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use supervisor::teardown::{self, ChildRegistry, scan_proc};

fn zombie_children() -> Vec<i32> {
    let me = std::process::id() as i32;
    scan_proc()
        .unwrap()
        .into_iter()
        .filter(|p| p.state == 'Z' && p.ppid == me)
        .map(|p| p.pid)
        .collect()
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn adopted_orphans_are_reaped_and_registered_children_are_left_to_their_spawner() {
    teardown::become_subreaper().unwrap();
    let registry = ChildRegistry::global();

    // A registered child that exits at once: its status belongs to its spawner.
    let mut own = registry
        .spawn(|| Command::new("true").spawn(), |c| Some(c.id()))
        .unwrap();
    let own_pid = own.id() as i32;

    // A session leader that leaves an orphan behind, which then exits: a zombie of ours.
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg("(sleep 0.3 &); exit 0");
    // SAFETY: one prctl: async-signal-safe, no allocation.
    unsafe {
        cmd.pre_exec(|| {
            teardown::child_become_subreaper()
                .map_err(|e| std::io::Error::from_raw_os_error(e as i32))
        });
    }
    let mut leader = registry.spawn(|| cmd.spawn(), |c| Some(c.id())).unwrap();
    assert!(leader.wait().unwrap().success());
    registry.release(leader.id());

    wait_until("the orphan and the registered child are zombies", || {
        let z = zombie_children();
        z.contains(&own_pid) && z.len() >= 2
    });
    let reaped = registry.reap_orphans().unwrap();
    assert_eq!(reaped.len(), 1, "{reaped:?}");
    assert!(!reaped.contains(&own_pid));
    assert_eq!(zombie_children(), vec![own_pid]);

    assert!(
        own.wait().unwrap().success(),
        "the spawner still gets its status"
    );
    registry.release(own_pid as u32);
    assert!(zombie_children().is_empty());
}

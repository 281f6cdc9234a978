//! Killing a session's whole process tree without a cgroup: the fallback where cgroup v2
//! is unusable (see `cgroup` for the primary path).
//!
//! This module owns finding the session's processes, SIGKILLing them and reaping the
//! orphans that were re-parented to the supervisor. It must never touch a process of
//! another session (a supervisor runs several at once), never reap a child someone else
//! waits for (the session leader, escalated commands: see [`ChildRegistry`] and
//! [`SessionTree::waited_elsewhere`]), and never `waitpid(-1)`.
//!
//! # Which processes belong to the session
//! Processes escape a process group (`setsid`) and a parent chain (double fork: the
//! grandchild is re-parented), so membership is the union of four marks, each cheap and
//! each closing a gap the others leave:
//! 1. **ancestry**: the session leader is made a child subreaper in the child before exec
//!    ([`child_become_subreaper`]; the flag survives `execve`), so while it lives every
//!    orphan of the tree is re-parented to it, not to init: every process of the session
//!    descends from the leader, whatever `setsid` and double forks did. Descendants of
//!    any member are members.
//! 2. **process group** of the leader (`setpgid(0, 0)` in the child).
//! 3. **a marker in the environment**: `EXECGATE_SESSION=<id>` ([`SessionTree::marker_env`])
//!    is in the shell's environment, so every process forked or exec'd with an inherited
//!    environment has it in `/proc/PID/environ`. This catches the orphans re-parented to
//!    the supervisor after the leader itself exited (the supervisor is a subreaper too,
//!    [`become_subreaper`]), and escalated commands, which get the child's environment.
//! 4. **execs seen in notifications** ([`SessionTree::record_exec`]): a process that
//!    exec'd with a cleaned environment (`env -i`) was still stopped in our notification;
//!    its pid and start time are recorded, so pid reuse cannot confuse it. Every member
//!    found by a scan is recorded the same way, so it stays a member once it is a zombie
//!    (no environment left, parent now the supervisor) or once its leader is gone.
//!
//! Only processes started at or after the leader are considered (start time from
//! `/proc/PID/stat`), which bounds the environment reads and rules out older processes
//! that reuse a recorded pid. Every kill goes through a pidfd opened and then re-checked
//! against the scanned start time, so a pid recycled between the scan and the kill is
//! never signalled.
//!
//! # The sweep
//! Each pass scans `/proc`, computes the members, SIGKILLs every live member but the
//! leader (so ancestry holds while the tree dies), reaps member zombies that are the
//! supervisor's own children, and stops when only the leader is left; then the leader is
//! killed and the sweep goes on until no member is alive and no member zombie awaits the
//! supervisor. SIGKILL ends stopped (SIGSTOP) and SIGTERM-ignoring processes alike. The
//! sweep is bounded in time ([`SWEEP_DEADLINE`]) and reports survivors instead of hanging.
//!
//! This is best effort against hostile code inside the sandbox (a process may overwrite its
//! own environment block and outlive a leader that exited first); the cgroup is the
//! boundary where one exists.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;
use rustix::process::{PidfdFlags, Signal, pidfd_open, pidfd_send_signal};

use crate::cgroup::SessionCgroup;

/// The environment variable that marks a session's processes.
pub const SESSION_MARKER_VAR: &str = "EXECGATE_SESSION";

/// How long [`SessionTree::kill_all`] keeps sweeping before reporting survivors.
pub const SWEEP_DEADLINE: Duration = Duration::from_secs(5);

/// Errors of the teardown machinery.
#[derive(Debug, thiserror::Error)]
pub enum TeardownError {
    #[error("prctl(PR_SET_CHILD_SUBREAPER): {0}")]
    Subreaper(Errno),
    #[error("listing /proc: {0}")]
    ListProc(io::Error),
    #[error("session leader {pid}: reading /proc/{pid}/stat: {source}")]
    Leader { pid: i32, source: io::Error },
}

/// Make the supervisor a child subreaper (once, at start-up; process-wide): orphans of any
/// session are re-parented to it instead of init, so it can find and reap them.
/// Consequence: the supervisor must reap them, which [`SessionTree::kill_all`] does for
/// each session's members.
pub fn become_subreaper() -> Result<(), TeardownError> {
    nix::sys::prctl::set_child_subreaper(true).map_err(TeardownError::Subreaper)
}

/// Child side, between fork and exec of the session leader: make it a child subreaper, so
/// that while it lives the session's orphans stay its descendants. One `prctl`:
/// async-signal-safe. The flag survives `execve`; bash reaps such adopted children in its
/// SIGCHLD handler (`waitpid(-1)`) and ignores them otherwise.
pub fn child_become_subreaper() -> Result<(), Errno> {
    nix::sys::prctl::set_child_subreaper(true)
}

/// One line of the process table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: i32,
    pub ppid: i32,
    pub pgid: i32,
    /// `R`, `S`, `D`, `T`, `t`, `Z`, ...
    pub state: char,
    /// Clock ticks since boot.
    pub start_time: u64,
}

impl ProcInfo {
    fn from_stat(pid: i32, stat: kernel::procfs::Stat) -> ProcInfo {
        ProcInfo {
            pid,
            ppid: stat.ppid,
            pgid: stat.pgrp,
            state: stat.state,
            start_time: stat.start_time,
        }
    }

    fn is_dead(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// What identifies a session's processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionIdentity {
    pub leader: i32,
    pub leader_start: u64,
    /// Pids of execs seen in notifications, with their start times.
    pub seen: HashMap<i32, u64>,
}

/// The members of the session in `table`: the leader, its process group, recorded execs,
/// processes carrying the marker, and every descendant of those. Only processes started
/// at or after the leader are considered; `me` (the supervisor) never is.
pub fn members(
    table: &[ProcInfo],
    me: i32,
    id: &SessionIdentity,
    has_marker: &mut dyn FnMut(i32) -> bool,
) -> BTreeSet<i32> {
    let candidates: Vec<&ProcInfo> = table
        .iter()
        .filter(|p| p.pid != me && p.pid > 1 && p.start_time >= id.leader_start)
        .collect();
    // Once the leader is reaped its pid (and so its process group id) may be reused: the
    // group mark holds only while no *other* process has the leader's pid.
    let leader_pid_reused = table
        .iter()
        .any(|p| p.pid == id.leader && p.start_time != id.leader_start);
    let mut set: BTreeSet<i32> = candidates
        .iter()
        .filter(|p| {
            (p.pid == id.leader && p.start_time == id.leader_start)
                || (p.pgid == id.leader && !leader_pid_reused)
                || id.seen.get(&p.pid) == Some(&p.start_time)
        })
        .map(|p| p.pid)
        .collect();
    for p in &candidates {
        if !set.contains(&p.pid) && !p.is_dead() && has_marker(p.pid) {
            set.insert(p.pid);
        }
    }
    // Descendants, to a fixed point (the table is small; depth is bounded by its size).
    loop {
        let before = set.len();
        for p in &candidates {
            if set.contains(&p.ppid) {
                set.insert(p.pid);
            }
        }
        if set.len() == before {
            return set;
        }
    }
}

/// What [`SessionTree::kill_all`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TeardownReport {
    /// Processes SIGKILLed.
    pub killed: Vec<i32>,
    /// Zombies reaped by the sweep (orphans re-parented to the supervisor).
    pub reaped: Vec<i32>,
    pub passes: u32,
    /// Members still alive at the deadline (empty on success).
    pub survivors: Vec<i32>,
    /// The session cgroup could not be read or killed (the sweep ran anyway).
    pub cgroup_error: Option<String>,
}

/// A running session's process tree, for the no-cgroup teardown.
#[derive(Debug)]
pub struct SessionTree {
    session_id: String,
    leader: i32,
    leader_start: u64,
    seen: Mutex<HashMap<i32, u64>>,
    waited_elsewhere: Mutex<HashSet<i32>>,
}

impl SessionTree {
    /// Track the tree of `leader` (just spawned, not yet reaped). The leader is reaped by
    /// its spawner, never by the sweep.
    pub fn new(session_id: &str, leader: u32) -> Result<SessionTree, TeardownError> {
        let pid = i32::try_from(leader).unwrap_or(i32::MAX);
        let info = read_stat(pid).map_err(|source| TeardownError::Leader { pid, source })?;
        Ok(SessionTree {
            session_id: session_id.to_owned(),
            leader: pid,
            leader_start: info.start_time,
            seen: Mutex::new(HashMap::new()),
            waited_elsewhere: Mutex::new(HashSet::from([pid])),
        })
    }

    /// The environment entry to give the session's shell (and escalated commands).
    pub fn marker_env(&self) -> (String, String) {
        marker_env(&self.session_id)
    }

    /// Record a process that exec'd in this session (call while it is stopped in the
    /// notification, so the pid is still its own).
    pub fn record_exec(&self, pid: u32) {
        let Ok(pid) = i32::try_from(pid) else { return };
        if let Ok(info) = read_stat(pid) {
            lock(&self.seen).insert(pid, info.start_time);
        }
    }

    /// A member the caller reaps itself (an escalated command's child): the sweep kills
    /// it but leaves its zombie alone.
    pub fn waited_elsewhere(&self, pid: u32) {
        if let Ok(pid) = i32::try_from(pid) {
            lock(&self.waited_elsewhere).insert(pid);
        }
    }

    /// Members stay members: a zombie has no readable environment and its parent is now
    /// the supervisor, so it is recognised by the (pid, start time) noted while it lived.
    fn remember(&self, table: &[ProcInfo], set: &BTreeSet<i32>) {
        let mut seen = lock(&self.seen);
        for p in table.iter().filter(|p| set.contains(&p.pid)) {
            seen.insert(p.pid, p.start_time);
        }
    }

    fn identity(&self) -> SessionIdentity {
        SessionIdentity {
            leader: self.leader,
            leader_start: self.leader_start,
            seen: lock(&self.seen).clone(),
        }
    }

    /// The live members now.
    pub fn live_members(&self) -> Result<Vec<i32>, TeardownError> {
        let table = scan_proc()?;
        let me = std::process::id() as i32;
        let marker = marker_bytes(&self.session_id);
        let set = members(&table, me, &self.identity(), &mut |pid| {
            environ_has(pid, &marker)
        });
        self.remember(&table, &set);
        Ok(table
            .iter()
            .filter(|p| set.contains(&p.pid) && !p.is_dead())
            .map(|p| p.pid)
            .collect())
    }

    /// The whole teardown: with a session cgroup, note its members, `cgroup.kill` it, then
    /// sweep (for reaping, and for anything outside the cgroup); without one, sweep.
    /// Blocking and bounded: call from `tokio::task::spawn_blocking`.
    pub fn kill_all_in(
        &self,
        cgroup: Option<&SessionCgroup>,
    ) -> Result<TeardownReport, TeardownError> {
        let Some(cgroup) = cgroup else {
            return self.kill_all();
        };
        // Remember the cgroup's processes while they live: once killed they are zombies
        // with no environment, re-parented to the supervisor, and only (pid, start time)
        // still says they were ours.
        let mut cgroup_error = None;
        match cgroup.pids() {
            Ok(pids) => {
                let mut seen = lock(&self.seen);
                for pid in pids {
                    if let Ok(info) = read_stat(pid) {
                        seen.insert(pid, info.start_time);
                    }
                }
            }
            Err(e) => cgroup_error = Some(e),
        }
        let _ = self.live_members()?; // remembers the members outside the cgroup too
        if let Err(e) = cgroup.kill() {
            cgroup_error.get_or_insert(e);
        }
        let mut report = self.kill_all()?;
        report.cgroup_error = cgroup_error.map(|e| e.to_string());
        Ok(report)
    }

    /// SIGKILL every process of the session and reap the orphans that are the
    /// supervisor's; blocking, bounded by [`SWEEP_DEADLINE`]. Call from a blocking thread
    /// (`tokio::task::spawn_blocking`).
    pub fn kill_all(&self) -> Result<TeardownReport, TeardownError> {
        let me = std::process::id() as i32;
        let marker = marker_bytes(&self.session_id);
        let start = Instant::now();
        let mut report = TeardownReport::default();
        let mut pause = Duration::from_micros(100);
        loop {
            report.passes += 1;
            let identity = self.identity();
            let table = scan_proc()?;
            let set = members(&table, me, &identity, &mut |pid| environ_has(pid, &marker));
            self.remember(&table, &set);
            let waited = lock(&self.waited_elsewhere).clone();
            let member_infos: Vec<&ProcInfo> =
                table.iter().filter(|p| set.contains(&p.pid)).collect();
            let live: Vec<&ProcInfo> = member_infos
                .iter()
                .copied()
                .filter(|p| !p.is_dead())
                .collect();
            let our_zombies: Vec<&ProcInfo> = member_infos
                .iter()
                .copied()
                .filter(|p| p.is_dead() && p.ppid == me && !waited.contains(&p.pid))
                .filter(|p| !ChildRegistry::global().contains(p.pid))
                .collect();

            {
                // Held while reaping, so a child being spawned now cannot be taken for an
                // orphan (see ChildRegistry::spawn).
                let own = lock(&ChildRegistry::global().own);
                for zombie in our_zombies.iter().filter(|z| !own.contains(&z.pid)) {
                    if reap(zombie.pid) {
                        report.reaped.push(zombie.pid);
                    }
                }
            }
            if live.is_empty() && our_zombies.is_empty() {
                return Ok(report);
            }
            if start.elapsed() > SWEEP_DEADLINE {
                report.survivors = live.iter().map(|p| p.pid).collect();
                return Ok(report);
            }
            // The leader last: while it lives, orphans stay its descendants.
            let others_alive = live.iter().any(|p| p.pid != self.leader);
            for p in live {
                if p.pid == self.leader && others_alive {
                    continue;
                }
                if kill_checked(p) && !report.killed.contains(&p.pid) {
                    report.killed.push(p.pid);
                }
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(10));
        }
    }
}

/// The supervisor's own children, which their spawner waits for (session leaders,
/// escalated commands): every other zombie child of the (subreaper) supervisor is an
/// adopted orphan that nobody else will reap.
#[derive(Debug, Default)]
pub struct ChildRegistry {
    own: Mutex<HashSet<i32>>,
}

impl ChildRegistry {
    /// The process-wide registry.
    pub fn global() -> &'static ChildRegistry {
        static REGISTRY: OnceLock<ChildRegistry> = OnceLock::new();
        REGISTRY.get_or_init(ChildRegistry::default)
    }

    /// Spawn a child that the caller will wait for, registering it before the orphan
    /// reaper can look: the registry stays locked from fork to registration, so the
    /// child's exit status cannot be taken even if it exits at once.
    pub fn spawn<T>(
        &self,
        spawn: impl FnOnce() -> io::Result<T>,
        pid_of: impl FnOnce(&T) -> Option<u32>,
    ) -> io::Result<T> {
        let mut own = lock(&self.own);
        let child = spawn()?;
        if let Some(pid) = pid_of(&child).and_then(|p| i32::try_from(p).ok()) {
            own.insert(pid);
        }
        Ok(child)
    }

    /// The caller has reaped `pid`: the pid may now be reused by anyone.
    pub fn release(&self, pid: u32) {
        if let Ok(pid) = i32::try_from(pid) {
            lock(&self.own).remove(&pid);
        }
    }

    pub fn contains(&self, pid: i32) -> bool {
        lock(&self.own).contains(&pid)
    }

    /// Like [`ChildRegistry::reap_orphans`], but looks only at the supervisor's own
    /// children (`/proc/self/task/*/children`) instead of scanning all of `/proc`: the
    /// cheap path once a session's cgroup is known to be empty.
    pub fn reap_own_zombies(&self) -> Vec<i32> {
        let own = lock(&self.own);
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return Vec::new();
        };
        let mut reaped = Vec::new();
        for task in tasks.flatten() {
            let Ok(children) = std::fs::read_to_string(task.path().join("children")) else {
                continue;
            };
            for pid in children
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
            {
                let zombie = read_stat(pid).is_ok_and(|p| p.is_dead());
                if zombie && !own.contains(&pid) && reap(pid) {
                    reaped.push(pid);
                }
            }
        }
        reaped
    }

    /// Reap every zombie child of the supervisor that is not registered (adopted orphans
    /// of any session). Call after each session's teardown and on `SIGCHLD`.
    pub fn reap_orphans(&self) -> Result<Vec<i32>, TeardownError> {
        let me = std::process::id() as i32;
        let own = lock(&self.own);
        let zombies: Vec<i32> = scan_proc()?
            .into_iter()
            .filter(|p| p.is_dead() && p.ppid == me && !own.contains(&p.pid))
            .map(|p| p.pid)
            .collect();
        Ok(zombies.into_iter().filter(|&pid| reap(pid)).collect())
    }
}

/// `waitpid(pid, WNOHANG)`: whether a zombie was reaped.
fn reap(pid: i32) -> bool {
    waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG))
        .is_ok_and(|status| status.pid().is_some())
}

/// `EXECGATE_SESSION=<id>` as an environment pair.
pub fn marker_env(session_id: &str) -> (String, String) {
    (SESSION_MARKER_VAR.to_owned(), session_id.to_owned())
}

fn marker_bytes(session_id: &str) -> Vec<u8> {
    format!("{SESSION_MARKER_VAR}={session_id}").into_bytes()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// SIGKILL `p` through a pidfd, after checking the pid still names the process scanned.
fn kill_checked(p: &ProcInfo) -> bool {
    let Some(pid) = rustix::process::Pid::from_raw(p.pid) else {
        return false;
    };
    let pidfd = match pidfd_open(pid, PidfdFlags::empty()) {
        Ok(fd) => Some(fd),
        // Before Linux 5.3: plain kill(2) after the same check, with a window of
        // microseconds for reuse instead of none.
        Err(rustix::io::Errno::NOSYS) => None,
        Err(_) => return false,
    };
    match read_stat(p.pid) {
        Ok(now) if now.start_time == p.start_time => match pidfd {
            Some(fd) => pidfd_send_signal(&fd, Signal::KILL).is_ok(),
            None => nix::sys::signal::kill(Pid::from_raw(p.pid), nix::sys::signal::Signal::SIGKILL)
                .is_ok(),
        },
        _ => false,
    }
}

/// Whether `/proc/PID/environ` holds exactly the entry `marker` (`VAR=value`).
fn environ_has(pid: i32, marker: &[u8]) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|env| env.split(|&b| b == 0).any(|entry| entry == marker))
        .unwrap_or(false)
}

/// The whole process table (processes, not threads).
pub fn scan_proc() -> Result<Vec<ProcInfo>, TeardownError> {
    let dir = std::fs::read_dir("/proc").map_err(TeardownError::ListProc)?;
    Ok(dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| read_stat(pid).ok())
        .collect())
}

fn read_stat(pid: i32) -> io::Result<ProcInfo> {
    kernel::procfs::read_stat(pid).map(|stat| ProcInfo::from_stat(pid, stat))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pid: i32, ppid: i32, pgid: i32, state: char, start_time: u64) -> ProcInfo {
        ProcInfo {
            pid,
            ppid,
            pgid,
            state,
            start_time,
        }
    }

    const ME: i32 = 100;

    fn id() -> SessionIdentity {
        SessionIdentity {
            leader: 200,
            leader_start: 50,
            seen: HashMap::new(),
        }
    }

    #[test]
    fn parses_stat_with_a_hostile_command_name() {
        let line = "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 777 0 0";
        let info = ProcInfo::from_stat(4242, kernel::procfs::parse_stat(line).unwrap());
        assert_eq!(info, p(4242, 1, 4242, 'S', 777));
    }

    #[test]
    fn setsid_and_double_forked_processes_are_members_through_ancestry() {
        let table = [
            p(ME, 1, ME, 'S', 10),
            p(200, ME, 200, 'S', 50),
            p(201, 200, 201, 'S', 51), // setsid sleep
            p(202, 200, 200, 'S', 52), // re-parented to the subreaper leader
            p(203, 201, 201, 'T', 53), // child of the setsid one, stopped
            p(300, ME, 300, 'S', 60),  // another session's leader
            p(301, 300, 300, 'S', 61),
        ];
        let set = members(&table, ME, &id(), &mut |_| false);
        assert_eq!(set, BTreeSet::from([200, 201, 202, 203]));
    }

    #[test]
    fn orphans_of_an_exited_leader_are_found_by_marker_and_recorded_execs() {
        let mut identity = id();
        identity.seen.insert(204, 57);
        identity.seen.insert(305, 1); // recorded, but the pid was reused since: start differs
        let table = [
            p(ME, 1, ME, 'S', 10),
            p(201, ME, 201, 'S', 51),  // setsid orphan, has the marker
            p(202, 201, 201, 'S', 52), // its child
            p(204, ME, 204, 'S', 57),  // exec'd with env -i, seen in a notification
            p(305, ME, 305, 'S', 70),  // another session's orphan
            p(306, ME, 306, 'S', 40),  // older than our leader: never considered
        ];
        let mut asked = Vec::new();
        let set = members(&table, ME, &identity, &mut |pid| {
            asked.push(pid);
            pid == 201 || pid == 306
        });
        assert_eq!(set, BTreeSet::from([201, 202, 204]));
        assert!(
            !asked.contains(&306),
            "environ of older processes is not read"
        );
    }

    #[test]
    fn a_reused_leader_pid_marks_nothing() {
        // Our leader (pid 200, started at 50) was reaped; pid 200 now leads another group.
        let table = [
            p(ME, 1, ME, 'S', 10),
            p(200, 1, 200, 'S', 90),
            p(201, 200, 200, 'S', 91),
            p(202, 1, 200, 'S', 92),
        ];
        assert!(members(&table, ME, &id(), &mut |_| false).is_empty());
    }

    #[test]
    fn the_supervisor_and_init_are_never_members() {
        let mut identity = id();
        identity.leader_start = 0;
        let table = [p(1, 0, 1, 'S', 0), p(ME, 1, 200, 'S', 10)];
        assert!(members(&table, ME, &identity, &mut |_| true).is_empty());
    }
}

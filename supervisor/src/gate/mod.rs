//! The exec gate: what both backends share once a session runs. [`Shared`] is one
//! session's state (its records, approvals, escalated copies, clock); [`decision`] decides
//! an exec and answers it through a backend's [`decision::Gate`]: [`unotify`] (seccomp
//! user notification) or [`wrapper`] (the patched shell's exec wrapper).
//!
//! Per session, one OS thread waits on the seccomp listener and settles the fast cases
//! itself (continue, deny): no runtime hop on the hot path. Prompts go to the session's
//! [`Approver`] on the tokio runtime and escalations to a thread of their own, so a person
//! taking minutes to answer never stalls the other execs of the tree.

use std::collections::HashSet;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use kernel::pidfd::PidFd;

use tokio::task::JoinHandle;

use crate::approval::Approver;
use crate::cgroup::SessionCgroup;
use crate::escalate;
use crate::sandbox::SandboxPolicy;
use crate::session::{Decider, ExecRecord, RanIn};
use crate::stopwatch::Stopwatch;
use crate::teardown::SessionTree;
use decision::ExecFacts;
use policy::{Decision, Evaluation};

use crate::supervisor::Inner;

pub(crate) mod decision;
pub(crate) mod paused;
pub mod sockets;
pub(crate) mod unotify;
pub(crate) mod wrapper;

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// State shared by a session's notification thread, prompt tasks and escalation threads.
pub(crate) struct Shared {
    pub(crate) id: u64,
    pub(crate) inner: Arc<Inner>,
    pub(crate) approver: Arc<dyn Approver>,
    pub(crate) sandbox: SandboxPolicy,
    pub(crate) runtime: tokio::runtime::Handle,
    pub(crate) first_exec_seen: AtomicBool,
    pub(crate) root_pid: AtomicU32,
    /// The session's own program, from its first exec: the root itself, or in a PID
    /// namespace two forks below it.
    pub(crate) program: OnceLock<PidFd>,
    /// The tree runs in a PID namespace (root → its init → the program).
    pub(crate) pid_namespace: bool,
    pub(crate) notable: Mutex<Vec<ExecRecord>>,
    pub(crate) approved: Mutex<HashSet<Vec<String>>>,
    /// Escalated copies still running, by pid, so teardown can kill them.
    pub(crate) escalated: Mutex<Vec<(u32, Arc<PidFd>)>>,
    pub(crate) prompts: Mutex<Vec<JoinHandle<()>>>,
    /// The session's timeout clock, paused while a person is being asked.
    pub(crate) stopwatch: Stopwatch,
    /// Membership of the tree for the teardown sweep (set once the root runs).
    pub(crate) tree: OnceLock<SessionTree>,
    /// The session's cgroup, where cgroup v2 is usable.
    pub(crate) cgroup: Option<SessionCgroup>,
    /// `EXECGATE_SESSION=...`, given to escalated copies too.
    pub(crate) marker: (String, String),
    /// Escalation threads: each writes its exec's record after releasing the caller, so
    /// the session waits for them before it reports (or the process exits).
    pub(crate) escalations: escalate::Pool,
    /// Where the session can write, whatever its mode (an earlier call may have): no file
    /// there is escalated.
    pub(crate) agent_roots: Vec<PathBuf>,
    /// The repositories whose config and hooks the session cannot change: where escalated
    /// git may run.
    pub(crate) git_trust: crate::sandbox::landlock::GitTrust,
    /// The session has a process group of its own (pgid == the root's pid).
    pub(crate) own_group: bool,
    /// Proxy mode: the tree's network namespace (`st_dev`, `st_ino`), set once its
    /// listener arrived. Only sockets of that namespace are connected for the tree.
    pub(crate) egress_namespace: OnceLock<(u64, u64)>,
}

impl Shared {
    /// The fast part of a kill: cgroup.kill (or the process group) and escalated copies.
    pub(crate) fn kill_fast(&self) {
        match &self.cgroup {
            Some(cgroup) => {
                let _ = cgroup.kill();
            }
            None => self.signal(libc::SIGKILL),
        }
        for (_, copy) in lock(&self.escalated).iter() {
            let _ = copy.send_signal(libc::SIGKILL);
        }
    }

    /// Signals the session's process group, or only its root when it shares the
    /// supervisor's group (the rest is the teardown sweep's).
    pub(crate) fn signal(&self, sig: i32) {
        let root = self.root_pid.load(Ordering::Acquire);
        if root == 0 {
            return;
        }
        if self.own_group {
            let _ = kernel::pidfd::kill_process_group(root, sig);
            return;
        }
        if self.program.get().is_none()
            && self.pid_namespace
            && let Some(program) = program_below_pid_namespace(root)
        {
            // No exec was seen (the wrapper backend): the program is the only child of
            // the namespace's init, itself the only child of the root.
            let _ = self.program.set(program);
        }
        let _ = match self.program.get() {
            Some(program) => program.send_signal(sig),
            None => kernel::pidfd::kill_unreaped_child(root, sig),
        };
    }
}

/// The session's records: what the audit log and the session's result say about execs.
impl Shared {
    pub(crate) fn make_record(
        &self,
        facts: ExecFacts,
        eval: Option<&Evaluation>,
        decider: Decider,
        ran_in: RanIn,
        reason: String,
    ) -> ExecRecord {
        ExecRecord {
            pid: facts.pid,
            program: facts.program,
            argv: facts.argv,
            cwd: facts.cwd,
            decision: eval.map(|e| e.decision).unwrap_or(Decision::Allow),
            decided_by: decider,
            matched_rules: eval.map(|e| e.matched_rules.clone()).unwrap_or_default(),
            ran_in,
            reason,
            status: None,
            time_ms: now_ms(),
            ppid: facts.ppid,
            duration_ms: None,
            session: self.id,
            resolved: None,
            escalation_env: None,
        }
    }

    /// The record of an exec, built while its caller still waits: once answered, the
    /// caller may exit at once and its cwd and parent can no longer be read. `None` for a
    /// sandboxed exec nobody reads about (the hot path).
    pub(crate) fn record_paused(
        &self,
        facts: impl FnOnce() -> ExecFacts,
        eval: Option<&Evaluation>,
        decider: Decider,
        ran_in: RanIn,
        reason: impl FnOnce() -> String,
    ) -> Option<ExecRecord> {
        if matches!(ran_in, RanIn::Sandbox | RanIn::Outside) && self.inner.audit.is_none() {
            return None;
        }
        Some(self.make_record(facts(), eval, decider, ran_in, reason()))
    }

    pub(crate) fn store_some(&self, record: Option<ExecRecord>) {
        if let Some(record) = record {
            self.store(record);
        }
    }

    pub(crate) fn store(&self, record: ExecRecord) {
        if let Some(audit) = &self.inner.audit {
            audit.write(&record);
        }
        if !matches!(record.ran_in, RanIn::Sandbox | RanIn::Outside) {
            lock(&self.notable).push(record);
        }
    }
}

impl escalate::Registry for Shared {
    fn started(&self, pid: u32, pidfd: Arc<PidFd>) {
        if let Some(tree) = self.tree.get() {
            tree.waited_elsewhere(pid);
        }
        lock(&self.escalated).push((pid, pidfd));
    }

    fn finished(&self, pid: u32) {
        lock(&self.escalated).retain(|(copy, _)| *copy != pid);
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The session's program under a PID namespace: the only child of the only child of
/// `root` (`/proc/PID/task/TID/children`, Linux 4.2 with CONFIG_PROC_CHILDREN).
pub(crate) fn program_below_pid_namespace(root: u32) -> Option<PidFd> {
    let only_child = |pid: u32| -> Option<u32> {
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    let program = only_child(only_child(root)?)?;
    PidFd::open(program).ok()
}

/// argv as a person would type it (for messages only).
pub fn shown(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_quotes_what_a_shell_would_split() {
        let argv = vec!["rm".into(), "-rf".into(), "a b".into(), "it's".into()];
        assert_eq!(shown(&argv), "rm -rf 'a b' 'it'\\''s'");
    }
}

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
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use kernel::pidfd::PidFd;
use kernel::remote_fd::FdHandoff;
use tokio::task::JoinHandle;

use crate::approval::Approver;
use crate::cgroup::SessionCgroup;
use crate::escalate;
use crate::sandbox::SandboxPolicy;
use crate::session::ExecRecord;
use crate::stopwatch::Stopwatch;
use crate::teardown::SessionTree;

use crate::supervisor::Inner;

pub(crate) mod decision;
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

/// A pidfd for the process a thread belongs to (pidfd_open wants a thread-group leader).
pub(crate) fn pidfd_of(tid: u32) -> io::Result<PidFd> {
    match PidFd::open(tid) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            let status = std::fs::read_to_string(format!("/proc/{tid}/status"))?;
            let tgid = status
                .lines()
                .find_map(|l| l.strip_prefix("Tgid:"))
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| io::Error::other("no Tgid in /proc status"))?;
            PidFd::open(tgid)
        }
        other => other,
    }
}

/// Writes `line` on the caller's stderr: why its exec was refused. Bounded: a stderr
/// nobody reads must not stall the notification thread. With the /proc reopen hand-off a
/// stderr that is a regular file gets the line at its current offset, which the caller's
/// own next write does not move past (a separate open file description).
pub(crate) fn tell_caller(tid: u32, handoff: FdHandoff, mut line: String) {
    let Ok(pidfd) = pidfd_of(tid) else { return };
    let fd = match kernel::remote_fd::copy_fd(handoff, &pidfd, tid, 2) {
        Ok(fd) => fd,
        Err(err) => {
            tracing::debug!(tid, "cannot reach the caller's stderr: {err}");
            return;
        }
    };
    // One write of at most PIPE_BUF bytes into a writable pipe never blocks.
    if line.len() > 4000 {
        let mut cut = 4000;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push_str("...");
    }
    line.push('\n');
    if kernel::pidfd::wait_writable(fd.as_fd(), 100) {
        let _ = std::fs::File::from(fd).write_all(line.as_bytes());
    }
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

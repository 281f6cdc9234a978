//! A session: what it is asked to run ([`SessionSpec`]), the running tree ([`Session`]:
//! wait, signal, kill, teardown), and how it ended ([`SessionOutcome`]).

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use kernel::pidfd::PidFd;

use crate::gate::{Shared, lock};
use crate::spawn::SessionError;
use crate::teardown::ChildRegistry;

use policy::{DecidedBy, Decision, RuleMatch};
use serde::Serialize;

use crate::approval::Approver;
use crate::rlimits::ResourceLimits;
use crate::sandbox::{Enforcement, SandboxPolicy};

/// Where the session's stdin/stdout/stderr go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionStdio {
    /// The supervisor's own stdio, the session in a session and process group of its own
    /// without a controlling terminal (the CLI without a terminal on its stdio).
    Inherit,
    /// The supervisor's own stdio, the session staying in the terminal's foreground
    /// process group so it can read the terminal (the CLI on a terminal with `--pty
    /// never`). Ctrl-C reaches the session's programs directly. The terminal is then
    /// shared: the session can read and write it and change its modes
    /// (docs/threat-model.md, "Known gaps"); what keeps questions the person's is the
    /// approver reading `/dev/tty` itself after discarding pending input, and the filter's
    /// refusal of TIOCSTI/TIOCLINUX.
    InheritForeground,
    /// The supervisor's own stdio, except that each of 0-2 that was the person's terminal
    /// is the slave of the session's own pseudo-terminal, in a session of its own with that
    /// slave as its controlling terminal (as `sudo`'s `use_pty`; the relay is
    /// [`crate::terminal::Relay`]). The tree holds no descriptor of the person's terminal.
    Terminal(kernel::terminal::ControllingTerminal),
    /// Fresh pipes: stdin at EOF, stdout and stderr handed to the caller (MCP).
    Piped,
}

/// One session: a command (normally `bash -c SCRIPT`), where and how to run it.
#[derive(Clone)]
pub struct SessionSpec {
    /// argv of the session's first program; argv\[0\] is looked up in `PATH`.
    pub argv: Vec<String>,
    /// Working directory; must exist.
    pub workdir: PathBuf,
    /// Extra environment on top of the supervisor's own, or (`inherit_env` false) the
    /// whole environment.
    pub env: Vec<(String, String)>,
    /// Whether the supervisor's own environment is the base `env` is added to. The front
    /// door passes false with an environment built on purpose (credentials left out).
    pub inherit_env: bool,
    pub sandbox: SandboxPolicy,
    /// Per-process resource limits inside the session.
    pub limits: ResourceLimits,
    /// pids and memory limits of the session's cgroup (escalated copies included).
    pub cgroup_limits: crate::cgroup::CgroupLimits,
    /// Wall-clock limit, not counting time spent waiting for a human.
    pub timeout: Option<Duration>,
    pub stdio: SessionStdio,
    /// Who answers `prompt` decisions for this session.
    pub approver: Arc<dyn Approver>,
}

impl std::fmt::Debug for SessionSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionSpec")
            .field("argv", &self.argv)
            .field("workdir", &self.workdir)
            .field("env", &self.env)
            .field("inherit_env", &self.inherit_env)
            .field("sandbox", &self.sandbox)
            .field("limits", &self.limits)
            .field("cgroup_limits", &self.cgroup_limits)
            .field("timeout", &self.timeout)
            .field("stdio", &self.stdio)
            .finish_non_exhaustive()
    }
}

/// How a process ended (the one type, from `kernel::process`).
pub use kernel::process::ExitStatus;

/// Where an exec ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RanIn {
    /// Continued inside the sandbox.
    Sandbox,
    /// The supervisor ran its own copy outside the sandbox.
    Escalated,
    /// Continued outside the sandbox, in an escalated copy's tree (decided by the policy
    /// like every exec; only the audit log lists these).
    Outside,
    /// It did not run.
    Denied,
}

/// What happened to one exec of the tree; also one line of the audit log.
#[derive(Debug, Clone, Serialize)]
pub struct ExecRecord {
    pub pid: i32,
    pub program: PathBuf,
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    /// The policy's decision.
    pub decision: Decision,
    /// Who settled what happened.
    pub decided_by: Decider,
    pub matched_rules: Vec<RuleMatch>,
    pub ran_in: RanIn,
    /// One line for a person: why it was allowed, denied or escalated.
    pub reason: String,
    /// Exit status, for escalated execs (the supervisor waited for them).
    pub status: Option<ExitStatus>,
    /// Milliseconds since the Unix epoch when the exec was stopped.
    pub time_ms: u64,
    /// Parent pid, when it could still be read.
    pub ppid: Option<i32>,
    /// How long an escalated command ran, in milliseconds.
    pub duration_ms: Option<u64>,
    /// The session this exec belongs to.
    pub session: u64,
    /// Escalated: the file that ran (symlinks resolved), by path, device and inode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved: Option<ResolvedProgram>,
    /// Escalated: the names of the environment variables the copy got.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub escalation_env: Option<Vec<String>>,
}

/// The file an escalated copy ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolvedProgram {
    pub path: PathBuf,
    pub dev: u64,
    pub ino: u64,
}

/// Who settled what happened to an exec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decider {
    /// A rule of the policy.
    Rule,
    /// The built-in heuristics (no rule matched).
    Heuristics,
    /// A person, answering a prompt.
    Human,
    /// The supervisor itself: the session's own program, or an exec that could not be
    /// read or that names no existing file.
    Supervisor,
}

impl From<DecidedBy> for Decider {
    fn from(d: DecidedBy) -> Self {
        match d {
            DecidedBy::Rule => Decider::Rule,
            DecidedBy::Heuristics => Decider::Heuristics,
        }
    }
}

/// How a session ended.
#[derive(Debug, Clone, Serialize)]
pub struct SessionOutcome {
    pub status: ExitStatus,
    pub timed_out: bool,
    /// Wall-clock time, including time spent waiting for a human.
    pub duration: Duration,
    /// Execs that were denied or escalated (allowed sandboxed execs only go to the audit log).
    pub notable_execs: Vec<ExecRecord>,
    /// What the sandbox enforced.
    pub sandbox: Enforcement,
    /// `host:port`s the egress proxy refused, once each, in order (proxy mode only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub blocked_hosts: Vec<String>,
}
/// How long a finished session waits for its escalation threads to record their execs.
const ESCALATION_RECORD_WAIT: Duration = Duration::from_secs(5);

/// A running session. Dropping it kills the whole tree.
pub struct Session {
    /// The session's stdout, with [`SessionStdio::Piped`].
    pub stdout: Option<OwnedFd>,
    /// The session's stderr, with [`SessionStdio::Piped`].
    pub stderr: Option<OwnedFd>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) enforcement: Enforcement,
    pub(crate) root: Option<PidFd>,
    pub(crate) root_pid: u32,
    pub(crate) started: Instant,
    pub(crate) stop: Option<UnixStream>,
    pub(crate) notify_thread: Option<std::thread::JoinHandle<()>>,
    /// Set to stop the notification thread (with the supervisor's [`Interrupter`]).
    pub(crate) stopped: Arc<AtomicBool>,
    /// The egress proxy of a session in proxy mode; stops with the session.
    pub(crate) proxy: Option<crate::network::proxy::SessionProxy>,
    /// Its cgroup's limits: the next session's spare cgroup is made with them once this
    /// one has ended (see [`crate::Supervisor::prepare_cgroups_ahead`]).
    pub(crate) cgroup_limits: crate::cgroup::CgroupLimits,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.shared.id)
            .field("pid", &self.root_pid)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// The session's id (also in its audit lines).
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// What the sandbox enforces for this session.
    pub fn enforcement(&self) -> &Enforcement {
        &self.enforcement
    }

    /// Pid of the session's first program.
    pub fn pid(&self) -> u32 {
        self.root_pid
    }

    /// A handle that signals the session's process group, usable while [`Session::wait`]
    /// runs.
    pub fn signaller(&self) -> Signaller {
        Signaller {
            shared: self.shared.clone(),
        }
    }

    /// Waits for the session's program to end (or the timeout, which kills the tree),
    /// then tears down whatever is left of the tree.
    pub async fn wait(mut self) -> Result<SessionOutcome, SessionError> {
        let root = self.root.take().ok_or(SessionError::Wait(io::Error::other(
            "session already waited for",
        )))?;
        // A blocking poll on the pidfd: exits only, so a ptrace stop of the root (an
        // escalation in progress) is never consumed here.
        let mut exited = tokio::task::spawn_blocking(move || root.wait_exit());
        let mut timed_out = false;
        let status = loop {
            tokio::select! {
                reaped = &mut exited => {
                    break match reaped {
                        Ok(Ok(Some(st))) => st,
                        // Reaped by an escalation thread that was tracing it when it died.
                        Ok(Ok(None)) => ExitStatus::Signaled(libc::SIGKILL),
                        Ok(Err(e)) => return Err(SessionError::Wait(e)),
                        Err(e) => return Err(SessionError::Wait(io::Error::other(e))),
                    };
                }
                () = self.shared.stopwatch.expired(), if !timed_out => {
                    timed_out = true;
                    self.kill();
                }
            }
        };
        ChildRegistry::global().release(self.root_pid);
        let sweep = self.teardown();
        let _ = tokio::task::spawn_blocking(sweep).await;
        // The next session's cgroup, made while the caller reads this one's result (not
        // while this one started, where it took a CPU from the program).
        let inner = self.shared.inner.clone();
        inner
            .spare_cgroup
            .prepare(&inner, &self.shared.runtime, self.cgroup_limits);
        for (from, to) in self.shared.git_trust.set_aside_planted() {
            tracing::warn!(
                "the session planted {} (read-only to it; absent at start, or put there \
                 through a renamed parent directory): moved to {}",
                from.display(),
                to.display()
            );
        }
        // The caller of the last escalation may have ended the session before the thread
        // recorded it. Bounded: a copy started during teardown is not waited for forever.
        let escalations = self.shared.escalations.take_threads();
        if !escalations.is_empty() {
            let joined = tokio::task::spawn_blocking(move || {
                for thread in escalations {
                    let _ = thread.join();
                }
            });
            let _ = tokio::time::timeout(ESCALATION_RECORD_WAIT, joined).await;
        }
        let notable = std::mem::take(&mut *lock(&self.shared.notable));
        Ok(SessionOutcome {
            status,
            timed_out,
            duration: self.started.elapsed(),
            notable_execs: notable,
            sandbox: self.enforcement.clone(),
            blocked_hosts: self
                .proxy
                .as_ref()
                .map(crate::network::proxy::SessionProxy::blocked)
                .unwrap_or_default(),
        })
    }

    /// Kills the whole tree now: the session's cgroup (or process group) and every
    /// escalated copy. [`Session::wait`] then sweeps up what escaped both.
    pub fn kill(&self) {
        self.shared.kill_fast();
    }

    /// Stops serving and returns the blocking sweep that kills and reaps everything left.
    fn teardown(&mut self) -> impl FnOnce() + Send + 'static {
        self.shared.kill_fast();
        for task in lock(&self.shared.prompts).drain(..) {
            task.abort();
        }
        // Closing the stop channel ends the notification thread; with the listener closed
        // any survivor's exec fails (ENOSYS): fail closed.
        self.stop.take();
        let thread = self.notify_thread.take();
        let shared = self.shared.clone();
        let stopped = self.stopped.clone();
        let shared_for_stop = self.shared.clone();
        let thread = move || {
            if let Some(thread) = thread {
                stop_notify_thread(&shared_for_stop, &thread, &stopped);
                let _ = thread.join();
            }
        };
        move || {
            // Fast path: the cgroup held the whole tree (the root and every escalated copy
            // joined it before exec) and is now empty, so no sweep of /proc is needed.
            if let Some(cgroup) = &shared.cgroup
                && cgroup.kill().is_ok()
            {
                ChildRegistry::global().reap_own_zombies();
                thread();
                return;
            }
            if let Some(tree) = shared.tree.get() {
                match tree.kill_all_in(shared.cgroup.as_ref()) {
                    Ok(report) => tracing::debug!(?report, "session torn down"),
                    Err(err) => tracing::warn!("tearing down the session: {err}"),
                }
            }
            if let Some(cgroup) = &shared.cgroup {
                let _ = cgroup.kill();
            }
            let _ = ChildRegistry::global().reap_orphans();
            thread();
        }
    }
}

/// The signals a caller may pass on to a session's tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Interrupt,
    Terminate,
    Hangup,
    Quit,
    User1,
    User2,
}

impl Signal {
    fn number(self) -> i32 {
        match self {
            Signal::Interrupt => libc::SIGINT,
            Signal::Terminate => libc::SIGTERM,
            Signal::Hangup => libc::SIGHUP,
            Signal::Quit => libc::SIGQUIT,
            Signal::User1 => libc::SIGUSR1,
            Signal::User2 => libc::SIGUSR2,
        }
    }
}

/// Sends signals to a session's process group.
#[derive(Clone)]
pub struct Signaller {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Signaller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signaller")
            .field("session", &self.shared.id)
            .finish()
    }
}

impl Signaller {
    pub fn send(&self, signal: Signal) {
        self.shared.signal(signal.number());
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.stop.is_some() {
            // Never waited for (the caller went away): sweep on a thread of its own, since
            // drop may run on the async runtime.
            let sweep = self.teardown();
            let _ = std::thread::Builder::new()
                .name("execgate-teardown".into())
                .spawn(sweep);
        }
    }
}

/// Ends a notification thread that waits in `RECV` (closing the stop descriptor ends one
/// that polls).
pub(crate) fn stop_notify_thread(
    shared: &Shared,
    thread: &std::thread::JoinHandle<()>,
    stopped: &AtomicBool,
) {
    if let Some(interrupter) = shared.inner.interrupter {
        interrupter.stop(thread, stopped, Duration::from_secs(10));
    }
}

//! The exec gate: a [`Supervisor`] starts [`Session`]s and decides every exec of their trees.
//!
//! Per session, one OS thread waits on the seccomp listener and settles the fast cases
//! itself (continue, deny): no runtime hop on the hot path. Prompts go to the session's
//! [`Approver`] on the tokio runtime and escalations to a thread of their own, so a person
//! taking minutes to answer never stalls the other execs of the tree.

use std::collections::HashSet;
use std::ffi::OsString;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kernel::memory::MemoryAccess;
use kernel::pidfd::PidFd;
use kernel::remote_fd::FdHandoff;
use kernel::seccomp::filter::{BpfProgram, FilterError, FilterOptions};
use kernel::seccomp::listener::{Event, Listener, Notification};
use policy::{Evaluation, Policy};
use tokio::task::JoinHandle;

use crate::approval::Approver;
use crate::audit::AuditLog;
use crate::cgroup::SessionCgroup;
use crate::escalate;
use crate::exec_request::{self, ExecRequest};
use crate::rlimits::RlimitError;
use crate::routing::{self, Action};
use crate::sandbox::SandboxPolicy;
use crate::sandbox::{Enforcement, LandlockError};
use crate::session::{
    Decider, ExecRecord, ExitStatus, RanIn, SessionOutcome, SessionSpec, SessionStdio,
};
use crate::stopwatch::Stopwatch;
use crate::teardown::{self, ChildRegistry, SessionTree};

mod decision;
mod wrapper;

use decision::{ExecFacts, Gate};

/// How long a finished session waits for its escalation threads to record their execs.
const ESCALATION_RECORD_WAIT: Duration = Duration::from_secs(5);

/// Supervisor-wide settings.
#[derive(Debug, Clone, Default)]
pub struct SupervisorOptions {
    /// Append one JSON line per exec to this file.
    pub audit: Option<PathBuf>,
    /// Which backend decides the execs.
    pub backend: BackendRequest,
    /// The patched bash for the wrapper backend (`--patched-bash`); otherwise it is
    /// searched for (see `kernel::detect::patched_shell`).
    pub patched_bash: Option<PathBuf>,
}

/// `--backend auto|unotify|wrapper`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BackendRequest {
    /// unotify where the kernel and container allow it, else the wrapper (with a notice).
    #[default]
    Auto,
    /// A stock bash under a seccomp user-notification listener: every exec of the tree.
    Unotify,
    /// A patched bash or zsh asking through `execgate-execve-wrapper`: that shell's
    /// own execs only.
    Wrapper,
}

impl std::str::FromStr for BackendRequest {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(BackendRequest::Auto),
            "unotify" => Ok(BackendRequest::Unotify),
            "wrapper" => Ok(BackendRequest::Wrapper),
            other => Err(format!(
                "unknown backend {other:?}: expected auto, unotify or wrapper"
            )),
        }
    }
}

/// Why a supervisor could not start.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error(transparent)]
    Filter(#[from] FilterError),
    #[error(
        "this kernel or environment cannot run the seccomp supervisor: {}\n\
         (run `execgate doctor` for details; nothing was run unsupervised)",
        .0.join("; ")
    )]
    Unsupported(Vec<String>),
    #[error(
        "the wrapper backend cannot run here: {}\n\
         (run `execgate doctor` for details; nothing was run unsupervised)",
        .0.join("; ")
    )]
    WrapperUnavailable(Vec<String>),
    #[error("cannot open the audit log {path}: {source}")]
    Audit {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Why a session could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("no command to run")]
    EmptyCommand,
    #[error("workdir {path}: {reason}")]
    Workdir { path: PathBuf, reason: String },
    #[error("{0}: command not found in PATH")]
    NotFound(String),
    #[error("starting {program} under the supervisor: {source}")]
    Spawn {
        program: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the supervisor needs a tokio runtime")]
    NoRuntime,
    #[error("sandbox: {0}")]
    Sandbox(#[from] LandlockError),
    #[error("resource limits: {0}")]
    Limits(#[from] RlimitError),
    #[error("waiting for the session: {0}")]
    Wait(#[source] io::Error),
    #[error(
        "the wrapper backend runs a patched bash or zsh as the session's program, not \
         `{0}`: it only sees the execs that shell makes itself (run `bash -c '...'`, or use \
         the unotify backend)"
    )]
    NotAShell(String),
    #[error("the wrapper backend needs a patched {shell} for `{shell}`: {why}")]
    NoPatchedShell { shell: &'static str, why: String },
    #[error("starting the exec wrapper's socket: {0}")]
    Rendezvous(#[source] io::Error),
}

/// Starts sessions; shared by all of them (cheap to clone).
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("rules", &self.inner.policy.rule_count())
            .field("wait_killable", &self.inner.wait_killable)
            .finish_non_exhaustive()
    }
}

struct Inner {
    policy: Arc<Policy>,
    /// The patched shell and wrapper, when the wrapper backend decides (else unotify).
    wrapper: Option<wrapper::Tools>,
    /// Why auto chose the wrapper, and what it does not see.
    notice: Option<String>,
    audit: Option<AuditLog>,
    filter_net_off: BpfProgram,
    filter_net_on: BpfProgram,
    wait_killable: bool,
    /// How sandboxed trees get a PID namespace with their own `/proc`, where they can.
    pid_namespace: Option<kernel::namespaces::pid::Privilege>,
    /// Notification threads wait in RECV itself and are stopped by a signal; without it
    /// they poll the listener and a stop descriptor.
    interrupter: Option<kernel::seccomp::listener::Interrupter>,
    /// How a paused caller's fds are copied (`pidfd_getfd`, or the /proc reopen where a
    /// container profile blocks it): decided once, here, from feature detection.
    fd_handoff: FdHandoff,
    /// How exec arguments are read (`process_vm_readv`, or `/proc/PID/mem`).
    memory: MemoryAccess,
    git_protection: crate::sandbox::landlock::Protection,
    /// The kernel's Landlock ABI (capped), detected once in `new`.
    landlock_abi: u8,
    next_session: AtomicU64,
    /// `<own cgroup>/execgate/supervisor-<pid>`: every session's cgroup is beneath it.
    cgroup_parent: Option<PathBuf>,
    /// The write end of the watchdog's pipe; closing it (our death) kills `cgroup_parent`.
    _watchdog: Option<OwnedFd>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Sessions removed their own directories; the parent goes when empty.
        if let Some(dir) = &self.cgroup_parent {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

impl Supervisor {
    /// Checks the kernel, chooses the backend, builds the filters once and opens the
    /// audit log. A backend that cannot run here is an error naming what is missing,
    /// never a run without supervision.
    pub fn new(policy: Arc<Policy>, options: SupervisorOptions) -> Result<Self, SupervisorError> {
        let mut features = kernel::detect();
        if options.patched_bash.is_some() {
            features.patched_shell =
                kernel::detect::patched_shell::locate(options.patched_bash.as_deref());
        }
        let choice = crate::backend::choose(&features);
        let reasons = |backend| {
            choice
                .candidates
                .iter()
                .find(|c| c.backend == backend)
                .map(|c| (c.usable, c.rejected_because.clone()))
                .unwrap_or_default()
        };
        let (unotify_ok, unotify_missing) = reasons(crate::backend::Backend::Unotify);
        let (wrapper_ok, wrapper_missing) = reasons(crate::backend::Backend::Wrapper);
        let (backend, notice) = match options.backend {
            BackendRequest::Unotify if !unotify_ok => {
                return Err(SupervisorError::Unsupported(unotify_missing));
            }
            BackendRequest::Wrapper if !wrapper_ok => {
                // "unotify is available" is no reason not to use what was asked for.
                let missing = if unotify_ok {
                    wrapper_missing.into_iter().skip(1).collect()
                } else {
                    wrapper_missing
                };
                return Err(SupervisorError::WrapperUnavailable(missing));
            }
            BackendRequest::Unotify => (crate::backend::Backend::Unotify, None),
            BackendRequest::Wrapper => (crate::backend::Backend::Wrapper, None),
            BackendRequest::Auto if unotify_ok => (crate::backend::Backend::Unotify, None),
            BackendRequest::Auto if wrapper_ok => {
                let bash = features.patched_shell.bash.path.clone().unwrap_or_default();
                let notice = format!(
                    "execgate: seccomp user notification cannot be used here ({}); using the \
                     wrapper backend (patched bash {}): {}",
                    unotify_missing.join("; "),
                    bash.display(),
                    crate::backend::WRAPPER_BLIND_SPOT
                );
                (crate::backend::Backend::Wrapper, Some(notice))
            }
            BackendRequest::Auto => {
                let mut reasons = unotify_missing;
                reasons.push(format!(
                    "nor can the wrapper backend: {}",
                    wrapper_missing.join("; ")
                ));
                return Err(SupervisorError::Unsupported(reasons));
            }
        };
        let wrapper = (backend == crate::backend::Backend::Wrapper)
            .then(|| wrapper::Tools::from_found(&features.patched_shell))
            .flatten();
        let notify_exec = wrapper.is_none();
        // Orphans of every session are re-parented to us, not to init, so teardown finds
        // and reaps them.
        if let Err(err) = teardown::become_subreaper() {
            tracing::warn!("cannot become a child subreaper: {err}");
        }
        let audit = match &options.audit {
            Some(path) => Some(
                AuditLog::open(path).map_err(|source| SupervisorError::Audit {
                    path: path.clone(),
                    source,
                })?,
            ),
            None => None,
        };
        let fd_handoff = choice.stdio_handoff.unwrap_or(FdHandoff::PidfdGetfd);
        let memory = choice.memory_read.unwrap_or(MemoryAccess::ProcessVmReadv);
        if fd_handoff == FdHandoff::ProcReopen || memory == MemoryAccess::ProcMem {
            tracing::info!(
                ?fd_handoff,
                ?memory,
                "a fallback reaches into paused callers"
            );
        }
        let cap_sys_admin = kernel::capabilities::have_cap_sys_admin();
        let (cgroup_parent, watchdog) = arm_watchdog();
        Ok(Supervisor {
            inner: Arc::new(Inner {
                wrapper,
                notice,
                cgroup_parent,
                _watchdog: watchdog,
                policy,
                audit,
                filter_net_off: kernel::seccomp::filter::build(FilterOptions {
                    network: false,
                    notify_exec,
                })?,
                filter_net_on: kernel::seccomp::filter::build(FilterOptions {
                    network: true,
                    notify_exec,
                })?,
                wait_killable: features.seccomp.wait_killable_recv.available,
                // The probe made it the same way: directly with CAP_SYS_ADMIN, else in a
                // user namespace.
                pid_namespace: features
                    .pid_namespace
                    .available
                    .then_some(if cap_sys_admin {
                        kernel::namespaces::pid::Privilege::CapSysAdmin
                    } else {
                        kernel::namespaces::pid::Privilege::UserNamespace
                    }),
                interrupter: kernel::seccomp::listener::Interrupter::get(),
                fd_handoff,
                memory,
                git_protection: if cap_sys_admin {
                    crate::sandbox::landlock::Protection::MountNamespace
                } else {
                    crate::sandbox::landlock::Protection::LandlockSiblings
                },
                landlock_abi: crate::sandbox::landlock::capped_abi(&features.landlock),
                next_session: AtomicU64::new(1),
            }),
        })
    }

    /// The policy every session is decided by.
    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// The backend that decides this supervisor's execs.
    pub fn backend(&self) -> crate::backend::Backend {
        if self.inner.wrapper.is_some() {
            crate::backend::Backend::Wrapper
        } else {
            crate::backend::Backend::Unotify
        }
    }

    /// When `auto` fell back to the wrapper backend: why, and what it does not see. For
    /// the caller to show once (on stderr).
    pub fn notice(&self) -> Option<&str> {
        self.inner.notice.as_deref()
    }

    /// Starts a session. Returns once its first program has exec'd under the filter.
    /// Must be called within a tokio runtime.
    pub fn spawn(&self, spec: SessionSpec) -> Result<Session, SessionError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| SessionError::NoRuntime)?;
        let argv0 = spec.argv.first().ok_or(SessionError::EmptyCommand)?;
        check_workdir(&spec.workdir)?;
        let path_var = spec
            .env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| OsString::from(v))
            .or_else(|| std::env::var_os("PATH"));
        let program = match &self.inner.wrapper {
            None => find_program(argv0, path_var.as_deref(), &spec.workdir)
                .ok_or_else(|| SessionError::NotFound(argv0.clone()))?,
            // The patched shell stands in for the shell named.
            Some(tools) => tools.shell_for(argv0)?,
        };

        let id = self.inner.next_session.fetch_add(1, Ordering::Relaxed);
        let spawn_err = |source| SessionError::Spawn {
            program: program.clone(),
            source,
        };
        // Everything the child applies is prepared here, before the fork.
        let tmpdir = spec
            .env
            .iter()
            .find(|(k, _)| k == "TMPDIR")
            .map(|(_, v)| PathBuf::from(v))
            .or_else(|| std::env::var_os("TMPDIR").map(PathBuf::from));
        let mut landlock = crate::sandbox::landlock::prepare(
            &spec.sandbox,
            &spec.workdir,
            tmpdir.as_deref(),
            self.inner.git_protection,
            self.inner.landlock_abi,
        )?;
        let binds = kernel::namespaces::mount::ReadOnlyBinds::new(landlock.read_only_binds())
            .map_err(spawn_err)?;
        // The tree sees only itself in /proc (Landlock does not stop reading other
        // processes' environments). Not for danger-full-access, which confines nothing.
        let pid_namespace = match self.inner.pid_namespace {
            Some(privilege)
                if spec.sandbox.mode != crate::sandbox::SandboxMode::DangerFullAccess =>
            {
                Some(
                    kernel::namespaces::pid::SessionPidNamespace::new(privilege)
                        .map_err(spawn_err)?,
                )
            }
            _ => None,
        };
        let mut enforcement = landlock.enforcement().clone();
        enforcement.pid_namespace = pid_namespace.is_some();
        let limits = spec.limits.prepare()?;
        let session_name = format!("{}-{id}", std::process::id());
        let cgroup = match self
            .inner
            .cgroup_parent
            .as_deref()
            .map(|parent| SessionCgroup::create_in(parent, &session_name))
            .unwrap_or_else(|| SessionCgroup::create(&session_name))
        {
            Ok(cg) => Some(cg),
            Err(err) => {
                tracing::debug!("no session cgroup, teardown sweeps /proc instead: {err}");
                None
            }
        };
        let joiner = cgroup.as_ref().and_then(|cg| cg.joiner().ok());
        let mut hooks: Vec<kernel::process::ChildHook> = Vec::with_capacity(4);
        if let Some(joiner) = joiner {
            hooks.push(Box::new(move || {
                joiner.join_in_child().map_err(errno_to_io)
            }));
        }
        hooks.push(Box::new(move || {
            limits.apply_in_child().map_err(errno_to_io)
        }));
        hooks.push(Box::new(|| {
            teardown::child_become_subreaper().map_err(errno_to_io)
        }));
        if let Some(pid_namespace) = pid_namespace {
            // Forks twice; only the session's program returns (see kernel::namespaces::pid).
            hooks.push(Box::new(move || pid_namespace.enter_in_child()));
        }
        // Mount changes first: Landlock forbids them once the child is restricted.
        hooks.push(Box::new(move || binds.apply_in_child()));
        hooks.push(Box::new(move || {
            landlock.restrict_self_in_child().map_err(errno_to_io)
        }));
        // The wrapper backend's socket: last, since it takes a fixed descriptor number.
        let rendezvous = match &self.inner.wrapper {
            Some(_) => {
                let (server, shell_end) = escalate_protocol::server::EscalateServer::pair()
                    .map_err(SessionError::Rendezvous)?;
                hooks.push(kernel::process::inherit_fd_hook(
                    shell_end,
                    wrapper::RENDEZVOUS_FD,
                ));
                Some(server)
            }
            None => None,
        };
        let (marker_key, marker_value) = teardown::marker_env(&session_name);
        let (channel_parent, channel_child) = UnixStream::pair().map_err(spawn_err)?;
        let (stop_tx, stop_rx) = UnixStream::pair().map_err(spawn_err)?;

        let mut cmd = Command::new(&program);
        cmd.arg0(argv0)
            .args(&spec.argv[1..])
            .current_dir(&spec.workdir)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .env(&marker_key, &marker_value);
        if let Some(tools) = &self.inner.wrapper {
            tools.set_env(&mut cmd);
        }
        let own_group = spec.stdio != SessionStdio::InheritForeground;
        match spec.stdio {
            SessionStdio::Inherit | SessionStdio::InheritForeground => {}
            SessionStdio::Piped => {
                cmd.stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
            }
        }
        let filter = if spec.sandbox.network {
            self.inner.filter_net_on.clone()
        } else {
            self.inner.filter_net_off.clone()
        };
        kernel::process::confine(
            &mut cmd,
            kernel::process::Confinement {
                filter,
                wait_killable: self.inner.wait_killable,
                listener_channel: rendezvous.is_none().then(|| OwnedFd::from(channel_child)),
                supervisor_pid: libc::pid_t::try_from(std::process::id()).unwrap_or(0),
                new_process_group: own_group,
                hooks,
            },
        );

        let shared = Arc::new(Shared {
            id,
            inner: self.inner.clone(),
            approver: spec.approver.clone(),
            sandbox: spec.sandbox.clone(),
            runtime,
            first_exec_seen: AtomicBool::new(false),
            root_pid: AtomicU32::new(0),
            program: OnceLock::new(),
            pid_namespace: enforcement.pid_namespace,
            notable: Mutex::new(Vec::new()),
            approved: Mutex::new(HashSet::new()),
            escalated: Mutex::new(Vec::new()),
            prompts: Mutex::new(Vec::new()),
            stopwatch: Stopwatch::start(spec.timeout),
            tree: OnceLock::new(),
            cgroup,
            marker: (marker_key, marker_value),
            escalations: Mutex::new(Vec::new()),
            own_group,
        });
        let serving = shared.clone();
        let stopped = Arc::new(AtomicBool::new(false));
        let serve_stopped = self.inner.interrupter.map(|_| stopped.clone());
        let notify_thread = match rendezvous {
            None => Some(
                std::thread::Builder::new()
                    .name(format!("execgate-session-{id}"))
                    .spawn(move || serve(&serving, channel_parent, stop_rx, serve_stopped))
                    .map_err(spawn_err)?,
            ),
            Some(server) => {
                let stop = wrapper::stop_signal(stop_rx).map_err(spawn_err)?;
                shared.runtime.spawn(wrapper::serve(serving, server, stop));
                None
            }
        };

        let started = Instant::now();
        let spawned =
            ChildRegistry::global().spawn(|| crate::spawner::spawn(cmd), |c| Some(c.id()));
        let mut child = match spawned {
            Ok(child) => child,
            Err(err) => {
                drop(stop_tx);
                if let Some(thread) = notify_thread {
                    stop_notify_thread(&shared, &thread, &stopped);
                    let _ = thread.join();
                }
                return Err(spawn_err(err));
            }
        };
        let pid = child.id();
        shared.root_pid.store(pid, Ordering::Release);
        if self.inner.wrapper.is_some() {
            // No exec of its own reaches the wrapper: record the session's program here.
            shared.first_exec_seen.store(true, Ordering::Release);
            let record = shared.record_paused(
                || ExecFacts {
                    pid: i32::try_from(pid).unwrap_or(-1),
                    program: program.clone(),
                    argv: spec.argv.clone(),
                    cwd: spec.workdir.clone(),
                    ppid: i32::try_from(std::process::id()).ok(),
                },
                None,
                Decider::Supervisor,
                RanIn::Sandbox,
                || "the session's own program (the patched shell)".into(),
            );
            shared.store_some(record);
        }
        match SessionTree::new(&session_name, pid) {
            Ok(tree) => {
                let _ = shared.tree.set(tree);
            }
            Err(err) => tracing::warn!("tracking the session's tree: {err}"),
        }
        let root = PidFd::open(pid).map_err(spawn_err)?;
        Ok(Session {
            enforcement,
            stdout: child.stdout.take().map(OwnedFd::from),
            stderr: child.stderr.take().map(OwnedFd::from),
            shared,
            root: Some(root),
            root_pid: pid,
            started,
            stop: Some(stop_tx),
            notify_thread,
            stopped,
        })
    }
}

/// A running session. Dropping it kills the whole tree.
pub struct Session {
    /// The session's stdout, with [`SessionStdio::Piped`].
    pub stdout: Option<OwnedFd>,
    /// The session's stderr, with [`SessionStdio::Piped`].
    pub stderr: Option<OwnedFd>,
    shared: Arc<Shared>,
    enforcement: Enforcement,
    root: Option<PidFd>,
    root_pid: u32,
    started: Instant,
    stop: Option<UnixStream>,
    notify_thread: Option<std::thread::JoinHandle<()>>,
    /// Set to stop the notification thread (with the supervisor's [`Interrupter`]).
    stopped: Arc<AtomicBool>,
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
        // The caller of the last escalation may have ended the session before the thread
        // recorded it. Bounded: a copy started during teardown is not waited for forever.
        let escalations = std::mem::take(&mut *lock(&self.shared.escalations));
        let joined = tokio::task::spawn_blocking(move || {
            for thread in escalations {
                let _ = thread.join();
            }
        });
        let _ = tokio::time::timeout(ESCALATION_RECORD_WAIT, joined).await;
        let notable = std::mem::take(&mut *lock(&self.shared.notable));
        Ok(SessionOutcome {
            status,
            timed_out,
            duration: self.started.elapsed(),
            notable_execs: notable,
            sandbox: self.enforcement.clone(),
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
    shared: Arc<Shared>,
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// State shared by a session's notification thread, prompt tasks and escalation threads.
struct Shared {
    id: u64,
    inner: Arc<Inner>,
    approver: Arc<dyn Approver>,
    sandbox: SandboxPolicy,
    runtime: tokio::runtime::Handle,
    first_exec_seen: AtomicBool,
    root_pid: AtomicU32,
    /// The session's own program, from its first exec: the root itself, or in a PID
    /// namespace two forks below it.
    program: OnceLock<PidFd>,
    /// The tree runs in a PID namespace (root → its init → the program).
    pid_namespace: bool,
    notable: Mutex<Vec<ExecRecord>>,
    approved: Mutex<HashSet<Vec<String>>>,
    /// Escalated copies still running, by pid, so teardown can kill them.
    escalated: Mutex<Vec<(u32, Arc<PidFd>)>>,
    prompts: Mutex<Vec<JoinHandle<()>>>,
    /// The session's timeout clock, paused while a person is being asked.
    stopwatch: Stopwatch,
    /// Membership of the tree for the teardown sweep (set once the root runs).
    tree: OnceLock<SessionTree>,
    /// The session's cgroup, where cgroup v2 is usable.
    cgroup: Option<SessionCgroup>,
    /// `EXECGATE_SESSION=...`, given to escalated copies too.
    marker: (String, String),
    /// Escalation threads: each writes its exec's record after releasing the caller, so
    /// the session waits for them before it reports (or the process exits).
    escalations: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// The session has a process group of its own (pgid == the root's pid).
    own_group: bool,
}

impl Shared {
    /// The fast part of a kill: cgroup.kill (or the process group) and escalated copies.
    fn kill_fast(&self) {
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
    fn signal(&self, sig: i32) {
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

    fn handle(self: &Arc<Self>, listener: &Arc<Listener>, n: Notification) {
        let req = match ExecRequest::read(&n, self.inner.memory) {
            Ok(req) => req,
            Err(err) => {
                tracing::debug!(pid = n.pid, "unreadable exec: {err}");
                let _ = listener.respond_errno(n.id, err.errno());
                return;
            }
        };
        if self.cgroup.is_none()
            && let Some(tree) = self.tree.get()
        {
            // Without a cgroup, teardown finds members by what it saw exec.
            tree.record_exec(n.pid);
        }
        if !self.first_exec_seen.swap(true, Ordering::AcqRel) {
            // The session's own program, started by us: it runs in the sandbox undecided;
            // everything it execs is decided. Paused, so its pid names it.
            if let Ok(program) = pidfd_of(n.pid) {
                let _ = self.program.set(program);
            }
            let record = self.record_paused(
                || req.facts(),
                None,
                Decider::Supervisor,
                RanIn::Sandbox,
                || "the session's own program".into(),
            );
            let _ = listener.respond_continue(n.id);
            self.store_some(record);
            return;
        }
        let argv = req.argv_lossy();
        let program = req.path.to_string_lossy().into_owned();
        let eval = self.inner.policy.evaluate(&program, &argv);
        let action = routing::route(&eval, self.sandbox.mode);
        // The hot path: an exec that stays in the sandbox, with no audit line to write.
        // Neither `NOTIF_ID_VALID` nor a `stat` is needed: an answer to a notification
        // whose caller died (so whose pid may name another process now) is refused by the
        // kernel, and a path that names nothing fails in the caller's exec as it would
        // without us. Two syscalls fewer on every sandboxed exec.
        if action == Action::Continue && self.inner.audit.is_none() {
            let _ = listener.respond_continue(n.id);
            return;
        }
        // What we read is only meaningful if the caller is still the one paused.
        if !listener.id_valid(n.id) {
            return;
        }
        if !req.by_fd {
            // A path that names nothing fails as the kernel would, without a decision:
            // execvp's PATH walk must not ask a person once per directory, nor fill the
            // audit log.
            if let Err(err) = std::fs::metadata(&req.path) {
                let errno = err.raw_os_error().unwrap_or(libc::ENOENT);
                let _ = listener.respond_errno(n.id, errno);
                return;
            }
        }
        let pending = Unotified {
            n,
            req,
            fd_handoff: self.inner.fd_handoff,
        };
        self.decide_evaluated(listener, pending, &program, &argv, eval, action);
    }

    fn escalate(
        self: &Arc<Self>,
        listener: &Arc<Listener>,
        n: Notification,
        req: ExecRequest,
        eval: Evaluation,
        decider: Decider,
    ) {
        let env = match req.read_env(self.inner.memory) {
            Ok(env) => env,
            Err(err) => {
                let _ = listener.respond_errno(n.id, err.errno());
                return;
            }
        };
        let cwd = exec_request::cwd_of(req.tid);
        let job = escalate::Job {
            notification_id: n.id,
            tid: req.tid,
            wait_killable: self.inner.wait_killable,
            fd_handoff: self.inner.fd_handoff,
            copy: escalate::Copy {
                path: req.path.clone(),
                argv: req.argv.clone(),
                env,
                cwd: cwd.clone(),
                marker: self.marker.clone(),
                cgroup: self.cgroup.as_ref().and_then(|cg| cg.joiner().ok()),
            },
        };
        let this = self.clone();
        let thread_listener = listener.clone();
        let spawned = std::thread::Builder::new()
            .name("execgate-escalate".into())
            .spawn(move || {
                let time_ms = now_ms();
                let ppid = exec_request::ppid_of(req.tid);
                let outcome = escalate::run(job, &thread_listener, this.as_ref());
                let mut ran_in = RanIn::Escalated;
                let (status, duration, reason) = match outcome {
                    escalate::Outcome::Ran { status, duration } => {
                        (Some(status), Some(duration), eval.reason())
                    }
                    escalate::Outcome::StdioUnavailable { error } => {
                        ran_in = RanIn::Denied;
                        (None, None, format!("not run outside the sandbox: {error}"))
                    }
                    escalate::Outcome::SpawnFailed { error, .. } => (
                        None,
                        None,
                        format!("escalated copy failed to start: {error}"),
                    ),
                    escalate::Outcome::CallerGone => {
                        (None, None, "the caller went away during escalation".into())
                    }
                };
                let mut record =
                    this.make_record(req.facts(), Some(&eval), decider, ran_in, reason);
                record.time_ms = time_ms;
                // Read while the caller was paused: by now it has exited.
                record.ppid = record.ppid.or(ppid);
                record.cwd = cwd;
                record.status = status;
                record.duration_ms =
                    duration.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
                this.store(record);
            });
        match spawned {
            Ok(thread) => {
                let mut threads = lock(&self.escalations);
                threads.retain(|t| !t.is_finished());
                threads.push(thread);
            }
            Err(_) => {
                let _ = listener.respond_errno(n.id, libc::EAGAIN);
            }
        }
    }
}

/// An exec paused by the seccomp listener.
struct Unotified {
    n: Notification,
    req: ExecRequest,
    /// How the denial line reaches the caller's stderr.
    fd_handoff: FdHandoff,
}

/// The unotify backend: the listener answers the paused exec.
impl Gate for Arc<Listener> {
    type Pending = Unotified;

    fn still_waiting(&self, p: &Unotified) -> bool {
        self.id_valid(p.n.id)
    }

    fn facts(&self, p: &Unotified) -> ExecFacts {
        p.req.facts()
    }

    fn run(&self, p: Unotified) {
        let _ = self.respond_continue(p.n.id);
    }

    fn deny(&self, p: Unotified, reason: &str) {
        let line = format!(
            "execgate: denied `{}`: {reason}",
            shown(&p.req.argv_lossy())
        );
        tell_caller(p.req.tid, p.fd_handoff, line);
        let _ = self.respond_errno(p.n.id, libc::EACCES);
    }

    fn escalate(&self, shared: &Arc<Shared>, p: Unotified, eval: Evaluation, decider: Decider) {
        shared.escalate(self, p.n, p.req, eval, decider);
    }
}

impl ExecRequest {
    /// Read from `/proc` while the caller is paused.
    fn facts(&self) -> ExecFacts {
        ExecFacts {
            pid: i32::try_from(self.tid).unwrap_or(-1),
            program: self.path.clone(),
            argv: self.argv_lossy(),
            cwd: exec_request::cwd_of(self.tid),
            ppid: exec_request::ppid_of(self.tid),
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

/// Creates this supervisor's cgroup and forks the watchdog that kills it if we die, so no
/// process of any session outlives the supervisor. Without cgroup v2 (or `cgroup.kill`,
/// 5.14) there is no watchdog: PDEATHSIG and the closed listener are what remains.
fn arm_watchdog() -> (Option<PathBuf>, Option<OwnedFd>) {
    let Ok(own) = crate::cgroup::own_cgroup_dir() else {
        return (None, None);
    };
    let base = own.join("execgate");
    remove_stale_supervisor_cgroups(&base);
    let dir = base.join(format!("supervisor-{}", std::process::id()));
    if std::fs::create_dir_all(&dir).is_err() {
        return (None, None);
    }
    let watchdog = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("cgroup.kill"))
        .map(OwnedFd::from)
        .and_then(|kill| kernel::watchdog::spawn(&kill));
    match watchdog {
        Ok(pipe) => (Some(dir), Some(pipe)),
        Err(err) => {
            tracing::debug!("no fail-closed watchdog: {err}");
            (Some(dir), None)
        }
    }
}

/// Directories of supervisors that died: empty their (empty) session cgroups and remove
/// them. A cgroup that still holds processes cannot be removed and is left alone.
fn remove_stale_supervisor_cgroups(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("supervisor-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if let Ok(sessions) = std::fs::read_dir(entry.path()) {
            for session in sessions.flatten() {
                if session.path().is_dir() {
                    let _ = std::fs::remove_dir(session.path());
                }
            }
        }
        let _ = std::fs::remove_dir(entry.path());
    }
}

fn errno_to_io(e: nix::errno::Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The notification thread: receive the listener from the child, then serve until the
/// tree is gone or the session stops.
fn serve(
    shared: &Arc<Shared>,
    channel: UnixStream,
    stop: UnixStream,
    stopped: Option<Arc<AtomicBool>>,
) {
    let listener = match kernel::process::recv_fd(channel.as_raw_fd()) {
        Ok(Some(fd)) => Arc::new(Listener::from_fd(fd)),
        // The child failed before installing its filter; spawn reports why.
        Ok(None) => return,
        Err(err) => {
            tracing::error!("receiving the seccomp listener: {err}");
            return;
        }
    };
    drop(channel);
    if !listener.set_sync_wakeup() {
        tracing::debug!("no SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (Linux 6.6): slower round trips");
    }
    loop {
        let event = match &stopped {
            Some(stopped) => listener.wait_blocking(stopped),
            None => listener.wait(stop.as_fd()),
        };
        match event {
            Ok(Event::Notification(n)) => shared.handle(&listener, n),
            Ok(Event::Hangup) | Ok(Event::Stopped) => return,
            Err(err) => {
                tracing::error!("seccomp listener: {err}");
                return;
            }
        }
    }
}

/// Ends a notification thread that waits in `RECV` (closing the stop descriptor ends one
/// that polls).
fn stop_notify_thread(shared: &Shared, thread: &std::thread::JoinHandle<()>, stopped: &AtomicBool) {
    if let Some(interrupter) = shared.inner.interrupter {
        interrupter.stop(thread, stopped, Duration::from_secs(10));
    }
}

/// The session's program under a PID namespace: the only child of the only child of
/// `root` (`/proc/PID/task/TID/children`, Linux 4.2 with CONFIG_PROC_CHILDREN).
fn program_below_pid_namespace(root: u32) -> Option<PidFd> {
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

fn check_workdir(path: &Path) -> Result<(), SessionError> {
    let err = |reason: String| SessionError::Workdir {
        path: path.to_path_buf(),
        reason,
    };
    if !path.is_absolute() {
        return Err(err("must be an absolute path".into()));
    }
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(err("not a directory".into())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(err("does not exist".into())),
        Err(e) => Err(err(e.to_string())),
    }
}

/// `argv0` as exec'd: with a slash, relative to the workdir; else searched in `PATH`.
fn find_program(
    argv0: &str,
    path_var: Option<&std::ffi::OsStr>,
    workdir: &Path,
) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if argv0.contains('/') {
        let p = workdir.join(argv0);
        return executable(&p).then_some(p);
    }
    let path_var = path_var.unwrap_or_else(|| std::ffi::OsStr::new("/usr/local/bin:/usr/bin:/bin"));
    std::env::split_paths(path_var)
        .map(|dir| workdir.join(dir).join(argv0))
        .find(|p| executable(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_quotes_what_a_shell_would_split() {
        let argv = vec!["rm".into(), "-rf".into(), "a b".into(), "it's".into()];
        assert_eq!(shown(&argv), "rm -rf 'a b' 'it'\\''s'");
    }

    #[test]
    fn finds_programs_in_path_and_rejects_missing() {
        let found = find_program(
            "sh",
            Some(std::ffi::OsStr::new("/nonexistent:/bin")),
            Path::new("/"),
        );
        assert_eq!(found, Some(PathBuf::from("/bin/sh")));
        assert_eq!(
            find_program("no-such-program-xyz", None, Path::new("/")),
            None
        );
    }

    #[test]
    fn workdir_errors_say_what_is_wrong() {
        let e = check_workdir(Path::new("relative"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("absolute"), "{e}");
        let e = check_workdir(Path::new("/no/such/dir"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not exist"), "{e}");
        let e = check_workdir(Path::new("/etc/passwd"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a directory"), "{e}");
    }
}

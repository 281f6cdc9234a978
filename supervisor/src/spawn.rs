//! Starting a session: the command and its workdir checked, the sandbox prepared before
//! the fork, and the child's confinement applied in one fixed order between fork and exec.

use std::collections::HashSet;
use std::ffi::OsString;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use kernel::pidfd::PidFd;

use crate::cgroup::SessionCgroup;
use crate::rlimits::{PreparedLimits, RlimitError};
use crate::sandbox::LandlockError;
use crate::sandbox::PreparedLandlock;
use crate::session::{Decider, RanIn, SessionSpec, SessionStdio};
use crate::stopwatch::Stopwatch;
use crate::teardown::{self, ChildRegistry, SessionTree};

use crate::gate::unotify::serve;
use crate::gate::{Shared, decision::ExecFacts, wrapper};
use crate::session::{Session, stop_notify_thread};
use crate::supervisor::{Inner, Supervisor};

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

impl Supervisor {
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
        let agent_roots =
            crate::sandbox::landlock::agent_roots(&spec.sandbox, &spec.workdir, tmpdir.as_deref());
        let confined = spec.sandbox.mode != crate::sandbox::SandboxMode::DangerFullAccess;
        // Proxy mode (`crate::network`): the network off, but some host rule can open it.
        // The tree's own network namespace confines its TCP, so Landlock is not asked to
        // (the proxy's port and the tree's own loopback services both work).
        let proxied = confined && !spec.sandbox.network && self.inner.egress.proxied();
        let landlock_policy = crate::sandbox::SandboxPolicy {
            network: spec.sandbox.network || proxied,
            ..spec.sandbox.clone()
        };
        // Kept read-only even inside a writable root: the rules files the policy read (and
        // the default places it reads them from), and the wrapper backend's patched shells
        // and exec wrapper, which a later session would run to ask.
        let mut protected = self.inner.policy.paths_read();
        if let Some(tools) = &self.inner.wrapper {
            protected.extend(tools.paths().cloned());
        }
        let landlock = crate::sandbox::landlock::prepare_protecting(
            &landlock_policy,
            &spec.workdir,
            tmpdir.as_deref(),
            self.inner.git_protection,
            self.inner.landlock_abi,
            &protected,
        )?;
        let git_trust = landlock.git_trust().clone();
        let binds = kernel::namespaces::mount::ReadOnlyBinds::new(landlock.read_only_binds())
            .map_err(spawn_err)?;
        // The tree sees only itself in /proc (Landlock does not stop reading other
        // processes' environments). Not for danger-full-access, which confines nothing.
        // Nothing of this for danger-full-access, which confines nothing.
        let privilege = self.inner.pid_namespace.filter(|_| confined);
        // Every capability set emptied in every process of the tree (#15): the bounding set
        // too where the child will hold CAP_SETPCAP (a root supervisor, or its own user
        // namespace).
        let drop_caps = confined.then(|| {
            kernel::capabilities::DropAll::new(
                privilege == Some(kernel::namespaces::pid::Privilege::UserNamespace)
                    || kernel::capabilities::have_cap_setpcap(),
            )
        });
        let pid_namespace = match privilege {
            Some(privilege) => Some(
                kernel::namespaces::pid::SessionPidNamespace::new(privilege, true, drop_caps)
                    .map_err(spawn_err)?,
            ),
            None => None,
        };
        // IPC, UTS and cgroup namespaces: made with the PID namespace, else directly where
        // CAP_SYS_ADMIN allows.
        let isolate_alone =
            confined && pid_namespace.is_none() && kernel::capabilities::have_cap_sys_admin();
        let mut enforcement = landlock.enforcement().clone();
        if proxied {
            enforcement.network = false;
            enforcement.egress = "proxy".to_owned();
        }
        enforcement.pid_namespace = pid_namespace.is_some();
        enforcement.capabilities_dropped = drop_caps.is_some();
        enforcement.bounding_set_dropped = drop_caps.is_some_and(|d| d.bounding());
        enforcement.namespaces = match privilege {
            Some(privilege) => kernel::namespaces::names(
                privilege == kernel::namespaces::pid::Privilege::UserNamespace,
            ),
            None if isolate_alone => {
                let mut names: Vec<String> = ["ipc", "uts", "cgroup"]
                    .into_iter()
                    .map(str::to_owned)
                    .collect();
                if !binds.is_empty() {
                    names.push("mount".to_owned());
                }
                names
            }
            None => Vec::new(),
        };
        let (egress_channel, network_namespace) = if proxied {
            let (parent, child) = UnixStream::pair().map_err(spawn_err)?;
            enforcement.namespaces.push("net".to_owned());
            (
                Some(parent),
                Some(kernel::namespaces::net::SessionNetworkNamespace::new(
                    OwnedFd::from(child),
                    crate::network::PROXY_PORT,
                )),
            )
        } else {
            (None, None)
        };
        enforcement.terminal = match &spec.stdio {
            SessionStdio::Terminal(_) => "own",
            SessionStdio::InheritForeground => "shared",
            SessionStdio::Inherit | SessionStdio::Piped => "none",
        }
        .to_owned();
        // Other terminals (the person's among them) hidden by path, where the tree gets a
        // mount namespace; not with the shared terminal (`--pty never`).
        let own_terminal = match &spec.stdio {
            SessionStdio::Terminal(terminal) => Some(terminal),
            _ => None,
        };
        let terminal_masks = if confined
            && (pid_namespace.is_some() || isolate_alone)
            && spec.stdio != SessionStdio::InheritForeground
        {
            kernel::terminal::TerminalMasks::new(
                &crate::terminal::other_terminals(own_terminal),
                pid_namespace.is_some(),
            )
            .map_err(spawn_err)?
        } else {
            kernel::terminal::TerminalMasks::default()
        };
        enforcement.other_terminals_hidden = !terminal_masks.is_empty();
        let limits = spec.limits.prepare()?;
        let session_name = format!("{}-{id}", std::process::id());
        let cgroup = match self.inner.spare_cgroup.take(&spec.cgroup_limits) {
            Some(spare) => Some(spare),
            None => make_cgroup(&self.inner, &session_name, &spec.cgroup_limits),
        };
        // The wrapper backend's socket, for the patched shell at a fixed descriptor.
        let (rendezvous, rendezvous_fd) = match &self.inner.wrapper {
            Some(_) => {
                let (server, shell_end) = escalate_protocol::server::EscalateServer::pair()
                    .map_err(SessionError::Rendezvous)?;
                (
                    Some(server),
                    Some(kernel::process::inherit_fd_hook(
                        shell_end,
                        wrapper::RENDEZVOUS_FD,
                    )),
                )
            }
            None => (None, None),
        };
        let mut plan = ChildPlan {
            limits,
            pid_namespace,
            isolate_alone,
            network_namespace,
            binds,
            landlock,
            rendezvous_fd,
            drop_caps,
            terminal: own_terminal.cloned(),
            terminal_masks,
        };
        let memory = plan.memory();
        let hooks: Vec<kernel::process::ChildHook> = vec![Box::new(move || plan.apply())];
        let (marker_key, marker_value) = teardown::marker_env(&session_name);
        let (channel_parent, channel_child) = UnixStream::pair().map_err(spawn_err)?;
        let (stop_tx, stop_rx) = UnixStream::pair().map_err(spawn_err)?;

        let mut env = ChildEnv::new(spec.inherit_env);
        env.set_all(
            spec.env
                .iter()
                .map(|(k, v)| (OsString::from(k), OsString::from(v))),
        );
        env.set((&marker_key).into(), (&marker_value).into());
        if proxied {
            env.set_all(
                crate::network::proxy_env()
                    .into_iter()
                    .map(|(k, v)| (k.into(), v.into())),
            );
        }
        if let Some(tools) = &self.inner.wrapper {
            tools.set_env(&mut env);
        }
        let child_program = kernel::process::confined::Program {
            path: c_string(program.as_os_str(), "the program's path").map_err(spawn_err)?,
            argv: std::iter::once(argv0.as_str())
                .chain(spec.argv[1..].iter().map(String::as_str))
                .enumerate()
                .map(|(i, arg)| c_string(arg.as_ref(), &format!("argument {i}")))
                .collect::<io::Result<_>>()
                .map_err(spawn_err)?,
            env: env.entries().map_err(spawn_err)?,
            cwd: c_string(spec.workdir.as_os_str(), "the workdir").map_err(spawn_err)?,
        };
        // A session on its own terminal leads a session (and so a group) of its own, made
        // by `setsid` in the plan: no process group before it.
        let own_group = matches!(spec.stdio, SessionStdio::Inherit | SessionStdio::Piped);
        let child_stdio = match &spec.stdio {
            SessionStdio::Piped => kernel::process::confined::ChildStdio::Piped,
            SessionStdio::Inherit | SessionStdio::InheritForeground | SessionStdio::Terminal(_) => {
                kernel::process::confined::ChildStdio::Inherit
            }
        };
        let network = !confined || spec.sandbox.network;
        let filter = if !confined {
            self.inner.filter_danger.clone()
        } else if proxied {
            self.inner.filter_proxy.clone()
        } else if spec.sandbox.network {
            self.inner.filter_net_on.clone()
        } else {
            self.inner.filter_net_off.clone()
        };
        // The listener decides execs (unotify) and, with the network off, unix socket
        // connects (either backend).
        let listens = rendezvous.is_none() || (!network && self.inner.unix_sockets.is_guarded());
        enforcement.unix_sockets = match &self.inner.unix_sockets {
            _ if network => "open".into(),
            crate::gate::sockets::UnixSocketGuard::SeccompNotify => "decided".into(),
            crate::gate::sockets::UnixSocketGuard::Unguarded(why) => why.clone(),
        };
        let confinement = kernel::process::Confinement {
            filter,
            wait_killable: self.inner.reach.wait_killable,
            listener_channel: listens.then(|| OwnedFd::from(channel_child)),
            supervisor_pid: libc::pid_t::try_from(std::process::id()).unwrap_or(0),
            new_process_group: own_group,
            hooks,
        };
        let joining = cgroup.as_ref().and_then(|cg| match cg.joining() {
            Ok(joining) => Some(joining),
            Err(err) => {
                tracing::warn!("the session's first process cannot join its cgroup: {err}");
                None
            }
        });

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
            escalations: crate::escalate::Pool::default(),
            own_group,
            agent_roots,
            git_trust,
            egress_namespace: OnceLock::new(),
        });
        let serving = shared.clone();
        let stopped = Arc::new(AtomicBool::new(false));
        let serve_stopped = self.inner.interrupter.map(|_| stopped.clone());
        let stop_rx = match rendezvous {
            None => stop_rx,
            Some(server) => {
                let stop = wrapper::stop_signal(stop_rx.try_clone().map_err(spawn_err)?)
                    .map_err(spawn_err)?;
                shared
                    .runtime
                    .spawn(wrapper::serve(shared.clone(), server, stop));
                stop_rx
            }
        };
        let notify_thread = if listens {
            Some(
                std::thread::Builder::new()
                    .name(format!("execgate-session-{id}"))
                    .spawn(move || serve(&serving, channel_parent, stop_rx, serve_stopped))
                    .map_err(spawn_err)?,
            )
        } else {
            None
        };

        let started = Instant::now();
        let spawned = ChildRegistry::global().spawn(
            || {
                crate::spawner::run(move || {
                    kernel::process::confined::spawn_confined(
                        &child_program,
                        child_stdio,
                        joining.as_ref(),
                        confinement,
                        memory,
                    )
                })
            },
            |child| u32::try_from(child.pid).ok(),
        );
        let child = match spawned {
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
        let pid = u32::try_from(child.pid).unwrap_or(0);
        shared.root_pid.store(pid, Ordering::Release);
        // The child handed its namespace's listener over before its exec.
        let proxy = match egress_channel {
            Some(channel) => Some(self.start_proxy(&shared, &channel).map_err(spawn_err)?),
            None => None,
        };
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
        let root = match child.pidfd {
            Some(pidfd) => pidfd,
            None => PidFd::open(pid).map_err(spawn_err)?,
        };
        Ok(Session {
            enforcement,
            stdout: child.stdout,
            stderr: child.stderr,
            shared,
            root: Some(root),
            root_pid: pid,
            started,
            stop: Some(stop_tx),
            notify_thread,
            stopped,
            proxy,
            cgroup_limits: spec.cgroup_limits,
        })
    }

    /// Receives the proxy's listening socket from the tree's network namespace and serves
    /// it. Without it the session fails: its tree has no network at all then, but a
    /// session that asked for some should say so.
    fn start_proxy(
        &self,
        shared: &Arc<Shared>,
        channel: &UnixStream,
    ) -> io::Result<crate::network::proxy::SessionProxy> {
        use std::os::fd::{AsFd, AsRawFd};
        channel.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
        let listener = kernel::process::recv_fd(channel.as_raw_fd())?.ok_or_else(|| {
            io::Error::other("the sandbox's network namespace sent no proxy listener")
        })?;
        if let Ok(ns) = kernel::namespaces::net::namespace_of(listener.as_fd()) {
            let _ = shared.egress_namespace.set(ns);
        }
        let context = Arc::new(crate::network::proxy::ProxyContext {
            session: shared.id,
            egress: self.inner.egress.clone(),
            audit: self.inner.audit.clone(),
            blocked: Mutex::new(Vec::new()),
            shared: shared.clone(),
            approved: Mutex::new(HashSet::new()),
            relays: Mutex::new(Vec::new()),
        });
        let _entered = shared.runtime.enter();
        crate::network::proxy::SessionProxy::start(std::net::TcpListener::from(listener), context)
    }
}

/// A session's cgroup in the supervisor's (or our own) cgroup, `limits` put on it; `None`
/// where none can be made (teardown then sweeps `/proc`).
fn make_cgroup(
    inner: &Inner,
    name: &str,
    limits: &crate::cgroup::CgroupLimits,
) -> Option<SessionCgroup> {
    let made = match inner.cgroup_parent.as_deref() {
        Some(parent) => SessionCgroup::create_in(parent, name),
        None => SessionCgroup::create(name),
    };
    match made {
        Ok(mut cgroup) => {
            let held = cgroup.limit(limits);
            tracing::debug!("session cgroup limits: {held:?}");
            Some(cgroup)
        }
        Err(err) => {
            tracing::debug!("no session cgroup, teardown sweeps /proc instead: {err}");
            None
        }
    }
}

/// The next session's cgroup, made ahead (see [`Supervisor::prepare_cgroups_ahead`]).
///
/// What a session could do to it before it is used: nothing in a sandbox (the cgroup
/// filesystem is read-only there, or not the host's); a danger-full-access session can
/// write anywhere, this directory included, as it can write any other session's. A
/// spare that holds a process when it is taken is discarded, not used.
#[derive(Debug, Default)]
pub(crate) struct SpareCgroup {
    enabled: AtomicBool,
    /// A spare is being made: at most one at a time.
    making: AtomicBool,
    ready: Mutex<Option<(crate::cgroup::CgroupLimits, SessionCgroup)>>,
}

impl SpareCgroup {
    pub(crate) fn enable(&self) {
        self.enabled.store(true, Ordering::Release);
    }

    /// The spare, if one is ready with these limits and still empty.
    fn take(&self, limits: &crate::cgroup::CgroupLimits) -> Option<SessionCgroup> {
        let (held, cgroup) = lock(&self.ready).take()?;
        if held != *limits || !matches!(cgroup.is_populated(), Ok(false)) {
            // Dropped: removed (what is in it killed first).
            return None;
        }
        Some(cgroup)
    }

    /// Makes the next spare on a blocking thread, unless one is ready or being made.
    pub(crate) fn prepare(
        &self,
        inner: &Arc<Inner>,
        runtime: &tokio::runtime::Handle,
        limits: crate::cgroup::CgroupLimits,
    ) {
        if !self.enabled.load(Ordering::Acquire)
            || lock(&self.ready).is_some()
            || self.making.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let inner = Arc::clone(inner);
        runtime.spawn_blocking(move || {
            let id = inner.next_session.fetch_add(1, Ordering::Relaxed);
            let name = format!("{}-{id}", std::process::id());
            let spare = &inner.spare_cgroup;
            match make_cgroup(&inner, &name, &limits) {
                // Discarded meanwhile (the supervisor is going away): removed here, now.
                Some(cgroup) if !spare.enabled.load(Ordering::Acquire) => drop(cgroup),
                Some(cgroup) => {
                    // Its files opened here too, off the next session's path.
                    let _ = cgroup.joining();
                    *lock(&spare.ready) = Some((limits, cgroup));
                }
                // Sessions here get none either: stop trying after each one.
                None => spare.enabled.store(false, Ordering::Release),
            }
            spare.making.store(false, Ordering::Release);
        });
    }

    /// Removes the spare and makes no more (the supervisor is going away). One being made
    /// is waited for (a `mkdir` and a few writes; bounded), so that none is left once the
    /// supervisor is dropped.
    pub(crate) fn discard(&self) {
        self.enabled.store(false, Ordering::Release);
        let deadline = Instant::now() + std::time::Duration::from_secs(2);
        while self.making.load(Ordering::Acquire) && Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        lock(&self.ready).take();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What the session's child does to itself between fork and exec, before no-new-privs and
/// the seccomp filter (`kernel::process::Confinement` adds those last). Every step's data
/// was prepared before the fork; [`ChildPlan::apply`] only makes async-signal-safe calls,
/// in the one order that works.
///
/// 1. The session's cgroups are joined before any of this: by the clone itself, or as
///    the child's first step (`kernel::process::confined`), so everything the child
///    becomes is inside them.
struct ChildPlan {
    /// 2. Resource limits, inherited by the whole tree.
    limits: PreparedLimits,
    /// 4. A PID namespace with its own `/proc`, and IPC, UTS and cgroup namespaces (after
    ///    the cgroup join: the session's cgroup is the tree's root); forks twice, only the
    ///    program returns, and the two processes above it drop their capabilities.
    pid_namespace: Option<kernel::namespaces::pid::SessionPidNamespace>,
    /// 4b. Without a PID namespace but with CAP_SYS_ADMIN: the IPC, UTS and cgroup
    ///     namespaces alone.
    isolate_alone: bool,
    /// 4c. Proxy mode: a network namespace with only loopback, the proxy's listener made
    ///     in it and handed to the supervisor (needs the capabilities the PID namespace
    ///     step left, or CAP_SYS_ADMIN).
    network_namespace: Option<kernel::namespaces::net::SessionNetworkNamespace>,
    /// 4d. The session's own terminal: `setsid`, the pty slave as controlling terminal and
    ///     on the descriptors that were the person's terminal. In the program's own
    ///     process (after the PID namespace's forks), before Landlock and the filter.
    terminal: Option<kernel::terminal::ControllingTerminal>,
    /// 4e. Every other terminal (`/dev/pts/N`, the person's) covered by `/dev/null` in the
    ///     tree's own mount namespace, so none can be opened by path.
    terminal_masks: kernel::terminal::TerminalMasks,
    /// 5. Read-only binds (git metadata): before Landlock, which forbids mount changes.
    binds: kernel::namespaces::mount::ReadOnlyBinds,
    /// 6. Landlock `restrict_self`.
    landlock: PreparedLandlock,
    /// 7. The wrapper backend's socket at its fixed number: last, since that number may
    ///    be a descriptor an earlier step still uses.
    rendezvous_fd: Option<kernel::process::ChildHook>,
    /// 8. Every capability set emptied, once nothing after needs one (no-new-privs and the
    ///    filter do not): `None` only for danger-full-access.
    drop_caps: Option<kernel::capabilities::DropAll>,
}

impl ChildPlan {
    /// How the child may hold the supervisor's memory until its exec: shared (no page
    /// tables copied, no copy-on-write faults left behind) only where every step is a bare
    /// syscall that writes no memory and none forks; in practice danger-full-access, which
    /// confines nothing. A step added to the plan must be weighed here.
    fn memory(&self) -> kernel::process::confined::Memory {
        let syscalls_only = self.pid_namespace.is_none()
            && !self.isolate_alone
            && self.network_namespace.is_none()
            && self.terminal_masks.is_empty()
            && self.binds.is_empty()
            && !self.landlock.restricts()
            && self.drop_caps.is_none();
        if syscalls_only {
            kernel::process::confined::Memory::Shared
        } else {
            kernel::process::confined::Memory::Copied
        }
    }

    fn apply(&mut self) -> io::Result<()> {
        self.limits.apply_in_child().map_err(errno_to_io)?;
        // 3. Orphans of the tree are re-parented to the session's root, not to init, so
        //    teardown finds them.
        teardown::child_become_subreaper().map_err(errno_to_io)?;
        if let Some(pid_namespace) = &self.pid_namespace {
            pid_namespace.enter_in_child()?;
        }
        if self.isolate_alone {
            kernel::namespaces::unshare_isolation_in_child()?;
        }
        if let Some(network) = &self.network_namespace {
            network.enter_in_child()?;
        }
        if let Some(terminal) = &self.terminal {
            terminal.enter_in_child()?;
        }
        self.terminal_masks.apply_in_child()?;
        self.binds.apply_in_child()?;
        self.landlock
            .restrict_self_in_child()
            .map_err(errno_to_io)?;
        if let Some(inherit) = &mut self.rendezvous_fd {
            inherit()?;
        }
        if let Some(drop) = &self.drop_caps {
            drop.apply_in_child()?;
        }
        Ok(())
    }
}

/// The session's environment as `std::process::Command` would make it: the supervisor's
/// own (unless cleared), then each change in order, the last for a name winning.
pub(crate) struct ChildEnv {
    vars: std::collections::BTreeMap<OsString, OsString>,
}

impl ChildEnv {
    fn new(inherit: bool) -> ChildEnv {
        ChildEnv {
            vars: if inherit {
                std::env::vars_os().collect()
            } else {
                std::collections::BTreeMap::new()
            },
        }
    }

    pub(crate) fn set(&mut self, name: OsString, value: OsString) {
        self.vars.insert(name, value);
    }

    fn set_all(&mut self, vars: impl IntoIterator<Item = (OsString, OsString)>) {
        self.vars.extend(vars);
    }

    pub(crate) fn remove(&mut self, name: &str) {
        self.vars.remove(std::ffi::OsStr::new(name));
    }

    /// `NAME=value` entries for `execve`; a name or value with a NUL byte is an error
    /// that names it (no exec could pass it).
    fn entries(&self) -> io::Result<Vec<std::ffi::CString>> {
        use std::os::unix::ffi::OsStrExt;
        self.vars
            .iter()
            .map(|(name, value)| {
                let mut entry = Vec::with_capacity(name.len() + value.len() + 1);
                entry.extend_from_slice(name.as_bytes());
                entry.push(b'=');
                entry.extend_from_slice(value.as_bytes());
                std::ffi::CString::new(entry).map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!(
                            "the environment variable {} holds a NUL byte",
                            name.to_string_lossy()
                        ),
                    )
                })
            })
            .collect()
    }
}

/// `s` for `execve`; one with a NUL byte is an error naming `what`.
fn c_string(s: &std::ffi::OsStr, what: &str) -> io::Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(s.as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what} holds a NUL byte"),
        )
    })
}

fn errno_to_io(e: nix::errno::Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
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

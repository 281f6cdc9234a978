//! The supervisor: built once per process from the policy and the detected kernel
//! features (backend, filters, hand-off methods, the fail-closed watchdog); it starts
//! sessions ([`Supervisor::spawn`], in `spawn.rs`). Owns nothing per session.

use std::ffi::OsString;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use kernel::memory::MemoryAccess;
use kernel::remote_fd::FdHandoff;
use kernel::seccomp::filter::{BpfProgram, FilterError, FilterOptions};
use policy::Policy;

use crate::audit::AuditLog;
use crate::teardown::{self};

use crate::escalate;
use crate::gate::paused::Reach;
use crate::gate::wrapper;

/// Supervisor-wide settings.
#[derive(Debug, Clone, Default)]
pub struct SupervisorOptions {
    /// Append one JSON line per exec to this file.
    pub audit: Option<PathBuf>,
    /// Which backend decides the execs.
    pub backend: BackendRequest,
    /// Variables of the caller that escalated copies get besides the supervisor's own base
    /// (`--escalate-env NAME`); loader and tool hook variables are never passed.
    pub escalate_env: Vec<String>,
    /// The patched bash for the wrapper backend (`--patched-bash`); otherwise it is
    /// searched for (see `kernel::detect::patched_shell`).
    pub patched_bash: Option<PathBuf>,
    /// Hosts the sandboxed tree may reach through the egress proxy (`--allow-domain`,
    /// `--deny-domain`, `--proxy-resolve`); with the rules files' `network_rule`s.
    pub egress: crate::network::EgressOptions,
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
    #[error(transparent)]
    Egress(#[from] crate::network::EgressError),
    #[error("cannot open the audit log {path}: {source}")]
    Audit {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Starts sessions; shared by all of them (cheap to clone).
#[derive(Clone)]
pub struct Supervisor {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("rules", &self.inner.policy.rule_count())
            .field("reach", &self.inner.reach)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub(crate) policy: Arc<Policy>,
    /// The patched shell and wrapper, when the wrapper backend decides (else unotify).
    pub(crate) wrapper: Option<wrapper::Tools>,
    /// Why auto chose the wrapper, and what it does not see.
    pub(crate) notice: Option<String>,
    pub(crate) audit: Option<Arc<AuditLog>>,
    pub(crate) filter_net_off: BpfProgram,
    pub(crate) filter_net_on: BpfProgram,
    /// Network off, but `AF_INET`/`AF_INET6` sockets allowed: the tree runs in a network
    /// namespace with only loopback, its way out the egress proxy.
    pub(crate) filter_proxy: BpfProgram,
    /// The egress rules, and whether a tree's network namespace can be made here.
    pub(crate) egress: Arc<crate::network::Egress>,
    /// `danger-full-access`: the exec gate and its own denials, no host-wide denials.
    pub(crate) filter_danger: BpfProgram,
    /// How a paused caller is reached (fds, memory, how its wait is answered): decided
    /// once, here, from feature detection.
    pub(crate) reach: Reach,
    /// How sandboxed trees get a PID namespace with their own `/proc`, where they can.
    pub(crate) pid_namespace: Option<kernel::namespaces::pid::Privilege>,
    /// Notification threads wait in RECV itself and are stopped by a signal; without it
    /// they poll the listener and a stop descriptor.
    pub(crate) interrupter: Option<kernel::seccomp::listener::Interrupter>,
    /// The exec listener escalated copies run under, where the kernel has user
    /// notification (so the policy follows their trees).
    pub(crate) exec_listener: Option<escalate::ExecListener>,
    /// What escalated copies are built from, fixed at start.
    pub(crate) escalation: EscalationSettings,
    pub(crate) git_protection: crate::sandbox::landlock::Protection,
    /// The kernel's Landlock ABI (capped), detected once in `new`.
    pub(crate) landlock_abi: u8,
    /// Whether the tree's unix socket connects are decided here (network off).
    pub(crate) unix_sockets: crate::gate::sockets::UnixSocketGuard,
    pub(crate) next_session: AtomicU64,
    /// `<own cgroup>/execgate/supervisor-<pid>`: every session's cgroup is beneath it.
    pub(crate) cgroup_parent: Option<PathBuf>,
    /// The write end of the watchdog's pipe; closing it (our death) kills `cgroup_parent`.
    pub(crate) _watchdog: Option<OwnedFd>,
    /// The next session's cgroup, made while the supervisor is idle (see
    /// [`Supervisor::prepare_cgroups_ahead`]).
    pub(crate) spare_cgroup: crate::spawn::SpareCgroup,
}

/// What escalated copies are built from: read from the supervisor's own environment at
/// start, so nothing a session does later changes it.
#[derive(Debug)]
pub(crate) struct EscalationSettings {
    /// The supervisor's own values of [`escalate::BASE_VARIABLES`] and `LC_*`.
    pub base_env: Vec<(OsString, OsString)>,
    /// The caller's variables the person allowed through.
    pub pass_env: Vec<String>,
    /// The supervisor's `PATH`: where a bare-name allow rule's program is looked up.
    pub trusted_path: Vec<PathBuf>,
    /// Files owned by this uid (or root) may be escalated.
    pub own_uid: u32,
}

impl EscalationSettings {
    fn from_process(pass_env: &[String]) -> Self {
        use std::os::unix::fs::MetadataExt;
        let base_env = std::env::vars_os()
            .filter(|(k, _)| {
                k.to_str()
                    .is_some_and(|k| escalate::BASE_VARIABLES.contains(&k) || k.starts_with("LC_"))
            })
            .collect();
        let trusted_path = std::env::var_os("PATH")
            .map(|p| {
                std::env::split_paths(&p)
                    .filter(|d| d.is_absolute())
                    .collect()
            })
            .unwrap_or_default();
        EscalationSettings {
            base_env,
            pass_env: pass_env.to_vec(),
            trusted_path,
            own_uid: std::fs::metadata("/proc/self")
                .map(|m| m.uid())
                .unwrap_or(0),
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        // The spare cgroup now, not when the last session or spare maker lets go of `Inner`:
        // nothing of this supervisor's is left in the cgroup tree once it is dropped.
        self.inner.spare_cgroup.discard();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Before the parent: a spare cgroup is a directory in it.
        self.spare_cgroup.discard();
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
        // The first cgroup join's grace period runs beside the probes.
        let _ = crate::cgroup::warm_migration_lock();
        // The network namespace is only probed where something may open a host: without,
        // no session is proxied whatever the probe says.
        let mut features = kernel::detect::detect_with(kernel::detect::Probes {
            network_namespace: !options.egress.allow.is_empty()
                || policy.network().opens_anything(),
        });
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
        let unix_sockets =
            crate::gate::sockets::UnixSocketGuard::choose(unotify_ok, &unotify_missing, &features);
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
        let notify_connect = unix_sockets.is_guarded();
        // Orphans of every session are re-parented to us, not to init, so teardown finds
        // and reaps them.
        if let Err(err) = teardown::become_subreaper() {
            tracing::warn!("cannot become a child subreaper: {err}");
        }
        let audit = match &options.audit {
            Some(path) => Some(Arc::new(AuditLog::open(path).map_err(|source| {
                SupervisorError::Audit {
                    path: path.clone(),
                    source,
                }
            })?)),
            None => None,
        };
        // The tree's network namespace is made as its PID namespace is: directly with
        // CAP_SYS_ADMIN, else in the user namespace that step makes.
        let namespace = if !features.network_namespace.available {
            Err(features.network_namespace.detail.clone())
        } else if !kernel::capabilities::have_cap_sys_admin() && !features.pid_namespace.available {
            Err(format!(
                "without CAP_SYS_ADMIN it is made in the PID namespace's user namespace, and                  that cannot be made here: {}",
                features.pid_namespace.detail
            ))
        } else {
            Ok(())
        };
        let egress = crate::network::Egress::new(policy.network(), &options.egress, namespace)?;
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
                    inet: false,
                    notify_exec,
                    notify_connect,
                    host: true,
                })?,
                filter_net_on: kernel::seccomp::filter::build(FilterOptions {
                    network: true,
                    inet: false,
                    notify_exec,
                    notify_connect,
                    host: true,
                })?,
                filter_proxy: kernel::seccomp::filter::build(FilterOptions {
                    network: false,
                    inet: true,
                    notify_exec,
                    notify_connect,
                    host: true,
                })?,
                egress: Arc::new(egress),
                filter_danger: kernel::seccomp::filter::build(FilterOptions {
                    network: true,
                    inet: false,
                    notify_exec,
                    notify_connect,
                    host: false,
                })?,
                reach: Reach {
                    fd_handoff,
                    memory,
                    wait_killable: features.seccomp.wait_killable_recv.available,
                },
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
                exec_listener: if unotify_ok {
                    Some(escalate::ExecListener {
                        filter: kernel::seccomp::exec_listener::build()?,
                        wait_killable: features.seccomp.wait_killable_recv.available,
                        no_new_privs: !cap_sys_admin,
                    })
                } else {
                    None
                },
                escalation: EscalationSettings::from_process(&options.escalate_env),
                git_protection: if cap_sys_admin {
                    crate::sandbox::landlock::Protection::MountNamespace
                } else {
                    crate::sandbox::landlock::Protection::LandlockSiblings
                },
                landlock_abi: crate::sandbox::landlock::capped_abi(&features.landlock),
                unix_sockets,
                next_session: AtomicU64::new(1),
                spare_cgroup: crate::spawn::SpareCgroup::default(),
            }),
        })
    }

    /// For a supervisor that runs many sessions (the MCP server): after each session
    /// ends, the next one's cgroup is made and limited in the background (with the limits
    /// the ended one had), so that a session's start does not wait for it (0.3-0.5 ms on a
    /// cgroup v1/v2 hybrid host, where the limits need directories in two more
    /// hierarchies). Made at the end rather than at the start of a session: there it took a
    /// CPU from the starting program on a small machine.
    pub fn prepare_cgroups_ahead(&self) {
        self.inner.spare_cgroup.enable();
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
    // On a hybrid host the limits live in v1 hierarchies too, under the same names.
    for v1 in crate::cgroup::own_v1_limit_dirs() {
        remove_stale_supervisor_cgroups(&v1);
    }
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

/// Directories (`supervisor-<pid>`) of supervisors that died, in `base`: empty their
/// (empty) session cgroups and remove them. A cgroup that still holds processes cannot be
/// removed and is left alone.
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
        // Its sessions, and what their trees made below them, are empty: removed with it.
        crate::cgroup::remove_tree(&entry.path());
    }
}

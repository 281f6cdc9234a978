//! The sandbox's filesystem, TCP and IPC-scope restrictions, built with Landlock.
//!
//! This module owns turning a [`SandboxPolicy`] into a Landlock ruleset **in the parent,
//! before fork** ([`prepare`]), and the one child-side call that enforces it
//! ([`PreparedLandlock::restrict_self_in_child`]). It never decides execs and never writes
//! a seccomp filter (that is `seccomp/`).
//!
//! # What is enforced
//! - `read-only`: execute/read everywhere; write only to the harmless device files
//!   ([`DEVICE_FILES`]: `/dev/null`, `/dev/zero`, `/dev/full`, `/dev/tty`, `/dev/ptmx`,
//!   `/dev/pts`). `/dev/fd/N` and `/dev/stdout` resolve through `/proc/self/fd` to the
//!   opened object and are checked as that object: a pipe or socket is not a path and is
//!   never restricted, a terminal is `/dev/pts/N` (allowed), a regular file is checked where
//!   it lives.
//! - `workspace-write`: the same, plus every writable root (the workdir, each
//!   `writable_roots` entry, `/tmp` and `$TMPDIR` unless excluded; the workdir not when
//!   `workdir_writable` is false) with all rights except
//!   `MAKE_CHAR`/`MAKE_BLOCK`: root inside the sandbox could otherwise `mknod` a node for
//!   the disk in the workdir and write the disk through it.
//! - `danger-full-access`: no Landlock at all.
//! - Network off (read-only and workspace-write): TCP bind and connect are handled with no
//!   rule, so both are denied (Landlock ABI 4). The socket-family deny is seccomp's.
//! - Always (read-only and workspace-write): signal and abstract-unix-socket scoping
//!   (ABI 6), so nothing inside can signal or connect to the supervisor, an escalated
//!   command, or any process outside the sandbox's Landlock domain.
//!
//! # What would run later outside stays read-only inside writable roots
//! At start, [`prepare`] searches the workdir and the explicit writable roots (not /tmp
//! and `$TMPDIR`, only their own `.git`) for repositories (breadth first, bounded by
//! [`GIT_SCAN_MAX_DEPTH`], [`GIT_SCAN_MAX_DIRS`], [`GIT_SCAN_BUDGET`],
//! [`GIT_SCAN_MAX_REPOS`], skipping hidden directories and [`GIT_SCAN_SKIP`]) and the
//! workdir's ancestors. The rules files the supervisor loaded are added
//! ([`prepare_protecting`]). Of every
//! git directory found (`.git` directories, `gitdir:` files and links, submodules'
//! `.git/modules/**`, linked worktrees' `.git/worktrees/*`) the entries that configure what
//! git runs (`config`, `config.worktree`, `hooks`, `info`, `commondir`, `gitdir`) and the
//! `.git` files are protected; so are the [`STARTUP_FILES`] in `$HOME` (when inside a
//! root) and directly in each root. Index, objects and refs stay writable: `git add` and
//! `git commit` work inside. [`GitTrust`] records the git directories protected (path,
//! device, inode) for the escalation decision.
//!
//! With [`Protection::MountNamespace`] the protected paths that exist are bound read-only
//! in the child's private mount namespace; an absent one can be created (a mount needs a
//! target; see docs/threat-model.md). With [`Protection::LandlockSiblings`] (no
//! `CAP_SYS_ADMIN`): Landlock has only allow rules, and a rule on a directory covers
//! everything beneath it. So a writable root that contains a protected path is not
//! granted itself: [`prepare`] descends into it and grants each *sibling* of the protected
//! path instead, descending again only into the siblings that themselves contain a
//! protected path. Regular files next to it get the file rights (write, truncate) on the
//! file itself. Symlinks are never granted (a link to `/etc` would otherwise make `/etc`
//! writable); writes through them are checked at their target. Entries are opened
//! `O_PATH|O_NOFOLLOW` under a pinned parent (`/proc/self/fd/N/name`), so a directory
//! swapped for a symlink while we look is not followed. Absent protected paths are
//! covered too (their directory gets no create right).
//!
//! Consequences under Landlock siblings, accepted: in a directory on the path to a
//! protected path (every repository root, `.git` itself, `$HOME` when writable) nothing
//! can be created, removed or renamed directly, so `git add`/`git commit` inside fail
//! there; existing files stay writable and unrelated subdirectories are fully writable.
//! Since /tmp and `$TMPDIR` are not searched, a clone somewhere in /tmp does not take
//! /tmp's create right away; escalated git does not trust what was not searched.
//!
//! # Best effort, reported
//! The ruleset asks for everything up to [`TARGET_ABI`] in `CompatLevel::BestEffort`; the
//! kernel's ABI is probed (with `HardRequirement` probes, no syscall of our own) and the
//! missing features are reported in [`Enforcement`], before fork. `require_full` turns an
//! incomplete enforcement into [`LandlockError::Incomplete`].

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use ::kernel::detect::landlock::ABI_SINCE;
use ::landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, PathBeneath,
    RestrictSelfError, Ruleset, RulesetAttr, RulesetCreated, RulesetCreatedAttr, RulesetError,
    Scope,
};
use nix::errno::Errno;
use serde::{Deserialize, Serialize};

use super::policy::{SandboxMode, SandboxPolicy};

/// The newest Landlock ABI whose features execgate asks for and has tested: 6 (Linux 6.12,
/// signal and abstract-unix scoping). ABI 9's `RESOLVE_UNIX` would restrict pathname
/// `AF_UNIX` sockets, which must keep working; ABI 10's UDP rules are left to seccomp.
pub const TARGET_ABI: ABI = ABI::V6;

/// Device files that stay readable and writable in every sandboxed mode.
pub const DEVICE_FILES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/tty",
    "/dev/ptmx",
    "/dev/pts",
];

/// A Landlock feature the sandbox asks for, with the ABI and kernel that bring it.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema), schemars(inline))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Feature {
    /// Filesystem access control (ABI 1).
    Filesystem,
    /// `truncate(2)` restricted (ABI 3); without it any file can be truncated.
    Truncate,
    /// TCP bind/connect restricted (ABI 4); only asked for with network off.
    TcpBindConnect,
    /// `ioctl(2)` on device files restricted (ABI 5).
    IoctlDev,
    /// Signals to processes outside the sandbox refused (ABI 6).
    SignalScoping,
    /// Connecting to abstract unix sockets created outside refused (ABI 6).
    AbstractUnixSocketScoping,
}

impl Feature {
    /// The Landlock ABI that first has this feature.
    pub fn abi(self) -> u8 {
        match self {
            Feature::Filesystem => 1,
            Feature::Truncate => 3,
            Feature::TcpBindConnect => 4,
            Feature::IoctlDev => 5,
            Feature::SignalScoping | Feature::AbstractUnixSocketScoping => 6,
        }
    }

    /// The first Linux release with that ABI (`kernel::detect::landlock::ABI_SINCE`, the
    /// one ABI->kernel table).
    pub fn first_kernel(self) -> String {
        let since = ABI_SINCE[usize::from(self.abi()) - 1];
        format!("{}.{}", since.major, since.minor)
    }
}

/// A requested feature the running kernel does not have.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema), schemars(inline))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingFeature {
    pub feature: Feature,
    pub landlock_abi: u8,
    pub first_kernel: String,
}

impl From<Feature> for MissingFeature {
    fn from(feature: Feature) -> Self {
        MissingFeature {
            feature,
            landlock_abi: feature.abi(),
            first_kernel: feature.first_kernel(),
        }
    }
}

/// How much of the requested sandbox the kernel enforces.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema), schemars(inline))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnforcementLevel {
    /// Everything requested is enforced.
    Full,
    /// Some requested features are missing (listed).
    Partial,
    /// Landlock is unavailable: nothing of the filesystem/TCP/scoping sandbox holds.
    None,
    /// `danger-full-access`: nothing was asked for.
    NotRequested,
}

/// What the Landlock layer enforces for a session: for `doctor`, the audit log and the
/// session result.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema), schemars(inline))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enforcement {
    pub mode: SandboxMode,
    /// TCP allowed (`--network`).
    pub network: bool,
    pub level: EnforcementLevel,
    /// The kernel's Landlock ABI, capped at [`TARGET_ABI`]; 0 when unavailable.
    pub landlock_abi: u8,
    /// Requested features the kernel lacks.
    pub missing: Vec<MissingFeature>,
    /// Writable roots actually granted (canonical).
    pub writable_roots: Vec<PathBuf>,
    /// Paths kept read-only inside writable roots (git configuration and hooks, `.git`
    /// files, start-up files).
    pub read_only_inside_roots: Vec<PathBuf>,
    /// The tree runs in a PID namespace with its own `/proc`: it cannot see (nor read the
    /// environment of) any process outside it.
    #[serde(default)]
    pub pid_namespace: bool,
    /// Every process of the tree emptied its effective, permitted, inheritable and ambient
    /// capability sets after the set-up steps that needed them (#15).
    #[serde(default)]
    pub capabilities_dropped: bool,
    /// The bounding set was emptied too (the tree held CAP_SETPCAP: a root supervisor, or
    /// its own user namespace). Without it nothing can raise a capability again anyway:
    /// no-new-privs.
    #[serde(default)]
    pub bounding_set_dropped: bool,
    /// The namespaces the tree runs in besides the host's: pid, mount, ipc, uts, cgroup
    /// (and user, when made without CAP_SYS_ADMIN).
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// How unix socket connects are held: `decided` (network off: only the session's own
    /// sockets and those named by `--allow-unix-socket`), `open` (network on, or no
    /// sandbox), or why they cannot be held here.
    #[serde(default)]
    pub unix_sockets: String,
    /// How the tree reaches the network: `off`, `open`, or `proxy` (a network namespace
    /// with only loopback; out only through the supervisor's egress proxy, by host rule).
    #[serde(default)]
    pub egress: String,
    /// The session's terminal: `own` (a pseudo-terminal of its own, relayed: the CLI on a
    /// terminal), `shared` (the person's, `--pty never`), or `none` (pipes, files: MCP).
    #[serde(default)]
    pub terminal: String,
    /// Every other terminal (the person's, other sessions' `/dev/pts/N`) is hidden from the
    /// tree by path (`/dev/null` bound over it in the tree's mount namespace).
    #[serde(default)]
    pub other_terminals_hidden: bool,
}

impl Enforcement {
    /// The pure part of the report: which requested features an ABI lacks.
    pub fn for_abi(mode: SandboxMode, network: bool, landlock_abi: u8) -> Enforcement {
        let requested: &[Feature] = match (mode, network) {
            (SandboxMode::DangerFullAccess, _) => &[],
            (_, true) => &[
                Feature::Filesystem,
                Feature::Truncate,
                Feature::IoctlDev,
                Feature::SignalScoping,
                Feature::AbstractUnixSocketScoping,
            ],
            (_, false) => &[
                Feature::Filesystem,
                Feature::Truncate,
                Feature::TcpBindConnect,
                Feature::IoctlDev,
                Feature::SignalScoping,
                Feature::AbstractUnixSocketScoping,
            ],
        };
        let missing: Vec<MissingFeature> = requested
            .iter()
            .filter(|f| f.abi() > landlock_abi)
            .map(|&f| f.into())
            .collect();
        let level = if requested.is_empty() {
            EnforcementLevel::NotRequested
        } else if landlock_abi == 0 {
            EnforcementLevel::None
        } else if missing.is_empty() {
            EnforcementLevel::Full
        } else {
            EnforcementLevel::Partial
        };
        Enforcement {
            mode,
            network,
            level,
            landlock_abi,
            missing,
            writable_roots: Vec::new(),
            read_only_inside_roots: Vec::new(),
            pid_namespace: false,
            capabilities_dropped: false,
            unix_sockets: String::new(),
            egress: if network { "open" } else { "off" }.to_owned(),
            bounding_set_dropped: false,
            namespaces: Vec::new(),
            terminal: "none".to_owned(),
            other_terminals_hidden: false,
        }
    }

    /// What this kernel would enforce for `mode` (for `execgate doctor`).
    pub fn probe(mode: SandboxMode, network: bool) -> Enforcement {
        Enforcement::for_abi(mode, network, probe_kernel_abi())
    }

    /// One line for people: `landlock: partial (ABI 3; missing tcp_bind_connect: ABI 4, Linux 6.7, ...)`.
    pub fn summary(&self) -> String {
        let level = match self.level {
            EnforcementLevel::Full => "full",
            EnforcementLevel::Partial => "partial",
            EnforcementLevel::None => "none",
            EnforcementLevel::NotRequested => "not requested",
        };
        let mut s = format!("landlock: {level} (ABI {}", self.landlock_abi);
        if !self.missing.is_empty() {
            s.push_str("; missing ");
            let parts: Vec<String> = self
                .missing
                .iter()
                .map(|m| {
                    let name = serde_json::to_value(m.feature)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default();
                    format!("{name}: ABI {}, Linux {}", m.landlock_abi, m.first_kernel)
                })
                .collect();
            s.push_str(&parts.join(", "));
        }
        s.push(')');
        s
    }
}

/// Errors preparing the ruleset, each naming the step and the path.
#[derive(Debug, thiserror::Error)]
pub enum LandlockError {
    #[error("sandbox workdir {path}: {source}")]
    Workdir { path: PathBuf, source: io::Error },
    #[error("writable root {path}: {source}")]
    WritableRoot { path: PathBuf, source: io::Error },
    #[error("listing {path} to keep .git read-only: {source}")]
    ListDir { path: PathBuf, source: io::Error },
    #[error("opening {path} for a Landlock rule: {source}")]
    OpenRulePath { path: PathBuf, source: io::Error },
    #[error("building the Landlock ruleset: {0}")]
    Ruleset(#[from] RulesetError),
    #[error(
        "the sandbox is required in full but the kernel lacks: {} ({})",
        missing_list(.missing), .summary
    )]
    Incomplete {
        missing: Vec<MissingFeature>,
        summary: String,
    },
}

fn missing_list(missing: &[MissingFeature]) -> String {
    let parts: Vec<String> = missing
        .iter()
        .map(|m| {
            format!(
                "{:?} (Landlock ABI {}, Linux {})",
                m.feature, m.landlock_abi, m.first_kernel
            )
        })
        .collect();
    parts.join(", ")
}

/// A ruleset built in the parent, waiting to be enforced in the child.
#[derive(Debug)]
pub struct PreparedLandlock {
    ruleset: Option<RulesetCreated>,
    enforcement: Enforcement,
    read_only_binds: Vec<PathBuf>,
    git_trust: GitTrust,
}

impl PreparedLandlock {
    /// What will be enforced.
    pub fn enforcement(&self) -> &Enforcement {
        &self.enforcement
    }

    /// With [`Protection::MountNamespace`]: the paths the child must bind read-only (in a
    /// private mount namespace) before it restricts itself.
    pub fn read_only_binds(&self) -> &[PathBuf] {
        &self.read_only_binds
    }

    /// Where escalated git may run: the repositories the session cannot configure.
    pub fn git_trust(&self) -> &GitTrust {
        &self.git_trust
    }

    /// Whether the child restricts itself at all (`false`: danger-full-access, or no
    /// Landlock here).
    pub fn restricts(&self) -> bool {
        self.ruleset.is_some()
    }

    /// Child side, between fork and exec: enforce the ruleset on the calling thread (the
    /// whole child is single-threaded there). Also sets `PR_SET_NO_NEW_PRIVS` (Landlock
    /// requires it for an unprivileged caller; the spawn sets it again, harmlessly).
    ///
    /// Async-signal-safe: performs no heap allocation. Read in landlock 0.4.8
    /// (`RulesetCreated::restrict_self`, `prctl::try_set_no_new_privs`): two `prctl`s, one
    /// `landlock_restrict_self`, `close` of the ruleset fd; errors are
    /// `io::Error::last_os_error()` (an inline errno) wrapped in plain enums. Checked with
    /// a counting allocator in `tests/child_side_no_alloc.rs`. Calling it
    /// twice is a no-op the second time. Without Landlock (or for `danger-full-access`) it
    /// does nothing.
    pub fn restrict_self_in_child(&mut self) -> Result<(), Errno> {
        // Nothing written where there is nothing to do: a child sharing the supervisor's
        // memory runs this too (`kernel::process::confined::Memory::Shared`).
        if self.ruleset.is_none() {
            return Ok(());
        }
        let Some(ruleset) = self.ruleset.take() else {
            return Ok(());
        };
        match ruleset.restrict_self() {
            Ok(_) => Ok(()),
            Err(RulesetError::RestrictSelf(
                RestrictSelfError::SetNoNewPrivsCall { source, .. }
                | RestrictSelfError::RestrictSelfCall { source, .. },
            )) => Err(Errno::from_raw(
                source.raw_os_error().unwrap_or(libc::EPERM),
            )),
            Err(_) => Err(Errno::EINVAL),
        }
    }
}

/// How `.git` inside a writable root is kept read-only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protection {
    /// Landlock alone: grant the siblings of `.git`, never the directory holding it (nothing
    /// can be created directly in a repo root). For a supervisor without `CAP_SYS_ADMIN`.
    LandlockSiblings,
    /// The child binds each protected path read-only in a private mount namespace
    /// ([`PreparedLandlock::read_only_binds`]), and Landlock grants the roots whole.
    MountNamespace,
}

/// Build the session's ruleset in the parent, before fork. `tmpdir` is the child's
/// `$TMPDIR`, if set. `abi` is the kernel's Landlock ABI as detected once at start
/// ([`capped_abi`] of `kernel::detect`'s answer): nothing is probed per session.
pub fn prepare(
    policy: &SandboxPolicy,
    workdir: &Path,
    tmpdir: Option<&Path>,
    protection: Protection,
    abi: u8,
) -> Result<PreparedLandlock, LandlockError> {
    prepare_protecting(policy, workdir, tmpdir, protection, abi, &[])
}

/// [`prepare`], keeping `also_read_only` (the rules files and directories the supervisor
/// loaded) read-only too where they lie inside a writable root.
pub fn prepare_protecting(
    policy: &SandboxPolicy,
    workdir: &Path,
    tmpdir: Option<&Path>,
    protection: Protection,
    abi: u8,
    also_read_only: &[PathBuf],
) -> Result<PreparedLandlock, LandlockError> {
    let since = trusted_before();
    let mut enforcement = Enforcement::for_abi(policy.mode, policy.network, abi);
    check_required(policy, &enforcement)?;
    // Every place the session can write whatever its mode (an earlier call may have):
    // no repository there is trusted unless shown unchanged.
    let mut git_trust = GitTrust {
        roots: agent_roots(policy, workdir, tmpdir),
        since,
        ..GitTrust::default()
    };
    if policy.mode == SandboxMode::DangerFullAccess {
        return Ok(PreparedLandlock {
            ruleset: None,
            enforcement,
            read_only_binds: Vec::new(),
            git_trust,
        });
    }

    let workdir = workdir
        .canonicalize()
        .map_err(|source| LandlockError::Workdir {
            path: workdir.to_owned(),
            source,
        })?;

    let handled = AccessFs::from_all(TARGET_ABI);
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(handled)?;
    if !policy.network {
        ruleset = ruleset.handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp)?;
    }
    let mut created = ruleset
        .scope(Scope::Signal | Scope::AbstractUnixSocket)?
        .create()?;

    created = created.add_rule(PathBeneath::new(
        open_path(Path::new("/"), false)?,
        AccessFs::from_read(TARGET_ABI),
    ))?;
    let device_access = AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::IoctlDev;
    for dev in DEVICE_FILES {
        // A missing device (no tty in a container) is simply not granted.
        if let Ok(file) = open_path(Path::new(dev), false) {
            created = created.add_rule(PathBeneath::new(file, device_access))?;
        }
    }

    let mut read_only_binds = Vec::new();
    if policy.mode == SandboxMode::WorkspaceWrite {
        let roots = writable_roots(policy, &workdir, tmpdir)?;
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .filter(|h| h.is_absolute())
            .and_then(|h| h.canonicalize().ok());
        // Only the workdir and the explicit roots are searched: /tmp and $TMPDIR are shared
        // and often large (thousands of directories: the search would cost milliseconds per
        // session), and under Landlock siblings a repository somewhere in /tmp would take
        // /tmp's create rights away. Their own `.git` is still protected; escalated git does
        // not trust what was not searched.
        let mut walk: Vec<PathBuf> = Vec::new();
        if policy.workdir_writable {
            walk.push(workdir.clone());
        }
        walk.extend(
            policy
                .writable_roots
                .iter()
                .filter_map(|r| r.canonicalize().ok()),
        );
        let mut found = scan(&roots, &walk, &workdir, home.as_deref());
        for path in also_read_only {
            match path.canonicalize() {
                Ok(path) => {
                    if roots.iter().any(|r| path.starts_with(r)) {
                        found.present.push(path);
                    }
                }
                // Not there yet: a session must not create it either (set aside at its
                // end where it could).
                Err(_) => {
                    if let Some(path) = resolve_absent(path)
                        && roots.iter().any(|r| path.starts_with(r))
                    {
                        found.absent.push(path);
                    }
                }
            }
        }
        found.absent.sort();
        found.absent.dedup();
        found.present.sort();
        found.present.dedup();
        let protected = match protection {
            Protection::LandlockSiblings => {
                let mut all = found.present.clone();
                all.extend(found.absent.iter().cloned());
                all.sort();
                all
            }
            // A mount needs an existing target (a dangling link has none).
            Protection::MountNamespace => found
                .present
                .iter()
                .filter(|p| p.metadata().is_ok())
                .cloned()
                .collect(),
        };
        let landlock_protected: &[PathBuf] = match protection {
            Protection::LandlockSiblings => &protected,
            Protection::MountNamespace => {
                read_only_binds = protected.clone();
                &[]
            }
        };
        git_trust.scanned = true;
        git_trust.dirs = found.trust.dirs;
        git_trust.truncated = found.trust.truncated;
        if protection == Protection::MountNamespace {
            // No bind for what does not exist: looked at again when the session ends.
            git_trust.absent_at_start = found.absent.clone();
            // A bind holds the file, not its name: a session that renames a parent
            // directory can put another file at the same path. Each one's identity, to
            // look at again when the session ends.
            git_trust.present_at_start = read_only_binds
                .iter()
                .filter_map(|p| {
                    let meta = p.symlink_metadata().ok()?;
                    Some((p.clone(), meta.dev(), meta.ino()))
                })
                .collect();
        }
        let mut rules = Vec::new();
        for root in &roots {
            grant_writable(root, root, landlock_protected, &mut rules)?;
        }
        for (file, access) in rules {
            created = created.add_rule(PathBeneath::new(file, access))?;
        }
        enforcement.writable_roots = roots
            .into_iter()
            .filter(|r| !protected.iter().any(|p| r.starts_with(p)))
            .collect();
        enforcement.read_only_inside_roots = protected;
    }

    Ok(PreparedLandlock {
        ruleset: Some(created),
        enforcement,
        read_only_binds,
        git_trust,
    })
}

/// `require_full`: an incomplete enforcement is an error, before fork.
fn check_required(policy: &SandboxPolicy, enforcement: &Enforcement) -> Result<(), LandlockError> {
    if !policy.require_full
        || !matches!(
            enforcement.level,
            EnforcementLevel::Partial | EnforcementLevel::None
        )
    {
        return Ok(());
    }
    let missing = if enforcement.missing.is_empty() {
        vec![Feature::Filesystem.into()]
    } else {
        enforcement.missing.clone()
    };
    Err(LandlockError::Incomplete {
        missing,
        summary: enforcement.summary(),
    })
}

/// The detected Landlock ABI, capped at [`TARGET_ABI`]; 0 without Landlock.
pub fn capped_abi(detected: &::kernel::detect::Landlock) -> u8 {
    let target = TARGET_ABI as u32;
    detected
        .abi
        .filter(|_| detected.available())
        .map_or(0, |abi| u8::try_from(abi.min(target)).unwrap_or(0))
}

/// The kernel's Landlock ABI, capped at [`TARGET_ABI`], probed now with the one probe
/// (`kernel::detect::landlock`). For tests and one-shot callers: a supervisor detects once
/// at start and passes [`capped_abi`] of that answer to [`prepare`].
pub fn probe_kernel_abi() -> u8 {
    capped_abi(&::kernel::detect::landlock::detect())
}

/// Canonical, existing, de-duplicated writable roots. The workdir and explicit roots must
/// exist; a missing `/tmp` or `$TMPDIR` is skipped.
/// Every place a session of `policy` in `workdir` can write, whatever its mode: no file
/// there may be escalated (an earlier workspace-write call may have written it).
pub(crate) fn agent_roots(
    policy: &SandboxPolicy,
    workdir: &Path,
    tmpdir: Option<&Path>,
) -> Vec<PathBuf> {
    let workdir = workdir
        .canonicalize()
        .unwrap_or_else(|_| workdir.to_owned());
    let mut roots = writable_roots(policy, &workdir, tmpdir).unwrap_or_else(|_| vec![workdir]);
    roots.extend(DEVICE_FILES.iter().map(PathBuf::from));
    roots
}

fn writable_roots(
    policy: &SandboxPolicy,
    workdir: &Path,
    tmpdir: Option<&Path>,
) -> Result<Vec<PathBuf>, LandlockError> {
    let mut roots = Vec::new();
    if policy.workdir_writable {
        roots.push(workdir.to_owned());
    }
    for root in &policy.writable_roots {
        let canonical = root
            .canonicalize()
            .map_err(|source| LandlockError::WritableRoot {
                path: root.clone(),
                source,
            })?;
        roots.push(canonical);
    }
    let mut optional = Vec::new();
    if !policy.exclude_slash_tmp {
        optional.push(Path::new("/tmp"));
    }
    if !policy.exclude_tmpdir_env_var
        && let Some(tmpdir) = tmpdir.filter(|p| p.is_absolute())
    {
        optional.push(tmpdir);
    }
    roots.extend(optional.into_iter().filter_map(|p| p.canonicalize().ok()));
    roots.sort();
    roots.dedup();
    Ok(roots)
}

/// Start-up files and directories of the user's shells and tools, looked for in `$HOME`
/// (when it lies inside a writable root) and directly in every writable root: what a
/// person's next login, shell, `git`, package manager or agent client reads and may run.
pub const STARTUP_FILES: &[&str] = &[
    ".bashrc",
    ".bash_profile",
    ".bash_login",
    ".bash_logout",
    ".profile",
    ".zshrc",
    ".zshenv",
    ".zprofile",
    ".zlogin",
    ".zlogout",
    ".inputrc",
    ".gitconfig",
    ".git-credentials",
    ".config/git",
    ".config/fish",
    ".npmrc",
    ".yarnrc",
    ".yarnrc.yml",
    ".pypirc",
    ".pip",
    ".config/pip",
    ".netrc",
    ".cargo/config",
    ".cargo/config.toml",
    ".ssh",
    ".gnupg",
    ".mcp.json",
    ".codex",
    ".claude",
    ".claude.json",
    ".envrc",
    ".vimrc",
    ".config/nvim",
];

/// Bounds of the search for repositories below the writable roots at session start.
pub const GIT_SCAN_MAX_DEPTH: usize = 6;
/// At most this many directories are listed per session (all roots together).
pub const GIT_SCAN_MAX_DIRS: usize = 4000;
/// And for at most this long: listing a directory costs 3 to 10 us, so a huge tree would
/// otherwise add tens of milliseconds to every session start (#15: at most 1 ms).
/// Breadth first, so what is cut is the deepest levels; what is cut is neither protected
/// nor trusted by escalated git ([`GitTrust::truncated`]).
pub const GIT_SCAN_BUDGET: Duration = Duration::from_micros(750);
/// At most this many git directories are protected (each costs a few bind mounts in the
/// child); those beyond are neither protected nor trusted by escalated git.
pub const GIT_SCAN_MAX_REPOS: usize = 64;
/// Directories never descended into: dependency and build trees, caches, and (for the
/// depth) every hidden directory but the ones named in [`STARTUP_FILES`].
pub const GIT_SCAN_SKIP: &[&str] = &[
    "node_modules",
    "target",
    "__pycache__",
    "venv",
    "site-packages",
    "dist",
    "build",
    "proc",
    "sys",
    "dev",
];

/// Entries of a git directory that configure what git runs: read-only in every repository
/// found. `config.worktree`, `commondir` and `gitdir` exist in linked worktrees' git
/// directories (`commondir` names where `config` and `hooks` are read from).
const GIT_DIR_PROTECTED: &[&str] = &[
    "config",
    "config.worktree",
    "hooks",
    "info",
    "commondir",
    "gitdir",
];

/// One git directory the session cannot configure, identified by path and inode (a `.git`
/// renamed away and recreated under the same name is not it).
#[derive(Debug, Clone, PartialEq, Eq)]
struct TrustedGitDir {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

/// The repositories found below the writable roots at session start, whose configuration
/// the session cannot change, and the roots themselves: for the escalation decision
/// ([`GitTrust::git_dir_is_protected`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitTrust {
    /// Every place the session can write, whatever its mode.
    roots: Vec<PathBuf>,
    /// The git directories protected at start (workspace-write only).
    dirs: Vec<TrustedGitDir>,
    /// The roots were searched and protected (workspace-write): a git directory inside
    /// them must be one of `dirs`.
    scanned: bool,
    /// What git reads for config and hooks must be older than this (the supervisor's
    /// first session, less a clock tick: see [`trusted_before`]).
    since: SystemTime,
    /// The scan stopped at [`GIT_SCAN_MAX_DIRS`] or [`GIT_SCAN_MAX_REPOS`]: repositories
    /// beyond are not protected (and not trusted).
    pub truncated: bool,
    /// Protected paths that did not exist at start, under [`Protection::MountNamespace`]
    /// (a bind needs a target): `.git/commondir`, `.git/hooks`, an absent `~/.bashrc`...
    /// What the session created there is moved aside when it ends
    /// ([`GitTrust::set_aside_planted`]).
    absent_at_start: Vec<PathBuf>,
    /// Protected paths bound read-only at start, with the identity (device, inode) of
    /// what they named then: a different file there at the end was put there by the
    /// session through a renamed parent, and is moved aside too.
    present_at_start: Vec<(PathBuf, u64, u64)>,
}

impl Default for GitTrust {
    fn default() -> Self {
        GitTrust {
            roots: Vec::new(),
            dirs: Vec::new(),
            scanned: false,
            since: SystemTime::UNIX_EPOCH,
            truncated: false,
            absent_at_start: Vec::new(),
            present_at_start: Vec::new(),
        }
    }
}

/// How long before the first session a change must be to count as the user's: file
/// times come from the kernel's coarse clock, up to a tick (1 to 10 ms, `HZ` 1000 to 100)
/// behind the clock `SystemTime::now` reads.
const CLOCK_TICK_MARGIN: Duration = Duration::from_millis(10);

/// The instant before which what git reads must have last changed to be trusted: the
/// start of this process's first session, less [`CLOCK_TICK_MARGIN`]. One instant for the
/// whole process, so a repository an earlier session (an earlier MCP call) made or
/// configured is not trusted by a later one either.
fn trusted_before() -> SystemTime {
    static FIRST_SESSION: OnceLock<SystemTime> = OnceLock::new();
    let first = *FIRST_SESSION.get_or_init(SystemTime::now);
    first.checked_sub(CLOCK_TICK_MARGIN).unwrap_or(first)
}

impl GitTrust {
    /// May git run escalated (outside the sandbox) in `cwd` without running something the
    /// session planted? True when the repository git would use in `cwd` (found as git
    /// does: the nearest `.git` directory, file or link upwards, or a directory that is
    /// itself a git directory; `gitdir:` and `commondir` followed) lies outside every
    /// place the session can write, or is one whose config and hooks (a) were made
    /// read-only at session start and it is still the same directory (device and inode),
    /// and (b) have not changed since this supervisor's first session began (ctime). False
    /// for a repository created, re-created or configured by this or an earlier session,
    /// one the scan did not reach, or a `.git` file pointing at one of those.
    /// Not a repository at all: true (`git init`, `git clone`: no repository config to
    /// read). What the session creates between this check and git's own start is read by
    /// git: see docs/threat-model.md.
    pub fn git_dir_is_protected(&self, cwd: &Path) -> bool {
        let cwd = match cwd.canonicalize() {
            Ok(c) => c,
            Err(_) => return false,
        };
        let writable = |p: &Path| self.roots.iter().any(|r| p.starts_with(r));
        let Some(git_dir) = discover_git_dir(&cwd) else {
            return true;
        };
        let mut dirs = vec![git_dir.clone()];
        if let Ok(text) = std::fs::read_to_string(git_dir.join("commondir")) {
            match git_dir.join(text.trim()).canonicalize() {
                Ok(common) => dirs.push(common),
                Err(_) => return false,
            }
        }
        dirs.iter().all(|d| !writable(d) || self.is_trusted(d))
    }

    /// Why git (`program`, run as `argv` in `cwd`) must not run escalated, or `None`
    /// (not git, or a repository the session cannot have configured). `-C DIR` options
    /// are followed; `--git-dir` and `--work-tree` are refused (they name a repository
    /// the discovery here does not look at).
    pub fn why_untrusted_git(&self, program: &Path, argv: &[String], cwd: &Path) -> Option<String> {
        let name = program.file_name()?.to_str()?;
        if name != "git" && !name.starts_with("git-") {
            return None;
        }
        let mut dir = cwd.to_owned();
        let mut args = argv.iter().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "-C" => dir = dir.join(args.next()?),
                "-c" | "--config-env" => {
                    args.next();
                }
                a if a.starts_with("--git-dir") || a.starts_with("--work-tree") => {
                    return Some(format!("escalated git is not given a repository by `{a}`"));
                }
                a if a.starts_with('-') => {}
                _ => break,
            }
        }
        (!self.git_dir_is_protected(&dir)).then(|| {
            format!(
                "the repository at {} is one the session could configure (made, changed or \
                 not protected since start): its hooks and config would run outside",
                dir.display()
            )
        })
    }

    fn is_trusted(&self, dir: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        let Ok(meta) = std::fs::symlink_metadata(dir) else {
            return false;
        };
        let recorded = self
            .dirs
            .iter()
            .any(|t| t.path == dir && t.dev == meta.dev() && t.ino == meta.ino());
        (recorded || !self.scanned) && unchanged_since(dir, self.since)
    }

    /// After the session's tree is gone: every protected path that was absent at start
    /// and exists now (a `.git/commondir` naming a configured directory, a `hooks/`, a
    /// start-up file the binds could not cover), and every one that names another file
    /// than at start (planted through a renamed parent directory), is renamed to
    /// `NAME.execgate-planted-PID-N`, so that git, shells and the next session outside do
    /// not read it. Returns (from, to) for each.
    ///
    /// The session may have turned a directory on the way into a symlink: nothing here
    /// follows one. Each path is walked from the outermost writable root holding it (which
    /// the session cannot replace), one `O_PATH | O_NOFOLLOW` directory at a time; a
    /// component that is now a symlink is itself what is set aside, and every rename
    /// happens inside a directory reached that way, never outside the roots.
    pub fn set_aside_planted(&self) -> Vec<(PathBuf, PathBuf)> {
        let checks = self.absent_at_start.iter().map(|path| (path, None)).chain(
            self.present_at_start
                .iter()
                .map(|(path, dev, ino)| (path, Some((*dev, *ino)))),
        );
        let mut moved = Vec::new();
        for (path, was) in checks {
            let Some(root) = self.roots.iter().filter(|r| path.starts_with(r)).min() else {
                continue;
            };
            let suffix = format!(".execgate-planted-{}-{}", std::process::id(), moved.len());
            if let Some(pair) = set_aside_beneath(root, path, was, &suffix) {
                moved.push(pair);
            }
        }
        moved
    }

    /// The git directories recorded at session start.
    pub fn git_dirs(&self) -> impl Iterator<Item = &Path> {
        self.dirs.iter().map(|d| d.path.as_path())
    }
}

/// [`GitTrust::set_aside_planted`] for one path inside `root`: walks down from `root`
/// without following symlinks. The first component that is a symlink, or the path itself
/// when it exists and is not the file it was at start (`was`: device and inode; `None`:
/// absent at start), is renamed to its name plus `suffix` in the directory holding it.
fn set_aside_beneath(
    root: &Path,
    path: &Path,
    was: Option<(u64, u64)>,
    suffix: &str,
) -> Option<(PathBuf, PathBuf)> {
    use rustix::fs::{AtFlags, FileType, Mode, OFlags};
    let below = path.strip_prefix(root).ok()?;
    let names: Vec<&std::ffi::OsStr> = below.iter().collect();
    let walk = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut dir = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let mut here = root.to_path_buf();
    for (i, name) in names.iter().enumerate() {
        let stat = rustix::fs::statat(&dir, *name, AtFlags::SYMLINK_NOFOLLOW).ok()?;
        let last = i + 1 == names.len();
        let link = FileType::from_raw_mode(stat.st_mode) == FileType::Symlink;
        let planted = link || (last && was != Some((stat.st_dev, stat.st_ino)));
        if planted {
            let mut to = name.to_os_string();
            to.push(suffix);
            rustix::fs::renameat(&dir, *name, &dir, &to).ok()?;
            return Some((here.join(name), here.join(to)));
        }
        if last {
            return None;
        }
        dir = rustix::fs::openat(&dir, *name, walk, Mode::empty()).ok()?;
        here.push(name);
    }
    None
}

/// `path`, absent, with its deepest existing ancestor resolved (symlinks followed): where
/// it would be created. `None` for a relative path or one with `..` after that ancestor.
fn resolve_absent(path: &Path) -> Option<PathBuf> {
    if !path.is_absolute() {
        return None;
    }
    let mut rest = Vec::new();
    let mut existing = path;
    loop {
        let name = existing.file_name()?;
        rest.push(name.to_owned());
        existing = existing.parent()?;
        if let Ok(real) = existing.canonicalize() {
            let mut resolved = real;
            for part in rest.iter().rev() {
                if part == ".." || part == "." {
                    return None;
                }
                resolved.push(part);
            }
            return Some(resolved);
        }
    }
}

/// Every entry of git directory `dir` that configures what git runs (and each entry of
/// `hooks/` and `info/`) last changed before `since`. An absent one is fine: git reads
/// nothing there. A change (write, create, rename, chmod) always sets ctime to now, and
/// the session cannot set the clock.
fn unchanged_since(dir: &Path, since: SystemTime) -> bool {
    let old = |p: &Path| {
        let times = [std::fs::symlink_metadata(p), std::fs::metadata(p)];
        times.iter().all(|m| match m {
            Ok(m) => ctime(m).is_some_and(|t| t < since),
            Err(e) => e.kind() == io::ErrorKind::NotFound,
        })
    };
    GIT_DIR_PROTECTED.iter().all(|name| {
        let path = dir.join(name);
        if !old(&path) {
            return false;
        }
        match std::fs::read_dir(&path) {
            Ok(entries) => entries
                .map(|e| e.map(|e| old(&e.path())))
                .all(|ok| ok.unwrap_or(false)),
            Err(_) => true,
        }
    })
}

fn ctime(meta: &std::fs::Metadata) -> Option<SystemTime> {
    use std::os::unix::fs::MetadataExt;
    let secs = u64::try_from(meta.ctime()).ok()?;
    let nanos = u32::try_from(meta.ctime_nsec()).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

/// The canonical git directory for `cwd`, found as git finds it (without `GIT_DIR`): the
/// nearest ancestor holding `.git` (a directory, a link to one, or a `gitdir:` file), or
/// being a git directory itself (a bare repository: `HEAD`, `objects/`, `refs/`).
fn discover_git_dir(cwd: &Path) -> Option<PathBuf> {
    for dir in cwd.ancestors() {
        let dot_git = dir.join(".git");
        if let Ok(meta) = std::fs::metadata(&dot_git) {
            if meta.is_dir() {
                return dot_git.canonicalize().ok();
            }
            if meta.is_file() {
                return gitdir_target(&dot_git);
            }
        }
        if dir.join("HEAD").is_file() && dir.join("objects").is_dir() && dir.join("refs").is_dir() {
            return dir.canonicalize().ok();
        }
    }
    None
}

/// What the scan found: paths to keep read-only, and the trust record.
struct Found {
    /// Existing paths (bindable read-only).
    present: Vec<PathBuf>,
    /// Paths that do not exist; Landlock siblings keep them from being created.
    absent: Vec<PathBuf>,
    trust: GitTrust,
    dirs_listed: usize,
}

impl Found {
    fn add(&mut self, path: PathBuf, inside: bool) {
        if !inside {
            return;
        }
        if path.symlink_metadata().is_ok() {
            self.present.push(path);
        } else {
            self.absent.push(path);
        }
    }

    fn trust_dir(&mut self, dir: &Path) {
        use std::os::unix::fs::MetadataExt;
        if let Ok(meta) = std::fs::symlink_metadata(dir)
            && !self.trust.dirs.iter().any(|d| d.path == dir)
        {
            self.trust.dirs.push(TrustedGitDir {
                path: dir.to_owned(),
                dev: meta.dev(),
                ino: meta.ino(),
            });
        }
    }

    /// A git directory: its configuring entries, its submodules' git directories
    /// (`modules/**`), its linked worktrees' (`worktrees/*`).
    fn git_dir(&mut self, dir: &Path, roots: &[PathBuf], depth: usize) {
        let inside = roots.iter().any(|r| dir.starts_with(r));
        if !inside || depth > 8 || self.trust.dirs.iter().any(|d| d.path == dir) {
            return;
        }
        if self.trust.dirs.len() >= GIT_SCAN_MAX_REPOS {
            self.trust.truncated = true;
            return;
        }
        self.trust_dir(dir);
        for name in GIT_DIR_PROTECTED {
            self.add(dir.join(name), true);
        }
        if let Ok(entries) = std::fs::read_dir(dir.join("worktrees")) {
            for entry in entries.flatten() {
                let wt = entry.path();
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    self.git_dir(&wt, roots, depth + 1);
                }
            }
        }
        self.modules(&dir.join("modules"), roots, depth + 1);
    }

    /// `modules/NAME` (NAME may contain slashes): a directory with `HEAD` is a submodule's
    /// git directory.
    fn modules(&mut self, dir: &Path, roots: &[PathBuf], depth: usize) {
        if depth > 8 {
            return;
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let sub = entry.path();
            if sub.join("HEAD").exists() {
                self.git_dir(&sub, roots, depth);
            } else {
                self.modules(&sub, roots, depth + 1);
            }
        }
    }

    /// A `.git` entry found at `dot_git`: directory, `gitdir:` file or link.
    fn dot_git(&mut self, dot_git: &Path, roots: &[PathBuf]) {
        let inside = |p: &Path| roots.iter().any(|r| p.starts_with(r));
        let Ok(meta) = dot_git.symlink_metadata() else {
            return;
        };
        if meta.is_symlink() {
            if let Ok(target) = dot_git.canonicalize()
                && target.is_dir()
            {
                self.git_dir(&target, roots, 0);
            }
        } else if meta.is_file() {
            // The `gitdir:` line must not be repointed at a directory the session made.
            self.add(dot_git.to_owned(), inside(dot_git));
            if let Some(target) = gitdir_target(dot_git) {
                self.git_dir(&target, roots, 0);
            }
        } else if meta.is_dir() {
            self.git_dir(dot_git, roots, 0);
        }
    }
}

/// Find every repository below `roots` (bounded: [`GIT_SCAN_MAX_DEPTH`],
/// [`GIT_SCAN_MAX_DIRS`], [`GIT_SCAN_SKIP`] and hidden directories not descended into),
/// plus the workdir's ancestors' `.git` and the start-up files in `home` and each root.
fn scan(roots: &[PathBuf], walk: &[PathBuf], workdir: &Path, home: Option<&Path>) -> Found {
    let mut found = Found {
        present: Vec::new(),
        absent: Vec::new(),
        trust: GitTrust {
            roots: roots.to_vec(),
            ..GitTrust::default()
        },
        dirs_listed: 0,
    };
    let inside = |p: &Path| roots.iter().any(|r| p.starts_with(r));
    // The repository the workdir is in, wherever its root is, and each root's own.
    for a in workdir.ancestors() {
        found.dot_git(&a.join(".git"), roots);
    }
    for r in roots {
        found.dot_git(&r.join(".git"), roots);
    }
    // Breadth first, so that a huge tree uses up the budget on its deep levels last.
    let deadline = Instant::now() + GIT_SCAN_BUDGET;
    let mut queue: std::collections::VecDeque<(PathBuf, usize)> =
        walk.iter().map(|r| (r.clone(), 0)).collect();
    while let Some((dir, depth)) = queue.pop_front() {
        if found.dirs_listed >= GIT_SCAN_MAX_DIRS || Instant::now() >= deadline {
            found.trust.truncated = true;
            break;
        }
        found.dirs_listed += 1;
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let bytes = name.as_encoded_bytes();
            if bytes == b".git" {
                found.dot_git(&entry.path(), roots);
                continue;
            }
            if depth + 1 >= GIT_SCAN_MAX_DEPTH
                || bytes.first() == Some(&b'.')
                || GIT_SCAN_SKIP.iter().any(|s| s.as_bytes() == bytes)
            {
                continue;
            }
            // d_type: no stat per entry; links are not followed.
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                queue.push_back((entry.path(), depth + 1));
            }
        }
    }
    for base in roots.iter().map(PathBuf::as_path).chain(home) {
        if !inside(base) {
            continue;
        }
        for name in STARTUP_FILES {
            let path = base.join(name);
            // Absent files are kept from being created only in `$HOME` (under Landlock
            // siblings): in a root like /tmp that would forbid every new top-level entry.
            if path.symlink_metadata().is_ok() {
                // A link is bound at its target by the mount; keep the link itself too.
                found.present.push(path);
            } else if Some(base) == home {
                found.absent.push(path);
            }
        }
    }
    found.present.sort();
    found.present.dedup();
    found.absent.sort();
    found.absent.dedup();
    found
}

/// The canonical target of a `.git` file's `gitdir: PATH` line (relative to the file's
/// directory), if it exists.
fn gitdir_target(dot_git_file: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(dot_git_file).ok()?;
    let line = text.lines().find_map(|l| l.strip_prefix("gitdir:"))?;
    let target = Path::new(line.trim());
    let base = dot_git_file.parent()?;
    base.join(target).canonicalize().ok()
}

/// Rights for a writable directory: everything but creating device nodes.
fn dir_write_access() -> BitFlags<AccessFs> {
    AccessFs::from_all(TARGET_ABI) & !(AccessFs::MakeChar | AccessFs::MakeBlock)
}

/// Grant `dir` (logical path `logical`, opened through `open_at`) writable, or, when a
/// protected path lies beneath it, each of its entries except the protected ones.
fn grant_writable(
    logical: &Path,
    open_at: &Path,
    protected: &[PathBuf],
    rules: &mut Vec<(File, BitFlags<AccessFs>)>,
) -> Result<(), LandlockError> {
    if protected.iter().any(|p| p == logical) {
        return Ok(());
    }
    let dir = open_path(open_at, false)?;
    if !protected.iter().any(|p| p.starts_with(logical)) {
        rules.push((dir, dir_write_access()));
        return Ok(());
    }
    // Pin the directory: entries are opened beneath this fd, not by re-walking the path.
    let pinned = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    let entries = std::fs::read_dir(&pinned).map_err(|source| LandlockError::ListDir {
        path: logical.to_owned(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| LandlockError::ListDir {
            path: logical.to_owned(),
            source,
        })?;
        let name = entry.file_name();
        let child_logical = logical.join(&name);
        if protected.contains(&child_logical) {
            continue;
        }
        let child_at = pinned.join(&name);
        let Ok(child) = open_path(&child_at, true) else {
            continue; // vanished meanwhile: nothing to grant
        };
        let meta = child
            .metadata()
            .map_err(|source| LandlockError::OpenRulePath {
                path: child_logical.clone(),
                source,
            })?;
        if meta.is_symlink() {
            continue;
        } else if meta.is_dir() {
            let child_pinned = PathBuf::from(format!("/proc/self/fd/{}", child.as_raw_fd()));
            grant_writable(&child_logical, &child_pinned, protected, rules)?;
        } else {
            rules.push((child, AccessFs::from_file(TARGET_ABI)));
        }
    }
    drop(dir);
    Ok(())
}

/// `open(path, O_PATH [| O_NOFOLLOW])`: a handle for a Landlock rule that grants nothing
/// by itself.
fn open_path(path: &Path, nofollow: bool) -> Result<File, LandlockError> {
    let mut flags = libc::O_PATH;
    if nofollow {
        flags |= libc::O_NOFOLLOW;
    }
    OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .map_err(|source| LandlockError::OpenRulePath {
            path: path.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_3_with_network_off_misses_tcp_ioctl_and_scoping() {
        let e = Enforcement::for_abi(SandboxMode::WorkspaceWrite, false, 3);
        assert_eq!(e.level, EnforcementLevel::Partial);
        let missing: Vec<Feature> = e.missing.iter().map(|m| m.feature).collect();
        assert_eq!(
            missing,
            [
                Feature::TcpBindConnect,
                Feature::IoctlDev,
                Feature::SignalScoping,
                Feature::AbstractUnixSocketScoping
            ]
        );
        assert_eq!(e.missing[0].first_kernel, "6.7");
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["level"], "partial");
        assert_eq!(json["missing"][0]["feature"], "tcp_bind_connect");
        assert_eq!(json["missing"][0]["landlock_abi"], 4);
        assert!(
            e.summary().contains("tcp_bind_connect: ABI 4, Linux 6.7"),
            "{}",
            e.summary()
        );
    }

    #[test]
    fn network_on_does_not_ask_for_tcp_rules() {
        let e = Enforcement::for_abi(SandboxMode::ReadOnly, true, 5);
        let missing: Vec<Feature> = e.missing.iter().map(|m| m.feature).collect();
        assert_eq!(
            missing,
            [Feature::SignalScoping, Feature::AbstractUnixSocketScoping]
        );
        assert_eq!(
            Enforcement::for_abi(SandboxMode::ReadOnly, false, 6).level,
            EnforcementLevel::Full
        );
    }

    #[test]
    fn no_landlock_is_none_and_danger_is_not_requested() {
        assert_eq!(
            Enforcement::for_abi(SandboxMode::ReadOnly, false, 0).level,
            EnforcementLevel::None
        );
        let e = Enforcement::for_abi(SandboxMode::DangerFullAccess, false, 0);
        assert_eq!(e.level, EnforcementLevel::NotRequested);
        assert!(e.missing.is_empty());
    }

    #[test]
    fn require_full_turns_partial_and_none_into_errors_naming_the_kernel() {
        let mut policy = SandboxPolicy::new(SandboxMode::WorkspaceWrite);
        policy.require_full = true;
        let partial = Enforcement::for_abi(policy.mode, policy.network, 5);
        let err = check_required(&policy, &partial).unwrap_err().to_string();
        assert!(
            err.contains("SignalScoping (Landlock ABI 6, Linux 6.12)"),
            "{err}"
        );
        let none = Enforcement::for_abi(policy.mode, policy.network, 0);
        let err = check_required(&policy, &none).unwrap_err().to_string();
        assert!(
            err.contains("Filesystem (Landlock ABI 1, Linux 5.13)"),
            "{err}"
        );
        let full = Enforcement::for_abi(policy.mode, policy.network, 6);
        check_required(&policy, &full).unwrap();
        policy.require_full = false;
        check_required(&policy, &partial).unwrap();
    }
}

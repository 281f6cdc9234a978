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
//! # `.git` stays read-only inside writable roots
//! Landlock has only allow rules, and a rule on a directory covers everything beneath it.
//! So a writable root that contains a protected path (a `.git` directory or file, or the
//! target of a `.git` file's `gitdir:` line) is not granted itself: [`prepare`] descends
//! into it and grants each *sibling* of the protected path instead, descending again only
//! into the siblings that themselves contain a protected path. Regular files next to
//! `.git` get the file rights (write, truncate) on the file itself. Symlinks are never
//! granted (a link to `/etc` would otherwise make `/etc` writable); writes through them
//! are checked at their target. Entries are opened `O_PATH|O_NOFOLLOW` under a pinned
//! parent (`/proc/self/fd/N/name`), so a directory swapped for a symlink while we look is
//! not followed.
//!
//! Consequences, accepted: in a directory on the path to a protected `.git` (the repo root,
//! and `/tmp` when the workdir is a repo under `/tmp`) nothing can be created, removed or
//! renamed directly; existing files there stay writable and subdirectories are fully
//! writable. Entries created after [`prepare`] in such a directory (by an escalated
//! command) are read-only for the rest of the session. Protected paths are found for
//! `.git` directly in each writable root and in the workdir's ancestors that lie inside a
//! writable root; `.git` files deeper in the tree (submodules) are not searched, to keep
//! the set-up cost bounded: their `gitdir:` target inside the main `.git` is protected.
//!
//! # Best effort, reported
//! The ruleset asks for everything up to [`TARGET_ABI`] in `CompatLevel::BestEffort`; the
//! kernel's ABI is probed (with `HardRequirement` probes, no syscall of our own) and the
//! missing features are reported in [`Enforcement`], before fork. `require_full` turns an
//! incomplete enforcement into [`LandlockError::Incomplete`].

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

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
    /// Paths kept read-only inside writable roots (`.git` and `gitdir:` targets).
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
            bounding_set_dropped: false,
            namespaces: Vec::new(),
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
    let mut enforcement = Enforcement::for_abi(policy.mode, policy.network, abi);
    check_required(policy, &enforcement)?;
    if policy.mode == SandboxMode::DangerFullAccess {
        return Ok(PreparedLandlock {
            ruleset: None,
            enforcement,
            read_only_binds: Vec::new(),
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
        let protected = protected_paths(&roots, &workdir);
        let landlock_protected: &[PathBuf] = match protection {
            Protection::LandlockSiblings => &protected,
            Protection::MountNamespace => {
                read_only_binds = protected.clone();
                &[]
            }
        };
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

/// `.git` entries (and `gitdir:` targets) that must stay read-only: those directly in a
/// writable root or in an ancestor of the workdir, when they lie inside a writable root.
fn protected_paths(roots: &[PathBuf], workdir: &Path) -> Vec<PathBuf> {
    let inside_roots = |p: &Path| roots.iter().any(|r| p.starts_with(r));
    let mut candidates: Vec<PathBuf> = roots.iter().map(|r| r.join(".git")).collect();
    candidates.extend(workdir.ancestors().map(|a| a.join(".git")));
    let mut protected = Vec::new();
    for dot_git in candidates {
        let Ok(meta) = dot_git.symlink_metadata() else {
            continue;
        };
        // A `.git` symlink: its target (a sibling, say) must stay read-only too.
        if meta.is_symlink()
            && let Ok(target) = dot_git.canonicalize()
            && inside_roots(&target)
        {
            protected.push(target);
        }
        if meta.is_file()
            && let Some(target) = gitdir_target(&dot_git)
            && inside_roots(&target)
        {
            protected.push(target);
        }
        if inside_roots(&dot_git) {
            protected.push(dot_git);
        }
    }
    protected.sort();
    protected.dedup();
    protected
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

//! A cgroup v2 per session, so the whole tree can be killed in one write.
//!
//! This module owns `<supervisor's cgroup>/execgate/session-<id>`: creating it before the
//! spawn, the child's joining it before exec, killing everything in it, and removing it.
//! It never enables controllers (a supervisor's cgroup with controllers in its
//! `subtree_control` could not hold the supervisor itself) and never touches other
//! sessions' directories.
//!
//! Joining: writing a pid into `cgroup.procs` from the parent after spawn is racy (the
//! child may fork first, and its children would stay outside). So a session's processes
//! are made in it: `clone3(CLONE_INTO_CGROUP)` on the directory opened before the clone
//! ([`SessionCgroup::joining`], `kernel::process::confined`), v1 cgroups joined by the
//! child through their `tasks` file. Where `clone3` is refused the child writes `"0"`
//! (itself) to the pre-opened `cgroup.procs` between fork and exec. That write takes the
//! kernel's global threadgroup lock, which after a quiet spell waits for an RCU grace
//! period (milliseconds): the clone avoids it. [`CgroupJoiner`] is that write alone, for
//! callers with a `std::process::Command`.
//!
//! Killing: `cgroup.kill` (Linux 5.14) where present; otherwise freeze the cgroup
//! (`cgroup.freeze`, 5.2) so nothing forks or exits behind our back, SIGKILL every pid in
//! `cgroup.procs` until it is empty (a frozen task still dies of SIGKILL), and wait for
//! `cgroup.events` to say `populated 0`. Reaping is not done here: the session's own
//! child is reaped by whoever spawned it, orphans by the subreaper (see `teardown`).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How long [`SessionCgroup::kill`] waits for the cgroup to empty.
const KILL_DEADLINE: Duration = Duration::from_secs(5);

/// Why no session cgroup can be had, or a step on one failed; each names the path.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("no cgroup2 filesystem is mounted (no `cgroup2` line in /proc/self/mountinfo)")]
    NoCgroup2Mount,
    #[error("the supervisor is in no cgroup v2 hierarchy (no `0::` line in /proc/self/cgroup)")]
    NotInUnifiedHierarchy,
    #[error("the supervisor's cgroup {cgroup} is not visible under the cgroup2 mount {mount}")]
    NotVisible { cgroup: String, mount: PathBuf },
    #[error("invalid session id {0:?}: use letters, digits, `-` and `_`")]
    InvalidId(String),
    #[error("creating the session cgroup {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("opening {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("the session cgroup {path} still holds pids {pids:?} after {waited:?}")]
    StillPopulated {
        path: PathBuf,
        pids: Vec<i32>,
        waited: Duration,
    },
}

/// How [`SessionCgroup::kill`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KillMethod {
    /// One write to `cgroup.kill`.
    CgroupKill,
    /// Freeze, then SIGKILL each pid until empty.
    FreezeAndSignal,
    /// Signal each pid until empty (no freezer either).
    Signal,
}

/// What `execgate doctor` says about session cgroups.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CgroupSupport {
    /// Where session cgroups go.
    pub parent: PathBuf,
    /// `cgroup.kill` (Linux 5.14); else the freeze-and-signal path.
    pub kill: bool,
    /// `cgroup.freeze` (Linux 5.2).
    pub freeze: bool,
    /// Which mechanism holds a session's default pids and memory limits here.
    pub limits: LimitsHeld,
}

/// Check that a session cgroup can be created here (creates and removes a probe one).
pub fn probe() -> Result<CgroupSupport, CgroupError> {
    let parent = own_cgroup_dir()?.join("execgate");
    let mut cg = SessionCgroup::create_in(&parent, &format!("probe-{}", std::process::id()))?;
    let limits = cg.limit(&CgroupLimits::default());
    let support = CgroupSupport {
        limits,
        kill: cg.path().join("cgroup.kill").exists(),
        freeze: cg.path().join("cgroup.freeze").exists(),
        parent,
    };
    cg.remove()?;
    Ok(support)
}

/// The cgroup2 directory the supervisor itself is in.
pub fn own_cgroup_dir() -> Result<PathBuf, CgroupError> {
    let mountinfo = read("/proc/self/mountinfo")?;
    let (mount_root, mount_point) = cgroup2_mount(&mountinfo).ok_or(CgroupError::NoCgroup2Mount)?;
    let cgroup = read("/proc/self/cgroup")?;
    let own =
        kernel::procfs::parse_cgroup_v2_path(&cgroup).ok_or(CgroupError::NotInUnifiedHierarchy)?;
    let relative =
        Path::new(&own)
            .strip_prefix(&mount_root)
            .map_err(|_| CgroupError::NotVisible {
                cgroup: own.to_owned(),
                mount: mount_point.clone(),
            })?;
    Ok(mount_point.join(relative))
}

/// Starts, on a thread of its own, the wait that a session's first cgroup join would
/// otherwise pay on the critical path, and returns at once.
///
/// Moving a process into a cgroup takes the kernel's threadgroup lock for writing, and the
/// first writer after a quiet spell waits for a full RCU grace period (`rcu_sync_enter`:
/// 5-15 ms on a loaded VM); a writer within about a grace period of the last one does not
/// wait. So the supervisor, as it starts, moves this one thread into the cgroup it is
/// already in (`cgroup.threads`: nothing moves, but the lock is taken), while it probes
/// the kernel; the session's child then joins its cgroup without the wait, or with what is
/// left of it. Best effort: any failure only leaves the wait where it was. The thread's
/// handle is for tests; callers let it run.
pub fn warm_migration_lock() -> Option<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("execgate-cgroup-warm".into())
        .spawn(|| {
            let Ok(own) = own_cgroup_dir() else {
                return;
            };
            let tid = nix::unistd::gettid().as_raw().to_string();
            let _ = write_file(&own.join("cgroup.threads"), &tid);
        })
        .ok()
}

/// `(root within the hierarchy, mount point)` of the first cgroup2 mount (parsed by
/// `kernel::procfs`, the one mountinfo parser).
fn cgroup2_mount(mountinfo: &str) -> Option<(PathBuf, PathBuf)> {
    let mounts = kernel::procfs::parse_mountinfo(mountinfo);
    kernel::procfs::cgroup2_mount(&mounts)
        .map(|m| (PathBuf::from(&m.root), PathBuf::from(&m.mount_point)))
}

/// Default `pids.max` of a session: a fork bomb stops there, a parallel build does not.
pub const DEFAULT_PIDS_MAX: u64 = 512;

/// The pids and memory limits of a session's cgroup; `None` is no limit (`max`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupLimits {
    pub pids_max: Option<u64>,
    pub memory_max: Option<u64>,
}

impl LimitHeldBy {
    /// For `doctor` and the session report: `cgroup v2`, `cgroup v1`, `off`, or why not.
    pub fn describe(&self) -> String {
        match self {
            LimitHeldBy::V2 => "cgroup v2 controller".to_owned(),
            LimitHeldBy::V1 => "cgroup v1 hierarchy (no v2 controller)".to_owned(),
            LimitHeldBy::Unlimited => "off (max)".to_owned(),
            LimitHeldBy::Unavailable(why) => format!("NOT HELD: {why}"),
        }
    }
}

impl Default for CgroupLimits {
    /// [`DEFAULT_PIDS_MAX`] pids, and half of the machine's memory.
    fn default() -> Self {
        CgroupLimits {
            pids_max: Some(DEFAULT_PIDS_MAX),
            memory_max: default_memory_max(),
        }
    }
}

/// Half of `MemTotal` (/proc/meminfo), so the host keeps the other half.
pub fn default_memory_max() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024 / 2)
}

/// `--pids-max`: a count, or `max`/`unlimited`.
pub fn parse_pids_max(s: &str) -> Result<Option<u64>, String> {
    match s {
        "max" | "unlimited" => Ok(None),
        _ => match s.parse::<u64>() {
            Ok(0) => Err("0 pids would run nothing; use a count, or `max`".to_owned()),
            Ok(n) => Ok(Some(n)),
            Err(_) => Err(format!("{s:?} is not a count (or `max`, `unlimited`)")),
        },
    }
}

/// `--memory-max`: bytes with an optional K, M, G or T suffix (powers of 1024), or
/// `max`/`unlimited`.
pub fn parse_memory_max(s: &str) -> Result<Option<u64>, String> {
    if s == "max" || s == "unlimited" {
        return Ok(None);
    }
    let err = || format!("{s:?} is not a size (bytes with K, M, G or T; or `max`, `unlimited`)");
    let (digits, shift) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(err()),
            };
            (&s[..i], shift)
        }
        _ => (s, 0),
    };
    let n: u64 = digits.parse().map_err(|_| err())?;
    let bytes = n
        .checked_shl(shift)
        .filter(|b| b >> shift == n)
        .ok_or_else(err)?;
    if bytes < 1 << 20 {
        return Err(format!("{s:?} is below 1M: nothing would start"));
    }
    Ok(Some(bytes))
}

/// Which mechanism holds one limit of a session.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitHeldBy {
    /// The controller of the session's cgroup v2.
    V2,
    /// A cgroup of the v1 hierarchy of that controller, joined beside the v2 one.
    V1,
    /// Not asked for (`max`).
    Unlimited,
    /// Asked for, but neither hierarchy could hold it (why).
    Unavailable(String),
}

/// Which mechanism holds the pids and memory limits.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LimitsHeld {
    pub pids: LimitHeldBy,
    pub memory: LimitHeldBy,
}

/// One controller's limit: its name, the v2 file, the v1 file.
struct Controller {
    name: &'static str,
    v2_file: &'static str,
    v1_file: &'static str,
}

const PIDS: Controller = Controller {
    name: "pids",
    v2_file: "pids.max",
    v1_file: "pids.max",
};
const MEMORY: Controller = Controller {
    name: "memory",
    v2_file: "memory.max",
    v1_file: "memory.limit_in_bytes",
};

/// The directory of our own cgroup in the v1 hierarchy of `controller`, if one is
/// mounted: `(mount point, our path in it)` from mountinfo's super options and
/// /proc/self/cgroup's `N:controllers:path` lines.
fn own_v1_dir(controller: &str) -> Option<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    v1_dir_from(&mountinfo, &cgroups, controller)
}

/// Our own directories in the v1 hierarchies that can hold a session's limits (pids,
/// memory), where those are mounted: each supervisor's `supervisor-<pid>` is made in them.
pub(crate) fn own_v1_limit_dirs() -> Vec<PathBuf> {
    [PIDS.name, MEMORY.name]
        .into_iter()
        .filter_map(own_v1_dir)
        .collect()
}

fn v1_dir_from(mountinfo: &str, cgroups: &str, controller: &str) -> Option<PathBuf> {
    let own = cgroups.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, names, path) = (parts.next()?, parts.next()?, parts.next()?);
        names.split(',').any(|n| n == controller).then_some(path)
    })?;
    for line in mountinfo.lines() {
        let (Some((_, tail)), Some(mount)) = (
            line.split_once(" - "),
            kernel::procfs::parse_mountinfo(line).pop(),
        ) else {
            continue;
        };
        let mut fields = tail.split(' ');
        let (fs_type, _source, super_opts) = (fields.next()?, fields.next()?, fields.next()?);
        if fs_type != "cgroup" || !super_opts.split(',').any(|o| o == controller) {
            continue;
        }
        let rel = Path::new(own).strip_prefix(&mount.root).ok()?;
        return Some(Path::new(&mount.mount_point).join(rel));
    }
    None
}

/// A session's cgroup directory; removed (after killing what is left) on drop. With
/// [`SessionCgroup::limit`], also the v1 cgroups that hold limits the v2 one cannot.
#[derive(Debug)]
pub struct SessionCgroup {
    dir: PathBuf,
    /// v1 cgroups (pids, memory) the session joins besides `dir`, removed after it.
    v1_dirs: Vec<PathBuf>,
    /// What its processes join it by, opened at the first use ([`Self::joining`]).
    joining: std::sync::OnceLock<kernel::process::outside::JoinCgroup>,
    removed: bool,
}

/// The pre-opened `cgroup.procs` files the child writes itself into (the v2 one, then
/// any v1 ones holding limits).
#[derive(Debug)]
pub struct CgroupJoiner {
    procs: Vec<OwnedFd>,
}

impl CgroupJoiner {
    /// Child side, between fork and exec: move the calling process into the session's
    /// cgroups. One `write(2)` per fd opened before fork: async-signal-safe.
    pub fn join_in_child(&self) -> Result<(), Errno> {
        for procs in &self.procs {
            nix::unistd::write(procs.as_fd(), b"0")?;
        }
        Ok(())
    }
}

impl SessionCgroup {
    /// Create `execgate/session-<id>` under the supervisor's own cgroup.
    pub fn create(session_id: &str) -> Result<SessionCgroup, CgroupError> {
        Self::create_in(&own_cgroup_dir()?.join("execgate"), session_id)
    }

    /// Create `session-<id>` in `parent` (a delegated directory), creating `parent` if
    /// needed. `parent` is left in place afterwards: other sessions may be using it.
    pub fn create_in(parent: &Path, session_id: &str) -> Result<SessionCgroup, CgroupError> {
        let valid = !session_id.is_empty()
            && session_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(CgroupError::InvalidId(session_id.to_owned()));
        }
        std::fs::create_dir_all(parent).map_err(|source| CgroupError::Create {
            path: parent.to_owned(),
            source,
        })?;
        let dir = parent.join(format!("session-{session_id}"));
        std::fs::create_dir(&dir).map_err(|source| CgroupError::Create {
            path: dir.clone(),
            source,
        })?;
        Ok(SessionCgroup {
            dir,
            v1_dirs: Vec::new(),
            joining: std::sync::OnceLock::new(),
            removed: false,
        })
    }

    /// Put `limits` on the session: each in the v2 cgroup where its controller is
    /// available to the session's parent directory (enabled in that directory's
    /// `cgroup.subtree_control`; it holds no process, so that is allowed), else in a
    /// cgroup of the same name in the controller's v1 hierarchy, which [`Self::joiner`]
    /// then joins too. Call before [`Self::joiner`].
    pub fn limit(&mut self, limits: &CgroupLimits) -> LimitsHeld {
        LimitsHeld {
            pids: self.limit_one(&PIDS, limits.pids_max),
            memory: self.limit_one(&MEMORY, limits.memory_max),
        }
    }

    fn limit_one(&mut self, controller: &Controller, value: Option<u64>) -> LimitHeldBy {
        let Some(value) = value else {
            return LimitHeldBy::Unlimited;
        };
        let value = value.to_string();
        let v2_err = match self.limit_v2(controller, &value) {
            Ok(()) => return LimitHeldBy::V2,
            Err(e) => e,
        };
        match self.limit_v1(controller, &value) {
            Ok(()) => LimitHeldBy::V1,
            Err(v1_err) => LimitHeldBy::Unavailable(format!("v2: {v2_err}; v1: {v1_err}")),
        }
    }

    fn limit_v2(&self, controller: &Controller, value: &str) -> Result<(), String> {
        let parent = self.dir.parent().ok_or("no parent directory")?;
        let available = read(parent.join("cgroup.controllers")).map_err(|e| e.to_string())?;
        if !available.split_whitespace().any(|c| c == controller.name) {
            return Err(format!(
                "the {} controller is not available in {}",
                controller.name,
                parent.display()
            ));
        }
        let file = self.dir.join(controller.v2_file);
        if !file.exists() {
            write_file(
                &parent.join("cgroup.subtree_control"),
                &format!("+{}", controller.name),
            )
            .map_err(|e| e.to_string())?;
        }
        write_file(&file, value).map_err(|e| e.to_string())
    }

    fn limit_v1(&mut self, controller: &Controller, value: &str) -> Result<(), String> {
        let own = own_v1_dir(controller.name)
            .ok_or_else(|| format!("no v1 {} hierarchy is mounted", controller.name))?;
        let (Some(name), Some(parent)) = (self.dir.file_name(), self.dir.parent()) else {
            return Err("no session directory name".to_owned());
        };
        let parent = own.join(
            parent
                .file_name()
                .unwrap_or(std::ffi::OsStr::new("execgate")),
        );
        let dir = parent.join(name);
        // Another session's teardown may remove `parent` between its creation and ours.
        let mut tries = 0;
        while let Err(e) = std::fs::create_dir_all(&dir) {
            tries += 1;
            if tries == 3 {
                return Err(format!("creating {}: {e}", dir.display()));
            }
        }
        self.v1_dirs.push(dir.clone());
        write_file(&dir.join(controller.v1_file), value).map_err(|e| e.to_string())
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Open `cgroup.procs` for the child to join with (call before fork; one per child,
    /// escalated commands included).
    pub fn joiner(&self) -> Result<CgroupJoiner, CgroupError> {
        let procs = std::iter::once(&self.dir)
            .chain(&self.v1_dirs)
            .map(|dir| {
                let path = dir.join("cgroup.procs");
                OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map(OwnedFd::from)
                    .map_err(|source| CgroupError::Open { path, source })
            })
            .collect::<Result<_, _>>()?;
        Ok(CgroupJoiner { procs })
    }

    /// What the session's first process and its escalated copies join the session's
    /// cgroups by: the v2 directory (joined at the clone where the kernel can), its
    /// `cgroup.procs`, and the `tasks` of the v1 cgroups holding limits. Opened once per
    /// session and shared by every process (call after [`Self::limit`]).
    pub fn joining(&self) -> Result<kernel::process::outside::JoinCgroup, CgroupError> {
        if let Some(join) = self.joining.get() {
            return Ok(join.clone());
        }
        let open = |path: PathBuf, dir: bool| {
            let mut options = OpenOptions::new();
            if dir {
                options.read(true).custom_flags(libc::O_DIRECTORY);
            } else {
                options.write(true);
            }
            options
                .open(&path)
                .map(|f| std::sync::Arc::new(OwnedFd::from(f)))
                .map_err(|source| CgroupError::Open { path, source })
        };
        let join = kernel::process::outside::JoinCgroup {
            dir: open(self.dir.clone(), true)?,
            procs: open(self.dir.join("cgroup.procs"), false)?,
            v1_tasks: self
                .v1_dirs
                .iter()
                .map(|dir| open(dir.join("tasks"), false))
                .collect::<Result<_, _>>()?,
        };
        Ok(self.joining.get_or_init(|| join).clone())
    }

    /// The pids in the cgroup now.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let procs = read(self.dir.join("cgroup.procs"))?;
        Ok(procs
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect())
    }

    /// Whether any live process is left (`cgroup.events`: `populated 1`).
    pub fn is_populated(&self) -> Result<bool, CgroupError> {
        let events = read(self.dir.join("cgroup.events"))?;
        Ok(events.lines().any(|l| l == "populated 1"))
    }

    /// Kill every process in the cgroup and wait (bounded) until none is left.
    pub fn kill(&self) -> Result<KillMethod, CgroupError> {
        let kill_file = self.dir.join("cgroup.kill");
        if !kill_file.exists() {
            return self.kill_by_signals();
        }
        write_file(&kill_file, "1")?;
        self.wait_empty()?;
        Ok(KillMethod::CgroupKill)
    }

    /// The path for kernels before 5.14 (no `cgroup.kill`): freeze where possible, SIGKILL
    /// every pid until empty, wait. Public so that it is tested on new kernels too.
    pub fn kill_by_signals(&self) -> Result<KillMethod, CgroupError> {
        let freeze = self.dir.join("cgroup.freeze");
        let method = if freeze.exists() {
            write_file(&freeze, "1")?;
            KillMethod::FreezeAndSignal
        } else {
            KillMethod::Signal
        };
        self.signal_until_empty()?;
        self.wait_empty()?;
        Ok(method)
    }

    fn signal_until_empty(&self) -> Result<(), CgroupError> {
        let start = Instant::now();
        loop {
            let pids = self.pids()?;
            if pids.is_empty() {
                return Ok(());
            }
            if start.elapsed() > KILL_DEADLINE {
                return Err(self.still_populated(pids, start));
            }
            for pid in pids {
                // ESRCH: it died meanwhile. In a frozen cgroup nothing exits on its own
                // between the read and the kill, so the pid cannot have been reused; without
                // a freezer (before 5.2) that window is the microseconds between the two.
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn wait_empty(&self) -> Result<(), CgroupError> {
        let start = Instant::now();
        let mut pause = Duration::from_micros(200);
        while self.is_populated()? {
            if start.elapsed() > KILL_DEADLINE {
                return Err(self.still_populated(self.pids()?, start));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
        Ok(())
    }

    fn still_populated(&self, pids: Vec<i32>, start: Instant) -> CgroupError {
        CgroupError::StillPopulated {
            path: self.dir.clone(),
            pids,
            waited: start.elapsed(),
        }
    }

    /// Kill what is left and remove the directory.
    pub fn remove(mut self) -> Result<(), CgroupError> {
        self.remove_inner()
    }

    fn remove_inner(&mut self) -> Result<(), CgroupError> {
        if self.removed {
            return Ok(());
        }
        if self.is_populated()? {
            self.kill()?;
        }
        remove_dir_patiently(&self.dir)?;
        // Everything in them was in `dir` too, so they are empty (or emptying) now.
        for dir in std::mem::take(&mut self.v1_dirs) {
            remove_dir_patiently(&dir)?;
            // The v1 `execgate` directory is ours too, in a hierarchy nobody else of
            // execgate's tends: removed when the last session leaves it (busy otherwise).
            if let Some(parent) = dir.parent() {
                let _ = std::fs::remove_dir(parent);
            }
        }
        self.removed = true;
        Ok(())
    }
}

/// Child cgroups a tree may make below its own (where it can write the cgroup
/// filesystem: danger-full-access, or a nested execgate) are removed first, deepest first,
/// at most this deep: `rmdir` of a cgroup with children fails with EBUSY for good.
const MAX_CHILD_DEPTH: usize = 32;

/// `rmdir` of `dir` and of the (empty, killed) child cgroups below it, retrying while it
/// says EBUSY: it can, briefly, while the last exiting task leaves.
fn remove_dir_patiently(dir: &Path) -> Result<(), CgroupError> {
    remove_below(dir, MAX_CHILD_DEPTH, &|child| {
        let _ = remove_one_patiently(child);
    });
    remove_one_patiently(dir)
}

/// `rmdir` of `dir` and the child cgroups below it, once each: a cgroup that still holds
/// processes stays (a dead supervisor's leftovers, see `Supervisor::new`).
pub(crate) fn remove_tree(dir: &Path) {
    remove_below(dir, MAX_CHILD_DEPTH, &|child| {
        let _ = std::fs::remove_dir(child);
    });
    let _ = std::fs::remove_dir(dir);
}

/// `rmdir` (as `remove`) of every directory below `dir`, deepest first, `depth` levels.
fn remove_below(dir: &Path, depth: usize, remove: &dyn Fn(&Path)) {
    let Some(depth) = depth.checked_sub(1) else {
        return;
    };
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            let child = entry.path();
            remove_below(&child, depth, remove);
            remove(&child);
        }
    }
}

fn remove_one_patiently(dir: &Path) -> Result<(), CgroupError> {
    let start = Instant::now();
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if start.elapsed() < KILL_DEADLINE && e.raw_os_error() == Some(libc::EBUSY) => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(source) => {
                return Err(CgroupError::Write {
                    path: dir.to_owned(),
                    source,
                });
            }
        }
    }
}

impl Drop for SessionCgroup {
    fn drop(&mut self) {
        if let Err(e) = self.remove_inner() {
            tracing::warn!("removing session cgroup: {e}");
        }
    }
}

fn read(path: impl AsRef<Path>) -> Result<String, CgroupError> {
    let path = path.as_ref();
    std::fs::read_to_string(path).map_err(|source| CgroupError::Read {
        path: path.to_owned(),
        source,
    })
}

fn write_file(path: &Path, value: &str) -> Result<(), CgroupError> {
    let mut file: File = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|source| CgroupError::Open {
            path: path.to_owned(),
            source,
        })?;
    file.write_all(value.as_bytes())
        .map_err(|source| CgroupError::Write {
            path: path.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cgroup2_mount_among_v1_mounts() {
        let mountinfo = "\
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
        assert_eq!(
            cgroup2_mount(mountinfo),
            Some(("/".into(), "/sys/fs/cgroup/unified".into()))
        );
        assert_eq!(cgroup2_mount("1 0 0:1 / / rw - ext4 /dev/sda rw\n"), None);
    }

    #[test]
    fn mount_points_with_spaces_are_unescaped() {
        let line = "41 31 0:38 /sub /mnt/my\\040cg rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_mount(line),
            Some(("/sub".into(), "/mnt/my cg".into()))
        );
    }

    #[test]
    fn limit_values_parse() {
        assert_eq!(parse_pids_max("200"), Ok(Some(200)));
        assert_eq!(parse_pids_max("max"), Ok(None));
        assert_eq!(parse_pids_max("unlimited"), Ok(None));
        assert!(parse_pids_max("0").is_err());
        assert!(parse_pids_max("-1").is_err());
        assert_eq!(parse_memory_max("64M"), Ok(Some(64 << 20)));
        assert_eq!(parse_memory_max("2g"), Ok(Some(2 << 30)));
        assert_eq!(parse_memory_max("1048576"), Ok(Some(1 << 20)));
        assert_eq!(parse_memory_max("max"), Ok(None));
        assert!(parse_memory_max("12").is_err(), "below 1M");
        assert!(parse_memory_max("5X").is_err());
        assert!(parse_memory_max("99999999999T").is_err(), "overflow");
    }

    #[test]
    fn finds_our_v1_cgroup_of_a_controller() {
        let mountinfo = "\
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
33 31 0:30 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
        let cgroups = "8:pids:/user.slice\n2:cpu,cpuacct:/\n0::/\n";
        assert_eq!(
            v1_dir_from(mountinfo, cgroups, "pids"),
            Some("/sys/fs/cgroup/pids/user.slice".into())
        );
        assert_eq!(
            v1_dir_from(mountinfo, cgroups, "cpuacct"),
            Some("/sys/fs/cgroup/cpu,cpuacct".into())
        );
        assert_eq!(v1_dir_from(mountinfo, cgroups, "memory"), None);
    }

    #[test]
    fn warming_the_migration_lock_moves_nothing() {
        let cgroups = || {
            let mut all = vec![read("/proc/self/cgroup").unwrap()];
            for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
                if let Ok(text) = std::fs::read_to_string(task.path().join("cgroup")) {
                    all.push(text);
                }
            }
            all.sort();
            all.dedup();
            all
        };
        let before = cgroups();
        if let Some(warm) = warm_migration_lock() {
            warm.join().unwrap();
        }
        assert_eq!(cgroups(), before);
    }

    #[test]
    fn session_ids_are_checked() {
        let err = SessionCgroup::create_in(Path::new("/nonexistent"), "../x").unwrap_err();
        assert!(matches!(err, CgroupError::InvalidId(_)), "{err}");
    }
}

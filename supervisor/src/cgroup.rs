//! A cgroup v2 per session, so the whole tree can be killed in one write.
//!
//! This module owns `<supervisor's cgroup>/execgate/session-<id>`: creating it before the
//! spawn, the child's joining it before exec, killing everything in it, and removing it.
//! It never enables controllers (a supervisor's cgroup with controllers in its
//! `subtree_control` could not hold the supervisor itself) and never touches other
//! sessions' directories.
//!
//! Joining: writing a pid into `cgroup.procs` from the parent after spawn is racy (the
//! child may fork first, and its children would stay outside). So the parent opens
//! `cgroup.procs` before fork ([`SessionCgroup::joiner`]) and the child writes `"0"` (the
//! writer itself) to that fd between fork and exec ([`CgroupJoiner::join_in_child`]): one
//! `write(2)` on a pre-opened fd, async-signal-safe. `CLONE_INTO_CGROUP` would do the same
//! atomically but needs `clone3`, which `std::process::Command` does not offer.
//!
//! Killing: `cgroup.kill` (Linux 5.14) where present; otherwise freeze the cgroup
//! (`cgroup.freeze`, 5.2) so nothing forks or exits behind our back, SIGKILL every pid in
//! `cgroup.procs` until it is empty (a frozen task still dies of SIGKILL), and wait for
//! `cgroup.events` to say `populated 0`. Reaping is not done here: the session's own
//! child is reaped by whoever spawned it, orphans by the subreaper (see `teardown`).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
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
}

/// Check that a session cgroup can be created here (creates and removes a probe one).
pub fn probe() -> Result<CgroupSupport, CgroupError> {
    let parent = own_cgroup_dir()?.join("execgate");
    let cg = SessionCgroup::create_in(&parent, &format!("probe-{}", std::process::id()))?;
    let support = CgroupSupport {
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

/// `(root within the hierarchy, mount point)` of the first cgroup2 mount (parsed by
/// `kernel::procfs`, the one mountinfo parser).
fn cgroup2_mount(mountinfo: &str) -> Option<(PathBuf, PathBuf)> {
    let mounts = kernel::procfs::parse_mountinfo(mountinfo);
    kernel::procfs::cgroup2_mount(&mounts)
        .map(|m| (PathBuf::from(&m.root), PathBuf::from(&m.mount_point)))
}

/// A session's cgroup directory; removed (after killing what is left) on drop.
#[derive(Debug)]
pub struct SessionCgroup {
    dir: PathBuf,
    removed: bool,
}

/// The pre-opened `cgroup.procs` the child writes itself into.
#[derive(Debug)]
pub struct CgroupJoiner {
    procs: OwnedFd,
}

impl CgroupJoiner {
    /// Child side, between fork and exec: move the calling process into the session's
    /// cgroup. One `write(2)` on an fd opened before fork: async-signal-safe.
    pub fn join_in_child(&self) -> Result<(), Errno> {
        nix::unistd::write(self.procs.as_fd(), b"0").map(drop)
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
            removed: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Open `cgroup.procs` for the child to join with (call before fork; one per child,
    /// escalated commands included).
    pub fn joiner(&self) -> Result<CgroupJoiner, CgroupError> {
        let path = self.dir.join("cgroup.procs");
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|source| CgroupError::Open { path, source })?;
        Ok(CgroupJoiner { procs: file.into() })
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
        // rmdir can see EBUSY briefly while the last exiting task leaves.
        let start = Instant::now();
        loop {
            match std::fs::remove_dir(&self.dir) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(e)
                    if start.elapsed() < KILL_DEADLINE && e.raw_os_error() == Some(libc::EBUSY) =>
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(source) => {
                    return Err(CgroupError::Write {
                        path: self.dir.clone(),
                        source,
                    });
                }
            }
        }
        self.removed = true;
        Ok(())
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
    fn session_ids_are_checked() {
        let err = SessionCgroup::create_in(Path::new("/nonexistent"), "../x").unwrap_err();
        assert!(matches!(err, CgroupError::InvalidId(_)), "{err}");
    }
}

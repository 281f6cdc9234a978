//! cgroup v2: where the unified hierarchy is mounted, which cgroup we are in, whether we
//! may create cgroups below it, and whether `cgroup.kill` (5.14) exists.
//!
//! A session's process tree goes into its own cgroup so that a timeout can kill all of
//! it at once with `cgroup.kill`, whatever the tree did (setsid, double fork).
//! `cgroup.kill` exists in every cgroup but the root, so when we sit in the root one a
//! child cgroup is looked at, and if there is none, one is created and removed again.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::detect::{Feature, Kernel, KernelVersion};
use crate::procfs::{self, Mount};

pub const KILL_SINCE: KernelVersion = KernelVersion::new(5, 14, 0);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cgroup {
    /// Where cgroup2 is mounted (e.g. `/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on a
    /// hybrid system); `None` when it is not mounted.
    pub v2_mount: Option<PathBuf>,
    /// Our own cgroup's directory, when it is visible under that mount.
    pub own: Option<PathBuf>,
    /// We may create cgroups in `own` (it is writable and the mount is not read-only).
    pub writable: bool,
    /// `cgroup.kill`.
    pub kill: Feature,
    /// The cgroup2 mount has `nsdelegate`: a cgroup namespace then bounds migration, so an
    /// escalated copy (rooted in the session's cgroup by one) cannot move itself out.
    #[serde(default)]
    pub nsdelegate: bool,
}

/// Picks the cgroup2 mount that holds our cgroup and maps our cgroup path into it.
pub fn locate(mounts: &[Mount], own_path: Option<&str>) -> Option<(Mount, Option<PathBuf>)> {
    let candidates = mounts.iter().filter(|m| m.fs_type == "cgroup2");
    let mut first = None;
    for mount in candidates {
        first.get_or_insert(mount);
        let Some(own) = own_path else { continue };
        // The mount shows the hierarchy from `mount.root` down; our path must lie below it.
        let rel = if mount.root == "/" {
            Some(own.trim_start_matches('/'))
        } else {
            own.strip_prefix(mount.root.as_str())
                .filter(|rest| rest.is_empty() || rest.starts_with('/'))
                .map(|rest| rest.trim_start_matches('/'))
        };
        if let Some(rel) = rel {
            let mut dir = PathBuf::from(&mount.mount_point);
            if !rel.is_empty() {
                dir.push(rel);
            }
            return Some((mount.clone(), Some(dir)));
        }
    }
    first.map(|m| (m.clone(), None))
}

/// `access(path, W_OK)`.
fn writable(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a NUL-terminated string alive for the call.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

/// What looking for `cgroup.kill` found.
#[derive(Debug)]
enum KillFile {
    Found(String),
    Missing(String),
    /// Nothing could be looked at (unreadable, or no child cgroup and none may be made).
    Unknown(String),
}

/// Looks for `cgroup.kill` in `dir`, else in a child cgroup of it, else in a child
/// cgroup created for the purpose (when allowed).
fn find_kill_file(dir: &Path, may_create: bool) -> KillFile {
    if dir.join("cgroup.kill").exists() {
        return KillFile::Found(format!("{}/cgroup.kill exists", dir.display()));
    }
    let children = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => return KillFile::Unknown(format!("reading {}: {e}", dir.display())),
    };
    let children = children
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path());
    let mut looked_at = 0;
    for child in children {
        looked_at += 1;
        if child.join("cgroup.kill").exists() {
            return KillFile::Found(format!("{}/cgroup.kill exists", child.display()));
        }
    }
    if looked_at > 0 {
        return KillFile::Missing(format!(
            "no cgroup.kill in {} or its {looked_at} child cgroups",
            dir.display()
        ));
    }
    if !may_create {
        return KillFile::Unknown(format!(
            "{} is a root cgroup without children, and not writable",
            dir.display()
        ));
    }
    let probe = dir.join(format!("execgate-probe-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir(&probe) {
        return KillFile::Unknown(format!("creating {}: {e}", probe.display()));
    }
    let found = probe.join("cgroup.kill").exists();
    let _ = std::fs::remove_dir(&probe);
    let what = format!("cgroup.kill in a new child cgroup of {}", dir.display());
    if found {
        KillFile::Found(format!("{what} exists"))
    } else {
        KillFile::Missing(format!("no {what}"))
    }
}

pub(crate) fn detect(kernel: &Kernel) -> Cgroup {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| procfs::parse_mountinfo(&t))
        .unwrap_or_default();
    let own_path = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|t| procfs::parse_cgroup_v2_path(&t));
    let Some((mount, own)) = locate(&mounts, own_path.as_deref()) else {
        return Cgroup {
            v2_mount: None,
            own: None,
            writable: false,
            kill: Feature::by_version(kernel, KILL_SINCE, "cgroup2 is not mounted"),
            nsdelegate: false,
        };
    };
    let dir = own
        .clone()
        .unwrap_or_else(|| PathBuf::from(&mount.mount_point));
    let can_write = !mount.read_only() && writable(&dir);
    let kill = match find_kill_file(&dir, can_write) {
        KillFile::Found(detail) => Feature::probed(true, KILL_SINCE, detail),
        KillFile::Missing(detail) => Feature::probed(false, KILL_SINCE, detail),
        KillFile::Unknown(detail) => Feature::by_version(kernel, KILL_SINCE, &detail),
    };
    Cgroup {
        v2_mount: Some(PathBuf::from(&mount.mount_point)),
        own,
        writable: can_write,
        kill,
        nsdelegate: mount.has_super_option("nsdelegate"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(root: &str, at: &str, ty: &str) -> Mount {
        Mount {
            root: root.into(),
            mount_point: at.into(),
            options: "rw".into(),
            fs_type: ty.into(),
            super_options: "rw".into(),
        }
    }

    #[test]
    fn hybrid_host() {
        let mounts = [
            mount("/", "/sys/fs/cgroup/memory", "cgroup"),
            mount("/", "/sys/fs/cgroup/unified", "cgroup2"),
        ];
        let (m, own) = locate(&mounts, Some("/user.slice/s.scope")).unwrap();
        assert_eq!(m.mount_point, "/sys/fs/cgroup/unified");
        assert_eq!(
            own.unwrap(),
            Path::new("/sys/fs/cgroup/unified/user.slice/s.scope")
        );
    }

    #[test]
    fn root_cgroup_and_container_mount() {
        let (_, own) = locate(&[mount("/", "/sys/fs/cgroup", "cgroup2")], Some("/")).unwrap();
        assert_eq!(own.unwrap().as_os_str(), "/sys/fs/cgroup");
        // A container sees its own subtree as the mount's root.
        let mounts = [mount("/docker/abc", "/sys/fs/cgroup", "cgroup2")];
        let (_, own) = locate(&mounts, Some("/docker/abc/inner")).unwrap();
        assert_eq!(own.unwrap(), Path::new("/sys/fs/cgroup/inner"));
        let (_, own) = locate(&mounts, Some("/docker/abcdef")).unwrap();
        assert_eq!(own, None);
    }

    #[test]
    fn no_cgroup2() {
        assert!(locate(&[mount("/", "/sys/fs/cgroup/cpu", "cgroup")], Some("/")).is_none());
    }
}

//! The calling process's own situation: inside a container, already under a seccomp
//! filter, NO_NEW_PRIVS set. None of it stops execgate by itself; all of it explains
//! why a probe came out as it did.

use serde::{Deserialize, Serialize};

use crate::procfs::Status;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    /// The container runtime, when there are signs of one (and which sign).
    pub container: Option<String>,
    /// `Seccomp:` in `/proc/self/status`: 0 none, 1 strict, 2 filter.
    pub seccomp_mode: Option<u8>,
    /// `Seccomp_filters:` (5.9+): how many filters sit above this process already.
    pub seccomp_filters: Option<u32>,
    pub no_new_privs: Option<bool>,
    /// Effective user id.
    pub euid: u32,
}

/// Signs of a container, most specific first.
pub fn container_from(
    dockerenv: bool,
    containerenv: bool,
    pid1_environ: Option<&[u8]>,
    cgroup: Option<&str>,
) -> Option<String> {
    if dockerenv {
        return Some("docker (/.dockerenv)".into());
    }
    if containerenv {
        return Some("podman (/run/.containerenv)".into());
    }
    if let Some(env) = pid1_environ {
        for var in env.split(|&b| b == 0) {
            if let Some(value) = var.strip_prefix(b"container=") {
                return Some(format!(
                    "{} (container= in PID 1's environment)",
                    String::from_utf8_lossy(value)
                ));
            }
        }
    }
    let cgroup = cgroup?;
    ["docker", "kubepods", "lxc", "containerd", "libpod"]
        .into_iter()
        .find(|sign| cgroup.contains(sign))
        .map(|sign| format!("{sign} (in /proc/self/cgroup)"))
}

pub(crate) fn detect(status: &Status) -> Process {
    let pid1_environ = std::fs::read("/proc/1/environ").ok();
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok();
    Process {
        container: container_from(
            std::path::Path::new("/.dockerenv").exists(),
            std::path::Path::new("/run/.containerenv").exists(),
            pid1_environ.as_deref(),
            cgroup.as_deref(),
        ),
        seccomp_mode: status.seccomp,
        seccomp_filters: status.seccomp_filters,
        no_new_privs: status.no_new_privs,
        // SAFETY: geteuid has no preconditions and cannot fail.
        euid: unsafe { libc::geteuid() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_signs() {
        assert_eq!(container_from(false, false, None, Some("0::/\n")), None);
        assert!(
            container_from(true, false, None, None)
                .unwrap()
                .starts_with("docker")
        );
        assert!(
            container_from(false, true, None, None)
                .unwrap()
                .starts_with("podman")
        );
        let env = b"PATH=/bin\0container=lxc\0HOME=/\0";
        assert!(
            container_from(false, false, Some(env), None)
                .unwrap()
                .starts_with("lxc")
        );
        let cg = "0::/kubepods/besteffort/pod1/abc\n";
        assert!(
            container_from(false, false, None, Some(cg))
                .unwrap()
                .starts_with("kubepods")
        );
    }
}

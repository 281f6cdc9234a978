//! One paused exec, read out of the caller: which program, with which argv, from where.
//!
//! The path is made absolute the way the kernel will resolve it: against the caller's cwd
//! for `execve`, against the dirfd for `execveat` (`AT_EMPTY_PATH` with an empty path is
//! an exec of the fd itself). The environment is read only when a copy will be run.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use crate::memory::{MAX_STRING, MAX_TOTAL, MemoryAccess, ReadError, RemoteMemory};
use crate::seccomp::listener::Notification;

/// A decoded `execve`/`execveat`.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    /// The calling thread.
    pub tid: u32,
    /// The program, absolute where it could be resolved.
    pub path: PathBuf,
    /// True when the program is an open fd rather than a path (`fexecve`).
    pub by_fd: bool,
    pub argv: Vec<OsString>,
    /// Address of envp in the caller, read later by [`ExecRequest::read_env`].
    envp: u64,
}

impl ExecRequest {
    /// Reads path and argv of a notification, the way `access` says (decided at start).
    pub fn read(n: &Notification, access: MemoryAccess) -> Result<ExecRequest, ReadError> {
        let mem = RemoteMemory::open(n.pid, access)?;
        let (dirfd, path_ptr, argv_ptr, envp_ptr, flags) = if n.is_execveat() {
            // execveat(dirfd, path, argv, envp, flags): dirfd is an int in the low half
            // of a u64 slot.
            (
                i32::from_ne_bytes(low_u32(n.args[0]).to_ne_bytes()),
                n.args[1],
                n.args[2],
                n.args[3],
                n.args[4],
            )
        } else {
            (libc::AT_FDCWD, n.args[0], n.args[1], n.args[2], 0)
        };
        let mut budget = MAX_TOTAL;
        let (raw_path, argv) =
            mem.read_path_and_argv(path_ptr, libc::PATH_MAX as usize, argv_ptr, &mut budget)?;
        let raw_path = OsString::from_vec(raw_path);
        let argv = argv.into_iter().map(OsString::from_vec).collect();
        let empty_path = flags & libc::AT_EMPTY_PATH as u64 != 0 && raw_path.is_empty();
        let path = resolve(n.pid, dirfd, Path::new(&raw_path), empty_path);
        Ok(ExecRequest {
            tid: n.pid,
            path,
            by_fd: empty_path,
            argv,
            envp: envp_ptr,
        })
    }

    /// Reads the caller's environment (call while the exec is still paused).
    pub fn read_env(&self, access: MemoryAccess) -> Result<Vec<OsString>, ReadError> {
        let mut budget = MAX_TOTAL;
        Ok(RemoteMemory::open(self.tid, access)?
            .read_string_array(self.envp, &mut budget)?
            .into_iter()
            .map(OsString::from_vec)
            .collect())
    }

    /// The argv as strings, for the policy (not valid UTF-8: replaced, lossy).
    pub fn argv_lossy(&self) -> Vec<String> {
        self.argv
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }
}

fn low_u32(v: u64) -> u32 {
    u32::try_from(v & 0xffff_ffff).unwrap_or(0)
}

use crate::procfs::cwd_of;

fn resolve(tid: u32, dirfd: i32, path: &Path, empty_path: bool) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    let base = if dirfd == libc::AT_FDCWD {
        cwd_of(tid)
    } else {
        std::fs::read_link(format!("/proc/{tid}/fd/{dirfd}")).unwrap_or_default()
    };
    if empty_path { base } else { base.join(path) }
}

/// Longest path the kernel takes; reading stops there.
const _: () = assert!(libc::PATH_MAX as usize <= MAX_STRING);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_resolve_against_the_cwd() {
        let me = std::process::id();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            resolve(me, libc::AT_FDCWD, Path::new("bin/x"), false),
            cwd.join("bin/x")
        );
        assert_eq!(
            resolve(me, libc::AT_FDCWD, Path::new("/abs"), false),
            PathBuf::from("/abs")
        );
    }
}

//! Read-only bind mounts in a private mount namespace, made in the child before exec.
//!
//! Landlock has only allow rules: it cannot keep `.git` read-only inside a writable
//! workspace without refusing to create anything next to it. With `CAP_SYS_ADMIN` the child
//! instead unshares its mount namespace, makes every mount private (nothing propagates back
//! to the host), and bind-mounts each protected path read-only over itself; Landlock then
//! grants the workspace whole. Must run before Landlock's `restrict_self`, which forbids
//! mount changes.
//!
//! Owns: the private mount namespace and its read-only binds. Must never change a mount
//! outside the new namespace (propagation is made private first).

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// Paths to make read-only, prepared (NUL-terminated) before fork.
#[derive(Debug, Clone)]
pub struct ReadOnlyBinds {
    paths: Vec<CString>,
}

impl ReadOnlyBinds {
    /// `paths` must be absolute and exist.
    pub fn new(paths: &[PathBuf]) -> io::Result<ReadOnlyBinds> {
        let paths = paths
            .iter()
            .map(|p| CString::new(p.as_os_str().as_bytes()).map_err(io::Error::other))
            .collect::<io::Result<_>>()?;
        Ok(ReadOnlyBinds { paths })
    }

    /// No path to protect: no mount namespace is made.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// Child side: unshare the mount namespace and bind each path read-only. Only syscalls
    /// on prepared strings: async-signal-safe.
    pub fn apply_in_child(&self) -> io::Result<()> {
        if self.paths.is_empty() {
            return Ok(());
        }
        // SAFETY: unshare takes an integer flag set.
        crate::cvt_int(unsafe { libc::unshare(libc::CLONE_NEWNS) })?;
        let root = c"/";
        // SAFETY: valid NUL-terminated strings (or NULL) for the duration of the call.
        crate::cvt_int(unsafe {
            libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            )
        })?;
        for path in &self.paths {
            // SAFETY: `path` is a valid NUL-terminated string prepared before fork.
            crate::cvt_int(unsafe {
                libc::mount(
                    path.as_ptr(),
                    path.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                )
            })?;
            // SAFETY: as above; a remount of the bind just made.
            crate::cvt_int(unsafe {
                libc::mount(
                    std::ptr::null(),
                    path.as_ptr(),
                    std::ptr::null(),
                    libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY,
                    std::ptr::null(),
                )
            })?;
        }
        Ok(())
    }
}

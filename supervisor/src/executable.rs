//! The file an escalated copy runs, and whether the session could have written it.
//!
//! Escalation runs a program outside the sandbox, so the program is identified by the file
//! the kernel would execute for the caller, opened once through the caller's root
//! (`/proc/PID/root`) with symlinks followed by the kernel, never by lexical `..` removal.
//! That descriptor is what gets checked and what the copy executes, so a rename or swap
//! after the check changes nothing.
//!
//! A file is trusted when the session could not have put it there: it is a regular file
//! outside every place the session can write (its writable roots, whatever the sandbox
//! mode: an earlier call may have written there), owned by root or the supervisor's own
//! user and writable by no one else, in directories that are all the same. As root in a
//! container every file the agent writes is root's: the places, not the owner, are what
//! tell its files apart.
//!
//! Must never run anything: it only opens and inspects.

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Group- or world-writable.
const WRITABLE_BY_OTHERS: u32 = 0o022;

/// An opened executable: what the copy runs.
#[derive(Debug)]
pub struct Executable {
    /// `O_PATH`: enough to `fstat`, to exec through `/proc/self/fd/N`, and nothing else.
    file: File,
    /// Its `fstat`, taken once at the open: what [`Executable::why_untrusted`] judges.
    meta: Metadata,
    /// Where it really is, symlinks resolved (from the descriptor, not from the path).
    pub path: PathBuf,
    pub dev: u64,
    pub ino: u64,
    /// Starts with `#!`: its interpreter opens it again by the descriptor's path, so the
    /// descriptor must survive the exec.
    pub script: bool,
}

impl Executable {
    /// Opens `path` (absolute, as the caller's exec names it) in the view of process `pid`.
    pub fn open(pid: u32, path: &Path) -> io::Result<Executable> {
        let file = open_in_caller_view(pid, path)?;
        let meta = file.metadata()?;
        let fd_path = format!("/proc/self/fd/{}", file.as_raw_fd());
        let path = std::fs::read_link(&fd_path)?;
        // Only a regular file is read (and only one is ever escalated): opening a FIFO
        // for reading would wait for a writer, a device's open may act on the device.
        let script = meta.is_file() && is_script(&fd_path);
        Ok(Executable {
            file,
            path,
            dev: meta.dev(),
            ino: meta.ino(),
            meta,
            script,
        })
    }

    /// Why the session could have written this file, or `None` when it could not.
    /// `agent_roots` are the places the session can write (canonical paths).
    pub fn why_untrusted(&self, agent_roots: &[PathBuf], own_uid: u32) -> Option<String> {
        let meta = &self.meta;
        if !meta.is_file() {
            return Some(format!("{} is not a regular file", self.path.display()));
        }
        if let Some(root) = agent_roots.iter().find(|r| self.path.starts_with(r)) {
            return Some(format!(
                "{} is inside {}, which the session can write",
                self.path.display(),
                root.display()
            ));
        }
        if let Some(why) = writable_by_others(&self.path, meta, own_uid) {
            return Some(why);
        }
        for dir in self.path.ancestors().skip(1) {
            let meta = match std::fs::metadata(dir) {
                Ok(meta) => meta,
                Err(err) => return Some(format!("cannot inspect {}: {err}", dir.display())),
            };
            if let Some(why) = writable_by_others(dir, &meta, own_uid) {
                return Some(why);
            }
        }
        None
    }

    /// The same file as `other` (device and inode)?
    pub fn is(&self, other: &Metadata) -> bool {
        self.dev == other.dev() && self.ino == other.ino()
    }

    /// The path the copy executes: this descriptor, as the child will have it.
    pub fn exec_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()))
    }

    /// The descriptor's number (the child has it at the same number after fork).
    pub fn fd_number(&self) -> std::os::fd::RawFd {
        self.file.as_raw_fd()
    }

    /// A duplicate to keep open across the copy's exec (for a script's interpreter).
    pub fn try_clone_fd(&self) -> io::Result<OwnedFd> {
        Ok(OwnedFd::from(self.file.try_clone()?))
    }
}

/// Owned by someone other than root or us, or writable by group or world.
/// Opens `path` as process (or thread) `pid` would name it, `O_PATH`: an absolute path from
/// its root, a relative one from its working directory; symlinks are followed by the
/// kernel. Enough to `fstat`, and to exec or connect through `/proc/self/fd/N`.
pub(crate) fn open_in_caller_view(pid: u32, path: &Path) -> io::Result<File> {
    let base = Path::new("/proc").join(pid.to_string());
    let in_caller_view = match path.strip_prefix("/") {
        Ok(relative) => base.join("root").join(relative),
        Err(_) => base.join("cwd").join(path),
    };
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
        .open(in_caller_view)
}

fn writable_by_others(path: &Path, meta: &Metadata, own_uid: u32) -> Option<String> {
    if meta.uid() != 0 && meta.uid() != own_uid {
        return Some(format!(
            "{} is owned by uid {}, not by root or the supervisor's user",
            path.display(),
            meta.uid()
        ));
    }
    if meta.mode() & WRITABLE_BY_OTHERS != 0 {
        return Some(format!(
            "{} is writable by others (mode {:o})",
            path.display(),
            meta.mode() & 0o7777
        ));
    }
    None
}

/// Reads the first two bytes through the descriptor's path (a file we may only execute
/// is not a script we could read, so not one either).
fn is_script(fd_path: &str) -> bool {
    let mut magic = [0u8; 2];
    File::open(fd_path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && &magic == b"#!"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own_uid() -> u32 {
        std::fs::metadata("/proc/self")
            .map(|m| m.uid())
            .unwrap_or(0)
    }

    #[test]
    fn a_system_binary_is_trusted_and_identified_through_symlinks() {
        let me = std::process::id();
        let sh = Executable::open(me, Path::new("/bin/sh")).unwrap();
        let real = std::fs::canonicalize("/bin/sh").unwrap();
        assert_eq!(sh.path, real);
        assert!(sh.is(&std::fs::metadata(&real).unwrap()));
        assert_eq!(sh.why_untrusted(&[], own_uid()), None);
    }

    #[test]
    fn a_file_in_a_writable_root_is_not_trusted_whoever_owns_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let exe = root.join("ls");
        std::fs::copy("/bin/true", &exe).unwrap();
        let opened = Executable::open(std::process::id(), &exe).unwrap();
        let why = opened
            .why_untrusted(std::slice::from_ref(&root), own_uid())
            .unwrap();
        assert!(why.contains("which the session can write"), "{why}");
    }

    #[test]
    fn dot_dot_through_a_symlink_is_what_the_kernel_resolves() {
        // `s` points two levels down, so `s/../../usr/bin/true` is not /usr/bin/true for
        // the kernel, whatever lexical normalisation says.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::create_dir_all(root.join("a/usr/bin")).unwrap();
        std::fs::copy("/bin/true", root.join("a/usr/bin/true")).unwrap();
        std::os::unix::fs::symlink(root.join("a/b"), root.join("s")).unwrap();
        let path = root.join("s/../usr/bin/true");
        let opened = Executable::open(std::process::id(), &path).unwrap();
        assert_eq!(opened.path, root.join("a/usr/bin/true"));
        assert!(opened.why_untrusted(&[root], own_uid()).is_some());
    }

    #[test]
    fn a_world_writable_directory_makes_its_files_untrusted() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let open = root.join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .unwrap();
        std::fs::copy("/bin/true", open.join("t")).unwrap();
        let opened = Executable::open(std::process::id(), &open.join("t")).unwrap();
        let why = opened.why_untrusted(&[], own_uid()).unwrap();
        assert!(why.contains("writable by others"), "{why}");
    }

    #[test]
    fn a_file_made_writable_between_two_opens_is_untrusted_at_the_second() {
        // Each exec opens and inspects the file anew: nothing from an earlier exec's check
        // is taken for this one.
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().canonicalize().unwrap().join("t");
        std::fs::copy("/bin/true", &exe).unwrap();
        let set_mode = |mode| {
            std::fs::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(mode))
                .unwrap()
        };
        set_mode(0o755);
        let me = std::process::id();
        // The file's own verdict (its parents, a temporary directory, may be untrusted for
        // reasons of their own, judged after it).
        let file_verdict = |e: &Executable| {
            e.why_untrusted(&[], own_uid())
                .filter(|why| why.starts_with(&format!("{} is writable", exe.display())))
        };
        let first = Executable::open(me, &exe).unwrap();
        set_mode(0o775);
        let second = Executable::open(me, &exe).unwrap();
        assert_eq!(file_verdict(&first), None);
        assert!(file_verdict(&second).is_some());
    }

    #[test]
    fn a_fifo_is_not_opened_for_reading_and_not_trusted() {
        // Reading a FIFO's first bytes would wait for a writer, holding up every exec of
        // the session: only a regular file is read.
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().canonicalize().unwrap().join("true");
        let path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(
            nix::unistd::mkfifo(
                path.as_c_str(),
                nix::sys::stat::Mode::from_bits_truncate(0o755)
            ),
            Ok(())
        );
        let opened = Executable::open(std::process::id(), &fifo).unwrap();
        assert!(!opened.script);
        let why = opened.why_untrusted(&[], own_uid()).unwrap();
        assert!(why.contains("not a regular file"), "{why}");
    }

    #[test]
    fn scripts_are_told_from_binaries() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("s");
        std::fs::write(&script, "#!/bin/sh\nexit 3\n").unwrap();
        let me = std::process::id();
        assert!(Executable::open(me, &script).unwrap().script);
        assert!(!Executable::open(me, Path::new("/bin/true")).unwrap().script);
    }
}

//! Copying another process's file descriptor: `pidfd_getfd` where it is allowed, else
//! reopening `/proc/PID/fd/N`.
//!
//! The supervisor hands a paused caller's stdin/stdout/stderr to an escalated command, and
//! writes a refused exec's reason on the caller's stderr. `pidfd_getfd` (5.6) copies the
//! descriptor itself: the same open file description, offset and flags shared. A container
//! profile can block it (Docker's default allows it only with `CAP_SYS_PTRACE`), so the
//! fallback reopens the file the descriptor refers to through procfs's magic link:
//!
//! - pipes, ttys/ptys, character devices (`/dev/null`) and regular files reopen;
//! - sockets (`ENXIO`) and anonymous inodes (eventfd, epoll, pidfd, ...) do not: those
//!   are an error, never a silent substitute;
//! - what differs: the reopened file is a **separate open file description**. The access
//!   mode, `O_APPEND` and `O_NONBLOCK` are taken from `/proc/PID/fdinfo/N`, and a seekable
//!   file starts at the caller's offset (`pos:`), but what is read or written through the
//!   copy does not advance the caller's shared offset. With `O_APPEND` (`>>`) writes still
//!   land at the end; a file opened with `>` and written again by the caller's shell after
//!   the escalated command can overwrite the command's output.
//!
//! Which way is used is decided once, at start-up, from feature detection
//! ([`FdHandoff`]); only an unexpected `EPERM`/`ENOSYS` from `pidfd_getfd` falls back per
//! call.
//!
//! Owns: copying descriptors out of a paused process. Must never hand over a file the
//! caller could not reach itself (mode and identity are checked), nor substitute one.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::pidfd::PidFd;

/// How descriptors are copied out of a paused process (a caller's stdin/stdout/stderr
/// handed to an escalated command, its stderr reached for a refusal's reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FdHandoff {
    /// `pidfd_getfd`: the very same open file description.
    PidfdGetfd,
    /// `open("/proc/PID/fd/N")`: a new description of the same file (see the module doc):
    /// no sockets or anonymous inodes, and a regular file's offset is not shared.
    #[serde(rename = "proc_fd_reopen")]
    ProcReopen,
}

impl std::fmt::Display for FdHandoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FdHandoff::PidfdGetfd => "pidfd_getfd",
            FdHandoff::ProcReopen => "/proc/PID/fd reopen",
        })
    }
}

/// Why a descriptor could not be copied.
#[derive(Debug, thiserror::Error)]
pub enum CopyFdError {
    /// The process has no such descriptor (closed): not an error of the hand-off.
    #[error("fd {fd} is not open")]
    NotOpen { fd: RawFd },
    #[error("copying fd {fd} with pidfd_getfd: {source}")]
    Getfd {
        fd: RawFd,
        #[source]
        source: io::Error,
    },
    /// The fallback cannot reopen this kind of file (a socket, an anonymous inode).
    #[error(
        "fd {fd} ({target}) cannot be reopened through /proc: {source} (sockets and \
         anonymous inodes can only be handed over with pidfd_getfd)"
    )]
    NotReopenable {
        fd: RawFd,
        target: String,
        #[source]
        source: io::Error,
    },
    #[error("reopening fd {fd} ({target}) through /proc: {source}")]
    Reopen {
        fd: RawFd,
        target: String,
        #[source]
        source: io::Error,
    },
}

impl CopyFdError {
    /// The descriptor was simply closed in the process.
    pub fn is_not_open(&self) -> bool {
        matches!(self, CopyFdError::NotOpen { .. })
    }
}

/// A copy of descriptor `fd` of process `pid` (a thread id works too), CLOEXEC, by `how`.
/// `pidfd` must refer to the same process.
pub fn copy_fd(how: FdHandoff, pidfd: &PidFd, pid: u32, fd: RawFd) -> Result<OwnedFd, CopyFdError> {
    if how == FdHandoff::PidfdGetfd {
        match pidfd.get_fd(fd) {
            Ok(copy) => return Ok(copy),
            Err(e) if e.raw_os_error() == Some(libc::EBADF) => {
                return Err(CopyFdError::NotOpen { fd });
            }
            // Blocked after all (a filter added later, an LSM): the fallback may still work.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::ENOSYS)) => {}
            Err(source) => return Err(CopyFdError::Getfd { fd, source }),
        }
    }
    reopen(pid, fd)
}

/// The flags of `/proc/PID/fdinfo/N` that the reopened description keeps.
const KEPT_FLAGS: libc::c_int = libc::O_ACCMODE | libc::O_APPEND | libc::O_NONBLOCK;

/// What `/proc/PID/fdinfo/N` says about a descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FdInfo {
    pos: u64,
    flags: libc::c_int,
    /// The mount and inode of the file (`mnt_id:` 3.15, `ino:` 5.14), read together with
    /// `flags`: what the reopened file is checked against.
    mnt_id: Option<u64>,
    ino: Option<u64>,
}

/// Parses `pos:` and `flags:` (octal) of an fdinfo file.
fn parse_fdinfo(text: &str) -> Option<FdInfo> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    let pos = field("pos:")?.parse().ok()?;
    let flags = u32::from_str_radix(field("flags:")?, 8).ok()?;
    Some(FdInfo {
        pos,
        flags: libc::c_int::try_from(flags).ok()?,
        mnt_id: field("mnt_id:").and_then(|v| v.parse().ok()),
        ino: field("ino:").and_then(|v| v.parse().ok()),
    })
}

/// The reopened copy must be the file whose access mode was read: another thread of the
/// caller could otherwise swap the descriptor in between (a read-only file the sandbox
/// cannot write, reopened by us with the write access of the descriptor it replaced).
/// Compared by mount and inode, both from fdinfo (ours for the copy).
fn check_same_file(expected: &FdInfo, copy: &OwnedFd) -> io::Result<()> {
    let (Some(mnt_id), Some(ino)) = (expected.mnt_id, expected.ino) else {
        return Err(io::Error::other(
            "this kernel's fdinfo does not show the file's inode (Linux 5.14), so the \
             reopened file cannot be checked against the descriptor",
        ));
    };
    let mine = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", copy.as_raw_fd()))?;
    let mine = parse_fdinfo(&mine).ok_or_else(|| io::Error::other("unreadable own fdinfo"))?;
    if mine.mnt_id != Some(mnt_id) || mine.ino != Some(ino) {
        return Err(io::Error::other(
            "the descriptor changed while it was being reopened: refused",
        ));
    }
    Ok(())
}

/// Reopens `/proc/PID/fd/N` with the descriptor's access mode and status flags, at its
/// offset.
fn reopen(pid: u32, fd: RawFd) -> Result<OwnedFd, CopyFdError> {
    let link = format!("/proc/{pid}/fd/{fd}");
    // What the descriptor refers to, for messages ("pipe:[123]", "socket:[456]", a path).
    let target = match std::fs::read_link(&link) {
        Ok(t) => t.display().to_string(),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            return Err(CopyFdError::NotOpen { fd });
        }
        Err(source) => {
            return Err(CopyFdError::Reopen {
                fd,
                target: "?".into(),
                source,
            });
        }
    };
    let err = |source: io::Error| {
        let errno = source.raw_os_error();
        let target = target.clone();
        if errno == Some(libc::ENXIO) || target.starts_with("anon_inode:") {
            CopyFdError::NotReopenable { fd, target, source }
        } else if errno == Some(libc::ENOENT) {
            CopyFdError::NotOpen { fd }
        } else {
            CopyFdError::Reopen { fd, target, source }
        }
    };
    let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).map_err(err)?;
    let info =
        parse_fdinfo(&info).ok_or_else(|| err(io::Error::other("unreadable /proc fdinfo")))?;
    if info.flags & libc::O_PATH != 0 {
        return Err(err(io::Error::other(
            "an O_PATH descriptor has no file to hand over",
        )));
    }
    let keep = info.flags & KEPT_FLAGS;
    // O_NONBLOCK for the open itself: a named FIFO without a partner would block it (an
    // anonymous pipe never does); the caller's own blocking mode is restored below.
    // O_NOCTTY: a tty must not become our controlling terminal.
    let open_flags = keep | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC;
    let copy = open_magic_link(&link, open_flags).map_err(err)?;
    check_same_file(&info, &copy).map_err(err)?;
    if keep & libc::O_NONBLOCK == 0 {
        set_status_flags(&copy, keep).map_err(err)?;
    }
    if info.pos != 0 {
        // Only seekable files have an offset; ESPIPE elsewhere is expected.
        match seek_to(&copy, info.pos) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ESPIPE) => {}
            Err(e) => return Err(err(e)),
        }
    }
    Ok(copy)
}

/// `open(link, flags)` on a `/proc/PID/fd/N` magic link.
fn open_magic_link(link: &str, flags: libc::c_int) -> io::Result<OwnedFd> {
    let path = std::ffi::CString::new(link).map_err(io::Error::other)?;
    // SAFETY: `path` is NUL-terminated by construction and lives across the call; no
    // O_CREAT, so no mode argument is read.
    let fd = crate::cvt_int(unsafe { libc::open(path.as_ptr(), flags) })?;
    // SAFETY: open just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `fcntl(F_SETFL)`: sets the file status flags (here: clears `O_NONBLOCK`).
fn set_status_flags(fd: &OwnedFd, flags: libc::c_int) -> io::Result<()> {
    // SAFETY: F_SETFL takes an int; `fd` is open for the duration of the call.
    crate::cvt_int(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags) })?;
    Ok(())
}

/// `lseek(fd, pos, SEEK_SET)`.
fn seek_to(fd: &OwnedFd, pos: u64) -> io::Result<()> {
    let pos = libc::off_t::try_from(pos).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: lseek takes integers; `fd` is open for the duration of the call.
    let r = unsafe { libc::lseek(fd.as_raw_fd(), pos, libc::SEEK_SET) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::os::unix::fs::OpenOptionsExt;
    use std::process::{Child, Command, Stdio};

    /// A child that sleeps with `stdin`/`stdout` as given; killed and reaped on drop.
    struct Sleeper(Child, PidFd);

    impl Sleeper {
        fn spawn(stdin: Stdio, stdout: Stdio) -> Sleeper {
            let child = Command::new("sleep")
                .arg("30")
                .stdin(stdin)
                .stdout(stdout)
                .spawn()
                .unwrap();
            let pidfd = PidFd::open(child.id()).unwrap();
            Sleeper(child, pidfd)
        }

        fn copy(&self, fd: RawFd) -> Result<OwnedFd, CopyFdError> {
            copy_fd(FdHandoff::ProcReopen, &self.1, self.0.id(), fd)
        }
    }

    impl Drop for Sleeper {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn flags_of(fd: &OwnedFd) -> libc::c_int {
        // SAFETY: F_GETFL takes no argument; `fd` is open.
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) }
    }

    #[test]
    fn fdinfo_parses_pos_and_octal_flags() {
        let text = "pos:\t42\nflags:\t02102001\nmnt_id:\t30\nino:\t7\n";
        assert_eq!(
            parse_fdinfo(text),
            Some(FdInfo {
                pos: 42,
                flags: 0o2102001,
                mnt_id: Some(30),
                ino: Some(7),
            })
        );
        assert_eq!(parse_fdinfo("pos: x\nflags: 1\n"), None);
        let old_kernel = parse_fdinfo("pos:\t0\nflags:\t0\n").unwrap();
        assert_eq!((old_kernel.mnt_id, old_kernel.ino), (None, None));
    }

    #[test]
    fn a_reopened_file_that_is_not_the_descriptors_file_is_refused() {
        // What a swap between reading fdinfo and the open looks like: the copy is another
        // file than the one whose access mode was read.
        let a = tempfile::NamedTempFile::new().unwrap();
        let b = tempfile::NamedTempFile::new().unwrap();
        let read = |f: &tempfile::NamedTempFile| {
            let fd = OwnedFd::from(std::fs::File::open(f.path()).unwrap());
            let info = parse_fdinfo(
                &std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).unwrap(),
            )
            .unwrap();
            (fd, info)
        };
        let (fd_a, info_a) = read(&a);
        let (fd_b, _) = read(&b);
        assert!(check_same_file(&info_a, &fd_a).is_ok());
        let err = check_same_file(&info_a, &fd_b).unwrap_err().to_string();
        assert!(err.contains("changed while it was being reopened"), "{err}");
        // Without an inode number to compare (before Linux 5.14): refused, saying why.
        let blind = FdInfo {
            ino: None,
            ..info_a
        };
        let err = check_same_file(&blind, &fd_a).unwrap_err().to_string();
        assert!(err.contains("Linux 5.14"), "{err}");
    }

    #[test]
    fn reopens_both_ends_of_pipes() {
        let mut child = Sleeper::spawn(Stdio::piped(), Stdio::piped());
        // stdin: the read end. What we write reaches the copy.
        let copy_in = child.copy(0).unwrap();
        assert_eq!(flags_of(&copy_in) & libc::O_ACCMODE, libc::O_RDONLY);
        assert_eq!(
            flags_of(&copy_in) & libc::O_NONBLOCK,
            0,
            "blocking, as the original"
        );
        child.0.stdin.as_mut().unwrap().write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        File::from(copy_in).read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");
        // stdout: the write end. What the copy writes, we read.
        let copy_out = child.copy(1).unwrap();
        assert_eq!(flags_of(&copy_out) & libc::O_ACCMODE, libc::O_WRONLY);
        File::from(copy_out).write_all(b"pong").unwrap();
        child
            .0
            .stdout
            .as_mut()
            .unwrap()
            .read_exact(&mut buf)
            .unwrap();
        assert_eq!(&buf, b"pong");
    }

    #[test]
    fn reopens_a_pipe_whose_writer_is_gone() {
        // `echo hi | cmd` after echo exited: stdin is a pipe with no writer left. The
        // reopen must not wait for one; the copy reads what is left, then end of file.
        let (reader, mut writer) = std::io::pipe().unwrap();
        writer.write_all(b"left").unwrap();
        let child = Sleeper::spawn(Stdio::from(reader), Stdio::null());
        drop(writer);
        let mut got = Vec::new();
        File::from(child.copy(0).unwrap())
            .read_to_end(&mut got)
            .unwrap();
        assert_eq!(got, b"left");
    }

    #[test]
    fn reopens_dev_null_and_a_pty() {
        let child = Sleeper::spawn(Stdio::null(), Stdio::null());
        let null = child.copy(1).unwrap();
        File::from(null).write_all(b"gone").unwrap();

        // SAFETY: posix_openpt takes flags only and returns a new fd or -1.
        let master = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY) };
        assert!(master >= 0);
        // SAFETY: `master` was just opened and is owned here.
        let master = unsafe { OwnedFd::from_raw_fd(master) };
        // SAFETY: `master` is an open pty master.
        assert_eq!(unsafe { libc::grantpt(master.as_raw_fd()) }, 0);
        // SAFETY: as above.
        assert_eq!(unsafe { libc::unlockpt(master.as_raw_fd()) }, 0);
        let mut name = [0 as libc::c_char; 64];
        // SAFETY: `name` is writable for its whole length, which is what we pass.
        let named = unsafe { libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()) };
        assert_eq!(named, 0);
        // SAFETY: ptsname_r NUL-terminated `name`.
        let name = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) };
        let pts = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(name.to_str().unwrap())
            .unwrap();
        let child = Sleeper::spawn(Stdio::null(), Stdio::from(pts));
        let copy = child.copy(1).unwrap();
        assert_eq!(flags_of(&copy) & libc::O_ACCMODE, libc::O_RDWR);
        File::from(copy).write_all(b"tty\n").unwrap();
        let mut buf = [0u8; 16];
        let n = File::from(master).read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"tty"), "{:?}", &buf[..n]);
    }

    #[test]
    fn a_regular_file_keeps_its_offset_and_append_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        // Opened for writing, 6 bytes in: the copy continues at 6, not at 0.
        let mut file = File::create(&path).unwrap();
        file.write_all(b"first\n").unwrap();
        let child = Sleeper::spawn(Stdio::null(), Stdio::from(file.try_clone().unwrap()));
        let copy = child.copy(1).unwrap();
        assert_eq!(flags_of(&copy) & libc::O_ACCMODE, libc::O_WRONLY);
        assert_eq!(flags_of(&copy) & libc::O_APPEND, 0);
        File::from(copy).write_all(b"copy\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"first\ncopy\n");
        // The documented difference: the shared offset did not move.
        assert_eq!(file.stream_position().unwrap(), 6);
        drop(child);

        // O_APPEND is kept: writes land at the end, whatever the offset.
        let appending = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        let child = Sleeper::spawn(Stdio::null(), Stdio::from(appending));
        let copy = child.copy(1).unwrap();
        assert_ne!(flags_of(&copy) & libc::O_APPEND, 0);
        File::from(copy).write_all(b"appended\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"first\ncopy\nappended\n");
        drop(child);

        // Read-only, part-way through: the copy reads on from there.
        let mut reading = File::open(&path).unwrap();
        reading.seek(SeekFrom::Start(6)).unwrap();
        let child = Sleeper::spawn(Stdio::from(reading), Stdio::null());
        let copy = child.copy(0).unwrap();
        assert_eq!(flags_of(&copy) & libc::O_ACCMODE, libc::O_RDONLY);
        let mut rest = String::new();
        File::from(copy).read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "copy\nappended\n");
    }

    #[test]
    fn a_socket_is_a_clear_error_and_a_closed_fd_is_not_open() {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let child = Sleeper::spawn(Stdio::null(), Stdio::from(OwnedFd::from(theirs)));
        let err = child.copy(1).unwrap_err();
        assert!(matches!(err, CopyFdError::NotReopenable { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("fd 1 (socket:[") && text.contains("cannot be reopened through /proc"),
            "{text}"
        );
        drop(ours);
        // An anonymous inode (eventfd): no file behind it to open.
        // SAFETY: eventfd takes integers and returns a new fd or -1.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        assert!(efd >= 0);
        // SAFETY: just created, owned here.
        let efd = unsafe { OwnedFd::from_raw_fd(efd) };
        let child = Sleeper::spawn(Stdio::from(efd), Stdio::null());
        let err = child.copy(0).unwrap_err();
        assert!(matches!(err, CopyFdError::NotReopenable { .. }), "{err:?}");
        assert!(err.to_string().contains("anon_inode:"), "{err}");
        // A descriptor the child does not have.
        let err = child.copy(57).unwrap_err();
        assert!(err.is_not_open(), "{err:?}");
    }

    #[test]
    fn getfd_is_the_same_description_when_it_is_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = File::create(dir.path().join("f")).unwrap();
        file.write_all(b"abc").unwrap();
        let child = Sleeper::spawn(Stdio::null(), Stdio::from(file.try_clone().unwrap()));
        match copy_fd(FdHandoff::PidfdGetfd, &child.1, child.0.id(), 1) {
            Ok(copy) => {
                File::from(copy).write_all(b"def").unwrap();
                // Shared offset: ours moved too.
                assert_eq!(file.stream_position().unwrap(), 6);
            }
            Err(e) => eprintln!("skipped: pidfd_getfd unavailable here ({e})"),
        }
    }
}

//! Probes that change the calling process irreversibly (installing a seccomp filter,
//! setting NO_NEW_PRIVS, unsharing a namespace) run in a throwaway forked child.
//!
//! The caller may be multi-threaded, so between `fork` and `_exit` the child only makes
//! raw, async-signal-safe system calls: no allocation, no locks, no stdio. It reports
//! back through a pipe as a fixed array of `i32` (by convention `0` for success and an
//! errno value otherwise).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Runs `probe` in a forked child and returns the array it filled in.
///
/// `probe` must only make async-signal-safe calls (see the module docs); it is a plain
/// `fn`, so it cannot capture anything that would need allocation or locking.
pub(crate) fn run<const N: usize>(probe: fn(&mut [i32; N])) -> io::Result<[i32; N]> {
    let (read_end, write_end) = pipe()?;
    let pid = fork()?;
    if pid == 0 {
        let mut results = [0i32; N];
        probe(&mut results);
        let bytes = as_bytes(&results);
        // SAFETY: `bytes` points to `results`, alive for the call; the fd is our pipe's
        // write end, inherited open across fork. write(2) is async-signal-safe.
        let _ = unsafe { libc::write(write_end.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
        // SAFETY: _exit(2) is async-signal-safe and skips the parent's atexit handlers
        // and stdio buffers, which the child must not run or flush.
        unsafe { libc::_exit(0) }
    }
    drop(write_end);
    let mut buf = [0u8; 256];
    let want = N * std::mem::size_of::<i32>();
    let got = read_full(&read_end, &mut buf[..want.min(256)]);
    let status = waitpid(pid);
    let got = got?;
    status?;
    if got != want || want > 256 {
        return Err(io::Error::other(format!(
            "probe child reported {got} of {want} bytes"
        )));
    }
    let mut out = [0i32; N];
    for (i, slot) in out.iter_mut().enumerate() {
        let mut word = [0u8; 4];
        word.copy_from_slice(&buf[i * 4..i * 4 + 4]);
        *slot = i32::from_ne_bytes(word);
    }
    Ok(out)
}

fn as_bytes<const N: usize>(results: &[i32; N]) -> &[u8] {
    // SAFETY: i32 has no padding and every byte pattern is a valid u8; the slice covers
    // exactly the array and borrows it for the same lifetime.
    unsafe {
        std::slice::from_raw_parts(
            results.as_ptr().cast::<u8>(),
            std::mem::size_of_val(results),
        )
    }
}

/// The calling thread's errno, read without allocating (usable in a forked child).
pub(crate) fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// `pipe2(O_CLOEXEC)`: the child's report channel.
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` is a writable array of two ints, as pipe2(2) requires.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so fds[0] is open and owned by nobody else.
    let read_end = unsafe { OwnedFd::from_raw_fd(fds[0]) };
    // SAFETY: as above, for fds[1].
    let write_end = unsafe { OwnedFd::from_raw_fd(fds[1]) };
    Ok((read_end, write_end))
}

/// `fork(2)` ([`super::fork`]): returns 0 in the child, the child's pid in the parent.
pub(crate) fn fork() -> io::Result<libc::pid_t> {
    super::fork()
}

/// `waitpid(pid)`, retried on EINTR; a child that did not exit 0 is an error.
pub(crate) fn waitpid(pid: libc::pid_t) -> io::Result<()> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid int to write to; `pid` is our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
        if r == pid {
            break;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "probe child ended with wait status {status:#x}"
        )))
    }
}

fn read_full(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        let rest = &mut buf[got..];
        // SAFETY: `rest` is a writable buffer of `rest.len()` bytes; fd is open (owned).
        let n = unsafe { libc::read(fd.as_raw_fd(), rest.as_mut_ptr().cast(), rest.len()) };
        match n {
            0 => break,
            n if n > 0 => got += n.unsigned_abs(),
            _ => {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_reports_its_array() {
        fn probe(r: &mut [i32; 3]) {
            *r = [7, -1, 1 << 20];
        }
        assert_eq!(run(probe).unwrap(), [7, -1, 1 << 20]);
    }
}

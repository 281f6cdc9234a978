//! The user-notification listener: receive a paused exec, answer it.
//!
//! Raw ioctls rather than libseccomp's notify API: the exec path needs the exact errno of
//! each step (`ENOENT` when a notification was withdrawn or its task died, `EINTR`), must
//! not allocate per notification, and waits with `poll` so a session can stop its loop.
//!
//! Owns: the listener fd and the `SECCOMP_IOCTL_NOTIF_*` calls. Must never decide an
//! answer: it receives and sends what the supervisor decided.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::thread::JoinHandleExt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// `SECCOMP_IOW(4, __u64)`: `_IOW('!', 4, u64)` (not in the libc crate yet).
const SECCOMP_IOCTL_NOTIF_SET_FLAGS: libc::Ioctl = 0x4008_2104;
/// The only flag of `SECCOMP_IOCTL_NOTIF_SET_FLAGS`.
const SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP: libc::c_ulong = 1;

/// One paused `execve`/`execveat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notification {
    /// Cookie for the answer and for [`Listener::id_valid`].
    pub id: u64,
    /// Thread id of the caller, in the supervisor's pid namespace.
    pub pid: u32,
    /// Syscall number (native ABI: foreign ABIs are killed by the filter).
    pub nr: i32,
    /// `AUDIT_ARCH_*` of the call.
    pub arch: u32,
    /// The six syscall arguments.
    pub args: [u64; 6],
}

impl Notification {
    /// True for `execveat`, false for `execve`.
    pub fn is_execveat(&self) -> bool {
        i64::from(self.nr) == libc::SYS_execveat
    }
}

/// What waiting on the listener produced.
#[derive(Debug)]
pub enum Event {
    Notification(Notification),
    /// No process uses the filter any more: the session's tree is gone.
    Hangup,
    /// The stop descriptor became readable.
    Stopped,
}

/// What [`Listener::wait_any`] produced.
#[derive(Debug)]
pub enum Watched {
    Notification(Notification),
    /// The watched descriptor at this index became readable.
    Ready(usize),
    /// No process uses the filter any more.
    Hangup,
}

/// The listener fd returned by `seccomp(SECCOMP_FILTER_FLAG_NEW_LISTENER)`.
#[derive(Debug)]
pub struct Listener {
    fd: OwnedFd,
}

impl Listener {
    /// Takes ownership of a listener descriptor.
    pub fn from_fd(fd: OwnedFd) -> Self {
        Listener { fd }
    }

    /// Asks the kernel to hand the CPU straight across on each notification and answer
    /// (`SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP`, Linux 6.6): the paused caller and this
    /// listener's thread then run on one CPU in turn instead of waking each other on
    /// another (an idle vCPU's wake-up costs tens of microseconds). Returns false where the
    /// kernel lacks it; everything works the same, only slower.
    pub fn set_sync_wakeup(&self) -> bool {
        // SAFETY: the fd is a seccomp listener owned by self; the flags argument is passed
        // by value, no memory is shared with the kernel.
        let ret = unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                SECCOMP_IOCTL_NOTIF_SET_FLAGS,
                SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP,
            )
        };
        ret == 0
    }

    /// Waits for the next notification, the end of the tree, or `stop` becoming readable.
    pub fn wait(&self, stop: BorrowedFd<'_>) -> io::Result<Event> {
        loop {
            let mut fds = [
                libc::pollfd {
                    fd: self.fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: stop.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: `fds` is a valid array of two pollfd for the duration of the call.
            let ret = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
            if ret < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            if fds[1].revents != 0 {
                return Ok(Event::Stopped);
            }
            if fds[0].revents & libc::POLLIN != 0 {
                match self.recv() {
                    Ok(n) => return Ok(Event::Notification(n)),
                    // The caller died (or was signalled away) between poll and recv.
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            }
            if fds[0].revents & (libc::POLLHUP | libc::POLLERR) != 0 {
                return Ok(Event::Hangup);
            }
        }
    }

    /// No process uses the filter any more and no notification is pending (`POLLHUP`
    /// without `POLLIN`, looked at without waiting): nothing will ever arrive.
    pub fn orphaned(&self) -> bool {
        let mut fd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call; timeout 0.
        let ret = unsafe { libc::poll(&mut fd, 1, 0) };
        ret == 1 && fd.revents & libc::POLLIN == 0 && fd.revents & libc::POLLHUP != 0
    }

    /// Waits for the next notification, the end of the tree, or one of `watched` becoming
    /// readable (a pidfd: that process exited). `Ready(i)` names the first one ready.
    pub fn wait_any(&self, watched: &[BorrowedFd<'_>]) -> io::Result<Watched> {
        const MAX: usize = 4;
        let count = watched.len().min(MAX - 1);
        loop {
            let idle = libc::pollfd {
                fd: -1,
                events: 0,
                revents: 0,
            };
            let mut fds = [idle; MAX];
            fds[0] = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            for (slot, fd) in fds[1..].iter_mut().zip(watched) {
                *slot = libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
            }
            #[allow(clippy::cast_possible_truncation)] // at most MAX (4)
            let nfds = (count + 1) as libc::nfds_t;
            // SAFETY: `fds` is a valid array of at least `nfds` pollfd for the call.
            let ret = unsafe { libc::poll(fds.as_mut_ptr(), nfds, -1) };
            if ret < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            if fds[0].revents & libc::POLLIN != 0 {
                match self.recv() {
                    Ok(n) => return Ok(Watched::Notification(n)),
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            }
            if let Some(i) = fds[1..=count].iter().position(|f| f.revents != 0) {
                return Ok(Watched::Ready(i));
            }
            if fds[0].revents & (libc::POLLHUP | libc::POLLERR) != 0 {
                return Ok(Watched::Hangup);
            }
        }
    }

    /// Waits in `SECCOMP_IOCTL_NOTIF_RECV` itself: one syscall per notification instead of
    /// `poll` and `RECV`. Ends with [`Event::Stopped`] once `stopped` is set and an
    /// [`Interrupter`] has interrupted the call, or [`Event::Hangup`] when the tree is gone
    /// (newer kernels answer `RECV` with `ENOENT` then; older ones wait on, until
    /// interrupted).
    pub fn wait_blocking(&self, stopped: &AtomicBool) -> io::Result<Event> {
        loop {
            if stopped.load(Ordering::Acquire) {
                return Ok(Event::Stopped);
            }
            match self.recv() {
                Ok(n) => return Ok(Event::Notification(n)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // A withdrawn notification, no process left using the filter, or (seen on
                // 6.18) nothing at all: wait in poll, which only wakes for a pending
                // notification or the hang-up, rather than spin on RECV. The stop signal
                // interrupts poll too.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    if self.wait_readable()? {
                        return Ok(Event::Hangup);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits until a notification is pending (false) or no process uses the filter any
    /// more (true); a signal ends the wait early (false: the caller looks again).
    fn wait_readable(&self) -> io::Result<bool> {
        let mut fd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        let ready = unsafe { libc::poll(&mut fd, 1, -1) };
        if ready < 0 {
            let err = io::Error::last_os_error();
            return if err.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(err)
            };
        }
        Ok(fd.revents & libc::POLLIN == 0 && fd.revents & (libc::POLLHUP | libc::POLLERR) != 0)
    }

    /// `SECCOMP_IOCTL_NOTIF_RECV`; blocks until a notification is pending.
    pub fn recv(&self) -> io::Result<Notification> {
        // SAFETY: seccomp_notif is plain old data; the kernel requires it zeroed.
        let mut raw: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        // SAFETY: the fd is a seccomp listener owned by self; `raw` is a valid, writable
        // seccomp_notif that outlives the call.
        crate::cvt_int(unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_RECV,
                &mut raw,
            )
        })?;
        Ok(Notification {
            id: raw.id,
            pid: raw.pid,
            nr: raw.data.nr,
            arch: raw.data.arch,
            args: raw.data.args,
        })
    }

    /// True while the notification is still pending: its task has not died or been
    /// interrupted. Check it after reading the task's memory and before acting on it.
    pub fn id_valid(&self, id: u64) -> bool {
        let mut id = id;
        // SAFETY: the fd is a seccomp listener owned by self; `id` is a valid u64 that
        // outlives the call.
        let ret = unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_ID_VALID,
                &mut id,
            )
        };
        ret == 0
    }

    /// Let the syscall run as if there were no filter (`SECCOMP_USER_NOTIF_FLAG_CONTINUE`).
    /// Only for execs that stay inside the sandbox: the path may change after our check.
    pub fn respond_continue(&self, id: u64) -> io::Result<()> {
        // The flag is bit 0; the field is a u32.
        self.send(id, 0, 0, 1 << 0)
    }

    /// Fail the syscall with `errno`.
    pub fn respond_errno(&self, id: u64, errno: i32) -> io::Result<()> {
        self.send(id, 0, -errno, 0)
    }

    fn send(&self, id: u64, val: i64, error: i32, flags: u32) -> io::Result<()> {
        let mut resp = libc::seccomp_notif_resp {
            id,
            val,
            error,
            flags,
        };
        // SAFETY: the fd is a seccomp listener owned by self; `resp` is a valid
        // seccomp_notif_resp that outlives the call.
        crate::cvt_int(unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_SEND,
                &mut resp,
            )
        })?;
        Ok(())
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Interrupts a thread blocked in [`Listener::wait_blocking`]: a real-time signal with a
/// no-op handler installed without `SA_RESTART`, sent to that thread alone until it has
/// returned (a signal that lands just before the thread enters `RECV` would be lost, so it
/// is repeated).
#[derive(Debug, Clone, Copy)]
pub struct Interrupter {
    signal: libc::c_int,
}

extern "C" fn ignore_interrupt(_: libc::c_int) {}

impl Interrupter {
    /// Installs the handler (once per process). `None` if it cannot: then wait with
    /// [`Listener::wait`] and a stop descriptor instead.
    pub fn get() -> Option<Interrupter> {
        static INSTALLED: OnceLock<Option<libc::c_int>> = OnceLock::new();
        let signal = (*INSTALLED.get_or_init(|| {
            // Above the ones glibc and common runtimes use.
            let signal = libc::SIGRTMIN() + 7;
            if signal > libc::SIGRTMAX() {
                return None;
            }
            // SAFETY: sigaction is plain old data, zeroed then filled; the handler is an
            // extern "C" fn that does nothing (async-signal-safe).
            let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
            action.sa_sigaction = ignore_interrupt as extern "C" fn(libc::c_int) as usize;
            action.sa_flags = 0; // no SA_RESTART: RECV returns EINTR
            // SAFETY: `action.sa_mask` is a valid sigset to empty.
            unsafe { libc::sigemptyset(&mut action.sa_mask) };
            // SAFETY: valid sigaction pointer; the old action is not wanted.
            let ok = unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) } == 0;
            ok.then_some(signal)
        }))?;
        Some(Interrupter { signal })
    }

    /// Sets `stopped` and signals `thread` until it has returned (at most `limit`).
    pub fn stop(
        &self,
        thread: &std::thread::JoinHandle<()>,
        stopped: &AtomicBool,
        limit: Duration,
    ) {
        stopped.store(true, Ordering::Release);
        let deadline = Instant::now() + limit;
        while !thread.is_finished() && Instant::now() < deadline {
            // SAFETY: the pthread_t of a thread not yet joined (the handle is borrowed) is
            // valid; the signal's handler is installed.
            unsafe { libc::pthread_kill(thread.as_pthread_t(), self.signal) };
            std::thread::sleep(Duration::from_micros(500));
        }
    }
}

//! A PID namespace with its own `/proc` for a session's tree, made in the child before exec.
//!
//! Why: Landlock stops a sandboxed process from attaching to (ptrace, `/proc/PID/mem`) a
//! process outside its domain, but not from the READ-mode accesses: `/proc/PID/environ`,
//! `cmdline` and `maps` of every process of the same user (the agent's API keys live in
//! such environments). In a PID namespace of its own, with a `/proc` mounted for that
//! namespace, the tree sees only itself.
//!
//! Shape, all in the session's child (`crate::process::confined`; async-signal-safe only,
//! forks by raw `clone` so no libc fork handler runs with another thread's lock held):
//!
//! ```text
//! supervisor ── C  (the pid the supervisor waits for; outside the namespace)
//!                └─ I  (PID 1 of the namespace: mounts /proc, reaps every orphan)
//!                    └─ P  (PID 2: returns from the hook and execs the session's program)
//! ```
//!
//! - `C` ignores the signals a session is sent (they reach `P` through the process group,
//!   which all three share) and ends exactly as `P` did: `I` sends `P`'s raw wait status
//!   over a pipe and `C` exits with the same code or dies of the same signal.
//! - `I` is the namespace's init: orphans are re-parented to it and reaped at once; when
//!   `P` ends, `I` reports and exits, and the kernel kills whatever is left inside.
//!   Signals from outside do not reach it (an init has no default actions), and its copy
//!   of the supervisor's environment and arguments is wiped before anything can read it.
//! - Both die with their parent (`PR_SET_PDEATHSIG`), so a dead supervisor still takes
//!   the whole namespace with it.
//! - Both are copies of the supervisor: with a [`DropAll`] they empty every capability set
//!   as soon as their last privileged step is done (`C` after forking `I`, `I` after
//!   mounting `/proc` and forking `P`), so no process of the tree holds one. `P` drops its
//!   own later, after the steps that still need them (binds, Landlock).
//! - The same `unshare` makes the IPC, UTS and cgroup namespaces
//!   ([`super::ISOLATION`]), when asked: `C` has already joined the session's cgroup, which
//!   becomes the tree's cgroup root.
//!
//! Needs `CAP_SYS_ADMIN` (for `unshare(CLONE_NEWPID | CLONE_NEWNS)` and the mount), or,
//! without it, an unprivileged user namespace created in the same call
//! ([`Privilege::UserNamespace`]): the tree keeps its uid and gid (mapped one to one;
//! every other id shows as the overflow id, 65534), and gets the capabilities for the
//! namespace and the mount only until its program's exec. Callers probe for either first
//! (`kernel::detect`), and a session without both says so.
//!
//! Owns: the session's PID namespace (the double fork, the uid/gid maps, the `/proc` mount).
//! Must never decide whether a session gets one (the supervisor does, from `kernel::detect`).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::capabilities::DropAll;

/// Signals a session is sent as a group; `C` ignores them (`P` receives its own copy).
/// The job-control stops too: a stopped `C` would not end when `P` does.
const GROUP_SIGNALS: [libc::c_int; 9] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGTSTP,
    libc::SIGTTIN,
    libc::SIGTTOU,
];

/// How the namespaces are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privilege {
    /// The supervisor holds `CAP_SYS_ADMIN`.
    CapSysAdmin,
    /// A user namespace first, owning the others (unprivileged).
    UserNamespace,
}

/// Everything the child needs, prepared before fork.
#[derive(Debug)]
pub struct SessionPidNamespace {
    privilege: Privilege,
    /// `/proc/self/uid_map` and `gid_map` lines mapping our own ids, for
    /// [`Privilege::UserNamespace`].
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
    /// `I` writes `P`'s wait status here; `C` reads it. Both ends close on exec, so `P`'s
    /// program never holds them.
    status_read: OwnedFd,
    status_write: OwnedFd,
    /// The supervisor's argument and environment blocks (`/proc/self/stat` fields 48-51):
    /// `I` is a copy of the supervisor and wipes them.
    wipe: [(usize, usize); 2],
    /// Namespaces made in the same `unshare` besides PID and mount (and user).
    isolation: libc::c_int,
    /// `C` and `I` empty their capability sets once done with them.
    drop_caps: Option<DropAll>,
}

impl SessionPidNamespace {
    /// Prepares the status pipe and finds what `I` must wipe. `isolate`: make the IPC, UTS
    /// and cgroup namespaces in the same call. `drop_caps`: `C` and `I` empty their
    /// capability sets.
    pub fn new(
        privilege: Privilege,
        isolate: bool,
        drop_caps: Option<DropAll>,
    ) -> io::Result<SessionPidNamespace> {
        let mut fds = [0; 2];
        // SAFETY: `fds` is a valid array of two ints for the kernel to fill.
        crate::cvt_int(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
        // SAFETY: pipe2 succeeded: both fds are fresh and ours.
        let (status_read, status_write) = unsafe {
            (
                <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fds[0]),
                <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fds[1]),
            )
        };
        // SAFETY: geteuid/getegid cannot fail.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        Ok(SessionPidNamespace {
            privilege,
            uid_map: format!("{uid} {uid} 1\n").into_bytes(),
            gid_map: format!("{gid} {gid} 1\n").into_bytes(),
            status_read,
            status_write,
            wipe: own_arg_and_env_blocks()?,
            isolation: if isolate { super::ISOLATION } else { 0 },
            drop_caps,
        })
    }

    /// Child side (a confinement hook): returns only in `P`, inside the new namespace with
    /// its `/proc` mounted. `C` and `I` never return: they end with `_exit` or a signal.
    pub fn enter_in_child(&self) -> io::Result<()> {
        let mut flags = libc::CLONE_NEWPID | libc::CLONE_NEWNS | self.isolation;
        if self.privilege == Privilege::UserNamespace {
            // Created first, it owns the other two: its capabilities cover them.
            flags |= libc::CLONE_NEWUSER;
        }
        // SAFETY: unshare takes an integer flag set.
        crate::cvt_int(unsafe { libc::unshare(flags) })?;
        if self.privilege == Privilege::UserNamespace {
            write_file(c"/proc/self/setgroups", b"deny")?;
            write_file(c"/proc/self/uid_map", &self.uid_map)?;
            write_file(c"/proc/self/gid_map", &self.gid_map)?;
        }
        // Nothing mounted below propagates back to the host.
        super::make_mounts_private()?;
        let init = crate::process::fork()?;
        if init > 0 {
            self.drop_caps_or_die();
            self.mirror(init);
        }
        // I: PID 1 of the new namespace.
        die_with_parent()?;
        super::mount_proc()?;
        self.wipe_supervisor_strings();
        let program = crate::process::fork()?;
        if program > 0 {
            self.drop_caps_or_die();
            self.init(program);
        }
        // P: the session's program-to-be.
        die_with_parent()?;
        Ok(())
    }

    /// `C` or `I` after its last privileged step: empties its capability sets. A failed
    /// drop kills the process (and so, by `PDEATHSIG`, everything below it): the session
    /// then fails instead of running with a privileged process in its tree.
    fn drop_caps_or_die(&self) {
        if let Some(drop) = &self.drop_caps
            && drop.apply_in_child().is_err()
        {
            die_of(libc::SIGKILL);
        }
    }

    /// `C`: wait for `I`'s report and end the same way `P` did.
    fn mirror(&self, init: libc::pid_t) -> ! {
        let keep = self.status_read.as_raw_fd();
        close_all_but(keep);
        for sig in GROUP_SIGNALS {
            // SAFETY: signal(2) with SIG_IGN is async-signal-safe.
            unsafe { libc::signal(sig, libc::SIG_IGN) };
        }
        let mut status: libc::c_int = 0;
        let got = read_full(keep, &mut status);
        let mut ignored = 0;
        // SAFETY: waitpid on our own child, with a valid int to fill.
        while unsafe { libc::waitpid(init, &mut ignored, 0) } < 0 && errno() == libc::EINTR {}
        if !got {
            // I died without reporting (killed from outside): so does C.
            die_of(libc::SIGKILL);
        }
        if libc::WIFSIGNALED(status) {
            die_of(libc::WTERMSIG(status));
        }
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(libc::WEXITSTATUS(status)) }
    }

    /// `I`: reap everything; when `program` ends, report its status and exit (the kernel
    /// then kills the rest of the namespace).
    fn init(&self, program: libc::pid_t) -> ! {
        let keep = self.status_write.as_raw_fd();
        close_all_but(keep);
        loop {
            let mut status: libc::c_int = 0;
            // SAFETY: waitpid with a valid int to fill.
            let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
            if pid == program {
                let bytes = status.to_ne_bytes();
                // SAFETY: `bytes` is valid for its length; a pipe write of 4 bytes is
                // atomic.
                unsafe { libc::write(keep, bytes.as_ptr().cast(), bytes.len()) };
                // SAFETY: _exit is async-signal-safe.
                unsafe { libc::_exit(0) }
            }
            if pid < 0 && errno() != libc::EINTR {
                // ECHILD: the program is gone without a status for us; nothing to report.
                // SAFETY: _exit is async-signal-safe.
                unsafe { libc::_exit(0) }
            }
        }
    }

    /// Overwrites this copy's argument and environment strings, which `/proc/1/cmdline`
    /// and `/proc/1/environ` would show inside the namespace.
    fn wipe_supervisor_strings(&self) {
        for (start, end) in self.wipe {
            let mut at = start;
            while at < end {
                // SAFETY: [start, end) is this process's argument or environment block as
                // the kernel reports it (mapped, writable stack memory, copied on write
                // from the supervisor); nothing in this single-threaded child reads it.
                unsafe { std::ptr::write_volatile(at as *mut u8, 0) };
                at += 1;
            }
        }
    }
}

/// open/write/close of a /proc file with prepared bytes: async-signal-safe.
fn write_file(path: &std::ffi::CStr, bytes: &[u8]) -> io::Result<()> {
    // SAFETY: a valid NUL-terminated path.
    let fd =
        crate::cvt_int(unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) })?;
    // SAFETY: `bytes` is valid for its length; `fd` was just opened.
    let written = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
    let err = io::Error::last_os_error();
    // SAFETY: closing the fd opened above.
    unsafe { libc::close(fd) };
    if usize::try_from(written).ok() != Some(bytes.len()) {
        return Err(err);
    }
    Ok(())
}

/// Reads the argument and environment block addresses of this process (before fork).
fn own_arg_and_env_blocks() -> io::Result<[(usize, usize); 2]> {
    // Where the kernel put them at exec: fixed for the process's life (only
    // `PR_SET_MM`, which execgate never calls, moves them), so read once.
    static BLOCKS: std::sync::OnceLock<[(usize, usize); 2]> = std::sync::OnceLock::new();
    if let Some(blocks) = BLOCKS.get() {
        return Ok(*blocks);
    }
    let stat = crate::procfs::read_self_stat()?;
    // arg_start 48, arg_end 49, env_start 50, env_end 51.
    let field = |n: usize| -> io::Result<usize> {
        crate::procfs::stat_field(&stat, n)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| io::Error::other(format!("no field {n} in /proc/self/stat")))
    };
    let blocks = [(field(48)?, field(49)?), (field(50)?, field(51)?)];
    Ok(*BLOCKS.get_or_init(|| blocks))
}

/// `PR_SET_PDEATHSIG` (reset by fork). No `getppid` check as after the first fork: inside
/// the namespace `I`'s parent has no pid (0), and `C` only ends after `I` has.
fn die_with_parent() -> io::Result<()> {
    // SAFETY: prctl with integer arguments is async-signal-safe.
    crate::cvt_int(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) })?;
    Ok(())
}

/// Closes every descriptor but `keep`: the session's stdio, the listener channel and
/// the spawn's report pipe belong to `P` alone (a pipe's reader sees its end only when
/// every copy is closed).
fn close_all_but(keep: libc::c_int) {
    let keep = u32::try_from(keep).unwrap_or(u32::MAX);
    // SAFETY: close_range takes integers; the fds are ours.
    unsafe {
        if keep > 0 {
            libc::syscall(libc::SYS_close_range, 0u32, keep - 1, 0u32);
        }
        libc::syscall(
            libc::SYS_close_range,
            keep.saturating_add(1),
            u32::MAX,
            0u32,
        );
    }
}

/// Reads one int; false if the writer went away first.
fn read_full(fd: libc::c_int, out: &mut libc::c_int) -> bool {
    let mut buf = [0u8; 4];
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: the buffer tail is valid for writing `buf.len() - got` bytes.
        let n = unsafe { libc::read(fd, buf[got..].as_mut_ptr().cast(), buf.len() - got) };
        if n > 0 {
            got += usize::try_from(n).unwrap_or(0);
        } else if n < 0 && errno() == libc::EINTR {
            continue;
        } else {
            return false;
        }
    }
    *out = libc::c_int::from_ne_bytes(buf);
    true
}

/// Ends this process by `sig`, without a core file, as the program it mirrors did.
fn die_of(sig: libc::c_int) -> ! {
    let none = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: integer arguments and a valid rlimit; all async-signal-safe.
    unsafe {
        libc::setrlimit(libc::RLIMIT_CORE, &none);
        libc::signal(sig, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::kill(libc::getpid(), sig);
        // A signal whose default is not to terminate cannot be what ended the program.
        libc::_exit(128 + sig)
    }
}

fn errno() -> libc::c_int {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_its_own_argument_and_environment_blocks() {
        let [(arg_start, arg_end), (env_start, env_end)] = own_arg_and_env_blocks().unwrap();
        assert!(
            arg_start > 0 && arg_start < arg_end,
            "{arg_start:#x}..{arg_end:#x}"
        );
        assert!(env_start >= arg_end && env_start <= env_end);
        // The first argument really is there: the test binary's path.
        let first = std::env::args_os().next().unwrap();
        let len = first.len().min(arg_end - arg_start);
        // SAFETY: reading our own argument block, as the kernel reports it.
        let bytes = unsafe { std::slice::from_raw_parts(arg_start as *const u8, len) };
        assert_eq!(
            bytes,
            &std::os::unix::ffi::OsStrExt::as_bytes(first.as_os_str())[..len]
        );
    }
}

//! What runs in the child between fork and exec: confinement, then the listener.
//!
//! The supervisor is multi-threaded, so after fork only async-signal-safe calls are
//! allowed: everything here was prepared before the fork (the BPF program, the socket, the
//! sandbox hooks' data), and the child only issues syscalls. Order matters: the cgroup
//! first (at the clone, [`confined`]), process group and parent-death signal, then the
//! sandbox steps (rlimits, namespaces, Landlock), then `PR_SET_NO_NEW_PRIVS`, and last the filter with its listener, whose fd
//! goes to the supervisor over a socketpair. The program's own exec is then the first
//! notification.
//!
//! Owns: every fork and clone of execgate (`fork`, a raw clone; [`confined`]'s fork (or,
//! for danger-full-access, `CLONE_VM | CLONE_VFORK`) into the session's cgroup for a
//! session's first process; [`outside`]'s
//! `CLONE_VM | CLONE_VFORK` for escalated copies) and everything that runs between fork and
//! exec (the [`ChildHook`]s, `confine_in_child`, the throwaway probe child in [`throwaway`]), plus
//! [`ExitStatus`], how a process ended. Must never allocate, lock or log in a forked child:
//! only async-signal-safe raw syscalls on data prepared before fork.

pub mod confined;
pub mod outside;
pub mod throwaway;

/// How a process ended: the one exit-status type of execgate (a reaped child, a session,
/// an escalated copy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitStatus {
    Exited(i32),
    Signaled(i32),
}

impl ExitStatus {
    /// The shell's convention: the exit code, or 128 + the signal number.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Exited(code) => code,
            ExitStatus::Signaled(sig) => 128 + sig,
        }
    }
}

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use crate::seccomp::filter::BpfProgram;

/// `sizeof(int)` as the cmsg macros take it.
#[allow(clippy::cast_possible_truncation)] // 4: an int
const FD_SIZE: u32 = std::mem::size_of::<RawFd>() as u32;

/// A sandbox step run in the child before no-new-privs and the filter. It must be
/// async-signal-safe: no allocation, no locks, only syscalls on prepared data.
pub type ChildHook = Box<dyn FnMut() -> io::Result<()> + Send + Sync>;

/// Everything the child needs, prepared before fork.
pub struct Confinement {
    /// The session filter (see [`crate::seccomp::filter`]).
    pub filter: BpfProgram,
    /// Install with `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV` (5.19+): once the supervisor
    /// has received a notification, ordinary signals no longer withdraw it.
    pub wait_killable: bool,
    /// The child's end of a `SOCK_SEQPACKET` socketpair; the listener fd is sent over it.
    /// `None`: the filter has no notification (the patched-shell backend) and is
    /// installed without a listener.
    pub listener_channel: Option<OwnedFd>,
    /// The supervisor's pid: if it died before `PR_SET_PDEATHSIG` took effect, give up.
    pub supervisor_pid: libc::pid_t,
    /// Start a new session and process group (the session's), so it can be signalled as
    /// one and has no controlling terminal.
    pub new_process_group: bool,
    /// Sandbox steps (rlimits, cgroup, Landlock), run in order.
    pub hooks: Vec<ChildHook>,
}

impl std::fmt::Debug for Confinement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Confinement")
            .field("filter", &self.filter)
            .field("wait_killable", &self.wait_killable)
            .field("supervisor_pid", &self.supervisor_pid)
            .field("hooks", &self.hooks.len())
            .finish_non_exhaustive()
    }
}

/// The child's confinement, between its fork and its exec ([`confined::spawn_confined`]):
/// every inherited descriptor close-on-exec, its own session and process group if asked,
/// the parent-death signal, the hooks in order, no-new-privs, and last the filter, whose
/// listener goes to the supervisor.
///
/// Only async-signal-safe calls (setsid, prctl, getppid, seccomp, sendmsg, close, and
/// hooks bound by the same contract) on data prepared before the fork; allocates nothing.
fn confine_in_child(c: &mut Confinement, max_fd: libc::c_uint) -> io::Result<()> {
    mark_inherited_fds_cloexec(max_fd);
    if c.new_process_group {
        // A session of its own (and so a process group: pgid == pid, as setpgid(0, 0)
        // made it), without a controlling terminal: `/dev/tty` is not the person's.
        // SAFETY: setsid is async-signal-safe; a fresh child leads no group, so it
        // cannot fail with EPERM.
        crate::cvt_int(unsafe { libc::setsid() })?;
    }
    // SAFETY: prctl with integer arguments is async-signal-safe.
    crate::cvt_int(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) })?;
    // SAFETY: getppid is async-signal-safe.
    if unsafe { libc::getppid() } != c.supervisor_pid {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    for hook in &mut c.hooks {
        hook()?;
    }
    // SAFETY: prctl with integer arguments is async-signal-safe.
    crate::cvt_int(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })?;
    let Some(channel) = &c.listener_channel else {
        return install_plain(&c.filter);
    };
    let listener = install_listener(&c.filter, c.wait_killable)?;
    let sent = send_fd(channel.as_raw_fd(), listener);
    // SAFETY: `listener` is ours; the supervisor holds its own copy once sent.
    unsafe { libc::close(listener) };
    sent
}

/// A [`ChildHook`] that makes `fd` the child's descriptor `target`, inheritable across
/// exec (the patched-shell backend's rendezvous socket). Run it last: `target` may be
/// the number of a descriptor an earlier step still uses.
pub fn inherit_fd_hook(fd: OwnedFd, target: RawFd) -> ChildHook {
    Box::new(move || {
        let raw = fd.as_raw_fd();
        if raw == target {
            // SAFETY: fcntl with integer arguments is async-signal-safe; `raw` is open
            // (owned by this closure).
            crate::cvt_int(unsafe { libc::fcntl(raw, libc::F_SETFD, 0) })?;
        } else {
            // SAFETY: dup2 is async-signal-safe; `raw` is open (owned by this closure),
            // and the new descriptor is created without FD_CLOEXEC.
            crate::cvt_int(unsafe { libc::dup2(raw, target) })?;
        }
        Ok(())
    })
}

/// The soft `RLIMIT_NOFILE`: no descriptor is numbered at or above it. Read before fork.
fn open_file_limit() -> libc::c_uint {
    // SAFETY: rlimit is plain old data, filled by getrlimit.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: `lim` is a valid rlimit for the kernel to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1024;
    }
    libc::c_uint::try_from(lim.rlim_cur.min(1 << 20)).unwrap_or(1024)
}

/// Whatever the supervisor itself inherited (or holds) beyond 0/1/2 must not reach the
/// program: mark it close-on-exec. Not closed outright, because the steps before exec
/// still use a few of them (the listener channel, the cgroup file).
fn mark_inherited_fds_cloexec(max_fd: libc::c_uint) {
    // close_range(3, ~0, CLOSE_RANGE_CLOEXEC): 5.11+.
    // SAFETY: integer arguments only; async-signal-safe.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if ret == 0 {
        return;
    }
    for fd in 3..max_fd {
        let Ok(fd) = libc::c_int::try_from(fd) else {
            break;
        };
        // SAFETY: fcntl on any integer is safe; EBADF for numbers that are not open.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
}

/// A [`ChildHook`] for an escalated copy: installs `filter` with a listener and sends the
/// listener over `channel`, so the supervisor decides every exec of the copy's tree (its
/// own first). Without `CAP_SYS_ADMIN` a filter needs `PR_SET_NO_NEW_PRIVS` first
/// (`no_new_privs`); with it, setuid programs in that tree keep working. Run it last.
pub fn exec_listener_hook(
    filter: BpfProgram,
    wait_killable: bool,
    channel: OwnedFd,
    no_new_privs: bool,
) -> ChildHook {
    Box::new(move || {
        if no_new_privs {
            // SAFETY: prctl with integer arguments is async-signal-safe.
            crate::cvt_int(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })?;
        }
        let listener = install_listener(&filter, wait_killable)?;
        let sent = send_fd(channel.as_raw_fd(), listener);
        // SAFETY: `listener` is ours; the supervisor holds its own copy once sent.
        unsafe { libc::close(listener) };
        sent
    })
}

/// `seccomp(SECCOMP_SET_MODE_FILTER, NEW_LISTENER [| WAIT_KILLABLE_RECV], prog)`.
fn install_listener(filter: &BpfProgram, wait_killable: bool) -> io::Result<RawFd> {
    let prog = filter.as_fprog();
    let mut flags = libc::SECCOMP_FILTER_FLAG_NEW_LISTENER;
    if wait_killable {
        flags |= libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV;
    }
    // SAFETY: `prog` points into `filter`, alive for the call; the kernel copies it.
    let fd = crate::cvt(unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &prog as *const libc::sock_fprog,
        )
    })?;
    Ok(RawFd::try_from(fd).unwrap_or(-1))
}

/// `seccomp(SECCOMP_SET_MODE_FILTER, 0, prog)`: a filter without a listener.
fn install_plain(filter: &BpfProgram) -> io::Result<()> {
    let prog = filter.as_fprog();
    // SAFETY: `prog` points into `filter`, alive for the call; the kernel copies it.
    crate::cvt(unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &prog as *const libc::sock_fprog,
        )
    })?;
    Ok(())
}

/// Calls `f` with a `msghdr` of one one-byte `iovec` and room for one `SCM_RIGHTS` fd, its
/// buffers in this stack frame: no allocation ([`send_fd`] runs between fork and exec).
fn with_one_fd_msghdr<R>(f: impl FnOnce(&mut libc::msghdr) -> R) -> R {
    // Room for one cmsghdr carrying one int, 8-byte aligned.
    #[repr(C, align(8))]
    struct Cmsg([u8; 32]);
    let mut cbuf = Cmsg([0; 32]);
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // SAFETY: msghdr is plain old data; every field used is set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.0.as_mut_ptr().cast();
    msg.msg_controllen = cbuf.0.len() as _;
    f(&mut msg)
}

/// Sends one fd with `SCM_RIGHTS`, building the control message on the stack.
pub fn send_fd(socket: RawFd, fd: RawFd) -> io::Result<()> {
    with_one_fd_msghdr(|msg| {
        // SAFETY: CMSG_SPACE is a pure computation.
        msg.msg_controllen = unsafe { libc::CMSG_SPACE(FD_SIZE) } as _;
        // SAFETY: msg_control points at a 32-byte buffer, large enough for one cmsghdr
        // with one int (CMSG_SPACE(4) == 24 <= 32), so CMSG_FIRSTHDR is non-null and
        // CMSG_DATA in bounds.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(FD_SIZE) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
        }
        // SAFETY: `msg` and everything it points to live across the call.
        crate::cvt(unsafe { libc::sendmsg(socket, msg, libc::MSG_NOSIGNAL) } as libc::c_long)?;
        Ok(())
    })
}

/// Receives one fd sent by [`send_fd`]. `Ok(None)`: the other end closed without sending
/// (the child failed before installing its filter).
pub fn recv_fd(socket: RawFd) -> io::Result<Option<OwnedFd>> {
    with_one_fd_msghdr(|msg| {
        let n = loop {
            // SAFETY: `msg` and the buffers it points to live across the call.
            let n = unsafe { libc::recvmsg(socket, &mut *msg, libc::MSG_CMSG_CLOEXEC) };
            if n >= 0 {
                break n;
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        };
        if n == 0 {
            return Ok(None);
        }
        // SAFETY: recvmsg filled msg_control/msg_controllen; CMSG_FIRSTHDR checks the length.
        let cmsg = unsafe { libc::CMSG_FIRSTHDR(msg) };
        if cmsg.is_null() {
            return Err(io::Error::other("listener message carried no descriptor"));
        }
        // SAFETY: cmsg is non-null and within the control buffer, as checked by CMSG_FIRSTHDR.
        let (level, kind) = unsafe { ((*cmsg).cmsg_level, (*cmsg).cmsg_type) };
        if level != libc::SOL_SOCKET || kind != libc::SCM_RIGHTS {
            return Err(io::Error::other("listener message carried no descriptor"));
        }
        // SAFETY: an SCM_RIGHTS message carries at least one int at CMSG_DATA.
        let fd = unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>()) };
        // SAFETY: the kernel installed this descriptor for us; nothing else owns it.
        Ok(Some(unsafe {
            <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd)
        }))
    })
}

/// fork(2) as a raw `clone`, the one fork of the crate (the session's double fork, the
/// detection probes, the watchdog): libc's fork runs its atfork handlers and takes allocator
/// locks that another thread of the supervisor may have held at the first fork.
pub(crate) fn fork() -> io::Result<libc::pid_t> {
    // SAFETY: clone with only SIGCHLD and no new stack is fork: the child continues on a
    // copy of this stack; both sides only make raw syscalls afterwards.
    let pid = crate::cvt(unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::c_ulong::try_from(libc::SIGCHLD).unwrap_or(17),
            0usize,
            0usize,
            0usize,
            0usize,
        )
    })?;
    Ok(libc::pid_t::try_from(pid).unwrap_or(-1))
}

/// [`fork`] straight into the cgroup v2 directory `cgroup`: `clone3` with
/// `CLONE_INTO_CGROUP` (Linux 5.7) and no new stack, so the child continues on a copy of
/// this one, as after fork. An error for which [`outside::clone3_refused`] holds means
/// `clone3` itself was refused: fork and join by a write instead.
#[cfg(target_arch = "x86_64")]
pub(crate) fn fork_into_cgroup(cgroup: RawFd) -> io::Result<libc::pid_t> {
    if outside::CLONE3_REFUSED.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(io::Error::from_raw_os_error(libc::ENOSYS));
    }
    let args = outside::CloneArgs {
        flags: outside::CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: u64::try_from(cgroup).unwrap_or(u64::MAX),
        ..outside::CloneArgs::default()
    };
    // SAFETY: clone3 without CLONE_VM and with no stack is fork: the child continues on a
    // copy of this stack and memory; `args` is a valid `clone_args` of the size given.
    let pid = crate::cvt(unsafe {
        libc::syscall(
            libc::SYS_clone3,
            std::ptr::from_ref(&args),
            std::mem::size_of::<outside::CloneArgs>(),
        )
    })?;
    Ok(libc::pid_t::try_from(pid).unwrap_or(-1))
}

/// Elsewhere the child joins the v2 cgroup by a write.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn fork_into_cgroup(_cgroup: RawFd) -> io::Result<libc::pid_t> {
    Err(io::Error::from_raw_os_error(libc::ENOSYS))
}

/// What the spawn tests of [`confined`] and [`outside`] share.
#[cfg(test)]
pub(crate) mod test_support {
    use std::ffi::CString;
    use std::os::fd::OwnedFd;
    use std::sync::Arc;

    pub(crate) fn cstrings(items: &[&str]) -> Vec<CString> {
        items.iter().map(|s| CString::new(*s).unwrap()).collect()
    }

    /// Waits for our child `pid` (reaped once) and returns its raw status.
    pub(crate) fn wait(pid: libc::pid_t) -> i32 {
        let mut status = 0;
        // SAFETY: our child, reaped once.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        status
    }

    /// What a child joins the cgroup v2 directory `dir` by (no v1 hierarchy).
    pub(crate) fn join(dir: &std::path::Path) -> super::outside::JoinCgroup {
        let open = |path: &std::path::Path, write: bool| {
            Arc::new(OwnedFd::from(
                std::fs::OpenOptions::new()
                    .read(!write)
                    .write(write)
                    .open(path)
                    .unwrap(),
            ))
        };
        super::outside::JoinCgroup {
            dir: open(dir, false),
            procs: open(&dir.join("cgroup.procs"), true),
            v1_tasks: Vec::new(),
        }
    }

    /// The cgroup2 mount and this process's own v2 cgroup, where a child cgroup can be made.
    pub(crate) fn scratch_cgroup(prefix: &str) -> Option<std::path::PathBuf> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        let mount = mountinfo
            .lines()
            .find(|l| l.contains(" - cgroup2 "))?
            .split_whitespace()
            .nth(4)?
            .to_owned();
        let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let own = own.lines().find_map(|l| l.strip_prefix("0::"))?.to_owned();
        let dir = std::path::PathBuf::from(format!(
            "{mount}{}/{prefix}-{}",
            own.trim_end_matches('/'),
            std::process::id()
        ));
        std::fs::create_dir(&dir).ok()?;
        Some(dir)
    }
}

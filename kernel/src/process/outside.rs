//! Starting a program outside the sandbox (an escalated copy) the cheapest way the kernel
//! offers: `clone(CLONE_VM | CLONE_VFORK)`, as `posix_spawn` does, instead of a fork of the
//! whole supervisor.
//!
//! A fork copies the supervisor's page tables (a multi-threaded runtime, tens of MB
//! mapped), faults pages copy-on-write on both sides, and the copy's exec then tears all of
//! it down again; on this project's benchmark machine that was the largest share of an
//! escalated exec's cost. With `CLONE_VM` the child runs on a small stack of its own in the
//! supervisor's memory while the calling thread waits (`CLONE_VFORK`) until the child has
//! exec'd or exited, so nothing is copied.
//!
//! Why not `posix_spawn`: the copy must take steps no spawn attribute offers (the parent-
//! death signal, joining the session's cgroup and its namespace, installing its own exec
//! listener and sending it to the supervisor). Why not `std::process::Command`: with a
//! `pre_exec` hook it forks.
//!
//! What the child may do is stricter than after a fork: it shares the supervisor's memory,
//! so it must not only avoid allocation and locks, it must also not write to anything but
//! its own stack and [`ChildArgs::error`]. Signal handlers would run on shared memory, so
//! every handled signal is reset to its default before the mask is lifted (as glibc's
//! `posix_spawn` does). Thread-local storage is the calling thread's, which waits.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use super::{ChildHook, mark_inherited_fds_cloexec, open_file_limit};

/// A program to start outside the sandbox.
pub struct Outside {
    /// What to exec (for a checked file: `/proc/self/fd/N` of its descriptor).
    pub path: CString,
    pub argv: Vec<CString>,
    /// `NAME=value` entries.
    pub env: Vec<CString>,
    pub cwd: CString,
    /// The child's fds 0, 1 and 2 (`None`: `/dev/null`).
    pub stdio: [Option<OwnedFd>; 3],
    /// The cgroups the child joins before anything else of its own runs.
    pub cgroup: Option<JoinCgroup>,
    /// Steps run last before exec, bound by the rules above (no allocation, no locks, no
    /// writes outside the child's own stack).
    pub hooks: Vec<ChildHook>,
}

/// A session's cgroups, for a child to join: opened once, shared by every child.
///
/// A write to a `cgroup.procs` file takes the kernel's global threadgroup lock for writing,
/// which waits for an RCU grace period when the lock was idle: tens to hundreds of
/// microseconds per child on a small VM. So the v2 cgroup is joined by the clone itself
/// (`clone3` with `CLONE_INTO_CGROUP`, Linux 5.7, x86_64), and v1 hierarchies through
/// their `tasks` file (the child's one thread, no global lock); the `cgroup.procs` write
/// stays the fallback where `clone3` is refused (older kernels, container profiles).
#[derive(Debug, Clone)]
pub struct JoinCgroup {
    /// The cgroup v2 directory.
    pub dir: Arc<OwnedFd>,
    /// Its `cgroup.procs`, open for writing.
    pub procs: Arc<OwnedFd>,
    /// `tasks` of the v1 cgroups that hold limits the v2 one cannot, open for writing.
    pub v1_tasks: Vec<Arc<OwnedFd>>,
}

impl std::fmt::Debug for Outside {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outside")
            .field("path", &self.path)
            .field("argv", &self.argv)
            .field("cwd", &self.cwd)
            .field("hooks", &self.hooks.len())
            .finish_non_exhaustive()
    }
}

/// A started program: its pid and a pidfd for it. The caller reaps it.
#[derive(Debug)]
pub struct Started {
    pub pid: libc::pid_t,
    pub pidfd: crate::pidfd::PidFd,
}

/// Stack of the child until its exec: the hooks only make syscalls on prepared data.
const CHILD_STACK: usize = 128 * 1024;

/// Everything the child reads, prepared by the parent; [`ChildArgs::error`] is the one
/// thing it writes.
struct ChildArgs<'a> {
    path: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    cwd: *const libc::c_char,
    stdio: [RawFd; 3],
    hooks: &'a mut [ChildHook],
    /// `cgroup.procs` to write "0" to, -1 when the clone joined the cgroup already.
    cgroup_procs: RawFd,
    /// v1 `tasks` files to write "0" to.
    v1_tasks: &'a [RawFd],
    /// A cgroup namespace of its own, rooted at the cgroups just joined.
    cgroup_namespace: bool,
    supervisor_pid: libc::pid_t,
    max_fd: libc::c_uint,
    /// The errno of the step that failed; 0 when the child reached its exec.
    error: AtomicI32,
}

/// Starts `program` and returns once it has exec'd. The child dies with the supervisor
/// (`PR_SET_PDEATHSIG`, which fires when the *calling thread* ends: call this from a
/// thread that outlives the child, e.g. one that reaps it before it ends).
pub fn spawn_outside(program: Outside) -> io::Result<Started> {
    let Outside {
        path,
        argv,
        env,
        cwd,
        stdio,
        cgroup,
        mut hooks,
    } = program;
    let v1_tasks: Vec<RawFd> = cgroup
        .iter()
        .flat_map(|c| c.v1_tasks.iter().map(|fd| fd.as_raw_fd()))
        .collect();
    let argv_ptrs = null_terminated(&argv);
    let env_ptrs = null_terminated(&env);
    // Opened only for a stream the caller did not have (an escalated copy usually gets
    // all three): one open and one close fewer per copy.
    let mut dev_null: Option<std::fs::File> = None;
    // The sources must not be numbered 0-2 themselves, or one dup2 could overwrite
    // another's source.
    let mut sources: Vec<OwnedFd> = Vec::with_capacity(3);
    for fd in stdio {
        let fd = match fd {
            Some(fd) => fd,
            None => {
                let null = match dev_null.take() {
                    Some(null) => null,
                    None => std::fs::OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open("/dev/null")?,
                };
                let fd = OwnedFd::from(null.try_clone()?);
                dev_null = Some(null);
                fd
            }
        };
        sources.push(above_stdio(fd)?);
    }
    let stdio = [
        sources[0].as_raw_fd(),
        sources[1].as_raw_fd(),
        sources[2].as_raw_fd(),
    ];
    let mut args = ChildArgs {
        path: path.as_ptr(),
        argv: argv_ptrs.as_ptr(),
        envp: env_ptrs.as_ptr(),
        cwd: cwd.as_ptr(),
        stdio,
        hooks: &mut hooks,
        cgroup_procs: -1,
        v1_tasks: &v1_tasks,
        cgroup_namespace: cgroup.is_some(),
        // SAFETY: getpid has no preconditions.
        supervisor_pid: unsafe { libc::getpid() },
        max_fd: open_file_limit(),
        error: AtomicI32::new(0),
    };
    let procs = cgroup.as_ref().map(|c| c.procs.as_raw_fd());
    let cloned = vfork(
        &mut args,
        child_main,
        cgroup.as_ref().map(|c| c.dir.as_raw_fd()),
        // The child writes its `cgroup.procs` instead.
        |args| args.cgroup_procs = procs.unwrap_or(-1),
    )?;
    let (pid, pidfd) = (cloned.pid, crate::pidfd::PidFd::from_owned(cloned.pidfd));
    match args.error.load(Ordering::SeqCst) {
        0 => Ok(Started { pid, pidfd }),
        errno => {
            // It exited without exec: reap it, and say why.
            let mut status = 0;
            // SAFETY: `pid` is our child, not yet reaped; `status` is a valid int.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            Err(io::Error::from_raw_os_error(errno))
        }
    }
}

/// A child cloned with `CLONE_VM | CLONE_VFORK`: it has exec'd or exited by now.
pub(super) struct Vforked {
    pub(super) pid: libc::pid_t,
    pub(super) pidfd: OwnedFd,
    /// The clone itself put it in the cgroup v2 directory given (`CLONE_INTO_CGROUP`).
    pub(super) joined_at_clone: bool,
}

/// Runs `entry(args)` in a child that shares this process's memory until it execs or
/// exits (`CLONE_VM | CLONE_VFORK`, as `posix_spawn` does), on this thread's kept stack,
/// with every signal blocked across the clone (the child must reset handled signals to
/// their defaults before it lifts the mask: a handler would run on shared memory). In
/// `cgroup` (a v2 directory) from the clone where `clone3` allows; where it is refused,
/// `refused(args)` runs first and the child is cloned where this process is.
///
/// `entry` must never return (exec or `_exit`) and must write nothing but its own stack
/// and what `args` lets it (atomics); it only makes syscalls on prepared data.
pub(super) fn vfork<A>(
    args: &mut A,
    entry: extern "C" fn(*mut libc::c_void) -> libc::c_int,
    cgroup: Option<RawFd>,
    refused: impl FnOnce(&mut A),
) -> io::Result<Vforked> {
    let stack = KeptStack::take()?;
    let mut pidfd: libc::c_int = -1;
    let _blocked = BlockedSignals::all()?;
    let mut joined_at_clone = false;
    let mut pid = None;
    if let Some(dir) = cgroup {
        let arg = std::ptr::from_mut(args).cast::<libc::c_void>();
        match clone_into_cgroup(&stack, entry, arg, dir, &mut pidfd) {
            Ok(child) => {
                pid = Some(child);
                joined_at_clone = true;
            }
            Err(err) if !clone3_refused(&err) => return Err(err),
            Err(_) => refused(args),
        }
    }
    let pid = match pid {
        Some(pid) => pid,
        None => {
            let flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD | libc::SIGCHLD;
            // SAFETY: `entry` runs on `stack` (ours, mapped until this function returns),
            // reads `args`, which outlives the call because CLONE_VFORK keeps this thread
            // waiting until the child has exec'd or exited, and writes only its own stack
            // and what `args` allows (see above). All signals are blocked across the clone,
            // so no handler of the supervisor runs on the child's stack before the child
            // resets them. CLONE_PIDFD stores the pidfd in `pidfd` (the parent-tid
            // argument).
            let pid = unsafe {
                libc::clone(
                    entry,
                    stack.top(),
                    flags,
                    std::ptr::from_mut(args).cast(),
                    &mut pidfd as *mut libc::c_int,
                )
            };
            if pid < 0 {
                return Err(io::Error::last_os_error());
            }
            pid
        }
    };
    Ok(Vforked {
        pid,
        // SAFETY: CLONE_PIDFD gave us this descriptor; nothing else owns it.
        pidfd: unsafe { OwnedFd::from_raw_fd(pidfd) },
        joined_at_clone,
    })
}

/// The child: reset signals, set up fds, cwd and the parent-death signal, run the hooks,
/// exec. Returns only by `_exit`.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the parent's `ChildArgs`, alive while the parent waits (CLONE_VFORK).
    // Only `error` (atomic) is written through it; the hooks are called, which mutate
    // nothing but the child's own kernel state (fd table, credentials, filters).
    let args = unsafe { &mut *arg.cast::<ChildArgs<'_>>() };
    let errno = match child_steps(args) {
        Ok(()) => libc::EINVAL,
        Err(err) => err.raw_os_error().unwrap_or(libc::EINVAL),
    };
    args.error.store(errno, Ordering::SeqCst);
    // SAFETY: _exit is async-signal-safe and never returns.
    unsafe { libc::_exit(127) }
}

/// Everything up to the exec; returns only on failure (or, `Ok`, if exec returned
/// without an error, which it cannot).
fn child_steps(args: &mut ChildArgs<'_>) -> io::Result<()> {
    reset_signal_handlers();
    // SAFETY: prctl with integer arguments.
    crate::cvt_int(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) })?;
    // SAFETY: getppid has no preconditions.
    if unsafe { libc::getppid() } != args.supervisor_pid {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    // A session of its own, without a controlling terminal: the copy runs outside the
    // sandbox but must not reach the person's terminal through `/dev/tty` (its stdio are
    // the caller's: the session's own terminal, a pipe or a file).
    // SAFETY: setsid is async-signal-safe; the fresh child leads no process group, so it
    // cannot fail with EPERM.
    crate::cvt_int(unsafe { libc::setsid() })?;
    dup_onto_stdio(args.stdio)?;
    mark_inherited_fds_cloexec(args.max_fd);
    // SAFETY: `cwd` is a NUL-terminated string alive while the parent waits.
    crate::cvt_int(unsafe { libc::chdir(args.cwd) })?;
    join_cgroups(args)?;
    for hook in args.hooks.iter_mut() {
        hook()?;
    }
    // SAFETY: an empty set, filled by sigemptyset; handlers are all default or ignored
    // by now, so lifting the mask runs no code of the supervisor.
    unsafe {
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    }
    // SAFETY: path, argv and envp are NUL-terminated strings and NULL-terminated arrays
    // alive while the parent waits.
    crate::cvt_int(unsafe { libc::execve(args.path, args.argv, args.envp) })?;
    Ok(())
}

/// The child's cgroups: v2 (unless the clone joined it), then each v1 hierarchy's
/// `tasks`, then a cgroup namespace rooted there, so the copy and its tree cannot move
/// themselves out (a write to the root `cgroup.procs` fails). The namespace is best
/// effort: without CAP_SYS_ADMIN there is none, and no permission to move out either.
fn join_cgroups(args: &ChildArgs<'_>) -> io::Result<()> {
    join_by_writes(args.cgroup_procs, args.v1_tasks)?;
    if args.cgroup_namespace {
        // SAFETY: unshare with an integer flag is async-signal-safe.
        unsafe { libc::unshare(libc::CLONE_NEWCGROUP) };
    }
    Ok(())
}

/// A child's cgroup joins by write: "0" (itself) to `procs` (the v2 `cgroup.procs`, -1
/// when the clone joined it already), then to each v1 `tasks` file. Async-signal-safe.
pub(super) fn join_by_writes(procs: RawFd, v1_tasks: &[RawFd]) -> io::Result<()> {
    let this_process = b"0";
    let targets = (procs >= 0)
        .then_some(procs)
        .into_iter()
        .chain(v1_tasks.iter().copied());
    for fd in targets {
        // SAFETY: write of a 1-byte buffer on a descriptor the parent keeps open;
        // async-signal-safe.
        let written = unsafe { libc::write(fd, this_process.as_ptr().cast(), 1) };
        if written < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// `sources` made the child's fds 0, 1 and 2 (each a descriptor numbered 3 or above, see
/// [`above_stdio`], so no `dup2` overwrites another's source). Async-signal-safe.
pub(super) fn dup_onto_stdio(sources: [RawFd; 3]) -> io::Result<()> {
    for (target, source) in (0..).zip(sources) {
        // SAFETY: dup2 on descriptors open in the child; the copy is made without
        // FD_CLOEXEC.
        crate::cvt_int(unsafe { libc::dup2(source, target) })?;
    }
    Ok(())
}

/// `clone3` was refused as a call (not by the new process's limits): too old a kernel
/// for `clone3` or `CLONE_INTO_CGROUP`, a seccomp profile that blocks it, or no `clone3`
/// here at all. Remembered: later spawns go straight to `clone`.
pub(super) fn clone3_refused(err: &io::Error) -> bool {
    let refused = matches!(
        err.raw_os_error(),
        Some(libc::ENOSYS | libc::EINVAL | libc::E2BIG | libc::EPERM | libc::EOPNOTSUPP)
    );
    if refused {
        CLONE3_REFUSED.store(true, Ordering::Relaxed);
    }
    refused
}

pub(super) static CLONE3_REFUSED: AtomicBool = AtomicBool::new(false);

/// `struct clone_args` (Linux 5.7 layout, with `set_tid` and `cgroup`).
#[cfg(target_arch = "x86_64")]
#[repr(C)]
#[derive(Default)]
pub(super) struct CloneArgs {
    pub(super) flags: u64,
    pub(super) pidfd: u64,
    pub(super) child_tid: u64,
    pub(super) parent_tid: u64,
    pub(super) exit_signal: u64,
    pub(super) stack: u64,
    pub(super) stack_size: u64,
    pub(super) tls: u64,
    pub(super) set_tid: u64,
    pub(super) set_tid_size: u64,
    pub(super) cgroup: u64,
}

/// The clone of [`vfork`], straight into the cgroup v2 directory `cgroup`.
#[cfg(target_arch = "x86_64")]
fn clone_into_cgroup(
    stack: &Stack,
    entry: extern "C" fn(*mut libc::c_void) -> libc::c_int,
    arg: *mut libc::c_void,
    cgroup: RawFd,
    pidfd: &mut libc::c_int,
) -> io::Result<libc::pid_t> {
    if CLONE3_REFUSED.load(Ordering::Relaxed) {
        return Err(io::Error::from_raw_os_error(libc::ENOSYS));
    }
    let flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD;
    let clone_args = CloneArgs {
        flags: u64::try_from(flags).unwrap_or(0) | CLONE_INTO_CGROUP,
        pidfd: std::ptr::from_mut(pidfd) as u64,
        exit_signal: libc::SIGCHLD as u64,
        stack: stack.base as u64,
        stack_size: stack.len as u64,
        cgroup: u64::try_from(cgroup).unwrap_or(u64::MAX),
        ..CloneArgs::default()
    };
    let ret: i64;
    // SAFETY: clone3 with CLONE_VM | CLONE_VFORK: the child starts on `stack` (ours, mapped
    // until `vfork` returns; clone3 sets its stack pointer to the top, 16-byte aligned as a
    // page boundary is), calls `entry(arg)`, which never returns (it execs or `_exit`s),
    // and exits if it did. `rcx` and `r11` are clobbered by `syscall`;
    // `r12` and `r13` hold the entry and its argument across it, in both processes. The
    // parent continues after the label once the child has exec'd or exited (CLONE_VFORK),
    // so `arg` and `clone_args` outlive the child's use of them, exactly as with `clone`
    // in `vfork`; the child writes only its own stack and what `arg` allows.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "mov rdi, r12",
            "call r13",
            "mov edi, eax",
            "mov eax, 60",
            "syscall",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") std::ptr::from_ref(&clone_args),
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("r12") arg,
            in("r13") entry,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    if ret < 0 {
        return Err(io::Error::from_raw_os_error(
            i32::try_from(-ret).unwrap_or(libc::EINVAL),
        ));
    }
    Ok(libc::pid_t::try_from(ret).unwrap_or(-1))
}

/// Elsewhere the v2 cgroup is joined by the child's write.
#[cfg(not(target_arch = "x86_64"))]
fn clone_into_cgroup(
    _stack: &Stack,
    _entry: extern "C" fn(*mut libc::c_void) -> libc::c_int,
    _arg: *mut libc::c_void,
    _cgroup: RawFd,
    _pidfd: &mut libc::c_int,
) -> io::Result<libc::pid_t> {
    Err(io::Error::from_raw_os_error(libc::ENOSYS))
}

/// `CLONE_INTO_CGROUP` (Linux 5.7), a `clone3`-only flag.
#[cfg(target_arch = "x86_64")]
pub(super) const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Every signal with a handler back to its default, and `SIGPIPE` too (Rust programs
/// ignore it; the program should not inherit that). Ignored signals stay ignored, as
/// across any exec.
pub(super) fn reset_signal_handlers() {
    for signal in 1..=libc::SIGRTMAX() {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        // SAFETY: sigaction is plain old data; the kernel fills `old`.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: reading the disposition of a valid signal number.
        if unsafe { libc::sigaction(signal, std::ptr::null(), &mut old) } != 0 {
            continue;
        }
        let handled = old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != libc::SIG_IGN;
        if handled || signal == libc::SIGPIPE {
            // SAFETY: sigaction is plain old data; SIG_DFL with an empty mask.
            let mut default: libc::sigaction = unsafe { std::mem::zeroed() };
            default.sa_sigaction = libc::SIG_DFL;
            // SAFETY: setting a valid signal's disposition to its default. Without
            // CLONE_SIGHAND the child has its own copy of the handler table.
            unsafe { libc::sigaction(signal, &default, std::ptr::null_mut()) };
        }
    }
}

/// Pointers to `strings`, NULL-terminated, as execve takes them.
pub(super) fn null_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// `fd` itself, or a close-on-exec duplicate numbered 3 or above.
pub(super) fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) on an open descriptor we own.
    let dup = crate::cvt_int(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) })?;
    // SAFETY: the kernel just created `dup` for us.
    Ok(unsafe { OwnedFd::from_raw_fd(dup) })
}

thread_local! {
    /// The calling thread's child stack, kept from one spawn to the next (an escalation
    /// thread starts one copy after another): a fresh mapping costs an `mmap`, an
    /// `mprotect` and page faults, and its `munmap` a TLB flush on every CPU the
    /// supervisor's threads run on, an interrupt to each on a VM.
    static KEPT_STACK: std::cell::RefCell<Option<Stack>> = const { std::cell::RefCell::new(None) };
}

/// A [`Stack`] taken from this thread's [`KEPT_STACK`] (or new), given back when dropped.
/// Dropped only once the child is done with it: `spawn_outside` returns after the child
/// exec'd or exited (`CLONE_VFORK`).
struct KeptStack(Option<Stack>);

impl KeptStack {
    fn take() -> io::Result<KeptStack> {
        let kept = KEPT_STACK.with(|k| k.borrow_mut().take());
        Ok(KeptStack(Some(match kept {
            Some(stack) => stack,
            None => Stack::new(CHILD_STACK)?,
        })))
    }
}

impl std::ops::Deref for KeptStack {
    type Target = Stack;
    fn deref(&self) -> &Stack {
        // Some until dropped.
        self.0.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for KeptStack {
    fn drop(&mut self) {
        let stack = self.0.take();
        // At thread exit the slot may be gone already: then the stack is simply unmapped.
        let _ = KEPT_STACK.try_with(|k| *k.borrow_mut() = stack);
    }
}

/// The child's stack: an anonymous mapping with a guard page below it.
struct Stack {
    base: *mut libc::c_void,
    len: usize,
}

impl Stack {
    fn new(size: usize) -> io::Result<Stack> {
        let guard = page_size();
        let len = size + guard;
        // SAFETY: a fresh anonymous private mapping; no existing memory is touched.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let stack = Stack { base, len };
        // SAFETY: the lowest page of our own mapping becomes the guard.
        crate::cvt_int(unsafe { libc::mprotect(base, guard, libc::PROT_NONE) })?;
        Ok(stack)
    }

    /// The highest address (stacks grow down on every architecture we build for).
    fn top(&self) -> *mut libc::c_void {
        // SAFETY: one past the end of our own mapping, as clone expects.
        unsafe { self.base.cast::<u8>().add(self.len).cast() }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: our own mapping, no longer used: the child has exec'd or exited.
        unsafe { libc::munmap(self.base, self.len) };
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096)
}

/// Every signal blocked on this thread until dropped.
struct BlockedSignals {
    old: libc::sigset_t,
}

impl BlockedSignals {
    fn all() -> io::Result<BlockedSignals> {
        // SAFETY: sigset_t is plain old data, filled by sigfillset / the kernel.
        let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: valid sigset_t pointers for the calls.
        let ret = unsafe {
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old)
        };
        if ret != 0 {
            return Err(io::Error::from_raw_os_error(ret));
        }
        Ok(BlockedSignals { old })
    }
}

impl Drop for BlockedSignals {
    fn drop(&mut self) {
        // SAFETY: restoring the mask saved by `all`.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::test_support::{self, cstrings};
    use std::io::Read;

    /// `argv` run from `path` in `cwd`, with no environment, stdio or hooks.
    fn program(path: &str, argv: &[&str], cwd: &str) -> Outside {
        Outside {
            path: CString::new(path).unwrap(),
            argv: cstrings(argv),
            env: Vec::new(),
            cwd: CString::new(cwd).unwrap(),
            stdio: [None, None, None],
            cgroup: None,
            hooks: Vec::new(),
        }
    }

    fn wait(started: &Started) -> i32 {
        test_support::wait(started.pid)
    }

    #[test]
    fn runs_the_program_on_the_given_stdout_in_the_given_cwd_with_only_the_given_env() {
        let (mut read, write) = std::io::pipe().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let started = spawn_outside(Outside {
            path: CString::new("/bin/sh").unwrap(),
            argv: cstrings(&[
                "sh",
                "-c",
                "pwd; echo \"$ONLY:$HOME\"; sed -n 's/^SigIgn:\\t//p' /proc/$$/status",
            ]),
            env: cstrings(&["ONLY=yes"]),
            cwd: CString::new(dir.path().to_str().unwrap()).unwrap(),
            stdio: [None, Some(OwnedFd::from(write)), None],
            cgroup: None,
            hooks: Vec::new(),
        })
        .unwrap();
        let mut out = String::new();
        read.read_to_string(&mut out).unwrap();
        assert_eq!(wait(&started), 0);
        let dir = std::fs::canonicalize(dir.path()).unwrap();
        let (head, ignored) = out.rsplit_once("yes:\n").unwrap();
        assert_eq!(head, format!("{}\n", dir.display()));
        // SIGPIPE is the default again (this test binary, like the supervisor, ignores it).
        let ignored = u64::from_str_radix(ignored.trim(), 16).unwrap();
        assert_eq!(ignored & (1 << (libc::SIGPIPE - 1)), 0, "{out}");
    }

    #[test]
    fn a_failed_step_is_the_error_and_the_child_is_reaped() {
        let err = spawn_outside(program("/nonexistent/program", &["program"], "/")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
        let err = spawn_outside(program("/bin/true", &["true"], "/nonexistent-cwd")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
        let hook: ChildHook = Box::new(|| Err(io::Error::from_raw_os_error(libc::EPERM)));
        let err = spawn_outside(Outside {
            hooks: vec![hook],
            ..program("/bin/true", &["true"], "/")
        })
        .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPERM));
    }

    #[test]
    fn joins_the_given_cgroup_at_the_clone_and_by_the_fallback_write() {
        let Some(dir) = test_support::scratch_cgroup("outside-test") else {
            eprintln!("SKIP: no cgroup2 directory can be made here (needs root and cgroup2)");
            return;
        };
        let mut seen = Vec::new();
        for refused in [false, true] {
            // `true`: as where clone3 is refused, the child writes `cgroup.procs` itself.
            CLONE3_REFUSED.store(refused, Ordering::Relaxed);
            let started = spawn_outside(Outside {
                cgroup: Some(test_support::join(&dir)),
                ..program("/bin/sleep", &["sleep", "30"], "/")
            })
            .unwrap();
            let cgroup = std::fs::read_to_string(format!("/proc/{}/cgroup", started.pid));
            let member = std::fs::read_to_string(dir.join("cgroup.procs"));
            started.pidfd.send_signal(libc::SIGKILL).unwrap();
            wait(&started);
            seen.push((refused, cgroup, member, started.pid));
        }
        std::fs::remove_dir(&dir).unwrap();
        for (refused, cgroup, member, pid) in seen {
            let cgroup = cgroup.unwrap();
            let leaf = dir.file_name().unwrap().to_str().unwrap();
            assert!(
                cgroup
                    .lines()
                    .any(|l| l.starts_with("0::") && l.ends_with(leaf)),
                "clone3 refused: {refused}: not in {}: {cgroup}",
                dir.display()
            );
            assert!(
                member.unwrap().lines().any(|l| l == pid.to_string()),
                "clone3 refused: {refused}"
            );
        }
    }

    #[test]
    fn the_exit_status_is_the_programs() {
        let started = spawn_outside(program("/bin/sh", &["sh", "-c", "exit 42"], "/")).unwrap();
        let status = wait(&started);
        assert!(libc::WIFEXITED(status));
        assert_eq!(libc::WEXITSTATUS(status), 42);
    }
}

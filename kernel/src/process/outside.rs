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
use std::sync::atomic::{AtomicI32, Ordering};

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
    /// Steps run last before exec, bound by the rules above (no allocation, no locks, no
    /// writes outside the child's own stack).
    pub hooks: Vec<ChildHook>,
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
        mut hooks,
    } = program;
    let argv_ptrs = null_terminated(&argv);
    let env_ptrs = null_terminated(&env);
    let dev_null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    // The sources must not be numbered 0-2 themselves, or one dup2 could overwrite
    // another's source.
    let mut sources: Vec<OwnedFd> = Vec::with_capacity(3);
    for fd in stdio {
        let fd = match fd {
            Some(fd) => fd,
            None => OwnedFd::from(dev_null.try_clone()?),
        };
        sources.push(above_stdio(fd)?);
    }
    let stdio = [
        sources[0].as_raw_fd(),
        sources[1].as_raw_fd(),
        sources[2].as_raw_fd(),
    ];
    let args = ChildArgs {
        path: path.as_ptr(),
        argv: argv_ptrs.as_ptr(),
        envp: env_ptrs.as_ptr(),
        cwd: cwd.as_ptr(),
        stdio,
        hooks: &mut hooks,
        // SAFETY: getpid has no preconditions.
        supervisor_pid: unsafe { libc::getpid() },
        max_fd: open_file_limit(),
        error: AtomicI32::new(0),
    };
    let stack = Stack::new(CHILD_STACK)?;
    let mut pidfd: libc::c_int = -1;
    let pid = {
        let _blocked = BlockedSignals::all()?;
        let flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD | libc::SIGCHLD;
        // SAFETY: `child_main` runs on `stack` (ours, mapped until this function returns),
        // reads only `args`, which outlives the call because CLONE_VFORK keeps this thread
        // waiting until the child has exec'd or exited, and writes only its own stack and
        // `args.error` (atomic). All signals are blocked across the clone, so no handler of
        // the supervisor runs on the child's stack before the child resets them.
        // CLONE_PIDFD stores the pidfd in `pidfd` (the parent-tid argument).
        unsafe {
            libc::clone(
                child_main,
                stack.top(),
                flags,
                std::ptr::from_ref(&args).cast_mut().cast(),
                &mut pidfd as *mut libc::c_int,
            )
        }
    };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: CLONE_PIDFD gave us this descriptor; nothing else owns it.
    let pidfd = crate::pidfd::PidFd::from_owned(unsafe { OwnedFd::from_raw_fd(pidfd) });
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
    for (target, &source) in args.stdio.iter().enumerate() {
        let target = RawFd::try_from(target).unwrap_or(0);
        // SAFETY: dup2 on descriptors open in the child (prepared by the parent, all >= 3);
        // the copy is made without FD_CLOEXEC.
        crate::cvt_int(unsafe { libc::dup2(source, target) })?;
    }
    mark_inherited_fds_cloexec(args.max_fd);
    // SAFETY: `cwd` is a NUL-terminated string alive while the parent waits.
    crate::cvt_int(unsafe { libc::chdir(args.cwd) })?;
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

/// Every signal with a handler back to its default, and `SIGPIPE` too (Rust programs
/// ignore it; the program should not inherit that). Ignored signals stay ignored, as
/// across any exec.
fn reset_signal_handlers() {
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
fn null_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// `fd` itself, or a close-on-exec duplicate numbered 3 or above.
fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) on an open descriptor we own.
    let dup = crate::cvt_int(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) })?;
    // SAFETY: the kernel just created `dup` for us.
    Ok(unsafe { OwnedFd::from_raw_fd(dup) })
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
    use std::io::Read;

    fn cstrings(items: &[&str]) -> Vec<CString> {
        items.iter().map(|s| CString::new(*s).unwrap()).collect()
    }

    /// `argv` run from `path` in `cwd`, with no environment, stdio or hooks.
    fn program(path: &str, argv: &[&str], cwd: &str) -> Outside {
        Outside {
            path: CString::new(path).unwrap(),
            argv: cstrings(argv),
            env: Vec::new(),
            cwd: CString::new(cwd).unwrap(),
            stdio: [None, None, None],
            hooks: Vec::new(),
        }
    }

    fn wait(started: &Started) -> i32 {
        let mut status = 0;
        // SAFETY: our child, reaped once.
        unsafe { libc::waitpid(started.pid, &mut status, 0) };
        status
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
    fn the_exit_status_is_the_programs() {
        let started = spawn_outside(program("/bin/sh", &["sh", "-c", "exit 42"], "/")).unwrap();
        let status = wait(&started);
        assert!(libc::WIFEXITED(status));
        assert_eq!(libc::WEXITSTATUS(status), 42);
    }
}

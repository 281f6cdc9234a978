//! Starting a session's first process: forked straight into the session's cgroup, then
//! confined ([`super::Confinement`]) and exec'd.
//!
//! Why not `std::process::Command`: its fork leaves the child to join the session's cgroup
//! by writing `cgroup.procs`, and that write takes the kernel's global threadgroup lock for
//! writing. When nothing has written one for a while, that lock first waits for an RCU
//! grace period: 5 to 15 ms on this project's benchmark VM, paid by every session that
//! starts after the agent paused to think. `clone3(CLONE_INTO_CGROUP)` (Linux 5.7) puts the
//! child in the cgroup as it is made, under the read side of that lock, and a v1 hierarchy
//! is joined through its `tasks` file (one thread moved: no global lock). Where `clone3`
//! is refused (older kernels, container profiles that block it) the child is forked as
//! before and writes `cgroup.procs`.
//!
//! The clone copies the supervisor's memory, as fork does ([`Memory::Copied`]), where a
//! step forks processes that never exec (the session's PID namespace, whose init and its
//! parent live on). Where every step is a bare syscall (danger-full-access) the child
//! shares it until its exec instead ([`Memory::Shared`]: `CLONE_VM | CLONE_VFORK`, as an
//! escalated copy in [`super::outside`]): no page tables copied, no copy-on-write faults
//! left in the supervisor, nothing torn down at the exec; 0.45 ms of a 3.2 ms `true`
//! call on this project's VM. Either way the child's rules are a forked child's:
//! async-signal-safe calls only, on data prepared before the clone, no allocation, no
//! locks; sharing, it also writes no memory but its own stack. Its exec (or the errno of
//! the step that failed) is reported over a close-on-exec pipe, as
//! `std::process::Command` does.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::outside::JoinCgroup;
use super::{Confinement, confine_in_child, open_file_limit};

/// The program a session starts, prepared before the clone.
#[derive(Debug, Clone)]
pub struct Program {
    /// What to exec: a path, not searched for.
    pub path: CString,
    /// Its arguments, `argv[0]` first (as the caller wants it seen, not necessarily `path`).
    pub argv: Vec<CString>,
    /// Its whole environment, `NAME=value` entries.
    pub env: Vec<CString>,
    /// Its working directory.
    pub cwd: CString,
}

/// The child's fds 0, 1 and 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildStdio {
    /// The supervisor's own.
    Inherit,
    /// `/dev/null` for stdin, a pipe each for stdout and stderr.
    Piped,
}

/// How the child holds the supervisor's memory until its exec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Memory {
    /// A copy, as after fork: always right, and needed when a step forks processes that
    /// never exec (the session's PID namespace).
    Copied,
    /// Shared (`CLONE_VM | CLONE_VFORK`, as `posix_spawn` does; the spawning thread waits
    /// until the exec): no page tables copied, no copy-on-write faults left in the
    /// supervisor, no copy torn down at the exec. Only when every step of the confinement
    /// writes nothing but the child's kernel state (no memory of the supervisor, no
    /// allocation) and none forks.
    Shared,
}

/// A started session process: the caller reaps it.
#[derive(Debug)]
pub struct Spawned {
    pub pid: libc::pid_t,
    /// The read ends of its stdout and stderr ([`ChildStdio::Piped`]).
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    /// Whether the clone itself put it in the cgroup v2 directory (`CLONE_INTO_CGROUP`);
    /// `false` where it joined by writing `cgroup.procs`, or no cgroup was given.
    pub joined_at_clone: bool,
    /// A pidfd for it, where the clone made one ([`Memory::Shared`]).
    pub pidfd: Option<crate::pidfd::PidFd>,
}

/// Everything the child reads, prepared before the clone (a copy of it is the child's).
struct ChildSteps<'a> {
    program: &'a Program,
    argv: &'a [*const libc::c_char],
    envp: &'a [*const libc::c_char],
    stdio: Option<[RawFd; 3]>,
    /// `cgroup.procs` to write "0" to, -1 when the clone joined the cgroup already.
    cgroup_procs: RawFd,
    /// v1 `tasks` files to write "0" to.
    v1_tasks: &'a [RawFd],
    report: RawFd,
    max_fd: libc::c_uint,
}

/// Starts `program` in `cgroup`, confined by `confinement`, and returns once it has
/// exec'd (its first exec may be stopped by the filter it installed: a notification
/// thread must be answering before this is called) or failed before its exec.
///
/// The child dies with the calling *thread* (`PR_SET_PDEATHSIG`): call this from a thread
/// that lives as long as the session.
pub fn spawn_confined(
    program: &Program,
    stdio: ChildStdio,
    cgroup: Option<&JoinCgroup>,
    mut confinement: Confinement,
    memory: Memory,
) -> io::Result<Spawned> {
    let argv = super::outside::null_terminated(&program.argv);
    let envp = super::outside::null_terminated(&program.env);
    let v1_tasks: Vec<RawFd> = cgroup
        .iter()
        .flat_map(|c| c.v1_tasks.iter().map(|fd| fd.as_raw_fd()))
        .collect();
    let (sources, stdout, stderr) = match stdio {
        ChildStdio::Inherit => (None, None, None),
        ChildStdio::Piped => {
            let null = std::fs::OpenOptions::new().read(true).open("/dev/null")?;
            let (out_read, out_write) = pipe()?;
            let (err_read, err_write) = pipe()?;
            let sources = [
                super::outside::above_stdio(OwnedFd::from(null))?,
                super::outside::above_stdio(out_write)?,
                super::outside::above_stdio(err_write)?,
            ];
            (Some(sources), Some(out_read), Some(err_read))
        }
    };
    let (report_read, report_write) = pipe()?;
    let mut steps = ChildSteps {
        program,
        argv: &argv,
        envp: &envp,
        stdio: sources
            .as_ref()
            .map(|s| [s[0].as_raw_fd(), s[1].as_raw_fd(), s[2].as_raw_fd()]),
        cgroup_procs: -1,
        v1_tasks: &v1_tasks,
        report: report_write.as_raw_fd(),
        max_fd: open_file_limit(),
    };
    let (pid, joined_at_clone, pidfd) = match memory {
        Memory::Copied => {
            let (pid, joined_at_clone) = fork(&mut steps, cgroup)?;
            if pid == 0 {
                child(&mut steps, &mut confinement);
            }
            (pid, joined_at_clone, None)
        }
        Memory::Shared => {
            let procs = cgroup.map(|c| c.procs.as_raw_fd());
            let mut args = SharedArgs {
                steps: &mut steps,
                confinement: &mut confinement,
            };
            let cloned = super::outside::vfork(
                &mut args,
                shared_child_main,
                cgroup.map(|c| c.dir.as_raw_fd()),
                // The child writes its `cgroup.procs` instead.
                |args| args.steps.cgroup_procs = procs.unwrap_or(-1),
            )?;
            let pidfd = crate::pidfd::PidFd::from_owned(cloned.pidfd);
            (cloned.pid, cloned.joined_at_clone, Some(pidfd))
        }
    };
    // The parent's copies of the child's ends: the report pipe reads end-of-file once
    // the child's exec closed the last write end.
    drop(report_write);
    drop(sources);
    match read_report(&report_read) {
        Ok(None) => Ok(Spawned {
            pid,
            stdout,
            stderr,
            joined_at_clone,
            pidfd,
        }),
        Ok(Some(errno)) => {
            reap(pid);
            Err(io::Error::from_raw_os_error(errno))
        }
        Err(err) => {
            // SAFETY: kill of our own child, not yet reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            reap(pid);
            Err(err)
        }
    }
}

/// A fork of the supervisor, into the session's v2 cgroup where `clone3` allows (else the
/// child's first step writes `cgroup.procs`): the pid (0 in the child) and whether the
/// clone joined the cgroup.
fn fork(
    steps: &mut ChildSteps<'_>,
    cgroup: Option<&JoinCgroup>,
) -> io::Result<(libc::pid_t, bool)> {
    if let Some(cgroup) = cgroup {
        match super::fork_into_cgroup(cgroup.dir.as_raw_fd()) {
            Ok(pid) => return Ok((pid, true)),
            Err(err) if !super::outside::clone3_refused(&err) => return Err(err),
            // The child writes its `cgroup.procs` instead.
            Err(_) => steps.cgroup_procs = cgroup.procs.as_raw_fd(),
        }
    }
    Ok((super::fork()?, false))
}

/// What a [`Memory::Shared`] child reads (in the supervisor's memory).
struct SharedArgs<'a, 'b> {
    steps: &'a mut ChildSteps<'b>,
    confinement: &'a mut Confinement,
}

/// The [`Memory::Shared`] child: every handled signal back to its default first (a
/// handler would run on the supervisor's memory; all are blocked until then), then
/// [`child`].
extern "C" fn shared_child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the parent's `SharedArgs`, alive while the parent waits
    // (CLONE_VFORK); the steps write nothing through it.
    let args = unsafe { &mut *arg.cast::<SharedArgs<'_, '_>>() };
    super::outside::reset_signal_handlers();
    child(args.steps, args.confinement)
}

/// The child, up to its exec; never returns. Only async-signal-safe calls.
fn child(steps: &mut ChildSteps<'_>, confinement: &mut Confinement) -> ! {
    let errno = match child_steps(steps, confinement) {
        Ok(()) => libc::EINVAL,
        Err(err) => err.raw_os_error().unwrap_or(libc::EINVAL),
    };
    let bytes = errno.to_ne_bytes();
    // SAFETY: a 4-byte write to the report pipe (atomic below PIPE_BUF), then _exit; both
    // async-signal-safe.
    unsafe {
        libc::write(steps.report, bytes.as_ptr().cast(), bytes.len());
        libc::_exit(127)
    }
}

fn child_steps(steps: &mut ChildSteps<'_>, confinement: &mut Confinement) -> io::Result<()> {
    // 1. The session's cgroups first, so everything the child becomes is inside them.
    super::outside::join_by_writes(steps.cgroup_procs, steps.v1_tasks)?;
    if let Some(stdio) = steps.stdio {
        super::outside::dup_onto_stdio(stdio)?;
    }
    // SAFETY: `cwd` is a NUL-terminated string in this process's copy of the parent's
    // memory.
    crate::cvt_int(unsafe { libc::chdir(steps.program.cwd.as_ptr()) })?;
    // Rust ignores SIGPIPE; the program must not inherit that (exec keeps an ignored
    // signal ignored). Handled signals go back to their defaults at the exec itself.
    // SAFETY: signal(2) with SIG_DFL is async-signal-safe.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    confine_in_child(confinement, steps.max_fd)?;
    // The program starts with no signal blocked, whatever the spawning thread had. The raw
    // call: libc's keeps its own internal signals (32, 33) as they were.
    let none: u64 = 0;
    // SAFETY: rt_sigprocmask with a valid 8-byte set (the kernel's sigset size here).
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            std::ptr::from_ref(&none),
            std::ptr::null_mut::<u64>(),
            std::mem::size_of::<u64>(),
        )
    };
    // SAFETY: path, argv and envp are NUL-terminated strings and NULL-terminated arrays in
    // this process's copy of the parent's memory.
    crate::cvt_int(unsafe {
        libc::execve(
            steps.program.path.as_ptr(),
            steps.argv.as_ptr(),
            steps.envp.as_ptr(),
        )
    })?;
    Ok(())
}

/// The child's report: `None` once its exec closed the pipe, else the errno it sent.
fn read_report(report: &OwnedFd) -> io::Result<Option<i32>> {
    let mut bytes = [0u8; 4];
    loop {
        // SAFETY: a read into a 4-byte buffer we own.
        let n = unsafe { libc::read(report.as_raw_fd(), bytes.as_mut_ptr().cast(), 4) };
        match n {
            0 => return Ok(None),
            4 => return Ok(Some(i32::from_ne_bytes(bytes))),
            n if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) => {}
            n if n < 0 => return Err(io::Error::last_os_error()),
            _ => return Err(io::Error::other("a short report from the session's child")),
        }
    }
}

fn reap(pid: libc::pid_t) {
    let mut status = 0;
    // SAFETY: `pid` is our child, not yet reaped; `status` is a valid int.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0
        && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
    {}
}

/// A close-on-exec pipe: (read end, write end).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (read, write) = std::io::pipe()?;
    Ok((OwnedFd::from(read), OwnedFd::from(write)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::test_support::{self, cstrings, wait};
    use std::io::Read;
    use std::sync::atomic::Ordering;

    use crate::seccomp::filter::{FilterOptions, build};

    fn program(path: &str, argv: &[&str], cwd: &str) -> Program {
        Program {
            path: CString::new(path).unwrap(),
            argv: cstrings(argv),
            env: Vec::new(),
            cwd: CString::new(cwd).unwrap(),
        }
    }

    /// A filter without a listener that stops nothing this test runs.
    fn confinement(hooks: Vec<crate::process::ChildHook>) -> Confinement {
        Confinement {
            filter: build(FilterOptions {
                network: true,
                inet: true,
                notify_exec: false,
                notify_connect: false,
                host: false,
            })
            .unwrap(),
            wait_killable: false,
            listener_channel: None,
            // SAFETY: getpid has no preconditions.
            supervisor_pid: unsafe { libc::getpid() },
            new_process_group: true,
            hooks,
        }
    }

    fn read_all(fd: OwnedFd) -> String {
        let mut out = String::new();
        std::fs::File::from(fd).read_to_string(&mut out).unwrap();
        out
    }

    const BOTH: [Memory; 2] = [Memory::Copied, Memory::Shared];

    #[test]
    fn runs_the_program_as_given_on_pipes_with_a_clean_signal_state() {
        for memory in BOTH {
            runs_the_program_as_given(memory);
        }
    }

    fn runs_the_program_as_given(memory: Memory) {
        let dir = tempfile::tempdir().unwrap();
        let script = "echo \"$0|$ONLY|$HOME\"; pwd; read line || echo eof; \
                      ps -o sid= -o pgid= -p $$; echo err >&2";
        let spawned = spawn_confined(
            &Program {
                env: cstrings(&["ONLY=yes", "PATH=/usr/bin:/bin"]),
                ..program(
                    "/bin/sh",
                    &["named-otherwise", "-c", script],
                    dir.path().to_str().unwrap(),
                )
            },
            ChildStdio::Piped,
            None,
            confinement(Vec::new()),
            memory,
        )
        .unwrap();
        assert!(!spawned.joined_at_clone);
        assert_eq!(spawned.pidfd.is_some(), memory == Memory::Shared);
        let out = read_all(spawned.stdout.unwrap());
        let err = read_all(spawned.stderr.unwrap());
        let status = wait(spawned.pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "{out}"
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "named-otherwise|yes|", "{memory:?}: {out}");
        let dir = std::fs::canonicalize(dir.path()).unwrap();
        assert_eq!(lines[1], dir.to_str().unwrap());
        assert_eq!(lines[2], "eof", "stdin is /dev/null");
        // A session and process group of its own.
        let ids: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(ids, [spawned.pid.to_string(), spawned.pid.to_string()]);
        assert_eq!(err, "err\n");
    }

    #[test]
    fn the_program_starts_with_default_sigpipe_and_nothing_blocked() {
        for memory in BOTH {
            starts_with_a_clean_signal_state(memory);
        }
    }

    fn starts_with_a_clean_signal_state(memory: Memory) {
        // The spawning thread blocks SIGUSR1, and this test binary (like the supervisor)
        // ignores SIGPIPE: the program must inherit neither.
        // SAFETY: sigset_t is plain old data, filled by sigemptyset/sigaddset.
        unsafe {
            let mut usr1: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut usr1);
            libc::sigaddset(&mut usr1, libc::SIGUSR1);
            libc::pthread_sigmask(libc::SIG_BLOCK, &usr1, std::ptr::null_mut());
        }
        // Read by the program itself (a shell would reset its own mask).
        let spawned = spawn_confined(
            &program(
                "/bin/grep",
                &["grep", "-E", "^(SigIgn|SigBlk)", "/proc/self/status"],
                "/",
            ),
            ChildStdio::Piped,
            None,
            confinement(Vec::new()),
            memory,
        )
        .unwrap();
        let out = read_all(spawned.stdout.unwrap());
        wait(spawned.pid);
        let bit = |line: &str, signal: libc::c_int| {
            let hex = line.split('\t').nth(1).unwrap();
            u64::from_str_radix(hex, 16).unwrap() & (1 << (signal - 1))
        };
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(bit(lines[0], libc::SIGUSR1), 0, "{memory:?}: {out}");
        assert_eq!(bit(lines[1], libc::SIGPIPE), 0, "{memory:?}: {out}");
    }

    #[test]
    fn a_failed_step_is_the_error_and_the_child_is_reaped() {
        for memory in BOTH {
            a_failed_step_is_the_error(memory);
        }
        // Every child was reaped: none is left to wait for.
        let mut status = 0;
        // SAFETY: waitpid with a valid int to fill; WNOHANG.
        let left = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        assert_eq!(left, -1);
        assert_eq!(
            io::Error::last_os_error().raw_os_error(),
            Some(libc::ECHILD)
        );
    }

    fn a_failed_step_is_the_error(memory: Memory) {
        let fail = |program: Program, hooks| {
            spawn_confined(
                &program,
                ChildStdio::Piped,
                None,
                confinement(hooks),
                memory,
            )
            .unwrap_err()
            .raw_os_error()
        };
        assert_eq!(
            fail(program("/nonexistent/program", &["p"], "/"), Vec::new()),
            Some(libc::ENOENT)
        );
        assert_eq!(
            fail(
                program("/bin/true", &["true"], "/nonexistent-cwd"),
                Vec::new()
            ),
            Some(libc::ENOENT)
        );
        let hook: crate::process::ChildHook =
            Box::new(|| Err(io::Error::from_raw_os_error(libc::EPERM)));
        assert_eq!(
            fail(program("/bin/true", &["true"], "/"), vec![hook]),
            Some(libc::EPERM)
        );
    }

    #[test]
    fn joins_the_cgroup_at_the_clone_and_by_the_fallback_write() {
        let Some(dir) = test_support::scratch_cgroup("confined-test") else {
            eprintln!("SKIP: no cgroup2 directory can be made here (needs root and cgroup2)");
            return;
        };
        let join = test_support::join(&dir);
        let mut seen = Vec::new();
        for memory in BOTH {
            for refused in [false, true] {
                // `true`: as where clone3 is refused, the child writes `cgroup.procs`.
                super::super::outside::CLONE3_REFUSED.store(refused, Ordering::Relaxed);
                let spawned = spawn_confined(
                    &program("/bin/sh", &["sh", "-c", "cat /proc/self/cgroup"], "/"),
                    ChildStdio::Piped,
                    Some(&join),
                    confinement(Vec::new()),
                    memory,
                )
                .unwrap();
                let out = read_all(spawned.stdout.unwrap());
                wait(spawned.pid);
                seen.push((memory, refused, spawned.joined_at_clone, out));
            }
        }
        std::fs::remove_dir(&dir).unwrap();
        let leaf = dir.file_name().unwrap().to_str().unwrap();
        for (memory, refused, at_clone, out) in seen {
            assert_eq!(at_clone, !refused, "{memory:?}");
            assert!(
                out.lines()
                    .any(|l| l.starts_with("0::") && l.ends_with(leaf)),
                "{memory:?}, clone3 refused: {refused}: not in {}: {out}",
                dir.display()
            );
        }
    }
}

//! Escalation, one engine for both backends: run the supervisor's own copy of a checked
//! exec outside the sandbox, on the caller's stdin/stdout/stderr, in its cwd; then hand
//! the copy's exact status back to the caller.
//!
//! A backend says only how its caller is held, how its stdio is reached and how the status
//! goes back ([`Caller`]): the unotify backend pauses the caller in its exec and ends it
//! with `exit_group(status)` by ptrace; the wrapper backend gets the fds over its socket
//! and the wrapper exits with the status. Everything else is here, once.
//!
//! The copy is what was checked: the path, argv and env read while the caller was paused.
//! Nothing the caller does afterwards changes what runs, which is why escalation never uses
//! `SECCOMP_USER_NOTIF_FLAG_CONTINUE`. One OS thread runs one escalation from start to end
//! (ptrace belongs to the thread that seized).

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;

use kernel::pidfd::PidFd;
use kernel::seccomp::listener::{Listener, Notification, Watched};

use policy::Evaluation;

use crate::executable::Executable;
use crate::gate::decision::{ExecFacts, Gate};
use crate::gate::{Shared, now_ms};
use crate::session::{Decider, ExitStatus, RanIn, ResolvedProgram};

/// What the caller asked to run, as read while it waited.
#[derive(Debug)]
pub struct Requested {
    pub path: PathBuf,
    pub argv: Vec<OsString>,
    /// `NAME=value` entries, in order.
    pub env: Vec<OsString>,
    pub cwd: PathBuf,
}

/// The supervisor's own copy of a checked exec.
#[derive(Debug)]
pub struct Copy {
    /// The file that was checked, run through its descriptor.
    pub executable: Executable,
    /// argv\[0\] already names the program the rule named.
    pub argv: Vec<OsString>,
    /// Built by [`environment`]: never the caller's own.
    pub env: Vec<(OsString, OsString)>,
    pub cwd: PathBuf,
    /// The session's marker variable, so teardown recognises the copy and its children.
    pub marker: (String, String),
    /// Joins the session's cgroup before exec, so a timeout kills the copy's tree too.
    pub cgroup: Option<kernel::process::outside::JoinCgroup>,
    /// The exec listener the copy's tree runs under (none where the kernel has no user
    /// notification: the wrapper backend's platforms).
    pub listener: Option<ExecListener>,
}

/// How an escalated copy's tree stays under the policy: a filter that stops its execs.
#[derive(Debug, Clone)]
pub struct ExecListener {
    pub filter: kernel::seccomp::filter::BpfProgram,
    pub wait_killable: bool,
    /// Without `CAP_SYS_ADMIN` the filter needs `PR_SET_NO_NEW_PRIVS` (setuid programs
    /// in the escalated tree then gain nothing).
    pub no_new_privs: bool,
}

/// What the engine does with an exec of the copy's tree.
pub(crate) type OnExec = Arc<dyn Fn(&Arc<Listener>, Notification) + Send + Sync + 'static>;

/// Why nothing ran.
#[derive(Debug)]
pub enum Refused {
    /// One of the caller's stdin/stdout/stderr could not be handed over: the command must
    /// not run on a substitute for a stream it was given.
    Stdio(String),
    /// The copy could not start (the program is missing, not executable...).
    Spawn(io::Error),
}

/// How a backend holds the caller of an escalated exec and hands it the copy's status.
pub(crate) trait Caller: Send + 'static {
    /// Keeps the caller from going on while the copy runs. `false`: it is gone.
    fn hold(&mut self) -> bool;
    /// The caller's fds 0, 1 and 2 (`None` for one it has closed: the copy gets
    /// `/dev/null` there).
    fn stdio(&mut self) -> Result<[Option<OwnedFd>; 3], String>;
    /// The caller's process: when it dies first, the copy is killed.
    fn process(&self) -> Option<&PidFd>;
    /// The caller's parent pid, read while the copy runs, for a record whose facts were
    /// taken without it ([`Gate::escalation_facts`]). `None` when it cannot be told.
    fn parent(&self) -> Option<i32> {
        None
    }
    /// Nothing ran; the caller learns why (`command` as a person would type it), as a
    /// failed exec would say it.
    fn refuse(self, command: &str, why: &Refused);
    /// Called once the copy runs: prepares what it can of the hand-back meanwhile, so that
    /// less of it is left after the copy's exit. A caller that dies here is seen by the
    /// watch on [`Self::process`].
    fn park(&mut self) {}
    /// Ends the caller with the copy's status. `false`: it was gone.
    fn hand_back(self, status: ExitStatus) -> bool;
}

/// How an escalation ended.
#[derive(Debug)]
pub enum Outcome {
    /// The copy ran; the caller was ended with this status.
    Ran {
        status: ExitStatus,
        duration: Duration,
    },
    /// Nothing ran, and the caller was told why.
    Refused(Refused),
    /// The caller went away (killed) before or while we ran.
    CallerGone,
}

/// Escalations running at once per session; the rest wait their turn in order. Each one
/// holds an OS thread (ptrace belongs to the thread that seized) while its copy runs.
pub const MAX_RUNNING: usize = 16;

/// Stack of an escalation thread: its copy starts on a stack of its own, and it holds no
/// deep recursion.
const THREAD_STACK: usize = 512 * 1024;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A session's escalations: at most [`MAX_RUNNING`] threads, the rest queued, so a burst
/// of pending escalations costs a queue entry each, not a thread. A worker with nothing to
/// do waits [`IDLE`] for the next one before it ends: escalated commands in a loop reuse
/// one thread instead of starting one each.
#[derive(Debug, Default, Clone)]
pub(crate) struct Pool {
    state: Arc<(std::sync::Mutex<PoolState>, std::sync::Condvar)>,
}

/// How long an idle escalation thread waits for more work.
const IDLE: Duration = Duration::from_millis(500);

#[derive(Default)]
struct PoolState {
    queue: std::collections::VecDeque<Job>,
    workers: usize,
    idle: usize,
    /// The session is ending: idle workers leave at once.
    closing: bool,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for PoolState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolState")
            .field("queued", &self.queue.len())
            .field("workers", &self.workers)
            .field("idle", &self.idle)
            .finish()
    }
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.state.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `job`; wakes an idle worker, or starts one when fewer than [`MAX_RUNNING`]
    /// run. A job that no thread can ever run is dropped (its caller answers for itself
    /// when dropped).
    pub fn submit(&self, job: Job) {
        let mut state = self.lock();
        state.queue.push_back(job);
        if state.idle > 0 {
            state.idle -= 1;
            // Woken after the unlock: woken under it, the worker would find the lock
            // held, sleep on it, and need a second wake-up (a futex call and, on a VM, an
            // interrupt to its CPU) from the unlock.
            drop(state);
            self.state.1.notify_one();
            return;
        }
        if state.workers >= MAX_RUNNING {
            return;
        }
        state.workers += 1;
        let pool = self.clone();
        let spawned = std::thread::Builder::new()
            .name("execgate-escalate".into())
            .stack_size(THREAD_STACK)
            .spawn(move || pool.work());
        match spawned {
            Ok(thread) => {
                state.threads.retain(|t| !t.is_finished());
                state.threads.push(thread);
            }
            Err(err) => {
                state.workers -= 1;
                tracing::error!("no thread for an escalation: {err}");
                if state.workers == 0 {
                    state.queue.clear();
                }
            }
        }
    }

    fn work(&self) {
        let mut state = self.lock();
        loop {
            if let Some(job) = state.queue.pop_front() {
                drop(state);
                job();
                state = self.lock();
                continue;
            }
            if state.closing {
                break;
            }
            // Idle: counted so `submit` wakes this thread instead of starting another.
            state.idle += 1;
            let (next, timeout) = self
                .state
                .1
                .wait_timeout_while(state, IDLE, |s| s.queue.is_empty() && !s.closing)
                .unwrap_or_else(|p| p.into_inner());
            state = next;
            if timeout.timed_out() || state.closing {
                // Not woken by `submit` (which took the idle count back itself).
                if state.queue.is_empty() {
                    state.idle = state.idle.saturating_sub(1);
                    break;
                }
            }
        }
        state.workers -= 1;
    }

    /// The worker threads, for the session to wait for their records at its end; idle
    /// ones leave now.
    pub fn take_threads(&self) -> Vec<std::thread::JoinHandle<()>> {
        let mut state = self.lock();
        state.closing = true;
        self.state.1.notify_all();
        std::mem::take(&mut state.threads)
    }
}

/// Hooks the session needs: register the copy's process so teardown can kill it.
pub trait Registry: Send + Sync {
    fn started(&self, pid: u32, pidfd: Arc<PidFd>);
    fn finished(&self, pid: u32);
}

/// Escalates a checked exec: takes the caller from its backend (`gate`), builds the copy
/// (its environment, argv\[0\] from the program), runs it on one of the session's
/// escalation threads ([`run`]), then records the exec with its status.
pub(crate) fn start<G: Gate>(
    shared: &Arc<Shared>,
    gate: &G,
    pending: G::Pending,
    facts: ExecFacts,
    executable: Executable,
    eval: Evaluation,
    decider: Decider,
) {
    let time_ms = now_ms();
    let Some((caller, requested)) = gate.escalation(pending) else {
        return;
    };
    let env = environment(
        &shared.inner.escalation.base_env,
        &shared.inner.escalation.pass_env,
        &requested.env,
    );
    let passed: Vec<String> = env.names().collect();
    // argv[0] names the program the rule named (multi-call programs such as git and
    // busybox act on it), never what the caller put there.
    let mut argv = requested.argv;
    let arg0 = requested
        .path
        .file_name()
        .map(std::ffi::OsStr::to_os_string)
        .unwrap_or_default();
    match argv.first_mut() {
        Some(first) => *first = arg0,
        None => argv.push(arg0),
    }
    let resolved = ResolvedProgram {
        path: executable.path.clone(),
        dev: executable.dev,
        ino: executable.ino,
    };
    let copy = Copy {
        executable,
        argv,
        env: env.into_entries(),
        cwd: requested.cwd,
        marker: shared.marker.clone(),
        cgroup: shared.cgroup.as_ref().and_then(|cg| cg.joining().ok()),
        listener: shared.inner.exec_listener.clone(),
    };
    let this = shared.clone();
    shared.escalations.submit(Box::new(move || {
        let from = crate::shown(&facts.argv);
        let deciding = this.clone();
        let on_exec: OnExec = Arc::new(
            move |listener: &Arc<kernel::seccomp::listener::Listener>,
                  n: kernel::seccomp::listener::Notification| {
                deciding.handle_escalated(listener, n, &from);
            },
        );
        let mut facts = facts;
        let outcome = run(caller, copy, this.as_ref(), on_exec, &mut facts.ppid);
        let (ran_in, status, duration, reason) = match outcome {
            Outcome::Ran { status, duration } => (
                RanIn::Escalated,
                Some(status),
                Some(duration),
                eval.reason(),
            ),
            Outcome::Refused(Refused::Stdio(error)) => (
                RanIn::Denied,
                None,
                None,
                format!("not run outside the sandbox: {error}"),
            ),
            Outcome::Refused(Refused::Spawn(error)) => (
                RanIn::Escalated,
                None,
                None,
                format!("escalated copy failed to start: {error}"),
            ),
            Outcome::CallerGone => (
                RanIn::Escalated,
                None,
                None,
                "the caller went away during escalation".into(),
            ),
        };
        let mut record = this.make_record(facts, Some(&eval), decider, ran_in, reason);
        record.time_ms = time_ms;
        record.resolved = Some(resolved);
        record.escalation_env = Some(passed);
        record.status = status;
        record.duration_ms = duration.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        this.store(record);
    }));
}

/// Runs one escalation to its end. Blocking: call on a thread of its own. `parent`, when
/// `None`, is set to the caller's parent pid once the copy runs ([`Caller::parent`]).
pub(crate) fn run<C: Caller>(
    mut caller: C,
    mut copy: Copy,
    registry: &dyn Registry,
    on_exec: OnExec,
    parent: &mut Option<i32>,
) -> Outcome {
    if !caller.hold() {
        return Outcome::CallerGone;
    }
    let command = {
        let argv: Vec<String> = copy
            .argv
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        crate::shown(&argv)
    };
    let stdio = match caller.stdio() {
        Ok(stdio) => stdio,
        Err(error) => {
            let why = Refused::Stdio(error);
            caller.refuse(&command, &why);
            return Outcome::Refused(why);
        }
    };
    let channel = match copy.listener.take() {
        Some(setup) => match ListenerChannel::take() {
            Ok(channel) => Some((setup, channel)),
            Err(err) => {
                let why = Refused::Spawn(err);
                caller.refuse(&command, &why);
                return Outcome::Refused(why);
            }
        },
        None => None,
    };
    let started = Instant::now();
    let spawned = crate::teardown::ChildRegistry::global().spawn(
        || {
            // The copy's own exec is the listener's first notification, and the spawn
            // (on this thread, which outlives the copy: the parent-death signal is tied to
            // it) returns only once that exec went through: this thread's first-exec
            // companion answers it meanwhile, woken now while the copy is being set up.
            let Some((setup, channel)) = channel else {
                return Ok((spawn_copy(copy, stdio, None)?, None));
            };
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            let end = channel.ours.clone();
            first_exec_thread(Box::new(move || {
                let _ = tx.send(answer_first_exec(&end));
            }))?;
            // On any error below `channel` is dropped: with the copy gone, the companion
            // sees the end of the stream instead of waiting.
            let theirs = OwnedFd::from(channel.theirs.try_clone()?);
            let child = spawn_copy(copy, stdio, Some((setup, theirs)))?;
            // Sent right after the answer, before the exec could even complete.
            let listener = rx.recv().ok().flatten();
            if listener.is_some() {
                // One message sent, that one read: nothing left in it for the next copy.
                channel.keep();
            }
            Ok((child, listener))
        },
        |(c, _)| u32::try_from(c.pid).ok(),
    );
    let (child, listener) = match spawned {
        Ok(spawned) => spawned,
        Err(err) => {
            let why = Refused::Spawn(err);
            caller.refuse(&command, &why);
            return Outcome::Refused(why);
        }
    };
    let pid = u32::try_from(child.pid).unwrap_or(0);
    let copy_fd = Arc::new(child.pidfd);
    registry.started(pid, copy_fd.clone());
    // While the copy runs: whatever the hand-back can prepare, and what only the record
    // needs (off the path to the copy's start).
    caller.park();
    if parent.is_none() {
        *parent = caller.parent();
    }
    let mut leftovers = None;
    match listener {
        // The policy follows the copy's tree: each of its execs is decided, also after the
        // copy exits (what it started in the background), until no process of that tree
        // is left.
        Some(listener) => loop {
            let watched: Vec<BorrowedFd<'_>> = std::iter::once(copy_fd.as_fd())
                .chain(caller.process().map(AsFd::as_fd))
                .collect();
            match listener.wait_any(&watched) {
                Ok(Watched::Notification(n)) => on_exec(&listener, n),
                Ok(Watched::Ready(1)) => {
                    let _ = copy_fd.send_signal(libc::SIGKILL);
                    leftovers = Some(listener);
                    break;
                }
                Ok(Watched::Ready(_)) => {
                    leftovers = Some(listener);
                    break;
                }
                Ok(Watched::Hangup) | Err(_) => break,
            }
        },
        // The copy stands in for the caller's exec: if the caller is killed while it runs
        // (`timeout`, a signal to its process group), the copy must not run on, outside
        // the sandbox, after its caller is gone. Which signal killed the caller is not ours
        // to read, so the copy gets SIGKILL.
        None => {
            if let Some(process) = caller.process()
                && kernel::pidfd::first_exited(&[copy_fd.as_ref(), process]).ok() == Some(1)
            {
                let _ = copy_fd.send_signal(libc::SIGKILL);
            }
        }
    }
    // Our own child, never traced: reaping it through its pidfd is safe. 255 when its
    // status could not be read.
    let status = copy_fd
        .wait_exit()
        .ok()
        .flatten()
        .unwrap_or(ExitStatus::Exited(255));
    crate::teardown::ChildRegistry::global().release(pid);
    registry.finished(pid);
    let duration = started.elapsed();
    // Reaped, the copy no longer holds its filter: a thread only where its tree goes on.
    if let Some(listener) = leftovers.filter(|l| !l.orphaned()) {
        serve_leftovers(listener, on_exec);
    }
    if caller.hand_back(status) {
        Outcome::Ran { status, duration }
    } else {
        Outcome::CallerGone
    }
}

/// Decides the execs of what an escalated copy left running after it exited, on a small
/// thread of its own, until none of that tree is left (the session's teardown kills it).
fn serve_leftovers(listener: Arc<Listener>, on_exec: OnExec) {
    let spawned = std::thread::Builder::new()
        .name("execgate-escalated-tree".into())
        .stack_size(LEFTOVERS_STACK)
        .spawn(move || {
            while let Ok(Watched::Notification(n)) = listener.wait_any(&[]) {
                on_exec(&listener, n);
            }
        });
    if let Err(err) = spawned {
        // Then the listener closes here, and that tree's later execs fail (ENOSYS).
        tracing::warn!("no thread for an escalated command's leftovers: {err}");
    }
}

/// Stack of the thread that serves an escalated tree's leftovers.
const LEFTOVERS_STACK: usize = 64 * 1024;

thread_local! {
    /// The escalation thread's companion that answers its copies' first exec: one per
    /// escalation thread (not one for all), so a copy stopped before its exec (SIGSTOP from
    /// another escalated tree) holds up only its own escalation. It ends with its thread.
    static FIRST_EXEC: std::cell::RefCell<Option<std::sync::mpsc::Sender<Job>>> =
        const { std::cell::RefCell::new(None) };
}

/// Stack of a first-exec companion: it receives a descriptor and answers one notification.
const FIRST_EXEC_STACK: usize = 64 * 1024;

/// Runs `job` on this escalation thread's first-exec companion, started at first use.
fn first_exec_thread(job: Job) -> io::Result<()> {
    FIRST_EXEC.with(|companion| {
        let mut companion = companion.borrow_mut();
        let job = match companion.as_ref() {
            Some(tx) => match tx.send(job) {
                Ok(()) => return Ok(()),
                // It is gone (it cannot end on its own): start another.
                Err(std::sync::mpsc::SendError(job)) => job,
            },
            None => job,
        };
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("execgate-first-exec".into())
            .stack_size(FIRST_EXEC_STACK)
            .spawn(move || {
                for job in rx {
                    job();
                }
            })?;
        tx.send(job)
            .map_err(|_| io::Error::other("the first-exec thread is gone"))?;
        *companion = Some(tx);
        Ok(())
    })
}

/// The socket pair a copy sends its exec listener over, kept by its escalation thread from
/// one copy to the next (a `socketpair` and two closes per copy otherwise: socket inodes
/// made and torn down). Kept only after a round in which the one message the copy sends
/// was read; dropped after any other, so the companion waiting on it sees its end.
struct ListenerChannel {
    /// Read by the first-exec companion.
    ours: Arc<UnixStream>,
    /// A duplicate goes to each copy (its hook closes it; the copy's exec closes its own).
    theirs: UnixStream,
}

thread_local! {
    static KEPT_CHANNEL: std::cell::RefCell<Option<ListenerChannel>> =
        const { std::cell::RefCell::new(None) };
}

impl ListenerChannel {
    /// This thread's kept pair, or a new one.
    fn take() -> io::Result<ListenerChannel> {
        if let Some(kept) = KEPT_CHANNEL.with(|k| k.borrow_mut().take()) {
            return Ok(kept);
        }
        let (ours, theirs) = UnixStream::pair()?;
        Ok(ListenerChannel {
            ours: Arc::new(ours),
            theirs,
        })
    }

    fn keep(self) {
        KEPT_CHANNEL.with(|k| *k.borrow_mut() = Some(self));
    }
}

/// Receives the copy's listener and lets its first exec (the copy itself, just checked)
/// through. `None` when the copy failed before sending it. A copy killed before its exec
/// leaves the listener without a process: that is a hangup, not a wait forever.
fn answer_first_exec(end: &UnixStream) -> Option<Arc<Listener>> {
    let fd = kernel::process::recv_fd(end.as_raw_fd()).ok().flatten()?;
    let listener = Arc::new(Listener::from_fd(fd));
    // The copy's tree execs in turn with whoever answers: the same sync wake-ups as the
    // session's own listener (6.6+; without them, only slower).
    let _ = listener.set_sync_wakeup();
    if let Ok(Watched::Notification(n)) = listener.wait_any(&[]) {
        let _ = listener.respond_continue(n.id);
    }
    Some(listener)
}

/// Starts the copy on the caller's fds 0, 1, 2 (`/dev/null` for one it did not have),
/// without copying the supervisor ([`kernel::process::outside`]).
fn spawn_copy(
    job: Copy,
    stdio: [Option<OwnedFd>; 3],
    listener: Option<(ExecListener, OwnedFd)>,
) -> io::Result<kernel::process::outside::Started> {
    let c_string = |bytes: &[u8]| {
        CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte"))
    };
    let mut env = Vec::with_capacity(job.env.len() + 1);
    let marker = (OsString::from(&job.marker.0), OsString::from(&job.marker.1));
    for (name, value) in job.env.iter().chain(std::iter::once(&marker)) {
        let mut entry = name.as_bytes().to_vec();
        entry.push(b'=');
        entry.extend_from_slice(value.as_bytes());
        env.push(c_string(&entry)?);
    }
    let mut hooks: Vec<kernel::process::ChildHook> = Vec::new();
    if job.executable.script {
        // The interpreter opens the script again by the descriptor's path after the exec:
        // keep that descriptor open across it (as the kernel's own fexecve needs too).
        let fd = job.executable.try_clone_fd()?;
        let number = job.executable.fd_number();
        hooks.push(kernel::process::inherit_fd_hook(fd, number));
    }
    if let Some((setup, channel)) = listener {
        // Last: once installed, the copy's own exec is the first notification.
        hooks.push(kernel::process::exec_listener_hook(
            setup.filter,
            setup.wait_killable,
            channel,
            setup.no_new_privs,
        ));
    }
    kernel::process::outside::spawn_outside(kernel::process::outside::Outside {
        path: c_string(job.executable.exec_path().as_os_str().as_bytes())?,
        argv: job
            .argv
            .iter()
            .map(|a| c_string(a.as_bytes()))
            .collect::<io::Result<_>>()?,
        env,
        cwd: c_string(job.cwd.as_os_str().as_bytes())?,
        stdio,
        // Joined first, rooted in a cgroup namespace there (see `JoinCgroup`).
        cgroup: job.cgroup,
        hooks,
    })
}

/// What an escalated copy gets as its environment: the supervisor's own base, plus the
/// variables the person named (`--escalate-env`), taken from the caller. Never a variable
/// that makes a loader, an interpreter or a tool run code or read config of the caller's
/// choosing, even when named.
#[derive(Debug, Default)]
pub struct Environment {
    entries: Vec<(OsString, OsString)>,
}

/// The supervisor's variables every copy gets (from its own environment at start).
pub const BASE_VARIABLES: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TERM", "TZ", "TMPDIR",
];

/// Prefixes never passed to a copy: the dynamic loader's, interpreters' and
/// tools' hooks (code or config they load from a path or a string).
const NEVER: &[&str] = &[
    "LD_",
    "GCONV_PATH",
    "GETCONF_DIR",
    "HOSTALIASES",
    "LOCALDOMAIN",
    "LOCPATH",
    "MALLOC_",
    "NLSPATH",
    "RES_OPTIONS",
    "RESOLV_",
    "BASH_ENV",
    "ENV",
    "BASH_FUNC_",
    "BASHOPTS",
    "SHELLOPTS",
    "PS4",
    "PROMPT_COMMAND",
    "IFS",
    "CDPATH",
    "GLOBIGNORE",
    "PYTHON",
    "PERL5",
    "PERLLIB",
    "PERL_",
    "RUBY",
    "GEM_",
    "BUNDLE_",
    "NODE_",
    "NPM_CONFIG_",
    "npm_config_",
    "YARN_",
    "COREPACK_",
    "GIT_",
    "MAKEFLAGS",
    "MAKEFILES",
    "MFLAGS",
    "GNUMAKEFLAGS",
    "CARGO_",
    "RUSTC",
    "RUSTFLAGS",
    "RUSTDOC",
    "CC",
    "CXX",
    "CFLAGS",
    "LDFLAGS",
    "CPP",
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "CLASSPATH",
    "LUA_",
    "TCLLIBPATH",
    "TERMINFO",
    "PAGER",
    "MANPAGER",
    "GIT_PAGER",
    "EDITOR",
    "VISUAL",
    "BROWSER",
    "LESSOPEN",
    "LESSCLOSE",
    "LESSKEY",
    "SSH_ASKPASS",
    "SUDO_ASKPASS",
    "XDG_",
    "DOTNET_",
    "OPENSSL_",
    "SSL_CERT_",
    "CURL_",
    "WGETRC",
    "PIP_",
    "VIRTUAL_ENV",
    "CONDA",
    "EXECGATE_",
];

/// Never passed, even if named: every name that starts with an entry of [`NEVER`].
pub fn is_hook_variable(name: &str) -> bool {
    NEVER.iter().any(|p| name.starts_with(p))
}

impl Environment {
    /// The names passed, in order (for the prompt and the audit line).
    pub fn names(&self) -> impl Iterator<Item = String> + '_ {
        self.entries
            .iter()
            .map(|(k, _)| k.to_string_lossy().into_owned())
    }

    pub fn into_entries(self) -> Vec<(OsString, OsString)> {
        self.entries
    }
}

/// Builds a copy's environment from the supervisor's `base` and the caller's `requested`
/// entries (`NAME=value`): `pass` names the caller's variables the person allowed.
/// The caller's variables an escalation passes on (`--escalate-env` names, never a hook
/// variable), as `(NAME, VALUE)` for showing: what [`environment`] adds from `requested`.
pub fn passed_variables(pass: &[String], requested: &[OsString]) -> Vec<(String, String)> {
    environment(&[], pass, requested)
        .entries
        .into_iter()
        .filter(|(k, _)| k != "PYTHONSAFEPATH")
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect()
}

pub fn environment(
    base: &[(OsString, OsString)],
    pass: &[String],
    requested: &[OsString],
) -> Environment {
    let mut entries: Vec<(OsString, OsString)> = base.to_vec();
    // Python (3.11+) adds neither the cwd (`-c`, `-m`) nor the script's directory to its
    // module path: an escalated `python3 -c '...'` must not import the agent's `json.py`.
    entries.push(("PYTHONSAFEPATH".into(), "1".into()));
    for entry in requested {
        let bytes = entry.as_bytes();
        let Some(eq) = bytes.iter().position(|&b| b == b'=') else {
            continue;
        };
        let name = std::ffi::OsStr::from_bytes(&bytes[..eq]);
        let Some(name_str) = name.to_str() else {
            continue;
        };
        if !pass.iter().any(|p| p == name_str) || is_hook_variable(name_str) {
            continue;
        }
        let value = std::ffi::OsStr::from_bytes(&bytes[eq + 1..]).to_os_string();
        match entries.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value,
            None => entries.push((name.to_os_string(), value)),
        }
    }
    Environment { entries }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A caller that is always there, has no stdio, and keeps what it is told.
    #[derive(Clone, Default)]
    struct Recorded(Arc<Mutex<Vec<String>>>);

    impl Caller for Recorded {
        fn hold(&mut self) -> bool {
            true
        }
        fn stdio(&mut self) -> Result<[Option<OwnedFd>; 3], String> {
            Ok([None, None, None])
        }
        fn process(&self) -> Option<&PidFd> {
            None
        }
        fn refuse(self, _command: &str, why: &Refused) {
            self.0.lock().unwrap().push(format!("refused: {why:?}"));
        }
        fn hand_back(self, status: ExitStatus) -> bool {
            self.0.lock().unwrap().push(format!("{status:?}"));
            true
        }
    }

    struct NoRegistry;

    impl Registry for NoRegistry {
        fn started(&self, _pid: u32, _pidfd: Arc<PidFd>) {}
        fn finished(&self, _pid: u32) {}
    }

    /// `program argv...` escalated under the exec listener, from `cwd`; every exec of its
    /// tree after its own is counted and let through.
    fn escalate(program: &str, argv: &[&str], cwd: &str, execs: &Arc<Mutex<u32>>) -> String {
        let caller = Recorded::default();
        let told = caller.0.clone();
        let copy = Copy {
            executable: Executable::open(std::process::id(), std::path::Path::new(program))
                .unwrap(),
            argv: argv.iter().map(OsString::from).collect(),
            env: Vec::new(),
            cwd: PathBuf::from(cwd),
            marker: ("EXECGATE_TEST".into(), "1".into()),
            cgroup: None,
            listener: Some(ExecListener {
                filter: kernel::seccomp::exec_listener::build().unwrap(),
                wait_killable: false,
                no_new_privs: true,
            }),
        };
        let counted = execs.clone();
        let on_exec: OnExec = Arc::new(move |listener, n| {
            *counted.lock().unwrap() += 1;
            let _ = listener.respond_continue(n.id);
        });
        let mut parent = None;
        run(caller, copy, &NoRegistry, on_exec, &mut parent);
        let told = told.lock().unwrap();
        told.join("; ")
    }

    #[test]
    fn copies_started_one_after_another_on_one_thread_each_get_their_listener() {
        // The first copy makes this thread's channel, the next ones reuse it; failed
        // rounds (before the copy sends its listener, and after: its exec fails) must
        // leave nothing in it that a later copy's companion would take for its own.
        let dir = tempfile::tempdir().unwrap();
        let not_executable = dir.path().join("data");
        std::fs::write(&not_executable, "").unwrap();
        let not_executable = not_executable.to_str().unwrap();
        let execs = Arc::new(Mutex::new(0));
        let sh = |code: u8| {
            escalate(
                "/bin/sh",
                &["sh", "-c", &format!("/bin/true; exit {code}")],
                "/",
                &execs,
            )
        };
        assert_eq!(sh(3), "Exited(3)");
        assert_eq!(sh(4), "Exited(4)");
        let failed = escalate("/bin/sh", &["sh"], "/nonexistent-cwd", &execs);
        assert!(failed.starts_with("refused"), "{failed}");
        assert_eq!(sh(5), "Exited(5)");
        let failed = escalate(not_executable, &["data"], "/", &execs);
        assert!(failed.starts_with("refused"), "{failed}");
        assert_eq!(sh(6), "Exited(6)");
        // Each copy's `/bin/true` was stopped by its listener and decided.
        assert_eq!(*execs.lock().unwrap(), 4);
    }
}

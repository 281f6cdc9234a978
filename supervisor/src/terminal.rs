//! The session's own terminal, relayed (as `sudo`'s `use_pty`): when any of the
//! supervisor's stdin/stdout/stderr is a terminal, the session gets a fresh
//! pseudo-terminal instead (its slave on each of those descriptors, as its controlling
//! terminal: [`SessionStdio::Terminal`]), and a thread copies the person's keys to the
//! master and the master's output to the person's terminal.
//!
//! While relaying input the person's terminal is in raw mode, so Ctrl-C, Ctrl-Z and the
//! rest reach the session's own line discipline, which signals the session's foreground
//! group; the settings the person had are put back when the [`Relay`] is finished or
//! dropped (every exit path of the caller). The session can change its own terminal's
//! settings, read what is typed to it and push input into it; none of that touches the
//! person's terminal, of which the tree holds no descriptor.
//!
//! A question to the person ([`RelayHandle::pause`]) stops the relay in both directions
//! until answered: nothing the person types goes to the session meanwhile, and nothing
//! the session prints lands in the middle of the question.
//!
//! Owns: the relay thread and the person's terminal modes. Must never decide anything
//! about the session, nor read the person's terminal while paused.

use std::io::{self, IsTerminal, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::termios::{self, SetArg, Termios};

use crate::session::SessionStdio;

/// How long a question waits for the relay to stop before asking anyway.
const PAUSE_WAIT: Duration = Duration::from_secs(5);
/// After the session ended: how long the master is drained at most, and how long it may
/// stay quiet before the drain stops.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);
const DRAIN_QUIET: Duration = Duration::from_millis(200);
/// Keys typed but not yet taken by the session, at most; beyond, the person's terminal is
/// not read until the session reads.
const PENDING_INPUT: usize = 64 * 1024;
/// How often (ms) the relay looks whether the session's foreground program stopped.
const STOP_CHECK: u16 = 200;

/// The relay's state, shared by its thread and the questions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    /// A question asks for a pause; the thread answers with `Paused`.
    PauseWanted,
    Paused,
    /// The session ended: drain the master and stop.
    Finishing,
    /// The thread is gone.
    Done,
}

#[derive(Debug)]
struct Control {
    state: Mutex<State>,
    changed: Condvar,
    /// Wakes the thread out of `poll` when the state changes.
    wake: UnixStream,
    /// The person's terminal (a copy of the first of 0, 1, 2 that is one).
    person: OwnedFd,
    master: OwnedFd,
    /// The person's settings before raw mode: put back at the end, the base of a
    /// question's cooked mode. `None`: input is not relayed (stdin not a terminal, or
    /// execgate not in the terminal's foreground), the person's settings untouched.
    /// (A mutex only because `Termios` is not `Sync`.)
    saved: Mutex<Option<Termios>>,
    /// `saved` is set: the person's keys go to the session.
    relays_input: bool,
    /// When the session's foreground program stops (Ctrl-Z went to it), execgate stops
    /// too, so the person's shell gets its terminal back (`supervise`; not as PID 1).
    suspends: bool,
}

impl Control {
    fn saved(&self) -> Option<Termios> {
        self.saved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl Control {
    fn set(&self, state: State) {
        let mut now = lock(&self.state);
        if *now != State::Done {
            *now = state;
        }
        self.changed.notify_all();
        drop(now);
        let _ = (&self.wake).write(&[1]);
    }
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What the questions and the window-size watcher hold of a relay.
#[derive(Debug, Clone)]
pub struct RelayHandle(Arc<Control>);

/// Input and output of the relay are stopped while this lives; dropping it resumes them.
#[derive(Debug)]
pub struct Paused<'a> {
    control: &'a Control,
}

impl Paused<'_> {
    /// The person's own settings (before raw mode): what a question should answer in.
    pub fn cooked(&self) -> Option<Termios> {
        self.control.saved()
    }
}

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        let mut now = lock(&self.control.state);
        if matches!(*now, State::Paused | State::PauseWanted) {
            *now = State::Running;
        }
        self.control.changed.notify_all();
        drop(now);
        let _ = (&self.control.wake).write(&[1]);
    }
}

impl RelayHandle {
    /// Stops the relay (blocking, at most [`PAUSE_WAIT`]) until the guard is dropped: the
    /// relay thread then neither reads the person's terminal nor writes to it.
    pub fn pause(&self) -> Paused<'_> {
        let control = &*self.0;
        {
            let mut now = lock(&control.state);
            if *now == State::Running {
                *now = State::PauseWanted;
            }
        }
        let _ = (&control.wake).write(&[1]);
        let deadline = Instant::now() + PAUSE_WAIT;
        let mut now = lock(&control.state);
        while *now == State::PauseWanted {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::warn!("the terminal relay did not stop for a question in time");
                break;
            }
            now = control
                .changed
                .wait_timeout(now, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        drop(now);
        Paused { control }
    }

    /// Copies the person's window size to the session's terminal (at start, on SIGWINCH);
    /// the session's foreground group gets SIGWINCH from its line discipline.
    pub fn copy_window_size(&self) {
        if let Ok(size) = kernel::terminal::window_size(self.0.person.as_fd()) {
            let _ = kernel::terminal::set_window_size(self.0.master.as_fd(), &size);
        }
    }

    /// Whether the person's keys go to the session (and their terminal is in raw mode).
    pub fn relays_input(&self) -> bool {
        self.0.relays_input
    }
}

/// The relay of one session's terminal. Finish it ([`Relay::finish`]) once the session
/// ended; dropping it puts the person's terminal settings back as well.
#[derive(Debug)]
pub struct Relay {
    control: Arc<Control>,
    thread: Option<JoinHandle<()>>,
}

impl Relay {
    /// The relay and the session's stdio when any of 0, 1, 2 is a terminal (`None`
    /// otherwise). Input is relayed, in raw mode, only when stdin is a terminal whose
    /// foreground group is execgate's (a backgrounded execgate does not take the terminal
    /// from the shell that started it).
    ///
    /// `suspends`: when the session's foreground program stops (Ctrl-Z reached it through
    /// its line discipline), execgate puts the person's settings back and stops itself
    /// (SIGTSTP), as sudo does; once continued it takes raw mode again and continues the
    /// program. Without it the program is continued at once (PID 1 has nobody to stop to).
    pub fn start(suspends: bool) -> io::Result<Option<(Relay, SessionStdio)>> {
        let replace = [
            io::stdin().is_terminal(),
            io::stdout().is_terminal(),
            io::stderr().is_terminal(),
        ];
        let Some(first) = replace.iter().position(|t| *t) else {
            return Ok(None);
        };
        let person = match first {
            // Only stdin is a terminal, maybe opened read-only (`< /dev/tty`): the same
            // terminal opened again for reading and writing, so the session's output to
            // its own terminal shows; else stdin itself.
            0 => {
                use std::os::unix::fs::OpenOptionsExt;
                match std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .custom_flags(libc::O_NOCTTY)
                    .open("/proc/self/fd/0")
                {
                    Ok(file) => OwnedFd::from(file),
                    Err(_) => io::stdin().as_fd().try_clone_to_owned()?,
                }
            }
            1 => io::stdout().as_fd().try_clone_to_owned()?,
            _ => io::stderr().as_fd().try_clone_to_owned()?,
        };
        let size = kernel::terminal::window_size(person.as_fd()).ok();
        let pty = kernel::terminal::open(size.as_ref())?;
        // The session's terminal starts with the person's settings (erase key, ...).
        let person_settings = termios::tcgetattr(person.as_fd()).map_err(io::Error::from)?;
        termios::tcsetattr(pty.slave.as_fd(), SetArg::TCSANOW, &person_settings)
            .map_err(io::Error::from)?;
        let foreground = replace[0]
            && nix::unistd::tcgetpgrp(io::stdin().as_fd())
                .is_ok_and(|group| group == nix::unistd::getpgrp());
        let saved = if foreground {
            let mut raw = person_settings.clone();
            termios::cfmakeraw(&mut raw);
            termios::tcsetattr(person.as_fd(), SetArg::TCSADRAIN, &raw).map_err(io::Error::from)?;
            Some(person_settings)
        } else {
            None
        };
        let master = pty.master;
        let nonblocking = nix::fcntl::fcntl(&master, nix::fcntl::FcntlArg::F_GETFL)
            .map(nix::fcntl::OFlag::from_bits_retain)
            .and_then(|flags| {
                nix::fcntl::fcntl(
                    &master,
                    nix::fcntl::FcntlArg::F_SETFL(flags | nix::fcntl::OFlag::O_NONBLOCK),
                )
            });
        let (wake, woken) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        woken.set_nonblocking(true)?;
        let control = Arc::new(Control {
            state: Mutex::new(State::Running),
            changed: Condvar::new(),
            wake,
            person,
            master,
            relays_input: saved.is_some(),
            saved: Mutex::new(saved),
            suspends,
        });
        // From here on, dropping the relay puts the person's settings back.
        let mut relay = Relay {
            control: control.clone(),
            thread: None,
        };
        nonblocking.map_err(io::Error::from)?;
        relay.thread = Some(
            std::thread::Builder::new()
                .name("execgate-terminal".into())
                .spawn(move || run(&control, &woken))?,
        );
        let stdio = SessionStdio::Terminal(kernel::terminal::ControllingTerminal::new(
            pty.slave, replace,
        ));
        Ok(Some((relay, stdio)))
    }

    pub fn handle(&self) -> RelayHandle {
        RelayHandle(self.control.clone())
    }

    /// The session ended: copies what it still wrote to the person's terminal (bounded:
    /// [`DRAIN_LIMIT`]), then puts the person's settings back.
    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.control.set(State::Finishing);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if let Some(saved) = self.control.saved() {
            let _ = termios::tcsetattr(self.control.person.as_fd(), SetArg::TCSADRAIN, &saved);
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The terminal devices a confined session must not open by path
/// ([`kernel::terminal::TerminalMasks`]): every `/dev/pts/N` but the session's own
/// (`own`), and the supervisor's own stdin/stdout/stderr when they are terminals elsewhere
/// (a console, a serial line).
pub(crate) fn other_terminals(own: Option<&kernel::terminal::ControllingTerminal>) -> Vec<PathBuf> {
    let own = own.and_then(|t| t.slave_path().ok());
    let mut found: Vec<PathBuf> = std::fs::read_dir("/dev/pts")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                })
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    let stdio = [
        io::stdin().is_terminal(),
        io::stdout().is_terminal(),
        io::stderr().is_terminal(),
    ];
    for (fd, is_terminal) in stdio.into_iter().enumerate() {
        if let Ok(path) = std::fs::read_link(format!("/proc/self/fd/{fd}"))
            && is_terminal
            && path.is_absolute()
            && !path.starts_with("/dev/pts")
            // Each process's own controlling terminal: the session's is its pty.
            && path != std::path::Path::new("/dev/tty")
            && !found.contains(&path)
        {
            found.push(path);
        }
    }
    found.retain(|p| Some(p) != own.as_ref());
    found
}

/// Whether a session started here on a terminal can have one of its own (`execgate
/// doctor`): opens and closes a pseudo-terminal pair.
pub fn probe() -> io::Result<()> {
    kernel::terminal::open(None).map(drop)
}

/// The relay thread.
fn run(control: &Control, woken: &UnixStream) {
    let mut pending: Vec<u8> = Vec::new();
    let mut input_open = control.relays_input;
    // The person's suspend key (Ctrl-Z), when execgate suspends with the session.
    let suspend_key = control
        .saved()
        .filter(|_| control.suspends)
        .map(|t| t.control_chars[termios::SpecialCharacterIndices::VSUSP as usize])
        .filter(|key| *key != 0);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let state = {
            let mut now = lock(&control.state);
            loop {
                match *now {
                    State::PauseWanted => {
                        *now = State::Paused;
                        control.changed.notify_all();
                    }
                    State::Paused => {
                        now = control
                            .changed
                            .wait(now)
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                    }
                    state => break state,
                }
            }
        };
        if state != State::Running {
            break;
        }
        let master_events = if pending.is_empty() {
            PollFlags::POLLIN
        } else {
            PollFlags::POLLIN | PollFlags::POLLOUT
        };
        let read_person = input_open && pending.len() < PENDING_INPUT;
        let mut fds = vec![
            PollFd::new(woken.as_fd(), PollFlags::POLLIN),
            PollFd::new(control.master.as_fd(), master_events),
        ];
        if read_person {
            fds.push(PollFd::new(control.person.as_fd(), PollFlags::POLLIN));
        }
        // With input relayed, look at the foreground program a few times a second: it may
        // have stopped (Ctrl-Z).
        let timeout = if control.relays_input {
            PollTimeout::from(STOP_CHECK)
        } else {
            PollTimeout::NONE
        };
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(err) => {
                tracing::warn!("terminal relay: poll: {err}");
                break;
            }
        }
        let ready = |i: usize| {
            fds.get(i)
                .and_then(PollFd::revents)
                .unwrap_or(PollFlags::empty())
        };
        let (wake_ready, master_ready) = (ready(0), ready(1));
        let person_ready = if read_person {
            ready(2)
        } else {
            PollFlags::empty()
        };
        drop(fds);
        if control.relays_input
            && let Some(group) = stopped_foreground(control)
        {
            if control.suspends {
                suspend_with(control, group);
            } else {
                let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGCONT);
            }
            continue;
        }
        if !wake_ready.is_empty() {
            drain_wake(woken);
            // A state change: look at it before touching either terminal.
            continue;
        }
        if master_ready.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
            match (&control.master.as_fd()).read_fd(&mut buf) {
                Ok(0) => break,
                // A person's terminal that takes no output (hung up, opened read-only)
                // loses it; the session is still drained, so it never blocks on it.
                Ok(n) => {
                    let _ = write_all(control.person.as_fd(), &buf[..n]);
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                // EIO: every slave closed, the session's output ended.
                Err(_) => break,
            }
        }
        if !pending.is_empty() && master_ready.contains(PollFlags::POLLOUT) {
            match (&control.master.as_fd()).write_fd(&pending) {
                Ok(n) => {
                    pending.drain(..n);
                }
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                Err(_) => break,
            }
        }
        if person_ready.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
            let room = PENDING_INPUT - pending.len();
            let take = room.min(buf.len());
            match (&control.person.as_fd()).read_fd(&mut buf[..take]) {
                // The person's terminal hung up: nothing more to relay from it.
                Ok(0) => input_open = false,
                Ok(n) => {
                    let mut chunk = &buf[..n];
                    while let Some(key) = suspend_key
                        && let Some(at) = chunk.iter().position(|b| *b == key)
                        && let Some(group) = suspendable_foreground(control, key)
                    {
                        pending.extend_from_slice(&chunk[..at]);
                        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGSTOP);
                        suspend_with(control, group);
                        chunk = &chunk[at + 1..];
                    }
                    pending.extend_from_slice(chunk);
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => input_open = false,
            }
        }
    }
    drain(control, &mut buf);
    *lock(&control.state) = State::Done;
    control.changed.notify_all();
}

/// The session's foreground process group, when its leader is stopped (`T`; a ptrace
/// stop of an escalation is `t`, not this).
fn stopped_foreground(control: &Control) -> Option<nix::unistd::Pid> {
    let group = nix::unistd::tcgetpgrp(control.master.as_fd()).ok()?;
    let stat = kernel::procfs::read_stat(group.as_raw()).ok()?;
    (stat.state == 'T').then_some(group)
}

/// The session's foreground group, when the person's suspend `key` would stop it in its
/// line discipline (ISIG on, the same key) but the kernel would drop that stop: the group
/// is the session leader's own, orphaned (its parent, execgate's, is in another
/// session). Ctrl-Z then suspends execgate with the session, as on a shared terminal. A
/// job-control shell in the session gives its jobs groups of their own: Ctrl-Z is then
/// its business and passes through.
fn suspendable_foreground(control: &Control, key: u8) -> Option<nix::unistd::Pid> {
    let group = nix::unistd::tcgetpgrp(control.master.as_fd()).ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", group.as_raw())).ok()?;
    let session: i32 = kernel::procfs::stat_field(&stat, 6)?.parse().ok()?;
    if session != group.as_raw() {
        return None;
    }
    let slave = kernel::terminal::open_peer(control.master.as_fd()).ok()?;
    let settings = termios::tcgetattr(slave.as_fd()).ok()?;
    let stops = settings.local_flags.contains(termios::LocalFlags::ISIG)
        && settings.control_chars[termios::SpecialCharacterIndices::VSUSP as usize] == key;
    stops.then_some(group)
}

/// The session's foreground program stopped: give the person's terminal back and stop
/// execgate (only when it [`Control::suspends`]); once continued, raw mode again, the
/// window size (it may have changed meanwhile), and the program continued.
fn suspend_with(control: &Control, group: nix::unistd::Pid) {
    use nix::sys::signal::{Signal, kill, killpg};
    {
        let saved = control.saved();
        if let Some(saved) = &saved {
            let _ = termios::tcsetattr(control.person.as_fd(), SetArg::TCSADRAIN, saved);
        }
        // Stops every thread of execgate here until the person's shell continues it (an
        // orphaned process group ignores it: nothing to stop to).
        let _ = kill(nix::unistd::getpid(), Signal::SIGTSTP);
        if let Some(saved) = saved {
            let mut raw = saved;
            termios::cfmakeraw(&mut raw);
            let _ = termios::tcsetattr(control.person.as_fd(), SetArg::TCSADRAIN, &raw);
        }
        if let Ok(size) = kernel::terminal::window_size(control.person.as_fd()) {
            let _ = kernel::terminal::set_window_size(control.master.as_fd(), &size);
        }
    }
    let _ = killpg(group, Signal::SIGCONT);
}

/// Copies what is left on the master to the person's terminal: until every slave is
/// closed (EIO), the master stays quiet for [`DRAIN_QUIET`], or [`DRAIN_LIMIT`] passed.
fn drain(control: &Control, buf: &mut [u8]) {
    let deadline = Instant::now() + DRAIN_LIMIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        let wait = DRAIN_QUIET.min(left);
        let mut fds = [PollFd::new(control.master.as_fd(), PollFlags::POLLIN)];
        let ms = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) => return,
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return,
        }
        match (&control.master.as_fd()).read_fd(buf) {
            Ok(0) => return,
            Ok(n) => {
                if write_all(control.person.as_fd(), &buf[..n]).is_err() {
                    return;
                }
            }
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return,
        }
    }
}

fn drain_wake(woken: &UnixStream) {
    let mut sink = [0u8; 64];
    while matches!((&*woken).read(&mut sink), Ok(n) if n > 0) {}
}

fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match (&fd).write_fd(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                let mut fds = [PollFd::new(fd, PollFlags::POLLOUT)];
                let _ = poll(&mut fds, PollTimeout::from(100u16));
            }
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// `read(2)`/`write(2)` on a borrowed descriptor.
trait RawIo {
    fn read_fd(&self, buf: &mut [u8]) -> io::Result<usize>;
    fn write_fd(&self, buf: &[u8]) -> io::Result<usize>;
}

impl RawIo for &BorrowedFd<'_> {
    fn read_fd(&self, buf: &mut [u8]) -> io::Result<usize> {
        nix::unistd::read(self, buf).map_err(io::Error::from)
    }

    fn write_fd(&self, buf: &[u8]) -> io::Result<usize> {
        nix::unistd::write(self, buf).map_err(io::Error::from)
    }
}

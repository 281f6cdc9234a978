//! Long-lived helper threads: the one that forks every session's process, and the one
//! that answers escalated copies' first exec.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked a child exits, not the process.
//! Forking from a pool thread that the runtime later retires would SIGKILL a live session,
//! so every session's fork happens here, on a thread that lives as long as the process.
//! (An escalated copy is started by its escalation thread instead, which outlives it:
//! the thread reaps the copy before it takes other work or ends.)

use std::io;
use std::process::{Child, Command};
use std::sync::OnceLock;
use std::sync::mpsc;

type Job = Box<dyn FnOnce() + Send>;

fn queue() -> &'static mpsc::Sender<Job> {
    static QUEUE: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    QUEUE.get_or_init(|| serve("execgate-spawner"))
}

/// A thread of its own that runs `Job`s in order, for the life of the process.
fn serve(name: &str) -> mpsc::Sender<Job> {
    let (tx, rx) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            for job in rx {
                job();
            }
        })
        .expect("a helper thread starts at first use");
    tx
}

/// Runs `job` on the one thread that answers the first exec of every escalated copy (its
/// listener arrives from the copy, which then waits in that exec until it is answered).
/// The copy is started by a thread that waits until it has exec'd (`CLONE_VFORK`), so the
/// answer must come from another thread; this one is always there, and woken while the
/// copy is still being set up, so the wake-up costs the copy nothing. `job` must not
/// block on anything but that copy.
pub(crate) fn answer_first_exec(job: impl FnOnce() + Send + 'static) -> io::Result<()> {
    static QUEUE: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    QUEUE
        .get_or_init(|| serve("execgate-first-exec"))
        .send(Box::new(job))
        .map_err(|_| io::Error::other("the first-exec thread is gone"))
}

/// Spawns `cmd` on the spawner thread and returns the child once it has exec'd (or failed).
pub(crate) fn spawn(mut cmd: Command) -> io::Result<Child> {
    submit(move || cmd.spawn())?.wait()
}

/// A spawn running on the spawner thread.
pub(crate) struct Pending<T>(mpsc::Receiver<io::Result<T>>);

impl<T> Pending<T> {
    /// Its result, once the spawner ran it.
    pub(crate) fn wait(self) -> io::Result<T> {
        self.0
            .recv()
            .map_err(|_| io::Error::other("the spawner thread is gone"))?
    }
}

/// Runs `spawn` on the spawner thread without waiting for it: the caller may have to
/// answer the new process's first exec before the spawn can return.
pub(crate) fn submit<T: Send + 'static>(
    spawn: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<Pending<T>> {
    let (tx, rx) = mpsc::sync_channel(1);
    let job: Job = Box::new(move || {
        // The receiver only goes away if the caller's thread died; nothing to report then.
        let _ = tx.send(spawn());
    });
    queue()
        .send(job)
        .map_err(|_| io::Error::other("the spawner thread is gone"))?;
    Ok(Pending(rx))
}

//! One long-lived thread that forks every process the supervisor starts.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked a child exits, not the process.
//! Forking from a pool thread that the runtime later retires would SIGKILL a live session,
//! so every fork happens here, on a thread that lives as long as the process. (An
//! escalated copy is cloned by its escalation thread instead, which outlives it: the
//! thread reaps its copy before it takes other work or ends.)

use std::io;
use std::sync::OnceLock;
use std::sync::mpsc;

type Job = Box<dyn FnOnce() + Send>;

fn queue() -> &'static mpsc::Sender<Job> {
    static QUEUE: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    QUEUE.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("execgate-spawner".into())
            .spawn(move || {
                for job in rx {
                    job();
                }
            })
            .expect("the spawner thread starts at first use");
        tx
    })
}

/// Runs `spawn` on the spawner thread and returns what it returned (a child once it has
/// exec'd, or why it could not).
pub(crate) fn run<T: Send + 'static>(
    spawn: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    submit(spawn)?.wait()
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

//! `execgate init [supervise flags] -- CMD ARGS...`: `supervise` with the duties of a
//! container's PID 1, as tini does them.
//!
//! - **Reap orphans.** The supervisor is a child subreaper (PID 1 is one by nature), so
//!   processes orphaned by escalated commands, and whatever is left when the command's own
//!   leader exits, become our children: on every SIGCHLD the unregistered zombies are reaped
//!   (`ChildRegistry::reap_orphans` never takes a status a spawner waits for). While the
//!   command's leader lives, orphans inside the session go to it (it is a subreaper too, so
//!   the teardown can find them); bash reaps those itself.
//! - **Forward signals.** SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 go to the
//!   session's process group, and execgate keeps waiting: the command decides what they
//!   mean. PID 1 of a PID namespace gets no default action for signals it does not handle,
//!   so without this `docker stop` would wait for its SIGKILL.
//! - **Exit with the command's status** (128 + N when a signal N ended it), after the
//!   session's teardown: no process of the tree is left behind.
//!
//! It never runs anything unsupervised: if the supervisor cannot start here (a container
//! profile that blocks seccomp user notification, say), it exits 2 with the reason.

use std::process::ExitCode;

use supervisor::teardown::ChildRegistry;
use supervisor::{Session, SessionOutcome, Signal, Signaller};
use tokio::signal::unix::{Signal as SignalStream, SignalKind, signal};

use crate::supervise::{self, Mode};

pub fn run(args: supervise::Args) -> anyhow::Result<ExitCode> {
    if std::process::id() != 1 {
        tracing::debug!("execgate init is not PID 1; it reaps the orphans it is given");
    }
    supervise::run_as(args, Mode::Init)
}

/// The signals PID 1 handles, installed before the command starts.
pub(crate) struct Signals {
    int: SignalStream,
    term: SignalStream,
    hup: SignalStream,
    quit: SignalStream,
    usr1: SignalStream,
    usr2: SignalStream,
    chld: SignalStream,
}

impl Signals {
    /// Needs the tokio runtime.
    pub(crate) fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
            quit: signal(SignalKind::quit())?,
            usr1: signal(SignalKind::user_defined1())?,
            usr2: signal(SignalKind::user_defined2())?,
            chld: signal(SignalKind::child())?,
        })
    }
}

/// Waits for the session as PID 1: forwards signals, reaps orphans, never exits early.
pub(crate) async fn wait_as_init(
    session: Session,
    signals: &Signaller,
    on_terminal: bool,
    incoming: Signals,
) -> anyhow::Result<SessionOutcome> {
    let Signals {
        int: mut sigint,
        term: mut sigterm,
        hup: mut sighup,
        quit: mut sigquit,
        usr1: mut sigusr1,
        usr2: mut sigusr2,
        chld: mut sigchld,
    } = incoming;
    let wait = session.wait();
    tokio::pin!(wait);
    loop {
        let forward = tokio::select! {
            outcome = &mut wait => return Ok(outcome?),
            _ = sigchld.recv() => {
                reap_orphans().await;
                continue;
            }
            _ = sigterm.recv() => Signal::Terminate,
            _ = sighup.recv() => Signal::Hangup,
            _ = sigusr1.recv() => Signal::User1,
            _ = sigusr2.recv() => Signal::User2,
            // On a terminal the session is the foreground group and got the key press
            // itself; passing it on again would deliver it twice.
            _ = sigint.recv() => if on_terminal { continue } else { Signal::Interrupt },
            _ = sigquit.recv() => if on_terminal { continue } else { Signal::Quit },
        };
        tracing::debug!(?forward, "forwarding a signal to the session");
        signals.send(forward);
    }
}

/// Reaps adopted zombies off the runtime: it scans `/proc`.
async fn reap_orphans() {
    match tokio::task::spawn_blocking(|| ChildRegistry::global().reap_orphans()).await {
        Ok(Ok(reaped)) if !reaped.is_empty() => tracing::debug!(?reaped, "orphans reaped"),
        Ok(Ok(_)) => {}
        Ok(Err(err)) => tracing::warn!("reaping orphans: {err}"),
        Err(err) => tracing::warn!("reaping orphans: {err}"),
    }
}

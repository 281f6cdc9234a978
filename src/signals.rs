//! What execgate does with the signals it receives, one function per subcommand's role.
//!
//! - `supervise` ([`wait_supervised`]): SIGINT/SIGTERM go to the session's tree and
//!   execgate exits at once (130/143); dropping the session kills what is left.
//! - `init` ([`InitSignals`], [`wait_as_init`]): PID 1's duties, as tini does them: every
//!   forwardable signal goes to the tree and execgate keeps waiting for the command; orphans
//!   re-parented to execgate are reaped on SIGCHLD.
//! - `init -- execgate mcp` ([`mcp_stop`]): orphans are reaped while the server runs;
//!   SIGTERM/SIGINT end it with 128 + the signal.
//!
//! Needs the tokio runtime; installs handlers only through tokio.

use std::process::ExitCode;

use supervisor::teardown::ChildRegistry;
use supervisor::{Session, SessionOutcome, Signal, Signaller};
use tokio::signal::unix::{Signal as SignalStream, SignalKind, signal};

/// Waits for the session; SIGINT/SIGTERM go to the tree and end execgate at once
/// (`Err(status)`), after which dropping the session kills whatever is left.
pub async fn wait_supervised(
    session: Session,
    signals: &Signaller,
    on_terminal: bool,
) -> anyhow::Result<Result<SessionOutcome, ExitCode>> {
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let wait = session.wait();
    tokio::pin!(wait);
    // Asked to stop: the signal goes to the tree first so programs that clean up on it
    // can; then dropping the session kills whatever is left.
    loop {
        tokio::select! {
            outcome = &mut wait => return Ok(Ok(outcome?)),
            _ = sigint.recv() => {
                // On a terminal the session got the same Ctrl-C; it decides.
                if on_terminal {
                    continue;
                }
                signals.send(Signal::Interrupt);
                return Ok(Err(ExitCode::from(130)));
            }
            _ = sigterm.recv() => {
                signals.send(Signal::Terminate);
                return Ok(Err(ExitCode::from(143)));
            }
        }
    }
}

/// The signals PID 1 handles, installed before the command starts: a SIGTERM that arrives
/// once it runs must not find PID 1 without a handler (ignored).
#[derive(Debug)]
pub struct InitSignals {
    int: SignalStream,
    term: SignalStream,
    hup: SignalStream,
    quit: SignalStream,
    usr1: SignalStream,
    usr2: SignalStream,
    chld: SignalStream,
}

impl InitSignals {
    pub fn install() -> std::io::Result<InitSignals> {
        Ok(InitSignals {
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
pub async fn wait_as_init(
    session: Session,
    signals: &Signaller,
    on_terminal: bool,
    incoming: InitSignals,
) -> anyhow::Result<SessionOutcome> {
    let InitSignals {
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

/// While the in-process MCP server runs as PID 1: reaps orphans on SIGCHLD and resolves
/// with 128 + the signal on SIGTERM or SIGINT.
pub async fn mcp_stop() -> std::io::Result<u8> {
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigchld = signal(SignalKind::child())?;
    // Zombies adopted before the handler was there.
    reap_orphans().await;
    loop {
        tokio::select! {
            _ = sigchld.recv() => reap_orphans().await,
            _ = sigterm.recv() => return Ok(128 + 15),
            _ = sigint.recv() => return Ok(128 + 2),
        }
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

//! execgate's MCP server: the `shell` tool agents call, with Codex's parameters.
//!
//! Every `shell` call is a supervisor session: a stock bash whose every exec is decided by
//! the exec policy. `prompt` decisions are asked of the human through MCP elicitation, and
//! Codex's sandbox state (`codex/sandbox-state`) chooses the sandbox. Logs go to stderr
//! only: stdout carries the protocol.
//!
//! This crate makes no raw syscall and holds no `unsafe`; processes belong to `supervisor`.
//! It parses no command line and loads no policy: the `execgate` binary does both, builds
//! the supervisor and hands this crate a [`ServerSettings`].

#![forbid(unsafe_code)]

pub mod budget;
pub mod capture;
pub mod elicitation;
pub mod login;
pub mod runner;
pub mod sandbox_state;
pub mod server;
pub mod shell;
pub mod supervised;
pub mod transport;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rmcp::ServiceExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

pub use runner::{Finished, RunError, Sessions};
pub use server::{ServerSettings, ShellServer};

/// Serves MCP on `reader`/`writer` until the client disconnects; every session still
/// running then is killed. Returns when the connection is done.
pub async fn serve<R, W>(
    sessions: Arc<dyn Sessions>,
    settings: ServerSettings,
    reader: R,
    writer: W,
) -> Result<(), ServeError>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    serve_until(sessions, settings, reader, writer, CancellationToken::new()).await
}

/// [`serve`], also ending when `stop` is cancelled (a shutdown signal): the running calls
/// end as on a disconnect, their sessions killed, and the service closes.
pub async fn serve_until<R, W>(
    sessions: Arc<dyn Sessions>,
    settings: ServerSettings,
    reader: R,
    writer: W,
    stop: CancellationToken,
) -> Result<(), ServeError>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let disconnected = stop.child_token();
    let server = ShellServer::new(sessions, settings, disconnected.clone());
    let transport = transport::JsonLines::new(reader, writer, disconnected.clone());
    let running = tokio::select! {
        running = server.serve(transport) => {
            running.map_err(|e| ServeError::Initialize(e.to_string()))?
        }
        () = stop.cancelled() => return Ok(()),
    };
    let service = running.cancellation_token();
    let stopping = stop.clone();
    let watcher = tokio::spawn(async move {
        stopping.cancelled().await;
        service.cancel();
    });
    let quit = running.waiting().await;
    watcher.abort();
    // However the loop ended, no session may outlive it.
    disconnected.cancel();
    quit.map_err(|e| ServeError::Internal(e.to_string()))?;
    Ok(())
}

/// [`serve_until`] on this process's stdin/stdout, also ending when `stop` resolves (a
/// shutdown signal). Returns `stop`'s output if it ended the server, `None` if the client
/// went away first; either way every session is gone by then. Needs the tokio runtime;
/// the caller (the binary) builds it, the supervisor and the settings.
pub async fn serve_stdio_until<Fut, T>(
    sessions: Arc<dyn Sessions>,
    settings: ServerSettings,
    stop: Fut,
) -> Result<Option<T>, ServeError>
where
    Fut: Future<Output = T>,
{
    let stop_token = CancellationToken::new();
    // MCP clients connect through pipes: use them directly (non-blocking, on the
    // reactor). tokio's stdin/stdout hand every read and write to a blocking thread,
    // a thread hop per message; they remain for anything else (a file, a tty).
    let serving = async {
        match stdio_pipes() {
            Some((reader, writer)) => {
                serve_until(sessions, settings, reader, writer, stop_token.clone()).await
            }
            None => {
                let (reader, writer) = (tokio::io::stdin(), tokio::io::stdout());
                serve_until(sessions, settings, reader, writer, stop_token.clone()).await
            }
        }
    };
    tokio::pin!(serving);
    tokio::pin!(stop);
    tokio::select! {
        served = &mut serving => served.map(|()| None),
        output = &mut stop => {
            stop_token.cancel();
            // The calls end at once (their sessions killed); bounded all the same.
            match tokio::time::timeout(STOP_GRACE, &mut serving).await {
                Ok(Err(err)) => tracing::warn!("while stopping: {err}"),
                Ok(Ok(())) => {}
                Err(_) => tracing::warn!("the MCP service did not close within {STOP_GRACE:?}"),
            }
            Ok(Some(output))
        }
    }
}

/// How long a stop waits for the service to close after its calls were cancelled.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Stdin and stdout as async pipe ends, when both are pipes. Works on duplicates, so the
/// process's own fds 0 and 1 stay open; the duplicates share their file descriptions, which
/// become non-blocking (nothing else in this process reads stdin or writes stdout).
fn stdio_pipes() -> Option<(
    tokio::net::unix::pipe::Receiver,
    tokio::net::unix::pipe::Sender,
)> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::FileTypeExt;
    let stdin = std::io::stdin().as_fd().try_clone_to_owned().ok()?;
    let stdout = std::io::stdout().as_fd().try_clone_to_owned().ok()?;
    // Check both before converting either: the conversion makes the file description
    // non-blocking, which tokio's blocking stdin/stdout (the fallback) cannot read.
    let is_fifo = |fd: &std::os::fd::OwnedFd| {
        fd.try_clone()
            .map(std::fs::File::from)
            .and_then(|f| f.metadata())
            .is_ok_and(|m| m.file_type().is_fifo())
    };
    if !is_fifo(&stdin) || !is_fifo(&stdout) {
        return None;
    }
    let reader = tokio::net::unix::pipe::Receiver::from_owned_fd(stdin).ok()?;
    let writer = tokio::net::unix::pipe::Sender::from_owned_fd(stdout).ok()?;
    Some((reader, writer))
}

/// Why serving stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("MCP initialization failed: {0}")]
    Initialize(String),
    #[error("the MCP service failed: {0}")]
    Internal(String),
}

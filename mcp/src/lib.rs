//! execgate's MCP server: the `shell` tool agents call, with Codex's parameters.
//!
//! Every `shell` call is a supervisor session: a stock bash whose every exec is decided by
//! the exec policy. `prompt` decisions are asked of the human through MCP elicitation, and
//! Codex's sandbox state (`codex/sandbox-state`) chooses the sandbox. Logs go to stderr
//! only: stdout carries the protocol.
//!
//! This crate makes no raw syscall and holds no `unsafe`; processes belong to `supervisor`.

#![forbid(unsafe_code)]

pub mod capture;
pub mod cli;
pub mod elicitation;
pub mod runner;
pub mod sandbox_state;
pub mod server;
pub mod shell;
pub mod transport;

use rmcp::ServiceExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

pub use runner::{Finished, RunError, Sessions};
pub use server::{ServerSettings, ShellServer};

/// Serves MCP on `reader`/`writer` until the client disconnects; every session still
/// running then is killed. Returns when the connection is done.
pub async fn serve<R, W>(
    sessions: std::sync::Arc<dyn Sessions>,
    settings: ServerSettings,
    reader: R,
    writer: W,
) -> Result<(), ServeError>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let disconnected = CancellationToken::new();
    let server = ShellServer::new(sessions, settings, disconnected.clone());
    let transport = transport::JsonLines::new(reader, writer, disconnected.clone());
    let running = server
        .serve(transport)
        .await
        .map_err(|e| ServeError::Initialize(e.to_string()))?;
    let quit = running.waiting().await;
    // However the loop ended, no session may outlive it.
    disconnected.cancel();
    quit.map_err(|e| ServeError::Internal(e.to_string()))?;
    Ok(())
}

/// Why serving stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("MCP initialization failed: {0}")]
    Initialize(String),
    #[error("the MCP service failed: {0}")]
    Internal(String),
}

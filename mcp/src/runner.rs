//! The seam between the MCP surface and the processes: run one session, capture its output.
//!
//! [`Sessions`] is implemented by the supervisor-backed runner for real use and by test
//! doubles for protocol tests that need no kernel. Cancellation is dropping the future: an
//! implementation must kill the session's tree when that happens.

use std::future::Future;
use std::pin::Pin;

use supervisor::{SessionOutcome, SessionSpec};

use crate::capture::Captured;

/// A session that ran to its end (exit, signal or timeout).
#[derive(Debug, Clone)]
pub struct Finished {
    /// How it ended, with what the sandbox enforced.
    pub outcome: SessionOutcome,
    pub captured: Captured,
}

/// The tool itself could not run the command (not a non-zero exit).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("the session did not start: {0}")]
    Spawn(String),
    #[error("the session failed: {0}")]
    Session(String),
    #[error("the session's output pipes failed: {0}")]
    Pipes(#[source] std::io::Error),
}

/// Boxed future returned by [`Sessions::run`].
pub type RunFuture<'a> = Pin<Box<dyn Future<Output = Result<Finished, RunError>> + Send + 'a>>;

/// Runs sessions. `spec.stdio` is always [`supervisor::SessionStdio::Piped`].
pub trait Sessions: Send + Sync + 'static {
    /// Runs `spec` to its end, keeping at most `max_output_bytes` of each stream.
    fn run(&self, spec: SessionSpec, max_output_bytes: usize) -> RunFuture<'_>;
}

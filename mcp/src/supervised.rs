//! The real [`Sessions`]: each call is a [`supervisor::Session`] with piped output.
//!
//! Owns only the plumbing between the two: spawn, drain both pipes into the bounded
//! capture while waiting, and hand back the outcome. Dropping the future drops the
//! session, and the supervisor kills its tree.

use std::sync::Arc;
use std::time::Duration;

use supervisor::{SessionSpec, SessionStdio, Supervisor};
use tokio_util::sync::CancellationToken;

use crate::capture::{capture, pipe_reader};
use crate::runner::{Finished, RunError, RunFuture, Sessions};

/// How long output may keep arriving after the session ended. The supervisor kills the
/// tree at its end, so the pipes normally close at once; this only bounds the wait for a
/// writer that escaped the tree and still holds a pipe.
const PIPE_GRACE: Duration = Duration::from_millis(500);

/// Sessions started by one shared [`Supervisor`].
#[derive(Debug, Clone)]
pub struct SupervisedSessions {
    supervisor: Arc<Supervisor>,
}

impl SupervisedSessions {
    pub fn new(supervisor: Arc<Supervisor>) -> Self {
        SupervisedSessions { supervisor }
    }
}

impl Sessions for SupervisedSessions {
    fn run(&self, mut spec: SessionSpec, max_output_bytes: usize) -> RunFuture<'_> {
        Box::pin(async move {
            spec.stdio = SessionStdio::Piped;
            let mut session = self
                .supervisor
                .spawn(spec)
                .map_err(|e| RunError::Spawn(e.to_string()))?;
            let stdout = session
                .stdout
                .take()
                .map(pipe_reader)
                .transpose()
                .map_err(RunError::Pipes)?;
            let stderr = session
                .stderr
                .take()
                .map(pipe_reader)
                .transpose()
                .map_err(RunError::Pipes)?;
            let stop = CancellationToken::new();
            // However this future ends, the reader stops with it.
            let _stop_reader = stop.clone().drop_guard();
            let mut reader = tokio::spawn(capture(stdout, stderr, max_output_bytes, stop.clone()));
            let outcome = session
                .wait()
                .await
                .map_err(|e| RunError::Session(e.to_string()))?;
            let captured = match tokio::time::timeout(PIPE_GRACE, &mut reader).await {
                Ok(joined) => joined,
                Err(_) => {
                    stop.cancel();
                    reader.await
                }
            }
            .map_err(|e| RunError::Session(format!("the output reader failed: {e}")))?;
            Ok(Finished { outcome, captured })
        })
    }
}

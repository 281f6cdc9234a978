//! Asking a human: the one question a `prompt` decision raises.
//!
//! The CLI answers on the terminal, the MCP server by elicitation. The supervisor pauses the
//! session's stopwatch while an [`Approver`] is asking, so waiting for a person never counts
//! against a timeout.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use policy::Evaluation;

/// Everything a person needs to answer "may this run?".
#[derive(Debug, Clone)]
pub struct ApprovalRequest {
    /// Path of the executable, absolute, as the supervisor resolved it.
    pub program: PathBuf,
    /// Full argv, including argv\[0\].
    pub argv: Vec<String>,
    /// The working directory of the process that is exec'ing.
    pub cwd: PathBuf,
    /// Why it is being asked: the matched rules or the heuristic.
    pub evaluation: Evaluation,
}

/// A person's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Approval {
    /// Run it, this once.
    Allow,
    /// Run it, and do not ask again for the same command for the rest of this session.
    AllowForSession,
    /// Do not run it; `reason` reaches the process's stderr and the outcome.
    Deny { reason: String },
}

/// Boxed future returned by [`Approver::ask`] (object-safe without `async_trait`).
pub type ApprovalFuture<'a> = Pin<Box<dyn Future<Output = Approval> + Send + 'a>>;

/// Something that can ask a human. Implementations must not block the thread: a slow
/// answer to one exec must not stall the other execs of the tree.
pub trait Approver: Send + Sync {
    /// Ask about one exec. Cancellation (the future dropped) means the session ended.
    fn ask(&self, request: ApprovalRequest) -> ApprovalFuture<'_>;
}

//! What a session is asked to run, and how it ended.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use policy::{DecidedBy, Decision, RuleMatch};
use serde::Serialize;

use crate::approval::Approver;
use crate::rlimits::ResourceLimits;
use crate::sandbox::{Enforcement, SandboxPolicy};

/// Where the session's stdin/stdout/stderr go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStdio {
    /// The supervisor's own stdio, the session in a process group of its own (the CLI
    /// without a terminal).
    Inherit,
    /// The supervisor's own stdio, the session staying in the terminal's foreground
    /// process group so it can read the terminal (the CLI on a terminal). Ctrl-C reaches
    /// the session's programs directly.
    InheritForeground,
    /// Fresh pipes: stdin at EOF, stdout and stderr handed to the caller (MCP).
    Piped,
}

/// One session: a command (normally `bash -c SCRIPT`), where and how to run it.
#[derive(Clone)]
pub struct SessionSpec {
    /// argv of the session's first program; argv\[0\] is looked up in `PATH`.
    pub argv: Vec<String>,
    /// Working directory; must exist.
    pub workdir: PathBuf,
    /// Extra environment on top of the supervisor's own.
    pub env: Vec<(String, String)>,
    pub sandbox: SandboxPolicy,
    /// Per-process resource limits inside the session.
    pub limits: ResourceLimits,
    /// Wall-clock limit, not counting time spent waiting for a human.
    pub timeout: Option<Duration>,
    pub stdio: SessionStdio,
    /// Who answers `prompt` decisions for this session.
    pub approver: Arc<dyn Approver>,
}

impl std::fmt::Debug for SessionSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionSpec")
            .field("argv", &self.argv)
            .field("workdir", &self.workdir)
            .field("env", &self.env)
            .field("sandbox", &self.sandbox)
            .field("limits", &self.limits)
            .field("timeout", &self.timeout)
            .field("stdio", &self.stdio)
            .finish_non_exhaustive()
    }
}

/// How a process ended (the one type, from `kernel::process`).
pub use kernel::process::ExitStatus;

/// Where an exec ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RanIn {
    /// Continued inside the sandbox.
    Sandbox,
    /// The supervisor ran its own copy outside the sandbox.
    Escalated,
    /// It did not run.
    Denied,
}

/// What happened to one exec of the tree; also one line of the audit log.
#[derive(Debug, Clone, Serialize)]
pub struct ExecRecord {
    pub pid: i32,
    pub program: PathBuf,
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    /// The policy's decision.
    pub decision: Decision,
    /// Who settled what happened.
    pub decided_by: Decider,
    pub matched_rules: Vec<RuleMatch>,
    pub ran_in: RanIn,
    /// One line for a person: why it was allowed, denied or escalated.
    pub reason: String,
    /// Exit status, for escalated execs (the supervisor waited for them).
    pub status: Option<ExitStatus>,
    /// Milliseconds since the Unix epoch when the exec was stopped.
    pub time_ms: u64,
    /// Parent pid, when it could still be read.
    pub ppid: Option<i32>,
    /// How long an escalated command ran, in milliseconds.
    pub duration_ms: Option<u64>,
    /// The session this exec belongs to.
    pub session: u64,
}

/// Who settled what happened to an exec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decider {
    /// A rule of the policy.
    Rule,
    /// The built-in heuristics (no rule matched).
    Heuristics,
    /// A person, answering a prompt.
    Human,
    /// The supervisor itself: the session's own program, or an exec that could not be
    /// read or that names no existing file.
    Supervisor,
}

impl From<DecidedBy> for Decider {
    fn from(d: DecidedBy) -> Self {
        match d {
            DecidedBy::Rule => Decider::Rule,
            DecidedBy::Heuristics => Decider::Heuristics,
        }
    }
}

/// How a session ended.
#[derive(Debug, Clone, Serialize)]
pub struct SessionOutcome {
    pub status: ExitStatus,
    pub timed_out: bool,
    /// Wall-clock time, including time spent waiting for a human.
    pub duration: Duration,
    /// Execs that were denied or escalated (allowed sandboxed execs only go to the audit log).
    pub notable_execs: Vec<ExecRecord>,
    /// What the sandbox enforced.
    pub sandbox: Enforcement,
}

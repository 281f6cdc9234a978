//! The result of evaluating one command: the decision, who made it, and why.

use std::path::PathBuf;

use serde::Serialize;

use crate::{DecidedBy, Decision};

/// Where a rule was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleOrigin {
    pub file: PathBuf,
    pub line: u32,
}

/// One rule that matched the command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleMatch {
    pub matched_prefix: Vec<String>,
    pub decision: Decision,
    pub justification: Option<String>,
    pub origin: Option<RuleOrigin>,
}

/// The heuristics' verdict, used when no rule matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeuristicVerdict {
    pub decision: Decision,
    pub reason: String,
}

/// The policy's answer for one command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evaluation {
    pub decision: Decision,
    pub decided_by: DecidedBy,
    pub matched_rules: Vec<RuleMatch>,
    pub heuristic: Option<HeuristicVerdict>,
}

//! execgate's exec policy: what happens to one `execve`.
//!
//! Pure decision logic: no syscalls, no I/O beyond reading rules files, no `unsafe`.
//! The supervisor hands in the program and its arguments; this crate answers with a
//! [`Decision`], who made it ([`DecidedBy`]) and every rule that matched.
//!
//! Rules files are Codex's execpolicy language (Starlark `prefix_rule`,
//! `host_executable`, `network_rule`), so `~/.codex/rules/*.rules` work unchanged. When
//! no rule matches, the [`heuristics`] decide.

#![forbid(unsafe_code)]

mod decision;
mod error;
mod evaluation;
pub mod heuristics;
pub mod lint;
mod policy;
mod rule;
mod rules_file;
mod shell_script;

pub use decision::{DecidedBy, Decision};
pub use error::{LoadError, SourceLocation};
pub use evaluation::{CodexCheckView, Evaluation, HeuristicVerdict, MatchedBy, RuleMatch};
pub use lint::{Risk, RuleWarning};
pub use policy::{LoadOptions, Policy};
pub use rule::RuleOrigin;

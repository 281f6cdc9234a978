//! execgate's exec policy: what happens to one `execve`.
//!
//! Pure decision logic: no `unsafe`, no I/O beyond reading rules files and appending an
//! approved rule to one ([`amend`]).
//! The supervisor hands in the program and its arguments; this crate answers with a
//! [`Decision`], who made it ([`DecidedBy`]) and every rule that matched.
//!
//! Rules files are Codex's execpolicy language (Starlark `prefix_rule`,
//! `host_executable`, `network_rule`), so `~/.codex/rules/*.rules` work unchanged. When
//! no rule matches, the [`heuristics`] decide.
//!
//! Two ways to match, one rules language:
//! - [`Policy::evaluate`] matches as `codex execpolicy check` does (`execgate check`): the
//!   exact program token first, then the basename of an absolute program unless a
//!   `host_executable()` excludes its path.
//! - [`Policy::evaluate_exec`] decides the exec the kernel is about to run (the
//!   supervisor): allow matches narrowly, deny matches broadly. `allow` rules match as
//!   above; every `forbidden` and `prompt` rule whose program token has the program's
//!   basename matches as well, whatever `host_executable()` or the exact-path rules say
//!   (so `/tmp/git push` cannot escape a forbidden `git push`, openai/codex#37079), and
//!   the strictest decision wins. Each [`RuleMatch`] says how it matched
//!   ([`RuleMatch::matched_by`]); before escalating on a basename match the caller checks
//!   the file is the one the name stands for ([`Policy::host_executable_paths`]).
//!
//! [`Policy::lint`] names the `allow` rules that hand out a shell (an interpreter, a build
//! tool, `find`, `env`, a bare `git`, ...): see [`lint`] for the table.

#![forbid(unsafe_code)]

pub mod amend;
mod decision;
mod error;
mod evaluation;
pub mod heuristics;
pub mod lint;
pub mod network;
mod policy;
mod rule;
mod rules_file;
mod shell_script;

pub use decision::{DecidedBy, Decision};
pub use error::{LoadError, SourceLocation};
pub use evaluation::{CodexCheckView, Evaluation, HeuristicVerdict, MatchedBy, RuleMatch};
pub use lint::{Risk, RuleWarning};
pub use policy::{CheckOptions, ListedRule, LoadOptions, Policy};
pub use rule::{Layer, RuleOrigin};
pub use shell_script::plain_commands;

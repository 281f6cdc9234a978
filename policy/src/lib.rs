//! execgate's exec policy: what happens to one `execve`.
//!
//! Pure decision logic: no syscalls, no I/O beyond reading rules files, no `unsafe`.
//! The supervisor hands in the program and its arguments; this crate answers with a
//! [`Decision`], who made it ([`DecidedBy`]) and every rule that matched.

#![forbid(unsafe_code)]

mod decision;
mod evaluation;

pub use decision::{DecidedBy, Decision};
pub use evaluation::{Evaluation, HeuristicVerdict, RuleMatch, RuleOrigin};

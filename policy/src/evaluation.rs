//! The answer for one command: the decision, who made it, and the evidence (every matched
//! rule, or the heuristics' verdict), in execgate's own shape and in the shape of
//! `codex execpolicy check`.

use std::path::PathBuf;

use serde::Serialize;
use serde::ser::{SerializeMap, SerializeStruct};

use crate::decision::{DecidedBy, Decision};
use crate::rule::RuleOrigin;

/// The policy's answer for one exec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evaluation {
    /// The strictest decision among the matched rules, or the heuristics' decision.
    pub decision: Decision,
    /// Whether a rule or the heuristics decided.
    pub decided_by: DecidedBy,
    /// Every rule that matched, in the order the rules were loaded.
    pub matched_rules: Vec<RuleMatch>,
    /// Set exactly when no rule matched.
    pub heuristic: Option<HeuristicVerdict>,
}

/// One rule that matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleMatch {
    /// The command tokens the rule's pattern covered (first token as written in the rule).
    pub matched_prefix: Vec<String>,
    /// The rule's decision.
    pub decision: Decision,
    /// The rule's `justification`, if it has one.
    pub justification: Option<String>,
    /// Where the rule was written.
    pub origin: Option<RuleOrigin>,
    /// The program path, when the rule matched it by basename: through Codex's fallback
    /// (a bare-name rule, an absolute program), or, in [`crate::Policy::evaluate_exec`],
    /// a `forbidden`/`prompt` rule matching any path with its basename.
    pub resolved_program: Option<PathBuf>,
}

/// How a rule's program token matched the program (see [`RuleMatch::matched_by`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum MatchedBy {
    /// The rule names a path (its token holds a `/`) and the program is that path, after
    /// lexical normalisation (`//`, `.`, `..`): the caller must still check that the path
    /// resolves to the file it executes.
    ExactPath,
    /// The rule names a program by name and the program's basename is that name (a bare
    /// token, or a path token matched by basename at run time). Nothing says which file:
    /// before escalating, the caller checks the file is the one the name stands for (the
    /// [`crate::Policy::host_executable_paths`], else a trusted `PATH`).
    Basename,
}

impl RuleMatch {
    /// Whether the rule matched by exact path or by basename. The rule's program token as
    /// written is `matched_prefix[0]`. Derived from the fields: a match by basename either
    /// records the program in `resolved_program` or has a token without `/`.
    pub fn matched_by(&self) -> MatchedBy {
        let token_is_path = self
            .matched_prefix
            .first()
            .is_some_and(|token| token.contains('/'));
        if token_is_path && self.resolved_program.is_none() {
            MatchedBy::ExactPath
        } else {
            MatchedBy::Basename
        }
    }
}

/// What the heuristics decided for a command no rule matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeuristicVerdict {
    /// allow (read-only list, or the default) or prompt (dangerous list).
    pub decision: Decision,
    /// One line: which list, or the default, and for which command.
    pub reason: String,
}

impl Evaluation {
    /// The JSON of `codex execpolicy check`, byte for byte: `matchedRules` with
    /// `prefixRuleMatch` objects (`matchedPrefix`, `decision`, `resolvedProgram`,
    /// `justification`), then the top-level `decision`, omitted when no rule matched.
    pub fn to_codex_json(&self) -> serde_json::Value {
        // The view serializes plain strings and numbers: this cannot fail.
        serde_json::to_value(self.codex_view()).unwrap_or(serde_json::Value::Null)
    }

    /// [`Evaluation::to_codex_json`] plus execgate's evidence (`execgate check --explain`):
    /// each `prefixRuleMatch` also carries the rule's `origin` (`file`, `line`), and the
    /// object ends with `decidedBy`, and `heuristics` (`decision`, `reason`) when no rule
    /// matched.
    pub fn to_explained_json(&self) -> serde_json::Value {
        serde_json::to_value(self.explained_view()).unwrap_or(serde_json::Value::Null)
    }

    /// [`Evaluation::to_codex_json`] as a value that serializes with the fields in Codex's
    /// order (for printing).
    pub fn codex_view(&self) -> CodexCheckView<'_> {
        CodexCheckView {
            evaluation: self,
            explain: false,
        }
    }

    /// [`Evaluation::to_explained_json`] as a value that serializes in order.
    pub fn explained_view(&self) -> CodexCheckView<'_> {
        CodexCheckView {
            evaluation: self,
            explain: true,
        }
    }

    /// One line for a human: the decision, which rule (pattern and file:line) or heuristic
    /// made it, and the justification.
    pub fn reason(&self) -> String {
        if let Some(verdict) = &self.heuristic {
            return format!("{} by heuristics: {}", self.decision, verdict.reason);
        }
        let Some(rule) = self
            .matched_rules
            .iter()
            .find(|rule| rule.decision == self.decision)
        else {
            return format!(
                "{} (no rule and no heuristic verdict recorded)",
                self.decision
            );
        };
        let prefix = shlex::try_join(rule.matched_prefix.iter().map(String::as_str))
            .unwrap_or_else(|_| rule.matched_prefix.join(" "));
        let mut line = format!("{} by rule `{prefix}`", self.decision);
        if let Some(origin) = &rule.origin {
            line.push_str(&format!(" ({origin})"));
        }
        if let Some(justification) = &rule.justification {
            line.push_str(": ");
            line.push_str(justification);
        }
        line
    }
}

/// Serializes an [`Evaluation`] as `codex execpolicy check` prints it (see
/// [`Evaluation::to_codex_json`]), with execgate's evidence or without.
#[derive(Debug, Clone, Copy)]
pub struct CodexCheckView<'a> {
    evaluation: &'a Evaluation,
    explain: bool,
}

struct PrefixRuleMatchView<'a>(&'a RuleMatch, bool);

impl Serialize for PrefixRuleMatchView<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Inner<'a>(&'a RuleMatch, bool);
        impl Serialize for Inner<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let m = self.0;
                let mut s = serializer.serialize_struct("PrefixRuleMatch", 5)?;
                s.serialize_field("matchedPrefix", &m.matched_prefix)?;
                s.serialize_field("decision", &m.decision)?;
                if let Some(program) = &m.resolved_program {
                    s.serialize_field("resolvedProgram", program)?;
                } else {
                    s.skip_field("resolvedProgram")?;
                }
                if let Some(justification) = &m.justification {
                    s.serialize_field("justification", justification)?;
                } else {
                    s.skip_field("justification")?;
                }
                if let Some(origin) = m.origin.as_ref().filter(|_| self.1) {
                    s.serialize_field("origin", origin)?;
                } else {
                    s.skip_field("origin")?;
                }
                s.end()
            }
        }
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry("prefixRuleMatch", &Inner(self.0, self.1))?;
        map.end()
    }
}

impl Serialize for CodexCheckView<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let e = self.evaluation;
        let matches: Vec<PrefixRuleMatchView<'_>> = e
            .matched_rules
            .iter()
            .map(|m| PrefixRuleMatchView(m, self.explain))
            .collect();
        let mut s = serializer.serialize_struct("ExecPolicyCheck", 4)?;
        s.serialize_field("matchedRules", &matches)?;
        if e.matched_rules.is_empty() {
            s.skip_field("decision")?;
        } else {
            s.serialize_field("decision", &e.decision)?;
        }
        if self.explain {
            s.serialize_field("decidedBy", &e.decided_by)?;
        } else {
            s.skip_field("decidedBy")?;
        }
        if let Some(verdict) = e.heuristic.as_ref().filter(|_| self.explain) {
            s.serialize_field("heuristics", verdict)?;
        } else {
            s.skip_field("heuristics")?;
        }
        s.end()
    }
}

//! The verdict on one exec, ordered by strictness.

use serde::{Deserialize, Serialize};

/// What to do with one exec. The derived order is strictness: when several rules match,
/// the greatest decision wins (`Forbidden > Prompt > Allow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Run it.
    Allow,
    /// Ask a human first.
    Prompt,
    /// Refuse it.
    Forbidden,
}

impl Decision {
    /// The spelling used in rules files and in `codex execpolicy check` output.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Prompt => "prompt",
            Decision::Forbidden => "forbidden",
        }
    }
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who decided. Codex semantics: a command allowed or prompted because a *rule* said so
/// runs outside the sandbox (escalated); one the heuristics allowed runs inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecidedBy {
    /// At least one rule matched.
    Rule,
    /// No rule matched; the built-in heuristics decided.
    Heuristics,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strictest_decision_is_the_maximum() {
        let all = [Decision::Allow, Decision::Forbidden, Decision::Prompt];
        assert_eq!(all.iter().max(), Some(&Decision::Forbidden));
        assert_eq!(
            [Decision::Allow, Decision::Prompt].iter().max(),
            Some(&Decision::Prompt)
        );
    }

    #[test]
    fn serializes_with_rules_file_spelling() {
        assert_eq!(
            serde_json::to_string(&Decision::Forbidden).unwrap(),
            "\"forbidden\""
        );
        let d: Decision = serde_json::from_str("\"prompt\"").unwrap();
        assert_eq!(d, Decision::Prompt);
    }
}

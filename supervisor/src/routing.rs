//! From the policy's evaluation (and a person's answer) to what happens to the exec.
//!
//! Pure: no kernel, no I/O, so every combination is unit-tested. Codex's rule for where a
//! command runs: a decision that comes from a rule runs outside the sandbox (escalated);
//! one that comes from the heuristics continues inside it. A person approving a prompt
//! does not change where: an approved rule-prompt escalates, an approved heuristic-prompt
//! runs sandboxed.

use policy::{DecidedBy, Decision, Evaluation};

use crate::approval::Approval;
use crate::sandbox::SandboxMode;

/// What the supervisor does with one exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Let it continue inside the sandbox.
    Continue,
    /// Run the supervisor's own copy outside the sandbox and hand the status back.
    Escalate,
    /// Refuse with `EACCES`; the reason goes to the process's stderr.
    Deny { reason: String },
    /// Ask a person first, then call [`after_approval`].
    Ask,
}

/// The action for an evaluation, before anyone is asked.
pub fn route(eval: &Evaluation, sandbox: SandboxMode) -> Action {
    match eval.decision {
        Decision::Forbidden => Action::Deny {
            reason: eval.reason(),
        },
        Decision::Prompt => Action::Ask,
        Decision::Allow => where_to_run(eval.decided_by, sandbox),
    }
}

/// The action once a person has answered a prompt.
pub fn after_approval(eval: &Evaluation, approval: &Approval, sandbox: SandboxMode) -> Action {
    match approval {
        Approval::Allow | Approval::AllowForSession => where_to_run(eval.decided_by, sandbox),
        Approval::Deny { reason } => Action::Deny {
            reason: reason.clone(),
        },
    }
}

fn where_to_run(decided_by: DecidedBy, sandbox: SandboxMode) -> Action {
    match (decided_by, sandbox) {
        // Outside the sandbox is where it already runs: no need for a second process.
        (_, SandboxMode::DangerFullAccess) => Action::Continue,
        (DecidedBy::Rule, _) => Action::Escalate,
        (DecidedBy::Heuristics, _) => Action::Continue,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use policy::{HeuristicVerdict, RuleMatch};

    fn rule(decision: Decision) -> Evaluation {
        Evaluation {
            decision,
            decided_by: DecidedBy::Rule,
            matched_rules: vec![RuleMatch {
                matched_prefix: vec!["git".into(), "push".into()],
                decision,
                justification: Some("pushing publishes work".into()),
                origin: None,
                resolved_program: None,
            }],
            heuristic: None,
        }
    }

    fn heuristic(decision: Decision) -> Evaluation {
        Evaluation {
            decision,
            decided_by: DecidedBy::Heuristics,
            matched_rules: vec![],
            heuristic: Some(HeuristicVerdict {
                decision,
                reason: "test".into(),
            }),
        }
    }

    const WS: SandboxMode = SandboxMode::WorkspaceWrite;

    #[test]
    fn rule_allow_escalates_heuristic_allow_stays_inside() {
        assert_eq!(route(&rule(Decision::Allow), WS), Action::Escalate);
        assert_eq!(route(&heuristic(Decision::Allow), WS), Action::Continue);
        assert_eq!(
            route(&rule(Decision::Allow), SandboxMode::ReadOnly),
            Action::Escalate
        );
    }

    #[test]
    fn full_access_never_needs_a_second_process() {
        let full = SandboxMode::DangerFullAccess;
        assert_eq!(route(&rule(Decision::Allow), full), Action::Continue);
        let approved = after_approval(&rule(Decision::Prompt), &Approval::Allow, full);
        assert_eq!(approved, Action::Continue);
    }

    #[test]
    fn forbidden_denies_with_the_policy_reason() {
        let eval = rule(Decision::Forbidden);
        match route(&eval, WS) {
            Action::Deny { reason } => assert_eq!(reason, eval.reason()),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            route(&heuristic(Decision::Forbidden), WS),
            Action::Deny { .. }
        ));
    }

    #[test]
    fn prompts_ask_then_follow_the_answer() {
        let r = rule(Decision::Prompt);
        let h = heuristic(Decision::Prompt);
        assert_eq!(route(&r, WS), Action::Ask);
        assert_eq!(route(&h, WS), Action::Ask);
        assert_eq!(after_approval(&r, &Approval::Allow, WS), Action::Escalate);
        assert_eq!(
            after_approval(&r, &Approval::AllowForSession, WS),
            Action::Escalate
        );
        assert_eq!(after_approval(&h, &Approval::Allow, WS), Action::Continue);
        let deny = Approval::Deny {
            reason: "no".into(),
        };
        assert_eq!(
            after_approval(&r, &deny, WS),
            Action::Deny {
                reason: "no".into()
            }
        );
    }
}

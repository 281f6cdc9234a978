//! What both backends share once an exec is read: evaluate, route, the session's
//! approved set or a prompt, act, and record.
//!
//! A backend (seccomp user notification, or the patched shell's exec wrapper) only says
//! how a waiting exec is held and answered: the [`Gate`] trait. Everything that decides is
//! here, once. Generic, not `dyn`: the unotify continue path stays as it was, with no
//! allocation, formatting or lock beyond what deciding itself needs.

use std::path::PathBuf;
use std::sync::Arc;

use policy::{Decision, Evaluation};

use super::{Shared, lock, now_ms};
use crate::approval::{Approval, ApprovalRequest};
use crate::routing::{self, Action};
use crate::session::{Decider, ExecRecord, RanIn};
use crate::stopwatch::PauseGuard;

/// What the audit log and a prompt say about an exec, read only when one needs it.
#[derive(Debug, Clone)]
pub(crate) struct ExecFacts {
    pub pid: i32,
    pub program: PathBuf,
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    pub ppid: Option<i32>,
}

/// How one backend holds an exec that waits for its answer, and answers it.
pub(super) trait Gate: Clone + Send + Sync + 'static {
    /// One waiting exec. Moves into the prompt task when a person is asked.
    type Pending: Send + 'static;

    /// False once the caller is gone (killed while a person was being asked).
    fn still_waiting(&self, pending: &Self::Pending) -> bool;

    /// Who execs what, from where. Called only for a record or a prompt.
    fn facts(&self, pending: &Self::Pending) -> ExecFacts;

    /// Let it run in place, inside the sandbox.
    fn run(&self, pending: Self::Pending);

    /// Refuse it; `reason` reaches the caller's stderr.
    fn deny(&self, pending: Self::Pending, reason: &str);

    /// Run the supervisor's own copy outside the sandbox and hand its status back; the
    /// backend records the exec (with the status) when the copy has ended.
    fn escalate(
        &self,
        shared: &Arc<Shared>,
        pending: Self::Pending,
        eval: Evaluation,
        decider: Decider,
    );
}

impl Shared {
    /// Decides one exec of `program` with `argv` and answers it through `gate`.
    pub(super) fn decide<G: Gate>(
        self: &Arc<Self>,
        gate: &G,
        pending: G::Pending,
        program: &str,
        argv: &[String],
    ) {
        let eval = self.inner.policy.evaluate(program, argv);
        let action = routing::route(&eval, self.sandbox.mode);
        self.decide_evaluated(gate, pending, program, argv, eval, action);
    }

    /// [`Shared::decide`] once the policy has been asked (the unotify hot path asks first).
    pub(super) fn decide_evaluated<G: Gate>(
        self: &Arc<Self>,
        gate: &G,
        pending: G::Pending,
        program: &str,
        argv: &[String],
        eval: Evaluation,
        action: Action,
    ) {
        let decider = Decider::from(eval.decided_by);
        match action {
            Action::Ask => {
                let key = approval_key(program, argv);
                if lock(&self.approved).contains(&key) {
                    let action =
                        routing::after_approval(&eval, &Approval::Allow, self.sandbox.mode);
                    self.act(gate, pending, eval, action, Decider::Human);
                } else {
                    self.ask(gate, pending, eval, key);
                }
            }
            action => self.act(gate, pending, eval, action, decider),
        }
    }

    /// Asks the session's approver on the runtime: a slow answer stalls no other exec.
    fn ask<G: Gate>(
        self: &Arc<Self>,
        gate: &G,
        pending: G::Pending,
        eval: Evaluation,
        key: Vec<String>,
    ) {
        let facts = gate.facts(&pending);
        let request = ApprovalRequest {
            program: facts.program,
            argv: facts.argv,
            cwd: facts.cwd,
            evaluation: eval.clone(),
        };
        let this = self.clone();
        let gate = gate.clone();
        let paused: PauseGuard = self.stopwatch.pause();
        let task = self.runtime.spawn(async move {
            let answer = this.approver.ask(request).await;
            drop(paused);
            if answer == Approval::AllowForSession {
                lock(&this.approved).insert(key);
            }
            if !gate.still_waiting(&pending) {
                return;
            }
            let action = routing::after_approval(&eval, &answer, this.sandbox.mode);
            this.act(&gate, pending, eval, action, Decider::Human);
        });
        let mut prompts = lock(&self.prompts);
        prompts.retain(|t| !t.is_finished());
        prompts.push(task);
    }

    fn act<G: Gate>(
        self: &Arc<Self>,
        gate: &G,
        pending: G::Pending,
        eval: Evaluation,
        action: Action,
        decider: Decider,
    ) {
        match action {
            Action::Continue => {
                // Formatted only if an audit line will carry it.
                let reason = || match decider {
                    Decider::Human => "approved by a person; runs in the sandbox".into(),
                    _ => eval.reason(),
                };
                let record = self.record_paused(
                    || gate.facts(&pending),
                    Some(&eval),
                    decider,
                    RanIn::Sandbox,
                    reason,
                );
                gate.run(pending);
                self.store_some(record);
            }
            Action::Deny { reason } => {
                let record = self.record_paused(
                    || gate.facts(&pending),
                    Some(&eval),
                    decider,
                    RanIn::Denied,
                    || reason.clone(),
                );
                gate.deny(pending, &reason);
                self.store_some(record);
            }
            Action::Escalate => gate.escalate(self, pending, eval, decider),
            // `route` never yields Ask after approval.
            Action::Ask => gate.deny(pending, "asked twice"),
        }
    }

    pub(super) fn make_record(
        &self,
        facts: ExecFacts,
        eval: Option<&Evaluation>,
        decider: Decider,
        ran_in: RanIn,
        reason: String,
    ) -> ExecRecord {
        ExecRecord {
            pid: facts.pid,
            program: facts.program,
            argv: facts.argv,
            cwd: facts.cwd,
            decision: eval.map(|e| e.decision).unwrap_or(Decision::Allow),
            decided_by: decider,
            matched_rules: eval.map(|e| e.matched_rules.clone()).unwrap_or_default(),
            ran_in,
            reason,
            status: None,
            time_ms: now_ms(),
            ppid: facts.ppid,
            duration_ms: None,
            session: self.id,
        }
    }

    /// The record of an exec, built while its caller still waits: once answered, the
    /// caller may exit at once and its cwd and parent can no longer be read. `None` for a
    /// sandboxed exec nobody reads about (the hot path).
    pub(super) fn record_paused(
        &self,
        facts: impl FnOnce() -> ExecFacts,
        eval: Option<&Evaluation>,
        decider: Decider,
        ran_in: RanIn,
        reason: impl FnOnce() -> String,
    ) -> Option<ExecRecord> {
        if ran_in == RanIn::Sandbox && self.inner.audit.is_none() {
            return None;
        }
        Some(self.make_record(facts(), eval, decider, ran_in, reason()))
    }

    pub(super) fn store_some(&self, record: Option<ExecRecord>) {
        if let Some(record) = record {
            self.store(record);
        }
    }

    pub(super) fn store(&self, record: ExecRecord) {
        if let Some(audit) = &self.inner.audit {
            audit.write(&record);
        }
        if record.ran_in != RanIn::Sandbox {
            lock(&self.notable).push(record);
        }
    }
}

fn approval_key(program: &str, argv: &[String]) -> Vec<String> {
    let mut key = Vec::with_capacity(argv.len() + 1);
    key.push(program.to_owned());
    key.extend(argv.iter().skip(1).cloned());
    key
}

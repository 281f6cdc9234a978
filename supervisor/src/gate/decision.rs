//! What both backends share once an exec is read: evaluate, route, the session's
//! approved set or a prompt, act, and record.
//!
//! A backend (seccomp user notification, or the patched shell's exec wrapper) only says
//! how a waiting exec is held and answered: the [`Gate`] trait. Everything that decides is
//! here, once. Generic, not `dyn`: the unotify continue path stays as it was, with no
//! allocation, formatting or lock beyond what deciding itself needs.

use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;

use policy::{DecidedBy, Decision, Evaluation, RuleMatch};

use super::{Shared, lock};
use crate::approval::{self, Approval, ApprovalRequest};
use crate::escalate;
use crate::executable::Executable;
use crate::routing::{self, Action};
use crate::sandbox::SandboxMode;
use crate::session::{Decider, RanIn};
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
pub(crate) trait Gate: Clone + Send + Sync + 'static {
    /// One waiting exec. Moves into the prompt task when a person is asked.
    type Pending: Send + 'static;

    /// False once the caller is gone (killed while a person was being asked).
    fn still_waiting(&self, pending: &Self::Pending) -> bool;

    /// Who execs what, from where. Called only for a record or a prompt.
    fn facts(&self, pending: &Self::Pending) -> ExecFacts;

    /// [`Gate::facts`] for an escalation's checks, before the copy starts: `ppid` may be
    /// left `None` for [`escalate::Caller::parent`] to read while the copy runs.
    fn escalation_facts(&self, pending: &Self::Pending) -> ExecFacts {
        self.facts(pending)
    }

    /// The caller's variables as `NAME=VALUE` (read while it waits): what an escalation
    /// would pass on from them is shown in the question. Empty where unreadable.
    fn caller_env(&self, pending: &Self::Pending) -> Vec<OsString>;

    /// Let it run in place, inside the sandbox.
    fn run(&self, pending: Self::Pending);

    /// Refuse it; `reason` reaches the caller's stderr.
    fn deny(&self, pending: Self::Pending, reason: &str);

    /// True for an exec of an escalated copy's tree: it already runs outside the sandbox,
    /// so an allowed exec continues there and nothing is escalated again.
    fn runs_outside(&self, _pending: &Self::Pending) -> bool {
        false
    }

    /// How this backend's caller is held while an escalated copy runs.
    type Caller: escalate::Caller;

    /// The escalation's caller and what it asked to run (read while it waits). `None`
    /// when the exec has been answered already (what it asked could not be read).
    fn escalation(&self, pending: Self::Pending) -> Option<(Self::Caller, escalate::Requested)>;
}

impl Shared {
    /// Decides one exec of `program` with `argv` and answers it through `gate`.
    pub(crate) fn decide<G: Gate>(
        self: &Arc<Self>,
        gate: &G,
        pending: G::Pending,
        program: &str,
        argv: &[String],
    ) {
        let eval = self.inner.policy.evaluate_exec(program, argv);
        let action = routing::route(&eval, self.sandbox.mode);
        self.decide_evaluated(gate, pending, program, argv, eval, action);
    }

    /// [`Shared::decide`] once the policy has been asked (the unotify hot path asks first).
    pub(crate) fn decide_evaluated<G: Gate>(
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
                    let mode = self.mode_for(gate, &pending);
                    let action = routing::after_approval(&eval, &Approval::Allow, mode);
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
        // A rule's "yes" escalates: the question names the caller's variables it passes on.
        let pass = &self.inner.escalation.pass_env;
        let passed_env = if eval.decided_by == policy::DecidedBy::Rule && !pass.is_empty() {
            escalate::passed_variables(pass, &gate.caller_env(&pending))
        } else {
            Vec::new()
        };
        // The name stands for this file only if it is what the name resolves to through
        // trusted places (as a later session checks before escalating on a bare name).
        let this_file = std::fs::metadata(&facts.program).ok();
        let proposed_prefix =
            approval::proposed_prefix(&eval, &facts.program, &facts.argv, |name| {
                this_file.as_ref().is_some_and(|file| {
                    self.token_names(name, |m| m.dev() == file.dev() && m.ino() == file.ino())
                })
            });
        let request = ApprovalRequest {
            program: facts.program,
            argv: facts.argv,
            cwd: facts.cwd,
            evaluation: eval.clone(),
            passed_env,
            proposed_prefix,
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
            let mode = this.mode_for(&gate, &pending);
            let action = routing::after_approval(&eval, &answer, mode);
            let decider = if this.approver.asks_a_person() {
                Decider::Human
            } else {
                Decider::Supervisor
            };
            this.act(&gate, pending, eval, action, decider);
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
                let outside = gate.runs_outside(&pending);
                let reason = || match (decider, outside) {
                    (Decider::Human, false) => "approved by a person; runs in the sandbox".into(),
                    (Decider::Human, true) => {
                        "approved by a person; runs outside, in an escalated command's tree".into()
                    }
                    (Decider::Supervisor, _) if eval.decision == policy::Decision::Prompt => {
                        "a prompt answered by --on-prompt, nobody asked".into()
                    }
                    _ => eval.reason(),
                };
                let ran_in = if outside {
                    RanIn::Outside
                } else {
                    RanIn::Sandbox
                };
                let record = self.record_paused(
                    || gate.facts(&pending),
                    Some(&eval),
                    decider,
                    ran_in,
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
            Action::Escalate => {
                let facts = gate.escalation_facts(&pending);
                match self.escalation_target(&facts, &eval) {
                    Ok(executable) => {
                        escalate::start(self, gate, pending, facts, executable, eval, decider);
                    }
                    Err(why) => self.not_escalated(gate, pending, &facts, eval, decider, why),
                }
            }
            // `route` never yields Ask after approval.
            Action::Ask => gate.deny(pending, "asked twice"),
        }
    }

    /// Where an exec of `pending` runs once allowed: the session's sandbox, or, in an
    /// escalated copy's tree, outside (where that tree already runs).
    fn mode_for<G: Gate>(&self, gate: &G, pending: &G::Pending) -> SandboxMode {
        if gate.runs_outside(pending) {
            SandboxMode::DangerFullAccess
        } else {
            self.sandbox.mode
        }
    }

    /// The file an escalation would run, if the session could not have written it and it
    /// is the very file the allow rule names.
    fn escalation_target(
        &self,
        facts: &ExecFacts,
        eval: &Evaluation,
    ) -> Result<Executable, String> {
        let path = facts.cwd.join(&facts.program);
        let pid = u32::try_from(facts.pid).map_err(|_| "the caller is gone".to_owned())?;
        let executable = Executable::open(pid, &path)
            .map_err(|err| format!("{} cannot be opened: {err}", path.display()))?;
        if let Some(why) =
            executable.why_untrusted(&self.agent_roots, self.inner.escalation.own_uid)
        {
            return Err(why);
        }
        // Escalated git reads the repository's config and hooks, which may run commands
        // (core.fsmonitor, hooks, ...): only where the session could not have written them.
        if let Some(why) =
            self.git_trust
                .why_untrusted_git(&executable.path, &facts.argv, &facts.cwd)
        {
            return Err(why);
        }
        // A person who approved a prompt saw the path; an allow rule must name this file.
        if eval.decision == Decision::Allow
            && !eval
                .matched_rules
                .iter()
                .any(|m| self.rule_names(m, &executable))
        {
            let token = eval
                .matched_rules
                .first()
                .and_then(|m| m.matched_prefix.first())
                .cloned()
                .unwrap_or_default();
            return Err(format!(
                "{} is not the `{token}` the rule names ({})",
                executable.path.display(),
                self.named_by(&token)
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Ok(executable)
    }

    /// Does rule `m` name this file? An absolute token names that file; a bare name names
    /// what it resolves to through trusted places only: its `host_executable` paths, else
    /// the supervisor's own `PATH` at start. Never `./ls` or `/tmp/git`.
    fn rule_names(&self, m: &RuleMatch, executable: &Executable) -> bool {
        let Some(token) = m.matched_prefix.first() else {
            return false;
        };
        self.token_names(token, |meta| executable.is(meta))
    }

    /// Does program token `token` name a file `is_it` accepts ([`Self::named_by`])? Looked
    /// up now, every time: the agent may have changed what a name resolves to since the
    /// last exec.
    fn token_names(&self, token: &str, is_it: impl Fn(&std::fs::Metadata) -> bool) -> bool {
        if !token.starts_with('/') && self.inner.policy.host_executable_paths(token).is_none() {
            // One `stat` per directory, the hit's kept (not taken a second time).
            return first_in_path(&self.inner.escalation.trusted_path, token)
                .is_some_and(|(_, meta)| is_it(&meta));
        }
        self.named_by(token)
            .iter()
            .any(|p| std::fs::metadata(p).is_ok_and(|meta| is_it(&meta)))
    }

    /// The files a rule's program token can name.
    fn named_by(&self, token: &str) -> Vec<PathBuf> {
        if token.starts_with('/') {
            return vec![PathBuf::from(token)];
        }
        if let Some(paths) = self.inner.policy.host_executable_paths(token) {
            return paths.to_vec();
        }
        first_in_path(&self.inner.escalation.trusted_path, token)
            .map(|(path, _)| path)
            .into_iter()
            .collect()
    }

    /// An escalation refused because of the file it would run: decided as if no allow rule
    /// had matched (the heuristics: sandboxed, asked or denied). A person's approval of a
    /// prompt still stands, and runs it inside the sandbox.
    fn not_escalated<G: Gate>(
        self: &Arc<Self>,
        gate: &G,
        pending: G::Pending,
        facts: &ExecFacts,
        eval: Evaluation,
        decider: Decider,
        why: String,
    ) {
        let program = facts.program.to_string_lossy();
        let args = facts.argv.get(1..).unwrap_or_default();
        let mut verdict = policy::heuristics::judge(&program, args);
        verdict.reason = format!("not escalated: {why}; {}", verdict.reason);
        let fallback = Evaluation {
            decision: verdict.decision,
            decided_by: DecidedBy::Heuristics,
            matched_rules: eval.matched_rules,
            heuristic: Some(verdict),
        };
        if decider == Decider::Human {
            self.act(gate, pending, fallback, Action::Continue, Decider::Human);
            return;
        }
        let action = routing::route(&fallback, self.sandbox.mode);
        let action = if action == Action::Escalate {
            Action::Continue
        } else {
            action
        };
        match action {
            Action::Ask => {
                let key = approval_key(&program, &facts.argv);
                self.ask(gate, pending, fallback, key);
            }
            action => self.act(gate, pending, fallback, action, Decider::Heuristics),
        }
    }
}

/// The first regular file (symlinks followed) named `token` in `dirs`, as a shell would
/// resolve the name, with its metadata: one `stat` per directory, none for a directory
/// listed again (`PATH` often repeats one; it answers as it did a moment before).
fn first_in_path(dirs: &[PathBuf], token: &str) -> Option<(PathBuf, std::fs::Metadata)> {
    dirs.iter()
        .enumerate()
        .filter(|&(i, dir)| !dirs[..i].iter().any(|d| d.as_os_str() == dir.as_os_str()))
        .find_map(|(_, dir)| {
            let path = dir.join(token);
            let meta = std::fs::metadata(&path).ok().filter(|m| m.is_file())?;
            Some((path, meta))
        })
}

fn approval_key(program: &str, argv: &[String]) -> Vec<String> {
    let mut key = Vec::with_capacity(argv.len() + 1);
    key.push(program.to_owned());
    key.extend(argv.iter().skip(1).cloned());
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn ino(meta: &std::fs::Metadata) -> (u64, u64) {
        (meta.dev(), meta.ino())
    }

    #[test]
    fn a_bare_name_is_the_first_regular_file_in_path_order() {
        let dir = tempfile::tempdir().unwrap();
        let [a, b, c] = ["a", "b", "c"].map(|d| dir.path().join(d));
        for d in [&a, &b, &c] {
            std::fs::create_dir(d).unwrap();
        }
        // A directory of that name is no hit; a symlink to a file is.
        std::fs::create_dir(a.join("tool")).unwrap();
        std::fs::write(c.join("real"), "").unwrap();
        std::os::unix::fs::symlink(c.join("real"), b.join("tool")).unwrap();
        std::fs::write(c.join("tool"), "").unwrap();
        let dirs = vec![a.clone(), a.clone(), b.clone(), c.clone()];
        let (path, meta) = first_in_path(&dirs, "tool").unwrap();
        assert_eq!(path, b.join("tool"));
        assert_eq!(ino(&meta), ino(&std::fs::metadata(c.join("real")).unwrap()));
        assert!(first_in_path(&dirs, "missing").is_none());
    }

    #[test]
    fn a_file_planted_between_two_lookups_is_what_the_second_finds() {
        // Nothing is remembered from one exec to the next: a name the agent shadows in an
        // earlier directory no longer names the file it named before.
        let dir = tempfile::tempdir().unwrap();
        let [early, late] = ["early", "late"].map(|d| dir.path().join(d));
        std::fs::create_dir(&early).unwrap();
        std::fs::create_dir(&late).unwrap();
        std::fs::write(late.join("tool"), "").unwrap();
        let dirs = vec![early.clone(), early.clone(), late.clone()];
        let (first, before) = first_in_path(&dirs, "tool").unwrap();
        assert_eq!(first, late.join("tool"));
        std::fs::write(early.join("tool"), "").unwrap();
        let (second, after) = first_in_path(&dirs, "tool").unwrap();
        assert_eq!(second, early.join("tool"));
        assert_ne!(ino(&before), ino(&after));
        // And replaced in place (same name, another file): the new file.
        std::fs::write(early.join("tool.new"), "").unwrap();
        std::fs::rename(early.join("tool.new"), early.join("tool")).unwrap();
        let (_, replaced) = first_in_path(&dirs, "tool").unwrap();
        assert_ne!(ino(&after), ino(&replaced));
    }
}

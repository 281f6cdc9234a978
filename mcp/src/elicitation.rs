//! Asking the human behind the MCP client: a `prompt` decision becomes an elicitation.
//!
//! The message names the exact command and directory ("Allow agent to run `...` in
//! `...`?") and the rule that asked; the form offers "approve once" and "approve for the
//! rest of this session" and, when the command can be stored as a rule (see
//! `supervisor::approval::proposed_prefix`) and a rules file is configured, "approve and
//! remember": the exact `prefix_rule(...)` line, shown in the message, is appended to that
//! file as Codex appends it (`policy::amend`). Decline and cancel deny, and so does an accept that carries no
//! offered choice (a client that accepts forms it cannot show must not approve commands).
//! A client that did not declare the elicitation capability is never sent one: the exec
//! is denied with a reason saying so, so nothing waits for an answer that cannot come.
//! [`Answered`] records which commands a person actually answered, so a result claims a
//! human decision only for those.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use policy::{DecidedBy, Evaluation};
use rmcp::model::{
    ElicitRequestParams, ElicitResult, ElicitationAction, ElicitationSchema, EnumSchema,
    PrimitiveSchemaDefinition,
};
use rmcp::service::ElicitationMode;
use rmcp::{Peer, RoleServer};
use supervisor::approval::{ApprovalFuture, escape_control};
use supervisor::{Approval, ApprovalRequest, Approver};

/// Form field holding the choice.
pub const DECISION_FIELD: &str = "decision";
/// Choice: run it this once.
pub const APPROVE: &str = "approve";
/// Choice: run it, and the same command again without asking, until the server exits.
pub const APPROVE_FOR_SESSION: &str = "approve-for-session";
/// Choice (offered only with a rule to store): as [`APPROVE_FOR_SESSION`], and append the
/// rule shown in the message to the rules file, for later sessions and Codex.
pub const APPROVE_AND_REMEMBER: &str = "approve-and-remember";

pub use supervisor::approval::RuleOffer;

/// Commands a human approved "for the rest of this session": the MCP connection.
#[derive(Debug, Default)]
pub struct Remembered {
    commands: Mutex<HashSet<(String, Vec<String>)>>,
}

/// A command as approvals name it: the program's path and the arguments after argv\[0\].
type Key = (String, Vec<String>);

fn key(program: &Path, argv: &[String]) -> Key {
    (
        program.to_string_lossy().into_owned(),
        argv.iter().skip(1).cloned().collect(),
    )
}

impl Remembered {
    fn key(request: &ApprovalRequest) -> Key {
        key(&request.program, &request.argv)
    }

    fn contains(&self, request: &ApprovalRequest) -> bool {
        self.lock().contains(&Self::key(request))
    }

    fn insert(&self, request: &ApprovalRequest) {
        self.lock().insert(Self::key(request));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<(String, Vec<String>)>> {
        // A panic while holding this lock leaves a valid set: keep using it.
        self.commands.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The commands of one call that a person answered (chose one of the offered options), as
/// opposed to those settled without anybody known to have been asked (no elicitation, a
/// failed request, an answer that was no choice, a decline or cancel, which a client such
/// as `codex exec` sends without asking anybody).
#[derive(Debug, Default)]
pub struct Answered {
    commands: Mutex<HashSet<Key>>,
}

impl Answered {
    /// True when a person answered for `program` with `argv` in this call.
    pub fn by_person(&self, program: &Path, argv: &[String]) -> bool {
        self.lock().contains(&key(program, argv))
    }

    fn insert(&self, request: &ApprovalRequest) {
        self.lock().insert(Remembered::key(request));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<Key>> {
        // A panic while holding this lock leaves a valid set: keep using it.
        self.commands.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Answers a session's prompts by asking the MCP client.
pub struct ElicitationApprover {
    peer: Peer<RoleServer>,
    remembered: Arc<Remembered>,
    prompt_timeout: Duration,
    answered: Arc<Answered>,
    amend_rules: Option<PathBuf>,
}

/// How long an elicitation waits for the human by default (as the CLI's `--prompt-timeout`).
pub const DEFAULT_PROMPT_TIMEOUT: Duration = Duration::from_secs(300);

impl std::fmt::Debug for ElicitationApprover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElicitationApprover")
            .finish_non_exhaustive()
    }
}

impl ElicitationApprover {
    pub fn new(peer: Peer<RoleServer>, remembered: Arc<Remembered>) -> Self {
        ElicitationApprover {
            peer,
            remembered,
            prompt_timeout: DEFAULT_PROMPT_TIMEOUT,
            answered: Arc::default(),
            amend_rules: None,
        }
    }

    /// Sends the form and waits for the answer within `--prompt-timeout`. `Err`: the
    /// denial to give (nobody answered, or asking failed).
    async fn elicit(
        &self,
        message: String,
        requested_schema: ElicitationSchema,
    ) -> Result<rmcp::model::ElicitResult, Approval> {
        let params = ElicitRequestParams::FormElicitationParams {
            meta: None,
            message,
            requested_schema,
        };
        let asked = self.peer.create_elicitation(params);
        match tokio::time::timeout(self.prompt_timeout, asked).await {
            Err(_) => Err(Approval::Deny {
                reason: format!(
                    "nobody answered the approval request within {}s (--prompt-timeout): denied",
                    self.prompt_timeout.as_secs_f64()
                ),
            }),
            Ok(Err(error)) => Err(Approval::Deny {
                reason: format!("asking the human failed ({error}): denied"),
            }),
            Ok(Ok(result)) => Ok(result),
        }
    }

    /// "Approve and remember" appends its rule to `file` (`None`: not offered).
    #[must_use]
    pub fn with_amend_rules(mut self, file: Option<PathBuf>) -> Self {
        self.amend_rules = file;
        self
    }

    /// A question nobody answers within `limit` is denied, saying so.
    #[must_use]
    pub fn with_prompt_timeout(mut self, limit: Duration) -> Self {
        self.prompt_timeout = limit;
        self
    }

    /// The commands a person answered, filled while the call runs.
    pub fn answered(&self) -> Arc<Answered> {
        self.answered.clone()
    }

    async fn ask_client(&self, request: ApprovalRequest) -> Approval {
        if self.remembered.contains(&request) {
            // A person approved it earlier in this connection.
            self.answered.insert(&request);
            return Approval::AllowForSession;
        }
        if !self
            .peer
            .supported_elicitation_modes()
            .contains(&ElicitationMode::Form)
        {
            return Approval::Deny {
                reason: "the policy asks a human about this command, and this MCP client does not \
                         support elicitation (form mode), so nobody can be asked: denied"
                    .to_owned(),
            };
        }
        let offer = RuleOffer::for_request(&request, self.amend_rules.as_ref());
        let answered = self
            .elicit(
                message_offering(&request, offer.as_ref()),
                form_offering(offer.is_some()),
            )
            .await;
        match answered {
            Ok(result) => {
                let (approval, by_person) = answer_from(&result, offer.is_some());
                if by_person {
                    self.answered.insert(&request);
                }
                if let Some(offer) = offer.filter(|_| chose(&result) == Some(APPROVE_AND_REMEMBER))
                {
                    store(offer).await;
                }
                if approval == Approval::AllowForSession {
                    self.remembered.insert(&request);
                }
                approval
            }
            Err(denied) => denied,
        }
    }
}

/// Appends the offered rule (blocking: a file lock), and logs what happened. A failure
/// leaves the approval for this connection only.
async fn store(offer: RuleOffer) {
    let file = offer.file.clone();
    let done = tokio::task::spawn_blocking(move || {
        policy::amend::append_prefix_rule(&offer.file, &offer.prefix)
    })
    .await;
    match done {
        Ok(Ok(appended)) => {
            tracing::info!(file = %file.display(), ?appended, "approval stored as a rule")
        }
        Ok(Err(err)) => tracing::warn!("approval NOT stored as a rule: {err}"),
        Err(err) => tracing::warn!("approval NOT stored as a rule: {err}"),
    }
}

/// The offered choice a form answer names, if any.
fn chose(result: &ElicitResult) -> Option<&str> {
    if result.action != ElicitationAction::Accept {
        return None;
    }
    result.content.as_ref()?.get(DECISION_FIELD)?.as_str()
}

impl Approver for ElicitationApprover {
    fn ask(&self, request: ApprovalRequest) -> ApprovalFuture<'_> {
        Box::pin(self.ask_client(request))
    }

    fn ask_host(&self, request: supervisor::HostRequest) -> ApprovalFuture<'_> {
        Box::pin(self.ask_client_host(request))
    }
}

impl ElicitationApprover {
    /// "Allow agent to connect to `pypi.org:443`?", with the same once / for the session /
    /// no form as for commands. "For the session" is remembered by the session's proxy.
    async fn ask_client_host(&self, request: supervisor::HostRequest) -> Approval {
        if !self
            .peer
            .supported_elicitation_modes()
            .contains(&ElicitationMode::Form)
        {
            return Approval::Deny {
                reason: "the policy asks a human about this host, and this MCP client does not \
                         support elicitation (form mode), so nobody can be asked: denied"
                    .to_owned(),
            };
        }
        match self.elicit(host_message(&request), form()).await {
            Ok(result) => answer_from(&result, false).0,
            Err(denied) => denied,
        }
    }
}

/// "Allow agent to connect to `HOST:PORT`?" and the rule that asks; the host comes from
/// the session, so it is escaped.
pub fn host_message(request: &supervisor::HostRequest) -> String {
    format!(
        "Allow agent to connect to `{}:{}`?\nAsked by: {}",
        escape_control(&request.host),
        request.port,
        escape_control(&request.why)
    )
}

/// "Allow agent to run `CMD ARGS` in `CWD`?", argv\[0\] when the caller's differs from
/// the program's name, whether it runs outside the sandbox, and why it is asked. Control
/// characters from the session (argv, paths) are escaped: they cannot repaint the question.
pub fn message(request: &ApprovalRequest) -> String {
    message_offering(request, None)
}

/// [`message`], and the rule "approve and remember" would append, with what it reaches.
pub fn message_offering(request: &ApprovalRequest, offer: Option<&RuleOffer>) -> String {
    let mut text = format!(
        "Allow agent to run `{}` in `{}`?",
        escape_control(&command_line(&request.program, &request.argv)),
        escape_control(&request.cwd.to_string_lossy())
    );
    if let Some(argv0) = request.differing_argv0() {
        text.push_str(&format!(
            "\nargv[0] is `{argv0}`, not the program's name: it may change what the program does."
        ));
    }
    if request.escalates() {
        text.push_str("\nIt runs OUTSIDE the sandbox, with the server's own rights.");
    }
    for (name, value) in &request.passed_env {
        text.push_str(&format!(
            "\nIt gets the agent's {}={} (--escalate-env).",
            escape_control(name),
            escape_control(value)
        ));
    }
    // Line by line: the reason's own line breaks are ours, what is inside a line may come
    // from the session (a heuristic quotes the command).
    let why = reason(&request.evaluation)
        .lines()
        .map(escape_control)
        .collect::<Vec<_>>()
        .join("\n");
    if !why.is_empty() {
        text.push_str("\n\n");
        text.push_str(&why);
    }
    if let Some(offer) = offer {
        text.push_str(&format!(
            "\n\n\"Approve and remember\" appends to {} (read by later sessions and by Codex):\n{}\n\
             From then on this command, and any that starts with these words, runs without \
             asking, OUTSIDE the sandbox.",
            escape_control(&offer.file.to_string_lossy()),
            escape_control(&offer.line)
        ));
    }
    text
}

/// The program's path and the arguments after argv\[0\], shell-quoted where needed.
pub fn command_line(program: &Path, argv: &[String]) -> String {
    let mut line = shell_quote(&program.to_string_lossy());
    for arg in argv.iter().skip(1) {
        line.push(' ');
        line.push_str(&shell_quote(arg));
    }
    line
}

/// Why the policy asks: each matched rule with its place and justification, or the
/// heuristic's reason.
pub fn reason(evaluation: &Evaluation) -> String {
    match evaluation.decided_by {
        DecidedBy::Rule => evaluation
            .matched_rules
            .iter()
            .map(|rule| {
                let pattern = serde_json::to_string(&rule.matched_prefix).unwrap_or_default();
                let mut line = format!(
                    "Rule: prefix_rule(pattern={pattern}, decision=\"{}\")",
                    rule.decision
                );
                if let Some(origin) = &rule.origin {
                    line.push_str(&format!(" at {}:{}", origin.file.display(), origin.line));
                }
                if let Some(justification) = &rule.justification {
                    line.push_str(&format!("\nJustification: {justification}"));
                }
                line
            })
            .collect::<Vec<_>>()
            .join("\n"),
        DecidedBy::Heuristics => match &evaluation.heuristic {
            Some(h) => format!("No rule matched; execgate's heuristics ask: {}", h.reason),
            None => "No rule matched; execgate's heuristics ask.".to_owned(),
        },
    }
}

/// The form: one required choice, approve once or for the session.
pub fn form() -> ElicitationSchema {
    form_offering(false)
}

/// [`form`], with "approve and remember" when `remember` (a rule is offered).
pub fn form_offering(remember: bool) -> ElicitationSchema {
    let mut values = vec![APPROVE.to_owned(), APPROVE_FOR_SESSION.to_owned()];
    let mut titles = vec![
        "Approve once".to_owned(),
        "Approve for the rest of this session".to_owned(),
    ];
    if remember {
        values.push(APPROVE_AND_REMEMBER.to_owned());
        titles.push("Approve and remember: add the rule shown to the rules file".to_owned());
    }
    let choice = EnumSchema::builder(values)
        .with_default(APPROVE)
        .and_then(|b| b.enum_titles(titles))
        .map(|b| {
            b.title("Approve")
                .description("Decline (or cancel) to deny the command.")
                .build()
        })
        .unwrap_or_else(|e| unreachable!("static enum schema is valid: {e}"));
    ElicitationSchema::builder()
        .required_property(DECISION_FIELD, PrimitiveSchemaDefinition::Enum(choice))
        .title("Command approval")
        .build()
        .unwrap_or_else(|e| unreachable!("static elicitation schema is valid: {e}"))
}

/// Turns the client's answer into an approval. Only an offered choice approves: an accept
/// with no content, no `decision`, or a value that was not offered denies, saying why.
pub fn answer(result: &ElicitResult) -> Approval {
    answer_from(result, false).0
}

/// [`answer`], and whether it was a person's answer (a choice, a decline or a cancel) rather
/// than an accept that chose nothing.
fn answer_from(result: &ElicitResult, remember_offered: bool) -> (Approval, bool) {
    match result.action {
        ElicitationAction::Accept => {
            let field = result.content.as_ref().and_then(|c| c.get(DECISION_FIELD));
            match field.and_then(|v| v.as_str()) {
                Some(APPROVE) => (Approval::Allow, true),
                Some(APPROVE_FOR_SESSION) => (Approval::AllowForSession, true),
                Some(APPROVE_AND_REMEMBER) if remember_offered => (Approval::AllowForSession, true),
                _ => {
                    let got = match (&result.content, field) {
                        (None, _) => "no content".to_owned(),
                        (Some(_), None) => format!("no `{DECISION_FIELD}`"),
                        (Some(_), Some(v)) => format!("`{DECISION_FIELD}` = {}", short(v)),
                    };
                    let reason = format!(
                        "the client accepted the approval form with {got}, which is none of \
                         the offered choices (`{APPROVE}`, `{APPROVE_FOR_SESSION}`): denied"
                    );
                    (Approval::Deny { reason }, false)
                }
            }
        }
        // Not evidence that a person was asked: a client may decline every request without
        // showing it (`codex exec` does, under approval policy `never`), and the answer looks
        // the same. Only a chosen option counts as a person's answer.
        ElicitationAction::Decline => (
            Approval::Deny {
                reason: "the client declined the approval request (its person, or a client that \
                         declines every request without asking, as `codex exec` does): denied"
                    .to_owned(),
            },
            false,
        ),
        ElicitationAction::Cancel => (
            Approval::Deny {
                reason: "the client cancelled the approval request: denied".to_owned(),
            },
            false,
        ),
        _ => (
            Approval::Deny {
                reason: "the client answered the approval request with an unknown action"
                    .to_owned(),
            },
            false,
        ),
    }
}

/// A JSON value in at most 100 characters, for a reason.
fn short(value: &serde_json::Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(100) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text,
    }
}

/// Quotes `s` for a POSIX shell when it holds anything but safe characters.
pub fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'_' | b'.' | b'/' | b'=' | b':' | b',' | b'+' | b'@' | b'%'
                )
        });
    if safe {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use policy::{Decision, HeuristicVerdict, RuleMatch, RuleOrigin};
    use serde_json::json;
    use std::path::PathBuf;

    fn request(evaluation: Evaluation) -> ApprovalRequest {
        ApprovalRequest {
            program: PathBuf::from("/usr/bin/git"),
            argv: vec!["git".into(), "init".into(), ".".into()],
            cwd: PathBuf::from("/tmp/w"),
            evaluation,
            passed_env: Vec::new(),
            proposed_prefix: None,
        }
    }

    fn rule_eval() -> Evaluation {
        Evaluation {
            decision: Decision::Prompt,
            decided_by: DecidedBy::Rule,
            matched_rules: vec![RuleMatch {
                matched_prefix: vec!["git".into(), "init".into()],
                decision: Decision::Prompt,
                justification: Some("creates a repository".into()),
                origin: Some(RuleOrigin {
                    file: PathBuf::from("/r/default.rules"),
                    line: 3,
                    layer: policy::Layer::User,
                }),
                resolved_program: None,
            }],
            heuristic: None,
        }
    }

    #[test]
    fn message_names_command_cwd_rule_and_justification() {
        let m = message(&request(rule_eval()));
        assert_eq!(
            m,
            "Allow agent to run `/usr/bin/git init .` in `/tmp/w`?\n\
             It runs OUTSIDE the sandbox, with the server's own rights.\n\n\
             Rule: prefix_rule(pattern=[\"git\",\"init\"], decision=\"prompt\") at /r/default.rules:3\n\
             Justification: creates a repository"
        );
    }

    #[test]
    fn message_for_heuristics() {
        let m = message(&request(Evaluation {
            decision: Decision::Prompt,
            decided_by: DecidedBy::Heuristics,
            matched_rules: vec![],
            heuristic: Some(HeuristicVerdict {
                decision: Decision::Prompt,
                reason: "rm -f deletes files".into(),
            }),
        }));
        assert!(m.ends_with("heuristics ask: rm -f deletes files"), "{m}");
    }

    #[test]
    fn arguments_are_quoted() {
        let line = command_line(
            Path::new("/bin/echo"),
            &[
                "echo".into(),
                "a b".into(),
                "it's".into(),
                "".into(),
                "x=1".into(),
            ],
        );
        assert_eq!(line, r#"/bin/echo 'a b' 'it'\''s' '' x=1"#);
    }

    #[test]
    fn answers_map_to_approvals() {
        let accept = |c| ElicitResult::new(ElicitationAction::Accept).with_content(c);
        assert_eq!(
            answer(&accept(json!({"decision": "approve"}))),
            Approval::Allow
        );
        assert_eq!(
            answer(&accept(json!({"decision": "approve-for-session"}))),
            Approval::AllowForSession
        );
        // An accept that chose nothing offered denies, and says what came.
        for (result, want) in [
            (
                ElicitResult::new(ElicitationAction::Accept),
                "with no content",
            ),
            (accept(json!({})), "with no `decision`"),
            (accept(json!({"decision": ""})), r#"`decision` = """#),
            (accept(json!({"decision": "yes"})), r#"`decision` = "yes""#),
            (accept(json!({"decision": true})), "`decision` = true"),
            (accept(json!({"decision": "Approve"})), r#""Approve""#),
        ] {
            match answer(&result) {
                Approval::Deny { reason } => {
                    assert!(reason.contains(want), "{reason} !~ {want}");
                    assert!(reason.contains("none of the offered choices"), "{reason}");
                }
                other => panic!("{result:?} approved: {other:?}"),
            }
            assert!(
                !answer_from(&result, true).1,
                "not a person's answer: {result:?}"
            );
        }
        // A decline is no proof anybody was asked (codex exec declines them all).
        assert!(!answer_from(&ElicitResult::new(ElicitationAction::Decline), false).1);
        assert!(!answer_from(&ElicitResult::new(ElicitationAction::Cancel), false).1);
        // "Remember" approves only where it was offered.
        let remember = accept(json!({"decision": "approve-and-remember"}));
        assert!(matches!(answer(&remember), Approval::Deny { .. }));
        assert_eq!(
            answer_from(&remember, true),
            (Approval::AllowForSession, true)
        );
        assert!(matches!(
            answer(&ElicitResult::new(ElicitationAction::Decline)),
            Approval::Deny { reason } if reason.contains("declined")
        ));
        assert!(matches!(
            answer(&ElicitResult::new(ElicitationAction::Cancel)),
            Approval::Deny { reason } if reason.contains("cancelled")
        ));
    }

    #[test]
    fn form_offers_both_choices() {
        let schema = serde_json::to_value(form()).unwrap();
        assert_eq!(schema["required"], json!(["decision"]));
        let one_of = &schema["properties"]["decision"]["oneOf"];
        assert_eq!(one_of[0]["const"], "approve");
        assert_eq!(one_of[1]["const"], "approve-for-session");
        assert_eq!(schema["properties"]["decision"]["default"], "approve");
    }

    #[test]
    fn a_rule_offer_is_shown_and_offered() {
        let mut r = request(Evaluation {
            decision: Decision::Prompt,
            decided_by: DecidedBy::Heuristics,
            matched_rules: vec![],
            heuristic: None,
        });
        r.proposed_prefix = Some(vec!["git".into(), "init".into(), ".\n".into()]);
        let offer =
            RuleOffer::for_request(&r, Some(&PathBuf::from("/c/rules/default.rules"))).unwrap();
        let m = message_offering(&r, Some(&offer));
        assert!(
            m.ends_with(
                "\"Approve and remember\" appends to /c/rules/default.rules (read by later \
                 sessions and by Codex):\nprefix_rule(pattern=[\"git\", \"init\", \".\\\\n\"], \
                 decision=\"allow\")\nFrom then on this command, and any that starts with these \
                 words, runs without asking, OUTSIDE the sandbox."
            ),
            "{m}"
        );
        let schema = serde_json::to_value(form_offering(true)).unwrap();
        assert_eq!(
            schema["properties"]["decision"]["oneOf"][2]["const"],
            "approve-and-remember"
        );
        assert!(RuleOffer::for_request(&r, None).is_none());
    }

    #[test]
    fn remembered_commands_match_program_and_arguments() {
        let r = Remembered::default();
        let a = request(rule_eval());
        r.insert(&a);
        assert!(r.contains(&a));
        let mut b = a.clone();
        b.argv.push("--bare".into());
        assert!(!r.contains(&b));
    }
}

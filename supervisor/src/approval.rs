//! Asking a human: the one question a `prompt` decision raises.
//!
//! The CLI answers on the terminal, the MCP server by elicitation. The supervisor pauses the
//! session's stopwatch while an [`Approver`] is asking, so waiting for a person never counts
//! against a timeout; approvers deny a question nobody answers within the prompt timeout
//! (which bounds that pause), and show every piece of the request that comes from the
//! session through [`escape_control`].

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use policy::Evaluation;

/// Everything a person needs to answer "may this run?".
#[derive(Debug, Clone)]
pub struct ApprovalRequest {
    /// Path of the executable, absolute, as the supervisor resolved it.
    pub program: PathBuf,
    /// Full argv, including argv\[0\].
    pub argv: Vec<String>,
    /// The working directory of the process that is exec'ing.
    pub cwd: PathBuf,
    /// Why it is being asked: the matched rules or the heuristic.
    pub evaluation: Evaluation,
    /// The caller's variables a "yes" passes on to the escalated program (`--escalate-env`
    /// names, values as the caller set them); empty when nothing is passed.
    pub passed_env: Vec<(String, String)>,
    /// The prefix an "always" can store as `prefix_rule(pattern=..., decision="allow")`
    /// (see [`proposed_prefix`]); `None` when such a rule would not stop the question (a
    /// rule asked) or would hand out more than this command.
    pub proposed_prefix: Option<Vec<String>>,
}

/// Everything a person needs to answer "may the sandbox connect to `host:port`?" (a
/// `network_rule` with `decision = "prompt"`, asked by the egress proxy).
#[derive(Debug, Clone)]
pub struct HostRequest {
    /// As the sandboxed program named it (a name or an IP literal), normalised.
    pub host: String,
    pub port: u16,
    /// The rule that asks (`file:line`), and its justification if it has one.
    pub why: String,
}

/// A person's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Approval {
    /// Run it, this once.
    Allow,
    /// Run it, and do not ask again for the same command for the rest of this session.
    AllowForSession,
    /// Do not run it; `reason` reaches the process's stderr and the outcome.
    Deny { reason: String },
}

/// Boxed future returned by [`Approver::ask`] (object-safe without `async_trait`).
pub type ApprovalFuture<'a> = Pin<Box<dyn Future<Output = Approval> + Send + 'a>>;

/// Something that can ask a human. Implementations must not block the thread: a slow
/// answer to one exec must not stall the other execs of the tree.
pub trait Approver: Send + Sync {
    /// Ask about one exec. Cancellation (the future dropped) means the session ended.
    fn ask(&self, request: ApprovalRequest) -> ApprovalFuture<'_>;

    /// Ask whether the sandboxed tree may connect to a host (`Allow`: this connection;
    /// `AllowForSession`: every connection to it for the rest of the session). Approvers
    /// that cannot ask about hosts deny, saying so.
    fn ask_host(&self, request: HostRequest) -> ApprovalFuture<'_> {
        Box::pin(async move {
            Approval::Deny {
                reason: format!(
                    "a rule asks a person about {}:{}, and nobody here can be asked about                      hosts: denied",
                    request.host, request.port
                ),
            }
        })
    }

    /// Whether a person gives the answers (the terminal, an MCP elicitation) rather than a
    /// fixed setting (`--on-prompt allow|deny`): records say `decided_by: human` only then.
    fn asks_a_person(&self) -> bool {
        true
    }
}

impl ApprovalRequest {
    /// Whether a "yes" runs the program outside the sandbox: a rule asked, and rule-decided
    /// execs escalate (see `routing`) unless the whole session already runs unsandboxed.
    pub fn escalates(&self) -> bool {
        self.evaluation.decided_by == policy::DecidedBy::Rule
    }

    /// argv\[0\] when the caller's differs from the program's basename (a multi-call program
    /// such as git or busybox may act on it), escaped for display.
    pub fn differing_argv0(&self) -> Option<String> {
        let argv0 = self.argv.first()?;
        let base = self.program.file_name()?.to_string_lossy();
        (argv0 != base.as_ref()).then(|| escape_control(argv0))
    }
}

/// The rule a "remember" answer appends (terminal and MCP elicitation alike), as the
/// question shows it.
#[derive(Debug, Clone)]
pub struct RuleOffer {
    /// The prefix, as [`proposed_prefix`] derived it.
    pub prefix: Vec<String>,
    /// The exact line appended.
    pub line: String,
    /// The rules file.
    pub file: PathBuf,
}

impl RuleOffer {
    /// The offer for `request` when it proposes a prefix and `file` is configured.
    pub fn for_request(request: &ApprovalRequest, file: Option<&PathBuf>) -> Option<RuleOffer> {
        let prefix = request.proposed_prefix.clone()?;
        let line = policy::amend::prefix_rule_line(&prefix).ok()?;
        Some(RuleOffer {
            prefix,
            line,
            file: file?.clone(),
        })
    }
}

/// The prefix an "always" may persist for this exec, as Codex proposes one for a command
/// its heuristics asked about: the command that was asked about, whole (`program` with
/// every argument, never a shorter prefix), so the rule is never broader than the question
/// (it still matches longer command lines that start with it; the question says so).
///
/// `None` when any rule matched (an allow rule cannot outrank a `prompt` rule, and a rule
/// that already allows has nothing to add), when a token is empty (Codex refuses those), or
/// when the rule would hand out a shell or an interpreter (`policy::lint`): an "always" for
/// `python3` alone would allow every Python program.
///
/// The program token is the bare name when `names_it(basename)` says the name stands for
/// this very file through trusted places (as a later session checks before escalating on a
/// bare-name rule), else the absolute path: a program the agent put somewhere else never
/// earns a rule for the name.
pub fn proposed_prefix(
    evaluation: &Evaluation,
    program: &std::path::Path,
    argv: &[String],
    names_it: impl Fn(&str) -> bool,
) -> Option<Vec<String>> {
    if evaluation.decision != policy::Decision::Prompt || !evaluation.matched_rules.is_empty() {
        return None;
    }
    let path = program.to_str()?;
    let base = program.file_name()?.to_str()?;
    let token = if names_it(base) { base } else { path };
    let mut prefix = Vec::with_capacity(argv.len().max(1));
    prefix.push(token.to_owned());
    prefix.extend(argv.iter().skip(1).cloned());
    let line = policy::amend::prefix_rule_line(&prefix).ok()?;
    let hands_out_a_shell = policy::Policy::from_source("proposed", &line)
        .map(|p| !p.lint().is_empty())
        .unwrap_or(true);
    (!hands_out_a_shell).then_some(prefix)
}

/// `text` with every control character (C0, DEL, C1, and the bidirectional overrides that
/// reorder what a terminal shows) written as a visible escape, so an argument or a path
/// cannot move the cursor, repaint the question or hide part of it.
pub fn escape_control(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{1b}' => out.push_str("\\e"),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() || is_bidi_control(c) => {
                out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out
}

/// Characters that reorder or hide text on a terminal without being `char::is_control`.
fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heuristic_prompt() -> Evaluation {
        Evaluation {
            decision: policy::Decision::Prompt,
            decided_by: policy::DecidedBy::Heuristics,
            matched_rules: vec![],
            heuristic: None,
        }
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|t| (*t).to_owned()).collect()
    }

    #[test]
    fn the_proposed_prefix_is_the_whole_command_asked_about() {
        let rm = std::path::Path::new("/usr/bin/rm");
        let argv = s(&["rm", "-f", "x"]);
        let trusted = |name: &str| name == "rm";
        assert_eq!(
            proposed_prefix(&heuristic_prompt(), rm, &argv, trusted),
            Some(s(&["rm", "-f", "x"]))
        );
        // argv[0] is the caller's; the program token comes from the file that runs.
        let argv0 = s(&["innocent", "-f", "x"]);
        assert_eq!(
            proposed_prefix(&heuristic_prompt(), rm, &argv0, trusted),
            Some(s(&["rm", "-f", "x"]))
        );
        // A file the name does not stand for keeps its path.
        let planted = std::path::Path::new("/tmp/w/rm");
        assert_eq!(
            proposed_prefix(&heuristic_prompt(), planted, &argv, |_| false),
            Some(s(&["/tmp/w/rm", "-f", "x"]))
        );
    }

    #[test]
    fn no_prefix_when_a_rule_asked_or_it_would_hand_out_a_shell() {
        let mut asked_by_rule = heuristic_prompt();
        asked_by_rule.decided_by = policy::DecidedBy::Rule;
        asked_by_rule.matched_rules.push(policy::RuleMatch {
            matched_prefix: s(&["rm"]),
            decision: policy::Decision::Prompt,
            justification: None,
            origin: None,
            resolved_program: None,
        });
        let rm = std::path::Path::new("/usr/bin/rm");
        assert_eq!(
            proposed_prefix(&asked_by_rule, rm, &s(&["rm", "-f", "x"]), |_| true),
            None
        );
        let py = std::path::Path::new("/usr/bin/python3");
        assert_eq!(
            proposed_prefix(&heuristic_prompt(), py, &s(&["python3"]), |_| true),
            None
        );
        assert_eq!(
            proposed_prefix(&heuristic_prompt(), rm, &s(&["rm", ""]), |_| true),
            None
        );
    }

    #[test]
    fn control_characters_are_shown_not_obeyed() {
        assert_eq!(
            escape_control("ls\u{1b}[2K\rrm -rf /\n\u{7}\u{9b}x\u{202e}"),
            "ls\\e[2K\\rrm -rf /\\n\\u{7}\\u{9b}x\\u{202e}"
        );
        assert_eq!(escape_control("plain é ü"), "plain é ü");
        assert_eq!(escape_control("a\\nb"), "a\\\\nb");
    }
}

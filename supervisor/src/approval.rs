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

//! The `shell` tool's contract: its parameters (Codex's, unchanged), how they are checked,
//! and the result it returns.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rmcp::ErrorData as McpError;
use rmcp::schemars;
use serde::{Deserialize, Serialize};
use supervisor::{Decider, Enforcement, ExecRecord, RanIn, SessionOutcome};

use crate::capture::{Captured, StreamText};
use crate::elicitation::Answered;

/// Linux refuses a single argv string longer than this (`MAX_ARG_STRLEN`, 32 pages,
/// including the NUL): `bash -c COMMAND` could never start with a longer command.
pub const MAX_COMMAND_BYTES: usize = 128 * 1024 - 1;

/// What the tool tells the model. Codex's wording first, so agents written for Codex's
/// shell tool read the same contract.
pub const DESCRIPTION: &str = "Runs a shell command and returns its output. You MUST provide the workdir as an absolute path.\n\n\
The command runs in bash (`bash -lc COMMAND`, or `bash -c` with login=false) under execgate: every program it starts is checked against an exec policy. \
A program can be allowed (it runs inside a sandbox), forbidden (it fails to start and the reason is in `execs`), or need a human's approval (the user is asked; waiting does not count against timeout_ms). \
The result has `exit_code`, `stdout`, `stderr`, `output` (both interleaved, only when the command wrote to both), `duration_ms`, `timed_out`, the `sandbox` the command ran in, and `execs`: every program that was denied or ran outside the sandbox, with the reason. \
A non-zero exit is a normal result, not a tool error. Output over the cap keeps its beginning and end, with a marker where bytes were cut.";

/// The `shell` tool's arguments, with Codex's names and meaning.
///
/// The schema is plain for every client's validator: an optional property is just absent
/// from `required` (never `"type": [T, "null"]`, which form-driven clients such as MCP
/// Inspector cannot fill), and no `format` outside JSON Schema's own.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[schemars(transform = plain_input_schema)]
pub struct ShellParams {
    /// The bash string to execute.
    pub command: String,
    /// The working directory to execute the command in. Must be an absolute path.
    pub workdir: String,
    /// The timeout for the command in milliseconds (default 10000). Time spent waiting
    /// for a human to approve a command does not count.
    #[schemars(range(min = 1))]
    pub timeout_ms: Option<u64>,
    /// Launch Bash with -lc instead of -c: defaults to true.
    pub login: Option<bool>,
}

/// Checked arguments, ready for a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellCall {
    pub argv: Vec<String>,
    pub workdir: PathBuf,
    pub timeout: Duration,
}

impl ShellParams {
    /// Checks the arguments; every failure is `invalid_params` with a message naming the
    /// field, what was wrong, and what is expected.
    pub fn check(self, default_timeout: Duration) -> Result<ShellCall, McpError> {
        if self.command.len() > MAX_COMMAND_BYTES {
            return Err(McpError::invalid_params(
                format!(
                    "`command` is {} bytes; the limit is {MAX_COMMAND_BYTES} bytes (Linux's \
                     MAX_ARG_STRLEN for the argument of bash -c): write long scripts to a file \
                     and run the file",
                    self.command.len()
                ),
                None,
            ));
        }
        if self.command.contains('\0') {
            return Err(McpError::invalid_params(
                "`command` contains a NUL byte, which no exec argument can hold",
                None,
            ));
        }
        if self.command.trim().is_empty() {
            return Err(McpError::invalid_params("`command` is empty", None));
        }
        let workdir = check_workdir(&self.workdir)?;
        let timeout = match self.timeout_ms {
            Some(0) => {
                return Err(McpError::invalid_params(
                    "`timeout_ms` must be at least 1 (omit it for the default)",
                    None,
                ));
            }
            Some(ms) => Duration::from_millis(ms),
            None => default_timeout,
        };
        let flag = if self.login.unwrap_or(true) {
            "-lc"
        } else {
            "-c"
        };
        Ok(ShellCall {
            argv: vec!["bash".to_owned(), flag.to_owned(), self.command],
            workdir,
            timeout,
        })
    }
}

/// `format`s JSON Schema 2020-12 defines; schemars adds others (`uint64`, `int32`, ...)
/// that validators such as Ajv do not know and warn about.
const STANDARD_FORMATS: &[&str] = &[
    "date-time",
    "date",
    "time",
    "duration",
    "email",
    "idn-email",
    "hostname",
    "idn-hostname",
    "ipv4",
    "ipv6",
    "uri",
    "uri-reference",
    "iri",
    "iri-reference",
    "uuid",
    "uri-template",
    "json-pointer",
    "relative-json-pointer",
    "regex",
];

fn plain_input_schema(schema: &mut schemars::Schema) {
    if let Some(object) = schema.as_object_mut() {
        plain(object, true);
    }
}

fn plain_output_schema(schema: &mut schemars::Schema) {
    if let Some(object) = schema.as_object_mut() {
        plain(object, false);
    }
}

/// Removes non-standard `format`s from a schema and every schema inside it, and with
/// `not_null`, `null` from `type` lists (an optional input is absent, not null).
fn plain(object: &mut serde_json::Map<String, serde_json::Value>, not_null: bool) {
    use serde_json::Value;
    if object
        .get("format")
        .and_then(Value::as_str)
        .is_some_and(|f| !STANDARD_FORMATS.contains(&f))
    {
        object.remove("format");
    }
    if not_null && let Some(Value::Array(types)) = object.get_mut("type") {
        types.retain(|t| t != "null");
        if let [only] = types.as_slice() {
            let only = only.clone();
            object.insert("type".to_owned(), only);
        }
    }
    for value in object.values_mut() {
        match value {
            Value::Object(child) => plain(child, not_null),
            Value::Array(items) => items
                .iter_mut()
                .filter_map(Value::as_object_mut)
                .for_each(|child| plain(child, not_null)),
            _ => {}
        }
    }
}

fn check_workdir(raw: &str) -> Result<PathBuf, McpError> {
    let path = Path::new(raw);
    if raw.is_empty() {
        return Err(McpError::invalid_params(
            "`workdir` is empty; it must be an absolute path to an existing directory",
            None,
        ));
    }
    if !path.is_absolute() {
        return Err(McpError::invalid_params(
            format!("`workdir` must be an absolute path, got `{raw}`"),
            None,
        ));
    }
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(path.to_path_buf()),
        Ok(_) => Err(McpError::invalid_params(
            format!("`workdir` `{raw}` is not a directory"),
            None,
        )),
        Err(e) => Err(McpError::invalid_params(
            format!("`workdir` `{raw}` cannot be used: {e}"),
            None,
        )),
    }
}

/// What the `shell` tool returns as `structuredContent` (beside it, [`ShellResult::text`]).
///
/// Nested types are inlined in the output schema (no `$ref`): clients validate every
/// result against it, and a self-contained schema is quicker to check. It has no `format`
/// outside JSON Schema's own (Ajv warns about each `uint64`/`int32`).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(transform = plain_output_schema)]
pub struct ShellResult {
    /// The shell's exit code; 128 + N when it was killed by signal N.
    pub exit_code: i32,
    /// The signal that killed the shell, if one did (e.g. 9 after a timeout).
    pub signal: Option<i32>,
    /// Standard output (capped: head and tail kept, the cut marked).
    pub stdout: String,
    /// Standard error (capped the same way).
    pub stderr: String,
    /// Standard output and standard error interleaved in the order they arrived: present
    /// only when the command wrote to both (otherwise it would repeat the one it wrote).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Wall-clock time, including any time spent waiting for a human.
    pub duration_ms: u64,
    /// True when the command was killed for running longer than `timeout_ms`.
    pub timed_out: bool,
    /// Byte counts and cuts for each stream.
    pub streams: StreamsReport,
    /// The sandbox allowed programs ran in.
    pub sandbox: SandboxReport,
    /// Programs that were denied or ran outside the sandbox, with the reason.
    pub execs: Vec<ExecReport>,
    /// `host:port`s the sandbox's egress proxy refused (no rule allowed them, a rule
    /// forbade them, or they resolve to a private address): why a download failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocked_hosts: Vec<String>,
    /// What execgate could not do as asked, one line each: a sandbox state it could not
    /// read or honour (and what it used instead), output cut to fit the response budget.
    #[serde(default)]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(inline)]
pub struct StreamsReport {
    pub stdout: StreamReport,
    pub stderr: StreamReport,
    /// Present with `output`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<StreamReport>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(inline)]
pub struct StreamReport {
    /// Bytes the command wrote.
    pub total_bytes: u64,
    /// Bytes left out of the text (0 when nothing was cut).
    pub cut_bytes: u64,
    /// True when bytes that are not UTF-8 were replaced by U+FFFD.
    pub lossy: bool,
    /// Bytes of the text (UTF-8, after replacement) left out besides, to keep the whole
    /// response within its byte budget.
    #[serde(default)]
    pub budget_cut_bytes: u64,
}

impl From<&StreamText> for StreamReport {
    fn from(t: &StreamText) -> Self {
        StreamReport {
            total_bytes: t.total_bytes,
            cut_bytes: t.cut_bytes,
            lossy: t.lossy,
            budget_cut_bytes: 0,
        }
    }
}

/// Where the sandbox came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
#[schemars(inline)]
pub enum SandboxSource {
    /// The server's command-line flags (no sandbox state received yet).
    CommandLine,
    /// The last `codex/sandbox-state/update` request.
    SandboxStateUpdate,
    /// The `codex/sandbox-state-meta` key of this call's `_meta`.
    ToolCallMeta,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(inline)]
pub struct SandboxReport {
    pub source: SandboxSource,
    /// What the kernel enforced, in one line, e.g. `landlock: full (ABI 6)`.
    pub enforcement: String,
    /// The session's own report of what was enforced (the same type `supervise` writes
    /// into the audit log): mode, level, Landlock ABI, what is missing and the kernel that
    /// has it, writable roots, namespaces, capabilities, unix sockets, egress.
    #[serde(flatten)]
    pub enforced: Enforcement,
}

impl SandboxReport {
    pub fn new(source: SandboxSource, enforced: &Enforcement) -> Self {
        SandboxReport {
            source,
            enforcement: enforced.summary(),
            enforced: enforced.clone(),
        }
    }
}

/// One program that was denied or ran outside the sandbox.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(inline)]
pub struct ExecReport {
    pub program: String,
    pub argv: Vec<String>,
    pub cwd: String,
    /// The policy's decision: allow, prompt or forbidden.
    pub decision: String,
    /// denied, escalated (ran outside the sandbox) or sandbox.
    pub ran_in: String,
    /// Who settled it: rule, heuristics, human (a person answered) or supervisor (nobody
    /// could answer: the client has no elicitation, the request failed, or its answer was
    /// none of the offered choices; `reason` says which).
    pub decided_by: String,
    /// True only when a person answered for this command.
    pub asked_human: bool,
    /// Why, in one line.
    pub reason: String,
    /// The rules that matched, as `pattern (decision) at file:line`.
    pub rules: Vec<String>,
    /// Exit code of an escalated program.
    pub exit_code: Option<i32>,
}

impl ExecReport {
    /// `by_person`: a person answered for this command (see [`crate::elicitation::Answered`]).
    pub fn new(r: &ExecRecord, by_person: bool) -> Self {
        let human = r.decided_by == Decider::Human && by_person;
        ExecReport {
            program: r.program.display().to_string(),
            argv: r.argv.clone(),
            cwd: r.cwd.display().to_string(),
            decision: r.decision.as_str().to_owned(),
            ran_in: match r.ran_in {
                RanIn::Sandbox => "sandbox",
                RanIn::Escalated => "escalated",
                RanIn::Outside => "outside",
                RanIn::Denied => "denied",
            }
            .to_owned(),
            decided_by: match r.decided_by {
                Decider::Rule => "rule",
                Decider::Heuristics => "heuristics",
                Decider::Human if human => "human",
                Decider::Human | Decider::Supervisor => "supervisor",
            }
            .to_owned(),
            asked_human: human,
            reason: r.reason.clone(),
            rules: r
                .matched_rules
                .iter()
                .map(|m| {
                    let pattern = serde_json::to_string(&m.matched_prefix).unwrap_or_default();
                    match &m.origin {
                        Some(o) => format!(
                            "{pattern} ({}) at {}:{}",
                            m.decision,
                            o.file.display(),
                            o.line
                        ),
                        None => format!("{pattern} ({})", m.decision),
                    }
                })
                .collect(),
            exit_code: r.status.map(|s| s.code()),
        }
    }
}

impl ShellResult {
    /// `by_person` tells which execs' approvals a person gave; `warnings` come from the
    /// sandbox state.
    pub fn new(
        outcome: &SessionOutcome,
        captured: Captured,
        source: SandboxSource,
        warnings: Vec<String>,
        by_person: &Answered,
    ) -> Self {
        let sandbox = SandboxReport::new(source, &outcome.sandbox);
        let signal = match outcome.status {
            supervisor::ExitStatus::Signaled(sig) => Some(sig),
            supervisor::ExitStatus::Exited(_) => None,
        };
        ShellResult {
            exit_code: outcome.status.code(),
            signal,
            streams: StreamsReport {
                stdout: (&captured.stdout).into(),
                stderr: (&captured.stderr).into(),
                output: captured.output.as_ref().map(Into::into),
            },
            stdout: captured.stdout.text,
            stderr: captured.stderr.text,
            output: captured.output.map(|o| o.text),
            duration_ms: u64::try_from(outcome.duration.as_millis()).unwrap_or(u64::MAX),
            timed_out: outcome.timed_out,
            sandbox,
            execs: outcome
                .notable_execs
                .iter()
                .map(|r| ExecReport::new(r, by_person.by_person(&r.program, &r.argv)))
                .collect(),
            blocked_hosts: outcome.blocked_hosts.clone(),
            warnings,
        }
    }
}

/// Bytes of output the text block carries at most (its head and tail, the cut marked).
pub const TEXT_OUTPUT_BYTES: usize = 16 << 10;

/// Exec lines the text block lists at most.
const TEXT_EXEC_LINES: usize = 20;

/// Bytes of one exec line's command and reason at most.
const TEXT_LINE_BYTES: usize = 240;

impl ShellResult {
    /// The result as plain text: the `content` block beside `structuredContent`, for a
    /// client that shows or reads text. Codex, Claude Code, VS Code and Copilot give the
    /// model `structuredContent` and not this, so it is kept short: the status, the execs
    /// that were denied or ran outside the sandbox, the warnings, and the output's first
    /// and last [`TEXT_OUTPUT_BYTES`] / 2 bytes.
    pub fn text(&self) -> String {
        use std::fmt::Write;
        let mut text = String::new();
        let _ = writeln!(text, "Exit code: {}", self.exit_code);
        let _ = writeln!(text, "Wall time: {} ms", self.duration_ms);
        if self.timed_out {
            text.push_str("Timed out: killed after timeout_ms\n");
        } else if let Some(signal) = self.signal {
            let _ = writeln!(text, "Killed by signal {signal}");
        }
        for exec in self.execs.iter().take(TEXT_EXEC_LINES) {
            let verb = match exec.ran_in.as_str() {
                "denied" => "Denied",
                "sandbox" => "Ran in the sandbox",
                _ => "Ran outside the sandbox",
            };
            let line = format!("{}: {}", exec.argv.join(" "), exec.reason);
            let _ = writeln!(text, "{verb}: {}", head(&line, TEXT_LINE_BYTES));
        }
        if self.execs.len() > TEXT_EXEC_LINES {
            let _ = writeln!(
                text,
                "({} more execs in structuredContent.execs)",
                self.execs.len() - TEXT_EXEC_LINES
            );
        }
        if !self.blocked_hosts.is_empty() {
            let _ = writeln!(text, "Blocked hosts: {}", self.blocked_hosts.join(", "));
        }
        for warning in &self.warnings {
            let _ = writeln!(text, "Warning: {}", head(warning, TEXT_LINE_BYTES));
        }
        text.push_str("Output:\n");
        let output = match &self.output {
            Some(both) => both.as_str(),
            None if self.stdout.is_empty() => &self.stderr,
            None => &self.stdout,
        };
        text.push_str(&head_and_tail(output, TEXT_OUTPUT_BYTES));
        text
    }
}

/// `s` cut to at most `max` bytes at a character boundary, the cut marked.
pub(crate) fn head(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return s.into();
    }
    let end = floor_boundary(s, max);
    format!("{}[... {} bytes cut]", &s[..end], s.len() - end).into()
}

/// The last character boundary of `s` at or before `i` (`str::floor_char_boundary`, not
/// stable at this crate's MSRV).
pub(crate) fn floor_boundary(s: &str, i: usize) -> usize {
    (0..=i.min(s.len()))
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0)
}

/// The first character boundary of `s` at or after `i`.
fn ceil_boundary(s: &str, i: usize) -> usize {
    (i.min(s.len())..=s.len())
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(s.len())
}

/// `s` with at most `max` bytes: its first and last halves, with a marker where the middle
/// was left out.
fn head_and_tail(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return s.into();
    }
    let head_end = floor_boundary(s, max / 2);
    let tail_start = ceil_boundary(s, s.len() - max / 2);
    format!(
        "{}\n[... execgate: {} bytes left out of this text; the output is whole (up to the \
         output cap) in structuredContent ...]\n{}",
        &s[..head_end],
        tail_start - head_end,
        &s[tail_start..]
    )
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::ErrorCode;

    fn params(command: &str, workdir: &str) -> ShellParams {
        ShellParams {
            command: command.to_owned(),
            workdir: workdir.to_owned(),
            timeout_ms: None,
            login: None,
        }
    }

    fn err(p: ShellParams) -> McpError {
        p.check(Duration::from_secs(10)).unwrap_err()
    }

    #[test]
    fn defaults_are_codex_defaults() {
        let call = params("true", "/").check(Duration::from_secs(10)).unwrap();
        assert_eq!(call.argv, ["bash", "-lc", "true"]);
        assert_eq!(call.timeout, Duration::from_secs(10));
        let mut p = params("true", "/");
        p.login = Some(false);
        p.timeout_ms = Some(250);
        let call = p.check(Duration::from_secs(10)).unwrap();
        assert_eq!(call.argv, ["bash", "-c", "true"]);
        assert_eq!(call.timeout, Duration::from_millis(250));
    }

    #[test]
    fn bad_arguments_are_invalid_params_with_a_precise_message() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let file = file.path().to_str().unwrap().to_owned();
        let cases = [
            (
                params("true", "relative/dir"),
                "must be an absolute path, got `relative/dir`",
            ),
            (params("true", ""), "`workdir` is empty"),
            (
                params("true", "/no/such/dir"),
                "`/no/such/dir` cannot be used",
            ),
            (params("true", &file), "is not a directory"),
            (
                params(&"x".repeat(10 << 20), "/"),
                "`command` is 10485760 bytes",
            ),
            (params("a\0b", "/"), "NUL"),
            (params("  ", "/"), "`command` is empty"),
            (
                ShellParams {
                    timeout_ms: Some(0),
                    ..params("true", "/")
                },
                "`timeout_ms` must be at least 1",
            ),
        ];
        for (p, want) in cases {
            let e = err(p);
            assert_eq!(e.code, ErrorCode::INVALID_PARAMS);
            assert!(e.message.contains(want), "{} !~ {want}", e.message);
        }
    }

    #[test]
    fn the_longest_command_bash_can_take_is_accepted() {
        let p = params(&"x".repeat(MAX_COMMAND_BYTES), "/");
        assert!(p.check(Duration::from_secs(1)).is_ok());
    }
}

//! Rule amendments: an "always" approval written to a rules file, byte for byte as Codex
//! writes it, so the next session and Codex itself honour it.
//!
//! One line per amendment, appended under an exclusive `flock` (the lock Codex takes on the
//! same file), after an exact-line dedupe for prefix rules and a newline fix-up for a file
//! that does not end in one:
//!
//! ```text
//! prefix_rule(pattern=["git", "pull"], decision="allow")
//! network_rule(host="api.github.com", protocol="https", decision="allow")
//! ```
//!
//! Tokens are JSON strings (`serde_json`, as Codex formats them), which Starlark reads back
//! as the same string; every line is parsed back with this crate's own loader before it is
//! written, and a line that would not mean exactly the rule asked for is refused, so an
//! argument holding quotes, newlines or control characters cannot smuggle a second rule
//! into the file.
//!
//! The file is the person's, never the agent's: the caller names it (a flag, `$CODEX_HOME`),
//! and this module refuses a symlink at the path, anything but a regular file, a file with
//! more than one link (a hard link planted to make us append to another file), and a file
//! owned by another user. This module writes; it never decides what to write.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg, OFlag};

use crate::decision::Decision;
use crate::policy::{CheckOptions, LoadOptions, Policy};
use crate::rules_file::validate_network_host;

/// The file Codex appends its amendments to, in `$CODEX_HOME/rules`.
pub const DEFAULT_FILE_NAME: &str = "default.rules";

/// A rules file larger than this is not read for the dedupe (Codex's bound too).
const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// Why an amendment was not written. Nothing was written when one is returned.
#[derive(Debug, thiserror::Error)]
pub enum AmendError {
    /// A prefix rule needs at least one token.
    #[error("a prefix rule needs at least one token")]
    EmptyPrefix,
    /// Codex refuses empty and whitespace-only tokens; so do we.
    #[error("a prefix rule token cannot be empty or only whitespace")]
    EmptyPrefixToken,
    /// The network rule's host, protocol or justification is not one Codex accepts.
    #[error("invalid network rule: {0}")]
    InvalidNetworkRule(String),
    /// The line would not load back as exactly the rule asked for.
    #[error("the rule would not read back as written ({0}): not written")]
    NotRoundTrip(String),
    /// The path names no file in a directory.
    #[error("{}: a rules file path needs a parent directory", .path.display())]
    MissingParent {
        /// The path given.
        path: PathBuf,
    },
    /// The path is not a plain file of ours (a symlink, a directory, a device, a file with
    /// other links, another user's file).
    #[error("{}: {why}: not written", .path.display())]
    NotOurFile {
        /// The path given.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// Creating the directory, opening, locking, reading or writing failed.
    #[error("{}: cannot {step}: {source}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done.
        step: &'static str,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
}

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// The line was added.
    Added,
    /// The exact line was in the file already; nothing was written.
    AlreadyPresent,
}

/// A `network_rule` protocol, spelt as Codex writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkProtocol {
    Http,
    Https,
    Socks5Tcp,
    Socks5Udp,
}

impl NetworkProtocol {
    fn as_policy_str(self) -> &'static str {
        match self {
            NetworkProtocol::Http => "http",
            NetworkProtocol::Https => "https",
            NetworkProtocol::Socks5Tcp => "socks5_tcp",
            NetworkProtocol::Socks5Udp => "socks5_udp",
        }
    }
}

/// Where "always" is written by default: `$CODEX_HOME/rules/default.rules` (`CODEX_HOME`
/// defaulting to `~/.codex`), the file Codex itself appends to. `None` without a home.
pub fn default_file(options: &LoadOptions) -> Option<PathBuf> {
    let codex_home = options
        .codex_home
        .clone()
        .or_else(|| options.home.as_ref().map(|home| home.join(".codex")))?;
    Some(codex_home.join("rules").join(DEFAULT_FILE_NAME))
}

/// `prefix_rule(pattern=[...], decision="allow")` for `prefix`, exactly as Codex writes it,
/// checked to load back as that one rule.
pub fn prefix_rule_line(prefix: &[String]) -> Result<String, AmendError> {
    if prefix.is_empty() {
        return Err(AmendError::EmptyPrefix);
    }
    if prefix.iter().any(|token| token.trim().is_empty()) {
        return Err(AmendError::EmptyPrefixToken);
    }
    let tokens: Vec<String> = prefix.iter().map(|t| json_string(t)).collect();
    let line = format!(
        "prefix_rule(pattern=[{}], decision=\"allow\")",
        tokens.join(", ")
    );
    check_prefix_round_trip(&line, prefix)?;
    Ok(line)
}

/// `network_rule(host=..., protocol=..., decision=...[, justification=...])`, exactly as
/// Codex writes it (the host normalised: lowercase, port and trailing dot dropped; a
/// forbidden decision spelt `deny`), checked to load back.
pub fn network_rule_line(
    host: &str,
    protocol: NetworkProtocol,
    decision: Decision,
    justification: Option<&str>,
) -> Result<String, AmendError> {
    let (host, _port) = validate_network_host(host)
        .map_err(|why| AmendError::InvalidNetworkRule(format!("network_rule host {why}")))?;
    if justification.is_some_and(|j| j.trim().is_empty()) {
        return Err(AmendError::InvalidNetworkRule(
            "justification cannot be empty".to_owned(),
        ));
    }
    let decision = match decision {
        Decision::Allow => "allow",
        Decision::Prompt => "prompt",
        Decision::Forbidden => "deny",
    };
    let mut line = format!(
        "network_rule(host={}, protocol={}, decision={}",
        json_string(&host),
        json_string(protocol.as_policy_str()),
        json_string(decision)
    );
    if let Some(justification) = justification {
        line.push_str(&format!(", justification={}", json_string(justification)));
    }
    line.push(')');
    let policy = Policy::from_source("amendment", &line)
        .map_err(|e| AmendError::NotRoundTrip(e.to_string()))?;
    if policy.network_rule_count() != 1 || policy.rule_count() != 0 {
        return Err(AmendError::NotRoundTrip(
            "not exactly one network_rule".into(),
        ));
    }
    Ok(line)
}

/// Appends `prefix_rule(pattern=prefix, decision="allow")` to `file` (see the module docs),
/// unless the exact line is there already. Blocking: file lock and I/O.
pub fn append_prefix_rule(file: &Path, prefix: &[String]) -> Result<Appended, AmendError> {
    let line = prefix_rule_line(prefix)?;
    append_line(file, &line, true)
}

/// Appends a `network_rule` line to `file`. Network rules are ordered (a later one may
/// override an earlier one), so, as in Codex, an identical earlier line does not stop it.
pub fn append_network_rule(
    file: &Path,
    host: &str,
    protocol: NetworkProtocol,
    decision: Decision,
    justification: Option<&str>,
) -> Result<Appended, AmendError> {
    let line = network_rule_line(host, protocol, decision, justification)?;
    append_line(file, &line, false)
}

/// A JSON string literal, as Codex formats tokens (`serde_json::to_string` of a `&str`).
fn json_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// The line must load as one allow rule for exactly `prefix`, and nothing else.
fn check_prefix_round_trip(line: &str, prefix: &[String]) -> Result<(), AmendError> {
    let policy = Policy::from_source("amendment", line)
        .map_err(|e| AmendError::NotRoundTrip(e.to_string()))?;
    if policy.rule_count() != 1 || policy.network_rule_count() != 0 {
        return Err(AmendError::NotRoundTrip(
            "not exactly one prefix_rule".into(),
        ));
    }
    let evaluation = policy.evaluate_check(prefix, &CheckOptions::default());
    let exact = evaluation.decision == Decision::Allow
        && evaluation
            .matched_rules
            .iter()
            .any(|m| m.matched_prefix == prefix);
    if !exact {
        return Err(AmendError::NotRoundTrip(
            "it does not match the command it was made from".into(),
        ));
    }
    Ok(())
}

fn io<'a>(path: &'a Path, step: &'static str) -> impl FnOnce(std::io::Error) -> AmendError + 'a {
    move |source| AmendError::Io {
        path: path.to_path_buf(),
        step,
        source,
    }
}

fn append_line(path: &Path, line: &str, dedupe: bool) -> Result<Appended, AmendError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .ok_or_else(|| AmendError::MissingParent {
            path: path.to_path_buf(),
        })?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io(dir, "create the directory"))?;
    let file = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .mode(0o600)
        // A symlink at the path is refused (ELOOP), never followed to another file.
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC).bits())
        .open(path)
        .map_err(|source| match source.raw_os_error() {
            Some(code) if code == nix::errno::Errno::ELOOP as i32 => AmendError::NotOurFile {
                path: path.to_path_buf(),
                why: "a symbolic link".into(),
            },
            _ => AmendError::Io {
                path: path.to_path_buf(),
                step: "open",
                source,
            },
        })?;
    check_our_file(path, &file)?;
    let mut file = Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, errno)| io(path, "lock")(std::io::Error::from(errno)))?;
    // Checked again under the lock: the path could have been swapped while we waited.
    check_our_file(path, &file)?;
    file.seek(SeekFrom::Start(0)).map_err(io(path, "seek"))?;
    let mut contents = Vec::new();
    Read::by_ref(&mut *file)
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut contents)
        .map_err(io(path, "read"))?;
    if contents.len() as u64 > MAX_FILE_BYTES {
        return Err(io(path, "read")(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "rules file exceeds the 64 MiB append limit",
        )));
    }
    let text = String::from_utf8(contents).map_err(|_| {
        io(path, "read")(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not UTF-8 text",
        ))
    })?;
    if dedupe && text.lines().any(|existing| existing == line) {
        return Ok(Appended::AlreadyPresent);
    }
    let mut out = String::with_capacity(line.len() + 2);
    if !text.is_empty() && !text.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(line);
    out.push('\n');
    // One write: O_APPEND puts it at the end whatever a lock-ignoring writer did.
    file.write_all(out.as_bytes()).map_err(io(path, "write"))?;
    Ok(Appended::Added)
}

/// A regular file with one link, owned by the user we run as.
fn check_our_file(path: &Path, file: &File) -> Result<(), AmendError> {
    let meta = file.metadata().map_err(io(path, "stat"))?;
    let why = if !meta.file_type().is_file() {
        Some("not a regular file".to_owned())
    } else if meta.nlink() != 1 {
        Some(format!(
            "has {} hard links (a rules file has one)",
            meta.nlink()
        ))
    } else if meta.uid() != nix::unistd::geteuid().as_raw() {
        Some(format!("owned by uid {}, not by us", meta.uid()))
    } else {
        None
    };
    match why {
        Some(why) => Err(AmendError::NotOurFile {
            path: path.to_path_buf(),
            why,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|t| (*t).to_owned()).collect()
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn new_file_gets_codex_bytes_and_its_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("rules").join("default.rules");
        let got = append_prefix_rule(&path, &s(&["echo", "Hello, world!"])).unwrap();
        assert_eq!(got, Appended::Added);
        assert_eq!(
            read(&path),
            "prefix_rule(pattern=[\"echo\", \"Hello, world!\"], decision=\"allow\")\n"
        );
    }

    #[test]
    fn missing_final_newline_is_fixed_and_existing_one_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("default.rules");
        std::fs::write(&path, "prefix_rule(pattern=[\"ls\"], decision=\"allow\")").unwrap();
        append_prefix_rule(&path, &s(&["echo", "hi"])).unwrap();
        assert_eq!(
            read(&path),
            "prefix_rule(pattern=[\"ls\"], decision=\"allow\")\n\
             prefix_rule(pattern=[\"echo\", \"hi\"], decision=\"allow\")\n"
        );
        append_prefix_rule(&path, &s(&["pwd"])).unwrap();
        assert!(read(&path).ends_with("\")\nprefix_rule(pattern=[\"pwd\"], decision=\"allow\")\n"));
    }

    #[test]
    fn an_exact_duplicate_is_not_written_twice() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("default.rules");
        assert_eq!(
            append_prefix_rule(&path, &s(&["git", "pull"])).unwrap(),
            Appended::Added
        );
        let once = read(&path);
        assert_eq!(
            append_prefix_rule(&path, &s(&["git", "pull"])).unwrap(),
            Appended::AlreadyPresent
        );
        assert_eq!(read(&path), once);
        // A prefix of it is another rule.
        append_prefix_rule(&path, &s(&["git"])).unwrap();
        assert_eq!(read(&path).lines().count(), 2);
    }

    #[test]
    fn hostile_tokens_are_escaped_and_read_back_as_themselves() {
        let nasty = s(&[
            "rm",
            "x\"], decision=\"allow\")\nprefix_rule(pattern=[\"bash",
            "a\\\"b",
            "tab\there\r\u{1}\u{7f}\u{1b}[2K",
            "\u{202e}é",
        ]);
        let line = prefix_rule_line(&nasty).unwrap();
        assert_eq!(
            line,
            "prefix_rule(pattern=[\"rm\", \"x\\\"], decision=\\\"allow\\\")\\nprefix_rule(pattern=[\\\"bash\", \
             \"a\\\\\\\"b\", \"tab\\there\\r\\u0001\u{7f}\\u001b[2K\", \"\u{202e}é\"], decision=\"allow\")"
        );
        assert!(!line.contains('\n'));
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("default.rules");
        append_prefix_rule(&path, &nasty).unwrap();
        let policy = Policy::from_source("r", &read(&path)).unwrap();
        assert_eq!(policy.rule_count(), 1);
        let bash = policy.evaluate_check(&s(&["bash"]), &CheckOptions::default());
        assert!(bash.matched_rules.is_empty(), "{bash:?}");
    }

    #[test]
    fn empty_tokens_are_refused() {
        assert!(matches!(
            prefix_rule_line(&[]),
            Err(AmendError::EmptyPrefix)
        ));
        assert!(matches!(
            prefix_rule_line(&s(&["ls", " "])),
            Err(AmendError::EmptyPrefixToken)
        ));
    }

    #[test]
    fn a_symlink_or_hard_link_at_the_path_is_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let victim = tmp.path().join("bashrc");
        std::fs::write(&victim, "echo hi\n").unwrap();
        let path = tmp.path().join("default.rules");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        let err = append_prefix_rule(&path, &s(&["ls"])).unwrap_err();
        assert!(matches!(err, AmendError::NotOurFile { .. }), "{err}");
        assert_eq!(read(&victim), "echo hi\n");

        std::fs::remove_file(&path).unwrap();
        std::fs::hard_link(&victim, &path).unwrap();
        let err = append_prefix_rule(&path, &s(&["ls"])).unwrap_err();
        assert!(err.to_string().contains("hard links"), "{err}");
        assert_eq!(read(&victim), "echo hi\n");

        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        assert!(append_prefix_rule(&path, &s(&["ls"])).is_err());
    }

    #[test]
    fn network_rules_in_codex_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("rules").join("default.rules");
        append_prefix_rule(&path, &s(&["curl"])).unwrap();
        append_network_rule(
            &path,
            "Api.GitHub.com",
            NetworkProtocol::Https,
            Decision::Allow,
            Some("Allow https_connect access to api.github.com"),
        )
        .unwrap();
        append_network_rule(
            &path,
            "example.org",
            NetworkProtocol::Socks5Tcp,
            Decision::Forbidden,
            None,
        )
        .unwrap();
        // Ordered rules: a repeat is appended again, as Codex does.
        append_network_rule(
            &path,
            "example.org",
            NetworkProtocol::Socks5Tcp,
            Decision::Forbidden,
            None,
        )
        .unwrap();
        assert_eq!(
            read(&path),
            "prefix_rule(pattern=[\"curl\"], decision=\"allow\")\n\
             network_rule(host=\"api.github.com\", protocol=\"https\", decision=\"allow\", justification=\"Allow https_connect access to api.github.com\")\n\
             network_rule(host=\"example.org\", protocol=\"socks5_tcp\", decision=\"deny\")\n\
             network_rule(host=\"example.org\", protocol=\"socks5_tcp\", decision=\"deny\")\n"
        );
        let policy = Policy::from_source("r", &read(&path)).unwrap();
        assert_eq!(policy.network_rule_count(), 3);
    }

    #[test]
    fn bad_network_rules_are_refused() {
        let line = |host: &str, j: Option<&str>| {
            network_rule_line(host, NetworkProtocol::Http, Decision::Prompt, j)
        };
        for host in [" ", "*.example.com", "a b", "http://x", "x/y", "x?q"] {
            assert!(
                matches!(line(host, None), Err(AmendError::InvalidNetworkRule(_))),
                "{host:?}"
            );
        }
        assert!(matches!(
            line("example.com", Some("  ")),
            Err(AmendError::InvalidNetworkRule(_))
        ));
        assert_eq!(
            line("example.com:8080", None).unwrap(),
            "network_rule(host=\"example.com\", protocol=\"http\", decision=\"prompt\")"
        );
    }

    #[test]
    fn default_file_is_codex_homes() {
        let options = LoadOptions {
            home: Some("/home/u".into()),
            ..LoadOptions::default()
        };
        assert_eq!(
            default_file(&options),
            Some(PathBuf::from("/home/u/.codex/rules/default.rules"))
        );
        let options = LoadOptions {
            codex_home: Some("/c".into()),
            home: Some("/home/u".into()),
            ..LoadOptions::default()
        };
        assert_eq!(
            default_file(&options),
            Some(PathBuf::from("/c/rules/default.rules"))
        );
    }
}

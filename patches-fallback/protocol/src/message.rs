//! The messages of the protocol and their JSON shape.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One exec the shell wants to make, as the supervisor sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscalateRequest {
    /// The program, absolute (made so against `cwd` when the shell gave a relative path).
    pub path: PathBuf,
    /// The argument vector, `argv[0]` included.
    pub argv: Vec<OsString>,
    /// The working directory of the exec.
    pub cwd: PathBuf,
    /// The environment, in order, without the wrapper's own variables.
    pub env: Vec<(OsString, OsString)>,
}

/// How an escalated command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it; the wrapper re-raises the same signal on itself.
    Signal(i32),
}

impl From<std::process::ExitStatus> for ExitStatus {
    fn from(status: std::process::ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => ExitStatus::Code(code),
            (None, Some(sig)) => ExitStatus::Signal(sig),
            // Neither exited nor signalled (stopped/continued): not a final status.
            (None, None) => ExitStatus::Code(255),
        }
    }
}

/// A string that is bytes on Unix: JSON text when it is UTF-8, else `{"bytes":[...]}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum WireStr {
    Text(String),
    Bytes { bytes: Vec<u8> },
}

impl From<&std::ffi::OsStr> for WireStr {
    fn from(s: &std::ffi::OsStr) -> Self {
        match s.to_str() {
            Some(t) => WireStr::Text(t.to_owned()),
            None => WireStr::Bytes {
                bytes: s.as_bytes().to_vec(),
            },
        }
    }
}

impl From<WireStr> for OsString {
    fn from(w: WireStr) -> Self {
        match w {
            WireStr::Text(t) => OsString::from(t),
            WireStr::Bytes { bytes } => OsString::from_vec(bytes),
        }
    }
}

/// [`EscalateRequest`] as it travels.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireRequest {
    path: WireStr,
    argv: Vec<WireStr>,
    cwd: WireStr,
    env: Vec<(WireStr, WireStr)>,
}

impl From<&EscalateRequest> for WireRequest {
    fn from(r: &EscalateRequest) -> Self {
        WireRequest {
            path: r.path.as_os_str().into(),
            argv: r.argv.iter().map(|a| a.as_os_str().into()).collect(),
            cwd: r.cwd.as_os_str().into(),
            env: r
                .env
                .iter()
                .map(|(k, v)| (k.as_os_str().into(), v.as_os_str().into()))
                .collect(),
        }
    }
}

impl From<WireRequest> for EscalateRequest {
    fn from(w: WireRequest) -> Self {
        EscalateRequest {
            path: OsString::from(w.path).into(),
            argv: w.argv.into_iter().map(OsString::from).collect(),
            cwd: OsString::from(w.cwd).into(),
            env: w
                .env
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }
}

/// What the wrapper sends.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// The exec to decide.
    Request(WireRequest),
    /// After an escalate answer: the fds attached to this frame, in order, named by
    /// their number in the wrapper (fds that were closed there are left out).
    Fds { fds: Vec<i32> },
}

impl ClientMessage {
    pub fn request(r: &EscalateRequest) -> Self {
        ClientMessage::Request(r.into())
    }

    /// For the server's "unexpected message" errors (the wrapper builds without it).
    #[cfg(feature = "server")]
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            ClientMessage::Request(_) => "request",
            ClientMessage::Fds { .. } => "fds",
        }
    }
}

/// What the supervisor answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// Exec the program in place (inside the sandbox).
    Run,
    /// Do not run it: print the reason, exit 126.
    Deny { reason: String },
    /// Send these fds; the supervisor runs the program and reports its status.
    Escalate { fds: Vec<i32> },
    /// The escalated program ended.
    Exit { status: ExitStatus },
}

impl ServerMessage {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            ServerMessage::Run => "run",
            ServerMessage::Deny { .. } => "deny",
            ServerMessage::Escalate { .. } => "escalate",
            ServerMessage::Exit { .. } => "exit",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_utf8_strings_survive_the_round_trip() {
        let req = EscalateRequest {
            path: "/bin/echo".into(),
            argv: vec!["echo".into(), OsString::from_vec(vec![0xff, b'a'])],
            cwd: "/tmp".into(),
            env: vec![("K".into(), OsString::from_vec(vec![0xfe]))],
        };
        let json = serde_json::to_string(&ClientMessage::request(&req)).unwrap();
        assert!(json.contains(r#""bytes":[255,97]"#), "{json}");
        assert!(json.contains(r#""path":"/bin/echo""#), "{json}");
        let ClientMessage::Request(w) = serde_json::from_str(&json).unwrap() else {
            panic!("not a request: {json}")
        };
        assert_eq!(EscalateRequest::from(w), req);
    }

    #[test]
    fn server_messages_have_a_stable_shape() {
        let cases = [
            (ServerMessage::Run, r#"{"type":"run"}"#),
            (
                ServerMessage::Deny {
                    reason: "no".into(),
                },
                r#"{"type":"deny","reason":"no"}"#,
            ),
            (
                ServerMessage::Escalate { fds: vec![0, 1, 2] },
                r#"{"type":"escalate","fds":[0,1,2]}"#,
            ),
            (
                ServerMessage::Exit {
                    status: ExitStatus::Signal(15),
                },
                r#"{"type":"exit","status":{"signal":15}}"#,
            ),
        ];
        for (msg, json) in cases {
            assert_eq!(serde_json::to_string(&msg).unwrap(), json);
            assert_eq!(serde_json::from_str::<ServerMessage>(json).unwrap(), msg);
        }
    }
}

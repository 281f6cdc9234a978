//! MCP over a byte stream (stdio): one JSON-RPC message per line.
//!
//! rmcp's own stdio transport answers a well-formed request it cannot decode (say,
//! `tools/call` whose `arguments` is a string) with an error that has no `id`, which a client
//! cannot match to its request and so waits forever. This transport answers such requests
//! itself, with their `id` and `invalid_params` naming the field. It also reports the end
//! of input (the client went away) through a cancellation token, so running sessions are
//! killed at once instead of after rmcp's drain timeout.

use std::future::Future;
use std::sync::Arc;

use rmcp::RoleServer;
use rmcp::model::ErrorCode;
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::sandbox_state::json_kind;

/// Longest message accepted; longer lines are dropped (and logged). Same as rmcp's.
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// A server transport over `reader`/`writer`, newline-delimited JSON.
pub struct JsonLines<R, W> {
    reader: BufReader<R>,
    writer: Arc<Mutex<W>>,
    disconnected: CancellationToken,
    /// The line being read; kept across `receive` calls, which rmcp may drop mid-line.
    line: Vec<u8>,
    /// The current line is over the limit: skip to its end.
    discarding: bool,
}

impl<R, W> std::fmt::Debug for JsonLines<R, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonLines").finish_non_exhaustive()
    }
}

impl<R, W> JsonLines<R, W>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    /// `disconnected` is cancelled when `reader` reaches its end or fails.
    pub fn new(reader: R, writer: W, disconnected: CancellationToken) -> Self {
        JsonLines {
            reader: BufReader::new(reader),
            writer: Arc::new(Mutex::new(writer)),
            disconnected,
            line: Vec::new(),
            discarding: false,
        }
    }

    /// Reads one whole line into `self.line`; false at the end of input.
    /// Cancel-safe: bytes are consumed only after they were copied into `self.line`.
    async fn read_line(&mut self) -> bool {
        loop {
            let available = match self.reader.fill_buf().await {
                Ok(bytes) => bytes,
                Err(e) => {
                    tracing::error!("reading from the client failed: {e}");
                    return false;
                }
            };
            if available.is_empty() {
                return false;
            }
            let (chunk, done) = match available.iter().position(|b| *b == b'\n') {
                Some(i) => (&available[..i], true),
                None => (available, false),
            };
            let used = chunk.len() + usize::from(done);
            if !self.discarding {
                if self.line.len() + chunk.len() > MAX_LINE_BYTES {
                    tracing::error!("a message over {MAX_LINE_BYTES} bytes was dropped");
                    self.discarding = true;
                    self.line = Vec::new();
                } else {
                    self.line.extend_from_slice(chunk);
                }
            }
            self.reader.consume(used);
            if done {
                if self.discarding {
                    self.discarding = false;
                    continue;
                }
                return true;
            }
        }
    }
}

async fn write_line<W: AsyncWrite + Unpin>(
    writer: &Mutex<W>,
    value: &impl serde::Serialize,
) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec(value)?;
    bytes.push(b'\n');
    let mut writer = writer.lock().await;
    writer.write_all(&bytes).await?;
    writer.flush().await
}

/// What to do with a line that did not decode as a message.
#[derive(Debug, PartialEq)]
enum Undecodable {
    /// Not JSON, or a notification/response: nothing to answer.
    Ignore,
    /// A request: answer with this error.
    Answer(Value),
}

fn classify(line: &[u8], error: &serde_json::Error) -> Undecodable {
    let Ok(value) = serde_json::from_slice::<Value>(line) else {
        return Undecodable::Ignore;
    };
    let (Some(id), Some(method)) = (
        value
            .get("id")
            .filter(|id| id.is_string() || id.is_number()),
        value.get("method").and_then(Value::as_str),
    ) else {
        return Undecodable::Ignore;
    };
    let message = describe_bad_params(method, value.get("params"), &error.to_string());
    Undecodable::Answer(json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": { "code": ErrorCode::INVALID_PARAMS.0, "message": message },
    }))
}

/// One line for a client whose request `method` had params that did not decode.
pub(crate) fn describe_bad_params(method: &str, params: Option<&Value>, error: &str) -> String {
    match (method, params) {
        (_, Some(p)) if !p.is_object() && !p.is_null() => {
            format!(
                "`params` of `{method}` must be an object, got {}",
                json_kind(p)
            )
        }
        ("tools/call", p) => {
            let field = |name| p.and_then(|p| p.get(name));
            match (field("name"), field("arguments")) {
                (None, _) => "`tools/call` needs `name`, the tool to call".to_owned(),
                (Some(n), _) if !n.is_string() => {
                    format!("`name` must be a string, got {}", json_kind(n))
                }
                (_, Some(a)) if !a.is_object() && !a.is_null() => {
                    format!("`arguments` must be an object, got {}", json_kind(a))
                }
                _ => format!("invalid `tools/call` params: {error}"),
            }
        }
        _ => format!("invalid `{method}` params: {error}"),
    }
}

impl<R, W> Transport<RoleServer> for JsonLines<R, W>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleServer>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let writer = self.writer.clone();
        async move { write_line(&writer, &item).await }
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleServer>> {
        loop {
            if !self.read_line().await {
                self.disconnected.cancel();
                return None;
            }
            let line = std::mem::take(&mut self.line);
            let mut text: &[u8] = line.strip_suffix(b"\r").unwrap_or(&line);
            text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<RxJsonRpcMessage<RoleServer>>(text) {
                Ok(message) => return Some(message),
                Err(error) => match classify(text, &error) {
                    Undecodable::Ignore => {
                        tracing::warn!("ignoring an undecodable message: {error}");
                    }
                    Undecodable::Answer(reply) => {
                        tracing::warn!("rejecting a malformed request: {error}");
                        let writer = self.writer.clone();
                        if let Err(e) = write_line(&writer, &reply).await {
                            tracing::error!("writing to the client failed: {e}");
                            self.disconnected.cancel();
                            return None;
                        }
                    }
                },
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.writer.lock().await.flush().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err() -> serde_json::Error {
        serde_json::from_str::<u8>("\"x\"").unwrap_err()
    }

    #[test]
    fn non_object_arguments_are_answered_with_the_request_id() {
        let line = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"shell","arguments":"ls"}}"#;
        let Undecodable::Answer(reply) = classify(line, &err()) else {
            panic!("no answer");
        };
        assert_eq!(reply["id"], 7);
        assert_eq!(reply["error"]["code"], -32602);
        assert_eq!(
            reply["error"]["message"],
            "`arguments` must be an object, got a string"
        );
    }

    #[test]
    fn non_object_params_are_answered() {
        let line = br#"{"jsonrpc":"2.0","id":"a","method":"tools/list","params":[1]}"#;
        let Undecodable::Answer(reply) = classify(line, &err()) else {
            panic!("no answer");
        };
        assert_eq!(reply["id"], "a");
        assert!(
            reply["error"]["message"]
                .as_str()
                .unwrap()
                .contains("must be an object, got an array")
        );
    }

    #[test]
    fn junk_and_notifications_are_ignored() {
        assert_eq!(classify(b"not json", &err()), Undecodable::Ignore);
        assert_eq!(
            classify(br#"{"jsonrpc":"2.0","method":"x","params":1}"#, &err()),
            Undecodable::Ignore
        );
    }
}

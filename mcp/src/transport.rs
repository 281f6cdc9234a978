//! MCP over a byte stream (stdio): one JSON-RPC message per line.
//!
//! This is execgate's own line filter in front of rmcp, because rmcp's stdio transport and
//! handshake get the edges of JSON-RPC wrong, and a client then waits forever or loses the
//! server:
//!
//! - a well-formed request rmcp cannot decode (say, `tools/call` whose `arguments` is a
//!   string) gets an error without its `id`: answered here with the `id` and
//!   `invalid_params` naming the field;
//! - a line that is not JSON, or not UTF-8, or a batch, gets no answer at all: answered here
//!   with -32700 (parse error) or -32600 (invalid request), with the request's `id` when it
//!   can still be read, else a null `id`, as JSON-RPC says. Batches are refused whatever the
//!   protocol version (MCP 2025-03-26 allowed them, 2025-06-18 removed them; no client this
//!   server is tested with sends one): a batch gets a batch of -32600 errors, one per
//!   request in it with that request's `id`, so no request of it waits for an answer (a
//!   batch of notifications only gets none, an empty batch one error);
//! - any notification (`notifications/initialized` sent too early) or response before
//!   `initialize` ends rmcp's handshake, and the server with it: dropped here;
//! - an `initialize` whose params do not decode reaches rmcp as some other request and is
//!   answered with an unrelated error: answered here with what is wrong in the params, and
//!   the server keeps waiting for a good one; so are other requests before `initialize`
//!   (ping excepted, which rmcp answers).
//!
//! It also reports the end of input (the client went away) through a cancellation token, so
//! running sessions are killed at once instead of after rmcp's drain timeout.

use std::future::Future;
use std::sync::Arc;

use rmcp::RoleServer;
use rmcp::model::{ClientRequest, ErrorCode, InitializeRequestParams};
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
    writer: Arc<Mutex<Output<W>>>,
    disconnected: CancellationToken,
    /// The line being read; kept across `receive` calls, which rmcp may drop mid-line.
    line: Vec<u8>,
    /// The current line is over the limit: skip to its end.
    discarding: bool,
    /// A well-formed `initialize` was handed to rmcp: its handshake is done with.
    initialize_seen: bool,
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
            writer: Arc::new(Mutex::new(Output {
                writer,
                line: Vec::new(),
            })),
            disconnected,
            line: Vec::new(),
            discarding: false,
            initialize_seen: false,
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

/// The client's end, and the buffer each message is serialized into.
struct Output<W> {
    writer: W,
    /// Kept between messages: a response of megabytes is serialized into memory already
    /// faulted in, not into a vector grown (and copied) from empty every time.
    line: Vec<u8>,
}

/// Largest serialization buffer kept for the next message.
const KEPT_LINE_BYTES: usize = 8 << 20;

async fn write_line<W: AsyncWrite + Unpin>(
    output: &Mutex<Output<W>>,
    value: &impl serde::Serialize,
) -> std::io::Result<()> {
    let mut output = output.lock().await;
    let Output { writer, line } = &mut *output;
    line.clear();
    serde_json::to_writer(&mut *line, value)?;
    line.push(b'\n');
    let written = writer.write_all(line).await;
    if line.capacity() > KEPT_LINE_BYTES {
        *line = Vec::new();
    }
    written?;
    writer.flush().await
}

/// What to do with one line from the client.
#[derive(Debug)]
enum Line {
    /// Hand it to rmcp.
    Message(Box<RxJsonRpcMessage<RoleServer>>),
    /// Nothing to answer (a notification or response that cannot be used).
    Ignore(String),
    /// Answer with this error, and hand nothing to rmcp.
    Answer(Value),
}

/// A batch refused: a -32600 error for each request in it (by its `id`); an element that is
/// not an object gets one with a null `id`; notifications and responses get none.
fn refuse_batch(batch: &[Value]) -> Line {
    let replies: Vec<Value> = batch
        .iter()
        .filter_map(|element| {
            let id = match element.as_object() {
                None => Value::Null,
                Some(_) if element.get("method").is_none() => return None, // a response
                Some(_) => request_id(element)?.clone(),
            };
            Some(error_reply(
                id,
                ErrorCode::INVALID_REQUEST,
                "invalid request: JSON-RPC batches are not supported (MCP 2025-06-18 removed \
                 them); send one message per line"
                    .to_owned(),
            ))
        })
        .collect();
    if replies.is_empty() {
        return Line::Ignore("a batch of notifications (batches are not supported)".into());
    }
    Line::Answer(Value::Array(replies))
}

/// A JSON-RPC error reply; `id` null when the request's could not be read.
fn error_reply(id: Value, code: ErrorCode, message: String) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": { "code": code.0, "message": crate::budget::clip(&message) },
    })
}

/// The `id` of a request, when `value` is one with a usable id.
fn request_id(value: &Value) -> Option<&Value> {
    value.get("method")?;
    value
        .get("id")
        .filter(|id| id.is_string() || id.is_number())
}

/// Decides what to do with `line` (without its line end). `initialized`: rmcp got a good
/// `initialize` already.
fn read_line_message(line: &[u8], initialized: bool) -> Line {
    let text = match std::str::from_utf8(line) {
        Ok(text) => text,
        Err(e) => {
            // Answer a request with its id if the rest of it reads.
            let lossy = String::from_utf8_lossy(line);
            let value = serde_json::from_str::<Value>(&lossy).ok();
            let id = value.as_ref().and_then(request_id).cloned();
            if value.is_some() && id.is_none() {
                return Line::Ignore(format!("a notification that is not UTF-8 ({e})"));
            }
            return Line::Answer(error_reply(
                id.unwrap_or(Value::Null),
                ErrorCode::PARSE_ERROR,
                format!(
                    "parse error: the message is not valid UTF-8 (invalid byte at offset {})",
                    e.valid_up_to()
                ),
            ));
        }
    };
    let value = match serde_json::from_str::<Value>(text) {
        Ok(value) => value,
        Err(e) => {
            return Line::Answer(error_reply(
                Value::Null,
                ErrorCode::PARSE_ERROR,
                format!("parse error: the line is not JSON ({e})"),
            ));
        }
    };
    if let Some(batch) = value.as_array().filter(|b| !b.is_empty()) {
        return refuse_batch(batch);
    }
    let Some(object) = value.as_object() else {
        let message = if value.is_array() {
            "invalid request: JSON-RPC batches are not supported; send one message per line"
                .to_owned()
        } else {
            format!(
                "invalid request: a message must be a JSON object, got {}",
                json_kind(&value)
            )
        };
        return Line::Answer(error_reply(
            Value::Null,
            ErrorCode::INVALID_REQUEST,
            message,
        ));
    };
    let method = object.get("method").and_then(Value::as_str);
    let id = request_id(&value).cloned();
    if !initialized {
        match (method, id) {
            (Some("initialize"), Some(id)) => {
                let params = object.get("params").cloned().unwrap_or(Value::Null);
                if let Err(e) = serde_json::from_value::<InitializeRequestParams>(params.clone()) {
                    return Line::Answer(error_reply(
                        id,
                        ErrorCode::INVALID_PARAMS,
                        describe_bad_params("initialize", Some(&params), &e.to_string()),
                    ));
                }
            }
            (Some("ping" | "server/discover"), Some(_)) => {}
            (Some(method), Some(id)) => {
                return Line::Answer(error_reply(
                    id,
                    ErrorCode::INVALID_REQUEST,
                    format!(
                        "`{method}` before `initialize`: the server is not initialized yet; \
                         send `initialize` first"
                    ),
                ));
            }
            (Some(method), None) => {
                return Line::Ignore(format!("`{method}` before `initialize`"));
            }
            (None, _) => return Line::Ignore("a response before `initialize`".to_owned()),
        }
    }
    // From the text, as rmcp's own transport does: decoding from a `Value` lets rmcp take a
    // standard request with bad params for a custom one.
    match serde_json::from_str::<RxJsonRpcMessage<RoleServer>>(text) {
        Ok(rmcp::model::JsonRpcMessage::Request(request))
            if matches!(&request.request, ClientRequest::CustomRequest(c)
                if crate::server::STANDARD_METHODS.contains(&c.method.as_str())) =>
        {
            // rmcp takes a standard request whose params do not decode for a custom one.
            let method = method.unwrap_or_default();
            Line::Answer(error_reply(
                serde_json::to_value(&request.id).unwrap_or(Value::Null),
                ErrorCode::INVALID_PARAMS,
                describe_bad_params(method, object.get("params"), "malformed params"),
            ))
        }
        Ok(message) => Line::Message(Box::new(message)),
        Err(error) => match (method, request_id(&value)) {
            (Some(method), Some(id)) => Line::Answer(error_reply(
                id.clone(),
                ErrorCode::INVALID_PARAMS,
                describe_bad_params(method, object.get("params"), &error.to_string()),
            )),
            (Some(_), None) => Line::Ignore(format!("an undecodable notification: {error}")),
            (None, _) => match object.get("id") {
                Some(id) if object.contains_key("result") || object.contains_key("error") => {
                    Line::Ignore(format!("an undecodable response to {id}: {error}"))
                }
                _ => Line::Answer(error_reply(
                    Value::Null,
                    ErrorCode::INVALID_REQUEST,
                    format!(
                        "invalid request: neither a request, a notification nor a response \
                         ({error})"
                    ),
                )),
            },
        },
    }
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
            match read_line_message(text, self.initialize_seen) {
                Line::Message(message) => {
                    if !self.initialize_seen
                        && matches!(
                            &*message,
                            rmcp::model::JsonRpcMessage::Request(r)
                                if matches!(r.request, ClientRequest::InitializeRequest(_))
                        )
                    {
                        self.initialize_seen = true;
                    }
                    return Some(*message);
                }
                Line::Ignore(what) => tracing::warn!("ignoring {what}"),
                Line::Answer(reply) => {
                    tracing::warn!("answering a bad message: {}", reply["error"]["message"]);
                    let writer = self.writer.clone();
                    if let Err(e) = write_line(&writer, &reply).await {
                        tracing::error!("writing to the client failed: {e}");
                        self.disconnected.cancel();
                        return None;
                    }
                }
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.writer.lock().await.writer.flush().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(line: &[u8], initialized: bool) -> Value {
        match read_line_message(line, initialized) {
            Line::Answer(reply) => reply,
            other => panic!("{}: no answer: {other:?}", String::from_utf8_lossy(line)),
        }
    }

    #[test]
    fn non_object_arguments_are_answered_with_the_request_id() {
        let line = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"shell","arguments":"ls"}}"#;
        let reply = answer(line, true);
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
        let reply = answer(line, true);
        assert_eq!(reply["id"], "a");
        assert!(
            reply["error"]["message"]
                .as_str()
                .unwrap()
                .contains("must be an object, got an array")
        );
    }

    #[test]
    fn junk_is_a_parse_error_with_a_null_id() {
        for line in [&b"not json"[..], b"{\"jsonrpc\":", b"\xff\xfe"] {
            let reply = answer(line, true);
            assert_eq!(reply["id"], Value::Null, "{reply}");
            assert_eq!(reply["error"]["code"], -32700, "{reply}");
        }
        let reply = answer(b"[]", true);
        assert_eq!(reply["error"]["code"], -32600);
        assert!(
            reply["error"]["message"]
                .as_str()
                .unwrap()
                .contains("batches")
        );
        assert_eq!(answer(b"42", true)["error"]["code"], -32600);
    }

    #[test]
    fn a_batch_gets_one_refusal_per_request_in_it() {
        let batch = br#"[{"jsonrpc":"2.0","id":7,"method":"tools/list"},
            {"jsonrpc":"2.0","method":"notifications/initialized"},
            {"jsonrpc":"2.0","id":"x","method":"ping"}, 3,
            {"jsonrpc":"2.0","id":9,"result":{}}]"#;
        let reply = answer(batch, true);
        let replies = reply.as_array().unwrap();
        let ids: Vec<&Value> = replies.iter().map(|r| &r["id"]).collect();
        assert_eq!(ids, [&json!(7), &json!("x"), &Value::Null], "{reply}");
        for r in replies {
            assert_eq!(r["error"]["code"], -32600, "{r}");
            assert!(r["error"]["message"].as_str().unwrap().contains("batches"));
        }
        assert!(matches!(
            read_line_message(
                br#"[{"jsonrpc":"2.0","method":"notifications/initialized"}]"#,
                true
            ),
            Line::Ignore(_)
        ));
    }

    #[test]
    fn invalid_utf8_in_a_request_is_answered_with_its_id() {
        let line = b"{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"tools/call\",\"params\":{\"name\":\"shell\",\"arguments\":{\"command\":\"echo \xff\",\"workdir\":\"/\"}}}";
        let reply = answer(line, true);
        assert_eq!(reply["id"], 9);
        assert_eq!(reply["error"]["code"], -32700);
        assert!(
            reply["error"]["message"]
                .as_str()
                .unwrap()
                .contains("not valid UTF-8 (invalid byte at offset 100)"),
            "{reply}"
        );
    }

    #[test]
    fn notifications_are_ignored() {
        for (line, initialized) in [
            (&br#"{"jsonrpc":"2.0","method":"x","params":1}"#[..], true),
            (
                br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
                false,
            ),
            (br#"{"jsonrpc":"2.0","id":1,"result":{}}"#, false),
        ] {
            assert!(
                matches!(read_line_message(line, initialized), Line::Ignore(_)),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn before_initialize_only_initialize_and_ping_pass() {
        let init = br#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}"#;
        assert!(matches!(read_line_message(init, false), Line::Message(_)));
        let ping = br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
        assert!(matches!(read_line_message(ping, false), Line::Message(_)));
        let list = br#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;
        let reply = answer(list, false);
        assert_eq!(
            (reply["id"].clone(), reply["error"]["code"].clone()),
            (json!(2), json!(-32600))
        );
        assert!(
            reply["error"]["message"]
                .as_str()
                .unwrap()
                .contains("send `initialize` first")
        );
        let bad = br#"{"jsonrpc":"2.0","id":3,"method":"initialize","params":{"capabilities":{}}}"#;
        let reply = answer(bad, false);
        assert_eq!(reply["id"], 3);
        assert_eq!(reply["error"]["code"], -32602);
        assert_eq!(
            reply["error"]["message"],
            "invalid `initialize` params: missing field `protocolVersion`"
        );
        let reply = answer(br#"{"jsonrpc":"2.0","id":4,"method":"initialize"}"#, false);
        assert!(
            reply["error"]["message"]
                .as_str()
                .unwrap()
                .contains("initialize"),
            "{reply}"
        );
    }
}

//! The MCP surface in process, over `tokio::io::duplex`, with raw JSON-RPC lines so the
//! exact wire format is what is checked. Sessions are a recording double: no kernel needed.
//! End-to-end behaviour with real bash is in `tests/mcp/` (Python, the official SDK).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mcp::capture::{Captured, HeadTail, StreamText};
use mcp::runner::{Finished, RunFuture, Sessions};
use mcp::{ServerSettings, serve};
use policy::{DecidedBy, Decision, Evaluation, RuleMatch};
use serde_json::{Value, json};
use supervisor::{
    Approval, ApprovalRequest, Decider, Enforcement, ExecRecord, ExitStatus, RanIn, SandboxMode,
    SandboxPolicy, SessionOutcome, SessionSpec,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, ReadHalf, WriteHalf};

/// What the double does with a session.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    /// Exit 3 with "out"/"err".
    Exit3,
    /// Ask the approver about `git init .`; print the answer.
    AskGitInit,
    /// Never end (until dropped).
    Hang,
    /// 20 MB of stdout and 3 MB of binary stderr, through the real capture.
    Flood,
}

struct Double {
    behaviour: Behaviour,
    specs: Mutex<Vec<SessionSpec>>,
    dropped: Arc<AtomicBool>,
}

impl Double {
    fn new(behaviour: Behaviour) -> Arc<Double> {
        Arc::new(Double {
            behaviour,
            specs: Mutex::new(Vec::new()),
            dropped: Arc::new(AtomicBool::new(false)),
        })
    }
}

fn text(s: &str) -> StreamText {
    StreamText {
        text: s.to_owned(),
        total_bytes: s.len() as u64,
        cut_bytes: 0,
        lossy: false,
    }
}

fn finished(code: i32, out: &str) -> Finished {
    Finished {
        outcome: SessionOutcome {
            status: ExitStatus::Exited(code),
            timed_out: false,
            duration: Duration::from_millis(12),
            notable_execs: Vec::new(),
            sandbox: Enforcement::for_abi(SandboxMode::WorkspaceWrite, false, 6),
            blocked_hosts: Vec::new(),
        },
        captured: Captured {
            stdout: text(out),
            stderr: text("err"),
            output: Some(text(&format!("{out}err"))),
        },
    }
}

/// What the capture makes of 20 MB of stdout and 3 MB of binary stderr (every byte value,
/// so control characters and invalid UTF-8 alike), kept at `max` bytes a stream.
fn flood(max: usize) -> Finished {
    let (mut out, mut err, mut both) = (HeadTail::new(max), HeadTail::new(max), HeadTail::new(max));
    let text = vec![b'a'; 1 << 20];
    let binary: Vec<u8> = (0..1 << 20)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    for _ in 0..20 {
        out.push(&text);
        both.push(&text);
    }
    for _ in 0..3 {
        err.push(&binary);
        both.push(&binary);
    }
    let mut done = finished(0, "");
    done.captured = Captured {
        stdout: out.finish(),
        stderr: err.finish(),
        output: Some(both.finish()),
    };
    done
}

struct SetOnDrop(Arc<AtomicBool>);
impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Sessions for Double {
    fn run(&self, spec: SessionSpec, max: usize) -> RunFuture<'_> {
        self.specs.lock().unwrap().push(spec.clone());
        let guard = SetOnDrop(self.dropped.clone());
        // What a session reports it enforced: the sandbox it was given, on an ABI 6 kernel.
        let enforced = Enforcement::for_abi(spec.sandbox.mode, spec.sandbox.network, 6);
        let run = async move {
            match self.behaviour {
                Behaviour::Exit3 => Ok(finished(3, "out")),
                Behaviour::Flood => Ok(flood(max)),
                Behaviour::Hang => {
                    let _guard = guard;
                    std::future::pending().await
                }
                Behaviour::AskGitInit => {
                    let approval = spec
                        .approver
                        .ask(ApprovalRequest {
                            program: PathBuf::from("/usr/bin/git"),
                            argv: vec!["git".into(), "init".into(), ".".into()],
                            cwd: spec.workdir.clone(),
                            evaluation: Evaluation {
                                decision: Decision::Prompt,
                                decided_by: DecidedBy::Rule,
                                matched_rules: vec![RuleMatch {
                                    matched_prefix: vec!["git".into(), "init".into()],
                                    decision: Decision::Prompt,
                                    justification: None,
                                    origin: None,
                                    resolved_program: None,
                                }],
                                heuristic: None,
                            },
                            passed_env: Vec::new(),
                            proposed_prefix: None,
                        })
                        .await;
                    // As the supervisor records it: any answer of the approver is "human".
                    let mut done = finished(0, &format!("{approval:?}"));
                    done.outcome.notable_execs.push(ExecRecord {
                        pid: 2,
                        program: PathBuf::from("/usr/bin/git"),
                        argv: vec!["git".into(), "init".into(), ".".into()],
                        cwd: spec.workdir.clone(),
                        decision: Decision::Prompt,
                        decided_by: Decider::Human,
                        matched_rules: Vec::new(),
                        ran_in: match approval {
                            Approval::Deny { .. } => RanIn::Denied,
                            _ => RanIn::Sandbox,
                        },
                        reason: format!("{approval:?}"),
                        status: None,
                        time_ms: 0,
                        ppid: None,
                        duration_ms: None,
                        session: 1,
                        resolved: None,
                        escalation_env: None,
                    });
                    Ok(done)
                }
            }
        };
        Box::pin(async move {
            let mut done: Finished = run.await?;
            done.outcome.sandbox = enforced;
            Ok(done)
        })
    }
}

/// A raw JSON-RPC client over the duplex.
struct Client {
    lines: BufReader<ReadHalf<DuplexStream>>,
    writer: WriteHalf<DuplexStream>,
    server: tokio::task::JoinHandle<Result<(), mcp::ServeError>>,
    /// Server-to-client requests seen, in order.
    server_requests: Vec<Value>,
    /// Bytes of the last line read, its newline included.
    last_line_len: usize,
}

impl Client {
    async fn start(double: Arc<Double>, elicitation: bool) -> Client {
        Self::start_with(double, elicitation, ServerSettings::default()).await
    }

    /// A connection on which nothing was sent yet.
    fn connect(double: Arc<Double>, settings: ServerSettings) -> Client {
        let (client_end, server_end) = tokio::io::duplex(1 << 20);
        let (server_read, server_write) = tokio::io::split(server_end);
        let server = tokio::spawn(serve(double, settings, server_read, server_write));
        let (read, writer) = tokio::io::split(client_end);
        Client {
            lines: BufReader::new(read),
            writer,
            server,
            server_requests: Vec::new(),
            last_line_len: 0,
        }
    }

    async fn start_with(
        double: Arc<Double>,
        elicitation: bool,
        settings: ServerSettings,
    ) -> Client {
        let mut client = Self::connect(double, settings);
        client.initialize(elicitation).await;
        client
    }

    async fn initialize(&mut self, elicitation: bool) {
        let client = self;
        let capabilities = if elicitation {
            json!({"elicitation": {}})
        } else {
            json!({})
        };
        let init = client
            .request(
                0,
                "initialize",
                json!({
                    "protocolVersion": "2025-06-18",
                    "capabilities": capabilities,
                    "clientInfo": {"name": "test", "version": "0"}
                }),
            )
            .await;
        assert!(init.get("result").is_some(), "{init}");
        client
            .send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
    }

    /// The next line from the server, parsed.
    async fn next(&mut self) -> Value {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(10), self.lines.read_line(&mut line))
            .await
            .expect("no answer within 10 s")
            .unwrap();
        assert!(n > 0, "server closed the stream");
        self.last_line_len = n;
        serde_json::from_str(&line).unwrap()
    }

    async fn send(&mut self, value: Value) {
        self.send_raw(&value.to_string()).await;
    }

    async fn send_raw(&mut self, line: &str) {
        self.writer.write_all(line.as_bytes()).await.unwrap();
        self.writer.write_all(b"\n").await.unwrap();
        self.writer.flush().await.unwrap();
    }

    async fn request(&mut self, id: u64, method: &str, params: Value) -> Value {
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await;
        self.response(id, |_| None).await
    }

    /// Reads until the response to `id`; `answer` handles server requests (elicitation).
    async fn response(&mut self, id: u64, answer: impl Fn(&Value) -> Option<Value>) -> Value {
        loop {
            let msg = self.next().await;
            if msg.get("method").is_some() && msg.get("id").is_some() {
                self.server_requests.push(msg.clone());
                let result = answer(&msg).unwrap_or_else(|| json!({"action": "decline"}));
                self.send(json!({"jsonrpc": "2.0", "id": msg["id"], "result": result}))
                    .await;
                continue;
            }
            if msg.get("id") == Some(&json!(id)) {
                return msg;
            }
        }
    }

    async fn call(&mut self, id: u64, arguments: Value) -> Value {
        self.request(
            id,
            "tools/call",
            json!({"name": "shell", "arguments": arguments}),
        )
        .await
    }
}

fn workdir() -> String {
    std::env::temp_dir().to_str().unwrap().to_owned()
}

fn error_of(msg: &Value) -> (i64, String) {
    let e = msg
        .get("error")
        .unwrap_or_else(|| panic!("not an error: {msg}"));
    (
        e["code"].as_i64().unwrap(),
        e["message"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn initialize_advertises_tools_and_codex_sandbox_state() {
    let (client_end, server_end) = tokio::io::duplex(1 << 16);
    let (r, w) = tokio::io::split(server_end);
    tokio::spawn(serve(
        Double::new(Behaviour::Exit3),
        ServerSettings::default(),
        r,
        w,
    ));
    let (read, mut write) = tokio::io::split(client_end);
    write
        .write_all(
            br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}
"#,
        )
        .await
        .unwrap();
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await.unwrap();
    let msg: Value = serde_json::from_str(&line).unwrap();
    let result = &msg["result"];
    assert_eq!(result["protocolVersion"], "2025-11-25");
    assert_eq!(result["serverInfo"]["name"], "execgate");
    let caps = &result["capabilities"];
    assert!(caps["tools"].is_object(), "{caps}");
    assert_eq!(
        caps["experimental"]["codex/sandbox-state"],
        json!({"version": "1.0.0"})
    );
    assert_eq!(
        caps["experimental"]["codex/sandbox-state-meta"],
        json!({"version": "1.0.0"})
    );
}

#[tokio::test]
async fn lists_exactly_one_tool_with_codex_parameters_and_an_output_schema() {
    let mut c = Client::start(Double::new(Behaviour::Exit3), false).await;
    let msg = c.request(1, "tools/list", json!({})).await;
    let tools = msg["result"]["tools"].as_array().unwrap();
    assert_eq!(tools.len(), 1, "{msg}");
    let tool = &tools[0];
    assert_eq!(tool["name"], "shell");
    assert!(
        tool["description"]
            .as_str()
            .unwrap()
            .starts_with("Runs a shell command and returns its output.")
    );
    let input = &tool["inputSchema"];
    assert_eq!(input["type"], "object");
    let mut required: Vec<&str> = input["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    required.sort();
    assert_eq!(required, ["command", "workdir"]);
    let props = input["properties"].as_object().unwrap();
    let mut names: Vec<&String> = props.keys().collect();
    names.sort();
    assert_eq!(names, ["command", "login", "timeout_ms", "workdir"]);
    assert_eq!(props["command"]["type"], "string");
    // Optional means absent, not null: form-driven clients (Inspector) fill plain types.
    assert_eq!(props["login"]["type"], "boolean");
    assert_eq!(props["timeout_ms"]["type"], "integer");
    assert_eq!(props["timeout_ms"]["minimum"], 1);
    let output = &tool["outputSchema"];
    assert_eq!(output["type"], "object");
    // Self-contained: clients validate every result against it.
    assert!(!output.to_string().contains("$ref"), "{output}");
    assert_eq!(
        output["properties"]["execs"]["items"]["properties"]["ran_in"]["type"],
        "string"
    );
    for field in [
        "exit_code",
        "stdout",
        "stderr",
        "output",
        "duration_ms",
        "timed_out",
        "sandbox",
        "execs",
        "streams",
    ] {
        assert!(
            output["properties"].get(field).is_some(),
            "{field}: {output}"
        );
    }
}

#[tokio::test]
async fn a_call_returns_structured_content_and_a_short_text_beside_it() {
    let double = Double::new(Behaviour::Exit3);
    let mut c = Client::start(double.clone(), false).await;
    let msg = c
        .call(1, json!({"command": "exit 3", "workdir": workdir()}))
        .await;
    let result = &msg["result"];
    // A non-zero exit is a result, not a tool error.
    assert_eq!(result["isError"], false, "{msg}");
    let structured = &result["structuredContent"];
    assert_eq!(structured["exit_code"], 3);
    assert_eq!(structured["stdout"], "out");
    assert_eq!(structured["stderr"], "err");
    assert_eq!(structured["output"], "outerr");
    assert_eq!(structured["duration_ms"], 12);
    assert_eq!(structured["timed_out"], false);
    assert_eq!(structured["sandbox"]["mode"], "workspace-write");
    assert_eq!(structured["sandbox"]["source"], "command-line");
    assert_eq!(
        structured["sandbox"]["enforcement"],
        "landlock: full (ABI 6)"
    );
    assert_eq!(structured["sandbox"]["level"], "full");
    // The text block is for clients that show text: the status and the output, once
    // (both streams were written, so the interleaved view).
    let text = result["content"][0]["text"].as_str().unwrap();
    assert_eq!(text, "Exit code: 3\nWall time: 12 ms\nOutput:\nouterr");
    assert_eq!(result["content"].as_array().unwrap().len(), 1);

    let spec = double.specs.lock().unwrap()[0].clone();
    assert_eq!(spec.argv, ["bash", "-lc", "exit 3"]);
    assert_eq!(spec.timeout, Some(Duration::from_secs(10)));
    assert_eq!(spec.stdio, supervisor::SessionStdio::Piped);
}

#[tokio::test]
async fn bad_requests_get_precise_errors_and_the_server_keeps_serving() {
    let mut c = Client::start(Double::new(Behaviour::Exit3), false).await;
    let wd = workdir();
    let cases = [
        (
            json!({"name": "sh", "arguments": {"command": "true", "workdir": wd}}),
            -32602,
            "unknown tool `sh`",
        ),
        (
            json!({"name": "shell", "arguments": {"command": "true"}}),
            -32602,
            "missing field `workdir`",
        ),
        (
            json!({"name": "shell", "arguments": {"command": "true", "workdir": "tmp"}}),
            -32602,
            "must be an absolute path, got `tmp`",
        ),
        (
            json!({"name": "shell", "arguments": {"command": "true", "workdir": "/does/not/exist"}}),
            -32602,
            "`/does/not/exist` cannot be used",
        ),
        (
            json!({"name": "shell", "arguments": {"command": "x".repeat(10 << 20), "workdir": wd}}),
            -32602,
            "`command` is 10485760 bytes",
        ),
        (
            json!({"name": "shell", "arguments": "ls"}),
            -32602,
            "`arguments` must be an object, got a string",
        ),
        (
            json!({"name": "shell", "arguments": [1, 2]}),
            -32602,
            "`arguments` must be an object, got an array",
        ),
        (
            json!({"name": "shell", "arguments": {"command": 5, "workdir": wd}}),
            -32602,
            "invalid type: integer `5`, expected a string",
        ),
    ];
    for (i, (params, code, want)) in cases.into_iter().enumerate() {
        let id = 10 + i as u64;
        let msg = c.request(id, "tools/call", params).await;
        let (got_code, message) = error_of(&msg);
        assert_eq!(got_code, code, "{msg}");
        assert!(message.contains(want), "{message} !~ {want}");
    }
    // Errors that quote what was sent stay short, however much was sent.
    let huge = "x".repeat(4 << 20);
    for (id, params) in [
        (30, json!({"name": huge, "arguments": {}})),
        (
            31,
            json!({"name": "shell", "arguments": {"command": "true", "workdir": wd, "timeout_ms": huge}}),
        ),
        (
            32,
            json!({"name": "shell", "arguments": {"command": "true", "workdir": wd, "login": huge}}),
        ),
    ] {
        let msg = c.request(id, "tools/call", params).await;
        let (code, message) = error_of(&msg);
        assert_eq!(code, -32602, "{message}");
        assert!(
            c.last_line_len < 2048,
            "{id}: a {}-byte error",
            c.last_line_len
        );
        assert!(
            message.ends_with("more bytes of this message cut]"),
            "{message}"
        );
    }
    let msg = c.request(33, &huge, json!({})).await;
    assert!(c.last_line_len < 2048, "a {}-byte error", c.last_line_len);
    assert_eq!(error_of(&msg).0, -32601);
    let ok = c.call(99, json!({"command": "true", "workdir": wd})).await;
    assert_eq!(ok["result"]["structuredContent"]["exit_code"], 3);
}

#[tokio::test]
async fn sandbox_state_update_then_meta_override() {
    let double = Double::new(Behaviour::Exit3);
    let mut c = Client::start(double.clone(), false).await;
    let msg = c
        .request(
            1,
            "codex/sandbox-state/update",
            json!({"sandboxPolicy": {"type": "read-only"}, "sandboxCwd": "/tmp"}),
        )
        .await;
    assert_eq!(msg["result"], json!({}), "{msg}");
    let msg = c
        .call(2, json!({"command": "true", "workdir": workdir()}))
        .await;
    assert_eq!(
        msg["result"]["structuredContent"]["sandbox"]["mode"],
        "read-only"
    );
    assert_eq!(
        msg["result"]["structuredContent"]["sandbox"]["source"],
        "sandbox-state-update"
    );

    let (w, repo) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let msg = c
        .request(
            3,
            "tools/call",
            json!({
                "name": "shell",
                "arguments": {"command": "true", "workdir": workdir()},
                "_meta": {"codex/sandbox-state-meta": {
                    "sandboxPolicy": {"type": "workspace-write", "writable_roots": [w.path()], "network_access": true},
                    "sandboxCwd": repo.path()
                }}
            }),
        )
        .await;
    let sandbox = &msg["result"]["structuredContent"]["sandbox"];
    assert_eq!(sandbox["mode"], "workspace-write", "{msg}");
    assert_eq!(sandbox["source"], "tool-call-meta");
    assert_eq!(sandbox["network"], true);

    let specs = double.specs.lock().unwrap().clone();
    // The call's workdir is never a grant, whatever the state.
    assert_eq!(
        specs[0].sandbox,
        SandboxPolicy {
            workdir_writable: false,
            ..SandboxPolicy::new(SandboxMode::ReadOnly)
        }
    );
    assert_eq!(specs[1].sandbox.mode, SandboxMode::WorkspaceWrite);
    assert!(!specs[1].sandbox.workdir_writable);
    assert_eq!(
        specs[1].sandbox.writable_roots,
        [w.path().to_owned(), repo.path().to_owned()]
    );
}

/// Every schema inside `schema`, itself included.
fn schemas(schema: &Value, out: &mut Vec<Value>) {
    match schema {
        Value::Object(map) => {
            out.push(schema.clone());
            map.values().for_each(|v| schemas(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| schemas(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn schemas_have_no_nullable_inputs_and_no_nonstandard_formats() {
    let mut c = Client::start(Double::new(Behaviour::Exit3), false).await;
    let msg = c.request(1, "tools/list", json!({})).await;
    let tool = &msg["result"]["tools"][0];
    let standard = [
        "date-time",
        "date",
        "time",
        "duration",
        "email",
        "hostname",
        "ipv4",
        "ipv6",
        "uri",
        "uri-reference",
        "uuid",
        "regex",
    ];
    for (which, schema) in [
        ("input", &tool["inputSchema"]),
        ("output", &tool["outputSchema"]),
    ] {
        let mut all = Vec::new();
        schemas(schema, &mut all);
        assert!(all.len() > 5, "{which}: {schema}");
        for s in &all {
            if let Some(format) = s.get("format").and_then(Value::as_str) {
                assert!(
                    standard.contains(&format),
                    "{which}: format {format} in {s}"
                );
            }
            if which == "input"
                && let Some(Value::Array(types)) = s.get("type")
            {
                assert!(!types.contains(&json!("null")), "nullable input: {s}");
            }
        }
    }
    // Output fields that may be null stay nullable: results must validate.
    assert_eq!(
        tool["outputSchema"]["properties"]["signal"]["type"],
        json!(["integer", "null"])
    );
}

#[tokio::test]
async fn current_codex_permission_profiles_choose_the_sandbox() {
    let double = Double::new(Behaviour::Exit3);
    let mut c = Client::start(double.clone(), false).await;
    let w = tempfile::tempdir().unwrap();
    let url = format!("file://{}", w.path().display());
    let cases = [
        // What Codex 0.171 sends under --sandbox danger-full-access.
        (
            json!({"type": "disabled"}),
            "danger-full-access",
            true,
            vec![],
        ),
        (
            json!({"type": "managed", "file_system": {"type": "restricted", "entries": [
                {"path": {"type": "special", "value": {"kind": "root"}}, "access": "read"}
            ]}, "network": "restricted"}),
            "read-only",
            false,
            vec![],
        ),
        (
            json!({"type": "managed", "file_system": {"type": "restricted", "entries": [
                {"path": {"type": "special", "value": {"kind": "root"}}, "access": "read"},
                {"path": {"type": "special", "value": {"kind": "project_roots"}}, "access": "write"}
            ]}, "network": "enabled"}),
            "workspace-write",
            true,
            vec![w.path().to_owned()],
        ),
        (
            json!({"type": "external", "network": "restricted"}),
            "danger-full-access",
            false,
            vec![],
        ),
    ];
    for (i, (profile, mode, network, roots)) in cases.into_iter().enumerate() {
        let msg = c
            .request(
                i as u64 + 1,
                "tools/call",
                json!({
                    "name": "shell",
                    "arguments": {"command": "true", "workdir": workdir()},
                    "_meta": {
                        "codex/sandbox-state-meta": {
                            "permissionProfile": profile,
                            "sandboxCwd": url,
                            "codexLinuxSandboxExe": null,
                            "useLegacyLandlock": false
                        },
                        "progressToken": 1
                    }
                }),
            )
            .await;
        let result = &msg["result"]["structuredContent"];
        assert_eq!(result["sandbox"]["mode"], mode, "{profile}: {msg}");
        assert_eq!(result["sandbox"]["network"], network, "{profile}");
        assert_eq!(result["sandbox"]["source"], "tool-call-meta", "{profile}");
        assert_eq!(result["warnings"], json!([]), "{profile}");
        let spec = double.specs.lock().unwrap().last().unwrap().clone();
        assert_eq!(spec.sandbox.mode.as_str(), mode);
        assert_eq!(spec.sandbox.writable_roots, roots, "{profile}");
    }
}

#[tokio::test]
async fn a_writable_root_that_does_not_exist_is_dropped_with_a_warning() {
    let double = Double::new(Behaviour::Exit3);
    let mut c = Client::start(double.clone(), false).await;
    let w = tempfile::tempdir().unwrap();
    let msg = c
        .request(
            1,
            "codex/sandbox-state/update",
            json!({"sandboxPolicy": {"type": "workspace-write",
                "writable_roots": ["/nonexistent-root-xyz", w.path()]}}),
        )
        .await;
    assert_eq!(msg["result"], json!({}), "{msg}");
    // Calls keep working; each says what was left out.
    for id in [2, 3] {
        let msg = c
            .call(id, json!({"command": "true", "workdir": workdir()}))
            .await;
        let result = &msg["result"]["structuredContent"];
        assert_eq!(result["sandbox"]["source"], "sandbox-state-update", "{msg}");
        assert_eq!(result["sandbox"]["mode"], "workspace-write");
        let warnings = result["warnings"].to_string();
        assert!(
            warnings.contains("`/nonexistent-root-xyz` is not an existing directory: left out"),
            "{warnings}"
        );
    }
    let spec = double.specs.lock().unwrap().last().unwrap().clone();
    assert_eq!(spec.sandbox.writable_roots, [w.path().to_owned()]);
}

#[tokio::test]
async fn sandbox_state_update_as_a_notification_applies_too() {
    let double = Double::new(Behaviour::Exit3);
    let mut c = Client::start(double.clone(), false).await;
    c.send(
        json!({"jsonrpc": "2.0", "method": "codex/sandbox-state/update",
        "params": {"sandboxPolicy": {"type": "danger-full-access"}}}),
    )
    .await;
    let msg = c
        .call(1, json!({"command": "true", "workdir": workdir()}))
        .await;
    let sandbox = &msg["result"]["structuredContent"]["sandbox"];
    assert_eq!(sandbox["mode"], "danger-full-access", "{msg}");
    assert_eq!(sandbox["source"], "sandbox-state-update");
    // One it cannot read replaces it too: the server's own sandbox, with a warning.
    c.send(
        json!({"jsonrpc": "2.0", "method": "codex/sandbox-state/update",
        "params": {"sandboxCwd": "/only/a/cwd"}}),
    )
    .await;
    let msg = c
        .call(2, json!({"command": "true", "workdir": workdir()}))
        .await;
    let result = &msg["result"]["structuredContent"];
    assert_eq!(result["sandbox"]["mode"], "workspace-write", "{msg}");
    assert_eq!(result["sandbox"]["source"], "command-line");
    assert!(result["warnings"].to_string().contains("neither"), "{msg}");
}

#[tokio::test]
async fn unknown_sandbox_states_fall_back_to_the_server_sandbox_with_a_warning() {
    let double = Double::new(Behaviour::Exit3);
    let settings = ServerSettings {
        sandbox: SandboxPolicy::new(SandboxMode::ReadOnly),
        ..ServerSettings::default()
    };
    let mut c = Client::start_with(double.clone(), false, settings).await;
    let msg = c
        .request(
            1,
            "codex/sandbox-state/update",
            json!({"sandboxPolicy": {"type": "sometimes"}}),
        )
        .await;
    assert_eq!(msg["result"], json!({}), "{msg}");
    let msg = c
        .call(2, json!({"command": "true", "workdir": workdir()}))
        .await;
    let result = &msg["result"]["structuredContent"];
    assert_eq!(result["sandbox"]["mode"], "read-only", "{msg}");
    assert_eq!(result["sandbox"]["source"], "command-line");
    assert!(
        result["warnings"]
            .to_string()
            .contains("unknown variant `sometimes`"),
        "{msg}"
    );
    for meta in [
        json!({"sandboxCwd": "/x"}),
        json!({"permissionProfile": {"type": "quantum"}, "sandboxCwd": "file:///x"}),
        json!("workspace-write"),
    ] {
        let msg = c
            .request(
                3,
                "tools/call",
                json!({
                    "name": "shell",
                    "arguments": {"command": "true", "workdir": workdir()},
                    "_meta": {"codex/sandbox-state-meta": meta}
                }),
            )
            .await;
        let result = &msg["result"]["structuredContent"];
        assert_eq!(result["sandbox"]["mode"], "read-only", "{meta}: {msg}");
        assert_eq!(result["sandbox"]["source"], "command-line");
        assert!(
            result["warnings"]
                .to_string()
                .contains("using the server's own sandbox"),
            "{meta}: {msg}"
        );
    }
    assert!(
        double
            .specs
            .lock()
            .unwrap()
            .iter()
            .all(|s| s.sandbox.mode == SandboxMode::ReadOnly)
    );
    // Unknown custom methods are method-not-found.
    let msg = c.request(4, "codex/other", json!({})).await;
    assert_eq!(error_of(&msg).0, -32601);
}

#[tokio::test]
async fn a_prompt_becomes_an_elicitation_and_the_answer_decides() {
    let mut c = Client::start(Double::new(Behaviour::AskGitInit), true).await;
    let wd = workdir();
    c.send(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "shell", "arguments": {"command": "git init .", "workdir": wd}}}))
        .await;
    let msg = c
        .response(1, |_| {
            Some(json!({"action": "accept", "content": {"decision": "approve"}}))
        })
        .await;
    assert_eq!(
        msg["result"]["structuredContent"]["stdout"], "Allow",
        "{msg}"
    );
    let exec = &msg["result"]["structuredContent"]["execs"][0];
    assert_eq!(
        (exec["asked_human"].clone(), exec["decided_by"].clone()),
        (json!(true), json!("human")),
        "{msg}"
    );
    assert_eq!(c.server_requests.len(), 1);
    let elicit = &c.server_requests[0];
    assert_eq!(elicit["method"], "elicitation/create");
    let message = elicit["params"]["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!(
            "Allow agent to run `/usr/bin/git init .` in `{wd}`?"
        )),
        "{message}"
    );
    assert!(message.contains(r#"prefix_rule(pattern=["git","init"], decision="prompt")"#));

    // Decline denies.
    c.send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "shell", "arguments": {"command": "git init .", "workdir": wd}}}))
        .await;
    let msg = c.response(2, |_| Some(json!({"action": "decline"}))).await;
    let out = msg["result"]["structuredContent"]["stdout"]
        .as_str()
        .unwrap();
    assert!(out.contains("Deny") && out.contains("declined"), "{out}");
    // A decline is no proof a person saw the question (codex exec declines every one).
    let exec = &msg["result"]["structuredContent"]["execs"][0];
    assert_eq!(exec["asked_human"], false, "{msg}");
    assert_eq!(exec["decided_by"], "supervisor", "{msg}");

    // An accept that carries none of the offered choices denies, and nobody decided.
    for (id, content) in [
        (20, json!({})),
        (21, json!({"decision": ""})),
        (22, json!({"decision": "sure"})),
    ] {
        c.send(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "shell", "arguments": {"command": "git init .", "workdir": wd}}}))
            .await;
        let msg = c
            .response(id, |_| {
                Some(json!({"action": "accept", "content": content}))
            })
            .await;
        let result = &msg["result"]["structuredContent"];
        let out = result["stdout"].as_str().unwrap();
        assert!(
            out.starts_with("Deny") && out.contains("none of the offered choices"),
            "{content}: {out}"
        );
        assert_eq!(result["execs"][0]["asked_human"], false, "{msg}");
        assert_eq!(result["execs"][0]["decided_by"], "supervisor", "{msg}");
    }
    c.send(json!({"jsonrpc": "2.0", "id": 23, "method": "tools/call",
        "params": {"name": "shell", "arguments": {"command": "git init .", "workdir": wd}}}))
        .await;
    let msg = c.response(23, |_| Some(json!({"action": "accept"}))).await;
    let out = msg["result"]["structuredContent"]["stdout"]
        .as_str()
        .unwrap();
    assert!(out.contains("with no content"), "{out}");

    // "For the rest of this session": asked once, then remembered.
    c.send(json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "shell", "arguments": {"command": "git init .", "workdir": wd}}}))
        .await;
    let msg = c
        .response(3, |_| {
            Some(json!({"action": "accept", "content": {"decision": "approve-for-session"}}))
        })
        .await;
    assert_eq!(
        msg["result"]["structuredContent"]["stdout"],
        "AllowForSession"
    );
    let asked = c.server_requests.len();
    let msg = c
        .call(4, json!({"command": "git init .", "workdir": wd}))
        .await;
    assert_eq!(
        msg["result"]["structuredContent"]["stdout"],
        "AllowForSession"
    );
    assert_eq!(c.server_requests.len(), asked, "asked again");
}

#[tokio::test]
async fn without_elicitation_capability_prompts_are_denied_without_asking() {
    let mut c = Client::start(Double::new(Behaviour::AskGitInit), false).await;
    let msg = c
        .call(1, json!({"command": "git init .", "workdir": workdir()}))
        .await;
    let out = msg["result"]["structuredContent"]["stdout"]
        .as_str()
        .unwrap();
    assert!(out.contains("does not support elicitation"), "{out}");
    assert!(c.server_requests.is_empty());
    // Nobody was asked: the result must not say a person decided.
    let exec = &msg["result"]["structuredContent"]["execs"][0];
    assert_eq!(exec["asked_human"], false, "{msg}");
    assert_eq!(exec["decided_by"], "supervisor", "{msg}");
}

#[tokio::test]
async fn disconnect_kills_running_sessions_and_the_server_returns_ok() {
    let double = Double::new(Behaviour::Hang);
    let mut c = Client::start(double.clone(), false).await;
    c.send(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "shell", "arguments": {"command": "sleep 1000", "workdir": workdir()}}}))
        .await;
    // Wait until the call is running.
    for _ in 0..100 {
        if !double.specs.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!double.dropped.load(Ordering::SeqCst));
    let Client {
        writer,
        lines,
        server,
        ..
    } = c;
    drop(writer);
    drop(lines);
    let result = tokio::time::timeout(Duration::from_secs(3), server)
        .await
        .expect("server did not stop within 3 s")
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
    assert!(double.dropped.load(Ordering::SeqCst), "session not dropped");
}

#[tokio::test]
async fn a_cancelled_call_drops_its_session() {
    let double = Double::new(Behaviour::Hang);
    let mut c = Client::start(double.clone(), false).await;
    c.send(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "shell", "arguments": {"command": "sleep 1000", "workdir": workdir()}}}))
        .await;
    for _ in 0..100 {
        if !double.specs.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    c.send(
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}}),
    )
    .await;
    for _ in 0..200 {
        if double.dropped.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(double.dropped.load(Ordering::SeqCst));
    // Still serving.
    let msg = c.request(2, "tools/list", json!({})).await;
    assert!(msg.get("result").is_some());
}

#[tokio::test]
async fn timeout_and_settings_reach_the_session() {
    let double = Double::new(Behaviour::Exit3);
    let settings = ServerSettings {
        sandbox: SandboxPolicy::new(SandboxMode::ReadOnly),
        default_timeout: Duration::from_millis(1234),
        max_output_bytes: 77,
        max_response_bytes: 1 << 20,
        limits: supervisor::ResourceLimits::from_specs(&["nofile=64"]).unwrap(),
        cgroup_limits: supervisor::CgroupLimits::default(),
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        prompt_timeout: Duration::from_secs(300),
        amend_rules: None,
        login_snapshot: false,
    };
    let mut c = Client::start_with(double.clone(), false, settings).await;
    c.call(1, json!({"command": "a", "workdir": workdir()}))
        .await;
    c.call(
        2,
        json!({"command": "b", "workdir": workdir(), "timeout_ms": 50, "login": false}),
    )
    .await;
    let specs = double.specs.lock().unwrap().clone();
    assert_eq!(specs[0].timeout, Some(Duration::from_millis(1234)));
    assert_eq!(specs[0].sandbox.mode, SandboxMode::ReadOnly);
    assert_eq!(specs[0].limits.open_files, Some(64));
    // The environment is the settings' whole, not the server's own on top.
    assert_eq!(specs[0].env, [("PATH".into(), "/usr/bin:/bin".into())]);
    assert!(!specs[0].inherit_env);
    assert!(!specs[0].sandbox.workdir_writable);
    assert_eq!(specs[1].timeout, Some(Duration::from_millis(50)));
    assert_eq!(specs[1].argv, ["bash", "-c", "b"]);
}

#[test]
fn approval_is_reexported_for_doubles() {
    // The double above matches on Approval's Debug output; keep the variants' names.
    assert_eq!(format!("{:?}", Approval::Allow), "Allow");
    assert_eq!(
        format!("{:?}", Approval::AllowForSession),
        "AllowForSession"
    );
}

/// The whole response line of one `shell` call under `budget`, and the call after it.
async fn flood_under(budget: usize) {
    let settings = ServerSettings {
        max_response_bytes: budget,
        ..ServerSettings::default()
    };
    let mut c = Client::start_with(Double::new(Behaviour::Flood), false, settings).await;
    let msg = c
        .call(1, json!({"command": "flood", "workdir": workdir()}))
        .await;
    // The JSON-RPC envelope around the result is all the line adds.
    assert!(
        c.last_line_len <= budget + 64,
        "a {}-byte line over a {budget}-byte budget",
        c.last_line_len
    );
    let result = &msg["result"]["structuredContent"];
    let text = msg["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        text.starts_with("Exit code: 0\n") && text.contains("\nOutput:\naaaa"),
        "{text}"
    );
    assert!(
        text.len() < 20 << 10,
        "the text block is short: {}",
        text.len()
    );
    for stream in ["stdout", "stderr", "output"] {
        let s = result[stream].as_str().unwrap();
        assert!(
            s.contains("more bytes cut here to keep the whole response within its"),
            "{stream}"
        );
        assert!(
            result["streams"][stream]["budget_cut_bytes"]
                .as_u64()
                .unwrap()
                > 0,
            "{stream}"
        );
    }
    // Head and tail kept.
    assert!(result["stdout"].as_str().unwrap().starts_with("aaaa"));
    assert!(result["stdout"].as_str().unwrap().ends_with("aaaa"));
    assert_eq!(result["streams"]["stdout"]["total_bytes"], 20 << 20);
    assert_eq!(result["streams"]["stderr"]["total_bytes"], 3 << 20);
    assert_eq!(result["streams"]["stderr"]["lossy"], true);
    assert!(
        result["warnings"].to_string().contains("response budget"),
        "{}",
        result["warnings"]
    );
    // Every byte of the budget is used well: not cut to a fraction of it.
    assert!(
        c.last_line_len > budget / 2,
        "{} of {budget}",
        c.last_line_len
    );
    let next = c
        .call(2, json!({"command": "flood", "workdir": workdir()}))
        .await;
    assert_eq!(next["result"]["structuredContent"]["exit_code"], 0);
}

#[tokio::test]
async fn a_flood_stays_within_the_default_response_budget() {
    flood_under(mcp::budget::DEFAULT_MAX_RESPONSE_BYTES).await;
}

#[tokio::test]
async fn a_flood_stays_within_a_small_response_budget() {
    flood_under(64 << 10).await;
}

#[tokio::test]
async fn initialized_before_initialize_is_dropped_and_the_server_keeps_serving() {
    let mut c = Client::connect(Double::new(Behaviour::Exit3), ServerSettings::default());
    c.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await;
    c.send(json!({"jsonrpc": "2.0", "id": 99, "result": {}}))
        .await;
    let msg = c.request(1, "tools/list", json!({})).await;
    let (code, message) = error_of(&msg);
    assert_eq!(code, -32600, "{msg}");
    assert!(message.contains("send `initialize` first"), "{message}");
    let msg = c.request(2, "ping", json!({})).await;
    assert_eq!(msg["result"], json!({}), "{msg}");
    c.initialize(false).await;
    let msg = c
        .call(3, json!({"command": "true", "workdir": workdir()}))
        .await;
    assert_eq!(msg["result"]["structuredContent"]["exit_code"], 3, "{msg}");
    assert!(!c.server.is_finished());
}

#[tokio::test]
async fn a_bad_initialize_says_what_is_wrong_and_a_good_one_follows() {
    let mut c = Client::connect(Double::new(Behaviour::Exit3), ServerSettings::default());
    let msg = c
        .request(
            1,
            "initialize",
            json!({"capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}),
        )
        .await;
    let (code, message) = error_of(&msg);
    assert_eq!(code, -32602, "{msg}");
    assert_eq!(
        message,
        "invalid `initialize` params: missing field `protocolVersion`"
    );
    let msg = c.request(2, "initialize", json!("2025-06-18")).await;
    let (code, message) = error_of(&msg);
    assert_eq!(code, -32602, "{msg}");
    assert!(
        message.contains("must be an object, got a string"),
        "{message}"
    );
    c.initialize(false).await;
    let msg = c.request(3, "tools/list", json!({})).await;
    assert!(msg.get("result").is_some(), "{msg}");
}

#[tokio::test]
async fn lines_that_are_not_json_or_not_utf8_get_error_replies() {
    let mut c = Client::start(Double::new(Behaviour::Exit3), false).await;
    c.send_raw("this is not json").await;
    let msg = c.next().await;
    assert_eq!(msg["id"], Value::Null, "{msg}");
    assert_eq!(error_of(&msg).0, -32700);
    // A batch: one refusal per request in it, each with its id.
    c.send_raw(r#"[{"jsonrpc":"2.0","id":5,"method":"ping"}]"#)
        .await;
    let msg = c.next().await;
    let [reply] = msg.as_array().expect("a batch answer").as_slice() else {
        panic!("one reply per request: {msg}");
    };
    assert_eq!(
        (reply["id"].clone(), error_of(reply).0),
        (json!(5), -32600),
        "{msg}"
    );
    // A request with invalid UTF-8 is answered with its id.
    let mut line = br#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"shell","arguments":{"command":"echo "#.to_vec();
    line.extend_from_slice(b"\xff\xfe");
    line.extend_from_slice(format!(r#"","workdir":"{}"}}}}}}"#, workdir()).as_bytes());
    line.push(b'\n');
    c.writer.write_all(&line).await.unwrap();
    let msg = c.next().await;
    assert_eq!(msg["id"], 6, "{msg}");
    let (code, message) = error_of(&msg);
    assert_eq!(code, -32700);
    assert!(message.contains("not valid UTF-8"), "{message}");
    // Unparseable and invalid UTF-8: a null id.
    c.writer.write_all(b"\xff{\n").await.unwrap();
    let msg = c.next().await;
    assert_eq!(
        (msg["id"].clone(), error_of(&msg).0),
        (Value::Null, -32700),
        "{msg}"
    );
    let msg = c
        .call(7, json!({"command": "true", "workdir": workdir()}))
        .await;
    assert_eq!(msg["result"]["structuredContent"]["exit_code"], 3, "{msg}");
}

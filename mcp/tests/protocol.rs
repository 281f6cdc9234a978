//! The MCP surface in process, over `tokio::io::duplex`, with raw JSON-RPC lines so the
//! exact wire format is what is checked. Sessions are a recording double: no kernel needed.
//! End-to-end behaviour with real bash is in `tests/mcp/` (Python, the official SDK).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mcp::capture::{Captured, StreamText};
use mcp::runner::{Finished, RunFuture, Sessions};
use mcp::{ServerSettings, serve};
use policy::{DecidedBy, Decision, Evaluation, RuleMatch};
use serde_json::{Value, json};
use supervisor::{
    Approval, ApprovalRequest, Enforcement, ExitStatus, SandboxMode, SandboxPolicy, SessionOutcome,
    SessionSpec,
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
        },
        captured: Captured {
            stdout: text(out),
            stderr: text("err"),
            output: text(&format!("{out}err")),
        },
    }
}

struct SetOnDrop(Arc<AtomicBool>);
impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Sessions for Double {
    fn run(&self, spec: SessionSpec, _max: usize) -> RunFuture<'_> {
        self.specs.lock().unwrap().push(spec.clone());
        let guard = SetOnDrop(self.dropped.clone());
        Box::pin(async move {
            match self.behaviour {
                Behaviour::Exit3 => Ok(finished(3, "out")),
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
                        })
                        .await;
                    Ok(finished(0, &format!("{approval:?}")))
                }
            }
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
}

impl Client {
    async fn start(double: Arc<Double>, elicitation: bool) -> Client {
        Self::start_with(double, elicitation, ServerSettings::default()).await
    }

    async fn start_with(
        double: Arc<Double>,
        elicitation: bool,
        settings: ServerSettings,
    ) -> Client {
        let (client_end, server_end) = tokio::io::duplex(1 << 20);
        let (server_read, server_write) = tokio::io::split(server_end);
        let server = tokio::spawn(serve(double, settings, server_read, server_write));
        let (read, writer) = tokio::io::split(client_end);
        let mut client = Client {
            lines: BufReader::new(read),
            writer,
            server,
            server_requests: Vec::new(),
        };
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
        client
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
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(10), self.lines.read_line(&mut line))
                .await
                .expect("no answer within 10 s")
                .unwrap();
            assert!(n > 0, "server closed the stream");
            let msg: Value = serde_json::from_str(&line).unwrap();
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
    assert_eq!(props["login"]["type"], json!(["boolean", "null"]));
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
async fn a_call_returns_structured_content_and_the_same_json_as_text() {
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
    let text: Value = serde_json::from_str(result["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(&text, structured);

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

#[tokio::test]
async fn a_writable_root_that_does_not_exist_is_refused_at_once() {
    let double = Double::new(Behaviour::Exit3);
    let mut c = Client::start(double.clone(), false).await;
    let msg = c
        .request(
            1,
            "codex/sandbox-state/update",
            json!({"sandboxPolicy": {"type": "workspace-write", "writable_roots": ["/nonexistent-root-xyz"]}}),
        )
        .await;
    let (code, message) = error_of(&msg);
    assert_eq!(code, -32602, "{msg}");
    assert!(
        message.contains("`/nonexistent-root-xyz` is not an existing directory"),
        "{message}"
    );
    // Nothing was applied: the next call runs under the command line's sandbox.
    let msg = c
        .call(2, json!({"command": "true", "workdir": workdir()}))
        .await;
    assert_eq!(
        msg["result"]["structuredContent"]["sandbox"]["source"], "command-line",
        "{msg}"
    );
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
    // A malformed one is ignored (nobody to answer) and changes nothing.
    c.send(
        json!({"jsonrpc": "2.0", "method": "codex/sandbox-state/update",
        "params": {"sandboxCwd": "/only/a/cwd"}}),
    )
    .await;
    let msg = c
        .call(1, json!({"command": "true", "workdir": workdir()}))
        .await;
    let sandbox = &msg["result"]["structuredContent"]["sandbox"];
    assert_eq!(sandbox["mode"], "danger-full-access", "{msg}");
    assert_eq!(sandbox["source"], "sandbox-state-update");
}

#[tokio::test]
async fn malformed_sandbox_state_is_invalid_params() {
    let mut c = Client::start(Double::new(Behaviour::Exit3), false).await;
    let msg = c
        .request(
            1,
            "codex/sandbox-state/update",
            json!({"sandboxPolicy": {"type": "sometimes"}}),
        )
        .await;
    let (code, message) = error_of(&msg);
    assert_eq!(code, -32602);
    assert!(message.contains("unknown variant `sometimes`"), "{message}");
    let msg = c
        .request(
            2,
            "tools/call",
            json!({
                "name": "shell",
                "arguments": {"command": "true", "workdir": workdir()},
                "_meta": {"codex/sandbox-state-meta": {"sandboxCwd": "/x"}}
            }),
        )
        .await;
    let (code, message) = error_of(&msg);
    assert_eq!(code, -32602);
    assert!(message.contains("missing `sandboxPolicy`"), "{message}");
    // Unknown custom methods are method-not-found.
    let msg = c.request(3, "codex/other", json!({})).await;
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
        limits: supervisor::ResourceLimits::from_specs(&["nofile=64"]).unwrap(),
        cgroup_limits: supervisor::CgroupLimits::default(),
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        prompt_timeout: Duration::from_secs(300),
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

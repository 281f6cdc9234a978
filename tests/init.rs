//! End to end: `execgate init`, the container entrypoint, outside a container.
//!
//! Runs the real binary as a child of the test and checks the PID-1 duties a user relies
//! on: the exact exit status, signals passed on to the tree (and execgate waiting for the
//! tree's answer), orphans adopted by execgate reaped while the command still runs, and
//! nothing of the tree left after exit. `tests/container/run` checks the same inside a
//! real container engine, where execgate is PID 1.

#![cfg(target_os = "linux")]

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const EXECGATE: &str = env!("CARGO_BIN_EXE_execgate");

/// Generous: the test machines are small and shared. Reaching it means a hang.
const LIMIT: Duration = Duration::from_secs(120);

// The one skip helper: `SKIPPED: <test>: <why>`, a failure under EXECGATE_REQUIRE_ALL=1.
use testkit::skip_unless;

/// Why the supervisor (and its escalation, used to make orphans execgate adopts) cannot
/// run here, if it cannot.
fn escalation_unavailable() -> Option<String> {
    let actions = fs::read_to_string("/proc/sys/kernel/seccomp/actions_avail").unwrap_or_default();
    if !actions.split_whitespace().any(|a| a == "user_notif") {
        return Some("this kernel has no seccomp user notification (Linux 5.0+)".into());
    }
    if !cfg!(target_arch = "x86_64") {
        return Some("the escalation hand-back is implemented for x86_64 only".into());
    }
    let uid_root = fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false);
    let scope = fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope").unwrap_or_default();
    if scope.trim().parse::<u32>().unwrap_or(0) > 1 && !uid_root {
        return Some("kernel.yama.ptrace_scope forbids the ptrace hand-back without root".into());
    }
    None
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/rules/supervise")
        .join(name)
}

/// `execgate init --no-default-rules --rules escalate.rules --on-prompt deny -- bash -c
/// SCRIPT`, stdout piped line by line.
struct Init {
    child: Child,
    lines: mpsc::Receiver<String>,
    _tmp: tempfile::TempDir,
}

impl Init {
    fn start(script: &str) -> Init {
        let tmp = tempfile::tempdir().unwrap();
        let mut child = Command::new(EXECGATE)
            .args(["init", "--no-default-rules", "--rules"])
            .arg(fixture("escalate.rules"))
            .args(["--on-prompt", "deny", "--", "bash", "-c", script])
            .current_dir(tmp.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Init {
            child,
            lines,
            _tmp: tmp,
        }
    }

    /// The next line of the command's stdout (panics after `LIMIT`).
    fn line(&self) -> String {
        self.lines
            .recv_timeout(LIMIT)
            .expect("the command printed nothing more")
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name}");
    }

    /// Exit code of execgate, and the rest of stdout.
    fn finish(mut self) -> (i32, Vec<String>) {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > LIMIT {
                let _ = self.child.kill();
                panic!("execgate init did not exit within {LIMIT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let rest = self.lines.iter().collect();
        (status.code().expect("execgate itself exits"), rest)
    }
}

/// State and parent of a process, from `/proc/PID/stat`; `None` once it is gone (reaped).
fn state_and_parent(pid: u32) -> Option<(char, u32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 2..];
    let mut fields = after_comm.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// The first process whose argv holds `arg`.
fn pid_with_argument(arg: &str) -> Option<u32> {
    fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        cmdline
            .split(|&b| b == 0)
            .any(|a| a == arg.as_bytes())
            .then_some(pid)
    })
}

#[test]
fn exits_with_the_commands_exact_status() {
    skip_unless!(escalation_unavailable());
    let init = Init::start("echo started; exit 7");
    assert_eq!(init.line(), "started");
    assert_eq!(init.finish().0, 7);

    // Killed by a signal: 128 + N, as a shell reports it.
    let init = Init::start("echo started; kill -USR2 $$; sleep 5");
    assert_eq!(init.line(), "started");
    assert_eq!(init.finish().0, 128 + 12);
}

#[test]
fn forwards_signals_to_the_tree_and_waits_for_its_answer() {
    skip_unless!(escalation_unavailable());
    let init = Init::start(
        r#"
        for s in HUP USR1 USR2 INT QUIT; do trap "echo got $s" $s; done
        trap 'echo got TERM, cleaning up; exit 42' TERM
        echo ready
        while :; do sleep 0.05; done
        "#,
    );
    assert_eq!(init.line(), "ready");
    for (signal, answer) in [
        ("HUP", "got HUP"),
        ("USR1", "got USR1"),
        ("USR2", "got USR2"),
        ("INT", "got INT"),
        ("QUIT", "got QUIT"),
    ] {
        init.signal(signal);
        assert_eq!(init.line(), answer, "after SIG{signal}");
    }
    // SIGTERM does not end execgate at once (as `supervise` does): the command cleans up
    // and its status is execgate's.
    init.signal("TERM");
    let (status, rest) = init.finish();
    assert_eq!(rest, ["got TERM, cleaning up"]);
    assert_eq!(status, 42);
}

#[test]
fn reaps_orphans_it_adopts_while_the_command_runs() {
    skip_unless!(escalation_unavailable());
    // `sh` escalates (escalate.rules): execgate runs it as its own child, so the
    // background sleep it orphans is re-parented to execgate, the subreaper.
    let init = Init::start(
        r#"
        sh -c 'sleep 1 & echo $! > orphan.pid'
        echo "$(cat orphan.pid)"
        while :; do sleep 0.05; done
        "#,
    );
    // A pid as execgate sees it (the escalated sh runs outside the session's PID
    // namespace), read here, not inside, where /proc shows only the session's own.
    let orphan: u32 = init.line().parse().unwrap();
    let adopter = state_and_parent(orphan).map_or(0, |(_, parent)| parent);
    assert_eq!(
        adopter,
        init.child.id(),
        "the orphan was adopted by execgate"
    );
    // The orphan exits after 1 s; execgate reaps it on SIGCHLD, long before the
    // command ends.
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Some((state, _)) = state_and_parent(orphan) {
        assert!(
            Instant::now() < deadline,
            "orphan {orphan} still there ({state}) 20 s after it exited"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    init.signal("TERM");
    let (status, _) = init.finish();
    assert_eq!(status, 128 + 15);
}

#[test]
fn leaves_nothing_of_the_tree_behind() {
    skip_unless!(escalation_unavailable());
    // A daemon that left the process group and the session: the teardown still ends it.
    // Found by a unique argument: inside a PID namespace `$!` is not a pid out here.
    let token = format!(
        "300.{}{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos() % 1000
    );
    let init = Init::start(&format!(
        "setsid sleep {token} & echo started; sleep 0.5; exit 3"
    ));
    assert_eq!(init.line(), "started");
    let daemon = (0..100)
        .find_map(|_| {
            let found = pid_with_argument(&token);
            if found.is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
            found
        })
        .expect("the daemon started");
    let (status, _) = init.finish();
    assert_eq!(status, 3);
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Some((state, _)) = state_and_parent(daemon) {
        if state == 'Z' {
            break; // dead; re-parented outside our reach and not yet reaped by its adopter
        }
        assert!(
            Instant::now() < deadline,
            "the daemon {daemon} outlived execgate ({state})"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------
// `execgate init -- execgate mcp`: the image's default CMD
// ---------------------------------------------------------------------------------------

/// `execgate init -- EXECGATE mcp --no-default-rules ...`, JSON-RPC over pipes.
struct McpInit {
    child: Child,
    lines: mpsc::Receiver<String>,
    tmp: tempfile::TempDir,
}

impl McpInit {
    fn start() -> McpInit {
        let tmp = tempfile::tempdir().unwrap();
        let mut child = Command::new(EXECGATE)
            .args(["init", "--", EXECGATE, "mcp", "--no-default-rules"])
            .current_dir(tmp.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        McpInit { child, lines, tmp }
    }

    fn send(&mut self, message: serde_json::Value) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{message}").unwrap();
        stdin.flush().unwrap();
    }

    /// The response to request `id` (notifications and other responses skipped).
    fn response(&self, id: u64) -> serde_json::Value {
        loop {
            let line = self.lines.recv_timeout(LIMIT).expect("no response");
            let value: serde_json::Value = serde_json::from_str(&line).unwrap();
            if value["id"] == id {
                return value;
            }
        }
    }

    fn call_shell(&mut self, id: u64, command: &str) {
        let workdir = self.tmp.path().to_str().unwrap().to_owned();
        self.send(serde_json::json!({
            "jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "shell", "arguments": {
                "command": command, "workdir": workdir, "timeout_ms": 60_000, "login": false
            }}
        }));
    }
}

#[test]
fn serves_its_own_mcp_in_process_and_stops_promptly_on_sigterm() {
    skip_unless!(escalation_unavailable());
    let mut mcp = McpInit::start();
    mcp.send(serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "init-test", "version": "0"}}
    }));
    let initialized = mcp.response(1);
    assert!(
        initialized["result"]["serverInfo"]["name"].is_string(),
        "{initialized}"
    );
    mcp.send(serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    // A supervised call: the server runs in execgate itself (init's command never ran as
    // a supervised session: it could not have served, a nested listener is refused).
    mcp.call_shell(2, "echo hi from $PPID");
    let result = mcp.response(2);
    let content = &result["result"]["structuredContent"];
    assert_eq!(content["exit_code"], 0, "{result}");
    let stdout = content["stdout"].as_str().unwrap();
    assert!(stdout.starts_with("hi from "), "{result}");

    // A call still running when SIGTERM arrives: its tree is killed, execgate exits
    // promptly with 128 + SIGTERM.
    // Found by a unique argument: inside the call's PID namespace `$$` is not a pid here.
    let token = format!("300.{}", std::process::id());
    mcp.call_shell(3, &format!("exec sleep {token}"));
    let deadline = Instant::now() + LIMIT;
    let shell: u32 = loop {
        if let Some(pid) = pid_with_argument(&token) {
            break pid;
        }
        assert!(Instant::now() < deadline, "the call never started");
        std::thread::sleep(Duration::from_millis(20));
    };
    let sent = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &mcp.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = loop {
        if let Some(status) = mcp.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(5),
            "still serving 5 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(128 + 15));
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Some((state, _)) = state_and_parent(shell) {
        if state == 'Z' {
            break; // killed; waiting for its new parent to reap it
        }
        assert!(
            Instant::now() < deadline,
            "the call's {shell} outlived execgate"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn refuses_session_flags_for_its_own_mcp() {
    let out = Command::new(EXECGATE)
        .args(["init", "--sandbox", "read-only", "--", EXECGATE, "mcp"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--sandbox apply to a supervised command, not to the MCP server"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
    // A limit would be lost the same way: refused too, named.
    let out = Command::new(EXECGATE)
        .args(["init", "--limit", "nofile=64", "--", EXECGATE, "mcp"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--limit"), "{stderr}");
}

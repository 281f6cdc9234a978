//! What the network-by-name tests share (`tests/network_proxy.rs`, `tests/attack_egress.rs`):
//! servers in the host's namespace that count the connections they accept and keep what
//! they receive (the effect outside that a refusal must leave at zero), and the
//! `execgate supervise` run with an audit log.

#![allow(dead_code)] // each test crate uses its own part

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{EXECGATE, Output, Scratch, supervisor_unavailable, wait_bounded, which};

/// What an [`Upstream`](Server::upstream) answers.
pub const BODY: &str = "hello from upstream";
/// What a [`listener`](Server::listener) answers.
pub const OUTSIDE_BODY: &str = "hello from outside";

/// How a server reads a connection before it answers `200 OK` and closes.
#[derive(Clone, Copy)]
enum Reading {
    /// The request head; keeps its first line.
    Head,
    /// Everything until a second of silence (a pipelined or smuggled request too).
    UntilSilence,
}

/// A server on an ephemeral port that counts connections and keeps what it received.
pub struct Server {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// A one-page HTTP server on `ip`: answers [`BODY`] once a request head is in.
    pub fn upstream(ip: &str) -> Server {
        Server::start(ip, Reading::Head, BODY)
    }

    /// A listener on `bind` that keeps every byte, then answers [`OUTSIDE_BODY`].
    pub fn listener(bind: &str) -> Server {
        Server::start(bind, Reading::UntilSilence, OUTSIDE_BODY)
    }

    fn start(bind: &str, reading: Reading, body: &'static str) -> Server {
        let listener = TcpListener::bind((bind, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(Mutex::new(Vec::new()));
        let (c, r) = (connections.clone(), received.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                c.fetch_add(1, Ordering::SeqCst);
                let r = r.clone();
                std::thread::spawn(move || serve(stream, reading, body, &r));
            }
        });
        Server {
            addr,
            connections,
            received,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn ip(&self) -> String {
        self.addr.ip().to_string()
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// What it received, connection by connection.
    pub fn received(&self) -> String {
        self.received.lock().unwrap().join("\n---\n")
    }

    pub fn reset(&self) {
        self.connections.store(0, Ordering::SeqCst);
        self.received.lock().unwrap().clear();
    }
}

fn serve(stream: TcpStream, reading: Reading, body: &str, received: &Mutex<Vec<String>>) {
    let kept = match reading {
        Reading::Head => {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut first = String::new();
            if reader.read_line(&mut first).is_err() {
                return;
            }
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            first.trim().to_owned()
        }
        Reading::UntilSilence => {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
            let mut all = Vec::new();
            let mut buf = [0u8; 4096];
            let mut stream = &stream;
            loop {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => all.extend_from_slice(&buf[..n]),
                }
            }
            String::from_utf8_lossy(&all).into_owned()
        }
    };
    received.lock().unwrap().push(kept);
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// Starts `execgate supervise --no-default-rules --audit ... ARGS -- bash -c SCRIPT` in
/// the scratch workdir, output into the scratch io directory.
pub fn spawn_supervise(s: &Scratch, args: &[String], script: &str) -> Child {
    Command::new(EXECGATE)
        .current_dir(&s.work)
        .arg("supervise")
        .arg("--no-default-rules")
        .arg("--audit")
        .arg(s.io.join("audit.jsonl"))
        .args(args)
        .arg("--")
        .args(["bash", "-c", script])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(s.io.join("stdout")).unwrap())
        .stderr(std::fs::File::create(s.io.join("stderr")).unwrap())
        .spawn()
        .unwrap()
}

/// [`spawn_supervise`], run to its end (bounded).
pub fn supervise(s: &Scratch, args: &[String], script: &str) -> Output {
    let mut child = spawn_supervise(s, args, script);
    let status = wait_bounded(&mut child, || s.read_io("stderr"));
    Output {
        status,
        stdout: s.read_io("stdout"),
        stderr: s.read_io("stderr"),
    }
}

/// The audit log's network lines, as JSON.
pub fn network_lines(s: &Scratch) -> Vec<serde_json::Value> {
    s.read_io("audit.jsonl")
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "network")
        .collect()
}

/// Why these tests cannot run here: no supervisor, a missing tool, or no network
/// namespace (doctor says).
pub fn unavailable(tools: &[&str]) -> Option<String> {
    if let Some(why) = supervisor_unavailable() {
        return Some(why);
    }
    for tool in tools {
        if which(tool).is_none() {
            return Some(format!("no {tool} on PATH"));
        }
    }
    let out = Command::new(EXECGATE).args(["doctor"]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if text.contains("egress by name: NO") {
        return Some(format!(
            "no network namespace can be made here (doctor: {})",
            text.lines()
                .find(|l| l.contains("net ns"))
                .unwrap_or_default()
        ));
    }
    None
}

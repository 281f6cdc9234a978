//! Network by name (issue #19), end to end: the real `execgate supervise` with real bash,
//! curl, python and git, its tree in a network namespace with only loopback, and upstream
//! servers on 127.0.0.x in the host's namespace that the supervisor is told to resolve
//! test names to (`--proxy-resolve`). Every refusal is observed outside: the upstream
//! server that must receive nothing counts its connections.

#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

mod common;
use common::{EXECGATE, Scratch, supervisor_unavailable, which};

mod egress_harness;
use egress_harness::{BODY, Server as Upstream, network_lines, supervise};

// For its pty driver only.
#[allow(unused_macros, unused_imports)]
mod attack_harness;
use testkit::skip_unless;

fn args(list: &[String]) -> Vec<String> {
    list.to_vec()
}

/// Why this machine cannot run these tests, if it cannot.
fn unavailable() -> Option<String> {
    egress_harness::unavailable(&["curl", "python3"])
}

/// curl (absolute-form and CONNECT, `-p`), python's urllib and curl over SOCKS5 all reach
/// an allowed name; each connection is one audit line with its bytes.
#[test]
fn an_allowed_name_is_reached_by_curl_python_and_socks() {
    skip_unless!(unavailable());
    let s = Scratch::new();
    let up = Upstream::upstream("127.0.0.2");
    let port = up.port();
    let out = supervise(
        &s,
        &args(&[
            format!("--allow-domain=pkgs.test:{port}"),
            format!("--allow-domain={}:{port}", up.ip()),
            format!("--proxy-resolve=pkgs.test={}", up.ip()),
        ]),
        &format!(
            r#"url=http://pkgs.test:{port}/simple/
curl -fsS "$url"; echo " curl=$?"
curl -fsS -p "$url"; echo " connect=$?"
python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode(), "python=0")' "$url"
curl -fsS --proxy socks5h://127.0.0.1:3128 "$url"; echo " socks=$?"
"#
        ),
    );
    assert_eq!(out.code(), 0, "{out:#?}");
    for tool in ["curl=0", "connect=0", "python=0", "socks=0"] {
        assert!(
            out.stdout.contains(&format!("{BODY} {tool}")),
            "{tool}: {out:#?}"
        );
    }
    assert_eq!(up.connections(), 4, "{:?}", up.received());
    let lines = network_lines(&s);
    let allowed: Vec<_> = lines.iter().filter(|l| l["decision"] == "allow").collect();
    assert_eq!(allowed.len(), 4, "{lines:#?}");
    for line in allowed {
        assert_eq!(line["host"], "pkgs.test");
        assert_eq!(line["port"], port);
        assert!(
            line["bytes_down"].as_u64().unwrap() > BODY.len() as u64,
            "{line}"
        );
        assert!(line["bytes_up"].as_u64().unwrap() > 0, "{line}");
        assert!(line["duration_ms"].is_u64(), "{line}");
    }
    // What the tree saw: the proxy announced, its own network namespace.
    let protocols: Vec<_> = lines.iter().map(|l| l["protocol"].clone()).collect();
    for p in ["http", "connect", "socks5"] {
        assert!(protocols.iter().any(|x| x == p), "{protocols:?}");
    }
}

/// A name no rule allows, and one a --deny-domain forbids below an allowed wildcard: the
/// tools fail, the refusal is audited with its reason, and the upstream receives nothing.
#[test]
fn a_denied_name_fails_is_audited_and_reaches_nothing() {
    skip_unless!(unavailable());
    let s = Scratch::new();
    let up = Upstream::upstream("127.0.0.3");
    let port = up.port();
    let ip = up.ip();
    let out = supervise(
        &s,
        &args(&[
            // The address itself is allowed: only the names decide.
            format!("--allow-domain={ip}:{port}"),
            format!("--allow-domain=*.corp.test:{port}"),
            format!("--deny-domain=bad.corp.test:{port}"),
            format!("--proxy-resolve=other.test={ip}"),
            format!("--proxy-resolve=bad.corp.test={ip}"),
        ]),
        &format!(
            r#"curl -fsS http://other.test:{port}/; echo " plain=$?"
curl -fsS -p http://other.test:{port}/; echo " connect=$?"
python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1])' http://bad.corp.test:{port}/ 2>/dev/null; echo " python=$?"
curl -fsS --proxy socks5h://127.0.0.1:3128 http://bad.corp.test:{port}/; echo " socks=$?"
"#
        ),
    );
    for tool in ["plain", "connect", "python", "socks"] {
        assert!(
            !out.stdout.contains(&format!(" {tool}=0")),
            "{tool} got through: {out:#?}"
        );
    }
    assert_eq!(up.connections(), 0, "{:?}", up.received());
    let lines = network_lines(&s);
    let denied: Vec<_> = lines.iter().filter(|l| l["decision"] == "deny").collect();
    assert_eq!(denied.len(), 4, "{lines:#?}");
    assert!(
        denied.iter().any(|l| l["host"] == "other.test"
            && l["reason"].as_str().unwrap().contains("no rule allows")),
        "{denied:#?}"
    );
    assert!(
        denied.iter().any(|l| l["host"] == "bad.corp.test"
            && l["reason"].as_str().unwrap().contains("--deny-domain")),
        "{denied:#?}"
    );
    assert!(out.stderr.contains("egress refused"), "{out:#?}");
}

/// `CONNECT` to a port no rule allowed (a rule without a port covers 80 and 443 only).
#[test]
fn connect_to_a_port_no_rule_allowed_is_refused() {
    skip_unless!(unavailable());
    let s = Scratch::new();
    let up = Upstream::upstream("127.0.0.4");
    let port = up.port();
    let ip = up.ip();
    let out = supervise(
        &s,
        &args(&[
            "--allow-domain=pkgs.test".to_owned(),
            format!("--allow-domain={ip}"),
            format!("--proxy-resolve=pkgs.test={ip}"),
        ]),
        &format!("curl -fsS -p http://pkgs.test:{port}/; echo \" connect=$?\""),
    );
    assert!(!out.stdout.contains("connect=0"), "{out:#?}");
    assert_eq!(up.connections(), 0);
    let lines = network_lines(&s);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_eq!(lines[0]["decision"], "deny");
    assert_eq!(lines[0]["protocol"], "connect");
    assert_eq!(lines[0]["port"], port);
}

/// An allowed name that resolves to a loopback or private address is refused unless that
/// address is allowed by itself (no DNS rebinding into the host's own services).
#[test]
fn an_allowed_name_resolving_to_a_private_address_is_refused() {
    skip_unless!(unavailable());
    let s = Scratch::new();
    let up = Upstream::upstream("127.0.0.5");
    let port = up.port();
    let ip = up.ip();
    let out = supervise(
        &s,
        &args(&[
            format!("--allow-domain=rebind.test:{port}"),
            format!("--allow-domain=meta.test:{port}"),
            format!("--proxy-resolve=rebind.test={ip}"),
            "--proxy-resolve=meta.test=169.254.169.254".to_owned(),
        ]),
        &format!(
            "curl -fsS http://rebind.test:{port}/; echo \" plain=$?\"\n\
             curl -fsS -p --max-time 20 http://meta.test:{port}/; echo \" meta=$?\""
        ),
    );
    assert!(!out.stdout.contains("plain=0"), "{out:#?}");
    assert!(!out.stdout.contains("meta=0"), "{out:#?}");
    assert_eq!(up.connections(), 0);
    let lines = network_lines(&s);
    let reasons: Vec<&str> = lines
        .iter()
        .map(|l| l["reason"].as_str().unwrap())
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("loopback")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("link-local")),
        "{reasons:?}"
    );
}

/// An IP literal is a host like any other: no rule names it, so it is refused, even though
/// a name resolving to it is allowed.
#[test]
fn an_ip_literal_needs_a_rule_of_its_own() {
    skip_unless!(unavailable());
    let s = Scratch::new();
    let up = Upstream::upstream("127.0.0.6");
    let port = up.port();
    let ip = up.ip();
    let out = supervise(
        &s,
        &args(&[
            format!("--allow-domain=pkgs.test:{port}"),
            format!("--proxy-resolve=pkgs.test={ip}"),
        ]),
        &format!(
            "curl -fsS http://{ip}:{port}/; echo \" plain=$?\"\n\
             curl -fsS --proxy socks5://127.0.0.1:3128 http://{ip}:{port}/; echo \" socks=$?\""
        ),
    );
    assert!(!out.stdout.contains("plain=0"), "{out:#?}");
    assert!(!out.stdout.contains("socks=0"), "{out:#?}");
    assert_eq!(up.connections(), 0);
    assert_eq!(network_lines(&s).len(), 2, "{out:#?}");
}

/// A direct socket that ignores the proxy (curl --noproxy, python's socket, bash's
/// /dev/tcp) reaches nothing outside: the tree's namespace has only its own loopback.
fn direct_socket_bypass(backend: &[String], ip: &str) {
    let s = Scratch::new();
    let up = Upstream::upstream(ip);
    let port = up.port();
    let ip = up.ip();
    let out = supervise(
        &s,
        &[
            backend.to_vec(),
            vec![
                format!("--allow-domain=pkgs.test:{port}"),
                format!("--allow-domain={ip}:{port}"),
                format!("--proxy-resolve=pkgs.test={ip}"),
            ],
        ]
        .concat(),
        &format!(
            r#"curl -fsS --max-time 5 --noproxy '*' http://{ip}:{port}/; echo " noproxy=$?"
python3 -c 'import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5); print("python=0")' {ip} {port} 2>/dev/null; echo " python=$?"
(exec 3<>/dev/tcp/{ip}/{port}) 2>/dev/null; echo " devtcp=$?"
python3 -c 'import socket; socket.socket(socket.AF_PACKET, socket.SOCK_RAW)' 2>/dev/null; echo " packet=$?"
curl -fsS http://pkgs.test:{port}/ >/dev/null; echo " proxied=$?"
"#
        ),
    );
    for tool in ["noproxy", "python", "devtcp", "packet"] {
        assert!(
            !out.stdout.contains(&format!(" {tool}=0")) && !out.stdout.contains("python=0\n"),
            "{tool} got out: {out:#?}"
        );
    }
    // The same upstream was reachable all along, through the proxy only.
    assert!(out.stdout.contains(" proxied=0"), "{out:#?}");
    assert_eq!(up.connections(), 1, "{:?}", up.received());
}

#[test]
fn a_direct_socket_bypassing_the_proxy_reaches_nothing() {
    skip_unless!(unavailable());
    direct_socket_bypass(&[], "127.0.0.7");
}

/// The same with the patched-shell backend: the namespace and the proxy are the sandbox's,
/// whichever backend decides the execs.
#[test]
fn a_direct_socket_bypassing_the_proxy_reaches_nothing_wrapper() {
    skip_unless!(unavailable());
    let pieces = testkit::ok_or_skip!(common::patched_pieces());
    direct_socket_bypass(
        &[
            "--backend=wrapper".to_owned(),
            format!("--patched-bash={}", pieces.bash.display()),
        ],
        "127.0.0.13",
    );
}

/// Servers the tree starts on its own loopback keep working, and the proxy is not in
/// their way (NO_PROXY names loopback).
#[test]
fn the_trees_own_loopback_services_work() {
    skip_unless!(unavailable());
    let s = Scratch::new();
    let out = supervise(
        &s,
        &args(&["--allow-domain=pkgs.test".to_owned()]),
        r#"echo inside > page.html
python3 -m http.server 8000 --bind 127.0.0.1 >/dev/null 2>&1 &
for i in $(seq 50); do curl -fsS http://127.0.0.1:8000/page.html 2>/dev/null && break; sleep 0.1; done
kill %1
"#,
    );
    assert!(out.stdout.contains("inside"), "{out:#?}");
}

/// Flag values are checked before anything runs, each error naming the flag.
#[test]
fn bad_egress_flags_are_clear_errors() {
    skip_unless!(supervisor_unavailable());
    let s = Scratch::new();
    for (flag, needle) in [
        (
            "--allow-domain=https://pypi.org",
            "--allow-domain https://pypi.org",
        ),
        ("--deny-domain=a*.org", "--deny-domain a*.org"),
        (
            "--proxy-resolve=pypi.org",
            "--proxy-resolve pypi.org: expected HOST=IP",
        ),
    ] {
        let out = supervise(&s, &args(&[flag.to_owned()]), "echo ran");
        assert_ne!(out.code(), 0, "{flag}: {out:#?}");
        assert!(!out.stdout.contains("ran"), "{flag}: {out:#?}");
        assert!(out.stderr.contains(needle), "{flag}: {out:#?}");
    }
}

/// `git clone` over HTTP (git's smart protocol, served by `git http-backend` behind a
/// small CGI server outside) works through the proxy.
#[test]
fn git_clone_over_http_goes_through_the_proxy() {
    skip_unless!(unavailable());
    if which("git").is_none() {
        testkit::skip("no git on PATH");
        return;
    }
    let backend = [
        "/usr/lib/git-core/git-http-backend",
        "/usr/libexec/git-core/git-http-backend",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists());
    let Some(backend) = backend else {
        testkit::skip("no git-http-backend");
        return;
    };
    let outside = tempfile::tempdir().unwrap();
    let repo = outside.path().join("project.git");
    let git = |args: &[&str], dir: &std::path::Path| {
        let st = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@t")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@t")
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "git {args:?}");
    };
    let src = outside.path().join("src");
    std::fs::create_dir(&src).unwrap();
    git(&["init", "-q", "-b", "main"], &src);
    std::fs::write(src.join("README"), "cloned through the proxy\n").unwrap();
    git(&["add", "README"], &src);
    git(&["commit", "-qm", "first"], &src);
    git(
        &[
            "clone",
            "-q",
            "--bare",
            src.to_str().unwrap(),
            repo.to_str().unwrap(),
        ],
        outside.path(),
    );
    std::fs::write(repo.join("git-daemon-export-ok"), "").unwrap();
    // A CGI server for git-http-backend: python's, run outside on 127.0.0.8.
    let server_py = outside.path().join("cgi.py");
    std::fs::write(
        &server_py,
        format!(
            r#"import http.server, os, subprocess, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self): self.run()
    def do_POST(self): self.run()
    def run(self):
        path, _, query = self.path.partition("?")
        env = dict(os.environ, GIT_PROJECT_ROOT={root:?}, GIT_HTTP_EXPORT_ALL="1",
                   REQUEST_METHOD=self.command, PATH_INFO=path, QUERY_STRING=query,
                   CONTENT_TYPE=self.headers.get("Content-Type", ""),
                   CONTENT_LENGTH=self.headers.get("Content-Length", "0"), REMOTE_ADDR="127.0.0.1")
        body = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
        out = subprocess.run([{backend:?}], input=body, env=env, capture_output=True).stdout
        head, _, rest = out.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.split(b"\r\n"):
            k, _, v = line.decode().partition(": ")
            if k.lower() == "status": status = int(v.split()[0])
            else: headers.append((k, v))
        self.send_response(status)
        for k, v in headers: self.send_header(k, v)
        self.send_header("Content-Length", str(len(rest)))
        self.end_headers()
        self.wfile.write(rest)
    def log_message(self, *a): pass
srv = http.server.ThreadingHTTPServer(("127.0.0.8", 0), H)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"#,
            root = outside.path().to_str().unwrap(),
        ),
    )
    .unwrap();
    let mut server = Command::new("python3")
        .arg(&server_py)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut port = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut port)
        .unwrap();
    let port = port.trim().to_owned();
    let s = Scratch::new();
    let out = supervise(
        &s,
        &args(&[
            format!("--allow-domain=git.test:{port}"),
            format!("--allow-domain=127.0.0.8:{port}"),
            "--proxy-resolve=git.test=127.0.0.8".to_owned(),
        ]),
        &format!("git clone -q http://git.test:{port}/project.git here && cat here/README"),
    );
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(out.code(), 0, "{out:#?}");
    assert!(out.stdout.contains("cloned through the proxy"), "{out:#?}");
    assert!(
        network_lines(&s)
            .iter()
            .any(|l| l["host"] == "git.test" && l["decision"] == "allow"),
        "{out:#?}"
    );
}

/// A `network_rule` with `decision = "prompt"`, as a Codex rules file has it: answered by
/// `--on-prompt allow|deny`; without a terminal to ask on, denied, saying so.
#[test]
fn a_prompt_host_rule_is_answered_by_on_prompt() {
    skip_unless!(unavailable());
    let up = Upstream::upstream("127.0.0.9");
    let port = up.port();
    let ip = up.ip();
    for (answer, reaches) in [(None, false), (Some("deny"), false), (Some("allow"), true)] {
        let s = Scratch::new();
        let rules = s.io.join("net.rules");
        std::fs::write(
            &rules,
            format!(
                "network_rule(host=\"mirror.test:{port}\", protocol=\"https\", decision=\"prompt\")\n\
                 network_rule(host=\"{ip}:{port}\", protocol=\"https\", decision=\"allow\")\n"
            ),
        )
        .unwrap();
        let mut flags = vec![
            format!("--rules={}", rules.display()),
            format!("--proxy-resolve=mirror.test={ip}"),
        ];
        if let Some(answer) = answer {
            flags.push(format!("--on-prompt={answer}"));
        }
        let before = up.connections();
        let out = supervise(
            &s,
            &flags,
            &format!("curl -fsS -p http://mirror.test:{port}/; echo \" rc=$?\""),
        );
        assert_eq!(
            out.stdout.contains(" rc=0"),
            reaches,
            "{answer:?}: {out:#?}"
        );
        assert_eq!(
            up.connections() - before,
            usize::from(reaches),
            "{answer:?}"
        );
        if answer.is_none() {
            assert!(out.stderr.contains("no terminal to ask on"), "{out:#?}");
        }
    }
}

/// `pip install` of a package from a local simple index (PEP 503) through the proxy.
#[test]
fn pip_install_from_a_simple_index_goes_through_the_proxy() {
    skip_unless!(unavailable());
    let pip_ok = Command::new("python3")
        .args(["-m", "pip", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !pip_ok {
        testkit::skip("no pip for python3");
        return;
    }
    // A hand-made wheel (a zip with the package and its dist-info) in a simple index.
    let index = tempfile::tempdir().unwrap();
    let root = index.path();
    std::fs::create_dir_all(root.join("simple/tinypkg")).unwrap();
    std::fs::create_dir_all(root.join("files")).unwrap();
    let made = Command::new("python3")
        .arg("-c")
        .arg(
            r#"import sys, zipfile
files = {
    "tinypkg/__init__.py": "GREETING = 'installed through the proxy'\n",
    "tinypkg-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: tinypkg\nVersion: 1.0\n",
    "tinypkg-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = "".join(f"{n},,\n" for n in files) + "tinypkg-1.0.dist-info/RECORD,,\n"
with zipfile.ZipFile(sys.argv[1], "w") as z:
    for n, t in files.items():
        z.writestr(n, t)
    z.writestr("tinypkg-1.0.dist-info/RECORD", record)
"#,
        )
        .arg(root.join("files/tinypkg-1.0-py3-none-any.whl"))
        .status()
        .unwrap();
    assert!(made.success());
    std::fs::write(
        root.join("simple/tinypkg/index.html"),
        "<html><body><a href=\"../../files/tinypkg-1.0-py3-none-any.whl\">tinypkg-1.0-py3-none-any.whl</a></body></html>\n",
    )
    .unwrap();
    let mut server = Command::new("python3")
        .args(["-u", "-m", "http.server", "--bind", "127.0.0.14", "0"])
        .current_dir(root)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut banner = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut banner)
        .unwrap();
    // "Serving HTTP on 127.0.0.14 port N (http://127.0.0.14:N/) ..."
    let port = banner
        .split_whitespace()
        .skip_while(|w| *w != "port")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    // The interpreter itself, not a version manager's shim (pyenv's rehashes after an
    // install, writing outside the sandbox's writable roots).
    let python = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .unwrap();
    let python = String::from_utf8_lossy(&python.stdout).trim().to_owned();
    let s = Scratch::new();
    let out = supervise(
        &s,
        &args(&[
            format!("--allow-domain=pypi.test:{port}"),
            format!("--allow-domain=127.0.0.14:{port}"),
            "--proxy-resolve=pypi.test=127.0.0.14".to_owned(),
        ]),
        &format!(
            "{python} -m pip install -q --no-cache-dir --disable-pip-version-check \
             --index-url http://pypi.test:{port}/simple/ --trusted-host pypi.test --target ./site tinypkg && \
             PYTHONPATH=./site {python} -c 'import tinypkg; print(tinypkg.GREETING)'"
        ),
    );
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(out.code(), 0, "{out:#?}");
    assert!(
        out.stdout.contains("installed through the proxy"),
        "{out:#?}"
    );
}

/// A plain-HTTP request whose Host header names another host than its target would reach
/// a virtual host nobody allowed: refused before anything is sent.
#[test]
fn a_host_header_differing_from_the_target_is_refused() {
    skip_unless!(unavailable());
    let s = Scratch::new();
    let up = Upstream::upstream("127.0.0.15");
    let port = up.port();
    let ip = up.ip();
    let out = supervise(
        &s,
        &args(&[
            format!("--allow-domain=pkgs.test:{port}"),
            format!("--allow-domain={ip}:{port}"),
            format!("--proxy-resolve=pkgs.test={ip}"),
        ]),
        &format!(
            "curl -fsS -H 'Host: internal.test:{port}' http://pkgs.test:{port}/; echo \" rc=$?\""
        ),
    );
    assert!(!out.stdout.contains(" rc=0"), "{out:#?}");
    assert_eq!(up.connections(), 0);
    let lines = network_lines(&s);
    assert!(
        lines
            .iter()
            .any(|l| l["decision"] == "deny"
                && l["reason"].as_str().unwrap().contains("Host header")),
        "{lines:#?}"
    );
}

/// `doctor` says whether the tree's network namespace can be made here, and so whether
/// `--allow-domain` works (`egress by name: yes`, or `NO` with the failing step).
#[test]
fn doctor_says_whether_egress_by_name_works_here() {
    let out = Command::new(EXECGATE).arg("doctor").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let row = text
        .lines()
        .find(|l| l.starts_with("net ns (--allow-domain)"))
        .unwrap_or_else(|| panic!("no net ns row:\n{text}"));
    let line = text
        .lines()
        .find(|l| l.contains("egress by name:"))
        .unwrap_or_else(|| panic!("no egress line:\n{text}"));
    if row.contains(" yes ") {
        assert!(line.contains("egress by name: yes"), "{line}");
    } else {
        assert!(line.contains("egress by name: NO"), "{line}");
        assert!(
            line.contains("refused ("),
            "the failing step is named: {line}"
        );
    }
    let json = Command::new(EXECGATE)
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(
        value["features"]["network_namespace"]["available"].is_boolean()
            || value["network_namespace"]["available"].is_boolean(),
        "{value}"
    );
}

/// The terminal asks about a `prompt` host rule: "n" sends nothing upstream; "a" lets this
/// connection and every later one to the same host:port through, asked once.
#[test]
fn the_terminal_asks_about_a_prompt_host_rule() {
    skip_unless!(unavailable());
    let up = Upstream::upstream("127.0.0.16");
    let port = up.port();
    let ip = up.ip();
    for (typed, connections) in [("n", 0), ("a", 2)] {
        let s = Scratch::new();
        let rules = s.io.join("net.rules");
        std::fs::write(
            &rules,
            format!(
                "network_rule(host=\"mirror.test:{port}\", protocol=\"https\", decision=\"prompt\", justification=\"the mirror\")\n\
                 network_rule(host=\"{ip}:{port}\", protocol=\"https\", decision=\"allow\")\n"
            ),
        )
        .unwrap();
        let before = up.connections();
        let mut cmd = Command::new(EXECGATE);
        cmd.current_dir(&s.work).args([
            "supervise".to_owned(),
            "--no-default-rules".to_owned(),
            format!("--rules={}", rules.display()),
            format!("--proxy-resolve=mirror.test={ip}"),
            "--".to_owned(),
            "bash".to_owned(),
            "-c".to_owned(),
            format!(
                "curl -fsS -p http://mirror.test:{port}/ && curl -fsS -p http://mirror.test:{port}/; echo \" rc=$?\""
            ),
        ]);
        let screen =
            attack_harness::drive_pty(&cmd, 30, &[("[y/a/n]: ", &format!("type:{typed}\n"))]);
        assert_eq!(
            screen
                .transcript
                .matches(&format!(
                    "allow the sandbox to connect to `mirror.test:{port}`?"
                ))
                .count(),
            1,
            "{screen:#?}"
        );
        assert!(screen.transcript.contains("the mirror"), "{screen:#?}");
        assert_eq!(
            up.connections() - before,
            connections,
            "{typed}: {screen:#?}"
        );
        assert_eq!(
            screen.transcript.contains(" rc=0"),
            connections > 0,
            "{screen:#?}"
        );
    }
}

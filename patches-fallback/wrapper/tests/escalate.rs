//! The wrapper binary as a real child process against the real protocol server.

mod common;

use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Output, Stdio};

use common::{Answer, TestServer, run_on_fds, wrapper};
use escalate_protocol::server::EscalateServer;
use escalate_protocol::{
    ClientMessage, ExitStatus, ProtocolError, SOCKET_ENV, ServerMessage, read_frame, write_frame,
};
use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::socket::{AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType};
use tokio::io::AsyncWriteExt;

/// Runs the wrapper as the shell would: `wrapper PATH ARGV0 ARGV1...`, with `stdin`.
async fn wrap(env: &[(String, String)], args: &[&str], stdin: &[u8]) -> Output {
    let mut child = tokio::process::Command::new(wrapper())
        .args(args)
        .envs(env.iter().cloned())
        .env("EXEC_WRAPPER_SHELL", "/bin/sh")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wrapper");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin).await.unwrap();
    drop(input);
    child.wait_with_output().await.expect("wrapper output")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_execs_the_program_in_place_and_reports_the_request() {
    let server = TestServer::start(|_| Answer::Run);
    let mut env = server.env();
    env.push(("KEEP_ME".into(), "yes".into()));
    let mut child = tokio::process::Command::new(wrapper());
    child
        .args(["./../bin/./echo", "echo", "hello", "world"])
        .current_dir("/usr")
        .envs(env)
        .env("EXEC_WRAPPER_SHELL", "/bin/sh");
    let out = child.output().await.unwrap();
    assert_eq!(text(&out.stdout), "hello world\n", "{}", text(&out.stderr));
    assert!(out.status.success());

    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    let req = &reqs[0];
    assert_eq!(req.path, std::path::Path::new("/usr/../bin/echo"));
    assert_eq!(req.argv, ["echo", "hello", "world"]);
    assert_eq!(req.cwd, std::path::Path::new("/usr"));
    let keys: Vec<_> = req.env.iter().map(|(k, _)| k.to_string_lossy()).collect();
    assert!(keys.iter().any(|k| k == "KEEP_ME"), "{keys:?}");
    for hidden in ["EXEC_WRAPPER", SOCKET_ENV, "EXEC_WRAPPER_SHELL"] {
        assert!(
            !keys.iter().any(|k| k == hidden),
            "{hidden} leaked: {keys:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_keeps_the_wrapper_variables_for_the_program() {
    let server = TestServer::start(|_| Answer::Run);
    let out = wrap(&server.env(), &["/usr/bin/env", "env"], b"").await;
    let env = text(&out.stdout);
    assert!(env.contains(&format!("{SOCKET_ENV}=")), "{env}");
    assert!(env.contains("EXEC_WRAPPER="), "{env}");
    assert!(!env.contains("EXEC_WRAPPER_SHELL="), "{env}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_of_a_script_without_shebang_falls_back_to_the_shell() {
    let server = TestServer::start(|_| Answer::Run);
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("noshebang");
    std::fs::write(&script, "echo \"script $0 got $1\"\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = script.display().to_string();
    let out = wrap(&server.env(), &[&path, "noshebang", "arg1"], b"").await;
    assert_eq!(
        text(&out.stdout),
        format!("script {path} got arg1\n"),
        "{}",
        text(&out.stderr)
    );
    assert!(out.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_failures_look_like_the_shell_s_own() {
    let server = TestServer::start(|_| Answer::Run);
    let out = wrap(&server.env(), &["/no/such/program", "program"], b"").await;
    assert_eq!(out.status.code(), Some(127));
    assert_eq!(
        text(&out.stderr),
        "sh: /no/such/program: No such file or directory\n"
    );
    let out = wrap(&server.env(), &["/", "x"], b"").await;
    assert_eq!(out.status.code(), Some(126));
    assert!(text(&out.stderr).contains("Is a directory"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_prints_the_reason_and_exits_126() {
    let server = TestServer::start(|req| {
        Answer::Deny(format!(
            "execgate: `{}` is forbidden by rule no-rm",
            req.argv[0].to_string_lossy()
        ))
    });
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("marker");
    let m = marker.display().to_string();
    let out = wrap(&server.env(), &["/usr/bin/touch", "touch", &m], b"").await;
    assert_eq!(out.status.code(), Some(126));
    assert_eq!(
        text(&out.stderr),
        "execgate: `touch` is forbidden by rule no-rm\n"
    );
    assert!(!marker.exists(), "a denied program ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalate_passes_stdio_and_relays_the_exit_code() {
    let server = TestServer::start(|_| {
        Answer::Escalate(Box::new(|req, fds| {
            assert_eq!(req.argv[0], "never-run-by-the-wrapper");
            let got: Vec<i32> = fds.iter().map(|(n, _)| *n).collect();
            assert_eq!(got, [0, 1, 2]);
            run_on_fds(
                &[
                    "/bin/sh",
                    "-c",
                    "read line; echo \"escalated got $line\"; echo oops >&2; exit 7",
                ],
                fds,
            )
        }))
    });
    let out = wrap(
        &server.env(),
        &["/bin/false", "never-run-by-the-wrapper"],
        b"payload\n",
    )
    .await;
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "escalated got payload\n");
    assert_eq!(text(&out.stderr), "oops\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalate_mirrors_a_death_by_signal() {
    let server = TestServer::start(|_| {
        Answer::Escalate(Box::new(|_, fds| {
            run_on_fds(&["/bin/sh", "-c", "kill -TERM $$"], fds)
        }))
    });
    let out = wrap(&server.env(), &["/bin/true", "true"], b"").await;
    assert_eq!(out.status.signal(), Some(15), "{:?}", out.status);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_megabyte_environment_goes_through() {
    // One env string is capped by the kernel (MAX_ARG_STRLEN, 128 KiB): 16 x 64 KiB.
    let server = TestServer::start(|_| Answer::Run);
    let mut env = server.env();
    for i in 0..16 {
        env.push((format!("BIG{i}"), "x".repeat(64 << 10)));
    }
    let out = wrap(
        &env,
        &[
            "/bin/sh",
            "sh",
            "-c",
            "n=0; for i in $(seq 0 15); do eval \"n=\\$((n + \\${#BIG$i}))\"; done; echo $n",
        ],
        b"",
    )
    .await;
    assert_eq!(text(&out.stdout), "1048576\n", "{}", text(&out.stderr));
    let req = &server.requests()[0];
    let big: usize = req
        .env
        .iter()
        .filter(|(k, _)| k.to_string_lossy().starts_with("BIG"))
        .map(|(_, v)| v.len())
        .sum();
    assert_eq!(big, 1 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_that_went_away_means_deny() {
    let (server, shell_fd) = EscalateServer::pair().unwrap();
    let shell_fd = common::inheritable_high(shell_fd);
    drop(server); // the supervisor's end of the rendezvous socket is gone
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("marker");
    let m = marker.display().to_string();
    let env = vec![(SOCKET_ENV.to_string(), shell_fd.as_raw_fd().to_string())];
    let out = wrap(&env, &["/usr/bin/touch", "touch", &m], b"").await;
    assert_eq!(out.status.code(), Some(126));
    assert!(
        text(&out.stderr).contains("cannot reach the supervisor"),
        "{}",
        text(&out.stderr)
    );
    assert!(!marker.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_that_hangs_up_without_answering_means_deny() {
    let (server, shell_fd) = EscalateServer::pair().unwrap();
    fcntl(&shell_fd, FcntlArg::F_SETFD(FdFlag::empty())).unwrap();
    let task = tokio::spawn(async move {
        let incoming = server.accept().await.unwrap();
        let (_req, responder) = incoming.read_request().await.unwrap();
        drop(responder);
    });
    let env = vec![(SOCKET_ENV.to_string(), shell_fd.as_raw_fd().to_string())];
    let out = wrap(&env, &["/bin/true", "true"], b"").await;
    task.await.unwrap();
    assert_eq!(out.status.code(), Some(126));
    assert!(text(&out.stderr).contains("closed the connection"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_socket_variable_means_deny() {
    let out = wrap(&[], &["/bin/true", "true"], b"").await;
    assert_eq!(out.status.code(), Some(126));
    assert!(text(&out.stderr).contains("EXECGATE_ESCALATE_SOCKET is not set"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_refuses_to_ask_for_more_fds_than_allowed() {
    let (server, shell_fd) = EscalateServer::pair().unwrap();
    fcntl(&shell_fd, FcntlArg::F_SETFD(FdFlag::empty())).unwrap();
    let task = tokio::spawn(async move {
        let incoming = server.accept().await.unwrap();
        let (_req, responder) = incoming.read_request().await.unwrap();
        let many: Vec<i32> = (0..17).collect();
        responder.escalate_fds(&many).await.unwrap_err()
    });
    let env = vec![(SOCKET_ENV.to_string(), shell_fd.as_raw_fd().to_string())];
    let out = wrap(&env, &["/bin/true", "true"], b"").await;
    let err = task.await.unwrap();
    assert!(matches!(err, ProtocolError::TooManyFds(17)), "{err}");
    assert_eq!(out.status.code(), Some(126));
}

/// A hand-rolled supervisor that asks for too many fds: the wrapper says so and denies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wrapper_refuses_a_request_for_more_fds_than_allowed() {
    let (server_end, shell_end) = nix::sys::socket::socketpair(
        AddressFamily::Unix,
        SockType::Datagram,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .unwrap();
    fcntl(&shell_end, FcntlArg::F_SETFD(FdFlag::empty())).unwrap();
    let raw_server = std::thread::spawn(move || {
        let conn = raw_accept(&server_end);
        let (msg, _): (ClientMessage, _) = read_frame(conn.as_fd()).unwrap();
        assert!(matches!(msg, ClientMessage::Request(_)));
        let ask = ServerMessage::Escalate {
            fds: (0..40).collect(),
        };
        write_frame(conn.as_fd(), &ask, &[]).unwrap();
        // The wrapper hangs up instead of sending anything.
        read_frame::<ClientMessage>(conn.as_fd()).unwrap_err()
    });
    let env = vec![(SOCKET_ENV.to_string(), shell_end.as_raw_fd().to_string())];
    let out = wrap(&env, &["/bin/true", "true"], b"").await;
    assert_eq!(out.status.code(), Some(126));
    assert!(
        text(&out.stderr).contains("asked for 40 fds; at most 16 can be passed"),
        "{}",
        text(&out.stderr)
    );
    assert!(matches!(raw_server.join().unwrap(), ProtocolError::Closed));
}

/// Receives one HELLO datagram and returns the connection it carried.
fn raw_accept(server_end: &OwnedFd) -> OwnedFd {
    let mut buf = [0u8; 64];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let msg = nix::sys::socket::recvmsg::<()>(
        server_end.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    )
    .unwrap();
    let fd = msg
        .cmsgs()
        .unwrap()
        .find_map(|c| match c {
            ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
            _ => None,
        })
        .expect("a connection fd");
    // SAFETY: the kernel just installed `fd` for this message; this test owns it alone.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_learns_when_the_wrapper_dies_during_an_escalation() {
    let (server, shell_fd) = EscalateServer::pair().unwrap();
    fcntl(&shell_fd, FcntlArg::F_SETFD(FdFlag::empty())).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let incoming = server.accept().await.unwrap();
        let (_req, responder) = incoming.read_request().await.unwrap();
        let esc = responder.escalate().await.unwrap();
        tx.send(()).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(10), esc.wrapper_gone())
            .await
            .is_ok()
    });
    let mut child = tokio::process::Command::new(wrapper())
        .args(["/bin/sleep", "sleep", "100"])
        .env(SOCKET_ENV, shell_fd.as_raw_fd().to_string())
        .spawn()
        .unwrap();
    rx.await.unwrap();
    child.start_kill().unwrap();
    let status = child.wait().await.unwrap();
    assert_eq!(status.signal(), Some(9));
    assert!(task.await.unwrap(), "wrapper_gone did not resolve");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_fd_is_left_out_of_an_escalation() {
    let server = TestServer::start(|_| {
        Answer::Escalate(Box::new(|_, fds| {
            let got: Vec<i32> = fds.iter().map(|(n, _)| *n).collect();
            ExitStatus::Code(if got == [1, 2] { 0 } else { 1 })
        }))
    });
    let script = format!("exec {} /bin/true true <&-", wrapper().display());
    let out = tokio::process::Command::new("/bin/sh")
        .args(["-c", &script])
        .envs(server.env())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enoexec_on_an_empty_or_binary_file_is_what_bash_does() {
    let server = TestServer::start(|_| Answer::Run);
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in [("empty", &b""[..]), ("binary", &b"\x01\x02\x00\x03\n"[..])] {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let empty = dir.path().join("empty").display().to_string();
    let out = wrap(&server.env(), &[&empty, "empty"], b"").await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let binary = dir.path().join("binary").display().to_string();
    let out = wrap(&server.env(), &[&binary, "binary"], b"").await;
    assert_eq!(out.status.code(), Some(126));
    assert_eq!(
        text(&out.stderr),
        format!("sh: {binary}: cannot execute binary file: Exec format error\n")
    );
}

/// The whole tree shares one rendezvous fd; each exec still gets its own conversation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_wrappers_each_get_their_own_answer() {
    let server = TestServer::start(|req| {
        let n = req.argv[1].to_string_lossy().into_owned();
        if n.parse::<u32>().unwrap() % 2 == 0 {
            Answer::Run
        } else {
            Answer::Deny(format!("odd {n}"))
        }
    });
    let env = server.env();
    let runs = (0..32).map(|i| {
        let env = env.clone();
        async move {
            let n = i.to_string();
            let out = wrap(&env, &["/bin/echo", "echo", &n], b"").await;
            (i, out)
        }
    });
    for (i, out) in futures_join_all(runs).await {
        if i % 2 == 0 {
            assert_eq!(text(&out.stdout), format!("{i}\n"));
            assert!(out.status.success());
        } else {
            assert_eq!(text(&out.stderr), format!("odd {i}\n"));
            assert_eq!(out.status.code(), Some(126));
        }
    }
    assert_eq!(server.requests().len(), 32);
}

/// All futures at once, on the test's runtime (no extra crate for join_all).
async fn futures_join_all<F: std::future::Future + Send + 'static>(
    futs: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

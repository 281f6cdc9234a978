//! End to end: the patched bash/zsh from `patches-fallback/build-shells`, the real
//! wrapper, the real protocol server. Skips loudly when the shells were not built.

mod common;

use std::path::Path;
use std::process::Output;

use common::{Answer, TestServer, patched_shell, run_on_fds};
use escalate_protocol::EscalateRequest;

async fn shell(server: &TestServer, shell: &Path, cwd: &Path, script: &str) -> Output {
    tokio::process::Command::new(shell)
        .args(["-c", script])
        .current_dir(cwd)
        .envs(server.env())
        .output()
        .await
        .expect("run the patched shell")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn paths(reqs: &[EscalateRequest]) -> Vec<String> {
    reqs.iter().map(|r| r.path.display().to_string()).collect()
}

fn write_script(dir: &Path, name: &str, body: &str) {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

/// `inner_seen`: bash runs a script without `#!` with itself (patched), so the script's
/// own execs are asked too; zsh runs it with /bin/sh, which is not patched.
async fn every_exec_is_seen(name: &str, inner_seen: bool) {
    let Some(sh) = patched_shell(name) else {
        return;
    };
    let server = TestServer::start(|_| Answer::Run);
    let dir = tempfile::tempdir().unwrap();
    write_script(
        dir.path(),
        "noshebang",
        "echo \"script got $1\"\n/bin/true inner\n",
    );
    let out = shell(
        &server,
        &sh,
        dir.path(),
        "echo hi | cat; ./noshebang one; /bin/echo done",
    )
    .await;
    assert_eq!(
        text(&out.stdout),
        "hi\nscript got one\ndone\n",
        "stderr: {}",
        text(&out.stderr)
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    let reqs = server.requests();
    let seen = paths(&reqs);
    let script = dir.path().join("noshebang").display().to_string();
    // `echo` is a builtin; `cat`, the script, the script's own exec and /bin/echo are execs.
    for want in ["/cat", &script, "/bin/echo"] {
        assert!(
            seen.iter().any(|p| p.ends_with(want)),
            "{want} not seen: {seen:?}"
        );
    }
    if inner_seen {
        assert_eq!(reqs.len(), 4, "{seen:?}");
        let inner = reqs.iter().find(|r| r.path.ends_with("true")).unwrap();
        assert_eq!(inner.argv, ["/bin/true", "inner"]);
    } else {
        assert_eq!(reqs.len(), 3, "{seen:?}");
    }
    let s = reqs
        .iter()
        .find(|r| r.path.display().to_string() == script)
        .unwrap();
    assert_eq!(s.argv, ["./noshebang", "one"]);
    assert_eq!(s.cwd, dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patched_bash_sends_every_exec_and_keeps_the_enoexec_fallback() {
    every_exec_is_seen("bash", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patched_zsh_sends_every_exec_and_keeps_the_enoexec_fallback() {
    every_exec_is_seen("zsh", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patched_bash_deny_and_escalate_statuses_reach_the_script() {
    let Some(bash) = patched_shell("bash") else {
        return;
    };
    let server = TestServer::start(|req| match req.argv[0].to_str() {
        Some("touch") => Answer::Deny("execgate: touch is forbidden here".into()),
        Some("escalate-me") => Answer::Escalate(Box::new(|_, fds| {
            run_on_fds(
                &["/bin/sh", "-c", "read l; echo \"outside: $l\"; exit 3"],
                fds,
            )
        })),
        _ => Answer::Run,
    });
    let dir = tempfile::tempdir().unwrap();
    let out = shell(
        &server,
        &bash,
        dir.path(),
        "touch marker; echo \"touch=$?\"; \
         echo line | (exec -a escalate-me /bin/false); echo \"escalated=$?\"",
    )
    .await;
    assert_eq!(
        text(&out.stdout),
        "touch=126\noutside: line\nescalated=3\n",
        "stderr: {}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stderr), "execgate: touch is forbidden here\n");
    assert!(!dir.path().join("marker").exists(), "a denied program ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wrapper_is_not_wrapped_for_itself() {
    let Some(bash) = patched_shell("bash") else {
        return;
    };
    let server = TestServer::start(|_| Answer::Run);
    let dir = tempfile::tempdir().unwrap();
    let out = shell(
        &server,
        &bash,
        dir.path(),
        "\"$EXEC_WRAPPER\" /bin/echo echo direct",
    )
    .await;
    assert_eq!(text(&out.stdout), "direct\n", "{}", text(&out.stderr));
    assert_eq!(paths(&server.requests()), ["/bin/echo"]);
}

/// Programs run in place get the shell's signal dispositions and fds, not the
/// wrapper's runtime's: SIGPIPE still kills `yes`, and a closed stdout stays closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn programs_run_in_place_inherit_the_shell_s_process_state() {
    let Some(bash) = patched_shell("bash") else {
        return;
    };
    let server = TestServer::start(|_| Answer::Run);
    let dir = tempfile::tempdir().unwrap();
    let out = shell(
        &server,
        &bash,
        dir.path(),
        "yes | head -n1; /bin/sh -c 'echo x 2>/dev/null || echo closed >&2' >&-",
    )
    .await;
    assert_eq!(text(&out.stdout), "y\n");
    assert_eq!(text(&out.stderr), "closed\n");
}

/// What cannot be executed is not handed to the wrapper: the messages, statuses and
/// `execfail` survival are stock bash's, byte for byte (Debian's /bin/bash is the same
/// 5.2.15), and nothing is asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_execs_are_exactly_stock_bash() {
    let Some(bash) = patched_shell("bash") else {
        return;
    };
    testkit::skip_unless!(
        (!Path::new("/bin/bash").is_file()).then_some("no stock /bin/bash to compare with")
    );
    let server = TestServer::start(|_| Answer::Run);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("plain"), "echo not executable\n").unwrap();
    std::fs::create_dir(dir.path().join("adir")).unwrap();
    let script = "./missing; echo \"missing=$?\"; ./plain; echo \"plain=$?\"; \
                  ./adir; echo \"adir=$?\"; \
                  shopt -s execfail; exec ./missing; echo \"survived exec=$?\"";
    // `$0` (the error prefix) is `bash` for both.
    let patched = tokio::process::Command::new(&bash)
        .args(["-c", script, "bash"])
        .current_dir(dir.path())
        .envs(server.env())
        .output()
        .await
        .unwrap();
    let stock = tokio::process::Command::new("/bin/bash")
        .args(["-c", script, "bash"])
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    assert_eq!(text(&patched.stdout), text(&stock.stdout));
    assert_eq!(text(&patched.stderr), text(&stock.stderr));
    assert_eq!(patched.status.code(), stock.status.code());
    assert!(
        text(&stock.stdout).contains("survived exec=127"),
        "{}",
        text(&stock.stdout)
    );
    assert!(
        server.requests().is_empty(),
        "{:?}",
        paths(&server.requests())
    );
}

/// The documented limit of this path: only the patched shell asks. A program that
/// execs by itself (python's subprocess here) is not seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_made_by_python_subprocess_is_not_seen() {
    let Some(bash) = patched_shell("bash") else {
        return;
    };
    let Some(python) = ["/usr/bin/python3", "/bin/python3"]
        .iter()
        .map(Path::new)
        .find(|p| p.is_file())
    else {
        testkit::skip("python3 is not installed");
        return;
    };
    let server = TestServer::start(|_| Answer::Run);
    let dir = tempfile::tempdir().unwrap();
    let script = format!(
        "{} -c 'import subprocess; print(subprocess.run([\"/bin/true\"]).returncode)'",
        python.display()
    );
    let out = shell(&server, &bash, dir.path(), &script).await;
    assert_eq!(text(&out.stdout), "0\n", "{}", text(&out.stderr));
    let seen = paths(&server.requests());
    assert_eq!(
        seen,
        [python.display().to_string()],
        "only python itself is asked"
    );
}

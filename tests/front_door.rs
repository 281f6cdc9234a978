//! End to end: the front door, the session flags `supervise`, `init` and `mcp` share.
//!
//! Runs the real binary. Each flag is checked by its effect: what a session's programs
//! can see (its environment), reach (a listener on 127.0.0.1) or run, and what the person
//! is told when a flag is wrong.

#![cfg(target_os = "linux")]

use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const EXECGATE: &str = env!("CARGO_BIN_EXE_execgate");

// The one skip helper: `SKIPPED: <test>: <why>`, a failure under EXECGATE_REQUIRE_ALL=1.
use testkit::skip_unless;

/// Why no session can run here, if none can.
fn supervisor_unavailable() -> Option<String> {
    let actions = fs::read_to_string("/proc/sys/kernel/seccomp/actions_avail").unwrap_or_default();
    (!actions.split_whitespace().any(|a| a == "user_notif"))
        .then(|| "this kernel has no seccomp user notification (Linux 5.0+)".to_owned())
}

fn execgate(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(EXECGATE);
    cmd.args(args).stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run execgate")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_misspelt_option_before_the_command_is_an_error_not_the_command() {
    let out = execgate(&["check", "--prety", "--", "ls"], &[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stdout.is_empty(), "no decision printed: {out:?}");
    assert!(
        stderr(&out).contains("unexpected argument '--prety'"),
        "{}",
        stderr(&out)
    );

    let dir = tempfile::tempdir().unwrap();
    let canary = dir.path().join("ran");
    let script = format!("touch {}", canary.display());
    let out = execgate(
        &[
            "supervise",
            "--sandbx",
            "read-only",
            "--",
            "bash",
            "-c",
            &script,
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        stderr(&out).contains("unexpected argument '--sandbx'"),
        "{}",
        stderr(&out)
    );
    assert!(!canary.exists());

    // The command's own options after `--` (or after the program) are the command's.
    let out = execgate(&["check", "--", "ls", "-l"], &[]);
    assert!(out.status.success(), "{out:?}");
    let out = execgate(&["check", "ls", "--color"], &[]);
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn a_missing_writable_root_is_one_clear_error() {
    for sub in ["supervise", "init"] {
        let out = execgate(
            &[
                sub,
                "--writable-root",
                "/nonexistent-root-xyz",
                "--",
                "true",
            ],
            &[],
        );
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        assert_eq!(
            stderr(&out),
            "execgate: --writable-root /nonexistent-root-xyz: no such file or directory\n"
        );
    }
    let out = execgate(&["mcp", "--writable-root", "/nonexistent-root-xyz"], &[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(
        stderr(&out),
        "execgate: --writable-root /nonexistent-root-xyz: no such file or directory\n"
    );
}

#[test]
fn a_missing_patched_bash_is_an_error_even_under_backend_auto() {
    let dir = tempfile::tempdir().unwrap();
    let canary = dir.path().join("ran");
    let script = format!("touch {}", canary.display());
    for backend in ["auto", "unotify"] {
        let out = execgate(
            &[
                "supervise",
                "--backend",
                backend,
                "--patched-bash",
                "/nonexistent-bash",
                "--",
                "bash",
                "-c",
                &script,
            ],
            &[],
        );
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        assert_eq!(
            stderr(&out),
            "execgate: --patched-bash /nonexistent-bash: no such file or directory\n"
        );
        assert!(!canary.exists(), "the command must not run");
    }
}

/// Connects to a fresh listener on 127.0.0.1 from a session of `sandbox`; whether the
/// listener got the connection.
fn session_reaches_listener(sandbox: &str, extra: &[&str]) -> bool {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let script = format!("exec 3<>/dev/tcp/127.0.0.1/{port} && echo hello >&3");
    let mut args = vec!["supervise", "--no-default-rules", "--sandbox", sandbox];
    args.extend_from_slice(extra);
    args.extend(["--", "bash", "-c", &script]);
    let out = execgate(&args, &[]);
    // Whatever the session said, only the listener's side counts.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        match listener.accept() {
            Ok((mut stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let mut got = String::new();
                let _ = stream.read_to_string(&mut got);
                return got == "hello\n";
            }
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(_) => {
                eprintln!("no connection; the session: {out:?}");
                return false;
            }
        }
    }
}

#[test]
fn danger_full_access_on_the_command_line_has_network_as_from_a_sandbox_state() {
    skip_unless!(supervisor_unavailable());
    assert!(session_reaches_listener("danger-full-access", &[]));
    // The control: network stays off in the other modes unless asked for.
    assert!(!session_reaches_listener("workspace-write", &[]));
    assert!(session_reaches_listener("workspace-write", &["--network"]));
}

const SECRET: &str = "canary-secret-5b1d";

/// Runs `sub` (supervise or init) with credentials in execgate's environment; the session
/// writes everything it can read of environments to a file, returned.
fn environment_seen(sub: &str, extra: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let seen = dir.path().join("env.txt");
    let script = format!(
        "{{ env; tr '\\0' '\\n' < /proc/self/environ; \
         cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n'; }} > {}",
        seen.display()
    );
    let mut args = vec![sub, "--no-default-rules"];
    args.extend_from_slice(extra);
    args.extend(["--workdir", dir.path().to_str().unwrap()]);
    args.extend(["--", "bash", "-c", &script]);
    let out = execgate(
        &args,
        &[
            ("OPENAI_API_KEY", SECRET),
            ("GH_TOKEN", SECRET),
            ("MY_PASSWORD", SECRET),
            ("EXECGATE_PLAIN_VALUE", "plain-visible"),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    fs::read_to_string(&seen).unwrap()
}

#[test]
fn credentials_in_execgates_environment_do_not_reach_a_session() {
    skip_unless!(supervisor_unavailable());
    for sub in ["supervise", "init"] {
        let seen = environment_seen(sub, &[]);
        assert!(!seen.contains(SECRET), "{sub}: {seen}");
        assert!(
            seen.contains("EXECGATE_PLAIN_VALUE=plain-visible"),
            "{seen}"
        );
        assert!(seen.contains("PATH="), "{seen}");

        let seen = environment_seen(sub, &["--pass-env", "OPENAI_API_KEY"]);
        assert!(seen.contains(&format!("OPENAI_API_KEY={SECRET}")), "{seen}");
        assert!(!seen.contains(&format!("GH_TOKEN={SECRET}")), "{seen}");
    }
    let seen = environment_seen("supervise", &["--inherit-env", "core"]);
    assert!(!seen.contains("EXECGATE_PLAIN_VALUE"), "{seen}");
    assert!(seen.contains("PATH="), "{seen}");
}

/// The help block of `--flag` in `help`: its line and the indented lines under it.
fn flag_help(help: &str, flag: &str) -> Option<String> {
    let mut lines = help.lines().skip_while(|l| {
        let l = l.trim_start();
        !(l.starts_with('-')
            && l.split([' ', ','])
                .any(|word| word == flag || word.starts_with(&format!("{flag}="))))
    });
    let first = lines.next()?;
    let mut block = vec![first.to_owned()];
    block.extend(
        lines
            .take_while(|l| !l.trim_start().starts_with('-') && !l.trim().is_empty())
            .map(str::to_owned),
    );
    Some(block.join("\n"))
}

#[test]
fn supervise_init_and_mcp_share_one_help_text_per_session_flag() {
    let help = |sub: &str| {
        let out = execgate(&[sub, "--help"], &[]);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let (supervise, init, mcp) = (help("supervise"), help("init"), help("mcp"));
    for flag in [
        "--rules",
        "--no-default-rules",
        "--sandbox",
        "--writable-root",
        "--network",
        "--require-sandbox",
        "--inherit-env",
        "--pass-env",
        "--limit",
        "--audit",
        "--backend",
        "--patched-bash",
    ] {
        let block = flag_help(&supervise, flag).unwrap_or_else(|| panic!("{flag}: {supervise}"));
        assert_eq!(flag_help(&init, flag).as_ref(), Some(&block), "{flag}");
        assert_eq!(flag_help(&mcp, flag).as_ref(), Some(&block), "{flag}");
    }
}

#[test]
fn flag_help_finds_a_flags_block() {
    let help = "Give --rules first.\nOptions:\n  -r, --rules <PATH>\n          A rules file\n          more\n\n      --network\n          net\n";
    assert_eq!(
        flag_help(help, "--rules").unwrap(),
        "  -r, --rules <PATH>\n          A rules file\n          more"
    );
    assert!(flag_help(help, "--nope").is_none());
}

/// Logs: `RUST_LOG` is honoured as `EXECGATE_LOG` is (the latter wins), and a stderr that
/// is not a terminal gets no colour codes (an MCP client's log capture, a file).
#[test]
fn logs_follow_rust_log_without_colour_codes_on_a_pipe() {
    skip_unless!(supervisor_unavailable());
    let args = ["supervise", "--no-default-rules", "--", "true"];
    let quiet = execgate(&args, &[]);
    assert!(quiet.status.success(), "{}", stderr(&quiet));
    assert!(
        !stderr(&quiet).contains("DEBUG"),
        "debug lines without asking: {}",
        stderr(&quiet)
    );
    let debug = execgate(&args, &[("RUST_LOG", "debug")]);
    let text = stderr(&debug);
    assert!(text.contains("DEBUG"), "RUST_LOG=debug ignored: {text}");
    assert!(!text.contains('\u{1b}'), "colour codes on a pipe: {text:?}");
    let overridden = execgate(&args, &[("RUST_LOG", "debug"), ("EXECGATE_LOG", "warn")]);
    assert!(
        !stderr(&overridden).contains("DEBUG"),
        "EXECGATE_LOG did not win over RUST_LOG: {}",
        stderr(&overridden)
    );
}

/// Session start names allow rules that hand out a shell outside the sandbox, once, with
/// file:line, as `check` does; a plain rules file gets no warning.
#[test]
fn session_start_names_allow_rules_that_hand_out_a_shell() {
    skip_unless!(supervisor_unavailable());
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/rules");
    let risky = format!("{fixtures}/lint/hands-out-a-shell.rules");
    let out = execgate(
        &[
            "supervise",
            "--no-default-rules",
            "-r",
            &risky,
            "--",
            "true",
        ],
        &[],
    );
    let text = stderr(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("{risky}:5")) && text.contains("warning"),
        "the bare `bash` allow rule (line 5) was not named: {text}"
    );
    assert_eq!(
        text.matches(&format!("{risky}:5")).count(),
        1,
        "named more than once: {text}"
    );
    let plain = format!("{fixtures}/supervise/true.rules");
    let quiet = execgate(
        &[
            "supervise",
            "--no-default-rules",
            "-r",
            &plain,
            "--",
            "true",
        ],
        &[],
    );
    assert!(!stderr(&quiet).contains("warning"), "{}", stderr(&quiet));
}

/// Shell completions and the manual come from the same definitions as `--help`: a flag
/// added to a session is completed and documented without anyone remembering to.
#[test]
fn completions_and_the_manual_cover_every_subcommand_and_session_flag() {
    let bash = execgate(&["completions", "bash"], &[]);
    assert!(bash.status.success(), "{}", stderr(&bash));
    let script = String::from_utf8_lossy(&bash.stdout).into_owned();
    for word in [
        "supervise",
        "mcp",
        "init",
        "check",
        "doctor",
        "--allow-unix-socket",
        "--prompt-timeout",
    ] {
        assert!(script.contains(word), "bash completion lacks {word}");
    }
    let parsed = Command::new("bash")
        .args(["-n", "-c", &script])
        .output()
        .expect("run bash -n");
    assert!(
        parsed.status.success(),
        "{}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    let man = execgate(&["man"], &[]);
    assert!(man.status.success(), "{}", stderr(&man));
    let roff = String::from_utf8_lossy(&man.stdout);
    assert!(
        roff.starts_with(".ie") || roff.starts_with(".TH"),
        "not roff: {roff:.200}"
    );
    for section in [
        "EXECGATE SUPERVISE",
        "EXECGATE MCP",
        "EXECGATE INIT",
        "EXECGATE CHECK",
    ] {
        assert!(
            roff.contains(&format!(".SH \"{section}\"")),
            "no section {section}"
        );
    }
    assert!(
        roff.contains("allow\\-unix\\-socket"),
        "the manual lacks --allow-unix-socket"
    );
}

/// `doctor` says whether unix sockets are held with the network off (and why not).
#[test]
fn doctor_says_how_unix_sockets_are_held() {
    skip_unless!(supervisor_unavailable());
    let out = execgate(&["doctor"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("unix sockets with the network off: decided"),
        "{text}"
    );
}

//! The session's own terminal (#15.4, sudo's use_pty), attacked and used on a real
//! pseudo-terminal: the test's driver holds the "person's" terminal (its slave, as a
//! person's shell would) and observes from outside the session: the terminal's settings
//! (tcgetattr) before and after, which processes of the tree hold a descriptor of it
//! (/proc/PID/fd device numbers), and files a background reader of the session writes.

#![cfg(target_os = "linux")]

use std::process::Command;

mod common;
use common::Scratch;

mod attack_harness;
use attack_harness::{
    Backend, Canary, PtyRun, Unotify, Wrapper, drive_pty, drive_pty_holding, sh_quote,
    skip_unless_available, supervise_command,
};

const QUESTION: &str = "[y/a/n]: ";

fn session(s: &Scratch, b: Backend, rules: &[&str], args: &[&str], script: &str) -> Command {
    supervise_command(s, b, rules, args, script)
}

fn holders(run: &PtyRun) -> Vec<serde_json::Value> {
    run.report["holders"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// `stty -echo raw` (and a python tcsetattr) in the session: the person's terminal keeps
/// exactly the settings it had before execgate started.
fn terminal_settings_survive_the_session(b: Backend) {
    skip_unless_available!(b);
    let s = Scratch::new();
    let script = "stty -echo raw -isig; \
                  python3 -c 'import termios; a = termios.tcgetattr(0); a[3] = 0; \
                  termios.tcsetattr(0, termios.TCSANOW, a)'; echo changed=$?";
    let run = drive_pty_holding(&session(&s, b, &[], &[], script), 30, &[]);
    assert!(run.transcript.contains("changed=0"), "{run:#?}");
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert!(run.report["before"].is_string(), "{run:#?}");
    assert_eq!(
        run.report["before"], run.report["after"],
        "the session changed the person's terminal settings: {run:#?}"
    );
}

#[test]
fn terminal_settings_survive_the_session_unotify() {
    terminal_settings_survive_the_session(Unotify)
}
#[test]
fn terminal_settings_survive_the_session_wrapper() {
    terminal_settings_survive_the_session(Wrapper)
}

/// The session's terminal is not the person's, and while it runs no process below
/// execgate holds a descriptor of the person's terminal.
fn the_tree_holds_no_descriptor_of_the_persons_terminal(b: Backend) {
    skip_unless_available!(b);
    let s = Scratch::new();
    let script = "echo \"tty=$(tty) fd0=$(readlink /proc/self/fd/0)\"; \
                  (sleep 30 < /dev/tty > /dev/tty 2>&1 &); echo sleeping; sleep 4; echo done";
    let run = drive_pty_holding(
        &session(&s, b, &[], &[], script),
        40,
        &[("sleeping", "holders:")],
    );
    let name = run.report["name"].as_str().expect("the driver's terminal");
    assert!(run.transcript.contains("tty=/dev/pts/"), "{run:#?}");
    assert!(
        !run.transcript.contains(&format!("tty={name} ")),
        "the session's terminal is the person's: {run:#?}"
    );
    assert!(!run.transcript.contains(&format!("fd0={name}")), "{run:#?}");
    let seen = holders(&run);
    assert_eq!(seen.len(), 1, "{run:#?}");
    assert!(
        seen[0]["checked"].as_u64().unwrap_or(0) >= 2,
        "no tree to look at: {run:#?}"
    );
    assert_eq!(
        seen[0]["holding"],
        serde_json::json!([]),
        "processes of the tree hold the person's terminal: {run:#?}"
    );
    assert!(run.transcript.contains("done"), "{run:#?}");
    assert_eq!(run.code, Some(0), "{run:#?}");
}

#[test]
fn the_tree_holds_no_descriptor_of_the_persons_terminal_unotify() {
    the_tree_holds_no_descriptor_of_the_persons_terminal(Unotify)
}
#[test]
fn the_tree_holds_no_descriptor_of_the_persons_terminal_wrapper() {
    the_tree_holds_no_descriptor_of_the_persons_terminal(Wrapper)
}

/// Background readers of the session, waiting on its terminal when a question comes, get
/// nothing the person types at the question: the answer reaches the question (the canary
/// is touched) and no reader wrote what it read.
fn background_readers_do_not_get_the_answer(b: Backend) {
    skip_unless_available!(b);
    let (s, c) = (Scratch::new(), Canary::new());
    let work = s.work.to_str().unwrap();
    let script = format!(
        "exec 3<&0; \
         for i in 1 2 3 4 5 6; do (IFS= read -r line < /dev/tty && echo \"$line\" > {w}/stolen-$i) & done; \
         (IFS= read -r line <&3 && echo \"$line\" > {w}/stolen-stdin) & \
         sleep 1; touch {}; echo \"touch=$?\"",
        sh_quote(&c.p("asked")),
        w = sh_quote(work),
    );
    let run = drive_pty_holding(
        &session(&s, b, &["prompt.rules"], &[], &script),
        40,
        &[(QUESTION, "type:y\n")],
    );
    let stolen: Vec<_> = std::fs::read_dir(&s.work)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("stolen"))
        .map(|e| {
            (
                e.file_name(),
                std::fs::read_to_string(e.path()).unwrap_or_default(),
            )
        })
        .collect();
    assert!(
        stolen.is_empty(),
        "the session read what was typed at the question: {stolen:?} {run:#?}"
    );
    assert!(
        c.path("asked").exists(),
        "the answer did not reach the question: {run:#?}"
    );
    assert!(run.transcript.contains("touch=0"), "{run:#?}");
}

#[test]
fn background_readers_do_not_get_the_answer_unotify() {
    background_readers_do_not_get_the_answer(Unotify)
}
#[test]
fn background_readers_do_not_get_the_answer_wrapper() {
    background_readers_do_not_get_the_answer(Wrapper)
}

/// Normal use through the relay: a line typed to `read`, Ctrl-C ending a `sleep` with 130,
/// the exit status kept, an escalated command's output on the person's screen, and the
/// person's settings back afterwards.
fn normal_use_goes_through_the_relay(b: Backend) {
    skip_unless_available!(b);
    let (s, c) = (Scratch::new(), Canary::new());
    std::fs::write(c.path("listed-by-escalated-ls"), "").unwrap();
    let script = format!(
        "ls {}; echo ready; read x; echo \"got $x\"; exit 7",
        sh_quote(&c.p(""))
    );
    let run = drive_pty_holding(
        &session(&s, b, &["ls.rules"], &[], &script),
        30,
        &[("ready", "type:hello there\n")],
    );
    assert!(
        run.transcript.contains("listed-by-escalated-ls"),
        "the escalated command's output did not show: {run:#?}"
    );
    assert!(run.transcript.contains("got hello there"), "{run:#?}");
    assert_eq!(run.code, Some(7), "{run:#?}");
    assert_eq!(run.report["before"], run.report["after"], "{run:#?}");

    let run = drive_pty_holding(
        &session(&s, b, &[], &[], "echo ready; sleep 100; echo after"),
        30,
        &[("ready", "type:\\x03")],
    );
    assert_eq!(run.code, Some(130), "{run:#?}");
    assert!(run.seconds < 15.0, "{run:#?}");
    assert!(!run.transcript.contains("after"), "{run:#?}");
    assert_eq!(run.report["before"], run.report["after"], "{run:#?}");
}

#[test]
fn normal_use_goes_through_the_relay_unotify() {
    normal_use_goes_through_the_relay(Unotify)
}
#[test]
fn normal_use_goes_through_the_relay_wrapper() {
    normal_use_goes_through_the_relay(Wrapper)
}

/// The escalated copy's descriptors come from the caller's (pidfd_getfd): with the
/// session's own terminal, they are its slave, never the person's terminal; while the copy
/// runs no process below execgate holds the person's terminal.
#[test]
fn an_escalated_command_gets_the_sessions_terminal() {
    skip_unless_available!(Unotify);
    let (s, c) = (Scratch::new(), Canary::new());
    std::fs::write(c.path("f"), "").unwrap();
    // `ls -R /proc/self/fd/`: the escalated ls lists its own descriptors' targets.
    let script = format!(
        "ls -l /proc/self/fd/ {}; echo listed; sleep 3",
        sh_quote(&c.p(""))
    );
    let run = drive_pty_holding(
        &session(&s, Unotify, &["ls.rules"], &[], &script),
        30,
        &[("listed", "holders:")],
    );
    let name = run.report["name"].as_str().expect("the driver's terminal");
    assert!(run.transcript.contains(" 0 -> /dev/pts/"), "{run:#?}");
    assert!(
        !run.transcript.contains(&format!("-> {name}\r")),
        "the escalated copy got the person's terminal: {run:#?}"
    );
    assert_eq!(
        holders(&run)[0]["holding"],
        serde_json::json!([]),
        "{run:#?}"
    );
}

/// An escalated copy runs outside the sandbox but must not reach the person's terminal
/// either: it has no controlling terminal (`/dev/tty` fails), so what it writes there
/// cannot bypass the relay. The session's own output goes to /dev/null here: a marker on
/// the person's screen could only have come through `/dev/tty`.
fn escalated_command_cannot_open_the_persons_terminal(b: Backend) {
    skip_unless_available!(b);
    let s = Scratch::new();
    let script = "sh -c 'echo MARKER-THROUGH-TTY > /dev/tty' > /dev/null 2>&1; echo done-here";
    let run = drive_pty(&session(&s, b, &["sh.rules"], &[], script), 30, &[]);
    assert!(run.transcript.contains("done-here"), "{run:#?}");
    assert!(
        !run.transcript.contains("MARKER-THROUGH-TTY"),
        "escaped: an escalated command wrote on the person's terminal: {run:#?}"
    );
}

#[test]
fn an_escalated_command_cannot_open_the_persons_terminal_unotify() {
    escalated_command_cannot_open_the_persons_terminal(Unotify)
}
#[test]
fn an_escalated_command_cannot_open_the_persons_terminal_wrapper() {
    escalated_command_cannot_open_the_persons_terminal(Wrapper)
}

/// `--pty never`: the old shared terminal, kept for whoever needs it: the session's
/// terminal is the person's.
#[test]
fn pty_never_shares_the_terminal() {
    skip_unless_available!(Unotify);
    let s = Scratch::new();
    let run = drive_pty_holding(
        &session(&s, Unotify, &[], &["--pty", "never"], "echo \"tty=$(tty)\""),
        30,
        &[],
    );
    let name = run.report["name"].as_str().expect("the driver's terminal");
    assert!(run.transcript.contains(&format!("tty={name}")), "{run:#?}");
}

/// Ctrl-Z under a job-control shell: execgate stops with its session (the shell says
/// "Stopped", $? is 148, the person's settings are back for the shell), and `fg` continues
/// both: the session's program finishes.
#[test]
fn ctrl_z_suspends_execgate_with_its_session() {
    skip_unless_available!(Unotify);
    let s = Scratch::new();
    let cmd = session(&s, Unotify, &[], &[], "echo ready; sleep 2; echo after");
    let script = format!(
        "cd {}; {}; echo \"status=$?\"; stty -a | grep -o -- '-icanon' || echo cooked; fg; echo \"fg=$?\"",
        sh_quote(s.work.to_str().unwrap()),
        command_line(&cmd)
    );
    let mut shell = Command::new("/bin/bash");
    shell.args(["--norc", "--noprofile", "-i", "-c", &script]);
    let run = attack_harness::drive_pty(&shell, 30, &[("ready", "type:\\x1a")]);
    assert!(run.transcript.contains("Stopped"), "{run:#?}");
    assert!(run.transcript.contains("status=148"), "{run:#?}");
    assert!(
        run.transcript.contains("cooked"),
        "the shell got its terminal back in raw mode: {run:#?}"
    );
    assert!(run.transcript.contains("after"), "{run:#?}");
    assert!(run.transcript.contains("fg=0"), "{run:#?}");
}

/// The person's settings come back on every way out: SIGTERM to execgate (143), and
/// `--timeout` killing the tree (124), whatever the session set on its own terminal.
#[test]
fn the_persons_settings_come_back_after_sigterm_and_timeout() {
    skip_unless_available!(Unotify);
    let s = Scratch::new();
    let script = "stty -echo raw; echo ready; sleep 100";
    let run = drive_pty_holding(
        &session(&s, Unotify, &[], &[], script),
        30,
        &[("ready", "signal:TERM")],
    );
    assert_eq!(run.code, Some(143), "{run:#?}");
    assert_eq!(run.report["before"], run.report["after"], "{run:#?}");

    let run = drive_pty_holding(
        &session(&s, Unotify, &[], &["--timeout", "2"], script),
        30,
        &[],
    );
    assert_eq!(run.code, Some(124), "{run:#?}");
    assert!(run.transcript.contains("timed out"), "{run:#?}");
    assert_eq!(run.report["before"], run.report["after"], "{run:#?}");
}

/// `execgate init` (PID 1 of a container started with a terminal) gives its command a
/// terminal of its own too.
#[test]
fn init_gives_the_command_its_own_terminal() {
    skip_unless_available!(Unotify);
    let s = Scratch::new();
    let mut cmd = Command::new(common::EXECGATE);
    cmd.args([
        "init",
        "--no-default-rules",
        "--",
        "bash",
        "-c",
        "stty -echo raw; echo \"tty=$(tty)\"",
    ])
    .current_dir(&s.work);
    let run = drive_pty_holding(&cmd, 30, &[]);
    let name = run.report["name"].as_str().expect("the driver's terminal");
    assert!(run.transcript.contains("tty=/dev/pts/"), "{run:#?}");
    assert!(!run.transcript.contains(&format!("tty={name}")), "{run:#?}");
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert_eq!(run.report["before"], run.report["after"], "{run:#?}");
}

/// A shell command line for `cmd` (its program and arguments, quoted).
fn command_line(cmd: &Command) -> String {
    let mut line: Vec<String> = vec![sh_quote(cmd.get_program().to_str().unwrap())];
    line.extend(cmd.get_args().map(|a| sh_quote(a.to_str().unwrap())));
    line.join(" ")
}

/// The person's terminal by its path (`/dev/pts/N`; `PERSON_TTY`, the name the driver
/// gives it, stands for what an attacker finds by trying each): the session opens it and
/// changes its keys; the person's settings, read while the session still runs (the relay
/// puts them back at the end), did not change. (Only that one: other tests' terminals,
/// made after this session started, are not hidden.)
fn other_terminals_cannot_be_opened_by_path(b: Backend) {
    skip_unless_available!(b);
    let s = Scratch::new();
    let script = "echo ready; sleep 2; test -n \"$PERSON_TTY\" || exit 9; \
                  stty intr ^A eof ^B erase ^X < \"$PERSON_TTY\" && echo reached; \
                  echo tried; sleep 2";
    let run = drive_pty_holding(
        &session(&s, b, &[], &[], script),
        30,
        &[("ready", "termios:ready"), ("tried", "termios:tried")],
    );
    assert!(run.transcript.contains("tried"), "{run:#?}");
    assert!(run.report["ready"].is_string(), "{run:#?}");
    assert_eq!(
        run.report["ready"], run.report["tried"],
        "the session changed the person's terminal by its path: {run:#?}"
    );
    assert_eq!(run.report["before"], run.report["after"], "{run:#?}");
}

#[test]
fn other_terminals_cannot_be_opened_by_path_unotify() {
    other_terminals_cannot_be_opened_by_path(Unotify)
}
#[test]
fn other_terminals_cannot_be_opened_by_path_wrapper() {
    other_terminals_cannot_be_opened_by_path(Wrapper)
}

/// With stdin, stdout and stderr redirected (no terminal among them) the session still
/// starts from a person's terminal: it has no controlling terminal (`/dev/tty` fails), no
/// descriptor of the person's terminal, and cannot reach it by path either.
fn without_a_terminal_on_stdio_the_session_has_none(b: Backend) {
    skip_unless_available!(b);
    let s = Scratch::new();
    let script = "stty -echo raw -isig < /dev/tty && echo reached-dev-tty; \
                  test -n \"$PERSON_TTY\" || exit 9; \
                  stty -echo raw -isig < \"$PERSON_TTY\" && echo reached-by-path; \
                  echo tried; sleep 3";
    let out = s.io.join("out");
    let line = format!(
        "{} < /dev/null > {} 2>&1",
        command_line(&session(&s, b, &[], &[], script)),
        sh_quote(out.to_str().unwrap())
    );
    let mut shell = Command::new("/bin/sh");
    shell.args(["-c", &line]).current_dir(&s.work);
    let run = drive_pty_holding(&shell, 30, &[("", "holders:")]);
    let printed = std::fs::read_to_string(&out).unwrap_or_default();
    assert!(printed.contains("tried"), "{printed} {run:#?}");
    assert!(!printed.contains("reached-dev-tty"), "{printed} {run:#?}");
    assert_eq!(
        run.report["before"], run.report["after"],
        "the session changed the person's terminal: {printed} {run:#?}"
    );
    let seen = holders(&run);
    assert_eq!(seen[0]["holding"], serde_json::json!([]), "{run:#?}");
    assert_eq!(run.code, Some(0), "{printed} {run:#?}");
}

#[test]
fn without_a_terminal_on_stdio_the_session_has_none_unotify() {
    without_a_terminal_on_stdio_the_session_has_none(Unotify)
}
#[test]
fn without_a_terminal_on_stdio_the_session_has_none_wrapper() {
    without_a_terminal_on_stdio_the_session_has_none(Wrapper)
}

/// Only stdin on the terminal, opened read-only (`< /dev/tty`), stdout and stderr in a
/// file: the session's stdin is its own terminal, what it writes to `/dev/tty` shows on
/// the person's, and a line typed there reaches it.
#[test]
fn only_stdin_on_the_terminal_still_relays_both_ways() {
    skip_unless_available!(Unotify);
    let s = Scratch::new();
    let out = s.io.join("out");
    let inner = session(
        &s,
        Unotify,
        &[],
        &[],
        "echo to-tty > /dev/tty; read x; echo \"got $x\"",
    );
    let line = format!(
        "{} < /dev/tty > {} 2>&1",
        command_line(&inner),
        sh_quote(out.to_str().unwrap())
    );
    let mut shell = Command::new("/bin/sh");
    shell.args(["-c", &line]).current_dir(&s.work);
    let run = attack_harness::drive_pty(&shell, 30, &[("to-tty", "type:hello\n")]);
    let printed = std::fs::read_to_string(&out).unwrap_or_default();
    assert!(printed.contains("got hello"), "{printed} {run:#?}");
    assert_eq!(run.code, Some(0), "{printed} {run:#?}");
}

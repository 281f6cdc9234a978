//! The terminal prompt of `execgate supervise` (issues #15.4, #15.9, #16.8), on a real
//! pseudo-terminal: execgate is the session leader of a fresh pty (python's `pty`), the test
//! reads what the person would see and types (or signals) as a person would. The prompted
//! program is `touch` under a `prompt` rule (tests/fixtures/rules/attack/prompt.rules), so a
//! "yes" escalates it; its canary lives outside every writable root, and whether it exists
//! is the effect each test checks.

#![cfg(target_os = "linux")]

use std::process::{Command, Stdio};
use std::time::Instant;

mod common;
use common::Scratch;

mod attack_harness;
use attack_harness::{
    Backend, Canary, Unotify, Wrapper, sh_quote, skip_unless_available, supervise_command,
};

/// Runs CMD (argv, env, cwd of a `Command`) as the session leader of a fresh pty. Steps are
/// (cue, action): once the terminal showed `cue` (after the previous cue's place), `action`
/// is done a second later: `type:TEXT` types TEXT (`\n`, `\x03` understood), `signal:TERM`
/// sends SIGTERM to execgate. Killed after `limit` seconds.
const DRIVER: &str = r#"
import json, os, pty, select, signal, sys, time
spec = json.loads(sys.argv[1])
pid, fd = pty.fork()
if pid == 0:
    os.chdir(spec["cwd"])
    env = dict(os.environ)
    env.update(spec["env"])
    os.execve(spec["argv"][0], spec["argv"], env)
out = b""
pos = 0
step = 0
steps = spec["steps"]
deadline = time.time() + spec["limit"]
code = None
while True:
    if time.time() > deadline:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        break
    r, _, _ = select.select([fd], [], [], 0.1)
    if r:
        try:
            d = os.read(fd, 4096)
        except OSError:
            d = b""
        if not d:
            _, st = os.waitpid(pid, 0)
            code = os.waitstatus_to_exitcode(st)
            break
        out += d
    while step < len(steps):
        cue, action = steps[step]
        at = out.find(cue.encode(), pos)
        if at < 0:
            break
        pos = at + len(cue)
        time.sleep(1.0)
        kind, _, arg = action.partition(":")
        if kind == "type":
            os.write(fd, arg.encode().decode("unicode_escape").encode())
        elif kind == "signal":
            os.kill(pid, getattr(signal, "SIG" + arg))
        step += 1
sys.stdout.buffer.write(b"CODE=" + str(code).encode() + b"\n" + out)
"#;

#[derive(Debug)]
struct Screen {
    code: Option<i32>,
    text: String,
    seconds: f64,
}

fn on_pty(cmd: &Command, limit: u32, steps: &[(&str, &str)]) -> Screen {
    let mut argv = vec![cmd.get_program().to_str().unwrap().to_owned()];
    argv.extend(cmd.get_args().map(|a| a.to_str().unwrap().to_owned()));
    let env: serde_json::Map<String, serde_json::Value> = cmd
        .get_envs()
        .filter_map(|(k, v)| Some((k.to_str()?.to_owned(), v?.to_str()?.into())))
        .collect();
    let spec = serde_json::json!({
        "argv": argv,
        "env": env,
        "cwd": cmd.get_current_dir().unwrap(),
        "steps": steps,
        "limit": limit,
    });
    let started = Instant::now();
    let out = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(DRIVER)
        .arg(spec.to_string())
        .stdin(Stdio::null())
        .output()
        .expect("python3 pty driver");
    let all = String::from_utf8_lossy(&out.stdout).into_owned();
    let (first, rest) = all.split_once('\n').unwrap_or((&all, ""));
    Screen {
        code: first.strip_prefix("CODE=").and_then(|c| c.parse().ok()),
        text: format!(
            "{rest}\n[driver stderr] {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        seconds: started.elapsed().as_secs_f64(),
    }
}

const QUESTION: &str = "[y/a/n]: ";

fn session(s: &Scratch, b: Backend, args: &[&str], script: &str) -> Command {
    supervise_command(s, b, &["prompt.rules"], args, script)
}

fn touch(c: &Canary, name: &str) -> String {
    format!("touch {}; echo \"touch=$?\"", sh_quote(&c.p(name)))
}

fn yes_runs_it(b: Backend) {
    skip_unless_available!(b);
    let (s, c) = (Scratch::new(), Canary::new());
    let screen = on_pty(
        &session(&s, b, &[], &touch(&c, "yes")),
        30,
        &[(QUESTION, "type:y\n")],
    );
    println!("{}", screen.text);
    assert!(c.path("yes").exists(), "{screen:#?}");
    assert!(screen.text.contains("touch=0"), "{screen:#?}");
    assert!(screen.text.contains("OUTSIDE the sandbox"), "{screen:#?}");
    assert_eq!(screen.code, Some(0), "{screen:#?}");
}

#[test]
fn yes_runs_it_unotify() {
    yes_runs_it(Unotify)
}
#[test]
fn yes_runs_it_wrapper() {
    yes_runs_it(Wrapper)
}

fn no_denies_it(b: Backend) {
    skip_unless_available!(b);
    let (s, c) = (Scratch::new(), Canary::new());
    let screen = on_pty(
        &session(&s, b, &[], &touch(&c, "no")),
        30,
        &[(QUESTION, "type:n\n")],
    );
    assert!(!c.path("no").exists(), "{screen:#?}");
    assert!(screen.text.contains("touch=126"), "{screen:#?}");
    assert_eq!(screen.code, Some(0), "{screen:#?}");
}

#[test]
fn no_denies_it_unotify() {
    no_denies_it(Unotify)
}
#[test]
fn no_denies_it_wrapper() {
    no_denies_it(Wrapper)
}

/// "always" covers this exact command line for the rest of the session, nothing else.
#[test]
fn always_covers_only_this_exact_command_line() {
    skip_unless_available!(Unotify);
    let (s, c) = (Scratch::new(), Canary::new());
    // The canary lives outside every writable root: only an escalated (approved) touch
    // can create it, and each run prints its status.
    let script = format!(
        "{}; {}; {}",
        touch(&c, "a"),
        touch(&c, "a"),
        touch(&c, "other"),
    );
    let screen = on_pty(
        &session(&s, Unotify, &[], &script),
        40,
        &[(QUESTION, "type:a\n"), (QUESTION, "type:n\n")],
    );
    assert!(
        screen
            .text
            .contains("a = always: this exact command line, until this session ends"),
        "{screen:#?}"
    );
    assert_eq!(
        screen.text.matches(QUESTION).count(),
        2,
        "asked again for the same command line, or not for another one: {screen:#?}"
    );
    assert!(c.path("a").exists(), "{screen:#?}");
    assert_eq!(
        screen.text.matches("touch=0").count(),
        2,
        "the second run of the same command line was not allowed: {screen:#?}"
    );
    assert!(!c.path("other").exists(), "{screen:#?}");
}

/// Ctrl-C at the question: denied, and the session ends (130) at once.
#[test]
fn ctrl_c_at_the_question_denies_and_ends_the_session() {
    skip_unless_available!(Unotify);
    let (s, c) = (Scratch::new(), Canary::new());
    let script = format!("{}; touch {}", touch(&c, "int"), sh_quote(&c.p("after")));
    let screen = on_pty(
        &session(&s, Unotify, &[], &script),
        30,
        &[(QUESTION, "type:\\x03")],
    );
    assert_eq!(screen.code, Some(130), "{screen:#?}");
    assert!(screen.text.contains("interrupted: denied"), "{screen:#?}");
    assert!(
        !c.path("int").exists() && !c.path("after").exists(),
        "{screen:#?}"
    );
    assert!(screen.seconds < 15.0, "{screen:#?}");
}

/// SIGTERM while a question waits: denied, execgate ends (143) without Enter pressed.
#[test]
fn sigterm_at_the_question_ends_the_session() {
    skip_unless_available!(Unotify);
    let (s, c) = (Scratch::new(), Canary::new());
    let screen = on_pty(
        &session(&s, Unotify, &[], &touch(&c, "term")),
        30,
        &[(QUESTION, "signal:TERM")],
    );
    assert_eq!(screen.code, Some(143), "{screen:#?}");
    assert!(!c.path("term").exists(), "{screen:#?}");
    assert!(screen.seconds < 15.0, "{screen:#?}");
}

/// A typo is not a "no": the question is asked again, and the next answer counts.
#[test]
fn a_typo_asks_again() {
    skip_unless_available!(Unotify);
    let (s, c) = (Scratch::new(), Canary::new());
    let screen = on_pty(
        &session(&s, Unotify, &[], &touch(&c, "typo")),
        30,
        &[(QUESTION, "type:yy\n"), ("is not an answer", "type:y\n")],
    );
    assert!(screen.text.contains("`yy` is not an answer"), "{screen:#?}");
    assert!(c.path("typo").exists(), "{screen:#?}");
    assert_eq!(screen.code, Some(0), "{screen:#?}");
}

/// Nobody answers within --prompt-timeout: denied with a message, the session goes on.
#[test]
fn an_unanswered_question_times_out_as_no() {
    skip_unless_available!(Unotify);
    let (s, c) = (Scratch::new(), Canary::new());
    let screen = on_pty(
        &session(&s, Unotify, &["--prompt-timeout", "2"], &touch(&c, "late")),
        30,
        &[],
    );
    assert!(
        screen.text.contains("no answer within 2s: denied"),
        "{screen:#?}"
    );
    assert!(screen.text.contains("touch=126"), "{screen:#?}");
    assert!(!c.path("late").exists(), "{screen:#?}");
    assert_eq!(screen.code, Some(0), "{screen:#?}");
}

/// What was typed before the question showed (by a person, or pushed by the session)
/// cannot answer it: it is discarded, and the question then times out as "no".
#[test]
fn input_typed_before_the_question_does_not_answer_it() {
    skip_unless_available!(Unotify);
    let (s, c) = (Scratch::new(), Canary::new());
    let script = format!("sleep 3; {}", touch(&c, "early"));
    let screen = on_pty(
        &session(&s, Unotify, &["--prompt-timeout", "3"], &script),
        30,
        &[("", "type:y\n")],
    );
    assert!(screen.text.contains(QUESTION), "{screen:#?}");
    assert!(
        !c.path("early").exists(),
        "the early `y` answered: {screen:#?}"
    );
    assert!(screen.text.contains("touch=126"), "{screen:#?}");
}

/// Escape sequences in an argument are shown, not obeyed: they cannot repaint the question.
#[test]
fn escape_sequences_in_arguments_are_shown_escaped() {
    skip_unless_available!(Unotify);
    let (s, c) = (Scratch::new(), Canary::new());
    let script = format!(
        "touch {} \"$(printf 'x\\033[2K\\rsafe')\"; echo \"touch=$?\"",
        sh_quote(&c.p("esc"))
    );
    let screen = on_pty(
        &session(&s, Unotify, &[], &script),
        30,
        &[(QUESTION, "type:n\n")],
    );
    let question = &screen.text[..screen.text.find(QUESTION).expect("asked")];
    assert!(!question.contains('\u{1b}'), "{screen:#?}");
    assert!(question.contains("x\\e[2K\\rsafe"), "{screen:#?}");
    assert!(!c.path("esc").exists(), "{screen:#?}");
}

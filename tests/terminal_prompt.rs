//! The terminal prompt of `execgate supervise` (issues #15.4, #15.9, #16.8), on a real
//! pseudo-terminal: execgate is the session leader of a fresh pty (python's `pty`), the test
//! reads what the person would see and types (or signals) as a person would. The prompted
//! program is `touch` under a `prompt` rule (tests/fixtures/rules/attack/prompt.rules), so a
//! "yes" escalates it; its canary lives outside every writable root, and whether it exists
//! is the effect each test checks.

#![cfg(target_os = "linux")]

use std::process::Command;

mod common;
use common::Scratch;

mod attack_harness;
use attack_harness::{
    Backend, Canary, Unotify, Wrapper, sh_quote, skip_unless_available, supervise_command,
};

const QUESTION: &str = "[y/a/n]: ";

fn on_pty(cmd: &Command, limit: u32, steps: &[(&str, &str)]) -> attack_harness::PtyRun {
    attack_harness::drive_pty(cmd, limit, steps)
}

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
    println!("{}", screen.transcript);
    assert!(c.path("yes").exists(), "{screen:#?}");
    assert!(screen.transcript.contains("touch=0"), "{screen:#?}");
    assert!(
        screen.transcript.contains("OUTSIDE the sandbox"),
        "{screen:#?}"
    );
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
    assert!(screen.transcript.contains("touch=126"), "{screen:#?}");
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
            .transcript
            .contains("a = always: this exact command line, until this session ends"),
        "{screen:#?}"
    );
    assert_eq!(
        screen.transcript.matches(QUESTION).count(),
        2,
        "asked again for the same command line, or not for another one: {screen:#?}"
    );
    assert!(c.path("a").exists(), "{screen:#?}");
    assert_eq!(
        screen.transcript.matches("touch=0").count(),
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
    assert!(
        screen.transcript.contains("interrupted: denied"),
        "{screen:#?}"
    );
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
    assert!(
        screen.transcript.contains("`yy` is not an answer"),
        "{screen:#?}"
    );
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
        screen.transcript.contains("no answer within 2s: denied"),
        "{screen:#?}"
    );
    assert!(screen.transcript.contains("touch=126"), "{screen:#?}");
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
    assert!(screen.transcript.contains(QUESTION), "{screen:#?}");
    assert!(
        !c.path("early").exists(),
        "the early `y` answered: {screen:#?}"
    );
    assert!(screen.transcript.contains("touch=126"), "{screen:#?}");
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
    let question = &screen.transcript[..screen.transcript.find(QUESTION).expect("asked")];
    assert!(!question.contains('\u{1b}'), "{screen:#?}");
    assert!(question.contains("x\\e[2K\\rsafe"), "{screen:#?}");
    assert!(!c.path("esc").exists(), "{screen:#?}");
}

/// A question about an escalation names the caller's variables a "yes" passes on (the
/// `--escalate-env` names, values as the session set them, escaped), on both backends;
/// a "yes" then runs the program with exactly that value.
fn the_question_names_the_variables_it_passes(b: Backend) {
    skip_unless_available!(b);
    let (s, c) = (Scratch::new(), Canary::new());
    let script = format!(
        "export DEPLOY_TARGET=$'prod\\e[2K'; touch {}; echo \"touch=$?\"",
        sh_quote(&c.p("env"))
    );
    let screen = on_pty(
        &session(&s, b, &["--escalate-env", "DEPLOY_TARGET"], &script),
        30,
        &[(QUESTION, "type:y\n")],
    );
    assert!(
        screen
            .transcript
            .contains("passes:  DEPLOY_TARGET=prod\\e[2K  (--escalate-env)"),
        "the question did not name the passed variable, escaped: {screen:#?}"
    );
    assert!(screen.transcript.contains("touch=0"), "{screen:#?}");
    assert!(c.path("env").exists(), "{screen:#?}");
}

#[test]
fn the_question_names_the_variables_it_passes_unotify() {
    the_question_names_the_variables_it_passes(Unotify)
}
#[test]
fn the_question_names_the_variables_it_passes_wrapper() {
    the_question_names_the_variables_it_passes(Wrapper)
}

/// "r" at a question the heuristics asked stores the command as Codex's amendment line in
/// the --amend-rules file; the next session then runs it escalated without asking. `rm -f`
/// of a file outside every writable root is the effect: the sandboxed first run cannot
/// remove it, the escalated second run does.
#[test]
fn remember_writes_the_rule_and_the_next_session_does_not_ask() {
    skip_unless_available!(Unotify);
    let (s, c) = (Scratch::new(), Canary::new());
    let victim = c.path("victim");
    std::fs::write(&victim, "x").unwrap();
    let rules = c.path("amend/default.rules");
    let rules_arg = rules.to_str().unwrap();
    // A pipeline: the rule is the command asked about (rm), not another command of the
    // pipe (openai/codex#24596 derives it from the wrong one).
    let script = format!(
        "echo hi | rm -f {} | cat; echo \"rm=${{PIPESTATUS[1]}}\"",
        sh_quote(&c.p("victim"))
    );
    let first = on_pty(
        &supervise_command(&s, Unotify, &[], &["--amend-rules", rules_arg], &script),
        30,
        &[("[y/a/r/n]: ", "type:r\n")],
    );
    let line = format!(
        "prefix_rule(pattern=[\"rm\", \"-f\", {}], decision=\"allow\")\n",
        serde_json::to_string(&c.p("victim")).unwrap()
    );
    assert!(
        first
            .transcript
            .contains(&format!("also append to {rules_arg}")),
        "{first:#?}"
    );
    assert!(
        first.transcript.contains(line.trim_end()),
        "the question does not show the line: {first:#?}"
    );
    assert!(first.transcript.contains("added to"), "{first:#?}");
    assert_eq!(std::fs::read_to_string(&rules).unwrap(), line);
    // Approved for this session, inside the sandbox: the file outside is still there.
    assert!(victim.exists(), "{first:#?}");

    let second = on_pty(
        &supervise_command(&s, Unotify, &[], &["--amend-rules", rules_arg], &script),
        30,
        &[],
    );
    assert!(
        !second.transcript.contains("[y/a"),
        "asked again: {second:#?}"
    );
    assert!(second.transcript.contains("rm=0"), "{second:#?}");
    assert!(
        !victim.exists(),
        "the stored rule did not escalate it: {second:#?}"
    );
    // Nothing asked, nothing appended.
    assert_eq!(std::fs::read_to_string(&rules).unwrap(), line);
}

/// Without --amend-rules (and without the default rules), "r" is not offered and means
/// nothing: nothing is written anywhere.
#[test]
fn remember_is_not_offered_without_a_rules_file() {
    skip_unless_available!(Unotify);
    let (s, c) = (Scratch::new(), Canary::new());
    std::fs::write(c.path("victim"), "x").unwrap();
    let script = format!("rm -f {}; echo \"rm=$?\"", sh_quote(&c.p("victim")));
    let screen = on_pty(
        &supervise_command(&s, Unotify, &[], &[], &script),
        30,
        &[(QUESTION, "type:r\n"), ("[y/a/n]: ", "type:n\n")],
    );
    assert!(!screen.transcript.contains("remember"), "{screen:#?}");
    assert!(
        screen.transcript.contains("is not an answer"),
        "{screen:#?}"
    );
}

/// An --amend-rules file inside a writable root is refused: the agent could write it.
#[test]
fn an_amend_file_inside_a_writable_root_is_refused() {
    let s = Scratch::new();
    let inside = s.work.join(".codex/rules/default.rules");
    let out = Command::new(env!("CARGO_BIN_EXE_execgate"))
        .args(["supervise", "--no-default-rules", "--writable-root"])
        .arg(&s.work)
        .arg("--amend-rules")
        .arg(&inside)
        .args(["--", "true"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("inside the writable root"), "{stderr}");
    assert!(!inside.exists());
}

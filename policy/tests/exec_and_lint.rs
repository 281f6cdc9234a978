//! The supervisor's matching (`Policy::evaluate_exec`) and the lint of allow rules that
//! hand out a shell (`Policy::lint`), against rules files written as users write them:
//! `policy/tests/fixtures/` and `tests/fixtures/rules/lint/`.

use std::path::{Path, PathBuf};

use policy::{DecidedBy, Decision, LoadOptions, MatchedBy, Policy, Risk};

fn load(path: PathBuf) -> Policy {
    Policy::load(&LoadOptions {
        rules: vec![path],
        ..LoadOptions::default()
    })
    .expect("fixture loads")
}

fn own_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn lint_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/rules/lint")
        .join(name)
}

fn argv(command: &str) -> Vec<String> {
    shlex::split(command).expect("test command")
}

#[test]
fn a_renamed_or_copied_git_cannot_push_past_a_forbidden_rule() {
    let policy = load(own_fixture("pinned-git.rules"));
    // `execgate check` keeps Codex's answer: the pin hides /tmp/git from every git rule.
    let check = policy.evaluate("/tmp/git", &argv("git push origin main"));
    assert_eq!(check.decided_by, DecidedBy::Heuristics);

    for program in [
        "/tmp/git",
        "/work/repo/bin/git",
        "/usr/local/bin/git",
        "/usr/bin/git",
    ] {
        let e = policy.evaluate_exec(program, &argv("git push origin main"));
        assert_eq!(e.decision, Decision::Forbidden, "{program}");
        assert_eq!(e.matched_rules[0].matched_prefix, ["git", "push"]);
        assert_eq!(e.matched_rules[0].matched_by(), MatchedBy::Basename);
        assert!(
            e.reason().contains("pushing is done by a person"),
            "{}",
            e.reason()
        );
    }
    // Allow stays narrow: only the pinned path matches the allow rule.
    let pinned = policy.evaluate_exec("/usr/bin/git", &argv("git status"));
    assert_eq!(
        (pinned.decision, pinned.decided_by),
        (Decision::Allow, DecidedBy::Rule)
    );
    assert_eq!(
        policy.host_executable_paths("git"),
        Some(&[PathBuf::from("/usr/bin/git")][..])
    );
    let copy = policy.evaluate_exec("/tmp/git", &argv("git status"));
    assert_eq!(copy.decided_by, DecidedBy::Heuristics);
}

#[test]
fn a_path_deny_rule_follows_its_program_under_other_paths() {
    let policy = load(own_fixture("pinned-git.rules"));
    // The exact-path allow rule does not shadow the stricter one, and /bin/rm (merged
    // /usr) or a symlinked directory is the same rm.
    for program in ["/usr/bin/rm", "/bin/rm", "/tmp/link/rm"] {
        let e = policy.evaluate_exec(program, &argv("rm -rf /work"));
        assert_eq!(e.decision, Decision::Forbidden, "{program}");
    }
    let plain = policy.evaluate_exec("/usr/bin/rm", &argv("rm notes.txt"));
    assert_eq!(plain.decision, Decision::Allow);
    assert_eq!(plain.matched_rules[0].matched_by(), MatchedBy::ExactPath);
    assert_eq!(plain.matched_rules[0].matched_prefix, ["/usr/bin/rm"]);
    // The allow rule names one path: another rm is decided by the heuristics.
    let other = policy.evaluate_exec("/tmp/rm", &argv("rm notes.txt"));
    assert_eq!(other.decided_by, DecidedBy::Heuristics);
}

#[test]
fn every_rule_that_hands_out_a_shell_is_named_with_file_and_line() {
    let file = lint_fixture("hands-out-a-shell.rules");
    let policy = load(file.clone());
    let warnings = policy.lint();
    let got: Vec<(u32, &str, Risk)> = warnings
        .iter()
        .map(|w| {
            let origin = w.origin.as_ref().expect("origin");
            assert_eq!(origin.file, file);
            (origin.line, w.pattern.as_str(), w.risk)
        })
        .collect();
    assert_eq!(
        got,
        [
            (5, r#"["bash"]"#, Risk::RunsCode),
            (
                7,
                r#"[["python3", "python"], "-m", "pytest"]"#,
                Risk::RunsCode
            ),
            (12, r#"["make"]"#, Risk::RunsCode),
            (14, r#"["npm", ["test", "run"]]"#, Risk::RunsCode),
            (16, r#"["cargo", ["build", "test"]]"#, Risk::RunsCode),
            (18, r#"["find", "."]"#, Risk::RunsCode),
            (20, r#"["env"]"#, Risk::RunsCode),
            (22, r#"["git"]"#, Risk::RunsCode),
            (24, r#"["git", "commit"]"#, Risk::RunsCode),
            (27, r#"["git", "status"]"#, Risk::RunsRepositoryConfig),
            (29, r#"["/usr/bin/sudo"]"#, Risk::RunsCode),
        ]
    );
    for warning in &warnings {
        let line = warning.to_string();
        assert!(line.contains("outside the sandbox: "), "{line}");
        assert!(line.contains("; instead, "), "{line}");
    }
    let env = warnings.iter().find(|w| w.pattern == r#"["env"]"#).unwrap();
    assert!(env.instead.contains(r#"["ls"]"#), "{}", env.instead);
}

#[test]
fn narrow_allow_rules_and_deny_rules_are_not_named() {
    let policy = load(lint_fixture("narrow.rules"));
    assert_eq!(policy.lint(), []);
}

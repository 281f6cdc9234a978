//! The rules language against the fixtures in `tests/fixtures/rules/`: rules files written
//! the way Codex users write them, good and broken.

use std::path::{Path, PathBuf};

use policy::{DecidedBy, Decision, LoadError, LoadOptions, Policy};
use serde_json::json;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/rules")
}

fn fixture(name: &str) -> PathBuf {
    fixtures().join(name)
}

fn load(paths: &[&str]) -> Result<Policy, LoadError> {
    Policy::load(&LoadOptions {
        rules: paths.iter().map(|p| fixture(p)).collect(),
        ..LoadOptions::default()
    })
}

fn argv(command: &str) -> Vec<String> {
    shlex::split(command).unwrap_or_else(|| panic!("bad test command {command}"))
}

fn eval(policy: &Policy, command: &str) -> policy::Evaluation {
    let argv = argv(command);
    policy.evaluate(&argv[0], &argv)
}

fn load_error(paths: &[&str]) -> String {
    match load(paths) {
        Ok(_) => panic!("{paths:?} loaded, expected an error"),
        Err(err) => err.to_string(),
    }
}

#[test]
fn git_push_fetch_prompt_from_codex_docs() {
    let policy = load(&["git-remote.rules"]).unwrap();
    assert_eq!(policy.rule_count(), 1);

    let push = eval(&policy, "git push origin main");
    assert_eq!(push.decision, Decision::Prompt);
    assert_eq!(push.decided_by, DecidedBy::Rule);
    assert_eq!(push.matched_rules.len(), 1);
    let m = &push.matched_rules[0];
    assert_eq!(m.matched_prefix, ["git", "push"]);
    assert_eq!(m.justification, None);
    let origin = m.origin.as_ref().unwrap();
    assert_eq!(origin.file, fixture("git-remote.rules"));
    assert_eq!(origin.line, 3);
    assert!(push.heuristic.is_none());

    assert_eq!(
        eval(&policy, "git fetch").matched_rules[0].matched_prefix,
        ["git", "fetch"]
    );

    let status = eval(&policy, "git status");
    assert_eq!(status.decided_by, DecidedBy::Heuristics);
    assert!(status.matched_rules.is_empty());
    assert_eq!(status.decision, Decision::Allow);
}

#[test]
fn git_reset_hard_forbidden_with_justification() {
    let policy = load(&["git-reset.rules"]).unwrap();
    let e = eval(&policy, "git reset --hard HEAD~1");
    assert_eq!(e.decision, Decision::Forbidden);
    assert_eq!(
        e.matched_rules[0].justification.as_deref(),
        Some("destructive operation: use `git stash` to set changes aside instead")
    );
    let file = fixture("git-reset.rules");
    assert_eq!(
        e.reason(),
        format!(
            "forbidden by rule `git reset --hard` ({}:3): destructive operation: use `git stash` to set changes aside instead",
            file.display()
        )
    );
    assert_eq!(
        e.to_codex_json(),
        json!({
            "matchedRules": [{"prefixRuleMatch": {
                "matchedPrefix": ["git", "reset", "--hard"],
                "decision": "forbidden",
                "justification": "destructive operation: use `git stash` to set changes aside instead",
            }}],
            "decision": "forbidden",
        })
    );
    assert_eq!(
        e.to_explained_json(),
        json!({
            "matchedRules": [{"prefixRuleMatch": {
                "matchedPrefix": ["git", "reset", "--hard"],
                "decision": "forbidden",
                "justification": "destructive operation: use `git stash` to set changes aside instead",
                "origin": {"file": file, "line": 3},
            }}],
            "decision": "forbidden",
            "decidedBy": "rule",
        })
    );
    // --keep is not --hard: no rule; the heuristics do not list it either.
    assert_eq!(
        eval(&policy, "git reset --keep").decided_by,
        DecidedBy::Heuristics
    );
}

#[test]
fn first_token_alternatives_become_one_rule_each() {
    let policy = load(&["python.rules"]).unwrap();
    assert_eq!(policy.rule_count(), 2);
    for command in [
        "python3 -m pytest -x",
        "python -m unittest",
        "/usr/bin/python3 -m pytest",
    ] {
        let e = eval(&policy, command);
        assert_eq!(e.decision, Decision::Allow, "{command}");
        assert_eq!(e.decided_by, DecidedBy::Rule, "{command}");
    }
    let fallback = eval(&policy, "/usr/bin/python3 -m pytest");
    assert_eq!(
        fallback.matched_rules[0].matched_prefix,
        ["python3", "-m", "pytest"]
    );
    assert_eq!(
        fallback.matched_rules[0].resolved_program.as_deref(),
        Some(Path::new("/usr/bin/python3"))
    );
    assert_eq!(
        eval(&policy, "python3 -m pip install x").decided_by,
        DecidedBy::Heuristics
    );
}

#[test]
fn a_directory_loads_its_rules_files_in_name_order() {
    let policy = load(&["dir"]).unwrap();
    assert_eq!(
        policy.sources(),
        [
            fixture("dir").join("00-gh.rules"),
            fixture("dir").join("10-readonly.rules"),
            fixture("dir").join("20-host.rules"),
        ]
    );
    // gh (1) + git status/log/diff/show (4) + ls/cat/pwd (3) + git commit, deploy (2).
    assert_eq!(policy.rule_count(), 10);
    assert_eq!(policy.network_rule_count(), 1);

    let gh = eval(&policy, "gh pr view 7888 --json title");
    assert_eq!(gh.decision, Decision::Prompt);
    assert_eq!(
        gh.matched_rules[0].justification.as_deref(),
        Some("Viewing PRs is allowed with approval")
    );

    // Rules made by a loop and by a function carry the line of the prefix_rule call.
    let log = eval(&policy, "git log -3");
    assert_eq!(log.decision, Decision::Allow);
    assert_eq!(log.matched_rules[0].origin.as_ref().unwrap().line, 5);
    assert_eq!(
        eval(&policy, "cat x").matched_rules[0]
            .origin
            .as_ref()
            .unwrap()
            .line,
        9
    );

    // f-strings work.
    let commit = eval(&policy, "git commit -m wip");
    assert_eq!(
        commit.matched_rules[0].justification.as_deref(),
        Some("commits are reviewed by the release team")
    );
}

#[test]
fn host_executable_pins_basename_rules_to_listed_paths() {
    let policy = load(&["dir"]).unwrap();
    let pinned = eval(&policy, "/usr/bin/git commit -m wip");
    assert_eq!(pinned.decision, Decision::Prompt);
    assert_eq!(
        pinned.matched_rules[0].resolved_program.as_deref(),
        Some(Path::new("/usr/bin/git"))
    );

    let other = eval(&policy, "/opt/homebrew/bin/git commit");
    assert_eq!(other.decided_by, DecidedBy::Heuristics);

    // A rule written with an absolute path matches that path only.
    assert_eq!(
        eval(&policy, "/usr/local/bin/deploy prod").decision,
        Decision::Forbidden
    );
    assert_eq!(
        eval(&policy, "deploy prod").decided_by,
        DecidedBy::Heuristics
    );
    assert_eq!(
        eval(&policy, "/opt/deploy prod").decided_by,
        DecidedBy::Heuristics
    );
}

#[test]
fn all_matches_reported_strictest_wins() {
    let policy = Policy::from_source(
        "inline.rules",
        r#"
prefix_rule(pattern = ["git"], decision = "prompt")
prefix_rule(pattern = ["git", "push"])
prefix_rule(pattern = ["git", "push", ["--force", "-f"]], decision = "forbidden", justification = "Use --force-with-lease.")
"#,
    )
    .unwrap();
    let e = eval(&policy, "git push -f origin");
    assert_eq!(e.decision, Decision::Forbidden);
    let prefixes: Vec<&[String]> = e
        .matched_rules
        .iter()
        .map(|m| m.matched_prefix.as_slice())
        .collect();
    assert_eq!(
        prefixes,
        [
            &["git"][..],
            &["git", "push"][..],
            &["git", "push", "-f"][..]
        ]
        .map(|p| p.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    );
    let decisions: Vec<Decision> = e.matched_rules.iter().map(|m| m.decision).collect();
    assert_eq!(
        decisions,
        [Decision::Prompt, Decision::Allow, Decision::Forbidden]
    );
    assert_eq!(
        e.reason(),
        "forbidden by rule `git push -f` (inline.rules:4): Use --force-with-lease."
    );

    assert_eq!(eval(&policy, "git push origin").decision, Decision::Prompt);
}

#[test]
fn loading_several_paths_merges_them() {
    let policy = load(&["dir", "git-remote.rules", "git-reset.rules", "python.rules"]).unwrap();
    assert_eq!(policy.sources().len(), 6);
    assert_eq!(policy.rule_count(), 14);
    // The same file twice is loaded once.
    let twice = load(&["git-remote.rules", "git-remote.rules"]).unwrap();
    assert_eq!(twice.rule_count(), 1);
    assert_eq!(eval(&twice, "git push").matched_rules.len(), 1);
}

#[test]
fn a_failing_match_example_is_a_load_error_with_the_example() {
    let file = fixture("bad-match.rules");
    assert_eq!(
        load_error(&["bad-match.rules"]),
        format!(
            "{}:7:1: `match` example `npm ci` does not match the rule's pattern [\"npm\", [\"install\", \"i\"]]",
            file.display()
        )
    );
    let file = fixture("not-match-fails.rules");
    assert_eq!(
        load_error(&["not-match-fails.rules"]),
        format!(
            "{}:1:1: `not_match` example `git push --dry-run` matches the rule's pattern [\"git\", \"push\"]",
            file.display()
        )
    );
}

#[test]
fn a_syntax_error_names_file_line_column_and_what_was_expected() {
    let err = load(&["syntax-error.rules"]).unwrap_err();
    let location = err.location().expect("a syntax error has a location");
    assert_eq!((location.line, location.column), (4, 5));
    assert_eq!(
        err.to_string(),
        format!(
            "{}:4:5: Parse error: unexpected identifier 'justification' here, expected \",\" or \")\" (or one of 44 other tokens)",
            fixture("syntax-error.rules").display()
        )
    );
}

#[test]
fn bad_arguments_are_errors_at_the_call() {
    let cases = [
        (
            "bad-decision.rules",
            "2:1: invalid decision \"deny\": expected \"allow\", \"prompt\" or \"forbidden\"",
        ),
        (
            "blank-justification.rules",
            "1:1: justification cannot be empty: give a reason, or leave `justification` out",
        ),
        (
            "type-error.rules",
            "1:1: Type of parameter `pattern` doesn't match, expected `list`, actual `string (repr: \"git push\")`",
        ),
    ];
    for (name, want) in cases {
        assert_eq!(
            load_error(&[name]),
            format!("{}:{want}", fixture(name).display()),
            "{name}"
        );
    }
}

#[test]
fn inline_errors() {
    let cases = [
        (
            "prefix_rule(pattern = [])",
            "x.rules:1:1: pattern cannot be empty: expected at least the program name",
        ),
        (
            "prefix_rule(pattern = [\"a\", []])",
            "x.rules:1:1: pattern alternatives cannot be an empty list",
        ),
        (
            "prefix_rule(pattern = [\"a\", 1])",
            "x.rules:1:1: pattern element must be a string or a list of strings, not int",
        ),
        (
            "prefix_rule(pattern = [\"a\"], match = [\"\"])",
            "x.rules:1:1: example cannot be empty",
        ),
        (
            "prefix_rule(pattern = [\"a\"], match = [\"a 'b\"])",
            "x.rules:1:1: example \"a 'b\" is not valid shell syntax (unbalanced quotes?)",
        ),
        (
            "prefix_rule(pattern = [\"a\"], decison = \"allow\")",
            "x.rules:1:1: Found `decison` extra named parameter(s) for call to prefix_rule",
        ),
        (
            "\n  x = 1",
            "x.rules:2:1: Parse error: unexpected new indentation block here, expected one of 23 tokens",
        ),
        (
            "prefix_rule(pattern = [GIT])",
            "x.rules:1:24: Variable `GIT` not found",
        ),
        (
            "host_executable(name = \"git\", paths = [\"git\"])",
            "x.rules:1:1: host_executable paths must be absolute or start with `~/` (got \"git\")",
        ),
        (
            "host_executable(name = \"git\", paths = [\"/usr/bin/gitk\"])",
            "x.rules:1:1: host_executable path \"/usr/bin/gitk\" must have basename \"git\"",
        ),
        (
            "host_executable(name = \"a/b\", paths = [])",
            "x.rules:1:1: host_executable name must be a bare executable name (got \"a/b\")",
        ),
        (
            "network_rule(host = \"*\", protocol = \"https\", decision = \"allow\")",
            "x.rules:1:1: network_rule host must be one specific host, not a wildcard (got \"*\")",
        ),
    ];
    for (source, want) in cases {
        match Policy::from_source("x.rules", source) {
            Ok(_) => panic!("{source:?} loaded"),
            Err(err) => assert_eq!(err.to_string(), want, "{source:?}"),
        }
    }
}

#[test]
fn decision_defaults_to_allow_and_examples_can_be_lists_or_strings() {
    let policy = Policy::from_source(
        "x.rules",
        r#"prefix_rule(pattern = ["make"], match = [["make", "-j4"], "make 'all targets'"], not_match = ["gmake"])"#,
    )
    .unwrap();
    let e = eval(&policy, "make test");
    assert_eq!(e.decision, Decision::Allow);
    assert_eq!(e.decided_by, DecidedBy::Rule);
}

#[test]
fn host_executable_home_paths_use_the_given_home() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("az.rules");
    std::fs::write(
        &rules,
        r#"
host_executable(name = "az", paths = ["~/.local/bin/az"])
prefix_rule(pattern = ["az"], decision = "prompt", match = ["/home/me/.local/bin/az login"])
"#,
    )
    .unwrap();
    let policy = Policy::load(&LoadOptions {
        rules: vec![rules.clone()],
        home: Some(PathBuf::from("/home/me")),
        ..LoadOptions::default()
    })
    .unwrap();
    assert_eq!(
        eval(&policy, "/home/me/.local/bin/az login").decision,
        Decision::Prompt
    );
    assert_eq!(
        eval(&policy, "/usr/bin/az login").decided_by,
        DecidedBy::Heuristics
    );

    let err = Policy::load(&LoadOptions {
        rules: vec![rules.clone()],
        ..LoadOptions::default()
    })
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}:2:1: host_executable path \"~/.local/bin/az\" uses `~/` but no home directory is known (HOME unset)",
            rules.display()
        )
    );
}

#[test]
fn default_directories_load_and_missing_ones_are_fine() {
    let home = tempfile::tempdir().unwrap();
    let codex_rules = home.path().join(".codex/rules");
    std::fs::create_dir_all(&codex_rules).unwrap();
    std::fs::copy(
        fixture("git-remote.rules"),
        codex_rules.join("default.rules"),
    )
    .unwrap();
    let opts = LoadOptions {
        default_rules: true,
        home: Some(home.path().to_path_buf()),
        ..LoadOptions::default()
    };
    let policy = Policy::load(&opts).unwrap();
    assert_eq!(policy.sources(), [codex_rules.join("default.rules")]);
    assert_eq!(eval(&policy, "git push").decision, Decision::Prompt);

    // $XDG_CONFIG_HOME/execgate/rules next to it, after it.
    let xdg = home.path().join("xdg");
    std::fs::create_dir_all(xdg.join("execgate/rules")).unwrap();
    std::fs::copy(
        fixture("git-reset.rules"),
        xdg.join("execgate/rules/local.rules"),
    )
    .unwrap();
    let policy = Policy::load(&LoadOptions {
        xdg_config_home: Some(xdg.clone()),
        ..opts.clone()
    })
    .unwrap();
    assert_eq!(policy.sources().len(), 2);
    assert_eq!(policy.sources()[1], xdg.join("execgate/rules/local.rules"));

    // Without default_rules nothing is loaded from there.
    let none = Policy::load(&LoadOptions {
        default_rules: false,
        ..opts.clone()
    })
    .unwrap();
    assert_eq!(none.rule_count(), 0);

    // Nothing there at all: fine.
    let empty_home = tempfile::tempdir().unwrap();
    let policy = Policy::load(&LoadOptions {
        default_rules: true,
        home: Some(empty_home.path().to_path_buf()),
        ..LoadOptions::default()
    })
    .unwrap();
    assert_eq!(policy.rule_count(), 0);
    assert!(policy.sources().is_empty());
}

#[test]
fn a_broken_file_in_a_default_directory_is_fatal() {
    let home = tempfile::tempdir().unwrap();
    let codex_rules = home.path().join(".codex/rules");
    std::fs::create_dir_all(&codex_rules).unwrap();
    std::fs::copy(fixture("git-remote.rules"), codex_rules.join("a.rules")).unwrap();
    std::fs::copy(fixture("syntax-error.rules"), codex_rules.join("b.rules")).unwrap();
    let err = Policy::load(&LoadOptions {
        default_rules: true,
        home: Some(home.path().to_path_buf()),
        ..LoadOptions::default()
    })
    .unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "{}:4:5: Parse error",
            codex_rules.join("b.rules").display()
        )),
        "{err}"
    );
}

#[test]
fn a_missing_explicit_path_is_an_error() {
    let err = load(&["no-such.rules"]).unwrap_err();
    assert!(matches!(err, LoadError::NotFound { .. }));
    assert_eq!(
        err.to_string(),
        format!(
            "{}: no such rules file or directory",
            fixture("no-such.rules").display()
        )
    );
}

#[test]
fn a_non_utf8_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bin.rules");
    std::fs::write(&file, b"prefix_rule(pattern=[\"\xff\"])").unwrap();
    let err = Policy::load(&LoadOptions {
        rules: vec![file.clone()],
        ..LoadOptions::default()
    })
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: not UTF-8 text (rules files are Starlark source in UTF-8)",
            file.display()
        )
    );
}

#[test]
fn heuristics_verdict_is_marked_in_the_codex_json() {
    let e = Policy::empty().evaluate("rm", &argv("rm -rf build"));
    assert_eq!(e.decided_by, DecidedBy::Heuristics);
    assert_eq!(e.to_codex_json(), json!({"matchedRules": []}));
    assert_eq!(
        e.to_explained_json(),
        json!({
            "matchedRules": [],
            "decidedBy": "heuristics",
            "heuristics": {
                "decision": "prompt",
                "reason": "`rm -rf build` deletes without asking for confirmation",
            },
        })
    );
    assert_eq!(
        e.reason(),
        "prompt by heuristics: `rm -rf build` deletes without asking for confirmation"
    );
    // The printed form keeps Codex's field order.
    assert_eq!(
        serde_json::to_string(&e.codex_view()).unwrap(),
        r#"{"matchedRules":[]}"#
    );
    assert_eq!(
        serde_json::to_string(&e.explained_view()).unwrap(),
        r#"{"matchedRules":[],"decidedBy":"heuristics","heuristics":{"decision":"prompt","reason":"`rm -rf build` deletes without asking for confirmation"}}"#
    );
}

#[test]
fn program_stands_for_argv0() {
    // The supervisor passes the exec'd path; argv[0] may be anything (a login shell's "-bash").
    let policy = load(&["git-reset.rules"]).unwrap();
    let argv = vec![
        "-git".to_string(),
        "reset".to_string(),
        "--hard".to_string(),
    ];
    assert_eq!(
        policy.evaluate("/usr/bin/git", &argv).decision,
        Decision::Forbidden
    );
    assert_eq!(
        policy.evaluate("git", &[]).decided_by,
        DecidedBy::Heuristics
    );
}

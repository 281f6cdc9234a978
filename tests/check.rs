//! `execgate check` end to end: the real binary, real rules files from
//! `tests/fixtures/rules/`, asserting the exact output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/rules")
        .join(name)
}

/// Runs `execgate check ARGS...` with an empty home, so no default rules leak in from
/// the machine running the tests.
fn check(args: &[&str]) -> Output {
    let home = tempfile::tempdir().expect("temp home");
    Command::new(env!("CARGO_BIN_EXE_execgate"))
        .arg("check")
        .args(args)
        .env("HOME", home.path())
        .env_remove("CODEX_HOME")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("EXECGATE_LOG")
        .output()
        .expect("run execgate")
}

fn stdout_json(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "exit {:?}, stderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("stdout is JSON")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn prompt_rule_prints_codex_shape() {
    let rules = fixture("git-remote.rules");
    let run = |extra: &[&str]| {
        let mut args = vec!["--rules", rules.to_str().unwrap()];
        args.extend(extra);
        args.extend(["--", "git", "push", "origin", "main"]);
        check(&args)
    };
    // Byte for byte what `codex execpolicy check` prints.
    let out = run(&[]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "{\"matchedRules\":[{\"prefixRuleMatch\":{\"matchedPrefix\":[\"git\",\"push\"],\"decision\":\"prompt\"}}],\"decision\":\"prompt\"}\n"
    );
    assert!(out.status.success());
    assert_eq!(stderr(&out), "");
    // execgate's evidence only when asked.
    let out = run(&["--explain"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "{{\"matchedRules\":[{{\"prefixRuleMatch\":{{\"matchedPrefix\":[\"git\",\"push\"],\"decision\":\"prompt\",\"origin\":{{\"file\":\"{}\",\"line\":3}}}}}}],\"decision\":\"prompt\",\"decidedBy\":\"rule\"}}\n",
            rules.display()
        )
    );
}

#[test]
fn forbidden_rule_exits_zero_with_justification() {
    let rules = fixture("git-reset.rules");
    let out = check(&[
        "-r",
        rules.to_str().unwrap(),
        "--",
        "git",
        "reset",
        "--hard",
        "HEAD~1",
    ]);
    assert_eq!(
        stdout_json(&out),
        json!({
            "matchedRules": [{"prefixRuleMatch": {
                "matchedPrefix": ["git", "reset", "--hard"],
                "decision": "forbidden",
                "justification": "destructive operation: use `git stash` to set changes aside instead",
            }}],
            "decision": "forbidden",
        })
    );
}

#[test]
fn no_rule_shows_the_heuristics_verdict_and_no_top_level_decision() {
    let rules = fixture("git-remote.rules");
    let out = check(&["-r", rules.to_str().unwrap(), "--", "rm", "-rf", "build"]);
    assert_eq!(stdout_json(&out), json!({"matchedRules": []}));
    let out = check(&[
        "-r",
        rules.to_str().unwrap(),
        "--explain",
        "--",
        "rm",
        "-rf",
        "build",
    ]);
    assert_eq!(
        stdout_json(&out),
        json!({
            "matchedRules": [],
            "decidedBy": "heuristics",
            "heuristics": {
                "decision": "prompt",
                "reason": "`rm -rf build` deletes without asking for confirmation",
            },
        })
    );

    let out = check(&["--explain", "--", "ls", "-la"]);
    assert_eq!(
        stdout_json(&out)["heuristics"],
        json!({"decision": "allow", "reason": "`ls -la` only reads (heuristics' read-only list)"})
    );

    let out = check(&[
        "--explain",
        "--",
        "bash",
        "-lc",
        "cargo build && git push --force",
    ]);
    assert_eq!(
        stdout_json(&out)["heuristics"],
        json!({"decision": "prompt", "reason": "bash -c: `git push --force` rewrites or deletes history on the remote"})
    );
}

#[test]
fn pretty_prints_indented_json() {
    let rules = fixture("python.rules");
    let out = check(&[
        "--pretty",
        "-r",
        rules.to_str().unwrap(),
        "--",
        "python3",
        "-m",
        "pytest",
    ]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.starts_with("{\n  \"matchedRules\": [\n    {\n      \"prefixRuleMatch\": {\n"),
        "{text}"
    );
    assert_eq!(stdout_json(&out)["decision"], "allow");
}

#[test]
fn directory_and_several_rules_paths() {
    let dir = fixture("dir");
    let reset = fixture("git-reset.rules");
    let run = |extra: &[&str]| {
        let mut args = vec!["-r", dir.to_str().unwrap(), "-r", reset.to_str().unwrap()];
        args.extend(extra);
        args.extend(["--", "/usr/bin/git", "commit", "-m", "wip"]);
        check(&args)
    };
    // As Codex: an absolute program matches the basename rules only when asked.
    assert_eq!(stdout_json(&run(&[])), json!({"matchedRules": []}));
    assert_eq!(
        stdout_json(&run(&["--resolve-host-executables", "--explain"])),
        json!({
            "matchedRules": [{"prefixRuleMatch": {
                "matchedPrefix": ["git", "commit"],
                "decision": "prompt",
                "resolvedProgram": "/usr/bin/git",
                "justification": "commits are reviewed by the release team",
                "origin": {"file": dir.join("20-host.rules"), "line": 9},
            }}],
            "decision": "prompt",
            "decidedBy": "rule",
        })
    );
}

/// The issue's example: `--resolve-host-executables` before `--` is check's flag, never the
/// command (an older execgate checked the flag as the program and said allow).
#[test]
fn resolve_host_executables_is_a_flag_and_resolves_relative_paths() {
    let rules = fixture("git-reset.rules");
    let rules = rules.to_str().unwrap();
    let usr = Command::new(env!("CARGO_BIN_EXE_execgate"))
        .args(["check", "-r", rules, "--resolve-host-executables", "--"])
        .args(["bin/git", "reset", "--hard"])
        .current_dir("/usr")
        .env("HOME", "/nonexistent")
        .output()
        .unwrap();
    let json = stdout_json(&usr);
    assert_eq!(json["decision"], "forbidden");
    assert_eq!(
        json["matchedRules"][0]["prefixRuleMatch"]["resolvedProgram"],
        "/usr/bin/git"
    );
    // Without the flag a path never matches a basename rule; a misspelt flag is an error.
    let out = check(&["-r", rules, "--", "/usr/bin/git", "reset", "--hard"]);
    assert_eq!(stdout_json(&out), json!({"matchedRules": []}));
    let out = check(&[
        "-r",
        rules,
        "--resolve-host-executable",
        "/usr/bin/git",
        "reset",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(out.stdout, b"");
    assert!(
        stderr(&out).contains("--resolve-host-executable"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn default_rules_come_from_codex_home_unless_disabled() {
    let codex_home = tempfile::tempdir().unwrap();
    std::fs::create_dir(codex_home.path().join("rules")).unwrap();
    std::fs::copy(
        fixture("git-reset.rules"),
        codex_home.path().join("rules/default.rules"),
    )
    .unwrap();
    let run = |extra: &[&str]| {
        let home = tempfile::tempdir().unwrap();
        Command::new(env!("CARGO_BIN_EXE_execgate"))
            .arg("check")
            .args(extra)
            .args(["--", "git", "reset", "--hard"])
            .env("HOME", home.path())
            .env("CODEX_HOME", codex_home.path())
            .env_remove("XDG_CONFIG_HOME")
            .output()
            .unwrap()
    };
    assert_eq!(stdout_json(&run(&[]))["decision"], "forbidden");
    let without = stdout_json(&run(&["--no-default-rules", "--explain"]));
    assert_eq!(without["decidedBy"], "heuristics");
    assert_eq!(without["heuristics"]["decision"], "prompt");
    // As `codex execpolicy check -r FILE`: given rules files, only they count.
    let other = fixture("python.rules");
    let only_given = stdout_json(&run(&["-r", other.to_str().unwrap(), "--explain"]));
    assert_eq!(only_given["decidedBy"], "heuristics");
}

#[test]
fn syntax_error_fails_with_file_line_column() {
    let rules = fixture("syntax-error.rules");
    let out = check(&["-r", rules.to_str().unwrap(), "--", "ls"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(out.stdout, b"");
    assert_eq!(
        stderr(&out),
        format!(
            "execgate: {}:4:5: Parse error: unexpected identifier 'justification' here, expected \",\" or \")\" (or one of 44 other tokens)\n",
            rules.display()
        )
    );
}

#[test]
fn failing_match_example_fails_with_the_example() {
    let rules = fixture("bad-match.rules");
    let out = check(&["-r", rules.to_str().unwrap(), "--", "npm", "install"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!(
            "execgate: {}:7:1: `match` example `npm ci` does not match the rule's pattern [\"npm\", [\"install\", \"i\"]]\n",
            rules.display()
        )
    );
}

#[test]
fn missing_rules_path_fails() {
    let out = check(&["-r", "/nonexistent/execgate.rules", "--", "ls"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "execgate: /nonexistent/execgate.rules: no such rules file or directory\n"
    );
}

#[test]
fn command_is_required() {
    let out = check(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("<COMMAND>..."), "{}", stderr(&out));
}

#[test]
fn options_after_the_program_belong_to_the_command() {
    // `--pretty` after `--` is an argument of the checked command, not of check.
    let out = check(&["--explain", "--", "grep", "--pretty", "x"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(text.matches('\n').count(), 1, "not pretty-printed: {text}");
    assert_eq!(
        stdout_json(&out)["heuristics"]["reason"],
        "`grep --pretty x` only reads (heuristics' read-only list)"
    );
}

/// Allow rules that hand out a shell are named on stderr, with file:line; the JSON on
/// stdout is what it would be without them.
#[test]
fn allow_rules_that_hand_out_a_shell_are_named() {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/rules/lint/hands-out-a-shell.rules");
    let rules_arg = rules.to_str().unwrap();
    let out = check(&[
        "--no-default-rules",
        "--rules",
        rules_arg,
        "--",
        "bash",
        "-c",
        "true",
    ]);
    assert!(out.status.success(), "{out:?}");
    let err = stderr(&out);
    let bash_line = format!("{}:5: allow rule", rules.display());
    assert!(err.contains(&bash_line), "{err}");
    assert!(err.contains("make"), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"decision\":\"allow\""));
    let narrow =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rules/lint/narrow.rules");
    let out = check(&[
        "--no-default-rules",
        "--rules",
        narrow.to_str().unwrap(),
        "--",
        "ls",
    ]);
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
}

/// `--exec-path` shows the supervisor's run-time matching: a prompt rule for `git` matches
/// `/tmp/git` although `host_executable()` pins `git` to `/usr/bin/git` (Codex's matching,
/// the default, does not).
#[test]
fn exec_path_shows_the_run_time_matching() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("pinned.rules");
    std::fs::write(
        &rules,
        "host_executable(name = \"git\", paths = [\"/usr/bin/git\"])\nprefix_rule(pattern = [\"git\", \"push\"], decision = \"prompt\")\n",
    )
    .unwrap();
    let rules = rules.to_str().unwrap();
    let codex = check(&[
        "-r",
        rules,
        "--resolve-host-executables",
        "--",
        "/tmp/git",
        "push",
    ]);
    assert_eq!(stdout_json(&codex), json!({"matchedRules": []}));
    let exec = check(&["-r", rules, "--exec-path", "/tmp/git", "--", "git", "push"]);
    assert_eq!(
        stdout_json(&exec),
        json!({
            "matchedRules": [{"prefixRuleMatch": {
                "matchedPrefix": ["git", "push"],
                "decision": "prompt",
                "resolvedProgram": "/tmp/git",
            }}],
            "decision": "prompt",
        })
    );
    let relative = check(&["-r", rules, "--exec-path", "tmp/git", "--", "git"]);
    assert_eq!(relative.status.code(), Some(2));
}

/// Admin rules: a layer the user's rules cannot weaken. A user rule for the exact path
/// would shadow a basename rule in Codex's matching, and a user `host_executable()` would
/// exclude the path; neither touches the admin layer. `--explain` says which layer decided.
#[test]
fn admin_rules_cannot_be_weakened_by_user_rules() {
    let dir = tempfile::tempdir().unwrap();
    let user = dir.path().join("user.rules");
    std::fs::write(
        &user,
        r#"host_executable(name = "git", paths = ["/opt/git"])
prefix_rule(pattern = ["/usr/bin/git", "push"], decision = "allow")
prefix_rule(pattern = ["rm"], decision = "allow")
"#,
    )
    .unwrap();
    let requirements = dir.path().join("requirements.toml");
    std::fs::write(
        &requirements,
        r#"[features]
something_else = true

[rules]
prefix_rules = [
  { pattern = [{ token = "git" }, { any_of = ["push", "reset"] }], decision = "forbidden", justification = "platform policy" },
  { pattern = [{ any_of = ["rm", "unlink"] }], decision = "prompt" },
]
"#,
    )
    .unwrap();
    let admin_rules = dir.path().join("admin.rules");
    std::fs::write(
        &admin_rules,
        "prefix_rule(pattern = [\"curl\"], decision = \"prompt\")\n",
    )
    .unwrap();
    let (user, requirements, admin_rules) = (
        user.to_str().unwrap(),
        requirements.to_str().unwrap(),
        admin_rules.to_str().unwrap(),
    );

    let without = check(&[
        "-r",
        user,
        "--resolve-host-executables",
        "--",
        "/usr/bin/git",
        "push",
    ]);
    assert_eq!(stdout_json(&without)["decision"], "allow");

    let with = |argv: &[&str]| {
        let mut args = vec![
            "-r",
            user,
            "--admin-rules",
            requirements,
            "--admin-rules",
            admin_rules,
            "--resolve-host-executables",
            "--explain",
            "--",
        ];
        args.extend(argv);
        stdout_json(&check(&args))
    };
    assert_eq!(
        with(&["/usr/bin/git", "push", "origin"]),
        json!({
            "matchedRules": [
                {"prefixRuleMatch": {
                    "matchedPrefix": ["git", "push"],
                    "decision": "forbidden",
                    "resolvedProgram": "/usr/bin/git",
                    "justification": "platform policy",
                    "origin": {"file": requirements, "line": 6, "layer": "admin"},
                }},
                {"prefixRuleMatch": {
                    "matchedPrefix": ["/usr/bin/git", "push"],
                    "decision": "allow",
                    "origin": {"file": user, "line": 2},
                }},
            ],
            "decision": "forbidden",
            "decidedBy": "rule",
        })
    );
    let rm = with(&["rm", "x"]);
    assert_eq!(rm["decision"], "prompt");
    assert_eq!(
        rm["matchedRules"][0]["prefixRuleMatch"]["origin"]["layer"],
        "admin"
    );
    assert_eq!(with(&["curl", "x"])["decision"], "prompt");
    assert_eq!(with(&["git", "status"])["decidedBy"], "heuristics");
}

#[test]
fn admin_rules_refuse_allow() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("admin.rules");
    std::fs::write(&rules, "x = 1\nprefix_rule(pattern = [\"ls\"])\n").unwrap();
    let out = check(&["--admin-rules", rules.to_str().unwrap(), "--", "ls"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with(&format!(
            "execgate: {}:2:1: admin rules may only prompt or forbid",
            rules.display()
        )),
        "{}",
        stderr(&out)
    );

    let toml = dir.path().join("requirements.toml");
    std::fs::write(
        &toml,
        "[rules]\nprefix_rules = [\n  { pattern = [{ token = \"ls\" }], decision = \"allow\" },\n]\n",
    )
    .unwrap();
    let out = check(&["--admin-rules", toml.to_str().unwrap(), "--", "ls"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!(
            "execgate: {}:3:3: [rules] prefix_rules: decision \"allow\" is not allowed in admin rules (prompt or forbidden only)\n",
            toml.display()
        )
    );
    std::fs::write(
        &toml,
        "[rules]\nprefix_rules = [{ pattern = [{ token = \"ls\", any_of = [\"x\"] }], decision = \"prompt\" }]\n",
    )
    .unwrap();
    let out = check(&["--admin-rules", toml.to_str().unwrap(), "--", "ls"]);
    assert!(
        stderr(&out).contains("exactly one of `token` or `any_of`"),
        "{}",
        stderr(&out)
    );
}

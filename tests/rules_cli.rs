//! `execgate rules` (the effective rules with file:line) and `execgate check` on a shell
//! script (`bash -c '...'`, its commands evaluated as Codex splits plain `bash -lc` scripts),
//! end to end with the real binary and the fixtures a user would write.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(name: &str) -> String {
    let path: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/rules")
        .join(name);
    path.to_str().unwrap().to_owned()
}

/// `execgate ARGS...` with an empty home: no default rules leak in from the machine.
fn execgate(args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_execgate"))
        .args(args)
        .env("HOME", home.path())
        .env_remove("CODEX_HOME")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("EXECGATE_LOG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn rules_lists_each_call_with_its_file_and_line() {
    let (remote, reset) = (fixture("git-remote.rules"), fixture("git-reset.rules"));
    let out = execgate(&["rules", "-r", &remote, "--admin-rules", &reset]);
    assert_eq!(
        text(&out.stdout),
        format!(
            "# loaded {remote}\n# loaded {reset}\n\
             {reset}:3 (admin): prefix_rule(pattern=[\"git\", \"reset\", \"--hard\"], decision=\"forbidden\", \
             justification=\"destructive operation: use `git stash` to set changes aside instead\")\n\
             {remote}:3: prefix_rule(pattern=[\"git\", [\"push\", \"fetch\"]], decision=\"prompt\")\n"
        )
    );
    let json: serde_json::Value =
        serde_json::from_slice(&execgate(&["rules", "-r", &remote, "--json"]).stdout).unwrap();
    assert_eq!(json["rules"][0]["file"], remote.as_str());
    assert_eq!(json["rules"][0]["line"], 3);
    assert_eq!(json["rules"][0]["decision"], "prompt");
    assert_eq!(json["rules"][0]["layer"], "user");
}

#[test]
fn rules_without_any_file_says_the_heuristics_decide() {
    let out = execgate(&["rules"]);
    assert_eq!(
        text(&out.stdout),
        "# no rules files: the heuristics decide every exec\n"
    );
}

#[test]
fn check_on_a_plain_script_evaluates_each_command() {
    let remote = fixture("git-remote.rules");
    let script = "git status && git push origin main | cat";
    // Codex-style: stdout is what `codex execpolicy check` prints for the argv itself.
    let out = execgate(&["check", "-r", &remote, "--", "bash", "-lc", script]);
    assert_eq!(text(&out.stdout), "{\"matchedRules\":[]}\n");
    let note = text(&out.stderr);
    assert!(note.contains("`bash` runs 3 command(s)"), "{note}");
    assert!(
        note.contains(&format!(
            "  git push origin main: prompt by rule `git push` ({remote}:3)"
        )),
        "{note}"
    );
    // --explain: each command's evaluation, and the strictest.
    let out = execgate(&[
        "check",
        "-r",
        &remote,
        "--explain",
        "--",
        "bash",
        "-c",
        script,
    ]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let script_json = &json["script"];
    assert_eq!(script_json["split"], true);
    assert_eq!(script_json["decision"], "prompt");
    let commands: Vec<&serde_json::Value> =
        script_json["commands"].as_array().unwrap().iter().collect();
    assert_eq!(commands.len(), 3);
    assert_eq!(
        commands[1]["command"],
        serde_json::json!(["git", "push", "origin", "main"])
    );
    assert_eq!(commands[1]["decision"], "prompt");
    assert_eq!(
        commands[1]["matchedRules"][0]["prefixRuleMatch"]["origin"]["line"],
        3
    );
}

#[test]
fn check_says_why_a_script_is_not_split() {
    let remote = fixture("git-remote.rules");
    for (script, why) in [
        ("git push $REMOTE", "it expands variables"),
        ("git push origin > log", "it redirects"),
        ("(git push)", "subshells"),
        ("git push &", "background job"),
        ("X=1 git push", "keywords, assignments"),
    ] {
        let out = execgate(&[
            "check",
            "-r",
            &remote,
            "--explain",
            "--",
            "bash",
            "-c",
            script,
        ]);
        let note = text(&out.stderr);
        assert!(note.contains("not split into commands"), "{script}: {note}");
        assert!(note.contains(why), "{script}: {note}");
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["script"]["split"], false, "{script}");
    }
    // Not a shell wrapper: no note.
    let out = execgate(&["check", "-r", &remote, "--", "git", "-c", "x"]);
    assert_eq!(text(&out.stderr), "");
}

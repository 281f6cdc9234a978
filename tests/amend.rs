//! Rule amendments (`policy::amend`) against the real Codex CLI and under concurrency: the
//! file an "always" wrote is read back by `codex execpolicy check` with the same decision
//! (and by `execgate check` with the same bytes), hostile argv included; two processes
//! appending at once lose nothing and duplicate nothing.
//!
//! Codex is found as in tests/check_differential.rs (tests/clients, or `EXECGATE_CODEX`);
//! without it the Codex test skips, and fails under `EXECGATE_REQUIRE_ALL=1`.

use std::path::{Path, PathBuf};
use std::process::Command;

use policy::amend::{self, Appended, NetworkProtocol};
use policy::{Decision, LoadOptions, Policy};

fn codex() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("EXECGATE_CODEX") {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let modules = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/node_modules");
    let mut natives: Vec<PathBuf> = std::fs::read_dir(modules.join("@openai"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("codex-linux-"))
        })
        .collect();
    natives.sort();
    for package in natives {
        for target in std::fs::read_dir(package.join("vendor"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let binary = target.path().join("bin/codex");
            if binary.is_file() {
                return Some(binary);
            }
        }
    }
    let wrapper = modules.join(".bin/codex");
    wrapper.exists().then_some(wrapper)
}

fn check(tool: &Path, pre: &[&str], dir: &Path, rules: &Path, argv: &[String]) -> Vec<u8> {
    let out = Command::new(tool)
        .args(pre)
        .arg("-r")
        .arg(rules)
        .arg("--")
        .args(argv)
        .current_dir(dir)
        .env("HOME", dir)
        .env("CODEX_HOME", dir.join("codex-home"))
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} {argv:?}: {}",
        tool.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|t| (*t).to_owned()).collect()
}

#[test]
fn codex_reads_amended_rules_back_with_the_same_decision() {
    let Some(codex) = codex() else {
        testkit::skip("no Codex CLI in tests/clients (run scripts/setup-clients)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("codex-home/rules/default.rules");
    std::fs::create_dir_all(rules.parent().unwrap()).unwrap();
    // A user's file, its last line without a newline.
    std::fs::write(
        &rules,
        "prefix_rule(pattern=[\"git\", \"push\"], decision=\"forbidden\")",
    )
    .unwrap();
    let prefixes = [
        s(&["rm", "-f", "build/out.o"]),
        s(&["echo", "Hello, world!"]),
        // An argument that tries to close the list and start a rule of its own.
        s(&[
            "touch",
            "x\"], decision=\"allow\")\nprefix_rule(pattern=[\"bash",
        ]),
        s(&[
            "printf",
            "a\\b\"c",
            "tab\tcr\rbell\u{7}esc\u{1b}[2K\u{1}",
            "é\u{202e}✓",
        ]),
        s(&["/usr/bin/rm", "-r", "dir with spaces"]),
    ];
    for prefix in &prefixes {
        assert_eq!(
            amend::append_prefix_rule(&rules, prefix).unwrap(),
            Appended::Added
        );
    }
    assert_eq!(
        amend::append_prefix_rule(&rules, &prefixes[0]).unwrap(),
        Appended::AlreadyPresent
    );
    amend::append_network_rule(
        &rules,
        "api.example.com",
        NetworkProtocol::Https,
        Decision::Allow,
        Some("approved at a prompt"),
    )
    .unwrap();
    let text = std::fs::read_to_string(&rules).unwrap();
    assert_eq!(text.lines().count(), 1 + prefixes.len() + 1, "{text}");
    assert!(
        text.starts_with(
            "prefix_rule(pattern=[\"git\", \"push\"], decision=\"forbidden\")\n\
             prefix_rule(pattern=[\"rm\", \"-f\", \"build/out.o\"], decision=\"allow\")\n\
             prefix_rule(pattern=[\"echo\", \"Hello, world!\"], decision=\"allow\")\n"
        ),
        "{text}"
    );
    assert!(text.ends_with(
        "network_rule(host=\"api.example.com\", protocol=\"https\", decision=\"allow\", justification=\"approved at a prompt\")\n"
    ));

    let execgate = PathBuf::from(env!("CARGO_BIN_EXE_execgate"));
    let mut asked = prefixes.to_vec();
    asked.push(s(&["bash"]));
    asked.push(s(&["git", "push", "origin"]));
    for argv in &asked {
        let by_codex = check(&codex, &["execpolicy", "check"], dir.path(), &rules, argv);
        let by_us = check(&execgate, &["check"], dir.path(), &rules, argv);
        assert_eq!(
            String::from_utf8_lossy(&by_codex),
            String::from_utf8_lossy(&by_us),
            "{argv:?}"
        );
        let json: serde_json::Value = serde_json::from_slice(&by_codex).unwrap();
        let want = if prefixes.contains(argv) {
            Some("allow")
        } else if argv[0] == "git" {
            Some("forbidden")
        } else {
            None
        };
        assert_eq!(json["decision"].as_str(), want, "{argv:?}: {json}");
        if want == Some("allow") {
            assert_eq!(
                json["matchedRules"][0]["prefixRuleMatch"]["matchedPrefix"],
                serde_json::json!(argv),
                "{json}"
            );
        }
    }
}

/// One writer process: appends its own rules and the shared ones (see below).
#[test]
fn amend_writer_child() {
    let (Some(file), Some(id)) = (
        std::env::var_os("EXECGATE_AMEND_FILE"),
        std::env::var("EXECGATE_AMEND_ID").ok(),
    ) else {
        return; // Only as a child of concurrent_appends_from_two_processes_lose_nothing.
    };
    for i in 0..100 {
        amend::append_prefix_rule(Path::new(&file), &s(&["tool", &id, &i.to_string()])).unwrap();
        if i % 5 == 0 {
            amend::append_prefix_rule(Path::new(&file), &s(&["shared", &i.to_string()])).unwrap();
        }
    }
}

#[test]
fn concurrent_appends_from_two_processes_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules/default.rules");
    let exe = std::env::current_exe().unwrap();
    let writers: Vec<_> = ["a", "b"]
        .iter()
        .map(|id| {
            Command::new(&exe)
                .args(["--exact", "amend_writer_child", "--nocapture"])
                .env("EXECGATE_AMEND_FILE", &file)
                .env("EXECGATE_AMEND_ID", id)
                .spawn()
                .unwrap()
        })
        .collect();
    for mut w in writers {
        assert!(w.wait().unwrap().success());
    }
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let unique: std::collections::BTreeSet<&str> = lines.iter().copied().collect();
    assert_eq!(lines.len(), 200 + 20, "{text}");
    assert_eq!(unique.len(), lines.len(), "a duplicate line: {text}");
    assert!(text.ends_with(")\n"));
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("prefix_rule(pattern=[\"")
                && l.ends_with("], decision=\"allow\")")),
        "{text}"
    );
    let policy = Policy::load(&LoadOptions {
        rules: vec![file.clone()],
        ..LoadOptions::default()
    })
    .unwrap();
    assert_eq!(policy.rule_count(), 220);
}

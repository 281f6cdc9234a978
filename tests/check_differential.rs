//! `execgate check` against the real `codex execpolicy check` (Codex CLI, installed in
//! tests/clients by scripts/setup-clients), side by side on the same rules file, argv, flags
//! and working directory: a corpus of hand-written cases (alternatives, host_executable,
//! network_rule, match/not_match, Starlark features, errors) and seeded random rules and
//! argv. Both load, and print the same bytes on stdout; or both refuse the rules file, at
//! the same `line:column` when Codex reports one. Any other difference fails the test
//! unless it is in [`DELIBERATE`] (mirrored in README's check section).
//!
//! `EXECGATE_CODEX` names another Codex binary; `EXECGATE_DIFF_EXECGATE` another execgate
//! (to measure an older build: then execgate's extra JSON fields are dropped before
//! comparing). Without Codex the test skips, and fails under `EXECGATE_REQUIRE_ALL=1`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use testkit::Rng;

/// The differences kept on purpose, by case name, with the reason (README lists them).
const DELIBERATE: &[(&str, &str)] = &[
    (
        "tilde-host-executable",
        "execgate accepts `~/` in host_executable paths (newer Codex documents it); Codex 0.171 refuses it",
    ),
    (
        "misspelt-option-before-command",
        "Codex takes an unknown option before the command as the command; execgate refuses it (put the command after `--`)",
    ),
    (
        "codex-config-override",
        "Codex's -c/--enable/--disable override its config, which check does not read: execgate refuses them rather than ignore them",
    ),
];

struct Case {
    name: String,
    rules: String,
    argv: Vec<String>,
    resolve: bool,
    /// The working directory, relative to the case's directory when not absolute.
    cwd: &'static str,
    /// Extra flags before the command (both tools get them).
    flags: Vec<&'static str>,
}

fn case(name: &str, rules: &str, command: &str) -> Case {
    Case {
        name: name.to_string(),
        rules: rules.to_string(),
        // Words split on spaces; `''` is an empty argument.
        argv: command
            .split_whitespace()
            .map(|word| if word == "''" { "" } else { word }.to_string())
            .collect(),
        resolve: false,
        cwd: ".",
        flags: Vec::new(),
    }
}

fn resolving(mut c: Case) -> Case {
    c.resolve = true;
    c
}

fn in_dir(mut c: Case, cwd: &'static str) -> Case {
    c.cwd = cwd;
    c
}

const GIT: &str = r#"
prefix_rule(pattern = ["git", ["status", "log"]], decision = "allow", justification = "read-only")
prefix_rule(pattern = ["git", "push"], decision = "prompt")
prefix_rule(pattern = ["git", "push", ["--force", "-f"]], decision = "forbidden", justification = "no force pushes")
prefix_rule(pattern = ["/usr/bin/git", "log"], decision = "forbidden")
"#;

const PINNED: &str = r#"
host_executable(name = "git", paths = ["/usr/bin/git", "/opt/git/bin/git/"])
prefix_rule(pattern = ["git", "status"], decision = "prompt")
prefix_rule(pattern = ["git"], decision = "allow")
"#;

fn corpus() -> Vec<Case> {
    let mut cases = vec![
        // Alternatives and decisions.
        case("alt-first", GIT, "git status"),
        case("alt-second", GIT, "git log --oneline"),
        case("strictest-wins", GIT, "git push -f origin"),
        case("prompt", GIT, "git push origin"),
        case("no-match", GIT, "git commit"),
        case("other-program", GIT, "ls -la"),
        case("program-only", GIT, "git"),
        case("absolute-exact", GIT, "/usr/bin/git log"),
        case("absolute-no-resolve", GIT, "/usr/bin/git status"),
        case("absolute-double-slash", GIT, "/usr//bin/git log"),
        case("absolute-dotdot", GIT, "/usr/local/../bin/git log"),
        resolving(case("resolve-absolute", GIT, "/usr/bin/git status")),
        resolving(case("resolve-shadowed", GIT, "/usr/bin/git log")),
        resolving(case("resolve-double-slash", GIT, "/usr//bin/git push -f")),
        resolving(case("resolve-dotdot", GIT, "/usr/local/../bin/git status")),
        resolving(case("resolve-trailing-slash", GIT, "/usr/bin/git/ status")),
        resolving(case("resolve-dot-relative", GIT, "./git status")),
        resolving(case("resolve-relative", GIT, "bin/git push")),
        resolving(case("resolve-parent", GIT, "../git push --force")),
        resolving(case("resolve-root", GIT, "/ status")),
        resolving(case("resolve-bare", GIT, "git status")),
        // host_executable.
        resolving(case("host-listed", PINNED, "/usr/bin/git status")),
        resolving(case("host-unlisted", PINNED, "/tmp/git status")),
        resolving(case(
            "host-trailing-slash",
            PINNED,
            "/opt/git/bin/git status",
        )),
        resolving(case("host-normalised", PINNED, "/usr/./bin/git status")),
        case("host-no-resolve", PINNED, "/usr/bin/git status"),
        case("host-bare", PINNED, "git status"),
        resolving(in_dir(
            case("host-relative-in-usr", PINNED, "bin/git status"),
            "/usr",
        )),
        resolving(in_dir(case("relative-in-usr", GIT, "bin/git push"), "/usr")),
        case(
            "host-later-replaces",
            r#"host_executable(name = "ls", paths = ["/bin/ls"])
host_executable(name = "ls", paths = ["/usr/bin/ls"])
prefix_rule(pattern = ["ls"])"#,
            "ls",
        ),
        resolving(case(
            "host-later-replaces-resolve",
            r#"host_executable(name = "ls", paths = ["/bin/ls"])
host_executable(name = "ls", paths = ["/usr/bin/ls"])
prefix_rule(pattern = ["ls"])"#,
            "/bin/ls",
        )),
        case(
            "host-wrong-basename",
            r#"host_executable(name = "git", paths = ["/usr/bin/gitk"])"#,
            "git",
        ),
        case(
            "host-relative-path",
            r#"host_executable(name = "git", paths = ["bin/git"])"#,
            "git",
        ),
        case(
            "host-name-with-slash",
            r#"host_executable(name = "bin/git", paths = ["/bin/git"])"#,
            "git",
        ),
        case(
            "tilde-host-executable",
            r#"host_executable(name = "git", paths = ["~/bin/git"])"#,
            "git",
        ),
        // Exact tokens.
        case(
            "rule-double-slash",
            r#"prefix_rule(pattern = ["/usr//bin/git"], decision = "prompt")"#,
            "/usr//bin/git",
        ),
        case(
            "rule-double-slash-other",
            r#"prefix_rule(pattern = ["/usr//bin/git"], decision = "prompt")"#,
            "/usr/bin/git",
        ),
        case(
            "relative-rule-token",
            r#"prefix_rule(pattern = ["./run.sh", "x"], decision = "prompt")"#,
            "./run.sh x y",
        ),
        case(
            "unicode-token",
            r#"prefix_rule(pattern = ["écho", "ü"], decision = "forbidden")"#,
            "écho ü",
        ),
        case(
            "empty-argument",
            r#"prefix_rule(pattern = ["printf", ""], decision = "prompt")"#,
            "printf ''",
        ),
        // match / not_match.
        case(
            "match-ok",
            r#"prefix_rule(pattern = ["npm", ["install", "i"]], match = ["npm i", ["npm", "install", "x"]], not_match = ["npm ci"])"#,
            "npm i left-pad",
        ),
        case(
            "match-fails",
            r#"prefix_rule(pattern = ["npm", ["install", "i"]], match = ["npm ci"])"#,
            "npm ci",
        ),
        case(
            "not-match-fails",
            r#"prefix_rule(pattern = ["npm", "i"], not_match = ["npm i x"])"#,
            "npm i",
        ),
        case(
            "match-relative-program",
            r#"prefix_rule(pattern = ["git", "status"], match = ["./git status"])"#,
            "git status",
        ),
        case(
            "match-absolute-program",
            r#"prefix_rule(pattern = ["git", "status"], match = ["/usr/bin/git status"])"#,
            "git status",
        ),
        case(
            "match-host-excluded",
            r#"host_executable(name = "git", paths = ["/opt/git"])
prefix_rule(pattern = ["git", "status"], match = ["/usr/bin/git status"])"#,
            "git status",
        ),
        case(
            "match-empty-example",
            r#"prefix_rule(pattern = ["git"], match = [""])"#,
            "git",
        ),
        // network_rule.
        case(
            "network-ok",
            r#"network_rule(host = "api.example.com", protocol = "https", decision = "allow")
network_rule(host = "[::1]:8080", protocol = "http", decision = "prompt", justification = "local")
network_rule(host = "example.org:443.", protocol = "socks5_tcp", decision = "forbidden")"#,
            "curl x",
        ),
        case(
            "network-trailing-dot",
            r#"network_rule(host = "example.com.", protocol = "https", decision = "allow")"#,
            "ls",
        ),
    ];
    for (i, host) in [
        "exa mple.com",
        "a?b",
        "a#b",
        ".",
        "..",
        "[::1",
        "[::1]x",
        "[::1]:x",
        "*.example.com",
        "http://a",
        "a/b",
        "",
        " ",
        "a\tb",
        "::1",
        "a:b:c",
        "1.2.3.4:443",
        "LOCALHOST",
        "[fe80::1%eth0]",
    ]
    .iter()
    .enumerate()
    {
        cases.push(case(
            &format!("network-host-{i}"),
            &format!(
                "network_rule(host = {}, protocol = \"https\", decision = \"allow\")",
                starlark_string(host)
            ),
            "ls",
        ));
    }
    for (i, protocol) in ["ftp", "HTTPS", "https_connect", "socks5_udp"]
        .iter()
        .enumerate()
    {
        cases.push(case(
            &format!("network-protocol-{i}"),
            &format!(
                "network_rule(host = \"a.com\", protocol = \"{protocol}\", decision = \"deny\")"
            ),
            "ls",
        ));
    }
    cases.extend([
        // Starlark features.
        case(
            "starlark-loop-and-def",
            r#"
def deny(*words):
    prefix_rule(pattern = list(words), decision = "forbidden")
for sub in ["reset", "clean"]:
    deny("git", sub)
TOOLS = {"cargo": ["build", "test"], "go": ["build"]}
[prefix_rule(pattern = [tool, TOOLS[tool]]) for tool in sorted(TOOLS)]
"#,
            "git clean -fdx",
        ),
        case(
            "starlark-comprehension-match",
            r#"
TOOLS = {"cargo": ["build", "test"], "go": ["build"]}
[prefix_rule(pattern = [tool, TOOLS[tool]]) for tool in sorted(TOOLS)]
"#,
            "cargo test --all",
        ),
        case(
            "starlark-fstring",
            r#"
sub = "status"
prefix_rule(pattern = ["git", f"{sub}"], justification = f"git {sub} reads")
"#,
            "git status",
        ),
        case(
            "first-token-alternatives",
            r#"prefix_rule(pattern = [["python3", "python"], "-V"], decision = "prompt")"#,
            "python -V",
        ),
        case(
            "duplicate-rules",
            r#"prefix_rule(pattern = ["ls"])
prefix_rule(pattern = ["ls"], decision = "prompt")
prefix_rule(pattern = ["ls", "-l"], decision = "allow")"#,
            "ls -l",
        ),
        case(
            "justification-escapes",
            r#"prefix_rule(pattern = ["rm"], decision = "forbidden", justification = "say \"no\" </script> \u00e9\n\t")"#,
            "rm -rf /",
        ),
        // Errors.
        case(
            "error-decision",
            r#"prefix_rule(pattern = ["git"], decision = "maybe")"#,
            "git",
        ),
        case(
            "error-empty-pattern",
            r#"prefix_rule(pattern = [])"#,
            "git",
        ),
        case(
            "error-empty-alternatives",
            r#"prefix_rule(pattern = ["git", []])"#,
            "git",
        ),
        case(
            "error-pattern-type",
            r#"prefix_rule(pattern = ["git", 1])"#,
            "git",
        ),
        case(
            "error-unknown-kwarg",
            r#"prefix_rule(pattern = ["git"], desicion = "allow")"#,
            "git",
        ),
        case(
            "error-empty-justification",
            r#"prefix_rule(pattern = ["git"], justification = "")"#,
            "git",
        ),
        case(
            "error-unknown-function",
            r#"allow_rule(pattern = ["git"])"#,
            "git",
        ),
        case("error-syntax", "prefix_rule(pattern = [\"git\"] x)\n", "git"),
        case(
            "error-eof-mid-call-newline",
            "x = 1\nprefix_rule(\n    pattern = [\"git\"],\n",
            "git",
        ),
        case(
            "error-eof-mid-call",
            "x = 1\nprefix_rule(pattern = [\"git\"]",
            "git",
        ),
        case(
            "error-eof-mid-list",
            "prefix_rule(pattern = [\"git\",\n",
            "git",
        ),
        case("error-runtime", "x = 1 + \"a\"\n", "git"),
        case("empty-file", "", "git"),
        case("comments-only", "# nothing\n\n", "git"),
        // Flags and `--`.
        Case {
            flags: vec!["--pretty"],
            ..case("pretty", GIT, "git push -f")
        },
        Case {
            flags: vec!["--pretty"],
            ..case("pretty-empty", GIT, "cat x")
        },
        case("option-after-program", GIT, "git status --pretty"),
        case("dash-program", GIT, "-x status"),
        Case {
            flags: vec!["--bogus"],
            ..case("misspelt-option-before-command", GIT, "git status")
        },
        Case {
            flags: vec!["-c", "model=\"o3\""],
            ..case("codex-config-override", GIT, "git status")
        },
    ]);
    cases
}

/// `value` as a Starlark string literal.
fn starlark_string(value: &str) -> String {
    serde_json::to_string(value).expect("a string serializes")
}

const RULE_PROGRAMS: &[&str] = &["git", "ls", "/usr/bin/git", "/bin/ls", "npm", "./run"];
const WORDS: &[&str] = &["status", "push", "-f", "--force", "log", "a", "", "i"];
const ARGV_PROGRAMS: &[&str] = &[
    "git",
    "/usr/bin/git",
    "/bin/git",
    "./git",
    "/usr//bin/git",
    "/usr/local/../bin/git",
    "/usr/bin/git/",
    "ls",
    "/bin/ls",
    "/usr/bin/ls",
    "bin/ls",
    "npm",
    "./run",
    "run",
];
const HOST_PATHS: &[&str] = &[
    "/usr/bin/git",
    "/bin/git",
    "/usr/bin/git/",
    "/usr//bin/git",
    "/bin/ls",
    "/usr/bin/ls",
];
const DECISIONS: &[&str] = &["allow", "prompt", "forbidden"];

fn random_token(rng: &mut Rng, alternatives_ok: bool) -> String {
    if alternatives_ok && rng.below(4) == 0 {
        let n = 1 + rng.below(3);
        let alts: Vec<String> = (0..n).map(|_| starlark_string(rng.pick(WORDS))).collect();
        format!("[{}]", alts.join(", "))
    } else {
        starlark_string(rng.pick(WORDS))
    }
}

fn random_case(rng: &mut Rng, index: usize) -> Case {
    let mut rules = String::new();
    if rng.below(3) == 0 {
        for name in ["git", "ls"] {
            if rng.below(2) == 0 {
                let paths: Vec<String> = HOST_PATHS
                    .iter()
                    .filter(|p| p.contains(name) && rng.below(2) == 0)
                    .map(|p| starlark_string(p))
                    .collect();
                rules.push_str(&format!(
                    "host_executable(name = \"{name}\", paths = [{}])\n",
                    paths.join(", ")
                ));
            }
        }
    }
    for _ in 0..1 + rng.below(4) {
        let first = if rng.below(5) == 0 {
            format!(
                "[{}, {}]",
                starlark_string(rng.pick(RULE_PROGRAMS)),
                starlark_string(rng.pick(RULE_PROGRAMS))
            )
        } else {
            starlark_string(rng.pick(RULE_PROGRAMS))
        };
        let mut pattern = vec![first];
        for _ in 0..rng.below(3) {
            pattern.push(random_token(rng, true));
        }
        let mut call = format!("prefix_rule(pattern = [{}]", pattern.join(", "));
        if rng.below(4) != 0 {
            call.push_str(&format!(", decision = \"{}\"", rng.pick(DECISIONS)));
        }
        if rng.below(4) == 0 {
            call.push_str(", justification = \"because\"");
        }
        call.push_str(")\n");
        rules.push_str(&call);
    }
    let mut argv = vec![rng.pick(ARGV_PROGRAMS).to_string()];
    for _ in 0..rng.below(4) {
        argv.push(rng.pick(WORDS).to_string());
    }
    Case {
        name: format!("random-{index}"),
        rules,
        argv,
        resolve: rng.below(2) == 0,
        cwd: if rng.below(4) == 0 { "/usr" } else { "." },
        flags: Vec::new(),
    }
}

/// Codex's binary: `EXECGATE_CODEX`, else the native binary of tests/clients' npm install
/// (`@openai/codex-linux-*/vendor/*/bin/codex`: the `.bin/codex` node wrapper costs a node
/// start per case), else that wrapper.
fn codex() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("EXECGATE_CODEX") {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let modules = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/node_modules");
    let children = |dir: &Path| -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path())
            .collect();
        found.sort();
        found
    };
    for package in children(&modules.join("@openai")) {
        let is_native = package
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("codex-linux-"));
        if is_native {
            for target in children(&package.join("vendor")) {
                let binary = target.join("bin/codex");
                if binary.is_file() {
                    return Some(binary);
                }
            }
        }
    }
    let wrapper = modules.join(".bin/codex");
    wrapper.exists().then_some(wrapper)
}

fn execgate() -> (PathBuf, bool) {
    match std::env::var_os("EXECGATE_DIFF_EXECGATE") {
        Some(path) => (PathBuf::from(path), true),
        None => (PathBuf::from(env!("CARGO_BIN_EXE_execgate")), false),
    }
}

struct Run {
    ok: bool,
    stdout: Vec<u8>,
    stderr: String,
}

fn run(mut command: Command, dir: &Path, cwd: &str) -> Run {
    let cwd = if cwd.starts_with('/') {
        PathBuf::from(cwd)
    } else {
        dir.join(cwd)
    };
    let Output {
        status,
        stdout,
        stderr,
    } = command
        .current_dir(cwd)
        .env("HOME", dir)
        .env("CODEX_HOME", dir.join("codex-home"))
        .env("RUST_BACKTRACE", "0")
        .env_remove("RUST_LOG")
        .output()
        .expect("running a checker");
    Run {
        ok: status.success(),
        stdout,
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// Codex's `--> file:LINE:COL` (the first one), if it reports a position.
fn codex_position(stderr: &str, file: &str) -> Option<String> {
    let mark = format!("--> {file}:");
    let at = stderr.find(&mark)? + mark.len();
    let position: String = stderr[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ':')
        .collect();
    Some(position.trim_end_matches(':').to_string())
}

/// Drops execgate's extra fields (an older build printed them always) and prints the rest
/// with sorted keys, for comparing an older build.
fn strip_extras(stdout: &[u8]) -> Vec<u8> {
    let Ok(text) = std::str::from_utf8(stdout) else {
        return stdout.to_vec();
    };
    let pretty = text.trim_end().contains('\n');
    let Ok(mut value) = serde_json::from_str::<serde_json::Value>(text) else {
        return stdout.to_vec();
    };
    if let Some(object) = value.as_object_mut() {
        object.remove("decidedBy");
        object.remove("heuristics");
        for m in object
            .get_mut("matchedRules")
            .and_then(|r| r.as_array_mut())
            .into_iter()
            .flatten()
        {
            if let Some(inner) = m.get_mut("prefixRuleMatch").and_then(|i| i.as_object_mut()) {
                inner.remove("origin");
            }
        }
    }
    let mut out = if pretty {
        serde_json::to_vec_pretty(&value)
    } else {
        serde_json::to_vec(&value)
    }
    .unwrap_or_default();
    out.push(b'\n');
    out
}

/// Runs one case in both tools; `None` when they agree, else what differs.
fn differ(case: &Case, root: &Path, codex: &Path, index: usize) -> Option<String> {
    let dir = root.join(format!("case-{index}"));
    std::fs::create_dir_all(dir.join("codex-home")).expect("case directory");
    let file = "case.rules";
    std::fs::write(dir.join(file), &case.rules).expect("rules file");
    let rules = dir.join(file);
    let rules = rules.to_string_lossy().into_owned();
    let rules = rules.as_str();

    let mut flags: Vec<&str> = vec!["-r", rules];
    if case.resolve {
        flags.push("--resolve-host-executables");
    }
    flags.extend(&case.flags);

    let mut c = Command::new(codex);
    c.args(["execpolicy", "check"])
        .args(&flags)
        .arg("--")
        .args(&case.argv);
    let codex_run = run(c, &dir, case.cwd);

    let (execgate, older) = execgate();
    let mut e = Command::new(execgate);
    e.arg("check").args(&flags).arg("--").args(&case.argv);
    let mut ours = run(e, &dir, case.cwd);
    let mut codex_run = codex_run;
    if older {
        // Compared as JSON values (key order aside), without execgate's extra fields.
        ours.stdout = strip_extras(&ours.stdout);
        codex_run.stdout = strip_extras(&codex_run.stdout);
    }

    match (codex_run.ok, ours.ok) {
        (true, true) if codex_run.stdout == ours.stdout => None,
        (true, true) => Some(format!(
            "stdout differs:\n  codex:    {}  execgate: {}",
            String::from_utf8_lossy(&codex_run.stdout),
            String::from_utf8_lossy(&ours.stdout)
        )),
        (false, false) => {
            let position = codex_position(&codex_run.stderr, rules)?;
            let ours_at = format!("{rules}:{position}:");
            (!ours.stderr.contains(&ours_at)).then(|| {
                format!(
                    "both refuse the rules, Codex at {position}; execgate: {}",
                    ours.stderr.trim()
                )
            })
        }
        (codex_ok, _) => Some(format!(
            "codex {}, execgate {}:\n  codex:    {}{}\n  execgate: {}{}",
            if codex_ok { "succeeds" } else { "fails" },
            if ours.ok { "succeeds" } else { "fails" },
            String::from_utf8_lossy(&codex_run.stdout),
            codex_run
                .stderr
                .lines()
                .find(|l| l.contains("error"))
                .unwrap_or(""),
            String::from_utf8_lossy(&ours.stdout),
            ours.stderr.trim()
        )),
    }
}

#[test]
fn check_agrees_with_codex_execpolicy_check() {
    let Some(codex) = codex() else {
        testkit::skip(
            "Codex CLI not installed (scripts/setup-clients installs it in tests/clients)",
        );
        return;
    };
    let mut cases = corpus();
    let hand_written = cases.len();
    let mut rng = Rng(0x5eed_e8ec_9a7e_0017);
    for index in 0..300 {
        cases.push(random_case(&mut rng, index));
    }
    let root = tempfile::tempdir().unwrap();

    // Two workers: each case runs two processes, Codex's through node.
    let workers = 2;
    let results: Vec<(usize, Option<String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|worker| {
                let cases = &cases;
                let codex = &codex;
                let root = root.path();
                scope.spawn(move || {
                    (worker..cases.len())
                        .step_by(workers)
                        .map(|i| (i, differ(&cases[i], root, codex, i)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("worker"))
            .collect()
    });

    let mut agreed = 0;
    let mut deliberate = Vec::new();
    let mut failures = Vec::new();
    for (i, difference) in results {
        let case = &cases[i];
        match difference {
            None => agreed += 1,
            Some(what) => {
                if let Some((_, why)) = DELIBERATE.iter().find(|(name, _)| *name == case.name) {
                    deliberate.push(format!("{}: {why}", case.name));
                } else {
                    failures.push(format!(
                        "{} (argv {:?}, resolve {}, cwd {}):\n{}\n  {what}",
                        case.name, case.argv, case.resolve, case.cwd, case.rules
                    ));
                }
            }
        }
    }
    eprintln!(
        "check vs codex execpolicy check: {agreed} of {} cases agree ({hand_written} written, {} random); {} deliberate differences",
        cases.len(),
        cases.len() - hand_written,
        deliberate.len()
    );
    for d in &deliberate {
        eprintln!("  deliberate: {d}");
    }
    // A deliberate difference that no longer differs should leave the list.
    for (name, _) in DELIBERATE {
        assert!(
            deliberate
                .iter()
                .any(|d| d.starts_with(&format!("{name}:"))),
            "{name} is listed as a deliberate difference but the tools agree on it"
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

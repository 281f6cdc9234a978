//! A bounded, deterministic stand-in for the cargo-fuzz targets in `fuzz/` (which need
//! nightly and cargo-fuzz): rules files mutated from the fixtures, and random argv, must
//! load or fail with an error, and evaluate, without ever panicking.

use std::path::Path;

use policy::{LoadError, Policy};
use testkit::Rng;

/// Fragments that steer mutations towards interesting Starlark.
const SNIPPETS: &[&str] = &[
    "(",
    ")",
    "[",
    "]",
    "\"",
    "'",
    ",",
    "=",
    "\n",
    "    ",
    "#",
    "\\",
    "prefix_rule(",
    "pattern",
    "decision",
    "\"forbidden\"",
    "match",
    "not_match",
    "host_executable(",
    "network_rule(",
    "[]",
    "[[]]",
    "None",
    "1",
    "def f():\n    ",
    "for x in [1]:\n    ",
    "lambda: 0",
    "f\"{x}\"",
    "~/",
    "/",
    "\"\"",
    "'''",
    "\u{e9}",
];

fn fixture_sources() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/rules");
    let mut sources = Vec::new();
    for dir in [root.clone(), root.join("dir")] {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "rules"))
            .collect();
        entries.sort();
        for path in entries {
            sources.push(std::fs::read_to_string(path).unwrap());
        }
    }
    sources
}

fn mutate(rng: &mut Rng, source: &str, others: &[String]) -> String {
    let mut bytes = source.as_bytes().to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(5) {
            0 if !bytes.is_empty() => {
                let end = (at + rng.below(8)).min(bytes.len());
                bytes.drain(at.min(end)..end);
            }
            1 => {
                let snippet = SNIPPETS[rng.below(SNIPPETS.len())];
                bytes.splice(at..at, snippet.bytes());
            }
            2 if at < bytes.len() => bytes[at] = u8::try_from(rng.below(128)).unwrap_or(b' '),
            3 => {
                let other = others[rng.below(others.len())].as_bytes();
                let from = rng.below(other.len());
                let to = (from + rng.below(64)).min(other.len());
                bytes.splice(at..at, other[from..to].iter().copied());
            }
            _ => {
                let end = (at + rng.below(16)).min(bytes.len());
                let copy = bytes[at.min(end)..end].to_vec();
                bytes.splice(at..at, copy);
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn exercise(policy: &Policy, rng: &mut Rng) {
    const WORDS: &[&str] = &[
        "git",
        "/usr/bin/git",
        "push",
        "reset",
        "--hard",
        "-f",
        "rm",
        "-rf",
        "/",
        "bash",
        "-lc",
        "sudo",
        "ls && rm -f x",
        "python3",
        "-m",
        "pytest",
        "gh",
        "pr",
        "view",
        "",
        "'",
        "$X",
        "find",
        "-delete",
        "sed",
        "-n",
        "1p",
    ];
    for _ in 0..4 {
        let argv: Vec<String> = (0..=rng.below(6))
            .map(|_| WORDS[rng.below(WORDS.len())].to_string())
            .collect();
        let evaluation = policy.evaluate(&argv[0], &argv);
        let _ = evaluation.to_codex_json();
        assert!(!evaluation.reason().is_empty());
    }
}

#[test]
fn mutated_fixtures_load_or_fail_cleanly() {
    let sources = fixture_sources();
    let mut rng = Rng(0x5EED_0FEC_6A7E);
    let (mut loaded, mut failed) = (0, 0);
    for round in 0..600 {
        let source = mutate(&mut rng, &sources[round % sources.len()], &sources);
        match Policy::from_source("mutant.rules", &source) {
            Ok(policy) => {
                loaded += 1;
                exercise(&policy, &mut rng);
            }
            Err(err) => {
                failed += 1;
                let message = err.to_string();
                assert!(message.starts_with("mutant.rules"), "{message}");
                if let LoadError::Invalid { location, .. } = &err {
                    assert!(location.line >= 1 && location.column >= 1, "{message}");
                }
            }
        }
    }
    // Both outcomes must have been exercised for the loop to mean anything.
    assert!(
        loaded > 20 && failed > 20,
        "loaded {loaded}, failed {failed}"
    );
}

#[test]
fn random_argv_evaluates_with_heuristics() {
    let mut rng = Rng(42);
    let empty = Policy::empty();
    for _ in 0..2000 {
        exercise(&empty, &mut rng);
    }
}

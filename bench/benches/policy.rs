//! Evaluating one command against 10,000 rules takes microseconds: rules are indexed by
//! program, then by token, so the cost follows the command's length, not the rule count.
//! Each case runs `evaluate` (Codex's matching, `execgate check`) and `evaluate_exec` (the
//! supervisor's: deny rules also match by basename) on the same command.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use policy::Policy;

/// 10,000 rules over 1,000 programs (`tool0` .. `tool999`, ten subcommands each), a tenth
/// of them with alternatives in the last position.
const SPREAD: &str = r#"
for p in range(1000):
    for s in range(10):
        if s == 9:
            prefix_rule(pattern = ["tool%d" % p, "sub%d" % s, ["--yes", "-y"]], decision = "prompt")
        else:
            prefix_rule(pattern = ["tool%d" % p, "sub%d" % s])
"#;

/// 10,000 rules for one program: 9,000 `git subN` plus 1,000 `git [xN, yN]` alternatives,
/// all hanging off the same trie node (10,000 edges there: singles and alternatives are
/// both looked up by hash, not scanned).
const ONE_PROGRAM: &str = r#"
for i in range(9000):
    prefix_rule(pattern = ["git", "sub%d" % i, "--flag"], decision = "prompt")
for i in range(1000):
    prefix_rule(pattern = ["git", ["x%d" % i, "y%d" % i]], decision = "forbidden", justification = "no")
"#;

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

fn bench(c: &mut Criterion) {
    let spread = Policy::from_source("spread.rules", SPREAD).expect("spread rules load");
    let one_program =
        Policy::from_source("one-program.rules", ONE_PROGRAM).expect("one-program rules load");
    assert_eq!(spread.rule_count(), 10_000);
    assert_eq!(one_program.rule_count(), 10_000);

    let mut group = c.benchmark_group("evaluate_10k_rules");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));

    // (name, policy, program, argv): each evaluated both ways.
    let spread_match = argv(&["tool500", "sub9", "-y", "--verbose", "target"]);
    let one_match = argv(&["git", "sub8999", "--flag", "x"]);
    let one_deny = argv(&["git", "x999", "--flag"]);
    let one_none = argv(&["git", "status", "--short"]);
    let bash_lc = argv(&["bash", "-lc", "ls -la && git status | wc -l; cargo build"]);
    let cases: [(&str, &Policy, &str, &Vec<String>); 6] = [
        (
            "spread_over_1000_programs/match",
            &spread,
            "tool500",
            &spread_match,
        ),
        (
            "spread_over_1000_programs/match_abs",
            &spread,
            "/usr/bin/tool500",
            &spread_match,
        ),
        (
            "one_program/match",
            &one_program,
            "/usr/bin/git",
            &one_match,
        ),
        (
            "one_program/match_forbidden",
            &one_program,
            "/usr/bin/git",
            &one_deny,
        ),
        (
            "one_program/no_match_heuristics",
            &one_program,
            "git",
            &one_none,
        ),
        (
            "spread_over_1000_programs/bash_lc_heuristics",
            &spread,
            "/bin/bash",
            &bash_lc,
        ),
    ];
    for (name, policy, program, cmd) in cases {
        group.bench_function(name, |b| {
            b.iter(|| black_box(policy.evaluate(black_box(program), black_box(cmd))))
        });
        group.bench_function(format!("{name}/exec"), |b| {
            b.iter(|| black_box(policy.evaluate_exec(black_box(program), black_box(cmd))))
        });
    }
    group.finish();

    let mut load = c.benchmark_group("load");
    load.sample_size(10);
    load.bench_function("10k_rules_from_starlark", |b| {
        b.iter(|| {
            black_box(
                Policy::from_source("spread.rules", black_box(SPREAD)).map(|p| p.rule_count()),
            )
        })
    });
    load.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! Evaluating one command against 10,000 rules takes microseconds: rules are indexed by
//! program, then by token, so the cost follows the command's length, not the rule count.

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

    let cmd = argv(&["tool500", "sub9", "-y", "--verbose", "target"]);
    group.bench_function("spread_over_1000_programs/match", |b| {
        b.iter(|| black_box(spread.evaluate(black_box("tool500"), black_box(&cmd))))
    });

    let cmd = argv(&["git", "sub8999", "--flag", "x"]);
    group.bench_function("one_program/match", |b| {
        b.iter(|| black_box(one_program.evaluate(black_box("/usr/bin/git"), black_box(&cmd))))
    });

    let cmd = argv(&["git", "status", "--short"]);
    group.bench_function("one_program/no_match_heuristics", |b| {
        b.iter(|| black_box(one_program.evaluate(black_box("git"), black_box(&cmd))))
    });

    let cmd = argv(&["bash", "-lc", "ls -la && git status | wc -l; cargo build"]);
    group.bench_function("spread_over_1000_programs/bash_lc_heuristics", |b| {
        b.iter(|| black_box(spread.evaluate(black_box("/bin/bash"), black_box(&cmd))))
    });
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

//! Loading a rules file from arbitrary bytes must never panic: it loads, or it is a
//! `LoadError` whose message names a place in the file.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    match policy::Policy::from_source("fuzz.rules", source) {
        Ok(policy) => {
            // Whatever loaded must evaluate, with rules or heuristics.
            for command in [&["git", "push", "origin"][..], &["/usr/bin/git", "status"], &["rm", "-rf", "/"]] {
                let argv: Vec<String> = command.iter().map(|s| s.to_string()).collect();
                let evaluation = policy.evaluate(&argv[0], &argv);
                let _ = evaluation.to_codex_json();
                let _ = evaluation.reason();
            }
        }
        Err(err) => {
            let _ = err.to_string();
        }
    }
});

//! Evaluating arbitrary argv (NUL-separated in the input) against the fixtures' rules and
//! the heuristics must never panic, whatever the program path or `bash -c` script.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn policy() -> &'static policy::Policy {
    static POLICY: OnceLock<policy::Policy> = OnceLock::new();
    POLICY.get_or_init(|| {
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/rules");
        policy::Policy::load(&policy::LoadOptions {
            rules: ["dir", "git-remote.rules", "git-reset.rules", "python.rules"]
                .iter()
                .map(|name| fixtures.join(name))
                .collect(),
            ..policy::LoadOptions::default()
        })
        .expect("fixtures load")
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let argv: Vec<String> = text.split('\0').map(str::to_string).collect();
    let evaluation = policy().evaluate(&argv[0], &argv);
    let _ = evaluation.to_codex_json();
    let _ = evaluation.reason();
});

//! `execgate-probe [--json]`: prints what [`fn@kernel::detect`] finds, as JSON (the features
//! part of `execgate doctor --json`; the backend choice belongs to the supervisor and is
//! printed by `execgate doctor`). Without `--json` the JSON is pretty-printed. Used by the
//! detection tests that run it under a container-like seccomp filter, and by the
//! kernel-matrix guest when the `execgate` binary is not there.

use std::io::Write;

fn main() {
    let json = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--json") => true,
        Some(other) => {
            eprintln!("usage: execgate-probe [--json] (unknown argument {other:?})");
            std::process::exit(2);
        }
    };
    let features = kernel::detect();
    let text = if json {
        serde_json::to_string(&features)
    } else {
        serde_json::to_string_pretty(&features)
    };
    let Ok(text) = text else {
        std::process::exit(1);
    };
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_all(format!("{text}\n").as_bytes())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        std::process::exit(1);
    }
}

//! `execgate-probe [--json]`: prints what [`features::detect`] finds, as the doctor table
//! or (with `--json`) as the JSON `execgate doctor --json` prints. The kernel-matrix guest
//! runs it until the `execgate` binary has a `doctor` subcommand.

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
    let features = features::detect();
    let text = if json {
        format!("{}\n", features.doctor_json())
    } else {
        features.render_table()
    };
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        std::process::exit(1);
    }
}

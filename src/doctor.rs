//! `execgate doctor`: what this kernel and environment offer, which backend execgate
//! would use, and why not the others.

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let features = features::detect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&features.doctor_json())?);
    } else {
        print!("{}", features.render_table());
    }
    Ok(ExitCode::SUCCESS)
}

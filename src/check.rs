//! `execgate check`: evaluate one command against the exec policy and print the answer as
//! `codex execpolicy check` does (JSON), plus the heuristics' verdict when no rule matched.
//!
//! Exit status 0 whatever the decision; a rules file that does not load is an error
//! (status 2, `file:line:column: what was expected` on stderr).

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;

use crate::session_args::PolicyArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    policy: PolicyArgs,

    /// Pretty-print the JSON.
    #[arg(long)]
    pretty: bool,

    /// The command to check: the program (a bare name or an absolute path), then its
    /// arguments. Put it after `--` (before it, a misspelt option is an error, not the
    /// command).
    #[arg(value_name = "COMMAND", required = true, trailing_var_arg = true)]
    command: Vec<String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let policy = args.policy.load()?;
    // Allow rules that hand out a shell outside the sandbox, each with file:line and what
    // to write instead (on stderr: stdout stays the JSON `codex execpolicy check` prints).
    for warning in policy.lint() {
        eprintln!("execgate: warning: {warning}");
    }

    let Some(program) = args.command.first() else {
        anyhow::bail!("no command to check: give it after `--`");
    };
    let evaluation = policy.evaluate(program, &args.command);
    tracing::debug!(reason = %evaluation.reason(), "evaluated");

    let view = evaluation.codex_view();
    let json = if args.pretty {
        serde_json::to_string_pretty(&view)
    } else {
        serde_json::to_string(&view)
    }
    .context("serializing the evaluation")?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{json}").context("writing to stdout")?;
    Ok(ExitCode::SUCCESS)
}

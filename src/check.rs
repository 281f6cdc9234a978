//! `execgate check`: evaluate one command against the exec policy and print the answer as
//! `codex execpolicy check` does, a drop-in for it: the same flags (`-r/--rules`,
//! `--pretty`, `--resolve-host-executables`), the same matching and the same JSON, byte
//! for byte. execgate's evidence (each rule's origin, who decided, the heuristics'
//! verdict when no rule matched) only with `--explain`.
//!
//! Exit status 0 whatever the decision; a rules file that does not load is an error
//! (status 2, `file:line:column: what was expected` on stderr).

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use policy::{CheckOptions, LoadOptions, Policy};

use crate::session_args::PolicyArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    policy: PolicyArgs,

    /// Pretty-print the JSON.
    #[arg(long)]
    pretty: bool,

    /// Resolve a program given as a path (absolute, or relative to the working directory)
    /// against the rules for its basename, gated by any `host_executable()` definitions
    /// (as `codex execpolicy check --resolve-host-executables`). Without it a rule
    /// matches only the program token exactly as written.
    #[arg(long)]
    resolve_host_executables: bool,

    /// Add execgate's evidence to the JSON: each matched rule's `origin` (file, line),
    /// `decidedBy` (rule or heuristics), and the heuristics' verdict when no rule matched.
    #[arg(long)]
    explain: bool,

    /// Decide as the supervisor decides an exec of PATH (an absolute path) with this argv:
    /// its run-time matching, where a `forbidden` or `prompt` rule matches any path with
    /// its program's basename, whatever `host_executable()` says (execgate's own flag; not
    /// what `codex execpolicy check` answers).
    #[arg(long, value_name = "PATH", value_parser = absolute_path)]
    exec_path: Option<String>,

    /// The command to check: the program (a name or a path), then its arguments. Put it
    /// after `--` (before it, a misspelt option is an error, not the command).
    #[arg(value_name = "COMMAND", required = true, trailing_var_arg = true)]
    command: Vec<String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // As `codex execpolicy check -r FILE`: given rules files, only they are checked. The
    // default directories are loaded only when no --rules is given.
    let default_rules = !args.policy.no_default_rules && args.policy.rules.is_empty();
    let mut options = LoadOptions::from_env(args.policy.rules.clone(), default_rules);
    options.admin_rules.clone_from(&args.policy.admin_rules);
    let policy = Policy::load(&options)?;
    tracing::debug!(rules = policy.rule_count(), sources = ?policy.sources(), "exec policy loaded");
    // Allow rules that hand out a shell outside the sandbox, each with file:line and what
    // to write instead (on stderr: stdout stays the JSON `codex execpolicy check` prints).
    for warning in policy.lint() {
        eprintln!("execgate: warning: {warning}");
    }

    if args.command.is_empty() {
        anyhow::bail!("no command to check: give it after `--`");
    }
    let check = CheckOptions {
        resolve_host_executables: args.resolve_host_executables,
        cwd: std::env::current_dir().ok(),
    };
    let evaluation = match &args.exec_path {
        Some(path) => policy.evaluate_exec(path, &args.command),
        None => policy.evaluate_check(&args.command, &check),
    };
    tracing::debug!(reason = %evaluation.reason(), "evaluated");

    let view = if args.explain {
        evaluation.explained_view()
    } else {
        evaluation.codex_view()
    };
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

fn absolute_path(raw: &str) -> Result<String, String> {
    if raw.starts_with('/') {
        Ok(raw.to_string())
    } else {
        Err(format!("{raw:?} is not an absolute path"))
    }
}

//! `execgate check`: evaluate one command against the exec policy and print the answer as
//! `codex execpolicy check` does, a drop-in for it: the same flags (`-r/--rules`,
//! `--pretty`, `--resolve-host-executables`), the same matching and the same JSON, byte
//! for byte. execgate's evidence (each rule's origin, who decided, the heuristics'
//! verdict when no rule matched) only with `--explain`.
//!
//! A shell script (`bash -c SCRIPT`, `-lc`; also sh, dash, zsh) is looked into as Codex looks
//! into `bash -lc` scripts: a plain one (words, quotes, `&&` `||` `;` `|`, newlines) is split
//! into its commands and each is evaluated; anything else is said to be not split, and why.
//! stdout stays what `codex execpolicy check` prints for the argv itself; the commands'
//! evaluations go to stderr as a note, and into the JSON (`script`) only with `--explain`.
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

    let script =
        shell_script(&args.command).map(|script| Script::evaluate(script, &policy, &check));
    if let Some(script) = &script {
        eprint!("{}", script.note(&args.command[0]));
    }

    let json = if args.explain {
        let view = Explained {
            view: evaluation.explained_view(),
            script: script.as_ref().map(Script::to_json),
        };
        if args.pretty {
            serde_json::to_string_pretty(&view)
        } else {
            serde_json::to_string(&view)
        }
    } else if args.pretty {
        serde_json::to_string_pretty(&evaluation.codex_view())
    } else {
        serde_json::to_string(&evaluation.codex_view())
    }
    .context("serializing the evaluation")?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{json}").context("writing to stdout")?;
    Ok(ExitCode::SUCCESS)
}

/// The script of `SHELL -c SCRIPT` or `SHELL -lc SCRIPT` (bash, sh, dash, zsh, by name or
/// path), as Codex recognises a shell wrapper.
fn shell_script(argv: &[String]) -> Option<&str> {
    let [shell, flag, script] = argv else {
        return None;
    };
    let name = shell.rsplit('/').next().unwrap_or(shell);
    (matches!(name, "bash" | "sh" | "dash" | "zsh") && matches!(flag.as_str(), "-c" | "-lc"))
        .then_some(script.as_str())
}

/// `--explain`'s JSON: the evaluation's fields in their order, then `script`.
#[derive(serde::Serialize)]
struct Explained<'a> {
    #[serde(flatten)]
    view: policy::CodexCheckView<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    script: Option<ScriptJson<'a>>,
}

/// `script` in `--explain`'s JSON.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum ScriptJson<'a> {
    Split {
        split: bool,
        /// The strictest of the commands' decisions.
        decision: Option<policy::Decision>,
        commands: Vec<ScriptCommand<'a>>,
    },
    NotSplit {
        split: bool,
        why: &'static str,
    },
}

/// One command of a script in `--explain`'s JSON.
#[derive(serde::Serialize)]
struct ScriptCommand<'a> {
    command: &'a [String],
    #[serde(flatten)]
    view: policy::CodexCheckView<'a>,
}

/// A shell script looked into: its commands and their evaluations, or why it is not split.
enum Script {
    Split(Vec<(Vec<String>, policy::Evaluation)>),
    NotSplit(&'static str),
}

impl Script {
    fn evaluate(script: &str, policy: &Policy, check: &CheckOptions) -> Script {
        match policy::plain_commands(script) {
            Some(commands) => Script::Split(
                commands
                    .into_iter()
                    .map(|command| {
                        let evaluation = policy.evaluate_check(&command, check);
                        (command, evaluation)
                    })
                    .collect(),
            ),
            None => Script::NotSplit(why_not_plain(script)),
        }
    }

    /// The stderr note: what each command gets, or why the script is not split.
    fn note(&self, shell: &str) -> String {
        let esc = supervisor::approval::escape_control;
        match self {
            Script::Split(commands) => {
                let mut note = format!(
                    "execgate: `{}` runs {} command(s); each exec is decided on its own when it runs:\n",
                    esc(shell),
                    commands.len()
                );
                for (command, evaluation) in commands {
                    note.push_str(&format!(
                        "  {}: {}\n",
                        esc(&supervisor::shown(command)),
                        esc(&evaluation.reason())
                    ));
                }
                note.push_str(
                    "execgate: the JSON on stdout is for the shell's own argv, as `codex execpolicy check` \
                     answers it; --explain adds each command's (`script`)\n",
                );
                note
            }
            Script::NotSplit(why) => format!(
                "execgate: the script is not split into commands ({why}); each exec it makes is \
                 decided when it runs, by the same rules\n"
            ),
        }
    }

    fn to_json(&self) -> ScriptJson<'_> {
        match self {
            Script::Split(commands) => ScriptJson::Split {
                split: true,
                decision: commands.iter().map(|(_, e)| e.decision).max(),
                commands: commands
                    .iter()
                    .map(|(command, evaluation)| ScriptCommand {
                        command,
                        view: evaluation.explained_view(),
                    })
                    .collect(),
            },
            Script::NotSplit(why) => ScriptJson::NotSplit { split: false, why },
        }
    }
}

/// Why `policy::plain_commands` refused a script, in words (the first reason found).
fn why_not_plain(script: &str) -> &'static str {
    let has = |chars: &str| script.chars().any(|c| chars.contains(c));
    if has("$`") {
        "it expands variables or commands (`$`, backquotes)"
    } else if has("<>") {
        "it redirects (`<`, `>`)"
    } else if has("*?[]") {
        "it has glob characters (`*`, `?`, `[`)"
    } else if has("(){}") {
        "it has subshells, groups or functions (`(`, `{`)"
    } else if has("\\!#") {
        "it has escapes, history or comments (`\\`, `!`, `#`)"
    } else if script.contains('&') && !script.contains("&&") {
        "it starts a background job (`&`)"
    } else if script.trim().is_empty() {
        "it is empty"
    } else {
        "it has shell keywords, assignments, unbalanced quotes or an operator without a command"
    }
}

fn absolute_path(raw: &str) -> Result<String, String> {
    if raw.starts_with('/') {
        Ok(raw.to_string())
    } else {
        Err(format!("{raw:?} is not an absolute path"))
    }
}

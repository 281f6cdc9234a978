//! The `execgate` binary: one subcommand per product surface.
//!
//! This file only parses arguments and dispatches; every subcommand lives in its own
//! module and returns the process exit status it wants. No `unsafe` here: kernel calls
//! belong to the `kernel` crate.

#![forbid(unsafe_code)]

mod check;
mod doctor;
mod environment;
mod init;
mod mcp_server;
mod rules;
mod session_args;
mod signals;
mod supervise;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "execgate",
    version,
    about = "A shell for AI agents in which every exec is a decision"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Evaluate one command against the exec policy and print the decision as JSON
    /// (the shape of `codex execpolicy check`).
    Check(check::Args),
    /// List the effective rules, each with its file:line, as a session with the same
    /// flags loads them (admin rules first), and the `host_executable()` definitions.
    Rules(rules::Args),
    /// Run a command (normally `bash -c '...'`) with every exec of its process tree
    /// stopped and decided; prompts are asked on the terminal. Exits with its status.
    Supervise(supervise::Args),
    /// Show which kernel mechanisms are available here, which backend would be used, and
    /// why not the others.
    Doctor(doctor::Args),
    #[command(about = MCP_ABOUT, long_about = MCP_LONG_ABOUT)]
    Mcp(mcp_server::Args),
    /// `supervise` as a container's PID 1 (`ENTRYPOINT ["execgate", "init", "--"]`): also
    /// reaps orphaned zombies, forwards SIGTERM/INT/HUP/QUIT/USR1/USR2 to the tree and
    /// waits for it, then exits with the command's status. `init -- execgate mcp ...`
    /// serves MCP in-process instead (it supervises its own sessions), reaping orphans,
    /// and stops on SIGTERM/SIGINT.
    Init(supervise::Args),
    /// Print a shell completion script, e.g. `execgate completions bash >
    /// /etc/bash_completion.d/execgate` (or `source <(execgate completions bash)`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. `execgate man > /usr/local/share/man/man1/execgate.1`.
    Man,
}

/// `execgate mcp`'s help, also for `init -- execgate mcp --help`.
const MCP_ABOUT: &str = "Serve the `shell` MCP tool on stdin/stdout (logs on stderr): every exec of \
every call is decided, prompts become elicitations";
const MCP_LONG_ABOUT: &str = "Serve the `shell` MCP tool on stdin/stdout (logs on stderr): every exec of \
every call is decided, prompts become elicitations.\n\n\
Under workspace-write the writable roots are the server's working directory (unless it is /) and \
each --writable-root, until the client sends a Codex sandbox state, whose roots apply instead. A \
call's `workdir` is where its command runs, never a writable root.";

fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(args) => check::run(args),
        Command::Rules(args) => rules::run(args),
        Command::Supervise(args) => supervise::run(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Mcp(args) => mcp_server::run(args),
        Command::Init(args) => init::run(args),
        Command::Completions { shell } => {
            let mut cli = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cli, "execgate", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => man_page(),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("execgate: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// The manual: the top-level page with every subcommand's own page appended as a section,
/// so `man execgate` shows all the flags in one place.
fn man_page() -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let cli = <Cli as clap::CommandFactory>::command();
    let mut out = Vec::new();
    clap_mangen::Man::new(cli.clone()).render(&mut out)?;
    for sub in cli.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("execgate {}", sub.get_name());
        let mut page = Vec::new();
        let sub = sub
            .clone()
            .display_name(name.clone())
            .bin_name(name.clone());
        clap_mangen::Man::new(sub)
            .title(name.to_uppercase())
            .render(&mut page)?;
        // Only the sections: drop the page header (`.TH`) of each appended page.
        let text = String::from_utf8_lossy(&page);
        out.extend_from_slice(format!(".SH \"{}\"\n", name.to_uppercase()).as_bytes());
        for line in text
            .lines()
            .filter(|l| !l.starts_with(".TH") && !l.starts_with(".ie") && !l.starts_with(".el"))
        {
            let line = line
                .strip_prefix(".SH ")
                .map_or(line.to_owned(), |h| format!(".SS {h}"));
            out.extend_from_slice(line.as_bytes());
            out.push(b'\n');
        }
    }
    std::io::stdout().write_all(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// Logs go to stderr only: stdout belongs to the command (and to MCP's JSON-RPC). The level
/// comes from `EXECGATE_LOG`, else `RUST_LOG`, else `warn`; colour only on a terminal (and
/// never with `NO_COLOR`), so a log file or an MCP client's stderr capture gets plain text.
fn init_logging() {
    use std::io::IsTerminal;
    let filter = ["EXECGATE_LOG", "RUST_LOG"]
        .iter()
        .find_map(|var| {
            std::env::var(var)
                .ok()
                .filter(|v| !v.is_empty())
                .and_then(|v| tracing_subscriber::EnvFilter::try_new(v).ok())
        })
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("warn"));
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
}

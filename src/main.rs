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
        Command::Supervise(args) => supervise::run(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Mcp(args) => mcp_server::run(args),
        Command::Init(args) => init::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("execgate: {err:#}");
            ExitCode::from(2)
        }
    }
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

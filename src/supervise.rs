//! `execgate supervise -- CMD ARGS...`: run one command under the supervisor, asking on the
//! terminal, and exit with its status.

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use supervisor::{Approval, ApprovalRequest, Approver, SessionError, SessionSpec, SessionStdio};

use crate::session_args::{SessionArgs, existing_dir};
use crate::signals;

/// Exit status when the command is not found, as `timeout(1)`.
const NOT_FOUND_STATUS: u8 = 127;

/// Exit status for a command stopped by `--timeout`, as `timeout(1)`.
const TIMEOUT_STATUS: u8 = 124;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub session: SessionArgs,

    /// What to do when the policy says "prompt": ask on the terminal (/dev/tty; with no
    /// terminal, deny and say so), or answer allow or deny without asking.
    #[arg(long, value_enum, default_value_t = OnPrompt::Ask)]
    on_prompt: OnPrompt,

    /// Run the command through a login shell: `bash -lc 'CMD ARGS'`.
    #[arg(long)]
    login: bool,

    /// Working directory of the command (default: the current directory); writable under
    /// workspace-write.
    #[arg(long, value_name = "DIR")]
    workdir: Option<PathBuf>,

    /// Kill the whole tree after this many seconds (time spent waiting for a person
    /// does not count); exit status 124.
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<f64>,

    /// The command, normally `bash -c 'SCRIPT'`. Put it after `--`; an option of its own
    /// before `--` is taken for one of execgate's (a misspelt one is an error).
    #[arg(value_name = "COMMAND", required = true, trailing_var_arg = true)]
    command: Vec<String>,
}

impl Args {
    /// The command after `--`.
    pub(crate) fn command(&self) -> &[String] {
        &self.command
    }

    /// The flags given (anything but the command), by name: `init` refuses them when its
    /// command is the MCP server, which takes its flags after `mcp`.
    pub(crate) fn flags_given(&self) -> Vec<&'static str> {
        let mut given = self.session.given();
        for (is_given, name) in [
            (self.on_prompt != OnPrompt::Ask, "--on-prompt"),
            (self.login, "--login"),
            (self.workdir.is_some(), "--workdir"),
            (self.timeout.is_some(), "--timeout"),
        ] {
            if is_given {
                given.push(name);
            }
        }
        given
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OnPrompt {
    Ask,
    Allow,
    Deny,
}

/// How the session's end and the signals we receive are handled (see `crate::signals`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `supervise`: SIGINT/SIGTERM are passed on and execgate exits at once (130/143).
    Supervise,
    /// `init`: PID 1's duties: signals forwarded, orphans reaped, the command waited for.
    Init,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    run_as(args, Mode::Supervise)
}

pub(crate) fn run_as(args: Args, mode: Mode) -> anyhow::Result<ExitCode> {
    let config = args.session.config()?;
    let workdir = match &args.workdir {
        Some(dir) => existing_dir("--workdir", dir)?,
        None => std::env::current_dir().context("the current directory")?,
    };
    let argv = if args.login {
        vec![
            "bash".into(),
            "-lc".into(),
            supervisor::shown(&args.command),
        ]
    } else {
        args.command.clone()
    };
    let approver: Arc<dyn Approver> = match args.on_prompt {
        OnPrompt::Ask => Arc::new(TerminalApprover::default()),
        OnPrompt::Allow => Arc::new(FixedApprover(Approval::Allow)),
        OnPrompt::Deny => Arc::new(FixedApprover(Approval::Deny {
            reason: "prompts are answered \"deny\" (--on-prompt deny)".into(),
        })),
    };
    let timeout = match args.timeout {
        Some(secs) if secs.is_finite() && secs > 0.0 => Some(Duration::from_secs_f64(secs)),
        Some(secs) => anyhow::bail!("--timeout {secs}: must be a positive number of seconds"),
        None => None,
    };

    // On a terminal the session stays in its foreground group, so it can read the terminal
    // and Ctrl-C reaches it directly, as with any program run from a shell.
    let on_terminal = std::io::stdin().is_terminal();
    let stdio = if on_terminal {
        SessionStdio::InheritForeground
    } else {
        SessionStdio::Inherit
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        // Before the command starts: a SIGTERM that arrives once it runs must not find
        // PID 1 without a handler.
        let init_signals = match mode {
            Mode::Init => Some(signals::InitSignals::install()?),
            Mode::Supervise => None,
        };
        let supervisor = args.session.supervisor()?;
        let session = supervisor.spawn(SessionSpec {
            argv,
            workdir,
            env: config.env,
            inherit_env: false,
            sandbox: config.sandbox,
            limits: config.limits,
            cgroup_limits: config.cgroup_limits,
            timeout,
            stdio,
            approver,
        });
        let session = match session {
            Ok(session) => session,
            // As timeout(1), env and nice: 127 when the command is not found.
            Err(err @ SessionError::NotFound(_)) => {
                eprintln!("execgate: {err}");
                return Ok(ExitCode::from(NOT_FOUND_STATUS));
            }
            Err(err) => return Err(err.into()),
        };
        let signaller = session.signaller();
        let outcome = match init_signals {
            None => match signals::wait_supervised(session, &signaller, on_terminal).await? {
                Ok(outcome) => outcome,
                Err(code) => return Ok(code),
            },
            Some(incoming) => {
                signals::wait_as_init(session, &signaller, on_terminal, incoming).await?
            }
        };
        if outcome.timed_out {
            eprintln!(
                "execgate: timed out after {:.1}s; the command's process tree was killed",
                timeout.unwrap_or_default().as_secs_f64()
            );
            return Ok(ExitCode::from(TIMEOUT_STATUS));
        }
        Ok(ExitCode::from(
            u8::try_from(outcome.status.code() & 0xff).unwrap_or(255),
        ))
    })
}

/// Answers every prompt the same way.
#[derive(Debug)]
struct FixedApprover(Approval);

impl Approver for FixedApprover {
    fn ask(&self, _request: ApprovalRequest) -> supervisor::approval::ApprovalFuture<'_> {
        let answer = self.0.clone();
        Box::pin(async move { answer })
    }
}

/// Asks on `/dev/tty`, one question at a time.
#[derive(Debug, Default)]
struct TerminalApprover {
    one_at_a_time: tokio::sync::Mutex<()>,
}

impl Approver for TerminalApprover {
    fn ask(&self, request: ApprovalRequest) -> supervisor::approval::ApprovalFuture<'_> {
        Box::pin(async move {
            let _turn = self.one_at_a_time.lock().await;
            tokio::task::spawn_blocking(move || ask_on_tty(&request))
                .await
                .unwrap_or_else(|e| Approval::Deny {
                    reason: format!("asking on the terminal failed: {e}"),
                })
        })
    }
}

fn ask_on_tty(request: &ApprovalRequest) -> Approval {
    let tty = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
    {
        Ok(tty) => tty,
        Err(err) => {
            return Approval::Deny {
                reason: format!(
                    "needs a person's approval, but there is no terminal to ask on ({err}); \
                     use --on-prompt allow|deny"
                ),
            };
        }
    };
    let mut out = &tty;
    let question = format!(
        "\nexecgate: allow `{}` in {}?\n  why asked: {}\n  [y]es / [a]lways in this session / [N]o: ",
        supervisor::shown(&request.argv),
        request.cwd.display(),
        request.evaluation.reason(),
    );
    if out.write_all(question.as_bytes()).is_err() {
        return Approval::Deny {
            reason: "could not write the question to the terminal".into(),
        };
    }
    let mut line = String::new();
    if BufReader::new(&tty).read_line(&mut line).is_err() {
        return Approval::Deny {
            reason: "could not read an answer from the terminal".into(),
        };
    }
    match line.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Approval::Allow,
        "a" | "always" => Approval::AllowForSession,
        _ => Approval::Deny {
            reason: "denied by the person at the terminal".into(),
        },
    }
}

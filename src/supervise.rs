//! `execgate supervise -- CMD ARGS...`: run one command under the supervisor, asking on the
//! terminal, and exit with its status.

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use supervisor::{
    Approval, ApprovalRequest, Approver, SandboxMode, SandboxPolicy, SessionError, SessionSpec,
    SessionStdio, Signal, Supervisor, SupervisorOptions,
};

use crate::policy_args::{BackendArgs, PolicyArgs};

/// Exit status when the command is not found, as `timeout(1)`.
const NOT_FOUND_STATUS: u8 = 127;

/// Exit status for a command stopped by `--timeout`, as `timeout(1)`.
const TIMEOUT_STATUS: u8 = 124;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    policy: PolicyArgs,

    /// What to do when the policy says "prompt": ask on the terminal (/dev/tty; with no
    /// terminal, deny and say so), or answer allow or deny without asking.
    #[arg(long, value_enum, default_value_t = OnPrompt::Ask)]
    on_prompt: OnPrompt,

    /// Append one JSON line per exec to FILE.
    #[arg(long, value_name = "FILE")]
    audit: Option<PathBuf>,

    #[command(flatten)]
    backend: BackendArgs,

    /// Run the command through a login shell: `bash -lc 'CMD ARGS'`.
    #[arg(long)]
    login: bool,

    /// Working directory of the command (default: the current directory).
    #[arg(long, value_name = "DIR")]
    workdir: Option<PathBuf>,

    /// Sandbox for allowed execs: read-only, workspace-write, danger-full-access.
    #[arg(long, default_value = "workspace-write", value_name = "MODE")]
    sandbox: SandboxMode,

    /// Extra writable directory for workspace-write (repeatable).
    #[arg(long = "writable-root", value_name = "DIR")]
    writable_roots: Vec<PathBuf>,

    /// Allow network access inside the sandbox.
    #[arg(long)]
    network: bool,

    /// Refuse to run unless the sandbox is fully enforced on this kernel.
    #[arg(long)]
    require_sandbox: bool,

    /// A resource limit for every process of the session, as NAME=VALUE (repeatable):
    /// as, cpu (seconds), fsize, nproc, nofile, core; sizes take K, M, G, T; `unlimited`
    /// keeps the inherited limit. Defaults: fsize=64G, nofile=1024, core=0.
    #[arg(long = "limit", value_name = "NAME=VALUE", value_parser = supervisor::ResourceLimits::check_spec)]
    limits: Vec<String>,

    /// Kill the whole tree after this many seconds (time spent waiting for a person
    /// does not count); exit status 124.
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<f64>,

    /// The command, normally `bash -c 'SCRIPT'`. Put it after `--`.
    #[arg(
        value_name = "COMMAND",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    command: Vec<String>,
}

impl Args {
    /// The command after `--`.
    pub(crate) fn command(&self) -> &[String] {
        &self.command
    }

    /// The session flags given (anything but the command), by name: `init` refuses them
    /// when its command is the MCP server, which has flags of its own.
    pub(crate) fn session_flags_given(&self) -> Vec<&'static str> {
        let given = [
            (!self.policy.rules.is_empty(), "--rules"),
            (self.policy.no_default_rules, "--no-default-rules"),
            (self.on_prompt != OnPrompt::Ask, "--on-prompt"),
            (self.audit.is_some(), "--audit"),
            (self.login, "--login"),
            (self.workdir.is_some(), "--workdir"),
            (self.sandbox != SandboxMode::WorkspaceWrite, "--sandbox"),
            (!self.writable_roots.is_empty(), "--writable-root"),
            (self.network, "--network"),
            (self.require_sandbox, "--require-sandbox"),
            (self.timeout.is_some(), "--timeout"),
            (!self.limits.is_empty(), "--limit"),
            (
                self.backend.backend != supervisor::BackendRequest::Auto,
                "--backend",
            ),
            (self.backend.patched_bash.is_some(), "--patched-bash"),
        ];
        given
            .into_iter()
            .filter_map(|(given, name)| given.then_some(name))
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OnPrompt {
    Ask,
    Allow,
    Deny,
}

/// How the session's end and the signals we receive are handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `supervise`: SIGINT/SIGTERM are passed on and execgate exits at once (130/143);
    /// dropping the session kills what is left.
    Supervise,
    /// `init`: the duties of PID 1 (see `crate::init`): every forwardable signal is passed
    /// on and execgate keeps waiting for the command, whose status it exits with;
    /// orphans re-parented to execgate are reaped on SIGCHLD.
    Init,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    run_as(args, Mode::Supervise)
}

pub(crate) fn run_as(args: Args, mode: Mode) -> anyhow::Result<ExitCode> {
    let policy = Arc::new(args.policy.load()?);
    let workdir = match &args.workdir {
        Some(dir) => {
            std::path::absolute(dir).with_context(|| format!("workdir {}", dir.display()))?
        }
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
    let sandbox = SandboxPolicy {
        writable_roots: args.writable_roots.clone(),
        network: args.network,
        require_full: args.require_sandbox,
        ..SandboxPolicy::new(args.sandbox)
    };
    let limits = supervisor::ResourceLimits::from_specs(&args.limits)?;
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
        // PID 1 without a handler (ignored) or any other execgate with the default one.
        let init_signals = match mode {
            Mode::Init => Some(crate::init::Signals::install()?),
            Mode::Supervise => None,
        };
        let supervisor = Supervisor::new(
            policy,
            SupervisorOptions {
                audit: args.audit.clone(),
                backend: args.backend.backend,
                patched_bash: args.backend.patched_bash.clone(),
                ..Default::default()
            },
        )?;
        if let Some(notice) = supervisor.notice() {
            eprintln!("{notice}");
        }
        let session = supervisor.spawn(SessionSpec {
            argv,
            workdir,
            env: Vec::new(),
            sandbox,
            limits,
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
        let signals = session.signaller();
        let outcome = match mode {
            Mode::Supervise => match supervise_signals(session, &signals, on_terminal).await? {
                Ok(outcome) => outcome,
                Err(code) => return Ok(code),
            },
            Mode::Init => {
                let incoming = init_signals.expect("installed for Mode::Init");
                crate::init::wait_as_init(session, &signals, on_terminal, incoming).await?
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

/// Waits for the session; SIGINT/SIGTERM go to the tree and end execgate at once
/// (`Err(status)`), after which dropping the session kills whatever is left.
async fn supervise_signals(
    session: supervisor::Session,
    signals: &supervisor::Signaller,
    on_terminal: bool,
) -> anyhow::Result<Result<supervisor::SessionOutcome, ExitCode>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let wait = session.wait();
    tokio::pin!(wait);
    // Asked to stop: the signal goes to the tree first so programs that clean up on it
    // can; then dropping the session kills whatever is left.
    loop {
        tokio::select! {
            outcome = &mut wait => return Ok(Ok(outcome?)),
            _ = sigint.recv() => {
                // On a terminal the session got the same Ctrl-C; it decides.
                if on_terminal {
                    continue;
                }
                signals.send(Signal::Interrupt);
                return Ok(Err(ExitCode::from(130)));
            }
            _ = sigterm.recv() => {
                signals.send(Signal::Terminate);
                return Ok(Err(ExitCode::from(143)));
            }
        }
    }
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

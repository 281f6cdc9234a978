//! `execgate supervise -- CMD ARGS...`: run one command under the supervisor, asking on the
//! terminal, and exit with its status.

use std::fs::File;
use std::io::{IsTerminal, Read, Write};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use anyhow::Context;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::termios::{
    self, FlushArg, InputFlags, LocalFlags, SetArg, SpecialCharacterIndices, Termios,
};
use supervisor::approval::RuleOffer;
use supervisor::terminal::{Paused, Relay, RelayHandle};
use supervisor::{Approval, ApprovalRequest, Approver, SessionError, SessionSpec, SessionStdio};
use tokio::signal::unix::{SignalKind, signal};

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

    /// Kill the whole tree after this many seconds (time spent waiting for a person does
    /// not count; --prompt-timeout bounds that); exit status 124.
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<f64>,

    /// `auto`: when stdin, stdout or stderr is a terminal, the session gets a
    /// pseudo-terminal of its own, relayed by execgate (as sudo's use_pty): it cannot
    /// change the person's terminal settings, read keys typed at a question, or hold the
    /// person's terminal. `never`: the session shares the person's terminal.
    #[arg(long, value_enum, default_value_t = Pty::Auto)]
    pty: Pty,

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
            (self.pty != Pty::Auto, "--pty"),
        ] {
            if is_given {
                given.push(name);
            }
        }
        given
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Pty {
    Auto,
    Never,
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
    // On a terminal the session gets one of its own, relayed (`--pty auto`); or
    // (`--pty never`) it stays in the person's terminal's foreground group, so it can read
    // the terminal and Ctrl-C reaches it directly, as with any program run from a shell.
    let (relay, stdio) = match args.pty {
        Pty::Auto => match Relay::start(mode == Mode::Supervise) {
            Ok(Some((relay, stdio))) => (Some(relay), stdio),
            Ok(None) => (None, SessionStdio::Inherit),
            Err(err) => {
                eprintln!(
                    "execgate: could not give the session a terminal of its own ({err}); it \
                     shares yours"
                );
                (None, shared_terminal())
            }
        },
        Pty::Never => (None, shared_terminal()),
    };
    let relay_handle = relay.as_ref().map(Relay::handle);
    // Finished (drained, the person's settings back) once the session ended, before
    // execgate says anything of its own; dropped on every other way out.
    let relay = std::sync::Mutex::new(relay);
    let end_relay = || {
        if let Some(relay) = relay.lock().ok().and_then(|mut r| r.take()) {
            relay.finish();
        }
    };
    let on_terminal = stdio == SessionStdio::InheritForeground;
    // A person who ends the session at a question (Ctrl-C, SIGTERM) is heard here.
    let (ended, mut ended_at_question) = tokio::sync::watch::channel(None::<u8>);
    let approver: Arc<dyn Approver> = match args.on_prompt {
        OnPrompt::Ask => Arc::new(TerminalApprover {
            one_at_a_time: tokio::sync::Mutex::new(()),
            prompt_timeout: config.prompt_timeout,
            ended,
            amend_rules: config.amend_rules.clone(),
            relay: relay_handle.clone(),
        }),
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

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(async move {
        // Before the command starts: a SIGTERM that arrives once it runs must not find
        // PID 1 without a handler.
        let init_signals = match mode {
            Mode::Init => Some(signals::InitSignals::install()?),
            Mode::Supervise => None,
        };
        if let Some(handle) = relay_handle {
            tokio::spawn(async move {
                let Ok(mut resized) = signal(SignalKind::window_change()) else {
                    return;
                };
                while resized.recv().await.is_some() {
                    handle.copy_window_size();
                }
            });
        }
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
                end_relay();
                eprintln!("execgate: {err}");
                return Ok(ExitCode::from(NOT_FOUND_STATUS));
            }
            Err(err) => {
                end_relay();
                return Err(err.into());
            }
        };
        let signaller = session.signaller();
        let waiting = async {
            match init_signals {
                None => signals::wait_supervised(session, &signaller, on_terminal).await,
                Some(incoming) => signals::wait_as_init(session, &signaller, on_terminal, incoming)
                    .await
                    .map(Ok),
            }
        };
        // Ctrl-C or SIGTERM at a question: denied, and the session ends (dropping it kills
        // the tree) with 130/143 as the shell would report.
        let outcome = tokio::select! {
            waited = waiting => match waited? {
                Ok(outcome) => outcome,
                Err(code) => return Ok(code),
            },
            Ok(status) = ended_at_question.wait_for(Option::is_some) => {
                let code = (*status).unwrap_or(130);
                return Ok(ExitCode::from(code));
            }
        };
        end_relay();
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
    });
    // A question's reader is called off when its session goes; do not wait long for it.
    runtime.shutdown_timeout(Duration::from_secs(1));
    end_relay();
    result
}

/// `--pty never` (or no pseudo-terminal to be had): the session shares the person's
/// terminal, in its foreground group, when stdin is one.
fn shared_terminal() -> SessionStdio {
    if std::io::stdin().is_terminal() {
        SessionStdio::InheritForeground
    } else {
        SessionStdio::Inherit
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

    fn ask_host(
        &self,
        _request: supervisor::HostRequest,
    ) -> supervisor::approval::ApprovalFuture<'_> {
        let answer = self.0.clone();
        Box::pin(async move { answer })
    }

    fn asks_a_person(&self) -> bool {
        false
    }
}

/// Why a question stopped waiting for its answer (see [`TerminalApprover`]).
const STILL_ASKING: u8 = 0;
/// The session ended (the question's future was dropped).
const GONE: u8 = 1;
/// The person pressed Ctrl-C.
const INTERRUPTED: u8 = 2;
/// execgate got SIGTERM.
const TERMINATED: u8 = 3;

/// How often the reader looks whether its question was called off.
const POLL_TICK: Duration = Duration::from_millis(100);

/// Asks on the controlling terminal (`/dev/tty`, opened by execgate itself, never the
/// session's stdin), one question at a time.
///
/// Input typed before the question is shown is discarded (`tcflush`), so whatever the
/// session (or a stray key press) left in the terminal's queue cannot answer it. A question
/// nobody answers within the prompt timeout is denied. Ctrl-C or SIGTERM while it waits
/// denies it and ends the session (130/143, through `ended`).
#[derive(Debug)]
struct TerminalApprover {
    one_at_a_time: tokio::sync::Mutex<()>,
    prompt_timeout: Duration,
    /// Set to the exit status when a person ended the session at a question.
    ended: tokio::sync::watch::Sender<Option<u8>>,
    /// Where "r" stores its rule (`--amend-rules`, Codex's default file); `None`: not offered.
    amend_rules: Option<PathBuf>,
    /// The session's own terminal: paused while a question is on screen.
    relay: Option<RelayHandle>,
}

/// Appends the rule "r" chose; what happened, for the terminal.
fn store(offer: &RuleOffer) -> String {
    match policy::amend::append_prefix_rule(&offer.file, &offer.prefix) {
        Ok(policy::amend::Appended::Added) => {
            format!("execgate: added to {}\n", offer.file.display())
        }
        Ok(policy::amend::Appended::AlreadyPresent) => {
            format!("execgate: already in {}\n", offer.file.display())
        }
        Err(err) => format!(
            "execgate: the rule was NOT stored ({}); allowed for this session only\n",
            supervisor::approval::escape_control(&err.to_string())
        ),
    }
}

/// Tells the blocking reader to stop when the question's future is dropped.
struct CallOff(Arc<AtomicU8>);

impl Drop for CallOff {
    fn drop(&mut self) {
        let _ = self
            .0
            .compare_exchange(STILL_ASKING, GONE, Ordering::SeqCst, Ordering::SeqCst);
    }
}

impl Approver for TerminalApprover {
    fn ask(&self, request: ApprovalRequest) -> supervisor::approval::ApprovalFuture<'_> {
        let offer = RuleOffer::for_request(&request, self.amend_rules.as_ref());
        self.ask_question(
            question(&request, offer.as_ref(), self.prompt_timeout),
            offer,
        )
    }

    fn ask_host(
        &self,
        request: supervisor::HostRequest,
    ) -> supervisor::approval::ApprovalFuture<'_> {
        self.ask_question(host_question(&request, self.prompt_timeout), None)
    }
}

impl TerminalApprover {
    /// Shows `text` on the terminal and reads the answer (see the type's doc); `offer`: the
    /// rule "r" would remember.
    fn ask_question(
        &self,
        text: String,
        offer: Option<RuleOffer>,
    ) -> supervisor::approval::ApprovalFuture<'_> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + self.prompt_timeout;
            // A question queued behind another one waits within its own time limit.
            let Ok(_turn) = tokio::time::timeout_at(deadline, self.one_at_a_time.lock()).await
            else {
                return not_answered(self.prompt_timeout);
            };
            let (Ok(mut sigint), Ok(mut sigterm)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return Approval::Deny {
                    reason: "could not watch for Ctrl-C while asking: denied".into(),
                };
            };
            let state = Arc::new(AtomicU8::new(STILL_ASKING));
            let call_off = CallOff(state.clone());
            let limit = self.prompt_timeout;
            let deadline = deadline.into_std();
            let relay = self.relay.clone();
            let mut reader = tokio::task::spawn_blocking(move || {
                // Nothing typed goes to the session, nothing it prints lands in the
                // question, until answered; the question is asked in the person's own
                // (cooked) settings, not the relay's raw mode.
                let paused = relay.as_ref().map(RelayHandle::pause);
                let cooked = paused.as_ref().and_then(Paused::cooked);
                ask_on_tty(text, offer.as_ref(), deadline, limit, &state, cooked)
            });
            let stop = |why: u8, status: u8| {
                let _ = call_off.0.compare_exchange(
                    STILL_ASKING,
                    why,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                );
                self.ended.send_replace(Some(status));
            };
            let answer = tokio::select! {
                answer = &mut reader => answer.unwrap_or_else(|e| Approval::Deny {
                    reason: format!("asking on the terminal failed: {e}"),
                }),
                _ = sigint.recv() => {
                    stop(INTERRUPTED, 130);
                    reader.await.unwrap_or(Approval::Deny { reason: "interrupted".into() })
                }
                _ = sigterm.recv() => {
                    stop(TERMINATED, 143);
                    reader.await.unwrap_or(Approval::Deny { reason: "terminated".into() })
                }
            };
            drop(call_off);
            answer
        })
    }
}

fn not_answered(limit: Duration) -> Approval {
    Approval::Deny {
        reason: format!(
            "nobody answered the question within {}s (--prompt-timeout): denied",
            limit.as_secs_f64()
        ),
    }
}

/// The question as the person sees it; every piece that comes from the session (argv,
/// paths) has its control characters escaped.
fn question(request: &ApprovalRequest, offer: Option<&RuleOffer>, limit: Duration) -> String {
    let esc = supervisor::approval::escape_control;
    let mut q = format!(
        "\nexecgate: allow `{}`?\n",
        esc(&supervisor::shown(&request.argv))
    );
    q += &format!("  program: {}\n", esc(&request.program.to_string_lossy()));
    if let Some(argv0) = request.differing_argv0() {
        q += &format!("  argv[0]: {argv0}  (not the program's name: it may change what it does)\n");
    }
    q += &format!("  in:      {}\n", esc(&request.cwd.to_string_lossy()));
    for (name, value) in &request.passed_env {
        q += &format!(
            "  passes:  {}={}  (--escalate-env)\n",
            esc(name),
            esc(value)
        );
    }
    if request.escalates() {
        q += "  runs:    OUTSIDE the sandbox, with execgate's own rights (a rule asked)\n";
    } else {
        q += "  runs:    inside the sandbox\n";
    }
    q += &format!("  why:     {}\n", esc(&request.evaluation.reason()));
    let choices = match offer {
        None => "y/a/n",
        Some(offer) => {
            q += &format!(
                "  r = remember: also append to {} (read by later sessions and by Codex):\n      {}\n    \
                 from then on this command, and any that starts with these words, runs without \
                 asking, OUTSIDE the sandbox\n",
                esc(&offer.file.to_string_lossy()),
                esc(&offer.line)
            );
            "y/a/r/n"
        }
    };
    q += &format!(
        "  y = yes, this once   a = always: this exact command line, until this session ends   n = no\n  \
         (no answer within {}s means no) [{choices}]: ",
        limit.as_secs_f64()
    );
    q
}

/// "r" (remember), typed where a rule is offered.
fn wants_rule(line: &str) -> bool {
    matches!(line.trim().to_ascii_lowercase().as_str(), "r" | "remember")
}

/// The question about a host (a `prompt` host rule, asked by the egress proxy); the host
/// comes from the session and is escaped.
fn host_question(request: &supervisor::HostRequest, limit: Duration) -> String {
    let esc = supervisor::approval::escape_control;
    format!(
        "\nexecgate: allow the sandbox to connect to `{}:{}`?\n  why:     {}\n  \
         y = yes, this connection   a = always: this host and port, until this session ends   n = no\n  \
         (no answer within {}s means no) [y/a/n]: ",
        esc(&request.host),
        request.port,
        esc(&request.why),
        limit.as_secs_f64()
    )
}

/// What a line typed at the question means; `None` for anything else (asked again).
fn parse_answer(line: &str) -> Option<Approval> {
    match line.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Some(Approval::Allow),
        "a" | "always" => Some(Approval::AllowForSession),
        "n" | "no" => Some(Approval::Deny {
            reason: "denied by the person at the terminal".into(),
        }),
        _ => None,
    }
}

/// Puts the terminal's line discipline back as it was when dropped.
struct RestoreTermios<'a> {
    tty: &'a File,
    saved: Option<Termios>,
}

impl Drop for RestoreTermios<'_> {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = termios::tcsetattr(self.tty, SetArg::TCSANOW, saved);
        }
    }
}

/// A line discipline a person can answer in, whatever the session set: canonical input,
/// echo, Ctrl-C as a signal, Enter as the end of a line, and no extra end-of-line
/// characters (which the session could have set to cut an answer short). Built on `base`
/// (the person's own settings, under the relay's raw mode) or on the current ones.
/// Returns the settings to put back.
fn answerable(tty: &File, base: Option<Termios>) -> Option<Termios> {
    let saved = termios::tcgetattr(tty).ok()?;
    let mut t = base.unwrap_or_else(|| saved.clone());
    t.local_flags |= LocalFlags::ICANON | LocalFlags::ECHO | LocalFlags::ISIG;
    t.input_flags |= InputFlags::ICRNL;
    t.control_chars[SpecialCharacterIndices::VEOL as usize] = 0;
    t.control_chars[SpecialCharacterIndices::VEOL2 as usize] = 0;
    termios::tcsetattr(tty, SetArg::TCSANOW, &t).ok()?;
    Some(saved)
}

fn ask_on_tty(
    question: String,
    offer: Option<&RuleOffer>,
    deadline: std::time::Instant,
    limit: Duration,
    state: &AtomicU8,
    cooked: Option<Termios>,
) -> Approval {
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
    let _restore = RestoreTermios {
        tty: &tty,
        saved: answerable(&tty, cooked),
    };
    let mut text = question;
    loop {
        if (&tty).write_all(text.as_bytes()).is_err() {
            return Approval::Deny {
                reason: "could not write the question to the terminal".into(),
            };
        }
        // Only what is typed after the question is shown can answer it.
        if let Err(err) = termios::tcflush(&tty, FlushArg::TCIFLUSH) {
            return Approval::Deny {
                reason: format!("could not discard pending terminal input ({err}): denied"),
            };
        }
        let line = match read_line(&tty, deadline, state) {
            Ok(line) => line,
            Err(stopped) => {
                let (note, approval) = match stopped {
                    Stopped::TimedOut => (
                        format!(
                            "\nexecgate: no answer within {}s: denied\n",
                            limit.as_secs_f64()
                        ),
                        not_answered(limit),
                    ),
                    Stopped::EndOfInput => (
                        "\nexecgate: end of input: denied\n".to_owned(),
                        Approval::Deny {
                            reason: "the terminal closed its input (Ctrl-D): denied".into(),
                        },
                    ),
                    Stopped::Failed(err) => (
                        format!("\nexecgate: reading the answer failed ({err}): denied\n"),
                        Approval::Deny {
                            reason: format!("could not read an answer from the terminal ({err})"),
                        },
                    ),
                    Stopped::CalledOff(INTERRUPTED) => (
                        "\nexecgate: interrupted: denied; ending the session\n".to_owned(),
                        Approval::Deny {
                            reason: "the person pressed Ctrl-C at the question: denied".into(),
                        },
                    ),
                    Stopped::CalledOff(TERMINATED) => (
                        "\nexecgate: terminated: denied; ending the session\n".to_owned(),
                        Approval::Deny {
                            reason: "execgate was terminated while asking: denied".into(),
                        },
                    ),
                    Stopped::CalledOff(_) => (
                        "\nexecgate: the session ended; question withdrawn\n".to_owned(),
                        Approval::Deny {
                            reason: "the session ended while asking".into(),
                        },
                    ),
                };
                let _ = (&tty).write_all(note.as_bytes());
                return approval;
            }
        };
        if let Some(offer) = offer.filter(|_| wants_rule(&line)) {
            let _ = (&tty).write_all(store(offer).as_bytes());
            return Approval::AllowForSession;
        }
        match parse_answer(&line) {
            Some(answer) => return answer,
            None => {
                let (names, choices) = match offer {
                    None => ("y, a or n", "y/a/n"),
                    Some(_) => ("y, a, r or n", "y/a/r/n"),
                };
                text = format!(
                    "execgate: `{}` is not an answer; type {names} and Enter [{choices}]: ",
                    supervisor::approval::escape_control(line.trim_end_matches('\n'))
                );
            }
        }
    }
}

/// Why no line was read.
enum Stopped {
    TimedOut,
    EndOfInput,
    Failed(std::io::Error),
    /// The question was called off: one of `GONE`, `INTERRUPTED`, `TERMINATED`.
    CalledOff(u8),
}

/// Reads one line from the terminal, looking every [`POLL_TICK`] whether the question was
/// called off, until `deadline`.
fn read_line(
    tty: &File,
    deadline: std::time::Instant,
    state: &AtomicU8,
) -> Result<String, Stopped> {
    let mut line = Vec::new();
    loop {
        let why = state.load(Ordering::SeqCst);
        if why != STILL_ASKING {
            return Err(Stopped::CalledOff(why));
        }
        let now = std::time::Instant::now();
        if now >= deadline {
            return Err(Stopped::TimedOut);
        }
        let wait = POLL_TICK.min(deadline - now);
        let mut fds = [PollFd::new(tty.as_fd(), PollFlags::POLLIN)];
        let ms = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(err) => return Err(Stopped::Failed(err.into())),
        }
        let mut buf = [0u8; 256];
        match (&*tty).read(&mut buf) {
            Ok(0) => return Err(Stopped::EndOfInput),
            Ok(n) => {
                line.extend_from_slice(&buf[..n]);
                if line.contains(&b'\n') || line.len() > 4096 {
                    return Ok(String::from_utf8_lossy(&line).into_owned());
                }
            }
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(Stopped::Failed(err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use policy::{DecidedBy, Decision, Evaluation, RuleMatch};

    fn request(program: &str, argv: &[&str], decided_by: DecidedBy) -> ApprovalRequest {
        ApprovalRequest {
            program: program.into(),
            argv: argv.iter().map(|s| (*s).to_owned()).collect(),
            cwd: "/work/\u{1b}]0;x\u{7}dir".into(),
            evaluation: Evaluation {
                decision: Decision::Prompt,
                decided_by,
                matched_rules: vec![RuleMatch {
                    matched_prefix: vec!["git".into()],
                    decision: Decision::Prompt,
                    justification: None,
                    origin: None,
                    resolved_program: None,
                }],
                heuristic: None,
            },
            passed_env: vec![("DEPLOY_ENV".into(), "v\u{1b}[2Kx".into())],
            proposed_prefix: None,
        }
    }

    #[test]
    fn the_question_escapes_what_the_session_controls() {
        let q = question(
            &request(
                "/usr/bin/git",
                &["git-difftool", "log", "\u{1b}[2K\rok"],
                DecidedBy::Rule,
            ),
            None,
            Duration::from_secs(300),
        );
        assert!(
            !q.contains('\u{1b}') && !q.contains('\r') && !q.contains('\u{7}'),
            "{q}"
        );
        assert!(q.contains("program: /usr/bin/git"), "{q}");
        assert!(q.contains("argv[0]: git-difftool"), "{q}");
        assert!(q.contains("in:      /work/\\e]0;x\\u{7}dir"), "{q}");
        assert!(q.contains("OUTSIDE the sandbox"), "{q}");
        assert!(
            q.contains("this exact command line, until this session ends"),
            "{q}"
        );
        assert!(q.contains("within 300s"), "{q}");
        assert!(q.contains("passes:  DEPLOY_ENV=v\\e[2Kx"), "{q}");
    }

    #[test]
    fn argv0_is_shown_only_when_it_differs() {
        let q = question(
            &request("/usr/bin/touch", &["touch", "x"], DecidedBy::Heuristics),
            None,
            Duration::from_secs(5),
        );
        assert!(!q.contains("argv[0]"), "{q}");
        assert!(q.contains("inside the sandbox"), "{q}");
    }

    #[test]
    fn a_rule_offer_shows_the_exact_line_and_its_reach() {
        let mut r = request(
            "/usr/bin/rm",
            &["rm", "-f", "x\n\u{1b}"],
            DecidedBy::Heuristics,
        );
        r.proposed_prefix = Some(vec!["rm".into(), "-f".into(), "x\n\u{1b}".into()]);
        let offer =
            RuleOffer::for_request(&r, Some(&PathBuf::from("/h/.codex/rules/default.rules")))
                .unwrap();
        let q = question(&r, Some(&offer), Duration::from_secs(5));
        assert!(
            q.contains(
                "r = remember: also append to /h/.codex/rules/default.rules (read by later \
                 sessions and by Codex):\n      prefix_rule(pattern=[\"rm\", \"-f\", \"x\\\\n\\\\u001b\"], \
                 decision=\"allow\")\n"
            ),
            "{q}"
        );
        assert!(q.contains("any that starts with these words"), "{q}");
        assert!(q.contains("OUTSIDE the sandbox"), "{q}");
        assert!(q.ends_with("[y/a/r/n]: "), "{q}");
        assert!(!q.contains('\u{1b}'), "{q}");
        assert!(wants_rule("r\n") && wants_rule(" Remember\n") && !wants_rule("rr\n"));
        // No file, or nothing proposed: no offer.
        assert!(RuleOffer::for_request(&r, None).is_none());
        r.proposed_prefix = None;
        assert!(RuleOffer::for_request(&r, Some(&PathBuf::from("/f"))).is_none());
    }

    #[test]
    fn only_a_clear_answer_counts() {
        assert_eq!(parse_answer("y\n"), Some(Approval::Allow));
        assert_eq!(parse_answer(" YES \n"), Some(Approval::Allow));
        assert_eq!(parse_answer("a\n"), Some(Approval::AllowForSession));
        assert!(matches!(parse_answer("n\n"), Some(Approval::Deny { .. })));
        assert_eq!(parse_answer("yy\n"), None);
        assert_eq!(parse_answer("\n"), None);
        assert_eq!(parse_answer("t\n"), None);
    }
}

//! A test supervisor: the real protocol server, a decision function, a request log.

#![allow(dead_code)] // each test binary uses its own part

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use escalate_protocol::server::EscalateServer;
use escalate_protocol::{EscalateRequest, ExitStatus, SOCKET_ENV};
use nix::fcntl::{FcntlArg, FdFlag, fcntl};

/// An escalated run: the request and the wrapper's fds, to the program's status.
pub type EscalateFn = Box<dyn FnOnce(&EscalateRequest, Vec<(i32, OwnedFd)>) -> ExitStatus + Send>;

pub enum Answer {
    Run,
    Deny(String),
    Escalate(EscalateFn),
}

pub struct TestServer {
    /// The shell's end of the rendezvous socket (inheritable).
    pub shell_fd: OwnedFd,
    pub log: Arc<Mutex<Vec<EscalateRequest>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    /// Serves until dropped, answering each request with `decide`. Needs a runtime.
    pub fn start(decide: impl Fn(&EscalateRequest) -> Answer + Send + Sync + 'static) -> Self {
        let (server, shell_fd) = EscalateServer::pair().expect("rendezvous socketpair");
        let shell_fd = inheritable_high(shell_fd);
        let log = Arc::new(Mutex::new(Vec::new()));
        let decide = Arc::new(decide);
        let task_log = log.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok(incoming) = server.accept().await else {
                    continue;
                };
                let decide = decide.clone();
                let log = task_log.clone();
                tokio::spawn(async move {
                    let (req, responder) = incoming.read_request().await.expect("request");
                    log.lock().unwrap().push(req.clone());
                    match decide(&req) {
                        Answer::Run => responder.run().await.expect("run"),
                        Answer::Deny(reason) => responder.deny(&reason).await.expect("deny"),
                        Answer::Escalate(run) => {
                            let mut esc = responder.escalate().await.expect("escalate");
                            let fds = std::mem::take(&mut esc.fds);
                            let status = tokio::task::spawn_blocking(move || run(&req, fds))
                                .await
                                .expect("escalated run");
                            esc.report_exit(status).await.expect("report exit");
                        }
                    }
                });
            }
        });
        TestServer {
            shell_fd,
            log,
            task,
        }
    }

    /// The environment that points a wrapper (or a patched shell) at this server.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            (SOCKET_ENV.into(), self.shell_fd.as_raw_fd().to_string()),
            ("EXEC_WRAPPER".into(), wrapper().display().to_string()),
        ]
    }

    pub fn requests(&self) -> Vec<EscalateRequest> {
        self.log.lock().unwrap().clone()
    }
}

/// The rendezvous fd as a supervisor would place it in the shell: inheritable, and at
/// a high number, clear of the fds scripts use (3-9) and bash hands out (10 up).
pub fn inheritable_high(fd: OwnedFd) -> OwnedFd {
    let high = fcntl(&fd, FcntlArg::F_DUPFD(100)).expect("F_DUPFD");
    // SAFETY: F_DUPFD just returned a new fd that nothing else in the process owns.
    let high = unsafe { OwnedFd::from_raw_fd(high) };
    fcntl(&high, FcntlArg::F_SETFD(FdFlag::empty())).expect("clear FD_CLOEXEC");
    high
}

pub fn wrapper() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_execgate-execve-wrapper"))
}

/// The patched shells built by `patches-fallback/build-shells`, if they were.
pub fn patched_shell(name: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("EXECGATE_PATCHED_SHELLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/patched-shells")
        });
    let shell = dir.join("bin").join(name);
    if shell.is_file() {
        return Some(shell);
    }
    // Fails instead under EXECGATE_REQUIRE_ALL=1 or EXECGATE_REQUIRE_PATCHED_SHELLS=1 (CI
    // builds the shells first).
    testkit::skip(testkit::Skip::patched_shells(format!(
        "no patched {name} at {}: run patches-fallback/build-shells first",
        shell.display()
    )));
    None
}

/// Runs `cmd` argv with the received fds as its stdin/stdout/stderr.
pub fn run_on_fds(argv: &[&str], fds: Vec<(i32, OwnedFd)>) -> ExitStatus {
    let mut cmd = std::process::Command::new(argv[0]);
    cmd.args(&argv[1..]);
    for (n, fd) in fds {
        match n {
            0 => cmd.stdin(fd),
            1 => cmd.stdout(fd),
            2 => cmd.stderr(fd),
            _ => &mut cmd,
        };
    }
    cmd.status().expect("spawn escalated command").into()
}

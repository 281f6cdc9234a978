//! The harness of the end-to-end tests (`tests/e2e.rs` and others): a scratch workspace, a
//! bounded wait for the real binary, its output, the rules fixtures, and what a machine
//! must have for the supervisor and the wrapper backend to run (as `testkit::Skip`s).

#![allow(dead_code)] // each test crate uses its own part

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use testkit::Skip;

pub const EXECGATE: &str = env!("CARGO_BIN_EXE_execgate");

/// Generous: the test machines are small and shared. Reaching it means a hang.
pub const RUN_LIMIT: Duration = Duration::from_secs(180);

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/rules/supervise")
        .join(name)
}

/// The line a rule is reported at (its `prefix_rule(`), for the rule in fixture `name`
/// whose text contains `needle`.
pub fn rule_line(name: &str, needle: &str) -> usize {
    let text = fs::read_to_string(fixture(name)).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle} not in {name}"));
    lines[..=at]
        .iter()
        .rposition(|l| l.starts_with("prefix_rule("))
        .unwrap_or_else(|| panic!("no prefix_rule( before {needle} in {name}"))
        + 1
}

/// A scratch workspace: `work` is the session's workdir, `io` holds captured output
/// (kept apart so the command never sees it).
pub struct Scratch {
    _tmp: tempfile::TempDir,
    pub work: PathBuf,
    pub io: PathBuf,
}

impl Scratch {
    pub fn new() -> Scratch {
        let tmp = tempfile::tempdir().unwrap();
        // Canonical, since the supervisor reports cwds as /proc/PID/cwd shows them.
        let root = tmp.path().canonicalize().unwrap();
        let work = root.join("work");
        let io = root.join("io");
        fs::create_dir(&work).unwrap();
        fs::create_dir(&io).unwrap();
        Scratch {
            _tmp: tmp,
            work,
            io,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.work.join(name)
    }

    pub fn read_io(&self, name: &str) -> String {
        fs::read_to_string(self.io.join(name)).unwrap_or_default()
    }
}

/// Waits for `child`, killing it and failing the test once [`RUN_LIMIT`] has passed.
pub fn wait_bounded(child: &mut Child, context: impl Fn() -> String) -> ExitStatus {
    let deadline = Instant::now() + RUN_LIMIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "execgate still running after {RUN_LIMIT:?} (a hang):\n{}",
                context()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// The session's exit code; panics (with the output) if execgate died of a signal.
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or_else(|| {
            panic!(
                "execgate killed by signal {:?}\n{self:#?}",
                self.status.signal()
            )
        })
    }

    pub fn denials(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("execgate: denied"))
            .collect()
    }
}

/// Why the supervisor (the unotify backend) cannot run on this machine, if it cannot: a
/// kernel without seccomp user notification or pidfd_getfd, or ptrace restricted beyond
/// descendants (escalation seizes the paused caller).
pub fn supervisor_unavailable() -> Option<String> {
    let actions = fs::read_to_string("/proc/sys/kernel/seccomp/actions_avail").unwrap_or_default();
    if !actions.split_whitespace().any(|a| a == "user_notif") {
        return Some(
            "this kernel has no seccomp user notification (Linux 5.0+, CONFIG_SECCOMP_FILTER)"
                .into(),
        );
    }
    if !kernel_at_least(5, 9) {
        return Some("the supervisor needs Linux 5.9+ (pidfd_getfd, NOTIF_ADDFD)".into());
    }
    if let Ok(scope) = fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
        && scope.trim().parse::<u32>().unwrap_or(0) > 1
        && !is_root()
    {
        return Some(format!(
            "kernel.yama.ptrace_scope={} forbids the ptrace hand-back without root",
            scope.trim()
        ));
    }
    None
}

pub fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release.trim().split(|c: char| !c.is_ascii_digit());
    let maj: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let min: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (maj, min) >= (major, minor)
}

pub fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// What the wrapper backend needs: the patched bash and the wrapper binary.
#[derive(Debug)]
pub struct Pieces {
    pub bash: PathBuf,
    pub wrapper: PathBuf,
}

/// The patched bash (`$EXECGATE_PATCHED_SHELLS/bin/bash`, default `.cache/patched-shells`)
/// and `execgate-execve-wrapper`, or why the wrapper backend cannot run here.
pub fn patched_pieces() -> Result<&'static Pieces, Skip> {
    static PIECES: OnceLock<Result<Pieces, Skip>> = OnceLock::new();
    PIECES
        .get_or_init(|| {
            let dir = std::env::var_os("EXECGATE_PATCHED_SHELLS")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/patched-shells")
                });
            let bash = dir.join("bin/bash");
            if !bash.is_file() {
                return Err(Skip::patched_shells(format!(
                    "no patched bash at {}: run patches-fallback/build-shells first",
                    bash.display()
                )));
            }
            Ok(Pieces {
                bash,
                wrapper: wrapper_binary(),
            })
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// `execgate-execve-wrapper` next to `execgate`; built if this test run did not build it
/// (`cargo nextest run -p execgate` builds only execgate's own binaries).
fn wrapper_binary() -> PathBuf {
    let path = Path::new(EXECGATE).with_file_name("execgate-execve-wrapper");
    if !path.is_file() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "execgate-execve-wrapper"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build -p execgate-execve-wrapper");
        assert!(status.success(), "building execgate-execve-wrapper failed");
    }
    assert!(path.is_file(), "no {}", path.display());
    path
}

//! The harness `tests/supervise.rs` and `tests/supervise_wrapper.rs` share: a scratch
//! workspace, a bounded wait for the real binary, its output, and the rules fixtures.

#![allow(dead_code)] // each test crate uses its own part

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

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

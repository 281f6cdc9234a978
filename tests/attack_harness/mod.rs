//! What `tests/attack_escalation.rs` and `tests/attack_sandbox.rs` share (besides
//! `tests/common`): the two backends, canary directories outside every writable root, the
//! rules fixtures of `tests/fixtures/rules/attack/`, the C probes, and a pseudo-terminal
//! driver.
//!
//! A session's writable roots in `workspace-write` are its workdir (a fresh temporary
//! directory under /tmp here), `/tmp` and `$TMPDIR` (supervisor/src/sandbox/landlock.rs,
//! `writable_roots`). Canaries live in a fresh directory under /var/lib, outside all of
//! them, removed afterwards.

#![allow(dead_code)] // each test crate uses its own part

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::common::{EXECGATE, Output, Scratch, wait_bounded};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Unotify,
    Wrapper,
}

pub use Backend::{Unotify, Wrapper};

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Unotify => "unotify",
            Wrapper => "wrapper",
        }
    }
}

/// The patched bash and the wrapper binary for `--backend wrapper`, or why not (the
/// end-to-end tests' own lookup, `common::patched_pieces`).
pub use crate::common::Pieces;

pub fn pieces() -> Result<&'static Pieces, String> {
    crate::common::patched_pieces().map_err(|skip| skip.why)
}

/// Why this backend cannot run here, or None: the test then skips through `testkit`
/// (a failure under EXECGATE_REQUIRE_ALL=1, or for the wrapper backend under
/// EXECGATE_REQUIRE_PATCHED_SHELLS=1). Also requires root: the attacks are those of a
/// root supervisor, as CI runs.
pub fn unavailable(backend: Backend) -> Option<testkit::Skip> {
    if !is_root() {
        return Some("the attacks are run as root (as CI runs)".into());
    }
    if !cfg!(target_arch = "x86_64") {
        return Some(testkit::Skip::exempt(
            "escalation is implemented for x86_64 only",
            testkit::Exempt::NotX86_64,
        ));
    }
    let actions = fs::read_to_string("/proc/sys/kernel/seccomp/actions_avail").unwrap_or_default();
    if backend == Unotify && !actions.split_whitespace().any(|a| a == "user_notif") {
        return Some("no seccomp user notification".into());
    }
    if backend == Wrapper
        && let Err(skip) = crate::common::patched_pieces()
    {
        return Some(skip.clone());
    }
    None
}

macro_rules! skip_unless_available {
    ($backend:expr) => {
        testkit::skip_unless!($crate::attack_harness::unavailable($backend));
    };
}
pub(crate) use skip_unless_available;

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

pub fn attack_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/rules/attack")
        .join(name)
}

/// A fresh directory outside every writable root of a session, removed on drop.
pub struct Canary {
    pub dir: PathBuf,
}

impl Canary {
    pub fn new() -> Canary {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = PathBuf::from(format!(
            "/var/lib/execgate-attack-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Canary { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The path as a string for a script.
    pub fn p(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_string()
    }
}

impl Drop for Canary {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// `execgate supervise` for a backend, with `--no-default-rules`, the attack fixtures,
/// an audit log in the scratch io directory, and `ARGS... -- bash -c SCRIPT`.
pub fn supervise_command(
    s: &Scratch,
    backend: Backend,
    rules: &[&str],
    args: &[&str],
    script: &str,
) -> Command {
    supervise_command_loading(s, backend, false, rules, args, script)
}

/// [`supervise_command`], loading the default rules directories too when `default_rules`
/// (`$CODEX_HOME/rules`, `$XDG_CONFIG_HOME/execgate/rules`: set them in the command's
/// environment).
pub fn supervise_command_loading(
    s: &Scratch,
    backend: Backend,
    default_rules: bool,
    rules: &[&str],
    args: &[&str],
    script: &str,
) -> Command {
    let mut argv: Vec<OsString> = vec!["supervise".into()];
    if !default_rules {
        argv.push("--no-default-rules".into());
    }
    argv.push("--backend".into());
    argv.push(backend.name().into());
    argv.push("--audit".into());
    argv.push(s.io.join("audit.jsonl").into());
    for name in rules {
        argv.push("--rules".into());
        argv.push(attack_fixture(name).into());
    }
    if backend == Wrapper {
        argv.push("--patched-bash".into());
        argv.push(pieces().unwrap().bash.clone().into());
    }
    argv.extend(args.iter().map(OsString::from));
    argv.extend(["--".into(), "bash".into(), "-c".into(), script.into()]);
    let mut cmd = Command::new(EXECGATE);
    cmd.args(argv).current_dir(&s.work);
    if backend == Wrapper {
        cmd.env("EXECGATE_EXECVE_WRAPPER", &pieces().unwrap().wrapper);
    }
    cmd
}

/// Runs the session to its end (bounded), stdin empty, output captured in the io dir.
pub fn run(s: &Scratch, backend: Backend, rules: &[&str], args: &[&str], script: &str) -> Output {
    let mut cmd = supervise_command(s, backend, rules, args, script);
    let file = |name: &str| fs::File::create(s.io.join(name)).unwrap();
    cmd.stdin(Stdio::null())
        .stdout(file("stdout"))
        .stderr(file("stderr"));
    let mut child = cmd.spawn().unwrap();
    let status = wait_bounded(&mut child, || s.read_io("stderr"));
    Output {
        status,
        stdout: s.read_io("stdout"),
        stderr: s.read_io("stderr"),
    }
}

pub fn audit_lines(s: &Scratch) -> Vec<serde_json::Value> {
    fs::read_to_string(s.io.join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Compiles `tests/helpers/NAME.c` (as a shared library with `shared`) into `dir`.
/// Panics without `cc`: these attacks are run as CI runs them, with a compiler.
pub fn compile(name: &str, dir: &Path, shared: bool) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/helpers")
        .join(format!("{name}.c"));
    let out = dir.join(if shared {
        format!("{name}.so")
    } else {
        name.to_string()
    });
    let mut cmd = Command::new("cc");
    cmd.args(["-O1", "-Wall"]);
    if shared {
        cmd.args(["-shared", "-fPIC"]);
    }
    let built = cmd
        .arg("-o")
        .arg(&out)
        .arg(&source)
        .output()
        .expect("run cc");
    assert!(
        built.status.success(),
        "cc {}: {}",
        source.display(),
        String::from_utf8_lossy(&built.stderr)
    );
    out
}

/// Runs a program outside any session and returns its stdout; panics if it fails.
pub fn outside(program: &str, args: &[&str], cwd: &Path) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Result of [`drive_pty`] and [`on_pty`].
#[derive(Debug)]
pub struct PtyRun {
    /// The exit status of the command on the pty, or None if the driver had to kill it.
    pub code: Option<i32>,
    /// Everything written to the terminal.
    pub transcript: String,
    /// How long the whole run took.
    pub seconds: f64,
    /// What the driver observed from its side of the terminal ([`drive_pty_holding`]).
    pub report: serde_json::Value,
}

/// Runs CMD (argv, env, cwd of a `Command`) as the session leader of a fresh pty. Steps are
/// (cue, action): once the terminal showed `cue` (after the previous cue's place), `action`
/// is done a second later: `type:TEXT` types TEXT (`\n`, `\x03` understood), `signal:TERM`
/// sends SIGTERM to execgate, `holders:` records (in the report) every descendant of
/// execgate holding a descriptor of the terminal (its device number, from /proc/PID/fd),
/// `termios:NAME` (with `hold`) records the terminal's settings as `NAME`. Killed after `limit` seconds. With `hold`, the driver keeps the slave open, records its
/// settings (tcgetattr) before the start and after the end, and its name (also in the
/// command's environment as `PERSON_TTY`), and the run ends when the command exits.
const PTY_DRIVER: &str = r#"
import json, os, pty, select, signal, stat, sys, termios, time
spec = json.loads(sys.argv[1])
hold = spec.get("hold", False)
report = {"holders": []}
if hold:
    fd, slave = os.openpty()
    report["name"] = os.ttyname(slave)
    os.environ["PERSON_TTY"] = report["name"]
    report["before"] = repr(termios.tcgetattr(slave))
    rdev = os.fstat(slave).st_rdev
    pid = os.fork()
    if pid == 0:
        os.close(fd)
        os.setsid()
        import fcntl
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        for i in range(3):
            os.dup2(slave, i)
        os.close(slave)
else:
    pid, fd = pty.fork()
    rdev = None
if pid == 0:
    os.chdir(spec["cwd"])
    env = dict(os.environ)
    env.update(spec["env"])
    os.execve(spec["argv"][0], spec["argv"], env)
if rdev is None:
    rdev = os.stat(os.readlink("/proc/%d/fd/0" % pid)).st_rdev

def descendants(root):
    children = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % p) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        children.setdefault(ppid, []).append(int(p))
    out, todo = [], list(children.get(root, []))
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out

def holders():
    found = []
    for p in descendants(pid):
        try:
            fds = os.listdir("/proc/%d/fd" % p)
        except OSError:
            continue
        for n in fds:
            try:
                st = os.stat("/proc/%d/fd/%s" % (p, n))
            except OSError:
                continue
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == rdev:
                found.append([p, int(n)])
    return {"checked": len(descendants(pid)), "holding": found}

out = b""
pos = 0
step = 0
steps = spec["steps"]
deadline = time.time() + spec["limit"]
code = None
exited_at = None
while True:
    if time.time() > deadline:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        break
    if hold and exited_at is None:
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(st)
            exited_at = time.time()
    if exited_at is not None and time.time() > exited_at + 0.5:
        break
    r, _, _ = select.select([fd], [], [], 0.1)
    if r:
        try:
            d = os.read(fd, 4096)
        except OSError:
            d = b""
        if not d:
            if not hold:
                _, st = os.waitpid(pid, 0)
                code = os.waitstatus_to_exitcode(st)
                break
        out += d
    while step < len(steps):
        cue, action = steps[step]
        at = out.find(cue.encode(), pos)
        if at < 0:
            break
        pos = at + len(cue)
        time.sleep(1.0)
        kind, _, arg = action.partition(":")
        if kind == "type":
            os.write(fd, arg.encode().decode("unicode_escape").encode())
        elif kind == "signal":
            os.kill(pid, getattr(signal, "SIG" + arg))
        elif kind == "holders":
            report["holders"].append(holders())
        elif kind == "termios":
            report[arg] = repr(termios.tcgetattr(slave))
        step += 1
if hold:
    report["after"] = repr(termios.tcgetattr(slave))
sys.stdout.buffer.write(b"CODE=" + str(code).encode() + b"\nREPORT=" + json.dumps(report).encode() + b"\n" + out)
"#;

/// Runs `cmd` (its program, arguments, environment and directory) as the session leader of
/// a fresh pseudo-terminal (python's `pty`), reading what a person would see and acting as
/// one would: `steps` are (cue, action) pairs done in order, each once the terminal showed
/// its cue after the previous one's place, a second later: `type:TEXT` types TEXT (`\n`,
/// `\x03` understood), `signal:TERM` signals the command, `holders:` records which of
/// its descendants hold the terminal. Killed after `limit` seconds.
pub fn drive_pty(cmd: &Command, limit: u32, steps: &[(&str, &str)]) -> PtyRun {
    run_driver(cmd, limit, steps, false)
}

/// [`drive_pty`], the driver holding the terminal's slave as the person's terminal would
/// be held: the report has its settings before and after (`before`, `after`), its `name`,
/// and `holders`.
pub fn drive_pty_holding(cmd: &Command, limit: u32, steps: &[(&str, &str)]) -> PtyRun {
    run_driver(cmd, limit, steps, true)
}

fn run_driver(cmd: &Command, limit: u32, steps: &[(&str, &str)], hold: bool) -> PtyRun {
    let mut argv = vec![cmd.get_program().to_str().unwrap().to_owned()];
    argv.extend(cmd.get_args().map(|a| a.to_str().unwrap().to_owned()));
    let env: serde_json::Map<String, serde_json::Value> = cmd
        .get_envs()
        .filter_map(|(k, v)| Some((k.to_str()?.to_owned(), v?.to_str()?.into())))
        .collect();
    let cwd = cmd
        .get_current_dir()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| std::env::current_dir().unwrap());
    let spec = serde_json::json!({
        "argv": argv,
        "env": env,
        "cwd": cwd,
        "steps": steps,
        "limit": limit,
        "hold": hold,
    });
    let started = std::time::Instant::now();
    let out = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(PTY_DRIVER)
        .arg(spec.to_string())
        .stdin(Stdio::null())
        .output()
        .expect("python3 pty driver");
    let all = String::from_utf8_lossy(&out.stdout).into_owned();
    let (first, rest) = all.split_once('\n').unwrap_or((&all, ""));
    let (report, rest) = match rest.split_once('\n') {
        Some((line, rest)) if line.starts_with("REPORT=") => (
            serde_json::from_str(&line["REPORT=".len()..]).unwrap_or_default(),
            rest,
        ),
        _ => (serde_json::Value::Null, rest),
    };
    PtyRun {
        code: first.strip_prefix("CODE=").and_then(|c| c.parse().ok()),
        transcript: format!(
            "{rest}\n[driver stderr] {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        seconds: started.elapsed().as_secs_f64(),
        report,
    }
}

/// Runs `sh -c CMD` on a fresh pseudo-terminal (see [`drive_pty`]) with `env` added, for at
/// most `limit_secs`. `cues`: (text, reply) pairs: once the terminal showed `text`, `reply`
/// is typed (after a second), in order; `\n` in a reply is a newline.
pub fn on_pty(cmd: &str, limit_secs: u32, cues: &[(&str, &str)], env: &[(&str, &str)]) -> PtyRun {
    let mut c = Command::new("/bin/sh");
    c.arg("-c").arg(cmd).envs(env.iter().copied());
    let steps: Vec<(String, String)> = cues
        .iter()
        .map(|(cue, reply)| ((*cue).to_owned(), format!("type:{reply}")))
        .collect();
    let steps: Vec<(&str, &str)> = steps
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    drive_pty(&c, limit_secs, &steps)
}

/// Quotes a string for sh.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

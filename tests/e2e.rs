//! End to end: `execgate supervise` running bash on this kernel, on both backends.
//!
//! One table of scenarios ([`scenarios!`] at the end), each a function of the backend, run
//! as `unotify::NAME` (`--backend unotify`, a stock bash) and `wrapper::NAME` (`--backend
//! wrapper` with the patched bash of `patches-fallback/build-shells` and the real
//! `execgate-execve-wrapper`). Where the wrapper cannot satisfy a scenario (it sees only the
//! patched shell's own execs: docs/threat-model.md, "Known gaps"), the scenario asserts
//! the documented difference for it instead of skipping.
//!
//! Every test runs the real binary with `--no-default-rules` and rules files from
//! `tests/fixtures/rules/supervise/`, in a fresh temporary directory, and asserts something
//! a user would see (a file that exists or not, `$?`, bytes on stdout, lines of the audit
//! log). Each run is bounded: a hang fails the test instead of blocking the suite. No test
//! asserts timing.
//!
//! Small C helpers (`tests/helpers/*.c`) do what bash cannot: raw `execve` with bad
//! pointers, syscalls through foreign ABIs, listing open descriptors without opening one.
//! They are compiled with `cc`. A missing prerequisite skips through `testkit` (which fails
//! instead under `EXECGATE_REQUIRE_ALL=1`, as in scripts/test).

#![cfg(target_os = "linux")]

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use testkit::{Exempt, Skip, skip_unless};

mod common;
use common::{
    EXECGATE, Output, RUN_LIMIT, Scratch, fixture, is_root, patched_pieces, rule_line,
    supervisor_unavailable, wait_bounded, which,
};

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

/// The backend a scenario runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Unotify,
    Wrapper,
}

impl Backend {
    /// Why sessions on this backend cannot run here, if they cannot.
    fn unavailable(self) -> Option<Skip> {
        match self {
            Backend::Unotify => supervisor_unavailable().map(Skip::from),
            Backend::Wrapper => patched_pieces().err(),
        }
    }

    /// Escalation under unotify ends the caller by rewriting its registers (x86_64 only);
    /// the wrapper receives the status over its socket and needs nothing more.
    fn escalation_unavailable(self) -> Option<Skip> {
        self.unavailable().or_else(|| {
            (self == Backend::Unotify && !cfg!(target_arch = "x86_64")).then(|| {
                Skip::exempt(
                    "the escalation hand-back is implemented for x86_64 only",
                    Exempt::NotX86_64,
                )
            })
        })
    }

    /// Why sandboxed sessions here get no PID namespace, if they do not (doctor's probe).
    fn pid_namespace_unavailable(self) -> Option<Skip> {
        self.unavailable().or_else(|| {
            let out = Command::new(EXECGATE)
                .args(["doctor", "--json"])
                .output()
                .unwrap();
            let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let feature = &doc["pid_namespace"];
            (feature["available"] != true).then(|| {
                Skip::from(format!(
                    "no PID namespace for sandboxed sessions here: {}",
                    feature["detail"]
                ))
            })
        })
    }

    /// The arguments of `execgate supervise` that choose this backend.
    fn args(self) -> Vec<OsString> {
        match self {
            Backend::Unotify => vec!["--backend".into(), "unotify".into()],
            Backend::Wrapper => {
                let p = patched_pieces().expect("checked by the scenario");
                vec![
                    "--backend".into(),
                    "wrapper".into(),
                    "--patched-bash".into(),
                    p.bash.clone().into(),
                ]
            }
        }
    }

    /// The environment the backend needs (the wrapper binary of this build).
    fn env(self) -> Vec<(String, String)> {
        match self {
            Backend::Unotify => Vec::new(),
            Backend::Wrapper => {
                let p = patched_pieces().expect("checked by the scenario");
                vec![(
                    "EXECGATE_EXECVE_WRAPPER".into(),
                    p.wrapper.to_str().unwrap().into(),
                )]
            }
        }
    }
}

impl Scratch {
    /// `execgate supervise BACKEND... --no-default-rules --audit IO/audit.jsonl --rules
    /// FIXTURE... ARGS... -- bash -c SCRIPT`.
    fn supervise(&self, b: Backend, rules: &[&str]) -> Supervise<'_> {
        let mut args: Vec<OsString> = vec!["supervise".into()];
        args.extend(b.args());
        args.extend(["--no-default-rules".into(), "--audit".into()]);
        args.push(self.audit().into());
        for name in rules {
            args.push("--rules".into());
            args.push(fixture(name).into());
        }
        Supervise {
            scratch: self,
            args,
            stdin: None,
            wrapper: Vec::new(),
            env: b.env(),
        }
    }

    /// The audit log every [`Scratch::supervise`] session writes.
    fn audit(&self) -> PathBuf {
        self.io.join("audit.jsonl")
    }

    fn audit_lines(&self) -> Vec<serde_json::Value> {
        audit_lines(&self.audit())
    }

    /// Compiles `tests/helpers/NAME.c` into the workdir. `Err`: why it cannot (no `cc`).
    fn helper(&self, name: &str) -> Result<PathBuf, Skip> {
        self.helper_in(name, &self.work)
    }

    /// Compiles `tests/helpers/NAME.c` into `dir`.
    fn helper_in(&self, name: &str, dir: &Path) -> Result<PathBuf, Skip> {
        let cc = which("cc").ok_or(Skip::from("no C compiler (`cc`) to build the test helpers"))?;
        let source = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/helpers")
            .join(format!("{name}.c"));
        let out = dir.join(name);
        let built = Command::new(cc)
            .args(["-O1", "-Wall", "-o"])
            .arg(&out)
            .arg(&source)
            .output()
            .map_err(|e| Skip::from(format!("running cc: {e}")))?;
        if !built.status.success() {
            // A helper that does not build is a broken test, not a missing feature.
            panic!(
                "cc {}: {}",
                source.display(),
                String::from_utf8_lossy(&built.stderr)
            );
        }
        Ok(out)
    }
}

/// A directory of programs outside every writable root (root-owned, 0755, under
/// /var/lib), first in the supervisor's PATH: what an allow rule's bare name can escalate.
struct TrustedBin {
    dir: PathBuf,
}

impl TrustedBin {
    fn new() -> TrustedBin {
        use std::os::unix::fs::PermissionsExt;
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = PathBuf::from(format!("/var/lib/execgate-e2e-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        TrustedBin { dir }
    }

    /// `PATH` with this directory first.
    fn path_var(&self) -> String {
        format!(
            "{}:{}",
            self.dir.display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }
}

impl Drop for TrustedBin {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

struct Supervise<'a> {
    scratch: &'a Scratch,
    args: Vec<OsString>,
    stdin: Option<Vec<u8>>,
    /// A program (and its arguments) that runs execgate, e.g. `setsid -w`.
    wrapper: Vec<OsString>,
    env: Vec<(String, String)>,
}

impl Supervise<'_> {
    fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    fn stdin(mut self, bytes: &[u8]) -> Self {
        self.stdin = Some(bytes.to_vec());
        self
    }

    fn wrapped_by(mut self, wrapper: &[&str]) -> Self {
        self.wrapper = wrapper.iter().map(OsString::from).collect();
        self
    }

    fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    fn command(&self, script: &str) -> Command {
        let mut argv: Vec<OsString> = self.wrapper.clone();
        argv.push(EXECGATE.into());
        argv.extend(self.args.iter().cloned());
        argv.extend(["--".into(), "bash".into(), "-c".into(), script.into()]);
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]).current_dir(&self.scratch.work);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let out = |name: &str| fs::File::create(self.scratch.io.join(name)).unwrap();
        cmd.stdout(out("stdout")).stderr(out("stderr"));
        match &self.stdin {
            Some(bytes) => {
                let path = self.scratch.io.join("stdin");
                fs::write(&path, bytes).unwrap();
                cmd.stdin(fs::File::open(path).unwrap());
            }
            None => {
                cmd.stdin(Stdio::null());
            }
        }
        cmd
    }

    /// Starts the session without waiting for it.
    fn spawn(&self, script: &str) -> Child {
        self.command(script).spawn().unwrap()
    }

    /// Runs `bash -c SCRIPT` under the supervisor to its end (bounded by [`RUN_LIMIT`]).
    fn run(&self, script: &str) -> Output {
        let mut child = self.spawn(script);
        let status = wait_bounded(&mut child, || self.output_so_far(script));
        // Session start names the fixtures' allow rules that hand out a shell (the
        // escalation tests need such rules); that warning is front_door.rs's to check.
        let stderr: String = self
            .read_io("stderr")
            .lines()
            .filter(|l| !(l.starts_with("execgate: warning: ") && l.contains(".rules:")))
            .map(|l| format!("{l}\n"))
            .collect();
        Output {
            status,
            stdout: self.read_io("stdout"),
            stderr,
        }
    }

    fn read_io(&self, name: &str) -> String {
        fs::read_to_string(self.scratch.io.join(name)).unwrap_or_default()
    }

    fn output_so_far(&self, script: &str) -> String {
        format!(
            "script: {script}\nstdout:\n{}\nstderr:\n{}",
            self.read_io("stdout"),
            self.read_io("stderr")
        )
    }
}

// ---------------------------------------------------------------------------------------
// forbidden
// ---------------------------------------------------------------------------------------

fn allowed_runs_in_the_sandbox_and_forbidden_does_not_run(b: Backend) {
    skip_unless!(b.unavailable());
    let s = Scratch::new();
    fs::write(s.path("marker"), "keep me").unwrap();
    let out = s
        .supervise(b, &["forbidden.rules"])
        .run(r#"touch made; echo "touch=$?"; rm marker; echo "rm=$?""#);

    assert_eq!(out.stdout, "touch=0\nrm=126\n", "{out:#?}");
    assert!(
        s.path("made").exists(),
        "the allowed program did not run: {out:#?}"
    );
    assert!(s.path("marker").exists(), "rm ran: {out:#?}");
    assert_eq!(out.code(), 0, "{out:#?}");
    let denials = out.denials();
    assert_eq!(denials.len(), 1, "one reason line: {out:#?}");
    let line = rule_line("forbidden.rules", r#"pattern = ["rm"]"#);
    let origin = format!("forbidden.rules:{line}");
    assert!(
        denials[0].contains("`rm marker`")
            && denials[0].contains(&origin)
            && denials[0].contains("deleting files is not allowed in this workspace"),
        "the reason names the command, {origin} and the justification: {}",
        denials[0]
    );
}

// ---------------------------------------------------------------------------------------
// escalation: exact status, stdio, cwd, environment
// ---------------------------------------------------------------------------------------

fn escalated_status_is_exact_as_bash_sees_it(b: Backend) {
    skip_unless!(b.escalation_unavailable());
    let s = Scratch::new();
    let out = s.supervise(b, &["escalate.rules"]).run(
        r#"for code in 0 1 42 255; do sh -c "exit $code"; echo "exit $code -> $?"; done
           sh -c 'kill -TERM $$'; echo "SIGTERM -> $?"
           sh -c 'kill -KILL $$'; echo "SIGKILL -> $?"
           sh -c 'read parent < /proc/$PPID/comm; echo "parent $parent"'
           echo done"#,
    );
    assert_eq!(
        out.stdout,
        "exit 0 -> 0\nexit 1 -> 1\nexit 42 -> 42\nexit 255 -> 255\n\
         SIGTERM -> 143\nSIGKILL -> 137\nparent execgate\ndone\n",
        "{out:#?}"
    );
    // "parent execgate": what ran was the supervisor's copy, not the caller's own exec.
    // bash saw deaths by signal (it says so), not exit codes 143 and 137; nothing else.
    let stderr: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(stderr.len(), 2, "{out:#?}");
    assert_eq!(stderr[0], "Terminated", "{out:#?}");
    assert!(stderr[1].contains("Killed"), "{out:#?}");
    assert_eq!(out.code(), 0, "{out:#?}");
}

fn escalated_last_command_is_the_session_status(b: Backend) {
    skip_unless!(b.escalation_unavailable());
    // bash execs the last command of `-c` in place: the session's root is the paused
    // caller, and execgate must exit with the escalated status.
    for (script, expected) in [
        (r#"sh -c "exit 9""#, 9),
        (r#"sh -c "exit 0""#, 0),
        (r#"sh -c 'kill -TERM $$'"#, 143),
    ] {
        let s = Scratch::new();
        let out = s.supervise(b, &["escalate.rules"]).run(script);
        assert_eq!(out.code(), expected, "{script}: {out:#?}");
    }
}

fn escalated_command_shares_stdin_and_stdout_in_order(b: Backend) {
    skip_unless!(b.escalation_unavailable());
    let s = Scratch::new();
    let out = s
        .supervise(b, &["escalate.rules"])
        .stdin(b"first\nsecond\n")
        .run(
            r#"printf '1\n2\n' | sh -c 'cat; echo 3' | cat; echo after
           sh -c 'read x; echo "copy read $x"'
           read y; echo "bash read $y"
           echo out; sh -c 'echo copy out; echo copy err >&2'; echo out again"#,
        );
    assert_eq!(
        out.stdout, "1\n2\n3\nafter\ncopy read first\nbash read second\nout\ncopy out\nout again\n",
        "{out:#?}"
    );
    assert_eq!(out.stderr, "copy err\n", "{out:#?}");
    assert_eq!(out.code(), 0);
}

fn escalated_status_reaches_pipelines_substitutions_and_background_jobs(b: Backend) {
    skip_unless!(b.escalation_unavailable());
    let s = Scratch::new();
    let out = s.supervise(b, &["escalate.rules"]).run(
        r#"sh -c 'echo piped; exit 3' | sh -c 'cat; exit 5'; echo "pipeline ${PIPESTATUS[*]}"
           x=$(sh -c 'echo captured; exit 4'); echo "substitution $x $?"
           sh -c 'exit 7' & wait $!; echo "background $?"
           sh -c 'kill -TERM $$' & wait $!; echo "background signal $?"
           sh -c 'exit 11' & p=$!; sh -c 'exit 12'; a=$?; wait $p; echo "overlapping $a $?""#,
    );
    assert_eq!(
        out.stdout,
        "piped\npipeline 3 5\nsubstitution captured 4\nbackground 7\n\
         background signal 143\noverlapping 12 11\n",
        "{out:#?}"
    );
    assert_eq!(out.code(), 0, "{out:#?}");
}

fn escalated_command_runs_in_the_callers_cwd_with_a_clean_environment(b: Backend) {
    skip_unless!(b.escalation_unavailable());
    let s = Scratch::new();
    fs::create_dir(s.path("sub")).unwrap();
    // The copy runs outside the sandbox: it gets the caller's cwd, but not the caller's
    // variables (any of them could steer it: LD_PRELOAD, GIT_CONFIG_*, BASH_ENV...). The
    // supervisor's own PATH and HOME are its base.
    let out = s
        .supervise(b, &["escalate.rules"])
        .env("OUTER", "from-outside")
        .run(
            r#"cd sub && sh -c pwd
               FOO=bar sh -c 'echo "FOO=${FOO-unset} OUTER=${OUTER-unset}"'
               export LATER=set-in-bash; sh -c 'echo "LATER=${LATER-unset} PATH=${PATH:+set}"'"#,
        );
    assert_eq!(
        out.stdout,
        format!(
            "{}\nFOO=unset OUTER=unset\nLATER=unset PATH=set\n",
            s.path("sub").display()
        ),
        "{out:#?}"
    );
}

fn an_escalated_copy_does_not_outlive_its_killed_caller(b: Backend) {
    skip_unless!(b.escalation_unavailable());
    let s = Scratch::new();
    for fifo in ["ready", "tick"] {
        let made = Command::new("mkfifo").arg(s.path(fifo)).status().unwrap();
        assert!(made.success());
    }
    // The copy tells its pid through a fifo; the caller is then SIGKILLed (as `timeout -s
    // KILL` or a kill of the process group would). The copy must end with it, not run on
    // unsandboxed. Polled from bash with a builtin sleep (read -t on a fifo), bounded.
    let out = s.supervise(b, &["escalate.rules"]).run(
        r#"exec 9<>tick
           sh -c 'echo $$ > ready; exec /bin/sleep 600' & caller=$!
           read copy < ready
           kill -KILL $caller; wait $caller; echo "caller $?"
           for ((i = 0; i < 600; i++)); do
               [[ -e /proc/$copy ]] || break
               read -t 0.05 -u 9
           done
           [[ -e /proc/$copy ]] && echo "copy $copy still running" || echo "copy gone""#,
    );
    assert_eq!(out.stdout, "caller 137\ncopy gone\n", "{out:#?}");
}

fn the_session_can_read_its_terminal(b: Backend) {
    skip_unless!(b.unavailable());
    skip_unless!(
        which("script")
            .is_none()
            .then_some("script (util-linux) provides the pty")
    );
    let s = Scratch::new();
    // script(1) runs execgate on a fresh pty as its foreground job and feeds it our stdin.
    let backend: Vec<String> = b
        .args()
        .iter()
        .map(|a| format!("'{}'", a.to_str().unwrap()))
        .collect();
    let inner = format!(
        "{EXECGATE} supervise {} --no-default-rules -- bash -c 'read x; echo got $x'",
        backend.join(" ")
    );
    let stdin = s.io.join("stdin");
    fs::write(&stdin, "hello\n").unwrap();
    let out = Command::new("timeout")
        .args(["30", "script", "-qec", &inner, "/dev/null"])
        .current_dir(&s.work)
        .envs(b.env())
        .stdin(fs::File::open(&stdin).unwrap())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("got hello"),
        "exit {:?} (124: timed out, stopped reading the terminal): {stdout}",
        out.status.code()
    );
}

// ---------------------------------------------------------------------------------------
// descriptors
// ---------------------------------------------------------------------------------------

/// Only 0, 1 and 2 (and, under the wrapper, its rendezvous socket in the sandbox).
fn escalated_and_sandboxed_programs_inherit_no_stray_fds(b: Backend) {
    skip_unless!(b.escalation_unavailable());
    let s = Scratch::new();
    let listfds = testkit::ok_or_skip!(s.helper("listfds"));
    // What is escalated must be a file the session could not have written: the same
    // helper, installed outside every writable root and found through the supervisor's
    // PATH (an allow rule's bare name means that file, never `./listfds`).
    let trusted = TrustedBin::new();
    testkit::ok_or_skip!(s.helper_in("listfds", &trusted.dir));
    // execgate itself inherits a non-CLOEXEC fd 7; it must reach neither copy.
    let wrapper = ["bash", "-c", r#"exec 7</dev/null; exec "$@""#, "bash"];
    let control = Command::new(wrapper[0])
        .args(&wrapper[1..])
        .arg(&listfds)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&control.stdout)
            .split_whitespace()
            .any(|fd| fd == "7"),
        "the wrapper leaks fd 7 to what it runs: {control:?}"
    );

    let out = s
        .supervise(b, &["escalate.rules"])
        .wrapped_by(&wrapper)
        .env("PATH", &trusted.path_var())
        .run(
            r#"listfds escalate; ./listfds sandbox
           sh -c ./listfds"#,
        );
    // The wrapper backend's rendezvous socket (fd 100, `EXECGATE_ESCALATE_SOCKET`) is shared
    // by the whole sandboxed tree by design (patches-fallback/README.md, "The protocol"),
    // so nested patched shells can ask; the escalated copies get nothing of it.
    let sandboxed = match b {
        Backend::Unotify => "0 1 2",
        Backend::Wrapper => "0 1 2 100",
    };
    assert_eq!(
        out.stdout,
        format!("0 1 2\n{sandboxed}\n0 1 2\n"),
        "escalated, sandboxed, and the escalated sh's own child: {out:#?}"
    );
    assert_eq!(out.code(), 0, "{out:#?}");
}

// ---------------------------------------------------------------------------------------
// every way of reaching exec
// ---------------------------------------------------------------------------------------

/// unotify stops python's `subprocess.run` and `posix_spawnp` like a shell's exec. The
/// wrapper does not see them (its documented limit): python3 itself is asked about (the
/// patched shell execs it), its children are not, and a forbidden program run that way
/// runs; the sandbox still holds.
fn python_subprocess_and_posix_spawn_execs(b: Backend) {
    skip_unless!(b.unavailable());
    // pyenv and similar put a shell-script shim first in PATH: ask python where it lives.
    let python = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    skip_unless!(python.is_none().then_some("no python3 in PATH"));
    let python = python.unwrap_or_default();
    let s = Scratch::new();
    fs::write(s.path("marker-run"), "").unwrap();
    fs::write(s.path("marker-spawn"), "").unwrap();
    let script = format!(
        r#"'{python}' -c '
import os, subprocess
print(subprocess.run(["/bin/echo", "from python"]).returncode)
try:
    r = subprocess.run(["rm", "marker-run"])
    print("subprocess.run returned", r.returncode)
except PermissionError as e:
    print("subprocess.run PermissionError", e.errno)
try:
    pid = os.posix_spawnp("rm", ["rm", "marker-spawn"], os.environ)
    print("posix_spawnp status", os.waitpid(pid, 0)[1])
except PermissionError as e:
    print("posix_spawnp PermissionError", e.errno)
'"#
    );
    let out = s.supervise(b, &["forbidden.rules"]).run(&script);
    let lines = s.audit_lines();
    let programs: Vec<&str> = lines.iter().filter_map(|l| l["program"].as_str()).collect();
    assert!(
        lines.iter().any(|l| l["program"] == python.as_str()),
        "python3 itself is asked about: {programs:?}"
    );
    match b {
        Backend::Unotify => {
            assert!(s.path("marker-run").exists(), "{out:#?}");
            assert!(s.path("marker-spawn").exists(), "{out:#?}");
            assert_eq!(
                out.stdout,
                "from python\n0\nsubprocess.run PermissionError 13\n\
                 posix_spawnp PermissionError 13\n",
                "{out:#?}"
            );
            assert!(out.denials().len() >= 2, "{out:#?}");
            assert!(
                lines.iter().any(|l| file_name_is(l, "echo")),
                "the subprocess exec is seen: {programs:?}"
            );
        }
        Backend::Wrapper => {
            assert!(!s.path("marker-run").exists(), "{out:#?}");
            assert!(!s.path("marker-spawn").exists(), "{out:#?}");
            assert_eq!(
                out.stdout, "from python\n0\nsubprocess.run returned 0\nposix_spawnp status 0\n",
                "{out:#?}"
            );
            assert!(out.denials().is_empty(), "{out:#?}");
            assert!(
                !lines
                    .iter()
                    .any(|l| file_name_is(l, "echo") || file_name_is(l, "rm")),
                "the subprocess execs are not seen on this path: {programs:?}"
            );
            assert_eq!(lines.len(), 2, "bash and python3 only: {programs:?}");
        }
    }
}

fn file_name_is(line: &serde_json::Value, name: &str) -> bool {
    line["program"]
        .as_str()
        .is_some_and(|p| Path::new(p).file_name() == Some(name.as_ref()))
}

/// unotify stops rm run by find, xargs, env and nice; under the wrapper it runs.
fn find_xargs_env_and_nice_running_rm(b: Backend) {
    skip_unless!(b.unavailable());
    let s = Scratch::new();
    let tools = ["find", "xargs", "env", "nice"];
    for tool in tools {
        fs::write(s.path(&format!("marker-{tool}")), "").unwrap();
    }
    let out = s.supervise(b, &["forbidden.rules"]).run(
        r#"find . -name marker-find -exec rm {} \;; echo "find $?"
           echo marker-xargs | xargs rm; echo "xargs $?"
           env rm marker-env; echo "env $?"
           nice rm marker-nice; echo "nice $?""#,
    );
    if b == Backend::Wrapper {
        // Not the patched shell's execs: the wrapper does not see them and rm runs (the
        // documented limit of that backend, docs/threat-model.md "Known gaps").
        for tool in tools {
            assert!(
                !s.path(&format!("marker-{tool}")).exists(),
                "rm via {tool} did not run: {out:#?}"
            );
        }
        assert_eq!(out.stdout, "find 0\nxargs 0\nenv 0\nnice 0\n", "{out:#?}");
        assert!(out.denials().is_empty(), "{out:#?}");
        return;
    }
    for tool in tools {
        assert!(
            s.path(&format!("marker-{tool}")).exists(),
            "rm via {tool} ran: {out:#?}"
        );
    }
    // find only reports the failed -exec; xargs, env and nice exit 126 ("could not run").
    assert!(
        out.stdout.ends_with("xargs 126\nenv 126\nnice 126\n"),
        "{out:#?}"
    );
    // execvp walks PATH on EACCES, so one rm may be refused once per PATH directory.
    let denials = out.denials();
    for target in ["./marker-find", "marker-xargs", "marker-env", "marker-nice"] {
        assert!(
            denials
                .iter()
                .any(|l| l.contains(&format!("`rm {target}`"))),
            "rm {target} not refused: {out:#?}"
        );
    }
}

/// unotify stops rm run by make (directly and via /bin/sh); under the wrapper it runs.
fn make_running_rm(b: Backend) {
    skip_unless!(b.unavailable());
    skip_unless!(which("make").is_none().then_some("make is not installed"));
    let s = Scratch::new();
    fs::write(s.path("marker"), "").unwrap();
    // One recipe make execs directly, one it hands to /bin/sh.
    fs::write(
        s.path("Makefile"),
        "direct:\n\trm marker\nviashell:\n\trm marker && echo removed\n",
    )
    .unwrap();
    let out = s.supervise(b, &["forbidden.rules"]).run(
        r#"make direct; echo "direct $?"
           make viashell; echo "viashell $?""#,
    );
    if b == Backend::Wrapper {
        // make execs rm itself: not the patched shell's exec, unseen, and it runs; the
        // second recipe's rm (via an unpatched /bin/sh) then finds nothing to remove.
        assert!(!s.path("marker").exists(), "{out:#?}");
        assert_eq!(
            out.stdout, "rm marker\ndirect 0\nrm marker && echo removed\nviashell 2\n",
            "{out:#?}"
        );
        assert!(out.denials().is_empty(), "{out:#?}");
        return;
    }
    assert!(s.path("marker").exists(), "{out:#?}");
    // make echoes each recipe line, then fails the target (status 2).
    assert_eq!(
        out.stdout, "rm marker\ndirect 2\nrm marker && echo removed\nviashell 2\n",
        "{out:#?}"
    );
    // The shell's PATH walk may ask once per PATH directory holding an rm.
    assert!(out.denials().len() >= 2, "{out:#?}");
    assert!(
        out.denials().iter().all(|l| l.contains("`rm marker`")),
        "{out:#?}"
    );
}

// ---------------------------------------------------------------------------------------
// prompts
// ---------------------------------------------------------------------------------------

fn prompt_answered_deny_leaves_nothing_behind(b: Backend) {
    skip_unless!(b.unavailable());
    let s = Scratch::new();
    let out = s
        .supervise(b, &["prompt.rules"])
        .arg("--on-prompt")
        .arg("deny")
        .run(r#"git init -q; echo "git $?""#);
    assert!(!s.path(".git").exists(), "{out:#?}");
    assert_eq!(out.stdout, "git 126\n", "{out:#?}");
    let denials = out.denials();
    assert_eq!(denials.len(), 1, "{out:#?}");
    assert!(denials[0].contains("--on-prompt deny"), "{out:#?}");
}

fn prompt_answered_allow_runs_escalated(b: Backend) {
    skip_unless!(b.escalation_unavailable());
    let s = Scratch::new();
    let audit = s.audit();
    let out = s
        .supervise(b, &["prompt.rules"])
        .arg("--on-prompt")
        .arg("allow")
        .run(r#"git init -q; echo "git $?""#);
    assert!(s.path(".git").is_dir(), "{out:#?}");
    assert_eq!(out.stdout, "git 0\n", "{out:#?}");
    let git = audit_lines(&audit)
        .into_iter()
        .find(|l| l["argv"][0] == "git")
        .unwrap_or_else(|| panic!("no git line in the audit log: {out:#?}"));
    // Nobody was asked: the setting answered, and the record says so.
    assert_eq!(git["decided_by"], "supervisor", "{git}");
    assert_eq!(git["ran_in"], "escalated", "{git}");
}

/// A session program that is not bash: unotify runs it (or says it is not found); the
/// wrapper refuses it, since it only sees the execs of the patched shell.
fn a_session_program_that_is_not_bash(b: Backend) {
    skip_unless!(b.unavailable());
    let run = |argv: &[&str]| {
        Command::new(EXECGATE)
            .arg("supervise")
            .args(b.args())
            .arg("--no-default-rules")
            .arg("--")
            .args(argv)
            .envs(b.env())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let missing = run(&["no-such-program-execgate"]);
    let python = run(&["python3", "-c", "print(1)"]);
    let missing_err = String::from_utf8_lossy(&missing.stderr);
    let python_err = String::from_utf8_lossy(&python.stderr);
    match b {
        Backend::Unotify => {
            assert_eq!(missing.status.code(), Some(127), "{missing:?}");
            assert!(
                missing_err.contains("no-such-program-execgate: command not found in PATH"),
                "{missing_err}"
            );
            assert_eq!(python.status.code(), Some(0), "{python:?}");
            assert_eq!(python.stdout, b"1\n", "{python:?}");
        }
        Backend::Wrapper => {
            for (out, stderr, name) in [
                (&missing, &missing_err, "no-such-program-execgate"),
                (&python, &python_err, "python3"),
            ] {
                assert_eq!(out.status.code(), Some(2), "{out:?}");
                assert!(
                    stderr.contains(&format!("not `{name}`"))
                        && stderr.contains("only sees the execs"),
                    "{stderr}"
                );
                assert!(out.stdout.is_empty(), "nothing ran: {out:?}");
            }
        }
    }
}

fn prompt_without_a_terminal_is_denied_and_says_so(b: Backend) {
    skip_unless!(b.unavailable());
    skip_unless!(
        which("setsid")
            .is_none()
            .then_some("setsid (util-linux) is needed to run without a controlling terminal")
    );
    let s = Scratch::new();
    let out = s
        .supervise(b, &["prompt.rules"])
        .arg("--on-prompt")
        .arg("ask")
        .wrapped_by(&["setsid", "-w"])
        .run(r#"git init -q; echo "git $?""#);
    assert!(!s.path(".git").exists(), "{out:#?}");
    assert_eq!(out.stdout, "git 126\n", "{out:#?}");
    let denials = out.denials();
    assert_eq!(denials.len(), 1, "{out:#?}");
    assert!(denials[0].contains("no terminal"), "{out:#?}");
}

// ---------------------------------------------------------------------------------------
// audit
// ---------------------------------------------------------------------------------------

fn audit_lines(path: &Path) -> Vec<serde_json::Value> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn audit_log_has_one_line_per_exec_with_the_outcome(b: Backend) {
    skip_unless!(b.escalation_unavailable());
    let s = Scratch::new();
    fs::write(s.path("marker"), "").unwrap();
    let audit = s.audit();
    let out = s
        .supervise(b, &["escalate.rules", "forbidden.rules", "prompt.rules"])
        .arg("--on-prompt")
        .arg("deny")
        .run(r#"/bin/true; sh -c 'exit 3'; rm marker; git init -q; echo done"#);
    assert_eq!(out.stdout, "done\n", "{out:#?}");
    let lines = audit_lines(&audit);
    assert_eq!(lines.len(), 5, "bash, true, sh, rm, git: {lines:#?}");
    let by_program = |name: &str| {
        lines
            .iter()
            .find(|l| {
                l["program"]
                    .as_str()
                    .is_some_and(|p| Path::new(p).file_name() == Some(name.as_ref()))
            })
            .unwrap_or_else(|| panic!("no {name} line: {lines:#?}"))
    };
    let expect = |name: &str, decision: &str, decided_by: &str, ran_in: &str| {
        let l = by_program(name);
        assert_eq!(l["decision"], decision, "{name}: {l}");
        assert_eq!(l["decided_by"], decided_by, "{name}: {l}");
        assert_eq!(l["ran_in"], ran_in, "{name}: {l}");
        assert_eq!(l["cwd"], s.work.to_str().unwrap(), "{name}: {l}");
        assert!(l["pid"].as_i64().unwrap_or(0) > 0, "{name}: {l}");
        assert!(l["ppid"].as_i64().unwrap_or(0) > 0, "{name}: {l}");
        assert!(l["time_ms"].as_u64().unwrap_or(0) > 0, "{name}: {l}");
        l
    };
    let bash = expect("bash", "allow", "supervisor", "sandbox");
    if b == Backend::Wrapper {
        // The session's bash was replaced by the patched one.
        let patched = &patched_pieces().unwrap().bash;
        assert_eq!(bash["program"], patched.to_str().unwrap(), "{bash}");
    }
    let t = expect("true", "allow", "heuristics", "sandbox");
    assert_eq!(t["program"], "/bin/true", "{t}");
    let sh = expect("sh", "allow", "rule", "escalated");
    assert_eq!(sh["status"], serde_json::json!({"exited": 3}), "{sh}");
    assert!(sh["duration_ms"].is_u64(), "{sh}");
    let rm = expect("rm", "forbidden", "rule", "denied");
    assert_eq!(
        rm["matched_rules"][0]["origin"]["line"],
        rule_line("forbidden.rules", r#"pattern = ["rm"]"#),
        "{rm}"
    );
    assert!(rm["status"].is_null(), "{rm}");
    expect("git", "prompt", "supervisor", "denied");
    let sessions: Vec<_> = lines.iter().map(|l| &l["session"]).collect();
    assert!(sessions.iter().all(|id| *id == sessions[0]), "{lines:#?}");
}

// ---------------------------------------------------------------------------------------
// hostile callers
// ---------------------------------------------------------------------------------------

fn execve_with_bad_pointers_gets_efault_and_the_supervisor_keeps_serving(b: Backend) {
    skip_unless!(b.escalation_unavailable());
    let s = Scratch::new();
    testkit::ok_or_skip!(s.helper("badexec"));
    // `true` is rule-allowed here, so the bad-envp exec takes the escalation path (which
    // reads envp) rather than a continue.
    let out = s.supervise(b, &["true.rules", "escalate.rules"]).run(
        r#"./badexec /bin/echo still served; echo "badexec $?"
           /bin/true; echo "true $?"; sh -c 'exit 5'; echo "sh $?""#,
    );
    assert_eq!(
        out.stdout,
        "path ret=-1 errno=14\nargv ret=-1 errno=14\nargv-element ret=-1 errno=14\n\
         envp ret=-1 errno=14\nstill served\nbadexec 0\ntrue 0\nsh 5\n",
        "{out:#?}"
    );
    assert_eq!(out.code(), 0, "{out:#?}");
}

fn foreign_syscall_abis_are_killed_with_sigsys(b: Backend) {
    skip_unless!(b.unavailable());
    skip_unless!(
        (!cfg!(target_arch = "x86_64"))
            .then(|| Skip::exempt("i386 and x32 are x86_64's foreign ABIs", Exempt::NotX86_64))
    );
    let s = Scratch::new();
    let helper = testkit::ok_or_skip!(s.helper("foreign_abi"));
    // Control: unsupervised, the i386 call goes through (when the kernel has IA32
    // emulation), so a death under the supervisor is the filter's doing.
    let bare = Command::new(&helper).arg("i386").output().unwrap();
    let i386_works_bare = bare.status.success();
    if !i386_works_bare {
        eprintln!(
            "NOTE: int 0x80 fails without the supervisor too ({:?}); checking x32 only",
            bare.status
        );
    }
    let out = s.supervise(b, &[]).run(
        r#"./foreign_abi i386; echo "i386 $?"
           ./foreign_abi x32; echo "x32 $?"
           echo alive"#,
    );
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(!out.stdout.contains("survived"), "{out:#?}");
    if i386_works_bare {
        assert_eq!(lines.first(), Some(&"i386 159"), "{out:#?}");
    }
    assert_eq!(lines.get(1), Some(&"x32 159"), "{out:#?}");
    assert_eq!(lines.get(2), Some(&"alive"), "{out:#?}");
}

// ---------------------------------------------------------------------------------------
// supervisor death
// ---------------------------------------------------------------------------------------

/// Pids of processes whose environment holds `token` (the tree inherits it; `env -i`
/// would escape this census, and nothing here uses it).
fn processes_with(token: &str) -> Vec<u32> {
    let needle = format!("EXECGATE_E2E_TREE={token}");
    let mut pids = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(environ) = fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let zombie = fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|st| {
                st.rsplit_once(')')
                    .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(true);
        if !zombie
            && environ
                .split(|&b| b == 0)
                .any(|var| var == needle.as_bytes())
        {
            pids.push(pid);
        }
    }
    pids
}

/// Starts a tree (background sleeps, a sandboxed loop that keeps exec'ing, an escalated
/// sh with a child of its own), waits until it is all there, then SIGKILLs execgate.
/// Returns the scratch dir, the token and the pids seen before the kill.
fn kill_supervisor_mid_session(b: Backend) -> (Scratch, String, Vec<u32>) {
    let s = Scratch::new();
    let token = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let fifo = s.path("tick");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let mut child = s
        .supervise(b, &["escalate.rules"])
        .env("EXECGATE_E2E_TREE", &token)
        .spawn(
            r#"sleep 600 &
               (sleep 600; true) &
               sh -c 'sleep 600; true' &
               # Keeps exec'ing once a tick (read -t on a fifo: a builtin sleep).
               ( exec 9<>tick
                 while :; do /bin/true; echo "true $?" >> execs.log; read -t 0.1 -u 9; done ) &
               wait"#,
        );
    // sleep x3, the subshell, the escalated sh, the loop: wait until the loop has exec'd.
    let deadline = Instant::now() + RUN_LIMIT;
    while !fs::read_to_string(s.path("execs.log"))
        .unwrap_or_default()
        .contains("true 0")
        || processes_with(&token).len() < 7
    {
        assert!(
            Instant::now() < deadline,
            "the tree did not start: {:?}",
            processes_with(&token)
        );
        if let Some(status) = child.try_wait().unwrap() {
            panic!("execgate ended early: {status:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = processes_with(&token);
    child.kill().unwrap(); // SIGKILL: no teardown code of the supervisor runs.
    child.wait().unwrap();
    (s, token, before)
}

/// Kills what a test left behind (processes it started), so nothing outlives it.
fn kill_all(pids: &[u32]) {
    for pid in pids {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
}

fn killing_the_supervisor_leaves_no_process_of_the_tree_able_to_exec(b: Backend) {
    skip_unless!(b.escalation_unavailable());
    let (s, token, _) = kill_supervisor_mid_session(b);
    // The listener closed with the supervisor: a sandboxed process still running gets
    // ENOSYS for every exec (bash: 126), so nothing new runs unsupervised. Wait for the
    // loop to try at least once after the kill, or for it to be gone.
    let log_len = fs::read_to_string(s.path("execs.log"))
        .unwrap_or_default()
        .len();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut after = String::new();
    while Instant::now() < deadline {
        after = fs::read_to_string(s.path("execs.log")).unwrap_or_default()[log_len..].to_string();
        // A line that was being written during the kill may be the old outcome; a
        // second one is certainly after it.
        if after.lines().count() >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let survivors = processes_with(&token);
    kill_all(&survivors);
    eprintln!("execs after the kill: {after:?}; survivors: {survivors:?}");
    assert!(
        !after.lines().skip(1).any(|l| l == "true 0"),
        "an exec succeeded after the supervisor died: {after}"
    );
}

/// PDEATHSIG reaches only the session's root and the escalated copies; the orphans
/// (bash's background children, an escalated copy's children) die by the watchdog, which
/// kills the supervisor's cgroup. Needs cgroup v2 with `cgroup.kill`.
fn killing_the_supervisor_leaves_no_process_of_the_tree_running(b: Backend) {
    skip_unless!(b.escalation_unavailable());
    skip_unless!(no_cgroup_kill());
    let (_s, token, before) = kill_supervisor_mid_session(b);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut survivors = processes_with(&token);
    while !survivors.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        survivors = processes_with(&token);
    }
    let described: Vec<String> = survivors
        .iter()
        .map(|pid| {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            format!(
                "{pid}: {}",
                String::from_utf8_lossy(&cmdline).replace('\0', " ")
            )
        })
        .collect();
    kill_all(&survivors);
    assert!(
        described.is_empty(),
        "still running 10 s after execgate was killed (of {} before): {described:#?}",
        before.len()
    );
}

/// Why the watchdog cannot work here, if it cannot.
fn no_cgroup_kill() -> Option<String> {
    let doctor = Command::new(env!("CARGO_BIN_EXE_execgate"))
        .args(["doctor", "--json"])
        .output()
        .ok()?;
    let json: serde_json::Value = serde_json::from_slice(&doctor.stdout).ok()?;
    let kill = json["cgroup"]["kill"]["available"]
        .as_bool()
        .unwrap_or(false);
    let writable = json["cgroup"]["writable"].as_bool().unwrap_or(false);
    (!(kill && writable)).then(|| "no writable cgroup v2 with cgroup.kill here".to_owned())
}

// ---------------------------------------------------------------------------------------
// load
// ---------------------------------------------------------------------------------------

fn many_concurrent_escalated_execs_all_succeed(b: Backend) {
    skip_unless!(b.escalation_unavailable());
    let s = Scratch::new();
    let out = s.supervise(b, &["escalate.rules"]).run(
        r#"seq 200 | xargs -P8 -n1 sh -c 'echo "ok $0"; exit 0' | sort -n -k2 > out.txt
           echo "xargs ${PIPESTATUS[1]}"; wc -l < out.txt"#,
    );
    assert_eq!(out.stdout, "xargs 0\n200\n", "{out:#?}");
    let expected: String = (1..=200).map(|i| format!("ok {i}\n")).collect();
    assert_eq!(fs::read_to_string(s.path("out.txt")).unwrap(), expected);
}

fn many_concurrent_sandboxed_and_escalated_execs_all_succeed(b: Backend) {
    skip_unless!(b.escalation_unavailable());
    let s = Scratch::new();
    // /bin/echo continues in the sandbox (heuristics); each sh is escalated and its own
    // child (/bin/echo again) runs outside, unstopped.
    let out = s.supervise(b, &["escalate.rules"]).run(
        r#"seq 200 | xargs -P8 -n1 /bin/echo sandboxed > a.txt; echo "a ${PIPESTATUS[1]}"
           seq 100 | xargs -P8 -n2 sh -c '/bin/echo "escalated $0"; /bin/echo "escalated $1"' > b.txt
           echo "b ${PIPESTATUS[1]}"
           cat a.txt b.txt | wc -l"#,
    );
    assert_eq!(out.stdout, "a 0\nb 0\n300\n", "{out:#?}");
}

// ---------------------------------------------------------------------------------------
// process isolation: a PID namespace with its own /proc
// ---------------------------------------------------------------------------------------

fn a_sandboxed_tree_cannot_read_the_environment_of_processes_outside_it(b: Backend) {
    skip_unless!(b.pid_namespace_unavailable());
    let scratch = Scratch::new();
    // A process of the same user outside the session, with a secret in its environment
    // (as an agent keeps its API key).
    let secret = format!("s3cret-{}", std::process::id());
    let mut outside = Command::new("sleep")
        .arg("60")
        .env("EXECGATE_E2E_OUTSIDE_SECRET", &secret)
        .spawn()
        .unwrap();
    let script = r#"
        n=0
        for f in /proc/[0-9]*/environ; do
            tr '\0' '\n' < "$f" 2>/dev/null | grep -q '^EXECGATE_E2E_OUTSIDE_SECRET=' && n=$((n + 1))
        done
        echo "environments with the secret: $n"
        echo "init environ bytes: $(tr -d '\0' < /proc/1/environ | wc -c)"
        echo "init cmdline bytes: $(tr -d '\0' < /proc/1/cmdline | wc -c)"
    "#;
    let sandboxed = scratch.supervise(b, &[]).run(script);
    // The same script without a sandbox is the control: the secret is there to be found.
    let unconfined = scratch
        .supervise(b, &[])
        .arg("--sandbox")
        .arg("danger-full-access")
        .run(script);
    let _ = outside.kill();
    let _ = outside.wait();
    assert_eq!(sandboxed.code(), 0, "{sandboxed:#?}");
    assert_eq!(
        sandboxed.stdout,
        "environments with the secret: 0\ninit environ bytes: 0\ninit cmdline bytes: 0\n",
        "{sandboxed:#?}"
    );
    assert!(
        !unconfined
            .stdout
            .contains("environments with the secret: 0"),
        "the control run should see the outside process: {unconfined:#?}"
    );
}

/// A tree that may write the cgroup filesystem (danger-full-access) and makes child
/// cgroups below its session's: the session's cgroup is still removed at its end, children
/// first (before: EBUSY for 5 s, then left behind, and every later start walked it).
fn child_cgroups_of_the_tree_are_removed_with_the_session(b: Backend) {
    skip_unless!(b.unavailable());
    let Some(root) = fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .find(|l| l.contains(" - cgroup2 "))
        .and_then(|l| l.split_whitespace().nth(4).map(str::to_string))
    else {
        panic!("no cgroup2 mount: CI hosts have one");
    };
    let scratch = Scratch::new();
    let out = scratch
        .supervise(b, &[])
        .arg("--sandbox")
        .arg("danger-full-access")
        .run(&format!(
            "own=$(sed -n 's/^0:://p' /proc/self/cgroup); echo \"$own\"; \
             mkdir -p {root}$own/made-by-the-tree/and-below && echo made"
        ));
    let own = out.stdout.lines().next().unwrap_or_default().to_owned();
    assert!(
        out.stdout.ends_with("made\n") && own.contains("/session-"),
        "{out:#?}"
    );
    let session = PathBuf::from(format!("{root}{own}"));
    assert!(
        !session.exists(),
        "the session's cgroup was left behind: {}\n{out:#?}",
        session.display()
    );
    assert!(!out.stderr.contains("removing session cgroup"), "{out:#?}");
}

fn a_sandboxed_tree_keeps_exact_statuses_and_has_its_orphans_reaped(b: Backend) {
    skip_unless!(b.pid_namespace_unavailable());
    let scratch = Scratch::new();
    let sup = scratch.supervise(b, &[]);
    // Signals sent to the session's program still end it with their number.
    assert_eq!(sup.run("kill -TERM $$; sleep 5").code(), 128 + 15);
    assert_eq!(sup.run("exit 42").code(), 42);
    // A program that never waits for strangers (not a shell): the orphan its child leaves
    // is reaped by the namespace's init instead of staying a zombie under it.
    let out = sup.run(
        r#"exec python3 -c '
import os, subprocess, time
subprocess.run(["sh", "-c", "sleep 0.2 & echo $! > orphan"])
pid = open("orphan").read().strip()
time.sleep(1.5)
print("orphan", "reaped" if not os.path.exists("/proc/" + pid) else "left: " + open("/proc/" + pid + "/stat").read().split()[2])
'"#,
    );
    assert_eq!(out.code(), 0, "{out:#?}");
    assert_eq!(out.stdout, "orphan reaped\n", "{out:#?}");
}

fn an_unprivileged_supervisor_isolates_the_tree_in_a_user_namespace(b: Backend) {
    skip_unless!(b.unavailable());
    // Run as nobody: no CAP_SYS_ADMIN, so the PID namespace comes with a user namespace.
    skip_unless!(
        (!is_root()).then_some("needs root to run the supervisor as another, unprivileged user")
    );
    let setpriv =
        testkit::ok_or_skip!(which("setpriv").ok_or("no setpriv (util-linux) to drop privileges"));
    let as_nobody = |cmd: &mut Command| {
        cmd.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--",
        ]);
    };
    let mut doctor = Command::new(&setpriv);
    as_nobody(&mut doctor);
    let out = doctor
        .args([EXECGATE, "doctor", "--json"])
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    skip_unless!((doc["pid_namespace"]["available"] != true).then(|| format!(
        "no unprivileged PID namespace here: {}",
        doc["pid_namespace"]["detail"]
    )));
    let scratch = Scratch::new();
    for dir in [&scratch.work, &scratch.io] {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o777)).unwrap();
        fs::set_permissions(dir.parent().unwrap(), fs::Permissions::from_mode(0o755)).unwrap();
    }
    // The same user's process outside the session, with a secret in its environment.
    let mut outside = Command::new(&setpriv);
    as_nobody(&mut outside);
    let mut outside = outside
        .args(["sleep", "60"])
        .env("EXECGATE_E2E_NOBODYS_SECRET", "x")
        .spawn()
        .unwrap();
    let sup = scratch
        .supervise(b, &[])
        .wrapped_by(&[
            setpriv.to_str().unwrap(),
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg("--workdir")
        .arg(&scratch.work);
    let out = sup.run(
        r#"
        n=0
        for f in /proc/[0-9]*/environ; do
            tr '\0' '\n' < "$f" 2>/dev/null | grep -q '^EXECGATE_E2E_NOBODYS_SECRET=' && n=$((n + 1))
        done
        echo "uid $(id -u), environments with the secret: $n"
        echo made > made.txt
        kill -TERM $$
        "#,
    );
    let _ = outside.kill();
    let _ = outside.wait();
    assert_eq!(out.code(), 128 + 15, "{out:#?}");
    assert_eq!(
        out.stdout, "uid 65534, environments with the secret: 0\n",
        "{out:#?}"
    );
    // Files the sandbox writes belong to the user, not to an id of the namespace.
    use std::os::unix::fs::MetadataExt;
    assert_eq!(fs::metadata(scratch.path("made.txt")).unwrap().uid(), 65534);
}

fn resource_limits_from_the_command_line_bind_the_tree(b: Backend) {
    skip_unless!(b.unavailable());
    let scratch = Scratch::new();
    if b == Backend::Wrapper {
        // A wrapper-backend defect, pinned here so that it is seen: the rendezvous socket
        // is moved to fd 100, which fails with EBADF once nofile is 100 or lower, and the
        // session does not start. When this is fixed, this block goes and the scenario
        // runs unchanged.
        let low = scratch
            .supervise(b, &[])
            .arg("--limit")
            .arg("nofile=64")
            .run("echo ran");
        assert_eq!(low.code(), 2, "{low:#?}");
        assert!(low.stdout.is_empty(), "{low:#?}");
        assert!(low.stderr.contains("Bad file descriptor"), "{low:#?}");
    }
    // Under the wrapper, a nofile above its rendezvous fd (see above).
    let nofile = match b {
        Backend::Unotify => "64",
        Backend::Wrapper => "128",
    };
    let out = scratch
        .supervise(b, &[])
        .arg("--limit")
        .arg(format!("nofile={nofile}"))
        .arg("--limit")
        .arg("fsize=1K")
        .run("ulimit -n; head -c 5000 /dev/zero > big; echo \"head $?\"; stat -c %s big");
    assert_eq!(out.code(), 0, "{out:#?}");
    // head dies of SIGXFSZ (25) at the 1 KiB limit.
    assert_eq!(
        out.stdout,
        format!("{nofile}\nhead 153\n1024\n"),
        "{out:#?}"
    );
    // A limit that does not parse is refused before anything runs.
    let bad = scratch
        .supervise(b, &[])
        .arg("--limit")
        .arg("stack=1M")
        .run("echo ran > ran.txt");
    assert_eq!(bad.code(), 2, "{bad:#?}");
    assert!(bad.stderr.contains("unknown limit `stack`"), "{bad:#?}");
    assert!(!scratch.path("ran.txt").exists());
}

// ---------------------------------------------------------------------------------------
// the sandbox under an allowed program
// ---------------------------------------------------------------------------------------

fn sandbox_still_holds_for_an_allowed_program(b: Backend) {
    skip_unless!(b.unavailable());
    let s = Scratch::new();
    // read-only: the heuristics allow `touch`, and it runs in place inside the sandbox.
    let out = s
        .supervise(b, &[])
        .arg("--sandbox")
        .arg("read-only")
        .run(r#"touch made 2>/dev/null; echo "touch=$?""#);
    assert_eq!(out.stdout, "touch=1\n", "{out:#?}");
    assert!(!s.path("made").exists(), "{out:#?}");
}

// ---------------------------------------------------------------------------------------
// choosing the backend (not scenarios of a session: each runs once)
// ---------------------------------------------------------------------------------------

/// Only the wrapper backend has a patched bash to miss.
#[test]
fn wrapper_backend_without_a_patched_bash_says_where_it_looked() {
    let p = testkit::ok_or_skip!(patched_pieces());
    let out = Command::new(EXECGATE)
        .args(["supervise", "--backend", "wrapper", "--no-default-rules"])
        .args(["--patched-bash", "/nonexistent/bash"])
        .args(["--", "bash", "-c", "echo ran"])
        .env("EXECGATE_EXECVE_WRAPPER", &p.wrapper)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the wrapper backend cannot run here")
            && stderr.contains("--patched-bash /nonexistent/bash")
            && stderr.contains("build-shells"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing ran: {out:?}");
}
/// True when the ELF file at `path` has no `PT_INTERP` program header: it starts without
/// the dynamic loader (static or static-pie).
fn has_no_interpreter(path: &Path) -> bool {
    let elf = fs::read(path).unwrap();
    assert_eq!(&elf[..4], b"\x7fELF", "{} is not ELF", path.display());
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = usize::try_from(u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap())).unwrap();
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    const PT_INTERP: u32 = 3;
    (0..phnum).all(|i| {
        let at = phoff + i * phentsize;
        u32::from_le_bytes(elf[at..at + 4].try_into().unwrap()) != PT_INTERP
    })
}

/// `build-shells` links the exec wrapper statically beside the shells it built (#18: the
/// wrapper's start-up is paid on every exec), and with no `EXECGATE_EXECVE_WRAPPER` a
/// session finds and runs that one: a forbidden `touch` is refused through it and leaves
/// no file, an allowed `echo` runs.
#[test]
fn the_wrapper_build_shells_linked_statically_is_the_one_found() {
    let p = testkit::ok_or_skip!(patched_pieces());
    let kit = p.bash.parent().unwrap();
    let wrapper = kit.join("execgate-execve-wrapper");
    testkit::skip_unless!(
        (!wrapper.is_file()).then(|| testkit::Skip::patched_shells(format!(
            "no {}: rerun patches-fallback/build-shells",
            wrapper.display()
        )))
    );
    assert!(
        has_no_interpreter(&wrapper),
        "{} needs the dynamic loader",
        wrapper.display()
    );
    let doctor = Command::new(EXECGATE)
        .args(["doctor", "--json"])
        .env("EXECGATE_PATCHED_SHELLS", kit.parent().unwrap())
        .env_remove("EXECGATE_EXECVE_WRAPPER")
        .env_remove("EXECGATE_PATCHED_BASH")
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&doctor.stdout).unwrap();
    assert_eq!(
        report["patched_shell"]["wrapper"]["path"],
        wrapper.to_str().unwrap(),
        "{report}"
    );
    let work = tempfile::tempdir().unwrap();
    let rules = work.path().join("deny.rules");
    fs::write(
        &rules,
        "prefix_rule(pattern = [\"touch\"], decision = \"forbidden\")\n",
    )
    .unwrap();
    let planted = work.path().join("planted");
    let out = Command::new(EXECGATE)
        .args([
            "supervise",
            "--backend",
            "wrapper",
            "--no-default-rules",
            "--rules",
        ])
        .arg(&rules)
        .arg("--workdir")
        .arg(work.path())
        .args(["--", "bash", "-c", "touch planted; echo \"touch said $?\""])
        .env("EXECGATE_PATCHED_SHELLS", kit.parent().unwrap())
        .env_remove("EXECGATE_EXECVE_WRAPPER")
        .env_remove("EXECGATE_PATCHED_BASH")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("touch said 126"), "{out:?}");
    assert!(!planted.exists(), "the forbidden touch ran: {out:?}");
}

#[test]
fn doctor_shows_both_backends_and_the_wrapper_pieces() {
    let p = testkit::ok_or_skip!(patched_pieces());
    let out = Command::new(EXECGATE)
        .arg("doctor")
        .env("EXECGATE_PATCHED_BASH", &p.bash)
        .env("EXECGATE_EXECVE_WRAPPER", &p.wrapper)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let bash_row = table
        .lines()
        .find(|l| l.starts_with("patched bash"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(bash_row.contains(p.bash.to_str().unwrap()), "{table}");
    assert!(table.contains("backend: "), "{table}");
    // Whichever is chosen, the other is named with the reason it was not.
    assert!(
        table.contains("  not wrapper: ") || table.contains("  not unotify: "),
        "{table}"
    );
    let json = Command::new(EXECGATE)
        .args(["doctor", "--json"])
        .env("EXECGATE_PATCHED_BASH", &p.bash)
        .env("EXECGATE_EXECVE_WRAPPER", &p.wrapper)
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let candidates = json["backend"]["candidates"].as_array().unwrap();
    let names: Vec<&str> = candidates
        .iter()
        .filter_map(|c| c["backend"].as_str())
        .collect();
    assert_eq!(names, ["unotify", "wrapper"], "{json}");
    assert_eq!(candidates[1]["usable"], true, "{json}");
    assert_eq!(
        json["patched_shell"]["wrapper"]["path"],
        p.wrapper.to_str().unwrap(),
        "{json}"
    );
}

/// `--backend auto` where unotify cannot run picks the wrapper and says so once. Inside an
/// unotify session a nested listener is refused (the session filter denies it), which is
/// exactly "this environment blocks user notification": the inner execgate falls back.
#[test]
fn auto_falls_back_to_the_wrapper_with_one_notice_where_unotify_is_blocked() {
    let p = testkit::ok_or_skip!(patched_pieces());
    let actions = fs::read_to_string("/proc/sys/kernel/seccomp/actions_avail").unwrap_or_default();
    skip_unless!(
        (!actions.split_whitespace().any(|a| a == "user_notif"))
            .then_some("no seccomp user notification here for the outer session")
    );
    let s = Scratch::new();
    let inner_audit = s.io.join("inner.jsonl");
    let inner = format!(
        "'{EXECGATE}' supervise --no-default-rules --audit '{}' -- bash -c 'echo inner; /bin/true; echo $?'; echo outer=$?",
        inner_audit.display()
    );
    let out = Command::new(EXECGATE)
        .args(["supervise", "--backend", "unotify", "--no-default-rules"])
        .args([
            "--sandbox",
            "danger-full-access",
            "--",
            "bash",
            "-c",
            &inner,
        ])
        .current_dir(&s.work)
        .env("EXECGATE_PATCHED_BASH", &p.bash)
        .env("EXECGATE_EXECVE_WRAPPER", &p.wrapper)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stdout, "inner\n0\nouter=0\n", "{stderr}");
    let notices: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("using the wrapper backend"))
        .collect();
    assert_eq!(notices.len(), 1, "{stderr}");
    assert!(
        notices[0].contains("seccomp user notification cannot be used here")
            && notices[0].contains("python's subprocess"),
        "the notice says why and what is not seen: {}",
        notices[0]
    );
    let lines: Vec<serde_json::Value> = fs::read_to_string(&inner_audit)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "bash and true: {lines:#?}");
    assert_eq!(lines[0]["program"], p.bash.to_str().unwrap(), "{lines:#?}");
    assert_eq!(lines[1]["program"], "/bin/true", "{lines:#?}");
}

// ---------------------------------------------------------------------------------------
// The table: every scenario on both backends, as `unotify::NAME` and `wrapper::NAME`
// ---------------------------------------------------------------------------------------

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        /// `--backend unotify` with a stock bash.
        mod unotify {
            $( #[test] fn $name() { super::$name(super::Backend::Unotify) } )*
        }
        /// `--backend wrapper` with the patched bash and `execgate-execve-wrapper`.
        mod wrapper {
            $( #[test] fn $name() { super::$name(super::Backend::Wrapper) } )*
        }
    };
}

// Where the backends differ, the scenario asserts each one's behaviour (`match b`):
// - python_subprocess_and_posix_spawn_execs, find_xargs_env_and_nice_running_rm,
//   make_running_rm: unotify stops the forbidden rm; the wrapper does not see an exec that
//   is not the patched shell's (docs/threat-model.md, "Known gaps"), so rm runs there.
// - a_session_program_that_is_not_bash: unotify runs it; the wrapper refuses it.
scenarios! {
    allowed_runs_in_the_sandbox_and_forbidden_does_not_run,
    escalated_status_is_exact_as_bash_sees_it,
    escalated_last_command_is_the_session_status,
    escalated_command_shares_stdin_and_stdout_in_order,
    escalated_status_reaches_pipelines_substitutions_and_background_jobs,
    escalated_command_runs_in_the_callers_cwd_with_a_clean_environment,
    an_escalated_copy_does_not_outlive_its_killed_caller,
    the_session_can_read_its_terminal,
    escalated_and_sandboxed_programs_inherit_no_stray_fds,
    python_subprocess_and_posix_spawn_execs,
    find_xargs_env_and_nice_running_rm,
    make_running_rm,
    prompt_answered_deny_leaves_nothing_behind,
    prompt_answered_allow_runs_escalated,
    a_session_program_that_is_not_bash,
    prompt_without_a_terminal_is_denied_and_says_so,
    audit_log_has_one_line_per_exec_with_the_outcome,
    execve_with_bad_pointers_gets_efault_and_the_supervisor_keeps_serving,
    foreign_syscall_abis_are_killed_with_sigsys,
    killing_the_supervisor_leaves_no_process_of_the_tree_able_to_exec,
    killing_the_supervisor_leaves_no_process_of_the_tree_running,
    many_concurrent_escalated_execs_all_succeed,
    many_concurrent_sandboxed_and_escalated_execs_all_succeed,
    a_sandboxed_tree_cannot_read_the_environment_of_processes_outside_it,
    a_sandboxed_tree_keeps_exact_statuses_and_has_its_orphans_reaped,
    an_unprivileged_supervisor_isolates_the_tree_in_a_user_namespace,
    resource_limits_from_the_command_line_bind_the_tree,
    sandbox_still_holds_for_an_allowed_program,
    child_cgroups_of_the_tree_are_removed_with_the_session,
}

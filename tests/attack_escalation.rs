//! Attacks on escalation (issue #14): rule-allowed programs run outside the sandbox, so
//! they are the way out. Each test drives the real `execgate supervise` with real bash as
//! root, with rules a careful user writes (`tests/fixtures/rules/attack/`), and observes
//! the effect OUTSIDE the session: a canary file in a fresh directory under /var/lib
//! (outside the workdir, /tmp and $TMPDIR, the writable roots of `workspace-write`), a
//! bare repository that must not receive a push, a process's cgroup read from outside.
//! Both backends (`unotify`, `wrapper`) where the attack applies.
//!
//! A test whose attack still succeeds on the current code is `#[ignore]`d with what got
//! out; the fix un-ignores it.

#![cfg(target_os = "linux")]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{Output, Scratch, wait_bounded};

mod attack_harness;
use attack_harness::{
    Backend, Canary, Unotify, Wrapper, attack_fixture, audit_lines, compile, outside, run,
    skip_unless_available, supervise_command,
};

/// A payload that, run anywhere, writes `canary` (it can only outside the sandbox).
fn payload(canary: &str) -> String {
    format!("#!/bin/sh\necho escaped > {canary}\n")
}

fn write_exe(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// A repository with one commit (of `file`), made outside the session, as the user's.
fn user_repo(dir: &Path, file: &str) {
    outside("git", &["init", "-q", "-b", "main"], dir);
    fs::write(dir.join(file), "one\n").unwrap();
    outside("git", &["add", file], dir);
    outside("git", &["commit", "-q", "-m", "one"], dir);
}

fn assert_no_canary(canary: &Path, out: &Output) {
    assert!(
        !canary.exists(),
        "escaped: {} was written outside the sandbox ({:?})\n{out:#?}",
        canary.display(),
        fs::read_to_string(canary).unwrap_or_default()
    );
}

// ---------------------------------------------------------------------------------------
// 1, 2: a name rule escalates files the agent wrote
// ---------------------------------------------------------------------------------------

/// `cp payload ./ls; ./ls` under `prefix_rule(["ls"], "allow")`, workspace-write.
fn dot_slash_ls(b: Backend) {
    skip_unless_available!(b);
    let s = Scratch::new();
    let c = Canary::new();
    let script = format!(
        "printf '%s' {payload} > ls; chmod +x ls; ./ls; echo \"ls=$?\"; /usr/bin/ls >/dev/null; echo \"real=$?\"",
        payload = attack_harness::sh_quote(&payload(&c.p("canary")))
    );
    let out = run(&s, b, &["ls.rules"], &[], &script);
    assert_no_canary(&c.path("canary"), &out);
    // The real ls still runs.
    assert!(out.stdout.contains("real=0"), "{out:#?}");
}

#[test]
fn dot_slash_ls_unotify() {
    dot_slash_ls(Unotify)
}
#[test]
fn dot_slash_ls_wrapper() {
    dot_slash_ls(Wrapper)
}

/// The same from `read-only`, with the payload left in the workdir by an earlier session.
fn dot_slash_ls_read_only(b: Backend) {
    skip_unless_available!(b);
    let s = Scratch::new();
    let c = Canary::new();
    write_exe(&s.path("ls"), &payload(&c.p("canary")));
    let out = run(
        &s,
        b,
        &["ls.rules"],
        &["--sandbox", "read-only"],
        "./ls; echo \"ls=$?\"",
    );
    assert_no_canary(&c.path("canary"), &out);
}

#[test]
fn dot_slash_ls_read_only_unotify() {
    dot_slash_ls_read_only(Unotify)
}
#[test]
fn dot_slash_ls_read_only_wrapper() {
    dot_slash_ls_read_only(Wrapper)
}

/// `host_executable(name="ls", paths=["/usr/bin/ls"])`: `$W/s/../../usr/bin/ls` with `s` a
/// symlink is `/usr/bin/ls` on paper and `$W/usr/bin/ls` to the kernel.
fn symlink_dotdot_under_a_pin(b: Backend) {
    skip_unless_available!(b);
    let s = Scratch::new();
    let c = Canary::new();
    let depth = s.work.components().count() - 1; // components below /
    let chain: Vec<String> = (0..=depth).map(|i| format!("d{i}")).collect();
    let path = format!(
        "{}/s/{}usr/bin/ls",
        s.work.display(),
        "../".repeat(depth + 1)
    );
    let script = format!(
        "mkdir -p {chain} usr/bin && ln -s {chain} s && printf '%s' {payload} > usr/bin/ls && chmod +x usr/bin/ls
         {path}; echo \"ls=$?\"",
        chain = chain.join("/"),
        payload = attack_harness::sh_quote(&payload(&c.p("canary")))
    );
    let out = run(&s, b, &["ls-pinned.rules"], &[], &script);
    assert_no_canary(&c.path("canary"), &out);
}

#[test]
fn symlink_dotdot_under_a_pin_unotify() {
    symlink_dotdot_under_a_pin(Unotify)
}
#[test]
fn symlink_dotdot_under_a_pin_wrapper() {
    symlink_dotdot_under_a_pin(Wrapper)
}

// ---------------------------------------------------------------------------------------
// 3: the escalated copy inherits the caller's environment
// ---------------------------------------------------------------------------------------

/// LD_PRELOAD of the agent's library into the pinned `/usr/bin/ls` and into `git status`.
fn ld_preload(b: Backend) {
    skip_unless_available!(b);
    let s = Scratch::new();
    let c = Canary::new();
    user_repo(&s.work, "f");
    compile("attack_preload", &s.work, true);
    let script = format!(
        "LD_PRELOAD=$PWD/attack_preload.so ATTACK_CANARY={ls} /usr/bin/ls >/dev/null; echo \"ls=$?\"
         LD_PRELOAD=$PWD/attack_preload.so ATTACK_CANARY={git} git status >/dev/null; echo \"git=$?\"",
        ls = c.p("canary-ls"),
        git = c.p("canary-git"),
    );
    let out = run(&s, b, &["ls-pinned.rules", "git.rules"], &[], &script);
    assert_no_canary(&c.path("canary-ls"), &out);
    assert_no_canary(&c.path("canary-git"), &out);
    assert_eq!(out.stdout, "ls=0\ngit=0\n", "{out:#?}");
}

#[test]
fn ld_preload_into_escalated_programs_unotify() {
    ld_preload(Unotify)
}
#[test]
fn ld_preload_into_escalated_programs_wrapper() {
    ld_preload(Wrapper)
}

/// GIT_CONFIG_COUNT/KEY/VALUE set core.fsmonitor (a command) for an escalated `git status`.
fn git_config_env_fsmonitor(b: Backend) {
    skip_unless_available!(b);
    let s = Scratch::new();
    let c = Canary::new();
    user_repo(&s.work, "f");
    let script = format!(
        "GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=core.fsmonitor GIT_CONFIG_VALUE_0='echo escaped > {canary}; false' git status >/dev/null 2>&1; echo \"git=$?\"",
        canary = c.p("canary"),
    );
    let out = run(&s, b, &["git.rules"], &[], &script);
    assert_no_canary(&c.path("canary"), &out);
}

#[test]
fn git_config_env_fsmonitor_unotify() {
    git_config_env_fsmonitor(Unotify)
}
#[test]
fn git_config_env_fsmonitor_wrapper() {
    git_config_env_fsmonitor(Wrapper)
}

/// BASH_ENV into an allowed bash script (`ldd` is one: `#!/bin/bash`).
fn bash_env_through_a_script_shim(b: Backend) {
    skip_unless_available!(b);
    let head = fs::read_to_string("/usr/bin/ldd").unwrap_or_default();
    assert!(
        head.starts_with("#!/bin/bash"),
        "this attack needs /usr/bin/ldd to be a bash script"
    );
    let s = Scratch::new();
    let c = Canary::new();
    let script = format!(
        "echo 'echo escaped > {canary}' > env.sh; BASH_ENV=$PWD/env.sh ldd /bin/true >/dev/null; echo \"ldd=$?\"",
        canary = c.p("canary"),
    );
    let out = run(&s, b, &["ldd.rules"], &[], &script);
    assert_no_canary(&c.path("canary"), &out);
    assert_eq!(out.stdout, "ldd=0\n", "{out:#?}");
}

#[test]
fn bash_env_through_a_script_shim_unotify() {
    bash_env_through_a_script_shim(Unotify)
}
#[test]
fn bash_env_through_a_script_shim_wrapper() {
    bash_env_through_a_script_shim(Wrapper)
}

/// PYTHONPATH with a sitecustomize.py into an exactly pinned `python3 -c "print('ok')"`.
fn pythonpath(b: Backend) {
    skip_unless_available!(b);
    let s = Scratch::new();
    let c = Canary::new();
    let script = format!(
        "mkdir -p pp && echo \"open('{canary}', 'w').write('escaped')\" > pp/sitecustomize.py
         PYTHONPATH=$PWD/pp /usr/bin/python3 -c \"print('ok')\"; echo \"python=$?\"",
        canary = c.p("canary"),
    );
    let out = run(&s, b, &["python.rules"], &[], &script);
    assert_no_canary(&c.path("canary"), &out);
    assert_eq!(out.stdout, "ok\npython=0\n", "{out:#?}");
}

#[test]
fn pythonpath_into_pinned_python_unotify() {
    pythonpath(Unotify)
}
#[test]
fn pythonpath_into_pinned_python_wrapper() {
    pythonpath(Wrapper)
}

/// MAKEFILES into an allowed `make -n` (a dry run still expands `$(shell ...)`).
fn makefiles(b: Backend) {
    skip_unless_available!(b);
    let s = Scratch::new();
    let c = Canary::new();
    fs::write(s.path("Makefile"), "all:\n\t@echo built\n").unwrap();
    let script = format!(
        "echo '$(shell echo escaped > {canary})' > evil.mk; MAKEFILES=$PWD/evil.mk make -n >/dev/null; echo \"make=$?\"",
        canary = c.p("canary"),
    );
    let out = run(&s, b, &["make-dry-run.rules"], &[], &script);
    assert_no_canary(&c.path("canary"), &out);
    assert_eq!(out.stdout, "make=0\n", "{out:#?}");
}

#[test]
fn makefiles_into_make_dry_run_unotify() {
    makefiles(Unotify)
}
#[test]
fn makefiles_into_make_dry_run_wrapper() {
    makefiles(Wrapper)
}

// ---------------------------------------------------------------------------------------
// 4: argv[0] steers the copy
// ---------------------------------------------------------------------------------------

/// `(exec -a git-difftool git status -y -x ./o.sh)` under a `git status` rule: git runs as
/// difftool (`status` is a path the agent changed) and runs the agent's o.sh.
fn exec_a_git_difftool(b: Backend) {
    skip_unless_available!(b);
    let s = Scratch::new();
    let c = Canary::new();
    user_repo(&s.work, "status");
    let script = format!(
        "echo two > status; printf '%s' {payload} > o.sh; chmod +x o.sh
         (exec -a git-difftool git status -y -x ./o.sh) >/dev/null 2>&1; echo \"git=$?\"",
        payload = attack_harness::sh_quote(&payload(&c.p("canary"))),
    );
    let out = run(&s, b, &["git.rules"], &[], &script);
    assert_no_canary(&c.path("canary"), &out);
}

#[test]
fn exec_a_git_difftool_under_git_status_unotify() {
    exec_a_git_difftool(Unotify)
}
#[test]
fn exec_a_git_difftool_under_git_status_wrapper() {
    exec_a_git_difftool(Wrapper)
}

/// `(exec -a git-push git status HEAD:refs/heads/pwned)` with a remote named `status`:
/// pushes although `git push` is forbidden. The bare repository (outside) must not get it.
fn exec_a_git_push(b: Backend) {
    skip_unless_available!(b);
    let s = Scratch::new();
    let c = Canary::new();
    user_repo(&s.work, "f");
    let bare = c.path("remote.git");
    outside(
        "git",
        &["init", "-q", "--bare", bare.to_str().unwrap()],
        &c.dir,
    );
    outside(
        "git",
        &["remote", "add", "status", bare.to_str().unwrap()],
        &s.work,
    );
    let out = run(
        &s,
        b,
        &["git.rules"],
        &[],
        "(exec -a git-push git status HEAD:refs/heads/pwned) >/dev/null 2>&1; echo \"as-push=$?\"
         git push status HEAD:refs/heads/direct 2>/dev/null; echo \"push=$?\"",
    );
    let refs = Command::new("git")
        .args(["--git-dir", bare.to_str().unwrap(), "for-each-ref"])
        .output()
        .unwrap();
    let refs = String::from_utf8_lossy(&refs.stdout);
    assert!(
        refs.trim().is_empty(),
        "escaped: the bare repository outside received {refs}\n{out:#?}"
    );
    // The plain spelling is forbidden (126) today and after.
    assert!(out.stdout.contains("push=126"), "{out:#?}");
}

#[test]
fn exec_a_git_push_under_git_status_unotify() {
    exec_a_git_push(Unotify)
}
#[test]
fn exec_a_git_push_under_git_status_wrapper() {
    exec_a_git_push(Wrapper)
}

// ---------------------------------------------------------------------------------------
// 5: children of an escalated program are never decided
// ---------------------------------------------------------------------------------------

fn forbidden_rm_through(b: Backend, rules: &[&str], setup: &str, attack: &str) {
    skip_unless_available!(b);
    let s = Scratch::new();
    let c = Canary::new();
    fs::write(c.path("canary"), "keep me").unwrap();
    let canary = c.p("canary");
    let script = format!(
        "{setup}\n{attack}\necho \"status=$?\"",
        setup = setup.replace("CANARY", &canary),
        attack = attack.replace("CANARY", &canary),
    );
    if setup.contains("nested") {
        fs::create_dir(s.path("nested")).unwrap();
        outside("git", &["init", "-q", "-b", "main"], &s.path("nested"));
    }
    let out = run(&s, b, rules, &[], &script);
    assert!(
        c.path("canary").exists(),
        "escaped: the forbidden rm deleted {canary} outside\n{out:#?}"
    );
}

fn find_exec_rm(b: Backend) {
    forbidden_rm_through(
        b,
        &["find.rules", "no-rm.rules"],
        "",
        "find CANARY -exec rm {} \\;",
    )
}

#[test]
fn forbidden_rm_through_find_exec_unotify() {
    find_exec_rm(Unotify)
}
#[test]
fn forbidden_rm_through_find_exec_wrapper() {
    find_exec_rm(Wrapper)
}

/// The agent plants an alias in a nested repository's config, then runs the allowed alias.
fn git_alias_rm(b: Backend) {
    forbidden_rm_through(
        b,
        &["git-alias.rules", "no-rm.rules"],
        "printf '[alias]\\n\\tlg = !rm CANARY\\n' >> nested/.git/config",
        "cd nested && git lg",
    )
}

#[test]
fn forbidden_rm_through_a_git_alias_unotify() {
    git_alias_rm(Unotify)
}
#[test]
fn forbidden_rm_through_a_git_alias_wrapper() {
    git_alias_rm(Wrapper)
}

/// What an escalated copy leaves running after it exited stays decided: its background
/// child's forbidden `rm` fails, and its allowed `echo` (outside, where that tree runs)
/// still works, so the policy is served, not merely closed.
fn leftover_child_rm(b: Backend) {
    skip_unless_available!(b);
    let s = Scratch::new();
    let c = Canary::new();
    fs::write(c.path("canary"), "keep me").unwrap();
    let script = format!(
        "sh -c '(sleep 1; /bin/echo served > {served}; rm {canary}) >/dev/null 2>&1 &'; \
         echo \"sh=$?\"; sleep 4",
        served = c.p("served"),
        canary = c.p("canary"),
    );
    let out = run(&s, b, &["sh.rules", "no-rm.rules"], &[], &script);
    assert!(
        c.path("canary").exists(),
        "escaped: the forbidden rm of the escalated copy's leftover child deleted the canary\n{out:#?}"
    );
    assert_eq!(
        fs::read_to_string(c.path("served")).ok().as_deref(),
        Some("served\n"),
        "the leftover child's allowed exec did not run: its execs are not served\n{out:#?}"
    );
}

#[test]
fn forbidden_rm_through_an_escalated_copys_leftover_child_unotify() {
    leftover_child_rm(Unotify)
}
#[test]
fn forbidden_rm_through_an_escalated_copys_leftover_child_wrapper() {
    leftover_child_rm(Wrapper)
}

fn make_recipe_rm(b: Backend) {
    forbidden_rm_through(
        b,
        &["make.rules", "no-rm.rules"],
        "printf 'all:\\n\\trm CANARY\\n' > Makefile",
        "make",
    )
}

#[test]
fn forbidden_rm_through_a_make_recipe_unotify() {
    make_recipe_rm(Unotify)
}
#[test]
fn forbidden_rm_through_a_make_recipe_wrapper() {
    make_recipe_rm(Wrapper)
}

// ---------------------------------------------------------------------------------------
// 7: the copy stays in the session
// ---------------------------------------------------------------------------------------

/// The cgroup2 mount point (the root cgroup's directory), from /proc/self/mountinfo.
fn cgroup2_root() -> Option<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .ok()?
        .lines()
        .find(|l| l.contains(" - cgroup2 "))
        .and_then(|l| l.split_whitespace().nth(4).map(str::to_string))
}

fn unified_cgroup(pid: u32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("0::").map(str::to_string))
}

fn wait_for_file(path: &Path, limit: Duration) -> Option<String> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(text) = fs::read_to_string(path)
            && text.ends_with('\n')
        {
            return Some(text.trim().to_string());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Runs `sh -c 'FIRST echo $$ > PID; exec sleep 30'` escalated (by `sh.rules`), calls
/// `read` with the pid the escalated sh wrote (the file is written from outside: inside,
/// the write fails) while it still runs, then kills it and ends the session.
fn while_an_escalated_sh_runs<T>(
    b: Backend,
    first: &str,
    read: impl FnOnce(&str) -> Option<T>,
) -> (Option<T>, Output) {
    let s = Scratch::new();
    let c = Canary::new();
    let script = format!(
        "sh -c '{first}echo $$ > {pid}.tmp; mv {pid}.tmp {pid}; exec sleep 30'; echo \"sh=$?\"",
        pid = c.p("pid"),
    );
    let mut cmd = supervise_command(&s, b, &["sh.rules"], &[], &script);
    cmd.stdin(Stdio::null())
        .stdout(fs::File::create(s.io.join("stdout")).unwrap())
        .stderr(fs::File::create(s.io.join("stderr")).unwrap());
    let mut child = cmd.spawn().unwrap();
    let pid = wait_for_file(&c.path("pid"), Duration::from_secs(60));
    let read = pid.as_deref().and_then(read);
    if let Some(p) = pid.as_ref().and_then(|p| p.parse::<i32>().ok()) {
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg(p.to_string())
            .status();
    }
    let status = wait_bounded(&mut child, || s.read_io("stderr"));
    let out = Output {
        status,
        stdout: s.read_io("stdout"),
        stderr: s.read_io("stderr"),
    };
    (read, out)
}

/// Escalated code writes `0` to the root `cgroup.procs`: read from outside, the process
/// must still be in the session's cgroup (`.../execgate/supervisor-.../session-...`).
fn leaving_the_session_cgroup(b: Backend) {
    skip_unless_available!(b);
    let Some(root) = cgroup2_root() else {
        testkit::skip("no cgroup2 mount");
        return;
    };
    let (cgroup, out) =
        while_an_escalated_sh_runs(b, &format!("echo 0 > {root}/cgroup.procs; "), |pid| {
            pid.parse::<u32>().ok().and_then(unified_cgroup)
        });
    let cgroup = cgroup.unwrap_or_else(|| panic!("the escalated sh did not run\n{out:#?}"));
    // `.../execgate/supervisor-PID/session-PID-N`
    assert!(
        cgroup.contains("/execgate/") && cgroup.contains("/session-"),
        "escaped: the escalated process left the session cgroup, now in {cgroup:?}\n{out:#?}"
    );
}

#[test]
#[ignore = "attack #14.7: still fails where the cgroup v2 root is mounted without nsdelegate (this host: hybrid): the copy gets a cgroup namespace, which only bounds migration with nsdelegate; the kernel matrix (nsdelegate) runs it as scenario cgroup_escape"]
fn escalated_code_cannot_leave_the_session_cgroup_unotify() {
    leaving_the_session_cgroup(Unotify)
}
#[test]
#[ignore = "attack #14.7: still fails where the cgroup v2 root is mounted without nsdelegate (this host: hybrid): the copy gets a cgroup namespace, which only bounds migration with nsdelegate; the kernel matrix (nsdelegate) runs it as scenario cgroup_escape"]
fn escalated_code_cannot_leave_the_session_cgroup_wrapper() {
    leaving_the_session_cgroup(Wrapper)
}

/// The copy joins the session's cgroups before it runs, in every hierarchy: the v2 one
/// (joined at the clone where the kernel allows it) and each v1 hierarchy where the
/// session holds a limit (pids, memory on a hybrid host), so those limits and the
/// timeout's kill hold the escalated tree too. Read from outside while it runs.
fn the_copy_runs_in_the_session_cgroups(b: Backend) {
    skip_unless_available!(b);
    if cgroup2_root().is_none() {
        testkit::skip("no cgroup2 mount");
        return;
    }
    // Read while the session (and its cgroup directories) still exist.
    let (read, out) = while_an_escalated_sh_runs(b, "", |pid| {
        let cgroups = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let v1 = session_v1_cgroups(&cgroups);
        Some((cgroups, v1))
    });
    let (cgroups, v1) = read.unwrap_or_else(|| panic!("the escalated sh did not run\n{out:#?}"));
    let v2 = cgroups
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or_default();
    assert!(
        v2.contains("/execgate/") && v2.contains("/session-"),
        "the copy is not in the session's cgroup: {cgroups}\n{out:#?}"
    );
    for (controller, expected) in v1 {
        assert!(
            cgroups.lines().any(|l| {
                let mut f = l.splitn(3, ':');
                let (_, names, path) = (f.next(), f.next(), f.next());
                names.is_some_and(|n| n.split(',').any(|n| n == controller))
                    && path == Some(expected.as_str())
            }),
            "the copy is not in the session's v1 {controller} cgroup {expected}: {cgroups}\n{out:#?}"
        );
    }
}

/// For a process's `/proc/PID/cgroup` text whose v2 cgroup is a session's
/// (`.../supervisor-PID/session-PID-N`): each v1 hierarchy (pids, memory) in which that
/// session has a directory now (it holds a limit there), with the path of that directory
/// as `/proc/PID/cgroup` names it.
fn session_v1_cgroups(cgroups: &str) -> Vec<(&'static str, String)> {
    let v2 = cgroups
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or_default();
    let tail: Vec<&str> = v2.rsplit('/').take(2).collect();
    let [leaf, parent] = tail[..] else {
        return Vec::new();
    };
    let session = format!("{parent}/{leaf}");
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let own = fs::read_to_string("/proc/self/cgroup").unwrap();
    let mut found = Vec::new();
    for controller in ["pids", "memory"] {
        let Some(own_v1) = own.lines().find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, names, path) = (f.next()?, f.next()?, f.next()?);
            names.split(',').any(|n| n == controller).then_some(path)
        }) else {
            continue;
        };
        let Some(mount) = mountinfo.lines().find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mut r = right.split_whitespace();
            let (fs_type, _, opts) = (r.next()?, r.next()?, r.next()?);
            (fs_type == "cgroup" && opts.split(',').any(|o| o == controller))
                .then(|| left.split_whitespace().nth(4).map(str::to_owned))?
        }) else {
            continue;
        };
        let path = format!("{}/{session}", own_v1.trim_end_matches('/'));
        if Path::new(&format!("{mount}{path}")).is_dir() {
            found.push((controller, path));
        }
    }
    found
}

#[test]
fn the_escalated_copy_runs_in_the_session_cgroups_unotify() {
    the_copy_runs_in_the_session_cgroups(Unotify)
}
#[test]
fn the_escalated_copy_runs_in_the_session_cgroups_wrapper() {
    the_copy_runs_in_the_session_cgroups(Wrapper)
}

/// A daemon (setsid, in the background) started by an escalated command must not outlive
/// the session.
fn daemon_outliving_the_session(b: Backend) {
    skip_unless_available!(b);
    let s = Scratch::new();
    let c = Canary::new();
    let script = format!(
        "sh -c 'setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $! > {pid}'; echo \"sh=$?\"",
        pid = c.p("daemon"),
    );
    let out = run(&s, b, &["sh.rules"], &[], &script);
    let pid = fs::read_to_string(c.path("daemon"))
        .unwrap_or_else(|_| panic!("the escalated sh did not run\n{out:#?}"));
    let pid: u32 = pid.trim().parse().unwrap();
    // Teardown may take a moment after the supervisor exits.
    let start = Instant::now();
    let alive = |pid: u32| {
        fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| c.starts_with("sleep\x00300"))
    };
    while alive(pid) && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let survived = alive(pid);
    if survived {
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg(pid.to_string())
            .status();
    }
    assert!(
        !survived,
        "escaped: the daemon {pid} started by an escalated command outlived the session\n{out:#?}"
    );
}

#[test]
fn a_daemon_of_an_escalated_command_does_not_outlive_the_session_unotify() {
    daemon_outliving_the_session(Unotify)
}
#[test]
fn a_daemon_of_an_escalated_command_does_not_outlive_the_session_wrapper() {
    daemon_outliving_the_session(Wrapper)
}

// ---------------------------------------------------------------------------------------
// What users rely on still works
// ---------------------------------------------------------------------------------------

fn allowed_commands_still_escalate(b: Backend) {
    skip_unless_available!(b);
    let s = Scratch::new();
    user_repo(&s.work, "f");
    fs::create_dir(s.path("empty")).unwrap();
    outside("git", &["init", "-q", "-b", "main"], &s.path("empty"));
    fs::write(s.path(".git/info/exclude"), "empty/\n").unwrap();
    let out = run(
        &s,
        b,
        &["git.rules", "cargo.rules"],
        &[],
        "git status --porcelain; echo \"status=$?\"
         git log --format=%s; echo \"log=$?\"
         (cd empty && git log 2>/dev/null); echo \"empty-log=$?\"
         cargo --version >/dev/null; echo \"cargo=$?\"",
    );
    assert_eq!(
        out.stdout, "status=0\none\nlog=0\nempty-log=128\ncargo=0\n",
        "{out:#?}"
    );
    assert_eq!(out.code(), 0, "{out:#?}");
    let escalated: Vec<String> = audit_lines(&s)
        .iter()
        .filter(|l| l["ran_in"] == "escalated")
        .map(|l| {
            let program = l["program"].as_str().unwrap_or_default();
            Path::new(program)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        escalated,
        ["git", "git", "git", "cargo"],
        "each allowed command escalated: {out:#?}"
    );
}

#[test]
fn rule_allowed_git_and_cargo_still_escalate_with_exact_statuses_unotify() {
    allowed_commands_still_escalate(Unotify)
}
#[test]
fn rule_allowed_git_and_cargo_still_escalate_with_exact_statuses_wrapper() {
    allowed_commands_still_escalate(Wrapper)
}

/// A prompt the person approves once runs once, escalated (it writes outside), with its
/// exact status; answered on a real pseudo-terminal.
fn prompt_approved_once_runs_once(b: Backend) {
    skip_unless_available!(b);
    let s = Scratch::new();
    let c = Canary::new();
    let mut line = format!(
        "cd {} && {} supervise --no-default-rules --backend {} --rules {}",
        attack_harness::sh_quote(s.work.to_str().unwrap()),
        attack_harness::sh_quote(common::EXECGATE),
        b.name(),
        attack_harness::sh_quote(attack_fixture("prompt.rules").to_str().unwrap()),
    );
    if b == Wrapper {
        let p = attack_harness::pieces().unwrap();
        line = format!(
            "export EXECGATE_EXECVE_WRAPPER={}; {line} --patched-bash {}",
            attack_harness::sh_quote(p.wrapper.to_str().unwrap()),
            attack_harness::sh_quote(p.bash.to_str().unwrap())
        );
    }
    let script = format!(
        "echo once | tee -a {count} >/dev/null; echo \"tee=$?\"",
        count = c.p("count")
    );
    line += &format!(" -- bash -c {}", attack_harness::sh_quote(&script));
    let run = attack_harness::on_pty(&line, 30, &[("execgate: allow", "y\\n")], &[]);
    assert_eq!(
        fs::read_to_string(c.path("count")).unwrap_or_default(),
        "once\n",
        "{run:#?}"
    );
    assert!(run.transcript.contains("tee=0"), "{run:#?}");
    assert_eq!(run.code, Some(0), "{run:#?}");
}

#[test]
fn a_prompt_approved_once_runs_once_unotify() {
    prompt_approved_once_runs_once(Unotify)
}
#[test]
fn a_prompt_approved_once_runs_once_wrapper() {
    prompt_approved_once_runs_once(Wrapper)
}

/// 50 escalations pending at once: the supervisor does not spend one OS thread on each (a
/// cap queues the rest), and every one of them still runs and reports its status.
fn fifty_pending_escalations(b: Backend) {
    skip_unless_available!(b);
    let s = Scratch::new();
    let mut cmd = supervise_command(
        &s,
        b,
        &["sh.rules"],
        &[],
        "for i in $(seq 50); do sh -c 'sleep 2' & done
         ok=0; for j in $(jobs -p); do wait $j && ok=$((ok + 1)); done; echo \"ok=$ok\"",
    );
    cmd.stdin(Stdio::null())
        .stdout(fs::File::create(s.io.join("stdout")).unwrap())
        .stderr(fs::File::create(s.io.join("stderr")).unwrap());
    let mut child = cmd.spawn().unwrap();
    let pid = child.id();
    let mut peak_threads = 0u64;
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() && start.elapsed() < common::RUN_LIMIT {
        let threads = fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        peak_threads = peak_threads.max(threads);
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = wait_bounded(&mut child, || s.read_io("stderr"));
    let out = Output {
        status,
        stdout: s.read_io("stdout"),
        stderr: s.read_io("stderr"),
    };
    assert_eq!(out.stdout, "ok=50\n", "{out:#?}");
    assert!(
        peak_threads < 50,
        "unbounded: the supervisor ran {peak_threads} threads for 50 pending escalations\n{out:#?}"
    );
}

#[test]
fn fifty_pending_escalations_do_not_cost_a_thread_each_unotify() {
    fifty_pending_escalations(Unotify)
}
#[test]
fn fifty_pending_escalations_do_not_cost_a_thread_each_wrapper() {
    fifty_pending_escalations(Wrapper)
}

/// The fixtures parse (a broken fixture would make every attack above pass vacuously).
#[test]
fn attack_fixtures_load() {
    for entry in fs::read_dir(attack_fixture("")).unwrap() {
        let path = entry.unwrap().path();
        let out = Command::new(common::EXECGATE)
            .args(["check", "--no-default-rules", "--rules"])
            .arg(&path)
            .args(["--", "true"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `--escalate-env NAME`: a named variable reaches the copy, one not named does not, and a
/// hook variable (LD_PRELOAD) never does, even when named.
fn escalate_env(b: Backend) {
    skip_unless_available!(b);
    let s = Scratch::new();
    let c = Canary::new();
    compile("attack_preload", &s.work, true);
    let script = format!(
        "NAMED=passed OTHER=dropped sh -c 'echo \"$NAMED ${{OTHER-unset}}\" > {env}'; echo \"sh=$?\"
         LD_PRELOAD=$PWD/attack_preload.so ATTACK_CANARY={canary} sh -c true; echo \"preload=$?\"",
        env = c.p("env"),
        canary = c.p("canary"),
    );
    let out = run(
        &s,
        b,
        &["sh.rules"],
        &[
            "--escalate-env",
            "NAMED",
            "--escalate-env",
            "LD_PRELOAD",
            "--escalate-env",
            "ATTACK_CANARY",
        ],
        &script,
    );
    assert_no_canary(&c.path("canary"), &out);
    assert_eq!(
        fs::read_to_string(c.path("env")).unwrap_or_default(),
        "passed unset\n",
        "the copy gets NAMED and not OTHER: {out:#?}"
    );
}

#[test]
fn escalate_env_passes_named_variables_and_never_hook_variables_unotify() {
    escalate_env(Unotify)
}
#[test]
fn escalate_env_passes_named_variables_and_never_hook_variables_wrapper() {
    escalate_env(Wrapper)
}

// ---------------------------------------------------------------------------------------
// Not in the list: what a clean environment alone does not stop
// ---------------------------------------------------------------------------------------

/// `python3 -c` puts the working directory first on `sys.path`: under an exact rule for
/// `python3 -c "import json; print(json.dumps(1))"`, the agent's `./json.py` runs outside.
/// No variable is involved, so a clean environment (#14.3) does not stop it, and no exec
/// either, so the exec listener on the copy (#14.5) does not see it.
fn python_imports_the_agents_module_from_cwd(b: Backend) {
    skip_unless_available!(b);
    let s = Scratch::new();
    let c = Canary::new();
    let script = format!(
        "echo \"open('{canary}', 'w').write('escaped')\" > json.py
         /usr/bin/python3 -c 'import json; print(json.dumps(1))' >/dev/null 2>&1; echo \"python=$?\"",
        canary = c.p("canary"),
    );
    let out = run(&s, b, &["python-json.rules"], &[], &script);
    assert_no_canary(&c.path("canary"), &out);
}

#[test]
fn python_c_imports_the_agents_module_from_the_cwd_unotify() {
    python_imports_the_agents_module_from_cwd(Unotify)
}
#[test]
fn python_c_imports_the_agents_module_from_the_cwd_wrapper() {
    python_imports_the_agents_module_from_cwd(Wrapper)
}

/// An allowed `git status` in a nested repository whose config the agent wrote
/// (core.fsmonitor): the config, not the environment, carries the command.
fn git_status_in_a_nested_repository_with_a_planted_fsmonitor(b: Backend) {
    skip_unless_available!(b);
    let s = Scratch::new();
    let c = Canary::new();
    user_repo(&s.work, "f");
    fs::write(s.path(".git/info/exclude"), "nested/\n").unwrap();
    fs::create_dir(s.path("nested")).unwrap();
    user_repo(&s.path("nested"), "g");
    let script = format!(
        "printf '[core]\\n\\tfsmonitor = \"echo escaped > {canary}; false\"\\n' >> nested/.git/config
         cd nested && git status >/dev/null 2>&1; echo \"git=$?\"",
        canary = c.p("canary"),
    );
    let out = run(&s, b, &["git.rules"], &[], &script);
    assert_no_canary(&c.path("canary"), &out);
}

#[test]
fn git_status_in_a_nested_repo_with_a_planted_fsmonitor_unotify() {
    git_status_in_a_nested_repository_with_a_planted_fsmonitor(Unotify)
}
#[test]
fn git_status_in_a_nested_repo_with_a_planted_fsmonitor_wrapper() {
    git_status_in_a_nested_repository_with_a_planted_fsmonitor(Wrapper)
}

/// A repository the session makes (so nothing of it was protected at start), with
/// core.fsmonitor in its config: an allowed `git status` there is not escalated (it runs
/// inside, where the command cannot reach the canary), while the same rule in the user's
/// repository still escalates.
fn git_status_in_a_repository_the_session_made(b: Backend) {
    skip_unless_available!(b);
    let s = Scratch::new();
    let c = Canary::new();
    user_repo(&s.work, "f");
    fs::write(s.path(".git/info/exclude"), "made/\n").unwrap();
    let script = format!(
        "mkdir made && cd made && git init -q && echo g > g
         printf '[core]\\n\\tfsmonitor = \"echo escaped > {canary}; false\"\\n' >> .git/config
         git status >/dev/null 2>&1; echo \"made=$?\"
         cd .. && git status --porcelain >/dev/null; echo \"top=$?\"",
        canary = c.p("canary"),
    );
    let out = run(&s, b, &["git.rules"], &[], &script);
    assert_no_canary(&c.path("canary"), &out);
    assert!(
        fs::read_to_string(s.path("made/.git/config"))
            .unwrap_or_default()
            .contains("fsmonitor"),
        "the session made the repository and planted the command: {out:#?}"
    );
    assert!(out.stdout.contains("top=0"), "{out:#?}");
    let gits: Vec<(String, String)> = audit_lines(&s)
        .iter()
        .filter(|l| l["argv"][0] == "git" && l["argv"][1] == "status")
        .map(|l| {
            (
                l["cwd"].as_str().unwrap_or_default().to_owned(),
                l["ran_in"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(gits.len(), 2, "{gits:?}\n{out:#?}");
    assert!(gits[0].0.ends_with("/made"), "{gits:?}");
    assert_ne!(gits[0].1, "escalated", "{gits:?}\n{out:#?}");
    assert_eq!(gits[1].1, "escalated", "{gits:?}\n{out:#?}");
}

#[test]
fn git_status_in_a_repository_the_session_made_is_not_escalated_unotify() {
    git_status_in_a_repository_the_session_made(Unotify)
}
#[test]
fn git_status_in_a_repository_the_session_made_is_not_escalated_wrapper() {
    git_status_in_a_repository_the_session_made(Wrapper)
}

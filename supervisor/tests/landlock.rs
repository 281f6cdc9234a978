//! The Landlock layer on this kernel, with real processes: a child applies the prepared
//! ruleset between fork and exec (as the supervisor's spawn will) and tries things.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use supervisor::sandbox::landlock::{self, EnforcementLevel};
use supervisor::{SandboxMode, SandboxPolicy};

/// Skip (through testkit) when the kernel's Landlock is older than `abi` (the kernel matrix
/// covers old kernels).
macro_rules! require_landlock {
    ($abi:expr) => {
        let have = landlock::probe_kernel_abi();
        testkit::skip_unless!(
            (have < $abi).then(|| format!("needs Landlock ABI {} but the kernel has {have}", $abi))
        );
    };
}

/// Run `script` under bash in a child that enforces the policy's ruleset; returns stdout.
fn run_sandboxed(policy: &SandboxPolicy, workdir: &Path, script: &str) -> String {
    let mut prepared = landlock::prepare(
        policy,
        workdir,
        None,
        landlock::Protection::LandlockSiblings,
        landlock::probe_kernel_abi(),
    )
    .expect("prepare");
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(script).current_dir(workdir);
    cmd.stderr(Stdio::inherit());
    // SAFETY: the closure only calls restrict_self_in_child, which makes no heap
    // allocation and only async-signal-safe syscalls (prctl, landlock_restrict_self, close).
    unsafe {
        cmd.pre_exec(move || {
            prepared
                .restrict_self_in_child()
                .map_err(|e| std::io::Error::from_raw_os_error(e as i32))
        });
    }
    let out = cmd.output().expect("spawn bash");
    String::from_utf8(out.stdout).unwrap()
}

/// `try NAME CMD...` prints `NAME=ok` or `NAME=EACCES`-ish (`NAME=fail`) per line.
const TRY: &str = r#"t() { n=$1; shift; if ( "$@" ) 2>/dev/null; then echo "$n=ok"; else echo "$n=fail"; fi; }
"#;

fn results(out: &str) -> std::collections::BTreeMap<String, String> {
    out.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn workspace_policy() -> SandboxPolicy {
    let mut p = SandboxPolicy::new(SandboxMode::WorkspaceWrite);
    p.exclude_slash_tmp = true;
    p.exclude_tmpdir_env_var = true;
    p
}

fn repo_fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path();
    std::fs::create_dir_all(w.join(".git/hooks")).unwrap();
    std::fs::write(w.join(".git/config"), "[core]\n").unwrap();
    std::fs::write(w.join("README"), "hi\n").unwrap();
    std::fs::create_dir_all(w.join("src/deep")).unwrap();
    dir
}

#[test]
fn workspace_write_allows_workdir_and_keeps_git_and_outside_read_only() {
    require_landlock!(1);
    let repo = repo_fixture();
    let outside = tempfile::tempdir().unwrap();
    let w = repo.path().display();
    let o = outside.path().display();
    let script = format!(
        "{TRY}
t readme sh -c 'echo x >> {w}/README'
t src_new sh -c 'echo x > {w}/src/new.txt'
t src_deep sh -c 'mkdir {w}/src/deep/d && echo x > {w}/src/deep/d/f && rm -r {w}/src/deep/d'
t hook sh -c 'echo x > {w}/.git/hooks/x'
t git_config sh -c 'echo x >> {w}/.git/config'
t git_rename mv {w}/.git {w}/g
t git_rm rm -rf {w}/.git
t root_new sh -c 'echo x > {w}/new-in-root'
t outside sh -c 'echo x > {o}/x'
t read sh -c 'cat /etc/passwd > /dev/null'
t devnull sh -c 'echo x > /dev/null'
"
    );
    let out = run_sandboxed(&workspace_policy(), repo.path(), &script);
    let r = results(&out);
    let expect = [
        ("readme", "ok"),
        ("src_new", "ok"),
        ("src_deep", "ok"),
        ("hook", "fail"),
        ("git_config", "fail"),
        ("git_rename", "fail"),
        ("git_rm", "fail"),
        // The documented cost of keeping .git read-only: no new entries next to it.
        ("root_new", "fail"),
        ("outside", "fail"),
        ("read", "ok"),
        ("devnull", "ok"),
    ];
    for (k, v) in expect {
        assert_eq!(r.get(k).map(String::as_str), Some(v), "{k} in:\n{out}");
    }
    assert!(repo.path().join(".git/config").exists());
    assert!(!repo.path().join(".git/hooks/x").exists());
    assert!(!outside.path().join("x").exists());
}

#[test]
fn write_outside_fails_with_eacces() {
    require_landlock!(1);
    let work = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    // python-free errno check: bash's own redirection error names the errno text.
    let script = format!("echo x > {}/x", outside.path().display());
    let mut prepared = landlock::prepare(
        &workspace_policy(),
        work.path(),
        None,
        landlock::Protection::LandlockSiblings,
        landlock::probe_kernel_abi(),
    )
    .unwrap();
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(&script);
    // SAFETY: restrict_self_in_child makes no heap allocation, only async-signal-safe calls.
    unsafe {
        cmd.pre_exec(move || {
            prepared
                .restrict_self_in_child()
                .map_err(|e| std::io::Error::from_raw_os_error(e as i32))
        });
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("Permission denied"), "{stderr}");
}

#[test]
fn git_without_git_dir_the_root_is_fully_writable() {
    require_landlock!(1);
    let work = tempfile::tempdir().unwrap();
    let w = work.path().display();
    let script =
        format!("{TRY}t new sh -c 'echo x > {w}/new && mv {w}/new {w}/new2 && rm {w}/new2'\n");
    let r = results(&run_sandboxed(&workspace_policy(), work.path(), &script));
    assert_eq!(r["new"], "ok");
}

#[test]
fn gitdir_file_target_stays_read_only() {
    require_landlock!(1);
    // parent/main/.git/worktrees/wt is the gitdir of the linked worktree parent/wt.
    let parent = tempfile::tempdir().unwrap();
    let p = parent.path().canonicalize().unwrap();
    let gitdir = p.join("main/.git/worktrees/wt");
    std::fs::create_dir_all(&gitdir).unwrap();
    std::fs::create_dir_all(p.join("wt/src")).unwrap();
    std::fs::write(p.join("wt/.git"), "gitdir: ../main/.git/worktrees/wt\n").unwrap();
    let mut policy = workspace_policy();
    policy.writable_roots.push(p.join("main"));
    let prepared = landlock::prepare(
        &policy,
        &p.join("wt"),
        None,
        landlock::Protection::LandlockSiblings,
        landlock::probe_kernel_abi(),
    )
    .unwrap();
    let ro = &prepared.enforcement().read_only_inside_roots;
    // The worktree's git directory keeps `commondir` (where config and hooks are read)
    // from being written or created; the main repository its config and hooks.
    assert!(ro.contains(&gitdir.join("commondir")), "{ro:?}");
    assert!(ro.contains(&p.join("wt/.git")), "{ro:?}");
    assert!(ro.contains(&p.join("main/.git/config")), "{ro:?}");
    assert!(ro.contains(&p.join("main/.git/hooks")), "{ro:?}");
    let script = format!(
        "{TRY}
t gitdir_write sh -c 'echo x > {g}/HEAD'
t dotgit_file sh -c 'echo gitdir: /evil > {p}/wt/.git'
t wt_src sh -c 'echo x > {p}/wt/src/f'
t main_root sh -c 'echo x > {p}/main/f'
",
        g = gitdir.display(),
        p = p.display()
    );
    let r = results(&run_sandboxed(&policy, &p.join("wt"), &script));
    assert_eq!(r["gitdir_write"], "fail");
    assert_eq!(r["dotgit_file"], "fail");
    assert_eq!(r["wt_src"], "ok");
    // main contains a protected .git: its root loses create rights, like any repo root.
    assert_eq!(r["main_root"], "fail");
}

#[test]
fn symlink_next_to_git_is_not_granted() {
    require_landlock!(1);
    let repo = repo_fixture();
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), repo.path().join("link")).unwrap();
    let script = format!(
        "{TRY}t via_link sh -c 'echo x > {}/link/f'\n",
        repo.path().display()
    );
    let r = results(&run_sandboxed(&workspace_policy(), repo.path(), &script));
    assert_eq!(r["via_link"], "fail");
    assert!(!outside.path().join("f").exists());
}

#[test]
fn slash_tmp_is_writable_unless_excluded() {
    require_landlock!(1);
    // The workdir is in /tmp too: the marker is its sibling, so still outside when excluded.
    let work = tempfile::tempdir().unwrap();
    let marker = format!("/tmp/execgate-landlock-test-{}", std::process::id());
    let script = format!("{TRY}t tmp sh -c 'echo x > {marker} && rm {marker}'\n");

    let mut policy = SandboxPolicy::new(SandboxMode::WorkspaceWrite);
    policy.exclude_tmpdir_env_var = true;
    let r = results(&run_sandboxed(&policy, work.path(), &script));
    assert_eq!(r["tmp"], "ok");

    policy.exclude_slash_tmp = true;
    let r = results(&run_sandboxed(&policy, work.path(), &script));
    assert_eq!(r["tmp"], "fail");
}

#[test]
fn read_only_writes_only_device_files() {
    require_landlock!(1);
    let work = tempfile::tempdir().unwrap();
    let w = work.path().display();
    let script = format!(
        "{TRY}
t workdir sh -c 'echo x > {w}/f'
t tmp sh -c 'echo x > /tmp/execgate-ro-{pid}'
t devnull sh -c 'echo x > /dev/null'
t devzero sh -c 'head -c 1 /dev/zero > /dev/null'
t read sh -c 'cat /etc/passwd > /dev/null'
",
        pid = std::process::id()
    );
    let policy = SandboxPolicy::new(SandboxMode::ReadOnly);
    let r = results(&run_sandboxed(&policy, work.path(), &script));
    assert_eq!(r["workdir"], "fail");
    assert_eq!(r["tmp"], "fail");
    assert_eq!(r["devnull"], "ok");
    assert_eq!(r["devzero"], "ok");
    assert_eq!(r["read"], "ok");
}

#[test]
fn danger_full_access_restricts_nothing() {
    let work = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let mut policy = SandboxPolicy::new(SandboxMode::DangerFullAccess);
    policy.require_full = true;
    let prepared = landlock::prepare(
        &policy,
        work.path(),
        None,
        landlock::Protection::LandlockSiblings,
        landlock::probe_kernel_abi(),
    )
    .unwrap();
    assert_eq!(prepared.enforcement().level, EnforcementLevel::NotRequested);
    let script = format!(
        "{TRY}t outside sh -c 'echo x > {}/x'\n",
        outside.path().display()
    );
    let r = results(&run_sandboxed(&policy, work.path(), &script));
    assert_eq!(r["outside"], "ok");
}

#[test]
fn tcp_connect_denied_with_network_off_and_allowed_with_network_on() {
    require_landlock!(4);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let work = tempfile::tempdir().unwrap();
    let script = format!("{TRY}t connect bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port}'\n");

    let off = workspace_policy();
    let r = results(&run_sandboxed(&off, work.path(), &script));
    assert_eq!(
        r["connect"], "fail",
        "TCP connect must fail with network off"
    );

    let mut on = workspace_policy();
    on.network = true;
    let r = results(&run_sandboxed(&on, work.path(), &script));
    assert_eq!(r["connect"], "ok", "TCP connect must work with network on");
    drop(listener);
}

#[test]
fn scoping_stops_signals_to_processes_outside() {
    require_landlock!(6);
    let work = tempfile::tempdir().unwrap();
    // A victim outside the sandbox; also the test process itself (signal 0 only, so a
    // broken sandbox cannot kill the test runner).
    let mut victim = Command::new("sleep").arg("30").spawn().unwrap();
    let script = format!(
        "{TRY}
t term_outside kill -TERM {victim}
t probe_supervisor kill -0 {me}
t inside sh -c 'sleep 30 & kill -TERM $!'
t err sh -c 'kill -TERM {victim} 2>&1 | grep -q \"Operation not permitted\"'
",
        victim = victim.id(),
        me = std::process::id()
    );
    let r = results(&run_sandboxed(&workspace_policy(), work.path(), &script));
    assert_eq!(r["term_outside"], "fail");
    assert_eq!(r["probe_supervisor"], "fail");
    assert_eq!(r["err"], "ok", "EPERM expected");
    assert_eq!(r["inside"], "ok", "signals inside the sandbox still work");
    assert!(victim.try_wait().unwrap().is_none(), "victim was killed");
    victim.kill().unwrap();
    victim.wait().unwrap();
}

#[test]
fn enforcement_on_this_kernel_is_reported_full() {
    require_landlock!(6);
    let work = tempfile::tempdir().unwrap();
    let mut policy = workspace_policy();
    policy.require_full = true;
    let prepared = landlock::prepare(
        &policy,
        work.path(),
        None,
        landlock::Protection::LandlockSiblings,
        landlock::probe_kernel_abi(),
    )
    .unwrap();
    let e = prepared.enforcement();
    assert_eq!(e.level, EnforcementLevel::Full, "{}", e.summary());
    assert_eq!(e.landlock_abi, 6);
    let json = serde_json::to_value(e).unwrap();
    assert_eq!(json["level"], "full");
    assert_eq!(
        json["writable_roots"][0],
        work.path().canonicalize().unwrap().display().to_string()
    );
}

#[test]
fn repo_under_writable_slash_tmp_keeps_its_git_read_only() {
    require_landlock!(1);
    let repo = repo_fixture();
    assert!(
        repo.path().starts_with("/tmp"),
        "tempdir is expected in /tmp"
    );
    let mut policy = SandboxPolicy::new(SandboxMode::WorkspaceWrite);
    policy.exclude_tmpdir_env_var = true;
    let w = repo.path().display();
    let script = format!(
        "{TRY}
t hook sh -c 'echo x > {w}/.git/hooks/x'
t src sh -c 'echo x > {w}/src/f'
"
    );
    let r = results(&run_sandboxed(&policy, repo.path(), &script));
    assert_eq!(
        r["hook"], "fail",
        "/tmp's grant must not cover the repo's .git"
    );
    assert_eq!(r["src"], "ok");
}

#[test]
fn a_symlinked_git_keeps_its_target_read_only() {
    require_landlock!(1);
    let repo = tempfile::tempdir().unwrap();
    let w = repo.path();
    std::fs::create_dir_all(w.join("real-git/hooks")).unwrap();
    std::os::unix::fs::symlink("real-git", w.join(".git")).unwrap();
    std::fs::create_dir(w.join("src")).unwrap();
    let script = format!(
        "{TRY}t hook sh -c 'echo x > {w}/real-git/hooks/x'\nt src sh -c 'echo x > {w}/src/f'\n",
        w = w.display()
    );
    let r = results(&run_sandboxed(&workspace_policy(), w, &script));
    assert_eq!(r["hook"], "fail");
    assert_eq!(r["src"], "ok");
}

#[test]
fn doctor_probe_reports_this_kernel() {
    let e = supervisor::Enforcement::probe(SandboxMode::ReadOnly, false);
    let abi = landlock::probe_kernel_abi();
    assert_eq!(e.landlock_abi, abi);
    if abi >= 6 {
        assert_eq!(e.level, EnforcementLevel::Full, "{}", e.summary());
    } else {
        eprintln!("note: partial on this kernel: {}", e.summary());
    }
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {out:?}");
}

#[test]
fn nested_repositories_keep_config_and_hooks_read_only_under_landlock_siblings() {
    require_landlock!(1);
    let work = tempfile::tempdir().unwrap();
    let w = work.path().canonicalize().unwrap();
    git(&w, &["init", "-q"]);
    std::fs::create_dir_all(w.join("a/b")).unwrap();
    git(&w.join("a/b"), &["init", "-q"]);
    std::fs::create_dir_all(w.join("src")).unwrap();
    let script = format!(
        "{TRY}
t hook sh -c 'echo x > {w}/a/b/.git/hooks/pre-commit'
t config sh -c 'echo x >> {w}/a/b/.git/config'
t info sh -c 'echo x > {w}/a/b/.git/info/attributes'
t objects sh -c 'echo x > {w}/a/b/.git/objects/x'
t src sh -c 'echo x > {w}/src/f'
",
        w = w.display()
    );
    let r = results(&run_sandboxed(&workspace_policy(), &w, &script));
    assert_eq!(r["hook"], "fail");
    assert_eq!(r["config"], "fail");
    assert_eq!(r["info"], "fail");
    assert_eq!(r["objects"], "ok");
    assert_eq!(r["src"], "ok");
    assert!(!w.join("a/b/.git/hooks/pre-commit").exists());
}

#[test]
fn git_trust_covers_only_repositories_protected_at_start() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path().canonicalize().unwrap();
    git(&w, &["init", "-q"]);
    std::fs::create_dir_all(w.join("nested/src")).unwrap();
    git(&w.join("nested"), &["init", "-q"]);
    std::fs::create_dir_all(w.join("plain")).unwrap();
    // What git reads must be older than the first session (less a clock tick).
    std::thread::sleep(std::time::Duration::from_millis(30));
    let prepared = landlock::prepare(
        &workspace_policy(),
        &w,
        None,
        landlock::Protection::MountNamespace,
        landlock::probe_kernel_abi().max(1),
    )
    .unwrap();
    let trust = prepared.git_trust();
    assert!(trust.git_dir_is_protected(&w));
    assert!(trust.git_dir_is_protected(&w.join("nested/src")));
    let binds = prepared.read_only_binds();
    assert!(binds.contains(&w.join("nested/.git/config")), "{binds:?}");
    assert!(binds.contains(&w.join("nested/.git/hooks")), "{binds:?}");
    assert!(
        !binds.contains(&w.join(".git")),
        "index, objects, refs stay writable"
    );
    // Made during the session: a new repository, and one re-created under the same name.
    std::fs::create_dir_all(w.join("later")).unwrap();
    git(&w.join("later"), &["init", "-q"]);
    assert!(!trust.git_dir_is_protected(&w.join("later")));
    std::fs::rename(w.join("nested/.git"), w.join("nested/old-git")).unwrap();
    git(&w.join("nested"), &["init", "-q"]);
    assert!(!trust.git_dir_is_protected(&w.join("nested/src")));
    // A `.git` file repointed at a directory the session made.
    std::fs::write(
        w.join("plain/.git"),
        format!("gitdir: {}\n", w.join("later/.git").display()),
    )
    .unwrap();
    assert!(!trust.git_dir_is_protected(&w.join("plain")));
    // A bare repository is a git directory of its own, found before the one above it.
    git(&w, &["init", "-q", "--bare", "bare.git"]);
    assert!(!trust.git_dir_is_protected(&w.join("bare.git")));
    // Not a repository: nothing of one to read.
    let outside_repo = tempfile::tempdir().unwrap();
    assert!(trust.git_dir_is_protected(outside_repo.path()));
    // Outside every writable root, git reads only the user's own files.
    assert!(trust.git_dir_is_protected(Path::new("/")));
    // Config changed since the first session began (by an earlier session, or anyone):
    // not trusted, though protected at start.
    git(&w, &["config", "core.fsmonitor", "true"]);
    assert!(!trust.git_dir_is_protected(&w));
    // `git -C DIR` is followed; `--git-dir` is refused.
    let git_bin = Path::new("/usr/bin/git");
    let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(
        trust
            .why_untrusted_git(git_bin, &argv(&["git", "status"]), Path::new("/"))
            .is_none()
    );
    assert!(
        trust
            .why_untrusted_git(
                git_bin,
                &argv(&[
                    "git",
                    "-C",
                    &w.join("later").display().to_string(),
                    "status"
                ]),
                Path::new("/")
            )
            .is_some()
    );
    assert!(
        trust
            .why_untrusted_git(
                git_bin,
                &argv(&["git", "--git-dir=/x", "status"]),
                Path::new("/")
            )
            .is_some()
    );
    assert!(
        trust
            .why_untrusted_git(Path::new("/usr/bin/ls"), &argv(&["ls"]), &w.join("later"))
            .is_none()
    );
}

/// The cost of the repository search at session start, on a typical repository (300
/// directories, one nested repository) and on a huge tree (20 000 directories, cut at
/// the bound). A measurement, not a check: `cargo nextest run -p execgate-supervisor
/// --test landlock --run-ignored only -E 'test(measure_)' --no-capture`.
#[test]
#[ignore = "measurement"]
fn measure_prepare_cost_on_many_directories() {
    let measure = |w: &Path, protection| {
        let mut times: Vec<f64> = (0..50)
            .map(|_| {
                let t = std::time::Instant::now();
                let p = landlock::prepare(&workspace_policy(), w, None, protection, 6).unwrap();
                std::hint::black_box(p);
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        times.sort_by(f64::total_cmp);
        times[times.len() / 2]
    };
    for (name, n) in [("typical", 300usize), ("huge", 20_000)] {
        let work = tempfile::tempdir().unwrap();
        let w = work.path().canonicalize().unwrap();
        git(&w, &["init", "-q"]);
        for i in 0..n {
            std::fs::create_dir_all(w.join(format!("d{}/e{}", i % 20, i))).unwrap();
        }
        git(&w.join("d1"), &["init", "-q"]);
        let flat = tempfile::tempdir().unwrap();
        println!(
            "{name} ({n} dirs): prepare median {:.3} ms (mount namespace), {:.3} ms (landlock siblings); empty workdir {:.3} ms",
            measure(&w, landlock::Protection::MountNamespace),
            measure(&w, landlock::Protection::LandlockSiblings),
            measure(flat.path(), landlock::Protection::MountNamespace),
        );
    }
}

//! `execgate doctor`: what this kernel and environment offer, which backend execgate
//! would use, and why not the others.
//!
//! Owns: rendering what `kernel::detect` found (a table, or JSON with the backend choice
//! added). Must never probe by itself (detection is `kernel::detect`, run once here) nor
//! choose a backend (that is `supervisor::backend`).

use std::fmt::Write;
use std::process::ExitCode;

use kernel::detect::{Feature, Features, How, Kernel};
use supervisor::backend::{self, BackendChoice};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let features = kernel::detect();
    let choice = backend::choose(&features);
    // Session pids/memory limits: which cgroup hierarchy holds them (creates and removes
    // a probe cgroup).
    let limits = supervisor::cgroup::probe().map(|support| support.limits);
    // supervise and init on a terminal: the session's own pseudo-terminal (--pty auto).
    let terminal = match supervisor::terminal::probe() {
        Ok(()) => "own: on a terminal, supervise and init give the session a pseudo-terminal \
                   of its own, relayed (--pty auto)"
            .to_owned(),
        Err(e) => format!(
            "SHARED: no pseudo-terminal to be had ({e}): on a terminal the session shares the \
             person's"
        ),
    };
    if args.json {
        let mut value = json(&features, &choice);
        if let Some(map) = value.as_object_mut() {
            let limits = match &limits {
                Ok(held) => serde_json::to_value(held)?,
                Err(e) => serde_json::Value::String(e.to_string()),
            };
            map.insert("session_limits".into(), limits);
            map.insert("session_terminal".into(), terminal.clone().into());
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", table(&features, &choice));
        match &limits {
            Ok(held) => println!(
                "session pids limit: {}\nsession memory limit: {}",
                held.pids.describe(),
                held.memory.describe()
            ),
            Err(e) => println!("session pids/memory limits: NOT HELD (no session cgroup: {e})"),
        }
        println!("session terminal: {terminal}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The JSON `execgate doctor --json` prints: the features, plus `"backend"`.
pub fn json(features: &Features, choice: &BackendChoice) -> serde_json::Value {
    let mut value = serde_json::to_value(features).unwrap_or(serde_json::Value::Null);
    if let (Some(map), Ok(backend)) = (value.as_object_mut(), serde_json::to_value(choice)) {
        map.insert("backend".into(), backend);
    }
    value
}

fn how(h: How) -> &'static str {
    match h {
        How::Probe => "probe",
        How::KernelVersion => "version",
    }
}

struct Table<'a>(Vec<[String; 4]>, &'a Kernel);

impl Table<'_> {
    fn feature(&mut self, name: &str, f: &Feature) {
        let value = match f.missing_on(self.1) {
            None => "yes".to_owned(),
            Some(needs) => format!("no ({needs})"),
        };
        self.row(name, value, how(f.how), &f.detail);
    }

    fn row(&mut self, name: &str, value: impl Into<String>, how: &str, detail: &str) {
        self.0.push([
            name.to_owned(),
            value.into(),
            how.to_owned(),
            detail.to_owned(),
        ]);
    }

    fn render(&self, out: &mut String) {
        let mut widths = [0usize; 3];
        for row in &self.0 {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for row in &self.0 {
            let line = format!(
                "{:w0$}  {:w1$}  {:w2$}  {}",
                row[0],
                row[1],
                row[2],
                row[3],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2]
            );
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// What a sandboxed session's tree holds here, from the probes: its capabilities and its
/// namespaces.
fn held(f: &Features) -> String {
    let caps = if !f.capability_drop.available {
        "capabilities NOT dropped (see capability drop)"
    } else if !f.capability_drop.detail.contains("no CAP_SETPCAP") {
        "no capability (every set empty, bounding too)"
    } else if f.pid_namespace.available {
        "no capability (every set empty; the bounding set inside its own user namespace)"
    } else {
        "no capability (effective, permitted, inheritable, ambient empty; bounding set kept, no-new-privs)"
    };
    let namespaces = if f.pid_namespace.available {
        "namespaces pid, mount, ipc, uts, cgroup".to_owned()
    } else {
        format!(
            "NO pid/ipc/uts/cgroup namespaces ({})",
            f.pid_namespace.detail
        )
    };
    let egress = if f.network_namespace.available {
        "egress by name: yes (--allow-domain: a network namespace with only loopback, out through the proxy)".to_owned()
    } else {
        format!(
            "egress by name: NO, the network stays off and --allow-domain is refused ({})",
            f.network_namespace.detail
        )
    };
    format!("{caps}; {namespaces}; {egress}")
}

/// A human-readable table, one feature per line, and the backend choice.
pub fn table(f: &Features, choice: &BackendChoice) -> String {
    let mut t = Table(Vec::new(), &f.kernel);
    t.row("FEATURE", "VALUE", "HOW", "DETAIL");
    let version = opt(f.kernel.version);
    t.row(
        "kernel",
        f.kernel.release.clone(),
        "uname",
        &format!("version {version}, {}", f.kernel.machine),
    );
    t.feature("seccomp user notification", &f.seccomp.user_notif);
    t.feature("  FLAG_CONTINUE", &f.seccomp.continue_flag);
    t.feature("  NOTIF_ADDFD", &f.seccomp.addfd);
    t.feature("  WAIT_KILLABLE_RECV", &f.seccomp.wait_killable_recv);
    t.feature("  FD_SYNC_WAKE_UP", &f.seccomp.sync_wake_up);
    t.feature("pidfd_open", &f.pidfd.open);
    t.feature("pidfd_getfd", &f.pidfd.getfd);
    t.feature("pidfd_send_signal", &f.pidfd.send_signal);
    t.feature("process_vm_readv", &f.process_vm_readv);
    let landlock = match f.landlock.abi {
        Some(abi) => {
            let next = kernel::detect::landlock::ABI_SINCE.get(abi as usize);
            let shown = match next {
                Some(v) => format!(
                    "ABI {abi} (ABI {} needs Linux {}.{})",
                    abi + 1,
                    v.major,
                    v.minor
                ),
                None => format!("ABI {abi}"),
            };
            // Sessions report the ABI execgate applies, which is capped: say both.
            let used = supervisor::sandbox::landlock::capped_abi(&f.landlock);
            if u32::from(used) < abi {
                format!("{shown}; execgate uses ABI {used}")
            } else {
                shown
            }
        }
        None => format!("none ({:?})", f.landlock.status).to_lowercase(),
    };
    t.row(
        "landlock",
        landlock,
        how(f.landlock.how),
        &f.landlock.detail,
    );
    let ptrace = if f.ptrace.permitted { "yes" } else { "no" };
    let ptrace_detail = format!(
        "{}; yama ptrace_scope {}, CAP_SYS_PTRACE {}",
        f.ptrace.detail,
        opt(f.ptrace.yama_ptrace_scope),
        if f.ptrace.cap_sys_ptrace { "yes" } else { "no" }
    );
    t.row("ptrace children", ptrace, how(f.ptrace.how), &ptrace_detail);
    let userns = &f.user_namespaces;
    let userns_detail = format!(
        "{}; unprivileged_userns_clone {}, max_user_namespaces {}",
        userns.detail,
        opt(userns.unprivileged_userns_clone),
        opt(userns.max_user_namespaces)
    );
    t.row(
        "user namespaces",
        if userns.available { "yes" } else { "no" },
        how(userns.how),
        &userns_detail,
    );
    t.feature("pid, ipc, uts, cgroup ns + /proc", &f.pid_namespace);
    t.feature("net ns (--allow-domain)", &f.network_namespace);
    t.feature("capability drop", &f.capability_drop);
    let cg = &f.cgroup;
    let mount = cg.v2_mount.as_ref().map(|p| p.display().to_string());
    let own = cg.own.as_ref().map(|p| p.display().to_string());
    t.row(
        "cgroup v2",
        if mount.is_some() { "yes" } else { "no" },
        "probe",
        &format!(
            "mounted at {}, own cgroup {}, writable {}",
            opt(mount),
            opt(own),
            cg.writable
        ),
    );
    t.feature("  cgroup.kill", &cg.kill);
    t.row(
        "  nsdelegate",
        if cg.nsdelegate { "yes" } else { "no" },
        "probe",
        if cg.nsdelegate {
            "escalated copies cannot move themselves out of the session's cgroup"
        } else {
            "the cgroup2 mount lacks nsdelegate: an escalated root copy can move itself out of \
             the session's cgroup (mount it with -o nsdelegate from the initial namespaces)"
        },
    );
    let p = &f.process;
    t.row("container", opt(p.container.clone()), "probe", "");
    t.row(
        "seccomp on us",
        match p.seccomp_mode {
            Some(0) => "none".to_owned(),
            Some(1) => "strict".to_owned(),
            Some(2) => format!("filter ({} filters)", opt(p.seccomp_filters)),
            other => opt(other),
        },
        "probe",
        "/proc/self/status Seccomp:",
    );
    t.row(
        "no_new_privs",
        opt(p.no_new_privs),
        "probe",
        "/proc/self/status NoNewPrivs:",
    );
    for (name, found) in [
        ("patched bash", &f.patched_shell.bash),
        ("patched zsh", &f.patched_shell.zsh),
        ("exec wrapper", &f.patched_shell.wrapper),
    ] {
        let value = found
            .path
            .as_ref()
            .map_or_else(|| "no".to_owned(), |p| p.display().to_string());
        t.row(name, value, "search", &found.searched.join("; "));
    }

    let mut out = String::new();
    t.render(&mut out);
    let _ = writeln!(
        out,
        "\nsandboxed sessions (read-only, workspace-write): {}",
        held(f)
    );
    let unotify = choice
        .candidates
        .iter()
        .find(|c| c.backend == supervisor::Backend::Unotify);
    let guard = supervisor::UnixSocketGuard::choose(
        unotify.is_some_and(|c| c.usable),
        unotify
            .map(|c| c.rejected_because.as_slice())
            .unwrap_or(&[]),
        f,
    );
    let _ = writeln!(
        out,
        "unix sockets with the network off: {}",
        match &guard {
            supervisor::UnixSocketGuard::SeccompNotify => {
                "decided (seccomp notification on connect; only the session's own and \
                 --allow-unix-socket ones)"
                    .to_owned()
            }
            supervisor::UnixSocketGuard::Unguarded(why) => format!("NOT HELD: {why}"),
        }
    );
    let _ = writeln!(out, "\nbackend: {}", choice.chosen);
    for c in &choice.candidates {
        for reason in &c.rejected_because {
            let _ = writeln!(out, "  not {}: {reason}", c.backend);
        }
    }
    for note in &choice.notes {
        let _ = writeln!(out, "  note: {note}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `execgate doctor --json` as captured in the kernel-matrix guests (see
    /// kernel/tests/guest_fixtures.rs, which checks the schema and the backend choice).
    fn load(label: &str) -> Features {
        let path = format!(
            "{}/kernel/tests/fixtures/doctor-{label}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn the_table_renders_every_guest_report_and_names_the_backend() {
        for label in ["5.10", "6.1", "6.12", "7.x"] {
            let f = load(label);
            let table = table(&f, &backend::choose(&f));
            assert!(table.contains("backend: unotify"), "{label}: {table}");
        }
    }

    #[test]
    fn the_table_names_the_kernel_to_upgrade_to() {
        let f = load("5.10");
        let table = table(&f, &backend::choose(&f));
        assert!(table.contains("no (needs Linux 5.19)"), "{table}");
        assert!(table.contains("no (needs Linux 5.14)"), "{table}");
    }

    #[test]
    fn the_json_is_the_features_plus_the_backend() {
        let f = load("6.12");
        let value = json(&f, &backend::choose(&f));
        assert_eq!(value["backend"]["chosen"], "unotify");
        assert_eq!(value["backend"]["stdio_handoff"], "pidfd_getfd");
        assert_eq!(value["kernel"], serde_json::to_value(&f.kernel).unwrap());
    }
}

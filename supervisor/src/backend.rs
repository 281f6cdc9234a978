//! Which supervisor backend the detected features allow, and why not the others.
//!
//! Owns: the choice, from a [`Features`] detected once at start. Pure logic: must never
//! make a syscall or probe anything (detection is `kernel::detect`).
//!
//! - `unotify` (preferred): a stock bash under a seccomp user-notification listener.
//!   Needs user notification (stop each exec), `FLAG_CONTINUE` (let an allowed exec
//!   proceed), `pidfd_open` (a race-free handle on the paused child) and ptrace of our
//!   descendants (end the paused child with the escalated status). How the child's
//!   stdin/stdout/stderr reach an escalated command ([`FdHandoff`]) and how its exec
//!   arguments are read ([`MemoryAccess`]) have a fallback each for a container profile that
//!   blocks `pidfd_getfd` or `process_vm_readv`; the choice and its cost are reported.
//! - `wrapper`: a patched bash/zsh calls an exec wrapper for every exec. Needs no kernel
//!   feature, but a patched bash and the `execgate-execve-wrapper` binary, and only sees
//!   the patched shell's own execs, so it is the fallback.

use std::fmt;

use serde::{Deserialize, Serialize};

use kernel::detect::{Feature, Features};
use kernel::memory::MemoryAccess;
use kernel::remote_fd::FdHandoff;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    Unotify,
    Wrapper,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Unotify => "unotify",
            Backend::Wrapper => "wrapper",
        })
    }
}

/// One backend that was considered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    pub backend: Backend,
    /// Whether this backend can run here.
    pub usable: bool,
    /// Why it was not chosen (empty for the chosen one).
    pub rejected_because: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendChoice {
    pub chosen: Backend,
    /// Every backend, in order of preference.
    pub candidates: Vec<Candidate>,
    /// With `unotify`: how the caller's stdio reach an escalated command.
    pub stdio_handoff: Option<FdHandoff>,
    /// With `unotify`: how the exec's arguments are read.
    pub memory_read: Option<MemoryAccess>,
    /// Consequences of the features for the chosen backend (not reasons to reject it).
    pub notes: Vec<String>,
}

/// What unotify lacks here, as messages naming the feature and the kernel that has it.
fn unotify_missing(f: &Features) -> Vec<String> {
    let mut missing = Vec::new();
    let in_container = f.process.container.is_some();
    let mut need = |ok: bool, what: &str, feature: &Feature, fix: &str| {
        if !ok {
            let kernel = feature.missing_on(&f.kernel).unwrap_or_default();
            let mut reason = format!("{what} is missing ({kernel}; {})", feature.detail);
            // On a kernel that has it, inside a container: the engine's profile hides it.
            if in_container && f.kernel.at_least(feature.since) {
                reason.push_str("; in this container: ");
                reason.push_str(fix);
            }
            missing.push(reason);
        }
    };
    need(
        f.seccomp.user_notif.available,
        "seccomp user notification",
        &f.seccomp.user_notif,
        NOTIF_FIX,
    );
    need(
        f.seccomp.continue_flag.available,
        "SECCOMP_USER_NOTIF_FLAG_CONTINUE",
        &f.seccomp.continue_flag,
        NOTIF_FIX,
    );
    need(
        f.pidfd.open.available,
        "pidfd_open",
        &f.pidfd.open,
        "the engine's seccomp profile blocks pidfd_open: run with a profile that allows it \
         (Docker's and Podman's defaults do)",
    );
    if !f.ptrace.permitted {
        let mut reason = format!(
            "ptrace of our own children is not permitted (yama ptrace_scope {}, CAP_SYS_PTRACE {}; {})",
            f.ptrace
                .yama_ptrace_scope
                .map_or("absent".to_owned(), |s| s.to_string()),
            if f.ptrace.cap_sys_ptrace { "yes" } else { "no" },
            f.ptrace.detail
        );
        if in_container {
            reason.push_str(
                "; in this container: add `--cap-add SYS_PTRACE` (the engine's seccomp \
                 profile or the yama scope needs the capability)",
            );
        }
        missing.push(reason);
    }
    missing
}

/// What to add when a container's seccomp profile blocks user notification.
const NOTIF_FIX: &str = "the engine's seccomp profile blocks seccomp user notification: \
    run with `--security-opt seccomp=unconfined`, or a profile that allows seccomp(2) with \
    SECCOMP_FILTER_FLAG_NEW_LISTENER and the SECCOMP_IOCTL_NOTIF_* ioctls";

/// The stdio hand-off, and what the fallback costs, in one line for doctor.
fn stdio_handoff(f: &Features) -> (FdHandoff, String) {
    let getfd = &f.pidfd.getfd;
    if getfd.available {
        return (
            FdHandoff::PidfdGetfd,
            "stdio hand-off: pidfd_getfd (an escalated command gets the caller's own descriptors)"
                .to_owned(),
        );
    }
    let why = getfd.missing_on(&f.kernel).unwrap_or_default();
    let mut note = format!(
        "stdio hand-off: /proc/PID/fd reopen (pidfd_getfd {why}; {}): a caller's stdin, \
         stdout or stderr that is a socket or an anonymous inode cannot be handed to an \
         escalated command (it fails, saying so), and a regular file is reopened as a \
         separate open file description at the caller's offset (the shared offset does not \
         advance)",
        getfd.detail
    );
    if f.process.container.is_some() && f.kernel.at_least(getfd.since) {
        note.push_str(
            "; in this container: add `--cap-add SYS_PTRACE` for pidfd_getfd, the exact \
             mechanism (the engine's seccomp profile allows it only with CAP_SYS_PTRACE, as \
             Docker's default does)",
        );
    }
    (FdHandoff::ProcReopen, note)
}

/// How exec arguments are read, in one line for doctor.
fn memory_read(f: &Features) -> (MemoryAccess, String) {
    let readv = &f.process_vm_readv;
    if readv.available {
        return (
            MemoryAccess::ProcessVmReadv,
            "exec arguments read with process_vm_readv".to_owned(),
        );
    }
    let why = readv.missing_on(&f.kernel).unwrap_or_default();
    let mut note = format!(
        "exec arguments read from /proc/PID/mem (process_vm_readv {why}; {}): the same \
         bytes, one open more per exec",
        readv.detail
    );
    if f.process.container.is_some() && f.kernel.at_least(readv.since) {
        note.push_str("; in this container: `--cap-add SYS_PTRACE` allows process_vm_readv");
    }
    (MemoryAccess::ProcMem, note)
}

/// What the wrapper backend lacks here: the patched bash or the wrapper binary.
fn wrapper_missing(f: &Features) -> Vec<String> {
    let p = &f.patched_shell;
    let mut missing = Vec::new();
    if p.bash.path.is_none() {
        missing.push(format!(
            "patched bash {}; build it with patches-fallback/build-shells",
            p.bash.describe_missing()
        ));
    }
    if p.wrapper.path.is_none() {
        missing.push(format!(
            "{} {}",
            kernel::detect::patched_shell::WRAPPER_NAME,
            p.wrapper.describe_missing()
        ));
    }
    missing
}

/// What the wrapper backend does not see, for the notice when it is chosen.
pub const WRAPPER_BLIND_SPOT: &str = "only the patched shell's own execs are decided: \
    programs that exec by themselves (python's subprocess, make, xargs, env, find -exec, \
    /bin/sh) run unasked, inside the sandbox";

/// The backend the detected features allow, and why not the others. Pure: no probe.
pub fn choose(f: &Features) -> BackendChoice {
    let missing = unotify_missing(f);
    let wrapper_missing = wrapper_missing(f);
    let unotify_ok = missing.is_empty();
    let mut notes = Vec::new();
    let (mut stdio, mut memory) = (None, None);
    let chosen = if unotify_ok {
        let (handoff, note) = stdio_handoff(f);
        stdio = Some(handoff);
        notes.push(note);
        let (read, note) = memory_read(f);
        memory = Some(read);
        notes.push(note);
        if f.seccomp.wait_killable_recv.available {
            notes.push("escalation hand-back: WAIT_KILLABLE_RECV variant (signals cannot withdraw a pending exec)".to_owned());
        } else {
            notes.push(format!(
                "escalation hand-back: interruptible variant (WAIT_KILLABLE_RECV {})",
                f.seccomp
                    .wait_killable_recv
                    .missing_on(&f.kernel)
                    .unwrap_or_default()
            ));
        }
        Backend::Unotify
    } else {
        if wrapper_missing.is_empty() {
            notes.push(format!("wrapper backend: {WRAPPER_BLIND_SPOT}"));
        }
        Backend::Wrapper
    };
    if !f.landlock.available() {
        notes.push(format!(
            "no Landlock: the sandbox cannot restrict the filesystem ({})",
            f.landlock.detail
        ));
    }
    if !f.cgroup.kill.available || !f.cgroup.writable {
        notes.push("timeouts kill the process group plus a subreaper sweep (no writable cgroup with cgroup.kill)".to_owned());
    }
    let mut wrapper_reasons = if unotify_ok {
        vec!["unotify is available; the wrapper needs a patched shell and sees only that shell's own execs".to_owned()]
    } else {
        Vec::new()
    };
    let wrapper_ok = wrapper_missing.is_empty();
    wrapper_reasons.extend(wrapper_missing);
    if let (Some(bash), Some(wrapper)) = (&f.patched_shell.bash.path, &f.patched_shell.wrapper.path)
    {
        notes.push(format!(
            "wrapper backend pieces: patched bash {}, wrapper {}",
            bash.display(),
            wrapper.display()
        ));
    }
    BackendChoice {
        chosen,
        candidates: vec![
            Candidate {
                backend: Backend::Unotify,
                usable: unotify_ok,
                rejected_because: missing,
            },
            Candidate {
                backend: Backend::Wrapper,
                usable: wrapper_ok,
                rejected_because: wrapper_reasons,
            },
        ],
        stdio_handoff: stdio,
        memory_read: memory,
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::kernel::detect::*;

    /// What `execgate doctor --json` prints: the features plus `"backend"`.
    fn doctor_json(f: &Features) -> serde_json::Value {
        let mut json = serde_json::to_value(f).unwrap();
        json["backend"] = serde_json::to_value(choose(f)).unwrap();
        json
    }

    /// The backend's lines of the doctor table (`not X: reason`, `note: ...`).
    fn doctor_lines(f: &Features) -> String {
        let choice = choose(f);
        let mut out = String::new();
        for c in &choice.candidates {
            for reason in &c.rejected_because {
                out.push_str(&format!("  not {}: {reason}\n", c.backend));
            }
        }
        for note in &choice.notes {
            out.push_str(&format!("  note: {note}\n"));
        }
        out
    }

    fn feature(available: bool, since: (u32, u32)) -> Feature {
        Feature::probed(available, KernelVersion::new(since.0, since.1, 0), "test")
    }

    /// A hand-made 6.1-like machine with everything unotify needs.
    fn full() -> Features {
        Features {
            kernel: Kernel::from_uname("6.1.0-50-cloud-amd64".into(), "x86_64".into()),
            seccomp: Seccomp {
                user_notif: feature(true, (5, 0)),
                notif_sizes: None,
                continue_flag: feature(true, (5, 5)),
                addfd: feature(true, (5, 9)),
                wait_killable_recv: feature(true, (5, 19)),
                sync_wake_up: feature(false, (6, 6)),
            },
            pidfd: Pidfd {
                open: feature(true, (5, 3)),
                getfd: feature(true, (5, 6)),
                send_signal: feature(true, (5, 1)),
            },
            process_vm_readv: feature(true, (3, 2)),
            landlock: Landlock::from_result(Ok(2)),
            ptrace: Ptrace {
                permitted: true,
                yama_ptrace_scope: Some(1),
                cap_sys_ptrace: false,
                how: How::Probe,
                detail: "test".into(),
            },
            user_namespaces: UserNamespaces {
                available: true,
                unprivileged_userns_clone: None,
                max_user_namespaces: Some(1000),
                how: How::Probe,
                detail: "test".into(),
            },
            pid_namespace: feature(true, (3, 8)),
            network_namespace: feature(true, (3, 8)),
            capability_drop: feature(true, (4, 3)),
            cgroup: Cgroup {
                v2_mount: Some("/sys/fs/cgroup".into()),
                own: Some("/sys/fs/cgroup/".into()),
                writable: true,
                kill: feature(true, (5, 14)),
                nsdelegate: false,
            },
            process: Process {
                container: None,
                seccomp_mode: Some(0),
                seccomp_filters: Some(0),
                no_new_privs: Some(false),
                euid: 0,
            },
            patched_shell: PatchedShell {
                bash: found("/opt/execgate/libexec/execgate/bash"),
                zsh: found("/opt/execgate/libexec/execgate/zsh"),
                wrapper: found("/opt/execgate/bin/execgate-execve-wrapper"),
            },
        }
    }

    fn found(path: &str) -> patched_shell::Found {
        patched_shell::Found {
            path: Some(path.into()),
            searched: vec![format!("test: {path}")],
        }
    }

    #[test]
    fn everything_present_chooses_unotify() {
        let choice = choose(&full());
        assert_eq!(choice.chosen, Backend::Unotify);
        assert!(choice.candidates[0].usable && choice.candidates[0].rejected_because.is_empty());
        assert!(choice.candidates[1].rejected_because[0].contains("patched shell"));
        assert_eq!(choice.stdio_handoff, Some(FdHandoff::PidfdGetfd));
        assert_eq!(choice.memory_read, Some(MemoryAccess::ProcessVmReadv));
        assert!(choice.notes[0].starts_with("stdio hand-off: pidfd_getfd"));
        assert!(choice.notes[1].contains("process_vm_readv"));
        assert!(choice.notes[2].contains("WAIT_KILLABLE_RECV variant"));
        assert!(choice.candidates[1].usable);
    }

    #[test]
    fn blocked_pidfd_getfd_and_process_vm_readv_fall_back_with_their_cost_named() {
        // Docker's default profile without CAP_SYS_PTRACE: both answer EPERM.
        let mut f = full();
        f.process.container = Some("docker (/.dockerenv)".into());
        f.pidfd.getfd = Feature::probed(
            false,
            ::kernel::detect::pidfd::GETFD_SINCE,
            "pidfd_getfd(-1, 0, 0): EPERM",
        );
        f.process_vm_readv = Feature::probed(
            false,
            KernelVersion::new(3, 2, 0),
            "process_vm_readv(self, 1 byte): EPERM",
        );
        let choice = choose(&f);
        assert_eq!(choice.chosen, Backend::Unotify);
        assert!(choice.candidates[0].usable && choice.candidates[0].rejected_because.is_empty());
        assert_eq!(choice.stdio_handoff, Some(FdHandoff::ProcReopen));
        assert_eq!(choice.memory_read, Some(MemoryAccess::ProcMem));
        let stdio = &choice.notes[0];
        assert!(
            stdio.starts_with(
                "stdio hand-off: /proc/PID/fd reopen (pidfd_getfd blocked here: Linux has it \
                 since 5.6; a seccomp filter or LSM hides it; pidfd_getfd(-1, 0, 0): EPERM)"
            ),
            "{stdio}"
        );
        assert!(
            stdio.contains("socket") && stdio.contains("offset"),
            "{stdio}"
        );
        assert!(stdio.contains("add `--cap-add SYS_PTRACE`"), "{stdio}");
        let memory = &choice.notes[1];
        assert!(
            memory.starts_with(
                "exec arguments read from /proc/PID/mem (process_vm_readv blocked here"
            ),
            "{memory}"
        );
        let table = doctor_lines(&f);
        assert!(
            table.contains("note: stdio hand-off: /proc/PID/fd reopen"),
            "{table}"
        );
        assert!(table.contains("process_vm_readv"), "{table}");
        let json = doctor_json(&f);
        assert_eq!(json["backend"]["stdio_handoff"], "proc_fd_reopen");
        assert_eq!(json["backend"]["memory_read"], "proc_mem");
        assert_eq!(json["process_vm_readv"]["available"], false);

        // Outside a container, or on a kernel without it: no capability advice.
        let mut f = full();
        f.kernel = Kernel::from_uname("5.5.0".into(), "x86_64".into());
        f.pidfd.getfd.available = false;
        let choice = choose(&f);
        assert_eq!(choice.stdio_handoff, Some(FdHandoff::ProcReopen));
        assert!(
            choice.notes[0].contains("pidfd_getfd needs Linux 5.6"),
            "{:?}",
            choice.notes
        );
        assert!(
            !choice.notes[0].contains("SYS_PTRACE"),
            "{:?}",
            choice.notes
        );
    }

    #[test]
    fn the_wrapper_needs_a_patched_bash_and_the_wrapper_binary() {
        let mut f = full();
        f.seccomp.user_notif.available = false;
        let choice = choose(&f);
        assert_eq!(choice.chosen, Backend::Wrapper);
        assert!(choice.candidates[1].usable);
        let notes = choice.notes.join("\n");
        assert!(notes.contains("python's subprocess"), "{notes}");
        assert!(
            notes.contains("/opt/execgate/libexec/execgate/bash"),
            "{notes}"
        );

        f.patched_shell.bash = patched_shell::Found {
            path: None,
            searched: vec!["$EXECGATE_PATCHED_BASH /nowhere/bash".into()],
        };
        f.patched_shell.wrapper.path = None;
        let choice = choose(&f);
        let wrapper = &choice.candidates[1];
        assert!(!wrapper.usable);
        assert_eq!(wrapper.rejected_because.len(), 2, "{wrapper:?}");
        assert!(
            wrapper.rejected_because[0].contains(
                "patched bash not found (looked at: $EXECGATE_PATCHED_BASH /nowhere/bash)"
            ) && wrapper.rejected_because[0].contains("build-shells"),
            "{wrapper:?}"
        );
        assert!(
            wrapper.rejected_because[1].starts_with("execgate-execve-wrapper not found"),
            "{wrapper:?}"
        );
        let table = doctor_lines(&f);
        assert!(
            table.contains("not wrapper: patched bash not found"),
            "{table}"
        );
    }

    #[test]
    fn each_unotify_requirement_is_required_and_named() {
        type Breaker = fn(&mut Features);
        let cases: [(Breaker, &str); 4] = [
            (
                |f| f.seccomp.user_notif.available = false,
                "seccomp user notification is missing (blocked here: Linux has it since 5.0",
            ),
            (
                |f| f.seccomp.continue_flag.available = false,
                "FLAG_CONTINUE is missing (blocked here: Linux has it since 5.5",
            ),
            (
                |f| f.pidfd.open.available = false,
                "pidfd_open is missing (blocked here: Linux has it since 5.3",
            ),
            (
                |f| f.ptrace.permitted = false,
                "ptrace of our own children is not permitted (yama ptrace_scope 1",
            ),
        ];
        for (breaker, reason) in cases {
            let mut f = full();
            breaker(&mut f);
            let choice = choose(&f);
            assert_eq!(choice.chosen, Backend::Wrapper, "{reason}");
            let rejected = &choice.candidates[0];
            assert!(!rejected.usable);
            assert_eq!(
                rejected.rejected_because.len(),
                1,
                "{:?}",
                rejected.rejected_because
            );
            assert!(
                rejected.rejected_because[0].contains(reason),
                "{:?}",
                rejected.rejected_because
            );
            assert!(choice.candidates[1].rejected_because.is_empty());
        }
    }

    #[test]
    fn blocked_in_a_container_says_what_to_add() {
        let mut f = full();
        f.process.container = Some("podman (/run/.containerenv)".into());
        f.seccomp.user_notif.available = false;
        let reasons = &choose(&f).candidates[0].rejected_because;
        assert!(
            reasons[0].contains("--security-opt seccomp=unconfined"),
            "{reasons:?}"
        );

        // Outside a container, or on a kernel too old to have it, no container advice.
        let mut f = full();
        f.seccomp.user_notif.available = false;
        assert!(!choose(&f).candidates[0].rejected_because[0].contains("container"));
        let mut f = full();
        f.process.container = Some("docker (/.dockerenv)".into());
        f.kernel = Kernel::from_uname("4.19.0".into(), "x86_64".into());
        f.seccomp.user_notif.available = false;
        assert!(!choose(&f).candidates[0].rejected_because[0].contains("in this container"));
    }

    #[test]
    fn an_old_kernel_names_the_kernel_to_upgrade_to() {
        let mut f = full();
        f.kernel = Kernel::from_uname("5.2.0-150-generic".into(), "x86_64".into());
        f.pidfd.open.available = false;
        f.pidfd.getfd.available = false;
        let choice = choose(&f);
        assert_eq!(choice.chosen, Backend::Wrapper);
        assert_eq!(choice.stdio_handoff, None);
        assert!(
            choice.candidates[0].rejected_because[0]
                .contains("pidfd_open is missing (needs Linux 5.3;"),
            "{:?}",
            choice.candidates[0].rejected_because
        );
    }

    #[test]
    fn optional_features_do_not_change_the_backend_but_are_noted() {
        let mut f = full();
        f.kernel = Kernel::from_uname("5.15.0-100-generic".into(), "x86_64".into());
        f.seccomp.wait_killable_recv.available = false;
        f.seccomp.addfd.available = false;
        f.landlock = Landlock::from_result(Err(std::io::Error::from_raw_os_error(libc::ENOSYS)));
        f.cgroup.kill.available = false;
        let choice = choose(&f);
        assert_eq!(choice.chosen, Backend::Unotify);
        let notes = choice.notes.join("\n");
        assert!(
            notes.contains("interruptible variant (WAIT_KILLABLE_RECV needs Linux 5.19)"),
            "{notes}"
        );
        assert!(notes.contains("no Landlock"), "{notes}");
        assert!(notes.contains("subreaper"), "{notes}");
    }

    #[test]
    fn json_round_trips_and_carries_the_backend() {
        let f = full();
        let json = doctor_json(&f);
        assert_eq!(json["backend"]["chosen"], "unotify");
        assert_eq!(json["landlock"]["abi"], 2);
        assert_eq!(json["kernel"]["version"], "6.1.0");
        assert_eq!(json["pidfd"]["getfd"]["since"], "5.6.0");
        assert_eq!(json["seccomp"]["user_notif"]["how"], "probe");
        let back: Features = serde_json::from_value(json).unwrap();
        assert_eq!(back, f);
    }
}

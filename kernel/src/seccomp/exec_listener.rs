//! The filter an escalated copy runs under: outside the sandbox, so it restricts nothing,
//! but every `execve`/`execveat` of the copy's tree is stopped and decided by the same
//! policy (the policy follows the escalated tree).
//!
//! Owns: that BPF program. Must never restrict anything else the copy does: it runs outside
//! the sandbox on purpose. The one other rule keeps it in charge: no nested listener may
//! be installed in front of it (a later listener's answer would win).

use libseccomp::{ScmpAction, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};

use super::filter::{BpfProgram, FilterError};

/// Builds the escalated tree's filter (once, at start).
pub fn build() -> Result<BpfProgram, FilterError> {
    let lib = |step| move |source| FilterError::Libseccomp { step, source };
    let mut ctx = ScmpFilterContext::new(ScmpAction::Allow).map_err(lib("create context"))?;
    ctx.set_filter_attr(libseccomp::ScmpFilterAttr::CtlNnp, 0)
        .map_err(lib("disable libseccomp's NNP"))?;
    for name in ["execve", "execveat"] {
        let sc = ScmpSyscall::from_name(name).map_err(lib("resolve exec syscall"))?;
        ctx.add_rule(ScmpAction::Notify, sc)
            .map_err(lib("add exec notification"))?;
    }
    let seccomp = ScmpSyscall::from_name("seccomp").map_err(lib("resolve seccomp"))?;
    let new_listener = libc::SECCOMP_FILTER_FLAG_NEW_LISTENER;
    ctx.add_rule_conditional(
        ScmpAction::Errno(libc::EPERM),
        seccomp,
        &[ScmpArgCompare::new(
            1,
            ScmpCompareOp::MaskedEqual(new_listener),
            new_listener,
        )],
    )
    .map_err(lib("deny nested listeners"))?;
    super::filter::export(&ctx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::outside::{Outside, spawn_outside};
    use crate::seccomp::listener::{Listener, Watched};
    use std::ffi::CString;
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::os::unix::net::UnixStream;

    /// One copy under `filter`: its own exec must be the listener's first notification
    /// (answered here), and it runs to its status.
    fn first_exec_is_stopped(filter: BpfProgram) -> (i32, i32) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let answer = std::thread::spawn(move || {
            let fd = crate::process::recv_fd(ours.as_raw_fd()).unwrap().unwrap();
            let listener = Listener::from_fd(fd);
            match listener.wait_any(&[]).unwrap() {
                Watched::Notification(n) => {
                    listener.respond_continue(n.id).unwrap();
                    n.nr
                }
                _ => panic!("no notification for the copy's exec"),
            }
        });
        // No new privileges: installable without CAP_SYS_ADMIN too.
        let hook = crate::process::exec_listener_hook(filter, false, OwnedFd::from(theirs), true);
        let started = spawn_outside(Outside {
            path: CString::new("/bin/sh").unwrap(),
            argv: ["sh", "-c", "exit 7"]
                .map(|a| CString::new(a).unwrap())
                .to_vec(),
            env: Vec::new(),
            cwd: CString::new("/").unwrap(),
            stdio: [None, None, None],
            cgroup: None,
            hooks: vec![hook],
        })
        .unwrap();
        let nr = answer.join().unwrap();
        let mut status = 0;
        // SAFETY: our child, reaped once.
        unsafe { libc::waitpid(started.pid, &mut status, 0) };
        (nr, libc::WEXITSTATUS(status))
    }

    #[test]
    fn one_built_filter_stops_the_first_exec_of_every_copy_it_is_given_to() {
        let filter = build().unwrap();
        for _ in 0..3 {
            let (nr, code) = first_exec_is_stopped(filter.clone());
            assert_eq!(i64::from(nr), libc::SYS_execve);
            assert_eq!(code, 7);
        }
    }
}

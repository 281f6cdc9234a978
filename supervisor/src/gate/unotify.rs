//! The unotify backend: a seccomp user-notification listener pauses every exec of the
//! tree; one OS thread per session receives them, reads each exec from the paused caller,
//! and answers (continue, deny) or hands it to a prompt or an escalation.

use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use kernel::memory::ExecRequest;
use kernel::pidfd::PidFd;
use kernel::seccomp::listener::{Event, Listener, Notification};

use super::Shared;
use super::paused::{Unotified, facts_of};
use crate::routing::{self, Action};
use crate::sandbox::SandboxMode;
use crate::session::{Decider, RanIn};

/// The notification thread: receive the listener from the child, then serve until the
/// tree is gone or the session stops.
pub(crate) fn serve(
    shared: &Arc<Shared>,
    channel: UnixStream,
    stop: UnixStream,
    stopped: Option<Arc<AtomicBool>>,
) {
    let listener = match kernel::process::recv_fd(channel.as_raw_fd()) {
        Ok(Some(fd)) => Arc::new(Listener::from_fd(fd)),
        // The child failed before installing its filter; spawn reports why.
        Ok(None) => return,
        Err(err) => {
            tracing::error!("receiving the seccomp listener: {err}");
            return;
        }
    };
    drop(channel);
    if !listener.set_sync_wakeup() {
        tracing::debug!("no SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (Linux 6.6): slower round trips");
    }
    loop {
        let event = match &stopped {
            Some(stopped) => listener.wait_blocking(stopped),
            None => listener.wait(stop.as_fd()),
        };
        match event {
            Ok(Event::Notification(n)) => shared.handle(&listener, n),
            Ok(Event::Hangup) | Ok(Event::Stopped) => return,
            Err(err) => {
                tracing::error!("seccomp listener: {err}");
                return;
            }
        }
    }
}

impl Shared {
    fn handle(self: &Arc<Self>, listener: &Arc<Listener>, n: Notification) {
        if i64::from(n.nr) == libc::SYS_connect {
            self.handle_connect(listener, n);
            return;
        }
        let req = match ExecRequest::read(&n, self.inner.reach.memory) {
            Ok(req) => req,
            Err(err) => {
                tracing::debug!(pid = n.pid, "unreadable exec: {err}");
                let _ = listener.respond_errno(n.id, err.errno());
                return;
            }
        };
        if self.cgroup.is_none()
            && let Some(tree) = self.tree.get()
        {
            // Without a cgroup, teardown finds members by what it saw exec.
            tree.record_exec(n.pid);
        }
        if !self.first_exec_seen.swap(true, Ordering::AcqRel) {
            // The session's own program, started by us: it runs in the sandbox undecided;
            // everything it execs is decided. Paused, so its pid names it.
            if let Ok(program) = PidFd::of_thread(n.pid) {
                let _ = self.program.set(program);
            }
            let record = self.record_paused(
                || facts_of(&req),
                None,
                Decider::Supervisor,
                RanIn::Sandbox,
                || "the session's own program".into(),
            );
            let _ = listener.respond_continue(n.id);
            self.store_some(record);
            return;
        }
        let argv = req.argv_lossy();
        let program = req.path.to_string_lossy().into_owned();
        let eval = self.inner.policy.evaluate_exec(&program, &argv);
        let action = routing::route(&eval, self.sandbox.mode);
        // The hot path: an exec that stays in the sandbox, with no audit line to write.
        // Neither `NOTIF_ID_VALID` nor a `stat` is needed: an answer to a notification
        // whose caller died (so whose pid may name another process now) is refused by the
        // kernel, and a path that names nothing fails in the caller's exec as it would
        // without us. Two syscalls fewer on every sandboxed exec.
        if action == Action::Continue && self.inner.audit.is_none() {
            let _ = listener.respond_continue(n.id);
            return;
        }
        // What we read is only meaningful if the caller is still the one paused.
        if !listener.id_valid(n.id) {
            return;
        }
        if !req.by_fd {
            // A path that names nothing fails as the kernel would, without a decision:
            // execvp's PATH walk must not ask a person once per directory, nor fill the
            // audit log.
            if let Err(err) = std::fs::metadata(&req.path) {
                let errno = err.raw_os_error().unwrap_or(libc::ENOENT);
                let _ = listener.respond_errno(n.id, errno);
                return;
            }
        }
        let pending = Unotified::new(n, req, self.inner.reach, false);
        self.decide_evaluated(listener, pending, &program, &argv, eval, action);
    }

    /// One exec of an escalated copy's tree (`from` names the escalated command): decided by
    /// the same policy, but it already runs outside the sandbox, so an allowed exec
    /// continues there, a forbidden one fails with the reason, and a prompt asks.
    pub(crate) fn handle_escalated(
        self: &Arc<Self>,
        listener: &Arc<Listener>,
        n: Notification,
        from: &str,
    ) {
        let req = match ExecRequest::read(&n, self.inner.reach.memory) {
            Ok(req) => req,
            Err(err) => {
                let _ = listener.respond_errno(n.id, err.errno());
                return;
            }
        };
        let argv = req.argv_lossy();
        let program = req.path.to_string_lossy().into_owned();
        let eval = self.inner.policy.evaluate_exec(&program, &argv);
        let action = routing::route(&eval, SandboxMode::DangerFullAccess);
        if action == Action::Continue && self.inner.audit.is_none() {
            let _ = listener.respond_continue(n.id);
            return;
        }
        if !listener.id_valid(n.id) {
            return;
        }
        if !req.by_fd && std::fs::metadata(&req.path).is_err() {
            let _ = listener.respond_errno(n.id, libc::ENOENT);
            return;
        }
        tracing::debug!(from, program, "an exec of an escalated command's tree");
        let pending = Unotified::new(n, req, self.inner.reach, true);
        self.decide_evaluated(listener, pending, &program, &argv, eval, action);
    }
}

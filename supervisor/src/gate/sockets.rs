//! Unix sockets with the network off: which socket a sandboxed `connect` may reach.
//!
//! The filesystem sandbox does not cover connecting to a socket file (Landlock has no right
//! for it on the kernels we run on), and a socket of a daemon outside (`docker.sock`, a
//! tmux or screen server, an ssh or gpg agent, D-Bus) is a way out as good as a shell. With
//! the network off every `connect` of the tree stops at the listener and is decided here:
//!
//! - a socket listened on by a process of this session (a test server, an agent the
//!   session started) is reachable, by file or abstract name;
//! - a socket file named by the person (`--allow-unix-socket PATH`) is reachable;
//! - everything else fails with `EACCES`, and the refusal is logged with the path.
//!
//! The paused call is never continued (its address could be rewritten by another thread
//! after the check): the supervisor connects the caller's own socket, a `pidfd_getfd` copy
//! of the same open file description, to the socket file it checked and holds, and answers
//! with that result (`kernel::unix_socket`).

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::sync::Arc;

use kernel::memory::RemoteMemory;
use kernel::pidfd::PidFd;
use kernel::seccomp::listener::{Listener, Notification};
use kernel::unix_socket::{self, DiagSocket, UnixAddress};

use super::Shared;

/// Whether the tree's unix socket connects are decided (see the module doc), and if not,
/// why not.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "how", content = "why")]
pub enum UnixSocketGuard {
    /// Every `connect` with the network off is decided by the supervisor.
    SeccompNotify,
    /// Not decided: pathname sockets outside are reachable (doctor says why).
    Unguarded(String),
}

impl UnixSocketGuard {
    /// The guard this process can have: it needs a seccomp listener (`unotify_usable`: the
    /// unotify backend's own requirements, `unotify_missing` why not) and `pidfd_getfd`.
    pub fn choose(
        unotify_usable: bool,
        unotify_missing: &[String],
        features: &kernel::Features,
    ) -> UnixSocketGuard {
        let mut missing = Vec::new();
        if !unotify_usable {
            missing.push(format!(
                "no seccomp user notification here ({})",
                unotify_missing.join("; ")
            ));
        }
        if !features.pidfd.getfd.available {
            missing.push("no pidfd_getfd (Linux 5.6)".to_owned());
        }
        if missing.is_empty() {
            UnixSocketGuard::SeccompNotify
        } else {
            UnixSocketGuard::Unguarded(format!(
                "unix sockets outside the sandbox stay reachable with the network off: {}",
                missing.join("; ")
            ))
        }
    }

    pub fn is_guarded(&self) -> bool {
        *self == UnixSocketGuard::SeccompNotify
    }
}

/// What the supervisor answers a paused `connect`: 0 (connected) or an errno.
type Answer = i32;

impl Shared {
    /// A paused `connect` of the sandboxed tree (network off). Decided on a blocking
    /// thread: the connect itself may wait (a full backlog), and execs must not wait
    /// behind it.
    pub(crate) fn handle_connect(self: &Arc<Self>, listener: &Arc<Listener>, n: Notification) {
        let shared = self.clone();
        let listener = listener.clone();
        self.runtime.spawn_blocking(move || {
            let errno = shared.connect_for(&n);
            // A caller that died meanwhile makes this fail: nothing to answer then.
            let _ = listener.respond_errno(n.id, errno);
        });
    }

    fn connect_for(&self, n: &Notification) -> Answer {
        // `socklen_t` is 32 bits: the upper half of the register is not the caller's.
        let (addr_ptr, len) = (
            n.args[1],
            usize::try_from(n.args[2] & 0xffff_ffff).unwrap_or(usize::MAX),
        );
        // `sockaddr_storage`'s size: the most the kernel takes for any family (an inet
        // caller may pass that much; a unix address longer than its own size is refused
        // below, as the kernel does).
        const SOCKADDR_STORAGE_LEN: usize = 128;
        if len > SOCKADDR_STORAGE_LEN {
            return libc::EINVAL;
        }
        let mut bytes = vec![0u8; len];
        let read = RemoteMemory::open(n.pid, self.inner.reach.memory)
            .and_then(|mem| mem.read(addr_ptr, &mut bytes));
        match read {
            Ok(got) if got == len => {}
            Ok(_) => return libc::EFAULT,
            Err(err) => return err.errno(),
        }
        let Some(address) = UnixAddress::parse(&bytes[..len.min(unix_socket::SOCKADDR_UN_LEN)])
        else {
            return libc::EINVAL;
        };
        if len > unix_socket::SOCKADDR_UN_LEN && !matches!(address, UnixAddress::Family(_)) {
            // Longer than any unix address: what the kernel answers such a call.
            return libc::EINVAL;
        }
        // Connects the caller's own socket (a copy of its descriptor) with `connect`.
        let on_callers_socket = |connect: &dyn Fn(BorrowedFd<'_>) -> io::Result<()>| {
            let fd = i32::try_from(n.args[0]).unwrap_or(-1);
            match PidFd::of_thread(n.pid).and_then(|p| p.get_fd(fd)) {
                Ok(socket) => errno_of(connect(socket.as_fd())),
                Err(err) => err.raw_os_error().unwrap_or(libc::EACCES),
            }
        };
        match address {
            UnixAddress::Pathname(path) => {
                use std::os::unix::ffi::OsStrExt;
                let path = std::path::Path::new(std::ffi::OsStr::from_bytes(&path));
                let target = match crate::executable::open_in_caller_view(n.pid, path) {
                    Ok(target) => target,
                    Err(err) => return err.raw_os_error().unwrap_or(libc::ENOENT),
                };
                let Ok(meta) = target.metadata() else {
                    return libc::ENOENT;
                };
                if !meta.file_type().is_socket() {
                    return libc::ECONNREFUSED;
                }
                let key = (meta.dev(), meta.ino());
                let allowed = self.named_by_person(key)
                    || self.listened_on_here(|s| {
                        s.file
                            == Some((
                                unix_socket::kernel_dev(key.0),
                                u32::try_from(key.1).unwrap_or(0),
                            ))
                    });
                if !allowed {
                    self.refused_socket(n, &path.to_string_lossy());
                    return libc::EACCES;
                }
                on_callers_socket(&|socket| unix_socket::connect_to_file(socket, target.as_fd()))
            }
            UnixAddress::Abstract(name) => {
                let mut bound = vec![0u8];
                bound.extend_from_slice(&name);
                if !self.listened_on_here(|s| s.name.as_deref() == Some(&bound[..])) {
                    self.refused_socket(n, &format!("@{}", String::from_utf8_lossy(&name)));
                    // What Landlock's abstract-socket scoping answers.
                    return libc::EPERM;
                }
                on_callers_socket(&|socket| unix_socket::connect_abstract(socket, &name))
            }
            UnixAddress::Unspec => on_callers_socket(&unix_socket::disconnect),
            // Proxy mode: the tree's TCP and UDP sockets live in its own network namespace
            // (only loopback), so wherever the address points, it stays inside. The socket
            // connected is the one checked to be of that namespace, never one passed in
            // from outside.
            UnixAddress::Family(family)
                if matches!(i32::from(family), libc::AF_INET | libc::AF_INET6)
                    && let Some(&namespace) = self.egress_namespace.get() =>
            {
                on_callers_socket(&|socket| {
                    if kernel::namespaces::net::namespace_of(socket)? != namespace {
                        return Err(io::Error::from_raw_os_error(libc::EACCES));
                    }
                    kernel::namespaces::net::connect_inet(socket, &bytes)
                })
            }
            // No socket of another family exists in the tree (the filter refuses them).
            UnixAddress::Family(_) => libc::EAFNOSUPPORT,
            UnixAddress::Unnamed => libc::EINVAL,
        }
    }

    /// The socket file is one the person named with `--allow-unix-socket` (compared by
    /// device and inode, so a link or a rename of another socket does not pass).
    fn named_by_person(&self, key: (u64, u64)) -> bool {
        self.sandbox.allow_unix_sockets.iter().any(|p| {
            std::fs::metadata(p)
                .map(|m| (m.dev(), m.ino()) == key)
                .unwrap_or(false)
        })
    }

    /// A bound socket matching `which` is held by a process of this session.
    fn listened_on_here(&self, which: impl Fn(&DiagSocket) -> bool) -> bool {
        let Ok(sockets) = unix_socket::bound_sockets() else {
            return false;
        };
        let wanted: Vec<String> = sockets
            .iter()
            .filter(|s| which(s))
            .map(|s| format!("socket:[{}]", s.inode))
            .collect();
        if wanted.is_empty() {
            return false;
        }
        self.member_pids().into_iter().any(|pid| {
            let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
                return false;
            };
            fds.flatten().any(|fd| {
                std::fs::read_link(fd.path())
                    .is_ok_and(|link| wanted.iter().any(|w| link.as_os_str() == w.as_str()))
            })
        })
    }

    /// The session's processes, by its cgroup where it has one, else by its tree.
    fn member_pids(&self) -> Vec<i32> {
        if let Some(cgroup) = &self.cgroup
            && let Ok(pids) = cgroup.pids()
        {
            return pids;
        }
        self.tree
            .get()
            .and_then(|tree| tree.live_members().ok())
            .unwrap_or_default()
    }

    fn refused_socket(&self, n: &Notification, what: &str) {
        tracing::warn!(
            pid = n.pid,
            socket = what,
            "refused a connect to a unix socket outside the session (network off; \
             --allow-unix-socket PATH opens one)"
        );
    }
}

fn errno_of(result: io::Result<()>) -> Answer {
    match result {
        Ok(()) => 0,
        Err(err) => err.raw_os_error().unwrap_or(libc::EIO),
    }
}

//! A network namespace with only loopback for a session's tree, whose one way out is the
//! supervisor's egress proxy.
//!
//! Shape: the session's program-to-be (`P`, after the PID namespace step, while it still
//! holds its capabilities) unshares a new network namespace, brings its `lo` up, and
//! creates the proxy's listening TCP socket on `127.0.0.1:PORT` inside it. It hands that
//! socket to the supervisor over an inherited socketpair (`SCM_RIGHTS`) and closes its own
//! copy: the supervisor, outside, accepts the tree's connections on it (a socket stays in
//! the namespace it was made in) and connects upstream from its own namespace. Nothing
//! else of the tree can reach beyond the namespace's loopback.
//!
//! Needs `CAP_SYS_ADMIN` for `unshare(CLONE_NEWNET)` and `CAP_NET_ADMIN` for `lo`, over the
//! user namespace the child is in: a root supervisor's child, or the user namespace the
//! PID namespace step made ([`super::pid::Privilege::UserNamespace`]). [`detect`] probes the
//! same way.
//!
//! Owns: the network namespace, its loopback, the listening socket's creation and the
//! `connect` of a tree's socket inside it. Must never decide who may go where (the
//! supervisor's proxy does) and never fall back to the host's network.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use crate::detect::{Feature, KernelVersion};
use crate::process::throwaway as child;

/// Network namespaces and the `SIOCSIFFLAGS` on `lo` predate every kernel we run on.
pub const NETWORK_NAMESPACE_SINCE: KernelVersion = KernelVersion::new(3, 8, 0);

/// Everything the child needs, prepared before fork.
#[derive(Debug)]
pub struct SessionNetworkNamespace {
    /// The child's end of the socketpair the listening socket goes through.
    channel: OwnedFd,
    /// The proxy's port on the namespace's 127.0.0.1.
    port: u16,
}

/// Which step of the set-up failed, for the error the child's spawn reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Unshare = 0,
    Loopback = 1,
    Listen = 2,
    Handoff = 3,
}

impl SessionNetworkNamespace {
    /// `channel`: the child's end of a `SOCK_STREAM`/`SOCK_SEQPACKET` unix socketpair (close
    /// on exec); the supervisor receives the listener on the other end with
    /// [`crate::process::recv_fd`].
    pub fn new(channel: OwnedFd, port: u16) -> SessionNetworkNamespace {
        SessionNetworkNamespace { channel, port }
    }

    /// Child side (a confinement hook), async-signal-safe: raw syscalls on stack data.
    /// After it the process is in a namespace with only an up loopback, and the supervisor
    /// holds the proxy's listening socket.
    pub fn enter_in_child(&self) -> io::Result<()> {
        enter(self.channel.as_raw_fd(), self.port).map_err(|(_, e)| e)
    }
}

fn enter(channel: libc::c_int, port: u16) -> Result<(), (Step, io::Error)> {
    // SAFETY: unshare takes an integer flag set.
    crate::cvt_int(unsafe { libc::unshare(libc::CLONE_NEWNET) }).map_err(|e| (Step::Unshare, e))?;
    loopback_up().map_err(|e| (Step::Loopback, e))?;
    let listener = listen_on_loopback(port).map_err(|e| (Step::Listen, e))?;
    let sent = crate::process::send_fd(channel, listener);
    // SAFETY: closing our own copies: the supervisor holds the listener now, and nothing
    // of the tree needs the channel.
    unsafe {
        libc::close(listener);
        libc::close(channel);
    }
    sent.map_err(|e| (Step::Handoff, e))
}

/// `ip link set lo up` by `SIOCSIFFLAGS`: a new network namespace's loopback is down.
fn loopback_up() -> io::Result<()> {
    // SAFETY: plain socket(2); closed below.
    let sock = crate::cvt_int(unsafe {
        libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0)
    })?;
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *slot = libc::c_char::from_ne_bytes([*byte]);
    }
    // SAFETY: `req` is a valid ifreq naming "lo" for the kernel to fill.
    let mut result = crate::cvt_int(unsafe { libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req) });
    if result.is_ok() {
        // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
        let flags = unsafe { req.ifr_ifru.ifru_flags };
        let up = libc::c_short::try_from(libc::IFF_UP | libc::IFF_RUNNING).unwrap_or(1);
        req.ifr_ifru.ifru_flags = flags | up;
        // SAFETY: `req` names "lo" with the flags to set.
        result = crate::cvt_int(unsafe { libc::ioctl(sock, libc::SIOCSIFFLAGS, &req) });
    }
    // SAFETY: closing the socket made above.
    unsafe { libc::close(sock) };
    result.map(|_| ())
}

/// A listening TCP socket on 127.0.0.1:`port` (close on exec); the raw descriptor.
fn listen_on_loopback(port: u16) -> io::Result<libc::c_int> {
    // SAFETY: plain socket(2).
    let sock = crate::cvt_int(unsafe {
        libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0)
    })?;
    let addr = libc::sockaddr_in {
        sin_family: libc::sa_family_t::try_from(libc::AF_INET).unwrap_or(2),
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = libc::socklen_t::try_from(std::mem::size_of::<libc::sockaddr_in>()).unwrap_or(16);
    // SAFETY: `addr` is a valid sockaddr_in of `len` bytes for the call.
    let bound = crate::cvt_int(unsafe { libc::bind(sock, std::ptr::from_ref(&addr).cast(), len) });
    // SAFETY: listen(2) on the socket made above.
    let listened = bound.and_then(|_| crate::cvt_int(unsafe { libc::listen(sock, 1024) }));
    if let Err(err) = listened {
        // SAFETY: closing the socket made above.
        unsafe { libc::close(sock) };
        return Err(err);
    }
    Ok(sock)
}

/// Connects `socket` (a copy of a sandboxed process's descriptor, so in the tree's
/// namespace) to the IPv4 or IPv6 address `addr` (the raw `sockaddr` the tree passed). The
/// supervisor answers a paused `connect` this way instead of continuing it, so the
/// descriptor connected is the one checked; where it leads is confined by the namespace.
pub fn connect_inet(socket: BorrowedFd<'_>, addr: &[u8]) -> io::Result<()> {
    let family = addr
        .get(..2)
        .map(|b| libc::sa_family_t::from_ne_bytes([b[0], b[1]]));
    let want = match family.map(libc::c_int::from) {
        Some(libc::AF_INET) => std::mem::size_of::<libc::sockaddr_in>(),
        Some(libc::AF_INET6) => std::mem::size_of::<libc::sockaddr_in6>(),
        _ => return Err(io::Error::from_raw_os_error(libc::EAFNOSUPPORT)),
    };
    if addr.len() < want {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // An aligned copy: the kernel reads a sockaddr_in6-sized buffer at most.
    // SAFETY: sockaddr_in6 is plain old data; all zeroes is a valid value.
    let mut storage: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    // SAFETY: `want` <= size_of::<sockaddr_in6>() and `addr` holds at least `want` bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(
            addr.as_ptr(),
            std::ptr::from_mut(&mut storage).cast::<u8>(),
            want,
        );
    }
    let len = libc::socklen_t::try_from(want).unwrap_or(0);
    // SAFETY: `storage` holds a sockaddr of `len` bytes for the call; `socket` is open.
    crate::cvt_int(unsafe {
        libc::connect(socket.as_raw_fd(), std::ptr::from_ref(&storage).cast(), len)
    })?;
    Ok(())
}

/// The network namespace a socket belongs to, as `(st_dev, st_ino)` of its namespace file
/// (`SIOCGSKNS`): whether a socket the tree connects really lives in the session's own
/// namespace, not one passed in from outside.
pub fn namespace_of(socket: BorrowedFd<'_>) -> io::Result<(u64, u64)> {
    const SIOCGSKNS: libc::c_ulong = 0x894C;
    // SAFETY: SIOCGSKNS takes no argument and returns a new descriptor, owned at once.
    let ns = crate::cvt_int(unsafe { libc::ioctl(socket.as_raw_fd(), SIOCGSKNS) })?;
    // SAFETY: the kernel just installed `ns` for us.
    let ns = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(ns) };
    let meta = std::fs::File::from(ns).metadata()?;
    Ok((
        std::os::unix::fs::MetadataExt::dev(&meta),
        std::os::unix::fs::MetadataExt::ino(&meta),
    ))
}

const PROBE_USERNS: usize = 0;
const PROBE_UNSHARE: usize = 1;
const PROBE_LOOPBACK: usize = 2;
const PROBE_LISTEN: usize = 3;

fn probe_privileged(report: &mut [i32; 4]) {
    probe(report, false);
}

fn probe_user_namespace(report: &mut [i32; 4]) {
    probe(report, true);
}

/// The child: a user namespace first when asked (as the PID namespace step makes it),
/// then the network namespace, `lo` up and a listening socket, as a session does.
fn probe(report: &mut [i32; 4], user_namespace: bool) {
    // SAFETY: integer flags; only in the forked, single-threaded probe child.
    if user_namespace && unsafe { libc::unshare(libc::CLONE_NEWUSER) } != 0 {
        report[PROBE_USERNS] = child::errno();
        return;
    }
    // The channel is unused: the probe stops before the hand-off.
    match (|| -> Result<(), (Step, io::Error)> {
        // SAFETY: integer flags.
        crate::cvt_int(unsafe { libc::unshare(libc::CLONE_NEWNET) })
            .map_err(|e| (Step::Unshare, e))?;
        loopback_up().map_err(|e| (Step::Loopback, e))?;
        listen_on_loopback(8).map_err(|e| (Step::Listen, e))?;
        Ok(())
    })() {
        Ok(()) => {}
        Err((step, err)) => {
            let slot = match step {
                Step::Unshare => PROBE_UNSHARE,
                Step::Loopback => PROBE_LOOPBACK,
                Step::Listen | Step::Handoff => PROBE_LISTEN,
            };
            report[slot] = err.raw_os_error().unwrap_or(libc::EIO);
        }
    }
}

/// Probes the way the supervisor will make the namespace: directly with `CAP_SYS_ADMIN`
/// (`cap_sys_admin`), else inside a user namespace. `detail` says how, or which step
/// failed and why.
/// What [`crate::detect::detect_with`] reports when nothing needed this probe.
pub fn not_probed() -> Feature {
    Feature::probed(
        false,
        NETWORK_NAMESPACE_SINCE,
        "not probed: no network rule or --allow-domain opens a host",
    )
}

pub fn detect(cap_sys_admin: bool) -> Feature {
    let since = NETWORK_NAMESPACE_SINCE;
    let (probe, how): (fn(&mut [i32; 4]), &str) = if cap_sys_admin {
        (probe_privileged, "privileged (CAP_SYS_ADMIN)")
    } else {
        (probe_user_namespace, "in a user namespace")
    };
    match child::run(probe) {
        Ok([0, 0, 0, 0]) => Feature::probed(
            true,
            since,
            format!("unshare(CLONE_NEWNET), lo up and a listener on it succeeded {how}"),
        ),
        Ok(report) => {
            let detail = crate::detect::failed_namespace_step(
                &[
                    ("unshare(CLONE_NEWUSER)", report[PROBE_USERNS]),
                    ("unshare(CLONE_NEWNET)", report[PROBE_UNSHARE]),
                    ("bringing lo up (SIOCSIFFLAGS)", report[PROBE_LOOPBACK]),
                    ("listening on 127.0.0.1 inside", report[PROBE_LISTEN]),
                ],
                how,
                cap_sys_admin,
            );
            Feature::probed(false, since, detail)
        }
        Err(e) => Feature::probed(false, since, format!("probe child: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_inet_refuses_other_families_and_short_addresses() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let fd = std::os::fd::AsFd::as_fd(&a);
        let unix = libc::sa_family_t::try_from(libc::AF_UNIX)
            .unwrap()
            .to_ne_bytes();
        let err = connect_inet(fd, &[unix[0], unix[1], 0, 0]).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EAFNOSUPPORT));
        let inet = libc::sa_family_t::try_from(libc::AF_INET)
            .unwrap()
            .to_ne_bytes();
        let err = connect_inet(fd, &[inet[0], inet[1], 0, 80]).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
    }
}

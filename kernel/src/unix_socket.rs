//! Unix sockets: what a paused `connect` asked for, who listens where (`sock_diag`), and
//! connecting a copied descriptor on the caller's behalf.
//!
//! With the network off the supervisor decides every `connect` of the sandboxed tree (see
//! `supervisor::gate::sockets`). It never lets the paused call continue: the address it
//! checked lives in the caller's memory, which another thread can rewrite between the
//! check and the kernel's own read. Instead it connects the caller's very socket (a
//! `pidfd_getfd` copy shares the open file description) to the socket file it checked,
//! named by a descriptor it holds, and answers with that result.

// The casts here are of C constants (address families, netlink flags) and of struct and
// message sizes bounded by a 64 KiB buffer: none can truncate.
#![allow(clippy::cast_possible_truncation)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `sizeof(struct sockaddr_un)`: the longest address `connect` accepts for `AF_UNIX`.
pub const SOCKADDR_UN_LEN: usize = std::mem::size_of::<libc::sockaddr_un>();
const SUN_PATH_OFFSET: usize = std::mem::size_of::<libc::sa_family_t>();

/// The address of one `connect` call, as the kernel would read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnixAddress {
    /// A socket file (`sun_path`, up to its first NUL).
    Pathname(Vec<u8>),
    /// An abstract name (`sun_path` after its leading NUL, to the address length).
    Abstract(Vec<u8>),
    /// `AF_UNIX` with no name at all: invalid for `connect`.
    Unnamed,
    /// `AF_UNSPEC`: dissolves a datagram socket's association.
    Unspec,
    /// Another family.
    Family(u16),
}

impl UnixAddress {
    /// Parses the first `len` bytes the caller passed (already cut to
    /// [`SOCKADDR_UN_LEN`]); `None` where the kernel answers `EINVAL` (too short).
    pub fn parse(bytes: &[u8]) -> Option<UnixAddress> {
        if bytes.len() < SUN_PATH_OFFSET {
            return None;
        }
        let family = u16::from_ne_bytes([bytes[0], bytes[1]]);
        if family == libc::AF_UNSPEC as u16 {
            return Some(UnixAddress::Unspec);
        }
        if family != libc::AF_UNIX as u16 {
            return Some(UnixAddress::Family(family));
        }
        let path = &bytes[SUN_PATH_OFFSET..];
        Some(match path.first() {
            None => UnixAddress::Unnamed,
            Some(0) => UnixAddress::Abstract(path[1..].to_vec()),
            Some(_) => {
                let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
                UnixAddress::Pathname(path[..end].to_vec())
            }
        })
    }
}

/// Connects `socket` to the socket file `target` (any descriptor naming it, `O_PATH` is
/// enough) through `/proc/self/fd/N`, so the file connected to is exactly the one held,
/// whatever its path has become since.
pub fn connect_to_file(socket: BorrowedFd<'_>, target: BorrowedFd<'_>) -> io::Result<()> {
    let path = format!("/proc/self/fd/{}", target.as_raw_fd());
    connect_named(socket, path.as_bytes(), false)
}

/// Connects `socket` to the abstract name `name`.
pub fn connect_abstract(socket: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    connect_named(socket, name, true)
}

/// Dissolves a datagram socket's association (`connect` with `AF_UNSPEC`).
pub fn disconnect(socket: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: sockaddr is plain old data; all zeroes is a valid value.
    let mut addr: libc::sockaddr = unsafe { std::mem::zeroed() };
    addr.sa_family = libc::AF_UNSPEC as libc::sa_family_t;
    // SAFETY: `addr` is a valid sockaddr of the length given; the socket is borrowed.
    let ret = unsafe {
        libc::connect(
            socket.as_raw_fd(),
            &addr,
            std::mem::size_of::<libc::sockaddr>() as libc::socklen_t,
        )
    };
    crate::cvt_int(ret).map(drop)
}

fn connect_named(socket: BorrowedFd<'_>, name: &[u8], is_abstract: bool) -> io::Result<()> {
    // SAFETY: sockaddr_un is plain old data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let skip = usize::from(is_abstract);
    if name.len() + skip >= addr.sun_path.len() {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    for (dst, src) in addr.sun_path[skip..].iter_mut().zip(name) {
        *dst = *src as libc::c_char;
    }
    let len = SUN_PATH_OFFSET + skip + name.len() + usize::from(!is_abstract);
    // SAFETY: `addr` is a valid sockaddr_un and `len` does not exceed its size; the socket
    // is a descriptor borrowed for the call.
    let ret = unsafe {
        libc::connect(
            socket.as_raw_fd(),
            std::ptr::from_ref(&addr).cast::<libc::sockaddr>(),
            len as libc::socklen_t,
        )
    };
    crate::cvt_int(ret).map(drop)
}

/// One unix socket of this network namespace, from `sock_diag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiagSocket {
    /// The socket's own inode (what `/proc/PID/fd/N` shows as `socket:[INO]`).
    pub inode: u32,
    /// The socket file it is bound to: (device in the kernel's encoding, inode).
    pub file: Option<(u32, u32)>,
    /// The bound name as `sun_path` bytes (an abstract name starts with a NUL).
    pub name: Option<Vec<u8>>,
}

/// The kernel's internal `dev_t` encoding (`MAJOR << 20 | MINOR`), as `sock_diag` reports a
/// socket file's device, for a `st_dev` from `stat`.
pub fn kernel_dev(st_dev: u64) -> u32 {
    let major = libc::major(st_dev);
    let minor = libc::minor(st_dev);
    (major << 20) | (minor & 0xfffff)
}

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const UDIAG_SHOW_NAME: u32 = 0x1;
const UDIAG_SHOW_VFS: u32 = 0x2;
const UNIX_DIAG_NAME: u16 = 0;
const UNIX_DIAG_VFS: u16 = 1;
const NLMSG_HDR: usize = 16;
const UNIX_DIAG_MSG: usize = 16;

/// Every bound unix socket of the caller's network namespace (`NETLINK_SOCK_DIAG` dump of
/// `AF_UNIX` with names and socket files). Sockets that are not bound are left out.
pub fn bound_sockets() -> io::Result<Vec<DiagSocket>> {
    // SAFETY: plain socket(2); the result is checked and owned at once.
    let fd = crate::cvt_int(unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    })?;
    // SAFETY: `fd` was just returned by socket(2) and is owned by nothing else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };

    let mut req = Vec::with_capacity(NLMSG_HDR + 24);
    req.extend_from_slice(&((NLMSG_HDR + 24) as u32).to_ne_bytes());
    req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    req.extend_from_slice(&flags.to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes()); // seq
    req.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel
    req.push(libc::AF_UNIX as u8); // sdiag_family
    req.push(0); // sdiag_protocol
    req.extend_from_slice(&0u16.to_ne_bytes());
    req.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
    req.extend_from_slice(&0u32.to_ne_bytes()); // any inode
    req.extend_from_slice(&(UDIAG_SHOW_NAME | UDIAG_SHOW_VFS).to_ne_bytes());
    req.extend_from_slice(&[0xff; 8]); // no cookie
    // SAFETY: `req` is a valid buffer of its length for the duration of the call; a
    // datagram to the kernel (nl_pid 0) needs no address on a fresh netlink socket.
    let sent = unsafe {
        libc::send(
            sock.as_raw_fd(),
            req.as_ptr().cast::<libc::c_void>(),
            req.len(),
            0,
        )
    };
    crate::cvt(sent as libc::c_long)?;

    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: `buf` is a valid writable buffer of its length for the call.
        let n = unsafe {
            libc::recv(
                sock.as_raw_fd(),
                buf.as_mut_ptr().cast::<libc::c_void>(),
                buf.len(),
                0,
            )
        };
        let n = crate::cvt(n as libc::c_long)? as usize;
        if n == 0 {
            return Ok(out);
        }
        if parse_dump(&buf[..n], &mut out)? {
            return Ok(out);
        }
    }
}

/// Parses one datagram of the dump into `out`; true at `NLMSG_DONE`.
fn parse_dump(mut data: &[u8], out: &mut Vec<DiagSocket>) -> io::Result<bool> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed sock_diag reply");
    while data.len() >= NLMSG_HDR {
        let len = u32::from_ne_bytes(data[0..4].try_into().map_err(|_| bad())?) as usize;
        let kind = u16::from_ne_bytes([data[4], data[5]]);
        if len < NLMSG_HDR || len > data.len() {
            return Err(bad());
        }
        let body = &data[NLMSG_HDR..len];
        match kind {
            k if k == libc::NLMSG_DONE as u16 => return Ok(true),
            k if k == libc::NLMSG_ERROR as u16 => {
                let errno = body
                    .get(0..4)
                    .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                    .ok_or_else(bad)?;
                return Err(io::Error::from_raw_os_error(-errno));
            }
            SOCK_DIAG_BY_FAMILY if body.len() >= UNIX_DIAG_MSG => {
                let inode = u32::from_ne_bytes(body[4..8].try_into().map_err(|_| bad())?);
                let mut socket = DiagSocket {
                    inode,
                    file: None,
                    name: None,
                };
                let mut attrs = &body[UNIX_DIAG_MSG..];
                while attrs.len() >= 4 {
                    let alen = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
                    let atype = u16::from_ne_bytes([attrs[2], attrs[3]]);
                    if alen < 4 || alen > attrs.len() {
                        return Err(bad());
                    }
                    let payload = &attrs[4..alen];
                    match atype {
                        UNIX_DIAG_NAME => socket.name = Some(payload.to_vec()),
                        UNIX_DIAG_VFS if payload.len() >= 8 => {
                            let ino =
                                u32::from_ne_bytes(payload[0..4].try_into().map_err(|_| bad())?);
                            let dev =
                                u32::from_ne_bytes(payload[4..8].try_into().map_err(|_| bad())?);
                            socket.file = Some((dev, ino));
                        }
                        _ => {}
                    }
                    let step = (alen + 3) & !3;
                    attrs = attrs.get(step..).unwrap_or_default();
                }
                if socket.name.is_some() || socket.file.is_some() {
                    out.push(socket);
                }
            }
            _ => {}
        }
        let step = (len + 3) & !3;
        data = data.get(step..).unwrap_or_default();
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::net::{SocketAddr, UnixListener};

    fn sockaddr(family: u16, path: &[u8]) -> Vec<u8> {
        let mut b = family.to_ne_bytes().to_vec();
        b.extend_from_slice(path);
        b
    }

    #[test]
    fn addresses_parse_as_the_kernel_reads_them() {
        let unix = libc::AF_UNIX as u16;
        assert_eq!(UnixAddress::parse(&[1]), None);
        assert_eq!(
            UnixAddress::parse(&sockaddr(unix, b"/run/x.sock\0garbage")),
            Some(UnixAddress::Pathname(b"/run/x.sock".to_vec()))
        );
        assert_eq!(
            UnixAddress::parse(&sockaddr(unix, b"rel")),
            Some(UnixAddress::Pathname(b"rel".to_vec()))
        );
        assert_eq!(
            UnixAddress::parse(&sockaddr(unix, b"\0name\0x")),
            Some(UnixAddress::Abstract(b"name\0x".to_vec()))
        );
        assert_eq!(
            UnixAddress::parse(&sockaddr(unix, b"")),
            Some(UnixAddress::Unnamed)
        );
        assert_eq!(
            UnixAddress::parse(&sockaddr(0, b"")),
            Some(UnixAddress::Unspec)
        );
        assert_eq!(
            UnixAddress::parse(&sockaddr(2, b"")),
            Some(UnixAddress::Family(2))
        );
    }

    #[test]
    fn the_dump_names_a_listener_by_its_file_and_its_abstract_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let _by_file = UnixListener::bind(&path).unwrap();
        let name = format!("execgate-diag-test-{}", std::process::id());
        let _by_name =
            UnixListener::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        let all = bound_sockets().unwrap();
        assert!(
            all.iter()
                .any(|s| s.file == Some((kernel_dev(meta.dev()), meta.ino() as u32))),
            "the socket file is not in the dump"
        );
        let mut abstract_name = vec![0u8];
        abstract_name.extend_from_slice(name.as_bytes());
        assert!(
            all.iter()
                .any(|s| s.name.as_deref() == Some(&abstract_name[..]))
        );
    }

    #[test]
    fn connecting_through_a_held_file_reaches_that_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let listener = UnixListener::bind(&path).unwrap();
        let target = std::fs::File::open(dir.path()).unwrap(); // a directory: refused
        let client = std::os::unix::net::UnixDatagram::unbound().unwrap();
        assert!(connect_to_file(client.as_fd(), target.as_fd()).is_err());
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags_opath()
            .open(&path)
            .unwrap();
        let stream = socket_stream();
        connect_to_file(stream.as_fd(), file.as_fd()).unwrap();
        listener.set_nonblocking(true).unwrap();
        assert!(listener.accept().is_ok());
    }

    trait OPath {
        fn custom_flags_opath(&mut self) -> &mut Self;
    }
    impl OPath for std::fs::OpenOptions {
        fn custom_flags_opath(&mut self) -> &mut Self {
            use std::os::unix::fs::OpenOptionsExt;
            self.custom_flags(libc::O_PATH)
        }
    }

    fn socket_stream() -> OwnedFd {
        // SAFETY: plain socket(2), owned at once.
        let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        assert!(fd >= 0);
        // SAFETY: just returned by socket(2).
        unsafe { OwnedFd::from_raw_fd(fd) }
    }
}

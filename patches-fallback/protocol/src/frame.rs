//! Frames on a connection: a 4-byte big-endian length, JSON, and fds by `SCM_RIGHTS`.
//!
//! The codec ([`encode`], [`FrameReader`]) is shared by the blocking side (the wrapper)
//! and the tokio side (the supervisor); only the loops around the syscalls differ.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ProtocolError;

/// The largest JSON body of one frame. A request holds argv and env, which the kernel
/// bounds by `ARG_MAX`-like limits well below this.
pub const MAX_FRAME: usize = 64 << 20;

/// The most fds one frame may carry.
pub const MAX_FDS: usize = 16;

#[cfg(any(target_os = "linux", target_os = "android"))]
const SEND_FLAGS: MsgFlags = MsgFlags::MSG_NOSIGNAL;
// Elsewhere (macOS) a closed peer raises SIGPIPE unless the socket has SO_NOSIGPIPE.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const SEND_FLAGS: MsgFlags = MsgFlags::empty();

#[cfg(any(target_os = "linux", target_os = "android"))]
const RECV_FLAGS: rustix::net::RecvFlags = rustix::net::RecvFlags::CMSG_CLOEXEC;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const RECV_FLAGS: rustix::net::RecvFlags = rustix::net::RecvFlags::empty();

/// One message as it goes on the wire.
pub(crate) fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, ProtocolError> {
    let body = serde_json::to_vec(msg)?;
    let len = u32::try_from(body.len())
        .ok()
        .filter(|&l| l as usize <= MAX_FRAME)
        .ok_or(ProtocolError::FrameTooLarge(body.len()))?;
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Assembles one frame from as many reads as it takes. It only ever asks for the bytes
/// of this frame, so the next frame stays in the socket with its own fds.
#[derive(Debug, Default)]
pub(crate) struct FrameReader {
    header: [u8; 4],
    header_len: usize,
    body: Option<Vec<u8>>,
    body_len: usize,
    fds: Vec<OwnedFd>,
}

impl FrameReader {
    /// Where the next read goes.
    pub(crate) fn spare(&mut self) -> &mut [u8] {
        match &mut self.body {
            None => &mut self.header[self.header_len..],
            Some(body) => &mut body[self.body_len..],
        }
    }

    /// Takes the fds a read brought along.
    pub(crate) fn fds(&mut self) -> &mut Vec<OwnedFd> {
        &mut self.fds
    }

    /// Accounts for `n` bytes read into [`spare`](Self::spare); the frame when complete.
    pub(crate) fn advance(&mut self, n: usize) -> Result<Option<Frame>, ProtocolError> {
        if n == 0 {
            return Err(ProtocolError::Closed);
        }
        match &self.body {
            None => {
                self.header_len += n;
                if self.header_len == 4 {
                    let len = u32::from_be_bytes(self.header) as usize;
                    if len > MAX_FRAME {
                        return Err(ProtocolError::FrameTooLarge(len));
                    }
                    self.body = Some(vec![0; len]);
                }
            }
            Some(_) => self.body_len += n,
        }
        match &mut self.body {
            Some(body) if self.body_len == body.len() => {
                Ok(Some((std::mem::take(body), std::mem::take(&mut self.fds))))
            }
            _ => Ok(None),
        }
    }
}

/// The most fds the kernel passes in one message (Linux `SCM_MAX_FD`). The receive
/// buffer has room for that many, so an over-full frame arrives whole and is refused
/// here, with every fd closed, instead of being cut short by the kernel.
const SCM_MAX_FD: usize = 253;

/// What one read brought: the byte count, or why the frame is refused.
type Chunk = Result<usize, ProtocolError>;

/// A complete frame: the JSON body and the fds that came with it.
pub(crate) type Frame = (Vec<u8>, Vec<OwnedFd>);

/// `recvmsg(2)` on a stream socket: bytes into `buf`, fds (close-on-exec) into `fds`.
/// More than [`MAX_FDS`] fds is a refusal, after closing all of them. rustix hands the
/// received fds over as `OwnedFd`s, so taking ownership of them needs no `unsafe` here.
pub(crate) fn recv_chunk(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<Chunk> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, ReturnFlags};
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(SCM_MAX_FD))];
    let mut cmsg = RecvAncillaryBuffer::new(&mut space);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = loop {
        match rustix::net::recvmsg(sock, &mut iov, &mut cmsg, RECV_FLAGS) {
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(msg) => break msg,
        }
    };
    let before = fds.len();
    for message in cmsg.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    if msg.flags.contains(ReturnFlags::CTRUNC) {
        // Not on Linux (the buffer holds SCM_MAX_FD); elsewhere the cut fds are lost.
        fds.truncate(before);
        return Ok(Err(ProtocolError::TooManyFds(SCM_MAX_FD)));
    }
    if fds.len() > MAX_FDS {
        let got = fds.len() - before;
        fds.clear();
        return Ok(Err(ProtocolError::TooManyFds(got)));
    }
    Ok(Ok(msg.bytes))
}

/// `sendmsg(2)`: `buf` with `fds` attached (`SCM_RIGHTS`) when there are any.
pub(crate) fn send_chunk(sock: BorrowedFd<'_>, buf: &[u8], fds: &[RawFd]) -> io::Result<usize> {
    let iov = [IoSlice::new(buf)];
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &rights };
    loop {
        match sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, SEND_FLAGS, None) {
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(n) => return Ok(n),
        }
    }
}

/// Writes one frame on a blocking stream socket; `fds` ride on its first chunk.
pub fn write_frame<T: Serialize>(
    sock: BorrowedFd<'_>,
    msg: &T,
    fds: &[BorrowedFd<'_>],
) -> Result<(), ProtocolError> {
    if fds.len() > MAX_FDS {
        return Err(ProtocolError::TooManyFds(fds.len()));
    }
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let bytes = encode(msg)?;
    let mut sent = 0;
    while sent < bytes.len() {
        let attach = if sent == 0 { &raw[..] } else { &[][..] };
        sent += send_chunk(sock, &bytes[sent..], attach).map_err(ProtocolError::Send)?;
    }
    Ok(())
}

/// Reads one frame from a blocking stream socket, with the fds that came with it.
pub fn read_frame<T: DeserializeOwned>(
    sock: BorrowedFd<'_>,
) -> Result<(T, Vec<OwnedFd>), ProtocolError> {
    let mut reader = FrameReader::default();
    loop {
        let mut fds = std::mem::take(reader.fds());
        let n = recv_chunk(sock, reader.spare(), &mut fds).map_err(ProtocolError::Recv)??;
        *reader.fds() = fds;
        if let Some((body, fds)) = reader.advance(n)? {
            return Ok((serde_json::from_slice(&body)?, fds));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
    use std::os::fd::AsFd;

    fn pair() -> (OwnedFd, OwnedFd) {
        socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap()
    }

    #[test]
    fn frames_carry_json_and_fds_in_order() {
        let (a, b) = pair();
        let (x, _y) = pair();
        write_frame(a.as_fd(), &serde_json::json!({"n": 1}), &[x.as_fd()]).unwrap();
        write_frame(a.as_fd(), &serde_json::json!({"n": 2}), &[]).unwrap();
        let (m1, f1): (serde_json::Value, _) = read_frame(b.as_fd()).unwrap();
        let (m2, f2): (serde_json::Value, _) = read_frame(b.as_fd()).unwrap();
        assert_eq!((m1["n"].as_i64(), f1.len()), (Some(1), 1));
        assert_eq!((m2["n"].as_i64(), f2.len()), (Some(2), 0));
    }

    #[test]
    fn a_big_frame_arrives_whole() {
        let (a, b) = pair();
        let big = "x".repeat(4 << 20);
        let writer = std::thread::spawn(move || write_frame(a.as_fd(), &big, &[]).unwrap());
        let (got, _): (String, _) = read_frame(b.as_fd()).unwrap();
        writer.join().unwrap();
        assert_eq!(got.len(), 4 << 20);
    }

    #[test]
    fn more_fds_than_allowed_is_refused_on_both_sides() {
        let (a, b) = pair();
        let many: Vec<OwnedFd> = (0..=MAX_FDS).map(|_| pair().0).collect();
        let borrowed: Vec<BorrowedFd<'_>> = many.iter().map(|f| f.as_fd()).collect();
        let err = write_frame(a.as_fd(), &1, &borrowed).unwrap_err();
        assert!(matches!(err, ProtocolError::TooManyFds(17)), "{err}");

        // A peer that does not check: the reader must not take a cut-short set as whole.
        let raw: Vec<RawFd> = many.iter().map(|f| f.as_raw_fd()).collect();
        let bytes = encode(&1).unwrap();
        send_chunk(a.as_fd(), &bytes, &raw).unwrap();
        let err = read_frame::<i32>(b.as_fd()).unwrap_err();
        assert!(matches!(err, ProtocolError::TooManyFds(17)), "{err}");
        assert!(err.to_string().contains("at most 16"), "{err}");
    }

    #[test]
    fn a_closed_peer_is_closed_not_garbage() {
        let (a, b) = pair();
        drop(a);
        assert!(matches!(
            read_frame::<i32>(b.as_fd()),
            Err(ProtocolError::Closed)
        ));
    }

    #[test]
    fn an_oversized_length_is_refused_before_allocating() {
        let (a, b) = pair();
        send_chunk(a.as_fd(), &u32::MAX.to_be_bytes(), &[]).unwrap();
        assert!(matches!(
            read_frame::<i32>(b.as_fd()),
            Err(ProtocolError::FrameTooLarge(_))
        ));
    }
}

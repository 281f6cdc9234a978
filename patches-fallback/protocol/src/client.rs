//! The wrapper's side: one blocking connection per exec.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};

use crate::frame::{read_frame, send_chunk, write_frame};
use crate::message::{ClientMessage, EscalateRequest, ExitStatus, ServerMessage};
use crate::{HELLO, MAX_FDS, ProtocolError};

/// A private connection to the supervisor, opened through the shared rendezvous socket.
#[derive(Debug)]
pub struct Connection {
    sock: OwnedFd,
}

/// The connection's own fd: a wrapper asked for its fds must not mistake it for one of
/// the program's (with fd 0 closed, the socketpair can land on 0).
impl AsFd for Connection {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

impl Connection {
    /// Makes a stream socketpair and hands one end to the supervisor in a [`HELLO`]
    /// datagram on `rendezvous` (the inherited `SOCK_DGRAM` socket).
    pub fn open(rendezvous: BorrowedFd<'_>) -> Result<Self, ProtocolError> {
        let (mine, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| ProtocolError::Socketpair(e.into()))?;
        loop {
            match send_chunk(rendezvous, HELLO, &[theirs.as_raw_fd()]) {
                Ok(_) => break,
                // The shared socket may be non-blocking and momentarily full.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let mut pfd = [PollFd::new(rendezvous, PollFlags::POLLOUT)];
                    match poll(&mut pfd, PollTimeout::NONE) {
                        Ok(_) | Err(nix::Error::EINTR) => {}
                        Err(e) => return Err(ProtocolError::Rendezvous(e.into())),
                    }
                }
                Err(e) => return Err(ProtocolError::Rendezvous(e)),
            }
        }
        Ok(Connection { sock: mine })
    }

    /// Sends the request; the supervisor's decision (run, deny or escalate).
    pub fn request(&self, req: &EscalateRequest) -> Result<ServerMessage, ProtocolError> {
        write_frame(self.sock.as_fd(), &ClientMessage::request(req), &[])?;
        let (answer, _fds): (ServerMessage, _) = read_frame(self.sock.as_fd())?;
        match answer {
            ServerMessage::Run | ServerMessage::Deny { .. } | ServerMessage::Escalate { .. } => {
                Ok(answer)
            }
            other => Err(ProtocolError::Unexpected {
                expected: "run, deny or escalate",
                got: other.kind().into(),
            }),
        }
    }

    /// After an escalate answer: passes `fds` (number in this process, the fd).
    pub fn send_fds(&self, fds: &[(i32, BorrowedFd<'_>)]) -> Result<(), ProtocolError> {
        if fds.len() > MAX_FDS {
            return Err(ProtocolError::TooManyFds(fds.len()));
        }
        let numbers = fds.iter().map(|(n, _)| *n).collect();
        let attached: Vec<BorrowedFd<'_>> = fds.iter().map(|(_, f)| *f).collect();
        write_frame(
            self.sock.as_fd(),
            &ClientMessage::Fds { fds: numbers },
            &attached,
        )
    }

    /// Waits for the escalated program's status.
    pub fn wait_exit(&self) -> Result<ExitStatus, ProtocolError> {
        let (answer, _fds): (ServerMessage, _) = read_frame(self.sock.as_fd())?;
        match answer {
            ServerMessage::Exit { status } => Ok(status),
            other => Err(ProtocolError::Unexpected {
                expected: "exit",
                got: other.kind().into(),
            }),
        }
    }
}

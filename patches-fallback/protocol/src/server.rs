//! The supervisor's side (tokio): accept connections, read requests, answer them.
//!
//! ```no_run
//! # async fn serve() -> Result<(), Box<dyn std::error::Error>> {
//! use escalate_protocol::server::EscalateServer;
//! let (server, shell_end) = EscalateServer::pair()?;
//! // ... make `shell_end` fd N in the shell, with EXECGATE_ESCALATE_SOCKET=N ...
//! loop {
//!     let incoming = server.accept().await?;
//!     tokio::spawn(async move {
//!         let (request, responder) = incoming.read_request().await?;
//!         if request.argv.first().is_some_and(|a| a == "rm") {
//!             responder.deny("rm is forbidden here").await
//!         } else {
//!             responder.run().await
//!         }
//!     });
//! }
//! # }
//! ```

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::Interest;
use tokio::net::{UnixDatagram, UnixStream};

use crate::frame::{FrameReader, encode, recv_chunk, send_chunk};
use crate::message::{ClientMessage, EscalateRequest, ExitStatus, ServerMessage};
use crate::{HELLO, MAX_FDS, ProtocolError};

/// The supervisor's end of the rendezvous socket.
#[derive(Debug)]
pub struct EscalateServer {
    sock: UnixDatagram,
}

impl EscalateServer {
    /// A new rendezvous socketpair: the server, and the end for the shell. Both ends are
    /// close-on-exec; the supervisor makes the shell's end inheritable in the child only
    /// (`dup2` to the fd number it puts in `EXECGATE_ESCALATE_SOCKET`, between fork and
    /// exec), so no other child of the supervisor gets a copy. Needs a tokio runtime.
    pub fn pair() -> io::Result<(Self, OwnedFd)> {
        let (server, shell) = socketpair(
            AddressFamily::Unix,
            SockType::Datagram,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        Ok((Self::from_fd(server)?, shell))
    }

    /// Serves on an existing `SOCK_DGRAM` end. Needs a tokio runtime.
    pub fn from_fd(fd: OwnedFd) -> io::Result<Self> {
        let std = std::os::unix::net::UnixDatagram::from(fd);
        std.set_nonblocking(true)?;
        Ok(EscalateServer {
            sock: UnixDatagram::from_std(std)?,
        })
    }

    /// The next connection. [`ProtocolError::BadHello`] is one misbehaving client (keep
    /// accepting); [`ProtocolError::Recv`] is the rendezvous socket itself failing.
    /// A datagram socket has no end-of-file: when the shell's tree is gone this waits
    /// forever, so the session stops serving (drops the future) when the shell exits.
    pub async fn accept(&self) -> Result<Incoming, ProtocolError> {
        let mut buf = [0u8; 64];
        let mut fds = Vec::new();
        let n = self
            .sock
            .async_io(Interest::READABLE, || {
                fds.clear();
                recv_chunk(self.sock.as_fd(), &mut buf, &mut fds)
            })
            .await
            .map_err(ProtocolError::Recv)??;
        if &buf[..n] != HELLO || fds.len() != 1 {
            return Err(ProtocolError::BadHello);
        }
        let stream = std::os::unix::net::UnixStream::from(fds.remove(0));
        stream.set_nonblocking(true).map_err(ProtocolError::Recv)?;
        let stream = UnixStream::from_std(stream).map_err(ProtocolError::Recv)?;
        Ok(Incoming { stream })
    }
}

/// A connection whose request has not been read yet.
#[derive(Debug)]
pub struct Incoming {
    stream: UnixStream,
}

impl Incoming {
    /// The pid of the process that opened the connection (the wrapper: it made the
    /// socketpair), from `SO_PEERCRED`. `None` if the kernel does not say.
    pub fn peer_pid(&self) -> Option<i32> {
        self.stream.peer_cred().ok().and_then(|c| c.pid())
    }

    /// Reads the request; answer it with the [`Responder`].
    pub async fn read_request(self) -> Result<(EscalateRequest, Responder), ProtocolError> {
        let (msg, _fds): (ClientMessage, _) = read_frame(&self.stream).await?;
        match msg {
            ClientMessage::Request(w) => Ok((
                w.into(),
                Responder {
                    stream: self.stream,
                },
            )),
            other => Err(ProtocolError::Unexpected {
                expected: "request",
                got: other.kind().into(),
            }),
        }
    }
}

/// The answer to one request. Dropping it unanswered closes the connection, which the
/// wrapper takes as a denial.
#[derive(Debug)]
pub struct Responder {
    stream: UnixStream,
}

impl Responder {
    /// The wrapper execs the program in place (inside the sandbox).
    pub async fn run(self) -> Result<(), ProtocolError> {
        write_frame(&self.stream, &ServerMessage::Run).await
    }

    /// The wrapper prints `reason` on its stderr and exits 126.
    pub async fn deny(self, reason: &str) -> Result<(), ProtocolError> {
        write_frame(
            &self.stream,
            &ServerMessage::Deny {
                reason: reason.into(),
            },
        )
        .await
    }

    /// Asks for the wrapper's fds 0, 1 and 2 to run the program with.
    pub async fn escalate(self) -> Result<Escalation, ProtocolError> {
        self.escalate_fds(&[0, 1, 2]).await
    }

    /// Asks for these fds of the wrapper (at most [`MAX_FDS`]). Fds that are closed in
    /// the wrapper come back missing from [`Escalation::fds`].
    pub async fn escalate_fds(self, fds: &[i32]) -> Result<Escalation, ProtocolError> {
        if fds.len() > MAX_FDS {
            return Err(ProtocolError::TooManyFds(fds.len()));
        }
        write_frame(&self.stream, &ServerMessage::Escalate { fds: fds.to_vec() }).await?;
        let (msg, attached): (ClientMessage, Vec<OwnedFd>) = read_frame(&self.stream).await?;
        let listed = match msg {
            ClientMessage::Fds { fds } => fds,
            other => {
                return Err(ProtocolError::Unexpected {
                    expected: "fds",
                    got: other.kind().into(),
                });
            }
        };
        if listed.len() != attached.len() || listed.iter().any(|n| !fds.contains(n)) {
            return Err(ProtocolError::FdCountMismatch {
                listed: listed.len(),
                attached: attached.len(),
            });
        }
        Ok(Escalation {
            fds: listed.into_iter().zip(attached).collect(),
            stream: self.stream,
        })
    }
}

/// An escalated exec: the wrapper's fds, and the duty to report how the program ended.
#[derive(Debug)]
pub struct Escalation {
    /// (fd number in the wrapper, the fd), in the order asked for.
    pub fds: Vec<(i32, OwnedFd)>,
    stream: UnixStream,
}

impl Escalation {
    /// The wrapper's fd `n`, if it was open there.
    pub fn fd(&self, n: i32) -> Option<BorrowedFd<'_>> {
        self.fds
            .iter()
            .find(|(m, _)| *m == n)
            .map(|(_, fd)| fd.as_fd())
    }

    /// Resolves when the wrapper hangs up before the status was reported (it was killed,
    /// e.g. by a terminal's SIGINT): the supervisor should then stop the escalated
    /// program. The wrapper sends nothing after its fds, so any readiness means that.
    pub async fn wrapper_gone(&self) {
        let mut byte = [0u8; 1];
        loop {
            if self.stream.readable().await.is_err() {
                return;
            }
            match self.stream.try_read(&mut byte) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                _ => return,
            }
        }
    }

    /// Sends the final status; the wrapper exits with it (or dies of the same signal).
    pub async fn report_exit(self, status: ExitStatus) -> Result<(), ProtocolError> {
        write_frame(&self.stream, &ServerMessage::Exit { status }).await
    }
}

async fn write_frame<T: Serialize>(stream: &UnixStream, msg: &T) -> Result<(), ProtocolError> {
    let bytes = encode(msg)?;
    let mut sent = 0;
    while sent < bytes.len() {
        sent += stream
            .async_io(Interest::WRITABLE, || {
                send_chunk(stream.as_fd(), &bytes[sent..], &[])
            })
            .await
            .map_err(ProtocolError::Send)?;
    }
    Ok(())
}

async fn read_frame<T: DeserializeOwned>(
    stream: &UnixStream,
) -> Result<(T, Vec<OwnedFd>), ProtocolError> {
    let mut reader = FrameReader::default();
    loop {
        let n = stream
            .async_io(Interest::READABLE, || {
                let mut fds = std::mem::take(reader.fds());
                let r = recv_chunk(stream.as_fd(), reader.spare(), &mut fds);
                *reader.fds() = fds;
                r
            })
            .await
            .map_err(ProtocolError::Recv)??;
        if let Some((body, fds)) = reader.advance(n)? {
            return Ok((serde_json::from_slice(&body)?, fds));
        }
    }
}

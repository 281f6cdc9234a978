//! The escalate protocol: how `execgate-execve-wrapper` asks the supervisor about one exec.
//!
//! A patched bash or zsh runs `WRAPPER ORIG_PATH ARGV0 ARGV1...` for every exec it makes
//! (see `patches-fallback/README.md`). The wrapper asks the supervisor what to do and
//! then runs the program in place, waits for the supervisor's escalated copy of it, or
//! fails. This crate owns the bytes between the two; it never decides anything.
//!
//! # Rendezvous: one inherited socket, one connection per exec
//!
//! The supervisor creates an `AF_UNIX` `SOCK_DGRAM` socketpair ([`server::EscalateServer::pair`]),
//! keeps one end and gives the other to the shell as an inheritable fd whose number is in
//! [`SOCKET_ENV`] (`EXECGATE_ESCALATE_SOCKET`), at a high number (100 and up) so that it
//! does not take an fd scripts use (3-9) or bash hands out for `{var}>` redirections
//! (10 up). Every process of the shell's tree inherits
//! that same fd, so it cannot carry a conversation. Instead each wrapper run:
//!
//! 1. makes a fresh `SOCK_STREAM` socketpair, the *connection*;
//! 2. sends one datagram on the inherited socket: the payload [`HELLO`] with the
//!    connection's other end attached by `SCM_RIGHTS` (a datagram is atomic, so
//!    concurrent wrappers never interleave), and closes its copy of that end;
//! 3. talks over its end of the connection, which is private to this one exec.
//!
//! If the supervisor is gone, step 2 fails (`ECONNREFUSED`) or the connection reads
//! end-of-file: the wrapper treats both as a denial.
//!
//! # Frames
//!
//! On the connection every message is a frame: a 4-byte big-endian length, then that
//! many bytes of JSON (at most [`MAX_FRAME`]). Fds travel by `SCM_RIGHTS` attached to the
//! first chunk of a frame (the one carrying its length), at most [`MAX_FDS`] per frame;
//! a frame with more is an error ([`ProtocolError::TooManyFds`]), never a silent cut.
//! Strings that are not UTF-8 (argv, env and paths are bytes on Unix) are sent as
//! `{"bytes":[...]}` instead of a JSON string.
//!
//! ```text
//! wrapper                                       supervisor
//!   {"type":"request", path, argv, cwd, env} ->
//!                                            <- {"type":"run"}
//!                                            |  {"type":"deny","reason":"..."}
//!                                            |  {"type":"escalate","fds":[0,1,2]}
//! after escalate:
//!   {"type":"fds","fds":[0,1,2]} + SCM_RIGHTS ->   (only the fds that are open, in order)
//!                                            <- {"type":"exit","status":{"code":N}|{"signal":S}}
//! ```
//!
//! `path` is the program as the shell would have executed it, made absolute against
//! `cwd`; `env` is the wrapper's environment without the wrapper's own variables
//! ([`WRAPPER_ENV_VARS`]).

#![forbid(unsafe_code)]

mod client;
mod error;
mod frame;
mod message;
#[cfg(feature = "server")]
pub mod server;

pub use client::Connection;
pub use error::ProtocolError;
pub use frame::{MAX_FDS, MAX_FRAME, read_frame, write_frame};
pub use message::{ClientMessage, EscalateRequest, ExitStatus, ServerMessage};

/// The env var holding the number of the inherited rendezvous socket.
pub const SOCKET_ENV: &str = "EXECGATE_ESCALATE_SOCKET";

/// The payload of the rendezvous datagram that carries a new connection.
pub const HELLO: &[u8] = b"execgate-escalate/1";

/// The variables that belong to the wrapper machinery, not to the program: they are
/// left out of [`EscalateRequest::env`]. The patched shells read `EXEC_WRAPPER` /
/// `BASH_EXEC_WRAPPER` and hand the wrapper `EXEC_WRAPPER_SHELL`.
pub const WRAPPER_ENV_VARS: [&str; 4] = [
    "EXEC_WRAPPER",
    "BASH_EXEC_WRAPPER",
    "EXEC_WRAPPER_SHELL",
    SOCKET_ENV,
];

//! Namespaces for the sandboxed tree: a PID namespace with its own `/proc` ([`pid`]) and a
//! private mount namespace with read-only binds ([`mount`]).
//!
//! Owns: `unshare`, the namespace's mounts and uid/gid maps. Must never fork by itself
//! outside [`crate::process`]'s rules (only async-signal-safe calls between fork and exec)
//! and never decide whether a session gets a namespace (the supervisor does, from
//! [`mod@crate::detect`]).

pub mod mount;
pub mod pid;

//! seccomp: the filter program that stops every exec ([`filter`]) and the
//! user-notification listener that receives those stops and answers them ([`listener`]).
//!
//! Owns: building and installing the BPF program, the `SECCOMP_IOCTL_NOTIF_*` calls.
//! Must never decide an exec (that is `policy` and `supervisor`) nor read the paused
//! process's memory (that is [`crate::memory`]).

pub mod exec_listener;
pub mod filter;
pub mod listener;

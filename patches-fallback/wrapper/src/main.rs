//! `execgate-execve-wrapper`: what a patched bash or zsh runs instead of each program.
//!
//! The shell calls `execgate-execve-wrapper ORIG_PATH ARGV0 ARGV1...`. The wrapper asks
//! the supervisor (the escalate protocol, `escalate_protocol`) over the socket inherited
//! as fd `$EXECGATE_ESCALATE_SOCKET`, then:
//! - run: execs the program in place, still inside the sandbox. A script without `#!`
//!   (`ENOEXEC`) runs under `$EXEC_WRAPPER_SHELL`, as the shell itself would have done;
//! - escalate: passes the fds the supervisor asks for (0, 1, 2), waits for the status of
//!   the supervisor's copy of the program and exits with it, or dies of the same signal;
//! - deny, or anything going wrong with the supervisor: the reason on stderr, exit 126.
//!
//! It never runs anything the supervisor did not answer `run` for.
//!
//! No Rust `main`: std's start-up would reopen closed fds 0-2 on `/dev/null` and set
//! SIGPIPE to ignored, and a program exec'd in place would inherit both. The C `main`
//! below keeps the process exactly as the shell left it.

#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code))]

mod script;

use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use escalate_protocol::{
    Connection, EscalateRequest, ExitStatus, MAX_FDS, SOCKET_ENV, ServerMessage, WRAPPER_ENV_VARS,
};

/// The exit status of a program the shell found but could not run (POSIX).
const EX_NOEXEC: i32 = 126;

// SAFETY: `main` is the C entry point the C runtime calls once with argc/argv; no
// other symbol in the program is named `main` (std's is not generated under no_main).
#[cfg(not(test))]
#[unsafe(no_mangle)]
extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    wrapper()
}

fn wrapper() -> i32 {
    let mut args = std::env::args_os().skip(1);
    let Some(orig) = args.next() else {
        eprintln!("execgate-execve-wrapper: usage: execgate-execve-wrapper PATH ARGV0 ARGV1...");
        return EX_NOEXEC;
    };
    let argv: Vec<OsString> = args.collect();
    let deny = |why: &dyn std::fmt::Display| {
        eprintln!("execgate: {}: not run: {why}", Path::new(&orig).display());
        EX_NOEXEC
    };

    let cwd = match std::env::current_dir() {
        Ok(cwd) => cwd,
        Err(e) => return deny(&format_args!("no working directory: {e}")),
    };
    let env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    let request = EscalateRequest {
        path: absolute(&cwd, Path::new(&orig)),
        argv: argv.clone(),
        cwd,
        env: env
            .iter()
            .filter(|(k, _)| !WRAPPER_ENV_VARS.iter().any(|w| k == w))
            .cloned()
            .collect(),
    };

    let rendezvous = match rendezvous_fd() {
        Ok(fd) => fd,
        Err(why) => return deny(&why),
    };
    let conn = match Connection::open(rendezvous) {
        Ok(conn) => conn,
        Err(e) => return deny(&e),
    };
    match conn.request(&request) {
        Err(e) => deny(&e),
        Ok(ServerMessage::Deny { reason }) => {
            eprintln!("{}", reason.trim_end_matches('\n'));
            EX_NOEXEC
        }
        Ok(ServerMessage::Run) => {
            drop(conn);
            let shell = std::env::var_os("EXEC_WRAPPER_SHELL");
            // The program keeps the wrapper's variables (a nested patched shell wraps
            // too), except the one that was only for us.
            let env: Vec<CString> = env
                .iter()
                .filter(|(k, _)| k != "EXEC_WRAPPER_SHELL")
                .filter_map(|(k, v)| env_entry(k, v))
                .collect();
            script::exec_in_place(&request.path, &orig, &argv, &env, shell.as_deref())
        }
        Ok(ServerMessage::Escalate { fds }) => match escalated(&conn, &fds) {
            Ok(ExitStatus::Code(code)) => code,
            Ok(ExitStatus::Signal(sig)) => die_of(sig),
            Err(e) => deny(&e),
        },
        Ok(ServerMessage::Exit { .. }) => deny(&"the supervisor answered out of turn"),
    }
}

/// The inherited rendezvous socket, from `$EXECGATE_ESCALATE_SOCKET`.
fn rendezvous_fd() -> Result<BorrowedFd<'static>, String> {
    let value = std::env::var(SOCKET_ENV)
        .map_err(|_| format!("{SOCKET_ENV} is not set: no supervisor to ask"))?;
    let fd: RawFd = value
        .parse()
        .ok()
        .filter(|fd| *fd >= 0)
        .ok_or_else(|| format!("{SOCKET_ENV}={value:?} is not an fd number"))?;
    if !fd_is_open(fd) {
        return Err(format!("{SOCKET_ENV}={fd} is not an open fd"));
    }
    // SAFETY: `fd` is open (checked just above) and this process never closes it: the
    // inherited socket lives until exec or exit, which outlives every borrow.
    Ok(unsafe { BorrowedFd::borrow_raw(fd) })
}

fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads the fd's flags; any integer is a valid argument and a
    // closed one just fails with EBADF.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

/// Sends the fds the supervisor asked for (those open here) and waits for the status.
fn escalated(conn: &Connection, wanted: &[i32]) -> Result<ExitStatus, String> {
    if wanted.len() > MAX_FDS {
        return Err(format!(
            "the supervisor asked for {} fds; at most {MAX_FDS} can be passed",
            wanted.len()
        ));
    }
    let own = conn.as_fd().as_raw_fd();
    let fds: Vec<(i32, BorrowedFd<'_>)> = wanted
        .iter()
        .copied()
        .filter(|&n| n >= 0 && n != own && fd_is_open(n))
        // SAFETY: `n` is open (checked by the filter) and nothing in this process closes
        // it before the borrow ends with `send_fds`.
        .map(|n| (n, unsafe { BorrowedFd::borrow_raw(n) }))
        .collect();
    conn.send_fds(&fds).map_err(|e| e.to_string())?;
    conn.wait_exit().map_err(|e| e.to_string())
}

/// Ends this process the way the escalated program ended: by the same signal.
fn die_of(sig: i32) -> i32 {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};
    if let Ok(signal) = Signal::try_from(sig) {
        let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
        // SAFETY: installing SIG_DFL registers no handler code, so no handler can run
        // with broken invariants; the old action is dropped unused.
        let _ = unsafe { nix::sys::signal::sigaction(signal, &default) };
        let mut set = SigSet::empty();
        set.add(signal);
        let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None);
        let _ = nix::sys::signal::raise(signal);
    }
    // Still alive (a signal whose default is not to terminate): the shell convention.
    128 + sig
}

/// `path` made absolute against `cwd`, with `.` components dropped (no symlinks
/// resolved: the policy sees the path the shell used).
fn absolute(cwd: &Path, path: &Path) -> PathBuf {
    let joined = cwd.join(path);
    let mut out = PathBuf::new();
    for c in joined.components() {
        if c != Component::CurDir {
            out.push(c);
        }
    }
    out
}

fn env_entry(k: &OsStr, v: &OsStr) -> Option<CString> {
    let mut entry = k.as_bytes().to_vec();
    entry.push(b'=');
    entry.extend_from_slice(v.as_bytes());
    CString::new(entry).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_become_absolute_without_dots() {
        let cwd = Path::new("/work/dir");
        assert_eq!(absolute(cwd, Path::new("./s")), Path::new("/work/dir/s"));
        assert_eq!(
            absolute(cwd, Path::new("bin/x")),
            Path::new("/work/dir/bin/x")
        );
        assert_eq!(
            absolute(cwd, Path::new("/usr/bin/cat")),
            Path::new("/usr/bin/cat")
        );
        assert_eq!(
            absolute(cwd, Path::new("../y")),
            Path::new("/work/dir/../y")
        );
    }
}

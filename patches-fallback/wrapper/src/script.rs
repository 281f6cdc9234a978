//! Exec in place, and what bash does after a failed `execve`: the `ENOEXEC` fallback
//! (a text file without `#!` runs as a shell script) and its error messages and codes.
//!
//! The patched shell has already been replaced by the wrapper when the exec fails, so the
//! fallback happens here, under the shell that called us (`$EXEC_WRAPPER_SHELL`).

use std::ffi::{CString, OsStr, OsString};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;

use crate::EX_NOEXEC;

/// bash reads this much of a file to tell a script from a binary.
const SAMPLE: usize = 128;

/// Execs `path` with `argv` and `env`; returns the exit status only when that failed.
pub(crate) fn exec_in_place(
    path: &Path,
    orig: &OsStr,
    argv: &[OsString],
    env: &[CString],
    shell: Option<&OsStr>,
) -> i32 {
    let name = ShellName::new(shell);
    let (Some(cpath), Some(cargv)) = (cstr(path.as_os_str()), cstrs(argv)) else {
        name.error(orig, "argument contains a NUL byte");
        return EX_NOEXEC;
    };
    let errno = match nix::unistd::execve(&cpath, &cargv, env) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    if errno != Errno::ENOEXEC {
        return report_failure(&name, path, orig, errno);
    }

    let sample = read_sample(path);
    if sample.is_empty() {
        // bash: an empty executable file succeeds without running anything.
        return 0;
    }
    if is_binary(&sample) {
        name.error(
            orig,
            &format!("cannot execute binary file: {}", errno.desc()),
        );
        return EX_NOEXEC;
    }
    // A script without `#!`: `SHELL ORIG ARGV1...`, as bash runs it in a subshell.
    let shell_path = shell.unwrap_or(OsStr::new("/bin/sh"));
    let mut script_argv = vec![shell_path.to_owned(), orig.to_owned()];
    script_argv.extend(argv.iter().skip(1).cloned());
    let (Some(cshell), Some(cargv)) = (cstr(shell_path), cstrs(&script_argv)) else {
        name.error(orig, "argument contains a NUL byte");
        return EX_NOEXEC;
    };
    let errno = match nix::unistd::execve(&cshell, &cargv, env) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    name.error(
        orig,
        &format!(
            "cannot run it as a script with {}: {}",
            Path::new(shell_path).display(),
            errno.desc()
        ),
    );
    EX_NOEXEC
}

/// bash's messages and codes for an exec that failed other than by `ENOEXEC`.
fn report_failure(name: &ShellName, path: &Path, orig: &OsStr, errno: Errno) -> i32 {
    if path.is_dir() {
        name.error(orig, Errno::EISDIR.desc());
        return EX_NOEXEC;
    }
    if errno == Errno::ENOENT {
        let sample = read_sample(path);
        if let Some(interp) = interpreter(&sample) {
            name.error(
                orig,
                &format!("{interp}: bad interpreter: {}", errno.desc()),
            );
            return EX_NOEXEC;
        }
        name.error(orig, errno.desc());
        return 127;
    }
    name.error(orig, errno.desc());
    EX_NOEXEC
}

fn read_sample(path: &Path) -> Vec<u8> {
    let mut buf = Vec::with_capacity(SAMPLE);
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.take(SAMPLE as u64).read_to_end(&mut buf);
    }
    buf
}

/// bash's `check_binary_file`: an ELF header, or a NUL before the end of the first line
/// (the first two lines after `#!`).
fn is_binary(sample: &[u8]) -> bool {
    if sample.starts_with(b"\x7fELF") {
        return true;
    }
    let mut lines = if sample.starts_with(b"#!") { 2 } else { 1 };
    for &c in sample {
        if c == b'\n' {
            lines -= 1;
            if lines == 0 {
                return false;
            }
        }
        if c == 0 {
            return true;
        }
    }
    false
}

/// The interpreter named by a `#!` line.
fn interpreter(sample: &[u8]) -> Option<String> {
    let line = sample.strip_prefix(b"#!")?;
    let line = line.split(|&c| c == b'\n').next()?;
    let word = line
        .split(|&c| c == b' ' || c == b'\t')
        .find(|w| !w.is_empty())?;
    Some(String::from_utf8_lossy(word).into_owned())
}

fn cstr(s: &OsStr) -> Option<CString> {
    CString::new(s.as_bytes()).ok()
}

fn cstrs(v: &[OsString]) -> Option<Vec<CString>> {
    v.iter().map(|s| cstr(s)).collect()
}

/// Error lines start with the calling shell's name, as the shell's own would.
struct ShellName(String);

impl ShellName {
    fn new(shell: Option<&OsStr>) -> Self {
        let name = shell
            .and_then(|s| Path::new(s).file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "execgate-execve-wrapper".into());
        ShellName(name)
    }

    fn error(&self, orig: &OsStr, what: &str) {
        eprintln!("{}: {}: {what}", self.0, Path::new(orig).display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_detection_follows_bash() {
        assert!(is_binary(b"\x7fELF\x02\x01"));
        assert!(is_binary(b"abc\0def\n"));
        assert!(!is_binary(b"echo hi\n\0\0"));
        assert!(!is_binary(b"echo hi"));
        assert!(is_binary(b"#!/bin/x\nab\0\n"));
        assert!(!is_binary(b"#!/bin/x\nab\ncd\0"));
    }

    #[test]
    fn interpreter_is_the_first_word_after_the_hash_bang() {
        assert_eq!(
            interpreter(b"#! /no/such -x\nrest").as_deref(),
            Some("/no/such")
        );
        assert_eq!(interpreter(b"#!/bin/sh"), Some("/bin/sh".into()));
        assert_eq!(interpreter(b"echo"), None);
    }
}

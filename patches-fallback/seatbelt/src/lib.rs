//! The macOS sandbox of the patched-shell path: a Seatbelt profile (SBPL) and the
//! `sandbox-exec` command line that runs the shell under it.
//!
//! Pure text: no syscalls, no file system access, nothing macOS-only, so it is built and
//! unit-tested on Linux. Paths never go into the profile text: each is a `-D NAME=PATH`
//! parameter the profile names with `(param "NAME")`, so no path can change the
//! profile's meaning. Seatbelt matches resolved paths (`/tmp` is `/private/tmp` on
//! macOS): the caller passes canonical paths.
//!
//! Modes, as on Linux (DESIGN.md, "What the sandbox must hold"):
//! - read-only: read everything, write nowhere but the terminal and `/dev/null`;
//! - workspace-write: also write under the given roots (the cwd among them) and the
//!   temporary dirs, with each root's `.git` kept read-only;
//! - network on or off; off still allows `AF_UNIX` sockets, which the exec wrapper needs
//!   to reach the supervisor.

#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The only `sandbox-exec` to run: a PATH lookup could be hijacked.
pub const SANDBOX_EXEC: &str = "/usr/bin/sandbox-exec";

/// Where processes may write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileAccess {
    /// Nowhere (but `/dev/null` and the terminal).
    ReadOnly,
    /// Under each of `roots` (absolute; put the cwd here) except its `.git`, and in the
    /// temporary dirs (`/private/tmp`, `/private/var/tmp`, and `tmpdir`, the
    /// session's `$TMPDIR`, when given).
    WorkspaceWrite {
        roots: Vec<PathBuf>,
        tmpdir: Option<PathBuf>,
    },
}

/// What the sandbox allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeatbeltPolicy {
    pub files: FileAccess,
    pub network: bool,
}

/// A profile: the SBPL text and the parameters it refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub text: String,
    pub params: Vec<(String, PathBuf)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeatbeltError {
    #[error("seatbelt path {0:?} is not absolute")]
    RelativePath(PathBuf),
    #[error("seatbelt path {0:?} contains a NUL byte")]
    NulInPath(PathBuf),
}

/// What every profile has: deny by default; processes, reading and the basics a shell
/// and its programs need.
const BASE: &str = r##"(version 1)
(deny default)

; processes: the shell forks and execs; signals stay inside the sandbox
(allow process-fork)
(allow process-exec)
(allow signal (target same-sandbox))
(allow process-info* (target same-sandbox))

; reading is allowed everywhere; writing is the mode's business
(allow file-read*)
(allow file-write-data
  (require-all (path "/dev/null") (vnode-type CHARACTER-DEVICE)))
(allow file-write* file-ioctl
  (literal "/dev/tty")
  (regex #"^/dev/ttys[0-9]+$"))
(allow pseudo-tty)

; what libc, locale and terminals need
(allow sysctl-read)
(allow mach-lookup
  (global-name "com.apple.system.opendirectoryd.libinfo")
  (global-name "com.apple.system.notification_center")
  (global-name "com.apple.system.logger"))
(allow ipc-posix-sem)
(allow ipc-posix-shm-read*)

; AF_UNIX sockets, with or without network: the exec wrapper reaches the
; supervisor over an inherited one and makes a socketpair per exec
(allow system-socket (socket-domain AF_UNIX))
(allow network-outbound (remote unix-socket))
"##;

const NETWORK: &str = r#"
; network on
(allow network-outbound)
(allow network-inbound)
(allow system-socket)
(allow mach-lookup
  (global-name "com.apple.dnssd.service")
  (global-name "com.apple.SystemConfiguration.configd")
  (global-name "com.apple.trustd.agent"))
"#;

impl SeatbeltPolicy {
    /// The profile for this policy.
    pub fn profile(&self) -> Result<Profile, SeatbeltError> {
        let mut text = String::from(BASE);
        let mut params = Vec::new();
        if let FileAccess::WorkspaceWrite { roots, tmpdir } = &self.files {
            let mut writable: Vec<(PathBuf, bool)> =
                roots.iter().map(|r| (r.clone(), true)).collect();
            writable.push(("/private/tmp".into(), false));
            writable.push(("/private/var/tmp".into(), false));
            if let Some(t) = tmpdir {
                writable.push((t.clone(), false));
            }
            text.push_str("\n; workspace-write: the roots (without their .git) and tmp\n");
            text.push_str("(allow file-write*");
            for (i, (path, is_root)) in writable.iter().enumerate() {
                let name = format!("WRITABLE_ROOT_{i}");
                params.push((name.clone(), checked(path)?.to_path_buf()));
                if *is_root {
                    let git = format!("{name}_GIT");
                    params.push((git.clone(), path.join(".git")));
                    text.push_str(&format!(
                        "\n  (require-all (subpath (param \"{name}\"))\n    \
                         (require-not (subpath (param \"{git}\"))))"
                    ));
                } else {
                    text.push_str(&format!("\n  (subpath (param \"{name}\"))"));
                }
            }
            text.push_str(")\n");
        }
        if self.network {
            text.push_str(NETWORK);
        }
        Ok(Profile { text, params })
    }

    /// `sandbox-exec`'s arguments (after [`SANDBOX_EXEC`] itself) to run `program`.
    pub fn sandbox_exec_args(&self, program: &[OsString]) -> Result<Vec<OsString>, SeatbeltError> {
        let profile = self.profile()?;
        let mut args: Vec<OsString> = vec!["-p".into(), profile.text.into()];
        for (name, path) in profile.params {
            let mut d = OsString::from(format!("-D{name}="));
            d.push(path.as_os_str());
            args.push(d);
        }
        args.push("--".into());
        args.extend(program.iter().cloned());
        Ok(args)
    }
}

fn checked(path: &Path) -> Result<&Path, SeatbeltError> {
    if !path.is_absolute() {
        return Err(SeatbeltError::RelativePath(path.into()));
    }
    if path.as_os_str().as_bytes().contains(&0) {
        return Err(SeatbeltError::NulInPath(path.into()));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace(network: bool) -> SeatbeltPolicy {
        SeatbeltPolicy {
            files: FileAccess::WorkspaceWrite {
                roots: vec!["/Users/me/project".into(), "/Users/me/other \"x\"".into()],
                tmpdir: Some("/private/var/folders/ab/T".into()),
            },
            network,
        }
    }

    /// Parentheses balance outside strings and comments: the text is one s-expression
    /// list per form.
    fn balanced(text: &str) -> bool {
        let mut depth = 0i32;
        for line in text.lines() {
            let mut in_str = false;
            for c in line.chars() {
                match c {
                    '"' => in_str = !in_str,
                    ';' if !in_str => break,
                    '(' if !in_str => depth += 1,
                    ')' if !in_str => depth -= 1,
                    _ => {}
                }
                if depth < 0 {
                    return false;
                }
            }
        }
        depth == 0
    }

    #[test]
    fn read_only_writes_nowhere_and_has_no_network() {
        let p = SeatbeltPolicy {
            files: FileAccess::ReadOnly,
            network: false,
        }
        .profile()
        .unwrap();
        assert!(p.text.starts_with("(version 1)\n(deny default)\n"));
        assert!(p.text.contains("(allow file-read*)"));
        assert!(
            !p.text
                .contains("(allow file-write*\n  (require-all (subpath")
        );
        assert!(!p.text.contains("(allow network-outbound)"));
        assert!(
            p.text
                .contains("(allow network-outbound (remote unix-socket))")
        );
        assert!(p.params.is_empty());
        assert!(balanced(&p.text), "{}", p.text);
    }

    #[test]
    fn workspace_write_allows_the_roots_but_not_their_git_nor_anything_else() {
        let p = workspace(false).profile().unwrap();
        let names: Vec<&str> = p.params.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "WRITABLE_ROOT_0",
                "WRITABLE_ROOT_0_GIT",
                "WRITABLE_ROOT_1",
                "WRITABLE_ROOT_1_GIT",
                "WRITABLE_ROOT_2",
                "WRITABLE_ROOT_3",
                "WRITABLE_ROOT_4",
            ]
        );
        assert_eq!(p.params[1].1, Path::new("/Users/me/project/.git"));
        assert_eq!(p.params[4].1, Path::new("/private/tmp"));
        assert_eq!(p.params[6].1, Path::new("/private/var/folders/ab/T"));
        assert!(p.text.contains(
            "(require-all (subpath (param \"WRITABLE_ROOT_0\"))\n    \
             (require-not (subpath (param \"WRITABLE_ROOT_0_GIT\"))))"
        ));
        // Paths are parameters only: a quote in a path cannot reach the text.
        assert!(!p.text.contains("/Users/me"), "{}", p.text);
        assert!(balanced(&p.text), "{}", p.text);
    }

    #[test]
    fn network_on_adds_outbound_inbound_and_sockets() {
        let off = workspace(false).profile().unwrap().text;
        let on = workspace(true).profile().unwrap().text;
        assert!(on.starts_with(&off));
        for rule in [
            "(allow network-outbound)",
            "(allow network-inbound)",
            "(allow system-socket)",
        ] {
            assert!(on.contains(rule) && !off.contains(rule), "{rule}");
        }
        assert!(balanced(&on));
    }

    #[test]
    fn sandbox_exec_args_put_the_profile_params_and_program_in_order() {
        let args = workspace(false)
            .sandbox_exec_args(&["/opt/patched/bash".into(), "-c".into(), "ls".into()])
            .unwrap();
        assert_eq!(args[0], "-p");
        assert!(args[1].to_str().unwrap().starts_with("(version 1)"));
        assert_eq!(args[2], "-DWRITABLE_ROOT_0=/Users/me/project");
        assert_eq!(args[5], "-DWRITABLE_ROOT_1_GIT=/Users/me/other \"x\"/.git");
        let dash = args.iter().position(|a| a == "--").unwrap();
        assert_eq!(&args[dash + 1..], ["/opt/patched/bash", "-c", "ls"]);
        assert_eq!(dash, 2 + 7);
    }

    #[test]
    fn relative_or_nul_paths_are_refused() {
        let rel = SeatbeltPolicy {
            files: FileAccess::WorkspaceWrite {
                roots: vec!["project".into()],
                tmpdir: None,
            },
            network: false,
        };
        assert_eq!(
            rel.profile().unwrap_err(),
            SeatbeltError::RelativePath("project".into())
        );
        let nul = SeatbeltPolicy {
            files: FileAccess::WorkspaceWrite {
                roots: vec![],
                tmpdir: Some(PathBuf::from(std::ffi::OsString::from(
                    "/tmp/a\0b".to_string(),
                ))),
            },
            network: false,
        };
        assert!(matches!(
            nul.profile().unwrap_err(),
            SeatbeltError::NulInPath(_)
        ));
    }

    #[test]
    fn the_same_policy_gives_the_same_text() {
        assert_eq!(workspace(true).profile(), workspace(true).profile());
    }
}

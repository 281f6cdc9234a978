//! Where the patched-shell backend's pieces are: a patched bash (and zsh) built by
//! `patches-fallback/build-shells`, and the `execgate-execve-wrapper` binary.
//!
//! Only looks at files; runs nothing. The search order, first hit wins:
//!
//! - bash: `--patched-bash PATH` (the caller's `explicit`), `$EXECGATE_PATCHED_BASH`,
//!   `$EXECGATE_PATCHED_SHELLS/bin/bash`, then `../libexec/execgate/bash` next to the
//!   running binary (an installed layout). zsh the same with `EXECGATE_PATCHED_ZSH`.
//! - the wrapper: `$EXECGATE_EXECVE_WRAPPER`, then `$EXECGATE_PATCHED_SHELLS/bin/`
//!   (`build-shells` links it statically there, beside the shells), then
//!   `execgate-execve-wrapper` in the running binary's directory (a cargo build puts both
//!   in `target/<profile>/`), then `../libexec/execgate/execgate-execve-wrapper` next to it.
//!
//! An explicit path or variable that names nothing usable is reported as such; the
//! search does not silently fall through to another shell.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The variable naming the patched bash.
pub const BASH_ENV: &str = "EXECGATE_PATCHED_BASH";
/// The variable naming the patched zsh.
pub const ZSH_ENV: &str = "EXECGATE_PATCHED_ZSH";
/// The variable naming a `build-shells` cache directory (its `bin/` holds the shells).
pub const SHELLS_ENV: &str = "EXECGATE_PATCHED_SHELLS";
/// The variable naming the wrapper binary.
pub const WRAPPER_ENV: &str = "EXECGATE_EXECVE_WRAPPER";
/// The wrapper binary's file name.
pub const WRAPPER_NAME: &str = "execgate-execve-wrapper";

/// What was found, and where it was looked for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchedShell {
    pub bash: Found,
    pub zsh: Found,
    pub wrapper: Found,
}

/// One piece: its path if found, and every place tried (in order).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Found {
    pub path: Option<PathBuf>,
    pub searched: Vec<String>,
}

impl Found {
    /// `(how it was named, path, named by the user)`, in order.
    fn search(candidates: Vec<(String, PathBuf, bool)>) -> Found {
        let mut searched = Vec::new();
        for (how, path, named) in candidates {
            searched.push(format!("{how} {}", path.display()));
            if executable(&path) {
                return Found {
                    path: Some(path),
                    searched,
                };
            }
            // A path the user named and that is not there ends the search: say so
            // rather than quietly using something else.
            if named {
                return Found {
                    path: None,
                    searched,
                };
            }
        }
        Found {
            path: None,
            searched,
        }
    }

    /// `not found (looked at: ...)`, for messages.
    pub fn describe_missing(&self) -> String {
        if self.searched.is_empty() {
            "not found (nowhere to look)".to_owned()
        } else {
            format!("not found (looked at: {})", self.searched.join("; "))
        }
    }
}

fn executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Looks for the pieces (see the module docs for the order). `explicit_bash` is
/// `--patched-bash`.
pub fn locate(explicit_bash: Option<&Path>) -> PatchedShell {
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf));
    let shell = |name: &str, var: &str, explicit: Option<&Path>| {
        let mut candidates = Vec::new();
        if let Some(p) = explicit {
            candidates.push(("--patched-bash".to_owned(), p.to_path_buf(), true));
        } else if let Some(p) = env_path(var) {
            candidates.push((format!("${var}"), p, true));
        } else if let Some(dir) = env_path(SHELLS_ENV) {
            candidates.push((
                format!("${SHELLS_ENV}/bin:"),
                dir.join("bin").join(name),
                true,
            ));
        } else if let Some(dir) = &exe_dir {
            candidates.push((
                "next to execgate:".to_owned(),
                dir.join("../libexec/execgate").join(name),
                false,
            ));
        }
        Found::search(candidates)
    };
    let wrapper = {
        let mut candidates = Vec::new();
        if let Some(p) = env_path(WRAPPER_ENV) {
            candidates.push((format!("${WRAPPER_ENV}"), p, true));
        } else {
            // The one build-shells linked statically beside the shells it built.
            if let Some(kit) = env_path(SHELLS_ENV) {
                candidates.push((
                    format!("${SHELLS_ENV}/bin:"),
                    kit.join("bin").join(WRAPPER_NAME),
                    false,
                ));
            }
            if let Some(dir) = &exe_dir {
                candidates.push((
                    "next to execgate:".to_owned(),
                    dir.join(WRAPPER_NAME),
                    false,
                ));
                candidates.push((
                    "next to execgate:".to_owned(),
                    dir.join("../libexec/execgate").join(WRAPPER_NAME),
                    false,
                ));
            }
        }
        Found::search(candidates)
    };
    PatchedShell {
        bash: shell("bash", BASH_ENV, explicit_bash),
        zsh: shell("zsh", ZSH_ENV, None),
        wrapper,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_path_that_is_missing_is_not_replaced_by_another() {
        let found = Found::search(vec![
            (
                "--patched-bash".into(),
                PathBuf::from("/no/such/bash"),
                true,
            ),
            ("next to execgate:".into(), PathBuf::from("/bin/sh"), false),
        ]);
        assert_eq!(found.path, None);
        assert!(
            found
                .describe_missing()
                .contains("--patched-bash /no/such/bash")
        );
    }

    #[test]
    fn the_first_executable_candidate_wins() {
        let found = Found::search(vec![
            (
                "next to execgate:".into(),
                PathBuf::from("/no/such/wrapper"),
                false,
            ),
            ("next to execgate:".into(), PathBuf::from("/bin/sh"), false),
        ]);
        assert_eq!(found.path, Some(PathBuf::from("/bin/sh")));
        assert_eq!(found.searched.len(), 2);
    }
}

//! User namespaces: whether this process can create one (a sandbox may use it for
//! network isolation), with the two knobs that commonly forbid it.

use serde::{Deserialize, Serialize};

use crate::detect::How;
use crate::process::throwaway as child;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserNamespaces {
    /// `unshare(CLONE_NEWUSER)` succeeded in a forked child.
    pub available: bool,
    /// Debian's `/proc/sys/kernel/unprivileged_userns_clone` (absent elsewhere).
    pub unprivileged_userns_clone: Option<bool>,
    /// `/proc/sys/user/max_user_namespaces` (0 forbids them).
    pub max_user_namespaces: Option<u64>,
    pub how: How,
    pub detail: String,
}

/// The child: `unshare(CLONE_NEWUSER)`, reporting errno.
fn unshare_probe(report: &mut [i32; 1]) {
    // SAFETY: integer argument; only in the forked, single-threaded probe child.
    if unsafe { libc::unshare(libc::CLONE_NEWUSER) } != 0 {
        report[0] = child::errno();
    }
}

fn read_number(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

pub(crate) fn detect() -> UserNamespaces {
    let (available, detail) = match child::run(unshare_probe) {
        Ok([0]) => (true, "unshare(CLONE_NEWUSER) succeeded".to_owned()),
        Ok([e]) => (
            false,
            format!(
                "unshare(CLONE_NEWUSER): {}",
                crate::detect::errno_name_raw(e)
            ),
        ),
        Err(e) => (false, format!("probe child: {e}")),
    };
    UserNamespaces {
        available,
        unprivileged_userns_clone: read_number("/proc/sys/kernel/unprivileged_userns_clone")
            .map(|v| v != 0),
        max_user_namespaces: read_number("/proc/sys/user/max_user_namespaces"),
        how: How::Probe,
        detail,
    }
}

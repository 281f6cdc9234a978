//! Whether a sandboxed child can empty its capability sets ([`crate::capabilities::DropAll`]),
//! tried the way a session does it, in a throwaway child: with the bounding set when this
//! process holds `CAP_SETPCAP`, else without (the bounding set then binds nothing: the
//! child holds no capability, and `NO_NEW_PRIVS` keeps exec from granting one; a session
//! in its own user namespace still empties it there).

use crate::capabilities::DropAll;
use crate::detect::{Feature, KernelVersion};
use crate::process::throwaway as child;

/// `PR_CAP_AMBIENT` (4.3) is the newest call of the drop.
pub const CAPABILITY_DROP_SINCE: KernelVersion = KernelVersion::new(4, 3, 0);

fn probe_with_bounding(report: &mut [i32; 2]) {
    probe(report, DropAll::with_fallback(true));
}

fn probe_without_bounding(report: &mut [i32; 2]) {
    probe(report, DropAll::with_fallback(false));
}

fn probe(report: &mut [i32; 2], drop: DropAll) {
    if let Err(e) = drop.apply_in_child() {
        report[0] = e.raw_os_error().unwrap_or(libc::EIO);
        return;
    }
    let mut left = crate::capabilities::leftover_in_child();
    if !drop.bounding() {
        left &= !8;
    }
    report[1] = left;
}

pub(crate) fn detect(cap_setpcap: bool) -> Feature {
    let since = CAPABILITY_DROP_SINCE;
    let (probe, sets): (fn(&mut [i32; 2]), &str) = if cap_setpcap {
        (
            probe_with_bounding,
            "bounding, ambient, inheritable, permitted and effective",
        )
    } else {
        (
            probe_without_bounding,
            "ambient, inheritable, permitted and effective (no CAP_SETPCAP: the bounding \
             set stays, emptied only inside a user namespace of the session's own)",
        )
    };
    match child::run(probe) {
        Ok([0, 0]) => Feature::probed(true, since, format!("emptied {sets} in a child")),
        Ok([0, left]) => Feature::probed(
            false,
            since,
            format!(
                "after the drop a set still holds something (mask {left:#x}: 1 eff, 2 prm, 4 inh, 8 bnd, 16 amb)"
            ),
        ),
        Ok([errno, _]) => Feature::probed(
            false,
            since,
            format!("dropping {sets}: {}", crate::detect::errno_name_raw(errno)),
        ),
        Err(e) => Feature::probed(false, since, format!("probe child: {e}")),
    }
}

pub(crate) fn unknown() -> Feature {
    Feature::probed(false, CAPABILITY_DROP_SINCE, "not reported")
}

//! Seccomp user notification and its extensions: `SECCOMP_RET_USER_NOTIF` (5.0),
//! `SECCOMP_USER_NOTIF_FLAG_CONTINUE` (5.5), `SECCOMP_IOCTL_NOTIF_ADDFD` (5.9) and
//! `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV` (5.19) and `SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP`
//! (6.6: caller and supervisor hand one CPU to each other instead of waking another).
//!
//! The action is asked for with `SECCOMP_GET_ACTION_AVAIL`, which has no side effect.
//! The rest needs a listener fd, and creating one installs a filter for good, so that
//! part runs in a forked child ([`crate::process::throwaway`]): it sets NO_NEW_PRIVS, installs an
//! allow-everything filter with `NEW_LISTENER | WAIT_KILLABLE_RECV` (EINVAL before 5.19:
//! then again without the new flag), and sends two requests for a notification id that
//! does not exist. The kernel validates the request before it looks the id up, so a
//! kernel that knows the flag or ioctl answers `ENOENT` and an older one `EINVAL`. Setting the
//! listener's sync wake-up flag has no effect beyond that listener.

use std::io;

use crate::detect::{Feature, How, KernelVersion};
use crate::process::throwaway as child;

pub const USER_NOTIF_SINCE: KernelVersion = KernelVersion::new(5, 0, 0);
pub const CONTINUE_SINCE: KernelVersion = KernelVersion::new(5, 5, 0);
pub const ADDFD_SINCE: KernelVersion = KernelVersion::new(5, 9, 0);
pub const WAIT_KILLABLE_RECV_SINCE: KernelVersion = KernelVersion::new(5, 19, 0);
pub const SYNC_WAKE_UP_SINCE: KernelVersion = KernelVersion::new(6, 6, 0);

/// `SECCOMP_IOCTL_NOTIF_SET_FLAGS`: `SECCOMP_IOW(4, __u64)` (not in the libc crate).
const NOTIF_SET_FLAGS: libc::Ioctl = 0x4008_2104;
/// `SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP`.
const SYNC_WAKE_UP: libc::c_ulong = 1;

/// The sizes `SECCOMP_GET_NOTIF_SIZES` reports (5.0+): what the kernel's notification,
/// response and data structures measure, for forward compatibility of the listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NotifSizes {
    pub seccomp_notif: u16,
    pub seccomp_notif_resp: u16,
    pub seccomp_data: u16,
}

/// `seccomp(SECCOMP_GET_ACTION_AVAIL, 0, &SECCOMP_RET_USER_NOTIF)`.
fn action_avail(action: u32) -> io::Result<()> {
    // SAFETY: the kernel reads one u32 through the pointer, which points to `action`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_GET_ACTION_AVAIL,
            0,
            &action as *const u32,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `seccomp(SECCOMP_GET_NOTIF_SIZES, 0, &sizes)`.
fn notif_sizes() -> io::Result<NotifSizes> {
    let mut sizes = libc::seccomp_notif_sizes {
        seccomp_notif: 0,
        seccomp_notif_resp: 0,
        seccomp_data: 0,
    };
    // SAFETY: the kernel writes one seccomp_notif_sizes through the pointer, which points
    // to `sizes`, alive and writable for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_GET_NOTIF_SIZES,
            0,
            &mut sizes as *mut libc::seccomp_notif_sizes,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(NotifSizes {
        seccomp_notif: sizes.seccomp_notif,
        seccomp_notif_resp: sizes.seccomp_notif_resp,
        seccomp_data: sizes.seccomp_data,
    })
}

/// Indexes into the forked listener probe's report.
const NNP: usize = 0;
const KILLABLE: usize = 1;
const LISTENER: usize = 2;
const CONTINUE: usize = 3;
const ADDFD: usize = 4;
const SYNC: usize = 5;

/// `SECCOMP_USER_NOTIF_FLAG_CONTINUE` as the u32 the response struct holds (libc types
/// the constant as u64; its value is 1).
const CONTINUE_FLAG: u32 = 1;
const _: () = assert!(libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE == CONTINUE_FLAG as u64);

/// A notification id no kernel will have handed out to a fresh listener.
const BOGUS_ID: u64 = u64::MAX;

/// Runs in the forked child: raw syscalls only (see [`crate::process::throwaway`]).
fn listener_probe(report: &mut [i32; 6]) {
    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS) takes integer arguments only; this is the
    // throwaway child, so the irreversible bit affects nobody else.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        report[NNP] = child::errno();
        return;
    }
    let mut allow = [libc::sock_filter {
        code: 0x06, // BPF_RET | BPF_K
        jt: 0,
        jf: 0,
        k: libc::SECCOMP_RET_ALLOW,
    }];
    let prog = libc::sock_fprog {
        len: 1,
        filter: allow.as_mut_ptr(),
    };
    let flags = libc::SECCOMP_FILTER_FLAG_NEW_LISTENER;
    let mut fd = install_filter(flags | libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV, &prog);
    if fd < 0 {
        report[KILLABLE] = child::errno();
        fd = install_filter(flags, &prog);
    }
    if fd < 0 {
        report[LISTENER] = child::errno();
        return;
    }
    let resp = libc::seccomp_notif_resp {
        id: BOGUS_ID,
        val: 0,
        error: 0,
        flags: CONTINUE_FLAG,
    };
    report[CONTINUE] = ioctl_errno(
        fd,
        libc::SECCOMP_IOCTL_NOTIF_SEND,
        (&resp as *const libc::seccomp_notif_resp).cast(),
    );
    let addfd = libc::seccomp_notif_addfd {
        id: BOGUS_ID,
        flags: 0,
        srcfd: fd.unsigned_abs(),
        newfd: 0,
        newfd_flags: 0,
    };
    report[ADDFD] = ioctl_errno(
        fd,
        libc::SECCOMP_IOCTL_NOTIF_ADDFD,
        (&addfd as *const libc::seccomp_notif_addfd).cast(),
    );
    // SAFETY: the flags argument is passed by value; `fd` is the listener made above.
    report[SYNC] = if unsafe { libc::ioctl(fd, NOTIF_SET_FLAGS, SYNC_WAKE_UP) } == 0 {
        0
    } else {
        child::errno()
    };
}

/// `seccomp(SECCOMP_SET_MODE_FILTER, flags, prog)`: the listener fd, or -1 with errno.
fn install_filter(flags: libc::c_ulong, prog: &libc::sock_fprog) -> i32 {
    // SAFETY: `prog` points to a valid sock_fprog whose `filter` array outlives the call;
    // only called in the forked probe child, which exits right after.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            prog as *const libc::sock_fprog,
        )
    };
    i32::try_from(r).unwrap_or(-1)
}

/// `ioctl(fd, request, arg)`: 0 on success, else errno.
fn ioctl_errno(fd: i32, request: libc::Ioctl, arg: *const libc::c_void) -> i32 {
    // SAFETY: `arg` points to the structure `request` expects, alive for the call.
    if unsafe { libc::ioctl(fd, request, arg) } == 0 {
        0
    } else {
        child::errno()
    }
}

/// What detection found out about seccomp user notification.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Seccomp {
    /// `SECCOMP_RET_USER_NOTIF` can be used.
    pub user_notif: Feature,
    /// `SECCOMP_GET_NOTIF_SIZES`, when the kernel answers it.
    pub notif_sizes: Option<NotifSizes>,
    /// `SECCOMP_USER_NOTIF_FLAG_CONTINUE`.
    pub continue_flag: Feature,
    /// `SECCOMP_IOCTL_NOTIF_ADDFD`.
    pub addfd: Feature,
    /// `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV`.
    pub wait_killable_recv: Feature,
    /// `SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP`: faster round trips, nothing else depends on it.
    #[serde(default = "sync_wake_up_unknown")]
    pub sync_wake_up: Feature,
}

fn sync_wake_up_unknown() -> Feature {
    Feature::probed(false, SYNC_WAKE_UP_SINCE, "not reported")
}

pub(crate) fn detect(kernel: &crate::detect::Kernel) -> Seccomp {
    let user_notif = match action_avail(libc::SECCOMP_RET_USER_NOTIF) {
        Ok(()) => Feature::probed(
            true,
            USER_NOTIF_SINCE,
            "SECCOMP_GET_ACTION_AVAIL(SECCOMP_RET_USER_NOTIF) = 0",
        ),
        Err(e) => Feature::probed(
            false,
            USER_NOTIF_SINCE,
            format!(
                "SECCOMP_GET_ACTION_AVAIL(SECCOMP_RET_USER_NOTIF): {}",
                crate::detect::errno_name(&e)
            ),
        ),
    };
    let notif_sizes = notif_sizes().ok();
    if !user_notif.available {
        let why = "needs seccomp user notification";
        return Seccomp {
            user_notif,
            notif_sizes,
            continue_flag: Feature::probed(false, CONTINUE_SINCE, why),
            addfd: Feature::probed(false, ADDFD_SINCE, why),
            wait_killable_recv: Feature::probed(false, WAIT_KILLABLE_RECV_SINCE, why),
            sync_wake_up: Feature::probed(false, SYNC_WAKE_UP_SINCE, why),
        };
    }
    match child::run(listener_probe) {
        Ok(report) if report[NNP] == 0 && report[LISTENER] == 0 => Seccomp {
            user_notif,
            notif_sizes,
            wait_killable_recv: flag_feature(report[KILLABLE]),
            continue_flag: ioctl_feature(
                report[CONTINUE],
                CONTINUE_SINCE,
                "NOTIF_SEND(FLAG_CONTINUE, unknown id)",
            ),
            addfd: ioctl_feature(report[ADDFD], ADDFD_SINCE, "NOTIF_ADDFD(unknown id)"),
            sync_wake_up: Feature::probed(
                report[SYNC] == 0,
                SYNC_WAKE_UP_SINCE,
                match report[SYNC] {
                    0 => "NOTIF_SET_FLAGS(FD_SYNC_WAKE_UP) = 0".to_owned(),
                    e => format!(
                        "NOTIF_SET_FLAGS(FD_SYNC_WAKE_UP): {}",
                        crate::detect::errno_name_raw(e)
                    ),
                },
            ),
        },
        // The probe could not get a listener (a filter above us may forbid seccomp(2)):
        // the kernel version is all there is to go on.
        Ok(report) => {
            let step = if report[NNP] != 0 {
                format!(
                    "PR_SET_NO_NEW_PRIVS: {}",
                    crate::detect::errno_name_raw(report[NNP])
                )
            } else {
                format!(
                    "NEW_LISTENER filter: {}",
                    crate::detect::errno_name_raw(report[LISTENER])
                )
            };
            by_version(kernel, user_notif, notif_sizes, &step)
        }
        Err(e) => by_version(
            kernel,
            user_notif,
            notif_sizes,
            &format!("probe child: {e}"),
        ),
    }
}

fn by_version(
    kernel: &crate::detect::Kernel,
    user_notif: Feature,
    notif_sizes: Option<NotifSizes>,
    why: &str,
) -> Seccomp {
    let why = format!("listener probe failed ({why})");
    Seccomp {
        user_notif,
        notif_sizes,
        continue_flag: Feature::by_version(kernel, CONTINUE_SINCE, &why),
        addfd: Feature::by_version(kernel, ADDFD_SINCE, &why),
        wait_killable_recv: Feature::by_version(kernel, WAIT_KILLABLE_RECV_SINCE, &why),
        sync_wake_up: Feature::by_version(kernel, SYNC_WAKE_UP_SINCE, &why),
    }
}

/// Interprets the errno of installing a filter with `WAIT_KILLABLE_RECV`.
fn flag_feature(errno: i32) -> Feature {
    let what = "SECCOMP_SET_MODE_FILTER(NEW_LISTENER|WAIT_KILLABLE_RECV)";
    match errno {
        0 => Feature::probed(true, WAIT_KILLABLE_RECV_SINCE, format!("{what} succeeded")),
        e => Feature::probed(
            false,
            WAIT_KILLABLE_RECV_SINCE,
            format!("{what}: {}", crate::detect::errno_name_raw(e)),
        ),
    }
}

/// Interprets the errno of an ioctl on an unknown notification id: `ENOENT` means the
/// kernel accepted the request and only the id was wrong.
fn ioctl_feature(errno: i32, since: KernelVersion, what: &str) -> Feature {
    let detail = format!("{what}: {}", crate::detect::errno_name_raw(errno));
    Feature {
        available: errno == libc::ENOENT,
        how: How::Probe,
        detail,
        since,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_answers_are_read_as_documented() {
        assert!(ioctl_feature(libc::ENOENT, CONTINUE_SINCE, "x").available);
        assert!(!ioctl_feature(libc::EINVAL, CONTINUE_SINCE, "x").available);
        assert!(!ioctl_feature(libc::ENOTTY, ADDFD_SINCE, "x").available);
        assert!(flag_feature(0).available);
        assert!(!flag_feature(libc::EINVAL).available);
    }
}

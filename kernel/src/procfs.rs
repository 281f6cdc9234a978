//! `/proc`: the one parser of each file execgate reads there (`/proc/PID/stat`,
//! `/proc/self/status`, mountinfo, `/proc/self/cgroup`) and the small readers around them
//! (a process's parent, its cwd).
//!
//! Owns: the file formats. The parsers are pure functions over the text, so they are tested
//! on captured contents. Must never write anything under `/proc` nor decide from what it
//! reads.

use std::io;
use std::path::PathBuf;

/// The fields of `/proc/PID/stat` execgate uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Field 3: `R`, `S`, `Z`, ...
    pub state: char,
    /// Field 4.
    pub ppid: i32,
    /// Field 5.
    pub pgrp: i32,
    /// Field 22, in clock ticks since boot.
    pub start_time: u64,
}

/// Field `n` (1-based, as proc(5) numbers them) of a `/proc/PID/stat` line, for `n >= 3`:
/// the fields after the command name, which may hold spaces and parentheses.
pub fn stat_field(stat: &str, n: usize) -> Option<&str> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(n.checked_sub(3)?)
}

/// Parses a `/proc/PID/stat` line.
pub fn parse_stat(stat: &str) -> Option<Stat> {
    Some(Stat {
        state: stat_field(stat, 3)?.chars().next()?,
        ppid: stat_field(stat, 4)?.parse().ok()?,
        pgrp: stat_field(stat, 5)?.parse().ok()?,
        start_time: stat_field(stat, 22)?.parse().ok()?,
    })
}

/// Reads and parses `/proc/PID/stat` (`pid` 0 is not special: use [`read_self_stat`]).
pub fn read_stat(pid: i32) -> io::Result<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat(&text).ok_or_else(|| io::Error::other(format!("malformed /proc/{pid}/stat")))
}

/// `/proc/self/stat` as text (for fields [`Stat`] does not carry; see [`stat_field`]).
pub fn read_self_stat() -> io::Result<String> {
    std::fs::read_to_string("/proc/self/stat")
}

/// Parent pid of a process (for the audit log).
pub fn ppid_of(tid: u32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{tid}/stat")).ok()?;
    stat_field(&stat, 4)?.parse().ok()
}

/// The working directory of a process (empty when it cannot be read).
pub fn cwd_of(tid: u32) -> PathBuf {
    std::fs::read_link(format!("/proc/{tid}/cwd")).unwrap_or_default()
}

/// `/proc/PID/status` (or a thread's), parsed.
pub fn read_status(tid: u32) -> io::Result<Status> {
    std::fs::read_to_string(format!("/proc/{tid}/status")).map(|t| parse_status(&t))
}

/// `/proc/self/status`, parsed.
pub fn read_self_status() -> Status {
    std::fs::read_to_string("/proc/self/status")
        .map(|t| parse_status(&t))
        .unwrap_or_default()
}

/// The first cgroup2 mount of a mountinfo text.
pub fn cgroup2_mount(mounts: &[Mount]) -> Option<&Mount> {
    mounts.iter().find(|m| m.fs_type == "cgroup2")
}

/// The fields of `/proc/self/status` execgate uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// `Tgid:` the thread-group (process) id.
    pub tgid: Option<u32>,
    /// `Seccomp:` 0 disabled, 1 strict, 2 filter.
    pub seccomp: Option<u8>,
    /// `Seccomp_filters:` how many filters are installed (5.9+).
    pub seccomp_filters: Option<u32>,
    /// `NoNewPrivs:`.
    pub no_new_privs: Option<bool>,
    /// `CapEff:` the effective capability mask.
    pub cap_eff: Option<u64>,
}

pub fn parse_status(text: &str) -> Status {
    let mut status = Status::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key {
            "Tgid" => status.tgid = value.parse().ok(),
            "Seccomp" => status.seccomp = value.parse().ok(),
            "Seccomp_filters" => status.seccomp_filters = value.parse().ok(),
            "NoNewPrivs" => status.no_new_privs = value.parse::<u8>().ok().map(|v| v != 0),
            "CapEff" => status.cap_eff = u64::from_str_radix(value, 16).ok(),
            _ => {}
        }
    }
    status
}

/// One line of `/proc/self/mountinfo`, the fields detection uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The root of the mount within its filesystem (field 4).
    pub root: String,
    /// Where it is mounted (field 5), octal escapes decoded.
    pub mount_point: String,
    /// Per-mount options (field 6), e.g. `rw,nosuid`.
    pub options: String,
    pub fs_type: String,
    /// The filesystem's own options (the last field), e.g. cgroup2's `nsdelegate`.
    pub super_options: String,
}

impl Mount {
    /// `name` is among the filesystem's own options.
    pub fn has_super_option(&self, name: &str) -> bool {
        self.super_options.split(',').any(|o| o == name)
    }

    pub fn read_only(&self) -> bool {
        self.options.split(',').any(|o| o == "ro")
    }
}

/// Parses mountinfo lines: `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - TYPE SRC SUPER`.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fields: Vec<&str> = left.split(' ').collect();
            let mut right = right.split(' ');
            let fs_type = right.next()?;
            Some(Mount {
                root: unescape(fields.get(3)?),
                mount_point: unescape(fields.get(4)?),
                options: (*fields.get(5)?).to_owned(),
                fs_type: fs_type.to_owned(),
                super_options: right.nth(1).unwrap_or("").to_owned(),
            })
        })
        .collect()
}

/// Decodes mountinfo's `\040`-style octal escapes (space, tab, newline, backslash).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let octal = std::str::from_utf8(&bytes[i + 1..i + 4]).unwrap_or("");
            if let Ok(b) = u8::from_str_radix(octal, 8) {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The unified-hierarchy path from `/proc/self/cgroup` (the `0::/path` line).
pub fn parse_cgroup_v2_path(text: &str) -> Option<String> {
    text.lines()
        .find_map(|line| line.strip_prefix("0::"))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ppid_parses_a_comm_with_spaces_and_parens() {
        // Our own stat: comm is the test binary's name, ppid our parent's.
        let me = std::process::id();
        let expected = std::os::unix::process::parent_id();
        assert_eq!(ppid_of(me), Some(expected as i32));
    }

    const STATUS: &str = "Name:\tcat\nUmask:\t0022\nState:\tR (running)\nTgid:\t4242\n\
        CapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\nCapEff:\t000001ffffffffff\n\
        NoNewPrivs:\t0\nSeccomp:\t2\nSeccomp_filters:\t3\nSpeculation_Store_Bypass:\tthread vulnerable\n";

    #[test]
    fn status_fields() {
        let s = parse_status(STATUS);
        assert_eq!(s.tgid, Some(4242));
        assert_eq!(s.seccomp, Some(2));
        assert_eq!(s.seccomp_filters, Some(3));
        assert_eq!(s.no_new_privs, Some(false));
        assert_eq!(s.cap_eff, Some(0x1ff_ffff_ffff));
    }

    #[test]
    fn old_kernel_status_has_no_filter_count() {
        let s = parse_status("NoNewPrivs:\t1\nSeccomp:\t0\n");
        assert_eq!(s.seccomp, Some(0));
        assert_eq!(s.seccomp_filters, None);
        assert_eq!(s.no_new_privs, Some(true));
        assert_eq!(s.cap_eff, None);
    }

    // From this (hybrid cgroup) machine, shortened; plus a container-style line with an
    // optional field and an escaped space.
    const MOUNTINFO: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
25 22 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw
30 25 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:4 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:5 - cgroup2 cgroup2 rw,nsdelegate
32 30 0:28 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:6 - cgroup cgroup rw,memory
40 22 0:40 /sub /mnt/with\\040space ro,relatime master:9 - cgroup2 cgroup2 rw
";

    #[test]
    fn stat_fields_follow_a_command_with_spaces_and_parentheses() {
        let line = "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 777 0";
        let s = parse_stat(line).unwrap();
        assert_eq!((s.state, s.ppid, s.pgrp, s.start_time), ('S', 1, 4242, 777));
        assert_eq!(stat_field(line, 3), Some("S"));
        assert_eq!(parse_stat("4242 (a"), None);
    }

    #[test]
    fn mountinfo_finds_cgroup2_mounts() {
        let mounts = parse_mountinfo(MOUNTINFO);
        assert_eq!(mounts.len(), 6);
        let v2: Vec<&Mount> = mounts.iter().filter(|m| m.fs_type == "cgroup2").collect();
        assert_eq!(v2.len(), 2);
        assert_eq!(v2[0].mount_point, "/sys/fs/cgroup/unified");
        assert!(v2[0].has_super_option("nsdelegate"));
        assert!(!v2[1].has_super_option("nsdelegate"));
        assert!(!mounts[4].has_super_option("nsdelegate"));
        assert!(!v2[0].read_only());
        assert_eq!(v2[1].mount_point, "/mnt/with space");
        assert_eq!(v2[1].root, "/sub");
        assert!(v2[1].read_only());
    }

    #[test]
    fn cgroup_file_v2_line() {
        let hybrid = "12:memory:/user.slice\n1:name=systemd:/user.slice/session-1.scope\n0::/user.slice/session-1.scope\n";
        assert_eq!(
            parse_cgroup_v2_path(hybrid).as_deref(),
            Some("/user.slice/session-1.scope")
        );
        assert_eq!(parse_cgroup_v2_path("0::/\n").as_deref(), Some("/"));
        assert_eq!(parse_cgroup_v2_path("5:cpu:/\n"), None);
    }
}

//! The running kernel's release string (`uname -r`) and the version parsed from it.
//!
//! The version is only a fallback: every feature that can be probed is probed, because
//! distribution kernels backport features and containers filter syscalls. The version
//! decides only what no probe can answer without side effects.

use std::fmt;
use std::io;

use serde::{Deserialize, Serialize};

/// A kernel version `major.minor.patch`, ordered numerically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KernelVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl KernelVersion {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }

    /// Parses the leading `X.Y[.Z]` of a release string such as `5.10.0-32-cloud-amd64`,
    /// `6.12.107+deb13-cloud-amd64` or `7.3-cloud-amd64`; `None` when it has no `X.Y`.
    pub fn parse_release(release: &str) -> Option<Self> {
        let mut numbers = [0u32; 3];
        let mut count = 0;
        for part in release.trim().split('.') {
            let digits: &str = {
                let end = part
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(part.len());
                &part[..end]
            };
            if digits.is_empty() {
                break;
            }
            numbers[count] = digits.parse().ok()?;
            count += 1;
            // A part with a suffix ("0-32-cloud", "107+deb13") ends the version.
            if count == 3 || digits.len() != part.len() {
                break;
            }
        }
        (count >= 2).then(|| Self::new(numbers[0], numbers[1], numbers[2]))
    }
}

impl fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl Serialize for KernelVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for KernelVersion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse_release(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("not a kernel version: {text:?}")))
    }
}

/// What `uname(2)` says about the running kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kernel {
    /// `uname -r`, verbatim.
    pub release: String,
    /// The version parsed from `release`; `None` if it could not be parsed.
    pub version: Option<KernelVersion>,
    /// `uname -m`.
    pub machine: String,
}

impl Kernel {
    pub fn from_uname(release: String, machine: String) -> Self {
        let version = KernelVersion::parse_release(&release);
        Self {
            release,
            version,
            machine,
        }
    }

    /// True when the parsed version is at least `since` (false when unparsable).
    pub fn at_least(&self, since: KernelVersion) -> bool {
        self.version.is_some_and(|v| v >= since)
    }
}

/// Calls `uname(2)`.
pub(crate) fn uname() -> io::Result<Kernel> {
    // SAFETY: utsname is plain old data (arrays of c_char); all-zero is a valid value.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a valid, writable utsname for the duration of the call.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Kernel::from_uname(
        c_field(&uts.release),
        c_field(&uts.machine),
    ))
}

/// A NUL-terminated utsname field as a String (lossy; the kernel writes ASCII).
fn c_field(field: &[libc::c_char]) -> String {
    let bytes: Vec<u8> = field
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c.to_ne_bytes()[0])
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_debian_and_other_release_strings() {
        let cases = [
            ("5.10.0-32-cloud-amd64", Some((5, 10, 0))),
            ("6.1.0-50-cloud-amd64", Some((6, 1, 0))),
            ("6.12.107+deb13-cloud-amd64", Some((6, 12, 107))),
            ("7.2.13+deb14-cloud-amd64", Some((7, 2, 13))),
            ("7.3-cloud-amd64", Some((7, 3, 0))),
            ("6.18.44-fc-v657", Some((6, 18, 44))),
            ("5.15.0-1051-azure", Some((5, 15, 0))),
            ("4.19.0", Some((4, 19, 0))),
            ("6.8.0-rc3", Some((6, 8, 0))),
            ("5.4.0.1.2", Some((5, 4, 0))),
            ("6", None),
            ("", None),
            ("linux", None),
        ];
        for (release, want) in cases {
            let got = KernelVersion::parse_release(release).map(|v| (v.major, v.minor, v.patch));
            assert_eq!(got, want, "{release}");
        }
    }

    #[test]
    fn versions_order_numerically() {
        assert!(KernelVersion::new(5, 10, 0) < KernelVersion::new(5, 13, 0));
        assert!(KernelVersion::new(6, 9, 0) < KernelVersion::new(6, 12, 0));
        assert!(KernelVersion::new(6, 18, 44) < KernelVersion::new(7, 0, 0));
    }

    #[test]
    fn version_round_trips_through_serde() {
        let v = KernelVersion::new(6, 12, 107);
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(json, "\"6.12.107\"");
        assert_eq!(serde_json::from_str::<KernelVersion>(&json).unwrap(), v);
    }

    #[test]
    fn uname_of_this_machine_parses() {
        let k = uname().unwrap();
        assert!(k.version.is_some(), "unparsable release {:?}", k.release);
        assert!(!k.machine.is_empty());
    }
}

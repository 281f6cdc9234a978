//! `execgate-probe --json` as captured in the kernel-matrix guests (real Debian kernels
//! 5.10, 6.1, 6.12 and 7.2 under QEMU; see tests/kernel-matrix). Kernel-free checks that
//! the JSON schema still reads back, and that the backend choice and its notes follow
//! from what those kernels really reported. Refresh the fixtures by copying
//! `.cache/kernel-matrix/logs/<kernel>/doctor.json` after a matrix run.

use kernel::detect::{Features, LandlockStatus};
use kernel::remote_fd::FdHandoff;
use supervisor::backend::{Backend, choose};

fn load(label: &str) -> (Features, serde_json::Value) {
    let path = format!(
        "{}/tests/fixtures/doctor-{label}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    let features: Features = serde_json::from_value(value.clone()).unwrap();
    (features, value)
}

#[test]
fn every_guest_report_reads_back_and_recomputes_the_same_backend() {
    for label in ["5.10", "6.1", "6.12", "7.x"] {
        let (f, value) = load(label);
        // Recorded before the stdio hand-off and the memory reader were part of the
        // choice: the rest must match, and the recorded notes must all still be there.
        let recomputed = serde_json::to_value(choose(&f)).unwrap();
        for key in ["chosen", "candidates"] {
            assert_eq!(recomputed[key], value["backend"][key], "{label}: {key}");
        }
        let notes = recomputed["notes"].as_array().unwrap();
        for note in value["backend"]["notes"].as_array().unwrap() {
            assert!(notes.contains(note), "{label}: {note} not in {notes:?}");
        }
        // Bare VMs with kernels >= 5.6: the exact mechanisms.
        assert_eq!(
            choose(&f).stdio_handoff,
            Some(FdHandoff::PidfdGetfd),
            "{label}"
        );
        assert_eq!(choose(&f).chosen, Backend::Unotify, "{label}");
        // That the doctor table renders every report: src/doctor.rs's tests.
    }
}

#[test]
fn debian_5_10_lacks_landlock_killable_recv_and_cgroup_kill() {
    let (f, _) = load("5.10");
    assert_eq!(f.kernel.release, "5.10.0-32-cloud-amd64");
    assert_eq!(f.landlock.abi, None);
    assert_eq!(f.landlock.status, LandlockStatus::NotInKernel);
    assert!(!f.seccomp.wait_killable_recv.available);
    assert!(!f.cgroup.kill.available);
    assert!(f.seccomp.addfd.available && f.pidfd.getfd.available);
    let notes = choose(&f).notes.join("\n");
    assert!(notes.contains("interruptible variant"), "{notes}");
    assert!(notes.contains("no Landlock"), "{notes}");
    assert!(notes.contains("subreaper"), "{notes}");
}

#[test]
fn landlock_abi_per_kernel() {
    let abi = |label| load(label).0.landlock.abi;
    assert_eq!(abi("6.1"), Some(2));
    assert_eq!(abi("6.12"), Some(6));
    assert!(abi("7.x").is_some_and(|a| a > 6));
}

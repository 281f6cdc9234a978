#!/usr/bin/env python3
"""Checks a guest's doctor JSON against what its kernel version must report.

usage: expect.py KERNEL_VERSION LANDLOCK_BUILT < doctor.json
  KERNEL_VERSION  the version of the booted Debian package, e.g. 6.12.107
  LANDLOCK_BUILT  1 if the kernel config has CONFIG_SECURITY_LANDLOCK=y (and it was
                  enabled on the command line if the default LSM list lacked it), else 0

Prints one line "PASS detail" or "FAIL mismatch; mismatch; ...". The expectations are
written out here from the mainline history (DESIGN.md's kernel table), independently of
the features crate, so a wrong probe cannot agree with itself. Debian's stable kernels
do not backport these features; if one ever does, the mismatch says exactly which.
"""

import json
import sys

# first mainline kernel of each feature
SINCE = {
    "seccomp.user_notif": (5, 0),
    "seccomp.continue_flag": (5, 5),
    "seccomp.addfd": (5, 9),
    "seccomp.wait_killable_recv": (5, 19),
    "seccomp.sync_wake_up": (6, 6),
    "pidfd.send_signal": (5, 1),
    "pidfd.open": (5, 3),
    "pidfd.getfd": (5, 6),
    "cgroup.kill": (5, 14),
}

# (first kernel, Landlock ABI); a kernel newer than the last entry must report at least it
LANDLOCK_ABI = [
    ((5, 13), 1),
    ((5, 19), 2),
    ((6, 2), 3),
    ((6, 7), 4),
    ((6, 10), 5),
    ((6, 12), 6),
    ((6, 15), 7),
]


def expected_landlock(version, built):
    """(exact ABI or None, minimum ABI) for a kernel version."""
    if not built or version < LANDLOCK_ABI[0][0]:
        return None, None
    abi = max(a for since, a in LANDLOCK_ABI if version >= since)
    if abi == LANDLOCK_ABI[-1][1]:
        return None, abi  # the newest known ABI or later: at least that
    return abi, abi


def get(doc, dotted):
    for key in dotted.split("."):
        doc = doc[key]
    return doc


def check(version, landlock_built, doc):
    problems = []

    def want(what, got, expected):
        if got != expected:
            problems.append(f"{what}: got {got!r}, want {expected!r}")

    release = doc["kernel"]["release"]
    got_v = tuple(int(x) for x in str(doc["kernel"]["version"]).split(".")[:2])
    want("kernel.version", got_v, version[:2])
    for key, since in SINCE.items():
        want(f"{key}.available", get(doc, key + ".available"), version >= since)
        # Root, no filter above it, cgroup2 writable: every probe can answer, so none
        # may have fallen back on the kernel version.
        want(f"{key}.how", get(doc, key + ".how"), "probe")
    exact, minimum = expected_landlock(version, landlock_built)
    abi = doc["landlock"]["abi"]
    if minimum is None:
        want("landlock.abi", abi, None)
    elif exact is not None:
        want("landlock.abi", abi, exact)
    elif abi is None or abi < minimum:
        problems.append(f"landlock.abi: got {abi!r}, want >= {minimum}")
    # The guest runs as root in the root cgroup, outside any seccomp filter.
    want("ptrace.permitted", doc["ptrace"]["permitted"], True)
    want("user_namespaces.available", doc["user_namespaces"]["available"], True)
    # Root: sandboxed sessions get a PID namespace with their own /proc.
    # (with the IPC, UTS and cgroup namespaces in the same unshare, on every kernel >= 4.6)
    want("pid_namespace.available", doc["pid_namespace"]["available"], True)
    # Root holds CAP_SETPCAP: a sandboxed tree empties every capability set, bounding too
    # (PR_CAP_AMBIENT since 4.3: every kernel of the matrix).
    cap_drop = doc.get("capability_drop", {})
    want("capability_drop.available", cap_drop.get("available"), True)
    want("capability_drop.how", cap_drop.get("how"), "probe")
    if "no CAP_SETPCAP" in cap_drop.get("detail", ""):
        problems.append("capability_drop: root kept its bounding set: " + cap_drop["detail"])
    want("cgroup.v2_mount", doc["cgroup"]["v2_mount"], "/sys/fs/cgroup")
    # guest/init mounts it with nsdelegate.
    want("cgroup.nsdelegate", doc["cgroup"].get("nsdelegate"), True)
    want("process.seccomp_mode", doc["process"]["seccomp_mode"], 0)
    want("process.no_new_privs", doc["process"]["no_new_privs"], False)
    # Every kernel in the matrix (>= 5.10) has what unotify needs.
    want("backend.chosen", doc["backend"]["chosen"], "unotify")

    if problems:
        return "FAIL " + "; ".join(problems)
    landlock = f"landlock ABI {abi}" if abi is not None else "no landlock"
    optional = [
        name
        for name, key in [("ADDFD", "seccomp.addfd"), ("WAIT_KILLABLE_RECV", "seccomp.wait_killable_recv"), ("FD_SYNC_WAKE_UP", "seccomp.sync_wake_up"), ("cgroup.kill", "cgroup.kill")]
        if get(doc, key + ".available")
    ]
    return (
        f"PASS {release}: user notif, CONTINUE, pidfd_getfd; "
        f"{', '.join(optional) or 'no ADDFD/WAIT_KILLABLE_RECV/cgroup.kill'}; {landlock}; "
        f"capabilities dropped, pid/ipc/uts/cgroup namespaces; "
        f"backend {doc['backend']['chosen']}"
    )


def main():
    version = tuple(int(x) for x in sys.argv[1].split(".")[:3])
    while len(version) < 3:
        version += (0,)
    landlock_built = sys.argv[2] == "1"
    try:
        doc = json.load(sys.stdin)
        print(check(version, landlock_built, doc))
    except (ValueError, KeyError, TypeError) as e:
        print(f"FAIL doctor JSON unreadable or incomplete: {type(e).__name__}: {e}")


if __name__ == "__main__":
    main()

# Kernel-matrix scenarios, run inside the guest by runner.sh, one fresh bash each.
#
# A scenario is a shell function `scenario_NAME` listed in SCENARIOS. It reports with
#   pass DETAIL | fail DETAIL | skip REASON   (several allowed: any fail wins)
#   emit_json JSON                            (hands one-line JSON to the host)
#   host_checks DETAIL                        (the host decides, e.g. from the JSON)
# To add one: write the function, add its name to SCENARIOS. Keep each under the
# runner's time limit (KM_SCENARIO_TIMEOUT, default 180 s; TCG is ~10-50x slower than
# the host for CPU-bound work).
#
# What the guest has: /bin/bash (Debian's bash-static: a stock bash), busybox applets
# for everything else (/bin/sh, touch, sleep, wc, nc, ...), /bin/spawn (fork+execve
# helper, standing in for python's subprocess: there is no static python), the static
# execgate-probe, and /bin/execgate when the workspace builds one. Runs as root, in the
# root cgroup, loopback up, no other network. km.conf (written by the host) sets:
#   KM_LABEL KM_KVERSION        the kernel under test
#   KM_DOCTOR                   the doctor command, or "auto" (default): `execgate
#                               doctor --json` when the binary has it, else
#                               `execgate-probe --json`
#   KM_EXECGATE                 path of the execgate binary (may be absent)
#   KM_LANDLOCK_ABI             the Landlock ABI this kernel must have, or "none"
#
# The exec-path scenarios use the CLI of issues 4 and 5 as written there
# (`supervise --rules --on-prompt -- CMD`, `--sandbox read-only`, `--require-sandbox`,
# `--network`, `--timeout SECONDS`); each skips, saying why, while the binary or the flag
# it needs is missing, and starts running as soon as they exist.

SCENARIOS=(doctor allow forbidden escalate cgroup_escape prompt_deny subprocess network egress readonly timeout)

_verdict() { printf '%s %s\n' "$1" "$(printf '%s' "${*:2}" | tr '\n' ' ')" >>"$KM_OUT"; }
pass() { _verdict PASS "$@"; }
fail() { _verdict FAIL "$@"; }
skip() { _verdict SKIP "$@"; }
host_checks() { _verdict HOST "$@"; }
emit_json() { printf 'JSON %s\n' "$(printf '%s' "$1" | tr -d '\n')" >>"$KM_OUT"; }

# Shows a value in a one-line detail: newlines as \n, cut to 200 bytes.
show() { printf '%s' "$1" | head -c 200 | sed ':a;N;$!ba;s/\n/\\n/g'; }

eg() { "$KM_EXECGATE" supervise "$@"; }

need_supervise() {
    if [ ! -x "${KM_EXECGATE:-}" ]; then
        skip "no execgate binary in the image (the workspace has no 'execgate' bin target yet)"
        return 1
    fi
    if ! "$KM_EXECGATE" supervise --help >/dev/null 2>&1; then
        skip "execgate has no 'supervise' subcommand yet"
        return 1
    fi
}

need_flag() {
    need_supervise || return 1
    if ! "$KM_EXECGATE" supervise --help 2>&1 | grep -q -- "$1"; then
        skip "execgate supervise has no $1 flag yet"
        return 1
    fi
}

# doctor: the feature report, compared on the host (expect.py) with what this kernel
# version must report.
# KM_DOCTOR=auto: `execgate doctor --json` once the binary has it, else execgate-probe.
scenario_doctor() {
    local out doctor=$KM_DOCTOR
    if [ "$doctor" = auto ]; then
        doctor="/bin/execgate-probe --json"
        if [ -x "${KM_EXECGATE:-}" ] && "$KM_EXECGATE" doctor --help >/dev/null 2>&1; then
            doctor="$KM_EXECGATE doctor --json"
        fi
    fi
    if ! out=$($doctor 2>/tmp/doctor.err); then
        fail "'$doctor' failed: $(show "$(cat /tmp/doctor.err)")"
        return
    fi
    emit_json "$out"
    host_checks "ran '$doctor'"
}

# allow: commands the heuristics allow run (inside the sandbox) with their output and
# status intact.
scenario_allow() {
    need_supervise || return
    local out rc
    out=$(eg -- bash -c 'cat /proc/sys/kernel/ostype; ls /km >/dev/null; echo "rc=$?"' 2>/tmp/err)
    rc=$?
    if [ "$rc" -eq 0 ] && [ "$out" = $'Linux\nrc=0' ]; then
        pass "cat and ls ran, status 0"
    else
        fail "status $rc, stdout '$(show "$out")', stderr '$(show "$(cat /tmp/err)")'"
    fi
}

# forbidden: the program does not run, bash sees EACCES (126), the reason names the rule.
scenario_forbidden() {
    need_supervise || return
    local out
    rm -f /tmp/forbidden-marker
    out=$(eg --rules /km/rules/forbidden.rules -- bash -c 'touch /tmp/forbidden-marker; echo "rc=$?"' 2>/tmp/err)
    [ -e /tmp/forbidden-marker ] && fail "the forbidden touch ran (marker exists)"
    [ "$out" = "rc=126" ] || fail "expected rc=126, got '$(show "$out")'"
    grep -q "touch is forbidden in the kernel matrix" /tmp/err ||
        fail "stderr does not carry the rule's justification: '$(show "$(cat /tmp/err)")'"
    pass "not run, status 126, justification on stderr"
}

# escalate: a rule-allowed command runs outside the sandbox and its exact status (0, 1,
# 42, 255, death by SIGTERM = 143) becomes the paused exec's status; stdin and stdout are
# the child's own, in order.
scenario_escalate() {
    need_supervise || return
    local want out
    # Not from / (init's cwd): the workspace would be the whole filesystem, /bin/sh a file
    # the session could have written, and nothing would be escalated.
    mkdir -p /km-work && cd /km-work || return
    out=$(eg --rules /km/rules/escalate.rules -- bash -c "sh -c 'readlink /proc/self/ns/pid'" 2>/tmp/err)
    [ "$out" = "$(readlink /proc/self/ns/pid)" ] || fail "the allowed sh did not run outside the sandbox: its pid namespace '$(show "$out")', ours '$(readlink /proc/self/ns/pid)' $(show "$(cat /tmp/err)")"
    for want in 0 1 42 255; do
        out=$(eg --rules /km/rules/escalate.rules -- bash -c "sh -c 'exit $want'; echo rc=\$?" 2>/tmp/err)
        [ "$out" = "rc=$want" ] || fail "exit $want: got '$(show "$out")' stderr '$(show "$(cat /tmp/err)")'"
    done
    out=$(eg --rules /km/rules/escalate.rules -- bash -c "sh -c 'kill -TERM \$\$'; echo rc=\$?" 2>/tmp/err)
    [ "$out" = "rc=143" ] || fail "SIGTERM: got '$(show "$out")', want rc=143"
    out=$(printf 'a\nb\nc\n' | eg --rules /km/rules/escalate.rules -- bash -c 'echo before; wc -l; echo after' 2>/tmp/err)
    [ "$out" = $'before\n3\nafter' ] || fail "stdin/stdout: got '$(show "$out")'"
    pass "statuses 0 1 42 255 143 exact; piped stdin read, stdout in order"
}

# cgroup_escape: escalated code (outside the sandbox, root) writes itself into the root
# cgroup.procs. With the cgroup2 mount's nsdelegate (guest/init) and the copy's cgroup
# namespace, the kernel refuses: seen from outside, the process is still in its session's
# cgroup. (tests/attack_escalation.rs has the same attack; hosts without nsdelegate fail
# it, see docs/threat-model.md.)
scenario_cgroup_escape() {
    need_supervise || return
    local pid cg i sup
    grep -q ' - cgroup2 cgroup2 [^ ]*nsdelegate' /proc/self/mountinfo || { fail "guest/init did not mount cgroup2 with nsdelegate"; return; }
    rm -f /tmp/cg.pid /tmp/cg.pid.tmp
    mkdir -p /km-work && cd /km-work || return
    eg --rules /km/rules/escalate.rules -- bash -c "sh -c 'cat /proc/self/cgroup > /tmp/cg.before; echo 0 > /sys/fs/cgroup/cgroup.procs 2>/tmp/cg.err; echo \$\$ > /tmp/cg.pid.tmp; mv /tmp/cg.pid.tmp /tmp/cg.pid; exec sleep 60'" </dev/null >/tmp/out 2>/tmp/err &
    sup=$!
    for i in $(seq 600); do [ -s /tmp/cg.pid ] && break; sleep 0.1; done
    pid=$(cat /tmp/cg.pid 2>/dev/null)
    [ -n "$pid" ] || { kill -KILL "$sup" 2>/dev/null; fail "the escalated sh did not run: $(show "$(cat /tmp/err)")"; return; }
    # The pid is the escalated copy's (outside, in our pid namespace), about to run sleep.
    local what
    for i in $(seq 50); do
        what=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null)
        [ "$what" = "sleep 60 " ] && break
        sleep 0.1
    done
    cg=$(grep '^0::' "/proc/$pid/cgroup")
    kill -KILL "$pid" 2>/dev/null
    wait "$sup"
    case "$what" in
        "sleep 60 ") ;;
        *) fail "pid $pid is not the escalated copy (runs '$(show "$what")'): the sh was not escalated"; return ;;
    esac
    case "$cg" in
        */execgate/*session-*) pass "escalated root copy stayed in its session cgroup (${cg#0::}; its write to the root: $(show "$(cat /tmp/cg.err)"))" ;;
        *) fail "escaped: the escalated process moved to ${cg#0::} (its cgroup before, as it saw it: $(show "$(cat /tmp/cg.before)"); the write: $(show "$(cat /tmp/cg.err)"))" ;;
    esac
}

# prompt_deny: a prompt answered "deny" runs nothing and leaves nothing behind.
scenario_prompt_deny() {
    need_flag --on-prompt || return
    local out
    rm -f /tmp/prompt-marker
    out=$(eg --rules /km/rules/prompt.rules --on-prompt deny -- bash -c 'touch /tmp/prompt-marker; echo "rc=$?"' 2>/tmp/err </dev/null)
    [ -e /tmp/prompt-marker ] && fail "the denied touch ran (marker exists)"
    case "$out" in
        rc=0 | "") fail "expected a failing status, got '$(show "$out")'" ;;
    esac
    pass "denied: not run, $(show "$out")"
}

# subprocess: an exec made by a non-shell program (fork+execve, like python's
# subprocess.run) is stopped like a shell's. spawn itself is left to the heuristics
# (--on-prompt allow), so it runs inside the sandbox and its exec is decided.
scenario_subprocess() {
    need_flag --on-prompt || return
    local out
    rm -f /tmp/sub-marker
    out=$(eg --rules /km/rules/forbidden.rules --on-prompt allow -- bash -c 'spawn /bin/touch touch /tmp/sub-marker; echo "rc=$?"' 2>/tmp/err)
    [ -e /tmp/sub-marker ] && fail "spawn's forbidden exec ran (marker exists)"
    [ "$out" = "rc=127" ] || fail "expected spawn's execve to fail (rc=127), got '$(show "$out")'"
    grep -q "Permission denied" /tmp/err || fail "no EACCES from spawn's execve: '$(show "$(cat /tmp/err)")'"
    pass "fork+execve from a non-shell program denied"
}

# network: with network off, a TCP connect to a listener on 127.0.0.1 fails; with
# --network it succeeds (so the failure is the sandbox's, not the listener's).
scenario_network() {
    need_flag --network || return
    local denied allowed probe='if exec 3<>/dev/tcp/127.0.0.1/7777; then echo connected; else echo failed; fi'
    nc -ll -p 7777 -e /bin/cat &
    local listener=$!
    sleep 1
    denied=$(eg -- bash -c "$probe" 2>/tmp/err)
    allowed=$(eg --network -- bash -c "$probe" 2>/tmp/err-allowed)
    kill "$listener" 2>/dev/null
    [ "$allowed" = connected ] || fail "control with --network did not connect: '$(show "$allowed")' $(show "$(cat /tmp/err-allowed)")"
    [ "$denied" = failed ] || fail "connect with network off: '$(show "$denied")'"
    grep -q "Connection refused" /tmp/err && fail "refused by the (absent?) listener, not denied by the sandbox"
    pass "connect denied ($(show "$(cat /tmp/err)")), allowed with --network"
}

# egress: network by name. The sandboxed tree has a network namespace with only loopback;
# busybox wget reaches an allowed host (here an address named explicitly: the proxy
# refuses loopback otherwise) through the supervisor's proxy ($http_proxy), not a host
# no rule allows, and not directly (with the proxy unset, its own loopback has no server).
scenario_egress() {
    need_flag --allow-domain || return
    local srv ok denied direct
    mkdir -p /www /km-work && echo hello-egress > /www/f
    busybox httpd -f -p 127.0.0.2:8080 -h /www &
    srv=$!
    sleep 1
    cd /km-work || return
    ok=$(eg --allow-domain 127.0.0.2:8080 -- bash -c 'wget -q -O - http://127.0.0.2:8080/f' 2>/tmp/err)
    denied=$(eg --allow-domain example.com -- bash -c 'wget -q -O - http://127.0.0.2:8080/f' 2>/tmp/err2)
    direct=$(eg --allow-domain 127.0.0.2:8080 -- bash -c 'http_proxy= wget -q -O - http://127.0.0.2:8080/f' 2>/tmp/err3)
    kill "$srv" 2>/dev/null
    [ "$ok" = hello-egress ] || fail "the allowed address through the proxy: got '$(show "$ok")' $(show "$(cat /tmp/err)")"
    [ -z "$denied" ] || fail "a host no rule allows was reached: '$(show "$denied")'"
    [ -z "$direct" ] || fail "a direct connection bypassing the proxy was reached: '$(show "$direct")'"
    pass "allowed via the proxy; denied host ($(show "$(tail -c 120 /tmp/err2)")) and direct ($(show "$(tail -c 80 /tmp/err3)")) reached nothing"
}

# readonly: under --sandbox read-only a write by the sandboxed shell itself fails with
# EACCES. Without Landlock (5.10) the sandbox cannot hold that, so --require-sandbox must
# refuse to run at all.
scenario_readonly() {
    need_flag --sandbox || return
    local out rc
    mkdir -p /tmp/ro
    rm -f /tmp/ro/f
    if [ "$KM_LANDLOCK_ABI" = none ]; then
        need_flag --require-sandbox || return
        out=$(eg --sandbox read-only --require-sandbox -- bash -c 'echo x > /tmp/ro/f; echo ran' 2>/tmp/err)
        rc=$?
        [ "$rc" -ne 0 ] || fail "--require-sandbox ran without Landlock (status 0)"
        [ -e /tmp/ro/f ] && fail "the write happened"
        [ "$out" = ran ] && fail "the command ran"
        pass "no Landlock: --require-sandbox refused (status $rc: $(show "$(cat /tmp/err)"))"
    else
        out=$(eg --sandbox read-only -- bash -c 'echo x > /tmp/ro/f; echo "rc=$?"' 2>/tmp/err)
        [ -e /tmp/ro/f ] && fail "the write happened under read-only"
        [ "$out" = "rc=1" ] || fail "expected the redirection to fail (rc=1), got '$(show "$out")'"
        grep -q "Permission denied" /tmp/err || fail "no EACCES: '$(show "$(cat /tmp/err)")'"
        pass "write denied with EACCES (Landlock ABI $KM_LANDLOCK_ABI)"
    fi
}

# timeout: on expiry the whole tree dies (setsid child, SIGTERM-ignoring child, the
# shell), the status is 124, and nothing is left running or unreaped.
scenario_timeout() {
    need_flag --timeout || return
    local start rc elapsed left
    start=$(date +%s)
    eg --timeout 3 -- bash -c 'setsid sleep 1001 & (trap "" TERM; exec sleep 1002) & sleep 1003' >/dev/null 2>/tmp/err
    rc=$?
    elapsed=$(( $(date +%s) - start ))
    sleep 1
    # 1001: setsid (own session), 1002: ignores SIGTERM, 1003: the shell's foreground child
    left=$(for f in /proc/[0-9]*/cmdline; do tr '\0' ' ' <"$f" 2>/dev/null; echo; done | grep -o 'sleep 100[123]')
    [ "$rc" -eq 124 ] || fail "status $rc, want 124"
    [ "$elapsed" -le 30 ] || fail "took ${elapsed}s for a 3 s timeout"
    [ -z "$left" ] || fail "survived the timeout: $(show "$left") (1001 setsid, 1002 ignores TERM, 1003 foreground)"
    local zombies
    zombies=$(grep -l '^[0-9]* ([^)]*) Z' /proc/[0-9]*/stat 2>/dev/null | wc -l)
    [ "$zombies" -eq 0 ] || fail "$zombies zombies left"
    pass "status 124 after ${elapsed}s, no survivor, no zombie"
}

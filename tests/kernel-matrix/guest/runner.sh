#!/bin/bash
# Runs the scenarios named in $KM_SCENARIOS (default: all of $SCENARIOS from
# scenarios.sh), each in its own bash with a time limit, and writes one line per
# scenario to the results port:   RESULT <scenario> PASS|FAIL|SKIP <detail>
# plus "JSON <scenario> <one-line json>" where a scenario hands data to the host, and
# "KM_DONE" at the end (its absence tells the host the guest died).
set -u
. /km/km.conf
RESULTS=${KM_RESULTS_DEV:-/dev/ttyS1}
exec 3>"$RESULTS"
stty -F "$RESULTS" raw -echo 2>/dev/null
. /km/scenarios.sh

echo "KM_BEGIN $(uname -r)" >&3
for name in ${KM_SCENARIOS:-${SCENARIOS[*]}}; do
    out=/tmp/km-result-$name
    rm -f "$out"
    start=$(date +%s)
    # Each scenario runs in a fresh bash (no state leaks between them) under a time limit.
    KM_OUT=$out timeout -s KILL "${KM_SCENARIO_TIMEOUT:-180}" \
        bash -c '. /km/km.conf; . /km/scenarios.sh; "scenario_$1"' _ "$name" \
        >"/tmp/km-log-$name" 2>&1
    rc=$?
    secs=$(( $(date +%s) - start ))
    # A scenario may report several verdicts: any FAIL wins, else the first PASS/SKIP/HOST
    # (HOST: the host decides from the scenario's JSON).
    verdict=$(grep -m1 '^FAIL ' "$out" 2>/dev/null || grep -m1 -E '^(PASS|SKIP|HOST) ' "$out" 2>/dev/null)
    if [ -f "$out" ]; then
        grep '^JSON ' "$out" | sed "s/^JSON /JSON $name /" >&3
    fi
    if [ -n "$verdict" ]; then
        echo "RESULT $name $verdict (${secs}s)" >&3
    elif [ "$rc" -eq 137 ]; then
        echo "RESULT $name FAIL timed out after ${secs}s" >&3
    else
        echo "RESULT $name FAIL no result (exit $rc): $(tail -c 300 "/tmp/km-log-$name" | tr '\n' ' ')" >&3
    fi
    # The scenario's own output, for the console log.
    echo "--- $name (exit $rc, ${secs}s)"
    cat "/tmp/km-log-$name"
done
echo "KM_DONE" >&3

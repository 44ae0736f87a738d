#!/bin/sh
# Runs each unit test given with its n-th allocation failing (EDDY_ALLOC_FAIL=n, see
# tests/unit/alloc_fail.h), for n = 1, 1 + stride, ... until a run ends before its n-th
# allocation. A test may report failed checks (it saw an error it did not expect, which
# is what an injected out-of-memory is) and exit 1; it must not crash (signal, including
# a sanitizer's abort), hang (OOM_TIMEOUT seconds), or report a leak or other sanitizer
# error (exit status 23 from LeakSanitizer, 66 from AddressSanitizer, set below).
#
# Environment: OOM_STRIDE [1], OOM_TIMEOUT [30], OOM_SECONDS [0: no limit] per test.
set -u
stride=${OOM_STRIDE:-1}
limit=${OOM_SECONDS:-0}
timeout=${OOM_TIMEOUT:-30}
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}exitcode=66"
export LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}exitcode=23"
status=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for t in "$@"; do
    n=1 runs=0 failed_checks=0 sites=""
    start=$(date +%s)
    while :; do
        EDDY_ALLOC_FAIL=$n timeout -k 5 "$timeout" "$t" >/dev/null 2>"$log"
        rc=$?
        runs=$((runs + 1))
        if [ $rc -ne 0 ] && [ $rc -ne 1 ]; then
            echo "FAIL: $t with allocation $n failing: exit status $rc" >&2
            tail -n 40 "$log" >&2
            status=1
        fi
        [ $rc -eq 1 ] && failed_checks=$((failed_checks + 1))
        if grep -q '^alloc_fail: not reached' "$log"; then
            break
        fi
        site=$(sed -n 's/^alloc_fail: injected [0-9]* site //p' "$log")
        sites="$sites $site"
        if [ "$limit" -gt 0 ] && [ $(($(date +%s) - start)) -ge "$limit" ]; then
            echo "$t: stopped after ${limit}s at allocation $n"
            break
        fi
        n=$((n + stride))
    done
    distinct=$(echo $sites | tr ' ' '\n' | grep . | sort -u | wc -l)
    echo "$t: $runs runs, $distinct allocation sites failed, $failed_checks runs reported failed checks, $(($(date +%s) - start))s"
done
exit $status

#!/bin/sh
# SPDX-License-Identifier: MIT
# Runs each unit test given with its n-th allocation failing (EDDY_ALLOC_FAIL=n, see
# tests/unit/alloc_fail.h). A first run without a failure counts the test's allocations,
# m; then n = 1 .. OOM_FIRST each, and from there OOM_RUNS more spread evenly up to m
# (every one when m is small), ending early if a run never reaches its n-th allocation.
# A test may report failed checks and exit 1 (an injected out-of-memory is an error it
# did not expect); it must not crash (a signal, including a sanitizer's abort), hang
# (OOM_TIMEOUT seconds) or report a leak or another sanitizer error (exit status 23 from
# LeakSanitizer, 66 from AddressSanitizer, 67 from UndefinedBehaviorSanitizer, as set below:
# UBSan's own is 1, which would pass for failed checks).
#
# Environment: OOM_FIRST [50], OOM_RUNS [150], OOM_TIMEOUT [30].
set -u
first=${OOM_FIRST:-50}
spread=${OOM_RUNS:-150}
timeout=${OOM_TIMEOUT:-30}
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}exitcode=66"
export LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}exitcode=23"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}exitcode=67"
status=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for t in "$@"; do
    start=$(date +%s)
    if ! EDDY_ALLOC_FAIL=2000000000 timeout "$timeout" "$t" >/dev/null 2>"$log"; then
        echo "FAIL: $t fails without an injected failure" >&2
        status=1
        continue
    fi
    total=$(sed -n 's/^alloc_fail: not reached (\([0-9]*\) allocations)/\1/p' "$log")
    stride=$(((total - first) / spread + 1))
    [ "$stride" -lt 1 ] && stride=1
    n=1 runs=0 reported=0 sites=""
    while [ "$n" -le "$total" ]; do
        EDDY_ALLOC_FAIL=$n timeout -k 5 "$timeout" "$t" >/dev/null 2>"$log"
        rc=$?
        runs=$((runs + 1))
        if [ $rc -ne 0 ] && [ $rc -ne 1 ]; then
            echo "FAIL: $t with allocation $n failing: exit status $rc" >&2
            tail -n 40 "$log" >&2
            status=1
        fi
        [ $rc -eq 1 ] && reported=$((reported + 1))
        grep -q '^alloc_fail: not reached' "$log" && break
        sites="$sites $(sed -n 's/^alloc_fail: injected [0-9]* site //p' "$log")"
        if [ "$n" -lt "$first" ]; then
            n=$((n + 1))
        else
            n=$((n + stride))
        fi
    done
    distinct=$(echo $sites | tr ' ' '\n' | grep . | sort -u | wc -l)
    echo "$t: $total allocations, $runs runs (stride $stride after $first), $distinct" \
        "allocation sites failed, $reported runs reported failed checks, $(($(date +%s) - start)) s"
done
exit $status

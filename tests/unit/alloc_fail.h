/* SPDX-License-Identifier: MIT */
/*
 * Allocation-failure injection for the unit tests. Every unit test is linked with
 * -Wl,--wrap=malloc,calloc,realloc and tests/unit/alloc_fail.c, so each allocation
 * libeddy.a makes (and the test's own) goes through its wrappers; OpenSSL, zlib and libc,
 * shared libraries, are not affected. A failure is injected once per arming, as sqlite's
 * "fail the n-th allocation" does:
 *   - per thread: alloc_fail_arm(n) fails the n-th allocation the calling thread makes;
 *   - per process: alloc_fail_arm_process(n) fails the n-th allocation made by any thread
 *     that is not exempt (alloc_fail_exempt_thread(): a test's own client code);
 *   - from the environment: EDDY_ALLOC_FAIL=n arms the process-wide count before main(),
 *     and at exit a line on stderr says whether (and where) the failure happened:
 *     "alloc_fail: injected n site OFFSET" (in the executable,
 *     for addr2line) or "alloc_fail: not reached (m allocations)".
 *     tests/unit/oom_sweep.sh runs a test for n = 1, 2, ... that way.
 * EDDY_ALLOC_FAIL_TRACE=1 prints the stack of each failed allocation (process-wide count).
 */
#ifndef EDDY_ALLOC_FAIL_H
#define EDDY_ALLOC_FAIL_H

#include <stdbool.h>

/* Fails the n-th allocation of the calling thread from now (n > 0; 0 disarms). */
void alloc_fail_arm(long n);
/* Disarms the calling thread; true if its armed failure happened. */
bool alloc_fail_disarm(void);

/* Fails the n-th allocation made by any non-exempt thread from now (n > 0). */
void alloc_fail_arm_process(long n);
/* Disarms the process-wide count. Returns the allocations counted since it was armed;
 * *site (if not NULL) gets the caller of the failed allocation, NULL if none failed. */
long alloc_fail_disarm_process(void **site);
/* While on, the calling thread's allocations are neither counted nor failed by the
 * process-wide count. */
void alloc_fail_exempt_thread(bool on);

#endif

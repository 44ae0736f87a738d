/* SPDX-License-Identifier: MIT */
/* The wrappers behind tests/unit/alloc_fail.h. */
#include "alloc_fail.h"

#include <dlfcn.h>
#include <execinfo.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

void *__real_malloc(size_t size);
void *__real_calloc(size_t count, size_t size);
void *__real_realloc(void *ptr, size_t size);
void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t count, size_t size);
void *__wrap_realloc(void *ptr, size_t size);

static _Thread_local long thread_fail_in; /* 0: off; n: the n-th allocation from now fails */
static _Thread_local bool thread_failed;
static _Thread_local bool exempt;

static atomic_long process_target; /* 0: off */
static atomic_long process_count;  /* allocations counted since armed */
static _Atomic(void *) process_site;
static bool trace; /* EDDY_ALLOC_FAIL_TRACE=1: print the stack of the failed allocation */

static bool fail_now(void *site)
{
    if (thread_fail_in != 0 && --thread_fail_in == 0) {
        thread_failed = true;
        return true;
    }
    long target = atomic_load_explicit(&process_target, memory_order_relaxed);
    if (target == 0 || exempt)
        return false;
    if (atomic_fetch_add(&process_count, 1) + 1 != target)
        return false;
    atomic_store(&process_site, site);
    if (trace) {
        void *frames[32];
        backtrace_symbols_fd(frames, backtrace(frames, 32), 2);
    }
    return true;
}

void *__wrap_malloc(size_t size)
{
    return fail_now(__builtin_return_address(0)) ? NULL : __real_malloc(size);
}

void *__wrap_calloc(size_t count, size_t size)
{
    return fail_now(__builtin_return_address(0)) ? NULL : __real_calloc(count, size);
}

void *__wrap_realloc(void *ptr, size_t size)
{
    return fail_now(__builtin_return_address(0)) ? NULL : __real_realloc(ptr, size);
}

void alloc_fail_arm(long n)
{
    thread_fail_in = n;
    thread_failed = false;
}

bool alloc_fail_disarm(void)
{
    thread_fail_in = 0;
    return thread_failed;
}

void alloc_fail_arm_process(long n)
{
    atomic_store(&process_site, NULL);
    atomic_store(&process_count, 0);
    atomic_store(&process_target, n);
}

long alloc_fail_disarm_process(void **site)
{
    atomic_store(&process_target, 0);
    if (site != NULL)
        *site = atomic_load(&process_site);
    return atomic_load(&process_count);
}

void alloc_fail_exempt_thread(bool on)
{
    exempt = on;
}

static void report(void)
{
    long target = atomic_load(&process_target);
    void *site = NULL;
    long count = alloc_fail_disarm_process(&site);
    Dl_info info;
    if (site != NULL && dladdr(site, &info) != 0)
        /* The offset in the executable, for addr2line -e: the same in every run. */
        fprintf(stderr, "alloc_fail: injected %ld site 0x%tx\n", target,
                (char *)site - (char *)info.dli_fbase);
    else if (site != NULL)
        fprintf(stderr, "alloc_fail: injected %ld site %p\n", target, site);
    else
        fprintf(stderr, "alloc_fail: not reached (%ld allocations)\n", count);
}

__attribute__((constructor)) static void arm_from_env(void)
{
    const char *t = getenv("EDDY_ALLOC_FAIL_TRACE");
    trace = t != NULL && *t == '1';
    const char *n = getenv("EDDY_ALLOC_FAIL");
    if (n == NULL || atol(n) <= 0)
        return;
    alloc_fail_arm_process(atol(n));
    atexit(report);
}

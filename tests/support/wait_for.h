/* SPDX-License-Identifier: MIT */
/*
 * Bounded polling for unit tests: a monotonic millisecond clock, a sleep, and WAIT_FOR.
 * Static helpers: include once per test program.
 */
#ifndef EDDY_TEST_WAIT_FOR_H
#define EDDY_TEST_WAIT_FOR_H

#include <stdint.h>
#include <time.h>

static uint64_t ms_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* Polls cond every 5 ms for at most ms milliseconds; evaluates to its last value. */
#define WAIT_FOR(cond, ms)                                                                         \
    ({                                                                                             \
        uint64_t wait_end_ = ms_now() + (ms);                                                      \
        while (!(cond) && ms_now() < wait_end_)                                                    \
            sleep_ms(5);                                                                           \
        (cond);                                                                                    \
    })

#endif

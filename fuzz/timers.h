/* SPDX-License-Identifier: MIT */
/*
 * A fake monotonic clock and a timer runner for the real-time layer's session drivers
 * (fuzz_sio_session, fuzz_eio_polling), whose server loop never runs by itself
 * (fuzz/session.h), so that what waits for a timer is reached: heartbeats and ping
 * timeouts, the upgrade and connect timeouts, a long-polling GET held until the next ping,
 * the forced close of a closing session, acknowledgement timeouts.
 *
 * Every clock of the code under test (the loop's, rt/eio.c's, rt/rt.c's, the history's)
 * reads clock_gettime(CLOCK_MONOTONIC[_COARSE]), which this file replaces for the whole
 * program (the sanitizer runtime's own is a weak symbol): the monotonic clocks stand still
 * at fuzz_clock_ms and move only when a driver moves them, so an input replays exactly.
 * The other clocks (CLOCK_REALTIME: libFuzzer's time limits) are the kernel's.
 */
#ifndef EDDY_FUZZ_TIMERS_H
#define EDDY_FUZZ_TIMERS_H

#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "conn.h"
#include "fuzz.h"
#include "loop.h"

/* Far from 0, which the code under test may use for "no deadline". */
static uint64_t fuzz_clock_ms = 1000000;

int clock_gettime(clockid_t id, struct timespec *ts)
{
    if (id == CLOCK_MONOTONIC || id == CLOCK_MONOTONIC_COARSE || id == CLOCK_MONOTONIC_RAW ||
        id == CLOCK_BOOTTIME) {
        ts->tv_sec = (time_t)(fuzz_clock_ms / 1000);
        ts->tv_nsec = (long)(fuzz_clock_ms % 1000) * 1000000L;
        return 0;
    }
    return (int)syscall(SYS_clock_gettime, id, ts);
}

/* Moves the clock to now + ms and runs the loop's timers due then, with the posted and
 * deferred work they queue (on this thread, playing the loop's). */
static inline void fuzz_timers_run(eddy__loop_t *loop, uint64_t ms)
{
    eddy__loop_t *was = eddy__current_loop;
    eddy__current_loop = loop;
    fuzz_clock_ms += ms;
    eddy__loop_refresh_clock(loop);
    eddy__loop_run_timers(loop);
    eddy__loop_flush(loop);
    eddy__loop_run_pending(loop);
    eddy__current_loop = was;
}

/* Moves the clock to the loop's earliest timer (if it is later) and runs the timers due
 * then: what an idle loop does next. Nothing when no timer is set. */
static inline void fuzz_timers_next(eddy__loop_t *loop)
{
    if (loop->heap_len == 0)
        return;
    uint64_t due = loop->heap[0]->due_ms;
    fuzz_timers_run(loop, due > fuzz_clock_ms ? due - fuzz_clock_ms : 0);
}

/* The number of timers set on the loop once the server is made (the layer's periodic
 * ones): fuzz_timers_expire() leaves these. */
static size_t fuzz_timers_baseline = SIZE_MAX;

/* At the start of each input: the first time, runs what the server's setup posted to the
 * loop (timers set from outside it) and counts the timers. */
static inline void fuzz_timers_start(eddy__loop_t *loop)
{
    if (fuzz_timers_baseline != SIZE_MAX)
        return;
    eddy__loop_run_pending(loop);
    fuzz_timers_baseline = loop->heap_len;
}

/* At the end of an input, once its connections are gone: lets an hour pass, a few times
 * (an expiry may set the next timer: a ping, then its timeout, then a forced close), so
 * that every deadline passes, and checks that no timer of the input is left (each holds
 * what it names: a leftover one would fire during a later input). */
static inline void fuzz_timers_expire(eddy__loop_t *loop)
{
    for (int round = 0; round < 8 && loop->heap_len > fuzz_timers_baseline; round++)
        fuzz_timers_run(loop, 3600 * 1000);
    FUZZ_CHECK(loop->heap_len == fuzz_timers_baseline);
}

#endif

/* SPDX-License-Identifier: MIT */
/*
 * Application threads may go on calling the API while the server stops, after
 * eddy_server_start() returned and across a restart, up to eddy_server_free(): broadcasts,
 * publications and timer clears reach the worker loops, which must still exist, and the
 * deferred calls they post after the last run must run (in eddy_server_free()), not leak.
 * Each run also serves two HTTP requests, so loop 0 hands connections to the others: a
 * run with fewer loops than the last must not hand any to a loop that no longer runs.
 * AddressSanitizer and ThreadSanitizer (make test SANITIZE=...) watch the loops' memory and
 * loop_count; the counts below fail without them.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>
#include <unistd.h>

#include "eddy.h"
#include "test.h"
#include "test_server.h"

#define CALLERS 2
#define RUNS    6

static atomic_bool quit;
static atomic_long deferred;     /* eddy_defer() calls that were accepted */
static atomic_long deferred_ran; /* and ran */
static int start_rc[RUNS];
static int served[RUNS];

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void count_ran(eddy_server_t *srv, void *arg)
{
    (void)srv;
    (void)arg;
    atomic_fetch_add(&deferred_ran, 1);
}

static void *caller(void *arg)
{
    (void)arg;
    /* A timer id routed to loop 1 (the low bits name the loop); no such timer exists. */
    uint64_t foreign_timer = ((uint64_t)12345 << 8) | 1;
    while (!atomic_load(&quit)) {
        eddy_broadcast(test_server, "x", 1, EDDY_WS_OPCODE_TEXT, 0);
        eddy_publish(test_server, "room", "y", 1, EDDY_WS_OPCODE_TEXT, 0);
        eddy_timer_clear(test_server, foreign_timer);
        if (eddy_defer(test_server, count_ran, NULL) == 0)
            atomic_fetch_add(&deferred, 1);
        sched_yield();
    }
    return NULL;
}

static atomic_bool early_returned;

static void *run_early(void *arg)
{
    test_run_server(arg);
    atomic_store(&early_returned, true);
    return NULL;
}

/* Asks a stop, then starts test_server: true if the start returned 0 within 5 s. */
static bool stop_ends_next_start(void)
{
    eddy_server_stop(test_server);
    atomic_store(&early_returned, false);
    int early_rc = -1;
    pthread_t early;
    pthread_create(&early, NULL, run_early, &early_rc);
    int waited_ms = 0;
    while (!atomic_load(&early_returned) && waited_ms < 5000) {
        sleep_ms(10);
        waited_ms += 10;
    }
    if (!atomic_load(&early_returned))
        eddy_server_stop(test_server); /* so that it can be joined */
    pthread_join(early, NULL);
    return waited_ms < 5000 && early_rc == 0;
}

/* Regression: the stop flagged only the loops that existed, and a start that made more
 * (worker_num grew, as the default core count does on a first start) never returned. */
static void test_stop_before_start_with_more_loops(void)
{
    if (!test_server_new("error"))
        return;
    CHECK_EQ_INT(eddy_server_set(test_server, "worker_num", "4"), 0);
    CHECK(stop_ends_next_start());
    /* The flag was spent: the next start runs until it is stopped. */
    int rc = -1;
    pthread_t loop_thread;
    test_start_server(&loop_thread, &rc);
    CHECK(test_http_answered(eddy_server_port(test_server)));
    eddy_server_stop(test_server);
    pthread_join(loop_thread, NULL);
    CHECK_EQ_INT(rc, 0);
    eddy_server_free(test_server);
}

static void test_callers_outlive_runs(void)
{
    if (!test_server_new("error"))
        return;
    pthread_t callers[CALLERS];
    for (int i = 0; i < CALLERS; i++)
        pthread_create(&callers[i], NULL, caller, NULL);
    for (int run = 0; run < RUNS; run++) {
        /* Alternating widths: a run may have more or fewer loops than the last one. */
        CHECK_EQ_INT(eddy_server_set(test_server, "worker_num", run % 2 ? "2" : "3"), 0);
        pthread_t loop_thread;
        test_start_server(&loop_thread, &start_rc[run]);
        for (int i = 0; i < 2; i++)
            served[run] += test_http_answered(eddy_server_port(test_server));
        sleep_ms(20);
        eddy_server_stop(test_server);
        pthread_join(loop_thread, NULL);
        sleep_ms(20); /* the callers go on with the server stopped */
    }
    /* A stop asked while the server is not running ends the next start at once. */
    CHECK(stop_ends_next_start());
    atomic_store(&quit, true);
    for (int i = 0; i < CALLERS; i++)
        pthread_join(callers[i], NULL);
    eddy_server_free(test_server);
    for (int run = 0; run < RUNS; run++) {
        CHECK_EQ_INT(start_rc[run], 0);
        CHECK_EQ_INT(served[run], 2);
    }
    CHECK(atomic_load(&deferred) > 0);
    CHECK_EQ_INT(atomic_load(&deferred_ran), atomic_load(&deferred));
}

int main(void)
{
    test_stop_before_start_with_more_loops();
    test_callers_outlive_runs();
    return test_report("test_stop_race");
}

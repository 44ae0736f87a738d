/* SPDX-License-Identifier: MIT */
/*
 * Work posted to a loop from other threads (eddy_defer() from application threads, here)
 * always wakes it: bursts from two threads race with the loop taking its inbox, and after
 * each burst a single post must run while the loop sleeps. A lost wakeup shows as a post
 * that does not run within the deadline (the loop sleeps with it queued).
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>

#include "eddy.h"
#include "test.h"
#include "test_server.h"

#define POSTERS  2
#define BURST    64
#define ROUNDS   3000
#define DEADLINE 5.0 /* seconds: a liveness bound, far above any real delay */

static atomic_long ran;
static atomic_int round_started;
static atomic_int posters_done;
static atomic_int defer_failures;
static int start_rc;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void count_run(eddy_server_t *srv, void *arg)
{
    (void)srv;
    (void)arg;
    atomic_fetch_add(&ran, 1);
}

/* Waits until `want` calls ran, less those eddy_defer() refused (out of memory, under
 * tests/unit/oom_sweep.sh); false if the deadline passed first. */
static bool wait_ran(long want)
{
    double deadline = now_s() + DEADLINE;
    while (atomic_load(&ran) < want - atomic_load(&defer_failures)) {
        if (now_s() > deadline)
            return false;
        sched_yield();
    }
    return true;
}

static void *poster(void *arg)
{
    (void)arg;
    for (int round = 1; round <= ROUNDS; round++) {
        while (atomic_load(&round_started) < round)
            sched_yield();
        for (int i = 0; i < BURST; i++) {
            if (eddy_defer(test_server, count_run, NULL) != 0)
                atomic_fetch_add(&defer_failures, 1);
        }
        atomic_fetch_add(&posters_done, 1);
    }
    return NULL;
}

static void test_every_post_wakes_the_loop(void)
{
    if (!test_server_new("warning"))
        return;
    CHECK_EQ_INT(eddy_server_set(test_server, "worker_num", "1"), 0);
    pthread_t loop_thread, posters[POSTERS];
    test_start_server(&loop_thread, &start_rc);
    for (int i = 0; i < POSTERS; i++)
        pthread_create(&posters[i], NULL, poster, NULL);
    long want = 0;
    int stalled_round = 0;
    for (int round = 1; round <= ROUNDS && stalled_round == 0; round++) {
        atomic_store(&round_started, round);
        while (atomic_load(&posters_done) < round * POSTERS)
            sched_yield();
        want += POSTERS * BURST;
        if (!wait_ran(want)) {
            stalled_round = round;
            break;
        }
        /* The loop is asleep now (or about to be): this one post must wake it. */
        if (eddy_defer(test_server, count_run, NULL) != 0)
            atomic_fetch_add(&defer_failures, 1);
        want++;
        if (!wait_ran(want))
            stalled_round = round;
    }
    if (stalled_round != 0) {
        fprintf(stderr, "round %d: %ld of %ld posted calls ran within %.0f s\n", stalled_round,
                atomic_load(&ran), want, DEADLINE);
        /* Let the posters finish their rounds, so they can be joined. */
        atomic_store(&round_started, ROUNDS);
    }
    CHECK_EQ_INT(stalled_round, 0);
    for (int i = 0; i < POSTERS; i++)
        pthread_join(posters[i], NULL);
    eddy_server_stop(test_server); /* wakes the loop directly, stalled or not */
    pthread_join(loop_thread, NULL);
    CHECK_EQ_INT(start_rc, 0);
    CHECK_EQ_INT(atomic_load(&defer_failures), 0);
    eddy_server_free(test_server);
}

int main(void)
{
    test_every_post_wakes_the_loop();
    return test_report("test_loop_post");
}

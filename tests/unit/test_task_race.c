/* SPDX-License-Identifier: MIT */
/*
 * eddy_task() from an application thread across stop and start: each stop frees the task
 * pool and each start makes a new one, while the thread goes on queueing. ThreadSanitizer
 * (make test-unit SANITIZE=thread) watches the pool pointer and its lock; the counts check
 * that every accepted task ran and was finished.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>

#include "eddy.h"
#include "test.h"
#include "test_server.h"

#define RUNS 5

static atomic_bool quit;
static atomic_long accepted; /* eddy_task() calls that returned an id */
static atomic_long worked;   /* task functions that ran */
static atomic_long finished; /* and finish callbacks */

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void *work(void *arg)
{
    atomic_fetch_add(&worked, 1);
    return arg;
}

static void finish(eddy_server_t *srv, uint64_t task_id, void *result, void *arg)
{
    (void)srv;
    (void)task_id;
    (void)result;
    (void)arg;
    atomic_fetch_add(&finished, 1);
}

static void *caller(void *arg)
{
    (void)arg;
    while (!atomic_load(&quit)) {
        if (eddy_task(test_server, work, finish, NULL) != 0)
            atomic_fetch_add(&accepted, 1);
        sched_yield();
    }
    return NULL;
}

static void test_task_from_thread_across_runs(void)
{
    if (!test_server_new("error"))
        return;
    CHECK_EQ_INT(eddy_server_set(test_server, "worker_num", "1"), 0);
    CHECK_EQ_INT(eddy_server_set(test_server, "task_worker_num", "2"), 0);
    int start_rc[RUNS];
    long accepted_after_run[RUNS];
    pthread_t thread;
    pthread_create(&thread, NULL, caller, NULL);
    for (int run = 0; run < RUNS; run++) {
        pthread_t loop_thread;
        test_start_server(&loop_thread, &start_rc[run]);
        /* The caller's first task of this run, then a while of queueing against the run. */
        long before = run > 0 ? accepted_after_run[run - 1] : 0;
        for (int waited_ms = 0; waited_ms < 5000 && atomic_load(&accepted) <= before; waited_ms++)
            sleep_ms(1);
        sleep_ms(20);
        eddy_server_stop(test_server);
        pthread_join(loop_thread, NULL);
        accepted_after_run[run] = atomic_load(&accepted);
        sleep_ms(5); /* the caller goes on with the server stopped (and no pool) */
    }
    atomic_store(&quit, true);
    pthread_join(thread, NULL);
    eddy_server_free(test_server);
    for (int run = 0; run < RUNS; run++) {
        CHECK_EQ_INT(start_rc[run], 0);
        CHECK(accepted_after_run[run] > (run > 0 ? accepted_after_run[run - 1] : 0));
    }
    CHECK_EQ_INT(atomic_load(&worked), atomic_load(&accepted));
    CHECK_EQ_INT(atomic_load(&finished), atomic_load(&accepted));
}

int main(void)
{
    test_task_from_thread_across_runs();
    return test_report("test_task_race");
}

/* SPDX-License-Identifier: MIT */
/*
 * Watches (eddy_watch_new and friends): the application's own descriptors (socketpairs
 * here) driven by the loops. Level-triggered readiness for reading and writing, update,
 * free from the callback, free of a watch whose event is pending in the same batch (ASan
 * sees a use after free if the memory went at once), watches on several loops, and a
 * stop, a restart and eddy_server_free() with live watches.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "eddy.h"
#include "test.h"
#include "test_server.h"

#define LOOPS 3

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void make_pair(int pair[2])
{
    CHECK_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair), 0);
}

/* A server with workers loops, or NULL (a failed check: out of memory, under
 * tests/unit/oom_sweep.sh). */
static eddy_server_t *new_server(int workers)
{
    eddy_server_t *srv = eddy_server_new("127.0.0.1", 0);
    CHECK(srv != NULL);
    if (srv == NULL)
        return NULL;
    char n[8];
    snprintf(n, sizeof(n), "%d", workers);
    CHECK_EQ_INT(eddy_server_set(srv, "worker_num", n), 0);
    CHECK_EQ_INT(eddy_server_set(srv, "log_level", "error"), 0);
    eddy_on_message(srv, test_ignore_message);
    return srv;
}

/* Ends a scenario that did not finish in time (a failed check names it). */
static bool timed_out;
static void on_deadline(eddy_server_t *srv, uint64_t id, void *arg)
{
    (void)id;
    (void)arg;
    timed_out = true;
    eddy_server_stop(srv);
}

/* ---- one loop: read, write, update, free in the callback ---- */

static int pair1[2];
static eddy_watch_t *w1;
static int step1; /* what the scenario waits for */
static int reads1, writes1, calls_while_off;

static void on_watch1(eddy_watch_t *w, int fd, int events, void *arg)
{
    eddy_server_t *srv = arg;
    CHECK(w == w1);
    CHECK_EQ_INT(fd, pair1[0]);
    char c;
    if (step1 == 3) {
        calls_while_off++;
        return;
    }
    if (events & EDDY_WATCH_READ) {
        /* One byte per call: the second byte must bring a second call (level-triggered). */
        CHECK_EQ_INT(read(fd, &c, 1), 1);
        reads1++;
        if (step1 == 1 && reads1 == 2) {
            step1 = 2;
            CHECK_EQ_INT(eddy_watch_update(w, EDDY_WATCH_WRITE), 0);
        } else if (step1 == 4) {
            eddy_watch_free(w); /* from its own callback, a byte still unread */
            w1 = NULL;
            step1 = 5;
            eddy_server_stop(srv);
        }
    }
    if (events & EDDY_WATCH_WRITE) {
        CHECK_EQ_INT(step1, 2);
        writes1++;
        CHECK_EQ_INT(eddy_watch_update(w, 0), 0);
        step1 = 3;
        /* Input arrives while nothing is watched: no call until READ is watched again. */
        CHECK_EQ_INT(write(pair1[1], "ab", 2), 2);
    }
}

static void resume_reading(eddy_server_t *srv, uint64_t id, void *arg)
{
    (void)srv;
    (void)id;
    (void)arg;
    CHECK_EQ_INT(step1, 3);
    step1 = 4;
    CHECK_EQ_INT(eddy_watch_update(w1, EDDY_WATCH_READ), 0);
}

static void start1(eddy_server_t *srv, void *arg)
{
    (void)arg;
    CHECK_EQ_INT(eddy_loop_index(srv), 0);
    CHECK(eddy_watch_new(srv, pair1[0], 4, on_watch1, srv) == NULL); /* unknown bit */
    CHECK(eddy_watch_new(srv, -1, EDDY_WATCH_READ, on_watch1, srv) == NULL);
    CHECK(eddy_watch_new(srv, pair1[0], EDDY_WATCH_READ, NULL, srv) == NULL);
    w1 = eddy_watch_new(srv, pair1[0], EDDY_WATCH_READ, on_watch1, srv);
    CHECK(w1 != NULL);
    /* One watch per fd and loop. */
    CHECK(eddy_watch_new(srv, pair1[0], EDDY_WATCH_READ, on_watch1, srv) == NULL);
    CHECK_EQ_INT(eddy_watch_update(w1, 8), EDDY_EINVAL);
    step1 = 1;
    CHECK_EQ_INT(write(pair1[1], "xy", 2), 2);
    /* Out of memory (tests/unit/oom_sweep.sh), the scenario cannot go on: it ends. */
    if (w1 == NULL || eddy_timer_after(srv, 200, resume_reading, NULL) == 0 ||
        eddy_timer_after(srv, 5000, on_deadline, NULL) == 0)
        eddy_server_stop(srv);
}

static void test_one_loop(void)
{
    make_pair(pair1);
    eddy_server_t *srv = new_server(1);
    if (srv == NULL)
        return;
    eddy_on_start(srv, start1);
    timed_out = false;
    CHECK(eddy_watch_new(srv, pair1[0], EDDY_WATCH_READ, on_watch1, srv) == NULL); /* no loop */
    CHECK_EQ_INT(eddy_loop_index(srv), -1);
    CHECK_EQ_INT(eddy_server_start(srv), 0);
    CHECK(!timed_out);
    CHECK_EQ_INT(step1, 5);
    CHECK_EQ_INT(reads1, 3);
    CHECK_EQ_INT(writes1, 1);
    CHECK_EQ_INT(calls_while_off, 0);
    eddy_server_free(srv);
    close(pair1[0]);
    close(pair1[1]);
}

/* ---- two watches ready in the same batch; the first called frees both ---- */

static int pair_a[2], pair_b[2];
static eddy_watch_t *wa, *wb;
static int batch_calls;

static void on_batch(eddy_watch_t *w, int fd, int events, void *arg)
{
    (void)w;
    (void)fd;
    (void)events;
    (void)arg;
    batch_calls++;
    eddy_watch_free(wa);
    eddy_watch_free(wb);
    wa = wb = NULL;
}

static void end_batch(eddy_server_t *srv, uint64_t id, void *arg)
{
    (void)id;
    (void)arg;
    eddy_server_stop(srv);
}

static void start_batch(eddy_server_t *srv, void *arg)
{
    (void)arg;
    /* Both readable before the loop's first poll: one epoll batch reports both. */
    CHECK_EQ_INT(write(pair_a[1], "a", 1), 1);
    CHECK_EQ_INT(write(pair_b[1], "b", 1), 1);
    wa = eddy_watch_new(srv, pair_a[0], EDDY_WATCH_READ, on_batch, NULL);
    wb = eddy_watch_new(srv, pair_b[0], EDDY_WATCH_READ | EDDY_WATCH_WRITE, on_batch, NULL);
    CHECK(wa != NULL && wb != NULL);
    if (eddy_timer_after(srv, 100, end_batch, NULL) == 0)
        eddy_server_stop(srv); /* out of memory */
}

static void test_free_pending(void)
{
    make_pair(pair_a);
    make_pair(pair_b);
    eddy_server_t *srv = new_server(1);
    if (srv == NULL)
        return;
    eddy_on_start(srv, start_batch);
    CHECK_EQ_INT(eddy_server_start(srv), 0);
    CHECK_EQ_INT(batch_calls, 1); /* the other watch's pending event is dropped */
    eddy_server_free(srv);
    close(pair_a[0]);
    close(pair_a[1]);
    close(pair_b[0]);
    close(pair_b[1]);
}

/* ---- a watch on each of several loops, live at stop, restart and free ---- */

static int pairs[LOOPS][2];
static eddy_watch_t *_Atomic loop_watch[LOOPS];
static atomic_int calls_on[LOOPS];
static atomic_int wrong_loop;

static void on_loop_watch(eddy_watch_t *w, int fd, int events, void *arg)
{
    (void)w;
    int index = (int)(intptr_t)arg;
    if (eddy_loop_index(test_server) != index)
        atomic_fetch_add(&wrong_loop, 1);
    char c;
    if ((events & EDDY_WATCH_READ) && read(fd, &c, 1) == 1)
        atomic_fetch_add(&calls_on[index], 1);
}

/* Each loop makes its watch when a request first reaches it (requests go round-robin). */
static void on_request(eddy_server_t *srv, eddy_request_t *req, eddy_response_t *resp,
                       void *user_data)
{
    (void)req;
    (void)user_data;
    int index = eddy_loop_index(srv);
    if (index >= 0 && index < LOOPS && atomic_load(&loop_watch[index]) == NULL)
        atomic_store(&loop_watch[index], eddy_watch_new(srv, pairs[index][0], EDDY_WATCH_READ,
                                                        on_loop_watch, (void *)(intptr_t)index));
    eddy_response_end(resp, "ok", 2);
}

static bool wait_calls(int index, int want)
{
    for (int waited = 0; waited < 5000; waited++) {
        if (atomic_load(&calls_on[index]) >= want)
            return true;
        sleep_ms(1);
    }
    return false;
}

static void test_several_loops(void)
{
    for (int i = 0; i < LOOPS; i++)
        make_pair(pairs[i]);
    if (!test_server_new("error"))
        return;
    CHECK_EQ_INT(eddy_server_set(test_server, "worker_num", "3"), 0);
    eddy_on_request(test_server, on_request);
    pthread_t thread;
    int rc = -1;
    test_start_server(&thread, &rc);
    int port = eddy_server_port(test_server);
    bool all = false;
    for (int tries = 0; tries < 30 && !all; tries++) {
        CHECK(test_http_answered(port));
        all = true;
        for (int i = 0; i < LOOPS; i++)
            all = all && atomic_load(&loop_watch[i]) != NULL;
    }
    CHECK(all);
    CHECK_EQ_INT(eddy_loop_index(test_server), -1); /* not a loop thread */
    for (int i = 0; i < LOOPS && all; i++) {
        CHECK_EQ_INT(write(pairs[i][1], "1", 1), 1);
        CHECK(wait_calls(i, 1));
    }
    eddy_server_stop(test_server);
    pthread_join(thread, NULL);
    CHECK_EQ_INT(rc, 0);
    /* Stopped: the watches stay, and are not called while no loop runs. */
    for (int i = 0; i < LOOPS; i++)
        CHECK_EQ_INT(write(pairs[i][1], "2", 1), 1);
    sleep_ms(50);
    for (int i = 0; i < LOOPS; i++)
        CHECK_EQ_INT(atomic_load(&calls_on[i]), 1);
    /* Started again, each loop's watch delivers what arrived meanwhile, on its loop. */
    test_start_server(&thread, &rc);
    for (int i = 0; i < LOOPS && all; i++)
        CHECK(wait_calls(i, 2));
    eddy_server_stop(test_server);
    pthread_join(thread, NULL);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(atomic_load(&wrong_loop), 0);
    /* Live watches go with the server (LeakSanitizer checks); the fds stay open. */
    eddy_server_free(test_server);
    for (int i = 0; i < LOOPS; i++) {
        CHECK_EQ_INT(write(pairs[i][1], "3", 1), 1);
        close(pairs[i][0]);
        close(pairs[i][1]);
    }
}

int main(void)
{
    test_one_loop();
    test_free_pending();
    test_several_loops();
    return test_report("watch");
}

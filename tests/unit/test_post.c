/* SPDX-License-Identifier: MIT */
/*
 * eddy_post(): the call runs on the loop thread that owns the connection, whether posted
 * from an application thread, from another loop or from the owner itself (then at the end
 * of the iteration, not inside the caller); it runs even when the connection closed
 * meanwhile, and even when the server stopped first (in eddy_server_free()); unknown ids
 * and a NULL callback are refused.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "eddy.h"
#include "test.h"
#include "test_server.h"

#define CONNS 4 /* accepted connections the posts go to */

/* Written by the loops (connect callback), read by other threads after a bounded wait. */
static _Atomic eddy_fd_t conn_fd[CONNS];
static pthread_t conn_thread[CONNS];
static atomic_int conn_index;
static atomic_int conns_seen;
static int start_rc;

/* What a posted call observed. */
struct probe {
    int conn;             /* index into conn_fd */
    atomic_bool ran;      /* the call ran */
    atomic_int runs;      /* how many times */
    atomic_bool on_owner; /* on the thread that owns conn */
    atomic_bool existed;  /* eddy_exist() in the call */
    atomic_bool returned; /* eddy_post() had returned when the call ran (same-loop case) */
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static bool wait_flag(atomic_bool *flag)
{
    for (double deadline = now_s() + 5.0; !atomic_load(flag);) {
        if (now_s() > deadline)
            return false;
        sched_yield();
    }
    return true;
}

static void on_connect(eddy_server_t *srv, eddy_fd_t fd, void *user_data)
{
    (void)srv;
    (void)user_data;
    /* Two loops may run this at once: each takes its own index. The thread is written
     * before conn_fd, which other threads wait for. */
    int i = atomic_fetch_add(&conn_index, 1);
    if (i >= CONNS)
        return;
    conn_thread[i] = pthread_self();
    atomic_store(&conn_fd[i], fd);
    atomic_fetch_add(&conns_seen, 1);
}

static void probe_run(eddy_server_t *srv, void *arg)
{
    struct probe *p = arg;
    atomic_store(&p->on_owner, pthread_equal(pthread_self(), conn_thread[p->conn]) != 0);
    atomic_store(&p->existed, eddy_exist(srv, atomic_load(&conn_fd[p->conn])));
    atomic_fetch_add(&p->runs, 1);
    atomic_store(&p->ran, true);
}

/* Runs on conn 0's loop: posts to conn p->conn, on another loop. */
static void post_from_loop(eddy_server_t *srv, void *arg)
{
    struct probe *p = arg;
    if (eddy_post(srv, atomic_load(&conn_fd[p->conn]), probe_run, p) != 0)
        atomic_store(&p->ran, true); /* seen as not on_owner: the check fails */
}

/* Runs on conn 2's own loop: posts to itself, which must not run inside this call. */
static void post_to_self(eddy_server_t *srv, void *arg)
{
    struct probe *p = arg;
    int rc = eddy_post(srv, atomic_load(&conn_fd[p->conn]), probe_run, p);
    atomic_store(&p->returned, !atomic_load(&p->ran) && rc == 0);
}

/* Runs on conn 3's loop: posts to conn 3, then closes it; the call still runs. */
static void post_then_close(eddy_server_t *srv, void *arg)
{
    struct probe *p = arg;
    eddy_fd_t fd = atomic_load(&conn_fd[p->conn]);
    if (eddy_post(srv, fd, probe_run, p) == 0)
        eddy_close(srv, fd);
}

static void test_post_runs_on_the_owner(void)
{
    if (!test_server_new("warning"))
        return;
    CHECK_EQ_INT(eddy_server_set(test_server, "worker_num", "2"), 0);
    /* The stop waits this long (default 5 s) for peers to close; these close only after
     * the server is freed. */
    CHECK_EQ_INT(eddy_server_set(test_server, "websocket_close_timeout", "0.2"), 0);
    eddy_on_connect(test_server, on_connect);
    pthread_t loop_thread;
    test_start_server(&loop_thread, &start_rc);
    int socks[CONNS];
    for (int i = 0; i < CONNS; i++)
        socks[i] = test_connect(eddy_server_port(test_server));
    for (double deadline = now_s() + 5.0; atomic_load(&conns_seen) < CONNS && now_s() < deadline;)
        sched_yield();
    CHECK_EQ_INT(atomic_load(&conns_seen), CONNS);
    if (atomic_load(&conns_seen) == CONNS) {
        /* Accepted connections go to the loops in turn: one lives on another loop than
         * conn 0's. */
        int other = 1;
        while (other < CONNS - 1 && pthread_equal(conn_thread[0], conn_thread[other]))
            other++;
        CHECK(!pthread_equal(conn_thread[0], conn_thread[other]));

        CHECK_EQ_INT(eddy_post(test_server, 0, probe_run, NULL), EDDY_ENOTFOUND);
        CHECK_EQ_INT(eddy_post(test_server, 987654321, probe_run, NULL), EDDY_ENOTFOUND);
        CHECK_EQ_INT(eddy_post(test_server, atomic_load(&conn_fd[0]), NULL, NULL), EDDY_EINVAL);

        /* From the application's thread. */
        static struct probe from_app = {.conn = 0};
        CHECK_EQ_INT(eddy_post(test_server, atomic_load(&conn_fd[0]), probe_run, &from_app), 0);
        CHECK(wait_flag(&from_app.ran));
        CHECK(atomic_load(&from_app.on_owner));
        CHECK(atomic_load(&from_app.existed));

        /* From conn 0's loop to another loop's connection. */
        static struct probe from_loop;
        from_loop.conn = other;
        CHECK_EQ_INT(eddy_post(test_server, atomic_load(&conn_fd[0]), post_from_loop, &from_loop),
                     0);
        CHECK(wait_flag(&from_loop.ran));
        CHECK(atomic_load(&from_loop.on_owner));

        /* From the owner itself: later in the iteration, not inside eddy_post(). */
        static struct probe to_self = {.conn = 2};
        CHECK_EQ_INT(eddy_post(test_server, atomic_load(&conn_fd[2]), post_to_self, &to_self), 0);
        CHECK(wait_flag(&to_self.ran));
        CHECK(atomic_load(&to_self.on_owner));
        CHECK(atomic_load(&to_self.returned));

        /* The connection closes before the call runs: it runs all the same. */
        static struct probe closed = {.conn = 3};
        CHECK_EQ_INT(eddy_post(test_server, atomic_load(&conn_fd[3]), post_then_close, &closed), 0);
        CHECK(wait_flag(&closed.ran));
        CHECK(atomic_load(&closed.on_owner));
        CHECK(!atomic_load(&closed.existed));
        CHECK_EQ_INT(atomic_load(&closed.runs), 1);
    }

    /* Posted right before the stop: it runs exactly once, on the loop or in
     * eddy_server_free() (whichever comes first). */
    static struct probe at_stop = {.conn = 1};
    int rc = eddy_post(test_server, atomic_load(&conn_fd[1]), probe_run, &at_stop);
    CHECK_EQ_INT(rc, 0);
    eddy_server_stop(test_server);
    pthread_join(loop_thread, NULL);
    CHECK_EQ_INT(start_rc, 0);
    eddy_server_free(test_server);
    CHECK_EQ_INT(atomic_load(&at_stop.runs), rc == 0 ? 1 : 0);
    for (int i = 0; i < CONNS; i++) {
        if (socks[i] >= 0)
            close(socks[i]);
    }
}

int main(void)
{
    test_post_runs_on_the_owner();
    return test_report("test_post");
}

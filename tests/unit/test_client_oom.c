/* SPDX-License-Identifier: MIT */
/*
 * The WebSocket client's whole life against an eddy server in the same process, short
 * enough for the allocation-failure sweep (tests/unit/oom_sweep.sh, `make test-oom`): a
 * client on the server's loop (compression offered, reconnect on) opens, exchanges a
 * message, is dropped by the server, reconnects, exchanges another and disconnects; then
 * a stand-alone client opens, exchanges a message and is freed while open. Every wait is
 * bounded and also ends when the client stopped, so a failed allocation anywhere (the
 * client's, the session's, the server's) ends the run quickly with failed checks (exit
 * 1), never a crash, a hang or a leak.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "test.h"
#include "test_server.h"

static char url[64];

struct events {
    atomic_int opens, echoes, closes, errors;
    atomic_bool stopped;
};

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Waits up to 1 s for cond, or until the client stopped; returns cond. */
#define WAIT_FOR(ev, cond)                                                                         \
    ({                                                                                             \
        for (int waited_ = 0; !(cond) && !atomic_load(&(ev)->stopped) && waited_ < 100; waited_++) \
            sleep_ms(10);                                                                          \
        (cond);                                                                                    \
    })

/* The server echoes, and drops the connection (no close frame) on "drop". */
static void server_message(eddy_server_t *srv, const eddy_frame_t *frame, void *user_data)
{
    if (frame->len == 4 && memcmp(frame->data, "drop", 4) == 0) {
        eddy_close(srv, frame->fd);
        return;
    }
    bool compressed = frame->flags & EDDY_WS_FLAG_RSV1;
    eddy_push(srv, frame->fd, frame->data, frame->len, frame->opcode,
              EDDY_WS_FLAG_FIN | (compressed ? EDDY_WS_FLAG_COMPRESS : 0));
}

static void on_open(eddy_client_t *client, const eddy_client_open_t *open, void *user_data)
{
    struct events *ev = user_data;
    atomic_fetch_add(&ev->opens, 1);
}

static void on_message(eddy_client_t *client, const eddy_frame_t *frame, void *user_data)
{
    struct events *ev = user_data;
    if (frame->len == 5 && memcmp(frame->data, "hello", 5) == 0)
        atomic_fetch_add(&ev->echoes, 1);
}

static void on_close(eddy_client_t *client, int code, const char *reason, bool clean,
                     void *user_data)
{
    struct events *ev = user_data;
    atomic_fetch_add(&ev->closes, 1);
}

static void on_error(eddy_client_t *client, const eddy_client_error_t *err, void *user_data)
{
    struct events *ev = user_data;
    atomic_fetch_add(&ev->errors, 1);
}

static void on_stopped(eddy_client_t *client, void *user_data)
{
    struct events *ev = user_data;
    atomic_store(&ev->stopped, true);
}

static void options(eddy_client_options_t *opts, struct events *ev)
{
    eddy_client_options_init(opts);
    opts->url = url;
    opts->compression = true;
    opts->reconnect = true;
    opts->reconnect_delay_min = 0.01;
    opts->reconnect_delay_max = 0.05;
    opts->reconnect_max_attempts = 5;
    opts->connect_timeout = 2;
    opts->on_open = on_open;
    opts->on_message = on_message;
    opts->on_close = on_close;
    opts->on_error = on_error;
    opts->on_stopped = on_stopped;
    opts->user_data = ev;
}

/* Pushes "hello" and waits for its echo (the want-th). */
static bool echo(eddy_client_t *client, struct events *ev, int want)
{
    int rc = eddy_client_push(client, "hello", 5, EDDY_WS_OPCODE_TEXT,
                              EDDY_WS_FLAG_FIN | EDDY_WS_FLAG_COMPRESS);
    CHECK(rc == 0 || rc == EDDY_QUEUED);
    return WAIT_FOR(ev, atomic_load(&ev->echoes) >= want);
}

static void test_client_on_server_loop(void)
{
    static struct events ev;
    eddy_client_options_t opts;
    options(&opts, &ev);
    eddy_client_t *client = eddy_client_new(test_server, &opts);
    CHECK(client != NULL);
    if (client == NULL)
        return;
    bool ok = eddy_client_connect(client) == 0;
    CHECK(ok);
    ok = ok && WAIT_FOR(&ev, atomic_load(&ev.opens) == 1);
    CHECK(ok && echo(client, &ev, 1));
    /* Dropped by the server (1006): the client reconnects. */
    if (ok)
        ok = eddy_client_push(client, "drop", 4, EDDY_WS_OPCODE_TEXT, EDDY_WS_FLAG_FIN) == 0;
    ok = ok && WAIT_FOR(&ev, atomic_load(&ev.opens) == 2);
    CHECK(ok && echo(client, &ev, 2));
    if (ok) {
        CHECK_EQ_INT(eddy_client_disconnect(client, 1000, "done"), 0);
        CHECK(WAIT_FOR(&ev, atomic_load(&ev.stopped)));
        CHECK_EQ_INT(atomic_load(&ev.closes), 2);
    }
    eddy_client_free(client);
}

static void test_standalone_client(void)
{
    static struct events ev;
    eddy_client_options_t opts;
    options(&opts, &ev);
    opts.reconnect = false;
    eddy_client_t *client = eddy_client_new(NULL, &opts);
    CHECK(client != NULL);
    if (client == NULL)
        return;
    bool ok = eddy_client_connect(client) == 0;
    CHECK(ok);
    ok = ok && WAIT_FOR(&ev, atomic_load(&ev.opens) == 1);
    CHECK(ok && echo(client, &ev, 1));
    /* Freed while open: returns once the loop let go of it. */
    eddy_client_free(client);
}

int main(void)
{
    if (!test_server_new("none"))
        return test_report("test_client_oom");
    eddy_on_message(test_server, server_message);
    CHECK_EQ_INT(eddy_server_set(test_server, "worker_num", "1"), 0);
    CHECK_EQ_INT(eddy_server_set(test_server, "websocket_compression", "true"), 0);
    pthread_t thread;
    int server_rc = 0;
    test_start_server(&thread, &server_rc);
    if (atomic_load(&test_started)) {
        snprintf(url, sizeof(url), "ws://127.0.0.1:%d/", eddy_server_port(test_server));
        test_client_on_server_loop();
        test_standalone_client();
    }
    eddy_server_stop(test_server);
    pthread_join(thread, NULL);
    CHECK_EQ_INT(server_rc, 0);
    eddy_server_free(test_server);
    return test_report("test_client_oom");
}

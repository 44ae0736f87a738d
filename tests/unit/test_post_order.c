/* SPDX-License-Identifier: MIT */
/*
 * What other threads hand a loop before a client's request reaches it goes out before the
 * request's answer: a publication, a push, an eddy_post() call. And what one thread hands
 * a loop runs in the order it was handed, eddy_post() calls included. The loop is held in
 * a deferred call while the test hands it work and sends the request, so both wait for the
 * loop's next epoll_wait(), where a loop that dispatched its I/O before its inbox answered
 * the request first. A command run ahead of the batch may free a watcher the batch names.
 */
#include <linux/sockios.h>
#include <sys/ioctl.h>

#include "test.h"
#include "test_server.h"
#include "wait_for.h"

static _Atomic eddy_fd_t client_fd;
static atomic_bool held;    /* the loop waits in hold_loop() */
static atomic_bool release; /* hold_loop() may return */
static int start_rc;

static void hold_loop(eddy_server_t *srv, void *arg)
{
    (void)srv;
    (void)arg;
    atomic_store(&held, true);
    WAIT_FOR(atomic_load(&release), 5000);
    atomic_store(&held, false);
}

static void push_posted(eddy_server_t *srv, void *arg)
{
    (void)arg;
    eddy_push(srv, atomic_load(&client_fd), "posted", 6, EDDY_WS_OPCODE_TEXT, EDDY_WS_FLAG_FIN);
}

static void on_open(eddy_server_t *srv, eddy_request_t *req, void *user_data)
{
    (void)user_data;
    atomic_store(&client_fd, eddy_request_fd(req));
    eddy_subscribe(srv, eddy_request_fd(req), "t");
}

/* "hold" holds the loop after this iteration's inbox; "ping" is answered "pong". */
static void on_message(eddy_server_t *srv, const eddy_frame_t *frame, void *user_data)
{
    (void)user_data;
    if (frame->len == 4 && memcmp(frame->data, "hold", 4) == 0)
        eddy_defer(srv, hold_loop, NULL);
    else
        eddy_push(srv, frame->fd, "pong", 4, EDDY_WS_OPCODE_TEXT, EDDY_WS_FLAG_FIN);
}

/* Whether the server acknowledged every byte sent on fd: the request is then in the server
 * socket's receive queue. */
static bool acked(int fd)
{
    int unacked = -1;
    return ioctl(fd, SIOCOUTQ, &unacked) == 0 && unacked == 0;
}

static bool hold(int ws)
{
    atomic_store(&release, false);
    if (!test_ws_send_text(ws, "hold"))
        return false;
    return WAIT_FOR(atomic_load(&held), 5000);
}

/* Reads two frames and checks they are first then second. */
static void check_order(int ws, const char *first, const char *second)
{
    char got[128];
    int len = test_ws_recv_small(ws, got);
    CHECK(len >= 0);
    CHECK_MEM(got, len < 0 ? 0 : (size_t)len, first, strlen(first));
    len = test_ws_recv_small(ws, got);
    CHECK(len >= 0);
    CHECK_MEM(got, len < 0 ? 0 : (size_t)len, second, strlen(second));
}

enum handed { PUBLISHED, PUSHED, POSTED };

/* Hands the held loop one kind of work from this thread, then sends "ping". */
static void check_handed_before_request(int ws, enum handed kind)
{
    eddy_fd_t fd = atomic_load(&client_fd);
    CHECK(hold(ws));
    switch (kind) {
    case PUBLISHED:
        CHECK_EQ_INT(eddy_publish(test_server, "t", "published", 9, EDDY_WS_OPCODE_TEXT, 0), 1);
        break;
    case PUSHED:
        CHECK_EQ_INT(eddy_push(test_server, fd, "pushed", 6, EDDY_WS_OPCODE_TEXT, EDDY_WS_FLAG_FIN),
                     0);
        break;
    case POSTED:
        CHECK_EQ_INT(eddy_post(test_server, fd, push_posted, NULL), 0);
        break;
    }
    CHECK(test_ws_send_text(ws, "ping"));
    CHECK(WAIT_FOR(acked(ws), 5000));
    atomic_store(&release, true);
    check_order(ws, kind == PUBLISHED ? "published" : kind == PUSHED ? "pushed" : "posted", "pong");
}

int main(void)
{
    if (!test_server_new("warning"))
        return test_report("test_post_order");
    /* One loop: the request and the work handed over meet on it. */
    CHECK_EQ_INT(eddy_server_set(test_server, "worker_num", "1"), 0);
    CHECK_EQ_INT(eddy_server_set(test_server, "websocket_close_timeout", "0.2"), 0);
    eddy_on_open(test_server, on_open);
    eddy_on_message(test_server, on_message);
    pthread_t loop_thread;
    test_start_server(&loop_thread, &start_rc);
    int ws = test_connect_timed(eddy_server_port(test_server));
    CHECK_EQ_INT(test_ws_upgrade(ws, "/"), 101);
    CHECK(test_ws_send_text(ws, "ping")); /* on_open ran once this is answered */
    char pong[8];
    CHECK_EQ_INT(test_ws_recv_small(ws, pong), 4);

    check_handed_before_request(ws, PUBLISHED);
    check_handed_before_request(ws, PUSHED);
    check_handed_before_request(ws, POSTED);

    /* eddy_post() then eddy_push() from one thread: in that order. */
    CHECK(hold(ws));
    CHECK_EQ_INT(eddy_post(test_server, atomic_load(&client_fd), push_posted, NULL), 0);
    CHECK_EQ_INT(eddy_push(test_server, atomic_load(&client_fd), "pushed", 6, EDDY_WS_OPCODE_TEXT,
                           EDDY_WS_FLAG_FIN),
                 0);
    atomic_store(&release, true);
    check_order(ws, "posted", "pushed");

    /* A command posted before the batch frees a watcher the batch names: the listening
     * socket, closed by eddy_server_close_listeners() while a connection waits for accept
     * (ASan sees a use after free if the batch still calls it). */
    CHECK(hold(ws));
    CHECK_EQ_INT(eddy_server_close_listeners(test_server), 0);
    int waiting = test_connect(eddy_server_port(test_server));
    CHECK(waiting >= 0);
    atomic_store(&release, true);
    CHECK(WAIT_FOR(eddy_server_listener_fd(test_server, 0) < 0, 5000));
    CHECK(test_ws_send_text(ws, "ping")); /* the loop still serves its connection */
    char answer[8];
    CHECK_EQ_INT(test_ws_recv_small(ws, answer), 4);
    if (waiting >= 0)
        close(waiting);

    close(ws);
    eddy_server_stop(test_server);
    pthread_join(loop_thread, NULL);
    CHECK_EQ_INT(start_rc, 0);
    eddy_server_free(test_server);
    return test_report("test_post_order");
}

/* SPDX-License-Identifier: MIT */
/*
 * Out-of-memory inside the library is reported, never half-done. Armed with n, the
 * wrappers of alloc_fail.h fail the n-th allocation the calling thread makes. Each
 * test tries a call with its first, second, ... allocation failing and checks that it
 * either failed as documented or did all it promised.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "alloc_fail.h"
#include "eddy.h"
#include "test.h"

#define CLIENTS    40
#define MAX_TIMERS 2048

static int clients[CLIENTS];

static void never(eddy_server_t *srv, uint64_t timer_id, void *arg)
{
    (void)srv;
    (void)timer_id;
    (void)arg;
    CHECK(false);
}

/* Regression: a timer whose scheduling ran out of memory was freed, but its id was
 * returned. Now an id is returned only for a timer that is pending (clearing it says so),
 * and 0 only when an allocation failed. Hundreds of timers make the heap grow. */
static void test_timer_ids_after_failed_allocations(eddy_server_t *srv)
{
    static uint64_t ids[MAX_TIMERS];
    size_t n = 0;
    int failures = 0;
    for (int round = 0; round < 300; round++) {
        for (long at = 1; at <= 3; at++) {
            alloc_fail_arm(at);
            uint64_t id = round % 2 ? eddy_timer_tick(srv, 60000, never, NULL)
                                    : eddy_timer_after(srv, 60000, never, NULL);
            bool hit = alloc_fail_disarm();
            if (id != 0)
                ids[n++] = id;
            else
                CHECK(hit);
            failures += id == 0;
        }
    }
    CHECK(failures > 300); /* at least the first allocation failed each round */
    int not_pending = 0;
    for (size_t i = 0; i < n; i++)
        not_pending += !eddy_timer_clear(srv, ids[i]);
    CHECK_EQ_INT(not_pending, 0);
}

static bool collect(eddy_server_t *srv, eddy_fd_t fd, void *arg)
{
    (void)srv;
    eddy_fd_t **next = arg;
    *(*next)++ = fd;
    return true;
}

/* Regression: a subscription whose topic could not be added to the count table succeeded,
 * uncounted, so publications skipped it. Each attempt uses a new topic. */
static void test_subscribe_is_counted_or_fails(eddy_server_t *srv)
{
    eddy_fd_t fds[CLIENTS], *next = fds;
    eddy_connection_foreach(srv, collect, &next);
    int failures = 0;
    for (long at = 1; at <= 8; at++) {
        char topic[16];
        snprintf(topic, sizeof(topic), "topic%ld", at);
        alloc_fail_arm(at);
        int rc = eddy_subscribe(srv, fds[at % CLIENTS], topic);
        bool hit = alloc_fail_disarm();
        if (rc == 0) {
            CHECK_EQ_INT((int)eddy_topic_subscribers(srv, topic), 1);
        } else {
            CHECK_EQ_INT(rc, EDDY_ENOMEM);
            CHECK(hit);
            CHECK_EQ_INT((int)eddy_topic_subscribers(srv, topic), 0);
            failures++;
        }
    }
    CHECK(failures > 0);
}

static void run_tests(eddy_server_t *srv, void *arg)
{
    (void)arg;
    test_timer_ids_after_failed_allocations(srv);
    test_subscribe_is_counted_or_fails(srv);
    eddy_server_stop(srv);
}

/* Runs the tests once every client is an established WebSocket. */
static void on_open(eddy_server_t *srv, eddy_request_t *req, void *user_data)
{
    static int opened;
    (void)req;
    (void)user_data;
    if (++opened == CLIENTS)
        CHECK_EQ_INT(eddy_defer(srv, run_tests, NULL), 0);
}

/* Opens CLIENTS WebSocket clients: their handshakes wait in the socket buffers until the
 * loop runs. */
static void on_start(eddy_server_t *srv, void *user_data)
{
    (void)user_data;
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_port = htons((uint16_t)eddy_server_port(srv))};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    static const char upgrade[] = "GET / HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\n"
                                  "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    for (int i = 0; i < CLIENTS; i++) {
        clients[i] = socket(AF_INET, SOCK_STREAM, 0);
        CHECK(connect(clients[i], (struct sockaddr *)&addr, sizeof(addr)) == 0);
        CHECK(send(clients[i], upgrade, sizeof(upgrade) - 1, 0) == (ssize_t)sizeof(upgrade) - 1);
    }
}

static void ignore_message(eddy_server_t *srv, const eddy_frame_t *frame, void *user_data)
{
    (void)srv;
    (void)frame;
    (void)user_data;
}

int main(void)
{
    eddy_server_t *srv = eddy_server_new("127.0.0.1", 0);
    CHECK(srv != NULL);
    if (srv == NULL)
        return test_report("test_alloc_fail");
    CHECK_EQ_INT(eddy_server_set(srv, "worker_num", "1"), 0);
    CHECK_EQ_INT(eddy_server_set(srv, "log_level", "error"), 0);
    CHECK_EQ_INT(eddy_server_set(srv, "log_file", "/dev/null"), 0);
    /* The clients never answer the stop's close frames: do not wait the default 5 s. */
    CHECK_EQ_INT(eddy_server_set(srv, "websocket_close_timeout", "0.1"), 0);
    eddy_on_message(srv, ignore_message);
    eddy_on_start(srv, on_start);
    eddy_on_open(srv, on_open);
    alarm(30); /* a hang fails the test */
    CHECK_EQ_INT(eddy_server_start(srv), 0);
    for (int i = 0; i < CLIENTS; i++)
        close(clients[i]);
    eddy_server_free(srv);
    return test_report("test_alloc_fail");
}

/* SPDX-License-Identifier: MIT */
/*
 * Engine.IO heartbeats of many sessions on one loop, which share that loop's deadline heap
 * (rt/eio.c "heartbeat and timers"): 16 WebSocket clients connect one after the other,
 * pingInterval 100 ms and pingTimeout 1 s; the even ones answer every ping and keep being
 * pinged, the odd ones never answer and are closed with "ping timeout" after their first
 * ping, each at its own deadline, while the others' entries stay in the heap.
 */
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "test.h"
#include "test_rt_server.h"

#include "eddy_rt.h"
#include "eio_client.h"

#define NCLIENTS 16

static atomic_int timeouts, disconnects;

static void on_disconnect(eddy_rt_socket_t *s, const char *reason, void *user_data)
{
    if (strcmp(reason, "ping timeout") == 0)
        atomic_fetch_add(&timeouts, 1);
    atomic_fetch_add(&disconnects, 1);
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int main(void)
{
    if (!test_server_new("warning"))
        return test_report("test_rt_heartbeat");
    CHECK_EQ_INT(eddy_server_set(test_server, "worker_num", "1"), 0);
    eddy_rt_options_t opts;
    eddy_rt_options_init(&opts);
    opts.ping_interval_ms = 100;
    opts.ping_timeout_ms = 1000;
    eddy_rt_t *rt = eddy_rt_new(test_server, &opts);
    CHECK(rt != NULL);
    eddy_rt_handlers_t h = {.disconnect = on_disconnect};
    eddy_rt_nsp_set_handlers(eddy_rt_of(rt, "/"), &h);
    int port = rt_test_start(rt);

    int fds[NCLIENTS], pings[NCLIENTS] = {0};
    bool closed[NCLIENTS] = {false};
    char buf[256];
    for (int i = 0; i < NCLIENTS; i++) {
        fds[i] = eio_ws_connect(port, NULL);
        CHECK(fds[i] >= 0);
        CHECK(fds[i] >= 0 && eio_ws_recv(fds[i], buf, sizeof(buf), 2000) && buf[0] == '0');
        if (fds[i] >= 0)
            eio_ws_send(fds[i], "40");
        CHECK(fds[i] >= 0 && eio_ws_recv(fds[i], buf, sizeof(buf), 2000) &&
              strncmp(buf, "40{", 3) == 0);
    }
    /* 2.5 s: the odd ones time out at about 1.1 s, the even ones get a ping every 100 ms. */
    for (long long end = now_ms() + 2500; now_ms() < end;) {
        struct pollfd p[NCLIENTS];
        for (int i = 0; i < NCLIENTS; i++)
            p[i] = (struct pollfd){closed[i] ? -1 : fds[i], POLLIN, 0};
        if (poll(p, NCLIENTS, 50) <= 0)
            continue;
        for (int i = 0; i < NCLIENTS; i++) {
            if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            if (!eio_ws_recv(fds[i], buf, sizeof(buf), 1000) || buf[0] == '\0') {
                closed[i] = true; /* the connection ended, or its close frame came */
            } else if (strcmp(buf, "2") == 0) {
                pings[i]++;
                if (i % 2 == 0)
                    eio_ws_send(fds[i], "3");
            }
        }
    }
    for (int i = 0; i < NCLIENTS; i++) {
        if (i % 2 == 0) {
            CHECK(!closed[i]);
            CHECK(pings[i] >= 5);
        } else {
            CHECK(closed[i]);
            CHECK_EQ_INT(pings[i], 1);
        }
    }
    CHECK_EQ_INT(atomic_load(&timeouts), NCLIENTS / 2);
    CHECK_EQ_INT(atomic_load(&disconnects), NCLIENTS / 2);

    for (int i = 0; i < NCLIENTS; i++) {
        if (fds[i] >= 0)
            close(fds[i]);
    }
    rt_test_stop(rt);
    return test_report("test_rt_heartbeat");
}

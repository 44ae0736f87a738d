/* SPDX-License-Identifier: MIT */
/*
 * Broadcasts across the upgrade from long-polling to WebSocket (rt/rt.c, rt/eio.c): a
 * thread broadcasts numbered events to the whole namespace while raw Engine.IO 4 clients
 * connect on long-polling and upgrade by hand (a GET held open, "2probe", "3probe", the GET
 * released, "5"), round after round. Each client must see every number from its first one
 * on exactly once and in order, across both transports. WebSocket-only clients stay
 * subscribed meanwhile, so that every loop has publications in flight when an upgrade
 * completes there.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>

#include "test.h"
#include "test_rt_server.h"

#include "eddy_rt.h"
#include "eio_client.h"

#define NDRAIN          4
#define ROUNDS          300
#define ROUND_BUDGET_MS 20000

static eddy_rt_nsp_t *root;
static atomic_long seq;          /* the last number broadcast */
static atomic_bool stop;         /* the broadcaster and the drainer stop */
static atomic_int broadcast_err; /* the first failed eddy_rt_broadcast(), 0: none */

static uint64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

/* Sends a polling request (the connection closes after it). */
static int http_send(int port, const char *method, const char *sid, const char *body)
{
    int fd = test_connect(port);
    if (fd < 0)
        return -1;
    char req[512];
    int n = snprintf(req, sizeof(req),
                     "%s /socket.io/?EIO=4&transport=polling%s%s HTTP/1.1\r\nHost: test\r\n"
                     "Connection: close\r\nContent-Type: text/plain;charset=UTF-8\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     method, sid ? "&sid=" : "", sid ? sid : "", body ? strlen(body) : 0,
                     body ? body : "");
    send(fd, req, (size_t)n, 0);
    return fd;
}

/* Reads the response to a request sent on fd (closed here): its body into out. */
static bool http_recv(int fd, char *out, size_t cap, int timeout_ms)
{
    char head[2048];
    bool ok =
        eio_read_head(fd, head, sizeof(head), timeout_ms) && strncmp(head, "HTTP/1.1 200", 12) == 0;
    const char *cl = ok ? strcasestr(head, "content-length:") : NULL;
    size_t len = cl != NULL ? strtoul(cl + 15, NULL, 10) : 0;
    ok = cl != NULL && len < cap && eio_recv_all(fd, out, len, timeout_ms);
    if (ok)
        out[len] = '\0';
    close(fd);
    return ok;
}

/* ---- what one client saw ---- */

typedef struct seen {
    long last; /* the last number received, -1: none yet */
    long dups, gaps, reordered;
} seen_t;

/* Takes one Engine.IO packet: a numbered event is checked against the last one. */
static void take(seen_t *sn, const char *pk, size_t len)
{
    static const char prefix[] = "42[\"n\",";
    if (len < sizeof(prefix) || memcmp(pk, prefix, sizeof(prefix) - 1) != 0)
        return;
    long k = strtol(pk + sizeof(prefix) - 1, NULL, 10);
    if (sn->last >= 0) {
        if (k == sn->last)
            sn->dups++;
        else if (k < sn->last)
            sn->reordered++;
        else if (k > sn->last + 1)
            sn->gaps++;
    }
    if (sn->last < 0 || k > sn->last)
        sn->last = k;
}

/* Takes the packets of a polling payload (separated by 0x1e); whether "40" was among them. */
static bool take_payload(seen_t *sn, const char *body)
{
    bool connected = false;
    for (const char *p = body; *p != '\0';) {
        const char *end = strchr(p, 0x1e);
        size_t len = end ? (size_t)(end - p) : strlen(p);
        connected |= len >= 2 && p[0] == '4' && p[1] == '0';
        take(sn, p, len);
        p += len + (end != NULL);
    }
    return connected;
}

/* One client: handshake and connect on long-polling, one more poll, the upgrade, then
 * WebSocket until 20 more numbers came. Returns false if the protocol itself failed. */
static bool one_round(int port, seen_t *sn)
{
    static char body[1 << 16];
    int fd = http_send(port, "GET", NULL, NULL);
    if (fd < 0 || !http_recv(fd, body, sizeof(body), 2000) || strncmp(body, "0{\"sid\":\"", 9) != 0)
        return false;
    char sid[32];
    const char *q = strchr(body + 9, '"');
    if (q == NULL || (size_t)(q - (body + 9)) >= sizeof(sid))
        return false;
    memcpy(sid, body + 9, (size_t)(q - (body + 9)));
    sid[q - (body + 9)] = '\0';
    fd = http_send(port, "POST", sid, "40");
    if (fd < 0 || !http_recv(fd, body, sizeof(body), 2000))
        return false;
    bool connected = false;
    for (int i = 0; i < 50 && !connected; i++) {
        fd = http_send(port, "GET", sid, NULL);
        if (fd < 0 || !http_recv(fd, body, sizeof(body), 2000))
            return false;
        connected = take_payload(sn, body);
    }
    if (!connected)
        return false;
    fd = http_send(port, "GET", sid, NULL);
    if (fd < 0 || !http_recv(fd, body, sizeof(body), 2000))
        return false;
    take_payload(sn, body);
    /* The upgrade, with a GET pending as the client keeps one. */
    int get = http_send(port, "GET", sid, NULL);
    int ws = eio_ws_connect(port, sid);
    if (get < 0 || ws < 0) {
        if (get >= 0)
            close(get);
        if (ws >= 0)
            close(ws);
        return false;
    }
    char msg[1024];
    eio_ws_send(ws, "2probe");
    bool ok = eio_ws_recv(ws, msg, sizeof(msg), 2000) && strcmp(msg, "3probe") == 0;
    ok = ok && http_recv(get, body, sizeof(body), 2000);
    if (ok) {
        take_payload(sn, body);
        eio_ws_send(ws, "5");
        long until = atomic_load(&seq) + 20;
        for (int i = 0; ok && sn->last < until && i < 100000; i++) {
            ok = eio_ws_recv(ws, msg, sizeof(msg), 2000);
            if (ok)
                take(sn, msg, strlen(msg));
        }
    } else {
        close(get);
    }
    close(ws);
    return ok;
}

/* ---- the other threads ---- */

static void *broadcaster(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop)) {
        char args[32];
        long k = atomic_load(&seq) + 1;
        int n = snprintf(args, sizeof(args), "%ld", k);
        eddy_rt_msg_t msg = {.event = "n", .args = args, .args_len = (size_t)n};
        int rc = eddy_rt_broadcast(root, NULL, &msg);
        if (rc != 0) {
            int none = 0;
            atomic_compare_exchange_strong(&broadcast_err, &none, rc);
        }
        atomic_store(&seq, k);
        struct timespec t = {.tv_nsec = 50000L};
        nanosleep(&t, NULL);
    }
    return NULL;
}

/* Reads and forgets whatever the WebSocket-only clients receive. */
static void *drainer(void *arg)
{
    int *fds = arg;
    char buf[65536];
    while (!atomic_load(&stop)) {
        struct pollfd p[NDRAIN];
        for (int i = 0; i < NDRAIN; i++)
            p[i] = (struct pollfd){fds[i], POLLIN, 0};
        if (poll(p, NDRAIN, 50) <= 0)
            continue;
        for (int i = 0; i < NDRAIN; i++) {
            if (p[i].revents & POLLIN)
                (void)!recv(fds[i], buf, sizeof(buf), 0);
        }
    }
    return NULL;
}

int main(void)
{
    if (!test_server_new("warning"))
        return test_report("test_rt_upgrade");
    CHECK_EQ_INT(eddy_server_set(test_server, "worker_num", "2"), 0);
    eddy_rt_options_t opts;
    eddy_rt_options_init(&opts);
    opts.ping_interval_ms = 60000; /* no pings in the way */
    eddy_rt_t *rt = eddy_rt_new(test_server, &opts);
    CHECK(rt != NULL);
    root = eddy_rt_of(rt, "/");
    int port = rt_test_start(rt);

    int drain[NDRAIN];
    char buf[256];
    for (int i = 0; i < NDRAIN; i++) {
        drain[i] = eio_ws_connect(port, NULL);
        CHECK(drain[i] >= 0);
        CHECK(drain[i] >= 0 && eio_ws_recv(drain[i], buf, sizeof(buf), 2000) && buf[0] == '0');
        if (drain[i] >= 0) {
            eio_ws_send(drain[i], "40");
            CHECK(eio_ws_recv(drain[i], buf, sizeof(buf), 2000) && strncmp(buf, "40{", 3) == 0);
        }
    }
    pthread_t bth, dth;
    pthread_create(&dth, NULL, drainer, drain);
    pthread_create(&bth, NULL, broadcaster, NULL);

    seen_t total = {0};
    int rounds = 0, failed = 0;
    uint64_t deadline = now_ms() + ROUND_BUDGET_MS;
    while (rounds < ROUNDS && now_ms() < deadline) {
        seen_t sn = {.last = -1};
        if (!one_round(port, &sn))
            failed++;
        total.dups += sn.dups;
        total.gaps += sn.gaps;
        total.reordered += sn.reordered;
        rounds++;
    }
    atomic_store(&stop, true);
    pthread_join(bth, NULL);
    pthread_join(dth, NULL);
    fprintf(stderr,
            "test_rt_upgrade: %d upgrades (%d failed), %ld broadcasts: %ld duplicated, "
            "%ld out of order, %ld missing\n",
            rounds, failed, atomic_load(&seq), total.dups, total.reordered, total.gaps);
    CHECK(rounds >= 20);
    CHECK_EQ_INT(failed, 0);
    CHECK_EQ_INT(atomic_load(&broadcast_err), 0);
    CHECK_EQ_INT((int)total.dups, 0);
    CHECK_EQ_INT((int)total.reordered, 0);
    CHECK_EQ_INT((int)total.gaps, 0);

    for (int i = 0; i < NDRAIN; i++) {
        if (drain[i] >= 0)
            close(drain[i]);
    }
    rt_test_stop(rt);
    return test_report("test_rt_upgrade");
}

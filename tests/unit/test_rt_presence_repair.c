/* SPDX-License-Identifier: MIT */
/*
 * The real-time layer in cluster mode against a real redis-server: presence writes the
 * broker drops while its connection stays up (its queue full: here a small queue and a
 * burst of joins and leaves while Redis is frozen for less than the broker's io timeout)
 * are repaired soon after the queue has room again, without a reconnect: Redis ends up with
 * exactly the node's memberships (no ghost of a left room, no missing joined one).
 */
#include "redis_server.h"
#include "test_rt_server.h"

#include "eio_client.h"
#include "rt_cluster.h"

#define NODE   "node-repair"
#define NROOMS 40 /* joined in a burst; the first half left again */

static eddy_rt_socket_t *_Atomic sock;

static void on_connection(eddy_rt_socket_t *s, void *user_data)
{
    eddy_rt_socket_ref(s);
    atomic_store(&sock, s);
}

static eddy_rt_broker_status_t status(eddy_rt_t *rt)
{
    eddy_rt_broker_status_t st;
    eddy_rt_broker_status(rt, &st);
    return st;
}

static bool up(eddy_rt_t *rt)
{
    eddy_rt_broker_status_t st = status(rt);
    return st.state == 2 && st.ready;
}

static long long redis_int(const char *fmt, const char *a, const char *b)
{
    redisReply *r = redis_cmd(fmt, a, b);
    long long n = r != NULL && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    if (r != NULL)
        freeReplyObject(r);
    return n;
}

/* Redis holds exactly this node's memberships of rooms r0..r<NROOMS-1>: sid in the second
 * half (and those rooms in the rooms index), nobody in the first. */
static bool presence_true(const char *sid)
{
    char key[64], field[128];
    for (int i = 0; i < NROOMS; i++) {
        bool in = i >= NROOMS / 2;
        snprintf(key, sizeof(key), "eddy:{/}:p:r%d", i);
        snprintf(field, sizeof(field), NODE "\x1f%s", sid);
        if (redis_int("HEXISTS %s %s", key, field) != in || redis_int("HLEN %s%s", key, "") != in)
            return false;
        snprintf(field, sizeof(field), NODE "\x1fr%d", i);
        if (redis_int("HEXISTS %s %s", "eddy:{/}:p:\x1c", field) != in)
            return false;
    }
    return true;
}

static void test_dropped_presence_repaired_without_reconnect(void)
{
    rt_cluster_queue_max = 48; /* the joins of r0..r23 fit, the rest is dropped */
    if (!test_server_new("warning"))
        return;
    char url[64];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", redis_port);
    eddy_rt_options_t opts;
    eddy_rt_options_init(&opts);
    opts.redis_url = url;
    opts.node_id = NODE;
    opts.ping_interval_ms = 60000;
    eddy_rt_t *rt = eddy_rt_new(test_server, &opts);
    CHECK(rt != NULL);
    if (rt == NULL)
        return;
    eddy_rt_handlers_t h = {.connection = on_connection};
    eddy_rt_nsp_set_handlers(eddy_rt_of(rt, "/"), &h);
    int port = rt_test_start(rt);
    CHECK(WAIT_FOR(up(rt), 10000));

    char buf[256];
    int fd = eio_ws_connect(port, NULL);
    CHECK(fd >= 0);
    CHECK(eio_ws_recv(fd, buf, sizeof(buf), 2000) && buf[0] == '0');
    eio_ws_send(fd, "40");
    CHECK(eio_ws_recv(fd, buf, sizeof(buf), 2000) && strncmp(buf, "40{\"sid\":", 9) == 0);
    CHECK(WAIT_FOR(atomic_load(&sock) != NULL, 2000));
    eddy_rt_socket_t *s = atomic_load(&sock);
    if (s == NULL)
        goto out;
    eddy_rt_broker_status_t before = status(rt);
    CHECK_EQ_INT((int)before.presence_repairs_total, 0);

    /* Redis frozen well under io_timeout_ms (2 s): the broker waits on its answers, the
     * queue fills, the rest is dropped, and the connection never breaks. Measured without
     * the repair: Redis kept r0..r19 (ghosts: their leaves dropped) and lacked r24..r39
     * (their joins dropped) for good. */
    kill(redis_pid, SIGSTOP);
    char room[16];
    for (int i = 0; i < NROOMS; i++) {
        snprintf(room, sizeof(room), "r%d", i);
        CHECK_EQ_INT(eddy_rt_join(s, room), 0);
    }
    for (int i = 0; i < NROOMS / 2; i++) {
        snprintf(room, sizeof(room), "r%d", i);
        CHECK_EQ_INT(eddy_rt_leave(s, room), 0);
    }
    struct timespec t = {0, 300 * 1000000L};
    nanosleep(&t, NULL);
    kill(redis_pid, SIGCONT);
    CHECK(status(rt).dropped_total > before.dropped_total);

    /* Converges to the truth, with the connection up all along. */
    CHECK(WAIT_FOR(presence_true(eddy_rt_socket_id(s)), 8000));
    /* One namespace repaired (more only if a later period dropped again): eddy_rt_broker_status()
     * and so /metrics' eddy_broker_presence_repairs_total count it. */
    CHECK(WAIT_FOR(status(rt).presence_repairs_total >= 1, 2000));
    eddy_rt_broker_status_t after = status(rt);
    CHECK_EQ_INT((int)after.reconnects_total, (int)before.reconnects_total);
    CHECK_EQ_INT((int)after.gaps_total, (int)before.gaps_total);
    CHECK(after.state == 2);
    eddy_rt_socket_unref(s);
out:
    if (fd >= 0)
        close(fd);
    rt_test_stop(rt);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    redis_port = free_port();
    redis_start();
    test_dropped_presence_repaired_without_reconnect();
    redis_kill();
    return test_report("test_rt_presence_repair");
}

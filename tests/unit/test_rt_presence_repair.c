/* SPDX-License-Identifier: MIT */
/*
 * The real-time layer in cluster mode against a real redis-server: presence writes the
 * broker drops while its connection stays up (its queue full: here a small queue and a
 * burst of joins and leaves while Redis is frozen for less than the broker's io timeout)
 * are repaired soon after the queue has room again, without a reconnect: Redis ends up with
 * exactly the node's memberships (no ghost of a left room, no missing joined one). A
 * restore (after a Redis restart) or a repair of more memberships than the queue holds is
 * paced to its room: it drops nothing and converges.
 */
#include "redis_server.h"
#include "test_rt_server.h"

#include "eio_client.h"
#include "rt_cluster.h"

#define NODE   "node-repair"
#define NROOMS 40  /* joined in a burst; the first half left again */
#define NMANY  300 /* 600 presence writes to restore: over 12 times the queue */

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

/* What presence_true() last found wrong, printed when the wait for it fails. */
static char presence_wrong[128];

/* Redis holds exactly this node's memberships of rooms r0..r<n-1>: sid in rooms from
 * first_in on (and those rooms in the rooms index), nobody in those before. */
static bool presence_true(const char *sid, int first_in, int n)
{
    char key[64], field[128];
    for (int i = 0; i < n; i++) {
        bool in = i >= first_in;
        snprintf(key, sizeof(key), "eddy:{/}:p:r%d", i);
        snprintf(field, sizeof(field), NODE "\x1f%s", sid);
        long long member = redis_int("HEXISTS %s %s", key, field);
        long long size = redis_int("HLEN %s%s", key, "");
        snprintf(field, sizeof(field), NODE "\x1fr%d", i);
        long long listed = redis_int("HEXISTS %s %s", "eddy:{/}:p:\x1c", field);
        if (member != in || size != in || listed != in) {
            snprintf(presence_wrong, sizeof(presence_wrong),
                     "r%d: member %lld, members %lld, listed %lld (want %d)", i, member, size,
                     listed, in);
            return false;
        }
    }
    return true;
}

static void node_stop(eddy_rt_t *rt, eddy_rt_socket_t *s, int fd)
{
    if (s != NULL)
        eddy_rt_socket_unref(s);
    if (fd >= 0)
        close(fd);
    if (rt != NULL)
        rt_test_stop(rt);
}

/* A layer on the test Redis with a 48-request broker queue, serving one Engine.IO client
 * (*fd) whose socket on "/" is returned (referenced), or NULL (nothing left running). */
static eddy_rt_socket_t *node_start(eddy_rt_t **rtp, int *fd)
{
    *rtp = NULL;
    *fd = -1;
    atomic_store(&sock, NULL);
    rt_cluster_queue_max = 48;
    if (!test_server_new("warning"))
        return NULL;
    char url[64];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", redis_port);
    eddy_rt_options_t opts;
    eddy_rt_options_init(&opts);
    opts.redis_url = url;
    opts.node_id = NODE;
    opts.ping_interval_ms = 60000;
    eddy_rt_t *rt = eddy_rt_new(test_server, &opts);
    CHECK(rt != NULL);
    if (rt == NULL) {
        eddy_server_free(test_server);
        return NULL;
    }
    *rtp = rt;
    eddy_rt_handlers_t h = {.connection = on_connection};
    eddy_rt_nsp_set_handlers(eddy_rt_of(rt, "/"), &h);
    int port = rt_test_start(rt);
    CHECK(WAIT_FOR(up(rt), 10000));

    char buf[256];
    *fd = eio_ws_connect(port, NULL);
    CHECK(*fd >= 0);
    CHECK(eio_ws_recv(*fd, buf, sizeof(buf), 2000) && buf[0] == '0');
    eio_ws_send(*fd, "40");
    CHECK(eio_ws_recv(*fd, buf, sizeof(buf), 2000) && strncmp(buf, "40{\"sid\":", 9) == 0);
    CHECK(WAIT_FOR(atomic_load(&sock) != NULL, 2000));
    if (atomic_load(&sock) == NULL)
        node_stop(rt, NULL, *fd);
    return atomic_load(&sock);
}

/* Waits for Redis to hold exactly this node's memberships (presence_true()); prints what
 * is still wrong if it never does. */
static bool presence_converges(eddy_rt_t *rt, eddy_rt_socket_t *s, int first_in, int n)
{
    bool right = WAIT_FOR(presence_true(eddy_rt_socket_id(s), first_in, n), 8000);
    if (!right) {
        eddy_rt_broker_status_t st = status(rt);
        fprintf(stderr,
                "presence still wrong: %s; broker state %d ready %d, dropped %llu, repairs %llu, "
                "reconnects %llu\n",
                presence_wrong, st.state, st.ready, (unsigned long long)st.dropped_total,
                (unsigned long long)st.presence_repairs_total,
                (unsigned long long)st.reconnects_total);
    }
    return right;
}

static void test_dropped_presence_repaired_without_reconnect(void)
{
    /* The joins of r0..r23 fit in the queue, the rest is dropped. */
    eddy_rt_t *rt;
    int fd;
    eddy_rt_socket_t *s = node_start(&rt, &fd);
    if (s == NULL)
        return;
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
    uint64_t dropped = status(rt).dropped_total;
    CHECK(dropped > before.dropped_total);

    /* Converges to the truth, with the connection up all along, and the repair (the
     * restore of 20 rooms, 40 writes, then the sweep's 40 reads and 40 deletes against a
     * 48-request queue) drops nothing more. */
    CHECK(presence_converges(rt, s, NROOMS / 2,
                             NROOMS)); /* One namespace repaired (more only if a later period
                                        * dropped again): eddy_rt_broker_status() and so /metrics'
                                        * eddy_broker_presence_repairs_total count it. */
    CHECK(WAIT_FOR(status(rt).presence_repairs_total >= 1, 2000));
    eddy_rt_broker_status_t after = status(rt);
    CHECK_EQ_INT((int)after.reconnects_total, (int)before.reconnects_total);
    CHECK_EQ_INT((int)after.gaps_total, (int)before.gaps_total);
    CHECK_EQ_INT((int)after.dropped_total, (int)dropped);
    CHECK(after.state == 2);
    node_stop(rt, s, fd);
}

/* A Redis restart loses every presence entry: the reconnect's restore writes NMANY
 * memberships again (twice the writes: the rooms index too), from the broker's own thread,
 * through a queue of 48. Unpaced it overflowed and each repair overflowed again: Redis
 * never got them all. */
static void test_restore_larger_than_the_queue(void)
{
    redisReply *r = redis_cmd("FLUSHALL"); /* the first test's node left entries */
    if (r != NULL)
        freeReplyObject(r);
    eddy_rt_t *rt;
    int fd;
    eddy_rt_socket_t *s = node_start(&rt, &fd);
    if (s == NULL)
        return;
    char room[16];
    for (int i = 0; i < NMANY; i++) {
        snprintf(room, sizeof(room), "r%d", i);
        CHECK_EQ_INT(eddy_rt_join(s, room), 0);
        if (i % 10 == 9) /* joins at the pace of the queue: none dropped */
            CHECK(WAIT_FOR(status(rt).buffered == 0, 2000));
    }
    CHECK(presence_converges(rt, s, 0, NMANY));
    eddy_rt_broker_status_t before = status(rt);
    CHECK_EQ_INT((int)before.dropped_total, 0);

    redis_kill();
    redis_start();
    CHECK(WAIT_FOR(status(rt).reconnects_total > before.reconnects_total, 10000));
    CHECK(presence_converges(rt, s, 0, NMANY));
    eddy_rt_broker_status_t after = status(rt);
    CHECK_EQ_INT((int)after.dropped_total, 0);
    CHECK_EQ_INT((int)after.presence_repairs_total, 0);
    node_stop(rt, s, fd);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    redis_port = free_port();
    redis_start();
    test_dropped_presence_repaired_without_reconnect();
    test_restore_larger_than_the_queue();
    redis_kill();
    return test_report("test_rt_presence_repair");
}

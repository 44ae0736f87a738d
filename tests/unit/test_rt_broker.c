/* SPDX-License-Identifier: MIT */
/*
 * The broker seam (rt/rt_broker.h): a conformance suite that runs the same cases against
 * both engines, in-memory and Redis (what one node sees: positions and their order,
 * interest, history all-or-nothing and its gaps, session records, presence, stats), then
 * the Redis engine's own cases (several nodes, Redis faults, the emitter format). Redis is
 * a real redis-server that the test starts on a free loopback port (persistence off), with
 * two or three brokers in this process acting as nodes. Results and deliveries run on the
 * Redis brokers' threads, or on the calling thread for the in-memory one (no server
 * configured), so the handlers below record under a mutex and the checks poll with
 * bounded deadlines. The in-memory engine's own cases are in test_rt_broker_memory.c.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "redis_server.h"
#include "rt_broker.h"
#include "test.h"
#include "test_server.h"

/* ---------------------------------------------------------------------------------------
 * A node: a broker and what it received
 * ------------------------------------------------------------------------------------- */

#define MAX_GOT 8192

typedef struct got {
    rt_position_t pos;
    bool own;
    char nsp[24];
    char payload[32];
    char rooms[64]; /* rooms joined by ',' */
    char except[64];
} got_t;

typedef struct node {
    rt_broker_t *b;
    pthread_mutex_t lock;
    got_t got[MAX_GOT];
    size_t ngot;
    rt_broker_state_event_t states[64];
    size_t nstates;
    /* Node requests received: how many, the last one's data and id. */
    size_t nreqs;
    char last_req[96];
    uint64_t last_req_id;
    size_t req_errors; /* calls the handler saw fail (CHECK is for the main thread) */
} node_t;

static void join_names(char *out, size_t size, const char *const *names, size_t n)
{
    out[0] = 0;
    for (size_t i = 0; i < n; i++)
        snprintf(out + strlen(out), size - strlen(out), "%s%s", i ? "," : "", names[i]);
}

static void record(got_t *g, const rt_broker_delivery_t *d)
{
    g->pos = d->pos;
    g->own = d->own;
    snprintf(g->nsp, sizeof(g->nsp), "%s", d->msg.nsp);
    snprintf(g->payload, sizeof(g->payload), "%.*s", (int)d->msg.payload_len,
             (const char *)d->msg.payload);
    join_names(g->rooms, sizeof(g->rooms), d->msg.rooms, d->msg.nrooms);
    join_names(g->except, sizeof(g->except), d->msg.except, d->msg.nexcept);
}

static void on_deliver(rt_broker_t *b, const rt_broker_delivery_t *d, void *ud)
{
    node_t *n = ud;
    pthread_mutex_lock(&n->lock);
    if (n->ngot < MAX_GOT)
        record(&n->got[n->ngot++], d);
    pthread_mutex_unlock(&n->lock);
}

static void on_state(rt_broker_t *b, const rt_broker_state_event_t *ev, void *ud)
{
    node_t *n = ud;
    pthread_mutex_lock(&n->lock);
    if (n->nstates < 64)
        n->states[n->nstates++] = *ev;
    pthread_mutex_unlock(&n->lock);
}

static size_t ngot(node_t *n)
{
    pthread_mutex_lock(&n->lock);
    size_t v = n->ngot;
    pthread_mutex_unlock(&n->lock);
    return v;
}

static bool saw_state(node_t *n, rt_broker_state_t st, bool gap)
{
    pthread_mutex_lock(&n->lock);
    bool found = false;
    for (size_t i = 0; i < n->nstates; i++)
        found |= n->states[i].state == st && n->states[i].gap == gap;
    pthread_mutex_unlock(&n->lock);
    return found;
}

/* Answers a node request with "<data>@<node id>"; data "silent" or "silent:<this node's
 * id>" is not answered (a frozen node), "sub:<room>" subscribes to room first (a remote
 * join). */
static void on_request(rt_broker_t *b, const rt_broker_request_t *req, void *ud)
{
    node_t *n = ud;
    char data[96];
    snprintf(data, sizeof(data), "%.*s", (int)req->len, (const char *)req->data);
    pthread_mutex_lock(&n->lock);
    n->nreqs++;
    snprintf(n->last_req, sizeof(n->last_req), "%s", data);
    n->last_req_id = req->id;
    pthread_mutex_unlock(&n->lock);
    int rc = 0;
    if (strncmp(data, "sub:", 4) == 0)
        rc = rt_broker_subscribe(b, "/", data + 4);
    if (rc == 0 && req->id != 0 && strcmp(data, "silent") != 0 &&
        !(strncmp(data, "silent:", 7) == 0 && strcmp(data + 7, rt_broker_node_id(b)) == 0)) {
        char answer[192];
        int len = snprintf(answer, sizeof(answer), "%s@%s", data, rt_broker_node_id(b));
        rc = rt_broker_respond(b, req->origin, req->key, req->id, answer, (size_t)len);
    }
    if (rc != 0) {
        pthread_mutex_lock(&n->lock);
        n->req_errors++;
        pthread_mutex_unlock(&n->lock);
    }
}

static void node_start(node_t *n, rt_broker_redis_config_t *cfg)
{
    memset(n, 0, sizeof(*n));
    pthread_mutex_init(&n->lock, NULL);
    rt_broker_redis_config_t def;
    if (!cfg) {
        rt_broker_redis_config_init(&def);
        cfg = &def;
    }
    cfg->port = redis_port;
    rt_broker_handlers_t h = {.deliver = on_deliver, .state = on_state, .request = on_request};
    n->b = rt_broker_redis_new(cfg, &h, n);
    CHECK(n->b != NULL);
    CHECK(WAIT_FOR(rt_broker_ready(n->b, NULL), 5000));
}

/* An engine under the conformance suite (shard: the sharded engine over three in-memory
 * brokers, so that every operation goes through its routing and comes back with the
 * sharded broker as b). */
typedef struct engine {
    const char *name;
    bool redis;
    bool shard;
} engine_t;

static const engine_t engines[] = {
    {"memory", false, false}, {"redis", true, false}, {"sharded memory", false, true}};

static rt_broker_t *make_memory_shard(size_t i, const char *node_id, const rt_broker_handlers_t *h,
                                      void *hud, void *arg)
{
    rt_broker_memory_config_t cfg = *(const rt_broker_memory_config_t *)arg;
    cfg.node_id = node_id != NULL ? node_id : cfg.node_id;
    return rt_broker_memory_new(&cfg, h, hud);
}

/* A handler must get the broker its user created, not one of the shards (noted here on
 * the broker's thread, checked on the test's). */
static rt_broker_t *shard_outer;
static atomic_bool wrong_broker;

static void outer_check(rt_broker_t *b)
{
    if (shard_outer != NULL && b != shard_outer)
        atomic_store(&wrong_broker, true);
}

static void on_deliver_outer(rt_broker_t *b, const rt_broker_delivery_t *d, void *ud)
{
    outer_check(b);
    on_deliver(b, d, ud);
}

/* A node of engine e, with history_max entries per room and history_max_entries per read
 * (0: the defaults). */
static void node_start_on(node_t *n, const engine_t *e, size_t history_max,
                          size_t history_max_entries)
{
    if (e->redis) {
        rt_broker_redis_config_t cfg;
        rt_broker_redis_config_init(&cfg);
        if (history_max)
            cfg.history_max = history_max;
        if (history_max_entries)
            cfg.history_max_entries = history_max_entries;
        node_start(n, &cfg);
        return;
    }
    memset(n, 0, sizeof(*n));
    pthread_mutex_init(&n->lock, NULL);
    rt_broker_memory_config_t cfg;
    rt_broker_memory_config_init(&cfg);
    if (history_max)
        cfg.history_max = history_max;
    if (history_max_entries)
        cfg.history_max_entries = history_max_entries;
    rt_broker_handlers_t h = {.deliver = on_deliver, .state = on_state, .request = on_request};
    if (e->shard) {
        static const char *const names[] = {"one:6379/0", "two:6379/0", "three:6379/0"};
        h.deliver = on_deliver_outer;
        n->b = shard_outer = rt_broker_shard_new(names, 3, make_memory_shard, &cfg, &h, n);
    } else {
        n->b = rt_broker_memory_new(&cfg, &h, n);
    }
    CHECK(n->b != NULL);
    CHECK(rt_broker_ready(n->b, NULL));
}

static void node_stop(node_t *n)
{
    if (n->b == shard_outer) {
        CHECK(!atomic_load(&wrong_broker));
        shard_outer = NULL;
    }
    rt_broker_free(n->b);
    pthread_mutex_destroy(&n->lock);
}

/* Waiting for one asynchronous result. */
typedef struct waiter {
    atomic_int done;
    int err;
    rt_position_t pos;
    size_t n;
    got_t entries[2048];
    char data[64];
    size_t len;
} waiter_t;

static void on_published(rt_broker_t *b, int err, rt_position_t pos, void *arg)
{
    outer_check(b);
    waiter_t *w = arg;
    w->err = err;
    w->pos = pos;
    atomic_store(&w->done, 1);
}

static void on_history(rt_broker_t *b, int err, rt_position_t top, const rt_broker_delivery_t *e,
                       size_t n, void *arg)
{
    outer_check(b);
    waiter_t *w = arg;
    w->err = err;
    w->pos = top;
    w->n = n;
    for (size_t i = 0; i < n && i < 2048; i++)
        record(&w->entries[i], &e[i]);
    atomic_store(&w->done, 1);
}

static void on_session(rt_broker_t *b, int err, const void *data, size_t len, void *arg)
{
    outer_check(b);
    waiter_t *w = arg;
    w->err = err;
    w->len = len < sizeof(w->data) ? len : sizeof(w->data);
    if (data)
        memcpy(w->data, data, w->len);
    atomic_store(&w->done, 1);
}

static void on_presence(rt_broker_t *b, int err, const rt_broker_presence_t *e, size_t n, void *arg)
{
    outer_check(b);
    waiter_t *w = arg;
    w->err = err;
    w->n = n;
    for (size_t i = 0; i < n && i < 2048; i++) {
        snprintf(w->entries[i].nsp, sizeof(w->entries[i].nsp), "%s", e[i].node);
        snprintf(w->entries[i].rooms, sizeof(w->entries[i].rooms), "%s", e[i].member);
        snprintf(w->entries[i].payload, sizeof(w->entries[i].payload), "%.*s", (int)e[i].info_len,
                 (const char *)e[i].info);
    }
    atomic_store(&w->done, 1);
}

static waiter_t *waiter(void)
{
    return calloc(1, sizeof(waiter_t));
}

static int publish_wait(node_t *n, const char *nsp, const char *const *rooms, size_t nrooms,
                        const char *const *except, size_t nexcept, const char *payload,
                        rt_position_t *pos)
{
    waiter_t *w = waiter();
    rt_broker_msg_t m = {nsp, rooms, nrooms, except, nexcept, 7, payload, strlen(payload)};
    int rc = rt_broker_publish(n->b, &m, 0, on_published, w);
    if (rc == 0) {
        CHECK(WAIT_FOR(atomic_load(&w->done), 5000));
        rc = w->err;
        if (pos)
            *pos = w->pos;
    }
    free(w);
    return rc;
}

/* A history read: also the proof that subscriptions asked for before it are active. */
static waiter_t *history_wait(node_t *n, const char *nsp, rt_position_t after,
                              const char *const *rooms, size_t nrooms)
{
    waiter_t *w = waiter();
    CHECK_EQ_INT(rt_broker_history(n->b, nsp, after, rooms, nrooms, 0, on_history, w), 0);
    CHECK(WAIT_FOR(atomic_load(&w->done), 5000));
    return w;
}

static void sync_subs(node_t *n)
{
    free(history_wait(n, "/sync", (rt_position_t){0, 0}, NULL, 0));
}

/* ---------------------------------------------------------------------------------------
 * Tests
 * ------------------------------------------------------------------------------------- */

/* Publish and delivery: only to nodes with interest, once per broadcast however many of
 * its rooms a node holds, with its position and fields; interests are reference counted.
 * With Redis a second node receives what the first publishes (not own); in memory the
 * one node receives its own broadcasts. */
static void test_publish_and_interest(const engine_t *e)
{
    node_t *a = calloc(1, sizeof(node_t)), *b = NULL;
    node_start_on(a, e, 0, 0);
    if (e->redis) {
        b = calloc(1, sizeof(node_t));
        node_start(b, NULL);
        CHECK(strcmp(rt_broker_node_id(a->b), rt_broker_node_id(b->b)) != 0);
    }
    node_t *rx = b ? b : a; /* the receiving node */
    char ids[4][RT_BROKER_NODE_ID_SIZE];
    CHECK(rt_broker_nodes(rx->b, ids, 4) >= 1);

    CHECK_EQ_INT(rt_broker_subscribe(rx->b, "/", "r1"), 0);
    CHECK_EQ_INT(rt_broker_subscribe(rx->b, "/", "r2"), 0);
    if (b)
        CHECK_EQ_INT(rt_broker_subscribe(a->b, "/", "r2"), 0);
    sync_subs(a);
    sync_subs(rx);

    rt_position_t p1, p2, p3;
    const char *r1[] = {"r1"}, *r2[] = {"r2"}, *both[] = {"r1", "r2"}, *ex[] = {"x"};
    CHECK_EQ_INT(publish_wait(a, "/", r1, 1, ex, 1, "one", &p1), 0);
    CHECK_EQ_INT(publish_wait(a, "/", r2, 1, NULL, 0, "two", &p2), 0);
    CHECK_EQ_INT(publish_wait(rx, "/", both, 2, NULL, 0, "three", &p3), 0);
    CHECK_EQ_INT(p1.seq, 1);
    CHECK_EQ_INT(p2.seq, 2);
    CHECK_EQ_INT(p3.seq, 3);
    CHECK(p1.epoch != 0 && p1.epoch == p2.epoch && p2.epoch == p3.epoch);
    CHECK(p1.epoch < (1ull << RT_HISTORY_EPOCH_BITS));

    CHECK(WAIT_FOR(ngot(rx) >= 3, 5000));
    if (b)
        CHECK(WAIT_FOR(ngot(a) >= 2, 5000));
    sleep_ms(50); /* a duplicate would arrive right behind */
    CHECK_EQ_INT(ngot(rx), 3);
    CHECK_EQ_INT(rx->got[0].pos.seq, 1);
    CHECK_EQ_INT(rx->got[0].pos.epoch, p1.epoch);
    CHECK_STR(rx->got[0].payload, "one");
    CHECK_STR(rx->got[0].rooms, "r1");
    CHECK_STR(rx->got[0].except, "x");
    CHECK_STR(rx->got[0].nsp, "/");
    CHECK(rx->got[0].own == !b);
    CHECK_STR(rx->got[2].payload, "three");
    CHECK_STR(rx->got[2].rooms, "r1,r2");
    CHECK(rx->got[2].own);
    if (b) {
        /* a holds r2 only: "one" (r1) never reached it, "two" and "three" did. */
        CHECK_EQ_INT(ngot(a), 2);
        CHECK_STR(a->got[0].payload, "two");
        CHECK(a->got[0].own);
        CHECK_STR(a->got[1].payload, "three");
    }

    /* Reference counts: two references, one dropped, still subscribed; both dropped, not. */
    CHECK_EQ_INT(rt_broker_subscribe(rx->b, "/", "r1"), 0);
    CHECK_EQ_INT(rt_broker_unsubscribe(rx->b, "/", "r1"), 0);
    sync_subs(rx);
    CHECK_EQ_INT(publish_wait(a, "/", r1, 1, NULL, 0, "four", NULL), 0);
    CHECK(WAIT_FOR(ngot(rx) == 4, 5000));
    CHECK_EQ_INT(rt_broker_unsubscribe(rx->b, "/", "r1"), 0);
    CHECK_EQ_INT(rt_broker_unsubscribe(rx->b, "/", "r1"), EDDY_ENOTFOUND);
    sync_subs(rx);
    CHECK_EQ_INT(publish_wait(a, "/", r1, 1, NULL, 0, "five", NULL), 0);
    CHECK_EQ_INT(publish_wait(a, "/", r2, 1, NULL, 0, "six", NULL), 0);
    CHECK(WAIT_FOR(ngot(rx) == 5, 5000));
    CHECK_STR(rx->got[4].payload, "six");

    /* The whole namespace (room NULL): its channel carries broadcasts to the whole
     * namespace only, not to its rooms; another namespace has its own seq. */
    CHECK_EQ_INT(rt_broker_subscribe(rx->b, "/chat", NULL), 0);
    sync_subs(rx);
    rt_position_t pc;
    CHECK_EQ_INT(publish_wait(a, "/chat", r1, 1, NULL, 0, "room of /chat", &pc), 0);
    CHECK_EQ_INT(pc.seq, 1);
    CHECK_EQ_INT(publish_wait(a, "/chat", NULL, 0, NULL, 0, "all", &pc), 0);
    CHECK_EQ_INT(pc.seq, 2);
    CHECK(WAIT_FOR(ngot(rx) == 6, 5000));
    sleep_ms(50);
    CHECK_EQ_INT(ngot(rx), 6);
    CHECK_STR(rx->got[5].nsp, "/chat");
    CHECK_STR(rx->got[5].payload, "all");
    CHECK_STR(rx->got[5].rooms, "");

    rt_broker_stats_t st;
    rt_broker_stats(rx->b, &st);
    CHECK_EQ_INT(st.delivered, 6);
    CHECK_EQ_INT(st.published, b ? 1 : 8);
    CHECK_EQ_INT(st.subscriptions, 2); /* r2 and /chat */
    CHECK_EQ_INT(st.dropped, 0);
    CHECK_EQ_INT(st.buffered, 0);
    CHECK_EQ_INT(rt_broker_state(rx->b), RT_BROKER_UP);

    /* Bad arguments. */
    rt_broker_msg_t bad = {"/a}b", NULL, 0, NULL, 0, 0, "x", 1};
    CHECK_EQ_INT(rt_broker_publish(a->b, &bad, 0, NULL, NULL), EDDY_EINVAL);
    CHECK_EQ_INT(rt_broker_subscribe(a->b, "/", "a}"), EDDY_EINVAL);
    CHECK_EQ_INT(rt_broker_unsubscribe(a->b, "/", "never"), EDDY_ENOTFOUND);
    CHECK_EQ_INT(rt_broker_history(a->b, "/", (rt_position_t){0, 0}, NULL, 0, 0, NULL, NULL),
                 EDDY_EINVAL);
    CHECK_EQ_INT(rt_broker_session_put(a->b, "", "x", 1, 1000), EDDY_EINVAL);
    CHECK_EQ_INT(rt_broker_session_put(a->b, "p", "x", 1, 0), EDDY_EINVAL);

    node_stop(a);
    free(a);
    if (b) {
        node_stop(b);
        free(b);
    }
}

typedef struct burst {
    node_t *n;
    const char *tag;
    int count;
} burst_t;

static void *burst_main(void *p)
{
    burst_t *bt = p;
    const char *rooms[] = {"ord"};
    for (int i = 0; i < bt->count; i++) {
        char payload[32];
        snprintf(payload, sizeof(payload), "%s%d", bt->tag, i);
        rt_broker_msg_t m = {"/", rooms, 1, NULL, 0, 0, payload, strlen(payload)};
        while (rt_broker_publish(bt->n->b, &m, 0, NULL, NULL) != 0)
            sleep_ms(1);
    }
    return NULL;
}

/* Two publishers (threads; with Redis, on two nodes) publish concurrently to a room every
 * node holds: each node receives every broadcast once, in seq order (the same order on
 * every node), each publisher's broadcasts in the order it published them, and the
 * history answers the same sequence. */
static void test_order_under_concurrency(const engine_t *e)
{
    node_t *nodes[2] = {calloc(1, sizeof(node_t)), NULL};
    size_t nn = e->redis ? 2 : 1;
    for (size_t i = 0; i < nn; i++) {
        if (!nodes[i])
            nodes[i] = calloc(1, sizeof(node_t));
        node_start_on(nodes[i], e, 5000, 0);
        CHECK_EQ_INT(rt_broker_subscribe(nodes[i]->b, "/", "ord"), 0);
        sync_subs(nodes[i]);
    }
    node_t *a = nodes[0], *b = nodes[nn - 1];
    /* The namespace's position before the burst ("/" was used by the test before). */
    waiter_t *w0 = history_wait(a, "/", (rt_position_t){0, 0}, NULL, 0);
    rt_position_t start = w0->pos;
    free(w0);

    enum { EACH = 800 };
    size_t base_a = ngot(a), base_b = ngot(b);
    pthread_t t1, t2;
    burst_t b1 = {a, "a", EACH}, b2 = {b, "b", EACH};
    pthread_create(&t1, NULL, burst_main, &b1);
    pthread_create(&t2, NULL, burst_main, &b2);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    CHECK(WAIT_FOR(ngot(a) - base_a == 2 * EACH && ngot(b) - base_b == 2 * EACH, 20000));
    int ordered = 1, same = 1, next_a = 0, next_b = 0, fifo = 1;
    for (size_t i = 0; i < 2 * EACH; i++) {
        got_t *ga = &a->got[base_a + i], *gb = &b->got[base_b + i];
        if (ga->pos.seq != start.seq + 1 + i || ga->pos.epoch != start.epoch)
            ordered = 0;
        if (ga->pos.seq != gb->pos.seq || strcmp(ga->payload, gb->payload) != 0)
            same = 0;
        /* Each publisher's broadcasts keep its order. */
        int k = atoi(ga->payload + 1);
        if (ga->payload[0] == 'a')
            fifo &= k == next_a++;
        else
            fifo &= k == next_b++;
    }
    CHECK(ordered);
    CHECK(same);
    CHECK(fifo);

    waiter_t *h = history_wait(b, "/", start, (const char *[]){"ord"}, 1);
    CHECK_EQ_INT(h->err, 0);
    CHECK_EQ_INT(h->n, 2 * EACH);
    int hist_same = 1;
    for (size_t i = 0; i < h->n && i < 2 * EACH; i++)
        hist_same &= h->entries[i].pos.seq == a->got[base_a + i].pos.seq &&
                     strcmp(h->entries[i].payload, a->got[base_a + i].payload) == 0;
    CHECK(hist_same);
    CHECK_EQ_INT(h->pos.seq, start.seq + 2 * EACH);
    free(h);
    for (size_t i = 0; i < nn; i++) {
        node_stop(nodes[i]);
        free(nodes[i]);
    }
}

/* Recovery reads: exactly what followed a position for a session's rooms (namespace-wide
 * broadcasts included, except-rooms applied, a broadcast to two of its rooms once), and
 * "not recovered" for another epoch, a position ahead, a trimmed stream or more entries
 * than one read returns (history_max_entries 8). */
static void test_history(const engine_t *e)
{
    node_t *a = calloc(1, sizeof(node_t));
    node_start_on(a, e, 10, 8);
    const char *h1[] = {"h1"}, *h2[] = {"h2"}, *both[] = {"h1", "h2"}, *ex[] = {"h2"};
    rt_position_t p0, last;
    /* A new session's position at connect, before anything was published: a read from
     * {0, 0} answers "not recovered" with the namespace's (new) epoch and seq 0, and a read
     * from there later is complete. */
    waiter_t *w = history_wait(a, "/h", (rt_position_t){0, 0}, NULL, 0);
    CHECK_EQ_INT(w->err, RT_HISTORY_GAP);
    CHECK(w->pos.epoch != 0);
    CHECK_EQ_INT(w->pos.seq, 0);
    rt_position_t at_connect = w->pos;
    free(w);
    CHECK_EQ_INT(publish_wait(a, "/h", h1, 1, NULL, 0, "before", &p0), 0);
    CHECK_EQ_INT(publish_wait(a, "/h", h2, 1, NULL, 0, "h2 only", NULL), 0);
    CHECK_EQ_INT(publish_wait(a, "/h", NULL, 0, NULL, 0, "to all", NULL), 0);
    CHECK_EQ_INT(publish_wait(a, "/h", NULL, 0, ex, 1, "all but h2", NULL), 0);
    CHECK_EQ_INT(publish_wait(a, "/h", both, 2, NULL, 0, "h1 and h2", &last), 0);

    CHECK_EQ_INT(p0.epoch, at_connect.epoch);
    w = history_wait(a, "/h", at_connect, h1, 1);
    CHECK_EQ_INT(w->err, 0);
    CHECK_EQ_INT(w->n, 4); /* before, to all, all but h2, h1 and h2 */
    CHECK_STR(w->entries[0].payload, "before");
    free(w);
    w = history_wait(a, "/h", p0, both, 2);
    CHECK_EQ_INT(w->err, 0);
    CHECK_EQ_INT(w->n, 3);
    CHECK_STR(w->entries[0].payload, "h2 only");
    CHECK_STR(w->entries[1].payload, "to all");
    CHECK_STR(w->entries[2].payload, "h1 and h2");
    CHECK_EQ_INT(w->pos.seq, last.seq);
    CHECK_EQ_INT(w->pos.epoch, p0.epoch);
    free(w);
    w = history_wait(a, "/h", p0, h1, 1);
    CHECK_EQ_INT(w->err, 0);
    CHECK_EQ_INT(w->n, 3);
    CHECK_STR(w->entries[1].payload, "all but h2");
    free(w);
    /* Up to date: complete and empty. */
    w = history_wait(a, "/h", last, h1, 1);
    CHECK_EQ_INT(w->err, 0);
    CHECK_EQ_INT(w->n, 0);
    free(w);
    /* Another epoch, a position ahead. */
    w = history_wait(a, "/h", (rt_position_t){p0.epoch ^ 1, 0}, h1, 1);
    CHECK_EQ_INT(w->err, RT_HISTORY_GAP);
    free(w);
    w = history_wait(a, "/h", (rt_position_t){p0.epoch, last.seq + 1}, h1, 1);
    CHECK_EQ_INT(w->err, RT_HISTORY_GAP);
    free(w);

    /* A burst far over MAXLEN ~ 10 trims the stream: reading from before it is a gap,
     * reading the newest few is complete. */
    rt_position_t top = last;
    for (int i = 0; i < 600; i++) {
        char payload[16];
        snprintf(payload, sizeof(payload), "b%d", i);
        rt_broker_msg_t m = {"/h", h1, 1, NULL, 0, 0, payload, strlen(payload)};
        CHECK_EQ_INT(rt_broker_publish(a->b, &m, 0, NULL, NULL), 0);
    }
    CHECK_EQ_INT(publish_wait(a, "/h", h1, 1, NULL, 0, "b600", &top), 0);
    w = history_wait(a, "/h", last, h1, 1);
    CHECK_EQ_INT(w->err, RT_HISTORY_GAP);
    free(w);
    w = history_wait(a, "/h", (rt_position_t){top.epoch, top.seq - 5}, h1, 1);
    CHECK_EQ_INT(w->err, 0);
    CHECK_EQ_INT(w->n, 5);
    CHECK_STR(w->entries[0].payload, "b596");
    CHECK_STR(w->entries[4].payload, "b600");
    free(w);
    /* All or nothing: 9 entries to send, over the 8 a read may return; 8 are sent. */
    w = history_wait(a, "/h", (rt_position_t){top.epoch, top.seq - 9}, h1, 1);
    CHECK_EQ_INT(w->err, RT_HISTORY_GAP);
    CHECK_EQ_INT(w->n, 0);
    CHECK_EQ_INT(w->pos.seq, top.seq);
    free(w);
    w = history_wait(a, "/h", (rt_position_t){top.epoch, top.seq - 8}, h1, 1);
    CHECK_EQ_INT(w->err, 0);
    CHECK_EQ_INT(w->n, 8);
    free(w);
    if (!e->redis) {
        node_stop(a);
        free(a);
        return;
    }
    /* The stream is bounded (approximately: whole radix nodes go). */
    redisReply *r = redis_cmd("XLEN eddy:{/h}:x:h1");
    CHECK(r && r->type == REDIS_REPLY_INTEGER && r->integer < 300);
    if (r)
        freeReplyObject(r);

    /* A flushed Redis: a new epoch, the old positions are not recovered. */
    r = redis_cmd("FLUSHALL");
    if (r)
        freeReplyObject(r);
    rt_position_t fresh;
    CHECK_EQ_INT(publish_wait(a, "/h", h1, 1, NULL, 0, "after flush", &fresh), 0);
    CHECK(fresh.epoch != top.epoch);
    CHECK_EQ_INT(fresh.seq, 1);
    w = history_wait(a, "/h", top, h1, 1);
    CHECK_EQ_INT(w->err, RT_HISTORY_GAP);
    free(w);
    /* A flushed script cache: EVALSHA answers NOSCRIPT, the broker falls back to EVAL. */
    r = redis_cmd("SCRIPT FLUSH");
    if (r)
        freeReplyObject(r);
    rt_position_t again;
    CHECK_EQ_INT(publish_wait(a, "/h", h1, 1, NULL, 0, "after script flush", &again), 0);
    CHECK_EQ_INT(again.seq, 2);
    w = history_wait(a, "/h", fresh, h1, 1);
    CHECK_EQ_INT(w->err, 0);
    CHECK_EQ_INT(w->n, 1);
    free(w);
    node_stop(a);
    free(a);
}

static waiter_t *recent_wait(node_t *n, const char *nsp, const char *room, size_t count)
{
    waiter_t *w = waiter();
    CHECK_EQ_INT(rt_broker_recent(n->b, nsp, room, count, 0, on_history, w), 0);
    CHECK(WAIT_FOR(atomic_load(&w->done), 5000));
    return w;
}

/* The newest entries of a room (history on join): oldest first, at most n and at most
 * history_max_entries, only that room's stream (the namespace's own with room NULL), with
 * their positions; with Redis another node reads them too (not own). */
static void test_recent(const engine_t *e)
{
    node_t *a = calloc(1, sizeof(node_t));
    node_start_on(a, e, 10, 8);
    const char *r1[] = {"r1"}, *r2[] = {"r2"};
    rt_position_t first, last;
    CHECK_EQ_INT(rt_broker_recent(a->b, "/r", "r1", 0, 0, on_history, NULL), EDDY_EINVAL);
    CHECK_EQ_INT(rt_broker_recent(a->b, "/r", "r1", 1, 0, NULL, NULL), EDDY_EINVAL);
    CHECK_EQ_INT(rt_broker_recent(a->b, "/r", "bad}", 1, 0, on_history, NULL), EDDY_EINVAL);
    waiter_t *w = recent_wait(a, "/r", "r1", 5); /* nothing published yet */
    CHECK_EQ_INT(w->err, 0);
    CHECK_EQ_INT(w->n, 0);
    free(w);
    CHECK_EQ_INT(publish_wait(a, "/r", r1, 1, NULL, 0, "one", &first), 0);
    CHECK_EQ_INT(publish_wait(a, "/r", r2, 1, NULL, 0, "other room", NULL), 0);
    CHECK_EQ_INT(publish_wait(a, "/r", r1, 1, NULL, 0, "two", NULL), 0);
    CHECK_EQ_INT(publish_wait(a, "/r", NULL, 0, NULL, 0, "everyone", NULL), 0);
    CHECK_EQ_INT(publish_wait(a, "/r", r1, 1, NULL, 0, "three", &last), 0);
    w = recent_wait(a, "/r", "r1", 2);
    CHECK_EQ_INT(w->err, 0);
    CHECK_EQ_INT(w->n, 2);
    CHECK_STR(w->entries[0].payload, "two");
    CHECK_STR(w->entries[1].payload, "three");
    CHECK_EQ_INT(w->entries[1].pos.seq, last.seq);
    CHECK_EQ_INT(w->entries[1].pos.epoch, last.epoch);
    CHECK_STR(w->entries[1].rooms, "r1");
    CHECK(w->entries[1].own);
    CHECK_EQ_INT(w->pos.seq, last.seq);
    free(w);
    w = recent_wait(a, "/r", "r1", 100);
    CHECK_EQ_INT(w->n, 3);
    CHECK_STR(w->entries[0].payload, "one");
    CHECK_EQ_INT(w->entries[0].pos.seq, first.seq);
    free(w);
    w = recent_wait(a, "/r", NULL, 100);
    CHECK_EQ_INT(w->n, 1);
    CHECK_STR(w->entries[0].payload, "everyone");
    free(w);
    w = recent_wait(a, "/r", "nobody", 3);
    CHECK_EQ_INT(w->err, 0);
    CHECK_EQ_INT(w->n, 0);
    free(w);
    /* At most history_max_entries (8) per read: the newest. */
    const char *r3[] = {"r3"};
    for (int i = 0; i < 12; i++) {
        char payload[16];
        snprintf(payload, sizeof(payload), "c%d", i);
        CHECK_EQ_INT(publish_wait(a, "/r", r3, 1, NULL, 0, payload, NULL), 0);
    }
    w = recent_wait(a, "/r", "r3", 100);
    CHECK_EQ_INT(w->n, 8);
    CHECK_STR(w->entries[0].payload, "c4");
    CHECK_STR(w->entries[7].payload, "c11");
    free(w);
    if (e->redis) {
        node_t *b = calloc(1, sizeof(node_t));
        rt_broker_redis_config_t cfg;
        rt_broker_redis_config_init(&cfg);
        node_start(b, &cfg);
        w = recent_wait(b, "/r", "r1", 1);
        CHECK_EQ_INT(w->err, 0);
        CHECK_EQ_INT(w->n, 1);
        CHECK_STR(w->entries[0].payload, "three");
        CHECK(!w->entries[0].own);
        free(w);
        node_stop(b);
        free(b);
    }
    node_stop(a);
    free(a);
}

/* Session records: taken once, expired after their TTL, replaced by a put under the same
 * pid; presence: entries of this node set (and replaced), listed and deleted per room;
 * the node lists itself. */
static void test_sessions_presence(const engine_t *e)
{
    node_t *a = calloc(1, sizeof(node_t));
    node_start_on(a, e, 0, 0);
    CHECK_EQ_INT(rt_broker_session_put(a->b, "pid-1", "first", 5, 10000), 0);
    CHECK_EQ_INT(rt_broker_session_put(a->b, "pid-1", "record", 6, 10000), 0);
    CHECK_EQ_INT(rt_broker_session_put(a->b, "pid-2", "short", 5, 50), 0);
    CHECK_EQ_INT(rt_broker_session_put(a->b, "pid-3", "", 0, 10000), 0);
    waiter_t *w = waiter();
    CHECK_EQ_INT(rt_broker_session_take(a->b, "pid-1", 0, on_session, w), 0);
    CHECK(WAIT_FOR(atomic_load(&w->done), 5000));
    CHECK_EQ_INT(w->err, 0);
    CHECK_MEM(w->data, w->len, "record", 6);
    free(w);
    w = waiter();
    CHECK_EQ_INT(rt_broker_session_take(a->b, "pid-1", 0, on_session, w), 0);
    CHECK(WAIT_FOR(atomic_load(&w->done), 5000));
    CHECK_EQ_INT(w->err, EDDY_ENOTFOUND);
    free(w);
    w = waiter();
    CHECK_EQ_INT(rt_broker_session_take(a->b, "pid-3", 0, on_session, w), 0);
    CHECK(WAIT_FOR(atomic_load(&w->done), 5000));
    CHECK_EQ_INT(w->err, 0);
    CHECK_EQ_INT(w->len, 0);
    free(w);
    sleep_ms(100);
    w = waiter();
    CHECK_EQ_INT(rt_broker_session_take(a->b, "pid-2", 0, on_session, w), 0);
    CHECK(WAIT_FOR(atomic_load(&w->done), 5000));
    CHECK_EQ_INT(w->err, EDDY_ENOTFOUND); /* expired */
    free(w);
    CHECK_EQ_INT(rt_broker_session_take(a->b, "pid-2", 0, NULL, NULL), EDDY_EINVAL);
    /* A live record (ttl 0, under a pid the broker made): kept, then taken once. */
    char pid[RT_HISTORY_PID_SIZE];
    rt_broker_session_pid(a->b, pid);
    CHECK_EQ_INT(strlen(pid), RT_HISTORY_PID_LEN);
    CHECK_EQ_INT(rt_broker_session_put(a->b, pid, "live", 4, 0), 0);
    sleep_ms(100);
    for (int i = 0; i < 2; i++) {
        w = waiter();
        CHECK_EQ_INT(rt_broker_session_take(a->b, pid, 0, on_session, w), 0);
        CHECK(WAIT_FOR(atomic_load(&w->done), 5000));
        CHECK_EQ_INT(w->err, i == 0 ? 0 : EDDY_ENOTFOUND);
        if (i == 0)
            CHECK_MEM(w->data, w->len, "live", 4);
        free(w);
    }

    char ids[8][RT_BROKER_NODE_ID_SIZE];
    CHECK(WAIT_FOR(rt_broker_nodes(a->b, ids, 8) == 1, 3000));
    CHECK_STR(ids[0], rt_broker_node_id(a->b));

    CHECK_EQ_INT(rt_broker_presence_set(a->b, "/", "desk", "m1", "old", 3), 0);
    CHECK_EQ_INT(rt_broker_presence_set(a->b, "/", "desk", "m1", "info-1", 6), 0);
    CHECK_EQ_INT(rt_broker_presence_set(a->b, "/", "desk", "m2", "info-2", 6), 0);
    CHECK_EQ_INT(rt_broker_presence_set(a->b, "/", "other", "m3", "", 0), 0);
    CHECK_EQ_INT(rt_broker_presence_set(a->b, "/", NULL, "m3", "", 0), EDDY_EINVAL);
    w = waiter();
    CHECK_EQ_INT(rt_broker_presence_get(a->b, "/", "desk", 0, on_presence, w), 0);
    CHECK(WAIT_FOR(atomic_load(&w->done), 5000));
    CHECK_EQ_INT(w->err, 0);
    CHECK_EQ_INT(w->n, 2);
    bool m1 = false, m2 = false;
    for (size_t i = 0; i < w->n && i < 2; i++) {
        CHECK_STR(w->entries[i].nsp, rt_broker_node_id(a->b)); /* the node */
        m1 |=
            strcmp(w->entries[i].rooms, "m1") == 0 && strcmp(w->entries[i].payload, "info-1") == 0;
        m2 |=
            strcmp(w->entries[i].rooms, "m2") == 0 && strcmp(w->entries[i].payload, "info-2") == 0;
    }
    CHECK(m1 && m2);
    free(w);
    CHECK_EQ_INT(rt_broker_presence_del(a->b, "/", "desk", "m1"), 0);
    CHECK_EQ_INT(rt_broker_presence_del(a->b, "/", "desk", "never"), 0);
    w = waiter();
    CHECK_EQ_INT(rt_broker_presence_get(a->b, "/", "desk", 0, on_presence, w), 0);
    CHECK(WAIT_FOR(atomic_load(&w->done), 5000));
    CHECK_EQ_INT(w->n, 1);
    CHECK_STR(w->entries[0].rooms, "m2");
    free(w);
    CHECK_EQ_INT(rt_broker_presence_del(a->b, "/", "desk", "m2"), 0);
    CHECK_EQ_INT(rt_broker_presence_del(a->b, "/", "other", "m3"), 0);
    w = waiter();
    CHECK_EQ_INT(rt_broker_presence_get(a->b, "/", "desk", 0, on_presence, w), 0);
    CHECK(WAIT_FOR(atomic_load(&w->done), 5000));
    CHECK_EQ_INT(w->err, 0);
    CHECK_EQ_INT(w->n, 0);
    free(w);
    node_stop(a);
    free(a);
}

static int take_on(node_t *n, const char *pid, char *out, size_t cap)
{
    waiter_t *w = waiter();
    CHECK_EQ_INT(rt_broker_session_take(n->b, pid, 0, on_session, w), 0);
    CHECK(WAIT_FOR(atomic_load(&w->done), 5000));
    int err = w->err;
    snprintf(out, cap, "%.*s", (int)w->len, w->data);
    free(w);
    return err;
}

static long long redis_int(const char *fmt, const char *a, const char *b)
{
    redisReply *r = redis_cmd(fmt, a, b);
    long long v = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -100;
    if (r)
        freeReplyObject(r);
    return v;
}

/* The cases about the membership mechanism (not its defaults) beat every 100 ms instead of
 * every second, so a lapsed lease is seen that much sooner. A node's lease stays ten beats
 * long: a slow run (TSan) never sees a live node lapse. */
#define FAST_HEARTBEAT_MS 100

static void fast_heartbeat(rt_broker_redis_config_t *cfg)
{
    rt_broker_redis_config_init(cfg);
    cfg->heartbeat_ms = FAST_HEARTBEAT_MS;
    cfg->lease_ms = 10 * FAST_HEARTBEAT_MS;
}

/* A ghost node that the test plays: each call is its heartbeat, renewing its lease to
 * Redis' clock + GHOST_LEASE_MS; once the calls stop, the lease lapses. True if renewed
 * (so that a WAIT_FOR can keep it alive while it waits). */
#define GHOST_LEASE_MS 1000

static bool ghost_renew(void)
{
    redisReply *t = redis_cmd("TIME");
    bool ok = t && t->type == REDIS_REPLY_ARRAY && t->elements == 2;
    long long now = ok ? atoll(t->element[0]->str) * 1000 + atoll(t->element[1]->str) / 1000 : 0;
    if (t)
        freeReplyObject(t);
    redisReply *r = ok ? redis_cmd("ZADD eddy:nodes %lld ghost", now + GHOST_LEASE_MS) : NULL;
    ok = r && r->type == REDIS_REPLY_INTEGER;
    if (r)
        freeReplyObject(r);
    return ok;
}

/* Redis: live records cost nothing per record after their write: they sit in one hash per
 * node (and pid tag), whose life the heartbeat renews to lease + linger; a disconnect
 * moves a record to its own key; any node takes a live record, even of a node that
 * stopped, until its hash expires; a socket recovered elsewhere keeps its pid and its
 * record moves to that node's hash, still found by the pid. */
static void test_live_sessions(void)
{
    /* A hash lives lease + linger = 800 ms, eight heartbeats: renewed in time on a slow
     * run too. */
    rt_broker_redis_config_t cfg;
    fast_heartbeat(&cfg);
    cfg.lease_ms = 500;
    cfg.session_linger_ms = 300;
    node_t *a = calloc(1, sizeof(node_t)), *b = calloc(1, sizeof(node_t));
    node_start(a, &cfg);
    node_start(b, &cfg);
    char p1[RT_HISTORY_PID_SIZE], p2[RT_HISTORY_PID_SIZE], p3[RT_HISTORY_PID_SIZE], got[64];
    rt_broker_session_pid(a->b, p1);
    rt_broker_session_pid(a->b, p2);
    rt_broker_session_pid(a->b, p3);
    char tag[RT_BROKER_SESSION_TAG_LEN + 1], key[128];
    memcpy(tag, p1, RT_BROKER_SESSION_TAG_LEN);
    tag[RT_BROKER_SESSION_TAG_LEN] = '\0';
    CHECK(strncmp(p2, tag, RT_BROKER_SESSION_TAG_LEN) == 0 && strcmp(p1, p2) != 0);
    snprintf(key, sizeof(key), "eddy:sessions:{%s}:%s", tag, tag);
    CHECK_EQ_INT(rt_broker_session_put(a->b, p1, "one", 3, 0), 0);
    CHECK_EQ_INT(rt_broker_session_put(a->b, p2, "two", 3, 0), 0);
    CHECK_EQ_INT(rt_broker_session_put(a->b, p2, "two-gone", 8, 10000), 0); /* disconnected */
    CHECK_EQ_INT(rt_broker_session_put(a->b, p3, "three", 5, 0), 0);
    sync_subs(a);
    CHECK_EQ_INT(redis_int("HLEN %s", key, NULL), 2);
    char k2[64];
    snprintf(k2, sizeof(k2), "eddy:session:{%.*s}%s", RT_BROKER_SESSION_TAG_LEN, p2,
             p2 + RT_BROKER_SESSION_TAG_LEN); /* the pid's tag as hash tag */
    CHECK_EQ_INT(redis_int("EXISTS %s", k2, NULL), 1);
    /* Three times the hash's life: renewed meanwhile. */
    sleep_ms(3 * (cfg.lease_ms + (unsigned)cfg.session_linger_ms));
    CHECK_EQ_INT(take_on(b, p1, got, sizeof(got)), 0);
    CHECK_STR(got, "one");
    CHECK_EQ_INT(take_on(b, p2, got, sizeof(got)), 0);
    CHECK_STR(got, "two-gone");
    /* p3 recovered on b: b keeps its live record, a's copy was taken. */
    CHECK_EQ_INT(take_on(b, p3, got, sizeof(got)), 0);
    CHECK_EQ_INT(rt_broker_session_put(b->b, p3, "three-b", 7, 0), 0);
    sync_subs(b);
    CHECK_EQ_INT(redis_int("EXISTS %s", key, NULL), 0); /* a's hash emptied */
    CHECK_EQ_INT(take_on(a, p3, got, sizeof(got)), 0);
    CHECK_STR(got, "three-b");
    CHECK_EQ_INT(take_on(a, p3, got, sizeof(got)), EDDY_ENOTFOUND);
    /* a stops (as a crash would: its live records stay) and b still finds them, until
     * a's lease + linger ran out. */
    CHECK_EQ_INT(rt_broker_session_put(a->b, p1, "one-again", 9, 0), 0);
    CHECK_EQ_INT(rt_broker_session_put(a->b, p2, "two-again", 9, 0), 0);
    sync_subs(a);
    node_stop(a);
    free(a);
    CHECK_EQ_INT(take_on(b, p1, got, sizeof(got)), 0);
    CHECK_STR(got, "one-again");
    CHECK_EQ_INT(redis_int("EXISTS %s", key, NULL), 1); /* p2's record still there */
    uint64_t t0 = ms_now();
    CHECK(WAIT_FOR(redis_int("EXISTS %s", key, NULL) == 0, 5000));
    CHECK(ms_now() - t0 <= cfg.lease_ms + cfg.session_linger_ms + 1000); /* with 1 s of slack */
    CHECK_EQ_INT(take_on(b, p2, got, sizeof(got)), EDDY_ENOTFOUND);
    /* Pids without a tag's shape cannot hold a live record. */
    CHECK_EQ_INT(rt_broker_session_put(b->b, "short", "x", 1, 0), EDDY_EINVAL);
    CHECK_EQ_INT(rt_broker_session_put(b->b, "a}b{cdefghij", "x", 1, 0), EDDY_EINVAL);
    node_stop(b);
    free(b);
}

/* Regression: a live record of a new pid tag stored in the batch a heartbeat rode along
 * with made the heartbeat wait for renewal replies never asked for (the tag counted as
 * renewed), so the command connection timed out and the broker reconnected (its namespaces'
 * clients told to recover). A tag a millisecond for six heartbeats: no reconnection. */
static void test_new_tags_during_heartbeats(void)
{
    rt_broker_redis_config_t cfg;
    fast_heartbeat(&cfg);
    cfg.io_timeout_ms = 500;
    node_t *a = calloc(1, sizeof(node_t));
    node_start(a, &cfg);
    for (int i = 0; i < 6 * FAST_HEARTBEAT_MS; i++) {
        char pid[RT_HISTORY_PID_SIZE];
        snprintf(pid, sizeof(pid), "t%07dabcdefghijkl", i);
        CHECK_EQ_INT(rt_broker_session_put(a->b, pid, "x", 1, 0), 0);
        sleep_ms(1);
    }
    sync_subs(a);
    sleep_ms(2 * cfg.io_timeout_ms); /* a stalled read would have timed out by now */
    sync_subs(a);
    rt_broker_stats_t st;
    rt_broker_stats(a->b, &st);
    CHECK_EQ_INT(st.reconnects, 0);
    CHECK_EQ_INT(rt_broker_state(a->b), RT_BROKER_UP);
    node_stop(a);
    free(a);
}

/* Redis: session records outlive the node that wrote them and are taken once, on any node;
 * membership: alive nodes are listed, a node that stops renewing its lease disappears
 * with its presence entries, a node that leaves is gone at once. */
static void test_membership(void)
{
    node_t *a = calloc(1, sizeof(node_t)), *b = calloc(1, sizeof(node_t));
    rt_broker_redis_config_t cfg;
    fast_heartbeat(&cfg);
    node_start(a, &cfg);
    node_start(b, &cfg);
    CHECK_EQ_INT(rt_broker_session_put(a->b, "pid-1", "record", 6, 10000), 0);
    CHECK_EQ_INT(rt_broker_session_put(a->b, "pid-2", "short", 5, 50), 0);
    char id_a[RT_BROKER_NODE_ID_SIZE];
    snprintf(id_a, sizeof(id_a), "%s", rt_broker_node_id(a->b));
    sync_subs(a); /* the puts ran: the queue is in order */
    node_stop(a); /* as if it had crashed: its records stay */
    free(a);

    waiter_t *w = waiter();
    CHECK_EQ_INT(rt_broker_session_take(b->b, "pid-1", 0, on_session, w), 0);
    CHECK(WAIT_FOR(atomic_load(&w->done), 5000));
    CHECK_EQ_INT(w->err, 0);
    CHECK_MEM(w->data, w->len, "record", 6);
    free(w);
    w = waiter();
    CHECK_EQ_INT(rt_broker_session_take(b->b, "pid-1", 0, on_session, w), 0);
    CHECK(WAIT_FOR(atomic_load(&w->done), 5000));
    CHECK_EQ_INT(w->err, EDDY_ENOTFOUND);
    free(w);
    sleep_ms(100);
    w = waiter();
    CHECK_EQ_INT(rt_broker_session_take(b->b, "pid-2", 0, on_session, w), 0);
    CHECK(WAIT_FOR(atomic_load(&w->done), 5000));
    CHECK_EQ_INT(w->err, EDDY_ENOTFOUND); /* expired */
    free(w);

    /* a left (graceful stop): b's list no longer has it after b's next heartbeat. */
    char ids[8][RT_BROKER_NODE_ID_SIZE];
    CHECK(WAIT_FOR(rt_broker_nodes(b->b, ids, 8) == 1, 3000));
    CHECK_STR(ids[0], rt_broker_node_id(b->b));

    /* A node that stops heartbeating (ghost_renew() is its heartbeat) and a member it
     * announced: listed and seen while it renews (its last renewal just before the
     * presence read), gone once its lease lapsed. */
    CHECK(ghost_renew());
    redisReply *r = redis_cmd("HSET eddy:{/}:p:lobby ghost\x1fm-ghost ghost-info");
    freeReplyObject(r);
    CHECK_EQ_INT(rt_broker_presence_set(b->b, "/", "lobby", "m-b", "b-info", 6), 0);
    CHECK(WAIT_FOR(ghost_renew() && rt_broker_nodes(b->b, ids, 8) == 2, 3000));
    CHECK(ghost_renew());
    uint64_t t0 = ms_now();
    w = waiter();
    CHECK_EQ_INT(rt_broker_presence_get(b->b, "/", "lobby", 0, on_presence, w), 0);
    CHECK(WAIT_FOR(atomic_load(&w->done), 5000));
    CHECK_EQ_INT(w->err, 0);
    CHECK_EQ_INT(w->n, 2);
    free(w);
    CHECK(WAIT_FOR(rt_broker_nodes(b->b, ids, 8) == 1, 10000));
    uint64_t gone_after = ms_now() - t0;
    CHECK(gone_after >= GHOST_LEASE_MS / 2); /* not before its lease lapsed */
    CHECK(gone_after <= GHOST_LEASE_MS + FAST_HEARTBEAT_MS + 1000); /* 1 s of slack */
    w = waiter();
    CHECK_EQ_INT(rt_broker_presence_get(b->b, "/", "lobby", 0, on_presence, w), 0);
    CHECK(WAIT_FOR(atomic_load(&w->done), 5000));
    CHECK_EQ_INT(w->n, 1);
    CHECK_STR(w->entries[0].rooms, "m-b");
    CHECK_STR(w->entries[0].payload, "b-info");
    CHECK_STR(w->entries[0].nsp, rt_broker_node_id(b->b));
    free(w);
    CHECK_EQ_INT(rt_broker_presence_del(b->b, "/", "lobby", "m-b"), 0);
    w = waiter();
    CHECK_EQ_INT(rt_broker_presence_get(b->b, "/", "lobby", 0, on_presence, w), 0);
    CHECK(WAIT_FOR(atomic_load(&w->done), 5000));
    CHECK_EQ_INT(w->n, 0);
    free(w);
    (void)id_a;
    node_stop(b);
    free(b);
}

typedef struct feeder {
    node_t *n;
    atomic_bool stop;
    atomic_int accepted, refused, answered, failed;
} feeder_t;

static void on_fed(rt_broker_t *b, int err, rt_position_t pos, void *arg)
{
    feeder_t *f = arg;
    atomic_fetch_add(&f->answered, 1);
    if (err)
        atomic_fetch_add(&f->failed, 1);
}

static void *feeder_main(void *p)
{
    feeder_t *f = p;
    const char *rooms[] = {"k"};
    for (int i = 0; !atomic_load(&f->stop); i++) {
        char payload[16];
        snprintf(payload, sizeof(payload), "%d", i);
        rt_broker_msg_t m = {"/k", rooms, 1, NULL, 0, 0, payload, strlen(payload)};
        int rc = rt_broker_publish(f->n->b, &m, 0, on_fed, f);
        if (rc == 0)
            atomic_fetch_add(&f->accepted, 1);
        else if (rc == EDDY_EDROPPED)
            atomic_fetch_add(&f->refused, 1);
        sleep_ms(1);
    }
    return NULL;
}

/* Redis killed (SIGKILL) and restarted while a node publishes: both nodes go DOWN and
 * stop being ready, publishes wait in the bounded queue and beyond it are refused and
 * counted, both reconnect, subscriptions are restored (live delivery resumes), the outage
 * is reported as a gap, and every accepted publish is answered once. */
static void test_redis_restart(void)
{
    node_t *a = calloc(1, sizeof(node_t)), *b = calloc(1, sizeof(node_t));
    rt_broker_redis_config_t cfg;
    rt_broker_redis_config_init(&cfg);
    cfg.queue_max = 200;
    cfg.backoff_max_ms = 400;
    node_start(a, &cfg);
    node_start(b, &cfg);
    CHECK_EQ_INT(rt_broker_subscribe(b->b, "/k", "k"), 0);
    sync_subs(b);
    feeder_t *f = calloc(1, sizeof(*f));
    f->n = a;
    pthread_t t;
    pthread_create(&t, NULL, feeder_main, f);
    CHECK(WAIT_FOR(ngot(b) >= 50, 5000));

    redis_kill();
    CHECK(WAIT_FOR(rt_broker_state(a->b) == RT_BROKER_DOWN, 5000));
    CHECK(WAIT_FOR(rt_broker_state(b->b) == RT_BROKER_DOWN, 5000));
    CHECK(!rt_broker_ready(b->b, NULL));
    /* The queue fills to its bound, then publishes are refused and counted. */
    CHECK(WAIT_FOR(atomic_load(&f->refused) > 0, 5000));
    rt_broker_stats_t st;
    rt_broker_stats(a->b, &st);
    CHECK(st.buffered <= 200 && st.buffered > 0);
    CHECK(st.dropped >= (uint64_t)atomic_load(&f->refused));
    /* Reads do not wait for Redis: answered at once. */
    waiter_t *w = waiter();
    CHECK_EQ_INT(rt_broker_session_take(b->b, "x", 0, on_session, w), 0);
    CHECK(WAIT_FOR(atomic_load(&w->done), 2000));
    CHECK_EQ_INT(w->err, EDDY_ECLOSED);
    free(w);
    size_t before = ngot(b);

    redis_start();
    CHECK(WAIT_FOR(rt_broker_ready(a->b, NULL) && rt_broker_ready(b->b, NULL), 10000));
    CHECK(saw_state(a, RT_BROKER_UP, true));
    CHECK(saw_state(b, RT_BROKER_UP, true));
    CHECK(saw_state(b, RT_BROKER_DOWN, false));
    /* Live delivery resumes through the restored subscription. */
    CHECK(WAIT_FOR(ngot(b) >= before + 50, 10000));
    atomic_store(&f->stop, true);
    pthread_join(t, NULL);
    rt_broker_stats(a->b, &st);
    CHECK_EQ_INT(st.reconnects, 1);
    CHECK_EQ_INT(st.gaps, 1);
    rt_broker_stats(b->b, &st);
    CHECK_EQ_INT(st.reconnects, 1);
    CHECK_EQ_INT(st.subscriptions, 1);
    /* Every accepted publish is answered exactly once. */
    CHECK(WAIT_FOR(atomic_load(&f->answered) == atomic_load(&f->accepted), 10000));
    /* Deliveries after the restart are of the new epoch, in seq order. */
    int ordered = 1;
    size_t n = ngot(b);
    for (size_t i = 1; i < n; i++)
        if (b->got[i].pos.epoch == b->got[i - 1].pos.epoch)
            ordered &= b->got[i].pos.seq > b->got[i - 1].pos.seq;
    CHECK(ordered);
    CHECK(b->got[n - 1].pos.epoch != b->got[0].pos.epoch);
    node_stop(a);
    node_stop(b);
    free(a);
    free(b);
    free(f);
}

/* Redis frozen (SIGSTOP) answers nothing but keeps its connections: the command timeout
 * turns that into DOWN (no hang: the test thread's calls return at once meanwhile), and
 * after SIGCONT the broker is UP again, the outage reported as a gap, live delivery back. */
static void test_redis_frozen(void)
{
    node_t *a = calloc(1, sizeof(node_t)), *b = calloc(1, sizeof(node_t));
    rt_broker_redis_config_t cfg;
    fast_heartbeat(&cfg);
    cfg.io_timeout_ms = 500;
    cfg.backoff_max_ms = 300;
    node_start(a, &cfg);
    node_start(b, &cfg);
    CHECK_EQ_INT(rt_broker_subscribe(b->b, "/f", "f"), 0);
    sync_subs(b);
    const char *rooms[] = {"f"};
    CHECK_EQ_INT(publish_wait(a, "/f", rooms, 1, NULL, 0, "before", NULL), 0);
    CHECK(WAIT_FOR(ngot(b) == 1, 5000));

    kill(redis_pid, SIGSTOP);
    uint64_t t0 = ms_now();
    CHECK(WAIT_FOR(rt_broker_state(a->b) == RT_BROKER_DOWN &&
                       rt_broker_state(b->b) == RT_BROKER_DOWN && !rt_broker_ready(a->b, NULL),
                   10000));
    uint64_t detected = ms_now() - t0;
    CHECK(detected < 5000); /* heartbeat 0.1 s + timeout 0.5 s, with margin */
    rt_broker_msg_t m = {"/f", rooms, 1, NULL, 0, 0, "during", 6};
    uint64_t t1 = ms_now();
    CHECK_EQ_INT(rt_broker_publish(a->b, &m, 0, NULL, NULL), 0); /* queued */
    CHECK(ms_now() - t1 < 100);
    kill(redis_pid, SIGCONT);
    CHECK(WAIT_FOR(rt_broker_ready(a->b, NULL) && rt_broker_ready(b->b, NULL), 10000));
    CHECK(saw_state(a, RT_BROKER_UP, true));
    CHECK(saw_state(b, RT_BROKER_UP, true));
    CHECK_EQ_INT(publish_wait(a, "/f", rooms, 1, NULL, 0, "after", NULL), 0);
    CHECK(WAIT_FOR(ngot(b) >= 2 && strcmp(b->got[ngot(b) - 1].payload, "after") == 0, 5000));
    node_stop(a);
    node_stop(b);
    free(a);
    free(b);
}

/* A broker started while Redis is unreachable reports DOWN, is not ready, and connects
 * once Redis is there. */
static void test_start_without_redis(void)
{
    redis_kill();
    node_t *a = calloc(1, sizeof(node_t));
    pthread_mutex_init(&a->lock, NULL);
    rt_broker_redis_config_t cfg;
    rt_broker_redis_config_init(&cfg);
    cfg.port = redis_port;
    cfg.backoff_max_ms = 300;
    rt_broker_handlers_t h = {.deliver = on_deliver, .state = on_state, .request = on_request};
    a->b = rt_broker_redis_new(&cfg, &h, a);
    CHECK(a->b != NULL);
    sleep_ms(300);
    uint64_t age = 0;
    CHECK(!rt_broker_ready(a->b, &age));
    CHECK(age == UINT64_MAX);
    CHECK_EQ_INT(rt_broker_state(a->b), RT_BROKER_DOWN);
    redis_start();
    CHECK(WAIT_FOR(rt_broker_ready(a->b, &age), 5000));
    CHECK(age < 3000);
    CHECK(saw_state(a, RT_BROKER_UP, false));
    node_stop(a);
    free(a);
}

/* Socket.IO's emitter format: a message PUBLISHed by another program on socket.io#/# or
 * socket.io#/#<room># reaches the emitted handler of a broker with emitter_prefix set,
 * decoded; a malformed one is dropped (and the next still arrives). */
static atomic_int emitted_count;
static char emitted_args[64], emitted_room[16];

static void on_emitted(rt_broker_t *b, const rt_emitter_msg_t *m, void *ud)
{
    snprintf(emitted_args, sizeof(emitted_args), "%s", m->args);
    snprintf(emitted_room, sizeof(emitted_room), "%s", m->nrooms ? m->rooms[0] : "");
    atomic_fetch_add(&emitted_count, 1);
}

static void test_emitter_interop(void)
{
    node_t *a = calloc(1, sizeof(node_t));
    pthread_mutex_init(&a->lock, NULL);
    rt_broker_redis_config_t cfg;
    rt_broker_redis_config_init(&cfg);
    cfg.port = redis_port;
    cfg.emitter_prefix = RT_EMITTER_PREFIX;
    rt_broker_handlers_t h = {.deliver = on_deliver, .emitted = on_emitted};
    a->b = rt_broker_redis_new(&cfg, &h, a);
    CHECK(a->b != NULL);
    CHECK(WAIT_FOR(rt_broker_ready(a->b, NULL), 5000));
    /* ["emitter", {type: 2, data: ["hi", 1], nsp: "/"}, {rooms: ["r1"]}] */
    static const char msg[] = "\x93\xa7"
                              "emitter"
                              "\x83\xa4type\x02\xa4"
                              "data"
                              "\x92\xa2hi\x01\xa3nsp\xa1/\x81\xa5rooms\x91\xa2r1";
    redisReply *r = redis_cmd("PUBLISH socket.io#/# %b", "\x01", (size_t)1);
    CHECK(r && r->type == REDIS_REPLY_INTEGER && r->integer == 1);
    freeReplyObject(r);
    r = redis_cmd("PUBLISH socket.io#/#r1# %b", msg, sizeof(msg) - 1);
    CHECK(r && r->type == REDIS_REPLY_INTEGER && r->integer == 1);
    freeReplyObject(r);
    CHECK(WAIT_FOR(atomic_load(&emitted_count) == 1, 5000));
    CHECK_STR(emitted_args, "[\"hi\",1]");
    CHECK_STR(emitted_room, "r1");
    node_stop(a);
    free(a);
}

/* With a server configured, deliveries and results run on its loop (eddy_defer: loop 0,
 * the one thread of a worker_num 1 server), never on the broker's thread. */
static pthread_t loop_thread;
static atomic_int on_loop, off_loop;

static void note_loop_thread(eddy_server_t *srv, void *arg)
{
    loop_thread = pthread_self();
    atomic_store((atomic_int *)arg, 1);
}

static void count_thread(void)
{
    if (pthread_equal(pthread_self(), loop_thread))
        atomic_fetch_add(&on_loop, 1);
    else
        atomic_fetch_add(&off_loop, 1);
}

static void on_deliver_loop(rt_broker_t *b, const rt_broker_delivery_t *d, void *ud)
{
    count_thread();
    on_deliver(b, d, ud);
}

static void on_published_loop(rt_broker_t *b, int err, rt_position_t pos, void *arg)
{
    count_thread();
    on_published(b, err, pos, arg);
}

/* The broker's lines go to cfg.log (its log_level, its eddy_on_log() callback), from the
 * broker's own thread, while results stay there (srv NULL): as the real-time layer sets it
 * up. Before, such a broker wrote every line to stderr, whatever the server's level. */
static atomic_int log_below_warning, log_connected;

static void count_log(eddy_server_t *srv, int level, int loop, const char *msg, size_t len,
                      void *ud)
{
    (void)srv;
    (void)loop;
    (void)len;
    (void)ud;
    if (level < EDDY_LOG_WARNING)
        atomic_fetch_add(&log_below_warning, 1);
    if (strstr(msg, "connected to Redis") != NULL)
        atomic_fetch_add(&log_connected, 1);
}

static void test_lines_go_to_the_log_server(void)
{
    static const char *const levels[] = {"warning", "info"};
    for (int i = 0; i < 2; i++) {
        if (!test_server_new(levels[i]))
            return;
        eddy_on_log(test_server, count_log);
        atomic_store(&log_below_warning, 0);
        atomic_store(&log_connected, 0);
        rt_broker_redis_config_t cfg;
        rt_broker_redis_config_init(&cfg);
        cfg.port = redis_port;
        cfg.log = test_server;
        rt_broker_t *b = rt_broker_redis_new(&cfg, NULL, NULL);
        CHECK(b != NULL);
        if (b != NULL) {
            CHECK(WAIT_FOR(rt_broker_ready(b, NULL), 5000));
            rt_broker_free(b);
        }
        if (i == 0) { /* nothing under the server's level, to it or to stderr */
            CHECK_EQ_INT(atomic_load(&log_below_warning), 0);
            CHECK_EQ_INT(atomic_load(&log_connected), 0);
        } else {
            CHECK_EQ_INT(atomic_load(&log_connected), 1);
        }
        eddy_server_free(test_server);
        test_server = NULL;
    }
}

static void test_results_on_loop(void)
{
    if (!test_server_new("warning"))
        return;
    CHECK_EQ_INT(eddy_server_set(test_server, "worker_num", "1"), 0);
    pthread_t thread;
    int rc = 0;
    test_start_server(&thread, &rc);
    atomic_int noted = 0;
    CHECK_EQ_INT(eddy_defer(test_server, note_loop_thread, &noted), 0);
    CHECK(WAIT_FOR(atomic_load(&noted), 5000));

    node_t *a = calloc(1, sizeof(node_t));
    pthread_mutex_init(&a->lock, NULL);
    rt_broker_redis_config_t cfg;
    rt_broker_redis_config_init(&cfg);
    cfg.port = redis_port;
    cfg.srv = test_server;
    rt_broker_handlers_t h = {.deliver = on_deliver_loop, .state = on_state};
    a->b = rt_broker_redis_new(&cfg, &h, a);
    CHECK(a->b != NULL);
    CHECK(WAIT_FOR(rt_broker_ready(a->b, NULL), 5000));
    CHECK_EQ_INT(rt_broker_subscribe(a->b, "/loop", "r"), 0);
    sync_subs(a);
    const char *rooms[] = {"r"};
    waiter_t *w = waiter();
    rt_broker_msg_t m = {"/loop", rooms, 1, NULL, 0, 0, "x", 1};
    CHECK_EQ_INT(rt_broker_publish(a->b, &m, 0, on_published_loop, w), 0);
    CHECK(WAIT_FOR(atomic_load(&w->done), 5000));
    CHECK_EQ_INT(w->err, 0);
    CHECK(WAIT_FOR(ngot(a) == 1, 5000));
    CHECK_EQ_INT(atomic_load(&on_loop), 2);
    CHECK_EQ_INT(atomic_load(&off_loop), 0);
    CHECK(saw_state(a, RT_BROKER_UP, false));
    free(w);
    node_stop(a);
    free(a);
    eddy_server_stop(test_server);
    pthread_join(thread, NULL);
    CHECK_EQ_INT(rc, 0);
    eddy_server_free(test_server);
}

/* ---------------------------------------------------------------------------------------
 * Node requests
 * ------------------------------------------------------------------------------------- */

typedef struct req_waiter {
    atomic_int done;
    int err;
    size_t n, nmissing;
    char replies[512]; /* "data@node" joined by ',' in arrival order */
    char missing[256];
    uint64_t at_ms;
} req_waiter_t;

static void on_answers(rt_broker_t *b, int err, const rt_broker_reply_t *replies, size_t n,
                       const char *const *missing, size_t nmissing, void *arg)
{
    req_waiter_t *w = arg;
    w->err = err;
    w->n = n;
    w->nmissing = nmissing;
    for (size_t i = 0; i < n; i++)
        snprintf(w->replies + strlen(w->replies), sizeof(w->replies) - strlen(w->replies), "%s%.*s",
                 i ? "," : "", (int)replies[i].len, (const char *)replies[i].data);
    join_names(w->missing, sizeof(w->missing), missing, nmissing);
    w->at_ms = ms_now();
    atomic_store(&w->done, 1);
}

static size_t nreqs(node_t *n)
{
    pthread_mutex_lock(&n->lock);
    size_t v = n->nreqs;
    pthread_mutex_unlock(&n->lock);
    return v;
}

/* Both engines: a request to every node reaches this one's handler and comes back with
 * its answer; one to a node that does not exist is answered missing at once; one without
 * callback asks for no answer (id 0); a request its handler never answers ends at its
 * timeout naming this node missing; bad arguments are refused. */
static void test_node_requests(const engine_t *e)
{
    node_t *a = calloc(1, sizeof(node_t));
    node_start_on(a, e, 0, 0);
    const char *self = rt_broker_node_id(a->b);
    char want[128];

    req_waiter_t *w = calloc(1, sizeof(*w));
    CHECK_EQ_INT(rt_broker_request(a->b, NULL, NULL, "hello", 5, 0, 2000, 0, on_answers, w), 0);
    CHECK(WAIT_FOR(atomic_load(&w->done), 5000));
    CHECK_EQ_INT(w->err, 0);
    CHECK_EQ_INT(w->n, 1);
    CHECK_EQ_INT(w->nmissing, 0);
    snprintf(want, sizeof(want), "hello@%s", self);
    CHECK_STR(w->replies, want);
    free(w);

    w = calloc(1, sizeof(*w));
    CHECK_EQ_INT(rt_broker_request(a->b, self, "/", "one", 3, 0, 2000, 0, on_answers, w), 0);
    CHECK(WAIT_FOR(atomic_load(&w->done), 5000));
    snprintf(want, sizeof(want), "one@%s", self);
    CHECK_STR(w->replies, want);
    free(w);

    w = calloc(1, sizeof(*w));
    uint64_t t0 = ms_now();
    CHECK_EQ_INT(rt_broker_request(a->b, "no-such-node", NULL, "x", 1, 0, 10000, 0, on_answers, w),
                 0);
    CHECK(WAIT_FOR(atomic_load(&w->done), 5000));
    CHECK(w->at_ms - t0 < 2000); /* not waited for */
    CHECK_EQ_INT(w->n, 0);
    CHECK_STR(w->missing, "no-such-node");
    free(w);

    size_t before = nreqs(a);
    CHECK_EQ_INT(rt_broker_request(a->b, NULL, NULL, "fire", 4, 0, 1000, 0, NULL, NULL), 0);
    CHECK(WAIT_FOR(nreqs(a) == before + 1, 5000));
    pthread_mutex_lock(&a->lock);
    CHECK_STR(a->last_req, "fire");
    CHECK_EQ_INT(a->last_req_id, 0);
    pthread_mutex_unlock(&a->lock);

    /* Never answered: missing after its timeout (the in-memory engine notices at its next
     * call, so a second request follows). */
    w = calloc(1, sizeof(*w));
    req_waiter_t *w2 = calloc(1, sizeof(*w2));
    t0 = ms_now();
    CHECK_EQ_INT(rt_broker_request(a->b, NULL, NULL, "silent", 6, 0, 100, 0, on_answers, w), 0);
    sleep_ms(200);
    CHECK_EQ_INT(rt_broker_request(a->b, NULL, NULL, "next", 4, 0, 2000, 0, on_answers, w2), 0);
    CHECK(WAIT_FOR(atomic_load(&w->done) && atomic_load(&w2->done), 5000));
    CHECK(w->at_ms - t0 >= 100);
    CHECK_EQ_INT(w->err, 0);
    CHECK_EQ_INT(w->n, 0);
    CHECK_STR(w->missing, self);
    CHECK_EQ_INT(w2->n, 1);
    free(w);
    free(w2);

    CHECK_EQ_INT(rt_broker_request(a->b, NULL, NULL, "x", 1, 0, 0, 0, on_answers, NULL),
                 EDDY_EINVAL);
    CHECK_EQ_INT(rt_broker_request(a->b, "", NULL, "x", 1, 0, 100, 0, on_answers, NULL),
                 EDDY_EINVAL);
    CHECK_EQ_INT(rt_broker_request(a->b, NULL, NULL, NULL, 1, 0, 100, 0, on_answers, NULL),
                 EDDY_EINVAL);
    CHECK_EQ_INT(rt_broker_respond(a->b, self, NULL, 0, "x", 1), EDDY_EINVAL);
    CHECK_EQ_INT(rt_broker_respond(a->b, self, NULL, 12345, "late", 4), 0); /* dropped */
    CHECK_EQ_INT(a->req_errors, 0);
    node_stop(a);
    free(a);
}

/* Redis, three nodes: a request reaches all of them and every answer comes back, named;
 * one to a single node reaches only it; a node that does not answer (frozen) is named
 * missing at the timeout while the others' answers arrive; a node whose lease lapses is
 * no longer waited for; a barrier request that makes a node subscribe (a remote join) is
 * answered once the subscription is active and holds this node's next publish until then,
 * so that broadcast reaches the node; malformed node messages are dropped. */
static void test_node_requests_cluster(void)
{
    node_t *n[3];
    rt_broker_redis_config_t cfg;
    fast_heartbeat(&cfg);
    for (int i = 0; i < 3; i++) {
        n[i] = calloc(1, sizeof(node_t));
        node_start(n[i], &cfg);
    }
    char ids[8][RT_BROKER_NODE_ID_SIZE];
    CHECK(WAIT_FOR(rt_broker_nodes(n[0]->b, ids, 8) == 3, 5000));
    req_waiter_t *w = calloc(1, sizeof(*w));
    CHECK_EQ_INT(rt_broker_request(n[0]->b, NULL, NULL, "all", 3, 0, 3000, 0, on_answers, w), 0);
    CHECK(WAIT_FOR(atomic_load(&w->done), 5000));
    CHECK_EQ_INT(w->n, 3);
    CHECK_EQ_INT(w->nmissing, 0);
    for (int i = 0; i < 3; i++) {
        char one[96];
        snprintf(one, sizeof(one), "all@%s", rt_broker_node_id(n[i]->b));
        CHECK(strstr(w->replies, one) != NULL);
    }
    free(w);

    size_t before0 = nreqs(n[0]), before2 = nreqs(n[2]);
    w = calloc(1, sizeof(*w));
    CHECK_EQ_INT(rt_broker_request(n[0]->b, rt_broker_node_id(n[1]->b), NULL, "only", 4, 0, 3000, 0,
                                   on_answers, w),
                 0);
    CHECK(WAIT_FOR(atomic_load(&w->done), 5000));
    char want[96];
    snprintf(want, sizeof(want), "only@%s", rt_broker_node_id(n[1]->b));
    CHECK_STR(w->replies, want);
    CHECK_EQ_INT(nreqs(n[0]), before0);
    CHECK_EQ_INT(nreqs(n[2]), before2);
    free(w);

    /* n[2] frozen (its handler does not answer this one): the others' answers come at the
     * timeout, n[2] named missing. */
    char silent[96];
    snprintf(silent, sizeof(silent), "silent:%s", rt_broker_node_id(n[2]->b));
    w = calloc(1, sizeof(*w));
    uint64_t t0 = ms_now();
    CHECK_EQ_INT(
        rt_broker_request(n[0]->b, NULL, NULL, silent, strlen(silent), 0, 400, 0, on_answers, w),
        0);
    CHECK(WAIT_FOR(atomic_load(&w->done), 5000));
    CHECK(w->at_ms - t0 >= 400 && w->at_ms - t0 < 400 + 1500);
    CHECK_EQ_INT(w->n, 2);
    CHECK_STR(w->missing, rt_broker_node_id(n[2]->b));
    free(w);

    /* A barrier that makes n[1] subscribe to "late-room", then at once a publish to it. */
    size_t got1 = ngot(n[1]);
    CHECK_EQ_INT(rt_broker_request(n[0]->b, NULL, NULL, "sub:late-room", 13, RT_BROKER_BARRIER,
                                   3000, 0, NULL, NULL),
                 0);
    const char *late[] = {"late-room"};
    rt_broker_msg_t m = {"/", late, 1, NULL, 0, 0, "after-join", 10};
    CHECK_EQ_INT(rt_broker_publish(n[0]->b, &m, 0, NULL, NULL), 0);
    CHECK(WAIT_FOR(ngot(n[1]) == got1 + 1, 5000));
    pthread_mutex_lock(&n[1]->lock);
    CHECK_STR(n[1]->got[n[1]->ngot - 1].payload, "after-join");
    pthread_mutex_unlock(&n[1]->lock);

    /* Malformed messages on the node channels: logged and dropped. */
    redisReply *r = redis_cmd("PUBLISH eddy:nodes:all garbage");
    freeReplyObject(r);
    r = redis_cmd("PUBLISH eddy:node:%s %b", rt_broker_node_id(n[1]->b), "\x02R\0\0", (size_t)4);
    freeReplyObject(r);

    /* A ghost node that never answers, its last heartbeat just before the request:
     * waited for until its lease lapses, then named missing, long before the timeout. */
    CHECK(WAIT_FOR(ghost_renew() && rt_broker_nodes(n[0]->b, ids, 8) == 4, 3000));
    CHECK(ghost_renew());
    w = calloc(1, sizeof(*w));
    t0 = ms_now();
    CHECK_EQ_INT(rt_broker_request(n[0]->b, NULL, NULL, "ghost?", 6, 0, 20000, 0, on_answers, w),
                 0);
    CHECK(WAIT_FOR(atomic_load(&w->done), 10000));
    CHECK(w->at_ms - t0 >= GHOST_LEASE_MS / 2);                        /* waited for */
    CHECK(w->at_ms - t0 <= GHOST_LEASE_MS + FAST_HEARTBEAT_MS + 1000); /* 1 s of slack */
    CHECK_EQ_INT(w->n, 3);
    CHECK_STR(w->missing, "ghost");
    free(w);
    /* Once gone, not waited for at all. */
    w = calloc(1, sizeof(*w));
    CHECK_EQ_INT(rt_broker_request(n[0]->b, NULL, NULL, "after", 5, 0, 20000, 0, on_answers, w), 0);
    CHECK(WAIT_FOR(atomic_load(&w->done), 3000));
    CHECK_EQ_INT(w->n, 3);
    CHECK_EQ_INT(w->nmissing, 0);
    free(w);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(n[i]->req_errors, 0);
        node_stop(n[i]);
        free(n[i]);
    }
}

/* A node's socket ids (rooms starting with its socket tag) cost Redis one pattern per
 * namespace, not a channel each: 100 of them are one PSUBSCRIBE and no SUBSCRIBE, a
 * broadcast to one of them from another node arrives once (also when it targets a plain
 * room the node holds too), glob characters in the namespace are escaped (a namespace
 * matching it as a glob does not leak in), and the pattern goes with the last of them. */
static void test_socket_tag_pattern(void)
{
    char tag[RT_BROKER_SOCKET_TAG_LEN + 1], again[RT_BROKER_SOCKET_TAG_LEN + 1],
        other[RT_BROKER_SOCKET_TAG_LEN + 1];
    rt_broker_socket_tag("tagged-a", tag);
    rt_broker_socket_tag("tagged-a", again);
    rt_broker_socket_tag("tagged-b", other);
    CHECK_STR(tag, again);
    CHECK(strcmp(tag, other) != 0);
    CHECK_EQ_INT(strlen(tag), RT_BROKER_SOCKET_TAG_LEN);
    CHECK_EQ_INT(strspn(tag, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
                 RT_BROKER_SOCKET_TAG_LEN);

    node_t *a = calloc(1, sizeof(node_t)), *b = calloc(1, sizeof(node_t));
    rt_broker_redis_config_t cfg;
    rt_broker_redis_config_init(&cfg);
    cfg.node_id = "tagged-a";
    node_start(a, &cfg);
    node_start(b, NULL);
    enum { N = 100 };
    static char sids[N][24];
    for (int i = 0; i < N; i++) {
        snprintf(sids[i], sizeof(sids[i]), "%s%014d", tag, i);
        CHECK_EQ_INT(rt_broker_subscribe(a->b, "/a*b", sids[i]), 0);
    }
    CHECK_EQ_INT(rt_broker_subscribe(a->b, "/a*b", "plain"), 0);
    sync_subs(a);
    redisReply *r = redis_cmd("PUBSUB NUMPAT");
    CHECK(r && r->type == REDIS_REPLY_INTEGER && r->integer == 1);
    freeReplyObject(r);
    char ch0[64], plain[64];
    snprintf(ch0, sizeof(ch0), "eddy:{/a*b}:c:%s", sids[0]);
    snprintf(plain, sizeof(plain), "eddy:{/a*b}:c:plain");
    r = redis_cmd("PUBSUB NUMSUB %s %s", ch0, plain);
    CHECK(r && r->type == REDIS_REPLY_ARRAY && r->elements == 4 && r->element[1]->integer == 0 &&
          r->element[3]->integer == 1);
    freeReplyObject(r);
    rt_broker_stats_t st;
    rt_broker_stats(a->b, &st);
    CHECK_EQ_INT(st.subscriptions, 2); /* the pattern and "plain" */

    const char *one[] = {sids[42]}, *two[] = {sids[3], "plain"}, *elsewhere[] = {sids[1]},
               *fence[] = {"plain"};
    CHECK_EQ_INT(publish_wait(b, "/a*b", one, 1, NULL, 0, "to 42", NULL), 0);
    CHECK_EQ_INT(publish_wait(b, "/a*b", two, 2, NULL, 0, "to 3", NULL), 0);
    CHECK_EQ_INT(publish_wait(b, "/aXb", elsewhere, 1, NULL, 0, "other nsp", NULL), 0);
    CHECK_EQ_INT(publish_wait(b, "/a*b", fence, 1, NULL, 0, "fence", NULL), 0);
    CHECK(WAIT_FOR(ngot(a) >= 3, 5000));
    sleep_ms(50); /* a duplicate would arrive right behind */
    CHECK_EQ_INT(ngot(a), 3);
    CHECK_STR(a->got[0].payload, "to 42");
    CHECK_STR(a->got[0].rooms, sids[42]);
    CHECK(!a->got[0].own);
    CHECK_STR(a->got[1].payload, "to 3");
    CHECK_STR(a->got[2].payload, "fence");

    for (int i = 0; i < N; i++)
        CHECK_EQ_INT(rt_broker_unsubscribe(a->b, "/a*b", sids[i]), 0);
    CHECK_EQ_INT(rt_broker_unsubscribe(a->b, "/a*b", sids[0]), EDDY_ENOTFOUND);
    sync_subs(a);
    r = redis_cmd("PUBSUB NUMPAT");
    CHECK(r && r->type == REDIS_REPLY_INTEGER && r->integer == 0);
    freeReplyObject(r);
    node_stop(a);
    node_stop(b);
    free(a);
    free(b);
}

/* The calls Redis counted of a command since the last CONFIG RESETSTAT (INFO commandstats). */
static long long redis_calls(const char *cmd)
{
    redisReply *r = redis_cmd("INFO commandstats");
    long long calls = 0;
    char key[64];
    snprintf(key, sizeof(key), "cmdstat_%s:calls=", cmd);
    const char *at = r && r->type == REDIS_REPLY_STRING ? r->str : NULL;
    if (at && (at = strstr(at, key)) != NULL)
        calls = strtoll(at + strlen(key), NULL, 10);
    freeReplyObject(r);
    return calls;
}

/* Without history (no_history: the layer keeps none) a publish is one plain PUBLISH per
 * target room: no script, no key, no position (pos {0, 0} in its result and deliveries).
 * Nodes still get the broadcasts in order and each once, also one sent to several rooms a
 * node holds (the origin's echo included), and those of a node restarted under the same
 * id; a history read says not recovered. */
static void test_no_history_publish(void)
{
    node_t *a = calloc(1, sizeof(node_t)), *b = calloc(1, sizeof(node_t));
    rt_broker_redis_config_t cfg;
    rt_broker_redis_config_init(&cfg);
    cfg.no_history = true;
    cfg.node_id = "plain-a";
    cfg.heartbeat_ms = 60000; /* no heartbeat's EVALSHA and ping in the counts below */
    cfg.lease_ms = 180000;
    node_start(a, &cfg);
    cfg.node_id = "plain-b";
    node_start(b, &cfg);
    CHECK_EQ_INT(rt_broker_subscribe(a->b, "/nh", "r"), 0);
    CHECK_EQ_INT(rt_broker_subscribe(b->b, "/nh", "r"), 0);
    CHECK_EQ_INT(rt_broker_subscribe(b->b, "/nh", "s"), 0);
    CHECK_EQ_INT(rt_broker_subscribe(b->b, "/nh", NULL), 0);
    sync_subs(a);
    sync_subs(b);
    redisReply *k = redis_cmd("CONFIG RESETSTAT");
    freeReplyObject(k);
    const char *r[] = {"r"}, *rs[] = {"r", "s"}, *st[] = {"s", "t"};
    rt_position_t p1 = {1, 1};
    CHECK_EQ_INT(publish_wait(a, "/nh", r, 1, NULL, 0, "one", &p1), 0);
    CHECK_EQ_INT(publish_wait(a, "/nh", NULL, 0, NULL, 0, "two", NULL), 0);
    CHECK_EQ_INT(publish_wait(a, "/nh", rs, 2, NULL, 0, "three", NULL), 0);
    CHECK_EQ_INT(publish_wait(a, "/nh", st, 2, NULL, 0, "four", NULL), 0);
    CHECK(p1.epoch == 0 && p1.seq == 0);
    CHECK(WAIT_FOR(ngot(b) >= 4 && ngot(a) >= 2, 5000));
    sleep_ms(50); /* a duplicate would arrive right behind */
    CHECK_EQ_INT(ngot(b), 4);
    CHECK_EQ_INT(ngot(a), 2);
    CHECK_STR(b->got[0].payload, "one");
    CHECK_STR(b->got[1].payload, "two");
    CHECK_STR(b->got[2].payload, "three");
    CHECK_STR(b->got[2].rooms, "r,s");
    CHECK_STR(b->got[3].payload, "four");
    CHECK(b->got[3].pos.epoch == 0 && b->got[3].pos.seq == 0 && !b->got[3].own);
    CHECK_STR(a->got[0].payload, "one");
    CHECK_STR(a->got[1].payload, "three");
    CHECK(a->got[1].own);
    /* Redis ran one PUBLISH per target room and nothing else for them. */
    CHECK_EQ_INT(redis_calls("publish"), 6);
    CHECK_EQ_INT(redis_calls("evalsha") + redis_calls("eval") + redis_calls("hincrby"), 0);
    k = redis_cmd("KEYS eddy:{/nh}:*");
    CHECK(k && k->type == REDIS_REPLY_ARRAY && k->elements == 0);
    freeReplyObject(k);
    waiter_t *w = history_wait(b, "/nh", (rt_position_t){0, 0}, r, 1);
    CHECK_EQ_INT(w->err, RT_HISTORY_GAP);
    CHECK(w->pos.epoch == 0 && w->pos.seq == 0);
    free(w);

    /* a restarted under its id numbers its broadcasts from 1 again: b still delivers them. */
    node_stop(a);
    cfg.node_id = "plain-a";
    node_start(a, &cfg);
    CHECK_EQ_INT(publish_wait(a, "/nh", rs, 2, NULL, 0, "five", NULL), 0);
    CHECK(WAIT_FOR(ngot(b) >= 5, 5000));
    sleep_ms(50);
    CHECK_EQ_INT(ngot(b), 5);
    CHECK_STR(b->got[4].payload, "five");
    node_stop(a);
    node_stop(b);
    free(a);
    free(b);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    redis_port = free_port();
    redis_start();
    for (size_t i = 0; i < sizeof(engines) / sizeof(engines[0]); i++) {
        int failures = test_failures;
        test_publish_and_interest(&engines[i]);
        test_order_under_concurrency(&engines[i]);
        test_history(&engines[i]);
        test_recent(&engines[i]);
        test_sessions_presence(&engines[i]);
        test_node_requests(&engines[i]);
        if (test_failures != failures)
            fprintf(stderr, "test_rt_broker: the %s engine failed the conformance suite\n",
                    engines[i].name);
    }
    test_membership();
    test_live_sessions();
    test_new_tags_during_heartbeats();
    test_redis_restart();
    test_redis_frozen();
    test_start_without_redis();
    test_results_on_loop();
    test_lines_go_to_the_log_server();
    test_emitter_interop();
    test_node_requests_cluster();
    test_socket_tag_pattern();
    test_no_history_publish();
    redis_kill();
    return test_report("test_rt_broker");
}

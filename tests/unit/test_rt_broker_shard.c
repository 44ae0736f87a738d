/* SPDX-License-Identifier: MIT */
/*
 * The sharded broker (rt/rt_broker_shard.c) over fake shards that record what reaches
 * them: each operation goes to the shard the ring names for its key (the namespace; the
 * pid for sessions) and its result comes back with the sharded broker as b; each shard
 * is a part: its own state events (gap included) are handed on with its part and name,
 * and rt_broker_part() names the shard of a namespace as the routing does; the node's
 * state is the worst shard's; readiness needs every shard; stats are summed; nodes are
 * the union of the shards that are up; a shard that cannot be made fails the whole. (The
 * operations against real engines: test_rt_broker.c's conformance suite, and
 * tests/integration/test_scaleout_shard.py with two redis-servers.)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_broker.h"
#include "rt_ring.h"
#include "test.h"

/* A fake shard: answers at once on the calling thread. */
typedef struct fake {
    rt_broker_t base;
    rt_broker_handlers_t h;
    void *hud;
    char node_id[RT_BROKER_NODE_ID_SIZE];
    char last[64]; /* the key of the last operation that reached it */
    /* A history read left waiting: answered EDDY_ECLOSED when the fake is freed. */
    rt_broker_history_cb pending;
    void *pending_arg;
    int ops;
    rt_broker_state_t state;
    bool ready;
    uint64_t age;
    const char *nodes[3];
    size_t nnodes;
} fake_t;

static fake_t *fakes[4];
static size_t nfakes;
static int fail_at = -1; /* make() of this shard fails */
static int freed;

static void touched(rt_broker_t *b, const char *key)
{
    fake_t *f = (fake_t *)b;
    snprintf(f->last, sizeof(f->last), "%s", key);
    f->ops++;
}

static int f_publish(rt_broker_t *b, const rt_broker_msg_t *msg, eddy_fd_t fd,
                     rt_broker_publish_cb cb, void *arg)
{
    touched(b, msg->nsp);
    if (cb)
        cb(b, 0, (rt_position_t){7, 1}, arg);
    return 0;
}

static int f_subscribe(rt_broker_t *b, const char *nsp, const char *room)
{
    touched(b, nsp);
    return 0;
}

static int f_history(rt_broker_t *b, const char *nsp, rt_position_t after, const char *const *rooms,
                     size_t nrooms, eddy_fd_t fd, rt_broker_history_cb cb, void *arg)
{
    touched(b, nsp);
    cb(b, RT_HISTORY_GAP, (rt_position_t){7, 3}, NULL, 0, arg);
    return 0;
}

static int f_session_put(rt_broker_t *b, const char *pid, const void *data, size_t len,
                         uint64_t ttl_ms)
{
    touched(b, pid);
    return 0;
}

static int f_session_take(rt_broker_t *b, const char *pid, eddy_fd_t fd, rt_broker_session_cb cb,
                          void *arg)
{
    touched(b, pid);
    return EDDY_EDROPPED; /* refused: the callback must not run, nothing may leak */
}

static int f_presence_set(rt_broker_t *b, const char *nsp, const char *room, const char *member,
                          const void *info, size_t len)
{
    touched(b, nsp);
    return 0;
}

static int f_presence_del(rt_broker_t *b, const char *nsp, const char *room, const char *member)
{
    touched(b, nsp);
    return 0;
}

static int f_presence_get(rt_broker_t *b, const char *nsp, const char *room, eddy_fd_t fd,
                          rt_broker_presence_cb cb, void *arg)
{
    touched(b, nsp);
    cb(b, 0, NULL, 0, arg);
    return 0;
}

static size_t f_nodes(rt_broker_t *b, char (*ids)[RT_BROKER_NODE_ID_SIZE], size_t max)
{
    fake_t *f = (fake_t *)b;
    for (size_t i = 0; i < f->nnodes && i < max; i++)
        snprintf(ids[i], RT_BROKER_NODE_ID_SIZE, "%s", f->nodes[i]);
    return f->nnodes;
}

static bool f_ready(rt_broker_t *b, uint64_t *age_ms)
{
    fake_t *f = (fake_t *)b;
    *age_ms = f->age;
    return f->ready;
}

static rt_broker_state_t f_state(rt_broker_t *b)
{
    return ((fake_t *)b)->state;
}

static void f_stats(rt_broker_t *b, rt_broker_stats_t *out)
{
    *out = (rt_broker_stats_t){.published = 1, .delivered = 2, .gaps = 3, .subscriptions = 4};
}

static const char *f_node_id(rt_broker_t *b)
{
    return ((fake_t *)b)->node_id;
}

static void f_free(rt_broker_t *b)
{
    fake_t *f = (fake_t *)b;
    /* As an engine's thread may while the shards are freed one by one: a last state
     * change, a last delivery, and the answer to what was still queued. */
    rt_broker_state_event_t ev = {.state = RT_BROKER_DOWN};
    rt_broker_delivery_t d = {.msg = {.nsp = "/"}};
    f->h.state(b, &ev, f->hud);
    f->h.deliver(b, &d, f->hud);
    if (f->pending)
        f->pending(b, EDDY_ECLOSED, (rt_position_t){0, 0}, NULL, 0, f->pending_arg);
    freed++;
    free(b);
}

static int f_history_waits(rt_broker_t *b, const char *nsp, rt_position_t after,
                           const char *const *rooms, size_t nrooms, eddy_fd_t fd,
                           rt_broker_history_cb cb, void *arg)
{
    fake_t *f = (fake_t *)b;
    f->pending = cb;
    f->pending_arg = arg;
    return 0;
}

static const rt_broker_ops_t fake_ops = {
    .publish = f_publish,
    .subscribe = f_subscribe,
    .unsubscribe = f_subscribe,
    .history = f_history,
    .session_put = f_session_put,
    .session_take = f_session_take,
    .presence_set = f_presence_set,
    .presence_del = f_presence_del,
    .presence_get = f_presence_get,
    .nodes = f_nodes,
    .ready = f_ready,
    .state = f_state,
    .stats = f_stats,
    .node_id = f_node_id,
    .free = f_free,
};

static rt_broker_t *make_fake(size_t i, const char *node_id, const rt_broker_handlers_t *h,
                              void *hud, void *arg)
{
    if ((int)i == fail_at)
        return NULL;
    fake_t *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return NULL;
    f->base.ops = &fake_ops;
    f->h = *h;
    f->hud = hud;
    f->ready = true;
    snprintf(f->node_id, sizeof(f->node_id), "%s", node_id ? node_id : "node-a");
    fakes[nfakes++] = f;
    return &f->base;
}

/* What the sharded broker's user received. */
static rt_broker_t *outer;
static rt_broker_state_event_t events[16];
static size_t nevents;
static int results;

static void on_state(rt_broker_t *b, const rt_broker_state_event_t *ev, void *ud)
{
    CHECK(b == outer);
    if (nevents < 16)
        events[nevents++] = *ev;
}

static int delivered;

static void on_deliver(rt_broker_t *b, const rt_broker_delivery_t *d, void *ud)
{
    CHECK(b == outer && ud == &delivered);
    delivered++;
}

static void on_published(rt_broker_t *b, int err, rt_position_t pos, void *arg)
{
    CHECK(b == outer && arg == &results && err == 0 && pos.epoch == 7);
    results++;
}

static void on_history(rt_broker_t *b, int err, rt_position_t top, const rt_broker_delivery_t *e,
                       size_t n, void *arg)
{
    CHECK(b == outer && arg == &results && err == RT_HISTORY_GAP && top.seq == 3);
    results++;
}

static void on_session(rt_broker_t *b, int err, const void *data, size_t len, void *arg)
{
    CHECK(0); /* the fake refuses every take */
}

static void on_presence(rt_broker_t *b, int err, const rt_broker_presence_t *e, size_t n, void *arg)
{
    CHECK(b == outer && arg == &results && err == 0);
    results++;
}

static const char *const names[] = {"r1:6379/0", "r2:6379/0", "r3:6379/0"};

/* A result answered while the broker is being freed whose user calls the broker back (as
 * rt_cluster.c does: a failed recovery unsubscribes): refused, never routed to a shard
 * already freed (ASan saw the use after free before the sharded broker refused). */
static int during_free[8];
static size_t nduring_free;
static const char *owned_by_0;

static void on_history_then_publish(rt_broker_t *b, int err, rt_position_t top,
                                    const rt_broker_delivery_t *e, size_t n, void *arg)
{
    CHECK(b == outer && err == EDDY_ECLOSED);
    rt_broker_msg_t m = {.nsp = owned_by_0, .payload = "x", .payload_len = 1};
    if (nduring_free < 8)
        during_free[nduring_free++] = rt_broker_publish(b, &m, 0, NULL, NULL);
    if (nduring_free < 8)
        during_free[nduring_free++] = rt_broker_subscribe(b, owned_by_0, "r");
}

static rt_broker_t *start(size_t n)
{
    nfakes = 0;
    nevents = 0;
    rt_broker_handlers_t h = {.deliver = on_deliver, .state = on_state};
    outer = rt_broker_shard_new(names, n, make_fake, NULL, &h, &delivered);
    return outer;
}

/* A shard reports a state change, as its engine would from its thread. */
static void report(size_t i, rt_broker_state_t st, bool gap, uint64_t down_ms)
{
    fakes[i]->state = st;
    rt_broker_state_event_t ev = {.state = st, .gap = gap, .down_ms = down_ms};
    fakes[i]->h.state(&fakes[i]->base, &ev, fakes[i]->hud);
}

/* Each operation reaches the shard of its key on the ring, results come back with the
 * sharded broker as b, a refused request is refused as is. */
static void test_routing(void)
{
    rt_broker_t *b = start(3);
    CHECK(b != NULL);
    if (b == NULL)
        return; /* out of memory under test-oom: fakes[] is the last test's */
    CHECK_STR(rt_broker_node_id(b), "node-a");
    CHECK_STR(fakes[1]->node_id, "node-a"); /* one id on every shard */
    rt_ring_t *ring = rt_ring_new(names, 3);
    CHECK(ring != NULL);
    if (ring == NULL) {
        rt_broker_free(b);
        return;
    }
    static const char *const nsps[] = {"/", "/chat", "/admin", "/game", "/news", "/a", "/b", "/c"};
    bool used[3] = {false};
    for (size_t i = 0; i < sizeof(nsps) / sizeof(nsps[0]); i++) {
        fake_t *owner = fakes[rt_ring_pick(ring, nsps[i], strlen(nsps[i]))];
        for (size_t k = 0; k < 3; k++)
            used[k] |= fakes[k] == owner;
        int before = owner->ops;
        rt_broker_msg_t m = {.nsp = nsps[i], .payload = "x", .payload_len = 1};
        results = 0;
        CHECK_EQ_INT(rt_broker_publish(b, &m, 0, NULL, NULL), 0);
        CHECK_EQ_INT(rt_broker_publish(b, &m, 0, on_published, &results), 0);
        CHECK_EQ_INT(rt_broker_subscribe(b, nsps[i], "room"), 0);
        CHECK_EQ_INT(rt_broker_unsubscribe(b, nsps[i], NULL), 0);
        CHECK_EQ_INT(
            rt_broker_history(b, nsps[i], (rt_position_t){0, 0}, NULL, 0, 0, on_history, &results),
            0);
        CHECK_EQ_INT(rt_broker_presence_set(b, nsps[i], "r", "m", "i", 1), 0);
        CHECK_EQ_INT(rt_broker_presence_del(b, nsps[i], "r", "m"), 0);
        CHECK_EQ_INT(rt_broker_presence_get(b, nsps[i], "r", 0, on_presence, &results), 0);
        CHECK_EQ_INT(owner->ops - before, 8);
        CHECK_STR(owner->last, nsps[i]);
        CHECK(fakes[rt_broker_part(b, nsps[i])] == owner); /* the part is the routing's */
        CHECK_EQ_INT(results, 3);
    }
    CHECK(used[0] && used[1] && used[2]); /* these namespaces spread over all three */
    CHECK_EQ_INT(rt_broker_parts(b), 3);
    static const char *const pids[] = {"pid-1", "pid-2", "pid-3", "pid-4", "pid-5", "pid-6"};
    for (size_t i = 0; i < sizeof(pids) / sizeof(pids[0]); i++) {
        fake_t *owner = fakes[rt_ring_pick(ring, pids[i], strlen(pids[i]))];
        CHECK_EQ_INT(rt_broker_session_put(b, pids[i], "r", 1, 1000), 0);
        CHECK_STR(owner->last, pids[i]);
        CHECK_EQ_INT(rt_broker_session_take(b, pids[i], 0, on_session, NULL), EDDY_EDROPPED);
    }
    CHECK_EQ_INT(rt_broker_session_take(b, "p", 0, NULL, NULL), EDDY_EINVAL);
    /* Deliveries from any shard reach the user's handler with the sharded broker. */
    rt_broker_delivery_t d = {.msg = {.nsp = "/"}};
    delivered = 0;
    for (size_t i = 0; i < 3; i++)
        fakes[i]->h.deliver(&fakes[i]->base, &d, fakes[i]->hud);
    CHECK_EQ_INT(delivered, 3);
    rt_ring_free(ring);
    freed = 0;
    rt_broker_free(b);
    CHECK_EQ_INT(freed, 3);
}

/* An event as the user got it: part i's (named names[i]) with state st, gap and down_ms. */
static bool event_is(size_t k, size_t i, rt_broker_state_t st, bool gap, uint64_t down_ms)
{
    const rt_broker_state_event_t *ev = &events[k];
    return k < nevents && ev->part == i && ev->part_name != NULL &&
           strcmp(ev->part_name, names[i]) == 0 && ev->state == st && ev->gap == gap &&
           ev->down_ms == down_ms;
}

/* State: every shard's own events, each with its part (its index) and name, its gap and
 * its outage's length as its engine reported them, so that the layer can tell which
 * namespaces an outage concerns; the whole's state is the worst shard's. */
static void test_state(void)
{
    rt_broker_t *b = start(2);
    CHECK(b != NULL);
    if (b == NULL)
        return; /* out of memory under test-oom: fakes[] is the last test's */
    CHECK_EQ_INT(rt_broker_state(b), RT_BROKER_DOWN);
    report(0, RT_BROKER_UP, false, 0);
    CHECK(nevents == 1 && event_is(0, 0, RT_BROKER_UP, false, 0));
    CHECK_EQ_INT(rt_broker_state(b), RT_BROKER_DOWN); /* shard 1 is still down */
    report(1, RT_BROKER_RECOVERING, false, 0);
    report(1, RT_BROKER_UP, false, 0);
    CHECK(nevents == 3 && event_is(1, 1, RT_BROKER_RECOVERING, false, 0) &&
          event_is(2, 1, RT_BROKER_UP, false, 0));
    CHECK_EQ_INT(rt_broker_state(b), RT_BROKER_UP);
    /* Shard 1 fails, then shard 0 too; each returns with its own gap and length. */
    report(1, RT_BROKER_DOWN, false, 0);
    report(0, RT_BROKER_DOWN, false, 0);
    CHECK_EQ_INT(rt_broker_state(b), RT_BROKER_DOWN);
    report(1, RT_BROKER_UP, true, 900);
    CHECK_EQ_INT(rt_broker_state(b), RT_BROKER_DOWN);
    report(0, RT_BROKER_UP, true, 400);
    CHECK(nevents == 7 && event_is(3, 1, RT_BROKER_DOWN, false, 0) &&
          event_is(4, 0, RT_BROKER_DOWN, false, 0) && event_is(5, 1, RT_BROKER_UP, true, 900) &&
          event_is(6, 0, RT_BROKER_UP, true, 400));
    CHECK_EQ_INT(rt_broker_state(b), RT_BROKER_UP);
    CHECK_STR(rt_broker_part_name(b, 1), names[1]);
    CHECK(rt_broker_part_name(b, 2) == NULL);

    /* Readiness needs every shard; the age is the oldest. */
    uint64_t age = 0;
    fakes[0]->age = 10;
    fakes[1]->age = 30;
    CHECK(rt_broker_ready(b, &age) && age == 30);
    fakes[1]->ready = false;
    CHECK(!rt_broker_ready(b, &age));
    rt_broker_stats_t st;
    rt_broker_stats(b, &st);
    CHECK(st.published == 2 && st.delivered == 4 && st.gaps == 6 && st.subscriptions == 8);

    /* Nodes: the union of the shards that are up (node-b's lease lives on shard 1 only). */
    char ids[4][RT_BROKER_NODE_ID_SIZE];
    fakes[0]->nodes[0] = "node-a";
    fakes[0]->nnodes = 1;
    fakes[1]->nodes[0] = "node-b";
    fakes[1]->nodes[1] = "node-a";
    fakes[1]->nnodes = 2;
    CHECK_EQ_INT(rt_broker_nodes(b, ids, 4), 2);
    CHECK(strcmp(ids[0], "node-a") == 0 && strcmp(ids[1], "node-b") == 0);
    CHECK_EQ_INT(rt_broker_nodes(b, ids, 1), 2); /* the count, whatever max */
    fakes[1]->state = RT_BROKER_DOWN;            /* its list is stale: not counted */
    CHECK_EQ_INT(rt_broker_nodes(b, ids, 4), 1);
    fakes[0]->state = RT_BROKER_DOWN; /* none up: the last lists */
    CHECK_EQ_INT(rt_broker_nodes(b, ids, 4), 2);
    rt_broker_free(b);
}

/* Freeing: shard 0 goes first; shard 1 then reports a state change and a delivery (not
 * handed on: the user may be tearing down) and answers a waiting read (handed on, once),
 * whose callback calls the broker: refused with EDDY_ECLOSED. */
static void test_free(void)
{
    rt_broker_t *b = start(2);
    CHECK(b != NULL);
    if (b == NULL)
        return; /* out of memory under test-oom: fakes[] is the last test's */
    report(0, RT_BROKER_UP, false, 0);
    report(1, RT_BROKER_UP, false, 0);
    size_t events_before = nevents;
    rt_ring_t *ring = rt_ring_new(names, 2);
    CHECK(ring != NULL);
    if (ring == NULL) {
        rt_broker_free(b);
        return;
    }
    static const char *const nsps[] = {"/", "/chat", "/admin", "/game", "/news", "/a", "/b"};
    const char *on_1 = NULL;
    owned_by_0 = NULL;
    for (size_t i = 0; i < sizeof(nsps) / sizeof(nsps[0]); i++) {
        size_t s = rt_ring_pick(ring, nsps[i], strlen(nsps[i]));
        if (s == 0 && owned_by_0 == NULL)
            owned_by_0 = nsps[i];
        if (s == 1 && on_1 == NULL)
            on_1 = nsps[i];
    }
    CHECK(owned_by_0 != NULL && on_1 != NULL);
    static rt_broker_ops_t waiting;
    waiting = fake_ops;
    waiting.history = f_history_waits;
    fakes[1]->base.ops = &waiting;
    CHECK_EQ_INT(rt_broker_history(b, on_1, (rt_position_t){0, 0}, NULL, 0, 0,
                                   on_history_then_publish, NULL),
                 0);
    delivered = 0;
    nduring_free = 0;
    rt_broker_free(b);
    CHECK_EQ_INT(nduring_free, 2);
    CHECK_EQ_INT(during_free[0], EDDY_ECLOSED);
    CHECK_EQ_INT(during_free[1], EDDY_ECLOSED);
    CHECK_EQ_INT(nevents, events_before);
    CHECK_EQ_INT(delivered, 0);
    rt_ring_free(ring);
}

static void test_bad(void)
{
    const char *const twice[] = {"r1:6379/0", "r1:6379/0"};
    rt_broker_handlers_t h = {0};
    CHECK(rt_broker_shard_new(twice, 2, make_fake, NULL, &h, NULL) == NULL);
    CHECK(rt_broker_shard_new(names, 0, make_fake, NULL, &h, NULL) == NULL);
    nfakes = 0;
    freed = 0;
    fail_at = 2;
    CHECK(rt_broker_shard_new(names, 3, make_fake, NULL, &h, NULL) == NULL);
    CHECK_EQ_INT(freed, 2); /* those made are freed */
    fail_at = -1;
    /* The same Redis twice; a shard's name on the ring. */
    rt_broker_redis_config_t cfgs[2];
    rt_broker_redis_config_init(&cfgs[0]);
    rt_broker_redis_config_init(&cfgs[1]);
    CHECK(rt_broker_shard_redis_new(cfgs, 2, &h, NULL) == NULL);
    char name[RT_BROKER_SHARD_NAME_SIZE];
    cfgs[1].host = "::1";
    cfgs[1].db = 2;
    rt_broker_shard_name(&cfgs[1], name);
    CHECK_STR(name, "[::1]:6379/2");
    rt_broker_shard_name(&cfgs[0], name);
    CHECK_STR(name, "127.0.0.1:6379/0");
}

int main(void)
{
    test_routing();
    test_state();
    test_free();
    test_bad();
    return test_report("test_rt_broker_shard");
}

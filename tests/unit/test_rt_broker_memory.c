/* SPDX-License-Identifier: MIT */
/*
 * The in-memory broker's own cases (rt/rt_broker_memory.c); the behaviour it shares with
 * the Redis engine is test_rt_broker.c's conformance suite. Here: the history bounds
 * (count, bytes, age on a fake clock), a broadcast the history cannot keep, session
 * limits, handlers that call the broker back, several threads at once (run it under
 * TSan), results and deliveries on a server's loops; with --measure, the cost of a
 * publish. Memory is static where it can be, so tests/unit/oom_sweep.sh can fail any
 * allocation.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc_fail.h"
#include "rt_broker.h"
#include "test.h"
#include "test_server.h"
#include "wait_for.h"

/* A fake clock (ms), moved by the tests. */
static _Atomic uint64_t fake_ms = 1000000;

static uint64_t fake_clock(void *ud)
{
    return atomic_load(&fake_ms);
}

/* What a broker delivered: positions and payloads, checked by the test's thread. */
#define MAX_GOT 4096

typedef struct sink {
    pthread_mutex_t lock;
    size_t n;
    rt_position_t pos[MAX_GOT];
    char payload[MAX_GOT][16];
    char nsp[MAX_GOT][8];
} sink_t;

static sink_t sink = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void sink_reset(void)
{
    pthread_mutex_lock(&sink.lock);
    sink.n = 0;
    pthread_mutex_unlock(&sink.lock);
}

static size_t sink_count(void)
{
    pthread_mutex_lock(&sink.lock);
    size_t n = sink.n;
    pthread_mutex_unlock(&sink.lock);
    return n;
}

static void on_deliver(rt_broker_t *b, const rt_broker_delivery_t *d, void *ud)
{
    pthread_mutex_lock(&sink.lock);
    if (sink.n < MAX_GOT) {
        sink.pos[sink.n] = d->pos;
        snprintf(sink.payload[sink.n], sizeof(sink.payload[0]), "%.*s", (int)d->msg.payload_len,
                 (const char *)d->msg.payload);
        snprintf(sink.nsp[sink.n], sizeof(sink.nsp[0]), "%s", d->msg.nsp);
        sink.n++;
    }
    pthread_mutex_unlock(&sink.lock);
}

/* One history read's answer (the calling thread gets it before the call returns). */
typedef struct read {
    int calls, err;
    rt_position_t top;
    size_t n;
    char first[16], last[16];
} read_t;

static void on_history(rt_broker_t *b, int err, rt_position_t top, const rt_broker_delivery_t *e,
                       size_t n, void *arg)
{
    read_t *r = arg;
    r->calls++;
    r->err = err;
    r->top = top;
    r->n = n;
    if (n) {
        snprintf(r->first, sizeof(r->first), "%.*s", (int)e[0].msg.payload_len,
                 (const char *)e[0].msg.payload);
        snprintf(r->last, sizeof(r->last), "%.*s", (int)e[n - 1].msg.payload_len,
                 (const char *)e[n - 1].msg.payload);
    }
}

static read_t read_from(rt_broker_t *b, const char *nsp, rt_position_t after, const char *room)
{
    read_t r = {0};
    const char *rooms[] = {room};
    CHECK_EQ_INT(rt_broker_history(b, nsp, after, rooms, room ? 1 : 0, 0, on_history, &r), 0);
    CHECK_EQ_INT(r.calls, 1); /* answered on this thread, in the call */
    return r;
}

static int publish(rt_broker_t *b, const char *nsp, const char *room, const char *payload,
                   size_t len)
{
    const char *rooms[] = {room};
    rt_broker_msg_t m = {nsp, rooms, room ? 1 : 0, NULL, 0, 0, payload, len};
    return rt_broker_publish(b, &m, 0, NULL, NULL);
}

/* The defaults, on the fake clock. */
static rt_broker_memory_config_t fake_clock_config(void)
{
    rt_broker_memory_config_t cfg;
    rt_broker_memory_config_init(&cfg);
    cfg.clock = fake_clock;
    return cfg;
}

/* A broker made from cfg (NULL: the defaults) whose deliveries go to deliver, with the sink
 * emptied first; NULL, with a failed check, if it could not be made. */
static rt_broker_t *memory_broker(const rt_broker_memory_config_t *cfg,
                                  void (*deliver)(rt_broker_t *b, const rt_broker_delivery_t *d,
                                                  void *ud))
{
    sink_reset();
    rt_broker_handlers_t h = {.deliver = deliver};
    rt_broker_t *b = rt_broker_memory_new(cfg, &h, NULL);
    CHECK(b != NULL);
    return b;
}

/* ---------------------------------------------------------------------------------------
 * Bounds
 * ------------------------------------------------------------------------------------- */

/* A room's ring keeps history_max entries: a read from before the oldest kept is a gap,
 * a read from there on is complete. */
static void test_bound_count(void)
{
    rt_broker_memory_config_t cfg = fake_clock_config();
    cfg.history_max = 5;
    rt_broker_t *b = memory_broker(&cfg, on_deliver);
    if (!b)
        return;
    char p[16];
    for (int i = 1; i <= 8; i++) {
        snprintf(p, sizeof(p), "c%d", i);
        CHECK_EQ_INT(publish(b, "/", "r", p, strlen(p)), 0);
    }
    read_t r = read_from(b, "/", (rt_position_t){0, 0}, NULL);
    rt_position_t at = r.top;
    CHECK_EQ_INT(at.seq, 8);
    r = read_from(b, "/", (rt_position_t){at.epoch, 2}, "r");
    CHECK_EQ_INT(r.err, RT_HISTORY_GAP); /* c3 was evicted */
    r = read_from(b, "/", (rt_position_t){at.epoch, 3}, "r");
    CHECK_EQ_INT(r.err, 0);
    CHECK_EQ_INT(r.n, 5);
    CHECK_STR(r.first, "c4");
    CHECK_STR(r.last, "c8");
    /* Another room's ring is its own. */
    CHECK_EQ_INT(publish(b, "/", "s", "s1", 2), 0);
    r = read_from(b, "/", (rt_position_t){at.epoch, 3}, "s");
    CHECK_EQ_INT(r.err, 0);
    CHECK_EQ_INT(r.n, 1);
    rt_broker_free(b);
}

/* A ring keeps history_max_bytes of broadcasts (payload and names as stored); a broadcast
 * larger than that is published (a position, delivered live) but not kept, so reads
 * across it are gaps. */
static void test_bound_bytes(void)
{
    rt_broker_memory_config_t cfg = fake_clock_config();
    cfg.history_max_bytes = 200;
    rt_broker_t *b = memory_broker(&cfg, on_deliver);
    if (!b)
        return;
    CHECK_EQ_INT(rt_broker_subscribe(b, "/", "r"), 0);
    char p[64];
    memset(p, 'x', sizeof(p));
    for (int i = 0; i < 6; i++) /* 6 x (12 + 2 + 48) bytes: the first 3 go */
        CHECK_EQ_INT(publish(b, "/", "r", p, 48), 0);
    read_t r = read_from(b, "/", (rt_position_t){0, 0}, NULL);
    rt_position_t at = r.top;
    r = read_from(b, "/", (rt_position_t){at.epoch, 2}, "r");
    CHECK_EQ_INT(r.err, RT_HISTORY_GAP);
    r = read_from(b, "/", (rt_position_t){at.epoch, 3}, "r");
    CHECK_EQ_INT(r.err, 0);
    CHECK_EQ_INT(r.n, 3);
    char big[256];
    memset(big, 'B', sizeof(big));
    memcpy(big, "big", 3);
    CHECK_EQ_INT(publish(b, "/", "r", big, sizeof(big)), 0);
    CHECK_EQ_INT(sink_count(), 7);
    CHECK_STR(sink.payload[6], "bigBBBBBBBBBBBB");
    CHECK_EQ_INT(sink.pos[6].seq, 7);
    r = read_from(b, "/", (rt_position_t){at.epoch, 6}, "r");
    CHECK_EQ_INT(r.err, RT_HISTORY_GAP);
    r = read_from(b, "/", (rt_position_t){at.epoch, 7}, "r");
    CHECK_EQ_INT(r.err, 0);
    CHECK_EQ_INT(r.n, 0);
    rt_broker_free(b);
}

/* Entries older than history_age_ms are evicted (on the configured clock): a read from
 * before them is a gap, newer entries stay. */
static void test_bound_age(void)
{
    rt_broker_memory_config_t cfg = fake_clock_config();
    cfg.history_age_ms = 1000;
    rt_broker_t *b = memory_broker(&cfg, on_deliver);
    if (!b)
        return;
    CHECK_EQ_INT(publish(b, "/", "r", "old", 3), 0);
    atomic_fetch_add(&fake_ms, 600);
    CHECK_EQ_INT(publish(b, "/", "r", "new", 3), 0);
    read_t r = read_from(b, "/", (rt_position_t){0, 0}, NULL);
    rt_position_t at = r.top;
    r = read_from(b, "/", (rt_position_t){at.epoch, 0}, "r");
    CHECK_EQ_INT(r.err, 0);
    CHECK_EQ_INT(r.n, 2);
    atomic_fetch_add(&fake_ms, 500); /* "old" is 1100 ms old, "new" 500 */
    r = read_from(b, "/", (rt_position_t){at.epoch, 0}, "r");
    CHECK_EQ_INT(r.err, RT_HISTORY_GAP);
    r = read_from(b, "/", (rt_position_t){at.epoch, 1}, "r");
    CHECK_EQ_INT(r.err, 0);
    CHECK_EQ_INT(r.n, 1);
    CHECK_STR(r.first, "new");
    rt_broker_free(b);
}

/* A broadcast the history cannot keep (its entry's allocation fails) is still delivered
 * live with its position, and reads across it answer "not recovered" rather than miss it. */
static void test_not_kept_is_a_gap(void)
{
    rt_broker_memory_config_t cfg = fake_clock_config();
    rt_broker_t *b = memory_broker(&cfg, on_deliver);
    if (!b)
        return;
    CHECK_EQ_INT(rt_broker_subscribe(b, "/", "r"), 0);
    /* Two publishes: both delivery buffers have room, the namespace exists. */
    CHECK_EQ_INT(publish(b, "/", "r", "kept", 4), 0);
    CHECK_EQ_INT(publish(b, "/", "r", "kept", 4), 0);
    alloc_fail_arm(1); /* the history's entry */
    CHECK_EQ_INT(publish(b, "/", "r", "lost", 4), 0);
    CHECK(alloc_fail_disarm());
    CHECK_EQ_INT(publish(b, "/", "r", "after", 5), 0);
    CHECK_EQ_INT(sink_count(), 4);
    CHECK_STR(sink.payload[2], "lost");
    CHECK_EQ_INT(sink.pos[2].seq, 3);
    read_t r = read_from(b, "/", (rt_position_t){sink.pos[0].epoch, 2}, "r");
    CHECK_EQ_INT(r.err, RT_HISTORY_GAP);
    r = read_from(b, "/", (rt_position_t){sink.pos[0].epoch, 3}, "r");
    CHECK_EQ_INT(r.err, 0);
    CHECK_EQ_INT(r.n, 1);
    CHECK_STR(r.first, "after");
    rt_broker_free(b);
}

/* ---------------------------------------------------------------------------------------
 * Sessions, configuration
 * ------------------------------------------------------------------------------------- */

static int session_err;

static void on_session(rt_broker_t *b, int err, const void *data, size_t len, void *arg)
{
    session_err = err;
}

/* At most max_sessions records: a put beyond is refused and counted; expired records are
 * reclaimed, so they no longer count. */
static void test_session_limit(void)
{
    rt_broker_memory_config_t cfg = fake_clock_config();
    cfg.max_sessions = 2;
    rt_broker_t *b = memory_broker(&cfg, on_deliver);
    if (!b)
        return;
    CHECK_EQ_INT(rt_broker_session_put(b, "a", "1", 1, 100), 0);
    CHECK_EQ_INT(rt_broker_session_put(b, "b", "2", 1, 100), 0);
    CHECK_EQ_INT(rt_broker_session_put(b, "b", "3", 1, 100), 0); /* a replacement */
    CHECK_EQ_INT(rt_broker_session_put(b, "c", "4", 1, 100), EDDY_EDROPPED);
    rt_broker_stats_t st;
    rt_broker_stats(b, &st);
    CHECK_EQ_INT(st.dropped, 1);
    atomic_fetch_add(&fake_ms, 100);
    CHECK_EQ_INT(rt_broker_session_put(b, "c", "4", 1, 100), 0);
    CHECK_EQ_INT(rt_broker_session_take(b, "a", 0, on_session, NULL), 0);
    CHECK_EQ_INT(session_err, EDDY_ENOTFOUND);
    CHECK_EQ_INT(rt_broker_session_take(b, "c", 0, on_session, NULL), 0);
    CHECK_EQ_INT(session_err, 0);
    /* A record behind a longer-lived one still expires on time. */
    CHECK_EQ_INT(rt_broker_session_put(b, "long", "L", 1, 10000), 0);
    CHECK_EQ_INT(rt_broker_session_put(b, "short", "S", 1, 10), 0);
    atomic_fetch_add(&fake_ms, 10);
    CHECK_EQ_INT(rt_broker_session_take(b, "short", 0, on_session, NULL), 0);
    CHECK_EQ_INT(session_err, EDDY_ENOTFOUND);
    rt_broker_free(b);
}

static void test_config(void)
{
    rt_broker_memory_config_t cfg;
    rt_broker_memory_config_init(&cfg);
    cfg.history_max = 0;
    CHECK(rt_broker_memory_new(&cfg, NULL, NULL) == NULL);
    rt_broker_memory_config_init(&cfg);
    cfg.node_id = "";
    CHECK(rt_broker_memory_new(&cfg, NULL, NULL) == NULL);
    cfg.node_id = "node-7";
    rt_broker_t *b = rt_broker_memory_new(&cfg, NULL, NULL);
    CHECK(b != NULL);
    if (!b)
        return;
    CHECK_STR(rt_broker_node_id(b), "node-7");
    uint64_t age = 1;
    CHECK(rt_broker_ready(b, &age));
    CHECK_EQ_INT(age, 0);
    /* No deliver handler: publishes are still positioned and kept. */
    CHECK_EQ_INT(rt_broker_subscribe(b, "/", NULL), 0);
    CHECK_EQ_INT(publish(b, "/", NULL, "x", 1), 0);
    read_t r = read_from(b, "/", (rt_position_t){0, 0}, NULL);
    CHECK_EQ_INT(r.top.seq, 1);
    rt_broker_free(b);
    b = rt_broker_memory_new(NULL, NULL, NULL); /* the defaults */
    CHECK(b != NULL);
    if (b)
        rt_broker_free(b);
}

/* ---------------------------------------------------------------------------------------
 * Handlers calling back, threads
 * ------------------------------------------------------------------------------------- */

/* A deliver handler that publishes the next ping and reads the history and presence: no
 * deadlock, and the nested publishes are delivered after the current one, in order. */
static rt_broker_t *echo_broker;
static int echo_reads;

static void on_history_count(rt_broker_t *b, int err, rt_position_t top,
                             const rt_broker_delivery_t *e, size_t n, void *arg)
{
    echo_reads++;
}

static void on_presence_count(rt_broker_t *b, int err, const rt_broker_presence_t *e, size_t n,
                              void *arg)
{
    echo_reads++;
}

static void on_deliver_echo(rt_broker_t *b, const rt_broker_delivery_t *d, void *ud)
{
    on_deliver(b, d, ud);
    CHECK(b == echo_broker);
    char ping[16]; /* the payload is not NUL-terminated */
    snprintf(ping, sizeof(ping), "%.*s", (int)d->msg.payload_len, (const char *)d->msg.payload);
    int k = atoi(ping + 4);
    if (k < 9) {
        char p[16];
        int len = snprintf(p, sizeof(p), "ping%d", k + 1);
        CHECK_EQ_INT(publish(b, "/", "r", p, (size_t)len), 0);
        CHECK_EQ_INT(sink_count(), (size_t)k + 1); /* not delivered yet: after this one */
    }
    CHECK_EQ_INT(rt_broker_history(b, "/", d->pos, NULL, 0, 0, on_history_count, NULL), 0);
    CHECK_EQ_INT(rt_broker_presence_get(b, "/", "r", 0, on_presence_count, NULL), 0);
}

static void test_reentrant_handlers(void)
{
    echo_broker = memory_broker(NULL, on_deliver_echo);
    if (!echo_broker)
        return;
    CHECK_EQ_INT(rt_broker_subscribe(echo_broker, "/", "r"), 0);
    CHECK_EQ_INT(publish(echo_broker, "/", "r", "ping0", 5), 0);
    CHECK_EQ_INT(sink_count(), 10);
    int ordered = 1;
    for (size_t i = 0; i < sink_count(); i++)
        ordered &= sink.pos[i].seq == i + 1 && atoi(sink.payload[i] + 4) == (int)i;
    CHECK(ordered);
    CHECK_EQ_INT(echo_reads, 20);
    rt_broker_free(echo_broker);
}

/* Several threads publish to two namespaces (each thread in order, 'a'..'d' plus its
 * count) while another subscribes and unsubscribes a second room, reads histories and
 * presence: every broadcast to the held room is delivered once, each namespace's
 * deliveries in strictly increasing seq, one handler call at a time, each thread's in its
 * order. Meant for TSan. */
enum { THREADS = 4, EACH = 400 };

static rt_broker_t *shared;
static atomic_int in_handler, overlapped, misordered;
static uint64_t last_seq[2];
static int next_k[2][THREADS];
static atomic_bool churn_stop;

static void on_deliver_threads(rt_broker_t *b, const rt_broker_delivery_t *d, void *ud)
{
    if (atomic_fetch_add(&in_handler, 1) != 0)
        atomic_fetch_add(&overlapped, 1);
    int ns = d->msg.nsp[1] == 'x';
    if (d->pos.seq <= last_seq[ns])
        atomic_fetch_add(&misordered, 1);
    last_seq[ns] = d->pos.seq;
    char p[16]; /* the payload is not NUL-terminated */
    snprintf(p, sizeof(p), "%.*s", (int)d->msg.payload_len, (const char *)d->msg.payload);
    if (d->msg.nrooms == 1 && strcmp(d->msg.rooms[0], "held") == 0) {
        int t = p[0] - 'a', k = atoi(p + 1);
        /* Thread t publishes its even counts to "/", its odd ones to "/x". */
        if (t < 0 || t >= THREADS || k != next_k[ns][t]++ * 2 + ns)
            atomic_fetch_add(&misordered, 1);
    }
    atomic_fetch_sub(&in_handler, 1);
    on_deliver(b, d, ud);
}

static void *publisher_main(void *arg)
{
    int t = (int)(intptr_t)arg;
    for (int i = 0; i < EACH; i++) {
        char p[16];
        int len = snprintf(p, sizeof(p), "%c%d", 'a' + t, i);
        const char *nsp = i % 2 ? "/x" : "/";
        /* Under oom_sweep.sh one allocation fails once: retry. */
        for (int tries = 0; tries < 3 && publish(shared, nsp, "held", p, (size_t)len) != 0; tries++)
            ;
        if (i % 7 == 0)
            publish(shared, nsp, "churn", p, (size_t)len);
    }
    return NULL;
}

static void *churn_main(void *arg)
{
    while (!atomic_load(&churn_stop)) {
        rt_broker_subscribe(shared, "/", "churn");
        rt_broker_presence_set(shared, "/", "held", "m", "i", 1);
        rt_broker_history(shared, "/x", (rt_position_t){0, 0}, NULL, 0, 0, on_history_count, NULL);
        rt_broker_unsubscribe(shared, "/", "churn");
        rt_broker_presence_del(shared, "/", "held", "m");
        rt_broker_session_put(shared, "s", "x", 1, 1000);
        rt_broker_session_take(shared, "s", 0, on_session, NULL);
        rt_broker_stats_t st;
        rt_broker_stats(shared, &st);
    }
    return NULL;
}

static void test_threads(void)
{
    shared = memory_broker(NULL, on_deliver_threads);
    if (!shared)
        return;
    CHECK_EQ_INT(rt_broker_subscribe(shared, "/", "held"), 0);
    CHECK_EQ_INT(rt_broker_subscribe(shared, "/x", "held"), 0);
    pthread_t pub[THREADS], churn;
    pthread_create(&churn, NULL, churn_main, NULL);
    for (int t = 0; t < THREADS; t++)
        pthread_create(&pub[t], NULL, publisher_main, (void *)(intptr_t)t);
    for (int t = 0; t < THREADS; t++)
        pthread_join(pub[t], NULL);
    atomic_store(&churn_stop, true);
    pthread_join(churn, NULL);
    rt_broker_stats_t st;
    rt_broker_stats(shared, &st);
    /* Every publisher returned: nothing waits, everything to held was delivered. */
    CHECK_EQ_INT(st.buffered, 0);
    int held = 0;
    for (int ns = 0; ns < 2; ns++)
        for (int t = 0; t < THREADS; t++)
            held += next_k[ns][t];
    CHECK_EQ_INT(held, THREADS * EACH);
    CHECK(st.delivered >= (uint64_t)held);
    CHECK_EQ_INT(atomic_load(&overlapped), 0);
    CHECK_EQ_INT(atomic_load(&misordered), 0);
    rt_broker_free(shared);
}

/* ---------------------------------------------------------------------------------------
 * On a server's loops
 * ------------------------------------------------------------------------------------- */

static pthread_t loop0;
static atomic_int noted, on_loop0, elsewhere, loop_delivered, loop_results;

static void note_loop(eddy_server_t *srv, void *arg)
{
    loop0 = pthread_self();
    atomic_store(&noted, 1);
}

static void count_thread(void)
{
    if (pthread_equal(pthread_self(), loop0))
        atomic_fetch_add(&on_loop0, 1);
    else
        atomic_fetch_add(&elsewhere, 1);
}

static void on_deliver_loop(rt_broker_t *b, const rt_broker_delivery_t *d, void *ud)
{
    count_thread();
    atomic_fetch_add(&loop_delivered, 1);
}

static void on_published_loop(rt_broker_t *b, int err, rt_position_t pos, void *arg)
{
    count_thread();
    atomic_fetch_add(&loop_results, 1);
}

static void on_history_loop(rt_broker_t *b, int err, rt_position_t top,
                            const rt_broker_delivery_t *e, size_t n, void *arg)
{
    count_thread();
    atomic_fetch_add(&loop_results, 1);
}

/* With a server, deliveries and results run on loop 0 (no connection named), never on the
 * calling thread; deliveries queued when the broker is freed still run. */
static void test_on_loop(void)
{
    if (!test_server_new("warning"))
        return;
    CHECK_EQ_INT(eddy_server_set(test_server, "worker_num", "2"), 0);
    pthread_t thread;
    int rc = 0;
    test_start_server(&thread, &rc);
    if (eddy_defer(test_server, note_loop, NULL) == 0)
        CHECK(WAIT_FOR(atomic_load(&noted), 5000));
    rt_broker_memory_config_t cfg;
    rt_broker_memory_config_init(&cfg);
    cfg.srv = test_server;
    rt_broker_handlers_t h = {.deliver = on_deliver_loop};
    rt_broker_t *b = rt_broker_memory_new(&cfg, &h, NULL);
    CHECK(b != NULL);
    if (b) {
        CHECK_EQ_INT(rt_broker_subscribe(b, "/", "r"), 0);
        const char *rooms[] = {"r"};
        rt_broker_msg_t m = {"/", rooms, 1, NULL, 0, 0, "x", 1};
        CHECK_EQ_INT(rt_broker_publish(b, &m, 0, on_published_loop, NULL), 0);
        CHECK_EQ_INT(
            rt_broker_history(b, "/", (rt_position_t){0, 0}, NULL, 0, 0, on_history_loop, NULL), 0);
        CHECK(WAIT_FOR(atomic_load(&loop_delivered) == 1 && atomic_load(&loop_results) == 2, 5000));
        /* A burst, then the broker goes at once: what was queued is still delivered. */
        int accepted = 0;
        for (int i = 0; i < 1000; i++)
            accepted += rt_broker_publish(b, &m, 0, NULL, NULL) == 0;
        rt_broker_free(b);
        CHECK(WAIT_FOR(atomic_load(&loop_delivered) == 1 + accepted, 5000));
        CHECK_EQ_INT(atomic_load(&elsewhere), 0);
        CHECK_EQ_INT(atomic_load(&on_loop0), 3 + accepted);
    }
    eddy_server_stop(test_server);
    pthread_join(thread, NULL);
    eddy_server_free(test_server);
}

/* ---------------------------------------------------------------------------------------
 * Cost
 * ------------------------------------------------------------------------------------- */

static void on_deliver_nothing(rt_broker_t *b, const rt_broker_delivery_t *d, void *ud)
{
}

/* Prints the cost of a publish to a held room of 1000 entries' history (not checked:
 * machines differ). Only with --measure: its 100000 allocations would thin out the OOM
 * sweep of the cases above. */
static void measure_publish(void)
{
    rt_broker_memory_config_t cfg;
    rt_broker_memory_config_init(&cfg);
    rt_broker_handlers_t h = {.deliver = on_deliver_nothing};
    rt_broker_t *b = rt_broker_memory_new(&cfg, &h, NULL);
    if (!b)
        return;
    rt_broker_subscribe(b, "/", "r");
    static const char payload[] = "42[\"message\",\"hello, world\"]";
    enum { N = 100000 };
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < N; i++)
        publish(b, "/", "r", payload, sizeof(payload) - 1);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ns = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / N;
    printf("test_rt_broker_memory: %.0f ns per publish (delivered, kept in history)\n", ns);
    rt_broker_free(b);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--measure") == 0) {
        measure_publish();
        return 0;
    }
    test_bound_count();
    test_bound_bytes();
    test_bound_age();
    test_not_kept_is_a_gap();
    test_session_limit();
    test_config();
    test_reentrant_handlers();
    test_threads();
    test_on_loop();
    return test_report("test_rt_broker_memory");
}

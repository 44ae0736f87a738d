/* SPDX-License-Identifier: MIT */
/*
 * The real-time layer in cluster mode against a real redis-server: a namespace made after
 * the broker came up (eddy_rt_of() once the server runs) gets the presence sweep the UP
 * event gave the namespaces made before it, so a node restarted under its node id after a
 * kill -9 forgets its old members there too (they would stay, alive under its lease).
 */
#include "redis_server.h"
#include "test_rt_server.h"

#define NODE "node-restarted"

static bool up(eddy_rt_t *rt)
{
    eddy_rt_broker_status_t st;
    eddy_rt_broker_status(rt, &st);
    return st.state == 2 && st.ready;
}

static long long hlen(const char *key)
{
    redisReply *r = redis_cmd("HLEN %s", key);
    long long n = r != NULL && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    if (r != NULL)
        freeReplyObject(r);
    return n;
}

/* The options of a node named node_id on the test's Redis (url: its buffer). */
static eddy_rt_options_t node_options(char url[64], const char *node_id)
{
    snprintf(url, 64, "redis://127.0.0.1:%d", redis_port);
    eddy_rt_options_t opts;
    eddy_rt_options_init(&opts);
    opts.redis_url = url;
    opts.node_id = node_id;
    return opts;
}

static void test_late_namespace_forgets_old_members(void)
{
    /* What the node's previous life left: "team" in its rooms index ("\x1c") and a member of
     * it, in a namespace this life makes only once it runs. */
    static const char index_key[] = "eddy:{/late}:p:\x1c", room_key[] = "eddy:{/late}:p:team";
    freeReplyObject(redis_cmd("HSET %s %s %s", index_key, NODE "\x1fteam", ""));
    freeReplyObject(redis_cmd("HSET %s %s %s", room_key, NODE "\x1fold-socket-id", "bob"));
    CHECK_EQ_INT(hlen(room_key), 1);

    if (!test_server_new("warning"))
        return;
    char url[64];
    eddy_rt_options_t opts = node_options(url, NODE);
    eddy_rt_t *rt = eddy_rt_new(test_server, &opts);
    CHECK(rt != NULL);
    if (rt == NULL)
        return;
    CHECK(eddy_rt_of(rt, "/") != NULL);
    rt_test_start(rt);
    CHECK(WAIT_FOR(up(rt), 10000));
    CHECK_EQ_INT(hlen(room_key), 1); /* nobody swept /late: the layer did not know it */
    CHECK(eddy_rt_of(rt, "/late") != NULL);
    CHECK(WAIT_FOR(hlen(room_key) == 0 && hlen(index_key) == 0, 5000));
    rt_test_stop(rt);
}

/* node's lease expiry in eddy:nodes (Redis' clock, ms) into *expiry, and the milliseconds
 * from Redis' clock to it (-1 when absent). */
static long long lease_left(const char *node, long long *expiry)
{
    redisReply *t = redis_cmd("TIME"), *z = redis_cmd("ZSCORE eddy:nodes %s", node);
    long long left = -1;
    *expiry = 0;
    if (t != NULL && t->type == REDIS_REPLY_ARRAY && t->elements == 2 && z != NULL &&
        z->type == REDIS_REPLY_STRING) {
        *expiry = atoll(z->str);
        left = *expiry - (atoll(t->element[0]->str) * 1000 + atoll(t->element[1]->str) / 1000);
    }
    if (t != NULL)
        freeReplyObject(t);
    if (z != NULL)
        freeReplyObject(z);
    return left;
}

/* The heartbeat options: refused out of bounds (a lease shorter than two intervals
 * included); in bounds, the node renews its lease every interval, to the timeout (three
 * intervals when 0) past the renewal. The defaults (1 s, 3 s) would fail both checks. */
static void test_heartbeat_options(void)
{
    if (!test_server_new("none"))
        return;
    char url[64];
    eddy_rt_options_t opts = node_options(url, "node-beats");
    static const uint32_t bad[][2] = {{49, 0}, {600001, 0}, {0, 1999}, {200, 399}, {2000, 3600001}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        opts.redis_heartbeat_interval_ms = bad[i][0];
        opts.redis_heartbeat_timeout_ms = bad[i][1];
        eddy_rt_t *refused = eddy_rt_new(test_server, &opts);
        CHECK(refused == NULL);
        eddy_rt_free(refused);
    }
    opts.redis_heartbeat_interval_ms = 200;
    opts.redis_heartbeat_timeout_ms = 0;
    eddy_rt_t *rt = eddy_rt_new(test_server, &opts);
    CHECK(rt != NULL);
    if (rt == NULL) {
        eddy_server_free(test_server);
        return;
    }
    rt_test_start(rt);
    CHECK(WAIT_FOR(up(rt), 10000));
    /* Samples 400 ms apart: each lease at most 600 ms ahead, renewed since the last sample
     * (a renewal late by up to 200 ms still passes, as on a loaded machine). */
    long long last = 0;
    for (int i = 0; i < 5; i++) {
        long long expiry, left = lease_left("node-beats", &expiry);
        CHECK(left > 0 && left <= 600);
        CHECK(expiry > last);
        last = expiry;
        usleep(400 * 1000);
    }
    rt_test_stop(rt);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    redis_port = free_port();
    redis_start();
    test_late_namespace_forgets_old_members();
    test_heartbeat_options();
    redis_kill();
    return test_report("test_rt_cluster");
}

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
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", redis_port);
    eddy_rt_options_t opts;
    eddy_rt_options_init(&opts);
    opts.redis_url = url;
    opts.node_id = NODE;
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

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    redis_port = free_port();
    redis_start();
    test_late_namespace_forgets_old_members();
    redis_kill();
    return test_report("test_rt_cluster");
}

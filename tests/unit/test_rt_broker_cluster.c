/* SPDX-License-Identifier: MIT */
/*
 * Redis Cluster routing (rt/rt_broker_cluster.c, rt/rt_broker_shard.c): the CRC16 and the
 * hash slot of a key as Redis computes them (golden values: the CRC16 check value and the
 * answers of Debian's redis-server 7.0 to CLUSTER KEYSLOT, hash tag rules included), and
 * the sharded broker routed by slot: a namespace goes to the part owning the slot of {nsp},
 * a pid to the part owning its tag's slot (or, untagged, its Psession key's); seeds that do
 * not answer at the start; the host of a node in a CLUSTER SLOTS answer.
 */
#include <string.h>

#include "rt_broker.h"
#include "rt_redis_tls.h"
#include "test.h"

static void test_crc16(void)
{
    CHECK_EQ_INT(rt_broker_crc16("123456789", 9), 0x31C3);
    CHECK_EQ_INT(rt_broker_crc16("", 0), 0);
}

/* CLUSTER KEYSLOT answers of redis-server 7.0.15. */
static void test_keyslot(void)
{
    static const struct {
        const char *key;
        unsigned slot;
    } golden[] = {
        {"123456789", 12739},
        {"/chat", 7041},
        {"eddy:{/chat}:pos", 7041},
        {"{user1000}.following", 3443},
        {"foo{}{bar}", 8363},    /* an empty tag: the whole key */
        {"foo{{bar}}zap", 4015}, /* the tag is "{bar" */
        {"foo{bar}{zap}", 5061}, /* the first tag */
        {"eddy:session:{abcdefgh}ijkl", 11263},
        {"abcdefgh", 11263},
        {"{", 4092},
        {"}", 12090},
        {"a{b", 13340}, /* no closing brace: the whole key */
        {"", 0},
        {"eddy:session:a}b{c", 14411},
    };
    for (size_t i = 0; i < sizeof(golden) / sizeof(golden[0]); i++) {
        unsigned got = rt_broker_keyslot(golden[i].key, strlen(golden[i].key));
        if (got != golden[i].slot)
            fprintf(stderr, "%s: slot %u, Redis says %u\n", golden[i].key, got, golden[i].slot);
        CHECK_EQ_INT(got, golden[i].slot);
    }
}

static rt_broker_t *make_memory(size_t i, const char *node_id, const rt_broker_handlers_t *h,
                                void *hud, void *arg)
{
    rt_broker_memory_config_t cfg;
    rt_broker_memory_config_init(&cfg);
    cfg.node_id = node_id;
    return rt_broker_memory_new(&cfg, h, hud);
}

/* Three parts owning 0-5460, 5461-10922 and 10923-16383, as redis-cli --cluster create
 * splits three masters. */
static void test_slot_routing(void)
{
    static uint8_t slots[RT_BROKER_CLUSTER_SLOTS];
    for (size_t s = 0; s < RT_BROKER_CLUSTER_SLOTS; s++)
        slots[s] = s <= 5460 ? 0 : s <= 10922 ? 1 : 2;
    const char *names[] = {"slots 0-5460", "slots 5461-10922", "slots 10923-16383"};
    rt_broker_t *b =
        rt_broker_shard_slots_new(names, 3, slots, "eddy:", make_memory, NULL, NULL, NULL);
    CHECK(b != NULL);
    if (b == NULL)
        return;
    CHECK_EQ_INT(rt_broker_parts(b), 3);
    CHECK(strcmp(rt_broker_part_name(b, 1), "slots 5461-10922") == 0);
    CHECK_EQ_INT(rt_broker_part(b, "/chat"), 1);   /* 7041 */
    CHECK_EQ_INT(rt_broker_part(b, "/"), 1);       /* 5517 */
    CHECK_EQ_INT(rt_broker_part(b, "/n3"), 0);     /* 1250 */
    CHECK_EQ_INT(rt_broker_part(b, "/custom"), 2); /* 12360 */
    /* A tagged pid by its tag ("abcdefgh": 11263), an untagged one by its whole key. */
    CHECK_EQ_INT(rt_broker_part(b, "abcdefghijklmnopqrst"), 2);
    CHECK_EQ_INT(rt_broker_part(b, "a}b{c"), 2); /* eddy:session:a}b{c: 14411 */
    CHECK_EQ_INT(rt_broker_part(b, "12345678zzzzzzzzzzzz"),
                 slots[rt_broker_keyslot("12345678", 8)]);
    /* Each part's own broker answers: a session record put is taken back through the
     * same route. */
    char pid[RT_HISTORY_PID_SIZE];
    rt_broker_session_pid(b, pid);
    CHECK_EQ_INT(rt_broker_session_put(b, pid, "rec", 3, 60000), 0);
    rt_broker_free(b);
    /* A slot's part must exist. */
    slots[77] = 3;
    CHECK(rt_broker_shard_slots_new(names, 3, slots, "eddy:", make_memory, NULL, NULL, NULL) ==
          NULL);
}

/* The handlers the sharded broker gave each part (to play a part's moved handler). */
static rt_broker_handlers_t part_handlers[3];
static void *part_ud[3];
static rt_broker_t *part_broker[3];

static rt_broker_t *make_memory_kept(size_t i, const char *node_id, const rt_broker_handlers_t *h,
                                     void *hud, void *arg)
{
    part_handlers[i] = *h;
    part_ud[i] = hud;
    return part_broker[i] = make_memory(i, node_id, h, hud, arg);
}

static int moved_events;
static rt_broker_state_event_t moved_event;

static void on_moved_state(rt_broker_t *b, const rt_broker_state_event_t *ev, void *ud)
{
    if (ev->moved) {
        moved_events++;
        moved_event = *ev;
    }
}

/* Resharding: a part's handler moved routes the slot to the part named, at once for every
 * key of the slot (namespace and tagged pid alike), and the new part's state event says
 * so (moved; gap as the part is UP), once per slot and part. A master of no part needs
 * rt_broker_shard_slots_grow(): without it the slot is not followed. */
static void test_slot_moved_is_routed(void)
{
    static uint8_t slots[RT_BROKER_CLUSTER_SLOTS];
    for (size_t s = 0; s < RT_BROKER_CLUSTER_SLOTS; s++)
        slots[s] = s <= 5460 ? 0 : s <= 10922 ? 1 : 2;
    const char *names[] = {"slots 0-5460", "slots 5461-10922", "slots 10923-16383"};
    rt_broker_handlers_t h = {.state = on_moved_state};
    rt_broker_t *b =
        rt_broker_shard_slots_new(names, 3, slots, "eddy:", make_memory_kept, NULL, &h, NULL);
    CHECK(b != NULL);
    if (b == NULL)
        return;
    CHECK_EQ_INT(rt_broker_part(b, "/chat"), 1); /* 7041 */
    CHECK(part_handlers[1].moved != NULL);
    CHECK(part_handlers[1].moved(part_broker[1], 7041, 2, part_ud[1]));
    CHECK_EQ_INT(rt_broker_part(b, "/chat"), 2);
    CHECK_EQ_INT(rt_broker_part(b, "/"), 1); /* 5517: the rest of the part stays */
    CHECK_EQ_INT(moved_events, 1);
    CHECK_EQ_INT(moved_event.part, 2);
    CHECK(moved_event.gap == (moved_event.state == RT_BROKER_UP));
    CHECK(strcmp(moved_event.part_name, "slots 10923-16383") == 0);
    /* Something of the slot still reached part 1: handed over again, no second event. */
    part_handlers[1].moved(part_broker[1], 7041, 2, part_ud[1]);
    CHECK_EQ_INT(moved_events, 1);
    /* Out of range, or a master of no part without a way to make one: not followed. */
    CHECK(!part_handlers[1].moved(part_broker[1], RT_BROKER_CLUSTER_SLOTS, 2, part_ud[1]));
    CHECK(!part_handlers[1].moved(part_broker[1], 5517, 3, part_ud[1]));
    CHECK(!part_handlers[1].moved(part_broker[1], 5517, RT_BROKER_PARTS_MAX, part_ud[1]));
    CHECK_EQ_INT(rt_broker_parts(b), 3);
    CHECK_EQ_INT(rt_broker_part(b, "/"), 1);
    CHECK_EQ_INT(moved_events, 1);
    rt_broker_free(b);
}

static int closed_publishes;

static void on_published(rt_broker_t *b, int err, rt_position_t pos, void *arg)
{
    if (err == EDDY_ECLOSED)
        closed_publishes++;
}

/* Seeds that do not answer (port 1 on loopback refuses at once): the broker is made
 * anyway, one part, DOWN, not ready, while its thread asks again; broadcasts and session
 * records are held within the queue's bounds (then refused EDDY_EDROPPED, counted),
 * subscriptions counted, reads refused; freeing it answers the held broadcasts
 * EDDY_ECLOSED. */
static void test_seeds_down_at_start(void)
{
    rt_broker_redis_config_t cfg;
    rt_broker_redis_config_init(&cfg);
    rt_broker_addr_t seeds[] = {{"127.0.0.1", 1}, {"127.0.0.1", 2}};
    cfg.cluster_nodes = seeds;
    cfg.ncluster_nodes = 2;
    cfg.queue_max = 3;
    cfg.node_id = "later";
    rt_broker_t *b = rt_broker_cluster_new(&cfg, NULL, NULL);
    CHECK(b != NULL);
    if (b == NULL)
        return;
    CHECK(strcmp(rt_broker_node_id(b), "later") == 0);
    CHECK_EQ_INT(rt_broker_parts(b), 1);
    CHECK_EQ_INT(rt_broker_part(b, "/chat"), 0);
    CHECK(rt_broker_part_name(b, 0) == NULL);
    CHECK_EQ_INT(rt_broker_state(b), RT_BROKER_DOWN);
    uint64_t age = 0;
    CHECK(!rt_broker_ready(b, &age));
    CHECK_EQ_INT(rt_broker_subscribe(b, "/chat", "r"), 0);
    CHECK_EQ_INT(rt_broker_subscribe(b, "/chat", "r"), 0);
    CHECK_EQ_INT(rt_broker_unsubscribe(b, "/chat", "r"), 0);
    CHECK_EQ_INT(rt_broker_unsubscribe(b, "/chat", NULL), EDDY_ENOTFOUND);
    const char *rooms[] = {"r"};
    rt_broker_msg_t msg = {
        .nsp = "/chat", .rooms = rooms, .nrooms = 1, .payload = "hi", .payload_len = 2};
    CHECK_EQ_INT(rt_broker_publish(b, &msg, 0, on_published, NULL), 0);
    CHECK_EQ_INT(rt_broker_publish(b, &msg, 0, NULL, NULL), 0);
    char pid[RT_HISTORY_PID_SIZE];
    rt_broker_session_pid(b, pid);
    CHECK_EQ_INT(strlen(pid), RT_HISTORY_PID_LEN);
    CHECK_EQ_INT(rt_broker_session_put(b, pid, "rec", 3, 60000), 0);
    CHECK_EQ_INT(rt_broker_publish(b, &msg, 0, on_published, NULL), EDDY_EDROPPED);
    rt_broker_stats_t st;
    rt_broker_stats(b, &st);
    CHECK_EQ_INT(st.buffered, 3);
    CHECK_EQ_INT(st.dropped, 1);
    CHECK_EQ_INT(rt_broker_presence_set(b, "/chat", "r", "s1", NULL, 0), 0);
    CHECK_EQ_INT(rt_broker_history(b, "/chat", (rt_position_t){0, 0}, NULL, 0, 0, NULL, NULL),
                 EDDY_ECLOSED);
    CHECK_EQ_INT(rt_broker_nodes(b, NULL, 0), 0);
    rt_broker_free(b);
    CHECK_EQ_INT(closed_publishes, 1);
}

static redisReply str_reply(const char *s)
{
    return (redisReply){.type = REDIS_REPLY_STRING, .str = (char *)s, .len = strlen(s)};
}

/* A node entry [endpoint, port, id(, metadata)] of CLUSTER SLOTS, as hiredis reads it. */
static const char *node_host(redisReply endpoint, redisReply *meta, size_t nmeta)
{
    redisReply port = {.type = REDIS_REPLY_INTEGER, .integer = 7000};
    redisReply id = str_reply("73549c3c719a19dcfd958e064ea6d571cba971fe");
    redisReply metadata = {.type = REDIS_REPLY_ARRAY, .elements = nmeta};
    redisReply *meta_elements[4];
    for (size_t i = 0; i < nmeta; i++)
        meta_elements[i] = &meta[i];
    metadata.element = meta_elements;
    redisReply *elements[] = {&endpoint, &port, &id, &metadata};
    redisReply node = {.type = REDIS_REPLY_ARRAY, .elements = 4, .element = elements};
    return rt_redis_node_host(&node, "seed.example");
}

/* Answers of redis-server 7.0 by cluster-preferred-endpoint-type: ip, hostname (with and
 * without cluster-announce-hostname), unknown-endpoint; "" when the node does not know its
 * own address. */
static void test_node_host(void)
{
    redisReply ip_meta[] = {str_reply("hostname"), str_reply("redis-1.example")};
    CHECK_STR(node_host(str_reply("10.0.0.1"), ip_meta, 2), "10.0.0.1");
    redisReply host_meta[] = {str_reply("ip"), str_reply("10.0.0.1")};
    CHECK_STR(node_host(str_reply("redis-1.example"), host_meta, 2), "redis-1.example");
    CHECK_STR(node_host(str_reply("?"), host_meta, 2), "10.0.0.1");
    redisReply both_meta[] = {str_reply("hostname"), str_reply(""), str_reply("ip"),
                              str_reply("10.0.0.2")};
    CHECK_STR(node_host(str_reply("?"), both_meta, 4), "10.0.0.2");
    redisReply unknown_ip[] = {str_reply("ip"), str_reply("")};
    CHECK_STR(node_host(str_reply("?"), unknown_ip, 2), "seed.example");
    CHECK_STR(node_host(str_reply("?"), NULL, 0), "seed.example");
    CHECK_STR(node_host((redisReply){.type = REDIS_REPLY_NIL}, host_meta, 2), "seed.example");
    CHECK_STR(node_host(str_reply(""), NULL, 0), "seed.example");
    CHECK(node_host((redisReply){.type = REDIS_REPLY_INTEGER, .integer = 1}, NULL, 0) == NULL);
    redisReply lone = str_reply("10.0.0.1"), *one[] = {&lone};
    redisReply short_node = {.type = REDIS_REPLY_ARRAY, .elements = 1, .element = one};
    CHECK(rt_redis_node_host(&short_node, "seed.example") == NULL);
}

int main(void)
{
    test_crc16();
    test_keyslot();
    test_slot_routing();
    test_slot_moved_is_routed();
    test_seeds_down_at_start();
    test_node_host();
    return test_report("test_rt_broker_cluster");
}

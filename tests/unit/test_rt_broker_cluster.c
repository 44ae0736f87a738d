/* SPDX-License-Identifier: MIT */
/*
 * Redis Cluster routing (rt/rt_broker_cluster.c, rt/rt_broker_shard.c): the CRC16 and the
 * hash slot of a key as Redis computes them (golden values: the CRC16 check value and the
 * answers of Debian's redis-server 7.0 to CLUSTER KEYSLOT, hash tag rules included), and
 * the sharded broker routed by slot: a namespace goes to the part owning the slot of {nsp},
 * a pid to the part owning its tag's slot (or, untagged, its Psession key's).
 */
#include <string.h>

#include "rt_broker.h"
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

int main(void)
{
    test_crc16();
    test_keyslot();
    test_slot_routing();
    return test_report("test_rt_broker_cluster");
}

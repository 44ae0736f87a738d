/* SPDX-License-Identifier: MIT */
/*
 * The history and recovery store (rt/rt_history.h): positions and offsets, recovery all
 * or nothing under every bound, session records, expiry on a fake clock, out-of-memory
 * paths, and concurrent appends against queries (run it under SANITIZE=thread).
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "alloc_fail.h"
#include "eddy.h"
#include "rt_history.h"
#include "test.h"

static uint64_t fake_now;

static uint64_t fake_clock(void *ud)
{
    (void)ud;
    return fake_now;
}

static rt_history_t *new_history(rt_history_config_t cfg)
{
    cfg.clock = fake_clock;
    fake_now = 1000000;
    rt_history_t *h = rt_history_new(&cfg);
    CHECK(h != NULL);
    return h;
}

#define MAX_GOT 256

/* What a query delivered. */
struct got {
    size_t n;
    uint64_t seq[MAX_GOT];
    char payload[MAX_GOT][32];
};

static void collect(uint64_t seq, const void *payload, size_t len, void *ud)
{
    struct got *g = ud;
    if (g->n == MAX_GOT)
        return;
    g->seq[g->n] = seq;
    size_t n = len < 31 ? len : 31;
    memcpy(g->payload[g->n], payload, n);
    g->payload[g->n][n] = '\0';
    g->n++;
}

#define ROOMS(...)  ((const char *const[]){__VA_ARGS__})
#define NROOMS(...) (sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *))

/* Appends a text payload; returns its seq (0 on error, with a failed check). */
static uint64_t put(rt_history_t *h, const char *const *rooms, size_t nrooms,
                    const char *const *except, size_t nexcept, const char *text)
{
    int64_t seq = rt_history_append(h, rooms, nrooms, except, nexcept, text, strlen(text));
    CHECK(seq > 0);
    return seq > 0 ? (uint64_t)seq : 0;
}

static int since(rt_history_t *h, uint64_t after, const char *const *rooms, size_t nrooms,
                 struct got *g)
{
    memset(g, 0, sizeof(*g));
    rt_position_t pos = rt_history_position(h);
    pos.seq = after;
    size_t delivered = 99;
    int rc = rt_history_since(h, pos, rooms, nrooms, collect, g, &delivered);
    CHECK_EQ_INT(delivered, rc == 0 ? g->n : 0);
    return rc;
}

static const char *open_session(rt_history_t *h, const char *sid, const char *const *rooms,
                                size_t nrooms, char pid[RT_HISTORY_PID_SIZE])
{
    rt_history_session_info_t info = {.sid = sid,
                                      .user_id = "user7",
                                      .data = "\0bin",
                                      .data_len = 4,
                                      .rooms = rooms,
                                      .nrooms = nrooms};
    int rc = rt_history_session_open(h, &info, pid);
    CHECK_EQ_INT(rc, 0);
    return rc ? NULL : pid;
}

static void test_offsets(void)
{
    const rt_position_t cases[] = {{0, 0},
                                   {0, 1},
                                   {1, 63},
                                   {12345, 64},
                                   {(1ull << 48) - 1, UINT64_MAX},
                                   {0x123456789abcull, 1ull << 60}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char buf[RT_OFFSET_SIZE];
        size_t n = rt_offset_encode(cases[i], buf);
        CHECK_EQ_INT(n, strlen(buf));
        CHECK(n >= 9 && n <= RT_OFFSET_MAX);
        for (size_t j = 0; j < n; j++)
            CHECK(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
                         buf[j]) != NULL);
        rt_position_t back = {7, 7};
        CHECK_EQ_INT(rt_offset_parse(buf, n, &back), 0);
        CHECK(back.epoch == cases[i].epoch && back.seq == cases[i].seq);
    }
    char max[RT_OFFSET_SIZE];
    CHECK_EQ_INT(rt_offset_encode((rt_position_t){(1ull << 48) - 1, UINT64_MAX}, max),
                 RT_OFFSET_MAX);
    CHECK_STR(max, "________P__________");

    const char *bad[] = {"",
                         "AAAAAAAA",
                         "AAAAAAAAAAAAAAAAAAAAA",
                         "AAAAAAA+B",
                         "AAAAAAAA/",
                         "AAAAAAAA=",
                         "AAAAAAAA B",
                         "AAAAAAAAAB",
                         "AAAAAAAAQAAAAAAAAAA",
                         /* 66 bits: overflow */ "AAAAAAAA\xc3\xa9"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        rt_position_t pos;
        CHECK_EQ_INT(rt_offset_parse(bad[i], strlen(bad[i]), &pos), EDDY_EINVAL);
    }
    rt_position_t pos;
    CHECK_EQ_INT(rt_offset_parse("AAAAAAAA\0", 9, &pos), EDDY_EINVAL); /* a NUL inside */
    CHECK_EQ_INT(rt_offset_parse("AAAAAAAAPAAAAAAAAAA", 19, &pos), 0); /* 64 bits exactly */
    CHECK(pos.seq == 15ull << 60);

    /* Random strings over the alphabet: whatever parses is exactly what encode writes. */
    const char *alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    int accepted = 0;
    for (int round = 0; round < 20000; round++) {
        char s[RT_OFFSET_SIZE + 2];
        size_t len = 8 + test_rand() % 13;
        for (size_t i = 0; i < len; i++)
            s[i] = alpha[test_rand() % (round % 4 ? 64 : 3)];
        if (rt_offset_parse(s, len, &pos) == 0) {
            char again[RT_OFFSET_SIZE];
            CHECK_MEM(again, rt_offset_encode(pos, again), s, len);
            accepted++;
        }
    }
    CHECK(accepted > 1000);
}

/* Each entry once, in seq order, from the rings of R and the namespace ring. */
static void test_order_and_dedupe(void)
{
    rt_history_t *h = new_history((rt_history_config_t){0});
    if (!h)
        return;
    CHECK_EQ_INT(rt_history_position(h).seq, 0);
    uint64_t s1 = put(h, ROOMS("a"), 1, NULL, 0, "to a");
    uint64_t s2 = put(h, ROOMS("b"), 1, NULL, 0, "to b");
    uint64_t s3 = put(h, ROOMS("a", "b", "a"), 3, NULL, 0, "to a b");
    put(h, ROOMS("c"), 1, NULL, 0, "to c");
    uint64_t s5 = put(h, NULL, 0, NULL, 0, "to all");
    uint64_t s6 = put(h, ROOMS("b", "c"), 2, NULL, 0, "to b c");
    CHECK(s1 == 1 && s2 == 2 && s3 == 3 && s5 == 5 && s6 == 6);
    CHECK_EQ_INT(rt_history_position(h).seq, 6);

    struct got g;
    CHECK_EQ_INT(since(h, 0, ROOMS("a", "b"), 2, &g), 0);
    CHECK_EQ_INT(g.n, 5);
    const uint64_t want[] = {1, 2, 3, 5, 6};
    for (size_t i = 0; i < 5 && i < g.n; i++)
        CHECK_EQ_INT(g.seq[i], want[i]);
    CHECK_STR(g.payload[2], "to a b");
    CHECK_STR(g.payload[3], "to all");

    CHECK_EQ_INT(since(h, 3, ROOMS("b", "a"), 2, &g), 0);
    CHECK_EQ_INT(g.n, 2);
    CHECK_EQ_INT(g.seq[0], 5);
    CHECK_EQ_INT(since(h, 6, ROOMS("a"), 1, &g), 0);
    CHECK_EQ_INT(g.n, 0);
    size_t counted = 0;
    CHECK_EQ_INT(rt_history_since(h, rt_history_position(h), ROOMS("a"), 1, NULL, NULL, &counted),
                 0);
    rt_position_t from = rt_history_position(h);
    from.seq = 0;
    CHECK_EQ_INT(rt_history_since(h, from, ROOMS("a", "b"), 2, NULL, NULL, &counted), 0);
    CHECK_EQ_INT(counted, 5);
    CHECK_EQ_INT(rt_history_recent(h, "b", 2, NULL, NULL, NULL), 2);
    /* A room the store never saw still gets the namespace ring. */
    CHECK_EQ_INT(since(h, 0, ROOMS("nowhere"), 1, &g), 0);
    CHECK_EQ_INT(g.n, 1);
    CHECK_EQ_INT(g.seq[0], 5);

    rt_history_stats_t st;
    rt_history_stats(h, &st);
    CHECK_EQ_INT(st.entries, 6);
    CHECK_EQ_INT(st.bytes, strlen("to a") * 3 + strlen("to a b") * 2 + strlen("to all"));
    CHECK_EQ_INT(st.rooms, 3);
    rt_history_free(h);
}

/* Entries whose except-rooms intersect R are left out, whichever ring holds them. */
static void test_except_rooms(void)
{
    rt_history_t *h = new_history((rt_history_config_t){0});
    if (!h)
        return;
    put(h, NULL, 0, ROOMS("x"), 1, "all but x");
    put(h, ROOMS("a"), 1, ROOMS("b", "sid1"), 2, "a but b");
    put(h, ROOMS("a"), 1, NULL, 0, "a");
    struct got g;
    CHECK_EQ_INT(since(h, 0, ROOMS("a"), 1, &g), 0);
    CHECK_EQ_INT(g.n, 3);
    CHECK_EQ_INT(since(h, 0, ROOMS("a", "x"), 2, &g), 0);
    CHECK_EQ_INT(g.n, 2);
    CHECK_EQ_INT(g.seq[0], 2);
    CHECK_EQ_INT(since(h, 0, ROOMS("sid1", "a"), 2, &g), 0);
    CHECK_EQ_INT(g.n, 2);
    CHECK_EQ_INT(g.seq[1], 3);
    /* An except-room the store holds no ring for still excludes. */
    CHECK_EQ_INT(since(h, 0, ROOMS("a", "b", "x"), 3, &g), 0);
    CHECK_EQ_INT(g.n, 1);
    CHECK_STR(g.payload[0], "a");
    rt_history_free(h);
}

/* The count bound: an eviction above S in a ring of R is a gap; below S, or in a ring
 * outside R, it is not. */
static void test_count_eviction(void)
{
    rt_history_t *h = new_history((rt_history_config_t){.ring_max_count = 3});
    if (!h)
        return;
    for (int i = 0; i < 5; i++)
        put(h, ROOMS("a"), 1, NULL, 0, "m");
    for (int i = 0; i < 5; i++)
        put(h, ROOMS("b"), 1, NULL, 0, "m");
    struct got g = {0};
    CHECK_EQ_INT(since(h, 2, ROOMS("a"), 1, &g), 0);
    CHECK_EQ_INT(g.n, 3);
    CHECK_EQ_INT(g.seq[0], 3);
    g.n = 0;
    CHECK_EQ_INT(since(h, 1, ROOMS("a"), 1, &g), RT_HISTORY_GAP);
    CHECK_EQ_INT(g.n, 0); /* the callback never ran */
    /* b evicted 6 and 7; a client in a alone that saw 5 lost nothing. */
    CHECK_EQ_INT(since(h, 5, ROOMS("a"), 1, &g), 0);
    CHECK_EQ_INT(g.n, 0);
    CHECK_EQ_INT(since(h, 5, ROOMS("a", "b"), 2, &g), RT_HISTORY_GAP);
    CHECK_EQ_INT(since(h, 7, ROOMS("a", "b"), 2, &g), 0);
    CHECK_EQ_INT(g.n, 3);
    /* The namespace ring counts for everyone. */
    for (int i = 0; i < 4; i++)
        put(h, NULL, 0, NULL, 0, "all");
    CHECK_EQ_INT(since(h, 10, ROOMS("zzz"), 1, &g), RT_HISTORY_GAP);
    CHECK_EQ_INT(since(h, 11, ROOMS("zzz"), 1, &g), 0);
    CHECK_EQ_INT(g.n, 3);
    rt_history_stats_t st;
    rt_history_stats(h, &st);
    CHECK_EQ_INT(st.entries, 9);
    CHECK_EQ_INT(st.evicted, 5);
    rt_history_free(h);
}

/* The byte bound, and a message larger than a ring. */
static void test_bytes_eviction(void)
{
    rt_history_t *h = new_history((rt_history_config_t){.ring_max_bytes = 10});
    if (!h)
        return;
    put(h, ROOMS("a"), 1, NULL, 0, "1234");
    put(h, ROOMS("a"), 1, NULL, 0, "5678");
    struct got g;
    CHECK_EQ_INT(since(h, 0, ROOMS("a"), 1, &g), 0);
    CHECK_EQ_INT(g.n, 2);
    put(h, ROOMS("a"), 1, NULL, 0, "9abc"); /* 12 bytes > 10: seq 1 goes */
    CHECK_EQ_INT(since(h, 0, ROOMS("a"), 1, &g), RT_HISTORY_GAP);
    CHECK_EQ_INT(since(h, 1, ROOMS("a"), 1, &g), 0);
    CHECK_EQ_INT(g.n, 2);
    uint64_t big = put(h, ROOMS("a"), 1, NULL, 0, "0123456789x");
    CHECK_EQ_INT(big, 4);
    CHECK_EQ_INT(since(h, 3, ROOMS("a"), 1, &g), RT_HISTORY_GAP);
    CHECK_EQ_INT(since(h, 4, ROOMS("a"), 1, &g), 0);
    CHECK_EQ_INT(g.n, 0);
    /* Too big for a room the store does not know: known by name only through the
     * store-wide watermark of forgotten rooms. */
    put(h, ROOMS("new"), 1, NULL, 0, "0123456789x");
    CHECK_EQ_INT(since(h, 4, ROOMS("new"), 1, &g), RT_HISTORY_GAP);
    CHECK_EQ_INT(since(h, 5, ROOMS("new"), 1, &g), 0);
    rt_history_stats_t st;
    rt_history_stats(h, &st);
    CHECK_EQ_INT(st.bytes, 8);
    rt_history_free(h);
}

/* The store-wide bounds evict the oldest message from every ring holding it. */
static void test_store_bounds(void)
{
    rt_history_t *h = new_history((rt_history_config_t){.max_entries = 4, .max_bytes = 100});
    if (!h)
        return;
    for (int i = 0; i < 6; i++)
        put(h, i % 2 ? ROOMS("b") : ROOMS("a", "c"), i % 2 ? 1 : 2, NULL, 0, "x");
    rt_history_stats_t st;
    rt_history_stats(h, &st);
    CHECK_EQ_INT(st.entries, 4);
    struct got g;
    CHECK_EQ_INT(since(h, 0, ROOMS("c"), 1, &g), RT_HISTORY_GAP);
    CHECK_EQ_INT(since(h, 1, ROOMS("c"), 1, &g), 0);
    CHECK_EQ_INT(g.n, 2);
    CHECK_EQ_INT(since(h, 1, ROOMS("b"), 1, &g), RT_HISTORY_GAP); /* seq 2 went */
    CHECK_EQ_INT(since(h, 2, ROOMS("a", "b", "c"), 3, &g), 0);
    CHECK_EQ_INT(g.n, 4);
    /* Bytes: 60 + 60 > 100, so the first goes. */
    char big[61];
    memset(big, 'y', 60);
    big[60] = '\0';
    uint64_t s7 = put(h, ROOMS("d"), 1, NULL, 0, big);
    put(h, ROOMS("e"), 1, NULL, 0, big);
    CHECK_EQ_INT(since(h, s7 - 1, ROOMS("d"), 1, &g), RT_HISTORY_GAP);
    CHECK_EQ_INT(since(h, s7, ROOMS("d", "e"), 2, &g), 0);
    CHECK_EQ_INT(g.n, 1);
    rt_history_stats(h, &st);
    CHECK(st.bytes <= 100);
    CHECK_EQ_INT(st.rooms, 1); /* a, b, c and d emptied and nobody lists them */
    rt_history_free(h);
}

/* An entry that one of its rings already dropped (by count) and the others then drop by
 * age: it is freed exactly once (ASan) and each ring's watermark is right. */
static void test_partly_evicted_entry(void)
{
    rt_history_t *h =
        new_history((rt_history_config_t){.ring_max_count = 2, .ring_max_age_ms = 1000});
    if (!h)
        return;
    put(h, ROOMS("a", "b", "a"), 3, NULL, 0, "a b");
    fake_now += 10;
    put(h, ROOMS("b"), 1, NULL, 0, "b1");
    put(h, ROOMS("b"), 1, NULL, 0, "b2"); /* b drops seq 1; a still holds it */
    struct got g;
    CHECK_EQ_INT(since(h, 0, ROOMS("a"), 1, &g), 0);
    CHECK_EQ_INT(g.n, 1);
    CHECK_EQ_INT(since(h, 0, ROOMS("b"), 1, &g), RT_HISTORY_GAP);
    fake_now += 990;
    CHECK_EQ_INT(rt_history_sweep(h), 1);
    rt_history_stats_t st;
    rt_history_stats(h, &st);
    CHECK_EQ_INT(st.entries, 2);
    CHECK_EQ_INT(st.rooms, 1);
    CHECK_EQ_INT(since(h, 1, ROOMS("a", "b"), 2, &g), 0);
    CHECK_EQ_INT(g.n, 2);
    rt_history_free(h);
}

/* Rings give slots back as evictions by age empty them, even rooms a record keeps. */
static void test_slots_shrink(void)
{
    rt_history_t *h = new_history((rt_history_config_t){.ring_max_age_ms = 1000});
    if (!h)
        return;
    char pid[RT_HISTORY_PID_SIZE];
    if (!open_session(h, "s1", ROOMS("kept"), 1, pid))
        goto out;
    for (int i = 0; i < 64; i++)
        put(h, ROOMS("a"), 1, NULL, 0, "old");
    put(h, ROOMS("kept"), 1, NULL, 0, "k");
    fake_now += 500;
    put(h, ROOMS("a"), 1, NULL, 0, "new1");
    put(h, ROOMS("a"), 1, NULL, 0, "new2");
    rt_history_stats_t st;
    rt_history_stats(h, &st);
    CHECK_EQ_INT(st.slots, 128 + 4);
    fake_now += 500;
    CHECK_EQ_INT(rt_history_sweep(h), 65);
    rt_history_stats(h, &st);
    CHECK_EQ_INT(st.slots, 8); /* a: 2 entries in 8 slots; kept: none */
    CHECK_EQ_INT(st.rooms, 2);
    struct got g;
    CHECK_EQ_INT(since(h, 65, ROOMS("a", "kept"), 2, &g), 0);
    CHECK_EQ_INT(g.n, 2);
    CHECK_STR(g.payload[0], "new1");
    CHECK_STR(g.payload[1], "new2");
    CHECK_EQ_INT(since(h, 64, ROOMS("a", "kept"), 2, &g), RT_HISTORY_GAP);
    put(h, ROOMS("kept"), 1, NULL, 0, "k2"); /* an emptied ring takes slots again */
    CHECK_EQ_INT(since(h, 67, ROOMS("kept"), 1, &g), 0);
    CHECK_EQ_INT(g.n, 1);
    fake_now += 1000;
    rt_history_sweep(h);
    rt_history_stats(h, &st);
    CHECK_EQ_INT(st.slots, 0);
    CHECK_EQ_INT(st.rooms, 1);
out:
    rt_history_free(h);
}

/* The age bound on the fake clock. */
static void test_age_expiry(void)
{
    rt_history_t *h = new_history((rt_history_config_t){.ring_max_age_ms = 1000});
    if (!h)
        return;
    put(h, ROOMS("a"), 1, NULL, 0, "old");
    fake_now += 500;
    put(h, ROOMS("a"), 1, NULL, 0, "newer");
    put(h, ROOMS("b"), 1, NULL, 0, "other");
    fake_now += 499;
    struct got g;
    CHECK_EQ_INT(since(h, 0, ROOMS("a"), 1, &g), 0);
    CHECK_EQ_INT(g.n, 2);
    fake_now += 1; /* seq 1 is 1000 ms old */
    CHECK_EQ_INT(since(h, 0, ROOMS("a"), 1, &g), RT_HISTORY_GAP);
    CHECK_EQ_INT(since(h, 1, ROOMS("a"), 1, &g), 0);
    CHECK_EQ_INT(g.n, 1);
    CHECK_STR(g.payload[0], "newer");
    fake_now += 500;
    CHECK_EQ_INT(rt_history_sweep(h), 2);
    rt_history_stats_t st;
    rt_history_stats(h, &st);
    CHECK_EQ_INT(st.entries, 0);
    CHECK_EQ_INT(st.rooms, 0);
    CHECK_EQ_INT(rt_history_sweep(h), 0);
    rt_history_free(h);
}

/* Another incarnation's positions, and positions from the future, are not recovered. */
static void test_epoch_mismatch(void)
{
    rt_history_t *h = new_history((rt_history_config_t){0});
    rt_history_t *other = new_history((rt_history_config_t){0});
    if (!h || !other)
        goto out;
    put(h, ROOMS("a"), 1, NULL, 0, "m");
    rt_position_t pos = rt_history_position(h);
    CHECK(pos.epoch < 1ull << RT_HISTORY_EPOCH_BITS);
    CHECK(pos.epoch != rt_history_position(other).epoch);
    struct got g = {0};
    pos.seq = 0;
    CHECK_EQ_INT(rt_history_since(h, pos, ROOMS("a"), 1, collect, &g, NULL), 0);
    CHECK_EQ_INT(g.n, 1);
    pos.epoch ^= 1;
    CHECK_EQ_INT(rt_history_since(h, pos, ROOMS("a"), 1, collect, &g, NULL), RT_HISTORY_GAP);
    CHECK_EQ_INT(since(h, 2, ROOMS("a"), 1, &g), RT_HISTORY_GAP);
out:
    rt_history_free(h);
    rt_history_free(other);
}

/* socket.io #5538: a session that never received anything recovers from its seq at
 * connect; its direct (own-room) messages are stored and recovered, not others'. */
static void test_session_without_offset(void)
{
    rt_history_t *h = new_history((rt_history_config_t){0});
    if (!h)
        return;
    put(h, NULL, 0, NULL, 0, "before connect");
    char pid[RT_HISTORY_PID_SIZE];
    if (!open_session(h, "sid1", ROOMS("sid1", "lobby"), 2, pid))
        goto out;
    CHECK_EQ_INT(strlen(pid), RT_HISTORY_PID_LEN);
    for (size_t i = 0; i < RT_HISTORY_PID_LEN; i++)
        CHECK(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", pid[i]) !=
              NULL);
    put(h, ROOMS("sid1"), 1, NULL, 0, "direct");
    put(h, ROOMS("sid2"), 1, NULL, 0, "direct to another");
    put(h, ROOMS("lobby"), 1, ROOMS("sid1"), 1, "lobby but me");
    put(h, ROOMS("lobby"), 1, NULL, 0, "lobby");
    CHECK_EQ_INT(rt_history_session_disconnect(h, pid), 0);
    put(h, NULL, 0, NULL, 0, "all");

    struct got g = {0};
    rt_history_session_t *s = NULL;
    CHECK_EQ_INT(rt_history_recover(h, pid, NULL, collect, &g, &s), 0);
    CHECK_EQ_INT(g.n, 3);
    CHECK_STR(g.payload[0], "direct");
    CHECK_STR(g.payload[1], "lobby");
    CHECK_STR(g.payload[2], "all");
    if (s) {
        CHECK_STR(s->pid, pid);
        CHECK_STR(s->sid, "sid1");
        CHECK(s->user_id && strcmp(s->user_id, "user7") == 0);
        CHECK_MEM(s->data, s->data_len, "\0bin", 4);
        CHECK_EQ_INT(s->nrooms, 2);
        if (s->nrooms == 2) {
            CHECK_STR(s->rooms[0], "sid1");
            CHECK_STR(s->rooms[1], "lobby");
        }
        CHECK_EQ_INT(s->seq_at_connect, 1);
        CHECK_EQ_INT(s->recovered_seq, 6);
        CHECK(!s->was_connected);
        rt_history_session_free(s);
    }
out:
    rt_history_free(h);
}

/* A client offset is used when given; a pid recovers once, whatever the answer. */
static void test_session_single_use(void)
{
    rt_history_t *h = new_history((rt_history_config_t){.ring_max_count = 2});
    if (!h)
        return;
    char pid[RT_HISTORY_PID_SIZE], pid2[RT_HISTORY_PID_SIZE];
    if (!open_session(h, "s1", ROOMS("s1"), 1, pid) || !open_session(h, "s2", NULL, 0, pid2))
        goto out;
    CHECK(strcmp(pid, pid2) != 0);
    put(h, ROOMS("s1"), 1, NULL, 0, "one");
    put(h, ROOMS("s1"), 1, NULL, 0, "two");
    rt_position_t pos = rt_history_position(h);
    pos.seq = 1;
    struct got g = {0};
    rt_history_session_t *s = NULL;
    CHECK_EQ_INT(rt_history_recover(h, pid, &pos, collect, &g, &s), 0);
    CHECK_EQ_INT(g.n, 1);
    CHECK_STR(g.payload[0], "two");
    CHECK(s && s->was_connected); /* never marked disconnected: still handed over */
    rt_history_session_free(s);
    CHECK_EQ_INT(rt_history_recover(h, pid, &pos, collect, &g, &s), RT_HISTORY_GAP);
    CHECK(s == NULL);
    CHECK_EQ_INT(rt_history_session_disconnect(h, pid), EDDY_ENOTFOUND);

    /* A gap consumes the record too. */
    put(h, NULL, 0, NULL, 0, "a");
    put(h, NULL, 0, NULL, 0, "b");
    put(h, NULL, 0, NULL, 0, "c");
    g.n = 0;
    CHECK_EQ_INT(rt_history_recover(h, pid2, NULL, collect, &g, &s), RT_HISTORY_GAP);
    CHECK_EQ_INT(g.n, 0);
    CHECK(s == NULL);
    rt_history_stats_t st;
    rt_history_stats(h, &st);
    CHECK_EQ_INT(st.sessions, 0);
    CHECK_EQ_INT(st.rooms, 1); /* s1 still holds entries */
    /* Garbage pids are simply unknown. */
    CHECK_EQ_INT(rt_history_recover(h, "short", NULL, collect, &g, &s), RT_HISTORY_GAP);
    CHECK_EQ_INT(rt_history_recover(h, "AAAAAAAAAAAAAAAAAAA+", NULL, collect, &g, &s),
                 RT_HISTORY_GAP);
    CHECK_EQ_INT(rt_history_recover(h, "AAAAAAAAAAAAAAAAAAAAA", NULL, collect, &g, &s),
                 RT_HISTORY_GAP);
out:
    rt_history_free(h);
}

/* The offset counts from the record's seq at connect on: an older one means nothing
 * received on this session; one of another epoch may be a user string the client took
 * for an offset, so it is a gap rather than a replay from the connect. */
static void test_session_offset_anchor(void)
{
    rt_history_t *h = new_history((rt_history_config_t){.ring_max_count = 3});
    if (!h)
        return;
    for (int i = 0; i < 5; i++)
        put(h, ROOMS("s1"), 1, NULL, 0, "earlier"); /* s1's ring evicted 1 and 2 */
    char p1[RT_HISTORY_PID_SIZE], p2[RT_HISTORY_PID_SIZE], p3[RT_HISTORY_PID_SIZE];
    if (!open_session(h, "s1", ROOMS("s1"), 1, p1) || !open_session(h, "s1", ROOMS("s1"), 1, p2) ||
        !open_session(h, "s1", ROOMS("s1"), 1, p3))
        goto out;
    put(h, ROOMS("s1"), 1, NULL, 0, "mine");
    rt_position_t old = rt_history_position(h), foreign = old, ahead = old;
    old.seq = 1;
    foreign.epoch ^= 1;
    foreign.seq = 1;
    ahead.seq = 7;
    struct got g = {0};
    rt_history_session_t *s = NULL;
    CHECK_EQ_INT(rt_history_recover(h, p1, &old, collect, &g, &s), 0);
    CHECK_EQ_INT(g.n, 1);
    CHECK_STR(g.payload[0], "mine");
    rt_history_session_free(s);
    g.n = 0;
    CHECK_EQ_INT(rt_history_recover(h, p2, &foreign, collect, &g, &s), RT_HISTORY_GAP);
    CHECK_EQ_INT(g.n, 0);
    CHECK(s == NULL);
    g.n = 0;
    CHECK_EQ_INT(rt_history_recover(h, p3, &ahead, collect, &g, &s), RT_HISTORY_GAP);
    CHECK_EQ_INT(g.n, 0);
out:
    rt_history_free(h);
}

/* Disconnected records live session_ttl_ms; live ones do not expire. */
static void test_session_expiry(void)
{
    rt_history_t *h = new_history((rt_history_config_t){.session_ttl_ms = 1000});
    if (!h)
        return;
    char p1[RT_HISTORY_PID_SIZE], p2[RT_HISTORY_PID_SIZE], p3[RT_HISTORY_PID_SIZE];
    if (!open_session(h, "s1", ROOMS("s1"), 1, p1) || !open_session(h, "s2", NULL, 0, p2) ||
        !open_session(h, "s3", NULL, 0, p3))
        goto out;
    CHECK_EQ_INT(rt_history_session_disconnect(h, p1), 0);
    CHECK_EQ_INT(rt_history_session_disconnect(h, p2), 0);
    fake_now += 999;
    CHECK_EQ_INT(rt_history_session_disconnect(h, p2), 0); /* no extension */
    rt_history_session_t *s = NULL;
    struct got g = {0};
    CHECK_EQ_INT(rt_history_recover(h, p1, NULL, collect, &g, &s), 0);
    rt_history_session_free(s);
    fake_now += 1;
    rt_history_stats_t st;
    rt_history_stats(h, &st);
    CHECK_EQ_INT(st.sessions, 2);
    CHECK_EQ_INT(st.disconnected, 1);
    CHECK_EQ_INT(rt_history_recover(h, p2, NULL, collect, &g, &s), RT_HISTORY_GAP);
    fake_now += 100000;
    CHECK_EQ_INT(rt_history_sweep(h), 0);
    rt_history_stats(h, &st);
    CHECK_EQ_INT(st.sessions, 1); /* p3 is live */
    CHECK_EQ_INT(rt_history_session_disconnect(h, p3), 0);
    fake_now += 1000;
    CHECK_EQ_INT(rt_history_sweep(h), 1);
    rt_history_stats(h, &st);
    CHECK_EQ_INT(st.sessions, 0);
    CHECK_EQ_INT(st.disconnected, 0);
out:
    rt_history_free(h);
}

/* Records are bounded; the error says so. */
static void test_session_limits(void)
{
    rt_history_t *h = new_history((rt_history_config_t){.max_sessions = 2, .max_rooms = 3});
    if (!h)
        return;
    char p1[RT_HISTORY_PID_SIZE], p2[RT_HISTORY_PID_SIZE], p3[RT_HISTORY_PID_SIZE];
    if (!open_session(h, "s1", ROOMS("r1", "r2"), 2, p1))
        goto out;
    rt_history_session_info_t info = {.sid = "s2", .rooms = ROOMS("r3", "r4"), .nrooms = 2};
    CHECK_EQ_INT(rt_history_session_open(h, &info, p2), RT_HISTORY_EFULL); /* 4 rooms */
    rt_history_stats_t st;
    rt_history_stats(h, &st);
    CHECK_EQ_INT(st.rooms, 2); /* r3 was forgotten again */
    CHECK_EQ_INT(rt_history_append(h, ROOMS("r3", "r4"), 2, NULL, 0, "x", 1), RT_HISTORY_EFULL);
    info.nrooms = 1;
    CHECK_EQ_INT(rt_history_session_open(h, &info, p2), 0);
    CHECK_EQ_INT(rt_history_session_open(h, &info, p3), RT_HISTORY_EFULL);
    CHECK(strstr(rt_history_strerror(RT_HISTORY_EFULL), "max_sessions") != NULL);
    CHECK_STR(rt_history_strerror(EDDY_ENOMEM), eddy_strerror(EDDY_ENOMEM));
    CHECK_EQ_INT(rt_history_session_remove(h, p2), 0);
    CHECK_EQ_INT(rt_history_session_open(h, &info, p3), 0);

    char longname[1100];
    memset(longname, 'n', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    info.rooms = ROOMS(longname);
    CHECK_EQ_INT(rt_history_session_open(h, &info, p2), EDDY_EINVAL);
    CHECK_EQ_INT(rt_history_append(h, ROOMS(longname), 1, NULL, 0, "x", 1), EDDY_EINVAL);
    CHECK_EQ_INT(rt_history_session_set_rooms(h, p1, ROOMS(longname), 1), EDDY_EINVAL);
    CHECK_EQ_INT(rt_history_session_set_rooms(h, "AAAAAAAAAAAAAAAAAAAA", NULL, 0), EDDY_ENOTFOUND);
    CHECK_EQ_INT(rt_history_session_open(h, &(rt_history_session_info_t){0}, p2), EDDY_EINVAL);
out:
    rt_history_free(h);
}

/* Join and leave update the live record: recovery covers the rooms held at the drop; a
 * room a record lists keeps its eviction watermark even when its ring empties. */
static void test_session_live_rooms(void)
{
    rt_history_t *h = new_history((rt_history_config_t){.ring_max_age_ms = 1000});
    if (!h)
        return;
    char pid[RT_HISTORY_PID_SIZE], pid2[RT_HISTORY_PID_SIZE];
    if (!open_session(h, "s1", ROOMS("s1"), 1, pid) || !open_session(h, "s2", NULL, 0, pid2))
        goto out;
    CHECK_EQ_INT(rt_history_session_set_rooms(h, pid, ROOMS("s1", "game"), 2), 0);
    CHECK_EQ_INT(rt_history_session_set_rooms(h, pid2, ROOMS("quiet"), 1), 0);
    CHECK_EQ_INT(rt_history_session_set_data(h, pid, NULL, "new", 3), 0);
    put(h, ROOMS("game"), 1, NULL, 0, "g1");
    put(h, ROOMS("chat"), 1, NULL, 0, "c1");
    CHECK_EQ_INT(rt_history_session_set_rooms(h, pid, ROOMS("s1", "chat"), 2), 0);
    put(h, ROOMS("game"), 1, NULL, 0, "g2");
    put(h, ROOMS("quiet"), 1, NULL, 0, "q1");
    CHECK_EQ_INT(rt_history_session_disconnect(h, pid), 0);
    struct got g = {0};
    rt_history_session_t *s = NULL;
    CHECK_EQ_INT(rt_history_recover(h, pid, NULL, collect, &g, &s), 0);
    CHECK_EQ_INT(g.n, 1);
    CHECK_STR(g.payload[0], "c1");
    if (s) {
        CHECK(s->user_id == NULL);
        CHECK_MEM(s->data, s->data_len, "new", 3);
        rt_history_session_free(s);
    }

    /* quiet's only entry ages out; the record of pid2 keeps the room and its watermark. */
    fake_now += 1000;
    CHECK_EQ_INT(rt_history_sweep(h), 4);
    rt_history_stats_t st;
    rt_history_stats(h, &st);
    CHECK_EQ_INT(st.rooms, 1);
    g.n = 0;
    CHECK_EQ_INT(rt_history_recover(h, pid2, NULL, collect, &g, &s), RT_HISTORY_GAP);
    CHECK_EQ_INT(g.n, 0);
    rt_history_stats(h, &st);
    CHECK_EQ_INT(st.rooms, 0);
    /* By name, the forgotten room answers from the store-wide watermark. */
    CHECK_EQ_INT(since(h, 3, ROOMS("quiet"), 1, &g), RT_HISTORY_GAP);
    CHECK_EQ_INT(since(h, 4, ROOMS("quiet"), 1, &g), 0);
out:
    rt_history_free(h);
}

/* History on join: the newest n, oldest first, and the room's top. */
static void test_recent(void)
{
    rt_history_t *h = new_history((rt_history_config_t){0});
    if (!h)
        return;
    for (int i = 1; i <= 5; i++) {
        char text[8];
        snprintf(text, sizeof(text), "m%d", i);
        put(h, ROOMS("a"), 1, NULL, 0, text);
    }
    put(h, NULL, 0, NULL, 0, "all");
    struct got g = {0};
    rt_position_t top;
    CHECK_EQ_INT(rt_history_recent(h, "a", 3, collect, &g, &top), 3);
    CHECK_EQ_INT(g.n, 3);
    CHECK_STR(g.payload[0], "m3");
    CHECK_STR(g.payload[2], "m5");
    CHECK_EQ_INT(top.seq, 5);
    CHECK(top.epoch == rt_history_position(h).epoch);
    g.n = 0;
    CHECK_EQ_INT(rt_history_recent(h, "a", 100, collect, &g, NULL), 5);
    CHECK_EQ_INT(rt_history_recent(h, NULL, 10, collect, &g, &top), 1);
    CHECK_EQ_INT(top.seq, 6);
    CHECK_EQ_INT(rt_history_recent(h, "none", 10, collect, &g, &top), 0);
    CHECK_EQ_INT(top.seq, 0);
    CHECK_EQ_INT(rt_history_recent(h, "a", 0, collect, &g, &top), 0);
    rt_history_free(h);
}

/* A failed append uses a seq and marks it lost: recovery across it is a gap, never a
 * silent partial. Every allocation of every call is failed once in turn. */
static void test_out_of_memory(void)
{
    rt_history_t *h = new_history((rt_history_config_t){.ring_max_count = 8});
    if (!h)
        return;
    put(h, ROOMS("a"), 1, NULL, 0, "first");
    alloc_fail_arm(1);
    int64_t rc = rt_history_append(h, ROOMS("a"), 1, NULL, 0, "lost", 4);
    CHECK(alloc_fail_disarm());
    CHECK_EQ_INT(rc, EDDY_ENOMEM);
    struct got g;
    CHECK_EQ_INT(since(h, 1, ROOMS("zzz"), 1, &g), RT_HISTORY_GAP);
    CHECK_EQ_INT(since(h, 2, ROOMS("a"), 1, &g), 0);
    rt_history_stats_t st;
    rt_history_stats(h, &st);
    CHECK_EQ_INT(st.lost, 1);
    CHECK_EQ_INT(st.seq, 2);

    /* Each call with its n-th allocation failing: it fails as documented or works. */
    for (long n = 1; n <= 6; n++) {
        char pid[RT_HISTORY_PID_SIZE];
        rt_history_session_info_t info = {
            .sid = "sx", .user_id = "u", .rooms = ROOMS("sx", "new1", "new2"), .nrooms = 3};
        alloc_fail_arm(n);
        int orc = rt_history_session_open(h, &info, pid);
        alloc_fail_disarm();
        CHECK(orc == 0 || orc == EDDY_ENOMEM);
        if (orc == 0) {
            alloc_fail_arm(n);
            int src = rt_history_session_set_rooms(h, pid, ROOMS("sx", "new3"), 2);
            alloc_fail_disarm();
            CHECK(src == 0 || src == EDDY_ENOMEM);
            alloc_fail_arm(n);
            int drc = rt_history_session_set_data(h, pid, "u2", "d", 1);
            alloc_fail_disarm();
            CHECK(drc == 0 || drc == EDDY_ENOMEM);
            alloc_fail_arm(n);
            int64_t arc = rt_history_append(h, ROOMS("n1", "n2", "sx"), 3, NULL, 0, "m", 1);
            alloc_fail_disarm();
            CHECK(arc > 0 || arc == EDDY_ENOMEM);
            rt_history_session_t *s = NULL;
            alloc_fail_arm(n);
            int rrc = rt_history_recover(h, pid, NULL, collect, &g, &s);
            alloc_fail_disarm();
            CHECK(rrc == 0 || rrc == RT_HISTORY_GAP || rrc == EDDY_ENOMEM);
            CHECK((rrc == 0) == (s != NULL));
            rt_history_session_free(s);
            if (rrc == EDDY_ENOMEM) /* kept: it can be tried again */
                CHECK_EQ_INT(rt_history_session_remove(h, pid), 0);
        }
        rt_history_stats(h, &st);
        CHECK_EQ_INT(st.sessions, 0);
    }
    /* Everything that is left is reachable from the store: no leak under ASan. */
    rt_history_free(h);
}

/* Thousands of rooms and hundreds of records (the tables grow), and queries over more
 * rooms than the stack cursors hold. */
static void test_many_rooms(void)
{
    rt_history_t *h = new_history((rt_history_config_t){0});
    if (!h)
        return;
    static char names[3000][16];
    static const char *list[3000];
    for (int i = 0; i < 3000; i++) {
        snprintf(names[i], sizeof(names[i]), "room-%d", i);
        list[i] = names[i];
        put(h, &list[i], 1, NULL, 0, names[i]);
    }
    static char pids[300][RT_HISTORY_PID_SIZE];
    for (int i = 0; i < 300; i++)
        if (!open_session(h, names[i], &list[i * 10], 10, pids[i]))
            break;
    rt_history_stats_t st;
    rt_history_stats(h, &st);
    CHECK_EQ_INT(st.rooms, 3000);
    CHECK_EQ_INT(st.sessions, 300);
    for (int i = 0; i < 3000; i += 7)
        put(h, &list[i], 1, NULL, 0, "again");
    struct got g;
    /* 100 rooms, every 30th: 100 first messages, and again those with an index % 7 == 0. */
    static const char *some[100];
    for (int i = 0; i < 100; i++)
        some[i] = names[i * 30];
    CHECK_EQ_INT(since(h, 0, some, 100, &g), 0);
    CHECK_EQ_INT(g.n, 100 + 15);
    CHECK_STR(g.payload[0], "room-0");
    CHECK_STR(g.payload[99], "room-2970");
    CHECK_STR(g.payload[100], "again");
    for (size_t i = 1; i < g.n; i++)
        CHECK(g.seq[i] > g.seq[i - 1]);
    /* A record with 40 rooms recovers through the allocated cursors. */
    char pid[RT_HISTORY_PID_SIZE];
    if (open_session(h, "wide", &list[1000], 40, pid)) {
        put(h, &list[1039], 1, NULL, 0, "late");
        rt_history_session_t *s = NULL;
        g.n = 0;
        CHECK_EQ_INT(rt_history_recover(h, pid, NULL, collect, &g, &s), 0);
        CHECK_EQ_INT(g.n, 1);
        CHECK(s && s->nrooms == 40);
        rt_history_session_free(s);
    }
    for (int i = 0; i < 300; i++)
        CHECK_EQ_INT(rt_history_session_remove(h, pids[i]), 0);
    rt_history_free(h);
}

/* Appenders on several threads while another queries: every answer is in strictly
 * increasing seq order, and at the end every entry is found exactly once. */
#define THREADS    3
#define PER_THREAD 3000

struct race {
    rt_history_t *h;
    int id;
    int bad;
};

static void *appender(void *arg)
{
    struct race *r = arg;
    const char *mine = r->id == 0 ? "r0" : r->id == 1 ? "r1" : "r2";
    for (int i = 0; i < PER_THREAD; i++) {
        int64_t seq = i % 3 ? rt_history_append(r->h, ROOMS(mine), 1, NULL, 0, "x", 1)
                            : rt_history_append(r->h, ROOMS(mine, "shared"), 2, NULL, 0, "y", 1);
        if (seq <= 0)
            r->bad++;
    }
    return NULL;
}

struct order {
    uint64_t last;
    size_t n;
    int bad;
};

static void check_order(uint64_t seq, const void *payload, size_t len, void *ud)
{
    struct order *o = ud;
    if (seq <= o->last || len != 1)
        o->bad++;
    o->last = seq;
    o->n++;
}

static void test_threads(void)
{
    rt_history_t *h = new_history((rt_history_config_t){.ring_max_count = 100000});
    if (!h)
        return;
    pthread_t t[THREADS];
    struct race r[THREADS];
    for (int i = 0; i < THREADS; i++) {
        r[i] = (struct race){h, i, 0};
        pthread_create(&t[i], NULL, appender, &r[i]);
    }
    int bad = 0, queries = 0;
    for (;;) {
        rt_position_t pos = rt_history_position(h);
        struct order o = {0};
        pos.seq = pos.seq / 2;
        int rc = rt_history_since(h, pos, ROOMS("r0", "shared", "r2"), 3, check_order, &o, NULL);
        bad += rc != 0 || o.bad;
        queries++;
        if (pos.seq * 2 + 1 >= (uint64_t)THREADS * PER_THREAD)
            break;
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        bad += r[i].bad;
    }
    CHECK_EQ_INT(bad, 0);
    CHECK(queries > 0);
    struct order o = {0};
    rt_position_t pos = rt_history_position(h);
    CHECK_EQ_INT(pos.seq, THREADS * PER_THREAD);
    pos.seq = 0;
    CHECK_EQ_INT(
        rt_history_since(h, pos, ROOMS("r0", "r1", "r2", "shared"), 4, check_order, &o, NULL), 0);
    CHECK_EQ_INT(o.n, THREADS * PER_THREAD);
    CHECK_EQ_INT(o.bad, 0);
    rt_history_free(h);
}

/* The same race with small rings, so rings evict under the queries: an answer is either
 * not recovered with nothing delivered, or complete and in order. */
static void test_threads_evicting(void)
{
    rt_history_t *h = new_history((rt_history_config_t){.ring_max_count = 50});
    if (!h)
        return;
    pthread_t t[THREADS];
    struct race r[THREADS];
    for (int i = 0; i < THREADS; i++) {
        r[i] = (struct race){h, i, 0};
        pthread_create(&t[i], NULL, appender, &r[i]);
    }
    int bad = 0;
    for (int q = 0;; q++) {
        rt_position_t pos = rt_history_position(h);
        bool done = pos.seq >= (uint64_t)THREADS * PER_THREAD;
        pos.seq = q % 2 ? pos.seq / 2 : pos.seq - pos.seq % 20;
        struct order o = {.last = pos.seq};
        int rc = rt_history_since(h, pos, ROOMS("r0", "shared", "r2"), 3, check_order, &o, NULL);
        bad += (rc != 0 && rc != RT_HISTORY_GAP) || (rc == RT_HISTORY_GAP && o.n) || o.bad;
        if (done)
            break;
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        bad += r[i].bad;
    }
    CHECK_EQ_INT(bad, 0);
    rt_position_t pos = rt_history_position(h);
    pos.seq -= 10;
    struct order o = {.last = pos.seq};
    CHECK_EQ_INT(
        rt_history_since(h, pos, ROOMS("r0", "r1", "r2", "shared"), 4, check_order, &o, NULL), 0);
    CHECK_EQ_INT(o.n, 10);
    CHECK_EQ_INT(o.bad, 0);
    pos.seq = 0;
    CHECK_EQ_INT(rt_history_since(h, pos, ROOMS("r1"), 1, check_order, &o, NULL), RT_HISTORY_GAP);
    rt_history_free(h);
}

int main(void)
{
    test_offsets();
    test_order_and_dedupe();
    test_except_rooms();
    test_count_eviction();
    test_bytes_eviction();
    test_store_bounds();
    test_age_expiry();
    test_partly_evicted_entry();
    test_slots_shrink();
    test_epoch_mismatch();
    test_session_without_offset();
    test_session_single_use();
    test_session_offset_anchor();
    test_session_expiry();
    test_session_limits();
    test_session_live_rooms();
    test_recent();
    test_many_rooms();
    test_out_of_memory();
    test_threads();
    test_threads_evicting();
    return test_report("test_rt_history");
}

/* SPDX-License-Identifier: MIT */
/*
 * The consistent-hash ring of the sharded broker (rt/rt_ring.c): keys spread evenly over
 * 2 to 4 shards, a fifth shard takes about 1/5 of the keys and only those move (all to it),
 * the order the shards are given in changes nothing, and the answers are fixed values
 * (golden), so every process, build and machine maps a namespace to the same shard.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_ring.h"
#include "test.h"

#define KEYS 20000

static const char *const names[] = {"10.0.0.1:6379/0", "10.0.0.2:6379/0", "10.0.0.3:6379/0",
                                    "10.0.0.4:6379/0", "10.0.0.5:6379/0"};

static size_t key(size_t i, char *buf, size_t cap)
{
    return (size_t)snprintf(buf, cap, "/nsp%zu", i);
}

/* Every shard's share of KEYS namespaces is within 25% of the fair one. */
static void test_distribution(void)
{
    for (size_t n = 2; n <= 4; n++) {
        rt_ring_t *r = rt_ring_new(names, n);
        CHECK(r != NULL && rt_ring_size(r) == n);
        size_t count[4] = {0};
        char buf[32];
        for (size_t i = 0; i < KEYS; i++) {
            size_t len = key(i, buf, sizeof(buf));
            size_t s = rt_ring_pick(r, buf, len);
            CHECK(s < n);
            if (s < n)
                count[s]++;
        }
        for (size_t s = 0; s < n; s++) {
            double share = (double)count[s] * (double)n / KEYS;
            if (share < 0.75 || share > 1.25)
                fprintf(stderr, "shard %zu of %zu holds %.2f of its fair share\n", s, n, share);
            CHECK(share >= 0.75 && share <= 1.25);
        }
        rt_ring_free(r);
    }
}

/* Adding a shard moves only the keys it takes over (to it), about 1/(N+1) of them. */
static void test_stability(void)
{
    for (size_t n = 2; n <= 4; n++) {
        rt_ring_t *before = rt_ring_new(names, n), *after = rt_ring_new(names, n + 1);
        CHECK(before != NULL && after != NULL);
        size_t moved = 0, elsewhere = 0;
        char buf[32];
        for (size_t i = 0; i < KEYS; i++) {
            size_t len = key(i, buf, sizeof(buf));
            size_t a = rt_ring_pick(before, buf, len), b = rt_ring_pick(after, buf, len);
            if (a != b) {
                moved++;
                elsewhere += b != n; /* moved, but not to the new shard */
            }
        }
        double fraction = (double)moved / KEYS, fair = 1.0 / (double)(n + 1);
        fprintf(stderr, "%zu -> %zu shards: %.3f of the keys moved (fair %.3f)\n", n, n + 1,
                fraction, fair);
        CHECK_EQ_INT(elsewhere, 0);
        CHECK(fraction > fair * 0.75 && fraction < fair * 1.25);
        rt_ring_free(before);
        rt_ring_free(after);
    }
}

/* The names' order does not matter: each key goes to the shard of the same name. */
static void test_order_independent(void)
{
    const char *const reversed[] = {names[3], names[2], names[1], names[0]};
    rt_ring_t *a = rt_ring_new(names, 4), *b = rt_ring_new(reversed, 4);
    CHECK(a != NULL && b != NULL);
    size_t differ = 0;
    char buf[32];
    for (size_t i = 0; i < KEYS; i++) {
        size_t len = key(i, buf, sizeof(buf));
        differ +=
            strcmp(names[rt_ring_pick(a, buf, len)], reversed[rt_ring_pick(b, buf, len)]) != 0;
    }
    CHECK_EQ_INT(differ, 0);
    rt_ring_free(a);
    rt_ring_free(b);
}

/* Fixed answers: the hash has no seed and depends on nothing but the bytes (a change here
 * moves namespaces between the Redis of a running cluster: nodes of two versions would
 * disagree). */
static void test_golden(void)
{
    CHECK(rt_ring_hash("", 0) == 0xefd01f60ba992926ull);
    CHECK(rt_ring_hash("/chat", 5) == 0x525d86c9be20a0f8ull);
    rt_ring_t *r = rt_ring_new(names, 3);
    CHECK(r != NULL);
    static const char *const keys[] = {"/", "/chat", "/admin", "/game", "/news", "/a", "/b", "/c"};
    static const size_t want[] = {0, 1, 2, 2, 1, 0, 2, 2};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        CHECK_EQ_INT(rt_ring_pick(r, keys[i], strlen(keys[i])), want[i]);
    rt_ring_free(r);
}

static void test_bad(void)
{
    const char *const twice[] = {"a:1/0", "a:1/0"};
    CHECK(rt_ring_new(twice, 2) == NULL);
    CHECK(rt_ring_new(names, 0) == NULL);
    rt_ring_t *one = rt_ring_new(names, 1);
    CHECK(one != NULL && rt_ring_pick(one, "x", 1) == 0 && rt_ring_pick(one, "", 0) == 0);
    rt_ring_free(one);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--golden") == 0) { /* prints the values test_golden pins */
        rt_ring_t *r = rt_ring_new(names, 3);
        static const char *const keys[] = {"/",     "/chat", "/admin", "/game",
                                           "/news", "/a",    "/b",     "/c"};
        printf("%016llx %016llx\n", (unsigned long long)rt_ring_hash("", 0),
               (unsigned long long)rt_ring_hash("/chat", 5));
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
            printf("%zu, ", rt_ring_pick(r, keys[i], strlen(keys[i])));
        printf("\n");
        rt_ring_free(r);
        return 0;
    }
    test_distribution();
    test_stability();
    test_order_independent();
    test_golden();
    test_bad();
    return test_report("test_rt_ring");
}

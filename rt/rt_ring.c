/* SPDX-License-Identifier: MIT */
/*
 * The consistent-hash ring (rt_ring.h): a sorted array of points, a binary search per key.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_ring.h"

#define RING_MAX_SHARDS 1024

typedef struct ring_point {
    uint64_t at;
    uint32_t shard;
} ring_point_t;

struct rt_ring {
    size_t n, npoints;
    ring_point_t points[];
};

uint64_t rt_ring_hash(const void *p, size_t len)
{
    const unsigned char *s = p;
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a 64 */
    for (size_t i = 0; i < len; i++) {
        h ^= s[i];
        h *= 0x100000001b3ull;
    }
    /* FNV's low bits of short, similar keys ("/chat1", "/chat2") are poorly spread over
     * the circle; a multiply-xorshift finaliser makes every input bit reach every output
     * bit. */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

/* Sorts by position, equal positions by name, so that the order of the names given does
 * not change the ring. */
static const char *const *sort_names;

static int point_cmp(const void *a, const void *b)
{
    const ring_point_t *x = a, *y = b;
    if (x->at != y->at)
        return x->at < y->at ? -1 : 1;
    return strcmp(sort_names[x->shard], sort_names[y->shard]);
}

rt_ring_t *rt_ring_new(const char *const *names, size_t n)
{
    if (n == 0 || n > RING_MAX_SHARDS)
        return NULL;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < i; j++)
            if (strcmp(names[i], names[j]) == 0)
                return NULL;
    size_t npoints = n * RT_RING_VNODES;
    rt_ring_t *r = malloc(sizeof(*r) + npoints * sizeof(r->points[0]));
    if (r == NULL)
        return NULL;
    r->n = n;
    r->npoints = npoints;
    char buf[64];
    for (size_t i = 0; i < n; i++) {
        for (size_t v = 0; v < RT_RING_VNODES; v++) {
            /* Point v of a shard: the hash of "<hash of its name>#<v>" (any name length,
             * no allocation). */
            int len = snprintf(buf, sizeof(buf), "%016llx#%zu",
                               (unsigned long long)rt_ring_hash(names[i], strlen(names[i])), v);
            r->points[i * RT_RING_VNODES + v] =
                (ring_point_t){rt_ring_hash(buf, (size_t)len), (uint32_t)i};
        }
    }
    /* qsort's comparator takes no context: the names go through a static, guarded by a
     * lock since rings may be built on several threads. */
    static pthread_mutex_t sort_lock = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&sort_lock);
    sort_names = names;
    qsort(r->points, npoints, sizeof(r->points[0]), point_cmp);
    sort_names = NULL;
    pthread_mutex_unlock(&sort_lock);
    return r;
}

size_t rt_ring_pick(const rt_ring_t *r, const void *key, size_t len)
{
    uint64_t h = rt_ring_hash(key, len);
    size_t lo = 0, hi = r->npoints;
    while (lo < hi) { /* the first point at or after h */
        size_t mid = lo + (hi - lo) / 2;
        if (r->points[mid].at < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    return r->points[lo == r->npoints ? 0 : lo].shard;
}

size_t rt_ring_size(const rt_ring_t *r)
{
    return r->n;
}

void rt_ring_free(rt_ring_t *r)
{
    free(r);
}

/* SPDX-License-Identifier: MIT */
/* Per-channel broadcast numbers (see rt_chanseq.h): a chained hash table of channels, each
 * with a short list of origins (a cluster has few nodes). */
#include "rt_chanseq.h"
#include "rt_ring.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct cs_origin {
    struct cs_origin *next;
    uint64_t instance, num, at_ms;
    char id[];
} cs_origin_t;

typedef struct cs_chan {
    struct cs_chan *next;
    cs_origin_t *origins;
    uint64_t hash;
    size_t len;
    char name[];
} cs_chan_t;

struct rt_chanseq {
    cs_chan_t **b;
    size_t nb, nchans, nentries;
};

#define CS_BUCKETS_MIN 64

rt_chanseq_t *rt_chanseq_new(void)
{
    rt_chanseq_t *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->b = calloc(CS_BUCKETS_MIN, sizeof(*t->b));
    if (t->b == NULL) {
        free(t);
        return NULL;
    }
    t->nb = CS_BUCKETS_MIN;
    return t;
}

static void chan_free(rt_chanseq_t *t, cs_chan_t *c)
{
    while (c->origins) {
        cs_origin_t *o = c->origins;
        c->origins = o->next;
        free(o);
        t->nentries--;
    }
    free(c);
    t->nchans--;
}

void rt_chanseq_free(rt_chanseq_t *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->nb; i++)
        while (t->b[i]) {
            cs_chan_t *c = t->b[i];
            t->b[i] = c->next;
            chan_free(t, c);
        }
    free(t->b);
    free(t);
}

/* Doubles the buckets once there are more channels than buckets (kept as is without memory). */
static void grow(rt_chanseq_t *t)
{
    if (t->nchans < t->nb)
        return;
    cs_chan_t **nb = calloc(t->nb * 2, sizeof(*nb));
    if (nb == NULL)
        return;
    for (size_t i = 0; i < t->nb; i++)
        while (t->b[i]) {
            cs_chan_t *c = t->b[i];
            t->b[i] = c->next;
            size_t at = c->hash & (t->nb * 2 - 1);
            c->next = nb[at];
            nb[at] = c;
        }
    free(t->b);
    t->b = nb;
    t->nb *= 2;
}

/* The slot holding channel (or the NULL at its chain's end). */
static cs_chan_t **chan_slot(rt_chanseq_t *t, const char *channel, size_t len, uint64_t h)
{
    cs_chan_t **it = &t->b[h & (t->nb - 1)];
    while (*it && ((*it)->hash != h || (*it)->len != len || memcmp((*it)->name, channel, len) != 0))
        it = &(*it)->next;
    return it;
}

/* Origin's record on channel, made (num 0) if new; NULL without memory. */
static cs_origin_t *entry(rt_chanseq_t *t, const char *channel, size_t len, const char *origin)
{
    uint64_t h = rt_ring_hash(channel, len);
    cs_chan_t **slot = chan_slot(t, channel, len, h);
    cs_chan_t *c = *slot;
    if (c == NULL) {
        grow(t);
        slot = chan_slot(t, channel, len, h);
        c = malloc(sizeof(*c) + len);
        if (c == NULL)
            return NULL;
        *c = (cs_chan_t){.hash = h, .len = len};
        memcpy(c->name, channel, len);
        *slot = c;
        t->nchans++;
    }
    cs_origin_t *o = c->origins;
    while (o && strcmp(o->id, origin) != 0)
        o = o->next;
    if (o == NULL) {
        size_t n = strlen(origin) + 1;
        o = malloc(sizeof(*o) + n);
        if (o == NULL)
            return NULL; /* c stays, empty: rt_chanseq_prune() drops it */
        *o = (cs_origin_t){.next = c->origins};
        memcpy(o->id, origin, n);
        c->origins = o;
        t->nentries++;
    }
    return o;
}

uint64_t rt_chanseq_next(rt_chanseq_t *t, const char *channel, size_t len, uint64_t now_ms)
{
    cs_origin_t *o = entry(t, channel, len, "");
    if (o == NULL)
        return 0;
    o->at_ms = now_ms;
    return ++o->num;
}

uint64_t rt_chanseq_heard(rt_chanseq_t *t, const char *channel, size_t len, const char *origin,
                          uint64_t instance, uint64_t num, uint64_t now_ms)
{
    if (num == 0)
        return 0;
    cs_origin_t *o = entry(t, channel, len, origin);
    if (o == NULL)
        return 0;
    uint64_t skipped = 0;
    if (o->num != 0 && o->instance == instance && num > o->num + 1)
        skipped = num - o->num - 1;
    /* One PUBLISH per channel: a number at or below the last is the publisher's table
     * starting afresh (it pruned the channel), counted on from there. */
    o->num = num;
    o->instance = instance;
    o->at_ms = now_ms;
    return skipped;
}

void rt_chanseq_forget(rt_chanseq_t *t, const char *channel, size_t len)
{
    cs_chan_t **slot = chan_slot(t, channel, len, rt_ring_hash(channel, len));
    cs_chan_t *c = *slot;
    if (c != NULL) {
        *slot = c->next;
        chan_free(t, c);
    }
}

void rt_chanseq_forget_prefix(rt_chanseq_t *t, const char *prefix, size_t len)
{
    for (size_t i = 0; i < t->nb; i++)
        for (cs_chan_t **it = &t->b[i]; *it;) {
            cs_chan_t *c = *it;
            if (c->len >= len && memcmp(c->name, prefix, len) == 0) {
                *it = c->next;
                chan_free(t, c);
            } else {
                it = &c->next;
            }
        }
}

void rt_chanseq_prune(rt_chanseq_t *t, uint64_t cutoff_ms)
{
    for (size_t i = 0; i < t->nb; i++)
        for (cs_chan_t **it = &t->b[i]; *it;) {
            cs_chan_t *c = *it;
            for (cs_origin_t **o = &c->origins; *o;) {
                cs_origin_t *e = *o;
                if (e->at_ms < cutoff_ms) {
                    *o = e->next;
                    free(e);
                    t->nentries--;
                } else {
                    o = &e->next;
                }
            }
            if (c->origins == NULL) {
                *it = c->next;
                chan_free(t, c);
            } else {
                it = &c->next;
            }
        }
}

size_t rt_chanseq_size(const rt_chanseq_t *t)
{
    return t->nentries;
}

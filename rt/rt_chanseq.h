/* SPDX-License-Identifier: MIT */
/*
 * Per-channel broadcast numbers, to count what a plain publish (no history) lost.
 *
 * A publishing broker numbers its broadcasts on each channel in sending order
 * (rt_chanseq_next()); a receiving broker remembers, per channel it holds and per origin
 * (node id and broker instance), the last number it heard (rt_chanseq_heard()): a jump on a
 * channel the receiver held all along is a broadcast lost on the way (a subscription
 * connection cut, a publisher's queue overflowing). A per-origin number alone cannot tell
 * that: with interest-based subscriptions a node does not hold every channel an origin
 * publishes to, so its numbers jump all the time.
 *
 * Not thread-safe: one table belongs to one thread (the Redis broker's). Memory: one entry
 * per channel (and origin) seen since the last rt_chanseq_prune() that did not drop it.
 */
#ifndef EDDY_RT_CHANSEQ_H
#define EDDY_RT_CHANSEQ_H

#include <stddef.h>
#include <stdint.h>

typedef struct rt_chanseq rt_chanseq_t;

/* An empty table; NULL without memory. */
rt_chanseq_t *rt_chanseq_new(void);

/* Frees t and its entries; NULL is ignored. */
void rt_chanseq_free(rt_chanseq_t *t);

/* The next number (1, 2, ...) of channel (len bytes) for a publisher; 0 without memory (the
 * receivers then count nothing for it). now_ms dates the entry for rt_chanseq_prune(). */
uint64_t rt_chanseq_next(rt_chanseq_t *t, const char *channel, size_t len, uint64_t now_ms);

/*
 * A receiver heard number num (0: unnumbered, ignored) of origin's broker instance on
 * channel (len bytes): returns how many numbers were skipped since the last one heard from
 * that instance there (0 the first time, after a new instance, after a number at or below
 * the last one: the publisher numbering that channel afresh, or without memory).
 */
uint64_t rt_chanseq_heard(rt_chanseq_t *t, const char *channel, size_t len, const char *origin,
                          uint64_t instance, uint64_t num, uint64_t now_ms);

/* Forgets channel (len bytes): the receiver subscribes to it afresh, so what was published
 * while it did not hold it is not lost. */
void rt_chanseq_forget(rt_chanseq_t *t, const char *channel, size_t len);

/* Forgets every channel starting with prefix (len bytes): a pattern subscription
 * (prefix*) held afresh. Visits the whole table: for a rare event. */
void rt_chanseq_forget_prefix(rt_chanseq_t *t, const char *prefix, size_t len);

/* Drops the origins (and channels left without one) last heard or numbered before cutoff_ms. */
void rt_chanseq_prune(rt_chanseq_t *t, uint64_t cutoff_ms);

/* Entries (channel, origin) held: for tests. */
size_t rt_chanseq_size(const rt_chanseq_t *t);

#endif

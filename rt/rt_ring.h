/* SPDX-License-Identifier: MIT */
/*
 * A consistent-hash ring (rt_broker_shard.c): which of N shards owns a key. Each shard is
 * placed on a 64-bit circle at RT_RING_VNODES points (virtual nodes) derived from its
 * name; a key belongs to the shard of the first point at or after the key's hash, going
 * round. So keys spread evenly over the shards, and adding a shard to N moves only the
 * keys its new points take over (about 1/(N+1) of them), all to the new shard.
 *
 * Deterministic: the hash has no seed and the placement depends on the names only, not on
 * their order, so every process given the same names maps every key to the same shard
 * (nodes of a cluster must agree on where a namespace lives). Private to rt/.
 */
#ifndef EDDY_RT_RING_H
#define EDDY_RT_RING_H

#include <stddef.h>
#include <stdint.h>

/* Points per shard: with 160, each shard's share of keys stays within about 15% of the
 * fair one for up to a few dozen shards. */
#define RT_RING_VNODES 160

typedef struct rt_ring rt_ring_t;

/* The ring's hash (FNV-1a 64 with a final avalanche mix), stable across processes,
 * versions and architectures. */
uint64_t rt_ring_hash(const void *p, size_t len);

/*
 * A ring of n shards (1 to 1024) named names[0..n) (borrowed during the call; distinct:
 * the same name twice is refused). Shard i is index i in rt_ring_pick()'s answers.
 * Returns the ring or NULL (n out of range, a name repeated, out of memory).
 */
rt_ring_t *rt_ring_new(const char *const *names, size_t n);
/* The index of the shard that owns key[0..len). Thread-safe (the ring is read-only). */
size_t rt_ring_pick(const rt_ring_t *r, const void *key, size_t len);
size_t rt_ring_size(const rt_ring_t *r);
void rt_ring_free(rt_ring_t *r);

#endif /* EDDY_RT_RING_H */

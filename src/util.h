/* SPDX-License-Identifier: MIT */
/*
 * Utilities shared by every module (util.c): clocks, a growable buffer, an arena, hash
 * maps, peer addresses. Nothing here is API.
 */
#ifndef EDDY_UTIL_H
#define EDDY_UTIL_H

#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "eddy.h"

typedef struct eddy__conn eddy__conn_t;

#define EDDY__UNUSED(x)     ((void)(x))
#define EDDY__MIN(a, b)     ((a) < (b) ? (a) : (b))
#define EDDY__MAX(a, b)     ((a) > (b) ? (a) : (b))
#define EDDY__ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

uint64_t eddy__monotonic_ms(void);
double eddy__wall_time(void);

/* A growable byte buffer. */
typedef struct eddy__buf {
    char *data;
    size_t len;
    size_t cap;
} eddy__buf_t;

/* Makes room for extra more bytes (plus one spare byte, so data[len] may hold a NUL). */
int eddy__buf_reserve(eddy__buf_t *buf, size_t extra);
int eddy__buf_append(eddy__buf_t *buf, const void *data, size_t len);
int eddy__buf_printf(eddy__buf_t *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void eddy__buf_free(eddy__buf_t *buf);

/* A bump allocator whose blocks never move, so returned pointers stay valid until reset. */
typedef struct eddy__arena_block eddy__arena_block_t;
typedef struct eddy__arena {
    eddy__arena_block_t *head;
} eddy__arena_t;

void *eddy__arena_alloc(eddy__arena_t *arena, size_t size);
char *eddy__arena_strndup(eddy__arena_t *arena, const char *s, size_t len);
/* Frees every block but the first (kept for the next request) and empties it. */
void eddy__arena_reset(eddy__arena_t *arena);
void eddy__arena_free(eddy__arena_t *arena);

/* Mixes a 64-bit key (ids, timer ids) into a hash whose low bits index a power-of-two
 * table (the finalizer of MurmurHash3). */
static inline size_t eddy__hash_u64(uint64_t key)
{
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdull;
    key ^= key >> 33;
    return (size_t)key;
}

/* A uint64 -> pointer hash map (open addressing, linear probing). Key 0 is reserved. */
typedef struct eddy__map {
    uint64_t *keys;
    void **values;
    size_t len;
    size_t mask; /* capacity - 1, capacity a power of two */
} eddy__map_t;

/* Session id -> connection, open addressing over the connection pointers alone (the key is
 * read from the connection): 8 bytes a slot. registry.c. */
typedef struct eddy__connmap {
    eddy__conn_t **slots;
    size_t len;
    size_t mask; /* capacity - 1, capacity a power of two */
} eddy__connmap_t;

/* Adds conn under conn->id (not present). Returns 0 or EDDY_ENOMEM. */
int eddy__connmap_put(eddy__connmap_t *map, eddy__conn_t *conn);
eddy__conn_t *eddy__connmap_get(const eddy__connmap_t *map, eddy_fd_t id);
void eddy__connmap_remove(eddy__connmap_t *map, eddy_fd_t id);
void eddy__connmap_free(eddy__connmap_t *map);
/* Iterates: for (size_t i = 0; i <= map.mask && map.slots; i++) if (map.slots[i]) ... */

int eddy__map_put(eddy__map_t *map, uint64_t key, void *value);
void *eddy__map_get(const eddy__map_t *map, uint64_t key);
void *eddy__map_remove(eddy__map_t *map, uint64_t key);
void eddy__map_free(eddy__map_t *map);

/* A peer's address, compactly: the IPv6 address or the IPv4 one in its first 4 bytes. */
typedef struct eddy__peer {
    uint8_t addr[16];
    uint16_t port; /* host order */
    bool v4;
} eddy__peer_t;

/* Stores a socket address (AF_INET or AF_INET6). */
void eddy__peer_set(eddy__peer_t *peer, const struct sockaddr *sa);
/* Formats it as text and port. */
void eddy__peer_format(const eddy__peer_t *peer, char ip[46], int *port);

#endif /* EDDY_UTIL_H */

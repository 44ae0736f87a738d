/* SPDX-License-Identifier: MIT */
/* Small building blocks: clocks, byte buffers, an arena, a hash map, error strings, peer
 * addresses. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util.h"

uint64_t eddy__monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

double eddy__wall_time(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- byte buffer ---- */

int eddy__buf_reserve(eddy__buf_t *buf, size_t extra)
{
    if (extra > SIZE_MAX / 2 - buf->len)
        return EDDY_ENOMEM;
    size_t need = buf->len + extra + 1;
    if (need <= buf->cap)
        return 0;
    size_t cap = buf->cap ? buf->cap : 256;
    while (cap < need)
        cap *= 2;
    char *data = realloc(buf->data, cap);
    if (data == NULL)
        return EDDY_ENOMEM;
    buf->data = data;
    buf->cap = cap;
    return 0;
}

int eddy__buf_append(eddy__buf_t *buf, const void *data, size_t len)
{
    if (eddy__buf_reserve(buf, len) != 0)
        return EDDY_ENOMEM;
    if (len)
        memcpy(buf->data + buf->len, data, len);
    buf->len += len;
    return 0;
}

int eddy__buf_printf(eddy__buf_t *buf, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || eddy__buf_reserve(buf, (size_t)n) != 0)
        return EDDY_ENOMEM;
    va_start(ap, fmt);
    vsnprintf(buf->data + buf->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    buf->len += (size_t)n;
    return 0;
}

void eddy__buf_free(eddy__buf_t *buf)
{
    free(buf->data);
    buf->data = NULL;
    buf->len = buf->cap = 0;
}

/* ---- arena ---- */

struct eddy__arena_block {
    eddy__arena_block_t *next;
    size_t used;
    size_t cap;
    _Alignas(16) char data[];
};

#define ARENA_BLOCK_SIZE 1024

void *eddy__arena_alloc(eddy__arena_t *arena, size_t size)
{
    size = (size + 15) & ~(size_t)15;
    eddy__arena_block_t *block = arena->head;
    if (block == NULL || block->cap - block->used < size) {
        size_t cap = EDDY__MAX(size, (size_t)ARENA_BLOCK_SIZE);
        eddy__arena_block_t *fresh = malloc(sizeof(*fresh) + cap);
        if (fresh == NULL)
            return NULL;
        fresh->used = 0;
        fresh->cap = cap;
        fresh->next = block;
        arena->head = block = fresh;
    }
    void *p = block->data + block->used;
    block->used += size;
    return p;
}

char *eddy__arena_strndup(eddy__arena_t *arena, const char *s, size_t len)
{
    char *copy = eddy__arena_alloc(arena, len + 1);
    if (copy == NULL)
        return NULL;
    memcpy(copy, s, len);
    copy[len] = '\0';
    return copy;
}

void eddy__arena_reset(eddy__arena_t *arena)
{
    eddy__arena_block_t *block = arena->head;
    if (block == NULL)
        return;
    /* Keep the oldest block: it is the standard size, and requests rarely need more. */
    while (block->next != NULL) {
        eddy__arena_block_t *next = block->next;
        free(block);
        block = next;
    }
    block->used = 0;
    arena->head = block;
}

void eddy__arena_free(eddy__arena_t *arena)
{
    eddy__arena_block_t *block = arena->head;
    while (block != NULL) {
        eddy__arena_block_t *next = block->next;
        free(block);
        block = next;
    }
    arena->head = NULL;
}

/* ---- uint64 -> pointer map ---- */

static int map_grow(eddy__map_t *map)
{
    size_t cap = map->keys ? (map->mask + 1) * 2 : 16;
    uint64_t *keys = calloc(cap, sizeof(*keys));
    void **values = calloc(cap, sizeof(*values));
    if (keys == NULL || values == NULL) {
        free(keys);
        free(values);
        return EDDY_ENOMEM;
    }
    size_t mask = cap - 1;
    if (map->keys != NULL) {
        for (size_t i = 0; i <= map->mask; i++) {
            if (map->keys[i] == 0)
                continue;
            size_t j = eddy__hash_u64(map->keys[i]) & mask;
            while (keys[j] != 0)
                j = (j + 1) & mask;
            keys[j] = map->keys[i];
            values[j] = map->values[i];
        }
    }
    free(map->keys);
    free(map->values);
    map->keys = keys;
    map->values = values;
    map->mask = mask;
    return 0;
}

int eddy__map_put(eddy__map_t *map, uint64_t key, void *value)
{
    if (map->keys == NULL || (map->len + 1) * 4 > (map->mask + 1) * 3) {
        if (map_grow(map) != 0)
            return EDDY_ENOMEM;
    }
    size_t i = eddy__hash_u64(key) & map->mask;
    while (map->keys[i] != 0 && map->keys[i] != key)
        i = (i + 1) & map->mask;
    if (map->keys[i] == 0)
        map->len++;
    map->keys[i] = key;
    map->values[i] = value;
    return 0;
}

void *eddy__map_get(const eddy__map_t *map, uint64_t key)
{
    if (map->keys == NULL)
        return NULL;
    for (size_t i = eddy__hash_u64(key) & map->mask; map->keys[i] != 0; i = (i + 1) & map->mask) {
        if (map->keys[i] == key)
            return map->values[i];
    }
    return NULL;
}

void *eddy__map_remove(eddy__map_t *map, uint64_t key)
{
    if (map->keys == NULL)
        return NULL;
    size_t i = eddy__hash_u64(key) & map->mask;
    while (map->keys[i] != key) {
        if (map->keys[i] == 0)
            return NULL;
        i = (i + 1) & map->mask;
    }
    void *value = map->values[i];
    map->len--;
    /* Backward-shift deletion keeps probe chains intact without tombstones. */
    size_t hole = i;
    for (size_t j = (i + 1) & map->mask; map->keys[j] != 0; j = (j + 1) & map->mask) {
        size_t home = eddy__hash_u64(map->keys[j]) & map->mask;
        /* Move j into the hole unless its home lies cyclically in (hole, j]. */
        bool stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!stays) {
            map->keys[hole] = map->keys[j];
            map->values[hole] = map->values[j];
            hole = j;
        }
    }
    map->keys[hole] = 0;
    map->values[hole] = NULL;
    return value;
}

void eddy__map_free(eddy__map_t *map)
{
    free(map->keys);
    free(map->values);
    memset(map, 0, sizeof(*map));
}

/* ---- version ---- */

const char *eddy_version(void)
{
    return EDDY_VERSION_STRING;
}

/* ---- errors ---- */

const char *eddy_strerror(int err)
{
    switch (err) {
    case EDDY_OK:
        return "success";
    case EDDY_AGAIN:
        return "more input needed";
    case EDDY_EINVAL:
        return "invalid argument";
    case EDDY_ENOMEM:
        return "out of memory";
    case EDDY_ENOTFOUND:
        return "no such connection";
    case EDDY_ESTATE:
        return "connection is not in a state that allows this";
    case EDDY_ETOOBIG:
        return "data exceeds the configured limit";
    case EDDY_EPROTO:
        return "malformed protocol input";
    case EDDY_EUTF8:
        return "invalid UTF-8";
    case EDDY_ECLOSED:
        return "connection closed";
    case EDDY_EKEY:
        return "unknown setting";
    case EDDY_EVALUE:
        return "invalid setting value";
    case EDDY_ERUNNING:
        return "server is running";
    case EDDY_ENOCALLBACK:
        return "required callback not set";
    case EDDY_QUEUED:
        return "queued under back-pressure";
    case EDDY_PENDING:
        return "answer deferred";
    case EDDY_EDROPPED:
        return "dropped: the connection is a slow consumer, or not ready for a volatile message";
    default:
        break;
    }
    /* strerrordesc_np, unlike strerror, never writes to a shared buffer: its text is
     * static, so any thread may call this. */
    const char *text = err < 0 && err > -4096 ? strerrordesc_np(-err) : NULL;
    return text != NULL ? text : "unknown error";
}

/* ---- peer addresses ---- */

void eddy__peer_set(eddy__peer_t *peer, const struct sockaddr *sa)
{
    memset(peer, 0, sizeof(*peer));
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        memcpy(peer->addr, &a->sin6_addr, 16);
        peer->port = ntohs(a->sin6_port);
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        memcpy(peer->addr, &a->sin_addr, 4);
        peer->port = ntohs(a->sin_port);
        peer->v4 = true;
    }
}

void eddy__peer_format(const eddy__peer_t *peer, char ip[46], int *port)
{
    *port = peer->port;
    if (!peer->v4) {
        inet_ntop(AF_INET6, peer->addr, ip, 46);
        return;
    }
    /* By hand: glibc's inet_ntop formats IPv4 with sprintf (about 1,700 instructions), and
     * every request and handshake fills in its remote address. */
    char *p = ip;
    for (int i = 0; i < 4; i++) {
        unsigned v = peer->addr[i];
        if (v >= 100)
            *p++ = (char)('0' + v / 100);
        if (v >= 10)
            *p++ = (char)('0' + v / 10 % 10);
        *p++ = (char)('0' + v % 10);
        *p++ = i < 3 ? '.' : '\0';
    }
}

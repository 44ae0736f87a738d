/* SPDX-License-Identifier: MIT */
/*
 * The session registry: every live connection of the server by session id, whatever loop
 * owns it. A loop finds its own connections in its private map without locking; the
 * registry answers the questions other threads ask (which loop owns this id, is it an
 * established WebSocket, its client_info) and hands out ids: one atomic counter for the
 * whole server, so ids increase across loops and are never reused.
 *
 * It is sharded by id, each shard behind its own mutex: only accepts, closes and calls
 * from threads that do not own the connection take a lock, never the owner's hot path.
 * The registry maps ids to the connections themselves: the fields other threads read are
 * set before registration or are atomics the owner updates without the lock, and a
 * connection is freed only after it left its shard under the lock, so a reader holding
 * the lock never sees it go.
 */
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "registry.h"

/* ---- id -> connection maps ---- */

static int connmap_grow(eddy__connmap_t *map)
{
    size_t cap = map->slots ? (map->mask + 1) * 2 : 16;
    eddy__conn_t **slots = calloc(cap, sizeof(*slots));
    if (slots == NULL)
        return EDDY_ENOMEM;
    for (size_t i = 0; map->slots != NULL && i <= map->mask; i++) {
        eddy__conn_t *conn = map->slots[i];
        if (conn == NULL)
            continue;
        size_t j = eddy__hash_u64(conn->id) & (cap - 1);
        while (slots[j] != NULL)
            j = (j + 1) & (cap - 1);
        slots[j] = conn;
    }
    free(map->slots);
    map->slots = slots;
    map->mask = cap - 1;
    return 0;
}

int eddy__connmap_put(eddy__connmap_t *map, eddy__conn_t *conn)
{
    if (map->slots == NULL || (map->len + 1) * 4 > (map->mask + 1) * 3) {
        if (connmap_grow(map) != 0)
            return EDDY_ENOMEM;
    }
    size_t i = eddy__hash_u64(conn->id) & map->mask;
    while (map->slots[i] != NULL)
        i = (i + 1) & map->mask;
    map->slots[i] = conn;
    map->len++;
    return 0;
}

eddy__conn_t *eddy__connmap_get(const eddy__connmap_t *map, eddy_fd_t id)
{
    if (map->slots == NULL)
        return NULL;
    for (size_t i = eddy__hash_u64(id) & map->mask; map->slots[i] != NULL;
         i = (i + 1) & map->mask) {
        if (map->slots[i]->id == id)
            return map->slots[i];
    }
    return NULL;
}

void eddy__connmap_remove(eddy__connmap_t *map, eddy_fd_t id)
{
    if (map->slots == NULL)
        return;
    size_t i = eddy__hash_u64(id) & map->mask;
    while (map->slots[i] == NULL || map->slots[i]->id != id) {
        if (map->slots[i] == NULL)
            return;
        i = (i + 1) & map->mask;
    }
    map->len--;
    /* Backward-shift deletion keeps probe chains intact without tombstones. */
    size_t hole = i;
    for (size_t j = (i + 1) & map->mask; map->slots[j] != NULL; j = (j + 1) & map->mask) {
        size_t home = eddy__hash_u64(map->slots[j]->id) & map->mask;
        /* Move j into the hole unless its home lies cyclically in (hole, j]. */
        bool stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!stays) {
            map->slots[hole] = map->slots[j];
            hole = j;
        }
    }
    map->slots[hole] = NULL;
}

void eddy__connmap_free(eddy__connmap_t *map)
{
    free(map->slots);
    memset(map, 0, sizeof(*map));
}

/* ---- the registry ---- */

static eddy__registry_shard_t *shard_of(eddy__registry_t *reg, eddy_fd_t id)
{
    return &reg->shards[id % EDDY__REGISTRY_SHARDS];
}

void eddy__registry_init(eddy__registry_t *reg)
{
    memset(reg, 0, sizeof(*reg));
    for (int i = 0; i < EDDY__REGISTRY_SHARDS; i++)
        pthread_mutex_init(&reg->shards[i].lock, NULL);
    atomic_init(&reg->next_id, 1);
    atomic_init(&reg->live, 0);
}

void eddy__registry_free(eddy__registry_t *reg)
{
    for (int i = 0; i < EDDY__REGISTRY_SHARDS; i++) {
        /* The connections belong to their loops, which are gone by now. */
        eddy__registry_shard_t *shard = &reg->shards[i];
        eddy__connmap_free(&shard->map);
        pthread_mutex_destroy(&shard->lock);
    }
}

eddy_fd_t eddy__registry_next_id(eddy__registry_t *reg)
{
    return atomic_fetch_add(&reg->next_id, 1);
}

int eddy__registry_add(eddy__registry_t *reg, eddy__conn_t *conn)
{
    eddy__registry_shard_t *shard = shard_of(reg, conn->id);
    pthread_mutex_lock(&shard->lock);
    int rc = eddy__connmap_put(&shard->map, conn);
    pthread_mutex_unlock(&shard->lock);
    if (rc == 0)
        atomic_fetch_add(&reg->live, 1);
    return rc;
}

void eddy__registry_remove(eddy__registry_t *reg, eddy__conn_t *conn)
{
    eddy__registry_shard_t *shard = shard_of(reg, conn->id);
    pthread_mutex_lock(&shard->lock);
    eddy__connmap_remove(&shard->map, conn->id);
    if (!atomic_load(&conn->closing))
        atomic_fetch_sub(&reg->live, 1);
    pthread_mutex_unlock(&shard->lock);
}

void eddy__session_set_closing(eddy__registry_t *reg, eddy__conn_t *conn)
{
    if (!atomic_exchange(&conn->closing, true))
        atomic_fetch_sub(&reg->live, 1);
}

bool eddy__registry_mark_closing(eddy__registry_t *reg, eddy_fd_t id)
{
    if (id == 0)
        return false;
    eddy__registry_shard_t *shard = shard_of(reg, id);
    pthread_mutex_lock(&shard->lock);
    eddy__conn_t *s = eddy__connmap_get(&shard->map, id);
    bool marked = s != NULL && !atomic_exchange(&s->closing, true);
    if (marked)
        atomic_fetch_sub(&reg->live, 1);
    pthread_mutex_unlock(&shard->lock);
    return marked;
}

bool eddy__registry_start_closing(eddy__registry_t *reg, eddy_fd_t id)
{
    if (id == 0)
        return false;
    eddy__registry_shard_t *shard = shard_of(reg, id);
    pthread_mutex_lock(&shard->lock);
    eddy__conn_t *s = eddy__connmap_get(&shard->map, id);
    uint8_t active = EDDY_WS_STATUS_ACTIVE;
    bool started = s != NULL && !atomic_load(&s->closing) &&
                   atomic_compare_exchange_strong(&s->ws_status, &active, EDDY_WS_STATUS_CLOSING);
    pthread_mutex_unlock(&shard->lock);
    return started;
}

bool eddy__registry_get(eddy__registry_t *reg, eddy_fd_t id, eddy__session_view_t *view)
{
    if (id == 0)
        return false;
    eddy__registry_shard_t *shard = shard_of(reg, id);
    uint32_t last_recv = 0;
    pthread_mutex_lock(&shard->lock);
    eddy__conn_t *s = eddy__connmap_get(&shard->map, id);
    if (s != NULL) {
        view->loop = s->loop->index;
        view->closing = atomic_load(&s->closing);
        view->ws_status = atomic_load(&s->ws_status);
        view->out_bytes = atomic_load_explicit(&s->out_bytes, memory_order_relaxed);
        last_recv = atomic_load_explicit(&s->last_recv_ms, memory_order_relaxed);
        view->connect_ms = (uint64_t)s->connect_s * 1000u;
        view->peer = s->peer;
        view->local_port = s->local_port;
        view->socket_fd = s->io.fd; /* changes only after the connection left the registry */
        view->user_data = atomic_load(&s->user_data);
    }
    pthread_mutex_unlock(&shard->lock);
    if (s != NULL) {
        /* The loop keeps the time of the last input on its monotonic clock (the low 32
         * bits: right for 49.7 days): as Unix time, that long before now (and never before
         * the connection began). */
        uint32_t ago = (uint32_t)eddy__monotonic_ms() - last_recv;
        uint64_t wall = (uint64_t)(eddy__wall_time() * 1000.0) - ago;
        view->last_recv_ms = EDDY__MAX(wall, view->connect_ms);
    }
    return s != NULL;
}

bool eddy__registry_set_user_data(eddy__registry_t *reg, eddy_fd_t id, void *user_data)
{
    if (id == 0)
        return false;
    eddy__registry_shard_t *shard = shard_of(reg, id);
    pthread_mutex_lock(&shard->lock);
    eddy__conn_t *s = eddy__connmap_get(&shard->map, id);
    bool ok = s != NULL && !atomic_load(&s->closing);
    if (ok)
        atomic_store(&s->user_data, user_data);
    pthread_mutex_unlock(&shard->lock);
    return ok;
}

static int compare_ids(const void *a, const void *b)
{
    eddy_fd_t x = *(const eddy_fd_t *)a, y = *(const eddy_fd_t *)b;
    return x < y ? -1 : x > y;
}

size_t eddy__registry_live_ids(eddy__registry_t *reg, eddy_fd_t **ids)
{
    size_t len = 0, cap = atomic_load(&reg->live) + 16;
    eddy_fd_t *out = malloc(cap * sizeof(*out));
    if (out == NULL) {
        *ids = NULL;
        return 0;
    }
    for (int i = 0; i < EDDY__REGISTRY_SHARDS; i++) {
        eddy__registry_shard_t *shard = &reg->shards[i];
        pthread_mutex_lock(&shard->lock);
        for (size_t j = 0; shard->map.slots && j <= shard->map.mask; j++) {
            eddy__conn_t *s = shard->map.slots[j];
            if (s == NULL || atomic_load(&s->closing))
                continue;
            if (len == cap) {
                eddy_fd_t *grown = realloc(out, 2 * cap * sizeof(*out));
                if (grown == NULL) {
                    /* A short list would pass for all of them: none at all. */
                    pthread_mutex_unlock(&shard->lock);
                    free(out);
                    *ids = NULL;
                    return 0;
                }
                out = grown;
                cap *= 2;
            }
            out[len++] = s->id;
        }
        pthread_mutex_unlock(&shard->lock);
    }
    qsort(out, len, sizeof(*out), compare_ids);
    *ids = out;
    return len;
}

int eddy__session_find(eddy_server_t *srv, eddy_fd_t fd, eddy__conn_t **conn,
                       eddy__session_view_t *view)
{
    eddy__loop_t *here = eddy__loop_here(srv);
    *conn = eddy__conn_lookup(here, fd);
    if (*conn != NULL)
        return 0;
    /* Owned here but not live (closing), or gone. */
    if (!eddy__registry_get(&srv->registry, fd, view) || view->closing ||
        (here != NULL && view->loop == here->index))
        return EDDY_ENOTFOUND;
    return 0;
}

/* SPDX-License-Identifier: MIT */
/*
 * The session registry (registry.c): every live session by id, for every thread.
 */
#ifndef EDDY_REGISTRY_H
#define EDDY_REGISTRY_H

#include <pthread.h>
#include <stdbool.h>

#include "util.h"

/* A copy of a session's fields, taken under the lock. */
typedef struct eddy__session_view {
    int loop;
    bool closing;
    uint8_t ws_status;
    int socket_fd;
    uint16_t local_port;
    size_t out_bytes;
    uint64_t last_recv_ms; /* Unix time, ms */
    uint64_t connect_ms;   /* Unix time, ms (whole seconds) */
    eddy__peer_t peer;
    void *user_data;
} eddy__session_view_t;

#define EDDY__REGISTRY_SHARDS 64

typedef struct eddy__registry_shard {
    pthread_mutex_t lock;
    eddy__connmap_t map;
} eddy__registry_shard_t;

typedef struct eddy__registry {
    eddy__registry_shard_t shards[EDDY__REGISTRY_SHARDS];
    _Atomic uint64_t next_id;
    _Atomic size_t live; /* sessions not closing */
} eddy__registry_t;

void eddy__registry_init(eddy__registry_t *reg);
void eddy__registry_free(eddy__registry_t *reg);
/* The next session id: 1 first, increasing, never reused. */
eddy_fd_t eddy__registry_next_id(eddy__registry_t *reg);
/* Registers a connection (its session fields set); returns 0 or EDDY_ENOMEM. */
int eddy__registry_add(eddy__registry_t *reg, eddy__conn_t *conn);
/* Unregisters a connection (owner loop only); no other thread sees it afterwards. */
void eddy__registry_remove(eddy__registry_t *reg, eddy__conn_t *conn);
/* Marks a connection closing: exist() is false from now on, the live count drops. */
void eddy__session_set_closing(eddy__registry_t *reg, eddy__conn_t *conn);
/* Marks a session closing from any thread (eddy_close() elsewhere than its loop): it is
 * gone for exist(), counts and lists at once; its loop closes it when told. Returns false
 * if there is no such session or it was already closing. */
bool eddy__registry_mark_closing(eddy__registry_t *reg, eddy_fd_t id);
/* Moves an established WebSocket's status to CLOSING from any thread (eddy_disconnect()
 * elsewhere than its loop): no longer established, for everyone, at once. Returns false
 * unless the session was established. */
bool eddy__registry_start_closing(eddy__registry_t *reg, eddy_fd_t id);
/* Copies a session's fields; false if no session has this id. Any thread. */
bool eddy__registry_get(eddy__registry_t *reg, eddy_fd_t id, eddy__session_view_t *view);
bool eddy__registry_set_user_data(eddy__registry_t *reg, eddy_fd_t id, void *user_data);
/* Allocates *ids with the ids of live sessions in increasing order; returns how many.
 * Out of memory: *ids is NULL (and 0 is returned), never a partial list. */
size_t eddy__registry_live_ids(eddy__registry_t *reg, eddy_fd_t **ids);

/* Where a method on session fd runs, from any thread: the owner runs it, others post it.
 * Sets *conn when the calling thread's loop owns the live session (act on it now), else
 * fills *view (post the work to srv->loops[view->loop]). Returns 0, or EDDY_ENOTFOUND
 * when there is no such live session. */
int eddy__session_find(eddy_server_t *srv, eddy_fd_t fd, eddy__conn_t **conn,
                       eddy__session_view_t *view);

#endif /* EDDY_REGISTRY_H */

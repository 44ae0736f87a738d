/* SPDX-License-Identifier: MIT */
/*
 * What eio.c (sessions, WebSocket, upgrade) and eio_polling.c (long-polling) share. The
 * locking rules are at the top of eio.c: "(lock held)" below means s->lock.
 */
#ifndef EIO_INTERNAL_H
#define EIO_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "eio.h"
#include "eio_payload.h"
#include "rt_lock.h"

#define EIO_SID_LEN   20
#define EIO_MAX_LOOPS 256 /* eddy's largest worker_num */

enum { ST_OPENING, ST_OPEN, ST_CLOSING, ST_CLOSED };
enum { EIO_TR_POLLING, EIO_TR_WEBSOCKET };
/* Records of a session's packet queue (eio__queue_packet()). */
enum { EIO_REC_TEXT = 0, EIO_REC_BINARY = 1 };

typedef struct eio_buf {
    char *data;
    size_t len;
    size_t cap;
} eio_buf_t;

struct eio_server {
    eddy_server_t *srv;
    eio_config_t cfg;
    char *path;
    size_t path_len;
    eio_handlers_t h;
    void *ud;
    bool freeing;         /* eio_server_free() runs: the engine is gone, touch nothing of it */
    pthread_mutex_t lock; /* the table and the list below */
    eio_session_t **buckets;
    size_t nbuckets;
    size_t count;
    eio_session_t *all; /* every session not yet freed */
    /* The sessions' deadlines, one heap per loop, each used by its loop's thread only
     * (eio.c "heartbeat and timers"); NULL until the loop arms its first. */
    struct eio_timers *timers[EIO_MAX_LOOPS];
    /* Requests refused with each Engine.IO error code (eio_server_errors()). */
    atomic_uint_fast64_t errors[EIO_ERROR_CODES];
};

/* Laid out without holes, deadlines that are never live together sharing a field: there is
 * one of these per connection. */
struct eio_session {
    eio_server_t *es;
    char sid[EIO_SID_LEN + 1];
    uint8_t protocol;     /* 3 or 4 */
    bool supports_binary; /* v3 long-polling: binary payloads allowed (no b64 parameter) */
    uint8_t state;        /* ST_* (lock) */
    atomic_int refs;
    atomic_int tasks; /* tasks posted to a loop (eddy_post, eddy_defer) not yet run */
    rt_lock_t cb_lock;
    rt_lock_t lock;
    /* Guarded by lock: */
    uint8_t transport; /* EIO_TR_* */
    bool in_table;
    bool open_called;          /* the open handler accepted it: the close handler is owed */
    bool probed;               /* "2probe" answered on probe_fd */
    bool flush_posted;         /* a flush of the queue to get_resp is posted to its loop */
    bool discard_get;          /* answer get_resp with a noop (upgraded to WebSocket) */
    bool waiting_pong;         /* v4: a ping is out */
    bool refreshed;            /* v4: the pong wait was extended once already */
    _Atomic eddy_fd_t ws_fd;   /* the WebSocket of the session (direct or upgraded) */
    eddy_fd_t probe_fd;        /* the WebSocket an upgrade is being tried on */
    eddy_response_t *get_resp; /* the pending long-polling GET, on get_fd's loop */
    eddy_fd_t get_fd;
    eio_buf_t out; /* packets queued for long-polling or until the WebSocket opens */
    union {
        uint64_t ping_due;    /* v4 and not waiting_pong: when to send the next ping
                               * (monotonic ms) */
        uint64_t timeout_due; /* v3, or v4 waiting_pong: when the session times out */
    };
    union {
        uint64_t upgrade_due; /* ST_OPEN with a probe_fd: when the upgrade is abandoned */
        uint64_t close_due;   /* ST_CLOSING on long-polling: give up waiting for a GET */
    };
    uint64_t timer_due;         /* the entry that counts (timer_armed): its deadline */
    const char *pending_reason; /* eio__session_finish_later() posted */
    _Atomic(void *) data;
    eio_session_t *hnext; /* table chain */
    eio_session_t *prev;  /* es->all */
    eio_session_t *next;
    uint16_t timer_loop; /* ... and the loop whose heap holds it */
    bool timer_armed;
};

uint64_t eio__now_ms(void);
/* Counts a request refused with Engine.IO error code (0-5). */
void eio__count_error(eio_server_t *es, int code);
int eio__buf_reserve(eio_buf_t *b, size_t len);
int eio__buf_add(eio_buf_t *b, const void *data, size_t len);
void eio__buf_free(eio_buf_t *b);

eio_session_t *eio__fdmap_get(const eio_server_t *es, eddy_fd_t fd);
int eio__fdmap_put(const eio_server_t *es, eddy_fd_t fd, eio_session_t *s);
eio_session_t *eio__fdmap_take(const eio_server_t *es, eddy_fd_t fd);
void eio__fdmap_drop(const eio_server_t *es, eddy_fd_t fd, eio_session_t *s);

/* A task naming s is about to be posted (takes a reference), and one ended. */
void eio__task_posted(eio_session_t *s);
void eio__task_done(eio_session_t *s);
void eio__session_ref(eio_session_t *s);
void eio__session_unref(eio_session_t *s);
eio_session_t *eio__session_new(eio_server_t *es, int protocol, int transport);
eio_session_t *eio__table_find(eio_server_t *es, const char *sid);
void eio__session_arm(eio_session_t *s);
void eio__heartbeat_start(eio_session_t *s);
void eio__session_finish(eio_session_t *s, const char *reason);
void eio__session_finish_later(eio_session_t *s, eddy_fd_t fd, const char *reason);
const char *eio__on_packet(eio_session_t *s, char type, const char *data, size_t len, bool binary);
/* The same for a packet from the codec (eio_payload.h), base64 data decoded first. */
const char *eio__on_decoded(eio_session_t *s, const eio_packet_t *pk);
void eio__upgrade_cancel(eio_session_t *s);

int eio__ws_push_packet(eio_session_t *s, eddy_fd_t fd, char type, const void *data, size_t len,
                        bool binary, int flags);
void eio__ws_close(eio_session_t *s, eddy_fd_t fd);
int eio__queue_packet(eio_session_t *s, int kind, char type, const void *data, size_t len);
/* The same into any queue: a record is the kind byte, the length (4 bytes, little-endian),
 * then the bytes (text: the type byte first). */
int eio__queue_rec(eio_buf_t *q, int kind, char type, const void *data, size_t len);
size_t eio__open_packet(const eio_session_t *s, bool upgrades, char *out, size_t cap);

bool eio__path_matches(const eio_server_t *es, eddy_request_t *req);
int eio__protocol_of(eddy_request_t *req);

/* eio_polling.c (all with s->lock held) */
/* Something was queued: flush it to the pending GET, if any, on the GET's loop. */
void eio__polling_kick(eio_session_t *s);
/* Whether a GET waits (the transport can take a packet now). */
bool eio__polling_writable(const eio_session_t *s);
/* The probe succeeded: release the pending GET with a noop. */
void eio__polling_noop(eio_session_t *s);
/* The upgrade completed: a pending GET is answered with a noop and forgotten. */
void eio__polling_discard(eio_session_t *s);
/* eio_close() on long-polling: the close packet goes with the next GET. */
void eio__polling_close(eio_session_t *s);
/* The session ends for reason: a pending GET gets the close packet (a noop when the
 * client closed). */
void eio__polling_finish(eio_session_t *s, const char *reason);
/* Connection fd (on this loop) closed: the reason the session ends for, or NULL. */
const char *eio__polling_conn_closed(eio_session_t *s, eddy_fd_t fd);

#endif /* EIO_INTERNAL_H */

/* SPDX-License-Identifier: MIT */
/*
 * Connections (conn.c): the transport under every protocol (socket or TLS, input,
 * output queue and cork, timer, back-pressure, teardown) and the protocol table it drives.
 */
#ifndef EDDY_CONN_H
#define EDDY_CONN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "deflate.h"
#include "loop.h"
#include "server.h"

typedef struct eddy__conn_aside eddy__conn_aside_t;
typedef struct eddy__sub eddy__sub_t;
struct ssl_st;

/* Output queue: a chain of segments written with writev. */

/* A frame shared by every recipient of a published message: built once, referenced by
 * each recipient's output queue, freed when the last reference goes (from any thread). */
typedef struct eddy__blob {
    atomic_int refs;
    size_t len;
    char data[];
} eddy__blob_t;

eddy__blob_t *eddy__blob_new(size_t len);
void eddy__blob_ref(eddy__blob_t *blob);
void eddy__blob_unref(eddy__blob_t *blob);

/* A piece of output: bytes of its own in data[], or references to shared frames (an
 * array of eddy__blob_t pointers in data[]; conn.c). */
struct eddy__seg {
    eddy__seg_t *next;
    size_t len;        /* bytes filled, or frames referenced */
    size_t cap;        /* bytes available, or reference slots */
    size_t sent;       /* bytes written (of the first frame not written whole, for references) */
    uint32_t done;     /* references: frames written whole and released */
    bool refs;         /* a segment of references */
    int8_t size_class; /* bytes: its size class (conn.c), -1 for an odd size */
    _Alignas(8) char data[];
};

/* Bytes a loop's cork holds: a read's worth of echoes and responses (conn.c). */
#define EDDY__CORK_SIZE (16 * 1024)

/* Output segments, a circular list held by its tail (conn.c); their byte count is the
 * connection's out_bytes. */
typedef struct eddy__outq {
    eddy__seg_t *tail;
} eddy__outq_t;

/*
 * A protocol spoken over a connection. The connection (conn.c) owns the socket, TLS, the
 * output queue and cork, the timer, back-pressure and the lifecycle, and knows nothing of
 * what the bytes mean: it drives the protocol through these operations, each called on the
 * connection's loop. The protocol keeps its per-connection state in conn->proto_state. The
 * HTTP/1.1 server session (http.c) and the WebSocket session (ws.c) implement it.
 */
typedef struct eddy__proto {
    const char *name; /* for logs: "HTTP", "WebSocket" */
    /* The connection was accepted with this protocol: set up its state (before other
     * threads can see the connection). Returns 0 or an error. NULL for a protocol reached
     * only by a switch, which eddy__conn_new() does not take. */
    int (*start)(eddy__conn_t *conn);
    /* Consumes input buf[0..len), which may be the loop's receive buffer or the
     * connection's own and may be changed in place. Returns the bytes consumed: fewer than
     * len when it needs more input, or when it switched the connection to another protocol
     * (eddy__conn_switch()), which gets the rest. */
    size_t (*process)(eddy__conn_t *conn, char *buf, size_t len);
    /* The connection's timer (eddy__conn_set_timeout()) fired. */
    void (*timeout)(eddy__conn_t *conn);
    /* Output fell to the low watermark after going over the high one. */
    void (*drained)(eddy__conn_t *conn);
    /* Ends the connection the protocol's polite way (slow consumer, heartbeat, server
     * shutdown), with a close code and reason for protocols that send them, waiting for
     * the peer's answer if wait_for_peer. */
    void (*end)(eddy__conn_t *conn, uint16_t code, const char *reason, size_t reason_len,
                bool wait_for_peer);
    /* eddy__conn_close() ran: no more input; let go of what points at the connection.
     * NULL: nothing to do. */
    void (*closing)(eddy__conn_t *conn);
    /* The connection is reaped: the application hears of it (close callback). */
    void (*closed)(eddy__conn_t *conn);
    /* Frees conn->proto_state (the connection is released, or its creation failed). */
    void (*free)(eddy__conn_t *conn);
} eddy__proto_t;

/* Input a parser could not finish yet (conn.c). */
typedef struct eddy__inbuf {
    size_t len;
    size_t cap; /* bytes of data[], one of them kept spare for a NUL */
    char data[];
} eddy__inbuf_t;

/*
 * A connection. Every idle WebSocket connection costs this struct and its slots in two id
 * maps, so it is kept small: flags are bits, and state needed only at times (input being
 * parsed, a message being assembled, zlib streams, TLS, subscriptions) hangs off pointers
 * that are NULL at rest.
 */
struct eddy__conn {
    eddy_fd_t id;
    eddy__io_t io;
    eddy__loop_t *loop;
    eddy__conn_t *flush_next;
    eddy__conn_t *reap_next;
    /* NULL on plain connections; else OpenSSL's SSL, or once a TLS 1.3 handshake handed
     * the records over (tls_records), tls.c's record layer state. */
    void *tls;

    /* What is needed only at times (conn.c): the protocol's timeout (header, keep-alive,
     * closing handshake) or the linger one, and the whole messages waiting behind a
     * fragmented one being sent (hold_output). Allocated when first needed, freed when
     * neither is in use: a WebSocket connection at rest has none. */
    eddy__conn_aside_t *aside;

    eddy__inbuf_t *in; /* input a parser could not finish yet; usually NULL */
    eddy__outq_t out;

    const eddy__proto_t *proto; /* the protocol spoken: HTTP, then perhaps WebSocket */
    void *proto_state;          /* its state (may be NULL at rest: see ws.c) */
    eddy__sub_t *subs;          /* its topic subscriptions, linked through the subscriptions */

    uint8_t tls_wants; /* EDDY__IO_*: what OpenSSL waits for to make progress */
    bool ending : 1;   /* eddy__conn_close() ran: input is discarded, output drains */
    bool in_flush_list : 1;
    bool released : 1;      /* removed from the session table: it is no longer "live" */
    bool read_eof : 1;      /* the peer shut down its side */
    bool aborted : 1;       /* output was dropped: close without draining */
    bool above_high : 1;    /* output went over the high watermark: drain is due */
    bool dropping : 1;      /* slow consumer under the drop policy (logged once per episode) */
    bool over_soft : 1;     /* output went over socket_buffer_soft_limit at over_soft_tick */
    bool shutdown_sent : 1; /* our side is shut down (lingering close) */
    bool paused : 1;        /* input not processed (detached HTTP response pending) */
    bool tls_handshaking : 1;
    bool tls_records : 1; /* tls is tls.c's record layer state, OpenSSL's SSL is gone */
    bool hold_output : 1; /* a fragmented message is being sent: whole messages wait aside */
    /* The WebSocket session at rest (ws.c; conn.c never reads these): kept here, a few
     * bits and bytes, so that an idle session needs no state of its own. */
    bool ever_established : 1; /* completed a WebSocket handshake at some point */
    bool pmd_on : 1;           /* permessage-deflate was negotiated: see pmd */
    bool ws_close_sent : 1;    /* our close frame is queued: no more data frames */
    bool ws_client : 1;        /* the session's role is client */
    bool client_owned : 1;     /* an eddy_client_t's connection: events go to client.c */
    bool ping_pending : 1;     /* a keep-alive ping sent at ping_sent_ms waits for input */
    eddy__pmd_t pmd;
    /* When output went over the soft limit, in ticks of 2^EDDY__SOFT_TICK_SHIFT ms of the
     * loop clock, wrapping: 16 bits fit in padding (the struct stays 168 bytes) and span
     * 8,388 s, more than socket_buffer_soft_seconds may be (3,600). */
    uint16_t over_soft_tick;

    /* What other threads may read, under the registry shard lock (registry.c): fields set
     * before the connection is registered, and atomics its loop updates. The memory is
     * freed only after the connection left the registry. */
    atomic_bool closing;       /* exist() is false; its loop closes it when told */
    _Atomic uint8_t ws_status; /* enum eddy_ws_status */
    uint16_t local_port;
    eddy__peer_t peer;
    uint32_t connect_s; /* Unix time */
    /* The loop clock's low 32 bits (4 bytes, not 8, in every connection) at the last input
     * and at the pending ping: differences stay right for 49.7 days, more than any span
     * they are compared with (heartbeat_idle_time is at most 7 days, a ping timeout 1 day
     * on the server, 7 on the client). Read them through eddy__conn_quiet_ms(). */
    _Atomic uint32_t last_recv_ms;
    uint32_t ping_sent_ms;
    _Atomic size_t out_bytes; /* output queued, not yet written */
    _Atomic(void *) user_data;
};

/* Milliseconds without input before now_ms (the loop clock; any thread, relaxed). */
static inline uint32_t eddy__conn_quiet_ms(const eddy__conn_t *conn, uint64_t now_ms)
{
    return (uint32_t)now_ms - atomic_load_explicit(&conn->last_recv_ms, memory_order_relaxed);
}

/* The queued byte count: only the owner writes it, other threads read it (relaxed, so
 * these are plain moves). */
static inline size_t eddy__conn_out_bytes(const eddy__conn_t *conn)
{
    return atomic_load_explicit(&conn->out_bytes, memory_order_relaxed);
}

static inline void eddy__conn_set_out_bytes(eddy__conn_t *conn, size_t bytes)
{
    atomic_store_explicit(&conn->out_bytes, bytes, memory_order_relaxed);
}

/* This loop's live connection with this id, or NULL (also when another loop owns it). */
static inline eddy__conn_t *eddy__conn_lookup(eddy__loop_t *loop, eddy_fd_t id)
{
    if (loop == NULL || id == 0)
        return NULL;
    /* Most calls name the connection whose callback is running. */
    eddy__conn_t *conn = loop->dispatching;
    if (conn == NULL || conn->id != id)
        conn = eddy__connmap_get(&loop->conns, id);
    /* Closing (or released), or closed by another thread with the close not yet carried
     * out here. */
    if (conn == NULL || conn->ending || atomic_load_explicit(&conn->closing, memory_order_relaxed))
        return NULL;
    return conn;
}

/* Any connection of this loop with this id, closing or released ones included (NULL: none
 * here). */
static inline eddy__conn_t *eddy__conn_get(const eddy__loop_t *loop, eddy_fd_t id)
{
    return eddy__connmap_get(&loop->conns, id);
}

/*
 * For each connection of this loop, from accept to its final close (closing and released
 * ones included: callers skip what they must):
 *     size_t it = 0;
 *     for (eddy__conn_t *conn; (conn = eddy__conn_next(loop, &it)) != NULL;)
 * The walk may close connections (they leave the list only at their final close), but must
 * not accept new ones or run the final close.
 */
static inline eddy__conn_t *eddy__conn_next(const eddy__loop_t *loop, size_t *it)
{
    const eddy__connmap_t *map = &loop->conns;
    while (map->slots != NULL && *it <= map->mask) {
        eddy__conn_t *conn = map->slots[(*it)++];
        if (conn != NULL)
            return conn;
    }
    return NULL;
}

/* How many connections the loop holds (eddy__conn_next() walks them). */
static inline size_t eddy__conn_count(const eddy__loop_t *loop)
{
    return loop->conns.len;
}

/* Creates a connection for a socket accepted on listener, speaking proto, and registers it,
 * with session id id (0: the next one). Returns NULL (and closes nothing) on out-of-memory. */
eddy__conn_t *eddy__conn_new(eddy__loop_t *loop, int fd, const struct sockaddr *peer,
                             const eddy__listener_t *listener, eddy_fd_t id,
                             const eddy__proto_t *proto);
/* Switches the connection to another protocol (an upgrade), with no state yet. Called from
 * inside the old protocol's process(), which frees its own state before it returns and
 * returns the bytes it consumed (the new protocol gets the rest), or from its start(). */
void eddy__conn_switch(eddy__conn_t *conn, const eddy__proto_t *proto);
/* Sets websocket_status. */
void eddy__conn_set_status(eddy__conn_t *conn, int status);

/*
 * Back-pressure: asks room for bytes more output of a data message. Returns 0 (go ahead),
 * EDDY_QUEUED (go ahead; the connection is at or over the high watermark once they are
 * queued) or EDDY_EDROPPED (do not queue: the connection is over socket_buffer_size and
 * slow_consumer_policy dropped the message, or is closing the connection, logged).
 * Control frames and HTTP responses do not ask. (Inline, at the end of this file.)
 */
static inline int eddy__conn_admit(eddy__conn_t *conn, size_t bytes);
/* eddy__conn_admit() for a connection near or over a limit. */
int eddy__conn_admit_near_limits(eddy__conn_t *conn, size_t bytes);
/* eddy_send(): raw bytes, admitted like a message. */
int eddy__conn_send_raw(eddy__conn_t *conn, const void *data, size_t len);

/* Queues bytes (copied). Returns 0 or EDDY_ENOMEM. The data goes out when the loop flushes
 * at the end of the current phase of its iteration. */
int eddy__conn_write(eddy__conn_t *conn, const void *data, size_t len);
/* Queues a shared frame (a reference, no copy), a whole message: behind the fragmented
 * message being sent if there is one (hold_output). Returns 0 or EDDY_ENOMEM. */
int eddy__conn_write_blob(eddy__conn_t *conn, eddy__blob_t *blob);
/* Queues two pieces as one (a frame header and its payload) aside, behind the fragmented
 * message being sent (RFC 6455 5.4: nothing but control frames may come between its
 * frames). Returns 0 or EDDY_ENOMEM. */
int eddy__conn_hold2(eddy__conn_t *conn, const void *a, size_t a_len, const void *b, size_t b_len);
/* The fragmented message's last frame is queued: what waited aside follows it, in order,
 * and hold_output ends. */
void eddy__conn_release_held(eddy__conn_t *conn);
/* Queues two pieces as one (a frame header and its payload). */
int eddy__conn_write2(eddy__conn_t *conn, const void *a, size_t a_len, const void *b, size_t b_len);
/* Room at the end of the output queue, and bytes written there: behind the inline
 * functions below, which use the cork when they can. */
void *eddy__conn_reserve_queued(eddy__conn_t *conn, size_t n);
void eddy__conn_commit_queued(eddy__conn_t *conn, size_t n);

/* Room for n bytes at the end of the output (the loop's cork, the queue's last segment or
 * a new one), to be written in place and then queued with eddy__conn_commit(conn, m),
 * m <= n, before anything else is queued. NULL when n is over EDDY__SEG_MAX_SIZE or
 * memory is short: then queue with eddy__conn_write2(), which handles both. Inline for
 * the usual case, a reply to the connection being read. */
static inline void *eddy__conn_reserve(eddy__conn_t *conn, size_t n)
{
    eddy__loop_t *loop = conn->loop;
    if (conn == loop->reading && conn->out.tail == NULL && conn->tls == NULL &&
        EDDY__CORK_SIZE - loop->cork_len >= n)
        return loop->cork + loop->cork_len;
    return eddy__conn_reserve_queued(conn, n);
}

static inline void eddy__conn_commit(eddy__conn_t *conn, size_t n)
{
    if (conn->out.tail != NULL) {
        eddy__conn_commit_queued(conn, n);
        return;
    }
    conn->loop->cork_len += n; /* the room was in the cork */
    eddy__conn_set_out_bytes(conn, eddy__conn_out_bytes(conn) + n);
}
/* Writes everything the loop queued this iteration. */
void eddy__loop_flush(eddy__loop_t *loop);

/* How a connection ends. */
enum eddy__close_how {
    EDDY__CLOSE_GRACEFUL, /* send what is queued, shut down, wait for the peer's EOF */
    EDDY__CLOSE_ABORT,    /* drop queued output and close now (I/O error) */
};

/* Ends a live connection: processing of its input stops, its close (or disconnect)
 * callback runs at the end of the loop iteration, and the socket is closed when the
 * queued output is sent (GRACEFUL) or at once (ABORT). Safe inside the connection's own
 * callbacks and to call twice. */
void eddy__conn_close(eddy__conn_t *conn, int how);

/* Runs close callbacks of connections closed this iteration and releases them. */
void eddy__loop_reap(eddy__loop_t *loop);
/* Closes released sockets at once: those only waiting for the peer's EOF, or with all,
 * also those whose output has not drained (server shutdown). */
void eddy__loop_close_zombies(eddy__loop_t *loop, bool all);

/* Stops or resumes processing input (a detached HTTP response is pending). */
void eddy__conn_pause(eddy__conn_t *conn, bool paused);

/* (Re)arms the connection's timer, or stops it with ms == 0. The first call (made by
 * the protocol's start() for every connection) makes the timer and may fail with EDDY_ENOMEM
 * (logged); every later call succeeds, so a connection never loses its timeout. */
int eddy__conn_set_timeout(eddy__conn_t *conn, uint64_t ms);
/* Stops the connection's timer and gives it up. */
void eddy__conn_drop_timer(eddy__conn_t *conn);
/* Whether the connection's timer is armed. */
bool eddy__conn_timeout_armed(const eddy__conn_t *conn);

/* Whether conn is not keeping up right now, for EDDY_WS_FLAG_VOLATILE: the last write left
 * bytes unsent (the socket is watched for writability; the kernel's buffer is full or the
 * write budget ran out), or its output is at or over the high watermark. Output queued
 * this iteration and not yet written does not count: volatile messages published back to
 * back all reach a connection that reads. */
static inline bool eddy__conn_backed_up(const eddy__conn_t *conn)
{
    return (conn->io.events & EDDY__IO_WRITE) ||
           eddy__conn_out_bytes(conn) >= eddy__high_watermark(&conn->loop->srv->opts);
}

static inline int eddy__conn_admit(eddy__conn_t *conn, size_t bytes)
{
    const eddy__options_t *opts = &conn->loop->srv->opts;
    size_t after = eddy__conn_out_bytes(conn) + bytes;
    /* The usual case, inline: under every limit, and neither dropping nor timing a stay
     * over the soft limit. */
    if (after < opts->high_watermark && after <= opts->admit_limit && !conn->dropping &&
        !conn->over_soft)
        return 0;
    return eddy__conn_admit_near_limits(conn, bytes);
}

#endif /* EDDY_CONN_H */

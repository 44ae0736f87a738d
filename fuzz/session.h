/* SPDX-License-Identifier: MIT */
/*
 * Shared by the session drivers (fuzz_ws_session, fuzz_http_session), which link the whole
 * library: one server made on first use (never started: this thread plays its first
 * loop's), and a connection per input whose socket is one end of a socketpair. Input is
 * written to the other end in pieces and read by the connection's own read path (conn.c),
 * so partial requests and frames are kept in the connection's input buffer across reads as
 * they are over TCP. What the session sends is read and thrown away after each piece, so
 * it never blocks (a driver may look at it first: fuzz_session_t.output).
 */
#ifndef EDDY_FUZZ_SESSION_H
#define EDDY_FUZZ_SESSION_H

#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "fuzz.h"
#include "loop.h"
#include "server.h"

typedef struct fuzz_session fuzz_session_t;

struct fuzz_session {
    eddy_server_t *srv;
    eddy__loop_t *loop;
    eddy__conn_t *conn;
    int peer; /* the other end of the socketpair */
    /* Ends what the driver left pending (a detached response): called when the connection
     * paused its input for it, and before the connection ends. NULL: nothing to end. */
    void (*settle)(fuzz_session_t *s);
    /* Sees what the session sent, in the order sent (NULL: it is discarded unseen). */
    void (*output)(fuzz_session_t *s, const uint8_t *data, size_t len);
    bool ended; /* fuzz_session_end() ran: conn may be freed */
};

/* The server, made once with setup() applied (callbacks, options); logging is off. */
static inline eddy_server_t *fuzz_server(void (*setup)(eddy_server_t *srv))
{
    static eddy_server_t *srv;
    if (srv == NULL) {
        srv = eddy_server_new("127.0.0.1", 0);
        FUZZ_CHECK(srv != NULL);
        FUZZ_CHECK(eddy_server_set(srv, "log_level", "none") == 0);
        setup(srv);
        eddy__options_resolve(&srv->opts);
    }
    return srv;
}

/* A connection accepted with proto. */
static inline void fuzz_session_new(fuzz_session_t *s, eddy_server_t *srv,
                                    const eddy__proto_t *proto)
{
    memset(s, 0, sizeof(*s));
    s->srv = srv;
    s->loop = srv->loops[0];
    eddy__current_loop = s->loop;
    int sv[2];
    FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
    struct sockaddr_in addr = {
        .sin_family = AF_INET, .sin_port = htons(40000), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    eddy__listener_t listener = {.srv = srv, .port = 9, .bound_port = 9};
    s->conn = eddy__conn_new(s->loop, sv[0], (struct sockaddr *)&addr, &listener, 0, proto);
    FUZZ_CHECK(s->conn != NULL);
    s->peer = sv[1];
}

/* Runs the loop's deferred calls (a connection resuming after a detached response), then
 * reads and discards what the session sent, flushing its queued output in between. */
static inline void fuzz_session_drain(fuzz_session_t *s)
{
    eddy__loop_run_pending(s->loop);
    char sink[16384];
    for (int i = 0; i < 64; i++) {
        eddy__loop_flush(s->loop);
        ssize_t n = read(s->peer, sink, sizeof(sink));
        if (n <= 0)
            break;
        if (s->output != NULL)
            s->output(s, (const uint8_t *)sink, (size_t)n);
    }
}

/* Writes input[0..len) to the connection and lets it read. */
static inline void fuzz_session_feed(fuzz_session_t *s, const uint8_t *input, size_t len)
{
    size_t off = 0;
    /* Bounded: a connection that stops reading (paused, or over its output limit) leaves
     * the rest in the socket. */
    for (int tries = 0; off < len && !s->conn->ending && tries < 64; tries++) {
        if (s->conn->paused && s->settle != NULL)
            s->settle(s);
        ssize_t n = write(s->peer, input + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        FUZZ_CHECK(n > 0 || (n < 0 && errno == EAGAIN));
        if (n > 0)
            off += (size_t)n;
        s->conn->io.cb(s->loop, &s->conn->io, EDDY__IO_READ);
        fuzz_session_drain(s);
    }
    if (!s->conn->ending && s->conn->paused && s->settle != NULL) {
        s->settle(s);
        fuzz_session_drain(s);
    }
}

/* Feeds input in pieces of 1..max_piece bytes (max_piece 0: whole), the sizes drawn from
 * a PRNG seeded by the input. */
static inline void fuzz_session_feed_split(fuzz_session_t *s, const uint8_t *input, size_t len,
                                           size_t max_piece)
{
    uint64_t rng = fuzz_seed_of(input, len);
    size_t off = 0;
    while (off < len && !s->conn->ending) {
        size_t n = len - off;
        size_t piece = 1 + (size_t)(fuzz_rng_next(&rng) % (max_piece > 0 ? max_piece : 1));
        if (max_piece > 0 && piece < n)
            n = piece;
        fuzz_session_feed(s, input + off, n);
        off += n;
    }
}

/* Ends the input (the peer's EOF), then the connection as a stopping server does, without
 * freeing it yet: a driver with several connections on the loop ends them all before the
 * first fuzz_session_free() reaps the loop (which frees every ended connection). */
static inline void fuzz_session_end(fuzz_session_t *s)
{
    if (s->ended)
        return;
    s->ended = true;
    if (s->settle != NULL) {
        s->settle(s);
        fuzz_session_drain(s);
    }
    if (!s->conn->ending && !s->conn->paused) {
        shutdown(s->peer, SHUT_WR);
        s->conn->io.cb(s->loop, &s->conn->io, EDDY__IO_READ);
        fuzz_session_drain(s);
    }
    if (!s->conn->ending)
        eddy__conn_close(s->conn, EDDY__CLOSE_ABORT);
}

/* Ends the session (fuzz_session_end()) and frees what the loop holds of it. */
static inline void fuzz_session_free(fuzz_session_t *s)
{
    fuzz_session_end(s);
    eddy__loop_reap(s->loop);
    eddy__loop_close_zombies(s->loop, true);
    eddy__loop_reap(s->loop);
    /* A request dispatched by the last resume may have been detached since: its response
     * is orphaned now, and still ended as an application must. */
    if (s->settle != NULL)
        s->settle(s);
    close(s->peer);
    eddy__current_loop = NULL;
}

#endif

/* SPDX-License-Identifier: MIT */
/*
 * Engine.IO server sessions (protocol v4, and v3 for socket.io-client 2.x) over eddy's
 * public API: the open packet, heartbeats, the WebSocket transport, HTTP long-polling and
 * the upgrade from polling to WebSocket, with the reference server's (engine.io 6.6)
 * answers to bad requests. The layer above (Socket.IO) sees sessions and message packets.
 *
 * Wiring: the application (or eddy_rt's default install) calls the eio_handle_*() functions
 * from its own eddy_on_request / eddy_on_upgrade / eddy_on_open / eddy_on_message /
 * eddy_on_close (and eddy_on_disconnect) callbacks; each returns true when the request or
 * connection belonged to Engine.IO and was handled, false to let the application handle
 * it. Requests belong to Engine.IO when their path starts with config.path.
 *
 * Threads. A session's handler calls never run concurrently: they are serialised by the
 * session (a mutex taken around each call). They run on a loop thread: for a session on
 * long-polling, on whichever loop received the request or fired the timer that caused
 * them (successive requests of one session may arrive on different connections, hence
 * loops); once on WebSocket (directly, or after the upgrade), on that connection's loop.
 * A handler may call eio_send() and eio_close() on any session, its own included;
 * eio_close() never calls the close handler from inside the call. The eio_session_*()
 * getters and eio_send()/eio_close() may be called from any thread while the session is
 * alive, i.e. until its close handler returned.
 */
#ifndef EIO_H
#define EIO_H

#include <stdbool.h>
#include <stddef.h>

#include "eddy.h"

typedef struct eio_server eio_server_t;
typedef struct eio_session eio_session_t;

/* Settings, Engine.IO's option names in brackets. */
typedef struct eio_config {
    const char *path;            /* ["/socket.io/"] (copied); requests whose path starts with it */
    unsigned ping_interval_ms;   /* [pingInterval 25000] */
    unsigned ping_timeout_ms;    /* [pingTimeout 20000] */
    unsigned upgrade_timeout_ms; /* [upgradeTimeout 10000] */
    size_t max_payload;          /* [maxHttpBufferSize 1000000]: largest POST body and
                                  * WebSocket message */
    bool allow_polling;          /* [true]; false: transports ["websocket"] */
} eio_config_t;

/* Fills *cfg with the defaults above. */
void eio_config_init(eio_config_t *cfg);

typedef struct eio_handlers {
    /* A session opened; req is the handshake request (borrowed for the call: query,
     * headers, remote address). Return 0 to accept, or an HTTP status (400-499) to refuse:
     * then no other handler runs for s. eio_send() may be called from here; what it sends
     * follows the open packet. */
    int (*open)(eio_session_t *s, eddy_request_t *req, void *ud);
    /* One message packet: text without its '4' type byte, or binary (v3: without its 0x04
     * type byte). data is borrowed for the call. */
    void (*message)(eio_session_t *s, const void *data, size_t len, bool binary, void *ud);
    /* The transport changed from polling to WebSocket: eio_session_ws_fd(s) is now set.
     * May be NULL. */
    void (*upgrade)(eio_session_t *s, void *ud);
    /* The session ended. reason is one of Engine.IO's: "transport close", "transport
     * error", "ping timeout", "parse error", "forced close", "server shutting down" (static
     * string). s is freed after the call returns. */
    void (*close)(eio_session_t *s, const char *reason, void *ud);
} eio_handlers_t;

/*
 * Creates the Engine.IO layer of srv (cfg NULL: the defaults; cfg and h are copied, the
 * path too; ud is passed to every handler). open and close are required. Returns NULL on
 * out-of-memory or a missing handler.
 */
eio_server_t *eio_server_new(eddy_server_t *srv, const eio_config_t *cfg, const eio_handlers_t *h,
                             void *ud);

/*
 * Frees the layer: every session still open gets its close handler ("server shutting
 * down") and is freed. Call it once the server no longer runs (eddy_server_start()
 * returned), before or after eddy_server_free(): work the layer handed to the stopped loops,
 * which eddy_server_free() runs, keeps what it needs until then (it calls no handler). es
 * must not be used afterwards.
 */
void eio_server_free(eio_server_t *es);

/* Engine.IO's error codes: 0 "Transport unknown", 1 "Session ID unknown", 2 "Bad handshake
 * method", 3 "Bad request", 4 "Forbidden", 5 "Unsupported protocol version". */
#define EIO_ERROR_CODES 6
/* Requests (polling or WebSocket upgrades) refused with each code so far. Any thread. */
void eio_server_errors(eio_server_t *es, uint64_t out[EIO_ERROR_CODES]);

/* Dispatch from the engine's callbacks; see the top of this file. eio_handle_request()
 * answers (or keeps, for a long-polling GET) resp; eio_handle_upgrade() returns true with
 * *status 0 to accept the upgrade, or with the status it refused it with (the answer is
 * recorded with eddy_upgrade_refuse(): return *status from the upgrade callback). */
bool eio_handle_request(eio_server_t *es, eddy_request_t *req, eddy_response_t *resp);
bool eio_handle_upgrade(eio_server_t *es, eddy_request_t *req, int *status);
bool eio_handle_open(eio_server_t *es, eddy_request_t *req);
bool eio_handle_message(eio_server_t *es, const eddy_frame_t *frame);
bool eio_handle_close(eio_server_t *es, eddy_fd_t fd);

/* eio_send() flags. */
enum eio_send_flag {
    EIO_SEND_PREFIXED = 1 << 0, /* text parts already start with the '4' type byte */
    EIO_SEND_VOLATILE = 1 << 1, /* drop rather than queue when the transport cannot take it
                                 * now: long-polling with no GET waiting (on WebSocket the
                                 * message is pushed as any other for now) */
};

/* One part of a message packet. */
typedef struct eio_part {
    const void *data;
    size_t len;
    bool binary;
} eio_part_t;

/*
 * Sends one message made of parts (Socket.IO: the packet's text, then its binary
 * attachments) as one unit that no other eio_send() to s interleaves. Text parts are given
 * without the '4' type byte unless flags has EIO_SEND_PREFIXED; binary parts as they are
 * (v3 adds its 0x04 byte). Data is copied. Any thread. Returns 0; EDDY_QUEUED when the
 * WebSocket is over its high watermark (eddy_push()); EDDY_EDROPPED (volatile and not
 * writable, or a slow consumer); EDDY_ECLOSED when the session is closing or closed;
 * EDDY_EINVAL; EDDY_ENOMEM.
 */
int eio_send(eio_session_t *s, const eio_part_t *parts, size_t nparts, int flags);

/* Closes the session from the server side (Engine.IO's socket.close()): what was sent
 * before goes first, then the transport closes and the close handler runs later with
 * "forced close". Any thread; a session already closing is left alone. */
void eio_close(eio_session_t *s);

/* The session id (20 URL-safe characters, NUL-terminated; lives as long as s). */
const char *eio_session_id(const eio_session_t *s);
/* The Engine.IO protocol revision of the session: 3 or 4. */
int eio_session_protocol(const eio_session_t *s);
/* The session's WebSocket connection, or 0 while it is on long-polling (or closed). For a
 * session opened on a WebSocket it is set from the open handler on, but that connection is
 * established only at eddy's open event (eio_handle_open()): until then pushes and
 * subscriptions to it fail, while eio_send() queues behind the open packet. */
eddy_fd_t eio_session_ws_fd(const eio_session_t *s);
/* Data of the layer above (borrowed, never freed by eio). */
void eio_session_set_data(eio_session_t *s, void *data);
void *eio_session_data(const eio_session_t *s);

#endif /* EIO_H */

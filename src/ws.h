/* SPDX-License-Identifier: MIT */
/*
 * The WebSocket session (ws.c).
 */
#ifndef EDDY_WS_H
#define EDDY_WS_H

#include "conn.h"
#include "deflate.h"
#include "deflater.h"
#include "http.h"

/* The WebSocket session, and the upgrade hook that switches HTTP connections to it (the
 * handshake callback's response: 101 upgrades, anything else refuses and closes). */
extern const eddy__proto_t eddy__ws_proto;
extern const eddy__http_upgrade_t eddy__ws_upgrade;

/* A session's role (RFC 6455 5.1, 5.3, 7.1.1), as in wslay's server and client contexts.
 * A server expects masked frames and sends unmasked ones; it closes the TCP connection
 * first once the closing handshake is done. A client expects unmasked frames and masks
 * what it sends with a fresh key per frame from the kernel CSPRNG (getrandom, a batch per
 * loop); it waits
 * (websocket_close_timeout) for the server to close the TCP connection. A frame masked the
 * wrong way for the role fails the connection with 1002. The permessage-deflate
 * parameters (eddy__pmd_t, named from the server's side) apply mirrored for a client. */
enum eddy__ws_role { EDDY__WS_SERVER, EDDY__WS_CLIENT };

/* Switches conn to the WebSocket session in role after the opening handshake (its answer
 * already queued, or received); pmd is the agreed compression or NULL. Called from the
 * previous protocol's process() or start() (eddy__conn_switch()). Returns 0 or
 * EDDY_ENOMEM. */
int eddy__ws_start(eddy__conn_t *conn, enum eddy__ws_role role, const eddy__pmd_t *pmd);

/* Negotiates permessage-deflate for an upgrade request, if enabled. Returns true and fills
 * *pmd and header (a complete "Sec-WebSocket-Extensions: ...\r\n" line) when agreed. */
bool eddy__ws_negotiate(eddy__conn_t *conn, const eddy_request_t *req, eddy__pmd_t *pmd,
                        char *header, size_t header_cap);
/* The loop's compressor for window bits, shared by messages compressed whole with no
 * context takeover (reset after each), made on first use; NULL: out of memory. Callers
 * fit bits to the message (eddy__deflate_fit_bits()); the stream's memLevel follows them
 * (bits - 6 at most, so that one block holds a message of that window's size). */
eddy__deflater_t *eddy__ws_shared_deflater(eddy__loop_t *loop, int bits);
/* The loop's buffer for compressed output (framed and copied right away); NULL: out of
 * memory. */
eddy__buf_t *eddy__ws_deflate_out(eddy__loop_t *loop);
/* True while conn speaks WebSocket and is not closing. */
static inline bool eddy__ws_open(const eddy__conn_t *conn)
{
    return conn->proto == &eddy__ws_proto && !conn->ending;
}
/* Sends a close frame and enters the closing handshake (or, with code 0, closes after
 * sending a close frame without waiting: used when failing the connection). */
void eddy__ws_send_close(eddy__conn_t *conn, uint16_t code, const char *reason, size_t reason_len,
                         bool wait_for_peer);
/* True once a close frame went out (nothing may follow it). */
bool eddy__ws_close_sent(const eddy__conn_t *conn);
/* The window bits of the compressor a shared (published) frame may use for conn: > 0 when
 * it negotiated permessage-deflate without context takeover for what it sends, else 0. */
int eddy__ws_shared_deflate_bits(const eddy__conn_t *conn);
/* Frames and queues a message. Returns what eddy_push() documents. */
int eddy__ws_push(eddy__conn_t *conn, const void *data, size_t len, int opcode, int flags);
/* Frames and queues parts as one unit (eddy_push_parts()). Returns what it documents. */
int eddy__ws_push_parts(eddy__conn_t *conn, const eddy_part_t *parts, size_t nparts, int flags);
/* The checks of eddy_push_parts()'s and eddy_publish_parts()'s parts: 0, EDDY_EINVAL,
 * EDDY_ETOOBIG. */
int eddy__ws_parts_check(const eddy_server_t *srv, const eddy_part_t *parts, size_t nparts);
/* The checks eddy__ws_push() makes of its arguments alone: 0, EDDY_EINVAL, EDDY_ETOOBIG. */
int eddy__ws_push_check(const eddy_server_t *srv, const void *data, size_t len, int opcode,
                        int flags);

#endif /* EDDY_WS_H */

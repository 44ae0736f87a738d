/* SPDX-License-Identifier: MIT */
/*
 * The WebSocket client (client.c): connecting, the opening handshake's response,
 * reconnection, heartbeat and the offline queue. The WebSocket session (ws.c) calls these
 * hooks for the connections of clients (conn->client_owned), whose role is client; a
 * connection in the client role without a client (a test harness) gets the server's
 * callbacks.
 */
#ifndef EDDY_CLIENT_H
#define EDDY_CLIENT_H

#include "conn.h"

/* A message (or a delivered control frame) arrived. */
void eddy__client_deliver(eddy__conn_t *conn, eddy_frame_t *frame);
/* A valid close frame arrived (before it is answered). */
void eddy__client_close_frame(eddy__conn_t *conn, uint16_t code, const char *reason,
                              size_t reason_len);
/* The session failed the connection with code (the server broke RFC 6455). */
void eddy__client_failed(eddy__conn_t *conn, uint16_t code, const char *why);
/* Output fell back to the low watermark (proto->drained()). */
void eddy__client_drained(eddy__conn_t *conn);
/* The connection is reaped (proto->closed()). */
void eddy__client_session_closed(eddy__conn_t *conn);

#endif /* EDDY_CLIENT_H */

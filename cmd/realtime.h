/* SPDX-License-Identifier: MIT */
/*
 * The daemon's real-time endpoint and server API. cmd/realtime.c attaches the Socket.IO
 * layer (include/eddy_rt.h) to the public listener ([socketio]): tokens checked at CONNECT,
 * the client events the daemon understands (join and leave within client_rooms, publish
 * within client_publish, presence within client_presence), the rooms the API lists.
 * cmd/api.c is the HTTP server API ([api]): POST
 * /api/METHOD with an API key, JSON in and out. cmd/publish.c is `eddy publish` and `eddy
 * api`, its command-line client. Public headers only, like every file of cmd/.
 */
#ifndef EDDY_CMD_REALTIME_H
#define EDDY_CMD_REALTIME_H

#include <stdbool.h>
#include <stddef.h>

#include "cmd.h"
#include "eddy_rt.h"

/* Longest API key, bytes; shortest: API_KEY_MIN (a key is a secret, not a password). */
#define API_KEY_MIN 16
#define API_KEY_MAX 256

/* True for the sections this module reads: [socketio], [api] and [broker]. */
bool realtime_section(const char *section);

/*
 * Validates one [socketio], [api] or [broker] key = value (cfg_load calls it for every line).
 * Returns 0, EDDY_EKEY (not a key of that section) or EDDY_EINVAL with the reason in why
 * (never quoting the API key).
 */
int realtime_check_key(const char *section, const char *key, const char *value, char *why,
                       size_t why_len);
/*
 * Checks what realtime_check_key() cannot see line by line: keys of cfg's [socketio]
 * section that are valid alone but not together (history_on_join without a history).
 * Returns 0, or EDDY_EINVAL (EDDY_ENOMEM) with the reason in why.
 */
int realtime_check(const cfg_t *cfg, char *why, size_t why_len);

/*
 * Creates the layer on srv from cfg's [socketio], [api] and [broker] sections, before the server
 * starts. Returns 0 (also when [socketio] enabled is false: nothing is attached) or -1
 * with the reason printed on standard error.
 */
int realtime_setup(eddy_server_t *srv, const cfg_t *cfg);
/*
 * A reload (SIGHUP) with next, a validated configuration: applies [socketio] client_rooms
 * (for the next join or leave) and [api] key and max_body (for the next request), logging
 * each change (never the key). The other [socketio] keys are the layer's, fixed when it
 * was made: serve.c names them as needing a restart. Signal thread.
 */
void realtime_reload(eddy_server_t *srv, const cfg_t *next);
/* Frees the layer, after eddy_server_start() returned and before eddy_server_free(). */
void realtime_free(void);

/*
 * Dispatch from the daemon's callbacks (public listener only): true when the request,
 * upgrade or connection was the layer's (the callback then does nothing more);
 * realtime_upgrade stores the upgrade callback's return value in *status.
 */
bool realtime_request(eddy_request_t *req, eddy_response_t *resp);
bool realtime_upgrade(eddy_request_t *req, int *status);
bool realtime_open(eddy_request_t *req);
bool realtime_message(const eddy_frame_t *frame);
bool realtime_close(eddy_fd_t fd);

/* The layer's broker ([broker] redis_url): false (and *out zeroed) without one. Any
 * thread. */
bool realtime_broker(eddy_rt_broker_status_t *out);
/* False while a configured broker is not ready (its round trip through Redis is not
 * recent): /readyz answers 503 then. Any thread. */
bool realtime_ready(void);

/* ---- for cmd/api.c ---- */

/* The layer (NULL when [socketio] is off) and a namespace the config declared (NULL for
 * any other name). */
eddy_rt_t *realtime_rt(void);
eddy_rt_nsp_t *realtime_nsp(const char *name);
/* The i-th configured namespace (from 0), NULL past the last. */
eddy_rt_nsp_t *realtime_nsp_at(size_t i);
/* The [api] key ("" when the API is off) and the largest request body it takes, as the
 * last reload left them; the key stays valid until realtime_free(). */
const char *realtime_api_key(void);
size_t realtime_api_max_body(void);

/* A copy of socket s's data (its token's info or data claim, compact JSON; malloc'd) or
 * NULL. Safe against a concurrent disconnect for a referenced socket. */
char *realtime_socket_data(eddy_rt_socket_t *s);
/* Replaces s's data with data (compact JSON text, ours then; freed with the socket):
 * 0, or -1 out of memory (data freed). realtime_socket_release() frees s's data and
 * rooms claim (at disconnect, or when a connect is refused after the connect hook). */
int realtime_socket_set_data(eddy_rt_socket_t *s, char *data);
void realtime_socket_release(eddy_rt_socket_t *s);

/* Calls visit with the name of each room of nsp that has members (as the presence
 * callback reported them; the sockets' own rooms excluded), under the rooms lock: copy
 * only. Returns the count. */
size_t realtime_rooms(const eddy_rt_nsp_t *nsp, void (*visit)(const char *room, void *arg),
                      void *arg);

/* The HTTP API (cmd/api.c): answers POST /api/METHOD on the listener it belongs to (the
 * admin listener if there is one, else the public one; admin says which this is). Returns
 * true when the request was the API's. */
bool api_request(eddy_request_t *req, eddy_response_t *resp, bool admin, bool has_admin);

/* `eddy publish` and `eddy api` (cmd/publish.c), with argv[0] the command's name. */
int publish_main(int argc, char **argv);

#endif /* EDDY_CMD_REALTIME_H */

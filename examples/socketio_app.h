/* SPDX-License-Identifier: MIT */
/*
 * The Socket.IO test application's handlers (examples/socketio.c; the same application as
 * tests/clients/sio_reference.js on Node's socket.io 4.8), shared with the fuzz drivers of
 * the real-time layer (fuzz/rt_app.h) so that they drive exactly this application:
 *
 *   namespaces / and /custom: on connection, emit "auth" with the handshake's auth object;
 *   on /, a connection whose auth is {"refuse": true} is refused with "refused";
 *   message (...args)           emit "message-back" with all the arguments, binary included
 *   message-with-ack (...args)  ack with all the arguments
 *   join (room), leave (room)   join or leave, ack "joined" / "left"
 *   to-room (room, ...args)     emit "room-message" with args to room, except the sender
 *   to-all (...args)            emit "all-message" with args to the whole namespace
 *   server-disconnect           disconnect the socket (the client does not reconnect)
 *   emit-with-ack               emit "need-ack" 42, wait 1 s for the ack; ack the client's
 *                               answer, or "timeout"
 *
 * socketio_app_setup() installs them on a namespace. A file that includes this one may
 * define first:
 *   SOCKETIO_APP_CHECK(ok)          given what must hold after each call (a result the
 *                                   application expects); default: not looked at;
 *   SOCKETIO_APP_ON_CONNECTION(s)   run for each socket on connection; default: nothing.
 */
#ifndef EDDY_SOCKETIO_APP_H
#define EDDY_SOCKETIO_APP_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "eddy_rt.h"

#ifndef SOCKETIO_APP_CHECK
#define SOCKETIO_APP_CHECK(ok) ((void)(ok))
#endif
#ifndef SOCKETIO_APP_ON_CONNECTION
#define SOCKETIO_APP_ON_CONNECTION(s) ((void)(s))
#endif

static void socketio_on_connection(eddy_rt_socket_t *s, void *user_data)
{
    (void)user_data;
    SOCKETIO_APP_ON_CONNECTION(s);
    size_t len;
    const char *auth = eddy_rt_socket_auth(s, &len);
    eddy_rt_msg_t msg = {.event = "auth", .args = auth, .args_len = len};
    eddy_rt_emit(s, &msg);
}

static int socketio_on_connect_root(eddy_rt_socket_t *s, void *user_data)
{
    (void)user_data;
    size_t len;
    const char *auth = eddy_rt_socket_auth(s, &len);
    if (eddy_rt_json_member(auth, len, "refuse", NULL, NULL) == EDDY_RT_JSON_TRUE)
        return eddy_rt_refuse(s, "refused", NULL);
    return 0;
}

static void socketio_on_message(eddy_rt_socket_t *s, const eddy_rt_event_t *ev, void *user_data)
{
    (void)user_data;
    eddy_rt_msg_t msg = {
        .event = "message-back",
        .args = ev->args,
        .args_len = ev->args_len,
        .bin = ev->bin,
        .nbin = ev->nbin,
    };
    eddy_rt_emit(s, &msg);
}

static void socketio_on_message_with_ack(eddy_rt_socket_t *s, const eddy_rt_event_t *ev,
                                         void *user_data)
{
    (void)user_data;
    if (ev->ack_id < 0)
        return;
    eddy_rt_msg_t msg = {
        .args = ev->args, .args_len = ev->args_len, .bin = ev->bin, .nbin = ev->nbin};
    eddy_rt_ack(s, ev->ack_id, &msg);
}

/* The room named by the first argument: a string's text, or any other value's JSON (as
 * Node, which keys rooms by the value). Returns false when there is none or it is too long. */
static bool socketio_room_arg(const eddy_rt_event_t *ev, char *room, size_t cap)
{
    const char *json;
    size_t len;
    int type = eddy_rt_arg(ev, 0, &json, &len);
    if (type == EDDY_RT_JSON_STRING)
        return eddy_rt_arg_string(ev, 0, room, cap) >= 0;
    if (type == EDDY_RT_JSON_NONE || type == EDDY_RT_JSON_BINARY || len >= cap)
        return false;
    memcpy(room, json, len);
    room[len] = '\0';
    return true;
}

static void socketio_on_join(eddy_rt_socket_t *s, const eddy_rt_event_t *ev, void *user_data)
{
    (void)user_data;
    char room[1024];
    if (socketio_room_arg(ev, room, sizeof(room)))
        SOCKETIO_APP_CHECK(eddy_rt_join(s, room) == 0);
    if (ev->ack_id >= 0)
        eddy_rt_ack_json(s, ev->ack_id, "\"joined\"");
}

static void socketio_on_leave(eddy_rt_socket_t *s, const eddy_rt_event_t *ev, void *user_data)
{
    (void)user_data;
    char room[1024];
    if (socketio_room_arg(ev, room, sizeof(room)))
        SOCKETIO_APP_CHECK(eddy_rt_leave(s, room) == 0);
    if (ev->ack_id >= 0)
        eddy_rt_ack_json(s, ev->ack_id, "\"left\"");
}

/* The argument list after the first argument. */
static void socketio_rest_args(const eddy_rt_event_t *ev, const char **rest, size_t *len)
{
    const char *first;
    size_t first_len;
    *rest = "";
    *len = 0;
    if (eddy_rt_arg(ev, 1, NULL, NULL) == EDDY_RT_JSON_NONE)
        return;
    int type = eddy_rt_arg(ev, 0, &first, &first_len);
    if (type == EDDY_RT_JSON_BINARY)
        return; /* a placeholder's span is not in args: no room can be named so */
    const char *p = first + first_len, *end = ev->args + ev->args_len;
    while (p < end && *p != ',')
        p++;
    if (p < end)
        p++;
    *rest = p;
    *len = (size_t)(end - p);
}

static void socketio_on_to_room(eddy_rt_socket_t *s, const eddy_rt_event_t *ev, void *user_data)
{
    (void)user_data;
    char room[1024];
    if (!socketio_room_arg(ev, room, sizeof(room)))
        return;
    const char *rooms[] = {room};
    eddy_rt_to_t to = {.rooms = rooms, .nrooms = 1, .except_socket = s};
    eddy_rt_msg_t msg = {.event = "room-message", .bin = ev->bin, .nbin = ev->nbin};
    socketio_rest_args(ev, &msg.args, &msg.args_len);
    int rc = eddy_rt_broadcast(eddy_rt_socket_nsp(s), &to, &msg);
    SOCKETIO_APP_CHECK(rc == 0 || rc == EDDY_EINVAL);
}

static void socketio_on_to_all(eddy_rt_socket_t *s, const eddy_rt_event_t *ev, void *user_data)
{
    (void)user_data;
    eddy_rt_msg_t msg = {.event = "all-message",
                         .args = ev->args,
                         .args_len = ev->args_len,
                         .bin = ev->bin,
                         .nbin = ev->nbin};
    int rc = eddy_rt_broadcast(eddy_rt_socket_nsp(s), NULL, &msg);
    SOCKETIO_APP_CHECK(rc == 0 || rc == EDDY_EINVAL);
}

static void socketio_on_server_disconnect(eddy_rt_socket_t *s, const eddy_rt_event_t *ev,
                                          void *user_data)
{
    (void)ev;
    (void)user_data;
    eddy_rt_disconnect(s, false);
}

/* The client's answer to need-ack: its first argument goes back as the ack of the
 * emit-with-ack that asked (arg carries that ack id, or -1). */
static void socketio_on_need_ack_answer(eddy_rt_socket_t *s, int status,
                                        const eddy_rt_event_t *answer, void *arg)
{
    int64_t ack_id = (int64_t)(intptr_t)arg;
    if (ack_id < 0)
        return;
    if (status != 0) {
        eddy_rt_ack_json(s, ack_id, "\"timeout\"");
        return;
    }
    const char *json;
    size_t len;
    eddy_rt_bin_t bin;
    eddy_rt_msg_t msg = {.args = "null", .args_len = 4}; /* ack(undefined) is sent as [null] */
    int type = eddy_rt_arg(answer, 0, &json, &len);
    if (type == EDDY_RT_JSON_BINARY) {
        bin = (eddy_rt_bin_t){json, len};
        msg = (eddy_rt_msg_t){.args = "{\"_placeholder\":true,\"num\":0}", .bin = &bin, .nbin = 1};
        msg.args_len = strlen(msg.args);
    } else if (type != EDDY_RT_JSON_NONE) {
        /* Placeholders nested in it keep their numbers: pass every attachment on. */
        msg = (eddy_rt_msg_t){
            .args = json, .args_len = len, .bin = answer->bin, .nbin = answer->nbin};
    }
    eddy_rt_ack(s, ack_id, &msg);
}

static void socketio_on_emit_with_ack(eddy_rt_socket_t *s, const eddy_rt_event_t *ev,
                                      void *user_data)
{
    (void)user_data;
    eddy_rt_msg_t msg = {.event = "need-ack", .args = "42", .args_len = 2};
    eddy_rt_emit_ack(s, &msg, 1000, socketio_on_need_ack_answer, (void *)(intptr_t)ev->ack_id);
}

/* Installs the application on nsp: "/" (root: refuses {"refuse": true}) or "/custom". */
static void socketio_app_setup(eddy_rt_nsp_t *nsp, bool root)
{
    eddy_rt_handlers_t h = {.connection = socketio_on_connection};
    if (root)
        h.connect = socketio_on_connect_root;
    eddy_rt_nsp_set_handlers(nsp, &h);
    static const struct {
        const char *name;
        eddy_rt_event_cb cb;
    } events[] = {
        {"message", socketio_on_message},
        {"message-with-ack", socketio_on_message_with_ack},
        {"join", socketio_on_join},
        {"leave", socketio_on_leave},
        {"to-room", socketio_on_to_room},
        {"to-all", socketio_on_to_all},
        {"server-disconnect", socketio_on_server_disconnect},
        {"emit-with-ack", socketio_on_emit_with_ack},
    };
    for (size_t i = 0; i < sizeof(events) / sizeof(events[0]); i++)
        SOCKETIO_APP_CHECK(eddy_rt_on(nsp, events[i].name, events[i].cb, NULL) == 0);
}

#endif /* EDDY_SOCKETIO_APP_H */

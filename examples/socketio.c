/* SPDX-License-Identifier: MIT */
/*
 * socketio: the Socket.IO test application of the real-time layer, the same application
 * as tests/clients/sio_reference.js on Node's socket.io 4.8 (tests and benchmarks run both).
 * Socket.IO v5 (Engine.IO 4) and v4 (Engine.IO 3) clients on /socket.io/, WebSocket and
 * HTTP long-polling.
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
 */
#include <stdint.h>

#include "eddy_rt.h"
#include "example.h"

static void on_connection(eddy_rt_socket_t *s, void *user_data)
{
    size_t len;
    const char *auth = eddy_rt_socket_auth(s, &len);
    eddy_rt_msg_t msg = {.event = "auth", .args = auth, .args_len = len};
    eddy_rt_emit(s, &msg);
}

static int on_connect_root(eddy_rt_socket_t *s, void *user_data)
{
    size_t len;
    const char *auth = eddy_rt_socket_auth(s, &len);
    if (eddy_rt_json_member(auth, len, "refuse", NULL, NULL) == EDDY_RT_JSON_TRUE)
        return eddy_rt_refuse(s, "refused", NULL);
    return 0;
}

static void on_message(eddy_rt_socket_t *s, const eddy_rt_event_t *ev, void *user_data)
{
    eddy_rt_msg_t msg = {
        .event = "message-back",
        .args = ev->args,
        .args_len = ev->args_len,
        .bin = ev->bin,
        .nbin = ev->nbin,
    };
    eddy_rt_emit(s, &msg);
}

static void on_message_with_ack(eddy_rt_socket_t *s, const eddy_rt_event_t *ev, void *user_data)
{
    if (ev->ack_id < 0)
        return;
    eddy_rt_msg_t msg = {
        .args = ev->args, .args_len = ev->args_len, .bin = ev->bin, .nbin = ev->nbin};
    eddy_rt_ack(s, ev->ack_id, &msg);
}

/* The room named by the first argument: a string's text, or any other value's JSON (as
 * Node, which keys rooms by the value). Returns false when there is none or it is too long. */
static bool room_arg(const eddy_rt_event_t *ev, char *room, size_t cap)
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

static void on_join(eddy_rt_socket_t *s, const eddy_rt_event_t *ev, void *user_data)
{
    char room[1024];
    if (room_arg(ev, room, sizeof(room)))
        eddy_rt_join(s, room);
    if (ev->ack_id >= 0)
        eddy_rt_ack_json(s, ev->ack_id, "\"joined\"");
}

static void on_leave(eddy_rt_socket_t *s, const eddy_rt_event_t *ev, void *user_data)
{
    char room[1024];
    if (room_arg(ev, room, sizeof(room)))
        eddy_rt_leave(s, room);
    if (ev->ack_id >= 0)
        eddy_rt_ack_json(s, ev->ack_id, "\"left\"");
}

/* The argument list after the first argument. */
static void rest_args(const eddy_rt_event_t *ev, const char **rest, size_t *len)
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

static void on_to_room(eddy_rt_socket_t *s, const eddy_rt_event_t *ev, void *user_data)
{
    char room[1024];
    if (!room_arg(ev, room, sizeof(room)))
        return;
    const char *rooms[] = {room};
    eddy_rt_to_t to = {.rooms = rooms, .nrooms = 1, .except_socket = s};
    eddy_rt_msg_t msg = {.event = "room-message", .bin = ev->bin, .nbin = ev->nbin};
    rest_args(ev, &msg.args, &msg.args_len);
    eddy_rt_broadcast(eddy_rt_socket_nsp(s), &to, &msg);
}

static void on_to_all(eddy_rt_socket_t *s, const eddy_rt_event_t *ev, void *user_data)
{
    eddy_rt_msg_t msg = {.event = "all-message",
                         .args = ev->args,
                         .args_len = ev->args_len,
                         .bin = ev->bin,
                         .nbin = ev->nbin};
    eddy_rt_broadcast(eddy_rt_socket_nsp(s), NULL, &msg);
}

static void on_server_disconnect(eddy_rt_socket_t *s, const eddy_rt_event_t *ev, void *user_data)
{
    eddy_rt_disconnect(s, false);
}

/* The client's answer to need-ack: its first argument goes back as the ack of the
 * emit-with-ack that asked (arg carries that ack id, or -1). */
static void on_need_ack_answer(eddy_rt_socket_t *s, int status, const eddy_rt_event_t *answer,
                               void *arg)
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

static void on_emit_with_ack(eddy_rt_socket_t *s, const eddy_rt_event_t *ev, void *user_data)
{
    eddy_rt_msg_t msg = {.event = "need-ack", .args = "42", .args_len = 2};
    eddy_rt_emit_ack(s, &msg, 1000, on_need_ack_answer, (void *)(intptr_t)ev->ack_id);
}

static void setup(eddy_rt_nsp_t *nsp, bool root)
{
    eddy_rt_handlers_t h = {.connection = on_connection};
    if (root)
        h.connect = on_connect_root;
    eddy_rt_nsp_set_handlers(nsp, &h);
    eddy_rt_on(nsp, "message", on_message, NULL);
    eddy_rt_on(nsp, "message-with-ack", on_message_with_ack, NULL);
    eddy_rt_on(nsp, "join", on_join, NULL);
    eddy_rt_on(nsp, "leave", on_leave, NULL);
    eddy_rt_on(nsp, "to-room", on_to_room, NULL);
    eddy_rt_on(nsp, "to-all", on_to_all, NULL);
    eddy_rt_on(nsp, "server-disconnect", on_server_disconnect, NULL);
    eddy_rt_on(nsp, "emit-with-ack", on_emit_with_ack, NULL);
}

static const example_option_spec_t options[] = {
    {"--ping-interval", "MS", "Engine.IO pingInterval (default 25000)"},
    {"--ping-timeout", "MS", "Engine.IO pingTimeout (default 20000)"},
    {"--connect-timeout", "MS", "Socket.IO connectTimeout (default 45000)"},
    {"--recovery", "MS", "connection state recovery: maxDisconnectionDuration (0: off)"},
    {NULL, NULL, NULL},
};

static const example_spec_t spec = {
    .name = "socketio",
    .summary = "The Socket.IO test application (tests/clients/sio_reference.js) on eddy_rt.",
    .options = options,
};

/* A number of milliseconds (any uint32_t). */
static uint32_t ms_option(int argc, char **argv, const char *name, uint32_t fallback)
{
    return (uint32_t)example_number(argc, argv, &spec, name, 0, UINT32_MAX, fallback);
}

int main(int argc, char **argv)
{
    eddy_server_t *srv = example_new(argc, argv, &spec);
    eddy_rt_options_t opts;
    eddy_rt_options_init(&opts);
    opts.ping_interval_ms = ms_option(argc, argv, "--ping-interval", opts.ping_interval_ms);
    opts.ping_timeout_ms = ms_option(argc, argv, "--ping-timeout", opts.ping_timeout_ms);
    opts.connect_timeout_ms = ms_option(argc, argv, "--connect-timeout", opts.connect_timeout_ms);
    opts.recovery_max_disconnection_ms = ms_option(argc, argv, "--recovery", 0);
    eddy_rt_t *rt = eddy_rt_new(srv, &opts);
    if (rt == NULL)
        return 1;
    setup(eddy_rt_of(rt, "/"), true);
    setup(eddy_rt_of(rt, "/custom"), false);
    eddy_rt_install(rt, NULL);
    int rc = example_run(srv);
    eddy_rt_free(rt);
    return rc;
}

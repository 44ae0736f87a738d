/* SPDX-License-Identifier: MIT */
/*
 * socketio: the Socket.IO test application of the real-time layer, the same application
 * as tests/clients/sio_reference.js on Node's socket.io 4.8 (tests and benchmarks run both).
 * Socket.IO v5 (Engine.IO 4) and v4 (Engine.IO 3) clients on /socket.io/, WebSocket and
 * HTTP long-polling. The handlers (what each event does) are in socketio_app.h, which the
 * fuzz drivers of the real-time layer share.
 *
 * With --redis URL several of them on one Redis form one cluster (README "Scale-out"):
 * rooms, broadcasts and recovery then span the nodes. --redis URL,URL,... shards the
 * namespaces over several Redis (--namespaces N adds /n1 ... /nN to have some to spread).
 *
 * Operations across nodes, on "/" only (eddy_rt.h "Across nodes"; not in the reference
 * application). sel is {"rooms": [...], "users": [...], "except": [...]} (each optional;
 * none: the whole namespace); at most 8 names of each, 255 bytes each.
 *   x-node                  ack this node's id
 *   x-user (id)             set the socket's user id, ack "ok"
 *   x-join (sel, room[, arg])  io.in(sel).socketsJoin(room), ack the return code; with
 *                           arg, then at once emit "room-message" arg to room
 *   x-leave (sel, room)     io.in(sel).socketsLeave(room), ack the return code
 *   x-disconnect (sel, close)  io.in(sel).disconnectSockets(close), ack the return code
 *   x-fetch (sel, ms)       ack {"status", "sockets": [{"id", "user", "rooms", "node"}],
 *                           "missing": [node ids]} (fetchSockets)
 *   x-rooms                 ack {"status", "rooms": [{"name", "sockets", "users"}]}
 *                           (adapter.allRooms(), with counts: eddy_rt_rooms())
 *   x-ack (sel, ms, ...args)  broadcast "x-ask" with args and an ack wanted, ack
 *                           {"results": [{"id", "status", "answer" (its arguments), "node"}]}
 *   x-broker                ack {"ready", "dropped", "retried", "slots_moved"}
 *                           (eddy_rt_broker_status())
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "eddy_rt.h"
#include "example.h"
#include "socketio_app.h"

static const example_option_spec_t options[] = {
    {"--ping-interval", "MS", "Engine.IO pingInterval (default 25000)"},
    {"--ping-timeout", "MS", "Engine.IO pingTimeout (default 20000)"},
    {"--connect-timeout", "MS", "Socket.IO connectTimeout (default 45000)"},
    {"--recovery", "MS", "connection state recovery: maxDisconnectionDuration (0: off)"},
    {"--history", "N",
     "events kept per room (history_max_messages; default 0, 1000 with recovery)"},
    {"--redis", "URL",
     "scale-out: redis://host:port of the cluster's Redis, redis+sentinel://host:port,.../master "
     "through Sentinel (rediss:// and rediss+sentinel:// over TLS), redis+cluster://host:port,... "
     "(seeds of a Redis Cluster; rediss+cluster:// over TLS), or several redis[s]:// or "
     "redis[s]+sentinel:// separated by "
     "commas (namespaces sharded over them; default: one node)"},
    {"--redis-emitter", "KEY",
     "with --redis: broadcast what Socket.IO's Redis emitter publishes under KEY (socket.io)"},
    {"--heartbeat-interval", "MS",
     "with --redis: how often the node renews its lease in Redis (default 1000)"},
    {"--heartbeat-timeout", "MS",
     "with --redis: how long a lease lasts, at least twice the interval (default: three "
     "intervals)"},
    {"--namespaces", "N", "also serve /n1 ... /nN, each as /custom (default 0)"},
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

/* ---------------------------------------------------------------------------------------
 * Operations across nodes
 * ------------------------------------------------------------------------------------- */

#define SEL_MAX 8

typedef struct sel {
    char names[3][SEL_MAX][256];
    const char *ptrs[3][SEL_MAX];
    eddy_rt_to_t to;
} sel_t;

/* Reads the strings of JSON array member key of obj into s. */
static size_t sel_list(const char *obj, size_t len, const char *key, sel_t *s, int which)
{
    const char *arr;
    size_t alen;
    if (eddy_rt_json_member(obj, len, key, &arr, &alen) != EDDY_RT_JSON_ARRAY || alen < 2)
        return 0;
    /* The array's items are an argument list. */
    eddy_rt_event_t items = {.args = arr + 1, .args_len = alen - 2, .ack_id = -1};
    size_t n = 0;
    for (size_t i = 0; i < eddy_rt_arg_count(&items) && n < SEL_MAX; i++) {
        if (eddy_rt_arg_string(&items, i, s->names[which][n], sizeof(s->names[which][n])) >= 0) {
            s->ptrs[which][n] = s->names[which][n];
            n++;
        }
    }
    return n;
}

/* The selection in argument 0 of ev. */
static void sel_read(const eddy_rt_event_t *ev, sel_t *s)
{
    const char *obj;
    size_t len;
    memset(&s->to, 0, sizeof(s->to));
    if (eddy_rt_arg(ev, 0, &obj, &len) != EDDY_RT_JSON_OBJECT)
        return;
    s->to.nrooms = sel_list(obj, len, "rooms", s, 0);
    s->to.nusers = sel_list(obj, len, "users", s, 1);
    s->to.nexcept = sel_list(obj, len, "except", s, 2);
    s->to.rooms = s->ptrs[0];
    s->to.users = s->ptrs[1];
    s->to.except = s->ptrs[2];
}

/* A growing JSON text. */
typedef struct jbuf {
    char *p;
    size_t len, cap;
} jbuf_t;

static void j_raw(jbuf_t *j, const char *s, size_t n)
{
    if (j->len + n + 1 > j->cap) {
        size_t cap = (j->len + n + 1) * 2;
        char *p = realloc(j->p, cap);
        if (p == NULL)
            return; /* an example: a short answer */
        j->p = p;
        j->cap = cap;
    }
    memcpy(j->p + j->len, s, n);
    j->len += n;
    j->p[j->len] = '\0';
}

static void j_lit(jbuf_t *j, const char *s)
{
    j_raw(j, s, strlen(s));
}

static void j_str(jbuf_t *j, const char *s)
{
    if (s == NULL) {
        j_lit(j, "null");
        return;
    }
    j_lit(j, "\"");
    for (; *s; s++) {
        char esc[8];
        if (*s == '"' || *s == '\\') {
            esc[0] = '\\';
            esc[1] = *s;
            j_raw(j, esc, 2);
        } else if ((unsigned char)*s < 0x20) {
            snprintf(esc, sizeof(esc), "\\u%04x", (unsigned char)*s);
            j_lit(j, esc);
        } else {
            j_raw(j, s, 1);
        }
    }
    j_lit(j, "\"");
}

static void j_strs(jbuf_t *j, const char *const *v, size_t n)
{
    j_lit(j, "[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            j_lit(j, ",");
        j_str(j, v[i]);
    }
    j_lit(j, "]");
}

static void ack_code(eddy_rt_socket_t *s, const eddy_rt_event_t *ev, int rc)
{
    char num[16];
    snprintf(num, sizeof(num), "%d", rc);
    if (ev->ack_id >= 0)
        eddy_rt_ack_json(s, ev->ack_id, num);
}

static void on_x_node(eddy_rt_socket_t *s, const eddy_rt_event_t *ev, void *ud)
{
    jbuf_t j = {0};
    j_str(&j, eddy_rt_node_id(eddy_rt_nsp_rt(eddy_rt_socket_nsp(s))));
    if (ev->ack_id >= 0 && j.p != NULL)
        eddy_rt_ack_json(s, ev->ack_id, j.p);
    free(j.p);
}

static void on_x_user(eddy_rt_socket_t *s, const eddy_rt_event_t *ev, void *ud)
{
    char id[256];
    if (eddy_rt_arg_string(ev, 0, id, sizeof(id)) >= 0)
        eddy_rt_socket_set_user(s, id);
    if (ev->ack_id >= 0)
        eddy_rt_ack_json(s, ev->ack_id, "\"ok\"");
}

static void on_x_join_leave(eddy_rt_socket_t *s, const eddy_rt_event_t *ev, void *ud)
{
    sel_t sel;
    char room[256];
    sel_read(ev, &sel);
    if (eddy_rt_arg_string(ev, 1, room, sizeof(room)) < 0) {
        ack_code(s, ev, EDDY_EINVAL);
        return;
    }
    const char *rooms[] = {room};
    int rc = ud != NULL ? eddy_rt_sockets_leave(eddy_rt_socket_nsp(s), &sel.to, rooms, 1)
                        : eddy_rt_sockets_join(eddy_rt_socket_nsp(s), &sel.to, rooms, 1);
    const char *json;
    size_t len;
    if (rc == 0 && ud == NULL && eddy_rt_arg(ev, 2, &json, &len) != EDDY_RT_JSON_NONE) {
        /* A broadcast right after the join, from the same thread: it must reach them. */
        eddy_rt_to_t to = {.rooms = rooms, .nrooms = 1};
        eddy_rt_msg_t msg = {.event = "room-message", .args = json, .args_len = len};
        rc = eddy_rt_broadcast(eddy_rt_socket_nsp(s), &to, &msg);
    }
    ack_code(s, ev, rc);
}

static void on_x_disconnect(eddy_rt_socket_t *s, const eddy_rt_event_t *ev, void *ud)
{
    sel_t sel;
    sel_read(ev, &sel);
    bool close = eddy_rt_arg(ev, 1, NULL, NULL) == EDDY_RT_JSON_TRUE;
    /* Answered first: this socket may be among those disconnected. */
    ack_code(s, ev, 0);
    eddy_rt_disconnect_sockets(eddy_rt_socket_nsp(s), &sel.to, close);
}

/* The number in argument i (milliseconds), or fallback. */
static uint32_t ms_arg(const eddy_rt_event_t *ev, size_t i, uint32_t fallback)
{
    const char *json;
    size_t len;
    if (eddy_rt_arg(ev, i, &json, &len) != EDDY_RT_JSON_NUMBER)
        return fallback;
    char num[24];
    snprintf(num, sizeof(num), "%.*s", (int)(len < 23 ? len : 23), json);
    return (uint32_t)strtoul(num, NULL, 10);
}

/* A pending answer: the asking socket (referenced) and its ack id. */
typedef struct asker {
    eddy_rt_socket_t *s;
    int64_t ack_id;
} asker_t;

static asker_t *asker_new(eddy_rt_socket_t *s, const eddy_rt_event_t *ev)
{
    asker_t *a = malloc(sizeof(*a));
    if (a != NULL) {
        eddy_rt_socket_ref(s);
        *a = (asker_t){s, ev->ack_id};
    }
    return a;
}

static void asker_answer(asker_t *a, jbuf_t *j)
{
    if (a->ack_id >= 0 && j->p != NULL)
        eddy_rt_ack_json(a->s, a->ack_id, j->p);
    eddy_rt_socket_unref(a->s);
    free(a);
    free(j->p);
}

/* Opens a cross-node answer: {"status":status */
static void j_status(jbuf_t *j, int status)
{
    char num[16];
    snprintf(num, sizeof(num), "%d", status);
    j_lit(j, "{\"status\":");
    j_lit(j, num);
}

/* Closes a cross-node answer with the nodes that did not answer, and sends it. */
static void asker_missing(asker_t *a, jbuf_t *j, const char *const *missing, size_t nmissing)
{
    j_lit(j, ",\"missing\":");
    j_strs(j, missing, nmissing);
    j_lit(j, "}");
    asker_answer(a, j);
}

static void on_fetched(eddy_rt_nsp_t *nsp, int status, const eddy_rt_socket_info_t *socks, size_t n,
                       const char *const *missing, size_t nmissing, void *arg)
{
    jbuf_t j = {0};
    j_status(&j, status);
    j_lit(&j, ",\"sockets\":[");
    for (size_t i = 0; i < n; i++) {
        j_lit(&j, i ? ",{\"id\":" : "{\"id\":");
        j_str(&j, socks[i].id);
        j_lit(&j, ",\"user\":");
        j_str(&j, socks[i].user_id);
        j_lit(&j, ",\"rooms\":");
        j_strs(&j, socks[i].rooms, socks[i].nrooms);
        j_lit(&j, ",\"node\":");
        j_str(&j, socks[i].node);
        j_lit(&j, "}");
    }
    j_lit(&j, "]");
    asker_missing(arg, &j, missing, nmissing);
}

static void on_x_fetch(eddy_rt_socket_t *s, const eddy_rt_event_t *ev, void *ud)
{
    sel_t sel;
    sel_read(ev, &sel);
    asker_t *a = asker_new(s, ev);
    int rc = a == NULL ? EDDY_ENOMEM
                       : eddy_rt_fetch_sockets(eddy_rt_socket_nsp(s), &sel.to, ms_arg(ev, 1, 5000),
                                               on_fetched, a);
    if (rc != 0) {
        if (a != NULL) {
            eddy_rt_socket_unref(a->s);
            free(a);
        }
        ack_code(s, ev, rc);
    }
}

static void on_rooms(int err, const eddy_rt_room_info_t *rooms, size_t n, void *arg)
{
    jbuf_t j = {0};
    j_status(&j, err);
    j_lit(&j, ",\"rooms\":[");
    for (size_t i = 0; i < n; i++) {
        char counts[64];
        snprintf(counts, sizeof(counts), ",\"sockets\":%zu,\"users\":%zu}", rooms[i].sockets,
                 rooms[i].users);
        j_lit(&j, i ? ",{\"name\":" : "{\"name\":");
        j_str(&j, rooms[i].name);
        j_lit(&j, counts);
    }
    j_lit(&j, "]}");
    asker_answer(arg, &j);
}

static void on_x_rooms(eddy_rt_socket_t *s, const eddy_rt_event_t *ev, void *ud)
{
    asker_t *a = asker_new(s, ev);
    int rc = a == NULL ? EDDY_ENOMEM : eddy_rt_rooms(eddy_rt_socket_nsp(s), 0, on_rooms, a);
    if (rc != 0) {
        if (a != NULL) {
            eddy_rt_socket_unref(a->s);
            free(a);
        }
        ack_code(s, ev, rc);
    }
}

static void on_x_broker(eddy_rt_socket_t *s, const eddy_rt_event_t *ev, void *ud)
{
    eddy_rt_broker_status_t st;
    eddy_rt_broker_status(eddy_rt_nsp_rt(eddy_rt_socket_nsp(s)), &st);
    char json[160];
    snprintf(json, sizeof(json),
             "{\"ready\":%s,\"dropped\":%llu,\"retried\":%llu,\"slots_moved\":%llu}",
             st.ready ? "true" : "false", (unsigned long long)st.dropped_total,
             (unsigned long long)st.retried_total, (unsigned long long)st.slots_moved_total);
    if (ev->ack_id >= 0)
        eddy_rt_ack_json(s, ev->ack_id, json);
}

static void on_acked(eddy_rt_nsp_t *nsp, const eddy_rt_ack_result_t *res, size_t n, void *arg)
{
    jbuf_t j = {0};
    j_lit(&j, "{\"results\":[");
    for (size_t i = 0; i < n; i++) {
        char num[16];
        snprintf(num, sizeof(num), "%d", res[i].status);
        j_lit(&j, i ? ",{\"id\":" : "{\"id\":");
        j_str(&j, res[i].socket_id);
        j_lit(&j, ",\"status\":");
        j_lit(&j, num);
        j_lit(&j, ",\"answer\":[");
        if (res[i].ev != NULL)
            j_raw(&j, res[i].ev->args, res[i].ev->args_len);
        j_lit(&j, "],\"node\":");
        j_str(&j, res[i].node);
        j_lit(&j, "}");
    }
    j_lit(&j, "]}");
    asker_answer(arg, &j);
}

static void on_x_ack(eddy_rt_socket_t *s, const eddy_rt_event_t *ev, void *ud)
{
    sel_t sel;
    sel_read(ev, &sel);
    /* The arguments after the first two. */
    const char *rest = "", *json;
    size_t rest_len = 0, len;
    if (eddy_rt_arg(ev, 2, &json, &len) != EDDY_RT_JSON_NONE) {
        rest = json;
        rest_len = (size_t)(ev->args + ev->args_len - json);
    }
    eddy_rt_msg_t msg = {.event = "x-ask", .args = rest, .args_len = rest_len};
    asker_t *a = asker_new(s, ev);
    int rc = a == NULL ? EDDY_ENOMEM
                       : eddy_rt_broadcast_ack(eddy_rt_socket_nsp(s), &sel.to, &msg,
                                               ms_arg(ev, 1, 1000), on_acked, a);
    if (rc != 0) {
        if (a != NULL) {
            eddy_rt_socket_unref(a->s);
            free(a);
        }
        ack_code(s, ev, rc);
    }
}

static void xnode_setup(eddy_rt_nsp_t *nsp)
{
    static const struct {
        const char *name;
        eddy_rt_event_cb cb;
        void *ud;
    } events[] = {
        {"x-node", on_x_node, NULL},
        {"x-user", on_x_user, NULL},
        {"x-join", on_x_join_leave, NULL},
        {"x-leave", on_x_join_leave, (void *)1},
        {"x-disconnect", on_x_disconnect, NULL},
        {"x-fetch", on_x_fetch, NULL},
        {"x-rooms", on_x_rooms, NULL},
        {"x-ack", on_x_ack, NULL},
        {"x-broker", on_x_broker, NULL},
    };
    for (size_t i = 0; i < sizeof(events) / sizeof(events[0]); i++)
        eddy_rt_on(nsp, events[i].name, events[i].cb, events[i].ud);
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
    opts.history_max_messages =
        (size_t)example_number(argc, argv, &spec, "--history", 0, UINT32_MAX, 0);
    opts.redis_url = example_option(argc, argv, "--redis", NULL);
    opts.redis_emitter_prefix = example_option(argc, argv, "--redis-emitter", NULL);
    opts.redis_heartbeat_interval_ms = ms_option(argc, argv, "--heartbeat-interval", 0);
    opts.redis_heartbeat_timeout_ms = ms_option(argc, argv, "--heartbeat-timeout", 0);
    eddy_rt_t *rt = eddy_rt_new(srv, &opts);
    if (rt == NULL)
        return 1;
    socketio_app_setup(eddy_rt_of(rt, "/"), true);
    xnode_setup(eddy_rt_of(rt, "/"));
    socketio_app_setup(eddy_rt_of(rt, "/custom"), false);
    unsigned long extra = example_number(argc, argv, &spec, "--namespaces", 0, 1000, 0);
    for (unsigned long i = 1; i <= extra; i++) {
        char name[16];
        snprintf(name, sizeof(name), "/n%lu", i);
        socketio_app_setup(eddy_rt_of(rt, name), false);
    }
    eddy_rt_install(rt, NULL);
    int rc = example_serve(srv);
    eddy_rt_free(rt); /* first: its broker may still hand results to the server */
    eddy_server_free(srv);
    return rc;
}

/* SPDX-License-Identifier: MIT */
/*
 * The HTTP server API (realtime.h): POST /api/METHOD with a JSON object body, answered
 * {"result": ...} with 200, or {"error": {"status": N, "message": "..."}} with N as the
 * HTTP status. Authorised by the [api] key, sent as "Authorization: apikey KEY" (or
 * Centrifugo's X-API-Key header), compared in constant time. Methods: emit (alias
 * publish), disconnect, join, leave, presence, history, rooms, sockets, stats (README "Server
 * API").
 * Every call runs on the loop that took the request; eddy_rt functions may be called from
 * any thread.
 */
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "admin.h"
#include "realtime.h"
#include "throttle.h"

/* Room, user and socket lists in one call. */
#define API_TARGETS_MAX 256

/* The status of the answer the calling thread gave last, for the metrics. */
static _Thread_local int answered_status;

static void reply(eddy_response_t *resp, int status, json_t *body)
{
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (text == NULL) {
        status = 500;
        text = strdup("{\"error\":{\"status\":500,\"message\":\"out of memory\"}}");
    }
    answered_status = status;
    eddy_response_status(resp, status, NULL);
    eddy_response_header(resp, "Content-Type", "application/json");
    eddy_response_header(resp, "Cache-Control", "no-store");
    if (status == 401)
        eddy_response_header(resp, "WWW-Authenticate", "apikey realm=\"eddy\"");
    if (status == 405)
        eddy_response_header(resp, "Allow", "POST");
    size_t len = text != NULL ? strlen(text) : 0;
    eddy_response_end(resp, text, len);
    free(text);
}

static void fail(eddy_response_t *resp, int status, const char *message)
{
    reply(resp, status, json_pack("{s:{s:i,s:s}}", "error", "status", status, "message", message));
}

static void ok(eddy_response_t *resp, json_t *result)
{
    reply(resp, 200, json_pack("{s:o}", "result", result != NULL ? result : json_object()));
}

/* Constant time whatever the lengths: both sides are hashed first. */
static bool key_matches(const char *given, const char *key)
{
    unsigned char a[32], b[32];
    unsigned int alen = 0, blen = 0;
    if (given == NULL || !EVP_Digest(given, strlen(given), a, &alen, EVP_sha256(), NULL) ||
        !EVP_Digest(key, strlen(key), b, &blen, EVP_sha256(), NULL) || alen != 32 || blen != 32)
        return false;
    return CRYPTO_memcmp(a, b, 32) == 0;
}

static const char *presented_key(eddy_request_t *req)
{
    const char *h = eddy_request_header(req, "Authorization");
    if (h != NULL && strncasecmp(h, "apikey ", 7) == 0) {
        h += 7;
        while (*h == ' ')
            h++;
        return h;
    }
    return eddy_request_header(req, "X-API-Key");
}

/* ---- arguments ---- */

typedef struct call {
    json_t *body;
    eddy_rt_nsp_t *nsp;
    eddy_response_t *resp;
    eddy_server_t *srv;
} call_t;

/* A string member (NULL if absent); false (answered 400) if present and not a string. */
static bool get_string(call_t *c, const char *name, const char **out)
{
    json_t *v = json_object_get(c->body, name);
    *out = NULL;
    if (v == NULL)
        return true;
    if (!json_is_string(v) || json_string_length(v) == 0 ||
        strlen(json_string_value(v)) != json_string_length(v)) {
        char msg[96];
        snprintf(msg, sizeof(msg), "%s must be a non-empty string", name);
        fail(c->resp, 400, msg);
        return false;
    }
    *out = json_string_value(v);
    return true;
}

/* name (one string) and names (an array of strings) merged into list[]. */
static bool get_list(call_t *c, const char *one, const char *many, const char **list, size_t *n)
{
    *n = 0;
    const char *single;
    if (!get_string(c, one, &single))
        return false;
    if (single != NULL)
        list[(*n)++] = single;
    json_t *arr = json_object_get(c->body, many);
    if (arr == NULL)
        return true;
    char msg[128];
    snprintf(msg, sizeof(msg), "%s must be an array of at most %d non-empty strings", many,
             API_TARGETS_MAX);
    if (!json_is_array(arr) || json_array_size(arr) + *n > API_TARGETS_MAX) {
        fail(c->resp, 400, msg);
        return false;
    }
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        if (!json_is_string(v) || json_string_length(v) == 0 ||
            strlen(json_string_value(v)) != json_string_length(v)) {
            fail(c->resp, 400, msg);
            return false;
        }
        list[(*n)++] = json_string_value(v);
    }
    return true;
}

/* The argument list of an emit, as JSON text without the brackets (malloc'd): "args" (an
 * array) or "data" (one value), or none. */
static char *emit_args(call_t *c)
{
    json_t *args = json_object_get(c->body, "args"), *data = json_object_get(c->body, "data");
    if (args != NULL && data != NULL) {
        fail(c->resp, 400, "args or data, not both");
        return NULL;
    }
    if (args != NULL && !json_is_array(args)) {
        fail(c->resp, 400, "args must be an array");
        return NULL;
    }
    char *text = NULL;
    if (args != NULL)
        text = json_dumps(args, JSON_COMPACT);
    else if (data != NULL) {
        json_t *one = json_pack("[O]", data);
        text = one != NULL ? json_dumps(one, JSON_COMPACT) : NULL;
        json_decref(one);
    } else
        text = strdup("[]");
    if (text == NULL) {
        fail(c->resp, 500, "out of memory");
        return NULL;
    }
    size_t len = strlen(text); /* "[...]": drop the brackets */
    memmove(text, text + 1, len - 2);
    text[len - 2] = '\0';
    return text;
}

/* ---- methods ---- */

static void api_emit(call_t *c)
{
    const char *rooms[API_TARGETS_MAX], *users[API_TARGETS_MAX], *except[API_TARGETS_MAX];
    size_t nrooms, nusers, nexcept;
    const char *event, *socket_id;
    if (!get_string(c, "event", &event) || !get_list(c, "room", "rooms", rooms, &nrooms) ||
        !get_list(c, "user", "users", users, &nusers) ||
        !get_list(c, "except", "except_rooms", except, &nexcept) ||
        !get_string(c, "socket", &socket_id))
        return;
    if (event == NULL) {
        fail(c->resp, 400, "event is required");
        return;
    }
    json_t *vol = json_object_get(c->body, "volatile");
    if (vol != NULL && !json_is_boolean(vol)) {
        fail(c->resp, 400, "volatile must be true or false");
        return;
    }
    if (socket_id != NULL && (nrooms != 0 || nusers != 0 || nexcept != 0)) {
        fail(c->resp, 400, "socket is a target of its own: no rooms, users or except with it");
        return;
    }
    char *args = emit_args(c);
    if (args == NULL)
        return;
    eddy_rt_msg_t msg = {.event = event,
                         .args = args,
                         .args_len = strlen(args),
                         .flags = json_is_true(vol) ? EDDY_RT_VOLATILE : 0};
    int rc;
    if (socket_id != NULL) {
        eddy_rt_socket_t *s = eddy_rt_socket_find(c->nsp, socket_id);
        if (s == NULL) {
            free(args);
            fail(c->resp, 404, "no such socket");
            return;
        }
        rc = eddy_rt_emit(s, &msg);
        eddy_rt_socket_unref(s);
        if (rc == EDDY_QUEUED || rc == EDDY_EDROPPED)
            rc = 0; /* sent later, or not at all by request (volatile): both are delivery's */
    } else {
        eddy_rt_to_t to = {.rooms = rooms,
                           .nrooms = nrooms,
                           .users = users,
                           .nusers = nusers,
                           .except = except,
                           .nexcept = nexcept};
        rc = eddy_rt_broadcast(c->nsp, &to, &msg);
    }
    free(args);
    if (rc == 0)
        ok(c->resp, NULL);
    else
        fail(c->resp,
             rc == EDDY_ECLOSED  ? 404
             : rc == EDDY_ENOMEM ? 500
                                 : 400,
             rc == EDDY_ECLOSED ? "no such socket" : eddy_strerror(rc));
}

/* Sockets collected by a member visitor (referenced), with their user ids copied. */
typedef struct collected {
    eddy_rt_socket_t **sockets;
    char **users;
    size_t n, cap;
    bool failed;
} collected_t;

static bool collect(const eddy_rt_member_t *m, void *arg)
{
    collected_t *col = arg;
    if (col->n == col->cap) {
        size_t cap = col->cap != 0 ? col->cap * 2 : 16;
        eddy_rt_socket_t **s = realloc(col->sockets, cap * sizeof(*s));
        if (s != NULL)
            col->sockets = s;
        char **u = s != NULL ? realloc(col->users, cap * sizeof(*u)) : NULL;
        if (u != NULL)
            col->users = u;
        if (s == NULL || u == NULL) {
            col->failed = true;
            return false;
        }
        col->cap = cap;
    }
    col->users[col->n] = m->user_id != NULL ? strdup(m->user_id) : NULL;
    eddy_rt_socket_ref(m->socket);
    col->sockets[col->n++] = m->socket;
    return true;
}

static void collected_free(collected_t *col)
{
    for (size_t i = 0; i < col->n; i++) {
        eddy_rt_socket_unref(col->sockets[i]);
        free(col->users[i]);
    }
    free(col->sockets);
    free(col->users);
}

/* The sockets a call names: "socket", or every connection of "user". 404 when none. */
static bool target_sockets(call_t *c, collected_t *col)
{
    const char *socket_id, *user;
    memset(col, 0, sizeof(*col));
    if (!get_string(c, "socket", &socket_id) || !get_string(c, "user", &user))
        return false;
    if ((socket_id == NULL) == (user == NULL)) {
        fail(c->resp, 400, "user or socket is required (one of them)");
        return false;
    }
    if (socket_id != NULL) {
        eddy_rt_socket_t *s = eddy_rt_socket_find(c->nsp, socket_id);
        if (s != NULL) {
            eddy_rt_member_t m = {eddy_rt_socket_id(s), NULL, s};
            collect(&m, col);
            eddy_rt_socket_unref(s);
        }
    } else {
        eddy_rt_user_sockets(c->nsp, user, collect, col);
    }
    if (col->failed) {
        collected_free(col);
        fail(c->resp, 500, "out of memory");
        return false;
    }
    return true;
}

/* With [broker] a disconnect, join or leave acts on every node's sockets: sent to the
 * cluster, each node applies it to its own (eddy_rt_disconnect_sockets(),
 * eddy_rt_sockets_join()); no count comes back. */
static bool clustered(call_t *c)
{
    return eddy_rt_node_id(eddy_rt_nsp_rt(c->nsp)) != NULL;
}

/* The call's target as a selection of every node's sockets: "socket" (its own room) or
 * "user". False when answered (400). */
static bool cluster_target(call_t *c, const char **one, eddy_rt_to_t *to)
{
    const char *socket_id, *user;
    if (!get_string(c, "socket", &socket_id) || !get_string(c, "user", &user))
        return false;
    if ((socket_id == NULL) == (user == NULL)) {
        fail(c->resp, 400, "user or socket is required (one of them)");
        return false;
    }
    *one = socket_id != NULL ? socket_id : user;
    *to = socket_id != NULL ? (eddy_rt_to_t){.rooms = one, .nrooms = 1}
                            : (eddy_rt_to_t){.users = one, .nusers = 1};
    return true;
}

static void cluster_sent(call_t *c, int rc)
{
    if (rc == 0)
        ok(c->resp, json_pack("{s:b}", "cluster", 1));
    else
        fail(c->resp,
             rc == EDDY_EDROPPED ? 503
             : rc == EDDY_EINVAL ? 400
                                 : 500,
             rc == EDDY_EDROPPED ? "the cluster is busy (queue to Redis full)" : eddy_strerror(rc));
}

static void api_disconnect(call_t *c)
{
    json_t *close = json_object_get(c->body, "close");
    if (close != NULL && !json_is_boolean(close)) {
        fail(c->resp, 400, "close must be true or false");
        return;
    }
    if (clustered(c)) {
        const char *one;
        eddy_rt_to_t to;
        if (cluster_target(c, &one, &to))
            cluster_sent(c, eddy_rt_disconnect_sockets(c->nsp, &to, json_is_true(close)));
        return;
    }
    collected_t col;
    if (!target_sockets(c, &col))
        return;
    size_t n = 0;
    for (size_t i = 0; i < col.n; i++)
        n += eddy_rt_disconnect(col.sockets[i], json_is_true(close)) == 0;
    collected_free(&col);
    ok(c->resp, json_pack("{s:I}", "disconnected", (json_int_t)n));
}

static void api_join_leave(call_t *c, bool join)
{
    const char *room;
    if (!get_string(c, "room", &room))
        return;
    if (room == NULL) {
        fail(c->resp, 400, "room is required");
        return;
    }
    if (clustered(c)) {
        const char *one;
        eddy_rt_to_t to;
        if (cluster_target(c, &one, &to))
            cluster_sent(c, join ? eddy_rt_sockets_join(c->nsp, &to, &room, 1)
                                 : eddy_rt_sockets_leave(c->nsp, &to, &room, 1));
        return;
    }
    collected_t col;
    if (!target_sockets(c, &col))
        return;
    size_t n = 0;
    for (size_t i = 0; i < col.n; i++)
        n += (join ? eddy_rt_join(col.sockets[i], room) : eddy_rt_leave(col.sockets[i], room)) == 0;
    collected_free(&col);
    ok(c->resp, json_pack("{s:I}", "sockets", (json_int_t)n));
}

/* An answer that waits for the layer (eddy_rt_room_presence(), eddy_rt_rooms()): the
 * response is detached and ended in the callback, on its connection's loop. */
typedef struct pending {
    eddy_response_t *resp;
    eddy_server_t *srv;
    eddy_fd_t fd;
    char method[16];
    char nsp[];
} pending_t;

/* The thread's current call was detached: its metrics are counted when it is answered. */
static _Thread_local bool answer_later;

/* A pending answer for c, or NULL once c is answered 500 (out of memory). */
static pending_t *pending_new(call_t *c, const char *method)
{
    const char *nsp = eddy_rt_nsp_name(c->nsp);
    pending_t *pd = malloc(sizeof(*pd) + strlen(nsp) + 1);
    if (pd == NULL) {
        fail(c->resp, 500, "out of memory");
        return NULL;
    }
    pd->resp = c->resp;
    pd->srv = c->srv;
    pd->fd = eddy_response_fd(c->resp);
    snprintf(pd->method, sizeof(pd->method), "%s", method);
    strcpy(pd->nsp, nsp);
    return pd;
}

/* Starts a layer query (its rc): detached, or answered now when it could not start. */
static void pending_started(call_t *c, pending_t *pd, int rc)
{
    if (rc == 0) {
        eddy_response_detach(c->resp);
        answer_later = true;
        return;
    }
    free(pd);
    fail(c->resp, rc == EDDY_EDROPPED ? 503 : 500,
         rc == EDDY_EDROPPED ? "the cluster is busy (queue to Redis full)" : eddy_strerror(rc));
}

/* Ends a pending answer: the query's error, or body. */
static void pending_answer(pending_t *pd, int err, json_t *body)
{
    if (err == 0 && body != NULL)
        ok(pd->resp, body);
    else if (err == EDDY_ECLOSED)
        fail(pd->resp, 503, "the cluster is unavailable (Redis does not answer)");
    else
        fail(pd->resp, 500, err != 0 ? eddy_strerror(err) : "out of memory");
    metrics_api_call(pd->method, answered_status);
    free(pd);
}

static void presence_answered(int err, const eddy_rt_presence_t *p, void *arg)
{
    pending_t *pd = arg;
    json_t *body = NULL;
    if (err == 0) {
        /* The layer may be gone by now (the server stopping): looked up by name. */
        eddy_rt_nsp_t *nsp = realtime_nsp(pd->nsp);
        json_t *sockets = json_array(), *users = json_array();
        for (size_t i = 0; i < p->nsockets; i++) {
            const eddy_rt_presence_socket_t *e = &p->sockets[i];
            json_t *entry = json_pack("{s:s}", "id", e->socket_id);
            json_object_set_new(entry, "user",
                                e->user_id != NULL ? json_string(e->user_id) : json_null());
            if (e->node != NULL)
                json_object_set_new(entry, "node", json_string(e->node));
            /* Data is known for this node's sockets. */
            eddy_rt_socket_t *s = nsp != NULL ? eddy_rt_socket_find(nsp, e->socket_id) : NULL;
            char *data = s != NULL ? realtime_socket_data(s) : NULL;
            json_t *d = data != NULL ? json_loads(data, JSON_DECODE_ANY, NULL) : NULL;
            free(data);
            if (s != NULL)
                eddy_rt_socket_unref(s);
            if (d != NULL)
                json_object_set_new(entry, "data", d);
            json_array_append_new(sockets, entry);
        }
        for (size_t i = 0; i < p->nusers; i++)
            json_array_append_new(users, json_string(p->users[i]));
        body = json_pack("{s:I,s:I,s:o,s:o}", "num_sockets", (json_int_t)p->nsockets, "num_users",
                         (json_int_t)p->nusers, "sockets", sockets, "users", users);
    }
    pending_answer(pd, err, body);
}

static void api_presence(call_t *c)
{
    const char *room;
    if (!get_string(c, "room", &room))
        return;
    if (room == NULL) {
        fail(c->resp, 400, "room is required");
        return;
    }
    pending_t *pd = pending_new(c, "presence");
    if (pd == NULL)
        return;
    pending_started(
        c, pd,
        eddy_rt_room_presence(c->nsp, room, eddy_response_fd(c->resp), presence_answered, pd));
}

static void history_answered(eddy_rt_nsp_t *nsp, int err, const eddy_rt_history_entry_t *entries,
                             size_t n, void *arg)
{
    json_t *list = err == 0 ? json_array() : NULL;
    for (size_t i = 0; list != NULL && i < n; i++) {
        const eddy_rt_event_t *ev = entries[i].ev;
        char *text = malloc(ev->args_len + 3);
        if (text == NULL)
            break;
        text[0] = '[';
        memcpy(text + 1, ev->args, ev->args_len);
        strcpy(text + 1 + ev->args_len, "]");
        json_t *args = json_loads(text, JSON_DECODE_ANY, NULL);
        free(text);
        json_array_append_new(list, json_pack("{s:s,s:o,s:s}", "event", ev->name, "args",
                                              args != NULL ? args : json_array(), "offset",
                                              entries[i].offset));
    }
    pending_answer(arg, err, list != NULL ? json_pack("{s:o}", "publications", list) : NULL);
}

/* A room's history, or the namespace's (room absent): the newest limit events, every
 * node's with [broker] (eddy_rt_room_recent()). */
static void api_history(call_t *c)
{
    const char *room;
    if (!get_string(c, "room", &room))
        return;
    json_t *limit = json_object_get(c->body, "limit");
    if (limit != NULL && (!json_is_integer(limit) || json_integer_value(limit) < 0)) {
        fail(c->resp, 400, "limit must be a count (0: all)");
        return;
    }
    size_t n = limit != NULL && json_integer_value(limit) > 0 ? (size_t)json_integer_value(limit)
                                                              : SIZE_MAX;
    pending_t *pd = pending_new(c, "history");
    if (pd == NULL)
        return;
    pending_started(
        c, pd,
        eddy_rt_room_recent(c->nsp, room, n, eddy_response_fd(c->resp), history_answered, pd));
}

/* A fetch's answer, handed from the thread that has it to the response's loop. */
typedef struct fetched {
    pending_t *pd;
    json_t *body;
} fetched_t;

static void fetched_run(eddy_server_t *srv, void *arg)
{
    fetched_t *f = arg;
    pending_answer(f->pd, f->body != NULL ? 0 : EDDY_ENOMEM, f->body);
    free(f);
}

static void sockets_answered(eddy_rt_nsp_t *nsp, int status, const eddy_rt_socket_info_t *sockets,
                             size_t n, const char *const *missing, size_t nmissing, void *arg)
{
    fetched_t *f = arg;
    json_t *list = json_array(), *gone = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *rooms = json_array();
        for (size_t k = 0; k < sockets[i].nrooms; k++)
            json_array_append_new(rooms, json_string(sockets[i].rooms[k]));
        json_t *entry = json_pack("{s:s,s:o,s:s}", "id", sockets[i].id, "rooms", rooms, "node",
                                  sockets[i].node != NULL ? sockets[i].node : "");
        json_object_set_new(entry, "user",
                            sockets[i].user_id != NULL ? json_string(sockets[i].user_id)
                                                       : json_null());
        json_array_append_new(list, entry);
    }
    for (size_t i = 0; i < nmissing; i++)
        json_array_append_new(gone, json_string(missing[i]));
    /* complete: every node alive when the request left answered, Redis included. */
    f->body = json_pack("{s:o,s:o,s:b}", "sockets", list, "missing", gone, "complete",
                        status == 0 && nmissing == 0);
    if (eddy_post(f->pd->srv, f->pd->fd, fetched_run, f) != 0 &&
        eddy_defer(f->pd->srv, fetched_run, f) != 0)
        fetched_run(f->pd->srv, f); /* out of memory: here */
}

/* The sockets of every node (eddy_rt_fetch_sockets()): targets as emit's (none: the whole
 * namespace), waiting at most timeout_ms (default 2000, at most 30000) for the nodes. */
static void api_sockets(call_t *c)
{
    const char *rooms[API_TARGETS_MAX], *users[API_TARGETS_MAX], *except[API_TARGETS_MAX];
    size_t nrooms, nusers, nexcept;
    const char *socket_id;
    if (!get_list(c, "room", "rooms", rooms, &nrooms) ||
        !get_list(c, "user", "users", users, &nusers) ||
        !get_list(c, "except", "except_rooms", except, &nexcept) ||
        !get_string(c, "socket", &socket_id))
        return;
    json_t *timeout = json_object_get(c->body, "timeout_ms");
    if (timeout != NULL && (!json_is_integer(timeout) || json_integer_value(timeout) < 1 ||
                            json_integer_value(timeout) > 30000)) {
        fail(c->resp, 400, "timeout_ms must be 1 to 30000");
        return;
    }
    if (socket_id != NULL) {
        if (nrooms != 0 || nusers != 0 || nexcept != 0) {
            fail(c->resp, 400, "socket is a target of its own: no rooms, users or except with it");
            return;
        }
        rooms[nrooms++] = socket_id; /* its own room */
    }
    pending_t *pd = pending_new(c, "sockets");
    if (pd == NULL)
        return;
    fetched_t *f = calloc(1, sizeof(*f));
    if (f == NULL) {
        free(pd);
        fail(c->resp, 500, "out of memory");
        return;
    }
    f->pd = pd;
    eddy_rt_to_t to = {.rooms = rooms,
                       .nrooms = nrooms,
                       .users = users,
                       .nusers = nusers,
                       .except = except,
                       .nexcept = nexcept};
    int rc = eddy_rt_fetch_sockets(c->nsp, &to,
                                   timeout != NULL ? (uint32_t)json_integer_value(timeout) : 2000,
                                   sockets_answered, f);
    if (rc != 0)
        free(f);
    pending_started(c, pd, rc);
}

static void add_room_name(const char *room, void *arg)
{
    json_array_append_new(arg, json_string(room));
}

/* The rooms of nsp that have members: [{"name", "sockets", "users"}]. */
static json_t *live_rooms(eddy_rt_nsp_t *nsp)
{
    json_t *names = json_array(), *rooms = json_array();
    realtime_rooms(nsp, add_room_name, names);
    size_t i;
    json_t *v;
    json_array_foreach(names, i, v)
    {
        /* Counted outside our lock: a room with no member left is not listed. */
        size_t n = eddy_rt_room_count(nsp, json_string_value(v));
        if (n > 0)
            json_array_append_new(
                rooms, json_pack("{s:O,s:I,s:I}", "name", v, "sockets", (json_int_t)n, "users",
                                 (json_int_t)eddy_rt_room_user_count(nsp, json_string_value(v))));
    }
    json_decref(names);
    return rooms;
}

static void rooms_answered(int err, const eddy_rt_room_info_t *rooms, size_t n, void *arg)
{
    json_t *list = err == 0 ? json_array() : NULL;
    for (size_t i = 0; list != NULL && i < n; i++)
        json_array_append_new(list, json_pack("{s:s,s:I,s:I}", "name", rooms[i].name, "sockets",
                                              (json_int_t)rooms[i].sockets, "users",
                                              (json_int_t)rooms[i].users));
    pending_answer(arg, err, list != NULL ? json_pack("{s:o}", "rooms", list) : NULL);
}

/* Every node's rooms (the layer's answer; this node's rooms on one node). */
static void api_rooms(call_t *c)
{
    pending_t *pd = pending_new(c, "rooms");
    if (pd == NULL)
        return;
    pending_started(c, pd, eddy_rt_rooms(c->nsp, eddy_response_fd(c->resp), rooms_answered, pd));
}

/* With [broker], stats' room counts are every node's (eddy_rt_rooms() per namespace); the
 * last answer ends the response. Answers run on the response's loop, or on loop 0 if the
 * connection is gone: counted under a lock. */
typedef struct stats_wait {
    pending_t *pd;
    pthread_mutex_t lock;
    size_t waiting;
    int err;
    json_t *body;
} stats_wait_t;

typedef struct stats_part {
    stats_wait_t *w;
    json_t *entry; /* the namespace's entry in w->body */
} stats_part_t;

static void stats_part_done(stats_wait_t *w, int err)
{
    pthread_mutex_lock(&w->lock);
    if (err != 0 && w->err == 0)
        w->err = err;
    bool last = --w->waiting == 0;
    pthread_mutex_unlock(&w->lock);
    if (!last)
        return;
    if (w->err != 0)
        json_decref(w->body);
    pending_answer(w->pd, w->err, w->err == 0 ? w->body : NULL);
    pthread_mutex_destroy(&w->lock);
    free(w);
}

static void stats_rooms_answered(int err, const eddy_rt_room_info_t *rooms, size_t n, void *arg)
{
    stats_part_t *part = arg;
    stats_wait_t *w = part->w;
    if (err == 0) {
        pthread_mutex_lock(&w->lock);
        json_object_set_new(part->entry, "rooms", json_integer((json_int_t)n));
        pthread_mutex_unlock(&w->lock);
    }
    free(part);
    stats_part_done(w, err);
}

static void api_stats(call_t *c, eddy_server_t *srv)
{
    json_t *nsps = json_array();
    eddy_rt_t *rt = realtime_rt();
    eddy_rt_nsp_t *nsp;
    for (size_t i = 0; rt != NULL && (nsp = realtime_nsp_at(i)) != NULL; i++) {
        json_t *rooms = live_rooms(nsp);
        json_array_append_new(nsps, json_pack("{s:s,s:I,s:I}", "name", eddy_rt_nsp_name(nsp),
                                              "sockets", (json_int_t)eddy_rt_nsp_count(nsp),
                                              "rooms", (json_int_t)json_array_size(rooms)));
        json_decref(rooms);
    }
    json_t *body = json_pack("{s:I,s:o}", "connections", (json_int_t)eddy_connection_count(srv),
                             "namespaces", nsps);
    if (rt == NULL || eddy_rt_node_id(rt) == NULL) {
        ok(c->resp, body);
        return;
    }
    stats_wait_t *w = calloc(1, sizeof(*w));
    pending_t *pd = calloc(1, sizeof(*pd) + 1);
    if (w == NULL || pd == NULL) {
        free(w);
        free(pd);
        json_decref(body);
        fail(c->resp, 500, "out of memory");
        return;
    }
    *pd = (pending_t){.resp = c->resp, .srv = srv, .fd = eddy_response_fd(c->resp)};
    snprintf(pd->method, sizeof(pd->method), "stats");
    w->pd = pd;
    w->body = body;
    w->waiting = 1; /* this call's, released last */
    pthread_mutex_init(&w->lock, NULL);
    eddy_response_detach(c->resp);
    answer_later = true;
    for (size_t i = 0; (nsp = realtime_nsp_at(i)) != NULL; i++) {
        stats_part_t *part = malloc(sizeof(*part));
        pthread_mutex_lock(&w->lock);
        w->waiting++;
        pthread_mutex_unlock(&w->lock);
        if (part == NULL) {
            stats_part_done(w, EDDY_ENOMEM);
            continue;
        }
        *part = (stats_part_t){w, json_array_get(nsps, i)};
        int rc = eddy_rt_rooms(nsp, pd->fd, stats_rooms_answered, part);
        if (rc != 0) {
            free(part);
            stats_part_done(w, rc);
        }
    }
    stats_part_done(w, 0);
}

static void api_answer(eddy_request_t *req, eddy_response_t *resp);

bool api_request(eddy_request_t *req, eddy_response_t *resp, bool admin, bool has_admin)
{
    const char *path = eddy_request_path(req);
    const char *key = realtime_api_key();
    if (strncmp(path, "/api/", 5) != 0 || key[0] == '\0' || admin != has_admin)
        return false;
    answered_status = 500;
    answer_later = false;
    api_answer(req, resp);
    if (!answer_later)
        metrics_api_call(path + 5, answered_status);
    return true;
}

/* Answers an API request (every path ends in reply()). */
static void api_answer(eddy_request_t *req, eddy_response_t *resp)
{
    const char *path = eddy_request_path(req);
    const char *key = realtime_api_key();
    if (strcmp(eddy_request_method(req), "POST") != 0) {
        fail(resp, 405, "the API takes POST");
        return;
    }
    const char *ip = eddy_request_remote_ip(req);
    if (!throttle_request(req, resp)) {
        fail(resp, 429, "too many wrong API keys from this address: retry later");
        return;
    }
    const char *given = presented_key(req);
    if (!key_matches(given, key)) {
        eddy_server_t *srv = eddy_request_server(req);
        eddy_log(srv, EDDY_LOG_NOTICE, "api: refused %s:%d: no valid API key", ip,
                 eddy_request_remote_port(req));
        if (given != NULL && given[0] != '\0' && throttle_failed(ip))
            eddy_log(srv, EDDY_LOG_WARNING,
                     "api: %s refused for %d s after %d wrong tries (API and admin page)", ip,
                     THROTTLE_WINDOW_S, THROTTLE_FAILURES);
        fail(resp, 401, "a valid API key is required (Authorization: apikey KEY)");
        return;
    }
    size_t len;
    const char *text = eddy_request_body(req, &len);
    if (len > realtime_api_max_body()) {
        fail(resp, 413, "request body too large ([api] max_body)");
        return;
    }
    json_error_t jerr;
    call_t c = {.resp = resp, .srv = eddy_request_server(req)};
    c.body = len > 0 ? json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr) : json_object();
    if (!json_is_object(c.body)) {
        json_decref(c.body);
        fail(resp, 400, "the body must be a JSON object");
        return;
    }
    const char *method = path + 5, *nsp_name;
    if (!get_string(&c, "namespace", &nsp_name))
        goto done;
    bool known = true;
    if (strcmp(method, "stats") == 0) {
        api_stats(&c, eddy_request_server(req));
        goto done;
    }
    if (realtime_rt() == NULL) {
        fail(resp, 503, "the Socket.IO endpoint is off ([socketio] enabled = false)");
        goto done;
    }
    c.nsp = realtime_nsp(nsp_name != NULL ? nsp_name : "/");
    if (c.nsp == NULL) {
        fail(resp, 404, "no such namespace ([socketio] namespaces)");
        goto done;
    }
    if (strcmp(method, "emit") == 0 || strcmp(method, "publish") == 0)
        api_emit(&c);
    else if (strcmp(method, "disconnect") == 0)
        api_disconnect(&c);
    else if (strcmp(method, "join") == 0 || strcmp(method, "leave") == 0)
        api_join_leave(&c, method[0] == 'j');
    else if (strcmp(method, "presence") == 0)
        api_presence(&c);
    else if (strcmp(method, "history") == 0)
        api_history(&c);
    else if (strcmp(method, "rooms") == 0)
        api_rooms(&c);
    else if (strcmp(method, "sockets") == 0)
        api_sockets(&c);
    else
        known = false;
    if (!known)
        fail(resp, 404, "no such method");
done:
    json_decref(c.body);
}

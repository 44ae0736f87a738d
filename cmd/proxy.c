/* SPDX-License-Identifier: MIT */
/*
 * The backend proxy's connect request ([proxy] in the config): a plain HTTP request to
 * [proxy] path is forwarded as POST JSON {remote, headers, query} to connect_url, and the
 * backend's answer (200 {"user": ...} to accept, 403 ... to refuse) is the client's. The
 * response waits, detached, while the loop goes on (backend.c). A WebSocket upgrade
 * ([websocket] path) is forwarded the same way, its 101 deferred (eddy_upgrade_defer())
 * until the backend accepted (2xx) or refused (its status).
 */
#include <jansson.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "backend.h"
#include "cmd.h"
#include "realtime.h"

static struct {
    eddy_server_t *srv;
    backend_t *b;
    const char *url; /* connect_url ("": connects are not forwarded) */
    const char *event_url, *join_url;
    const char *path;
    long timeout_ms;
    unsigned long long canceled; /* by proxy_free(): the server stopped first */
} p;

static bool parse_number(const char *value, double min, double max, double *out)
{
    char *end;
    double v = strtod(value, &end);
    if (end == value || *end != '\0' || !(v >= min && v <= max))
        return false;
    *out = v;
    return true;
}

int proxy_check_key(const char *key, const char *value, const char **why)
{
    double v;
    if (strcmp(key, "connect_url") == 0 || strcmp(key, "event_url") == 0 ||
        strcmp(key, "join_url") == 0) {
        if (value[0] != '\0' && strncmp(value, "http://", 7) != 0 &&
            strncmp(value, "https://", 8) != 0)
            *why = "not an http:// or https:// URL";
    } else if (strcmp(key, "path") == 0) {
        if (value[0] != '/')
            *why = "does not start with /";
    } else if (strcmp(key, "timeout") == 0) {
        if (!parse_number(value, 0.001, 3600, &v))
            *why = "not a number of seconds (0.001-3600)";
    } else if (strcmp(key, "max_requests") == 0) {
        if (!parse_number(value, 1, 1000000, &v) || v != (long)v)
            *why = "not a whole number (1-1000000)";
    } else if (strcmp(key, "max_body") == 0) {
        if (!parse_number(value, 1, 1 << 30, &v) || v != (long)v)
            *why = "not a number of bytes (1-1073741824)";
    } else {
        return -1;
    }
    return *why != NULL ? 1 : 0;
}

static const char *get(const cfg_t *cfg, const char *key, const char *fallback)
{
    const char *v = cfg_get(cfg, "proxy", key);
    return v != NULL ? v : fallback;
}

int proxy_setup(eddy_server_t *srv, const cfg_t *cfg)
{
    p.url = get(cfg, "connect_url", "");
    p.event_url = get(cfg, "event_url", "");
    p.join_url = get(cfg, "join_url", "");
    if (p.url[0] == '\0' && p.event_url[0] == '\0' && p.join_url[0] == '\0')
        return 0;
    p.srv = srv;
    p.path = get(cfg, "path", "/connect");
    p.timeout_ms = (long)(atof(get(cfg, "timeout", "1")) * 1000 + 0.5);
    if (p.timeout_ms < 1)
        p.timeout_ms = 1;
    /* One client for the three URLs (requests name theirs in full): one concurrency bound,
     * one pool of connections. */
    p.b = backend_new(srv, "", atoi(get(cfg, "max_requests", "64")),
                      (size_t)atol(get(cfg, "max_body", "65536")));
    return p.b != NULL ? 0 : -1;
}

void proxy_free(void)
{
    if (p.b == NULL)
        return;
    backend_stats_t s;
    backend_stats(p.b, &s);
    backend_free(p.b);
    p.b = NULL;
    eddy_log(p.srv, EDDY_LOG_INFO,
             "proxy: %llu requests, %llu connections, %llu busy, %llu refused, %llu timeouts, "
             "%llu server errors, %llu too big, %llu failed, %llu canceled",
             (unsigned long long)s.requests, (unsigned long long)s.connects,
             (unsigned long long)s.results[BACKEND_EBUSY],
             (unsigned long long)s.results[BACKEND_EREFUSED],
             (unsigned long long)s.results[BACKEND_ETIMEOUT],
             (unsigned long long)s.results[BACKEND_ESTATUS],
             (unsigned long long)s.results[BACKEND_ETOOBIG],
             (unsigned long long)s.results[BACKEND_EFAILED], p.canceled);
}

/* A growing string; ok turns false when memory runs out. */
struct str {
    char *s;
    size_t len, cap;
    bool ok;
};

static void put(struct str *o, const char *s, size_t n)
{
    if (!o->ok)
        return;
    if (o->len + n + 1 > o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 512;
        while (cap < o->len + n + 1)
            cap *= 2;
        char *grown = realloc(o->s, cap);
        if (grown == NULL) {
            o->ok = false;
            return;
        }
        o->s = grown;
        o->cap = cap;
    }
    memcpy(o->s + o->len, s, n);
    o->len += n;
    o->s[o->len] = '\0';
}

/* s as a JSON string (bytes >= 0x80 pass through: headers are Latin-1 at worst, and the
 * backend reads what the client sent). */
static void put_json(struct str *o, const char *s)
{
    put(o, "\"", 1);
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            put(o, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof(esc), "\\u%04x", c);
            put(o, esc, 6);
        } else {
            put(o, (const char *)&c, 1);
        }
    }
    put(o, "\"", 1);
}

static void answer(eddy_response_t *resp, int status, const char *type, const char *body,
                   size_t len)
{
    eddy_response_status(resp, status, NULL);
    eddy_response_header(resp, "Content-Type", type);
    eddy_response_end(resp, body, len);
}

static void on_answer(const backend_result_t *res, void *arg)
{
    eddy_response_t *resp = arg;
    if (res->error == BACKEND_ECANCELED) { /* the server stopped: its connection is gone */
        p.canceled++;
        eddy_response_close(resp);
        return;
    }
    if (res->error == BACKEND_OK) {
        answer(resp, (int)res->status, "application/json", res->body, res->len);
        return;
    }
    backend_stats_t s;
    backend_stats(p.b, &s);
    eddy_log(p.srv, EDDY_LOG_WARNING, "proxy: %s: %s (status %ld; %llu so far)", p.url,
             backend_error_name(res->error), res->status,
             (unsigned long long)s.results[res->error]);
    if (res->error == BACKEND_ETIMEOUT)
        answer(resp, 504, "text/plain; charset=utf-8", "backend timeout\n", 16);
    else
        answer(resp, 502, "text/plain; charset=utf-8", "backend error\n", 14);
}

/* The connect JSON of req: {remote, headers, query}. o->s is the caller's to free. */
static void connect_json(eddy_server_t *srv, eddy_request_t *req, struct str *o)
{
    eddy_client_info_t info;
    char remote[64] = "";
    if (eddy_client_info(srv, eddy_request_fd(req), &info) == 0)
        snprintf(remote, sizeof(remote), "%s:%d", info.remote_ip, info.remote_port);
    put(o, "{\"remote\":", 10);
    put_json(o, remote);
    put(o, ",\"headers\":{", 12);
    size_t n = eddy_request_header_count(req);
    bool first = true;
    for (size_t i = 0; i < n; i++) {
        const char *name, *value;
        if (eddy_request_header_at(req, i, &name, &value) != 0)
            continue;
        if (!first)
            put(o, ",", 1);
        first = false;
        put_json(o, name);
        put(o, ":", 1);
        put_json(o, value);
    }
    put(o, "},\"query\":", 10);
    const char *query = eddy_request_query(req);
    put_json(o, query != NULL ? query : "");
    put(o, "}", 1);
}

bool proxy_request(eddy_server_t *srv, eddy_request_t *req, eddy_response_t *resp)
{
    if (p.b == NULL || p.url[0] == '\0' || strcmp(eddy_request_path(req), p.path) != 0)
        return false;
    struct str o = {.ok = true};
    connect_json(srv, req, &o);
    int rc = o.ok ? backend_post_json(p.b, p.url, o.s, o.len, p.timeout_ms, on_answer, resp) : -1;
    free(o.s);
    if (rc == 0) {
        eddy_response_detach(resp);
    } else if (rc == BACKEND_EBUSY) {
        backend_stats_t s;
        backend_stats(p.b, &s);
        eddy_log(srv, EDDY_LOG_WARNING, "proxy: %s: busy (%llu refused so far)", p.url,
                 (unsigned long long)s.results[BACKEND_EBUSY]);
        eddy_response_header(resp, "Retry-After", "1");
        answer(resp, 503, "text/plain; charset=utf-8", "backend busy\n", 13);
    } else {
        answer(resp, 500, "text/plain; charset=utf-8", "cannot reach the backend\n", 25);
    }
    return true;
}

/* ---- WebSocket upgrades ---- */

/* Logs a backend failure with its running count. */
static void log_failure(const char *what, const char *url, const backend_result_t *res)
{
    backend_stats_t s;
    backend_stats(p.b, &s);
    eddy_log(p.srv, EDDY_LOG_WARNING, "proxy: %s: %s: %s (status %ld; %llu so far)", what, url,
             backend_error_name(res->error), res->status,
             (unsigned long long)s.results[res->error]);
}

static void on_upgrade_answer(const backend_result_t *res, void *arg)
{
    eddy_fd_t fd = (eddy_fd_t)(uintptr_t)arg;
    if (res->error == BACKEND_ECANCELED) { /* the server stopped: the connection is gone */
        p.canceled++;
        return;
    }
    if (res->error == BACKEND_OK && res->status >= 200 && res->status <= 299) {
        json_t *answer = json_loadb(res->body, res->len, 0, NULL);
        const char *user = json_string_value(json_object_get(answer, "user"));
        eddy_log(p.srv, EDDY_LOG_INFO, "proxy: upgrade of session#%llu accepted%s%s",
                 (unsigned long long)fd, user != NULL ? " as user " : "", user != NULL ? user : "");
        json_decref(answer);
        if (eddy_upgrade_accept(p.srv, fd, NULL) == EDDY_ENOTFOUND)
            eddy_log(p.srv, EDDY_LOG_INFO, "proxy: session#%llu left before the answer",
                     (unsigned long long)fd);
        return;
    }
    static const char *const json_type[] = {"Content-Type", "application/json", NULL};
    if (res->error == BACKEND_OK) {
        /* The backend's refusal, as it gave it (a status outside 4xx becomes 403). */
        int status = res->status >= 400 && res->status <= 499 ? (int)res->status : 403;
        eddy_log(p.srv, EDDY_LOG_INFO, "proxy: upgrade of session#%llu refused with %d",
                 (unsigned long long)fd, status);
        eddy_upgrade_reject(p.srv, fd, status, json_type, res->body);
        return;
    }
    log_failure("upgrade", p.url, res);
    if (res->error == BACKEND_ETIMEOUT)
        eddy_upgrade_reject(p.srv, fd, 504, NULL, "backend timeout\n");
    else
        eddy_upgrade_reject(p.srv, fd, 502, NULL, "backend error\n");
}

int proxy_upgrade(eddy_request_t *req)
{
    if (p.b == NULL || p.url[0] == '\0')
        return 0;
    eddy_server_t *srv = eddy_request_server(req);
    struct str o = {.ok = true};
    connect_json(srv, req, &o);
    void *arg = (void *)(uintptr_t)eddy_request_fd(req);
    int rc =
        o.ok ? backend_post_json(p.b, p.url, o.s, o.len, p.timeout_ms, on_upgrade_answer, arg) : -1;
    free(o.s);
    int verdict = eddy_upgrade_defer(req);
    if (rc == 0 || verdict != EDDY_PENDING)
        return verdict;
    /* Answered at once, but deferred all the same: eddy_upgrade_refuse() has no 5xx, and
     * these are the HTTP forward's answers. */
    eddy_fd_t fd = eddy_request_fd(req);
    if (rc == BACKEND_EBUSY) {
        backend_stats_t s;
        backend_stats(p.b, &s);
        eddy_log(srv, EDDY_LOG_WARNING, "proxy: upgrade: %s: busy (%llu refused so far)", p.url,
                 (unsigned long long)s.results[BACKEND_EBUSY]);
        static const char *const retry[] = {"Retry-After", "1", NULL};
        eddy_upgrade_reject(srv, fd, 503, retry, "backend busy\n");
    } else {
        eddy_upgrade_reject(srv, fd, 500, NULL, "cannot reach the backend\n");
    }
    return verdict;
}

/* ---- Socket.IO CONNECTs ---- */

/* The handshake's query parameters (header false) or headers as a JSON object. */
static json_t *handshake_object(eddy_rt_socket_t *s, bool header)
{
    json_t *obj = json_object();
    const char *name, *value;
    for (size_t i = 0; eddy_rt_socket_handshake_at(s, header, i, &name, &value) == 0; i++)
        json_object_set_new(obj, name, json_string(value));
    return obj;
}

static void on_sio_answer(const backend_result_t *res, void *arg)
{
    eddy_rt_socket_t *s = arg;
    const char *id = eddy_rt_socket_id(s);
    if (res->error == BACKEND_ECANCELED) {
        p.canceled++;
        realtime_socket_release(s);
        eddy_rt_refuse(s, "server shutting down", NULL);
    } else if (res->error == BACKEND_OK && res->status >= 200 && res->status <= 299) {
        json_t *answer = json_loadb(res->body, res->len, 0, NULL);
        const char *user = json_string_value(json_object_get(answer, "user"));
        json_t *data = json_object_get(answer, "data");
        char *text = data != NULL ? json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        bool ok = (user == NULL || eddy_rt_socket_set_user(s, user) == 0) &&
                  (text == NULL || realtime_socket_set_data(s, text) == 0);
        eddy_log(p.srv, EDDY_LOG_INFO, "proxy: socket %s accepted%s%s", id,
                 user != NULL ? " as user " : "", user != NULL ? user : "");
        json_decref(answer);
        if (!ok || eddy_rt_accept(s) != 0) {
            realtime_socket_release(s);
            eddy_rt_refuse(s, "server error", NULL);
        }
    } else if (res->error == BACKEND_OK) {
        /* The backend's refusal: its "message" and "data" go to CONNECT_ERROR. */
        json_t *answer = json_loadb(res->body, res->len, 0, NULL);
        const char *message = json_string_value(json_object_get(answer, "message"));
        json_t *data = json_object_get(answer, "data");
        char *text = data != NULL ? json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        eddy_log(p.srv, EDDY_LOG_INFO, "proxy: socket %s refused with %ld", id, res->status);
        realtime_socket_release(s);
        eddy_rt_refuse(s, message != NULL ? message : "refused", text);
        free(text);
        json_decref(answer);
    } else {
        log_failure("socket.io connect", p.url, res);
        realtime_socket_release(s);
        eddy_rt_refuse(s, res->error == BACKEND_ETIMEOUT ? "backend timeout" : "backend error",
                       NULL);
    }
    eddy_rt_socket_unref(s);
}

int proxy_sio_connect(eddy_rt_socket_t *s)
{
    if (p.b == NULL || p.url[0] == '\0')
        return 0;
    size_t auth_len;
    const char *auth = eddy_rt_socket_auth(s, &auth_len);
    json_t *body = json_object();
    json_object_set_new(body, "namespace", json_string(eddy_rt_nsp_name(eddy_rt_socket_nsp(s))));
    json_object_set_new(body, "sid", json_string(eddy_rt_socket_id(s)));
    json_object_set_new(body, "remote", json_string(eddy_rt_socket_remote_ip(s)));
    json_t *auth_obj = auth != NULL ? json_loadb(auth, auth_len, 0, NULL) : NULL;
    json_object_set_new(body, "auth", auth_obj != NULL ? auth_obj : json_object());
    json_object_set_new(body, "query", handshake_object(s, false));
    json_object_set_new(body, "headers", handshake_object(s, true));
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    eddy_rt_socket_ref(s); /* until the answer */
    int rc = text != NULL
                 ? backend_post_json(p.b, p.url, text, strlen(text), p.timeout_ms, on_sio_answer, s)
                 : -1;
    free(text);
    if (rc == 0)
        return eddy_rt_defer(s);
    eddy_rt_socket_unref(s);
    realtime_socket_release(s);
    if (rc == BACKEND_EBUSY) {
        eddy_log(p.srv, EDDY_LOG_WARNING, "proxy: socket.io connect: %s: busy", p.url);
        return eddy_rt_refuse(s, "backend busy", NULL);
    }
    return eddy_rt_refuse(s, "backend error", NULL);
}

/* ---- Socket.IO events and joins ---- */

/* The JSON every event and join request starts with: namespace, sid, user. */
static json_t *socket_object(eddy_rt_socket_t *s)
{
    const char *user = eddy_rt_socket_user(s);
    json_t *body = json_object();
    json_object_set_new(body, "namespace", json_string(eddy_rt_nsp_name(eddy_rt_socket_nsp(s))));
    json_object_set_new(body, "sid", json_string(eddy_rt_socket_id(s)));
    json_object_set_new(body, "user", user != NULL ? json_string(user) : json_null());
    return body;
}

/* Posts body (consumed) to url for s; cb gets the request (a reference on s) when 0. */
static int post_for_socket(eddy_rt_socket_t *s, const char *url, json_t *body, backend_cb cb,
                           void *req)
{
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    int rc =
        text != NULL ? backend_post_json(p.b, url, text, strlen(text), p.timeout_ms, cb, req) : -1;
    free(text);
    return rc;
}

/* What became of an event or join request, as its ack's error ("backend timeout", ...). */
static const char *failure_text(int error)
{
    return error == BACKEND_ETIMEOUT ? "backend timeout"
           : error == BACKEND_EBUSY  ? "backend busy"
                                     : "backend error";
}

/* An ack with {"error": text} (and "status" when the backend answered). */
static void ack_error(eddy_rt_socket_t *s, int64_t ack_id, const char *text, long status)
{
    json_t *err = json_pack("{s:s}", "error", text);
    if (status != 0)
        json_object_set_new(err, "status", json_integer(status));
    char *args = json_dumps(err, JSON_COMPACT);
    json_decref(err);
    if (args != NULL)
        eddy_rt_ack_json(s, ack_id, args);
    free(args);
}

typedef struct sio_request {
    eddy_rt_socket_t *s; /* referenced until the answer */
    int64_t ack_id;
    char room[]; /* a join's room */
} sio_request_t;

static void sio_request_done(sio_request_t *r)
{
    eddy_rt_socket_unref(r->s);
    free(r);
}

static void on_event_answer(const backend_result_t *res, void *arg)
{
    sio_request_t *r = arg;
    if (res->error == BACKEND_ECANCELED) {
        p.canceled++;
    } else if (res->error != BACKEND_OK) {
        log_failure("event", p.event_url, res);
        if (r->ack_id >= 0)
            ack_error(r->s, r->ack_id, failure_text(res->error), 0);
    } else if (r->ack_id >= 0) {
        /* The answer's JSON is the ack's argument; a refusal (not 2xx) an error. */
        json_t *answer = json_loadb(res->body, res->len, JSON_DECODE_ANY, NULL);
        if (res->status < 200 || res->status > 299)
            ack_error(r->s, r->ack_id, "refused", res->status);
        else if (answer == NULL)
            ack_error(r->s, r->ack_id, "bad backend answer", res->status);
        else
            eddy_rt_ack_json(r->s, r->ack_id, res->body);
        json_decref(answer);
    }
    sio_request_done(r);
}

/* A binary event's attachments, base64 each, in placeholder number order (the args keep
 * Socket.IO's {"_placeholder": true, "num": N} objects that point into this list). One that
 * cannot be encoded (out of memory) is null. */
static json_t *attachments(const eddy_rt_event_t *ev)
{
    json_t *list = json_array();
    for (size_t i = 0; list != NULL && i < ev->nbin; i++) {
        size_t len = ev->bin[i].len;
        char *b64 = len <= INT_MAX / 2 ? malloc(4 * ((len + 2) / 3) + 1) : NULL;
        if (b64 != NULL)
            EVP_EncodeBlock((unsigned char *)b64, ev->bin[i].data, (int)len);
        json_array_append_new(list, b64 != NULL ? json_string(b64) : json_null());
        free(b64);
    }
    return list;
}

void proxy_sio_event(eddy_rt_socket_t *s, const eddy_rt_event_t *ev, void *user_data)
{
    if (p.b == NULL || p.event_url[0] == '\0')
        return; /* as without a handler: ignored */
    json_t *body = socket_object(s);
    json_object_set_new(body, "event", json_string(ev->name));
    /* The argument list is JSON values separated by commas: an array once bracketed. */
    size_t len = ev->args_len + 2;
    char *list = malloc(len + 1);
    json_t *args = NULL;
    if (list != NULL) {
        snprintf(list, len + 1, "[%.*s]", (int)ev->args_len, ev->args);
        args = json_loadb(list, len, 0, NULL);
        free(list);
    }
    json_object_set_new(body, "args", args != NULL ? args : json_array());
    if (ev->nbin > 0)
        json_object_set_new(body, "attachments", attachments(ev));
    sio_request_t *r = malloc(sizeof(*r));
    if (r == NULL) {
        json_decref(body);
        if (ev->ack_id >= 0)
            ack_error(s, ev->ack_id, "backend error", 0);
        return;
    }
    eddy_rt_socket_ref(s);
    *r = (sio_request_t){.s = s, .ack_id = ev->ack_id};
    int rc = post_for_socket(s, p.event_url, body, on_event_answer, r);
    if (rc != 0) {
        if (rc == BACKEND_EBUSY)
            eddy_log(p.srv, EDDY_LOG_WARNING, "proxy: event: %s: busy", p.event_url);
        if (ev->ack_id >= 0)
            ack_error(s, ev->ack_id, failure_text(rc == BACKEND_EBUSY ? BACKEND_EBUSY : -1), 0);
        sio_request_done(r);
    }
}

static void on_join_answer(const backend_result_t *res, void *arg)
{
    sio_request_t *r = arg;
    const char *answer = NULL;
    if (res->error == BACKEND_ECANCELED) {
        p.canceled++;
    } else if (res->error != BACKEND_OK) {
        log_failure("join", p.join_url, res);
        answer = failure_text(res->error);
    } else if (res->status >= 200 && res->status <= 299) {
        answer = eddy_rt_join(r->s, r->room) == 0 ? "" : "failed";
    } else {
        answer = "not allowed";
    }
    if (answer != NULL && r->ack_id >= 0 && answer[0] == '\0')
        eddy_rt_ack_json(r->s, r->ack_id, "{\"ok\":true}");
    else if (answer != NULL && r->ack_id >= 0)
        ack_error(r->s, r->ack_id, answer, 0);
    sio_request_done(r);
}

bool proxy_sio_join(eddy_rt_socket_t *s, const char *room, int64_t ack_id)
{
    if (p.b == NULL || p.join_url[0] == '\0')
        return false;
    size_t room_len = strlen(room);
    sio_request_t *r = malloc(sizeof(*r) + room_len + 1);
    if (r == NULL)
        return false;
    eddy_rt_socket_ref(s);
    r->s = s;
    r->ack_id = ack_id;
    memcpy(r->room, room, room_len + 1);
    json_t *body = socket_object(s);
    json_object_set_new(body, "room", json_string(room));
    int rc = post_for_socket(s, p.join_url, body, on_join_answer, r);
    if (rc != 0) {
        if (rc == BACKEND_EBUSY)
            eddy_log(p.srv, EDDY_LOG_WARNING, "proxy: join: %s: busy", p.join_url);
        if (ack_id >= 0)
            ack_error(s, ack_id, failure_text(rc == BACKEND_EBUSY ? BACKEND_EBUSY : -1), 0);
        sio_request_done(r);
    }
    return true;
}

bool proxy_stats(backend_stats_t *out)
{
    if (p.b == NULL)
        return false;
    backend_stats(p.b, out);
    return true;
}

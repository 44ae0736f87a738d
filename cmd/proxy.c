/* SPDX-License-Identifier: MIT */
/*
 * The backend proxy's connect request ([proxy] in the config): a plain HTTP request to
 * [proxy] path is forwarded as POST JSON {remote, headers, query} to connect_url, and the
 * backend's answer (200 {"user": ...} to accept, 403 ... to refuse) is the client's. The
 * response waits, detached, while the loop goes on (backend.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "backend.h"
#include "cmd.h"

static struct {
    eddy_server_t *srv;
    backend_t *b;
    const char *url;
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
    if (strcmp(key, "connect_url") == 0) {
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
    if (p.url[0] == '\0')
        return 0;
    p.srv = srv;
    p.path = get(cfg, "path", "/connect");
    p.timeout_ms = (long)(atof(get(cfg, "timeout", "1")) * 1000 + 0.5);
    if (p.timeout_ms < 1)
        p.timeout_ms = 1;
    p.b = backend_new(srv, p.url, atoi(get(cfg, "max_requests", "64")),
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

bool proxy_request(eddy_server_t *srv, eddy_request_t *req, eddy_response_t *resp)
{
    if (p.b == NULL || strcmp(eddy_request_path(req), p.path) != 0)
        return false;
    struct str o = {.ok = true};
    eddy_client_info_t info;
    char remote[64] = "";
    if (eddy_client_info(srv, eddy_request_fd(req), &info) == 0)
        snprintf(remote, sizeof(remote), "%s:%d", info.remote_ip, info.remote_port);
    put(&o, "{\"remote\":", 10);
    put_json(&o, remote);
    put(&o, ",\"headers\":{", 12);
    size_t n = eddy_request_header_count(req);
    bool first = true;
    for (size_t i = 0; i < n; i++) {
        const char *name, *value;
        if (eddy_request_header_at(req, i, &name, &value) != 0)
            continue;
        if (!first)
            put(&o, ",", 1);
        first = false;
        put_json(&o, name);
        put(&o, ":", 1);
        put_json(&o, value);
    }
    put(&o, "},\"query\":", 10);
    const char *query = eddy_request_query(req);
    put_json(&o, query != NULL ? query : "");
    put(&o, "}", 1);
    int rc = o.ok ? backend_post_json(p.b, "", o.s, o.len, p.timeout_ms, on_answer, resp) : -1;
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

bool proxy_stats(backend_stats_t *out)
{
    if (p.b == NULL)
        return false;
    backend_stats(p.b, out);
    return true;
}

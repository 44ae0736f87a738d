/* SPDX-License-Identifier: MIT */
/*
 * The daemon's Socket.IO endpoint (realtime.h): the real-time layer on the public listener,
 * configured from [socketio]. The daemon runs no application code, so what a client may do
 * is fixed here: connect to the namespaces the config lists (with a token when [auth] is
 * on), and join or leave the rooms client_rooms allows (none by default). Everything else
 * comes from the server API (cmd/api.c): emits to rooms, users and sockets, joins, kicks.
 *
 * Two small things of our own, each under its own mutex, never held while calling into
 * eddy_rt (its presence callback runs outside its lock, so the order is always eddy_rt
 * first, then ours): the rooms seen per namespace (the layer lists no rooms), and each
 * socket's data from its token.
 */
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "admin.h"
#include "auth.h"
#include "realtime.h"

/* Limits of the daemon's own tables. */
#define ROOM_NAME_MAX     200
#define NAMESPACES_MAX    16
#define ROOM_PATTERNS_MAX 32
#define SETTING_TEXT_MAX  1024
#define ROOM_BUCKETS      4096

typedef struct settings {
    bool enabled;
    char path[256];
    char namespaces[SETTING_TEXT_MAX];
    char client_rooms[SETTING_TEXT_MAX];
    uint32_t ping_interval_ms, ping_timeout_ms, upgrade_timeout_ms, connect_timeout_ms;
    uint32_t recovery_ms;
    size_t max_http_buffer_size;
    bool allow_polling;
    size_t history_size, history_max_bytes;
    double history_ttl;
    char api_key[API_KEY_MAX + 1];
    size_t api_max_body;
} settings_t;

static void settings_init(settings_t *st)
{
    memset(st, 0, sizeof(*st));
    st->enabled = true;
    strcpy(st->path, "/socket.io/");
    strcpy(st->namespaces, "/");
    st->ping_interval_ms = 25000;
    st->ping_timeout_ms = 20000;
    st->upgrade_timeout_ms = 10000;
    st->connect_timeout_ms = 45000;
    st->max_http_buffer_size = 1000000;
    st->allow_polling = true;
    st->history_ttl = 300;
    st->history_max_bytes = 1 << 20;
    st->api_max_body = 65536;
}

static bool parse_bool(const char *value, bool *out)
{
    if (strcmp(value, "true") == 0 || strcmp(value, "on") == 0 || strcmp(value, "yes") == 0 ||
        strcmp(value, "1") == 0)
        *out = true;
    else if (strcmp(value, "false") == 0 || strcmp(value, "off") == 0 || strcmp(value, "no") == 0 ||
             strcmp(value, "0") == 0)
        *out = false;
    else
        return false;
    return true;
}

static bool parse_number(const char *value, double min, double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(value, &end);
    if (errno != 0 || end == value || *end != '\0' || !(v >= min && v <= max))
        return false;
    *out = v;
    return true;
}

/* A comma-separated list: each item trimmed, non-empty, at most max items. */
static bool list_ok(const char *value, size_t max, bool (*item_ok)(const char *, size_t))
{
    size_t n = 0;
    for (const char *p = value; *p != '\0';) {
        while (*p == ' ')
            p++;
        size_t len = strcspn(p, ",");
        size_t trimmed = len;
        while (trimmed > 0 && p[trimmed - 1] == ' ')
            trimmed--;
        if (trimmed == 0 || !item_ok(p, trimmed) || ++n > max)
            return false;
        p += len;
        if (*p == ',')
            p++;
    }
    return true;
}

static bool namespace_ok(const char *s, size_t len)
{
    return s[0] == '/' && len < 128 && memchr(s, ' ', len) == NULL;
}

static bool pattern_ok(const char *s, size_t len)
{
    /* A name, or a prefix ending in '*'; '*' elsewhere would promise more than we match. */
    const char *star = memchr(s, '*', len);
    return len <= ROOM_NAME_MAX && (star == NULL || star == s + len - 1);
}

static int settings_set(settings_t *st, const char *section, const char *key, const char *value,
                        char *why, size_t why_len)
{
    double v;
    size_t len = strlen(value);
    if (strcmp(section, "api") == 0) {
        if (strcmp(key, "key") == 0) {
            if (len != 0 && (len < API_KEY_MIN || len > API_KEY_MAX)) {
                snprintf(why, why_len, "an API key has %d to %d bytes (this one has %zu)",
                         API_KEY_MIN, API_KEY_MAX, len);
                return EDDY_EINVAL;
            }
            memcpy(st->api_key, value, len + 1);
        } else if (strcmp(key, "max_body") == 0) {
            if (!parse_number(value, 64, 16 << 20, &v) || v != (double)(size_t)v) {
                snprintf(why, why_len, "\"%s\" is not a byte count (64-16777216)", value);
                return EDDY_EINVAL;
            }
            st->api_max_body = (size_t)v;
        } else {
            return EDDY_EKEY;
        }
        return 0;
    }
    if (strcmp(section, "socketio") != 0)
        return EDDY_EKEY;
    if (strcmp(key, "enabled") == 0 || strcmp(key, "allow_polling") == 0) {
        if (!parse_bool(value, key[0] == 'e' ? &st->enabled : &st->allow_polling)) {
            snprintf(why, why_len, "\"%s\" is not true or false", value);
            return EDDY_EINVAL;
        }
    } else if (strcmp(key, "path") == 0) {
        if (value[0] != '/' || len >= sizeof(st->path)) {
            snprintf(why, why_len, "\"%s\" does not start with / (or is too long)", value);
            return EDDY_EINVAL;
        }
        memcpy(st->path, value, len + 1);
    } else if (strcmp(key, "namespaces") == 0 || strcmp(key, "client_rooms") == 0) {
        bool ns = key[0] == 'n';
        if (len >= SETTING_TEXT_MAX ||
            !list_ok(value, ns ? NAMESPACES_MAX : ROOM_PATTERNS_MAX,
                     ns ? namespace_ok : pattern_ok) ||
            (ns && len == 0)) {
            snprintf(why, why_len,
                     ns ? "\"%s\" is not a list of namespaces (/name, comma-separated, at most %d)"
                        : "\"%s\" is not a list of rooms (names or prefix*, at most %d)",
                     value, ns ? NAMESPACES_MAX : ROOM_PATTERNS_MAX);
            return EDDY_EINVAL;
        }
        memcpy(ns ? st->namespaces : st->client_rooms, value, len + 1);
    } else if (strcmp(key, "ping_interval") == 0 || strcmp(key, "ping_timeout") == 0 ||
               strcmp(key, "upgrade_timeout") == 0 || strcmp(key, "connect_timeout") == 0) {
        if (!parse_number(value, 0.001, 3600, &v)) {
            snprintf(why, why_len, "\"%s\" is not a number of seconds (0.001-3600)", value);
            return EDDY_EINVAL;
        }
        uint32_t ms = (uint32_t)(v * 1000 + 0.5);
        *(key[0] == 'p' && key[5] == 'i' ? &st->ping_interval_ms
          : key[0] == 'p'                ? &st->ping_timeout_ms
          : key[0] == 'u'                ? &st->upgrade_timeout_ms
                                         : &st->connect_timeout_ms) = ms;
    } else if (strcmp(key, "recovery_max_disconnection") == 0) {
        if (!parse_number(value, 0, 86400, &v)) {
            snprintf(why, why_len, "\"%s\" is not a number of seconds (0-86400; 0: off)", value);
            return EDDY_EINVAL;
        }
        st->recovery_ms = (uint32_t)(v * 1000 + 0.5);
    } else if (strcmp(key, "max_http_buffer_size") == 0) {
        if (!parse_number(value, 1024, 1 << 30, &v) || v != (double)(size_t)v) {
            snprintf(why, why_len, "\"%s\" is not a byte count (1024-1073741824)", value);
            return EDDY_EINVAL;
        }
        st->max_http_buffer_size = (size_t)v;
    } else if (strcmp(key, "history_size") == 0) {
        if (!parse_number(value, 0, 10000, &v) || v != (double)(size_t)v) {
            snprintf(why, why_len, "\"%s\" is not a count (0-10000; 0: no history)", value);
            return EDDY_EINVAL;
        }
        st->history_size = (size_t)v;
    } else if (strcmp(key, "history_max_bytes") == 0) {
        if (!parse_number(value, 1024, 1 << 30, &v) || v != (double)(size_t)v) {
            snprintf(why, why_len, "\"%s\" is not a byte count (1024-1073741824)", value);
            return EDDY_EINVAL;
        }
        st->history_max_bytes = (size_t)v;
    } else if (strcmp(key, "history_ttl") == 0) {
        if (!parse_number(value, 1, 30 * 86400, &v)) {
            snprintf(why, why_len, "\"%s\" is not a number of seconds (1-2592000)", value);
            return EDDY_EINVAL;
        }
        st->history_ttl = v;
    } else {
        return EDDY_EKEY;
    }
    return 0;
}

int realtime_check_key(const char *section, const char *key, const char *value, char *why,
                       size_t why_len)
{
    settings_t scratch;
    settings_init(&scratch);
    int rc = settings_set(&scratch, section, key, value, why, why_len);
    memset(scratch.api_key, 0, sizeof(scratch.api_key));
    return rc;
}

/* ---- the rooms table ---- */

typedef struct room_rec {
    struct room_rec *next;
    const eddy_rt_nsp_t *nsp;
    long members; /* joins minus leaves seen by the presence callback */
    char name[];
} room_rec_t;

static struct {
    settings_t st;
    eddy_rt_t *rt;
    eddy_rt_nsp_t *nsps[NAMESPACES_MAX];
    size_t nnsps;
    char query_param[AUTH_PARAM_MAX + 1];
    pthread_mutex_t rooms_lock;
    room_rec_t *buckets[ROOM_BUCKETS];
    pthread_mutex_t data_lock; /* socket data: freed at disconnect, read by the API */
} R = {.rooms_lock = PTHREAD_MUTEX_INITIALIZER, .data_lock = PTHREAD_MUTEX_INITIALIZER};

static size_t room_bucket(const eddy_rt_nsp_t *nsp, const char *name)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)(uintptr_t)nsp;
    for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++)
        h = (h ^ *p) * 1099511628211ull;
    return (size_t)(h % ROOM_BUCKETS);
}

/* The record of room, created when create; NULL if absent or out of memory. Under the lock. */
static room_rec_t *room_get(const eddy_rt_nsp_t *nsp, const char *name, bool create)
{
    size_t b = room_bucket(nsp, name);
    for (room_rec_t *r = R.buckets[b]; r != NULL; r = r->next)
        if (r->nsp == nsp && strcmp(r->name, name) == 0)
            return r;
    if (!create)
        return NULL;
    size_t len = strlen(name);
    room_rec_t *r = calloc(1, sizeof(*r) + len + 1);
    if (r == NULL)
        return NULL;
    r->nsp = nsp;
    memcpy(r->name, name, len + 1);
    r->next = R.buckets[b];
    R.buckets[b] = r;
    return r;
}

/* Frees the record once it has no member. Under the lock. */
static void room_trim(room_rec_t *r)
{
    if (r->members > 0)
        return;
    room_rec_t **link = &R.buckets[room_bucket(r->nsp, r->name)];
    while (*link != r)
        link = &(*link)->next;
    *link = r->next;
    free(r);
}

size_t realtime_rooms(const eddy_rt_nsp_t *nsp, void (*visit)(const char *room, void *arg),
                      void *arg)
{
    size_t n = 0;
    pthread_mutex_lock(&R.rooms_lock);
    for (size_t b = 0; b < ROOM_BUCKETS; b++) {
        for (room_rec_t *r = R.buckets[b]; r != NULL; r = r->next) {
            if (r->nsp == nsp) {
                visit(r->name, arg);
                n++;
            }
        }
    }
    pthread_mutex_unlock(&R.rooms_lock);
    return n;
}

static void rooms_free(void)
{
    for (size_t b = 0; b < ROOM_BUCKETS; b++) {
        for (room_rec_t *r = R.buckets[b], *next; r != NULL; r = next) {
            next = r->next;
            free(r);
        }
        R.buckets[b] = NULL;
    }
}

/* ---- the namespaces' callbacks ---- */

/* A socket's data (eddy_rt_socket_set_data): from its token, freed at disconnect. */
typedef struct sock_info {
    char *data;  /* the info or data claim, compact JSON, or NULL */
    char *rooms; /* the rooms claim until the socket joined them, or NULL */
} sock_info_t;

static void on_presence(eddy_rt_socket_t *s, const char *room, bool joined, void *user_data)
{
    if (strlen(room) > ROOM_NAME_MAX) /* joins come through join_allowed or the API */
        return;
    pthread_mutex_lock(&R.rooms_lock);
    room_rec_t *r = room_get(eddy_rt_socket_nsp(s), room, joined);
    if (r != NULL) {
        r->members += joined ? 1 : -1;
        if (r->members < 0) /* a leave reported before its join, from another thread */
            r->members = 0;
        room_trim(r);
    }
    pthread_mutex_unlock(&R.rooms_lock);
}

/* The token a client presents: its auth payload's "token", else the handshake's query
 * parameter, else its Authorization: Bearer header. Copied into buf; NULL if none. */
static const char *client_token(eddy_rt_socket_t *s, char *buf, size_t cap)
{
    size_t auth_len;
    const char *auth = eddy_rt_socket_auth(s, &auth_len), *val;
    size_t len;
    if (auth != NULL &&
        eddy_rt_json_member(auth, auth_len, "token", &val, &len) == EDDY_RT_JSON_STRING) {
        /* A JWT is base64url and dots: no JSON escape can be part of a valid one. */
        if (len < 2 || len - 2 >= cap || memchr(val, '\\', len) != NULL)
            return "\\invalid"; /* checked, and refused, like any malformed token */
        memcpy(buf, val + 1, len - 2);
        buf[len - 2] = '\0';
        return buf;
    }
    const char *q = eddy_rt_socket_query(s, R.query_param);
    if (q != NULL && q[0] != '\0')
        return q;
    const char *h = eddy_rt_socket_header(s, "Authorization");
    if (h != NULL && strncasecmp(h, "Bearer ", 7) == 0) {
        h += 7;
        while (*h == ' ')
            h++;
        return h;
    }
    return NULL;
}

static int on_connect(eddy_rt_socket_t *s, void *user_data)
{
    eddy_server_t *srv = eddy_rt_server(R.rt);
    char buf[AUTH_TOKEN_MAX + 2];
    const char *token = client_token(s, buf, sizeof(buf));
    auth_result_t res;
    int status = auth_check_live(token, &res);
    const char *nsp = eddy_rt_nsp_name(eddy_rt_socket_nsp(s));
    if (status != 0) {
        eddy_log(srv, EDDY_LOG_NOTICE, "socketio: refused %s on %s: %d %s",
                 eddy_rt_socket_remote_ip(s), nsp, status, res.reason);
        metrics_connect_refused(status);
        char message[160], data[192];
        if (status == 401 && token == NULL)
            snprintf(message, sizeof(message), "authentication required");
        else
            snprintf(message, sizeof(message), "%s: %s",
                     status == 401 ? "invalid token" : "forbidden", res.reason);
        snprintf(data, sizeof(data), "{\"status\":%d,\"reason\":\"%s\"}", status, res.reason);
        auth_result_free(&res);
        return eddy_rt_refuse(s, message, data);
    }
    if (res.authenticated && res.user[0] != '\0' && eddy_rt_socket_set_user(s, res.user) < 0) {
        auth_result_free(&res);
        return eddy_rt_refuse(s, "server error", NULL);
    }
    if (res.data != NULL || res.rooms != NULL) {
        sock_info_t *info = malloc(sizeof(*info));
        if (info == NULL) {
            auth_result_free(&res);
            return eddy_rt_refuse(s, "server error", NULL);
        }
        *info = (sock_info_t){res.data, res.rooms}; /* ours now: freed at disconnect */
        res.data = res.rooms = NULL;
        pthread_mutex_lock(&R.data_lock);
        eddy_rt_socket_set_data(s, info);
        pthread_mutex_unlock(&R.data_lock);
    }
    eddy_log(srv, EDDY_LOG_DEBUG, "socketio: %s connected to %s as %s%s%s", eddy_rt_socket_id(s),
             nsp, res.authenticated ? "user \"" : "anonymous", res.authenticated ? res.user : "",
             res.authenticated ? "\"" : "");
    auth_result_free(&res);
    return 0;
}

/* The token's rooms claim: the socket joins them as it connects (server-side, as
 * Centrifugo's channels claim), whatever client_rooms says. */
static void on_connection(eddy_rt_socket_t *s, void *user_data)
{
    pthread_mutex_lock(&R.data_lock);
    sock_info_t *info = eddy_rt_socket_data(s);
    char *rooms = info != NULL ? info->rooms : NULL;
    if (info != NULL)
        info->rooms = NULL;
    pthread_mutex_unlock(&R.data_lock);
    json_t *list = rooms != NULL ? json_loads(rooms, 0, NULL) : NULL;
    size_t i;
    json_t *room;
    json_array_foreach(list, i, room)
    {
        int rc = eddy_rt_join(s, json_string_value(room));
        if (rc < 0)
            eddy_log(eddy_rt_server(R.rt), EDDY_LOG_WARNING,
                     "socketio: %s could not join a room of its token: %s", eddy_rt_socket_id(s),
                     eddy_strerror(rc));
    }
    json_decref(list);
    free(rooms);
}

static void on_disconnect(eddy_rt_socket_t *s, const char *reason, void *user_data)
{
    pthread_mutex_lock(&R.data_lock);
    sock_info_t *info = eddy_rt_socket_data(s);
    eddy_rt_socket_set_data(s, NULL);
    pthread_mutex_unlock(&R.data_lock);
    if (info != NULL) {
        free(info->data);
        free(info->rooms);
        free(info);
    }
}

char *realtime_socket_data(eddy_rt_socket_t *s)
{
    pthread_mutex_lock(&R.data_lock);
    const sock_info_t *info = eddy_rt_socket_data(s);
    char *copy = info != NULL && info->data != NULL ? strdup(info->data) : NULL;
    pthread_mutex_unlock(&R.data_lock);
    return copy;
}

/* client_rooms: exact names, or prefixes ending in '*'. */
static bool join_allowed(const char *room)
{
    size_t room_len = strlen(room);
    if (room_len == 0 || room_len > ROOM_NAME_MAX)
        return false;
    for (const char *p = R.st.client_rooms; *p != '\0';) {
        while (*p == ' ')
            p++;
        size_t len = strcspn(p, ",");
        size_t item = len;
        while (item > 0 && p[item - 1] == ' ')
            item--;
        if (item > 0 && p[item - 1] == '*' ? strncmp(room, p, item - 1) == 0
                                           : item == room_len && strncmp(room, p, item) == 0)
            return true;
        p += len;
        if (*p == ',')
            p++;
    }
    return false;
}

/* join(room[, ack]) and leave(room[, ack]): the ack gets {"ok":true} or {"error":why}. */
static void on_join_leave(eddy_rt_socket_t *s, const eddy_rt_event_t *ev, void *user_data)
{
    bool join = user_data != NULL;
    char room[ROOM_NAME_MAX + 1];
    const char *answer = "{\"ok\":true}";
    if (eddy_rt_arg_string(ev, 0, room, sizeof(room)) < 0)
        answer = "{\"error\":\"the first argument must be a room name (a string)\"}";
    else if (!join_allowed(room))
        answer = "{\"error\":\"not allowed\"}";
    else if ((join ? eddy_rt_join(s, room) : eddy_rt_leave(s, room)) < 0)
        answer = "{\"error\":\"failed\"}";
    if (ev->ack_id >= 0)
        eddy_rt_ack_json(s, ev->ack_id, answer);
}

/* ---- lifecycle and dispatch ---- */

int realtime_setup(eddy_server_t *srv, const cfg_t *cfg)
{
    settings_init(&R.st);
    for (size_t i = 0; i < cfg->entry_count; i++) {
        const cfg_entry_t *e = &cfg->entries[i];
        char why[160];
        if ((strcmp(e->section, "socketio") == 0 || strcmp(e->section, "api") == 0) &&
            settings_set(&R.st, e->section, e->key, e->value, why, sizeof(why)) != 0) {
            fprintf(stderr, "eddy: [%s] %s: %s\n", e->section, e->key, why);
            return -1;
        }
    }
    const char *param = cfg_get(cfg, "auth", "query_param");
    snprintf(R.query_param, sizeof(R.query_param), "%s", param != NULL ? param : "token");
    if (!R.st.enabled)
        return 0;
    eddy_rt_options_t opts;
    eddy_rt_options_init(&opts);
    opts.path = R.st.path;
    opts.ping_interval_ms = R.st.ping_interval_ms;
    opts.ping_timeout_ms = R.st.ping_timeout_ms;
    opts.upgrade_timeout_ms = R.st.upgrade_timeout_ms;
    opts.connect_timeout_ms = R.st.connect_timeout_ms;
    opts.max_http_buffer_size = R.st.max_http_buffer_size;
    opts.allow_polling = R.st.allow_polling;
    opts.recovery_max_disconnection_ms = R.st.recovery_ms;
    opts.history_max_messages = R.st.history_size;
    opts.history_max_bytes = R.st.history_max_bytes;
    opts.history_max_age_ms = (uint32_t)(R.st.history_ttl * 1000 + 0.5);
    R.rt = eddy_rt_new(srv, &opts);
    if (R.rt == NULL) {
        fprintf(stderr, "eddy: [socketio]: cannot create the real-time layer\n");
        return -1;
    }
    eddy_rt_handlers_t h = {.connect = on_connect,
                            .connection = on_connection,
                            .disconnect = on_disconnect,
                            .presence = on_presence};
    for (const char *p = R.st.namespaces; *p != '\0' && R.nnsps < NAMESPACES_MAX;) {
        while (*p == ' ')
            p++;
        size_t len = strcspn(p, ","), item = len;
        while (item > 0 && p[item - 1] == ' ')
            item--;
        char name[128];
        snprintf(name, sizeof(name), "%.*s", (int)item, p);
        eddy_rt_nsp_t *nsp = eddy_rt_of(R.rt, name);
        if (nsp == NULL || eddy_rt_on(nsp, "join", on_join_leave, (void *)1) < 0 ||
            eddy_rt_on(nsp, "leave", on_join_leave, NULL) < 0) {
            fprintf(stderr, "eddy: [socketio] namespaces: cannot create %s\n", name);
            return -1;
        }
        eddy_rt_nsp_set_handlers(nsp, &h);
        R.nsps[R.nnsps++] = nsp;
        p += len;
        if (*p == ',')
            p++;
    }
    eddy_log(srv, EDDY_LOG_INFO, "socketio: %s (namespaces %s; clients may join %s)%s", R.st.path,
             R.st.namespaces, R.st.client_rooms[0] != '\0' ? R.st.client_rooms : "no room",
             R.st.api_key[0] != '\0' ? "; server API on /api/" : "");
    return 0;
}

void realtime_free(void)
{
    if (R.rt != NULL)
        eddy_rt_free(R.rt);
    R.rt = NULL;
    R.nnsps = 0;
    pthread_mutex_lock(&R.rooms_lock);
    rooms_free();
    pthread_mutex_unlock(&R.rooms_lock);
    memset(R.st.api_key, 0, sizeof(R.st.api_key));
}

bool realtime_request(eddy_request_t *req, eddy_response_t *resp)
{
    return R.rt != NULL && eddy_rt_handle_request(R.rt, req, resp);
}

bool realtime_upgrade(eddy_request_t *req, int *status)
{
    return R.rt != NULL && eddy_rt_handle_upgrade(R.rt, req, status);
}

bool realtime_open(eddy_request_t *req)
{
    return R.rt != NULL && eddy_rt_handle_open(R.rt, req);
}

bool realtime_message(const eddy_frame_t *frame)
{
    return R.rt != NULL && eddy_rt_handle_message(R.rt, frame);
}

bool realtime_close(eddy_fd_t fd)
{
    return R.rt != NULL && eddy_rt_handle_close(R.rt, fd);
}

eddy_rt_t *realtime_rt(void)
{
    return R.rt;
}

eddy_rt_nsp_t *realtime_nsp(const char *name)
{
    for (size_t i = 0; i < R.nnsps; i++)
        if (strcmp(eddy_rt_nsp_name(R.nsps[i]), name) == 0)
            return R.nsps[i];
    return NULL;
}

eddy_rt_nsp_t *realtime_nsp_at(size_t i)
{
    return i < R.nnsps ? R.nsps[i] : NULL;
}

const char *realtime_api_key(void)
{
    return R.st.api_key;
}

size_t realtime_api_max_body(void)
{
    return R.st.api_max_body;
}

/* SPDX-License-Identifier: MIT */
/*
 * The daemon's Socket.IO endpoint (realtime.h): the real-time layer on the public listener,
 * configured from [socketio]. The daemon runs no application code, so what a client may do
 * is fixed here: connect to the namespaces the config lists (with a token when [auth] is
 * on), join or leave the rooms client_rooms allows, publish to the client_publish rooms
 * they are in, see who is in the client_presence rooms (none by default). Everything else
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
#include <stdatomic.h>
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
/* Client permissions: at most this many events of history in a join's answer, sockets in
 * a presence answer, and bytes of a self-given name. */
#define HISTORY_ON_JOIN_MAX 1000
#define PRESENCE_MAX        1000
#define CLIENT_NAME_MAX     64

typedef struct settings {
    bool enabled;
    char path[256];
    char namespaces[SETTING_TEXT_MAX];
    char client_rooms[SETTING_TEXT_MAX];
    char client_publish[SETTING_TEXT_MAX];  /* rooms whose members may publish to them */
    char client_presence[SETTING_TEXT_MAX]; /* rooms whose members see who else is in them */
    bool client_names;                      /* anonymous sockets may name themselves */
    size_t history_on_join;                 /* events of a room in the join ack */
    uint32_t ping_interval_ms, ping_timeout_ms, upgrade_timeout_ms, connect_timeout_ms;
    uint32_t recovery_ms;
    size_t max_http_buffer_size;
    bool allow_polling;
    size_t history_size, history_max_bytes;
    double history_ttl;
    char api_key[API_KEY_MAX + 1];
    size_t api_max_body;
    char redis_url[SETTING_TEXT_MAX]; /* [broker]: empty, one node */
    char redis_prefix[64];
    char node_id[65];
    char emitter_prefix[64]; /* empty: Socket.IO's Redis emitter not listened to */
    uint32_t heartbeat_interval_ms, heartbeat_timeout_ms; /* 0: the layer's defaults */
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
    strcpy(st->redis_prefix, "eddy:");
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

/* The client permission keys (client_publish, client_presence, client_names) and
 * history_on_join. */
static int permission_set(settings_t *st, const char *key, const char *value, char *why,
                          size_t why_len)
{
    double v;
    size_t len = strlen(value);
    if (strcmp(key, "client_names") == 0) {
        if (!parse_bool(value, &st->client_names)) {
            snprintf(why, why_len, "\"%s\" is not true or false", value);
            return EDDY_EINVAL;
        }
    } else if (strcmp(key, "history_on_join") == 0) {
        if (!parse_number(value, 0, HISTORY_ON_JOIN_MAX, &v) || v != (double)(size_t)v) {
            snprintf(why, why_len, "\"%s\" is not a count (0-%d; 0: none)", value,
                     HISTORY_ON_JOIN_MAX);
            return EDDY_EINVAL;
        }
        st->history_on_join = (size_t)v;
    } else {
        if (len >= SETTING_TEXT_MAX || !list_ok(value, ROOM_PATTERNS_MAX, pattern_ok)) {
            snprintf(why, why_len, "\"%s\" is not a list of rooms (names or prefix*, at most %d)",
                     value, ROOM_PATTERNS_MAX);
            return EDDY_EINVAL;
        }
        memcpy(strcmp(key, "client_publish") == 0 ? st->client_publish : st->client_presence, value,
               len + 1);
    }
    return 0;
}

/* A name of Redis keys and channels: letters, digits and "_-.:" (no braces: the layer's
 * keys put the namespace in a hash tag). */
static bool redis_name_ok(const char *value, size_t max)
{
    size_t len = strlen(value);
    return len >= 1 && len <= max &&
           strspn(value, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                         "0123456789_-.:") == len;
}

/* [broker]: the Redis every node of the application shares (eddy_rt_options_t). */
/* True if value is one Redis URL or several separated by commas (shards): each starts with
 * redis://, rediss:// (TLS), redis+sentinel:// or rediss+sentinel:// (whose sentinels are
 * separated by commas too), or redis+cluster:// or rediss+cluster:// (TLS; its seeds too);
 * the layer checks the rest
 * when it starts. */
static bool redis_urls_valid(const char *value)
{
    static const char *const schemes[] = {"redis://",          "rediss://",
                                          "redis+sentinel://", "rediss+sentinel://",
                                          "redis+cluster://",  "rediss+cluster://"};
    bool sentinel = false;
    for (const char *p = value;; p++) {
        size_t i = 0;
        while (i < 6 && strncmp(p, schemes[i], strlen(schemes[i])) != 0)
            i++;
        if (i < 6) {
            p += strlen(schemes[i]);
            sentinel = i >= 2; /* commas separate sentinels and cluster seeds */
        } else if (!sentinel) {
            return false;
        }
        if (*p == '\0' || *p == ',')
            return false;
        if ((p = strchr(p, ',')) == NULL)
            return true;
    }
}

static int broker_set(settings_t *st, const char *key, const char *value, char *why, size_t why_len)
{
    size_t len = strlen(value);
    if (strcmp(key, "redis_url") == 0) {
        if (len != 0 && (!redis_urls_valid(value) || len >= sizeof(st->redis_url))) {
            /* Not quoted: the URL may carry a password. */
            snprintf(why, why_len,
                     "the value is not redis://[:password@]host[:port][/db] or "
                     "redis+sentinel://[:password@]host[:port][,host[:port]...]/master[/db] "
                     "(rediss:// and rediss+sentinel:// over TLS; several: separated by "
                     "commas) or redis+cluster://[:password@]host[:port][,host[:port]...] "
                     "(rediss+cluster:// over TLS)");
            return EDDY_EINVAL;
        }
        memcpy(st->redis_url, value, len + 1);
    } else if (strcmp(key, "redis_prefix") == 0 || strcmp(key, "node_id") == 0 ||
               strcmp(key, "emitter_prefix") == 0) {
        char *field = key[0] == 'r'   ? st->redis_prefix
                      : key[0] == 'n' ? st->node_id
                                      : st->emitter_prefix;
        size_t max = key[0] == 'n' ? sizeof(st->node_id) - 1 : sizeof(st->redis_prefix) - 1;
        /* Empty: the default (a random node id, no emitter); a prefix cannot be empty. */
        if ((len > 0 || key[0] == 'r') && !redis_name_ok(value, max)) {
            snprintf(why, why_len, "\"%s\" is not 1-%zu of A-Z a-z 0-9 _ - . :", value, max);
            return EDDY_EINVAL;
        }
        memcpy(field, value, len + 1);
    } else if (strcmp(key, "heartbeat_interval") == 0 || strcmp(key, "heartbeat_timeout") == 0) {
        /* 0: the default (1 s; the timeout three intervals). The bounds are eddy_rt_new()'s. */
        bool interval = key[10] == 'i';
        double v,
            min = (interval ? EDDY_RT_HEARTBEAT_MIN_MS : 2 * EDDY_RT_HEARTBEAT_MIN_MS) / 1e3,
            max = (interval ? EDDY_RT_HEARTBEAT_MAX_MS : EDDY_RT_HEARTBEAT_TIMEOUT_MAX_MS) / 1e3;
        if (!parse_number(value, 0, max, &v) || (v != 0 && v < min)) {
            snprintf(why, why_len, "\"%s\" is not a number of seconds (%g-%g; 0: the default)",
                     value, min, max);
            return EDDY_EINVAL;
        }
        *(interval ? &st->heartbeat_interval_ms : &st->heartbeat_timeout_ms) =
            (uint32_t)(v * 1000 + 0.5);
    } else {
        return EDDY_EKEY;
    }
    return 0;
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
    if (strcmp(section, "broker") == 0)
        return broker_set(st, key, value, why, why_len);
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
    } else if (strcmp(key, "client_publish") == 0 || strcmp(key, "client_presence") == 0 ||
               strcmp(key, "client_names") == 0 || strcmp(key, "history_on_join") == 0) {
        return permission_set(st, key, value, why, why_len);
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

bool realtime_section(const char *section)
{
    return strcmp(section, "socketio") == 0 || strcmp(section, "api") == 0 ||
           strcmp(section, "broker") == 0;
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

/* What keys valid one by one cannot be together, or NULL. */
static const char *settings_conflict(const settings_t *st)
{
    if (st->enabled && st->history_on_join > 0 && st->history_size == 0 && st->recovery_ms == 0)
        return "[socketio] history_on_join needs history_size (or recovery_max_disconnection): "
               "no history is kept";
    uint32_t beat =
        st->heartbeat_interval_ms ? st->heartbeat_interval_ms : EDDY_RT_HEARTBEAT_INTERVAL_MS;
    if (st->heartbeat_timeout_ms != 0 && st->heartbeat_timeout_ms / 2 < beat)
        return "[broker] heartbeat_timeout must be at least twice heartbeat_interval (1 s by "
               "default): a lease outlives one late renewal";
    return NULL;
}

int realtime_check(const cfg_t *cfg, char *why, size_t why_len)
{
    settings_t *st = malloc(sizeof(*st));
    if (st == NULL) {
        snprintf(why, why_len, "out of memory");
        return EDDY_ENOMEM;
    }
    settings_init(st);
    char ignored[160];
    for (size_t i = 0; i < cfg->entry_count; i++) {
        const cfg_entry_t *e = &cfg->entries[i];
        if (realtime_section(e->section)) /* each checked already by realtime_check_key() */
            settings_set(st, e->section, e->key, e->value, ignored, sizeof(ignored));
    }
    const char *conflict = settings_conflict(st);
    memset(st->api_key, 0, sizeof(st->api_key));
    free(st);
    if (conflict == NULL)
        return 0;
    snprintf(why, why_len, "%s", conflict);
    return EDDY_EINVAL;
}

/* ---- the rooms table ---- */

typedef struct room_rec {
    struct room_rec *next;
    const eddy_rt_nsp_t *nsp;
    long members; /* joins minus leaves seen by the presence callback */
    char name[];
} room_rec_t;

/* What a reload changes (realtime_reload()), published whole by pointer as serve.c's set:
 * a loop reads the old set or the new one, never a mix; replaced sets stay until
 * realtime_free() (a loop may still read one; reloads are rare). */
typedef struct rt_live {
    struct rt_live *retired;
    char client_rooms[SETTING_TEXT_MAX];
    char api_key[API_KEY_MAX + 1];
    size_t api_max_body;
} rt_live_t;

static struct {
    settings_t st;
    _Atomic(rt_live_t *) live;
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

/* Client permissions (publish, presence, names; below). */
static void announce_presence(eddy_rt_socket_t *s, const char *room, bool joined);
static bool client_name_refused(eddy_rt_socket_t *s, auth_result_t *res);
static void recovered_presence(eddy_rt_socket_t *s);

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
    announce_presence(s, room, joined);
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
    if (R.st.client_names && res.data == NULL && res.user[0] == '\0' &&
        client_name_refused(s, &res))
        return eddy_rt_refuse(s, "invalid name", "{\"reason\":\"1 to 64 bytes of text\"}");
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
    return proxy_sio_connect(s);
}

/* The token's rooms claim: the socket joins them as it connects (server-side, as
 * Centrifugo's channels claim), whatever client_rooms says. */
static void on_connection(eddy_rt_socket_t *s, void *user_data)
{
    if (eddy_rt_socket_recovered(s))
        recovered_presence(s);
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
    realtime_socket_release(s);
}

void realtime_socket_release(eddy_rt_socket_t *s)
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

int realtime_socket_set_data(eddy_rt_socket_t *s, char *data)
{
    pthread_mutex_lock(&R.data_lock);
    sock_info_t *info = eddy_rt_socket_data(s);
    if (info == NULL && (info = calloc(1, sizeof(*info))) != NULL)
        eddy_rt_socket_set_data(s, info);
    if (info != NULL) {
        free(info->data);
        info->data = data;
    }
    pthread_mutex_unlock(&R.data_lock);
    if (info == NULL)
        free(data);
    return info != NULL ? 0 : -1;
}

char *realtime_socket_data(eddy_rt_socket_t *s)
{
    pthread_mutex_lock(&R.data_lock);
    const sock_info_t *info = eddy_rt_socket_data(s);
    char *copy = info != NULL && info->data != NULL ? strdup(info->data) : NULL;
    pthread_mutex_unlock(&R.data_lock);
    return copy;
}

/* ---- what a reload changes ---- */

static rt_live_t *live(void)
{
    return atomic_load_explicit(&R.live, memory_order_acquire);
}

/* Publishes st's live keys (on top of the set in force); false: out of memory. */
static bool live_publish(const settings_t *st)
{
    rt_live_t *lv = calloc(1, sizeof(*lv));
    if (lv == NULL)
        return false;
    memcpy(lv->client_rooms, st->client_rooms, sizeof(lv->client_rooms));
    memcpy(lv->api_key, st->api_key, sizeof(lv->api_key));
    lv->api_max_body = st->api_max_body;
    lv->retired = live();
    atomic_store_explicit(&R.live, lv, memory_order_release);
    return true;
}

void realtime_reload(eddy_server_t *srv, const cfg_t *next)
{
    settings_t st;
    settings_init(&st);
    for (size_t i = 0; i < next->entry_count; i++) {
        const cfg_entry_t *e = &next->entries[i];
        char why[160];
        if (realtime_section(e->section))
            settings_set(&st, e->section, e->key, e->value, why, sizeof(why)); /* checked */
    }
    const rt_live_t *cur = live();
    if (cur == NULL) /* not set up */
        return;
    bool rooms = strcmp(cur->client_rooms, st.client_rooms) != 0;
    bool key = strcmp(cur->api_key, st.api_key) != 0;
    bool body = cur->api_max_body != st.api_max_body;
    if ((rooms || key || body) && !live_publish(&st)) {
        eddy_log(srv, EDDY_LOG_ERROR,
                 "reload: out of memory; [socketio] client_rooms and [api] "
                 "keep their values");
        rooms = key = body = false;
    }
    if (rooms)
        eddy_log(srv, EDDY_LOG_NOTICE, "reload: [socketio] client_rooms %s (for the next join)",
                 st.client_rooms[0] != '\0' ? st.client_rooms : "(none)");
    if (key) /* never the key itself */
        eddy_log(srv, EDDY_LOG_NOTICE, "reload: [api] key applied%s",
                 st.api_key[0] == '\0' ? " (none: the server API is off)" : "");
    if (body)
        eddy_log(srv, EDDY_LOG_NOTICE, "reload: [api] max_body %zu", st.api_max_body);
    memset(st.api_key, 0, sizeof(st.api_key));
}

/* Whether room is one of patterns (client_rooms' form): exact names, or prefixes ending in '*'. */
static bool room_matches(const char *patterns, const char *room)
{
    size_t room_len = strlen(room);
    if (room_len == 0 || room_len > ROOM_NAME_MAX)
        return false;
    for (const char *p = patterns; *p != '\0';) {
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

/* client_rooms is live: eddy reload may change it. */
static bool join_allowed(const char *room)
{
    return room_matches(live()->client_rooms, room);
}

/* ---- client permissions: publish, presence, history on join, self-given names ----
 *
 * What a chat needs from a daemon that runs no application code, each off unless [socketio]
 * names the rooms: members of a client_publish room may publish to it (the daemon adds who
 * sent it; a client cannot claim another identity), members of a client_presence room see
 * who else is in it (asked, with their join, and as joined/left events), and a join's answer
 * carries the room's last history_on_join events. */

/* Answers are built as text: a stack buffer first, the heap beyond it. */
typedef struct text {
    char *p;
    size_t len, cap;
    bool heap, failed;
} text_t;

static void text_init(text_t *t, char *stack, size_t cap)
{
    *t = (text_t){.p = stack, .cap = cap};
    t->p[0] = '\0';
}

static void text_add(text_t *t, const char *s, size_t n)
{
    if (t->failed)
        return;
    if (t->len + n + 1 > t->cap) {
        size_t cap = (t->len + n + 1) * 2;
        char *p = t->heap ? realloc(t->p, cap) : malloc(cap);
        if (p == NULL) {
            t->failed = true;
            return;
        }
        if (!t->heap)
            memcpy(p, t->p, t->len + 1);
        t->p = p;
        t->cap = cap;
        t->heap = true;
    }
    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = '\0';
}

static void text_str(text_t *t, const char *s)
{
    text_add(t, s, strlen(s));
}

/* s (UTF-8) as a JSON string. */
static void text_json_string(text_t *t, const char *s)
{
    text_add(t, "\"", 1);
    for (const char *p = s; *p != '\0';) {
        size_t plain = strcspn(p, "\"\\\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e"
                                  "\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c"
                                  "\x1d\x1e\x1f");
        text_add(t, p, plain);
        p += plain;
        if (*p != '\0') {
            char esc[8];
            snprintf(esc, sizeof(esc), "\\u%04x", (unsigned char)*p++);
            text_add(t, esc, 6);
        }
    }
    text_add(t, "\"", 1);
}

static void text_free(text_t *t)
{
    if (t->heap)
        free(t->p);
}

/* Who s is, as the server knows it: the members "id", "user" (null when anonymous) and "data"
 * (its token's data, or the name it gave; null) of a JSON object. From s's own callbacks
 * (nothing changes its data meanwhile) or under data_lock. */
static void text_identity(text_t *t, eddy_rt_socket_t *s)
{
    const sock_info_t *info = eddy_rt_socket_data(s);
    const char *user = eddy_rt_socket_user(s);
    text_str(t, "\"id\":\"");
    text_str(t, eddy_rt_socket_id(s));
    text_str(t, "\",\"user\":");
    if (user != NULL)
        text_json_string(t, user);
    else
        text_str(t, "null");
    text_str(t, ",\"data\":");
    text_str(t, info != NULL && info->data != NULL ? info->data : "null");
}

typedef struct room_probe {
    const char *room;
    bool found;
} room_probe_t;

static bool probe_room(const char *room, void *arg)
{
    room_probe_t *probe = arg;
    probe->found = strcmp(room, probe->room) == 0;
    return !probe->found;
}

/* Whether s is in room (one short lock on the layer's tables). */
static bool socket_in(eddy_rt_socket_t *s, const char *room)
{
    room_probe_t probe = {room, false};
    eddy_rt_socket_rooms(s, probe_room, &probe);
    return probe.found;
}

/* The daemon's own presence events, left out of a join's history. */
static bool presence_event(const eddy_rt_event_t *ev)
{
    return strcmp(ev->name, "joined") == 0 || strcmp(ev->name, "left") == 0;
}

static void ack_text(eddy_rt_socket_t *s, int64_t ack_id, text_t *t)
{
    eddy_rt_ack_json(s, ack_id, t->failed ? "{\"error\":\"out of memory\"}" : t->p);
    text_free(t);
}

/* An answer that waits for the cluster (README "Scale-out"): a join's (presence and
 * history) or a presence query's. Its parts come from eddy_rt_room_presence() and
 * eddy_rt_room_recent(), on the layer's broker thread with [broker] (on the calling thread
 * before they return on one node); the ack goes when the last one came. */
typedef struct late_ack {
    eddy_rt_socket_t *s; /* referenced */
    int64_t ack_id;
    pthread_mutex_t lock;
    int waiting;
    size_t history_n;
    text_t presence, history; /* JSON text of each part asked for */
    char pstack[1], hstack[1];
    bool want_presence, want_history;
} late_ack_t;

/* One part came (its text empty when it could not be had). */
static void late_ack_part_done(late_ack_t *a)
{
    pthread_mutex_lock(&a->lock);
    bool last = --a->waiting == 0;
    pthread_mutex_unlock(&a->lock);
    if (!last)
        return;
    char stack[4096];
    text_t t;
    text_init(&t, stack, sizeof(stack));
    text_str(&t, "{\"ok\":true");
    /* A part the cluster did not give (Redis down) is null: the join itself was done. */
    if (a->want_presence) {
        text_str(&t, ",\"presence\":");
        text_str(&t, a->presence.len > 0 ? a->presence.p : "null");
    }
    if (a->want_history) {
        text_str(&t, ",\"history\":");
        text_str(&t, a->history.len > 0 ? a->history.p : "null");
    }
    text_str(&t, "}");
    t.failed |= a->presence.failed || a->history.failed;
    ack_text(a->s, a->ack_id, &t);
    text_free(&a->presence);
    text_free(&a->history);
    eddy_rt_socket_unref(a->s);
    pthread_mutex_destroy(&a->lock);
    free(a);
}

/* A room's presence, every node's: {"num_sockets", "num_users", "sockets": [{"id", "user",
 * "data"}]} (at most PRESENCE_MAX sockets listed; data known for this node's sockets). */
static void late_presence(int err, const eddy_rt_presence_t *p, void *arg)
{
    late_ack_t *a = arg;
    text_t *t = &a->presence;
    if (err != 0) {
        late_ack_part_done(a);
        return;
    }
    char count[64];
    snprintf(count, sizeof(count), "{\"num_sockets\":%zu,\"num_users\":%zu,\"sockets\":[",
             p->nsockets, p->nusers);
    text_str(t, count);
    eddy_rt_nsp_t *nsp = eddy_rt_socket_nsp(a->s);
    for (size_t i = 0; i < p->nsockets && i < PRESENCE_MAX; i++) {
        const eddy_rt_presence_socket_t *e = &p->sockets[i];
        text_str(t, i > 0 ? ",{" : "{");
        eddy_rt_socket_t *s = eddy_rt_socket_find(nsp, e->socket_id);
        if (s != NULL) {
            pthread_mutex_lock(&R.data_lock);
            text_identity(t, s);
            pthread_mutex_unlock(&R.data_lock);
            eddy_rt_socket_unref(s);
        } else {
            text_str(t, "\"id\":");
            text_json_string(t, e->socket_id);
            text_str(t, ",\"user\":");
            if (e->user_id != NULL)
                text_json_string(t, e->user_id);
            else
                text_str(t, "null");
            text_str(t, ",\"data\":null");
        }
        text_str(t, "}");
    }
    text_str(t, "]}");
    late_ack_part_done(a);
}

/* The room's last history_n events, oldest first, as /api/history lists them: [{"event",
 * "args", "offset"}] (the daemon's joined/left events left out). */
static void late_history(eddy_rt_nsp_t *nsp, int err, const eddy_rt_history_entry_t *entries,
                         size_t n, void *arg)
{
    late_ack_t *a = arg;
    text_t *t = &a->history;
    if (err != 0) {
        late_ack_part_done(a);
        return;
    }
    size_t seen = 0, skip;
    for (size_t i = 0; i < n; i++)
        seen += !presence_event(entries[i].ev);
    skip = seen > a->history_n ? seen - a->history_n : 0;
    seen = 0;
    text_str(t, "[");
    for (size_t i = 0; i < n; i++) {
        const eddy_rt_event_t *ev = entries[i].ev;
        if (presence_event(ev))
            continue;
        if (skip > 0) {
            skip--;
            continue;
        }
        text_str(t, seen++ > 0 ? ",{\"event\":" : "{\"event\":");
        text_json_string(t, ev->name);
        text_str(t, ",\"args\":[");
        text_add(t, ev->args, ev->args_len);
        text_str(t, "],\"offset\":");
        text_json_string(t, entries[i].offset);
        text_str(t, "}");
    }
    text_str(t, "]");
    late_ack_part_done(a);
}

/* Answers ack_id of s later with {"ok": true} and the parts asked for: the room's presence,
 * its last history_n events (0: none). */
static void late_ack_start(eddy_rt_socket_t *s, int64_t ack_id, const char *room,
                           bool want_presence, size_t history_n)
{
    late_ack_t *a = calloc(1, sizeof(*a));
    if (a == NULL) {
        eddy_rt_ack_json(s, ack_id, "{\"error\":\"out of memory\"}");
        return;
    }
    eddy_rt_socket_ref(s);
    a->s = s;
    a->ack_id = ack_id;
    a->want_presence = want_presence;
    a->want_history = history_n > 0;
    a->history_n = history_n;
    text_init(&a->presence, a->pstack, sizeof(a->pstack));
    text_init(&a->history, a->hstack, sizeof(a->hstack));
    pthread_mutex_init(&a->lock, NULL);
    a->waiting = 1 + want_presence + a->want_history; /* the last one is this call's */
    eddy_rt_nsp_t *nsp = eddy_rt_socket_nsp(s);
    if (want_presence && eddy_rt_room_presence(nsp, room, 0, late_presence, a) != 0) {
        late_ack_part_done(a);
    }
    /* All of the room's kept events: the last history_n are counted without the daemon's
     * own presence events (bounded by history_size). */
    if (a->want_history && eddy_rt_room_recent(nsp, room, SIZE_MAX, 0, late_history, a) != 0) {
        late_ack_part_done(a);
    }
    late_ack_part_done(a);
}

/* The answer to a join that succeeded: {"ok": true}, with the room's "presence" where
 * client_presence allows it and its last history_on_join events as "history", every
 * node's (later, when the cluster answered). */
static void ack_join(eddy_rt_socket_t *s, int64_t ack_id, const char *room)
{
    bool presence = room_matches(R.st.client_presence, room);
    if (!presence && R.st.history_on_join == 0) {
        eddy_rt_ack_json(s, ack_id, "{\"ok\":true}");
        return;
    }
    late_ack_start(s, ack_id, room, presence, R.st.history_on_join);
}

/* The room a publish or presence event names, where patterns allow it and s is in it;
 * else the refusal. */
static const char *room_refusal(eddy_rt_socket_t *s, const eddy_rt_event_t *ev,
                                const char *patterns, char *room, size_t cap)
{
    if (eddy_rt_arg_string(ev, 0, room, cap) < 0)
        return "{\"error\":\"the first argument must be a room name (a string)\"}";
    if (!room_matches(patterns, room))
        return "{\"error\":\"not allowed\"}";
    if (!socket_in(s, room))
        return "{\"error\":\"not in the room\"}";
    return NULL;
}

/* publish(room, data[, ack]): the room's members (the sender too) get the event "message"
 * with {"room", "from": {"id", "user", "data"}, "data"}; the ack gets {"ok": true}. */
static void on_publish(eddy_rt_socket_t *s, const eddy_rt_event_t *ev, void *user_data)
{
    char room[ROOM_NAME_MAX + 1];
    const char *refusal = room_refusal(s, ev, R.st.client_publish, room, sizeof(room));
    const char *room_json = NULL, *data = "null";
    size_t room_len = 0, data_len = 4;
    eddy_rt_arg(ev, 0, &room_json, &room_len);
    int type = eddy_rt_arg(ev, 1, &data, &data_len);
    if (refusal == NULL && (ev->nbin > 0 || eddy_rt_arg_count(ev) > 2))
        refusal = "{\"error\":\"publish takes a room and one JSON value (no binary)\"}";
    if (refusal != NULL) {
        if (ev->ack_id >= 0)
            eddy_rt_ack_json(s, ev->ack_id, refusal);
        return;
    }
    if (type == EDDY_RT_JSON_NONE) {
        data = "null";
        data_len = 4;
    }
    char stack[4096];
    text_t t;
    text_init(&t, stack, sizeof(stack));
    text_str(&t, "{\"room\":");
    text_add(&t, room_json, room_len);
    text_str(&t, ",\"from\":{");
    text_identity(&t, s);
    text_str(&t, "},\"data\":");
    text_add(&t, data, data_len);
    text_str(&t, "}");
    const char *rooms[1] = {room};
    eddy_rt_to_t to = {.rooms = rooms, .nrooms = 1};
    eddy_rt_msg_t msg = {.event = "message", .args = t.p, .args_len = t.len};
    int rc = t.failed ? EDDY_ENOMEM : eddy_rt_broadcast(eddy_rt_socket_nsp(s), &to, &msg);
    text_free(&t);
    if (ev->ack_id >= 0)
        eddy_rt_ack_json(s, ev->ack_id, rc == 0 ? "{\"ok\":true}" : "{\"error\":\"failed\"}");
}

/* presence(room, ack): {"ok": true, "presence": {...}} for a member of a client_presence
 * room. */
static void on_presence_query(eddy_rt_socket_t *s, const eddy_rt_event_t *ev, void *user_data)
{
    char room[ROOM_NAME_MAX + 1];
    if (ev->ack_id < 0)
        return;
    const char *refusal = room_refusal(s, ev, R.st.client_presence, room, sizeof(room));
    if (refusal != NULL) {
        eddy_rt_ack_json(s, ev->ack_id, refusal);
        return;
    }
    late_ack_start(s, ev->ack_id, room, true, 0);
}

/* Tells a client_presence room that s joined or left it: the event "joined" or "left" with
 * {"room", "id", "user", "data"} (not to s itself). Joins and leaves may come from the API's
 * thread while s disconnects: its data is read under data_lock. */
static void announce_presence(eddy_rt_socket_t *s, const char *room, bool joined)
{
    if (!room_matches(R.st.client_presence, room))
        return;
    char stack[1024];
    text_t t;
    text_init(&t, stack, sizeof(stack));
    text_str(&t, "{\"room\":");
    text_json_string(&t, room);
    text_str(&t, ",");
    pthread_mutex_lock(&R.data_lock);
    text_identity(&t, s);
    pthread_mutex_unlock(&R.data_lock);
    text_str(&t, "}");
    const char *rooms[1] = {room};
    eddy_rt_to_t to = {.rooms = rooms, .nrooms = 1, .except_socket = s};
    eddy_rt_msg_t msg = {.event = joined ? "joined" : "left", .args = t.p, .args_len = t.len};
    if (!t.failed)
        eddy_rt_broadcast(eddy_rt_socket_nsp(s), &to, &msg);
    text_free(&t);
}

/* client_names: the data of an anonymous socket, {"name": NAME} from its auth payload's
 * name (1 to CLIENT_NAME_MAX bytes, no control character), malloc'd; NULL with *bad false
 * when it gave none, with *bad true for a bad one. */
static char *client_name_data(eddy_rt_socket_t *s, bool *bad)
{
    size_t auth_len, len;
    const char *auth = eddy_rt_socket_auth(s, &auth_len), *val;
    *bad = false;
    if (auth == NULL ||
        eddy_rt_json_member(auth, auth_len, "name", &val, &len) == EDDY_RT_JSON_NONE)
        return NULL;
    json_t *name = json_loadb(val, len, JSON_DECODE_ANY, NULL);
    const char *text = json_string_value(name);
    size_t n = text != NULL ? json_string_length(name) : 0;
    bool ok = n > 0 && n <= CLIENT_NAME_MAX && strlen(text) == n;
    for (size_t i = 0; ok && i < n; i++)
        ok = (unsigned char)text[i] >= 0x20 && text[i] != 0x7f;
    char *data = NULL;
    if (ok) {
        json_t *obj = json_pack("{s:O}", "name", name);
        data = obj != NULL ? json_dumps(obj, JSON_COMPACT) : NULL;
        json_decref(obj);
    }
    json_decref(name);
    *bad = data == NULL;
    return data;
}

/* Gives an anonymous socket the name of its auth payload as its data; true if the name is
 * bad (the connect is then refused). */
static bool client_name_refused(eddy_rt_socket_t *s, auth_result_t *res)
{
    bool bad;
    res->data = client_name_data(s, &bad);
    return bad;
}

/* The events publish and presence on nsp. */
static int permissions_on(eddy_rt_nsp_t *nsp)
{
    int rc = eddy_rt_on(nsp, "publish", on_publish, NULL);
    return rc < 0 ? rc : eddy_rt_on(nsp, "presence", on_presence_query, NULL);
}

/* One line saying what clients may do beyond joining, when they may do anything more. */
static void permissions_log(eddy_server_t *srv)
{
    const settings_t *st = &R.st;
    if (st->client_publish[0] == '\0' && st->client_presence[0] == '\0' && !st->client_names &&
        st->history_on_join == 0)
        return;
    eddy_log(srv, EDDY_LOG_INFO,
             "socketio: clients may publish to %s, see who is in %s%s; joins carry the last "
             "%zu events",
             st->client_publish[0] != '\0' ? st->client_publish : "no room",
             st->client_presence[0] != '\0' ? st->client_presence : "no room",
             st->client_names ? ", name themselves" : "", st->history_on_join);
}

/* A socket restored by recovery rejoined its rooms without the presence callback (and
 * without the connect hook): its name back, and what the presence callback does for each
 * room (the rooms table counts it again, the room is told it is back). */
typedef struct room_names {
    char **names;
    size_t n, cap;
} room_names_t;

static bool copy_room(const char *room, void *arg)
{
    room_names_t *rn = arg;
    if (rn->n == rn->cap) {
        size_t cap = rn->cap ? rn->cap * 2 : 8;
        char **p = realloc(rn->names, cap * sizeof(*p));
        if (p == NULL)
            return false;
        rn->names = p;
        rn->cap = cap;
    }
    rn->names[rn->n] = strdup(room);
    return rn->names[rn->n++] != NULL;
}

/* The data claim of the token a recovered socket presents again (its connect hook does not
 * run: Socket.IO's skipMiddlewares), so that it keeps the data its token gave it. NULL:
 * none, or the token no longer checks (the socket then goes on without data). */
static char *recovered_token_data(eddy_rt_socket_t *s)
{
    char buf[AUTH_TOKEN_MAX + 2];
    const char *token = client_token(s, buf, sizeof(buf));
    if (token == NULL)
        return NULL;
    auth_result_t res;
    char *data = NULL;
    if (auth_check_live(token, &res) == 0 && res.authenticated) {
        data = res.data;
        res.data = NULL;
    }
    auth_result_free(&res);
    return data;
}

static void recovered_presence(eddy_rt_socket_t *s)
{
    bool bad;
    char *name = recovered_token_data(s);
    if (name == NULL && R.st.client_names && eddy_rt_socket_user(s) == NULL)
        name = client_name_data(s, &bad);
    if (name != NULL) {
        sock_info_t *info = malloc(sizeof(*info));
        if (info != NULL) {
            *info = (sock_info_t){name, NULL};
            pthread_mutex_lock(&R.data_lock);
            eddy_rt_socket_set_data(s, info);
            pthread_mutex_unlock(&R.data_lock);
        } else {
            free(name);
        }
    }
    room_names_t rn = {0};
    eddy_rt_socket_rooms(s, copy_room, &rn);
    for (size_t i = 0; i < rn.n; i++) {
        if (rn.names[i] != NULL && i > 0) /* [0] is its own room */
            on_presence(s, rn.names[i], true, NULL);
        free(rn.names[i]);
    }
    free(rn.names);
}

/* join(room[, ack]) and leave(room[, ack]): the ack gets {"ok":true} or {"error":why}. */
static void on_join_leave(eddy_rt_socket_t *s, const eddy_rt_event_t *ev, void *user_data)
{
    bool join = user_data != NULL;
    char room[ROOM_NAME_MAX + 1];
    const char *answer = "{\"ok\":true}";
    if (eddy_rt_arg_string(ev, 0, room, sizeof(room)) < 0)
        answer = "{\"error\":\"the first argument must be a room name (a string)\"}";
    else if (!join_allowed(room) && join && proxy_sio_join(s, room, ev->ack_id))
        return; /* the backend decides */
    else if (!join_allowed(room))
        answer = "{\"error\":\"not allowed\"}";
    else if ((join ? eddy_rt_join(s, room) : eddy_rt_leave(s, room)) < 0)
        answer = "{\"error\":\"failed\"}";
    if (ev->ack_id >= 0 && join && strcmp(answer, "{\"ok\":true}") == 0)
        ack_join(s, ev->ack_id, room);
    else if (ev->ack_id >= 0)
        eddy_rt_ack_json(s, ev->ack_id, answer);
}

/* ---- lifecycle and dispatch ---- */

int realtime_setup(eddy_server_t *srv, const cfg_t *cfg)
{
    settings_init(&R.st);
    for (size_t i = 0; i < cfg->entry_count; i++) {
        const cfg_entry_t *e = &cfg->entries[i];
        char why[160];
        if (realtime_section(e->section) &&
            settings_set(&R.st, e->section, e->key, e->value, why, sizeof(why)) != 0) {
            fprintf(stderr, "eddy: [%s] %s: %s\n", e->section, e->key, why);
            return -1;
        }
    }
    if (!live_publish(&R.st)) {
        fputs("eddy: out of memory\n", stderr);
        return -1;
    }
    const char *param = cfg_get(cfg, "auth", "query_param");
    snprintf(R.query_param, sizeof(R.query_param), "%s", param != NULL ? param : "token");
    if (!R.st.enabled)
        return 0;
    if (settings_conflict(&R.st) != NULL) {
        fprintf(stderr, "eddy: %s\n", settings_conflict(&R.st));
        return -1;
    }
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
    opts.redis_url = R.st.redis_url[0] != '\0' ? R.st.redis_url : NULL;
    opts.redis_prefix = R.st.redis_prefix;
    opts.node_id = R.st.node_id[0] != '\0' ? R.st.node_id : NULL;
    opts.redis_emitter_prefix = R.st.emitter_prefix[0] != '\0' ? R.st.emitter_prefix : NULL;
    opts.redis_heartbeat_interval_ms = R.st.heartbeat_interval_ms;
    opts.redis_heartbeat_timeout_ms = R.st.heartbeat_timeout_ms;
    R.rt = eddy_rt_new(srv, &opts);
    if (R.rt == NULL) {
        fprintf(stderr, "eddy: [socketio]: cannot create the real-time layer\n");
        return -1;
    }
    eddy_rt_handlers_t h = {.connect = on_connect,
                            .connection = on_connection,
                            .disconnect = on_disconnect,
                            .presence = on_presence,
                            .any = proxy_sio_event};
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
            eddy_rt_on(nsp, "leave", on_join_leave, NULL) < 0 || permissions_on(nsp) < 0) {
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
    permissions_log(srv);
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
    for (rt_live_t *lv = atomic_exchange(&R.live, NULL), *older; lv != NULL; lv = older) {
        older = lv->retired;
        memset(lv->api_key, 0, sizeof(lv->api_key));
        free(lv);
    }
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
    const rt_live_t *lv = live();
    return lv != NULL ? lv->api_key : "";
}

bool realtime_broker(eddy_rt_broker_status_t *out)
{
    if (R.rt == NULL) {
        *out = (eddy_rt_broker_status_t){.clustered = false};
        return false;
    }
    eddy_rt_broker_status(R.rt, out);
    return out->clustered;
}

bool realtime_ready(void)
{
    eddy_rt_broker_status_t b;
    return !realtime_broker(&b) || b.ready;
}

size_t realtime_api_max_body(void)
{
    const rt_live_t *lv = live();
    return lv != NULL ? lv->api_max_body : 0;
}

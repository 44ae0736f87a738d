/* SPDX-License-Identifier: MIT */
/*
 * Settings: Swoole's names, set as strings (eddy_server_set), stored in a typed struct.
 * One table describes every key: its type, where it lives, and its bounds, so parsing,
 * validation and error messages are written once.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <unistd.h>

#include "log.h"
#include "server.h"
#include "settings.h"

#define MAX_CONNECTION_CAP 1048576

void eddy__options_init(eddy__options_t *opts)
{
    memset(opts, 0, sizeof(*opts));
    struct rlimit rl;
    size_t max_conn = 10000;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        max_conn = (size_t)rl.rlim_cur;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    opts->worker_num = cores < 1 ? 1 : (int)EDDY__MIN(cores, (long)EDDY__MAX_LOOPS);
    opts->max_connection = EDDY__MIN(max_conn, (size_t)MAX_CONNECTION_CAP);
    opts->backlog = 511;
    opts->open_tcp_nodelay = true;
    opts->package_max_length = 2 * 1024 * 1024;
    opts->websocket_close_timeout_ms = 5000;
    opts->http_header_timeout_ms = 10000;
    opts->http_body_timeout_ms = 60000;
    opts->http_keepalive_timeout_ms = 60000;
    opts->websocket_upgrade_timeout_ms = 10000;
    opts->http_max_header_size = 64 * 1024;
    opts->log_level = EDDY__LOG_INFO;
    opts->socket_buffer_size = 8 * 1024 * 1024; /* Swoole's default */
    opts->slow_consumer_policy = EDDY__SLOW_CLOSE;
    opts->socket_buffer_soft_seconds = 60;
    opts->websocket_compression_level = 6; /* zlib's default level, as effort */
    opts->websocket_compression_mem_level = 8;
    opts->pmd.server_window_bits = 15;
    opts->pmd.client_window_bits = 15;
    eddy__options_resolve(opts);
}

void eddy__options_resolve(eddy__options_t *opts)
{
    opts->high_watermark = opts->buffer_high_watermark ? opts->buffer_high_watermark
                                                       : opts->socket_buffer_size / 10 * 8;
    opts->admit_limit = opts->socket_buffer_soft_limit
                            ? EDDY__MIN(opts->socket_buffer_soft_limit, opts->socket_buffer_size)
                            : opts->socket_buffer_size;
    /* As Swoole: only heartbeat_check_interval turns the check on; heartbeat_idle_time
     * defaults to twice the interval, and an interval longer than the idle time becomes
     * half of it (eddy_server_start() logs both cases). */
    uint32_t interval = opts->heartbeat_check_interval_ms;
    uint32_t idle = opts->heartbeat_idle_time_ms;
    if (interval == 0) {
        opts->heartbeat_interval_ms = 0;
        opts->heartbeat_idle_ms = 0;
        return;
    }
    if (idle == 0)
        idle = interval * 2;
    else if (interval > idle)
        interval = EDDY__MAX(idle / 2, 1u);
    opts->heartbeat_interval_ms = interval;
    opts->heartbeat_idle_ms = idle;
}

enum kind {
    KIND_BOOL,
    KIND_INT,
    KIND_U8,
    KIND_SIZE,
    KIND_SECONDS_MS,
    KIND_STRING,
    KIND_LOG_LEVEL,
    KIND_POLICY
};

struct setting {
    const char *key;
    enum kind kind;
    size_t offset; /* in eddy__options_t */
    size_t pub;    /* in eddy_options_t */
    uint64_t min;
    uint64_t max;
};

#define OPT(field) offsetof(eddy__options_t, field)
#define PUB(field) offsetof(eddy_options_t, field)

static const struct setting settings[] = {
    {"worker_num", KIND_INT, OPT(worker_num), PUB(worker_num), 1, EDDY__MAX_LOOPS},
    {"task_worker_num", KIND_INT, OPT(task_worker_num), PUB(task_worker_num), 0, 1024},
    {"enable_reuse_port", KIND_BOOL, OPT(enable_reuse_port), PUB(enable_reuse_port), 0, 0},
    {"socket_buffer_size", KIND_SIZE, OPT(socket_buffer_size), PUB(socket_buffer_size), 1024,
     (uint64_t)1 << 40},
    {"buffer_high_watermark", KIND_SIZE, OPT(buffer_high_watermark), PUB(buffer_high_watermark), 0,
     (uint64_t)1 << 40},
    {"buffer_low_watermark", KIND_SIZE, OPT(buffer_low_watermark), PUB(buffer_low_watermark), 0,
     (uint64_t)1 << 40},
    {"slow_consumer_policy", KIND_POLICY, OPT(slow_consumer_policy), PUB(slow_consumer_policy),
     EDDY__SLOW_CLOSE, EDDY__SLOW_DROP},
    {"socket_buffer_soft_limit", KIND_SIZE, OPT(socket_buffer_soft_limit),
     PUB(socket_buffer_soft_limit), 0, (uint64_t)1 << 40},
    {"socket_buffer_soft_seconds", KIND_INT, OPT(socket_buffer_soft_seconds),
     PUB(socket_buffer_soft_seconds), 0, 3600},
    {"max_connection", KIND_SIZE, OPT(max_connection), PUB(max_connection), 1, MAX_CONNECTION_CAP},
    {"backlog", KIND_INT, OPT(backlog), PUB(backlog), 1, 65535},
    {"open_tcp_nodelay", KIND_BOOL, OPT(open_tcp_nodelay), PUB(open_tcp_nodelay), 0, 0},
    {"package_max_length", KIND_SIZE, OPT(package_max_length), PUB(package_max_length), 1,
     (uint64_t)1 << 40},
    {"heartbeat_check_interval", KIND_SECONDS_MS, OPT(heartbeat_check_interval_ms),
     PUB(heartbeat_check_interval_ms), 0, 86400},
    {"heartbeat_idle_time", KIND_SECONDS_MS, OPT(heartbeat_idle_time_ms),
     PUB(heartbeat_idle_time_ms), 0, 86400 * 7},
    {"websocket_subprotocol", KIND_STRING, OPT(websocket_subprotocol), PUB(websocket_subprotocol),
     0, 0},
    {"websocket_origins", KIND_STRING, OPT(websocket_origins), PUB(websocket_origins), 0, 0},
    {"open_websocket_close_frame", KIND_BOOL, OPT(open_websocket_close_frame),
     PUB(open_websocket_close_frame), 0, 0},
    {"open_websocket_ping_frame", KIND_BOOL, OPT(open_websocket_ping_frame),
     PUB(open_websocket_ping_frame), 0, 0},
    {"open_websocket_pong_frame", KIND_BOOL, OPT(open_websocket_pong_frame),
     PUB(open_websocket_pong_frame), 0, 0},
    {"websocket_close_timeout", KIND_SECONDS_MS, OPT(websocket_close_timeout_ms),
     PUB(websocket_close_timeout_ms), 0, 3600},
    {"websocket_ping_interval", KIND_SECONDS_MS, OPT(websocket_ping_interval_ms),
     PUB(websocket_ping_interval_ms), 0, 86400},
    {"websocket_ping_timeout", KIND_SECONDS_MS, OPT(websocket_ping_timeout_ms),
     PUB(websocket_ping_timeout_ms), 0, 86400},
    {"http_header_timeout", KIND_SECONDS_MS, OPT(http_header_timeout_ms),
     PUB(http_header_timeout_ms), 0, 3600},
    {"http_body_timeout", KIND_SECONDS_MS, OPT(http_body_timeout_ms), PUB(http_body_timeout_ms), 0,
     86400},
    {"http_keepalive_timeout", KIND_SECONDS_MS, OPT(http_keepalive_timeout_ms),
     PUB(http_keepalive_timeout_ms), 0, 86400},
    {"websocket_upgrade_timeout", KIND_SECONDS_MS, OPT(websocket_upgrade_timeout_ms),
     PUB(websocket_upgrade_timeout_ms), 0, 86400},
    {"http_max_header_size", KIND_SIZE, OPT(http_max_header_size), PUB(http_max_header_size), 256,
     16 * 1024 * 1024},
    {"websocket_compression", KIND_BOOL, OPT(websocket_compression), PUB(websocket_compression), 0,
     0},
    {"websocket_compression_threshold", KIND_SIZE, OPT(websocket_compression_threshold),
     PUB(websocket_compression_threshold), 0, (uint64_t)1 << 40},
    {"websocket_compression_level", KIND_INT, OPT(websocket_compression_level),
     PUB(websocket_compression_level), 1, 9},
    {"websocket_compression_mem_level", KIND_INT, OPT(websocket_compression_mem_level),
     PUB(websocket_compression_mem_level), 1, 9},
    {"websocket_compression_window_bits", KIND_U8, OPT(pmd.server_window_bits),
     PUB(websocket_compression_window_bits), 9, 15},
    {"websocket_compression_client_window_bits", KIND_U8, OPT(pmd.client_window_bits),
     PUB(websocket_compression_client_window_bits), 8, 15},
    {"websocket_compression_server_no_context_takeover", KIND_BOOL,
     OPT(pmd.server_no_context_takeover), PUB(websocket_compression_server_no_context_takeover), 0,
     0},
    {"websocket_compression_client_no_context_takeover", KIND_BOOL,
     OPT(pmd.client_no_context_takeover), PUB(websocket_compression_client_no_context_takeover), 0,
     0},
    {"ssl_cert_file", KIND_STRING, OPT(ssl_cert_file), PUB(ssl_cert_file), 0, 0},
    {"ssl_key_file", KIND_STRING, OPT(ssl_key_file), PUB(ssl_key_file), 0, 0},
    {"ssl_ciphers", KIND_STRING, OPT(ssl_ciphers), PUB(ssl_ciphers), 0, 0},
    {"ssl_protocols", KIND_STRING, OPT(ssl_protocols), PUB(ssl_protocols), 0, 0},
    {"log_level", KIND_LOG_LEVEL, OPT(log_level), PUB(log_level), EDDY_LOG_TRACE, EDDY_LOG_NONE},
    {"log_file", KIND_STRING, OPT(log_file), PUB(log_file), 0, 0},
    {"http_access_log", KIND_STRING, OPT(http_access_log), PUB(http_access_log), 0, 0},
};

void eddy__options_free(eddy__options_t *opts)
{
    for (size_t i = 0; i < EDDY__ARRAY_SIZE(settings); i++) {
        if (settings[i].kind == KIND_STRING) {
            char **string = (char **)((char *)opts + settings[i].offset);
            free(*string);
            *string = NULL;
        }
    }
}

static int parse_bool(const char *value, bool *out)
{
    static const char *const yes[] = {"true", "1", "yes", "on"};
    static const char *const no[] = {"false", "0", "no", "off"};
    for (size_t i = 0; i < EDDY__ARRAY_SIZE(yes); i++) {
        if (strcasecmp(value, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(value, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return EDDY_EVALUE;
}

static int parse_uint(const char *value, uint64_t min, uint64_t max, uint64_t *out)
{
    if (*value < '0' || *value > '9')
        return EDDY_EVALUE;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(value, &end, 10);
    if (errno != 0 || *end != '\0' || n < min || n > max)
        return EDDY_EVALUE;
    *out = n;
    return 0;
}

/* Seconds may be fractional ("0.5"), as Swoole's float timeouts. */
static int parse_seconds_ms(const char *value, uint64_t max_seconds, uint32_t *out)
{
    if (*value < '0' || *value > '9')
        return EDDY_EVALUE;
    char *end;
    errno = 0;
    double seconds = strtod(value, &end);
    if (errno != 0 || *end != '\0' || seconds < 0 || seconds > (double)max_seconds)
        return EDDY_EVALUE;
    *out = (uint32_t)(seconds * 1000.0 + 0.5);
    return 0;
}

static int apply(eddy__options_t *opts, const struct setting *s, const char *value)
{
    char *field = (char *)opts + s->offset;
    uint64_t n = 0; /* set by parse_uint on success; LTO cannot see it */
    int rc;
    switch (s->kind) {
    case KIND_BOOL:
        return parse_bool(value, (bool *)field);
    case KIND_INT:
        if ((rc = parse_uint(value, s->min, s->max, &n)) == 0)
            *(int *)field = (int)n;
        return rc;
    case KIND_U8:
        if ((rc = parse_uint(value, s->min, s->max, &n)) == 0)
            *(uint8_t *)field = (uint8_t)n;
        return rc;
    case KIND_SIZE:
        if ((rc = parse_uint(value, s->min, s->max, &n)) == 0)
            *(size_t *)field = (size_t)n;
        return rc;
    case KIND_SECONDS_MS:
        return parse_seconds_ms(value, s->max, (uint32_t *)field);
    case KIND_POLICY:
        if (strcasecmp(value, "close") == 0)
            *(int *)field = EDDY__SLOW_CLOSE;
        else if (strcasecmp(value, "drop") == 0)
            *(int *)field = EDDY__SLOW_DROP;
        else
            return EDDY_EVALUE;
        return 0;
    case KIND_LOG_LEVEL:
        rc = eddy__log_level_parse(value);
        if (rc < 0)
            return EDDY_EVALUE;
        *(int *)field = rc;
        return 0;
    case KIND_STRING: {
        char **slot = (char **)field;
        char *copy = NULL;
        if (*value != '\0' && (copy = strdup(value)) == NULL)
            return EDDY_ENOMEM;
        free(*slot);
        *slot = copy;
        return 0;
    }
    }
    return EDDY_EVALUE;
}

void eddy__options_publish(eddy_server_t *srv)
{
    atomic_store_explicit(&srv->live_max_connection, srv->opts.max_connection,
                          memory_order_relaxed);
    atomic_store_explicit(&srv->live_package_max_length, srv->opts.package_max_length,
                          memory_order_relaxed);
    atomic_store_explicit(&srv->live_ping_interval_ms, srv->opts.websocket_ping_interval_ms,
                          memory_order_relaxed);
    atomic_store_explicit(&srv->live_ping_timeout_ms, srv->opts.websocket_ping_timeout_ms,
                          memory_order_relaxed);
    /* The loops do not run: their copies too, for what runs on them before their first
     * iteration (eddy__loop_init()). */
    for (int i = 0; srv->loops != NULL && i < srv->loops_made; i++) {
        if (srv->loops[i] != NULL)
            srv->loops[i]->package_max_length = srv->opts.package_max_length;
    }
}

/* The keys eddy_server_set() takes while the server runs: limits read where a connection
 * is accepted or a message arrives, each with one relaxed load, and the keep-alive pings,
 * whose timers every loop re-arms. The others are read once per run, or per connection
 * with more to change at once (the heartbeat's derived pair, buffers, contexts). */
static bool live_key(const char *key)
{
    return strcmp(key, "max_connection") == 0 || strcmp(key, "package_max_length") == 0 ||
           strcmp(key, "websocket_ping_interval") == 0 ||
           strcmp(key, "websocket_ping_timeout") == 0;
}

/* A live key set while the server runs, parsed into scratch: the new value for new
 * connections and messages, or the next ping round. */
static int apply_running(eddy_server_t *srv, const char *key, const eddy__options_t *scratch)
{
    if (strncmp(key, "websocket_ping_", 15) == 0) {
        bool interval = strcmp(key, "websocket_ping_interval") == 0;
        return eddy__server_pings_changed(
            srv,
            interval ? scratch->websocket_ping_interval_ms
                     : atomic_load_explicit(&srv->live_ping_interval_ms, memory_order_relaxed),
            interval ? atomic_load_explicit(&srv->live_ping_timeout_ms, memory_order_relaxed)
                     : scratch->websocket_ping_timeout_ms);
    }
    if (strcmp(key, "max_connection") == 0) {
        atomic_store_explicit(&srv->live_max_connection, scratch->max_connection,
                              memory_order_relaxed);
        return 0;
    }
    atomic_store_explicit(&srv->live_package_max_length, scratch->package_max_length,
                          memory_order_relaxed);
    /* The loops take it with their next batch of events; a loop's own callback sees it at
     * once, as any other setting it changes. */
    eddy__loop_t *here = eddy__loop_here(srv);
    if (here != NULL)
        eddy__loop_refresh_limits(here);
    return 0;
}

int eddy_server_set(eddy_server_t *srv, const char *key, const char *value)
{
    bool running = atomic_load(&srv->running);
    if (running && (key == NULL || !live_key(key)))
        return EDDY_ERUNNING;
    if (key == NULL || value == NULL)
        return EDDY_EINVAL;
    for (size_t i = 0; i < EDDY__ARRAY_SIZE(settings); i++) {
        if (strcmp(key, settings[i].key) != 0)
            continue;
        const struct setting *s = &settings[i];
        /* Running, the loops read only the live copies: the value is parsed aside. */
        eddy__options_t scratch;
        memset(&scratch, 0, sizeof(scratch));
        int rc = apply(running ? &scratch : &srv->opts, s, value);
        if (rc == 0 && running)
            rc = apply_running(srv, key, &scratch);
        else if (rc == 0)
            eddy__options_publish(srv);
        if (rc != EDDY_EVALUE)
            return rc;
        switch (s->kind) {
        case KIND_BOOL:
            eddy__log(srv, EDDY__LOG_ERROR,
                      "setting %s: invalid value \"%s\" (expected true "
                      "or false)",
                      key, value);
            break;
        case KIND_POLICY:
            eddy__log(srv, EDDY__LOG_ERROR,
                      "setting %s: invalid value \"%s\" (expected close or drop)", key, value);
            break;
        case KIND_LOG_LEVEL:
            eddy__log(srv, EDDY__LOG_ERROR,
                      "setting %s: invalid value \"%s\" (expected trace, "
                      "debug, info, notice, warning, error, none or 0-6)",
                      key, value);
            break;
        default:
            eddy__log(srv, EDDY__LOG_ERROR,
                      "setting %s: invalid value \"%s\" (expected a "
                      "number from %" PRIu64 " to %" PRIu64 ")",
                      key, value, s->min, s->max);
            break;
        }
        return rc;
    }
    eddy__log(srv, EDDY__LOG_ERROR, "unknown setting \"%s\"", key);
    return EDDY_EKEY;
}

/* ---- typed settings (eddy_options_t) ----
 * The table above also says where each key lives in the public struct. Per kind, the
 * public and private fields have the same type, except KIND_U8 (int in public) and
 * KIND_STRING (const char * in public). */

_Static_assert((int)EDDY_SLOW_CONSUMER_CLOSE == (int)EDDY__SLOW_CLOSE &&
                   (int)EDDY_SLOW_CONSUMER_DROP == (int)EDDY__SLOW_DROP,
               "slow-consumer policies have the same values in both enums");

/* Copies one setting's value between the two structs, to the public one if to_public. A
 * string is copied as the pointer: the caller owns what it points to. */
static void convert_value(const struct setting *s, const void *from, void *to, bool to_public)
{
    size_t size = 0;
    switch (s->kind) {
    case KIND_BOOL:
        size = sizeof(bool);
        break;
    case KIND_INT:
    case KIND_LOG_LEVEL:
    case KIND_POLICY:
        size = sizeof(int);
        break;
    case KIND_SIZE:
        size = sizeof(size_t);
        break;
    case KIND_SECONDS_MS:
        size = sizeof(uint32_t);
        break;
    case KIND_STRING:
        size = sizeof(char *);
        break;
    case KIND_U8:
        if (to_public)
            *(int *)to = *(const uint8_t *)from;
        else
            *(uint8_t *)to = (uint8_t) * (const int *)from;
        return;
    }
    memcpy(to, from, size);
}

static void export_options(const eddy__options_t *opts, eddy_options_t *out)
{
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < EDDY__ARRAY_SIZE(settings); i++) {
        const struct setting *s = &settings[i];
        convert_value(s, (const char *)opts + s->offset, (char *)out + s->pub, true);
    }
}

/* Checks one typed value against the key's bounds; logs and returns EDDY_EVALUE if out. */
static int check_typed(const eddy_server_t *srv, const struct setting *s, const eddy_options_t *in)
{
    const char *field = (const char *)in + s->pub;
    int64_t n;
    uint64_t min = s->min, max = s->max;
    const char *unit = "";
    switch (s->kind) {
    case KIND_BOOL:
    case KIND_STRING:
        return 0;
    case KIND_INT:
    case KIND_U8:
    case KIND_LOG_LEVEL:
    case KIND_POLICY:
        n = *(const int *)field;
        break;
    case KIND_SIZE:
        n = (int64_t)EDDY__MIN(*(const size_t *)field, (size_t)INT64_MAX);
        break;
    case KIND_SECONDS_MS:
        n = *(const uint32_t *)field;
        min *= 1000;
        max *= 1000;
        unit = " ms";
        break;
    default:
        return EDDY_EVALUE;
    }
    if (n >= 0 && (uint64_t)n >= min && (uint64_t)n <= max)
        return 0;
    eddy__log(srv, EDDY__LOG_ERROR,
              "setting %s: invalid value %" PRId64 "%s (expected %" PRIu64 " to %" PRIu64 "%s)",
              s->key, n, unit, min, max, unit);
    return EDDY_EVALUE;
}

void eddy_options_init(eddy_options_t *opts)
{
    eddy__options_t defaults;
    eddy__options_init(&defaults); /* no strings: nothing to free */
    export_options(&defaults, opts);
}

int eddy_server_configure(eddy_server_t *srv, const eddy_options_t *opts)
{
    if (srv->running)
        return EDDY_ERUNNING;
    if (opts == NULL)
        return EDDY_EINVAL;
    for (size_t i = 0; i < EDDY__ARRAY_SIZE(settings); i++) {
        if (check_typed(srv, &settings[i], opts) != 0)
            return EDDY_EVALUE;
    }
    /* Copies of the strings first: out of memory leaves the settings as they were. */
    eddy__options_t next = srv->opts;
    bool oom = false;
    for (size_t i = 0; i < EDDY__ARRAY_SIZE(settings) && !oom; i++) {
        const struct setting *s = &settings[i];
        if (s->kind != KIND_STRING)
            continue;
        const char *value = *(const char *const *)((const char *)opts + s->pub);
        char *copy = NULL;
        oom = value != NULL && *value != '\0' && (copy = strdup(value)) == NULL;
        *(char **)((char *)&next + s->offset) = copy;
    }
    for (size_t i = 0; i < EDDY__ARRAY_SIZE(settings); i++) {
        const struct setting *s = &settings[i];
        if (s->kind != KIND_STRING)
            continue;
        char *old = *(char **)((char *)&srv->opts + s->offset);
        char *made = *(char **)((char *)&next + s->offset);
        if (!oom)
            free(old);
        else if (made != old) /* a copy made here (slots not reached still hold old) */
            free(made);
    }
    if (oom)
        return EDDY_ENOMEM;
    for (size_t i = 0; i < EDDY__ARRAY_SIZE(settings); i++) {
        const struct setting *s = &settings[i];
        if (s->kind != KIND_STRING) /* copied above */
            convert_value(s, (const char *)opts + s->pub, (char *)&next + s->offset, false);
    }
    srv->opts = next;
    eddy__options_resolve(&srv->opts);
    eddy__options_publish(srv);
    return 0;
}

void eddy_server_get_options(const eddy_server_t *srv, eddy_options_t *out)
{
    /* Derived on a copy: the server's own fields are not written (another thread may be
     * reading them while the server runs). */
    eddy__options_t effective = srv->opts;
    eddy__options_resolve(&effective);
    effective.buffer_high_watermark = effective.high_watermark;
    effective.heartbeat_check_interval_ms = effective.heartbeat_interval_ms;
    effective.heartbeat_idle_time_ms = effective.heartbeat_idle_ms;
    effective.max_connection = eddy__max_connection(srv);
    effective.package_max_length = eddy__package_max_length(srv);
    effective.websocket_ping_interval_ms =
        atomic_load_explicit(&srv->live_ping_interval_ms, memory_order_relaxed);
    effective.websocket_ping_timeout_ms =
        atomic_load_explicit(&srv->live_ping_timeout_ms, memory_order_relaxed);
    export_options(&effective, out);
}

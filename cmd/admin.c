/* SPDX-License-Identifier: MIT */
/*
 * The admin page (admin.h): /admin on the [admin] listener only, behind HTTP Basic
 * authentication with [admin] password or the [api] key as the password (any user name;
 * both compared in constant time as SHA-256 digests). The page (cmd/admin/index.html,
 * compiled in by the Makefile) polls /admin/stats every second and draws its charts itself:
 * no CDN, no script from anywhere else. Every answer is Cache-Control: no-store.
 *
 * Also the log's format ([log] format = text | json) and the ring of the last warnings and
 * errors the page shows.
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
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "realtime.h"
#include "throttle.h"

/* The page, from cmd/admin/index.html (build/cmd/admin_html.c). */
extern const char admin_html[];

#define PASSWORD_MIN   12
#define PASSWORD_MAX   256
#define RECENT_BYTES   300 /* of each kept line */
#define ROOMS_LISTED   20  /* per namespace, the largest */
#define ROOMS_EXAMINED 1000

typedef struct recent {
    int64_t time_ms;
    int level;
    char msg[RECENT_BYTES];
} recent_t;

static struct {
    char password[PASSWORD_MAX + 1];
    bool json;
    time_t started;
    pthread_mutex_t lock; /* the ring */
    recent_t ring[ADMIN_RECENT];
    uint64_t kept; /* lines kept so far: the next goes to ring[kept % ADMIN_RECENT] */
} A = {.lock = PTHREAD_MUTEX_INITIALIZER};

static const char *const level_names[] = {"trace", "debug", "info", "notice", "warning", "error"};

/* ---- configuration ---- */

int admin_check_key(const char *section, const char *key, const char *value, const char **why)
{
    *why = NULL;
    if (strcmp(section, "admin") == 0 && strcmp(key, "password") == 0) {
        size_t len = strlen(value);
        if (len != 0 && (len < PASSWORD_MIN || len > PASSWORD_MAX))
            *why = "a password has 12 to 256 bytes (or is empty: no password)";
        return 1;
    }
    if (strcmp(section, "log") == 0 && strcmp(key, "format") == 0) {
        if (strcmp(value, "text") != 0 && strcmp(value, "json") != 0)
            *why = "the format is text or json";
        return 1;
    }
    return 0;
}

void admin_setup(const cfg_t *cfg)
{
    const char *pw = cfg_get(cfg, "admin", "password");
    const char *format = cfg_get(cfg, "log", "format");
    snprintf(A.password, sizeof(A.password), "%s", pw != NULL ? pw : "");
    A.json = format != NULL && strcmp(format, "json") == 0;
    A.started = time(NULL);
}

void admin_free(void)
{
    OPENSSL_cleanse(A.password, sizeof(A.password));
}

/* ---- the log ---- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    size_t len = s[0] < 0x80             ? 1
                 : (s[0] & 0xe0) == 0xc0 ? 2
                 : (s[0] & 0xf0) == 0xe0 ? 3
                 : (s[0] & 0xf8) == 0xf0 ? 4
                                         : 0;
    if (len == 0 || len > n || (len == 2 && s[0] < 0xc2) || (len == 4 && s[0] > 0xf4))
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    return len;
}

/* Appends msg to out as the inside of a JSON string (invalid UTF-8 becomes U+FFFD). */
static size_t json_escape(char *out, size_t cap, const char *msg, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len && n + 8 < cap;) {
        unsigned char c = (unsigned char)msg[i];
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
            i++;
        } else if (c < 0x20) {
            n += (size_t)snprintf(out + n, cap - n, "\\u%04x", c);
            i++;
        } else {
            size_t k = utf8_len((const unsigned char *)msg + i, len - i);
            if (k == 0) {
                memcpy(out + n, "\\ufffd", 6);
                n += 6;
                i++;
            } else {
                memcpy(out + n, msg + i, k);
                n += k;
                i += k;
            }
        }
    }
    return n;
}

bool admin_log_line(eddy_server_t *srv, int level, int loop, const char *msg, size_t len)
{
    int64_t t = now_ms();
    if (level >= EDDY_LOG_WARNING) {
        pthread_mutex_lock(&A.lock);
        recent_t *r = &A.ring[A.kept++ % ADMIN_RECENT];
        r->time_ms = t;
        r->level = level;
        size_t n = len < sizeof(r->msg) - 1 ? len : sizeof(r->msg) - 1;
        memcpy(r->msg, msg, n);
        r->msg[n] = '\0';
        pthread_mutex_unlock(&A.lock);
    }
    if (!A.json)
        return false;
    /* One JSON object per line (JSON Lines), written at once as the text lines are. */
    char line[4096];
    time_t secs = (time_t)(t / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t n = strftime(line, sizeof(line), "{\"time\":\"%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(line + n, sizeof(line) - n,
                          ".%03dZ\",\"level\":\"%s\",\"pid\":%d,\"loop\":%d,\"message\":\"",
                          (int)(t % 1000), level_names[level], (int)getpid(), loop < 0 ? 0 : loop);
    n += json_escape(line + n, sizeof(line) - n - 3, msg, len);
    memcpy(line + n, "\"}\n", 3);
    struct iovec iov = {line, n + 3};
    eddy_log_write(srv, &iov, 1);
    return true;
}

/* ---- HTTP ---- */

static void headers(eddy_response_t *resp, const char *type)
{
    eddy_response_header(resp, "Content-Type", type);
    eddy_response_header(resp, "Cache-Control", "no-store");
    eddy_response_header(resp, "X-Content-Type-Options", "nosniff");
    eddy_response_header(resp, "X-Frame-Options", "DENY");
    eddy_response_header(resp, "Referrer-Policy", "no-referrer");
}

static void answer(eddy_response_t *resp, int status, const char *type, const char *body,
                   size_t len)
{
    eddy_response_status(resp, status, NULL);
    headers(resp, type);
    if (status == 401)
        eddy_response_header(resp, "WWW-Authenticate",
                             "Basic realm=\"eddy admin\", charset=\"UTF-8\"");
    eddy_response_end(resp, body, len);
}

static bool digest(const char *s, size_t len, unsigned char out[32])
{
    unsigned int n = 0;
    return EVP_Digest(s, len, out, &n, EVP_sha256(), NULL) && n == 32;
}

/* True if the request's Basic credentials carry the password or the API key. Constant
 * time against each secret (digests compared with CRYPTO_memcmp); the decoded credentials
 * are wiped. */
static bool authorised(eddy_request_t *req)
{
    const char *h = eddy_request_header(req, "Authorization");
    if (h == NULL || strncasecmp(h, "Basic ", 6) != 0)
        return false;
    h += 6;
    while (*h == ' ')
        h++;
    size_t len = strlen(h);
    if (len == 0 || len > 4 * ((PASSWORD_MAX + 256) / 3 + 1) || len % 4 != 0)
        return false;
    unsigned char decoded[PASSWORD_MAX + 260];
    int n = EVP_DecodeBlock(decoded, (const unsigned char *)h, (int)len);
    if (n < 0)
        return false;
    while (n > 0 && len > 0 && h[--len] == '=') /* DecodeBlock counts the padding */
        n--;
    decoded[n] = '\0';
    bool ok = false;
    const char *colon = memchr(decoded, ':', (size_t)n);
    unsigned char given[32], want[32];
    if (colon != NULL &&
        digest(colon + 1, (size_t)n - (size_t)(colon + 1 - (const char *)decoded), given)) {
        const char *secrets[2] = {A.password, realtime_api_key()};
        for (int i = 0; i < 2; i++)
            if (secrets[i][0] != '\0' && digest(secrets[i], strlen(secrets[i]), want) &&
                CRYPTO_memcmp(given, want, 32) == 0)
                ok = true;
    }
    OPENSSL_cleanse(decoded, sizeof(decoded));
    OPENSSL_cleanse(given, sizeof(given));
    return ok;
}

typedef struct room_name {
    char *name;
    size_t sockets;
} room_name_t;

typedef struct room_list {
    room_name_t *v;
    size_t n;
} room_list_t;

static void collect_room(const char *room, void *arg)
{
    room_list_t *l = arg;
    if (l->n < ROOMS_EXAMINED && (l->v[l->n].name = strdup(room)) != NULL)
        l->n++;
}

static int by_size(const void *a, const void *b)
{
    const room_name_t *x = a, *y = b;
    return x->sockets < y->sockets ? 1 : x->sockets > y->sockets ? -1 : strcmp(x->name, y->name);
}

/* The namespace's largest rooms, names copied under the daemon's rooms lock and counted
 * after it (the layer's lock comes first, never inside ours). */
static json_t *nsp_json(eddy_rt_nsp_t *nsp)
{
    room_list_t l = {calloc(ROOMS_EXAMINED, sizeof(room_name_t)), 0};
    size_t total = l.v != NULL ? realtime_rooms(nsp, collect_room, &l) : 0;
    for (size_t i = 0; i < l.n; i++)
        l.v[i].sockets = eddy_rt_room_count(nsp, l.v[i].name);
    if (l.n > 0)
        qsort(l.v, l.n, sizeof(l.v[0]), by_size);
    json_t *rooms = json_array();
    for (size_t i = 0; i < l.n; i++) {
        if (i < ROOMS_LISTED)
            json_array_append_new(rooms, json_pack("{s:s,s:I}", "name", l.v[i].name, "sockets",
                                                   (json_int_t)l.v[i].sockets));
        free(l.v[i].name);
    }
    free(l.v);
    return json_pack("{s:s,s:I,s:I,s:o}", "name", eddy_rt_nsp_name(nsp), "sockets",
                     (json_int_t)eddy_rt_nsp_count(nsp), "rooms", (json_int_t)total,
                     "largest_rooms", rooms);
}

static json_t *errors_json(void)
{
    json_t *list = json_array();
    pthread_mutex_lock(&A.lock);
    uint64_t first = A.kept > ADMIN_RECENT ? A.kept - ADMIN_RECENT : 0;
    for (uint64_t i = first; i < A.kept; i++) {
        const recent_t *r = &A.ring[i % ADMIN_RECENT];
        /* jansson refuses invalid UTF-8: such a line is shown escaped */
        json_t *msg = json_string(r->msg);
        if (msg == NULL) {
            char esc[RECENT_BYTES * 6 + 8];
            size_t n = json_escape(esc, sizeof(esc), r->msg, strlen(r->msg));
            esc[n] = '\0';
            msg = json_string(esc);
        }
        json_array_append_new(list, json_pack("{s:I,s:s,s:o*}", "time_ms", (json_int_t)r->time_ms,
                                              "level", level_names[r->level], "message", msg));
    }
    pthread_mutex_unlock(&A.lock);
    return list;
}

/* Most broker nodes listed. */
#define ADMIN_NODES 256

/* The nodes: this one (self, taken), then, with a broker, the other alive nodes by id. */
static json_t *cluster_nodes(json_t *self)
{
    json_t *list = json_array();
    eddy_rt_t *rt = realtime_rt();
    const char *id = rt != NULL ? eddy_rt_node_id(rt) : NULL;
    if (id != NULL)
        json_object_set_new(self, "id", json_string(id));
    json_array_append_new(list, self);
    if (id == NULL)
        return list;
    char(*ids)[EDDY_RT_NODE_ID_SIZE] = malloc(ADMIN_NODES * sizeof(*ids));
    size_t n = ids != NULL ? eddy_rt_broker_nodes(rt, ids, ADMIN_NODES) : 0;
    for (size_t i = 0; i < n && i < ADMIN_NODES; i++) {
        if (strcmp(ids[i], id) != 0)
            json_array_append_new(list, json_pack("{s:s}", "id", ids[i]));
    }
    free(ids);
    return list;
}

/* The scale-out broker ([broker] redis_url) as /metrics shows it, or null without one. */
static json_t *broker_json(void)
{
    eddy_rt_broker_status_t b;
    if (!realtime_broker(&b))
        return json_null();
    static const char *const states[] = {"down", "restoring", "up"};
    json_t *o = json_pack(
        "{s:s,s:b,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "state",
        b.state >= 0 && b.state <= 2 ? states[b.state] : "down", "ready", b.ready, "nodes",
        (json_int_t)b.nodes, "published", (json_int_t)b.published_total, "delivered",
        (json_int_t)b.delivered_total, "buffered", (json_int_t)b.buffered, "buffered_bytes",
        (json_int_t)b.buffered_bytes, "dropped", (json_int_t)b.dropped_total, "retried",
        (json_int_t)b.retried_total, "slots_moved", (json_int_t)b.slots_moved_total, "reconnects",
        (json_int_t)b.reconnects_total, "gaps", (json_int_t)b.gaps_total, "master_switches",
        (json_int_t)b.master_switches_total, "messages_missed", (json_int_t)b.messages_missed_total,
        "subscriptions", (json_int_t)b.subscriptions);
    json_object_set_new(o, "round_trip_age_ms",
                        b.round_trip_age_ms != UINT64_MAX
                            ? json_integer((json_int_t)b.round_trip_age_ms)
                            : json_null());
    return o;
}

static void answer_stats(eddy_server_t *srv, eddy_response_t *resp)
{
    eddy_stats_t st;
    eddy_server_stats(srv, -1, &st);
    char host[256] = "";
    gethostname(host, sizeof(host) - 1);
    json_t *loops = json_array();
    eddy_stats_t one;
    for (int i = 0; eddy_server_stats(srv, i, &one) == 0; i++) {
        double last = 0, max = 0;
        bool lag = metrics_loop_lag(i, &last, &max);
        json_array_append_new(loops,
                              json_pack("{s:i,s:I,s:o,s:o}", "loop", i, "connections",
                                        (json_int_t)one.connections, "lag_ms",
                                        lag ? json_real(last * 1e3) : json_null(), "lag_max_ms",
                                        lag ? json_real(max * 1e3) : json_null()));
    }
    json_t *sio = json_null();
    eddy_rt_t *rt = realtime_rt();
    if (rt != NULL) {
        eddy_rt_stats_t rs;
        eddy_rt_stats(rt, &rs);
        json_t *nsps = json_array();
        eddy_rt_nsp_t *nsp;
        for (size_t i = 0; (nsp = realtime_nsp_at(i)) != NULL; i++)
            json_array_append_new(nsps, nsp_json(nsp));
        uint64_t ws = rs.clients[0][EDDY_RT_WEBSOCKET] + rs.clients[1][EDDY_RT_WEBSOCKET];
        uint64_t polling = rs.clients[0][EDDY_RT_POLLING] + rs.clients[1][EDDY_RT_POLLING];
        sio = json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:o}", "connections", (json_int_t)(ws + polling),
                        "websocket", (json_int_t)ws, "polling", (json_int_t)polling, "events_in",
                        (json_int_t)rs.events_received_total, "events_out",
                        (json_int_t)rs.events_sent_total, "broadcasts",
                        (json_int_t)rs.broadcasts_total, "namespaces", nsps);
    }
    json_t *node =
        json_pack("{s:s,s:i,s:s,s:I}", "name", host, "pid", (int)getpid(), "version",
                  eddy_version(), "uptime_seconds", (json_int_t)(time(NULL) - A.started));
    json_t *body = json_pack(
        "{s:I,s:o,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:o,s:o,s:o,s:o}", "time_ms",
        (json_int_t)now_ms(), "nodes", cluster_nodes(node), "connections",
        (json_int_t)st.connections, "websocket_connections", (json_int_t)st.websocket_connections,
        "http_requests", (json_int_t)st.http_requests_total, "messages_in",
        (json_int_t)st.messages_received_total, "messages_out", (json_int_t)st.messages_sent_total,
        "bytes_in", (json_int_t)st.bytes_received_total, "bytes_out",
        (json_int_t)st.bytes_sent_total, "log_lines_lost", (json_int_t)st.log_lines_lost_total,
        "access_log_lines_lost", (json_int_t)st.access_log_lines_lost_total, "loops", loops,
        "socketio", sio, "broker", broker_json(), "errors", errors_json());
    /* Six significant digits (lag 0.549391 ms): Jansson's default is 17, which spells the
     * binary noise of a double out (0.54939099999999996). */
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
    json_decref(body);
    if (text == NULL) {
        answer(resp, 500, "text/plain; charset=utf-8", "out of memory\n", 14);
        return;
    }
    answer(resp, 200, "application/json", text, strlen(text));
    free(text);
}

bool admin_request(eddy_server_t *srv, eddy_request_t *req, eddy_response_t *resp)
{
    const char *path = eddy_request_path(req);
    bool page = strcmp(path, "/admin") == 0 || strcmp(path, "/admin/") == 0;
    bool stats = strcmp(path, "/admin/stats") == 0;
    if (!page && !stats)
        return false;
    if (A.password[0] == '\0' && realtime_api_key()[0] == '\0') {
        static const char off[] = "the admin page is off: set [admin] password or [api] key\n";
        answer(resp, 404, "text/plain; charset=utf-8", off, sizeof(off) - 1);
        return true;
    }
    const char *method = eddy_request_method(req);
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        eddy_response_header(resp, "Allow", "GET, HEAD");
        answer(resp, 405, "text/plain; charset=utf-8", "method not allowed\n", 19);
        return true;
    }
    const char *ip = eddy_request_remote_ip(req);
    if (!throttle_request(req, resp)) {
        answer(resp, 429, "text/plain; charset=utf-8", "too many wrong tries\n", 21);
        return true;
    }
    if (!authorised(req)) {
        if (eddy_request_header(req, "Authorization") != NULL) {
            eddy_log(srv, EDDY_LOG_NOTICE, "admin: refused %s:%d: wrong credentials", ip,
                     eddy_request_remote_port(req));
            if (throttle_failed(ip))
                eddy_log(srv, EDDY_LOG_WARNING,
                         "admin: %s refused for %d s after %d wrong tries (admin page and API)", ip,
                         THROTTLE_WINDOW_S, THROTTLE_FAILURES);
        }
        answer(resp, 401, "text/plain; charset=utf-8", "authentication required\n", 24);
        return true;
    }
    if (stats) {
        answer_stats(srv, resp);
        return true;
    }
    eddy_response_header(resp, "Content-Security-Policy",
                         "default-src 'none'; script-src 'unsafe-inline'; style-src "
                         "'unsafe-inline'; connect-src 'self'; img-src 'self'; "
                         "frame-ancestors 'none'");
    answer(resp, 200, "text/html; charset=utf-8", admin_html, strlen(admin_html));
    return true;
}

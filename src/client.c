/* SPDX-License-Identifier: MIT */
/*
 * The WebSocket client (eddy_client_t): a state machine on one loop that resolves the
 * URL's host (on a thread of its own), connects without blocking, speaks TLS through
 * tls.c, sends the opening handshake and checks the answer (the handshake protocol below,
 * an eddy__proto_t that reads the response head with eddy__http_parse_response()), and
 * then hands the connection to the WebSocket session in the client role (ws.c). The
 * session calls back through client.h.
 *
 * One client has at most one connection at any moment: every way a connection ends (a
 * close frame, an error, the heartbeat, a timeout, the peer's EOF) goes through the
 * connection's reaping, which runs attempt_over() once; only that, or the reconnect
 * timer it arms, starts another attempt. A close and an error that race cannot start two.
 *
 * Methods from any thread: push and ping go to the session through the server's eddy_push()
 * (which hands them to the owning loop); the rest is posted to the client's loop as a
 * command. The offline queue is the one structure both sides touch, under a mutex, and
 * only while not connected: a connected push never takes the lock.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client.h"
#include "codec.h"
#include "log.h"
#include "tls.h"
#include "ws.h"

enum client_state {
    ST_IDLE,      /* never connected, or stopped for good */
    ST_RESOLVING, /* a resolver thread works on the host */
    ST_CONNECTING,
    ST_HANDSHAKE, /* TCP (and TLS) up, waiting for the 101 */
    ST_OPEN,
    ST_WAITING, /* to reconnect */
};

typedef struct queued {
    struct queued *next;
    uint64_t at_ms;
    int opcode;
    int flags;
    size_t len;
    char data[];
} queued_t;

struct code_range {
    uint16_t lo, hi;
};

struct eddy_client {
    eddy_server_t *srv;
    eddy__loop_t *loop;
    eddy_client_options_t opts; /* the strings point to copies owned here */
    char *strings;              /* the copies, one allocation (freed last) */
    bool tls;
    char *host; /* without brackets */
    char port[8];
    char *resource;     /* path and query */
    char *request;      /* the request's fixed lines, after the key: Host, Origin, ... */
    char *subprotocols; /* copy of opts.subprotocols, or NULL */
    struct code_range *stop_codes;
    size_t stop_code_count;
    struct ssl_ctx_st *tls_ctx;
    eddy__listener_t listener; /* what eddy__conn_new() reads: the TLS context */
    atomic_int refs;           /* the application's, and one per resolver in flight */
    _Atomic eddy_fd_t live_id; /* the open connection's id, 0 when none */

    pthread_mutex_t queue_lock; /* the offline queue */
    queued_t *queue_head, *queue_tail;
    size_t queue_count, queue_bytes;

    /* Loop-owned from here. */
    bool loop_ready; /* the timers' heap places are reserved */
    bool freed;      /* eddy_client_free() was carried out: no more callbacks */
    bool stopping;   /* disconnect asked: no reconnect */
    int state;
    uint32_t gen; /* attempt generation: stale resolver answers are ignored */
    int attempt;  /* reconnection attempts since the last reset */
    eddy__conn_t *conn;
    eddy__io_t connect_io;
    struct addrinfo *addrs, *next_addr;
    eddy__timer_t timer;      /* connect timeout, or the wait before a reconnect */
    eddy__timer_t ping_timer; /* heartbeat */
    bool ping_waiting;
    uint64_t ping_sent_ms;
    uint64_t opened_ms;
    bool error_reported; /* this attempt's failure was told already */
    /* How the open connection ended. */
    bool got_close;
    uint16_t close_code;
    uint16_t fail_code;
    char close_reason[124];
    uint64_t rng;
    struct free_wait *free_wait; /* eddy_client_free() waits for the loop (stand-alone) */
};

/* A stand-alone client's eddy_client_free() from outside the loop returns once the loop
 * let go of it: an application may then exit without racing the loop (OpenSSL's exit-time
 * cleanup against the client's TLS context, say). */
struct free_wait {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
};

#define DEFAULT_STOP_CODES "1000,1008,1009,3500-3999,4000-4099,4500-4999"
#define MAX_BODY           65536
/* Seconds: the connection keeps the time of its last input in 32 bits of milliseconds
 * (conn.h), right for 49.7 days; a week is more than any heartbeat needs. */
#define PING_TIMEOUT_MAX (7 * 86400.0)

static const eddy__proto_t handshake_proto;
static int handshake_send(eddy__conn_t *conn);
/* The client whose connection eddy__conn_new() is creating (for handshake_start()). */
static _Thread_local eddy_client_t *client_starting;

void eddy_client_options_init(eddy_client_options_t *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->connect_timeout = 10;
    opts->reconnect_delay_min = 0.5;
    opts->reconnect_delay_max = 20;
    opts->reconnect_factor = 2;
    opts->reconnect_jitter = 1;
    opts->reconnect_reset_after = 5;
    opts->reconnect_stop_codes = DEFAULT_STOP_CODES;
    opts->ping_timeout = 10;
    opts->queue_max_messages = 1000;
    opts->queue_max_bytes = 1048576;
    opts->queue_max_age = 60;
}

/* ---- the stand-alone clients' loop ---- */

static pthread_mutex_t runtime_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t runtime_cond = PTHREAD_COND_INITIALIZER;
static eddy_server_t *runtime;
static bool runtime_ready;

static void runtime_started(eddy_server_t *srv, void *user_data)
{
    pthread_mutex_lock(&runtime_lock);
    runtime_ready = true;
    pthread_cond_broadcast(&runtime_cond);
    pthread_mutex_unlock(&runtime_lock);
}

/* Never called: the client role delivers to clients. Required by eddy_server_start(). */
static void runtime_message(eddy_server_t *srv, const eddy_frame_t *frame, void *user_data)
{
}

static void *runtime_main(void *arg)
{
    eddy_server_start(arg);
    return NULL;
}

/* The stand-alone clients' server, started on first use. NULL if it cannot be. */
static eddy_server_t *runtime_get(void)
{
    pthread_mutex_lock(&runtime_lock);
    if (runtime == NULL) {
        eddy_server_t *srv = eddy_server_new(NULL, 0);
        pthread_t thread;
        if (srv == NULL || eddy_server_set(srv, "worker_num", "1") != 0 ||
            eddy_server_set(srv, "log_level", "warning") != 0) {
            eddy_server_free(srv);
            pthread_mutex_unlock(&runtime_lock);
            return NULL;
        }
        srv->clients_only = true;
        eddy_on_message(srv, runtime_message);
        eddy_on_start(srv, runtime_started);
        if (pthread_create(&thread, NULL, runtime_main, srv) != 0) {
            eddy_server_free(srv);
            pthread_mutex_unlock(&runtime_lock);
            return NULL;
        }
        pthread_detach(thread);
        while (!runtime_ready)
            pthread_cond_wait(&runtime_cond, &runtime_lock);
        runtime = srv;
    }
    pthread_mutex_unlock(&runtime_lock);
    return runtime;
}

/* ---- set-up ---- */

/* Parses a ws:// or wss:// URL into c. Returns false if it is not one. */
static bool parse_url(eddy_client_t *c, const char *url)
{
    const char *p;
    if (strncasecmp(url, "ws://", 5) == 0) {
        p = url + 5;
    } else if (strncasecmp(url, "wss://", 6) == 0) {
        p = url + 6;
        c->tls = true;
    } else {
        return false;
    }
    const char *host = p, *host_end;
    if (*p == '[') {
        host = ++p;
        while (*p && *p != ']')
            p++;
        if (*p != ']')
            return false;
        host_end = p++;
    } else {
        while (*p && *p != ':' && *p != '/' && *p != '?' && *p != '#' && *p != '@')
            p++;
        host_end = p;
    }
    if (host_end == host || *p == '@' || strchr(p, '#') != NULL)
        return false; /* no host, userinfo, or a fragment (RFC 6455 3) */
    long port = c->tls ? 443 : 80;
    if (*p == ':') {
        char *end;
        port = strtol(p + 1, &end, 10);
        if (end == p + 1 || port < 1 || port > 65535)
            return false;
        p = end;
    }
    if (*p != '\0' && *p != '/' && *p != '?')
        return false;
    for (const char *q = p; *q; q++)
        if ((unsigned char)*q <= ' ' || *q == 0x7f)
            return false;
    c->host = strndup(host, (size_t)(host_end - host));
    snprintf(c->port, sizeof(c->port), "%ld", port);
    if (*p == '?' || *p == '\0') {
        c->resource = malloc(strlen(p) + 2);
        if (c->resource != NULL)
            sprintf(c->resource, "/%s", p);
    } else {
        c->resource = strdup(p);
    }
    return c->host != NULL && c->resource != NULL;
}

/* Parses reconnect_stop_codes. */
static bool parse_stop_codes(eddy_client_t *c, const char *list)
{
    size_t n = 1;
    for (const char *p = list; *p; p++)
        n += *p == ',';
    c->stop_codes = calloc(n, sizeof(*c->stop_codes));
    if (c->stop_codes == NULL)
        return false;
    const char *p = list;
    while (*p) {
        char *end;
        long lo = strtol(p, &end, 10), hi = lo;
        if (end == p)
            return *p == '\0';
        p = end;
        if (*p == '-') {
            hi = strtol(p + 1, &end, 10);
            if (end == p + 1)
                return false;
            p = end;
        }
        while (*p == ' ')
            p++;
        if (lo < 1000 || hi > 4999 || lo > hi || (*p != ',' && *p != '\0'))
            return false;
        c->stop_codes[c->stop_code_count++] = (struct code_range){(uint16_t)lo, (uint16_t)hi};
        if (*p == ',')
            p++;
        while (*p == ' ')
            p++;
    }
    return true;
}

/* The request's lines after Sec-WebSocket-Key, from the options. */
static char *build_request_lines(const eddy_client_t *c)
{
    eddy__buf_t b = {0};
    bool v6 = strchr(c->host, ':') != NULL;
    bool default_port = strcmp(c->port, c->tls ? "443" : "80") == 0;
    int rc = eddy__buf_printf(&b,
                              "Host: %s%s%s%s%s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                              "Sec-WebSocket-Version: 13\r\n",
                              v6 ? "[" : "", c->host, v6 ? "]" : "", default_port ? "" : ":",
                              default_port ? "" : c->port);
    if (rc == 0 && c->opts.origin != NULL)
        rc = eddy__buf_printf(&b, "Origin: %s\r\n", c->opts.origin);
    if (rc == 0 && c->opts.subprotocols != NULL)
        rc = eddy__buf_printf(&b, "Sec-WebSocket-Protocol: %s\r\n", c->opts.subprotocols);
    if (rc == 0 && c->opts.compression)
        rc = eddy__buf_printf(&b, "Sec-WebSocket-Extensions: permessage-deflate; "
                                  "client_max_window_bits\r\n");
    for (size_t i = 0; rc == 0 && c->opts.headers != NULL && c->opts.headers[i] != NULL; i++)
        rc = eddy__buf_printf(&b, "%s\r\n", c->opts.headers[i]);
    if (rc == 0)
        rc = eddy__buf_append(&b, "\r\n", 3); /* with the NUL */
    if (rc != 0) {
        eddy__buf_free(&b);
        return NULL;
    }
    return b.data;
}

/* A header line given by the application: "Name: value" with a token name and no CR/LF. */
static bool header_valid(const char *line)
{
    const char *p = line;
    while (eddy__is_tchar(*p))
        p++;
    if (p == line || *p != ':')
        return false;
    for (; *p; p++)
        if (*p == '\r' || *p == '\n')
            return false;
    return true;
}

static bool text_valid(const char *s)
{
    for (; s != NULL && *s; s++)
        if (*s == '\r' || *s == '\n')
            return false;
    return true;
}

static void client_release(eddy_client_t *c)
{
    free(c->host);
    free(c->resource);
    free(c->request);
    free(c->subprotocols);
    free(c->stop_codes);
    if (c->tls_ctx != NULL)
        eddy__tls_ctx_free(c->tls_ctx);
    pthread_mutex_destroy(&c->queue_lock);
    free(c);
}

static void client_unref(eddy_client_t *c)
{
    if (atomic_fetch_sub(&c->refs, 1) == 1)
        client_release(c);
}

eddy_client_t *eddy_client_new(eddy_server_t *srv, const eddy_client_options_t *opts)
{
    if (opts == NULL || opts->url == NULL)
        return NULL;
    if (srv == NULL && (srv = runtime_get()) == NULL)
        return NULL;
    eddy__loop_t *loop = eddy__loop_here(srv);
    if (loop == NULL)
        loop = srv->loops[0];
    if (loop == NULL) {
        fprintf(stderr, "eddy_client_new: the server has not been started\n");
        return NULL;
    }
    eddy_client_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->srv = srv;
    c->loop = loop;
    c->opts = *opts;
    atomic_init(&c->refs, 1);
    atomic_init(&c->live_id, 0);
    pthread_mutex_init(&c->queue_lock, NULL);
    c->connect_io.fd = -1;
    eddy__timer_init(&c->timer, NULL);
    eddy__timer_init(&c->ping_timer, NULL);
    /* Strings the loop reads later are kept in copies. */
    c->opts.headers = NULL;
    c->opts.origin = NULL;
    c->opts.tls_ca_file = c->opts.tls_cert_file = c->opts.tls_key_file = NULL;
    c->opts.url = NULL;
    c->opts.reconnect_stop_codes = NULL;
    const char *why = NULL;
    if (!parse_url(c, opts->url))
        why = "not a ws:// or wss:// URL";
    else if (!parse_stop_codes(c, opts->reconnect_stop_codes ? opts->reconnect_stop_codes : ""))
        why = "reconnect_stop_codes is not a list of codes and ranges 1000-4999";
    else if (!text_valid(opts->origin) || !text_valid(opts->subprotocols))
        why = "origin or subprotocols contain a line break";
    else if (!(opts->connect_timeout > 0) || !(opts->reconnect_delay_min >= 0) ||
             !(opts->reconnect_delay_max >= opts->reconnect_delay_min) ||
             !(opts->reconnect_factor >= 1) || !(opts->reconnect_jitter >= 0) ||
             opts->reconnect_jitter > 1 || opts->reconnect_max_attempts < 0 ||
             !(opts->ping_interval >= 0) || !(opts->ping_timeout > 0) ||
             opts->ping_timeout > PING_TIMEOUT_MAX || !(opts->queue_max_age >= 0) ||
             opts->queue_overflow < 0 || opts->queue_overflow > 1)
        why = "an option is out of range";
    for (size_t i = 0; why == NULL && opts->headers != NULL && opts->headers[i] != NULL; i++)
        if (!header_valid(opts->headers[i]))
            why = "a header is not \"Name: value\"";
    if (why == NULL) {
        c->opts.headers = opts->headers;
        c->opts.origin = opts->origin;
        c->request = build_request_lines(c);
        c->opts.headers = NULL;
        c->opts.origin = NULL;
        c->subprotocols = opts->subprotocols ? strdup(opts->subprotocols) : NULL;
        c->opts.subprotocols = c->subprotocols;
        if (c->request == NULL || (opts->subprotocols != NULL && c->subprotocols == NULL))
            why = "out of memory";
    }
    if (why == NULL && c->tls &&
        eddy__tls_client_ctx_new(opts->tls_ca_file, opts->tls_cert_file, opts->tls_key_file,
                                 opts->tls_insecure, &c->tls_ctx) != 0)
        why = "TLS set-up failed";
    if (why != NULL) {
        fprintf(stderr, "eddy_client_new: %s\n", why);
        client_release(c);
        return NULL;
    }
    c->listener.srv = srv;
    c->listener.tls_ctx = c->tls_ctx;
    uint64_t seed;
    if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
        seed = (uint64_t)eddy__monotonic_ms() * 0x9E3779B97F4A7C15ull;
    c->rng = seed | 1;
    return c;
}

/* ---- events ---- */

static void report_error(eddy_client_t *c, int kind, int code, const char *message,
                         const char *body, size_t body_len)
{
    c->error_reported = true;
    eddy__log(c->srv, EDDY__LOG_DEBUG, "client %s:%s: %s", c->host, c->port, message);
    if (c->opts.on_error != NULL && !c->freed) {
        eddy_client_error_t err = {
            .kind = kind, .code = code, .message = message, .body = body, .body_len = body_len};
        c->opts.on_error(c, &err, c->opts.user_data);
    }
}

static double rand01(eddy_client_t *c)
{
    /* xorshift64*: spreading reconnects needs no cryptographic randomness. */
    c->rng ^= c->rng >> 12;
    c->rng ^= c->rng << 25;
    c->rng ^= c->rng >> 27;
    return (double)((c->rng * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
}

static bool is_stop_code(const eddy_client_t *c, int code)
{
    for (size_t i = 0; i < c->stop_code_count; i++)
        if (code >= c->stop_codes[i].lo && code <= c->stop_codes[i].hi)
            return true;
    return false;
}

/* ---- the offline queue ---- */

static queued_t *queue_take_all(eddy_client_t *c)
{
    queued_t *all = c->queue_head;
    c->queue_head = c->queue_tail = NULL;
    c->queue_count = c->queue_bytes = 0;
    return all;
}

/* Tells the application of messages that will not be sent, and frees them. */
static void drop_list(eddy_client_t *c, queued_t *list, int reason)
{
    while (list != NULL) {
        queued_t *next = list->next;
        if (c->opts.on_dropped != NULL && !c->freed)
            c->opts.on_dropped(c, list->data, list->len, list->opcode, reason, c->opts.user_data);
        free(list);
        list = next;
    }
}

/* Unlinks queued messages older than queue_max_age (queue_lock held) into *expired. */
static void queue_expire(eddy_client_t *c, uint64_t now_ms, queued_t **expired)
{
    if (c->opts.queue_max_age <= 0)
        return;
    uint64_t max_age = (uint64_t)(c->opts.queue_max_age * 1000.0);
    queued_t **tail = expired;
    while (*tail != NULL)
        tail = &(*tail)->next;
    while (c->queue_head != NULL && now_ms - c->queue_head->at_ms > max_age) {
        queued_t *q = c->queue_head;
        c->queue_head = q->next;
        if (c->queue_head == NULL)
            c->queue_tail = NULL;
        c->queue_count--;
        c->queue_bytes -= q->len;
        q->next = NULL;
        *tail = q;
        tail = &q->next;
    }
}

/* ---- attempts ---- */

static void start_attempt(eddy_client_t *c);

static void stop_timers(eddy_client_t *c)
{
    if (!c->loop_ready)
        return;
    eddy__timer_stop(c->loop, &c->timer);
    eddy__timer_stop(c->loop, &c->ping_timer);
}

static void close_connect_socket(eddy_client_t *c)
{
    if (c->connect_io.fd >= 0) {
        eddy__io_set(c->loop, &c->connect_io, 0);
        /* The client may be freed before the batch naming it is dispatched. */
        eddy__io_forget(c->loop, &c->connect_io);
        close(c->connect_io.fd);
        c->connect_io.fd = -1;
    }
    if (c->addrs != NULL)
        freeaddrinfo(c->addrs);
    c->addrs = c->next_addr = NULL;
}

/* Frees what the loop holds for a freed client, and the application's reference. */
static void finish_free(eddy_client_t *c)
{
    stop_timers(c);
    close_connect_socket(c);
    if (c->loop_ready) {
        eddy__timer_release(c->loop);
        eddy__timer_release(c->loop);
        c->loop_ready = false;
    }
    pthread_mutex_lock(&c->queue_lock);
    queued_t *left = queue_take_all(c);
    pthread_mutex_unlock(&c->queue_lock);
    drop_list(c, left, EDDY_CLIENT_DROP_CLOSED);
    c->state = ST_IDLE;
    c->opts.on_dropped = NULL; /* no callbacks once freed */
    struct free_wait *waiter = c->free_wait;
    client_unref(c);
    if (waiter != NULL) {
        pthread_mutex_lock(&waiter->lock);
        waiter->done = true;
        pthread_cond_signal(&waiter->cond);
        pthread_mutex_unlock(&waiter->lock);
    }
}

/* The current attempt or connection is over (once per attempt): reconnect or stop. */
static void attempt_over(eddy_client_t *c, bool was_open, int code)
{
    c->conn = NULL;
    atomic_store(&c->live_id, 0);
    stop_timers(c);
    close_connect_socket(c);
    c->gen++;
    if (c->freed) {
        finish_free(c);
        return;
    }
    if (was_open &&
        c->loop->now_ms - c->opened_ms >= (uint64_t)(c->opts.reconnect_reset_after * 1000.0))
        c->attempt = 0;
    bool retry =
        c->opts.reconnect && !c->stopping && !c->loop->stopping &&
        !(was_open && is_stop_code(c, code)) &&
        (c->opts.reconnect_max_attempts == 0 || c->attempt < c->opts.reconnect_max_attempts);
    if (!retry) {
        c->state = ST_IDLE;
        pthread_mutex_lock(&c->queue_lock);
        queued_t *left = queue_take_all(c);
        pthread_mutex_unlock(&c->queue_lock);
        drop_list(c, left, EDDY_CLIENT_DROP_CLOSED);
        if (c->opts.on_stopped != NULL)
            c->opts.on_stopped(c, c->opts.user_data);
        return;
    }
    double cap = c->opts.reconnect_delay_min;
    for (int i = 0; i < c->attempt && cap < c->opts.reconnect_delay_max; i++)
        cap *= c->opts.reconnect_factor;
    if (cap > c->opts.reconnect_delay_max)
        cap = c->opts.reconnect_delay_max;
    double delay = cap - c->opts.reconnect_jitter * cap * rand01(c);
    c->attempt++;
    c->state = ST_WAITING;
    eddy__timer_start(c->loop, &c->timer, (uint64_t)(delay * 1000.0));
    if (c->opts.on_reconnecting != NULL)
        c->opts.on_reconnecting(c, c->attempt, delay, c->opts.user_data);
}

/* An attempt failed before the connection opened. */
static void attempt_failed(eddy_client_t *c, int kind, int code, const char *message)
{
    report_error(c, kind, code, message, NULL, 0);
    attempt_over(c, false, 0);
}

/* The client's timer: the connect timeout, or the end of a wait to reconnect. */
static void on_timer(eddy__loop_t *loop, eddy__timer_t *timer)
{
    eddy_client_t *c = (eddy_client_t *)((char *)timer - offsetof(eddy_client_t, timer));
    switch (c->state) {
    case ST_WAITING:
        start_attempt(c);
        break;
    case ST_HANDSHAKE:
        report_error(c, EDDY_CLIENT_ERR_TIMEOUT, 0, "no handshake answer within connect_timeout",
                     NULL, 0);
        eddy__conn_close(c->conn, EDDY__CLOSE_ABORT); /* attempt_over() when reaped */
        break;
    case ST_RESOLVING:
    case ST_CONNECTING:
        attempt_failed(c, EDDY_CLIENT_ERR_TIMEOUT, 0, "connect_timeout passed");
        break;
    default:
        break;
    }
}

/* The heartbeat: a ping every ping_interval, and the connection is dead when nothing
 * arrived within ping_timeout of one. */
static void on_ping_timer(eddy__loop_t *loop, eddy__timer_t *timer)
{
    eddy_client_t *c = (eddy_client_t *)((char *)timer - offsetof(eddy_client_t, ping_timer));
    if (c->state != ST_OPEN || c->conn == NULL || c->conn->ending)
        return;
    uint64_t interval = (uint64_t)(c->opts.ping_interval * 1000.0);
    uint64_t timeout = (uint64_t)(c->opts.ping_timeout * 1000.0);
    if (c->ping_waiting) {
        /* Nothing arrived since the ping. */
        if (eddy__conn_quiet_ms(c->conn, loop->now_ms) > loop->now_ms - c->ping_sent_ms) {
            report_error(c, EDDY_CLIENT_ERR_HEARTBEAT, 0,
                         "no pong nor any other frame within ping_timeout", NULL, 0);
            eddy__conn_close(c->conn, EDDY__CLOSE_ABORT);
            return;
        }
        c->ping_waiting = false;
        eddy__timer_start(loop, timer, interval > timeout ? interval - timeout : 1);
        return;
    }
    c->ping_sent_ms = loop->now_ms;
    c->ping_waiting = true;
    eddy__ws_push(c->conn, "", 0, EDDY_WS_OPCODE_PING, EDDY_WS_FLAG_FIN);
    eddy__timer_start(loop, timer, timeout);
}

/* Connects to c->next_addr and on; false when no address is left. */
static bool try_next_address(eddy_client_t *c);

static void connect_ready(eddy__loop_t *loop, eddy__io_t *io, unsigned events)
{
    eddy_client_t *c = (eddy_client_t *)((char *)io - offsetof(eddy_client_t, connect_io));
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err != 0) {
        eddy__io_set(loop, io, 0);
        close(io->fd);
        io->fd = -1;
        if (!try_next_address(c)) {
            char message[160];
            snprintf(message, sizeof(message), "connect to %s port %s failed: %s", c->host, c->port,
                     strerror(err));
            attempt_failed(c, EDDY_CLIENT_ERR_CONNECT, err, message);
        }
        return;
    }
    struct sockaddr_storage peer;
    socklen_t peer_len = sizeof(peer);
    if (getpeername(io->fd, (struct sockaddr *)&peer, &peer_len) != 0)
        memset(&peer, 0, sizeof(peer));
    int fd = io->fd;
    eddy__io_set(loop, io, 0);
    io->fd = -1;
    freeaddrinfo(c->addrs);
    c->addrs = c->next_addr = NULL;
    c->state = ST_HANDSHAKE;
    /* handshake_start() finds the client here: eddy__conn_new() has no argument for it. */
    client_starting = c;
    eddy__conn_t *conn =
        eddy__conn_new(loop, fd, (struct sockaddr *)&peer, &c->listener, 0, &handshake_proto);
    client_starting = NULL;
    if (conn == NULL) {
        close(fd);
        attempt_failed(c, EDDY_CLIENT_ERR_NOMEM, 0, "out of memory for the connection");
        return;
    }
    c->conn = conn;
    if (handshake_send(conn) != 0) {
        report_error(c, EDDY_CLIENT_ERR_NOMEM, 0, "out of memory for the request", NULL, 0);
        eddy__conn_close(conn, EDDY__CLOSE_ABORT);
        return;
    }
    if (conn->tls != NULL) {
        if (eddy__tls_conn_connect(conn, c->host, !c->opts.tls_insecure) != 0) {
            report_error(c, EDDY_CLIENT_ERR_NOMEM, 0, "out of memory for TLS", NULL, 0);
            eddy__conn_close(conn, EDDY__CLOSE_ABORT);
            return;
        }
        /* The client speaks first: the loop starts the handshake once writable. */
        eddy__io_set(loop, &conn->io, EDDY__IO_READ | EDDY__IO_WRITE);
    }
}

static bool try_next_address(eddy_client_t *c)
{
    while (c->next_addr != NULL) {
        struct addrinfo *ai = c->next_addr;
        c->next_addr = ai->ai_next;
        int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
            close(fd);
            continue;
        }
        c->connect_io = (eddy__io_t){.fd = fd, .events = 0, .cb = connect_ready};
        if (eddy__io_set(c->loop, &c->connect_io, EDDY__IO_WRITE) != 0) {
            close(fd);
            c->connect_io.fd = -1;
            continue;
        }
        return true;
    }
    return false;
}

static void got_addresses(eddy_client_t *c, struct addrinfo *addrs)
{
    c->addrs = c->next_addr = addrs;
    c->state = ST_CONNECTING;
    if (!try_next_address(c)) {
        char message[160];
        snprintf(message, sizeof(message), "cannot connect to %s port %s: %s", c->host, c->port,
                 strerror(errno));
        attempt_failed(c, EDDY_CLIENT_ERR_CONNECT, errno, message);
    }
}

/* Name resolution on a thread of its own; the answer is posted to the client's loop. */
struct resolve_job {
    eddy__cmd_t base;
    eddy_client_t *client;
    uint32_t gen;
    int err;
    struct addrinfo *addrs;
};

static void resolved(eddy__loop_t *loop, eddy__cmd_t *cmd)
{
    struct resolve_job *job = (struct resolve_job *)cmd;
    eddy_client_t *c = job->client;
    if (c->freed || job->gen != c->gen || c->state != ST_RESOLVING) {
        if (job->addrs != NULL)
            freeaddrinfo(job->addrs);
    } else if (job->err != 0) {
        char message[200];
        snprintf(message, sizeof(message), "cannot resolve %s: %s", c->host,
                 gai_strerror(job->err));
        attempt_failed(c, EDDY_CLIENT_ERR_RESOLVE, job->err, message);
    } else {
        got_addresses(c, job->addrs);
    }
    free(job);
    client_unref(c);
}

static void *resolve_main(void *arg)
{
    struct resolve_job *job = arg;
    eddy_client_t *c = job->client;
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG};
    job->err = getaddrinfo(c->host, c->port, &hints, &job->addrs);
    job->base.fn = resolved;
    eddy__loop_post(c->loop, &job->base);
    return NULL;
}

static void start_attempt(eddy_client_t *c)
{
    c->gen++;
    c->error_reported = false;
    c->got_close = false;
    c->fail_code = 0;
    c->close_code = 0;
    c->close_reason[0] = '\0';
    c->state = ST_RESOLVING;
    eddy__timer_start(c->loop, &c->timer, (uint64_t)(c->opts.connect_timeout * 1000.0));
    /* Literal addresses need no resolver. */
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
    struct addrinfo *addrs;
    if (getaddrinfo(c->host, c->port, &hints, &addrs) == 0) {
        got_addresses(c, addrs);
        return;
    }
    struct resolve_job *job = calloc(1, sizeof(*job));
    pthread_t thread;
    pthread_attr_t attr;
    if (job == NULL) {
        attempt_failed(c, EDDY_CLIENT_ERR_NOMEM, 0, "out of memory for name resolution");
        return;
    }
    job->client = c;
    job->gen = c->gen;
    atomic_fetch_add(&c->refs, 1);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&thread, &attr, resolve_main, job);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        free(job);
        atomic_fetch_sub(&c->refs, 1);
        attempt_failed(c, EDDY_CLIENT_ERR_NOMEM, rc, "cannot start a resolver thread");
    }
}

/* ---- commands from any thread ---- */

enum { CMD_CONNECT, CMD_DISCONNECT, CMD_FREE };

struct client_cmd {
    eddy__cmd_t base;
    eddy_client_t *client;
    struct free_wait *free_wait;
    int op;
    uint16_t code;
    size_t reason_len;
    char reason[124];
};

static bool loop_prepare(eddy_client_t *c)
{
    if (c->loop_ready)
        return true;
    if (eddy__timer_reserve(c->loop) != 0)
        return false;
    if (eddy__timer_reserve(c->loop) != 0) {
        eddy__timer_release(c->loop);
        return false;
    }
    eddy__timer_init(&c->timer, on_timer);
    eddy__timer_init(&c->ping_timer, on_ping_timer);
    c->loop_ready = true;
    return true;
}

/* Ends whatever is under way, as eddy_client_disconnect() or eddy_client_free() ask. */
static void stop_now(eddy_client_t *c, uint16_t code, const char *reason, size_t reason_len)
{
    switch (c->state) {
    case ST_OPEN:
        if (!c->conn->ending)
            eddy__ws_send_close(c->conn, code, reason, reason_len, true);
        break;
    case ST_HANDSHAKE:
        eddy__conn_close(c->conn, EDDY__CLOSE_ABORT);
        break;
    case ST_RESOLVING:
    case ST_CONNECTING:
    case ST_WAITING:
        attempt_over(c, false, 0);
        break;
    default:
        if (c->freed)
            finish_free(c);
        break;
    }
}

static void client_cmd_run(eddy__loop_t *loop, eddy__cmd_t *cmd)
{
    struct client_cmd *cc = (struct client_cmd *)cmd;
    eddy_client_t *c = cc->client;
    switch (cc->op) {
    case CMD_CONNECT:
        if (c->freed || (c->state != ST_IDLE))
            break;
        if (!loop_prepare(c)) {
            report_error(c, EDDY_CLIENT_ERR_NOMEM, 0, "out of memory for the client's timers", NULL,
                         0);
            break;
        }
        c->stopping = false;
        c->attempt = 0;
        start_attempt(c);
        break;
    case CMD_DISCONNECT:
        if (c->freed)
            break;
        c->stopping = true;
        stop_now(c, cc->code, cc->reason, cc->reason_len);
        break;
    case CMD_FREE:
        c->free_wait = cc->free_wait;
        c->freed = true;
        c->stopping = true;
        if (c->state == ST_OPEN) {
            eddy__conn_close(c->conn, EDDY__CLOSE_ABORT);
        } else {
            stop_now(c, 0, NULL, 0);
        }
        break;
    }
    free(cc);
}

static int post_waiting(eddy_client_t *c, int op, uint16_t code, const char *reason,
                        size_t reason_len, struct free_wait *free_wait)
{
    struct client_cmd *cc = calloc(1, sizeof(*cc));
    if (cc == NULL)
        return EDDY_ENOMEM;
    cc->free_wait = free_wait;
    cc->base.fn = client_cmd_run;
    cc->client = c;
    cc->op = op;
    cc->code = code;
    cc->reason_len = reason_len;
    if (reason_len)
        memcpy(cc->reason, reason, reason_len);
    eddy__loop_post(c->loop, &cc->base);
    return 0;
}

static int post(eddy_client_t *c, int op, uint16_t code, const char *reason, size_t reason_len)
{
    return post_waiting(c, op, code, reason, reason_len, NULL);
}

int eddy_client_connect(eddy_client_t *client)
{
    return post(client, CMD_CONNECT, 0, NULL, 0);
}

int eddy_client_disconnect(eddy_client_t *client, int code, const char *reason)
{
    size_t reason_len = reason ? strlen(reason) : 0;
    if (!(code == 1000 || code == 1001 || (code >= 3000 && code <= 4999)) || reason_len > 123)
        return EDDY_EINVAL;
    if (reason_len && !eddy_utf8_valid(reason, reason_len))
        return EDDY_EUTF8;
    return post(client, CMD_DISCONNECT, (uint16_t)code, reason, reason_len);
}

void eddy_client_free(eddy_client_t *client)
{
    if (client == NULL)
        return;
    struct free_wait waiter = {.done = false};
    bool wait = client->srv->clients_only && eddy__loop_here(client->srv) == NULL;
    if (wait) {
        pthread_mutex_init(&waiter.lock, NULL);
        pthread_cond_init(&waiter.cond, NULL);
    }
    /* Out of memory here would leak the client: retry until the command is made. */
    while (post_waiting(client, CMD_FREE, 0, NULL, 0, wait ? &waiter : NULL) != 0)
        usleep(1000);
    if (!wait)
        return;
    pthread_mutex_lock(&waiter.lock);
    while (!waiter.done)
        pthread_cond_wait(&waiter.cond, &waiter.lock);
    pthread_mutex_unlock(&waiter.lock);
    pthread_mutex_destroy(&waiter.lock);
    pthread_cond_destroy(&waiter.cond);
}

eddy_fd_t eddy_client_id(const eddy_client_t *client)
{
    return atomic_load(&((eddy_client_t *)client)->live_id);
}

int eddy_client_ping(eddy_client_t *client, const void *data, size_t len)
{
    eddy_fd_t id = atomic_load(&client->live_id);
    if (len > 125)
        return EDDY_EINVAL;
    if (id == 0)
        return EDDY_ESTATE;
    int rc = eddy_push(client->srv, id, data, len, EDDY_WS_OPCODE_PING, EDDY_WS_FLAG_FIN);
    return rc == EDDY_ENOTFOUND ? EDDY_ESTATE : rc;
}

int eddy_client_push(eddy_client_t *client, const void *data, size_t len, int opcode, int flags)
{
    eddy_fd_t id = atomic_load(&client->live_id);
    if (id != 0) {
        int rc = eddy_push(client->srv, id, data, len, opcode, flags);
        if (rc != EDDY_ENOTFOUND && rc != EDDY_ESTATE)
            return rc;
    }
    /* Not connected: the offline queue, for whole data messages. */
    eddy_client_t *c = client;
    if (!c->opts.reconnect || c->opts.queue_max_messages == 0 || !(flags & EDDY_WS_FLAG_FIN) ||
        (opcode != EDDY_WS_OPCODE_TEXT && opcode != EDDY_WS_OPCODE_BINARY))
        return EDDY_ESTATE;
    if (data == NULL && len > 0)
        return EDDY_EINVAL;
    if (len > c->opts.queue_max_bytes)
        return EDDY_ETOOBIG;
    queued_t *q = malloc(sizeof(*q) + len);
    if (q == NULL)
        return EDDY_ENOMEM;
    q->next = NULL;
    q->at_ms = eddy__monotonic_ms();
    q->opcode = opcode;
    q->flags = flags;
    q->len = len;
    if (len)
        memcpy(q->data, data, len);
    queued_t *expired = NULL, *overflow = NULL, **overflow_tail = &overflow;
    pthread_mutex_lock(&c->queue_lock);
    if ((id = atomic_load(&c->live_id)) != 0) {
        /* Opened meanwhile: the queue was flushed before the id was published. */
        pthread_mutex_unlock(&c->queue_lock);
        free(q);
        return eddy_push(c->srv, id, data, len, opcode, flags);
    }
    queue_expire(c, q->at_ms, &expired);
    int rc = EDDY_QUEUED;
    while (c->queue_count + 1 > c->opts.queue_max_messages ||
           c->queue_bytes + len > c->opts.queue_max_bytes) {
        if (c->opts.queue_overflow != EDDY_CLIENT_QUEUE_DROP_OLDEST || c->queue_head == NULL) {
            rc = EDDY_EDROPPED;
            break;
        }
        queued_t *old = c->queue_head;
        c->queue_head = old->next;
        if (c->queue_head == NULL)
            c->queue_tail = NULL;
        c->queue_count--;
        c->queue_bytes -= old->len;
        old->next = NULL;
        *overflow_tail = old;
        overflow_tail = &old->next;
    }
    if (rc == EDDY_QUEUED) {
        if (c->queue_tail != NULL)
            c->queue_tail->next = q;
        else
            c->queue_head = q;
        c->queue_tail = q;
        c->queue_count++;
        c->queue_bytes += len;
    } else {
        free(q);
    }
    pthread_mutex_unlock(&c->queue_lock);
    drop_list(c, expired, EDDY_CLIENT_DROP_EXPIRED);
    drop_list(c, overflow, EDDY_CLIENT_DROP_OVERFLOW);
    return rc;
}

/* ---- the opening handshake ---- */

typedef struct handshake {
    eddy_client_t *client;
    char key[25];
    char accept[EDDY_WS_ACCEPT_LEN + 1];
} handshake_t;

static eddy_client_t *conn_client(const eddy__conn_t *conn)
{
    return atomic_load_explicit(&((eddy__conn_t *)conn)->user_data, memory_order_relaxed);
}

static int handshake_start(eddy__conn_t *conn)
{
    eddy_client_t *c = client_starting;
    handshake_t *hs = calloc(1, sizeof(*hs));
    if (hs == NULL)
        return EDDY_ENOMEM;
    hs->client = c;
    conn->proto_state = hs;
    atomic_store_explicit(&conn->user_data, c, memory_order_relaxed);
    conn->client_owned = true;
    uint8_t nonce[16];
    if (getrandom(nonce, sizeof(nonce), 0) != sizeof(nonce))
        return -EIO;
    eddy__base64_encode(hs->key, nonce, sizeof(nonce));
    eddy_ws_accept_key(hs->key, 24, hs->accept);
    return 0;
}

/* Sends the request, once eddy__conn_new() returned the connection: output queued from
 * start() would be left on the loop's flush list by a later failure of eddy__conn_new(),
 * which frees the connection. */
static int handshake_send(eddy__conn_t *conn)
{
    eddy_client_t *c = conn_client(conn);
    handshake_t *hs = conn->proto_state;
    eddy__buf_t req = {0};
    int rc = eddy__buf_printf(&req, "GET %s HTTP/1.1\r\nSec-WebSocket-Key: %s\r\n%s", c->resource,
                              hs->key, c->request);
    if (rc == 0)
        rc = eddy__conn_write(conn, req.data, req.len);
    eddy__buf_free(&req);
    return rc;
}

/* Finds the one header called name; NULL if absent, and *dup when it appears twice. */
static const eddy__http_header_t *find_header(const char *buf, const eddy__http_header_t *h,
                                              size_t n, const char *name, bool *dup)
{
    const eddy__http_header_t *found = NULL;
    for (size_t i = 0; i < n; i++) {
        if (!eddy__span_eq(buf, h[i].name, name))
            continue;
        if (found != NULL)
            *dup = true;
        found = &h[i];
    }
    return found;
}

/* True if the comma-separated list holds name exactly (subprotocols are case-sensitive). */
static bool list_has(const char *list, const char *name, size_t len)
{
    const char *p = list;
    while (p != NULL && *p) {
        while (*p == ' ' || *p == ',' || *p == '\t')
            p++;
        const char *start = p;
        while (*p && *p != ',' && *p != ' ' && *p != '\t')
            p++;
        if ((size_t)(p - start) == len && len > 0 && memcmp(start, name, len) == 0)
            return true;
    }
    return false;
}

/* The 101 checks out: open the WebSocket session and tell the application. */
static void open_session(eddy__conn_t *conn, eddy_client_t *c, char *buf,
                         const eddy__http_header_t *h, size_t n, const eddy__pmd_t *pmd)
{
    /* The open event's view of the headers: names and values NUL-terminated in a copy. */
    eddy_header_t *headers = calloc(n + 1, sizeof(*headers));
    char *copy = NULL;
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += h[i].name.len + h[i].value.len + 2;
    if (headers != NULL)
        copy = malloc(total + 1);
    const char *subprotocol = NULL, *extensions = NULL;
    if (copy != NULL) {
        char *p = copy;
        for (size_t i = 0; i < n; i++) {
            headers[i].name = p;
            memcpy(p, buf + h[i].name.off, h[i].name.len);
            p += h[i].name.len;
            *p++ = '\0';
            headers[i].value = p;
            memcpy(p, buf + h[i].value.off, h[i].value.len);
            p += h[i].value.len;
            *p++ = '\0';
            if (strcasecmp(headers[i].name, "sec-websocket-protocol") == 0)
                subprotocol = headers[i].value;
            else if (strcasecmp(headers[i].name, "sec-websocket-extensions") == 0)
                extensions = headers[i].value;
        }
    }
    free(conn->proto_state);
    conn->proto_state = NULL;
    if (eddy__ws_start(conn, EDDY__WS_CLIENT, pmd) != 0 || copy == NULL) {
        report_error(c, EDDY_CLIENT_ERR_NOMEM, 0, "out of memory opening the session", NULL, 0);
        eddy__conn_close(conn, EDDY__CLOSE_ABORT);
        free(headers);
        free(copy);
        return;
    }
    c->state = ST_OPEN;
    c->opened_ms = conn->loop->now_ms;
    eddy__timer_stop(c->loop, &c->timer);
    /* Messages pushed while offline go first, in order; the id is published after them,
     * under the lock, so a push racing with this lands behind them. */
    queued_t *expired = NULL;
    pthread_mutex_lock(&c->queue_lock);
    queue_expire(c, eddy__monotonic_ms(), &expired);
    queued_t *ready = queue_take_all(c);
    for (queued_t *q = ready; q != NULL && !conn->ending; q = q->next)
        eddy__ws_push(conn, q->data, q->len, q->opcode, q->flags);
    atomic_store(&c->live_id, conn->id);
    pthread_mutex_unlock(&c->queue_lock);
    while (ready != NULL) {
        queued_t *next = ready->next;
        free(ready);
        ready = next;
    }
    drop_list(c, expired, EDDY_CLIENT_DROP_EXPIRED);
    if (c->opts.ping_interval > 0) {
        c->ping_waiting = false;
        eddy__timer_start(c->loop, &c->ping_timer, (uint64_t)(c->opts.ping_interval * 1000.0));
    }
    if (c->opts.on_open != NULL) {
        eddy_client_open_t open = {.status = 101,
                                   .subprotocol = subprotocol,
                                   .extensions = extensions,
                                   .headers = headers,
                                   .num_headers = n};
        c->opts.on_open(c, &open, c->opts.user_data);
    }
    free(headers);
    free(copy);
}

static void handshake_failed(eddy__conn_t *conn, int kind, int code, const char *message,
                             const char *body, size_t body_len)
{
    report_error(conn_client(conn), kind, code, message, body, body_len);
    eddy__conn_close(conn, EDDY__CLOSE_ABORT);
}

static size_t handshake_process(eddy__conn_t *conn, char *buf, size_t len)
{
    eddy_client_t *c = conn_client(conn);
    handshake_t *hs = conn->proto_state;
    eddy__http_parser_t parser;
    eddy__http_parser_init(&parser, c->srv->opts.http_max_header_size);
    eddy__http_response_t resp;
    eddy__http_header_t h[EDDY__HTTP_MAX_HEADERS];
    size_t n = EDDY__HTTP_MAX_HEADERS;
    ssize_t head_len = eddy__http_parse_response(&parser, buf, len, &resp, h, &n);
    if (head_len == EDDY_AGAIN)
        return 0; /* the connection keeps the bytes and calls again with more */
    if (head_len < 0) {
        handshake_failed(conn, EDDY_CLIENT_ERR_HANDSHAKE, 0,
                         head_len == EDDY_ETOOBIG ? "response head too large"
                                                  : "malformed HTTP response",
                         NULL, 0);
        return len;
    }
    if (resp.status != 101) {
        /* The body, if it came (Content-Length), for the error event. */
        size_t have = len - (size_t)head_len;
        if (resp.content_length > 0 && (uint64_t)resp.content_length <= MAX_BODY &&
            have < (size_t)resp.content_length)
            return 0;
        size_t body_len = have;
        if (resp.content_length >= 0 && (uint64_t)resp.content_length < body_len)
            body_len = (size_t)resp.content_length;
        if (body_len > MAX_BODY)
            body_len = MAX_BODY;
        char *body = malloc(body_len + 1);
        char message[96];
        snprintf(message, sizeof(message), "the server answered %d instead of 101", resp.status);
        if (body != NULL) {
            memcpy(body, buf + head_len, body_len);
            body[body_len] = '\0';
        }
        handshake_failed(conn, EDDY_CLIENT_ERR_HTTP_STATUS, resp.status, message, body,
                         body ? body_len : 0);
        free(body);
        return len;
    }
    bool dup = false;
    const eddy__http_header_t *accept = find_header(buf, h, n, "sec-websocket-accept", &dup);
    const eddy__http_header_t *proto = find_header(buf, h, n, "sec-websocket-protocol", &dup);
    const eddy__http_header_t *ext = find_header(buf, h, n, "sec-websocket-extensions", &dup);
    const char *why = NULL;
    eddy__pmd_t pmd;
    bool compressed = false;
    if (!resp.upgrade_websocket || !resp.connection_upgrade)
        why = "101 without Upgrade: websocket and Connection: Upgrade";
    else if (dup)
        why = "a Sec-WebSocket-* header appears twice";
    else if (accept == NULL || accept->value.len != EDDY_WS_ACCEPT_LEN ||
             memcmp(buf + accept->value.off, hs->accept, EDDY_WS_ACCEPT_LEN) != 0)
        why = "bad Sec-WebSocket-Accept";
    else if (proto != NULL && !list_has(c->subprotocols, buf + proto->value.off, proto->value.len))
        why = "the server chose a subprotocol that was not offered";
    else if (ext != NULL &&
             !(c->opts.compression &&
               (compressed = eddy__pmd_client_accept(buf + ext->value.off, ext->value.len, &pmd))))
        why = "the server answered an extension that was not offered";
    if (why != NULL) {
        handshake_failed(conn, EDDY_CLIENT_ERR_HANDSHAKE, 0, why, NULL, 0);
        return len;
    }
    open_session(conn, c, buf, h, n, compressed ? &pmd : NULL);
    return (size_t)head_len;
}

static void handshake_timeout(eddy__conn_t *conn)
{
    eddy__conn_close(conn, EDDY__CLOSE_ABORT);
}

static void handshake_drained(eddy__conn_t *conn)
{
}

static void handshake_end(eddy__conn_t *conn, uint16_t code, const char *reason, size_t reason_len,
                          bool wait_for_peer)
{
    eddy__conn_close(conn, EDDY__CLOSE_ABORT);
}

static void handshake_free(eddy__conn_t *conn)
{
    free(conn->proto_state);
    conn->proto_state = NULL;
}

static const eddy__proto_t handshake_proto = {
    .name = "WebSocket client handshake",
    .start = handshake_start,
    .process = handshake_process,
    .timeout = handshake_timeout,
    .drained = handshake_drained,
    .end = handshake_end,
    .closed = eddy__client_session_closed,
    .free = handshake_free,
};

/* ---- hooks of the WebSocket session ---- */

void eddy__client_deliver(eddy__conn_t *conn, eddy_frame_t *frame)
{
    eddy_client_t *c = conn_client(conn);
    if (c->opts.on_message != NULL && !c->freed)
        c->opts.on_message(c, frame, c->opts.user_data);
}

void eddy__client_close_frame(eddy__conn_t *conn, uint16_t code, const char *reason,
                              size_t reason_len)
{
    eddy_client_t *c = conn_client(conn);
    c->got_close = true;
    c->close_code = code;
    memcpy(c->close_reason, reason, reason_len);
    c->close_reason[reason_len] = '\0';
}

void eddy__client_failed(eddy__conn_t *conn, uint16_t code, const char *why)
{
    eddy_client_t *c = conn_client(conn);
    /* Once our close frame is out its code is the one sent: bytes the server sends after
     * it (after its own close frame, say) change neither that nor the close event. */
    if (c->fail_code != 0 || eddy__ws_close_sent(conn))
        return;
    c->fail_code = code;
    snprintf(c->close_reason, sizeof(c->close_reason), "%s", why);
    report_error(c, EDDY_CLIENT_ERR_PROTOCOL, code, why, NULL, 0);
}

void eddy__client_drained(eddy__conn_t *conn)
{
    eddy_client_t *c = conn_client(conn);
    if (c->opts.on_drain != NULL && !c->freed)
        c->opts.on_drain(c, c->opts.user_data);
}

void eddy__client_session_closed(eddy__conn_t *conn)
{
    eddy_client_t *c = conn_client(conn);
    if (c == NULL)
        return; /* failed in eddy__conn_new(), which has no client to tell yet */
    atomic_store_explicit(&conn->user_data, NULL, memory_order_relaxed);
    if (c->state != ST_OPEN) {
        if (!c->error_reported) {
            const char *text = NULL;
            char message[320];
            if (conn->tls != NULL && conn->tls_handshaking &&
                eddy__tls_verify_result(conn, &text) != 0) {
                long result = eddy__tls_verify_result(conn, &text);
                snprintf(message, sizeof(message), "certificate verification failed: %s", text);
                report_error(c, EDDY_CLIENT_ERR_TLS_VERIFY, (int)result, message, NULL, 0);
            } else if (conn->tls != NULL && conn->tls_handshaking) {
                report_error(c, EDDY_CLIENT_ERR_TLS, 0, "TLS handshake failed", NULL, 0);
            } else {
                report_error(c, EDDY_CLIENT_ERR_CLOSED, 0,
                             "the connection ended before the handshake's answer", NULL, 0);
            }
        }
        attempt_over(c, false, 0);
        return;
    }
    int code = 1006;
    bool clean = false;
    if (c->fail_code != 0) {
        code = c->fail_code;
    } else if (c->got_close) {
        code = c->close_code;
        clean = true;
    } else {
        c->close_reason[0] = '\0';
    }
    if (c->opts.on_close != NULL && !c->freed)
        c->opts.on_close(c, code, c->close_reason, clean, c->opts.user_data);
    attempt_over(c, true, code);
}

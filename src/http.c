/* SPDX-License-Identifier: MIT */
/*
 * The HTTP/1.1 server session (eddy__http_proto): reads requests with the pure parser from
 * codec.h (keep-alive and pipelining included), hands upgrade requests to the server's
 * upgrade hook (srv->http_upgrade, the WebSocket session) and the rest to the request callback,
 * and implements the request and response objects.
 *
 * A request is parsed where it lies, in the loop's receive buffer or in conn->in when it
 * arrived in pieces; its strings are NUL-terminated in place once the whole request is
 * there (the delimiters after them are no longer needed). A Content-Length body is used
 * in place; a chunked body is decoded into a buffer of its own.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "http.h"
#include "log.h"

enum stage {
    STAGE_HEAD,
    STAGE_BODY_LENGTH,
    STAGE_BODY_CHUNKED,
    STAGE_RESPONDING, /* dispatched; a detached response is pending */
    STAGE_UPGRADING,  /* an upgrade request waits for the application's answer (held) */
};

/* An upgrade request kept for its deferred answer (eddy__http_hold()): the parsed head,
 * and in data[] the request's bytes as request_prepare() left them (strings
 * NUL-terminated), then the path, then the body, each NUL-terminated. */
typedef struct held_request {
    eddy__http_head_t head;
    size_t path_off, body_off, body_len;
    char data[];
} held_request_t;

/* Per connection, only what must survive between reads: the parsed head itself lives in
 * the loop (one request is dispatched at a time), and is parsed again in the rare case of
 * a body that arrives over several reads. */
typedef struct eddy__http_state eddy__http_state_t;
struct eddy__http_state {
    eddy__http_parser_t parser;
    uint8_t stage;
    bool waiting_keepalive; /* the timer is the idle keep-alive one, not the header one */
    bool body_deadline;     /* the timer is the body's deadline (armed once per body) */
    size_t head_len;
    size_t raw_body_done; /* chunked: raw bytes after the head already decoded */
    eddy__chunked_t chunked;
    int64_t content_length;
    eddy__buf_t body; /* chunked bodies, decoded */
    eddy_response_t *resp;
    held_request_t *held;           /* STAGE_UPGRADING: the request, for its answer */
    eddy__http_state_t *next_spare; /* in the loop's cache of spare states */
};

/* Per loop (EDDY__SLOT_HTTP), made when its first connection starts. */
typedef struct http_loop {
    /* The request being dispatched (one at a time per loop): its parsed head, the request
     * object handed to callbacks, and the arena of strings made for it. */
    eddy__http_head_t head;
    eddy_request_t req;
    eddy__arena_t arena;
    eddy__http_state_t *state_cache; /* spare states, linked by next_spare */
    size_t state_cache_len;
    /* The current time as the Date header and the access log write it, formatted once per
     * second (date_sec) for both. */
    time_t date_sec;
    char date[40];     /* "Sun, 06 Nov 1994 08:49:37 GMT" */
    char log_date[32]; /* "06/Nov/1994:09:49:37 +0100" (local time) */
} http_loop_t;

static const char bad_request_page[] = "<html><body><h2>HTTP 400 Bad Request</h2><hr><i>Powered "
                                       "by eddy</i></body></html>";

static const char *status_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 426:
        return "Upgrade Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return status < 200   ? "Informational"
               : status < 300 ? "OK"
               : status < 400 ? "Redirect"
               : status < 500 ? "Client Error"
                              : "Server Error";
    }
}

static const eddy_server_t *conn_srv(const eddy__conn_t *conn)
{
    return conn->loop->srv;
}

static eddy__http_state_t *http_state(const eddy__conn_t *conn)
{
    return conn->proto_state;
}

/* The loop's HTTP state: made by http_start(), so every connection's loop has it. */
static http_loop_t *http_loop(const eddy__loop_t *loop)
{
    return eddy__loop_slot(loop, EDDY__SLOT_HTTP);
}

static const char *log_date(eddy__loop_t *loop);

/* Still speaking HTTP: not closing, not upgraded. */
static bool http_open(const eddy__conn_t *conn)
{
    return conn->proto == &eddy__http_proto && !conn->ending;
}

/* ---- state ---- */

static void state_reset(eddy__http_state_t *st, const eddy__options_t *opts)
{
    eddy__http_parser_init(&st->parser, opts->http_max_header_size);
    st->stage = STAGE_HEAD;
    st->head_len = 0;
    st->body_deadline = false;
    st->raw_body_done = 0;
    st->body.len = 0;
}

/* HTTP states are recycled through a per-loop list: a connection needs one only until it
 * upgrades, and freeing each back to malloc would leave a small hole beside every
 * long-lived connection that its later allocations cannot fill. */
#define STATE_CACHE_MAX 256

static void http_loop_free(void *data)
{
    http_loop_t *hl = data;
    while (hl->state_cache != NULL) {
        eddy__http_state_t *st = hl->state_cache;
        hl->state_cache = st->next_spare;
        free(st);
    }
    eddy__arena_free(&hl->arena);
}

static int http_start(eddy__conn_t *conn)
{
    http_loop_t *hl = http_loop(conn->loop);
    if (hl == NULL && (hl = eddy__loop_slot_make(conn->loop, EDDY__SLOT_HTTP, sizeof(*hl),
                                                 http_loop_free)) == NULL)
        return EDDY_ENOMEM;
    eddy__http_state_t *st = hl->state_cache;
    if (st != NULL) {
        hl->state_cache = st->next_spare;
        hl->state_cache_len--;
        memset(st, 0, sizeof(*st));
    } else if ((st = calloc(1, sizeof(*st))) == NULL) {
        return EDDY_ENOMEM;
    }
    conn->proto_state = st;
    state_reset(st, &conn_srv(conn)->opts);
    return eddy__conn_set_timeout(conn, conn_srv(conn)->opts.http_header_timeout_ms);
}

static void response_free(eddy_response_t *resp)
{
    free(resp->reason);
    eddy__buf_free(&resp->headers);
    eddy__buf_free(&resp->access);
    free(resp);
}

/* ---- access log ---- */

#define ACCESS_FLUSH_AT (64 * 1024) /* buffered bytes that are written at once */

static uint64_t monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void access_flush_deferred(eddy_server_t *srv, void *arg)
{
    eddy__access_log_flush(arg);
}

/* Appends a line: its start, then status, body bytes and duration. The first line of a
 * batch defers the write to the end of the loop iteration (so the loop pays nothing per
 * iteration for an access log that is off). */
static void access_append(eddy__loop_t *loop, const char *start, size_t start_len, int status,
                          size_t bytes, uint64_t duration_ns)
{
    eddy__buf_t *out = eddy__access_log_buf(loop);
    if (out == NULL)
        return; /* out of memory: the line is lost */
    size_t before = out->len;
    if (eddy__buf_append(out, start, start_len) != 0 ||
        eddy__buf_printf(out, "%d %zu %" PRIu64 ".%06" PRIu64 "\n", status, bytes,
                         duration_ns / 1000000000u, duration_ns / 1000u % 1000000u) != 0)
        out->len = before; /* out of memory: the line is lost, not half written */
    if (out->len >= ACCESS_FLUSH_AT ||
        (before == 0 && out->len > 0 && eddy_defer(loop->srv, access_flush_deferred, loop) != 0))
        eddy__access_log_flush(loop);
}

/* Starts the line of the request being dispatched: what it needs from the request is
 * copied now, since a detached response ends after the request's buffer is gone. */
static void access_begin(eddy__conn_t *conn, eddy_response_t *resp)
{
    const eddy_request_t *req = &http_loop(conn->loop)->req;
    const eddy__http_head_t *h = req->head;
    char method[64], target[2048];
    eddy__log_escape(method, sizeof(method), req->buf + h->method.off, h->method.len);
    eddy__log_escape(target, sizeof(target), req->buf + h->target.off, h->target.len);
    resp->access.len = 0;
    if (eddy__buf_printf(&resp->access, "%s - - [%s] \"%s %s HTTP/1.%d\" ", req->remote_ip,
                         log_date(conn->loop), method, target, h->minor_version) != 0)
        resp->access.len = 0;
    resp->access_start_ns = monotonic_ns();
}

void eddy__response_access_log(eddy_response_t *resp, int status)
{
    if (resp->access.len == 0 || resp->conn == NULL)
        return;
    access_append(resp->conn->loop, resp->access.data, resp->access.len, status, resp->body_bytes,
                  monotonic_ns() - resp->access_start_ns);
    resp->access.len = 0;
}

/* The line of an answer eddy sent on its own (an error), for the request being
 * dispatched if there is one, else with "-" for a request that could not be parsed. */
static void access_log_error(eddy__conn_t *conn, int status, size_t bytes)
{
    eddy__http_state_t *st = conn->proto == &eddy__http_proto ? http_state(conn) : NULL;
    eddy_response_t *resp = st != NULL ? st->resp : NULL;
    if (resp != NULL && resp->access.len > 0) {
        resp->body_bytes = bytes;
        eddy__response_access_log(resp, status);
        return;
    }
    if (conn_srv(conn)->access_fd < 0)
        return;
    char ip[46], start[128];
    int port;
    eddy__peer_format(&conn->peer, ip, &port);
    int n = snprintf(start, sizeof(start), "%s - - [%s] \"-\" ", ip, log_date(conn->loop));
    access_append(conn->loop, start, (size_t)n, status, bytes, 0);
}

/* The connection is going away, or upgraded: a response still open is logged (status 0 if
 * nothing of it was sent), and a pending one is detached so the application's later end()
 * finds it orphaned instead of freed. */
static void orphan_response(eddy__http_state_t *st)
{
    if (st->resp != NULL && st->resp->access.len > 0)
        eddy__response_access_log(st->resp, st->resp->headers_sent ? st->resp->status : 0);
    if (st->resp != NULL && st->resp->detached && !st->resp->finished) {
        /* The application still holds it: it becomes an orphan that its end() frees. */
        st->resp->conn = NULL;
        st->resp = NULL;
    }
}

static void http_closing(eddy__conn_t *conn)
{
    orphan_response(http_state(conn));
}

/* Frees a state (the connection's, or the one it had before it upgraded). */
static void state_free(eddy__conn_t *conn, eddy__http_state_t *st)
{
    if (st == NULL)
        return;
    orphan_response(st);
    if (st->resp != NULL)
        response_free(st->resp);
    free(st->held);
    eddy__buf_free(&st->body);
    http_loop_t *hl = http_loop(conn->loop);
    if (hl->state_cache_len < STATE_CACHE_MAX) {
        st->next_spare = hl->state_cache;
        hl->state_cache = st;
        hl->state_cache_len++;
    } else {
        free(st);
    }
}

static void http_free(eddy__conn_t *conn)
{
    state_free(conn, http_state(conn));
    conn->proto_state = NULL;
}

/* The loop's dates, brought to the current second. */
static const http_loop_t *dates_now(eddy__loop_t *loop)
{
    http_loop_t *hl = http_loop(loop);
    time_t now = time(NULL);
    if (now != hl->date_sec) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(hl->date, sizeof(hl->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        localtime_r(&now, &tm);
        strftime(hl->log_date, sizeof(hl->log_date), "%d/%b/%Y:%H:%M:%S %z", &tm);
        hl->date_sec = now;
    }
    return hl;
}

const char *eddy__http_date(eddy__loop_t *loop)
{
    return dates_now(loop)->date;
}

/* The access log time field for now. */
static const char *log_date(eddy__loop_t *loop)
{
    return dates_now(loop)->log_date;
}

/* ---- errors ---- */

void eddy__http_fail(eddy__conn_t *conn, int status, const char *body)
{
    eddy__http_answer_close(conn, status, NULL, false, body, strlen(body));
}

void eddy__http_answer_close(eddy__conn_t *conn, int status, const char *headers,
                             bool has_content_type, const char *body, size_t body_len)
{
    eddy__loop_t *loop = conn->loop;
    eddy__buf_t out = {0};
    int rc =
        eddy__buf_printf(&out, "HTTP/1.1 %d %s\r\nServer: eddy\r\nDate: %s\r\n%s", status,
                         status_reason(status), eddy__http_date(loop),
                         has_content_type ? "" : "Content-Type: text/plain; charset=utf-8\r\n");
    if (rc == 0 && headers != NULL)
        rc = eddy__buf_append(&out, headers, strlen(headers));
    if (rc == 0)
        rc = eddy__buf_printf(&out, "Content-Length: %zu\r\nConnection: close\r\n\r\n", body_len);
    if (rc == 0)
        rc = eddy__buf_append(&out, body, body_len);
    if (rc == 0)
        eddy__conn_write(conn, out.data, out.len);
    eddy__buf_free(&out);
    access_log_error(conn, status, body_len);
    eddy__conn_close(conn, EDDY__CLOSE_GRACEFUL);
}

static void fail_logged(eddy__conn_t *conn, int status, const char *why)
{
    char ip[46];
    int port;
    eddy__peer_format(&conn->peer, ip, &port);
    eddy__log(conn_srv(conn), EDDY__LOG_NOTICE, "session#%" PRIu64 " (%s:%d): %d %s: %s", conn->id,
              ip, port, status, status_reason(status), why);
    char body[160];
    snprintf(body, sizeof(body), "%d %s: %s\n", status, status_reason(status), why);
    eddy__http_fail(conn, status, body);
}

static void http_timeout(eddy__conn_t *conn)
{
    eddy__http_state_t *st = http_state(conn);
    if (st->stage == STAGE_UPGRADING) {
        free(st->held);
        st->held = NULL;
        st->stage = STAGE_HEAD;
        conn_srv(conn)->http_upgrade->expired(conn);
        return;
    }
    bool idle = st->stage == STAGE_HEAD && conn->in == NULL;
    if (idle) {
        eddy__log(conn_srv(conn), EDDY__LOG_DEBUG,
                  "session#%" PRIu64 ": idle HTTP connection closed", conn->id);
        eddy__conn_close(conn, EDDY__CLOSE_GRACEFUL);
        return;
    }
    fail_logged(conn, 408,
                st->body_deadline ? "request body not received within http_body_timeout"
                                  : "request not received in time");
}

/* ---- dispatch ---- */

/* NUL-terminates the request's strings in place; see the file comment. */
static void request_prepare(eddy__conn_t *conn, char *buf, const char *body, size_t body_len)
{
    http_loop_t *hl = http_loop(conn->loop);
    eddy__http_head_t *h = &hl->head;
    eddy_request_t *req = &hl->req;
    eddy__arena_reset(&hl->arena);
    memset(req, 0, sizeof(*req));
    req->srv = conn->loop->srv;
    req->conn = conn;
    req->fd = conn->id;
    req->buf = buf;
    req->head = h;
    req->arena = &hl->arena;
    req->body = body;
    req->body_len = body_len;
    eddy__peer_format(&conn->peer, req->remote_ip, &req->remote_port);

    uint32_t target_end = h->target.off + h->target.len;
    if (h->path.off + h->path.len == target_end)
        req->path = buf + h->path.off;
    else
        req->path = eddy__arena_strndup(&hl->arena, buf + h->path.off, h->path.len);
    if (req->path == NULL)
        req->path = "/";
    buf[h->method.off + h->method.len] = '\0';
    buf[target_end] = '\0';
    for (size_t i = 0; i < h->num_headers; i++) {
        buf[h->headers[i].name.off + h->headers[i].name.len] = '\0';
        buf[h->headers[i].value.off + h->headers[i].value.len] = '\0';
    }
}

static eddy_response_t *response_prepare(eddy__conn_t *conn)
{
    eddy__http_state_t *st = http_state(conn);
    eddy_response_t *resp = st->resp;
    if (resp == NULL) {
        resp = calloc(1, sizeof(*resp));
        if (resp == NULL)
            return NULL;
        st->resp = resp;
    }
    eddy__buf_t headers = resp->headers, access = resp->access;
    headers.len = 0;
    access.len = 0;
    free(resp->reason);
    memset(resp, 0, sizeof(*resp));
    resp->headers = headers;
    resp->access = access;
    resp->srv = conn->loop->srv;
    resp->conn = conn;
    resp->fd = conn->id;
    resp->status = 200;
    const http_loop_t *hl = http_loop(conn->loop);
    const eddy__http_head_t *h = &hl->head;
    resp->keep_alive = h->keep_alive;
    resp->http_minor = h->minor_version;
    resp->head_only = eddy__span_eq(hl->req.buf, h->method, "HEAD");
    return resp;
}

/* Sends Swoole's page for a plain request to a server with no request callback. */
static void reject_plain_request(eddy__conn_t *conn)
{
    eddy__buf_t out = {0};
    if (eddy__buf_printf(&out,
                         "HTTP/1.1 400 Bad Request\r\nServer: eddy\r\nDate: %s\r\n"
                         "Connection: close\r\nContent-Type: text/html; charset=UTF-8\r\n"
                         "Cache-Control: must-revalidate,no-cache,no-store\r\n"
                         "Content-Length: %zu\r\n\r\n%s",
                         eddy__http_date(conn->loop), sizeof(bad_request_page) - 1,
                         bad_request_page) == 0)
        eddy__conn_write(conn, out.data, out.len);
    eddy__buf_free(&out);
    access_log_error(conn, 400, sizeof(bad_request_page) - 1);
    eddy__conn_close(conn, EDDY__CLOSE_GRACEFUL);
}

/* The request callback returned: end what it left open, unless it kept it. */
static void after_request_callback(eddy__conn_t *conn, eddy_response_t *resp)
{
    if (resp->finished || conn->ending)
        return;
    if (resp->detached) {
        http_state(conn)->stage = STAGE_RESPONDING;
        eddy__conn_pause(conn, true);
        return;
    }
    /* The application never finished its answer. A status and headers it set were meant
     * for a body it did not send, so they are dropped: 500 says the request failed.
     * (Swoole keeps a status that was set; an empty 200 would hide the bug.) Once a
     * chunked body started, the head is out and only the body can be ended. */
    if (!resp->headers_sent) {
        free(resp->reason);
        resp->reason = NULL;
        resp->status = 500;
        resp->headers.len = 0;
        resp->has_server = resp->has_content_type = resp->has_date = false;
    }
    eddy__log(conn->loop->srv, EDDY__LOG_WARNING,
              "request callback returned without ending the response of fd %" PRIu64 "%s", conn->id,
              resp->headers_sent ? ": body ended" : ": answered 500");
    eddy_response_end(resp, NULL, 0);
}

/* Handles one complete request. */
static void dispatch(eddy__conn_t *conn, char *buf, const char *body, size_t body_len)
{
    eddy_server_t *srv = conn->loop->srv;
    request_prepare(conn, buf, body, body_len);
    eddy_response_t *resp = response_prepare(conn);
    if (resp == NULL) {
        eddy__conn_close(conn, EDDY__CLOSE_ABORT);
        return;
    }
    if (srv->access_fd >= 0)
        access_begin(conn, resp);
    eddy__stat_add(&conn->loop->stats.http_requests, 1);
    eddy__conn_set_timeout(conn, 0);
    http_loop_t *hl = http_loop(conn->loop);
    if (hl->head.upgrade_websocket && srv->http_upgrade != NULL) {
        srv->http_upgrade->request(conn, &hl->req, resp);
        return;
    }
    if (srv->on_request == NULL) {
        reject_plain_request(conn);
        return;
    }
    srv->on_request(srv, &hl->req, resp, srv->user_data);
    after_request_callback(conn, resp);
}

/* Called when a response finished: ready the connection for the next request. */
static void request_done(eddy__conn_t *conn)
{
    eddy__http_state_t *st = http_state(conn);
    if (!http_open(conn))
        return;
    bool was_detached = st->stage == STAGE_RESPONDING;
    state_reset(st, &conn_srv(conn)->opts);
    st->waiting_keepalive = true;
    eddy__conn_set_timeout(conn, conn_srv(conn)->opts.http_keepalive_timeout_ms);
    if (was_detached)
        eddy__conn_pause(conn, false);
}

static void send_continue(eddy__conn_t *conn)
{
    static const char line[] = "HTTP/1.1 100 Continue\r\n\r\n";
    eddy__conn_write(conn, line, sizeof(line) - 1);
}

/* A body that has not all arrived: its deadline runs from the end of the head, armed on
 * the first partial read only, so a peer cannot hold the connection by dribbling bytes
 * (each of which would otherwise re-arm an idle timer). A body that arrives with its head
 * costs no timer. */
static void await_body(eddy__conn_t *conn, const eddy__options_t *opts)
{
    eddy__http_state_t *st = http_state(conn);
    if (st->body_deadline)
        return;
    st->body_deadline = true;
    eddy__conn_set_timeout(conn, opts->http_body_timeout_ms);
}

/* Starts reading the body of a parsed head. Returns false if the request was refused. */
static bool begin_body(eddy__conn_t *conn, const char *buf)
{
    eddy__http_state_t *st = http_state(conn);
    const eddy__http_head_t *h = &http_loop(conn->loop)->head;
    size_t limit = conn->loop->package_max_length;
    st->content_length = h->content_length;
    if (h->chunked) {
        eddy__chunked_init(&st->chunked);
        st->stage = STAGE_BODY_CHUNKED;
    } else if (h->content_length > 0) {
        if ((uint64_t)h->content_length > limit) {
            fail_logged(conn, 413, "request body exceeds package_max_length");
            return false;
        }
        st->stage = STAGE_BODY_LENGTH;
    } else {
        return true;
    }
    for (size_t i = 0; i < h->num_headers; i++) {
        if (eddy__span_eq(buf, h->headers[i].name, "expect") &&
            eddy__span_eq(buf, h->headers[i].value, "100-continue") && h->minor_version == 1)
            send_continue(conn);
    }
    return true;
}

static size_t http_process(eddy__conn_t *conn, char *buf, size_t len)
{
    eddy__http_state_t *st = http_state(conn);
    eddy__http_head_t *head = &http_loop(conn->loop)->head;
    const eddy__options_t *opts = &conn_srv(conn)->opts;
    size_t done = 0;
    while (done < len && http_open(conn) && !conn->paused) {
        char *req = buf + done;
        size_t avail = len - done;
        bool head_fresh = st->stage == STAGE_HEAD; /* the loop's head is this request's */
        if (st->stage == STAGE_HEAD) {
            ssize_t rc = eddy__http_parse_head(&st->parser, req, avail, head);
            if (rc == EDDY_AGAIN) {
                if (st->waiting_keepalive) {
                    /* The first bytes of a request: the header timeout now applies. */
                    st->waiting_keepalive = false;
                    eddy__conn_set_timeout(conn, opts->http_header_timeout_ms);
                }
                return done;
            }
            if (rc == EDDY_ETOOBIG) {
                fail_logged(conn, 431, "request head exceeds http_max_header_size");
                return len;
            }
            if (rc < 0) {
                fail_logged(conn, 400, "malformed request head");
                return len;
            }
            st->head_len = (size_t)rc;
            st->waiting_keepalive = false;
            if (!begin_body(conn, req))
                return len;
        }
        const char *body = "";
        size_t body_len = 0, request_len = st->head_len;
        if (st->stage == STAGE_BODY_LENGTH) {
            body_len = (size_t)st->content_length;
            if (avail - st->head_len < body_len) {
                await_body(conn, opts);
                return done;
            }
            body = req + st->head_len;
            request_len += body_len;
        } else if (st->stage == STAGE_BODY_CHUNKED) {
            char *raw = req + st->head_len + st->raw_body_done;
            size_t raw_len = avail - st->head_len - st->raw_body_done;
            if (eddy__buf_reserve(&st->body, raw_len) != 0) {
                eddy__conn_close(conn, EDDY__CLOSE_ABORT);
                return len;
            }
            memcpy(st->body.data + st->body.len, raw, raw_len);
            size_t decoded = raw_len;
            ssize_t rc = eddy__chunked_decode(&st->chunked, st->body.data + st->body.len, &decoded);
            if (rc == EDDY_EPROTO || rc == EDDY_ETOOBIG) {
                fail_logged(conn, 400, "malformed chunked body");
                return len;
            }
            st->body.len += decoded;
            if (st->body.len > conn->loop->package_max_length) {
                fail_logged(conn, 413, "request body exceeds package_max_length");
                return len;
            }
            if (rc == EDDY_AGAIN) {
                st->raw_body_done += raw_len;
                await_body(conn, opts);
                return done;
            }
            st->raw_body_done += raw_len - (size_t)rc;
            st->body.data[st->body.len] = '\0';
            body = st->body.data;
            body_len = st->body.len;
            request_len += st->raw_body_done;
        }
        /* The body is NUL-terminated for the callback: the byte after it (the next
         * pipelined request, or the spare byte every buffer keeps) is restored after. */
        if (!head_fresh) {
            /* The head was parsed in an earlier read and the loop has parsed others since:
             * parse it again (the same bytes give the same result). */
            eddy__http_parser_t again;
            eddy__http_parser_init(&again, opts->http_max_header_size);
            eddy__http_parse_head(&again, req, st->head_len, head);
        }
        char *after = req + request_len;
        char saved = *after;
        if (st->stage == STAGE_BODY_LENGTH)
            *after = '\0';
        st->stage = STAGE_HEAD;
        dispatch(conn, req, body, body_len);
        *after = saved;
        done += request_len;
        if (conn->proto != &eddy__http_proto) {
            /* Upgraded: the rest of the input is the new protocol's, and this state is
             * not needed any more. */
            state_free(conn, st);
            return done;
        }
        eddy_response_t *resp = st->resp;
        if (!conn->ending && resp != NULL && resp->finished)
            request_done(conn);
    }
    return done;
}

eddy_request_t *eddy__http_request(eddy__conn_t *conn)
{
    return &http_loop(conn->loop)->req;
}

int eddy__http_hold(eddy__conn_t *conn, uint32_t timeout_ms)
{
    eddy__http_state_t *st = http_state(conn);
    const eddy_request_t *req = &http_loop(conn->loop)->req;
    size_t path_len = strlen(req->path);
    size_t size = st->head_len + 1 + path_len + 1 + req->body_len + 1;
    held_request_t *held = malloc(sizeof(*held) + size);
    if (held == NULL)
        return EDDY_ENOMEM;
    held->head = *req->head;
    char *p = held->data;
    memcpy(p, req->buf, st->head_len);
    p[st->head_len] = '\0';
    held->path_off = st->head_len + 1;
    memcpy(p + held->path_off, req->path, path_len + 1);
    held->body_off = held->path_off + path_len + 1;
    held->body_len = req->body_len;
    memcpy(p + held->body_off, req->body, req->body_len);
    p[held->body_off + req->body_len] = '\0';
    free(st->held);
    st->held = held;
    st->stage = STAGE_UPGRADING;
    eddy__conn_pause(conn, true);
    eddy__conn_set_timeout(conn, timeout_ms);
    return 0;
}

bool eddy__http_resume(eddy__conn_t *conn, eddy__http_answer_cb answer, void *arg)
{
    if (conn->proto != &eddy__http_proto || conn->ending)
        return false;
    eddy__http_state_t *st = http_state(conn);
    if (st->stage != STAGE_UPGRADING || st->held == NULL)
        return false;
    held_request_t *held = st->held;
    st->held = NULL;
    st->stage = STAGE_HEAD;
    eddy__conn_set_timeout(conn, 0);

    /* The request becomes the loop's again, as when it was dispatched. */
    http_loop_t *hl = http_loop(conn->loop);
    eddy__arena_reset(&hl->arena);
    hl->head = held->head;
    eddy_request_t *req = &hl->req;
    memset(req, 0, sizeof(*req));
    req->srv = conn->loop->srv;
    req->conn = conn;
    req->fd = conn->id;
    req->buf = held->data;
    req->head = &hl->head;
    req->arena = &hl->arena;
    req->path = held->data + held->path_off;
    req->body = held->data + held->body_off;
    req->body_len = held->body_len;
    eddy__peer_format(&conn->peer, req->remote_ip, &req->remote_port);

    eddy__conn_t *outer = conn->loop->dispatching;
    conn->loop->dispatching = conn;
    answer(conn, req, st->resp, arg);
    conn->loop->dispatching = outer;
    free(held);
    if (conn->proto != &eddy__http_proto) {
        /* Upgraded: input the client sent early is the new protocol's. */
        state_free(conn, st);
        eddy__conn_pause(conn, false);
    }
    return true;
}

/* ---- request API ---- */

eddy_fd_t eddy_request_fd(const eddy_request_t *req)
{
    return req->fd;
}

eddy_server_t *eddy_request_server(const eddy_request_t *req)
{
    return req->srv;
}

const char *eddy_request_method(const eddy_request_t *req)
{
    return req->buf + req->head->method.off;
}

const char *eddy_request_path(const eddy_request_t *req)
{
    return req->path;
}

const char *eddy_request_query(const eddy_request_t *req)
{
    return req->head->query.len ? req->buf + req->head->query.off : "";
}

const char *eddy_request_uri(const eddy_request_t *req)
{
    return req->buf + req->head->target.off;
}

int eddy_request_http_minor(const eddy_request_t *req)
{
    return req->head->minor_version;
}

/* Finds name in a "k=v<sep>k=v" list and returns its decoded value, copied to the arena.
 * A repeated name yields its last value with last_wins (PHP's, and so Swoole's, query
 * strings), else its first (PHP's cookies: browsers send the most specific one first). */
static const char *find_pair(const eddy_request_t *req, const char *list, size_t list_len, char sep,
                             const char *name, bool last_wins)
{
    size_t name_len = strlen(name);
    const char *p = list, *end = list + list_len;
    const char *found = NULL;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == sep))
            p++;
        const char *item = p;
        while (p < end && *p != sep)
            p++;
        const char *eq = memchr(item, '=', (size_t)(p - item));
        const char *key_end = eq ? eq : p;
        size_t key_len = (size_t)(key_end - item);
        char *key = eddy__arena_alloc(req->arena, key_len + 1);
        if (key == NULL)
            return NULL;
        size_t decoded_key_len = eddy__url_decode(key, item, key_len);
        if (decoded_key_len == name_len && memcmp(key, name, name_len) == 0) {
            const char *value = eq ? eq + 1 : p;
            size_t value_len = (size_t)(p - value);
            char *out = eddy__arena_alloc(req->arena, value_len + 1);
            if (out != NULL)
                eddy__url_decode(out, value, value_len);
            found = out;
            if (!last_wins)
                break;
        }
    }
    return found;
}

const char *eddy_request_get(const eddy_request_t *req, const char *name)
{
    const eddy__span_t q = req->head->query;
    return find_pair(req, req->buf + q.off, q.len, '&', name, true);
}

const char *eddy_request_header(const eddy_request_t *req, const char *name)
{
    const eddy__http_head_t *h = req->head;
    for (size_t i = 0; i < h->num_headers; i++) {
        if (eddy__span_eq(req->buf, h->headers[i].name, name))
            return req->buf + h->headers[i].value.off;
    }
    return NULL;
}

size_t eddy_request_header_count(const eddy_request_t *req)
{
    return req->head->num_headers;
}

int eddy_request_header_at(const eddy_request_t *req, size_t i, const char **name,
                           const char **value)
{
    if (i >= req->head->num_headers)
        return EDDY_EINVAL;
    *name = req->buf + req->head->headers[i].name.off;
    *value = req->buf + req->head->headers[i].value.off;
    return 0;
}

const char *eddy_request_cookie(const eddy_request_t *req, const char *name)
{
    const eddy__http_head_t *h = req->head;
    for (size_t i = 0; i < h->num_headers; i++) {
        if (!eddy__span_eq(req->buf, h->headers[i].name, "cookie"))
            continue;
        const eddy__span_t v = h->headers[i].value;
        const char *value = find_pair(req, req->buf + v.off, v.len, ';', name, false);
        if (value != NULL)
            return value;
    }
    return NULL;
}

const char *eddy_request_body(const eddy_request_t *req, size_t *len)
{
    if (len != NULL)
        *len = req->body_len;
    return req->body;
}

const char *eddy_request_remote_ip(const eddy_request_t *req)
{
    return req->remote_ip;
}

int eddy_request_remote_port(const eddy_request_t *req)
{
    return req->remote_port;
}

/* ---- response API ---- */

eddy_fd_t eddy_response_fd(const eddy_response_t *resp)
{
    return resp->fd;
}

int eddy_response_status(eddy_response_t *resp, int code, const char *reason)
{
    if (resp->headers_sent || resp->finished)
        return EDDY_ESTATE;
    /* A final response cannot be informational, except a handshake callback's 101. */
    if (code < 200 || code > 599) {
        if (!(resp->handshake && code == 101))
            return EDDY_EINVAL;
    }
    if (reason != NULL && strpbrk(reason, "\r\n") != NULL)
        return EDDY_EINVAL;
    char *copy = NULL;
    if (reason != NULL && (copy = strdup(reason)) == NULL)
        return EDDY_ENOMEM;
    free(resp->reason);
    resp->reason = copy;
    resp->status = code;
    return 0;
}

static bool is_token(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= 0x20 || c >= 0x7f || strchr("()<>@,;:\\\"/[]?={}", c) != NULL)
            return false;
    }
    return true;
}

int eddy_response_header(eddy_response_t *resp, const char *name, const char *value)
{
    if (resp->headers_sent || resp->finished)
        return EDDY_ESTATE;
    if (value == NULL) {
        /* No Content-Type at all (eddy adds text/html to a response without one). */
        if (strcasecmp(name, "content-type") != 0)
            return EDDY_EINVAL;
        resp->has_content_type = true;
        return 0;
    }
    if (!is_token(name) || strpbrk(value, "\r\n") != NULL)
        return EDDY_EINVAL;
    if (strcasecmp(name, "content-length") == 0 || strcasecmp(name, "transfer-encoding") == 0)
        return EDDY_EINVAL;
    if (strcasecmp(name, "connection") == 0 && !resp->handshake) {
        /* Persistence is eddy's business; the application may only ask for a close. (A
         * handshake callback's 101 needs its "Connection: Upgrade" and keeps it.) */
        if (strcasecmp(value, "close") == 0)
            resp->keep_alive = false;
        return 0;
    }
    resp->has_server |= strcasecmp(name, "server") == 0;
    resp->has_content_type |= strcasecmp(name, "content-type") == 0;
    resp->has_date |= strcasecmp(name, "date") == 0;
    return eddy__buf_printf(&resp->headers, "%s: %s\r\n", name, value);
}

int eddy__response_send_head(eddy_response_t *resp, const char *extra, int64_t body_len)
{
    eddy__conn_t *conn = resp->conn;
    eddy__buf_t out = {0};
    int rc = eddy__buf_printf(&out, "HTTP/1.1 %d %s\r\n", resp->status,
                              resp->reason ? resp->reason : status_reason(resp->status));
    if (rc == 0 && resp->headers.len)
        rc = eddy__buf_append(&out, resp->headers.data, resp->headers.len);
    if (rc == 0 && extra != NULL)
        rc = eddy__buf_append(&out, extra, strlen(extra));
    if (rc == 0 && !resp->has_server)
        rc = eddy__buf_append(&out, "Server: eddy\r\n", 14);
    if (rc == 0 && !resp->has_date)
        rc = eddy__buf_printf(&out, "Date: %s\r\n", eddy__http_date(conn->loop));
    if (rc == 0 && body_len >= 0)
        rc = eddy__buf_printf(&out, "Content-Length: %" PRId64 "\r\n", body_len);
    if (rc == 0)
        rc = eddy__buf_append(&out, "\r\n", 2);
    if (rc == 0)
        rc = eddy__conn_write(conn, out.data, out.len);
    else /* out of memory: without its head no part of the response may follow */
        eddy__conn_close(conn, EDDY__CLOSE_GRACEFUL);
    eddy__buf_free(&out);
    resp->headers_sent = true;
    return rc;
}

/* The headers eddy adds to an ordinary response. */
static const char *response_extra(eddy_response_t *resp, bool chunked)
{
    const char *connection =
        resp->keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
    static _Thread_local char extra[128];
    snprintf(extra, sizeof(extra), "%s%s%s", connection,
             resp->has_content_type ? "" : "Content-Type: text/html\r\n",
             chunked ? "Transfer-Encoding: chunked\r\n" : "");
    return extra;
}

/* Checks that resp may still be used. Returns 0 or EDDY_ECLOSED/EDDY_ESTATE. When finishing
 * (end, close), a response whose connection is gone is finished, and an orphan released;
 * a write leaves it alone, since the application still owes its end. */
static int response_usable(eddy_response_t *resp, bool finishing)
{
    if (resp->finished)
        return EDDY_ESTATE;
    if (resp->conn == NULL || resp->conn->ending) {
        if (finishing) {
            resp->finished = true;
            if (resp->conn == NULL)
                response_free(resp);
        }
        return EDDY_ECLOSED;
    }
    return 0;
}

int eddy_response_write(eddy_response_t *resp, const void *data, size_t len)
{
    if (resp->handshake)
        return EDDY_ESTATE;
    int rc = response_usable(resp, false);
    if (rc != 0)
        return rc;
    eddy__conn_t *conn = resp->conn;
    if (!resp->headers_sent) {
        /* HTTP/1.0 has no chunked coding: the body then ends with the connection. */
        resp->chunked = resp->http_minor >= 1;
        if (!resp->chunked)
            resp->keep_alive = false;
        rc = eddy__response_send_head(resp, response_extra(resp, resp->chunked), -1);
        if (rc != 0)
            return rc;
    }
    if (len == 0 || resp->head_only)
        return 0;
    resp->body_bytes += len;
    if (!resp->chunked)
        return eddy__conn_write(conn, data, len);
    char size_line[24];
    int n = snprintf(size_line, sizeof(size_line), "%zx\r\n", len);
    rc = eddy__conn_write2(conn, size_line, (size_t)n, data, len);
    return rc == 0 ? eddy__conn_write(conn, "\r\n", 2) : rc;
}

static void response_finish(eddy_response_t *resp)
{
    eddy__conn_t *conn = resp->conn;
    resp->finished = true;
    eddy__response_access_log(resp, resp->status);
    if (!resp->keep_alive || conn->loop->stopping) {
        eddy__conn_close(conn, EDDY__CLOSE_GRACEFUL);
        return;
    }
    if (http_state(conn)->stage == STAGE_RESPONDING)
        request_done(conn); /* ended after its callback returned */
}

int eddy_response_end(eddy_response_t *resp, const void *data, size_t len)
{
    if (resp->handshake)
        return resp->srv->http_upgrade->end(resp, data, len);
    int rc = response_usable(resp, true);
    if (rc != 0)
        return rc;
    if (resp->headers_sent) {
        rc = eddy_response_write(resp, data, len);
        if (rc == 0 && resp->chunked && !resp->head_only)
            rc = eddy__conn_write(resp->conn, "0\r\n\r\n", 5);
    } else if (resp->status < 200 || resp->status == 204 || resp->status == 304) {
        /* These statuses carry no body and no length (RFC 9110 8.6, 15.3.5, 15.4.5). */
        rc = eddy__response_send_head(resp, response_extra(resp, false), -1);
    } else {
        rc = eddy__response_send_head(resp, response_extra(resp, false), (int64_t)len);
        if (rc == 0 && len > 0 && !resp->head_only) {
            resp->body_bytes += len;
            rc = eddy__conn_write(resp->conn, data, len);
        }
    }
    if (resp->conn == NULL) {
        response_free(resp); /* detached, and closed by a failed write: an orphan now */
        return rc;
    }
    if (rc != 0)
        resp->keep_alive = false; /* out of memory: the client must not wait for the rest */
    response_finish(resp);
    return rc;
}

void eddy_response_close(eddy_response_t *resp)
{
    if (response_usable(resp, true) != 0)
        return;
    resp->finished = true;
    eddy__conn_close(resp->conn, EDDY__CLOSE_GRACEFUL);
}

void eddy_response_detach(eddy_response_t *resp)
{
    if (!resp->handshake)
        resp->detached = true;
}

bool eddy__response_has_header(const eddy_response_t *resp, const char *name)
{
    /* resp->headers holds "Name: value\r\n" lines. */
    size_t len = strlen(name);
    for (const char *line = resp->headers.data, *end = line + resp->headers.len;
         line != NULL && line < end;) {
        if (strncasecmp(line, name, len) == 0 && line[len] == ':')
            return true;
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        line = eol != NULL ? eol + 1 : NULL;
    }
    return false;
}

/* ---- the protocol ---- */

static void http_drained(eddy__conn_t *conn)
{
    eddy_server_t *srv = conn->loop->srv;
    if (srv->on_drain != NULL)
        srv->on_drain(srv, conn->id, srv->user_data);
}

static void http_end(eddy__conn_t *conn, uint16_t code, const char *reason, size_t reason_len,
                     bool wait_for_peer)
{
    eddy__conn_close(conn, EDDY__CLOSE_GRACEFUL);
}

const eddy__proto_t eddy__http_proto = {
    .name = "HTTP",
    .start = http_start,
    .process = http_process,
    .timeout = http_timeout,
    .drained = http_drained,
    .end = http_end,
    .closing = http_closing,
    .closed = eddy__server_session_closed,
    .free = http_free,
};

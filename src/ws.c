/* SPDX-License-Identifier: MIT */
/*
 * The WebSocket session (eddy__ws_proto): the opening handshake (eddy__ws_upgrade, the
 * HTTP session's upgrade hook), frame reception, the closing handshake and sending.
 *
 * Frames are read as a stream: a header that straddles two reads is kept in a 14-byte
 * stash, payload bytes are unmasked in place as they arrive, text is validated as it
 * arrives (so invalid UTF-8 fails the connection at the first bad byte, even mid-frame),
 * and the size limit is enforced from the header, before any payload is buffered. A
 * message that arrives whole in one read is delivered straight from the receive buffer;
 * only fragmented or partial messages are copied into the connection's message buffer.
 * Compressed messages (permessage-deflate) are inflated into that buffer as they arrive,
 * with the size limit applied to the inflated size.
 *
 * An established connection at rest carries no receive state: its negotiated compression
 * and whether it sent a close frame live in the connection itself. Input is parsed with
 * the loop's scratch state; only when a read ends inside a frame or a fragmented message
 * (or the connection keeps zlib streams of its own, for context takeover) does the state
 * move into an allocation of the connection's own, freed again once the connection is
 * back at rest. Idle connections therefore cost nothing here.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <zlib.h>

#include "client.h"
#include "log.h"
#include "ws.h"

typedef struct eddy__ws_state eddy__ws_state_t;
struct eddy__ws_state {
    eddy__ws_header_t hdr; /* header of the frame being received */
    uint8_t hdr_stash[EDDY_WS_MAX_HEADER_LEN];
    uint8_t hdr_stash_len;
    bool in_frame;       /* header read, payload pending */
    uint64_t frame_done; /* payload bytes of the frame received so far */
    bool in_message;     /* a data message is being received */
    uint8_t msg_opcode;
    uint8_t msg_flags;
    uint32_t utf8_state;
    bool compressed;            /* the message being received has RSV1 */
    uint64_t msg_wire_len;      /* its payload bytes on the wire so far */
    z_stream *inflater;         /* our own (context takeover, or a message over many reads) */
    z_stream *msg_inflater;     /* the one inflating the current message */
    eddy__deflater_t *deflater; /* our own, with server context takeover */
    eddy__buf_t msg;            /* message assembled from pieces, or inflated */
    uint8_t ctrl_len;
    uint8_t ctrl[125]; /* control frame payload assembled from pieces */
};

/* The loop keeps its inflate buffer up to this size (a small message reserves 128 KiB). */
#define INFLATED_KEEP (256 * 1024)

/* Per loop (EDDY__SLOT_WS), made when its first connection switches to WebSocket. */
typedef struct ws_loop {
    /* Input is parsed with scratch unless the connection has a state of its own; rx is the
     * one in use while input is processed. */
    eddy__ws_state_t *scratch;
    eddy__ws_state_t *rx;
    /* Shared by connections that agreed to no context takeover (reset per message). */
    z_stream *shared_inflater;
    eddy__deflater_t *shared_deflaters[16]; /* by window bits */
    /* A compressed message that came whole in one read inflates here: it is delivered
     * before the loop reads anything else, so no message allocates a buffer of its own. */
    eddy__buf_t inflated;
    eddy__buf_t deflate_out; /* compressed output, framed and copied right away */
    /* Mask keys for the client role: kernel CSPRNG bytes fetched a batch at a time, so a
     * frame costs no system call. */
    uint8_t mask_keys[256];
    uint16_t mask_keys_left; /* bytes at the end of mask_keys not handed out yet */
} ws_loop_t;

static const eddy_server_t *conn_srv(const eddy__conn_t *conn)
{
    return conn->loop->srv;
}

/* ---- logging ---- */

static const char *opcode_name(int opcode)
{
    static const char *const names[16] = {
        "continuation", "text", "binary", [8] = "close", [9] = "ping", "pong"};
    return names[opcode & 15] != NULL ? names[opcode & 15] : "reserved";
}

/* A frame received or queued, at trace level (callers test eddy__log_on() first, so the
 * hot path pays one compare). */
__attribute__((cold, noinline)) static void trace_frame(const eddy__conn_t *conn, const char *what,
                                                        int opcode, bool fin, bool rsv1,
                                                        uint64_t len)
{
    eddy__log(conn_srv(conn), EDDY__LOG_TRACE,
              "session#%" PRIu64 ": frame %s: %s%s%s, %" PRIu64 " bytes", conn->id, what,
              opcode_name(opcode), fin ? " fin" : "", rsv1 ? " rsv1" : "", len);
}

/* A close frame sent or received, at debug level. */
static void debug_close_frame(const eddy__conn_t *conn, const char *what, uint16_t code,
                              const char *reason, size_t reason_len)
{
    if (!eddy__log_on(conn->loop, EDDY__LOG_DEBUG))
        return;
    char escaped[4 * 123 + 1];
    eddy__log_escape(escaped, sizeof(escaped), reason, reason_len);
    eddy__log(conn_srv(conn), EDDY__LOG_DEBUG, "session#%" PRIu64 ": close frame %s: %u \"%s\"",
              conn->id, what, code, escaped);
}

static void state_free(eddy__ws_state_t *ws);

static void ws_loop_free(void *data)
{
    ws_loop_t *wl = data;
    if (wl->scratch != NULL)
        state_free(wl->scratch);
    eddy__inflater_free(wl->shared_inflater);
    for (size_t i = 0; i < EDDY__ARRAY_SIZE(wl->shared_deflaters); i++)
        eddy__deflater_free(wl->shared_deflaters[i]);
    eddy__buf_free(&wl->deflate_out);
    eddy__buf_free(&wl->inflated);
}

/* The loop's WebSocket state, made on first use; NULL: out of memory. */
static ws_loop_t *ws_loop(eddy__loop_t *loop)
{
    ws_loop_t *wl = eddy__loop_slot(loop, EDDY__SLOT_WS);
    if (wl == NULL)
        wl = eddy__loop_slot_make(loop, EDDY__SLOT_WS, sizeof(*wl), ws_loop_free);
    return wl;
}

eddy__deflater_t *eddy__ws_shared_deflater(eddy__loop_t *loop, int bits)
{
    ws_loop_t *wl = ws_loop(loop);
    if (wl == NULL)
        return NULL;
    const eddy__options_t *opts = &loop->srv->opts;
    eddy__deflater_t **d = &wl->shared_deflaters[bits];
    if (*d == NULL) {
        /* A hash table of 2^(bits + 1) entries at most (mem_level bits - 6): a small
         * window's deflater stays small. */
        int mem_level = EDDY__MIN(opts->websocket_compression_mem_level, EDDY__MAX(bits - 6, 1));
        *d = eddy__deflater_new(bits, opts->websocket_compression_level, mem_level);
    }
    return *d;
}

eddy__buf_t *eddy__ws_deflate_out(eddy__loop_t *loop)
{
    ws_loop_t *wl = ws_loop(loop);
    return wl != NULL ? &wl->deflate_out : NULL;
}

/* ---- opening handshake ---- */

/* The next item of the comma-separated list [*p, end), without the blanks around it: sets
 * *item and *len and advances *p past it. Returns false when the list has no more items. */
static bool next_list_item(const char **p, const char *end, const char **item, size_t *len)
{
    const char *q = *p;
    while (q < end && (*q == ' ' || *q == '\t' || *q == ','))
        q++;
    if (q == end)
        return false;
    const char *start = q;
    while (q < end && *q != ',')
        q++;
    const char *stop = q;
    while (stop > start && (stop[-1] == ' ' || stop[-1] == '\t'))
        stop--;
    *p = q;
    *item = start;
    *len = (size_t)(stop - start);
    return true;
}

/* True if the comma-separated list buf[span] holds token exactly: subprotocol names are
 * case-sensitive (RFC 6455 4.1), unlike most HTTP tokens. */
static bool list_has_exact(const char *buf, eddy__span_t span, const char *token, size_t token_len)
{
    const char *p = buf + span.off, *end = p + span.len, *item;
    size_t len;
    while (next_list_item(&p, end, &item, &len)) {
        if (len == token_len && memcmp(item, token, token_len) == 0)
            return true;
    }
    return false;
}

/* Picks the subprotocol to answer: the first of ours (comma-separated, in preference
 * order) that the client offered. Returns its length and sets *name to it, within ours
 * (any length: nothing is copied), or returns 0 if there is none. */
static size_t choose_subprotocol(const char *ours, const eddy_request_t *req, const char **name)
{
    const eddy__http_head_t *h = req->head;
    const char *p = ours;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *start = p;
        while (*p && *p != ',' && *p != ' ')
            p++;
        size_t n = (size_t)(p - start);
        if (n == 0)
            continue;
        for (size_t i = 0; i < h->num_headers; i++) {
            if (eddy__span_eq(req->buf, h->headers[i].name, "sec-websocket-protocol") &&
                list_has_exact(req->buf, h->headers[i].value, start, n)) {
                *name = start;
                return n;
            }
        }
    }
    return 0;
}

/* Validates an upgrade request (RFC 6455 4.2.1). Returns 0, or the HTTP status to refuse
 * it with and sets *why. */
static int validate_upgrade(const eddy_request_t *req, const char **key, size_t *key_len,
                            const char **why)
{
    const eddy__http_head_t *h = req->head;
    const char *buf = req->buf;
    if (!eddy__span_eq(buf, h->method, "GET")) {
        *why = "a WebSocket upgrade must use GET";
        return 400;
    }
    if (h->minor_version < 1) {
        *why = "a WebSocket upgrade needs HTTP/1.1";
        return 400;
    }
    if (!h->connection_upgrade) {
        *why = "Connection header lacks the Upgrade token";
        return 400;
    }
    int keys = 0, versions = 0;
    bool version_13 = false;
    for (size_t i = 0; i < h->num_headers; i++) {
        const eddy__http_header_t *hd = &h->headers[i];
        if (eddy__span_eq(buf, hd->name, "sec-websocket-key")) {
            keys++;
            *key = buf + hd->value.off;
            *key_len = hd->value.len;
        } else if (eddy__span_eq(buf, hd->name, "sec-websocket-version")) {
            versions++;
            version_13 = eddy__span_eq(buf, hd->value, "13");
        }
    }
    if (keys != 1) {
        *why = keys ? "more than one Sec-WebSocket-Key" : "missing Sec-WebSocket-Key";
        return 400;
    }
    uint8_t raw[18];
    if (eddy__base64_decode(raw, sizeof(raw), *key, *key_len) != 16) {
        *why = "Sec-WebSocket-Key is not 16 bytes of base64";
        return 400;
    }
    if (versions != 1 || !version_13) {
        *why = "unsupported Sec-WebSocket-Version (13 is supported)";
        return 426;
    }
    return 0;
}

bool eddy__ws_negotiate(eddy__conn_t *conn, const eddy_request_t *req, eddy__pmd_t *pmd,
                        char *header, size_t header_cap)
{
    const eddy__options_t *opts = &conn_srv(conn)->opts;
    if (!opts->websocket_compression)
        return false;
    const eddy__http_head_t *h = req->head;
    for (size_t i = 0; i < h->num_headers; i++) {
        const eddy__http_header_t *hd = &h->headers[i];
        if (!eddy__span_eq(req->buf, hd->name, "sec-websocket-extensions") ||
            !eddy__pmd_negotiate(req->buf + hd->value.off, hd->value.len, &opts->pmd, pmd))
            continue;
        static const char name[] = "Sec-WebSocket-Extensions: ";
        size_t name_len = sizeof(name) - 1;
        if (header_cap < name_len + 3)
            return false;
        memcpy(header, name, name_len);
        int value_len = eddy__pmd_response(pmd, header + name_len, header_cap - name_len - 2);
        if (value_len < 0)
            return false;
        memcpy(header + name_len + value_len, "\r\n", 3);
        return true;
    }
    return false;
}

/* Refuses an upgrade with status; logged at level (debug when the client is at fault). */
static void handshake_failed(eddy__conn_t *conn, int level, int status, const char *why)
{
    char ip[46];
    int port;
    eddy__stat_add(&conn->loop->stats.ws_refused, 1);
    eddy__peer_format(&conn->peer, ip, &port);
    eddy__log(conn_srv(conn), level,
              "session#%" PRIu64 " (%s:%d): WebSocket handshake refused with %d: %s", conn->id, ip,
              port, status, why);
    char body[160];
    int len = snprintf(body, sizeof(body), "WebSocket handshake failed: %s\n", why);
    /* 426: the version we speak (RFC 6455 4.4). */
    eddy__http_answer_close(conn, status, status == 426 ? "Sec-WebSocket-Version: 13\r\n" : NULL,
                            false, body, (size_t)EDDY__MIN(len, (int)sizeof(body) - 1));
}

/* Not switched to WebSocket yet, and not closing. */
static bool upgrade_pending(const eddy__conn_t *conn)
{
    return conn->proto != &eddy__ws_proto && !conn->ending;
}

/* True if the comma-separated list allows origin: an element equal to it, ignoring case
 * (scheme and host are case-insensitive, and a browser sends them in lower case). */
static bool origin_listed(const char *list, const char *origin)
{
    size_t origin_len = strlen(origin);
    const char *p = list, *end = list + strlen(list), *item;
    size_t len;
    while (next_list_item(&p, end, &item, &len)) {
        if (len == origin_len && origin_len > 0 && strncasecmp(item, origin, origin_len) == 0)
            return true;
    }
    return false;
}

/* websocket_origins: true if the request may upgrade, as far as its Origin goes. */
static bool origin_allowed(const eddy_server_t *srv, const eddy_request_t *req)
{
    const char *list = srv->opts.websocket_origins;
    if (list == NULL || list[strspn(list, " \t,")] == '\0')
        return true;
    const eddy__http_head_t *h = req->head;
    const char *origin = NULL;
    for (size_t i = 0; i < h->num_headers; i++) {
        if (!eddy__span_eq(req->buf, h->headers[i].name, "origin"))
            continue;
        if (origin != NULL)
            return false; /* several: which one a proxy checked is anyone's guess */
        origin = req->buf + h->headers[i].value.off;
    }
    return origin == NULL || origin_listed(list, origin);
}

/* Names eddy writes itself in a refusal, and in a 101 (all of them, lower case). */
static const char *const refusal_managed[] = {"content-length", "transfer-encoding", "connection",
                                              "date", NULL};
static const char *const accept_managed[] = {"content-length",
                                             "transfer-encoding",
                                             "connection",
                                             "date",
                                             "server",
                                             "upgrade",
                                             "sec-websocket-accept",
                                             "sec-websocket-version",
                                             "sec-websocket-extensions",
                                             NULL};

/* Appends headers (NULL, or name and value pairs ending with a NULL name) to *lines as
 * "Name: value\r\n", and sets *has (if not NULL) when one is named has_name. Returns 0,
 * EDDY_EINVAL (a name that is not a token or is in managed, a value with CR or LF, a name
 * without a value) or EDDY_ENOMEM. */
static int format_headers(eddy__buf_t *lines, const char *const *headers,
                          const char *const *managed, const char *has_name, bool *has)
{
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i += 2) {
        const char *name = headers[i], *value = headers[i + 1];
        size_t name_len = strlen(name);
        bool token = name_len > 0;
        for (size_t k = 0; k < name_len; k++)
            token &= eddy__is_tchar(name[k]);
        if (!token || value == NULL || strpbrk(value, "\r\n") != NULL)
            return EDDY_EINVAL;
        for (size_t k = 0; managed[k] != NULL; k++) {
            if (strcasecmp(name, managed[k]) == 0)
                return EDDY_EINVAL;
        }
        if (has != NULL && strcasecmp(name, has_name) == 0)
            *has = true;
        int rc = eddy__buf_printf(lines, "%s: %s\r\n", name, value);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int eddy_upgrade_refuse(eddy_request_t *req, int status, const char *const *headers,
                        const char *body)
{
    if (!req->in_upgrade)
        return EDDY_ESTATE;
    if (status < 400 || status > 499)
        return EDDY_EINVAL;
    eddy__buf_t lines = {0};
    bool content_type = false;
    int rc = format_headers(&lines, headers, refusal_managed, "content-type", &content_type);
    char *copy = NULL, *body_copy = NULL;
    size_t body_len = body != NULL ? strlen(body) : 0;
    if (rc == 0 && lines.len > 0 &&
        (copy = eddy__arena_strndup(req->arena, lines.data, lines.len)) == NULL)
        rc = EDDY_ENOMEM;
    if (rc == 0 &&
        (body_copy = eddy__arena_strndup(req->arena, body ? body : "", body_len)) == NULL)
        rc = EDDY_ENOMEM;
    eddy__buf_free(&lines);
    if (rc != 0) {
        eddy__log(req->srv, EDDY__LOG_WARNING,
                  "session#%" PRIu64 ": eddy_upgrade_refuse(%d): %s; refusing with 403", req->fd,
                  status, eddy_strerror(rc));
        return rc;
    }
    req->refuse_status = status;
    req->refuse_headers = copy;
    req->refuse_content_type = content_type;
    req->refuse_body = body_copy;
    req->refuse_body_len = body_len;
    return status;
}

int eddy_upgrade_defer(eddy_request_t *req)
{
    if (!req->in_upgrade)
        return EDDY_ESTATE;
    req->defer = true;
    return EDDY_PENDING;
}

/*
 * Runs the Origin check and the upgrade callback. Returns true if the upgrade may go on;
 * otherwise the connection has been answered (or closed by the callback itself), or holds
 * the request for a deferred answer.
 */
static bool upgrade_admitted(eddy__conn_t *conn, eddy_request_t *req)
{
    eddy_server_t *srv = conn->loop->srv;
    if (!origin_allowed(srv, req)) {
        handshake_failed(conn, EDDY__LOG_DEBUG, 403, "Origin not allowed");
        return false;
    }
    if (srv->on_upgrade == NULL)
        return true;

    eddy__conn_t *outer = conn->loop->dispatching;
    conn->loop->dispatching = conn;
    req->in_upgrade = true;
    int verdict = srv->on_upgrade(srv, req, srv->user_data);
    req->in_upgrade = false;
    conn->loop->dispatching = outer;
    if (!upgrade_pending(conn))
        return false; /* the callback closed it */
    if (verdict == 0)
        return true;
    if (verdict == EDDY_PENDING && req->defer) {
        if (eddy__http_hold(conn, srv->opts.websocket_upgrade_timeout_ms) != 0)
            handshake_failed(conn, EDDY__LOG_WARNING, 503, "out of memory holding the upgrade");
        return false;
    }

    int status = req->refuse_status;
    if (status == 0)
        status = verdict >= 400 && verdict <= 499 ? verdict : 403;
    eddy__stat_add(&conn->loop->stats.ws_refused, 1);
    eddy__log(srv, EDDY__LOG_INFO, "session#%" PRIu64 ": upgrade callback refused with %d",
              conn->id, status);
    if (req->refuse_status != 0) {
        eddy__http_answer_close(conn, status, req->refuse_headers, req->refuse_content_type,
                                req->refuse_body, req->refuse_body_len);
    } else {
        static const char body[] = "WebSocket upgrade refused\n";
        eddy__http_answer_close(conn, status, NULL, false, body, sizeof(body) - 1);
    }
    return false;
}

/* Completes an admitted upgrade: the handshake callback answers, or eddy with a 101 that
 * carries extra ("Name: value\r\n" lines; NULL: none) and, unless extra has_protocol,
 * the subprotocol websocket_subprotocol chooses. */
static void upgrade_complete(eddy__conn_t *conn, eddy_request_t *req, eddy_response_t *resp,
                             const char *key, const char *extra, bool has_protocol);

static void ws_upgrade_request(eddy__conn_t *conn, eddy_request_t *req, eddy_response_t *resp)
{
    eddy_server_t *srv = conn->loop->srv;
    eddy__conn_set_status(conn, EDDY_WS_STATUS_CONNECTION);
    if (srv->on_handshake != NULL) {
        if (upgrade_admitted(conn, req))
            upgrade_complete(conn, req, resp, NULL, NULL, false);
        return;
    }

    const char *key = NULL, *why = NULL;
    size_t key_len = 0;
    int status = validate_upgrade(req, &key, &key_len, &why);
    if (status != 0) {
        handshake_failed(conn, EDDY__LOG_DEBUG, status, why);
        return;
    }
    if (upgrade_admitted(conn, req))
        upgrade_complete(conn, req, resp, key, NULL, false);
}

/* Queues eddy's own 101 (protocol: protocol_len bytes, none if 0; extensions and extra:
 * whole header lines, or ""). Built in place, without printf or a heap buffer unless extra
 * (the handshake hook's headers) is long: a handshake is one of a server's hot paths. */
static int write_101(eddy__conn_t *conn, const char *accept, const char *protocol,
                     size_t protocol_len, const char *extensions, const char *extra,
                     const char *date)
{
    static const char head[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                               "Connection: Upgrade\r\nSec-WebSocket-Accept: ";
    static const char version[] = "\r\nSec-WebSocket-Version: 13\r\n";
    static const char proto[] = "Sec-WebSocket-Protocol: ";
    static const char server[] = "Server: eddy\r\nDate: ";
    const struct {
        const char *p;
        size_t n;
    } part[] = {
        {head, sizeof(head) - 1},
        {accept, EDDY_WS_ACCEPT_LEN},
        {version, sizeof(version) - 1},
        {proto, protocol_len > 0 ? sizeof(proto) - 1 : 0},
        {protocol, protocol_len},
        {"\r\n", protocol_len > 0 ? 2 : 0},
        {extensions, strlen(extensions)},
        {extra, strlen(extra)},
        {server, sizeof(server) - 1},
        {date, strlen(date)},
        {"\r\n\r\n", 4},
    };
    size_t len = 0;
    for (size_t i = 0; i < sizeof(part) / sizeof(part[0]); i++)
        len += part[i].n;
    char stack[512];
    char *out = len <= sizeof(stack) ? stack : malloc(len);
    if (out == NULL)
        return EDDY_ENOMEM;
    char *at = out;
    for (size_t i = 0; i < sizeof(part) / sizeof(part[0]); i++) {
        if (part[i].n > 0)
            memcpy(at, part[i].p, part[i].n);
        at += part[i].n;
    }
    int rc = eddy__conn_write(conn, out, len);
    if (out != stack)
        free(out);
    return rc;
}

static void upgrade_complete(eddy__conn_t *conn, eddy_request_t *req, eddy_response_t *resp,
                             const char *key, const char *extra, bool has_protocol)
{
    eddy_server_t *srv = conn->loop->srv;
    if (srv->on_handshake != NULL) {
        eddy__conn_set_status(conn, EDDY_WS_STATUS_HANDSHAKE);
        resp->handshake = true;
        srv->on_handshake(srv, req, resp, srv->user_data);
        if (!resp->finished && upgrade_pending(conn)) {
            /* As Swoole: a handshake left unanswered fails with a 500. */
            eddy__conn_set_status(conn, EDDY_WS_STATUS_CONNECTION);
            handshake_failed(conn, EDDY__LOG_NOTICE, 500, "the handshake callback did not answer");
        }
        return;
    }

    eddy__conn_set_status(conn, EDDY_WS_STATUS_HANDSHAKE);
    char accept[EDDY_WS_ACCEPT_LEN + 1];
    eddy__ws_accept_checked_key(key, accept); /* checked by upgrade_check() */
    const char *ours = has_protocol ? NULL : srv->opts.websocket_subprotocol, *protocol = NULL;
    size_t protocol_len = ours != NULL ? choose_subprotocol(ours, req, &protocol) : 0;
    eddy__pmd_t pmd;
    char extensions[200];
    bool has_pmd = eddy__ws_negotiate(conn, req, &pmd, extensions, sizeof(extensions));
    const char *date = eddy__http_date(conn->loop);
    int rc = write_101(conn, accept, protocol, protocol_len, has_pmd ? extensions : "",
                       extra != NULL ? extra : "", date);
    if (rc != 0 || eddy__ws_start(conn, EDDY__WS_SERVER, has_pmd ? &pmd : NULL) != 0) {
        eddy__conn_close(conn, EDDY__CLOSE_ABORT);
        return;
    }
    eddy__response_access_log(resp, 101);
    if (srv->on_open != NULL) {
        eddy__conn_t *outer = conn->loop->dispatching;
        conn->loop->dispatching = conn;
        srv->on_open(srv, req, srv->user_data);
        conn->loop->dispatching = outer;
    }
}

static int ws_upgrade_end(eddy_response_t *resp, const void *data, size_t len)
{
    eddy__conn_t *conn = resp->conn;
    if (resp->finished)
        return EDDY_ESTATE;
    resp->finished = true;
    if (conn == NULL || !upgrade_pending(conn))
        return EDDY_ECLOSED;
    if (resp->status == 101) {
        /* Exactly the application's headers (a 101 has no body and no length), plus the
         * compression eddy negotiates, as Swoole does, unless the application did. */
        eddy__pmd_t pmd;
        char extensions[200];
        bool has_pmd = false;
        if (!eddy__response_has_header(resp, "sec-websocket-extensions"))
            has_pmd = eddy__ws_negotiate(conn, eddy__http_request(conn), &pmd, extensions,
                                         sizeof(extensions));
        int rc = eddy__response_send_head(resp, has_pmd ? extensions : NULL, -1);
        if (rc == 0)
            rc = eddy__ws_start(conn, EDDY__WS_SERVER, has_pmd ? &pmd : NULL);
        if (rc != 0) {
            eddy__conn_close(conn, EDDY__CLOSE_ABORT);
            return rc;
        }
        eddy__response_access_log(resp, 101);
        return 0;
    }
    eddy__conn_set_status(conn, EDDY_WS_STATUS_CONNECTION);
    eddy__stat_add(&conn->loop->stats.ws_refused, 1);
    eddy__log(conn_srv(conn), EDDY__LOG_DEBUG,
              "session#%" PRIu64 ": handshake callback refused the upgrade with %d", conn->id,
              resp->status);
    resp->keep_alive = false;
    int rc = eddy__response_send_head(resp, "Connection: close\r\n", (int64_t)len);
    if (rc == 0 && len > 0) {
        resp->body_bytes = len;
        rc = eddy__conn_write(conn, data, len);
    }
    eddy__response_access_log(resp, resp->status);
    eddy__conn_close(conn, EDDY__CLOSE_GRACEFUL);
    return rc;
}

/* ---- deferred answers (eddy_upgrade_defer()) ---- */

static void ws_upgrade_expired(eddy__conn_t *conn)
{
    handshake_failed(conn, EDDY__LOG_NOTICE, 503,
                     "the upgrade was not answered within websocket_upgrade_timeout");
}

/* An answer on its way to the connection's loop: headers and body in the same block. */
typedef struct upgrade_answer {
    eddy_fd_t fd;
    int status;      /* 101: accept */
    bool has_header; /* accept: a Sec-WebSocket-Protocol; refusal: a Content-Type */
    char *headers;   /* "Name: value\r\n" lines, or NULL */
    size_t body_len;
    char *body;
} upgrade_answer_t;

static void upgrade_answer_apply(eddy__conn_t *conn, eddy_request_t *req, eddy_response_t *resp,
                                 void *arg)
{
    const upgrade_answer_t *ans = arg;
    eddy_server_t *srv = conn->loop->srv;
    if (ans->status != 101) {
        eddy__stat_add(&conn->loop->stats.ws_refused, 1);
        eddy__log(srv, EDDY__LOG_INFO, "session#%" PRIu64 ": deferred upgrade refused with %d",
                  conn->id, ans->status);
        eddy__http_answer_close(conn, ans->status, ans->headers, ans->has_header, ans->body,
                                ans->body_len);
        return;
    }
    const char *key = NULL, *why = NULL;
    size_t key_len = 0;
    if (srv->on_handshake == NULL && validate_upgrade(req, &key, &key_len, &why) != 0) {
        eddy__conn_close(conn, EDDY__CLOSE_ABORT); /* validated when it arrived: unreachable */
        return;
    }
    upgrade_complete(conn, req, resp, key, ans->headers, ans->has_header);
}

static void upgrade_answer_run(eddy_server_t *srv, void *arg)
{
    upgrade_answer_t *ans = arg;
    eddy__conn_t *conn = eddy__conn_lookup(eddy__loop_here(srv), ans->fd);
    if (conn == NULL || !eddy__http_resume(conn, upgrade_answer_apply, ans))
        eddy__log(srv, EDDY__LOG_DEBUG,
                  "session#%" PRIu64 ": upgrade answer %d ignored: no upgrade pending (closed, "
                  "answered already or timed out)",
                  ans->fd, ans->status);
    free(ans);
}

/* Copies an answer and hands it to fd's loop. */
static int upgrade_answer_post(eddy_server_t *srv, eddy_fd_t fd, int status,
                               const char *const *headers, const char *body)
{
    eddy__buf_t lines = {0};
    bool has = false;
    int rc = status == 101
                 ? format_headers(&lines, headers, accept_managed, "sec-websocket-protocol", &has)
                 : format_headers(&lines, headers, refusal_managed, "content-type", &has);
    size_t body_len = body != NULL ? strlen(body) : 0;
    upgrade_answer_t *ans = NULL;
    if (rc == 0 && (ans = malloc(sizeof(*ans) + lines.len + 1 + body_len + 1)) == NULL)
        rc = EDDY_ENOMEM;
    if (rc != 0) {
        eddy__buf_free(&lines);
        return rc;
    }
    ans->fd = fd;
    ans->status = status;
    ans->has_header = has;
    char *p = (char *)(ans + 1);
    ans->headers = lines.len > 0 ? p : NULL;
    if (lines.len > 0)
        memcpy(p, lines.data, lines.len);
    p[lines.len] = '\0';
    ans->body = p + lines.len + 1;
    ans->body_len = body_len;
    if (body_len > 0)
        memcpy(ans->body, body, body_len);
    ans->body[body_len] = '\0';
    eddy__buf_free(&lines);
    rc = eddy_post(srv, fd, upgrade_answer_run, ans);
    if (rc != 0)
        free(ans);
    return rc;
}

int eddy_upgrade_accept(eddy_server_t *srv, eddy_fd_t fd, const char *const *headers)
{
    return upgrade_answer_post(srv, fd, 101, headers, NULL);
}

int eddy_upgrade_reject(eddy_server_t *srv, eddy_fd_t fd, int status, const char *const *headers,
                        const char *body)
{
    if (status < 400 || status > 599)
        return EDDY_EINVAL;
    return upgrade_answer_post(srv, fd, status, headers, body);
}

const eddy__http_upgrade_t eddy__ws_upgrade = {
    .request = ws_upgrade_request,
    .end = ws_upgrade_end,
    .expired = ws_upgrade_expired,
};

int eddy__ws_start(eddy__conn_t *conn, enum eddy__ws_role role, const eddy__pmd_t *pmd)
{
    if (ws_loop(conn->loop) == NULL)
        return EDDY_ENOMEM;
    conn->ws_client = role == EDDY__WS_CLIENT;
    if (pmd != NULL) {
        conn->pmd_on = true;
        conn->pmd = *pmd;
    }
    eddy__conn_switch(conn, &eddy__ws_proto);
    eddy__conn_set_status(conn, EDDY_WS_STATUS_ACTIVE);
    conn->ever_established = true;
    eddy__stat_add(&conn->loop->stats.ws_opened, 1);
    eddy__conn_drop_timer(conn); /* at rest: no timeout until the closing handshake */
    if (eddy__log_on(conn->loop, EDDY__LOG_DEBUG)) {
        /* Called while the upgrade request is dispatched: it is the loop's request. */
        const char *path = eddy__http_request(conn)->path;
        char escaped[256];
        eddy__log_escape(escaped, sizeof(escaped), path, strlen(path));
        eddy__log(conn_srv(conn), EDDY__LOG_DEBUG, "session#%" PRIu64 ": WebSocket open on %s%s",
                  conn->id, escaped, pmd != NULL ? " (permessage-deflate)" : "");
    }
    return 0;
}

bool eddy__ws_close_sent(const eddy__conn_t *conn)
{
    return conn->ws_close_sent;
}

/* The permessage-deflate parameters of each direction, for the session's role: eddy__pmd_t
 * names them from the server's side. */
static int tx_window_bits(const eddy__conn_t *conn)
{
    return conn->ws_client ? conn->pmd.client_window_bits : conn->pmd.server_window_bits;
}

static bool tx_no_context_takeover(const eddy__conn_t *conn)
{
    return conn->ws_client ? conn->pmd.client_no_context_takeover
                           : conn->pmd.server_no_context_takeover;
}

static int rx_window_bits(const eddy__conn_t *conn)
{
    return conn->ws_client ? conn->pmd.server_window_bits : conn->pmd.client_window_bits;
}

static bool rx_no_context_takeover(const eddy__conn_t *conn)
{
    return conn->ws_client ? conn->pmd.server_no_context_takeover
                           : conn->pmd.client_no_context_takeover;
}

int eddy__ws_shared_deflate_bits(const eddy__conn_t *conn)
{
    return conn->pmd_on && tx_no_context_takeover(conn) ? tx_window_bits(conn) : 0;
}

static void state_free(eddy__ws_state_t *ws)
{
    eddy__buf_free(&ws->msg);
    eddy__inflater_free(ws->inflater);
    eddy__deflater_free(ws->deflater);
    free(ws);
}

static void ws_free(eddy__conn_t *conn)
{
    if (conn->proto_state != NULL)
        state_free(conn->proto_state);
    conn->proto_state = NULL;
}

/* The connection's own state, allocated (zeroed) if it has none. NULL: out of memory. */
static eddy__ws_state_t *own_state(eddy__conn_t *conn)
{
    if (conn->proto_state == NULL)
        conn->proto_state = calloc(1, sizeof(eddy__ws_state_t));
    return conn->proto_state;
}

/* The receive state of the connection whose input is being processed. */
static eddy__ws_state_t *rx_state(eddy__conn_t *conn)
{
    /* The loop's state exists: ws_start() made it. */
    return ((ws_loop_t *)eddy__loop_slot(conn->loop, EDDY__SLOT_WS))->rx;
}

/* Whether a receive state holds anything that must outlive this read (bitwise: one
 * branch on the hot path). */
static bool state_busy(const eddy__ws_state_t *ws)
{
    return ws->in_frame | ws->in_message | (ws->hdr_stash_len != 0) | (ws->msg.cap != 0) |
           (ws->inflater != NULL) | (ws->deflater != NULL);
}

/* Picks the state input is parsed with: the connection's own if it has one, else the
 * loop's scratch state (NULL: out of memory). */
static eddy__ws_state_t *rx_begin(eddy__conn_t *conn)
{
    ws_loop_t *wl = eddy__loop_slot(conn->loop, EDDY__SLOT_WS);
    if (conn->proto_state != NULL)
        return conn->proto_state;
    /* Input is not processed inside callbacks, so the scratch state serves one connection
     * at a time; should that ever change, the inner one gets a state of its own. */
    if (wl->rx == NULL && wl->scratch != NULL)
        return wl->scratch;
    if (wl->rx != NULL)
        return own_state(conn);
    wl->scratch = calloc(1, sizeof(*wl->scratch));
    return wl->scratch;
}

/* After a read: the scratch state moves into the connection if it is mid-frame or
 * mid-message, and a connection back at rest gives its own state up. */
static void rx_end(eddy__conn_t *conn, eddy__ws_state_t *ws)
{
    ws_loop_t *wl = eddy__loop_slot(conn->loop, EDDY__SLOT_WS);
    if (ws == wl->scratch) {
        /* A callback may have given the connection a state of its own meanwhile (a
         * deflater, sending with context takeover): the receive state joins it. */
        if (state_busy(ws) || conn->proto_state != NULL) {
            eddy__ws_state_t *own = own_state(conn);
            if (own == NULL) {
                eddy__buf_free(&ws->msg);
                eddy__inflater_free(ws->inflater);
                memset(ws, 0, sizeof(*ws));
                eddy__conn_close(conn, EDDY__CLOSE_ABORT);
                return;
            }
            eddy__deflater_t *deflater = own->deflater;
            *own = *ws;
            own->deflater = deflater;
            memset(ws, 0, sizeof(*ws));
        }
        /* Otherwise the scratch state is at rest: every field that matters is set again
         * when the next frame or message begins. */
    } else if (!state_busy(ws)) {
        state_free(ws);
        conn->proto_state = NULL;
    }
}

/* ---- sending ---- */

/* Writes a masked frame's header: the unmasked one plus the mask bit and the key, which
 * follows the length (RFC 6455 5.2). Done here rather than by passing the key to
 * eddy__ws_write_header() so the server's calls keep its specialisation for no key. */
static size_t write_masked_header(uint8_t out[EDDY_WS_MAX_HEADER_LEN], uint8_t opcode, int flags,
                                  size_t len, const uint8_t mask[4])
{
    size_t header_len = eddy__ws_write_header(out, opcode, flags, len, NULL);
    out[1] |= 0x80;
    memcpy(out + header_len, mask, 4);
    return header_len + 4;
}

/* A fresh mask key from the loop's batch of kernel CSPRNG bytes (RFC 6455 10.3: keys
 * must not be predictable). Returns 0 or -errno. */
static int next_mask_key(eddy__loop_t *loop, uint8_t mask[4])
{
    ws_loop_t *wl = eddy__loop_slot(loop, EDDY__SLOT_WS);
    if (wl->mask_keys_left < 4) {
        ssize_t n = getrandom(wl->mask_keys, sizeof(wl->mask_keys), 0);
        if (n != (ssize_t)sizeof(wl->mask_keys))
            return n < 0 ? -errno : -EIO;
        wl->mask_keys_left = sizeof(wl->mask_keys);
    }
    memcpy(mask, wl->mask_keys + sizeof(wl->mask_keys) - wl->mask_keys_left, 4);
    wl->mask_keys_left = (uint16_t)(wl->mask_keys_left - 4);
    return 0;
}

/* queue_frame(), or hold_frame() with hold, for the client role: masked with a fresh key
 * (out of line, so the server's queue_frame() stays small). */
static __attribute__((noinline)) int queue_masked(eddy__conn_t *conn, uint8_t opcode, int flags,
                                                  const void *payload, size_t len, bool hold)
{
    uint8_t mask[4] = {0}; /* set by next_mask_key(); zeroed for gcc's LTO flow analysis */
    int rc = next_mask_key(conn->loop, mask);
    if (rc != 0) {
        eddy__log(conn_srv(conn), EDDY__LOG_ERROR,
                  "session#%" PRIu64 ": no random bytes for a mask key", conn->id);
        return rc;
    }
    uint8_t *room = hold ? NULL : eddy__conn_reserve(conn, EDDY_WS_MAX_HEADER_LEN + len);
    if (room != NULL) {
        size_t header_len = write_masked_header(room, opcode, flags, len, mask);
        if (len) {
            memcpy(room + header_len, payload, len);
            eddy__ws_mask(room + header_len, len, mask, 0);
        }
        eddy__conn_commit(conn, header_len + len);
        return 0;
    }
    /* Held, or larger than a segment: masked in a copy (the caller's bytes stay as they
     * are). */
    uint8_t header[EDDY_WS_MAX_HEADER_LEN];
    size_t header_len = write_masked_header(header, opcode, flags, len, mask);
    uint8_t *copy = malloc(len);
    if (copy == NULL)
        return EDDY_ENOMEM;
    memcpy(copy, payload, len);
    eddy__ws_mask(copy, len, mask, 0);
    rc = hold ? eddy__conn_hold2(conn, header, header_len, copy, len)
              : eddy__conn_write2(conn, header, header_len, copy, len);
    free(copy);
    return rc;
}

/*
 * Queues a frame; messages (0 or 1) is what it adds to the loop's messages_out once queued.
 * Counted here, not by the caller after the call: push_whole() ends in a tail call again,
 * and the add lands where the loop is in a register (bench/instructions, echo: 602 -> 598
 * instructions per 20-byte message).
 */
static int queue_frame(eddy__conn_t *conn, uint8_t opcode, int flags, const void *payload,
                       size_t len, unsigned messages)
{
    flags &= EDDY_WS_FLAG_FIN | EDDY_WS_FLAG_RSV1;
    int rc;
    if (conn->ws_client) {
        rc = queue_masked(conn, opcode, flags, payload, len, false);
    } else {
        /* Framed in place in the output queue where it fits: no copy of the header. */
        uint8_t *room = eddy__conn_reserve(conn, EDDY_WS_MAX_HEADER_LEN + len);
        if (room != NULL) {
            /* Counted before the copy, while the loop is still in a register: from here on
             * the frame cannot fail. */
            eddy__stat_add(&conn->loop->stats.messages_out, messages);
            size_t header_len = eddy__ws_write_header_unmasked(room, opcode, flags, len);
            if (len)
                memcpy(room + header_len, payload, len);
            eddy__conn_commit(conn, header_len + len);
            return 0;
        }
        uint8_t header[EDDY_WS_MAX_HEADER_LEN];
        size_t header_len = eddy__ws_write_header(header, opcode, flags, len, NULL);
        rc = eddy__conn_write2(conn, header, header_len, payload, len);
    }
    if (rc == 0)
        eddy__stat_add(&conn->loop->stats.messages_out, messages);
    return rc;
}

/* Queues a whole data message behind the fragmented one being sent (RFC 6455 5.4). */
static int hold_frame(eddy__conn_t *conn, uint8_t opcode, int flags, const void *payload,
                      size_t len)
{
    if (conn->ws_client)
        return queue_masked(conn, opcode, flags, payload, len, true);
    uint8_t header[EDDY_WS_MAX_HEADER_LEN];
    size_t header_len = eddy__ws_write_header(header, opcode, flags, len, NULL);
    return eddy__conn_hold2(conn, header, header_len, payload, len);
}

/* Compresses and queues a whole data message (held while a fragmented one is being sent);
 * messages as for queue_frame(). */
static int queue_compressed(eddy__conn_t *conn, uint8_t opcode, const void *data, size_t len,
                            unsigned messages)
{
    ws_loop_t *wl = eddy__loop_slot(conn->loop, EDDY__SLOT_WS);
    const eddy__options_t *opts = &conn_srv(conn)->opts;
    int bits = tx_window_bits(conn);
    eddy__deflater_t *d;
    if (tx_no_context_takeover(conn)) {
        d = eddy__ws_shared_deflater(conn->loop, eddy__deflate_fit_bits(len, bits));
    } else {
        eddy__ws_state_t *own = own_state(conn);
        if (own == NULL)
            return EDDY_ENOMEM;
        if (own->deflater == NULL)
            own->deflater = eddy__deflater_new(bits, opts->websocket_compression_level,
                                               opts->websocket_compression_mem_level);
        d = own->deflater;
    }
    if (d == NULL)
        return EDDY_ENOMEM;
    int rc = eddy__deflate(d, data, len, &wl->deflate_out);
    if (tx_no_context_takeover(conn))
        eddy__deflater_reset(d);
    if (rc != 0)
        return rc;
    int flags = EDDY_WS_FLAG_FIN | EDDY_WS_FLAG_RSV1;
    if (!conn->hold_output)
        return queue_frame(conn, opcode, flags, wl->deflate_out.data, wl->deflate_out.len,
                           messages);
    rc = hold_frame(conn, opcode, flags, wl->deflate_out.data, wl->deflate_out.len);
    if (rc == 0)
        eddy__stat_add(&conn->loop->stats.messages_out, messages);
    return rc;
}

void eddy__ws_send_close(eddy__conn_t *conn, uint16_t code, const char *reason, size_t reason_len,
                         bool wait_for_peer)
{
    if (!conn->ws_close_sent) {
        uint8_t payload[125];
        size_t len = 0;
        if (code != 0 && code != EDDY_WS_CLOSE_STATUS_ERROR) {
            reason_len = EDDY__MIN(reason_len, sizeof(payload) - 2);
            payload[0] = (uint8_t)(code >> 8);
            payload[1] = (uint8_t)code;
            if (reason_len)
                memcpy(payload + 2, reason, reason_len);
            len = 2 + reason_len;
        }
        conn->ws_close_sent = true;
        debug_close_frame(conn, "sent", len > 0 ? code : EDDY_WS_CLOSE_STATUS_ERROR,
                          (const char *)payload + 2, len > 0 ? len - 2 : 0);
        queue_frame(conn, EDDY_WS_OPCODE_CLOSE, EDDY_WS_FLAG_FIN, payload, len, 0);
    }
    uint32_t wait_ms = conn_srv(conn)->opts.websocket_close_timeout_ms;
    if (wait_for_peer && eddy__ws_open(conn)) {
        eddy__conn_set_status(conn, EDDY_WS_STATUS_CLOSING);
        if (wait_ms > 0) {
            eddy__conn_set_timeout(conn, wait_ms);
            return;
        }
        /* websocket_close_timeout 0: no wait for the peer's answer, as Swoole. */
    }
    eddy__conn_close(conn, EDDY__CLOSE_GRACEFUL);
}

static void ws_timeout(eddy__conn_t *conn)
{
    eddy__log(conn_srv(conn), EDDY__LOG_INFO,
              "session#%" PRIu64 ": closing handshake not finished in time, closing", conn->id);
    eddy__conn_close(conn, EDDY__CLOSE_GRACEFUL);
}

static bool opcode_valid(int opcode)
{
    return (opcode >= EDDY_WS_OPCODE_CONTINUATION && opcode <= EDDY_WS_OPCODE_BINARY) ||
           (opcode >= EDDY_WS_OPCODE_CLOSE && opcode <= EDDY_WS_OPCODE_PONG);
}

/* eddy__ws_push_check(), inline for eddy__ws_push(), against the limit max_len. */
static inline int push_check(size_t max_len, const void *data, size_t len, int opcode, int flags)
{
    if (!opcode_valid(opcode) || (data == NULL && len > 0))
        return EDDY_EINVAL;
    if (len > max_len)
        return EDDY_ETOOBIG;
    if (opcode >= EDDY_WS_OPCODE_CLOSE && (len > 125 || !(flags & EDDY_WS_FLAG_FIN)))
        return EDDY_EINVAL;
    uint16_t code;
    const char *reason;
    size_t reason_len;
    if (opcode == EDDY_WS_OPCODE_CLOSE &&
        eddy__ws_parse_close(data, len, &code, &reason, &reason_len) != 0)
        return EDDY_EINVAL;
    return 0;
}

int eddy__ws_push_check(const eddy_server_t *srv, const void *data, size_t len, int opcode,
                        int flags)
{
    return push_check(eddy__package_max_length(srv), data, len, opcode, flags);
}

/* Whether a push goes out compressed: asked for (or over the threshold), negotiated, and
 * a whole data message. */
static inline bool wants_compression(const eddy__conn_t *conn, size_t len, int opcode, int flags)
{
    size_t threshold = conn_srv(conn)->opts.websocket_compression_threshold;
    return conn->pmd_on && opcode != EDDY_WS_OPCODE_CONTINUATION && opcode < EDDY_WS_OPCODE_CLOSE &&
           (flags & EDDY_WS_FLAG_FIN) &&
           ((flags & EDDY_WS_FLAG_COMPRESS) || (threshold > 0 && len >= threshold));
}

/* A volatile message the connection is not ready for: not sent (EDDY_WS_FLAG_VOLATILE). */
static int volatile_drop(eddy__conn_t *conn, size_t nparts, size_t len)
{
    eddy__log(conn_srv(conn), EDDY__LOG_DEBUG,
              "session#%" PRIu64 ": volatile message dropped (%zu part%s, %zu bytes): %zu bytes "
              "queued",
              conn->id, nparts, nparts == 1 ? "" : "s", len, eddy__conn_out_bytes(conn));
    return EDDY_EDROPPED;
}

/*
 * eddy__ws_push() for a fragment, or for any frame while a fragmented message is being sent
 * (RFC 6455 5.4: nothing but control frames may come between its frames). One fragmented
 * message at a time: its first frame starts holding whole messages back (hold_output), its
 * last lets them follow, in order. Not inlined: inside eddy__ws_push it cost every whole
 * message 8-13 instructions (bench/instructions, echo: 670 before, 671 out of line).
 */
__attribute__((noinline)) static int push_in_message(eddy__conn_t *conn, const void *data,
                                                     size_t len, int opcode, int flags)
{
    bool fragment = opcode == EDDY_WS_OPCODE_CONTINUATION || !(flags & EDDY_WS_FLAG_FIN);
    if (fragment && conn->hold_output != (opcode == EDDY_WS_OPCODE_CONTINUATION)) {
        /* Logged too: a push from another thread learns of the refusal only here. */
        eddy__log(conn_srv(conn), EDDY__LOG_NOTICE, "session#%" PRIu64 ": push refused: %s",
                  conn->id,
                  conn->hold_output ? "a fragmented message is being sent already"
                                    : "a continuation frame with no fragmented message begun");
        return EDDY_ESTATE;
    }
    /* EDDY_WS_FLAG_VOLATILE: for whole data messages only (a fragment dropped would leave
     * its message unfinished). */
    if ((flags & EDDY_WS_FLAG_VOLATILE) && !fragment && opcode < EDDY_WS_OPCODE_CLOSE &&
        eddy__conn_backed_up(conn))
        return volatile_drop(conn, 1, len);
    int admitted = 0;
    if (opcode < EDDY_WS_OPCODE_CLOSE && (admitted = eddy__conn_admit(conn, len)) < 0)
        return admitted;
    int rc;
    if (fragment || opcode >= EDDY_WS_OPCODE_CLOSE)
        rc = queue_frame(conn, (uint8_t)opcode, flags & EDDY_WS_FLAG_FIN, data, len, 0);
    else if (wants_compression(conn, len, opcode, flags))
        rc = queue_compressed(conn, (uint8_t)opcode, data, len, 0); /* held */
    else
        rc = hold_frame(conn, (uint8_t)opcode, EDDY_WS_FLAG_FIN, data, len);
    if (rc == 0 && (flags & EDDY_WS_FLAG_FIN) && opcode < EDDY_WS_OPCODE_CLOSE)
        eddy__stat_add(&conn->loop->stats.messages_out, 1);
    if (fragment && rc == 0) {
        if (opcode != EDDY_WS_OPCODE_CONTINUATION)
            conn->hold_output = true;
        else if (flags & EDDY_WS_FLAG_FIN)
            eddy__conn_release_held(conn);
    }
    return rc != 0 ? rc : admitted;
}

/* A whole message (not a fragment, none being sent): admitted, then queued, compressed if
 * wanted. */
static inline int push_whole(eddy__conn_t *conn, const void *data, size_t len, int opcode,
                             int flags)
{
    /* Control frames are never refused: they are small, and reading stops while the
     * output is over the limit, so their number is bounded too. */
    int rc, admitted = 0;
    if (opcode < EDDY_WS_OPCODE_CLOSE && (admitted = eddy__conn_admit(conn, len)) < 0)
        return admitted;
    /* FIN, known here: written out so that the compiler drops the tests of it. */
    unsigned messages = opcode < EDDY_WS_OPCODE_CLOSE; /* data messages count */
    if (wants_compression(conn, len, opcode, flags | EDDY_WS_FLAG_FIN))
        rc = queue_compressed(conn, (uint8_t)opcode, data, len, messages);
    else
        rc = queue_frame(conn, (uint8_t)opcode, EDDY_WS_FLAG_FIN, data, len, messages);
    return rc != 0 ? rc : admitted;
}

/* eddy__ws_push() of a whole message with EDDY_WS_FLAG_VOLATILE, no fragmented message
 * being sent. Out of line, as push_in_message(). */
__attribute__((noinline)) static int push_volatile(eddy__conn_t *conn, const void *data, size_t len,
                                                   int opcode, int flags)
{
    if (opcode < EDDY_WS_OPCODE_CLOSE && eddy__conn_backed_up(conn))
        return volatile_drop(conn, 1, len);
    return push_whole(conn, data, len, opcode, flags);
}

int eddy__ws_push(eddy__conn_t *conn, const void *data, size_t len, int opcode, int flags)
{
    /* The session's status, not ours: another thread may have begun the close already. */
    /* ACTIVE: switched to WebSocket (the only protocol that sets it) and not closing. */
    if (conn->ending || conn->ws_close_sent ||
        atomic_load_explicit(&conn->ws_status, memory_order_relaxed) != EDDY_WS_STATUS_ACTIVE)
        return EDDY_ESTATE;
    /* On conn's loop: its copy of the limit (eddy__loop_refresh_limits()). */
    int rc = push_check(conn->loop->package_max_length, data, len, opcode, flags);
    if (rc != 0)
        return rc;
    if (opcode == EDDY_WS_OPCODE_CLOSE) {
        uint16_t code;
        const char *reason;
        size_t reason_len;
        eddy__ws_parse_close(data, len, &code, &reason, &reason_len);
        eddy__ws_send_close(conn, code, reason, reason_len, true);
        return 0;
    }
    /* Fragments, and anything while a fragmented message is being sent, take the longer
     * way, as do volatile messages; a whole message otherwise costs these two tests. */
    if (!(flags & EDDY_WS_FLAG_FIN) || opcode == EDDY_WS_OPCODE_CONTINUATION || conn->hold_output)
        return push_in_message(conn, data, len, opcode, flags);
    if (flags & EDDY_WS_FLAG_VOLATILE)
        return push_volatile(conn, data, len, opcode, flags);
    return push_whole(conn, data, len, opcode, flags);
}

int eddy__ws_parts_check(const eddy_server_t *srv, const eddy_part_t *parts, size_t nparts)
{
    if (parts == NULL || nparts == 0 || nparts > EDDY_PARTS_MAX)
        return EDDY_EINVAL;
    for (size_t i = 0; i < nparts; i++) {
        const eddy_part_t *part = &parts[i];
        if ((part->opcode != EDDY_WS_OPCODE_TEXT && part->opcode != EDDY_WS_OPCODE_BINARY) ||
            (part->data == NULL && part->len > 0))
            return EDDY_EINVAL;
        if (part->len > eddy__package_max_length(srv))
            return EDDY_ETOOBIG;
    }
    return 0;
}

int eddy__ws_push_parts(eddy__conn_t *conn, const eddy_part_t *parts, size_t nparts, int flags)
{
    if (conn->ending || conn->ws_close_sent ||
        atomic_load_explicit(&conn->ws_status, memory_order_relaxed) != EDDY_WS_STATUS_ACTIVE)
        return EDDY_ESTATE;
    int rc = eddy__ws_parts_check(conn_srv(conn), parts, nparts);
    if (rc != 0)
        return rc;
    size_t total = 0;
    for (size_t i = 0; i < nparts; i++)
        total += parts[i].len;
    if ((flags & EDDY_WS_FLAG_VOLATILE) && eddy__conn_backed_up(conn))
        return volatile_drop(conn, nparts, total);
    /* Admitted whole: a peer must never get a part without the rest. */
    int admitted = eddy__conn_admit(conn, total);
    if (admitted < 0)
        return admitted;
    int part_flags = EDDY_WS_FLAG_FIN | (flags & EDDY_WS_FLAG_COMPRESS);
    for (size_t i = 0; i < nparts; i++) {
        const eddy_part_t *part = &parts[i];
        if (wants_compression(conn, part->len, part->opcode, part_flags))
            rc = queue_compressed(conn, (uint8_t)part->opcode, part->data, part->len, 0);
        else if (conn->hold_output)
            rc = hold_frame(conn, (uint8_t)part->opcode, EDDY_WS_FLAG_FIN, part->data, part->len);
        else
            rc = queue_frame(conn, (uint8_t)part->opcode, EDDY_WS_FLAG_FIN, part->data, part->len,
                             0);
        if (rc != 0) {
            /* The peer would wait for parts that never come: the connection ends (queueing
             * out of memory has aborted it already). */
            if (i > 0 && !conn->ending) {
                eddy__log(conn_srv(conn), EDDY__LOG_ERROR,
                          "session#%" PRIu64 ": part %zu of %zu not sent (%s), closing", conn->id,
                          i + 1, nparts, eddy_strerror(rc));
                eddy__conn_close(conn, EDDY__CLOSE_ABORT);
            }
            return rc;
        }
    }
    eddy__stat_add(&conn->loop->stats.messages_out, nparts);
    return admitted;
}

/* ---- receiving ---- */

static void fail(eddy__conn_t *conn, uint16_t code, const char *why)
{
    eddy__log(conn_srv(conn), EDDY__LOG_NOTICE,
              "session#%" PRIu64 ": WebSocket protocol error, closing with %u: %s", conn->id, code,
              why);
    if (conn->client_owned)
        eddy__client_failed(conn, code, why);
    eddy__ws_send_close(conn, code, why, strlen(why), false);
}

/* Calls the message callback with data NUL-terminated (the byte after it is restored). */
static void deliver(eddy__conn_t *conn, eddy_frame_t *frame, char *data, size_t len)
{
    eddy_server_t *srv = conn->loop->srv;
    char saved = data[len];
    data[len] = '\0';
    eddy__stat_add(&conn->loop->stats.messages_in, 1);
    frame->fd = conn->id;
    frame->data = data;
    frame->len = len;
    frame->finish = true;
    eddy__conn_t *outer = conn->loop->dispatching;
    conn->loop->dispatching = conn; /* eddy_push() to this connection finds it at once */
    if (conn->client_owned)
        eddy__client_deliver(conn, frame);
    else
        srv->on_message(srv, frame, srv->user_data);
    conn->loop->dispatching = outer;
    data[len] = saved;
}

static uint8_t frame_flags(const eddy__ws_header_t *hdr)
{
    return (uint8_t)((hdr->fin ? EDDY_WS_FLAG_FIN : 0) | (hdr->masked ? EDDY_WS_FLAG_MASK : 0) |
                     ((hdr->rsv & 4) ? EDDY_WS_FLAG_RSV1 : 0) |
                     ((hdr->rsv & 2) ? EDDY_WS_FLAG_RSV2 : 0) |
                     ((hdr->rsv & 1) ? EDDY_WS_FLAG_RSV3 : 0));
}

static void on_close_frame(eddy__conn_t *conn, uint8_t *payload, size_t len)
{
    eddy__ws_state_t *ws = rx_state(conn);
    const eddy__options_t *opts = &conn_srv(conn)->opts;
    uint16_t code;
    const char *reason;
    size_t reason_len;
    int bad = eddy__ws_parse_close(payload, len, &code, &reason, &reason_len);
    if (bad != 0) {
        fail(conn, (uint16_t)bad,
             bad == 1007 ? "close reason is not valid UTF-8" : "invalid close frame");
        return;
    }
    debug_close_frame(conn, "received", code, reason, reason_len);
    /* The reason is copied so it can be NUL-terminated without touching the buffer, and
     * so the answer can echo it whatever the callback did with shared buffers. */
    char reason_copy[126];
    memcpy(reason_copy, reason, reason_len);
    reason_copy[reason_len] = '\0';
    if (conn->client_owned)
        eddy__client_close_frame(conn, code, reason, reason_len);
    if (opts->open_websocket_close_frame && !conn->ws_close_sent) {
        eddy_frame_t frame = {.opcode = EDDY_WS_OPCODE_CLOSE,
                              .flags = frame_flags(&ws->hdr),
                              .code = code,
                              .reason = reason_copy,
                              .reason_len = reason_len};
        char empty[1] = "";
        deliver(conn, &frame, empty, 0);
        if (conn->ending)
            return;
    }
    /* Answer (echoing the code and reason, as Swoole does) unless we started the closing
     * handshake; either way the handshake is complete, and the server closes the TCP
     * connection first: a client waits for that (bounded by websocket_close_timeout). */
    eddy__ws_send_close(conn, code, reason_copy, reason_len, conn->ws_client);
}

static void on_control_frame(eddy__conn_t *conn, uint8_t *payload, size_t len)
{
    eddy__ws_state_t *ws = rx_state(conn);
    const eddy__options_t *opts = &conn_srv(conn)->opts;
    uint8_t opcode = ws->hdr.opcode;
    if (opcode == EDDY_WS_OPCODE_CLOSE) {
        on_close_frame(conn, payload, len);
        return;
    }
    if (conn->ws_close_sent)
        return; /* closing: pings are not answered any more */
    bool deliver_it = opcode == EDDY_WS_OPCODE_PING ? opts->open_websocket_ping_frame
                                                    : opts->open_websocket_pong_frame;
    if (deliver_it) {
        eddy_frame_t frame = {.opcode = opcode, .flags = frame_flags(&ws->hdr)};
        deliver(conn, &frame, (char *)payload, len);
    } else if (opcode == EDDY_WS_OPCODE_PING) {
        if (eddy__log_on(conn->loop, EDDY__LOG_TRACE))
            trace_frame(conn, "queued", EDDY_WS_OPCODE_PONG, true, false, len);
        queue_frame(conn, EDDY_WS_OPCODE_PONG, EDDY_WS_FLAG_FIN, payload, len, 0);
    }
}

/* Picks the inflater for a compressed message starting now, avail bytes of which are in
 * the current buffer. Returns false on out-of-memory. */
static bool begin_inflate(eddy__conn_t *conn, size_t avail)
{
    eddy__ws_state_t *ws = rx_state(conn);
    ws_loop_t *wl = eddy__loop_slot(conn->loop, EDDY__SLOT_WS);
    bool whole = ws->hdr.fin && ws->hdr.payload_len <= avail;
    if (rx_no_context_takeover(conn) && whole) {
        /* Inflated before anything else can run: the loop's stream serves everyone. */
        if (wl->shared_inflater == NULL)
            wl->shared_inflater = eddy__inflater_new(15);
        ws->msg_inflater = wl->shared_inflater;
    } else {
        if (ws->inflater == NULL)
            ws->inflater = eddy__inflater_new(rx_window_bits(conn));
        ws->msg_inflater = ws->inflater;
    }
    return ws->msg_inflater != NULL;
}

/* The compressed message ended (or failed): ready the inflater for the next one. */
static void end_inflate(eddy__conn_t *conn)
{
    eddy__ws_state_t *ws = rx_state(conn);
    if (ws->msg_inflater == NULL)
        return;
    ws_loop_t *wl = eddy__loop_slot(conn->loop, EDDY__SLOT_WS);
    if (ws->msg_inflater == wl->shared_inflater) {
        inflateReset(ws->msg_inflater);
    } else if (rx_no_context_takeover(conn)) {
        /* No history to keep: release the memory until the next such message. */
        eddy__inflater_free(ws->inflater);
        ws->inflater = NULL;
    }
    ws->msg_inflater = NULL;
}

static void on_message_complete(eddy__conn_t *conn, char *data, size_t len)
{
    eddy__ws_state_t *ws = rx_state(conn);
    ws->in_message = false;
    if (ws->msg_opcode == EDDY_WS_OPCODE_TEXT && !eddy__utf8_complete(ws->utf8_state)) {
        fail(conn, EDDY_WS_CLOSE_MESSAGE_ERROR, "text message ends inside a UTF-8 sequence");
        return;
    }
    if (!conn->ws_close_sent) {
        /* Delivered whole: FIN, whatever the first fragment said. */
        eddy_frame_t frame = {.opcode = ws->msg_opcode,
                              .flags = (uint8_t)(ws->msg_flags | EDDY_WS_FLAG_FIN)};
        deliver(conn, &frame, data, len);
    }
}

/* Reads a frame header; returns bytes of buf used, or 0 if more input is needed (the
 * bytes are stashed) or the connection failed. */
static size_t read_header(eddy__conn_t *conn, uint8_t *buf, size_t len)
{
    eddy__ws_state_t *ws = rx_state(conn);
    ssize_t rc;
    size_t used;
    if (ws->hdr_stash_len == 0) {
        rc = eddy__ws_parse_header(buf, len, &ws->hdr);
        if (rc == EDDY_AGAIN) {
            memcpy(ws->hdr_stash, buf, len); /* len < EDDY_WS_MAX_HEADER_LEN here */
            ws->hdr_stash_len = (uint8_t)len;
            return len;
        }
        used = rc > 0 ? (size_t)rc : 0;
    } else {
        size_t take = EDDY__MIN(len, sizeof(ws->hdr_stash) - ws->hdr_stash_len);
        memcpy(ws->hdr_stash + ws->hdr_stash_len, buf, take);
        rc = eddy__ws_parse_header(ws->hdr_stash, ws->hdr_stash_len + take, &ws->hdr);
        if (rc == EDDY_AGAIN) {
            ws->hdr_stash_len = (uint8_t)(ws->hdr_stash_len + take);
            return take;
        }
        used = rc > 0 ? (size_t)rc - ws->hdr_stash_len : 0;
        ws->hdr_stash_len = 0;
    }
    if (rc < 0) {
        fail(conn, EDDY_WS_CLOSE_PROTOCOL_ERROR, "invalid frame length");
        return 0;
    }
    eddy__ws_rules_t rules = {.expect_masked = !conn->ws_client,
                              .allowed_rsv = conn->pmd_on ? 4 : 0};
    if (eddy__log_on(conn->loop, EDDY__LOG_TRACE))
        trace_frame(conn, "received", ws->hdr.opcode, ws->hdr.fin, ws->hdr.rsv & 4,
                    ws->hdr.payload_len);
    int code = eddy__ws_check_header(&ws->hdr, &rules, ws->in_message);
    if (code != 0) {
        fail(conn, (uint16_t)code, "frame header violates RFC 6455");
        return 0;
    }
    bool control = ws->hdr.opcode >= EDDY_WS_OPCODE_CLOSE;
    if (!control) {
        bool first = ws->hdr.opcode != EDDY_WS_OPCODE_CONTINUATION;
        bool compressed = first ? (ws->hdr.rsv & 4) != 0 : ws->compressed;
        uint64_t limit = conn->loop->package_max_length;
        uint64_t so_far = first ? 0 : compressed ? ws->msg_wire_len : ws->msg.len;
        /* The limit is on the message: for a compressed one its inflated size, checked as
         * it inflates. Its bytes on the wire get a bound of their own, a little above the
         * limit, since deflate can grow incompressible data by a few bytes per block. */
        if (compressed)
            limit += limit / 64 + 1024;
        /* so_far may exceed a limit lowered while the message arrived. */
        if (so_far > limit || ws->hdr.payload_len > limit - so_far) {
            fail(conn, EDDY_WS_CLOSE_MESSAGE_TOO_BIG, "message exceeds package_max_length");
            return 0;
        }
        ws->msg_wire_len = so_far + ws->hdr.payload_len;
        if (ws->hdr.opcode != EDDY_WS_OPCODE_CONTINUATION) {
            ws->in_message = true;
            ws->msg_opcode = ws->hdr.opcode;
            ws->msg_flags = frame_flags(&ws->hdr);
            ws->utf8_state = EDDY__UTF8_ACCEPT;
            ws->msg.len = 0;
            ws->compressed = (ws->hdr.rsv & 4) != 0;
            if (ws->compressed && !begin_inflate(conn, len - used)) {
                eddy__log(conn_srv(conn), EDDY__LOG_ERROR,
                          "session#%" PRIu64 ": out of memory for an inflater", conn->id);
                eddy__conn_close(conn, EDDY__CLOSE_ABORT);
                return 0;
            }
        }
    }
    ws->in_frame = true;
    ws->frame_done = 0;
    ws->ctrl_len = 0;
    return used;
}

/* Inflates unmasked payload bytes of a compressed message into the message buffer (the
 * loop's for a message that came whole). */
static size_t read_compressed(eddy__conn_t *conn, uint8_t *buf, size_t take, bool frame_complete)
{
    eddy__ws_state_t *ws = rx_state(conn);
    bool final = frame_complete && ws->hdr.fin;
    /* Whole: one frame, all of it in this call. */
    bool whole = final && ws->frame_done == take && ws->hdr.opcode != EDDY_WS_OPCODE_CONTINUATION;
    ws_loop_t *wl = eddy__loop_slot(conn->loop, EDDY__SLOT_WS);
    eddy__buf_t *out = whole ? &wl->inflated : &ws->msg;
    size_t before = out->len;
    int rc = eddy__inflate(ws->msg_inflater, buf, take, final, out, conn->loop->package_max_length);
    if (rc == 0 && ws->msg_opcode == EDDY_WS_OPCODE_TEXT &&
        !eddy__utf8_feed(&ws->utf8_state, (uint8_t *)out->data + before, out->len - before))
        rc = EDDY_EUTF8;
    if (rc != 0) {
        if (out == &wl->inflated)
            wl->inflated.len = 0;
        end_inflate(conn);
        if (rc == EDDY_ETOOBIG)
            fail(conn, EDDY_WS_CLOSE_MESSAGE_TOO_BIG,
                 "inflated message exceeds package_max_length");
        else if (rc == EDDY_EUTF8)
            fail(conn, EDDY_WS_CLOSE_MESSAGE_ERROR, "text message is not valid UTF-8");
        else if (rc == EDDY_EPROTO)
            fail(conn, EDDY_WS_CLOSE_MESSAGE_ERROR, "invalid compressed data");
        else
            eddy__conn_close(conn, EDDY__CLOSE_ABORT);
        return 0;
    }
    if (frame_complete)
        ws->in_frame = false;
    if (final) {
        end_inflate(conn);
        on_message_complete(conn, out->data, out->len);
        /* A connection's own is released at once: an idle connection holds no buffer. */
        if (out == &wl->inflated) {
            wl->inflated.len = 0;
            if (wl->inflated.cap > INFLATED_KEEP)
                eddy__buf_free(&wl->inflated); /* an exceptionally large message */
        } else {
            eddy__buf_free(&ws->msg);
        }
    }
    return take;
}

/* Consumes payload bytes of the current frame; returns bytes used. */
static size_t read_payload(eddy__conn_t *conn, uint8_t *buf, size_t len)
{
    eddy__ws_state_t *ws = rx_state(conn);
    eddy__ws_header_t *hdr = &ws->hdr;
    size_t take = (size_t)EDDY__MIN((uint64_t)len, hdr->payload_len - ws->frame_done);
    bool whole = ws->frame_done == 0 && take == hdr->payload_len;
    if (hdr->masked)
        eddy__ws_mask(buf, take, hdr->mask, ws->frame_done);
    ws->frame_done += take;
    bool frame_complete = ws->frame_done == hdr->payload_len;

    if (hdr->opcode >= EDDY_WS_OPCODE_CLOSE) {
        if (whole) {
            ws->in_frame = false;
            on_control_frame(conn, buf, take);
            return take;
        }
        memcpy(ws->ctrl + ws->ctrl_len, buf, take);
        ws->ctrl_len = (uint8_t)(ws->ctrl_len + take);
        if (frame_complete) {
            ws->in_frame = false;
            /* ctrl has room for the NUL deliver() writes only if shorter than 125. */
            uint8_t copy[126];
            memcpy(copy, ws->ctrl, ws->ctrl_len);
            on_control_frame(conn, copy, ws->ctrl_len);
        }
        return take;
    }

    if (ws->compressed)
        return read_compressed(conn, buf, take, frame_complete);
    if (ws->msg_opcode == EDDY_WS_OPCODE_TEXT && !eddy__utf8_feed(&ws->utf8_state, buf, take)) {
        fail(conn, EDDY_WS_CLOSE_MESSAGE_ERROR, "text message is not valid UTF-8");
        return 0;
    }
    if (frame_complete)
        ws->in_frame = false;
    if (whole && hdr->fin && ws->msg.len == 0) {
        on_message_complete(conn, (char *)buf, take); /* zero-copy: the common case */
        return take;
    }
    if (eddy__buf_append(&ws->msg, buf, take) != 0) {
        eddy__log(conn_srv(conn), EDDY__LOG_ERROR,
                  "session#%" PRIu64 ": out of memory assembling a message", conn->id);
        eddy__conn_close(conn, EDDY__CLOSE_ABORT);
        return 0;
    }
    if (frame_complete && hdr->fin) {
        on_message_complete(conn, ws->msg.data, ws->msg.len);
        /* Released at once: most messages arrive whole and never need it, and an idle
         * connection should hold no buffer. */
        eddy__buf_free(&ws->msg);
    }
    return take;
}

/* Whether a receive state is between frames and messages (a connection's own state may
 * hold more, a deflater say, and still be at rest for receiving). */
static bool rx_at_rest(const eddy__ws_state_t *ws)
{
    return ws == NULL || !(ws->in_frame | ws->in_message | (ws->hdr_stash_len != 0));
}

/* The common case in one pass: a data frame that is whole in buf and a whole message (FIN,
 * masked, no RSV bit, length in 7 or 16 bits, within package_max_length), received while
 * no frame or message is in progress and not at trace level. It gets exactly the checks and
 * outcomes of the general path, without its state. Returns the bytes taken, or 0 to leave buf to
 * the general path. */
static size_t read_whole_frame(eddy__conn_t *conn, uint8_t *buf, size_t len)
{
    if (len < 6 ||
        (buf[0] != (0x80 | EDDY_WS_OPCODE_TEXT) && buf[0] != (0x80 | EDDY_WS_OPCODE_BINARY)) ||
        !(buf[1] & 0x80))
        return 0;
    size_t payload_len = buf[1] & 0x7F, header_len = 6;
    if (payload_len == 126) {
        if (len < 8)
            return 0;
        payload_len = (size_t)buf[2] << 8 | buf[3];
        header_len = 8;
    } else if (payload_len == 127) {
        return 0;
    }
    /* ws_fast_limit is 0 at trace level: every frame then takes the general path, which
     * logs it, and this path pays nothing for that. */
    if (len - header_len < payload_len || payload_len >= conn->loop->ws_fast_limit)
        return 0;
    uint8_t *payload = buf + header_len;
    bool ascii = eddy__ws_unmask_ascii(payload, payload_len, payload - 4);
    uint8_t opcode = buf[0] & 0xF;
    if (opcode == EDDY_WS_OPCODE_TEXT && !ascii) {
        uint32_t utf8_state = EDDY__UTF8_ACCEPT;
        if (!eddy__utf8_feed(&utf8_state, payload, payload_len)) {
            fail(conn, EDDY_WS_CLOSE_MESSAGE_ERROR, "text message is not valid UTF-8");
            return len;
        }
        if (!eddy__utf8_complete(utf8_state)) {
            fail(conn, EDDY_WS_CLOSE_MESSAGE_ERROR, "text message ends inside a UTF-8 sequence");
            return len;
        }
    }
    if (!conn->ws_close_sent) {
        eddy_frame_t frame = {.opcode = opcode, .flags = EDDY_WS_FLAG_FIN | EDDY_WS_FLAG_MASK};
        deliver(conn, &frame, (char *)payload, payload_len);
    }
    return header_len + payload_len;
}

static size_t process_frames(eddy__conn_t *conn, uint8_t *p, size_t off, size_t len);

static size_t ws_process(eddy__conn_t *conn, char *buf, size_t len)
{
    uint8_t *p = (uint8_t *)buf;
    size_t off = 0;
    /* The whole-frame path reads masked frames: a server's input. */
    if (!conn->ws_client && rx_at_rest(conn->proto_state)) {
        size_t used;
        while (off < len && (used = read_whole_frame(conn, p + off, len - off)) > 0) {
            off += used;
            if (conn->ending)
                return len;
        }
        if (off == len)
            return off;
    }
    return process_frames(conn, p, off, len);
}

/* The general path: frames in pieces, fragments, control frames, compression. Kept out of
 * ws_process() so the whole-frame path stays small. */
static __attribute__((noinline)) size_t process_frames(eddy__conn_t *conn, uint8_t *p, size_t off,
                                                       size_t len)
{
    ws_loop_t *wl = eddy__loop_slot(conn->loop, EDDY__SLOT_WS);
    eddy__ws_state_t *outer = wl->rx;
    eddy__ws_state_t *ws = rx_begin(conn);
    if (ws == NULL) {
        eddy__log(conn_srv(conn), EDDY__LOG_ERROR,
                  "session#%" PRIu64 ": out of memory for the receive state", conn->id);
        eddy__conn_close(conn, EDDY__CLOSE_ABORT);
        return len;
    }
    wl->rx = ws;
    while (!conn->ending) {
        if (!ws->in_frame) {
            if (off == len)
                break;
            size_t used = read_header(conn, p + off, len - off);
            off += used;
            if (!ws->in_frame)
                break; /* header incomplete (stashed) or the connection failed */
        }
        /* A frame with an empty payload completes here even with no bytes left. */
        size_t used = read_payload(conn, p + off, len - off);
        off += used;
        if (!conn->ending && ws->in_frame && off == len)
            break;
    }
    wl->rx = outer;
    rx_end(conn, ws);
    return conn->ending ? len : off;
}

/* ---- the protocol ---- */

static void ws_drained(eddy__conn_t *conn)
{
    eddy_server_t *srv = conn->loop->srv;
    /* A connection that sent its close frame takes no more messages; a client's connection
     * tells its client, not the server application. */
    if (conn->ws_close_sent)
        return;
    if (conn->client_owned)
        eddy__client_drained(conn);
    else if (srv->on_drain != NULL)
        srv->on_drain(srv, conn->id, srv->user_data);
}

/* The close event: the server's, or an eddy_client_t's. */
static void ws_closed(eddy__conn_t *conn)
{
    eddy__stat_add(&conn->loop->stats.ws_closed, 1);
    if (conn->client_owned)
        eddy__client_session_closed(conn);
    else
        eddy__server_session_closed(conn);
}

/* Reached only by an upgrade (eddy__ws_upgrade), so it has no start(). */
const eddy__proto_t eddy__ws_proto = {
    .name = "WebSocket",
    .process = ws_process,
    .timeout = ws_timeout,
    .drained = ws_drained,
    .end = eddy__ws_send_close,
    .closed = ws_closed,
    .free = ws_free,
};

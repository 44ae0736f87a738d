/* SPDX-License-Identifier: MIT */
/*
 * Engine.IO's HTTP long-polling transport (rt/eio.h): the handshake GET, the GET that waits
 * for packets (a detached response, ended on its connection's loop with eddy_post()), the
 * POST that delivers them, the payload framing of both protocol revisions, and the
 * reference server's answers to bad requests (engine.io 6.6 server.js, polling.js):
 *   v4: packets separated by 0x1e, binary as 'b' + base64;
 *   v3: "<length>:<packet>" with the length in UTF-16 code units, binary as "b4" + base64,
 *       or, when the client takes binary and a binary packet is queued, the binary form:
 *       0x00 (text) or 0x01 (binary), the length's decimal digits as bytes 0-9, 0xff, then
 *       the packet (binary: 0x04 and the data).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eio_internal.h"
#include "eio_payload.h"

/* ---- answers ---- */

static void answer_error(eio_server_t *es, eddy_response_t *resp, int code)
{
    eio__count_error(es, code);
    static const char *const messages[] = {
        "Transport unknown", "Session ID unknown", "Bad handshake method",
        "Bad request",       "Forbidden",          "Unsupported protocol version"};
    char body[96];
    int n = snprintf(body, sizeof(body), "{\"code\":%d,\"message\":\"%s\"}", code, messages[code]);
    eddy_response_status(resp, code == 4 ? 403 : 400, NULL);
    eddy_response_header(resp, "Content-Type", "application/json");
    eddy_response_end(resp, body, (size_t)n);
}

/* A bare status with no body, as the reference's res.writeHead(status).end(): no
 * Content-Type either. */
static void answer_status(eddy_response_t *resp, int status)
{
    eddy_response_status(resp, status, NULL);
    eddy_response_header(resp, "Content-Type", NULL);
    eddy_response_end(resp, NULL, 0);
}

static void answer_payload(eddy_response_t *resp, const eio_buf_t *body, bool binary)
{
    eddy_response_header(resp, "Content-Type",
                         binary ? "application/octet-stream" : "text/plain; charset=UTF-8");
    eddy_response_header(resp, "cache-control", "no-store");
    eddy_response_end(resp, body->data, body->len);
}

/* ---- payload encoding ---- */

typedef struct rec {
    int kind;
    const char *bytes;
    uint32_t len;
} rec_t;

static bool next_rec(const eio_buf_t *q, size_t *at, rec_t *r)
{
    if (*at + 5 > q->len)
        return false;
    const unsigned char *p = (const unsigned char *)q->data + *at;
    r->kind = p[0];
    r->len = (uint32_t)p[1] | (uint32_t)p[2] << 8 | (uint32_t)p[3] << 16 | (uint32_t)p[4] << 24;
    r->bytes = (const char *)p + 5;
    *at += 5 + r->len;
    return true;
}

/* Appends one packet to body with the codec's encoder for the payload form: 4 (v4), 3
 * (v3 text) or 'b' (v3 binary). */
static int put_packet(eio_buf_t *body, int form, bool first, char type, const char *data,
                      size_t len, bool binary)
{
    eio_type_t t = (eio_type_t)(type - '0');
    for (int pass = 0; pass < 2; pass++) {
        char *out = pass ? body->data + body->len : NULL;
        size_t cap = pass ? body->cap - body->len : 0;
        size_t n = form == 4   ? eio4_payload_put(out, cap, first, t, data, len, binary)
                   : form == 3 ? eio3_payload_put(out, cap, t, data, len, binary)
                               : eio3_binary_payload_put(out, cap, t, data, len, binary);
        if (pass)
            body->len += n;
        else if (eio__buf_reserve(body, n) != 0)
            return EDDY_ENOMEM;
    }
    return 0;
}

/* Encodes queue q into body for protocol (supports_binary: v3's binary form allowed);
 * *binary tells whether the binary form was used. */
static int encode_payload(int protocol, bool supports_binary, const eio_buf_t *q, eio_buf_t *body,
                          bool *binary)
{
    rec_t r;
    *binary = false;
    if (protocol == 3 && supports_binary) {
        for (size_t scan = 0; next_rec(q, &scan, &r);)
            *binary |= r.kind == EIO_REC_BINARY;
    }
    int form = protocol == 4 ? 4 : *binary ? 'b' : 3;
    int rc = 0;
    for (size_t at = 0, first = 1; rc == 0 && next_rec(q, &at, &r); first = 0) {
        if (r.kind == EIO_REC_TEXT)
            rc = put_packet(body, form, first, r.bytes[0], r.bytes + 1, r.len - 1, false);
        else
            rc = put_packet(body, form, first, '4', r.bytes, r.len, true);
    }
    return rc;
}

/* Answers the pending GET with what is queued (on its loop; lock held). Returns whether a
 * close packet went out. */
static bool write_get(eio_session_t *s)
{
    eddy_response_t *resp = s->get_resp;
    eddy_fd_t fd = s->get_fd;
    if (resp == NULL)
        return false;
    eio_buf_t body = {0};
    bool binary = false, closed = false;
    if (s->discard_get) {
        eio_buf_t noop = {0};
        if (eio__queue_rec(&noop, EIO_REC_TEXT, '6', NULL, 0) != 0 ||
            encode_payload(s->protocol, false, &noop, &body, &binary) != 0)
            body.len = 0;
        eio__buf_free(&noop);
        s->discard_get = false;
    } else {
        rec_t r;
        for (size_t at = 0; next_rec(&s->out, &at, &r);)
            closed |= r.kind == EIO_REC_TEXT && r.len == 1 && r.bytes[0] == '1';
        if (encode_payload(s->protocol, s->supports_binary, &s->out, &body, &binary) != 0) {
            eio__buf_free(&body);
            return false; /* out of memory: the GET keeps waiting */
        }
        s->out.len = 0;
    }
    s->get_resp = NULL;
    s->get_fd = 0;
    answer_payload(resp, &body, binary);
    eio__buf_free(&body);
    eio__fdmap_drop(s->es, fd, s);
    return closed;
}

static void flush_task(eddy_server_t *srv, void *arg)
{
    eio_session_t *s = arg;
    rt_lock(&s->cb_lock);
    rt_lock(&s->lock);
    s->flush_posted = false;
    bool closed = false;
    if (s->get_resp != NULL && (s->out.len > 0 || s->discard_get))
        closed = write_get(s);
    bool finish = closed && s->state == ST_CLOSING;
    rt_unlock(&s->lock);
    if (finish)
        eio__session_finish(s, "forced close");
    rt_unlock(&s->cb_lock);
    eio__task_done(s);
}

void eio__polling_kick(eio_session_t *s)
{
    if (s->get_resp == NULL || s->flush_posted)
        return;
    s->flush_posted = true;
    eio__task_posted(s);
    if (eddy_post(s->es->srv, s->get_fd, flush_task, s) != 0) {
        /* The GET's connection is closing: its close callback ends the session. */
        s->flush_posted = false;
        eio__task_done(s);
    }
}

bool eio__polling_writable(const eio_session_t *s)
{
    return s->get_resp != NULL && !s->flush_posted;
}

void eio__polling_noop(eio_session_t *s)
{
    if (s->get_resp != NULL && eio__queue_packet(s, EIO_REC_TEXT, '6', NULL, 0) == 0)
        eio__polling_kick(s);
}

void eio__polling_discard(eio_session_t *s)
{
    if (s->get_resp == NULL)
        return;
    s->discard_get = true;
    eio__polling_kick(s);
}

void eio__polling_close(eio_session_t *s)
{
    s->state = ST_CLOSING;
    s->close_due = eio__now_ms() + s->es->cfg.ping_interval_ms + s->es->cfg.ping_timeout_ms;
    if (eio__queue_packet(s, EIO_REC_TEXT, '1', NULL, 0) == 0)
        eio__polling_kick(s);
}

void eio__polling_finish(eio_session_t *s, const char *reason)
{
    s->out.len = 0;
    /* The client's own close packet releases its GET with a noop (polling.js onClose);
     * any other end sends the close packet (doClose). */
    char type = strcmp(reason, "transport close") == 0 ? '6' : '1';
    if (s->get_resp != NULL && !s->discard_get &&
        eio__queue_packet(s, EIO_REC_TEXT, type, NULL, 0) == 0)
        eio__polling_kick(s);
}

const char *eio__polling_conn_closed(eio_session_t *s, eddy_fd_t fd)
{
    if (s->get_resp == NULL || s->get_fd != fd)
        return NULL;
    /* The client hung up on its GET: the response is an orphan that end() frees. */
    eddy_response_end(s->get_resp, NULL, 0);
    s->get_resp = NULL;
    s->get_fd = 0;
    s->discard_get = false;
    return s->state == ST_OPEN ? "transport error" : NULL;
}

/* ---- payload decoding ---- */

/* Delivers the packets of a POST body (cb_lock held); returns the reason the session ends
 * for, or NULL. The packets before a malformed one are delivered, as by the reference. */
static const char *post_payload(eio_session_t *s, const char *body, size_t len, bool binary_body)
{
    eio_payload_iter_t it;
    eio_packet_t pk;
    eio_payload_init(&it, s->protocol, binary_body, body, len);
    for (;;) {
        int rc = eio_payload_next(&it, &pk);
        if (rc == 0)
            return NULL;
        if (rc < 0)
            return "parse error";
        if (pk.type == EIO_CLOSE)
            return "transport close"; /* the client closes the session */
        const char *reason = eio__on_decoded(s, &pk);
        if (reason != NULL)
            return reason;
    }
}

/* ---- requests ---- */

static void handshake(eio_server_t *es, eddy_request_t *req, eddy_response_t *resp, int protocol)
{
    eio_session_t *s = eio__session_new(es, protocol, EIO_TR_POLLING);
    if (s == NULL) {
        answer_error(es, resp, 3);
        return;
    }
    const char *b64 = eddy_request_get(req, "b64");
    s->supports_binary = b64 == NULL || b64[0] == '\0';
    rt_lock(&s->cb_lock);
    int refused = es->h.open(s, req, es->ud);
    if (refused != 0) {
        eio__session_finish(s, "forced close");
        rt_unlock(&s->cb_lock);
        eio__session_unref(s);
        answer_error(es, resp, refused == 403 ? 4 : 3);
        return;
    }
    rt_lock(&s->lock);
    s->open_called = true;
    /* The open packet answers the handshake; what the open handler sent waits for the
     * next GET, as with the reference. */
    char open[256];
    size_t n = eio__open_packet(s, true, open, sizeof(open));
    eio_buf_t only_open = {0}, body = {0};
    bool binary = false;
    if (eio__queue_rec(&only_open, EIO_REC_TEXT, '0', open + 1, n - 1) != 0 ||
        encode_payload(protocol, false, &only_open, &body, &binary) != 0) {
        rt_unlock(&s->lock);
        eio__buf_free(&only_open);
        eio__buf_free(&body);
        eio__session_finish(s, "transport error");
        rt_unlock(&s->cb_lock);
        eio__session_unref(s);
        answer_error(es, resp, 3);
        return;
    }
    eio__buf_free(&only_open);
    s->state = ST_OPEN;
    eio__heartbeat_start(s);
    rt_unlock(&s->lock);
    rt_unlock(&s->cb_lock);
    answer_payload(resp, &body, binary);
    eio__buf_free(&body);
    eio__session_unref(s);
}

static void poll_get(eio_session_t *s, eddy_request_t *req, eddy_response_t *resp)
{
    eddy_fd_t fd = eddy_request_fd(req);
    rt_lock(&s->cb_lock);
    rt_lock(&s->lock);
    if (s->state == ST_CLOSED) {
        rt_unlock(&s->lock);
        rt_unlock(&s->cb_lock);
        answer_error(s->es, resp, 1);
        return;
    }
    if (s->get_resp != NULL) {
        /* Two GETs at once: the reference ends the session ("overlap from client"). */
        rt_unlock(&s->lock);
        answer_status(resp, 400);
        eio__session_finish(s, "transport error");
        rt_unlock(&s->cb_lock);
        return;
    }
    if (eio__fdmap_put(s->es, fd, s) != 0) {
        rt_unlock(&s->lock);
        rt_unlock(&s->cb_lock);
        answer_status(resp, 500);
        return;
    }
    eddy_response_detach(resp);
    s->get_resp = resp;
    s->get_fd = fd;
    /* While an upgrade is probed, a GET is released at once with a noop, so the client can
     * finish the upgrade (the reference checks every 100 ms). */
    if (s->probed && s->out.len == 0)
        eio__queue_packet(s, EIO_REC_TEXT, '6', NULL, 0);
    bool finish = false;
    if (s->out.len > 0)
        finish = write_get(s) && s->state == ST_CLOSING;
    rt_unlock(&s->lock);
    if (finish)
        eio__session_finish(s, "forced close");
    rt_unlock(&s->cb_lock);
}

static void poll_post(eio_session_t *s, eddy_request_t *req, eddy_response_t *resp)
{
    size_t len;
    const char *body = eddy_request_body(req, &len);
    const char *type = eddy_request_header(req, "Content-Type");
    bool binary = type != NULL && strcmp(type, "application/octet-stream") == 0;
    const char *reason = NULL;
    rt_lock(&s->cb_lock);
    if (len > s->es->cfg.max_payload) {
        answer_status(resp, 413);
        reason = "transport error"; /* payload too large */
    } else if (binary && s->protocol == 4) {
        answer_status(resp, 400);
        reason = "transport error"; /* invalid content */
    } else {
        reason = post_payload(s, body, len, binary);
        eddy_response_header(resp, "Content-Type", "text/html");
        eddy_response_header(resp, "cache-control", "no-store");
        eddy_response_end(resp, "ok", 2);
    }
    if (reason != NULL)
        eio__session_finish(s, reason);
    rt_unlock(&s->cb_lock);
}

bool eio_handle_request(eio_server_t *es, eddy_request_t *req, eddy_response_t *resp)
{
    if (!eio__path_matches(es, req))
        return false;
    const char *transport = eddy_request_get(req, "transport");
    bool polling = transport != NULL && strcmp(transport, "polling") == 0 && es->cfg.allow_polling;
    if (!polling && (transport == NULL || strcmp(transport, "websocket") != 0)) {
        answer_error(es, resp, 0);
        return true;
    }
    const char *method = eddy_request_method(req);
    int protocol = eio__protocol_of(req);
    const char *sid = eddy_request_get(req, "sid");
    if (sid == NULL || sid[0] == '\0') {
        if (strcmp(method, "GET") != 0)
            answer_error(es, resp, 2);
        else if (!polling)
            answer_error(es, resp, 3); /* a WebSocket handshake without the upgrade */
        else
            handshake(es, req, resp, protocol);
        return true;
    }
    eio_session_t *s = eio__table_find(es, sid);
    if (s == NULL) {
        answer_error(es, resp, 1);
        return true;
    }
    rt_lock(&s->lock);
    bool mismatch = !polling || s->transport != EIO_TR_POLLING || s->protocol != protocol;
    rt_unlock(&s->lock);
    if (mismatch)
        answer_error(es, resp, 3);
    else if (strcmp(method, "GET") == 0)
        poll_get(s, req, resp);
    else if (strcmp(method, "POST") == 0)
        poll_post(s, req, resp);
    else
        answer_status(resp, 500);
    eio__session_unref(s);
    return true;
}

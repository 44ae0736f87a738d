/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer driver for Engine.IO's HTTP long-polling transport and the upgrade from it to
 * WebSocket (rt/eio_polling.c, rt/eio.c, rt/rt.c), with no network (fuzz/session.h): a
 * server with eddy_rt and the Socket.IO test application (fuzz/rt_app.h) gets requests on
 * up to three HTTP connections, for up to two sessions whose ids the driver learns from the
 * handshake answers (so the fuzzer need not guess them) or that the input forges.
 *
 * Input: a control byte (bit 0: Engine.IO 3 rather than 4 in the driver's requests), then
 * records separated by '\n'. A record is an op byte and the rest R:
 *   op bits 0-2: 0 handshake GET /socket.io/?EIO=<v>&transport=polling<R> (the session id
 *                of the answer goes to slot op bit 5);
 *                1 polling GET with the slot's sid, R appended to the query;
 *                2 POST with the slot's sid, body R (op bit 6: Content-Type
 *                  application/octet-stream, else text/plain);
 *                3 GET with the sid R (forged);
 *                4 R sent as is (a whole request: that connection's answers are no longer
 *                  checked);
 *                5 WebSocket upgrade GET with the slot's sid, R appended to the query; on
 *                  that connection R of a later record is WebSocket frames whatever the op
 *                  (fuzz/rt_app.h ws_record_frames: "2probe", "5", "42[...]", 0x01
 *                  binary...);
 *                6 OPTIONS with the slot's sid (CORS preflight);
 *                7 POST with the slot's sid and R as the query suffix, body "1" (close);
 *   op bits 3-4: the connection (0, 1, 2; 3 is 2);
 *   op bit 7: the request says Connection: close.
 * An empty record moves the clock to the next timer and runs it (fuzz/timers.h): a ping,
 * a ping or upgrade timeout, the connect timeout, the forced close of a closing session,
 * an acknowledgement timeout.
 * A GET that waits (a detached response) pauses its connection: records for it then wait
 * in its socket until a POST, an upgrade or a close on another connection releases it.
 * At the end, every session the driver knows is closed with POST "1", as a client's
 * disconnect does, then the connections end.
 *
 * Checked invariants, besides no crash, leak or hang:
 * - every answer on a connection the driver wrote is HTTP/1.1 with a Content-Length body
 *   (or 101 to an upgrade, then fuzz/rt_app.h's WebSocket checker); a 200 text/plain or
 *   application/octet-stream body is a polling payload of the request's protocol that
 *   rt/eio_payload.c decodes to its end, whose packets are ones a server sends (never
 *   upgrade) and whose messages are Socket.IO packets rt/sio_packet.c decodes;
 * - the application's calls succeed where they must;
 * - once the sessions were closed, the connections ended and every deadline passed (the
 *   sessions the driver does not know end by their ping timeout), no socket is left in any
 *   namespace and no timer of the input is left (fuzz/timers.h).
 */
#include "fuzz.h"
#include "http.h"
#include "rt_app.h"
#include "rt_base64.h"
#include "session.h"
#include "timers.h"

typedef struct http_conn {
    fuzz_session_t fs; /* first: the output hook gets &fs */
    bool started;
    bool unchecked;    /* a raw request was sent: answers are not checked */
    bool ws;           /* an upgrade was asked for: the rest is the WebSocket checker's */
    bool ws_done;      /* the client sent a close frame */
    int protocols[32]; /* the protocol of each request awaiting its answer, FIFO */
    /* For an upgrade among them: 0 a new session (no sid), 1 of a session, 2 the query's
     * suffix may have changed the sid. */
    int upgrades[32];
    unsigned head, tail;
    size_t len;
    uint8_t buf[1 << 17];
    ws_check_t ws_check;
} http_conn_t;

static http_conn_t conns[3];
static char sids[2][64];
static int protocol;
static uint8_t req[(1 << 16) + 1024];

/* Remembers the sid of an open packet in slot. */
static void learn_sid(int slot, const char *json, size_t len)
{
    rt_json_value_t obj, sid;
    FUZZ_CHECK(rt_json_parse(json, len, &obj) == 0 && obj.type == RT_JSON_OBJECT);
    FUZZ_CHECK(rt_json_find(&obj, "sid", 3, &sid) == 0 && sid.type == RT_JSON_STRING);
    long n = rt_json_unescape(&sid, sids[slot], sizeof(sids[slot]) - 1);
    FUZZ_CHECK(n == 20);
    sids[slot][n] = '\0';
}

static int pending_slot = -1; /* the slot of the handshake being answered */

/* A polling payload answered to a request of protocol p. */
static void check_payload(int p, const uint8_t *body, size_t len, bool binary_form)
{
    eio_payload_iter_t it;
    eio_payload_init(&it, p, binary_form, body, len);
    eio_packet_t pkt;
    int rc;
    static char bin[1 << 17];
    while ((rc = eio_payload_next(&it, &pkt)) == 1) {
        FUZZ_CHECK(pkt.type != EIO_UPGRADE);
        if (pkt.type == EIO_OPEN && pending_slot >= 0) {
            learn_sid(pending_slot, pkt.data, pkt.len);
            pending_slot = -1;
        }
        if (pkt.type == EIO_MESSAGE && !pkt.binary) {
            sio_packet_t sp;
            int src = sio_packet_decode(pkt.data, pkt.len, 64, &sp);
            if (src != 0)
                fprintf(stderr, "bad Socket.IO packet in a payload (%s): %.*s\n", sio_strerror(src),
                        (int)pkt.len, pkt.data);
            FUZZ_CHECK(src == 0);
        }
        if (pkt.base64)
            FUZZ_CHECK(rt_base64_decode(bin, pkt.data, pkt.len) >= 0);
    }
    if (rc != 0)
        fprintf(stderr, "bad polling payload (v%d, %d): %.*s\n", p, rc, (int)len, body);
    FUZZ_CHECK(rc == 0);
}

/* The value of header name (lower case, with ": ") in head[0..len), or NULL. */
static const char *head_value(const char *head, size_t len, const char *name, size_t *vlen)
{
    size_t n = strlen(name);
    for (const char *p = head; p + n < head + len;) {
        const char *eol = memmem(p, (size_t)(head + len - p), "\r\n", 2);
        if (eol == NULL)
            break;
        if ((size_t)(eol - p) >= n && strncasecmp(p, name, n) == 0) {
            *vlen = (size_t)(eol - p) - n;
            return p + n;
        }
        p = eol + 2;
    }
    return NULL;
}

/* Consumes whole answers from c->buf. */
static void check_answers(http_conn_t *c)
{
    while (!c->ws) {
        const uint8_t *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (end == NULL)
            return;
        size_t hlen = (size_t)(end - c->buf) + 4;
        const char *head = (const char *)c->buf;
        FUZZ_CHECK(c->len >= 12 && memcmp(head, "HTTP/1.1 ", 9) == 0);
        int status = atoi(head + 9);
        FUZZ_CHECK(c->head != c->tail); /* an answer to a request sent */
        int p = c->protocols[c->head % 32];
        if (status == 101) {
            /* An upgrade of a session gets no open packet (it came with the handshake);
             * one without a sid is a new session on WebSocket. */
            int upgrade = c->upgrades[c->head % 32];
            c->head++;
            c->ws = true;
            ws_check_reset(&c->ws_check, p, true);
            c->ws_check.opened = upgrade == 1;
            c->ws_check.open_optional = upgrade == 2;
            size_t rest = c->len - hlen;
            memmove(c->buf, c->buf + hlen, rest);
            c->len = 0;
            ws_check_feed(&c->ws_check, c->buf, rest);
            return;
        }
        size_t vlen;
        FUZZ_CHECK(head_value(head, hlen, "transfer-encoding: ", &vlen) == NULL);
        const char *cl = head_value(head, hlen, "content-length: ", &vlen);
        FUZZ_CHECK(cl != NULL);
        size_t blen = (size_t)strtoul(cl, NULL, 10);
        if (c->len - hlen < blen)
            return;
        const uint8_t *body = c->buf + hlen;
        const char *type = head_value(head, hlen, "content-type: ", &vlen);
        if (status == 200 && type != NULL && p != 0) {
            if (strncmp(type, "text/plain", 10) == 0)
                check_payload(p, body, blen, false);
            else if (strncmp(type, "application/octet-stream", 24) == 0)
                check_payload(p, body, blen, true);
        }
        c->head++;
        memmove(c->buf, c->buf + hlen + blen, c->len - hlen - blen);
        c->len -= hlen + blen;
    }
}

static void on_output(fuzz_session_t *fs, const uint8_t *data, size_t len)
{
    http_conn_t *c = (http_conn_t *)fs;
    if (c->unchecked)
        return;
    if (c->ws) {
        ws_check_feed(&c->ws_check, data, len);
        return;
    }
    FUZZ_CHECK(len <= sizeof(c->buf) - c->len);
    memcpy(c->buf + c->len, data, len);
    c->len += len;
    check_answers(c);
}

static http_conn_t *conn_get(eddy_server_t *srv, unsigned i)
{
    http_conn_t *c = &conns[i];
    if (!c->started) {
        fuzz_session_new(&c->fs, srv, &eddy__http_proto);
        c->fs.output = on_output;
        c->started = true;
        c->unchecked = c->ws = c->ws_done = false;
        c->head = c->tail = 0;
        c->len = 0;
    }
    return c;
}

/* Sends req[0..n) on c, expecting an answer of protocol p (0: not checked as a payload);
 * upgrade: see http_conn_t.upgrades. */
static void conn_send(http_conn_t *c, size_t n, int p, int upgrade)
{
    if (c->fs.conn->ending)
        return;
    if (!c->unchecked && !c->ws) {
        if (c->tail - c->head >= 32) {
            c->unchecked = true; /* more answers owed than the driver tracks */
        } else {
            c->upgrades[c->tail % 32] = upgrade;
            c->protocols[c->tail++ % 32] = p;
        }
    }
    fuzz_session_feed(&c->fs, req, n);
}

static void do_record(eddy_server_t *srv, const uint8_t *rec, size_t len)
{
    uint8_t op = rec[0];
    const char *r = (const char *)rec + 1;
    int rlen = (int)(len - 1);
    unsigned kind = op & 7, slot = (op >> 5) & 1, ci = (op >> 3) & 3;
    http_conn_t *c = conn_get(srv, ci > 2 ? 2 : ci);
    if (c->ws) {
        if (!c->ws_done && !c->fs.conn->ending) {
            size_t n = ws_record_frames(req, rec + 1, len - 1, &c->ws_done);
            fuzz_session_feed(&c->fs, req, n);
        }
        return;
    }
    const char *conn_hdr = (op & 0x80) ? "Connection: close\r\n" : "";
    const char *sid = sids[slot];
    int n = 0;
    size_t cap = sizeof(req);
    switch (kind) {
    case 0:
        n = snprintf((char *)req, cap,
                     "GET /socket.io/?EIO=%d&transport=polling%.*s HTTP/1.1\r\nHost: h\r\n%s\r\n",
                     protocol, rlen, r, conn_hdr);
        pending_slot = (int)slot;
        break;
    case 1:
        n = snprintf((char *)req, cap,
                     "GET /socket.io/?EIO=%d&transport=polling&sid=%s%.*s HTTP/1.1\r\nHost: "
                     "h\r\n%s\r\n",
                     protocol, sid, rlen, r, conn_hdr);
        break;
    case 2:
        n = snprintf((char *)req, cap,
                     "POST /socket.io/?EIO=%d&transport=polling&sid=%s HTTP/1.1\r\nHost: h\r\n"
                     "Content-Type: %s\r\nContent-Length: %d\r\n%s\r\n",
                     protocol, sid,
                     (op & 0x40) ? "application/octet-stream" : "text/plain;charset=UTF-8", rlen,
                     conn_hdr);
        /* Copied, not printed: "%.*s" stops at a NUL, and a body shorter than its
         * Content-Length would take the next request's bytes as its own. */
        FUZZ_CHECK(n > 0 && (size_t)n + (size_t)rlen < cap);
        memcpy(req + n, r, (size_t)rlen);
        n += rlen;
        break;
    case 3:
        n = snprintf(
            (char *)req, cap,
            "GET /socket.io/?EIO=%d&transport=polling&sid=%.*s HTTP/1.1\r\nHost: h\r\n%s\r\n",
            protocol, rlen, r, conn_hdr);
        break;
    case 4:
        c->unchecked = true;
        fuzz_session_feed(&c->fs, rec + 1, len - 1);
        return;
    case 5:
        n = snprintf(
            (char *)req, cap,
            "GET /socket.io/?EIO=%d&transport=websocket&sid=%s%.*s HTTP/1.1\r\n" WS_UPGRADE_HEADERS,
            protocol, sid, rlen, r);
        break;
    case 6:
        n = snprintf((char *)req, cap,
                     "OPTIONS /socket.io/?EIO=%d&transport=polling&sid=%s HTTP/1.1\r\nHost: h\r\n"
                     "Origin: http://o\r\n%s\r\n",
                     protocol, sid, conn_hdr);
        break;
    default:
        n = snprintf((char *)req, cap,
                     "POST /socket.io/?EIO=%d&transport=polling&sid=%s%.*s HTTP/1.1\r\nHost: h\r\n"
                     "Content-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n%s",
                     protocol, sid, rlen, r, protocol == 3 ? 3 : 1, conn_hdr,
                     protocol == 3 ? "1:1" : "1");
        break;
    }
    FUZZ_CHECK(n > 0 && (size_t)n < cap);
    /* A raw query may make the answer another protocol's or no payload at all: only the
     * driver's own query is checked. */
    conn_send(c, (size_t)n, rlen == 0 || kind == 2 || kind == 6 ? protocol : 0,
              rlen > 0 ? 2 : sid[0] != '\0');
}

/* Runs the next timer, then takes what the connections got. */
static void fire_next_timer(eddy_server_t *srv)
{
    fuzz_timers_next(srv->loops[0]);
    for (int i = 0; i < 3; i++)
        if (conns[i].started)
            fuzz_session_drain(&conns[i].fs);
}

/* Closes the session of slot with POST "1" on a fresh connection fs, as a client's
 * disconnect does (fs is ended, to be freed with the others). */
static bool close_session(eddy_server_t *srv, int slot, fuzz_session_t *fs)
{
    if (sids[slot][0] == '\0')
        return false;
    fuzz_session_new(fs, srv, &eddy__http_proto);
    int n = snprintf((char *)req, sizeof(req),
                     "POST /socket.io/?EIO=%d&transport=polling&sid=%s HTTP/1.1\r\nHost: h\r\n"
                     "Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s",
                     protocol, sids[slot], protocol == 3 ? 3 : 1, protocol == 3 ? "1:1" : "1");
    fuzz_session_feed(fs, req, (size_t)n);
    fuzz_session_end(fs);
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    protocol = (data[0] & 1) ? 3 : 4;
    eddy_server_t *srv = fuzz_server(app_install);
    fuzz_timers_start(srv->loops[0]);
    memset(sids, 0, sizeof(sids));
    pending_slot = -1;
    for (int i = 0; i < 3; i++)
        conns[i].started = false;
    const uint8_t *p = data + 1, *end = data + size;
    while (p < end) {
        const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
        const uint8_t *rec_end = nl != NULL ? nl : end;
        if (rec_end > p)
            do_record(srv, p, (size_t)(rec_end - p) > 65535 ? 65535 : (size_t)(rec_end - p));
        else
            fire_next_timer(srv);
        p = nl != NULL ? nl + 1 : end;
    }
    /* Connections end before the first free reaps the loop (it frees every ended one). */
    fuzz_session_t closers[2];
    bool closing[2];
    for (int slot = 0; slot < 2; slot++)
        closing[slot] = close_session(srv, slot, &closers[slot]);
    for (int i = 0; i < 3; i++)
        if (conns[i].started)
            fuzz_session_end(&conns[i].fs);
    for (int slot = 0; slot < 2; slot++)
        if (closing[slot])
            fuzz_session_free(&closers[slot]);
    for (int i = 0; i < 3; i++)
        if (conns[i].started)
            fuzz_session_free(&conns[i].fs);
    /* Sessions the driver does not know (opened by a raw request, or by a GET with an empty
     * sid) outlive their connections until their ping timeout: every deadline passes. */
    fuzz_timers_expire(srv->loops[0]);
    app_check_empty();
    app_release_sockets();
    return 0;
}

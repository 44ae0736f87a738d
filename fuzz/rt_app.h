/* SPDX-License-Identifier: MIT */
/*
 * Shared by the real-time layer's session drivers (fuzz_sio_session, fuzz_eio_polling):
 * - the application: the Socket.IO test application of examples/socketio.c (its handlers,
 *   examples/socketio_app.h, with the results of their calls checked) on eddy_rt installed
 *   on the fuzz server;
 * - a checker of what the server sends over a WebSocket (after the HTTP 101 head): each
 *   frame unmasked and final; a text frame UTF-8, a valid Engine.IO packet of the
 *   session's protocol that a server may send (open once and first, close, ping, pong,
 *   message, noop; never upgrade), the open packet a JSON object, a message a Socket.IO
 *   packet that rt/sio_packet.c decodes; a BINARY_EVENT/BINARY_ACK followed by exactly its
 *   number of binary frames before anything else (v3: each with its 0x04 type byte), and
 *   no binary frame otherwise; nothing after a close frame.
 */
#ifndef EDDY_FUZZ_RT_APP_H
#define EDDY_FUZZ_RT_APP_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "eddy_rt.h"
#include "eio_payload.h"
#include "fuzz.h"
#include "ref_utf8.h"
#include "rt_json.h"
#include "sio_packet.h"

/* ---- the application: examples/socketio_app.h, its results checked ---- */

/* The sockets that connected during the current input, referenced (app_release_sockets()). */
static eddy_rt_socket_t *app_sockets[64];
static size_t app_nsockets;

static void app_track(eddy_rt_socket_t *s)
{
    if (app_nsockets < sizeof(app_sockets) / sizeof(app_sockets[0])) {
        eddy_rt_socket_ref(s);
        app_sockets[app_nsockets++] = s;
    }
}

#define SOCKETIO_APP_CHECK(ok)        FUZZ_CHECK(ok)
#define SOCKETIO_APP_ON_CONNECTION(s) app_track(s)
#include "socketio_app.h"

static eddy_rt_t *app_rt;
static eddy_rt_nsp_t *app_nsp[2];

/* Installs the layer on srv (fuzz_server()'s setup). */
static void app_install(eddy_server_t *srv)
{
    eddy_rt_options_t opts;
    eddy_rt_options_init(&opts);
    /* Small limits reach the too-big paths with small inputs. */
    opts.max_http_buffer_size = 4096;
    app_rt = eddy_rt_new(srv, &opts);
    FUZZ_CHECK(app_rt != NULL);
    app_nsp[0] = eddy_rt_of(app_rt, "/");
    app_nsp[1] = eddy_rt_of(app_rt, "/custom");
    FUZZ_CHECK(app_nsp[0] != NULL && app_nsp[1] != NULL);
    socketio_app_setup(app_nsp[0], true);
    socketio_app_setup(app_nsp[1], false);
    eddy_rt_install(app_rt, NULL);
}

/* Drops the references to the sockets of this input (once app_check_empty() passed). */
static void app_release_sockets(void)
{
    for (size_t i = 0; i < app_nsockets; i++) {
        FUZZ_CHECK(!eddy_rt_socket_connected(app_sockets[i]));
        eddy_rt_socket_unref(app_sockets[i]);
    }
    app_nsockets = 0;
}

/* Every socket left its namespace (checked once the connections of an input are gone). */
static void app_check_empty(void)
{
    FUZZ_CHECK(eddy_rt_nsp_count(app_nsp[0]) == 0);
    FUZZ_CHECK(eddy_rt_nsp_count(app_nsp[1]) == 0);
}

/* ---- the WebSocket output checker ---- */

typedef struct ws_check {
    int protocol;       /* Engine.IO 3 or 4 */
    bool head_done;     /* the HTTP head (101) was seen */
    bool refused;       /* the upgrade was answered with another status: no frames follow */
    bool opened;        /* the open packet was seen */
    bool open_optional; /* it may not come (the driver cannot tell whether a session was new) */
    bool closed;        /* a close frame was seen */
    unsigned want_bin;  /* binary attachments still expected */
    size_t len;
    uint8_t buf[1 << 17];
} ws_check_t;

static void ws_check_reset(ws_check_t *c, int protocol, bool head_done)
{
    c->protocol = protocol;
    c->head_done = head_done;
    c->refused = c->opened = c->open_optional = c->closed = false;
    c->want_bin = 0;
    c->len = 0;
}

/* A Socket.IO packet the server sent (text without the Engine.IO '4'). */
static void check_sio_text(ws_check_t *c, const char *s, size_t len)
{
    sio_packet_t p;
    int rc = sio_packet_decode(s, len, 64, &p);
    if (rc != 0)
        fprintf(stderr, "server sent a bad Socket.IO packet (%s): %.*s\n", sio_strerror(rc),
                (int)len, s);
    FUZZ_CHECK(rc == 0);
    c->want_bin = p.attachments;
}

static void check_text_frame(ws_check_t *c, const uint8_t *data, size_t len)
{
    FUZZ_CHECK(c->want_bin == 0);
    FUZZ_CHECK(ref_valid(data, len));
    eio_packet_t pkt;
    FUZZ_CHECK(eio_packet_decode(c->protocol, (const char *)data, len, &pkt) == 0);
    FUZZ_CHECK(pkt.type != EIO_UPGRADE);
    if (c->open_optional && !c->opened && pkt.type != EIO_OPEN)
        c->opened = true; /* the session existed: no open packet */
    FUZZ_CHECK((pkt.type == EIO_OPEN) == !c->opened);
    c->opened = true;
    if (pkt.type == EIO_OPEN) {
        rt_json_value_t v;
        FUZZ_CHECK(rt_json_parse(pkt.data, pkt.len, &v) == 0 && v.type == RT_JSON_OBJECT);
    } else if (pkt.type == EIO_MESSAGE && !pkt.binary) {
        check_sio_text(c, pkt.data, pkt.len);
    }
}

static void check_binary_frame(ws_check_t *c, const uint8_t *data, size_t len)
{
    FUZZ_CHECK(c->want_bin > 0);
    c->want_bin--;
    if (c->protocol == 3)
        FUZZ_CHECK(len >= 1 && data[0] == 4);
}

/* Consumes whole frames from c->buf. */
static void ws_check_frames(ws_check_t *c)
{
    size_t off = 0;
    while (c->len - off >= 2) {
        const uint8_t *f = c->buf + off;
        FUZZ_CHECK(!c->closed);
        FUZZ_CHECK((f[0] & 0x80) && !(f[1] & 0x80)); /* final, unmasked */
        uint64_t plen = f[1] & 0x7f;
        size_t hlen = 2;
        if (plen == 126) {
            if (c->len - off < 4)
                break;
            plen = ((uint64_t)f[2] << 8) | f[3];
            hlen = 4;
        } else if (plen == 127) {
            if (c->len - off < 10)
                break;
            plen = 0;
            for (int i = 0; i < 8; i++)
                plen = (plen << 8) | f[2 + i];
            hlen = 10;
        }
        FUZZ_CHECK(plen < sizeof(c->buf));
        if (c->len - off - hlen < plen)
            break;
        const uint8_t *p = f + hlen;
        switch (f[0] & 0x0f) {
        case 1:
            check_text_frame(c, p, (size_t)plen);
            break;
        case 2:
            check_binary_frame(c, p, (size_t)plen);
            break;
        case 8:
            c->closed = true;
            break;
        case 9:
        case 10:
            break;
        default:
            FUZZ_CHECK(!"unexpected opcode");
        }
        off += hlen + (size_t)plen;
    }
    memmove(c->buf, c->buf + off, c->len - off);
    c->len -= off;
}

/* Takes bytes the server sent on a connection that asked for a WebSocket upgrade (the
 * HTTP head first, unless head_done was set). */
static void ws_check_feed(ws_check_t *c, const uint8_t *data, size_t len)
{
    if (c->refused)
        return;
    FUZZ_CHECK(len <= sizeof(c->buf) - c->len);
    memcpy(c->buf + c->len, data, len);
    c->len += len;
    if (!c->head_done) {
        const uint8_t *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (end == NULL)
            return;
        size_t hlen = (size_t)(end - c->buf) + 4;
        if (c->len < 12 || memcmp(c->buf, "HTTP/1.1 101", 12) != 0) {
            c->refused = true;
            return;
        }
        c->head_done = true;
        memmove(c->buf, c->buf + hlen, c->len - hlen);
        c->len -= hlen;
    }
    ws_check_frames(c);
}

/* ---- the client side of a WebSocket ---- */

/* Appends a masked client frame (opcode, FIN as fin) with payload p[0..n) to out. Returns
 * its length (out must hold n + 14 bytes). */
static size_t ws_client_frame(uint8_t *out, int opcode, bool fin, const uint8_t *p, size_t n)
{
    static const uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d};
    size_t h = 0;
    out[h++] = (uint8_t)((fin ? 0x80 : 0) | opcode);
    if (n < 126) {
        out[h++] = (uint8_t)(0x80 | n);
    } else if (n < 65536) {
        out[h++] = 0x80 | 126;
        out[h++] = (uint8_t)(n >> 8);
        out[h++] = (uint8_t)n;
    } else {
        out[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            out[h++] = (uint8_t)((uint64_t)n >> (8 * i));
    }
    memcpy(out + h, mask, 4);
    h += 4;
    for (size_t i = 0; i < n; i++)
        out[h + i] = p[i] ^ mask[i & 3];
    return h + n;
}

/* The frames of one record of a client's WebSocket conversation, into out (len + 32 bytes):
 *   0x01 <bytes>  a binary frame;
 *   0x02 <bytes>  a ping frame (payload cut to 125 bytes);
 *   0x03 <bytes>  a close frame (*closing set: the client then sends nothing more);
 *   0x05 <bytes>  a text message sent as two fragments (cut in the middle);
 *   anything else a text frame of the whole record.
 * Returns the length written. */
static size_t ws_record_frames(uint8_t *out, const uint8_t *rec, size_t len, bool *closing)
{
    switch (len > 0 ? rec[0] : 0) {
    case 1:
        return ws_client_frame(out, EDDY_WS_OPCODE_BINARY, true, rec + 1, len - 1);
    case 2:
        return ws_client_frame(out, EDDY_WS_OPCODE_PING, true, rec + 1,
                               len - 1 > 125 ? 125 : len - 1);
    case 3:
        *closing = true;
        return ws_client_frame(out, EDDY_WS_OPCODE_CLOSE, true, rec + 1,
                               len - 1 > 125 ? 125 : len - 1);
    case 5: {
        size_t half = (len - 1) / 2;
        size_t n = ws_client_frame(out, EDDY_WS_OPCODE_TEXT, false, rec + 1, half);
        return n + ws_client_frame(out + n, EDDY_WS_OPCODE_CONTINUATION, true, rec + 1 + half,
                                   len - 1 - half);
    }
    default:
        return ws_client_frame(out, EDDY_WS_OPCODE_TEXT, true, rec, len);
    }
}

/* The upgrade request headers after the request line. */
#define WS_UPGRADE_HEADERS                                                                         \
    "Host: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"                             \
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

#endif

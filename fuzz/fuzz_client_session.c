/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer driver for the WebSocket client (src/client.c): its handshake reader, then
 * the WebSocket session in the client role (src/ws.c), fed fuzzed server bytes over a
 * real loopback TCP connection. The client runs on the loop of a server that is never
 * started (fuzz/session.h's); this thread plays that loop, one poll at a time, and the
 * driver plays the server on the accepted socket.
 *
 * Input: a control byte, a split byte, then the bytes the server sends.
 * - control bit 0: the driver sends a right 101 head start first (status line, Upgrade,
 *   Connection, and the Sec-WebSocket-Accept computed from the key the client sent), so
 *   the input goes on with more headers and the blank line; clear: the input is the whole
 *   response; bit 1: the client offers permessage-deflate; bit 2: it offers the
 *   subprotocols "chat, v2.chat"; bit 3: messages received are pushed back (compressed
 *   when bit 6 is set too); bit 4: the client disconnects (1000) halfway through the
 *   input; bit 5: it pushes a text message and a ping once open;
 * - split byte: 0 feeds the rest whole, n feeds it in pieces of 1..n bytes.
 *
 * Checked invariants, besides no crash, leak or hang:
 * - open comes at most once, only if the right Sec-WebSocket-Accept was in the input,
 *   with status 101, a subprotocol that was offered, extensions only if offered, and
 *   never after a handshake error;
 * - messages come only between open and close, whole (FIN), unmasked, text valid UTF-8;
 * - a protocol error (EDDY_CLIENT_ERR_PROTOCOL) comes only once open, with 1002, 1007 or
 *   1009; the close event then has that code, unclean, and the close frame the client
 *   sent (if any) carries it; a clean close has a code a server may send, or 1005;
 * - every byte the client writes after its request head is a valid masked client frame
 *   (minimal lengths, control frames short and whole, reserved bits clear but RSV1 on the
 *   first frame of a message when permessage-deflate was agreed, fragments in order, a
 *   valid close code and UTF-8 reason, nothing after the close frame).
 */
#include <arpa/inet.h>
#include <poll.h>
#include <string.h>

#include "client.h"
#include "fuzz.h"
#include "ref_utf8.h"
#include "session.h"
#include "ws.h"

#define OFFERED_PROTOCOLS "chat, v2.chat"

static struct {
    uint8_t control;
    const uint8_t *stream; /* what the server sends, the driver's prefix included */
    size_t stream_len;
    char accept[EDDY_WS_ACCEPT_LEN + 1];
    bool opened, closed, handshake_failed, compressed;
    int protocol_error; /* the code of the protocol error reported, 0 if none */
    int close_code;
    /* The client's output after its request head, parsed as it comes. */
    uint8_t out[1 << 16];
    size_t out_len, out_parsed;
    bool head_seen, close_sent, in_message;
    int sent_close_code;
} st;

static void on_open(eddy_client_t *client, const eddy_client_open_t *open, void *user_data)
{
    FUZZ_CHECK(!st.opened && !st.handshake_failed && !st.closed);
    FUZZ_CHECK(open->status == 101);
    FUZZ_CHECK(memmem(st.stream, st.stream_len, st.accept, EDDY_WS_ACCEPT_LEN) != NULL);
    if (open->subprotocol != NULL) {
        FUZZ_CHECK(st.control & 4);
        FUZZ_CHECK(strcmp(open->subprotocol, "chat") == 0 ||
                   strcmp(open->subprotocol, "v2.chat") == 0);
    }
    FUZZ_CHECK(open->extensions == NULL || (st.control & 2));
    st.compressed = open->extensions != NULL;
    st.opened = true;
    if (st.control & 0x20) {
        int rc = eddy_client_push(client, "hello", 5, EDDY_WS_OPCODE_TEXT,
                                  EDDY_WS_FLAG_FIN | (st.compressed ? EDDY_WS_FLAG_COMPRESS : 0));
        FUZZ_CHECK(rc != EDDY_EINVAL);
        FUZZ_CHECK(eddy_client_ping(client, "p", 1) != EDDY_EINVAL);
    }
}

static void on_message(eddy_client_t *client, const eddy_frame_t *frame, void *user_data)
{
    FUZZ_CHECK(st.opened && !st.closed);
    FUZZ_CHECK(frame->flags & EDDY_WS_FLAG_FIN);
    FUZZ_CHECK(!(frame->flags & EDDY_WS_FLAG_MASK));
    if (frame->opcode == EDDY_WS_OPCODE_TEXT)
        FUZZ_CHECK(ref_valid((const uint8_t *)frame->data, frame->len));
    if ((st.control & 8) &&
        (frame->opcode == EDDY_WS_OPCODE_TEXT || frame->opcode == EDDY_WS_OPCODE_BINARY)) {
        int flags = EDDY_WS_FLAG_FIN | ((st.control & 0x40) ? EDDY_WS_FLAG_COMPRESS : 0);
        FUZZ_CHECK(eddy_client_push(client, frame->data, frame->len, frame->opcode, flags) !=
                   EDDY_EINVAL);
    }
}

static void on_error(eddy_client_t *client, const eddy_client_error_t *err, void *user_data)
{
    switch (err->kind) {
    case EDDY_CLIENT_ERR_PROTOCOL:
        FUZZ_CHECK(st.opened && !st.closed && st.protocol_error == 0);
        FUZZ_CHECK(err->code == 1002 || err->code == 1007 || err->code == 1009);
        st.protocol_error = err->code;
        break;
    case EDDY_CLIENT_ERR_HTTP_STATUS:
        FUZZ_CHECK(err->code != 101 && err->body != NULL);
        /* fall through */
    case EDDY_CLIENT_ERR_HANDSHAKE:
    case EDDY_CLIENT_ERR_CLOSED:
        FUZZ_CHECK(!st.opened && !st.handshake_failed);
        st.handshake_failed = true;
        break;
    default:
        FUZZ_CHECK(!"unexpected error kind");
    }
}

/* A code a close frame may carry (RFC 6455 7.4, IANA's registry up to 1014). 1010 is one a
 * client sends, but a client that gets it echoes it like any other (Autobahn 7.7.8). */
static bool close_code_valid(int code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

static void on_close(eddy_client_t *client, int code, const char *reason, bool clean,
                     void *user_data)
{
    FUZZ_CHECK(st.opened && !st.closed);
    st.closed = true;
    st.close_code = code;
    if (st.protocol_error != 0)
        FUZZ_CHECK(code == st.protocol_error && !clean);
    if (clean)
        FUZZ_CHECK(code == 1005 || close_code_valid(code));
    FUZZ_CHECK(ref_valid((const uint8_t *)reason, strlen(reason)));
}

/* Checks the frames the client wrote since the last call. */
static void check_client_frames(void)
{
    for (;;) {
        const uint8_t *p = st.out + st.out_parsed;
        size_t have = st.out_len - st.out_parsed;
        if (have < 2)
            return;
        bool fin = p[0] & 0x80, rsv1 = p[0] & 0x40;
        int opcode = p[0] & 0x0f;
        FUZZ_CHECK(!st.close_sent);
        FUZZ_CHECK((p[0] & 0x30) == 0);
        FUZZ_CHECK(p[1] & 0x80); /* masked */
        uint64_t len = p[1] & 0x7f;
        size_t hlen = 2;
        if (len == 126) {
            if (have < 4)
                return;
            len = (uint64_t)p[2] << 8 | p[3];
            FUZZ_CHECK(len >= 126);
            hlen = 4;
        } else if (len == 127) {
            if (have < 10)
                return;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = len << 8 | p[2 + i];
            FUZZ_CHECK(len > 0xffff && !(len >> 63));
            hlen = 10;
        }
        if (have < hlen + 4 || have - hlen - 4 < len)
            return;
        const uint8_t *key = p + hlen;
        uint8_t payload[125];
        if (opcode >= 8) {
            FUZZ_CHECK(opcode <= 10 && fin && len <= 125 && !rsv1);
            for (size_t i = 0; i < len; i++)
                payload[i] = p[hlen + 4 + i] ^ key[i & 3];
        } else {
            FUZZ_CHECK(opcode <= 2);
            FUZZ_CHECK((opcode == 0) == st.in_message);
            FUZZ_CHECK(!rsv1 || (st.compressed && opcode != 0));
            st.in_message = !fin;
        }
        if (opcode == 8) {
            FUZZ_CHECK(len != 1);
            st.sent_close_code = len >= 2 ? payload[0] << 8 | payload[1] : 1005;
            if (len >= 2) {
                FUZZ_CHECK(close_code_valid(st.sent_close_code));
                FUZZ_CHECK(ref_valid(payload + 2, len - 2));
            }
            st.close_sent = true;
        }
        st.out_parsed += hlen + 4 + (size_t)len;
    }
}

/* Reads what the client wrote: its request head first, then frames. */
static void read_client(int peer)
{
    for (;;) {
        if (st.out_len == sizeof(st.out)) {
            /* Keep the unparsed tail only. */
            memmove(st.out, st.out + st.out_parsed, st.out_len - st.out_parsed);
            st.out_len -= st.out_parsed;
            st.out_parsed = 0;
            FUZZ_CHECK(st.out_len < sizeof(st.out));
        }
        ssize_t n = read(peer, st.out + st.out_len, sizeof(st.out) - st.out_len);
        if (n <= 0)
            break;
        st.out_len += (size_t)n;
    }
    if (!st.head_seen) {
        uint8_t *end = memmem(st.out, st.out_len, "\r\n\r\n", 4);
        if (end == NULL)
            return;
        st.head_seen = true;
        st.out_parsed = (size_t)(end + 4 - st.out);
    }
    check_client_frames();
}

/* One turn of the loop the client runs on: its I/O, posted commands, output, reaping. */
static void pump(eddy__loop_t *loop, int peer)
{
    for (int i = 0; i < 4; i++) {
        eddy__backend_poll(loop, 0);
        eddy__loop_run_pending(loop);
        eddy__loop_flush(loop);
        eddy__loop_reap(loop);
        read_client(peer);
    }
}

static int listener = -1;
static char url[64];

static void setup(eddy_server_t *srv)
{
    FUZZ_CHECK(eddy_server_set(srv, "package_max_length", "65536") == 0);
    listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    FUZZ_CHECK(listener >= 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(addr);
    FUZZ_CHECK(bind(listener, (struct sockaddr *)&addr, sizeof(addr)) == 0);
    FUZZ_CHECK(listen(listener, 16) == 0);
    FUZZ_CHECK(getsockname(listener, (struct sockaddr *)&addr, &len) == 0);
    snprintf(url, sizeof(url), "ws://127.0.0.1:%d/fuzz?q=1", ntohs(addr.sin_port));
}

static void feed(eddy__loop_t *loop, int peer, const uint8_t *data, size_t len)
{
    size_t off = 0;
    for (int tries = 0; off < len && tries < 64; tries++) {
        ssize_t n = send(peer, data + off, len - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN)
            return; /* the client hung up */
        if (n > 0)
            off += (size_t)n;
        pump(loop, peer);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    memset(&st, 0, sizeof(st));
    st.control = data[0];
    size_t max_piece = data[1];
    eddy_server_t *srv = fuzz_server(setup);
    eddy__loop_t *loop = srv->loops[0];
    eddy__current_loop = loop;

    eddy_client_options_t opts;
    eddy_client_options_init(&opts);
    opts.url = url;
    opts.compression = st.control & 2;
    opts.subprotocols = (st.control & 4) ? OFFERED_PROTOCOLS : NULL;
    opts.on_open = on_open;
    opts.on_message = on_message;
    opts.on_error = on_error;
    opts.on_close = on_close;
    eddy_client_t *client = eddy_client_new(srv, &opts);
    FUZZ_CHECK(client != NULL);
    FUZZ_CHECK(eddy_client_connect(client) == 0);
    eddy__loop_run_pending(loop); /* connect() to the listener */
    struct pollfd pfd = {.fd = listener, .events = POLLIN};
    FUZZ_CHECK(poll(&pfd, 1, 5000) == 1);
    int peer = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    FUZZ_CHECK(peer >= 0);
    /* The request: its key gives the accept value. */
    for (int i = 0; i < 100 && !st.head_seen; i++)
        pump(loop, peer);
    FUZZ_CHECK(st.head_seen);
    const char *key = memmem(st.out, st.out_len, "Sec-WebSocket-Key: ", 19);
    FUZZ_CHECK(key != NULL);
    eddy_ws_accept_key(key + 19, 24, st.accept);

    char prefix[160];
    size_t prefix_len = 0;
    if (st.control & 1)
        prefix_len = (size_t)snprintf(prefix, sizeof(prefix),
                                      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                      "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n",
                                      st.accept);
    uint8_t *stream = malloc(prefix_len + size - 2 + 1);
    FUZZ_CHECK(stream != NULL);
    memcpy(stream, prefix, prefix_len);
    memcpy(stream + prefix_len, data + 2, size - 2);
    st.stream = stream;
    st.stream_len = prefix_len + size - 2;

    uint64_t rng = fuzz_seed_of(data, size);
    size_t off = 0;
    bool disconnected = false;
    while (off < st.stream_len) {
        size_t n = st.stream_len - off;
        size_t piece = 1 + (size_t)(fuzz_rng_next(&rng) % (max_piece > 0 ? max_piece : 1));
        if (max_piece > 0 && piece < n)
            n = piece;
        feed(loop, peer, stream + off, n);
        off += n;
        if ((st.control & 0x10) && !disconnected && off >= st.stream_len / 2) {
            FUZZ_CHECK(eddy_client_disconnect(client, 1000, "bye") == 0);
            disconnected = true;
        }
    }
    /* The server's EOF, then the client freed as an application does. */
    shutdown(peer, SHUT_WR);
    pump(loop, peer);
    if (st.protocol_error != 0 && st.close_sent)
        FUZZ_CHECK(st.sent_close_code == st.protocol_error);
    if (st.protocol_error != 0)
        FUZZ_CHECK(st.closed);
    eddy_client_free(client);
    pump(loop, peer);
    eddy__loop_close_zombies(loop, true);
    eddy__loop_reap(loop);
    close(peer);
    free(stream);
    eddy__current_loop = NULL;
    return 0;
}

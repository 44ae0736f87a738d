/* SPDX-License-Identifier: MIT */
/*
 * The WebSocket session in each role, with no network: the connection's socket is one end
 * of a socketpair, input is handed straight to the session's process(), and what the
 * session sends is read from the other end. Input is fed whole, one byte at a time and in
 * random splits.
 */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "loop.h"
#include "server.h"
#include "test.h"
#include "ws.h"

/* The messages delivered, the last one kept. */
static struct {
    int count;
    uint8_t opcode;
    uint8_t flags;
    size_t len;
    char *data;
} got;

static void on_message(eddy_server_t *srv, const eddy_frame_t *frame, void *user_data)
{
    (void)srv;
    (void)user_data;
    got.count++;
    got.opcode = frame->opcode;
    got.flags = frame->flags;
    got.len = frame->len;
    free(got.data);
    got.data = malloc(frame->len + 1);
    memcpy(got.data, frame->data, frame->len);
}

/* Protocols whose start() hands the connection to the WebSocket session in a role, as a
 * handshake (the server's upgrade, or a client's response reader) would. */
static int start_client(eddy__conn_t *conn)
{
    return eddy__ws_start(conn, EDDY__WS_CLIENT, NULL);
}

static int start_server(eddy__conn_t *conn)
{
    return eddy__ws_start(conn, EDDY__WS_SERVER, NULL);
}

static void no_state(eddy__conn_t *conn)
{
    (void)conn;
}

static const eddy__proto_t client_handshake_done = {.start = start_client, .free = no_state};
static const eddy__proto_t server_handshake_done = {.start = start_server, .free = no_state};

typedef struct harness {
    eddy_server_t *srv;
    eddy__loop_t *loop;
    eddy__conn_t *conn;
    eddy_fd_t id;
    int peer; /* the other end of the socketpair */
} harness_t;

static bool harness_new(harness_t *h, const eddy__proto_t *proto)
{
    memset(h, 0, sizeof(*h));
    memset(&got, 0, sizeof(got));
    h->srv = eddy_server_new("127.0.0.1", 0);
    CHECK(h->srv != NULL);
    if (h->srv == NULL)
        return false;
    CHECK_EQ_INT(eddy_server_set(h->srv, "log_level", "error"), 0);
    eddy_on_message(h->srv, on_message);
    eddy__options_resolve(&h->srv->opts);
    h->loop = h->srv->loops[0];
    eddy__current_loop = h->loop; /* this thread plays the loop's */
    int sv[2];
    CHECK_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    struct sockaddr_in addr = {
        .sin_family = AF_INET, .sin_port = htons(40000), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    eddy__listener_t listener = {.srv = h->srv, .port = 9, .bound_port = 9};
    h->conn = eddy__conn_new(h->loop, sv[0], (struct sockaddr *)&addr, &listener, 0, proto);
    CHECK(h->conn != NULL);
    if (h->conn == NULL)
        return false;
    CHECK(h->conn->proto == &eddy__ws_proto);
    h->id = h->conn->id;
    h->peer = sv[1];
    return true;
}

static void harness_free(harness_t *h)
{
    if (!h->conn->ending)
        eddy__conn_close(h->conn, EDDY__CLOSE_ABORT);
    eddy__loop_reap(h->loop);
    /* A graceful close lingers (output to write, the peer's EOF to wait for): end it as a
     * stopping server does, and free it. */
    eddy__loop_close_zombies(h->loop, true);
    eddy__loop_reap(h->loop);
    close(h->peer);
    eddy__current_loop = NULL;
    eddy_server_free(h->srv);
    free(got.data);
    memset(&got, 0, sizeof(got));
}

/* Hands input to the session: whole (step 0), step bytes at a time, or in random pieces
 * (step -1). The buffer keeps a spare byte past the input, as the loop's buffers do. */
static void feed(harness_t *h, const uint8_t *bytes, size_t len, int step)
{
    uint8_t *buf = malloc(len + 1);
    memcpy(buf, bytes, len);
    size_t off = 0;
    while (off < len && !h->conn->ending) {
        size_t n = len - off;
        if (step > 0)
            n = EDDY__MIN(n, (size_t)step);
        else if (step < 0)
            n = 1 + (size_t)(test_rand() % n);
        size_t used = h->conn->proto->process(h->conn, (char *)buf + off, n);
        CHECK_EQ_INT(used, n); /* a WebSocket session takes all it is given */
        off += n;
    }
    free(buf);
}

/* A frame as a peer in the other role would send it (masked if mask is not NULL). */
static size_t frame(uint8_t *out, uint8_t opcode, const void *payload, size_t len,
                    const uint8_t *mask)
{
    int flags = EDDY_WS_FLAG_FIN | (mask != NULL ? EDDY_WS_FLAG_MASK : 0);
    size_t header_len = eddy__ws_write_header(out, opcode, flags, len, mask);
    memcpy(out + header_len, payload, len);
    if (mask != NULL)
        eddy__ws_mask(out + header_len, len, mask, 0);
    return header_len + len;
}

/* Reads what the session sent (after the loop's flush) into out; returns its length. */
static size_t drain(harness_t *h, uint8_t *out, size_t cap)
{
    eddy__loop_flush(h->loop);
    size_t len = 0;
    ssize_t n;
    while (len < cap && (n = read(h->peer, out + len, cap - len)) > 0)
        len += (size_t)n;
    return len;
}

/* Parses one frame sent by the session at buf; unmasks its payload in place. Returns the
 * frame's length, 0 if buf does not hold a whole frame. */
static size_t sent_frame(uint8_t *buf, size_t len, eddy__ws_header_t *hdr, uint8_t **payload)
{
    ssize_t header_len = eddy__ws_parse_header(buf, len, hdr);
    if (header_len <= 0 || len - (size_t)header_len < hdr->payload_len)
        return 0;
    *payload = buf + header_len;
    if (hdr->masked)
        eddy__ws_mask(*payload, hdr->payload_len, hdr->mask, 0);
    return (size_t)header_len + hdr->payload_len;
}

static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};

static void test_client_receives_unmasked(void)
{
    static const int steps[] = {0, 1, 3, -1, -1, -1};
    size_t big_len = 70000; /* a 64-bit length */
    uint8_t *big = malloc(big_len);
    for (size_t i = 0; i < big_len; i++)
        big[i] = (uint8_t)(i * 7);
    uint8_t *wire = malloc(big_len + 32);
    for (size_t s = 0; s < EDDY__ARRAY_SIZE(steps); s++) {
        harness_t h;
        if (!harness_new(&h, &client_handshake_done))
            return;
        size_t n = frame(wire, EDDY_WS_OPCODE_TEXT, "hello", 5, NULL);
        feed(&h, wire, n, steps[s]);
        CHECK_EQ_INT(got.count, 1);
        CHECK_EQ_INT(got.opcode, EDDY_WS_OPCODE_TEXT);
        CHECK_EQ_INT(got.flags & EDDY_WS_FLAG_MASK, 0);
        CHECK_MEM(got.data, got.len, "hello", 5);
        n = frame(wire, EDDY_WS_OPCODE_BINARY, big, big_len, NULL);
        feed(&h, wire, n, steps[s]);
        CHECK_EQ_INT(got.count, 2);
        CHECK_MEM(got.data, got.len, big, big_len);
        CHECK(!h.conn->ending);
        harness_free(&h);
    }
    free(wire);
    free(big);
}

/* A frame masked the wrong way for the role fails the connection with 1002, in the
 * frame's direction of travel: checks the close frame the session sent. */
static void check_failed_1002(harness_t *h, bool expect_masked_close)
{
    uint8_t out[256];
    size_t len = drain(h, out, sizeof(out));
    eddy__ws_header_t hdr;
    uint8_t *payload = NULL;
    CHECK(sent_frame(out, len, &hdr, &payload) == len && len > 0);
    CHECK_EQ_INT(hdr.opcode, EDDY_WS_OPCODE_CLOSE);
    CHECK_EQ_INT(hdr.masked, expect_masked_close);
    CHECK(hdr.payload_len >= 2 && payload != NULL && (payload[0] << 8 | payload[1]) == 1002);
    CHECK(h->conn->ending);
}

static void test_wrong_masking_fails(void)
{
    static const int steps[] = {0, 1, -1};
    for (size_t s = 0; s < EDDY__ARRAY_SIZE(steps); s++) {
        uint8_t wire[64];
        harness_t h;
        /* A client refuses a masked frame... */
        if (!harness_new(&h, &client_handshake_done))
            return;
        feed(&h, wire, frame(wire, EDDY_WS_OPCODE_TEXT, "hello", 5, key), steps[s]);
        CHECK_EQ_INT(got.count, 0);
        check_failed_1002(&h, true);
        harness_free(&h);
        /* ...and a server an unmasked one. */
        if (!harness_new(&h, &server_handshake_done))
            return;
        feed(&h, wire, frame(wire, EDDY_WS_OPCODE_TEXT, "hello", 5, NULL), steps[s]);
        CHECK_EQ_INT(got.count, 0);
        check_failed_1002(&h, false);
        harness_free(&h);
    }
}

static void test_server_receives_masked_sends_unmasked(void)
{
    harness_t h;
    if (!harness_new(&h, &server_handshake_done))
        return;
    uint8_t wire[64];
    feed(&h, wire, frame(wire, EDDY_WS_OPCODE_TEXT, "hello", 5, key), 0);
    CHECK_EQ_INT(got.count, 1);
    CHECK_MEM(got.data, got.len, "hello", 5);
    CHECK_EQ_INT(eddy_push(h.srv, h.id, "world", 5, EDDY_WS_OPCODE_TEXT, EDDY_WS_FLAG_FIN), 0);
    uint8_t out[64];
    size_t len = drain(&h, out, sizeof(out));
    eddy__ws_header_t hdr;
    uint8_t *payload = NULL;
    CHECK(sent_frame(out, len, &hdr, &payload) == len && len > 0);
    CHECK_EQ_INT(hdr.masked, 0);
    CHECK(payload != NULL && hdr.payload_len == 5 && memcmp(payload, "world", 5) == 0);
    harness_free(&h);
}

static void test_client_sends_masked(void)
{
    harness_t h;
    if (!harness_new(&h, &client_handshake_done))
        return;
    /* Small frames (written in place) and one larger than an output segment (copied). */
    size_t big_len = 100000;
    char *big = malloc(big_len);
    for (size_t i = 0; i < big_len; i++)
        big[i] = (char)('a' + i % 26);
    char *big_copy = malloc(big_len);
    memcpy(big_copy, big, big_len);
    uint8_t masks[8][4];
    for (int i = 0; i < 8; i++) {
        char text[16];
        int n = snprintf(text, sizeof(text), "message %d", i);
        CHECK_EQ_INT(eddy_push(h.srv, h.id, text, (size_t)n, EDDY_WS_OPCODE_TEXT, EDDY_WS_FLAG_FIN),
                     0);
        uint8_t out[64];
        size_t len = drain(&h, out, sizeof(out));
        eddy__ws_header_t hdr;
        uint8_t *payload = NULL;
        CHECK(sent_frame(out, len, &hdr, &payload) == len && len > 0);
        CHECK_EQ_INT(hdr.masked, 1);
        CHECK(payload != NULL && hdr.payload_len == (uint64_t)n && memcmp(payload, text, n) == 0);
        memcpy(masks[i], hdr.mask, 4);
    }
    /* A fresh key per frame (a repeat among 8 random keys: odds of 2^-27). */
    int repeats = 0;
    for (int i = 0; i < 8; i++)
        for (int j = i + 1; j < 8; j++)
            repeats += memcmp(masks[i], masks[j], 4) == 0;
    CHECK_EQ_INT(repeats, 0);

    CHECK_EQ_INT(eddy_push(h.srv, h.id, big, big_len, EDDY_WS_OPCODE_BINARY, EDDY_WS_FLAG_FIN), 0);
    CHECK(memcmp(big, big_copy, big_len) == 0); /* the caller's bytes are not masked */
    uint8_t *out = malloc(big_len + 64);
    size_t len = 0;
    for (int tries = 0; tries < 1000 && len < big_len + 14; tries++) {
        len += drain(&h, out + len, big_len + 64 - len); /* the socketpair takes it in parts */
        eddy__loop_flush(h.loop);
    }
    eddy__ws_header_t hdr;
    uint8_t *payload = NULL;
    CHECK(sent_frame(out, len, &hdr, &payload) == len && len > 0);
    CHECK_EQ_INT(hdr.masked, 1);
    CHECK(payload != NULL && hdr.payload_len == big_len && memcmp(payload, big, big_len) == 0);
    free(out);
    free(big_copy);
    free(big);
    harness_free(&h);
}

/* A whole message pushed while a fragmented one is being sent waits for its last frame
 * (held), masked too. */
static void test_client_masks_held_frames(void)
{
    harness_t h;
    if (!harness_new(&h, &client_handshake_done))
        return;
    CHECK(h.conn->aside == NULL); /* at rest: no timer, nothing held */
    CHECK_EQ_INT(eddy_push(h.srv, h.id, "frag", 4, EDDY_WS_OPCODE_TEXT, 0), 0);
    CHECK_EQ_INT(eddy_push(h.srv, h.id, "whole", 5, EDDY_WS_OPCODE_TEXT, EDDY_WS_FLAG_FIN), 0);
    CHECK(h.conn->aside != NULL); /* "whole" waits there */
    CHECK_EQ_INT(eddy_push(h.srv, h.id, "end", 3, EDDY_WS_OPCODE_CONTINUATION, EDDY_WS_FLAG_FIN),
                 0);
    CHECK(h.conn->aside == NULL); /* released behind "end", and given up */
    uint8_t out[128];
    size_t len = drain(&h, out, sizeof(out));
    static const struct {
        uint8_t opcode;
        bool fin;
        const char *payload;
    } expected[] = {{EDDY_WS_OPCODE_TEXT, false, "frag"},
                    {EDDY_WS_OPCODE_CONTINUATION, true, "end"},
                    {EDDY_WS_OPCODE_TEXT, true, "whole"}};
    size_t off = 0;
    for (size_t i = 0; i < EDDY__ARRAY_SIZE(expected); i++) {
        eddy__ws_header_t hdr;
        uint8_t *payload = NULL;
        size_t n = sent_frame(out + off, len - off, &hdr, &payload);
        CHECK(n > 0);
        if (n == 0)
            break;
        size_t want = strlen(expected[i].payload);
        CHECK_EQ_INT(hdr.opcode, expected[i].opcode);
        CHECK_EQ_INT(hdr.fin, expected[i].fin);
        CHECK_EQ_INT(hdr.masked, 1);
        CHECK(hdr.payload_len == want && memcmp(payload, expected[i].payload, want) == 0);
        off += n;
    }
    CHECK_EQ_INT(off, len);
    harness_free(&h);
}

static void test_client_answers_ping_masked(void)
{
    harness_t h;
    if (!harness_new(&h, &client_handshake_done))
        return;
    uint8_t wire[64];
    feed(&h, wire, frame(wire, EDDY_WS_OPCODE_PING, "abc", 3, NULL), 1);
    uint8_t out[64];
    size_t len = drain(&h, out, sizeof(out));
    eddy__ws_header_t hdr;
    uint8_t *payload = NULL;
    CHECK(sent_frame(out, len, &hdr, &payload) == len && len > 0);
    CHECK_EQ_INT(hdr.opcode, EDDY_WS_OPCODE_PONG);
    CHECK_EQ_INT(hdr.masked, 1);
    CHECK(payload != NULL && hdr.payload_len == 3 && memcmp(payload, "abc", 3) == 0);
    harness_free(&h);
}

/* The closing handshake: both roles answer a close frame with theirs; the server then
 * closes the TCP connection, the client waits for the server to. */
static void test_close_handshake(void)
{
    uint8_t close_1000[] = {0x03, 0xe8};
    uint8_t wire[64], out[64];
    eddy__ws_header_t hdr;
    uint8_t *payload = NULL;

    harness_t h;
    if (!harness_new(&h, &client_handshake_done))
        return;
    feed(&h, wire, frame(wire, EDDY_WS_OPCODE_CLOSE, close_1000, 2, NULL), -1);
    size_t len = drain(&h, out, sizeof(out));
    CHECK(sent_frame(out, len, &hdr, &payload) == len && len > 0);
    CHECK_EQ_INT(hdr.opcode, EDDY_WS_OPCODE_CLOSE);
    CHECK_EQ_INT(hdr.masked, 1);
    CHECK(payload != NULL && hdr.payload_len == 2 && memcmp(payload, close_1000, 2) == 0);
    CHECK(!h.conn->ending); /* waiting for the server's EOF */
    CHECK_EQ_INT(atomic_load(&h.conn->ws_status), EDDY_WS_STATUS_CLOSING);
    CHECK(eddy__conn_timeout_armed(h.conn));    /* websocket_close_timeout */
    CHECK_EQ_INT(shutdown(h.peer, SHUT_WR), 0); /* the server closes */
    h.conn->io.cb(h.loop, &h.conn->io, EDDY__IO_READ);
    CHECK(h.conn->ending);
    harness_free(&h);

    if (!harness_new(&h, &server_handshake_done))
        return;
    feed(&h, wire, frame(wire, EDDY_WS_OPCODE_CLOSE, close_1000, 2, key), -1);
    len = drain(&h, out, sizeof(out));
    CHECK(sent_frame(out, len, &hdr, &payload) == len && len > 0);
    CHECK_EQ_INT(hdr.opcode, EDDY_WS_OPCODE_CLOSE);
    CHECK_EQ_INT(hdr.masked, 0);
    CHECK(h.conn->ending); /* the server closes first */
    harness_free(&h);
}

/* The connection keeps its last input's time in the loop clock's low 32 bits: the quiet
 * time stays right across their wrap (every 49.7 days of the monotonic clock). */
static void test_quiet_time_across_clock_wrap(void)
{
    harness_t h;
    if (!harness_new(&h, &server_handshake_done))
        return;
    uint64_t before_wrap = ((uint64_t)3 << 32) - 100;
    atomic_store(&h.conn->last_recv_ms, (uint32_t)before_wrap);
    CHECK_EQ_INT(eddy__conn_quiet_ms(h.conn, before_wrap), 0);
    CHECK_EQ_INT(eddy__conn_quiet_ms(h.conn, before_wrap + 99), 99);
    CHECK_EQ_INT(eddy__conn_quiet_ms(h.conn, before_wrap + 100), 100); /* low bits 0 */
    CHECK_EQ_INT(eddy__conn_quiet_ms(h.conn, before_wrap + 7 * 86400000u), 7 * 86400000u);
    harness_free(&h);
}

/* A protocol that only keeps time: its timeout names the connection it fired for. */
static eddy__conn_t *timed_out;

static int start_timed(eddy__conn_t *conn)
{
    (void)conn;
    return 0;
}

static size_t consume_all(eddy__conn_t *conn, char *buf, size_t len)
{
    (void)conn;
    (void)buf;
    return len;
}

static void note_timeout(eddy__conn_t *conn)
{
    timed_out = conn;
}

static const eddy__proto_t timed_proto = {.name = "timed",
                                          .start = start_timed,
                                          .process = consume_all,
                                          .timeout = note_timeout,
                                          .closed = no_state,
                                          .free = no_state};

/* The aside (timer and held output) a connection lets go serves the next one: its timer
 * then fires for the new connection, not the one that let it go; the loop keeps at most
 * EDDY__SPARE_ASIDES of them and frees the rest (and those when it goes: ASan's leak
 * check). */
static void test_aside_passed_to_next_connection(void)
{
    eddy_server_t *srv = eddy_server_new("127.0.0.1", 0);
    CHECK(srv != NULL);
    if (srv == NULL)
        return;
    CHECK_EQ_INT(eddy_server_set(srv, "log_level", "error"), 0);
    eddy__options_resolve(&srv->opts);
    eddy__loop_t *loop = srv->loops[0];
    eddy__current_loop = loop;
    struct sockaddr_in addr = {
        .sin_family = AF_INET, .sin_port = htons(40000), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    eddy__listener_t listener = {.srv = srv, .port = 9, .bound_port = 9};
    enum { N = EDDY__SPARE_ASIDES + 4 };
    eddy__conn_t *conns[N];
    int peers[N];
    for (int i = 0; i < N; i++) {
        int sv[2];
        CHECK_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
        conns[i] =
            eddy__conn_new(loop, sv[0], (struct sockaddr *)&addr, &listener, 0, &timed_proto);
        peers[i] = sv[1];
        CHECK(conns[i] != NULL);
        if (conns[i] == NULL)
            return;
        CHECK_EQ_INT(eddy__conn_set_timeout(conns[i], 60000), 0);
        CHECK(conns[i]->aside != NULL);
    }
    eddy__conn_aside_t *last_kept = conns[EDDY__SPARE_ASIDES - 1]->aside;
    for (int i = 0; i < N; i++) {
        eddy__conn_drop_timer(conns[i]);
        CHECK(conns[i]->aside == NULL);
    }
    CHECK_EQ_INT(loop->spare_aside_len, EDDY__SPARE_ASIDES);

    eddy__conn_t *next = conns[N - 1];
    CHECK_EQ_INT(eddy__conn_set_timeout(next, 1), 0);
    CHECK(next->aside == last_kept);
    CHECK(eddy__conn_timeout_armed(next));
    CHECK_EQ_INT(loop->spare_aside_len, EDDY__SPARE_ASIDES - 1);
    usleep(5000);
    eddy__loop_refresh_clock(loop);
    timed_out = NULL;
    eddy__loop_run_timers(loop);
    CHECK(timed_out == next);

    for (int i = 0; i < N; i++) {
        eddy__conn_close(conns[i], EDDY__CLOSE_ABORT);
        close(peers[i]);
    }
    eddy__loop_reap(loop);
    CHECK_EQ_INT(loop->spare_aside_len, EDDY__SPARE_ASIDES);
    eddy__current_loop = NULL;
    eddy_server_free(srv);
}

int main(void)
{
    test_client_receives_unmasked();
    test_wrong_masking_fails();
    test_server_receives_masked_sends_unmasked();
    test_client_sends_masked();
    test_client_masks_held_frames();
    test_client_answers_ping_masked();
    test_close_handshake();
    test_quiet_time_across_clock_wrap();
    test_aside_passed_to_next_connection();
    return test_report("test_ws_session");
}

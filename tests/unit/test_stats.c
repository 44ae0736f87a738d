/* SPDX-License-Identifier: MIT */
/*
 * eddy_server_stats(): the counters move with real traffic over loopback (accepts, HTTP
 * requests, WebSocket handshakes and refusals, messages and bytes both ways, drops for a
 * slow consumer), the gauges come back down when connections close, and the per-loop
 * figures add up to the server's.
 */
#include "test.h"
#include "test_server.h"

#include <errno.h>
#include <poll.h>

#define LOOPS    2
#define MESSAGES 25

/* Echo, and for "flood" a burst the reader never takes (it is dropped beyond the limit). */
static void on_message(eddy_server_t *srv, const eddy_frame_t *frame, void *user_data)
{
    (void)user_data;
    if (frame->len == 5 && memcmp(frame->data, "flood", 5) == 0) {
        static char big[16384];
        for (int i = 0; i < 64; i++)
            eddy_push(srv, frame->fd, big, sizeof(big), EDDY_WS_OPCODE_BINARY, EDDY_WS_FLAG_FIN);
        return;
    }
    if (frame->len == 5 && memcmp(frame->data, "other", 5) == 0) {
        /* The other ways out: two parts (2 messages), a fragmented message with a whole
         * one held behind it (2), and a ping (a control frame: not counted). */
        eddy_part_t parts[2] = {{"p1", 2, EDDY_WS_OPCODE_TEXT}, {"p2", 2, EDDY_WS_OPCODE_TEXT}};
        eddy_push_parts(srv, frame->fd, parts, 2, 0);
        eddy_push(srv, frame->fd, "f1", 2, EDDY_WS_OPCODE_TEXT, 0);
        eddy_push(srv, frame->fd, "held", 4, EDDY_WS_OPCODE_TEXT, EDDY_WS_FLAG_FIN);
        eddy_push(srv, frame->fd, "f2", 2, EDDY_WS_OPCODE_CONTINUATION, EDDY_WS_FLAG_FIN);
        eddy_push(srv, frame->fd, "", 0, EDDY_WS_OPCODE_PING, EDDY_WS_FLAG_FIN);
        return;
    }
    eddy_push(srv, frame->fd, frame->data, frame->len, frame->opcode, EDDY_WS_FLAG_FIN);
}

static int on_upgrade(eddy_server_t *srv, eddy_request_t *req, void *user_data)
{
    (void)srv;
    (void)user_data;
    return strcmp(eddy_request_path(req), "/refused") == 0 ? 403 : 0;
}

static eddy_stats_t stats(void)
{
    eddy_stats_t st;
    CHECK_EQ_INT(eddy_server_stats(test_server, -1, &st), 0);
    return st;
}

/* Waits up to 5 s for the server's gauges to read conns connections, ws of them WebSocket. */
static bool wait_gauges(uint64_t conns, uint64_t ws)
{
    for (int waited_ms = 0; waited_ms < 5000; waited_ms++) {
        eddy_stats_t st;
        eddy_server_stats(test_server, -1, &st);
        if (st.connections == conns && st.websocket_connections == ws)
            return true;
        struct timespec ms = {.tv_nsec = 1000000L};
        nanosleep(&ms, NULL);
    }
    return false;
}

int main(void)
{
    if (!test_server_new("error"))
        return test_report("test_stats");
    char loops[8];
    snprintf(loops, sizeof(loops), "%d", LOOPS);
    CHECK_EQ_INT(eddy_server_set(test_server, "worker_num", loops), 0);
    CHECK_EQ_INT(eddy_server_set(test_server, "slow_consumer_policy", "drop"), 0);
    CHECK_EQ_INT(eddy_server_set(test_server, "socket_buffer_size", "65536"), 0);
    eddy_on_message(test_server, on_message);
    eddy_on_upgrade(test_server, on_upgrade);

    eddy_stats_t st = stats();
    CHECK(st.accepted_total == 0 && st.connections == 0 && st.bytes_sent_total == 0);
    CHECK_EQ_INT(eddy_server_stats(test_server, -2, &st), EDDY_EINVAL);
    CHECK_EQ_INT(eddy_server_stats(test_server, 0, NULL), EDDY_EINVAL);

    pthread_t thread;
    int rc = -1;
    test_start_server(&thread, &rc);
    int port = eddy_server_port(test_server);
    CHECK_EQ_INT(eddy_server_stats(test_server, LOOPS, &st), EDDY_EINVAL);

    CHECK(test_http_answered(port)); /* one plain request (answered 400: no request event) */
    int refused = test_connect_timed(port);
    CHECK_EQ_INT(test_ws_upgrade(refused, "/refused"), 403);
    close(refused);

    int ws = test_connect_timed(port);
    CHECK_EQ_INT(test_ws_upgrade(ws, "/"), 101);
    size_t sent_payload = 0;
    for (int i = 0; i < MESSAGES; i++) {
        char text[32], echo[128];
        snprintf(text, sizeof(text), "message %d", i);
        CHECK(test_ws_send_text(ws, text));
        sent_payload += strlen(text);
        CHECK_EQ_INT(test_ws_recv_small(ws, echo), (int)strlen(text));
    }
    CHECK(wait_gauges(1, 1));
    st = stats();
    CHECK_EQ_INT(st.accepted_total, 3);
    CHECK_EQ_INT(st.http_requests_total, 3);
    CHECK_EQ_INT(st.websocket_opened_total, 1);
    CHECK_EQ_INT(st.websocket_refused_total, 1);
    CHECK_EQ_INT(st.messages_received_total, MESSAGES);
    CHECK_EQ_INT(st.messages_sent_total, MESSAGES);
    CHECK(st.bytes_received_total >= sent_payload + MESSAGES * 6);
    CHECK(st.bytes_sent_total >= sent_payload + MESSAGES * 2);
    CHECK_EQ_INT(st.messages_dropped_total, 0);

    /* The loops' figures add up to the server's. The loops are read one after the other
     * while they run, and a loop counts what it wrote after write() returned (the client
     * may have the answer first): both are read again (bounded) until they agree. */
    eddy_stats_t sum;
    for (int attempt = 0; attempt < 500; attempt++) {
        st = stats();
        memset(&sum, 0, sizeof(sum));
        for (int i = 0; i < LOOPS; i++) {
            eddy_stats_t one;
            CHECK_EQ_INT(eddy_server_stats(test_server, i, &one), 0);
            sum.connections += one.connections;
            sum.accepted_total += one.accepted_total;
            sum.http_requests_total += one.http_requests_total;
            sum.messages_received_total += one.messages_received_total;
            sum.bytes_sent_total += one.bytes_sent_total;
        }
        if (sum.connections == 1 && sum.bytes_sent_total == st.bytes_sent_total)
            break;
        struct timespec ms = {.tv_nsec = 10000000L};
        nanosleep(&ms, NULL);
    }
    CHECK_EQ_INT(sum.connections, 1);
    CHECK_EQ_INT(sum.accepted_total, st.accepted_total);
    CHECK_EQ_INT(sum.http_requests_total, st.http_requests_total);
    CHECK_EQ_INT(sum.messages_received_total, st.messages_received_total);
    CHECK_EQ_INT(sum.bytes_sent_total, st.bytes_sent_total);

    /* Parts, a fragmented message, a held one and a ping: 4 data messages, 6 frames. */
    CHECK(test_ws_send_text(ws, "other"));
    for (int i = 0; i < 6; i++) {
        char frame[128];
        CHECK(test_ws_recv_small(ws, frame) >= 0);
    }
    st = stats();
    CHECK_EQ_INT(st.messages_received_total, MESSAGES + 1);
    CHECK_EQ_INT(st.messages_sent_total, MESSAGES + 4);

    /* A burst of 1 MiB to a reader that takes nothing: what exceeds socket_buffer_size
     * (64 KiB beyond what the socket took) is dropped and counted. */
    CHECK(test_ws_send_text(ws, "flood"));
    for (int waited_ms = 0; waited_ms < 5000; waited_ms++) {
        st = stats();
        if (st.messages_sent_total + st.messages_dropped_total == MESSAGES + 4 + 64)
            break;
        struct timespec ms = {.tv_nsec = 1000000L};
        nanosleep(&ms, NULL);
    }
    st = stats();
    CHECK(st.messages_dropped_total > 0);
    CHECK_EQ_INT(st.messages_sent_total + st.messages_dropped_total, MESSAGES + 4 + 64);
    CHECK_EQ_INT(st.slow_consumer_closes_total, 0);

    close(ws);
    CHECK(wait_gauges(0, 0));

    eddy_server_stop(test_server);
    pthread_join(thread, NULL);
    CHECK_EQ_INT(rc, 0);
    /* Counters outlive the run. */
    st = stats();
    CHECK_EQ_INT(st.accepted_total, 3);
    eddy_server_free(test_server);
    return test_report("test_stats");
}

/* SPDX-License-Identifier: MIT */
/*
 * The WebSocket client against an eddy server in the same process: 1,000 stand-alone
 * clients at once, a client opened from a server's callback on that server's loop, at most
 * one live connection per client while its connections end by a close frame and a TCP
 * close at once, over and over, the offline queue's bounds (count, bytes, age; refuse
 * or drop oldest), back-pressure, and bytes after the closing handshake.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "test.h"
#include "test_server.h"

#define MANY 1000

static char url[64];
static char race_url[80];
static atomic_int opened, echoed, closed_events;
static atomic_int race_live, race_max, race_opens;
static atomic_bool inner_done;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Waits (bounded) for cond to hold; returns whether it did. */
#define WAIT_FOR(cond, seconds)                                                                    \
    ({                                                                                             \
        int waited_ = 0;                                                                           \
        while (!(cond) && waited_ < (seconds)*100) {                                               \
            sleep_ms(10);                                                                          \
            waited_++;                                                                             \
        }                                                                                          \
        (cond);                                                                                    \
    })

/* The server: an echo; connections to /race are closed with 4100 (a code the client
 * retries) and at the same moment at the TCP level. */
static atomic_bool server_got_compressed;

static void server_message(eddy_server_t *srv, const eddy_frame_t *frame, void *user_data)
{
    /* A compressed message is answered compressed. */
    bool compressed = frame->flags & EDDY_WS_FLAG_RSV1;
    if (compressed && frame->len == 3 && memcmp(frame->data, "zip", 3) == 0)
        atomic_store(&server_got_compressed, true);
    eddy_push(srv, frame->fd, frame->data, frame->len, frame->opcode,
              EDDY_WS_FLAG_FIN | (compressed ? EDDY_WS_FLAG_COMPRESS : 0));
}

static void server_open(eddy_server_t *srv, eddy_request_t *req, void *user_data)
{
    if (strcmp(eddy_request_path(req), "/race") != 0)
        return;
    int live = atomic_fetch_add(&race_live, 1) + 1;
    int max = atomic_load(&race_max);
    while (live > max && !atomic_compare_exchange_weak(&race_max, &max, live))
        ;
    atomic_fetch_add(&race_opens, 1);
    eddy_fd_t fd = eddy_request_fd(req);
    eddy_conn_set_user_data(srv, fd, &race_live);
    eddy_disconnect(srv, fd, 4100, "again");
    eddy_close(srv, fd);
}

static void server_close(eddy_server_t *srv, eddy_fd_t fd, void *user_data)
{
    if (eddy_conn_user_data(srv, fd) == &race_live)
        atomic_fetch_sub(&race_live, 1);
}

/* ---- 1,000 stand-alone clients ---- */

static void many_open(eddy_client_t *client, const eddy_client_open_t *open, void *user_data)
{
    atomic_fetch_add(&opened, 1);
    eddy_client_push(client, "ping", 4, EDDY_WS_OPCODE_TEXT, EDDY_WS_FLAG_FIN);
}

static void many_message(eddy_client_t *client, const eddy_frame_t *frame, void *user_data)
{
    if (frame->len == 4 && memcmp(frame->data, "ping", 4) == 0)
        atomic_fetch_add(&echoed, 1);
}

static void test_many_standalone_clients(void)
{
    static eddy_client_t *clients[MANY];
    eddy_client_options_t opts;
    eddy_client_options_init(&opts);
    opts.url = url;
    opts.on_open = many_open;
    opts.on_message = many_message;
    for (int i = 0; i < MANY; i++) {
        clients[i] = eddy_client_new(NULL, &opts);
        CHECK(clients[i] != NULL);
        if (clients[i] != NULL)
            CHECK_EQ_INT(eddy_client_connect(clients[i]), 0);
    }
    CHECK(WAIT_FOR(atomic_load(&echoed) == MANY, 30));
    CHECK_EQ_INT(atomic_load(&opened), MANY);
    /* Each has a connection of its own on the shared loop. */
    CHECK(eddy_client_id(clients[0]) != 0 &&
          eddy_client_id(clients[0]) != eddy_client_id(clients[MANY - 1]));
    for (int i = 0; i < MANY; i++)
        eddy_client_free(clients[i]);
    /* The server sees every connection end: the frees aborted them. */
    CHECK(WAIT_FOR(eddy_connection_count(test_server) == 0, 30));
}

/* ---- a client opened by a server's callback, on the server's loop ---- */

static atomic_bool inner_open_ok;

static void inner_open(eddy_client_t *client, const eddy_client_open_t *open, void *user_data)
{
    /* The open event's headers, a ping, and a message sent in two fragments (one unit: the
     * server echoes it whole). */
    bool upgrade = false;
    for (size_t i = 0; i < open->num_headers; i++)
        upgrade |= strcasecmp(open->headers[i].name, "upgrade") == 0 &&
                   strcasecmp(open->headers[i].value, "websocket") == 0;
    bool ok =
        open->status == 101 && upgrade && open->subprotocol == NULL &&
        eddy_client_ping(client, "hb", 2) == 0 &&
        eddy_client_push(client, "in", 2, EDDY_WS_OPCODE_TEXT, 0) == 0 &&
        eddy_client_push(client, "ner", 3, EDDY_WS_OPCODE_CONTINUATION, EDDY_WS_FLAG_FIN) == 0 &&
        open->extensions != NULL &&
        eddy_client_push(client, "zip", 3, EDDY_WS_OPCODE_TEXT,
                         EDDY_WS_FLAG_FIN | EDDY_WS_FLAG_COMPRESS) == 0;
    atomic_store(&inner_open_ok, ok);
}

static atomic_bool client_got_compressed;

static void inner_message(eddy_client_t *client, const eddy_frame_t *frame, void *user_data)
{
    if (frame->len == 3 && memcmp(frame->data, "zip", 3) == 0 && (frame->flags & EDDY_WS_FLAG_RSV1))
        atomic_store(&client_got_compressed, true);
    if (frame->len == 5 && memcmp(frame->data, "inner", 5) == 0) {
        atomic_store(&inner_done, true);
        eddy_client_disconnect(client, 1000, "done");
    }
}

static void inner_close(eddy_client_t *client, int code, const char *reason, bool clean,
                        void *user_data)
{
    if (code == 1000 && clean)
        atomic_fetch_add(&closed_events, 1);
    eddy_client_free(client); /* from its own callback */
}

static void open_inner_client(eddy_server_t *srv, uint64_t timer_id, void *arg)
{
    eddy_client_options_t opts;
    eddy_client_options_init(&opts);
    opts.url = url;
    opts.on_open = inner_open;
    opts.on_message = inner_message;
    opts.on_close = inner_close;
    opts.compression = true;
    eddy_client_t *client = eddy_client_new(srv, &opts);
    if (client != NULL)
        eddy_client_connect(client);
}

static void test_client_inside_server(void)
{
    CHECK(eddy_timer_after(test_server, 1, open_inner_client, NULL) != 0);
    CHECK(WAIT_FOR(atomic_load(&inner_done), 10));
    CHECK(atomic_load(&inner_open_ok));
    /* permessage-deflate both ways: the server inflated the client's message, the client
     * the server's answer. */
    CHECK(WAIT_FOR(atomic_load(&client_got_compressed), 5));
    CHECK(atomic_load(&server_got_compressed));
    CHECK(WAIT_FOR(atomic_load(&closed_events) == 1, 10));
}

/* ---- one live connection per client ---- */

static void test_one_connection_under_racing_close(void)
{
    eddy_client_options_t opts;
    eddy_client_options_init(&opts);
    opts.url = race_url;
    opts.reconnect = true;
    opts.reconnect_delay_min = 0;
    opts.reconnect_delay_max = 0.002;
    /* The heartbeat's timer races too. */
    opts.ping_interval = 0.001;
    opts.ping_timeout = 0.001;
    eddy_client_t *client = eddy_client_new(NULL, &opts);
    CHECK(client != NULL);
    if (client == NULL)
        return;
    eddy_client_connect(client);
    CHECK(WAIT_FOR(atomic_load(&race_opens) >= 50, 30));
    eddy_client_free(client);
    CHECK(WAIT_FOR(atomic_load(&race_live) == 0, 10));
    CHECK_EQ_INT(atomic_load(&race_max), 1);
}

/* ---- the offline queue's bounds ---- */

static atomic_int dropped_overflow, dropped_expired;
static char dropped_first[8];

static void queue_dropped(eddy_client_t *client, const void *data, size_t len, int opcode,
                          int reason, void *user_data)
{
    if (reason == EDDY_CLIENT_DROP_OVERFLOW && atomic_fetch_add(&dropped_overflow, 1) == 0)
        memcpy(dropped_first, data, len < 7 ? len : 7);
    if (reason == EDDY_CLIENT_DROP_EXPIRED)
        atomic_fetch_add(&dropped_expired, 1);
}

/* A client that cannot connect (nothing listens on its port) queues what is pushed. */
static eddy_client_t *offline_client(int overflow, size_t max_messages, double max_age)
{
    static char nowhere[64];
    int port = eddy_server_port(test_server);
    /* The port above the server's: nothing listens there in this test. */
    snprintf(nowhere, sizeof(nowhere), "ws://127.0.0.1:%d/", port == 65535 ? 1 : port + 1);
    eddy_client_options_t opts;
    eddy_client_options_init(&opts);
    opts.url = nowhere;
    opts.reconnect = true;
    opts.reconnect_delay_min = 0.05;
    opts.queue_max_messages = max_messages;
    opts.queue_max_bytes = 1000;
    opts.queue_max_age = max_age;
    opts.queue_overflow = overflow;
    opts.on_dropped = queue_dropped;
    return eddy_client_new(NULL, &opts);
}

static void test_offline_queue_bounds(void)
{
    char msg[8];
    /* Refuse: the fourth push of three places is refused at once. */
    eddy_client_t *client = offline_client(EDDY_CLIENT_QUEUE_REFUSE, 3, 0);
    CHECK(client != NULL);
    if (client == NULL)
        return;
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(eddy_client_push(client, "m", 1, EDDY_WS_OPCODE_TEXT, EDDY_WS_FLAG_FIN),
                     EDDY_QUEUED);
    CHECK_EQ_INT(eddy_client_push(client, "m", 1, EDDY_WS_OPCODE_TEXT, EDDY_WS_FLAG_FIN),
                 EDDY_EDROPPED);
    /* Bytes are bounded too, and control frames and fragments are not queued. */
    static char big[1001];
    CHECK_EQ_INT(
        eddy_client_push(client, big, sizeof(big), EDDY_WS_OPCODE_BINARY, EDDY_WS_FLAG_FIN),
        EDDY_ETOOBIG);
    CHECK_EQ_INT(eddy_client_push(client, "p", 1, EDDY_WS_OPCODE_PING, EDDY_WS_FLAG_FIN),
                 EDDY_ESTATE);
    CHECK_EQ_INT(eddy_client_push(client, "f", 1, EDDY_WS_OPCODE_TEXT, 0), EDDY_ESTATE);
    CHECK_EQ_INT(atomic_load(&dropped_overflow), 0);
    eddy_client_free(client);

    /* Drop oldest: five pushes into three places drop the first two, oldest first. */
    client = offline_client(EDDY_CLIENT_QUEUE_DROP_OLDEST, 3, 0);
    CHECK(client != NULL);
    if (client == NULL)
        return;
    for (int i = 0; i < 5; i++) {
        snprintf(msg, sizeof(msg), "m%d", i);
        CHECK_EQ_INT(
            eddy_client_push(client, msg, strlen(msg), EDDY_WS_OPCODE_TEXT, EDDY_WS_FLAG_FIN),
            EDDY_QUEUED);
    }
    CHECK_EQ_INT(atomic_load(&dropped_overflow), 2);
    CHECK_STR(dropped_first, "m0");
    eddy_client_free(client);

    /* Age: a message older than queue_max_age is dropped when the next push comes. */
    client = offline_client(EDDY_CLIENT_QUEUE_REFUSE, 10, 0.05);
    CHECK(client != NULL);
    if (client == NULL)
        return;
    CHECK_EQ_INT(eddy_client_push(client, "old", 3, EDDY_WS_OPCODE_TEXT, EDDY_WS_FLAG_FIN),
                 EDDY_QUEUED);
    sleep_ms(120);
    CHECK_EQ_INT(eddy_client_push(client, "new", 3, EDDY_WS_OPCODE_TEXT, EDDY_WS_FLAG_FIN),
                 EDDY_QUEUED);
    CHECK_EQ_INT(atomic_load(&dropped_expired), 1);
    eddy_client_free(client);
}

/* A listening socket on a free loopback port for a scripted server thread; its ws:// URL
 * into out_url. */
static int raw_listener(char *out_url, size_t cap)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t addr_len = sizeof(addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(bind(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0 && listen(fd, 1) == 0 &&
          getsockname(fd, (struct sockaddr *)&addr, &addr_len) == 0);
    snprintf(out_url, cap, "ws://127.0.0.1:%d/", ntohs(addr.sin_port));
    return fd;
}

/* ---- back-pressure: EDDY_QUEUED, then the drain event ---- */

static int slow_listener;
static atomic_bool slow_read; /* the slow server starts reading */
static atomic_bool slow_open, drained;

/* A server that answers the handshake and then reads nothing until slow_read. */
static void *slow_server(void *arg)
{
    int fd = accept(slow_listener, NULL, NULL);
    char buf[65536];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof(buf) - 1 && (n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0) {
        len += (size_t)n;
        buf[len] = '\0';
        if (strstr(buf, "\r\n\r\n") != NULL)
            break;
    }
    const char *key = strstr(buf, "Sec-WebSocket-Key: ");
    char accept_key[EDDY_WS_ACCEPT_LEN + 1] = "";
    if (key != NULL)
        eddy_ws_accept_key(key + 19, 24, accept_key);
    char answer[256];
    int answer_len = snprintf(answer, sizeof(answer),
                              "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                              "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                              accept_key);
    if (write(fd, answer, (size_t)answer_len) != answer_len)
        perror("write");
    while (!atomic_load(&slow_read))
        sleep_ms(5);
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
    close(fd);
    return NULL;
}

static void slow_on_open(eddy_client_t *client, const eddy_client_open_t *open, void *user_data)
{
    atomic_store(&slow_open, true);
}

static void slow_on_drain(eddy_client_t *client, void *user_data)
{
    atomic_store(&drained, true);
}

static void test_back_pressure_and_drain(void)
{
    char slow_url[64];
    slow_listener = raw_listener(slow_url, sizeof(slow_url));
    pthread_t thread;
    pthread_create(&thread, NULL, slow_server, NULL);
    eddy_client_options_t opts;
    eddy_client_options_init(&opts);
    opts.url = slow_url;
    opts.on_open = slow_on_open;
    opts.on_drain = slow_on_drain;
    eddy_client_t *client = eddy_client_new(NULL, &opts);
    CHECK(client != NULL);
    if (client != NULL) {
        eddy_client_connect(client);
        CHECK(WAIT_FOR(atomic_load(&slow_open), 10));
        /* Pushed until the output is over the high watermark (80% of 8 MiB): the server
         * does not read, so the kernel's buffers fill and eddy's queue grows. */
        static char chunk[65536];
        int rc = 0;
        for (int i = 0; i < 1000 && rc != EDDY_QUEUED; i++) {
            rc = eddy_client_push(client, chunk, sizeof(chunk), EDDY_WS_OPCODE_BINARY,
                                  EDDY_WS_FLAG_FIN);
            if (rc == 0)
                sleep_ms(1); /* from another thread the answer follows the loop's progress */
        }
        CHECK_EQ_INT(rc, EDDY_QUEUED);
        CHECK(!atomic_load(&drained));
        atomic_store(&slow_read, true);
        CHECK(WAIT_FOR(atomic_load(&drained), 10));
        eddy_client_free(client);
    }
    atomic_store(&slow_read, true);
    pthread_join(thread, NULL);
    close(slow_listener);
}

/* ---- bytes after the closing handshake ---- */

static int after_listener;
static atomic_int after_errors, after_code = -1;
static atomic_bool after_clean;

/* Answers the handshake, then sends a close frame (4000) and, in the same write, a frame
 * with a reserved opcode; reads the client's answer and closes. */
static void *after_close_server(void *arg)
{
    int fd = accept(after_listener, NULL, NULL);
    char buf[4096];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof(buf) - 1 && (n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0) {
        len += (size_t)n;
        buf[len] = '\0';
        if (strstr(buf, "\r\n\r\n") != NULL)
            break;
    }
    const char *key = strstr(buf, "Sec-WebSocket-Key: ");
    char accept_key[EDDY_WS_ACCEPT_LEN + 1] = "";
    if (key != NULL)
        eddy_ws_accept_key(key + 19, 24, accept_key);
    char answer[256];
    int answer_len = snprintf(answer, sizeof(answer),
                              "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                              "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                              accept_key);
    static const char frames[] = "\x88\x03\x0f\xa0x\x83\x00";
    memcpy(answer + answer_len, frames, sizeof(frames) - 1);
    answer_len += (int)sizeof(frames) - 1;
    if (write(fd, answer, (size_t)answer_len) != answer_len)
        perror("write");
    struct timeval timeout = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    if (read(fd, buf, sizeof(buf)) <= 0)
        perror("read");
    close(fd);
    return NULL;
}

static void after_on_error(eddy_client_t *client, const eddy_client_error_t *err, void *user_data)
{
    atomic_fetch_add(&after_errors, 1);
}

static void after_on_close(eddy_client_t *client, int code, const char *reason, bool clean,
                           void *user_data)
{
    atomic_store(&after_clean, clean);
    atomic_store(&after_code, code);
}

/* Found by fuzz/fuzz_client_session: a bad frame after the server's close frame, once the
 * client had answered it, was reported as a protocol error (1002) and turned the close
 * event's code 4000, clean, into 1002. */
static void test_bytes_after_close_frame(void)
{
    char after_url[64];
    after_listener = raw_listener(after_url, sizeof(after_url));
    pthread_t thread;
    pthread_create(&thread, NULL, after_close_server, NULL);
    eddy_client_options_t opts;
    eddy_client_options_init(&opts);
    opts.url = after_url;
    opts.on_error = after_on_error;
    opts.on_close = after_on_close;
    eddy_client_t *client = eddy_client_new(NULL, &opts);
    CHECK(client != NULL);
    if (client != NULL) {
        eddy_client_connect(client);
        CHECK(WAIT_FOR(atomic_load(&after_code) != -1, 10));
        CHECK_EQ_INT(atomic_load(&after_code), 4000);
        CHECK(atomic_load(&after_clean));
        CHECK_EQ_INT(atomic_load(&after_errors), 0);
        eddy_client_free(client);
    }
    pthread_join(thread, NULL);
    close(after_listener);
}

/* The heartbeat's timeout is bounded by what the connection's 32-bit clock of its last
 * input can span (conn.h): a week is accepted, a second more is not. */
static void test_ping_timeout_bounds(void)
{
    static const struct {
        double ping_timeout;
        bool accepted;
    } cases[] = {{10, true}, {7 * 86400.0, true}, {7 * 86400.0 + 1, false}, {0, false}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        eddy_client_options_t opts;
        eddy_client_options_init(&opts);
        opts.url = url;
        opts.ping_interval = 1;
        opts.ping_timeout = cases[i].ping_timeout;
        eddy_client_t *client = eddy_client_new(NULL, &opts);
        CHECK_EQ_INT(client != NULL, cases[i].accepted);
        if (client != NULL)
            eddy_client_free(client);
    }
}

int main(void)
{
    if (!test_server_new("warning"))
        return test_report("test_client");
    eddy_on_message(test_server, server_message);
    eddy_on_open(test_server, server_open);
    eddy_on_close(test_server, server_close);
    CHECK_EQ_INT(eddy_server_set(test_server, "worker_num", "2"), 0);
    CHECK_EQ_INT(eddy_server_set(test_server, "websocket_compression", "true"), 0);
    pthread_t thread;
    int server_rc = 0;
    pthread_create(&thread, NULL, test_run_server, &server_rc);
    CHECK(WAIT_FOR(atomic_load(&test_started), 10));
    snprintf(url, sizeof(url), "ws://127.0.0.1:%d/", eddy_server_port(test_server));
    snprintf(race_url, sizeof(race_url), "ws://127.0.0.1:%d/race", eddy_server_port(test_server));

    test_many_standalone_clients();
    test_client_inside_server();
    test_one_connection_under_racing_close();
    test_offline_queue_bounds();
    test_back_pressure_and_drain();
    test_bytes_after_close_frame();
    test_ping_timeout_bounds();

    eddy_server_stop(test_server);
    pthread_join(thread, NULL);
    CHECK_EQ_INT(server_rc, 0);
    eddy_server_free(test_server);
    return test_report("test_client");
}

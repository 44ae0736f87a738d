/* SPDX-License-Identifier: MIT */
/*
 * Deferred upgrade answers (eddy_upgrade_defer(), eddy_upgrade_accept(),
 * eddy_upgrade_reject()): the server runs on a thread of its own, and this thread, which
 * is none of its loops, answers the upgrades its callback deferred. Each case asserts what
 * the client sees on the wire and what the callbacks saw.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>

#include "test.h"
#include "test_server.h"

static atomic_ullong deferred_fd; /* the last upgrade the callback deferred */
static atomic_ullong closed_fd;   /* the last connection whose close callback ran */
static atomic_ullong opened_fd;
static atomic_int messages;
static char
    opened_target[128];       /* path and query the open callback saw (written before opened_fd) */
static char last_message[64]; /* written before messages is raised */

static int on_upgrade(eddy_server_t *srv, eddy_request_t *req, void *user_data)
{
    const char *mode = eddy_request_get(req, "mode");
    if (mode != NULL && strcmp(mode, "pending-only") == 0)
        return EDDY_PENDING; /* without eddy_upgrade_defer(): refused */
    int rc = eddy_upgrade_defer(req);
    atomic_store(&deferred_fd, eddy_request_fd(req));
    return rc;
}

static void on_open(eddy_server_t *srv, eddy_request_t *req, void *user_data)
{
    snprintf(opened_target, sizeof(opened_target), "%s?%s %s", eddy_request_path(req),
             eddy_request_query(req), eddy_request_header(req, "x-client") ?: "-");
    atomic_store(&opened_fd, eddy_request_fd(req));
}

static void on_message(eddy_server_t *srv, const eddy_frame_t *frame, void *user_data)
{
    snprintf(last_message, sizeof(last_message), "%.*s", (int)frame->len, frame->data);
    atomic_fetch_add(&messages, 1);
}

static void on_close(eddy_server_t *srv, eddy_fd_t fd, void *user_data)
{
    atomic_store(&closed_fd, fd);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = ms % 1000 * 1000000L};
    nanosleep(&ts, NULL);
}

/* Waits up to 5 s for *v to become want. */
static bool wait_for(atomic_ullong *v, unsigned long long want)
{
    for (int i = 0; i < 5000 && atomic_load(v) != want; i++)
        sleep_ms(1);
    return atomic_load(v) == want;
}

/* Sends an upgrade request for target (and extra bytes after it on the same write) on a
 * new connection, and waits until the callback deferred it: returns the socket, and the
 * session id in *fd (0 if it never came). */
static int send_upgrade(int port, const char *target, const void *extra, size_t extra_len,
                        eddy_fd_t *fd)
{
    atomic_store(&deferred_fd, 0);
    int sock = test_connect(port);
    char request[512];
    int n = snprintf(request, sizeof(request),
                     "GET %s HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                     "Sec-WebSocket-Protocol: chat, other\r\nX-Client: c1\r\n\r\n",
                     target);
    if (extra_len > 0)
        memcpy(request + n, extra, extra_len);
    CHECK(send(sock, request, (size_t)n + extra_len, 0) == (ssize_t)((size_t)n + extra_len));
    *fd = 0;
    for (int i = 0; i < 5000 && (*fd = atomic_load(&deferred_fd)) == 0; i++)
        sleep_ms(1);
    return sock;
}

/* Reads what arrives on sock within ms (up to cap - 1 bytes; stops at a response's blank
 * line when head_only). Returns the length, NUL-terminated. */
static size_t read_for(int sock, char *out, size_t cap, int ms, bool head_only)
{
    size_t len = 0;
    struct pollfd p = {.fd = sock, .events = POLLIN};
    while (len + 1 < cap && poll(&p, 1, ms) == 1) {
        ssize_t n = recv(sock, out + len, head_only ? 1 : cap - 1 - len, 0);
        if (n <= 0)
            break;
        len += (size_t)n;
        out[len] = '\0';
        if (head_only && len >= 4 && memcmp(out + len - 4, "\r\n\r\n", 4) == 0)
            break;
    }
    out[len] = '\0';
    return len;
}

/* A masked text frame carrying text. */
static size_t masked_text(uint8_t *out, const char *text)
{
    size_t len = strlen(text);
    static const uint8_t key[4] = {1, 2, 3, 4};
    out[0] = 0x81;
    out[1] = (uint8_t)(0x80 | len);
    memcpy(out + 2, key, 4);
    for (size_t i = 0; i < len; i++)
        out[6 + i] = (uint8_t)text[i] ^ key[i % 4];
    return 6 + len;
}

/* The answer comes from another thread, with headers; the frame the client sent before it
 * was not read meanwhile and reaches the message callback after the open. */
static void accept_from_another_thread(int port)
{
    uint8_t frame[32];
    size_t frame_len = masked_text(frame, "early");
    eddy_fd_t fd;
    atomic_store(&messages, 0);
    int sock = send_upgrade(port, "/room?x=1&mode=defer", frame, frame_len, &fd);
    CHECK(fd != 0);
    char reply[1024];
    /* Nothing is answered while the decision is pending. */
    CHECK_EQ_INT((int)read_for(sock, reply, sizeof(reply), 200, true), 0);
    CHECK_EQ_INT(atomic_load(&messages), 0);
    const char *headers[] = {"Sec-WebSocket-Protocol", "other", "Set-Cookie", "s=1", NULL};
    CHECK_EQ_INT(eddy_upgrade_accept(test_server, fd, headers), 0);
    read_for(sock, reply, sizeof(reply), 5000, true);
    CHECK(strncmp(reply, "HTTP/1.1 101 ", 13) == 0);
    CHECK(strstr(reply, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n") != NULL);
    /* The application's subprotocol replaces the one websocket_subprotocol chooses. */
    CHECK(strstr(reply, "Sec-WebSocket-Protocol: other\r\n") != NULL);
    CHECK(strstr(reply, "Sec-WebSocket-Protocol: chat") == NULL);
    CHECK(strstr(reply, "Set-Cookie: s=1\r\n") != NULL);
    CHECK(wait_for(&opened_fd, fd));
    CHECK_STR(opened_target, "/room?x=1&mode=defer c1");
    for (int i = 0; i < 5000 && atomic_load(&messages) == 0; i++)
        sleep_ms(1);
    CHECK_EQ_INT(atomic_load(&messages), 1);
    CHECK_STR(last_message, "early");
    /* Exactly once: a second answer for the same upgrade is ignored. */
    CHECK_EQ_INT(eddy_upgrade_reject(test_server, fd, 403, NULL, "late"), 0);
    size_t frame2_len = masked_text(frame, "after");
    CHECK(send(sock, frame, frame2_len, 0) == (ssize_t)frame2_len);
    for (int i = 0; i < 5000 && atomic_load(&messages) < 2; i++)
        sleep_ms(1);
    CHECK_EQ_INT(atomic_load(&messages), 2);
    CHECK_STR(last_message, "after");
    close(sock);
    CHECK(wait_for(&closed_fd, fd));
}

/* Headers longer than the 101 eddy builds on the stack: the whole answer arrives, in order,
 * and the connection is open. */
static void accept_with_long_headers(int port)
{
    eddy_fd_t fd;
    int sock = send_upgrade(port, "/?mode=defer", NULL, 0, &fd);
    CHECK(fd != 0);
    static char cookie[1200];
    memset(cookie, 'c', sizeof(cookie) - 1);
    memcpy(cookie, "s=", 2);
    const char *headers[] = {"Set-Cookie", cookie, "X-After", "1", NULL};
    CHECK_EQ_INT(eddy_upgrade_accept(test_server, fd, headers), 0);
    char reply[2048];
    read_for(sock, reply, sizeof(reply), 5000, true);
    CHECK(strncmp(reply, "HTTP/1.1 101 Switching Protocols\r\n", 34) == 0);
    static const char after[] = "\r\nX-After: 1\r\nServer: eddy\r\nDate: ";
    const char *at = strstr(reply, "Set-Cookie: s=ccc");
    CHECK(at != NULL && strlen(at) > sizeof(cookie) + 12);
    CHECK(at != NULL && strncmp(at + 12 + sizeof(cookie) - 1, after, sizeof(after) - 1) == 0);
    CHECK(strstr(reply, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n") != NULL);
    CHECK(wait_for(&opened_fd, fd));
    close(sock);
    CHECK(wait_for(&closed_fd, fd));
}

/* A refusal from another thread: the exact status, headers and body, then the close. */
static void reject_from_another_thread(int port)
{
    eddy_fd_t fd;
    int sock = send_upgrade(port, "/?mode=defer", NULL, 0, &fd);
    CHECK(fd != 0);
    const char *headers[] = {"WWW-Authenticate", "Bearer", NULL};
    CHECK_EQ_INT(eddy_upgrade_reject(test_server, fd, 401, headers, "bad token\n"), 0);
    /* The first answer wins: this acceptance comes second and is ignored (or finds the
     * connection closed already). */
    int rc = eddy_upgrade_accept(test_server, fd, NULL);
    CHECK(rc == 0 || rc == EDDY_ENOTFOUND);
    char reply[1024];
    read_for(sock, reply, sizeof(reply), 5000, false);
    CHECK(strncmp(reply, "HTTP/1.1 401 Unauthorized\r\n", 27) == 0);
    CHECK(strstr(reply, "WWW-Authenticate: Bearer\r\n") != NULL);
    CHECK(strstr(reply, "Connection: close\r\n") != NULL);
    const char *body = strstr(reply, "\r\n\r\n");
    CHECK(body != NULL && strcmp(body + 4, "bad token\n") == 0);
    CHECK(wait_for(&closed_fd, fd));
    CHECK(atomic_load(&opened_fd) != fd);
    close(sock);
}

/* The client hangs up while its upgrade is pending: the close callback runs at once (no
 * answer needed), and the late answer finds no connection. */
static void hangup_while_pending(int port)
{
    eddy_fd_t fd;
    int sock = send_upgrade(port, "/?mode=defer", NULL, 0, &fd);
    CHECK(fd != 0);
    close(sock);
    CHECK(wait_for(&closed_fd, fd));
    CHECK_EQ_INT(eddy_upgrade_accept(test_server, fd, NULL), EDDY_ENOTFOUND);
    CHECK_EQ_INT(eddy_upgrade_reject(test_server, fd, 500, NULL, NULL), EDDY_ENOTFOUND);
}

/* No answer within websocket_upgrade_timeout: 503 and the close; a late answer is
 * harmless. */
static void unanswered_times_out(int port)
{
    eddy_fd_t fd;
    int sock = send_upgrade(port, "/?mode=defer", NULL, 0, &fd);
    CHECK(fd != 0);
    char reply[1024];
    read_for(sock, reply, sizeof(reply), 5000, false);
    CHECK(strncmp(reply, "HTTP/1.1 503 ", 13) == 0);
    CHECK(strstr(reply, "websocket_upgrade_timeout") != NULL);
    CHECK(wait_for(&closed_fd, fd));
    int rc = eddy_upgrade_accept(test_server, fd, NULL);
    CHECK(rc == EDDY_ENOTFOUND || rc == 0);
    close(sock);
}

/* EDDY_PENDING returned without eddy_upgrade_defer() is a refusal (403). */
static void pending_without_defer_refuses(int port)
{
    int sock = test_connect(port);
    static const char request[] =
        "GET /?mode=pending-only HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n";
    CHECK(send(sock, request, sizeof(request) - 1, 0) == (ssize_t)sizeof(request) - 1);
    char reply[1024];
    read_for(sock, reply, sizeof(reply), 5000, false);
    CHECK(strncmp(reply, "HTTP/1.1 403 ", 13) == 0);
    close(sock);
}

/* With a handshake callback, a deferred acceptance runs it then, with the request as it
 * arrived; its answer is the client's. */
static void on_handshake(eddy_server_t *srv, eddy_request_t *req, eddy_response_t *resp,
                         void *user_data)
{
    const char *key = eddy_request_header(req, "sec-websocket-key");
    char accept[EDDY_WS_ACCEPT_LEN + 1];
    if (key == NULL || eddy_ws_accept_key(key, strlen(key), accept) != 0) {
        eddy_response_status(resp, 400, NULL);
        eddy_response_end(resp, NULL, 0);
        return;
    }
    eddy_response_status(resp, 101, NULL);
    eddy_response_header(resp, "Upgrade", "websocket");
    eddy_response_header(resp, "Connection", "Upgrade");
    eddy_response_header(resp, "Sec-WebSocket-Accept", accept);
    eddy_response_header(resp, "X-Handshake", eddy_request_header(req, "x-client") ?: "-");
    eddy_response_end(resp, NULL, 0);
}

static void accept_with_handshake_callback(int port)
{
    eddy_fd_t fd;
    int sock = send_upgrade(port, "/?mode=defer", NULL, 0, &fd);
    CHECK(fd != 0);
    CHECK_EQ_INT(eddy_upgrade_accept(test_server, fd, NULL), 0);
    char reply[1024];
    read_for(sock, reply, sizeof(reply), 5000, true);
    CHECK(strncmp(reply, "HTTP/1.1 101 ", 13) == 0);
    CHECK(strstr(reply, "X-Handshake: c1\r\n") != NULL);
    CHECK(strstr(reply, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n") != NULL);
    close(sock);
    CHECK(wait_for(&closed_fd, fd));
}

/* Arguments are checked before anything is handed over. */
static void bad_arguments(void)
{
    eddy_fd_t nobody = 999999;
    CHECK_EQ_INT(eddy_upgrade_accept(test_server, nobody, NULL), EDDY_ENOTFOUND);
    CHECK_EQ_INT(eddy_upgrade_accept(test_server, nobody, (const char *[]){"Upgrade", "x", NULL}),
                 EDDY_EINVAL);
    CHECK_EQ_INT(eddy_upgrade_accept(test_server, nobody,
                                     (const char *[]){"Sec-WebSocket-Accept", "x", NULL}),
                 EDDY_EINVAL);
    CHECK_EQ_INT(eddy_upgrade_accept(test_server, nobody, (const char *[]){"X-A", "a\r\nb", NULL}),
                 EDDY_EINVAL);
    CHECK_EQ_INT(eddy_upgrade_reject(test_server, nobody, 399, NULL, NULL), EDDY_EINVAL);
    CHECK_EQ_INT(eddy_upgrade_reject(test_server, nobody, 600, NULL, NULL), EDDY_EINVAL);
    CHECK_EQ_INT(eddy_upgrade_reject(test_server, nobody, 401,
                                     (const char *[]){"Content-Length", "3", NULL}, NULL),
                 EDDY_EINVAL);
}

int main(void)
{
    if (!test_server_new("error"))
        return test_report("upgrade_defer");
    CHECK_EQ_INT(eddy_server_set(test_server, "worker_num", "2"), 0);
    CHECK_EQ_INT(eddy_server_set(test_server, "websocket_subprotocol", "chat"), 0);
    /* A stop waits this long (default 5 s) for peers to close; the one with an upgrade
     * pending below closes only after it. */
    CHECK_EQ_INT(eddy_server_set(test_server, "websocket_close_timeout", "0.2"), 0);
    eddy_on_upgrade(test_server, on_upgrade);
    eddy_on_open(test_server, on_open);
    eddy_on_message(test_server, on_message);
    eddy_on_close(test_server, on_close);
    pthread_t thread;
    int rc = -1;
    test_start_server(&thread, &rc);
    int port = eddy_server_port(test_server);

    bad_arguments();
    accept_from_another_thread(port);
    accept_with_long_headers(port);
    reject_from_another_thread(port);
    hangup_while_pending(port);
    pending_without_defer_refuses(port);

    eddy_server_stop(test_server);
    pthread_join(thread, NULL);
    CHECK_EQ_INT(rc, 0);

    /* The timeout, short, on a second run of the same server. */
    CHECK_EQ_INT(eddy_server_set(test_server, "websocket_upgrade_timeout", "0.2"), 0);
    test_start_server(&thread, &rc);
    unanswered_times_out(eddy_server_port(test_server));
    /* A stop with an upgrade pending frees what it held (ASan's leak check). */
    eddy_fd_t fd;
    int sock = send_upgrade(eddy_server_port(test_server), "/?mode=defer", NULL, 0, &fd);
    CHECK(fd != 0);
    eddy_server_stop(test_server);
    pthread_join(thread, NULL);
    CHECK_EQ_INT(rc, 0);
    close(sock);

    /* A third run, with a handshake callback. */
    eddy_on_handshake(test_server, on_handshake);
    test_start_server(&thread, &rc);
    accept_with_handshake_callback(eddy_server_port(test_server));
    eddy_server_stop(test_server);
    pthread_join(thread, NULL);
    CHECK_EQ_INT(rc, 0);
    eddy_server_free(test_server);
    return test_report("upgrade_defer");
}

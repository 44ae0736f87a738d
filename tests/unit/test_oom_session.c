/* SPDX-License-Identifier: MIT */
/*
 * A scripted server session with one allocation failing: for n = 1, 2, ... a fresh
 * server (one loop, then two; a task worker; permessage-deflate; a TLS listener beside
 * the plain one, with a certificate made here) is set up, started, driven by a client
 * over loopback and stopped, with the n-th allocation failing (alloc_fail.h) among those made by
 * eddy_server_new() and eddy_server_set(), by the server's threads, and by the client's own calls
 * into the API (push, publish and defer from another thread); the client's other code is exempt.
 * The sweep ends with the first run in which no allocation failed.
 *
 * Every step of the script must end, within STEP_MS, in one of:
 *   - the right answer;
 *   - a reported error: the application's "E" reply (an API call it made answered
 *     EDDY_ENOMEM or 0), an HTTP 5xx response, EDDY_ENOMEM from the client's call;
 *   - a clean close: EOF, a reset, or a close frame (the rest of that connection's
 *     script is then skipped).
 * Setting up may fail only with EDDY_ENOMEM (or NULL), and eddy_server_start() only
 * with EDDY_ENOMEM. Anything else (wrong bytes, a timeout, a server that does not stop
 * within STOP_MS, a crash) fails, and under AddressSanitizer a leak fails at exit.
 *
 * EDDY_OOM_STRIDE=k runs n = 1, 1 + k, ...; EDDY_OOM_VERBOSE=1 prints each run's failed
 * allocation site (an offset for addr2line); EDDY_OOM_FROM=n starts the sweep at n (with
 * EDDY_ALLOC_FAIL_TRACE=1 to see the stack, see alloc_fail.h).
 */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "alloc_fail.h"
#include "eddy.h"
#include "self_signed.h"
#include "test.h"
#include "test_server.h"

#define STEP_MS   3000
#define STOP_MS   10000
#define MAX_RUNS  20000
#define MAX_SITES 4096
#define BIG_LEN   (300 * 1024) /* a message that spans many reads */

/* ---- the application ---- */

/* Sends text to fd; a connection that cannot be answered is closed (a clean close). */
static void reply(eddy_server_t *srv, eddy_fd_t fd, const char *text)
{
    int rc = eddy_push(srv, fd, text, strlen(text), EDDY_WS_OPCODE_TEXT, EDDY_WS_FLAG_FIN);
    if (rc < 0)
        eddy_close(srv, fd);
}

static void timer_fired(eddy_server_t *srv, uint64_t timer_id, void *arg)
{
    (void)timer_id;
    reply(srv, (eddy_fd_t)(uintptr_t)arg, "ok timer");
}

static void *task_run(void *arg)
{
    return arg;
}

static void task_finished(eddy_server_t *srv, uint64_t task_id, void *result, void *arg)
{
    (void)task_id;
    (void)arg;
    reply(srv, (eddy_fd_t)(uintptr_t)result, "ok task");
}

static void on_message(eddy_server_t *srv, const eddy_frame_t *frame, void *user_data)
{
    (void)user_data;
    eddy_fd_t fd = frame->fd;
    void *fd_arg = (void *)(uintptr_t)fd;
    char answer[32];
    if (frame->opcode == EDDY_WS_OPCODE_TEXT && strcmp(frame->data, "sub") == 0) {
        reply(srv, fd, eddy_subscribe(srv, fd, "room") == 0 ? "ok sub" : "E");
    } else if (frame->opcode == EDDY_WS_OPCODE_TEXT && strcmp(frame->data, "unsub") == 0) {
        reply(srv, fd, eddy_unsubscribe(srv, fd, "room") == 0 ? "ok unsub" : "E");
    } else if (frame->opcode == EDDY_WS_OPCODE_TEXT && strcmp(frame->data, "pub") == 0) {
        int n = eddy_publish(srv, "room", "news news news news", 19, EDDY_WS_OPCODE_TEXT,
                             EDDY_WS_FLAG_COMPRESS);
        snprintf(answer, sizeof(answer), "ok pub %d", n);
        reply(srv, fd, n >= 0 ? answer : "E");
    } else if (frame->opcode == EDDY_WS_OPCODE_TEXT && strcmp(frame->data, "timer") == 0) {
        if (eddy_timer_after(srv, 1, timer_fired, fd_arg) == 0)
            reply(srv, fd, "E");
    } else if (frame->opcode == EDDY_WS_OPCODE_TEXT && strcmp(frame->data, "task") == 0) {
        if (eddy_task(srv, task_run, task_finished, fd_arg) == 0)
            reply(srv, fd, "E");
    } else if (eddy_push(srv, fd, frame->data, frame->len, frame->opcode,
                         EDDY_WS_FLAG_FIN | EDDY_WS_FLAG_COMPRESS) < 0) {
        eddy_close(srv, fd); /* the echo */
    }
}

static atomic_ullong opened_fd; /* the WebSocket, for the client's calls from its thread */

static void on_open(eddy_server_t *srv, eddy_request_t *req, void *user_data)
{
    (void)srv;
    (void)user_data;
    atomic_store(&opened_fd, eddy_request_fd(req));
}

static void deferred(eddy_server_t *srv, void *arg)
{
    reply(srv, (eddy_fd_t)(uintptr_t)arg, "ok deferred");
}

static void end_later(eddy_server_t *srv, uint64_t timer_id, void *arg)
{
    (void)srv;
    (void)timer_id;
    eddy_response_end(arg, "later", 5);
}

static void on_request(eddy_server_t *srv, eddy_request_t *req, eddy_response_t *resp,
                       void *user_data)
{
    (void)user_data;
    const char *path = eddy_request_path(req);
    if (strcmp(path, "/echo") == 0) {
        size_t len;
        const char *body = eddy_request_body(req, &len);
        if (eddy_response_header(resp, "X-Echo", "yes") != 0)
            eddy_response_close(resp);
        else
            eddy_response_end(resp, body, len);
    } else if (strcmp(path, "/chunked") == 0) {
        /* As an application might: the writes' results unchecked (the end's tells). */
        eddy_response_write(resp, "ab", 2);
        eddy_response_write(resp, "cd", 2);
        eddy_response_end(resp, "ef", 2);
    } else if (strcmp(path, "/later") == 0) {
        if (eddy_timer_after(srv, 1, end_later, resp) == 0) {
            eddy_response_status(resp, 503, NULL);
            eddy_response_end(resp, NULL, 0);
        } else {
            eddy_response_detach(resp);
        }
    } else {
        eddy_response_end(resp, "hello", 5);
    }
}

/* ---- the client ---- */

enum outcome { OK, ERR, CLOSED, BAD };

static const char *workers; /* worker_num in this sweep */
static int run_n;           /* the allocation failing in this run */
static const char *step;    /* the step under way, for messages */
static unsigned char in[BIG_LEN + 4096];
static size_t in_len; /* bytes in in[] not yet consumed */
static bool hung;     /* a step timed out */

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void fail(const char *what)
{
    fprintf(stderr, "%s loops, allocation %d, step %s: %s\n", workers, run_n, step, what);
    CHECK(false);
}

static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval timeout = {.tv_sec = STEP_MS / 1000};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
    /* The script writes a fragmented message as three small writes: without this, Nagle
     * holds each back until the previous one's delayed ACK (40 ms, twice a run). */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        close(fd);
        return -1;
    }
    in_len = 0;
    return fd;
}

/* False if the peer closed or reset the connection (sending to it may fail). */
static bool send_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

/* Reads more into in[]: > 0 bytes read, 0 on EOF or reset, -1 on timeout (recorded). */
static ssize_t read_more(int fd, long deadline)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    long left = deadline - now_ms();
    if (left <= 0 || poll(&pfd, 1, (int)left) != 1) {
        fail("no answer in time");
        hung = true;
        return -1;
    }
    ssize_t n = recv(fd, in + in_len, sizeof(in) - in_len, 0);
    if (n <= 0)
        return 0;
    in_len += (size_t)n;
    return n;
}

static void consume(size_t n)
{
    memmove(in, in + n, in_len - n);
    in_len -= n;
}

/* Decodes the chunked body at in[head..in_len) into itself; its length, or -1 while
 * incomplete or malformed. */
static long dechunk(size_t head)
{
    size_t at = head, out = head;
    for (;;) {
        char *line_end = memmem(in + at, in_len - at, "\r\n", 2);
        if (line_end == NULL)
            return -1;
        size_t size = strtoul((char *)in + at, NULL, 16);
        at = (size_t)((unsigned char *)line_end - in) + 2;
        if (in_len - at < size + 2)
            return -1;
        if (size == 0)
            return (long)(out - head);
        memmove(in + out, in + at, size);
        out += size;
        at += size + 2;
    }
}

/* One HTTP exchange on a new connection: OK if the answer is 200 with want as its body
 * (given with Content-Length or chunked). */
static enum outcome http(int port, const char *request, const char *want)
{
    int fd = dial(port);
    if (fd < 0)
        return CLOSED;
    enum outcome result = CLOSED;
    long deadline = now_ms() + STEP_MS;
    if (!send_all(fd, request, strlen(request)))
        goto done;
    for (;;) {
        in[in_len] = '\0';
        char *end = strstr((char *)in, "\r\n\r\n");
        if (end != NULL && strcasestr((char *)in, "\r\nTransfer-Encoding: chunked") != NULL) {
            size_t head = (size_t)(end + 4 - (char *)in);
            size_t copy = in_len;
            static unsigned char saved[sizeof(in)];
            memcpy(saved, in, in_len);
            long body = dechunk(head);
            if (body >= 0) {
                int status = atoi((char *)in + 9);
                result = status >= 500 ? ERR
                         : status == 200 && (size_t)body == strlen(want) &&
                                 memcmp(in + head, want, (size_t)body) == 0
                             ? OK
                             : BAD;
                break;
            }
            memcpy(in, saved, copy); /* incomplete: read on */
        } else if (end != NULL) {
            const char *cl = strcasestr((char *)in, "\r\nContent-Length: ");
            size_t head = (size_t)(end + 4 - (char *)in);
            size_t body = cl != NULL ? strtoul(cl + 18, NULL, 10) : 0;
            if (in_len >= head + body) {
                int status = atoi((char *)in + 9);
                if (status >= 500)
                    result = ERR;
                else if (status == 200 && body == strlen(want) &&
                         memcmp(in + head, want, body) == 0)
                    result = OK;
                else
                    result = BAD;
                break;
            }
        }
        if (read_more(fd, deadline) <= 0)
            break;
    }
done:
    close(fd);
    return result;
}

static char cert_file[] = "/tmp/eddy-oom-cert-XXXXXX";
static char key_file[] = "/tmp/eddy-oom-key-XXXXXX";
static SSL_CTX *client_tls;

/* Writes a self-signed certificate and its key for the TLS listener; false on failure. */
static bool make_certificate(void)
{
    bool ok = self_signed_write(cert_file, key_file, "localhost");
    client_tls = SSL_CTX_new(TLS_client_method());
    return ok && client_tls != NULL;
}

/* GET / over TLS: OK for 200 "hello", ERR for a 5xx, CLOSED, BAD. */
static enum outcome https(int port)
{
    int fd = dial(port);
    if (fd < 0)
        return CLOSED;
    struct timeval timeout = {.tv_sec = STEP_MS / 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    SSL *ssl = SSL_new(client_tls);
    SSL_set_fd(ssl, fd);
    static const char request[] = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";
    enum outcome result = CLOSED;
    if (SSL_connect(ssl) == 1 && SSL_write(ssl, request, sizeof(request) - 1) > 0) {
        size_t len = 0;
        for (;;) {
            errno = 0;
            int n = SSL_read(ssl, in + len, (int)(sizeof(in) - 1 - len));
            if (n <= 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    fail("no answer in time");
                    hung = true;
                }
                break;
            }
            len += (size_t)n;
            in[len] = '\0';
            char *end = strstr((char *)in, "\r\n\r\n");
            const char *cl = strcasestr((char *)in, "\r\nContent-Length: ");
            if (end == NULL || cl == NULL)
                continue;
            size_t head = (size_t)(end + 4 - (char *)in), body = strtoul(cl + 18, NULL, 10);
            if (len < head + body)
                continue;
            int status = atoi((char *)in + 9);
            result = status >= 500                                                      ? ERR
                     : status == 200 && body == 5 && memcmp(in + head, "hello", 5) == 0 ? OK
                                                                                        : BAD;
            break;
        }
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        fail("no TLS handshake in time");
        hung = true;
    }
    SSL_free(ssl);
    ERR_clear_error();
    close(fd);
    in_len = 0;
    return result;
}

static int ws_fd = -1;
static bool pmd;          /* permessage-deflate was negotiated */
static z_stream inflater; /* the server's messages, with context takeover */
static unsigned char msg[BIG_LEN + 1024];
static size_t msg_len;
static int msg_opcode;

static void ws_send(int opcode, int flags, const void *data, size_t len)
{
    static unsigned char frame[BIG_LEN + 64];
    static const uint8_t mask[4] = {1, 2, 3, 4};
    ssize_t n =
        eddy_ws_pack(frame, sizeof(frame), data, len, opcode, flags | EDDY_WS_FLAG_MASK, mask);
    CHECK(n > 0);
    if (n > 0)
        send_all(ws_fd, frame, (size_t)n); /* a failure shows in the answer */
}

/* Sends a whole message compressed (a fresh stream each time: no context to keep). */
static void ws_send_compressed(int opcode, const char *text)
{
    z_stream d = {0};
    unsigned char packed[1024];
    CHECK(deflateInit2(&d, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) == Z_OK);
    d.next_in = (unsigned char *)text;
    d.avail_in = (uInt)strlen(text);
    d.next_out = packed;
    d.avail_out = sizeof(packed);
    CHECK(deflate(&d, Z_SYNC_FLUSH) == Z_OK);
    size_t len = sizeof(packed) - d.avail_out - 4; /* RFC 7692: without 00 00 ff ff */
    deflateEnd(&d);
    ws_send(opcode, EDDY_WS_FLAG_FIN | EDDY_WS_FLAG_RSV1, packed, len);
}

/* Receives the next message or control frame into msg: OK, CLOSED (EOF, reset or a
 * close frame) or BAD. */
static enum outcome ws_recv(void)
{
    long deadline = now_ms() + STEP_MS;
    bool compressed = false;
    msg_len = 0;
    for (;;) {
        eddy_frame_t frame;
        ssize_t n = in_len > 0 ? eddy_ws_unpack(in, in_len, &frame) : EDDY_AGAIN;
        if (n == EDDY_AGAIN) {
            if (read_more(ws_fd, deadline) <= 0)
                return CLOSED;
            continue;
        }
        if (n < 0 || (frame.flags & EDDY_WS_FLAG_MASK))
            return BAD;
        if (frame.opcode == EDDY_WS_OPCODE_CLOSE)
            return CLOSED;
        if (frame.opcode != EDDY_WS_OPCODE_CONTINUATION) {
            msg_opcode = frame.opcode;
            compressed = frame.flags & EDDY_WS_FLAG_RSV1;
        }
        if (msg_len + frame.len > BIG_LEN)
            return BAD;
        memcpy(msg + msg_len, frame.data, frame.len);
        msg_len += frame.len;
        consume((size_t)n);
        if (frame.finish)
            break;
    }
    if (compressed) {
        if (!pmd)
            return BAD;
        static unsigned char plain[BIG_LEN + 1];
        memcpy(msg + msg_len, "\x00\x00\xff\xff", 4);
        inflater.next_in = msg;
        inflater.avail_in = (uInt)msg_len + 4;
        inflater.next_out = plain;
        inflater.avail_out = sizeof(plain);
        int rc = inflate(&inflater, Z_SYNC_FLUSH);
        if ((rc != Z_OK && rc != Z_BUF_ERROR) || inflater.avail_in != 0)
            return BAD;
        msg_len = sizeof(plain) - inflater.avail_out;
        memcpy(msg, plain, msg_len);
    }
    msg[msg_len] = '\0';
    return OK;
}

/* Receives a message and compares it with want: OK, ERR for the "E" reply, CLOSED, BAD. */
static enum outcome expect(int opcode, const void *want, size_t len)
{
    enum outcome got = ws_recv();
    if (got != OK)
        return got;
    if (msg_opcode == EDDY_WS_OPCODE_TEXT && msg_len == 1 && msg[0] == 'E')
        return ERR;
    return msg_opcode == opcode && msg_len == len && memcmp(msg, want, len) == 0 ? OK : BAD;
}

static enum outcome expect_text(const char *want)
{
    return expect(EDDY_WS_OPCODE_TEXT, want, strlen(want));
}

/* The upgrade: OK (pmd says whether compression was agreed), ERR for a 5xx, CLOSED, BAD. */
static enum outcome ws_open(int port)
{
    static const char upgrade[] =
        "GET /ws HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";
    ws_fd = dial(port);
    if (ws_fd < 0 || !send_all(ws_fd, upgrade, sizeof(upgrade) - 1))
        return CLOSED;
    long deadline = now_ms() + STEP_MS;
    char *end;
    for (;;) {
        in[in_len] = '\0';
        if ((end = strstr((char *)in, "\r\n\r\n")) != NULL)
            break;
        if (read_more(ws_fd, deadline) <= 0)
            return CLOSED;
    }
    int status = atoi((char *)in + 9);
    *end = '\0';
    pmd = strcasestr((char *)in, "permessage-deflate") != NULL;
    bool accepted = strstr((char *)in, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") != NULL;
    consume((size_t)(end + 4 - (char *)in));
    if (status >= 500)
        return ERR;
    return status == 101 && accepted ? OK : BAD;
}

static int outcomes[4];

/* Checks a step's outcome, naming the step while it runs. */
#define STEP(name, got) (step = (name), check(name, got))

/* Records a step's outcome; false if the connection is gone (or the step went wrong). */
static bool check(const char *name, enum outcome got)
{
    step = name;
    outcomes[got]++;
    if (got == BAD)
        fail("wrong answer");
    return got == OK || got == ERR;
}

static void script(int port, int tls_port)
{
    step = "http";
    STEP("GET /", http(port, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", "hello"));
    STEP("POST /echo",
         http(port, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nbody", "body"));
    STEP("GET /chunked", http(port, "GET /chunked HTTP/1.1\r\nHost: t\r\n\r\n", "abcdef"));
    STEP("GET /later", http(port, "GET /later HTTP/1.1\r\nHost: t\r\n\r\n", "later"));

    STEP("GET / over TLS", https(tls_port));

    step = "upgrade";
    enum outcome opened = ws_open(port);
    if (STEP("upgrade", opened) && opened == OK) {
        inflateInit2(&inflater, -15);
        static unsigned char big[BIG_LEN];
        for (size_t i = 0; i < sizeof(big); i++)
            big[i] = (unsigned char)(i * 7 + i / 251);
        ws_send(EDDY_WS_OPCODE_TEXT, EDDY_WS_FLAG_FIN, "hello", 5);
        bool up = STEP("text", expect_text("hello"));
        if (up) {
            ws_send(EDDY_WS_OPCODE_BINARY, EDDY_WS_FLAG_FIN, big, 3000);
            up = STEP("binary", expect(EDDY_WS_OPCODE_BINARY, big, 3000));
        }
        if (up) {
            ws_send(EDDY_WS_OPCODE_TEXT, 0, "frag-", 5);
            ws_send(EDDY_WS_OPCODE_CONTINUATION, 0, "ment-", 5);
            ws_send(EDDY_WS_OPCODE_CONTINUATION, EDDY_WS_FLAG_FIN, "ed", 2);
            up = STEP("fragmented", expect_text("frag-ment-ed"));
        }
        if (up) {
            ws_send(EDDY_WS_OPCODE_BINARY, EDDY_WS_FLAG_FIN, big, sizeof(big));
            up = STEP("big", expect(EDDY_WS_OPCODE_BINARY, big, sizeof(big)));
        }
        if (up && pmd) {
            ws_send_compressed(EDDY_WS_OPCODE_TEXT, "squeeze squeeze squeeze squeeze");
            up = STEP("compressed", expect_text("squeeze squeeze squeeze squeeze"));
        }
        if (up) {
            ws_send(EDDY_WS_OPCODE_PING, EDDY_WS_FLAG_FIN, "p1", 2);
            up = STEP("ping", expect(EDDY_WS_OPCODE_PONG, "p1", 2));
        }
        bool subscribed = false;
        if (up) {
            ws_send(EDDY_WS_OPCODE_TEXT, EDDY_WS_FLAG_FIN, "sub", 3);
            enum outcome got = expect_text("ok sub");
            up = STEP("subscribe", got);
            subscribed = got == OK;
        }
        if (up && subscribed) {
            ws_send(EDDY_WS_OPCODE_TEXT, EDDY_WS_FLAG_FIN, "pub", 3);
            enum outcome got = expect_text("news news news news");
            up = STEP("publication", got);
            if (up && got == OK)
                up = STEP("publish", expect_text("ok pub 1"));
        }
        /* The API from another thread (this one, not exempt meanwhile): an accepted call
         * is carried out, a refused one is EDDY_ENOMEM. */
        eddy_fd_t fd = atomic_load(&opened_fd);
        if (up) {
            alloc_fail_exempt_thread(false);
            int rc = eddy_push(test_server, fd, "pushed", 6, EDDY_WS_OPCODE_TEXT, EDDY_WS_FLAG_FIN);
            alloc_fail_exempt_thread(true);
            up = STEP("push from a thread", rc == EDDY_ENOMEM ? ERR
                                            : rc == 0         ? expect_text("pushed")
                                                              : BAD);
        }
        if (up && subscribed) {
            alloc_fail_exempt_thread(false);
            int rc = eddy_publish(test_server, "room", "news news news news", 19,
                                  EDDY_WS_OPCODE_TEXT, EDDY_WS_FLAG_COMPRESS);
            alloc_fail_exempt_thread(true);
            up = STEP("publish from a thread", rc == EDDY_ENOMEM ? ERR
                                               : rc == 1 ? expect_text("news news news news")
                                                         : BAD);
        }
        if (up) {
            alloc_fail_exempt_thread(false);
            int rc = eddy_defer(test_server, deferred, (void *)(uintptr_t)fd);
            alloc_fail_exempt_thread(true);
            up = STEP("defer from a thread", rc == EDDY_ENOMEM ? ERR
                                             : rc == 0         ? expect_text("ok deferred")
                                                               : BAD);
        }
        if (up) {
            ws_send(EDDY_WS_OPCODE_TEXT, EDDY_WS_FLAG_FIN, "unsub", 5);
            up = STEP("unsubscribe", expect_text("ok unsub"));
        }
        if (up) {
            ws_send(EDDY_WS_OPCODE_TEXT, EDDY_WS_FLAG_FIN, "pub", 3);
            up = STEP("publish to none", expect_text("ok pub 0"));
        }
        if (up) {
            ws_send(EDDY_WS_OPCODE_TEXT, EDDY_WS_FLAG_FIN, "timer", 5);
            up = STEP("timer", expect_text("ok timer"));
        }
        if (up) {
            ws_send(EDDY_WS_OPCODE_TEXT, EDDY_WS_FLAG_FIN, "task", 4);
            up = STEP("task", expect_text("ok task"));
        }
        if (up) {
            ws_send(EDDY_WS_OPCODE_CLOSE, EDDY_WS_FLAG_FIN, "\x03\xe8", 2);
            step = "close";
            enum outcome got = ws_recv();
            if (got != CLOSED)
                fail("no close frame");
        }
        inflateEnd(&inflater);
    }
    if (ws_fd >= 0)
        close(ws_fd);
    ws_fd = -1;
}

/* ---- the sweep ---- */

static void *sites[MAX_SITES];
static size_t site_count;
static long allocations; /* counted in the last run */

static void note_site(void *site)
{
    for (size_t i = 0; i < site_count; i++)
        if (sites[i] == site)
            return;
    if (site_count < MAX_SITES)
        sites[site_count++] = site;
}

/* One run with the n-th allocation failing; true if it failed one. */
static bool run(int n, bool verbose)
{
    run_n = n;
    hung = false;
    atomic_store(&test_started, false);
    /* Setting the server up is under injection too: it fails cleanly or not at all. */
    alloc_fail_arm_process(n);
    alloc_fail_exempt_thread(false);
    step = "setup";
    test_server = eddy_server_new("127.0.0.1", 0);
    const char *const settings[][2] = {
        {"log_level", "none"},        {"worker_num", workers},
        {"task_worker_num", "1"},     {"websocket_compression", "true"},
        {"ssl_cert_file", cert_file}, {"ssl_key_file", key_file}};
    int set_rc = test_server != NULL ? 0 : EDDY_ENOMEM;
    for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]) && set_rc == 0; i++)
        set_rc = eddy_server_set(test_server, settings[i][0], settings[i][1]);
    if (set_rc == 0) {
        int index = eddy_server_add_listener(test_server, "127.0.0.1", 0, EDDY_LISTEN_TLS);
        set_rc = index < 0 ? index : 0;
    }
    alloc_fail_exempt_thread(true);
    if (set_rc != 0) {
        void *site;
        allocations = alloc_fail_disarm_process(&site);
        if (set_rc != EDDY_ENOMEM || site == NULL)
            fail("setting up failed other than by a failed allocation");
        eddy_server_free(test_server);
        note_site(site);
        return true;
    }
    eddy_on_start(test_server, test_mark_started);
    eddy_on_message(test_server, on_message);
    eddy_on_request(test_server, on_request);
    eddy_on_open(test_server, on_open);

    int start_rc = 0;
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, test_run_server, &start_rc) == 0);
    long deadline = now_ms() + STOP_MS;
    bool exited = false;
    while (!atomic_load(&test_started) && now_ms() < deadline) {
        if (pthread_tryjoin_np(thread, NULL) == 0) {
            exited = true; /* eddy_server_start() failed */
            break;
        }
        usleep(1000);
    }
    if (!exited && atomic_load(&test_started))
        script(eddy_server_port(test_server), eddy_server_listener_port(test_server, 1));
    if (!exited) {
        eddy_server_stop(test_server);
        struct timespec stop_deadline;
        clock_gettime(CLOCK_REALTIME, &stop_deadline);
        stop_deadline.tv_sec += STOP_MS / 1000;
        if (pthread_timedjoin_np(thread, NULL, &stop_deadline) != 0) {
            fprintf(stderr, "allocation %d: the server did not stop\n", n);
            abort();
        }
    }
    void *site;
    allocations = alloc_fail_disarm_process(&site);
    step = "start";
    if (start_rc != 0 && start_rc != EDDY_ENOMEM)
        fail("eddy_server_start() failed, not with EDDY_ENOMEM");
    if (start_rc != 0 && site == NULL)
        fail("eddy_server_start() failed without a failed allocation");
    eddy_server_free(test_server);
    test_server = NULL;
    if (site != NULL)
        note_site(site);
    if (verbose || hung) {
        Dl_info info;
        ptrdiff_t offset =
            site != NULL && dladdr(site, &info) != 0 ? (char *)site - (char *)info.dli_fbase : 0;
        fprintf(stderr, "%s loops, allocation %d: site 0x%tx, start %d\n", workers, n, offset,
                start_rc);
    }
    return site != NULL;
}

int main(void)
{
    alloc_fail_exempt_thread(true);
    const char *stride_env = getenv("EDDY_OOM_STRIDE");
    const char *verbose_env = getenv("EDDY_OOM_VERBOSE");
    const char *from_env = getenv("EDDY_OOM_FROM");
    int stride = stride_env != NULL && atoi(stride_env) > 0 ? atoi(stride_env) : 1;
    int from = from_env != NULL && atoi(from_env) > 0 ? atoi(from_env) : 1;
    bool verbose = verbose_env != NULL && *verbose_env == '1';
    CHECK(make_certificate());
    signal(SIGPIPE, SIG_IGN); /* SSL_write() to a connection the server dropped */
    /* One loop, then two: loop 0 hands connections to loop 1. */
    static const char *const sweeps[] = {"1", "2"};
    for (size_t i = 0; i < sizeof(sweeps) / sizeof(sweeps[0]); i++) {
        workers = sweeps[i];
        long started = now_ms();
        int n = from, runs = 0;
        memset(outcomes, 0, sizeof(outcomes));
        while (n < MAX_RUNS && run(n, verbose)) {
            runs++;
            n += stride;
        }
        CHECK(n < MAX_RUNS);
        printf("test_oom_session, %s loops: %d runs (stride %d), %zu distinct allocation sites "
               "failed so far; the run without a failure made %ld allocations; steps: %d ok, "
               "%d error replies, %d closes; %.1f s\n",
               workers, runs, stride, site_count, allocations, outcomes[OK], outcomes[ERR],
               outcomes[CLOSED], (double)(now_ms() - started) / 1000);
    }
    unlink(cert_file);
    unlink(key_file);
    SSL_CTX_free(client_tls);
    return test_report("test_oom_session");
}

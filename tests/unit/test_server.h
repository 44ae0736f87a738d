/* SPDX-License-Identifier: MIT */
/*
 * For unit tests that run a server on a thread of its own and drive it from others: the
 * server (on 127.0.0.1, an ephemeral port), a message callback that ignores messages, a
 * start callback that raises test_started, the thread's body, a bounded wait for the start,
 * a plain HTTP request to the server, and a minimal WebSocket client (upgrade, small text
 * frames). Their sends never raise SIGPIPE: a server out of memory (tests/unit/oom_sweep.sh)
 * may drop the connection. Include after test.h.
 */
#ifndef EDDY_TEST_SERVER_H
#define EDDY_TEST_SERVER_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "eddy.h"

static eddy_server_t *test_server;
static atomic_bool test_started;  /* the server runs: other threads may call the API */
static atomic_bool test_returned; /* eddy_server_start() returned */

static void test_ignore_message(eddy_server_t *srv, const eddy_frame_t *frame, void *user_data)
{
    (void)srv;
    (void)frame;
    (void)user_data;
}

static void test_mark_started(eddy_server_t *srv, void *user_data)
{
    (void)srv;
    (void)user_data;
    atomic_store(&test_started, true);
}

/* Creates test_server logging at log_level, with the callbacks above; false (with a failed
 * check recorded) if it cannot. */
static inline bool test_server_new(const char *log_level)
{
    test_server = eddy_server_new("127.0.0.1", 0);
    CHECK(test_server != NULL);
    if (test_server == NULL)
        return false;
    CHECK_EQ_INT(eddy_server_set(test_server, "log_level", log_level), 0);
    eddy_on_message(test_server, test_ignore_message);
    eddy_on_start(test_server, test_mark_started);
    return true;
}

/* Thread body: runs test_server until it stops; *(int *)rc gets what eddy_server_start()
 * returned, to be checked after the join (CHECK is not thread-safe). */
static inline void *test_run_server(void *rc)
{
    *(int *)rc = eddy_server_start(test_server);
    atomic_store(&test_returned, true);
    return NULL;
}

/* Runs test_server on a new thread (*thread) and waits up to 5 s until it runs or until
 * eddy_server_start() returned early (out of memory, under tests/unit/oom_sweep.sh); a failed
 * check if neither came. The caller still stops and joins the server thread. */
static inline void test_start_server(pthread_t *thread, int *rc)
{
    atomic_store(&test_started, false);
    atomic_store(&test_returned, false);
    pthread_create(thread, NULL, test_run_server, rc);
    for (int waited_ms = 0;
         waited_ms < 5000 && !atomic_load(&test_started) && !atomic_load(&test_returned);
         waited_ms++) {
        struct timespec ms = {.tv_nsec = 1000000L};
        nanosleep(&ms, NULL);
    }
    CHECK(atomic_load(&test_started) || atomic_load(&test_returned));
}

/* A blocking TCP connection to 127.0.0.1:port, or -1. */
static inline int test_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Sends a plain HTTP request on a new connection to 127.0.0.1:port: true if an HTTP/1.1
 * response began within 2 s. */
static inline bool test_http_answered(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval timeout = {.tv_sec = 2};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    static const char request[] = "GET / HTTP/1.1\r\nHost: test\r\n\r\n";
    char reply[16] = "";
    bool ok =
        connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0 &&
        send(fd, request, sizeof(request) - 1, MSG_NOSIGNAL) == (ssize_t)sizeof(request) - 1 &&
        recv(fd, reply, sizeof(reply) - 1, MSG_WAITALL) > 0 && strncmp(reply, "HTTP/1.1 ", 9) == 0;
    close(fd);
    return ok;
}

/* test_connect() with a 5 s receive timeout, or -1. */
static inline int test_connect_timed(int port)
{
    int fd = test_connect(port);
    struct timeval timeout = {.tv_sec = 5};
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    return fd;
}

/* Sends an upgrade request for path; returns the status of the answer (0 if none). */
static inline int test_ws_upgrade(int fd, const char *path)
{
    char req[256];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     path);
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n)
        return 0;
    char head[1024];
    size_t got = 0;
    while (got < sizeof(head) - 1) { /* byte by byte: nothing after the head is taken */
        if (recv(fd, head + got, 1, 0) != 1)
            return 0;
        got++;
        head[got] = '\0';
        if (got >= 4 && memcmp(head + got - 4, "\r\n\r\n", 4) == 0)
            break;
    }
    return strncmp(head, "HTTP/1.1 ", 9) == 0 ? atoi(head + 9) : 0;
}

/* A masked text frame (payload under 126 bytes; zero mask). */
static inline bool test_ws_send_text(int fd, const char *text)
{
    unsigned char frame[136] = {0x81, (unsigned char)(0x80 | strlen(text)), 0, 0, 0, 0};
    memcpy(frame + 6, text, strlen(text));
    size_t len = 6 + strlen(text);
    return send(fd, frame, len, MSG_NOSIGNAL) == (ssize_t)len;
}

/* Reads one unmasked frame with a payload under 126 bytes into out; its length or -1. */
static inline int test_ws_recv_small(int fd, char *out)
{
    unsigned char head[2];
    if (recv(fd, head, 2, MSG_WAITALL) != 2 || (head[1] & 0x7f) >= 126)
        return -1;
    int len = head[1] & 0x7f;
    if (len > 0 && recv(fd, out, (size_t)len, MSG_WAITALL) != len)
        return -1;
    return len;
}

#endif

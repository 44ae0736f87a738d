/* SPDX-License-Identifier: MIT */
/*
 * A raw Engine.IO 4 client for the real-time layer's unit tests (test_rt_model,
 * test_rt_upgrade): the WebSocket handshake on /socket.io/, masked text frames out, text
 * messages in, and a response head reader for the long-polling requests. Blocking, with a
 * deadline on every read; loopback only. Needs test_server.h (test_connect) before it.
 */
#ifndef EDDY_TEST_EIO_CLIENT_H
#define EDDY_TEST_EIO_CLIENT_H

#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Reads exactly len bytes, or false when none came within timeout_ms (or the peer left). */
static inline bool eio_recv_all(int fd, void *buf, size_t len, int timeout_ms)
{
    for (size_t got = 0; got < len;) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, timeout_ms) != 1)
            return false;
        ssize_t n = recv(fd, (char *)buf + got, len - got, 0);
        if (n <= 0)
            return false;
        got += (size_t)n;
    }
    return true;
}

/* Reads a response head (byte by byte: nothing after it is consumed) into head. */
static inline bool eio_read_head(int fd, char *head, size_t cap, int timeout_ms)
{
    size_t n = 0;
    while (n + 1 < cap && (n < 4 || memcmp(head + n - 4, "\r\n\r\n", 4) != 0)) {
        if (!eio_recv_all(fd, head + n, 1, timeout_ms))
            return false;
        n++;
    }
    head[n] = '\0';
    return n >= 4 && memcmp(head + n - 4, "\r\n\r\n", 4) == 0;
}

/* Opens a WebSocket to /socket.io/ (Engine.IO 4; with sid, the upgrade of that session):
 * the connected fd once the 101 came, or -1. */
static inline int eio_ws_connect(int port, const char *sid)
{
    int fd = test_connect(port);
    if (fd < 0)
        return -1;
    char req[512];
    int n = snprintf(req, sizeof(req),
                     "GET /socket.io/?EIO=4&transport=websocket%s%s HTTP/1.1\r\nHost: test\r\n"
                     "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     sid ? "&sid=" : "", sid ? sid : "");
    send(fd, req, (size_t)n, MSG_NOSIGNAL);
    char head[1024];
    if (!eio_read_head(fd, head, sizeof(head), 2000) || strncmp(head, "HTTP/1.1 101", 12) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Sends text (under 126 bytes) as one masked text frame. */
static inline void eio_ws_send(int fd, const char *text)
{
    size_t len = strlen(text);
    unsigned char frame[6 + 125] = {0x81, (unsigned char)(0x80 | len), 1, 2, 3, 4};
    if (len > 125)
        return;
    for (size_t i = 0; i < len; i++)
        frame[6 + i] = (unsigned char)text[i] ^ frame[2 + i % 4];
    send(fd, frame, 6 + len, MSG_NOSIGNAL);
}

/* The next text message (NUL-terminated into out), or false after timeout_ms. */
static inline bool eio_ws_recv(int fd, char *out, size_t cap, int timeout_ms)
{
    unsigned char h[2];
    if (!eio_recv_all(fd, h, 2, timeout_ms))
        return false;
    size_t len = h[1] & 0x7f;
    if (len == 126) {
        unsigned char ext[2];
        if (!eio_recv_all(fd, ext, 2, timeout_ms))
            return false;
        len = (size_t)ext[0] << 8 | ext[1];
    }
    if (len + 1 > cap || !eio_recv_all(fd, out, len, timeout_ms))
        return false;
    out[len] = '\0';
    return true;
}

#endif

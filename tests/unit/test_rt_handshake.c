/* SPDX-License-Identifier: MIT */
/*
 * The handshake a socket keeps (eddy_rt_socket_query(), _header(), _remote_ip()): query
 * parameters percent-decoded, names without a value, repeated names, headers by any case
 * (common names are kept as a one-byte code: a query name decoded to such a byte is still
 * a name), the remote address. The query of the regression has many items without '=' ("a&b&c"),
 * each of which decodes to two NULs: the copy once reserved one byte per item too few, and
 * wrote past its allocation (AddressSanitizer builds abort on it).
 *
 * query_of_empty_parameters: a query of many empty parameters ("&&&...") makes the copy
 * (rt/rt.c client_new()) two bytes per '&' ("\0\0" each) where its text has one; the copy
 * was sized for the text plus two bytes, so it ran past its allocation by about one byte
 * per parameter (a short run went unseen: the headers after the query were written with
 * stpcpy, which ASan does not check, and corrupted the allocator's next chunk;
 * fuzz_eio_polling stopped on kAllocBegMagic twice). Here the overrun is thousands of
 * bytes: ASan reports it in the query loop, and without ASan glibc aborts on the heap it
 * corrupted.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "test.h"
#include "test_rt_server.h"

#include "eddy_rt.h"
#include "eio_client.h"

#define EMPTY_PARAMS 4000

static atomic_bool connected;
static char seen[512];
/* What query_of_empty_parameters looks up. */
static char seen_x[64], seen_q[64], seen_host[64], seen_version[64];

/* What on_connect looks up: query parameters, then headers. */
static const char *const queries[] = {"EIO", "a", "c", "x", "X", "missing", "\x01"};
static const char *const headers[] = {"x-test", "HOST",       "Sec-WebSocket-Version",
                                      "origin", "connection", "host-x"};

static void add_seen(const char *what, const char *value)
{
    size_t n = strlen(seen);
    snprintf(seen + n, sizeof(seen) - n, "%s=%s;", what[0] == 1 ? "\\x01" : what,
             value != NULL ? value : "(null)");
}

static void copy_seen(char *out, const char *value)
{
    snprintf(out, 64, "%s", value != NULL ? value : "(null)");
}

static int on_connect(eddy_rt_socket_t *s, void *user_data)
{
    seen[0] = '\0';
    for (size_t i = 0; i < sizeof(queries) / sizeof(queries[0]); i++)
        add_seen(queries[i], eddy_rt_socket_query(s, queries[i]));
    for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++)
        add_seen(headers[i], eddy_rt_socket_header(s, headers[i]));
    add_seen("ip", eddy_rt_socket_remote_ip(s));
    copy_seen(seen_x, eddy_rt_socket_query(s, "x"));
    copy_seen(seen_q, eddy_rt_socket_query(s, "q"));
    copy_seen(seen_host, eddy_rt_socket_header(s, "host"));
    copy_seen(seen_version, eddy_rt_socket_header(s, "Sec-WebSocket-Version"));
    atomic_store(&connected, true);
    return 0;
}

static void query_and_headers(int port)
{
    atomic_store(&connected, false);
    int fd = test_connect(port);
    CHECK(fd >= 0);
    static const char req[] =
        "GET /socket.io/?EIO=4&transport=websocket&a&b&c&&&&&&&&x=%41+b%2&x=2&d&e&f&g&h&%01=ctl "
        "HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        "X-Test: yes\r\nOrigin: http://example.test\r\nHost-X: y\r\n\r\n";
    send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL);
    char buf[1024];
    CHECK(eio_read_head(fd, buf, sizeof(buf), 2000) && strncmp(buf, "HTTP/1.1 101", 12) == 0);
    CHECK(eio_ws_recv(fd, buf, sizeof(buf), 2000) && buf[0] == '0'); /* open */
    eio_ws_send(fd, "40");
    CHECK(eio_ws_recv(fd, buf, sizeof(buf), 2000) && strncmp(buf, "40{\"sid\":", 9) == 0);
    CHECK(atomic_load(&connected));
    CHECK_STR(seen, "EIO=4;a=;c=;x=A b%2;X=(null);missing=(null);\\x01=ctl;x-test=yes;HOST=test;"
                    "Sec-WebSocket-Version=13;origin=http://example.test;connection=Upgrade;"
                    "host-x=y;ip=127.0.0.1;");
    close(fd);
}

/* Opens a WebSocket session whose query has EMPTY_PARAMS empty parameters between
 * x=a%20b and q, and connects to "/": the fd, or -1. */
static int connect_with_empty_params(int port)
{
    static char req[EMPTY_PARAMS + 512];
    int n = snprintf(req, sizeof(req), "GET /socket.io/?EIO=4&transport=websocket&x=a%%20b");
    memset(req + n, '&', EMPTY_PARAMS);
    n += EMPTY_PARAMS;
    n += snprintf(req + n, sizeof(req) - (size_t)n,
                  "q HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n");
    int fd = test_connect(port);
    if (fd < 0)
        return -1;
    char head[1024], buf[1024];
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n ||
        !eio_read_head(fd, head, sizeof(head), 2000) || strncmp(head, "HTTP/1.1 101", 12) != 0 ||
        !eio_ws_recv(fd, buf, sizeof(buf), 2000) || buf[0] != '0') {
        close(fd);
        return -1;
    }
    eio_ws_send(fd, "40");
    if (!eio_ws_recv(fd, buf, sizeof(buf), 2000) || strncmp(buf, "40{", 3) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void query_of_empty_parameters(int port)
{
    atomic_store(&connected, false);
    int fd = connect_with_empty_params(port);
    CHECK(fd >= 0);
    CHECK(atomic_load(&connected)); /* the handler ran before the CONNECT was answered */
    CHECK_STR(seen_x, "a b");
    CHECK_STR(seen_q, "");
    CHECK_STR(seen_host, "test");
    CHECK_STR(seen_version, "13");
    if (fd >= 0)
        close(fd);
}

int main(void)
{
    if (!test_server_new("warning"))
        return test_report("test_rt_handshake");
    eddy_rt_t *rt = eddy_rt_new(test_server, NULL);
    CHECK(rt != NULL);
    if (rt == NULL) {
        eddy_server_free(test_server);
        return test_report("test_rt_handshake");
    }
    eddy_rt_handlers_t h = {.connect = on_connect};
    eddy_rt_nsp_set_handlers(eddy_rt_of(rt, "/"), &h);
    int port = rt_test_start(rt);

    query_and_headers(port);
    query_of_empty_parameters(port);

    rt_test_stop(rt);
    return test_report("test_rt_handshake");
}

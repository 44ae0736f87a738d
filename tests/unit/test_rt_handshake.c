/* SPDX-License-Identifier: MIT */
/*
 * The handshake a socket keeps (eddy_rt_socket_query(), _header(), _remote_ip()): query
 * parameters percent-decoded, names without a value, repeated names, headers by any case
 * (common names are kept as a one-byte code: a query name decoded to such a byte is still
 * a name), the remote address. The query of the regression has many items without '=' ("a&b&c"),
 * each of which decodes to two NULs: the copy once reserved one byte per item too few, and
 * wrote past its allocation (AddressSanitizer builds abort on it).
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "test.h"
#include "test_rt_server.h"

#include "eddy_rt.h"
#include "eio_client.h"

static atomic_bool connected;
static char seen[512];

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

static int on_connect(eddy_rt_socket_t *s, void *user_data)
{
    seen[0] = '\0';
    for (size_t i = 0; i < sizeof(queries) / sizeof(queries[0]); i++)
        add_seen(queries[i], eddy_rt_socket_query(s, queries[i]));
    for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++)
        add_seen(headers[i], eddy_rt_socket_header(s, headers[i]));
    add_seen("ip", eddy_rt_socket_remote_ip(s));
    atomic_store(&connected, true);
    return 0;
}

int main(void)
{
    if (!test_server_new("warning"))
        return test_report("test_rt_handshake");
    eddy_rt_t *rt = eddy_rt_new(test_server, NULL);
    CHECK(rt != NULL);
    eddy_rt_handlers_t h = {.connect = on_connect};
    eddy_rt_nsp_set_handlers(eddy_rt_of(rt, "/"), &h);
    int port = rt_test_start(rt);

    int fd = test_connect(port);
    CHECK(fd >= 0);
    static const char req[] =
        "GET /socket.io/?EIO=4&transport=websocket&a&b&c&&&&&&&&x=%41+b%2&x=2&d&e&f&g&h&%01=ctl "
        "HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        "X-Test: yes\r\nOrigin: http://example.test\r\nHost-X: y\r\n\r\n";
    send(fd, req, sizeof(req) - 1, 0);
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

    rt_test_stop(rt);
    return test_report("test_rt_handshake");
}

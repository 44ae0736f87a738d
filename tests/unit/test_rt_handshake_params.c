/* SPDX-License-Identifier: MIT */
/*
 * The handshake the real-time layer keeps for each client (rt/rt.c client_new()), read
 * back through eddy_rt_socket_query() and eddy_rt_socket_header() on a running server.
 *
 * query_of_empty_parameters: a query of many empty parameters ("&&&...") makes the copy
 * two bytes per '&' ("\0\0" each) where its text has one; the copy was sized for the text
 * plus two bytes, so it ran past its allocation by about one byte per parameter (a short
 * run went unseen: the headers after the query were written with stpcpy, which ASan does
 * not check, and corrupted the allocator's next chunk; fuzz_eio_polling stopped on
 * kAllocBegMagic twice). Here the overrun is thousands of bytes: ASan reports it in the
 * query loop, and without ASan glibc aborts on the heap it corrupted.
 */
#include <stdio.h>
#include <stdlib.h>

#include "test.h"
#include "test_rt_server.h"

#include "eddy_rt.h"
#include "eio_client.h"

#define EMPTY_PARAMS 4000

/* What the connect handler read, for the main thread once seen is set. */
static char seen_x[64], seen_q[64], seen_host[64], seen_version[64];
static atomic_int seen;

static void copy_seen(char *out, const char *value)
{
    snprintf(out, 64, "%s", value != NULL ? value : "(null)");
}

static int on_connect(eddy_rt_socket_t *s, void *user_data)
{
    copy_seen(seen_x, eddy_rt_socket_query(s, "x"));
    copy_seen(seen_q, eddy_rt_socket_query(s, "q"));
    copy_seen(seen_host, eddy_rt_socket_header(s, "host"));
    copy_seen(seen_version, eddy_rt_socket_header(s, "Sec-WebSocket-Version"));
    atomic_store(&seen, 1);
    return 0;
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
    if (send(fd, req, (size_t)n, 0) != n || !eio_read_head(fd, head, sizeof(head), 2000) ||
        strncmp(head, "HTTP/1.1 101", 12) != 0 || !eio_ws_recv(fd, buf, sizeof(buf), 2000) ||
        buf[0] != '0') {
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

int main(void)
{
    if (!test_server_new("warning"))
        return test_report("test_rt_handshake_params");
    eddy_rt_t *rt = eddy_rt_new(test_server, NULL);
    CHECK(rt != NULL);
    eddy_rt_nsp_set_handlers(eddy_rt_of(rt, "/"), &(eddy_rt_handlers_t){.connect = on_connect});
    rt_test_start(rt);

    int fd = connect_with_empty_params(eddy_server_port(test_server));
    CHECK(fd >= 0);
    CHECK(atomic_load(&seen) == 1); /* the handler ran before the CONNECT was answered */
    CHECK_STR(seen_x, "a b");
    CHECK_STR(seen_q, "");
    CHECK_STR(seen_host, "test");
    CHECK_STR(seen_version, "13");
    if (fd >= 0)
        close(fd);

    rt_test_stop(rt);
    return test_report("test_rt_handshake_params");
}

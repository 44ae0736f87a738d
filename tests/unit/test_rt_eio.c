/* SPDX-License-Identifier: MIT */
/*
 * rt/eio teardown: eio_server_free() may come before or after eddy_server_free(). A
 * long-polling session outlives the stopped server (it has no connection the stop could
 * close), and work naming it may still be posted to the stopped loops, which
 * eddy_server_free() runs: in either order the session gets exactly one close handler call
 * and nothing is used after it is freed (ASan) or leaked.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "eddy.h"
#include "eio.h"
#include "eio_internal.h"
#include "test.h"
#include "test_server.h"

static eio_server_t *engine;
static eio_session_t *opened;
static int closes;
static char close_reason[32];
static int start_rc;

static int on_open(eio_session_t *s, eddy_request_t *req, void *ud)
{
    opened = s; /* read by the test thread after the server stopped (joined) */
    return 0;
}

static void on_eio_message(eio_session_t *s, const void *data, size_t len, bool binary, void *ud)
{
}

static void on_eio_close(eio_session_t *s, const char *reason, void *ud)
{
    closes++;
    snprintf(close_reason, sizeof(close_reason), "%s", reason);
}

static void on_request(eddy_server_t *srv, eddy_request_t *req, eddy_response_t *resp, void *ud)
{
    if (!eio_handle_request(engine, req, resp))
        eddy_response_end(resp, NULL, 0);
}

static void on_close(eddy_server_t *srv, eddy_fd_t fd, void *ud)
{
    eio_handle_close(engine, fd);
}

/* A long-polling handshake on a connection of its own: true if answered 200. */
static bool polling_handshake(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval timeout = {.tv_sec = 2};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    static const char request[] = "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\n"
                                  "Host: test\r\nConnection: close\r\n\r\n";
    char reply[512] = "";
    size_t got = 0;
    bool ok = connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0 &&
              send(fd, request, sizeof(request) - 1, 0) == (ssize_t)sizeof(request) - 1;
    for (ssize_t n; ok && got < sizeof(reply) - 1 &&
                    (n = recv(fd, reply + got, sizeof(reply) - 1 - got, 0)) > 0;)
        got += (size_t)n;
    close(fd);
    return strncmp(reply, "HTTP/1.1 200", 12) == 0 && strstr(reply, "0{\"sid\":\"") != NULL;
}

/* Runs a server with one long-polling session, stops it, then posts a close of the session
 * to the stopped loops, and frees in the given order. */
static void run(bool engine_first)
{
    opened = NULL;
    closes = 0;
    close_reason[0] = '\0';
    if (!test_server_new("warning"))
        return;
    eddy_on_request(test_server, on_request);
    eddy_on_close(test_server, on_close);
    eddy_on_disconnect(test_server, on_close);
    eio_handlers_t handlers = {.open = on_open, .message = on_eio_message, .close = on_eio_close};
    engine = eio_server_new(test_server, NULL, &handlers, NULL);
    CHECK(engine != NULL);
    if (engine == NULL) {
        eddy_server_free(test_server);
        return;
    }
    pthread_t loop_thread;
    test_start_server(&loop_thread, &start_rc);
    CHECK(polling_handshake(eddy_server_port(test_server)));
    eddy_server_stop(test_server);
    pthread_join(loop_thread, NULL);
    CHECK_EQ_INT(start_rc, 0);
    CHECK(opened != NULL);
    CHECK_EQ_INT(closes, 0);
    /* closes 1: the handshake's answer failed (out of memory), the session is gone. */
    if (opened != NULL && closes == 0) {
        /* What eio_close() of a WebSocket session posts; no loop runs to take it. */
        rt_lock(&opened->lock);
        eio__session_finish_later(opened, 0, "forced close");
        rt_unlock(&opened->lock);
    }
    if (engine_first) {
        eio_server_free(engine);
        CHECK_EQ_INT(closes, 1);
        CHECK_STR(close_reason, "server shutting down");
        eddy_server_free(test_server); /* runs the posted close: no handler, frees */
        CHECK_EQ_INT(closes, 1);
    } else {
        eddy_server_free(test_server); /* runs the posted close */
        CHECK_EQ_INT(closes, 1);
        CHECK_STR(close_reason, "forced close");
        eio_server_free(engine);
        CHECK_EQ_INT(closes, 1);
    }
}

int main(void)
{
    run(true);
    run(false);
    return test_report("test_rt_eio");
}

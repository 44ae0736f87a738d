/* SPDX-License-Identifier: MIT */
/*
 * Handing a listening socket from one server to another (eddy_server_listener_fd(),
 * eddy_server_add_listener_fd()): a connection that waited in the backlog while no server
 * ran is served by the adopting one, the old server's stop leaves the shared socket open,
 * and the descriptor's ownership follows the documentation.
 */
#include "test.h"
#include "test_server.h"

#include <errno.h>
#include <fcntl.h>

static int listening_socket(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    int one = 1; /* as eddy's own: the last start rebinds while connections linger */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(fd, 16) != 0 ||
        getsockname(fd, (struct sockaddr *)&addr, &len) != 0) {
        close(fd);
        return -1;
    }
    *port = ntohs(addr.sin_port);
    return fd;
}

/* 200 on a connection kept alive (without a request event the answer is a 400 that closes). */
static void on_request(eddy_server_t *srv, eddy_request_t *req, eddy_response_t *resp,
                       void *user_data)
{
    (void)srv;
    (void)req;
    (void)user_data;
    eddy_response_end(resp, "ok\n", 3);
}

static bool fd_open(int fd)
{
    return fcntl(fd, F_GETFD) >= 0 || errno != EBADF;
}

int main(void)
{
    /* Refused: not a listening socket. */
    eddy_server_t *srv = eddy_server_new(NULL, 0);
    int plain = socket(AF_INET, SOCK_STREAM, 0);
    CHECK_EQ_INT(eddy_server_add_listener_fd(srv, plain, 0), EDDY_EINVAL);
    CHECK_EQ_INT(eddy_server_add_listener_fd(srv, -1, 0), EDDY_EINVAL);
    CHECK(fd_open(plain)); /* still the caller's */
    close(plain);
    /* Adopted and never started: eddy_server_free() closes it. */
    int port = 0, unused = listening_socket(&port);
    CHECK_EQ_INT(eddy_server_add_listener_fd(srv, unused, 0), 0);
    eddy_server_free(srv);
    CHECK(!fd_open(unused));

    /* The first server runs on a socket made here; a client connects before it starts
     * and waits in the backlog. */
    int shared = listening_socket(&port);
    int early = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_EQ_INT(connect(early, (struct sockaddr *)&addr, sizeof(addr)), 0);
    static const char request[] = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";
    CHECK_EQ_INT(send(early, request, sizeof(request) - 1, 0), (int)sizeof(request) - 1);

    test_server = eddy_server_new(NULL, 0); /* no listener of its own */
    eddy_server_set(test_server, "log_level", "error");
    eddy_server_set(test_server, "worker_num", "2");
    eddy_server_set(test_server, "enable_reuse_port", "true");
    eddy_on_message(test_server, test_ignore_message);
    eddy_on_start(test_server, test_mark_started);
    CHECK_EQ_INT(eddy_server_add_listener_fd(test_server, shared, 0), 0);
    CHECK_EQ_INT(eddy_server_listener_fd(test_server, 0), -1); /* not started */
    CHECK_EQ_INT(eddy_server_listener_fd(test_server, 1), -1);
    pthread_t thread;
    int rc = -1;
    test_start_server(&thread, &rc);
    CHECK_EQ_INT(eddy_server_listener_port(test_server, 0), port);
    int handed = eddy_server_listener_fd(test_server, 0);
    CHECK(handed >= 0);
    char reply[16] = "";
    struct timeval timeout = {.tv_sec = 2};
    setsockopt(early, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    CHECK(recv(early, reply, 9, MSG_WAITALL) == 9 && strncmp(reply, "HTTP/1.1 ", 9) == 0);
    close(early);
    for (int i = 0; i < 4; i++) /* both loops serve it (loop 0 hands connections over) */
        CHECK(test_http_answered(port));

    /* Handed over: a copy of the descriptor outlives the first server's stop. */
    int copy = dup(handed);
    eddy_server_stop(test_server);
    pthread_join(thread, NULL);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(eddy_server_listener_fd(test_server, 0), -1);
    eddy_server_free(test_server);

    /* Nobody serves the socket now: a connection waits in its backlog, and is not refused. */
    int waiting = socket(AF_INET, SOCK_STREAM, 0);
    CHECK_EQ_INT(connect(waiting, (struct sockaddr *)&addr, sizeof(addr)), 0);
    CHECK_EQ_INT(send(waiting, request, sizeof(request) - 1, 0), (int)sizeof(request) - 1);

    test_server = eddy_server_new(NULL, 0);
    eddy_server_set(test_server, "log_level", "error");
    eddy_on_message(test_server, test_ignore_message);
    eddy_on_request(test_server, on_request);
    eddy_on_start(test_server, test_mark_started);
    CHECK_EQ_INT(eddy_server_add_listener_fd(test_server, copy, 0), 0);
    test_start_server(&thread, &rc);
    setsockopt(waiting, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    memset(reply, 0, sizeof(reply));
    CHECK(recv(waiting, reply, 9, MSG_WAITALL) == 9 && strncmp(reply, "HTTP/1.1 ", 9) == 0);

    /* Closing the listeners: new connections are refused (nobody else holds the socket
     * now), the connection the server has is still served. */
    CHECK_EQ_INT(eddy_server_close_listeners(test_server), 0);
    for (int waited_ms = 0; waited_ms < 2000 && eddy_server_listener_fd(test_server, 0) >= 0;
         waited_ms++) {
        struct timespec ms = {.tv_nsec = 1000000L};
        nanosleep(&ms, NULL);
    }
    CHECK_EQ_INT(eddy_server_listener_fd(test_server, 0), -1);
    int late = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(connect(late, (struct sockaddr *)&addr, sizeof(addr)) != 0 && errno == ECONNREFUSED);
    close(late);
    char rest[1024]; /* the first answer's rest, up to its body "ok\n" */
    size_t got = 0;
    ssize_t n;
    while (got < sizeof(rest) - 1 && (n = recv(waiting, rest + got, 1, 0)) == 1 &&
           !(++got >= 3 && memcmp(rest + got - 3, "ok\n", 3) == 0))
        ;
    CHECK_EQ_INT(send(waiting, request, sizeof(request) - 1, 0), (int)sizeof(request) - 1);
    memset(reply, 0, sizeof(reply));
    CHECK(recv(waiting, reply, 9, MSG_WAITALL) == 9 && strncmp(reply, "HTTP/1.1 ", 9) == 0);
    close(waiting);
    eddy_server_stop(test_server);
    pthread_join(thread, NULL);
    CHECK(!fd_open(copy)); /* the server's: closed with its stop */

    /* A later start binds the address the adopted socket had. */
    test_start_server(&thread, &rc);
    CHECK_EQ_INT(eddy_server_listener_port(test_server, 0), port);
    CHECK(test_http_answered(port));
    eddy_server_stop(test_server);
    pthread_join(thread, NULL);
    CHECK_EQ_INT(rc, 0);
    eddy_server_free(test_server);
    return test_report("test_listener_fd");
}

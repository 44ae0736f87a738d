/* SPDX-License-Identifier: MIT */
/*
 * What changes while the server runs: max_connection and package_max_length through
 * eddy_server_set() (other keys answer EDDY_ERUNNING), and the TLS certificate through
 * eddy_server_reload_tls(), checked with a real TLS client: new handshakes see the new
 * certificate, an established connection goes on with its own, a bad pair is refused and
 * the running one still served. Reloads race with handshakes on two loops (for TSan).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "eddy.h"
#include "self_signed.h"
#include "test.h"
#include "test_server.h"

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void on_request(eddy_server_t *srv, eddy_request_t *req, eddy_response_t *resp,
                       void *user_data)
{
    (void)srv;
    (void)req;
    (void)user_data;
    eddy_response_end(resp, "ok", 2);
}

/* Waits up to 2 s for the server to count n connections. */
static bool wait_connections(size_t n)
{
    for (int i = 0; i < 2000; i++) {
        if (eddy_connection_count(test_server) == n)
            return true;
        sleep_ms(1);
    }
    return false;
}

/* True if the server closes a fresh connection to port within 2 s without answering a
 * request on it (refused at accept: over max_connection). */
static bool refused_at_accept(int port)
{
    int fd = test_connect(port);
    if (fd < 0)
        return true;
    struct timeval timeout = {.tv_sec = 2};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    static const char request[] = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";
    ssize_t sent = send(fd, request, sizeof(request) - 1, MSG_NOSIGNAL);
    char reply[16];
    ssize_t got = recv(fd, reply, sizeof(reply), 0);
    close(fd);
    return sent < 0 || got == 0 || (got < 0 && errno == ECONNRESET);
}

/* The status of a POST with a body of len bytes (announced, then sent), or -1. */
static int post_status(int port, size_t len)
{
    int fd = test_connect(port);
    if (fd < 0)
        return -1;
    struct timeval timeout = {.tv_sec = 2};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    char head[128], body[4096];
    int n = snprintf(head, sizeof(head),
                     "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n", len);
    memset(body, 'x', sizeof(body));
    int status = -1;
    if (send(fd, head, (size_t)n, MSG_NOSIGNAL) == n) {
        if (send(fd, body, len < sizeof(body) ? len : sizeof(body), MSG_NOSIGNAL) < 0)
            status = -1;
        char reply[64] = "";
        if (recv(fd, reply, sizeof(reply) - 1, 0) > 12 && strncmp(reply, "HTTP/1.1 ", 9) == 0)
            status = atoi(reply + 9);
    }
    close(fd);
    return status;
}

static void test_live_limits(void)
{
    if (!test_server_new("none"))
        return;
    eddy_on_request(test_server, on_request);
    CHECK_EQ_INT(eddy_server_set(test_server, "worker_num", "2"), 0);
    CHECK_EQ_INT(eddy_server_set(test_server, "max_connection", "100"), 0);
    CHECK_EQ_INT(eddy_server_set(test_server, "package_max_length", "4096"), 0);
    int rc = 0;
    pthread_t thread;
    test_start_server(&thread, &rc);
    int port = eddy_server_port(test_server);

    /* Keys read once per run stay refused. */
    CHECK_EQ_INT(eddy_server_set(test_server, "worker_num", "1"), EDDY_ERUNNING);
    CHECK_EQ_INT(eddy_server_set(test_server, "backlog", "10"), EDDY_ERUNNING);
    CHECK_EQ_INT(eddy_server_set(test_server, "ssl_cert_file", "/x"), EDDY_ERUNNING);
    CHECK_EQ_INT(eddy_server_set(test_server, "max_connection", "0"), EDDY_EVALUE);
    CHECK_EQ_INT(eddy_server_set(test_server, "heartbeat_idle_time", "5"), EDDY_ERUNNING);
    /* Pings: every loop re-arms its timer (the rounds themselves: test_reload.py). */
    CHECK_EQ_INT(eddy_server_set(test_server, "websocket_ping_interval", "0.5"), 0);
    CHECK_EQ_INT(eddy_server_set(test_server, "websocket_ping_timeout", "2"), 0);
    CHECK_EQ_INT(eddy_server_set(test_server, "websocket_ping_timeout", "x"), EDDY_EVALUE);
    eddy_options_t pings;
    eddy_server_get_options(test_server, &pings);
    CHECK_EQ_INT(pings.websocket_ping_interval_ms, 500);
    CHECK_EQ_INT(pings.websocket_ping_timeout_ms, 2000);
    CHECK_EQ_INT(eddy_server_set(test_server, "websocket_ping_interval", "0"), 0);

    /* max_connection lowered to 2: two held connections, the third is refused. */
    int held[2];
    for (int i = 0; i < 2; i++)
        held[i] = test_connect(port);
    CHECK(wait_connections(2));
    CHECK(test_http_answered(port)); /* a third, under 100 */
    CHECK(wait_connections(2));
    CHECK_EQ_INT(eddy_server_set(test_server, "max_connection", "2"), 0);
    eddy_options_t opts;
    eddy_server_get_options(test_server, &opts);
    CHECK_EQ_INT(opts.max_connection, 2);
    CHECK(refused_at_accept(port));
    eddy_stats_t st = {0};
    for (int i = 0; i < 2000 && st.refused_total == 0; i++) { /* counted after the close */
        eddy_server_stats(test_server, -1, &st);
        sleep_ms(st.refused_total == 0);
    }
    CHECK(st.refused_total >= 1);
    CHECK_EQ_INT(eddy_server_set(test_server, "max_connection", "100"), 0);
    CHECK(test_http_answered(port));
    for (int i = 0; i < 2; i++)
        close(held[i]);

    /* package_max_length lowered: a body that passed is refused with 413. */
    CHECK_EQ_INT(post_status(port, 2000), 200);
    CHECK_EQ_INT(eddy_server_set(test_server, "package_max_length", "1000"), 0);
    CHECK_EQ_INT(post_status(port, 2000), 413);
    CHECK_EQ_INT(post_status(port, 1000), 200);
    static char big[2000];
    CHECK_EQ_INT(eddy_broadcast(test_server, big, sizeof(big), EDDY_WS_OPCODE_BINARY, 0),
                 EDDY_ETOOBIG);

    eddy_server_stop(test_server);
    pthread_join(thread, NULL);
    CHECK_EQ_INT(rc, 0);
    /* Stopped: the values set while running stay. */
    eddy_server_get_options(test_server, &opts);
    CHECK_EQ_INT(opts.max_connection, 100);
    CHECK_EQ_INT(opts.package_max_length, 1000);
    eddy_server_free(test_server);
}

/* What lower_then_push() saw: 1 until it ran, then eddy_push()'s return (or 1000 plus
 * eddy_server_set()'s if that failed). */
static atomic_int push_rc = 1;

/* Lowers package_max_length to 32 from a message callback, then pushes 64 bytes to the
 * sender on the same loop. */
static void lower_then_push(eddy_server_t *srv, const eddy_frame_t *frame, void *user_data)
{
    (void)user_data;
    static const char big[64];
    int set_rc = eddy_server_set(srv, "package_max_length", "32");
    int rc = eddy_push(srv, frame->fd, big, sizeof(big), EDDY_WS_OPCODE_BINARY, EDDY_WS_FLAG_FIN);
    atomic_store(&push_rc, set_rc != 0 ? 1000 + set_rc : rc);
}

/* A loop reads the live limits once per batch of events (eddy__loop_refresh_limits()); a
 * change made inside one of its callbacks still applies to that callback's next push. */
static void test_set_inside_a_callback(void)
{
    if (!test_server_new("none"))
        return;
    eddy_on_message(test_server, lower_then_push);
    CHECK_EQ_INT(eddy_server_set(test_server, "worker_num", "1"), 0);
    int rc = 0;
    pthread_t thread;
    test_start_server(&thread, &rc);
    int fd = test_connect(eddy_server_port(test_server));
    CHECK(fd >= 0);
    /* The upgrade, then a masked text frame "hi" (mask 0) behind it. */
    static const char upgrade[] = "GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
                                  "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
                                  "\x81\x82\0\0\0\0hi";
    CHECK(fd >= 0 && send(fd, upgrade, sizeof(upgrade) - 1, 0) == (ssize_t)sizeof(upgrade) - 1);
    for (int i = 0; i < 2000 && atomic_load(&push_rc) == 1; i++)
        sleep_ms(1);
    CHECK_EQ_INT(atomic_load(&push_rc), EDDY_ETOOBIG);
    if (fd >= 0)
        close(fd);
    eddy_server_stop(test_server);
    pthread_join(thread, NULL);
    CHECK_EQ_INT(rc, 0);
    eddy_server_free(test_server);
}

/* ---- TLS ---- */

static char cert_a[] = "/tmp/eddy-reload-a-XXXXXX", key_a[] = "/tmp/eddy-reload-ka-XXXXXX";
static char cert_b[] = "/tmp/eddy-reload-b-XXXXXX", key_b[] = "/tmp/eddy-reload-kb-XXXXXX";
static char garbage[] = "/tmp/eddy-reload-g-XXXXXX";
static SSL_CTX *client_tls;

typedef struct tls_client {
    int fd;
    SSL *ssl;
} tls_client_t;

/* Connects over TLS; the peer certificate's common name goes to cn ("" if none). */
static bool tls_connect(int port, tls_client_t *c, char *cn, size_t cn_len)
{
    cn[0] = '\0';
    c->fd = test_connect(port);
    c->ssl = NULL;
    if (c->fd < 0)
        return false;
    struct timeval timeout = {.tv_sec = 2};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    c->ssl = SSL_new(client_tls);
    SSL_set_fd(c->ssl, c->fd);
    if (SSL_connect(c->ssl) != 1)
        return false;
    X509 *peer = SSL_get1_peer_certificate(c->ssl);
    if (peer != NULL)
        X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, (int)cn_len);
    X509_free(peer);
    return true;
}

/* One GET on the connection: true if a 200 came back. */
static bool tls_get(tls_client_t *c)
{
    static const char request[] = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";
    char reply[4096] = "";
    return SSL_write(c->ssl, request, sizeof(request) - 1) > 0 &&
           SSL_read(c->ssl, reply, sizeof(reply) - 1) > 12 &&
           strncmp(reply, "HTTP/1.1 200", 12) == 0;
}

static void tls_close(tls_client_t *c)
{
    if (c->ssl != NULL)
        SSL_free(c->ssl);
    if (c->fd >= 0)
        close(c->fd);
}

static atomic_bool reloading;

/* Swaps the two certificates as fast as it can, while the main thread shakes hands. */
static void *reload_loop(void *arg)
{
    (void)arg;
    for (int i = 0; i < 40 && atomic_load(&reloading); i++)
        eddy_server_reload_tls(test_server, i % 2 ? cert_a : cert_b, i % 2 ? key_a : key_b);
    return NULL;
}

static void test_reload_tls(void)
{
    CHECK(self_signed_write(cert_a, key_a, "first.test"));
    CHECK(self_signed_write(cert_b, key_b, "second.test"));
    int garbage_fd = mkstemp(garbage);
    CHECK(garbage_fd >= 0 && write(garbage_fd, "not a certificate\n", 18) == 18);
    close(garbage_fd);
    client_tls = SSL_CTX_new(TLS_client_method());
    if (!test_server_new("none"))
        return;
    eddy_on_request(test_server, on_request);
    CHECK_EQ_INT(eddy_server_set(test_server, "worker_num", "2"), 0);
    CHECK_EQ_INT(eddy_server_set(test_server, "ssl_cert_file", cert_a), 0);
    CHECK_EQ_INT(eddy_server_set(test_server, "ssl_key_file", key_a), 0);
    int index = eddy_server_add_listener(test_server, "127.0.0.1", 0, EDDY_LISTEN_TLS);
    CHECK(index > 0);
    int rc = 0;
    pthread_t thread;
    test_start_server(&thread, &rc);
    int port = eddy_server_listener_port(test_server, index);
    char cn[64];

    tls_client_t old;
    CHECK(tls_connect(port, &old, cn, sizeof(cn)));
    CHECK_STR(cn, "first.test");
    CHECK(tls_get(&old));

    CHECK_EQ_INT(eddy_server_reload_tls(test_server, cert_b, key_b), 0);
    tls_client_t fresh;
    CHECK(tls_connect(port, &fresh, cn, sizeof(cn)));
    CHECK_STR(cn, "second.test");
    CHECK(tls_get(&fresh));
    tls_close(&fresh);
    CHECK(tls_get(&old)); /* established before: goes on with the first certificate */

    /* Refused, and the running certificate still served. */
    CHECK_EQ_INT(eddy_server_reload_tls(test_server, cert_a, key_b), EDDY_EINVAL);
    CHECK_EQ_INT(eddy_server_reload_tls(test_server, garbage, key_a), EDDY_EINVAL);
    CHECK_EQ_INT(eddy_server_reload_tls(test_server, "/nonexistent/cert.pem", key_a), -ENOENT);
    CHECK_EQ_INT(eddy_server_reload_tls(test_server, NULL, key_a), EDDY_EINVAL);
    CHECK(tls_connect(port, &fresh, cn, sizeof(cn)));
    CHECK_STR(cn, "second.test");
    CHECK(tls_get(&fresh));
    tls_close(&fresh);

    /* Reloads racing with handshakes: every handshake completes with one of the two. */
    atomic_store(&reloading, true);
    pthread_t reloader;
    CHECK(pthread_create(&reloader, NULL, reload_loop, NULL) == 0);
    for (int i = 0; i < 20; i++) {
        bool ok = tls_connect(port, &fresh, cn, sizeof(cn));
        CHECK(ok && (strcmp(cn, "first.test") == 0 || strcmp(cn, "second.test") == 0));
        CHECK(tls_get(&fresh));
        tls_close(&fresh);
    }
    atomic_store(&reloading, false);
    pthread_join(reloader, NULL);
    CHECK(tls_get(&old));
    tls_close(&old);

    CHECK_EQ_INT(eddy_server_reload_tls(test_server, cert_b, key_b), 0);
    eddy_server_stop(test_server);
    pthread_join(thread, NULL);
    CHECK_EQ_INT(rc, 0);
    /* The pair loaded while running is the settings' now, for the next start. */
    eddy_options_t opts;
    eddy_server_get_options(test_server, &opts);
    CHECK_STR(opts.ssl_cert_file, cert_b);
    CHECK_STR(opts.ssl_key_file, key_b);
    /* Not running: checked, then recorded. */
    CHECK_EQ_INT(eddy_server_reload_tls(test_server, cert_a, key_b), EDDY_EINVAL);
    CHECK_EQ_INT(eddy_server_reload_tls(test_server, cert_a, key_a), 0);
    eddy_server_get_options(test_server, &opts);
    CHECK_STR(opts.ssl_cert_file, cert_a);
    test_start_server(&thread, &rc);
    CHECK(
        tls_connect(port = eddy_server_listener_port(test_server, index), &fresh, cn, sizeof(cn)));
    CHECK_STR(cn, "first.test");
    tls_close(&fresh);
    eddy_server_stop(test_server);
    pthread_join(thread, NULL);
    eddy_server_free(test_server);
    SSL_CTX_free(client_tls);
    const char *files[] = {cert_a, key_a, cert_b, key_b, garbage};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
        unlink(files[i]);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    test_live_limits();
    test_set_inside_a_callback();
    test_reload_tls();
    return test_report("reload");
}

/* SPDX-License-Identifier: MIT */
/*
 * The TLS 1.3 record layer (src/tls13.c, src/tls.c) against OpenSSL's client, a record
 * layer of another making: WebSocket echoes in each cipher suite, small and over many
 * records; key updates from the client, with and without a request for the server's (its
 * KeyUpdate counted by the client's message callback); a message of 8 MiB whose echo
 * fills the socket, so that sealed records wait for it; close_notify both ways; and TLS
 * 1.2, which stays with OpenSSL's record layer.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "eddy.h"
#include "self_signed.h"
#include "test.h"
#include "test_server.h"

#define BIG (8u << 20)

static char cert_file[] = "/tmp/eddy-tls13-cert-XXXXXX";
static char key_file[] = "/tmp/eddy-tls13-key-XXXXXX";
static int port;
static int small_port; /* a listener whose sockets have a small send buffer */

static void echo(eddy_server_t *srv, const eddy_frame_t *frame, void *user_data)
{
    (void)user_data;
    eddy_push(srv, frame->fd, frame->data, frame->len, frame->opcode, EDDY_WS_FLAG_FIN);
}

typedef struct client {
    SSL_CTX *ctx;
    SSL *ssl;
    int fd;
    int key_updates_received; /* KeyUpdate messages from the server */
} client_t;

static void count_key_updates(int write_p, int version, int content_type, const void *buf,
                              size_t len, SSL *ssl, void *arg)
{
    (void)version;
    (void)ssl;
    if (!write_p && content_type == SSL3_RT_HANDSHAKE && len > 0 &&
        *(const unsigned char *)buf == SSL3_MT_KEY_UPDATE)
        ((client_t *)arg)->key_updates_received++;
}

/* Sends (writing) or receives all of data[0..len) through the client's TLS connection. */
static bool transfer_all(client_t *c, char *data, size_t len, bool writing)
{
    while (len > 0) {
        int chunk = (int)(len > (1u << 30) ? 1u << 30 : len);
        int n = writing ? SSL_write(c->ssl, data, chunk) : SSL_read(c->ssl, data, chunk);
        if (n <= 0)
            return false;
        data += n;
        len -= (size_t)n;
    }
    return true;
}

static bool write_all(client_t *c, const void *data, size_t len)
{
    return transfer_all(c, (char *)data, len, true);
}

static bool read_all(client_t *c, void *data, size_t len)
{
    return transfer_all(c, data, len, false);
}

/* Connects with TLS versions [min, max] and suites (NULL: OpenSSL's default), and
 * upgrades to WebSocket. rcvbuf: the socket's receive buffer, or 0 for the default. */
static bool client_open_at(client_t *c, int at, int min, int max, const char *suites, int rcvbuf)
{
    memset(c, 0, sizeof(*c));
    c->ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(c->ctx, min);
    SSL_CTX_set_max_proto_version(c->ctx, max);
    if (suites != NULL)
        SSL_CTX_set_ciphersuites(c->ctx, suites);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (rcvbuf > 0) /* before connect(): it sets the window offered */
        setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)at)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof(addr)) != 0)
        return false;
    struct timeval timeout = {.tv_sec = 10};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
    c->ssl = SSL_new(c->ctx);
    SSL_set_fd(c->ssl, c->fd);
    SSL_set_msg_callback(c->ssl, count_key_updates);
    SSL_set_msg_callback_arg(c->ssl, c);
    if (c->fd < 0 || SSL_connect(c->ssl) != 1)
        return false;
    static const char request[] = "GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                                  "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    if (!write_all(c, request, sizeof(request) - 1))
        return false;
    char head[1024];
    size_t len = 0;
    while (len < sizeof(head) - 1) {
        if (!read_all(c, head + len, 1))
            return false;
        len++;
        if (len >= 4 && memcmp(head + len - 4, "\r\n\r\n", 4) == 0)
            break;
    }
    head[len] = 0;
    return strncmp(head, "HTTP/1.1 101", 12) == 0;
}

static bool client_open(client_t *c, int min, int max, const char *suites, int rcvbuf)
{
    return client_open_at(c, port, min, max, suites, rcvbuf);
}

static void client_free(client_t *c)
{
    SSL_free(c->ssl);
    SSL_CTX_free(c->ctx);
    if (c->fd >= 0)
        close(c->fd);
}

/* Sends a masked binary frame of len bytes of data, and reads back the echo (after
 * pause_ms). */
static bool echo_paused(client_t *c, const unsigned char *data, size_t len, long pause_ms)
{
    static unsigned char frame[BIG + 16];
    static unsigned char back[BIG + 16];
    static const unsigned char mask[4] = {0x12, 0x34, 0x56, 0x78};
    size_t head = 0;
    frame[head++] = 0x82;
    if (len < 126) {
        frame[head++] = (unsigned char)(0x80 | len);
    } else if (len < 65536) {
        frame[head++] = 0x80 | 126;
        frame[head++] = (unsigned char)(len >> 8);
        frame[head++] = (unsigned char)len;
    } else {
        frame[head++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            frame[head++] = (unsigned char)((uint64_t)len >> (8 * i));
    }
    memcpy(frame + head, mask, 4);
    head += 4;
    for (size_t i = 0; i < len; i++)
        frame[head + i] = data[i] ^ mask[i % 4];
    if (!write_all(c, frame, head + len))
        return false;
    struct timespec pause = {.tv_sec = pause_ms / 1000, .tv_nsec = pause_ms % 1000 * 1000000L};
    nanosleep(&pause, NULL);
    unsigned char h[10];
    if (!read_all(c, h, 2) || h[0] != 0x82)
        return false;
    size_t got = h[1] & 0x7f;
    if (got == 126) {
        if (!read_all(c, h + 2, 2))
            return false;
        got = (size_t)h[2] << 8 | h[3];
    } else if (got == 127) {
        if (!read_all(c, h + 2, 8))
            return false;
        got = 0;
        for (int i = 2; i < 10; i++)
            got = got << 8 | h[i];
    }
    return got == len && read_all(c, back, len) && memcmp(back, data, len) == 0;
}

static bool echo_once(client_t *c, const unsigned char *data, size_t len)
{
    return echo_paused(c, data, len, 0);
}

static unsigned char payload[BIG];

static void test_suites(void)
{
    static const char *suites[] = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                                   "TLS_CHACHA20_POLY1305_SHA256"};
    for (size_t i = 0; i < sizeof(suites) / sizeof(suites[0]); i++) {
        client_t c;
        CHECK(client_open(&c, TLS1_3_VERSION, TLS1_3_VERSION, suites[i], 0));
        CHECK_STR(SSL_CIPHER_get_name(SSL_get_current_cipher(c.ssl)), suites[i]);
        CHECK(echo_once(&c, payload, 20));
        CHECK(echo_once(&c, payload, 0));
        CHECK(echo_once(&c, payload, 16384)); /* one full record of frame, and a bit */
        CHECK(echo_once(&c, payload, 100000));
        /* Many small ones, so that sequence numbers run on. */
        for (int n = 0; n < 300; n++)
            CHECK(echo_once(&c, payload + n, (size_t)(n * 7) % 3000));
        client_free(&c);
    }
}

static void test_key_updates(void)
{
    client_t c;
    CHECK(client_open(&c, TLS1_3_VERSION, TLS1_3_VERSION, NULL, 0));
    CHECK(echo_once(&c, payload, 50));
    /* Ours only: the server reads with the next key and writes with its own. */
    CHECK_EQ_INT(SSL_key_update(c.ssl, SSL_KEY_UPDATE_NOT_REQUESTED), 1);
    CHECK(echo_once(&c, payload, 50));
    CHECK_EQ_INT(c.key_updates_received, 0);
    /* Requested: the server's KeyUpdate comes before the echo. */
    CHECK_EQ_INT(SSL_key_update(c.ssl, SSL_KEY_UPDATE_REQUESTED), 1);
    CHECK(echo_once(&c, payload, 3000));
    CHECK_EQ_INT(c.key_updates_received, 1);
    for (int n = 0; n < 20; n++) {
        CHECK_EQ_INT(
            SSL_key_update(c.ssl, n % 2 ? SSL_KEY_UPDATE_REQUESTED : SSL_KEY_UPDATE_NOT_REQUESTED),
            1);
        CHECK(echo_once(&c, payload + n, 40000));
    }
    CHECK_EQ_INT(c.key_updates_received, 11);
    client_free(&c);
}

/* The echo of 8 MiB fills the socket (small buffers, a client that reads late): sealed
 * records the socket did not take wait for it, in order. */
static void test_big_echo(void)
{
    client_t c;
    CHECK(client_open_at(&c, small_port, TLS1_3_VERSION, TLS1_3_VERSION, NULL, 16384));
    CHECK(echo_paused(&c, payload, BIG, 300));
    CHECK(echo_once(&c, payload + 1, 10));
    client_free(&c);
}

static bool wait_connections(size_t n)
{
    for (int i = 0; i < 2000; i++) {
        if (eddy_connection_count(test_server) == n)
            return true;
        struct timespec ms = {.tv_nsec = 1000000L};
        nanosleep(&ms, NULL);
    }
    return false;
}

static void test_close_notify(void)
{
    /* The client's: the server's end of the stream, and it closes (as on a plain end of
     * the stream, without a close_notify of its own). */
    client_t c;
    CHECK(client_open(&c, TLS1_3_VERSION, TLS1_3_VERSION, NULL, 0));
    CHECK(echo_once(&c, payload, 10));
    CHECK(wait_connections(1));
    CHECK_EQ_INT(SSL_shutdown(c.ssl), 0);
    CHECK(wait_connections(0));
    char byte;
    CHECK(SSL_read(c.ssl, &byte, 1) <= 0);
    client_free(&c);

    /* The server's, after the closing handshake it answers. */
    CHECK(client_open(&c, TLS1_3_VERSION, TLS1_3_VERSION, NULL, 0));
    static const unsigned char close_frame[] = {0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8};
    CHECK(write_all(&c, close_frame, sizeof(close_frame)));
    unsigned char reply[4];
    CHECK(read_all(&c, reply, 4) && reply[0] == 0x88 && reply[1] == 2);
    CHECK_EQ_INT(SSL_read(c.ssl, &byte, 1), 0);
    CHECK(SSL_get_shutdown(c.ssl) & SSL_RECEIVED_SHUTDOWN);
    client_free(&c);
    CHECK(wait_connections(0));
}

static void test_tls12(void)
{
    client_t c;
    CHECK(client_open(&c, TLS1_2_VERSION, TLS1_2_VERSION, NULL, 0));
    CHECK_EQ_INT(SSL_version(c.ssl), TLS1_2_VERSION);
    CHECK(echo_once(&c, payload, 20));
    CHECK(echo_once(&c, payload, 100000));
    client_free(&c);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (unsigned char)(i * 31 + (i >> 9));
    CHECK(self_signed_write(cert_file, key_file, "localhost"));
    if (!test_server_new("warning"))
        return test_report("tls13");
    eddy_on_message(test_server, echo);
    CHECK_EQ_INT(eddy_server_set(test_server, "worker_num", "1"), 0);
    CHECK_EQ_INT(eddy_server_set(test_server, "package_max_length", "16777216"), 0);
    CHECK_EQ_INT(eddy_server_set(test_server, "websocket_compression", "false"), 0);
    CHECK_EQ_INT(eddy_server_set(test_server, "ssl_cert_file", cert_file), 0);
    CHECK_EQ_INT(eddy_server_set(test_server, "ssl_key_file", key_file), 0);
    int index = eddy_server_add_listener(test_server, "127.0.0.1", 0, EDDY_LISTEN_TLS);
    CHECK(index > 0);
    /* Accepted sockets inherit the listener's send buffer: fixed and small, it fills
     * before writability is signalled again, so writes come back short. */
    int small = socket(AF_INET, SOCK_STREAM, 0);
    int sndbuf = 8192;
    struct sockaddr_in any = {.sin_family = AF_INET};
    any.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(setsockopt(small, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)) == 0 &&
          bind(small, (struct sockaddr *)&any, sizeof(any)) == 0 && listen(small, 16) == 0);
    int small_index = eddy_server_add_listener_fd(test_server, small, EDDY_LISTEN_TLS);
    CHECK(small_index > 0);
    int rc = 0;
    pthread_t thread;
    test_start_server(&thread, &rc);
    port = eddy_server_listener_port(test_server, index);
    small_port = eddy_server_listener_port(test_server, small_index);
    test_suites();
    test_key_updates();
    test_big_echo();
    test_close_notify();
    test_tls12();
    eddy_server_stop(test_server);
    pthread_join(thread, NULL);
    CHECK_EQ_INT(rc, 0);
    eddy_server_free(test_server);
    unlink(cert_file);
    unlink(key_file);
    return test_report("tls13");
}

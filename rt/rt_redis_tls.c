/* SPDX-License-Identifier: MIT */
/*
 * TLS to Redis under hiredis 0.14's reader (rt_redis_tls.h): the handshake on hiredis'
 * socket, then SSL_write of c->obuf and SSL_read into c->reader over a non-blocking socket,
 * each wait bounded by poll().
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/sds.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "rt_redis_tls.h"

struct rt_redis_tls {
    SSL_CTX *ctx;
    char *server_name; /* NULL: each connection's host */
    bool insecure;
};

/* A TLS context's state (its reader's privdata). */
typedef struct tls_conn {
    SSL *ssl;
    int timeout_ms;  /* per wait */
    bool cert_asked; /* Redis asked for a client certificate and none was configured */
} tls_conn_t;

/* Called by OpenSSL when the server asks for a client certificate and none is set: noted,
 * since with TLS 1.3 Redis' refusal (tls-auth-clients yes) comes after the handshake, at the
 * first read, often as a bare connection reset. */
static int no_client_cert(SSL *ssl, X509 **cert, EVP_PKEY **key)
{
    tls_conn_t *t = SSL_get_app_data(ssl);
    t->cert_asked = true;
    return 0;
}

/* OpenSSL's reason for the first error in this thread's queue (the cause; the queue is
 * emptied), or fallback. */
static const char *ssl_reason(const char *fallback)
{
    unsigned long e = ERR_peek_error();
    const char *reason = !e                              ? NULL
                         : ERR_GET_LIB(e) == ERR_LIB_SYS ? strerror(ERR_GET_REASON(e))
                                                         : ERR_reason_error_string(e);
    ERR_clear_error();
    return reason ? reason : fallback;
}

rt_redis_tls_t *rt_redis_tls_new(const rt_broker_redis_config_t *cfg, eddy_server_t *srv)
{
    rt_redis_tls_t *tls = calloc(1, sizeof(*tls));
    if (!tls)
        return NULL;
    tls->insecure = cfg->tls_insecure;
    tls->ctx = SSL_CTX_new(TLS_client_method());
    if (!tls->ctx || (cfg->tls_server_name && !(tls->server_name = strdup(cfg->tls_server_name))))
        goto oom;
    SSL_CTX_set_min_proto_version(tls->ctx, TLS1_2_VERSION);
    /* obuf may be written in parts and moves when it grows; a session ticket read alone
     * must not make SSL_read wait for application data (see tls_read). */
    SSL_CTX_set_mode(tls->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_clear_mode(tls->ctx, SSL_MODE_AUTO_RETRY);
    SSL_CTX_set_verify(tls->ctx, tls->insecure ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
    if (!cfg->tls_cert_file)
        SSL_CTX_set_client_cert_cb(tls->ctx, no_client_cert);
    const char *file = cfg->tls_ca_file, *what = "CA file";
    if (file ? SSL_CTX_load_verify_locations(tls->ctx, file, NULL) != 1
             : SSL_CTX_set_default_verify_paths(tls->ctx) != 1) {
        file = file ? file : "(the system's store)";
        goto bad;
    }
    if (cfg->tls_cert_file) {
        file = cfg->tls_cert_file, what = "client certificate";
        if (SSL_CTX_use_certificate_chain_file(tls->ctx, file) != 1)
            goto bad;
        file = cfg->tls_key_file ? cfg->tls_key_file : cfg->tls_cert_file, what = "client key";
        if (SSL_CTX_use_PrivateKey_file(tls->ctx, file, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(tls->ctx) != 1)
            goto bad;
    }
    if (tls->insecure)
        eddy_log(srv, EDDY_LOG_WARNING,
                 "rt_broker: TLS to Redis without certificate verification (ssl_cert_reqs=none): "
                 "anyone on the path can pose as Redis");
    return tls;
bad:
    eddy_log(srv, EDDY_LOG_ERROR, "rt_broker: TLS to Redis: %s %s: %s", what, file,
             ssl_reason("unreadable"));
    rt_redis_tls_free(tls);
    return NULL;
oom:
    rt_redis_tls_free(tls);
    return NULL;
}

void rt_redis_tls_free(rt_redis_tls_t *tls)
{
    if (!tls)
        return;
    SSL_CTX_free(tls->ctx);
    free(tls->server_name);
    free(tls);
}

static void set_error(redisContext *c, int type, const char *fmt, ...)
{
    c->err = type;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->errstr, sizeof(c->errstr), fmt, ap);
    va_end(ap);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Waits up to timeout_ms for the socket to be ready for what OpenSSL wants (ssl_err:
 * SSL_ERROR_WANT_READ or _WRITE). 1 ready, 0 timed out, -1 error (errno). */
static int wait_for(int fd, int ssl_err, int timeout_ms)
{
    struct pollfd pf = {.fd = fd, .events = ssl_err == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN};
    for (;;) {
        int n = poll(&pf, 1, timeout_ms);
        if (n >= 0 || errno != EINTR)
            return n > 0 ? 1 : n;
    }
}

/* Sets c's error for a failed SSL_read or SSL_write (ret, ssl_err: its result and
 * SSL_get_error's), as hiredis words its own where they are the same. REDIS_ERR. */
static int io_error(redisContext *c, int ret, int ssl_err)
{
    unsigned long e = ERR_peek_last_error();
    if (ssl_err == SSL_ERROR_ZERO_RETURN || (ssl_err == SSL_ERROR_SYSCALL && !e && ret == 0) ||
        (e && ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING)) {
        ERR_clear_error();
        set_error(c, REDIS_ERR_EOF, "Server closed the connection");
    } else if (ssl_err == SSL_ERROR_SYSCALL && !e) {
        set_error(c, REDIS_ERR_IO, "%s", strerror(errno));
    } else {
        set_error(c, REDIS_ERR_IO, "TLS: %s", ssl_reason("error"));
    }
    tls_conn_t *t = c->reader->privdata;
    if (t->cert_asked) {
        size_t len = strlen(c->errstr);
        snprintf(c->errstr + len, sizeof(c->errstr) - len,
                 " (Redis asked for a client certificate: ssl_certfile=)");
    }
    return REDIS_ERR;
}

static int timed_out(redisContext *c, int timeout_ms)
{
    set_error(c, REDIS_ERR_IO, "TLS: no answer within %d ms", timeout_ms);
    return REDIS_ERR;
}

static bool is_ip(const char *name)
{
    unsigned char addr[16];
    return inet_pton(AF_INET, name, addr) == 1 || inet_pton(AF_INET6, name, addr) == 1;
}

/* Why a handshake failed, into c's error. */
static void handshake_error(redisContext *c, SSL *ssl, int ret, int ssl_err)
{
    long verify = SSL_get_verify_result(ssl);
    if (verify != X509_V_OK) {
        ERR_clear_error();
        set_error(c, REDIS_ERR_IO, "TLS handshake: certificate verify failed: %s",
                  X509_verify_cert_error_string(verify));
        return;
    }
    unsigned long e = ERR_peek_last_error();
    /* A Redis without TLS answers a ClientHello with an error line ("-ERR ...", which is no
     * TLS record) or closes. */
    const char *hint = e && (ERR_GET_REASON(e) == SSL_R_WRONG_VERSION_NUMBER ||
                             ERR_GET_REASON(e) == SSL_R_PACKET_LENGTH_TOO_LONG ||
                             ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
                           ? " (a port without TLS?)"
                           : "";
    if (ssl_err == SSL_ERROR_SYSCALL && !e)
        set_error(c, REDIS_ERR_IO, "TLS handshake: %s",
                  ret == 0 ? "closed by Redis (a port "
                             "without TLS?)"
                           : strerror(errno));
    else
        set_error(c, REDIS_ERR_IO, "TLS handshake: %s%s", ssl_reason("error"), hint);
}

int rt_redis_tls_start(const rt_redis_tls_t *tls, redisContext *c, const char *host,
                       uint32_t timeout_ms)
{
    const char *name = tls->server_name ? tls->server_name : host;
    tls_conn_t *t = calloc(1, sizeof(*t));
    SSL *ssl = SSL_new(tls->ctx);
    int flags = fcntl(c->fd, F_GETFL);
    if (!t || !ssl || flags < 0 || fcntl(c->fd, F_SETFL, flags | O_NONBLOCK) < 0 ||
        SSL_set_fd(ssl, c->fd) != 1 || SSL_set_app_data(ssl, t) != 1) {
        set_error(c, REDIS_ERR_OTHER, "TLS: %s", ssl_reason("out of memory"));
        goto fail;
    }
    /* SNI carries a DNS name only; the verified name is a DNS name or an IP address. */
    bool ip = is_ip(name);
    if ((!ip && SSL_set_tlsext_host_name(ssl, name) != 1) ||
        (!tls->insecure && (ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) != 1
                               : SSL_set1_host(ssl, name) != 1))) {
        set_error(c, REDIS_ERR_OTHER, "TLS: bad server name %.64s", name);
        goto fail;
    }
    uint64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        ERR_clear_error();
        int ret = SSL_connect(ssl);
        if (ret == 1)
            break;
        int ssl_err = SSL_get_error(ssl, ret);
        uint64_t now = now_ms();
        if (ssl_err != SSL_ERROR_WANT_READ && ssl_err != SSL_ERROR_WANT_WRITE) {
            handshake_error(c, ssl, ret, ssl_err);
            goto fail;
        }
        int ready = now < deadline ? wait_for(c->fd, ssl_err, (int)(deadline - now)) : 0;
        if (ready <= 0) {
            if (ready < 0)
                set_error(c, REDIS_ERR_IO, "TLS handshake: %s", strerror(errno));
            else
                set_error(c, REDIS_ERR_IO,
                          "TLS handshake: no answer within %u ms (a port without TLS?)",
                          timeout_ms);
            goto fail;
        }
    }
    t->ssl = ssl;
    t->timeout_ms = (int)timeout_ms;
    c->reader->privdata = t;
    return 0;
fail:
    SSL_free(ssl);
    free(t);
    return -1;
}

int rt_redis_tls_write(redisContext *c, int *done)
{
    tls_conn_t *t = c->reader->privdata;
    if (c->err)
        return REDIS_ERR;
    size_t len = sdslen(c->obuf);
    while (len > 0) {
        ERR_clear_error();
        int n = SSL_write(t->ssl, c->obuf, len > INT_MAX ? INT_MAX : (int)len);
        if (n > 0) {
            /* As redisBufferWrite: the buffer goes once all of it is out. */
            if ((size_t)n == len) {
                sdsfree(c->obuf);
                c->obuf = sdsempty();
                if (!c->obuf) {
                    set_error(c, REDIS_ERR_OOM, "Out of memory");
                    return REDIS_ERR;
                }
            } else {
                sdsrange(c->obuf, n, -1);
            }
            break;
        }
        int ssl_err = SSL_get_error(t->ssl, n);
        if (ssl_err != SSL_ERROR_WANT_READ && ssl_err != SSL_ERROR_WANT_WRITE)
            return io_error(c, n, ssl_err);
        /* Retried with the same bytes, as OpenSSL requires. */
        int ready = wait_for(c->fd, ssl_err, t->timeout_ms);
        if (ready <= 0)
            return ready < 0 ? io_error(c, -1, SSL_ERROR_SYSCALL) : timed_out(c, t->timeout_ms);
    }
    if (done)
        *done = sdslen(c->obuf) == 0;
    return REDIS_OK;
}

/* Reads into c->reader: what one record decrypts, then every byte OpenSSL still holds
 * decrypted (SSL_pending: poll() cannot report those, so none may be left behind). With
 * wait, waits (timeout_ms) until a record comes; without, returns when none is complete
 * (the socket had part of one, or a record without data such as a session ticket). */
static int tls_read(redisContext *c, bool wait)
{
    tls_conn_t *t = c->reader->privdata;
    char buf[16 * 1024];
    if (c->err)
        return REDIS_ERR;
    for (;;) {
        ERR_clear_error();
        int n = SSL_read(t->ssl, buf, sizeof(buf));
        if (n > 0) {
            if (redisReaderFeed(c->reader, buf, (size_t)n) != REDIS_OK) {
                set_error(c, c->reader->err, "%s", c->reader->errstr);
                return REDIS_ERR;
            }
            if (SSL_pending(t->ssl) > 0)
                continue;
            return REDIS_OK;
        }
        int ssl_err = SSL_get_error(t->ssl, n);
        if (ssl_err != SSL_ERROR_WANT_READ && ssl_err != SSL_ERROR_WANT_WRITE)
            return io_error(c, n, ssl_err);
        if (!wait)
            return REDIS_OK;
        int ready = wait_for(c->fd, ssl_err, t->timeout_ms);
        if (ready <= 0)
            return ready < 0 ? io_error(c, -1, SSL_ERROR_SYSCALL) : timed_out(c, t->timeout_ms);
    }
}

int rt_redis_tls_read(redisContext *c)
{
    return tls_read(c, false);
}

int rt_redis_tls_get_reply(redisContext *c, void **reply)
{
    void *aux = NULL;
    if (redisGetReplyFromReader(c, &aux) == REDIS_ERR)
        return REDIS_ERR;
    if (!aux) {
        int done = 0;
        do {
            if (rt_redis_tls_write(c, &done) == REDIS_ERR)
                return REDIS_ERR;
        } while (!done);
        do {
            if (tls_read(c, true) == REDIS_ERR || redisGetReplyFromReader(c, &aux) == REDIS_ERR)
                return REDIS_ERR;
        } while (!aux);
    }
    if (reply)
        *reply = aux;
    else
        freeReplyObject(aux);
    return REDIS_OK;
}

void rt_redis_tls_close(redisContext *c)
{
    tls_conn_t *t = c->reader->privdata;
    /* A close_notify on a healthy connection (never waited for); after an error OpenSSL
     * must not be asked for one. */
    if (!c->err)
        SSL_shutdown(t->ssl);
    ERR_clear_error();
    SSL_free(t->ssl);
    free(t);
    c->reader->privdata = NULL;
}

redisReply *rt_redis_command(redisContext *c, const char *format, ...)
{
    va_list ap;
    va_start(ap, format);
    int rc = redisvAppendCommand(c, format, ap);
    va_end(ap);
    void *reply = NULL;
    return rc == REDIS_OK && rt_redis_get_reply(c, &reply) == REDIS_OK ? reply : NULL;
}

const char *rt_redis_node_host(const redisReply *node, const char *asked)
{
    if ((node->type != REDIS_REPLY_ARRAY) || node->elements < 2)
        return NULL;
    const redisReply *endpoint = node->element[0];
    if (endpoint->type == REDIS_REPLY_NIL ||
        (endpoint->type == REDIS_REPLY_STRING && !endpoint->len))
        return asked;
    if (endpoint->type != REDIS_REPLY_STRING)
        return NULL;
    if (strcmp(endpoint->str, "?") != 0)
        return endpoint->str;
    /* The metadata: names and values in turn. */
    const redisReply *meta = node->elements > 3 ? node->element[3] : NULL;
    if (meta != NULL && meta->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i + 1 < meta->elements; i += 2) {
            const redisReply *name = meta->element[i], *value = meta->element[i + 1];
            if (name->type == REDIS_REPLY_STRING && strcmp(name->str, "ip") == 0 &&
                value->type == REDIS_REPLY_STRING && value->len)
                return value->str;
        }
    return asked;
}

redisReply *rt_redis_command_argv(redisContext *c, int argc, const char **argv,
                                  const size_t *argvlen)
{
    void *reply = NULL;
    return redisAppendCommandArgv(c, argc, argv, argvlen) == REDIS_OK &&
                   rt_redis_get_reply(c, &reply) == REDIS_OK
               ? reply
               : NULL;
}

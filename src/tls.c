/* SPDX-License-Identifier: MIT */
/*
 * TLS with OpenSSL: server contexts built from the ssl_* settings, and the per-connection
 * transport conn.c calls instead of read()/sendmsg() on TLS listeners.
 *
 * Everything is non-blocking inside the event loop. OpenSSL may need the socket writable
 * to make progress on a read (and the reverse); the transport reports that through the
 * connection's tls_wants so the loop watches the right event. A connection's record
 * buffers (about 34 KiB) stay while it receives and are freed once it has received nothing
 * and has nothing queued for a while (eddy__tls_conn_idle), which keeps idle TLS
 * connections small: with
 * SSL_MODE_RELEASE_BUFFERS OpenSSL would free and reallocate them around every record
 * (about 1,200 instructions of a 20-byte wss echo). Read-ahead lets OpenSSL take all the socket
 * holds in one read (a record header and body cost two reads without it); the records it buffers
 * are drained through eddy__tls_pending, since the socket no longer signals them.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "log.h"
#include "tls.h"

/* The most recent OpenSSL error as text (the queue is cleared). */
static const char *ssl_error_text(char *buf, size_t cap)
{
    unsigned long err = ERR_get_error();
    unsigned long next;
    while ((next = ERR_get_error()) != 0)
        err = next;
    if (err == 0)
        return "unknown error";
    ERR_error_string_n(err, buf, cap);
    return buf;
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    /* HTTP/1.1 only: HTTPS and WSS share the port, and WebSocket needs HTTP/1.1. */
    static const unsigned char ours[] = "\x08http/1.1";
    if (SSL_select_next_proto((unsigned char **)out, outlen, ours, sizeof(ours) - 1, in, inlen) ==
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_OK;
    return SSL_TLSEXT_ERR_NOACK;
}

/* The version named by name[0..len), or 0. */
static int parse_version(const char *name, size_t len)
{
    if (len == 7 && strncasecmp(name, "TLSv1.2", 7) == 0)
        return TLS1_2_VERSION;
    if (len == 7 && strncasecmp(name, "TLSv1.3", 7) == 0)
        return TLS1_3_VERSION;
    return 0;
}

/* Sets the protocol range from ssl_protocols ("TLSv1.2,TLSv1.3"). */
static int apply_protocols(eddy_server_t *srv, SSL_CTX *ctx, const char *list)
{
    int min = 0, max = 0;
    /* Read in place, name by name: the list may be of any length. */
    for (const char *p = list + strspn(list, ", "); *p != '\0'; p += strspn(p, ", ")) {
        size_t len = strcspn(p, ", ");
        int v = parse_version(p, len);
        if (v == 0) {
            eddy__log(srv, EDDY__LOG_ERROR,
                      "ssl_protocols: unknown protocol \"%.*s\" (TLSv1.2 or "
                      "TLSv1.3)",
                      (int)len, p);
            return EDDY_EVALUE;
        }
        p += len;
        min = min == 0 || v < min ? v : min;
        max = v > max ? v : max;
    }
    if (min == 0)
        return EDDY_EVALUE;
    SSL_CTX_set_min_proto_version(ctx, min);
    SSL_CTX_set_max_proto_version(ctx, max);
    return 0;
}

int eddy__tls_ctx_new(eddy_server_t *srv, const char *cert_file, const char *key_file,
                      struct ssl_ctx_st **out)
{
    const eddy__options_t *opts = &srv->opts;
    char err[256];
    *out = NULL;
    if (cert_file == NULL || key_file == NULL) {
        eddy__log(srv, EDDY__LOG_ERROR, "a TLS listener needs ssl_cert_file and ssl_key_file");
        return EDDY_EINVAL;
    }
    /* Check readability first, so the error names the file and the reason plainly. */
    const char *files[2] = {cert_file, key_file};
    for (int i = 0; i < 2; i++) {
        if (access(files[i], R_OK) != 0) {
            int e = errno;
            eddy__log(srv, EDDY__LOG_ERROR, "cannot read %s %s: %s",
                      i == 0 ? "ssl_cert_file" : "ssl_key_file", files[i], strerror(e));
            return -e;
        }
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL)
        return EDDY_ENOMEM;
    int rc = EDDY_EINVAL;
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        eddy__log(srv, EDDY__LOG_ERROR, "ssl_cert_file %s: %s", cert_file,
                  ssl_error_text(err, sizeof(err)));
        goto fail;
    }
    /* OpenSSL notices a key of another certificate while loading it, or when checking. */
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1 &&
        ERR_GET_REASON(ERR_peek_last_error()) != X509_R_KEY_VALUES_MISMATCH) {
        eddy__log(srv, EDDY__LOG_ERROR, "ssl_key_file %s: %s", key_file,
                  ssl_error_text(err, sizeof(err)));
        goto fail;
    }
    if (ERR_peek_last_error() != 0 || SSL_CTX_check_private_key(ctx) != 1) {
        eddy__log(srv, EDDY__LOG_ERROR, "ssl_key_file %s does not match ssl_cert_file %s: %s",
                  key_file, cert_file, ssl_error_text(err, sizeof(err)));
        goto fail;
    }
    if ((rc = apply_protocols(srv, ctx,
                              opts->ssl_protocols ? opts->ssl_protocols : "TLSv1.2,TLSv1.3")) != 0)
        goto fail;
    if (opts->ssl_ciphers != NULL && SSL_CTX_set_cipher_list(ctx, opts->ssl_ciphers) != 1) {
        eddy__log(srv, EDDY__LOG_ERROR, "ssl_ciphers \"%s\": %s", opts->ssl_ciphers,
                  ssl_error_text(err, sizeof(err)));
        rc = EDDY_EVALUE;
        goto fail;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    ERR_clear_error(); /* the loops' SSL_get_error() needs their queue empty */
    *out = ctx;
    return 0;
fail:
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return rc;
}

int eddy__tls_client_ctx_new(const char *ca_file, const char *cert_file, const char *key_file,
                             bool insecure, struct ssl_ctx_st **out)
{
    char err[256];
    *out = NULL;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL)
        return EDDY_ENOMEM;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_verify(ctx, insecure ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
    int ok = ca_file != NULL ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
                             : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1 && !insecure) {
        fprintf(stderr, "eddy: client TLS: cannot load %s: %s\n",
                ca_file ? ca_file : "the system's CA store", ssl_error_text(err, sizeof(err)));
        SSL_CTX_free(ctx);
        return EDDY_EINVAL;
    }
    if (cert_file != NULL &&
        (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1 ||
         SSL_CTX_use_PrivateKey_file(ctx, key_file ? key_file : cert_file, SSL_FILETYPE_PEM) != 1 ||
         SSL_CTX_check_private_key(ctx) != 1)) {
        fprintf(stderr, "eddy: client TLS: certificate %s, key %s: %s\n", cert_file,
                key_file ? key_file : cert_file, ssl_error_text(err, sizeof(err)));
        SSL_CTX_free(ctx);
        return EDDY_EINVAL;
    }
    ERR_clear_error();
    *out = ctx;
    return 0;
}

int eddy__tls_conn_connect(eddy__conn_t *conn, const char *host, bool verify)
{
    SSL *ssl = conn->tls;
    SSL_set_connect_state(ssl);
    /* SNI is for names only (RFC 6066 3); the name or the address is what is verified. */
    unsigned char addr[16];
    bool literal = inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
    if (!literal && SSL_set_tlsext_host_name(ssl, host) != 1)
        return EDDY_ENOMEM;
    if (verify) {
        X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
        int ok = literal ? X509_VERIFY_PARAM_set1_ip_asc(param, host)
                         : X509_VERIFY_PARAM_set1_host(param, host, 0);
        if (ok != 1)
            return EDDY_ENOMEM;
    }
    return 0;
}

long eddy__tls_verify_result(const eddy__conn_t *conn, const char **text)
{
    long result = SSL_get_verify_result(conn->tls);
    *text = X509_verify_cert_error_string(result);
    return result;
}

void eddy__tls_ctx_free(struct ssl_ctx_st *ctx)
{
    SSL_CTX_free(ctx);
}

void eddy__tls_ctx_ref(struct ssl_ctx_st *ctx)
{
    SSL_CTX_up_ref(ctx);
}

/*
 * OpenSSL's socket BIO writes with write(), which raises SIGPIPE when the peer is gone and
 * would kill an application that did not ignore it. This BIO is the same but for writes,
 * which use send(MSG_NOSIGNAL), like the plain transport.
 */
static BIO_METHOD *nosignal_method;
static pthread_once_t nosignal_once = PTHREAD_ONCE_INIT;

static int nosignal_write(BIO *bio, const char *data, int len)
{
    int fd = -1;
    BIO_get_fd(bio, &fd);
    int n = (int)send(fd, data, (size_t)len, MSG_NOSIGNAL);
    BIO_clear_retry_flags(bio);
    if (n <= 0 && BIO_sock_should_retry(n))
        BIO_set_retry_write(bio);
    return n;
}

static void nosignal_method_init(void)
{
    const BIO_METHOD *base = BIO_s_socket();
    BIO_METHOD *m = BIO_meth_new(BIO_TYPE_SOCKET, "eddy socket");
    if (m == NULL)
        return;
    BIO_meth_set_write(m, nosignal_write);
    BIO_meth_set_read(m, BIO_meth_get_read(base));
    BIO_meth_set_puts(m, BIO_meth_get_puts(base));
    BIO_meth_set_ctrl(m, BIO_meth_get_ctrl(base));
    BIO_meth_set_create(m, BIO_meth_get_create(base));
    BIO_meth_set_destroy(m, BIO_meth_get_destroy(base));
    nosignal_method = m;
}

int eddy__tls_conn_start(eddy__conn_t *conn, struct ssl_ctx_st *ctx)
{
    pthread_once(&nosignal_once, nosignal_method_init);
    SSL *ssl = SSL_new(ctx);
    BIO *bio = nosignal_method != NULL ? BIO_new(nosignal_method) : NULL;
    if (ssl == NULL || bio == NULL) {
        SSL_free(ssl);
        BIO_free(bio);
        return EDDY_ENOMEM;
    }
    BIO_set_fd(bio, conn->io.fd, BIO_NOCLOSE);
    SSL_set_bio(ssl, bio, bio);
    SSL_set_accept_state(ssl);
    conn->tls = ssl;
    conn->tls_handshaking = true;
    return 0;
}

void eddy__tls_conn_free(eddy__conn_t *conn)
{
    SSL_free(conn->tls);
    conn->tls = NULL;
}

/* OpenSSL's text for the last EDDY_EPROTO of this thread. */
static _Thread_local char last_error[256];

/* Maps an SSL_ERROR_* to the events to wait for, or a negative error. */
static int want(eddy__conn_t *conn, int ret)
{
    int err = SSL_get_error(conn->tls, ret);
    switch (err) {
    case SSL_ERROR_WANT_READ:
        conn->tls_wants = EDDY__IO_READ;
        return -EAGAIN;
    case SSL_ERROR_WANT_WRITE:
        conn->tls_wants = EDDY__IO_WRITE;
        return -EAGAIN;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        ERR_clear_error();
        return errno != 0 ? -errno : -ECONNRESET;
    default:
        ssl_error_text(last_error, sizeof(last_error));
        return EDDY_EPROTO;
    }
}

const char *eddy__tls_last_error(void)
{
    return last_error;
}

int eddy__tls_handshake(eddy__conn_t *conn)
{
    conn->tls_wants = 0;
    ERR_clear_error();
    int ret = SSL_do_handshake(conn->tls);
    if (ret == 1) {
        conn->tls_handshaking = false;
        return 1;
    }
    int rc = want(conn, ret);
    return rc == 0 ? EDDY_EPROTO : rc;
}

/*
 * SSL_read and SSL_write run without ERR_clear_error() before them: in OpenSSL 3 it costs
 * about 800 instructions a call (a tenth of a 20-byte wss echo). SSL_get_error() needs an
 * empty queue, and it stays empty on the loop threads: want() drains it after every
 * failure, and the handshake, the shutdown and the context set-up clear what they leave.
 */
ssize_t eddy__tls_read(eddy__conn_t *conn, void *buf, size_t cap)
{
    conn->tls_wants = 0;
    int ret = SSL_read(conn->tls, buf, (int)EDDY__MIN(cap, (size_t)INT32_MAX));
    if (ret > 0)
        return ret;
    return want(conn, ret);
}

bool eddy__tls_pending(eddy__conn_t *conn)
{
    return SSL_has_pending(conn->tls) == 1;
}

/* The most plaintext one TLS record carries. */
#define RECORD_PAYLOAD 16384

/*
 * One SSL_write per piece made a record per frame: a fan-out of 64 small frames cost 64
 * records (64 headers, MACs and encryptions) where one would do. Pieces shorter than a
 * record are packed into a record-sized buffer and written together; a piece of a record
 * or more goes to SSL_write as it is (OpenSSL cuts it into full records). A retry after
 * SSL_ERROR_WANT_WRITE starts with the same bytes, at least as many as before (the queue
 * only grows, and conn_flush's budget is whole again): what OpenSSL asks of a retry, with
 * SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER letting the buffer be another one.
 */
ssize_t eddy__tls_writev(eddy__conn_t *conn, const struct iovec *iov, int n)
{
    char record[RECORD_PAYLOAD];
    ssize_t total = 0;
    int i = 0;
    size_t offset = 0; /* into iov[i] */
    conn->tls_wants = 0;
    while (i < n) {
        const char *data = (const char *)iov[i].iov_base + offset;
        size_t len = iov[i].iov_len - offset;
        if (len >= RECORD_PAYLOAD) {
            len = EDDY__MIN(len, (size_t)INT32_MAX);
        } else {
            /* Pack this piece and those after it, up to a full record. */
            size_t packed = 0;
            while (i < n && packed < RECORD_PAYLOAD) {
                size_t take = EDDY__MIN(iov[i].iov_len - offset, RECORD_PAYLOAD - packed);
                memcpy(record + packed, (const char *)iov[i].iov_base + offset, take);
                packed += take;
                offset += take;
                if (offset == iov[i].iov_len) {
                    i++;
                    offset = 0;
                }
            }
            data = record;
            len = packed;
        }
        int ret = SSL_write(conn->tls, data, (int)len);
        if (ret <= 0) {
            int rc = want(conn, ret);
            if (total > 0 && rc == -EAGAIN)
                return total;
            return rc == 0 ? -EPIPE : rc;
        }
        total += ret;
        if ((size_t)ret < len)
            return total; /* partial: the caller accounts for it and calls again */
        if (data != record) {
            offset += len; /* packed pieces were stepped over as they were copied */
            if (offset == iov[i].iov_len) {
                i++;
                offset = 0;
            }
        }
    }
    return total;
}

void eddy__tls_conn_idle(eddy__conn_t *conn, uint64_t quiet_ms)
{
    if (conn->tls == NULL || conn->tls_handshaking || conn->out.tail != NULL ||
        conn->loop->now_ms - atomic_load_explicit(&conn->last_recv_ms, memory_order_relaxed) <
            quiet_ms)
        return;
    /* Refused (and harmless) while a record is half read or half written. */
    SSL_free_buffers(conn->tls);
}

void eddy__tls_shutdown(eddy__conn_t *conn)
{
    /* Best effort: a close_notify alert, so the peer sees a clean end of the stream. */
    ERR_clear_error();
    if (!conn->tls_handshaking)
        SSL_shutdown(conn->tls);
    ERR_clear_error();
}

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
#include "tls13.h"

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

/*
 * A TLS 1.3 server connection's records after the handshake are sealed and opened by
 * tls13.c, not by OpenSSL: at 20 bytes, SSL_read and SSL_write spent about 12,400 of the
 * 13,300 instructions of a wss echo, two thirds of them in OpenSSL's record layer rather
 * than in the cipher. OpenSSL still makes the whole handshake. Its keylog callback hands
 * over the application traffic secrets, and its message callback counts the records it
 * protected with them: those after each side's Finished (the server's session tickets).
 * Read-ahead is off until then, so that OpenSSL holds no record of the client's it did
 * not process. Anything unexpected (TLS 1.2, another cipher suite, a count that does not
 * add up, no memory) leaves the connection to OpenSSL, as before. What the callbacks
 * gather lives only until the hand-over (tls_handover_t); tls_fast_t is what stays.
 */
typedef struct tls_handover {
    uint8_t client_secret[EDDY__TLS13_SECRET_MAX];
    uint8_t server_secret[EDDY__TLS13_SECRET_MAX];
    uint8_t client_secret_len;
    uint8_t server_secret_len;
    int records_written; /* after our Finished; -1 before it */
    int records_read;    /* after the client's Finished; -1 before it */
} tls_handover_t;

/* A connection's records after the hand-over. */
typedef struct tls_fast {
    eddy__tls13_t *rec;
    bool update_owed;      /* the peer asked for a KeyUpdate: ours precedes our next record */
    bool peer_closed;      /* close_notify received */
    uint8_t handshake_len; /* bytes of a handshake message received so far: */
    uint8_t handshake[5];  /* it may be cut across records (RFC 8446 5.1) */
    /* Plaintext of an opened record the caller had no room for, handed out first. */
    uint8_t *plain;
    size_t plain_off, plain_len;
    /* Received bytes not opened yet: whole records that did not fit the caller's buffer,
     * and a record not whole yet (at least EDDY__TLS13_RECORD_MAX bytes of room, so that
     * its rest is read straight in). */
    uint8_t *cipher;
    size_t cipher_len;
    /* Sealed records the socket did not take; their plaintext (unsent_plain bytes) is
     * reported written once they are all sent, as SSL_write does. */
    uint8_t *unsent;
    size_t unsent_off, unsent_len, unsent_plain;
} tls_fast_t;

static int handover_index = -1;
static pthread_once_t handover_index_once = PTHREAD_ONCE_INIT;

static void handover_index_init(void)
{
    handover_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/* What a handshake gathers for the hand-over, or NULL when it will not be handed over. */
static tls_handover_t *handover_of(const SSL *ssl)
{
    return handover_index >= 0 ? SSL_get_ex_data(ssl, handover_index) : NULL;
}

/* The record layer of a connection whose records it carries, or NULL. */
static tls_fast_t *records_of(const eddy__conn_t *conn)
{
    return conn->tls_records ? conn->tls : NULL;
}

/* Detaches h from ssl (whose callbacks fed it during the handshake) and frees it, its
 * secrets wiped. */
static void handover_free(SSL *ssl, tls_handover_t *h)
{
    SSL_set_ex_data(ssl, handover_index, NULL);
    SSL_set_msg_callback(ssl, NULL);
    OPENSSL_cleanse(h, sizeof(*h));
    free(h);
}

static void fast_free(tls_fast_t *f)
{
    eddy__tls13_free(f->rec);
    free(f->plain);
    free(f->cipher);
    free(f->unsent);
    OPENSSL_cleanse(f, sizeof(*f));
    free(f);
}

/* Decodes the secret at the end of an NSS key log line, "LABEL <client random> <secret>". */
static uint8_t parse_secret(const char *line, uint8_t *out)
{
    const char *hex = strrchr(line, ' ');
    if (hex == NULL)
        return 0;
    hex++;
    size_t len = strlen(hex);
    if (len % 2 != 0 || len / 2 > EDDY__TLS13_SECRET_MAX)
        return 0;
    for (size_t i = 0; i < len / 2; i++) {
        int hi = OPENSSL_hexchar2int((unsigned char)hex[2 * i]);
        int lo = OPENSSL_hexchar2int((unsigned char)hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return 0;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return (uint8_t)(len / 2);
}

static void keylog(const SSL *ssl, const char *line)
{
    static const char client[] = "CLIENT_TRAFFIC_SECRET_0 ";
    static const char server[] = "SERVER_TRAFFIC_SECRET_0 ";
    tls_handover_t *h = handover_of(ssl);
    if (h == NULL)
        return;
    if (strncmp(line, client, sizeof(client) - 1) == 0)
        h->client_secret_len = parse_secret(line, h->client_secret);
    else if (strncmp(line, server, sizeof(server) - 1) == 0)
        h->server_secret_len = parse_secret(line, h->server_secret);
}

static void count_records(int write_p, int version, int content_type, const void *buf, size_t len,
                          SSL *ssl, void *arg)
{
    (void)version;
    (void)ssl;
    tls_handover_t *h = arg;
    int *count = write_p ? &h->records_written : &h->records_read;
    if (content_type == SSL3_RT_HEADER) {
        if (*count >= 0)
            (*count)++;
    } else if (content_type == SSL3_RT_HANDSHAKE && len > 0 &&
               *(const uint8_t *)buf == SSL3_MT_FINISHED) {
        *count = 0;
    }
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
    SSL_CTX_set_keylog_callback(ctx, keylog); /* hands TLS 1.3 secrets to the record layer */
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
    if (SSL_CTX_get_keylog_callback(ctx) == keylog) {
        /* A server's: its records may move to tls13.c after the handshake. */
        pthread_once(&handover_index_once, handover_index_init);
        tls_handover_t *h = handover_index >= 0 ? calloc(1, sizeof(*h)) : NULL;
        if (h != NULL && SSL_set_ex_data(ssl, handover_index, h) == 1) {
            h->records_written = h->records_read = -1;
            SSL_set_msg_callback(ssl, count_records);
            SSL_set_msg_callback_arg(ssl, h);
            SSL_set_read_ahead(ssl, 0);
        } else {
            free(h); /* OpenSSL carries this connection's records */
        }
    }
    conn->tls = ssl;
    conn->tls_handshaking = true;
    return 0;
}

void eddy__tls_conn_free(eddy__conn_t *conn)
{
    tls_fast_t *f = records_of(conn);
    if (f != NULL) {
        fast_free(f);
        conn->tls = NULL;
        conn->tls_records = false;
        return;
    }
    tls_handover_t *h = handover_of(conn->tls);
    if (h != NULL)
        handover_free(conn->tls, h);
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

/* Hands the records of a finished handshake to tls13.c if it all adds up (see tls_fast_t),
 * and frees OpenSSL's SSL (about 12 KB of heap, its cipher contexts included), which nothing
 * needs afterwards; else they stay with OpenSSL, with read-ahead. */
static void take_over(eddy__conn_t *conn, tls_handover_t *h)
{
    SSL *ssl = conn->tls;
    const SSL_CIPHER *cipher = SSL_get_current_cipher(ssl);
    uint16_t suite = cipher != NULL ? SSL_CIPHER_get_protocol_id(cipher) : 0;
    size_t secret_len;
    tls_fast_t *f = NULL;
    bool ok = SSL_version(ssl) == TLS1_3_VERSION &&
              eddy__tls13_suite_supported(suite, &secret_len) &&
              h->client_secret_len == secret_len && h->server_secret_len == secret_len &&
              h->records_read == 0 && h->records_written >= 0 && SSL_has_pending(ssl) == 0 &&
              (f = calloc(1, sizeof(*f))) != NULL &&
              eddy__tls13_new(suite, h->client_secret, h->server_secret, secret_len, 0,
                              (uint64_t)h->records_written, &f->rec) == 0;
    handover_free(ssl, h);
    if (!ok) {
        free(f);
        SSL_set_read_ahead(ssl, 1);
        return;
    }
    SSL_free(ssl); /* it sends nothing; the socket is not its to close (BIO_NOCLOSE) */
    conn->tls = f;
    conn->tls_records = true;
}

/* The loop's buffers for the records of its TLS 1.3 connections: those received in one
 * read, and those sealed for one write (a KeyUpdate and four full records). */
#define FAST_IN_CAP      65536
#define FAST_OUT_RECORDS 4
#define FAST_OUT_CAP     (32 + FAST_OUT_RECORDS * (EDDY__TLS13_PLAIN_MAX + EDDY__TLS13_OVERHEAD))

typedef struct tls_loop {
    uint8_t in[FAST_IN_CAP];
    uint8_t out[FAST_OUT_CAP];
} tls_loop_t;

static tls_loop_t *tls_loop(eddy__loop_t *loop)
{
    tls_loop_t *tl = eddy__loop_slot(loop, EDDY__SLOT_TLS);
    if (tl == NULL)
        tl = eddy__loop_slot_make(loop, EDDY__SLOT_TLS, sizeof(*tl), NULL);
    return tl;
}

/* A key is updated before this many records (RFC 8446 section 5.5: AES-GCM's safe limit
 * is 2^24.5 full-size records per key). */
#define KEY_RECORD_LIMIT (UINT64_C(1) << 24)

static const char *alert_text(int alert)
{
    switch (alert) {
    case EDDY__TLS13_UNEXPECTED_MESSAGE:
        return "unexpected message";
    case EDDY__TLS13_BAD_RECORD_MAC:
        return "bad record MAC";
    case EDDY__TLS13_RECORD_OVERFLOW:
        return "record overflow";
    case EDDY__TLS13_ILLEGAL_PARAMETER:
        return "illegal parameter";
    case EDDY__TLS13_DECODE_ERROR:
        return "decode error";
    default:
        return "internal error";
    }
}

/* Sends an alert (level, description) in a record of its own, best effort: the connection
 * is ending, and a record already half sent would be corrupted by one in its middle. */
static void send_alert(eddy__conn_t *conn, tls_fast_t *f, uint8_t level, uint8_t desc)
{
    uint8_t rec[EDDY__TLS13_OVERHEAD + 2];
    if (f->unsent != NULL)
        return;
    rec[EDDY__TLS13_HEADER] = level;
    rec[EDDY__TLS13_HEADER + 1] = desc;
    size_t len = eddy__tls13_seal(f->rec, EDDY__TLS13_ALERT, rec, 2);
    if (len > 0) {
        ssize_t ignored = send(conn->io.fd, rec, len, MSG_NOSIGNAL);
        (void)ignored;
    }
}

/* A protocol error of ours to report: the alert to the peer, the text to the log. */
static int fast_fail(eddy__conn_t *conn, tls_fast_t *f, int alert)
{
    snprintf(last_error, sizeof(last_error), "TLS 1.3 record: %s", alert_text(alert));
    send_alert(conn, f, 2, (uint8_t)alert);
    return EDDY_EPROTO;
}

/* What a record that is not application data means: 0 to go on, 1 at close_notify, or a
 * negated alert. p (len bytes) is scratch the caller may overwrite. */
static int control_record(eddy__conn_t *conn, tls_fast_t *f, uint8_t type, const uint8_t *p,
                          size_t len)
{
    if (type == EDDY__TLS13_ALERT) {
        if (len != 2)
            return -EDDY__TLS13_DECODE_ERROR;
        if (p[1] == 0) {
            f->peer_closed = true; /* what follows close_notify is ignored (RFC 8446 6.1) */
            return 1;
        }
        if (p[1] == 90) /* user_canceled: a close_notify follows */
            return 0;
        snprintf(last_error, sizeof(last_error), "TLS 1.3 record: the peer sent alert %u", p[1]);
        return EDDY_EPROTO;
    }
    if (type != EDDY__TLS13_HANDSHAKE || len == 0)
        return -EDDY__TLS13_UNEXPECTED_MESSAGE;
    /* A client sends one handshake message after its Finished: KeyUpdate (type 24, length
     * 1), which must end its record since the key changes after it (RFC 8446 4.6.3 and
     * 5.1). Post-handshake authentication is never requested. */
    uint8_t *msg = f->handshake;
    for (size_t i = 0; i < len; i++) {
        msg[f->handshake_len++] = p[i];
        if (f->handshake_len == 1 && msg[0] != 24)
            return -EDDY__TLS13_UNEXPECTED_MESSAGE;
        if (f->handshake_len == 4 && (msg[1] != 0 || msg[2] != 0 || msg[3] != 1))
            return -EDDY__TLS13_DECODE_ERROR;
        if (f->handshake_len < 5)
            continue;
        if (msg[4] > 1)
            return -EDDY__TLS13_ILLEGAL_PARAMETER;
        if (i + 1 < len)
            return -EDDY__TLS13_UNEXPECTED_MESSAGE;
        if (eddy__tls13_update(f->rec, false) != 0)
            return -EDDY__TLS13_INTERNAL_ERROR;
        if (msg[4] == 1)
            f->update_owed = true;
        f->handshake_len = 0;
    }
    (void)conn;
    return 0;
}

/* Keeps bytes (len of them at p) in a buffer of f's own; false without memory. */
static bool keep(uint8_t **buf, const uint8_t *p, size_t len)
{
    *buf = malloc(len);
    if (*buf == NULL)
        return false;
    memcpy(*buf, p, len);
    return true;
}

/*
 * Opens the whole records of in[0..have) into buf, as many as fit cap with what got holds
 * already. Returns the offset in in of the first record not opened (or have), or a
 * negated alert, EDDY_EPROTO for an alert received, EDDY_ENOMEM.
 */
static long open_records(eddy__conn_t *conn, tls_fast_t *f, uint8_t *in, size_t have, uint8_t *buf,
                         size_t cap, size_t *got)
{
    size_t off = 0;
    while (!f->peer_closed) {
        long rec_len = eddy__tls13_record_len(in + off, have - off);
        if (rec_len < 0)
            return rec_len;
        if (rec_len == 0 || (size_t)rec_len > have - off)
            break;
        size_t room = (size_t)rec_len - EDDY__TLS13_OVERHEAD + 1;
        uint8_t *out;
        if (*got + room <= cap)
            out = buf + *got;
        else if (*got > 0)
            break; /* for the next call: eddy__tls_pending() says so */
        else
            out = in + off + EDDY__TLS13_HEADER; /* a record larger than cap: in place */
        uint8_t type;
        long len = eddy__tls13_open(f->rec, in + off, (size_t)rec_len, out, &type);
        if (len < 0)
            return len;
        off += (size_t)rec_len;
        if (f->handshake_len > 0 && type != EDDY__TLS13_HANDSHAKE)
            return -EDDY__TLS13_UNEXPECTED_MESSAGE; /* not interleaved (RFC 8446 5.1) */
        if (type != EDDY__TLS13_APPLICATION_DATA) {
            int rc = control_record(conn, f, type, out, (size_t)len);
            if (rc < 0)
                return rc;
            continue;
        }
        if (out == buf + *got) {
            *got += (size_t)len;
            continue;
        }
        /* In place: as much as cap takes, the rest handed out next. */
        size_t take = EDDY__MIN((size_t)len, cap);
        memcpy(buf, out, take);
        *got = take;
        if (take < (size_t)len) {
            if (!keep(&f->plain, out + take, (size_t)len - take))
                return EDDY_ENOMEM;
            f->plain_off = 0;
            f->plain_len = (size_t)len - take;
        }
        break;
    }
    return (long)off;
}

/* Not inlined: into conn.c's transport_read (link-time), its frame cost the plain
 * connections' read path 7 instructions a message. */
/* Keeps the len received bytes at p, not opened yet (see tls_fast_t.cipher). */
static bool keep_cipher(tls_fast_t *f, const uint8_t *p, size_t len)
{
    f->cipher = malloc(EDDY__MAX(len, (size_t)EDDY__TLS13_RECORD_MAX));
    if (f->cipher == NULL)
        return false;
    memcpy(f->cipher, p, len);
    f->cipher_len = len;
    return true;
}

/* Reads the rest of the record that begins f->cipher into it: 1 once it is whole (or its
 * header refused: opening says why), else what recv() said (0, -errno). A peer that sends
 * a record a byte at a time costs a recv() a byte, no copy. */
static ssize_t complete_record(eddy__conn_t *conn, tls_fast_t *f)
{
    for (;;) {
        long rec_len = eddy__tls13_record_len(f->cipher, f->cipher_len);
        if (rec_len < 0 || (rec_len > 0 && (size_t)rec_len <= f->cipher_len))
            return 1;
        size_t want = (rec_len == 0 ? EDDY__TLS13_HEADER : (size_t)rec_len) - f->cipher_len;
        ssize_t n;
        do
            n = recv(conn->io.fd, f->cipher + f->cipher_len, want, 0);
        while (n < 0 && errno == EINTR);
        if (n <= 0)
            return n == 0 ? 0 : -errno;
        f->cipher_len += (size_t)n;
    }
}

/* What open_records() returned, as fast_read() returns it when it is not an offset. */
static ssize_t open_failed(eddy__conn_t *conn, tls_fast_t *f, long rc)
{
    if (rc == EDDY_EPROTO || rc == EDDY_ENOMEM)
        return rc;
    return fast_fail(conn, f, (int)-rc);
}

/*
 * Reads records and opens them into buf. Records wait in f->cipher when the caller's cap
 * is reached or the last one is not whole; those go first, then one recv() of up to cap
 * bytes into the loop's buffer, whose whole records' plaintext fits cap. Not inlined: into
 * conn.c's transport_read (link-time), its frame cost the plain connections' read path 7
 * instructions a message.
 */
__attribute__((noinline)) static ssize_t fast_read(eddy__conn_t *conn, tls_fast_t *f, uint8_t *buf,
                                                   size_t cap)
{
    conn->tls_wants = 0;
    if (f->plain != NULL) {
        size_t take = EDDY__MIN(cap, f->plain_len - f->plain_off);
        memcpy(buf, f->plain + f->plain_off, take);
        f->plain_off += take;
        if (f->plain_off == f->plain_len) {
            free(f->plain);
            f->plain = NULL;
        }
        return (ssize_t)take;
    }
    size_t got = 0;
    while (!f->peer_closed) {
        if (f->cipher != NULL) {
            ssize_t rc = complete_record(conn, f);
            if (rc <= 0)
                return rc;
            long off = open_records(conn, f, f->cipher, f->cipher_len, buf, cap, &got);
            if (off < 0)
                return open_failed(conn, f, off);
            if ((size_t)off == f->cipher_len || f->peer_closed) {
                free(f->cipher);
                f->cipher = NULL;
                f->cipher_len = 0;
            } else {
                memmove(f->cipher, f->cipher + off, f->cipher_len - (size_t)off);
                f->cipher_len -= (size_t)off;
            }
        } else {
            tls_loop_t *tl = tls_loop(conn->loop);
            if (tl == NULL)
                return EDDY_ENOMEM;
            ssize_t n;
            do
                n = recv(conn->io.fd, tl->in, EDDY__MIN((size_t)FAST_IN_CAP, cap), 0);
            while (n < 0 && errno == EINTR);
            if (n <= 0)
                return n == 0 ? 0 : -errno; /* a record cut short ends the stream too */
            long off = open_records(conn, f, tl->in, (size_t)n, buf, cap, &got);
            if (off < 0)
                return open_failed(conn, f, off);
            if (off < n && !f->peer_closed && !keep_cipher(f, tl->in + off, (size_t)(n - off)))
                return EDDY_ENOMEM;
        }
        if (got > 0)
            return (ssize_t)got;
        /* Nothing for the caller yet (part of a record, a KeyUpdate): read on. */
    }
    return 0;
}

static bool fast_pending(const tls_fast_t *f)
{
    if (f->plain != NULL)
        return true;
    long rec_len = f->cipher != NULL ? eddy__tls13_record_len(f->cipher, f->cipher_len) : 0;
    return rec_len != 0 && (rec_len < 0 || (size_t)rec_len <= f->cipher_len);
}

/* Sends what the socket did not take before: 0 when all is gone, else -errno. */
static int send_unsent(eddy__conn_t *conn, tls_fast_t *f)
{
    while (f->unsent_off < f->unsent_len) {
        ssize_t n = send(conn->io.fd, f->unsent + f->unsent_off, f->unsent_len - f->unsent_off,
                         MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        f->unsent_off += (size_t)n;
    }
    free(f->unsent);
    f->unsent = NULL;
    f->unsent_off = f->unsent_len = 0;
    return 0;
}

/* Seals pieces of iov (from piece *i, byte *offset) into one record at rec, up to a full
 * one. Returns the record's length (0 if nothing was left, or OpenSSL failed: see len). */
static size_t seal_pieces(tls_fast_t *f, const struct iovec *iov, int n, int *i, size_t *offset,
                          uint8_t *rec, size_t *len)
{
    uint8_t *body = rec + EDDY__TLS13_HEADER;
    *len = 0;
    while (*i < n && *len < EDDY__TLS13_PLAIN_MAX) {
        size_t take = EDDY__MIN(iov[*i].iov_len - *offset, EDDY__TLS13_PLAIN_MAX - *len);
        memcpy(body + *len, (const char *)iov[*i].iov_base + *offset, take);
        *len += take;
        *offset += take;
        if (*offset == iov[*i].iov_len) {
            (*i)++;
            *offset = 0;
        }
    }
    return *len > 0 ? eddy__tls13_seal(f->rec, EDDY__TLS13_APPLICATION_DATA, rec, *len) : 0;
}

/*
 * iov sealed into records, FAST_OUT_RECORDS at a time in the loop's buffer, each batch
 * sent in one call, until all is written or the socket is full. Sealed records spend their
 * sequence numbers, so what the socket does not take is kept and goes first next time; the
 * bytes it carries count as written only then (the call reports what went before them, or
 * -EAGAIN), so the caller's retry starts with them (see eddy__tls_writev).
 */
__attribute__((noinline)) static ssize_t fast_writev(eddy__conn_t *conn, tls_fast_t *f,
                                                     const struct iovec *iov, int n)
{
    conn->tls_wants = 0;
    if (f->unsent != NULL) {
        int rc = send_unsent(conn, f);
        if (rc < 0)
            return rc;
        size_t done = f->unsent_plain;
        f->unsent_plain = 0;
        if (done > 0)
            return (ssize_t)done;
    }
    tls_loop_t *tl = tls_loop(conn->loop);
    if (tl == NULL)
        return EDDY_ENOMEM;
    ssize_t total = 0;
    int i = 0;
    size_t offset = 0;
    while (i < n) {
        size_t used = 0;
        if (f->update_owed || eddy__tls13_write_seq(f->rec) >= KEY_RECORD_LIMIT) {
            /* KeyUpdate, update_not_requested (RFC 8446 4.6.3), under the current key. */
            static const uint8_t key_update[5] = {24, 0, 0, 1, 0};
            memcpy(tl->out + EDDY__TLS13_HEADER, key_update, sizeof(key_update));
            used = eddy__tls13_seal(f->rec, EDDY__TLS13_HANDSHAKE, tl->out, sizeof(key_update));
            if (used == 0 || eddy__tls13_update(f->rec, true) != 0)
                return fast_fail(conn, f, EDDY__TLS13_INTERNAL_ERROR);
            f->update_owed = false;
        }
        size_t plain = 0;
        for (int r = 0; r < FAST_OUT_RECORDS && i < n; r++) {
            size_t len;
            size_t sealed = seal_pieces(f, iov, n, &i, &offset, tl->out + used, &len);
            if (sealed == 0 && len > 0)
                return fast_fail(conn, f, EDDY__TLS13_INTERNAL_ERROR);
            used += sealed;
            plain += len;
        }
        if (used == 0)
            break;
        ssize_t sent;
        do
            sent = send(conn->io.fd, tl->out, used, MSG_NOSIGNAL);
        while (sent < 0 && errno == EINTR);
        if (sent == (ssize_t)used) {
            total += (ssize_t)plain;
            continue;
        }
        if (sent < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return total > 0 ? total : -errno;
        size_t done = sent > 0 ? (size_t)sent : 0;
        if (!keep(&f->unsent, tl->out + done, used - done))
            return EDDY_ENOMEM;
        f->unsent_off = 0;
        f->unsent_len = used - done;
        f->unsent_plain = plain;
        return total > 0 ? total : -EAGAIN;
    }
    return total;
}

int eddy__tls_handshake(eddy__conn_t *conn)
{
    conn->tls_wants = 0;
    ERR_clear_error();
    int ret = SSL_do_handshake(conn->tls);
    if (ret == 1) {
        conn->tls_handshaking = false;
        tls_handover_t *h = handover_of(conn->tls);
        if (h != NULL)
            take_over(conn, h);
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
    tls_fast_t *f = records_of(conn);
    if (f != NULL)
        return fast_read(conn, f, buf, cap);
    conn->tls_wants = 0;
    int ret = SSL_read(conn->tls, buf, (int)EDDY__MIN(cap, (size_t)INT32_MAX));
    if (ret > 0)
        return ret;
    return want(conn, ret);
}

bool eddy__tls_pending(eddy__conn_t *conn)
{
    tls_fast_t *f = records_of(conn);
    if (f != NULL)
        return fast_pending(f);
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
    tls_fast_t *f = records_of(conn);
    if (f != NULL)
        return fast_writev(conn, f, iov, n);
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
    if (conn->tls == NULL || conn->tls_records || conn->tls_handshaking || conn->out.tail != NULL ||
        eddy__conn_quiet_ms(conn, conn->loop->now_ms) < quiet_ms)
        return;
    /* Refused (and harmless) while a record is half read or half written. */
    SSL_free_buffers(conn->tls);
}

void eddy__tls_shutdown(eddy__conn_t *conn)
{
    /* Best effort: a close_notify alert, so the peer sees a clean end of the stream. */
    tls_fast_t *f = records_of(conn);
    if (f != NULL) {
        send_alert(conn, f, 1, 0); /* close_notify */
        return;
    }
    ERR_clear_error();
    if (!conn->tls_handshaking)
        SSL_shutdown(conn->tls);
    ERR_clear_error();
}

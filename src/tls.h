/* SPDX-License-Identifier: MIT */
/*
 * TLS (tls.c): server contexts and the per-connection transport. The read/write functions
 * behave like read() and writev(): bytes, 0 for end of stream, -EAGAIN when OpenSSL waits
 * for conn->tls_wants, or another negative error.
 */
#ifndef EDDY_TLS_H
#define EDDY_TLS_H

#include <stdbool.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "conn.h"

struct ssl_ctx_st; /* OpenSSL's SSL_CTX and SSL, kept opaque here */
struct ssl_st;

/* A server context from cert_file and key_file (PEM) and the server's ssl_ciphers and
 * ssl_protocols. Returns 0, EDDY_EINVAL, EDDY_EVALUE, EDDY_ENOMEM or -errno (an unreadable
 * file), the reason logged; any thread (it leaves this thread's OpenSSL error queue empty). */
int eddy__tls_ctx_new(eddy_server_t *srv, const char *cert_file, const char *key_file,
                      struct ssl_ctx_st **out);
/* A reference more to ctx (SSL_CTX_up_ref). */
void eddy__tls_ctx_ref(struct ssl_ctx_st *ctx);
void eddy__tls_ctx_free(struct ssl_ctx_st *ctx);
/* A client context: the server's certificate verified against ca_file (PEM) or the
 * system's store unless insecure, a client certificate if cert_file (key_file: its key,
 * NULL: in cert_file). Returns 0, EDDY_ENOMEM or EDDY_EINVAL (why printed on stderr). */
int eddy__tls_client_ctx_new(const char *ca_file, const char *cert_file, const char *key_file,
                             bool insecure, struct ssl_ctx_st **out);
/* Turns conn's TLS (made by eddy__tls_conn_start()) into the client side for host: SNI
 * for a name, and with verify the name (or address literal) checked against the
 * certificate. Returns 0 or EDDY_ENOMEM. */
int eddy__tls_conn_connect(eddy__conn_t *conn, const char *host, bool verify);
/* The certificate verification result of conn (X509_V_OK, or an X509_V_ERR_*) and its
 * text (static). */
long eddy__tls_verify_result(const eddy__conn_t *conn, const char **text);
int eddy__tls_conn_start(eddy__conn_t *conn, struct ssl_ctx_st *ctx);
void eddy__tls_conn_free(eddy__conn_t *conn);
/* Returns 1 when the handshake is complete, -EAGAIN while it goes on, else an error. */
int eddy__tls_handshake(eddy__conn_t *conn);
ssize_t eddy__tls_read(eddy__conn_t *conn, void *buf, size_t cap);
ssize_t eddy__tls_writev(eddy__conn_t *conn, const struct iovec *iov, int n);
/* OpenSSL's description of the last EDDY_EPROTO these functions returned on this thread. */
const char *eddy__tls_last_error(void);
/* True if OpenSSL holds bytes already read from the socket. */
bool eddy__tls_pending(eddy__conn_t *conn);
/* Frees the record buffers of a TLS connection (no-op on plain ones) that received nothing
 * for quiet_ms and has no output queued; OpenSSL allocates them again when needed. Loop
 * thread only. */
void eddy__tls_conn_idle(eddy__conn_t *conn, uint64_t quiet_ms);
void eddy__tls_shutdown(eddy__conn_t *conn);

#endif /* EDDY_TLS_H */

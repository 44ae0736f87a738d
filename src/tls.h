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

int eddy__tls_ctx_new(eddy_server_t *srv, struct ssl_ctx_st **out);
void eddy__tls_ctx_free(struct ssl_ctx_st *ctx);
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
void eddy__tls_shutdown(eddy__conn_t *conn);

#endif /* EDDY_TLS_H */

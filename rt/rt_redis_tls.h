/* SPDX-License-Identifier: MIT */
/*
 * TLS to Redis (rediss://, rt_broker.h "Redis URLs") under hiredis 0.14's synchronous
 * context, which has no TLS of its own: hiredis connects the TCP socket, formats commands
 * into c->obuf and parses replies with c->reader; this module does the TLS handshake on the
 * socket (OpenSSL) and, on a TLS context, the socket I/O: c->obuf goes out through
 * SSL_write, and what SSL_read decrypts is fed to c->reader.
 *
 * The rt_redis_* functions at the end are the Redis broker's one seam for socket I/O: every
 * place that would let hiredis read or write the socket (redisBufferWrite, redisBufferRead,
 * redisGetReply, redisCommand, redisCommandArgv) and redisFree goes through them. On a
 * plain context they are those hiredis calls behind one branch; on a TLS context they keep
 * hiredis' blocking semantics (a write or a reply waits, io_timeout_ms at most per wait)
 * over a non-blocking socket, so that OpenSSL's WANT_READ / WANT_WRITE never block
 * unbounded. A context is TLS when its reader's privdata (hiredis' user-settable field,
 * which its default reply functions leave alone) points to this module's state.
 *
 * Threads: a context and its TLS state belong to the thread that uses the context (the
 * broker's); an rt_redis_tls_t is read-only once made and may serve several threads.
 */
#ifndef EDDY_RT_REDIS_TLS_H
#define EDDY_RT_REDIS_TLS_H

#include <stdint.h>

#include <hiredis/hiredis.h>

#include "rt_broker.h"

/* The TLS settings of a broker: an OpenSSL client context with its CA, client certificate
 * and verification mode, and the name to verify. */
typedef struct rt_redis_tls rt_redis_tls_t;

/*
 * Makes the TLS settings of cfg (cfg->tls_* fields; the files are read now). Returns NULL
 * with a line logged on srv (NULL: stderr) naming the file and OpenSSL's reason when a file
 * cannot be read or the key does not match the certificate, or on out of memory. With
 * cfg->tls_insecure, logs a warning that certificates are not verified.
 */
rt_redis_tls_t *rt_redis_tls_new(const rt_broker_redis_config_t *cfg, eddy_server_t *srv);

/* Frees tls (NULL: nothing); the contexts it started must be freed first. */
void rt_redis_tls_free(rt_redis_tls_t *tls);

/*
 * Runs the TLS handshake on the connected context c (connected to host: the name verified
 * unless tls names another), within timeout_ms, and on success makes c a TLS context (its
 * socket non-blocking from then on) that waits at most timeout_ms per read or write.
 * Returns 0, or -1 with c->err and c->errstr saying why (the certificate and OpenSSL's
 * verification error, OpenSSL's reason, a timeout: a port without TLS may answer nothing).
 */
int rt_redis_tls_start(const rt_redis_tls_t *tls, redisContext *c, const char *host,
                       uint32_t timeout_ms);

/* The TLS halves of the seam below (TLS contexts only). */
int rt_redis_tls_write(redisContext *c, int *done);
int rt_redis_tls_read(redisContext *c);
int rt_redis_tls_get_reply(redisContext *c, void **reply);
void rt_redis_tls_close(redisContext *c);

/* Writes some of c->obuf (all of it when *done): redisBufferWrite. REDIS_OK or REDIS_ERR
 * (c->err set). */
static inline int rt_redis_write(redisContext *c, int *done)
{
    return c->reader->privdata ? rt_redis_tls_write(c, done) : redisBufferWrite(c, done);
}

/* Reads what the socket has into c->reader, once poll() said it is readable (a TLS context
 * reads every byte OpenSSL has decrypted, since poll() cannot see those): redisBufferRead.
 * REDIS_OK or REDIS_ERR (c->err set). */
static inline int rt_redis_read(redisContext *c)
{
    return c->reader->privdata ? rt_redis_tls_read(c) : redisBufferRead(c);
}

/* The next reply, writing c->obuf first and waiting for it: redisGetReply. */
static inline int rt_redis_get_reply(redisContext *c, void **reply)
{
    return c->reader->privdata ? rt_redis_tls_get_reply(c, reply) : redisGetReply(c, reply);
}

/* One command and its reply (NULL: c->err says why): redisCommand, redisCommandArgv. */
redisReply *rt_redis_command(redisContext *c, const char *format, ...);
redisReply *rt_redis_command_argv(redisContext *c, int argc, const char **argv,
                                  const size_t *argvlen);

/*
 * The host of a node in a CLUSTER SLOTS answer ([endpoint, port, id, metadata]): its
 * endpoint; for none (NULL: cluster-preferred-endpoint-type unknown-endpoint)
 * or an empty one (the node does not know its own address), asked; for "?" (host names
 * preferred, and the node has none: a misconfiguration), the "ip" its metadata gives, else
 * asked. NULL if node is not such an entry. The answer points into node or is asked.
 */
const char *rt_redis_node_host(const redisReply *node, const char *asked);

/* Frees c (its TLS state included): redisFree. */
static inline void rt_redis_free(redisContext *c)
{
    if (c->reader->privdata)
        rt_redis_tls_close(c);
    redisFree(c);
}

#endif /* EDDY_RT_REDIS_TLS_H */

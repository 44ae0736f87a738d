/* SPDX-License-Identifier: MIT */
/*
 * An HTTP client for the application's backend (the proxy's transport): POST JSON on
 * libcurl's multi interface, driven by eddy's loops through watches and timers, so that a
 * request never blocks a loop and needs no thread. Each loop has a multi handle of its
 * own (made on first use), whose connections to the backend are reused across requests.
 */
#ifndef EDDY_CMD_BACKEND_H
#define EDDY_CMD_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "eddy.h"

typedef struct backend backend_t;

/* What became of a request; each is counted (backend_stats_t). */
enum backend_error {
    BACKEND_OK = 0,        /* an answer with status 100-499 */
    BACKEND_EBUSY = 1,     /* max_requests were in flight: refused, never sent */
    BACKEND_EREFUSED = 2,  /* no connection: refused, unreachable, name not resolved */
    BACKEND_ETIMEOUT = 3,  /* no complete answer within the request's timeout */
    BACKEND_ESTATUS = 4,   /* the backend answered 500-599 (status and body given) */
    BACKEND_ETOOBIG = 5,   /* the answer's body exceeded max_body */
    BACKEND_EFAILED = 6,   /* any other transport error (malformed answer, reset, ...) */
    BACKEND_ECANCELED = 7, /* still in flight when backend_free() was called */
    BACKEND_ERRORS = 8
};

typedef struct backend_result {
    int error;        /* enum backend_error */
    long status;      /* HTTP status, 0 when there was no answer */
    const char *body; /* the answer's body (NUL-terminated), borrowed for the callback */
    size_t len;
} backend_result_t;

/* Called on the loop that posted the request, from that loop's I/O or timers (never from
 * inside backend_post_json()); with BACKEND_ECANCELED, from backend_free(). */
typedef void (*backend_cb)(const backend_result_t *res, void *arg);

typedef struct backend_stats {
    uint64_t requests;                /* accepted by backend_post_json() */
    uint64_t results[BACKEND_ERRORS]; /* outcomes, BACKEND_EBUSY included */
    uint64_t connects;                /* connections opened (the rest were reused) */
} backend_stats_t;

/* Creates a client for base_url (copied; a request's URL is base_url + path) whose
 * requests are made on srv's loops: at most max_requests in flight over all loops (> 0),
 * answers' bodies up to max_body bytes. Call before the server starts (it initialises
 * libcurl, which is not thread-safe). Returns NULL when memory is short. */
backend_t *backend_new(eddy_server_t *srv, const char *base_url, int max_requests, size_t max_body);
/*
 * POSTs body (copied, len bytes, Content-Type application/json) to base_url + path
 * (copied), on the calling loop: cb(result, arg) follows on this loop once an answer or an
 * error came, at most timeout_ms later (> 0). Call on one of the server's loop threads.
 * Returns 0 (cb will be called exactly once), or BACKEND_EBUSY (counted; cb not called),
 * or -1 (not on a loop thread, bad argument, out of memory; cb not called).
 */
int backend_post_json(backend_t *b, const char *path, const void *body, size_t len, long timeout_ms,
                      backend_cb cb, void *arg);
/* A snapshot of the counters. Any thread. */
void backend_stats(backend_t *b, backend_stats_t *out);
/* The error's name ("timeout"). */
const char *backend_error_name(int error);
/* Frees the client once the server stopped (eddy_server_start() returned) and before
 * eddy_server_free(), on the thread that started the server: requests still in flight get
 * their callback with BACKEND_ECANCELED there and then (a detached response is an orphan
 * by then, which eddy_response_close() frees). NULL is ignored. */
void backend_free(backend_t *b);

#endif /* EDDY_CMD_BACKEND_H */

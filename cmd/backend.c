/* SPDX-License-Identifier: MIT */
/*
 * The backend client (backend.h): libcurl's multi socket interface on eddy's loops. curl
 * says which sockets it waits on (socket_cb: a watch each) and when it next needs the
 * time (timer_cb: an eddy timer); both call curl_multi_socket_action(), after which the
 * finished transfers are delivered (deliver_done).
 */
#include <curl/curl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"

/* worker_num's documented upper bound (eddy.h): a slot per loop. */
#define MAX_LOOPS 256

struct request;

/* One loop's share: touched only on that loop's thread (and by backend_free()). */
struct backend_loop {
    backend_t *b;
    CURLM *multi;
    uint64_t timer_id;
    struct request *requests; /* in flight, for backend_free() */
};

struct backend {
    eddy_server_t *srv;
    char *base_url;
    int max_requests;
    size_t max_body;
    struct curl_slist *headers; /* read-only once made: shared by every transfer */
    atomic_int in_flight;
    atomic_uint_fast64_t requests;
    atomic_uint_fast64_t results[BACKEND_ERRORS];
    atomic_uint_fast64_t connects;
    struct backend_loop *loops[MAX_LOOPS];
};

struct request {
    struct request *prev, *next;
    struct backend_loop *bl;
    CURL *easy;
    backend_cb cb;
    void *arg;
    char *body; /* the answer */
    size_t len, cap;
    bool too_big;
};

const char *backend_error_name(int error)
{
    static const char *const names[BACKEND_ERRORS] = {
        "ok",     "busy",    "connection refused", "timeout", "server error", "body too big",
        "failed", "canceled"};
    return error >= 0 && error < BACKEND_ERRORS ? names[error] : "unknown";
}

backend_t *backend_new(eddy_server_t *srv, const char *base_url, int max_requests, size_t max_body)
{
    if (srv == NULL || base_url == NULL || max_requests <= 0 ||
        curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
        return NULL;
    backend_t *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return NULL;
    b->srv = srv;
    b->base_url = strdup(base_url);
    b->max_requests = max_requests;
    b->max_body = max_body;
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    /* No "Expect: 100-continue" round trip before a larger body. */
    struct curl_slist *h2 = h != NULL ? curl_slist_append(h, "Expect:") : NULL;
    b->headers = h2 != NULL ? h2 : h;
    if (b->base_url == NULL || h2 == NULL) {
        backend_free(b);
        return NULL;
    }
    return b;
}

static void count(backend_t *b, int error)
{
    atomic_fetch_add(&b->results[error], 1);
}

void backend_stats(backend_t *b, backend_stats_t *out)
{
    out->requests = atomic_load(&b->requests);
    for (int i = 0; i < BACKEND_ERRORS; i++)
        out->results[i] = atomic_load(&b->results[i]);
    out->connects = atomic_load(&b->connects);
}

static void request_free(struct request *r)
{
    struct backend_loop *bl = r->bl;
    if (r->prev != NULL)
        r->prev->next = r->next;
    else
        bl->requests = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
    curl_multi_remove_handle(bl->multi, r->easy);
    curl_easy_cleanup(r->easy);
    free(r->body);
    free(r);
    atomic_fetch_sub(&bl->b->in_flight, 1);
}

static int classify(struct request *r, CURLcode rc, long status)
{
    switch (rc) {
    case CURLE_OK:
        return status >= 500 ? BACKEND_ESTATUS : BACKEND_OK;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return BACKEND_EREFUSED;
    case CURLE_OPERATION_TIMEDOUT:
        return BACKEND_ETIMEOUT;
    case CURLE_WRITE_ERROR:
        return r->too_big ? BACKEND_ETOOBIG : BACKEND_EFAILED;
    default:
        return BACKEND_EFAILED;
    }
}

/* Delivers the transfers curl finished. A callback may post new requests: curl_multi_info_read
 * keeps returning messages until none is left. */
static void deliver_done(struct backend_loop *bl)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(bl->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        struct request *r;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        long status = 0, connects = 0;
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_getinfo(r->easy, CURLINFO_NUM_CONNECTS, &connects);
        atomic_fetch_add(&bl->b->connects, (uint64_t)connects);
        int error = classify(r, msg->data.result, status);
        count(bl->b, error);
        backend_result_t res = {.error = error,
                                .status =
                                    error == BACKEND_OK || error == BACKEND_ESTATUS ? status : 0,
                                .body = r->body != NULL ? r->body : "",
                                .len = r->len};
        backend_cb cb = r->cb;
        void *arg = r->arg;
        /* Freed first: the slot and the in-flight count are free again for a request the
         * callback makes; res.body is kept until the callback returns. */
        char *body = r->body;
        r->body = NULL;
        request_free(r);
        cb(&res, arg);
        free(body);
    }
}

static void on_socket_ready(eddy_watch_t *w, int fd, int events, void *arg)
{
    (void)w;
    struct backend_loop *bl = arg;
    int flags = ((events & EDDY_WATCH_READ) ? CURL_CSELECT_IN : 0) |
                ((events & EDDY_WATCH_WRITE) ? CURL_CSELECT_OUT : 0);
    int running;
    curl_multi_socket_action(bl->multi, fd, flags, &running);
    deliver_done(bl);
}

static int socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)easy;
    struct backend_loop *bl = userp;
    eddy_watch_t *w = socketp;
    if (what == CURL_POLL_REMOVE) {
        eddy_watch_free(w);
        curl_multi_assign(bl->multi, s, NULL);
        return 0;
    }
    int events = (what == CURL_POLL_IN || what == CURL_POLL_INOUT ? EDDY_WATCH_READ : 0) |
                 (what == CURL_POLL_OUT || what == CURL_POLL_INOUT ? EDDY_WATCH_WRITE : 0);
    if (w != NULL)
        return eddy_watch_update(w, events) == 0 ? 0 : -1;
    w = eddy_watch_new(bl->b->srv, s, events, on_socket_ready, bl);
    if (w == NULL)
        return -1;
    curl_multi_assign(bl->multi, s, w);
    return 0;
}

static void on_timer(eddy_server_t *srv, uint64_t timer_id, void *arg)
{
    (void)srv;
    (void)timer_id;
    struct backend_loop *bl = arg;
    bl->timer_id = 0;
    int running;
    curl_multi_socket_action(bl->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    deliver_done(bl);
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    struct backend_loop *bl = userp;
    if (bl->timer_id != 0)
        eddy_timer_clear(bl->b->srv, bl->timer_id);
    bl->timer_id = 0;
    if (timeout_ms >= 0) {
        bl->timer_id = eddy_timer_after(bl->b->srv, (uint64_t)timeout_ms, on_timer, bl);
        if (bl->timer_id == 0)
            return -1;
    }
    return 0;
}

/* The calling loop's share, made on first use; NULL off the loops or out of memory. */
static struct backend_loop *here(backend_t *b)
{
    int index = eddy_loop_index(b->srv);
    if (index < 0 || index >= MAX_LOOPS)
        return NULL;
    struct backend_loop *bl = b->loops[index];
    if (bl != NULL)
        return bl;
    bl = calloc(1, sizeof(*bl));
    if (bl == NULL)
        return NULL;
    bl->b = b;
    bl->multi = curl_multi_init();
    if (bl->multi == NULL) {
        free(bl);
        return NULL;
    }
    curl_multi_setopt(bl->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(bl->multi, CURLMOPT_SOCKETDATA, bl);
    curl_multi_setopt(bl->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(bl->multi, CURLMOPT_TIMERDATA, bl);
    b->loops[index] = bl;
    return bl;
}

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    struct request *r = arg;
    size_t len = size * n;
    if (r->len + len > r->bl->b->max_body) {
        r->too_big = true;
        return 0; /* curl ends the transfer with CURLE_WRITE_ERROR */
    }
    if (r->len + len + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 1024;
        while (cap < r->len + len + 1)
            cap *= 2;
        char *grown = realloc(r->body, cap);
        if (grown == NULL)
            return 0;
        r->body = grown;
        r->cap = cap;
    }
    memcpy(r->body + r->len, data, len);
    r->len += len;
    r->body[r->len] = '\0';
    return len;
}

int backend_post_json(backend_t *b, const char *path, const void *body, size_t len, long timeout_ms,
                      backend_cb cb, void *arg)
{
    if (b == NULL || path == NULL || cb == NULL || timeout_ms <= 0)
        return -1;
    struct backend_loop *bl = here(b);
    if (bl == NULL)
        return -1;
    if (atomic_fetch_add(&b->in_flight, 1) >= b->max_requests) {
        atomic_fetch_sub(&b->in_flight, 1);
        count(b, BACKEND_EBUSY);
        return BACKEND_EBUSY;
    }
    size_t url_len = strlen(b->base_url) + strlen(path) + 1;
    char *url = malloc(url_len);
    struct request *r = calloc(1, sizeof(*r));
    CURL *easy = curl_easy_init();
    if (url == NULL || r == NULL || easy == NULL) {
        free(url);
        free(r);
        curl_easy_cleanup(easy);
        atomic_fetch_sub(&b->in_flight, 1);
        return -1;
    }
    snprintf(url, url_len, "%s%s", b->base_url, path);
    *r = (struct request){.bl = bl, .easy = easy, .cb = cb, .arg = arg};
    bool ok = curl_easy_setopt(easy, CURLOPT_URL, url) == CURLE_OK &&
              curl_easy_setopt(easy, CURLOPT_PRIVATE, r) == CURLE_OK &&
              curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
              curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK &&
              curl_easy_setopt(easy, CURLOPT_HTTPHEADER, b->headers) == CURLE_OK &&
              curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len) == CURLE_OK &&
              curl_easy_setopt(easy, CURLOPT_COPYPOSTFIELDS, len ? body : "") == CURLE_OK &&
              curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, timeout_ms) == CURLE_OK &&
              curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body) == CURLE_OK &&
              curl_easy_setopt(easy, CURLOPT_WRITEDATA, r) == CURLE_OK;
    free(url); /* curl copied it */
    if (!ok || curl_multi_add_handle(bl->multi, easy) != CURLM_OK) {
        curl_easy_cleanup(easy);
        free(r);
        atomic_fetch_sub(&b->in_flight, 1);
        return -1;
    }
    r->next = bl->requests;
    if (bl->requests != NULL)
        bl->requests->prev = r;
    bl->requests = r;
    atomic_fetch_add(&b->requests, 1);
    return 0;
}

void backend_free(backend_t *b)
{
    if (b == NULL)
        return;
    for (int i = 0; i < MAX_LOOPS; i++) {
        struct backend_loop *bl = b->loops[i];
        if (bl == NULL)
            continue;
        while (bl->requests != NULL) {
            struct request *r = bl->requests;
            backend_cb cb = r->cb;
            void *arg = r->arg;
            request_free(r);
            count(b, BACKEND_ECANCELED);
            backend_result_t res = {.error = BACKEND_ECANCELED, .body = ""};
            cb(&res, arg);
        }
        if (bl->timer_id != 0)
            eddy_timer_clear(b->srv, bl->timer_id);
        /* Closes the cached connections: their watches go through socket_cb. */
        curl_multi_cleanup(bl->multi);
        free(bl);
    }
    curl_slist_free_all(b->headers);
    free(b->base_url);
    free(b);
    curl_global_cleanup();
}

/* SPDX-License-Identifier: MIT */
/*
 * The server: worker loops and their threads, listening and accepting, the event registry,
 * the methods applications call with a session id (from any thread), the heartbeat, and an
 * orderly shutdown.
 *
 * Threads: worker_num loops, loop 0 on the thread that calls eddy_server_start(), the
 * others on threads of their own. A connection lives on one loop and its callbacks run
 * there. A method called on the owning loop acts at once; called from any other thread it
 * is posted to the owning loop, which finds the connection again by id (it may be gone).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conn.h"
#include "http.h"
#include "log.h"
#include "pubsub.h"
#include "server.h"
#include "tls.h"
#include "ws.h"

#define ACCEPT_BATCH 64
/* After ENOBUFS/ENOMEM (or EMFILE/ENFILE with no spare descriptor), accepting pauses this
 * long instead of spinning on the listener. */
#define ACCEPT_PAUSE_MS 1000

/* The server's state on each loop (EDDY__SLOT_SERVER), made with the loop. */
typedef struct server_loop {
    eddy__listen_sock_t *listen_socks;
    int listen_sock_count;
    int next_handoff;           /* round-robin target when handing accepted sockets over */
    int spare_fd;               /* kept open to shed the backlog when out of descriptors */
    uint64_t accept_shed;       /* connections shed that way (logged) */
    eddy__timer_t accept_timer; /* resumes accepting after ENOBUFS/ENOMEM */
    eddy__timer_t heartbeat;
    eddy__timer_t ws_ping;    /* websocket_ping_interval: keep-alive pings */
    uint64_t ws_ping_next_ms; /* when the next round of pings is due */
    eddy__timer_t tls_sweep;  /* frees quiet TLS connections' record buffers */
} server_loop_t;

/* The loop's server state; NULL only for a loop whose making failed (server_loop_init). */
static server_loop_t *server_loop(const eddy__loop_t *loop)
{
    return eddy__loop_slot(loop, EDDY__SLOT_SERVER);
}

static void accept_resume(eddy__loop_t *loop, eddy__timer_t *timer);
static void heartbeat_check(eddy__loop_t *loop, eddy__timer_t *timer);
static void ws_ping_check(eddy__loop_t *loop, eddy__timer_t *timer);
static void tls_sweep(eddy__loop_t *loop, eddy__timer_t *timer);

/* Makes a loop and the server's state on it, with places in its timer heap for the
 * heartbeat, the keep-alive pings, the accept pause and the TLS idle sweep. Returns 0 or an EDDY_E*
 * code; on failure, eddy__loop_free() frees what was made. */
static int server_loop_init(eddy__loop_t *loop, eddy_server_t *srv, int index)
{
    int rc = eddy__loop_init(loop, srv, index);
    if (rc != 0)
        return rc;
    server_loop_t *sl = eddy__loop_slot_make(loop, EDDY__SLOT_SERVER, sizeof(*sl), NULL);
    if (sl == NULL)
        return EDDY_ENOMEM;
    sl->spare_fd = -1;
    eddy__timer_init(&sl->accept_timer, accept_resume);
    eddy__timer_init(&sl->heartbeat, heartbeat_check);
    eddy__timer_init(&sl->ws_ping, ws_ping_check);
    eddy__timer_init(&sl->tls_sweep, tls_sweep);
    if (eddy__timer_reserve(loop) != 0 || eddy__timer_reserve(loop) != 0 ||
        eddy__timer_reserve(loop) != 0 || eddy__timer_reserve(loop) != 0)
        return EDDY_ENOMEM;
    return 0;
}

/* ---- lifecycle ---- */

eddy_server_t *eddy_server_new(const char *host, int port)
{
    if (port < 0 || port > 65535)
        return NULL;
    eddy_server_t *srv = calloc(1, sizeof(*srv));
    if (srv == NULL)
        return NULL;
    srv->log_fd = STDERR_FILENO;
    srv->access_fd = -1;
    srv->warning_fd = STDERR_FILENO;
    srv->http_upgrade = &eddy__ws_upgrade; /* HTTP connections upgrade to WebSocket */
    eddy__options_init(&srv->opts);
    atomic_init(&srv->stop_requested, false);
    pthread_mutex_init(&srv->task_lock, NULL);
    pthread_mutex_init(&srv->tls_lock, NULL);
    eddy__options_publish(srv);
    eddy__registry_init(&srv->registry);
    eddy__topics_init(&srv->topics);
    /* Loop 0 exists from the start, so timers and deferred calls set up before
     * eddy_server_start() have a home. */
    srv->loop_count = 1;
    srv->loops_made = 1;
    srv->loops = calloc(EDDY__MAX_LOOPS, sizeof(*srv->loops));
    if (srv->loops != NULL)
        srv->loops[0] = calloc(1, sizeof(eddy__loop_t));
    if (srv->loops == NULL || srv->loops[0] == NULL ||
        server_loop_init(srv->loops[0], srv, 0) != 0 ||
        (host != NULL && eddy_server_add_listener(srv, host, port, 0) < 0)) {
        eddy_server_free(srv);
        return NULL;
    }
    return srv;
}

int eddy_server_add_listener(eddy_server_t *srv, const char *host, int port, int flags)
{
    if (srv->running)
        return EDDY_ERUNNING;
    if (host == NULL || port < 0 || port > 65535 || (flags & ~EDDY_LISTEN_TLS) != 0)
        return EDDY_EINVAL;
    eddy__listener_t *grown =
        realloc(srv->listeners, (size_t)(srv->listener_count + 1) * sizeof(*grown));
    if (grown == NULL)
        return EDDY_ENOMEM;
    srv->listeners = grown;
    eddy__listener_t *l = &grown[srv->listener_count];
    memset(l, 0, sizeof(*l));
    l->srv = srv;
    l->host = strdup(host);
    l->port = port;
    l->flags = flags;
    l->adopt_fd = -1;
    atomic_init(&l->fd, -1);
    if (l->host == NULL)
        return EDDY_ENOMEM;
    return srv->listener_count++;
}

int eddy_server_add_listener_fd(eddy_server_t *srv, int fd, int flags)
{
    int accepting = 0, type = 0;
    socklen_t len = sizeof(accepting);
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) != 0 || !accepting)
        return EDDY_EINVAL;
    len = sizeof(type);
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM)
        return EDDY_EINVAL;
    struct sockaddr_storage local;
    socklen_t local_len = sizeof(local);
    char host[NI_MAXHOST], port[NI_MAXSERV];
    if (getsockname(fd, (struct sockaddr *)&local, &local_len) != 0 ||
        (local.ss_family != AF_INET && local.ss_family != AF_INET6) ||
        getnameinfo((struct sockaddr *)&local, local_len, host, sizeof(host), port, sizeof(port),
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0)
        return EDDY_EINVAL;
    /* The address it is bound to becomes the listener's, so a later start (the adopted
     * socket closed with the stop before) binds it again. */
    int index = eddy_server_add_listener(srv, host, atoi(port), flags);
    if (index < 0)
        return index;
    eddy__listener_t *l = &srv->listeners[index];
    l->adopt_fd = fd;
    l->single = true;
    return index;
}

int eddy_server_listener_fd(const eddy_server_t *srv, int index)
{
    if (index < 0 || index >= srv->listener_count)
        return -1;
    return atomic_load(&srv->listeners[index].fd);
}

/* Closes a loop's listening sockets; loop 0's stay published for eddy_server_listener_fd()
 * when the hand-over (close_listeners_run) is not done yet (unpublish false). */
static void close_listen_socks_as(eddy__loop_t *loop, bool unpublish)
{
    server_loop_t *sl = server_loop(loop);
    if (sl == NULL)
        return; /* eddy_server_new() failed making the loop */
    for (int i = 0; i < sl->listen_sock_count; i++) {
        eddy__listen_sock_t *ls = &sl->listen_socks[i];
        if (loop->index == 0 && unpublish)
            atomic_store(&ls->listener->fd, -1);
        if (ls->io.fd >= 0) {
            eddy__io_set(loop, &ls->io, 0);
            eddy__io_forget(loop, &ls->io); /* freed below */
            close(ls->io.fd);
            ls->io.fd = -1;
        }
    }
    free(sl->listen_socks);
    sl->listen_socks = NULL;
    sl->listen_sock_count = 0;
    if (sl->spare_fd >= 0)
        close(sl->spare_fd);
    sl->spare_fd = -1;
}

static void close_listen_socks(eddy__loop_t *loop)
{
    close_listen_socks_as(loop, true);
}

/*
 * eddy_server_close_listeners(): loop 0 closes its sockets first, then posts the other
 * loops their part. Commands from one thread run in order, so each of them runs after the
 * connections loop 0 accepted before it closed were handed over and taken on: when the
 * last loop is done, every accepted connection is a live one, and listener_fd says -1.
 */
struct close_listeners {
    atomic_int left;
    int loops;
    eddy__cmd_t cmds[]; /* one per loop */
};

static void close_listeners_run(eddy__loop_t *loop, eddy__cmd_t *cmd)
{
    struct close_listeners *cl = (struct close_listeners *)((char *)(cmd - loop->index) -
                                                            offsetof(struct close_listeners, cmds));
    if (!loop->stopping) /* the stop closed them already */
        close_listen_socks_as(loop, false);
    if (loop->index == 0)
        for (int i = 1; i < cl->loops; i++)
            eddy__loop_post(loop->srv->loops[i], &cl->cmds[i]);
    if (atomic_fetch_sub(&cl->left, 1) == 1) {
        for (int i = 0; i < loop->srv->listener_count; i++)
            atomic_store(&loop->srv->listeners[i].fd, -1);
        free(cl);
    }
}

int eddy_server_close_listeners(eddy_server_t *srv)
{
    int loops = atomic_load(&srv->loop_count);
    struct close_listeners *cl = calloc(1, sizeof(*cl) + (size_t)loops * sizeof(eddy__cmd_t));
    if (cl == NULL)
        return EDDY_ENOMEM;
    atomic_init(&cl->left, loops);
    cl->loops = loops;
    for (int i = 0; i < loops; i++)
        cl->cmds[i].fn = close_listeners_run;
    eddy__loop_post(srv->loops[0], &cl->cmds[0]);
    return 0;
}

/*
 * eddy_server_reload_tls(): the contexts a reload replaced are freed once every loop has run
 * a command posted after the swap. A loop reads a listener's context and makes the
 * connection's SSL from it within one event, so by then none holds a replaced pointer
 * unused; SSL objects keep their own reference, so established connections keep theirs.
 */
struct tls_retire {
    atomic_int left;
    struct ssl_ctx_st **old; /* one per listener, NULL where none was replaced */
    int count;
    eddy__cmd_t cmds[]; /* one per loop */
};

static void tls_retire_run(eddy__loop_t *loop, eddy__cmd_t *cmd)
{
    struct tls_retire *r =
        (struct tls_retire *)((char *)(cmd - loop->index) - offsetof(struct tls_retire, cmds));
    if (atomic_fetch_sub(&r->left, 1) != 1)
        return;
    for (int i = 0; i < r->count; i++)
        eddy__tls_ctx_free(r->old[i]);
    free(r->old);
    free(r);
}

/* Running: ctx (its creator's reference handed over) goes to every TLS listener. */
static int tls_swap(eddy_server_t *srv, struct ssl_ctx_st *ctx)
{
    int loops = atomic_load(&srv->loop_count);
    struct tls_retire *r = calloc(1, sizeof(*r) + (size_t)loops * sizeof(eddy__cmd_t));
    if (r != NULL)
        r->old = calloc((size_t)srv->listener_count, sizeof(*r->old));
    if (r == NULL || r->old == NULL) {
        free(r);
        eddy__tls_ctx_free(ctx);
        return EDDY_ENOMEM;
    }
    r->count = srv->listener_count;
    atomic_init(&r->left, loops);
    for (int i = 0; i < srv->listener_count; i++) {
        if (!(srv->listeners[i].flags & EDDY_LISTEN_TLS))
            continue;
        eddy__tls_ctx_ref(ctx);
        r->old[i] = atomic_exchange(&srv->listeners[i].tls_ctx, ctx);
    }
    eddy__tls_ctx_free(ctx); /* the listeners hold it now */
    for (int i = 0; i < loops; i++) {
        r->cmds[i].fn = tls_retire_run;
        eddy__loop_post(srv->loops[i], &r->cmds[i]);
    }
    return 0;
}

int eddy_server_reload_tls(eddy_server_t *srv, const char *cert_file, const char *key_file)
{
    if (cert_file == NULL || key_file == NULL || *cert_file == '\0' || *key_file == '\0')
        return EDDY_EINVAL;
    pthread_mutex_lock(&srv->tls_lock);
    struct ssl_ctx_st *ctx;
    int rc = eddy__tls_ctx_new(srv, cert_file, key_file, &ctx);
    if (rc == 0 && atomic_load(&srv->running)) {
        /* The settings name the files once the run ends (other threads may read them
         * meanwhile, through eddy_server_get_options()). */
        char *cert = strdup(cert_file), *key = strdup(key_file);
        rc = cert != NULL && key != NULL ? tls_swap(srv, ctx) : EDDY_ENOMEM;
        if (rc == 0) {
            free(srv->tls_next_cert);
            free(srv->tls_next_key);
            srv->tls_next_cert = cert;
            srv->tls_next_key = key;
        } else {
            if (cert == NULL || key == NULL)
                eddy__tls_ctx_free(ctx);
            free(cert);
            free(key);
        }
    } else if (rc == 0) {
        eddy__tls_ctx_free(ctx); /* the next start loads the files again */
        rc = eddy_server_set(srv, "ssl_cert_file", cert_file);
        if (rc == 0)
            rc = eddy_server_set(srv, "ssl_key_file", key_file);
    }
    pthread_mutex_unlock(&srv->tls_lock);
    if (rc == 0)
        eddy__log(srv, EDDY__LOG_INFO, "TLS certificate %s and key %s loaded", cert_file, key_file);
    return rc;
}

static void free_tls_contexts(eddy_server_t *srv)
{
    for (int i = 0; i < srv->listener_count; i++) {
        eddy__tls_ctx_free(atomic_exchange(&srv->listeners[i].tls_ctx, NULL));
    }
}

void eddy_server_free(eddy_server_t *srv)
{
    if (srv == NULL)
        return;
    /* Work posted since the last run (or without one) still runs, each loop's as that loop,
     * so that nothing handed to eddy is lost or leaked; then the loops go. */
    for (int i = 0; srv->loops != NULL && i < srv->loops_made; i++) {
        if (srv->loops[i] == NULL)
            continue;
        eddy__current_loop = srv->loops[i];
        eddy__loop_run_pending(srv->loops[i]);
    }
    eddy__current_loop = NULL;
    for (int i = 0; srv->loops != NULL && i < srv->loops_made; i++) {
        if (srv->loops[i] == NULL)
            continue;
        close_listen_socks(srv->loops[i]);
        eddy__loop_free(srv->loops[i]);
        free(srv->loops[i]);
    }
    free(srv->loops);
    free_tls_contexts(srv);
    for (int i = 0; i < srv->listener_count; i++) {
        if (srv->listeners[i].adopt_fd >= 0) /* adopted and never used */
            close(srv->listeners[i].adopt_fd);
        free(srv->listeners[i].host);
    }
    free(srv->listeners);
    eddy__registry_free(&srv->registry);
    eddy__topics_free(&srv->topics);
    if (srv->log_fd > STDERR_FILENO)
        close(srv->log_fd);
    eddy__options_free(&srv->opts);
    pthread_mutex_destroy(&srv->task_lock);
    pthread_mutex_destroy(&srv->tls_lock);
    free(srv->tls_next_cert);
    free(srv->tls_next_key);
    free(srv);
}

int eddy_server_port(const eddy_server_t *srv)
{
    return eddy_server_listener_port(srv, 0);
}

int eddy_server_listener_port(const eddy_server_t *srv, int index)
{
    if (index < 0 || index >= srv->listener_count)
        return 0;
    return srv->listeners[index].bound_port;
}

void eddy_server_set_user_data(eddy_server_t *srv, void *user_data)
{
    srv->user_data = user_data;
}

void *eddy_server_user_data(const eddy_server_t *srv)
{
    return srv->user_data;
}

void eddy_on_start(eddy_server_t *srv, eddy_server_cb cb)
{
    srv->on_start = cb;
}
void eddy_on_shutdown(eddy_server_t *srv, eddy_server_cb cb)
{
    srv->on_shutdown = cb;
}
void eddy_on_connect(eddy_server_t *srv, eddy_connect_cb cb)
{
    srv->on_connect = cb;
}
void eddy_on_open(eddy_server_t *srv, eddy_open_cb cb)
{
    srv->on_open = cb;
}
void eddy_on_message(eddy_server_t *srv, eddy_message_cb cb)
{
    srv->on_message = cb;
}
void eddy_on_close(eddy_server_t *srv, eddy_close_cb cb)
{
    srv->on_close = cb;
}
void eddy_on_disconnect(eddy_server_t *srv, eddy_close_cb cb)
{
    srv->on_disconnect = cb;
}
void eddy_on_handshake(eddy_server_t *srv, eddy_request_cb cb)
{
    srv->on_handshake = cb;
}
void eddy_on_upgrade(eddy_server_t *srv, eddy_upgrade_cb cb)
{
    srv->on_upgrade = cb;
}
void eddy_on_request(eddy_server_t *srv, eddy_request_cb cb)
{
    srv->on_request = cb;
}
void eddy_on_drain(eddy_server_t *srv, eddy_drain_cb cb)
{
    srv->on_drain = cb;
}

/* ---- listening ---- */

static void on_accept(eddy__loop_t *loop, eddy__io_t *io, unsigned events);

/* Binds one listening socket for l (port 0: a free port, which then becomes l's port, so
 * every loop's socket for l shares it). Returns the descriptor or a negative error. */
static int bind_listener(eddy_server_t *srv, eddy__listener_t *l, bool reuse_port)
{
    if (l->adopt_fd >= 0) {
        int fd = l->adopt_fd, fl = fcntl(fd, F_GETFL);
        l->adopt_fd = -1; /* the loop's now: it closes it at stop */
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0 ||
            fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
            int err = -errno;
            close(fd);
            return err;
        }
        l->bound_port = l->port;
        return fd;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char port[8];
    snprintf(port, sizeof(port), "%d", l->bound_port ? l->bound_port : l->port);
    int gai = getaddrinfo(l->host, port, &hints, &res);
    if (gai != 0) {
        eddy__log(srv, EDDY__LOG_ERROR, "cannot resolve %s: %s", l->host, gai_strerror(gai));
        return EDDY_EINVAL;
    }
    int err = EDDY_EINVAL;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            err = -errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (reuse_port)
            setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, srv->opts.backlog) != 0) {
            err = -errno;
            close(fd);
            continue;
        }
        struct sockaddr_storage local;
        socklen_t local_len = sizeof(local);
        getsockname(fd, (struct sockaddr *)&local, &local_len);
        l->bound_port =
            ntohs(local.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&local)->sin6_port
                                              : ((struct sockaddr_in *)&local)->sin_port);
        freeaddrinfo(res);
        return fd;
    }
    freeaddrinfo(res);
    eddy__log(srv, EDDY__LOG_ERROR, "cannot listen on %s:%d: %s", l->host, l->port,
              eddy_strerror(err));
    return err;
}

static int open_loop_listeners(eddy_server_t *srv, eddy__loop_t *loop, bool reuse_port)
{
    server_loop_t *sl = server_loop(loop);
    sl->listen_socks = calloc((size_t)srv->listener_count, sizeof(*sl->listen_socks));
    if (sl->listen_socks == NULL)
        return EDDY_ENOMEM;
    for (int i = 0; i < srv->listener_count; i++) {
        eddy__listen_sock_t *ls = &sl->listen_socks[i];
        ls->io.fd = -1;
        ls->listener = &srv->listeners[i];
        sl->listen_sock_count = i + 1;
        if (loop->index > 0 && ls->listener->single)
            continue; /* loop 0 accepts for all */
        int fd = bind_listener(srv, ls->listener, reuse_port);
        if (fd < 0)
            return fd;
        ls->io = (eddy__io_t){.fd = fd, .events = 0, .cb = on_accept};
        eddy__io_set(loop, &ls->io, EDDY__IO_READ);
        if (loop->index == 0)
            atomic_store(&ls->listener->fd, fd);
    }
    return 0;
}

/* Creates the TLS contexts and binds every listener, on every loop with enable_reuse_port,
 * on loop 0 otherwise. On failure nothing stays open. */
static int open_listeners(eddy_server_t *srv)
{
    if (srv->listener_count == 0 && srv->clients_only)
        return 0;
    if (srv->listener_count == 0) {
        eddy__log(srv, EDDY__LOG_ERROR, "eddy_server_start: no listener");
        return EDDY_EINVAL;
    }
    int rc = 0;
    for (int i = 0; i < srv->listener_count && rc == 0; i++) {
        srv->listeners[i].bound_port = 0;
        if (srv->listeners[i].flags & EDDY_LISTEN_TLS) {
            struct ssl_ctx_st *ctx;
            rc = eddy__tls_ctx_new(srv, srv->opts.ssl_cert_file, srv->opts.ssl_key_file, &ctx);
            atomic_store(&srv->listeners[i].tls_ctx, ctx);
        }
    }
    bool reuse_port = srv->opts.enable_reuse_port && srv->loop_count > 1;
    int loops = reuse_port ? srv->loop_count : 1;
    for (int i = 0; i < loops && rc == 0; i++)
        rc = open_loop_listeners(srv, srv->loops[i], reuse_port);
    if (rc != 0) {
        for (int i = 0; i < srv->loop_count; i++)
            close_listen_socks(srv->loops[i]);
        free_tls_contexts(srv);
    }
    return rc;
}

/* ---- accepting ---- */

static void accept_resume(eddy__loop_t *loop, eddy__timer_t *timer)
{
    server_loop_t *sl = server_loop(loop);
    for (int i = 0; i < sl->listen_sock_count; i++) {
        eddy__listen_sock_t *ls = &sl->listen_socks[i];
        if (ls->paused && ls->io.fd >= 0) {
            ls->paused = false;
            eddy__io_set(loop, &ls->io, EDDY__IO_READ);
        }
    }
}

/*
 * Out of descriptors, a pending connection cannot even be accepted to be refused: it waits
 * in the backlog, and the level-triggered listener reports it again at once. A loop that
 * accepts keeps one spare descriptor for this moment: it closes it, accepts and closes at
 * once what is pending (those clients see their connection end rather than hang), and
 * opens it again. Returns false if there was nothing to shed with (no spare, or another
 * thread took the descriptor freed): the caller then pauses accepting.
 */
static bool shed_backlog(eddy__loop_t *loop, int listen_fd, int err)
{
    server_loop_t *sl = server_loop(loop);
    if (sl->spare_fd < 0)
        return false;
    close(sl->spare_fd);
    int shed = 0, fd;
    while (shed < ACCEPT_BATCH && (fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
        close(fd);
        shed++;
    }
    sl->spare_fd = open("/", O_RDONLY | O_CLOEXEC);
    sl->accept_shed += (uint64_t)shed;
    eddy__stat_add(&loop->stats.refused, (uint64_t)shed);
    if (shed > 0)
        eddy__log(loop->srv, EDDY__LOG_WARNING,
                  "accept: %s; closed %d pending connection(s) unserved (%" PRIu64 " so far)",
                  strerror(err), shed, sl->accept_shed);
    return shed > 0;
}

/* Creates the connection on the loop that will own it. */
static void adopt(eddy__loop_t *loop, int fd, const struct sockaddr *peer,
                  const eddy__listener_t *listener, eddy_fd_t id)
{
    eddy_server_t *srv = loop->srv;
    if (srv->opts.open_tcp_nodelay) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    eddy__conn_t *conn = eddy__conn_new(loop, fd, peer, listener, id, &eddy__http_proto);
    if (conn == NULL) {
        eddy__log(srv, EDDY__LOG_ERROR, "accept: out of memory, connection dropped");
        close(fd);
        return;
    }
    if (eddy__log_on(loop, EDDY__LOG_DEBUG)) {
        char ip[46];
        int port;
        eddy__peer_format(&conn->peer, ip, &port);
        eddy__log(srv, EDDY__LOG_DEBUG, "session#%" PRIu64 " (%s:%d): accepted on port %d%s",
                  conn->id, ip, port, listener->bound_port, conn->tls != NULL ? " (TLS)" : "");
    }
    if (srv->on_connect != NULL)
        srv->on_connect(srv, conn->id, srv->user_data);
}

struct adopt_cmd {
    eddy__cmd_t base;
    int fd;
    struct sockaddr_storage peer;
    const eddy__listener_t *listener;
    eddy_fd_t id;
};

static void adopt_cmd_run(eddy__loop_t *loop, eddy__cmd_t *cmd)
{
    struct adopt_cmd *ac = (struct adopt_cmd *)cmd;
    if (loop->stopping)
        close(ac->fd); /* accepted just before the stop */
    else
        adopt(loop, ac->fd, (struct sockaddr *)&ac->peer, ac->listener, ac->id);
    free(ac);
}

static void on_accept(eddy__loop_t *loop, eddy__io_t *io, unsigned events)
{
    eddy__listen_sock_t *ls =
        (eddy__listen_sock_t *)((char *)io - offsetof(eddy__listen_sock_t, io));
    eddy_server_t *srv = loop->srv;
    bool hand_over = (!srv->opts.enable_reuse_port || ls->listener->single) && srv->loop_count > 1;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        struct sockaddr_storage peer;
        socklen_t peer_len = sizeof(peer);
        int fd = accept4(io->fd, (struct sockaddr *)&peer, &peer_len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int err = errno;
            if (err == EINTR || err == ECONNABORTED)
                continue;
            if ((err == EMFILE || err == ENFILE) && shed_backlog(loop, io->fd, err))
                return;
            if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
                eddy__log(srv, EDDY__LOG_WARNING, "accept: %s; not accepting for %d ms",
                          strerror(err), ACCEPT_PAUSE_MS);
                ls->paused = true;
                eddy__io_set(loop, io, 0);
                eddy__timer_start(loop, &server_loop(loop)->accept_timer, ACCEPT_PAUSE_MS);
            }
            return;
        }
        size_t max_connection = eddy__max_connection(srv);
        if (atomic_load(&srv->registry.live) >= max_connection) {
            char ip[46] = "?";
            int port = 0;
            eddy__peer_t compact;
            eddy__peer_set(&compact, (struct sockaddr *)&peer);
            eddy__peer_format(&compact, ip, &port);
            eddy__log(srv, EDDY__LOG_WARNING,
                      "accept: too many connections (max_connection=%zu), refused %s:%d",
                      max_connection, ip, port);
            close(fd);
            eddy__stat_add(&loop->stats.refused, 1);
            continue;
        }
        eddy__stat_add(&loop->stats.accepted, 1);
        eddy__loop_t *target = loop;
        if (hand_over) {
            server_loop_t *sl = server_loop(loop);
            target = srv->loops[sl->next_handoff];
            sl->next_handoff = (sl->next_handoff + 1) % srv->loop_count;
        }
        /* The id is taken here, so ids follow the order connections were accepted in. */
        eddy_fd_t id = eddy__registry_next_id(&srv->registry);
        if (target == loop) {
            adopt(loop, fd, (struct sockaddr *)&peer, ls->listener, id);
            continue;
        }
        struct adopt_cmd *ac = malloc(sizeof(*ac));
        if (ac == NULL) {
            close(fd);
            continue;
        }
        *ac = (struct adopt_cmd){
            .base.fn = adopt_cmd_run, .fd = fd, .peer = peer, .listener = ls->listener, .id = id};
        eddy__loop_post(target, &ac->base);
    }
}

void eddy__server_session_closed(eddy__conn_t *conn)
{
    eddy_server_t *srv = conn->loop->srv;
    /* Swoole 4.7+: with a disconnect callback, connections that never became WebSockets
     * go there; close is for WebSocket sessions. Without one, everything gets close. */
    eddy_close_cb cb = srv->on_close;
    if (!conn->ever_established && srv->on_disconnect != NULL)
        cb = srv->on_disconnect;
    if (cb != NULL)
        cb(srv, conn->id, srv->user_data);
    eddy__pubsub_conn_closed(conn);
}

/* ---- heartbeat ---- */

static void heartbeat_check(eddy__loop_t *loop, eddy__timer_t *timer)
{
    eddy_server_t *srv = loop->srv;
    const eddy__options_t *opts = &srv->opts;
    uint64_t idle_ms = opts->heartbeat_idle_ms;
    /* Closing connections leave the map only at their final close, after this. */
    size_t it = 0;
    for (eddy__conn_t *conn; (conn = eddy__conn_next(loop, &it)) != NULL;) {
        if (conn->ending || eddy__conn_quiet_ms(conn, loop->now_ms) < idle_ms)
            continue;
        eddy__log(srv, EDDY__LOG_INFO, "session#%" PRIu64 ": idle for %g s, closed by heartbeat",
                  conn->id, opts->heartbeat_idle_ms / 1000.0);
        static const char reason[] = "idle timeout";
        conn->proto->end(conn, EDDY_WS_CLOSE_NORMAL, reason, sizeof(reason) - 1, false);
    }
    eddy__timer_start(loop, timer, opts->heartbeat_interval_ms);
}

/* ---- TLS idle sweep ---- */

/* How often quiet TLS connections give their record buffers back: a connection keeps them
 * until one to two periods after it last received (a connection that only sends may
 * reallocate them once a period). */
#define TLS_SWEEP_MS 1000

static void tls_sweep(eddy__loop_t *loop, eddy__timer_t *timer)
{
    size_t it = 0;
    for (eddy__conn_t *conn; (conn = eddy__conn_next(loop, &it)) != NULL;)
        eddy__tls_conn_idle(conn, TLS_SWEEP_MS);
    eddy__timer_start(loop, timer, TLS_SWEEP_MS);
}

/* ---- keep-alive pings ---- */

/* The ping timer's period: the interval, or the timeout when shorter, so an unanswered
 * ping is noticed within a period of its timeout. */
static uint64_t ws_ping_period(uint32_t interval_ms, uint32_t timeout_ms)
{
    return timeout_ms > 0 ? EDDY__MIN(interval_ms, timeout_ms) : interval_ms;
}

/*
 * Every websocket_ping_interval each established WebSocket gets an empty ping. Any input
 * that arrives afterwards (the pong, or any frame: last_recv_ms) answers it; with no input
 * within websocket_ping_timeout the TCP connection is dropped, as browsers and uWebSockets
 * do with a dead peer (no close frame: the peer is not listening). A connection still owing
 * an answer gets no second ping.
 */
static void ws_ping_check(eddy__loop_t *loop, eddy__timer_t *timer)
{
    /* Read once a round: eddy_server_set() may change them while running. */
    uint32_t interval_ms =
        atomic_load_explicit(&loop->srv->live_ping_interval_ms, memory_order_relaxed);
    uint32_t timeout_ms =
        atomic_load_explicit(&loop->srv->live_ping_timeout_ms, memory_order_relaxed);
    if (interval_ms == 0) /* turned off: pings owed are forgiven */
        return;
    server_loop_t *sl = server_loop(loop);
    uint64_t now = loop->now_ms;
    bool round = now >= sl->ws_ping_next_ms;
    if (round)
        sl->ws_ping_next_ms = now + interval_ms;
    size_t it = 0;
    for (eddy__conn_t *conn; (conn = eddy__conn_next(loop, &it)) != NULL;) {
        if (!eddy__ws_open(conn) || conn->ws_status != EDDY_WS_STATUS_ACTIVE ||
            eddy__ws_close_sent(conn))
            continue;
        if (conn->ping_pending) {
            uint32_t since_ping = (uint32_t)now - conn->ping_sent_ms;
            /* Answered (input since the ping), or no timeout now. */
            if (eddy__conn_quiet_ms(conn, now) <= since_ping || timeout_ms == 0) {
                conn->ping_pending = false;
            } else if (since_ping >= timeout_ms) {
                eddy__log(loop->srv, EDDY__LOG_INFO,
                          "session#%" PRIu64 ": no answer to a ping in %" PRIu32 " ms, dropped",
                          conn->id, timeout_ms);
                eddy__conn_close(conn, EDDY__CLOSE_ABORT);
                continue;
            } else {
                continue;
            }
        }
        if (round) {
            eddy__ws_push(conn, NULL, 0, EDDY_WS_OPCODE_PING, EDDY_WS_FLAG_FIN);
            conn->ping_sent_ms = (uint32_t)now;
            conn->ping_pending = timeout_ms > 0;
        }
    }
    eddy__timer_start(loop, timer, ws_ping_period(interval_ms, timeout_ms));
}

/* eddy__server_pings_changed(): each loop re-arms its ping timer with the new values. */
struct pings_changed {
    atomic_int left;
    uint32_t interval_ms, timeout_ms;
    eddy__cmd_t cmds[]; /* one per loop */
};

static void pings_changed_run(eddy__loop_t *loop, eddy__cmd_t *cmd)
{
    struct pings_changed *pc = (struct pings_changed *)((char *)(cmd - loop->index) -
                                                        offsetof(struct pings_changed, cmds));
    server_loop_t *sl = server_loop(loop);
    if (!loop->stopping) {
        eddy__timer_stop(loop, &sl->ws_ping);
        if (pc->interval_ms > 0) {
            sl->ws_ping_next_ms = loop->now_ms + pc->interval_ms;
            eddy__timer_start(loop, &sl->ws_ping, ws_ping_period(pc->interval_ms, pc->timeout_ms));
        }
    }
    if (atomic_fetch_sub(&pc->left, 1) == 1)
        free(pc);
}

int eddy__server_pings_changed(eddy_server_t *srv, uint32_t interval_ms, uint32_t timeout_ms)
{
    int loops = atomic_load(&srv->loop_count);
    struct pings_changed *pc = calloc(1, sizeof(*pc) + (size_t)loops * sizeof(eddy__cmd_t));
    if (pc == NULL)
        return EDDY_ENOMEM;
    atomic_init(&pc->left, loops);
    pc->interval_ms = interval_ms;
    pc->timeout_ms = timeout_ms;
    atomic_store_explicit(&srv->live_ping_interval_ms, interval_ms, memory_order_relaxed);
    atomic_store_explicit(&srv->live_ping_timeout_ms, timeout_ms, memory_order_relaxed);
    for (int i = 0; i < loops; i++) {
        pc->cmds[i].fn = pings_changed_run;
        eddy__loop_post(srv->loops[i], &pc->cmds[i]);
    }
    return 0;
}

/* ---- running and stopping ---- */

static void begin_shutdown(eddy__loop_t *loop)
{
    eddy_server_t *srv = loop->srv;
    server_loop_t *sl = server_loop(loop);
    loop->stopping = true;
    loop->shutdown_deadline_ms = loop->now_ms + srv->opts.websocket_close_timeout_ms;
    close_listen_socks(loop);
    eddy__timer_stop(loop, &sl->heartbeat);
    eddy__timer_stop(loop, &sl->ws_ping);
    eddy__timer_stop(loop, &sl->accept_timer);
    eddy__timer_stop(loop, &sl->tls_sweep);
    size_t it = 0;
    for (eddy__conn_t *conn; (conn = eddy__conn_next(loop, &it)) != NULL;) {
        /* Not those closing already, nor a WebSocket whose closing handshake began. */
        if (conn->ending || conn->ws_status == EDDY_WS_STATUS_CLOSING)
            continue;
        static const char reason[] = "server shutting down";
        conn->proto->end(conn, EDDY_WS_CLOSE_GOING_AWAY, reason, sizeof(reason) - 1, true);
    }
}

bool eddy__server_loop_should_exit(eddy__loop_t *loop)
{
    if (!loop->stopping) {
        if (!atomic_load(&loop->srv->stop_requested))
            return false;
        loop->now_ms = eddy__monotonic_ms();
        begin_shutdown(loop);
    }
    /* Lingering only protects data already sent from a reset; stopping need not wait. */
    eddy__loop_close_zombies(loop, false);
    if (loop->now_ms >= loop->shutdown_deadline_ms) {
        /* Peers that did not answer in time are closed without further ceremony. */
        size_t it = 0;
        for (eddy__conn_t *conn; (conn = eddy__conn_next(loop, &it)) != NULL;) {
            if (!conn->released)
                eddy__conn_close(conn, EDDY__CLOSE_ABORT);
        }
        eddy__loop_reap(loop);
        eddy__loop_close_zombies(loop, true);
    }
    eddy__loop_reap(loop); /* frees what was closed */
    if (eddy__conn_count(loop) > 0 || loop->reap_head != NULL || loop->free_head != NULL)
        return false;
    eddy__access_log_flush(loop); /* lines of the connections closed by the stop */
    return true;
}

static void prepare_loop(eddy__loop_t *loop)
{
    const eddy__options_t *opts = &loop->srv->opts;
    server_loop_t *sl = server_loop(loop);
    loop->log_level = opts->log_level;
    loop->now_ms = eddy__monotonic_ms();
    loop->now_wall_ms = (uint64_t)(eddy__wall_time() * 1000.0);
    sl->next_handoff = 0;          /* an earlier run may have had more loops */
    if (sl->listen_sock_count > 0) /* if it cannot be had, EMFILE pauses accepting */
        sl->spare_fd = open("/", O_RDONLY | O_CLOEXEC);
    if (opts->heartbeat_interval_ms > 0)
        eddy__timer_start(loop, &sl->heartbeat, opts->heartbeat_interval_ms);
    uint32_t ping_ms = atomic_load(&loop->srv->live_ping_interval_ms);
    if (ping_ms > 0) {
        sl->ws_ping_next_ms = loop->now_ms + ping_ms;
        eddy__timer_start(loop, &sl->ws_ping,
                          ws_ping_period(ping_ms, atomic_load(&loop->srv->live_ping_timeout_ms)));
    }
    for (int i = 0; i < loop->srv->listener_count; i++) {
        if (loop->srv->listeners[i].tls_ctx != NULL) {
            eddy__timer_start(loop, &sl->tls_sweep, TLS_SWEEP_MS);
            break;
        }
    }
}

static void *loop_thread_main(void *arg)
{
    eddy__loop_run(arg, eddy__server_loop_should_exit);
    return NULL;
}

/* Opens http_access_log for a run (stderr for "stderr" or "-"). Returns 0 or -errno. */
static int open_access_log(eddy_server_t *srv)
{
    const char *path = srv->opts.http_access_log;
    if (path == NULL)
        return 0;
    if (strcmp(path, "stderr") == 0 || strcmp(path, "-") == 0) {
        srv->access_fd = STDERR_FILENO;
        return 0;
    }
    srv->access_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (srv->access_fd < 0) {
        int err = -errno;
        eddy__log(srv, EDDY__LOG_ERROR, "cannot open http_access_log %s: %s", path,
                  strerror(errno));
        return err;
    }
    return 0;
}

static void close_access_log(eddy_server_t *srv)
{
    if (srv->access_fd > STDERR_FILENO)
        close(srv->access_fd);
    srv->access_fd = -1;
}

/* Creates the loops worker_num needs that an earlier run did not; loop_count becomes
 * worker_num. A loop is complete before loop_count covers it: other threads read both. */
static int create_worker_loops(eddy_server_t *srv)
{
    int n = srv->opts.worker_num;
    for (int i = srv->loops_made; i < n; i++) {
        eddy__loop_t *loop = calloc(1, sizeof(eddy__loop_t));
        int rc = loop ? server_loop_init(loop, srv, i) : EDDY_ENOMEM;
        if (rc != 0) {
            if (loop != NULL)
                eddy__loop_free(loop); /* what server_loop_init() got before it failed */
            free(loop);
            return rc;
        }
        srv->loops[i] = loop;
        srv->loops_made = i + 1;
    }
    eddy__topics_reset(srv, n);
    return 0;
}

int eddy_server_start(eddy_server_t *srv)
{
    if (srv->running)
        return EDDY_ERUNNING;
    if (srv->on_message == NULL) {
        eddy__log(srv, EDDY__LOG_ERROR,
                  "eddy_server_start: the message callback is required "
                  "(eddy_on_message)");
        return EDDY_ENOCALLBACK;
    }
    eddy__options_t *opts = &srv->opts;
    eddy__options_resolve(opts);
    if (opts->heartbeat_check_interval_ms == 0 && opts->heartbeat_idle_time_ms > 0)
        eddy__log(srv, EDDY__LOG_INFO,
                  "heartbeat_idle_time is set without heartbeat_check_interval: idle "
                  "connections are not checked (as in Swoole)");
    else if (opts->heartbeat_interval_ms != opts->heartbeat_check_interval_ms)
        eddy__log(srv, EDDY__LOG_WARNING,
                  "heartbeat_check_interval %g s is longer than heartbeat_idle_time %g s: "
                  "checking every %g s (as Swoole)",
                  opts->heartbeat_check_interval_ms / 1000.0, opts->heartbeat_idle_ms / 1000.0,
                  opts->heartbeat_interval_ms / 1000.0);
    eddy__handshake_init();
    if (opts->log_file != NULL && srv->log_fd == STDERR_FILENO) {
        int fd = open(opts->log_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd < 0) {
            int err = -errno;
            eddy__log(srv, EDDY__LOG_ERROR, "cannot open log_file %s: %s", opts->log_file,
                      strerror(errno));
            return err;
        }
        srv->log_fd = fd;
    }
    int rc = open_access_log(srv);
    if (rc == 0)
        rc = create_worker_loops(srv);
    if (rc == 0)
        rc = open_listeners(srv);
    if (rc == 0 && (rc = eddy__taskpool_start(srv)) != 0) {
        for (int i = 0; i < srv->loop_count; i++)
            close_listen_socks(srv->loops[i]);
        free_tls_contexts(srv);
    }
    if (rc != 0) {
        close_access_log(srv);
        return rc;
    }
    for (int i = 0; i < srv->listener_count; i++) {
        eddy__listener_t *l = &srv->listeners[i];
        eddy__log(srv, EDDY__LOG_INFO, "eddy %s listening on %s:%d%s", EDDY_VERSION_STRING, l->host,
                  l->bound_port, (l->flags & EDDY_LISTEN_TLS) ? " (TLS)" : "");
    }
    for (int i = 0; i < srv->loop_count; i++)
        prepare_loop(srv->loops[i]);
    pthread_mutex_lock(&srv->tls_lock);
    atomic_store(&srv->running, true);
    pthread_mutex_unlock(&srv->tls_lock);
    /* The start callback runs as loop 0: timers and deferred calls it sets go there. */
    eddy__current_loop = srv->loops[0];
    if (srv->on_start != NULL)
        srv->on_start(srv, srv->user_data);
    for (int i = 1; i < srv->loop_count; i++) {
        eddy__loop_t *loop = srv->loops[i];
        rc = pthread_create(&loop->thread, NULL, loop_thread_main, loop);
        if (rc != 0) {
            eddy__log(srv, EDDY__LOG_ERROR, "cannot start worker thread %d: %s", i, strerror(rc));
            eddy_server_stop(srv);
            break;
        }
        loop->thread_started = true;
    }
    eddy__loop_flush(srv->loops[0]);
    eddy__loop_run(srv->loops[0], eddy__server_loop_should_exit);
    /* Loop 0 stopped, so a stop was requested of every loop: wait for the others. */
    for (int i = 1; i < srv->loop_count; i++) {
        if (srv->loops[i]->thread_started)
            pthread_join(srv->loops[i]->thread, NULL);
        srv->loops[i]->thread_started = false;
    }
    /* Queued tasks finish; then work posted in the last moments still runs (finish
     * callbacks included, and whatever frees what it owns), here, as loop 0. */
    eddy__taskpool_stop(srv);
    for (int i = 0; i < srv->loop_count; i++)
        eddy__loop_run_posted(srv->loops[i]);
    if (srv->on_shutdown != NULL)
        srv->on_shutdown(srv, srv->user_data);
    eddy__current_loop = NULL;
    pthread_mutex_lock(&srv->tls_lock);
    atomic_store(&srv->running, false);
    if (srv->tls_next_cert != NULL) { /* eddy_server_reload_tls() while running */
        free(srv->opts.ssl_cert_file);
        free(srv->opts.ssl_key_file);
        srv->opts.ssl_cert_file = srv->tls_next_cert;
        srv->opts.ssl_key_file = srv->tls_next_key;
        srv->tls_next_cert = srv->tls_next_key = NULL;
    }
    pthread_mutex_unlock(&srv->tls_lock);
    for (int i = 0; i < srv->loop_count; i++) {
        eddy__access_log_flush(srv->loops[i]);
        close_listen_socks(srv->loops[i]);
        srv->loops[i]->stopping = false;
    }
    atomic_store(&srv->stop_requested, false);
    free_tls_contexts(srv);
    close_access_log(srv);
    eddy__log(srv, EDDY__LOG_INFO, "eddy stopped");
    return 0;
}

void eddy_server_stop(eddy_server_t *srv)
{
    /* Once the flag is up, eddy_server_start() may return and a new start change
     * loop_count: the loops to wake are counted first. Waking a loop of a later run does no
     * harm, as loops live until eddy_server_free(). */
    int loops = srv->loop_count;
    atomic_store(&srv->stop_requested, true);
    for (int i = loops - 1; i >= 0; i--)
        eddy__loop_wakeup(srv->loops[i]);
}

/* ---- methods ---- */

/* A method on a connection another thread owns: what it needs, posted to the owner. */
struct conn_cmd {
    eddy__cmd_t base;
    eddy_fd_t fd;
    int op;
    int opcode; /* push: opcode; disconnect: code */
    int flags;
    size_t len;
    char data[];
};

enum { OP_PUSH, OP_SEND, OP_DISCONNECT, OP_CLOSE };

static void conn_cmd_run(eddy__loop_t *loop, eddy__cmd_t *cmd)
{
    struct conn_cmd *cc = (struct conn_cmd *)cmd;
    eddy__conn_t *conn = eddy__conn_lookup(loop, cc->fd);
    if (cc->op == OP_CLOSE) {
        /* The caller marked the session closing already, so lookup does not find it. */
        conn = eddy__conn_get(loop, cc->fd);
        if (conn != NULL && !conn->ending)
            eddy__conn_close(conn, EDDY__CLOSE_GRACEFUL);
        free(cc);
        return;
    }
    if (conn != NULL) {
        switch (cc->op) {
        case OP_PUSH:
            eddy__ws_push(conn, cc->data, cc->len, cc->opcode, cc->flags);
            break;
        case OP_SEND:
            eddy__conn_send_raw(conn, cc->data, cc->len);
            break;
        case OP_DISCONNECT:
            /* The caller moved the session to CLOSING; the close frame goes out now. */
            if (eddy__ws_open(conn) && !eddy__ws_close_sent(conn))
                eddy__ws_send_close(conn, (uint16_t)cc->opcode, cc->data, cc->len, true);
            break;
        }
    }
    free(cc);
}

/* Posts op for fd to the loop that owns it (view, found by the caller). */
static int post_conn_cmd(eddy_server_t *srv, const eddy__session_view_t *view, eddy_fd_t fd, int op,
                         int opcode, int flags, const void *data, size_t len)
{
    struct conn_cmd *cc = malloc(sizeof(*cc) + len);
    if (cc == NULL)
        return EDDY_ENOMEM;
    *cc = (struct conn_cmd){
        .base.fn = conn_cmd_run, .fd = fd, .op = op, .opcode = opcode, .flags = flags, .len = len};
    if (len)
        memcpy(cc->data, data, len);
    eddy__loop_post(srv->loops[view->loop], &cc->base);
    return 0;
}

/* eddy_push() to a connection this thread does not own, or to none. */
__attribute__((noinline)) static int push_elsewhere(eddy_server_t *srv, eddy_fd_t fd,
                                                    const void *data, size_t len, int opcode,
                                                    int flags)
{
    eddy__conn_t *conn;
    eddy__session_view_t view;
    if (eddy__session_find(srv, fd, &conn, &view) != 0)
        return EDDY_ENOTFOUND;
    if (conn != NULL)
        return eddy__ws_push(conn, data, len, opcode, flags);
    /* Checked here, as the owner would, so the caller still learns what is wrong. */
    if (view.ws_status != EDDY_WS_STATUS_ACTIVE)
        return EDDY_ESTATE;
    int rc = eddy__ws_push_check(srv, data, len, opcode, flags);
    if (rc == 0)
        rc = post_conn_cmd(srv, &view, fd, OP_PUSH, opcode, flags, data, len);
    if (rc == 0 && view.out_bytes >= eddy__high_watermark(&srv->opts))
        rc = EDDY_QUEUED;
    return rc;
}

int eddy_push(eddy_server_t *srv, eddy_fd_t fd, const void *data, size_t len, int opcode, int flags)
{
    /* The owner's pushes (every echo, every reply) go straight to the connection, with no
     * session view to fill: where the call is not inlined (an application's callback
     * calling in from its own object file) this is most of its cost. */
    eddy__conn_t *conn = eddy__conn_lookup(eddy__loop_here(srv), fd);
    if (conn != NULL)
        return eddy__ws_push(conn, data, len, opcode, flags);
    return push_elsewhere(srv, fd, data, len, opcode, flags);
}

/* eddy_push_parts() for a connection another thread owns: the parts and their bytes. */
struct parts_cmd {
    eddy__cmd_t base;
    eddy_fd_t fd;
    int flags;
    size_t nparts;
    eddy_part_t parts[]; /* then their bytes */
};

static void parts_cmd_run(eddy__loop_t *loop, eddy__cmd_t *cmd)
{
    struct parts_cmd *pc = (struct parts_cmd *)cmd;
    eddy__conn_t *conn = eddy__conn_lookup(loop, pc->fd);
    if (conn != NULL)
        eddy__ws_push_parts(conn, pc->parts, pc->nparts, pc->flags);
    free(pc);
}

int eddy_push_parts(eddy_server_t *srv, eddy_fd_t fd, const eddy_part_t *parts, size_t nparts,
                    int flags)
{
    eddy__conn_t *conn;
    eddy__session_view_t view;
    if (eddy__session_find(srv, fd, &conn, &view) != 0)
        return EDDY_ENOTFOUND;
    if (conn != NULL)
        return eddy__ws_push_parts(conn, parts, nparts, flags);
    if (view.ws_status != EDDY_WS_STATUS_ACTIVE)
        return EDDY_ESTATE;
    int rc = eddy__ws_parts_check(srv, parts, nparts);
    if (rc != 0)
        return rc;
    size_t bytes = 0;
    for (size_t i = 0; i < nparts; i++)
        bytes += parts[i].len;
    struct parts_cmd *pc = malloc(sizeof(*pc) + nparts * sizeof(eddy_part_t) + bytes);
    if (pc == NULL)
        return EDDY_ENOMEM;
    *pc = (struct parts_cmd){.base.fn = parts_cmd_run, .fd = fd, .flags = flags, .nparts = nparts};
    char *copy = (char *)(pc->parts + nparts);
    for (size_t i = 0; i < nparts; i++) {
        pc->parts[i] = (eddy_part_t){.data = copy, .len = parts[i].len, .opcode = parts[i].opcode};
        if (parts[i].len)
            memcpy(copy, parts[i].data, parts[i].len);
        copy += parts[i].len;
    }
    eddy__loop_post(srv->loops[view.loop], &pc->base);
    return view.out_bytes >= eddy__high_watermark(&srv->opts) ? EDDY_QUEUED : 0;
}

bool eddy_exist(eddy_server_t *srv, eddy_fd_t fd)
{
    eddy__conn_t *conn;
    eddy__session_view_t view;
    return eddy__session_find(srv, fd, &conn, &view) == 0;
}

bool eddy_is_established(eddy_server_t *srv, eddy_fd_t fd)
{
    eddy__conn_t *conn;
    eddy__session_view_t view;
    if (eddy__session_find(srv, fd, &conn, &view) != 0)
        return false;
    /* The session's status: another thread may have started the close already. */
    uint8_t status = conn ? atomic_load(&conn->ws_status) : view.ws_status;
    return status == EDDY_WS_STATUS_ACTIVE;
}

int eddy_disconnect(eddy_server_t *srv, eddy_fd_t fd, int code, const char *reason)
{
    size_t reason_len = reason ? strlen(reason) : 0;
    /* Any code an endpoint may send (RFC 6455 7.4): not 1004-1006 or 1015, which are
     * reserved or mean "no close frame", nor unassigned ranges. */
    if (code < 0 || !eddy__ws_close_code_valid((unsigned)code)) {
        eddy__log(srv, EDDY__LOG_NOTICE,
                  "eddy_disconnect(%" PRIu64 ") refused: close code %d is not one an endpoint "
                  "may send (1000-1003, 1007-1014, 3000-4999)",
                  (uint64_t)fd, code);
        return EDDY_EINVAL;
    }
    /* 125 bytes of close payload hold the 2-byte code and at most 123 bytes of reason. */
    if (reason_len > 123 || !eddy_utf8_valid(reason ? reason : "", reason_len)) {
        eddy__log(srv, EDDY__LOG_NOTICE, "eddy_disconnect(%" PRIu64 ") refused: the reason is %s",
                  (uint64_t)fd, reason_len > 123 ? "over 123 bytes" : "not valid UTF-8");
        return reason_len > 123 ? EDDY_EINVAL : EDDY_EUTF8;
    }
    eddy__conn_t *conn;
    eddy__session_view_t view;
    if (eddy__session_find(srv, fd, &conn, &view) != 0)
        return EDDY_ENOTFOUND;
    if (conn == NULL) {
        if (!eddy__registry_start_closing(&srv->registry, fd))
            return EDDY_ESTATE;
        return post_conn_cmd(srv, &view, fd, OP_DISCONNECT, code, 0, reason, reason_len);
    }
    if (!eddy__ws_open(conn) || conn->ws_status != EDDY_WS_STATUS_ACTIVE)
        return EDDY_ESTATE;
    eddy__ws_send_close(conn, (uint16_t)code, reason, reason_len, true);
    return 0;
}

int eddy_close(eddy_server_t *srv, eddy_fd_t fd)
{
    eddy__conn_t *conn;
    eddy__session_view_t view;
    if (eddy__session_find(srv, fd, &conn, &view) != 0)
        return EDDY_ENOTFOUND;
    if (conn != NULL) {
        eddy__conn_close(conn, EDDY__CLOSE_GRACEFUL);
        return 0;
    }
    if (!eddy__registry_mark_closing(&srv->registry, fd))
        return EDDY_ENOTFOUND; /* closed meanwhile */
    return post_conn_cmd(srv, &view, fd, OP_CLOSE, 0, 0, NULL, 0);
}

int eddy_send(eddy_server_t *srv, eddy_fd_t fd, const void *data, size_t len)
{
    eddy__conn_t *conn;
    eddy__session_view_t view;
    if (eddy__session_find(srv, fd, &conn, &view) != 0)
        return EDDY_ENOTFOUND;
    if (conn == NULL)
        return post_conn_cmd(srv, &view, fd, OP_SEND, 0, 0, data, len);
    return eddy__conn_send_raw(conn, data, len);
}

int eddy_post(eddy_server_t *srv, eddy_fd_t fd, eddy_defer_cb cb, void *arg)
{
    if (cb == NULL)
        return EDDY_EINVAL;
    eddy__conn_t *conn;
    eddy__session_view_t view;
    if (eddy__session_find(srv, fd, &conn, &view) != 0)
        return EDDY_ENOTFOUND;
    return eddy__loop_defer(conn != NULL ? conn->loop : srv->loops[view.loop], cb, arg);
}

int eddy_client_info(eddy_server_t *srv, eddy_fd_t fd, eddy_client_info_t *info)
{
    eddy__session_view_t view;
    /* Closing sessions answer too: close callbacks ask about their connection. */
    if (!eddy__registry_get(&srv->registry, fd, &view))
        return EDDY_ENOTFOUND;
    memset(info, 0, sizeof(*info));
    info->fd = fd;
    info->websocket_status = view.ws_status;
    eddy__peer_format(&view.peer, info->remote_ip, &info->remote_port);
    info->server_port = view.local_port;
    info->socket_fd = view.socket_fd;
    info->reactor_id = view.loop;
    info->connect_time = (int64_t)(view.connect_ms / 1000);
    info->last_time = (int64_t)(view.last_recv_ms / 1000);
    info->last_recv_time = (double)view.last_recv_ms / 1000.0;
    info->send_queued_bytes = view.out_bytes;
    return 0;
}

size_t eddy_connection_foreach(eddy_server_t *srv, eddy_foreach_cb cb, void *arg)
{
    /* A snapshot of ids, so cb may open, close or push to any connection meanwhile. */
    eddy_fd_t *ids;
    size_t n = eddy__registry_live_ids(&srv->registry, &ids);
    if (ids == NULL)
        eddy__log(srv, EDDY__LOG_ERROR, "eddy_connection_foreach: out of memory");
    size_t visited = 0;
    for (size_t i = 0; i < n; i++) {
        visited++;
        if (!cb(srv, ids[i], arg))
            break;
    }
    free(ids);
    return visited;
}

size_t eddy_connection_count(eddy_server_t *srv)
{
    return atomic_load(&srv->registry.live);
}

/* A cell of another loop's stats: its loop adds with plain instructions (eddy__stat_add),
 * so this aligned 64-bit load may see a value from just before or after an add, never a
 * torn one. Not instrumented by ThreadSanitizer, which would call that pair a race. */
__attribute__((no_sanitize("thread"), noinline)) static uint64_t stat_read(uint64_t *cell)
{
    return __atomic_load_n(cell, __ATOMIC_RELAXED);
}

int eddy_server_stats(eddy_server_t *srv, int loop, eddy_stats_t *out)
{
    int loops = atomic_load(&srv->loop_count);
    if (out == NULL || loop < -1 || loop >= loops)
        return EDDY_EINVAL;
    *out = (eddy_stats_t){0};
    uint64_t conns_closed = 0, conns_opened = 0, ws_closed = 0, ws_opened = 0;
    for (int i = loop < 0 ? 0 : loop; i < (loop < 0 ? loops : loop + 1); i++) {
        eddy__loop_stats_t *st = &srv->loops[i]->stats;
        /* Closes before opens: read the other way round, a close counted in between
         * could make a gauge negative. */
        conns_closed += stat_read(&st->conns_closed);
        conns_opened += stat_read(&st->conns_opened);
        ws_closed += stat_read(&st->ws_closed);
        ws_opened += stat_read(&st->ws_opened);
        out->accepted_total += stat_read(&st->accepted);
        out->refused_total += stat_read(&st->refused);
        out->http_requests_total += stat_read(&st->http_requests);
        out->websocket_refused_total += stat_read(&st->ws_refused);
        out->messages_received_total += stat_read(&st->messages_in);
        out->messages_sent_total += stat_read(&st->messages_out);
        out->bytes_received_total += stat_read(&st->bytes_in);
        out->bytes_sent_total += stat_read(&st->bytes_out);
        out->messages_dropped_total += stat_read(&st->dropped);
        out->slow_consumer_closes_total += stat_read(&st->slow_closes);
        out->log_lines_lost_total += stat_read(&st->log_lost);
        out->access_log_lines_lost_total += stat_read(&st->access_lost);
    }
    if (loop < 0) {
        out->log_lines_lost_total += atomic_load(&srv->log_sink.offloop);
        out->access_log_lines_lost_total += atomic_load(&srv->access_sink.offloop);
    }
    out->websocket_opened_total = ws_opened;
    out->websocket_connections = ws_opened >= ws_closed ? ws_opened - ws_closed : 0;
    if (loop < 0)
        out->connections = atomic_load(&srv->registry.live);
    else
        out->connections = conns_opened >= conns_closed ? conns_opened - conns_closed : 0;
    return 0;
}

int eddy_conn_set_user_data(eddy_server_t *srv, eddy_fd_t fd, void *user_data)
{
    return eddy__registry_set_user_data(&srv->registry, fd, user_data) ? 0 : EDDY_ENOTFOUND;
}

void *eddy_conn_user_data(eddy_server_t *srv, eddy_fd_t fd)
{
    eddy__session_view_t view;
    return eddy__registry_get(&srv->registry, fd, &view) ? view.user_data : NULL;
}

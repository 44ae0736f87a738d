/*
 * The server: listening and accepting, the event registry, the methods applications call
 * with a session id, the heartbeat, and an orderly shutdown.
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

#include "internal.h"

#define ACCEPT_BATCH 64
/* After EMFILE/ENFILE, accepting pauses this long instead of spinning on the listener. */
#define ACCEPT_PAUSE_MS 1000

eddy__loop_t *eddy__server_loop(eddy_server_t *srv)
{
    return &srv->loops[0];
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
    eddy__options_init(&srv->opts);
    srv->loop_count = 1;
    srv->loops = calloc(1, sizeof(*srv->loops));
    if (srv->loops == NULL || eddy__loop_init(&srv->loops[0], srv, 0) != 0 ||
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
    l->fd = -1;
    if (l->host == NULL)
        return EDDY_ENOMEM;
    return srv->listener_count++;
}

static void close_listeners(eddy_server_t *srv)
{
    for (int i = 0; i < srv->listener_count; i++) {
        eddy__listener_t *l = &srv->listeners[i];
        if (l->fd >= 0) {
            if (l->io.events)
                eddy__io_set(&srv->loops[0], &l->io, 0);
            close(l->fd);
            l->fd = -1;
        }
        eddy__tls_ctx_free(l->tls_ctx);
        l->tls_ctx = NULL;
    }
}

void eddy_server_free(eddy_server_t *srv)
{
    if (srv == NULL)
        return;
    if (srv->loops != NULL) {
        for (int i = 0; i < srv->loop_count; i++)
            eddy__loop_free(&srv->loops[i]);
        free(srv->loops);
    }
    close_listeners(srv);
    for (int i = 0; i < srv->listener_count; i++)
        free(srv->listeners[i].host);
    free(srv->listeners);
    eddy__session_table_free(&srv->sessions);
    if (srv->log_fd > STDERR_FILENO)
        close(srv->log_fd);
    eddy__options_free(&srv->opts);
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
void eddy_on_request(eddy_server_t *srv, eddy_request_cb cb)
{
    srv->on_request = cb;
}

/* ---- listening and accepting ---- */

static void on_accept(eddy__loop_t *loop, eddy__io_t *io, unsigned events);

static int open_listener(eddy_server_t *srv, eddy__listener_t *l)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char port[8];
    snprintf(port, sizeof(port), "%d", l->port);
    int gai = getaddrinfo(l->host, port, &hints, &res);
    if (gai != 0) {
        eddy__log(srv, EDDY__LOG_ERROR, "cannot resolve %s: %s", l->host, gai_strerror(gai));
        return EDDY_EINVAL;
    }
    int err = 0;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            err = -errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
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
        l->fd = fd;
        l->io = (eddy__io_t){.fd = fd, .events = 0, .cb = on_accept};
        freeaddrinfo(res);
        return 0;
    }
    freeaddrinfo(res);
    eddy__log(srv, EDDY__LOG_ERROR, "cannot listen on %s:%d: %s", l->host, l->port,
              eddy_strerror(err));
    return err ? err : EDDY_EINVAL;
}

/* Creates TLS contexts and binds every listener; on failure nothing stays open. */
static int open_listeners(eddy_server_t *srv)
{
    if (srv->listener_count == 0) {
        eddy__log(srv, EDDY__LOG_ERROR, "eddy_server_start: no listener");
        return EDDY_EINVAL;
    }
    for (int i = 0; i < srv->listener_count; i++) {
        eddy__listener_t *l = &srv->listeners[i];
        int rc = 0;
        if (l->flags & EDDY_LISTEN_TLS)
            rc = eddy__tls_ctx_new(srv, &l->tls_ctx);
        if (rc == 0)
            rc = open_listener(srv, l);
        if (rc != 0) {
            close_listeners(srv);
            return rc;
        }
    }
    return 0;
}

static void accept_resume(eddy__loop_t *loop, eddy__timer_t *timer)
{
    eddy_server_t *srv = loop->srv;
    for (int i = 0; i < srv->listener_count; i++) {
        eddy__listener_t *l = &srv->listeners[i];
        if (l->paused && l->fd >= 0) {
            l->paused = false;
            eddy__io_set(loop, &l->io, EDDY__IO_READ);
        }
    }
}

static void setup_socket(eddy_server_t *srv, int fd)
{
    if (srv->opts.open_tcp_nodelay) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
}

static void on_accept(eddy__loop_t *loop, eddy__io_t *io, unsigned events)
{
    eddy__listener_t *l = (eddy__listener_t *)((char *)io - offsetof(eddy__listener_t, io));
    eddy_server_t *srv = loop->srv;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        struct sockaddr_storage peer;
        socklen_t peer_len = sizeof(peer);
        int fd = accept4(io->fd, (struct sockaddr *)&peer, &peer_len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                eddy__log(srv, EDDY__LOG_WARNING, "accept: %s; not accepting for %d ms",
                          strerror(errno), ACCEPT_PAUSE_MS);
                l->paused = true;
                eddy__io_set(loop, io, 0);
                eddy__timer_start(loop, &loop->accept_timer, ACCEPT_PAUSE_MS);
            }
            return;
        }
        if (srv->sessions.live >= srv->opts.max_connection) {
            char ip[46] = "?";
            int port = 0;
            eddy__format_peer(&peer, ip, &port);
            eddy__log(srv, EDDY__LOG_WARNING,
                      "accept: too many connections (max_connection=%zu), refused %s:%d",
                      srv->opts.max_connection, ip, port);
            close(fd);
            continue;
        }
        setup_socket(srv, fd);
        eddy__conn_t *conn = eddy__conn_new(loop, fd, (struct sockaddr *)&peer, peer_len, l);
        if (conn == NULL) {
            eddy__log(srv, EDDY__LOG_ERROR, "accept: out of memory, connection dropped");
            close(fd);
            continue;
        }
        if (srv->on_connect != NULL)
            srv->on_connect(srv, conn->id, srv->user_data);
    }
}

void eddy__server_fire_close(eddy_server_t *srv, eddy__conn_t *conn)
{
    /* Swoole 4.7+: with a disconnect callback, connections that never became WebSockets
     * go there; close is for WebSocket sessions. Without one, everything gets close. */
    eddy_close_cb cb = srv->on_close;
    if (!conn->ever_established && srv->on_disconnect != NULL)
        cb = srv->on_disconnect;
    if (cb != NULL)
        cb(srv, conn->id, srv->user_data);
}

/* ---- heartbeat ---- */

static void heartbeat_check(eddy__loop_t *loop, eddy__timer_t *timer)
{
    eddy_server_t *srv = loop->srv;
    const eddy__options_t *opts = &srv->opts;
    uint64_t idle_ms = (uint64_t)opts->heartbeat_idle_time * 1000u;
    for (eddy__conn_t *conn = loop->conns_head; conn != NULL; conn = conn->next) {
        if (conn->phase == EDDY__PHASE_CLOSING || loop->now_ms - conn->last_recv_ms < idle_ms)
            continue;
        eddy__log(srv, EDDY__LOG_INFO, "session#%" PRIu64 ": idle for %u s, closed by heartbeat",
                  conn->id, opts->heartbeat_idle_time);
        if (conn->phase == EDDY__PHASE_WS) {
            static const char reason[] = "idle timeout";
            eddy__ws_send_close(conn, EDDY_WS_CLOSE_NORMAL, reason, sizeof(reason) - 1, false);
        } else {
            eddy__conn_close(conn, EDDY__CLOSE_GRACEFUL);
        }
    }
    eddy__timer_start(loop, timer, (uint64_t)opts->heartbeat_check_interval * 1000u);
}

/* ---- running and stopping ---- */

static void begin_shutdown(eddy__loop_t *loop)
{
    eddy_server_t *srv = loop->srv;
    loop->stopping = true;
    loop->shutdown_deadline_ms = loop->now_ms + srv->opts.websocket_close_timeout_ms;
    for (int i = 0; i < srv->listener_count; i++) {
        eddy__listener_t *l = &srv->listeners[i];
        if (l->fd >= 0) {
            eddy__io_set(loop, &l->io, 0);
            close(l->fd);
            l->fd = -1;
        }
    }
    eddy__timer_stop(loop, &loop->heartbeat);
    eddy__timer_stop(loop, &loop->accept_timer);
    for (eddy__conn_t *conn = loop->conns_head; conn != NULL; conn = conn->next) {
        if (conn->phase == EDDY__PHASE_WS && conn->ws_status == EDDY_WS_STATUS_ACTIVE) {
            static const char reason[] = "server shutting down";
            eddy__ws_send_close(conn, EDDY_WS_CLOSE_GOING_AWAY, reason, sizeof(reason) - 1, true);
        } else if (conn->phase == EDDY__PHASE_HTTP) {
            eddy__conn_close(conn, EDDY__CLOSE_GRACEFUL);
        }
    }
}

bool eddy__server_loop_should_exit(eddy__loop_t *loop)
{
    if (!loop->stopping) {
        if (!atomic_load(&loop->stop_requested))
            return false;
        loop->now_ms = eddy__monotonic_ms();
        begin_shutdown(loop);
    }
    /* Lingering only protects data already sent from a reset; stopping need not wait. */
    eddy__loop_close_zombies(loop, false);
    if (loop->now_ms >= loop->shutdown_deadline_ms) {
        /* Peers that did not answer in time are closed without further ceremony. */
        for (eddy__conn_t *conn = loop->conns_head; conn != NULL; conn = conn->next)
            eddy__conn_close(conn, EDDY__CLOSE_ABORT);
        eddy__loop_reap(loop);
        eddy__loop_close_zombies(loop, true);
    }
    eddy__loop_reap(loop); /* frees what was closed */
    return loop->conns_head == NULL && loop->zombies_head == NULL && loop->reap_head == NULL;
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
    if (opts->heartbeat_check_interval > 0 && opts->heartbeat_idle_time == 0)
        opts->heartbeat_idle_time = opts->heartbeat_check_interval * 2;
    if (opts->heartbeat_idle_time > 0 && opts->heartbeat_check_interval == 0)
        opts->heartbeat_check_interval = EDDY__MAX(opts->heartbeat_idle_time / 2, 1u);
    if (opts->log_file != NULL) {
        int fd = open(opts->log_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd < 0) {
            int err = -errno;
            eddy__log(srv, EDDY__LOG_ERROR, "cannot open log_file %s: %s", opts->log_file,
                      strerror(errno));
            return err;
        }
        srv->log_fd = fd;
    }
    int rc = eddy__session_table_init(&srv->sessions, opts->max_connection);
    if (rc != 0)
        return rc;
    rc = open_listeners(srv);
    if (rc != 0) {
        eddy__session_table_free(&srv->sessions);
        return rc;
    }
    eddy__loop_t *loop = &srv->loops[0];
    for (int i = 0; i < srv->listener_count; i++) {
        eddy__listener_t *l = &srv->listeners[i];
        eddy__io_set(loop, &l->io, EDDY__IO_READ);
        eddy__log(srv, EDDY__LOG_INFO, "eddy %s listening on %s:%d%s", EDDY_VERSION_STRING, l->host,
                  l->bound_port, (l->flags & EDDY_LISTEN_TLS) ? " (TLS)" : "");
    }
    eddy__timer_init(&loop->accept_timer, accept_resume);
    loop->now_ms = eddy__monotonic_ms();
    if (opts->heartbeat_check_interval > 0) {
        eddy__timer_init(&loop->heartbeat, heartbeat_check);
        eddy__timer_start(loop, &loop->heartbeat, (uint64_t)opts->heartbeat_check_interval * 1000u);
    }
    srv->running = true;
    if (srv->on_start != NULL)
        srv->on_start(srv, srv->user_data);
    eddy__loop_flush(loop);
    eddy__loop_run(loop);
    if (srv->on_shutdown != NULL)
        srv->on_shutdown(srv, srv->user_data);
    srv->running = false;
    close_listeners(srv);
    atomic_store(&loop->stop_requested, false);
    loop->stopping = false;
    eddy__session_table_free(&srv->sessions);
    eddy__log(srv, EDDY__LOG_INFO, "eddy stopped");
    return 0;
}

void eddy_server_stop(eddy_server_t *srv)
{
    for (int i = 0; i < srv->loop_count; i++) {
        atomic_store(&srv->loops[i].stop_requested, true);
        eddy__loop_wakeup(&srv->loops[i]);
    }
}

/* ---- methods ---- */

int eddy_push(eddy_server_t *srv, eddy_fd_t fd, const void *data, size_t len, int opcode, int flags)
{
    eddy__conn_t *conn = eddy__conn_lookup(srv, fd);
    if (conn == NULL)
        return EDDY_ENOTFOUND;
    return eddy__ws_push(conn, data, len, opcode, flags);
}

bool eddy_exist(eddy_server_t *srv, eddy_fd_t fd)
{
    return eddy__conn_lookup(srv, fd) != NULL;
}

bool eddy_is_established(eddy_server_t *srv, eddy_fd_t fd)
{
    eddy__conn_t *conn = eddy__conn_lookup(srv, fd);
    return conn != NULL && conn->ws_status == EDDY_WS_STATUS_ACTIVE;
}

int eddy_disconnect(eddy_server_t *srv, eddy_fd_t fd, int code, const char *reason)
{
    size_t reason_len = reason ? strlen(reason) : 0;
    if (!(code == EDDY_WS_CLOSE_NORMAL || (code >= 4000 && code <= 4999)))
        return EDDY_EINVAL;
    /* 125 bytes of close payload hold the 2-byte code and at most 123 bytes of reason. */
    if (reason_len > 123 || !eddy_utf8_valid(reason ? reason : "", reason_len))
        return EDDY_EINVAL;
    eddy__conn_t *conn = eddy__conn_lookup(srv, fd);
    if (conn == NULL)
        return EDDY_ENOTFOUND;
    if (conn->phase != EDDY__PHASE_WS || conn->ws_status != EDDY_WS_STATUS_ACTIVE)
        return EDDY_ESTATE;
    eddy__ws_send_close(conn, (uint16_t)code, reason, reason_len, true);
    return 0;
}

int eddy_close(eddy_server_t *srv, eddy_fd_t fd)
{
    eddy__conn_t *conn = eddy__conn_lookup(srv, fd);
    if (conn == NULL)
        return EDDY_ENOTFOUND;
    eddy__conn_close(conn, EDDY__CLOSE_GRACEFUL);
    return 0;
}

int eddy_send(eddy_server_t *srv, eddy_fd_t fd, const void *data, size_t len)
{
    eddy__conn_t *conn = eddy__conn_lookup(srv, fd);
    if (conn == NULL)
        return EDDY_ENOTFOUND;
    return eddy__conn_write(conn, data, len);
}

int eddy_client_info(eddy_server_t *srv, eddy_fd_t fd, eddy_client_info_t *info)
{
    eddy__conn_t *conn = eddy__conn_lookup_any(srv, fd);
    if (conn == NULL)
        return EDDY_ENOTFOUND;
    memset(info, 0, sizeof(*info));
    info->fd = conn->id;
    info->websocket_status = conn->ws_status;
    eddy__format_peer(&conn->peer, info->remote_ip, &info->remote_port);
    info->server_port = conn->local_port;
    info->socket_fd = conn->io.fd;
    info->reactor_id = conn->loop->index;
    info->connect_time = (int64_t)conn->connect_time;
    info->last_time = (int64_t)conn->last_recv_time;
    info->last_recv_time = conn->last_recv_time;
    info->send_queued_bytes = conn->out.bytes;
    return 0;
}

size_t eddy_connection_foreach(eddy_server_t *srv, eddy_foreach_cb cb, void *arg)
{
    eddy__loop_t *loop = eddy__server_loop(srv);
    size_t visited = 0;
    /* Closing connections stay on the list until reaped, so `next` survives cb closing
     * the current one. */
    for (eddy__conn_t *conn = loop->conns_head; conn != NULL; conn = conn->next) {
        if (conn->phase == EDDY__PHASE_CLOSING)
            continue;
        visited++;
        if (!cb(srv, conn->id, arg))
            break;
    }
    return visited;
}

size_t eddy_connection_count(eddy_server_t *srv)
{
    size_t n = 0;
    for (eddy__conn_t *conn = eddy__server_loop(srv)->conns_head; conn; conn = conn->next)
        n += conn->phase != EDDY__PHASE_CLOSING;
    return n;
}

int eddy_conn_set_user_data(eddy_server_t *srv, eddy_fd_t fd, void *user_data)
{
    eddy__conn_t *conn = eddy__conn_lookup(srv, fd);
    if (conn == NULL)
        return EDDY_ENOTFOUND;
    conn->user_data = user_data;
    return 0;
}

void *eddy_conn_user_data(eddy_server_t *srv, eddy_fd_t fd)
{
    eddy__conn_t *conn = eddy__conn_lookup_any(srv, fd);
    return conn != NULL ? conn->user_data : NULL;
}

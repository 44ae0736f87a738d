/*
 * Connections: the session table, input, output and teardown.
 *
 * Input: every read lands in the loop's shared receive buffer and is parsed there in
 * place. Only bytes a parser cannot use yet (a partial HTTP head, a pending request body)
 * are copied into conn->in, so an idle WebSocket connection owns no input buffer.
 *
 * Output: data is copied into a chain of segments and the connection joins the loop's
 * flush list; the loop writes every listed connection with one sendmsg after each phase of
 * its iteration, so all the frames one phase produced for a peer leave in one system call.
 *
 * Teardown has three steps, so that no memory is freed while a callback may still use it
 * and no queued byte is lost to a reset:
 *   1. eddy__conn_close(): the connection stops processing input and joins the reap list.
 *   2. eddy__loop_reap(), at the end of the iteration: the close/disconnect callback runs,
 *      then the session id leaves the table. The socket lingers as a "zombie" while its
 *      output drains; then we shut down our side and read until the peer's EOF (bounded
 *      by LINGER_MS), because closing a socket with unread input sends a reset that can
 *      destroy the last frames in flight (a close frame, an error response).
 *   3. The descriptor is closed and the memory freed, at the end of that iteration.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "internal.h"

#define LINGER_MS 3000
#define IOV_BATCH 64

/* ---- session table ---- */

int eddy__session_table_init(eddy__session_table_t *table, size_t max_connection)
{
    size_t slots = 64;
    while (slots < max_connection * 2)
        slots *= 2;
    table->slots = calloc(slots, sizeof(*table->slots));
    if (table->slots == NULL)
        return EDDY_ENOMEM;
    table->mask = slots - 1;
    table->next_id = 1;
    table->live = 0;
    return 0;
}

void eddy__session_table_free(eddy__session_table_t *table)
{
    free(table->slots);
    memset(table, 0, sizeof(*table));
}

/* Any connection still in the table, closing ones included (for client_info). */
static eddy__conn_t *table_find(const eddy_server_t *srv, eddy_fd_t id)
{
    if (id == 0 || srv->sessions.slots == NULL)
        return NULL;
    const eddy__session_slot_t *slot = &srv->sessions.slots[id & srv->sessions.mask];
    return slot->id == id ? slot->conn : NULL;
}

eddy__conn_t *eddy__conn_lookup(eddy_server_t *srv, eddy_fd_t id)
{
    eddy__conn_t *conn = table_find(srv, id);
    return conn != NULL && conn->phase != EDDY__PHASE_CLOSING ? conn : NULL;
}

eddy__conn_t *eddy__conn_lookup_any(eddy_server_t *srv, eddy_fd_t id)
{
    return table_find(srv, id);
}

static eddy_fd_t table_insert(eddy__session_table_t *table, eddy__conn_t *conn)
{
    /* Fewer than half the slots are in use, so a free one is found within a few steps;
     * skipping ids whose slot is taken keeps ids increasing and never reused. */
    eddy_fd_t id = table->next_id;
    while (table->slots[id & table->mask].id != 0)
        id++;
    table->slots[id & table->mask] = (eddy__session_slot_t){id, conn};
    table->next_id = id + 1;
    table->live++;
    return id;
}

static void table_remove(eddy__session_table_t *table, eddy_fd_t id)
{
    eddy__session_slot_t *slot = &table->slots[id & table->mask];
    if (slot->id == id) {
        slot->id = 0;
        slot->conn = NULL;
        table->live--;
    }
}

/* ---- lists ---- */

static void live_list_append(eddy__loop_t *loop, eddy__conn_t *conn)
{
    conn->next = NULL;
    conn->prev = loop->conns_tail;
    if (loop->conns_tail)
        loop->conns_tail->next = conn;
    else
        loop->conns_head = conn;
    loop->conns_tail = conn;
}

static void live_list_remove(eddy__loop_t *loop, eddy__conn_t *conn)
{
    if (conn->prev)
        conn->prev->next = conn->next;
    else
        loop->conns_head = conn->next;
    if (conn->next)
        conn->next->prev = conn->prev;
    else
        loop->conns_tail = conn->prev;
    conn->prev = conn->next = NULL;
}

/* ---- output queue ---- */

static eddy__seg_t *seg_new(eddy__loop_t *loop, size_t need)
{
    eddy__seg_t *seg;
    if (need <= EDDY__SEG_SIZE && loop->seg_cache != NULL) {
        seg = loop->seg_cache;
        loop->seg_cache = seg->next;
        loop->seg_cache_len--;
    } else {
        size_t cap = EDDY__MAX(need, (size_t)EDDY__SEG_SIZE);
        seg = malloc(sizeof(*seg) + cap);
        if (seg == NULL)
            return NULL;
        seg->cap = cap;
    }
    seg->next = NULL;
    seg->len = seg->sent = 0;
    return seg;
}

static void seg_release(eddy__loop_t *loop, eddy__seg_t *seg)
{
    if (seg->cap == EDDY__SEG_SIZE && loop->seg_cache_len < EDDY__SEG_CACHE_MAX) {
        seg->next = loop->seg_cache;
        loop->seg_cache = seg;
        loop->seg_cache_len++;
    } else {
        free(seg);
    }
}

static void outq_clear(eddy__loop_t *loop, eddy__outq_t *q)
{
    while (q->head != NULL) {
        eddy__seg_t *seg = q->head;
        q->head = seg->next;
        seg_release(loop, seg);
    }
    q->tail = NULL;
    q->bytes = 0;
}

static int outq_append(eddy__loop_t *loop, eddy__outq_t *q, const char *data, size_t len)
{
    while (len > 0) {
        eddy__seg_t *tail = q->tail;
        if (tail == NULL || tail->len == tail->cap) {
            tail = seg_new(loop, len);
            if (tail == NULL)
                return EDDY_ENOMEM;
            if (q->tail)
                q->tail->next = tail;
            else
                q->head = tail;
            q->tail = tail;
        }
        size_t n = EDDY__MIN(len, tail->cap - tail->len);
        memcpy(tail->data + tail->len, data, n);
        tail->len += n;
        q->bytes += n;
        data += n;
        len -= n;
    }
    return 0;
}

static void flush_list_add(eddy__conn_t *conn)
{
    if (!conn->in_flush_list) {
        conn->in_flush_list = true;
        conn->flush_next = conn->loop->flush_head;
        conn->loop->flush_head = conn;
    }
}

int eddy__conn_write2(eddy__conn_t *conn, const void *a, size_t a_len, const void *b, size_t b_len)
{
    eddy__loop_t *loop = conn->loop;
    if (outq_append(loop, &conn->out, a, a_len) != 0 ||
        outq_append(loop, &conn->out, b, b_len) != 0) {
        eddy__log(loop->srv, EDDY__LOG_ERROR,
                  "session#%" PRIu64 ": out of memory queueing %zu bytes", conn->id, a_len + b_len);
        eddy__conn_close(conn, EDDY__CLOSE_ABORT);
        return EDDY_ENOMEM;
    }
    flush_list_add(conn);
    return 0;
}

int eddy__conn_write(eddy__conn_t *conn, const void *data, size_t len)
{
    return eddy__conn_write2(conn, data, len, NULL, 0);
}

static void final_close(eddy__conn_t *conn);
static void begin_shutdown(eddy__conn_t *conn);

/* ---- transport: the socket itself, or TLS over it ---- */

/* Text for a transport error: OpenSSL's own words for TLS protocol errors. */
static const char *transport_error(const eddy__conn_t *conn, int err)
{
    return conn->tls != NULL && err == EDDY_EPROTO ? eddy__tls_last_error() : eddy_strerror(err);
}

static ssize_t transport_read(eddy__conn_t *conn, void *buf, size_t cap)
{
    if (conn->tls != NULL)
        return eddy__tls_read(conn, buf, cap);
    ssize_t n;
    do
        n = read(conn->io.fd, buf, cap);
    while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
}

static ssize_t transport_writev(eddy__conn_t *conn, struct iovec *iov, int n)
{
    if (conn->tls != NULL)
        return eddy__tls_writev(conn, iov, n);
    /* sendmsg rather than writev: MSG_NOSIGNAL spares applications SIGPIPE. */
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)n};
    ssize_t written;
    do
        written = sendmsg(conn->io.fd, &msg, MSG_NOSIGNAL);
    while (written < 0 && errno == EINTR);
    return written < 0 ? -errno : written;
}

/* The events to watch: reading unless the peer is gone or input is paused, writing while
 * output waits, and whatever a TLS handshake or record needs. */
static void watch(eddy__conn_t *conn)
{
    unsigned events = 0;
    if (!conn->read_eof && !(conn->paused && conn->phase != EDDY__PHASE_CLOSING))
        events |= EDDY__IO_READ;
    if (conn->out.head != NULL && !conn->tls_handshaking)
        events |= EDDY__IO_WRITE;
    events |= conn->tls_wants;
    eddy__io_set(conn->loop, &conn->io, events);
}

/* Writes as much queued output as the socket takes. */
static void conn_flush(eddy__conn_t *conn)
{
    eddy__loop_t *loop = conn->loop;
    eddy__outq_t *q = &conn->out;
    while (q->head != NULL && !conn->tls_handshaking) {
        struct iovec iov[IOV_BATCH];
        int n = 0;
        for (eddy__seg_t *seg = q->head; seg != NULL && n < IOV_BATCH; seg = seg->next) {
            iov[n].iov_base = seg->data + seg->sent;
            iov[n].iov_len = seg->len - seg->sent;
            n++;
        }
        ssize_t written = transport_writev(conn, iov, n);
        if (written < 0) {
            if (written == -EAGAIN || written == -EWOULDBLOCK) {
                watch(conn);
                return;
            }
            eddy__log(loop->srv, EDDY__LOG_INFO, "session#%" PRIu64 ": write failed: %s", conn->id,
                      transport_error(conn, (int)written));
            outq_clear(loop, q);
            if (conn->released)
                final_close(conn);
            else
                eddy__conn_close(conn, EDDY__CLOSE_ABORT);
            return;
        }
        q->bytes -= (size_t)written;
        while (written > 0) {
            eddy__seg_t *seg = q->head;
            size_t left = seg->len - seg->sent;
            if ((size_t)written < left) {
                seg->sent += (size_t)written;
                break;
            }
            written -= (ssize_t)left;
            q->head = seg->next;
            if (q->head == NULL)
                q->tail = NULL;
            seg_release(loop, seg);
        }
    }
    if (conn->tls_handshaking)
        return; /* the handshake comes first; output waits for it */
    conn->tls_wants = 0;
    watch(conn);
    if (conn->released && !conn->shutdown_sent)
        begin_shutdown(conn);
}

void eddy__loop_flush(eddy__loop_t *loop)
{
    while (loop->flush_head != NULL) {
        eddy__conn_t *conn = loop->flush_head;
        loop->flush_head = conn->flush_next;
        conn->in_flush_list = false;
        if (conn->io.fd >= 0)
            conn_flush(conn);
    }
}

/* ---- teardown ---- */

static void zombie_list_remove(eddy__loop_t *loop, eddy__conn_t *conn);

static void final_close(eddy__conn_t *conn)
{
    eddy__loop_t *loop = conn->loop;
    if (conn->io.fd < 0)
        return;
    eddy__io_set(loop, &conn->io, 0);
    close(conn->io.fd);
    conn->io.fd = -1;
    eddy__timer_stop(loop, &conn->timer);
    outq_clear(loop, &conn->out);
    eddy__buf_free(&conn->in);
    if (conn->tls != NULL)
        eddy__tls_conn_free(conn);
    zombie_list_remove(loop, conn);
    /* Freed by eddy__loop_reap(): an event for this watcher may still be pending in the
     * current epoll batch, and it must find the memory intact (with no events wanted). */
    conn->reap_next = loop->free_head;
    loop->free_head = conn;
}

static void begin_shutdown(eddy__conn_t *conn)
{
    if (conn->read_eof) {
        final_close(conn);
        return;
    }
    if (conn->tls != NULL)
        eddy__tls_shutdown(conn);
    shutdown(conn->io.fd, SHUT_WR);
    conn->shutdown_sent = true;
    conn->tls_wants = 0;
    eddy__io_set(conn->loop, &conn->io, EDDY__IO_READ);
    eddy__timer_start(conn->loop, &conn->timer, LINGER_MS);
}

void eddy__conn_close(eddy__conn_t *conn, int how)
{
    eddy__loop_t *loop = conn->loop;
    if (how == EDDY__CLOSE_ABORT) {
        outq_clear(loop, &conn->out);
        conn->aborted = true;
    }
    if (conn->phase == EDDY__PHASE_CLOSING)
        return;
    conn->phase = EDDY__PHASE_CLOSING;
    eddy__timer_stop(loop, &conn->timer);
    if (conn->http != NULL)
        eddy__http_conn_closed(conn);
    conn->reap_next = NULL;
    if (loop->reap_tail)
        loop->reap_tail->reap_next = conn;
    else
        loop->reap_head = conn;
    loop->reap_tail = conn;
}

static void zombie_list_remove(eddy__loop_t *loop, eddy__conn_t *conn)
{
    if (!conn->released)
        return;
    if (conn->prev)
        conn->prev->next = conn->next;
    else if (loop->zombies_head == conn)
        loop->zombies_head = conn->next;
    if (conn->next)
        conn->next->prev = conn->prev;
    conn->prev = conn->next = NULL;
}

static void conn_release(eddy__conn_t *conn)
{
    eddy__loop_t *loop = conn->loop;
    eddy_server_t *srv = loop->srv;
    live_list_remove(loop, conn);
    table_remove(&srv->sessions, conn->id);
    conn->released = true;
    eddy__http_free(conn);
    eddy__ws_free(conn);

    if (conn->aborted || conn->io.fd < 0) {
        final_close(conn);
        return;
    }
    /* Zombie: output drains, then the lingering close. */
    conn->prev = NULL;
    conn->next = loop->zombies_head;
    if (loop->zombies_head)
        loop->zombies_head->prev = conn;
    loop->zombies_head = conn;
    if (conn->out.head == NULL)
        begin_shutdown(conn);
    else
        flush_list_add(conn);
}

void eddy__loop_reap(eddy__loop_t *loop)
{
    /* Close callbacks may close further connections (they join the list) and push to
     * others (flushed in between so their output is not held back). */
    while (loop->reap_head != NULL) {
        eddy__conn_t *conn = loop->reap_head;
        loop->reap_head = conn->reap_next;
        if (loop->reap_head == NULL)
            loop->reap_tail = NULL;
        conn->reap_next = NULL;
        eddy__server_fire_close(loop->srv, conn);
        conn_release(conn);
        eddy__loop_flush(loop);
    }
    while (loop->free_head != NULL) {
        eddy__conn_t *conn = loop->free_head;
        loop->free_head = conn->reap_next;
        free(conn);
    }
}

void eddy__loop_close_zombies(eddy__loop_t *loop, bool all)
{
    eddy__conn_t *conn = loop->zombies_head;
    while (conn != NULL) {
        eddy__conn_t *next = conn->next;
        if (all || conn->shutdown_sent)
            final_close(conn);
        conn = next;
    }
}

/* ---- input ---- */

size_t eddy__conn_process(eddy__conn_t *conn, char *buf, size_t len)
{
    size_t off = 0;
    while (off < len && !conn->paused) {
        uint8_t phase = conn->phase;
        size_t n;
        if (phase == EDDY__PHASE_HTTP)
            n = eddy__http_process(conn, buf + off, len - off);
        else if (phase == EDDY__PHASE_WS)
            n = eddy__ws_process(conn, buf + off, len - off);
        else
            return len; /* closing: input is discarded */
        off += n;
        if (phase == EDDY__PHASE_HTTP && conn->phase == EDDY__PHASE_WS)
            eddy__http_free(conn); /* upgraded: the HTTP state is not needed any more */
        if (n == 0 && conn->phase == phase)
            break; /* the parser needs more input */
    }
    return off;
}

/* Reads and discards: a closing connection waits for the peer's EOF. */
static void drain_input(eddy__conn_t *conn)
{
    eddy__loop_t *loop = conn->loop;
    ssize_t n = read(conn->io.fd, loop->recv_buf, loop->recv_cap);
    if (n > 0)
        return;
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    conn->read_eof = true;
    if (conn->released) {
        if (conn->shutdown_sent || conn->out.head == NULL)
            final_close(conn);
        else
            eddy__io_set(loop, &conn->io, conn->io.events & ~(unsigned)EDDY__IO_READ);
    } else {
        eddy__io_set(loop, &conn->io, conn->io.events & ~(unsigned)EDDY__IO_READ);
    }
}

static void conn_on_eof(eddy__conn_t *conn)
{
    conn->read_eof = true;
    eddy__io_set(conn->loop, &conn->io, conn->io.events & ~(unsigned)EDDY__IO_READ);
    eddy__log(conn->loop->srv, EDDY__LOG_DEBUG, "session#%" PRIu64 " is closed by client",
              conn->id);
    eddy__conn_close(conn, EDDY__CLOSE_GRACEFUL);
}

/* Reads once and processes what arrived. Returns false when reading should stop. */
static bool read_once(eddy__conn_t *conn)
{
    eddy__loop_t *loop = conn->loop;
    ssize_t n;
    if (conn->in.len > 0) {
        /* Earlier bytes are pending: read behind them so the parser sees one buffer. */
        if (eddy__buf_reserve(&conn->in, EDDY__SEG_SIZE) != 0) {
            eddy__conn_close(conn, EDDY__CLOSE_ABORT);
            return false;
        }
        n = transport_read(conn, conn->in.data + conn->in.len, conn->in.cap - conn->in.len - 1);
    } else {
        n = transport_read(conn, loop->recv_buf, loop->recv_cap);
    }
    if (n == 0) {
        conn_on_eof(conn);
        return false;
    }
    if (n < 0) {
        if (n == -EAGAIN || n == -EWOULDBLOCK) {
            watch(conn); /* TLS may need the socket writable to go on reading */
            return false;
        }
        eddy__log(loop->srv, EDDY__LOG_INFO, "session#%" PRIu64 ": read failed: %s", conn->id,
                  transport_error(conn, (int)n));
        eddy__conn_close(conn, EDDY__CLOSE_ABORT);
        return false;
    }
    conn->last_recv_ms = loop->now_ms;
    conn->last_recv_time = eddy__wall_time();

    if (conn->in.len > 0) {
        conn->in.len += (size_t)n;
        size_t used = eddy__conn_process(conn, conn->in.data, conn->in.len);
        eddy__buf_consume(&conn->in, used);
    } else {
        size_t used = eddy__conn_process(conn, loop->recv_buf, (size_t)n);
        if (used < (size_t)n && conn->phase != EDDY__PHASE_CLOSING) {
            if (eddy__buf_append(&conn->in, loop->recv_buf + used, (size_t)n - used) != 0) {
                eddy__conn_close(conn, EDDY__CLOSE_ABORT);
                return false;
            }
        }
    }
    if (conn->in.len == 0 && conn->in.cap > 0)
        eddy__buf_free(&conn->in); /* an idle connection holds no input buffer */
    return true;
}

static void conn_on_readable(eddy__conn_t *conn)
{
    if (conn->phase == EDDY__PHASE_CLOSING) {
        drain_input(conn);
        return;
    }
    if (conn->paused) {
        /* A detached response is pending: leave input in the socket (TCP flow control
         * pushes back on a pipelining client) until it is ended. */
        watch(conn);
        return;
    }
    /* OpenSSL may hold decrypted bytes the socket no longer signals: drain those too. */
    while (read_once(conn) && conn->tls != NULL && conn->phase != EDDY__PHASE_CLOSING &&
           !conn->paused && eddy__tls_pending(conn))
        ;
}

static void tls_handshake_step(eddy__conn_t *conn)
{
    int rc = eddy__tls_handshake(conn);
    if (rc == -EAGAIN) {
        watch(conn);
        return;
    }
    if (rc < 0) {
        char ip[46];
        int port;
        eddy__format_peer(&conn->peer, ip, &port);
        eddy__log(conn->loop->srv, EDDY__LOG_INFO,
                  "session#%" PRIu64 " (%s:%d): TLS handshake failed: %s", conn->id, ip, port,
                  transport_error(conn, rc));
        /* OpenSSL already wrote its alert; end cleanly rather than with a reset. */
        eddy__conn_close(conn, EDDY__CLOSE_GRACEFUL);
        return;
    }
    watch(conn);
    /* The client's first request may have come with its last handshake message. */
    conn_on_readable(conn);
}

static void conn_on_io(eddy__loop_t *loop, eddy__io_t *io, unsigned events)
{
    eddy__conn_t *conn = (eddy__conn_t *)((char *)io - offsetof(eddy__conn_t, io));
    if (conn->tls_handshaking && !conn->released) {
        tls_handshake_step(conn);
        return;
    }
    /* TLS can cross the directions: a write waiting for readability, or the reverse. */
    bool wants = conn->tls_wants != 0;
    if ((events & EDDY__IO_WRITE) || (wants && conn->out.head != NULL))
        conn_flush(conn);
    if (((events & EDDY__IO_READ) || wants) && conn->io.fd >= 0)
        conn_on_readable(conn);
}

static void conn_on_timer(eddy__loop_t *loop, eddy__timer_t *timer)
{
    eddy__conn_t *conn = (eddy__conn_t *)((char *)timer - offsetof(eddy__conn_t, timer));
    if (conn->released) {
        final_close(conn); /* the peer never finished: stop lingering */
        return;
    }
    if (conn->tls_handshaking)
        eddy__conn_close(conn, EDDY__CLOSE_GRACEFUL); /* no HTTP answer inside TLS */
    else if (conn->phase == EDDY__PHASE_HTTP)
        eddy__http_timeout(conn);
    else if (conn->phase == EDDY__PHASE_WS)
        eddy__ws_timeout(conn);
}

void eddy__conn_set_timeout(eddy__conn_t *conn, uint64_t ms)
{
    if (ms == 0)
        eddy__timer_stop(conn->loop, &conn->timer);
    else
        eddy__timer_start(conn->loop, &conn->timer, ms);
}

static void resume_deferred(eddy_server_t *srv, void *arg)
{
    eddy__conn_t *conn = eddy__conn_lookup(srv, (eddy_fd_t)(uintptr_t)arg);
    if (conn == NULL || conn->paused)
        return;
    if (conn->in.len > 0) {
        size_t used = eddy__conn_process(conn, conn->in.data, conn->in.len);
        eddy__buf_consume(&conn->in, used);
    }
    if (conn->tls != NULL && !conn->paused && eddy__tls_pending(conn))
        conn_on_readable(conn);
}

void eddy__conn_pause(eddy__conn_t *conn, bool paused)
{
    if (conn->paused == paused)
        return;
    conn->paused = paused;
    if (paused || conn->phase == EDDY__PHASE_CLOSING)
        return;
    watch(conn);
    /* Pipelined requests already buffered are handled from the loop, not from inside the
     * application's call that ended the response. */
    eddy_defer(conn->loop->srv, resume_deferred, (void *)(uintptr_t)conn->id);
}

/* ---- creation ---- */

eddy__conn_t *eddy__conn_new(eddy__loop_t *loop, int fd, const struct sockaddr *peer,
                             socklen_t peer_len, const eddy__listener_t *listener)
{
    eddy_server_t *srv = loop->srv;
    eddy__conn_t *conn = calloc(1, sizeof(*conn));
    if (conn == NULL)
        return NULL;
    conn->loop = loop;
    conn->io = (eddy__io_t){.fd = fd, .events = 0, .cb = conn_on_io};
    eddy__timer_init(&conn->timer, conn_on_timer);
    conn->phase = EDDY__PHASE_HTTP;
    conn->ws_status = EDDY_WS_STATUS_NONE;
    memcpy(&conn->peer, peer, EDDY__MIN((size_t)peer_len, sizeof(conn->peer)));
    conn->local_port = (uint16_t)listener->bound_port;
    conn->connect_time = conn->last_recv_time = eddy__wall_time();
    conn->last_recv_ms = loop->now_ms;
    if ((listener->tls_ctx != NULL && eddy__tls_conn_start(conn, listener->tls_ctx) != 0) ||
        eddy__http_start(conn) != 0 || eddy__io_set(loop, &conn->io, EDDY__IO_READ) != 0) {
        eddy__http_free(conn);
        if (conn->tls != NULL)
            eddy__tls_conn_free(conn);
        free(conn);
        return NULL;
    }
    conn->id = table_insert(&srv->sessions, conn);
    live_list_append(loop, conn);
    return conn;
}

/* SPDX-License-Identifier: MIT */
/*
 * Connections: the transport under every protocol. A connection owns its socket (or TLS
 * over it), input, output, timer, back-pressure and teardown, and knows nothing of HTTP or
 * WebSocket: it calls the protocol it speaks through conn->proto (eddy__proto_t).
 *
 * Input: every read lands in the loop's shared receive buffer and is parsed there in
 * place. Only bytes a parser cannot use yet (a partial HTTP head, a pending request body)
 * are copied into conn->in, so an idle connection owns no input buffer.
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
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "conn.h"
#include "log.h"
#include "tls.h"

#define LINGER_MS   3000
#define IOV_BATCH   64
#define FLUSH_SLICE 64 /* connections written per eddy__loop_flush() */

/* Bytes one connection may write per loop iteration (see conn_flush). */
#define WRITE_BUDGET (256 * 1024)

/* ---- output queue ---- */

#define REF_CACHE_MAX 1024
#define REF_SLOTS     14 /* shared frames one reference segment holds (a 160-byte block) */

eddy__blob_t *eddy__blob_new(size_t len)
{
    eddy__blob_t *blob = malloc(sizeof(*blob) + len);
    if (blob != NULL) {
        atomic_init(&blob->refs, 1);
        blob->len = len;
    }
    return blob;
}

void eddy__blob_ref(eddy__blob_t *blob)
{
    atomic_fetch_add_explicit(&blob->refs, 1, memory_order_relaxed);
}

void eddy__blob_unref(eddy__blob_t *blob)
{
    if (atomic_fetch_sub_explicit(&blob->refs, 1, memory_order_acq_rel) == 1)
        free(blob);
}

/* Segment sizes, and how many spare ones of each a loop keeps (64 KiB or so a class). */
static const size_t seg_class_size[EDDY__SEG_CLASSES] = {512, 2048, 8192, EDDY__SEG_MAX_SIZE};
static const uint16_t seg_class_keep[EDDY__SEG_CLASSES] = {128, 32, 8, 4};

/* A segment for at least want bytes: the smallest class that holds them, or one of its
 * own size beyond the largest class. */
static eddy__seg_t *seg_new(eddy__loop_t *loop, size_t want)
{
    int c = 0;
    while (c < EDDY__SEG_CLASSES && seg_class_size[c] < want)
        c++;
    eddy__seg_t *seg;
    if (c < EDDY__SEG_CLASSES && loop->seg_cache[c] != NULL) {
        seg = loop->seg_cache[c];
        loop->seg_cache[c] = seg->next;
        loop->seg_cache_len[c]--;
    } else {
        size_t cap = c < EDDY__SEG_CLASSES ? seg_class_size[c] : want;
        seg = malloc(sizeof(*seg) + cap);
        if (seg == NULL)
            return NULL;
        seg->cap = cap;
        seg->size_class = c < EDDY__SEG_CLASSES ? (int8_t)c : -1;
    }
    seg->next = NULL;
    seg->refs = false;
    seg->len = seg->sent = 0;
    seg->done = 0;
    return seg;
}

static eddy__blob_t **seg_refs(eddy__seg_t *seg)
{
    return (eddy__blob_t **)(void *)seg->data;
}

/* A segment of references, empty. Consecutive shared frames queued to one connection
 * share it: a fan-out costs a pointer per recipient and frame, not an allocation. */
static eddy__seg_t *seg_new_refs(eddy__loop_t *loop)
{
    eddy__seg_t *seg = loop->ref_cache;
    if (seg != NULL) {
        loop->ref_cache = seg->next;
        loop->ref_cache_len--;
    } else if ((seg = malloc(sizeof(*seg) + REF_SLOTS * sizeof(eddy__blob_t *))) == NULL) {
        return NULL;
    }
    *seg = (eddy__seg_t){.cap = REF_SLOTS, .refs = true};
    return seg;
}

static void seg_release(eddy__loop_t *loop, eddy__seg_t *seg)
{
    if (seg->refs) {
        for (size_t i = seg->done; i < seg->len; i++)
            eddy__blob_unref(seg_refs(seg)[i]);
        if (loop->ref_cache_len < REF_CACHE_MAX) {
            seg->next = loop->ref_cache;
            loop->ref_cache = seg;
            loop->ref_cache_len++;
        } else {
            free(seg);
        }
        return;
    }
    int c = seg->size_class;
    if (c >= 0 && loop->seg_cache_len[c] < seg_class_keep[c]) {
        seg->next = loop->seg_cache[c];
        loop->seg_cache[c] = seg;
        loop->seg_cache_len[c]++;
    } else {
        free(seg);
    }
}

/* The output queue is a circular list held by its tail (tail->next is the head): one
 * pointer per connection. */
static eddy__seg_t *outq_head(const eddy__outq_t *q)
{
    return q->tail != NULL ? q->tail->next : NULL;
}

/* Links seg as the queue's head: its bytes go out first. */
static void outq_push_front(eddy__outq_t *q, eddy__seg_t *seg)
{
    if (q->tail != NULL) {
        seg->next = q->tail->next;
        q->tail->next = seg;
    } else {
        seg->next = seg;
        q->tail = seg;
    }
}

/* Links seg as the queue's tail: after the head's place, and the list turns one step. */
static void outq_link(eddy__outq_t *q, eddy__seg_t *seg)
{
    outq_push_front(q, seg);
    q->tail = seg;
}

/* Unlinks and returns the head segment (the queue is not empty). */
static eddy__seg_t *outq_pop(eddy__outq_t *q)
{
    eddy__seg_t *head = q->tail->next;
    if (head == q->tail)
        q->tail = NULL;
    else
        q->tail->next = head->next;
    return head;
}

/* Every idle connection is one of these: with malloc's 8 bytes, 168 is the 176-byte size
 * class on LP64 (bench/run idle: RSS per connection). */
_Static_assert(sizeof(void *) != 8 || sizeof(eddy__conn_t) <= 168, "eddy__conn_t grew a class");

/* eddy__conn_t.aside: 56 bytes a connection has only while it uses them. */
struct eddy__conn_aside {
    eddy__timer_t timer; /* first member: the loop hands us this pointer */
    eddy__conn_t *conn;
    bool timer_reserved; /* holds a place in the loop's timer heap: arming cannot fail */
    eddy__outq_t held;   /* whole messages behind a fragmented one, counted in out_bytes */
};

static void conn_on_timer(eddy__loop_t *loop, eddy__timer_t *timer);

/* The connection's aside, made if it has none (from the loop's spares when it has one);
 * NULL: out of memory. */
static eddy__conn_aside_t *aside_get(eddy__conn_t *conn)
{
    if (conn->aside == NULL) {
        eddy__loop_t *loop = conn->loop;
        eddy__conn_aside_t *aside = loop->spare_aside_len > 0
                                        ? loop->spare_asides[--loop->spare_aside_len]
                                        : malloc(sizeof(*aside));
        if (aside == NULL)
            return NULL;
        *aside = (eddy__conn_aside_t){.conn = conn};
        eddy__timer_init(&aside->timer, conn_on_timer);
        conn->aside = aside;
    }
    return conn->aside;
}

/* Lets the aside go once neither its timer nor held output is in use. The loop keeps a
 * few: a WebSocket handshake takes one for its header timeout and another for its closing
 * linger, and connections that come and go each take and give back. */
static void aside_trim(eddy__conn_t *conn)
{
    eddy__conn_aside_t *aside = conn->aside;
    if (aside != NULL && !aside->timer_reserved && aside->held.tail == NULL) {
        eddy__loop_t *loop = conn->loop;
        if (loop->spare_aside_len < EDDY__SPARE_ASIDES)
            loop->spare_asides[loop->spare_aside_len++] = aside;
        else
            free(aside);
        conn->aside = NULL;
    }
}

static void outq_clear(eddy__conn_t *conn)
{
    while (conn->out.tail != NULL)
        seg_release(conn->loop, outq_pop(&conn->out));
    if (conn->aside != NULL) {
        while (conn->aside->held.tail != NULL)
            seg_release(conn->loop, outq_pop(&conn->aside->held));
        aside_trim(conn);
    }
    if (conn == conn->loop->reading)
        conn->loop->cork_len = 0;
    eddy__conn_set_out_bytes(conn, 0);
}

static int outq_append(eddy__loop_t *loop, eddy__outq_t *q, const char *data, size_t len)
{
    while (len > 0) {
        eddy__seg_t *tail = q->tail;
        /* Bytes are copied into the last segment of our own while it has room; a queue
         * that keeps growing gets segments of twice the size, up to the largest class. */
        if (tail == NULL || tail->refs || tail->len == tail->cap) {
            size_t grown = tail != NULL ? EDDY__MIN(2 * tail->cap, (size_t)EDDY__SEG_MAX_SIZE) : 0;
            tail = seg_new(loop, EDDY__MAX(len, grown));
            if (tail == NULL)
                return EDDY_ENOMEM;
            outq_link(q, tail);
        }
        size_t n = EDDY__MIN(len, tail->cap - tail->len);
        memcpy(tail->data + tail->len, data, n);
        tail->len += n;
        data += n;
        len -= n;
    }
    return 0;
}

static void flush_list_add(eddy__conn_t *conn)
{
    eddy__loop_t *loop = conn->loop;
    /* The connection being read is written when its input is processed. */
    if (!conn->in_flush_list && conn != loop->reading) {
        conn->in_flush_list = true;
        conn->flush_next = NULL;
        if (loop->flush_tail != NULL)
            loop->flush_tail->flush_next = conn;
        else
            loop->flush_head = conn;
        loop->flush_tail = conn;
    }
}

static int out_of_memory(eddy__conn_t *conn, size_t bytes)
{
    eddy__log(conn->loop->srv, EDDY__LOG_ERROR,
              "session#%" PRIu64 ": out of memory queueing %zu bytes", conn->id, bytes);
    eddy__conn_close(conn, EDDY__CLOSE_ABORT);
    return EDDY_ENOMEM;
}

/*
 * The cork: what the connection being read (loop->reading) writes while its queue is
 * empty collects in the loop's cork buffer and goes out in one send() once its input is
 * processed (uncork()), with no segment taken and given back per echo. Whatever does
 * not fit there (a shared frame, more than the room left) starts the queue, and all that
 * follows joins it: the cork's bytes always come before the queue's. TLS connections
 * write through OpenSSL and do not use it.
 */

void *eddy__conn_reserve_queued(eddy__conn_t *conn, size_t n)
{
    eddy__seg_t *tail = conn->out.tail;
    if (tail != NULL && !tail->refs && tail->cap - tail->len >= n)
        return tail->data + tail->len;
    if (n > EDDY__SEG_MAX_SIZE || (tail = seg_new(conn->loop, n)) == NULL)
        return NULL;
    outq_link(&conn->out, tail);
    return tail->data;
}

void eddy__conn_commit_queued(eddy__conn_t *conn, size_t n)
{
    conn->out.tail->len += n;
    eddy__conn_set_out_bytes(conn, eddy__conn_out_bytes(conn) + n);
    flush_list_add(conn);
}

int eddy__conn_write2(eddy__conn_t *conn, const void *a, size_t a_len, const void *b, size_t b_len)
{
    char *room = eddy__conn_reserve(conn, a_len + b_len);
    if (room != NULL) {
        memcpy(room, a, a_len);
        if (b_len)
            memcpy(room + a_len, b, b_len);
        eddy__conn_commit(conn, a_len + b_len);
        return 0;
    }
    /* Larger than a segment (or memory is short): copied piecewise, filling the last
     * segment first. */
    eddy__outq_t *q = &conn->out;
    if (outq_append(conn->loop, q, a, a_len) != 0 || outq_append(conn->loop, q, b, b_len) != 0)
        return out_of_memory(conn, a_len + b_len);
    eddy__conn_set_out_bytes(conn, eddy__conn_out_bytes(conn) + a_len + b_len);
    flush_list_add(conn);
    return 0;
}

int eddy__conn_write(eddy__conn_t *conn, const void *data, size_t len)
{
    return eddy__conn_write2(conn, data, len, NULL, 0);
}

int eddy__conn_write_blob(eddy__conn_t *conn, eddy__blob_t *blob)
{
    eddy__outq_t *q = &conn->out;
    if (conn->hold_output) {
        eddy__conn_aside_t *aside = aside_get(conn);
        if (aside == NULL)
            return out_of_memory(conn, blob->len);
        q = &aside->held;
    }
    eddy__seg_t *tail = q->tail;
    if (tail == NULL || !tail->refs || tail->len == tail->cap) {
        if ((tail = seg_new_refs(conn->loop)) == NULL)
            return out_of_memory(conn, blob->len);
        outq_link(q, tail);
    }
    eddy__blob_ref(blob);
    seg_refs(tail)[tail->len++] = blob;
    /* Blobs are shared WebSocket frames, each a whole message (publications). */
    eddy__stat_add(&conn->loop->stats.messages_out, 1);
    eddy__conn_set_out_bytes(conn, eddy__conn_out_bytes(conn) + blob->len);
    if (!conn->hold_output)
        flush_list_add(conn);
    return 0;
}

int eddy__conn_hold2(eddy__conn_t *conn, const void *a, size_t a_len, const void *b, size_t b_len)
{
    eddy__conn_aside_t *aside = aside_get(conn);
    if (aside == NULL || outq_append(conn->loop, &aside->held, a, a_len) != 0 ||
        outq_append(conn->loop, &aside->held, b, b_len) != 0)
        return out_of_memory(conn, a_len + b_len);
    eddy__conn_set_out_bytes(conn, eddy__conn_out_bytes(conn) + a_len + b_len);
    return 0;
}

void eddy__conn_release_held(eddy__conn_t *conn)
{
    conn->hold_output = false;
    if (conn->aside == NULL || conn->aside->held.tail == NULL)
        return;
    eddy__outq_t *held = &conn->aside->held;
    /* Both lists are circular, held by their tails: the two rings become one, held's
     * segments after out's (the cork, if any, still goes first). */
    eddy__outq_t *out = &conn->out;
    if (out->tail != NULL) {
        eddy__seg_t *out_head = out->tail->next;
        out->tail->next = held->tail->next;
        held->tail->next = out_head;
    }
    out->tail = held->tail;
    held->tail = NULL;
    aside_trim(conn);
    flush_list_add(conn);
}

/* True when output has stayed over socket_buffer_soft_limit for socket_buffer_soft_seconds,
 * as seen by the messages admitted (as redis does): the clock starts with the message that
 * takes output over the limit and stops with the first one admitted under it. A burst that
 * drains in time only costs this call, once per message while over the limit. */
static bool over_soft_too_long(eddy__conn_t *conn, size_t after)
{
    const eddy__options_t *opts = &conn->loop->srv->opts;
    uint16_t now = (uint16_t)(conn->loop->now_ms >> EDDY__SOFT_TICK_SHIFT);
    if (opts->socket_buffer_soft_limit == 0 || after <= opts->socket_buffer_soft_limit) {
        conn->over_soft = false;
        return false;
    }
    if (!conn->over_soft) {
        conn->over_soft = true;
        conn->over_soft_tick = now;
        eddy__log(conn->loop->srv, EDDY__LOG_DEBUG,
                  "session#%" PRIu64 ": output over socket_buffer_soft_limit: %zu bytes", conn->id,
                  after);
    }
    uint64_t elapsed_ms = (uint64_t)(uint16_t)(now - conn->over_soft_tick) << EDDY__SOFT_TICK_SHIFT;
    return elapsed_ms >= (uint64_t)opts->socket_buffer_soft_seconds * 1000;
}

int eddy__conn_admit_near_limits(eddy__conn_t *conn, size_t bytes)
{
    const eddy__options_t *opts = &conn->loop->srv->opts;
    size_t queued = eddy__conn_out_bytes(conn);
    /* A message larger than the whole buffer still goes out when nothing else waits. */
    bool over_hard = queued > 0 && queued + bytes > opts->socket_buffer_size;
    bool over_soft = !over_hard && over_soft_too_long(conn, queued + bytes) && queued > 0;
    if (over_hard || over_soft) {
        if (opts->slow_consumer_policy == EDDY__SLOW_DROP) {
            if (!conn->dropping)
                eddy__log(conn->loop->srv, EDDY__LOG_WARNING,
                          "session#%" PRIu64 ": slow consumer, %zu bytes queued%s: dropping "
                          "messages until it catches up",
                          conn->id, queued,
                          over_soft ? " over socket_buffer_soft_limit too long" : "");
            conn->dropping = true;
            eddy__stat_add(&conn->loop->stats.dropped, 1);
            return EDDY_EDROPPED;
        }
        if (over_soft)
            eddy__log(conn->loop->srv, EDDY__LOG_WARNING,
                      "session#%" PRIu64 ": slow consumer, %zu bytes queued over "
                      "socket_buffer_soft_limit %zu for %d s: closing",
                      conn->id, queued, opts->socket_buffer_soft_limit,
                      opts->socket_buffer_soft_seconds);
        else
            eddy__log(conn->loop->srv, EDDY__LOG_WARNING,
                      "session#%" PRIu64 ": slow consumer, %zu bytes queued over "
                      "socket_buffer_size %zu: closing",
                      conn->id, queued, opts->socket_buffer_size);
        static const char reason[] = "slow consumer";
        eddy__stat_add(&conn->loop->stats.slow_closes, 1);
        conn->proto->end(conn, EDDY_WS_CLOSE_POLICY_ERROR, reason, sizeof(reason) - 1, true);
        return EDDY_EDROPPED;
    }
    conn->dropping = false;
    if (queued + bytes >= eddy__high_watermark(opts)) {
        conn->above_high = true;
        return EDDY_QUEUED;
    }
    return 0;
}

int eddy__conn_send_raw(eddy__conn_t *conn, const void *data, size_t len)
{
    int rc = eddy__conn_admit(conn, len);
    if (rc < 0)
        return rc;
    int wrc = eddy__conn_write(conn, data, len);
    return wrc != 0 ? wrc : rc;
}

/* Output fell to the low watermark after going over the high one: drain is due. */
static void maybe_drain(eddy__conn_t *conn)
{
    eddy_server_t *srv = conn->loop->srv;
    if (!conn->above_high || eddy__conn_out_bytes(conn) > srv->opts.buffer_low_watermark)
        return;
    conn->above_high = false;
    /* Not for a connection that can take no more output (the protocol may know more
     * reasons: a close frame already sent). */
    if (!conn->ending && !conn->released)
        conn->proto->drained(conn);
}

static void final_close(eddy__conn_t *conn);
static void begin_shutdown(eddy__conn_t *conn);

/* ---- transport: the socket itself, or TLS over it ---- */

/* Text for a transport error: OpenSSL's own words for TLS protocol errors. */
static const char *transport_error(const eddy__conn_t *conn, int err)
{
    return conn->tls != NULL && err == EDDY_EPROTO ? eddy__tls_last_error() : eddy_strerror(err);
}

/*
 * The data path's socket calls. On x86-64 they are made inline, without glibc's
 * cancellation-point wrappers: once a process has a second thread (worker_num > 1, or any
 * thread of the application), each read(), send() or sendmsg() also turns the thread's
 * asynchronous cancellation on and off around the call, two atomic exchanges and about
 * 45 instructions, twice per echoed message (bench/instructions); eddy never cancels a
 * thread. Same results and errno as the wrappers. Elsewhere, and under the sanitizers
 * (whose wrappers check the buffers), the wrappers.
 */
#if defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
static inline long sys_call(long nr, long a, long b, long c, long d)
{
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = 0;
    register long r9 __asm__("r9") = 0;
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    if (ret < 0 && ret > -4096) {
        errno = (int)-ret;
        return -1;
    }
    return ret;
}

static inline ssize_t sock_read(int fd, void *buf, size_t len)
{
    return sys_call(SYS_read, fd, (long)buf, (long)len, 0);
}

static inline ssize_t sock_send(int fd, const void *buf, size_t len)
{
    return sys_call(SYS_sendto, fd, (long)buf, (long)len, MSG_NOSIGNAL); /* no address */
}

static inline ssize_t sock_sendmsg(int fd, const struct msghdr *msg)
{
    return sys_call(SYS_sendmsg, fd, (long)msg, MSG_NOSIGNAL, 0);
}
#else
static inline ssize_t sock_read(int fd, void *buf, size_t len)
{
    return read(fd, buf, len);
}

static inline ssize_t sock_send(int fd, const void *buf, size_t len)
{
    return send(fd, buf, len, MSG_NOSIGNAL);
}

static inline ssize_t sock_sendmsg(int fd, const struct msghdr *msg)
{
    return sendmsg(fd, msg, MSG_NOSIGNAL);
}
#endif

static ssize_t transport_read(eddy__conn_t *conn, void *buf, size_t cap)
{
    if (conn->tls != NULL)
        return eddy__tls_read(conn, buf, cap);
    ssize_t n;
    do
        n = sock_read(conn->io.fd, buf, cap);
    while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
}

static ssize_t transport_writev(eddy__conn_t *conn, struct iovec *iov, int n)
{
    if (conn->tls != NULL)
        return eddy__tls_writev(conn, iov, n);
    /* send/sendmsg rather than write/writev: MSG_NOSIGNAL spares applications SIGPIPE.
     * One piece (the usual case) goes with send(), which skips importing an iovec. */
    ssize_t written;
    do {
        if (n == 1) {
            written = sock_send(conn->io.fd, iov[0].iov_base, iov[0].iov_len);
        } else {
            struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)n};
            written = sock_sendmsg(conn->io.fd, &msg);
        }
    } while (written < 0 && errno == EINTR);
    return written < 0 ? -errno : written;
}

/* The events to watch: reading unless the peer is gone or input is paused, writing while
 * output waits, and whatever a TLS handshake or record needs. While a detached response
 * holds input back, the peer's hang-up is still watched, so that the connection closes
 * (and the response learns it) without waiting for the application to write. */
static void watch(eddy__conn_t *conn)
{
    unsigned events = 0;
    /* Reading also stops while output is over socket_buffer_size: a peer that sends (pings,
     * say) but does not read cannot make the answers it is owed pile up without bound. */
    bool output_full =
        eddy__conn_out_bytes(conn) > conn->loop->srv->opts.socket_buffer_size && !conn->ending;
    bool paused = conn->paused && !conn->ending;
    if (!conn->read_eof && !paused && !output_full)
        events |= EDDY__IO_READ;
    else if (!conn->read_eof && paused)
        events |= EDDY__IO_HANGUP;
    if (conn->out.tail != NULL && !conn->tls_handshaking)
        events |= EDDY__IO_WRITE;
    events |= conn->tls_wants;
    eddy__io_set(conn->loop, &conn->io, events);
}

static void write_failed(eddy__conn_t *conn, int err)
{
    eddy__log(conn->loop->srv, EDDY__LOG_INFO, "session#%" PRIu64 ": write failed: %s", conn->id,
              transport_error(conn, err));
    outq_clear(conn);
    if (conn->released)
        final_close(conn);
    else
        eddy__conn_close(conn, EDDY__CLOSE_ABORT);
}

/* All queued output is written: stop watching for writability, and what was waiting for
 * that (a zombie's shutdown, the drain event) is due. */
static void all_written(eddy__conn_t *conn)
{
    watch(conn);
    if (conn->released && !conn->shutdown_sent)
        begin_shutdown(conn);
    else
        maybe_drain(conn);
}

/* Writes as much queued output as the socket takes, up to WRITE_BUDGET bytes: what is left
 * waits for the next loop iteration (the socket stays watched for writability), so one
 * connection with megabytes queued and a fast reader cannot hold up the others. */
static void conn_flush(eddy__conn_t *conn)
{
    eddy__loop_t *loop = conn->loop;
    eddy__outq_t *q = &conn->out;
    size_t budget = WRITE_BUDGET;
    while (q->tail != NULL && !conn->tls_handshaking) {
        if (budget == 0) {
            watch(conn);
            return;
        }
        struct iovec iov[IOV_BATCH];
        int n = 0;
        size_t room = budget;
        for (eddy__seg_t *seg = outq_head(q); n < IOV_BATCH && room > 0; seg = seg->next) {
            if (seg->refs) {
                eddy__blob_t **refs = seg_refs(seg);
                for (size_t i = seg->done; i < seg->len && n < IOV_BATCH && room > 0; i++) {
                    size_t skip = i == seg->done ? seg->sent : 0;
                    iov[n].iov_base = refs[i]->data + skip;
                    iov[n].iov_len = EDDY__MIN(refs[i]->len - skip, room);
                    room -= iov[n].iov_len;
                    n++;
                }
            } else {
                iov[n].iov_base = seg->data + seg->sent;
                iov[n].iov_len = EDDY__MIN(seg->len - seg->sent, room);
                room -= iov[n].iov_len;
                n++;
            }
            if (seg == q->tail)
                break;
        }
        ssize_t written = transport_writev(conn, iov, n);
        if (written < 0) {
            if (written == -EAGAIN || written == -EWOULDBLOCK)
                watch(conn);
            else
                write_failed(conn, (int)written);
            return;
        }
        eddy__conn_set_out_bytes(conn, eddy__conn_out_bytes(conn) - (size_t)written);
        eddy__stat_add(&loop->stats.bytes_out, (uint64_t)written);
        budget -= (size_t)written;
        while (written > 0) {
            eddy__seg_t *seg = outq_head(q);
            if (seg->refs) {
                /* Frames written whole are released at once; the segment when all are. */
                eddy__blob_t **refs = seg_refs(seg);
                while (written > 0 && seg->done < seg->len) {
                    size_t left = refs[seg->done]->len - seg->sent;
                    if ((size_t)written < left) {
                        seg->sent += (size_t)written;
                        written = 0;
                        break;
                    }
                    written -= (ssize_t)left;
                    eddy__blob_unref(refs[seg->done++]);
                    seg->sent = 0;
                }
                if (seg->done < seg->len)
                    break;
                seg_release(loop, outq_pop(q));
                continue;
            }
            size_t left = seg->len - seg->sent;
            if ((size_t)written < left) {
                seg->sent += (size_t)written;
                break;
            }
            written -= (ssize_t)left;
            seg_release(loop, outq_pop(q));
        }
    }
    if (conn->tls_handshaking)
        return; /* the handshake comes first; output waits for it */
    conn->tls_wants = 0;
    all_written(conn);
}

/* Writes the cork's bytes (the connection was just read), then its queue. What the socket
 * does not take goes to the front of the queue. */
static void uncork(eddy__conn_t *conn)
{
    eddy__loop_t *loop = conn->loop;
    size_t len = loop->cork_len;
    loop->cork_len = 0;
    ssize_t written;
    do
        written = sock_send(conn->io.fd, loop->cork, len);
    while (written < 0 && errno == EINTR);
    if (written < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        write_failed(conn, -errno);
        return;
    }
    written = EDDY__MAX(written, 0);
    eddy__conn_set_out_bytes(conn, eddy__conn_out_bytes(conn) - (size_t)written);
    eddy__stat_add(&loop->stats.bytes_out, (uint64_t)written);
    if ((size_t)written == len) {
        if (conn->out.tail != NULL)
            conn_flush(conn);
        else
            all_written(conn);
        return;
    }
    size_t rest = len - (size_t)written;
    eddy__seg_t *seg = seg_new(loop, rest);
    if (seg == NULL) {
        out_of_memory(conn, rest);
        return;
    }
    memcpy(seg->data, loop->cork + written, rest);
    seg->len = rest;
    outq_push_front(&conn->out, seg);
    watch(conn);
}

void eddy__loop_flush(eddy__loop_t *loop)
{
    /* In order, and at most a slice at a time: a fan-out to a thousand connections or
     * more (milliseconds of system calls) lets the loop read and run timers in between,
     * and what is published meanwhile joins the queues of connections not yet written,
     * which then take several frames in one write. A slice of 64 (about 0.3 ms of loopback
     * writes) is where the gain levels off: a 1k fan-out with 16 messages in flight goes
     * from 8 to 15 frames per write against 256 (CPU per delivery -40%, p50 latency
     * halved); one message at a time is unchanged. */
    for (int budget = FLUSH_SLICE; budget > 0 && loop->flush_head != NULL; budget--) {
        eddy__conn_t *conn = loop->flush_head;
        loop->flush_head = conn->flush_next;
        if (loop->flush_head == NULL)
            loop->flush_tail = NULL;
        conn->in_flush_list = false;
        if (conn->io.fd >= 0)
            conn_flush(conn);
    }
}

/* ---- teardown ---- */

static void final_close(eddy__conn_t *conn)
{
    eddy__loop_t *loop = conn->loop;
    if (conn->io.fd < 0)
        return;
    eddy__io_set(loop, &conn->io, 0);
    close(conn->io.fd);
    conn->io.fd = -1;
    eddy__conn_drop_timer(conn);
    outq_clear(conn);
    free(conn->in);
    conn->in = NULL;
    if (conn->tls != NULL)
        eddy__tls_conn_free(conn);
    eddy__connmap_remove(&loop->conns, conn->id);
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
    eddy__conn_set_timeout(conn, LINGER_MS);
}

void eddy__conn_close(eddy__conn_t *conn, int how)
{
    eddy__loop_t *loop = conn->loop;
    if (how == EDDY__CLOSE_ABORT) {
        outq_clear(conn);
        conn->aborted = true;
    }
    if (conn->ending)
        return;
    conn->ending = true;
    eddy__session_set_closing(&loop->srv->registry, conn);
    eddy__conn_set_timeout(conn, 0);
    if (conn->proto->closing != NULL)
        conn->proto->closing(conn);
    conn->reap_next = NULL;
    if (loop->reap_tail)
        loop->reap_tail->reap_next = conn;
    else
        loop->reap_head = conn;
    loop->reap_tail = conn;
}

static void conn_release(eddy__conn_t *conn)
{
    eddy__loop_t *loop = conn->loop;
    eddy__registry_remove(&loop->srv->registry, conn);
    eddy__stat_add(&loop->stats.conns_closed, 1);
    conn->released = true;
    conn->proto->free(conn);

    if (conn->aborted || conn->io.fd < 0) {
        final_close(conn);
        return;
    }
    /* Zombie: output drains, then the lingering close. It stays in the loop's map until
     * then, where lookups skip it. */
    if (conn->out.tail == NULL)
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
        eddy__log(loop->srv, EDDY__LOG_DEBUG, "session#%" PRIu64 ": %s connection closed%s",
                  conn->id, conn->proto->name, conn->aborted ? " (aborted)" : "");
        conn->proto->closed(conn);
        conn_release(conn);
        eddy__loop_flush(loop);
    }
    /* A connection aborted with output queued may still be on the flush list, which is
     * written a slice at a time: it is freed once the list has passed it. */
    eddy__conn_t **link = &loop->free_head;
    while (*link != NULL) {
        eddy__conn_t *conn = *link;
        if (conn->in_flush_list) {
            link = &conn->reap_next;
            continue;
        }
        *link = conn->reap_next;
        free(conn);
    }
}

void eddy__loop_close_zombies(eddy__loop_t *loop, bool all)
{
    /* Closing removes from the map being walked: walk a copy of the pointers. */
    eddy__connmap_t *map = &loop->conns;
    if (map->len == 0)
        return;
    size_t n = 0;
    eddy__conn_t **zombies = malloc(map->len * sizeof(*zombies));
    for (size_t i = 0; i <= map->mask; i++) {
        eddy__conn_t *conn = map->slots[i];
        if (conn == NULL || !conn->released || !(all || conn->shutdown_sent))
            continue;
        if (zombies != NULL) {
            zombies[n++] = conn;
        } else {
            /* Out of memory for the copy: close it now and walk again from the start
             * (slower, but stopping must not wait on a zombie forever). */
            final_close(conn);
            i = (size_t)-1;
        }
    }
    for (size_t i = 0; i < n; i++)
        final_close(zombies[i]);
    free(zombies);
}

/* ---- input ---- */

/* Hands buf[0..len) (the loop's receive buffer or the connection's own) to the protocol,
 * and after a switch to the next. Returns bytes consumed. */
static inline size_t process_input(eddy__conn_t *conn, char *buf, size_t len)
{
    size_t off = 0;
    const eddy__proto_t *proto;
    /* A protocol takes all it can; it leaves bytes for more input, or for the protocol it
     * switched to. */
    do {
        proto = conn->proto;
        if (off == len || conn->paused || conn->ending)
            break;
        off += proto->process(conn, buf + off, len - off);
    } while (conn->proto != proto);
    return conn->ending ? len : off; /* a closing connection's input is discarded */
}

void eddy__conn_switch(eddy__conn_t *conn, const eddy__proto_t *proto)
{
    conn->proto = proto;
    conn->proto_state = NULL;
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
        if (conn->shutdown_sent || conn->out.tail == NULL)
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

/* The peer hung up while its input was paused (a detached response pending): the
 * connection closes as at an EOF, and the response learns it (EDDY_ECLOSED). */
static void conn_on_hangup(eddy__conn_t *conn)
{
    eddy__log(conn->loop->srv, EDDY__LOG_DEBUG,
              "session#%" PRIu64 " hung up while its response was pending", conn->id);
    conn->read_eof = true;
    eddy__conn_close(conn, EDDY__CLOSE_GRACEFUL);
}

/* Makes room in conn->in for extra more bytes (and the spare one). Returns false on
 * out-of-memory. */
static bool inbuf_reserve(eddy__conn_t *conn, size_t extra)
{
    eddy__inbuf_t *in = conn->in;
    size_t len = in != NULL ? in->len : 0;
    if (in != NULL && len + extra < in->cap)
        return true;
    if (extra > SIZE_MAX / 4 - len)
        return false;
    size_t cap = in != NULL ? in->cap : 256;
    while (cap <= len + extra)
        cap *= 2;
    in = realloc(in, sizeof(*in) + cap);
    if (in == NULL)
        return false;
    in->len = len;
    in->cap = cap;
    conn->in = in;
    return true;
}

/* Drops n processed bytes from the front of conn->in; an empty buffer is freed. */
static void inbuf_consume(eddy__conn_t *conn, size_t n)
{
    eddy__inbuf_t *in = conn->in;
    if (n < in->len) {
        memmove(in->data, in->data + n, in->len - n);
        in->len -= n;
        return;
    }
    free(in); /* an idle connection holds no input buffer */
    conn->in = NULL;
}

/* Reads once and processes what arrived. Returns false when reading should stop. */
static bool read_once(eddy__conn_t *conn)
{
    eddy__loop_t *loop = conn->loop;
    ssize_t n;
    if (conn->in != NULL) {
        /* Earlier bytes are pending: read behind them so the parser sees one buffer. */
        if (!inbuf_reserve(conn, EDDY__READ_CHUNK)) {
            eddy__conn_close(conn, EDDY__CLOSE_ABORT);
            return false;
        }
        eddy__inbuf_t *in = conn->in;
        n = transport_read(conn, in->data + in->len, in->cap - in->len - 1);
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
    atomic_store_explicit(&conn->last_recv_ms, (uint32_t)loop->now_ms, memory_order_relaxed);
    eddy__stat_add(&loop->stats.bytes_in, (uint64_t)n);

    if (conn->in != NULL) {
        conn->in->len += (size_t)n;
        size_t used = process_input(conn, conn->in->data, conn->in->len);
        inbuf_consume(conn, used);
    } else {
        size_t used = process_input(conn, loop->recv_buf, (size_t)n);
        size_t left = (size_t)n - used;
        if (left > 0 && !conn->ending) {
            if (!inbuf_reserve(conn, left)) {
                eddy__conn_close(conn, EDDY__CLOSE_ABORT);
                return false;
            }
            memcpy(conn->in->data, loop->recv_buf + used, left);
            conn->in->len = left;
        }
    }
    return true;
}

static void conn_on_readable(eddy__conn_t *conn)
{
    if (conn->ending) {
        drain_input(conn);
        return;
    }
    if (conn->paused || eddy__conn_out_bytes(conn) > conn->loop->srv->opts.socket_buffer_size) {
        /* A detached response is pending, or output is over the limit: leave input in the
         * socket (TCP flow control pushes back on the client) until that changes. */
        watch(conn);
        return;
    }
    /* What the input produces for this connection itself (an echo, a pong, a response)
     * is written as soon as it is read, while it is hot in the cache, rather than from the
     * flush list: from the cork, so echo-like traffic holds no output segment at all. */
    eddy__loop_t *loop = conn->loop;
    loop->reading = conn; /* callbacks never read another socket: this does not nest */
    /* OpenSSL may hold decrypted bytes the socket no longer signals: drain those too. */
    while (read_once(conn) && conn->tls != NULL && !conn->ending && !conn->paused &&
           eddy__tls_pending(conn))
        ;
    loop->reading = NULL;
    if (loop->cork_len > 0)
        uncork(conn);
    else if (conn->out.tail != NULL && conn->io.fd >= 0)
        conn_flush(conn);
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
        eddy__peer_format(&conn->peer, ip, &port);
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
    if ((events & EDDY__IO_WRITE) || (wants && conn->out.tail != NULL))
        conn_flush(conn);
    if (((events & EDDY__IO_READ) || wants) && conn->io.fd >= 0)
        conn_on_readable(conn);
    else if ((events & EDDY__IO_HANGUP) && conn->io.fd >= 0 && !conn->ending)
        conn_on_hangup(conn);
}

static void conn_on_timer(eddy__loop_t *loop, eddy__timer_t *timer)
{
    eddy__conn_t *conn = ((eddy__conn_aside_t *)timer)->conn;
    if (conn->released) {
        final_close(conn); /* the peer never finished: stop lingering */
        return;
    }
    if (conn->tls_handshaking)
        eddy__conn_close(conn, EDDY__CLOSE_GRACEFUL); /* no protocol answer inside TLS */
    else if (!conn->ending)
        conn->proto->timeout(conn);
}

int eddy__conn_set_timeout(eddy__conn_t *conn, uint64_t ms)
{
    eddy__conn_aside_t *aside = conn->aside;
    if (aside == NULL || !aside->timer_reserved) {
        /* The first call, from the protocol's start(): every later one succeeds. */
        if ((aside = aside_get(conn)) == NULL || eddy__timer_reserve(conn->loop) != 0) {
            aside_trim(conn);
            eddy__log(conn->loop->srv, EDDY__LOG_ERROR,
                      "session#%" PRIu64 ": out of memory for a timeout", conn->id);
            return EDDY_ENOMEM;
        }
        aside->timer_reserved = true;
    }
    if (ms == 0)
        eddy__timer_stop(conn->loop, &aside->timer);
    else
        eddy__timer_start(conn->loop, &aside->timer, ms);
    return 0;
}

void eddy__conn_drop_timer(eddy__conn_t *conn)
{
    eddy__conn_aside_t *aside = conn->aside;
    if (aside == NULL || !aside->timer_reserved)
        return;
    eddy__timer_stop(conn->loop, &aside->timer);
    eddy__timer_release(conn->loop);
    aside->timer_reserved = false;
    aside_trim(conn);
}

bool eddy__conn_timeout_armed(const eddy__conn_t *conn)
{
    return conn->aside != NULL && conn->aside->timer.heap_index != SIZE_MAX;
}

static void resume_deferred(eddy_server_t *srv, void *arg)
{
    /* Deferred on the connection's own loop, which is the one running this. */
    eddy__conn_t *conn = eddy__conn_lookup(eddy__loop_here(srv), (eddy_fd_t)(uintptr_t)arg);
    if (conn == NULL || conn->paused)
        return;
    if (conn->in != NULL) {
        size_t used = process_input(conn, conn->in->data, conn->in->len);
        inbuf_consume(conn, used);
    }
    if (conn->tls != NULL && !conn->paused && eddy__tls_pending(conn))
        conn_on_readable(conn);
}

void eddy__conn_pause(eddy__conn_t *conn, bool paused)
{
    if (conn->paused == paused)
        return;
    conn->paused = paused;
    if (paused || conn->ending)
        return;
    watch(conn);
    /* Pipelined requests already buffered are handled from the loop, not from inside the
     * application's call that ended the response. */
    eddy_defer(conn->loop->srv, resume_deferred, (void *)(uintptr_t)conn->id);
}

/* ---- creation ---- */

void eddy__conn_set_status(eddy__conn_t *conn, int status)
{
    atomic_store(&conn->ws_status, (uint8_t)status);
}

eddy__conn_t *eddy__conn_new(eddy__loop_t *loop, int fd, const struct sockaddr *peer,
                             const eddy__listener_t *listener, eddy_fd_t id,
                             const eddy__proto_t *proto)
{
    eddy_server_t *srv = loop->srv;
    eddy__conn_t *conn = calloc(1, sizeof(*conn));
    if (conn == NULL)
        return NULL;
    conn->loop = loop;
    conn->io = (eddy__io_t){.fd = fd, .events = 0, .cb = conn_on_io};
    conn->proto = proto;
    atomic_init(&conn->ws_status, EDDY_WS_STATUS_NONE);
    atomic_init(&conn->last_recv_ms, (uint32_t)loop->now_ms);
    conn->id = id != 0 ? id : eddy__registry_next_id(&srv->registry);
    conn->local_port = (uint16_t)listener->bound_port;
    conn->connect_s = (uint32_t)(loop->now_wall_ms / 1000);
    eddy__peer_set(&conn->peer, peer);
    /* Once: eddy_server_reload_tls() may publish another context meanwhile. */
    struct ssl_ctx_st *tls_ctx = atomic_load_explicit(&listener->tls_ctx, memory_order_acquire);
    if ((tls_ctx != NULL && eddy__tls_conn_start(conn, tls_ctx) != 0) || proto->start(conn) != 0)
        goto fail;
    if (eddy__connmap_put(&loop->conns, conn) != 0)
        goto fail;
    if (eddy__io_set(loop, &conn->io, EDDY__IO_READ) != 0)
        goto fail_mapped;
    /* Last: once registered, other threads may see the connection. */
    if (eddy__registry_add(&srv->registry, conn) != 0) {
        eddy__io_set(loop, &conn->io, 0);
        goto fail_mapped;
    }
    eddy__stat_add(&loop->stats.conns_opened, 1);
    return conn;
fail_mapped:
    eddy__connmap_remove(&loop->conns, conn->id);
fail:
    proto->free(conn);
    eddy__conn_drop_timer(conn);
    if (conn->tls != NULL)
        eddy__tls_conn_free(conn);
    free(conn);
    return NULL;
}

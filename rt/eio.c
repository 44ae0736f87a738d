/* SPDX-License-Identifier: MIT */
/*
 * Engine.IO sessions (rt/eio.h): the session table, the open packet, heartbeats, the
 * WebSocket transport, long-polling (eio_polling.c) and the upgrade between them.
 *
 * Concurrency. A session has two mutexes. cb_lock serialises everything that may call a
 * handler (engine callbacks, timers, posted tasks); it is taken only at those entry
 * points, never while holding another lock, and never for another session, so it cannot
 * deadlock. lock guards the session's state; it is held briefly, never while a handler
 * runs, so handlers may call eio_send()/eio_close() on any session. Order: cb_lock, then
 * lock, then the table's lock.
 *
 * Lifetime. A session is reference counted: the table, each timer and each posted task
 * that names it, and each connection mapped to it (fdmap below) hold a reference. It
 * leaves the table when it closes (state ST_CLOSED) and is freed with its last reference;
 * eio_server_free() frees what is left (timers the stopped loops will never fire).
 *
 * Connections to sessions. Every callback of a connection runs on its loop's thread, so
 * the loop threads keep their own map from connection id to session (thread-local: a
 * lookup per message takes no lock).
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "eio_internal.h"
#include "eio_payload.h"
#include "rt_base64.h"
#include "rt_grow.h"

/* ---- small helpers ---- */

uint64_t eio__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int eio__buf_reserve(eio_buf_t *b, size_t len)
{
    return len > SIZE_MAX - b->len ? EDDY_ENOMEM : rt_grow(&b->data, &b->cap, b->len + len);
}

int eio__buf_add(eio_buf_t *b, const void *data, size_t len)
{
    if (eio__buf_reserve(b, len) != 0)
        return EDDY_ENOMEM;
    if (len > 0)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    return 0;
}

void eio__buf_free(eio_buf_t *b)
{
    free(b->data);
    *b = (eio_buf_t){0};
}

/* ---- the per-loop map from connection id to session ---- */

/* The server is the session's (s->es): 16 bytes a connection. */
typedef struct fdmap_entry {
    eddy_fd_t fd;
    eio_session_t *s; /* NULL: free slot */
} fdmap_entry_t;

/* Linear probing with backward-shift deletion; freed when it empties, so an exited loop
 * thread leaves nothing behind. */
static _Thread_local struct {
    fdmap_entry_t *slots;
    size_t mask; /* capacity - 1 */
    size_t len;
} fdmap;

static size_t fdmap_hash(const eio_server_t *es, eddy_fd_t fd)
{
    uint64_t h = (fd ^ (uint64_t)(uintptr_t)es) * 0x9e3779b97f4a7c15ull;
    return (size_t)(h >> 17);
}

/* The slot of (es, fd), or the free slot that ends its probe run. */
static fdmap_entry_t *fdmap_slot(const eio_server_t *es, eddy_fd_t fd)
{
    for (size_t i = fdmap_hash(es, fd) & fdmap.mask;; i = (i + 1) & fdmap.mask) {
        fdmap_entry_t *e = &fdmap.slots[i];
        if (e->s == NULL || (e->fd == fd && e->s->es == es))
            return e;
    }
}

/* Inlined on the message path: every WebSocket message of the server asks, and most are
 * not the layer's (a miss ends at the first free slot of a table at most 3/4 full). */
static inline eio_session_t *fdmap_find(const eio_server_t *es, eddy_fd_t fd)
{
    const fdmap_entry_t *slots = fdmap.slots;
    if (slots == NULL)
        return NULL;
    size_t mask = fdmap.mask;
    for (size_t i = fdmap_hash(es, fd) & mask;; i = (i + 1) & mask) {
        eio_session_t *s = slots[i].s;
        if (s == NULL || (slots[i].fd == fd && s->es == es))
            return s;
    }
}

eio_session_t *eio__fdmap_get(const eio_server_t *es, eddy_fd_t fd)
{
    return fdmap_find(es, fd);
}

static int fdmap_grow(void)
{
    size_t cap = fdmap.slots ? (fdmap.mask + 1) * 2 : 64;
    fdmap_entry_t *slots = calloc(cap, sizeof(*slots));
    if (slots == NULL)
        return EDDY_ENOMEM;
    for (size_t i = 0; fdmap.slots != NULL && i <= fdmap.mask; i++) {
        fdmap_entry_t *e = &fdmap.slots[i];
        if (e->s == NULL)
            continue;
        size_t j = fdmap_hash(e->s->es, e->fd) & (cap - 1);
        while (slots[j].s != NULL)
            j = (j + 1) & (cap - 1);
        slots[j] = *e;
    }
    free(fdmap.slots);
    fdmap.slots = slots;
    fdmap.mask = cap - 1;
    return 0;
}

/* Maps fd to s, taking a reference (a previous mapping of fd is released). */
int eio__fdmap_put(const eio_server_t *es, eddy_fd_t fd, eio_session_t *s)
{
    if ((fdmap.slots == NULL || (fdmap.len + 1) * 4 > (fdmap.mask + 1) * 3) && fdmap_grow() != 0)
        return EDDY_ENOMEM;
    fdmap_entry_t *e = fdmap_slot(es, fd);
    eio__session_ref(s);
    eio_session_t *old = e->s;
    *e = (fdmap_entry_t){fd, s};
    if (old != NULL)
        eio__session_unref(old);
    else
        fdmap.len++;
    return 0;
}

/* Removes fd's mapping; returns its session with the map's reference (the caller
 * releases it), or NULL. */
eio_session_t *eio__fdmap_take(const eio_server_t *es, eddy_fd_t fd)
{
    if (fdmap.slots == NULL)
        return NULL;
    fdmap_entry_t *e = fdmap_slot(es, fd);
    eio_session_t *s = e->s;
    if (s == NULL)
        return NULL;
    /* Backward shift: move later entries of the probe run into the hole. */
    size_t i = (size_t)(e - fdmap.slots);
    for (size_t j = (i + 1) & fdmap.mask; fdmap.slots[j].s != NULL; j = (j + 1) & fdmap.mask) {
        size_t home = fdmap_hash(fdmap.slots[j].s->es, fdmap.slots[j].fd) & fdmap.mask;
        if (((j - home) & fdmap.mask) >= ((j - i) & fdmap.mask)) {
            fdmap.slots[i] = fdmap.slots[j];
            i = j;
        }
    }
    fdmap.slots[i] = (fdmap_entry_t){0};
    if (--fdmap.len == 0) {
        free(fdmap.slots);
        fdmap.slots = NULL;
        fdmap.mask = 0;
    }
    return s;
}

/* Drops fd's mapping if it maps to s. */
void eio__fdmap_drop(const eio_server_t *es, eddy_fd_t fd, eio_session_t *s)
{
    if (fd == 0 || eio__fdmap_get(es, fd) != s)
        return;
    eio__session_unref(eio__fdmap_take(es, fd));
}

/* ---- sessions ---- */

void eio__session_ref(eio_session_t *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

static void session_free(eio_session_t *s)
{
    eio__buf_free(&s->out);
    free(s);
}

/* Takes s off es->all (es->lock held, or the layer is being freed). */
static void all_unlink(eio_server_t *es, eio_session_t *s)
{
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        es->all = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
}

void eio__session_unref(eio_session_t *s)
{
    if (s == NULL || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    eio_server_t *es = s->es;
    pthread_mutex_lock(&es->lock);
    all_unlink(es, s);
    pthread_mutex_unlock(&es->lock);
    session_free(s);
}

static size_t sid_hash(const char *sid)
{
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < EIO_SID_LEN; i++)
        h = (h ^ (unsigned char)sid[i]) * 1099511628211ull;
    return (size_t)h;
}

/* Fills sid with 20 URL-safe characters from 15 random bytes. */
static int make_sid(char sid[EIO_SID_LEN + 1])
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char raw[15];
    for (size_t got = 0; got < sizeof(raw);) {
        ssize_t n = getrandom(raw + got, sizeof(raw) - got, 0);
        if (n < 0)
            return EDDY_EINVAL;
        got += (size_t)n;
    }
    for (int i = 0, o = 0; i < 15; i += 3) {
        uint32_t v = (uint32_t)raw[i] << 16 | (uint32_t)raw[i + 1] << 8 | raw[i + 2];
        for (int k = 3; k >= 0; k--)
            sid[o++] = alphabet[(v >> (6 * k)) & 63];
    }
    sid[EIO_SID_LEN] = '\0';
    return 0;
}

/* Looks sid up and takes a reference, or NULL. */
eio_session_t *eio__table_find(eio_server_t *es, const char *sid)
{
    if (sid == NULL || strlen(sid) != EIO_SID_LEN)
        return NULL;
    pthread_mutex_lock(&es->lock);
    eio_session_t *s = es->buckets[sid_hash(sid) & (es->nbuckets - 1)];
    while (s != NULL && memcmp(s->sid, sid, EIO_SID_LEN) != 0)
        s = s->hnext;
    if (s != NULL)
        eio__session_ref(s);
    pthread_mutex_unlock(&es->lock);
    return s;
}

static int table_grow(eio_server_t *es)
{
    size_t n = es->nbuckets * 2;
    eio_session_t **buckets = calloc(n, sizeof(*buckets));
    if (buckets == NULL)
        return EDDY_ENOMEM;
    for (size_t i = 0; i < es->nbuckets; i++) {
        for (eio_session_t *s = es->buckets[i], *next; s != NULL; s = next) {
            next = s->hnext;
            size_t b = sid_hash(s->sid) & (n - 1);
            s->hnext = buckets[b];
            buckets[b] = s;
        }
    }
    free(es->buckets);
    es->buckets = buckets;
    es->nbuckets = n;
    return 0;
}

/* Creates a session (state ST_OPENING, in the table with a fresh sid), or NULL. The
 * caller gets a reference besides the table's. */
eio_session_t *eio__session_new(eio_server_t *es, int protocol, int transport)
{
    eio_session_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->es = es;
    s->protocol = (uint8_t)protocol;
    s->transport = (uint8_t)transport;
    s->state = ST_OPENING;
    atomic_init(&s->refs, 2);
    atomic_init(&s->tasks, 0);
    atomic_init(&s->ws_fd, 0);
    rt_lock_init(&s->lock);
    rt_lock_init(&s->cb_lock);
    pthread_mutex_lock(&es->lock);
    /* A collision of 120 random bits is not expected; it is still checked. */
    for (;;) {
        if (make_sid(s->sid) != 0 || (es->count + 1 > es->nbuckets && table_grow(es) != 0)) {
            pthread_mutex_unlock(&es->lock);
            session_free(s);
            return NULL;
        }
        eio_session_t *other = es->buckets[sid_hash(s->sid) & (es->nbuckets - 1)];
        while (other != NULL && memcmp(other->sid, s->sid, EIO_SID_LEN) != 0)
            other = other->hnext;
        if (other == NULL)
            break;
    }
    size_t b = sid_hash(s->sid) & (es->nbuckets - 1);
    s->hnext = es->buckets[b];
    es->buckets[b] = s;
    es->count++;
    s->in_table = true;
    s->next = es->all;
    if (es->all != NULL)
        es->all->prev = s;
    es->all = s;
    pthread_mutex_unlock(&es->lock);
    return s;
}

/* Takes s out of the table (s->lock held); the caller releases the table's reference. */
static bool table_remove(eio_session_t *s)
{
    eio_server_t *es = s->es;
    if (!s->in_table)
        return false;
    pthread_mutex_lock(&es->lock);
    eio_session_t **link = &es->buckets[sid_hash(s->sid) & (es->nbuckets - 1)];
    while (*link != s)
        link = &(*link)->hnext;
    *link = s->hnext;
    es->count--;
    s->in_table = false;
    pthread_mutex_unlock(&es->lock);
    return true;
}

/* ---- sending ---- */

/* Pushes one Engine.IO packet as a WebSocket frame: a text packet (type byte, then data)
 * or a binary message (v3: 0x04 first). Returns eddy_push()'s answer. */
int eio__ws_push_packet(eio_session_t *s, eddy_fd_t fd, char type, const void *data, size_t len,
                        bool binary, int flags)
{
    eddy_server_t *srv = s->es->srv;
    bool prefix = !binary || s->protocol == 3;
    if (!prefix)
        return eddy_push(srv, fd, data, len, EDDY_WS_OPCODE_BINARY, flags);
    /* The type byte goes in front: on the stack for the small packets (heartbeats, most
     * messages), else in a buffer of its own. */
    char stack[512];
    char *frame = len + 1 <= sizeof(stack) ? stack : malloc(len + 1);
    if (frame == NULL)
        return EDDY_ENOMEM;
    frame[0] = binary ? 4 : type;
    if (len > 0)
        memcpy(frame + 1, data, len);
    int rc = eddy_push(srv, fd, frame, len + 1,
                       binary ? EDDY_WS_OPCODE_BINARY : EDDY_WS_OPCODE_TEXT, flags);
    if (frame != stack)
        free(frame);
    return rc;
}

/* Sends an empty close frame, as the reference's ws.close() does. */
void eio__ws_close(eio_session_t *s, eddy_fd_t fd)
{
    if (fd != 0)
        eddy_push(s->es->srv, fd, NULL, 0, EDDY_WS_OPCODE_CLOSE, EDDY_WS_FLAG_FIN);
}

/* Queues one packet for the long-polling transport (or until a WebSocket opens): kind
 * EIO_REC_TEXT (type byte included in the bytes) or EIO_REC_BINARY. */
int eio__queue_packet(eio_session_t *s, int kind, char type, const void *data, size_t len)
{
    return eio__queue_rec(&s->out, kind, type, data, len);
}

int eio__queue_rec(eio_buf_t *q, int kind, char type, const void *data, size_t len)
{
    if (len > UINT32_MAX - 1)
        return EDDY_EINVAL;
    uint32_t n = (uint32_t)len + (kind == EIO_REC_TEXT);
    unsigned char head[6] = {(unsigned char)kind,      (unsigned char)n,
                             (unsigned char)(n >> 8),  (unsigned char)(n >> 16),
                             (unsigned char)(n >> 24), (unsigned char)type};
    size_t mark = q->len;
    int rc = eio__buf_add(q, head, kind == EIO_REC_TEXT ? 6 : 5);
    if (rc == 0)
        rc = eio__buf_add(q, data, len);
    if (rc != 0)
        q->len = mark;
    return rc;
}

/* Pushes what was queued before the WebSocket opened (s->lock held). */
static void flush_queue_to_ws(eio_session_t *s, eddy_fd_t fd)
{
    for (size_t at = 0; at + 5 <= s->out.len;) {
        const unsigned char *rec = (const unsigned char *)s->out.data + at;
        uint32_t n = (uint32_t)rec[1] | (uint32_t)rec[2] << 8 | (uint32_t)rec[3] << 16 |
                     (uint32_t)rec[4] << 24;
        const char *bytes = (const char *)rec + 5;
        if (rec[0] == EIO_REC_TEXT)
            eddy_push(s->es->srv, fd, bytes, n, EDDY_WS_OPCODE_TEXT, EDDY_WS_FLAG_FIN);
        else
            eio__ws_push_packet(s, fd, '4', bytes, n, true, EDDY_WS_FLAG_FIN);
        at += 5 + n;
    }
    s->out.len = 0;
}

/* The open packet, "0{...}", into out (NUL-terminated); returns its length. */
size_t eio__open_packet(const eio_session_t *s, bool upgrades, char *out, size_t cap)
{
    const eio_server_t *es = s->es;
    int n = snprintf(out, cap,
                     "0{\"sid\":\"%s\",\"upgrades\":[%s],\"pingInterval\":%u,\"pingTimeout\":%u,"
                     "\"maxPayload\":%zu}",
                     s->sid, upgrades ? "\"websocket\"" : "", es->cfg.ping_interval_ms,
                     es->cfg.ping_timeout_ms, es->cfg.max_payload);
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

/* ---- heartbeat and timers ---- */

/*
 * A session's deadlines (ping, pong, upgrade, forced close) go into a heap of its loop, and
 * each loop has one engine timer, for the earliest deadline of its heap: an idle session
 * costs a 16-byte heap entry instead of an engine timer of its own. Each heap is used by
 * its loop's thread only. An entry holds a reference to its session. Entries are never
 * removed before they are due: a session whose deadline moves earlier, to another loop, or
 * that closes leaves its entry behind, to be dropped when it comes up (the one that counts
 * is the session's timer_due on timer_loop while timer_armed).
 */
typedef struct eio_timer_entry {
    uint64_t due;
    eio_session_t *s;
} eio_timer_entry_t;

typedef struct eio_timers {
    eio_server_t *es;
    uint16_t loop;
    bool firing;             /* timers_fired() runs: it sets the engine timer at its end */
    eio_timer_entry_t *heap; /* binary min-heap by due */
    size_t len, cap;
    uint64_t timer_id; /* the engine timer, 0: none */
    uint64_t timer_due;
} eio_timers_t;

static void timers_fired(eddy_server_t *srv, uint64_t timer_id, void *arg);

static bool entry_before(const eio_timer_entry_t *a, const eio_timer_entry_t *b)
{
    return a->due < b->due;
}

static int heap_push(eio_timers_t *t, uint64_t due, eio_session_t *s)
{
    if (t->len == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        eio_timer_entry_t *heap = realloc(t->heap, cap * sizeof(*heap));
        if (heap == NULL)
            return EDDY_ENOMEM;
        t->heap = heap;
        t->cap = cap;
    }
    eio_timer_entry_t e = {due, s};
    size_t i = t->len++;
    while (i > 0 && entry_before(&e, &t->heap[(i - 1) / 2])) {
        t->heap[i] = t->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    t->heap[i] = e;
    return 0;
}

static eio_timer_entry_t heap_pop(eio_timers_t *t)
{
    eio_timer_entry_t top = t->heap[0];
    eio_timer_entry_t last = t->heap[--t->len];
    size_t i = 0;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= t->len)
            break;
        if (child + 1 < t->len && entry_before(&t->heap[child + 1], &t->heap[child]))
            child++;
        if (!entry_before(&t->heap[child], &last))
            break;
        t->heap[i] = t->heap[child];
        i = child;
    }
    if (t->len > 0)
        t->heap[i] = last;
    /* Give memory back once a burst of sessions has gone. */
    if (t->cap > 64 && t->len < t->cap / 4) {
        eio_timer_entry_t *heap = realloc(t->heap, t->cap / 2 * sizeof(*heap));
        if (heap != NULL) {
            t->heap = heap;
            t->cap /= 2;
        }
    }
    return top;
}

/* The calling loop's heap (created on first use), or NULL (out of memory, or not a loop
 * thread). */
static eio_timers_t *loop_timers(eio_server_t *es)
{
    int loop = eddy_loop_index(es->srv);
    if (loop < 0 || loop >= EIO_MAX_LOOPS)
        return NULL;
    if (es->timers[loop] == NULL) {
        eio_timers_t *t = calloc(1, sizeof(*t));
        if (t == NULL)
            return NULL;
        t->es = es;
        t->loop = (uint16_t)loop;
        es->timers[loop] = t;
    }
    return es->timers[loop];
}

/* Makes sure the loop's engine timer fires at the heap's earliest deadline. */
static void timers_schedule(eio_timers_t *t)
{
    if (t->firing || t->len == 0)
        return;
    uint64_t due = t->heap[0].due;
    if (t->timer_id != 0 && t->timer_due <= due)
        return;
    eddy_server_t *srv = t->es->srv;
    if (t->timer_id != 0)
        eddy_timer_clear(srv, t->timer_id); /* our own loop's: exact */
    uint64_t now = eio__now_ms();
    t->timer_id = eddy_timer_after(srv, due > now ? due - now : 0, timers_fired, t);
    t->timer_due = due;
    if (t->timer_id == 0)
        eddy_log(srv, EDDY_LOG_ERROR, "eio: out of memory setting a timer");
}

static void session_timer_fired(eio_session_t *s, uint16_t loop, uint64_t due);

static void timers_fired(eddy_server_t *srv, uint64_t timer_id, void *arg)
{
    eio_timers_t *t = arg;
    if (timer_id != t->timer_id)
        return; /* superseded (a cleared timer may still run) */
    t->timer_id = 0;
    t->firing = true;
    uint64_t now = eio__now_ms();
    while (t->len > 0 && t->heap[0].due <= now) {
        eio_timer_entry_t e = heap_pop(t);
        session_timer_fired(e.s, t->loop, e.due);
    }
    t->firing = false;
    timers_schedule(t);
}

/* The heaps of a freed layer: their loops are stopped, the sessions are freed with it. */
static void timers_free(eio_server_t *es)
{
    for (size_t i = 0; i < EIO_MAX_LOOPS; i++) {
        if (es->timers[i] != NULL)
            free(es->timers[i]->heap);
        free(es->timers[i]);
        es->timers[i] = NULL;
    }
}

/* The next deadline of s (s->lock held), 0 if none. */
static uint64_t next_due(const eio_session_t *s)
{
    uint64_t due = UINT64_MAX;
    if (s->state == ST_OPEN) {
        if (s->protocol == 3 || s->waiting_pong)
            due = s->timeout_due;
        else
            due = s->ping_due;
        if (s->probe_fd != 0 && s->upgrade_due < due)
            due = s->upgrade_due;
    } else if (s->state == ST_CLOSING) {
        due = s->close_due;
    }
    return due == UINT64_MAX ? 0 : due;
}

/*
 * Makes sure s's next deadline is in a heap (s->lock held; on a loop thread): an entry due
 * no later than it is kept (when it comes up it adds the next one), else one goes into the
 * calling loop's heap. The handlers a deadline calls run on the loop of its heap.
 */
void eio__session_arm(eio_session_t *s)
{
    uint64_t due = next_due(s);
    if (due == 0 || (s->timer_armed && s->timer_due <= due))
        return;
    eio_timers_t *t = loop_timers(s->es);
    if (t == NULL) {
        eddy_log(s->es->srv, EDDY_LOG_ERROR, "eio: session %s: no timer (out of memory)", s->sid);
        return;
    }
    eio__session_ref(s);
    if (heap_push(t, due, s) != 0) {
        eio__session_unref(s);
        eddy_log(s->es->srv, EDDY_LOG_ERROR, "eio: session %s: out of memory setting a timer",
                 s->sid);
        return;
    }
    s->timer_armed = true;
    s->timer_due = due;
    s->timer_loop = t->loop;
    timers_schedule(t);
}

/* Sends a heartbeat or noop packet on the session's transport (s->lock held). */
static void send_control(eio_session_t *s, char type)
{
    eddy_fd_t ws = atomic_load(&s->ws_fd);
    if (s->transport == EIO_TR_WEBSOCKET && ws != 0 && s->state != ST_OPENING) {
        eio__ws_push_packet(s, ws, type, NULL, 0, false, EDDY_WS_FLAG_FIN);
        return;
    }
    if (eio__queue_packet(s, EIO_REC_TEXT, type, NULL, 0) == 0)
        eio__polling_kick(s);
}

/* Starts the heartbeat of a session that just opened (s->lock held). */
void eio__heartbeat_start(eio_session_t *s)
{
    uint64_t now = eio__now_ms();
    const eio_config_t *cfg = &s->es->cfg;
    s->waiting_pong = false;
    if (s->protocol == 3)
        s->timeout_due = now + cfg->ping_interval_ms + cfg->ping_timeout_ms;
    else
        s->ping_due = now + cfg->ping_interval_ms;
    eio__session_arm(s);
}

/* The heap entry (loop, due) of s came up; it was the one that counts, or is dropped. */
static void session_timer_fired(eio_session_t *s, uint16_t loop, uint64_t due)
{
    rt_lock(&s->cb_lock);
    rt_lock(&s->lock);
    const char *reason = NULL;
    if (s->timer_armed && s->timer_loop == loop && s->timer_due == due) {
        s->timer_armed = false;
        uint64_t now = eio__now_ms();
        const eio_config_t *cfg = &s->es->cfg;
        if (s->state == ST_OPEN) {
            if ((s->protocol == 3 || s->waiting_pong) && now >= s->timeout_due) {
                reason = "ping timeout";
            } else if (s->protocol == 4 && !s->waiting_pong && now >= s->ping_due) {
                s->waiting_pong = true;
                s->refreshed = false;
                s->timeout_due = now + cfg->ping_timeout_ms;
                send_control(s, '2');
            }
            if (reason == NULL && s->probe_fd != 0 && now >= s->upgrade_due)
                eio__upgrade_cancel(s);
        } else if (s->state == ST_CLOSING && now >= s->close_due) {
            reason = "forced close";
        }
        if (reason == NULL)
            eio__session_arm(s);
    }
    rt_unlock(&s->lock);
    if (reason != NULL)
        eio__session_finish(s, reason);
    rt_unlock(&s->cb_lock);
    eio__session_unref(s);
}

/* ---- closing ---- */

/*
 * Ends s with reason (cb_lock held, lock not): tears its transports down, takes it out of
 * the table and calls the close handler. Nothing happens if it ended already. A session
 * that never opened (refused by the open handler) ends without the handler.
 */
void eio__session_finish(eio_session_t *s, const char *reason)
{
    rt_lock(&s->lock);
    if (s->state == ST_CLOSED) {
        rt_unlock(&s->lock);
        return;
    }
    bool opened = s->state != ST_OPENING || s->open_called;
    s->state = ST_CLOSED;
    eddy_fd_t ws = atomic_exchange(&s->ws_fd, 0);
    /* While eio_server_free() runs the engine is gone: its loops hold nothing of ours. */
    if (!s->es->freeing) {
        if (s->transport == EIO_TR_WEBSOCKET)
            eio__ws_close(s, ws);
        if (s->probe_fd != 0)
            eio__upgrade_cancel(s);
        eio__polling_finish(s, reason);
    }
    s->timer_armed = false; /* its heap entry is dropped when it comes up */
    bool removed = table_remove(s);
    rt_unlock(&s->lock);
    if (opened)
        s->es->h.close(s, reason, s->es->ud);
    if (removed)
        eio__session_unref(s);
}

/* Frees what eio_server_free() left behind once nothing refers to it any more. */
static void server_release(eio_server_t *es)
{
    pthread_mutex_destroy(&es->lock);
    free(es->buckets);
    free(es->path);
    free(es);
}

void eio__task_posted(eio_session_t *s)
{
    eio__session_ref(s);
    atomic_fetch_add_explicit(&s->tasks, 1, memory_order_relaxed);
}

/*
 * A posted task of s ended (or was not posted after all). Normally this drops its
 * reference. After eio_server_free() (called before eddy_server_free(), which runs the
 * tasks the stopped loops left), s and the layer were kept only for these tasks: the last
 * one frees s, and the layer with the last such session; nothing else runs then.
 */
void eio__task_done(eio_session_t *s)
{
    eio_server_t *es = s->es;
    if (!es->freeing) {
        atomic_fetch_sub_explicit(&s->tasks, 1, memory_order_relaxed);
        eio__session_unref(s);
        return;
    }
    if (atomic_fetch_sub_explicit(&s->tasks, 1, memory_order_relaxed) != 1)
        return;
    all_unlink(es, s);
    session_free(s);
    if (es->all == NULL)
        server_release(es);
}

static void close_task_run(eddy_server_t *srv, void *arg)
{
    eio_session_t *s = arg;
    rt_lock(&s->cb_lock);
    eio__session_finish(s, s->pending_reason);
    rt_unlock(&s->cb_lock);
    eio__task_done(s);
}

/* Ends s with reason later, on a loop (never inside the caller, which may be a handler of
 * s or of another session): on the loop of fd if it is alive, else on the calling loop
 * (or loop 0). s->lock held. */
void eio__session_finish_later(eio_session_t *s, eddy_fd_t fd, const char *reason)
{
    if (s->pending_reason != NULL)
        return;
    s->pending_reason = reason;
    eio__task_posted(s);
    if ((fd == 0 || eddy_post(s->es->srv, fd, close_task_run, s) != 0) &&
        eddy_defer(s->es->srv, close_task_run, s) != 0) {
        /* Out of memory: the session still ends at its next deadline. */
        s->pending_reason = NULL;
        eio__task_done(s);
    }
}

void eio_close(eio_session_t *s)
{
    rt_lock(&s->lock);
    if (s->state == ST_OPEN && s->transport == EIO_TR_WEBSOCKET) {
        /* Pushes are queued at once: the close frame goes out after them. */
        s->state = ST_CLOSING;
        s->close_due = eio__now_ms();
        eio__session_finish_later(s, atomic_load(&s->ws_fd), "forced close");
    } else if (s->state == ST_OPEN) {
        eio__polling_close(s);
    } else if (s->state == ST_OPENING) {
        eio__session_finish_later(s, 0, "forced close");
    }
    rt_unlock(&s->lock);
}

/* ---- receiving ---- */

/*
 * Handles one decoded packet of the session's active transport (cb_lock held, lock not).
 * Returns the reason the session must end for, or NULL. type is the packet type byte
 * ('0'-'6'), data its payload.
 */
const char *eio__on_packet(eio_session_t *s, char type, const char *data, size_t len, bool binary)
{
    const eio_config_t *cfg = &s->es->cfg;
    rt_lock(&s->lock);
    if (s->state != ST_OPEN) {
        rt_unlock(&s->lock);
        return NULL;
    }
    /* v4: any packet while a pong is awaited extends the wait, once (engine.io
     * socket.js onPacket). */
    if (s->protocol == 4 && s->waiting_pong && !s->refreshed && type != '3') {
        s->timeout_due = eio__now_ms() + cfg->ping_timeout_ms;
        s->refreshed = true;
    }
    const char *reason = NULL;
    switch (type) {
    case '2':
        if (s->protocol == 4) {
            reason = "transport error"; /* invalid heartbeat direction */
            break;
        }
        s->timeout_due = eio__now_ms() + cfg->ping_interval_ms + cfg->ping_timeout_ms;
        send_control(s, '3');
        break;
    case '3':
        if (s->protocol == 3) {
            reason = "transport error";
            break;
        }
        if (s->waiting_pong) {
            s->waiting_pong = false;
            s->ping_due = eio__now_ms() + cfg->ping_interval_ms;
        }
        break;
    case '4':
        rt_unlock(&s->lock);
        s->es->h.message(s, data, len, binary, s->es->ud);
        return NULL;
    default:
        break; /* open, close (WebSocket: ignored), upgrade, noop */
    }
    if (reason == NULL)
        eio__session_arm(s);
    rt_unlock(&s->lock);
    return reason;
}

/* Handles one decoded packet whose data may still be base64 (cb_lock held, lock not). */
const char *eio__on_decoded(eio_session_t *s, const eio_packet_t *pk)
{
    char type = eio_type_char(pk->type);
    if (!pk->base64)
        return eio__on_packet(s, type, pk->data, pk->len, pk->binary);
    unsigned char *bytes = malloc(rt_base64_decoded_max(pk->len) + 1);
    if (bytes == NULL)
        return "transport error";
    long n = rt_base64_decode(bytes, pk->data, pk->len);
    const char *reason =
        n < 0 ? "parse error" : eio__on_packet(s, type, (const char *)bytes, (size_t)n, true);
    free(bytes);
    return reason;
}

/* Handles one WebSocket message of the session's active transport (cb_lock held). */
static const char *ws_message(eio_session_t *s, const eddy_frame_t *frame)
{
    if (frame->len > s->es->cfg.max_payload) {
        /* As the reference's ws: close code 1009, no reason. */
        eddy_disconnect(s->es->srv, frame->fd, EDDY_WS_CLOSE_MESSAGE_TOO_BIG, NULL);
        return "transport error";
    }
    eio_packet_t pk;
    if (frame->opcode == EDDY_WS_OPCODE_BINARY) {
        if (s->protocol == 4)
            return eio__on_packet(s, '4', frame->data, frame->len, true);
        /* v3: the first byte is the packet type; the reference ignores an unknown one. */
        if (eio3_binary_frame_decode(frame->data, frame->len, &pk) != 0)
            return NULL;
        return eio__on_decoded(s, &pk);
    }
    if (eio_packet_decode(s->protocol, frame->data, frame->len, &pk) != 0)
        return "parse error";
    return eio__on_decoded(s, &pk);
}

/* ---- the upgrade (polling -> WebSocket) ---- */

/* Abandons an upgrade in progress (s->lock held): the probe WebSocket is closed. */
void eio__upgrade_cancel(eio_session_t *s)
{
    eddy_fd_t probe = s->probe_fd;
    s->probe_fd = 0;
    s->probed = false;
    eio__ws_close(s, probe);
}

/* A message on the probe WebSocket (cb_lock held). */
static void probe_message(eio_session_t *s, const eddy_frame_t *frame)
{
    rt_lock(&s->lock);
    if (s->state != ST_OPEN || frame->fd != s->probe_fd) {
        rt_unlock(&s->lock);
        return;
    }
    bool text = frame->opcode == EDDY_WS_OPCODE_TEXT;
    if (text && frame->len == 6 && memcmp(frame->data, "2probe", 6) == 0) {
        eio__ws_push_packet(s, frame->fd, '3', "probe", 5, false, EDDY_WS_FLAG_FIN);
        s->probed = true;
        /* A noop releases the pending GET at once, so the client can send "5". */
        eio__polling_noop(s);
        rt_unlock(&s->lock);
        return;
    }
    if (text && frame->len == 1 && frame->data[0] == '5' && s->probed) {
        s->transport = EIO_TR_WEBSOCKET;
        atomic_store(&s->ws_fd, frame->fd);
        s->probe_fd = 0;
        s->probed = false;
        eio__polling_discard(s);
        flush_queue_to_ws(s, frame->fd);
        /* From now on every deadline of s is in this loop's heap, the WebSocket's (eio.h
         * promises the handlers run there): an entry on a polling loop is abandoned (it
         * comes up, finds itself superseded and does nothing). */
        s->timer_armed = false;
        eio__session_arm(s);
        rt_unlock(&s->lock);
        if (s->es->h.upgrade != NULL)
            s->es->h.upgrade(s, s->es->ud);
        return;
    }
    eio__upgrade_cancel(s);
    rt_unlock(&s->lock);
}

/* ---- engine callbacks ---- */

/* Whether req is for Engine.IO: its path starts with the configured one. */
bool eio__path_matches(const eio_server_t *es, eddy_request_t *req)
{
    return strncmp(eddy_request_path(req), es->path, es->path_len) == 0;
}

int eio__protocol_of(eddy_request_t *req)
{
    /* Anything but "4" is the older revision (engine.io server.js). */
    const char *eio = eddy_request_get(req, "EIO");
    return eio != NULL && strcmp(eio, "4") == 0 ? 4 : 3;
}

void eio__count_error(eio_server_t *es, int code)
{
    atomic_fetch_add_explicit(&es->errors[code], 1, memory_order_relaxed);
}

void eio_server_errors(eio_server_t *es, uint64_t out[EIO_ERROR_CODES])
{
    for (int i = 0; i < EIO_ERROR_CODES; i++)
        out[i] = atomic_load_explicit(&es->errors[i], memory_order_relaxed);
}

static int refuse_upgrade(eio_server_t *es, eddy_request_t *req, int status, const char *message)
{
    /* The messages are Engine.IO's (eio.h), so the code follows from them. */
    eio__count_error(es, message[0] == 'T' ? 0 : message[0] == 'S' ? 1 : message[0] == 'F' ? 4 : 3);
    static const char *const headers[] = {"Content-Type", "text/html", NULL};
    int rc = eddy_upgrade_refuse(req, status, headers, message);
    return rc > 0 ? rc : status;
}

bool eio_handle_upgrade(eio_server_t *es, eddy_request_t *req, int *status)
{
    if (!eio__path_matches(es, req))
        return false;
    *status = 0;
    const char *transport = eddy_request_get(req, "transport");
    if (transport == NULL || strcmp(transport, "websocket") != 0) {
        /* Polling over an upgrade request is not served either. */
        bool known =
            transport != NULL && strcmp(transport, "polling") == 0 && es->cfg.allow_polling;
        *status = refuse_upgrade(es, req, 400, known ? "Bad request" : "Transport unknown");
        return true;
    }
    int protocol = eio__protocol_of(req);
    eddy_fd_t fd = eddy_request_fd(req);
    const char *sid = eddy_request_get(req, "sid");
    if (sid != NULL && sid[0] != '\0') {
        eio_session_t *s = eio__table_find(es, sid);
        if (s == NULL) {
            *status = refuse_upgrade(es, req, 400, "Session ID unknown");
            return true;
        }
        rt_lock(&s->lock);
        const char *error = NULL;
        if (s->protocol != protocol)
            error = "Bad request";
        else if (s->state != ST_OPEN || eio__fdmap_put(es, fd, s) != 0)
            error = "Bad request";
        /* A second WebSocket for a session already on one (or upgrading) is accepted and
         * closed once open, as the reference does (101, then a close without status):
         * eio_handle_open closes an fd that is neither s's WebSocket nor its probe. */
        else if (s->transport == EIO_TR_POLLING && s->probe_fd == 0)
            s->probe_fd = fd;
        rt_unlock(&s->lock);
        eio__session_unref(s);
        if (error != NULL)
            *status = refuse_upgrade(es, req, 400, error);
        return true;
    }
    eio_session_t *s = eio__session_new(es, protocol, EIO_TR_WEBSOCKET);
    if (s == NULL || eio__fdmap_put(es, fd, s) != 0) {
        if (s != NULL) {
            rt_lock(&s->cb_lock);
            eio__session_finish(s, "transport error");
            rt_unlock(&s->cb_lock);
            eio__session_unref(s);
        }
        *status = refuse_upgrade(es, req, 400, "Bad request");
        return true;
    }
    atomic_store(&s->ws_fd, fd);
    rt_lock(&s->cb_lock);
    int refused = es->h.open(s, req, es->ud);
    if (refused != 0) {
        eio__session_finish(s, "forced close");
        rt_unlock(&s->cb_lock);
        eio__fdmap_drop(es, fd, s);
        eio__session_unref(s);
        *status = refuse_upgrade(es, req, refused >= 400 && refused <= 499 ? refused : 403,
                                 refused == 403 ? "Forbidden" : "Bad request");
        return true;
    }
    rt_lock(&s->lock);
    s->open_called = true;
    rt_unlock(&s->lock);
    rt_unlock(&s->cb_lock);
    eio__session_unref(s);
    return true;
}

bool eio_handle_open(eio_server_t *es, eddy_request_t *req)
{
    eddy_fd_t fd = eddy_request_fd(req);
    eio_session_t *s = eio__fdmap_get(es, fd);
    if (s == NULL)
        return eio__path_matches(es, req); /* refused meanwhile: nothing to do */
    rt_lock(&s->lock);
    if (s->state == ST_OPENING && atomic_load(&s->ws_fd) == fd) {
        char open[256];
        size_t n = eio__open_packet(s, false, open, sizeof(open));
        eddy_push(es->srv, fd, open, n, EDDY_WS_OPCODE_TEXT, EDDY_WS_FLAG_FIN);
        s->state = ST_OPEN;
        flush_queue_to_ws(s, fd);
        eio__heartbeat_start(s);
    } else if (s->state == ST_OPEN && s->probe_fd == fd) {
        s->upgrade_due = eio__now_ms() + es->cfg.upgrade_timeout_ms;
        eio__session_arm(s);
    } else if (atomic_load(&s->ws_fd) != fd && s->probe_fd != fd) {
        eio__ws_close(s, fd); /* a second WebSocket, or a probe abandoned meanwhile */
    }
    rt_unlock(&s->lock);
    return true;
}

/* Out of line: inlined, its frame (saved registers, locals) would be set up for every
 * message the application's callback passes on, the layer's or not. */
__attribute__((noinline)) static void session_message(eio_session_t *s, const eddy_frame_t *frame)
{
    /* The map's reference keeps s alive: only this loop removes the entry. */
    rt_lock(&s->cb_lock);
    if (atomic_load_explicit(&s->ws_fd, memory_order_relaxed) == frame->fd) {
        const char *reason = ws_message(s, frame);
        if (reason != NULL)
            eio__session_finish(s, reason);
    } else {
        probe_message(s, frame);
    }
    rt_unlock(&s->cb_lock);
}

bool eio_handle_message(eio_server_t *es, const eddy_frame_t *frame)
{
    eio_session_t *s = fdmap_find(es, frame->fd);
    if (s == NULL)
        return false;
    if (frame->opcode == EDDY_WS_OPCODE_TEXT || frame->opcode == EDDY_WS_OPCODE_BINARY)
        session_message(s, frame);
    return true;
}

bool eio_handle_close(eio_server_t *es, eddy_fd_t fd)
{
    eio_session_t *s = eio__fdmap_take(es, fd);
    if (s == NULL)
        return false;
    rt_lock(&s->cb_lock);
    rt_lock(&s->lock);
    const char *reason = NULL;
    if (atomic_load(&s->ws_fd) == fd && s->transport == EIO_TR_WEBSOCKET) {
        atomic_store(&s->ws_fd, 0);
        reason = "transport close";
    } else if (s->probe_fd == fd) {
        s->probe_fd = 0;
        s->probed = false;
    } else {
        reason = eio__polling_conn_closed(s, fd);
    }
    rt_unlock(&s->lock);
    if (reason != NULL)
        eio__session_finish(s, reason);
    rt_unlock(&s->cb_lock);
    eio__session_unref(s);
    return true;
}

/* ---- eio_send ---- */

int eio_send(eio_session_t *s, const eio_part_t *parts, size_t nparts, int flags)
{
    if (nparts == 0 || parts == NULL)
        return EDDY_EINVAL;
    rt_lock(&s->lock);
    int rc = 0;
    eddy_fd_t ws = atomic_load(&s->ws_fd);
    if (s->state == ST_CLOSING || s->state == ST_CLOSED) {
        rc = EDDY_ECLOSED;
    } else if (s->state == ST_OPEN && s->transport == EIO_TR_WEBSOCKET) {
        /* Under the lock, so that no other send to s lands between the parts. */
        for (size_t i = 0; i < nparts && rc >= 0; i++) {
            const eio_part_t *p = &parts[i];
            int r;
            if (!p->binary && (flags & EIO_SEND_PREFIXED))
                r = eddy_push(s->es->srv, ws, p->data, p->len, EDDY_WS_OPCODE_TEXT,
                              EDDY_WS_FLAG_FIN);
            else
                r = eio__ws_push_packet(s, ws, '4', p->data, p->len, p->binary, EDDY_WS_FLAG_FIN);
            if (r == EDDY_ENOTFOUND || r == EDDY_ESTATE)
                r = EDDY_ECLOSED;
            if (r != 0)
                rc = r;
        }
    } else if ((flags & EIO_SEND_VOLATILE) && !eio__polling_writable(s)) {
        rc = EDDY_EDROPPED;
    } else {
        size_t mark = s->out.len;
        for (size_t i = 0; i < nparts && rc == 0; i++) {
            const eio_part_t *p = &parts[i];
            bool skip = !p->binary && (flags & EIO_SEND_PREFIXED) && p->len > 0;
            rc = eio__queue_packet(s, p->binary ? EIO_REC_BINARY : EIO_REC_TEXT, '4',
                                   (const char *)p->data + skip, p->len - skip);
        }
        if (rc != 0)
            s->out.len = mark;
        else if (s->state == ST_OPEN)
            eio__polling_kick(s);
    }
    rt_unlock(&s->lock);
    return rc;
}

/* ---- server ---- */

void eio_config_init(eio_config_t *cfg)
{
    *cfg = (eio_config_t){.path = "/socket.io/",
                          .ping_interval_ms = 25000,
                          .ping_timeout_ms = 20000,
                          .upgrade_timeout_ms = 10000,
                          .max_payload = 1000000,
                          .allow_polling = true};
}

eio_server_t *eio_server_new(eddy_server_t *srv, const eio_config_t *cfg, const eio_handlers_t *h,
                             void *ud)
{
    if (srv == NULL || h == NULL || h->open == NULL || h->close == NULL || h->message == NULL)
        return NULL;
    eio_server_t *es = calloc(1, sizeof(*es));
    if (es == NULL)
        return NULL;
    if (cfg != NULL)
        es->cfg = *cfg;
    else
        eio_config_init(&es->cfg);
    es->path = strdup(es->cfg.path != NULL ? es->cfg.path : "/socket.io/");
    es->nbuckets = 64;
    es->buckets = calloc(es->nbuckets, sizeof(*es->buckets));
    if (es->path == NULL || es->buckets == NULL) {
        free(es->path);
        free(es->buckets);
        free(es);
        return NULL;
    }
    es->cfg.path = es->path;
    es->path_len = strlen(es->path);
    es->srv = srv;
    es->h = *h;
    es->ud = ud;
    pthread_mutex_init(&es->lock, NULL);
    return es;
}

void eio_server_free(eio_server_t *es)
{
    if (es == NULL)
        return;
    es->freeing = true;
    /* Sessions still open (long-polling ones have no connection the stop could close). */
    for (;;) {
        pthread_mutex_lock(&es->lock);
        eio_session_t *s = NULL;
        for (size_t i = 0; i < es->nbuckets && s == NULL; i++)
            s = es->buckets[i];
        if (s != NULL)
            eio__session_ref(s);
        pthread_mutex_unlock(&es->lock);
        if (s == NULL)
            break;
        rt_lock(&s->cb_lock);
        eio__session_finish(s, "server shutting down");
        rt_unlock(&s->cb_lock);
        eio__session_unref(s);
    }
    /* What is left is referenced by timers that will never fire, and by tasks posted to
     * the loops that eddy_server_free() may still run: those sessions stay for their tasks
     * (eio__task_done()), and the layer with them. */
    for (eio_session_t *s = es->all, *next; s != NULL; s = next) {
        next = s->next;
        if (atomic_load(&s->tasks) > 0)
            continue;
        all_unlink(es, s);
        session_free(s);
    }
    timers_free(es);
    if (es->all == NULL)
        server_release(es);
}

/* ---- getters ---- */

const char *eio_session_id(const eio_session_t *s)
{
    return s->sid;
}

int eio_session_protocol(const eio_session_t *s)
{
    return s->protocol;
}

eddy_fd_t eio_session_ws_fd(const eio_session_t *s)
{
    return atomic_load(&((eio_session_t *)s)->ws_fd);
}

void eio_session_set_data(eio_session_t *s, void *data)
{
    atomic_store(&s->data, data);
}

void *eio_session_data(const eio_session_t *s)
{
    return atomic_load(&((eio_session_t *)s)->data);
}

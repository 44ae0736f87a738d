/* SPDX-License-Identifier: MIT */
/*
 * The in-memory broker (rt_broker.h): one node, its namespaces' histories in rt_history
 * stores, its interests, presence and session records in hash tables, all under one
 * mutex. Live deliveries go through an outbox: records appended under the mutex in seq
 * order to a pending buffer, delivered by one drainer at a time from a second buffer
 * (swapped with the first), outside the mutex. The drainer is the publishing thread (no
 * server) or a task on loop 0 (with a server). The outbox holds the mutex and outlives the
 * broker while a task still has to run (see rt_broker_free: deliveries handed to a loop
 * still run).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "rt_broker.h"

/* ---------------------------------------------------------------------------------------
 * Keys and hash tables
 * ------------------------------------------------------------------------------------- */

/* A key is up to three names joined by NUL bytes ("nsp", "nsp\0room", "nsp\0room\0member"),
 * so (nsp, NULL) and (nsp, "") differ. Hashed keyed with random keys: room names come
 * from clients. */
typedef struct key {
    const char *part[3];
    size_t len[3];
    int n;
    size_t klen;
    uint64_t hash;
} bkey_t;

typedef struct item {
    struct item *next;
    uint64_t hash;
    size_t klen;
    char *key; /* klen bytes and a NUL, in the owner's allocation */
} item_t;

typedef struct table {
    item_t **slots;
    size_t cap, count;
} table_t;

static void key_init(bkey_t *k, const uint64_t seed[2], int n, const char *a, const char *b,
                     const char *c)
{
    k->n = n;
    k->part[0] = a;
    k->part[1] = b;
    k->part[2] = c;
    uint64_t h = seed[0];
    k->klen = 0;
    for (int i = 0; i < n; i++) {
        k->len[i] = strlen(k->part[i]);
        k->klen += k->len[i] + (i ? 1 : 0);
        for (size_t j = 0; j < k->len[i]; j++)
            h = (h ^ (unsigned char)k->part[i][j]) * 0x100000001b3ull;
        h = (h ^ 0x100) * 0x100000001b3ull; /* the separator */
    }
    h ^= seed[1];
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ull;
    h ^= h >> 32;
    k->hash = h;
}

/* Writes the key's bytes and a NUL into out (klen + 1 bytes). */
static void key_write(const bkey_t *k, char *out)
{
    for (int i = 0; i < k->n; i++) {
        memcpy(out, k->part[i], k->len[i]);
        out += k->len[i];
        *out++ = 0;
    }
}

static bool key_eq(const item_t *it, const bkey_t *k)
{
    if (it->hash != k->hash || it->klen != k->klen)
        return false;
    const char *p = it->key;
    for (int i = 0; i < k->n; i++) {
        if (memcmp(p, k->part[i], k->len[i]) != 0 || p[k->len[i]] != 0)
            return false;
        p += k->len[i] + 1;
    }
    return true;
}

static int table_init(table_t *t)
{
    t->cap = 16;
    t->count = 0;
    t->slots = calloc(t->cap, sizeof(*t->slots));
    return t->slots ? 0 : EDDY_ENOMEM;
}

/* The slot holding the item with key k, or the empty slot at the end of its chain. */
static item_t **table_slot(table_t *t, const bkey_t *k)
{
    item_t **s = &t->slots[k->hash & (t->cap - 1)];
    while (*s && !key_eq(*s, k))
        s = &(*s)->next;
    return s;
}

static void *table_find(table_t *t, const bkey_t *k)
{
    return *table_slot(t, k);
}

/* Inserts it (its key not present). Never fails: without memory to grow, chains grow. */
static void table_add(table_t *t, item_t *it)
{
    if (t->count >= t->cap) {
        size_t cap = t->cap * 2;
        item_t **slots = calloc(cap, sizeof(*slots));
        if (slots) {
            for (size_t i = 0; i < t->cap; i++)
                for (item_t *x = t->slots[i], *next; x; x = next) {
                    next = x->next;
                    x->next = slots[x->hash & (cap - 1)];
                    slots[x->hash & (cap - 1)] = x;
                }
            free(t->slots);
            t->slots = slots;
            t->cap = cap;
        }
    }
    item_t **s = &t->slots[it->hash & (t->cap - 1)];
    it->next = *s;
    *s = it;
    t->count++;
}

static void table_remove(table_t *t, item_t *it)
{
    item_t **s = &t->slots[it->hash & (t->cap - 1)];
    while (*s != it)
        s = &(*s)->next;
    *s = it->next;
    t->count--;
}

/* Allocates size bytes (an item first) plus the key, and fills the item. */
static void *item_new(size_t size, const bkey_t *k)
{
    item_t *it = calloc(1, size + k->klen + 1);
    if (!it)
        return NULL;
    it->hash = k->hash;
    it->klen = k->klen;
    it->key = (char *)it + size;
    key_write(k, it->key);
    return it;
}

/* ---------------------------------------------------------------------------------------
 * Broadcasts as stored: flags, nrooms, nexcept (4 bytes each, host order), the rooms and
 * except-rooms NUL-terminated, the payload. The history keeps these bytes.
 * ------------------------------------------------------------------------------------- */

#define REC_HEADER 12

static size_t rec_size(const rt_broker_msg_t *m)
{
    size_t n = REC_HEADER + m->payload_len;
    for (size_t i = 0; i < m->nrooms; i++)
        n += strlen(m->rooms[i]) + 1;
    for (size_t i = 0; i < m->nexcept; i++)
        n += strlen(m->except[i]) + 1;
    return n;
}

static void rec_write(const rt_broker_msg_t *m, char *out)
{
    uint32_t hdr[3] = {m->flags, (uint32_t)m->nrooms, (uint32_t)m->nexcept};
    memcpy(out, hdr, REC_HEADER);
    out += REC_HEADER;
    for (size_t i = 0; i < m->nrooms + m->nexcept; i++) {
        const char *s = i < m->nrooms ? m->rooms[i] : m->except[i - m->nrooms];
        size_t len = strlen(s) + 1;
        memcpy(out, s, len);
        out += len;
    }
    if (m->payload_len)
        memcpy(out, m->payload, m->payload_len);
}

static size_t rec_names(const char *rec)
{
    uint32_t hdr[3];
    memcpy(hdr, rec, REC_HEADER);
    return (size_t)hdr[1] + hdr[2];
}

/* Decodes rec (written by rec_write) into m; names holds rec_names(rec) pointers. */
static void rec_read(const char *rec, size_t len, const char *nsp, rt_broker_msg_t *m,
                     const char **names)
{
    uint32_t hdr[3];
    memcpy(hdr, rec, REC_HEADER);
    const char *p = rec + REC_HEADER;
    for (size_t i = 0; i < (size_t)hdr[1] + hdr[2]; i++) {
        names[i] = p;
        p += strlen(p) + 1;
    }
    *m = (rt_broker_msg_t){.nsp = nsp,
                           .rooms = names,
                           .nrooms = hdr[1],
                           .except = names + hdr[1],
                           .nexcept = hdr[2],
                           .flags = hdr[0],
                           .payload = p,
                           .payload_len = len - (size_t)(p - rec)};
}

/* ---------------------------------------------------------------------------------------
 * The outbox
 * ------------------------------------------------------------------------------------- */

/* A queued delivery: this header, nrooms + nexcept name pointers (filled by the drainer),
 * the namespace's name with its NUL, the stored broadcast; the whole 8-byte aligned. */
typedef struct qrec {
    size_t size;
    rt_position_t pos;
    size_t nsp_len, rec_len, nnames;
} qrec_t;

typedef struct qbuf {
    char *p;
    size_t len, cap, count;
} qbuf_t;

typedef struct outbox {
    pthread_mutex_t mu; /* the broker's mutex: guards the outbox and the whole broker */
    qbuf_t pending, draining;
    bool busy;     /* a drainer is at work, or a task is scheduled to be */
    bool orphaned; /* the broker was freed: the last task frees the outbox */
    bool defer_logged;
    eddy_server_t *srv;
    rt_broker_t *b; /* passed to the handler, never called (it may be freed) */
    void (*deliver)(rt_broker_t *b, const rt_broker_delivery_t *d, void *ud);
    void *ud;
    _Atomic uint64_t delivered;
    char node_id[RT_BROKER_NODE_ID_SIZE];
} outbox_t;

/* Buffers that grew past this are freed once drained, so a burst's memory goes with it. */
#define QBUF_KEEP (1u << 20)

static size_t align8(size_t n)
{
    return (n + 7) & ~(size_t)7;
}

/* Room for size more bytes in the pending buffer (mutex held). */
static int qbuf_reserve(qbuf_t *q, size_t size)
{
    if (q->cap - q->len >= size)
        return 0;
    size_t cap = q->cap ? q->cap : 4096;
    while (cap - q->len < size) {
        if (cap > SIZE_MAX / 2)
            return EDDY_ENOMEM;
        cap *= 2;
    }
    char *p = realloc(q->p, cap);
    if (!p)
        return EDDY_ENOMEM;
    q->p = p;
    q->cap = cap;
    return 0;
}

static void outbox_free(outbox_t *ob)
{
    free(ob->pending.p);
    free(ob->draining.p);
    pthread_mutex_destroy(&ob->mu);
    free(ob);
}

/* Delivers what is pending until nothing is, the caller being the one drainer (busy set
 * by it). Returns with busy cleared; frees the outbox if it was orphaned meanwhile. */
static void outbox_drain(outbox_t *ob)
{
    pthread_mutex_lock(&ob->mu);
    while (ob->pending.count) {
        qbuf_t q = ob->pending;
        ob->pending = ob->draining;
        ob->draining = q;
        pthread_mutex_unlock(&ob->mu);
        for (size_t off = 0; off < q.len;) {
            qrec_t *r = (qrec_t *)(void *)(q.p + off);
            const char **names = (const char **)(r + 1);
            const char *nsp = (const char *)(names + r->nnames);
            rt_broker_delivery_t d = {.pos = r->pos, .origin = ob->node_id, .own = true};
            rec_read(nsp + r->nsp_len + 1, r->rec_len, nsp, &d.msg, names);
            atomic_fetch_add_explicit(&ob->delivered, 1, memory_order_relaxed);
            ob->deliver(ob->b, &d, ob->ud);
            off += r->size;
        }
        pthread_mutex_lock(&ob->mu);
        ob->draining.len = ob->draining.count = 0;
        if (ob->draining.cap > QBUF_KEEP) {
            free(ob->draining.p);
            ob->draining = (qbuf_t){0};
        }
    }
    ob->busy = false;
    bool gone = ob->orphaned;
    pthread_mutex_unlock(&ob->mu);
    if (gone)
        outbox_free(ob);
}

static void outbox_task(eddy_server_t *srv, void *p)
{
    outbox_drain(p);
}

/* ---------------------------------------------------------------------------------------
 * The broker
 * ------------------------------------------------------------------------------------- */

typedef struct nsp {
    item_t it;
    rt_history_t *h;
} nsp_t;

typedef struct sub {
    item_t it;
    size_t refs;
} sub_t;

typedef struct sess {
    item_t it;
    struct sess *prev, *next; /* in the order written (not a live record) */
    bool live;                /* put with ttl_ms 0: kept until replaced or taken */
    uint64_t expires;
    size_t len;
    void *data;
} sess_t;

struct pgroup;

typedef struct presence {
    item_t it; /* key nsp\0room\0member */
    struct presence *prev, *next;
    struct pgroup *group;
    const char *member; /* in the key */
    size_t info_len;
    char *info;
} presence_t;

typedef struct pgroup {
    item_t it; /* key nsp\0room */
    presence_t *head;
    size_t n;
} pgroup_t;

typedef struct mb {
    rt_broker_t base;
    rt_broker_memory_config_t cfg;
    rt_broker_handlers_t h;
    void *ud;
    char node_id[RT_BROKER_NODE_ID_SIZE];
    uint64_t seed[2];
    outbox_t *ob; /* ob->mu guards everything below */
    table_t nsps, subs, sessions, pgroups, presences;
    sess_t *sess_head, *sess_tail;
    bool lost_logged, sessions_logged;
    _Atomic uint64_t published, dropped;
    struct mreq *reqs; /* node requests waiting for this node's answer */
    uint64_t next_req;
} mb_t;

static uint64_t clock_coarse_ms(void *ud)
{
    (void)ud;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void lock(mb_t *mb)
{
    pthread_mutex_lock(&mb->ob->mu);
}

static void unlock(mb_t *mb)
{
    pthread_mutex_unlock(&mb->ob->mu);
}

/* The same names the Redis engine accepts, so both answer a call alike. */
static bool name_ok(const char *s)
{
    return s && !strchr(s, '}') && strlen(s) < 65536;
}

/* The namespace's store, created at its first use (mutex held). NULL: out of memory. */
static rt_history_t *nsp_store(mb_t *mb, const char *name)
{
    bkey_t k;
    key_init(&k, mb->seed, 1, name, NULL, NULL);
    nsp_t *n = table_find(&mb->nsps, &k);
    if (n)
        return n->h;
    rt_history_config_t hc = {
        .ring_max_count = mb->cfg.history_max,
        .ring_max_bytes = mb->cfg.history_max_bytes,
        .ring_max_age_ms = mb->cfg.history_age_ms,
        .max_room_len = 65535,
        .max_rooms_per_call = 65535,
        .clock = mb->cfg.clock,
        .clock_ud = mb->cfg.clock_ud,
    };
    if (!(n = item_new(sizeof(*n), &k)))
        return NULL;
    if (!(n->h = rt_history_new(&hc))) {
        free(n);
        return NULL;
    }
    table_add(&mb->nsps, &n->it);
    return n->h;
}

/* Runs a result: with a server on fd's loop (else loop 0), without one here and now.
 * drop frees arg when no loop takes it. */
static void dispatch(mb_t *mb, eddy_fd_t fd, eddy_defer_cb fn, void *arg, void (*drop)(void *))
{
    if (!mb->cfg.srv) {
        fn(NULL, arg);
        return;
    }
    if (fd && eddy_post(mb->cfg.srv, fd, fn, arg) == 0)
        return;
    if (eddy_defer(mb->cfg.srv, fn, arg) == 0)
        return;
    /* Running fn on this thread would break the loops' rules: the result is lost. */
    eddy_log(mb->cfg.srv, EDDY_LOG_ERROR, "rt_broker: out of memory handing a result to a loop");
    drop(arg);
}

/* ---------------------------------------------------------------------------------------
 * Publish
 * ------------------------------------------------------------------------------------- */

typedef struct publish_result {
    rt_broker_t *b;
    rt_broker_publish_cb cb;
    void *arg;
    rt_position_t pos;
} publish_result_t;

static void run_publish_result(eddy_server_t *srv, void *p)
{
    publish_result_t *r = p;
    r->cb(r->b, 0, r->pos, r->arg);
    free(r);
}

/* Whether the node holds an interest the broadcast reaches (mutex held). */
static bool interested(mb_t *mb, const rt_broker_msg_t *m)
{
    bkey_t k;
    if (!m->nrooms) {
        key_init(&k, mb->seed, 1, m->nsp, NULL, NULL);
        return table_find(&mb->subs, &k) != NULL;
    }
    for (size_t i = 0; i < m->nrooms; i++) {
        key_init(&k, mb->seed, 2, m->nsp, m->rooms[i], NULL);
        if (table_find(&mb->subs, &k))
            return true;
    }
    return false;
}

static int mb_publish(rt_broker_t *b, const rt_broker_msg_t *msg, eddy_fd_t fd,
                      rt_broker_publish_cb cb, void *arg)
{
    mb_t *mb = (mb_t *)b;
    if (!msg || !name_ok(msg->nsp) || msg->nrooms > 65535 || msg->nexcept > 65535 ||
        (msg->nrooms && !msg->rooms) || (msg->nexcept && !msg->except) ||
        (msg->payload_len && !msg->payload))
        return EDDY_EINVAL;
    for (size_t i = 0; i < msg->nrooms; i++)
        if (!name_ok(msg->rooms[i]))
            return EDDY_EINVAL;
    for (size_t i = 0; i < msg->nexcept; i++)
        if (!msg->except[i] || strlen(msg->except[i]) >= 65536)
            return EDDY_EINVAL;
    publish_result_t local, *res = &local;
    if (cb && mb->cfg.srv && !(res = malloc(sizeof(*res))))
        return EDDY_ENOMEM;
    size_t rec_len = rec_size(msg), nsp_len = strlen(msg->nsp);
    size_t nnames = msg->nrooms + msg->nexcept;
    size_t size = align8(sizeof(qrec_t) + nnames * sizeof(char *) + nsp_len + 1 + rec_len);
    outbox_t *ob = mb->ob;
    lock(mb);
    rt_history_t *h = nsp_store(mb, msg->nsp);
    /* The record is written where it would be queued, so it is encoded once: the history
     * copies it from there, and it is kept only if the node delivers it. */
    if (!h || qbuf_reserve(&ob->pending, size) != 0) {
        unlock(mb);
        if (res != &local)
            free(res);
        return EDDY_ENOMEM;
    }
    qrec_t *r = (qrec_t *)(void *)(ob->pending.p + ob->pending.len);
    *r = (qrec_t){.size = size, .nsp_len = nsp_len, .rec_len = rec_len, .nnames = nnames};
    char *nsp_copy = (char *)((const char **)(r + 1) + nnames);
    memcpy(nsp_copy, msg->nsp, nsp_len + 1);
    char *rec = nsp_copy + nsp_len + 1;
    rec_write(msg, rec);
    int64_t seq =
        rt_history_append(h, msg->rooms, msg->nrooms, msg->except, msg->nexcept, rec, rec_len);
    bool log_lost = false;
    if (seq < 0) {
        /* Not stored; its seq is marked lost, so recoveries across it are gaps. */
        log_lost = !mb->lost_logged;
        mb->lost_logged = true;
    }
    r->pos = rt_history_position(h);
    bool drain = false, schedule = false;
    if (ob->deliver && interested(mb, msg)) {
        ob->pending.len += size;
        ob->pending.count++;
        if (!ob->busy) {
            ob->busy = true;
            drain = !mb->cfg.srv;
            schedule = mb->cfg.srv != NULL;
        }
    }
    rt_position_t pos = r->pos;
    unlock(mb);
    atomic_fetch_add_explicit(&mb->published, 1, memory_order_relaxed);
    if (log_lost)
        eddy_log(mb->cfg.srv, EDDY_LOG_WARNING,
                 "rt_broker: a broadcast to %s could not be kept in history (%s): delivered "
                 "live, recoveries across it answer not recovered (logged once)",
                 msg->nsp, rt_history_strerror((int)seq));
    if (schedule && eddy_defer(mb->cfg.srv, outbox_task, ob) != 0) {
        /* The deliveries wait for the next publish to schedule them. */
        lock(mb);
        ob->busy = false;
        bool log = !ob->defer_logged;
        ob->defer_logged = true;
        unlock(mb);
        if (log)
            eddy_log(mb->cfg.srv, EDDY_LOG_ERROR,
                     "rt_broker: out of memory scheduling deliveries: they wait for the next "
                     "publish (logged once)");
    }
    if (cb && !mb->cfg.srv) {
        cb(b, 0, pos, arg);
    } else if (cb) {
        *res = (publish_result_t){b, cb, arg, pos};
        dispatch(mb, fd, run_publish_result, res, free);
    }
    if (drain)
        outbox_drain(ob);
    return 0;
}

/* ---------------------------------------------------------------------------------------
 * Interest
 * ------------------------------------------------------------------------------------- */

static int mb_subscribe(rt_broker_t *b, const char *nsp, const char *room)
{
    mb_t *mb = (mb_t *)b;
    if (!name_ok(nsp) || (room && !name_ok(room)))
        return EDDY_EINVAL;
    bkey_t k;
    key_init(&k, mb->seed, room ? 2 : 1, nsp, room, NULL);
    lock(mb);
    sub_t *s = table_find(&mb->subs, &k);
    if (!s) {
        if (!(s = item_new(sizeof(*s), &k))) {
            unlock(mb);
            return EDDY_ENOMEM;
        }
        table_add(&mb->subs, &s->it);
    }
    s->refs++;
    unlock(mb);
    return 0;
}

static int mb_unsubscribe(rt_broker_t *b, const char *nsp, const char *room)
{
    mb_t *mb = (mb_t *)b;
    if (!name_ok(nsp) || (room && !name_ok(room)))
        return EDDY_EINVAL;
    bkey_t k;
    key_init(&k, mb->seed, room ? 2 : 1, nsp, room, NULL);
    lock(mb);
    sub_t *s = table_find(&mb->subs, &k);
    if (!s) {
        unlock(mb);
        return EDDY_ENOTFOUND;
    }
    if (--s->refs == 0) {
        table_remove(&mb->subs, &s->it);
        free(s);
    }
    unlock(mb);
    return 0;
}

/* ---------------------------------------------------------------------------------------
 * History
 * ------------------------------------------------------------------------------------- */

/* A history result, one allocation: this, the entries, their name pointers, the origin
 * and namespace names, the stored broadcasts. */
typedef struct history_result {
    rt_broker_t *b;
    rt_broker_history_cb cb;
    void *arg;
    int err;
    rt_position_t top;
    rt_broker_delivery_t *entries;
    size_t n;
    /* Filled while copying. */
    const char **names;
    char *bytes;
    const char *origin, *nsp;
} history_result_t;

static void run_history_result(eddy_server_t *srv, void *p)
{
    history_result_t *r = p;
    r->cb(r->b, r->err, r->top, r->entries, r->n, r->arg);
    free(r);
}

typedef struct history_count {
    size_t n, names, bytes;
} history_count_t;

static void count_entry(uint64_t seq, const void *payload, size_t len, void *ud)
{
    history_count_t *c = ud;
    c->n++;
    c->names += rec_names(payload);
    c->bytes += len;
}

static void copy_entry(uint64_t seq, const void *payload, size_t len, void *ud)
{
    history_result_t *r = ud;
    rt_broker_delivery_t *d = &r->entries[r->n++];
    memcpy(r->bytes, payload, len);
    d->pos = (rt_position_t){r->top.epoch, seq};
    d->origin = r->origin;
    d->own = true;
    rec_read(r->bytes, len, r->nsp, &d->msg, r->names);
    r->names += d->msg.nrooms + d->msg.nexcept;
    r->bytes += len;
}

/* Allocates a result for the c->n entries counted, its header head, laid out for
 * copy_entry() with the origin and nsp names copied in; NULL without memory. */
static history_result_t *history_result_new(mb_t *mb, const char *nsp, const history_count_t *c,
                                            history_result_t head)
{
    size_t id_len = strlen(mb->node_id), nsp_len = strlen(nsp);
    size_t size = align8(sizeof(history_result_t)) + c->n * sizeof(rt_broker_delivery_t) +
                  c->names * sizeof(char *) + id_len + 1 + nsp_len + 1 + c->bytes;
    history_result_t *r = malloc(size);
    if (!r)
        return NULL;
    *r = head;
    r->entries = (rt_broker_delivery_t *)(void *)((char *)r + align8(sizeof(*r)));
    r->names = (const char **)(r->entries + c->n);
    char *origin = (char *)(r->names + c->names);
    memcpy(origin, mb->node_id, id_len + 1);
    char *nsp_copy = origin + id_len + 1;
    memcpy(nsp_copy, nsp, nsp_len + 1);
    r->origin = origin;
    r->nsp = nsp_copy;
    r->bytes = nsp_copy + nsp_len + 1;
    return r;
}

static int mb_history(rt_broker_t *b, const char *nsp, rt_position_t after,
                      const char *const *rooms, size_t nrooms, eddy_fd_t fd,
                      rt_broker_history_cb cb, void *arg)
{
    mb_t *mb = (mb_t *)b;
    if (!cb || !name_ok(nsp) || (nrooms && !rooms) || nrooms > 65535)
        return EDDY_EINVAL;
    for (size_t i = 0; i < nrooms; i++)
        if (!name_ok(rooms[i]))
            return EDDY_EINVAL;
    lock(mb);
    rt_history_t *h = nsp_store(mb, nsp);
    if (!h) {
        unlock(mb);
        return EDDY_ENOMEM;
    }
    /* Counted, then copied, both under the mutex: nothing is appended in between, so top
     * covers exactly what was read. */
    rt_position_t top = rt_history_position(h);
    history_count_t c = {0};
    int err = rt_history_since(h, after, rooms, nrooms, count_entry, &c, NULL);
    if (!err && c.n > mb->cfg.history_max_entries)
        err = RT_HISTORY_GAP;
    if (err)
        c = (history_count_t){0};
    history_result_t *r = history_result_new(
        mb, nsp, &c, (history_result_t){.b = b, .cb = cb, .arg = arg, .err = err, .top = top});
    if (!r) {
        unlock(mb);
        return EDDY_ENOMEM;
    }
    if (!err && c.n)
        r->err = rt_history_since(h, after, rooms, nrooms, copy_entry, r, NULL);
    unlock(mb);
    if (r->err)
        r->n = 0;
    dispatch(mb, fd, run_history_result, r, free);
    return 0;
}

/* The newest n entries of one room (rt_broker_recent()): counted, then copied, as
 * mb_history() does. */
static int mb_recent(rt_broker_t *b, const char *nsp, const char *room, size_t n, eddy_fd_t fd,
                     rt_broker_history_cb cb, void *arg)
{
    mb_t *mb = (mb_t *)b;
    if (!cb || !n || !name_ok(nsp) || (room && !name_ok(room)))
        return EDDY_EINVAL;
    if (n > mb->cfg.history_max_entries)
        n = mb->cfg.history_max_entries;
    lock(mb);
    rt_history_t *h = nsp_store(mb, nsp);
    if (!h) {
        unlock(mb);
        return EDDY_ENOMEM;
    }
    rt_position_t top = rt_history_position(h);
    history_count_t c = {0};
    int err = rt_history_recent(h, room, n, count_entry, &c, NULL);
    if (err < 0)
        c = (history_count_t){0};
    history_result_t *r = history_result_new(
        mb, nsp, &c,
        (history_result_t){.b = b, .cb = cb, .arg = arg, .err = err < 0 ? err : 0, .top = top});
    if (!r) {
        unlock(mb);
        return EDDY_ENOMEM;
    }
    if (c.n)
        rt_history_recent(h, room, n, copy_entry, r, NULL);
    unlock(mb);
    dispatch(mb, fd, run_history_result, r, free);
    return 0;
}

/* ---------------------------------------------------------------------------------------
 * Session records
 * ------------------------------------------------------------------------------------- */

static void sess_unlink(mb_t *mb, sess_t *s)
{
    table_remove(&mb->sessions, &s->it);
    if (s->live)
        return;
    if (s->prev)
        s->prev->next = s->next;
    else
        mb->sess_head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    else
        mb->sess_tail = s->prev;
}

/* Reclaims expired records from the oldest written on (mutex held). */
static void sess_expire(mb_t *mb, uint64_t now)
{
    while (mb->sess_head && mb->sess_head->expires <= now) {
        sess_t *s = mb->sess_head;
        sess_unlink(mb, s);
        free(s);
    }
}

static int mb_session_put(rt_broker_t *b, const char *pid, const void *data, size_t len,
                          uint64_t ttl_ms)
{
    mb_t *mb = (mb_t *)b;
    if (!pid || !*pid || (len && !data) || (!ttl_ms && strlen(pid) < RT_BROKER_SESSION_TAG_LEN))
        return EDDY_EINVAL;
    bkey_t k;
    key_init(&k, mb->seed, 1, pid, NULL, NULL);
    sess_t *s = item_new(sizeof(*s) + len, &k);
    if (!s)
        return EDDY_ENOMEM;
    s->len = len;
    s->data = s + 1;
    if (len)
        memcpy(s->data, data, len);
    lock(mb);
    uint64_t now = mb->cfg.clock(mb->cfg.clock_ud);
    sess_expire(mb, now);
    sess_t *old = table_find(&mb->sessions, &k);
    if (old)
        sess_unlink(mb, old);
    if (mb->sessions.count >= mb->cfg.max_sessions) {
        bool log = !mb->sessions_logged;
        mb->sessions_logged = true;
        unlock(mb);
        free(old);
        free(s);
        uint64_t dropped = atomic_fetch_add(&mb->dropped, 1) + 1;
        if (log)
            eddy_log(mb->cfg.srv, EDDY_LOG_WARNING,
                     "rt_broker: %zu session records kept (max_sessions): dropping (%llu "
                     "dropped so far; logged once)",
                     mb->cfg.max_sessions, (unsigned long long)dropped);
        return EDDY_EDROPPED;
    }
    s->expires = now + ttl_ms < now || !ttl_ms ? UINT64_MAX : now + ttl_ms;
    table_add(&mb->sessions, &s->it);
    if ((s->live = !ttl_ms)) {
        unlock(mb);
        free(old);
        return 0;
    }
    s->prev = mb->sess_tail;
    if (mb->sess_tail)
        mb->sess_tail->next = s;
    else
        mb->sess_head = s;
    mb->sess_tail = s;
    unlock(mb);
    free(old);
    return 0;
}

typedef struct session_result {
    rt_broker_t *b;
    rt_broker_session_cb cb;
    void *arg;
    sess_t *s; /* NULL: not found */
} session_result_t;

static void run_session_result(eddy_server_t *srv, void *p)
{
    session_result_t *r = p;
    r->cb(r->b, r->s ? 0 : EDDY_ENOTFOUND, r->s ? r->s->data : NULL, r->s ? r->s->len : 0, r->arg);
    free(r->s);
    free(r);
}

static void drop_session_result(void *p)
{
    session_result_t *r = p;
    free(r->s);
    free(r);
}

static int mb_session_take(rt_broker_t *b, const char *pid, eddy_fd_t fd, rt_broker_session_cb cb,
                           void *arg)
{
    mb_t *mb = (mb_t *)b;
    if (!pid || !*pid || !cb)
        return EDDY_EINVAL;
    session_result_t *r = malloc(sizeof(*r));
    if (!r)
        return EDDY_ENOMEM;
    bkey_t k;
    key_init(&k, mb->seed, 1, pid, NULL, NULL);
    lock(mb);
    uint64_t now = mb->cfg.clock(mb->cfg.clock_ud);
    sess_expire(mb, now);
    sess_t *s = table_find(&mb->sessions, &k);
    if (s) {
        sess_unlink(mb, s);
        if (s->expires <= now) { /* behind a record that lives longer */
            free(s);
            s = NULL;
        }
    }
    unlock(mb);
    *r = (session_result_t){b, cb, arg, s};
    dispatch(mb, fd, run_session_result, r, drop_session_result);
    return 0;
}

/* A random pid (this process is its only node: no tag to share). */
static void mb_session_pid(rt_broker_t *b, char pid[RT_HISTORY_PID_SIZE])
{
    (void)b;
    rt_random_chars(pid, RT_HISTORY_PID_LEN);
    pid[RT_HISTORY_PID_LEN] = '\0';
}

/* ---------------------------------------------------------------------------------------
 * Presence
 * ------------------------------------------------------------------------------------- */

static void presence_remove(mb_t *mb, presence_t *p)
{
    pgroup_t *g = p->group;
    table_remove(&mb->presences, &p->it);
    if (p->prev)
        p->prev->next = p->next;
    else
        g->head = p->next;
    if (p->next)
        p->next->prev = p->prev;
    free(p->info);
    free(p);
    if (--g->n == 0) {
        table_remove(&mb->pgroups, &g->it);
        free(g);
    }
}

static int mb_presence_set(rt_broker_t *b, const char *nsp, const char *room, const char *member,
                           const void *info, size_t len)
{
    mb_t *mb = (mb_t *)b;
    if (!name_ok(nsp) || !room || !member || (len && !info))
        return EDDY_EINVAL;
    bkey_t kp, kg;
    key_init(&kp, mb->seed, 3, nsp, room, member);
    key_init(&kg, mb->seed, 2, nsp, room, NULL);
    char *copy = malloc(len ? len : 1);
    if (!copy)
        return EDDY_ENOMEM;
    if (len)
        memcpy(copy, info, len);
    lock(mb);
    presence_t *p = table_find(&mb->presences, &kp);
    if (p) {
        free(p->info);
        p->info = copy;
        p->info_len = len;
        unlock(mb);
        return 0;
    }
    pgroup_t *g = table_find(&mb->pgroups, &kg);
    bool new_group = !g;
    if ((!g && !(g = item_new(sizeof(*g), &kg))) || !(p = item_new(sizeof(*p), &kp))) {
        if (new_group)
            free(g);
        unlock(mb);
        free(copy);
        return EDDY_ENOMEM;
    }
    if (new_group)
        table_add(&mb->pgroups, &g->it);
    p->group = g;
    p->member = p->it.key + kp.len[0] + 1 + kp.len[1] + 1;
    p->info = copy;
    p->info_len = len;
    p->next = g->head;
    if (g->head)
        g->head->prev = p;
    g->head = p;
    g->n++;
    table_add(&mb->presences, &p->it);
    unlock(mb);
    return 0;
}

static int mb_presence_del(rt_broker_t *b, const char *nsp, const char *room, const char *member)
{
    mb_t *mb = (mb_t *)b;
    if (!name_ok(nsp) || !room || !member)
        return EDDY_EINVAL;
    bkey_t k;
    key_init(&k, mb->seed, 3, nsp, room, member);
    lock(mb);
    presence_t *p = table_find(&mb->presences, &k);
    if (p)
        presence_remove(mb, p);
    unlock(mb);
    return 0; /* as Redis's HDEL: absent is not an error */
}

/* A presence result, one allocation: this, the entries, the node id, members and infos. */
typedef struct presence_result {
    rt_broker_t *b;
    rt_broker_presence_cb cb;
    void *arg;
    rt_broker_presence_t *entries;
    size_t n;
} presence_result_t;

static void run_presence_result(eddy_server_t *srv, void *p)
{
    presence_result_t *r = p;
    r->cb(r->b, 0, r->entries, r->n, r->arg);
    free(r);
}

static int mb_presence_get(rt_broker_t *b, const char *nsp, const char *room, eddy_fd_t fd,
                           rt_broker_presence_cb cb, void *arg)
{
    mb_t *mb = (mb_t *)b;
    if (!cb || !name_ok(nsp) || !room)
        return EDDY_EINVAL;
    bkey_t k;
    key_init(&k, mb->seed, 2, nsp, room, NULL);
    size_t id_len = strlen(mb->node_id);
    lock(mb);
    pgroup_t *g = table_find(&mb->pgroups, &k);
    size_t n = g ? g->n : 0, bytes = id_len + 1;
    for (presence_t *p = g ? g->head : NULL; p; p = p->next)
        bytes += strlen(p->member) + 1 + p->info_len;
    presence_result_t *r = malloc(align8(sizeof(*r)) + n * sizeof(rt_broker_presence_t) + bytes);
    if (!r) {
        unlock(mb);
        return EDDY_ENOMEM;
    }
    *r = (presence_result_t){b, cb, arg, NULL, 0};
    r->entries = (rt_broker_presence_t *)(void *)((char *)r + align8(sizeof(*r)));
    char *out = (char *)(r->entries + n);
    const char *node = out;
    memcpy(out, mb->node_id, id_len + 1);
    out += id_len + 1;
    for (presence_t *p = g ? g->head : NULL; p; p = p->next) {
        size_t ml = strlen(p->member) + 1;
        rt_broker_presence_t *e = &r->entries[r->n++];
        memcpy(out, p->member, ml);
        e->node = node;
        e->member = out;
        out += ml;
        if (p->info_len)
            memcpy(out, p->info, p->info_len);
        e->info = out;
        e->info_len = p->info_len;
        out += p->info_len;
    }
    unlock(mb);
    dispatch(mb, fd, run_presence_result, r, free);
    return 0;
}

/* ---------------------------------------------------------------------------------------
 * Queries, lifecycle
 * ------------------------------------------------------------------------------------- */

static size_t mb_nodes(rt_broker_t *b, char (*ids)[RT_BROKER_NODE_ID_SIZE], size_t max)
{
    if (max)
        memcpy(ids[0], ((mb_t *)b)->node_id, RT_BROKER_NODE_ID_SIZE);
    return 1;
}

static bool mb_ready(rt_broker_t *b, uint64_t *age_ms)
{
    if (age_ms)
        *age_ms = 0; /* nothing to round-trip through */
    return true;
}

static rt_broker_state_t mb_state(rt_broker_t *b)
{
    return RT_BROKER_UP;
}

static void mb_stats(rt_broker_t *b, rt_broker_stats_t *out)
{
    mb_t *mb = (mb_t *)b;
    lock(mb);
    /* Deliveries waiting for their drainer count as buffered. */
    *out = (rt_broker_stats_t){
        .buffered = mb->ob->pending.count,
        .buffered_bytes = mb->ob->pending.len,
        .subscriptions = mb->subs.count,
    };
    unlock(mb);
    out->published = atomic_load(&mb->published);
    out->delivered = atomic_load(&mb->ob->delivered);
    out->dropped = atomic_load(&mb->dropped);
}

static const char *mb_node_id(rt_broker_t *b)
{
    return ((mb_t *)b)->node_id;
}

/* ---------------------------------------------------------------------------------------
 * Node requests: this node is the only one, so a request goes to its own handler and
 * waits for its answer; one to another node is answered missing at once. Without timers
 * of its own, the engine ends a wait past its timeout at the next request or answer (or
 * when it is freed).
 * ------------------------------------------------------------------------------------- */

typedef struct mreq {
    struct mreq *next;
    rt_broker_t *b;
    uint64_t id, deadline;
    rt_broker_request_cb cb; /* NULL: a barrier nobody reads the answer of */
    void *arg;
    eddy_fd_t fd;
    bool answered;
    const char *node; /* the node id (copied into the request's bytes) */
    size_t len;
    char *data;
    char bytes[];
} mreq_t;

static void run_request_result(eddy_server_t *srv, void *p)
{
    mreq_t *q = p;
    rt_broker_reply_t reply = {q->node, q->data ? q->data : "", q->len};
    const char *missing = q->node;
    q->cb(q->b, 0, &reply, q->answered, &missing, !q->answered, q->arg);
    free(q->data);
    free(q);
}

static void drop_request_result(void *p)
{
    free(((mreq_t *)p)->data);
    free(p);
}

/* Hands q's outcome to its callback (mutex not held). */
static void mreq_finish(mb_t *mb, mreq_t *q)
{
    if (!q->cb) {
        drop_request_result(q);
        return;
    }
    dispatch(mb, q->fd, run_request_result, q, drop_request_result);
}

/* Takes out the requests past their deadline (all of them with now UINT64_MAX) into *out
 * (mutex held). */
static void mreq_expired(mb_t *mb, uint64_t now, mreq_t **out)
{
    for (mreq_t **it = &mb->reqs; *it;) {
        mreq_t *q = *it;
        if (now >= q->deadline) {
            *it = q->next;
            q->next = *out;
            *out = q;
        } else {
            it = &q->next;
        }
    }
}

static void mreq_finish_all(mb_t *mb, mreq_t *list)
{
    while (list) {
        mreq_t *q = list;
        list = q->next;
        mreq_finish(mb, q);
    }
}

typedef struct mrequest {
    rt_broker_t *b;
    void (*request)(rt_broker_t *b, const rt_broker_request_t *req, void *ud);
    void *ud;
    rt_broker_request_t req;
    char bytes[];
} mrequest_t;

static void run_request(eddy_server_t *srv, void *p)
{
    mrequest_t *r = p;
    r->request(r->b, &r->req, r->ud);
    free(r);
}

static int mb_request(rt_broker_t *b, const char *node, const char *key, const void *data,
                      size_t len, uint32_t flags, uint32_t timeout_ms, eddy_fd_t fd,
                      rt_broker_request_cb cb, void *arg)
{
    mb_t *mb = (mb_t *)b;
    if ((node && (!*node || strlen(node) > RT_BROKER_NODE_ID_MAX)) || (len && !data) ||
        !timeout_ms || (flags & ~RT_BROKER_BARRIER))
        return EDDY_EINVAL;
    bool self = !node || strcmp(node, mb->node_id) == 0;
    bool answers = cb || (flags & RT_BROKER_BARRIER);
    size_t nlen = strlen(self ? mb->node_id : node) + 1;
    mreq_t *q = answers ? calloc(1, sizeof(*q) + nlen) : NULL;
    size_t klen = key ? strlen(key) + 1 : 0;
    mrequest_t *r = self && mb->h.request ? malloc(sizeof(*r) + nlen + len + klen) : NULL;
    if ((answers && !q) || (self && mb->h.request && !r)) {
        free(q);
        free(r);
        return EDDY_ENOMEM;
    }
    uint64_t now = mb->cfg.clock(mb->cfg.clock_ud);
    mreq_t *expired = NULL;
    lock(mb);
    mreq_expired(mb, now, &expired);
    uint64_t id = answers ? ++mb->next_req : 0;
    if (q) {
        *q = (mreq_t){
            .b = b, .id = id, .deadline = now + timeout_ms, .cb = cb, .arg = arg, .fd = fd};
        memcpy(q->bytes, self ? mb->node_id : node, nlen);
        q->node = q->bytes;
        /* Another node does not exist here: missing at once. So does an answer nobody
         * would give (no request handler). */
        if (self && mb->h.request) {
            q->next = mb->reqs;
            mb->reqs = q;
        } else {
            q->next = expired;
            expired = q;
        }
    }
    unlock(mb);
    mreq_finish_all(mb, expired);
    if (!r)
        return 0;
    memcpy(r->bytes, mb->node_id, nlen);
    if (len)
        memcpy(r->bytes + nlen, data, len);
    r->b = b;
    r->request = mb->h.request;
    r->ud = mb->ud;
    if (key)
        memcpy(r->bytes + nlen + len, key, klen);
    r->req = (rt_broker_request_t){r->bytes,        true, id,
                                   r->bytes + nlen, len,  key ? r->bytes + nlen + len : NULL};
    dispatch(mb, 0, run_request, r, free);
    return 0;
}

static int mb_respond(rt_broker_t *b, const char *node, const char *key, uint64_t id,
                      const void *data, size_t len)
{
    (void)key; /* one node: the request is found by its id */
    mb_t *mb = (mb_t *)b;
    if (!node || !*node || strlen(node) > RT_BROKER_NODE_ID_MAX || !id || (len && !data))
        return EDDY_EINVAL;
    char *copy = len ? malloc(len) : NULL;
    if (len && !copy)
        return EDDY_ENOMEM;
    if (len)
        memcpy(copy, data, len);
    uint64_t now = mb->cfg.clock(mb->cfg.clock_ud);
    mreq_t *expired = NULL, *q = NULL;
    lock(mb);
    for (mreq_t **it = &mb->reqs; *it; it = &(*it)->next)
        if ((*it)->id == id) {
            q = *it;
            *it = q->next;
            break;
        }
    mreq_expired(mb, now, &expired);
    unlock(mb);
    if (q && strcmp(node, mb->node_id) == 0) {
        q->answered = true;
        q->data = copy;
        q->len = len;
        copy = NULL;
        q->next = expired;
        expired = q;
    } else if (q) {
        q->next = expired; /* an answer to another node's request cannot be: missing */
        expired = q;
    }
    free(copy);
    mreq_finish_all(mb, expired);
    return 0;
}

static void table_free(table_t *t, void (*fn)(item_t *))
{
    for (size_t i = 0; t->slots && i < t->cap; i++)
        for (item_t *it = t->slots[i], *next; it; it = next) {
            next = it->next;
            if (fn)
                fn(it);
            free(it);
        }
    free(t->slots);
}

static void free_nsp(item_t *it)
{
    rt_history_free(((nsp_t *)it)->h);
}

static void free_presence(item_t *it)
{
    free(((presence_t *)it)->info);
}

static void mb_destroy(mb_t *mb)
{
    mreq_t *left = NULL;
    mreq_expired(mb, UINT64_MAX, &left);
    mreq_finish_all(mb, left);
    table_free(&mb->nsps, free_nsp);
    table_free(&mb->subs, NULL);
    table_free(&mb->sessions, NULL);
    table_free(&mb->presences, free_presence);
    table_free(&mb->pgroups, NULL);
    if (mb->ob) {
        pthread_mutex_lock(&mb->ob->mu);
        mb->ob->orphaned = true;
        bool busy = mb->ob->busy;
        pthread_mutex_unlock(&mb->ob->mu);
        /* A scheduled task still delivers what is queued, then frees the outbox. */
        if (!busy)
            outbox_free(mb->ob);
    }
    free(mb);
}

static void mb_free(rt_broker_t *b)
{
    mb_destroy((mb_t *)b);
}

static const rt_broker_ops_t memory_ops = {
    .publish = mb_publish,
    .subscribe = mb_subscribe,
    .unsubscribe = mb_unsubscribe,
    .history = mb_history,
    .session_put = mb_session_put,
    .session_take = mb_session_take,
    .session_pid = mb_session_pid,
    .presence_set = mb_presence_set,
    .presence_del = mb_presence_del,
    .presence_get = mb_presence_get,
    .nodes = mb_nodes,
    .ready = mb_ready,
    .state = mb_state,
    .stats = mb_stats,
    .node_id = mb_node_id,
    .free = mb_free,
    .request = mb_request,
    .respond = mb_respond,
    .recent = mb_recent,
};

void rt_broker_memory_config_init(rt_broker_memory_config_t *cfg)
{
    *cfg = (rt_broker_memory_config_t){
        .history_max = 1000,
        .history_max_bytes = 1u << 20,
        .history_age_ms = 120000,
        .history_max_entries = 10000,
        .max_sessions = 100000,
    };
}

rt_broker_t *rt_broker_memory_new(const rt_broker_memory_config_t *cfg,
                                  const rt_broker_handlers_t *h, void *ud)
{
    rt_broker_memory_config_t def;
    rt_broker_memory_config_init(&def);
    if (!cfg)
        cfg = &def;
    if (!cfg->history_max || !cfg->history_max_bytes || !cfg->history_age_ms ||
        !cfg->history_max_entries || !cfg->max_sessions ||
        (cfg->node_id && (!*cfg->node_id || strlen(cfg->node_id) > RT_BROKER_NODE_ID_MAX ||
                          strchr(cfg->node_id, 0x1f)))) {
        eddy_log(cfg->srv, EDDY_LOG_ERROR, "rt_broker: bad in-memory broker configuration");
        return NULL;
    }
    mb_t *mb = calloc(1, sizeof(*mb));
    if (!mb)
        return NULL;
    mb->base.ops = &memory_ops;
    mb->cfg = *cfg;
    if (!mb->cfg.clock)
        mb->cfg.clock = clock_coarse_ms;
    if (h)
        mb->h = *h;
    mb->ud = ud;
    uint64_t rnd[3];
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
        goto fail;
    mb->seed[0] = rnd[0];
    mb->seed[1] = rnd[1];
    if (cfg->node_id)
        snprintf(mb->node_id, sizeof(mb->node_id), "%s", cfg->node_id);
    else
        snprintf(mb->node_id, sizeof(mb->node_id), "%016llx", (unsigned long long)rnd[2]);
    mb->cfg.node_id = mb->node_id;
    if (table_init(&mb->nsps) || table_init(&mb->subs) || table_init(&mb->sessions) ||
        table_init(&mb->pgroups) || table_init(&mb->presences))
        goto fail;
    outbox_t *ob = calloc(1, sizeof(*ob));
    if (!ob)
        goto fail;
    if (pthread_mutex_init(&ob->mu, NULL) != 0) {
        free(ob);
        goto fail;
    }
    ob->srv = cfg->srv;
    ob->b = &mb->base;
    ob->deliver = mb->h.deliver;
    ob->ud = ud;
    memcpy(ob->node_id, mb->node_id, sizeof(ob->node_id));
    mb->ob = ob;
    return &mb->base;
fail:
    mb_destroy(mb);
    return NULL;
}

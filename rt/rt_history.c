/* SPDX-License-Identifier: MIT */
/*
 * History and recovery store (rt_history.h). Data structures:
 *   - entries: one allocation each (header, except-room hashes, back-pointers to the rooms
 *     whose rings hold it, except-room names, payload), on a global list in seq order,
 *     freed when the last ring drops it;
 *   - rooms: a keyed hash table; each room has a ring (a circular array of entry pointers
 *     that doubles up to ring_max_count) and counts the session records that list it.
 *     A room is forgotten when its ring is empty and no record lists it; its eviction
 *     watermark then moves to the store-wide forgotten_seq, which only matters to
 *     rt_history_since over names the store does not know;
 *   - sessions: a hash table by pid, plus a list of the disconnected ones in disconnection
 *     order, so expiry costs only what expires.
 * Since rings are in seq order, the globally oldest entry is at the head of every ring
 * holding it: the store-wide bounds and age expiry evict from the global list's head.
 */
#include "rt_history.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "eddy.h"

struct room;

struct entry {
    struct entry *prev, *next; /* global list, seq order */
    uint64_t seq;
    uint64_t at_ms;
    size_t len;
    uint32_t refs;      /* rings holding it */
    uint32_t nrooms;    /* room back-pointer slots (NULL once that ring dropped it) */
    uint32_t nexcept;   /* except-rooms */
    uint32_t names_len; /* bytes of the except-room names, each NUL-terminated */
    /* except hashes [nexcept], struct room *[nrooms], names, payload */
    uint64_t tail[];
};

struct ring {
    struct entry **slots;
    size_t cap, head, count, bytes;
    uint64_t evicted; /* highest seq evicted from this ring */
};

struct room {
    struct room *chain;
    uint64_t hash;
    size_t sessions; /* session records listing this room */
    uint64_t stamp;  /* rooms_resolve's duplicate mark */
    uint64_t top_seq;
    struct ring ring;
    size_t len;
    char name[];
};

struct sess {
    struct sess *chain;
    struct sess *prev, *next; /* disconnected list */
    uint64_t hash;
    uint64_t seq_at_connect;
    uint64_t disconnected_at;
    bool connected;
    struct room **rooms;
    size_t nrooms;
    char *user_id; /* in blob */
    void *data;    /* in blob */
    size_t data_len;
    void *blob;
    char pid[RT_HISTORY_PID_SIZE];
    char sid[];
};

struct rt_history {
    pthread_mutex_t mu;
    rt_history_config_t cfg;
    uint64_t epoch, seq;
    uint64_t lost_seq;      /* highest seq whose append failed */
    uint64_t forgotten_seq; /* highest eviction watermark of a forgotten room */
    uint64_t key[2];        /* hash keys */
    uint64_t stamp;         /* last rooms_resolve call */
    struct entry *head, *tail;
    size_t entries, bytes;
    struct room *all; /* the namespace ring (not in the table) */
    struct room **room_tab;
    size_t room_nb, nrooms;
    struct sess **sess_tab;
    size_t sess_nb, nsessions, ndisconnected;
    size_t slots; /* ring slots allocated, all rings */
    struct sess *dhead, *dtail;
    uint64_t evicted_total, lost_total;
};

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

void rt_random_chars(char *out, size_t n)
{
    while (n) {
        unsigned char rnd[32];
        size_t k = n < sizeof(rnd) ? n : sizeof(rnd);
        if (getrandom(rnd, k, 0) != (ssize_t)k) {
            static atomic_uint_fast64_t counter;
            uint64_t v = atomic_fetch_add(&counter, 1) + 1;
            for (size_t i = 0; i < k; i++)
                rnd[i] = (unsigned char)(v >> (6 * (i % 10)));
        }
        for (size_t i = 0; i < k; i++)
            out[i] = alphabet[rnd[i] & 63];
        out += k;
        n -= k;
    }
}

/* ---------------------------------------------------------------------------------------
 * Offsets
 * ------------------------------------------------------------------------------------- */

size_t rt_offset_encode(rt_position_t pos, char out[RT_OFFSET_SIZE])
{
    size_t n = 0;
    for (int shift = RT_HISTORY_EPOCH_BITS - 6; shift >= 0; shift -= 6)
        out[n++] = alphabet[(pos.epoch >> shift) & 63];
    char rev[11];
    size_t nd = 0;
    uint64_t seq = pos.seq;
    do {
        rev[nd++] = alphabet[seq & 63];
        seq >>= 6;
    } while (seq);
    while (nd)
        out[n++] = rev[--nd];
    out[n] = '\0';
    return n;
}

int rt_offset_parse(const char *s, size_t len, rt_position_t *pos)
{
    if (len < 9 || len > RT_OFFSET_MAX)
        return EDDY_EINVAL;
    uint64_t epoch = 0, seq = 0;
    for (size_t i = 0; i < 8; i++) {
        int d = eddy_base64_value(s[i], EDDY_BASE64_URL);
        if (d < 0)
            return EDDY_EINVAL;
        epoch = epoch << 6 | (uint64_t)d;
    }
    if (len > 9 && s[8] == 'A') /* a leading zero digit: not what encode writes */
        return EDDY_EINVAL;
    for (size_t i = 8; i < len; i++) {
        int d = eddy_base64_value(s[i], EDDY_BASE64_URL);
        if (d < 0 || seq > UINT64_MAX >> 6)
            return EDDY_EINVAL;
        seq = seq << 6 | (uint64_t)d;
    }
    pos->epoch = epoch;
    pos->seq = seq;
    return 0;
}

/* ---------------------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------------------- */

static uint64_t mix(uint64_t x)
{
    x ^= x >> 32;
    x *= 0xd6e8feb86659fd93ull;
    x ^= x >> 32;
    x *= 0xd6e8feb86659fd93ull;
    x ^= x >> 32;
    return x;
}

/* Keyed with random keys, so room names chosen by clients cannot be made to collide
 * without knowing the keys. Words of 8 bytes, then the last 1..8 bytes read as two
 * overlapping halves (or three single bytes), so each byte counts and nothing is read
 * outside the name. */
static uint64_t hash_bytes(const rt_history_t *h, const char *s, size_t len)
{
    uint64_t a = h->key[0] ^ len * 0x9e3779b97f4a7c15ull, w;
    const char *end = s + len;
    for (; end - s > 8; s += 8) {
        memcpy(&w, s, 8);
        a = (a ^ w) * 0xbf58476d1ce4e5b9ull;
        a ^= a >> 31;
    }
    size_t tail = (size_t)(end - s);
    if (tail >= 4) {
        uint32_t lo, hi;
        memcpy(&lo, s, 4);
        memcpy(&hi, end - 4, 4);
        w = (uint64_t)lo << 32 | hi;
    } else if (tail) {
        w = (uint64_t)(unsigned char)s[0] << 16 | (uint64_t)(unsigned char)s[tail / 2] << 8 |
            (unsigned char)s[tail - 1];
    } else {
        w = 0;
    }
    return mix((a ^ w) * 0x94d049bb133111ebull + h->key[1]);
}

static uint64_t clock_monotonic_ms(void *ud)
{
    (void)ud;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t now_ms(const rt_history_t *h)
{
    return h->cfg.clock(h->cfg.clock_ud);
}

/* A name's length and hash, computed before taking the mutex. */
struct name_key {
    size_t len;
    uint64_t hash;
};

/* Up to this many target rooms an append hashes their names outside the mutex. */
#define KEYS_STACK 16

/* Validates a list of names; returns EDDY_EINVAL if too many or one too long. With keys,
 * also fills keys[i] for each name. */
static int check_names(const rt_history_t *h, const char *const *names, size_t n,
                       struct name_key *keys)
{
    if (n > h->cfg.max_rooms_per_call || (n && !names))
        return EDDY_EINVAL;
    for (size_t i = 0; i < n; i++) {
        size_t len = names[i] ? strnlen(names[i], h->cfg.max_room_len + 1) : SIZE_MAX;
        if (len > h->cfg.max_room_len)
            return EDDY_EINVAL;
        if (keys) {
            keys[i].len = len;
            keys[i].hash = hash_bytes(h, names[i], len);
        }
    }
    return 0;
}

static bool valid_pid(const char *pid)
{
    if (!pid || strnlen(pid, RT_HISTORY_PID_SIZE) != RT_HISTORY_PID_LEN)
        return false;
    for (size_t i = 0; i < RT_HISTORY_PID_LEN; i++)
        if (eddy_base64_value(pid[i], EDDY_BASE64_URL) < 0)
            return false;
    return true;
}

/* ---------------------------------------------------------------------------------------
 * Entries, rings and rooms (all with the mutex held)
 * ------------------------------------------------------------------------------------- */

static struct room **entry_rooms(struct entry *e)
{
    return (struct room **)(void *)(e->tail + e->nexcept);
}

static char *entry_names(struct entry *e)
{
    return (char *)(entry_rooms(e) + e->nrooms);
}

static const void *entry_payload(struct entry *e)
{
    return entry_names(e) + e->names_len;
}

static struct entry *ring_at(const struct ring *ring, size_t i)
{
    size_t idx = ring->head + i;
    if (idx >= ring->cap)
        idx -= ring->cap;
    return ring->slots[idx];
}

/* Drops the reference ring r held on e; frees e with its last reference. */
static void entry_unref(rt_history_t *h, struct entry *e, struct room *r)
{
    struct room **rooms = entry_rooms(e);
    for (uint32_t i = 0; i < e->nrooms; i++)
        if (rooms[i] == r) {
            rooms[i] = NULL;
            break;
        }
    if (--e->refs)
        return;
    if (e->prev)
        e->prev->next = e->next;
    else
        h->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        h->tail = e->prev;
    h->entries--;
    h->bytes -= e->len;
    free(e);
}

/* Evicts the oldest entry of r's ring (there is one). */
static void ring_pop(rt_history_t *h, struct room *r)
{
    struct ring *ring = &r->ring;
    struct entry *e = ring->slots[ring->head];
    if (++ring->head == ring->cap)
        ring->head = 0;
    ring->count--;
    ring->bytes -= e->len;
    if (e->seq > ring->evicted)
        ring->evicted = e->seq;
    h->evicted_total++;
    entry_unref(h, e, r);
}

/* Moves r's ring into an array of cap slots (cap >= count; 0 frees it). Returns 0 or
 * EDDY_ENOMEM (the ring is unchanged). */
static int ring_resize(rt_history_t *h, struct room *r, size_t cap)
{
    struct ring *ring = &r->ring;
    struct entry **slots = NULL;
    if (cap && !(slots = malloc(cap * sizeof(*slots))))
        return EDDY_ENOMEM;
    for (size_t i = 0; i < ring->count; i++)
        slots[i] = ring_at(ring, i);
    free(ring->slots);
    h->slots = h->slots - ring->cap + cap;
    ring->slots = slots;
    ring->cap = cap;
    ring->head = 0;
    return 0;
}

/* Room r has room for one more entry (possibly after evicting its oldest at
 * ring_max_count). Returns 0 or EDDY_ENOMEM. */
static int ring_reserve(rt_history_t *h, struct room *r)
{
    struct ring *ring = &r->ring;
    if (ring->count < ring->cap || ring->cap >= h->cfg.ring_max_count)
        return 0;
    size_t cap = ring->cap ? ring->cap * 2 : 4;
    return ring_resize(h, r, cap < h->cfg.ring_max_count ? cap : h->cfg.ring_max_count);
}

/* After evictions by age or by the store's bounds: a ring a quarter full gives half its
 * slots back, an empty one all, so slot memory stays within four times the entries held
 * (plus eight slots per room) whatever a room held once. If that allocation fails, the
 * ring keeps its slots. */
static void ring_shrink(rt_history_t *h, struct room *r)
{
    struct ring *ring = &r->ring;
    if (!ring->count)
        ring_resize(h, r, 0);
    else if (ring->cap > 8 && ring->count <= ring->cap / 4)
        ring_resize(h, r, ring->cap / 2);
}

static struct room *room_find(const rt_history_t *h, const char *name, size_t len, uint64_t hash)
{
    if (!h->room_nb)
        return NULL;
    for (struct room *r = h->room_tab[hash & (h->room_nb - 1)]; r; r = r->chain)
        if (r->hash == hash && r->len == len && memcmp(r->name, name, len) == 0)
            return r;
    return NULL;
}

/* Doubles a table of chained nodes when it is full; keeps the old one if out of memory
 * (longer chains, still correct). */
#define TABLE_GROW(type, tab, nb, count)                                                           \
    do {                                                                                           \
        if ((count) < (nb))                                                                        \
            break;                                                                                 \
        size_t nnb_ = (nb) ? (nb)*2 : 64;                                                          \
        type **ntab_ = calloc(nnb_, sizeof(*ntab_));                                               \
        if (!ntab_)                                                                                \
            break;                                                                                 \
        for (size_t i_ = 0; i_ < (nb); i_++)                                                       \
            for (type *n_ = (tab)[i_], *next_; n_; n_ = next_) {                                   \
                next_ = n_->chain;                                                                 \
                n_->chain = ntab_[n_->hash & (nnb_ - 1)];                                          \
                ntab_[n_->hash & (nnb_ - 1)] = n_;                                                 \
            }                                                                                      \
        free(tab);                                                                                 \
        (tab) = ntab_;                                                                             \
        (nb) = nnb_;                                                                               \
    } while (0)

/* Finds or creates the room called name. Returns 0, RT_HISTORY_EFULL or EDDY_ENOMEM. */
static int room_get(rt_history_t *h, const char *name, size_t len, uint64_t hash, struct room **out)
{
    struct room *r = room_find(h, name, len, hash);
    if (r) {
        *out = r;
        return 0;
    }
    if (h->nrooms >= h->cfg.max_rooms)
        return RT_HISTORY_EFULL;
    TABLE_GROW(struct room, h->room_tab, h->room_nb, h->nrooms);
    if (!h->room_nb)
        return EDDY_ENOMEM;
    r = calloc(1, sizeof(*r) + len + 1);
    if (!r)
        return EDDY_ENOMEM;
    r->hash = hash;
    r->len = len;
    memcpy(r->name, name, len + 1);
    r->chain = h->room_tab[hash & (h->room_nb - 1)];
    h->room_tab[hash & (h->room_nb - 1)] = r;
    h->nrooms++;
    *out = r;
    return 0;
}

/* Forgets r if nothing refers to it any more: an empty ring and no session record. */
static void room_release(rt_history_t *h, struct room *r)
{
    if (r == h->all || r->sessions || r->ring.count)
        return;
    struct room **p = &h->room_tab[r->hash & (h->room_nb - 1)];
    while (*p != r)
        p = &(*p)->chain;
    *p = r->chain;
    h->nrooms--;
    if (r->ring.evicted > h->forgotten_seq)
        h->forgotten_seq = r->ring.evicted;
    h->slots -= r->ring.cap;
    free(r->ring.slots);
    free(r);
}

/* Evicts e from every ring holding it (it is the oldest entry of the store, so at the
 * head of each); frees it. */
static void entry_evict(rt_history_t *h, struct entry *e)
{
    uint32_t n = e->nrooms;
    struct room **rooms = entry_rooms(e);
    for (uint32_t i = 0; i < n; i++) {
        struct room *r = rooms[i];
        if (!r)
            continue;
        bool last = e->refs == 1;
        ring_pop(h, r);
        ring_shrink(h, r);
        room_release(h, r);
        if (last)
            break;
    }
}

static size_t expire_entries(rt_history_t *h, uint64_t now)
{
    size_t n = 0;
    while (h->head && now >= h->head->at_ms && now - h->head->at_ms >= h->cfg.ring_max_age_ms) {
        entry_evict(h, h->head);
        n++;
    }
    return n;
}

/* ---------------------------------------------------------------------------------------
 * Sessions (mutex held)
 * ------------------------------------------------------------------------------------- */

static struct sess *sess_find(const rt_history_t *h, const char *pid)
{
    if (!h->sess_nb)
        return NULL;
    uint64_t hash = hash_bytes(h, pid, RT_HISTORY_PID_LEN);
    for (struct sess *s = h->sess_tab[hash & (h->sess_nb - 1)]; s; s = s->chain)
        if (s->hash == hash && memcmp(s->pid, pid, RT_HISTORY_PID_LEN) == 0)
            return s;
    return NULL;
}

static void dlist_unlink(rt_history_t *h, struct sess *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        h->dhead = s->next;
    if (s->next)
        s->next->prev = s->prev;
    else
        h->dtail = s->prev;
    s->prev = s->next = NULL;
    h->ndisconnected--;
}

/* Drops the room references of a rooms array (and frees it). */
static void rooms_release(rt_history_t *h, struct room **rooms, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        rooms[i]->sessions--;
        room_release(h, rooms[i]);
    }
    free(rooms);
}

static void sess_destroy(rt_history_t *h, struct sess *s)
{
    struct sess **p = &h->sess_tab[s->hash & (h->sess_nb - 1)];
    while (*p != s)
        p = &(*p)->chain;
    *p = s->chain;
    h->nsessions--;
    if (!s->connected)
        dlist_unlink(h, s);
    rooms_release(h, s->rooms, s->nrooms);
    free(s->blob);
    free(s);
}

static size_t expire_sessions(rt_history_t *h, uint64_t now)
{
    size_t n = 0;
    while (h->dhead && now >= h->dhead->disconnected_at &&
           now - h->dhead->disconnected_at >= h->cfg.session_ttl_ms) {
        sess_destroy(h, h->dhead);
        n++;
    }
    return n;
}

/* Resolves names into rooms[] (distinct rooms, creating them), *n their count. On error
 * the rooms it created are forgotten again. */
static int rooms_resolve(rt_history_t *h, const char *const *names, size_t nnames,
                         const struct name_key *keys, struct room **rooms, size_t *n)
{
    size_t k = 0;
    uint64_t stamp = ++h->stamp; /* marks the rooms of this call: duplicates in O(1) */
    for (size_t i = 0; i < nnames; i++) {
        struct room *r;
        size_t len = keys ? keys[i].len : strlen(names[i]);
        uint64_t hash = keys ? keys[i].hash : hash_bytes(h, names[i], len);
        int rc = room_get(h, names[i], len, hash, &r);
        if (rc) {
            for (size_t j = 0; j < k; j++)
                room_release(h, rooms[j]);
            return rc;
        }
        if (r->stamp != stamp) {
            r->stamp = stamp;
            rooms[k++] = r;
        }
    }
    *n = k;
    return 0;
}

/* ---------------------------------------------------------------------------------------
 * Store
 * ------------------------------------------------------------------------------------- */

static void apply_defaults(rt_history_config_t *c)
{
    c->ring_max_count = c->ring_max_count ? c->ring_max_count : 1000;
    c->ring_max_bytes = c->ring_max_bytes ? c->ring_max_bytes : 1 << 20;
    c->ring_max_age_ms = c->ring_max_age_ms ? c->ring_max_age_ms : 120000;
    c->max_entries = c->max_entries ? c->max_entries : 262144;
    c->max_bytes = c->max_bytes ? c->max_bytes : 64u << 20;
    c->max_rooms = c->max_rooms ? c->max_rooms : 131072;
    c->max_sessions = c->max_sessions ? c->max_sessions : 100000;
    c->session_ttl_ms = c->session_ttl_ms ? c->session_ttl_ms : 120000;
    c->max_room_len = c->max_room_len ? c->max_room_len : 1024;
    c->max_rooms_per_call = c->max_rooms_per_call ? c->max_rooms_per_call : 1024;
    /* Entry fields count rooms in 32 bits. */
    if (c->max_rooms_per_call > UINT32_MAX / 2)
        c->max_rooms_per_call = UINT32_MAX / 2;
    c->max_session_data = c->max_session_data ? c->max_session_data : 65536;
    if (!c->clock)
        c->clock = clock_monotonic_ms;
}

rt_history_t *rt_history_new(const rt_history_config_t *cfg)
{
    rt_history_t *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    if (cfg)
        h->cfg = *cfg;
    apply_defaults(&h->cfg);
    uint64_t rnd[3];
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
        goto fail;
    h->epoch = rnd[0] & ((1ull << RT_HISTORY_EPOCH_BITS) - 1);
    h->key[0] = rnd[1];
    h->key[1] = rnd[2];
    h->all = calloc(1, sizeof(struct room) + 1);
    if (!h->all)
        goto fail;
    if (pthread_mutex_init(&h->mu, NULL) != 0)
        goto fail;
    return h;
fail:
    free(h->all);
    free(h);
    return NULL;
}

void rt_history_free(rt_history_t *h)
{
    if (!h)
        return;
    for (size_t i = 0; i < h->sess_nb; i++)
        for (struct sess *s = h->sess_tab[i], *next; s; s = next) {
            next = s->chain;
            free(s->rooms);
            free(s->blob);
            free(s);
        }
    for (struct entry *e = h->head, *next; e; e = next) {
        next = e->next;
        free(e);
    }
    for (size_t i = 0; i < h->room_nb; i++)
        for (struct room *r = h->room_tab[i], *next; r; r = next) {
            next = r->chain;
            free(r->ring.slots);
            free(r);
        }
    free(h->all->ring.slots);
    free(h->all);
    free(h->room_tab);
    free(h->sess_tab);
    pthread_mutex_destroy(&h->mu);
    free(h);
}

rt_position_t rt_history_position(rt_history_t *h)
{
    pthread_mutex_lock(&h->mu);
    rt_position_t pos = {h->epoch, h->seq};
    pthread_mutex_unlock(&h->mu);
    return pos;
}

const char *rt_history_strerror(int err)
{
    if (err == RT_HISTORY_EFULL)
        return "history limit reached (max_rooms or max_sessions)";
    return eddy_strerror(err);
}

/* ---------------------------------------------------------------------------------------
 * Append
 * ------------------------------------------------------------------------------------- */

/* A message no ring can hold (larger than a ring or the store): it uses a seq and counts
 * as evicted from its target rings, so recoveries across it answer "not recovered". */
static int64_t append_oversized(rt_history_t *h, const char *const *rooms, size_t nrooms)
{
    uint64_t seq = ++h->seq;
    h->evicted_total++;
    if (!nrooms) {
        h->all->ring.evicted = seq;
        h->all->top_seq = seq;
        return (int64_t)seq;
    }
    for (size_t i = 0; i < nrooms; i++) {
        size_t len = strlen(rooms[i]);
        struct room *r = room_find(h, rooms[i], len, hash_bytes(h, rooms[i], len));
        if (r) {
            r->ring.evicted = seq;
            r->top_seq = seq;
        } else {
            h->forgotten_seq = seq; /* no record lists it; a since() by name learns it */
        }
    }
    return (int64_t)seq;
}

int64_t rt_history_append(rt_history_t *h, const char *const *rooms, size_t nrooms,
                          const char *const *except, size_t nexcept, const void *payload,
                          size_t len)
{
    struct name_key keys[KEYS_STACK];
    int rc = check_names(h, rooms, nrooms, nrooms <= KEYS_STACK ? keys : NULL);
    if (!rc)
        rc = check_names(h, except, nexcept, NULL);
    if (!rc && len && !payload)
        rc = EDDY_EINVAL;
    struct entry *e = NULL;
    bool oversized = len > h->cfg.ring_max_bytes || len > h->cfg.max_bytes;
    if (!rc && !oversized) {
        size_t names_len = 0;
        for (size_t i = 0; i < nexcept; i++)
            names_len += strlen(except[i]) + 1;
        size_t slots = nrooms ? nrooms : 1;
        if (names_len > UINT32_MAX) {
            rc = EDDY_EINVAL;
        } else {
            e = malloc(sizeof(*e) + nexcept * sizeof(uint64_t) + slots * sizeof(struct room *) +
                       names_len + len);
            if (!e)
                rc = EDDY_ENOMEM;
        }
        if (e) {
            e->len = len;
            e->nrooms = (uint32_t)slots;
            e->nexcept = (uint32_t)nexcept;
            e->names_len = (uint32_t)names_len;
            char *names = entry_names(e);
            for (size_t i = 0; i < nexcept; i++) {
                size_t n = strlen(except[i]);
                e->tail[i] = hash_bytes(h, except[i], n);
                memcpy(names, except[i], n + 1);
                names += n + 1;
            }
            if (len)
                memcpy(names, payload, len);
        }
    }

    pthread_mutex_lock(&h->mu);
    uint64_t now = now_ms(h);
    expire_entries(h, now);
    if (!rc && oversized) {
        int64_t seq = append_oversized(h, rooms, nrooms);
        pthread_mutex_unlock(&h->mu);
        return seq;
    }
    size_t k = 0;
    struct room **targets = e ? entry_rooms(e) : NULL;
    if (!rc) {
        if (nrooms) {
            rc = rooms_resolve(h, rooms, nrooms, nrooms <= KEYS_STACK ? keys : NULL, targets, &k);
        } else {
            targets[0] = h->all;
            k = 1;
        }
    }
    for (size_t i = 0; !rc && i < k; i++)
        rc = ring_reserve(h, targets[i]);
    if (rc) {
        for (size_t i = 0; i < k; i++)
            room_release(h, targets[i]);
        h->lost_seq = ++h->seq;
        h->lost_total++;
        pthread_mutex_unlock(&h->mu);
        free(e);
        return rc;
    }
    for (size_t i = k; i < e->nrooms; i++)
        targets[i] = NULL;
    uint64_t seq = ++h->seq;
    e->seq = seq;
    e->at_ms = now;
    e->refs = (uint32_t)k;
    e->next = NULL;
    e->prev = h->tail;
    if (h->tail)
        h->tail->next = e;
    else
        h->head = e;
    h->tail = e;
    h->entries++;
    h->bytes += len;
    for (size_t i = 0; i < k; i++) {
        struct room *r = targets[i];
        struct ring *ring = &r->ring;
        if (ring->count == h->cfg.ring_max_count)
            ring_pop(h, r);
        size_t idx = ring->head + ring->count;
        if (idx >= ring->cap)
            idx -= ring->cap;
        ring->slots[idx] = e;
        ring->count++;
        ring->bytes += len;
        r->top_seq = seq;
        /* The new entry fits (len <= ring_max_bytes), so this stops before reaching it. */
        while (ring->bytes > h->cfg.ring_max_bytes)
            ring_pop(h, r);
    }
    /* Likewise the new entry alone fits the store. */
    while (h->entries > h->cfg.max_entries || h->bytes > h->cfg.max_bytes)
        entry_evict(h, h->head);
    pthread_mutex_unlock(&h->mu);
    return (int64_t)seq;
}

/* ---------------------------------------------------------------------------------------
 * Queries
 * ------------------------------------------------------------------------------------- */

/* One room of a since-query: its name (for except matching) and its ring cursor. */
struct qroom {
    const char *name;
    size_t len;
    uint64_t hash;
    struct room *room; /* NULL: unknown to the store */
    size_t pos;        /* cursor into room's ring */
};

#define QROOMS_STACK 32

static bool excluded(struct entry *e, const struct qroom *q, size_t nq)
{
    const char *name = entry_names(e);
    for (uint32_t i = 0; i < e->nexcept; i++) {
        size_t len = strlen(name);
        for (size_t j = 0; j < nq; j++)
            if (q[j].hash == e->tail[i] && q[j].len == len && memcmp(q[j].name, name, len) == 0)
                return true;
        name += len + 1;
    }
    return false;
}

/* First index of ring whose seq is above after. */
static size_t ring_seek(const struct ring *ring, uint64_t after)
{
    size_t lo = 0, hi = ring->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ring_at(ring, mid)->seq <= after)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The since-query over q[0..nq) (their rooms looked up) plus the namespace ring, with
 * the mutex held and aged entries expired. */
static int since_locked(rt_history_t *h, uint64_t after, struct qroom *q, size_t nq,
                        rt_history_entry_cb cb, void *ud, size_t *delivered)
{
    if (after > h->seq || h->lost_seq > after || h->all->ring.evicted > after)
        return RT_HISTORY_GAP;
    for (size_t i = 0; i < nq; i++) {
        if (!q[i].room) {
            if (h->forgotten_seq > after)
                return RT_HISTORY_GAP;
            continue;
        }
        if (q[i].room->ring.evicted > after)
            return RT_HISTORY_GAP;
        q[i].pos = ring_seek(&q[i].room->ring, after);
    }
    size_t all_pos = ring_seek(&h->all->ring, after);
    size_t n = 0;
    for (;;) {
        /* k-way merge by seq; an entry held by several rings comes once. */
        struct entry *next = NULL;
        if (all_pos < h->all->ring.count)
            next = ring_at(&h->all->ring, all_pos);
        for (size_t i = 0; i < nq; i++) {
            const struct ring *ring = q[i].room ? &q[i].room->ring : NULL;
            if (ring && q[i].pos < ring->count) {
                struct entry *e = ring_at(ring, q[i].pos);
                if (!next || e->seq < next->seq)
                    next = e;
            }
        }
        if (!next)
            break;
        if (all_pos < h->all->ring.count && ring_at(&h->all->ring, all_pos) == next)
            all_pos++;
        for (size_t i = 0; i < nq; i++) {
            const struct ring *ring = q[i].room ? &q[i].room->ring : NULL;
            if (ring && q[i].pos < ring->count && ring_at(ring, q[i].pos) == next)
                q[i].pos++;
        }
        if (!excluded(next, q, nq)) {
            if (cb)
                cb(next->seq, entry_payload(next), next->len, ud);
            n++;
        }
    }
    if (delivered)
        *delivered = n;
    return 0;
}

int rt_history_since(rt_history_t *h, rt_position_t after, const char *const *rooms, size_t nrooms,
                     rt_history_entry_cb cb, void *ud, size_t *delivered)
{
    if (delivered)
        *delivered = 0;
    int rc = check_names(h, rooms, nrooms, NULL);
    if (rc)
        return rc;
    struct qroom stack[QROOMS_STACK], *q = stack;
    if (nrooms > QROOMS_STACK && !(q = malloc(nrooms * sizeof(*q))))
        return EDDY_ENOMEM;
    for (size_t i = 0; i < nrooms; i++) {
        q[i].name = rooms[i];
        q[i].len = strlen(rooms[i]);
        q[i].hash = hash_bytes(h, rooms[i], q[i].len);
    }
    pthread_mutex_lock(&h->mu);
    expire_entries(h, now_ms(h));
    for (size_t i = 0; i < nrooms; i++)
        q[i].room = room_find(h, q[i].name, q[i].len, q[i].hash);
    if (after.epoch != h->epoch)
        rc = RT_HISTORY_GAP;
    else
        rc = since_locked(h, after.seq, q, nrooms, cb, ud, delivered);
    pthread_mutex_unlock(&h->mu);
    if (q != stack)
        free(q);
    return rc;
}

int rt_history_recent(rt_history_t *h, const char *room, size_t n, rt_history_entry_cb cb, void *ud,
                      rt_position_t *top)
{
    size_t len = 0;
    if (room && (len = strnlen(room, h->cfg.max_room_len + 1)) > h->cfg.max_room_len)
        return EDDY_EINVAL;
    uint64_t hash = room ? hash_bytes(h, room, len) : 0;
    if (n > INT_MAX)
        n = INT_MAX;
    pthread_mutex_lock(&h->mu);
    expire_entries(h, now_ms(h));
    struct room *r = room ? room_find(h, room, len, hash) : h->all;
    size_t count = r ? r->ring.count : 0;
    size_t from = count > n ? count - n : 0;
    for (size_t i = from; cb && i < count; i++) {
        struct entry *e = ring_at(&r->ring, i);
        cb(e->seq, entry_payload(e), e->len, ud);
    }
    if (top) {
        top->epoch = h->epoch;
        top->seq = r ? r->top_seq : 0;
    }
    pthread_mutex_unlock(&h->mu);
    return (int)(count - from);
}

/* ---------------------------------------------------------------------------------------
 * Session records
 * ------------------------------------------------------------------------------------- */

/* Allocates the blob holding a user id and data. */
static int make_blob(const rt_history_t *h, const char *user_id, const void *data, size_t data_len,
                     void **blob, char **user_out, void **data_out)
{
    size_t ulen = user_id ? strnlen(user_id, h->cfg.max_room_len + 1) : 0;
    if (ulen > h->cfg.max_room_len || data_len > h->cfg.max_session_data || (data_len && !data))
        return EDDY_EINVAL;
    *blob = *user_out = *data_out = NULL;
    if (!user_id && !data_len)
        return 0;
    char *b = malloc((user_id ? ulen + 1 : 0) + data_len + 1);
    if (!b)
        return EDDY_ENOMEM;
    *blob = b;
    if (user_id) {
        memcpy(b, user_id, ulen + 1);
        *user_out = b;
        b += ulen + 1;
    }
    if (data_len) {
        memcpy(b, data, data_len);
        *data_out = b;
    }
    return 0;
}

static void make_pid(const uint8_t rnd[15], char pid[RT_HISTORY_PID_SIZE])
{
    eddy_base64_encode(pid, rnd, 15, EDDY_BASE64_URL | EDDY_BASE64_NOPAD);
    pid[RT_HISTORY_PID_LEN] = '\0';
}

int rt_history_session_open(rt_history_t *h, const rt_history_session_info_t *info,
                            char pid[RT_HISTORY_PID_SIZE])
{
    if (!info || !info->sid)
        return EDDY_EINVAL;
    size_t sid_len = strnlen(info->sid, h->cfg.max_room_len + 1);
    int rc = sid_len > h->cfg.max_room_len ? EDDY_EINVAL
                                           : check_names(h, info->rooms, info->nrooms, NULL);
    if (rc)
        return rc;
    struct sess *s = calloc(1, sizeof(*s) + sid_len + 1);
    if (!s)
        return EDDY_ENOMEM;
    memcpy(s->sid, info->sid, sid_len + 1);
    rc = make_blob(h, info->user_id, info->data, info->data_len, &s->blob, &s->user_id, &s->data);
    if (rc)
        goto fail;
    s->data_len = info->data_len;
    if (info->nrooms && !(s->rooms = malloc(info->nrooms * sizeof(*s->rooms)))) {
        rc = EDDY_ENOMEM;
        goto fail;
    }
    /* Four tries, each with 120 fresh random bits: a collision is practically impossible,
     * but the table must never hold one pid twice. */
    uint8_t rnd[4][15];
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
        rc = EDDY_ENOMEM;
        goto fail;
    }

    pthread_mutex_lock(&h->mu);
    expire_sessions(h, now_ms(h));
    int attempt = 0;
    do
        make_pid(rnd[attempt], s->pid);
    while (sess_find(h, s->pid) && ++attempt < 4);
    if (attempt == 4)
        rc = EDDY_ENOMEM;
    else if (h->nsessions >= h->cfg.max_sessions)
        rc = RT_HISTORY_EFULL;
    else
        rc = rooms_resolve(h, info->rooms, info->nrooms, NULL, s->rooms, &s->nrooms);
    if (!rc) {
        TABLE_GROW(struct sess, h->sess_tab, h->sess_nb, h->nsessions);
        if (!h->sess_nb) {
            for (size_t i = 0; i < s->nrooms; i++)
                room_release(h, s->rooms[i]);
            rc = EDDY_ENOMEM;
        }
    }
    if (rc) {
        pthread_mutex_unlock(&h->mu);
        goto fail;
    }
    for (size_t i = 0; i < s->nrooms; i++)
        s->rooms[i]->sessions++;
    s->hash = hash_bytes(h, s->pid, RT_HISTORY_PID_LEN);
    s->seq_at_connect = h->seq;
    s->connected = true;
    s->chain = h->sess_tab[s->hash & (h->sess_nb - 1)];
    h->sess_tab[s->hash & (h->sess_nb - 1)] = s;
    h->nsessions++;
    memcpy(pid, s->pid, RT_HISTORY_PID_SIZE);
    pthread_mutex_unlock(&h->mu);
    return 0;
fail:
    free(s->rooms);
    free(s->blob);
    free(s);
    return rc;
}

int rt_history_session_set_rooms(rt_history_t *h, const char *pid, const char *const *rooms,
                                 size_t nrooms)
{
    if (!valid_pid(pid))
        return EDDY_ENOTFOUND;
    int rc = check_names(h, rooms, nrooms, NULL);
    if (rc)
        return rc;
    struct room **arr = NULL;
    if (nrooms && !(arr = malloc(nrooms * sizeof(*arr))))
        return EDDY_ENOMEM;
    size_t k = 0;
    pthread_mutex_lock(&h->mu);
    struct sess *s = sess_find(h, pid);
    if (!s)
        rc = EDDY_ENOTFOUND;
    else
        rc = rooms_resolve(h, rooms, nrooms, NULL, arr, &k);
    if (rc) {
        pthread_mutex_unlock(&h->mu);
        free(arr);
        return rc;
    }
    /* Take the new references before dropping the old: a room in both stays known. */
    for (size_t i = 0; i < k; i++)
        arr[i]->sessions++;
    rooms_release(h, s->rooms, s->nrooms);
    s->rooms = arr;
    s->nrooms = k;
    pthread_mutex_unlock(&h->mu);
    return 0;
}

int rt_history_session_set_data(rt_history_t *h, const char *pid, const char *user_id,
                                const void *data, size_t data_len)
{
    if (!valid_pid(pid))
        return EDDY_ENOTFOUND;
    void *blob, *new_data;
    char *new_user;
    int rc = make_blob(h, user_id, data, data_len, &blob, &new_user, &new_data);
    if (rc)
        return rc;
    pthread_mutex_lock(&h->mu);
    struct sess *s = sess_find(h, pid);
    if (s) {
        void *old = s->blob;
        s->blob = blob;
        s->user_id = new_user;
        s->data = new_data;
        s->data_len = data_len;
        blob = old;
    }
    pthread_mutex_unlock(&h->mu);
    free(blob);
    return s ? 0 : EDDY_ENOTFOUND;
}

int rt_history_session_disconnect(rt_history_t *h, const char *pid)
{
    if (!valid_pid(pid))
        return EDDY_ENOTFOUND;
    pthread_mutex_lock(&h->mu);
    struct sess *s = sess_find(h, pid);
    if (s && s->connected) {
        s->connected = false;
        s->disconnected_at = now_ms(h);
        s->next = NULL;
        s->prev = h->dtail;
        if (h->dtail)
            h->dtail->next = s;
        else
            h->dhead = s;
        h->dtail = s;
        h->ndisconnected++;
    }
    pthread_mutex_unlock(&h->mu);
    return s ? 0 : EDDY_ENOTFOUND;
}

int rt_history_session_remove(rt_history_t *h, const char *pid)
{
    if (!valid_pid(pid))
        return EDDY_ENOTFOUND;
    pthread_mutex_lock(&h->mu);
    struct sess *s = sess_find(h, pid);
    if (s)
        sess_destroy(h, s);
    pthread_mutex_unlock(&h->mu);
    return s ? 0 : EDDY_ENOTFOUND;
}

void rt_history_session_free(rt_history_session_t *s)
{
    free(s);
}

/* Copies a record for the caller: one allocation (struct, room pointers, strings). */
static rt_history_session_t *sess_copy(const struct sess *s)
{
    size_t sid_len = strlen(s->sid), ulen = s->user_id ? strlen(s->user_id) + 1 : 0;
    size_t size = sizeof(rt_history_session_t) + s->nrooms * sizeof(char *) + sid_len + 1 + ulen +
                  s->data_len;
    for (size_t i = 0; i < s->nrooms; i++)
        size += s->rooms[i]->len + 1;
    rt_history_session_t *out = malloc(size);
    if (!out)
        return NULL;
    const char **rooms = (const char **)(out + 1);
    char *p = (char *)(rooms + s->nrooms);
    memcpy(out->pid, s->pid, RT_HISTORY_PID_SIZE);
    for (size_t i = 0; i < s->nrooms; i++) {
        rooms[i] = p;
        memcpy(p, s->rooms[i]->name, s->rooms[i]->len + 1);
        p += s->rooms[i]->len + 1;
    }
    out->rooms = rooms;
    out->nrooms = s->nrooms;
    out->sid = p;
    memcpy(p, s->sid, sid_len + 1);
    p += sid_len + 1;
    out->user_id = NULL;
    if (s->user_id) {
        out->user_id = p;
        memcpy(p, s->user_id, ulen);
        p += ulen;
    }
    out->data = s->data_len ? p : NULL;
    if (s->data_len)
        memcpy(p, s->data, s->data_len);
    out->data_len = s->data_len;
    out->seq_at_connect = s->seq_at_connect;
    out->was_connected = s->connected;
    return out;
}

int rt_history_recover(rt_history_t *h, const char *pid, const rt_position_t *offset,
                       rt_history_entry_cb cb, void *ud, rt_history_session_t **out)
{
    *out = NULL;
    if (!valid_pid(pid))
        return RT_HISTORY_GAP;
    pthread_mutex_lock(&h->mu);
    uint64_t now = now_ms(h);
    expire_sessions(h, now);
    expire_entries(h, now);
    struct sess *s = sess_find(h, pid);
    if (!s) {
        pthread_mutex_unlock(&h->mu);
        return RT_HISTORY_GAP;
    }
    rt_history_session_t *copy = sess_copy(s);
    struct qroom stack[QROOMS_STACK], *q = stack;
    if (!copy || (s->nrooms > QROOMS_STACK && !(q = malloc(s->nrooms * sizeof(*q))))) {
        pthread_mutex_unlock(&h->mu);
        free(copy);
        return EDDY_ENOMEM;
    }
    for (size_t i = 0; i < s->nrooms; i++) {
        q[i].name = s->rooms[i]->name;
        q[i].len = s->rooms[i]->len;
        q[i].hash = s->rooms[i]->hash;
        q[i].room = s->rooms[i];
    }
    /* Whatever happened before this record's connect is not this session's to recover. */
    uint64_t after = s->seq_at_connect;
    if (offset && offset->seq > after)
        after = offset->seq;
    int rc = offset && offset->epoch != h->epoch
                 ? RT_HISTORY_GAP
                 : since_locked(h, after, q, s->nrooms, cb, ud, NULL);
    copy->recovered_seq = h->seq;
    sess_destroy(h, s);
    pthread_mutex_unlock(&h->mu);
    if (q != stack)
        free(q);
    if (rc) {
        free(copy);
        return rc;
    }
    *out = copy;
    return 0;
}

/* ---------------------------------------------------------------------------------------
 * Maintenance
 * ------------------------------------------------------------------------------------- */

size_t rt_history_sweep(rt_history_t *h)
{
    pthread_mutex_lock(&h->mu);
    uint64_t now = now_ms(h);
    size_t n = expire_entries(h, now) + expire_sessions(h, now);
    pthread_mutex_unlock(&h->mu);
    return n;
}

void rt_history_stats(rt_history_t *h, rt_history_stats_t *stats)
{
    pthread_mutex_lock(&h->mu);
    stats->entries = h->entries;
    stats->bytes = h->bytes;
    stats->rooms = h->nrooms;
    stats->sessions = h->nsessions;
    stats->disconnected = h->ndisconnected;
    stats->seq = h->seq;
    stats->evicted = h->evicted_total;
    stats->lost = h->lost_total;
    stats->slots = h->slots;
    pthread_mutex_unlock(&h->mu);
}

/* SPDX-License-Identifier: MIT */
/*
 * The sharded broker (rt_broker.h "Sharded"): N brokers, one per Redis, behind one
 * rt_broker_ops. Each operation goes to the shard that owns its key on a consistent-hash
 * ring (rt_ring.h), or in a Redis Cluster (rt_broker.h "Redis Cluster") to the master of
 * its hash slot: the namespace for broadcasts, interest, history and presence, the pid for
 * session records. What concerns the node as a whole (membership, the self round trip,
 * state, counters) is every shard's.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_broker.h"
#include "rt_ring.h"

typedef struct shard shard_t;

typedef struct shard_child {
    shard_t *sh;
    rt_broker_t *b;
    char name[RT_BROKER_SHARD_NAME_SIZE]; /* its place on the ring, for the state events */
} shard_child_t;

struct shard {
    rt_broker_t base;
    rt_broker_handlers_t h;
    void *ud;
    rt_ring_t *ring;
    /* Redis Cluster: the shard of each hash slot (NULL: the ring; a shard's handler moved
     * changes one while loops read them: atomic bytes), the key prefix (a pid without a
     * tag is stored under Psession:<pid>, hashed whole) and the shard whose broker draws
     * the next pid (round robin). */
    _Atomic uint8_t *slots;
    char *prefix;
    atomic_uint next_pid;
    /* Held while the state handler runs: events of several shards' threads reach it one
     * at a time, in order. */
    pthread_mutex_t state_lock;
    char node_id[RT_BROKER_NODE_ID_SIZE];
    /* Freeing: the shards go one after the other, while the others' threads still run.
     * Once closing is set, operations answer EDDY_ECLOSED and events are no longer handed
     * on, so a handler of one shard never reaches a shard already freed; active counts the
     * handlers and results running, which sh_free() waits out before freeing a shard. */
    atomic_bool closing;
    atomic_int active;
    /* Redis Cluster: a part made while running (a slot moved to a master of no part) by
     * grow(grow_arg), under grow_lock, with the children's handlers ch; n grows then, after
     * the child is set (child[] has room for RT_BROKER_SHARDS_MAX). */
    rt_broker_shard_grow_cb grow;
    void *grow_arg;
    void (*grow_free)(void *arg);
    pthread_mutex_t grow_lock;
    rt_broker_handlers_t ch;
    atomic_size_t n;
    shard_child_t child[];
};

/* Entering a handler or a result of a shard: false (left at once) if the broker is being
 * freed and the handler need not run. */
static bool enter(shard_t *sh)
{
    atomic_fetch_add(&sh->active, 1);
    if (!atomic_load(&sh->closing))
        return true;
    atomic_fetch_sub(&sh->active, 1);
    return false;
}

static void leave(shard_t *sh)
{
    atomic_fetch_sub(&sh->active, 1);
}

/* A pid's first characters are its tag when they are these (rt_broker_session_pid()). */
static bool pid_tagged(const char *pid)
{
    size_t n = strspn(pid, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_");
    return n >= RT_BROKER_SESSION_TAG_LEN;
}

/* The shard of a namespace (names start with '/') or of a pid: on the ring, or by the slot
 * its Redis keys are in (the hash tag {nsp}; a tagged pid's {tag}; else Psession:<pid>). */
static size_t part_of(const shard_t *sh, const char *key)
{
    size_t len = strlen(key);
    if (sh->slots == NULL)
        return rt_ring_pick(sh->ring, key, len);
    if (key[0] == '/')
        return atomic_load(&sh->slots[rt_broker_crc16(key, len) % RT_BROKER_CLUSTER_SLOTS]);
    if (pid_tagged(key))
        return atomic_load(
            &sh->slots[rt_broker_crc16(key, RT_BROKER_SESSION_TAG_LEN) % RT_BROKER_CLUSTER_SLOTS]);
    size_t plen = strlen(sh->prefix);
    char *name = malloc(plen + 8 + len + 1);
    if (name == NULL)
        return 0; /* out of memory: a shard that may answer MOVED (then reconnects) */
    memcpy(name, sh->prefix, plen);
    memcpy(name + plen, "session:", 8);
    memcpy(name + plen + 8, key, len + 1);
    size_t part = atomic_load(&sh->slots[rt_broker_keyslot(name, plen + 8 + len)]);
    free(name);
    return part;
}

/* The shard that owns key, or NULL while the broker is being freed. */
static rt_broker_t *route(shard_t *sh, const char *key)
{
    if (atomic_load(&sh->closing))
        return NULL;
    return sh->child[part_of(sh, key)].b;
}

/* ---------------------------------------------------------------------------------------
 * Handlers of the children (their threads): forwarded with the sharded broker as b
 * ------------------------------------------------------------------------------------- */

static void on_deliver(rt_broker_t *b, const rt_broker_delivery_t *d, void *ud)
{
    shard_t *sh = ((shard_child_t *)ud)->sh;
    if (sh->h.deliver && enter(sh)) {
        sh->h.deliver(&sh->base, d, sh->ud);
        leave(sh);
    }
}

static void on_emitted(rt_broker_t *b, const rt_emitter_msg_t *m, void *ud)
{
    shard_t *sh = ((shard_child_t *)ud)->sh;
    if (sh->h.emitted && enter(sh)) {
        sh->h.emitted(&sh->base, m, sh->ud);
        leave(sh);
    }
}

/* A node request that came through shard c: its id becomes id * RT_BROKER_SHARDS_MAX + c's
 * index + 1, so that the answer (sh_respond()) goes back through the shard the requester
 * waits on (the number of shards may grow meanwhile). */
static void on_request(rt_broker_t *b, const rt_broker_request_t *req, void *ud)
{
    shard_child_t *c = ud;
    shard_t *sh = c->sh;
    if (sh->h.request == NULL || req->id >= UINT64_MAX / RT_BROKER_SHARDS_MAX || !enter(sh))
        return;
    rt_broker_request_t out = *req;
    if (req->id != 0)
        out.id = req->id * RT_BROKER_SHARDS_MAX + (size_t)(c - sh->child) + 1;
    sh->h.request(&sh->base, &out, sh->ud);
    leave(sh);
}

/* A shard's own state change, as the part it is: its outage and its gap concern only the
 * namespaces it owns (the layer asks rt_broker_part() which those are). */
static void on_state(rt_broker_t *b, const rt_broker_state_event_t *ev, void *ud)
{
    shard_child_t *c = ud;
    shard_t *sh = c->sh;
    rt_broker_state_event_t out = *ev;
    out.part = (size_t)(c - sh->child);
    out.part_name = c->name;
    pthread_mutex_lock(&sh->state_lock);
    if (sh->h.state && enter(sh)) {
        sh->h.state(&sh->base, &out, sh->ud);
        leave(sh);
    }
    pthread_mutex_unlock(&sh->state_lock);
}

/* The shard made for a slot moved to a master of no shard: index n, named "slot N" (its
 * first slot), made by grow. RT_BROKER_SHARDS_MAX if none can be (logged). grow_lock
 * held. */
static size_t shard_grow(shard_t *sh, unsigned slot)
{
    size_t n = atomic_load(&sh->n);
    if (sh->grow == NULL || n == RT_BROKER_SHARDS_MAX) {
        eddy_log(NULL, EDDY_LOG_ERROR, "rt_broker: no part can be made for slot %u (%s)", slot,
                 sh->grow == NULL ? "not a cluster" : "too many parts");
        return RT_BROKER_SHARDS_MAX;
    }
    shard_child_t *c = &sh->child[n];
    c->sh = sh;
    snprintf(c->name, sizeof(c->name), "slot %u", slot);
    c->b = sh->grow(n, slot, sh->node_id, &sh->ch, c, sh->grow_arg);
    if (c->b == NULL)
        return RT_BROKER_SHARDS_MAX;
    atomic_store(&sh->n, n + 1); /* after the child is set: readers see it whole */
    return n;
}

/* Redis Cluster: shard c found its slot served by shard part's master now (resharding), or
 * with part RT_BROKER_PARTS_MAX by a master of no shard (a shard is made for it first). The
 * slot goes to part from now on (operations routed after this store go there), what c
 * holds of it follows, and the layer hears it from part's state event (moved): it places
 * its namespaces again (and sees the new number of parts), and with gap their clients
 * recover from history, which moved with the slot (a new part is DOWN at first: its first
 * connection ends a gap). Again for the same slot (something of it still reached c): only
 * the hand-over. */
static bool on_moved(rt_broker_t *b, unsigned slot, size_t part, void *ud)
{
    shard_child_t *c = ud;
    shard_t *sh = c->sh;
    if (sh->slots == NULL || slot >= RT_BROKER_CLUSTER_SLOTS || !enter(sh))
        return false;
    if (part == RT_BROKER_PARTS_MAX) {
        pthread_mutex_lock(&sh->grow_lock);
        part = shard_grow(sh, slot);
        pthread_mutex_unlock(&sh->grow_lock);
    }
    if (part >= atomic_load(&sh->n)) {
        leave(sh);
        return false;
    }
    rt_broker_t *to = sh->child[part].b;
    bool first = rt_broker_redis_hand_over(b, to, slot, &sh->slots[slot], (uint8_t)part) != part;
    if (first) {
        /* part's state read under the lock: its own events are sent under it too. */
        pthread_mutex_lock(&sh->state_lock);
        rt_broker_state_t st = rt_broker_state(to);
        rt_broker_state_event_t out = {.state = st,
                                       .gap = st == RT_BROKER_UP,
                                       .part = part,
                                       .part_name = sh->child[part].name,
                                       .moved = true};
        if (sh->h.state)
            sh->h.state(&sh->base, &out, sh->ud);
        pthread_mutex_unlock(&sh->state_lock);
    }
    leave(sh);
    return true;
}

/* A result on its way back: the caller's callback and argument, called with the sharded
 * broker as b. Allocated only for requests that want a result. */
typedef struct shard_call {
    shard_t *sh;
    union {
        rt_broker_publish_cb publish;
        rt_broker_history_cb history;
        rt_broker_session_cb session;
        rt_broker_presence_cb presence;
        rt_broker_request_cb request;
    } cb;
    void *arg;
} shard_call_t;

static shard_call_t *call_new(shard_t *sh, void *arg)
{
    shard_call_t *c = malloc(sizeof(*c));
    if (c != NULL) {
        c->sh = sh;
        c->arg = arg;
    }
    return c;
}

/* Frees c when the child refused the request (its callback will not run). */
static int call_sent(shard_call_t *c, int rc)
{
    if (rc != 0)
        free(c);
    return rc;
}

/* A child's answer arrives: c's shard counts as active until call_done(). */
static shard_call_t *call_enter(void *arg)
{
    shard_call_t *c = arg;
    atomic_fetch_add(&c->sh->active, 1); /* answered even while freeing (then ECLOSED) */
    return c;
}

static void call_done(shard_call_t *c)
{
    leave(c->sh);
    free(c);
}

/*
 * For an operation that answers through cb: 0 with the child for key in *to and a call for
 * arg in *c (its callback still to set), else EDDY_EINVAL (no key or cb), EDDY_ECLOSED
 * (no child for key) or EDDY_ENOMEM.
 */
static int call_route(shard_t *sh, const char *key, bool has_cb, void *arg, rt_broker_t **to,
                      shard_call_t **c)
{
    if (key == NULL || !has_cb)
        return EDDY_EINVAL;
    if ((*to = route(sh, key)) == NULL)
        return EDDY_ECLOSED;
    if ((*c = call_new(sh, arg)) == NULL)
        return EDDY_ENOMEM;
    return 0;
}

/* For an operation without an answer: the child for key, else NULL with *rc EDDY_EINVAL
 * (no key) or EDDY_ECLOSED (no child for it). */
static rt_broker_t *route_or(rt_broker_t *b, const char *key, int *rc)
{
    rt_broker_t *to = key != NULL ? route((shard_t *)b, key) : NULL;
    if (to == NULL)
        *rc = key == NULL ? EDDY_EINVAL : EDDY_ECLOSED;
    return to;
}

static void on_publish(rt_broker_t *b, int err, rt_position_t pos, void *arg)
{
    shard_call_t *c = call_enter(arg);
    c->cb.publish(&c->sh->base, err, pos, c->arg);
    call_done(c);
}

static void on_history(rt_broker_t *b, int err, rt_position_t top,
                       const rt_broker_delivery_t *entries, size_t n, void *arg)
{
    shard_call_t *c = call_enter(arg);
    c->cb.history(&c->sh->base, err, top, entries, n, c->arg);
    call_done(c);
}

static void on_session(rt_broker_t *b, int err, const void *data, size_t len, void *arg)
{
    shard_call_t *c = call_enter(arg);
    c->cb.session(&c->sh->base, err, data, len, c->arg);
    call_done(c);
}

static void on_presence(rt_broker_t *b, int err, const rt_broker_presence_t *entries, size_t n,
                        void *arg)
{
    shard_call_t *c = call_enter(arg);
    c->cb.presence(&c->sh->base, err, entries, n, c->arg);
    call_done(c);
}

static void on_request_result(rt_broker_t *b, int err, const rt_broker_reply_t *replies, size_t n,
                              const char *const *missing, size_t nmissing, void *arg)
{
    shard_call_t *c = call_enter(arg);
    c->cb.request(&c->sh->base, err, replies, n, missing, nmissing, c->arg);
    call_done(c);
}

/* ---------------------------------------------------------------------------------------
 * Operations
 * ------------------------------------------------------------------------------------- */

static int sh_publish(rt_broker_t *b, const rt_broker_msg_t *msg, eddy_fd_t fd,
                      rt_broker_publish_cb cb, void *arg)
{
    shard_t *sh = (shard_t *)b;
    if (msg == NULL || msg->nsp == NULL)
        return EDDY_EINVAL;
    rt_broker_t *to = route(sh, msg->nsp);
    if (to == NULL)
        return EDDY_ECLOSED;
    if (cb == NULL) /* the layer's broadcasts: nothing more than the child's own work */
        return rt_broker_publish(to, msg, fd, NULL, NULL);
    shard_call_t *c = call_new(sh, arg);
    if (c == NULL)
        return EDDY_ENOMEM;
    c->cb.publish = cb;
    return call_sent(c, rt_broker_publish(to, msg, fd, on_publish, c));
}

static int sh_subscribe(rt_broker_t *b, const char *nsp, const char *room)
{
    int rc;
    rt_broker_t *to = route_or(b, nsp, &rc);
    return to != NULL ? rt_broker_subscribe(to, nsp, room) : rc;
}

static int sh_unsubscribe(rt_broker_t *b, const char *nsp, const char *room)
{
    int rc;
    rt_broker_t *to = route_or(b, nsp, &rc);
    return to != NULL ? rt_broker_unsubscribe(to, nsp, room) : rc;
}

static int sh_history(rt_broker_t *b, const char *nsp, rt_position_t after,
                      const char *const *rooms, size_t nrooms, eddy_fd_t fd,
                      rt_broker_history_cb cb, void *arg)
{
    rt_broker_t *to;
    shard_call_t *c;
    int rc = call_route((shard_t *)b, nsp, cb != NULL, arg, &to, &c);
    if (rc != 0)
        return rc;
    c->cb.history = cb;
    return call_sent(c, rt_broker_history(to, nsp, after, rooms, nrooms, fd, on_history, c));
}

static int sh_recent(rt_broker_t *b, const char *nsp, const char *room, size_t n, eddy_fd_t fd,
                     rt_broker_history_cb cb, void *arg)
{
    rt_broker_t *to;
    shard_call_t *c;
    int rc = call_route((shard_t *)b, nsp, cb != NULL, arg, &to, &c);
    if (rc != 0)
        return rc;
    c->cb.history = cb;
    return call_sent(c, rt_broker_recent(to, nsp, room, n, fd, on_history, c));
}

static int sh_session_put(rt_broker_t *b, const char *pid, const void *data, size_t len,
                          uint64_t ttl_ms)
{
    int rc;
    rt_broker_t *to = route_or(b, pid, &rc);
    return to != NULL ? rt_broker_session_put(to, pid, data, len, ttl_ms) : rc;
}

static int sh_session_take(rt_broker_t *b, const char *pid, eddy_fd_t fd, rt_broker_session_cb cb,
                           void *arg)
{
    rt_broker_t *to;
    shard_call_t *c;
    int rc = call_route((shard_t *)b, pid, cb != NULL, arg, &to, &c);
    if (rc != 0)
        return rc;
    c->cb.session = cb;
    return call_sent(c, rt_broker_session_take(to, pid, fd, on_session, c));
}

/* The first shard's tag: the record then lives on the shard of the pid (put and take route
 * by it alike), which finds it under any node's tag. */
static void sh_session_pid(rt_broker_t *b, char pid[RT_HISTORY_PID_SIZE])
{
    shard_t *sh = (shard_t *)b;
    /* In a cluster each shard's tag is in its own slots: the layer draws until the pid's
     * shard is its namespace's (rt_cluster_session_pid()), one shard after the other. */
    size_t i = sh->slots != NULL ? atomic_fetch_add(&sh->next_pid, 1) % atomic_load(&sh->n) : 0;
    rt_broker_session_pid(sh->child[i].b, pid);
}

static int sh_presence_set(rt_broker_t *b, const char *nsp, const char *room, const char *member,
                           const void *info, size_t len)
{
    int rc;
    rt_broker_t *to = route_or(b, nsp, &rc);
    return to != NULL ? rt_broker_presence_set(to, nsp, room, member, info, len) : rc;
}

static int sh_presence_del(rt_broker_t *b, const char *nsp, const char *room, const char *member)
{
    int rc;
    rt_broker_t *to = route_or(b, nsp, &rc);
    return to != NULL ? rt_broker_presence_del(to, nsp, room, member) : rc;
}

static int sh_presence_get(rt_broker_t *b, const char *nsp, const char *room, eddy_fd_t fd,
                           rt_broker_presence_cb cb, void *arg)
{
    rt_broker_t *to;
    shard_call_t *c;
    int rc = call_route((shard_t *)b, nsp, cb != NULL, arg, &to, &c);
    if (rc != 0)
        return rc;
    c->cb.presence = cb;
    return call_sent(c, rt_broker_presence_get(to, nsp, room, fd, on_presence, c));
}

/* The union of the shards' alive nodes: a node is alive while its lease is fresh on at
 * least one shard that is up (every node renews its lease on every shard). While no shard
 * is up, the union of their last lists. */
static size_t sh_nodes(rt_broker_t *b, char (*ids)[RT_BROKER_NODE_ID_SIZE], size_t max)
{
    shard_t *sh = (shard_t *)b;
    bool any_up = false;
    for (size_t i = 0, n = atomic_load(&sh->n); i < n; i++)
        any_up |= rt_broker_state(sh->child[i].b) == RT_BROKER_UP;
    char(*all)[RT_BROKER_NODE_ID_SIZE] = NULL;
    size_t nall = 0;
    for (size_t i = 0, n = atomic_load(&sh->n); i < n; i++) {
        rt_broker_t *cb = sh->child[i].b;
        if (any_up && rt_broker_state(cb) != RT_BROKER_UP)
            continue;
        size_t k = rt_broker_nodes(cb, NULL, 0);
        if (k == 0)
            continue;
        char(*grown)[RT_BROKER_NODE_ID_SIZE] = realloc(all, (nall + k) * sizeof(*all));
        if (grown == NULL)
            break;
        all = grown;
        size_t got = rt_broker_nodes(cb, all + nall, k), end = nall + (got < k ? got : k);
        for (size_t j = nall; j < end; j++) {
            size_t seen = 0;
            while (seen < nall && strcmp(all[seen], all[j]) != 0)
                seen++;
            if (seen == nall) /* new: kept */
                memmove(all[nall++], all[j], sizeof(*all));
        }
    }
    for (size_t i = 0; i < nall && i < max; i++)
        memcpy(ids[i], all[i], sizeof(*all));
    free(all);
    return nall;
}

/* Ready while every shard's round trip is recent: a namespace on a shard that does not
 * answer cannot broadcast across nodes. The age is the oldest shard's. */
static bool sh_ready(rt_broker_t *b, uint64_t *age_ms)
{
    shard_t *sh = (shard_t *)b;
    bool ready = true;
    uint64_t oldest = 0;
    for (size_t i = 0, n = atomic_load(&sh->n); i < n; i++) {
        uint64_t age = UINT64_MAX;
        ready &= rt_broker_ready(sh->child[i].b, &age);
        if (age > oldest)
            oldest = age;
    }
    if (age_ms != NULL)
        *age_ms = oldest;
    return ready;
}

static rt_broker_state_t sh_state(rt_broker_t *b)
{
    shard_t *sh = (shard_t *)b;
    rt_broker_state_t worst = RT_BROKER_UP;
    for (size_t i = 0, n = atomic_load(&sh->n); i < n; i++) {
        rt_broker_state_t st = rt_broker_state(sh->child[i].b);
        if (st < worst)
            worst = st;
    }
    return worst;
}

static void sh_stats(rt_broker_t *b, rt_broker_stats_t *out)
{
    shard_t *sh = (shard_t *)b;
    *out = (rt_broker_stats_t){0};
    for (size_t i = 0, n = atomic_load(&sh->n); i < n; i++) {
        rt_broker_stats_t st = {0};
        rt_broker_stats(sh->child[i].b, &st);
        out->published += st.published;
        out->delivered += st.delivered;
        out->buffered += st.buffered;
        out->buffered_bytes += st.buffered_bytes;
        out->dropped += st.dropped;
        out->reconnects += st.reconnects;
        out->gaps += st.gaps;
        out->master_switches += st.master_switches;
        out->missed += st.missed;
        out->retried += st.retried;
        out->slots_moved += st.slots_moved;
        out->subscriptions += st.subscriptions;
    }
}

static size_t sh_parts(rt_broker_t *b)
{
    return atomic_load(&((shard_t *)b)->n);
}

static size_t sh_part(rt_broker_t *b, const char *nsp)
{
    return part_of((shard_t *)b, nsp);
}

static const char *sh_part_name(rt_broker_t *b, size_t part)
{
    shard_t *sh = (shard_t *)b;
    return part < atomic_load(&sh->n) ? sh->child[part].name : NULL;
}

static const char *sh_node_id(rt_broker_t *b)
{
    return ((shard_t *)b)->node_id;
}

/* Through the shard of key (a namespace: in order with its broadcasts, a barrier holds
 * them), else the first. Every node listens for requests on every shard. */
static int sh_request(rt_broker_t *b, const char *node, const char *key, const void *data,
                      size_t len, uint32_t flags, uint32_t timeout_ms, eddy_fd_t fd,
                      rt_broker_request_cb cb, void *arg)
{
    shard_t *sh = (shard_t *)b;
    if (atomic_load(&sh->closing))
        return EDDY_ECLOSED;
    rt_broker_t *to = key != NULL ? route(sh, key) : sh->child[0].b;
    if (to == NULL)
        return EDDY_ECLOSED;
    if (cb == NULL)
        return rt_broker_request(to, node, key, data, len, flags, timeout_ms, fd, NULL, NULL);
    shard_call_t *c = call_new(sh, arg);
    if (c == NULL)
        return EDDY_ENOMEM;
    c->cb.request = cb;
    return call_sent(c, rt_broker_request(to, node, key, data, len, flags, timeout_ms, fd,
                                          on_request_result, c));
}

/* id is on_request()'s: it names the shard the request came through. */
static int sh_respond(rt_broker_t *b, const char *node, const char *key, uint64_t id,
                      const void *data, size_t len)
{
    shard_t *sh = (shard_t *)b;
    if (id == 0)
        return EDDY_EINVAL;
    if (atomic_load(&sh->closing))
        return EDDY_ECLOSED;
    size_t i = (id - 1) % RT_BROKER_SHARDS_MAX;
    if (i >= atomic_load(&sh->n))
        return 0; /* no shard asked it: an answer nobody waits for, dropped */
    return rt_broker_respond(sh->child[i].b, node, key, (id - 1) / RT_BROKER_SHARDS_MAX, data, len);
}

static void sh_free(rt_broker_t *b)
{
    shard_t *sh = (shard_t *)b;
    /* No shard is freed while a handler or result that could reach it still runs. */
    atomic_store(&sh->closing, true);
    while (atomic_load(&sh->active) > 0)
        sched_yield();
    for (size_t i = 0, n = atomic_load(&sh->n); i < n; i++)
        if (sh->child[i].b != NULL)
            rt_broker_free(sh->child[i].b);
    rt_ring_free(sh->ring);
    free((void *)sh->slots);
    free(sh->prefix);
    if (sh->grow_free != NULL)
        sh->grow_free(sh->grow_arg);
    pthread_mutex_destroy(&sh->grow_lock);
    pthread_mutex_destroy(&sh->state_lock);
    free(sh);
}

/* Every operation of rt_broker_ops routed or combined; an operation added to the seam
 * gets its entry here. */
static const rt_broker_ops_t shard_ops = {
    .publish = sh_publish,
    .subscribe = sh_subscribe,
    .unsubscribe = sh_unsubscribe,
    .history = sh_history,
    .session_put = sh_session_put,
    .session_take = sh_session_take,
    .session_pid = sh_session_pid,
    .presence_set = sh_presence_set,
    .presence_del = sh_presence_del,
    .presence_get = sh_presence_get,
    .nodes = sh_nodes,
    .ready = sh_ready,
    .state = sh_state,
    .stats = sh_stats,
    .node_id = sh_node_id,
    .free = sh_free,
    .request = sh_request,
    .respond = sh_respond,
    .recent = sh_recent,
    .parts = sh_parts,
    .part = sh_part,
    .part_name = sh_part_name,
};

/* ---------------------------------------------------------------------------------------
 * Construction
 * ------------------------------------------------------------------------------------- */

/* The sharded broker of rt_broker_shard_new() (ring: a ring), or of
 * rt_broker_shard_slots_new() (slots and prefix: copied). */
static rt_broker_t *shard_new(const char *const *names, size_t n, rt_ring_t *ring,
                              const uint8_t *slots, const char *prefix,
                              rt_broker_shard_make_cb make, void *make_arg,
                              const rt_broker_handlers_t *h, void *ud)
{
    shard_t *sh = calloc(1, sizeof(*sh) + RT_BROKER_SHARDS_MAX * sizeof(sh->child[0]));
    if (sh == NULL) {
        rt_ring_free(ring);
        return NULL;
    }
    sh->base.ops = &shard_ops;
    sh->ring = ring;
    atomic_init(&sh->n, n);
    if (slots != NULL) {
        sh->slots = malloc(RT_BROKER_CLUSTER_SLOTS * sizeof(*sh->slots));
        sh->prefix = strdup(prefix);
        if (sh->slots == NULL || sh->prefix == NULL) {
            free((void *)sh->slots);
            free(sh->prefix);
            free(sh);
            return NULL;
        }
        for (size_t i = 0; i < RT_BROKER_CLUSTER_SLOTS; i++)
            atomic_init(&sh->slots[i], slots[i]);
    }
    if (h != NULL)
        sh->h = *h;
    sh->ud = ud;
    pthread_mutex_init(&sh->state_lock, NULL);
    pthread_mutex_init(&sh->grow_lock, NULL);
    for (size_t i = 0; i < n; i++) {
        sh->child[i].sh = sh;
        snprintf(sh->child[i].name, sizeof(sh->child[i].name), "%s", names[i]);
    }
    /* Handlers go through the child: a child may report before the next one exists (the
     * layer counts a part DOWN until it reports UP). */
    sh->ch = (rt_broker_handlers_t){.deliver = on_deliver,
                                    .state = on_state,
                                    .emitted = on_emitted,
                                    .request = on_request,
                                    .moved = on_moved};
    for (size_t i = 0; i < n; i++) {
        sh->child[i].b = make(i, i == 0 ? NULL : sh->node_id, &sh->ch, &sh->child[i], make_arg);
        if (sh->child[i].b == NULL) {
            sh_free(&sh->base);
            return NULL;
        }
        if (i == 0)
            snprintf(sh->node_id, sizeof(sh->node_id), "%s", rt_broker_node_id(sh->child[0].b));
    }
    return &sh->base;
}

rt_broker_t *rt_broker_shard_new(const char *const *names, size_t n, rt_broker_shard_make_cb make,
                                 void *make_arg, const rt_broker_handlers_t *h, void *ud)
{
    if (names == NULL || make == NULL || n == 0 || n > RT_BROKER_SHARDS_MAX)
        return NULL;
    rt_ring_t *ring = rt_ring_new(names, n);
    if (ring == NULL)
        return NULL;
    return shard_new(names, n, ring, NULL, NULL, make, make_arg, h, ud);
}

rt_broker_t *rt_broker_shard_slots_new(const char *const *names, size_t n,
                                       const uint8_t slots[RT_BROKER_CLUSTER_SLOTS],
                                       const char *prefix, rt_broker_shard_make_cb make,
                                       void *make_arg, const rt_broker_handlers_t *h, void *ud)
{
    if (names == NULL || make == NULL || slots == NULL || prefix == NULL || n == 0 ||
        n > RT_BROKER_SHARDS_MAX)
        return NULL;
    for (size_t i = 0; i < RT_BROKER_CLUSTER_SLOTS; i++)
        if (slots[i] >= n)
            return NULL;
    return shard_new(names, n, NULL, slots, prefix, make, make_arg, h, ud);
}

/* The Redis shards of rt_broker_shard_redis_new(). */
typedef struct redis_shards {
    const rt_broker_redis_config_t *cfgs;
} redis_shards_t;

static rt_broker_t *make_redis(size_t i, const char *node_id, const rt_broker_handlers_t *h,
                               void *hud, void *arg)
{
    const redis_shards_t *rs = arg;
    rt_broker_redis_config_t cfg = rs->cfgs[i];
    /* Every shard keeps the emitter prefix: a backend's emitter publishes to whichever Redis
     * it was given, and each message reaches this node through that Redis only (once). */
    if (i > 0)
        cfg.node_id = node_id;
    return rt_broker_redis_new(&cfg, h, hud);
}

rt_broker_t *rt_broker_shard_redis_new(const rt_broker_redis_config_t *cfgs, size_t n,
                                       const rt_broker_handlers_t *h, void *ud)
{
    if (cfgs == NULL || n == 0 || n > RT_BROKER_SHARDS_MAX) {
        eddy_log(NULL, EDDY_LOG_ERROR, "rt_broker: 1 to %d Redis shards", RT_BROKER_SHARDS_MAX);
        return NULL;
    }
    char(*names)[RT_BROKER_SHARD_NAME_SIZE] = calloc(n, sizeof(*names));
    const char **ptrs = calloc(n, sizeof(*ptrs));
    rt_broker_t *b = NULL;
    bool ok = names != NULL && ptrs != NULL;
    for (size_t i = 0; ok && i < n; i++) {
        if (cfgs[i].srv != NULL || cfgs[i].host == NULL) {
            eddy_log(cfgs[i].srv, EDDY_LOG_ERROR,
                     "rt_broker: a Redis shard needs a host and no server (srv NULL)");
            ok = false;
            break;
        }
        rt_broker_shard_name(&cfgs[i], names[i]);
        ptrs[i] = names[i];
        for (size_t j = 0; j < i; j++) {
            if (strcmp(names[i], names[j]) == 0) {
                eddy_log(cfgs[i].log, EDDY_LOG_ERROR, "rt_broker: Redis %s given twice", names[i]);
                ok = false;
            }
        }
    }
    if (ok) {
        redis_shards_t rs = {cfgs};
        b = rt_broker_shard_new(ptrs, n, make_redis, &rs, h, ud);
    }
    free(ptrs);
    free(names);
    return b;
}

void rt_broker_shard_name(const rt_broker_redis_config_t *cfg, char name[RT_BROKER_SHARD_NAME_SIZE])
{
    if (cfg->sentinel_master) { /* its address changes with each failover; its name does not */
        snprintf(name, RT_BROKER_SHARD_NAME_SIZE, "sentinel:%s/%d", cfg->sentinel_master, cfg->db);
        return;
    }
    bool v6 = strchr(cfg->host, ':') != NULL;
    snprintf(name, RT_BROKER_SHARD_NAME_SIZE, "%s%s%s:%d/%d", v6 ? "[" : "", cfg->host,
             v6 ? "]" : "", cfg->port, cfg->db);
}

void rt_broker_shard_slots_grow(rt_broker_t *b, rt_broker_shard_grow_cb grow, void *arg,
                                void (*arg_free)(void *arg))
{
    shard_t *sh = (shard_t *)b;
    pthread_mutex_lock(&sh->grow_lock);
    sh->grow = grow;
    sh->grow_arg = arg;
    sh->grow_free = arg_free;
    pthread_mutex_unlock(&sh->grow_lock);
}

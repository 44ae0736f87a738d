/* SPDX-License-Identifier: MIT */
/*
 * Scale-out of the real-time layer (rt_cluster.h): the Redis broker started from the
 * layer's options, interest subscriptions, broadcasts through the broker, session records
 * and the recovery of a client on any node with live deliveries held and merged by seq.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_cluster.h"
#include "rt_json.h"
#include "rt_xnode.h"

/* A live socket's record lives the recovery window plus this margin, and is stored again
 * every RT_CLUSTER_REFRESH_MS (rt.c's sweep timer), so that the record of a node killed
 * at any moment outlives it by at least the window. */
#define RT_CLUSTER_MARGIN_MS 10000

/* The last position seen in a namespace (for a new socket's "position at connect"), and
 * the last one delivered here (broker thread only). */
typedef struct cl_nsp {
    struct cl_nsp *next;
    rt_position_t pos;
    rt_position_t delivered;
    char name[];
} cl_nsp_t;

/* The marker room: a recovery publishes to it once its history is read. Live deliveries
 * of a namespace arrive in seq order, but on another connection than the history's
 * answer, so some at or below the history's top may still be on their way; the marker,
 * published after the read, arrives after all of them. Every node subscribes to it (no
 * Socket.IO room starts with this byte in practice). */
static const char marker_room[] = "\x1d";

/* A broadcast kept for a recovery: from history, or held while the history is read. */
typedef struct cl_entry {
    struct cl_entry *next;
    rt_position_t pos;
    uint32_t flags;
    size_t len;
    char payload[];
} cl_entry_t;

typedef struct cl_list {
    cl_entry_t *head, **tail;
} cl_list_t;

struct rt_cluster_recovery {
    rt_cluster_recovery_t *next; /* in cl->pending while holding */
    rt_cluster_t *cl;
    eddy_rt_socket_t *s;
    const char *nsp; /* the namespace's name (lives as long as the layer) */
    char pid[RT_HISTORY_PID_SIZE];
    bool has_offset;
    bool holding;    /* in cl->pending */
    bool subscribed; /* holds a reference on each of names */
    bool failed;     /* out of memory while holding: not recovered */
    bool read;       /* the history is read: resumes once live delivery passed top */
    rt_position_t offset, after, top;
    char *auth;
    size_t auth_len;
    char *record;       /* the record's bytes; names point into it */
    const char **names; /* own room (sid), joined rooms, then the user's pseudo-room */
    size_t nnames;
    char *uroom;
    rt_cluster_restore_t restore;
    cl_list_t history, held;
};

struct rt_cluster {
    eddy_rt_t *rt;
    eddy_server_t *srv;
    rt_broker_t *b;
    uint32_t window_ms;
    atomic_bool up;
    atomic_bool quiet;
    pthread_mutex_t lock; /* pending, nsps (a leaf under rt.c's table lock) */
    rt_cluster_recovery_t *pending;
    atomic_size_t npending;
    cl_nsp_t *nsps;
};

/* ---------------------------------------------------------------------------------------
 * Positions
 * ------------------------------------------------------------------------------------- */

static cl_nsp_t *nsp_get(rt_cluster_t *cl, const char *name, bool create)
{
    cl_nsp_t *n = cl->nsps;
    while (n != NULL && strcmp(n->name, name) != 0)
        n = n->next;
    if (n == NULL && create) {
        size_t len = strlen(name);
        if ((n = calloc(1, sizeof(*n) + len + 1)) != NULL) {
            memcpy(n->name, name, len + 1);
            n->next = cl->nsps;
            cl->nsps = n;
        }
    }
    return n;
}

/* Advances nsp's known position to pos (a new epoch replaces an old one). */
static void position_seen(rt_cluster_t *cl, const char *nsp, rt_position_t pos)
{
    pthread_mutex_lock(&cl->lock);
    cl_nsp_t *n = nsp_get(cl, nsp, false);
    if (n != NULL && (n->pos.epoch != pos.epoch || pos.seq > n->pos.seq))
        n->pos = pos;
    pthread_mutex_unlock(&cl->lock);
}

rt_position_t rt_cluster_position(rt_cluster_t *cl, const char *nsp)
{
    pthread_mutex_lock(&cl->lock);
    cl_nsp_t *n = nsp_get(cl, nsp, false);
    rt_position_t pos = n != NULL ? n->pos : (rt_position_t){0, 0};
    pthread_mutex_unlock(&cl->lock);
    return pos;
}

static void on_top(rt_broker_t *b, int err, rt_position_t top, const rt_broker_delivery_t *entries,
                   size_t n, void *arg)
{
    char *nsp = arg;
    rt_cluster_t *cl = NULL;
    memcpy(&cl, nsp, sizeof(cl));
    if (top.epoch != 0)
        position_seen(cl, nsp + sizeof(cl), top);
    free(nsp);
}

/* Asks the broker for nsp's position (a read from {0, 0} without rooms answers its top). */
static void position_ask(rt_cluster_t *cl, const char *nsp)
{
    size_t len = strlen(nsp);
    char *arg = malloc(sizeof(cl) + len + 1);
    if (arg == NULL)
        return;
    memcpy(arg, &cl, sizeof(cl));
    memcpy(arg + sizeof(cl), nsp, len + 1);
    if (rt_broker_history(cl->b, nsp, (rt_position_t){0, 0}, NULL, 0, 0, on_top, arg) != 0)
        free(arg);
}

/* ---------------------------------------------------------------------------------------
 * Broker handlers (the broker's thread)
 * ------------------------------------------------------------------------------------- */

static void caught_up(rt_cluster_t *cl, const char *nsp, rt_position_t pos);

static void on_deliver(rt_broker_t *b, const rt_broker_delivery_t *d, void *ud)
{
    rt_cluster_t *cl = ud;
    if (atomic_load(&cl->quiet))
        return;
    position_seen(cl, d->msg.nsp, d->pos);
    if (d->msg.nrooms != 1 || strcmp(d->msg.rooms[0], marker_room) != 0)
        rt_cluster_deliver_local(cl->rt, d);
    caught_up(cl, d->msg.nsp, d->pos);
}

static void presence_sweep(rt_cluster_t *cl);

static void on_state(rt_broker_t *b, const rt_broker_state_event_t *ev, void *ud)
{
    rt_cluster_t *cl = ud;
    bool up = ev->state == RT_BROKER_UP;
    atomic_store(&cl->up, up);
    if (!up) {
        eddy_log(cl->srv, EDDY_LOG_WARNING,
                 "eddy_rt: Redis broker %s: broadcasts are delivered on this node only",
                 ev->state == RT_BROKER_DOWN ? "down" : "recovering");
        return;
    }
    pthread_mutex_lock(&cl->lock);
    size_t n = 0;
    for (cl_nsp_t *it = cl->nsps; it != NULL; it = it->next)
        n++;
    char **names = calloc(n ? n : 1, sizeof(*names));
    size_t k = 0;
    for (cl_nsp_t *it = cl->nsps; names != NULL && it != NULL; it = it->next)
        names[k++] = strdup(it->name);
    pthread_mutex_unlock(&cl->lock);
    for (size_t i = 0; i < k; i++) {
        if (names[i] != NULL)
            position_ask(cl, names[i]);
        free(names[i]);
    }
    free(names);
    if (!atomic_load(&cl->quiet)) {
        rt_cluster_presence_restore(cl->rt);
        presence_sweep(cl);
    }
    if (ev->gap && !atomic_load(&cl->quiet)) {
        eddy_log(cl->srv, EDDY_LOG_WARNING, "eddy_rt: Redis broker back after %llu ms: %s",
                 (unsigned long long)ev->down_ms,
                 cl->window_ms > 0 ? "clients reconnect to recover what they missed"
                                   : "broadcasts of other nodes meanwhile are lost here");
        rt_cluster_gap(cl->rt);
    } else {
        eddy_log(cl->srv, EDDY_LOG_INFO, "eddy_rt: Redis broker up");
    }
}

/* ---------------------------------------------------------------------------------------
 * Lifecycle
 * ------------------------------------------------------------------------------------- */

/* "redis://[[user]:password@]host[:port][/db]" into cfg (strings into buf). */
static int parse_url(const char *url, char *buf, size_t cap, rt_broker_redis_config_t *cfg)
{
    static const char scheme[] = "redis://";
    if (strncmp(url, scheme, sizeof(scheme) - 1) != 0 || strlen(url) >= cap)
        return EDDY_EINVAL;
    strcpy(buf, url + sizeof(scheme) - 1);
    char *host = buf;
    char *at = strrchr(host, '@');
    if (at != NULL) {
        *at = '\0';
        char *colon = strchr(host, ':');
        cfg->password = colon != NULL ? colon + 1 : host;
        host = at + 1;
    }
    char *slash = strchr(host, '/');
    if (slash != NULL) {
        *slash = '\0';
        char *end;
        long db = strtol(slash + 1, &end, 10);
        if (slash[1] != '\0' && (*end != '\0' || db < 0 || db > 65535))
            return EDDY_EINVAL;
        cfg->db = (int)db;
    }
    char *colon = strrchr(host, ':');
    if (colon != NULL && strchr(host, ']') < colon) {
        *colon = '\0';
        char *end;
        long port = strtol(colon + 1, &end, 10);
        if (*end != '\0' || port <= 0 || port > 65535)
            return EDDY_EINVAL;
        cfg->port = (int)port;
    }
    if (host[0] == '[' && host[strlen(host) - 1] == ']') {
        host[strlen(host) - 1] = '\0';
        host++;
    }
    if (host[0] == '\0')
        return EDDY_EINVAL;
    cfg->host = host;
    return 0;
}

static void on_emitted(rt_broker_t *b, const rt_emitter_msg_t *m, void *ud)
{
    rt_cluster_t *cl = ud;
    if (!atomic_load(&cl->quiet))
        rt_cluster_emitted_local(cl->rt, m);
}

/* A redis_url that lists several Redis ("url,url,..."): a sharded broker (rt_broker.h), each
 * shard configured as base but for its URL's address, password and db. NULL (logged): a
 * malformed URL, the same Redis twice, out of memory. */
static rt_broker_t *shards_new(eddy_server_t *srv, const char *urls,
                               const rt_broker_redis_config_t *base, const rt_broker_handlers_t *h,
                               void *ud)
{
    size_t n = 1;
    for (const char *p = urls; *p != '\0'; p++)
        n += *p == ',';
    rt_broker_redis_config_t *cfgs = calloc(n, sizeof(*cfgs));
    char *bufs = malloc(n * 1024);
    rt_broker_t *b = NULL;
    size_t i = 0;
    for (const char *p = urls; cfgs != NULL && bufs != NULL && i < n; i++) {
        const char *end = strchr(p, ',');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        char url[1024];
        cfgs[i] = *base;
        if (len >= sizeof(url))
            break;
        memcpy(url, p, len);
        url[len] = '\0';
        if (parse_url(url, bufs + i * 1024, 1024, &cfgs[i]) != 0)
            break;
        p += len + (end != NULL);
    }
    if (cfgs != NULL && bufs != NULL && i == n) {
        if ((b = rt_broker_shard_redis_new(cfgs, n, h, ud)) != NULL)
            eddy_log(srv, EDDY_LOG_INFO, "eddy_rt: node %s of the cluster on %zu Redis shards",
                     rt_broker_node_id(b), n);
    } else if (cfgs != NULL && bufs != NULL) {
        eddy_log(srv, EDDY_LOG_ERROR, "eddy_rt_new: bad redis_url number %zu of the list", i + 1);
    }
    free(bufs);
    free(cfgs);
    return b;
}

/* Across nodes (rt_xnode.h): commands and listings from any node, this one included. */
static void on_node_request(rt_broker_t *b, const rt_broker_request_t *req, void *ud)
{
    rt_cluster_t *cl = ud;
    if (!atomic_load(&cl->quiet))
        rt_xnode_request(cl->rt, b, req);
}

rt_broker_t *rt_cluster_broker(rt_cluster_t *cl)
{
    return cl->b;
}

rt_cluster_t *rt_cluster_new(eddy_rt_t *rt, const eddy_rt_options_t *opt)
{
    eddy_server_t *srv = eddy_rt_server(rt);
    rt_broker_redis_config_t cfg;
    rt_broker_redis_config_init(&cfg);
    char buf[1024];
    bool sharded = strchr(opt->redis_url, ',') != NULL;
    if (!sharded && parse_url(opt->redis_url, buf, sizeof(buf), &cfg) != 0) {
        eddy_log(srv, EDDY_LOG_ERROR, "eddy_rt_new: bad redis_url (want redis://host[:port][/db])");
        return NULL;
    }
    if (opt->redis_prefix != NULL)
        cfg.prefix = opt->redis_prefix;
    cfg.node_id = opt->node_id;
    cfg.emitter_prefix = opt->redis_emitter_prefix;
    /* Results on the broker's own thread: none is left in a loop's queue at free. */
    cfg.srv = NULL;
    uint64_t age =
        opt->history_max_age_ms ? opt->history_max_age_ms : opt->recovery_max_disconnection_ms;
    if (age > cfg.history_age_ms)
        cfg.history_age_ms = age;
    if (opt->history_max_messages > 0)
        cfg.history_max = opt->history_max_messages;
    /* Nothing reads the broker's history without recovery or history: keep none. */
    cfg.no_history = opt->history_max_messages == 0 && opt->recovery_max_disconnection_ms == 0;
    rt_cluster_t *cl = calloc(1, sizeof(*cl));
    if (cl == NULL)
        return NULL;
    cl->rt = rt;
    cl->srv = srv;
    cl->window_ms = opt->recovery_max_disconnection_ms;
    pthread_mutex_init(&cl->lock, NULL);
    rt_broker_handlers_t h = {.deliver = on_deliver,
                              .state = on_state,
                              .emitted = on_emitted,
                              .request = on_node_request};
    cl->b =
        sharded ? shards_new(srv, opt->redis_url, &cfg, &h, cl) : rt_broker_redis_new(&cfg, &h, cl);
    if (cl->b == NULL) {
        pthread_mutex_destroy(&cl->lock);
        free(cl);
        return NULL;
    }
    if (!sharded)
        eddy_log(srv, EDDY_LOG_INFO, "eddy_rt: node %s of the cluster on Redis %s:%d",
                 rt_broker_node_id(cl->b), cfg.host, cfg.port);
    return cl;
}

void rt_cluster_free(rt_cluster_t *cl)
{
    if (cl == NULL)
        return;
    rt_broker_free(cl->b);
    /* Every recovery got its answer from the broker (EDDY_ECLOSED at the latest). */
    while (cl->nsps != NULL) {
        cl_nsp_t *n = cl->nsps;
        cl->nsps = n->next;
        free(n);
    }
    pthread_mutex_destroy(&cl->lock);
    free(cl);
}

void rt_cluster_quiet(rt_cluster_t *cl)
{
    atomic_store(&cl->quiet, true);
}

bool rt_cluster_up(rt_cluster_t *cl)
{
    return atomic_load(&cl->up);
}

void rt_cluster_status(rt_cluster_t *cl, eddy_rt_broker_status_t *out)
{
    rt_broker_stats_t st;
    char none[1][RT_BROKER_NODE_ID_SIZE]; /* only the count is wanted */
    *out = (eddy_rt_broker_status_t){.clustered = true};
    out->ready = rt_broker_ready(cl->b, &out->round_trip_age_ms);
    out->state = (int)rt_broker_state(cl->b);
    rt_broker_stats(cl->b, &st);
    out->published_total = st.published;
    out->delivered_total = st.delivered;
    out->buffered = st.buffered;
    out->buffered_bytes = st.buffered_bytes;
    out->dropped_total = st.dropped;
    out->reconnects_total = st.reconnects;
    out->gaps_total = st.gaps;
    out->subscriptions = st.subscriptions;
    out->nodes = rt_broker_nodes(cl->b, none, 0);
}

void rt_cluster_interest(rt_cluster_t *cl, const char *nsp, const char *room, bool user, bool on)
{
    char stack[256], *name = (char *)room;
    if (user) {
        size_t len = strlen(room);
        name = len + 2 <= sizeof(stack) ? stack : malloc(len + 2);
        if (name == NULL)
            return;
        name[0] = RT_CLUSTER_USER_PREFIX;
        memcpy(name + 1, room, len + 1);
    }
    if (room == NULL && on) {
        pthread_mutex_lock(&cl->lock);
        nsp_get(cl, nsp, true);
        pthread_mutex_unlock(&cl->lock);
        if (atomic_load(&cl->up))
            position_ask(cl, nsp);
        rt_broker_subscribe(cl->b, nsp, marker_room);
    }
    if (on)
        rt_broker_subscribe(cl->b, nsp, name);
    else
        rt_broker_unsubscribe(cl->b, nsp, name);
    if (name != room && name != stack)
        free(name);
}

int rt_cluster_publish(rt_cluster_t *cl, const char *nsp, const char *const *rooms, size_t nrooms,
                       const char *const *except, size_t nexcept, uint32_t flags,
                       const void *payload, size_t len)
{
    rt_broker_msg_t m = {nsp, rooms, nrooms, except, nexcept, flags, payload, len};
    return rt_broker_publish(cl->b, &m, 0, NULL, NULL);
}

/* ---------------------------------------------------------------------------------------
 * Session records: "nsp\0epoch\0seq\0sid\0user\0room\0room\0..."
 * ------------------------------------------------------------------------------------- */

void rt_cluster_session_put(rt_cluster_t *cl, const char *nsp, const char *pid, const char *sid,
                            const char *user, const char *const *rooms, size_t nrooms,
                            rt_position_t at, uint64_t ttl_ms)
{
    char nums[48];
    int nl = snprintf(nums, sizeof(nums), "%llu%c%llu", (unsigned long long)at.epoch, '\0',
                      (unsigned long long)at.seq);
    size_t total =
        strlen(nsp) + 1 + (size_t)nl + 1 + strlen(sid) + 1 + (user ? strlen(user) : 0) + 1;
    for (size_t i = 0; i < nrooms; i++)
        total += strlen(rooms[i]) + 1;
    char stack[1024];
    char *p = total <= sizeof(stack) ? stack : malloc(total);
    if (p == NULL)
        return;
    size_t at_ = 0;
#define PUT(str, n)                                                                                \
    do {                                                                                           \
        memcpy(p + at_, (str), (n));                                                               \
        at_ += (n);                                                                                \
        p[at_++] = '\0';                                                                           \
    } while (0)
    PUT(nsp, strlen(nsp));
    memcpy(p + at_, nums, (size_t)nl + 1);
    at_ += (size_t)nl + 1;
    PUT(sid, strlen(sid));
    PUT(user ? user : "", user ? strlen(user) : 0);
    for (size_t i = 0; i < nrooms; i++)
        PUT(rooms[i], strlen(rooms[i]));
#undef PUT
    rt_broker_session_put(cl->b, pid, p, at_,
                          ttl_ms ? ttl_ms : cl->window_ms + RT_CLUSTER_MARGIN_MS);
    if (p != stack)
        free(p);
}

static void on_dropped(rt_broker_t *b, int err, const void *data, size_t len, void *arg)
{
}

void rt_cluster_session_drop(rt_cluster_t *cl, const char *pid)
{
    rt_broker_session_take(cl->b, pid, 0, on_dropped, NULL);
}

/* ---------------------------------------------------------------------------------------
 * Recovery
 * ------------------------------------------------------------------------------------- */

static void list_init(cl_list_t *l)
{
    l->head = NULL;
    l->tail = &l->head;
}

static bool list_add(cl_list_t *l, rt_position_t pos, uint32_t flags, const void *p, size_t len)
{
    cl_entry_t *e = malloc(sizeof(*e) + len);
    if (e == NULL)
        return false;
    e->next = NULL;
    e->pos = pos;
    e->flags = flags;
    e->len = len;
    memcpy(e->payload, p, len);
    *l->tail = e;
    l->tail = &e->next;
    return true;
}

static void list_free(cl_list_t *l)
{
    for (cl_entry_t *e = l->head, *next; e != NULL; e = next) {
        next = e->next;
        free(e);
    }
    list_init(l);
}

static void pending_remove(rt_cluster_recovery_t *r)
{
    rt_cluster_t *cl = r->cl;
    pthread_mutex_lock(&cl->lock);
    if (r->holding) {
        for (rt_cluster_recovery_t **it = &cl->pending; *it != NULL; it = &(*it)->next) {
            if (*it == r) {
                *it = r->next;
                break;
            }
        }
        r->holding = false;
        atomic_fetch_sub(&cl->npending, 1);
    }
    pthread_mutex_unlock(&cl->lock);
}

void rt_cluster_recovery_free(rt_cluster_recovery_t *r)
{
    if (r == NULL)
        return;
    pending_remove(r);
    if (r->subscribed) {
        for (size_t i = 0; i < r->nnames; i++)
            rt_broker_unsubscribe(r->cl->b, r->nsp, r->names[i]);
    }
    list_free(&r->history);
    list_free(&r->held);
    free(r->names);
    free(r->uroom);
    free(r->record);
    free(r->auth);
    free(r);
}

/* Hands the outcome to rt.c; while the layer is being freed (the broker answers what is
 * left with EDDY_ECLOSED), there is no loop to finish on: s is dropped here. */
static void finish(rt_cluster_recovery_t *r, const rt_cluster_restore_t *restore)
{
    if (atomic_load(&r->cl->quiet)) {
        eddy_rt_socket_unref(r->s);
        rt_cluster_recovery_free(r);
        return;
    }
    rt_cluster_resume(r->s, r, restore, r->auth, r->auth_len);
}

static void fail(rt_cluster_recovery_t *r)
{
    finish(r, NULL);
}

/* Splits the record into r's names and restore. */
static bool record_decode(rt_cluster_recovery_t *r, const void *data, size_t len)
{
    if (len == 0 || ((const char *)data)[len - 1] != '\0' || (r->record = malloc(len)) == NULL)
        return false;
    memcpy(r->record, data, len);
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += r->record[i] == '\0';
    if (n < 5)
        return false;
    const char **f = calloc(n, sizeof(*f));
    if (f == NULL)
        return false;
    for (size_t i = 0, k = 0, start = 0; i < len; i++) {
        if (r->record[i] == '\0') {
            f[k++] = r->record + start;
            start = i + 1;
        }
    }
    char *end;
    r->restore.at.epoch = strtoull(f[1], &end, 10);
    r->restore.at.seq = strtoull(f[2], &end, 10);
    if (strcmp(f[0], r->nsp) != 0 || f[3][0] == '\0') {
        free(f);
        return false;
    }
    /* names: sid, rooms (f[5..n)), then the user's pseudo-room. */
    r->restore.pid = r->pid;
    r->restore.sid = f[3];
    r->restore.user = f[4][0] != '\0' ? f[4] : NULL;
    size_t nrooms = n - 5;
    r->names = calloc(nrooms + 2, sizeof(*r->names));
    if (r->names == NULL) {
        free(f);
        return false;
    }
    r->names[0] = f[3];
    for (size_t i = 0; i < nrooms; i++)
        r->names[1 + i] = f[5 + i];
    r->nnames = 1 + nrooms;
    if (r->restore.user != NULL) {
        size_t ul = strlen(r->restore.user);
        if ((r->uroom = malloc(ul + 2)) == NULL) {
            free(f);
            return false;
        }
        r->uroom[0] = RT_CLUSTER_USER_PREFIX;
        memcpy(r->uroom + 1, r->restore.user, ul + 1);
        r->names[r->nnames++] = r->uroom;
    }
    r->restore.rooms = r->names + 1;
    r->restore.nrooms = nrooms;
    free(f);
    return true;
}

static void on_history(rt_broker_t *b, int err, rt_position_t top,
                       const rt_broker_delivery_t *entries, size_t n, void *arg)
{
    rt_cluster_recovery_t *r = arg;
    if (err != 0) {
        eddy_log(r->cl->srv, EDDY_LOG_INFO, "eddy_rt: recovery of %s not possible (%s)",
                 r->restore.sid,
                 err == RT_HISTORY_GAP ? "history does not cover it" : eddy_strerror(err));
        fail(r);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (!list_add(&r->history, entries[i].pos, entries[i].msg.flags, entries[i].msg.payload,
                      entries[i].msg.payload_len)) {
            fail(r);
            return;
        }
    }
    rt_cluster_t *cl = r->cl;
    pthread_mutex_lock(&cl->lock);
    r->top = top;
    r->read = true;
    cl_nsp_t *ns = nsp_get(cl, r->nsp, false);
    bool now = ns != NULL && ns->delivered.epoch == top.epoch && ns->delivered.seq >= top.seq;
    pthread_mutex_unlock(&cl->lock);
    /* Results and deliveries run on this (the broker's) thread, one at a time: until the
     * marker (or any later broadcast) is delivered, what arrives is held. */
    static const char stored[] = {0, 0, 0, 0, 0, 0, 0, 0};
    const char *rooms[] = {marker_room};
    if (now || rt_cluster_publish(cl, r->nsp, rooms, 1, NULL, 0, EDDY_RT_VOLATILE, stored,
                                  sizeof(stored)) != 0) {
        r->read = false;
        finish(r, &r->restore);
    }
}

/* nsp's live delivery reached pos: recoveries whose history's top it passed resume. */
static void caught_up(rt_cluster_t *cl, const char *nsp, rt_position_t pos)
{
    rt_cluster_recovery_t *ready[16];
    size_t n = 0;
    pthread_mutex_lock(&cl->lock);
    cl_nsp_t *ns = nsp_get(cl, nsp, false);
    if (ns != NULL)
        ns->delivered = pos;
    for (rt_cluster_recovery_t *r = cl->pending; r != NULL && n < 16; r = r->next) {
        if (r->read && strcmp(r->nsp, nsp) == 0 &&
            (pos.epoch != r->top.epoch || pos.seq >= r->top.seq)) {
            r->read = false;
            ready[n++] = r;
        }
    }
    pthread_mutex_unlock(&cl->lock);
    for (size_t i = 0; i < n; i++)
        finish(ready[i], &ready[i]->restore);
}

static void on_take(rt_broker_t *b, int err, const void *data, size_t len, void *arg)
{
    rt_cluster_recovery_t *r = arg;
    rt_cluster_t *cl = r->cl;
    if (err != 0 || !record_decode(r, data, len)) {
        fail(r);
        return;
    }
    /* The record's stream starts at its connect: an older offset of the same epoch means
     * the client received nothing of this session; another epoch is a gap. */
    rt_position_t at = r->restore.at;
    if (r->has_offset) {
        if (at.epoch != 0 && r->offset.epoch != at.epoch) {
            fail(r);
            return;
        }
        r->after = r->offset;
        if (at.epoch == r->offset.epoch && at.seq > r->after.seq)
            r->after.seq = at.seq;
    } else if (at.epoch == 0) {
        fail(r);
        return;
    } else {
        r->after = at;
    }
    /* Hold first, then subscribe, then read: the read runs once the subscriptions are
     * active, so whatever is not in history arrives live, and is held until the merge. */
    pthread_mutex_lock(&cl->lock);
    r->next = cl->pending;
    cl->pending = r;
    r->holding = true;
    atomic_fetch_add(&cl->npending, 1);
    pthread_mutex_unlock(&cl->lock);
    for (size_t i = 0; i < r->nnames; i++)
        rt_broker_subscribe(cl->b, r->nsp, r->names[i]);
    r->subscribed = true;
    if (rt_broker_history(cl->b, r->nsp, r->after, r->names, r->nnames, 0, on_history, r) != 0)
        fail(r);
}

bool rt_cluster_recover(rt_cluster_t *cl, eddy_rt_socket_t *s, const char *auth, size_t len)
{
    rt_json_value_t obj, v;
    char pid[RT_HISTORY_PID_SIZE], off[RT_OFFSET_SIZE];
    if (rt_json_parse(auth, len, &obj) != 0 || rt_json_find(&obj, "pid", 3, &v) != 0 ||
        v.type != RT_JSON_STRING)
        return false;
    long n = rt_json_unescape(&v, pid, sizeof(pid) - 1);
    if (n != RT_HISTORY_PID_LEN)
        return false;
    pid[n] = '\0';
    rt_position_t pos = {0, 0};
    bool has_offset = false;
    if (rt_json_find(&obj, "offset", 6, &v) == 0) {
        long m = v.type == RT_JSON_STRING ? rt_json_unescape(&v, off, sizeof(off) - 1) : -1;
        if (m < 0 || rt_offset_parse(off, (size_t)m, &pos) != 0) {
            rt_cluster_session_drop(cl, pid); /* single use, as a failed recovery */
            return false;
        }
        has_offset = true;
    }
    rt_cluster_recovery_t *r = calloc(1, sizeof(*r));
    if (r == NULL || (r->auth = malloc(len + 1)) == NULL) {
        free(r);
        return false;
    }
    memcpy(r->auth, auth, len);
    r->auth[len] = '\0';
    r->auth_len = len;
    r->cl = cl;
    r->s = s;
    r->nsp = eddy_rt_nsp_name(eddy_rt_socket_nsp(s));
    strcpy(r->pid, pid);
    r->has_offset = has_offset;
    r->offset = pos;
    list_init(&r->history);
    list_init(&r->held);
    if (rt_broker_session_take(cl->b, pid, 0, on_take, r) != 0) {
        rt_cluster_recovery_free(r);
        return false;
    }
    return true;
}

static bool named(const rt_cluster_recovery_t *r, const char *name)
{
    for (size_t i = 0; i < r->nnames; i++) {
        if (strcmp(r->names[i], name) == 0)
            return true;
    }
    return false;
}

void rt_cluster_hold(rt_cluster_t *cl, const rt_broker_delivery_t *d)
{
    if (atomic_load(&cl->npending) == 0)
        return;
    pthread_mutex_lock(&cl->lock);
    for (rt_cluster_recovery_t *r = cl->pending; r != NULL; r = r->next) {
        if (strcmp(r->nsp, d->msg.nsp) != 0)
            continue;
        bool reached = d->msg.nrooms == 0;
        for (size_t i = 0; !reached && i < d->msg.nrooms; i++)
            reached = named(r, d->msg.rooms[i]);
        for (size_t i = 0; reached && i < d->msg.nexcept; i++)
            reached = !named(r, d->msg.except[i]);
        if (reached &&
            !list_add(&r->held, d->pos, d->msg.flags, d->msg.payload, d->msg.payload_len))
            r->failed = true;
    }
    pthread_mutex_unlock(&cl->lock);
}

void rt_cluster_replay(rt_cluster_recovery_t *r, eddy_rt_socket_t *s)
{
    /* Stop holding first: what the broker delivers from now on (under the same table
     * lock as this) reaches the registered socket live. */
    pending_remove(r);
    for (cl_entry_t *e = r->history.head; e != NULL; e = e->next) {
        if (!(e->flags & EDDY_RT_VOLATILE))
            rt_cluster_send_stored(s, e->pos, e->payload, e->len, e->flags);
    }
    for (cl_entry_t *e = r->held.head; e != NULL; e = e->next) {
        if (e->pos.epoch == r->top.epoch && e->pos.seq > r->top.seq)
            rt_cluster_send_stored(s, e->pos, e->payload, e->len, e->flags);
    }
}

bool rt_cluster_recovery_failed(const rt_cluster_recovery_t *r)
{
    return r->failed;
}

/* ---------------------------------------------------------------------------------------
 * Presence across nodes
 * ------------------------------------------------------------------------------------- */

void rt_cluster_presence(rt_cluster_t *cl, const char *nsp, const char *room, const char *sid,
                         const char *user, bool on, bool listed)
{
    /* Queued in call order: under rt.c's table lock, a later leave always follows its join. */
    if (on) {
        if (listed)
            rt_broker_presence_set(cl->b, nsp, RT_CLUSTER_ROOMS_INDEX, room, "", 0);
        rt_broker_presence_set(cl->b, nsp, room, sid, user, user != NULL ? strlen(user) : 0);
    } else {
        rt_broker_presence_del(cl->b, nsp, room, sid);
        if (listed)
            rt_broker_presence_del(cl->b, nsp, RT_CLUSTER_ROOMS_INDEX, room);
    }
}

int rt_cluster_presence_get(rt_cluster_t *cl, const char *nsp, const char *room,
                            rt_broker_presence_cb cb, void *arg)
{
    return rt_broker_presence_get(cl->b, nsp, room, 0, cb, arg);
}

const char *rt_cluster_node_id(rt_cluster_t *cl)
{
    return rt_broker_node_id(cl->b);
}

size_t rt_cluster_nodes(rt_cluster_t *cl, char (*ids)[RT_BROKER_NODE_ID_SIZE], size_t max)
{
    return rt_broker_nodes(cl->b, ids, max);
}

void rt_cluster_presence_forget(rt_cluster_t *cl, const char *nsp, const char *room,
                                const char *sid)
{
    if (sid != NULL)
        rt_broker_presence_del(cl->b, nsp, room, sid);
    else
        rt_broker_presence_del(cl->b, nsp, RT_CLUSTER_ROOMS_INDEX, room);
}

/* A presence read of the sweep: its namespace's name after the cluster pointer, then (for a
 * room's read) the room's name. */
typedef struct sweep_arg {
    rt_cluster_t *cl;
    char *room; /* NULL: the rooms index */
    char nsp[];
} sweep_arg_t;

static void sweep_read(rt_cluster_t *cl, const char *nsp, const char *room);

/* The broker's thread: this node's entries that are no longer true go. */
static void on_sweep(rt_broker_t *b, int err, const rt_broker_presence_t *entries, size_t n,
                     void *arg)
{
    sweep_arg_t *a = arg;
    const char *self = rt_broker_node_id(a->cl->b);
    for (size_t i = 0; err == 0 && !atomic_load(&a->cl->quiet) && i < n; i++) {
        if (strcmp(entries[i].node, self) != 0)
            continue;
        if (a->room == NULL)
            sweep_read(a->cl, a->nsp, entries[i].member);
        else
            rt_cluster_presence_check(a->cl->rt, a->nsp, a->room, entries[i].member);
    }
    if (err == 0 && a->room != NULL && !atomic_load(&a->cl->quiet))
        rt_cluster_presence_check(a->cl->rt, a->nsp, a->room, NULL);
    free(a);
}

static void sweep_read(rt_cluster_t *cl, const char *nsp, const char *room)
{
    size_t nl = strlen(nsp) + 1, rl = room != NULL ? strlen(room) + 1 : 0;
    sweep_arg_t *a = malloc(sizeof(*a) + nl + rl);
    if (a == NULL)
        return;
    a->cl = cl;
    memcpy(a->nsp, nsp, nl);
    a->room = room != NULL ? memcpy(a->nsp + nl, room, rl) : NULL;
    if (rt_broker_presence_get(cl->b, nsp, room != NULL ? room : RT_CLUSTER_ROOMS_INDEX, 0,
                               on_sweep, a) != 0)
        free(a);
}

/* Reads back this node's entries (rooms index, then each room it lists for this node) and
 * forgets those that are no longer true (broker thread, on UP). */
static void presence_sweep(rt_cluster_t *cl)
{
    pthread_mutex_lock(&cl->lock);
    size_t n = 0;
    for (cl_nsp_t *it = cl->nsps; it != NULL; it = it->next)
        n++;
    char **names = calloc(n ? n : 1, sizeof(*names));
    size_t k = 0;
    for (cl_nsp_t *it = cl->nsps; names != NULL && it != NULL; it = it->next)
        names[k++] = strdup(it->name);
    pthread_mutex_unlock(&cl->lock);
    for (size_t i = 0; i < k; i++) {
        if (names[i] != NULL)
            sweep_read(cl, names[i], NULL);
        free(names[i]);
    }
    free(names);
}

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

/* A live socket's record sits in its node's hash, which outlives the node's last heartbeat
 * (a kill -9) by its lease plus the recovery window plus this margin. */
#define RT_CLUSTER_MARGIN_MS 10000

/* The last position seen in a namespace (for a new socket's "position at connect"), and
 * the last one delivered here (broker thread only). */
typedef struct cl_nsp {
    struct cl_nsp *next;
    rt_position_t pos;
    rt_position_t delivered;
    size_t part; /* the broker's part that owns it (rt_broker_part()) */
    bool repair; /* a presence write of it was refused: rt_cluster_presence_repair() */
    char name[];
} cl_nsp_t;

/* A presence request of a restore or a sweep, waiting for room in the broker's queue
 * ("Presence resync"). Its strings follow it in the same block. */
typedef enum cl_op_kind { OP_SET, OP_DEL, OP_READ } cl_op_kind_t;
typedef struct cl_op {
    struct cl_op *next;
    cl_op_kind_t kind;
    bool listed;      /* OP_SET: the room's index entry too */
    const char *room; /* OP_READ: NULL for the rooms index */
    const char *sid;  /* OP_DEL: NULL for room's index entry */
    const char *user; /* OP_SET: NULL for none */
    char nsp[];
} cl_op_t;

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
    uint64_t *skip; /* [first, last] pairs: positions it got during an outage */
    size_t nskip;
};

/* A disconnected socket's record waiting for the positions of the broadcasts it got during
 * an outage (see "Exactly once after an outage"). */
typedef struct cl_deferred {
    struct cl_deferred *next;
    const char *nsp;
    uint64_t from, to, ttl_ms;
    size_t split, len; /* the skip list goes at split (after the seq) in record[0..len) */
    char pid[RT_HISTORY_PID_SIZE];
    char record[];
} cl_deferred_t;

/* A broadcast this node delivered locally during an outage (RT_CLUSTER_DELIVERED): its
 * position once the broker answered (epoch 0 until then, or if it never did). */
typedef struct cl_dl {
    const char *nsp;
    rt_position_t pos;
    size_t part; /* the broker's part of nsp */
} cl_dl_t;

struct rt_cluster {
    eddy_rt_t *rt;
    eddy_server_t *srv;
    rt_broker_t *b;
    uint32_t window_ms;
    /* The broker's parts (rt_broker.h "Parts") not UP, one bit each (all of them until they
     * report UP); all: the bits of the broker's parts. A part's outage concerns only the
     * namespaces it owns: they deliver locally, and its gap closes only their transports. */
    _Atomic uint64_t down;
    _Atomic uint64_t all;
    _Atomic uint64_t been_up; /* the parts that have reported UP once: a start is no outage */
    size_t nparts; /* rt_broker_parts() when all was computed (0: not yet; broker thread) */
    atomic_bool quiet;
    pthread_mutex_t lock; /* pending, nsps (a leaf under rt.c's table lock) */
    rt_cluster_recovery_t *pending;
    atomic_size_t npending;
    cl_nsp_t *nsps;
    /* Exactly once after an outage (cl->lock): dl[i] is local broadcast number dl_base + i;
     * dl_waiting counts those without an answer yet (part_waiting per part); while a part's
     * bit is in gap_pending, its gap waits for its own (live deliveries of its namespaces
     * are not fanned out, their recoveries wait in waiting, records of their sockets that
     * disconnected in deferred). */
    cl_dl_t *dl;
    size_t dl_n, dl_cap, dl_waiting;
    size_t part_waiting[RT_BROKER_PARTS_MAX];
    uint64_t dl_base;
    uint64_t dl_open; /* parts with numbered broadcasts whose gap was not handled yet: while
                       * none, the next outage starts afresh */
    _Atomic uint64_t gap_pending;
    cl_deferred_t *deferred;
    rt_cluster_recovery_t *waiting;
    /* Presence writes the broker refused (queue full): some namespace's repair flag is set;
     * the broker's drop count when rt_cluster_presence_repair() last looked; repairs made. */
    atomic_bool repair;
    _Atomic uint64_t repair_dropped;
    _Atomic uint64_t repairs;
    /* Presence resync requests waiting for room in the broker's queue ("Presence resync":
     * ops under cl->lock, sent in order under pump_lock); pump_set: the pump's timer is set. */
    struct cl_op *ops, **ops_tail;
    size_t queue_max;
    pthread_mutex_t pump_lock;
    atomic_bool pump_set;
};

size_t rt_cluster_queue_max;

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
            n->part = rt_broker_part(cl->b, name);
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
 * The broker's parts (rt_broker.h "Parts"): each namespace is up, down or waits for its
 * gap with the part that owns it
 * ------------------------------------------------------------------------------------- */

static uint64_t part_bit(rt_cluster_t *cl, const char *nsp)
{
    return (uint64_t)1 << rt_broker_part(cl->b, nsp);
}

size_t rt_cluster_part(rt_cluster_t *cl, const char *nsp)
{
    return rt_broker_part(cl->b, nsp);
}

const char *rt_cluster_part_name(rt_cluster_t *cl, const char *nsp)
{
    return rt_broker_part_name(cl->b, rt_broker_part(cl->b, nsp));
}

/* Cheap while every part is up (one atomic load): the hot path of every broadcast. */
bool rt_cluster_nsp_up(rt_cluster_t *cl, const char *nsp)
{
    uint64_t down = atomic_load(&cl->down) & cl->all;
    return down == 0 || (down & part_bit(cl, nsp)) == 0;
}

/* True while nsp's part waits for its gap (see "Exactly once after an outage"). */
static bool gap_waits(rt_cluster_t *cl, const char *nsp)
{
    uint64_t pending = atomic_load(&cl->gap_pending);
    return pending != 0 && (pending & part_bit(cl, nsp)) != 0;
}

/* ---------------------------------------------------------------------------------------
 * Broker handlers (the broker's thread)
 * ------------------------------------------------------------------------------------- */

static void caught_up(rt_cluster_t *cl, const char *nsp, rt_position_t pos);
static void gap_begin(rt_cluster_t *cl, size_t part);
static void dl_forget(rt_cluster_t *cl);
static int publish_delivered(rt_cluster_t *cl, const rt_broker_msg_t *m);
static void deferred_write(rt_cluster_t *cl, uint64_t parts);
static void fail(rt_cluster_recovery_t *r);

static void on_deliver(rt_broker_t *b, const rt_broker_delivery_t *d, void *ud)
{
    rt_cluster_t *cl = ud;
    if (atomic_load(&cl->quiet))
        return;
    /* Without history a broadcast has no position (epoch 0): nothing to track or resume. */
    bool positioned = d->pos.epoch != 0;
    if (positioned)
        position_seen(cl, d->msg.nsp, d->pos);
    /* While a gap waits, local clients get nothing live: their transports are about to
     * close, and what they missed must start after their last offset (history). */
    if ((d->msg.nrooms != 1 || strcmp(d->msg.rooms[0], marker_room) != 0) &&
        !gap_waits(cl, d->msg.nsp))
        rt_cluster_deliver_local(cl->rt, d);
    if (positioned)
        caught_up(cl, d->msg.nsp, d->pos);
}

static void sweep_read(rt_cluster_t *cl, const char *nsp, const char *room);
static bool op_push(rt_cluster_t *cl, cl_op_kind_t kind, const char *nsp, const char *room,
                    const char *sid, const char *user, bool listed);
static void ops_drop_part(rt_cluster_t *cl, size_t part);
static void pump_kick(rt_cluster_t *cl);

/* Calls fn for each namespace known here on the broker's part part, on a copy of their
 * names (fn may take cl->lock). */
static void each_nsp(rt_cluster_t *cl, size_t part, void (*fn)(rt_cluster_t *cl, const char *nsp))
{
    pthread_mutex_lock(&cl->lock);
    size_t n = 0;
    for (cl_nsp_t *it = cl->nsps; it != NULL; it = it->next)
        n++;
    char **names = calloc(n ? n : 1, sizeof(*names));
    size_t k = 0;
    for (cl_nsp_t *it = cl->nsps; names != NULL && it != NULL; it = it->next) {
        if (it->part == part)
            names[k++] = strdup(it->name);
    }
    pthread_mutex_unlock(&cl->lock);
    for (size_t i = 0; i < k; i++) {
        if (names[i] != NULL)
            fn(cl, names[i]);
        free(names[i]);
    }
    free(names);
}

/* Reads back this node's presence entries in nsp (its rooms index, then each room listed
 * for this node) and forgets those that are no longer true: after an outage, or a restart
 * under the same node id after a kill -9 (broker thread). */
static void presence_sweep(rt_cluster_t *cl, const char *nsp)
{
    if (op_push(cl, OP_READ, nsp, NULL, NULL, NULL, false))
        pump_kick(cl);
}

/* For the logs of a shard's state: " on shard NAME (namespaces /a, /b)" (the namespaces
 * known here on it), "" for a broker of one part. */
static void part_names(rt_cluster_t *cl, const rt_broker_state_event_t *ev, char *out, size_t cap)
{
    out[0] = '\0';
    if (ev->part_name == NULL)
        return;
    size_t len = (size_t)snprintf(out, cap, " on shard %s (namespaces", ev->part_name);
    const char *sep = " ";
    pthread_mutex_lock(&cl->lock);
    for (cl_nsp_t *it = cl->nsps; it != NULL && len < cap; it = it->next) {
        if (it->part == ev->part) {
            len += (size_t)snprintf(out + len, cap - len, "%s%s", sep, it->name);
            sep = ", ";
        }
    }
    pthread_mutex_unlock(&cl->lock);
    if (len < cap)
        snprintf(out + len, cap - len, "%s)", sep[0] == ' ' ? " none yet" : "");
}

static uint64_t parts_bits(size_t parts)
{
    return parts >= 64 ? ~(uint64_t)0 : ((uint64_t)1 << parts) - 1;
}

/* A Redis Cluster broker whose seeds did not answer at the start has one part until the
 * topology is known, then one per master (rt_broker.h "Parts"), before their first state
 * events; and a slot moved to another master (moved) moves its namespaces to that master's
 * part: the namespaces known here are placed again (broker thread, one event at a time). */
static void parts_refresh(rt_cluster_t *cl, rt_broker_t *b, bool moved)
{
    size_t parts = rt_broker_parts(b);
    if (parts == cl->nparts && !moved)
        return;
    pthread_mutex_lock(&cl->lock);
    for (cl_nsp_t *it = cl->nsps; it != NULL; it = it->next)
        it->part = rt_broker_part(b, it->name);
    pthread_mutex_unlock(&cl->lock);
    if (parts == cl->nparts)
        return;
    atomic_store(&cl->all, parts_bits(parts));
    if (cl->nparts != 0)
        eddy_log(cl->srv, EDDY_LOG_INFO, "eddy_rt: the broker has %zu parts now (was %zu)", parts,
                 cl->nparts);
    cl->nparts = parts;
}

static void on_state(rt_broker_t *b, const rt_broker_state_event_t *ev, void *ud)
{
    rt_cluster_t *cl = ud;
    parts_refresh(cl, b, ev->moved);
    bool up = ev->state == RT_BROKER_UP;
    size_t part = ev->part < RT_BROKER_PARTS_MAX ? ev->part : 0;
    uint64_t bit = (uint64_t)1 << part;
    bool first = !(atomic_load(&cl->been_up) & bit);
    if (up) {
        atomic_fetch_and(&cl->down, ~bit);
        atomic_fetch_or(&cl->been_up, bit);
    } else {
        atomic_fetch_or(&cl->down, bit);
    }
    char names[512];
    part_names(cl, ev, names, sizeof(names));
    if (!up) {
        /* Its UP event restores and sweeps afresh. */
        ops_drop_part(cl, part);
        if (ev->state == RT_BROKER_DOWN)
            dl_forget(cl);
        /* Connected at the start, subscribing: nothing was lost, a few ms of this. */
        if (first && ev->state == RT_BROKER_RECOVERING)
            eddy_log(cl->srv, EDDY_LOG_INFO,
                     "eddy_rt: Redis broker connected%s, subscribing: broadcasts are delivered "
                     "on this node only until it is up",
                     names);
        else if (ev->refused)
            /* Connected: what Redis still runs (a plain PUBLISH) still crosses. */
            eddy_log(cl->srv, EDDY_LOG_WARNING,
                     "eddy_rt: Redis broker down%s: it refuses this node's writes, so broadcasts "
                     "are delivered on this node and may not reach the others",
                     names);
        else
            eddy_log(cl->srv, EDDY_LOG_WARNING,
                     "eddy_rt: Redis broker %s%s: broadcasts are delivered on this node only",
                     ev->state == RT_BROKER_DOWN ? "down" : "recovering", names);
        return;
    }
    each_nsp(cl, part, position_ask);
    if (!atomic_load(&cl->quiet)) {
        rt_cluster_presence_restore(cl->rt, part, NULL);
        each_nsp(cl, part, presence_sweep);
        pump_kick(cl);
    }
    if (ev->gap && !atomic_load(&cl->quiet)) {
        if (ev->moved)
            eddy_log(cl->srv, EDDY_LOG_INFO, "eddy_rt: a slot moved to Redis broker%s: %s", names,
                     cl->window_ms > 0 ? "clients reconnect to recover what they missed"
                                       : "broadcasts of other nodes meanwhile are lost here");
        else
            eddy_log(cl->srv, EDDY_LOG_WARNING, "eddy_rt: Redis broker back after %llu ms%s: %s",
                     (unsigned long long)ev->down_ms, names,
                     cl->window_ms > 0 ? "clients reconnect to recover what they missed"
                                       : "broadcasts of other nodes meanwhile are lost here");
        gap_begin(cl, part);
    } else {
        eddy_log(cl->srv, EDDY_LOG_INFO, "eddy_rt: Redis broker up%s", names);
    }
}

/* ---------------------------------------------------------------------------------------
 * Lifecycle
 * ------------------------------------------------------------------------------------- */

static void on_emitted(rt_broker_t *b, const rt_emitter_msg_t *m, void *ud)
{
    rt_cluster_t *cl = ud;
    if (!atomic_load(&cl->quiet))
        rt_cluster_emitted_local(cl->rt, m);
}

/* A redis_url that lists several Redis ("url,url,..."): a sharded broker (rt_broker.h), each
 * shard configured as base but for its URL's address, password, db and sentinels. NULL
 * (logged): a malformed URL, the same Redis twice, out of memory. */
static rt_broker_t *shards_new(eddy_server_t *srv, const char *urls,
                               const rt_broker_redis_config_t *base, const rt_broker_handlers_t *h,
                               void *ud)
{
    size_t n = 1;
    for (const char *p = urls; p[rt_broker_url_len(p)] != '\0'; p += rt_broker_url_len(p) + 1)
        n++;
    rt_broker_redis_config_t *cfgs = calloc(n, sizeof(*cfgs));
    rt_broker_url_t *parsed = calloc(n, sizeof(*parsed));
    rt_broker_t *b = NULL;
    size_t i = 0;
    for (const char *p = urls; cfgs != NULL && parsed != NULL && i < n; i++) {
        size_t len = rt_broker_url_len(p);
        cfgs[i] = *base;
        if (rt_broker_url_parse(srv, p, len, &parsed[i], &cfgs[i]) != 0)
            break;
        if (cfgs[i].ncluster_nodes > 0) {
            eddy_log(srv, EDDY_LOG_ERROR,
                     "eddy_rt_new: a redis+cluster:// URL stands alone (a cluster shards itself)");
            break;
        }
        p += len + 1;
    }
    if (cfgs != NULL && parsed != NULL && i == n) {
        if ((b = rt_broker_shard_redis_new(cfgs, n, h, ud)) != NULL)
            eddy_log(srv, EDDY_LOG_INFO, "eddy_rt: node %s of the cluster on %zu Redis shards",
                     rt_broker_node_id(b), n);
    } else if (cfgs != NULL && parsed != NULL) {
        eddy_log(srv, EDDY_LOG_ERROR, "eddy_rt_new: bad redis_url number %zu of the list", i + 1);
    }
    free(parsed);
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
    rt_broker_url_t url;
    size_t url_len = rt_broker_url_len(opt->redis_url);
    bool sharded = opt->redis_url[url_len] != '\0';
    if (!sharded && rt_broker_url_parse(srv, opt->redis_url, url_len, &url, &cfg) != 0)
        return NULL;
    if (opt->redis_prefix != NULL)
        cfg.prefix = opt->redis_prefix;
    cfg.node_id = opt->node_id;
    cfg.heartbeat_ms = opt->redis_heartbeat_interval_ms;
    cfg.lease_ms = opt->redis_heartbeat_timeout_ms;
    cfg.emitter_prefix = opt->redis_emitter_prefix;
    cfg.session_linger_ms = (uint64_t)opt->recovery_max_disconnection_ms + RT_CLUSTER_MARGIN_MS;
    /* Results on the broker's own thread: none is left in a loop's queue at free. Its
     * lines go to the server's log, at its level. */
    cfg.srv = NULL;
    cfg.log = srv;
    uint64_t age =
        opt->history_max_age_ms ? opt->history_max_age_ms : opt->recovery_max_disconnection_ms;
    if (age > cfg.history_age_ms)
        cfg.history_age_ms = age;
    if (opt->history_max_messages > 0)
        cfg.history_max = opt->history_max_messages;
    if (rt_cluster_queue_max > 0)
        cfg.queue_max = rt_cluster_queue_max;
    /* Nothing reads the broker's history without recovery or history: keep none. */
    cfg.no_history = opt->history_max_messages == 0 && opt->recovery_max_disconnection_ms == 0;
    rt_cluster_t *cl = calloc(1, sizeof(*cl));
    if (cl == NULL)
        return NULL;
    cl->rt = rt;
    cl->srv = srv;
    cl->window_ms = opt->recovery_max_disconnection_ms;
    atomic_init(&cl->down, ~(uint64_t)0); /* every part, until it reports UP */
    atomic_init(&cl->all, ~(uint64_t)0);  /* until the first state event (parts_refresh()) */
    pthread_mutex_init(&cl->lock, NULL);
    pthread_mutex_init(&cl->pump_lock, NULL);
    cl->ops_tail = &cl->ops;
    cl->queue_max = cfg.queue_max;
    rt_broker_handlers_t h = {.deliver = on_deliver,
                              .state = on_state,
                              .emitted = on_emitted,
                              .request = on_node_request};
    cl->b = sharded                  ? shards_new(srv, opt->redis_url, &cfg, &h, cl)
            : cfg.ncluster_nodes > 0 ? rt_broker_cluster_new(&cfg, &h, cl)
                                     : rt_broker_redis_new(&cfg, &h, cl);
    if (cl->b == NULL) {
        pthread_mutex_destroy(&cl->pump_lock);
        pthread_mutex_destroy(&cl->lock);
        free(cl);
        return NULL;
    }
    size_t parts = rt_broker_parts(cl->b);
    if (!sharded && cfg.ncluster_nodes > 0 && rt_broker_part_name(cl->b, 0) == NULL)
        eddy_log(srv, EDDY_LOG_INFO,
                 "eddy_rt: node %s of the cluster on a Redis Cluster whose topology is not read "
                 "yet",
                 rt_broker_node_id(cl->b));
    else if (!sharded && cfg.ncluster_nodes > 0)
        eddy_log(srv, EDDY_LOG_INFO,
                 "eddy_rt: node %s of the cluster on a Redis Cluster of %zu masters",
                 rt_broker_node_id(cl->b), parts);
    else if (!sharded && cfg.sentinel_master != NULL)
        eddy_log(srv, EDDY_LOG_INFO,
                 "eddy_rt: node %s of the cluster on Redis master %s (sentinels: %zu)",
                 rt_broker_node_id(cl->b), cfg.sentinel_master, cfg.nsentinels);
    else if (!sharded)
        eddy_log(srv, EDDY_LOG_INFO, "eddy_rt: node %s of the cluster on Redis %s:%d",
                 rt_broker_node_id(cl->b), cfg.host, cfg.port);
    return cl;
}

/* At free: records held back by a gap's wait are written with what is known, recoveries
 * that waited are dropped (the layer is quiet). */
static void cl_flush(rt_cluster_t *cl)
{
    pthread_mutex_lock(&cl->lock);
    rt_cluster_recovery_t *waiting = cl->waiting;
    cl->waiting = NULL;
    pthread_mutex_unlock(&cl->lock);
    while (waiting != NULL) {
        rt_cluster_recovery_t *r = waiting;
        waiting = r->next;
        fail(r);
    }
    deferred_write(cl, ~(uint64_t)0);
}

void rt_cluster_free(rt_cluster_t *cl)
{
    if (cl == NULL)
        return;
    cl_flush(cl);
    rt_broker_free(cl->b);
    /* Every recovery got its answer from the broker (EDDY_ECLOSED at the latest). */
    while (cl->nsps != NULL) {
        cl_nsp_t *n = cl->nsps;
        cl->nsps = n->next;
        free(n);
    }
    free(cl->dl);
    for (cl_op_t *op = cl->ops, *next; op != NULL; op = next) {
        next = op->next;
        free(op);
    }
    pthread_mutex_destroy(&cl->pump_lock);
    pthread_mutex_destroy(&cl->lock);
    free(cl);
}

void rt_cluster_quiet(rt_cluster_t *cl)
{
    atomic_store(&cl->quiet, true);
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
    out->master_switches_total = st.master_switches;
    out->presence_repairs_total = atomic_load(&cl->repairs);
    out->messages_missed_total = st.missed;
    out->retried_total = st.retried;
    out->slots_moved_total = st.slots_moved;
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
        /* A namespace made after the broker came up (the layer's namespaces are made after
         * it starts) gets what the UP event did for the others. */
        if (rt_cluster_nsp_up(cl, nsp)) {
            position_ask(cl, nsp);
            presence_sweep(cl, nsp);
        }
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
    if ((flags & RT_CLUSTER_DELIVERED) && cl->window_ms > 0)
        return publish_delivered(cl, &m);
    return rt_broker_publish(cl->b, &m, 0, NULL, NULL);
}

/* ---------------------------------------------------------------------------------------
 * Exactly once after an outage
 *
 * While the broker is down, local members get this node's broadcasts at once, without
 * offset (RT_CLUSTER_DELIVERED), and each is numbered here (its "local number"). When the
 * broker is back, every local transport is closed so that clients recover what other
 * nodes published meanwhile, from their last offset; the history also holds this node's
 * own broadcasts, which they already have. So the gap waits until the broker answered
 * every numbered broadcast with its position, and the record of a socket that disconnects
 * lists the positions of those it got (numbered from its connect, s->dl_mark, to its
 * disconnect): its recovery, on any node, skips them. Meanwhile live deliveries are not
 * fanned out here (clients take them from history), recoveries wait, and the records of
 * sockets that disconnected during the outage wait to be written with their list.
 * ------------------------------------------------------------------------------------- */

static void gap_check(rt_cluster_t *cl);

static void on_dl_published(rt_broker_t *b, int err, rt_position_t pos, void *arg)
{
    uint64_t *at = arg;
    rt_cluster_t *cl = NULL;
    memcpy(&cl, at + 1, sizeof(cl));
    pthread_mutex_lock(&cl->lock);
    if (at[0] >= cl->dl_base && at[0] - cl->dl_base < cl->dl_n) {
        cl_dl_t *e = &cl->dl[at[0] - cl->dl_base];
        if (err == 0)
            e->pos = pos;
        cl->part_waiting[e->part]--;
    }
    cl->dl_waiting--;
    pthread_mutex_unlock(&cl->lock);
    free(at);
    gap_check(cl);
}

static int publish_delivered(rt_cluster_t *cl, const rt_broker_msg_t *m)
{
    uint64_t *arg = malloc(sizeof(uint64_t) + sizeof(cl));
    size_t part = rt_broker_part(cl->b, m->nsp);
    pthread_mutex_lock(&cl->lock);
    if (arg != NULL && cl->dl_n == cl->dl_cap) {
        size_t cap = cl->dl_cap ? 2 * cl->dl_cap : 64;
        cl_dl_t *grown = realloc(cl->dl, cap * sizeof(*grown));
        if (grown != NULL) {
            cl->dl = grown;
            cl->dl_cap = cap;
        }
    }
    if (arg == NULL || cl->dl_n == cl->dl_cap) {
        /* Not numbered: its recovery may send it again (logged once per outage). */
        pthread_mutex_unlock(&cl->lock);
        free(arg);
        eddy_log(cl->srv, EDDY_LOG_WARNING,
                 "eddy_rt: out of memory: a broadcast may reach "
                 "its local members twice after the outage");
        return rt_broker_publish(cl->b, m, 0, NULL, NULL);
    }
    arg[0] = cl->dl_base + cl->dl_n;
    memcpy(arg + 1, &cl, sizeof(cl));
    cl->dl[cl->dl_n++] = (cl_dl_t){m->nsp, {0, 0}, part};
    cl->dl_waiting++;
    cl->part_waiting[part]++;
    cl->dl_open |= (uint64_t)1 << part;
    pthread_mutex_unlock(&cl->lock);
    int rc = rt_broker_publish(cl->b, m, 0, on_dl_published, arg);
    if (rc != 0) {
        pthread_mutex_lock(&cl->lock);
        cl->dl_waiting--;
        cl->part_waiting[part]--;
        pthread_mutex_unlock(&cl->lock);
        free(arg);
        gap_check(cl);
    }
    return rc;
}

uint64_t rt_cluster_mark(rt_cluster_t *cl)
{
    pthread_mutex_lock(&cl->lock);
    uint64_t mark = cl->dl_base + cl->dl_n;
    pthread_mutex_unlock(&cl->lock);
    return mark;
}

/* A new outage: the numbers of the last ones served their gaps (their sockets were
 * closed). */
static void dl_forget(rt_cluster_t *cl)
{
    pthread_mutex_lock(&cl->lock);
    if (cl->dl_open == 0 && cl->dl_waiting == 0) {
        cl->dl_base += cl->dl_n;
        cl->dl_n = 0;
    }
    pthread_mutex_unlock(&cl->lock);
}

/* The positions of nsp's broadcasts numbered [from, to) as ";a-b,c,..." (NULL: none).
 * cl->lock held. */
static char *skip_list(rt_cluster_t *cl, const char *nsp, uint64_t from, uint64_t to)
{
    size_t cap = 0, len = 0;
    char *out = NULL;
    uint64_t first = 0, last = 0;
    bool open = false;
    for (uint64_t i = from < cl->dl_base ? cl->dl_base : from; i <= to; i++) {
        const cl_dl_t *e = i < to ? &cl->dl[i - cl->dl_base] : NULL;
        bool take = e != NULL && e->pos.epoch != 0 && strcmp(e->nsp, nsp) == 0;
        if (take && open && e->pos.seq == last + 1) {
            last = e->pos.seq;
            continue;
        }
        if (open && (take || e == NULL)) {
            if (cap - len < 48) {
                char *grown = realloc(out, cap = cap ? 2 * cap : 256);
                if (grown == NULL) {
                    free(out);
                    return NULL;
                }
                out = grown;
            }
            int n = first == last ? snprintf(out + len, cap - len, "%c%llu", len ? ',' : ';',
                                             (unsigned long long)first)
                                  : snprintf(out + len, cap - len, "%c%llu-%llu", len ? ',' : ';',
                                             (unsigned long long)first, (unsigned long long)last);
            len += (size_t)n;
            open = false;
        }
        if (take) {
            first = last = e->pos.seq;
            open = true;
        }
    }
    return out;
}

/* True if nsp's broadcasts numbered [from, to) include one the broker has not answered. */
static bool dl_unanswered(rt_cluster_t *cl, const char *nsp, uint64_t from, uint64_t to)
{
    if (cl->dl_waiting == 0)
        return false;
    for (uint64_t i = from < cl->dl_base ? cl->dl_base : from; i < to; i++) {
        const cl_dl_t *e = &cl->dl[i - cl->dl_base];
        if (e->pos.epoch == 0 && strcmp(e->nsp, nsp) == 0)
            return true;
    }
    return false;
}

/* Stores record[0..len) with skips inserted at split. */
static void record_store(rt_cluster_t *cl, const char *pid, const char *record, size_t len,
                         size_t split, const char *skips, uint64_t ttl_ms)
{
    size_t sl = skips != NULL ? strlen(skips) : 0;
    char *p = sl ? malloc(len + sl) : (char *)record;
    if (p == NULL) {
        p = (char *)record; /* without its list: the recovery may send some twice */
        sl = 0;
    } else if (sl) {
        memcpy(p, record, split);
        memcpy(p + split, skips, sl);
        memcpy(p + split + sl, record + split, len - split);
    }
    rt_broker_session_put(cl->b, pid, p, len + sl, ttl_ms);
    if (p != record)
        free(p);
}

/* Writes the records held back of the namespaces of parts (a mask of part bits), with the
 * positions known now. */
static void deferred_write(rt_cluster_t *cl, uint64_t parts)
{
    pthread_mutex_lock(&cl->lock);
    for (cl_deferred_t **it = &cl->deferred; *it != NULL;) {
        cl_deferred_t *d = *it;
        if ((parts & part_bit(cl, d->nsp)) == 0) {
            it = &d->next;
            continue;
        }
        *it = d->next;
        it = &cl->deferred; /* the list may change while unlocked: start again */
        char *skips = skip_list(cl, d->nsp, d->from, d->to);
        pthread_mutex_unlock(&cl->lock);
        record_store(cl, d->pid, d->record, d->len, d->split, skips, d->ttl_ms);
        free(skips);
        free(d);
        pthread_mutex_lock(&cl->lock);
    }
    pthread_mutex_unlock(&cl->lock);
}

static void on_take(rt_broker_t *b, int err, const void *data, size_t len, void *arg);

/* Every numbered broadcast of part is answered: write the records of its namespaces that
 * waited, start their recoveries that waited (after those writes: one queue), close the
 * local transports of its namespaces. */
static void gap_run(rt_cluster_t *cl, size_t part)
{
    uint64_t bit = (uint64_t)1 << part;
    rt_cluster_recovery_t *waiting = NULL;
    pthread_mutex_lock(&cl->lock);
    for (rt_cluster_recovery_t **it = &cl->waiting; *it != NULL;) {
        rt_cluster_recovery_t *r = *it;
        if (part_bit(cl, r->nsp) == bit) {
            *it = r->next;
            r->next = waiting;
            waiting = r;
        } else {
            it = &r->next;
        }
    }
    cl->dl_open &= ~bit;
    pthread_mutex_unlock(&cl->lock);
    deferred_write(cl, bit);
    while (waiting != NULL) {
        rt_cluster_recovery_t *r = waiting;
        waiting = r->next;
        r->next = NULL;
        if (rt_broker_session_take(cl->b, r->pid, 0, on_take, r) != 0)
            fail(r);
    }
    rt_cluster_gap(cl->rt, part);
}

/* Runs the gap of each part that waits for one, is up and has every numbered broadcast
 * answered. */
static void gap_check(rt_cluster_t *cl)
{
    for (;;) {
        size_t go = RT_BROKER_PARTS_MAX;
        pthread_mutex_lock(&cl->lock);
        uint64_t pending = atomic_load(&cl->gap_pending), down = atomic_load(&cl->down);
        for (size_t p = 0; p < RT_BROKER_PARTS_MAX && go == RT_BROKER_PARTS_MAX; p++) {
            uint64_t bit = (uint64_t)1 << p;
            if ((pending & bit) != 0 && (down & bit) == 0 && cl->part_waiting[p] == 0)
                go = p;
        }
        if (go < RT_BROKER_PARTS_MAX)
            atomic_fetch_and(&cl->gap_pending, ~((uint64_t)1 << go));
        pthread_mutex_unlock(&cl->lock);
        if (go == RT_BROKER_PARTS_MAX)
            return;
        gap_run(cl, go);
    }
}

static void gap_begin(rt_cluster_t *cl, size_t part)
{
    if (cl->window_ms == 0) {
        rt_cluster_gap(cl->rt, part);
        return;
    }
    pthread_mutex_lock(&cl->lock);
    atomic_fetch_or(&cl->gap_pending, (uint64_t)1 << part);
    size_t waiting = cl->part_waiting[part];
    pthread_mutex_unlock(&cl->lock);
    if (waiting > 0)
        eddy_log(cl->srv, EDDY_LOG_INFO,
                 "eddy_rt: %zu broadcasts delivered here during the outage wait for their "
                 "positions before clients recover",
                 waiting);
    gap_check(cl);
}

/* ---------------------------------------------------------------------------------------
 * Session records: "nsp\0epoch\0seq[;skips]\0sid\0user\0room\0room\0..."
 * ------------------------------------------------------------------------------------- */

/* The last record of a socket that disconnected: with the positions of the broadcasts it
 * got from this node during an outage (numbered from mark on), or kept until they are
 * known (see "Exactly once after an outage"). */
static void record_disconnected(rt_cluster_t *cl, const char *nsp, const char *pid,
                                const char *record, size_t len, size_t split, uint64_t ttl_ms,
                                uint64_t mark)
{
    pthread_mutex_lock(&cl->lock);
    uint64_t to = cl->dl_base + cl->dl_n;
    if (dl_unanswered(cl, nsp, mark, to)) {
        cl_deferred_t *d = malloc(sizeof(*d) + len);
        if (d != NULL) {
            *d = (cl_deferred_t){cl->deferred, nsp, mark, to, ttl_ms, split, len, {0}};
            snprintf(d->pid, sizeof(d->pid), "%s", pid);
            memcpy(d->record, record, len);
            cl->deferred = d;
            pthread_mutex_unlock(&cl->lock);
            return;
        }
    }
    char *skips = skip_list(cl, nsp, mark, to);
    pthread_mutex_unlock(&cl->lock);
    record_store(cl, pid, record, len, split, skips, ttl_ms);
    free(skips);
}

void rt_cluster_session_put(rt_cluster_t *cl, const char *nsp, const char *pid, const char *sid,
                            const char *user, const char *const *rooms, size_t nrooms,
                            rt_position_t at, uint64_t ttl_ms, uint64_t mark)
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
    if (ttl_ms > 0 && cl->window_ms > 0)
        record_disconnected(cl, nsp, pid, p, at_, strlen(nsp) + 1 + (size_t)nl, ttl_ms, mark);
    else
        rt_broker_session_put(cl->b, pid, p, at_, ttl_ms);
    if (p != stack)
        free(p);
}

/* With several parts, a session record lives on the part of its pid: drawn until that is
 * nsp's (each draw 1/N likely, N the number of parts; one draw with one part), so that no
 * other part's outage keeps nsp's clients from recovering. Past the bound (about e^-16 for
 * a fair share), a pid of another part: recoverable while that part is up. */
void rt_cluster_session_pid(rt_cluster_t *cl, const char *nsp, char pid[RT_HISTORY_PID_SIZE])
{
    size_t want = rt_broker_part(cl->b, nsp), tries = 16 * rt_broker_parts(cl->b);
    do
        rt_broker_session_pid(cl->b, pid);
    while (rt_broker_part(cl->b, pid) != want && --tries > 0);
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
    free(r->skip);
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

/* "a-b,c,...": the positions the socket got during an outage (see record_disconnected()). */
static bool skips_decode(rt_cluster_recovery_t *r, const char *p)
{
    size_t n = 1;
    for (const char *c = p; *c; c++)
        n += *c == ',';
    if ((r->skip = calloc(2 * n, sizeof(*r->skip))) == NULL)
        return false;
    for (size_t i = 0; i < n; i++) {
        char *end;
        r->skip[2 * i] = r->skip[2 * i + 1] = strtoull(p, &end, 10);
        if (*end == '-')
            r->skip[2 * i + 1] = strtoull(end + 1, &end, 10);
        if (end == p || (*end != ',' && *end != '\0'))
            return false;
        p = end + (*end == ',');
    }
    r->nskip = n;
    return true;
}

/* True if the socket got pos already (from its node, during an outage). */
static bool skipped(const rt_cluster_recovery_t *r, rt_position_t pos)
{
    if (pos.epoch != r->restore.at.epoch)
        return false;
    for (size_t i = 0; i < r->nskip; i++) {
        if (pos.seq >= r->skip[2 * i] && pos.seq <= r->skip[2 * i + 1])
            return true;
    }
    return false;
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
    if (*end == ';' && !skips_decode(r, end + 1)) {
        free(f);
        return false;
    }
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
        eddy_log(cl->srv, EDDY_LOG_INFO, "eddy_rt: recovery of pid %s not possible (%s)", r->pid,
                 err != 0 ? eddy_strerror(err) : "malformed record");
        fail(r);
        return;
    }
    /* The record's stream starts at its connect: an older offset of the same epoch means
     * the client received nothing of this session; another epoch is a gap. */
    rt_position_t at = r->restore.at;
    if (r->has_offset) {
        if (at.epoch != 0 && r->offset.epoch != at.epoch) {
            eddy_log(cl->srv, EDDY_LOG_INFO,
                     "eddy_rt: recovery of %s not possible (its offset is of another epoch: "
                     "%llu, not %llu)",
                     r->restore.sid, (unsigned long long)r->offset.epoch,
                     (unsigned long long)at.epoch);
            fail(r);
            return;
        }
        r->after = r->offset;
        if (at.epoch == r->offset.epoch && at.seq > r->after.seq)
            r->after.seq = at.seq;
    } else if (at.epoch == 0) {
        eddy_log(cl->srv, EDDY_LOG_INFO,
                 "eddy_rt: recovery of %s not possible (no offset, no position at connect)",
                 r->restore.sid);
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
    /* During a gap's wait, recoveries start once the records it holds back are written. */
    pthread_mutex_lock(&cl->lock);
    bool wait = gap_waits(cl, r->nsp);
    if (wait) {
        r->next = cl->waiting;
        cl->waiting = r;
    }
    pthread_mutex_unlock(&cl->lock);
    if (wait)
        return true;
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
        if (!(e->flags & EDDY_RT_VOLATILE) && !skipped(r, e->pos))
            rt_cluster_send_stored(s, e->pos, e->payload, e->len, e->flags);
    }
    for (cl_entry_t *e = r->held.head; e != NULL; e = e->next) {
        if (e->pos.epoch == r->top.epoch && e->pos.seq > r->top.seq && !skipped(r, e->pos))
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

/* A presence write (or a sweep's read) of nsp was refused (the broker's queue full, out of
 * memory): Redis no longer tells the truth about this node's members there until nsp is
 * repaired. cl->lock is a leaf under rt.c's table lock, which the caller may hold. */
static void repair_mark(rt_cluster_t *cl, const char *nsp)
{
    pthread_mutex_lock(&cl->lock);
    cl_nsp_t *n = nsp_get(cl, nsp, true);
    if (n != NULL)
        n->repair = true;
    pthread_mutex_unlock(&cl->lock);
    atomic_store(&cl->repair, true);
}

void rt_cluster_presence_repair(rt_cluster_t *cl)
{
    if (!atomic_load(&cl->repair) || atomic_load(&cl->quiet))
        return;
    /* A resync under way goes first (it may well cover the marked namespaces). */
    pthread_mutex_lock(&cl->lock);
    bool resyncing = cl->ops != NULL;
    pthread_mutex_unlock(&cl->lock);
    if (resyncing)
        return;
    /* The queue has room again once a whole period passed without a drop. */
    rt_broker_stats_t st;
    rt_broker_stats(cl->b, &st);
    if (atomic_exchange(&cl->repair_dropped, st.dropped) != st.dropped)
        return;
    atomic_store(&cl->repair, false);
    pthread_mutex_lock(&cl->lock);
    size_t n = 0;
    for (cl_nsp_t *it = cl->nsps; it != NULL; it = it->next)
        n += it->repair;
    char **names = calloc(n ? n : 1, sizeof(*names));
    size_t k = 0;
    for (cl_nsp_t *it = cl->nsps; names != NULL && it != NULL; it = it->next) {
        /* A part that is not up gets the same restore and sweep when it comes back up. */
        if (!it->repair || !rt_cluster_nsp_up(cl, it->name))
            continue;
        if ((names[k] = strdup(it->name)) == NULL)
            break;
        it->repair = false;
        k++;
    }
    if (names == NULL || k < n)
        atomic_store(&cl->repair, true); /* the rest on the next period */
    pthread_mutex_unlock(&cl->lock);
    for (size_t i = 0; i < k; i++) {
        /* Drops during the repair mark the namespace again. */
        rt_cluster_presence_restore(cl->rt, 0, names[i]);
        presence_sweep(cl, names[i]); /* and the pump starts */
        uint64_t total = atomic_fetch_add(&cl->repairs, 1) + 1;
        eddy_log(cl->srv, EDDY_LOG_INFO,
                 "eddy_rt: presence of namespace %s re-recorded in Redis after dropped writes "
                 "(repairs: %llu)",
                 names[i], (unsigned long long)total);
        free(names[i]);
    }
    free(names);
}

void rt_cluster_presence(rt_cluster_t *cl, const char *nsp, const char *room, const char *sid,
                         const char *user, bool on, bool listed)
{
    /* Queued in call order: under rt.c's table lock, a later leave always follows its join. */
    int rc = 0;
    if (on) {
        if (listed)
            rc |= rt_broker_presence_set(cl->b, nsp, RT_CLUSTER_ROOMS_INDEX, room, "", 0);
        rc |= rt_broker_presence_set(cl->b, nsp, room, sid, user, user != NULL ? strlen(user) : 0);
    } else {
        rc |= rt_broker_presence_del(cl->b, nsp, room, sid);
        if (listed)
            rc |= rt_broker_presence_del(cl->b, nsp, RT_CLUSTER_ROOMS_INDEX, room);
    }
    if (rc != 0)
        repair_mark(cl, nsp);
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
    if (op_push(cl, OP_DEL, nsp, room, sid, NULL, false))
        pump_kick(cl);
}

void rt_cluster_presence_resync(rt_cluster_t *cl, const char *nsp, const char *room,
                                const char *sid, const char *user, bool listed)
{
    op_push(cl, OP_SET, nsp, room, sid, user, listed);
}

/* A presence read of the sweep: its namespace's name after the cluster pointer, then (for a
 * room's read) the room's name. */
typedef struct sweep_arg {
    rt_cluster_t *cl;
    char *room; /* NULL: the rooms index */
    char nsp[];
} sweep_arg_t;

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
            op_push(a->cl, OP_READ, a->nsp, entries[i].member, NULL, NULL, false);
        else
            rt_cluster_presence_check(a->cl->rt, a->nsp, a->room, entries[i].member);
    }
    if (err == 0 && a->room != NULL && !atomic_load(&a->cl->quiet))
        rt_cluster_presence_check(a->cl->rt, a->nsp, a->room, NULL);
    if (err == 0 && a->room == NULL)
        pump_kick(a->cl);
    free(a);
}

static void sweep_read(rt_cluster_t *cl, const char *nsp, const char *room)
{
    size_t nl = strlen(nsp) + 1, rl = room != NULL ? strlen(room) + 1 : 0;
    sweep_arg_t *a = malloc(sizeof(*a) + nl + rl);
    if (a == NULL) {
        repair_mark(cl, nsp);
        return;
    }
    a->cl = cl;
    memcpy(a->nsp, nsp, nl);
    a->room = room != NULL ? memcpy(a->nsp + nl, room, rl) : NULL;
    if (rt_broker_presence_get(cl->b, nsp, room != NULL ? room : RT_CLUSTER_ROOMS_INDEX, 0,
                               on_sweep, a) != 0) {
        free(a);
        repair_mark(cl, nsp);
    }
}

/* ---------------------------------------------------------------------------------------
 * Presence resync: the restore and the sweep of a reconnect or a repair, paced
 *
 * A restore writes every local membership again, a sweep reads back every room this node
 * is listed in and deletes what is no longer true: as many requests as the node has
 * memberships. Handed to the broker at once they overflow its bounded queue as soon as
 * they outnumber it (on a reconnect they are made on the broker's own thread, which cannot
 * drain the queue meanwhile): the drops mark the namespace for a repair, whose restore
 * overflows again, for ever (measured: 200 rooms against a 48-request queue, 4 repairs and
 * 2,291 drops in 8 s, never right). So they wait here, in order, and the pump hands them
 * on while the queue is under half full; the sweep's requests go after the restore's,
 * so it also removes what the restore re-recorded after a leave.
 * ------------------------------------------------------------------------------------- */

#define PUMP_BATCH    1024 /* requests per run of the pump: a loop's turn stays short */
#define PUMP_RETRY_MS 5    /* the next run after one that sent something */
#define PUMP_WAIT_MS  50   /* ... after one that found the queue over half full */

static bool op_push(rt_cluster_t *cl, cl_op_kind_t kind, const char *nsp, const char *room,
                    const char *sid, const char *user, bool listed)
{
    size_t nl = strlen(nsp) + 1, rl = room != NULL ? strlen(room) + 1 : 0;
    size_t sl = sid != NULL ? strlen(sid) + 1 : 0, ul = user != NULL ? strlen(user) + 1 : 0;
    cl_op_t *op = malloc(sizeof(*op) + nl + rl + sl + ul);
    if (op == NULL) {
        repair_mark(cl, nsp);
        return false;
    }
    char *p = op->nsp + nl;
    memcpy(op->nsp, nsp, nl);
    op->room = room != NULL ? memcpy(p, room, rl) : NULL;
    op->sid = sid != NULL ? memcpy(p + rl, sid, sl) : NULL;
    op->user = user != NULL ? memcpy(p + rl + sl, user, ul) : NULL;
    op->kind = kind;
    op->listed = listed;
    op->next = NULL;
    pthread_mutex_lock(&cl->lock);
    *cl->ops_tail = op;
    cl->ops_tail = &op->next;
    pthread_mutex_unlock(&cl->lock);
    return true;
}

/* The waiting requests of the namespaces on part go: it is down, and its UP event
 * restores and sweeps afresh. */
static void ops_drop_part(rt_cluster_t *cl, size_t part)
{
    cl_op_t *dropped = NULL;
    pthread_mutex_lock(&cl->lock);
    cl->ops_tail = &cl->ops;
    while (*cl->ops_tail != NULL) {
        cl_op_t *op = *cl->ops_tail;
        if (rt_broker_part(cl->b, op->nsp) == part) {
            *cl->ops_tail = op->next;
            op->next = dropped;
            dropped = op;
        } else {
            cl->ops_tail = &op->next;
        }
    }
    pthread_mutex_unlock(&cl->lock);
    while (dropped != NULL) {
        cl_op_t *op = dropped;
        dropped = op->next;
        free(op);
    }
}

static size_t op_requests(const cl_op_t *op)
{
    return op->kind == OP_SET && op->listed ? 2 : 1;
}

static void op_send(rt_cluster_t *cl, const cl_op_t *op)
{
    int rc = 0;
    switch (op->kind) {
    case OP_SET:
        if (op->listed)
            rc |= rt_broker_presence_set(cl->b, op->nsp, RT_CLUSTER_ROOMS_INDEX, op->room, "", 0);
        rc |= rt_broker_presence_set(cl->b, op->nsp, op->room, op->sid, op->user,
                                     op->user != NULL ? strlen(op->user) : 0);
        break;
    case OP_DEL:
        rc = op->sid != NULL
                 ? rt_broker_presence_del(cl->b, op->nsp, op->room, op->sid)
                 : rt_broker_presence_del(cl->b, op->nsp, RT_CLUSTER_ROOMS_INDEX, op->room);
        break;
    case OP_READ:
        sweep_read(cl, op->nsp, op->room); /* marks the namespace itself if refused */
        break;
    }
    if (rc != 0)
        repair_mark(cl, op->nsp);
}

static void pump_run(eddy_server_t *srv, uint64_t timer_id, void *arg);

/* The pump runs soon, on a loop (a timer). Any thread. */
static void pump_later(rt_cluster_t *cl, uint64_t ms)
{
    if (atomic_load(&cl->quiet)) /* eddy_rt_free() began: no timer may outlive it */
        return;
    if (!atomic_exchange(&cl->pump_set, true) && eddy_timer_after(cl->srv, ms, pump_run, cl) == 0) {
        atomic_store(&cl->pump_set, false);
        eddy_log(cl->srv, EDDY_LOG_ERROR, "eddy_rt: out of memory: presence resync stalled");
    }
}

static void pump_kick(rt_cluster_t *cl)
{
    pump_later(cl, 0);
}

/* Hands the waiting requests on, in order, while the broker's queue is under half full
 * (pump_lock: one run at a time, so the order holds across runs). */
static void pump_run(eddy_server_t *srv, uint64_t timer_id, void *arg)
{
    rt_cluster_t *cl = arg;
    atomic_store(&cl->pump_set, false);
    if (atomic_load(&cl->quiet))
        return;
    pthread_mutex_lock(&cl->pump_lock);
    rt_broker_stats_t st;
    rt_broker_stats(cl->b, &st);
    size_t half = cl->queue_max / 2;
    size_t budget = st.buffered < half ? half - st.buffered : 0;
    if (budget > PUMP_BATCH)
        budget = PUMP_BATCH;
    cl_op_t *batch = NULL, **tail = &batch;
    pthread_mutex_lock(&cl->lock);
    while (cl->ops != NULL && op_requests(cl->ops) <= budget) {
        cl_op_t *op = cl->ops;
        budget -= op_requests(op);
        cl->ops = op->next;
        op->next = NULL;
        *tail = op;
        tail = &op->next;
    }
    if (cl->ops == NULL)
        cl->ops_tail = &cl->ops;
    bool more = cl->ops != NULL, sent = batch != NULL;
    pthread_mutex_unlock(&cl->lock);
    while (batch != NULL) {
        cl_op_t *op = batch;
        batch = op->next;
        op_send(cl, op);
        free(op);
    }
    pthread_mutex_unlock(&cl->pump_lock);
    if (more)
        pump_later(cl, sent ? PUMP_RETRY_MS : PUMP_WAIT_MS);
}

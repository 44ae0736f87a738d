/* SPDX-License-Identifier: MIT */
/*
 * Redis Cluster (rt_broker.h "Redis Cluster"): the hash slot of a key, the topology read
 * from the seeds at the start, and the sharded broker routed by slot over one Redis broker
 * per master.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "rt_broker.h"
#include "rt_redis_tls.h"

uint16_t rt_broker_crc16(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)(p[i] << 8);
        for (int bit = 0; bit < 8; bit++)
            crc = crc & 0x8000 ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

unsigned rt_broker_keyslot(const char *key, size_t len)
{
    const char *open = memchr(key, '{', len);
    if (open != NULL) {
        size_t rest = len - (size_t)(open + 1 - key);
        const char *close = memchr(open + 1, '}', rest);
        if (close != NULL && close > open + 1)
            return rt_broker_crc16(open + 1, (size_t)(close - open - 1)) % RT_BROKER_CLUSTER_SLOTS;
    }
    return rt_broker_crc16(key, len) % RT_BROKER_CLUSTER_SLOTS;
}

/* What the seeds said: the masters (by address), the shard of each slot, and every node
 * named (masters and replicas, then the seeds), the brokers' list to ask after a failover. */
typedef struct topology {
    rt_broker_addr_t masters[RT_BROKER_SHARDS_MAX];
    size_t nmasters;
    rt_broker_addr_t nodes[RT_BROKER_CLUSTER_NODES_MAX];
    size_t nnodes;
    uint8_t slots[RT_BROKER_CLUSTER_SLOTS];
    char *hosts[RT_BROKER_SHARDS_MAX + RT_BROKER_CLUSTER_NODES_MAX]; /* owned copies */
    size_t nhosts;
    bool unnamed; /* a node's endpoint was "?" (see rt_redis_node_host()) */
} topology_t;

static void topology_free(topology_t *t)
{
    for (size_t i = 0; i < t->nhosts; i++)
        free(t->hosts[i]);
    free(t);
}

/* Index of host:port in list[0..*n), added if new and there is room. -1: full or out of
 * memory. */
static int addr_index(topology_t *t, rt_broker_addr_t *list, size_t *n, size_t max,
                      const char *host, int port)
{
    for (size_t i = 0; i < *n; i++)
        if (list[i].port == port && strcmp(list[i].host, host) == 0)
            return (int)i;
    if (*n == max || t->nhosts == sizeof(t->hosts) / sizeof(t->hosts[0]))
        return -1;
    char *copy = strdup(host);
    if (copy == NULL)
        return -1;
    t->hosts[t->nhosts++] = copy;
    list[*n] = (rt_broker_addr_t){copy, port};
    return (int)(*n)++;
}

/* A node's address in a CLUSTER SLOTS entry (its host: rt_redis_node_host()). */
static bool node_addr(topology_t *t, const redisReply *n, const char *asked, const char **host,
                      int *port)
{
    if ((*host = rt_redis_node_host(n, asked)) == NULL ||
        n->element[1]->type != REDIS_REPLY_INTEGER || n->element[1]->integer <= 0 ||
        n->element[1]->integer > 65535)
        return false;
    *port = (int)n->element[1]->integer;
    t->unnamed |= n->element[0]->type == REDIS_REPLY_STRING && strcmp(n->element[0]->str, "?") == 0;
    return true;
}

/* Reads a CLUSTER SLOTS answer into t. NULL, or what is wrong. */
static const char *topology_read(topology_t *t, const redisReply *r, const char *asked)
{
    static const char *const full = "more than 64 masters or nodes";
    if (r->type == REDIS_REPLY_ERROR)
        return r->str;
    if (r->type != REDIS_REPLY_ARRAY)
        return "unexpected answer to CLUSTER SLOTS";
    bool *covered = calloc(RT_BROKER_CLUSTER_SLOTS, sizeof(bool));
    if (covered == NULL)
        return "out of memory";
    const char *why = NULL;
    for (size_t i = 0; i < r->elements && why == NULL; i++) {
        const redisReply *e = r->element[i];
        const char *host;
        int port;
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            e->element[0]->type != REDIS_REPLY_INTEGER ||
            e->element[1]->type != REDIS_REPLY_INTEGER || e->element[0]->integer < 0 ||
            e->element[1]->integer >= RT_BROKER_CLUSTER_SLOTS ||
            e->element[0]->integer > e->element[1]->integer ||
            !node_addr(t, e->element[2], asked, &host, &port)) {
            why = "unexpected answer to CLUSTER SLOTS";
            break;
        }
        int m = addr_index(t, t->masters, &t->nmasters, RT_BROKER_SHARDS_MAX, host, port);
        if (m < 0) {
            why = full;
            break;
        }
        for (long long s = e->element[0]->integer; s <= e->element[1]->integer; s++) {
            t->slots[s] = (uint8_t)m;
            covered[s] = true;
        }
        for (size_t k = 2; k < e->elements; k++)
            if (node_addr(t, e->element[k], asked, &host, &port) &&
                addr_index(t, t->nodes, &t->nnodes, RT_BROKER_CLUSTER_NODES_MAX, host, port) < 0)
                why = full;
    }
    for (size_t s = 0; s < RT_BROKER_CLUSTER_SLOTS && why == NULL; s++)
        if (!covered[s])
            why = "a slot has no master (is cluster_state ok?)";
    free(covered);
    return why;
}

/* Asks the seeds in turn for the topology, with tls (rediss+cluster; NULL: plain TCP) over
 * TLS, each seed's certificate checked against its host; each seed's failure logged at
 * level. Stops before the next seed once *stop (NULL: never) is true. 0, or -1. */
static int topology_ask(const rt_broker_redis_config_t *cfg, const rt_redis_tls_t *tls,
                        topology_t *t, eddy_log_level_t level, const atomic_bool *stop)
{
    struct timeval tv = {cfg->io_timeout_ms / 1000, (cfg->io_timeout_ms % 1000) * 1000};
    for (size_t i = 0; i < cfg->ncluster_nodes && (stop == NULL || !atomic_load(stop)); i++) {
        const rt_broker_addr_t *seed = &cfg->cluster_nodes[i];
        char why[160] = "";
        redisContext *c = redisConnectWithTimeout(seed->host, seed->port, tv);
        if (c != NULL && !c->err && tls != NULL)
            rt_redis_tls_start(tls, c, seed->host, cfg->io_timeout_ms);
        redisReply *r = NULL;
        if (c == NULL || c->err) {
            snprintf(why, sizeof(why), "%s", c ? c->errstr : "out of memory");
        } else {
            redisSetTimeout(c, tv);
            if (cfg->password != NULL) {
                r = cfg->username ? rt_redis_command(c, "AUTH %s %s", cfg->username, cfg->password)
                                  : rt_redis_command(c, "AUTH %s", cfg->password);
                if (r == NULL || r->type == REDIS_REPLY_ERROR)
                    snprintf(why, sizeof(why), "%s", r ? "AUTH refused" : c->errstr);
                if (r != NULL)
                    freeReplyObject(r);
                r = NULL;
            }
            if (why[0] == '\0' && (r = rt_redis_command(c, "CLUSTER SLOTS")) == NULL)
                snprintf(why, sizeof(why), "%s", c->errstr);
        }
        if (r != NULL) {
            const char *bad = topology_read(t, r, seed->host);
            if (bad != NULL)
                snprintf(why, sizeof(why), "%.150s", bad);
            freeReplyObject(r);
        }
        if (c != NULL)
            rt_redis_free(c);
        if (why[0] == '\0') {
            /* The seeds are asked too after a failover (a cluster may name its nodes by
             * addresses this host cannot reach). */
            for (size_t k = 0; k < cfg->ncluster_nodes; k++)
                addr_index(t, t->nodes, &t->nnodes, RT_BROKER_CLUSTER_NODES_MAX,
                           cfg->cluster_nodes[k].host, cfg->cluster_nodes[k].port);
            if (t->unnamed)
                eddy_log(cfg->log, EDDY_LOG_WARNING,
                         "rt_broker: Redis Cluster seed %s:%d names a node \"?\": host names "
                         "are preferred (cluster-preferred-endpoint-type hostname) and it has "
                         "none (cluster-announce-hostname); reached at its IP address instead",
                         seed->host, seed->port);
            return 0;
        }
        eddy_log(cfg->log, level, "rt_broker: Redis Cluster seed %s:%d: %s", seed->host, seed->port,
                 why);
        t->nmasters = t->nnodes = 0;
    }
    return -1;
}

/* Master i's broker: its name (its slots at the start), first slot, node-wide hash tag (the
 * smallest decimal number in its first slot: every node computes the same) and session tag
 * (random, in its first slot). Both are in the slot the broker follows (cfg.cluster_slot):
 * its lease, node channels and session records move with it, never away from it. */
typedef struct cluster_shard {
    char name[RT_BROKER_SHARD_NAME_SIZE];
    int first_slot;
    char tag[24];
    char session_tag[RT_BROKER_SESSION_TAG_LEN + 1];
} cluster_shard_t;

static void shard_name(const topology_t *t, size_t i, char *out, size_t cap)
{
    size_t len = (size_t)snprintf(out, cap, "slots ");
    for (size_t s = 0; s < RT_BROKER_CLUSTER_SLOTS; s++) {
        if (t->slots[s] != i || (s > 0 && t->slots[s - 1] == i))
            continue;
        size_t end = s;
        while (end + 1 < RT_BROKER_CLUSTER_SLOTS && t->slots[end + 1] == i)
            end++;
        char range[24];
        int n = end > s ? snprintf(range, sizeof(range), "%s%zu-%zu", len > 6 ? "," : "", s, end)
                        : snprintf(range, sizeof(range), "%s%zu", len > 6 ? "," : "", s);
        if (len + (size_t)n + 4 >= cap) {
            snprintf(out + len, cap - len, ",...");
            return;
        }
        memcpy(out + len, range, (size_t)n + 1);
        len += (size_t)n;
    }
}

/* Sets cs->tag to the first of "0", "1", ... in slot, and cs->session_tag to a random one
 * in slot (about 16384 draws each; bounded): 0, or -1 when none was found. */
static int tags_find(cluster_shard_t *cs, unsigned slot)
{
    bool found = false;
    for (unsigned n = 0; n < 4000000 && !found; n++) {
        int len = snprintf(cs->tag, sizeof(cs->tag), "%u", n);
        found = rt_broker_crc16(cs->tag, (size_t)len) % RT_BROKER_CLUSTER_SLOTS == slot;
    }
    if (!found)
        return -1;
    for (unsigned tries = 0; tries < 4000000; tries++) {
        rt_random_chars(cs->session_tag, RT_BROKER_SESSION_TAG_LEN);
        cs->session_tag[RT_BROKER_SESSION_TAG_LEN] = '\0';
        if (rt_broker_crc16(cs->session_tag, RT_BROKER_SESSION_TAG_LEN) % RT_BROKER_CLUSTER_SLOTS ==
            slot)
            return 0;
    }
    return -1;
}

static int shard_describe(const topology_t *t, size_t i, cluster_shard_t *cs)
{
    shard_name(t, i, cs->name, sizeof(cs->name));
    cs->first_slot = -1;
    for (size_t s = 0; s < RT_BROKER_CLUSTER_SLOTS && cs->first_slot < 0; s++)
        if (t->slots[s] == i)
            cs->first_slot = (int)s;
    return cs->first_slot < 0 ? -1 : tags_find(cs, (unsigned)cs->first_slot);
}

/* What a master's broker made while the node runs needs (rt_broker_shard_slots_grow()):
 * the configuration (its strings owned), the topology's nodes (owned), and every part's
 * first slot, which each master's broker reads to name the part of a slot's new master
 * (cluster_parts). */
typedef struct cluster_ctx {
    rt_broker_redis_config_t cfg;
    char *strs[9];
    rt_broker_addr_t *nodes;
    size_t nnodes;
    _Atomic int first_slots[RT_BROKER_SHARDS_MAX];
    atomic_size_t nparts;
} cluster_ctx_t;

static void ctx_free(void *arg)
{
    cluster_ctx_t *ctx = arg;
    for (size_t i = 0; i < sizeof(ctx->strs) / sizeof(ctx->strs[0]); i++)
        free(ctx->strs[i]);
    for (size_t i = 0; ctx->nodes != NULL && i < ctx->nnodes; i++)
        free((char *)ctx->nodes[i].host);
    free(ctx->nodes);
    free(ctx);
}

/* A context for cfg and t's nodes, or NULL (out of memory). */
static cluster_ctx_t *ctx_new(const rt_broker_redis_config_t *cfg, const topology_t *t)
{
    cluster_ctx_t *ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL)
        return NULL;
    ctx->cfg = *cfg;
    const char **owned[] = {
        &ctx->cfg.password,       &ctx->cfg.username,        &ctx->cfg.prefix,
        &ctx->cfg.emitter_prefix, &ctx->cfg.tls_ca_file,     &ctx->cfg.tls_cert_file,
        &ctx->cfg.tls_key_file,   &ctx->cfg.tls_server_name, &ctx->cfg.node_id};
    bool ok = true;
    for (size_t i = 0; i < sizeof(owned) / sizeof(owned[0]); i++) {
        if (*owned[i] == NULL)
            continue;
        ctx->strs[i] = strdup(*owned[i]);
        *owned[i] = ctx->strs[i];
        ok &= ctx->strs[i] != NULL;
    }
    ctx->nodes = calloc(t->nnodes ? t->nnodes : 1, sizeof(*ctx->nodes));
    ok &= ctx->nodes != NULL;
    for (size_t i = 0; ok && i < t->nnodes; i++) {
        ctx->nodes[i] = (rt_broker_addr_t){strdup(t->nodes[i].host), t->nodes[i].port};
        ok = ctx->nodes[i].host != NULL;
        ctx->nnodes += ok;
    }
    if (!ok) {
        ctx_free(ctx);
        return NULL;
    }
    return ctx;
}

typedef struct cluster_make {
    const topology_t *t;
    const cluster_shard_t *shards;
    cluster_ctx_t *ctx;
} cluster_make_t;

/* Master broker i's configuration: ctx's, first slot cs's. */
static rt_broker_redis_config_t master_cfg(cluster_ctx_t *ctx, size_t i, const char *node_id,
                                           const cluster_shard_t *cs)
{
    rt_broker_redis_config_t cfg = ctx->cfg;
    cfg.cluster_nodes = ctx->nodes;
    cfg.ncluster_nodes = ctx->nnodes;
    cfg.cluster_slot = cs->first_slot;
    cfg.cluster_tag = cs->tag;
    cfg.session_tag = cs->session_tag;
    cfg.cluster_parts = ctx->first_slots;
    cfg.ncluster_parts = &ctx->nparts;
    /* A Socket.IO emitter's PUBLISH reaches every node of a cluster: one master listens. */
    if (i > 0) {
        cfg.emitter_prefix = NULL;
        cfg.node_id = node_id;
    }
    return cfg;
}

static rt_broker_t *make_master(size_t i, const char *node_id, const rt_broker_handlers_t *h,
                                void *hud, void *arg)
{
    const cluster_make_t *cm = arg;
    rt_broker_redis_config_t cfg = master_cfg(cm->ctx, i, node_id, &cm->shards[i]);
    cfg.host = cm->t->masters[i].host;
    cfg.port = cm->t->masters[i].port;
    return rt_broker_redis_new(&cfg, h, hud);
}

/* Part i made while the node runs for slot, moved to a master of no part: its hash tags in
 * that slot (its only one known), its first connection a gap. */
static rt_broker_t *grow_master(size_t i, unsigned slot, const char *node_id,
                                const rt_broker_handlers_t *h, void *hud, void *arg)
{
    cluster_ctx_t *ctx = arg;
    cluster_shard_t cs = {.first_slot = (int)slot};
    bool found = tags_find(&cs, slot) == 0;
    if (!found || ctx->nnodes == 0) {
        eddy_log(ctx->cfg.log, EDDY_LOG_ERROR, "rt_broker: no hash tag found for slot %u", slot);
        return NULL;
    }
    rt_broker_redis_config_t cfg = master_cfg(ctx, i, node_id, &cs);
    cfg.host = ctx->nodes[0].host; /* not used: the broker asks who serves slot */
    cfg.port = ctx->nodes[0].port;
    cfg.cluster_joined = true;
    rt_broker_t *b = rt_broker_redis_new(&cfg, h, hud);
    if (b != NULL) {
        atomic_store(&ctx->first_slots[i], (int)slot);
        atomic_store(&ctx->nparts, i + 1);
        eddy_log(ctx->cfg.log, EDDY_LOG_NOTICE,
                 "rt_broker: Redis Cluster: part %zu made for slot %u, moved to a master that "
                 "joined while this node runs",
                 i, slot);
    }
    return b;
}

/* The sharded broker over the masters of t, with handlers h and ud; NULL (logged). */
static rt_broker_t *cluster_build(const rt_broker_redis_config_t *cfg, const topology_t *t,
                                  const rt_broker_handlers_t *h, void *ud)
{
    cluster_shard_t *shards = calloc(RT_BROKER_SHARDS_MAX, sizeof(*shards));
    cluster_ctx_t *ctx = ctx_new(cfg, t);
    const char *names[RT_BROKER_SHARDS_MAX];
    if (shards == NULL || ctx == NULL) {
        free(shards);
        if (ctx != NULL)
            ctx_free(ctx);
        return NULL;
    }
    bool ok = true;
    for (size_t i = 0; i < t->nmasters && ok; i++) {
        ok = shard_describe(t, i, &shards[i]) == 0;
        names[i] = shards[i].name;
        atomic_store(&ctx->first_slots[i], shards[i].first_slot);
    }
    atomic_store(&ctx->nparts, t->nmasters);
    if (!ok)
        eddy_log(cfg->log, EDDY_LOG_ERROR, "rt_broker: no hash tag found for a master's slots");
    cluster_make_t cm = {t, shards, ctx};
    rt_broker_t *b = ok ? rt_broker_shard_slots_new(names, t->nmasters, t->slots, cfg->prefix,
                                                    make_master, &cm, h, ud)
                        : NULL;
    if (b != NULL) {
        rt_broker_shard_slots_grow(b, grow_master, ctx, ctx_free);
        for (size_t i = 0; i < t->nmasters; i++)
            eddy_log(cfg->log, EDDY_LOG_INFO, "rt_broker: Redis Cluster master %s:%d: %s",
                     t->masters[i].host, t->masters[i].port, shards[i].name);
    } else {
        ctx_free(ctx);
    }
    free(shards);
    return b;
}

/* ---------------------------------------------------------------------------------------
 * Seeds that did not answer at the start (rt_broker.h "Redis Cluster"): a broker of one
 * part, DOWN, whose thread asks the seeds again with the backoff until they give the
 * topology, then builds the sharded broker and hands everything on to it
 * ------------------------------------------------------------------------------------- */

/* A request held until the topology is known: a broadcast or a session record. */
typedef struct held {
    struct held *next;
    bool session;
    size_t bytes;
    rt_broker_msg_t msg; /* its pointers into data */
    eddy_fd_t fd;
    rt_broker_publish_cb cb;
    void *arg;
    int rc; /* refused by the sharded broker: its answer */
    const char *pid;
    uint64_t ttl_ms;
    char data[];
} held_t;

/* A subscription held (reference counted, as the Redis broker's). */
typedef struct held_sub {
    struct held_sub *next;
    unsigned refs;
    const char *room; /* NULL: the namespace's */
    char nsp[];
} held_sub_t;

typedef struct later {
    rt_broker_t base;
    rt_broker_handlers_t h;
    void *ud;
    rt_broker_redis_config_t cfg; /* its strings and seeds owned (strs, seeds) */
    char *strs[8];
    rt_broker_addr_t seeds[RT_BROKER_CLUSTER_NODES_MAX];
    rt_redis_tls_t *tls;
    char node_id[RT_BROKER_NODE_ID_SIZE];
    /* The sharded broker, once built: set under lock after what was held went to it, so
     * that an operation that finds it NULL under lock is held, in order, and none after. */
    _Atomic(rt_broker_t *) inner;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    atomic_bool closing;
    held_t *head, **tail;
    size_t held, held_bytes;
    held_sub_t *subs;
    bool drop_logged;
    atomic_ullong dropped;
    /* The sharded broker's state events before the layer can see its parts (inner set):
     * held, then handed on in order by the thread (ev_lock). */
    pthread_mutex_t ev_lock;
    bool ev_live;
    rt_broker_state_event_t *evs;
    size_t nevs, evs_cap;
    pthread_t thread;
} later_t;

static rt_broker_t *inner_of(rt_broker_t *b)
{
    return atomic_load(&((later_t *)b)->inner);
}

/* Handlers of the sharded broker: handed on with this broker as b. */
static void fwd_deliver(rt_broker_t *b, const rt_broker_delivery_t *d, void *ud)
{
    later_t *l = ud;
    if (l->h.deliver)
        l->h.deliver(&l->base, d, l->ud);
}

static void fwd_emitted(rt_broker_t *b, const rt_emitter_msg_t *m, void *ud)
{
    later_t *l = ud;
    if (l->h.emitted)
        l->h.emitted(&l->base, m, l->ud);
}

static void fwd_request(rt_broker_t *b, const rt_broker_request_t *req, void *ud)
{
    later_t *l = ud;
    if (l->h.request)
        l->h.request(&l->base, req, l->ud);
}

static void fwd_state(rt_broker_t *b, const rt_broker_state_event_t *ev, void *ud)
{
    later_t *l = ud;
    pthread_mutex_lock(&l->ev_lock);
    if (l->ev_live) {
        if (l->h.state)
            l->h.state(&l->base, ev, l->ud);
    } else if (l->nevs < l->evs_cap || (l->evs_cap < 4 * RT_BROKER_SHARDS_MAX)) {
        if (l->nevs == l->evs_cap) {
            size_t cap = l->evs_cap ? 2 * l->evs_cap : 16;
            rt_broker_state_event_t *grown = realloc(l->evs, cap * sizeof(*grown));
            if (grown != NULL) {
                l->evs = grown;
                l->evs_cap = cap;
            }
        }
        /* Out of room: an UP that is lost keeps its part counted down (not ready). */
        if (l->nevs < l->evs_cap)
            l->evs[l->nevs++] = *ev; /* part_name: the sharded broker's, which lives on */
    }
    pthread_mutex_unlock(&l->ev_lock);
}

/* Takes lock and answers the sharded broker if there is one now (lock released), else
 * NULL with lock held. */
static rt_broker_t *inner_or_lock(later_t *l)
{
    rt_broker_t *in = atomic_load(&l->inner);
    if (in != NULL)
        return in;
    pthread_mutex_lock(&l->lock);
    if ((in = atomic_load(&l->inner)) != NULL)
        pthread_mutex_unlock(&l->lock);
    return in;
}

/* Holds h (lock held) within the queue's bounds, else frees it: EDDY_EDROPPED, counted and
 * logged once. */
static int hold(later_t *l, held_t *h)
{
    if (l->held + 1 > l->cfg.queue_max || l->held_bytes + h->bytes > l->cfg.queue_max_bytes) {
        bool log = !l->drop_logged;
        l->drop_logged = true;
        pthread_mutex_unlock(&l->lock);
        uint64_t dropped = atomic_fetch_add(&l->dropped, 1) + 1;
        if (log)
            eddy_log(l->cfg.log, EDDY_LOG_WARNING,
                     "rt_broker: Redis Cluster topology unknown and the queue full: dropping "
                     "(%llu dropped so far)",
                     (unsigned long long)dropped);
        free(h);
        return EDDY_EDROPPED;
    }
    h->next = NULL;
    *l->tail = h;
    l->tail = &h->next;
    l->held++;
    l->held_bytes += h->bytes;
    pthread_mutex_unlock(&l->lock);
    return 0;
}

/* Appends s (NUL included) at *at, returns where it went. */
static const char *put_str(char **at, const char *s)
{
    size_t len = strlen(s) + 1;
    memcpy(*at, s, len);
    const char *p = *at;
    *at += len;
    return p;
}

static int lt_publish(rt_broker_t *b, const rt_broker_msg_t *msg, eddy_fd_t fd,
                      rt_broker_publish_cb cb, void *arg)
{
    later_t *l = (later_t *)b;
    rt_broker_t *in = atomic_load(&l->inner);
    if (in != NULL)
        return rt_broker_publish(in, msg, fd, cb, arg);
    if (msg == NULL || msg->nsp == NULL || (msg->payload_len && msg->payload == NULL))
        return EDDY_EINVAL;
    size_t bytes =
        strlen(msg->nsp) + 1 + msg->payload_len + (msg->nrooms + msg->nexcept) * sizeof(char *);
    for (size_t i = 0; i < msg->nrooms; i++)
        bytes += msg->rooms[i] != NULL ? strlen(msg->rooms[i]) + 1 : 0;
    for (size_t i = 0; i < msg->nexcept; i++)
        bytes += msg->except[i] != NULL ? strlen(msg->except[i]) + 1 : 0;
    /* Copied before the lock is taken. */
    held_t *h = malloc(sizeof(*h) + bytes);
    if (h == NULL)
        return EDDY_ENOMEM;
    *h = (held_t){.bytes = bytes, .msg = *msg, .fd = fd, .cb = cb, .arg = arg};
    const char **ptrs = (const char **)(void *)h->data;
    char *at = h->data + (msg->nrooms + msg->nexcept) * sizeof(char *);
    for (size_t i = 0; i < msg->nrooms; i++)
        ptrs[i] = msg->rooms[i] != NULL ? put_str(&at, msg->rooms[i]) : NULL;
    for (size_t i = 0; i < msg->nexcept; i++)
        ptrs[msg->nrooms + i] = msg->except[i] != NULL ? put_str(&at, msg->except[i]) : NULL;
    h->msg.rooms = msg->nrooms ? ptrs : NULL;
    h->msg.except = msg->nexcept ? ptrs + msg->nrooms : NULL;
    h->msg.nsp = put_str(&at, msg->nsp);
    if (msg->payload_len)
        memcpy(at, msg->payload, msg->payload_len);
    h->msg.payload = at;
    if ((in = inner_or_lock(l)) != NULL) {
        free(h);
        return rt_broker_publish(in, msg, fd, cb, arg);
    }
    return hold(l, h);
}

static int lt_session_put(rt_broker_t *b, const char *pid, const void *data, size_t len,
                          uint64_t ttl_ms)
{
    later_t *l = (later_t *)b;
    rt_broker_t *in = inner_or_lock(l);
    if (in != NULL)
        return rt_broker_session_put(in, pid, data, len, ttl_ms);
    if (pid == NULL || (len && data == NULL)) {
        pthread_mutex_unlock(&l->lock);
        return EDDY_EINVAL;
    }
    size_t bytes = strlen(pid) + 1 + len;
    held_t *h = malloc(sizeof(*h) + bytes);
    if (h == NULL) {
        pthread_mutex_unlock(&l->lock);
        return EDDY_ENOMEM;
    }
    *h = (held_t){.session = true, .bytes = bytes, .ttl_ms = ttl_ms};
    char *at = h->data;
    h->pid = put_str(&at, pid);
    if (len)
        memcpy(at, data, len);
    h->msg.payload = at;
    h->msg.payload_len = len;
    return hold(l, h);
}

static held_sub_t **sub_find(later_t *l, const char *nsp, const char *room)
{
    held_sub_t **at = &l->subs;
    while (*at != NULL &&
           (strcmp((*at)->nsp, nsp) != 0 ||
            ((*at)->room == NULL ? room != NULL : room == NULL || strcmp((*at)->room, room) != 0)))
        at = &(*at)->next;
    return at;
}

static int lt_subscribe(rt_broker_t *b, const char *nsp, const char *room)
{
    later_t *l = (later_t *)b;
    if (nsp == NULL)
        return EDDY_EINVAL;
    rt_broker_t *in = inner_or_lock(l);
    if (in != NULL)
        return rt_broker_subscribe(in, nsp, room);
    held_sub_t **at = sub_find(l, nsp, room);
    int rc = 0;
    if (*at == NULL) {
        size_t nlen = strlen(nsp) + 1, rlen = room != NULL ? strlen(room) + 1 : 0;
        held_sub_t *s = malloc(sizeof(*s) + nlen + rlen);
        if (s != NULL) {
            *s = (held_sub_t){.next = NULL};
            memcpy(s->nsp, nsp, nlen);
            if (room != NULL)
                s->room = memcpy(s->nsp + nlen, room, rlen);
            *at = s;
        }
    }
    if (*at != NULL)
        (*at)->refs++;
    else
        rc = EDDY_ENOMEM;
    pthread_mutex_unlock(&l->lock);
    return rc;
}

static int lt_unsubscribe(rt_broker_t *b, const char *nsp, const char *room)
{
    later_t *l = (later_t *)b;
    if (nsp == NULL)
        return EDDY_EINVAL;
    rt_broker_t *in = inner_or_lock(l);
    if (in != NULL)
        return rt_broker_unsubscribe(in, nsp, room);
    held_sub_t **at = sub_find(l, nsp, room), *s = *at;
    if (s != NULL && --s->refs == 0) {
        *at = s->next;
        free(s);
    }
    pthread_mutex_unlock(&l->lock);
    return s != NULL ? 0 : EDDY_ENOTFOUND;
}

/* Reads and node requests need an answer from Redis: refused while there is none to ask
 * (the callback does not run). */
static int lt_history(rt_broker_t *b, const char *nsp, rt_position_t after,
                      const char *const *rooms, size_t nrooms, eddy_fd_t fd,
                      rt_broker_history_cb cb, void *arg)
{
    rt_broker_t *in = inner_of(b);
    return in != NULL ? rt_broker_history(in, nsp, after, rooms, nrooms, fd, cb, arg)
                      : EDDY_ECLOSED;
}

static int lt_recent(rt_broker_t *b, const char *nsp, const char *room, size_t n, eddy_fd_t fd,
                     rt_broker_history_cb cb, void *arg)
{
    rt_broker_t *in = inner_of(b);
    return in != NULL ? rt_broker_recent(in, nsp, room, n, fd, cb, arg) : EDDY_ECLOSED;
}

static int lt_session_take(rt_broker_t *b, const char *pid, eddy_fd_t fd, rt_broker_session_cb cb,
                           void *arg)
{
    rt_broker_t *in = inner_of(b);
    return in != NULL ? rt_broker_session_take(in, pid, fd, cb, arg) : EDDY_ECLOSED;
}

static int lt_presence_get(rt_broker_t *b, const char *nsp, const char *room, eddy_fd_t fd,
                           rt_broker_presence_cb cb, void *arg)
{
    rt_broker_t *in = inner_of(b);
    return in != NULL ? rt_broker_presence_get(in, nsp, room, fd, cb, arg) : EDDY_ECLOSED;
}

static int lt_request(rt_broker_t *b, const char *node, const char *key, const void *data,
                      size_t len, uint32_t flags, uint32_t timeout_ms, eddy_fd_t fd,
                      rt_broker_request_cb cb, void *arg)
{
    rt_broker_t *in = inner_of(b);
    return in != NULL ? rt_broker_request(in, node, key, data, len, flags, timeout_ms, fd, cb, arg)
                      : EDDY_ECLOSED;
}

static int lt_respond(rt_broker_t *b, const char *node, const char *key, uint64_t id,
                      const void *data, size_t len)
{
    rt_broker_t *in = inner_of(b);
    return in != NULL ? rt_broker_respond(in, node, key, id, data, len) : EDDY_ECLOSED;
}

/* Presence writes are not held: each master's UP event makes the layer write its
 * namespaces' presence afresh (rt_cluster.c "presence restore"). */
static int lt_presence_set(rt_broker_t *b, const char *nsp, const char *room, const char *member,
                           const void *info, size_t len)
{
    rt_broker_t *in = inner_of(b);
    return in != NULL ? rt_broker_presence_set(in, nsp, room, member, info, len) : 0;
}

static int lt_presence_del(rt_broker_t *b, const char *nsp, const char *room, const char *member)
{
    rt_broker_t *in = inner_of(b);
    return in != NULL ? rt_broker_presence_del(in, nsp, room, member) : 0;
}

static void lt_session_pid(rt_broker_t *b, char pid[RT_HISTORY_PID_SIZE])
{
    rt_broker_t *in = inner_of(b);
    if (in != NULL) {
        rt_broker_session_pid(in, pid);
        return;
    }
    rt_random_chars(pid, RT_HISTORY_PID_LEN);
    pid[RT_HISTORY_PID_LEN] = '\0';
}

static size_t lt_nodes(rt_broker_t *b, char (*ids)[RT_BROKER_NODE_ID_SIZE], size_t max)
{
    rt_broker_t *in = inner_of(b);
    return in != NULL ? rt_broker_nodes(in, ids, max) : 0;
}

static bool lt_ready(rt_broker_t *b, uint64_t *age_ms)
{
    rt_broker_t *in = inner_of(b);
    if (in != NULL)
        return rt_broker_ready(in, age_ms);
    if (age_ms != NULL)
        *age_ms = UINT64_MAX;
    return false;
}

static rt_broker_state_t lt_state(rt_broker_t *b)
{
    rt_broker_t *in = inner_of(b);
    return in != NULL ? rt_broker_state(in) : RT_BROKER_DOWN;
}

static void lt_stats(rt_broker_t *b, rt_broker_stats_t *out)
{
    later_t *l = (later_t *)b;
    rt_broker_t *in = inner_of(b);
    *out = (rt_broker_stats_t){0};
    if (in != NULL) {
        rt_broker_stats(in, out);
    } else {
        pthread_mutex_lock(&l->lock);
        out->buffered = l->held;
        out->buffered_bytes = l->held_bytes;
        pthread_mutex_unlock(&l->lock);
    }
    out->dropped += atomic_load(&l->dropped);
}

static const char *lt_node_id(rt_broker_t *b)
{
    return ((later_t *)b)->node_id;
}

/* One part (owning every namespace) until the topology is known, then the masters'. */
static size_t lt_parts(rt_broker_t *b)
{
    rt_broker_t *in = inner_of(b);
    return in != NULL ? rt_broker_parts(in) : 1;
}

static size_t lt_part(rt_broker_t *b, const char *nsp)
{
    rt_broker_t *in = inner_of(b);
    return in != NULL ? rt_broker_part(in, nsp) : 0;
}

static const char *lt_part_name(rt_broker_t *b, size_t part)
{
    rt_broker_t *in = inner_of(b);
    return in != NULL ? rt_broker_part_name(in, part) : NULL;
}

static void later_destroy(later_t *l)
{
    while (l->head != NULL) {
        held_t *h = l->head;
        l->head = h->next;
        if (!h->session && h->cb != NULL)
            h->cb(&l->base, EDDY_ECLOSED, (rt_position_t){0, 0}, h->arg);
        free(h);
    }
    while (l->subs != NULL) {
        held_sub_t *s = l->subs;
        l->subs = s->next;
        free(s);
    }
    free(l->evs);
    for (size_t i = 0; i < sizeof(l->strs) / sizeof(l->strs[0]); i++)
        free(l->strs[i]);
    for (size_t i = 0; i < l->cfg.ncluster_nodes; i++)
        free((char *)l->seeds[i].host);
    rt_redis_tls_free(l->tls);
    pthread_cond_destroy(&l->wake);
    pthread_mutex_destroy(&l->ev_lock);
    pthread_mutex_destroy(&l->lock);
    free(l);
}

static void lt_free(rt_broker_t *b)
{
    later_t *l = (later_t *)b;
    pthread_mutex_lock(&l->lock);
    atomic_store(&l->closing, true);
    pthread_cond_signal(&l->wake);
    pthread_mutex_unlock(&l->lock);
    pthread_join(l->thread, NULL);
    rt_broker_t *in = atomic_load(&l->inner);
    if (in != NULL)
        rt_broker_free(in);
    later_destroy(l);
}

static const rt_broker_ops_t later_ops = {
    .publish = lt_publish,
    .subscribe = lt_subscribe,
    .unsubscribe = lt_unsubscribe,
    .history = lt_history,
    .session_put = lt_session_put,
    .session_take = lt_session_take,
    .session_pid = lt_session_pid,
    .presence_set = lt_presence_set,
    .presence_del = lt_presence_del,
    .presence_get = lt_presence_get,
    .nodes = lt_nodes,
    .ready = lt_ready,
    .state = lt_state,
    .stats = lt_stats,
    .node_id = lt_node_id,
    .free = lt_free,
    .request = lt_request,
    .respond = lt_respond,
    .recent = lt_recent,
    .parts = lt_parts,
    .part = lt_part,
    .part_name = lt_part_name,
};

/* Hands what was held to in, in order, then makes in the broker every operation goes to. */
static void later_install(later_t *l, rt_broker_t *in)
{
    pthread_mutex_lock(&l->lock);
    for (held_sub_t *s = l->subs; s != NULL; s = s->next)
        for (unsigned k = 0; k < s->refs; k++)
            rt_broker_subscribe(in, s->nsp, s->room);
    size_t sent = 0;
    held_t *refused = NULL;
    while (l->head != NULL) {
        held_t *h = l->head;
        l->head = h->next;
        int rc = h->session ? rt_broker_session_put(in, h->pid, h->msg.payload, h->msg.payload_len,
                                                    h->ttl_ms)
                            : rt_broker_publish(in, &h->msg, h->fd, h->cb, h->arg);
        if (rc == 0)
            sent++;
        else if (rc == EDDY_EDROPPED)
            atomic_fetch_add(&l->dropped, 1);
        if (rc != 0 && !h->session && h->cb != NULL) {
            h->rc = rc; /* answered below, out of the lock (the callback may publish) */
            h->next = refused;
            refused = h;
        } else {
            free(h);
        }
    }
    l->tail = &l->head;
    l->held = l->held_bytes = 0;
    atomic_store(&l->inner, in);
    pthread_mutex_unlock(&l->lock);
    while (refused != NULL) {
        held_t *h = refused;
        refused = h->next;
        h->cb(&l->base, h->rc, (rt_position_t){0, 0}, h->arg);
        free(h);
    }
    eddy_log(l->cfg.log, EDDY_LOG_NOTICE,
             "rt_broker: Redis Cluster topology read (%zu masters); %zu requests held meanwhile "
             "sent",
             rt_broker_parts(in), sent);
    /* The layer sees the parts now: their events so far, then live. */
    pthread_mutex_lock(&l->ev_lock);
    for (size_t i = 0; i < l->nevs; i++)
        if (l->h.state)
            l->h.state(&l->base, &l->evs[i], l->ud);
    l->nevs = 0;
    l->ev_live = true;
    pthread_mutex_unlock(&l->ev_lock);
}

static void *later_main(void *arg)
{
    later_t *l = arg;
    uint32_t delay = l->cfg.backoff_min_ms;
    uint64_t rng = 0;
    if (getrandom(&rng, sizeof(rng), 0) != sizeof(rng))
        rng = (uint64_t)(uintptr_t)l;
    for (unsigned attempt = 1; !atomic_load(&l->closing); attempt++) {
        /* Each seed's reason at the first attempts, then only at debug level. */
        eddy_log_level_t level = attempt <= 3 ? EDDY_LOG_WARNING : EDDY_LOG_DEBUG;
        topology_t *t = calloc(1, sizeof(*t));
        rt_broker_t *in = NULL;
        if (t != NULL && topology_ask(&l->cfg, l->tls, t, level, &l->closing) == 0) {
            rt_broker_handlers_t h = {.deliver = fwd_deliver,
                                      .state = fwd_state,
                                      .emitted = fwd_emitted,
                                      .request = fwd_request};
            in = cluster_build(&l->cfg, t, &h, l);
        }
        if (t != NULL)
            topology_free(t);
        if (in != NULL) {
            later_install(l, in);
            return NULL;
        }
        if (atomic_load(&l->closing))
            break;
        /* Doubling up to the bound, with up to a quarter of jitter (nodes started together
         * do not ask together). */
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        uint32_t wait_ms = delay - (uint32_t)(rng % (delay / 4 + 1));
        eddy_log(l->cfg.log, attempt <= 3 ? EDDY_LOG_WARNING : EDDY_LOG_INFO,
                 "rt_broker: no Redis Cluster seed gave the topology (attempt %u): asking "
                 "again in %u ms; broadcasts are delivered on this node only",
                 attempt, wait_ms);
        delay = delay > l->cfg.backoff_max_ms / 2 ? l->cfg.backoff_max_ms : 2 * delay;
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += wait_ms / 1000;
        until.tv_nsec += (long)(wait_ms % 1000) * 1000000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        pthread_mutex_lock(&l->lock);
        while (!atomic_load(&l->closing) && pthread_cond_timedwait(&l->wake, &l->lock, &until) == 0)
            ;
        pthread_mutex_unlock(&l->lock);
    }
    return NULL;
}

/* Copies s into one of l's owned strings; false: out of memory. */
static bool own(later_t *l, size_t i, const char **s)
{
    if (*s == NULL)
        return true;
    l->strs[i] = strdup(*s);
    *s = l->strs[i];
    return *s != NULL;
}

/* The broker of seeds that did not answer at the start (cfg copied); NULL (logged). */
static rt_broker_t *later_new(const rt_broker_redis_config_t *cfg, rt_redis_tls_t *tls,
                              const rt_broker_handlers_t *h, void *ud)
{
    later_t *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        rt_redis_tls_free(tls);
        return NULL;
    }
    l->base.ops = &later_ops;
    if (h != NULL)
        l->h = *h;
    l->ud = ud;
    l->tls = tls;
    l->tail = &l->head;
    pthread_mutex_init(&l->lock, NULL);
    pthread_mutex_init(&l->ev_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&l->wake, &ca);
    pthread_condattr_destroy(&ca);
    l->cfg = *cfg;
    if (cfg->node_id != NULL) {
        snprintf(l->node_id, sizeof(l->node_id), "%s", cfg->node_id);
    } else {
        uint64_t v = 0;
        if (getrandom(&v, sizeof(v), 0) != sizeof(v))
            v = (uint64_t)(uintptr_t)l ^ (uint64_t)time(NULL);
        snprintf(l->node_id, sizeof(l->node_id), "%016llx", (unsigned long long)v);
    }
    l->cfg.node_id = l->node_id;
    bool ok = own(l, 0, &l->cfg.password) && own(l, 1, &l->cfg.username) &&
              own(l, 2, &l->cfg.prefix) && own(l, 3, &l->cfg.emitter_prefix) &&
              own(l, 4, &l->cfg.tls_ca_file) && own(l, 5, &l->cfg.tls_cert_file) &&
              own(l, 6, &l->cfg.tls_key_file) && own(l, 7, &l->cfg.tls_server_name);
    l->cfg.host = NULL;
    l->cfg.ncluster_nodes = 0;
    for (size_t i = 0; ok && i < cfg->ncluster_nodes; i++) {
        l->seeds[i] =
            (rt_broker_addr_t){strdup(cfg->cluster_nodes[i].host), cfg->cluster_nodes[i].port};
        ok = l->seeds[i].host != NULL;
        l->cfg.ncluster_nodes += ok;
    }
    l->cfg.cluster_nodes = l->seeds;
    if (ok) {
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        ok = pthread_create(&l->thread, NULL, later_main, l) == 0;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    if (!ok) {
        later_destroy(l);
        return NULL;
    }
    return &l->base;
}

rt_broker_t *rt_broker_cluster_new(const rt_broker_redis_config_t *cfg,
                                   const rt_broker_handlers_t *h, void *ud)
{
    if (cfg == NULL || cfg->srv != NULL || cfg->ncluster_nodes == 0 ||
        cfg->ncluster_nodes > RT_BROKER_CLUSTER_NODES_MAX || cfg->cluster_nodes == NULL) {
        eddy_log(cfg ? cfg->log : NULL, EDDY_LOG_ERROR,
                 "rt_broker: a Redis Cluster needs 1 to %d seeds and no server (srv NULL)",
                 RT_BROKER_CLUSTER_NODES_MAX);
        return NULL;
    }
    /* rediss+cluster: the TLS settings of the topology read (each master's broker makes
     * its own from cfg); a file that cannot be read is logged here, once. */
    rt_redis_tls_t *tls = cfg->tls ? rt_redis_tls_new(cfg, cfg->log) : NULL;
    if (cfg->tls && tls == NULL)
        return NULL;
    topology_t *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        rt_redis_tls_free(tls);
        return NULL;
    }
    rt_broker_t *b = NULL;
    if (topology_ask(cfg, tls, t, EDDY_LOG_WARNING, NULL) == 0) {
        /* A topology that cannot be served (no hash tag for a master) is a failure now. */
        b = cluster_build(cfg, t, h, ud);
        rt_redis_tls_free(tls);
    } else {
        eddy_log(cfg->log, EDDY_LOG_WARNING,
                 "rt_broker: no Redis Cluster seed gave the topology: starting without it "
                 "(broadcasts are delivered on this node only, not ready) and asking again");
        b = later_new(cfg, tls, h, ud);
    }
    topology_free(t);
    return b;
}

/* SPDX-License-Identifier: MIT */
/*
 * Redis Cluster (rt_broker.h "Redis Cluster"): the hash slot of a key, the topology read
 * from the seeds at the start, and the sharded broker routed by slot over one Redis broker
 * per master.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* A node's address in a CLUSTER SLOTS entry ([host, port, id, ...]; an empty host, or
 * none (NULL: cluster-preferred-endpoint-type unknown-endpoint), is the host asked). */
static bool node_addr(const redisReply *n, const char *asked, const char **host, int *port)
{
    if (n->type != REDIS_REPLY_ARRAY || n->elements < 2 ||
        (n->element[0]->type != REDIS_REPLY_STRING && n->element[0]->type != REDIS_REPLY_NIL) ||
        n->element[1]->type != REDIS_REPLY_INTEGER || n->element[1]->integer <= 0 ||
        n->element[1]->integer > 65535)
        return false;
    *host = n->element[0]->type == REDIS_REPLY_STRING && n->element[0]->len ? n->element[0]->str
                                                                            : asked;
    *port = (int)n->element[1]->integer;
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
            !node_addr(e->element[2], asked, &host, &port)) {
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
            if (node_addr(e->element[k], asked, &host, &port) &&
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
 * TLS, each seed's certificate checked against its host. 0, or -1 (logged). */
static int topology_ask(const rt_broker_redis_config_t *cfg, const rt_redis_tls_t *tls,
                        topology_t *t)
{
    struct timeval tv = {cfg->io_timeout_ms / 1000, (cfg->io_timeout_ms % 1000) * 1000};
    for (size_t i = 0; i < cfg->ncluster_nodes; i++) {
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
            return 0;
        }
        eddy_log(NULL, EDDY_LOG_WARNING, "rt_broker: Redis Cluster seed %s:%d: %s", seed->host,
                 seed->port, why);
        t->nmasters = t->nnodes = 0;
    }
    eddy_log(NULL, EDDY_LOG_ERROR, "rt_broker: no Redis Cluster seed gave the topology");
    return -1;
}

/* Master i's broker: its name (its slots at the start), first slot, node-wide hash tag (the
 * smallest decimal number in its slots: every node computes the same) and session tag (random,
 * in its slots). */
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

static int shard_describe(const topology_t *t, size_t i, cluster_shard_t *cs)
{
    shard_name(t, i, cs->name, sizeof(cs->name));
    cs->first_slot = -1;
    for (size_t s = 0; s < RT_BROKER_CLUSTER_SLOTS && cs->first_slot < 0; s++)
        if (t->slots[s] == i)
            cs->first_slot = (int)s;
    bool found = false;
    for (unsigned n = 0; n < 4000000 && !found; n++) {
        int len = snprintf(cs->tag, sizeof(cs->tag), "%u", n);
        found = t->slots[rt_broker_crc16(cs->tag, (size_t)len) % RT_BROKER_CLUSTER_SLOTS] == i;
    }
    if (!found)
        return -1;
    /* About 16384 / (the master's slots) draws; bounded for a master of a single slot. */
    for (unsigned tries = 0; tries < 4000000; tries++) {
        rt_random_chars(cs->session_tag, RT_BROKER_SESSION_TAG_LEN);
        cs->session_tag[RT_BROKER_SESSION_TAG_LEN] = '\0';
        if (t->slots[rt_broker_crc16(cs->session_tag, RT_BROKER_SESSION_TAG_LEN) %
                     RT_BROKER_CLUSTER_SLOTS] == i)
            return 0;
    }
    return -1;
}

typedef struct cluster_make {
    const rt_broker_redis_config_t *cfg;
    const topology_t *t;
    const cluster_shard_t *shards;
} cluster_make_t;

static rt_broker_t *make_master(size_t i, const char *node_id, const rt_broker_handlers_t *h,
                                void *hud, void *arg)
{
    const cluster_make_t *cm = arg;
    rt_broker_redis_config_t cfg = *cm->cfg;
    cfg.host = cm->t->masters[i].host;
    cfg.port = cm->t->masters[i].port;
    cfg.cluster_nodes = cm->t->nodes;
    cfg.ncluster_nodes = cm->t->nnodes;
    cfg.cluster_slot = cm->shards[i].first_slot;
    cfg.cluster_tag = cm->shards[i].tag;
    cfg.session_tag = cm->shards[i].session_tag;
    /* A Socket.IO emitter's PUBLISH reaches every node of a cluster: one master listens. */
    if (i > 0) {
        cfg.emitter_prefix = NULL;
        cfg.node_id = node_id;
    }
    return rt_broker_redis_new(&cfg, h, hud);
}

rt_broker_t *rt_broker_cluster_new(const rt_broker_redis_config_t *cfg,
                                   const rt_broker_handlers_t *h, void *ud)
{
    if (cfg == NULL || cfg->srv != NULL || cfg->ncluster_nodes == 0 ||
        cfg->ncluster_nodes > RT_BROKER_CLUSTER_NODES_MAX || cfg->cluster_nodes == NULL) {
        eddy_log(NULL, EDDY_LOG_ERROR,
                 "rt_broker: a Redis Cluster needs 1 to %d seeds and no server (srv NULL)",
                 RT_BROKER_CLUSTER_NODES_MAX);
        return NULL;
    }
    topology_t *t = calloc(1, sizeof(*t));
    cluster_shard_t *shards = calloc(RT_BROKER_SHARDS_MAX, sizeof(*shards));
    const char *names[RT_BROKER_SHARDS_MAX];
    rt_broker_t *b = NULL;
    /* rediss+cluster: the TLS settings of the topology read (each master's broker makes
     * its own from cfg); a file that cannot be read is logged here, once. */
    rt_redis_tls_t *tls = cfg->tls ? rt_redis_tls_new(cfg, NULL) : NULL;
    if (t != NULL && shards != NULL && (!cfg->tls || tls != NULL) &&
        topology_ask(cfg, tls, t) == 0) {
        bool ok = true;
        for (size_t i = 0; i < t->nmasters && ok; i++) {
            ok = shard_describe(t, i, &shards[i]) == 0;
            names[i] = shards[i].name;
        }
        if (!ok)
            eddy_log(NULL, EDDY_LOG_ERROR, "rt_broker: no hash tag found for a master's slots");
        cluster_make_t cm = {cfg, t, shards};
        if (ok)
            b = rt_broker_shard_slots_new(names, t->nmasters, t->slots, cfg->prefix, make_master,
                                          &cm, h, ud);
        if (b != NULL)
            for (size_t i = 0; i < t->nmasters; i++)
                eddy_log(NULL, EDDY_LOG_INFO, "rt_broker: Redis Cluster master %s:%d: %s",
                         t->masters[i].host, t->masters[i].port, shards[i].name);
    }
    if (t != NULL)
        topology_free(t);
    free(shards);
    rt_redis_tls_free(tls);
    return b;
}

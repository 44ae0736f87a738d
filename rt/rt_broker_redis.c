/* SPDX-License-Identifier: MIT */
/*
 * The Redis broker (rt_broker.h): one thread, two blocking hiredis connections (commands,
 * pipelined; SUBSCRIBE), a bounded request queue filled by any thread, results and
 * deliveries handed to eddy's loops with eddy_post()/eddy_defer().
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "rt_broker.h"
#include "rt_chanseq.h"
#include "rt_redis_tls.h"

/* Publish: KEYS = pos, then (stream, last) per target; ARGV = epoch candidate, maxlen,
 * age ms, meta ttl ms, message, channels. */
static const char lua_publish[] =
    "local ep = redis.call('HGET', KEYS[1], 'e')\n"
    "if not ep then redis.call('HSETNX', KEYS[1], 'e', ARGV[1]); ep = redis.call('HGET', "
    "KEYS[1], 'e') end\n"
    "local seq = redis.call('HINCRBY', KEYS[1], 's', 1)\n"
    "local t = redis.call('TIME')\n"
    "local minid = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - "
    "tonumber(ARGV[3])\n"
    "if minid < 0 then minid = 0 end\n"
    "local mid = string.format('%d', minid)\n"
    "for i = 2, #KEYS, 2 do\n"
    "  local prev = redis.call('SET', KEYS[i + 1], seq, 'PX', ARGV[4], 'GET') or '0'\n"
    "  redis.call('XADD', KEYS[i], 'MAXLEN', '~', ARGV[2], '*', 's', seq, 'p', prev, 'm', "
    "ARGV[5])\n"
    "  redis.call('XTRIM', KEYS[i], 'MINID', '~', mid)\n"
    "  redis.call('PEXPIRE', KEYS[i], ARGV[3])\n"
    "end\n"
    "local live = string.format('%d', seq) .. ':' .. ep .. ':' .. ARGV[5]\n"
    "for j = 6, #ARGV do redis.call('PUBLISH', ARGV[j], live) end\n"
    "return {seq, ep}\n";

/* History: KEYS = pos, then (stream, last) per room; ARGV = epoch, after, max entries,
 * epoch candidate (the namespace gets an epoch if it has none, so every answer names its
 * position). Returns {1, top, epoch, seq, message, ...} or {0, top, epoch}. A stream is
 * read backwards until an entry at or below after, or one whose predecessor is: reaching
 * its start first means entries above after were trimmed. */
static const char lua_history[] =
    "if not redis.call('HGET', KEYS[1], 'e') then redis.call('HSETNX', KEYS[1], 'e', ARGV[4]) "
    "end\n"
    "local ep = redis.call('HGET', KEYS[1], 'e')\n"
    "local top = tonumber(redis.call('HGET', KEYS[1], 's') or '0')\n"
    "local gap = {0, top, ep}\n"
    "local after = tonumber(ARGV[2])\n"
    "if ep ~= ARGV[1] or after > top then return gap end\n"
    "local max = tonumber(ARGV[3])\n"
    "local out = {1, top, ep}\n"
    "local n = 0\n"
    "for i = 2, #KEYS, 2 do\n"
    "  local last = tonumber(redis.call('GET', KEYS[i + 1]) or '0')\n"
    "  if last > after then\n"
    "    local hi = '+'\n"
    "    local done = false\n"
    "    while not done do\n"
    "      local batch = redis.call('XREVRANGE', KEYS[i], hi, '-', 'COUNT', 100)\n"
    "      if #batch == 0 then return gap end\n"
    "      for _, e in ipairs(batch) do\n"
    "        local f = e[2]\n"
    "        local s, p, m = 0, 0, ''\n"
    "        for k = 1, #f, 2 do\n"
    "          if f[k] == 's' then s = tonumber(f[k + 1]) elseif f[k] == 'p' then p = "
    "tonumber(f[k + 1]) else m = f[k + 1] end\n"
    "        end\n"
    "        if s <= after then done = true; break end\n"
    "        n = n + 1\n"
    "        if n > max then return gap end\n"
    "        out[#out + 1] = s; out[#out + 1] = m\n"
    "        if p <= after then done = true; break end\n"
    "      end\n"
    "      hi = '(' .. batch[#batch][1]\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return out\n";

/* Presence read: KEYS = nodes, presence hash. Entries of nodes without a fresh lease are
 * removed and not returned. */
static const char lua_presence[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local alive = {}\n"
    "for _, n in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')) do alive[n] = true "
    "end\n"
    "local all = redis.call('HGETALL', KEYS[2])\n"
    "local out = {}\n"
    "for i = 1, #all, 2 do\n"
    "  local f = all[i]\n"
    "  local sep = string.find(f, '\\31', 1, true)\n"
    "  if sep and alive[string.sub(f, 1, sep - 1)] then out[#out + 1] = f; out[#out + 1] = "
    "all[i + 1]\n"
    "  else redis.call('HDEL', KEYS[2], f) end\n"
    "end\n"
    "return out\n";

/* Session records (see rt_broker.h: a live socket's record sits in the hash of the node
 * holding it, under the hash tag of the node process that issued its pid). KEYS = the
 * record's own key, the pid tag's holders set, this node's hash for that tag; ARGV = op,
 * pid, then: 'l' (live) record, ttl ms, this node's tag; 'd' (disconnected) record, ttl ms.
 * 't' (take): the disconnected record, else the holders (an array: lua_session_holders
 * then reads their hashes, each declared). */
static const char lua_session[] =
    "local op, pid = ARGV[1], ARGV[2]\n"
    "if op == 'l' then\n"
    "  redis.call('HSET', KEYS[3], pid, ARGV[3]); redis.call('SADD', KEYS[2], ARGV[5])\n"
    "  redis.call('PEXPIRE', KEYS[3], ARGV[4]); redis.call('PEXPIRE', KEYS[2], ARGV[4])\n"
    "  return 1\n"
    "elseif op == 'd' then\n"
    "  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4]); redis.call('HDEL', KEYS[3], pid)\n"
    "  return 1\n"
    "end\n"
    "local v = redis.call('GETDEL', KEYS[1])\n"
    "if v then return v end\n"
    "return redis.call('SMEMBERS', KEYS[2])\n";

/* A take's second step, when lua_session found no disconnected record: KEYS = the
 * record's own key (a disconnect may have written it since), then the hashes of the
 * holders it named; ARGV = pid. Sent with EVAL (the script cache keeps it). */
static const char lua_session_holders[] =
    "local v = redis.call('GETDEL', KEYS[1])\n"
    "if v then return v end\n"
    "for i = 2, #KEYS do\n"
    "  v = redis.call('HGET', KEYS[i], ARGV[1])\n"
    "  if v then redis.call('HDEL', KEYS[i], ARGV[1]); return v end\n"
    "end\n"
    "return false\n";

enum { SCRIPT_PUBLISH, SCRIPT_HISTORY, SCRIPT_PRESENCE, SCRIPT_SESSION, SCRIPT_COUNT };
static const char *const scripts[SCRIPT_COUNT] = {lua_publish, lua_history, lua_presence,
                                                  lua_session};

enum job_kind {
    JOB_PUBLISH,
    JOB_SESSION_PUT,
    JOB_SESSION_LIVE,
    JOB_SESSION_TAKE,
    JOB_HISTORY,
    JOB_PRESENCE_SET,
    JOB_PRESENCE_DEL,
    JOB_PRESENCE_GET,
    JOB_NODE_REQUEST,
    JOB_NODE_REPLY,
    JOB_RECENT,
};

/* A queued request: its Redis command (argv), built by the caller in one allocation. */
typedef struct job {
    struct job *next;
    enum job_kind kind;
    int script; /* SCRIPT_* when argv[0] is EVALSHA, else -1 */
    /* A plain publish (no_history): argv is PUBLISH, the message, then its channels (this
     * many); one PUBLISH per channel is sent. 0: argv is one command (none if argc is 0:
     * a history read answered here). */
    int plain;
    eddy_fd_t fd;
    void (*cb)(void);
    void *arg;
    size_t bytes;
    void *extra; /* job_build's extra bytes */
    int argc;
    const char **argv;
    size_t *argvlen;
    /* History: the rooms asked for (except-rooms are matched against them). */
    const char *nsp;
    const char **rooms;
    size_t nrooms;
    rt_position_t after;
    /* When a master first answered that it no longer serves the job's slot (0: never):
     * the job is sent again after the reconnection until REDIRECT_RETRY_MS later. */
    uint64_t redirected_at;
    /* Node request: its id (0: no answer wanted), flags, deadline, target (NULL: all); in
     * a cluster its namespace is nsp (above). */
    uint64_t req_id, deadline;
    uint32_t rflags;
    const char *target;
} job_t;

/* A (nsp, room) interest; the table and the pending list are guarded by rb->lock. */
typedef struct sub {
    struct sub *next;         /* hash chain */
    struct sub *pending_next; /* pending list */
    size_t refs;
    bool active; /* SUBSCRIBE sent on the current connection (thread only) */
    bool pending;
    size_t len;
    char channel[];
} sub_t;

/* The pattern subscription P{nsp}:c:<tag>* of a namespace's socket-id channels (tag: this
 * node's socket tag), held while the node has a local socket there: one PSUBSCRIBE per
 * namespace instead of one SUBSCRIBE per socket. Guarded by rb->lock. */
typedef struct psub {
    struct psub *next;
    size_t refs;
    bool active; /* PSUBSCRIBE sent on the current connection (thread only) */
    bool pending;
    size_t len;
    char pattern[];
} psub_t;

/* A node request waiting for answers (thread only): one slot per node waited for. */
typedef struct nreq_slot {
    char node[RT_BROKER_NODE_ID_SIZE];
    int state; /* 0 waiting, 1 answered, 2 gone (lease lapsed) */
    size_t order;
    size_t len;
    char *data;
} nreq_slot_t;

typedef struct nreq {
    struct nreq *next;
    char *key; /* Redis Cluster: the namespace it went through (its lease lists the nodes) */
    uint64_t id, deadline;
    rt_broker_request_cb cb; /* NULL: a barrier nobody reads the answers of */
    void *arg;
    eddy_fd_t fd;
    size_t n, left, answered;
    nreq_slot_t slots[];
} nreq_t;

/* Redis Cluster: a namespace this broker serves (the layer subscribed it whole), whose
 * lease P{nsp}:l it renews at each heartbeat, reading the nodes alive there (ids[0..n),
 * NULL until the first read): a request through the namespace waits for them. Held with
 * the namespace's node channels (P{nsp}:q, P{nsp}:n:<id>); handed over with its slot.
 * Guarded by rb->lock. */
typedef struct lease {
    struct lease *next;
    size_t refs;
    unsigned slot; /* the namespace's (its hash tag's) */
    char (*ids)[RT_BROKER_NODE_ID_SIZE];
    size_t n;
    char nsp[];
} lease_t;

/* Last delivered position per namespace (thread only): one broadcast reaches the node on
 * each of its rooms' channels, and a namespace's seqs arrive in order on one connection. */
typedef struct nsp_seen {
    struct nsp_seen *next;
    uint64_t epoch, seq;
    char nsp[];
} nsp_seen_t;

#define ORIGIN_IDLE_MS 60000 /* an origin's entry outlives its last broadcast this long */

/* Last broadcast delivered per origin node (thread only), for plain publishes (no_history):
 * an origin's broker numbers them in the order it sends them (instance: that broker's
 * random id, so a node restarted under the same id starts afresh). One broadcast reaches
 * the node once per channel it holds of its rooms, each copy after the first with a
 * number at or below the last one delivered. */
typedef struct origin_seen {
    struct origin_seen *next;
    uint64_t instance, num, at_ms;
    char id[];
} origin_seen_t;

typedef struct rb {
    rt_broker_t base;
    rt_broker_redis_config_t cfg;
    rt_broker_handlers_t h;
    void *ud;
    char node_id[RT_BROKER_NODE_ID_SIZE];
    char session_tag[RT_BROKER_SESSION_TAG_LEN + 1]; /* this process's pids start with it */
    char *host, *password, *prefix, *emitter_pattern;
    char *node_channel, *nodes_key, *all_channel;
    size_t prefix_len;

    pthread_t thread;
    int wake_fd;
    atomic_bool stop;

    pthread_mutex_t lock; /* queue, subscriptions, nodes */
    job_t *head, *tail;
    job_t *rhead, *rtail; /* answers to node requests: sent before the queue, never held */
    size_t queued, queued_bytes;
    bool drop_logged;
    sub_t **subs;
    size_t subs_cap, subs_count;
    sub_t *pending;
    char (*nodes)[RT_BROKER_NODE_ID_SIZE];
    size_t nnodes;
    lease_t *leases; /* Redis Cluster */
    bool leases_new; /* a lease not written yet: written before the next requests */

    /* Thread only. */
    redisContext *cmd, *sub; /* socket I/O through rt_redis_tls.h's seam only */
    rt_redis_tls_t *tls;     /* rediss: the TLS settings (NULL: plain TCP) */
    char sha[SCRIPT_COUNT][41];
    nsp_seen_t *seen;
    origin_seen_t *origins;
    uint64_t instance, plain_num; /* this broker's plain publishes: its id, their last number */
    rt_chanseq_t *chan_sent, *chan_heard; /* plain publishes' per-channel numbers (missed_note) */
    uint64_t missed_logged_ms, missed_unlogged;
    /* Refusals (refused_log()): when the last was logged, how many since were not, the last
     * one's text (thread only). */
    uint64_t refused_logged_ms, refused_unlogged;
    char refused_last[160];
    uint64_t next_heartbeat, down_since;
    /* Redis' clock (TIME, ms) as of this thread's monotonic clock at redis_time_at: leases
     * are in Redis' time, so that nodes' clocks need not agree. */
    uint64_t redis_time, redis_time_at;
    char (*tags)[RT_BROKER_SESSION_TAG_LEN + 1]; /* pid tags with a hash of live records here */
    size_t ntags;
    size_t renewing; /* the first tags, whose renewal session_renew() appended last */
    /* Redis Cluster: the namespaces whose leases heartbeat_append() renewed, and the
     * heartbeat's replies (read by heartbeat_read()). */
    char **beat;
    size_t nbeat;
    redisReply **beat_r; /* room for beat_cap (kept: a heartbeat allocates no more) */
    size_t beat_cap;
    bool was_up;
    /* Since when Redis refuses the heartbeat (heartbeat_settle(): the part is down), or 0 */
    uint64_t refusing_since;
    bool joined; /* cfg.cluster_joined, until its first connection (a gap, not a reconnect) */
    bool redirect_pause; /* a request met CLUSTERDOWN: wait, then reconnect */
    /* Redis Cluster (thread only): the jobs of slots being migrated (a command of the slot
     * was answered ASK or TRYAGAIN: some of its keys are on the importing master already),
     * in order, still counted as queued. They wait until hold_until, then go back to the
     * head of the queue and are sent again: the old master serves the slot again (the move
     * was abandoned) or answers MOVED (SETSLOT NODE ended it: the slot is handed over).
     * hold_slots has a bit per slot held; hold_barrier: a barrier request is held, nothing
     * after it leaves; hold_logged: the slot the last hold logged. */
    job_t *hold_head, *hold_tail;
    uint64_t hold_until;
    bool hold_barrier;
    int hold_logged;
    uint8_t hold_slots[RT_BROKER_CLUSTER_SLOTS / 8];
    uint64_t rng;

    _Atomic int state;
    _Atomic uint64_t last_pong;
    _Atomic uint64_t published, delivered, dropped, reconnects, gaps, nsubs, missed, retried;
    atomic_uint_fast64_t next_req;
    nreq_t *reqs;    /* thread only */
    nreq_t *barrier; /* thread only: holds the queue until it is answered */
    /* Socket ids starting with socket_tag: covered by patterns (psub_t). */
    char socket_tag[RT_BROKER_SOCKET_TAG_LEN + 1];
    psub_t *patterns;      /* guarded by lock */
    bool patterns_pending; /* guarded by lock: a pattern's refs crossed 0 */
    _Atomic uint64_t npatterns;
    /* Sentinel (cfg.sentinel_master): copies of the names and of the sentinels (their hosts
     * in the same allocation), reordered by the thread (the one that answered first). The
     * master the sentinels named is host and cfg.port (thread only). */
    char *sentinel_master, *sentinel_password;
    char *username, *sentinel_username; /* ACL users of AUTH (copies; NULL: none) */
    rt_broker_addr_t *sentinels;
    bool master_known;
    _Atomic uint64_t master_switches;
    /* Redis Cluster (cfg.ncluster_nodes > 0): the nodes asked for the master of
     * cfg.cluster_slot (their hosts in the same allocation), reordered by the thread (the one
     * that answered first). Every engine: the prefix of the node's own names (P, in a
     * cluster P{tag}:), the pub/sub verbs (sharded in a cluster) and the publish script as
     * sent (NULL: lua_publish). */
    rt_broker_addr_t *cluster_nodes;
    /* Redis Cluster, resharding (thread only but resharded): the slot a MOVED answer or a
     * dropped channel named (-1: none), checked at the next topology read; the first slot of
     * each part of the node (cfg.cluster_parts, borrowed); each slot's fate (slot_fate: the
     * part it was handed to, SLOT_HERE, or SLOT_LOST: moved to a master of no part, its
     * requests refused at once from then on); resharded once a slot was lost (the broker
     * is then not ready). */
    int moved_slot;
    const _Atomic int *part_slots;
    const atomic_size_t *nparts;
    _Atomic uint8_t *slot_fate; /* a part hands a slot back: it sets SLOT_HERE */
    atomic_bool resharded;
    /* A MOVED answer, or a channel the master dropped (thread only): the connection breaks
     * (why) unless the slot alone moved (redirect_settle(), dropped_settle()). */
    char moved_why[96];
    bool channel_dropped;
    char dropped_why[96];
    _Atomic uint64_t slots_moved;
    char *node_prefix, *publish_script;
    const char *pub_verb, *sub_verb, *unsub_verb;
} rb_t;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t rand64(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545f4914f6cdd1dull;
}

static void wake(rb_t *rb)
{
    uint64_t one = 1;
    ssize_t n = write(rb->wake_fd, &one, sizeof(one));
    (void)n; /* a full counter still wakes the thread */
}

/* ---------------------------------------------------------------------------------------
 * Handing results to the loops
 * ------------------------------------------------------------------------------------- */

/* Runs fn(arg) where the configuration says: on fd's loop, on loop 0, or here. */
static void dispatch(rb_t *rb, eddy_fd_t fd, eddy_defer_cb fn, void *arg)
{
    if (!rb->cfg.srv) {
        fn(NULL, arg);
        return;
    }
    if (fd && eddy_post(rb->cfg.srv, fd, fn, arg) == 0)
        return;
    if (eddy_defer(rb->cfg.srv, fn, arg) == 0)
        return;
    /* Out of memory in the engine: running fn on this thread would break the loops'
     * rules, so the result is lost; say so. */
    eddy_log(rb->cfg.log, EDDY_LOG_ERROR, "rt_broker: out of memory handing a result to a loop");
}

typedef struct publish_result {
    rb_t *rb;
    rt_broker_publish_cb cb;
    void *arg;
    int err;
    rt_position_t pos;
} publish_result_t;

static void run_publish_result(eddy_server_t *srv, void *p)
{
    publish_result_t *r = p;
    r->cb(&r->rb->base, r->err, r->pos, r->arg);
    free(r);
}

typedef struct history_result {
    rb_t *rb;
    rt_broker_history_cb cb;
    void *arg;
    int err;
    rt_position_t top;
    rt_broker_delivery_t *entries;
    size_t n;
    const char **names;
    redisReply *reply;
} history_result_t;

static void run_history_result(eddy_server_t *srv, void *p)
{
    history_result_t *r = p;
    r->cb(&r->rb->base, r->err, r->top, r->entries, r->n, r->arg);
    free(r->entries);
    free(r->names);
    if (r->reply)
        freeReplyObject(r->reply);
    free(r);
}

typedef struct session_result {
    rb_t *rb;
    rt_broker_session_cb cb;
    void *arg;
    int err;
    redisReply *reply;
} session_result_t;

static void run_session_result(eddy_server_t *srv, void *p)
{
    session_result_t *r = p;
    r->cb(&r->rb->base, r->err, r->reply && !r->err ? r->reply->str : NULL,
          r->reply && !r->err ? r->reply->len : 0, r->arg);
    if (r->reply)
        freeReplyObject(r->reply);
    free(r);
}

typedef struct presence_result {
    rb_t *rb;
    rt_broker_presence_cb cb;
    void *arg;
    int err;
    rt_broker_presence_t *entries;
    size_t n;
    char *names;
    redisReply *reply;
} presence_result_t;

static void run_presence_result(eddy_server_t *srv, void *p)
{
    presence_result_t *r = p;
    r->cb(&r->rb->base, r->err, r->entries, r->n, r->arg);
    free(r->entries);
    free(r->names);
    if (r->reply)
        freeReplyObject(r->reply);
    free(r);
}

/* The result of a node request: the answers and the missing nodes point into slots. */
typedef struct request_result {
    rb_t *rb;
    rt_broker_request_cb cb;
    void *arg;
    int err;
    nreq_t *req; /* NULL with an error before sending */
    rt_broker_reply_t *replies;
    const char **missing;
    size_t n, nmissing;
} request_result_t;

static void nreq_free(nreq_t *q)
{
    for (size_t i = 0; q && i < q->n; i++)
        free(q->slots[i].data);
    if (q)
        free(q->key);
    free(q);
}

static void run_request_result(eddy_server_t *srv, void *p)
{
    request_result_t *r = p;
    r->cb(&r->rb->base, r->err, r->replies, r->n, r->missing, r->nmissing, r->arg);
    free(r->replies);
    free(r->missing);
    nreq_free(r->req);
    free(r);
}

/* Deliveries and state events carry their handler and user data: they may run after the
 * broker was freed (see rt_broker_free), so they never read it. */
typedef struct live_delivery {
    rb_t *rb;
    void (*deliver)(rt_broker_t *b, const rt_broker_delivery_t *d, void *ud);
    void *ud;
    redisReply *reply;
    rt_broker_delivery_t d;
    const char *names[];
} live_delivery_t;

static void run_delivery(eddy_server_t *srv, void *p)
{
    live_delivery_t *ld = p;
    ld->deliver(&ld->rb->base, &ld->d, ld->ud);
    freeReplyObject(ld->reply);
    free(ld);
}

typedef struct state_result {
    rb_t *rb;
    void (*state)(rt_broker_t *b, const rt_broker_state_event_t *ev, void *ud);
    void *ud;
    rt_broker_state_event_t ev;
} state_result_t;

static void run_state(eddy_server_t *srv, void *p)
{
    state_result_t *r = p;
    r->state(&r->rb->base, &r->ev, r->ud);
    free(r);
}

static void set_state(rb_t *rb, rt_broker_state_t st, bool gap, uint64_t down_ms)
{
    if (atomic_exchange(&rb->state, (int)st) == (int)st && !gap)
        return;
    if (!rb->h.state)
        return;
    state_result_t *r = malloc(sizeof(*r));
    if (!r) {
        eddy_log(rb->cfg.log, EDDY_LOG_ERROR, "rt_broker: out of memory reporting a state");
        return;
    }
    r->rb = rb;
    r->state = rb->h.state;
    r->ud = rb->ud;
    r->ev = (rt_broker_state_event_t){.state = st,
                                      .gap = gap,
                                      .down_ms = down_ms,
                                      .refused = st == RT_BROKER_DOWN && rb->refusing_since};
    dispatch(rb, 0, run_state, r);
}

/* Answers a job that will not run (or whose connection broke) with err. */
static void fail_job(rb_t *rb, job_t *j, int err)
{
    if (j->kind == JOB_PUBLISH)
        atomic_fetch_add(&rb->dropped, 1);
    if (j->cb) {
        switch (j->kind) {
        case JOB_PUBLISH: {
            publish_result_t *r = calloc(1, sizeof(*r));
            if (r) {
                *r = (publish_result_t){rb, (rt_broker_publish_cb)j->cb, j->arg, err, {0, 0}};
                dispatch(rb, j->fd, run_publish_result, r);
            }
            break;
        }
        case JOB_HISTORY:
        case JOB_RECENT: {
            history_result_t *r = calloc(1, sizeof(*r));
            if (r) {
                *r = (history_result_t){
                    .rb = rb, .cb = (rt_broker_history_cb)j->cb, .arg = j->arg, .err = err};
                dispatch(rb, j->fd, run_history_result, r);
            }
            break;
        }
        case JOB_SESSION_TAKE: {
            session_result_t *r = calloc(1, sizeof(*r));
            if (r) {
                *r = (session_result_t){rb, (rt_broker_session_cb)j->cb, j->arg, err, NULL};
                dispatch(rb, j->fd, run_session_result, r);
            }
            break;
        }
        case JOB_PRESENCE_GET: {
            presence_result_t *r = calloc(1, sizeof(*r));
            if (r) {
                *r = (presence_result_t){
                    .rb = rb, .cb = (rt_broker_presence_cb)j->cb, .arg = j->arg, .err = err};
                dispatch(rb, j->fd, run_presence_result, r);
            }
            break;
        }
        case JOB_NODE_REQUEST: {
            request_result_t *r = calloc(1, sizeof(*r));
            if (r) {
                *r = (request_result_t){
                    .rb = rb, .cb = (rt_broker_request_cb)j->cb, .arg = j->arg, .err = err};
                dispatch(rb, j->fd, run_request_result, r);
            }
            break;
        }
        default:
            break;
        }
    }
    free(j);
}

/* ---------------------------------------------------------------------------------------
 * Messages
 * ------------------------------------------------------------------------------------- */

#define MSG_HEADER 9 /* version, flags (4), nrooms (2), nexcept (2) */

/* Decodes a message (in place: its strings stay in buf). names must hold nrooms + nexcept
 * pointers (msg_counts). Returns 0 or EDDY_EPROTO. */
static int msg_counts(const char *buf, size_t len, size_t *nrooms, size_t *nexcept)
{
    if (len < MSG_HEADER || buf[0] != 1)
        return EDDY_EPROTO;
    const unsigned char *u = (const unsigned char *)buf;
    *nrooms = u[5] | (size_t)u[6] << 8;
    *nexcept = u[7] | (size_t)u[8] << 8;
    return 0;
}

static const char *next_str(const char **p, const char *end)
{
    const char *s = *p;
    const char *nul = memchr(s, 0, (size_t)(end - s));
    if (!nul)
        return NULL;
    *p = nul + 1;
    return s;
}

static int msg_decode(const char *buf, size_t len, const char **origin, rt_broker_msg_t *m,
                      const char **names)
{
    size_t nr, ne;
    if (msg_counts(buf, len, &nr, &ne) != 0)
        return EDDY_EPROTO;
    const unsigned char *u = (const unsigned char *)buf;
    const char *p = buf + MSG_HEADER, *end = buf + len;
    m->flags = u[1] | (uint32_t)u[2] << 8 | (uint32_t)u[3] << 16 | (uint32_t)u[4] << 24;
    if (!(*origin = next_str(&p, end)) || !(m->nsp = next_str(&p, end)))
        return EDDY_EPROTO;
    for (size_t i = 0; i < nr + ne; i++)
        if (!(names[i] = next_str(&p, end)))
            return EDDY_EPROTO;
    m->rooms = names;
    m->nrooms = nr;
    m->except = names + nr;
    m->nexcept = ne;
    m->payload = p;
    m->payload_len = (size_t)(end - p);
    return 0;
}

/* ---------------------------------------------------------------------------------------
 * Building commands: each argument is measured in a first pass and written in a second,
 * into one allocation with the job.
 * ------------------------------------------------------------------------------------- */

typedef struct argb {
    int argc;
    size_t bytes;
    bool fill;
    const char **argv;
    size_t *lens;
    char *p;
    size_t cur;
} argb_t;

static void arg_put(argb_t *a, const void *data, size_t len)
{
    if (a->fill && len)
        memcpy(a->p + a->cur, data, len);
    a->cur += len;
}

static void arg_puts(argb_t *a, const char *s)
{
    arg_put(a, s, strlen(s));
}

static void arg_end(argb_t *a)
{
    if (a->fill) {
        a->p[a->cur] = 0;
        a->argv[a->argc] = a->p;
        a->lens[a->argc] = a->cur;
        a->p += a->cur + 1;
    }
    a->bytes += a->cur + 1;
    a->cur = 0;
    a->argc++;
}

static void arg_str(argb_t *a, const char *s)
{
    arg_puts(a, s);
    arg_end(a);
}

static void arg_u64(argb_t *a, uint64_t v)
{
    char num[24];
    arg_put(a, num, (size_t)snprintf(num, sizeof(num), "%llu", (unsigned long long)v));
    arg_end(a);
}

/* P{nsp}:<kind>[:<room>] */
static void arg_key(argb_t *a, rb_t *rb, const char *nsp, const char *kind, const char *room)
{
    arg_puts(a, rb->prefix);
    arg_put(a, "{", 1);
    arg_puts(a, nsp);
    arg_put(a, "}:", 2);
    arg_puts(a, kind);
    if (room) {
        arg_put(a, ":", 1);
        arg_puts(a, room);
    }
    arg_end(a);
}

static void arg_eval(argb_t *a, rb_t *rb, int script)
{
    arg_str(a, "EVALSHA");
    /* The sha is set by the thread when it sends (it loads the scripts per connection). */
    arg_put(a, "0000000000000000000000000000000000000000", 40);
    arg_end(a);
}

typedef void (*build_fn)(argb_t *a, rb_t *rb, const void *in);

/* Builds a job with the command build() describes, plus extra bytes after it. */
static job_t *job_build(rb_t *rb, build_fn build, const void *in, size_t extra)
{
    argb_t a = {0};
    build(&a, rb, in);
    /* The extra bytes (a pointer array) start aligned. */
    size_t base = sizeof(job_t) + (size_t)a.argc * (sizeof(char *) + sizeof(size_t)) + a.bytes;
    base = (base + sizeof(void *) - 1) & ~(sizeof(void *) - 1);
    job_t *j = calloc(1, base + extra);
    if (!j)
        return NULL;
    j->bytes = base + extra;
    j->extra = (char *)j + base;
    j->argc = a.argc;
    j->argvlen = (size_t *)(j + 1);
    j->argv = (const char **)(j->argvlen + a.argc);
    argb_t b = {.fill = true, .argv = j->argv, .lens = j->argvlen, .p = (char *)(j->argv + a.argc)};
    build(&b, rb, in);
    j->script = -1;
    return j;
}

static bool name_ok(const char *s)
{
    return s && !strchr(s, '}') && strlen(s) < 65536;
}

typedef struct publish_in {
    const rt_broker_msg_t *msg;
    uint64_t epoch;
} publish_in_t;

static void arg_message(argb_t *a, rb_t *rb, const rt_broker_msg_t *m);

static void build_publish(argb_t *a, rb_t *rb, const void *p)
{
    const publish_in_t *in = p;
    const rt_broker_msg_t *m = in->msg;
    size_t ntargets = m->nrooms ? m->nrooms : 1;
    arg_eval(a, rb, SCRIPT_PUBLISH);
    arg_u64(a, 1 + 2 * ntargets);
    arg_key(a, rb, m->nsp, "pos", NULL);
    for (size_t i = 0; i < ntargets; i++) {
        arg_key(a, rb, m->nsp, "x", m->nrooms ? m->rooms[i] : NULL);
        arg_key(a, rb, m->nsp, "t", m->nrooms ? m->rooms[i] : NULL);
    }
    arg_u64(a, in->epoch);
    arg_u64(a, rb->cfg.history_max);
    arg_u64(a, rb->cfg.history_age_ms);
    arg_u64(a, rb->cfg.history_meta_ttl_ms);
    arg_message(a, rb, m);
    for (size_t i = 0; i < ntargets; i++)
        arg_key(a, rb, m->nsp, "c", m->nrooms ? m->rooms[i] : NULL);
}

/* A plain publish's message (no_history): 'n', the broadcast's number (written when it is
 * sent), the publishing broker's instance and the broadcast's number on the channel it is
 * published to (written before each PUBLISH: see missed_note()), 16 hex digits each and
 * each followed by ':', then the message. */
#define PLAIN_TAG  'n'
#define PLAIN_HEAD 52
#define PLAIN_CHAN 35 /* where the channel's number starts */

static void put_hex16(char *out, uint64_t v)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--, v >>= 4)
        out[i] = hex[v & 15];
}

static void arg_message_body(argb_t *a, rb_t *rb, const rt_broker_msg_t *m);

/* PUBLISH, the message, then the channels (see job_t.plain). */
static void build_publish_plain(argb_t *a, rb_t *rb, const void *p)
{
    const publish_in_t *in = p;
    const rt_broker_msg_t *m = in->msg;
    size_t ntargets = m->nrooms ? m->nrooms : 1;
    char head[PLAIN_HEAD];
    memset(head, '0', sizeof(head));
    head[0] = PLAIN_TAG;
    put_hex16(head + 18, rb->instance);
    head[17] = head[34] = head[51] = ':';
    arg_str(a, rb->pub_verb);
    arg_put(a, head, sizeof(head));
    arg_message_body(a, rb, m);
    arg_end(a);
    for (size_t i = 0; i < ntargets; i++)
        arg_key(a, rb, m->nsp, "c", m->nrooms ? m->rooms[i] : NULL);
}

/* A broadcast's message (see rt_broker.h), the argument's bytes so far. */
static void arg_message_body(argb_t *a, rb_t *rb, const rt_broker_msg_t *m)
{
    unsigned char hdr[MSG_HEADER] = {1,
                                     (unsigned char)m->flags,
                                     (unsigned char)(m->flags >> 8),
                                     (unsigned char)(m->flags >> 16),
                                     (unsigned char)(m->flags >> 24),
                                     (unsigned char)m->nrooms,
                                     (unsigned char)(m->nrooms >> 8),
                                     (unsigned char)m->nexcept,
                                     (unsigned char)(m->nexcept >> 8)};
    arg_put(a, hdr, sizeof(hdr));
    arg_put(a, rb->node_id, strlen(rb->node_id) + 1);
    arg_put(a, m->nsp, strlen(m->nsp) + 1);
    for (size_t i = 0; i < m->nrooms; i++)
        arg_put(a, m->rooms[i], strlen(m->rooms[i]) + 1);
    for (size_t i = 0; i < m->nexcept; i++)
        arg_put(a, m->except[i], strlen(m->except[i]) + 1);
    arg_put(a, m->payload, m->payload_len);
}

/* A broadcast's message argument. */
static void arg_message(argb_t *a, rb_t *rb, const rt_broker_msg_t *m)
{
    arg_message_body(a, rb, m);
    arg_end(a);
}

static int enqueue(rb_t *rb, job_t *j)
{
    pthread_mutex_lock(&rb->lock);
    if (rb->queued + 1 > rb->cfg.queue_max ||
        rb->queued_bytes + j->bytes > rb->cfg.queue_max_bytes) {
        bool log = !rb->drop_logged;
        rb->drop_logged = true;
        size_t queued = rb->queued, bytes = rb->queued_bytes;
        pthread_mutex_unlock(&rb->lock);
        uint64_t dropped = atomic_fetch_add(&rb->dropped, 1) + 1;
        if (log)
            eddy_log(rb->cfg.log, EDDY_LOG_WARNING,
                     "rt_broker: queue full (%zu requests, %zu bytes): dropping (%llu dropped "
                     "so far)",
                     queued, bytes, (unsigned long long)dropped);
        free(j);
        return EDDY_EDROPPED;
    }
    j->next = NULL;
    /* Answers have their own queue: a barrier holds the other one. */
    job_t **head = j->kind == JOB_NODE_REPLY ? &rb->rhead : &rb->head;
    job_t **tail = j->kind == JOB_NODE_REPLY ? &rb->rtail : &rb->tail;
    if (*tail)
        (*tail)->next = j;
    else
        *head = j;
    *tail = j;
    rb->queued++;
    rb->queued_bytes += j->bytes;
    pthread_mutex_unlock(&rb->lock);
    wake(rb);
    return 0;
}

/* Queues j first, past the bounds: it continues a request that already left the queue. */
static void enqueue_front(rb_t *rb, job_t *j)
{
    pthread_mutex_lock(&rb->lock);
    j->next = rb->head;
    rb->head = j;
    if (!rb->tail)
        rb->tail = j;
    rb->queued++;
    rb->queued_bytes += j->bytes;
    pthread_mutex_unlock(&rb->lock);
}

static __thread uint64_t epoch_rng;

/* A fresh epoch candidate per request: it becomes the namespace's epoch only if the
 * namespace has none (first use, or after a flush), and then it must differ from any
 * epoch before. 0 if the kernel gives no randomness. */
static uint64_t new_epoch(void)
{
    if (!epoch_rng &&
        (getrandom(&epoch_rng, sizeof(epoch_rng), 0) != sizeof(epoch_rng) || !epoch_rng))
        return 0;
    uint64_t epoch = 0;
    while (!epoch)
        epoch = rand64(&epoch_rng) >> (64 - RT_HISTORY_EPOCH_BITS);
    return epoch;
}

static int rb_publish(rt_broker_t *b, const rt_broker_msg_t *msg, eddy_fd_t fd,
                      rt_broker_publish_cb cb, void *arg)
{
    rb_t *rb = (rb_t *)b;
    if (!msg || !name_ok(msg->nsp) || msg->nrooms > 65535 || msg->nexcept > 65535 ||
        (msg->payload_len && !msg->payload))
        return EDDY_EINVAL;
    for (size_t i = 0; i < msg->nrooms; i++)
        if (!name_ok(msg->rooms[i]))
            return EDDY_EINVAL;
    for (size_t i = 0; i < msg->nexcept; i++)
        if (!msg->except[i] || strlen(msg->except[i]) >= 65536)
            return EDDY_EINVAL;
    bool plain = rb->cfg.no_history;
    publish_in_t in = {msg, plain ? 0 : new_epoch()};
    if (!plain && !in.epoch)
        return EDDY_ENOMEM;
    job_t *j = job_build(rb, plain ? build_publish_plain : build_publish, &in, 0);
    if (!j)
        return EDDY_ENOMEM;
    j->kind = JOB_PUBLISH;
    if (plain)
        j->plain = j->argc - 2;
    else
        j->script = SCRIPT_PUBLISH;
    j->fd = fd;
    j->cb = (void (*)(void))cb;
    j->arg = arg;
    return enqueue(rb, j);
}

typedef struct history_in {
    const char *nsp;
    rt_position_t after;
    const char *const *rooms;
    size_t nrooms;
    uint64_t candidate;
} history_in_t;

static void build_history(argb_t *a, rb_t *rb, const void *p)
{
    const history_in_t *in = p;
    arg_eval(a, rb, SCRIPT_HISTORY);
    arg_u64(a, 1 + 2 * (in->nrooms + 1));
    arg_key(a, rb, in->nsp, "pos", NULL);
    arg_key(a, rb, in->nsp, "x", NULL);
    arg_key(a, rb, in->nsp, "t", NULL);
    for (size_t i = 0; i < in->nrooms; i++) {
        arg_key(a, rb, in->nsp, "x", in->rooms[i]);
        arg_key(a, rb, in->nsp, "t", in->rooms[i]);
    }
    arg_u64(a, in->after.epoch);
    arg_u64(a, in->after.seq);
    arg_u64(a, rb->cfg.history_max_entries);
    arg_u64(a, in->candidate);
    /* The rooms again, NUL-terminated, for the except filter: after the command. */
    for (size_t i = 0; i < in->nrooms; i++)
        arg_str(a, in->rooms[i]);
    arg_str(a, in->nsp);
}

static int rb_history(rt_broker_t *b, const char *nsp, rt_position_t after,
                      const char *const *rooms, size_t nrooms, eddy_fd_t fd,
                      rt_broker_history_cb cb, void *arg)
{
    rb_t *rb = (rb_t *)b;
    if (!cb || !name_ok(nsp) || (nrooms && !rooms))
        return EDDY_EINVAL;
    for (size_t i = 0; i < nrooms; i++)
        if (!name_ok(rooms[i]))
            return EDDY_EINVAL;
    if (rb->cfg.no_history) {
        /* Nothing is kept: answered RT_HISTORY_GAP without asking Redis, in queue order. */
        job_t *j = calloc(1, sizeof(*j));
        if (!j)
            return EDDY_ENOMEM;
        *j = (job_t){.kind = JOB_HISTORY, .script = -1, .fd = fd, .bytes = sizeof(*j)};
        j->cb = (void (*)(void))cb;
        j->arg = arg;
        return enqueue(rb, j);
    }
    history_in_t in = {nsp, after, rooms, nrooms, new_epoch()};
    if (!in.candidate)
        return EDDY_ENOMEM;
    job_t *j = job_build(rb, build_history, &in, nrooms * sizeof(char *));
    if (!j)
        return EDDY_ENOMEM;
    /* The trailing arguments are not sent: they are the rooms and nsp for the filter. */
    j->argc -= (int)nrooms + 1;
    j->rooms = j->extra;
    for (size_t i = 0; i < nrooms; i++)
        j->rooms[i] = j->argv[j->argc + i];
    j->nsp = j->argv[j->argc + nrooms];
    j->nrooms = nrooms;
    j->after = after;
    j->kind = JOB_HISTORY;
    j->script = SCRIPT_HISTORY;
    j->fd = fd;
    j->cb = (void (*)(void))cb;
    j->arg = arg;
    return enqueue(rb, j);
}

typedef struct session_in {
    char op; /* 'l' live, 'd' disconnected, 't' take; 0: a pid without tag (plain key) */
    const char *pid;
    const void *data;
    size_t len;
    uint64_t ttl_ms;
} session_in_t;

/* P<kind><tag>[:<node's tag>]: "sessions:{tag}" is a pid tag's holders set,
 * "sessions:{tag}:<holder>" the hash of live records a holder keeps for it. */
static void arg_sessions(argb_t *a, rb_t *rb, const char *pid, const char *holder, bool end)
{
    arg_puts(a, rb->prefix);
    arg_puts(a, "sessions:{");
    arg_put(a, pid, RT_BROKER_SESSION_TAG_LEN);
    arg_put(a, "}", 1);
    if (holder) {
        arg_put(a, ":", 1);
        arg_puts(a, holder);
    }
    if (end)
        arg_end(a);
}

/* Psession:{T}<rest of the pid> for a tagged pid (T: its tag, so that the record is in the
 * slot of the tag's hashes: one script touches both), else Psession:<pid>. */
static void arg_session_key(argb_t *a, rb_t *rb, const session_in_t *in)
{
    arg_puts(a, rb->prefix);
    if (in->op) {
        arg_puts(a, "session:{");
        arg_put(a, in->pid, RT_BROKER_SESSION_TAG_LEN);
        arg_put(a, "}", 1);
        arg_puts(a, in->pid + RT_BROKER_SESSION_TAG_LEN);
    } else {
        arg_puts(a, "session:");
        arg_puts(a, in->pid);
    }
    arg_end(a);
}

static void build_session(argb_t *a, rb_t *rb, const void *p)
{
    const session_in_t *in = p;
    if (in->op) {
        arg_eval(a, rb, SCRIPT_SESSION);
        arg_u64(a, 3);
    } else {
        arg_str(a, in->data ? "SET" : "GETDEL");
    }
    arg_session_key(a, rb, in);
    if (in->op) {
        arg_sessions(a, rb, in->pid, NULL, true);
        arg_sessions(a, rb, in->pid, rb->session_tag, true);
        arg_put(a, &in->op, 1);
        arg_end(a);
        arg_str(a, in->pid);
        if (in->op == 't')
            return;
    }
    if (in->data) {
        arg_put(a, in->data, in->len);
        arg_end(a);
        if (!in->op)
            arg_str(a, "PX");
        arg_u64(a, in->ttl_ms);
        if (in->op == 'l')
            arg_str(a, rb->session_tag);
    }
}

/* A pid this process's pids' shape: its tag names the holders' hashes (rt_broker.h). */
static bool pid_tagged(const char *pid)
{
    size_t i = 0;
    for (; pid[i] && i < RT_BROKER_SESSION_TAG_LEN; i++) {
        char c = pid[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return false;
    }
    return i == RT_BROKER_SESSION_TAG_LEN;
}

static int rb_session_put(rt_broker_t *b, const char *pid, const void *data, size_t len,
                          uint64_t ttl_ms)
{
    rb_t *rb = (rb_t *)b;
    bool tagged = pid && pid_tagged(pid);
    if (!pid || !*pid || (len && !data) || (!ttl_ms && !tagged))
        return EDDY_EINVAL;
    /* A live record lives with this node's lease (renewed by the heartbeat), then linger. */
    session_in_t in = {tagged ? (ttl_ms ? 'd' : 'l') : 0, pid, data ? data : "", len,
                       ttl_ms ? ttl_ms : (uint64_t)rb->cfg.lease_ms + rb->cfg.session_linger_ms};
    job_t *j = job_build(rb, build_session, &in, 0);
    if (!j)
        return EDDY_ENOMEM;
    j->kind = ttl_ms ? JOB_SESSION_PUT : JOB_SESSION_LIVE;
    if (in.op)
        j->script = SCRIPT_SESSION;
    return enqueue(rb, j);
}

static int rb_session_take(rt_broker_t *b, const char *pid, eddy_fd_t fd, rt_broker_session_cb cb,
                           void *arg)
{
    rb_t *rb = (rb_t *)b;
    if (!pid || !*pid || !cb)
        return EDDY_EINVAL;
    session_in_t in = {pid_tagged(pid) ? 't' : 0, pid, NULL, 0, 0};
    job_t *j = job_build(rb, build_session, &in, 0);
    if (!j)
        return EDDY_ENOMEM;
    j->kind = JOB_SESSION_TAKE;
    if (in.op)
        j->script = SCRIPT_SESSION;
    j->fd = fd;
    j->cb = (void (*)(void))cb;
    j->arg = arg;
    return enqueue(rb, j);
}

static void rb_session_pid(rt_broker_t *b, char pid[RT_HISTORY_PID_SIZE])
{
    rb_t *rb = (rb_t *)b;
    memcpy(pid, rb->session_tag, RT_BROKER_SESSION_TAG_LEN);
    rt_random_chars(pid + RT_BROKER_SESSION_TAG_LEN,
                    RT_HISTORY_PID_LEN - RT_BROKER_SESSION_TAG_LEN);
    pid[RT_HISTORY_PID_LEN] = '\0';
}

/* A live record was stored (the pid in argv[7]; its first characters are its tag): the
 * heartbeat renews this node's hash for that tag from now on (thread only). */
/* A take's second step (lua_session_holders): the pid and the holders (strings) named. */
typedef struct holders_in {
    const char *pid;
    const redisReply *holders;
} holders_in_t;

static void build_take_holders(argb_t *a, rb_t *rb, const void *p)
{
    const holders_in_t *in = p;
    size_t n = 0;
    for (size_t i = 0; i < in->holders->elements; i++)
        n += in->holders->element[i]->type == REDIS_REPLY_STRING;
    arg_str(a, "EVAL");
    arg_str(a, lua_session_holders);
    arg_u64(a, 1 + n);
    session_in_t key = {'t', in->pid, NULL, 0, 0};
    arg_session_key(a, rb, &key);
    for (size_t i = 0; i < in->holders->elements; i++)
        if (in->holders->element[i]->type == REDIS_REPLY_STRING)
            arg_sessions(a, rb, in->pid, in->holders->element[i]->str, true);
    arg_str(a, in->pid);
}

/* Take j found no disconnected record, and r (owned) names the holders of live records of
 * its pid's tag: the second step goes first in the queue, with j's result callback. */
static void take_holders(rb_t *rb, job_t *j, redisReply *r)
{
    holders_in_t in = {j->argv[7], r};
    job_t *next = job_build(rb, build_take_holders, &in, 0);
    freeReplyObject(r);
    if (!next) {
        fail_job(rb, j, EDDY_ENOMEM);
        return;
    }
    next->kind = JOB_SESSION_TAKE;
    next->fd = j->fd;
    next->cb = j->cb;
    next->arg = j->arg;
    free(j);
    enqueue_front(rb, next);
}

static void session_held(rb_t *rb, const job_t *j)
{
    const char *tag = j->argv[7];
    for (size_t i = 0; i < rb->ntags; i++) {
        if (memcmp(rb->tags[i], tag, RT_BROKER_SESSION_TAG_LEN) == 0)
            return;
    }
    void *grown = realloc(rb->tags, (rb->ntags + 1) * sizeof(*rb->tags));
    if (!grown) {
        eddy_log(rb->cfg.log, EDDY_LOG_ERROR,
                 "rt_broker: out of memory: live session records may expire early");
        return;
    }
    rb->tags = grown;
    memcpy(rb->tags[rb->ntags], tag, RT_BROKER_SESSION_TAG_LEN);
    rb->tags[rb->ntags++][RT_BROKER_SESSION_TAG_LEN] = '\0';
}

/* Appends the renewal of the live records this node holds (one hash per pid tag, and the
 * tag's holders set) to its lease plus the linger: two commands per tag held, whatever the
 * number of sockets; session_renewed() reads their replies. */
static int session_renew(rb_t *rb)
{
    char ttl[24];
    snprintf(ttl, sizeof(ttl), "%llu",
             (unsigned long long)rb->cfg.lease_ms + rb->cfg.session_linger_ms);
    for (size_t i = 0; i < rb->ntags; i++) {
        if (redisAppendCommand(rb->cmd, "PEXPIRE %ssessions:{%s}:%s %s", rb->prefix, rb->tags[i],
                               rb->session_tag, ttl) != REDIS_OK ||
            redisAppendCommand(rb->cmd, "PEXPIRE %ssessions:{%s} %s", rb->prefix, rb->tags[i],
                               ttl) != REDIS_OK)
            return -1;
    }
    rb->renewing = rb->ntags;
    return 0;
}

/* Reads session_renew()'s replies; forgets the tags whose hash is gone (empty). Tags held
 * since (a live record stored in the batch the heartbeat rode along with) had no renewal
 * appended: they are kept, after the others. */
static int session_renewed(rb_t *rb)
{
    size_t kept = 0;
    int rc = 0;
    for (size_t i = 0; i < rb->renewing; i++) {
        redisReply *r[2] = {NULL, NULL};
        for (int k = 0; k < 2; k++) {
            if (rt_redis_get_reply(rb->cmd, (void **)&r[k]) != REDIS_OK)
                rc = -1;
        }
        bool gone = r[0] && r[0]->type == REDIS_REPLY_INTEGER && r[0]->integer == 0;
        if (rc == 0 && !gone)
            memmove(rb->tags[kept++], rb->tags[i], sizeof(rb->tags[i]));
        for (int k = 0; k < 2; k++) {
            if (r[k])
                freeReplyObject(r[k]);
        }
        if (rc)
            return -1;
    }
    for (size_t i = rb->renewing; i < rb->ntags; i++)
        memmove(rb->tags[kept++], rb->tags[i], sizeof(rb->tags[i]));
    rb->ntags = kept;
    return 0;
}

typedef struct presence_in {
    int kind;
    const char *nsp, *room, *member;
    const void *info;
    size_t len;
} presence_in_t;

static void build_presence(argb_t *a, rb_t *rb, const void *p)
{
    const presence_in_t *in = p;
    if (in->kind == JOB_PRESENCE_GET) {
        arg_eval(a, rb, SCRIPT_PRESENCE);
        arg_u64(a, 2);
        /* In a cluster the namespace's lease, in the slot of its presence hashes. */
        if (rb->cluster_nodes)
            arg_key(a, rb, in->nsp, "l", NULL);
        else
            arg_str(a, rb->nodes_key);
        arg_key(a, rb, in->nsp, "p", in->room);
        return;
    }
    arg_str(a, in->kind == JOB_PRESENCE_SET ? "HSET" : "HDEL");
    arg_key(a, rb, in->nsp, "p", in->room);
    arg_puts(a, rb->node_id);
    arg_put(a, "\x1f", 1);
    arg_puts(a, in->member);
    arg_end(a);
    if (in->kind == JOB_PRESENCE_SET) {
        arg_put(a, in->info, in->len);
        arg_end(a);
    }
}

static int presence_job(rb_t *rb, const presence_in_t *in, eddy_fd_t fd, void (*cb)(void),
                        void *arg)
{
    if (!name_ok(in->nsp) || !in->room || (in->kind != JOB_PRESENCE_GET && !in->member) ||
        (in->len && !in->info))
        return EDDY_EINVAL;
    job_t *j = job_build(rb, build_presence, in, 0);
    if (!j)
        return EDDY_ENOMEM;
    j->kind = in->kind;
    j->script = in->kind == JOB_PRESENCE_GET ? SCRIPT_PRESENCE : -1;
    j->fd = fd;
    j->cb = cb;
    j->arg = arg;
    return enqueue(rb, j);
}

static int rb_presence_set(rt_broker_t *b, const char *nsp, const char *room, const char *member,
                           const void *info, size_t len)
{
    presence_in_t in = {JOB_PRESENCE_SET, nsp, room, member, info ? info : "", len};
    return presence_job((rb_t *)b, &in, 0, NULL, NULL);
}

static int rb_presence_del(rt_broker_t *b, const char *nsp, const char *room, const char *member)
{
    presence_in_t in = {JOB_PRESENCE_DEL, nsp, room, member, NULL, 0};
    return presence_job((rb_t *)b, &in, 0, NULL, NULL);
}

static int rb_presence_get(rt_broker_t *b, const char *nsp, const char *room, eddy_fd_t fd,
                           rt_broker_presence_cb cb, void *arg)
{
    if (!cb)
        return EDDY_EINVAL;
    presence_in_t in = {JOB_PRESENCE_GET, nsp, room, NULL, NULL, 0};
    return presence_job((rb_t *)b, &in, fd, (void (*)(void))cb, arg);
}

/* ---------------------------------------------------------------------------------------
 * The newest entries of a room (rt_broker_recent()): one read of its stream, newest
 * first, with the namespace's position. Sent with EVAL (the script cache keeps it): it is
 * rare (a join, an API read), so it stays out of the preloaded scripts.
 * KEYS = pos, stream; ARGV = count. Returns {top, epoch, seq, message, ...}.
 * ------------------------------------------------------------------------------------- */

static const char lua_recent[] =
    "local ep = redis.call('HGET', KEYS[1], 'e') or '0'\n"
    "local top = tonumber(redis.call('HGET', KEYS[1], 's') or '0')\n"
    "local out = {top, ep}\n"
    "for _, e in ipairs(redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', ARGV[1])) do\n"
    "  local f = e[2]\n"
    "  local s, m = 0, ''\n"
    "  for k = 1, #f, 2 do\n"
    "    if f[k] == 's' then s = tonumber(f[k + 1]) elseif f[k] == 'm' then m = f[k + 1] end\n"
    "  end\n"
    "  out[#out + 1] = s; out[#out + 1] = m\n"
    "end\n"
    "return out\n";

typedef struct recent_in {
    const char *nsp, *room;
    size_t n;
} recent_in_t;

static void build_recent(argb_t *a, rb_t *rb, const void *p)
{
    const recent_in_t *in = p;
    arg_str(a, "EVAL");
    arg_str(a, lua_recent);
    arg_u64(a, 2);
    arg_key(a, rb, in->nsp, "pos", NULL);
    arg_key(a, rb, in->nsp, "x", in->room);
    arg_u64(a, in->n);
}

static int rb_recent(rt_broker_t *b, const char *nsp, const char *room, size_t n, eddy_fd_t fd,
                     rt_broker_history_cb cb, void *arg)
{
    rb_t *rb = (rb_t *)b;
    if (!cb || !n || !name_ok(nsp) || (room && !name_ok(room)))
        return EDDY_EINVAL;
    recent_in_t in = {nsp, room, n < rb->cfg.history_max_entries ? n : rb->cfg.history_max_entries};
    job_t *j = job_build(rb, build_recent, &in, 0);
    if (!j)
        return EDDY_ENOMEM;
    j->kind = JOB_RECENT;
    j->fd = fd;
    j->cb = (void (*)(void))cb;
    j->arg = arg;
    return enqueue(rb, j);
}

/* ---------------------------------------------------------------------------------------
 * Node requests: PUBLISH to Pnodes:all or Pnode:<id>, answers to the requester's Pnode:<id>;
 * in a Redis Cluster SPUBLISH to the namespace's P{nsp}:q or P{nsp}:n:<id>, answers to the
 * requester's P{nsp}:n:<id> (every node that serves the namespace listens there, whatever
 * its parts are named)
 * ------------------------------------------------------------------------------------- */

#define NODE_MSG_HEADER 10 /* version, kind, id (8) */

int rt_broker_node_msg_decode(const void *buf, size_t len, char *kind, uint64_t *id,
                              const char **node, const void **data, size_t *data_len)
{
    const unsigned char *u = buf;
    if (!buf || len < NODE_MSG_HEADER || u[0] != 2 || (u[1] != 'Q' && u[1] != 'R'))
        return EDDY_EPROTO;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)u[2 + i] << (8 * i);
    const char *p = (const char *)buf + NODE_MSG_HEADER, *end = (const char *)buf + len;
    const char *nul = memchr(p, 0, (size_t)(end - p));
    if (!nul || nul == p || nul - p > RT_BROKER_NODE_ID_MAX || (u[1] == 'R' && !v))
        return EDDY_EPROTO;
    *kind = (char)u[1];
    *id = v;
    *node = p;
    *data = nul + 1;
    *data_len = (size_t)(end - nul - 1);
    return 0;
}

typedef struct node_msg_in {
    const char *to;  /* NULL: every node */
    const char *key; /* Redis Cluster: the namespace whose channels carry it */
    char kind;
    uint64_t id;
    const void *data;
    size_t len;
} node_msg_in_t;

static void build_node_msg(argb_t *a, rb_t *rb, const void *p)
{
    const node_msg_in_t *in = p;
    arg_str(a, rb->pub_verb);
    if (rb->cluster_nodes) {
        arg_key(a, rb, in->key, in->to ? "n" : "q", in->to);
    } else if (in->to) {
        arg_puts(a, rb->node_prefix);
        arg_puts(a, "node:");
        arg_puts(a, in->to);
        arg_end(a);
    } else {
        arg_str(a, rb->all_channel);
    }
    unsigned char hdr[NODE_MSG_HEADER] = {2, (unsigned char)in->kind};
    for (int i = 0; i < 8; i++)
        hdr[2 + i] = (unsigned char)(in->id >> (8 * i));
    arg_put(a, hdr, sizeof(hdr));
    arg_put(a, rb->node_id, strlen(rb->node_id) + 1);
    arg_put(a, in->data, in->len);
    arg_end(a);
    /* The target and the key again, after the command (not sent). */
    arg_str(a, in->to ? in->to : "");
    arg_str(a, in->key ? in->key : "");
}

static bool node_id_ok(const char *id)
{
    return id && *id && strlen(id) <= RT_BROKER_NODE_ID_MAX;
}

static int rb_request(rt_broker_t *b, const char *node, const char *key, const void *data,
                      size_t len, uint32_t flags, uint32_t timeout_ms, eddy_fd_t fd,
                      rt_broker_request_cb cb, void *arg)
{
    rb_t *rb = (rb_t *)b;
    if ((node && !node_id_ok(node)) || (len && !data) || !timeout_ms ||
        (flags & ~RT_BROKER_BARRIER) || (rb->cluster_nodes && !name_ok(key)))
        return EDDY_EINVAL;
    bool answers = cb || (flags & RT_BROKER_BARRIER);
    node_msg_in_t in = {
        node, key, 'Q', answers ? atomic_fetch_add(&rb->next_req, 1) + 1 : 0, data ? data : "",
        len};
    job_t *j = job_build(rb, build_node_msg, &in, 0);
    if (!j)
        return EDDY_ENOMEM;
    j->argc -= 2;
    j->target = node ? j->argv[j->argc] : NULL;
    j->nsp = rb->cluster_nodes ? j->argv[j->argc + 1] : NULL;
    j->kind = JOB_NODE_REQUEST;
    j->req_id = in.id;
    j->rflags = flags;
    j->deadline = now_ms() + timeout_ms;
    j->fd = fd;
    j->cb = (void (*)(void))cb;
    j->arg = arg;
    return enqueue(rb, j);
}

static int rb_respond(rt_broker_t *b, const char *node, const char *key, uint64_t id,
                      const void *data, size_t len)
{
    rb_t *rb = (rb_t *)b;
    if (!node_id_ok(node) || !id || (len && !data) || (rb->cluster_nodes && !name_ok(key)))
        return EDDY_EINVAL;
    node_msg_in_t in = {node, key, 'R', id, data ? data : "", len};
    job_t *j = job_build(rb, build_node_msg, &in, 0);
    if (!j)
        return EDDY_ENOMEM;
    j->argc -= 2;
    j->nsp = rb->cluster_nodes ? j->argv[j->argc + 1] : NULL;
    j->kind = JOB_NODE_REPLY;
    return enqueue(rb, j);
}

/* The nodes a request through key waits for (rb->lock held; *n of them): in a cluster those
 * alive in the lease of key, a namespace this broker serves, else the alive nodes of every
 * namespace it serves (or, not in a cluster, of its lease). */
static char (*waited(rb_t *rb, const char *key, size_t *n))[RT_BROKER_NODE_ID_SIZE]
{
    for (lease_t *l = rb->leases; key && l; l = l->next)
        if (l->ids && strcmp(l->nsp, key) == 0) {
            *n = l->n;
            return l->ids;
        }
    *n = rb->nnodes;
    return rb->nodes;
}

/* Hands q's outcome to its callback and frees it (thread only). */
static void nreq_finish(rb_t *rb, nreq_t *q)
{
    for (nreq_t **it = &rb->reqs; *it; it = &(*it)->next)
        if (*it == q) {
            *it = q->next;
            break;
        }
    if (rb->barrier == q)
        rb->barrier = NULL;
    if (!q->cb) {
        nreq_free(q);
        return;
    }
    request_result_t *r = calloc(1, sizeof(*r));
    if (r) {
        r->replies = calloc(q->n ? q->n : 1, sizeof(*r->replies));
        r->missing = calloc(q->n ? q->n : 1, sizeof(*r->missing));
    }
    if (!r || !r->replies || !r->missing) {
        if (r) {
            free(r->replies);
            free(r->missing);
        }
        eddy_log(rb->cfg.log, EDDY_LOG_ERROR,
                 "rt_broker: out of memory: a node request's "
                 "answers are lost");
        nreq_free(q);
        free(r);
        return;
    }
    r->rb = rb;
    r->cb = q->cb;
    r->arg = q->arg;
    r->req = q;
    r->n = q->answered;
    for (size_t i = 0; i < q->n; i++) {
        nreq_slot_t *sl = &q->slots[i];
        if (sl->state == 1)
            r->replies[sl->order] =
                (rt_broker_reply_t){sl->node, sl->data ? sl->data : "", sl->len};
        else
            r->missing[r->nmissing++] = sl->node;
    }
    dispatch(rb, q->fd, run_request_result, r);
}

/* Registers the request job j is sending (thread only); a target that is not alive is
 * missing at once. Returns false when out of memory (j is then answered). */
static bool nreq_start(rb_t *rb, job_t *j)
{
    pthread_mutex_lock(&rb->lock);
    size_t nalive;
    char(*alive_ids)[RT_BROKER_NODE_ID_SIZE] = waited(rb, j->nsp, &nalive);
    size_t n = j->target ? 1 : nalive;
    nreq_t *q = calloc(1, sizeof(*q) + (n ? n : 1) * sizeof(nreq_slot_t));
    if (q && j->nsp && !(q->key = strdup(j->nsp))) {
        free(q);
        q = NULL;
    }
    if (q) {
        for (size_t i = 0; i < n; i++)
            memcpy(q->slots[i].node, j->target ? j->target : alive_ids[i],
                   j->target ? strlen(j->target) + 1 : RT_BROKER_NODE_ID_SIZE);
        q->n = q->left = n;
        for (size_t i = 0; j->target && i < 1; i++) {
            bool alive = false;
            for (size_t k = 0; k < nalive && !alive; k++)
                alive = strcmp(alive_ids[k], j->target) == 0;
            if (!alive) {
                q->slots[0].state = 2;
                q->left = 0;
            }
        }
    }
    pthread_mutex_unlock(&rb->lock);
    if (!q)
        return false;
    q->id = j->req_id;
    q->deadline = j->deadline;
    q->cb = (rt_broker_request_cb)j->cb;
    q->arg = j->arg;
    q->fd = j->fd;
    q->next = rb->reqs;
    rb->reqs = q;
    if (j->rflags & RT_BROKER_BARRIER)
        rb->barrier = q;
    if (!q->left)
        nreq_finish(rb, q);
    return true;
}

/* An answer from node to request id. */
static void nreq_answer(rb_t *rb, uint64_t id, const char *node, const void *data, size_t len)
{
    nreq_t *q = rb->reqs;
    while (q && q->id != id)
        q = q->next;
    for (size_t i = 0; q && i < q->n; i++) {
        nreq_slot_t *sl = &q->slots[i];
        if (sl->state != 0 || strcmp(sl->node, node) != 0)
            continue;
        if (len && !(sl->data = malloc(len))) {
            eddy_log(rb->cfg.log, EDDY_LOG_ERROR,
                     "rt_broker: out of memory: the answer of node %s is lost", node);
            return;
        }
        if (len)
            memcpy(sl->data, data, len);
        sl->len = len;
        sl->state = 1;
        sl->order = q->answered++;
        if (--q->left == 0)
            nreq_finish(rb, q);
        return;
    }
}

/* Ends the waits that are over: at their deadline (everything: all of them), and for the
 * nodes no longer alive (after a heartbeat). */
static void nreq_sweep(rb_t *rb, uint64_t now, bool everything)
{
    for (nreq_t *q = rb->reqs, *next; q; q = next) {
        next = q->next;
        if (everything || now >= q->deadline) {
            nreq_finish(rb, q);
            continue;
        }
        pthread_mutex_lock(&rb->lock);
        size_t nalive;
        char(*alive_ids)[RT_BROKER_NODE_ID_SIZE] = waited(rb, q->key, &nalive);
        for (size_t i = 0; i < q->n; i++) {
            nreq_slot_t *sl = &q->slots[i];
            bool alive = false;
            for (size_t k = 0; sl->state == 0 && k < nalive && !alive; k++)
                alive = strcmp(alive_ids[k], sl->node) == 0;
            if (sl->state == 0 && !alive) {
                sl->state = 2;
                q->left--;
            }
        }
        pthread_mutex_unlock(&rb->lock);
        if (!q->left)
            nreq_finish(rb, q);
    }
}

typedef struct node_request {
    rb_t *rb;
    void (*request)(rt_broker_t *b, const rt_broker_request_t *req, void *ud);
    void *ud;
    redisReply *reply;
    rt_broker_request_t req;
    char key[];
} node_request_t;

static void run_node_request(eddy_server_t *srv, void *p)
{
    node_request_t *nr = p;
    nr->request(&nr->rb->base, &nr->req, nr->ud);
    freeReplyObject(nr->reply);
    free(nr);
}

/* A message on one of the node's channels (r owned), key[0..klen) the namespace of the
 * channel (NULL: not a namespace's). */
static void handle_node_msg(rb_t *rb, redisReply *r, const char *key, size_t klen)
{
    char kind;
    uint64_t id;
    const char *node;
    const void *data;
    size_t len;
    if (rt_broker_node_msg_decode(r->element[2]->str, r->element[2]->len, &kind, &id, &node, &data,
                                  &len) != 0) {
        eddy_log(rb->cfg.log, EDDY_LOG_WARNING, "rt_broker: malformed node message on %s dropped",
                 r->element[1]->str);
        freeReplyObject(r);
        return;
    }
    if (kind == 'R') {
        nreq_answer(rb, id, node, data, len);
        freeReplyObject(r);
        return;
    }
    node_request_t *nr = rb->h.request ? malloc(sizeof(*nr) + klen + 1) : NULL;
    if (!nr) {
        if (rb->h.request)
            eddy_log(rb->cfg.log, EDDY_LOG_ERROR,
                     "rt_broker: out of memory: a node request "
                     "is lost");
        freeReplyObject(r);
        return;
    }
    *nr = (node_request_t){
        rb, rb->h.request, rb->ud, r, {node, strcmp(node, rb->node_id) == 0, id, data, len, NULL}};
    if (key) {
        memcpy(nr->key, key, klen);
        nr->key[klen] = '\0';
        nr->req.key = nr->key;
    }
    dispatch(rb, 0, run_node_request, nr);
}

/* ---------------------------------------------------------------------------------------
 * Interest (subscriptions)
 * ------------------------------------------------------------------------------------- */

static uint64_t hash_bytes(const char *s, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return h;
}

static void channel_name(rb_t *rb, const char *nsp, const char *room, char *out, size_t *len)
{
    argb_t a = {.fill = true, .argv = (const char *[1]){0}, .lens = (size_t[1]){0}, .p = out};
    arg_key(&a, rb, nsp, "c", room);
    *len = a.lens[0];
}

static size_t channel_size(rb_t *rb, const char *nsp, const char *room)
{
    return rb->prefix_len + strlen(nsp) + (room ? strlen(room) + 1 : 0) + 6;
}

static sub_t **sub_slot(rb_t *rb, const char *ch, size_t len)
{
    sub_t **s = &rb->subs[hash_bytes(ch, len) & (rb->subs_cap - 1)];
    while (*s && ((*s)->len != len || memcmp((*s)->channel, ch, len) != 0))
        s = &(*s)->next;
    return s;
}

static void sub_mark(rb_t *rb, sub_t *s)
{
    if (!s->pending) {
        s->pending = true;
        s->pending_next = rb->pending;
        rb->pending = s;
    }
}

static int pattern_ref(rb_t *rb, const char *nsp, bool on);

static bool socket_tagged(const rb_t *rb, const char *room)
{
    return room && !rb->cluster_nodes &&
           strncmp(room, rb->socket_tag, RT_BROKER_SOCKET_TAG_LEN) == 0;
}

/* Adds refs references to the channel n->channel[0..len) (n: allocated by the caller,
 * taken over: it becomes the interest if the channel has none yet, else it is freed). */
static int sub_ref(rb_t *rb, sub_t *n, size_t len, size_t refs)
{
    pthread_mutex_lock(&rb->lock);
    if (rb->subs_count >= rb->subs_cap / 2) {
        size_t cap = rb->subs_cap * 2;
        sub_t **t = calloc(cap, sizeof(*t));
        if (!t) {
            pthread_mutex_unlock(&rb->lock);
            free(n);
            return EDDY_ENOMEM;
        }
        for (size_t i = 0; i < rb->subs_cap; i++)
            for (sub_t *s = rb->subs[i], *next; s; s = next) {
                next = s->next;
                size_t k = hash_bytes(s->channel, s->len) & (cap - 1);
                s->next = t[k];
                t[k] = s;
            }
        free(rb->subs);
        rb->subs = t;
        rb->subs_cap = cap;
    }
    sub_t **slot = sub_slot(rb, n->channel, len);
    sub_t *s = *slot;
    if (!s) {
        s = n;
        n = NULL;
        *s = (sub_t){.len = len};
        *slot = s;
        rb->subs_count++;
    }
    bool first = s->refs == 0;
    s->refs += refs;
    if (first)
        sub_mark(rb, s);
    pthread_mutex_unlock(&rb->lock);
    free(n);
    if (first)
        wake(rb);
    return 0;
}

/* A new interest in the channel P{nsp}:<kind>[:<room>] (kind one character), for sub_ref();
 * NULL: out of memory. */
static sub_t *sub_new(rb_t *rb, const char *nsp, const char *kind, const char *room, size_t *len)
{
    sub_t *n = malloc(sizeof(sub_t) + channel_size(rb, nsp, room));
    if (n) {
        argb_t a = {
            .fill = true, .argv = (const char *[1]){0}, .lens = (size_t[1]){0}, .p = n->channel};
        arg_key(&a, rb, nsp, kind, room);
        *len = a.lens[0];
    }
    return n;
}

static int sub_unref(rb_t *rb, const char *ch, size_t len);

/* Redis Cluster: takes (on) or drops a reference on the lease of nsp, a namespace this
 * broker serves. The first reference subscribes the namespace's node channels and makes
 * the thread write the lease before it sends anything more (leases_new), so that a node is
 * alive in a namespace before its presence entries and requests are there; the last one
 * unsubscribes them (the lease then runs out). */
static int lease_ref(rb_t *rb, const char *nsp, bool on)
{
    size_t len = strlen(nsp);
    lease_t *fresh = on ? calloc(1, sizeof(*fresh) + len + 1) : NULL;
    if (on && !fresh)
        return EDDY_ENOMEM;
    pthread_mutex_lock(&rb->lock);
    lease_t **it = &rb->leases;
    while (*it && strcmp((*it)->nsp, nsp) != 0)
        it = &(*it)->next;
    lease_t *l = *it, *gone = NULL;
    if (!l && !on) {
        pthread_mutex_unlock(&rb->lock);
        return EDDY_ENOTFOUND;
    }
    bool changed = !l || (!on && l->refs == 1);
    if (!l) {
        memcpy(fresh->nsp, nsp, len + 1);
        fresh->slot = rt_broker_crc16(nsp, len) % RT_BROKER_CLUSTER_SLOTS;
        *it = l = fresh;
        fresh = NULL;
        rb->leases_new = true;
    }
    if (on) {
        l->refs++;
    } else if (--l->refs == 0) {
        *it = l->next;
        gone = l;
    }
    pthread_mutex_unlock(&rb->lock);
    free(fresh);
    if (gone) {
        free(gone->ids);
        free(gone);
    }
    static const char *const kinds[2] = {"q", "n"};
    const char *rooms[2] = {NULL, rb->node_id};
    int rc = 0;
    for (int i = 0; changed && i < 2; i++) {
        size_t clen;
        sub_t *n = sub_new(rb, nsp, kinds[i], rooms[i], &clen);
        if (!n) {
            rc = EDDY_ENOMEM;
        } else if (on) {
            rc = sub_ref(rb, n, clen, 1) != 0 ? EDDY_ENOMEM : rc;
        } else {
            sub_unref(rb, n->channel, clen);
            free(n);
        }
    }
    return rc;
}

static int rb_subscribe(rt_broker_t *b, const char *nsp, const char *room)
{
    rb_t *rb = (rb_t *)b;
    if (!name_ok(nsp) || (room && !name_ok(room)))
        return EDDY_EINVAL;
    if (socket_tagged(rb, room))
        return pattern_ref(rb, nsp, true);
    if (!room && rb->cluster_nodes) {
        int rc = lease_ref(rb, nsp, true);
        if (rc != 0)
            return rc;
    }
    size_t len;
    sub_t *n = sub_new(rb, nsp, "c", room, &len);
    if (!n)
        return EDDY_ENOMEM;
    return sub_ref(rb, n, len, 1);
}

static int rb_unsubscribe(rt_broker_t *b, const char *nsp, const char *room)
{
    rb_t *rb = (rb_t *)b;
    if (!name_ok(nsp) || (room && !name_ok(room)))
        return EDDY_EINVAL;
    if (socket_tagged(rb, room))
        return pattern_ref(rb, nsp, false);
    if (!room && rb->cluster_nodes)
        lease_ref(rb, nsp, false);
    char ch[channel_size(rb, nsp, room)];
    size_t len;
    channel_name(rb, nsp, room, ch, &len);
    return sub_unref(rb, ch, len);
}

/* Drops a reference on the channel ch[0..len): EDDY_ENOTFOUND if it has none. */
static int sub_unref(rb_t *rb, const char *ch, size_t len)
{
    pthread_mutex_lock(&rb->lock);
    sub_t *s = *sub_slot(rb, ch, len);
    if (!s || !s->refs) {
        pthread_mutex_unlock(&rb->lock);
        return EDDY_ENOTFOUND;
    }
    bool last = --s->refs == 0;
    if (last)
        sub_mark(rb, s);
    pthread_mutex_unlock(&rb->lock);
    if (last)
        wake(rb);
    return 0;
}

/* Rooms starting with this node's socket tag (its sockets' ids: rt_broker_socket_tag()) are
 * received through one pattern per namespace, P{nsp}:c:<tag>* (glob characters of the
 * prefix and nsp escaped), reference counted like a channel. A user room that happens to
 * start with the tag is received through it too, and one this node holds no member of
 * arrives for nothing: harmless, the layer delivers to local members only. */
static char *pattern_name(rb_t *rb, const char *nsp, size_t *len)
{
    char ch[channel_size(rb, nsp, "")];
    size_t chlen;
    channel_name(rb, nsp, "", ch, &chlen);
    char *p = malloc(2 * chlen + RT_BROKER_SOCKET_TAG_LEN + 2);
    if (!p)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < chlen; i++) {
        if (strchr("*?[]\\", ch[i]))
            p[n++] = '\\';
        p[n++] = ch[i];
    }
    memcpy(p + n, rb->socket_tag, RT_BROKER_SOCKET_TAG_LEN);
    n += RT_BROKER_SOCKET_TAG_LEN;
    p[n++] = '*';
    p[n] = '\0';
    *len = n;
    return p;
}

static int pattern_ref(rb_t *rb, const char *nsp, bool on)
{
    size_t len;
    char *name = pattern_name(rb, nsp, &len);
    if (!name)
        return EDDY_ENOMEM;
    pthread_mutex_lock(&rb->lock);
    psub_t *ps = rb->patterns;
    while (ps && (ps->len != len || memcmp(ps->pattern, name, len) != 0))
        ps = ps->next;
    if (!ps && on) {
        ps = malloc(sizeof(*ps) + len + 1);
        if (!ps) {
            pthread_mutex_unlock(&rb->lock);
            free(name);
            return EDDY_ENOMEM;
        }
        *ps = (psub_t){.next = rb->patterns, .len = len};
        memcpy(ps->pattern, name, len + 1);
        rb->patterns = ps;
    }
    free(name);
    if (!ps || (!on && !ps->refs)) {
        pthread_mutex_unlock(&rb->lock);
        return EDDY_ENOTFOUND;
    }
    bool changed = on ? ps->refs++ == 0 : --ps->refs == 0;
    if (changed) {
        ps->pending = true;
        rb->patterns_pending = true;
    }
    pthread_mutex_unlock(&rb->lock);
    if (changed)
        wake(rb);
    return 0;
}

void rt_broker_socket_tag(const char *node_id, char tag[RT_BROKER_SOCKET_TAG_LEN + 1])
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    uint64_t h = hash_bytes(node_id, strlen(node_id));
    for (size_t i = 0; i < RT_BROKER_SOCKET_TAG_LEN; i++, h >>= 6)
        tag[i] = alphabet[h & 63];
    tag[RT_BROKER_SOCKET_TAG_LEN] = '\0';
}

/* ---------------------------------------------------------------------------------------
 * The thread
 * ------------------------------------------------------------------------------------- */

/* The Redis the thread connects to, for its log lines: "host:port", with Sentinel "master
 * name (host:port)" ("master name" before the sentinels named one). */
static const char *where(rb_t *rb)
{
    static __thread char text[RT_BROKER_SHARD_NAME_SIZE];
    if (rb->cluster_nodes)
        snprintf(text, sizeof(text), "%s:%d (slot %d)", rb->host, rb->cfg.port,
                 rb->cfg.cluster_slot);
    else if (!rb->sentinel_master)
        snprintf(text, sizeof(text), "%s:%d", rb->host, rb->cfg.port);
    else if (!rb->master_known)
        snprintf(text, sizeof(text), "master %s", rb->sentinel_master);
    else
        snprintf(text, sizeof(text), "master %s (%s:%d)", rb->sentinel_master, rb->host,
                 rb->cfg.port);
    return text;
}

static void hold_release(rb_t *rb);

static void disconnect(rb_t *rb, const char *why)
{
    if (rb->cmd || rb->sub)
        eddy_log(rb->cfg.log, EDDY_LOG_WARNING, "rt_broker: Redis %s connection lost: %s",
                 where(rb), why);
    if (rb->cmd)
        rt_redis_free(rb->cmd);
    if (rb->sub)
        rt_redis_free(rb->sub);
    rb->cmd = rb->sub = NULL;
    rb->channel_dropped = false;
    rb->moved_why[0] = '\0';
    rb->refusing_since = 0; /* the next connection's heartbeat tells */
    hold_release(rb);       /* sent on the next connection */
    atomic_store(&rb->last_pong, 0);
    nreq_sweep(rb, 0, true); /* no answer comes on a lost connection */
    if (rb->was_up && !rb->down_since)
        rb->down_since = now_ms();
    set_state(rb, RT_BROKER_DOWN, false, 0);
}

static redisReply *command(redisContext *c, int argc, const char **argv, const size_t *lens)
{
    return rt_redis_command_argv(c, argc, argv, lens);
}

/* AUTH password, or with a user name (a Redis 6 ACL user) AUTH username password. */
static redisReply *auth(redisContext *c, const char *username, const char *password)
{
    return username ? rt_redis_command(c, "AUTH %s %s", username, password)
                    : rt_redis_command(c, "AUTH %s", password);
}

/* A connection to host:port: hiredis' TCP connect, then with TLS the handshake (each
 * within tv), or NULL (out of memory), or one with err set. */
static redisContext *open_conn(rb_t *rb, const char *host, int port, struct timeval tv)
{
    redisContext *c = redisConnectWithTimeout(host, port, tv);
    if (c && !c->err && rb->tls)
        rt_redis_tls_start(rb->tls, c, host, rb->cfg.io_timeout_ms);
    return c;
}

static redisContext *connect_one(rb_t *rb, const char **err)
{
    struct timeval tv = {rb->cfg.io_timeout_ms / 1000, (rb->cfg.io_timeout_ms % 1000) * 1000};
    redisContext *c = open_conn(rb, rb->host, rb->cfg.port, tv);
    if (!c || c->err) {
        static __thread char msg[128];
        snprintf(msg, sizeof(msg), "%s", c ? c->errstr : "out of memory");
        *err = msg;
        if (c)
            rt_redis_free(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    redisEnableKeepAlive(c);
    redisReply *r = NULL;
    if (rb->password) {
        r = auth(c, rb->username, rb->password);
        if (!r || r->type == REDIS_REPLY_ERROR)
            goto fail;
        freeReplyObject(r);
    }
    if (rb->cfg.db) {
        r = rt_redis_command(c, "SELECT %d", rb->cfg.db);
        if (!r || r->type == REDIS_REPLY_ERROR)
            goto fail;
        freeReplyObject(r);
    }
    return c;
fail:;
    static __thread char lost[160]; /* the reason (TLS: an alert) is in c, which goes */
    snprintf(lost, sizeof(lost), "no answer to AUTH or SELECT: %s", c->errstr);
    *err = r ? "AUTH or SELECT refused" : lost;
    if (r)
        freeReplyObject(r);
    rt_redis_free(c);
    return NULL;
}

/* The master is host:port (host allocated, taken over), as who (a sentinel, a cluster node)
 * said: a new address replaces the known one, logged and, when one was known, counted as a
 * master switch. */
static void master_found(rb_t *rb, char *host, int port, const char *who)
{
    if (rb->master_known && strcmp(host, rb->host) == 0 && port == rb->cfg.port) {
        free(host);
        return;
    }
    if (rb->master_known) {
        atomic_fetch_add(&rb->master_switches, 1);
        eddy_log(rb->cfg.log, EDDY_LOG_NOTICE, "rt_broker: %s moved from %s:%d to %s:%d", who,
                 rb->host, rb->cfg.port, host, port);
    } else {
        eddy_log(rb->cfg.log, EDDY_LOG_INFO, "rt_broker: %s is %s:%d", who, host, port);
    }
    free(rb->host);
    rb->host = host;
    rb->cfg.port = port;
    rb->master_known = true;
}

/* ---------------------------------------------------------------------------------------
 * Sentinel (the client guidelines of https://redis.io/docs/reference/sentinel-clients/)
 * ------------------------------------------------------------------------------------- */

/* A connection to a (a sentinel or a cluster node; TLS with rediss, the certificate
 * checked against a's host) with AUTH done when password is set, or NULL with why. */
static redisContext *connect_auth(rb_t *rb, const rt_broker_addr_t *a, const char *username,
                                  const char *password, char *why, size_t why_len)
{
    struct timeval tv = {rb->cfg.io_timeout_ms / 1000, (rb->cfg.io_timeout_ms % 1000) * 1000};
    redisContext *c = open_conn(rb, a->host, a->port, tv);
    if (!c || c->err) {
        snprintf(why, why_len, "%s", c ? c->errstr : "out of memory");
        if (c)
            rt_redis_free(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    if (password) {
        redisReply *r = auth(c, username, password);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            snprintf(why, why_len, "%s", r ? "AUTH refused" : c->errstr);
            if (r)
                freeReplyObject(r);
            rt_redis_free(c);
            return NULL;
        }
        freeReplyObject(r);
    }
    return c;
}

/* A connection to sentinel s (AUTH done), or NULL with why. */
static redisContext *sentinel_connect(rb_t *rb, const rt_broker_addr_t *s, char *why,
                                      size_t why_len)
{
    return connect_auth(rb, s, rb->sentinel_username, rb->sentinel_password, why, why_len);
}

/* One sentinel's answer to SENTINEL get-master-addr-by-name: 0 with the master's address
 * in host (allocated) and port, else -1 with why. */
static int sentinel_ask_one(rb_t *rb, const rt_broker_addr_t *s, char **host, int *port, char *why,
                            size_t why_len)
{
    redisContext *c = sentinel_connect(rb, s, why, why_len);
    if (!c)
        return -1;
    int rc = -1;
    redisReply *r = rt_redis_command(c, "SENTINEL get-master-addr-by-name %s", rb->sentinel_master);
    char *end = NULL;
    long value = 0;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_STRING && r->element[1]->type == REDIS_REPLY_STRING)
        value = strtol(r->element[1]->str, &end, 10);
    if (!r) {
        snprintf(why, why_len, "%s", c->errstr);
    } else if (r->type == REDIS_REPLY_NIL) {
        snprintf(why, why_len, "does not know master %s", rb->sentinel_master);
    } else if (r->type == REDIS_REPLY_ERROR) {
        snprintf(why, why_len, "%s", r->str);
    } else if (!end || *end || value <= 0 || value > 65535 || !r->element[0]->len) {
        snprintf(why, why_len, "unexpected answer");
    } else if (!(*host = strdup(r->element[0]->str))) {
        snprintf(why, why_len, "out of memory");
    } else {
        *port = (int)value;
        rc = 0;
    }
    if (r)
        freeReplyObject(r);
    rt_redis_free(c);
    return rc;
}

/* A subscription to +switch-master on the sentinel that answered last (see backoff_wait()),
 * or NULL. */
static redisContext *sentinel_watch(rb_t *rb)
{
    char why[128];
    redisContext *c = sentinel_connect(rb, &rb->sentinels[0], why, sizeof(why));
    redisReply *r = c ? rt_redis_command(c, "SUBSCRIBE +switch-master") : NULL;
    bool ok = r && r->type == REDIS_REPLY_ARRAY && r->elements == 3;
    if (r)
        freeReplyObject(r);
    if (c && !ok) {
        rt_redis_free(c);
        c = NULL;
    }
    return c;
}

/* Reads what the watch received: 1 if a +switch-master message ("<master> <old ip> <old
 * port> <new ip> <new port>") names this broker's master, 0 if none did, -1 if the
 * connection broke. */
static int sentinel_switched(rb_t *rb, redisContext *c)
{
    if (rt_redis_read(c) != REDIS_OK)
        return -1;
    size_t len = strlen(rb->sentinel_master);
    int switched = 0;
    redisReply *r;
    while (redisGetReplyFromReader(c, (void **)&r) == REDIS_OK && r) {
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
            r->element[2]->type == REDIS_REPLY_STRING && r->element[2]->len > len &&
            strncmp(r->element[2]->str, rb->sentinel_master, len) == 0 &&
            r->element[2]->str[len] == ' ') {
            eddy_log(rb->cfg.log, EDDY_LOG_INFO, "rt_broker: sentinel %s:%d: +switch-master %s",
                     rb->sentinels[0].host, rb->sentinels[0].port, r->element[2]->str);
            switched = 1;
        }
        freeReplyObject(r);
    }
    return c->err ? -1 : switched;
}

/* Asks the sentinels in turn for the master's address: the first that names one moves to the
 * head of the list (asked first next time) and its answer becomes host and cfg.port (a new
 * address counts as a master switch). -1 with err if none names one. */
static int sentinel_master(rb_t *rb, const char **err)
{
    static __thread char msg[256];
    char why[128] = "";
    for (size_t i = 0; i < rb->cfg.nsentinels && !atomic_load(&rb->stop); i++) {
        rt_broker_addr_t s = rb->sentinels[i];
        char *host;
        int port;
        if (sentinel_ask_one(rb, &s, &host, &port, why, sizeof(why)) != 0) {
            snprintf(msg, sizeof(msg), "sentinel %s:%d: %s", s.host, s.port, why);
            continue;
        }
        rb->sentinels[i] = rb->sentinels[0];
        rb->sentinels[0] = s;
        char who[256];
        snprintf(who, sizeof(who), "sentinel %s:%d: master %s", s.host, s.port,
                 rb->sentinel_master);
        master_found(rb, host, port, who);
        return 0;
    }
    if (atomic_load(&rb->stop))
        snprintf(msg, sizeof(msg), "stopping");
    *err = msg;
    return -1;
}

/* ---------------------------------------------------------------------------------------
 * Redis Cluster (cfg.ncluster_nodes > 0: one master's broker, see rt_broker.h)
 * ------------------------------------------------------------------------------------- */

static const char *script_text(const rb_t *rb, int i)
{
    return i == SCRIPT_PUBLISH && rb->publish_script ? rb->publish_script : scripts[i];
}

/* Channels per SUBSCRIBE: SSUBSCRIBE takes channels of one slot only. */
static size_t sub_batch(const rb_t *rb)
{
    return rb->cluster_nodes ? 1 : 512;
}

/* r (an array whose first element is a string) confirms an SSUBSCRIBE or SUNSUBSCRIBE. */
static bool sharded_confirm(const redisReply *r)
{
    return strcmp(r->element[0]->str, "ssubscribe") == 0 ||
           strcmp(r->element[0]->str, "sunsubscribe") == 0;
}

/* slot_fate[slot]: the part the slot was handed to, or one of these. */
#define SLOT_HERE   0xff
#define SLOT_LOST   0xfe
#define SLOT_JOINED 0xfd /* handed to a part made for it */

/* Whether slot was found moved to a master of no part (resharding not followed). */
static bool slot_lost(rb_t *rb, int slot)
{
    return rb->slot_fate && slot >= 0 && slot < RT_BROKER_CLUSTER_SLOTS &&
           atomic_load(&rb->slot_fate[slot]) == SLOT_LOST;
}

/* The slot of a "MOVED <slot> <host:port>" error, else -1. */
static int moved_slot_of(const char *err)
{
    if (strncmp(err, "MOVED ", 6) != 0)
        return -1;
    char *end;
    long slot = strtol(err + 6, &end, 10);
    return end > err + 6 && *end == ' ' && slot >= 0 && slot < RT_BROKER_CLUSTER_SLOTS ? (int)slot
                                                                                       : -1;
}

/* A sunsubscribe nobody asked for (sub_send() reads the confirmations): the master gave up
 * the channel's slot (a failover demoted it, or the slot moved). True, and unless the slot
 * left this part already (lost, or handed to another: its channels are gone from here)
 * the drop is noted (its slot for the resharding check): dropped_settle() then finds
 * whether the slot alone moved, else the SUBSCRIBE connection breaks and the thread asks
 * the cluster again. */
static bool cluster_dropped(rb_t *rb, const redisReply *r)
{
    if (!rb->cluster_nodes || r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_STRING ||
        strcmp(r->element[0]->str, "sunsubscribe") != 0)
        return false;
    if (r->element[1]->type == REDIS_REPLY_STRING) {
        int slot = (int)rt_broker_keyslot(r->element[1]->str, r->element[1]->len);
        if (atomic_load(&rb->slot_fate[slot]) != SLOT_HERE)
            return true;
        rb->moved_slot = slot;
    }
    if (!rb->channel_dropped)
        snprintf(rb->dropped_why, sizeof(rb->dropped_why), "the master dropped channel %.64s",
                 r->element[1]->type == REDIS_REPLY_STRING ? r->element[1]->str : "?");
    rb->channel_dropped = true;
    return true;
}

/* In a cluster, an answer saying that this Redis no longer serves the slot (MOVED: the slot
 * is elsewhere; READONLY: a replica; CLUSTERDOWN; a script's key not local): true. The
 * command connection is marked broken so that the thread asks again, but for MOVED: its
 * slot is noted for the resharding check and redirect_settle() finds whether the slot
 * alone moved (the connection then stays) after the batch's answers. False for a MOVED of
 * a slot known to be lost: the request is refused at once. ASK and TRYAGAIN (a slot being
 * migrated) are not asked here: slot_migrating() answers them. */
static bool cluster_redirected(rb_t *rb, const redisReply *r)
{
    static const char *const errors[] = {"MOVED ", "CLUSTERDOWN", "READONLY", "non local key"};
    if (!rb->cluster_nodes || r->type != REDIS_REPLY_ERROR)
        return false;
    int slot = moved_slot_of(r->str);
    if (slot_lost(rb, slot))
        return false;
    if (slot >= 0) {
        rb->moved_slot = slot;
        if (!rb->moved_why[0])
            snprintf(rb->moved_why, sizeof(rb->moved_why), "%.64s", r->str);
        return true;
    }
    for (size_t i = 0; i < sizeof(errors) / sizeof(errors[0]); i++) {
        if (strstr(r->str, errors[i])) {
            rb->cmd->err = REDIS_ERR_OTHER;
            snprintf(rb->cmd->errstr, sizeof(rb->cmd->errstr), "slot %d not served here: %.64s",
                     rb->cfg.cluster_slot, r->str);
            return true;
        }
    }
    return false;
}

/* The master serving slot in a CLUSTER SLOTS answer r: 0 with its address (host allocated),
 * else -1. */
static int cluster_slot_owner(const redisReply *r, int slot, const char *asked, char **host,
                              int *port)
{
    if (r->type != REDIS_REPLY_ARRAY)
        return -1;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            e->element[0]->type != REDIS_REPLY_INTEGER ||
            e->element[1]->type != REDIS_REPLY_INTEGER || e->element[2]->type != REDIS_REPLY_ARRAY)
            continue;
        if (slot < e->element[0]->integer || slot > e->element[1]->integer)
            continue;
        const redisReply *m = e->element[2];
        const char *named = rt_redis_node_host(m, asked);
        if (named == NULL || m->element[1]->type != REDIS_REPLY_INTEGER ||
            m->element[1]->integer <= 0 || m->element[1]->integer > 65535)
            return -1;
        *host = strdup(named);
        *port = (int)m->element[1]->integer;
        return *host ? 0 : -1;
    }
    return -1;
}

/* The part whose first slot host:port serves in the topology r (asked of asked), or -1. */
static int part_served_by(const rb_t *rb, const redisReply *r, const char *asked, const char *host,
                          int port)
{
    size_t nparts = rb->nparts ? atomic_load(rb->nparts) : 0;
    for (size_t k = 0; k < nparts; k++) {
        char *owner = NULL;
        int owner_port = 0;
        bool same = cluster_slot_owner(r, rb->part_slots[k], asked, &owner, &owner_port) == 0 &&
                    owner_port == port && strcmp(owner, host) == 0;
        free(owner);
        if (same)
            return (int)k;
    }
    return -1;
}

/* After a MOVED answer or a dropped channel of slot rb->moved_slot: when the topology r
 * (asked of asked) gives that slot to another master than host:port, this broker's master
 * now, the slot was moved between masters (resharding): true. Moved to the master of
 * another part, the handler moved routes the slot there and this broker hands that part
 * what it holds of the slot (counted and logged the first time). Else (a master of no
 * part) the slot is lost: its requests are refused at once from then on, its channels no
 * longer make the broker reconnect; counted, logged, and the broker is not ready. The
 * broker's own keys (node keys, session records) are in cfg.cluster_slot, which the broker
 * follows (cluster_master()): never found moved here. */
static bool reshard_check(rb_t *rb, const redisReply *r, const char *asked, const char *host,
                          int port)
{
    int slot = rb->moved_slot;
    char *owner = NULL;
    int owner_port = 0;
    rb->moved_slot = -1;
    if (slot < 0 || slot_lost(rb, slot) ||
        cluster_slot_owner(r, slot, asked, &owner, &owner_port) != 0)
        return false;
    if (owner_port == port && strcmp(owner, host) == 0) { /* a failover: the part followed */
        free(owner);
        return false;
    }
    int part = part_served_by(rb, r, asked, owner, owner_port);
    bool known = part >= 0;
    if (!known)
        part = RT_BROKER_PARTS_MAX; /* a master of no part: one is made for it */
    if (rb->h.moved && rb->h.moved(&rb->base, (unsigned)slot, (size_t)part, rb->ud)) {
        if (atomic_load(&rb->slot_fate[slot]) != (known ? part : SLOT_JOINED)) {
            atomic_store(&rb->slot_fate[slot], known ? (uint8_t)part : SLOT_JOINED);
            uint64_t n = atomic_fetch_add(&rb->slots_moved, 1) + 1;
            eddy_log(rb->cfg.log, EDDY_LOG_NOTICE,
                     "rt_broker: slot %d resharded from %s:%d to %s:%d (%llu slots so far): "
                     "followed%s, its namespaces go through that master's part now and their "
                     "clients recover from history",
                     slot, host, port, owner, owner_port, (unsigned long long)n,
                     known ? "" : " (a master this node had no part for: a part made for it)");
        }
    } else {
        atomic_store(&rb->slot_fate[slot], SLOT_LOST);
        uint64_t n = atomic_fetch_add(&rb->slots_moved, 1) + 1;
        atomic_store(&rb->resharded, true);
        eddy_log(rb->cfg.log, EDDY_LOG_WARNING,
                 "rt_broker: slot %d resharded from %s:%d to %s:%d (%llu slots so far), to a "
                 "master this node has no part for: the namespaces of that slot get no "
                 "broadcasts through this node (their requests are refused) and it reports not "
                 "ready: restart it to follow the new topology",
                 slot, host, port, owner, owner_port, (unsigned long long)n);
    }
    free(owner);
    return true;
}

/* Asks the cluster's nodes in turn which master serves cfg.cluster_slot (CLUSTER SLOTS):
 * the first that names one moves to the head of the list and its answer becomes host and
 * cfg.port (a new address counts as a master switch). -1 with err if none names one. */
static int cluster_master(rb_t *rb, const char **err)
{
    static __thread char msg[256];
    char why[128] = "";
    for (size_t i = 0; i < rb->cfg.ncluster_nodes && !atomic_load(&rb->stop); i++) {
        rt_broker_addr_t n = rb->cluster_nodes[i];
        redisContext *c = connect_auth(rb, &n, rb->username, rb->password, why, sizeof(why));
        redisReply *r = c ? rt_redis_command(c, "CLUSTER SLOTS") : NULL;
        char *host = NULL;
        int port = 0;
        int rc = r ? cluster_slot_owner(r, rb->cfg.cluster_slot, n.host, &host, &port) : -1;
        if (rc == 0)
            reshard_check(rb, r, n.host, host, port);
        if (c && !r)
            snprintf(why, sizeof(why), "%s", c->errstr);
        else if (r && rc != 0)
            snprintf(why, sizeof(why), "%s",
                     r->type == REDIS_REPLY_ERROR ? r->str : "no master for the slot");
        if (r)
            freeReplyObject(r);
        if (c)
            rt_redis_free(c);
        if (rc != 0) {
            snprintf(msg, sizeof(msg), "cluster node %s:%d: %s", n.host, n.port, why);
            continue;
        }
        rb->cluster_nodes[i] = rb->cluster_nodes[0];
        rb->cluster_nodes[0] = n;
        char who[256];
        snprintf(who, sizeof(who), "cluster node %s:%d: slot %d", n.host, n.port,
                 rb->cfg.cluster_slot);
        master_found(rb, host, port, who);
        return 0;
    }
    if (atomic_load(&rb->stop))
        snprintf(msg, sizeof(msg), "stopping");
    *err = msg;
    return -1;
}

/* Whether slot rb->moved_slot alone moved while this broker's master still serves its own
 * slot (resharding, not a failover): asks the cluster's nodes in turn (a node that still
 * gives the slot to this master has not heard of the move yet: the next is asked). True
 * once reshard_check() found the move (the slot followed or lost): the connections stay.
 * False (the moved slot kept for the reconnection's check): a failover, no move found, or
 * no node answers. */
static bool reshard_inline(rb_t *rb)
{
    int slot = rb->moved_slot;
    char why[128];
    for (size_t i = 0; slot >= 0 && i < rb->cfg.ncluster_nodes && !atomic_load(&rb->stop); i++) {
        rt_broker_addr_t n = rb->cluster_nodes[i];
        redisContext *c = connect_auth(rb, &n, rb->username, rb->password, why, sizeof(why));
        redisReply *r = c ? rt_redis_command(c, "CLUSTER SLOTS") : NULL;
        char *host = NULL;
        int port = 0;
        bool named = r && cluster_slot_owner(r, rb->cfg.cluster_slot, n.host, &host, &port) == 0;
        bool ours = named && port == rb->cfg.port && strcmp(host, rb->host) == 0;
        bool moved = ours && reshard_check(rb, r, n.host, host, port);
        free(host);
        if (r)
            freeReplyObject(r);
        if (c)
            rt_redis_free(c);
        if (moved)
            return true;
        rb->moved_slot = slot;
        if (named && !ours)
            return false;
    }
    return false;
}

/* After answers that said MOVED (cluster_redirected()): with follow, true when the slot
 * alone moved (reshard_inline(): the requests queued again went with it); else the command
 * connection is marked broken so that the thread asks again. */
static bool redirect_settle(rb_t *rb, bool follow)
{
    bool kept = follow && !rb->cmd->err && reshard_inline(rb);
    if (!kept && !rb->cmd->err) {
        rb->cmd->err = REDIS_ERR_OTHER;
        snprintf(rb->cmd->errstr, sizeof(rb->cmd->errstr), "slot %d not served here: %s",
                 rb->cfg.cluster_slot, rb->moved_why);
    }
    rb->moved_why[0] = '\0';
    return kept;
}

/* After channels the master dropped (cluster_dropped()): unless their slot alone moved
 * (reshard_inline()), the SUBSCRIBE connection is marked broken. */
static void dropped_settle(rb_t *rb)
{
    if (!rb->channel_dropped)
        return;
    rb->channel_dropped = false;
    if (!rb->sub->err && !reshard_inline(rb)) {
        rb->sub->err = REDIS_ERR_OTHER;
        snprintf(rb->sub->errstr, sizeof(rb->sub->errstr), "%s", rb->dropped_why);
    }
}

/* Whether the cluster fields of cfg are usable (or unset). */
static bool cluster_ok(const rt_broker_redis_config_t *cfg)
{
    if (!cfg->ncluster_nodes)
        return true;
    if (!cfg->cluster_nodes || cfg->ncluster_nodes > RT_BROKER_CLUSTER_NODES_MAX ||
        cfg->cluster_slot < 0 || cfg->cluster_slot >= RT_BROKER_CLUSTER_SLOTS ||
        !cfg->cluster_tag || !*cfg->cluster_tag || strpbrk(cfg->cluster_tag, "{}") ||
        rt_broker_keyslot(cfg->cluster_tag, strlen(cfg->cluster_tag)) !=
            (unsigned)cfg->cluster_slot ||
        strchr(cfg->prefix, '{') || cfg->db || cfg->sentinel_master || !cfg->session_tag ||
        strlen(cfg->session_tag) != RT_BROKER_SESSION_TAG_LEN || !pid_tagged(cfg->session_tag) ||
        rt_broker_keyslot(cfg->session_tag, RT_BROKER_SESSION_TAG_LEN) !=
            (unsigned)cfg->cluster_slot)
        return false;
    for (size_t i = 0; i < cfg->ncluster_nodes; i++)
        if (!cfg->cluster_nodes[i].host || !*cfg->cluster_nodes[i].host ||
            cfg->cluster_nodes[i].port <= 0 || cfg->cluster_nodes[i].port > 65535)
            return false;
    if (!cfg->cluster_parts != !cfg->ncluster_parts)
        return false;
    return true;
}

/* A copy of addrs[0..n) in one block (the array, then their hosts), or NULL. */
static rt_broker_addr_t *addrs_copy(const rt_broker_addr_t *addrs, size_t n)
{
    size_t size = n * sizeof(*addrs);
    for (size_t i = 0; i < n; i++)
        size += strlen(addrs[i].host) + 1;
    rt_broker_addr_t *copy = malloc(size ? size : 1);
    if (!copy)
        return NULL;
    char *text = (char *)(copy + n);
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(addrs[i].host) + 1;
        memcpy(text, addrs[i].host, len);
        copy[i] = (rt_broker_addr_t){text, addrs[i].port};
        text += len;
    }
    return copy;
}

/* The names and verbs of cfg's engine (see rb_t), and in a cluster a copy of its nodes (one
 * allocation: the array, then their hosts). -1: out of memory. */
static int cluster_init(rb_t *rb, const rt_broker_redis_config_t *cfg)
{
    bool cluster = cfg->ncluster_nodes > 0;
    rb->pub_verb = cluster ? "SPUBLISH" : "PUBLISH";
    rb->sub_verb = cluster ? "SSUBSCRIBE" : "SUBSCRIBE";
    rb->unsub_verb = cluster ? "SUNSUBSCRIBE" : "UNSUBSCRIBE";
    if (!cluster)
        return (rb->node_prefix = strdup(cfg->prefix)) ? 0 : -1;
    size_t plen = strlen(cfg->prefix) + strlen(cfg->cluster_tag) + 4;
    if ((rb->node_prefix = malloc(plen)))
        snprintf(rb->node_prefix, plen, "%s{%s}:", cfg->prefix, cfg->cluster_tag);
    /* The publish script with SPUBLISH: its channels share the slot of its keys. */
    const char *at = strstr(lua_publish, "'PUBLISH'");
    size_t head = (size_t)(at - lua_publish);
    rb->publish_script = malloc(sizeof(lua_publish) + 1);
    if (rb->publish_script) {
        memcpy(rb->publish_script, lua_publish, head + 1);
        rb->publish_script[head + 1] = 'S';
        memcpy(rb->publish_script + head + 2, at + 1, sizeof(lua_publish) - head - 1);
    }
    rb->cluster_nodes = addrs_copy(cfg->cluster_nodes, cfg->ncluster_nodes);
    rb->moved_slot = -1;
    rb->hold_logged = -1;
    rb->slot_fate = malloc(RT_BROKER_CLUSTER_SLOTS * sizeof(*rb->slot_fate));
    rb->part_slots = cfg->cluster_parts;
    rb->nparts = cfg->ncluster_parts;
    if (!rb->node_prefix || !rb->publish_script || !rb->cluster_nodes || !rb->slot_fate)
        return -1;
    for (size_t i = 0; i < RT_BROKER_CLUSTER_SLOTS; i++)
        atomic_init(&rb->slot_fate[i], SLOT_HERE);
    if (cfg->cluster_joined) { /* its first connection ends a gap (see connect_all()) */
        rb->was_up = rb->joined = true;
        rb->down_since = now_ms();
    }
    rb->cfg.cluster_nodes = rb->cluster_nodes;
    rb->cfg.cluster_tag = NULL; /* not kept: node_prefix is */
    rb->cfg.session_tag = NULL;
    return 0;
}

/* Whether the Redis the sentinels (or the cluster) named is a master (ROLE): their answer
 * may be stale. */
static int check_master(rb_t *rb, const char **err)
{
    static __thread char msg[128];
    redisReply *r = rt_redis_command(rb->cmd, "ROLE");
    if (!r) {
        *err = rb->cmd->errstr;
        return -1;
    }
    bool master = r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
                  r->element[0]->type == REDIS_REPLY_STRING &&
                  strcmp(r->element[0]->str, "master") == 0;
    if (!master)
        snprintf(msg, sizeof(msg), "not a master (ROLE: %s)",
                 r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
                         r->element[0]->type == REDIS_REPLY_STRING
                     ? r->element[0]->str
                 : r->type == REDIS_REPLY_ERROR ? r->str
                                                : "unexpected answer");
    freeReplyObject(r);
    if (!master)
        *err = msg;
    return master ? 0 : -1;
}

/* With Sentinel, an answer saying that the Redis is no longer the master (READONLY: it was
 * demoted to a replica, also inside a script's error before Redis 7; MASTERDOWN: a replica
 * cut from its master): true, and the command connection is marked broken so that the
 * thread reconnects through the sentinels. */
static bool lost_master(rb_t *rb, const redisReply *r)
{
    if (cluster_redirected(rb, r))
        return true;
    if (!rb->sentinel_master || r->type != REDIS_REPLY_ERROR ||
        (strncmp(r->str, "READONLY", 8) != 0 && strncmp(r->str, "MASTERDOWN", 10) != 0 &&
         !strstr(r->str, "-READONLY ")))
        return false;
    rb->cmd->err = REDIS_ERR_OTHER;
    snprintf(rb->cmd->errstr, sizeof(rb->cmd->errstr), "no longer the master: %.64s", r->str);
    return true;
}

/* Sends SUBSCRIBE/UNSUBSCRIBE for channels[0..n) on the sub connection, in batches, and
 * reads their confirmations, delivering messages that arrive meanwhile. */
static void handle_sub_reply(rb_t *rb, redisReply *r);

static int sub_send(rb_t *rb, const char *verb, const char **chans, size_t *lens, size_t n)
{
    size_t batch = sub_batch(rb);
    for (size_t off = 0; off < n; off += batch) {
        size_t k = n - off < batch ? n - off : batch;
        const char *argv[513];
        size_t argl[513];
        argv[0] = verb;
        argl[0] = strlen(verb);
        memcpy(argv + 1, chans + off, k * sizeof(char *));
        memcpy(argl + 1, lens + off, k * sizeof(size_t));
        if (redisAppendCommandArgv(rb->sub, (int)k + 1, argv, argl) != REDIS_OK)
            return -1;
    }
    int done = 0;
    while (!done)
        if (rt_redis_write(rb->sub, &done) != REDIS_OK)
            return -1;
    bool refused = false;
    for (size_t waiting = n; waiting;) {
        redisReply *r;
        if (rt_redis_get_reply(rb->sub, (void **)&r) != REDIS_OK)
            return -1;
        if (r->type == REDIS_REPLY_ERROR && rb->cluster_nodes) {
            /* A channel's slot not served here: ignored if known to be lost (see
             * reshard_check()); MOVED is settled as a dropped channel (dropped_settle():
             * the slot may have moved, or been handed over, before this subscription
             * came here); else the thread asks the cluster again. */
            int slot = moved_slot_of(r->str);
            if (slot >= 0 && !slot_lost(rb, slot)) {
                rb->moved_slot = slot;
                if (!rb->channel_dropped)
                    snprintf(rb->dropped_why, sizeof(rb->dropped_why),
                             "subscription refused: %.64s", r->str);
                rb->channel_dropped = true;
            } else if (slot < 0) {
                if (!refused)
                    snprintf(rb->sub->errstr, sizeof(rb->sub->errstr),
                             "subscription refused: %.64s", r->str);
                refused = true;
            }
            waiting--;
            freeReplyObject(r);
        } else if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
                   r->element[0]->type == REDIS_REPLY_STRING &&
                   (strcmp(r->element[0]->str, "subscribe") == 0 ||
                    strcmp(r->element[0]->str, "unsubscribe") == 0 ||
                    strcmp(r->element[0]->str, "psubscribe") == 0 ||
                    strcmp(r->element[0]->str, "punsubscribe") == 0 || sharded_confirm(r))) {
            waiting--;
            freeReplyObject(r);
        } else {
            handle_sub_reply(rb, r);
        }
    }
    if (refused) {
        rb->sub->err = REDIS_ERR_OTHER;
        return -1;
    }
    return 0;
}

/*
 * Sends verb for names[0..nsub), then unverb for names[cap..cap + nunsub) (lens alike),
 * and frees the cap * 2 names, names and lens. Returns sub_send's result.
 */
static int send_changes(rb_t *rb, const char *verb, const char *unverb, char **names, size_t *lens,
                        size_t cap, size_t nsub, size_t nunsub)
{
    int rc = 0;
    if (nsub)
        rc = sub_send(rb, verb, (const char **)names, lens, nsub);
    if (rc == 0 && nunsub)
        rc = sub_send(rb, unverb, (const char **)names + cap, lens + cap, nunsub);
    for (size_t i = 0; i < cap * 2; i++)
        free(names[i]);
    free(names);
    free(lens);
    return rc;
}

/* Applies pending interest changes (all == true: every interest, after a reconnect). */
static int apply_subs(rb_t *rb, bool all)
{
    pthread_mutex_lock(&rb->lock);
    size_t cap = all ? rb->subs_count : 0, nsub = 0, nunsub = 0;
    if (!all)
        for (sub_t *s = rb->pending; s; s = s->pending_next)
            cap++;
    if (!cap) {
        pthread_mutex_unlock(&rb->lock);
        return 0;
    }
    /* Names are copied: the table may free an interest once the lock is released. */
    char **chans = calloc(cap * 2, sizeof(char *));
    size_t *lens = malloc(cap * 2 * sizeof(size_t));
    sub_t **cand = malloc(cap * sizeof(sub_t *));
    if (!chans || !lens || !cand) {
        pthread_mutex_unlock(&rb->lock);
        free(chans);
        free(lens);
        free(cand);
        return 0; /* tried again at the next wake */
    }
    size_t ncand = 0;
    if (all) {
        for (size_t i = 0; i < rb->subs_cap; i++)
            for (sub_t *s = rb->subs[i]; s; s = s->next) {
                s->active = false;
                cand[ncand++] = s;
            }
    } else {
        for (sub_t *s = rb->pending; s; s = s->pending_next)
            cand[ncand++] = s;
    }
    for (sub_t *s = rb->pending; s; s = s->pending_next)
        s->pending = false;
    rb->pending = NULL;
    for (size_t i = 0; i < ncand; i++) {
        sub_t *s = cand[i];
        char *copy = NULL;
        if ((s->refs > 0) != s->active) {
            copy = malloc(s->len + 1);
            if (copy)
                memcpy(copy, s->channel, s->len + 1);
        }
        if (s->refs > 0 && !s->active) {
            if (!copy) {
                sub_mark(rb, s); /* out of memory: next time */
                continue;
            }
            s->active = true;
            chans[nsub] = copy;
            lens[nsub++] = s->len;
        } else if (s->refs == 0) {
            if (copy) {
                chans[cap + nunsub] = copy;
                lens[cap + nunsub++] = s->len;
            }
            sub_t **slot = sub_slot(rb, s->channel, s->len);
            *slot = s->next;
            rb->subs_count--;
            free(s);
        }
    }
    atomic_store(&rb->nsubs, rb->subs_count);
    pthread_mutex_unlock(&rb->lock);
    /* A channel held afresh: what its publishers sent meanwhile was not for this node (the
     * UNSUBSCRIBE before was answered: nothing older is still on its way). After a
     * reconnect (all) the numbers stay: a jump is what the outage lost. */
    for (size_t i = 0; !all && i < nsub; i++)
        rt_chanseq_forget(rb->chan_heard, chans[i], lens[i]);
    int rc = send_changes(rb, rb->sub_verb, rb->unsub_verb, chans, lens, cap, nsub, nunsub);
    free(cand);
    return rc;
}

/* Applies pending pattern changes (all == true: every pattern, after a reconnect). */
static int apply_patterns(rb_t *rb, bool all)
{
    pthread_mutex_lock(&rb->lock);
    if (!rb->patterns_pending && !all) {
        pthread_mutex_unlock(&rb->lock);
        return 0;
    }
    size_t cap = 0, nsub = 0, nunsub = 0, count = 0;
    for (psub_t *ps = rb->patterns; ps; ps = ps->next)
        cap++;
    /* Names are copied: the list may free a pattern once the lock is released. */
    char **names = calloc(cap * 2 + 1, sizeof(char *));
    size_t *lens = malloc((cap * 2 + 1) * sizeof(size_t));
    if (!names || !lens) {
        pthread_mutex_unlock(&rb->lock);
        free(names);
        free(lens);
        return 0; /* tried again at the next wake */
    }
    rb->patterns_pending = false;
    for (psub_t **it = &rb->patterns, *ps; (ps = *it);) {
        if (all)
            ps->active = false;
        if (!all && !ps->pending) {
            count++;
            it = &ps->next;
            continue;
        }
        ps->pending = false;
        if ((ps->refs > 0) != ps->active) {
            char *copy = strdup(ps->pattern);
            if (!copy) { /* out of memory: next time */
                ps->pending = rb->patterns_pending = true;
                count++;
                it = &ps->next;
                continue;
            }
            if (ps->refs > 0) {
                names[nsub] = copy;
                lens[nsub++] = ps->len;
            } else {
                names[cap + nunsub] = copy;
                lens[cap + nunsub++] = ps->len;
            }
            ps->active = ps->refs > 0;
        }
        if (ps->refs == 0) {
            *it = ps->next;
            free(ps);
        } else {
            count++;
            it = &ps->next;
        }
    }
    atomic_store(&rb->npatterns, count);
    pthread_mutex_unlock(&rb->lock);
    /* As apply_subs() for a channel: a pattern held afresh, its channels' numbers start
     * over (what was sent to them meanwhile was not for this node). */
    for (size_t i = 0; !all && i < nsub; i++)
        rt_chanseq_forget_prefix(rb->chan_heard, names[i], lens[i] - 1); /* less the '*' */
    return send_changes(rb, "PSUBSCRIBE", "PUNSUBSCRIBE", names, lens, cap, nsub, nunsub);
}

/* Remembers pos as delivered for nsp; false if it (or a later one) already was. */
static bool seen_new(rb_t *rb, const char *nsp, rt_position_t pos)
{
    nsp_seen_t *e = rb->seen;
    while (e && strcmp(e->nsp, nsp) != 0)
        e = e->next;
    if (!e) {
        size_t len = strlen(nsp);
        e = malloc(sizeof(*e) + len + 1);
        if (!e)
            return true; /* without memory for it, deliver rather than lose */
        memcpy(e->nsp, nsp, len + 1);
        e->next = rb->seen;
        rb->seen = e;
    } else if (e->epoch == pos.epoch && pos.seq <= e->seq) {
        return false;
    }
    e->epoch = pos.epoch;
    e->seq = pos.seq;
    return true;
}

/* Remembers broadcast num of origin's broker instance as delivered; false if it (or a later
 * one) already was. */
static bool origin_new(rb_t *rb, const char *origin, uint64_t instance, uint64_t num)
{
    origin_seen_t *e = rb->origins;
    while (e && strcmp(e->id, origin) != 0)
        e = e->next;
    if (!e) {
        size_t len = strlen(origin);
        e = malloc(sizeof(*e) + len + 1);
        if (!e)
            return true; /* without memory for it, deliver rather than lose */
        memcpy(e->id, origin, len + 1);
        e->next = rb->origins;
        rb->origins = e;
    } else if (e->instance == instance && num <= e->num) {
        return false;
    }
    e->instance = instance;
    e->num = num;
    e->at_ms = now_ms();
    return true;
}

/* Forgets the origins heard from last before cutoff (nodes gone: a node's copies of one
 * broadcast arrive together, so an entry is needed only for so long). */
static void origins_prune(rb_t *rb, uint64_t cutoff)
{
    /* A publisher keeps a channel's number longer than its receivers, who would otherwise
     * take its numbering afresh for a jump. */
    rt_chanseq_prune(rb->chan_heard, cutoff);
    rt_chanseq_prune(rb->chan_sent, cutoff > ORIGIN_IDLE_MS ? cutoff - ORIGIN_IDLE_MS : 0);
    for (origin_seen_t **it = &rb->origins; *it;) {
        origin_seen_t *e = *it;
        if (e->at_ms < cutoff) {
            *it = e->next;
            free(e);
        } else {
            it = &e->next;
        }
    }
}

#define MISSED_LOG_MS 10000 /* at most one warning about missed broadcasts this often */

/* Plain publish number chan_num of origin's instance was heard on channel ch: a jump in
 * the origin's numbers there (a channel this node held all along: rt_chanseq.h) is that
 * many broadcasts lost on the way, counted, and logged at most every MISSED_LOG_MS. Without
 * history there is nothing to recover them from: the count and the log say it. */
static void missed_note(rb_t *rb, const redisReply *ch, const char *origin, uint64_t instance,
                        uint64_t chan_num)
{
    uint64_t now = now_ms();
    uint64_t missed =
        rt_chanseq_heard(rb->chan_heard, ch->str, ch->len, origin, instance, chan_num, now);
    if (missed == 0)
        return;
    atomic_fetch_add(&rb->missed, missed);
    rb->missed_unlogged += missed;
    if (rb->missed_logged_ms != 0 && now - rb->missed_logged_ms < MISSED_LOG_MS)
        return;
    eddy_log(rb->cfg.log, EDDY_LOG_WARNING,
             "rt_broker: %llu broadcasts from node %s on %s never arrived (missed since the "
             "last warning: %llu, in all: %llu); without history they are lost here",
             (unsigned long long)missed, origin, ch->str, (unsigned long long)rb->missed_unlogged,
             (unsigned long long)atomic_load(&rb->missed));
    rb->missed_logged_ms = now;
    rb->missed_unlogged = 0;
}

/* 16 hex digits and ':' (in the head of a plain publish's message). */
static bool parse_hex16(const char **p, const char *end, uint64_t *out)
{
    const char *s = *p;
    uint64_t v = 0;
    if (end - s < 17 || s[16] != ':')
        return false;
    for (int i = 0; i < 16; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return false;
        v = v << 4 | (uint64_t)d;
    }
    *p = s + 17;
    *out = v;
    return true;
}

static bool parse_u64(const char **p, const char *end, char stop, uint64_t *out)
{
    uint64_t v = 0;
    const char *s = *p;
    if (s == end || *s < '0' || *s > '9')
        return false;
    for (; s < end && *s >= '0' && *s <= '9'; s++) {
        if (v > (UINT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    if (s == end || *s != stop)
        return false;
    *p = s + 1;
    *out = v;
    return true;
}

typedef struct emitted {
    rb_t *rb;
    void (*emitted)(rt_broker_t *b, const rt_emitter_msg_t *m, void *ud);
    void *ud;
    rt_emitter_msg_t *m;
} emitted_t;

static void run_emitted(eddy_server_t *srv, void *p)
{
    emitted_t *e = p;
    e->emitted(&e->rb->base, e->m, e->ud);
    rt_emitter_msg_free(e->m);
    free(e);
}

/* A message in Socket.IO's emitter format (["pmessage", pattern, channel, payload]). */
static void handle_emitted(rb_t *rb, redisReply *r)
{
    redisReply *ch = r->element[2], *payload = r->element[3];
    if (!rb->h.emitted || ch->type != REDIS_REPLY_STRING || payload->type != REDIS_REPLY_STRING)
        return;
    emitted_t *e = malloc(sizeof(*e));
    if (!e) {
        eddy_log(rb->cfg.log, EDDY_LOG_ERROR,
                 "rt_broker: out of memory: an emitted broadcast is lost");
        return;
    }
    int rc = rt_emitter_decode(payload->str, payload->len, &e->m);
    if (rc != 0) {
        eddy_log(rb->cfg.log, rc == EDDY_EPROTO ? EDDY_LOG_WARNING : EDDY_LOG_ERROR,
                 "rt_broker: emitter message on %s dropped: %s", ch->str,
                 rc == EDDY_EPROTO ? "not the Socket.IO emitter format" : "out of memory");
        free(e);
        return;
    }
    e->rb = rb;
    e->emitted = rb->h.emitted;
    e->ud = rb->ud;
    dispatch(rb, 0, run_emitted, e);
}

/* Turns ["pmessage", pattern, channel, payload] into ["pmessage", channel, payload]: the
 * shape of a "message", read as one. */
static void pmessage_shift(redisReply *r)
{
    freeReplyObject(r->element[1]);
    r->element[1] = r->element[2];
    r->element[2] = r->element[3];
    r->element[3] = NULL;
    r->elements = 3;
}

/* Redis Cluster: whether channel ch is one of a namespace's node channels, P{nsp}:q or this
 * node's P{nsp}:n:<id>; the namespace is then *nsp[0..*len). */
static bool node_channel_of(const rb_t *rb, const redisReply *ch, const char **nsp, size_t *len)
{
    const char *s = ch->str, *end = ch->str + ch->len;
    if (!rb->cluster_nodes || ch->len < rb->prefix_len + 4 ||
        memcmp(s, rb->prefix, rb->prefix_len) != 0 || s[rb->prefix_len] != '{')
        return false;
    const char *open = s + rb->prefix_len + 1;
    const char *close = memchr(open, '}', (size_t)(end - open));
    if (!close || end - close < 3 || close[1] != ':')
        return false;
    const char *kind = close + 2;
    size_t rest = (size_t)(end - kind), idlen = strlen(rb->node_id);
    bool all = rest == 1 && kind[0] == 'q';
    bool own = rest == 2 + idlen && kind[0] == 'n' && kind[1] == ':' &&
               memcmp(kind + 2, rb->node_id, idlen) == 0;
    *nsp = open;
    *len = (size_t)(close - open);
    return all || own;
}

/* A reply read on the SUBSCRIBE connection (owned: freed or handed on). */
static void handle_sub_reply(rb_t *rb, redisReply *r)
{
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 4 &&
        r->element[0]->type == REDIS_REPLY_STRING && strcmp(r->element[0]->str, "pmessage") == 0 &&
        rb->emitter_pattern && r->element[1]->type == REDIS_REPLY_STRING &&
        strcmp(r->element[1]->str, rb->emitter_pattern) == 0) {
        handle_emitted(rb, r);
        freeReplyObject(r);
        return;
    }
    bool pm = r->type == REDIS_REPLY_ARRAY && r->elements == 4 &&
              r->element[0]->type == REDIS_REPLY_STRING &&
              strcmp(r->element[0]->str, "pmessage") == 0;
    if (pm)
        pmessage_shift(r); /* one of the socket-id patterns: a broadcast like any other */
    if (!pm && cluster_dropped(rb, r)) {
        freeReplyObject(r);
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_STRING ||
        (!pm && strcmp(r->element[0]->str, "message") != 0 &&
         strcmp(r->element[0]->str, "smessage") != 0) ||
        r->element[1]->type != REDIS_REPLY_STRING || r->element[2]->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);
        return;
    }
    if (strcmp(r->element[1]->str, rb->node_channel) == 0 && r->element[2]->len == 4 &&
        memcmp(r->element[2]->str, "ping", 4) == 0) {
        atomic_store(&rb->last_pong, now_ms());
        freeReplyObject(r);
        return;
    }
    const char *key;
    size_t klen;
    if (strcmp(r->element[1]->str, rb->node_channel) == 0 ||
        (!rb->cluster_nodes && strcmp(r->element[1]->str, rb->all_channel) == 0)) {
        handle_node_msg(rb, r, NULL, 0);
        return;
    }
    if (node_channel_of(rb, r->element[1], &key, &klen)) {
        handle_node_msg(rb, r, key, klen);
        return;
    }
    const char *p = r->element[2]->str, *end = p + r->element[2]->len;
    rt_position_t pos = {0, 0};
    uint64_t num = 0, instance = 0, chan_num = 0;
    size_t nr, ne;
    bool plain = p < end && *p == PLAIN_TAG;
    p += plain;
    if ((plain ? !parse_hex16(&p, end, &num) || !parse_hex16(&p, end, &instance) ||
                     !parse_hex16(&p, end, &chan_num)
               : !parse_u64(&p, end, ':', &pos.seq) || !parse_u64(&p, end, ':', &pos.epoch)) ||
        msg_counts(p, (size_t)(end - p), &nr, &ne) != 0) {
        eddy_log(rb->cfg.log, EDDY_LOG_WARNING, "rt_broker: malformed message on %s dropped",
                 r->element[1]->str);
        freeReplyObject(r);
        return;
    }
    live_delivery_t *ld = malloc(sizeof(*ld) + (nr + ne) * sizeof(char *));
    if (!ld) {
        eddy_log(rb->cfg.log, EDDY_LOG_ERROR, "rt_broker: out of memory: a delivery is lost");
        freeReplyObject(r);
        return;
    }
    ld->rb = rb;
    ld->deliver = rb->h.deliver;
    ld->ud = rb->ud;
    ld->reply = r;
    ld->d.pos = pos;
    if (msg_decode(p, (size_t)(end - p), &ld->d.origin, &ld->d.msg, ld->names) != 0) {
        eddy_log(rb->cfg.log, EDDY_LOG_WARNING, "rt_broker: malformed message on %s dropped",
                 r->element[1]->str);
        freeReplyObject(r);
        free(ld);
        return;
    }
    ld->d.own = strcmp(ld->d.origin, rb->node_id) == 0;
    if (plain)
        missed_note(rb, r->element[1], ld->d.origin, instance, chan_num);
    if (!rb->h.deliver ||
        !(plain ? origin_new(rb, ld->d.origin, instance, num) : seen_new(rb, ld->d.msg.nsp, pos))) {
        freeReplyObject(r);
        free(ld);
        return;
    }
    atomic_fetch_add(&rb->delivered, 1);
    dispatch(rb, 0, run_delivery, ld);
}

static int cmp_delivery(const void *a, const void *b)
{
    uint64_t x = ((const rt_broker_delivery_t *)a)->pos.seq;
    uint64_t y = ((const rt_broker_delivery_t *)b)->pos.seq;
    return x < y ? -1 : x > y;
}

/* A result for job j's history or recent reply r; NULL once j failed (out of memory). */
static history_result_t *history_result_new(rb_t *rb, job_t *j, redisReply *r)
{
    history_result_t *res = calloc(1, sizeof(*res));
    if (!res) {
        freeReplyObject(r);
        fail_job(rb, j, EDDY_ENOMEM);
        return NULL;
    }
    *res = (history_result_t){.rb = rb, .cb = (rt_broker_history_cb)j->cb, .arg = j->arg};
    return res;
}

/* Room for n entries and their room names (names in all); false (res->err set) without memory. */
static bool history_result_alloc(history_result_t *res, size_t n, size_t names)
{
    res->entries = calloc(n ? n : 1, sizeof(*res->entries));
    res->names = calloc(names ? names : 1, sizeof(char *));
    if (!res->entries || !res->names)
        res->err = EDDY_ENOMEM;
    return !res->err;
}

/* Decodes stored message m (seq of epoch) into d, its room names at res->names + *used
 * (advanced past them); EDDY_EPROTO (also in res->err) if m does not decode. */
static int entry_decode(rb_t *rb, history_result_t *res, size_t *used, const redisReply *m,
                        uint64_t epoch, long long seq, rt_broker_delivery_t *d)
{
    if (msg_decode(m->str, m->len, &d->origin, &d->msg, res->names + *used) != 0)
        return res->err = EDDY_EPROTO;
    *used += d->msg.nrooms + d->msg.nexcept;
    d->pos = (rt_position_t){epoch, (uint64_t)seq};
    d->own = strcmp(d->origin, rb->node_id) == 0;
    return 0;
}

/* Hands res on (r kept for its entries, freed on an error) and frees j. */
static void history_result_done(rb_t *rb, job_t *j, redisReply *r, history_result_t *res)
{
    if (res->err) {
        res->n = 0;
        freeReplyObject(r);
    } else {
        res->reply = r;
    }
    dispatch(rb, j->fd, run_history_result, res);
    free(j);
}

#define REFUSED_LOG_MS 1000 /* at most one refusal logged this often */

/* Logs a request Redis refused (what, answered r), at WARNING: at most one a second, the
 * next one logged saying how many were not, so that a Redis refusing every write (its
 * maxmemory reached, a disk that stopped its saves: MISCONF) does not flood the log (the
 * requests are counted where their kind is: dropped broadcasts). */
static void refused_log(rb_t *rb, const char *what, const redisReply *r)
{
    uint64_t now = now_ms();
    snprintf(rb->refused_last, sizeof(rb->refused_last), "%s refused: %.128s", what,
             r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
    if (rb->refused_logged_ms && now - rb->refused_logged_ms < REFUSED_LOG_MS) {
        rb->refused_unlogged++;
        return;
    }
    if (rb->refused_unlogged)
        eddy_log(rb->cfg.log, EDDY_LOG_WARNING,
                 "rt_broker: %s (and %llu more refusals in the last %llu ms, not logged)",
                 rb->refused_last, (unsigned long long)rb->refused_unlogged,
                 (unsigned long long)(now - rb->refused_logged_ms));
    else
        eddy_log(rb->cfg.log, EDDY_LOG_WARNING, "rt_broker: %s", rb->refused_last);
    rb->refused_logged_ms = now;
    rb->refused_unlogged = 0;
}

/* Logs the refusals refused_log() kept back, once their second is over (the heartbeat
 * calls it: no refusal goes unreported). */
static void refused_flush(rb_t *rb)
{
    uint64_t now = now_ms();
    if (!rb->refused_unlogged || now - rb->refused_logged_ms < REFUSED_LOG_MS)
        return;
    eddy_log(rb->cfg.log, EDDY_LOG_WARNING,
             "rt_broker: %llu more refusals in the last %llu ms, not logged (the last: %s)",
             (unsigned long long)rb->refused_unlogged,
             (unsigned long long)(now - rb->refused_logged_ms), rb->refused_last);
    rb->refused_logged_ms = now;
    rb->refused_unlogged = 0;
}

static void history_reply(rb_t *rb, job_t *j, redisReply *r)
{
    history_result_t *res = history_result_new(rb, j, r);
    if (!res)
        return;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || r->element[1]->type != REDIS_REPLY_INTEGER ||
        r->element[2]->type != REDIS_REPLY_STRING) {
        refused_log(rb, "history read", r);
        res->err = EDDY_EPROTO;
        goto out;
    }
    uint64_t epoch = strtoull(r->element[2]->str, NULL, 10);
    res->top = (rt_position_t){epoch, (uint64_t)r->element[1]->integer};
    if (r->element[0]->integer != 1) {
        res->err = RT_HISTORY_GAP;
        goto out;
    }
    size_t n = (r->elements - 3) / 2, names = 0;
    for (size_t i = 0; i < n; i++) {
        redisReply *m = r->element[3 + 2 * i + 1];
        size_t nr, ne;
        if (m->type != REDIS_REPLY_STRING || msg_counts(m->str, m->len, &nr, &ne) != 0) {
            res->err = EDDY_EPROTO;
            goto out;
        }
        names += nr + ne;
    }
    if (!history_result_alloc(res, n, names))
        goto out;
    size_t used = 0, kept = 0;
    for (size_t i = 0; i < n; i++) {
        redisReply *m = r->element[3 + 2 * i + 1];
        rt_broker_delivery_t *d = &res->entries[kept];
        if (r->element[3 + 2 * i]->type != REDIS_REPLY_INTEGER) {
            res->err = EDDY_EPROTO;
            goto out;
        }
        if (entry_decode(rb, res, &used, m, epoch, r->element[3 + 2 * i]->integer, d) != 0)
            goto out;
        bool excluded = false;
        for (size_t e = 0; e < d->msg.nexcept && !excluded; e++)
            for (size_t k = 0; k < j->nrooms && !excluded; k++)
                excluded = strcmp(d->msg.except[e], j->rooms[k]) == 0;
        if (!excluded)
            kept++;
    }
    /* A broadcast to several of the rooms is in several streams: sort, keep one. */
    qsort(res->entries, kept, sizeof(*res->entries), cmp_delivery);
    size_t uniq = 0;
    for (size_t i = 0; i < kept; i++)
        if (!uniq || res->entries[uniq - 1].pos.seq != res->entries[i].pos.seq)
            res->entries[uniq++] = res->entries[i];
    res->n = uniq;
out:
    history_result_done(rb, j, r, res);
}

static void presence_reply(rb_t *rb, job_t *j, redisReply *r)
{
    presence_result_t *res = calloc(1, sizeof(*res));
    if (!res) {
        freeReplyObject(r);
        fail_job(rb, j, EDDY_ENOMEM);
        return;
    }
    *res = (presence_result_t){.rb = rb, .cb = (rt_broker_presence_cb)j->cb, .arg = j->arg};
    const redisReply *list = r;
    if (list->type != REDIS_REPLY_ARRAY) {
        refused_log(rb, "presence read", r);
        res->err = EDDY_EPROTO;
        goto out;
    }
    size_t n = list->elements / 2, bytes = 1;
    for (size_t i = 0; i < n; i++)
        bytes += list->element[2 * i]->len + 1;
    res->entries = calloc(n ? n : 1, sizeof(*res->entries));
    res->names = malloc(bytes);
    if (!res->entries || !res->names) {
        res->err = EDDY_ENOMEM;
        goto out;
    }
    char *p = res->names;
    for (size_t i = 0; i < n; i++) {
        redisReply *f = list->element[2 * i], *v = list->element[2 * i + 1];
        char *sep = memchr(f->str, 0x1f, f->len);
        if (!sep)
            continue;
        memcpy(p, f->str, f->len + 1);
        p[sep - f->str] = 0;
        res->entries[res->n++] = (rt_broker_presence_t){p, p + (sep - f->str) + 1, v->str, v->len};
        p += f->len + 1;
    }
out:
    if (res->err)
        res->n = 0;
    res->reply = r;
    dispatch(rb, j->fd, run_presence_result, res);
    free(j);
}

/* The reply of a recent read: entries newest first, handed on oldest first. */
static void recent_reply(rb_t *rb, job_t *j, redisReply *r)
{
    history_result_t *res = history_result_new(rb, j, r);
    if (!res)
        return;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || r->element[1]->type != REDIS_REPLY_STRING) {
        refused_log(rb, "recent read", r);
        res->err = EDDY_EPROTO;
        goto out;
    }
    uint64_t epoch = strtoull(r->element[1]->str, NULL, 10);
    res->top = (rt_position_t){epoch, (uint64_t)r->element[0]->integer};
    size_t n = (r->elements - 2) / 2, names = 0;
    for (size_t i = 0; i < n; i++) {
        redisReply *s = r->element[2 + 2 * i], *m = r->element[2 + 2 * i + 1];
        size_t nr, ne;
        if (s->type != REDIS_REPLY_INTEGER || m->type != REDIS_REPLY_STRING ||
            msg_counts(m->str, m->len, &nr, &ne) != 0) {
            res->err = EDDY_EPROTO;
            goto out;
        }
        names += nr + ne;
    }
    if (!history_result_alloc(res, n, names))
        goto out;
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        redisReply *m = r->element[2 + 2 * (n - 1 - i) + 1];
        rt_broker_delivery_t *d = &res->entries[i];
        if (entry_decode(rb, res, &used, m, epoch, r->element[2 + 2 * (n - 1 - i)]->integer, d) !=
            0)
            goto out;
    }
    res->n = n;
out:
    history_result_done(rb, j, r, res);
}

/* Handles the reply of job j (both owned). */
static void job_reply(rb_t *rb, job_t *j, redisReply *r)
{
    switch (j->kind) {
    case JOB_PUBLISH:
        if ((j->plain && r->type == REDIS_REPLY_INTEGER) ||
            (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
             r->element[0]->type == REDIS_REPLY_INTEGER &&
             r->element[1]->type == REDIS_REPLY_STRING)) {
            atomic_fetch_add(&rb->published, 1);
            if (j->cb) {
                publish_result_t *res = malloc(sizeof(*res));
                if (res) {
                    /* A plain publish has no position. */
                    rt_position_t pos = {0, 0};
                    if (!j->plain)
                        pos = (rt_position_t){strtoull(r->element[1]->str, NULL, 10),
                                              (uint64_t)r->element[0]->integer};
                    *res = (publish_result_t){rb, (rt_broker_publish_cb)j->cb, j->arg, 0, pos};
                    dispatch(rb, j->fd, run_publish_result, res);
                }
            }
            free(j);
        } else {
            refused_log(rb, "publish", r);
            fail_job(rb, j, EDDY_EPROTO);
        }
        freeReplyObject(r);
        return;
    case JOB_HISTORY:
        history_reply(rb, j, r);
        return;
    case JOB_PRESENCE_GET:
        presence_reply(rb, j, r);
        return;
    case JOB_RECENT:
        recent_reply(rb, j, r);
        return;
    case JOB_NODE_REQUEST:
        /* Registered now, before the thread reads its subscriptions again (where the
         * answers arrive). */
        if (r->type == REDIS_REPLY_ERROR)
            refused_log(rb, "node request", r);
        freeReplyObject(r);
        if (j->req_id && !nreq_start(rb, j)) {
            fail_job(rb, j, EDDY_ENOMEM);
            return;
        }
        free(j);
        return;
    case JOB_SESSION_LIVE:
        if (r->type != REDIS_REPLY_ERROR)
            session_held(rb, j);
        else
            refused_log(rb, "session record", r);
        freeReplyObject(r);
        free(j);
        return;
    case JOB_SESSION_TAKE: {
        if (j->script == SCRIPT_SESSION && r->type == REDIS_REPLY_ARRAY && r->elements) {
            take_holders(rb, j, r);
            return;
        }
        session_result_t *res = malloc(sizeof(*res));
        if (!res) {
            freeReplyObject(r);
            fail_job(rb, j, EDDY_ENOMEM);
            return;
        }
        int err = r->type == REDIS_REPLY_STRING                                ? 0
                  : r->type == REDIS_REPLY_NIL || r->type == REDIS_REPLY_ARRAY ? EDDY_ENOTFOUND
                                                                               : EDDY_EPROTO;
        if (err == EDDY_EPROTO)
            refused_log(rb, "session read", r);
        *res = (session_result_t){rb, (rt_broker_session_cb)j->cb, j->arg, err, r};
        dispatch(rb, j->fd, run_session_result, res);
        free(j);
        return;
    }
    default:
        if (r->type == REDIS_REPLY_ERROR)
            refused_log(rb, j->argv[0], r);
        freeReplyObject(r);
        free(j);
        return;
    }
}

static bool is_noscript(const redisReply *r)
{
    return r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0;
}

static void use_sha(rb_t *rb, job_t *j)
{
    if (j->script >= 0) {
        j->argv[0] = "EVALSHA";
        j->argvlen[0] = 7;
        j->argv[1] = rb->sha[j->script];
        j->argvlen[1] = 40;
    }
}

/* Appends plain publish j's PUBLISHes, one per channel, its message numbered now: in the
 * order this node sends its broadcasts. False when the connection broke. */
static bool plain_append(rb_t *rb, job_t *j)
{
    put_hex16((char *)j->argv[1] + 1, ++rb->plain_num);
    uint64_t now = now_ms();
    for (int i = 0; i < j->plain; i++) {
        /* hiredis copies the arguments: the head is rewritten for the next channel. */
        put_hex16((char *)j->argv[1] + PLAIN_CHAN,
                  rt_chanseq_next(rb->chan_sent, j->argv[2 + i], j->argvlen[2 + i], now));
        const char *argv[] = {j->argv[0], j->argv[2 + i], j->argv[1]};
        size_t lens[] = {j->argvlen[0], j->argvlen[2 + i], j->argvlen[1]};
        if (redisAppendCommandArgv(rb->cmd, 3, argv, lens) != REDIS_OK)
            return false;
    }
    return true;
}

/* Reads the replies to plain publish j's other PUBLISHes (the first is *r): the first error
 * among them stands for all. False when the connection broke (*r freed). */
static bool plain_replies(rb_t *rb, const job_t *j, redisReply **r)
{
    for (int i = 1; i < j->plain; i++) {
        redisReply *next;
        if (rt_redis_get_reply(rb->cmd, (void **)&next) != REDIS_OK) {
            freeReplyObject(*r);
            return false;
        }
        if ((*r)->type == REDIS_REPLY_ERROR) {
            freeReplyObject(next);
        } else {
            freeReplyObject(*r);
            *r = next;
        }
    }
    return true;
}

/* A history read without history (no_history): not recovered, no position. */
static void history_none(rb_t *rb, job_t *j)
{
    history_result_t *res = calloc(1, sizeof(*res));
    if (!res) {
        fail_job(rb, j, EDDY_ENOMEM);
        return;
    }
    *res = (history_result_t){
        .rb = rb, .cb = (rt_broker_history_cb)j->cb, .arg = j->arg, .err = RT_HISTORY_GAP};
    dispatch(rb, j->fd, run_history_result, res);
    free(j);
}

/* Redis' clock now, estimated from its last TIME answer (thread only). */
static uint64_t redis_now(const rb_t *rb)
{
    return rb->redis_time + (now_ms() - rb->redis_time_at);
}

/* Takes Redis' clock from a TIME reply; false if it is not one. */
static bool take_time(rb_t *rb, const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING)
        return false;
    rb->redis_time = strtoull(r->element[0]->str, NULL, 10) * 1000 +
                     strtoull(r->element[1]->str, NULL, 10) / 1000;
    rb->redis_time_at = now_ms();
    return true;
}

/* Redis Cluster: the key of nsp's lease, P{nsp}:l (allocated; NULL: out of memory). */
static char *lease_key(const rb_t *rb, const char *nsp)
{
    size_t size = rb->prefix_len + strlen(nsp) + 6;
    char *key = malloc(size);
    if (key)
        snprintf(key, size, "%s{%s}:l", rb->prefix, nsp);
    return key;
}

static void beat_clear(rb_t *rb)
{
    for (size_t i = 0; i < rb->nbeat; i++)
        free(rb->beat[i]);
    free(rb->beat);
    rb->beat = NULL;
    rb->nbeat = 0;
}

/* The leases a heartbeat renews (*keys of them): Pnodes, or in a cluster each served
 * namespace's (noted in rb->beat: they may change before the replies are read); room for
 * the heartbeat's replies in rb->beat_r. -1: out of memory. */
static int beat_prepare(rb_t *rb, size_t *keys)
{
    beat_clear(rb);
    bool ok = true;
    pthread_mutex_lock(&rb->lock);
    if (rb->cluster_nodes) {
        size_t n = 0;
        for (lease_t *l = rb->leases; l; l = l->next)
            n++;
        ok = (rb->beat = calloc(n ? n : 1, sizeof(*rb->beat))) != NULL;
        for (lease_t *l = rb->leases; ok && l; l = l->next) {
            /* A lost slot's master refuses it (logged once, when the slot was lost). */
            if (slot_lost(rb, (int)l->slot))
                continue;
            if ((ok = (rb->beat[rb->nbeat] = strdup(l->nsp)) != NULL))
                rb->nbeat++;
        }
        rb->leases_new = false;
    }
    pthread_mutex_unlock(&rb->lock);
    *keys = rb->cluster_nodes ? rb->nbeat : 1;
    size_t need = 2 + 3 * *keys;
    if (ok && need > rb->beat_cap) {
        redisReply **r = realloc(rb->beat_r, need * sizeof(*r));
        if ((ok = r != NULL)) {
            rb->beat_r = r;
            rb->beat_cap = need;
        }
    }
    if (ok)
        memset(rb->beat_r, 0, need * sizeof(*rb->beat_r));
    return ok ? 0 : -1;
}

/* Appends a heartbeat: the leases renewed and the expired ones removed (in Redis' time as
 * estimated from the previous heartbeat's TIME, which it asks again), the alive nodes read,
 * the self round trip's ping and the session records' renewal. Plain commands, no script:
 * EVALSHA of the same three commands cost Redis 57-79 us against about 12. */
static int heartbeat_append(rb_t *rb)
{
    char expiry[24], now[24];
    uint64_t t = redis_now(rb);
    snprintf(expiry, sizeof(expiry), "%llu", (unsigned long long)t + rb->cfg.lease_ms);
    snprintf(now, sizeof(now), "%llu", (unsigned long long)t);
    size_t keys;
    if (beat_prepare(rb, &keys) != 0 || redisAppendCommand(rb->cmd, "TIME") != REDIS_OK)
        return -1;
    for (size_t i = 0; i < keys; i++) {
        char *key = rb->cluster_nodes ? lease_key(rb, rb->beat[i]) : rb->nodes_key;
        bool ok =
            key &&
            redisAppendCommand(rb->cmd, "ZADD %s %s %s", key, expiry, rb->node_id) == REDIS_OK &&
            redisAppendCommand(rb->cmd, "ZREMRANGEBYSCORE %s -inf %s", key, now) == REDIS_OK &&
            redisAppendCommand(rb->cmd, "ZRANGE %s 0 -1", key) == REDIS_OK;
        if (key != rb->nodes_key)
            free(key);
        if (!ok)
            return -1;
    }
    if (redisAppendCommand(rb->cmd, "%s %s ping", rb->pub_verb, rb->node_channel) != REDIS_OK ||
        session_renew(rb) != 0)
        return -1;
    /* The next one is due a period after this one was due: one sent early along a publish
     * (run_jobs()) keeps the schedule, or a busy node would beat every 3/4 of a period. */
    uint64_t sent = now_ms(), due = rb->next_heartbeat;
    bool early = due > sent && due - sent <= rb->cfg.heartbeat_ms / 4;
    rb->next_heartbeat = (early ? due : sent) + rb->cfg.heartbeat_ms;
    return 0;
}

/* The alive nodes from a ZRANGE reply (allocated, *n of them; NULL: out of memory). */
static char (*nodes_of(const redisReply *r, size_t *n))[RT_BROKER_NODE_ID_SIZE]
{
    char(*ids)[RT_BROKER_NODE_ID_SIZE] = calloc(r->elements ? r->elements : 1, sizeof(*ids));
    *n = 0;
    for (size_t i = 0; ids && i < r->elements; i++)
        if (r->element[i]->type == REDIS_REPLY_STRING &&
            r->element[i]->len <= RT_BROKER_NODE_ID_MAX)
            memcpy(ids[(*n)++], r->element[i]->str, r->element[i]->len + 1);
    return ids;
}

/* The alive nodes of the lease read (r: ZRANGE's reply), of nsp's lease in a cluster (NULL:
 * Pnodes). Out of memory, the previous list stays: the next heartbeat tries again. */
static void take_nodes(rb_t *rb, const char *nsp, const redisReply *r)
{
    size_t n;
    char(*ids)[RT_BROKER_NODE_ID_SIZE] = nodes_of(r, &n);
    if (!ids)
        return;
    pthread_mutex_lock(&rb->lock);
    lease_t *l = rb->leases;
    while (nsp && l && strcmp(l->nsp, nsp) != 0)
        l = l->next;
    if (!nsp) {
        free(rb->nodes);
        rb->nodes = ids;
        rb->nnodes = n;
    } else if (l) {
        free(l->ids);
        l->ids = ids;
        l->n = n;
    } else {
        free(ids); /* handed over meanwhile */
    }
    pthread_mutex_unlock(&rb->lock);
}

/* Redis Cluster: the node's alive nodes (rb_nodes()) are those of all its leases. */
static void nodes_union(rb_t *rb)
{
    pthread_mutex_lock(&rb->lock);
    size_t total = 0, n = 0;
    for (lease_t *l = rb->leases; l; l = l->next)
        total += l->n;
    char(*ids)[RT_BROKER_NODE_ID_SIZE] = calloc(total ? total : 1, sizeof(*ids));
    for (lease_t *l = rb->leases; ids && l; l = l->next)
        for (size_t i = 0; i < l->n; i++) {
            size_t k = 0;
            while (k < n && strcmp(ids[k], l->ids[i]) != 0)
                k++;
            if (k == n)
                memcpy(ids[n++], l->ids[i], RT_BROKER_NODE_ID_SIZE);
        }
    if (ids) {
        free(rb->nodes);
        rb->nodes = ids;
        rb->nnodes = n;
    }
    pthread_mutex_unlock(&rb->lock);
}

/* Whether r says that its command's slot is being migrated: ASK (the command's keys, or
 * some of them, are on the importing master already) or TRYAGAIN (which a Redis may answer
 * when only some are). A heartbeat's lease so answered is not renewed on this beat (the
 * move's MOVED hands it over at a later one); a job's requests are held (hold_job()). */
static bool slot_migrating(const rb_t *rb, const redisReply *r)
{
    return rb->cluster_nodes && r->type == REDIS_REPLY_ERROR &&
           (strncmp(r->str, "ASK ", 4) == 0 || strncmp(r->str, "TRYAGAIN", 8) == 0);
}

/* The part is up (connected, its heartbeat accepted); gap: it ends an outage of down_ms
 * (counted). */
static void went_up(rb_t *rb, bool gap, uint64_t down_ms)
{
    if (gap)
        atomic_fetch_add(&rb->gaps, 1);
    rb->was_up = true;
    rb->joined = false;
    rb->down_since = 0;
    set_state(rb, RT_BROKER_UP, gap, down_ms);
}

/* After a heartbeat the master answered (refusal: its first refused command, NULL: none):
 * a Redis that refuses it (its maxmemory reached: OOM; a disk that stopped its saves:
 * MISCONF; an ACL) refuses this node's lease, so the other nodes stop counting it, and
 * its broadcasts, history and presence writes too: the part is down (not ready), logged
 * with the reason; up again, with a gap, at the first heartbeat it accepts. */
static void heartbeat_settle(rb_t *rb, const redisReply *refusal)
{
    if (refusal && !rb->refusing_since) {
        rb->refusing_since = now_ms();
        if (rb->was_up && !rb->down_since)
            rb->down_since = now_ms();
        eddy_log(rb->cfg.log, EDDY_LOG_WARNING,
                 "rt_broker: Redis %s refuses this node's heartbeat (%.128s): down until it "
                 "accepts it again (the node's lease lapses, writes such as broadcasts with "
                 "history are refused)",
                 where(rb), refusal->str);
        set_state(rb, RT_BROKER_DOWN, false, 0);
    } else if (!refusal && rb->refusing_since) {
        eddy_log(rb->cfg.log, EDDY_LOG_NOTICE,
                 "rt_broker: Redis %s accepts this node's heartbeat again after %llu ms", where(rb),
                 (unsigned long long)(now_ms() - rb->refusing_since));
        rb->refusing_since = 0;
        went_up(rb, rb->down_since != 0, rb->down_since ? now_ms() - rb->down_since : 0);
    }
    refused_flush(rb);
}

/* Reads heartbeat_append()'s replies. -1: the connection broke or Redis is no longer the
 * master. */
static int heartbeat_read(rb_t *rb)
{
    size_t keys = rb->cluster_nodes ? rb->nbeat : 1, total = 2 + 3 * keys;
    redisReply **r = rb->beat_r;
    const redisReply *refusal = NULL;
    int rc = 0;
    for (size_t i = 0; i < total && rc == 0; i++)
        if (rt_redis_get_reply(rb->cmd, (void **)&r[i]) != REDIS_OK)
            rc = -1;
    if (rc == 0 && session_renewed(rb) != 0)
        rc = -1;
    for (size_t i = 0; i < total && rc == 0; i++) {
        if (slot_migrating(rb, r[i]))
            continue; /* its nodes stay as last read until the migration ends */
        if (lost_master(rb, r[i])) {
            /* The master changed, or a namespace's slot moved. */
            if (!redirect_settle(rb, true))
                rc = -1;
        } else if (r[i]->type == REDIS_REPLY_ERROR && !refusal) {
            refusal = r[i];
        }
    }
    if (rc == 0)
        heartbeat_settle(rb, refusal);
    for (size_t k = 0; k < keys && rc == 0; k++)
        if (r[3 + 3 * k]->type == REDIS_REPLY_ARRAY)
            take_nodes(rb, rb->cluster_nodes ? rb->beat[k] : NULL, r[3 + 3 * k]);
    if (rc == 0 && rb->cluster_nodes)
        nodes_union(rb);
    if (rc == 0) {
        take_time(rb, r[0]);
        uint64_t now = now_ms();
        if (now > ORIGIN_IDLE_MS)
            origins_prune(rb, now - ORIGIN_IDLE_MS);
    }
    for (size_t i = 0; i < total; i++)
        if (r[i])
            freeReplyObject(r[i]);
    beat_clear(rb);
    return rc;
}

/* A heartbeat on its own: one pipelined write, so that Redis wakes up once for it (an idle
 * Redis' CPU goes mostly to waking up). */
static int heartbeat(rb_t *rb)
{
    return heartbeat_append(rb) == 0 && heartbeat_read(rb) == 0 ? 0 : -1;
}

/* Asks Redis' clock (the leases' time) on a new connection: another master after a
 * failover has its own. */
static int sync_time(rb_t *rb, const char **err)
{
    redisReply *r = rt_redis_command(rb->cmd, "TIME");
    if (!r) {
        *err = rb->cmd->errstr;
        return -1;
    }
    bool ok = take_time(rb, r);
    freeReplyObject(r);
    if (!ok)
        *err = "TIME refused";
    return ok ? 0 : -1;
}

/* How long a request refused because its master no longer serves the slot (a failover:
 * MOVED, READONLY, CLUSTERDOWN; with Sentinel READONLY, MASTERDOWN) is sent again, after
 * each reconnection, or held while its slot is migrated (ASK, TRYAGAIN), before it is
 * answered with the refusal. Redis refuses
 * these before running the command or script, so a retry never applies one twice. */
#define REDIRECT_RETRY_MS 10000

/* Whether job j, refused with r because this Redis no longer serves its slot, goes back
 * to the queue (then it was marked). A node request or answer in a namespace's slot does
 * (a request's deadline stays); one on a part's own channel does not: its connection is
 * its own. */
static bool redirect_retry(rb_t *rb, job_t *j, const redisReply *r)
{
    if ((j->kind == JOB_NODE_REQUEST || j->kind == JOB_NODE_REPLY) && !j->nsp)
        return false;
    uint64_t now = now_ms();
    if (!j->redirected_at)
        j->redirected_at = now;
    if (now - j->redirected_at > REDIRECT_RETRY_MS)
        return false;
    /* The cluster itself is not ready: the reconnection waits a little (see thread_main). */
    if (strstr(r->str, "CLUSTERDOWN"))
        rb->redirect_pause = true;
    return true;
}

/* Links first..last (a list of jobs) in front of the queue *head (its tail *tail). */
static void splice_front(job_t **head, job_t **tail, job_t *first, job_t *last)
{
    if (!first)
        return;
    last->next = *head;
    if (!*head)
        *tail = last;
    *head = first;
}

/* Puts the jobs of list (in order) back at the head of their queues (answers to theirs),
 * past the bounds (they were in them); counted: they are added to the queue's counts (else
 * they are in them). Returns how many. */
static size_t queue_front(rb_t *rb, job_t *list, bool counted)
{
    job_t *first[2] = {NULL, NULL}, *last[2] = {NULL, NULL}; /* [1]: answers */
    size_t n = 0, bytes = 0;
    for (job_t *j = list, *next; j; j = next) {
        next = j->next;
        j->next = NULL;
        int k = j->kind == JOB_NODE_REPLY;
        if (last[k])
            last[k]->next = j;
        else
            first[k] = j;
        last[k] = j;
        n++;
        bytes += j->bytes;
    }
    pthread_mutex_lock(&rb->lock);
    splice_front(&rb->head, &rb->tail, first[0], last[0]);
    splice_front(&rb->rhead, &rb->rtail, first[1], last[1]);
    if (counted) {
        rb->queued += n;
        rb->queued_bytes += bytes;
    }
    pthread_mutex_unlock(&rb->lock);
    return n;
}

/* Puts the jobs of list, refused as not served here, back at the head of their queues:
 * the next connection sends them first. */
static void requeue_front(rb_t *rb, job_t *list)
{
    if (!list)
        return;
    size_t n = queue_front(rb, list, true);
    uint64_t retried = atomic_fetch_add(&rb->retried, n) + n;
    eddy_log(rb->cfg.log, EDDY_LOG_NOTICE,
             "rt_broker: Redis %s no longer serves the slot: %zu requests queued again, sent "
             "where it is served (%llu so far)",
             where(rb), n, (unsigned long long)retried);
}

/* The slot of job j's keys (its first key's; a node request's or answer's channel's), or
 * -1: a node request or answer on the node's own channels, or nothing asked of Redis. */
static int job_slot(const job_t *j)
{
    if (((j->kind == JOB_NODE_REQUEST || j->kind == JOB_NODE_REPLY) && !j->nsp) || j->argc < 2)
        return -1;
    int at = j->plain ? 2 : strncmp(j->argv[0], "EVAL", 4) == 0 ? 3 : 1;
    return at < j->argc ? (int)rt_broker_keyslot(j->argv[at], j->argvlen[at]) : -1;
}

/* The slot of job j when Redis answered r because the slot is being migrated
 * (slot_migrating()), else -1. */
static int migrating_slot(const rb_t *rb, const job_t *j, const redisReply *r)
{
    return slot_migrating(rb, r) ? job_slot(j) : -1;
}

/* Whether slot's jobs are held (hold_job()). */
static bool slot_held(const rb_t *rb, int slot)
{
    return rb->hold_head && slot >= 0 && (rb->hold_slots[slot / 8] >> (slot % 8) & 1);
}

/* Holds job j, of slot, behind the jobs held (counted: it was taken out of the queue's
 * counts, it is added back): the first hold lasts backoff_min_ms, and those that join it
 * leave with it. A barrier request held holds what follows it too. */
static void hold_job(rb_t *rb, job_t *j, int slot, bool counted)
{
    if (!rb->hold_head)
        rb->hold_until = now_ms() + rb->cfg.backoff_min_ms;
    j->next = NULL;
    if (rb->hold_tail)
        rb->hold_tail->next = j;
    else
        rb->hold_head = j;
    rb->hold_tail = j;
    rb->hold_slots[slot / 8] |= (uint8_t)(1u << (slot % 8));
    if (j->kind == JOB_NODE_REQUEST && (j->rflags & RT_BROKER_BARRIER))
        rb->hold_barrier = true;
    if (counted) {
        pthread_mutex_lock(&rb->lock);
        rb->queued++;
        rb->queued_bytes += j->bytes;
        pthread_mutex_unlock(&rb->lock);
    }
}

/* A migration refused job j (answer r, slot slot): j is held (logged once per slot) while
 * its retries last (redirect_retry()), else (or when stopping) answered with the refusal. */
static void migration_refused(rb_t *rb, job_t *j, redisReply *r, int slot)
{
    if (atomic_load(&rb->stop) || !redirect_retry(rb, j, r)) {
        job_reply(rb, j, r);
        return;
    }
    if (slot != rb->hold_logged)
        eddy_log(rb->cfg.log, EDDY_LOG_NOTICE,
                 "rt_broker: Redis %s: slot %d is being migrated (%.48s): its requests wait "
                 "%llu ms and are sent again, the other slots' go on",
                 where(rb), slot, r->str, (unsigned long long)rb->cfg.backoff_min_ms);
    rb->hold_logged = slot;
    freeReplyObject(r);
    atomic_fetch_add(&rb->retried, 1);
    hold_job(rb, j, slot, true);
}

/* Puts the held jobs back at the head of their queues (at hold_until, or when the
 * connection broke: the next one sends them). */
static void hold_release(rb_t *rb)
{
    if (!rb->hold_head)
        return;
    queue_front(rb, rb->hold_head, false);
    rb->hold_head = rb->hold_tail = NULL;
    rb->hold_barrier = false;
    memset(rb->hold_slots, 0, sizeof(rb->hold_slots));
}

/* Sends a batch of queued jobs pipelined and handles their replies. Returns -1 when the
 * connection broke (the batch's unanswered jobs are answered EDDY_ECLOSED) or this Redis
 * no longer serves the slot (the jobs it refused so are queued again, first). */
static int run_jobs(rb_t *rb)
{
    job_t *moved = NULL, **mtail = &moved; /* refused as not served here: queued again */
    job_t *batch = NULL, **tail = &batch;
    size_t n = 0;
    if (rb->hold_head && now_ms() >= rb->hold_until)
        hold_release(rb);
    /* A namespace's new lease goes before what follows (its presence entries, requests). */
    pthread_mutex_lock(&rb->lock);
    bool leases_new = rb->leases_new;
    pthread_mutex_unlock(&rb->lock);
    if (leases_new && heartbeat(rb) != 0)
        return -1;
    pthread_mutex_lock(&rb->lock);
    /* Answers first (a barrier never holds them, or two nodes' barriers would wait for each
     * other), once the subscriptions asked for before them are active. */
    while (rb->rhead && !rb->pending && !rb->patterns_pending && n < 256) {
        job_t *j = rb->rhead;
        rb->rhead = j->next;
        if (!rb->rhead)
            rb->rtail = NULL;
        rb->queued--;
        rb->queued_bytes -= j->bytes;
        j->next = NULL;
        *tail = j;
        tail = &j->next;
        n++;
    }
    bool held = (rb->barrier || rb->hold_barrier) && !atomic_load(&rb->stop);
    while (rb->head && n < 256 && !held) {
        job_t *j = rb->head;
        int slot = rb->hold_head ? job_slot(j) : -1;
        if (slot_held(rb, slot)) { /* behind its slot's held jobs, still counted */
            rb->head = j->next;
            if (!rb->head)
                rb->tail = NULL;
            hold_job(rb, j, slot, false);
            held = rb->hold_barrier;
            continue;
        }
        /* A history read waits for the subscriptions asked for before it. */
        if (j->kind == JOB_HISTORY && (rb->pending || rb->patterns_pending))
            break;
        rb->head = j->next;
        if (!rb->head)
            rb->tail = NULL;
        rb->queued--;
        rb->queued_bytes -= j->bytes;
        j->next = NULL;
        *tail = j;
        tail = &j->next;
        n++;
        /* What follows a barrier waits for its answers. */
        held = j->kind == JOB_NODE_REQUEST && (j->rflags & RT_BROKER_BARRIER);
    }
    if (rb->queued <= rb->cfg.queue_max / 2)
        rb->drop_logged = false;
    pthread_mutex_unlock(&rb->lock);
    if (!n)
        return 0;
    for (job_t *j = batch; j; j = j->next) {
        use_sha(rb, j);
        if (j->plain ? !plain_append(rb, j)
                     : j->argc && redisAppendCommandArgv(rb->cmd, j->argc, j->argv, j->argvlen) !=
                                      REDIS_OK)
            goto broken;
    }
    /* A heartbeat due soon rides along: Redis then wakes up once for both (a busy node's
     * heartbeats cost it no wake-up of their own). */
    bool beat = now_ms() + rb->cfg.heartbeat_ms / 4 >= rb->next_heartbeat;
    if (beat && heartbeat_append(rb) != 0)
        goto broken;
    job_t *retry = NULL, **rtail = &retry;
    bool demoted = false;
    while (batch) {
        job_t *j = batch;
        if (!j->argc) {
            batch = j->next;
            history_none(rb, j);
            continue;
        }
        redisReply *r;
        if (rt_redis_get_reply(rb->cmd, (void **)&r) != REDIS_OK || !plain_replies(rb, j, &r))
            goto broken;
        batch = j->next;
        j->next = NULL;
        int slot = migrating_slot(rb, j, r);
        if (slot >= 0) {
            migration_refused(rb, j, r, slot);
            continue;
        }
        bool lost = lost_master(rb, r);
        demoted = lost || demoted;
        if (lost && redirect_retry(rb, j, r)) {
            freeReplyObject(r);
            *mtail = j;
            mtail = &j->next;
            continue;
        }
        if (j->script >= 0 && is_noscript(r)) {
            /* The script cache was flushed: EVAL (which caches it again) after the rest of
             * the batch's replies, so a retried publish takes a later seq. */
            freeReplyObject(r);
            *rtail = j;
            rtail = &j->next;
            continue;
        }
        job_reply(rb, j, r);
    }
    if (beat && heartbeat_read(rb) != 0) {
        batch = retry;
        goto broken;
    }
    while (retry) {
        job_t *j = retry;
        retry = j->next;
        j->next = NULL;
        j->argv[0] = "EVAL";
        j->argvlen[0] = 4;
        j->argv[1] = script_text(rb, j->script);
        j->argvlen[1] = strlen(j->argv[1]);
        redisReply *r = command(rb->cmd, j->argc, j->argv, j->argvlen);
        if (!r) {
            batch = j;
            j->next = retry;
            goto broken;
        }
        job_reply(rb, j, r);
    }
    requeue_front(rb, moved);
    return demoted && !redirect_settle(rb, true) ? -1 : 0;
broken:
    requeue_front(rb, moved);
    rb->moved_why[0] = '\0';
    while (batch) {
        job_t *j = batch;
        batch = j->next;
        fail_job(rb, j, EDDY_ECLOSED);
    }
    return -1;
}

/* Answers the queued requests that cannot wait for a reconnection (reads). */
static void fail_waiting(rb_t *rb, bool everything)
{
    job_t *failed = NULL;
    pthread_mutex_lock(&rb->lock);
    job_t **pj = &rb->head, *last = NULL;
    while (*pj) {
        job_t *j = *pj;
        if (everything || j->kind == JOB_HISTORY || j->kind == JOB_SESSION_TAKE ||
            j->kind == JOB_PRESENCE_GET || j->kind == JOB_RECENT ||
            (j->kind == JOB_NODE_REQUEST && j->cb)) {
            *pj = j->next;
            rb->queued--;
            rb->queued_bytes -= j->bytes;
            j->next = failed;
            failed = j;
        } else {
            last = j;
            pj = &j->next;
        }
    }
    rb->tail = last;
    /* Answers are for the connection they were asked on. */
    while (rb->rhead) {
        job_t *j = rb->rhead;
        rb->rhead = j->next;
        rb->queued--;
        rb->queued_bytes -= j->bytes;
        free(j);
    }
    rb->rtail = NULL;
    pthread_mutex_unlock(&rb->lock);
    while (failed) {
        job_t *j = failed;
        failed = j->next;
        fail_job(rb, j, EDDY_ECLOSED);
    }
}

static int connect_all(rb_t *rb, const char **err)
{
    bool located = rb->sentinel_master || rb->cluster_nodes;
    if ((rb->sentinel_master && sentinel_master(rb, err) != 0) ||
        (rb->cluster_nodes && cluster_master(rb, err) != 0) || !(rb->cmd = connect_one(rb, err)) ||
        (located && check_master(rb, err) != 0) || !(rb->sub = connect_one(rb, err)))
        return -1;
    for (int i = 0; i < SCRIPT_COUNT; i++) {
        redisReply *r = rt_redis_command(rb->cmd, "SCRIPT LOAD %s", script_text(rb, i));
        if (!r) {
            *err = rb->cmd->errstr;
            return -1;
        }
        if (r->type != REDIS_REPLY_STRING || r->len != 40) {
            *err = "SCRIPT LOAD refused";
            freeReplyObject(r);
            return -1;
        }
        memcpy(rb->sha[i], r->str, 41);
        freeReplyObject(r);
    }
    if (sync_time(rb, err) != 0)
        return -1;
    set_state(rb, RT_BROKER_RECOVERING, false, 0);
    /* In a cluster requests come through the namespaces' channels (lease_ref()). */
    const char *ch[2] = {rb->node_channel, rb->all_channel};
    size_t len[2] = {strlen(ch[0]), strlen(ch[1])};
    const char *pattern = rb->emitter_pattern;
    size_t plen = pattern ? strlen(pattern) : 0;
    if (sub_send(rb, rb->sub_verb, ch, len, rb->cluster_nodes ? 1 : 2) != 0 ||
        (pattern && sub_send(rb, "PSUBSCRIBE", &pattern, &plen, 1) != 0) ||
        apply_subs(rb, true) != 0 || apply_patterns(rb, true) != 0 || heartbeat(rb) != 0) {
        *err = rb->sub->err ? rb->sub->errstr : rb->cmd->errstr;
        return -1;
    }
    if (rb->refusing_since) /* connected, but down until Redis accepts the heartbeat */
        return 0;
    bool gap = rb->down_since != 0;
    uint64_t down_ms = gap ? now_ms() - rb->down_since : 0;
    if (gap && rb->joined) {
        eddy_log(rb->cfg.log, EDDY_LOG_NOTICE,
                 "rt_broker: node %s connected to Redis %s, a part made while it runs: the "
                 "clients of the namespaces handed to it recover",
                 rb->node_id, where(rb));
    } else if (gap) {
        atomic_fetch_add(&rb->reconnects, 1);
        eddy_log(rb->cfg.log, EDDY_LOG_NOTICE,
                 "rt_broker: Redis %s connected again after %llu ms; subscriptions restored",
                 where(rb), (unsigned long long)down_ms);
    } else {
        eddy_log(rb->cfg.log, EDDY_LOG_INFO, "rt_broker: node %s connected to Redis %s",
                 rb->node_id, where(rb));
    }
    went_up(rb, gap, down_ms);
    return 0;
}

static void drain_wake(rb_t *rb)
{
    uint64_t v;
    ssize_t n = read(rb->wake_fd, &v, sizeof(v));
    (void)n;
}

static int loop_once(rb_t *rb)
{
    uint64_t now = now_ms();
    if (now >= rb->next_heartbeat) {
        if (heartbeat(rb) != 0)
            return -1;
    }
    nreq_sweep(rb, now, false); /* deadlines, and the alive nodes a heartbeat updated */
    pthread_mutex_lock(&rb->lock);
    bool busy = (rb->head && !rb->barrier && !rb->hold_barrier) || rb->rhead || rb->pending ||
                rb->patterns_pending;
    pthread_mutex_unlock(&rb->lock);
    struct pollfd pf[2] = {{.fd = rb->sub->fd, .events = POLLIN},
                           {.fd = rb->wake_fd, .events = POLLIN}};
    uint64_t until = rb->next_heartbeat;
    if (rb->hold_head && rb->hold_until < until)
        until = rb->hold_until;
    for (nreq_t *q = rb->reqs; q; q = q->next)
        if (q->deadline < until)
            until = q->deadline;
    int timeout = busy ? 0 : until > now ? (int)(until - now) : 0;
    if (poll(pf, 2, timeout) < 0 && errno != EINTR)
        return -1;
    if (pf[1].revents)
        drain_wake(rb);
    if (pf[0].revents && rt_redis_read(rb->sub) != REDIS_OK)
        return -1;
    /* Replies may also wait in the reader from an earlier blocking read. */
    redisReply *r;
    while (redisGetReplyFromReader(rb->sub, (void **)&r) == REDIS_OK && r)
        handle_sub_reply(rb, r);
    dropped_settle(rb);
    if (rb->sub->err)
        return -1;
    if (apply_subs(rb, false) != 0 || apply_patterns(rb, false) != 0)
        return -1;
    dropped_settle(rb); /* subscriptions refused with MOVED */
    if (rb->sub->err)
        return -1;
    return run_jobs(rb);
}

/* Waits delay ms before the next connection attempt, answering meanwhile the requests that
 * cannot wait. With Sentinel, a subscription to +switch-master on the sentinel that answered
 * last ends the wait when it announces a new address for the master: a failover is then
 * followed at once rather than at the next attempt (the backoff may have grown to seconds
 * while the sentinels still named the old master). */
static void backoff_wait(rb_t *rb, uint64_t delay)
{
    uint64_t until = now_ms() + delay, t; /* the subscription's own time counts */
    redisContext *watch = rb->sentinel_master ? sentinel_watch(rb) : NULL;
    while (!atomic_load(&rb->stop) && (t = now_ms()) < until) {
        struct pollfd pf[2] = {{.fd = rb->wake_fd, .events = POLLIN},
                               {.fd = watch ? watch->fd : -1, .events = POLLIN}};
        if (poll(pf, 2, (int)(until - t)) > 0 && pf[0].revents)
            drain_wake(rb);
        fail_waiting(rb, false);
        int switched = pf[1].revents ? sentinel_switched(rb, watch) : 0;
        if (switched != 0) {
            rt_redis_free(watch);
            watch = NULL;
        }
        if (switched > 0)
            break;
    }
    if (watch)
        rt_redis_free(watch);
}

static void *thread_main(void *p)
{
    rb_t *rb = p;
    uint64_t backoff = rb->cfg.backoff_min_ms;
    bool logged = false;
    while (!atomic_load(&rb->stop)) {
        if (rb->cmd) {
            if (loop_once(rb) != 0) {
                const char *why = rb->cmd->err   ? rb->cmd->errstr
                                  : rb->sub->err ? rb->sub->errstr
                                                 : "I/O error";
                char msg[128];
                snprintf(msg, sizeof(msg), "%s", why);
                disconnect(rb, msg);
                /* A cluster that answered CLUSTERDOWN is asked again after a pause: the
                 * requests queued again are not sent in a tight loop. */
                if (rb->redirect_pause) {
                    rb->redirect_pause = false;
                    backoff_wait(rb, rb->cfg.backoff_min_ms);
                }
            }
            continue;
        }
        const char *err = "?";
        if (connect_all(rb, &err) == 0) {
            backoff = rb->cfg.backoff_min_ms;
            logged = false;
            continue;
        }
        char msg[256]; /* err may point into a context freed below */
        snprintf(msg, sizeof(msg), "%s", err);
        if (rb->cmd)
            rt_redis_free(rb->cmd);
        if (rb->sub)
            rt_redis_free(rb->sub);
        rb->cmd = rb->sub = NULL;
        set_state(rb, RT_BROKER_DOWN, false, 0);
        if (!logged)
            eddy_log(rb->cfg.log, EDDY_LOG_WARNING,
                     "rt_broker: cannot connect to Redis %s (%s); retrying with backoff", where(rb),
                     msg);
        logged = true;
        /* Backoff with jitter: half the delay fixed, half random, so nodes spread out. */
        uint64_t delay = backoff / 2 + rand64(&rb->rng) % (backoff / 2 + 1);
        backoff = backoff * 2 > rb->cfg.backoff_max_ms ? rb->cfg.backoff_max_ms : backoff * 2;
        backoff_wait(rb, delay);
    }
    /* What is queued is sent before leaving, while Redis answers (a slot being migrated
     * no longer holds its jobs: they are answered with the refusal). */
    hold_release(rb);
    while (rb->cmd) {
        pthread_mutex_lock(&rb->lock);
        bool more = rb->head != NULL || rb->rhead != NULL;
        pthread_mutex_unlock(&rb->lock);
        if (!more)
            break;
        if (run_jobs(rb) != 0)
            disconnect(rb, rb->cmd->errstr);
    }
    if (rb->cmd) {
        /* Leave the cluster at once rather than when the leases run out. */
        size_t keys = 0;
        beat_prepare(rb, &keys); /* out of memory: the leases run out */
        for (size_t i = 0; i < keys; i++) {
            char *key = rb->cluster_nodes ? lease_key(rb, rb->beat[i]) : rb->nodes_key;
            redisReply *r = key ? rt_redis_command(rb->cmd, "ZREM %s %s", key, rb->node_id) : NULL;
            if (r)
                freeReplyObject(r);
            if (key != rb->nodes_key)
                free(key);
        }
        beat_clear(rb);
        rt_redis_free(rb->cmd);
    }
    if (rb->sub)
        rt_redis_free(rb->sub);
    rb->cmd = rb->sub = NULL;
    nreq_sweep(rb, 0, true);
    fail_waiting(rb, true);
    while (rb->seen) {
        nsp_seen_t *e = rb->seen;
        rb->seen = e->next;
        free(e);
    }
    origins_prune(rb, UINT64_MAX);
    return NULL;
}

/* ---------------------------------------------------------------------------------------
 * Queries, lifecycle
 * ------------------------------------------------------------------------------------- */

static size_t rb_nodes(rt_broker_t *b, char (*ids)[RT_BROKER_NODE_ID_SIZE], size_t max)
{
    rb_t *rb = (rb_t *)b;
    pthread_mutex_lock(&rb->lock);
    size_t n = rb->nnodes;
    for (size_t i = 0; i < n && i < max; i++)
        memcpy(ids[i], rb->nodes[i], RT_BROKER_NODE_ID_SIZE);
    pthread_mutex_unlock(&rb->lock);
    return n;
}

static bool rb_ready(rt_broker_t *b, uint64_t *age_ms)
{
    rb_t *rb = (rb_t *)b;
    uint64_t pong = atomic_load(&rb->last_pong), age = pong ? now_ms() - pong : UINT64_MAX;
    if (age_ms)
        *age_ms = age;
    /* Three heartbeats: one late round trip is not yet a failure. */
    return atomic_load(&rb->state) == RT_BROKER_UP && age <= 3ull * rb->cfg.heartbeat_ms &&
           !atomic_load(&rb->resharded);
}

static rt_broker_state_t rb_state(rt_broker_t *b)
{
    return (rt_broker_state_t)atomic_load(&((rb_t *)b)->state);
}

static void rb_stats(rt_broker_t *b, rt_broker_stats_t *out)
{
    rb_t *rb = (rb_t *)b;
    pthread_mutex_lock(&rb->lock);
    out->buffered = rb->queued;
    out->buffered_bytes = rb->queued_bytes;
    pthread_mutex_unlock(&rb->lock);
    out->published = atomic_load(&rb->published);
    out->delivered = atomic_load(&rb->delivered);
    out->dropped = atomic_load(&rb->dropped);
    out->reconnects = atomic_load(&rb->reconnects);
    out->gaps = atomic_load(&rb->gaps);
    out->master_switches = atomic_load(&rb->master_switches);
    out->missed = atomic_load(&rb->missed);
    out->retried = atomic_load(&rb->retried);
    out->slots_moved = atomic_load(&rb->slots_moved);
    out->subscriptions = atomic_load(&rb->nsubs) + atomic_load(&rb->npatterns);
}

static const char *rb_node_id(rt_broker_t *b)
{
    return ((rb_t *)b)->node_id;
}

static void rb_destroy(rb_t *rb)
{
    for (size_t i = 0; rb->subs && i < rb->subs_cap; i++)
        for (sub_t *s = rb->subs[i], *next; s; s = next) {
            next = s->next;
            free(s);
        }
    free(rb->subs);
    for (psub_t *ps = rb->patterns, *next; ps; ps = next) {
        next = ps->next;
        free(ps);
    }
    free(rb->nodes);
    for (lease_t *l = rb->leases, *next; l; l = next) {
        next = l->next;
        free(l->ids);
        free(l);
    }
    beat_clear(rb);
    free(rb->beat_r);
    free(rb->tags);
    free(rb->host);
    free(rb->password);
    free(rb->prefix);
    free(rb->node_channel);
    free(rb->nodes_key);
    free(rb->all_channel);
    free(rb->emitter_pattern);
    rt_chanseq_free(rb->chan_sent);
    rt_chanseq_free(rb->chan_heard);
    free(rb->sentinel_master);
    free(rb->sentinel_password);
    free(rb->username);
    free(rb->sentinel_username);
    free(rb->sentinels);
    rt_redis_tls_free(rb->tls);
    free(rb->cluster_nodes);
    free((void *)rb->slot_fate);
    free(rb->node_prefix);
    free(rb->publish_script);
    if (rb->wake_fd >= 0)
        close(rb->wake_fd);
    pthread_mutex_destroy(&rb->lock);
    free(rb);
}

static void rb_free(rt_broker_t *b)
{
    rb_t *rb = (rb_t *)b;
    atomic_store(&rb->stop, true);
    wake(rb);
    pthread_join(rb->thread, NULL);
    rb_destroy(rb);
}

static const rt_broker_ops_t redis_ops = {
    .publish = rb_publish,
    .subscribe = rb_subscribe,
    .unsubscribe = rb_unsubscribe,
    .history = rb_history,
    .session_put = rb_session_put,
    .session_take = rb_session_take,
    .session_pid = rb_session_pid,
    .presence_set = rb_presence_set,
    .presence_del = rb_presence_del,
    .presence_get = rb_presence_get,
    .nodes = rb_nodes,
    .ready = rb_ready,
    .state = rb_state,
    .stats = rb_stats,
    .node_id = rb_node_id,
    .free = rb_free,
    .request = rb_request,
    .respond = rb_respond,
    .recent = rb_recent,
};

/* Redis Cluster: leases handed over (resharding) join dst's, written at its next send. */
static void lease_give(rb_t *dst, lease_t *leases)
{
    if (!leases)
        return;
    pthread_mutex_lock(&dst->lock);
    while (leases) {
        lease_t *l = leases, *have = dst->leases;
        leases = l->next;
        while (have && strcmp(have->nsp, l->nsp) != 0)
            have = have->next;
        if (have) { /* handed back and forth: one entry */
            have->refs += l->refs;
            free(l->ids);
            free(l);
        } else {
            l->next = dst->leases;
            dst->leases = l;
        }
    }
    dst->leases_new = true;
    pthread_mutex_unlock(&dst->lock);
    wake(dst);
}

/* An interest handed over: its channel and references. */
typedef struct sub_move {
    struct sub_move *next;
    sub_t *sub; /* a copy, for sub_ref() */
    size_t refs;
} sub_move_t;

/* Takes the jobs of slot out of the queue *head (tail *tail), in order, into first..last;
 * counts them in *n and *bytes. */
static void take_slot_jobs(job_t **head, job_t **tail, unsigned slot, job_t **first, job_t **last,
                           size_t *n, size_t *bytes)
{
    job_t *prev = NULL;
    *first = *last = NULL;
    for (job_t **pj = head; *pj;) {
        job_t *j = *pj;
        if (job_slot(j) != (int)slot) {
            prev = j;
            pj = &j->next;
            continue;
        }
        *pj = j->next;
        if (*tail == j)
            *tail = prev;
        j->next = NULL;
        j->redirected_at = 0; /* its retries start afresh on the new master */
        if (*last)
            (*last)->next = j;
        else
            *first = j;
        *last = j;
        (*n)++;
        *bytes += j->bytes;
    }
}

/* Moves src's queued jobs of slot (those held while it was migrated first, answers to node
 * requests included) to the head of dst's queues and sets *route to part, both queues
 * locked (in address order: two parts may hand slots to each other at once): dst's thread
 * takes none of what was routed to it after the store before these. Runs on src's thread
 * (the held jobs are its own). Returns route's previous value. */
static uint8_t jobs_hand_over(rb_t *src, rb_t *dst, unsigned slot, _Atomic uint8_t *route,
                              uint8_t part, size_t *njobs)
{
    pthread_mutex_t *lock1 = src < dst ? &src->lock : &dst->lock;
    pthread_mutex_t *lock2 = src < dst ? &dst->lock : &src->lock;
    job_t *first, *last, *afirst, *alast, *hfirst, *hlast;
    size_t bytes = 0;
    *njobs = 0;
    take_slot_jobs(&src->hold_head, &src->hold_tail, slot, &hfirst, &hlast, njobs, &bytes);
    src->hold_slots[slot / 8] &= (uint8_t) ~(1u << (slot % 8));
    if (src->hold_logged == (int)slot) /* a later migration of it here is logged again */
        src->hold_logged = -1;
    src->hold_barrier = false;
    for (job_t *j = src->hold_head; j; j = j->next)
        src->hold_barrier |= j->kind == JOB_NODE_REQUEST && (j->rflags & RT_BROKER_BARRIER);
    pthread_mutex_lock(lock1);
    pthread_mutex_lock(lock2);
    take_slot_jobs(&src->head, &src->tail, slot, &first, &last, njobs, &bytes);
    if (hfirst) { /* they left before the queue's */
        hlast->next = first;
        if (!first)
            last = hlast;
        first = hfirst;
    }
    take_slot_jobs(&src->rhead, &src->rtail, slot, &afirst, &alast, njobs, &bytes);
    src->queued -= *njobs;
    src->queued_bytes -= bytes;
    uint8_t was = atomic_exchange(route, part);
    splice_front(&dst->head, &dst->tail, first, last);
    splice_front(&dst->rhead, &dst->rtail, afirst, alast);
    dst->queued += *njobs;
    dst->queued_bytes += bytes;
    pthread_mutex_unlock(lock2);
    pthread_mutex_unlock(lock1);
    if (*njobs)
        wake(dst);
    return was;
}

uint8_t rt_broker_redis_hand_over(rt_broker_t *from, rt_broker_t *to, unsigned slot,
                                  _Atomic uint8_t *route, uint8_t part)
{
    rb_t *src = (rb_t *)from, *dst = (rb_t *)to;
    if (from->ops != &redis_ops || to->ops != &redis_ops || from == to ||
        slot >= RT_BROKER_CLUSTER_SLOTS || !src->cluster_nodes || !dst->cluster_nodes)
        return atomic_exchange(route, part);
    atomic_store(&dst->slot_fate[slot], SLOT_HERE); /* it may have left dst before */
    size_t njobs;
    uint8_t was = jobs_hand_over(src, dst, slot, route, part, &njobs);
    /* The interest: taken out under src's lock, then given under dst's. An unsubscribe
     * routed to src just before the move finds nothing there (the channel then stays on
     * dst: harmless, the layer delivers to local members only). */
    sub_move_t *moves = NULL;
    pthread_mutex_lock(&src->lock);
    for (size_t i = 0; i < src->subs_cap; i++) {
        for (sub_t *s = src->subs[i]; s; s = s->next) {
            if (!s->refs || rt_broker_keyslot(s->channel, s->len) != slot)
                continue;
            sub_move_t *m = malloc(sizeof(*m));
            sub_t *copy = malloc(sizeof(sub_t) + s->len + 1);
            if (!m || !copy) { /* out of memory: the interest stays (logged below) */
                free(m);
                free(copy);
                continue;
            }
            memcpy(copy->channel, s->channel, s->len + 1);
            *m = (sub_move_t){moves, copy, s->refs};
            moves = m;
            /* Gone from here: the master dropped the channel with the slot, and this runs
             * on src's thread, which owns active. */
            s->refs = 0;
            s->active = false;
            sub_mark(src, s);
        }
    }
    /* The slot's leases go with their channels. */
    lease_t *leases = NULL;
    for (lease_t **it = &src->leases; *it;) {
        lease_t *l = *it;
        if (l->slot != slot) {
            it = &l->next;
            continue;
        }
        *it = l->next;
        l->next = leases;
        leases = l;
    }
    pthread_mutex_unlock(&src->lock);
    lease_give(dst, leases);
    size_t nsubs = 0, lost = 0;
    while (moves) {
        sub_move_t *m = moves;
        moves = m->next;
        if (sub_ref(dst, m->sub, strlen(m->sub->channel), m->refs) == 0)
            nsubs++;
        else
            lost++;
        free(m);
    }
    if (njobs || nsubs || lost)
        eddy_log(src->cfg.log, lost ? EDDY_LOG_ERROR : EDDY_LOG_INFO,
                 "rt_broker: slot %u: %zu requests and %zu channels handed to its new "
                 "master's part%s",
                 slot, njobs, nsubs,
                 lost ? " (out of memory: some channels not: their rooms get nothing here)" : "");
    return was;
}

void rt_broker_redis_config_init(rt_broker_redis_config_t *cfg)
{
    *cfg = (rt_broker_redis_config_t){
        .host = "127.0.0.1",
        .port = 6379,
        .prefix = "eddy:",
        .queue_max = 65536,
        .queue_max_bytes = 64u << 20,
        .history_max = 1000,
        .history_age_ms = 120000,
        .history_meta_ttl_ms = 3600000,
        .history_max_entries = 10000,
        .heartbeat_ms = 1000,
        .lease_ms = 3000,
        .io_timeout_ms = 2000,
        .backoff_min_ms = 100,
        .backoff_max_ms = 5000,
        .session_linger_ms = 10000,
    };
}

/* Whether the Sentinel fields of cfg are usable (or unset). */
static bool sentinels_ok(const rt_broker_redis_config_t *cfg)
{
    if (!cfg->sentinel_master)
        return true;
    if (!*cfg->sentinel_master || !cfg->sentinels || !cfg->nsentinels ||
        cfg->nsentinels > RT_BROKER_SENTINELS_MAX)
        return false;
    for (size_t i = 0; i < cfg->nsentinels; i++)
        if (!cfg->sentinels[i].host || !*cfg->sentinels[i].host || cfg->sentinels[i].port <= 0 ||
            cfg->sentinels[i].port > 65535)
            return false;
    return true;
}

/* Copies the sentinels of cfg into rb (one allocation: the array, then their hosts). */
static int sentinels_copy(rb_t *rb, const rt_broker_redis_config_t *cfg)
{
    rb->sentinel_master = strdup(cfg->sentinel_master);
    rb->sentinel_password = cfg->sentinel_password ? strdup(cfg->sentinel_password) : NULL;
    rb->sentinels = addrs_copy(cfg->sentinels, cfg->nsentinels);
    if (!rb->sentinel_master || (cfg->sentinel_password && !rb->sentinel_password) ||
        !rb->sentinels)
        return -1;
    rb->cfg.sentinel_master = rb->sentinel_master;
    rb->cfg.sentinel_password = rb->sentinel_password;
    rb->cfg.sentinels = rb->sentinels;
    return 0;
}

/* Copies the user names of cfg into rb. */
static int usernames_copy(rb_t *rb, const rt_broker_redis_config_t *cfg)
{
    rb->username = cfg->username ? strdup(cfg->username) : NULL;
    rb->sentinel_username = cfg->sentinel_username ? strdup(cfg->sentinel_username) : NULL;
    rb->cfg.username = rb->username;
    rb->cfg.sentinel_username = rb->sentinel_username;
    return (cfg->username && !rb->username) || (cfg->sentinel_username && !rb->sentinel_username)
               ? -1
               : 0;
}

static char *join(const char *a, const char *b, const char *c)
{
    size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
    char *s = malloc(la + lb + lc + 1);
    if (s) {
        memcpy(s, a, la);
        memcpy(s + la, b, lb);
        memcpy(s + la + lb, c, lc + 1);
    }
    return s;
}

rt_broker_t *rt_broker_redis_new(const rt_broker_redis_config_t *cfg, const rt_broker_handlers_t *h,
                                 void *ud)
{
    rt_broker_redis_config_t def;
    rt_broker_redis_config_init(&def);
    if (!cfg)
        cfg = &def;
    eddy_server_t *log = cfg->log ? cfg->log : cfg->srv;
    if (!cfg->host || cfg->port <= 0 || cfg->port > 65535 || !cfg->prefix ||
        strchr(cfg->prefix, '}') || !cfg->queue_max || !cfg->queue_max_bytes || !cfg->history_max ||
        !cfg->history_age_ms || !cfg->heartbeat_ms || cfg->lease_ms <= cfg->heartbeat_ms ||
        !cfg->io_timeout_ms || !cfg->backoff_min_ms || cfg->backoff_max_ms < cfg->backoff_min_ms ||
        (cfg->node_id && (!*cfg->node_id || strlen(cfg->node_id) > RT_BROKER_NODE_ID_MAX ||
                          strchr(cfg->node_id, 0x1f))) ||
        !sentinels_ok(cfg) || !cluster_ok(cfg)) {
        eddy_log(log, EDDY_LOG_ERROR, "rt_broker: bad Redis broker configuration");
        return NULL;
    }
    rb_t *rb = calloc(1, sizeof(*rb));
    if (!rb)
        return NULL;
    rb->base.ops = &redis_ops;
    rb->cfg = *cfg;
    rb->cfg.log = log;
    if (h)
        rb->h = *h;
    rb->ud = ud;
    rb->wake_fd = -1;
    pthread_mutex_init(&rb->lock, NULL);
    if (getrandom(&rb->rng, sizeof(rb->rng), 0) != sizeof(rb->rng) || !rb->rng)
        rb->rng = (uint64_t)now_ms() | 1;
    rb->instance = rand64(&rb->rng);
    /* Request ids start at random (below 2^40: the sharded broker multiplies them by the
     * number of parts): in a cluster a namespace's answers reach whichever part it is on,
     * which after a reshard is not the one that asked; it must not take them for its own. */
    atomic_init(&rb->next_req, rand64(&rb->rng) >> 24);
    if (cfg->node_id) {
        snprintf(rb->node_id, sizeof(rb->node_id), "%s", cfg->node_id);
    } else {
        uint64_t v = rand64(&rb->rng);
        snprintf(rb->node_id, sizeof(rb->node_id), "%016llx", (unsigned long long)v);
    }
    if (cfg->session_tag)
        memcpy(rb->session_tag, cfg->session_tag, RT_BROKER_SESSION_TAG_LEN);
    else
        rt_random_chars(rb->session_tag, RT_BROKER_SESSION_TAG_LEN);
    rt_broker_socket_tag(rb->node_id, rb->socket_tag);
    rb->host = strdup(cfg->host);
    rb->password = cfg->password ? strdup(cfg->password) : NULL;
    rb->prefix = strdup(cfg->prefix);
    rb->prefix_len = strlen(cfg->prefix);
    if (cluster_init(rb, cfg) != 0)
        goto fail;
    rb->node_channel = join(rb->node_prefix, "node:", rb->node_id);
    rb->nodes_key = join(rb->node_prefix, "nodes", "");
    rb->all_channel = join(rb->node_prefix, "nodes:all", "");
    rb->emitter_pattern = cfg->emitter_prefix ? join(cfg->emitter_prefix, "#*", "") : NULL;
    rb->subs_cap = 64;
    rb->subs = calloc(rb->subs_cap, sizeof(*rb->subs));
    rb->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    rb->chan_sent = rt_chanseq_new();
    rb->chan_heard = rt_chanseq_new();
    if (!rb->host || (cfg->password && !rb->password) || !rb->prefix || !rb->node_channel ||
        !rb->nodes_key || !rb->all_channel || !rb->subs || rb->wake_fd < 0 || !rb->chan_sent ||
        !rb->chan_heard || (cfg->emitter_prefix && !rb->emitter_pattern) ||
        (cfg->sentinel_master && sentinels_copy(rb, cfg) != 0) || usernames_copy(rb, cfg) != 0 ||
        (cfg->tls && !(rb->tls = rt_redis_tls_new(cfg, log))))
        goto fail;
    rb->cfg.host = rb->host;
    rb->cfg.password = rb->password;
    rb->cfg.prefix = rb->prefix;
    rb->cfg.node_id = rb->node_id;
    rb->cfg.emitter_prefix = NULL; /* not kept: emitter_pattern is */
    /* Not kept either: rb->tls has what they said. */
    rb->cfg.tls_ca_file = rb->cfg.tls_cert_file = rb->cfg.tls_key_file = NULL;
    rb->cfg.tls_server_name = NULL;
    /* The thread takes no signals (a write to a closed Redis socket must not raise
     * SIGPIPE for the process; the application's handlers run on its own threads). */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&rb->thread, NULL, thread_main, rb);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        goto fail;
    return &rb->base;
fail:
    rb_destroy(rb);
    return NULL;
}

/* SPDX-License-Identifier: MIT */
/*
 * The broker seam of the real-time layer (issue 12): what a node needs from whatever
 * connects it to the other nodes of a cluster. One interface (a small vtable, struct
 * rt_broker_ops), several engines: Redis (rt_broker_redis_new(), below) and in-memory for
 * a single node (rt_broker_memory_new(), below); NATS can implement the same operations.
 *
 * What a broker does for the layer:
 * - publish: a broadcast {nsp, target rooms (none: the whole namespace), except-rooms,
 *   flags, payload} gets a position (epoch, seq) in its namespace, atomically with its
 *   append to the history of each target room and its live publication, so history order
 *   equals live order on every node;
 * - interest: the node receives the broadcasts of a (nsp, room) only while it holds a
 *   subscription (reference counted: one per local member, say); changes are applied in
 *   batches by the broker's own thread;
 * - delivery: broadcasts of every node (this one's included, flagged own) to rooms the
 *   node is subscribed to arrive through the deliver handler with their positions, per
 *   namespace in strictly increasing seq (each broadcast once, however many of its rooms
 *   the node holds; a Redis broker keeping no history assigns no positions: see
 *   no_history);
 * - history: the broadcasts of a set of rooms after a position, all or nothing (as
 *   rt_history_since answers), so a client can recover on any node;
 * - session records: opaque bytes under a pid, taken once, kept outside the node so a
 *   client recovers on another node even after a kill -9: a live socket's record lives as
 *   long as its node's lease (then a linger), a disconnected one's for a time to live;
 * - membership: each node renews a lease every heartbeat; a node is alive while its
 *   lease is fresh; presence entries belong to a node and vanish with its lease;
 * - state and counters: up / down / recovering, with the gap that an outage leaves in
 *   live delivery reported when it ends; and a self round trip for readiness.
 *
 * Threads: every function may be called from any thread. Results and deliveries run
 * either on an eddy loop (the configuration names a server: eddy_post() to the loop of a
 * given connection, else eddy_defer()) or, with no server configured, on the broker's own
 * thread (tests, programs without loops; the in-memory engine has none: on the calling
 * thread, see below); handlers must then be thread-safe and quick.
 *
 * Return codes are eddy's (eddy.h): 0, EDDY_EINVAL, EDDY_ENOMEM, EDDY_EDROPPED (the
 * bounded queue is full: counted as dropped), EDDY_ECLOSED (the broker is down and the
 * request cannot wait, or is being freed).
 */
#ifndef EDDY_RT_BROKER_H
#define EDDY_RT_BROKER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "eddy.h"
#include "rt_emitter.h"
#include "rt_history.h"

typedef struct rt_broker rt_broker_t;
struct rt_broker_request; /* see "Node requests" */

/* A broadcast. Strings are NUL-terminated; names must not contain '}' (Redis keys put the
 * namespace in a hash tag). Borrowed by the call that takes it (the broker copies). */
typedef struct rt_broker_msg {
    const char *nsp;          /* "/", "/chat" */
    const char *const *rooms; /* target rooms; nrooms 0: the whole namespace */
    size_t nrooms;
    const char *const *except; /* minus the members of these rooms */
    size_t nexcept;
    uint32_t flags;      /* the layer's (volatile, compress, ...): carried as is */
    const void *payload; /* the encoded packet, payload_len bytes */
    size_t payload_len;
} rt_broker_msg_t;

/* A broadcast received from the broker (live or from history). Everything it points to is
 * valid during the handler call only. */
typedef struct rt_broker_delivery {
    rt_position_t pos;  /* its position in its namespace; {0, 0} (none) for a broadcast
                         * published without history (Redis no_history: no position is
                         * assigned, see there; never recoverable, never in history) */
    const char *origin; /* the id of the node that published it */
    bool own;           /* published by this node */
    rt_broker_msg_t msg;
} rt_broker_delivery_t;

typedef enum rt_broker_state {
    RT_BROKER_DOWN = 0,       /* not connected: nothing arrives from other nodes; publishes
                               * wait in the bounded queue. Redis: also connected while
                               * Redis refuses the heartbeat (writes refused: OOM,
                               * MISCONF, ...; the publishes it refuses are dropped) */
    RT_BROKER_RECOVERING = 1, /* connected again, subscriptions being restored */
    RT_BROKER_UP = 2,         /* connected, every subscription active */
} rt_broker_state_t;

/* Most parts of a broker (see "Parts" below). */
#define RT_BROKER_PARTS_MAX 64

/* A state change of one part of the broker (see "Parts"; engines of one part: of the
 * whole). gap is true on the change to UP that ends the part's outage: broadcasts of its
 * namespaces published while it was down were not delivered live, so clients of those
 * namespaces that may have missed them must recover from history (from the last position
 * the layer delivered). The namespaces of other parts lost nothing. */
typedef struct rt_broker_state_event {
    rt_broker_state_t state; /* the part's */
    bool gap;
    uint64_t down_ms;      /* the outage from its detection to the reconnection (with gap) */
    size_t part;           /* which part: 0 to rt_broker_parts() - 1 (0 for an engine of one) */
    const char *part_name; /* for logs ("host:port/db"), valid during the call; NULL: the
                            * engine has one part (it names none) */
    /* Namespaces changed parts (a Redis Cluster slot moved to this part: see "Parts"): the
     * layer places the namespaces it knows again. With gap (the part is UP), the clients
     * of this part's namespaces recover from history: a moved namespace's broadcasts may
     * have reached this node on neither part meanwhile. */
    bool moved;
    /* DOWN while connected: Redis refuses this node's writes (its heartbeat). What Redis
     * still runs goes on (plain PUBLISH: broadcasts without history cross), the rest is
     * refused (history, presence, the lease). */
    bool refused;
} rt_broker_state_event_t;

/* Longest node id, and a buffer for one with its NUL. */
#define RT_BROKER_NODE_ID_MAX  64
#define RT_BROKER_NODE_ID_SIZE (RT_BROKER_NODE_ID_MAX + 1)

/* The handlers of a broker (each optional). ud is the handlers' user data. */
typedef struct rt_broker_handlers {
    void (*deliver)(rt_broker_t *b, const rt_broker_delivery_t *d, void *ud);
    void (*state)(rt_broker_t *b, const rt_broker_state_event_t *ev, void *ud);
    /* A broadcast another program published in Socket.IO's Redis emitter format (see
     * rt_emitter.h; engines that accept it: Redis with emitter_prefix set). It has no
     * position: the layer broadcasts it to its local members as if emitted locally
     * (every node receives it, each delivers to its own members). m is valid during the
     * call only. */
    void (*emitted)(rt_broker_t *b, const rt_emitter_msg_t *m, void *ud);
    /* A node request (see "Node requests" below) from any node, this one included. req is
     * valid during the call only; answer it (req->id not 0) with rt_broker_respond(). */
    void (*request)(rt_broker_t *b, const struct rt_broker_request *req, void *ud);
    /* Redis Cluster, a master's broker (rt_broker_cluster.c sets it; see "Redis Cluster"):
     * slot, which this broker's part used to serve, is served now by the master of part
     * part (the one serving cfg.cluster_parts[part]), or with part RT_BROKER_PARTS_MAX by
     * a master of no part (added after the start). The handler routes the slot to that
     * part (for RT_BROKER_PARTS_MAX, to a part it makes, whose first slot is slot) from
     * then on and has this broker hand it what it holds of the slot
     * (rt_broker_redis_hand_over()). Runs on this broker's thread, again each time
     * something of the slot still reaches this broker. Returns false if the slot is not
     * followed (no part could be made). */
    bool (*moved)(rt_broker_t *b, unsigned slot, size_t part, void *ud);
} rt_broker_handlers_t;

/* Result of a publish: err 0 and its position ({0, 0} without history: Redis no_history),
 * or EDDY_ECLOSED (the connection to the broker broke before the answer: the broadcast may
 * or may not have been published), EDDY_EPROTO (the broker refused it; logged). */
typedef void (*rt_broker_publish_cb)(rt_broker_t *b, int err, rt_position_t pos, void *arg);
/*
 * Result of a history read: err 0 (complete: entries[0..n) in seq order, each once,
 * except-rooms applied; top is the namespace's position when it was read: it covers every
 * broadcast up to top.seq, so live deliveries at or below top.seq are duplicates and those
 * above are new), RT_HISTORY_GAP (not recovered: another epoch, a position ahead, an entry
 * above it evicted, or more than max_entries to send), EDDY_ECLOSED (broker down),
 * EDDY_EPROTO (refused by the broker; logged), EDDY_ENOMEM. top is also set with
 * RT_HISTORY_GAP: a namespace gets its epoch at its first use, so a read from {0, 0}
 * without rooms tells a new session the position it starts at (its "seq at connect").
 */
typedef void (*rt_broker_history_cb)(rt_broker_t *b, int err, rt_position_t top,
                                     const rt_broker_delivery_t *entries, size_t n, void *arg);
/* Result of a session take: err 0 and the record's bytes (valid during the call),
 * EDDY_ENOTFOUND (none, or expired), EDDY_ECLOSED. */
typedef void (*rt_broker_session_cb)(rt_broker_t *b, int err, const void *data, size_t len,
                                     void *arg);
/* One presence entry: the node holding the member, the member id and its info bytes. */
typedef struct rt_broker_presence {
    const char *node;
    const char *member;
    const void *info;
    size_t info_len;
} rt_broker_presence_t;
/* Result of a presence read: err 0 and the entries of alive nodes only, or EDDY_ECLOSED. */
typedef void (*rt_broker_presence_cb)(rt_broker_t *b, int err, const rt_broker_presence_t *entries,
                                      size_t n, void *arg);

typedef struct rt_broker_stats {
    uint64_t published; /* broadcasts the broker confirmed */
    uint64_t delivered; /* broadcasts handed to the deliver handler (live) */
    uint64_t buffered;  /* requests waiting in the queue now */
    uint64_t buffered_bytes;
    uint64_t dropped;         /* requests refused by the queue bound or lost with a connection */
    uint64_t reconnects;      /* successful reconnections after an outage */
    uint64_t gaps;            /* outages reported with gap */
    uint64_t master_switches; /* Sentinel, Cluster: times the sentinels or the cluster
                               * named another master */
    uint64_t missed;          /* Redis, no history: broadcasts of other nodes that never came */
    uint64_t retried;         /* Sentinel, Cluster: requests a master refused because it no
                               * longer served their slot (MOVED, READONLY, ...), queued
                               * again to be sent after the reconnection, or because the
                               * slot was being migrated (ASK, TRYAGAIN), held and sent
                               * again (each time) */
    uint64_t slots_moved;     /* Cluster: slots found moved to another master while running
                               * (resharding: see "Redis Cluster") */
    uint64_t subscriptions;   /* (nsp, room) channels subscribed now */
} rt_broker_stats_t;

/* A pid from rt_broker_session_pid() starts with this many characters naming the node
 * process that issued it (the Redis engine keeps live records under that name). */
#define RT_BROKER_SESSION_TAG_LEN 8

/* ---------------------------------------------------------------------------------------
 * Node requests (across nodes)
 *
 * A request is opaque bytes sent to every alive node (this one included) or to one node.
 * Each node's request handler gets it and, when the requester waits for answers (req->id
 * not 0), answers once with rt_broker_respond(), from any thread, at any time. The
 * requester waits only for the nodes alive (by their leases) when the request leaves, stops
 * waiting for one whose lease lapses meanwhile, and for all at timeout_ms: its callback
 * gets the answers that came and names the nodes that did not answer (missing), so a dead
 * or frozen node never fails the others' answers (answers after that are dropped).
 *
 * Order: requests and publishes made from one thread leave in that order, and every node
 * receives one origin's requests and broadcasts in the order they left. A request with
 * RT_BROKER_BARRIER holds back what this node sends after it (publishes, requests) until
 * it is answered or timed out; a node answers only once the subscriptions asked for
 * before its answer are active, so a broadcast sent after a barrier request that made
 * nodes subscribe (a remote join) reaches them.
 * ------------------------------------------------------------------------------------- */

/* A node request as its handler receives it (valid during the handler call only). */
typedef struct rt_broker_request {
    const char *origin; /* the requesting node's id */
    bool own;           /* sent by this node */
    uint64_t id;        /* 0: no answer wanted; else pass it to rt_broker_respond() */
    const void *data;
    size_t len;
    const char *key; /* the key it was sent with (NULL: none): pass it to rt_broker_respond() */
} rt_broker_request_t;

/* One node's answer (valid during the result call only). */
typedef struct rt_broker_reply {
    const char *node;
    const void *data;
    size_t len;
} rt_broker_reply_t;

/* Result of a node request: err 0 with the answers (replies[0..n), in arrival order) and
 * the nodes waited for that did not answer (missing[0..nmissing)), or EDDY_ECLOSED (the
 * broker is down or being freed: nothing was sent), EDDY_ENOMEM. */
typedef void (*rt_broker_request_cb)(rt_broker_t *b, int err, const rt_broker_reply_t *replies,
                                     size_t n, const char *const *missing, size_t nmissing,
                                     void *arg);

/* rt_broker_request() flags. */
#define RT_BROKER_BARRIER 1u /* hold back what this node sends after it (see above) */

/*
 * The operations an engine implements. The arguments mean what the wrappers below say;
 * fd names the connection on whose loop a result runs (0: eddy_defer(), loop 0).
 */
typedef struct rt_broker_ops {
    int (*publish)(rt_broker_t *b, const rt_broker_msg_t *msg, eddy_fd_t fd,
                   rt_broker_publish_cb cb, void *arg);
    int (*subscribe)(rt_broker_t *b, const char *nsp, const char *room);
    int (*unsubscribe)(rt_broker_t *b, const char *nsp, const char *room);
    int (*history)(rt_broker_t *b, const char *nsp, rt_position_t after, const char *const *rooms,
                   size_t nrooms, eddy_fd_t fd, rt_broker_history_cb cb, void *arg);
    int (*session_put)(rt_broker_t *b, const char *pid, const void *data, size_t len,
                       uint64_t ttl_ms);
    int (*session_take)(rt_broker_t *b, const char *pid, eddy_fd_t fd, rt_broker_session_cb cb,
                        void *arg);
    void (*session_pid)(rt_broker_t *b, char pid[RT_HISTORY_PID_SIZE]);
    int (*presence_set)(rt_broker_t *b, const char *nsp, const char *room, const char *member,
                        const void *info, size_t len);
    int (*presence_del)(rt_broker_t *b, const char *nsp, const char *room, const char *member);
    int (*presence_get)(rt_broker_t *b, const char *nsp, const char *room, eddy_fd_t fd,
                        rt_broker_presence_cb cb, void *arg);
    size_t (*nodes)(rt_broker_t *b, char (*ids)[RT_BROKER_NODE_ID_SIZE], size_t max);
    bool (*ready)(rt_broker_t *b, uint64_t *age_ms);
    rt_broker_state_t (*state)(rt_broker_t *b);
    void (*stats)(rt_broker_t *b, rt_broker_stats_t *out);
    const char *(*node_id)(rt_broker_t *b);
    void (*free)(rt_broker_t *b);
    int (*request)(rt_broker_t *b, const char *node, const char *key, const void *data, size_t len,
                   uint32_t flags, uint32_t timeout_ms, eddy_fd_t fd, rt_broker_request_cb cb,
                   void *arg);
    int (*respond)(rt_broker_t *b, const char *node, const char *key, uint64_t id, const void *data,
                   size_t len);
    int (*recent)(rt_broker_t *b, const char *nsp, const char *room, size_t n, eddy_fd_t fd,
                  rt_broker_history_cb cb, void *arg);
    /* Optional (NULL: the engine is one part, see "Parts"). */
    size_t (*parts)(rt_broker_t *b);
    size_t (*part)(rt_broker_t *b, const char *nsp);
    const char *(*part_name)(rt_broker_t *b, size_t part);
} rt_broker_ops_t;

/* Every engine's broker starts with this. */
struct rt_broker {
    const rt_broker_ops_t *ops;
};

/*
 * Publishes msg (copied). Ordering: broadcasts published from one thread get increasing
 * seqs in that order. cb (NULL: no result wanted) runs once with the position or the
 * error (see rt_broker_publish_cb). Returns 0 (queued), EDDY_EINVAL, EDDY_ENOMEM,
 * EDDY_EDROPPED (queue full: counted and logged, cb not called).
 */
static inline int rt_broker_publish(rt_broker_t *b, const rt_broker_msg_t *msg, eddy_fd_t fd,
                                    rt_broker_publish_cb cb, void *arg)
{
    return b->ops->publish(b, msg, fd, cb, arg);
}

/* Takes one reference on the interest in (nsp, room) (room NULL: broadcasts to the whole
 * namespace); the first makes the node subscribe. Returns 0, EDDY_EINVAL, EDDY_ENOMEM. */
static inline int rt_broker_subscribe(rt_broker_t *b, const char *nsp, const char *room)
{
    return b->ops->subscribe(b, nsp, room);
}
/* Drops one reference; the last makes the node unsubscribe. Returns 0 or EDDY_ENOTFOUND
 * (no reference held). */
static inline int rt_broker_unsubscribe(rt_broker_t *b, const char *nsp, const char *room)
{
    return b->ops->unsubscribe(b, nsp, room);
}

/*
 * Reads the broadcasts of nsp after position after that target one of rooms[0..nrooms)
 * or the whole namespace, minus those excepting one of rooms (see rt_broker_history_cb).
 * A read requested after rt_broker_subscribe() of those rooms runs once the subscription
 * is active, so history and live delivery overlap and never leave a hole between them:
 * the layer holds live deliveries during the read and merges by seq. Returns 0, EDDY_EINVAL,
 * EDDY_ENOMEM, EDDY_EDROPPED.
 */
static inline int rt_broker_history(rt_broker_t *b, const char *nsp, rt_position_t after,
                                    const char *const *rooms, size_t nrooms, eddy_fd_t fd,
                                    rt_broker_history_cb cb, void *arg)
{
    return b->ops->history(b, nsp, after, rooms, nrooms, fd, cb, arg);
}

/* Stores a session record (data copied) under pid for ttl_ms, replacing any. ttl_ms 0: the
 * record of a socket live on this node, kept as long as this node lives and then for the
 * engine's linger (Redis: session_linger_ms after its last heartbeat's lease), at no cost
 * per record while it lives; pid must then come from rt_broker_session_pid() (on any node).
 * A later put with ttl_ms replaces it (the socket disconnected). Returns 0, EDDY_EINVAL
 * (ttl_ms 0 with another pid), EDDY_ENOMEM, EDDY_EDROPPED. */
static inline int rt_broker_session_put(rt_broker_t *b, const char *pid, const void *data,
                                        size_t len, uint64_t ttl_ms)
{
    return b->ops->session_put(b, pid, data, len, ttl_ms);
}
/* Takes the record of pid (single use: removed by the read), live or not. */
static inline int rt_broker_session_take(rt_broker_t *b, const char *pid, eddy_fd_t fd,
                                         rt_broker_session_cb cb, void *arg)
{
    return b->ops->session_take(b, pid, fd, cb, arg);
}
/* Writes a new random pid (RT_HISTORY_PID_LEN characters of [A-Za-z0-9_-] and a NUL): its
 * first RT_BROKER_SESSION_TAG_LEN characters are this broker's own, so any node finds the
 * live record stored under it. Thread-safe. */
static inline void rt_broker_session_pid(rt_broker_t *b, char pid[RT_HISTORY_PID_SIZE])
{
    b->ops->session_pid(b, pid);
}

/* Presence of member in (nsp, room), owned by this node (it disappears with the node's
 * lease). info is copied. */
static inline int rt_broker_presence_set(rt_broker_t *b, const char *nsp, const char *room,
                                         const char *member, const void *info, size_t len)
{
    return b->ops->presence_set(b, nsp, room, member, info, len);
}
static inline int rt_broker_presence_del(rt_broker_t *b, const char *nsp, const char *room,
                                         const char *member)
{
    return b->ops->presence_del(b, nsp, room, member);
}
static inline int rt_broker_presence_get(rt_broker_t *b, const char *nsp, const char *room,
                                         eddy_fd_t fd, rt_broker_presence_cb cb, void *arg)
{
    return b->ops->presence_get(b, nsp, room, fd, cb, arg);
}

/* The alive nodes as of the last heartbeat (this one included): copies up to max ids and
 * returns how many there are. */
static inline size_t rt_broker_nodes(rt_broker_t *b, char (*ids)[RT_BROKER_NODE_ID_SIZE],
                                     size_t max)
{
    return b->ops->nodes(b, ids, max);
}

/* Readiness (for /readyz): true while the broker is up (Redis: connected and its
 * heartbeat, the node's lease, accepted) and its last self round trip (a publish to its
 * own node channel, received back) is recent. *age_ms (if not NULL)
 * gets the age of that round trip (UINT64_MAX: none yet). */
static inline bool rt_broker_ready(rt_broker_t *b, uint64_t *age_ms)
{
    return b->ops->ready(b, age_ms);
}
/* The whole broker's state: its worst part's. */
static inline rt_broker_state_t rt_broker_state(rt_broker_t *b)
{
    return b->ops->state(b);
}

/*
 * Parts: the pieces of a broker that go down and come back on their own, each with the
 * namespaces it owns (a sharded broker's shards; every other engine is one part, owning
 * every namespace). Each part reports its own state changes (rt_broker_state_event_t.part),
 * so that an outage stops cross-node delivery, and its gap makes clients recover, only in
 * the namespaces of that part. These calls are pure lookups (no lock, no allocation, no
 * I/O), any thread, while the broker lives. The parts change only in a Redis Cluster: a
 * broker started before its seeds answered is one part until the topology is known, then
 * one per master, before any of their state events (the state handler sees the new parts
 * from its next event on); while nodes run, a slot moved to another master moves its
 * namespaces to that master's part, made then (one more part, at the end) if the master
 * had none: rt_broker_part() answers the new part at once, and the part's next state
 * event says so (moved). Parts are only added: an index, once given, stays its part's.
 */

/* The number of parts, 1 to RT_BROKER_PARTS_MAX. */
static inline size_t rt_broker_parts(rt_broker_t *b)
{
    return b->ops->parts != NULL ? b->ops->parts(b) : 1;
}
/* The part that owns namespace nsp (NUL-terminated): 0 to rt_broker_parts() - 1. Also the
 * part of a session record when given its pid (records are placed by their pid). */
static inline size_t rt_broker_part(rt_broker_t *b, const char *nsp)
{
    return b->ops->part != NULL ? b->ops->part(b, nsp) : 0;
}
/* Part part's name, as its state events carry it (valid while the broker lives), or NULL:
 * the engine has one part (it names none). */
static inline const char *rt_broker_part_name(rt_broker_t *b, size_t part)
{
    return b->ops->part_name != NULL ? b->ops->part_name(b, part) : NULL;
}
static inline void rt_broker_stats(rt_broker_t *b, rt_broker_stats_t *out)
{
    b->ops->stats(b, out);
}
/* This node's id (NUL-terminated, valid until the broker is freed). */
static inline const char *rt_broker_node_id(rt_broker_t *b)
{
    return b->ops->node_id(b);
}
/* Stops the broker and frees it: requests still queued are sent first while the broker is
 * connected (else answered EDDY_ECLOSED), then the node leaves the cluster (its lease is
 * removed, so its presence entries vanish at once). Results and deliveries already handed to
 * loops may still run after it returns: their b is then dangling (compare it, never call
 * it), and the handlers' user data must outlive them. Call it from a thread that is not the
 * broker's own (not from a handler running there). */
static inline void rt_broker_free(rt_broker_t *b)
{
    b->ops->free(b);
}

/*
 * Sends a node request (data copied) to node (NULL: every alive node, this one included).
 * key names the namespace it concerns (NULL: none): a sharded broker sends it through that
 * namespace's shard, so it keeps its order with the namespace's broadcasts (a barrier holds
 * them); in a Redis Cluster it is required, and the request reaches (and waits for) the
 * nodes serving that namespace; other engines ignore it.
 * cb (NULL: no answer wanted, nothing waited for) runs once with the answers (see
 * rt_broker_request_cb); a node that is not alive is answered missing at once. flags:
 * RT_BROKER_BARRIER. timeout_ms > 0 bounds the wait (and a barrier's hold). Returns 0,
 * EDDY_EINVAL, EDDY_ENOMEM, EDDY_EDROPPED (queue full; cb not called).
 */
static inline int rt_broker_request(rt_broker_t *b, const char *node, const char *key,
                                    const void *data, size_t len, uint32_t flags,
                                    uint32_t timeout_ms, eddy_fd_t fd, rt_broker_request_cb cb,
                                    void *arg)
{
    return b->ops->request(b, node, key, data, len, flags, timeout_ms, fd, cb, arg);
}
/* Answers request id of node (req->origin, req->key, req->id of the handler's request;
 * data copied). Once per request; a late answer is dropped by the requester. Returns 0,
 * EDDY_EINVAL (id 0; in a Redis Cluster, no key), EDDY_ENOMEM, EDDY_EDROPPED. */
static inline int rt_broker_respond(rt_broker_t *b, const char *node, const char *key, uint64_t id,
                                    const void *data, size_t len)
{
    return b->ops->respond(b, node, key, id, data, len);
}

/*
 * History on join, across nodes: reads the newest n (> 0) broadcasts kept for room of nsp
 * (room NULL: those to the whole namespace), whichever node published them. cb runs once
 * (see rt_broker_history_cb): err 0 with entries[0..n) oldest first (at most n; fewer when
 * fewer are kept) and top the namespace's position when it was read, or EDDY_ECLOSED (broker down
 * or being freed), EDDY_EPROTO (refused; logged), EDDY_ENOMEM. Entries are as stored: their
 * except-rooms are not applied (the caller decides). Unlike rt_broker_history() it does not wait
 * for subscriptions. Returns 0, EDDY_EINVAL (nsp or cb NULL, n 0, a name with '}'), EDDY_ENOMEM,
 * EDDY_EDROPPED.
 */
static inline int rt_broker_recent(rt_broker_t *b, const char *nsp, const char *room, size_t n,
                                   eddy_fd_t fd, rt_broker_history_cb cb, void *arg)
{
    return b->ops->recent(b, nsp, room, n, fd, cb, arg);
}

/* The node message format (Redis engine; parsed here for the fuzz harness): byte 2
 * (version), a kind byte ('Q' request, 'R' answer), the request id (8 bytes, little
 * endian), the sending node's id NUL-terminated, then the data. Returns 0 with the fields
 * pointing into buf, or EDDY_EPROTO. */
int rt_broker_node_msg_decode(const void *buf, size_t len, char *kind, uint64_t *id,
                              const char **node, const void **data, size_t *data_len);

/* Socket ids of a node start with its socket tag, so that one subscription per namespace
 * receives the broadcasts to all of them (Redis: a PSUBSCRIBE per namespace, not a
 * SUBSCRIBE per socket). A broker subscribing a room that starts with its own tag may
 * receive every room of the namespace starting with it (see the Redis engine). */
#define RT_BROKER_SOCKET_TAG_LEN 6

/* Writes the socket tag of node node_id: RT_BROKER_SOCKET_TAG_LEN characters of
 * [A-Za-z0-9_-] (a hash of the id, so every shard of a node has the same) and a NUL. */
void rt_broker_socket_tag(const char *node_id, char tag[RT_BROKER_SOCKET_TAG_LEN + 1]);

/* ---------------------------------------------------------------------------------------
 * Redis (rt_broker_redis.c, Debian's hiredis)
 *
 * A thread of its own drives two blocking hiredis connections: one for commands
 * (pipelined: the queue is sent in batches), one for SUBSCRIBE. Nothing blocks a loop:
 * calls only queue work (bounded by queue_max / queue_max_bytes). Keys and channels, with
 * P the prefix and {nsp} a Cluster hash tag (a namespace's keys live in one slot):
 *   P{nsp}:pos          hash: e = the namespace's epoch (created once, HSETNX: every node
 *                       shares it; a flushed Redis gets a new one, so old positions answer
 *                       "not recovered"), s = its last seq (HINCRBY)
 *   P{nsp}:x:<room>     stream of a room's broadcasts (P{nsp}:x for the whole namespace),
 *                       entries {s seq, p previous seq in this stream, m message}, bounded
 *                       by MAXLEN ~ history_max and MINID ~ (now - history_age_ms)
 *   P{nsp}:t:<room>     the last seq appended to that stream (P{nsp}:t), living
 *                       history_meta_ttl_ms: with p it tells a trimmed stream from a quiet one
 *   P{nsp}:c:<room>     PUB/SUB channel of a room (P{nsp}:c: the whole namespace); the
 *                       rooms starting with the node's socket tag (its sockets' ids) are
 *                       received through one pattern, P{nsp}:c:<tag>*, while the node
 *                       subscribes any of them (so a room this node has no member of may
 *                       arrive too: the layer delivers to local members only)
 *   P{nsp}:p:<room>     presence hash: field <node id>\x1f<member> = info
 *   Pnode:<id>          the node's own channel (self round trip, node requests to it
 *                       and the answers to its requests)
 *   Pnodes:all          node requests to every node
 *   Pnodes              sorted set: node id -> lease expiry (Redis TIME, ms)
 *   In a Redis Cluster, where a node's parts may be named differently from another's (see
 *   "Redis Cluster"), everything nodes exchange lives in the namespace's slot instead:
 *   P{nsp}:l            sorted set: the lease of each node serving the namespace (it
 *                       subscribed it whole), renewed by the heartbeat of the part the
 *                       namespace is on
 *   P{nsp}:q            node requests through the namespace to every node serving it
 *   P{nsp}:n:<id>       node requests through it to one node, and the answers to the
 *                       node's requests through it
 *   and the part's own channel P{tag}:node:<id> (tag in the part's first slot; see
 *   cluster_tag) carries its self round trip only.
 *   Psession:{T}<rest>  a disconnected socket's record (SET PX, taken by GETDEL), T the
 *                       pid's tag (below; so one script touches it and T's hashes in one
 *                       slot), <rest> the rest of the pid (a pid without a tag's shape:
 *                       Psession:<pid>)
 *   Psessions:{T}:<N>   hash: the live records (field pid) node process N holds for pids
 *                       of tag T (their first RT_BROKER_SESSION_TAG_LEN characters; N is
 *                       the holder's own tag): written on connect and room changes, its
 *                       PEXPIRE (lease_ms + session_linger_ms) renewed by N's heartbeat
 *                       (two commands per tag held, not per record); a disconnect moves the
 *                       record to Psession:{T}<rest>; a kill -9 leaves it for the linger
 *   Psessions:{T}       set: the holders of tag T's live records (a socket recovered on
 *                       another node keeps its pid, so its record moves to that node's hash)
 * One Lua script publishes: HINCRBY the seq, XADD to each target room's stream and trim
 * it, PUBLISH "<seq>:<epoch>:<message>" to each target room's channel (in a Redis
 * Cluster SPUBLISH, and every channel is SSUBSCRIBEd: see cluster_nodes); EVALSHA, EVAL
 * on NOSCRIPT. Every script touches only the keys it declares in KEYS, of one slot in a
 * Redis Cluster: a session take that finds no disconnected record gets the holders of
 * its tag and reads their hashes Psessions:{T}:<N> in a second script (the record's key
 * again first: a disconnect may have written it meanwhile); the presence read, which needs
 * Pnodes (another slot) too, has a cluster variant (see cluster_nodes). With no_history a publish
 * is one plain PUBLISH per target room's channel of "n<num>:<instance>:<cnum>:<message>" (no
 * script, no key: what Socket.IO's Redis adapter costs Redis): num numbers the broker's plain
 * publishes in the order it sends them, instance is the broker's random id, cnum numbers its
 * publishes on that channel (16 hex digits each; a jump in cnum on a channel held all along is
 * counted as missed, see rt_chanseq.h and rt_broker_stats_t.missed). Such a broadcast has no
 * position (delivered with pos {0, 0}); a node that holds several of its channels delivers it once
 * (the first copy: num above the last delivered of that origin's instance), and every
 * node gets each channel's broadcasts in Redis' order. Nodes of one cluster must agree on
 * no_history (recovery across nodes needs every broadcast positioned). A message is: byte
 * 1 (version), flags (4 bytes, little endian), the number of rooms and of except-rooms (2
 * bytes each), then NUL-terminated: origin node id, nsp, rooms, except-rooms; the payload
 * is the rest.
 * ------------------------------------------------------------------------------------- */

/* A host and port (Redis Sentinel's sentinels). */
typedef struct rt_broker_addr {
    const char *host;
    int port;
} rt_broker_addr_t;

/* Most sentinels one configuration names. */
#define RT_BROKER_SENTINELS_MAX 16

/* Most nodes of a Redis Cluster a configuration names (seeds in a URL; masters and
 * replicas for a master's broker). */
#define RT_BROKER_CLUSTER_NODES_MAX 64

typedef struct rt_broker_redis_config {
    const char *host;             /* "127.0.0.1" (copied) */
    int port;                     /* 6379 */
    const char *password;         /* NULL: no AUTH (copied) */
    const char *username;         /* with password: AUTH username password (a Redis 6 ACL
                                   * user); NULL: AUTH password (copied) */
    int db;                       /* 0: SELECT db when not 0 */
    const char *prefix;           /* "eddy:" (copied) */
    const char *node_id;          /* NULL: 16 random hex characters (copied) */
    eddy_server_t *srv;           /* where results and deliveries run (see Threads); NULL:
                                   * on the broker's thread */
    eddy_server_t *log;           /* whose log the broker's lines go to (its log_level,
                                   * log_file, eddy_on_log()), from any thread; NULL: srv's
                                   * (without srv: stderr, every level) */
    size_t queue_max;             /* requests waiting: 65536 */
    size_t queue_max_bytes;       /* their bytes: 64 MiB */
    size_t history_max;           /* entries per room stream (MAXLEN ~): 1000 */
    uint64_t history_age_ms;      /* entry age (MINID ~, stream PEXPIRE): 120000 */
    uint64_t history_meta_ttl_ms; /* life of P{nsp}:t:<room>: 3600000 */
    size_t history_max_entries;   /* most entries one history read returns: 10000 */
    uint32_t heartbeat_ms;        /* lease renewal and self round trip: 1000 */
    uint32_t lease_ms;            /* a node's lease: 3000 */
    uint32_t io_timeout_ms;       /* connect and command timeout: 2000 */
    uint32_t backoff_min_ms;      /* first reconnect delay (then doubling, with jitter): 100 */
    uint32_t backoff_max_ms;      /* 5000 */
    uint64_t session_linger_ms;   /* how long live records outlive a node (kill -9) past its
                                   * lease: 10000 */
    /* Socket.IO emitter interop: with a prefix ("socket.io", the emitter's default key)
     * the broker PSUBSCRIBEs <prefix>#* and hands each valid message to the emitted
     * handler (malformed ones are logged and dropped). NULL: off (the default). */
    const char *emitter_prefix;
    /* true: keep no history (the layer keeps none: recovery off, history 0). A publish
     * is then one plain PUBLISH per target room (above: no position, no key, no script),
     * and a history read answers RT_HISTORY_GAP with top {0, 0} without asking Redis
     * (nothing can be recovered). false (the default): as above. */
    bool no_history;
    /* Redis Sentinel: with sentinel_master set (the name the sentinels monitor the master
     * under), host and port are not used. Before every connection (the first and each
     * reconnection) the broker's thread asks sentinels[0..nsentinels) (1 to
     * RT_BROKER_SENTINELS_MAX) in turn, io_timeout_ms each, for the master's address
     * (SENTINEL get-master-addr-by-name; the one that answers is asked first next time),
     * connects there and checks with ROLE that it is a master (else it asks again after
     * the backoff). A lost connection, or a READONLY or MASTERDOWN answer (a demoted
     * master), makes it ask again (the requests so refused are sent again, as in a
     * cluster: see cluster_nodes below); between attempts it listens to +switch-master on the
     * sentinel that answered last, which ends the backoff's wait. password and db are the
     * master's; sentinel_password (NULL: no AUTH) and sentinel_username (NULL: AUTH with
     * the password alone) the sentinels'. All copied. NULL (the default): no Sentinel. */
    const char *sentinel_master;
    const rt_broker_addr_t *sentinels;
    size_t nsentinels;
    const char *sentinel_password;
    const char *sentinel_username;
    /* TLS (rediss://, rediss+sentinel://): true makes every connection of the broker, the
     * master's and the sentinels', TLS (OpenSSL, TLS 1.2 or later) from the handshake on;
     * the handshake is bounded by io_timeout_ms and a failed one (an unknown certificate, a
     * name mismatch, a port without TLS) is a connection failure like the others: logged
     * with OpenSSL's reason, retried with the backoff. The certificate is verified against
     * tls_ca_file (PEM; NULL: the system's store) and the name the broker connected to
     * (tls_server_name when set, else each host as given or as the sentinels or the
     * cluster named it: a
     * DNS name against the certificate's names, an IP address against its IP addresses),
     * sent as SNI unless it is an IP address. tls_cert_file and tls_key_file (PEM; the key
     * NULL: in tls_cert_file) are a client certificate for Redis' tls-auth-clients.
     * tls_insecure skips the verification (logged as a warning when the broker is made).
     * The files are read by rt_broker_redis_new(): an unreadable one, or a key that does
     * not match the certificate, fails it (logged). All copied. false (the default): plain
     * TCP, and the tls_ fields are not used. */
    bool tls;
    const char *tls_ca_file;
    const char *tls_cert_file;
    const char *tls_key_file;
    const char *tls_server_name;
    bool tls_insecure;
    /* Redis Cluster: one master's broker of rt_broker_cluster_new() (see "Redis Cluster"
     * below), which fills these. With ncluster_nodes > 0 (1 to RT_BROKER_CLUSTER_NODES_MAX)
     * host and port are not used: before every connection the broker's thread asks
     * cluster_nodes[0..n) in turn (io_timeout_ms each; the one that answers is asked first
     * next time) which master serves slot cluster_slot (CLUSTER SLOTS), connects there and
     * checks with ROLE that it is a master; a new address counts as a master switch. The
     * broker's own channel (Pnode:<id>, its self round trip) carries the hash tag
     * {cluster_tag} (in cluster_slot, the slot the broker follows, as session_tag must be:
     * refused otherwise); the leases and node requests are the namespaces' (P{nsp}:l,
     * P{nsp}:q, P{nsp}:n:<id>: each namespace the layer subscribes whole is leased and
     * listened to by the broker it is routed to, its lease written before anything else is
     * sent through it), so a node request needs a key (EDDY_EINVAL without) and waits for
     * the nodes alive in that namespace's lease, and a presence read checks the leases in
     * its script as with one Redis; pub/sub is sharded (SPUBLISH, SSUBSCRIBE,
     * SUNSUBSCRIBE, one channel per command; no pattern, so each socket's room is one
     * SSUBSCRIBE). A
     * MOVED, CLUSTERDOWN or READONLY answer, or a channel the master drops (a
     * sunsubscribe not asked for), makes the thread reconnect and ask again; the requests
     * so refused (Redis refuses them before running them) are queued again, first and in
     * order, and sent after the reconnection, for up to 10 s from the first refusal (then
     * answered with it); after CLUSTERDOWN the thread waits backoff_min_ms before
     * reconnecting; a MOVED answer (SSUBSCRIBE's included) or a dropped channel of a slot
     * that alone moved (resharding: see "Redis Cluster" below) keeps the connections, and
     * so does an ASK or TRYAGAIN answer (a slot being migrated: its requests are held and
     * sent again, see there).
     * session_tag
     * (NULL: random, outside a cluster only; else RT_BROKER_SESSION_TAG_LEN of
     * [A-Za-z0-9_-], in a cluster in cluster_slot) starts this broker's pids. password and username
     * are every node's. All copied, but cluster_parts. cluster_parts[0..*ncluster_parts) (borrowed
     * while the broker lives: parts may be added; NULL: none) are the cluster_slot of each master's
     * broker of the node, in part order: a slot found moved to the master serving one of them is
     * handed to that part, else to a part made for it (handler moved; see "Redis Cluster").
     * cluster_joined: the broker was made while the node runs (its part's namespaces were another
     * part's), so its first connection ends a gap. */
    const rt_broker_addr_t *cluster_nodes;
    size_t ncluster_nodes;
    int cluster_slot;
    const char *cluster_tag;
    const char *session_tag;
    const _Atomic int *cluster_parts;
    const atomic_size_t *ncluster_parts;
    bool cluster_joined;
} rt_broker_redis_config_t;

/* Fills *cfg with the defaults above. */
void rt_broker_redis_config_init(rt_broker_redis_config_t *cfg);

/*
 * Redis URLs (rt_broker_url.c; eddy_rt_options_t.redis_url):
 *   redis://[[user]:password@]host[:port][/db]                       one Redis (port 6379)
 *   redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/master[/db]
 *     [?sentinel_password=secret[&sentinel_username=name]]           Sentinel (port 26379)
 *   rediss://[[user]:password@]host[:port][/db][?TLS]                one Redis over TLS
 *   rediss+sentinel://...as redis+sentinel...[?sentinel_...&TLS]     sentinels and master
 *                                                                    over TLS
 *   redis+cluster://[[user]:password@]host[:port][,host[:port]...]   Redis Cluster seeds
 *                                                                    (port 6379, db 0)
 *   rediss+cluster://...as redis+cluster...[?TLS]                    every cluster node
 *                                                                    over TLS
 * where TLS is "name=value" parameters joined by "&" (redis-py's names, as its from_url()
 * passes them on; ssl_servername after node-redis' servername), each at most once:
 *   ssl_ca_certs=PATH      CA certificates (PEM) to verify with (tls_ca_file; default: the
 *                          system's store)
 *   ssl_certfile=PATH      client certificate (PEM) for mutual TLS (tls_cert_file)
 *   ssl_keyfile=PATH       its key (tls_key_file; default: in ssl_certfile; needs it)
 *   ssl_servername=NAME    the name sent as SNI and verified (tls_server_name; default: the
 *                          host connected to: as written, or as the sentinels or the
 *                          cluster named it)
 *   ssl_cert_reqs=required the default: the certificate and its name are verified;
 *   ssl_cert_reqs=none     no verification (tls_insecure; logged as a warning)
 * A rediss URL sets tls and its parameters, a redis URL clears them. In a rediss:// URL the
 * query starts at the first "?" (a "?" in a password is then written %3F).
 * A list separated by commas names several shards: a comma followed by one of the six
 * schemes starts the next URL; any other comma separates the sentinels of a
 * redis+sentinel URL or the seeds of a redis+cluster URL (a redis:// URL has none). A
 * redis[s]+cluster URL stands alone (a cluster shards itself: see "Redis Cluster"); its seeds
 * fill cluster_nodes (up to RT_BROKER_CLUSTER_SEEDS_MAX). A master name is 1 to 64 of A-Z
 * a-z 0-9 _ - . :. With a user, AUTH sends user and password (Redis 6 ACL), else the
 * password alone ("password@" without a colon is a password too). User names, passwords and
 * parameter values are percent-decoded (%40 "@", %3F "?", %2F "/", %26 "&", %25 "%"; a
 * "%" not followed by two hex digits, or %00, is refused).
 */

/* Most seed nodes of a redis+cluster:// URL. */
#define RT_BROKER_CLUSTER_SEEDS_MAX 16

/* Where rt_broker_url_parse() puts the strings, sentinels and cluster seeds a configuration
 * points to. */
typedef struct rt_broker_url {
    char buf[1024];
    rt_broker_addr_t sentinels[RT_BROKER_SENTINELS_MAX];
    rt_broker_addr_t cluster_seeds[RT_BROKER_CLUSTER_SEEDS_MAX];
} rt_broker_url_t;

/* The length of the first URL of the list urls (all of it when it names one). */
size_t rt_broker_url_len(const char *urls);

/*
 * Parses the URL text[0..len) into cfg: host, port, password and db, or with
 * redis+sentinel the Sentinel fields, rediss the TLS fields (rediss+cluster too), and
 * redis[s]+cluster password, username, db 0 and the seeds as cluster_nodes (the other
 * fields are left as they are).
 * cfg's strings then point into *url, which must outlive their use. Returns 0, or EDDY_EINVAL with
 * a line logged on srv (NULL: stderr) saying what is wrong (never the password).
 */
int rt_broker_url_parse(eddy_server_t *srv, const char *text, size_t len, rt_broker_url_t *url,
                        rt_broker_redis_config_t *cfg);

/*
 * Creates a Redis broker and starts its thread, which connects (and reconnects) on its
 * own: the broker starts DOWN and the state handler reports UP. cfg and h are copied.
 * Returns NULL on a bad configuration (logged) or out of memory.
 */
rt_broker_t *rt_broker_redis_new(const rt_broker_redis_config_t *cfg, const rt_broker_handlers_t *h,
                                 void *ud);

/* ---------------------------------------------------------------------------------------
 * In memory (rt_broker_memory.c): one node, nothing to install
 *
 * The broker of a node that is alone: the same operations and answers as Redis's, kept in
 * this process. Each namespace has an rt_history store (created at its first use, with a
 * random epoch), so positions, history reads and their RT_HISTORY_GAP answers are the
 * Redis engine's, with one difference: the history dies with the process (a restarted
 * node has new epochs, so old positions answer "not recovered"). A publish assigns the
 * position, appends to the ring of each target room (bounded by history_max entries,
 * history_max_bytes and history_age_ms) and queues the live delivery under one lock, so
 * history order equals delivery order. A broadcast that cannot be stored (a store limit,
 * out of memory) is still delivered live and marks its seq lost: reads from below it
 * answer RT_HISTORY_GAP. The node is its only node, always UP and ready (the state handler
 * is never called; stats count no reconnections or gaps); every delivery and history entry
 * is own. The emitted handler is never called.
 *
 * Threads: every function may be called from any thread (one mutex guards the broker;
 * handlers never run with it held, so they may call the broker back). With srv set,
 * deliveries run on loop 0, in batches (one eddy_defer() per batch, not per broadcast),
 * and results on fd's loop (eddy_post(), else eddy_defer()), as the Redis engine's. With
 * srv NULL, everything runs on the calling thread before the call returns: a result in the
 * call that asked for it, deliveries in the publish that queued them or, while another
 * thread is delivering, in that thread (which delivers until the queue is empty), so each
 * namespace's deliveries still arrive in seq order, one handler call at a time.
 *
 * Memory: a publish allocates only what the history keeps (one entry) and, with a result
 * callback and srv set, that result; deliveries wait in two reused buffers. A history read
 * copies its entries once. Session records are kept until taken (live ones, put with ttl_ms
 * 0, until replaced or taken), expired (reclaimed in
 * the order they were written, at each put and take) or the broker is freed.
 * ------------------------------------------------------------------------------------- */

typedef struct rt_broker_memory_config {
    const char *node_id;        /* NULL: 16 random hex characters (copied) */
    eddy_server_t *srv;         /* where results and deliveries run (see Threads); NULL: on
                                 * the calling thread */
    size_t history_max;         /* entries per room ring: 1000 */
    size_t history_max_bytes;   /* bytes per room ring (a broadcast's payload and names): 1 MiB;
                                 * a larger broadcast is delivered, not kept */
    uint64_t history_age_ms;    /* entry age: 120000 */
    size_t history_max_entries; /* most entries one history read returns: 10000 */
    size_t max_sessions;        /* session records kept at once (a put beyond: EDDY_EDROPPED):
                                 * 100000 */
    /* Milliseconds of a monotonic clock, for history ages and session TTLs. NULL:
     * CLOCK_MONOTONIC_COARSE. Tests pass a fake one. */
    uint64_t (*clock)(void *clock_ud);
    void *clock_ud;
} rt_broker_memory_config_t;

/* Fills *cfg with the defaults above. */
void rt_broker_memory_config_init(rt_broker_memory_config_t *cfg);

/*
 * Creates an in-memory broker (cfg NULL: the defaults). cfg and h are copied. Returns NULL
 * on a bad configuration (logged), out of memory, or when the kernel gives no randomness.
 */
rt_broker_t *rt_broker_memory_new(const rt_broker_memory_config_t *cfg,
                                  const rt_broker_handlers_t *h, void *ud);

/* ---------------------------------------------------------------------------------------
 * Sharded (rt_broker_shard.c): several Redis, so that one is not the ceiling
 *
 * N brokers (shards), one per Redis, behind the same operations. A consistent-hash ring
 * (rt_ring.h: RT_RING_VNODES points per shard, a seedless hash) names the shard of each
 * key, so every node given the same shards (in any order) agrees on where a key lives:
 * - a namespace (its name hashed) owns its broadcasts, positions, streams, channels,
 *   interest, history reads and presence: the layer's guarantees (one (epoch, seq) per
 *   namespace, history order = live order, history and live overlapping) hold because
 *   everything of a namespace is on one Redis. A split by room would need one seq per
 *   room: a namespace is the unit, and one namespace's traffic is still one Redis's;
 * - a session record, its pid (rt_broker_part() of a pid names its shard: the layer draws
 *   pids that land on their namespace's shard);
 * - the node as a whole (its lease and heartbeat, its self round trip) is every shard's:
 *   nodes() answers the union of the alive nodes of the shards that are up; ready() is true
 *   while every shard's round trip is recent (the age is the oldest); state() is the worst
 *   shard's; stats are summed.
 * Each shard is a part (see "Parts": part i is shard i, named "host:port/db" for Redis):
 * the state handler gets every shard's own events, as its engine reports them (its gap
 * included), with its part and name, one event at a time (several shards' threads never
 * run it at once); so an outage concerns the namespaces of that shard only. Deliveries and results
 * run on the shards' threads (several at once, each namespace's on one) and get the sharded
 * broker as b. With a Socket.IO emitter prefix, every shard listens to it (a backend's
 * emitter may publish to any of the Redis; each message comes through that one only, so
 * once). rt_broker_free() frees the shards
 * one after the other: from its start, operations answer EDDY_ECLOSED and state changes and
 * deliveries are no longer handed on (results still are), so a handler running on one
 * shard's thread never reaches a shard already freed.
 * ------------------------------------------------------------------------------------- */

/* Most shards, and the size of a shard's ring name ("host:port/db", with NUL). */
#define RT_BROKER_SHARDS_MAX      RT_BROKER_PARTS_MAX
#define RT_BROKER_SHARD_NAME_SIZE 300

/* Makes shard i for rt_broker_shard_new(): a broker with handlers h and their user data hud
 * (both to be passed as given), with node id node_id (NULL for shard 0: its own; then
 * shard 0's, so that the node has one id on every shard). NULL: failed. */
typedef rt_broker_t *(*rt_broker_shard_make_cb)(size_t i, const char *node_id,
                                                const rt_broker_handlers_t *h, void *hud,
                                                void *arg);

/*
 * Creates a sharded broker over n shards (1 to RT_BROKER_SHARDS_MAX) named names[0..n)
 * (their places on the ring: distinct; borrowed during the call), each made by make(i, ...,
 * arg) in order. h is copied; its handlers must be thread-safe (see above). Returns NULL if
 * a name repeats, a shard cannot be made (those made are freed) or out of memory.
 */
rt_broker_t *rt_broker_shard_new(const char *const *names, size_t n, rt_broker_shard_make_cb make,
                                 void *make_arg, const rt_broker_handlers_t *h, void *ud);

/*
 * Creates a sharded broker over the Redis of cfgs[0..n) (copied; each a full configuration,
 * usually the same but for host, port, password and db; srv must be NULL: results run on
 * the shards' threads, which rt_broker_free() joins). The ring names a shard
 * "host:port/db" (rt_broker_shard_name()): every node must list the same Redis spelled the
 * same way; the order does not matter. cfgs[0].node_id (NULL: random) is the node's id on
 * every shard; each shard listens to its own cfgs[i].emitter_prefix (usually the same). Returns
 * NULL (logged) on a bad configuration (the same Redis twice included) or out of memory.
 */
rt_broker_t *rt_broker_shard_redis_new(const rt_broker_redis_config_t *cfgs, size_t n,
                                       const rt_broker_handlers_t *h, void *ud);

/* A Redis shard's name on the ring: "host:port/db" ("[v6]:port/db"); with Sentinel
 * "sentinel:master/db". */
void rt_broker_shard_name(const rt_broker_redis_config_t *cfg,
                          char name[RT_BROKER_SHARD_NAME_SIZE]);

/* ---------------------------------------------------------------------------------------
 * Redis Cluster (rt_broker_cluster.c): the sharded broker routed by hash slot
 *
 * A Redis Cluster spreads its 16384 hash slots over its masters; a key lives in the slot
 * of its hash tag (rt_broker_keyslot()). Every key and channel of a namespace carries the
 * hash tag {nsp} (see the key layout above), so a namespace is one slot, on one master.
 * rt_broker_cluster_new() asks the seed nodes for the topology (CLUSTER SLOTS) once, then
 * makes one Redis broker per master (a part, named "slots a-b[,c-d...]" after the slots it
 * owned at the start) and routes by slot instead of the ring: a namespace to the master of
 * its slot, a session record to the master of its pid's tag (the first
 * RT_BROKER_SESSION_TAG_LEN characters; each master's broker draws pids whose tag is in
 * its own slots, so the layer's pids land on their namespace's part). Everything else is
 * the sharded broker's ("Sharded" above): the node's self round trip is every master's,
 * under a hash tag of one of its slots (its leases and node requests are its namespaces':
 * see cluster_nodes in the configuration); state, readiness and counters are combined.
 * Broadcasts use sharded pub/sub (SPUBLISH to the master of the namespace's slot,
 * SSUBSCRIBE there), so they do not cross the cluster bus to every node. A Socket.IO
 * emitter publishes with plain PUBLISH, which a cluster sends to every node: only the
 * first master's broker listens to it (each message once).
 *
 * Seeds that give no topology at the start (none answers, or a slot has no master yet):
 * rt_broker_cluster_new() still makes a broker, of one part (part_name NULL) owning every
 * namespace, DOWN and not ready, whose thread asks the seeds again with the backoff
 * (backoff_min_ms doubling to backoff_max_ms, up to a quarter less as jitter). Until then
 * broadcasts and session records are held in order within queue_max and queue_max_bytes
 * (beyond: EDDY_EDROPPED, counted in stats.dropped; stats.buffered counts those held),
 * subscriptions are counted, presence writes answer 0 and are not made (each master's UP
 * makes the layer write its presence afresh), reads, node requests and answers are refused
 * with EDDY_ECLOSED (their callbacks do not run), nodes() is 0 and session_pid() draws an
 * untagged random pid. When the topology arrives the thread makes the masters' brokers
 * (the parts change, see "Parts"), subscribes them and hands them what was held, in
 * order; from then on every operation goes to them. rt_broker_free() stops the thread
 * (waiting out the seed it is asking, io_timeout_ms at most) and answers held broadcasts
 * EDDY_ECLOSED.
 *
 * Failover: a master's broker reconnects (its outage is its part's, with a gap: clients of
 * its namespaces recover from history) to whichever master serves its first slot when it
 * asks (every node of the topology, masters and replicas, in turn), so a replica promoted
 * in its place takes over; a MOVED, CLUSTERDOWN or READONLY answer, or a dropped channel,
 * makes it ask again. Requests refused so (broadcasts, node requests and
 * their answers included) are sent again after the reconnection, in order, for up to 10 s:
 * a failover loses none of them
 * (a manual CLUSTER FAILOVER used to lose the broadcasts sent to the demoted master, from
 * the history too). Requests in flight when a connection breaks (a master killed) are
 * answered EDDY_ECLOSED and counted dropped: whether Redis applied them is unknown, and
 * Redis' asynchronous replication may lose what it acknowledged anyway (stats.retried
 * counts the requests queued again).
 *
 * Resharding: a slot moved to another master while nodes run is followed. A master's
 * broker finds a move when it uses the slot (a MOVED answer, a dropped channel, a refused
 * SSUBSCRIBE): it asks the cluster's nodes in turn (one that has not heard of the move
 * yet: the next) and if the slot's master is another now while its own first slot is
 * still its master's, it calls the handler moved, logs the move once (NOTICE) and counts
 * it in stats.slots_moved. The slot goes to the part whose first slot that master serves,
 * or, for a master of no part (one added after the start), to a part made for it then
 * (rt_broker_shard_slots_grow(): named "slot N" after its first slot, the moved one; the
 * parts change, see "Parts"; further slots moved to that master go to it). The sharded
 * broker routes the slot there from then on (rt_broker_part() answers it at once), the old
 * part hands it the slot's subscriptions, leases, queued requests and answers, those the
 * old master refused included (sent to the new master before what was routed there since,
 * in order; a request routed to the old part at the very moment of the move may come after
 * one routed just after it), and the part's state event (moved; gap when it is UP, else
 * its first connection ends a gap) makes the layer place its namespaces again and their
 * clients recover from the history, which moved with the slot (MIGRATE moves its keys).
 * The connections stay (a MOVED answer, a dropped channel or a refused SSUBSCRIBE of a
 * slot that alone moved, found again later, is handed over again). While the slot's keys are
 * being migrated the old master answers ASK (or TRYAGAIN, which a Redis may answer when
 * some of a script's keys moved): the part holds that slot's requests, in order and in its
 * queue's bounds (logged once per slot, counted in stats.retried), and sends them again
 * every backoff_min_ms, for up to 10 s from the first refusal (then answered with it),
 * while the other slots' requests go on over the same connections; SETSLOT NODE then turns
 * the ASK into MOVED and the held requests are handed over first. A heartbeat skips a lease
 * answered ASK (renewed where its slot went once the move is found). Two requests of the
 * slot in one pipelined batch may be applied out of order (the first refused, the next
 * served by the old master while its keys still are there); history and live delivery agree
 * on the order applied. A part's own keys (its channel {cluster_tag}; its session records,
 * session_tag) are in its first slot: a move of it takes them along and the part follows it
 * as after a failover. Not followed: a slot for whose master no part can be made
 * (RT_BROKER_PARTS_MAX parts already). Such a slot is lost to the node: logged (WARNING),
 * counted, its requests answered with the refusal at once, its channels no longer make the
 * broker reconnect, and the broker is not ready (ready() false) until the node is freed:
 * restart the nodes. Nodes meet in the namespaces' slots (their leases, presence and node
 * requests), not in their parts' keys: a node started after a reshard that changed a
 * master's first slot, whose part for that master is named after another slot, or whose
 * parts made while running were made for other slots than another node's, still meets every
 * other node.
 * ------------------------------------------------------------------------------------- */

#define RT_BROKER_CLUSTER_SLOTS 16384

/* CRC16 of data[0..len) as Redis Cluster computes it (CCITT/XMODEM: polynomial 0x1021,
 * initial 0; "123456789" gives 0x31C3). */
uint16_t rt_broker_crc16(const void *data, size_t len);

/* The hash slot of key[0..len) (Redis Cluster's rule: the CRC16 of the hash tag, the bytes
 * between the first '{' and the first '}' after it when there are some, else of the whole
 * key; mod 16384). */
unsigned rt_broker_keyslot(const char *key, size_t len);

/*
 * Creates a Redis Cluster broker from cfg (a redis+cluster:// configuration: its
 * cluster_nodes are the seeds, password and username every node's, the rest each master's
 * broker's; srv must be NULL). Asks the seeds in turn (io_timeout_ms each) for the
 * topology, over TLS with cfg->tls (rediss+cluster:// : each seed's certificate verified
 * against its host, as tls_ says): blocks until one answers or each failed. When none
 * gives a topology, returns the broker of "Seeds that give no topology at the start"
 * above, which asks again. Returns NULL (logged) when a TLS file cannot be read, the
 * topology read cannot be served (no hash tag found for a master's slots), on a bad
 * configuration or out of memory.
 */
rt_broker_t *rt_broker_cluster_new(const rt_broker_redis_config_t *cfg,
                                   const rt_broker_handlers_t *h, void *ud);

/*
 * Resharding: sets *route (the sharded broker's entry for slot) to part and hands what
 * Redis broker from (a master's broker of a cluster) holds of slot to Redis broker to
 * (another master's of the same node): its queued requests of the slot, first on to's
 * queue and in order, their 10 s of retries afresh (the store and the move are made with
 * both queues locked: to sends none of what was routed to it since before them), and its
 * interest in the slot's channels, with their references (from forgets them). Called on
 * from's thread by the handler moved. If either is not a Redis broker of a cluster, or
 * they are the same, only sets *route. Returns route's previous value.
 */
uint8_t rt_broker_redis_hand_over(rt_broker_t *from, rt_broker_t *to, unsigned slot,
                                  _Atomic uint8_t *route, uint8_t part);

/*
 * The sharded broker of a cluster (rt_broker_cluster_new() uses it; tests too): as
 * rt_broker_shard_new(), but a namespace belongs to shard slots[its slot] (each entry below
 * n), a pid to slots[the slot of its Psession key] (prefix: the keys' prefix, copied), and
 * the shards take turns drawing pids. A shard's handler moved routes its slot to another
 * shard from then on (the copy of slots is updated, one atomic byte per slot), hands it
 * what the shard holds of the slot (rt_broker_redis_hand_over()) and, the first time,
 * sends the state event of the new shard with moved set (gap when it is UP). Returns NULL
 * on bad arguments, a shard that cannot be made, or out of memory.
 */
rt_broker_t *rt_broker_shard_slots_new(const char *const *names, size_t n,
                                       const uint8_t slots[RT_BROKER_CLUSTER_SLOTS],
                                       const char *prefix, rt_broker_shard_make_cb make,
                                       void *make_arg, const rt_broker_handlers_t *h, void *ud);

/* Makes shard i, whose first slot is slot (its master is that slot's), with the handlers h
 * and hud, and node_id (as make does for i > 0); NULL if it cannot be made. */
typedef rt_broker_t *(*rt_broker_shard_grow_cb)(size_t i, unsigned slot, const char *node_id,
                                                const rt_broker_handlers_t *h, void *hud,
                                                void *arg);

/*
 * Lets the sharded broker b of rt_broker_shard_slots_new() make a shard while it runs: when
 * a shard's handler moved names a master of no shard, grow(i, slot, ..., arg) makes shard
 * i (the next index; at most RT_BROKER_SHARDS_MAX) and the slot goes to it. arg is the
 * broker's from then on: arg_free(arg) (NULL: nothing) runs when b is freed.
 */
void rt_broker_shard_slots_grow(rt_broker_t *b, rt_broker_shard_grow_cb grow, void *arg,
                                void (*arg_free)(void *arg));

#endif /* EDDY_RT_BROKER_H */

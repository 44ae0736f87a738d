/* SPDX-License-Identifier: MIT */
/*
 * Scale-out of the real-time layer over a broker (rt_broker.h): what rt.c hands to the
 * cluster and back. Private to rt/. Only built into a layer whose options name a
 * redis_url; with none, rt.c never calls into this module (rt->cluster is NULL).
 *
 * Delivery model (README "Scale-out (Redis)"): while the broker is UP, a broadcast is not
 * sent locally when it is made; it is published once to the broker, which gives it its
 * position (epoch, seq) in its namespace, and every node, the origin included, fans it
 * out to its own members when the broker delivers it (the origin's echo). So every node
 * delivers a namespace's broadcasts in the same (seq) order, and each packet carries its
 * broker position as its Socket.IO offset, which any node can recover from. Without
 * recovery and history the broker keeps no positions (Redis: one plain PUBLISH per target
 * room; every node still gets them in Redis' order, and without offsets). While the
 * broker is not UP, broadcasts are delivered locally at once (without offset: one node's
 * behaviour) and still queued for the broker, flagged RT_CLUSTER_DELIVERED so that the
 * origin skips their echo; the recoveries that follow the outage skip them too, for the
 * sockets that got them (see rt_cluster_mark()).
 *
 * Threads: broker results and deliveries run on the broker's own thread (so none is left
 * in a loop's queue when the broker is freed); what must run in a client's context is
 * handed to its loop with eddy_post().
 */
#ifndef EDDY_RT_CLUSTER_H
#define EDDY_RT_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "eddy_rt.h"
#include "rt_broker.h"

typedef struct rt_cluster rt_cluster_t;

/* Flags of a broker message besides the layer's own (EDDY_RT_VOLATILE, EDDY_RT_COMPRESS). */
#define RT_CLUSTER_EXCEPT_SOCKET (1u << 30) /* the last except name is the sender's socket id */
#define RT_CLUSTER_DELIVERED     (1u << 31) /* the origin delivered it locally already */

/* The pseudo-room of a user's connections ("\x1e" + user id), as rt.c stores it. */
#define RT_CLUSTER_USER_PREFIX '\x1e'

/*
 * Starts the cluster of rt: parses opt->redis_url ("redis://[:password@]host[:port][/db]",
 * or several separated by commas: a sharded broker), starts the broker with opt's heartbeat
 * (both fields set). Returns NULL (logged) on a malformed URL or out of memory.
 */
rt_cluster_t *rt_cluster_new(eddy_rt_t *rt, const eddy_rt_options_t *opt);
/* Sends what is queued (while Redis answers), leaves the cluster and frees it. After every
 * session of the layer closed. */
void rt_cluster_free(rt_cluster_t *cl);

/* Stops handing deliveries to the layer (eddy_rt_free(), before its sessions close). */
void rt_cluster_quiet(rt_cluster_t *cl);

/* True while the part of the broker that owns namespace nsp is UP: its broadcasts go
 * through the broker and come back. One atomic load while every part is up (the hot path
 * of a broadcast); any thread. With several Redis, one shard's outage makes only its own
 * namespaces deliver locally. */
bool rt_cluster_nsp_up(rt_cluster_t *cl, const char *nsp);
/* The part of the broker that owns namespace nsp (rt_broker_part(): 0 with one Redis). */
size_t rt_cluster_part(rt_cluster_t *cl, const char *nsp);
/* The name of that part ("host:port/db" of nsp's Redis shard), or NULL with one Redis. */
const char *rt_cluster_part_name(rt_cluster_t *cl, const char *nsp);

/* Fills *out (see eddy_rt_broker_status()). */
void rt_cluster_status(rt_cluster_t *cl, eddy_rt_broker_status_t *out);

/* Interest of this node in (nsp, room) (room NULL: the whole namespace; user: room is a
 * user id, its pseudo-room is meant), reference counted by the broker: rt.c takes one per
 * local room, user and socket. */
void rt_cluster_interest(rt_cluster_t *cl, const char *nsp, const char *room, bool user, bool on);

/*
 * Publishes a broadcast: payload is the packet's stored form (see rt.c "record"), rooms
 * the target rooms (users as pseudo-rooms; none: the whole namespace), except the
 * except-rooms (with RT_CLUSTER_EXCEPT_SOCKET, the sender's id last). Returns 0 (queued)
 * or the broker's error (EDDY_EDROPPED, EDDY_ENOMEM, EDDY_EINVAL).
 */
int rt_cluster_publish(rt_cluster_t *cl, const char *nsp, const char *const *rooms, size_t nrooms,
                       const char *const *except, size_t nexcept, uint32_t flags,
                       const void *payload, size_t len);

/* ---------------------------------------------------------------------------------------
 * Session records (connection state recovery across nodes)
 * ------------------------------------------------------------------------------------- */

/* This node's count of the broadcasts it delivered locally during outages: a socket notes
 * it at connect (mark), so that its record can list those it got (exactly once after an
 * outage, rt_cluster.c). */
uint64_t rt_cluster_mark(rt_cluster_t *cl);
/* Stores the record of a connected socket under its client's pid for ttl_ms (0: a live
 * socket's, kept in this node's hash while it lives and for the window after a kill -9;
 * stored on connect and room changes only). at is the namespace's position when the
 * socket connected; rooms are its joined rooms (not its own); mark is rt_cluster_mark() at
 * its connect (a disconnected socket's record, ttl_ms > 0, lists the positions of the
 * broadcasts this node delivered to it locally since, or waits until they are known). */
void rt_cluster_session_put(rt_cluster_t *cl, const char *nsp, const char *pid, const char *sid,
                            const char *user, const char *const *rooms, size_t nrooms,
                            rt_position_t at, uint64_t ttl_ms, uint64_t mark);
/* Writes a new pid for a session of namespace nsp (its first characters name this node
 * process, so that any node finds its live record; with several Redis, its record lives
 * on nsp's shard). */
void rt_cluster_session_pid(rt_cluster_t *cl, const char *nsp, char pid[RT_HISTORY_PID_SIZE]);
/* Forgets pid's record (a disconnect that must not be recovered). */
void rt_cluster_session_drop(rt_cluster_t *cl, const char *pid);
/* The namespace's last known position (epoch 0: none known yet). */
rt_position_t rt_cluster_position(rt_cluster_t *cl, const char *nsp);

/*
 * Starts the recovery of s (not registered yet, in its client's context, CONNECT auth in
 * auth[0..len)) when the auth names a pid. Returns true if it took s over: the outcome
 * comes later through rt_cluster_resume() on the client's loop. False: connect s afresh
 * now (no pid, or a malformed offset: the record is then dropped, single use).
 */
bool rt_cluster_recover(rt_cluster_t *cl, eddy_rt_socket_t *s, const char *auth, size_t len);

/* A recovery's outcome, for rt_cluster_resume(). */
typedef struct rt_cluster_recovery rt_cluster_recovery_t;

/* What a recovered socket gets back (pointers valid until rt_cluster_recovery_free()). */
typedef struct rt_cluster_restore {
    const char *pid;
    const char *sid;
    const char *user; /* NULL: none */
    const char *const *rooms;
    size_t nrooms;
    rt_position_t at; /* the position at its first connect */
} rt_cluster_restore_t;

/* The outcome of a recovery started by rt_cluster_recover(), from the broker's thread:
 * restore is the record (NULL: not recovered, connect afresh), auth what to connect with.
 * rt.c finishes on the client's loop, in its context, and frees r. */
void rt_cluster_resume(eddy_rt_socket_t *s, rt_cluster_recovery_t *r,
                       const rt_cluster_restore_t *restore, const char *auth, size_t auth_len);
/* Called by rt.c under the table lock once the recovered socket is registered: sends s
 * the missed broadcasts from history, then the live ones held meanwhile above the
 * history's top, in seq order, and stops holding. */
void rt_cluster_replay(rt_cluster_recovery_t *r, eddy_rt_socket_t *s);
/* True if a live delivery could not be held (out of memory): not recovered. Table lock
 * held. */
bool rt_cluster_recovery_failed(const rt_cluster_recovery_t *r);
/* Releases r (and the temporary subscriptions the recovery held). */
void rt_cluster_recovery_free(rt_cluster_recovery_t *r);

/* ---------------------------------------------------------------------------------------
 * Provided by rt.c
 * ------------------------------------------------------------------------------------- */

/* Fans a broadcast the broker delivered out to the local members (broker thread). */
void rt_cluster_deliver_local(eddy_rt_t *rt, const rt_broker_delivery_t *d);
/* Fans a broadcast from Socket.IO's Redis emitter out to the local members, without a
 * position (broker thread). */
void rt_cluster_emitted_local(eddy_rt_t *rt, const rt_emitter_msg_t *m);
/* Holds d for recoveries in flight whose rooms it reaches (table lock held). */
void rt_cluster_hold(rt_cluster_t *cl, const rt_broker_delivery_t *d);
/* Sends one stored packet (rt.c's stored form) to s with the offset of pos (pos.epoch 0:
 * none). Table lock may be held. */
void rt_cluster_send_stored(eddy_rt_socket_t *s, rt_position_t pos, const void *payload, size_t len,
                            uint32_t flags);
/* The broker's part part (rt_cluster_part()) reconnected after an outage: with recovery
 * on, closes the transport of every local client of its namespaces so that each recovers
 * what it missed from history. Other namespaces' clients are left alone (a client with
 * sockets in namespaces of several parts shares one transport: it reconnects all of them). */
void rt_cluster_gap(eddy_rt_t *rt, size_t part);

/* ---------------------------------------------------------------------------------------
 * Presence across nodes (issue 13): the broker's presence hashes (rt_broker.h), whose
 * entries belong to this node and vanish with its lease
 * ------------------------------------------------------------------------------------- */

/* The presence pseudo-room that lists, per node, the rooms having local members (member:
 * the room's name, info empty). No Socket.IO room starts with this byte in practice. */
#define RT_CLUSTER_ROOMS_INDEX "\x1c"

/* Records (on) or removes socket sid's membership of room (info: its user id, NULL none);
 * listed: room's first local member came (on) or its last left (not on): the rooms index
 * changes too. Queued to the broker, never waits. Any thread; table lock may be held. */
void rt_cluster_presence(rt_cluster_t *cl, const char *nsp, const char *room, const char *sid,
                         const char *user, bool on, bool listed);

/* Reads the presence entries of (nsp, room) of the alive nodes: cb runs once, on the
 * broker's thread (also with EDDY_ECLOSED when the cluster is freed first). Returns 0 or
 * the broker's error (cb then not called). */
int rt_cluster_presence_get(rt_cluster_t *cl, const char *nsp, const char *room,
                            rt_broker_presence_cb cb, void *arg);

/* This node's id, and the alive nodes' (see rt_broker_nodes()). */
const char *rt_cluster_node_id(rt_cluster_t *cl);
size_t rt_cluster_nodes(rt_cluster_t *cl, char (*ids)[RT_BROKER_NODE_ID_SIZE], size_t max);

/* Removes an entry of this node: (room, sid), or with sid NULL room's rooms index entry,
 * queued behind the restores' and sweeps' requests (see rt_cluster_presence_resync()).
 * Table lock held (rt_cluster_presence_check()). */
void rt_cluster_presence_forget(rt_cluster_t *cl, const char *nsp, const char *room,
                                const char *sid);

/* Provided by rt.c: records every local membership of the namespaces of the broker's part
 * part again (it is up after an outage, during which the node's lease there may have run
 * out and its entries gone); with nsp not NULL, those of namespace nsp only (part unused).
 * Each goes through rt_cluster_presence_resync(). */
void rt_cluster_presence_restore(eddy_rt_t *rt, size_t part, const char *nsp);
/* A membership of a restore (rt_cluster_presence() with on): waits with the other requests
 * of restores and sweeps, which go to the broker in order as its queue has room (the
 * restore's caller starts them). Any thread; table lock may be held. */
void rt_cluster_presence_resync(rt_cluster_t *cl, const char *nsp, const char *room,
                                const char *sid, const char *user, bool listed);
/* A presence write the broker refused (EDDY_EDROPPED: its queue full; EDDY_ENOMEM) leaves
 * Redis wrong about this node's members (a ghost, or one missing) while the connection
 * stays up, so no reconnect repairs it: its namespace is marked, and this, called every
 * second (rt.c's timer, any thread), repairs the marked namespaces once a whole period
 * passed without a drop (the queue has room again): the restore and sweep of a reconnect,
 * for them only (logged at info level with the count). Drops during the repair mark them
 * again. Namespaces on a part that is not up wait: its UP event does the same. */
void rt_cluster_presence_repair(rt_cluster_t *cl);
/* Unit tests: the broker's queue_max (rt_broker_redis_config_t) of the clusters made after
 * it is set; 0 (the default): the broker's own default. */
extern size_t rt_cluster_queue_max;
/* Provided by rt.c: an entry of this node read back from Redis (sid NULL: room's index
 * entry) is forgotten unless it is still true: the node's entries from before a restart
 * with the same id (kill -9), or whose removal an outage dropped (broker thread). */
void rt_cluster_presence_check(eddy_rt_t *rt, const char *nsp, const char *room, const char *sid);

/* ---------------------------------------------------------------------------------------
 * Across nodes (rt_xnode.h)
 * ------------------------------------------------------------------------------------- */

/* The cluster's broker (its node requests carry rt_xnode.c's commands). */
rt_broker_t *rt_cluster_broker(rt_cluster_t *cl);

#endif /* EDDY_RT_CLUSTER_H */

/* SPDX-License-Identifier: MIT */
/*
 * eddy_rt: the real-time layer of eddy. Sockets, namespaces, rooms, named events with
 * acknowledgements, users and presence, spoken as Socket.IO (protocol v5 over Engine.IO v4,
 * and protocol v4 over Engine.IO v3 as socket.io-client 2.x and laravel-swoole speak it)
 * on top of an eddy_server_t. It uses only the engine's public API (eddy.h).
 *
 * The model, in Socket.IO's words:
 * - a client (one Engine.IO session: WebSocket, or HTTP long-polling until it upgrades)
 *   connects to one or more namespaces ("/", "/chat"); each connection to a namespace is
 *   a socket (eddy_rt_socket_t) with an id (20 characters), an optional user id and
 *   application data;
 * - a socket is in its own room (named by its id) and in the rooms it joins, and leaves
 *   them all when it disconnects;
 * - events have a name and JSON arguments, optionally binary attachments, and may ask for
 *   an acknowledgement (both ways);
 * - emits go to a socket, to the union of rooms (each socket once), to a whole namespace,
 *   minus rooms and minus one socket (the sender); to every socket of a user id.
 *
 * Arguments are JSON text, never a tree: an argument list is the JSON values separated by
 * commas, without the array's brackets (1,"two",{"x":3}), exactly the bytes a packet
 * carries after the event name. An event handler receives it in place (eddy_rt_arg() and
 * friends read it), and an emit takes one the application wrote or received: echoing the
 * arguments of an event costs no re-encoding. Binary attachments are referred to from the
 * JSON by Socket.IO's placeholders {"_placeholder":true,"num":N} (N indexes the attachment
 * array), exactly as the protocol carries them.
 *
 * Return codes are eddy's (eddy.h: negative eddy_error values or -errno, eddy_strerror());
 * a timed-out acknowledgement is -ETIMEDOUT.
 *
 * Threads. The server runs several event loops (eddy.h "Threads"); the layer's tables
 * (namespaces, rooms, users) are shared by all of them.
 * - The callbacks of one socket (connect hook, connection, events, acks, disconnecting,
 *   disconnect) never run at the same time. A socket on WebSocket has them on its
 *   connection's loop; a socket still on HTTP long-polling may have them on any loop
 *   (each request of a polling session may arrive on another connection).
 * - Every function below may be called from any thread (loop threads, the application's
 *   own) unless it says otherwise. Called from inside a callback of the socket they act
 *   on, they act at once; the rest takes short locks on the shared tables (never held
 *   while an application callback runs, except eddy_rt_room_sockets()'s visitor).
 * - A socket pointer is borrowed: valid during the callbacks that receive it, and until
 *   eddy_rt_socket_unref() when the application took a reference (eddy_rt_socket_ref(),
 *   eddy_rt_socket_find()). Functions on a socket that has disconnected return
 *   EDDY_ECLOSED (a held reference keeps the memory, not the connection).
 *
 * Cost: emits to one WebSocket socket and to rooms take no lock and no allocation per
 * recipient: a broadcast is encoded once per protocol variant and fanned out through the
 * engine's shared frames (eddy_publish_parts()); sockets still on long-polling are reached
 * from the layer's own member lists. Joining and leaving take the shared tables' lock.
 */
#ifndef EDDY_RT_H
#define EDDY_RT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "eddy.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && __GNUC__ >= 4
#pragma GCC visibility push(default)
#endif

/* The layer on one server (opaque). */
typedef struct eddy_rt eddy_rt_t;
/* A namespace ("/", "/chat") (opaque; lives as long as the layer). */
typedef struct eddy_rt_nsp eddy_rt_nsp_t;
/* A connection of a client to a namespace (opaque; see "Threads" above for its lifetime). */
typedef struct eddy_rt_socket eddy_rt_socket_t;

/* ---------------------------------------------------------------------------------------
 * Options: Socket.IO's server options where Socket.IO has one (Node names in brackets).
 * ------------------------------------------------------------------------------------- */

typedef struct eddy_rt_options {
    const char *path;            /* ["path"] "/socket.io/" (copied) */
    uint32_t ping_interval_ms;   /* ["pingInterval"] 25000 */
    uint32_t ping_timeout_ms;    /* ["pingTimeout"] 20000 */
    uint32_t upgrade_timeout_ms; /* ["upgradeTimeout"] 10000 */
    size_t max_http_buffer_size; /* ["maxHttpBufferSize"] 1000000: largest Engine.IO message
                                  * (WebSocket message or polling POST body) */
    uint32_t connect_timeout_ms; /* ["connectTimeout"] 45000: a client that has joined no
                                  * namespace by then is closed */
    bool allow_polling;          /* [transports includes "polling"] true */
    size_t max_attachments;      /* [parser maxAttachments] 10: more binary attachments in
                                  * one packet close the connection */
    /* Connection state recovery ["connectionStateRecovery.maxDisconnectionDuration"]:
     * milliseconds a socket whose transport was lost keeps its state (id, rooms, user id)
     * and the events sent meanwhile, for its client to recover; 0 turns recovery off (the
     * default). With it on, every event emitted without ack and not volatile is stored
     * per namespace (rooms' histories bounded by count, bytes and this age) and carries its
     * offset as last argument, as in Socket.IO; the CONNECT reply carries a pid. A
     * reconnecting client gets exactly the events it missed, in order, or is connected
     * afresh (recovered false): never a partial replay. */
    uint32_t recovery_max_disconnection_ms;
    /* History of each room (eddy_rt_room_history()): events emitted to a room (or to the
     * whole namespace) without ack and not volatile are kept, each room bounded by count,
     * payload bytes and age. history_max_messages 0 keeps none (the default) unless
     * recovery is on, which needs them (then 1000); history_max_bytes 0: 1 MiB;
     * history_max_age_ms 0: recovery_max_disconnection_ms, or 120000. */
    size_t history_max_messages;
    size_t history_max_bytes;
    uint32_t history_max_age_ms;
    /*
     * Scale-out (README "Scale-out (Redis)"): "redis://[:password@]host[:port][/db]" of
     * the Redis (6.2 or later) that every node of the application shares; several layers
     * (processes, machines) on one Redis form one cluster. NULL (the default): one node,
     * nothing leaves the process. With it, a broadcast (eddy_rt_broadcast()) reaches the
     * sockets it selects on every node, exactly once, in the same order on every node
     * (each namespace's broadcasts get their position from Redis), and with recovery on a
     * client recovers on any node, also after its first node was killed. Local delivery
     * goes on while Redis is down; when it comes back after an outage, with recovery on,
     * every local client's transport is closed so that it reconnects and recovers what it
     * missed. Across nodes too: eddy_rt_broadcast_ack(), the functions of "Across nodes"
     * below, eddy_rt_room_presence() and eddy_rt_rooms(); not yet: eddy_rt_room_history(),
     * the synchronous member visits and counts of "Users and presence" (this node's),
     * eddy_rt_disconnect() of one socket (use eddy_rt_disconnect_sockets() with its id as
     * room). The layer connects
     * from a thread of its own (it never blocks a loop); eddy_rt_free() must then run
     * before eddy_server_free(). Several URLs separated by commas shard the namespaces
     * (their broadcasts, positions, history, presence) and session records over those
     * Redis by consistent hashing (README "Several Redis"): every node must list the same
     * Redis, spelled the same way (any order); the node is ready only while each answers.
     * With Redis Sentinel (README "Sentinel"):
     * "redis+sentinel://[:password@]host[:port][,host[:port]...]/master[/db]" (sentinel
     * port 26379; "?sentinel_password=...[&sentinel_username=...]" for the sentinels' AUTH;
     * "user:password@" logs in as a Redis 6 ACL user; user names, passwords and parameters
     * are percent-decoded, README "Sentinel"): the sentinels are asked
     * for the master before every connection and reconnection, so the node follows a
     * failover. Over TLS: "rediss://..." and "rediss+sentinel://..." with the parameters
     * ssl_ca_certs, ssl_certfile, ssl_keyfile, ssl_servername and ssl_cert_reqs=none
     * (README "TLS"; the certificate and its name verified by default). With a Redis
     * Cluster (README "Redis Cluster"), its seed nodes alone:
     * "redis+cluster://[[user]:password@]host[:port][,host[:port]...]": eddy_rt_new() reads
     * the topology from them (blocking, at most the I/O timeout, 2 s, per seed; it fails,
     * logged, if none answers) and routes each namespace to the master of its hash slot,
     * following failovers; "rediss+cluster://..." with the TLS parameters above reaches
     * every node over TLS (each certificate verified against the address connected to).
     * A malformed URL, or a TLS file that cannot be read: eddy_rt_new()
     * fails, logged. Copied.
     */
    const char *redis_url;
    const char *redis_prefix; /* prefix of every Redis key and channel: "eddy:" (copied) */
    const char *node_id;      /* this node's id in the cluster (at most 64 characters):
                               * NULL: 16 random hex characters (copied) */
    /* With redis_url: also broadcast what other programs publish in Socket.IO's Redis
     * emitter format (npm @socket.io/redis-emitter, its PHP and Python ports) under this
     * key ("socket.io", the emitter's default): every node sends each such broadcast to
     * its own sockets in the rooms it names, minus its except-rooms, as Socket.IO's Redis
     * adapter does. Such broadcasts have no position: they are not kept for recovery.
     * NULL (the default): not listened to. Copied. */
    const char *redis_emitter_prefix;
    /* With redis_url, the node's heartbeat [the cluster adapter's "heartbeatInterval" and
     * "heartbeatTimeout"]: every interval the node renews its lease in Redis and publishes
     * to itself (1000; 0: the default), and a lease lasts timeout past its renewal (0:
     * three intervals). The interval is 50 to 600000 ms, the timeout at least two
     * intervals and at most 3600000 ms: eddy_rt_new() fails, logged, otherwise. A node that
     * goes without a goodbye (kill -9, a cut network) leaves the cluster when its lease
     * runs out: its sockets leave eddy_rt_room_presence() and eddy_rt_rooms(), and
     * cross-node requests stop waiting for it. A stopped node leaves at once. The node is
     * ready (eddy_rt_broker_status()) while its last round trip is at most three intervals
     * old. Each renewal wakes Redis up once (about 0.2 ms of its CPU, bench/README.md
     * "Scale-out"): a longer interval costs Redis less and finds a dead node later (Socket.IO's
     * cluster adapter: 5000 and 10000). Each node's lease is its own: nodes of one cluster
     * may differ. */
    uint32_t redis_heartbeat_interval_ms;
    uint32_t redis_heartbeat_timeout_ms;
} eddy_rt_options_t;

/* redis_heartbeat_interval_ms: the default and the bounds; the longest
 * redis_heartbeat_timeout_ms (the shortest is twice the interval). */
#define EDDY_RT_HEARTBEAT_INTERVAL_MS    1000
#define EDDY_RT_HEARTBEAT_MIN_MS         50
#define EDDY_RT_HEARTBEAT_MAX_MS         600000
#define EDDY_RT_HEARTBEAT_TIMEOUT_MAX_MS 3600000

/* Fills *opts with the defaults above. */
void eddy_rt_options_init(eddy_rt_options_t *opts);

/* ---------------------------------------------------------------------------------------
 * Layer lifecycle and dispatch
 * ------------------------------------------------------------------------------------- */

/*
 * Creates the layer on srv with opts (NULL: the defaults; copied). Call before
 * eddy_server_start(), from the thread configuring the server; srv must outlive the layer.
 * The namespace "/" exists from the start. Returns NULL on out-of-memory or a bad option
 * (logged: path not starting with '/', ping_interval_ms or ping_timeout_ms 0).
 */
eddy_rt_t *eddy_rt_new(eddy_server_t *srv, const eddy_rt_options_t *opts);

/* Frees the layer, after eddy_server_start() returned (or before it was called). Sockets
 * still referenced by the application become dangling: drop references first. */
void eddy_rt_free(eddy_rt_t *rt);

/*
 * Makes the layer the server's application: sets the server's request, upgrade, open,
 * message and close callbacks and its user data (eddy_server_set_user_data(srv, rt)).
 * Requests under the path go to Engine.IO; other HTTP requests go to fallback (NULL: 404
 * Not Found; its user_data argument is the rt), other WebSocket upgrades are refused with
 * 404. Call before eddy_server_start(). Applications that keep their own eddy_on_*
 * callbacks call the dispatch functions below from them instead.
 */
void eddy_rt_install(eddy_rt_t *rt, eddy_request_cb fallback);

/*
 * Dispatch, for applications with their own eddy_on_* callbacks: each returns true when
 * the request, upgrade or connection belonged to the layer and was handled (the callback
 * must then do nothing more with it), false when it is the application's.
 * eddy_rt_handle_upgrade() stores in *status what the upgrade callback must return.
 */
bool eddy_rt_handle_request(eddy_rt_t *rt, eddy_request_t *req, eddy_response_t *resp);
bool eddy_rt_handle_upgrade(eddy_rt_t *rt, eddy_request_t *req, int *status);
bool eddy_rt_handle_open(eddy_rt_t *rt, eddy_request_t *req);
bool eddy_rt_handle_message(eddy_rt_t *rt, const eddy_frame_t *frame);
bool eddy_rt_handle_close(eddy_rt_t *rt, eddy_fd_t fd);

/* The server the layer runs on. */
eddy_server_t *eddy_rt_server(const eddy_rt_t *rt);
/* Layer-wide application data (borrowed, never freed by eddy). */
void eddy_rt_set_user_data(eddy_rt_t *rt, void *user_data);
void *eddy_rt_user_data(const eddy_rt_t *rt);

/*
 * The layer's counters and gauges, for metrics. Indexes: [EDDY_RT_EIO3 or EDDY_RT_EIO4]
 * (the client's Engine.IO protocol: 3 for socket.io-client 2.x, 4 for 3.x and later) and
 * [EDDY_RT_POLLING or EDDY_RT_WEBSOCKET] (its transport). Counters (_total) count from
 * eddy_rt_new() on. Counting costs no lock: each event loop adds to counters of its own
 * (a plain add), other threads to a shared set with a relaxed atomic add; a read sums
 * them, so each field is exact for a moment during the call, not one snapshot.
 */
enum { EDDY_RT_EIO3 = 0, EDDY_RT_EIO4 = 1 };
enum { EDDY_RT_POLLING = 0, EDDY_RT_WEBSOCKET = 1 };
typedef struct eddy_rt_stats {
    uint64_t clients[2][2];            /* gauge: open Engine.IO sessions, by protocol, transport */
    uint64_t handshakes_total[2][2];   /* sessions opened, by protocol and first transport */
    uint64_t upgrades_total[2];        /* polling sessions that moved to WebSocket */
    uint64_t handshake_failures_total; /* sessions the layer could not take (out of memory) */
    /* Engine.IO requests (polling, WebSocket upgrades) refused, by Engine.IO's error code:
     * [0] "Transport unknown", [1] "Session ID unknown" (also a request for a session
     * that has ended), [2] "Bad handshake method", [3] "Bad request", [4] "Forbidden",
     * [5] "Unsupported protocol version". */
    uint64_t request_errors_total[6];
    uint64_t connects_total; /* namespace CONNECTs accepted (recovered ones too) */
    /* CONNECTs refused: to a namespace that does not exist ("Invalid namespace"), and by
     * the namespace's connect callback (eddy_rt_refuse()). */
    uint64_t connect_invalid_namespace_total;
    uint64_t connect_refused_total;
    /* Connection state recovery: CONNECTs that offered the pid of an earlier session, and
     * were recovered, or were not (expired, unknown, or the missed events gone: connected
     * afresh). */
    uint64_t recovered_total;
    uint64_t not_recovered_total;
    uint64_t events_received_total; /* EVENT and BINARY_EVENT packets from clients */
    uint64_t events_sent_total;     /* emits and acks to one socket (eddy_rt_emit(), _ack()...) */
    uint64_t broadcasts_total;      /* eddy_rt_broadcast() and _broadcast_ack() calls that sent */
} eddy_rt_stats_t;

/* Fills *out with the layer's figures. Any thread, while the layer exists. */
void eddy_rt_stats(eddy_rt_t *rt, eddy_rt_stats_t *out);

/*
 * The scale-out broker as this node sees it (eddy_rt_options_t.redis_url), for health
 * checks and metrics. clustered is false on a layer without redis_url (every other field
 * is then 0). ready is the honest readiness check: this node published to itself through
 * Redis and received it within the last three heartbeat intervals (3 s by default; the
 * last one round_trip_age_ms ago, UINT64_MAX before the first); it is false
 * while Redis is down, frozen or not delivering. state: 0 down, 1 reconnected and
 * restoring subscriptions, 2 up. Counters since eddy_rt_new(): broadcasts Redis
 * confirmed, broadcasts delivered to this node, requests waiting now for Redis (and their
 * bytes), requests dropped (queue bound or lost with a connection), reconnections after
 * an outage, outages reported with a gap; channels subscribed now; nodes alive (this one
 * included, by their leases). Any thread, while the layer exists.
 */
typedef struct eddy_rt_broker_status {
    bool clustered;
    bool ready;
    int state;
    uint64_t round_trip_age_ms;
    uint64_t published_total, delivered_total, buffered, buffered_bytes, dropped_total;
    uint64_t reconnects_total, gaps_total, subscriptions, nodes;
    uint64_t master_switches_total; /* redis+sentinel, redis+cluster: times the sentinels or
                                     * the cluster named a new master */
    /* Namespaces whose presence in Redis was written again after the broker dropped some of
     * its presence writes (its queue full), without an outage: each is one repair. */
    uint64_t presence_repairs_total;
    /* Without history (recovery off, no history_max_messages): broadcasts other nodes
     * published to a room (or one socket) of this node, held all along, that never reached
     * it (a jump in that node's numbers on the room's channel: a subscription connection
     * cut, a publisher's queue overflowing). Lost: nothing holds them to recover from. */
    uint64_t messages_missed_total;
    /* redis+sentinel, redis+cluster: requests (broadcasts, session records, presence,
     * reads) a master refused because it no longer served them (demoted by a failover:
     * MOVED, READONLY, CLUSTERDOWN, MASTERDOWN), queued again and sent after the
     * reconnection, or to the slot's new master after resharding; or while their slot was
     * being migrated (ASK, TRYAGAIN), held and sent again (README "Redis Cluster"); each
     * refusal counts. 0 on one Redis. */
    uint64_t retried_total;
    /* redis+cluster: hash slots found moved from one master to another while this node
     * runs (resharding). The node follows them (their namespaces' clients recover from
     * history), but for a move of the first slot of a part or of its node keys, or past 64
     * parts: then its namespaces' requests are refused (their broadcasts reach no one
     * through this node) and ready stays false until the node is restarted (README "Redis
     * Cluster"). */
    uint64_t slots_moved_total;
} eddy_rt_broker_status_t;

void eddy_rt_broker_status(eddy_rt_t *rt, eddy_rt_broker_status_t *out);

/* Longest name of a Redis shard ("host:port/db"), and a buffer for one with its NUL. */
#define EDDY_RT_SHARD_NAME_MAX  299
#define EDDY_RT_SHARD_NAME_SIZE (EDDY_RT_SHARD_NAME_MAX + 1)

/*
 * With redis_url listing several Redis (shards: README "Several Redis"): copies the name
 * ("host:port/db", "[v6]:port/db") of the shard that owns namespace nsp into shard and
 * returns 1 while that shard is up (the namespace's broadcasts cross nodes), 0 while it is
 * not (they are delivered on this node and may not reach the others; with recovery on, its
 * clients reconnect and recover once it is back; the other shards' namespaces are not
 * concerned). Returns -1
 * (shard untouched) on a layer with one Redis or none. Any thread, while the layer exists.
 */
int eddy_rt_nsp_shard(eddy_rt_nsp_t *nsp, char shard[EDDY_RT_SHARD_NAME_SIZE]);

/* Longest node id (eddy_rt_options_t.node_id), and a buffer for one with its NUL. */
#define EDDY_RT_NODE_ID_MAX  64
#define EDDY_RT_NODE_ID_SIZE (EDDY_RT_NODE_ID_MAX + 1)

/*
 * The nodes alive in the cluster (this one included), as of this node's last heartbeat
 * through Redis (every heartbeat interval, 1 s by default; a node is alive while its
 * lease is fresh, 3 s by default; one that stopped cleanly leaves at once): copies up to
 * max ids (sorted) into ids and returns how many there are (may exceed max). 0 on a layer
 * without redis_url, and before the first heartbeat. eddy_rt_node_id() is this node's id
 * (valid while the layer lives), NULL on a layer without redis_url. Any thread, while the
 * layer exists.
 */
size_t eddy_rt_broker_nodes(eddy_rt_t *rt, char (*ids)[EDDY_RT_NODE_ID_SIZE], size_t max);
const char *eddy_rt_node_id(eddy_rt_t *rt);

/* ---------------------------------------------------------------------------------------
 * Events and acknowledgements
 * ------------------------------------------------------------------------------------- */

/* A binary attachment (borrowed). */
typedef struct eddy_rt_bin {
    const void *data;
    size_t len;
} eddy_rt_bin_t;

/*
 * An event received from a client, or the answer to an acknowledged emit. Everything is
 * borrowed for the callback.
 */
typedef struct eddy_rt_event {
    const char *name;         /* the event name, unescaped, NUL-terminated (NULL for an ack) */
    const char *args;         /* the argument list ("" when there are none) */
    size_t args_len;          /* (args is not NUL-terminated) */
    const eddy_rt_bin_t *bin; /* binary attachments, placeholder num order */
    size_t nbin;
    int64_t ack_id; /* >= 0: the client waits for eddy_rt_ack(); -1: it does not */
} eddy_rt_event_t;

/* A named event's handler. */
typedef void (*eddy_rt_event_cb)(eddy_rt_socket_t *s, const eddy_rt_event_t *ev, void *user_data);

/*
 * What an emit carries. event: the name (UTF-8, escaped by eddy). args: the argument list
 * (see the top of this file; copied as is: the application vouches for its JSON) of
 * args_len bytes (0: no arguments). bin: attachments the placeholders in args
 * refer to (nbin at most max_attachments, and at most 63). flags: EDDY_RT_VOLATILE,
 * EDDY_RT_COMPRESS.
 */
typedef struct eddy_rt_msg {
    const char *event;
    const char *args;
    size_t args_len;
    const eddy_rt_bin_t *bin;
    size_t nbin;
    int flags;
} eddy_rt_msg_t;

enum eddy_rt_flag {
    EDDY_RT_VOLATILE = 1 << 0, /* a recipient that is not ready does not get it (never queued) */
    EDDY_RT_COMPRESS = 1 << 1, /* permessage-deflate where the connection negotiated it */
};

/*
 * Emits to one socket (socket.emit). Returns 0, EDDY_QUEUED (the connection is behind:
 * back-pressure), EDDY_EDROPPED (volatile and not ready, or a slow consumer),
 * EDDY_ECLOSED (the socket disconnected), EDDY_EINVAL (args not an array, too many
 * attachments), EDDY_ETOOBIG, EDDY_ENOMEM.
 */
int eddy_rt_emit(eddy_rt_socket_t *s, const eddy_rt_msg_t *msg);

/* eddy_rt_emit() of event with args (a NUL-terminated argument list, or NULL):
 * eddy_rt_emit_json(s, "joined", "\"room1\",3"). */
int eddy_rt_emit_json(eddy_rt_socket_t *s, const char *event, const char *args);

/*
 * Answers a client's acknowledgement request ack_id (eddy_rt_event_t.ack_id) with an
 * argument list and attachments; msg->event is ignored. Once per ack id,
 * at any time while the socket is connected (keep a reference to answer later).
 * Returns as eddy_rt_emit(), and EDDY_EINVAL for a negative ack_id.
 */
int eddy_rt_ack(eddy_rt_socket_t *s, int64_t ack_id, const eddy_rt_msg_t *msg);

/* eddy_rt_ack() with args only (a NUL-terminated argument list, or NULL). */
int eddy_rt_ack_json(eddy_rt_socket_t *s, int64_t ack_id, const char *args);

/*
 * The answer to an emit with acknowledgement: status 0 and the client's answer (ev->name
 * NULL, ev->ack_id -1), or status -ETIMEDOUT and ev NULL when no answer came within the
 * timeout (also when the socket disconnected meanwhile, as in Socket.IO). Exactly one call
 * per emit that returned 0 or EDDY_QUEUED. It runs in the socket's context when the answer
 * arrives, or on the loop of the timer (the loop that emitted; loop 0 for an emit from an
 * application thread). s is borrowed for the call (it may have disconnected).
 */
typedef void (*eddy_rt_ack_cb)(eddy_rt_socket_t *s, int status, const eddy_rt_event_t *ev,
                               void *arg);

/*
 * Emits to one socket and waits timeout_ms (> 0) for its acknowledgement
 * (socket.timeout(ms).emit(event, ..., cb)); cb as above. Returns as eddy_rt_emit(); on
 * failure cb is not called.
 */
int eddy_rt_emit_ack(eddy_rt_socket_t *s, const eddy_rt_msg_t *msg, uint32_t timeout_ms,
                     eddy_rt_ack_cb cb, void *arg);

/* ---------------------------------------------------------------------------------------
 * Broadcasts: rooms, the whole namespace, users
 * ------------------------------------------------------------------------------------- */

/*
 * Whom a broadcast reaches: the union of the rooms and of every connection of the users
 * (each socket once), or the whole namespace when both lists are empty; minus the members
 * of the except rooms and minus except_socket (the sender, for socket.to(room).emit and
 * socket.broadcast.emit). Every pointer is borrowed for the call.
 */
typedef struct eddy_rt_to {
    const char *const *rooms;
    size_t nrooms;
    const char *const *users;
    size_t nusers;
    const char *const *except;
    size_t nexcept;
    const eddy_rt_socket_t *except_socket;
} eddy_rt_to_t;

/*
 * Emits msg to the sockets of nsp that to selects (to NULL: all of them). The packet is
 * encoded once per protocol variant and shared by every WebSocket recipient. Returns 0,
 * EDDY_EINVAL, EDDY_ETOOBIG or EDDY_ENOMEM; recipients that are slow consumers are
 * dropped or closed as the server's slow_consumer_policy says, silently for the caller.
 */
int eddy_rt_broadcast(eddy_rt_nsp_t *nsp, const eddy_rt_to_t *to, const eddy_rt_msg_t *msg);

/* One socket's answer to a broadcast with acknowledgement. Borrowed. */
typedef struct eddy_rt_ack_result {
    const char *socket_id;
    int status;                /* 0 or -ETIMEDOUT */
    const eddy_rt_event_t *ev; /* the answer when status is 0, else NULL */
    /* The node of the socket (eddy_rt_node_id()). With redis_url, an entry whose
     * socket_id is "" stands for a whole node that was alive but did not answer in time
     * (frozen, or its Redis connection stalled): its sockets are unknown (status
     * -ETIMEDOUT). */
    const char *node;
} eddy_rt_ack_result_t;

/*
 * Called once per broadcast with acknowledgement, when every recipient answered or the
 * timeout passed: results holds one entry per socket the broadcast reached (answers first,
 * in arrival order, then the sockets that did not answer). Runs on the loop of the last
 * answer, or where the timer fired. With redis_url it covers the sockets of every node
 * (README "Scale-out"): each node sends the broadcast to its own sockets, collects their
 * answers for timeout_ms and reports them; the callback runs on the layer's broker
 * thread once every node alive when the broadcast left reported (a node whose lease
 * lapses meanwhile is not waited for), or at timeout_ms plus 500 ms for transit; a node
 * that did not report by then gets one entry (see eddy_rt_ack_result_t.node).
 */
typedef void (*eddy_rt_broadcast_ack_cb)(eddy_rt_nsp_t *nsp, const eddy_rt_ack_result_t *results,
                                         size_t nresults, void *arg);

/*
 * A broadcast whose recipients are asked to acknowledge (io.timeout(ms).to(room).emit(...,
 * cb)): it reaches each socket as one packet with the same ack id (still encoded once).
 * cb runs once (with nresults 0 when nobody was reached). Returns 0, or as
 * eddy_rt_broadcast() (cb is then not called).
 */
int eddy_rt_broadcast_ack(eddy_rt_nsp_t *nsp, const eddy_rt_to_t *to, const eddy_rt_msg_t *msg,
                          uint32_t timeout_ms, eddy_rt_broadcast_ack_cb cb, void *arg);

/* ---------------------------------------------------------------------------------------
 * Namespaces
 * ------------------------------------------------------------------------------------- */

/*
 * A namespace's callbacks (each may be NULL). user_data is given to every one.
 *
 * connect: a client asks to join the namespace (Socket.IO middleware). s has its id; the
 *   handshake is readable with eddy_rt_socket_header(), _query() and _auth(). Return 0 to
 *   accept (after eddy_rt_socket_set_user() / _set_data() as needed), or
 *   eddy_rt_refuse(s, ...)'s value to refuse: the client gets CONNECT_ERROR with that
 *   message and does not retry. Return eddy_rt_defer(s) to decide later, from any
 *   thread, with eddy_rt_accept() or eddy_rt_refuse() (see eddy_rt_defer()). Any other
 *   non-zero value refuses with "refused".
 * connection: the socket joined (its CONNECT reply is sent); emit, join rooms here.
 * disconnecting: the socket is leaving (reason below); it is still in its rooms.
 * disconnect: it left its rooms; the last callback the socket gets. Reasons are
 *   Socket.IO's: "client namespace disconnect", "server namespace disconnect",
 *   "transport close", "transport error", "ping timeout", "parse error", "forced close",
 *   "server shutting down".
 * presence: s joined (joined true) or left room (also when it disconnects); runs where the
 *   join or leave happened. Not called for the socket's own room.
 * any: an event that has no handler of its own (eddy_rt_on()); without it such events are
 *   ignored (an ack they asked for is never answered, as in Socket.IO).
 */
typedef struct eddy_rt_handlers {
    int (*connect)(eddy_rt_socket_t *s, void *user_data);
    void (*connection)(eddy_rt_socket_t *s, void *user_data);
    void (*disconnecting)(eddy_rt_socket_t *s, const char *reason, void *user_data);
    void (*disconnect)(eddy_rt_socket_t *s, const char *reason, void *user_data);
    void (*presence)(eddy_rt_socket_t *s, const char *room, bool joined, void *user_data);
    eddy_rt_event_cb any;
    void *user_data;
} eddy_rt_handlers_t;

/*
 * The namespace name ("/chat"; leading '/' required, copied), created if it does not exist
 * yet. Clients asking for a namespace that was never created are refused with "Invalid
 * namespace", as Socket.IO does. Create namespaces before eddy_server_start() (any thread
 * later). Returns NULL on out-of-memory or a name not starting with '/'.
 */
eddy_rt_nsp_t *eddy_rt_of(eddy_rt_t *rt, const char *name);

/* Sets the namespace's callbacks (copied). Call before eddy_server_start(). */
void eddy_rt_nsp_set_handlers(eddy_rt_nsp_t *nsp, const eddy_rt_handlers_t *h);

/*
 * Sets the handler of the event name (copied) in nsp, replacing an earlier one; cb NULL
 * removes it. Call before eddy_server_start(). Returns 0, EDDY_EINVAL (a name Socket.IO
 * reserves: connect, connect_error, disconnect, disconnecting, newListener,
 * removeListener), EDDY_ENOMEM.
 */
int eddy_rt_on(eddy_rt_nsp_t *nsp, const char *event, eddy_rt_event_cb cb, void *user_data);

/* The namespace's name, its layer, and the number of its connected sockets. */
const char *eddy_rt_nsp_name(const eddy_rt_nsp_t *nsp);
eddy_rt_t *eddy_rt_nsp_rt(const eddy_rt_nsp_t *nsp);
size_t eddy_rt_nsp_count(eddy_rt_nsp_t *nsp);

/* ---------------------------------------------------------------------------------------
 * Sockets
 * ------------------------------------------------------------------------------------- */

/* Id (20 characters, NUL-terminated; also the name of its own room), namespace, protocol
 * (5 for Socket.IO v5 over Engine.IO 4, 4 for v4 over Engine.IO 3). */
const char *eddy_rt_socket_id(const eddy_rt_socket_t *s);
eddy_rt_nsp_t *eddy_rt_socket_nsp(const eddy_rt_socket_t *s);
int eddy_rt_socket_protocol(const eddy_rt_socket_t *s);
/* True while the socket is connected. */
bool eddy_rt_socket_connected(const eddy_rt_socket_t *s);
/* True if the socket was restored by connection state recovery (socket.recovered): it has
 * its earlier id, user id and rooms back, and got the events it missed before its CONNECT
 * reply; the connect hook did not run for it (Socket.IO's skipMiddlewares). */
bool eddy_rt_socket_recovered(const eddy_rt_socket_t *s);

/*
 * The handshake, as the client sent it when its session opened: a query parameter
 * (percent-decoded; NULL if absent), a request header (case-insensitive name; the first
 * one; NULL if absent), the remote address. Strings live as long as the socket. For a
 * v4 (Engine.IO 3) client the namespace's own query string counts as its auth.
 */
const char *eddy_rt_socket_query(const eddy_rt_socket_t *s, const char *name);
const char *eddy_rt_socket_header(const eddy_rt_socket_t *s, const char *name);
const char *eddy_rt_socket_remote_ip(const eddy_rt_socket_t *s);
/* The i-th (from 0) query parameter (header false) or request header (true) of the
 * handshake: *name and *value as the client sent them (query values percent-decoded), as
 * long-lived as those above. Returns 0, or EDDY_ENOTFOUND when i is out of range. */
int eddy_rt_socket_handshake_at(const eddy_rt_socket_t *s, bool header, size_t i, const char **name,
                                const char **value);
/*
 * The auth payload of the CONNECT packet, JSON object text ("{}" when the client sent
 * none), NUL-terminated; *len (may be NULL) gets its length. Valid during the connect
 * and connection callbacks only (NULL elsewhere).
 */
const char *eddy_rt_socket_auth(const eddy_rt_socket_t *s, size_t *len);

/*
 * The user id (copied; NULL clears it). The socket becomes addressable as one of the
 * user's connections (eddy_rt_to_t.users, eddy_rt_user_disconnect(), presence). Returns 0,
 * EDDY_ECLOSED, EDDY_ENOMEM. eddy_rt_socket_user() returns it (NULL if none; borrowed
 * while the socket lives and the id is not changed).
 */
int eddy_rt_socket_set_user(eddy_rt_socket_t *s, const char *user_id);
const char *eddy_rt_socket_user(const eddy_rt_socket_t *s);
/* Per-socket application data (borrowed, never freed by eddy). */
void eddy_rt_socket_set_data(eddy_rt_socket_t *s, void *data);
void *eddy_rt_socket_data(const eddy_rt_socket_t *s);

/* Refuses a connect (call from the connect callback and return its value): the client
 * gets CONNECT_ERROR {"message": message, "data": data} (data: JSON text or NULL).
 * Copies both. Returns a non-zero value meant to be returned by the connect callback.
 * Outside its connect callback it is the decision on a deferred connect (eddy_rt_defer()):
 * any thread; returns 0, EDDY_ECLOSED (not deferred, decided already, or the client left)
 * or EDDY_ENOMEM. */
int eddy_rt_refuse(eddy_rt_socket_t *s, const char *message, const char *data);

/*
 * Defers the decision on a connect, from inside the connect callback (and only there),
 * which returns what this returns: EDDY_PENDING (else EDDY_ESTATE: not in s's connect
 * callback; the callback returning it refuses). The CONNECT reply waits, and so does
 * everything the client sends meanwhile (copied, in order; at most max_http_buffer_size
 * bytes and 1024 messages, beyond which the client is closed), until eddy_rt_accept(s)
 * or eddy_rt_refuse(s, ...) is called, from any thread; then the client gets its reply
 * (and connection runs, with eddy_rt_socket_auth() NULL by then) or CONNECT_ERROR, and
 * what it sent is dispatched: connection and those events run on the thread that decides
 * (in the socket's context, so still one at a time), the later ones as usual. The decision must
 * come within connectTimeout if this is the client's first namespace (the client is closed then, as
 * one that joined none). Take a reference in the callback (eddy_rt_socket_ref()) to keep s until
 * the decision, and drop it after: s stays valid, and a decision after the client left, or a second
 * one, returns EDDY_ECLOSED and does nothing. eddy_rt_socket_set_user() and _set_data()
 * may be called until the decision (in the callback, or before eddy_rt_accept() on the
 * thread that decides).
 */
int eddy_rt_defer(eddy_rt_socket_t *s);
/* Accepts a deferred connect (eddy_rt_defer()). Any thread, but not from inside s's own
 * connect callback (return 0 there instead: the decision can only be taken once the
 * callback returned). Returns 0, EDDY_ECLOSED (not deferred yet, decided already, or the
 * client left) or EDDY_ENOMEM. */
int eddy_rt_accept(eddy_rt_socket_t *s);

/*
 * Joins or leaves room (copied). Joining twice is one membership; leaving a room the
 * socket is not in, or its own, does nothing. The presence callback runs. Returns 0,
 * EDDY_ECLOSED (not connected: still in its connect callback, where Socket.IO middleware
 * may join but eddy does not yet, or gone), EDDY_EINVAL (room NULL), EDDY_ENOMEM. Join
 * rooms from the connection callback on.
 */
int eddy_rt_join(eddy_rt_socket_t *s, const char *room);
int eddy_rt_leave(eddy_rt_socket_t *s, const char *room);
/* Calls visit for each room the socket is in, its own first; stop by returning false.
 * The names are borrowed for the call. Returns the number visited. The visitor must not
 * call eddy_rt functions (the tables are locked). */
size_t eddy_rt_socket_rooms(eddy_rt_socket_t *s, bool (*visit)(const char *room, void *arg),
                            void *arg);

/*
 * Disconnects the socket from its namespace (socket.disconnect()): the client gets
 * DISCONNECT and does not reconnect; disconnecting and disconnect run (reason "server
 * namespace disconnect"), on the calling thread. close_client also closes the client's
 * whole connection (socket.disconnect(true)). Returns 0 or EDDY_ECLOSED.
 */
int eddy_rt_disconnect(eddy_rt_socket_t *s, bool close_client);

/* References: keep a socket beyond its callbacks. Any thread. */
void eddy_rt_socket_ref(eddy_rt_socket_t *s);
void eddy_rt_socket_unref(eddy_rt_socket_t *s);
/* The connected socket of nsp with this id, referenced (unref it), or NULL. */
eddy_rt_socket_t *eddy_rt_socket_find(eddy_rt_nsp_t *nsp, const char *id);

/* ---------------------------------------------------------------------------------------
 * Users and presence
 *
 * The synchronous visits and counts below (eddy_rt_room_sockets(), _room_count(),
 * _room_user_count(), _user_sockets(), _user_online(), _user_disconnect()) see this
 * node's sockets only, also with redis_url: in a cluster a room's members on other nodes
 * are not visited or counted, and a user connected only to another node is not online
 * here. For the whole cluster use the asynchronous forms: eddy_rt_room_presence() (a
 * room's sockets and distinct users, with their nodes), eddy_rt_rooms() (every room with
 * its counts), eddy_rt_fetch_sockets() with to.users (a user's sockets on every node) and
 * eddy_rt_disconnect_sockets() with to.users (disconnect them). On one node both forms
 * give the same answer.
 * ------------------------------------------------------------------------------------- */

/* A member of a room or a connection of a user: borrowed for the visit. */
typedef struct eddy_rt_member {
    const char *socket_id;
    const char *user_id; /* NULL when the socket has none */
    eddy_rt_socket_t *socket;
} eddy_rt_member_t;

/* Visitor: return false to stop. It runs with the tables locked: it must not call
 * eddy_rt functions (copy what it needs, or take a reference with eddy_rt_socket_ref()). */
typedef bool (*eddy_rt_member_cb)(const eddy_rt_member_t *m, void *arg);

/* Calls visit for each socket of this node in room of nsp (a socket id names its own room).
 * Returns the number visited. Cluster-wide: eddy_rt_room_presence(). */
size_t eddy_rt_room_sockets(eddy_rt_nsp_t *nsp, const char *room, eddy_rt_member_cb visit,
                            void *arg);
/* Number of this node's sockets in room, and of distinct user ids among them.
 * Cluster-wide: eddy_rt_room_presence() (one room), eddy_rt_rooms() (every room). */
size_t eddy_rt_room_count(eddy_rt_nsp_t *nsp, const char *room);
size_t eddy_rt_room_user_count(eddy_rt_nsp_t *nsp, const char *room);
/* Calls visit for each connection of user_id in nsp on this node. Returns the number
 * visited. Cluster-wide: eddy_rt_fetch_sockets() with to.users. */
size_t eddy_rt_user_sockets(eddy_rt_nsp_t *nsp, const char *user_id, eddy_rt_member_cb visit,
                            void *arg);
/* True if user_id has a connected socket in nsp on this node (false when it is connected
 * to other nodes only). Cluster-wide: eddy_rt_fetch_sockets() with to.users. */
bool eddy_rt_user_online(eddy_rt_nsp_t *nsp, const char *user_id);
/*
 * History on join: calls visit for the newest n events kept for room (NULL: those emitted
 * to the whole namespace), oldest first, each with its offset (the position Socket.IO's
 * recovery uses, NUL-terminated); stop by returning false. ev and offset are borrowed for
 * the call; the visitor may call any eddy_rt function. Events emitted to a room are kept
 * only with history or recovery on (see eddy_rt_options_t). Returns the number visited.
 */
typedef bool (*eddy_rt_history_cb)(eddy_rt_nsp_t *nsp, const eddy_rt_event_t *ev,
                                   const char *offset, void *arg);
size_t eddy_rt_room_history(eddy_rt_nsp_t *nsp, const char *room, size_t n,
                            eddy_rt_history_cb visit, void *arg);

/*
 * History on join across nodes: the newest n (> 0) events kept for room (NULL: those
 * emitted to the whole namespace), oldest first, as eddy_rt_room_history() visits them,
 * but answered later and, with redis_url, read from Redis (the room's stream: events every
 * node emitted to it; see README "Scale-out") instead of this node's store. On one node it
 * answers from the local history. Volatile events are never listed.
 *
 * cb runs exactly once: with fd not 0, on the loop of connection fd (eddy_post()), or on
 * loop 0 if fd is gone by then (eddy_defer()); with fd 0, on the thread that has the
 * answer (the layer's broker thread with redis_url, the calling thread before the call
 * returns on one node), and it must then be quick. err: 0, EDDY_ECLOSED (Redis down, or
 * the layer being freed), EDDY_EPROTO (Redis refused; logged), EDDY_ENOMEM; entries[0..n)
 * (NULL when err is not 0) and everything they point to are borrowed for the call. A read
 * still waiting when eddy_rt_free() runs is answered EDDY_ECLOSED, possibly after it
 * returned: arg must outlive it. Any thread. Returns 0 (cb will run), EDDY_EINVAL (nsp or
 * cb NULL, n 0, a '}' in room with redis_url), EDDY_ENOMEM, EDDY_EDROPPED (the queue to
 * Redis is full; cb not called).
 */
typedef struct eddy_rt_history_entry {
    const eddy_rt_event_t *ev;
    const char *offset; /* its position, as eddy_rt_room_history() gives it */
} eddy_rt_history_entry_t;
typedef void (*eddy_rt_recent_cb)(eddy_rt_nsp_t *nsp, int err,
                                  const eddy_rt_history_entry_t *entries, size_t n, void *arg);
int eddy_rt_room_recent(eddy_rt_nsp_t *nsp, const char *room, size_t n, eddy_fd_t fd,
                        eddy_rt_recent_cb cb, void *arg);

/* Disconnects every connection of user_id in nsp on this node (eddy_rt_disconnect() on
 * each). Returns the number disconnected. Cluster-wide: eddy_rt_disconnect_sockets() with
 * to.users. */
size_t eddy_rt_user_disconnect(eddy_rt_nsp_t *nsp, const char *user_id, bool close_client);

/*
 * Presence across nodes (the same call on one node and in a cluster). The functions above
 * see this node's sockets only; these two answer for every node of the cluster (with
 * redis_url) from what the nodes recorded in Redis, and answer later, never blocking the
 * caller; no other node is asked:
 * - eddy_rt_room_presence(): the sockets of room (id, user id, node id) and its distinct
 *   user ids; a socket id names its own room (answered from this node's tables: a socket
 *   of another node is then not found);
 * - eddy_rt_rooms(): the rooms of nsp that have members on any node, each once with its
 *   number of sockets and of distinct users, every node's together. This is Socket.IO's
 *   io.of(nsp).adapter.allRooms(), except that sockets' own rooms (their ids) are not
 *   listed (eddy_rt_fetch_sockets() lists the sockets), and that a dead or frozen node
 *   never makes it fail or wait. It costs one Redis read of the namespace's rooms index,
 *   then one per room listed (the counts).
 * In a cluster each node records its sockets' memberships in Redis as they join and leave
 * (one write per join or leave, none per message; remote joins of eddy_rt_sockets_join()
 * included, where the socket's node applies them) under its lease. Joins and leaves reach
 * Redis asynchronously: an answer reflects those made on this node before the call (they
 * are queued ahead of the read), and another node's once its write reached Redis
 * (normally within a round trip of that node). The members of a node that stops renewing
 * its lease (kill -9, frozen) vanish from the answers when the lease runs out (3 s by
 * default: redis_heartbeat_timeout_ms), those of a node that stops cleanly at once; a node
 * records all its members again when Redis answers again after an outage. While Redis is
 * down (or does not answer) the answer is EDDY_ECLOSED with nothing, never this node's part
 * alone. node is NULL on one node.
 *
 * cb runs exactly once: with fd not 0, on the loop of connection fd (eddy_post()), or on
 * loop 0 if fd is gone by then (eddy_defer()), so a detached response of fd can be ended
 * there; with fd 0, on the thread that has the answer (the layer's broker thread in a
 * cluster, the calling thread before the call returns on one node), and it must then be
 * quick. What cb receives is borrowed for the call. err: 0, EDDY_ECLOSED (Redis could not
 * be asked or answer: down, or the layer is being freed), EDDY_EPROTO (Redis refused;
 * logged), EDDY_ENOMEM; the result is NULL (nothing) unless err is 0. A query still
 * waiting when eddy_rt_free() runs is answered EDDY_ECLOSED, possibly after it returned
 * (in eddy_server_free() with fd): arg must outlive it.
 * Any thread. Returns 0 (cb will run), EDDY_EINVAL (room or cb NULL), EDDY_ENOMEM,
 * EDDY_EDROPPED (the queue to Redis is full; cb not called).
 */
typedef struct eddy_rt_presence_socket {
    const char *socket_id;
    const char *user_id; /* NULL when the socket has none */
    const char *node;    /* the node holding it; NULL on one node */
} eddy_rt_presence_socket_t;
typedef struct eddy_rt_presence {
    const eddy_rt_presence_socket_t *sockets;
    size_t nsockets;
    const char *const *users; /* distinct user ids, sorted */
    size_t nusers;
} eddy_rt_presence_t;
typedef void (*eddy_rt_presence_cb)(int err, const eddy_rt_presence_t *presence, void *arg);
int eddy_rt_room_presence(eddy_rt_nsp_t *nsp, const char *room, eddy_fd_t fd,
                          eddy_rt_presence_cb cb, void *arg);

typedef struct eddy_rt_room_info {
    const char *name;
    size_t sockets; /* members, every node's */
    size_t users;   /* distinct user ids among them */
} eddy_rt_room_info_t;
/* rooms sorted by name; n 0 (rooms not NULL) when there is none. */
typedef void (*eddy_rt_rooms_cb)(int err, const eddy_rt_room_info_t *rooms, size_t n, void *arg);
int eddy_rt_rooms(eddy_rt_nsp_t *nsp, eddy_fd_t fd, eddy_rt_rooms_cb cb, void *arg);

/* ---------------------------------------------------------------------------------------
 * Across nodes (Socket.IO's io.in(room).socketsJoin(), socketsLeave(), disconnectSockets(),
 * fetchSockets(); adapter.allRooms() is eddy_rt_rooms() above). On a layer without
 * redis_url they act on this node's sockets; with it, on the sockets of every node of the
 * cluster (README "Scale-out"), and work the same.
 *
 * Selection: to as in eddy_rt_broadcast() (NULL: the whole namespace; except_socket is
 * sent as its id); pointers are borrowed for the call.
 *
 * Order: with redis_url a command goes through Redis to every node, this one included,
 * and each applies it to its own sockets when it arrives, in the order of this node's
 * broadcasts: a broadcast made after eddy_rt_sockets_join() returned reaches the sockets
 * it joined, on every node (this node holds its later broadcasts until every alive node
 * confirmed the join, at most 1 s: a frozen node delays them by that much), and one made
 * after eddy_rt_sockets_leave() or eddy_rt_disconnect_sockets() no longer reaches the
 * sockets they removed. While Redis is down they act on this node's sockets only.
 * ------------------------------------------------------------------------------------- */

/* Makes the selected sockets join (leave) rooms[0..nrooms) (each as eddy_rt_join() /
 * eddy_rt_leave(): presence callbacks run where the socket's node applies it). Returns 0
 * (done here; sent to the cluster), EDDY_EINVAL (nsp or a name NULL, a '}' in a room with
 * redis_url), EDDY_ENOMEM, EDDY_EDROPPED (Redis's queue is full: nothing done). */
int eddy_rt_sockets_join(eddy_rt_nsp_t *nsp, const eddy_rt_to_t *to, const char *const *rooms,
                         size_t nrooms);
int eddy_rt_sockets_leave(eddy_rt_nsp_t *nsp, const eddy_rt_to_t *to, const char *const *rooms,
                          size_t nrooms);
/* Disconnects the selected sockets (eddy_rt_disconnect() on each, close_client as there).
 * Returns as eddy_rt_sockets_join(). */
int eddy_rt_disconnect_sockets(eddy_rt_nsp_t *nsp, const eddy_rt_to_t *to, bool close_client);

/* A socket of the cluster (borrowed for the callback). */
typedef struct eddy_rt_socket_info {
    const char *id;
    const char *user_id;      /* NULL: none */
    const char *const *rooms; /* joined rooms (not its own) */
    size_t nrooms;
    const char *node; /* the node it is connected to (eddy_rt_node_id() there; "" on a
                       * layer without redis_url) */
} eddy_rt_socket_info_t;

/*
 * The answer of eddy_rt_fetch_sockets(): status 0, or EDDY_ECLOSED when Redis is down (only
 * this node's are listed); the sockets of the nodes that answered; missing[0..nmissing) the
 * ids of the nodes that were alive (by their leases) when the request left but did not
 * answer within timeout_ms (frozen, or slow): the answer is partial, never refused because
 * of one node. A node whose lease lapses meanwhile (killed) is named missing as soon as
 * that is seen. Everything is borrowed for the call. It runs once: without redis_url before
 * the call returns, on the calling thread; with it on the layer's broker thread (at the
 * latest during eddy_rt_free()): keep it short (it may call eddy_rt functions).
 */
typedef void (*eddy_rt_fetch_cb)(eddy_rt_nsp_t *nsp, int status,
                                 const eddy_rt_socket_info_t *sockets, size_t n,
                                 const char *const *missing, size_t nmissing, void *arg);

/* Lists the selected sockets of every node (fetchSockets()), waiting at most timeout_ms
 * (> 0) for the nodes. Returns 0 (cb will run), EDDY_EINVAL, EDDY_ENOMEM, EDDY_EDROPPED
 * (cb not called). */
int eddy_rt_fetch_sockets(eddy_rt_nsp_t *nsp, const eddy_rt_to_t *to, uint32_t timeout_ms,
                          eddy_rt_fetch_cb cb, void *arg);

/* ---------------------------------------------------------------------------------------
 * Reading JSON arguments in place
 * ------------------------------------------------------------------------------------- */

/* JSON value types (eddy_rt_arg()). */
enum eddy_rt_json_type {
    EDDY_RT_JSON_NONE = 0, /* no such argument */
    EDDY_RT_JSON_NULL,
    EDDY_RT_JSON_FALSE,
    EDDY_RT_JSON_TRUE,
    EDDY_RT_JSON_NUMBER,
    EDDY_RT_JSON_STRING,
    EDDY_RT_JSON_ARRAY,
    EDDY_RT_JSON_OBJECT,
    EDDY_RT_JSON_BINARY, /* a placeholder: the attachment is ev->bin[num] */
};

/* Number of arguments in ev->args. */
size_t eddy_rt_arg_count(const eddy_rt_event_t *ev);
/*
 * The i-th argument (from 0): its type, and in *json and *len (either may be NULL) the span
 * of its JSON text inside ev->args (strings with their quotes). For EDDY_RT_JSON_BINARY
 * *json and *len are the attachment's bytes. EDDY_RT_JSON_NONE when i is out of range.
 */
int eddy_rt_arg(const eddy_rt_event_t *ev, size_t i, const char **json, size_t *len);
/*
 * Unescapes the i-th argument, a JSON string, into buf (cap bytes, NUL-terminated).
 * Returns its length, EDDY_EINVAL if it is not a string, EDDY_ETOOBIG if buf is too small.
 */
ssize_t eddy_rt_arg_string(const eddy_rt_event_t *ev, size_t i, char *buf, size_t cap);
/*
 * Finds member key of the JSON object text obj (obj_len bytes): its type, and in *val and *len
 * (either may be NULL) the span of its JSON text. EDDY_RT_JSON_NONE when obj is not an
 * object or has no such member. For auth payloads: eddy_rt_json_member(auth, n, "token",
 * ...).
 */
int eddy_rt_json_member(const char *obj, size_t obj_len, const char *key, const char **val,
                        size_t *len);

#if defined(__GNUC__) && __GNUC__ >= 4
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif

#endif /* EDDY_RT_H */

/* SPDX-License-Identifier: MIT */
/*
 * The real-time layer's model (include/eddy_rt.h): namespaces, sockets, rooms, users,
 * presence, emits and acknowledgements, and Socket.IO's packet semantics over Engine.IO
 * sessions (rt/eio.h). Packets are decoded and encoded by rt/sio_packet.c.
 *
 * Tables. One mutex (rt->lock) guards the shared tables: rooms (by namespace and name),
 * users (by namespace and id), sockets by id, each namespace's socket list and each
 * socket's memberships. It is taken per join, leave, connect, disconnect and broadcast,
 * never per recipient, and never held while an application callback runs (except the
 * visitors of the member listings, documented as such). Pending acknowledgements have a
 * table of their own behind rt->ack_lock, a leaf lock.
 *
 * Fan-out (rt-design.md "Fan-out"). A socket on WebSocket subscribes its connection to one
 * engine topic per room it is in, one for its namespace and one for its user id; topic
 * names start with the protocol variant ('4' or '3': their binary frames differ) and a
 * kind byte. A broadcast is encoded once (the final WebSocket text payload, '4' included)
 * and published once to the union of its topics with eddy_publish_parts(); sockets still
 * on long-polling are not subscribers, so the broadcast also walks the polling members of
 * its rooms (counted per room, so a room without any costs nothing) and sends to each
 * through eio_send(). A socket's own room (its id) is not a topic: an emit to it is a
 * direct send. Joining while on long-polling only records the membership; the upgrade to
 * WebSocket subscribes every recorded room, under the table lock so that a broadcast sees
 * each socket either as a polling member or as a subscriber, never both or neither.
 *
 * Contexts. Engine.IO serialises the callbacks of one session; the layer adds one mutex per
 * client (c->lock), held while it dispatches the client's packets and while a timer or
 * another thread acts on the client's sockets, so the application sees one socket's
 * callbacks one at a time. A thread-local records the client being dispatched, so calls
 * the application makes on its own socket do not lock again. Lock order: client, then the
 * table lock, then the ack lock; a call on another client's socket from inside a
 * dispatch only try-locks it and otherwise finishes from a deferred call, so two clients
 * acting on each other cannot deadlock.
 */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "eddy_rt.h"
#include "eio.h"
#include "rt_cluster.h"
#include "rt_grow.h"
#include "rt_history.h"
#include "rt_json.h"
#include "rt_lock.h"
#include "rt_stats.h"
#include "rt_xnode.h"
#include "sio_packet.h"

/* ---------------------------------------------------------------------------------------
 * Intrusive hash table (chained, power-of-two buckets)
 * ------------------------------------------------------------------------------------- */

typedef struct rt_hnode {
    struct rt_hnode *next;
    uint64_t hash;
} rt_hnode_t;

typedef struct rt_hmap {
    rt_hnode_t **slots;
    size_t nslots;
    size_t count;
} rt_hmap_t;

static uint64_t fnv(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static uint64_t key_hash(const void *scope, const char *name, size_t len)
{
    return fnv(fnv(0xcbf29ce484222325ull, &scope, sizeof(scope)), name, len);
}

static rt_hnode_t *hmap_first(const rt_hmap_t *m, uint64_t hash)
{
    return m->nslots ? m->slots[hash & (m->nslots - 1)] : NULL;
}

static int hmap_insert(rt_hmap_t *m, rt_hnode_t *n)
{
    if (m->count >= m->nslots) {
        size_t nslots = m->nslots ? m->nslots * 2 : 16;
        rt_hnode_t **slots = calloc(nslots, sizeof(*slots));
        if (slots == NULL)
            return EDDY_ENOMEM;
        for (size_t i = 0; i < m->nslots; i++) {
            for (rt_hnode_t *it = m->slots[i], *next; it != NULL; it = next) {
                next = it->next;
                it->next = slots[it->hash & (nslots - 1)];
                slots[it->hash & (nslots - 1)] = it;
            }
        }
        free(m->slots);
        m->slots = slots;
        m->nslots = nslots;
    }
    rt_hnode_t **slot = &m->slots[n->hash & (m->nslots - 1)];
    n->next = *slot;
    *slot = n;
    m->count++;
    return 0;
}

static void hmap_remove(rt_hmap_t *m, rt_hnode_t *n)
{
    for (rt_hnode_t **it = &m->slots[n->hash & (m->nslots - 1)]; *it != NULL; it = &(*it)->next) {
        if (*it == n) {
            *it = n->next;
            m->count--;
            return;
        }
    }
}

#define CONTAINER(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* ---------------------------------------------------------------------------------------
 * Types
 * ------------------------------------------------------------------------------------- */

typedef struct rt_member rt_member_t;

typedef struct rt_room {
    rt_hnode_t node;
    eddy_rt_nsp_t *nsp;
    rt_member_t *members;
    size_t count;
    size_t npolling; /* members not on WebSocket (not topic subscribers) */
    size_t name_len;
    char name[];
} rt_room_t;

struct rt_member {
    rt_room_t *room;
    eddy_rt_socket_t *socket;
    rt_member_t *room_prev, *room_next;
    rt_member_t *sock_next;
};

typedef struct rt_user {
    rt_hnode_t node;
    eddy_rt_nsp_t *nsp;
    eddy_rt_socket_t *sockets;
    size_t count;
    uint64_t mark;
    char id[];
} rt_user_t;

typedef struct rt_handler {
    char *name;
    size_t len;
    eddy_rt_event_cb cb;
    void *user_data;
} rt_handler_t;

struct eddy_rt_nsp {
    eddy_rt_t *rt;
    eddy_rt_nsp_t *next;
    eddy_rt_handlers_t h;
    rt_handler_t *handlers;
    size_t nhandlers;
    eddy_rt_socket_t *sockets; /* connected sockets (table lock) */
    size_t count;
    size_t npolling;
    rt_history_t *hist; /* connection state recovery (NULL: off) */
    uint64_t epoch;
    size_t name_len;
    char name[];
};

/* The handshake of a client, stored right after it (one allocation): the remote address
 * ("ip\0"), then decoded query parameters and headers as "name\0value\0" pairs; a header
 * name of hs_names[] is stored as one byte instead, its index + 1 (see hs_code()). */
typedef struct rt_handshake {
    uint16_t nquery;
    uint16_t nheaders;
    char pairs[];
} rt_handshake_t;

/* A BINARY_EVENT or BINARY_ACK waiting for its attachments: the packet text and the
 * attachments received so far, copied (the engine's buffers are borrowed). */
typedef struct rt_binary {
    char *text;
    size_t text_len;
    size_t expected;
    size_t received;
    size_t bytes;
    eddy_rt_bin_t bin[];
} rt_binary_t;

/* Laid out without holes: there is one per connection. */
typedef struct rt_client {
    eddy_rt_t *rt;
    eio_session_t *session;     /* NULL once the Engine.IO session closed (send_lock) */
    rt_lock_t lock;             /* the client's context (see "Contexts") */
    rt_lock_t send_lock;        /* keeps session alive for senders outside the context */
    atomic_uint_fast64_t ws_fd; /* the WebSocket once on one: sends go straight to it */
    pthread_t timer_thread;     /* the loop thread the connect timer runs on */
    eddy_fd_t open_fd;          /* a WebSocket session whose handshake is not done yet */
    /* Closed while its connect timer was still armed on another loop: listed in the layer
     * until the timer fires (or the layer is freed, if it never does). Listed: orphan_prev
     * is set or it heads the list (table lock). */
    struct rt_client *orphan_prev, *orphan_next;
    struct rt_client *opening_next;
    atomic_int refs;
    uint8_t protocol; /* Engine.IO 3 or 4 */
    bool counted_ws;  /* counted as on WebSocket (eddy_rt_stats()); in the client's callbacks */
    atomic_bool ws;   /* on WebSocket */
    atomic_bool joined_once;
    uint64_t connect_timer;
    eddy_rt_socket_t *sockets; /* connected sockets, one per namespace (under lock) */
    eddy_rt_socket_t *closed;  /* disconnected in this context, released when it is left */
    rt_binary_t *binary;
    struct rt_pending *pending; /* a connect waiting for its decision (eddy_rt_defer()) */
} rt_client_t;

/* The client's copy of its handshake, stored right after it (client_new()). */
static inline rt_handshake_t *client_hs(const rt_client_t *c)
{
    return (rt_handshake_t *)(c + 1);
}

/* One per connection and namespace: it keeps to its malloc class (asserted below). */
struct eddy_rt_socket {
    char id[24];
    atomic_int refs;
    atomic_bool connected;
    bool ws; /* a topic subscriber (table lock) */
    bool recovered;
    bool in_connect;      /* the connect hook is running (client context) */
    atomic_bool deferred; /* eddy_rt_defer(): the decision is not made yet */
    rt_client_t *client;
    eddy_rt_nsp_t *nsp;
    eddy_rt_socket_t *client_next;
    eddy_rt_socket_t *nsp_prev, *nsp_next;
    rt_hnode_t id_node;
    rt_member_t *rooms;
    rt_user_t *user;
    eddy_rt_socket_t *user_prev, *user_next;
    void *data;
    uint64_t mark;
    uint64_t dl_mark; /* cluster: rt_cluster_mark() at its connect */
    /* With recovery on (recovering()), two RT_HISTORY_PID_SIZE arrays after the socket (one
     * allocation): pid, its session record in the store, then the pid its client knows
     * (socket_cpid()). Otherwise pid is no_pid, never written. */
    char *pid;
    /* During the connect and connection callbacks only. */
    const char *auth;
    size_t auth_len;
    char *refusal;
};

/* One of each per connection: the idle budget (at most 1 KiB of memory per handshaken
 * Socket.IO connection, `bench/socketio/run idle`) holds only while they stay in their
 * malloc size classes (with malloc's 8 bytes, 128 and 192 on LP64). */
_Static_assert(sizeof(void *) != 8 || sizeof(rt_client_t) <= 120, "rt_client_t grew a class");
_Static_assert(sizeof(void *) != 8 || sizeof(eddy_rt_socket_t) <= 184,
               "eddy_rt_socket grew a class");

static const char no_pid[RT_HISTORY_PID_SIZE];

/* The pid s's client knows (see rt_alias_t): the array after s->pid, or no_pid. */
static inline char *socket_cpid(const eddy_rt_socket_t *s)
{
    return s->pid == no_pid ? (char *)no_pid : s->pid + RT_HISTORY_PID_SIZE;
}

/* socket.io-client counts a reconnection as recovered only if the CONNECT reply carries the
 * pid it sent, while the store hands out a fresh pid with each record: a recovered socket
 * keeps telling its client the first pid, and this alias leads from it to the current
 * record. It lives while the socket is connected, then as long as a record would. */
typedef struct rt_alias {
    rt_hnode_t node;
    uint64_t expires_ms; /* 0 while the socket is connected */
    char cpid[RT_HISTORY_PID_SIZE];
    char pid[RT_HISTORY_PID_SIZE];
} rt_alias_t;

/* A pending acknowledgement: one socket, or a broadcast's recipients. */
typedef struct rt_ack_answer {
    eddy_rt_socket_t *socket;
    int status;
    char *args;
    size_t args_len;
    eddy_rt_bin_t *bin;
    size_t nbin;
    size_t order;
} rt_ack_answer_t;

typedef struct rt_ack {
    rt_hnode_t node;
    uint64_t id;
    uint64_t timer;
    eddy_rt_nsp_t *nsp;
    eddy_rt_ack_cb cb;
    eddy_rt_broadcast_ack_cb bcb;
    void *arg;
    size_t n;
    size_t remaining;
    rt_ack_answer_t answers[];
} rt_ack_t;

struct eddy_rt {
    eddy_server_t *srv;
    eddy_rt_options_t opt;
    char *path;
    eio_server_t *eio;
    eddy_request_cb fallback;
    void *user_data;
    pthread_mutex_t lock;
    eddy_rt_nsp_t *nsps;
    rt_hmap_t rooms;
    rt_hmap_t users;
    rt_hmap_t sockets;
    uint64_t mark;
    pthread_mutex_t ack_lock;
    rt_hmap_t acks;
    atomic_uint_fast64_t next_ack;
    unsigned index;            /* in rt_registry */
    rt_hmap_t aliases;         /* rt_alias_t by client pid (table lock) */
    struct rt_client *orphans; /* see rt_client_t.orphan_prev (table lock) */
    bool freeing;              /* eddy_rt_free(): the server is gone, sessions close without it */
    rt_cluster_t *cluster;     /* scale-out (rt_cluster.h); NULL: one node */
    rt_stats_t *stats;
};

/* Counts one `which` (rt_stats.h): no lock, no allocation. */
#define COUNT(rt, which) rt_stat_add((rt)->stats, (rt)->srv, (which))

static _Thread_local rt_client_t *tls_current;
/* WebSocket sessions of this loop between Engine.IO's open handler (called before the
 * 101) and the engine's open event: until then the connection cannot take pushes nor
 * subscriptions, so the client sends through eio_send(), which queues. */
static _Thread_local rt_client_t *tls_opening;

/* Layers by index, for acknowledgement timers: their argument is (id << 4 | index), not a
 * pointer, because an answer on another loop may free the entry while its timer is about
 * to fire; the timer looks the id up instead (a cleared timer may still run). */
#define RT_MAX_LAYERS 16
static eddy_rt_t *_Atomic rt_registry[RT_MAX_LAYERS];

/* ---------------------------------------------------------------------------------------
 * Scratch buffers: one per thread, reused, so encoding allocates nothing per message
 * ------------------------------------------------------------------------------------- */

typedef struct rt_scratch {
    char *p;
    size_t cap;
} rt_scratch_t;

static _Thread_local rt_scratch_t tls_out, tls_topics, tls_bin3, tls_store, tls_off;

/* The buffers of a thread go when it exits (a loop thread at server stop): a key whose
 * destructor runs on the exiting thread, set on the thread's first allocation. */
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_release(void *unused)
{
    rt_scratch_t *all[] = {&tls_out, &tls_topics, &tls_bin3, &tls_store, &tls_off};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        free(all[i]->p);
        *all[i] = (rt_scratch_t){NULL, 0};
    }
}

static void scratch_key_init(void)
{
    pthread_key_create(&scratch_key, scratch_release);
}

static char *scratch(rt_scratch_t *s, size_t need)
{
    if (need > s->cap) {
        pthread_once(&scratch_once, scratch_key_init);
        if (pthread_getspecific(scratch_key) == NULL)
            pthread_setspecific(scratch_key, s);
        if (rt_grow(&s->p, &s->cap, need) != 0)
            return NULL;
    }
    return s->p;
}

/* ---------------------------------------------------------------------------------------
 * Clients and sockets: references and contexts
 * ------------------------------------------------------------------------------------- */

static void client_unref(rt_client_t *c)
{
    if (atomic_fetch_sub(&c->refs, 1) != 1)
        return;
    if (c->binary != NULL) {
        for (size_t i = 0; i < c->binary->received; i++)
            free((void *)c->binary->bin[i].data);
        free(c->binary->text);
        free(c->binary);
    }
    free(c);
}

void eddy_rt_socket_ref(eddy_rt_socket_t *s)
{
    atomic_fetch_add(&s->refs, 1);
}

void eddy_rt_socket_unref(eddy_rt_socket_t *s)
{
    if (s == NULL || atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    client_unref(s->client);
    free(s->refusal);
    free(s);
}

typedef struct rt_ctx {
    rt_client_t *prev;
    bool locked;
} rt_ctx_t;

/* Enters c's context (see "Contexts" above). Returns false only with try set, when c is
 * busy elsewhere. */
static bool client_enter(rt_client_t *c, rt_ctx_t *ctx, bool try)
{
    ctx->prev = tls_current;
    ctx->locked = tls_current != c;
    if (!ctx->locked)
        return true;
    if (try) {
        if (!rt_lock_try(&c->lock))
            return false;
    } else {
        rt_lock(&c->lock);
    }
    tls_current = c;
    return true;
}

/* Leaves c's context. Sockets that disconnected in it lose the client's reference only
 * now, so that a callback that disconnected its own socket may still call functions on it
 * (they answer EDDY_ECLOSED) until it returns. The last reference may free c. */
static void client_leave(rt_client_t *c, rt_ctx_t *ctx)
{
    if (!ctx->locked)
        return;
    eddy_rt_socket_t *closed = c->closed;
    c->closed = NULL;
    tls_current = ctx->prev;
    rt_unlock(&c->lock);
    for (eddy_rt_socket_t *s = closed, *next; s != NULL; s = next) {
        next = s->client_next;
        eddy_rt_socket_unref(s);
    }
}

static int bin3_parts(const eddy_rt_bin_t *bin, size_t nbin, eddy_part_t *parts);

/* Sends one Engine.IO message made of parts (text first, '4' included) to c. On WebSocket
 * it goes straight to the connection (an id is never reused, so a stale one fails
 * harmlessly): no lock. On long-polling through Engine.IO, which buffers it for the next
 * GET; outside c's context send_lock keeps the session from being freed meanwhile (the
 * close handler clears it under that lock). */
static int client_send(rt_client_t *c, const eio_part_t *parts, size_t nparts, int flags)
{
    eddy_fd_t fd = atomic_load(&c->ws_fd);
    if (fd != 0) {
        eddy_part_t wp[1 + 64];
        if (nparts > sizeof(wp) / sizeof(wp[0]))
            return EDDY_EINVAL;
        wp[0] = (eddy_part_t){parts[0].data, parts[0].len, EDDY_WS_OPCODE_TEXT};
        for (size_t i = 1; i < nparts; i++)
            wp[i] = (eddy_part_t){parts[i].data, parts[i].len, EDDY_WS_OPCODE_BINARY};
        if (c->protocol == 3 && nparts > 1) {
            eddy_rt_bin_t bin[64];
            for (size_t i = 1; i < nparts; i++)
                bin[i - 1] = (eddy_rt_bin_t){parts[i].data, parts[i].len};
            int rc = bin3_parts(bin, nparts - 1, wp + 1);
            if (rc != 0)
                return rc;
        }
        int rc = eddy_push_parts(c->rt->srv, fd, wp, nparts,
                                 (flags & EIO_SEND_VOLATILE) ? EDDY_WS_FLAG_VOLATILE : 0);
        return rc == EDDY_ENOTFOUND || rc == EDDY_ESTATE ? EDDY_ECLOSED : rc;
    }
    bool own = tls_current == c;
    if (!own)
        rt_lock(&c->send_lock);
    int rc = c->session != NULL ? eio_send(c->session, parts, nparts, flags | EIO_SEND_PREFIXED)
                                : EDDY_ECLOSED;
    if (!own)
        rt_unlock(&c->send_lock);
    return rc;
}

/* A new socket id: 20 characters, as Socket.IO's. In cluster mode the first
 * RT_BROKER_SOCKET_TAG_LEN name this node (its socket tag: one broker subscription per
 * namespace receives the emits to all its sockets' ids) and the other 14 are random (84
 * bits); else all 20 are random. */
static void socket_id_new(eddy_rt_t *rt, char id[static 21])
{
    if (rt->cluster == NULL) {
        rt_random_chars(id, 20);
        id[20] = '\0';
        return;
    }
    rt_broker_socket_tag(rt_broker_node_id(rt_cluster_broker(rt->cluster)), id);
    rt_random_chars(id + RT_BROKER_SOCKET_TAG_LEN, 20 - RT_BROKER_SOCKET_TAG_LEN);
    id[20] = '\0';
}

/* ---------------------------------------------------------------------------------------
 * Topics
 * ------------------------------------------------------------------------------------- */

enum { TOPIC_NSP = 'n', TOPIC_ROOM = 'r', TOPIC_USER = 'u' };

/* "<variant><kind><nsp>\x1f<name>" into buf (cap bytes). Returns its length, or 0 when it
 * does not fit. */
static size_t topic_name(char *buf, size_t cap, int variant, int kind, const eddy_rt_nsp_t *nsp,
                         const char *name, size_t name_len)
{
    size_t need = 2 + nsp->name_len + 1 + name_len + 1;
    if (need > cap)
        return 0;
    buf[0] = (char)('0' + variant);
    buf[1] = (char)kind;
    memcpy(buf + 2, nsp->name, nsp->name_len);
    buf[2 + nsp->name_len] = '\x1f';
    memcpy(buf + 3 + nsp->name_len, name, name_len);
    buf[need - 1] = '\0';
    return need - 1;
}

static void topic_sub(eddy_rt_socket_t *s, int kind, const char *name, size_t len, bool on)
{
    if (s->nsp->rt->freeing)
        return;
    char stack[256];
    size_t need = 2 + s->nsp->name_len + 1 + len + 1;
    char *buf = need <= sizeof(stack) ? stack : malloc(need);
    if (buf == NULL)
        return;
    topic_name(buf, need, s->client->protocol == 3 ? 3 : 4, kind, s->nsp, name, len);
    eddy_fd_t fd = atomic_load(&s->client->ws_fd);
    if (fd != 0) {
        if (on)
            eddy_subscribe(s->nsp->rt->srv, fd, buf);
        else
            eddy_unsubscribe(s->nsp->rt->srv, fd, buf);
    }
    if (buf != stack)
        free(buf);
}

/* Subscribes (or unsubscribes) every topic of s: namespace, rooms, user. Table lock held. */
static void socket_topics(eddy_rt_socket_t *s, bool on)
{
    topic_sub(s, TOPIC_NSP, "", 0, on);
    for (rt_member_t *m = s->rooms; m != NULL; m = m->sock_next)
        topic_sub(s, TOPIC_ROOM, m->room->name, m->room->name_len, on);
    if (s->user != NULL)
        topic_sub(s, TOPIC_USER, s->user->id, strlen(s->user->id), on);
}

/* ---------------------------------------------------------------------------------------
 * Tables (rt->lock held)
 * ------------------------------------------------------------------------------------- */

static rt_room_t *room_find(eddy_rt_t *rt, eddy_rt_nsp_t *nsp, const char *name, size_t len)
{
    uint64_t h = key_hash(nsp, name, len);
    for (rt_hnode_t *it = hmap_first(&rt->rooms, h); it != NULL; it = it->next) {
        rt_room_t *r = CONTAINER(it, rt_room_t, node);
        if (it->hash == h && r->nsp == nsp && r->name_len == len && memcmp(r->name, name, len) == 0)
            return r;
    }
    return NULL;
}

static rt_user_t *user_find(eddy_rt_t *rt, eddy_rt_nsp_t *nsp, const char *id)
{
    size_t len = strlen(id);
    uint64_t h = key_hash(nsp, id, len);
    for (rt_hnode_t *it = hmap_first(&rt->users, h); it != NULL; it = it->next) {
        rt_user_t *u = CONTAINER(it, rt_user_t, node);
        if (it->hash == h && u->nsp == nsp && strcmp(u->id, id) == 0)
            return u;
    }
    return NULL;
}

static eddy_rt_socket_t *socket_by_id(eddy_rt_t *rt, const char *id, size_t len)
{
    uint64_t h = key_hash(NULL, id, len);
    for (rt_hnode_t *it = hmap_first(&rt->sockets, h); it != NULL; it = it->next) {
        eddy_rt_socket_t *s = CONTAINER(it, eddy_rt_socket_t, id_node);
        if (it->hash == h && strlen(s->id) == len && memcmp(s->id, id, len) == 0)
            return s;
    }
    return NULL;
}

static bool socket_in_room(const eddy_rt_socket_t *s, const rt_room_t *r)
{
    for (rt_member_t *m = s->rooms; m != NULL; m = m->sock_next) {
        if (m->room == r)
            return true;
    }
    return false;
}

static void cluster_presence(eddy_rt_socket_t *s, const rt_room_t *r, bool on);

/* Adds s to room name. Returns 1 (joined), 0 (already a member), or EDDY_ENOMEM. */
static int room_add(eddy_rt_socket_t *s, const char *name, size_t len)
{
    eddy_rt_t *rt = s->nsp->rt;
    rt_room_t *r = room_find(rt, s->nsp, name, len);
    if (r != NULL && socket_in_room(s, r))
        return 0;
    rt_member_t *m = malloc(sizeof(*m));
    if (m == NULL)
        return EDDY_ENOMEM;
    if (r == NULL) {
        r = calloc(1, sizeof(*r) + len + 1);
        if (r == NULL) {
            free(m);
            return EDDY_ENOMEM;
        }
        r->nsp = s->nsp;
        r->name_len = len;
        memcpy(r->name, name, len);
        r->node.hash = key_hash(s->nsp, name, len);
        if (hmap_insert(&rt->rooms, &r->node) != 0) {
            free(r);
            free(m);
            return EDDY_ENOMEM;
        }
        if (rt->cluster != NULL)
            rt_cluster_interest(rt->cluster, s->nsp->name, r->name, false, true);
    }
    *m = (rt_member_t){.room = r, .socket = s, .room_next = r->members, .sock_next = s->rooms};
    if (r->members != NULL)
        r->members->room_prev = m;
    r->members = m;
    s->rooms = m;
    r->count++;
    if (rt->cluster != NULL)
        cluster_presence(s, r, true);
    if (!s->ws)
        r->npolling++;
    else
        topic_sub(s, TOPIC_ROOM, name, len, true);
    return 1;
}

static void member_unlink(rt_member_t *m)
{
    rt_room_t *r = m->room;
    eddy_rt_socket_t *s = m->socket;
    if (m->room_prev != NULL)
        m->room_prev->room_next = m->room_next;
    else
        r->members = m->room_next;
    if (m->room_next != NULL)
        m->room_next->room_prev = m->room_prev;
    r->count--;
    if (s->nsp->rt->cluster != NULL)
        cluster_presence(s, r, false);
    if (!s->ws)
        r->npolling--;
    if (r->count == 0) {
        hmap_remove(&s->nsp->rt->rooms, &r->node);
        if (s->nsp->rt->cluster != NULL)
            rt_cluster_interest(s->nsp->rt->cluster, s->nsp->name, r->name, false, false);
        free(r);
    }
    free(m);
}

/* Removes s from room name. Returns true if it was a member. */
static bool room_del(eddy_rt_socket_t *s, const char *name, size_t len)
{
    for (rt_member_t **it = &s->rooms; *it != NULL; it = &(*it)->sock_next) {
        rt_member_t *m = *it;
        if (m->room->name_len == len && memcmp(m->room->name, name, len) == 0) {
            *it = m->sock_next;
            if (s->ws)
                topic_sub(s, TOPIC_ROOM, name, len, false);
            member_unlink(m);
            return true;
        }
    }
    return false;
}

static void user_unlink(eddy_rt_socket_t *s)
{
    rt_user_t *u = s->user;
    if (u == NULL)
        return;
    if (s->ws)
        topic_sub(s, TOPIC_USER, u->id, strlen(u->id), false);
    if (s->user_prev != NULL)
        s->user_prev->user_next = s->user_next;
    else
        u->sockets = s->user_next;
    if (s->user_next != NULL)
        s->user_next->user_prev = s->user_prev;
    s->user = NULL;
    s->user_prev = s->user_next = NULL;
    if (--u->count == 0) {
        hmap_remove(&s->nsp->rt->users, &u->node);
        if (s->nsp->rt->cluster != NULL)
            rt_cluster_interest(s->nsp->rt->cluster, s->nsp->name, u->id, true, false);
        free(u);
    }
}

static int user_link(eddy_rt_socket_t *s, const char *id)
{
    eddy_rt_t *rt = s->nsp->rt;
    rt_user_t *u = user_find(rt, s->nsp, id);
    if (u == NULL) {
        size_t len = strlen(id);
        u = calloc(1, sizeof(*u) + len + 1);
        if (u == NULL)
            return EDDY_ENOMEM;
        u->nsp = s->nsp;
        memcpy(u->id, id, len);
        u->node.hash = key_hash(s->nsp, id, len);
        if (hmap_insert(&rt->users, &u->node) != 0) {
            free(u);
            return EDDY_ENOMEM;
        }
        if (rt->cluster != NULL)
            rt_cluster_interest(rt->cluster, s->nsp->name, u->id, true, true);
    }
    s->user = u;
    s->user_prev = NULL;
    s->user_next = u->sockets;
    if (u->sockets != NULL)
        u->sockets->user_prev = s;
    u->sockets = s;
    u->count++;
    if (s->ws)
        topic_sub(s, TOPIC_USER, id, strlen(id), true);
    return 0;
}

/* Presence across nodes: s's membership of r as the broker records it (info: its user id).
 * r->count is already updated: the room is listed by its first local member, unlisted by
 * its last. Table lock held (so the broker gets a join before its leave). */
static void cluster_presence(eddy_rt_socket_t *s, const rt_room_t *r, bool on)
{
    rt_cluster_presence(s->nsp->rt->cluster, s->nsp->name, r->name, s->id,
                        s->user != NULL ? s->user->id : NULL, on, r->count == (on ? 1u : 0u));
}

/* s's user id changed: its memberships are recorded again with it. Table lock held. */
static void cluster_presence_user(eddy_rt_socket_t *s)
{
    if (s->nsp->rt->cluster == NULL)
        return;
    for (rt_member_t *m = s->rooms; m != NULL; m = m->sock_next)
        rt_cluster_presence(s->nsp->rt->cluster, s->nsp->name, m->room->name, s->id,
                            s->user != NULL ? s->user->id : NULL, true, false);
}

/* ---------------------------------------------------------------------------------------
 * Options, lifecycle
 * ------------------------------------------------------------------------------------- */

void eddy_rt_options_init(eddy_rt_options_t *opts)
{
    *opts = (eddy_rt_options_t){
        .path = "/socket.io/",
        .ping_interval_ms = 25000,
        .ping_timeout_ms = 20000,
        .upgrade_timeout_ms = 10000,
        .max_http_buffer_size = 1000000,
        .connect_timeout_ms = 45000,
        .allow_polling = true,
        .max_attachments = SIO_MAX_ATTACHMENTS_DEFAULT,
        .recovery_max_disconnection_ms = 0,
    };
}

static int on_eio_open(eio_session_t *es, eddy_request_t *req, void *ud);
static void on_eio_message(eio_session_t *es, const void *data, size_t len, bool binary, void *ud);
/* The client's transport is now the established WebSocket fd: its sockets become topic
 * subscribers and its sends go straight to the connection. In the client's context. */
static void client_to_ws(rt_client_t *c, eddy_fd_t fd)
{
    eddy_rt_t *rt = c->rt;
    pthread_mutex_lock(&rt->lock);
    atomic_store(&c->ws_fd, fd);
    atomic_store(&c->ws, true);
    for (eddy_rt_socket_t *s = c->sockets; s != NULL; s = s->client_next) {
        if (s->ws)
            continue;
        s->ws = true;
        s->nsp->npolling--;
        for (rt_member_t *m = s->rooms; m != NULL; m = m->sock_next)
            m->room->npolling--;
        socket_topics(s, true);
    }
    pthread_mutex_unlock(&rt->lock);
}

static void on_eio_upgrade(eio_session_t *es, void *ud)
{
    rt_client_t *c = eio_session_data(es);
    if (c == NULL)
        return;
    rt_ctx_t ctx;
    client_enter(c, &ctx, false);
    if (!c->counted_ws) {
        c->counted_ws = true;
        COUNT(c->rt, c->protocol == 3 ? RT_ST_UPGRADE_P3 : RT_ST_UPGRADE_P4);
    }
    client_to_ws(c, eio_session_ws_fd(es));
    client_leave(c, &ctx);
}

static void opening_remove(rt_client_t *c)
{
    for (rt_client_t **it = &tls_opening; *it != NULL; it = &(*it)->opening_next) {
        if (*it == c) {
            *it = c->opening_next;
            c->open_fd = 0;
            return;
        }
    }
}

static void on_eio_close(eio_session_t *es, const char *reason, void *ud);
static void connect_timer_stop(rt_client_t *c);
static void orphan_unlink(rt_client_t *c);
static void alias_sweep(eddy_rt_t *rt);

static void history_sweep(eddy_server_t *srv, uint64_t timer_id, void *arg)
{
    eddy_rt_t *rt = arg;
    pthread_mutex_lock(&rt->lock);
    eddy_rt_nsp_t *first = rt->nsps; /* the list only grows at its head */
    pthread_mutex_unlock(&rt->lock);
    for (eddy_rt_nsp_t *nsp = first; nsp != NULL; nsp = nsp->next)
        rt_history_sweep(nsp->hist);
    pthread_mutex_lock(&rt->lock);
    alias_sweep(rt);
    pthread_mutex_unlock(&rt->lock);
}

/* Presence writes the broker dropped are repaired soon after its queue has room again. */
static void presence_repair(eddy_server_t *srv, uint64_t timer_id, void *arg)
{
    eddy_rt_t *rt = arg;
    rt_cluster_presence_repair(rt->cluster);
}

eddy_rt_t *eddy_rt_new(eddy_server_t *srv, const eddy_rt_options_t *opts)
{
    eddy_rt_options_t defaults;
    if (opts == NULL) {
        eddy_rt_options_init(&defaults);
        opts = &defaults;
    }
    if (srv == NULL || opts->path == NULL || opts->path[0] != '/' || opts->ping_interval_ms == 0 ||
        opts->ping_timeout_ms == 0) {
        eddy_log(srv, EDDY_LOG_ERROR,
                 "eddy_rt_new: bad option (path must start with '/', "
                 "ping_interval_ms and ping_timeout_ms must be > 0)");
        return NULL;
    }
    uint32_t beat = opts->redis_heartbeat_interval_ms ? opts->redis_heartbeat_interval_ms
                                                      : EDDY_RT_HEARTBEAT_INTERVAL_MS;
    uint32_t lease = opts->redis_heartbeat_timeout_ms ? opts->redis_heartbeat_timeout_ms : 3 * beat;
    if (beat < EDDY_RT_HEARTBEAT_MIN_MS || beat > EDDY_RT_HEARTBEAT_MAX_MS || lease / 2 < beat ||
        lease > EDDY_RT_HEARTBEAT_TIMEOUT_MAX_MS) {
        /* The lease outlives two renewals, so one late heartbeat does not drop the node. */
        eddy_log(srv, EDDY_LOG_ERROR,
                 "eddy_rt_new: bad option (redis_heartbeat_interval_ms %u must be %d-%d, "
                 "redis_heartbeat_timeout_ms %u at least twice it and at most %d)",
                 beat, EDDY_RT_HEARTBEAT_MIN_MS, EDDY_RT_HEARTBEAT_MAX_MS, lease,
                 EDDY_RT_HEARTBEAT_TIMEOUT_MAX_MS);
        return NULL;
    }
    eddy_rt_t *rt = calloc(1, sizeof(*rt));
    if (rt == NULL)
        return NULL;
    rt->srv = srv;
    rt->opt = *opts;
    rt->opt.redis_heartbeat_interval_ms = beat;
    rt->opt.redis_heartbeat_timeout_ms = lease;
    if ((rt->stats = rt_stats_new()) == NULL) {
        free(rt);
        return NULL;
    }
    rt->path = strdup(opts->path);
    rt->opt.path = rt->path;
    if (rt->opt.max_attachments == 0)
        rt->opt.max_attachments = SIO_MAX_ATTACHMENTS_DEFAULT;
    pthread_mutex_init(&rt->lock, NULL);
    pthread_mutex_init(&rt->ack_lock, NULL);
    atomic_init(&rt->next_ack, 0);
    rt->index = RT_MAX_LAYERS;
    for (unsigned i = 0; i < RT_MAX_LAYERS; i++) {
        eddy_rt_t *expected = NULL;
        if (atomic_compare_exchange_strong(&rt_registry[i], &expected, rt)) {
            rt->index = i;
            break;
        }
    }
    if (rt->index == RT_MAX_LAYERS) {
        eddy_log(srv, EDDY_LOG_ERROR, "eddy_rt_new: more than %d layers in one process",
                 RT_MAX_LAYERS);
        eddy_rt_free(rt);
        return NULL;
    }
    eio_config_t cfg = {
        .path = rt->path,
        .ping_interval_ms = opts->ping_interval_ms,
        .ping_timeout_ms = opts->ping_timeout_ms,
        .upgrade_timeout_ms = opts->upgrade_timeout_ms,
        .max_payload = opts->max_http_buffer_size,
        .allow_polling = opts->allow_polling,
    };
    static const eio_handlers_t handlers = {
        .open = on_eio_open,
        .message = on_eio_message,
        .upgrade = on_eio_upgrade,
        .close = on_eio_close,
    };
    if (opts->redis_url != NULL && (rt->cluster = rt_cluster_new(rt, &rt->opt)) == NULL) {
        eddy_rt_free(rt);
        return NULL;
    }
    /* The broker copied them; the caller's strings need not outlive this call. */
    rt->opt.redis_url = rt->opt.redis_prefix = rt->opt.node_id = NULL;
    if (rt->path == NULL || (rt->eio = eio_server_new(srv, &cfg, &handlers, rt)) == NULL ||
        eddy_rt_of(rt, "/") == NULL) {
        eddy_rt_free(rt);
        return NULL;
    }
    /* Expired session records and aged entries go every few seconds (queries also evict
     * what has aged). */
    if ((opts->recovery_max_disconnection_ms > 0 || opts->history_max_messages > 0) &&
        eddy_timer_tick(srv, 5000, history_sweep, rt) == 0) {
        eddy_rt_free(rt);
        return NULL;
    }
    if (rt->cluster != NULL && eddy_timer_tick(srv, 1000, presence_repair, rt) == 0) {
        eddy_rt_free(rt);
        return NULL;
    }
    return rt;
}

void eddy_rt_free(eddy_rt_t *rt)
{
    if (rt == NULL)
        return;
    if (rt->cluster != NULL)
        rt_cluster_quiet(rt->cluster);
    rt->freeing = true;
    if (rt->eio != NULL)
        eio_server_free(rt->eio);
    /* After the sessions closed: their records are stored before the broker goes. */
    rt_cluster_free(rt->cluster);
    while (rt->orphans != NULL) {
        rt_client_t *c = rt->orphans;
        rt->orphans = c->orphan_next;
        client_unref(c); /* the reference of a connect timer that will never fire */
    }
    if (rt->index < RT_MAX_LAYERS)
        atomic_store(&rt_registry[rt->index], NULL);
    for (eddy_rt_nsp_t *nsp = rt->nsps, *next; nsp != NULL; nsp = next) {
        next = nsp->next;
        for (size_t i = 0; i < nsp->nhandlers; i++)
            free(nsp->handlers[i].name);
        free(nsp->handlers);
        rt_history_free(nsp->hist);
        free(nsp);
    }
    /* Sessions closed with the server: rooms, users and sockets are gone; what is left is
     * the tables' memory and acknowledgements that never timed out (server stopped). */
    for (size_t i = 0; i < rt->acks.nslots; i++) {
        for (rt_hnode_t *it = rt->acks.slots[i], *next; it != NULL; it = next) {
            next = it->next;
            rt_ack_t *a = CONTAINER(it, rt_ack_t, node);
            if (a->bcb != NULL)
                rt_xnode_ack_drop(a->bcb, a->arg);
            for (size_t k = 0; k < a->n; k++) {
                free(a->answers[k].args);
                free(a->answers[k].bin);
                eddy_rt_socket_unref(a->answers[k].socket);
            }
            free(a);
        }
    }
    free(rt->acks.slots);
    for (size_t i = 0; i < rt->aliases.nslots; i++) {
        for (rt_hnode_t *it = rt->aliases.slots[i], *next; it != NULL; it = next) {
            next = it->next;
            free(CONTAINER(it, rt_alias_t, node));
        }
    }
    free(rt->aliases.slots);
    free(rt->rooms.slots);
    free(rt->users.slots);
    free(rt->sockets.slots);
    pthread_mutex_destroy(&rt->lock);
    pthread_mutex_destroy(&rt->ack_lock);
    free(rt->path);
    rt_stats_free(rt->stats);
    free(rt);
}

void eddy_rt_stats(eddy_rt_t *rt, eddy_rt_stats_t *out)
{
    rt_stats_read(rt->stats, out);
    eio_server_errors(rt->eio, out->request_errors_total);
}

void eddy_rt_broker_status(eddy_rt_t *rt, eddy_rt_broker_status_t *out)
{
    if (rt->cluster != NULL)
        rt_cluster_status(rt->cluster, out);
    else
        *out = (eddy_rt_broker_status_t){.clustered = false};
}

_Static_assert(EDDY_RT_SHARD_NAME_SIZE == RT_BROKER_SHARD_NAME_SIZE, "one shard name size");

int eddy_rt_nsp_shard(eddy_rt_nsp_t *nsp, char shard[EDDY_RT_SHARD_NAME_SIZE])
{
    rt_cluster_t *cl = nsp->rt->cluster;
    const char *name = cl != NULL ? rt_cluster_part_name(cl, nsp->name) : NULL;
    if (name == NULL)
        return -1;
    snprintf(shard, EDDY_RT_SHARD_NAME_SIZE, "%s", name);
    return rt_cluster_nsp_up(cl, nsp->name) ? 1 : 0;
}

eddy_server_t *eddy_rt_server(const eddy_rt_t *rt)
{
    return rt->srv;
}

void eddy_rt_set_user_data(eddy_rt_t *rt, void *user_data)
{
    rt->user_data = user_data;
}

void *eddy_rt_user_data(const eddy_rt_t *rt)
{
    return rt->user_data;
}

/* ---------------------------------------------------------------------------------------
 * Dispatch from the engine
 * ------------------------------------------------------------------------------------- */

bool eddy_rt_handle_request(eddy_rt_t *rt, eddy_request_t *req, eddy_response_t *resp)
{
    return eio_handle_request(rt->eio, req, resp);
}

bool eddy_rt_handle_upgrade(eddy_rt_t *rt, eddy_request_t *req, int *status)
{
    return eio_handle_upgrade(rt->eio, req, status);
}

bool eddy_rt_handle_open(eddy_rt_t *rt, eddy_request_t *req)
{
    if (!eio_handle_open(rt->eio, req))
        return false;
    eddy_fd_t fd = eddy_request_fd(req);
    for (rt_client_t *c = tls_opening; c != NULL; c = c->opening_next) {
        if (c->open_fd == fd) {
            opening_remove(c);
            rt_ctx_t ctx;
            client_enter(c, &ctx, false);
            client_to_ws(c, fd);
            client_leave(c, &ctx);
            break;
        }
    }
    return true;
}

bool eddy_rt_handle_message(eddy_rt_t *rt, const eddy_frame_t *frame)
{
    return eio_handle_message(rt->eio, frame);
}

bool eddy_rt_handle_close(eddy_rt_t *rt, eddy_fd_t fd)
{
    return eio_handle_close(rt->eio, fd);
}

static void installed_request(eddy_server_t *srv, eddy_request_t *req, eddy_response_t *resp,
                              void *user_data)
{
    eddy_rt_t *rt = user_data;
    if (eddy_rt_handle_request(rt, req, resp))
        return;
    if (rt->fallback != NULL) {
        rt->fallback(srv, req, resp, rt);
        return;
    }
    eddy_response_status(resp, 404, NULL);
    eddy_response_header(resp, "Content-Type", "text/plain");
    eddy_response_end(resp, "Not Found\n", 10);
}

static int installed_upgrade(eddy_server_t *srv, eddy_request_t *req, void *user_data)
{
    int status = 0;
    if (eddy_rt_handle_upgrade(user_data, req, &status))
        return status;
    return eddy_upgrade_refuse(req, 404, NULL, "Not Found\n");
}

static void installed_open(eddy_server_t *srv, eddy_request_t *req, void *user_data)
{
    eddy_rt_handle_open(user_data, req);
}

static void installed_message(eddy_server_t *srv, const eddy_frame_t *frame, void *user_data)
{
    eddy_rt_handle_message(user_data, frame);
}

static void installed_close(eddy_server_t *srv, eddy_fd_t fd, void *user_data)
{
    eddy_rt_handle_close(user_data, fd);
}

void eddy_rt_install(eddy_rt_t *rt, eddy_request_cb fallback)
{
    rt->fallback = fallback;
    eddy_server_set_user_data(rt->srv, rt);
    eddy_on_request(rt->srv, installed_request);
    eddy_on_upgrade(rt->srv, installed_upgrade);
    eddy_on_open(rt->srv, installed_open);
    eddy_on_message(rt->srv, installed_message);
    eddy_on_close(rt->srv, installed_close);
}

/* ---------------------------------------------------------------------------------------
 * Namespaces
 * ------------------------------------------------------------------------------------- */

static eddy_rt_nsp_t *nsp_find(eddy_rt_t *rt, const char *name, size_t len)
{
    for (eddy_rt_nsp_t *nsp = rt->nsps; nsp != NULL; nsp = nsp->next) {
        if (nsp->name_len == len && memcmp(nsp->name, name, len) == 0)
            return nsp;
    }
    return NULL;
}

eddy_rt_nsp_t *eddy_rt_of(eddy_rt_t *rt, const char *name)
{
    if (name == NULL || name[0] != '/')
        return NULL;
    size_t len = strlen(name);
    pthread_mutex_lock(&rt->lock);
    eddy_rt_nsp_t *nsp = nsp_find(rt, name, len);
    if (nsp == NULL && (nsp = calloc(1, sizeof(*nsp) + len + 1)) != NULL) {
        uint32_t keep = rt->opt.recovery_max_disconnection_ms;
        if (keep > 0 || rt->opt.history_max_messages > 0) {
            /* Zeros take the store's defaults; a room's age bound defaults to the
             * recovery window, which it must cover. */
            rt_history_config_t cfg = {
                .ring_max_count = rt->opt.history_max_messages,
                .ring_max_bytes = rt->opt.history_max_bytes,
                .ring_max_age_ms = rt->opt.history_max_age_ms ? rt->opt.history_max_age_ms : keep,
                .session_ttl_ms = keep,
            };
            if ((nsp->hist = rt_history_new(&cfg)) == NULL) {
                free(nsp);
                pthread_mutex_unlock(&rt->lock);
                return NULL;
            }
            nsp->epoch = rt_history_position(nsp->hist).epoch;
        }
        nsp->rt = rt;
        nsp->name_len = len;
        memcpy(nsp->name, name, len);
        nsp->next = rt->nsps;
        rt->nsps = nsp;
        if (rt->cluster != NULL)
            rt_cluster_interest(rt->cluster, nsp->name, NULL, false, true);
    }
    pthread_mutex_unlock(&rt->lock);
    return nsp;
}

void eddy_rt_nsp_set_handlers(eddy_rt_nsp_t *nsp, const eddy_rt_handlers_t *h)
{
    nsp->h = *h;
}

static const char *const reserved_events[] = {
    "connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener",
};

int eddy_rt_on(eddy_rt_nsp_t *nsp, const char *event, eddy_rt_event_cb cb, void *user_data)
{
    if (event == NULL)
        return EDDY_EINVAL;
    for (size_t i = 0; i < sizeof(reserved_events) / sizeof(reserved_events[0]); i++) {
        if (strcmp(event, reserved_events[i]) == 0)
            return EDDY_EINVAL;
    }
    for (size_t i = 0; i < nsp->nhandlers; i++) {
        if (strcmp(nsp->handlers[i].name, event) != 0)
            continue;
        if (cb != NULL) {
            nsp->handlers[i].cb = cb;
            nsp->handlers[i].user_data = user_data;
        } else {
            free(nsp->handlers[i].name);
            nsp->handlers[i] = nsp->handlers[--nsp->nhandlers];
        }
        return 0;
    }
    if (cb == NULL)
        return 0;
    rt_handler_t *handlers = realloc(nsp->handlers, (nsp->nhandlers + 1) * sizeof(*handlers));
    if (handlers == NULL)
        return EDDY_ENOMEM;
    nsp->handlers = handlers;
    char *name = strdup(event);
    if (name == NULL)
        return EDDY_ENOMEM;
    handlers[nsp->nhandlers++] = (rt_handler_t){name, strlen(name), cb, user_data};
    return 0;
}

const char *eddy_rt_nsp_name(const eddy_rt_nsp_t *nsp)
{
    return nsp->name;
}

eddy_rt_t *eddy_rt_nsp_rt(const eddy_rt_nsp_t *nsp)
{
    return nsp->rt;
}

size_t eddy_rt_nsp_count(eddy_rt_nsp_t *nsp)
{
    pthread_mutex_lock(&nsp->rt->lock);
    size_t n = nsp->count;
    pthread_mutex_unlock(&nsp->rt->lock);
    return n;
}

/* ---------------------------------------------------------------------------------------
 * Encoding and sending to one socket
 * ------------------------------------------------------------------------------------- */

/* The namespace as written in packets: omitted for "/". */
static void nsp_wire(const eddy_rt_nsp_t *nsp, const char **p, size_t *len)
{
    bool root = nsp->name_len == 1;
    *p = root ? NULL : nsp->name;
    *len = root ? 0 : nsp->name_len;
}

/* Checks msg and returns its argument list in *args and *len. */
static int msg_args(const eddy_rt_msg_t *msg, const char **args, size_t *len)
{
    if (msg->nbin > 0 && msg->bin == NULL)
        return EDDY_EINVAL;
    *args = msg->args != NULL ? msg->args : "";
    *len = msg->args != NULL ? msg->args_len : 0;
    return 0;
}

/* Encodes an EVENT (ack_id >= 0: asking for an ack) or, with event NULL, an ACK into the
 * thread's output buffer, '4' included. Returns its length or a negative error. */
static ssize_t encode_packet(const eddy_rt_nsp_t *nsp, const eddy_rt_msg_t *msg, const char *event,
                             int64_t id)
{
    const char *args, *np;
    size_t args_len, nl;
    int rc = msg_args(msg, &args, &args_len);
    if (rc != 0)
        return rc;
    if (msg->nbin > nsp->rt->opt.max_attachments)
        return EDDY_EINVAL;
    nsp_wire(nsp, &np, &nl);
    unsigned natt = (unsigned)msg->nbin;
    size_t need = event != NULL ? sio_encode_event(NULL, 0, SIO_ENC_EIO_MESSAGE, np, nl, natt, id,
                                                   event, strlen(event), args, args_len)
                                : sio_encode_ack(NULL, 0, SIO_ENC_EIO_MESSAGE, np, nl, natt, id,
                                                 args, args_len);
    char *out = scratch(&tls_out, need);
    if (out == NULL)
        return EDDY_ENOMEM;
    if (event != NULL)
        sio_encode_event(out, need, SIO_ENC_EIO_MESSAGE, np, nl, natt, id, event, strlen(event),
                         args, args_len);
    else
        sio_encode_ack(out, need, SIO_ENC_EIO_MESSAGE, np, nl, natt, id, args, args_len);
    return (ssize_t)need;
}

static int send_text(eddy_rt_socket_t *s, const char *text, size_t len, const eddy_rt_msg_t *msg)
{
    eio_part_t parts[1 + 64];
    if (msg->nbin + 1 > sizeof(parts) / sizeof(parts[0]))
        return EDDY_EINVAL;
    parts[0] = (eio_part_t){text, len, false};
    for (size_t i = 0; i < msg->nbin; i++)
        parts[1 + i] = (eio_part_t){msg->bin[i].data, msg->bin[i].len, true};
    int flags = (msg->flags & EDDY_RT_VOLATILE) ? EIO_SEND_VOLATILE : 0;
    return client_send(s->client, parts, 1 + msg->nbin, flags);
}

static int send_encoded(eddy_rt_socket_t *s, size_t len, const eddy_rt_msg_t *msg)
{
    return send_text(s, tls_out.p, len, msg);
}

/* ---------------------------------------------------------------------------------------
 * Connection state recovery: stored events carry their offset as last argument
 * ------------------------------------------------------------------------------------- */

/* The packet text[0..len) (an EVENT, ending in ']') with ,"<offset of seq>" before its
 * closing bracket, into the thread's offset buffer. Returns its length or EDDY_ENOMEM. */
static ssize_t with_offset_at(rt_position_t pos, const char *text, size_t len)
{
    char off[RT_OFFSET_SIZE];
    size_t n = rt_offset_encode(pos, off);
    char *out = scratch(&tls_off, len + n + 3);
    if (out == NULL || len == 0)
        return EDDY_ENOMEM;
    memcpy(out, text, len - 1);
    size_t at = len - 1;
    out[at++] = ',';
    out[at++] = '"';
    memcpy(out + at, off, n);
    at += n;
    out[at++] = '"';
    out[at++] = ']';
    return (ssize_t)at;
}

static ssize_t with_offset(const eddy_rt_nsp_t *nsp, uint64_t seq, const char *text, size_t len)
{
    return with_offset_at((rt_position_t){nsp->epoch, seq}, text, len);
}

static const char *stored_form(size_t len, const eddy_rt_msg_t *msg, size_t *total_out);

/* Stores the encoded packet (tls_out, len) and msg's attachments for rooms (none: the
 * whole namespace) minus except. Returns the seq (> 0) or a negative error (the store
 * then marks the seq lost: recoveries across it answer "not recovered"). The stored form
 * is [u32 text length][text][u32 count]([u32 length][bytes])*. */
static int64_t record(eddy_rt_nsp_t *nsp, const char *const *rooms, size_t nrooms,
                      const char *const *except, size_t nexcept, size_t len,
                      const eddy_rt_msg_t *msg)
{
    size_t total;
    const char *p = stored_form(len, msg, &total);
    if (p == NULL)
        return EDDY_ENOMEM;
    return rt_history_append(nsp->hist, rooms, nrooms, except, nexcept, p, total);
}

/* The stored form of the encoded packet (tls_out, len) and msg's attachments, into the
 * thread's store buffer; its size in *total. NULL when out of memory. */
static const char *stored_form(size_t len, const eddy_rt_msg_t *msg, size_t *total_out)
{
    size_t total = 8 + len;
    for (size_t i = 0; i < msg->nbin; i++)
        total += 4 + msg->bin[i].len;
    char *p = scratch(&tls_store, total);
    if (p == NULL)
        return NULL;
    uint32_t n32 = (uint32_t)len;
    memcpy(p, &n32, 4);
    memcpy(p + 4, tls_out.p, len);
    size_t at = 4 + len;
    n32 = (uint32_t)msg->nbin;
    memcpy(p + at, &n32, 4);
    at += 4;
    for (size_t i = 0; i < msg->nbin; i++) {
        n32 = (uint32_t)msg->bin[i].len;
        memcpy(p + at, &n32, 4);
        memcpy(p + at + 4, msg->bin[i].data, msg->bin[i].len);
        at += 4 + msg->bin[i].len;
    }
    *total_out = total;
    return p;
}

static bool recording(const eddy_rt_nsp_t *nsp, const eddy_rt_msg_t *msg, int64_t id)
{
    return nsp->hist != NULL && id < 0 && !(msg->flags & EDDY_RT_VOLATILE);
}

/* Offsets go on the wire, and sessions are recorded, only with recovery on (a history kept
 * for eddy_rt_room_history() alone changes nothing clients see). */
static bool recovering(const eddy_rt_nsp_t *nsp)
{
    return nsp->hist != NULL && nsp->rt->opt.recovery_max_disconnection_ms > 0;
}

/* The pseudo-room a user's messages are stored under ("\x1e" and the user id: no
 * Socket.IO room starts with that byte in practice). Into buf; returns buf or NULL. */
static const char *user_room(const char *user, char *buf, size_t cap)
{
    if (strlen(user) + 2 > cap)
        return NULL;
    buf[0] = '\x1e';
    strcpy(buf + 1, user);
    return buf;
}

/* Stores the record of s in the broker (ttl_ms 0: a live socket's). In cluster mode s->pid
 * holds the offset of the namespace's position when s first connected (socket_cpid(s) is the
 * record's key). Table lock held. */
static void cluster_record(eddy_rt_socket_t *s, uint64_t ttl_ms)
{
    const char *stack[32];
    size_t n = 0;
    for (rt_member_t *m = s->rooms; m != NULL; m = m->sock_next)
        n++;
    const char **rooms = n <= 32 ? stack : malloc(n * sizeof(*rooms));
    if (rooms == NULL)
        return;
    size_t k = 0;
    for (rt_member_t *m = s->rooms; m != NULL; m = m->sock_next)
        rooms[k++] = m->room->name;
    rt_position_t at = {0, 0};
    rt_offset_parse(s->pid, strlen(s->pid), &at);
    rt_cluster_session_put(s->nsp->rt->cluster, s->nsp->name, socket_cpid(s), s->id,
                           s->user != NULL ? s->user->id : NULL, rooms, k, at, ttl_ms, s->dl_mark);
    if (rooms != stack)
        free(rooms);
}

/* Replaces the record of s with its current rooms (own room, joined rooms, user). Table
 * lock held. */
static void record_rooms(eddy_rt_socket_t *s)
{
    if (s->nsp->hist == NULL || s->pid[0] == '\0')
        return;
    if (s->nsp->rt->cluster != NULL) {
        cluster_record(s, 0);
        return;
    }
    const char *stack[32];
    size_t n = 1;
    for (rt_member_t *m = s->rooms; m != NULL; m = m->sock_next)
        n++;
    char ubuf[1024];
    const char *uroom = s->user != NULL ? user_room(s->user->id, ubuf, sizeof(ubuf)) : NULL;
    n += uroom != NULL;
    const char **rooms = n <= 32 ? stack : malloc(n * sizeof(*rooms));
    if (rooms == NULL)
        return;
    size_t k = 0;
    rooms[k++] = s->id;
    for (rt_member_t *m = s->rooms; m != NULL; m = m->sock_next)
        rooms[k++] = m->room->name;
    if (uroom != NULL)
        rooms[k++] = uroom;
    rt_history_session_set_rooms(s->nsp->hist, s->pid, rooms, k);
    if (rooms != stack)
        free(rooms);
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static rt_alias_t *alias_find(eddy_rt_t *rt, const char *cpid)
{
    uint64_t h = key_hash(NULL, cpid, strlen(cpid));
    for (rt_hnode_t *it = hmap_first(&rt->aliases, h); it != NULL; it = it->next) {
        rt_alias_t *a = CONTAINER(it, rt_alias_t, node);
        if (it->hash == h && strcmp(a->cpid, cpid) == 0)
            return a;
    }
    return NULL;
}

static void alias_drop(eddy_rt_t *rt, const char *cpid)
{
    rt_alias_t *a = alias_find(rt, cpid);
    if (a != NULL) {
        hmap_remove(&rt->aliases, &a->node);
        free(a);
    }
}

/* Points cpid at the record pid (table lock held). On out-of-memory the next recovery of
 * this client finds no record: it is then connected afresh, never partially. */
static void alias_set(eddy_rt_t *rt, const char *cpid, const char *pid)
{
    rt_alias_t *a = alias_find(rt, cpid);
    if (a == NULL && (a = calloc(1, sizeof(*a))) != NULL) {
        strcpy(a->cpid, cpid);
        a->node.hash = key_hash(NULL, cpid, strlen(cpid));
        if (hmap_insert(&rt->aliases, &a->node) != 0) {
            free(a);
            a = NULL;
        }
    }
    if (a != NULL) {
        strcpy(a->pid, pid);
        a->expires_ms = 0;
    }
}

/* Forgets aliases whose record has expired (table lock held). */
static void alias_sweep(eddy_rt_t *rt)
{
    uint64_t now = mono_ms();
    for (size_t i = 0; i < rt->aliases.nslots; i++) {
        for (rt_hnode_t *it = rt->aliases.slots[i], *next; it != NULL; it = next) {
            next = it->next;
            rt_alias_t *a = CONTAINER(it, rt_alias_t, node);
            if (a->expires_ms != 0 && a->expires_ms <= now) {
                hmap_remove(&rt->aliases, &a->node);
                free(a);
            }
        }
    }
}

/* A missed packet, copied out of the store for the replay. */
typedef struct rt_missed {
    struct rt_missed *next;
    uint64_t seq;
    size_t len;
    char payload[];
} rt_missed_t;

typedef struct rt_replay {
    rt_missed_t *head, **tail;
    bool failed;
} rt_replay_t;

static void replay_copy(uint64_t seq, const void *payload, size_t len, void *ud)
{
    rt_replay_t *r = ud;
    rt_missed_t *m = malloc(sizeof(*m) + len);
    if (m == NULL) {
        r->failed = true;
        return;
    }
    m->next = NULL;
    m->seq = seq;
    m->len = len;
    memcpy(m->payload, payload, len);
    *r->tail = m;
    r->tail = &m->next;
}

/* Reads a stored form (len bytes; from another node in cluster mode, so checked): the
 * packet text and up to 64 attachments. Returns false if it is not well formed. */
static bool stored_parse(const char *p, size_t len, const char **text, size_t *tlen,
                         eddy_rt_bin_t bin[64], size_t *nbin)
{
    uint32_t t, n;
    if (len < 8 || (memcpy(&t, p, 4), t) > len - 8 || t == 0)
        return false;
    memcpy(&n, p + 4 + t, 4);
    if (n > 64)
        return false;
    size_t at = 8 + (size_t)t;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t blen;
        if (len - at < 4 || (memcpy(&blen, p + at, 4), blen) > len - at - 4)
            return false;
        bin[i] = (eddy_rt_bin_t){p + at + 4, blen};
        at += 4 + blen;
    }
    *text = p + 4;
    *tlen = t;
    *nbin = n;
    return true;
}

/* Sends a stored packet to s with the offset of pos (epoch 0: without). */
void rt_cluster_send_stored(eddy_rt_socket_t *s, rt_position_t pos, const void *payload, size_t len,
                            uint32_t flags)
{
    const char *text;
    size_t tlen, nbin;
    eddy_rt_bin_t bin[64];
    if (!stored_parse(payload, len, &text, &tlen, bin, &nbin))
        return;
    if (pos.epoch != 0) {
        ssize_t olen = with_offset_at(pos, text, tlen);
        if (olen < 0)
            return;
        text = tls_off.p;
        tlen = (size_t)olen;
    }
    eddy_rt_msg_t msg = {.bin = bin, .nbin = nbin, .flags = (int)(flags & EDDY_RT_COMPRESS)};
    send_text(s, text, tlen, &msg);
}

/* Sends one stored packet to s with its offset. */
static void replay_send(eddy_rt_socket_t *s, const rt_missed_t *m)
{
    rt_cluster_send_stored(s, (rt_position_t){s->nsp->epoch, m->seq}, m->payload, m->len, 0);
}

/* Sends a control packet (CONNECT, CONNECT_ERROR, DISCONNECT) of nsp to client c. */
static int send_control(rt_client_t *c, const char *nsp, size_t nsp_len, sio_type_t type,
                        const char *json, size_t json_len)
{
    if (nsp_len == 1 && nsp[0] == '/')
        nsp_len = 0;
    size_t need =
        sio_encode(NULL, 0, SIO_ENC_EIO_MESSAGE, type, nsp, nsp_len, 0, -1, json, json_len);
    char *out = scratch(&tls_out, need);
    if (out == NULL)
        return EDDY_ENOMEM;
    sio_encode(out, need, SIO_ENC_EIO_MESSAGE, type, nsp, nsp_len, 0, -1, json, json_len);
    eio_part_t part = {out, need, false};
    return client_send(c, &part, 1, 0);
}

int eddy_rt_emit(eddy_rt_socket_t *s, const eddy_rt_msg_t *msg)
{
    if (msg == NULL || msg->event == NULL)
        return EDDY_EINVAL;
    if (!atomic_load(&s->connected))
        return EDDY_ECLOSED;
    ssize_t len = encode_packet(s->nsp, msg, msg->event, -1);
    if (len < 0)
        return (int)len;
    COUNT(s->nsp->rt, RT_ST_EVENTS_OUT);
    if (recovering(s->nsp) && s->nsp->rt->cluster == NULL && recording(s->nsp, msg, -1)) {
        /* With recovery on, an emit to a socket is stored for its own room, as Socket.IO
         * does, so that a client that drops gets it back. (Not in cluster mode: an offset
         * there is a broker position, which this node's store would not give.) */
        const char *own = s->id;
        int64_t seq = record(s->nsp, &own, 1, NULL, 0, (size_t)len, msg);
        ssize_t olen = seq > 0 ? with_offset(s->nsp, (uint64_t)seq, tls_out.p, (size_t)len) : -1;
        if (olen > 0)
            return send_text(s, tls_off.p, (size_t)olen, msg);
    }
    return send_encoded(s, (size_t)len, msg);
}

int eddy_rt_emit_json(eddy_rt_socket_t *s, const char *event, const char *args)
{
    eddy_rt_msg_t msg = {.event = event, .args = args, .args_len = args ? strlen(args) : 0};
    return eddy_rt_emit(s, &msg);
}

int eddy_rt_ack(eddy_rt_socket_t *s, int64_t ack_id, const eddy_rt_msg_t *msg)
{
    if (ack_id < 0 || msg == NULL)
        return EDDY_EINVAL;
    if (!atomic_load(&s->connected))
        return EDDY_ECLOSED;
    ssize_t len = encode_packet(s->nsp, msg, NULL, ack_id);
    if (len < 0)
        return (int)len;
    COUNT(s->nsp->rt, RT_ST_EVENTS_OUT);
    return send_encoded(s, (size_t)len, msg);
}

int eddy_rt_ack_json(eddy_rt_socket_t *s, int64_t ack_id, const char *args)
{
    eddy_rt_msg_t msg = {.args = args, .args_len = args ? strlen(args) : 0};
    return eddy_rt_ack(s, ack_id, &msg);
}

/* ---------------------------------------------------------------------------------------
 * Pending acknowledgements (rt->ack_lock)
 * ------------------------------------------------------------------------------------- */

static rt_ack_t *ack_take(eddy_rt_t *rt, uint64_t id)
{
    uint64_t h = fnv(0xcbf29ce484222325ull, &id, sizeof(id));
    for (rt_hnode_t *it = hmap_first(&rt->acks, h); it != NULL; it = it->next) {
        rt_ack_t *a = CONTAINER(it, rt_ack_t, node);
        if (a->id == id)
            return a;
    }
    return NULL;
}

static void ack_free(rt_ack_t *a)
{
    for (size_t k = 0; k < a->n; k++) {
        for (size_t b = 0; b < a->answers[k].nbin; b++)
            free((void *)a->answers[k].bin[b].data);
        free(a->answers[k].args);
        free(a->answers[k].bin);
        eddy_rt_socket_unref(a->answers[k].socket);
    }
    free(a);
}

static int answer_order(const void *x, const void *y)
{
    const rt_ack_answer_t *a = x, *b = y;
    return (a->order > b->order) - (a->order < b->order);
}

/* Reports a broadcast's answers (answers first in arrival order, then the rest) and frees
 * it. Runs without any lock. */
static void ack_finish_broadcast(rt_ack_t *a)
{
    qsort(a->answers, a->n, sizeof(a->answers[0]), answer_order);
    eddy_rt_ack_result_t stack[64];
    eddy_rt_event_t evs_stack[64];
    eddy_rt_ack_result_t *res = a->n <= 64 ? stack : malloc(a->n * sizeof(*res));
    eddy_rt_event_t *evs = a->n <= 64 ? evs_stack : malloc(a->n * sizeof(*evs));
    if (res != NULL && evs != NULL) {
        for (size_t k = 0; k < a->n; k++) {
            rt_ack_answer_t *an = &a->answers[k];
            evs[k] = (eddy_rt_event_t){.args = an->args ? an->args : "",
                                       .args_len = an->args_len,
                                       .bin = an->bin,
                                       .nbin = an->nbin,
                                       .ack_id = -1};
            res[k] =
                (eddy_rt_ack_result_t){an->socket->id, an->status, an->status == 0 ? &evs[k] : NULL,
                                       rt_xnode_node_id(a->nsp->rt)};
        }
        a->bcb(a->nsp, res, a->n, a->arg);
    } else {
        a->bcb(a->nsp, NULL, 0, a->arg);
    }
    if (res != stack)
        free(res);
    if (evs != evs_stack)
        free(evs);
    ack_free(a);
}

static void ack_timeout(eddy_server_t *srv, uint64_t timer_id, void *arg)
{
    uintptr_t key = (uintptr_t)arg;
    eddy_rt_t *rt = atomic_load(&rt_registry[key & (RT_MAX_LAYERS - 1)]);
    if (rt == NULL)
        return;
    /* The entry is still pending if it is still in the table: an answer removes it under
     * the same lock. */
    pthread_mutex_lock(&rt->ack_lock);
    rt_ack_t *a = ack_take(rt, (uint64_t)(key >> 4));
    if (a != NULL)
        hmap_remove(&rt->acks, &a->node);
    pthread_mutex_unlock(&rt->ack_lock);
    if (a == NULL)
        return;
    if (a->bcb != NULL) {
        ack_finish_broadcast(a);
        return;
    }
    a->cb(a->answers[0].socket, -ETIMEDOUT, NULL, a->arg);
    ack_free(a);
}

/* Registers a pending ack with n recipients (referenced) and arms its timer. */
static rt_ack_t *ack_new(eddy_rt_nsp_t *nsp, size_t n)
{
    rt_ack_t *a = calloc(1, sizeof(*a) + n * sizeof(a->answers[0]));
    if (a == NULL)
        return NULL;
    a->nsp = nsp;
    a->n = a->remaining = n;
    /* Ids stay below 2^53 (exact in JavaScript) and fit the timer key's 60 bits. */
    a->id = atomic_fetch_add(&nsp->rt->next_ack, 1) & SIO_MAX_ID;
    a->node.hash = fnv(0xcbf29ce484222325ull, &a->id, sizeof(a->id));
    for (size_t k = 0; k < n; k++) {
        a->answers[k].status = -ETIMEDOUT;
        a->answers[k].order = SIZE_MAX; /* the unanswered sort last */
    }
    return a;
}

static int ack_arm(rt_ack_t *a, uint32_t timeout_ms)
{
    eddy_rt_t *rt = a->nsp->rt;
    pthread_mutex_lock(&rt->ack_lock);
    int rc = hmap_insert(&rt->acks, &a->node);
    if (rc == 0) {
        uintptr_t key = (uintptr_t)(a->id << 4 | rt->index);
        a->timer = eddy_timer_after(rt->srv, timeout_ms, ack_timeout, (void *)key);
        if (a->timer == 0) {
            hmap_remove(&rt->acks, &a->node);
            rc = EDDY_ENOMEM;
        }
    }
    pthread_mutex_unlock(&rt->ack_lock);
    return rc;
}

/* Withdraws an ack whose emit failed. */
static void ack_cancel(rt_ack_t *a)
{
    eddy_rt_t *rt = a->nsp->rt;
    pthread_mutex_lock(&rt->ack_lock);
    bool ours = ack_take(rt, a->id) == a;
    if (ours) {
        hmap_remove(&rt->acks, &a->node);
        eddy_timer_clear(rt->srv, a->timer);
    }
    pthread_mutex_unlock(&rt->ack_lock);
    if (ours)
        ack_free(a);
}

int eddy_rt_emit_ack(eddy_rt_socket_t *s, const eddy_rt_msg_t *msg, uint32_t timeout_ms,
                     eddy_rt_ack_cb cb, void *arg)
{
    if (msg == NULL || msg->event == NULL || cb == NULL || timeout_ms == 0)
        return EDDY_EINVAL;
    if (!atomic_load(&s->connected))
        return EDDY_ECLOSED;
    rt_ack_t *a = ack_new(s->nsp, 1);
    if (a == NULL)
        return EDDY_ENOMEM;
    a->cb = cb;
    a->arg = arg;
    eddy_rt_socket_ref(s);
    a->answers[0].socket = s;
    int64_t id = (int64_t)(a->id & SIO_MAX_ID);
    ssize_t len = encode_packet(s->nsp, msg, msg->event, id);
    if (len < 0) {
        ack_free(a);
        return (int)len;
    }
    int rc = ack_arm(a, timeout_ms);
    if (rc != 0) {
        ack_free(a);
        return rc;
    }
    COUNT(s->nsp->rt, RT_ST_EVENTS_OUT);
    rc = send_encoded(s, (size_t)len, msg);
    if (rc < 0)
        ack_cancel(a);
    return rc;
}

/* An ACK packet from s for id: hands the answer to the pending emit, if any. */
static void ack_received(eddy_rt_socket_t *s, uint64_t id, const char *args, size_t args_len,
                         const eddy_rt_bin_t *bin, size_t nbin)
{
    eddy_rt_t *rt = s->nsp->rt;
    pthread_mutex_lock(&rt->ack_lock);
    rt_ack_t *a = ack_take(rt, id);
    size_t k = 0;
    if (a != NULL) {
        while (k < a->n && a->answers[k].socket != s)
            k++;
    }
    if (a == NULL || k == a->n || a->answers[k].status == 0) {
        pthread_mutex_unlock(&rt->ack_lock);
        return; /* unknown or late (Socket.IO ignores those too) */
    }
    if (a->bcb == NULL) {
        hmap_remove(&rt->acks, &a->node);
        eddy_timer_clear(rt->srv, a->timer);
        pthread_mutex_unlock(&rt->ack_lock);
        eddy_rt_event_t ev = {
            .args = args, .args_len = args_len, .bin = bin, .nbin = nbin, .ack_id = -1};
        a->cb(s, 0, &ev, a->arg);
        ack_free(a);
        return;
    }
    /* A broadcast: keep a copy of this answer until every recipient answered. */
    rt_ack_answer_t *an = &a->answers[k];
    an->args = malloc(args_len + 1);
    an->bin = nbin ? calloc(nbin, sizeof(*an->bin)) : NULL;
    if (an->args != NULL) {
        memcpy(an->args, args, args_len);
        an->args[args_len] = '\0';
        an->args_len = args_len;
    }
    for (size_t b = 0; an->bin != NULL && b < nbin; b++) {
        void *copy = malloc(bin[b].len ? bin[b].len : 1);
        if (copy == NULL)
            break;
        memcpy(copy, bin[b].data, bin[b].len);
        an->bin[b] = (eddy_rt_bin_t){copy, bin[b].len};
        an->nbin = b + 1;
    }
    an->status = an->args != NULL ? 0 : EDDY_ENOMEM;
    an->order = a->n - a->remaining;
    bool done = --a->remaining == 0;
    if (done) {
        hmap_remove(&rt->acks, &a->node);
        eddy_timer_clear(rt->srv, a->timer);
    }
    pthread_mutex_unlock(&rt->ack_lock);
    if (done)
        ack_finish_broadcast(a);
}

/* ---------------------------------------------------------------------------------------
 * Broadcasts
 * ------------------------------------------------------------------------------------- */

/* Appends the topic names of to (rooms that are not socket ids, users; or the namespace)
 * for variant into the thread's topic buffer at *used, their offsets into offs. Returns
 * the count, or a negative error. */
static int topics_for(const eddy_rt_nsp_t *nsp, const char *const *names, size_t n, int kind,
                      int variant, size_t *used, size_t *offs, size_t max)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        if (names[i] == NULL)
            return EDDY_EINVAL;
        if (count >= max)
            return EDDY_EINVAL;
        size_t len = strlen(names[i]);
        size_t need = *used + 3 + nsp->name_len + len + 1;
        if (scratch(&tls_topics, need) == NULL)
            return EDDY_ENOMEM;
        offs[count++] = *used;
        *used +=
            topic_name(tls_topics.p + *used, need - *used, variant, kind, nsp, names[i], len) + 1;
    }
    return (int)count;
}

/* True if s is among to's targets through a topic it is subscribed to (so publishing
 * reached it), or is excluded. Table lock held. */
static bool excluded(const eddy_rt_socket_t *s, const eddy_rt_to_t *to)
{
    if (to == NULL)
        return false;
    if (s == to->except_socket)
        return true;
    for (size_t i = 0; i < to->nexcept; i++) {
        size_t len = strlen(to->except[i]);
        if (strcmp(s->id, to->except[i]) == 0)
            return true;
        for (rt_member_t *m = s->rooms; m != NULL; m = m->sock_next) {
            if (m->room->name_len == len && memcmp(m->room->name, to->except[i], len) == 0)
                return true;
        }
    }
    return false;
}

static bool reached_by_topic(const eddy_rt_socket_t *s, const eddy_rt_to_t *to)
{
    if (!s->ws)
        return false;
    for (size_t i = 0; i < to->nrooms; i++) {
        size_t len = strlen(to->rooms[i]);
        for (rt_member_t *m = s->rooms; m != NULL; m = m->sock_next) {
            if (m->room->name_len == len && memcmp(m->room->name, to->rooms[i], len) == 0)
                return true;
        }
    }
    for (size_t i = 0; i < to->nusers; i++) {
        if (s->user != NULL && strcmp(s->user->id, to->users[i]) == 0)
            return true;
    }
    return false;
}

typedef struct rt_targets {
    eddy_rt_socket_t **list;
    size_t n, cap;
} rt_targets_t;

static int targets_add(rt_targets_t *t, eddy_rt_socket_t *s)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        eddy_rt_socket_t **list = realloc(t->list, cap * sizeof(*list));
        if (list == NULL)
            return EDDY_ENOMEM;
        t->list = list;
        t->cap = cap;
    }
    t->list[t->n++] = s;
    return 0;
}

/* Visits each socket to selects, each once (table lock held). With polling_only, only
 * those that publishing does not reach (polling sockets, and sockets addressed through
 * their own room). Adds them (referenced) to t. */
static int collect(eddy_rt_nsp_t *nsp, const eddy_rt_to_t *to, bool polling_only, rt_targets_t *t)
{
    eddy_rt_t *rt = nsp->rt;
    uint64_t mark = ++rt->mark;
    int rc = 0;
#define VISIT(sock, direct)                                                                        \
    do {                                                                                           \
        eddy_rt_socket_t *s_ = (sock);                                                             \
        if (s_->mark == mark || excluded(s_, to))                                                  \
            break;                                                                                 \
        s_->mark = mark;                                                                           \
        if (polling_only && s_->ws && !((direct) && !reached_by_topic(s_, to)))                    \
            break;                                                                                 \
        if ((rc = targets_add(t, s_)) != 0)                                                        \
            return rc;                                                                             \
        eddy_rt_socket_ref(s_);                                                                    \
    } while (0)
    if (to == NULL || (to->nrooms == 0 && to->nusers == 0)) {
        if (polling_only && nsp->npolling == 0)
            return 0;
        for (eddy_rt_socket_t *s = nsp->sockets; s != NULL; s = s->nsp_next)
            VISIT(s, false);
        return 0;
    }
    for (size_t i = 0; i < to->nrooms; i++) {
        size_t len = strlen(to->rooms[i]);
        rt_room_t *r = room_find(rt, nsp, to->rooms[i], len);
        if (r != NULL && (!polling_only || r->npolling > 0)) {
            for (rt_member_t *m = r->members; m != NULL; m = m->room_next)
                VISIT(m->socket, false);
        }
        eddy_rt_socket_t *own = socket_by_id(rt, to->rooms[i], len);
        if (own != NULL && own->nsp == nsp)
            VISIT(own, true);
    }
    for (size_t i = 0; i < to->nusers; i++) {
        rt_user_t *u = user_find(rt, nsp, to->users[i]);
        for (eddy_rt_socket_t *s = u != NULL ? u->sockets : NULL; s != NULL; s = s->user_next)
            VISIT(s, false);
    }
#undef VISIT
    return 0;
}

static void targets_release(rt_targets_t *t)
{
    for (size_t i = 0; i < t->n; i++)
        eddy_rt_socket_unref(t->list[i]);
    free(t->list);
}

/* The Engine.IO 3 form of binary attachments: each with its 0x04 type byte, built once
 * into the thread's buffer. */
static int bin3_parts(const eddy_rt_bin_t *bin, size_t nbin, eddy_part_t *parts)
{
    size_t total = 0;
    for (size_t i = 0; i < nbin; i++)
        total += 1 + bin[i].len;
    char *p = scratch(&tls_bin3, total ? total : 1);
    if (p == NULL)
        return EDDY_ENOMEM;
    for (size_t i = 0; i < nbin; i++) {
        p[0] = 4;
        memcpy(p + 1, bin[i].data, bin[i].len);
        parts[i] = (eddy_part_t){p, 1 + bin[i].len, EDDY_WS_OPCODE_BINARY};
        p += 1 + bin[i].len;
    }
    return 0;
}

/* Publishes the encoded packet text[0..len) to the WebSocket subscribers to selects. */
static int publish(eddy_rt_nsp_t *nsp, const eddy_rt_to_t *to, const eddy_rt_msg_t *msg,
                   const char *text, size_t len)
{
    size_t nrooms = to ? to->nrooms : 0, nusers = to ? to->nusers : 0;
    size_t nexcept = to ? to->nexcept : 0;
    size_t max = 2 * (nrooms + nusers + 1) + 2 * nexcept;
    size_t offs_stack[32];
    size_t *offs = max <= 32 ? offs_stack : malloc(max * sizeof(*offs));
    const char *names_stack[32];
    const char **names = max <= 32 ? names_stack : malloc(max * sizeof(*names));
    int rc = 0;
    if (offs == NULL || names == NULL) {
        rc = EDDY_ENOMEM;
        goto out;
    }
    size_t used = 0;
    /* Topics of both variants (text frames are the same bytes), then their except-topics:
     * [0, ntop) targets v4+v3, [ntop, ntop+nexc) exceptions. */
    size_t ntop = 0, nexc = 0;
    for (int variant = 4; variant >= 3; variant--) {
        int n;
        if (nrooms + nusers == 0) {
            static const char *const root[] = {""};
            n = topics_for(nsp, root, 1, TOPIC_NSP, variant, &used, offs + ntop, max - ntop);
        } else {
            n = topics_for(nsp, to->rooms, nrooms, TOPIC_ROOM, variant, &used, offs + ntop,
                           max - ntop);
            if (n >= 0) {
                ntop += (size_t)n;
                n = topics_for(nsp, to->users, nusers, TOPIC_USER, variant, &used, offs + ntop,
                               max - ntop);
            }
        }
        if (n < 0) {
            rc = n;
            goto out;
        }
        ntop += (size_t)n;
    }
    for (int variant = 4; variant >= 3; variant--) {
        int n = topics_for(nsp, to ? to->except : NULL, nexcept, TOPIC_ROOM, variant, &used,
                           offs + ntop + nexc, max - ntop - nexc);
        if (n < 0) {
            rc = n;
            goto out;
        }
        nexc += (size_t)n;
    }
    for (size_t i = 0; i < ntop + nexc; i++)
        names[i] = tls_topics.p + offs[i];
    eddy_fd_t except_fd = 0;
    if (to != NULL && to->except_socket != NULL && to->except_socket->ws)
        except_fd = atomic_load(&to->except_socket->client->ws_fd);
    int flags = ((msg->flags & EDDY_RT_VOLATILE) ? EDDY_WS_FLAG_VOLATILE : 0) |
                ((msg->flags & EDDY_RT_COMPRESS) ? EDDY_WS_FLAG_COMPRESS : 0);
    eddy_part_t parts[1 + 64];
    parts[0] = (eddy_part_t){text, len, EDDY_WS_OPCODE_TEXT};
    if (msg->nbin == 0) {
        eddy_publish_spec_t spec = {names, ntop, names + ntop, nexc, except_fd, flags};
        rc = eddy_publish_parts(nsp->rt->srv, &spec, parts, 1);
    } else {
        /* Binary frames differ between the variants: one publication each. */
        size_t half = ntop / 2;
        for (size_t i = 0; i < msg->nbin; i++)
            parts[1 + i] = (eddy_part_t){msg->bin[i].data, msg->bin[i].len, EDDY_WS_OPCODE_BINARY};
        eddy_publish_spec_t spec4 = {names, half, names + ntop, nexc, except_fd, flags};
        rc = eddy_publish_parts(nsp->rt->srv, &spec4, parts, 1 + msg->nbin);
        if (rc >= 0 && (rc = bin3_parts(msg->bin, msg->nbin, parts + 1)) == 0) {
            eddy_publish_spec_t spec3 = {names + half, half, names + ntop, nexc, except_fd, flags};
            rc = eddy_publish_parts(nsp->rt->srv, &spec3, parts, 1 + msg->nbin);
        }
    }
    rc = rc < 0 ? rc : 0;
out:
    if (offs != offs_stack)
        free(offs);
    if (names != names_stack)
        free(names);
    return rc;
}

/* Stores a broadcast for recovery (table lock held): its rooms and users' pseudo-rooms,
 * its except rooms and the sender's own room. Returns the seq or a negative error. In
 * cluster mode it publishes the broadcast to the broker instead (flags: RT_CLUSTER_*) and
 * returns 0 or the broker's error. */
static int64_t record_broadcast(eddy_rt_nsp_t *nsp, const eddy_rt_to_t *to, size_t len,
                                const eddy_rt_msg_t *msg, uint32_t flags)
{
    size_t nrooms = to ? to->nrooms + to->nusers : 0, nexcept = to ? to->nexcept + 1 : 0;
    const char **rooms = nrooms ? calloc(nrooms, sizeof(*rooms)) : NULL;
    const char **except = nexcept ? calloc(nexcept, sizeof(*except)) : NULL;
    char **owned = to && to->nusers ? calloc(to->nusers, sizeof(*owned)) : NULL;
    int64_t seq = EDDY_ENOMEM;
    if ((nrooms && rooms == NULL) || (nexcept && except == NULL) ||
        (to && to->nusers && owned == NULL))
        goto out;
    size_t k = 0, e = 0;
    for (size_t i = 0; to && i < to->nrooms; i++)
        rooms[k++] = to->rooms[i];
    for (size_t i = 0; to && i < to->nusers; i++) {
        size_t ulen = strlen(to->users[i]);
        if ((owned[i] = malloc(ulen + 2)) == NULL)
            goto out;
        rooms[k++] = user_room(to->users[i], owned[i], ulen + 2);
    }
    for (size_t i = 0; to && i < to->nexcept; i++)
        except[e++] = to->except[i];
    if (to && to->except_socket != NULL)
        except[e++] = to->except_socket->id;
    if (nsp->rt->cluster != NULL) {
        size_t total;
        const char *p = stored_form(len, msg, &total);
        if (to && to->except_socket != NULL)
            flags |= RT_CLUSTER_EXCEPT_SOCKET;
        seq = p == NULL ? EDDY_ENOMEM
                        : rt_cluster_publish(nsp->rt->cluster, nsp->name, rooms, k, except, e,
                                             flags | (uint32_t)msg->flags, p, total);
    } else {
        seq = record(nsp, rooms, k, except, e, len, msg);
    }
out:
    for (size_t i = 0; owned != NULL && i < to->nusers; i++)
        free(owned[i]);
    free(owned);
    free(rooms);
    free(except);
    return seq;
}

static int broadcast(eddy_rt_nsp_t *nsp, const eddy_rt_to_t *to, const eddy_rt_msg_t *msg)
{
    if (nsp == NULL || msg == NULL || msg->event == NULL || msg->nbin > 64)
        return EDDY_EINVAL;
    ssize_t len = encode_packet(nsp, msg, msg->event, -1);
    if (len < 0)
        return (int)len;
    eddy_rt_t *rt = nsp->rt;
    rt_targets_t direct = {0};
    const char *text = tls_out.p;
    if (rt->cluster != NULL) {
        /* Through the broker: local members get it with everyone else's, on its echo (see
         * rt_cluster.h). While the broker is not up, they get it now, without offset. */
        bool up = rt_cluster_nsp_up(rt->cluster, nsp->name);
        int64_t rc = record_broadcast(nsp, to, (size_t)len, msg, up ? 0 : RT_CLUSTER_DELIVERED);
        if (up && rc == 0)
            return 0;
    }
    /* Stored and published under the table lock: a recovering socket (which restores and
     * subscribes under it too) finds each broadcast either in the store or live, never
     * in neither nor in both. */
    pthread_mutex_lock(&rt->lock);
    if (rt->cluster == NULL && recording(nsp, msg, -1)) {
        int64_t seq = record_broadcast(nsp, to, (size_t)len, msg, 0);
        ssize_t olen =
            seq > 0 && recovering(nsp) ? with_offset(nsp, (uint64_t)seq, text, (size_t)len) : -1;
        if (olen > 0) {
            text = tls_off.p;
            len = olen;
        }
    }
    int rc = publish(nsp, to, msg, text, (size_t)len);
    if (rc == 0)
        rc = collect(nsp, to, true, &direct);
    pthread_mutex_unlock(&rt->lock);
    for (size_t i = 0; rc == 0 && i < direct.n; i++)
        send_text(direct.list[i], text, (size_t)len, msg);
    targets_release(&direct);
    if (rc == 0)
        COUNT(rt, RT_ST_BROADCASTS);
    return rc;
}

int eddy_rt_broadcast(eddy_rt_nsp_t *nsp, const eddy_rt_to_t *to, const eddy_rt_msg_t *msg)
{
    return broadcast(nsp, to, msg);
}

int eddy_rt_broadcast_ack(eddy_rt_nsp_t *nsp, const eddy_rt_to_t *to, const eddy_rt_msg_t *msg,
                          uint32_t timeout_ms, eddy_rt_broadcast_ack_cb cb, void *arg)
{
    if (nsp != NULL && rt_xnode_broker(nsp->rt, nsp->name) != NULL)
        return rt_xnode_broadcast_ack(nsp, to, msg, timeout_ms, cb, arg);
    return rt_xnode_broadcast_ack_local(nsp, to, msg, timeout_ms, cb, arg);
}

int rt_xnode_broadcast_ack_local(eddy_rt_nsp_t *nsp, const eddy_rt_to_t *to,
                                 const eddy_rt_msg_t *msg, uint32_t timeout_ms,
                                 eddy_rt_broadcast_ack_cb cb, void *arg)
{
    if (nsp == NULL || cb == NULL || timeout_ms == 0)
        return EDDY_EINVAL;
    eddy_rt_t *rt = nsp->rt;
    rt_targets_t all = {0};
    pthread_mutex_lock(&rt->lock);
    int rc = collect(nsp, to, false, &all);
    pthread_mutex_unlock(&rt->lock);
    rt_ack_t *a = rc == 0 ? ack_new(nsp, all.n) : NULL;
    if (a == NULL) {
        targets_release(&all);
        return rc != 0 ? rc : EDDY_ENOMEM;
    }
    a->bcb = cb;
    a->arg = arg;
    for (size_t k = 0; k < all.n; k++)
        a->answers[k].socket = all.list[k]; /* the reference moves to the ack */
    free(all.list);
    if (a->n == 0) {
        ack_finish_broadcast(a);
        return 0;
    }
    ssize_t len = encode_packet(nsp, msg, msg->event, (int64_t)(a->id & SIO_MAX_ID));
    if (len < 0 || msg->nbin > 64) {
        ack_free(a);
        return len < 0 ? (int)len : EDDY_EINVAL;
    }
    /* Sockets are registered before any is sent to, so an answer can never arrive before
     * its entry exists. */
    eddy_rt_socket_t **targets = malloc(a->n * sizeof(*targets));
    if (targets == NULL || (rc = ack_arm(a, timeout_ms)) != 0) {
        free(targets);
        ack_free(a);
        return rc != 0 ? rc : EDDY_ENOMEM;
    }
    size_t n = a->n;
    for (size_t k = 0; k < n; k++) {
        targets[k] = a->answers[k].socket;
        eddy_rt_socket_ref(targets[k]);
    }
    for (size_t k = 0; k < n; k++) {
        send_encoded(targets[k], (size_t)len, msg);
        eddy_rt_socket_unref(targets[k]);
    }
    free(targets);
    COUNT(rt, RT_ST_BROADCASTS);
    return 0;
}

/* ---------------------------------------------------------------------------------------
 * Sockets
 * ------------------------------------------------------------------------------------- */

const char *eddy_rt_socket_id(const eddy_rt_socket_t *s)
{
    return s->id;
}

eddy_rt_nsp_t *eddy_rt_socket_nsp(const eddy_rt_socket_t *s)
{
    return s->nsp;
}

int eddy_rt_socket_protocol(const eddy_rt_socket_t *s)
{
    return s->client->protocol == 3 ? 4 : 5;
}

bool eddy_rt_socket_connected(const eddy_rt_socket_t *s)
{
    return atomic_load(&s->connected);
}

bool eddy_rt_socket_recovered(const eddy_rt_socket_t *s)
{
    return s->recovered;
}

/* The header names most WebSocket handshakes carry (lower case). A handshake keeps each as
 * one byte, its index + 1, instead of the name and its NUL: header names are tokens, and
 * never start with a byte below 0x20. */
static const char *const hs_names[] = {
    "host",
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
    "sec-websocket-protocol",
    "user-agent",
    "origin",
    "cookie",
    "accept",
    "accept-encoding",
    "accept-language",
    "cache-control",
    "pragma",
    "referer",
    "authorization",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-real-ip",
    "forwarded",
    "sec-fetch-mode",
    "sec-fetch-site",
    "sec-fetch-dest",
    "sec-ch-ua",
    "sec-ch-ua-mobile",
    "sec-ch-ua-platform",
};

/* The one-byte code of header name, or 0. */
static unsigned char hs_code(const char *name)
{
    for (size_t i = 0; i < sizeof(hs_names) / sizeof(hs_names[0]); i++) {
        if (strcasecmp(name, hs_names[i]) == 0)
            return (unsigned char)(i + 1);
    }
    return 0;
}

/* The pair at p, a query parameter or a header (whose name may be coded): sets *name and
 * *value and returns the next pair. */
static const char *hs_pair(const char *p, bool header, const char **name, const char **value)
{
    unsigned char code = header ? (unsigned char)*p : 0;
    bool coded = code >= 1 && code <= sizeof(hs_names) / sizeof(hs_names[0]);
    *name = coded ? hs_names[code - 1] : p;
    *value = coded ? p + 1 : p + strlen(p) + 1;
    return *value + strlen(*value) + 1;
}

/* The first pair after the address, and skip pairs further. */
static const char *hs_skip(const rt_handshake_t *hs, size_t skip)
{
    const char *p = hs->pairs + strlen(hs->pairs) + 1, *name, *value;
    for (size_t i = 0; i < skip; i++)
        p = hs_pair(p, i >= hs->nquery, &name, &value);
    return p;
}

static const char *hs_lookup(const rt_handshake_t *hs, size_t skip, size_t n, const char *name,
                             bool nocase)
{
    const char *p = hs_skip(hs, skip);
    for (size_t i = 0; i < n; i++) {
        const char *pname, *value;
        p = hs_pair(p, nocase, &pname, &value);
        if (nocase ? strcasecmp(pname, name) == 0 : strcmp(pname, name) == 0)
            return value;
    }
    return NULL;
}

const char *eddy_rt_socket_query(const eddy_rt_socket_t *s, const char *name)
{
    const rt_handshake_t *hs = client_hs(s->client);
    return hs_lookup(hs, 0, hs->nquery, name, false);
}

const char *eddy_rt_socket_header(const eddy_rt_socket_t *s, const char *name)
{
    const rt_handshake_t *hs = client_hs(s->client);
    return hs_lookup(hs, hs->nquery, hs->nheaders, name, true);
}

int eddy_rt_socket_handshake_at(const eddy_rt_socket_t *s, bool header, size_t i, const char **name,
                                const char **value)
{
    const rt_handshake_t *hs = client_hs(s->client);
    if (i >= (header ? hs->nheaders : hs->nquery))
        return EDDY_ENOTFOUND;
    hs_pair(hs_skip(hs, (header ? hs->nquery : 0) + i), header, name, value);
    return 0;
}

const char *eddy_rt_socket_remote_ip(const eddy_rt_socket_t *s)
{
    return client_hs(s->client)->pairs;
}

const char *eddy_rt_socket_auth(const eddy_rt_socket_t *s, size_t *len)
{
    if (len != NULL)
        *len = s->auth != NULL ? s->auth_len : 0;
    return s->auth;
}

int eddy_rt_socket_set_user(eddy_rt_socket_t *s, const char *user_id)
{
    eddy_rt_t *rt = s->nsp->rt;
    int rc = 0;
    pthread_mutex_lock(&rt->lock);
    /* deferred before auth: while a decision waits, s->auth may change in the client's
     * context (the order of the tests matters). */
    if (!atomic_load(&s->connected) && !atomic_load(&s->deferred) && s->auth == NULL) {
        rc = EDDY_ECLOSED;
    } else if (s->user == NULL || user_id == NULL || strcmp(s->user->id, user_id) != 0) {
        user_unlink(s);
        if (user_id != NULL)
            rc = user_link(s, user_id);
        record_rooms(s);
        cluster_presence_user(s);
    }
    pthread_mutex_unlock(&rt->lock);
    return rc;
}

const char *eddy_rt_socket_user(const eddy_rt_socket_t *s)
{
    return s->user != NULL ? s->user->id : NULL;
}

void eddy_rt_socket_set_data(eddy_rt_socket_t *s, void *data)
{
    s->data = data;
}

void *eddy_rt_socket_data(const eddy_rt_socket_t *s)
{
    return s->data;
}

static int connect_decide(eddy_rt_socket_t *s, bool accept, const char *message, const char *data);

static void refusal_record(eddy_rt_socket_t *s, const char *message, const char *data);

int eddy_rt_refuse(eddy_rt_socket_t *s, const char *message, const char *data)
{
    if (!(tls_current == s->client && s->in_connect))
        return connect_decide(s, false, message, data); /* a deferred decision */
    refusal_record(s, message, data);
    return -1;
}

/* Records a refusal on s: in its context (the connect hook, or a deferred decision). */
static void refusal_record(eddy_rt_socket_t *s, const char *message, const char *data)
{
    if (message == NULL)
        message = "refused";
    size_t mlen = strlen(message);
    size_t q = rt_json_write_string(NULL, 0, message, mlen);
    size_t dlen = data != NULL ? strlen(data) : 0;
    size_t need = 12 + q + (data != NULL ? 8 + dlen : 0) + 2;
    free(s->refusal);
    s->refusal = malloc(need);
    if (s->refusal != NULL) {
        char *o = s->refusal;
        o += sprintf(o, "{\"message\":");
        o += rt_json_write_string(o, q, message, mlen);
        if (data != NULL)
            o += sprintf(o, ",\"data\":%s", data);
        strcpy(o, "}");
    }
}

int eddy_rt_join(eddy_rt_socket_t *s, const char *room)
{
    if (room == NULL)
        return EDDY_EINVAL;
    eddy_rt_t *rt = s->nsp->rt;
    size_t len = strlen(room);
    pthread_mutex_lock(&rt->lock);
    int rc = !atomic_load(&s->connected) ? EDDY_ECLOSED
             : strcmp(room, s->id) == 0  ? 0
                                         : room_add(s, room, len);
    if (rc == 1)
        record_rooms(s);
    pthread_mutex_unlock(&rt->lock);
    if (rc == 1 && s->nsp->h.presence != NULL)
        s->nsp->h.presence(s, room, true, s->nsp->h.user_data);
    return rc < 0 ? rc : 0;
}

int eddy_rt_leave(eddy_rt_socket_t *s, const char *room)
{
    if (room == NULL)
        return EDDY_EINVAL;
    eddy_rt_t *rt = s->nsp->rt;
    pthread_mutex_lock(&rt->lock);
    bool left = atomic_load(&s->connected) && room_del(s, room, strlen(room));
    bool closed = !atomic_load(&s->connected);
    if (left)
        record_rooms(s);
    pthread_mutex_unlock(&rt->lock);
    if (left && s->nsp->h.presence != NULL)
        s->nsp->h.presence(s, room, false, s->nsp->h.user_data);
    return closed ? EDDY_ECLOSED : 0;
}

size_t eddy_rt_socket_rooms(eddy_rt_socket_t *s, bool (*visit)(const char *room, void *arg),
                            void *arg)
{
    eddy_rt_t *rt = s->nsp->rt;
    size_t n = 0;
    pthread_mutex_lock(&rt->lock);
    if (atomic_load(&s->connected)) {
        n++;
        if (visit(s->id, arg)) {
            for (rt_member_t *m = s->rooms; m != NULL; m = m->sock_next) {
                n++;
                if (!visit(m->room->name, arg))
                    break;
            }
        }
    }
    pthread_mutex_unlock(&rt->lock);
    return n;
}

eddy_rt_socket_t *eddy_rt_socket_find(eddy_rt_nsp_t *nsp, const char *id)
{
    eddy_rt_t *rt = nsp->rt;
    pthread_mutex_lock(&rt->lock);
    eddy_rt_socket_t *s = socket_by_id(rt, id, strlen(id));
    if (s != NULL && s->nsp == nsp)
        eddy_rt_socket_ref(s);
    else
        s = NULL;
    pthread_mutex_unlock(&rt->lock);
    return s;
}

/* ---------------------------------------------------------------------------------------
 * Connect and disconnect (in the client's context)
 * ------------------------------------------------------------------------------------- */

static void client_close_session(rt_client_t *c)
{
    rt_lock(&c->send_lock);
    if (c->session != NULL)
        eio_close(c->session);
    rt_unlock(&c->send_lock);
}

/* Only a lost transport may be recovered; a namespace disconnect is final. */
static bool transport_lost(const char *reason)
{
    static const char *const lost[] = {"transport error", "transport close", "forced close",
                                       "ping timeout", "server shutting down"};
    for (size_t i = 0; i < sizeof(lost) / sizeof(lost[0]); i++) {
        if (strcmp(reason, lost[i]) == 0)
            return true;
    }
    return false;
}

/* Takes s out of every table, runs disconnecting and disconnect. In s's client context. */
static void socket_close(eddy_rt_socket_t *s, const char *reason)
{
    rt_client_t *c = s->client;
    eddy_rt_nsp_t *nsp = s->nsp;
    eddy_rt_t *rt = nsp->rt;
    if (!atomic_load(&s->connected))
        return;
    if (nsp->h.disconnecting != NULL)
        nsp->h.disconnecting(s, reason, nsp->h.user_data);
    for (eddy_rt_socket_t **it = &c->sockets; *it != NULL; it = &(*it)->client_next) {
        if (*it == s) {
            *it = s->client_next;
            break;
        }
    }
    /* Room names for the presence callback, taken out under the lock, reported after. */
    rt_member_t *rooms;
    pthread_mutex_lock(&rt->lock);
    atomic_store(&s->connected, false);
    if (rt->cluster != NULL && s->pid[0] != '\0') {
        /* Last words of the record: kept for the window, or gone. */
        if (transport_lost(reason))
            cluster_record(s, rt->opt.recovery_max_disconnection_ms);
        else
            rt_cluster_session_drop(rt->cluster, socket_cpid(s));
    }
    if (s->ws)
        topic_sub(s, TOPIC_NSP, "", 0, false);
    rooms = s->rooms;
    s->rooms = NULL;
    size_t nrooms = 0;
    for (rt_member_t *m = rooms; m != NULL; m = m->sock_next)
        nrooms++;
    char **names = nrooms && nsp->h.presence ? calloc(nrooms, sizeof(*names)) : NULL;
    size_t k = 0;
    for (rt_member_t *m = rooms, *next; m != NULL; m = next) {
        next = m->sock_next;
        if (names != NULL)
            names[k++] = strdup(m->room->name);
        if (s->ws)
            topic_sub(s, TOPIC_ROOM, m->room->name, m->room->name_len, false);
        member_unlink(m);
    }
    user_unlink(s);
    if (s->nsp_prev != NULL)
        s->nsp_prev->nsp_next = s->nsp_next;
    else
        nsp->sockets = s->nsp_next;
    if (s->nsp_next != NULL)
        s->nsp_next->nsp_prev = s->nsp_prev;
    nsp->count--;
    if (!s->ws)
        nsp->npolling--;
    hmap_remove(&rt->sockets, &s->id_node);
    if (rt->cluster != NULL)
        rt_cluster_interest(rt->cluster, nsp->name, s->id, false, false);
    if (nsp->hist != NULL && s->pid[0] != '\0' && rt->cluster == NULL) {
        bool keep = transport_lost(reason);
        if (keep)
            rt_history_session_disconnect(nsp->hist, s->pid);
        else
            rt_history_session_remove(nsp->hist, s->pid);
        rt_alias_t *alias =
            strcmp(socket_cpid(s), s->pid) != 0 ? alias_find(rt, socket_cpid(s)) : NULL;
        if (alias != NULL && keep)
            alias->expires_ms = mono_ms() + rt->opt.recovery_max_disconnection_ms;
        else if (alias != NULL)
            alias_drop(rt, socket_cpid(s));
    }
    pthread_mutex_unlock(&rt->lock);
    for (size_t i = 0; i < k; i++) {
        if (names[i] != NULL)
            nsp->h.presence(s, names[i], false, nsp->h.user_data);
        free(names[i]);
    }
    free(names);
    if (nsp->h.disconnect != NULL)
        nsp->h.disconnect(s, reason, nsp->h.user_data);
    s->client_next = c->closed; /* the client's reference goes in client_leave() */
    c->closed = s;
}

static void server_disconnect(eddy_rt_socket_t *s, bool close_client)
{
    rt_client_t *c = s->client;
    if (!atomic_load(&s->connected))
        return;
    send_control(c, s->nsp->name, s->nsp->name_len, SIO_DISCONNECT, NULL, 0);
    socket_close(s, "server namespace disconnect");
    if (close_client)
        client_close_session(c);
}

typedef struct rt_deferred_disconnect {
    eddy_rt_socket_t *s;
    bool close_client;
} rt_deferred_disconnect_t;

static void deferred_disconnect(eddy_server_t *srv, void *arg)
{
    rt_deferred_disconnect_t *d = arg;
    rt_ctx_t ctx;
    client_enter(d->s->client, &ctx, false);
    server_disconnect(d->s, d->close_client);
    client_leave(d->s->client, &ctx);
    eddy_rt_socket_unref(d->s);
    free(d);
}

int eddy_rt_disconnect(eddy_rt_socket_t *s, bool close_client)
{
    if (!atomic_load(&s->connected))
        return EDDY_ECLOSED;
    rt_ctx_t ctx;
    if (!client_enter(s->client, &ctx, tls_current != NULL)) {
        rt_deferred_disconnect_t *d = malloc(sizeof(*d));
        if (d == NULL)
            return EDDY_ENOMEM;
        eddy_rt_socket_ref(s);
        *d = (rt_deferred_disconnect_t){s, close_client};
        int rc = eddy_defer(s->nsp->rt->srv, deferred_disconnect, d);
        if (rc != 0) {
            eddy_rt_socket_unref(s);
            free(d);
        }
        return rc;
    }
    server_disconnect(s, close_client);
    client_leave(s->client, &ctx);
    return 0;
}

/* Builds a v3 namespace's query string ("a=1&b=2") into a JSON object of strings. */
static char *query_to_json(const char *q, size_t len, size_t *out_len)
{
    /* Worst case: every byte escaped as \u00XX (6), and per pair (at least one byte) its
     * key's and value's quotes, a colon and a comma (6): 12 per byte, plus "{}" and NUL. */
    char *out = malloc(len * 12 + 3);
    if (out == NULL)
        return NULL;
    char *o = out;
    *o++ = '{';
    const char *p = q, *end = q + len;
    bool first = true;
    char *tmp = malloc(len + 1);
    if (tmp == NULL) {
        free(out);
        return NULL;
    }
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pe = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(pe - p));
        for (int part = 0; part < 2 && pe > p; part++) {
            const char *a = part == 0 ? p : (eq ? eq + 1 : pe);
            const char *b = part == 0 ? (eq ? eq : pe) : pe;
            size_t n = 0;
            for (const char *c = a; c < b; c++) {
                if (*c == '+') {
                    tmp[n++] = ' ';
                } else if (*c == '%' && b - c >= 3 && isxdigit((unsigned char)c[1]) &&
                           isxdigit((unsigned char)c[2])) {
                    char hex[3] = {c[1], c[2], 0};
                    tmp[n++] = (char)strtol(hex, NULL, 16);
                    c += 2;
                } else {
                    tmp[n++] = *c;
                }
            }
            if (part == 0 && !first)
                *o++ = ',';
            first = false;
            if (!eddy_utf8_valid(tmp, n))
                n = 0;
            o += rt_json_write_string(o, 6 * n + 2, tmp, n);
            if (part == 0)
                *o++ = ':';
        }
        p = amp ? amp + 1 : end;
    }
    *o++ = '}';
    *o = '\0';
    free(tmp);
    *out_len = (size_t)(o - out);
    return out;
}

/* Enters s in the tables (table lock held): by id, in its namespace, as a subscriber of
 * its topics when on WebSocket. Returns 0 or EDDY_ENOMEM. */
static int socket_register(eddy_rt_socket_t *s)
{
    eddy_rt_nsp_t *nsp = s->nsp;
    s->ws = atomic_load(&s->client->ws);
    s->id_node.hash = key_hash(NULL, s->id, strlen(s->id));
    int rc = hmap_insert(&nsp->rt->sockets, &s->id_node);
    if (rc != 0)
        return rc;
    atomic_store(&s->connected, true);
    s->nsp_next = nsp->sockets;
    if (nsp->sockets != NULL)
        nsp->sockets->nsp_prev = s;
    nsp->sockets = s;
    nsp->count++;
    if (!s->ws)
        nsp->npolling++;
    else
        socket_topics(s, true);
    if (nsp->rt->cluster != NULL) /* emits to its id from other nodes */
        rt_cluster_interest(nsp->rt->cluster, nsp->name, s->id, false, true);
    return 0;
}

/* The CONNECT reply: {"sid"} (and "pid" with recovery on); an Engine.IO 3 client gets a
 * bare 40. */
static void send_connected(eddy_rt_socket_t *s)
{
    eddy_rt_nsp_t *nsp = s->nsp;
    if (s->client->protocol == 3) {
        send_control(s->client, nsp->name, nsp->name_len, SIO_CONNECT, NULL, 0);
        return;
    }
    char reply[80];
    int n = s->pid[0] != '\0' ? snprintf(reply, sizeof(reply), "{\"sid\":\"%s\",\"pid\":\"%s\"}",
                                         s->id, socket_cpid(s))
                              : snprintf(reply, sizeof(reply), "{\"sid\":\"%s\"}", s->id);
    send_control(s->client, nsp->name, nsp->name_len, SIO_CONNECT, reply, (size_t)n);
}

/*
 * Connection state recovery (Socket.IO's, with skipMiddlewares): the CONNECT auth carries
 * the pid of an earlier session and the offset of the last event the client got. If the
 * store recovers it, s takes the old id, user and rooms, gets the missed events (with their
 * offsets) and then the CONNECT reply, all under the table lock, so that no broadcast falls
 * between what the store replays and what the subscriptions deliver. The connect hook is
 * skipped. The record is replaced by a fresh one (a new pid). Returns true if recovered.
 */
static bool client_recover(eddy_rt_socket_t *s)
{
    eddy_rt_nsp_t *nsp = s->nsp;
    eddy_rt_t *rt = nsp->rt;
    rt_json_value_t obj, v;
    char pid[RT_HISTORY_PID_SIZE], off[RT_OFFSET_SIZE];
    rt_position_t pos;
    const rt_position_t *posp = NULL;
    if (s->client->protocol == 3 || rt_json_parse(s->auth, s->auth_len, &obj) != 0 ||
        rt_json_find(&obj, "pid", 3, &v) != 0 || v.type != RT_JSON_STRING)
        return false;
    long n = rt_json_unescape(&v, pid, sizeof(pid) - 1);
    if (n != RT_HISTORY_PID_LEN)
        return false;
    pid[n] = '\0';
    if (rt_json_find(&obj, "offset", 6, &v) == 0) {
        long m = v.type == RT_JSON_STRING ? rt_json_unescape(&v, off, sizeof(off) - 1) : -1;
        if (m < 0 || rt_offset_parse(off, (size_t)m, &pos) != 0) {
            pthread_mutex_lock(&rt->lock);
            rt_alias_t *alias = alias_find(rt, pid);
            /* Single use, as a failed recovery. */
            rt_history_session_remove(nsp->hist, alias != NULL ? alias->pid : pid);
            alias_drop(rt, pid);
            pthread_mutex_unlock(&rt->lock);
            COUNT(rt, RT_ST_NOT_RECOVERED);
            return false;
        }
        posp = &pos;
    }
    rt_replay_t replay = {NULL, &replay.head, false};
    rt_history_session_t *rec = NULL;
    bool ok = false;
    pthread_mutex_lock(&rt->lock);
    rt_alias_t *alias = alias_find(rt, pid);
    int rc = rt_history_recover(nsp->hist, alias != NULL ? alias->pid : pid, posp, replay_copy,
                                &replay, &rec);
    if (rc == 0 && !replay.failed && strlen(rec->sid) < sizeof(s->id) &&
        socket_by_id(rt, rec->sid, strlen(rec->sid)) == NULL) {
        strcpy(s->id, rec->sid);
        ok = socket_register(s) == 0;
    }
    if (!ok)
        alias_drop(rt, pid);
    if (ok) {
        for (size_t i = 0; i < rec->nrooms; i++) {
            const char *room = rec->rooms[i];
            if (room[0] == '\x1e')
                user_link(s, room + 1);
            else if (strcmp(room, s->id) != 0)
                room_add(s, room, strlen(room));
        }
        const char *own = s->id;
        rt_history_session_info_t info = {.sid = s->id, .rooms = &own, .nrooms = 1};
        if (rt_history_session_open(nsp->hist, &info, s->pid) == 0) {
            strcpy(socket_cpid(s), pid);
            alias_set(rt, pid, s->pid);
            record_rooms(s);
        } else {
            s->pid[0] = '\0';
            alias_drop(rt, pid);
        }
        s->recovered = true;
        for (rt_missed_t *m = replay.head; m != NULL; m = m->next)
            replay_send(s, m);
        send_connected(s);
    }
    pthread_mutex_unlock(&rt->lock);
    for (rt_missed_t *m = replay.head, *next; m != NULL; m = next) {
        next = m->next;
        free(m);
    }
    rt_history_session_free(rec);
    COUNT(rt, ok ? RT_ST_RECOVERED : RT_ST_NOT_RECOVERED);
    return ok;
}

/* A socket of client_connect() is in its namespace (connected or recovered): on its
 * client's list, the connect timeout stopped, the connection handler told. The auth it
 * borrowed from the CONNECT packet is the handshake's only until then. */
static void socket_joined(eddy_rt_socket_t *s)
{
    rt_client_t *c = s->client;
    s->client_next = c->sockets;
    c->sockets = s;
    if (!atomic_exchange(&c->joined_once, true))
        connect_timer_stop(c);
    if (s->nsp->h.connection != NULL)
        s->nsp->h.connection(s, s->nsp->h.user_data);
    s->auth = NULL;
    s->auth_len = 0;
}

/* A socket of client_connect() that did not join (refused, or out of memory): the user
 * the connect handler may have set is unlinked, the borrowed auth forgotten (the
 * application may hold a reference still), and the socket released. */
static void socket_abandoned(eddy_rt_socket_t *s)
{
    pthread_mutex_lock(&s->client->rt->lock);
    user_unlink(s);
    pthread_mutex_unlock(&s->client->rt->lock);
    s->auth = NULL;
    s->auth_len = 0;
    eddy_rt_socket_unref(s);
}

static void connect_fresh(eddy_rt_socket_t *s, const char *name, size_t name_len);
static bool connect_hold(rt_client_t *c, eddy_rt_socket_t *s);
static void refusal_record(eddy_rt_socket_t *s, const char *message, const char *data);
static bool client_message(rt_client_t *c, const char *data, size_t len, bool binary);
static void connect_refused(rt_client_t *c, eddy_rt_socket_t *s, const char *name, size_t name_len);
static void connect_admit(rt_client_t *c, eddy_rt_socket_t *s);
static void connect_fresh(eddy_rt_socket_t *s, const char *name, size_t name_len);

static void client_connect(rt_client_t *c, const char *name, size_t name_len, const char *auth,
                           size_t auth_len)
{
    eddy_rt_t *rt = c->rt;
    char *v3auth = NULL;
    if (c->protocol == 3) {
        const char *qm = memchr(name, '?', name_len);
        if (qm != NULL) {
            v3auth = query_to_json(qm + 1, (size_t)(name + name_len - qm - 1), &auth_len);
            if (v3auth == NULL)
                return;
            auth = v3auth;
            name_len = (size_t)(qm - name);
        }
    }
    if (auth == NULL) {
        auth = "{}";
        auth_len = 2;
    }
    pthread_mutex_lock(&rt->lock);
    eddy_rt_nsp_t *nsp = nsp_find(rt, name, name_len);
    pthread_mutex_unlock(&rt->lock);
    if (nsp == NULL) {
        static const char invalid[] = "{\"message\":\"Invalid namespace\"}";
        COUNT(rt, RT_ST_CONNECT_NO_NSP);
        send_control(c, name, name_len, SIO_CONNECT_ERROR, invalid, sizeof(invalid) - 1);
        free(v3auth);
        return;
    }
    bool rec = recovering(nsp);
    eddy_rt_socket_t *s = calloc(1, sizeof(*s) + (rec ? 2 * RT_HISTORY_PID_SIZE : 0));
    if (s == NULL) {
        free(v3auth);
        return;
    }
    s->pid = rec ? (char *)(s + 1) : (char *)no_pid;
    atomic_init(&s->refs, 1);
    atomic_fetch_add(&c->refs, 1);
    s->client = c;
    s->nsp = nsp;
    s->auth = auth;
    s->auth_len = auth_len;
    socket_id_new(rt, s->id);
    if (rec && rt->cluster != NULL && c->protocol != 3 &&
        rt_cluster_recover(rt->cluster, s, auth, auth_len)) {
        free(v3auth); /* finishes in resume_run() */
        return;
    }
    if (rec && rt->cluster == NULL && client_recover(s)) {
        COUNT(rt, RT_ST_CONNECT);
        socket_joined(s);
    } else {
        connect_fresh(s, name, name_len);
    }
    free(v3auth);
}

/* A new session for s (its auth set): the connect hook, which may defer its decision
 * (eddy_rt_defer()), then connect_admit() or connect_refused(). name is the namespace as
 * the client wrote it. */
static void connect_fresh(eddy_rt_socket_t *s, const char *name, size_t name_len)
{
    rt_client_t *c = s->client;
    eddy_rt_nsp_t *nsp = s->nsp;
    s->in_connect = true;
    int refused = nsp->h.connect != NULL ? nsp->h.connect(s, nsp->h.user_data) : 0;
    s->in_connect = false;
    if (refused == EDDY_PENDING && atomic_load(&s->deferred) && connect_hold(c, s)) {
        s->auth = NULL;
        s->auth_len = 0;
        return;
    }
    atomic_store(&s->deferred, false);
    if (refused != 0)
        connect_refused(c, s, name, name_len);
    else
        connect_admit(c, s);
}

/* Sends the refusal the connect hook recorded (or "refused") and drops s. In c's context. */
static void connect_refused(rt_client_t *c, eddy_rt_socket_t *s, const char *name, size_t name_len)
{
    COUNT(c->rt, RT_ST_CONNECT_REFUSED);
    const char *msg = s->refusal;
    if (msg == NULL) {
        refusal_record(s, "refused", NULL);
        msg = s->refusal;
    }
    if (msg != NULL && c->protocol == 3) {
        /* Socket.IO v4 (Engine.IO 3) clients get the message alone, as a JSON string. */
        rt_json_value_t obj, m;
        if (rt_json_parse(msg, strlen(msg), &obj) == 0 && rt_json_find(&obj, "message", 7, &m) == 0)
            send_control(c, name, name_len, SIO_CONNECT_ERROR, m.ptr, m.len);
    } else if (msg != NULL) {
        send_control(c, name, name_len, SIO_CONNECT_ERROR, msg, strlen(msg));
    }
    socket_abandoned(s);
}

/* ---------------------------------------------------------------------------------------
 * Deferred connect decisions (eddy_rt_defer())
 *
 * While a connect waits for its decision, the client's later Engine.IO messages wait
 * too, copied, in arrival order (a bounded queue: a client that sends more than
 * max_http_buffer_size bytes or RT_HELD_MAX messages meanwhile is closed), and are
 * dispatched once the decision is made, in the client's context, as if they had just
 * arrived. The socket keeps the layer's reference until then; the client's close drops
 * it (and the queue), after which a decision finds it closed.
 * ------------------------------------------------------------------------------------- */

#define RT_HELD_MAX 1024

typedef struct rt_held_msg {
    struct rt_held_msg *next;
    size_t len;
    bool binary;
    char data[];
} rt_held_msg_t;

typedef struct rt_pending {
    eddy_rt_socket_t *s;
    rt_held_msg_t *head, **tail;
    size_t count, bytes;
} rt_pending_t;

int eddy_rt_defer(eddy_rt_socket_t *s)
{
    if (tls_current != s->client || !s->in_connect)
        return EDDY_ESTATE;
    atomic_store(&s->deferred, true);
    return EDDY_PENDING;
}

static bool connect_hold(rt_client_t *c, eddy_rt_socket_t *s)
{
    rt_pending_t *pend = calloc(1, sizeof(*pend));
    if (pend == NULL)
        return false;
    pend->s = s;
    pend->tail = &pend->head;
    c->pending = pend;
    return true;
}

/* Queues a message that arrived while a connect waits. False: over the bound, or out of
 * memory (the client is then closed). */
static bool connect_hold_message(rt_client_t *c, const void *data, size_t len, bool binary)
{
    rt_pending_t *pend = c->pending;
    if (pend->count >= RT_HELD_MAX || pend->bytes + len > c->rt->opt.max_http_buffer_size) {
        eddy_log(c->rt->srv, EDDY_LOG_INFO,
                 "socket.io: closing session %s: too much input while its connect is decided",
                 c->session ? eio_session_id(c->session) : "-");
        return false;
    }
    rt_held_msg_t *m = malloc(sizeof(*m) + len);
    if (m == NULL)
        return false;
    m->next = NULL;
    m->len = len;
    m->binary = binary;
    memcpy(m->data, data, len);
    *pend->tail = m;
    pend->tail = &m->next;
    pend->count++;
    pend->bytes += len;
    return true;
}

static void held_free(rt_held_msg_t *m)
{
    while (m != NULL) {
        rt_held_msg_t *next = m->next;
        free(m);
        m = next;
    }
}

/* The client closed while its connect waited. In c's context. */
static void connect_pending_drop(rt_client_t *c)
{
    rt_pending_t *pend = c->pending;
    if (pend == NULL)
        return;
    c->pending = NULL;
    eddy_rt_socket_t *s = pend->s;
    atomic_store(&s->deferred, false);
    held_free(pend->head);
    free(pend);
    pthread_mutex_lock(&c->rt->lock);
    user_unlink(s);
    pthread_mutex_unlock(&c->rt->lock);
    eddy_rt_socket_unref(s);
}

/* Applies the decision on s, then dispatches what the client sent meanwhile (up to a
 * next connect that waits: the rest waits behind it). In c's context. Returns 0, or
 * EDDY_ECLOSED when s no longer waits (decided already, or its client closed). */
static int connect_finish(rt_client_t *c, eddy_rt_socket_t *s, bool accept)
{
    rt_pending_t *pend = c->pending;
    if (pend == NULL || pend->s != s || !atomic_load(&s->deferred))
        return EDDY_ECLOSED;
    c->pending = NULL;
    atomic_store(&s->deferred, false);
    if (accept)
        connect_admit(c, s);
    else
        connect_refused(c, s, s->nsp->name, s->nsp->name_len);
    rt_held_msg_t *m = pend->head;
    free(pend);
    bool ok = true;
    while (m != NULL && ok && c->session != NULL) {
        rt_held_msg_t *next = m->next;
        if (c->pending != NULL) /* another connect waits now: the rest queues behind it */
            ok = connect_hold_message(c, m->data, m->len, m->binary);
        else
            ok = client_message(c, m->data, m->len, m->binary);
        free(m);
        m = next;
    }
    held_free(m);
    if (!ok)
        client_close_session(c);
    return 0;
}

typedef struct rt_deferred_decision {
    eddy_rt_socket_t *s;
    bool accept;
    char *message, *data;
} rt_deferred_decision_t;

static void deferred_decision(eddy_server_t *srv, void *arg)
{
    rt_deferred_decision_t *d = arg;
    rt_ctx_t ctx;
    client_enter(d->s->client, &ctx, false);
    if (!d->accept && atomic_load(&d->s->deferred))
        refusal_record(d->s, d->message, d->data);
    connect_finish(d->s->client, d->s, d->accept);
    client_leave(d->s->client, &ctx);
    eddy_rt_socket_unref(d->s);
    free(d->message);
    free(d->data);
    free(d);
}

static int connect_decide(eddy_rt_socket_t *s, bool accept, const char *message, const char *data)
{
    rt_client_t *c = s->client;
    rt_ctx_t ctx;
    if (!client_enter(c, &ctx, tls_current != NULL)) {
        /* Inside another client's dispatch: finish from a deferred call (see Contexts). */
        rt_deferred_decision_t *d = calloc(1, sizeof(*d));
        if (d == NULL || (message != NULL && (d->message = strdup(message)) == NULL) ||
            (data != NULL && (d->data = strdup(data)) == NULL)) {
            if (d != NULL)
                free(d->message);
            free(d);
            return EDDY_ENOMEM;
        }
        d->s = s;
        d->accept = accept;
        eddy_rt_socket_ref(s);
        int rc = eddy_defer(s->nsp->rt->srv, deferred_decision, d);
        if (rc != 0) {
            eddy_rt_socket_unref(s);
            free(d->message);
            free(d->data);
            free(d);
        }
        return rc;
    }
    if (!accept && atomic_load(&s->deferred))
        refusal_record(s, message, data);
    int rc = connect_finish(c, s, accept);
    client_leave(c, &ctx);
    return rc;
}

int eddy_rt_accept(eddy_rt_socket_t *s)
{
    return connect_decide(s, true, NULL, NULL);
}

/* Registers an accepted s, sends its CONNECT reply and runs connection. In c's context. */
static void connect_admit(rt_client_t *c, eddy_rt_socket_t *s)
{
    eddy_rt_t *rt = c->rt;
    eddy_rt_nsp_t *nsp = s->nsp;
    pthread_mutex_lock(&rt->lock);
    int rc = socket_register(s);
    if (rc == 0 && recovering(nsp) && rt->cluster != NULL) {
        /* The record is keyed by the pid the client holds; pid keeps the position the
         * session starts at (see cluster_record()). */
        rt_cluster_session_pid(rt->cluster, nsp->name, socket_cpid(s));
        s->dl_mark = rt_cluster_mark(rt->cluster);
        rt_offset_encode(rt_cluster_position(rt->cluster, nsp->name), s->pid);
        cluster_record(s, 0);
    } else if (rc == 0 && recovering(nsp)) {
        const char *own = s->id;
        rt_history_session_info_t info = {.sid = s->id, .rooms = &own, .nrooms = 1};
        if (rt_history_session_open(nsp->hist, &info, s->pid) == 0) {
            strcpy(socket_cpid(s), s->pid);
            record_rooms(s);
        } else {
            s->pid[0] = '\0'; /* served without recovery */
        }
    }
    if (rc == 0)
        send_connected(s);
    pthread_mutex_unlock(&rt->lock);
    if (rc != 0)
        socket_abandoned(s);
    else {
        COUNT(rt, RT_ST_CONNECT);
        socket_joined(s);
    }
}

/* ---------------------------------------------------------------------------------------
 * Packets from a client (in its context)
 * ------------------------------------------------------------------------------------- */

static eddy_rt_socket_t *client_socket(rt_client_t *c, const char *nsp, size_t len)
{
    for (eddy_rt_socket_t *s = c->sockets; s != NULL; s = s->client_next) {
        if (s->nsp->name_len == len && memcmp(s->nsp->name, nsp, len) == 0)
            return s;
    }
    return NULL;
}

/* Checks every placeholder in the arguments against the attachments received (the
 * reference fails the connection on a bad one). */
static bool placeholders_ok(const rt_json_value_t *v, size_t nbin, int depth)
{
    if (v->type != RT_JSON_ARRAY && v->type != RT_JSON_OBJECT)
        return true;
    size_t num;
    int ph = rt_json_placeholder(v, nbin, &num);
    if (ph != 0)
        return ph == 1;
    rt_json_iter_t it;
    rt_json_value_t child;
    rt_json_iter_init(&it, v);
    while (rt_json_iter_next(&it, NULL, &child)) {
        if (depth < RT_JSON_MAX_DEPTH && !placeholders_ok(&child, nbin, depth + 1))
            return false;
    }
    return true;
}

static bool args_placeholders_ok(const char *args, size_t len, size_t nbin)
{
    rt_json_iter_t it;
    rt_json_value_t v;
    rt_json_iter_init_list(&it, args, len);
    while (rt_json_iter_next(&it, NULL, &v)) {
        if (!placeholders_ok(&v, nbin, 1))
            return false;
    }
    return true;
}

static _Thread_local char tls_name[256];

static void dispatch_event(eddy_rt_socket_t *s, const sio_packet_t *p, const eddy_rt_bin_t *bin,
                           size_t nbin)
{
    eddy_rt_nsp_t *nsp = s->nsp;
    eddy_rt_event_t ev = {.args = p->args ? p->args : "",
                          .args_len = p->args_len,
                          .bin = bin,
                          .nbin = nbin,
                          .ack_id = p->has_id ? (int64_t)p->id : -1};
    if (p->event.type == RT_JSON_NONE)
        return; /* `42` without data: the reference dispatches nothing */
    for (size_t i = 0; i < nsp->nhandlers; i++) {
        rt_handler_t *h = &nsp->handlers[i];
        bool match = p->event.type == RT_JSON_STRING
                         ? rt_json_string_eq(&p->event, h->name, h->len)
                         : (p->event.len == h->len && memcmp(p->event.ptr, h->name, h->len) == 0);
        if (match) {
            ev.name = h->name;
            h->cb(s, &ev, h->user_data);
            return;
        }
    }
    if (nsp->h.any == NULL)
        return;
    long n;
    if (p->event.type == RT_JSON_STRING) {
        n = rt_json_unescape(&p->event, tls_name, sizeof(tls_name) - 1);
    } else {
        n = p->event.len < sizeof(tls_name) ? (long)p->event.len : -1;
        if (n > 0)
            memcpy(tls_name, p->event.ptr, (size_t)n);
    }
    if (n < 0)
        return; /* a name longer than any handler's: nobody can be listening */
    tls_name[n] = '\0';
    ev.name = tls_name;
    nsp->h.any(s, &ev, nsp->h.user_data);
}

/* Handles one decoded packet. Returns false when the connection must close. */
static bool client_packet(rt_client_t *c, const sio_packet_t *p, const eddy_rt_bin_t *bin,
                          size_t nbin)
{
    const char *nsp = p->nsp;
    size_t nsp_len = p->nsp_len;
    if (c->protocol == 3) {
        const char *qm = memchr(nsp, '?', nsp_len);
        if (qm != NULL && p->type != SIO_CONNECT)
            nsp_len = (size_t)(qm - nsp);
    }
    size_t lookup_len = nsp_len;
    if (c->protocol == 3 && p->type == SIO_CONNECT) {
        const char *qm = memchr(nsp, '?', nsp_len);
        if (qm != NULL)
            lookup_len = (size_t)(qm - nsp);
    }
    eddy_rt_socket_t *s = client_socket(c, nsp, lookup_len);
    if (s == NULL && p->type == SIO_CONNECT) {
        client_connect(c, nsp, nsp_len, p->data.type == RT_JSON_NONE ? NULL : p->data.ptr,
                       p->data.len);
        return true;
    }
    if (s == NULL || p->type == SIO_CONNECT || p->type == SIO_CONNECT_ERROR)
        return false; /* as the reference: "invalid state" closes the connection */
    switch (p->type) {
    case SIO_EVENT:
    case SIO_BINARY_EVENT:
        if (nbin > 0 && !args_placeholders_ok(p->args, p->args_len, nbin))
            return false;
        COUNT(c->rt, RT_ST_EVENTS_IN);
        dispatch_event(s, p, bin, nbin);
        return true;
    case SIO_ACK:
    case SIO_BINARY_ACK:
        if (nbin > 0 && !args_placeholders_ok(p->args, p->args_len, nbin))
            return false;
        if (p->has_id)
            ack_received(s, p->id, p->args ? p->args : "", p->args_len, bin, nbin);
        return true;
    case SIO_DISCONNECT:
        socket_close(s, "client namespace disconnect");
        return true;
    default:
        return false;
    }
}

static void binary_free(rt_client_t *c)
{
    rt_binary_t *b = c->binary;
    if (b == NULL)
        return;
    for (size_t i = 0; i < b->received; i++)
        free((void *)b->bin[i].data);
    free(b->text);
    free(b);
    c->binary = NULL;
}

/* Handles one Engine.IO message of c. Returns false when the connection must close. */
static bool client_message(rt_client_t *c, const char *data, size_t len, bool binary)
{
    rt_binary_t *b = c->binary;
    if (binary) {
        if (b == NULL)
            return false; /* an attachment nobody announced */
        void *copy = malloc(len ? len : 1);
        if (copy == NULL || b->bytes + len > c->rt->opt.max_http_buffer_size) {
            free(copy);
            return false;
        }
        memcpy(copy, data, len);
        b->bin[b->received++] = (eddy_rt_bin_t){copy, len};
        b->bytes += len;
        if (b->received < b->expected)
            return true;
        sio_packet_t p;
        c->binary = NULL;
        bool ok = sio_packet_decode(b->text, b->text_len, (unsigned)c->rt->opt.max_attachments,
                                    &p) == 0 &&
                  client_packet(c, &p, b->bin, b->received);
        c->binary = b;
        binary_free(c);
        return ok;
    }
    if (b != NULL)
        return false; /* text while attachments are awaited: the reference fails too */
    sio_packet_t p;
    int rc = sio_packet_decode(data, len, (unsigned)c->rt->opt.max_attachments, &p);
    if (rc != 0) {
        eddy_log(c->rt->srv, EDDY_LOG_INFO, "socket.io: closing session %s: %s",
                 c->session ? eio_session_id(c->session) : "-", sio_strerror(rc));
        return false;
    }
    if (p.attachments > 0) {
        b = calloc(1, sizeof(*b) + p.attachments * sizeof(b->bin[0]));
        if (b == NULL || (b->text = malloc(len)) == NULL) {
            free(b);
            return false;
        }
        memcpy(b->text, data, len);
        b->text_len = len;
        b->expected = p.attachments;
        c->binary = b;
        return true;
    }
    return client_packet(c, &p, NULL, 0);
}

/* ---------------------------------------------------------------------------------------
 * Engine.IO sessions
 * ------------------------------------------------------------------------------------- */

/* A client with a copy of the handshake request req (see rt_handshake_t), or NULL. */
static rt_client_t *client_new(eddy_request_t *req)
{
    const char *ip = eddy_request_remote_ip(req);
    size_t size = sizeof(rt_client_t) + sizeof(rt_handshake_t) + strlen(ip) + 1;
    /* Query items ("&"-separated) decode to at most their own bytes plus two NULs each
     * ("a&b" is "a\0\0b\0\0"). */
    const char *q = eddy_request_query(req);
    size += strlen(q) + 2;
    for (const char *amp = strchr(q, '&'); amp != NULL; amp = strchr(amp + 1, '&'))
        size++;
    size_t nh = eddy_request_header_count(req);
    for (size_t i = 0; i < nh; i++) {
        const char *name, *value;
        if (eddy_request_header_at(req, i, &name, &value) == 0)
            size += (hs_code(name) != 0 ? 1 : strlen(name) + 1) + strlen(value) + 1;
    }
    rt_client_t *client = calloc(1, size);
    if (client == NULL)
        return NULL;
    rt_handshake_t *hs = client_hs(client);
    char *o = stpcpy(hs->pairs, ip) + 1;
    /* Query parameters, percent-decoded (a repeated name keeps its first value here). */
    for (const char *p = q; *p != '\0';) {
        const char *amp = strchr(p, '&');
        const char *pe = amp ? amp : p + strlen(p);
        const char *eq = memchr(p, '=', (size_t)(pe - p));
        for (int part = 0; part < 2; part++) {
            const char *a = part == 0 ? p : (eq ? eq + 1 : pe);
            const char *b = part == 0 ? (eq ? eq : pe) : pe;
            for (const char *c = a; c < b; c++) {
                if (*c == '+') {
                    *o++ = ' ';
                } else if (*c == '%' && b - c >= 3 && isxdigit((unsigned char)c[1]) &&
                           isxdigit((unsigned char)c[2])) {
                    char hex[3] = {c[1], c[2], 0};
                    *o++ = (char)strtol(hex, NULL, 16);
                    c += 2;
                } else {
                    *o++ = *c;
                }
            }
            *o++ = '\0';
        }
        if (hs->nquery < UINT16_MAX)
            hs->nquery++;
        p = amp ? amp + 1 : pe;
    }
    for (size_t i = 0; i < nh && hs->nheaders < UINT16_MAX; i++) {
        const char *name, *value;
        if (eddy_request_header_at(req, i, &name, &value) != 0)
            continue;
        /* memcpy, not stpcpy: ASan checks the bounds of the one, not of the other. */
        unsigned char code = hs_code(name);
        size_t nlen = code != 0 ? 1 : strlen(name) + 1, vlen = strlen(value) + 1;
        if (code != 0)
            *o = (char)code;
        else
            memcpy(o, name, nlen);
        memcpy(o + nlen, value, vlen);
        o += nlen + vlen;
        hs->nheaders++;
    }
    return client;
}

/* The connect timer holds a reference on the client. It is cleared only from its own
 * loop thread, where clearing is exact; elsewhere it is left to fire and finds the client
 * closed. */
static void connect_timeout(eddy_server_t *srv, uint64_t timer_id, void *arg)
{
    rt_client_t *c = arg;
    rt_ctx_t ctx;
    client_enter(c, &ctx, false);
    if (c->connect_timer == timer_id && !atomic_load(&c->joined_once)) {
        eddy_log(srv, EDDY_LOG_DEBUG, "socket.io: no namespace joined within connect_timeout");
        rt_lock(&c->send_lock);
        if (c->session != NULL)
            eio_close(c->session);
        rt_unlock(&c->send_lock);
    }
    c->connect_timer = 0;
    client_leave(c, &ctx);
    orphan_unlink(c);
    client_unref(c);
}

static void orphan_unlink(rt_client_t *c)
{
    eddy_rt_t *rt = c->rt;
    pthread_mutex_lock(&rt->lock);
    if (c->orphan_prev != NULL || rt->orphans == c) {
        if (c->orphan_prev != NULL)
            c->orphan_prev->orphan_next = c->orphan_next;
        else
            rt->orphans = c->orphan_next;
        if (c->orphan_next != NULL)
            c->orphan_next->orphan_prev = c->orphan_prev;
        c->orphan_prev = c->orphan_next = NULL;
    }
    pthread_mutex_unlock(&rt->lock);
}

static void connect_timer_stop(rt_client_t *c)
{
    if (c->connect_timer != 0 && !c->rt->freeing &&
        pthread_equal(c->timer_thread, pthread_self()) &&
        eddy_timer_clear(c->rt->srv, c->connect_timer)) {
        c->connect_timer = 0;
        client_unref(c);
    }
}

static int on_eio_open(eio_session_t *es, eddy_request_t *req, void *ud)
{
    eddy_rt_t *rt = ud;
    rt_client_t *c = client_new(req);
    if (c == NULL) {
        COUNT(rt, RT_ST_OPEN_REFUSED);
        return 503;
    }
    c->rt = rt;
    c->session = es;
    rt_lock_init(&c->lock);
    rt_lock_init(&c->send_lock);
    atomic_init(&c->refs, 1);
    c->protocol = (uint8_t)eio_session_protocol(es);
    atomic_init(&c->ws_fd, 0);
    atomic_init(&c->ws, false);
    c->open_fd = eio_session_ws_fd(es);
    c->counted_ws = c->open_fd != 0;
    COUNT(rt, (c->protocol == 3 ? RT_ST_OPEN_P3_POLLING : RT_ST_OPEN_P4_POLLING) + c->counted_ws);
    if (c->open_fd != 0) {
        c->opening_next = tls_opening;
        tls_opening = c;
    }
    eio_session_set_data(es, c);
    rt_ctx_t ctx;
    client_enter(c, &ctx, false);
    if (rt->opt.connect_timeout_ms > 0) {
        atomic_fetch_add(&c->refs, 1);
        c->timer_thread = pthread_self();
        c->connect_timer =
            eddy_timer_after(rt->srv, rt->opt.connect_timeout_ms, connect_timeout, c);
        if (c->connect_timer == 0)
            atomic_fetch_sub(&c->refs, 1);
    }
    /* Engine.IO 3 clients (Socket.IO v4) are connected to "/" without asking. */
    if (c->protocol == 3)
        client_connect(c, "/", 1, NULL, 0);
    client_leave(c, &ctx);
    return 0;
}

static void on_eio_message(eio_session_t *es, const void *data, size_t len, bool binary, void *ud)
{
    rt_client_t *c = eio_session_data(es);
    if (c == NULL)
        return;
    rt_ctx_t ctx;
    client_enter(c, &ctx, false);
    bool ok = c->pending != NULL ? connect_hold_message(c, data, len, binary)
                                 : client_message(c, data, len, binary);
    client_leave(c, &ctx);
    if (!ok)
        eio_close(es);
}

static void on_eio_close(eio_session_t *es, const char *reason, void *ud)
{
    rt_client_t *c = eio_session_data(es);
    if (c == NULL)
        return;
    rt_ctx_t ctx;
    client_enter(c, &ctx, false);
    COUNT(c->rt,
          (c->protocol == 3 ? RT_ST_CLOSE_P3_POLLING : RT_ST_CLOSE_P4_POLLING) + c->counted_ws);
    binary_free(c);
    if (c->open_fd != 0)
        opening_remove(c);
    /* The session is going: nothing can be sent any more, so no socket tries. */
    rt_lock(&c->send_lock);
    c->session = NULL;
    rt_unlock(&c->send_lock);
    while (c->sockets != NULL)
        socket_close(c->sockets, reason);
    connect_pending_drop(c);
    connect_timer_stop(c);
    if (c->connect_timer != 0) {
        /* Armed on another loop: its reference is released when it fires, or by
         * eddy_rt_free() if the server stops first (a stopped server runs no timers). */
        pthread_mutex_lock(&c->rt->lock);
        c->orphan_prev = NULL;
        c->orphan_next = c->rt->orphans;
        if (c->rt->orphans != NULL)
            c->rt->orphans->orphan_prev = c;
        c->rt->orphans = c;
        pthread_mutex_unlock(&c->rt->lock);
    }
    client_leave(c, &ctx);
    eio_session_set_data(es, NULL);
    client_unref(c);
}

/* ---------------------------------------------------------------------------------------
 * Users and presence
 * ------------------------------------------------------------------------------------- */

static eddy_rt_member_t member_of(eddy_rt_socket_t *s)
{
    return (eddy_rt_member_t){s->id, s->user != NULL ? s->user->id : NULL, s};
}

size_t eddy_rt_room_sockets(eddy_rt_nsp_t *nsp, const char *room, eddy_rt_member_cb visit,
                            void *arg)
{
    eddy_rt_t *rt = nsp->rt;
    size_t n = 0, len = strlen(room);
    pthread_mutex_lock(&rt->lock);
    rt_room_t *r = room_find(rt, nsp, room, len);
    for (rt_member_t *m = r != NULL ? r->members : NULL; m != NULL; m = m->room_next) {
        eddy_rt_member_t mb = member_of(m->socket);
        n++;
        if (!visit(&mb, arg))
            break;
    }
    eddy_rt_socket_t *own = r == NULL ? socket_by_id(rt, room, len) : NULL;
    if (own != NULL && own->nsp == nsp) {
        eddy_rt_member_t mb = member_of(own);
        n++;
        visit(&mb, arg);
    }
    pthread_mutex_unlock(&rt->lock);
    return n;
}

size_t eddy_rt_room_count(eddy_rt_nsp_t *nsp, const char *room)
{
    eddy_rt_t *rt = nsp->rt;
    size_t len = strlen(room);
    pthread_mutex_lock(&rt->lock);
    rt_room_t *r = room_find(rt, nsp, room, len);
    size_t n = r != NULL ? r->count : 0;
    if (r == NULL) {
        eddy_rt_socket_t *own = socket_by_id(rt, room, len);
        n = own != NULL && own->nsp == nsp;
    }
    pthread_mutex_unlock(&rt->lock);
    return n;
}

size_t eddy_rt_room_user_count(eddy_rt_nsp_t *nsp, const char *room)
{
    eddy_rt_t *rt = nsp->rt;
    size_t n = 0;
    pthread_mutex_lock(&rt->lock);
    rt_room_t *r = room_find(rt, nsp, room, strlen(room));
    uint64_t mark = ++rt->mark;
    for (rt_member_t *m = r != NULL ? r->members : NULL; m != NULL; m = m->room_next) {
        rt_user_t *u = m->socket->user;
        if (u != NULL && u->mark != mark) {
            u->mark = mark;
            n++;
        }
    }
    pthread_mutex_unlock(&rt->lock);
    return n;
}

size_t eddy_rt_user_sockets(eddy_rt_nsp_t *nsp, const char *user_id, eddy_rt_member_cb visit,
                            void *arg)
{
    eddy_rt_t *rt = nsp->rt;
    size_t n = 0;
    pthread_mutex_lock(&rt->lock);
    rt_user_t *u = user_find(rt, nsp, user_id);
    for (eddy_rt_socket_t *s = u != NULL ? u->sockets : NULL; s != NULL; s = s->user_next) {
        eddy_rt_member_t mb = member_of(s);
        n++;
        if (!visit(&mb, arg))
            break;
    }
    pthread_mutex_unlock(&rt->lock);
    return n;
}

bool eddy_rt_user_online(eddy_rt_nsp_t *nsp, const char *user_id)
{
    pthread_mutex_lock(&nsp->rt->lock);
    bool online = user_find(nsp->rt, nsp, user_id) != NULL;
    pthread_mutex_unlock(&nsp->rt->lock);
    return online;
}

size_t eddy_rt_user_disconnect(eddy_rt_nsp_t *nsp, const char *user_id, bool close_client)
{
    eddy_rt_to_t to = {.users = &user_id, .nusers = 1};
    rt_targets_t t = {0};
    pthread_mutex_lock(&nsp->rt->lock);
    collect(nsp, &to, false, &t);
    pthread_mutex_unlock(&nsp->rt->lock);
    size_t n = 0;
    for (size_t i = 0; i < t.n; i++)
        n += eddy_rt_disconnect(t.list[i], close_client) == 0;
    targets_release(&t);
    return n;
}

/* ---------------------------------------------------------------------------------------
 * Across nodes: what rt_xnode.c needs of the tables (rt_xnode.h)
 * ------------------------------------------------------------------------------------- */

rt_broker_t *rt_xnode_broker(eddy_rt_t *rt, const char *nsp)
{
    return rt->cluster != NULL && rt_cluster_nsp_up(rt->cluster, nsp)
               ? rt_cluster_broker(rt->cluster)
               : NULL;
}

const char *rt_xnode_node_id(eddy_rt_t *rt)
{
    return rt->cluster != NULL ? rt_broker_node_id(rt_cluster_broker(rt->cluster)) : "";
}

eddy_rt_nsp_t *rt_xnode_nsp(eddy_rt_t *rt, const char *name)
{
    pthread_mutex_lock(&rt->lock);
    eddy_rt_nsp_t *nsp = nsp_find(rt, name, strlen(name));
    pthread_mutex_unlock(&rt->lock);
    return nsp;
}

ssize_t rt_xnode_select(eddy_rt_nsp_t *nsp, const eddy_rt_to_t *to, eddy_rt_socket_t ***out)
{
    rt_targets_t t = {0};
    pthread_mutex_lock(&nsp->rt->lock);
    int rc = collect(nsp, to, false, &t);
    pthread_mutex_unlock(&nsp->rt->lock);
    if (rc != 0) {
        targets_release(&t);
        return rc;
    }
    *out = t.list;
    return (ssize_t)t.n;
}

/* ---------------------------------------------------------------------------------------
 * Arguments
 * ------------------------------------------------------------------------------------- */

static bool arg_at(const eddy_rt_event_t *ev, size_t i, rt_json_value_t *v)
{
    rt_json_iter_t it;
    rt_json_iter_init_list(&it, ev->args, ev->args_len);
    for (size_t k = 0; rt_json_iter_next(&it, NULL, v); k++) {
        if (k == i)
            return true;
    }
    return false;
}

size_t eddy_rt_arg_count(const eddy_rt_event_t *ev)
{
    rt_json_iter_t it;
    rt_json_value_t v;
    size_t n = 0;
    rt_json_iter_init_list(&it, ev->args, ev->args_len);
    while (rt_json_iter_next(&it, NULL, &v))
        n++;
    return n;
}

static int json_type(rt_json_type_t t)
{
    switch (t) {
    case RT_JSON_OBJECT:
        return EDDY_RT_JSON_OBJECT;
    case RT_JSON_ARRAY:
        return EDDY_RT_JSON_ARRAY;
    case RT_JSON_STRING:
        return EDDY_RT_JSON_STRING;
    case RT_JSON_NUMBER:
        return EDDY_RT_JSON_NUMBER;
    case RT_JSON_TRUE:
        return EDDY_RT_JSON_TRUE;
    case RT_JSON_FALSE:
        return EDDY_RT_JSON_FALSE;
    case RT_JSON_NULL:
        return EDDY_RT_JSON_NULL;
    default:
        return EDDY_RT_JSON_NONE;
    }
}

int eddy_rt_arg(const eddy_rt_event_t *ev, size_t i, const char **json, size_t *len)
{
    rt_json_value_t v;
    if (!arg_at(ev, i, &v))
        return EDDY_RT_JSON_NONE;
    size_t num;
    if (v.type == RT_JSON_OBJECT && ev->nbin > 0 && rt_json_placeholder(&v, ev->nbin, &num) == 1) {
        if (json != NULL)
            *json = ev->bin[num].data;
        if (len != NULL)
            *len = ev->bin[num].len;
        return EDDY_RT_JSON_BINARY;
    }
    if (json != NULL)
        *json = v.ptr;
    if (len != NULL)
        *len = v.len;
    return json_type(v.type);
}

ssize_t eddy_rt_arg_string(const eddy_rt_event_t *ev, size_t i, char *buf, size_t cap)
{
    rt_json_value_t v;
    if (!arg_at(ev, i, &v) || v.type != RT_JSON_STRING || cap == 0)
        return EDDY_EINVAL;
    long n = rt_json_unescape(&v, buf, cap - 1);
    if (n < 0)
        return EDDY_ETOOBIG;
    buf[n] = '\0';
    return n;
}

int eddy_rt_json_member(const char *obj, size_t obj_len, const char *key, const char **val,
                        size_t *len)
{
    rt_json_value_t o, v;
    if (obj == NULL || rt_json_parse(obj, obj_len, &o) != 0 ||
        rt_json_find(&o, key, strlen(key), &v) != 0)
        return EDDY_RT_JSON_NONE;
    if (val != NULL)
        *val = v.ptr;
    if (len != NULL)
        *len = v.len;
    return json_type(v.type);
}

/* ---------------------------------------------------------------------------------------
 * History
 * ------------------------------------------------------------------------------------- */

size_t eddy_rt_room_history(eddy_rt_nsp_t *nsp, const char *room, size_t n,
                            eddy_rt_history_cb visit, void *arg)
{
    if (nsp->hist == NULL || n == 0 || visit == NULL)
        return 0;
    /* Copied out first: the store calls back with its mutex held, and the visitor may call
     * anything. */
    rt_replay_t entries = {NULL, &entries.head, false};
    rt_history_recent(nsp->hist, room, n, replay_copy, &entries, NULL);
    size_t visited = 0;
    bool go = true;
    for (rt_missed_t *m = entries.head, *next; m != NULL; m = next) {
        next = m->next;
        uint32_t tlen, nbin;
        memcpy(&tlen, m->payload, 4);
        memcpy(&nbin, m->payload + 4 + tlen, 4);
        eddy_rt_bin_t bin[64];
        size_t at = 4 + tlen + 4;
        for (uint32_t i = 0; i < nbin && i < 64; i++) {
            uint32_t blen;
            memcpy(&blen, m->payload + at, 4);
            bin[i] = (eddy_rt_bin_t){m->payload + at + 4, blen};
            at += 4 + blen;
        }
        sio_packet_t p;
        /* The stored text is an encoded EVENT with its Engine.IO '4'. */
        if (go && tlen > 1 && sio_packet_decode(m->payload + 5, tlen - 1, 64, &p) == 0 &&
            p.event.type == RT_JSON_STRING) {
            char name[256];
            long nl = rt_json_unescape(&p.event, name, sizeof(name) - 1);
            if (nl >= 0) {
                name[nl] = '\0';
                char off[RT_OFFSET_SIZE];
                rt_offset_encode((rt_position_t){nsp->epoch, m->seq}, off);
                eddy_rt_event_t ev = {.name = name,
                                      .args = p.args ? p.args : "",
                                      .args_len = p.args_len,
                                      .bin = bin,
                                      .nbin = nbin < 64 ? nbin : 64,
                                      .ack_id = -1};
                visited++;
                go = visit(nsp, &ev, off, arg);
            }
        }
        free(m);
    }
    return visited;
}

/* ---------------------------------------------------------------------------------------
 * Scale-out: what rt_cluster.c calls back (rt_cluster.h)
 * ------------------------------------------------------------------------------------- */

void rt_cluster_deliver_local(eddy_rt_t *rt, const rt_broker_delivery_t *d)
{
    const char *text;
    size_t len, nbin;
    eddy_rt_bin_t bin[64];
    const rt_broker_msg_t *m = &d->msg;
    if (!stored_parse(m->payload, m->payload_len, &text, &len, bin, &nbin)) {
        eddy_log(rt->srv, EDDY_LOG_WARNING, "eddy_rt: malformed broadcast from node %s dropped",
                 d->origin);
        return;
    }
    /* Target names split back into rooms and users (their pseudo-rooms). */
    const char *stack[64];
    const char **names = m->nrooms <= 64 ? stack : malloc(m->nrooms * sizeof(*names));
    if (names == NULL)
        return;
    size_t nrooms = 0, nusers = 0;
    for (size_t i = 0; i < m->nrooms; i++) {
        if (m->rooms[i][0] != RT_CLUSTER_USER_PREFIX)
            names[nrooms++] = m->rooms[i];
    }
    for (size_t i = 0; i < m->nrooms; i++) {
        if (m->rooms[i][0] == RT_CLUSTER_USER_PREFIX)
            names[nrooms + nusers++] = m->rooms[i] + 1;
    }
    eddy_rt_msg_t msg = {
        .bin = bin, .nbin = nbin, .flags = (int)(m->flags & (EDDY_RT_VOLATILE | EDDY_RT_COMPRESS))};
    rt_targets_t direct = {0};
    int rc = 0;
    pthread_mutex_lock(&rt->lock);
    eddy_rt_nsp_t *nsp = nsp_find(rt, m->nsp, strlen(m->nsp));
    if (nsp != NULL && !(d->own && (m->flags & RT_CLUSTER_DELIVERED))) {
        eddy_rt_to_t to = {names, nrooms, names + nrooms, nusers, m->except, m->nexcept, NULL};
        if ((m->flags & RT_CLUSTER_EXCEPT_SOCKET) && m->nexcept > 0) {
            const char *sid = m->except[m->nexcept - 1];
            eddy_rt_socket_t *sender = socket_by_id(rt, sid, strlen(sid));
            to.except_socket = sender != NULL && sender->nsp == nsp ? sender : NULL;
        }
        if (recovering(nsp) && !(m->flags & EDDY_RT_VOLATILE)) {
            ssize_t olen = with_offset_at(d->pos, text, len);
            if (olen < 0)
                rc = (int)olen;
            text = tls_off.p;
            len = (size_t)olen;
        }
        if (rc == 0)
            rc = publish(nsp, &to, &msg, text, len);
        if (rc == 0)
            rc = collect(nsp, &to, true, &direct);
    }
    if (nsp != NULL)
        rt_cluster_hold(rt->cluster, d);
    pthread_mutex_unlock(&rt->lock);
    for (size_t i = 0; rc == 0 && i < direct.n; i++)
        send_text(direct.list[i], text, len, &msg);
    targets_release(&direct);
    if (names != stack)
        free(names);
}

/* Fans a broadcast from Socket.IO's Redis emitter out to this node's members: every node
 * receives it and serves its own, as Socket.IO's Redis adapter does. It has no position,
 * so it is neither stored nor recoverable. Broker thread. */
void rt_cluster_emitted_local(eddy_rt_t *rt, const rt_emitter_msg_t *m)
{
    rt_json_value_t list, first;
    rt_json_iter_t it;
    char event[256];
    long elen = -1;
    if (rt_json_parse(m->args, m->args_len, &list) == 0 && rt_json_iter_init(&it, &list) == 0 &&
        rt_json_iter_next(&it, NULL, &first))
        elen = rt_json_unescape(&first, event, sizeof(event) - 1);
    if (elen < 0 || m->nattachments > 64) {
        eddy_log(rt->srv, EDDY_LOG_WARNING,
                 "eddy_rt: emitter broadcast from %s dropped (event name over %zu bytes, or "
                 "more than 64 attachments)",
                 m->uid, sizeof(event) - 1);
        return;
    }
    event[elen] = '\0';
    /* The argument list: what follows the name's comma, up to the closing bracket. */
    const char *rest = first.ptr + first.len, *end = m->args + m->args_len - 1;
    while (rest < end && (*rest == ' ' || *rest == '\t' || *rest == '\n' || *rest == '\r'))
        rest++;
    if (rest < end && *rest == ',')
        rest++;
    eddy_rt_bin_t bin[64];
    for (size_t i = 0; i < m->nattachments; i++)
        bin[i] = (eddy_rt_bin_t){m->attachments[i], m->attachment_lens[i]};
    eddy_rt_msg_t msg = {.event = event,
                         .args = rest,
                         .args_len = (size_t)(end - rest),
                         .bin = bin,
                         .nbin = m->nattachments,
                         .flags = (m->volatile_flag ? EDDY_RT_VOLATILE : 0) |
                                  (m->compress == 1 ? EDDY_RT_COMPRESS : 0)};
    eddy_rt_to_t to = {m->rooms, m->nrooms, NULL, 0, m->except, m->nexcept, NULL};
    rt_targets_t direct = {0};
    int rc = EDDY_ENOTFOUND;
    ssize_t len = 0;
    pthread_mutex_lock(&rt->lock);
    eddy_rt_nsp_t *nsp = nsp_find(rt, m->nsp, strlen(m->nsp));
    if (nsp != NULL && (len = encode_packet(nsp, &msg, event, -1)) >= 0 &&
        (rc = publish(nsp, &to, &msg, tls_out.p, (size_t)len)) == 0)
        rc = collect(nsp, &to, true, &direct);
    pthread_mutex_unlock(&rt->lock);
    for (size_t i = 0; rc == 0 && i < direct.n; i++)
        send_text(direct.list[i], tls_out.p, (size_t)len, &msg);
    targets_release(&direct);
    if (rc == 0)
        COUNT(rt, RT_ST_BROADCASTS);
}

void rt_cluster_gap(eddy_rt_t *rt, size_t part)
{
    if (rt->opt.recovery_max_disconnection_ms == 0)
        return;
    rt_targets_t all = {0};
    pthread_mutex_lock(&rt->lock);
    for (eddy_rt_nsp_t *nsp = rt->nsps; nsp != NULL; nsp = nsp->next) {
        if (rt_cluster_part(rt->cluster, nsp->name) != part)
            continue;
        for (eddy_rt_socket_t *s = nsp->sockets; s != NULL; s = s->nsp_next) {
            if (targets_add(&all, s) != 0)
                break;
            eddy_rt_socket_ref(s);
            /* Nothing live reaches it from now on, even before its transport is gone: a
             * later broadcast would move its offset past what it must recover. */
            if (s->ws)
                socket_topics(s, false);
        }
    }
    pthread_mutex_unlock(&rt->lock);
    /* The transport closes ("forced close"): the client reconnects with its last offset and
     * recovers what the outage kept from it, on this node or another. */
    for (size_t i = 0; i < all.n; i++)
        client_close_session(all.list[i]->client);
    targets_release(&all);
}

/* A recovery's outcome on its way to the client's loop. */
typedef struct rt_resume {
    eddy_rt_socket_t *s;
    rt_cluster_recovery_t *r;
    const rt_cluster_restore_t *restore;
    const char *auth;
    size_t auth_len;
} rt_resume_t;

/* Restores s from its record, replays what it missed and answers CONNECT (in its client's
 * context). Returns false when it cannot (the id is in use here, a delivery could not be
 * held): s is then connected afresh. */
static bool cluster_restore(eddy_rt_socket_t *s, rt_cluster_recovery_t *r,
                            const rt_cluster_restore_t *rec)
{
    eddy_rt_t *rt = s->nsp->rt;
    pthread_mutex_lock(&rt->lock);
    bool ok = !rt_cluster_recovery_failed(r) && strlen(rec->sid) < sizeof(s->id) &&
              socket_by_id(rt, rec->sid, strlen(rec->sid)) == NULL;
    if (!ok)
        eddy_log(rt->srv, EDDY_LOG_INFO,
                 "eddy_rt: recovery of %s not possible (its id is in use here, or a broadcast "
                 "could not be held)",
                 rec->sid);
    if (ok) {
        strcpy(s->id, rec->sid);
        ok = socket_register(s) == 0;
    }
    if (ok) {
        for (size_t i = 0; i < rec->nrooms; i++) {
            if (strcmp(rec->rooms[i], s->id) != 0)
                room_add(s, rec->rooms[i], strlen(rec->rooms[i]));
        }
        if (rec->user != NULL)
            user_link(s, rec->user);
        cluster_presence_user(s);
        strcpy(socket_cpid(s), rec->pid);
        rt_offset_encode(rec->at, s->pid);
        s->dl_mark = rt_cluster_mark(rt->cluster);
        cluster_record(s, 0);
        s->recovered = true;
        rt_cluster_replay(r, s);
        send_connected(s);
    }
    pthread_mutex_unlock(&rt->lock);
    return ok;
}

static void resume_run(eddy_server_t *srv, void *arg)
{
    rt_resume_t *x = arg;
    eddy_rt_socket_t *s = x->s;
    rt_client_t *c = s->client;
    rt_ctx_t ctx;
    client_enter(c, &ctx, false);
    if (c->session == NULL) {
        eddy_rt_socket_unref(s); /* the client left meanwhile */
    } else if (x->restore == NULL || !cluster_restore(s, x->r, x->restore)) {
        COUNT(c->rt, RT_ST_NOT_RECOVERED);
        s->auth = x->auth;
        s->auth_len = x->auth_len;
        connect_fresh(s, s->nsp->name, s->nsp->name_len);
    } else {
        COUNT(c->rt, RT_ST_RECOVERED);
        COUNT(c->rt, RT_ST_CONNECT);
        s->auth = x->auth;
        s->auth_len = x->auth_len;
        socket_joined(s);
    }
    client_leave(c, &ctx);
    rt_cluster_recovery_free(x->r);
    free(x);
}

void rt_cluster_resume(eddy_rt_socket_t *s, rt_cluster_recovery_t *r,
                       const rt_cluster_restore_t *restore, const char *auth, size_t auth_len)
{
    eddy_rt_t *rt = s->nsp->rt;
    rt_resume_t *x = malloc(sizeof(*x));
    eddy_fd_t fd = atomic_load(&s->client->ws_fd);
    if (x != NULL) {
        *x = (rt_resume_t){s, r, restore, auth, auth_len};
        if ((fd != 0 && eddy_post(rt->srv, fd, resume_run, x) == 0) ||
            eddy_defer(rt->srv, resume_run, x) == 0)
            return;
    }
    /* The client gets no CONNECT reply and gives up after its timeout. */
    eddy_log(rt->srv, EDDY_LOG_ERROR, "eddy_rt: out of memory finishing a recovery");
    free(x);
    rt_cluster_recovery_free(r);
    eddy_rt_socket_unref(s);
}

/* ---------------------------------------------------------------------------------------
 * Presence across nodes (eddy_rt_room_presence(), eddy_rt_rooms()): the broker's presence
 * hashes in a cluster, the tables on one node
 * ------------------------------------------------------------------------------------- */

void rt_cluster_presence_restore(eddy_rt_t *rt, size_t part, const char *nsp)
{
    pthread_mutex_lock(&rt->lock);
    for (size_t i = 0; i < rt->rooms.nslots; i++) {
        for (rt_hnode_t *it = rt->rooms.slots[i]; it != NULL; it = it->next) {
            rt_room_t *r = CONTAINER(it, rt_room_t, node);
            if (nsp != NULL ? strcmp(r->nsp->name, nsp) != 0
                            : rt_cluster_part(rt->cluster, r->nsp->name) != part)
                continue;
            for (rt_member_t *m = r->members; m != NULL; m = m->room_next) {
                eddy_rt_socket_t *s = m->socket;
                rt_cluster_presence_resync(rt->cluster, r->nsp->name, r->name, s->id,
                                           s->user != NULL ? s->user->id : NULL, m == r->members);
            }
        }
    }
    pthread_mutex_unlock(&rt->lock);
}

void rt_cluster_presence_check(eddy_rt_t *rt, const char *nsp_name, const char *room,
                               const char *sid)
{
    pthread_mutex_lock(&rt->lock);
    eddy_rt_nsp_t *nsp = nsp_find(rt, nsp_name, strlen(nsp_name));
    rt_room_t *r = nsp != NULL ? room_find(rt, nsp, room, strlen(room)) : NULL;
    eddy_rt_socket_t *s = r != NULL && sid != NULL ? socket_by_id(rt, sid, strlen(sid)) : NULL;
    bool held = r != NULL && (sid == NULL || (s != NULL && s->nsp == nsp && socket_in_room(s, r)));
    if (!held)
        rt_cluster_presence_forget(rt->cluster, nsp_name, room, sid);
    pthread_mutex_unlock(&rt->lock);
}

_Static_assert(EDDY_RT_NODE_ID_SIZE == RT_BROKER_NODE_ID_SIZE, "one node id size");

static int node_order(const void *a, const void *b)
{
    return strcmp(a, b);
}

size_t eddy_rt_broker_nodes(eddy_rt_t *rt, char (*ids)[EDDY_RT_NODE_ID_SIZE], size_t max)
{
    if (rt->cluster == NULL)
        return 0;
    size_t n = rt_cluster_nodes(rt->cluster, ids, max);
    qsort(ids, n < max ? n : max, sizeof(*ids), node_order);
    return n;
}

const char *eddy_rt_node_id(eddy_rt_t *rt)
{
    return rt->cluster != NULL ? rt_cluster_node_id(rt->cluster) : NULL;
}

/* A query being answered: its result is built in one block, then handed to cb where the
 * caller asked (pq_deliver()). */
typedef struct rt_pq {
    eddy_server_t *srv;
    eddy_fd_t fd;
    eddy_rt_presence_cb pcb; /* a presence query, else a rooms query (rcb) */
    eddy_rt_rooms_cb rcb;
    void *arg;
    int err;
    const char *node; /* this node's id (cluster) */
    rt_cluster_t *cl;
    const char *nsp; /* its name (lives as long as the layer) */
    eddy_rt_presence_t p;
    eddy_rt_room_info_t *rooms;
    size_t nrooms;
    size_t waiting;     /* rooms queries: per-room reads not answered yet */
    struct rt_pq_room { /* the argument of each per-room read */
        struct rt_pq *q;
        size_t i;
    } * reads;
    void *block; /* every string and array of the result */
} rt_pq_t;

static void pq_free(rt_pq_t *q)
{
    free(q->block);
    free(q->rooms);
    free(q->reads);
    free(q);
}

static void pq_run(eddy_server_t *srv, void *arg)
{
    rt_pq_t *q = arg;
    if (q->pcb != NULL)
        q->pcb(q->err, q->err == 0 ? &q->p : NULL, q->arg);
    else
        q->rcb(q->err, q->err == 0 ? q->rooms : NULL, q->err == 0 ? q->nrooms : 0, q->arg);
    pq_free(q);
}

static void pq_deliver(rt_pq_t *q)
{
    if (q->fd == 0 ||
        (eddy_post(q->srv, q->fd, pq_run, q) != 0 && eddy_defer(q->srv, pq_run, q) != 0))
        pq_run(q->srv, q); /* fd 0, or out of memory: here */
}

/* One socket of a presence answer, its strings not copied yet (user: ulen bytes). */
typedef struct pq_src {
    const char *sid, *user, *node;
    size_t ulen;
} pq_src_t;

static int user_order(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Copies src[0..n) into q->p (one block) with the distinct user ids. */
static int pq_presence(rt_pq_t *q, const pq_src_t *src, size_t n)
{
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += strlen(src[i].sid) + 1 + (src[i].user != NULL ? src[i].ulen + 1 : 0) +
                 (src[i].node != NULL ? strlen(src[i].node) + 1 : 0);
    size_t head = n * (sizeof(eddy_rt_presence_socket_t) + sizeof(char *));
    char *block = malloc(head + bytes + 1);
    if (block == NULL)
        return EDDY_ENOMEM;
    eddy_rt_presence_socket_t *sockets = (eddy_rt_presence_socket_t *)block;
    const char **users = (const char **)(block + n * sizeof(*sockets));
    char *o = block + head;
    size_t nusers = 0;
    for (size_t i = 0; i < n; i++) {
        sockets[i] = (eddy_rt_presence_socket_t){.socket_id = o};
        o = stpcpy(o, src[i].sid) + 1;
        if (src[i].user != NULL) {
            memcpy(o, src[i].user, src[i].ulen);
            o[src[i].ulen] = '\0';
            sockets[i].user_id = users[nusers++] = o;
            o += src[i].ulen + 1;
        }
        if (src[i].node != NULL) {
            sockets[i].node = o;
            o = stpcpy(o, src[i].node) + 1;
        }
    }
    qsort(users, nusers, sizeof(*users), user_order);
    size_t k = 0;
    for (size_t i = 0; i < nusers; i++) {
        if (k == 0 || strcmp(users[k - 1], users[i]) != 0)
            users[k++] = users[i];
    }
    q->block = block;
    q->p = (eddy_rt_presence_t){sockets, n, users, k};
    return 0;
}

/* A presence read answered (the broker's thread). */
static void on_presence(rt_broker_t *b, int err, const rt_broker_presence_t *entries, size_t n,
                        void *arg)
{
    rt_pq_t *q = arg;
    pq_src_t *src = err == 0 ? malloc((n ? n : 1) * sizeof(*src)) : NULL;
    if (err == 0 && src == NULL)
        err = EDDY_ENOMEM;
    for (size_t i = 0; err == 0 && i < n; i++)
        src[i] = (pq_src_t){entries[i].member, entries[i].info_len ? entries[i].info : NULL,
                            entries[i].node, entries[i].info_len};
    if (err == 0)
        err = pq_presence(q, src, n);
    free(src);
    q->err = err;
    pq_deliver(q);
}

static rt_pq_t *pq_new(eddy_rt_nsp_t *nsp, eddy_fd_t fd, void *arg)
{
    rt_pq_t *q = calloc(1, sizeof(*q));
    if (q != NULL) {
        q->srv = nsp->rt->srv;
        q->fd = fd;
        q->arg = arg;
        q->node = eddy_rt_node_id(nsp->rt);
        q->cl = nsp->rt->cluster;
        q->nsp = nsp->name;
    }
    return q;
}

/* The local answer: the members of room (or the socket whose own room it is). Table lock
 * held. */
static int presence_local(rt_pq_t *q, eddy_rt_nsp_t *nsp, const char *room, eddy_rt_socket_t *own)
{
    rt_room_t *r = own == NULL ? room_find(nsp->rt, nsp, room, strlen(room)) : NULL;
    size_t n = own != NULL ? 1 : r != NULL ? r->count : 0;
    pq_src_t *src = malloc((n ? n : 1) * sizeof(*src));
    if (src == NULL)
        return EDDY_ENOMEM;
    size_t k = 0;
    for (rt_member_t *m = r != NULL ? r->members : NULL; own != NULL || m != NULL;
         m = m != NULL ? m->room_next : NULL) {
        eddy_rt_socket_t *s = own != NULL ? own : m->socket;
        const char *user = s->user != NULL ? s->user->id : NULL;
        src[k++] = (pq_src_t){s->id, user, q->node, user != NULL ? strlen(user) : 0};
        own = NULL;
    }
    int rc = pq_presence(q, src, k);
    free(src);
    return rc;
}

int eddy_rt_room_presence(eddy_rt_nsp_t *nsp, const char *room, eddy_fd_t fd,
                          eddy_rt_presence_cb cb, void *arg)
{
    if (room == NULL || cb == NULL)
        return EDDY_EINVAL;
    eddy_rt_t *rt = nsp->rt;
    rt_pq_t *q = pq_new(nsp, fd, arg);
    if (q == NULL)
        return EDDY_ENOMEM;
    q->pcb = cb;
    pthread_mutex_lock(&rt->lock);
    eddy_rt_socket_t *own = socket_by_id(rt, room, strlen(room));
    if (own != NULL && own->nsp != nsp)
        own = NULL;
    int rc = 0;
    bool local = rt->cluster == NULL || own != NULL;
    if (local)
        rc = presence_local(q, nsp, room, own);
    pthread_mutex_unlock(&rt->lock);
    if (!local)
        rc = rt_cluster_presence_get(rt->cluster, nsp->name, room, on_presence, q);
    if (rc != 0) {
        pq_free(q);
        return rc;
    }
    if (local)
        pq_deliver(q);
    return 0;
}

/* A user's info bytes in a presence entry, for counting distinct users. */
typedef struct pq_info {
    const void *p;
    size_t len;
} pq_info_t;

static int info_order(const void *a, const void *b)
{
    const pq_info_t *x = a, *y = b;
    int c = memcmp(x->p, y->p, x->len < y->len ? x->len : y->len);
    return c != 0 ? c : (x->len > y->len) - (x->len < y->len);
}

static int room_order(const void *a, const void *b)
{
    return strcmp(((const eddy_rt_room_info_t *)a)->name, ((const eddy_rt_room_info_t *)b)->name);
}

/* All reads answered: rooms left without members are dropped (the broker's thread). */
static void rooms_done(rt_pq_t *q)
{
    size_t k = 0;
    for (size_t i = 0; i < q->nrooms; i++) {
        if (q->rooms[i].sockets > 0)
            q->rooms[k++] = q->rooms[i];
    }
    q->nrooms = k;
    pq_deliver(q);
}

/* One room's presence read answered (the broker's thread): its counts. */
static void on_room_read(rt_broker_t *b, int err, const rt_broker_presence_t *entries, size_t n,
                         void *arg)
{
    struct rt_pq_room *rd = arg;
    rt_pq_t *q = rd->q;
    pq_info_t *infos = err == 0 ? malloc((n ? n : 1) * sizeof(*infos)) : NULL;
    if (err == 0 && infos == NULL)
        err = EDDY_ENOMEM;
    if (err == 0) {
        size_t k = 0, users = 0;
        for (size_t i = 0; i < n; i++) {
            if (entries[i].info_len > 0)
                infos[k++] = (pq_info_t){entries[i].info, entries[i].info_len};
        }
        qsort(infos, k, sizeof(*infos), info_order);
        for (size_t i = 0; i < k; i++)
            users += i == 0 || info_order(&infos[i - 1], &infos[i]) != 0;
        q->rooms[rd->i].sockets = n;
        q->rooms[rd->i].users = users;
    }
    free(infos);
    if (err != 0 && q->err == 0)
        q->err = err;
    if (--q->waiting == 0)
        rooms_done(q);
}

/* The rooms index read answered (the broker's thread): each room is read in turn. */
static void on_rooms_index(rt_broker_t *b, int err, const rt_broker_presence_t *entries, size_t n,
                           void *arg)
{
    rt_pq_t *q = arg;
    size_t bytes = 1;
    for (size_t i = 0; i < n; i++)
        bytes += strlen(entries[i].member) + 1;
    if (err == 0 && ((q->rooms = calloc(n ? n : 1, sizeof(*q->rooms))) == NULL ||
                     (q->reads = calloc(n ? n : 1, sizeof(*q->reads))) == NULL ||
                     (q->block = malloc(bytes)) == NULL))
        err = EDDY_ENOMEM;
    if (err != 0) {
        q->err = err;
        pq_deliver(q);
        return;
    }
    char *o = q->block;
    for (size_t i = 0; i < n; i++) {
        q->rooms[i].name = o;
        o = stpcpy(o, entries[i].member) + 1;
    }
    /* Each node lists a room it has members of: once per room. */
    qsort(q->rooms, n, sizeof(*q->rooms), room_order);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (k == 0 || strcmp(q->rooms[k - 1].name, q->rooms[i].name) != 0)
            q->rooms[k++] = q->rooms[i];
    }
    q->nrooms = k;
    if (k == 0) {
        pq_deliver(q);
        return;
    }
    /* Answers come on this thread after this handler returns: none before every read is
     * counted in waiting. */
    q->waiting = k;
    for (size_t i = 0; i < k; i++) {
        q->reads[i] = (struct rt_pq_room){q, i};
        int rc =
            rt_cluster_presence_get(q->cl, q->nsp, q->rooms[i].name, on_room_read, &q->reads[i]);
        if (rc != 0) {
            if (q->err == 0)
                q->err = rc;
            if (--q->waiting == 0)
                rooms_done(q);
        }
    }
}

static int user_ptr_order(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;
    return (x > y) - (x < y);
}

/* The local answer: nsp's rooms with their counts (users: distinct rt_user_t). Table lock
 * held. */
static int rooms_local(rt_pq_t *q, eddy_rt_nsp_t *nsp)
{
    size_t n = 0, bytes = 1, most = 0;
    for (size_t i = 0; i < nsp->rt->rooms.nslots; i++) {
        for (rt_hnode_t *it = nsp->rt->rooms.slots[i]; it != NULL; it = it->next) {
            rt_room_t *r = CONTAINER(it, rt_room_t, node);
            if (r->nsp == nsp) {
                n++;
                bytes += r->name_len + 1;
                most = r->count > most ? r->count : most;
            }
        }
    }
    const void **users = malloc((most ? most : 1) * sizeof(*users));
    q->rooms = calloc(n ? n : 1, sizeof(*q->rooms));
    q->block = malloc(bytes);
    if (users == NULL || q->rooms == NULL || q->block == NULL) {
        free(users);
        return EDDY_ENOMEM;
    }
    char *o = q->block;
    for (size_t i = 0; i < nsp->rt->rooms.nslots; i++) {
        for (rt_hnode_t *it = nsp->rt->rooms.slots[i]; it != NULL; it = it->next) {
            rt_room_t *r = CONTAINER(it, rt_room_t, node);
            if (r->nsp != nsp)
                continue;
            size_t k = 0, distinct = 0;
            for (rt_member_t *m = r->members; m != NULL; m = m->room_next) {
                if (m->socket->user != NULL)
                    users[k++] = m->socket->user;
            }
            qsort(users, k, sizeof(*users), user_ptr_order);
            for (size_t j = 0; j < k; j++)
                distinct += j == 0 || users[j - 1] != users[j];
            q->rooms[q->nrooms++] = (eddy_rt_room_info_t){o, r->count, distinct};
            memcpy(o, r->name, r->name_len);
            o[r->name_len] = '\0';
            o += r->name_len + 1;
        }
    }
    free(users);
    qsort(q->rooms, q->nrooms, sizeof(*q->rooms), room_order);
    return 0;
}

int eddy_rt_rooms(eddy_rt_nsp_t *nsp, eddy_fd_t fd, eddy_rt_rooms_cb cb, void *arg)
{
    if (cb == NULL)
        return EDDY_EINVAL;
    eddy_rt_t *rt = nsp->rt;
    rt_pq_t *q = pq_new(nsp, fd, arg);
    if (q == NULL)
        return EDDY_ENOMEM;
    q->rcb = cb;
    int rc;
    if (rt->cluster != NULL) {
        rc = rt_cluster_presence_get(rt->cluster, nsp->name, RT_CLUSTER_ROOMS_INDEX, on_rooms_index,
                                     q);
    } else {
        pthread_mutex_lock(&rt->lock);
        rc = rooms_local(q, nsp);
        pthread_mutex_unlock(&rt->lock);
        if (rc == 0)
            pq_deliver(q);
    }
    if (rc != 0)
        pq_free(q);
    return rc;
}

/* ---------------------------------------------------------------------------------------
 * History on join across nodes (eddy_rt_room_recent()): the broker's room streams in a
 * cluster, the namespace's store on one node
 * ------------------------------------------------------------------------------------- */

typedef struct rt_recent {
    eddy_rt_nsp_t *nsp;
    eddy_fd_t fd;
    eddy_rt_recent_cb cb;
    void *arg;
    int err;
    uint64_t epoch;
    rt_replay_t list; /* the stored forms, oldest first */
} rt_recent_t;

/* Decodes one stored form into ev (its name unescaped into name, cap bytes; its
 * attachments in bin[0..64)). False: not an event the history lists (malformed, or one
 * asking for an ack). */
static bool recent_event(const rt_missed_t *m, eddy_rt_event_t *ev, char *name, size_t cap,
                         eddy_rt_bin_t bin[64])
{
    const char *text;
    size_t tlen, nbin;
    sio_packet_t p;
    if (!stored_parse(m->payload, m->len, &text, &tlen, bin, &nbin) || tlen < 2 ||
        sio_packet_decode(text + 1, tlen - 1, 64, &p) != 0 || p.has_id ||
        p.event.type != RT_JSON_STRING)
        return false;
    long nl = rt_json_unescape(&p.event, name, cap - 1);
    if (nl < 0)
        return false;
    name[nl] = '\0';
    *ev = (eddy_rt_event_t){.name = name,
                            .args = p.args != NULL ? p.args : "",
                            .args_len = p.args_len,
                            .bin = bin,
                            .nbin = nbin,
                            .ack_id = -1};
    return true;
}

static void recent_run(eddy_server_t *srv, void *arg)
{
    rt_recent_t *q = arg;
    size_t n = 0, nbin = 0, names = 0;
    eddy_rt_bin_t bin[64];
    for (rt_missed_t *m = q->list.head; m != NULL; m = m->next) {
        const char *text;
        size_t tlen, nb = 0;
        n++;
        names += m->len + 1; /* a name unescaped is never longer than the packet */
        if (stored_parse(m->payload, m->len, &text, &tlen, bin, &nb))
            nbin += nb;
    }
    eddy_rt_history_entry_t *entries = NULL;
    eddy_rt_event_t *evs = NULL;
    char(*offsets)[RT_OFFSET_SIZE] = NULL;
    char *namebuf = NULL;
    eddy_rt_bin_t *bins = NULL;
    if (q->err == 0) {
        entries = malloc((n ? n : 1) * sizeof(*entries));
        evs = malloc((n ? n : 1) * sizeof(*evs));
        offsets = malloc((n ? n : 1) * sizeof(*offsets));
        namebuf = malloc(names + 1);
        bins = malloc((nbin ? nbin : 1) * sizeof(*bins));
        if (entries == NULL || evs == NULL || offsets == NULL || namebuf == NULL || bins == NULL)
            q->err = EDDY_ENOMEM;
    }
    size_t k = 0, used = 0;
    char *name = namebuf;
    for (rt_missed_t *m = q->list.head; q->err == 0 && m != NULL; m = m->next) {
        if (!recent_event(m, &evs[k], name, m->len + 1, bin))
            continue;
        memcpy(bins + used, bin, evs[k].nbin * sizeof(*bin));
        evs[k].bin = bins + used;
        used += evs[k].nbin;
        name += strlen(name) + 1;
        rt_offset_encode((rt_position_t){q->epoch, m->seq}, offsets[k]);
        entries[k] = (eddy_rt_history_entry_t){&evs[k], offsets[k]};
        k++;
    }
    q->cb(q->nsp, q->err, q->err == 0 ? entries : NULL, q->err == 0 ? k : 0, q->arg);
    free(entries);
    free(evs);
    free(offsets);
    free(namebuf);
    free(bins);
    for (rt_missed_t *m = q->list.head, *next; m != NULL; m = next) {
        next = m->next;
        free(m);
    }
    free(q);
}

static void recent_deliver(rt_recent_t *q)
{
    eddy_server_t *srv = q->nsp->rt->srv;
    if (q->fd == 0 ||
        (eddy_post(srv, q->fd, recent_run, q) != 0 && eddy_defer(srv, recent_run, q) != 0))
        recent_run(srv, q); /* fd 0, or out of memory: here */
}

/* The broker's answer (its thread): the entries copied, volatile ones left out. */
static void on_recent(rt_broker_t *b, int err, rt_position_t top,
                      const rt_broker_delivery_t *entries, size_t n, void *arg)
{
    rt_recent_t *q = arg;
    q->err = err;
    for (size_t i = 0; err == 0 && i < n; i++) {
        if (entries[i].msg.flags & EDDY_RT_VOLATILE)
            continue;
        q->epoch = entries[i].pos.epoch;
        replay_copy(entries[i].pos.seq, entries[i].msg.payload, entries[i].msg.payload_len,
                    &q->list);
    }
    if (q->list.failed)
        q->err = EDDY_ENOMEM;
    recent_deliver(q);
}

int eddy_rt_room_recent(eddy_rt_nsp_t *nsp, const char *room, size_t n, eddy_fd_t fd,
                        eddy_rt_recent_cb cb, void *arg)
{
    if (nsp == NULL || cb == NULL || n == 0)
        return EDDY_EINVAL;
    rt_recent_t *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return EDDY_ENOMEM;
    *q = (rt_recent_t){.nsp = nsp, .fd = fd, .cb = cb, .arg = arg, .epoch = nsp->epoch};
    q->list.tail = &q->list.head;
    eddy_rt_t *rt = nsp->rt;
    if (rt->cluster != NULL) {
        int rc =
            rt_broker_recent(rt_cluster_broker(rt->cluster), nsp->name, room, n, 0, on_recent, q);
        if (rc != 0)
            free(q);
        return rc;
    }
    if (nsp->hist != NULL)
        rt_history_recent(nsp->hist, room, n, replay_copy, &q->list, NULL);
    if (q->list.failed)
        q->err = EDDY_ENOMEM;
    recent_deliver(q);
    return 0;
}

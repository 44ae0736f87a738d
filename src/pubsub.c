/* SPDX-License-Identifier: MIT */
/*
 * Pub/sub: topics, subscriptions, publish and broadcast.
 *
 * Each loop indexes its own subscribers by topic (no locks: only its thread touches them).
 * A small global table, behind one mutex, counts subscribers per topic and per loop, so a
 * publish visits only loops that have subscribers; subscribing and unsubscribing take the
 * lock, publishing takes it once per message, delivering never.
 *
 * A published message is framed once into a shared, reference-counted blob; every
 * recipient's output queue references those bytes, on whatever loop it lives. For
 * subscribers that negotiated permessage-deflate without server context takeover the
 * message is compressed once per window size, also shared. Subscribers whose compression
 * keeps context get the uncompressed frame: a frame compressed once cannot fit each of
 * their histories (set websocket_compression_server_no_context_takeover for fan-out).
 *
 * A publication travels to the other loops through their inboxes, so a subscription made
 * on a loop (by its own thread) could otherwise meet publications made before it that this
 * loop has not delivered yet. Every publication and every subscription take a place on one
 * process-wide clock: a subscriber receives only the publications made after it subscribed,
 * wherever they come from (a layer that sends to a connection directly until it
 * subscribes, such as Socket.IO's upgrade from long-polling, then sends each message once).
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "log.h"
#include "pubsub.h"
#include "ws.h"

static uint64_t topic_hash(const char *name, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)name[i]) * 0x100000001b3ull;
    return h ? h : 1; /* 0 is the map's empty key */
}

/* ---- the global count table ---- */

struct topic_count {
    struct topic_count *chain; /* same hash */
    /* A subscribe from another thread is counted at once by the caller and given back by
     * the owning loop if it made no subscription: counts may run ahead, never behind, so
     * a publish never skips a loop that has subscribers. Signed, for robustness. */
    long total;
    long *per_loop; /* loop_count entries (set under the lock by eddy__topics_reset) */
    size_t name_len;
    char name[];
};

static struct topic_count *count_find(eddy__topics_t *topics, uint64_t hash, const char *name,
                                      size_t len)
{
    for (struct topic_count *tc = eddy__map_get(&topics->counts, hash); tc; tc = tc->chain) {
        if (tc->name_len == len && memcmp(tc->name, name, len) == 0)
            return tc;
    }
    return NULL;
}

/* Adds delta subscribers of loop to a topic's counts. Returns 0 or EDDY_ENOMEM (only when
 * the topic is new to the table). A subscription must not go uncounted (publications
 * would skip its loop); a failed removal only leaves a count running ahead, which is safe. */
static int count_add(eddy_server_t *srv, int loop, const char *name, size_t len, int delta)
{
    eddy__topics_t *topics = &srv->topics;
    uint64_t hash = topic_hash(name, len);
    int rc = 0;
    pthread_mutex_lock(&topics->lock);
    if (loop >= srv->loop_count) { /* a loop of an earlier, wider run: its counts are gone */
        pthread_mutex_unlock(&topics->lock);
        return 0;
    }
    struct topic_count *tc = count_find(topics, hash, name, len);
    if (tc == NULL) {
        tc = calloc(1, sizeof(*tc) + len + 1);
        long *per_loop = calloc((size_t)srv->loop_count, sizeof(*per_loop));
        if (tc != NULL && per_loop != NULL) {
            tc->per_loop = per_loop;
            tc->name_len = len;
            memcpy(tc->name, name, len);
            tc->chain = eddy__map_get(&topics->counts, hash);
            rc = eddy__map_put(&topics->counts, hash, tc);
        } else {
            rc = EDDY_ENOMEM;
        }
        if (rc != 0) {
            free(tc);
            free(per_loop);
            tc = NULL;
        }
    }
    if (tc != NULL) {
        tc->total += delta;
        tc->per_loop[loop] += delta;
    }
    pthread_mutex_unlock(&topics->lock);
    return rc;
}

void eddy__topics_init(eddy__topics_t *topics)
{
    memset(topics, 0, sizeof(*topics));
    pthread_mutex_init(&topics->lock, NULL);
}

static void topics_clear(eddy__topics_t *topics)
{
    for (size_t i = 0; topics->counts.keys && i <= topics->counts.mask; i++) {
        if (topics->counts.keys[i] == 0)
            continue;
        struct topic_count *tc = topics->counts.values[i];
        while (tc != NULL) {
            struct topic_count *next = tc->chain;
            free(tc->per_loop);
            free(tc);
            tc = next;
        }
    }
    eddy__map_free(&topics->counts);
}

void eddy__topics_free(eddy__topics_t *topics)
{
    topics_clear(topics);
    pthread_mutex_destroy(&topics->lock);
}

void eddy__topics_reset(eddy_server_t *srv, int loops)
{
    /* Under the lock, with loop_count: a publisher copies a count array of loop_count
     * entries while it holds the lock, from any thread, at any time. */
    pthread_mutex_lock(&srv->topics.lock);
    topics_clear(&srv->topics);
    srv->loop_count = loops;
    pthread_mutex_unlock(&srv->topics.lock);
}

size_t eddy_topic_subscribers(eddy_server_t *srv, const char *topic)
{
    size_t len = strlen(topic), total = 0;
    pthread_mutex_lock(&srv->topics.lock);
    struct topic_count *tc = count_find(&srv->topics, topic_hash(topic, len), topic, len);
    if (tc != NULL && tc->total > 0)
        total = (size_t)tc->total;
    pthread_mutex_unlock(&srv->topics.lock);
    return total;
}

/* ---- a loop's subscribers ---- */

struct eddy__topic {
    eddy__topic_t *chain; /* same hash */
    eddy__sub_t **subs;
    size_t len;
    size_t cap;
    /* Its role in the publication being delivered (deliver_selected()), 0 otherwise. */
    long mark;
    size_t name_len;
    char name[];
};

struct eddy__sub {
    eddy__conn_t *conn;
    uint64_t since; /* the clock when it was made: it receives later publications only */
    eddy__topic_t *topic;
    size_t index;           /* in topic->subs, for O(1) removal */
    eddy__sub_t *conn_next; /* the connection's next subscription */
};

static void loop_topics_free(void *topics)
{
    /* Connections unsubscribe as they close; only empty indexes can remain. */
    eddy__map_free(topics);
}

/* This loop's topics (EDDY__SLOT_PUBSUB): topic hash -> eddy__topic_t chain. */
static eddy__map_t *loop_topics(eddy__loop_t *loop, bool create)
{
    eddy__map_t *topics = eddy__loop_slot(loop, EDDY__SLOT_PUBSUB);
    if (topics == NULL && create)
        topics = eddy__loop_slot_make(loop, EDDY__SLOT_PUBSUB, sizeof(*topics), loop_topics_free);
    return topics;
}

static eddy__topic_t *local_topic(eddy__loop_t *loop, const char *name, size_t len, bool create)
{
    eddy__map_t *topics = loop_topics(loop, create);
    if (topics == NULL)
        return NULL;
    uint64_t hash = topic_hash(name, len);
    eddy__topic_t *head = eddy__map_get(topics, hash);
    for (eddy__topic_t *t = head; t != NULL; t = t->chain) {
        if (t->name_len == len && memcmp(t->name, name, len) == 0)
            return t;
    }
    if (!create)
        return NULL;
    eddy__topic_t *t = calloc(1, sizeof(*t) + len + 1);
    if (t == NULL)
        return NULL;
    t->name_len = len;
    memcpy(t->name, name, len);
    t->chain = head;
    if (eddy__map_put(topics, hash, t) != 0) {
        free(t);
        return NULL;
    }
    return t;
}

static void local_topic_drop_if_empty(eddy__loop_t *loop, eddy__topic_t *t)
{
    if (t->len > 0)
        return;
    eddy__map_t *topics = loop_topics(loop, false);
    uint64_t hash = topic_hash(t->name, t->name_len);
    eddy__topic_t *head = eddy__map_get(topics, hash);
    if (head == t) {
        if (t->chain != NULL)
            eddy__map_put(topics, hash, t->chain);
        else
            eddy__map_remove(topics, hash);
    } else {
        for (eddy__topic_t *p = head; p != NULL; p = p->chain) {
            if (p->chain == t) {
                p->chain = t->chain;
                break;
            }
        }
    }
    free(t->subs);
    free(t);
}

static int grow(void **items, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t cap2 = *cap ? *cap * 2 : 4;
    while (cap2 < need)
        cap2 *= 2;
    void *grown = realloc(*items, cap2 * sizeof(void *));
    if (grown == NULL)
        return EDDY_ENOMEM;
    *items = grown;
    *cap = cap2;
    return 0;
}

/* The subscription of conn to a topic, or NULL. */
static eddy__sub_t **find_sub(eddy__conn_t *conn, const char *name, size_t len)
{
    for (eddy__sub_t **link = &conn->subs; *link != NULL; link = &(*link)->conn_next) {
        const eddy__topic_t *t = (*link)->topic;
        if (t->name_len == len && memcmp(t->name, name, len) == 0)
            return link;
    }
    return NULL;
}

/* The publication clock: the last place taken (see the top of the file). */
static atomic_uint_fast64_t pub_clock;

static int subscribe_here(eddy__conn_t *conn, const char *name, size_t len, uint64_t since);

/* Subscribes conn as of clock value since. counted: the caller (another thread) already
 * added this subscription to the counts, so that its own publish right after is not
 * skipped for this loop. The count is taken first (it may fail) and given back when no new
 * subscription results. */
static int subscribe_local(eddy__conn_t *conn, const char *name, size_t len, bool counted,
                           uint64_t since)
{
    eddy__loop_t *loop = conn->loop;
    if (!counted && count_add(loop->srv, loop->index, name, len, 1) != 0)
        return EDDY_ENOMEM;
    int rc = subscribe_here(conn, name, len, since);
    if (rc != 0)
        count_add(loop->srv, loop->index, name, len, -1);
    return rc == 1 ? 0 : rc;
}

/* Returns 0 for a new subscription, 1 if it existed, or an error. */
static int subscribe_here(eddy__conn_t *conn, const char *name, size_t len, uint64_t since)
{
    eddy__loop_t *loop = conn->loop;
    /* Published frames are shared unmasked: for the server role only. */
    if (!eddy__ws_open(conn) || conn->ws_status != EDDY_WS_STATUS_ACTIVE || conn->ws_client)
        return EDDY_ESTATE;
    if (find_sub(conn, name, len) != NULL)
        return 1;
    eddy__topic_t *t = local_topic(loop, name, len, true);
    eddy__sub_t *sub = malloc(sizeof(*sub));
    if (t == NULL || sub == NULL || grow((void **)&t->subs, &t->cap, t->len + 1) != 0) {
        free(sub);
        if (t != NULL)
            local_topic_drop_if_empty(loop, t);
        return EDDY_ENOMEM;
    }
    *sub = (eddy__sub_t){
        .conn = conn, .since = since, .topic = t, .index = t->len, .conn_next = conn->subs};
    t->subs[t->len++] = sub;
    conn->subs = sub;
    return 0;
}

/* Removes the subscription *link points to (in its connection's list). */
static void unsubscribe_sub(eddy__conn_t *conn, eddy__sub_t **link)
{
    eddy__loop_t *loop = conn->loop;
    eddy__sub_t *sub = *link;
    eddy__topic_t *t = sub->topic;
    t->subs[sub->index] = t->subs[--t->len];
    t->subs[sub->index]->index = sub->index;
    *link = sub->conn_next;
    count_add(loop->srv, loop->index, t->name, t->name_len, -1);
    local_topic_drop_if_empty(loop, t);
    free(sub);
}

static int unsubscribe_local(eddy__conn_t *conn, const char *name, size_t len)
{
    eddy__sub_t **link = find_sub(conn, name, len);
    if (link != NULL)
        unsubscribe_sub(conn, link);
    return 0;
}

void eddy__pubsub_conn_closed(eddy__conn_t *conn)
{
    while (conn->subs != NULL)
        unsubscribe_sub(conn, &conn->subs);
}

/* ---- subscribe / unsubscribe from any thread ---- */

struct sub_cmd {
    eddy__cmd_t base;
    eddy_fd_t fd;
    bool subscribe;
    uint64_t since; /* the clock at eddy_subscribe() */
    size_t len;
    char name[];
};

static void sub_cmd_run(eddy__loop_t *loop, eddy__cmd_t *cmd)
{
    struct sub_cmd *sc = (struct sub_cmd *)cmd;
    eddy__conn_t *conn = eddy__conn_lookup(loop, sc->fd);
    if (conn != NULL && sc->subscribe)
        subscribe_local(conn, sc->name, sc->len, true, sc->since);
    else if (conn != NULL)
        unsubscribe_local(conn, sc->name, sc->len);
    else if (sc->subscribe) /* gone meanwhile: no subscription to count */
        count_add(loop->srv, loop->index, sc->name, sc->len, -1);
    free(sc);
}

static int change(eddy_server_t *srv, eddy_fd_t fd, const char *topic, bool subscribe)
{
    if (topic == NULL)
        return EDDY_EINVAL;
    size_t len = strlen(topic);
    /* Publications made from now on reach the subscription, those before do not. */
    uint64_t since = atomic_load(&pub_clock);
    eddy__conn_t *conn;
    eddy__session_view_t view;
    if (eddy__session_find(srv, fd, &conn, &view) != 0)
        return EDDY_ENOTFOUND;
    if (conn != NULL)
        return subscribe ? subscribe_local(conn, topic, len, false, since)
                         : unsubscribe_local(conn, topic, len);
    if (subscribe && view.ws_status != EDDY_WS_STATUS_ACTIVE)
        return EDDY_ESTATE;
    struct sub_cmd *sc = malloc(sizeof(*sc) + len + 1);
    if (sc == NULL)
        return EDDY_ENOMEM;
    *sc = (struct sub_cmd){
        .base.fn = sub_cmd_run, .fd = fd, .subscribe = subscribe, .since = since, .len = len};
    memcpy(sc->name, topic, len + 1);
    if (subscribe && count_add(srv, view.loop, topic, len, 1) != 0) { /* see subscribe_local() */
        free(sc);
        return EDDY_ENOMEM;
    }
    eddy__loop_post(srv->loops[view.loop], &sc->base);
    return 0;
}

int eddy_subscribe(eddy_server_t *srv, eddy_fd_t fd, const char *topic)
{
    return change(srv, fd, topic, true);
}

int eddy_unsubscribe(eddy_server_t *srv, eddy_fd_t fd, const char *topic)
{
    return change(srv, fd, topic, false);
}

/* ---- publishing ---- */

/* One message of a publication: framed once, shared by the loops delivering it. */
struct pub_frame {
    eddy__blob_t *plain; /* the frame, uncompressed */
    size_t header_len;   /* payload = plain->data + header_len */
    uint8_t opcode;
    /* By the subscriber's window bits, made on first need (deflated_frame). */
    _Atomic(eddy__blob_t *) deflated[16];
};

/* One published unit (one message, or the parts of eddy_publish_parts()) and whom it is
 * for, shared by the loops delivering it. One allocation: the struct, its frames, then the
 * topic names (each NUL-terminated: the topics, then the except-topics). */
typedef struct publication {
    atomic_int refs;
    bool compress;    /* compressed frames for subscribers that can take them */
    bool is_volatile; /* EDDY_WS_FLAG_VOLATILE */
    bool all;         /* broadcast: every established WebSocket */
    bool selected;    /* eddy_publish_parts(): the union of topics, minus exceptions */
    size_t ntopics;   /* names of topics, then nexcept names of except-topics */
    size_t nexcept;
    eddy_fd_t except_fd;
    uint64_t seq; /* its place on the clock: subscriptions made later do not receive it */
    const char *names;
    size_t nframes;
    struct pub_frame frames[];
} publication_t;

static void publication_unref(publication_t *pub)
{
    if (atomic_fetch_sub_explicit(&pub->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t f = 0; f < pub->nframes; f++) {
        struct pub_frame *frame = &pub->frames[f];
        if (frame->plain != NULL)
            eddy__blob_unref(frame->plain);
        for (size_t i = 0; i < EDDY__ARRAY_SIZE(frame->deflated); i++) {
            eddy__blob_t *blob = atomic_load_explicit(&frame->deflated[i], memory_order_relaxed);
            if (blob != NULL)
                eddy__blob_unref(blob);
        }
    }
    free(pub);
}

/* The frame compressed for a window size, framed; NULL when memory is short. */
static eddy__blob_t *deflate_frame(eddy__loop_t *loop, const struct pub_frame *frame, int bits)
{
    eddy__deflater_t *d = eddy__ws_shared_deflater(loop, bits);
    eddy__buf_t *out = eddy__ws_deflate_out(loop);
    if (d == NULL || out == NULL)
        return NULL;
    eddy__blob_t *blob = NULL;
    size_t payload_len = frame->plain->len - frame->header_len;
    if (eddy__deflate(d, frame->plain->data + frame->header_len, payload_len, out) == 0) {
        uint8_t header[EDDY_WS_MAX_HEADER_LEN];
        size_t header_len = eddy__ws_write_header(
            header, frame->opcode, EDDY_WS_FLAG_FIN | EDDY_WS_FLAG_RSV1, out->len, NULL);
        blob = eddy__blob_new(header_len + out->len);
        if (blob != NULL) {
            memcpy(blob->data, header, header_len);
            memcpy(blob->data + header_len, out->data, out->len);
        }
    }
    eddy__deflater_reset(d);
    return blob;
}

/* The frame compressed for a window size, made once per publication with no lock: the
 * first loop to need it compresses it with its own deflater and publishes it with a
 * compare-and-swap. Two loops that compress at the same moment both succeed at
 * compressing; the one whose swap fails drops its copy and uses the other's. */
static eddy__blob_t *deflated_frame(eddy__loop_t *loop, struct pub_frame *frame, int bits)
{
    eddy__blob_t *blob = atomic_load_explicit(&frame->deflated[bits], memory_order_acquire);
    if (blob != NULL)
        return blob;
    if ((blob = deflate_frame(loop, frame, bits)) == NULL)
        return frame->plain; /* out of memory: uncompressed is still valid */
    eddy__blob_t *first = NULL;
    if (!atomic_compare_exchange_strong_explicit(&frame->deflated[bits], &first, blob,
                                                 memory_order_acq_rel, memory_order_acquire)) {
        eddy__blob_unref(blob);
        blob = first;
    }
    return blob;
}

/* The bytes of frame for a connection whose shared compressor has bits (0: none). The
 * window is fitted to the payload, so subscribers whose windows differ but all hold it
 * share one compressed frame. */
static eddy__blob_t *frame_for(eddy__loop_t *loop, struct pub_frame *frame, int bits)
{
    if (bits == 0)
        return frame->plain;
    size_t payload_len = frame->plain->len - frame->header_len;
    return deflated_frame(loop, frame, eddy__deflate_fit_bits(payload_len, bits));
}

/* Queues the publication's frames for conn, admitted as one unit: a recipient gets all of
 * them, back to back (one loop thread writes its queue), or none. */
static void deliver_to(eddy__conn_t *conn, publication_t *pub)
{
    if (!eddy__ws_open(conn) || conn->ws_status != EDDY_WS_STATUS_ACTIVE ||
        eddy__ws_close_sent(conn))
        return;
    if (pub->is_volatile && eddy__conn_backed_up(conn)) {
        eddy__log(conn->loop->srv, EDDY__LOG_DEBUG,
                  "session#%" PRIu64 ": volatile publication dropped (%zu part%s): %zu bytes "
                  "queued",
                  conn->id, pub->nframes, pub->nframes == 1 ? "" : "s", eddy__conn_out_bytes(conn));
        return;
    }
    int bits = pub->compress ? eddy__ws_shared_deflate_bits(conn) : 0;
    if (pub->nframes == 1) {
        eddy__blob_t *frame = frame_for(conn->loop, &pub->frames[0], bits);
        if (eddy__conn_admit(conn, frame->len) >= 0)
            eddy__conn_write_blob(conn, frame);
        return;
    }
    size_t total = 0;
    for (size_t i = 0; i < pub->nframes; i++)
        total += frame_for(conn->loop, &pub->frames[i], bits)->len;
    if (eddy__conn_admit(conn, total) < 0)
        return;
    /* Out of memory aborts the connection (eddy__conn_write_blob): no unit goes half out. */
    for (size_t i = 0; i < pub->nframes; i++) {
        if (eddy__conn_write_blob(conn, frame_for(conn->loop, &pub->frames[i], bits)) != 0)
            return;
    }
}

/* The next of the NUL-terminated names from *cursor. */
static const char *next_name(const char **cursor, size_t *len)
{
    const char *name = *cursor;
    *len = strlen(name);
    *cursor = name + *len + 1;
    return name;
}

/* Marks this loop's topics with their role in pub (see deliver_selected()), or clears the
 * marks (clear). */
static void mark_topics(eddy__loop_t *loop, const publication_t *pub, bool clear)
{
    const char *cursor = pub->names;
    for (size_t i = 0; i < pub->ntopics + pub->nexcept; i++) {
        size_t len;
        const char *name = next_name(&cursor, &len);
        eddy__topic_t *t = local_topic(loop, name, len, false);
        if (t == NULL)
            continue;
        if (clear)
            t->mark = 0;
        else if (i >= pub->ntopics)
            t->mark = -1; /* an except-topic, also if it is among the topics */
        else if (t->mark == 0)
            t->mark = (long)i + 1; /* a topic named twice keeps its first place */
    }
}

/* Whether conn, a subscriber of the topic marked self, is left out of the publication: it
 * is the excepted connection, subscribed to an except-topic, or to a topic listed before
 * (it got the publication there); subscriptions newer than the publication do not count. */
static bool left_out(const eddy__conn_t *conn, long self, const publication_t *pub)
{
    if (conn->id == pub->except_fd)
        return true;
    for (const eddy__sub_t *sub = conn->subs; sub != NULL; sub = sub->conn_next) {
        long mark = sub->topic->mark;
        if (sub->since >= pub->seq)
            continue;
        if (mark < 0 || (mark > 0 && mark < self))
            return true;
    }
    return false;
}

/* eddy_publish_parts() on one loop. Each topic of this loop is marked with its role:
 * -1 for an except-topic, i + 1 for the i-th topic (its first place), 0 for the others.
 * A subscriber of topic i receives the publication unless it is left out (left_out()):
 * each connection once, with no allocation, at the cost of a walk over its own
 * subscriptions. Delivery never changes subscriptions (see deliver()), so the marks stay
 * valid until they are cleared. */
static void deliver_selected(eddy__loop_t *loop, publication_t *pub)
{
    if (loop_topics(loop, false) == NULL)
        return;
    mark_topics(loop, pub, false);
    const char *cursor = pub->names;
    for (size_t i = 0; i < pub->ntopics; i++) {
        size_t len;
        const char *name = next_name(&cursor, &len);
        eddy__topic_t *t = local_topic(loop, name, len, false);
        if (t == NULL || t->mark != (long)i + 1) /* excepted, or named before */
            continue;
        for (size_t s = 0; s < t->len; s++) {
            const eddy__sub_t *sub = t->subs[s];
            if (sub->since < pub->seq && !left_out(sub->conn, t->mark, pub))
                deliver_to(sub->conn, pub);
        }
    }
    mark_topics(loop, pub, true);
}

static void deliver(eddy__loop_t *loop, publication_t *pub)
{
    if (pub->all) {
        /* Delivery closes at most (slow consumers); nothing leaves the map meanwhile. */
        size_t it = 0;
        for (eddy__conn_t *conn; (conn = eddy__conn_next(loop, &it)) != NULL;)
            deliver_to(conn, pub);
        return;
    }
    if (pub->selected) {
        deliver_selected(loop, pub);
        return;
    }
    eddy__topic_t *t = local_topic(loop, pub->names, strlen(pub->names), false);
    /* Delivery never changes subscriptions: a connection closed meanwhile (a slow consumer)
     * unsubscribes only when it is released, after this. */
    for (size_t i = 0; t != NULL && i < t->len; i++) {
        if (t->subs[i]->since < pub->seq)
            deliver_to(t->subs[i]->conn, pub);
    }
}

struct pub_cmd {
    eddy__cmd_t base;
    publication_t *pub;
};

static void pub_cmd_run(eddy__loop_t *loop, eddy__cmd_t *cmd)
{
    struct pub_cmd *pc = (struct pub_cmd *)cmd;
    deliver(loop, pc->pub);
    publication_unref(pc->pub);
    free(pc);
}

/* Frames one message into frame (a shared blob). Returns 0 or EDDY_ENOMEM. */
static int frame_part(struct pub_frame *frame, const void *data, size_t len, int opcode)
{
    uint8_t header[EDDY_WS_MAX_HEADER_LEN];
    frame->header_len = eddy__ws_write_header(header, (uint8_t)opcode, EDDY_WS_FLAG_FIN, len, NULL);
    frame->plain = eddy__blob_new(frame->header_len + len);
    if (frame->plain == NULL)
        return EDDY_ENOMEM;
    memcpy(frame->plain->data, header, frame->header_len);
    if (len)
        memcpy(frame->plain->data + frame->header_len, data, len);
    frame->opcode = (uint8_t)opcode;
    return 0;
}

/* A publication of nparts messages (parts, or the single message data/len/opcode when
 * parts is NULL), with names_len bytes of names to be filled by the caller. */
static publication_t *publication_new(eddy_server_t *srv, const eddy_part_t *parts, size_t nparts,
                                      const void *data, size_t len, int opcode, int flags,
                                      size_t names_len)
{
    size_t frames_size = nparts * sizeof(struct pub_frame);
    publication_t *pub = calloc(1, sizeof(*pub) + frames_size + names_len);
    if (pub == NULL)
        return NULL;
    atomic_init(&pub->refs, 1);
    pub->seq = atomic_fetch_add(&pub_clock, 1) + 1;
    pub->nframes = nparts;
    pub->names = (const char *)pub->frames + frames_size;
    size_t threshold = srv->opts.websocket_compression_threshold;
    bool over_threshold = false;
    for (size_t i = 0; i < nparts; i++) {
        const eddy_part_t part = parts ? parts[i] : (eddy_part_t){data, len, opcode};
        if (frame_part(&pub->frames[i], part.data, part.len, part.opcode) != 0) {
            publication_unref(pub);
            return NULL;
        }
        over_threshold |= threshold > 0 && part.len >= threshold;
    }
    pub->compress =
        srv->opts.websocket_compression && ((flags & EDDY_WS_FLAG_COMPRESS) || over_threshold);
    pub->is_volatile = (flags & EDDY_WS_FLAG_VOLATILE) != 0;
    return pub;
}

/* Hands pub to every loop of the first n whose count is non-zero (all of them when counts
 * is NULL). */
static int dispatch(eddy_server_t *srv, publication_t *pub, const long *counts, int n)
{
    eddy__loop_t *here = eddy__loop_here(srv);
    int rc = 0;
    for (int i = 0; i < n; i++) {
        if (counts != NULL && counts[i] <= 0)
            continue;
        if (srv->loops[i] == here) {
            deliver(here, pub); /* the publisher's own loop: at once */
            continue;
        }
        struct pub_cmd *pc = malloc(sizeof(*pc));
        if (pc == NULL) {
            rc = EDDY_ENOMEM;
            continue;
        }
        atomic_fetch_add_explicit(&pub->refs, 1, memory_order_relaxed);
        *pc = (struct pub_cmd){.base.fn = pub_cmd_run, .pub = pub};
        eddy__loop_post(srv->loops[i], &pc->base);
    }
    publication_unref(pub);
    return rc;
}

static int check_message(eddy_server_t *srv, const void *data, size_t len, int opcode)
{
    if (opcode != EDDY_WS_OPCODE_TEXT && opcode != EDDY_WS_OPCODE_BINARY)
        return EDDY_EINVAL;
    if (data == NULL && len > 0)
        return EDDY_EINVAL;
    return len > eddy__package_max_length(srv) ? EDDY_ETOOBIG : 0;
}

int eddy_publish(eddy_server_t *srv, const char *topic, const void *data, size_t len, int opcode,
                 int flags)
{
    if (topic == NULL)
        return EDDY_EINVAL;
    int rc = check_message(srv, data, len, opcode);
    if (rc != 0)
        return rc;
    size_t topic_len = strlen(topic);
    long counts[EDDY__MAX_LOOPS];
    long total = 0;
    pthread_mutex_lock(&srv->topics.lock);
    int n = srv->loop_count; /* the count arrays' length while the lock is held */
    struct topic_count *tc =
        count_find(&srv->topics, topic_hash(topic, topic_len), topic, topic_len);
    if (tc != NULL) {
        total = tc->total;
        memcpy(counts, tc->per_loop, (size_t)n * sizeof(*counts));
    }
    pthread_mutex_unlock(&srv->topics.lock);
    if (total <= 0)
        return 0;
    publication_t *pub = publication_new(srv, NULL, 1, data, len, opcode, flags, topic_len + 1);
    if (pub == NULL)
        return EDDY_ENOMEM;
    memcpy((char *)pub->names, topic, topic_len); /* NUL from calloc */
    rc = dispatch(srv, pub, counts, n);
    return rc != 0 ? rc : (int)EDDY__MIN(total, (long)INT32_MAX);
}

int eddy_publish_parts(eddy_server_t *srv, const eddy_publish_spec_t *spec,
                       const eddy_part_t *parts, size_t nparts)
{
    if (spec == NULL || spec->topics == NULL || spec->ntopics == 0 ||
        (spec->except_topics == NULL && spec->nexcept > 0))
        return EDDY_EINVAL;
    int rc = eddy__ws_parts_check(srv, parts, nparts);
    if (rc != 0)
        return rc;
    size_t names_len = 0;
    for (size_t i = 0; i < spec->ntopics + spec->nexcept; i++) {
        const char *name =
            i < spec->ntopics ? spec->topics[i] : spec->except_topics[i - spec->ntopics];
        if (name == NULL)
            return EDDY_EINVAL;
        names_len += strlen(name) + 1;
    }
    /* Loops with a subscriber of any topic, each distinct topic counted once. */
    long counts[EDDY__MAX_LOOPS] = {0};
    long total = 0;
    pthread_mutex_lock(&srv->topics.lock);
    int n = srv->loop_count;
    for (size_t i = 0; i < spec->ntopics; i++) {
        const char *name = spec->topics[i];
        size_t len = strlen(name);
        struct topic_count *tc = count_find(&srv->topics, topic_hash(name, len), name, len);
        bool again = false;
        for (size_t j = 0; tc != NULL && j < i && !again; j++)
            again = strcmp(spec->topics[j], name) == 0;
        if (tc == NULL || again || tc->total <= 0)
            continue;
        total += tc->total;
        for (int l = 0; l < n; l++)
            counts[l] += tc->per_loop[l];
    }
    pthread_mutex_unlock(&srv->topics.lock);
    if (total <= 0)
        return 0;
    publication_t *pub = publication_new(srv, parts, nparts, NULL, 0, 0, spec->flags, names_len);
    if (pub == NULL)
        return EDDY_ENOMEM;
    pub->selected = true;
    pub->ntopics = spec->ntopics;
    pub->nexcept = spec->nexcept;
    pub->except_fd = spec->except_fd;
    char *names = (char *)pub->names;
    for (size_t i = 0; i < spec->ntopics + spec->nexcept; i++) {
        const char *name =
            i < spec->ntopics ? spec->topics[i] : spec->except_topics[i - spec->ntopics];
        size_t len = strlen(name) + 1;
        memcpy(names, name, len);
        names += len;
    }
    rc = dispatch(srv, pub, counts, n);
    return rc != 0 ? rc : (int)EDDY__MIN(total, (long)INT32_MAX);
}

int eddy_broadcast(eddy_server_t *srv, const void *data, size_t len, int opcode, int flags)
{
    int rc = check_message(srv, data, len, opcode);
    if (rc != 0)
        return rc;
    publication_t *pub = publication_new(srv, NULL, 1, data, len, opcode, flags, 1);
    if (pub == NULL)
        return EDDY_ENOMEM;
    pub->all = true;
    return dispatch(srv, pub, NULL, srv->loop_count);
}

/* SPDX-License-Identifier: MIT */
/*
 * Across nodes (rt_xnode.h): remote join, leave and disconnect, the cluster-wide listing of
 * sockets (fetchSockets()) and broadcasts with acknowledgement, as node requests through the
 * broker; on one node (or while Redis is down) the same operations on this node's sockets.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_xnode.h"

/* How long a remote join holds this node's later broadcasts at most (a frozen node). */
#define XNODE_JOIN_HOLD_MS 1000
/* What a cluster-wide broadcast with acknowledgement waits beyond its timeout for the
 * nodes' reports to travel. */
#define XNODE_ACK_TRANSIT_MS 500
/* The commands without answers still need a timeout for the broker (unused). */
#define XNODE_FIRE_MS 1000

/* ---------------------------------------------------------------------------------------
 * Writing and reading the formats (bounds checked: what arrives comes from Redis)
 * ------------------------------------------------------------------------------------- */

typedef struct wbuf {
    char *p;
    size_t len, cap;
    bool oom;
} wbuf_t;

static void w_put(wbuf_t *w, const void *d, size_t n)
{
    if (w->oom)
        return;
    if (w->len + n > w->cap) {
        size_t cap = w->cap ? w->cap : 256;
        while (cap < w->len + n)
            cap *= 2;
        char *p = realloc(w->p, cap);
        if (p == NULL) {
            w->oom = true;
            return;
        }
        w->p = p;
        w->cap = cap;
    }
    if (n)
        memcpy(w->p + w->len, d, n);
    w->len += n;
}

static void w_u8(wbuf_t *w, uint8_t v)
{
    w_put(w, &v, 1);
}

static void w_u16(wbuf_t *w, uint16_t v)
{
    unsigned char b[2] = {(unsigned char)v, (unsigned char)(v >> 8)};
    w_put(w, b, 2);
}

static void w_u32(wbuf_t *w, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    w_put(w, b, 4);
}

static void w_str(wbuf_t *w, const char *s)
{
    w_put(w, s, strlen(s) + 1);
}

static void w_bytes(wbuf_t *w, const void *d, size_t n)
{
    w_u32(w, (uint32_t)n);
    w_put(w, d, n);
}

typedef struct rd {
    const unsigned char *p, *end;
    bool bad;
} rd_t;

static const void *r_take(rd_t *r, size_t n)
{
    if (r->bad || (size_t)(r->end - r->p) < n) {
        r->bad = true;
        return NULL;
    }
    const void *at = r->p;
    r->p += n;
    return at;
}

static uint32_t r_uint(rd_t *r, size_t n)
{
    const unsigned char *b = r_take(r, n);
    uint32_t v = 0;
    for (size_t i = 0; b != NULL && i < n; i++)
        v |= (uint32_t)b[i] << (8 * i);
    return v;
}

static const char *r_str(rd_t *r)
{
    if (r->bad)
        return NULL;
    const unsigned char *nul = memchr(r->p, 0, (size_t)(r->end - r->p));
    if (nul == NULL) {
        r->bad = true;
        return NULL;
    }
    const char *s = (const char *)r->p;
    r->p = nul + 1;
    return s;
}

static const void *r_bytes(rd_t *r, size_t *n)
{
    *n = r_uint(r, 4);
    return r_take(r, *n);
}

/* ---------------------------------------------------------------------------------------
 * Commands
 * ------------------------------------------------------------------------------------- */

static size_t count_of(const eddy_rt_to_t *to, int which)
{
    if (to == NULL)
        return 0;
    return which == 0   ? to->nrooms
           : which == 1 ? to->nusers
                        : to->nexcept + (to->except_socket != NULL);
}

static int cmd_encode(wbuf_t *w, char op, uint8_t flags, uint32_t timeout_ms, const char *nsp,
                      const eddy_rt_to_t *to, const char *const *targets, size_t ntargets,
                      const eddy_rt_msg_t *msg)
{
    size_t nr = count_of(to, 0), nu = count_of(to, 1), ne = count_of(to, 2);
    if (nr > 65535 || nu > 65535 || ne > 65535 || ntargets > 65535 || (ntargets && !targets))
        return EDDY_EINVAL;
    for (size_t i = 0; i < nr; i++)
        if (to->rooms[i] == NULL)
            return EDDY_EINVAL;
    for (size_t i = 0; i < nu; i++)
        if (to->users[i] == NULL)
            return EDDY_EINVAL;
    for (size_t i = 0; i < (to ? to->nexcept : 0); i++)
        if (to->except[i] == NULL)
            return EDDY_EINVAL;
    for (size_t i = 0; i < ntargets; i++)
        if (targets[i] == NULL)
            return EDDY_EINVAL;
    w_u8(w, 1);
    w_u8(w, (uint8_t)op);
    w_u8(w, flags);
    w_u32(w, timeout_ms);
    w_u16(w, (uint16_t)nr);
    w_u16(w, (uint16_t)nu);
    w_u16(w, (uint16_t)ne);
    w_u16(w, (uint16_t)ntargets);
    w_str(w, nsp);
    for (size_t i = 0; i < nr; i++)
        w_str(w, to->rooms[i]);
    for (size_t i = 0; i < nu; i++)
        w_str(w, to->users[i]);
    for (size_t i = 0; i < (to ? to->nexcept : 0); i++)
        w_str(w, to->except[i]);
    if (to != NULL && to->except_socket != NULL)
        w_str(w, eddy_rt_socket_id(to->except_socket));
    for (size_t i = 0; i < ntargets; i++)
        w_str(w, targets[i]);
    if (op == RT_XNODE_ACK) {
        if (msg == NULL || msg->event == NULL || msg->nbin > 64 || (msg->args_len && !msg->args))
            return EDDY_EINVAL;
        w_str(w, msg->event);
        w_bytes(w, msg->args, msg->args_len);
        w_u8(w, (uint8_t)msg->nbin);
        for (size_t i = 0; i < msg->nbin; i++)
            w_bytes(w, msg->bin[i].data, msg->bin[i].len);
        w_u32(w, (uint32_t)msg->flags);
    }
    return w->oom ? EDDY_ENOMEM : 0;
}

int rt_xnode_cmd_decode(const void *buf, size_t len, rt_xnode_cmd_t *c)
{
    memset(c, 0, sizeof(*c));
    rd_t r = {buf, (const unsigned char *)buf + len, buf == NULL};
    if (r_uint(&r, 1) != 1)
        return EDDY_EPROTO;
    c->op = (char)r_uint(&r, 1);
    c->flags = (uint8_t)r_uint(&r, 1);
    c->timeout_ms = r_uint(&r, 4);
    size_t nr = r_uint(&r, 2), nu = r_uint(&r, 2), ne = r_uint(&r, 2), nt = r_uint(&r, 2);
    c->nsp = r_str(&r);
    if (r.bad || strchr("jldfa", c->op) == NULL || c->op == 0)
        return EDDY_EPROTO;
    size_t total = nr + nu + ne + nt;
    if ((c->names = calloc(total ? total : 1, sizeof(*c->names))) == NULL)
        return EDDY_ENOMEM;
    for (size_t i = 0; i < total; i++)
        c->names[i] = r_str(&r);
    if (r.bad) {
        rt_xnode_cmd_clear(c);
        return EDDY_EPROTO;
    }
    c->to = (eddy_rt_to_t){c->names, nr, c->names + nr, nu, c->names + nr + nu, ne, NULL};
    c->targets = c->names + nr + nu + ne;
    c->ntargets = nt;
    if (c->op == RT_XNODE_ACK) {
        c->msg.event = r_str(&r);
        c->msg.args = r_bytes(&r, &c->msg.args_len);
        c->msg.nbin = r_uint(&r, 1);
        if (!r.bad && c->msg.nbin > 64)
            r.bad = true;
        if (!r.bad && c->msg.nbin && (c->bin = calloc(c->msg.nbin, sizeof(*c->bin))) == NULL) {
            rt_xnode_cmd_clear(c);
            return EDDY_ENOMEM;
        }
        for (size_t i = 0; !r.bad && i < c->msg.nbin; i++)
            c->bin[i].data = r_bytes(&r, &c->bin[i].len);
        c->msg.bin = c->bin;
        c->msg.flags = (int)r_uint(&r, 4);
    }
    if (r.bad || r.p != r.end) {
        rt_xnode_cmd_clear(c);
        return EDDY_EPROTO;
    }
    return 0;
}

void rt_xnode_cmd_clear(rt_xnode_cmd_t *c)
{
    free(c->names);
    free(c->bin);
    c->names = NULL;
    c->bin = NULL;
}

/* ---------------------------------------------------------------------------------------
 * Answers
 * ------------------------------------------------------------------------------------- */

typedef struct room_list {
    wbuf_t names;
    uint32_t n;
} room_list_t;

static bool rooms_of_socket(const char *room, void *arg)
{
    room_list_t *l = arg;
    if (l->n++ > 0) /* its own room comes first */
        w_str(&l->names, room);
    return true;
}

/* This node's answer to a fetch (RT_XNODE_FETCH) into w. */
static int local_answer(eddy_rt_nsp_t *nsp, const eddy_rt_to_t *to, wbuf_t *w)
{
    if (nsp == NULL) {
        w_u32(w, 0);
        return w->oom ? EDDY_ENOMEM : 0;
    }
    eddy_rt_socket_t **list = NULL;
    ssize_t n = rt_xnode_select(nsp, to, &list);
    if (n < 0)
        return (int)n;
    w_u32(w, (uint32_t)n);
    for (ssize_t i = 0; i < n; i++) {
        eddy_rt_socket_t *s = list[i];
        const char *user = eddy_rt_socket_user(s);
        room_list_t l = {{0}, 0};
        eddy_rt_socket_rooms(s, rooms_of_socket, &l);
        w_str(w, eddy_rt_socket_id(s));
        w_str(w, user != NULL ? user : "");
        w_u16(w, (uint16_t)(l.n ? l.n - 1 : 0));
        w_put(w, l.names.p, l.names.len);
        w->oom |= l.names.oom;
        free(l.names.p);
        eddy_rt_socket_unref(s);
    }
    free(list);
    return w->oom ? EDDY_ENOMEM : 0;
}

/* Reads one socket of a fetch answer (out may be NULL: checking). */
static bool read_socket(rd_t *r, eddy_rt_socket_info_t *out, const char **rooms)
{
    const char *id = r_str(r), *user = r_str(r);
    size_t nrooms = r_uint(r, 2);
    for (size_t i = 0; i < nrooms; i++) {
        const char *room = r_str(r);
        if (rooms != NULL)
            rooms[i] = room;
    }
    if (r->bad)
        return false;
    if (out != NULL)
        *out = (eddy_rt_socket_info_t){id, *user ? user : NULL, rooms, nrooms, NULL};
    return true;
}

/* Reads one result of an ack answer. */
static bool read_result(rd_t *r, const char **id, int *status, eddy_rt_event_t *ev,
                        eddy_rt_bin_t *bin)
{
    *id = r_str(r);
    *status = (int)r_uint(r, 4);
    *ev = (eddy_rt_event_t){.ack_id = -1};
    ev->args = r_bytes(r, &ev->args_len);
    ev->nbin = r_uint(r, 1);
    if (ev->nbin > 64)
        r->bad = true;
    for (size_t i = 0; !r->bad && i < ev->nbin; i++)
        bin[i].data = r_bytes(r, &bin[i].len);
    ev->bin = bin;
    return !r->bad;
}

int rt_xnode_answer_check(char op, const void *buf, size_t len)
{
    rd_t r = {buf, (const unsigned char *)buf + len, buf == NULL};
    uint32_t n = r_uint(&r, 4);
    eddy_rt_bin_t bin[64];
    for (uint32_t i = 0; i < n && !r.bad; i++) {
        if (op == RT_XNODE_FETCH) {
            read_socket(&r, NULL, NULL);
        } else if (op == RT_XNODE_ACK) {
            const char *id;
            int status;
            eddy_rt_event_t ev;
            read_result(&r, &id, &status, &ev, bin);
        } else {
            r.bad = true;
        }
    }
    return r.bad || r.p != r.end ? EDDY_EPROTO : 0;
}

/* ---------------------------------------------------------------------------------------
 * A node request arrives (the broker's thread)
 * ------------------------------------------------------------------------------------- */

static void apply(eddy_rt_nsp_t *nsp, char op, uint8_t flags, const eddy_rt_to_t *to,
                  const char *const *targets, size_t ntargets)
{
    eddy_rt_socket_t **list = NULL;
    ssize_t n = rt_xnode_select(nsp, to, &list);
    if (n < 0) {
        eddy_log(eddy_rt_server(eddy_rt_nsp_rt(nsp)), EDDY_LOG_ERROR,
                 "eddy_rt: out of memory selecting sockets for a command of another node");
        return;
    }
    for (ssize_t i = 0; i < n; i++) {
        for (size_t k = 0; k < ntargets; k++) {
            if (op == RT_XNODE_JOIN)
                eddy_rt_join(list[i], targets[k]);
            else if (op == RT_XNODE_LEAVE)
                eddy_rt_leave(list[i], targets[k]);
        }
        if (op == RT_XNODE_DISCONNECT)
            eddy_rt_disconnect(list[i], flags & 1);
        eddy_rt_socket_unref(list[i]);
    }
    free(list);
}

/* Reports this node's acknowledgements to the requesting node. */
typedef struct ack_report {
    rt_broker_t *b;
    uint64_t id;
    char origin[RT_BROKER_NODE_ID_SIZE];
} ack_report_t;

static void ack_reported(eddy_rt_nsp_t *nsp, const eddy_rt_ack_result_t *res, size_t n, void *arg)
{
    ack_report_t *rep = arg;
    wbuf_t w = {0};
    w_u32(&w, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        w_str(&w, res[i].socket_id);
        w_u32(&w, (uint32_t)res[i].status);
        const eddy_rt_event_t *ev = res[i].ev;
        w_bytes(&w, ev ? ev->args : "", ev ? ev->args_len : 0);
        w_u8(&w, (uint8_t)(ev ? ev->nbin : 0));
        for (size_t k = 0; ev && k < ev->nbin; k++)
            w_bytes(&w, ev->bin[k].data, ev->bin[k].len);
    }
    if (w.oom) {
        eddy_log(eddy_rt_server(eddy_rt_nsp_rt(nsp)), EDDY_LOG_ERROR,
                 "eddy_rt: out of memory reporting acknowledgements to node %s", rep->origin);
        w.len = 0;
    }
    rt_broker_respond(rep->b, rep->origin, eddy_rt_nsp_name(nsp), rep->id, w.p, w.len);
    free(w.p);
    free(rep);
}

void rt_xnode_ack_drop(eddy_rt_broadcast_ack_cb cb, void *arg)
{
    if (cb == ack_reported)
        free(arg);
}

static void answer_empty(rt_broker_t *b, const rt_broker_request_t *req)
{
    static const char zero[4];
    rt_broker_respond(b, req->origin, req->key, req->id, zero, sizeof(zero));
}

void rt_xnode_request(eddy_rt_t *rt, rt_broker_t *b, const rt_broker_request_t *req)
{
    rt_xnode_cmd_t c;
    int rc = rt_xnode_cmd_decode(req->data, req->len, &c);
    if (rc != 0) {
        eddy_log(eddy_rt_server(rt), EDDY_LOG_WARNING, "eddy_rt: node request from %s dropped: %s",
                 req->origin, rc == EDDY_EPROTO ? "malformed" : "out of memory");
        return;
    }
    eddy_rt_nsp_t *nsp = rt_xnode_nsp(rt, c.nsp);
    switch (c.op) {
    case RT_XNODE_JOIN:
    case RT_XNODE_LEAVE:
    case RT_XNODE_DISCONNECT:
        if (nsp != NULL)
            apply(nsp, c.op, c.flags, &c.to, c.targets, c.ntargets);
        /* A join is answered once the subscriptions it asked for are active (the broker
         * sends the answer after them). */
        if (req->id)
            rt_broker_respond(b, req->origin, req->key, req->id, NULL, 0);
        break;
    case RT_XNODE_FETCH: {
        wbuf_t w = {0};
        if (local_answer(nsp, &c.to, &w) == 0 && req->id)
            rt_broker_respond(b, req->origin, req->key, req->id, w.p, w.len);
        else if (req->id)
            answer_empty(b, req);
        free(w.p);
        break;
    }
    case RT_XNODE_ACK: {
        ack_report_t *rep = req->id ? malloc(sizeof(*rep)) : NULL;
        if (rep == NULL)
            break;
        *rep = (ack_report_t){b, req->id, {0}};
        snprintf(rep->origin, sizeof(rep->origin), "%s", req->origin);
        if (nsp == NULL || c.timeout_ms == 0 ||
            rt_xnode_broadcast_ack_local(nsp, &c.to, &c.msg, c.timeout_ms, ack_reported, rep) !=
                0) {
            answer_empty(b, req);
            free(rep);
        }
        break;
    }
    default:
        break;
    }
    rt_xnode_cmd_clear(&c);
}

/* ---------------------------------------------------------------------------------------
 * Public: commands
 * ------------------------------------------------------------------------------------- */

static int command(eddy_rt_nsp_t *nsp, char op, uint8_t flags, const eddy_rt_to_t *to,
                   const char *const *targets, size_t ntargets)
{
    if (nsp == NULL)
        return EDDY_EINVAL;
    eddy_rt_t *rt = eddy_rt_nsp_rt(nsp);
    /* Redis keys hold room names in hash tags: a room with '}' cannot be subscribed to. */
    for (size_t i = 0; rt_xnode_node_id(rt)[0] && targets && i < ntargets; i++)
        if (targets[i] != NULL && strchr(targets[i], '}') != NULL)
            return EDDY_EINVAL;
    wbuf_t w = {0};
    int rc = cmd_encode(&w, op, flags, 0, eddy_rt_nsp_name(nsp), to, targets, ntargets, NULL);
    rt_broker_t *b = rc == 0 ? rt_xnode_broker(rt, eddy_rt_nsp_name(nsp)) : NULL;
    if (rc == 0 && b != NULL) {
        /* Every node applies it when it arrives (this one too): in order with this node's
         * broadcasts. A join holds the later ones until the nodes subscribed. */
        rc = rt_broker_request(
            b, NULL, eddy_rt_nsp_name(nsp), w.p, w.len, op == RT_XNODE_JOIN ? RT_BROKER_BARRIER : 0,
            op == RT_XNODE_JOIN ? XNODE_JOIN_HOLD_MS : XNODE_FIRE_MS, 0, NULL, NULL);
    } else if (rc == 0) {
        apply(nsp, op, flags, to, targets, ntargets);
    }
    free(w.p);
    return rc;
}

int eddy_rt_sockets_join(eddy_rt_nsp_t *nsp, const eddy_rt_to_t *to, const char *const *rooms,
                         size_t nrooms)
{
    return command(nsp, RT_XNODE_JOIN, 0, to, rooms, nrooms);
}

int eddy_rt_sockets_leave(eddy_rt_nsp_t *nsp, const eddy_rt_to_t *to, const char *const *rooms,
                          size_t nrooms)
{
    return command(nsp, RT_XNODE_LEAVE, 0, to, rooms, nrooms);
}

int eddy_rt_disconnect_sockets(eddy_rt_nsp_t *nsp, const eddy_rt_to_t *to, bool close_client)
{
    return command(nsp, RT_XNODE_DISCONNECT, close_client ? 1 : 0, to, NULL, 0);
}

/* ---------------------------------------------------------------------------------------
 * Public: fetchSockets()
 * ------------------------------------------------------------------------------------- */

typedef struct listing {
    eddy_rt_nsp_t *nsp;
    eddy_rt_fetch_cb fetch;
    void *arg;
    size_t cmd_len;
    char cmd[]; /* the command, for this node's answer when Redis is down */
} listing_t;

/* Hands the answers (replies[i].data, checked) to the application. */
static void listing_report(listing_t *l, int status, const rt_broker_reply_t *replies, size_t n,
                           const char *const *missing, size_t nmissing)
{
    size_t total = 0, nroom_ptrs = 0;
    for (size_t i = 0; i < n; i++) {
        rd_t r = {replies[i].data, (const unsigned char *)replies[i].data + replies[i].len, false};
        total += r_uint(&r, 4);
        nroom_ptrs += replies[i].len; /* a bound: every name takes at least one byte */
    }
    eddy_rt_socket_info_t *socks = calloc(total ? total : 1, sizeof(*socks));
    const char **names = calloc(nroom_ptrs ? nroom_ptrs : 1, sizeof(*names));
    if (socks == NULL || names == NULL) {
        free(socks);
        free(names);
        total = 0;
        status = EDDY_ENOMEM;
    }
    size_t ns = 0, nn = 0;
    for (size_t i = 0; socks != NULL && i < n; i++) {
        rd_t r = {replies[i].data, (const unsigned char *)replies[i].data + replies[i].len, false};
        uint32_t k = r_uint(&r, 4);
        for (uint32_t j = 0; j < k && !r.bad; j++) {
            if (read_socket(&r, &socks[ns], names + nn)) {
                nn += socks[ns].nrooms;
                socks[ns++].node = replies[i].node;
            }
        }
    }
    l->fetch(l->nsp, status, socks, ns, missing, nmissing, l->arg);
    free(socks);
    free(names);
}

/* This node alone (one node, or Redis down: status says which). */
static void listing_local(listing_t *l, int status)
{
    rt_xnode_cmd_t c;
    wbuf_t w = {0};
    int rc = rt_xnode_cmd_decode(l->cmd, l->cmd_len, &c);
    if (rc == 0) {
        rc = local_answer(l->nsp, &c.to, &w);
        rt_xnode_cmd_clear(&c);
    }
    rt_broker_reply_t one = {rt_xnode_node_id(eddy_rt_nsp_rt(l->nsp)), w.p, w.len};
    listing_report(l, rc != 0 ? rc : status, &one, rc == 0, NULL, 0);
    free(w.p);
}

static void on_listing(rt_broker_t *b, int err, const rt_broker_reply_t *replies, size_t n,
                       const char *const *missing, size_t nmissing, void *arg)
{
    listing_t *l = arg;
    if (err != 0) {
        listing_local(l, err);
        free(l);
        return;
    }
    /* Malformed answers count as missing nodes. */
    rt_broker_reply_t *ok = calloc(n ? n : 1, sizeof(*ok));
    const char **miss = calloc(n + nmissing ? n + nmissing : 1, sizeof(*miss));
    size_t nok = 0, nmiss = 0;
    if (ok == NULL || miss == NULL) {
        free(ok);
        free(miss);
        listing_report(l, EDDY_ENOMEM, NULL, 0, missing, nmissing);
        free(l);
        return;
    }
    for (size_t i = 0; i < nmissing; i++)
        miss[nmiss++] = missing[i];
    for (size_t i = 0; i < n; i++) {
        if (rt_xnode_answer_check(RT_XNODE_FETCH, replies[i].data, replies[i].len) == 0) {
            ok[nok++] = replies[i];
        } else {
            eddy_log(eddy_rt_server(eddy_rt_nsp_rt(l->nsp)), EDDY_LOG_WARNING,
                     "eddy_rt: malformed answer from node %s dropped", replies[i].node);
            miss[nmiss++] = replies[i].node;
        }
    }
    listing_report(l, 0, ok, nok, miss, nmiss);
    free(ok);
    free(miss);
    free(l);
}

int eddy_rt_fetch_sockets(eddy_rt_nsp_t *nsp, const eddy_rt_to_t *to, uint32_t timeout_ms,
                          eddy_rt_fetch_cb cb, void *arg)
{
    if (nsp == NULL || timeout_ms == 0 || cb == NULL)
        return EDDY_EINVAL;
    eddy_rt_t *rt = eddy_rt_nsp_rt(nsp);
    wbuf_t w = {0};
    int rc =
        cmd_encode(&w, RT_XNODE_FETCH, 0, timeout_ms, eddy_rt_nsp_name(nsp), to, NULL, 0, NULL);
    listing_t *l = rc == 0 ? malloc(sizeof(*l) + w.len) : NULL;
    if (l == NULL) {
        free(w.p);
        return rc != 0 ? rc : EDDY_ENOMEM;
    }
    *l = (listing_t){nsp, cb, arg, w.len};
    memcpy(l->cmd, w.p, w.len);
    free(w.p);
    rt_broker_t *b = rt_xnode_broker(rt, eddy_rt_nsp_name(nsp));
    if (b == NULL) {
        /* One node: 0; a cluster whose Redis is down: this node's, and say so. */
        listing_local(l, rt_xnode_node_id(rt)[0] ? EDDY_ECLOSED : 0);
        free(l);
        return 0;
    }
    rc = rt_broker_request(b, NULL, eddy_rt_nsp_name(nsp), l->cmd, l->cmd_len, 0, timeout_ms, 0,
                           on_listing, l);
    if (rc != 0)
        free(l);
    return rc;
}

/* ---------------------------------------------------------------------------------------
 * Broadcasts with acknowledgement across nodes
 * ------------------------------------------------------------------------------------- */

typedef struct xack {
    eddy_rt_nsp_t *nsp;
    eddy_rt_broadcast_ack_cb cb;
    void *arg;
    size_t cmd_len;
    char cmd[];
} xack_t;

static void on_acks(rt_broker_t *b, int err, const rt_broker_reply_t *replies, size_t n,
                    const char *const *missing, size_t nmissing, void *arg)
{
    xack_t *x = arg;
    if (err != 0) {
        /* Nothing left (Redis went down): this node's sockets, as on one node. */
        rt_xnode_cmd_t c;
        if (rt_xnode_cmd_decode(x->cmd, x->cmd_len, &c) != 0 ||
            rt_xnode_broadcast_ack_local(x->nsp, &c.to, &c.msg, c.timeout_ms, x->cb, x->arg) != 0)
            x->cb(x->nsp, NULL, 0, x->arg);
        rt_xnode_cmd_clear(&c);
        free(x);
        return;
    }
    size_t total = nmissing;
    for (size_t i = 0; i < n; i++) {
        if (rt_xnode_answer_check(RT_XNODE_ACK, replies[i].data, replies[i].len) != 0) {
            eddy_log(eddy_rt_server(eddy_rt_nsp_rt(x->nsp)), EDDY_LOG_WARNING,
                     "eddy_rt: malformed acknowledgements from node %s dropped", replies[i].node);
            total++;
            continue;
        }
        rd_t r = {replies[i].data, (const unsigned char *)replies[i].data + replies[i].len, false};
        total += r_uint(&r, 4);
    }
    eddy_rt_ack_result_t *res = calloc(total ? total : 1, sizeof(*res));
    eddy_rt_event_t *evs = calloc(total ? total : 1, sizeof(*evs));
    eddy_rt_bin_t *bins = calloc(total ? total * 64 : 1, sizeof(*bins));
    if (res == NULL || evs == NULL || bins == NULL) {
        eddy_log(eddy_rt_server(eddy_rt_nsp_rt(x->nsp)), EDDY_LOG_ERROR,
                 "eddy_rt: out of memory collecting acknowledgements");
        x->cb(x->nsp, NULL, 0, x->arg);
        free(res);
        free(evs);
        free(bins);
        free(x);
        return;
    }
    /* Answers first (each node's in arrival order), then the sockets that did not
     * answer, then the nodes that did not report. */
    size_t k = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < n; i++) {
            if (rt_xnode_answer_check(RT_XNODE_ACK, replies[i].data, replies[i].len) != 0) {
                if (pass == 1)
                    res[k++] = (eddy_rt_ack_result_t){"", -ETIMEDOUT, NULL, replies[i].node};
                continue;
            }
            rd_t r = {replies[i].data, (const unsigned char *)replies[i].data + replies[i].len,
                      false};
            uint32_t m = r_uint(&r, 4);
            for (uint32_t j = 0; j < m; j++) {
                const char *id;
                int status;
                eddy_rt_event_t ev;
                eddy_rt_bin_t bin[64];
                read_result(&r, &id, &status, &ev, bin);
                if ((status == 0) != (pass == 0))
                    continue;
                memcpy(bins + k * 64, bin, ev.nbin * sizeof(*bin));
                evs[k] = ev;
                evs[k].bin = bins + k * 64;
                res[k] = (eddy_rt_ack_result_t){id, status, status == 0 ? &evs[k] : NULL,
                                                replies[i].node};
                k++;
            }
        }
    }
    for (size_t i = 0; i < nmissing; i++)
        res[k++] = (eddy_rt_ack_result_t){"", -ETIMEDOUT, NULL, missing[i]};
    x->cb(x->nsp, res, k, x->arg);
    free(res);
    free(evs);
    free(bins);
    free(x);
}

int rt_xnode_broadcast_ack(eddy_rt_nsp_t *nsp, const eddy_rt_to_t *to, const eddy_rt_msg_t *msg,
                           uint32_t timeout_ms, eddy_rt_broadcast_ack_cb cb, void *arg)
{
    if (nsp == NULL || cb == NULL || timeout_ms == 0 || msg == NULL)
        return EDDY_EINVAL;
    rt_broker_t *b = rt_xnode_broker(eddy_rt_nsp_rt(nsp), eddy_rt_nsp_name(nsp));
    if (b == NULL)
        return rt_xnode_broadcast_ack_local(nsp, to, msg, timeout_ms, cb, arg);
    wbuf_t w = {0};
    int rc = cmd_encode(&w, RT_XNODE_ACK, 0, timeout_ms, eddy_rt_nsp_name(nsp), to, NULL, 0, msg);
    xack_t *x = rc == 0 ? malloc(sizeof(*x) + w.len) : NULL;
    if (x == NULL) {
        free(w.p);
        return rc != 0 ? rc : EDDY_ENOMEM;
    }
    *x = (xack_t){nsp, cb, arg, w.len};
    memcpy(x->cmd, w.p, w.len);
    free(w.p);
    uint32_t wait = timeout_ms > UINT32_MAX - XNODE_ACK_TRANSIT_MS
                        ? UINT32_MAX
                        : timeout_ms + XNODE_ACK_TRANSIT_MS;
    rc = rt_broker_request(b, NULL, eddy_rt_nsp_name(nsp), x->cmd, x->cmd_len, 0, wait, 0, on_acks,
                           x);
    if (rc != 0)
        free(x);
    return rc;
}

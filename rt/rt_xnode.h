/* SPDX-License-Identifier: MIT */
/*
 * Across nodes (issue 12): remote join, leave and disconnect, the cluster-wide listing of
 * sockets, and broadcasts with acknowledgement collected from every node. The
 * public side is in eddy_rt.h ("Across nodes"); this is what rt.c and rt_cluster.c share
 * with rt_xnode.c. Private to rt/.
 *
 * A command travels as a node request (rt_broker.h "Node requests") to every alive node,
 * this one included, so each node applies it to its own sockets in the order it was made
 * among this node's broadcasts; listings and acknowledgements come back as answers. The
 * formats below are parsed from what arrives through Redis: anything malformed is logged
 * and dropped.
 *
 * Command: byte 1 (version), the operation (RT_XNODE_*), flags (bit 0: close the client),
 * timeout in ms (4 bytes), then the counts (2 bytes each) of rooms, users, except-rooms
 * and target rooms, then NUL-terminated: nsp, rooms, users, except-rooms, target rooms;
 * for RT_XNODE_ACK the message: event NUL-terminated, args (4-byte length, bytes),
 * attachment count (1 byte), each attachment (4-byte length, bytes), emit flags (4 bytes).
 * Integers are little endian.
 *
 * Answers: RT_XNODE_FETCH: count (4), then per socket: id, user id ("" none), the number
 * of its rooms (2), rooms (NUL-terminated).
 * RT_XNODE_ACK: count (4), then per socket: id, status (4, signed), args (4-byte length,
 * bytes), attachment count (1) and attachments (4-byte length, bytes).
 */
#ifndef EDDY_RT_XNODE_H
#define EDDY_RT_XNODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "eddy_rt.h"
#include "rt_broker.h"

enum {
    RT_XNODE_JOIN = 'j',
    RT_XNODE_LEAVE = 'l',
    RT_XNODE_DISCONNECT = 'd',
    RT_XNODE_FETCH = 'f',
    RT_XNODE_ACK = 'a',
};

/* A decoded command; its pointers point into the bytes it was decoded from and into
 * names/bin (owned: rt_xnode_cmd_clear()). */
typedef struct rt_xnode_cmd {
    char op;
    uint8_t flags;
    uint32_t timeout_ms;
    const char *nsp;
    eddy_rt_to_t to;
    const char *const *targets;
    size_t ntargets;
    eddy_rt_msg_t msg;
    const char **names;
    eddy_rt_bin_t *bin;
} rt_xnode_cmd_t;

/* Decodes a command. Returns 0, EDDY_EPROTO (malformed) or EDDY_ENOMEM. */
int rt_xnode_cmd_decode(const void *buf, size_t len, rt_xnode_cmd_t *c);
void rt_xnode_cmd_clear(rt_xnode_cmd_t *c);

/* Checks an answer of operation op. Returns 0 or EDDY_EPROTO. */
int rt_xnode_answer_check(char op, const void *buf, size_t len);

/* eddy_rt_free() drops a broadcast with acknowledgement that never ended (the server
 * stopped first): frees arg if it is one of this module's reports to another node. */
void rt_xnode_ack_drop(eddy_rt_broadcast_ack_cb cb, void *arg);

/* A node request arrived (rt_cluster.c's request handler, on the broker's thread). */
void rt_xnode_request(eddy_rt_t *rt, rt_broker_t *b, const rt_broker_request_t *req);

/* ---------------------------------------------------------------------------------------
 * Provided by rt.c
 * ------------------------------------------------------------------------------------- */

/* The layer's broker while the part of it that owns namespace nsp is up (with several
 * Redis: nsp's shard), else NULL (one node, or that Redis down). */
rt_broker_t *rt_xnode_broker(eddy_rt_t *rt, const char *nsp);
/* This node's id: the broker's, or options' node_id, or "". */
const char *rt_xnode_node_id(eddy_rt_t *rt);
/* The namespace named so, or NULL (never created). */
eddy_rt_nsp_t *rt_xnode_nsp(eddy_rt_t *rt, const char *name);
/* The local sockets to selects (each once), referenced, into *out (free() it, unref each).
 * Returns their number, or a negative error. */
ssize_t rt_xnode_select(eddy_rt_nsp_t *nsp, const eddy_rt_to_t *to, eddy_rt_socket_t ***out);
/* The local part of eddy_rt_broadcast_ack(). */
int rt_xnode_broadcast_ack_local(eddy_rt_nsp_t *nsp, const eddy_rt_to_t *to,
                                 const eddy_rt_msg_t *msg, uint32_t timeout_ms,
                                 eddy_rt_broadcast_ack_cb cb, void *arg);
/* eddy_rt_broadcast_ack() through the cluster (rt_xnode.c). */
int rt_xnode_broadcast_ack(eddy_rt_nsp_t *nsp, const eddy_rt_to_t *to, const eddy_rt_msg_t *msg,
                           uint32_t timeout_ms, eddy_rt_broadcast_ack_cb cb, void *arg);

#endif /* EDDY_RT_XNODE_H */

/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer driver for what arrives from other nodes through Redis (rt/rt_xnode.h and
 * rt_broker.h "Node requests"): the first byte picks the parser, the rest is its input.
 *   0: a command (rt_xnode_cmd_decode)       1, 2: an answer to fetch, ack
 *   3: a node message (rt_broker_node_msg_decode)
 *
 * Checked invariants: a decoded command has a namespace, every name it lists is set, its
 * operation is one of RT_XNODE_*, an ack command carries an event and at most 64
 * attachments lying inside the input; an answer is accepted or refused, never read out of
 * bounds (ASan); a node message names a node of 1 to 64 bytes and its data lies inside the
 * input, right after that name; a request id 0 is never an answer.
 */
#include <string.h>

#include "eddy.h"
#include "fuzz.h"
#include "rt_xnode.h"

static bool inside(const void *p, size_t len, const uint8_t *data, size_t size)
{
    return (const uint8_t *)p >= data && (const uint8_t *)p + len <= data + size;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    uint8_t which = data[0];
    data++;
    size--;
    if (which == 0) {
        rt_xnode_cmd_t c;
        int rc = rt_xnode_cmd_decode(data, size, &c);
        FUZZ_CHECK(rc == 0 || rc == EDDY_EPROTO || rc == EDDY_ENOMEM);
        if (rc != 0)
            return 0;
        FUZZ_CHECK(c.nsp != NULL && strchr("jldfa", c.op) != NULL && c.op != 0);
        for (size_t i = 0; i < c.to.nrooms; i++)
            FUZZ_CHECK(c.to.rooms[i] != NULL);
        for (size_t i = 0; i < c.to.nusers; i++)
            FUZZ_CHECK(c.to.users[i] != NULL);
        for (size_t i = 0; i < c.to.nexcept; i++)
            FUZZ_CHECK(c.to.except[i] != NULL);
        for (size_t i = 0; i < c.ntargets; i++)
            FUZZ_CHECK(c.targets[i] != NULL);
        if (c.op == RT_XNODE_ACK) {
            FUZZ_CHECK(c.msg.event != NULL && c.msg.nbin <= 64);
            FUZZ_CHECK(inside(c.msg.args, c.msg.args_len, data, size));
            for (size_t i = 0; i < c.msg.nbin; i++)
                FUZZ_CHECK(inside(c.msg.bin[i].data, c.msg.bin[i].len, data, size));
        }
        rt_xnode_cmd_clear(&c);
    } else if (which <= 2) {
        static const char ops[] = {RT_XNODE_FETCH, RT_XNODE_ACK};
        int rc = rt_xnode_answer_check(ops[which - 1], data, size);
        FUZZ_CHECK(rc == 0 || rc == EDDY_EPROTO);
    } else if (which == 3) {
        char kind;
        uint64_t id;
        const char *node;
        const void *body;
        size_t len;
        int rc = rt_broker_node_msg_decode(data, size, &kind, &id, &node, &body, &len);
        FUZZ_CHECK(rc == 0 || rc == EDDY_EPROTO);
        if (rc != 0)
            return 0;
        size_t nlen = strlen(node);
        FUZZ_CHECK(nlen >= 1 && nlen <= RT_BROKER_NODE_ID_MAX);
        FUZZ_CHECK((const char *)body == node + nlen + 1 && inside(body, len, data, size));
        FUZZ_CHECK(kind == 'Q' || (kind == 'R' && id != 0));
    }
    return 0;
}

/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer driver for rt/rt_emitter.c (Socket.IO's Redis emitter format).
 *
 * Checked invariants: a decoded message has a namespace and uid, rooms and except-rooms
 * without NUL bytes, arguments that are a JSON array (rt_json_parse) of UTF-8 whose
 * first element is a string, and exactly as many attachments as the arguments hold
 * placeholders; a message with a byte appended is refused.
 */
#include <stdlib.h>
#include <string.h>

#include "eddy.h"
#include "fuzz.h"
#include "rt_emitter.h"
#include "rt_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rt_emitter_msg_t *m;
    int rc = rt_emitter_decode(data, size, &m);
    FUZZ_CHECK(rc == 0 || rc == EDDY_EPROTO || rc == EDDY_ENOMEM);
    if (rc != 0) {
        FUZZ_CHECK(m == NULL);
        return 0;
    }
    FUZZ_CHECK(m->uid && m->nsp);
    for (size_t i = 0; i < m->nrooms; i++)
        FUZZ_CHECK(m->rooms[i] != NULL);
    for (size_t i = 0; i < m->nexcept; i++)
        FUZZ_CHECK(m->except[i] != NULL);
    FUZZ_CHECK(strlen(m->args) == m->args_len);
    FUZZ_CHECK(eddy_utf8_valid(m->args, m->args_len));
    rt_json_value_t v;
    FUZZ_CHECK(rt_json_parse(m->args, m->args_len, &v) == 0 && v.type == RT_JSON_ARRAY);
    rt_json_iter_t it;
    rt_json_value_t first;
    FUZZ_CHECK(rt_json_iter_init(&it, &v) == 0 && rt_json_iter_next(&it, NULL, &first) &&
               first.type == RT_JSON_STRING);
    FUZZ_CHECK(rt_json_placeholders(&v, m->nattachments, NULL, NULL) == (int)m->nattachments);
    rt_emitter_msg_free(m);

    uint8_t *more = malloc(size + 1);
    FUZZ_CHECK(more != NULL);
    memcpy(more, data, size);
    more[size] = 0xc0;
    FUZZ_CHECK(rt_emitter_decode(more, size + 1, &m) == EDDY_EPROTO);
    free(more);
    return 0;
}

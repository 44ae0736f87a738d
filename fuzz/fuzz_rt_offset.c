/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer driver for the offset strings of rt/rt_history.c (rt_offset_parse reads what
 * reconnecting clients send).
 *
 * Checked invariants:
 * - the verdict matches an independent statement of the format (length 9..19, alphabet
 *   A-Z a-z 0-9 - _, no leading zero digit in seq, seq within 64 bits);
 * - whatever parses encodes back to exactly the input (one spelling per position);
 * - a position made of the input's first 16 bytes survives encode then parse.
 */
#include <stdbool.h>
#include <string.h>

#include "eddy.h"
#include "fuzz.h"
#include "rt_history.h"

static bool in_alphabet(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

static bool ref_valid(const uint8_t *s, size_t len)
{
    if (len < 9 || len > 19)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!in_alphabet(s[i]))
            return false;
    if (len > 9 && s[8] == 'A')
        return false;
    /* 11 seq digits carry 66 bits: the first may hold only 4 (A..P). */
    return len < 19 || (s[8] >= 'A' && s[8] <= 'P');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rt_position_t pos;
    int rc = rt_offset_parse((const char *)data, size, &pos);
    FUZZ_CHECK(rc == 0 || rc == EDDY_EINVAL);
    FUZZ_CHECK((rc == 0) == ref_valid(data, size));
    if (rc == 0) {
        char out[RT_OFFSET_SIZE];
        size_t n = rt_offset_encode(pos, out);
        FUZZ_CHECK(n == size && memcmp(out, data, size) == 0);
        FUZZ_CHECK(pos.epoch < 1ull << RT_HISTORY_EPOCH_BITS);
    }
    if (size >= 16) {
        rt_position_t in, back;
        memcpy(&in.epoch, data, 8);
        memcpy(&in.seq, data + 8, 8);
        in.epoch &= (1ull << RT_HISTORY_EPOCH_BITS) - 1;
        char out[RT_OFFSET_SIZE];
        size_t n = rt_offset_encode(in, out);
        FUZZ_CHECK(n >= 9 && n <= RT_OFFSET_MAX && out[n] == '\0');
        FUZZ_CHECK(rt_offset_parse(out, n, &back) == 0);
        FUZZ_CHECK(back.epoch == in.epoch && back.seq == in.seq);
    }
    return 0;
}

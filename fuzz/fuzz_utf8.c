/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer driver for src/utf8.c.
 *
 * Checked invariants:
 * - the verdict matches an independent decoder that computes each code point;
 * - feeding byte by byte fails at exactly the first byte after which no continuation
 *   could make the input valid (and never earlier);
 * - feeding in pieces (sizes taken from the input) ends in the same state as feeding
 *   the whole input at once.
 */
#include <string.h>

#include "codec.h"
#include "fuzz.h"
#include "ref_utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint32_t whole = EDDY__UTF8_ACCEPT;
    bool fed = eddy__utf8_feed(&whole, data, size);
    bool valid = fed && eddy__utf8_complete(whole);
    size_t tail;
    FUZZ_CHECK(valid == (ref_decode(data, size, &tail) == REF_VALID));
    FUZZ_CHECK(valid == eddy_utf8_valid(data, size));

    /* Byte by byte: the first failure is the first impossible byte. */
    uint32_t bytewise = EDDY__UTF8_ACCEPT;
    size_t fail_at = size;
    for (size_t i = 0; i < size; i++) {
        if (!eddy__utf8_feed(&bytewise, data + i, 1)) {
            fail_at = i;
            break;
        }
    }
    FUZZ_CHECK(bytewise == whole);
    FUZZ_CHECK((fail_at < size) == !fed);
    if (fail_at < size) {
        FUZZ_CHECK(ref_viable(data, fail_at));
        FUZZ_CHECK(!ref_viable(data, fail_at + 1));
    } else {
        FUZZ_CHECK(ref_viable(data, size));
    }

    /* In pieces, sized by the input itself so every split pattern is reachable. */
    uint32_t pieces = EDDY__UTF8_ACCEPT;
    bool pieces_ok = true;
    size_t done = 0;
    while (done < size && pieces_ok) {
        size_t piece = 1 + data[done] % 23;
        if (piece > size - done)
            piece = size - done;
        pieces_ok = eddy__utf8_feed(&pieces, data + done, piece);
        done += piece;
    }
    FUZZ_CHECK(pieces_ok == fed && pieces == whole);
    return 0;
}

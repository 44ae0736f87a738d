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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

enum ref_verdict { REF_VALID, REF_INCOMPLETE, REF_INVALID };

/*
 * The reference: decodes each sequence to a code point, then judges it. REF_INCOMPLETE
 * means valid except that the last sequence is cut short (its bytes so far are not yet
 * judged); *tail is where that sequence starts.
 */
static enum ref_verdict ref_decode(const uint8_t *s, size_t len, size_t *tail)
{
    size_t i = 0;
    while (i < len) {
        uint8_t b = s[i];
        size_t n;
        uint32_t cp, min;
        if (b < 0x80) {
            i++;
            continue;
        } else if ((b & 0xE0) == 0xC0) {
            n = 2, cp = b & 0x1F, min = 0x80;
        } else if ((b & 0xF0) == 0xE0) {
            n = 3, cp = b & 0x0F, min = 0x800;
        } else if ((b & 0xF8) == 0xF0) {
            n = 4, cp = b & 0x07, min = 0x10000;
        } else {
            return REF_INVALID;
        }
        if (len - i < n) {
            *tail = i;
            return REF_INCOMPLETE;
        }
        for (size_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return REF_INVALID;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return REF_INVALID;
        i += n;
    }
    return REF_VALID;
}

/*
 * True if some continuation makes s[0..len) valid. Only an unfinished last sequence can
 * need one, and each continuation byte range has its ends among the probes, so trying
 * every combination of probes for the missing bytes decides it.
 */
static bool ref_viable(const uint8_t *s, size_t len)
{
    static const uint8_t probes[] = {0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF};
    size_t tail;
    enum ref_verdict v = ref_decode(s, len, &tail);
    if (v != REF_INCOMPLETE)
        return v == REF_VALID;

    uint8_t seq[4];
    size_t have = len - tail;
    memcpy(seq, s + tail, have);
    for (size_t total = have + 1; total <= 4; total++) {
        size_t missing = total - have, combos = 1;
        for (size_t k = 0; k < missing; k++)
            combos *= sizeof(probes);
        for (size_t c = 0; c < combos; c++) {
            size_t x = c;
            for (size_t k = 0; k < missing; k++, x /= sizeof(probes))
                seq[have + k] = probes[x % sizeof(probes)];
            if (ref_decode(seq, total, &tail) == REF_VALID)
                return true;
        }
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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

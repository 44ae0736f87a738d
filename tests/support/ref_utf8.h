/* SPDX-License-Identifier: MIT */
/*
 * A reference UTF-8 decoder for the unit tests and the fuzz driver of src/utf8.c. It is
 * deliberately different from the validator under test: it decodes each sequence to a
 * code point, then judges it.
 */
#ifndef EDDY_REF_UTF8_H
#define EDDY_REF_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum ref_verdict { REF_VALID, REF_INCOMPLETE, REF_INVALID };

/*
 * Judges s[0..len). REF_INCOMPLETE means valid except that the last sequence is cut
 * short (its bytes so far are not yet judged); *tail is where that sequence starts.
 */
static inline enum ref_verdict ref_decode(const uint8_t *s, size_t len, size_t *tail)
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

/* True if s[0..len) is valid UTF-8. */
static inline bool ref_valid(const uint8_t *s, size_t len)
{
    size_t tail;
    return ref_decode(s, len, &tail) == REF_VALID;
}

/*
 * True if some continuation makes s[0..len) valid. Only an unfinished last sequence can
 * need one, and each continuation byte range has its ends among the probes, so trying
 * every combination of probes for the missing bytes decides it.
 */
static inline bool ref_viable(const uint8_t *s, size_t len)
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

#endif /* EDDY_REF_UTF8_H */

/* SPDX-License-Identifier: MIT */
/*
 * Incremental UTF-8 validation (RFC 3629).
 *
 * Rather than a byte-class transition table, the state says what the next byte must be:
 * how many continuation bytes are still needed and the inclusive range the next one must
 * fall in. The lead byte decides both, and the range is where the hard cases are
 * handled: an overlong three- or four-byte form, a surrogate and a code point above
 * U+10FFFF can all be recognised from the lead byte plus the first continuation byte
 * alone. Narrowing the range of that first continuation byte therefore rejects them at
 * exactly the byte that makes the input impossible; every later continuation byte may be
 * anything in 0x80-0xBF.
 *
 * Encoding of the state: bits 0-7 lowest allowed next byte, bits 8-15 highest, bits
 * 16-17 continuation bytes still needed. EDDY__UTF8_ACCEPT (0) is "at a character
 * boundary"; UTF8_REJECT is sticky and distinct from every pending state because those
 * all need at least one more byte.
 */
#include <string.h>

#include "codec.h"

#define UTF8_REJECT 1u

static inline uint32_t pending(unsigned need, unsigned lo, unsigned hi)
{
    return (uint32_t)need << 16 | (uint32_t)hi << 8 | (uint32_t)lo;
}

/* The state after a non-ASCII lead byte. */
static uint32_t lead_state(uint8_t b)
{
    if (b < 0xC2) /* a continuation byte, or 0xC0/0xC1 which only start overlongs */
        return UTF8_REJECT;
    if (b < 0xE0)
        return pending(1, 0x80, 0xBF);
    if (b == 0xE0) /* E0 80..9F would be overlong (< U+0800) */
        return pending(2, 0xA0, 0xBF);
    if (b == 0xED) /* ED A0..BF would be a surrogate (U+D800-DFFF) */
        return pending(2, 0x80, 0x9F);
    if (b < 0xF0)
        return pending(2, 0x80, 0xBF);
    if (b == 0xF0) /* F0 80..8F would be overlong (< U+10000) */
        return pending(3, 0x90, 0xBF);
    if (b < 0xF4)
        return pending(3, 0x80, 0xBF);
    if (b == 0xF4) /* F4 90..BF would be above U+10FFFF */
        return pending(3, 0x80, 0x8F);
    return UTF8_REJECT; /* F5..FF start nothing valid */
}

/* True if s[0..len) is all ASCII: 32 bytes at a time where the compiler has vectors (two
 * SSE2 registers on x86-64), then eight, the last word overlapping. */
static bool all_ascii(const uint8_t *s, size_t len)
{
    uint64_t word, any = 0;
    if (len < 8) {
        for (size_t i = 0; i < len; i++)
            any |= s[i];
        return (any & 0x80) == 0;
    }
    size_t i = 0;
#if defined(__GNUC__)
    typedef uint64_t v2u64 __attribute__((vector_size(16)));
    v2u64 acc = {0, 0};
    for (; len - i >= 32; i += 32) {
        v2u64 a, b;
        memcpy(&a, s + i, sizeof(a));
        memcpy(&b, s + i + 16, sizeof(b));
        acc |= a | b;
    }
    any = acc[0] | acc[1];
#endif
    for (; i + 8 <= len; i += 8) {
        memcpy(&word, s + i, sizeof(word));
        any |= word;
    }
    memcpy(&word, s + len - 8, sizeof(word));
    any |= word;
    return (any & 0x8080808080808080ull) == 0;
}

bool eddy__utf8_feed(uint32_t *state, const uint8_t *s, size_t len)
{
    uint32_t st = *state;
    size_t i = 0;

    /* Most text between characters is plain ASCII: settle that at once. */
    if (st == EDDY__UTF8_ACCEPT && all_ascii(s, len))
        return true;
    if (st == UTF8_REJECT)
        return false;
    while (i < len) {
        if (st == EDDY__UTF8_ACCEPT) {
            /* Between characters, skip ASCII eight bytes at a time: most text is ASCII. */
            while (len - i >= 8) {
                uint64_t word;
                memcpy(&word, s + i, sizeof(word));
                if (word & 0x8080808080808080ull)
                    break;
                i += 8;
            }
            if (i == len)
                break;
            uint8_t b = s[i++];
            if (b < 0x80)
                continue;
            st = lead_state(b);
            if (st == UTF8_REJECT)
                break;
        } else {
            uint8_t b = s[i++];
            unsigned lo = st & 0xFF, hi = (st >> 8) & 0xFF, need = st >> 16;
            if (b < lo || b > hi) {
                st = UTF8_REJECT;
                break;
            }
            st = need > 1 ? pending(need - 1, 0x80, 0xBF) : EDDY__UTF8_ACCEPT;
        }
    }
    *state = st;
    return st != UTF8_REJECT;
}

bool eddy_utf8_valid(const void *s, size_t len)
{
    uint32_t state = EDDY__UTF8_ACCEPT;
    return eddy__utf8_feed(&state, s, len) && eddy__utf8_complete(state);
}

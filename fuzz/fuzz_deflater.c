/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer driver for eddy's DEFLATE compressor (src/deflater.c), checked against zlib's
 * inflate.
 *
 * Input: three bytes of parameters, then messages. Byte 0: window bits 9 + (low 3 bits) % 7,
 * context takeover if bit 7 is set; byte 1: level 1 + byte % 9; byte 2: mem_level
 * 1 + byte % 9. Each message is a control byte and what it names: the low 6 bits are a
 * length n (62: the next byte * 64 more; 63: the next two bytes, little-endian), the high 2
 * the kind: 0, the next n input bytes (fewer at the end); 1, the next n bytes repeated to
 * (next byte + 1) * 256 bytes or more (long matches, buffer slides, messages over 64 KiB);
 * 2, n * 512 bytes from a PRNG seeded by the input (incompressible: stored blocks);
 * 3, like 0, but with takeover the deflater alone is reset first (the inflater keeps its
 * window, which the message must not need).
 *
 * Checked invariants:
 * - every message inflates back to itself with zlib (raw, the deflater's window, one
 *   output byte per call, so every distance is checked against the window exactly), and
 *   the stream never ends (no final block);
 * - without takeover the deflater is reset and a fresh inflater (empty window) takes each
 *   message: none refers to an earlier one; with takeover one inflater takes them all;
 * - the output is never longer than eddy__deflate_bound(); an empty message is 0x00.
 */
#include <stdbool.h>
#include <string.h>
#include <zlib.h>

#include "deflater.h"
#include "fuzz.h"

/* The longest message. All messages of an input together are at most four windows and
 * 4 KiB (MSG_MAX for 15 bits): the deflater's buffer (two windows, at least 2 KiB) slides
 * a few times, and inputs stay fast. */
#define MSG_MAX (128u << 10)

static uint8_t msg[MSG_MAX];

static uint8_t back[MSG_MAX + 1];

/* Inflates packed and the sync flush's 00 00 ff ff, one output byte per call: zlib checks
 * a distance against what it held before the call plus what the call wrote. True if that
 * gives exactly want, with no error and no end of stream. Not instrumented for coverage:
 * the checker's loop, a call per byte, would take most of the time and guide nothing. */
__attribute__((noinline, no_sanitize("coverage"))) static bool
inflates_to(z_stream *zs, const uint8_t *packed, size_t plen, const uint8_t *want, size_t wlen)
{
    static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};
    size_t got = 0;
    for (int pass = 0; pass < 2; pass++) {
        zs->next_in = (Bytef *)(pass == 0 ? packed : tail);
        zs->avail_in = pass == 0 ? (uInt)plen : sizeof(tail);
        int rc;
        do {
            zs->next_out = back + got;
            zs->avail_out = 1;
            rc = inflate(zs, Z_SYNC_FLUSH);
            got += 1 - zs->avail_out;
        } while (rc == Z_OK && got <= wlen);
        if (rc != Z_BUF_ERROR) { /* Z_BUF_ERROR: no progress, wants more input */
            fprintf(stderr, "inflate: %d %s\n", rc, zs->msg ? zs->msg : "(too long)");
            return false;
        }
    }
    return got == wlen && zs->avail_in == 0 && memcmp(back, want, wlen) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    int bits = 9 + (data[0] & 7) % 7;
    bool takeover = (data[0] & 0x80) != 0;
    int level = 1 + data[1] % 9, mem_level = 1 + data[2] % 9;
    eddy__deflater_t *d = eddy__deflater_new(bits, level, mem_level);
    FUZZ_CHECK(d != NULL);
    uint64_t rng = fuzz_seed_of(data, size);
    z_stream zs;
    bool zs_open = false;
    eddy__buf_t out = {0};
    size_t budget = ((size_t)4 << bits) + 4096;
    budget = budget < MSG_MAX ? budget : MSG_MAX;
    size_t i = 3, total = 0;
    while (i < size && total < budget) {
        uint8_t c = data[i++];
        size_t n = c & 63;
        if (n == 62 && i < size)
            n += (size_t)data[i++] * 64;
        else if (n == 63 && i + 1 < size) {
            n = data[i] | (size_t)data[i + 1] << 8;
            i += 2;
        }
        size_t len = 0;
        switch (c >> 6) {
        case 1: { /* the next n bytes, repeated */
            size_t want = i < size ? ((size_t)data[i++] + 1) * 256 : 256;
            n = n < size - i ? n : size - i;
            if (n == 0)
                break;
            for (; len < want && len < budget - total; len += n)
                memcpy(msg + len, data + i, n < MSG_MAX - len ? n : MSG_MAX - len);
            len = len < MSG_MAX ? len : MSG_MAX;
            i += n;
            break;
        }
        case 2: /* PRNG bytes */
            len = n * 512 < budget - total ? n * 512 : budget - total;
            for (size_t k = 0; k < len; k += 8) {
                uint64_t r = fuzz_rng_next(&rng);
                memcpy(msg + k, &r, len - k < 8 ? len - k : 8);
            }
            break;
        default: /* the next n bytes */
            len = n < size - i ? n : size - i;
            memcpy(msg, data + i, len);
            i += len;
            if (c >> 6 == 3 && takeover)
                eddy__deflater_reset(d);
        }
        total += len;
        if (!takeover) {
            eddy__deflater_reset(d);
            if (zs_open)
                inflateEnd(&zs);
            zs_open = false;
        }
        if (!zs_open) {
            memset(&zs, 0, sizeof(zs));
            FUZZ_CHECK(inflateInit2(&zs, -bits) == Z_OK);
            zs_open = true;
        }
        FUZZ_CHECK(eddy__deflate(d, msg, len, &out) == 0);
        FUZZ_CHECK(out.len <= eddy__deflate_bound(len));
        if (len == 0)
            FUZZ_CHECK(out.len == 1 && out.data[0] == 0);
        if (!inflates_to(&zs, (const uint8_t *)out.data, out.len, msg, len)) {
            fprintf(stderr,
                    "window %d level %d mem_level %d takeover %d: a message of %zu bytes "
                    "(%zu compressed) does not round-trip\n",
                    bits, level, mem_level, takeover, len, out.len);
            abort();
        }
    }
    if (zs_open)
        inflateEnd(&zs);
    eddy__buf_free(&out);
    eddy__deflater_free(d);
    return 0;
}

/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer driver for src/tls13.c, TLS 1.3 record protection.
 *
 * The first input byte picks the cipher suite and the starting sequence numbers; the rest
 * is a list of operations: 0xff updates the key of both ends, any other byte is an inner
 * content type followed by a length (two bytes) and that much plaintext (what is left if
 * shorter), which one end seals and the other opens.
 *
 * Checked invariants:
 * - a sealed record measures what eddy__tls13_seal() returned, has the outer type of
 *   application data, and opens to the same plaintext and type (type 0: the inner type is
 *   the plaintext's last non-zero byte, zeros after it being padding; none at all is an
 *   unexpected_message), in place as into another buffer;
 * - any one bit flipped in a sealed record (the header is the AAD) fails the tag, or the
 *   measure when the flipped bit is in the outer type or the length;
 * - the input itself, measured and opened as a record, is refused without a crash (it is
 *   not sealed under the key), and the ends stay in step afterwards.
 */
#include <string.h>

#include "fuzz.h"
#include "tls13.h"

static const uint16_t suites[] = {0x1301, 0x1302, 0x1303};

static uint8_t rec[EDDY__TLS13_PLAIN_MAX + EDDY__TLS13_OVERHEAD];
static uint8_t copy[EDDY__TLS13_PLAIN_MAX + EDDY__TLS13_OVERHEAD];
static uint8_t out[EDDY__TLS13_PLAIN_MAX + EDDY__TLS13_OVERHEAD];

/* Seals content as type with w and opens it with r, checking the round trip. */
static void round_trip(eddy__tls13_t *w, eddy__tls13_t *r, uint8_t type, const uint8_t *content,
                       size_t len, uint64_t *rng, bool tamper)
{
    memcpy(rec + EDDY__TLS13_HEADER, content, len);
    size_t rec_len = eddy__tls13_seal(w, type, rec, len);
    FUZZ_CHECK(rec_len == len + EDDY__TLS13_OVERHEAD);
    FUZZ_CHECK(eddy__tls13_record_len(rec, rec_len) == (long)rec_len);
    FUZZ_CHECK(eddy__tls13_record_len(rec, EDDY__TLS13_HEADER - 1) == 0);
    if (tamper) {
        /* A copy with a bit flipped: refused, and r's state (its sequence) untouched. */
        memcpy(copy, rec, rec_len);
        size_t bit = (size_t)(fuzz_rng_next(rng) % (rec_len * 8));
        copy[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        long measured = eddy__tls13_record_len(copy, rec_len);
        if (measured == (long)rec_len) {
            uint8_t ignored;
            FUZZ_CHECK(eddy__tls13_open(r, copy, rec_len, out, &ignored) ==
                       -EDDY__TLS13_BAD_RECORD_MAC);
        } else {
            FUZZ_CHECK(bit / 8 == 0 || bit / 8 == 3 || bit / 8 == 4);
        }
    }
    uint8_t got_type = 0;
    bool in_place = fuzz_rng_next(rng) & 1;
    uint8_t *dst = in_place ? rec + EDDY__TLS13_HEADER : out;
    long got = eddy__tls13_open(r, rec, rec_len, dst, &got_type);
    /* Where the plaintext ends: content and type, less trailing zeros. */
    size_t end = len + 1;
    uint8_t *inner = in_place ? rec + EDDY__TLS13_HEADER : out;
    while (end > 0 && (end - 1 < len ? content[end - 1] : type) == 0)
        end--;
    if (end == 0) {
        FUZZ_CHECK(got == -EDDY__TLS13_UNEXPECTED_MESSAGE);
        return;
    }
    FUZZ_CHECK(got == (long)(end - 1));
    FUZZ_CHECK(got_type == (end - 1 < len ? content[end - 1] : type));
    FUZZ_CHECK(memcmp(inner, content, (size_t)got) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t secret_a[EDDY__TLS13_SECRET_MAX];
    uint8_t secret_b[EDDY__TLS13_SECRET_MAX];
    memset(secret_a, 0xa5, sizeof(secret_a));
    memset(secret_b, 0x5a, sizeof(secret_b));
    uint16_t suite = suites[data[0] % 3];
    size_t secret_len;
    FUZZ_CHECK(eddy__tls13_suite_supported(suite, &secret_len));
    uint64_t seq = (uint64_t)(data[0] >> 2) << 40; /* far sequence numbers too */
    eddy__tls13_t *w;
    eddy__tls13_t *r;
    FUZZ_CHECK(eddy__tls13_new(suite, secret_b, secret_a, secret_len, 0, seq, &w) == 0);
    FUZZ_CHECK(eddy__tls13_new(suite, secret_a, secret_b, secret_len, seq, 0, &r) == 0);
    uint64_t rng = 0x9e3779b97f4a7c15ull ^ size;

    /* The input as a record: not sealed under r's key, so refused. */
    long measured = eddy__tls13_record_len(data + 1, size - 1);
    if (measured > 0 && (size_t)measured <= size - 1) {
        memcpy(copy, data + 1, (size_t)measured);
        uint8_t ignored;
        FUZZ_CHECK(eddy__tls13_open(r, copy, (size_t)measured, out, &ignored) ==
                   -EDDY__TLS13_BAD_RECORD_MAC);
    } else if (measured < 0) {
        FUZZ_CHECK(measured == -EDDY__TLS13_UNEXPECTED_MESSAGE ||
                   measured == -EDDY__TLS13_RECORD_OVERFLOW ||
                   measured == -EDDY__TLS13_DECODE_ERROR);
    }

    size_t i = 1;
    int ops = 0;
    while (i < size && ops++ < 64) {
        uint8_t op = data[i++];
        if (op == 0xff) {
            FUZZ_CHECK(eddy__tls13_update(w, true) == 0);
            FUZZ_CHECK(eddy__tls13_update(r, false) == 0);
            continue;
        }
        size_t len = 0;
        if (i + 2 <= size)
            len = ((size_t)data[i] << 8 | data[i + 1]) % (EDDY__TLS13_PLAIN_MAX + 1);
        i += 2;
        if (i > size)
            i = size;
        if (len > size - i)
            len = size - i;
        round_trip(w, r, op, data + i, len, &rng, ops % 3 == 1);
        i += len;
    }
    eddy__tls13_free(w);
    eddy__tls13_free(r);
    return 0;
}

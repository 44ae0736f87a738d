/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer driver for rt/eio_payload.c and its base64 (src/base64.c; Engine.IO polling payloads).
 * The first input byte picks the form: bit 0 protocol 3 (else 4), bit 1 the v3 binary form;
 * the rest is the body.
 *
 * Checked invariants:
 * - every packet's data lies inside the body; types are 0..6; text packets are UTF-8;
 *   base64 packets decode, to the length rt_base64_check announced;
 * - after an error or the end, the iterator keeps returning the same;
 * - re-encoding the packets decoded (with the encoder of the same form) gives a payload
 *   that decodes to the same packets (type, binary, bytes) and then ends cleanly;
 * - the single-packet decoder agrees with the v4 payload iterator on one-packet bodies;
 * - base64: encode -> decode is the identity on the body; decoding in place gives the same
 *   bytes as decoding into another buffer;
 * - the strict forms of the shared codec (eddy_base64_*: the handshake's padded standard
 *   alphabet, the JWTs' unpadded base64url): whatever they accept re-encodes to the very
 *   same text (one encoding per byte string), and the lenient Engine.IO reading accepts it
 *   too, with the same bytes.
 */
#include <string.h>

#include "eddy.h"
#include "eio_payload.h"
#include "fuzz.h"
#include "rt_base64.h"

/* Every packet takes at least one byte of the body, which is at most 1 << 15 bytes. */
#define MAX_PACKETS (1 << 15)

typedef struct decoded {
    eio_type_t type;
    bool binary;
    size_t off, len; /* in the arena */
} decoded_t;

static char arena[1 << 17], reencoded[1 << 19], scratch[1 << 17];

/* Decodes body into packets (bytes copied to arena at *used); returns the count and stores
 * the final iterator result in *last. */
static size_t decode_all(int protocol, bool binary_form, const char *body, size_t len,
                         decoded_t *pk, size_t *used, int *last)
{
    eio_payload_iter_t it;
    eio_packet_t p;
    size_t n = 0;
    int rc;
    eio_payload_init(&it, protocol, binary_form, body, len);
    while ((rc = eio_payload_next(&it, &p)) == 1) {
        FUZZ_CHECK(n < MAX_PACKETS);
        FUZZ_CHECK(p.type <= EIO_NOOP);
        FUZZ_CHECK(p.data >= body && p.data + p.len <= body + len);
        pk[n].type = p.type;
        pk[n].binary = p.binary;
        pk[n].off = *used;
        if (p.base64) {
            FUZZ_CHECK(p.binary);
            long want = rt_base64_check(p.data, p.len);
            FUZZ_CHECK(want >= 0 && (size_t)want <= rt_base64_decoded_max(p.len));
            FUZZ_CHECK(*used + rt_base64_decoded_max(p.len) <= sizeof(arena));
            long got = rt_base64_decode(arena + *used, p.data, p.len);
            FUZZ_CHECK(got == want);
            pk[n].len = (size_t)got;
        } else {
            FUZZ_CHECK(p.binary || eddy_utf8_valid(p.data, p.len));
            FUZZ_CHECK(*used + p.len <= sizeof(arena));
            memcpy(arena + *used, p.data, p.len);
            pk[n].len = p.len;
        }
        *used += pk[n].len;
        n++;
    }
    FUZZ_CHECK(rc == 0 || rc == EIO_EPARSE || rc == EIO_EBASE64 || rc == EIO_EUTF8);
    FUZZ_CHECK(eio_payload_next(&it, &p) == rc);
    *last = rc;
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 1 + (1 << 15))
        return 0;
    int protocol = data[0] & 1 ? 3 : 4;
    bool binary_form = data[0] & 2;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;

    static decoded_t first[MAX_PACKETS], second[MAX_PACKETS];
    size_t used = 0;
    int last;
    size_t n = decode_all(protocol, binary_form, body, len, first, &used, &last);

    /* Re-encode with the same form. */
    size_t out = 0;
    for (size_t i = 0; i < n; i++) {
        const decoded_t *d = &first[i];
        const char *bytes = arena + d->off;
        size_t room = sizeof(reencoded) - out;
        size_t k;
        if (protocol == 4) {
            /* v4 binary packets are always messages. */
            FUZZ_CHECK(!d->binary || d->type == EIO_MESSAGE);
            k = eio4_payload_put(reencoded + out, room, i == 0, d->type, bytes, d->len, d->binary);
        } else if (binary_form) {
            k = eio3_binary_payload_put(reencoded + out, room, d->type, bytes, d->len, d->binary);
        } else {
            k = eio3_payload_put(reencoded + out, room, d->type, bytes, d->len, d->binary);
        }
        FUZZ_CHECK(k <= room);
        out += k;
    }
    if (n > 0) {
        size_t used2 = used;
        int last2;
        char *copy = malloc(out);
        memcpy(copy, reencoded, out);
        size_t n2 = decode_all(protocol, binary_form, copy, out, second, &used2, &last2);
        free(copy);
        FUZZ_CHECK(n2 == n && last2 == 0);
        for (size_t i = 0; i < n; i++) {
            FUZZ_CHECK(second[i].type == first[i].type);
            FUZZ_CHECK(second[i].binary == first[i].binary);
            FUZZ_CHECK(second[i].len == first[i].len);
            FUZZ_CHECK(memcmp(arena + second[i].off, arena + first[i].off, first[i].len) == 0);
        }
    }

    /* One v4 packet: the single-packet decoder agrees with the iterator. */
    if (protocol == 4 && !memchr(body, 0x1e, len) && eddy_utf8_valid(body, len)) {
        eio_packet_t p;
        int rc = eio_packet_decode(4, body, len, &p);
        FUZZ_CHECK((rc == 0) == (n == 1 && last == 0));
    }

    /* Base64 of the body. */
    size_t e = rt_base64_encode(scratch, body, len);
    FUZZ_CHECK(e == rt_base64_encoded_len(len));
    FUZZ_CHECK(rt_base64_check(scratch, e) == (long)len);
    FUZZ_CHECK(rt_base64_decode(scratch, scratch, e) == (long)len);
    FUZZ_CHECK(memcmp(scratch, body, len) == 0);
    long want = rt_base64_check(body, len);
    if (want >= 0) {
        char *copy = malloc(len + 1);
        memcpy(copy, body, len);
        FUZZ_CHECK(rt_base64_decode(scratch, body, len) == want);
        FUZZ_CHECK(rt_base64_decode(copy, copy, len) == want);
        FUZZ_CHECK(memcmp(copy, scratch, (size_t)want) == 0);
        free(copy);
    }
    static const unsigned strict[] = {0, EDDY_BASE64_URL | EDDY_BASE64_NOPAD};
    for (size_t i = 0; i < sizeof(strict) / sizeof(strict[0]); i++) {
        ssize_t n = eddy_base64_decode(scratch, len, body, len, strict[i]);
        FUZZ_CHECK(n == eddy_base64_decode(NULL, 0, body, len, strict[i]));
        if (n < 0)
            continue;
        unsigned char *bytes = malloc((size_t)n + 1);
        memcpy(bytes, scratch, (size_t)n);
        FUZZ_CHECK(eddy_base64_encode(scratch, bytes, (size_t)n, strict[i]) == len);
        FUZZ_CHECK(memcmp(scratch, body, len) == 0);
        FUZZ_CHECK(rt_base64_decode(scratch, body, len) == (long)n);
        FUZZ_CHECK(memcmp(scratch, bytes, (size_t)n) == 0);
        free(bytes);
    }
    return 0;
}

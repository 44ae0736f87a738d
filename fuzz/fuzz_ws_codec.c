/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer driver for src/ws_codec.c.
 *
 * The input is read as a received frame, as a close payload, and as a payload to pack.
 * Checked invariants:
 * - a frame header parses the same from any buffer holding at least its bytes, and
 *   EDDY_AGAIN from any shorter one; written back it parses to the same fields, and is
 *   byte-identical when the original used the minimal length encoding;
 * - eddy__ws_check_header() only accepts what RFC 6455 allows for the rules given;
 * - eddy_ws_unpack() keeps everything inside the buffer, accepts only well-formed
 *   frames, and packing the result with the same key rebuilds the original frame;
 * - pack then unpack round-trips any payload, opcode and flags pack accepts;
 * - masking piecewise with running offsets equals masking whole, and twice restores.
 */
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "fuzz.h"

static bool opcode_known(unsigned op)
{
    return op <= 2 || (op >= 8 && op <= 10);
}

static int header_flags(const eddy__ws_header_t *h)
{
    return (h->fin ? EDDY_WS_FLAG_FIN : 0) | (h->rsv & 4 ? EDDY_WS_FLAG_RSV1 : 0) |
           (h->rsv & 2 ? EDDY_WS_FLAG_RSV2 : 0) | (h->rsv & 1 ? EDDY_WS_FLAG_RSV3 : 0) |
           (h->masked ? EDDY_WS_FLAG_MASK : 0);
}

static size_t minimal_header_len(uint64_t payload_len, bool masked)
{
    return 2 + (payload_len < 126 ? 0 : payload_len <= 0xFFFF ? 2 : 8) + (masked ? 4 : 0);
}

static bool headers_same(const eddy__ws_header_t *a, const eddy__ws_header_t *b)
{
    return a->fin == b->fin && a->rsv == b->rsv && a->opcode == b->opcode &&
           a->masked == b->masked && memcmp(a->mask, b->mask, 4) == 0 &&
           a->payload_len == b->payload_len && a->header_len == b->header_len;
}

static void fuzz_header(const uint8_t *data, size_t size)
{
    eddy__ws_header_t hdr, again;
    ssize_t rc = eddy__ws_parse_header(data, size, &hdr);
    FUZZ_CHECK(rc == EDDY_AGAIN || rc == EDDY_EPROTO || (rc >= 2 && rc <= 14));
    if (rc == EDDY_AGAIN)
        FUZZ_CHECK(size < 14);
    if (rc < 0)
        return;
    FUZZ_CHECK(hdr.header_len == rc && (size_t)rc <= size);
    FUZZ_CHECK(hdr.payload_len >> 63 == 0);

    for (size_t n = 0; n < (size_t)rc; n++)
        FUZZ_CHECK(eddy__ws_parse_header(data, n, &again) == EDDY_AGAIN);
    FUZZ_CHECK(eddy__ws_parse_header(data, (size_t)rc, &again) == rc);
    FUZZ_CHECK(headers_same(&again, &hdr));

    uint8_t out[EDDY_WS_MAX_HEADER_LEN];
    size_t n =
        eddy__ws_write_header(out, hdr.opcode, header_flags(&hdr), hdr.payload_len, hdr.mask);
    FUZZ_CHECK(n == minimal_header_len(hdr.payload_len, hdr.masked) && n <= (size_t)rc);
    FUZZ_CHECK(eddy__ws_parse_header(out, n, &again) == (ssize_t)n);
    again.header_len = hdr.header_len; /* the only field that may differ */
    FUZZ_CHECK(headers_same(&again, &hdr));
    if (n == (size_t)rc)
        FUZZ_CHECK(memcmp(out, data, n) == 0);

    /* Every combination of rules and message state. */
    for (int r = 0; r < 32; r++) {
        eddy__ws_rules_t rules = {.expect_masked = r & 1, .allowed_rsv = (uint8_t)(r >> 1 & 7)};
        bool in_message = r & 16;
        int verdict = eddy__ws_check_header(&hdr, &rules, in_message);
        FUZZ_CHECK(verdict == 0 || verdict == 1002);
        if (verdict != 0)
            continue;
        FUZZ_CHECK(hdr.masked == rules.expect_masked);
        FUZZ_CHECK((hdr.rsv & ~rules.allowed_rsv) == 0);
        FUZZ_CHECK(opcode_known(hdr.opcode));
        if (hdr.opcode >= 8)
            FUZZ_CHECK(hdr.fin && hdr.payload_len <= 125 && !(hdr.rsv & 4));
        else if (hdr.opcode == 0)
            FUZZ_CHECK(in_message && !(hdr.rsv & 4));
        else
            FUZZ_CHECK(!in_message);
    }
}

static void fuzz_unpack(const uint8_t *data, size_t size)
{
    uint8_t *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    eddy_frame_t f;
    ssize_t rc = eddy_ws_unpack(buf, size, &f);
    FUZZ_CHECK(rc > 0 || rc == EDDY_AGAIN || rc == EDDY_EPROTO);
    if (rc <= 0) {
        free(buf);
        return;
    }

    eddy__ws_header_t hdr;
    ssize_t hl = eddy__ws_parse_header(data, size, &hdr);
    FUZZ_CHECK(hl > 0 && (size_t)rc == (size_t)hl + hdr.payload_len && (size_t)rc <= size);
    FUZZ_CHECK(f.data == (const char *)buf + hl && f.len == hdr.payload_len);
    FUZZ_CHECK(opcode_known(f.opcode) && f.fd == 0 && f.finish == hdr.fin);
    FUZZ_CHECK(f.flags == header_flags(&hdr));
    if (f.opcode >= 8)
        FUZZ_CHECK(f.finish && f.len <= 125);
    if (f.opcode == EDDY_WS_OPCODE_CLOSE) {
        FUZZ_CHECK(f.len != 1);
        FUZZ_CHECK(f.code == 1005 ? f.len == 0 : eddy__ws_close_code_valid(f.code));
        FUZZ_CHECK(f.reason != NULL && eddy_utf8_valid(f.reason, f.reason_len));
    } else {
        FUZZ_CHECK(f.code == 0 && f.reason == NULL && f.reason_len == 0);
    }
    /* Bytes after the frame are untouched. */
    FUZZ_CHECK(memcmp(buf + rc, data + rc, size - (size_t)rc) == 0);
    /* A shorter buffer is incomplete, and left as it was. */
    uint8_t *prefix = malloc((size_t)rc);
    memcpy(prefix, data, (size_t)rc - 1);
    eddy_frame_t partial;
    FUZZ_CHECK(eddy_ws_unpack(prefix, (size_t)rc - 1, &partial) == EDDY_AGAIN);
    FUZZ_CHECK(memcmp(prefix, data, (size_t)rc - 1) == 0);

    /* Packing what was unpacked, with the same key, rebuilds the frame when its length
     * was minimally encoded. */
    if ((size_t)hl == minimal_header_len(hdr.payload_len, hdr.masked)) {
        uint8_t *repacked = malloc((size_t)rc);
        ssize_t n = eddy_ws_pack(repacked, (size_t)rc, f.data, f.len, f.opcode, f.flags, hdr.mask);
        FUZZ_CHECK(n == rc && memcmp(repacked, data, (size_t)rc) == 0);
        free(repacked);
    }
    free(prefix);
    free(buf);
}

static void fuzz_close_payload(const uint8_t *data, size_t size)
{
    uint16_t code;
    const char *reason;
    size_t reason_len;
    int rc = eddy__ws_parse_close(data, size, &code, &reason, &reason_len);
    if (size == 1) {
        FUZZ_CHECK(rc == 1002);
    } else if (size == 0) {
        FUZZ_CHECK(rc == 0 && code == 1005 && reason_len == 0);
    } else if (!eddy__ws_close_code_valid((unsigned)data[0] << 8 | data[1])) {
        FUZZ_CHECK(rc == 1002);
    } else {
        bool valid = eddy_utf8_valid(data + 2, size - 2);
        FUZZ_CHECK(rc == (valid ? 0 : 1007));
        if (valid)
            FUZZ_CHECK(code == ((unsigned)data[0] << 8 | data[1]) &&
                       reason == (const char *)data + 2 && reason_len == size - 2);
    }
}

/* The first four bytes choose opcode, flags and mask key; the rest is the payload. */
static void fuzz_roundtrip(const uint8_t *data, size_t size)
{
    if (size < 6)
        return;
    int opcode = data[0] & 0xF;
    int flags = data[1] & (EDDY_WS_FLAG_FIN | EDDY_WS_FLAG_COMPRESS | EDDY_WS_FLAG_RSV1 |
                           EDDY_WS_FLAG_RSV2 | EDDY_WS_FLAG_RSV3 | EDDY_WS_FLAG_MASK);
    const uint8_t *key = data + 2;
    const uint8_t *payload = data + 6;
    size_t len = size - 6;

    ssize_t need = eddy_ws_pack(NULL, 0, payload, len, opcode, flags, key);
    bool control = opcode >= 8;
    if (!opcode_known((unsigned)opcode) ||
        (control && (len > 125 || !(flags & EDDY_WS_FLAG_FIN)))) {
        FUZZ_CHECK(need == EDDY_EINVAL);
        return;
    }
    FUZZ_CHECK(need == (ssize_t)(minimal_header_len(len, flags & EDDY_WS_FLAG_MASK) + len));
    uint8_t *frame = malloc((size_t)need);
    FUZZ_CHECK(eddy_ws_pack(frame, (size_t)need, payload, len, opcode, flags, key) == need);

    eddy_frame_t f;
    ssize_t rc = eddy_ws_unpack(frame, (size_t)need, &f);
    if (opcode == EDDY_WS_OPCODE_CLOSE) {
        /* Only well-formed close payloads survive unpacking. */
        uint16_t code;
        const char *reason;
        size_t reason_len;
        bool ok = eddy__ws_parse_close(payload, len, &code, &reason, &reason_len) == 0;
        FUZZ_CHECK(rc == (ok ? need : EDDY_EPROTO));
        if (!ok) {
            free(frame);
            return;
        }
    }
    FUZZ_CHECK(rc == need);
    FUZZ_CHECK(f.opcode == opcode && f.len == len && memcmp(f.data, payload, len) == 0);
    FUZZ_CHECK(f.flags == (flags & ~EDDY_WS_FLAG_COMPRESS));
    free(frame);
}

static void fuzz_mask(const uint8_t *data, size_t size)
{
    if (size < 5)
        return;
    const uint8_t *key = data;
    uint64_t offset = data[4];
    const uint8_t *payload = data + 5;
    size_t len = size - 5;

    uint8_t *whole = malloc(len ? len : 1), *pieces = malloc(len ? len : 1);
    memcpy(whole, payload, len);
    memcpy(pieces, payload, len);
    eddy__ws_mask(whole, len, key, offset);
    for (size_t i = 0; i < len; i++)
        FUZZ_CHECK(whole[i] == (payload[i] ^ key[(offset + i) % 4]));

    /* Pieces whose sizes come from the payload itself. */
    size_t done = 0;
    while (done < len) {
        size_t piece = 1 + payload[done] % 13;
        if (piece > len - done)
            piece = len - done;
        eddy__ws_mask(pieces + done, piece, key, offset + done);
        done += piece;
    }
    FUZZ_CHECK(memcmp(whole, pieces, len) == 0);
    eddy__ws_mask(whole, len, key, offset);
    FUZZ_CHECK(memcmp(whole, payload, len) == 0);

    /* Unmasking a whole payload while checking it for ASCII. */
    bool ascii = eddy__ws_unmask_ascii(whole, len, key);
    bool expect = true;
    for (size_t i = 0; i < len; i++) {
        FUZZ_CHECK(whole[i] == (payload[i] ^ key[i % 4]));
        expect = expect && whole[i] < 0x80;
    }
    FUZZ_CHECK(ascii == expect);
    free(pieces);
    free(whole);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_header(data, size);
    fuzz_unpack(data, size);
    fuzz_close_payload(data, size);
    fuzz_roundtrip(data, size);
    fuzz_mask(data, size);
    return 0;
}

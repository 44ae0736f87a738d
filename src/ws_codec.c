/* SPDX-License-Identifier: MIT */
/*
 * WebSocket frame codec (RFC 6455 section 5): headers, masking, close payloads, and the
 * public pack/unpack pair built from them.
 */
#include <limits.h>
#include <string.h>

#include "codec.h"

static bool opcode_known(unsigned opcode)
{
    switch (opcode) {
    case EDDY_WS_OPCODE_CONTINUATION:
    case EDDY_WS_OPCODE_TEXT:
    case EDDY_WS_OPCODE_BINARY:
    case EDDY_WS_OPCODE_CLOSE:
    case EDDY_WS_OPCODE_PING:
    case EDDY_WS_OPCODE_PONG:
        return true;
    default:
        return false;
    }
}

static bool opcode_is_control(unsigned opcode)
{
    return (opcode & 0x8) != 0;
}

ssize_t eddy__ws_parse_header(const uint8_t *buf, size_t len, eddy__ws_header_t *hdr)
{
    if (len < 2)
        return EDDY_AGAIN;

    unsigned len7 = buf[1] & 0x7F;
    bool masked = (buf[1] & 0x80) != 0;
    size_t ext_len = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
    size_t header_len = 2 + ext_len + (masked ? 4 : 0);
    if (len < header_len)
        return EDDY_AGAIN;

    uint64_t payload_len = len7;
    if (ext_len) {
        payload_len = 0;
        for (size_t i = 0; i < ext_len; i++)
            payload_len = payload_len << 8 | buf[2 + i];
        if (payload_len >> 63)
            return EDDY_EPROTO;
    }

    hdr->fin = (buf[0] & 0x80) != 0;
    hdr->rsv = (buf[0] >> 4) & 0x7;
    hdr->opcode = buf[0] & 0xF;
    hdr->masked = masked;
    if (masked)
        memcpy(hdr->mask, buf + 2 + ext_len, 4);
    else
        memset(hdr->mask, 0, 4);
    hdr->payload_len = payload_len;
    hdr->header_len = (uint8_t)header_len;
    return (ssize_t)header_len;
}

int eddy__ws_check_header(const eddy__ws_header_t *hdr, const eddy__ws_rules_t *rules,
                          bool in_message)
{
    const uint8_t rsv1 = 0x4;

    if (hdr->masked != rules->expect_masked)
        return EDDY_WS_CLOSE_PROTOCOL_ERROR;
    if (hdr->rsv & ~rules->allowed_rsv)
        return EDDY_WS_CLOSE_PROTOCOL_ERROR;
    if (!opcode_known(hdr->opcode))
        return EDDY_WS_CLOSE_PROTOCOL_ERROR;
    if (opcode_is_control(hdr->opcode)) {
        /* Control frames may arrive between the fragments of a message, but are never
         * fragmented or compressed themselves (RFC 6455 5.5, RFC 7692 6.1). */
        if (!hdr->fin || hdr->payload_len > 125 || (hdr->rsv & rsv1))
            return EDDY_WS_CLOSE_PROTOCOL_ERROR;
        return 0;
    }
    if (hdr->opcode == EDDY_WS_OPCODE_CONTINUATION) {
        /* permessage-deflate marks only the first frame of a message with RSV1. */
        if (!in_message || (hdr->rsv & rsv1))
            return EDDY_WS_CLOSE_PROTOCOL_ERROR;
        return 0;
    }
    if (in_message)
        return EDDY_WS_CLOSE_PROTOCOL_ERROR;
    return 0;
}

size_t eddy__ws_write_header(uint8_t out[EDDY_WS_MAX_HEADER_LEN], uint8_t opcode, int flags,
                             uint64_t payload_len, const uint8_t mask[4])
{
    size_t n = 2;

    out[0] =
        (uint8_t)((flags & EDDY_WS_FLAG_FIN ? 0x80 : 0) | (flags & EDDY_WS_FLAG_RSV1 ? 0x40 : 0) |
                  (flags & EDDY_WS_FLAG_RSV2 ? 0x20 : 0) | (flags & EDDY_WS_FLAG_RSV3 ? 0x10 : 0) |
                  (opcode & 0xF));
    out[1] = flags & EDDY_WS_FLAG_MASK ? 0x80 : 0;
    if (payload_len < 126) {
        out[1] |= (uint8_t)payload_len;
    } else if (payload_len <= 0xFFFF) {
        out[1] |= 126;
        out[n++] = (uint8_t)(payload_len >> 8);
        out[n++] = (uint8_t)payload_len;
    } else {
        out[1] |= 127;
        for (int shift = 56; shift >= 0; shift -= 8)
            out[n++] = (uint8_t)(payload_len >> shift);
    }
    if (flags & EDDY_WS_FLAG_MASK) {
        memcpy(out + n, mask, 4);
        n += 4;
    }
    return n;
}

/* XORs the 8 bytes at p with key_word; returns them as they are now. */
static inline uint64_t xor_word(uint8_t *p, uint64_t key_word)
{
    uint64_t word;
    memcpy(&word, p, sizeof(word));
    word ^= key_word;
    memcpy(p, &word, sizeof(word));
    return word;
}

/* XORs data[0..len) with the 4-byte key whose first byte applies to data[0] (key32 holds
 * it as read from memory). Returns the OR of the bytes it produced, folded into 64 bits, so
 * an ASCII check costs no second pass (callers that ignore it do not pay for it: inlined,
 * the OR is dead code). Always inlined: with the 64-byte step gcc made it a call, which
 * cost a 20-byte echo 20 instructions (bench/instructions). */
static inline __attribute__((always_inline)) uint64_t xor_key(uint8_t *data, size_t len,
                                                              uint32_t key32)
{
    uint64_t any = 0;
    size_t i = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    /* Repeated twice: since 8 is a multiple of 4, every 8-byte word of the payload is
     * XORed with the same pattern. */
    uint64_t key_word = (uint64_t)key32 << 32 | key32;
#if defined(__GNUC__)
    /* 64 bytes at a time where the compiler has vectors (four SSE2 registers on x86-64),
     * then at most one 32-byte, one 16-byte and one 8-byte step. */
    typedef uint64_t v2u64 __attribute__((vector_size(16)));
    v2u64 key_vec = {key_word, key_word}, acc = {0, 0};
    if (len >= 32) { /* one test for short messages, not two */
        for (; len - i >= 64; i += 64) {
            v2u64 a, b, c, d;
            memcpy(&a, data + i, sizeof(a));
            memcpy(&b, data + i + 16, sizeof(b));
            memcpy(&c, data + i + 32, sizeof(c));
            memcpy(&d, data + i + 48, sizeof(d));
            a ^= key_vec;
            b ^= key_vec;
            c ^= key_vec;
            d ^= key_vec;
            memcpy(data + i, &a, sizeof(a));
            memcpy(data + i + 16, &b, sizeof(b));
            memcpy(data + i + 32, &c, sizeof(c));
            memcpy(data + i + 48, &d, sizeof(d));
            acc |= (a | b) | (c | d);
        }
        if (len - i >= 32) {
            v2u64 a, b;
            memcpy(&a, data + i, sizeof(a));
            memcpy(&b, data + i + 16, sizeof(b));
            a ^= key_vec;
            b ^= key_vec;
            memcpy(data + i, &a, sizeof(a));
            memcpy(data + i + 16, &b, sizeof(b));
            acc |= a | b;
            i += 32;
        }
    }
    if (len - i >= 16) { /* one vector, not two words: a 20-byte message is 16 + 4 */
        v2u64 a;
        memcpy(&a, data + i, sizeof(a));
        a ^= key_vec;
        memcpy(data + i, &a, sizeof(a));
        acc |= a;
        i += 16;
    }
    any = acc[0] | acc[1];
    if (len - i >= 8) { /* at most once: under 16 bytes are left */
        any |= xor_word(data + i, key_word);
        i += 8;
    }
#else
    for (; len - i >= 8; i += 8)
        any |= xor_word(data + i, key_word);
#endif
    if (len - i >= 4) { /* 4 is a multiple of 4 too: the key stays in phase */
        uint32_t word;
        memcpy(&word, data + i, sizeof(word));
        word ^= key32;
        memcpy(data + i, &word, sizeof(word));
        any |= word;
        i += 4;
    }
    for (; i < len; i++, key_word >>= 8) {
        data[i] ^= (uint8_t)key_word;
        any |= data[i];
    }
#else
    uint8_t key[4];
    memcpy(key, &key32, sizeof(key));
    for (; i < len; i++) {
        data[i] ^= key[i & 3];
        any |= data[i];
    }
#endif
    return any;
}

void eddy__ws_mask(uint8_t *data, size_t len, const uint8_t mask[4], uint64_t offset)
{
    uint8_t key[4];
    for (int i = 0; i < 4; i++)
        key[i] = mask[(offset + (uint64_t)i) & 3]; /* the key rotated to this offset */
    uint32_t key32;
    memcpy(&key32, key, sizeof(key32));
    xor_key(data, len, key32);
}

bool eddy__ws_unmask_ascii(uint8_t *data, size_t len, const uint8_t mask[4])
{
    uint32_t key32;
    memcpy(&key32, mask, sizeof(key32));
    return (xor_key(data, len, key32) & 0x8080808080808080ull) == 0;
}

bool eddy__ws_close_code_valid(unsigned code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

int eddy__ws_parse_close(const uint8_t *payload, size_t len, uint16_t *code, const char **reason,
                         size_t *reason_len)
{
    if (len == 0) {
        /* Nothing to point into: an empty, NUL-terminated reason. */
        *code = EDDY_WS_CLOSE_STATUS_ERROR;
        *reason = "";
        *reason_len = 0;
        return 0;
    }
    if (len == 1)
        return EDDY_WS_CLOSE_PROTOCOL_ERROR;

    unsigned wire_code = (unsigned)payload[0] << 8 | payload[1];
    if (!eddy__ws_close_code_valid(wire_code))
        return EDDY_WS_CLOSE_PROTOCOL_ERROR;
    if (!eddy_utf8_valid(payload + 2, len - 2))
        return EDDY_WS_CLOSE_MESSAGE_ERROR;
    *code = (uint16_t)wire_code;
    *reason = (const char *)payload + 2;
    *reason_len = len - 2;
    return 0;
}

ssize_t eddy_ws_pack(void *out, size_t cap, const void *data, size_t len, int opcode, int flags,
                     const uint8_t mask_key[4])
{
    if (opcode < 0 || opcode > 0xF || !opcode_known((unsigned)opcode))
        return EDDY_EINVAL;
    if (opcode_is_control((unsigned)opcode) && (len > 125 || !(flags & EDDY_WS_FLAG_FIN)))
        return EDDY_EINVAL;
    if ((flags & EDDY_WS_FLAG_MASK) && mask_key == NULL)
        return EDDY_EINVAL;
    if (len > 0 && data == NULL)
        return EDDY_EINVAL;

    size_t header_len = 2 +
                        (len < 126       ? 0
                         : len <= 0xFFFF ? 2
                                         : 8) +
                        (flags & EDDY_WS_FLAG_MASK ? 4 : 0);
    if (len > (size_t)SSIZE_MAX - header_len)
        return EDDY_EINVAL;
    size_t total = header_len + len;
    if (cap < total)
        return (ssize_t)total;

    uint8_t *frame = out;
    eddy__ws_write_header(frame, (uint8_t)opcode, flags, len, mask_key);
    /* memmove: a caller may have placed the payload in out already, after some slack. */
    if (len > 0)
        memmove(frame + header_len, data, len);
    if (flags & EDDY_WS_FLAG_MASK)
        eddy__ws_mask(frame + header_len, len, mask_key, 0);
    return (ssize_t)total;
}

ssize_t eddy_ws_unpack(void *buf, size_t len, eddy_frame_t *frame)
{
    uint8_t *bytes = buf;
    eddy__ws_header_t hdr;

    ssize_t header_len = eddy__ws_parse_header(bytes, len, &hdr);
    if (header_len < 0)
        return header_len;
    if (!opcode_known(hdr.opcode))
        return EDDY_EPROTO;
    if (opcode_is_control(hdr.opcode) && (!hdr.fin || hdr.payload_len > 125))
        return EDDY_EPROTO;
    if (hdr.payload_len > len - (size_t)header_len)
        return EDDY_AGAIN;

    uint8_t *payload = bytes + header_len;
    size_t payload_len = (size_t)hdr.payload_len;
    if (hdr.masked)
        eddy__ws_mask(payload, payload_len, hdr.mask, 0);

    frame->fd = 0;
    frame->data = (const char *)payload;
    frame->len = payload_len;
    frame->opcode = hdr.opcode;
    frame->finish = hdr.fin;
    frame->flags =
        (uint8_t)((hdr.fin ? EDDY_WS_FLAG_FIN : 0) | (hdr.rsv & 0x4 ? EDDY_WS_FLAG_RSV1 : 0) |
                  (hdr.rsv & 0x2 ? EDDY_WS_FLAG_RSV2 : 0) |
                  (hdr.rsv & 0x1 ? EDDY_WS_FLAG_RSV3 : 0) | (hdr.masked ? EDDY_WS_FLAG_MASK : 0));
    frame->code = 0;
    frame->reason = NULL;
    frame->reason_len = 0;
    if (hdr.opcode == EDDY_WS_OPCODE_CLOSE &&
        eddy__ws_parse_close(payload, payload_len, &frame->code, &frame->reason,
                             &frame->reason_len) != 0)
        return EDDY_EPROTO;
    return header_len + (ssize_t)payload_len;
}

/* SPDX-License-Identifier: MIT */
/*
 * Base64 and base64url (RFC 4648 4 and 5): the one codec behind the handshake key, the
 * Engine.IO payloads, the recovery session ids and the daemon's JWTs.
 */
#include "eddy.h"

static const char std_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Each byte's digit: 0-61 the letters and digits, 62 and 63 '+' and '/', 64 and 65 '-' and
 * '_' (base64url's 62 and 63), -1 none. A table, not comparisons: a handshake key's
 * characters are random, and per-character branches mispredicted. */
static const int8_t digit_of[256] = {
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 62, -1, 64, -1, 63,
    52, 53, 54, 55, 56, 57, 58, 59, 60, 61, -1, -1, -1, -1, -1, -1, -1, 0,  1,  2,  3,  4,  5,  6,
    7,  8,  9,  10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, -1, -1, -1, -1, 65,
    -1, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48,
    49, 50, 51, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
};

static inline int digit_value(char c, unsigned flags)
{
    int v = digit_of[(unsigned char)c];
    if (v < 62)
        return v;
    if (v < 64)
        return (flags & EDDY_BASE64_ANY_ALPHABET) || !(flags & EDDY_BASE64_URL) ? v : -1;
    return flags & (EDDY_BASE64_ANY_ALPHABET | EDDY_BASE64_URL) ? v - 2 : -1;
}

int eddy_base64_value(char c, unsigned flags)
{
    return digit_value(c, flags);
}

size_t eddy_base64_encoded_len(size_t n, unsigned flags)
{
    if (flags & EDDY_BASE64_NOPAD)
        return n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
    return (n + 2) / 3 * 4;
}

size_t eddy_base64_decoded_max(size_t n)
{
    return n / 4 * 3 + 2;
}

size_t eddy_base64_encode(char *out, const void *in, size_t n, unsigned flags)
{
    const char *alphabet = flags & EDDY_BASE64_URL ? url_alphabet : std_alphabet;
    const unsigned char *s = in;
    size_t o = 0, i = 0;
    for (; n - i >= 3; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        out[o++] = alphabet[v >> 18];
        out[o++] = alphabet[v >> 12 & 63];
        out[o++] = alphabet[v >> 6 & 63];
        out[o++] = alphabet[v & 63];
    }
    size_t rest = n - i;
    if (rest == 0)
        return o;
    uint32_t v = (uint32_t)s[i] << 16 | (rest == 2 ? (uint32_t)s[i + 1] << 8 : 0);
    out[o++] = alphabet[v >> 18];
    out[o++] = alphabet[v >> 12 & 63];
    if (rest == 2)
        out[o++] = alphabet[v >> 6 & 63];
    if (!(flags & EDDY_BASE64_NOPAD))
        for (; o % 4; o++)
            out[o] = '=';
    return o;
}

ssize_t eddy_base64_decode(void *out, size_t cap, const char *in, size_t n, unsigned flags)
{
    size_t pad = 0;
    if (!(flags & EDDY_BASE64_NOPAD))
        while (pad < 2 && pad < n && in[n - 1 - pad] == '=')
            pad++;
    /* '=' only completes a 4-character group; without it the length must be a multiple of
     * four unless padding is optional (or refused). */
    if (n % 4 != 0 && (pad || !(flags & (EDDY_BASE64_NOPAD | EDDY_BASE64_PAD_OPTIONAL))))
        return EDDY_EINVAL;
    size_t digits = n - pad, rest = digits % 4;
    if (rest == 1) /* 6 bits: no byte count encodes to this */
        return EDDY_EINVAL;
    size_t len = digits / 4 * 3 + (rest ? rest - 1 : 0);
    if (out != NULL && len > cap)
        return EDDY_ETOOBIG;

    /* Each group is read whole before its bytes are written, and 3 bytes out never pass 4
     * characters in, so out may be in itself. */
    unsigned char *o = out;
    size_t i = 0;
    /* Whole groups, then the short one (a handshake key is five and a short one). A
     * negative digit makes the OR of the group's digits negative. */
    for (; digits - i >= 4; i += 4) {
        int a = digit_value(in[i], flags), b = digit_value(in[i + 1], flags);
        int c = digit_value(in[i + 2], flags), d = digit_value(in[i + 3], flags);
        if ((a | b | c | d) < 0)
            return EDDY_EINVAL;
        uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | (uint32_t)d;
        if (o != NULL) {
            o[0] = (unsigned char)(v >> 16);
            o[1] = (unsigned char)(v >> 8);
            o[2] = (unsigned char)v;
            o += 3;
        }
    }
    if (i < digits) { /* the short group: 2 or 3 digits */
        size_t k = digits - i;
        int a = digit_value(in[i], flags), b = digit_value(in[i + 1], flags);
        int c = k == 3 ? digit_value(in[i + 2], flags) : 0;
        if ((a | b | c) < 0)
            return EDDY_EINVAL;
        uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6;
        /* Strict: the bits a short group leaves over must be zero, so that every byte
         * string has exactly one accepted encoding. */
        if (!(flags & EDDY_BASE64_LAX_BITS) && (v & (k == 2 ? 0xFFFF : 0xFF)))
            return EDDY_EINVAL;
        if (o != NULL) {
            *o++ = (unsigned char)(v >> 16);
            if (k == 3)
                *o = (unsigned char)(v >> 8);
        }
    }
    return (ssize_t)len;
}

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

int eddy_base64_value(char c, unsigned flags)
{
    bool std = (flags & EDDY_BASE64_ANY_ALPHABET) || !(flags & EDDY_BASE64_URL);
    bool url = flags & (EDDY_BASE64_ANY_ALPHABET | EDDY_BASE64_URL);
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if ((c == '+' && std) || (c == '-' && url))
        return 62;
    if ((c == '/' && std) || (c == '_' && url))
        return 63;
    return -1;
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
    for (size_t i = 0; i < digits; i += 4) {
        size_t k = digits - i < 4 ? digits - i : 4;
        uint32_t v = 0;
        for (size_t j = 0; j < 4; j++) {
            int d = j < k ? eddy_base64_value(in[i + j], flags) : 0;
            if (d < 0)
                return EDDY_EINVAL;
            v = v << 6 | (uint32_t)d;
        }
        /* Strict: the bits a short group leaves over must be zero, so that every byte
         * string has exactly one accepted encoding. */
        if (k < 4 && !(flags & EDDY_BASE64_LAX_BITS) && (v & (k == 2 ? 0xFFFF : 0xFF)))
            return EDDY_EINVAL;
        if (o == NULL)
            continue;
        *o++ = (unsigned char)(v >> 16);
        if (k > 2)
            *o++ = (unsigned char)(v >> 8);
        if (k > 3)
            *o++ = (unsigned char)v;
    }
    return (ssize_t)len;
}

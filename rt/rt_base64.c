/* SPDX-License-Identifier: MIT */
#include "rt_base64.h"

#include <stdint.h>

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t rt_base64_encode(char *out, const void *in, size_t n)
{
    const unsigned char *s = in;
    char *o = out;
    size_t i = 0;
    for (; n - i >= 3; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        o[0] = alphabet[v >> 18];
        o[1] = alphabet[v >> 12 & 63];
        o[2] = alphabet[v >> 6 & 63];
        o[3] = alphabet[v & 63];
        o += 4;
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)s[i] << 16;
        o[0] = alphabet[v >> 18];
        o[1] = alphabet[v >> 12 & 63];
        o[2] = o[3] = '=';
        o += 4;
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8;
        o[0] = alphabet[v >> 18];
        o[1] = alphabet[v >> 12 & 63];
        o[2] = alphabet[v >> 6 & 63];
        o[3] = '=';
        o += 4;
    }
    return (size_t)(o - out);
}

/* Value of a base64 character (both alphabets), or -1. */
static int b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

/* Number of data characters of in[0..n) once valid padding is removed, or -1. */
static long data_chars(const char *in, size_t n)
{
    size_t pad = 0;
    while (pad < n && pad < 2 && in[n - 1 - pad] == '=')
        pad++;
    if (pad && n % 4 != 0)
        return -1; /* padding only completes a 4-character group */
    size_t m = n - pad;
    if (m % 4 == 1)
        return -1;
    for (size_t i = 0; i < m; i++)
        if (b64val((unsigned char)in[i]) < 0)
            return -1;
    return (long)m;
}

long rt_base64_check(const char *in, size_t n)
{
    long m = data_chars(in, n);
    if (m < 0)
        return -1;
    return m / 4 * 3 + (m % 4 ? m % 4 - 1 : 0);
}

long rt_base64_decode(void *out, const char *in, size_t n)
{
    long m = data_chars(in, n);
    if (m < 0)
        return -1;
    /* Reads run ahead of writes (4 in, 3 out), so decoding in place is safe. */
    unsigned char *o = out;
    const unsigned char *s = (const unsigned char *)in;
    size_t i = 0, full = (size_t)m / 4 * 4;
    for (; i < full; i += 4) {
        uint32_t v = (uint32_t)b64val(s[i]) << 18 | (uint32_t)b64val(s[i + 1]) << 12 |
                     (uint32_t)b64val(s[i + 2]) << 6 | (uint32_t)b64val(s[i + 3]);
        o[0] = (unsigned char)(v >> 16);
        o[1] = (unsigned char)(v >> 8);
        o[2] = (unsigned char)v;
        o += 3;
    }
    size_t rest = (size_t)m - full;
    if (rest >= 2) {
        uint32_t v = (uint32_t)b64val(s[i]) << 18 | (uint32_t)b64val(s[i + 1]) << 12;
        if (rest == 3)
            v |= (uint32_t)b64val(s[i + 2]) << 6;
        *o++ = (unsigned char)(v >> 16);
        if (rest == 3)
            *o++ = (unsigned char)(v >> 8);
    }
    return (long)(o - (unsigned char *)out);
}

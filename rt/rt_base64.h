/* SPDX-License-Identifier: MIT */
/*
 * Base64 for the real-time layer: Engine.IO polling carries binary packets as base64
 * text. Engine.IO's reading of it on the engine's public codec (eddy_base64_*, eddy.h).
 * Pure functions, no allocation, thread-safe.
 */
#ifndef EDDY_RT_BASE64_H
#define EDDY_RT_BASE64_H

#include <stddef.h>

#include "eddy.h"

/* What Node's Buffer.from(s, "base64") accepts, less the bytes it skips: the standard and
 * the URL-safe alphabet, with or without '=' padding, any unused bits. */
#define RT_BASE64_EIO (EDDY_BASE64_ANY_ALPHABET | EDDY_BASE64_PAD_OPTIONAL | EDDY_BASE64_LAX_BITS)

/* Length of the padded base64 text of n bytes. */
static inline size_t rt_base64_encoded_len(size_t n)
{
    return eddy_base64_encoded_len(n, 0);
}

/* A bound on the bytes that n characters of base64 decode to. */
static inline size_t rt_base64_decoded_max(size_t n)
{
    return eddy_base64_decoded_max(n);
}

/* Writes the padded standard base64 text of in[0..n) to out, which must hold
 * rt_base64_encoded_len(n) bytes (no NUL is written). Returns that length. */
static inline size_t rt_base64_encode(char *out, const void *in, size_t n)
{
    return eddy_base64_encode(out, in, n, 0);
}

/* Decodes in[0..n) into out, which must hold rt_base64_decoded_max(n) bytes; out may be in
 * itself (decoding in place). Accepts RT_BASE64_EIO; rejects any other byte (Node skips
 * them), a length of 4k+1, and padding that is not at the end. Returns the decoded length
 * or -1 (out then holds garbage). */
static inline long rt_base64_decode(void *out, const char *in, size_t n)
{
    ssize_t len = eddy_base64_decode(out, eddy_base64_decoded_max(n), in, n, RT_BASE64_EIO);
    return len < 0 ? -1 : (long)len;
}

/* Validates in[0..n) with rt_base64_decode's rules and returns the decoded length, or -1;
 * writes nothing. */
static inline long rt_base64_check(const char *in, size_t n)
{
    ssize_t len = eddy_base64_decode(NULL, 0, in, n, RT_BASE64_EIO);
    return len < 0 ? -1 : (long)len;
}

#endif /* EDDY_RT_BASE64_H */

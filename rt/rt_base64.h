/* SPDX-License-Identifier: MIT */
/*
 * Base64 (RFC 4648) for the real-time layer: Engine.IO polling carries binary packets as
 * base64 text. Pure functions, no allocation, thread-safe.
 */
#ifndef EDDY_RT_BASE64_H
#define EDDY_RT_BASE64_H

#include <stddef.h>

/* Length of the padded base64 text of n bytes. */
static inline size_t rt_base64_encoded_len(size_t n)
{
    return (n + 2) / 3 * 4;
}

/* A bound on the bytes that n characters of base64 decode to. */
static inline size_t rt_base64_decoded_max(size_t n)
{
    return n / 4 * 3 + 2;
}

/* Writes the padded standard base64 text of in[0..n) to out, which must hold
 * rt_base64_encoded_len(n) bytes (no NUL is written). Returns that length. */
size_t rt_base64_encode(char *out, const void *in, size_t n);

/* Decodes in[0..n) into out, which must hold rt_base64_decoded_max(n) bytes; out may be in
 * itself (decoding in place). Accepts the standard and the URL-safe alphabet (as Node's
 * Buffer.from(s, "base64") does), with or without '=' padding; rejects any other byte
 * (Node skips them), a length of 4k+1, and padding that is not at the end. Returns the
 * decoded length or -1 (out then holds garbage). */
long rt_base64_decode(void *out, const char *in, size_t n);

/* Validates in[0..n) with rt_base64_decode's rules and returns the decoded length, or -1;
 * writes nothing. */
long rt_base64_check(const char *in, size_t n);

#endif /* EDDY_RT_BASE64_H */

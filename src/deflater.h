/* SPDX-License-Identifier: MIT */
/*
 * eddy's DEFLATE compressor (deflater.c), made for permessage-deflate: each message is
 * compressed whole and ends with a sync flush, with or without the window of the
 * messages before it (context takeover).
 */
#ifndef EDDY_DEFLATER_H
#define EDDY_DEFLATER_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

typedef struct eddy__deflater eddy__deflater_t;

/* A compressor with a window of 2^window_bits bytes (9-15), effort level 1-9 (what zlib's
 * levels mean, with zlib's search parameters) and mem_level 1-9 (the size of its hash
 * table: 2^(mem_level + 7) entries, as zlib's). NULL on ENOMEM or a value out of range.
 * Memory: a buffer of two windows (at least 2 KiB), a hash table of 2^(mem_level + 8)
 * bytes, chains of 2^(window_bits + 1) bytes and 4 bytes for each symbol of a block (1,024
 * to 4,096): 208 KiB for 15 bits and mem_level 8 (zlib's deflate: 262 KiB), 7.6 KiB for 9
 * and 1 (zlib's: 8.9 KiB). */
eddy__deflater_t *eddy__deflater_new(int window_bits, int level, int mem_level);
void eddy__deflater_free(eddy__deflater_t *d);
/* Forgets the messages before: the next one is compressed as if it were the first (no
 * context takeover). O(1): no table is cleared. */
void eddy__deflater_reset(eddy__deflater_t *d);
/* Compresses a whole message into out (replacing its contents): raw DEFLATE blocks ended
 * by a sync flush without its 00 00 ff ff, ready to send with RSV1 (RFC 7692 7.2.1); a
 * single 0x00 for an empty message. The output is never longer than
 * eddy__deflate_bound(len). Returns 0 or EDDY_ENOMEM (out could not grow). Not
 * thread-safe: one deflater is used by one thread at a time. */
int eddy__deflate(eddy__deflater_t *d, const void *data, size_t len, eddy__buf_t *out);
size_t eddy__deflate_bound(size_t len);
/* The smallest window, in bits (9 to max_bits), with which a message of len bytes
 * compressed alone finds every match max_bits would find. Messages sent without context
 * takeover use it: a small message then works in a few KiB that stay in cache, not in a
 * deflater of hundreds of KiB. */
int eddy__deflate_fit_bits(size_t len, int max_bits);

#endif /* EDDY_DEFLATER_H */

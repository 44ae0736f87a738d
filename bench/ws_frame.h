/* SPDX-License-Identifier: MIT */
/*
 * ws_frame.h: the one piece of RFC 6455 framing the bench programs share (eddy-bench reads
 * the server's frames, floor_echo the client's). Bench-local on purpose: the load generator
 * and the floor peer must not measure eddy with eddy's own codec.
 */
#ifndef EDDY_BENCH_WS_FRAME_H
#define EDDY_BENCH_WS_FRAME_H

#include <stddef.h>
#include <stdint.h>

/* Decodes the payload length of the frame header at p[0..avail), avail >= 2. Returns the
 * header's length up to the mask key (2, 4 or 10) and sets *payload_len, or 0 while the
 * extended length has not all arrived. */
static inline size_t ws_frame_length(const uint8_t *p, size_t avail, uint64_t *payload_len)
{
    uint64_t len = p[1] & 0x7f;
    if (len == 126) {
        if (avail < 4)
            return 0;
        *payload_len = ((uint64_t)p[2] << 8) | p[3];
        return 4;
    }
    if (len == 127) {
        if (avail < 10)
            return 0;
        len = 0;
        for (int i = 0; i < 8; i++)
            len = (len << 8) | p[2 + i];
        *payload_len = len;
        return 10;
    }
    *payload_len = len;
    return 2;
}

#endif

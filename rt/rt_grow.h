/* SPDX-License-Identifier: MIT */
/*
 * Growing a heap buffer by doubling, from 256 bytes: what Engine.IO's packet queues
 * (eio_buf_t) and the real-time layer's per-thread scratch buffers (rt.c) share.
 */
#ifndef RT_GROW_H
#define RT_GROW_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "eddy.h"

/* Makes *data (*cap bytes; NULL and 0 at first) hold at least need bytes, its contents
 * kept. Returns 0, or EDDY_ENOMEM with *data and *cap unchanged. */
static inline int rt_grow(char **data, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 256;
    while (n < need) {
        if (n > SIZE_MAX / 2)
            return EDDY_ENOMEM;
        n *= 2;
    }
    char *grown = realloc(*data, n);
    if (grown == NULL)
        return EDDY_ENOMEM;
    *data = grown;
    *cap = n;
    return 0;
}

#endif /* RT_GROW_H */

/* SPDX-License-Identifier: MIT */
/*
 * The layer's counters (eddy_rt_stats() in include/eddy_rt.h): one cell of counters per
 * event loop, each written only by its loop (a relaxed load and store: no locked
 * instruction), plus one shared cell for every other thread (a relaxed atomic add). A read
 * sums the cells, so figures are exact for a moment during the read, not one snapshot.
 */
#ifndef RT_STATS_H
#define RT_STATS_H

#include <stdatomic.h>
#include <stdint.h>

#include "eddy_rt.h"

/* Loops with a cell of their own; a loop past them shares the last cell. */
#define RT_STATS_LOOPS 64

enum rt_stat {
    /* Engine.IO sessions opened, by protocol (3, 4) and first transport. */
    RT_ST_OPEN_P3_POLLING,
    RT_ST_OPEN_P3_WEBSOCKET,
    RT_ST_OPEN_P4_POLLING,
    RT_ST_OPEN_P4_WEBSOCKET,
    /* ... closed, by the transport they were on then. */
    RT_ST_CLOSE_P3_POLLING,
    RT_ST_CLOSE_P3_WEBSOCKET,
    RT_ST_CLOSE_P4_POLLING,
    RT_ST_CLOSE_P4_WEBSOCKET,
    RT_ST_UPGRADE_P3, /* polling sessions that moved to WebSocket */
    RT_ST_UPGRADE_P4,
    RT_ST_OPEN_REFUSED, /* the layer could not take a session (out of memory) */
    RT_ST_CONNECT,      /* namespace CONNECTs accepted, recovered ones included */
    RT_ST_CONNECT_NO_NSP,
    RT_ST_CONNECT_REFUSED, /* by the connect callback */
    RT_ST_RECOVERED,
    RT_ST_NOT_RECOVERED,
    RT_ST_EVENTS_IN,
    RT_ST_EVENTS_OUT,
    RT_ST_BROADCASTS,
    RT_ST_COUNT
};

typedef struct rt_stats_cell {
    _Alignas(64) atomic_uint_fast64_t v[RT_ST_COUNT];
} rt_stats_cell_t;

typedef struct rt_stats {
    rt_stats_cell_t loops[RT_STATS_LOOPS];
    rt_stats_cell_t other; /* application threads, and loops past RT_STATS_LOOPS */
} rt_stats_t;

/* A zeroed set (aligned), or NULL; rt_stats_free() releases it. */
rt_stats_t *rt_stats_new(void);
void rt_stats_free(rt_stats_t *st);

/* Counts one `which` for the calling thread of srv. */
static inline void rt_stat_add(rt_stats_t *st, eddy_server_t *srv, enum rt_stat which)
{
    int loop = eddy_loop_index(srv);
    if (loop >= 0 && loop < RT_STATS_LOOPS) {
        atomic_uint_fast64_t *v = &st->loops[loop].v[which];
        atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + 1,
                              memory_order_relaxed);
    } else {
        atomic_fetch_add_explicit(&st->other.v[which], 1, memory_order_relaxed);
    }
}

/* Fills *out (eddy_rt_stats()). */
void rt_stats_read(rt_stats_t *st, eddy_rt_stats_t *out);

#endif /* RT_STATS_H */

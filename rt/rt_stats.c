/* SPDX-License-Identifier: MIT */
/* The layer's counters (rt_stats.h). */
#include <stdlib.h>
#include <string.h>

#include "rt_stats.h"

rt_stats_t *rt_stats_new(void)
{
    rt_stats_t *st = aligned_alloc(64, sizeof(*st));
    if (st == NULL)
        return NULL;
    for (size_t i = 0; i <= RT_STATS_LOOPS; i++) {
        rt_stats_cell_t *cell = i < RT_STATS_LOOPS ? &st->loops[i] : &st->other;
        for (size_t k = 0; k < RT_ST_COUNT; k++)
            atomic_init(&cell->v[k], 0);
    }
    return st;
}

void rt_stats_free(rt_stats_t *st)
{
    free(st);
}

/* a - b, or 0 when the cells were read while a session moved between them. */
static uint64_t gauge(uint64_t a, uint64_t b)
{
    return a > b ? a - b : 0;
}

void rt_stats_read(rt_stats_t *st, eddy_rt_stats_t *out)
{
    uint64_t sum[RT_ST_COUNT] = {0};
    for (size_t i = 0; i <= RT_STATS_LOOPS; i++) {
        const rt_stats_cell_t *cell = i < RT_STATS_LOOPS ? &st->loops[i] : &st->other;
        for (size_t k = 0; k < RT_ST_COUNT; k++)
            sum[k] += atomic_load_explicit(&cell->v[k], memory_order_relaxed);
    }
    memset(out, 0, sizeof(*out));
    for (int p = 0; p < 2; p++) {
        /* The four counters of a protocol are consecutive: polling, then WebSocket. */
        size_t open = p == 0 ? RT_ST_OPEN_P3_POLLING : RT_ST_OPEN_P4_POLLING;
        size_t close = p == 0 ? RT_ST_CLOSE_P3_POLLING : RT_ST_CLOSE_P4_POLLING;
        uint64_t upgrades = sum[p == 0 ? RT_ST_UPGRADE_P3 : RT_ST_UPGRADE_P4];
        out->handshakes_total[p][EDDY_RT_POLLING] = sum[open];
        out->handshakes_total[p][EDDY_RT_WEBSOCKET] = sum[open + 1];
        out->upgrades_total[p] = upgrades;
        out->clients[p][EDDY_RT_POLLING] = gauge(sum[open], sum[close] + upgrades);
        out->clients[p][EDDY_RT_WEBSOCKET] = gauge(sum[open + 1] + upgrades, sum[close + 1]);
    }
    out->handshake_failures_total = sum[RT_ST_OPEN_REFUSED];
    out->connects_total = sum[RT_ST_CONNECT];
    out->connect_invalid_namespace_total = sum[RT_ST_CONNECT_NO_NSP];
    out->connect_refused_total = sum[RT_ST_CONNECT_REFUSED];
    out->recovered_total = sum[RT_ST_RECOVERED];
    out->not_recovered_total = sum[RT_ST_NOT_RECOVERED];
    out->events_received_total = sum[RT_ST_EVENTS_IN];
    out->events_sent_total = sum[RT_ST_EVENTS_OUT];
    out->broadcasts_total = sum[RT_ST_BROADCASTS];
}

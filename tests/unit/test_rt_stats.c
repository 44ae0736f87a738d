/* SPDX-License-Identifier: MIT */
/* The layer's counters (rt/rt_stats.h): the gauges eddy_rt_stats() derives from open,
 * close and upgrade counts, and counting from several threads at once (the shared cell). */
#include <pthread.h>

#include "rt_stats.h"
#include "test.h"

static void add(rt_stats_t *st, enum rt_stat which, int n)
{
    for (int i = 0; i < n; i++)
        rt_stat_add(st, NULL, which); /* not a loop thread: the shared cell */
}

static void test_gauges_follow_opens_upgrades_and_closes(void)
{
    rt_stats_t *st = rt_stats_new();
    CHECK(st != NULL);
    add(st, RT_ST_OPEN_P4_POLLING, 5);
    add(st, RT_ST_OPEN_P4_WEBSOCKET, 3);
    add(st, RT_ST_UPGRADE_P4, 2);         /* two polling sessions moved */
    add(st, RT_ST_CLOSE_P4_WEBSOCKET, 4); /* one opened on WebSocket, ... */
    add(st, RT_ST_CLOSE_P4_POLLING, 1);
    add(st, RT_ST_OPEN_P3_POLLING, 1);
    eddy_rt_stats_t out;
    rt_stats_read(st, &out);
    CHECK_EQ_INT(out.clients[EDDY_RT_EIO4][EDDY_RT_POLLING], 2);   /* 5 - 2 - 1 */
    CHECK_EQ_INT(out.clients[EDDY_RT_EIO4][EDDY_RT_WEBSOCKET], 1); /* 3 + 2 - 4 */
    CHECK_EQ_INT(out.clients[EDDY_RT_EIO3][EDDY_RT_POLLING], 1);
    CHECK_EQ_INT(out.clients[EDDY_RT_EIO3][EDDY_RT_WEBSOCKET], 0);
    CHECK_EQ_INT(out.handshakes_total[EDDY_RT_EIO4][EDDY_RT_POLLING], 5);
    CHECK_EQ_INT(out.handshakes_total[EDDY_RT_EIO4][EDDY_RT_WEBSOCKET], 3);
    CHECK_EQ_INT(out.upgrades_total[EDDY_RT_EIO4], 2);
    /* A read that sees a close before its open (cells read one after the other) gives 0,
     * not a wrapped-around count. */
    add(st, RT_ST_CLOSE_P3_WEBSOCKET, 1);
    rt_stats_read(st, &out);
    CHECK_EQ_INT(out.clients[EDDY_RT_EIO3][EDDY_RT_WEBSOCKET], 0);
    rt_stats_free(st);
}

#define THREADS 4
#define ADDS    100000

static void *adder(void *arg)
{
    add(arg, RT_ST_EVENTS_IN, ADDS);
    return NULL;
}

static void test_threads_count_exactly(void)
{
    rt_stats_t *st = rt_stats_new();
    CHECK(st != NULL);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        CHECK(pthread_create(&t[i], NULL, adder, st) == 0);
    eddy_rt_stats_t out;
    rt_stats_read(st, &out); /* while they count: any value, no race */
    CHECK(out.events_received_total <= (uint64_t)THREADS * ADDS);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    rt_stats_read(st, &out);
    CHECK(out.events_received_total == (uint64_t)THREADS * ADDS);
    rt_stats_free(st);
}

int main(void)
{
    test_gauges_follow_opens_upgrades_and_closes();
    test_threads_count_exactly();
    return test_report("test_rt_stats");
}

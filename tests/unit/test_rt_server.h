/* SPDX-License-Identifier: MIT */
/*
 * For unit tests of the real-time layer on a running test_server (test_server.h): the
 * layer installed and the server started on a thread of its own, then the server stopped
 * and both freed. It includes test.h and test_server.h.
 */
#ifndef EDDY_TEST_RT_SERVER_H
#define EDDY_TEST_RT_SERVER_H

#include <pthread.h>

#include "eddy.h"
#include "eddy_rt.h"
#include "test.h"
#include "test_server.h"

static pthread_t rt_test_thread;
static int rt_test_rc = -1; /* what eddy_server_start() returned */

/* Installs rt on test_server (no fallback request callback), runs the server on a thread
 * of its own (test_start_server()) and returns its port. */
static inline int rt_test_start(eddy_rt_t *rt)
{
    eddy_rt_install(rt, NULL);
    eddy_on_start(test_server, test_mark_started);
    test_start_server(&rt_test_thread, &rt_test_rc);
    return eddy_server_port(test_server);
}

/* Stops test_server, joins its thread and checks that the run returned 0; the layer and
 * the server stay, for references to drop before eddy_rt_free() and then
 * eddy_server_free() (that order: the layer's broker thread may still set timers). */
static inline void rt_test_stop_server(void)
{
    eddy_server_stop(test_server);
    pthread_join(rt_test_thread, NULL);
    CHECK_EQ_INT(rt_test_rc, 0);
}

/* rt_test_stop_server(), then frees rt and the server. */
static inline void rt_test_stop(eddy_rt_t *rt)
{
    rt_test_stop_server();
    eddy_rt_free(rt);
    eddy_server_free(test_server);
}

#endif

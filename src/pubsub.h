/* SPDX-License-Identifier: MIT */
/*
 * Pub/sub (pubsub.c): topics, subscriptions and publishing.
 */
#ifndef EDDY_PUBSUB_H
#define EDDY_PUBSUB_H

#include <pthread.h>

#include "util.h"

typedef struct eddy__topic eddy__topic_t;
typedef struct eddy__sub eddy__sub_t;

/* Subscriber counts per topic and per loop, for every thread. */
typedef struct eddy__topics {
    pthread_mutex_t lock;
    eddy__map_t counts; /* topic hash -> chain of counts */
} eddy__topics_t;

void eddy__topics_init(eddy__topics_t *topics);
void eddy__topics_free(eddy__topics_t *topics);
/* For a start with `loops` loops: sets srv->loop_count and forgets every count (no
 * connection outlives a run; counts a stopped loop did not give back would linger). */
void eddy__topics_reset(eddy_server_t *srv, int loops);
/* Drops a released connection's subscriptions. */
void eddy__pubsub_conn_closed(eddy__conn_t *conn);

#endif /* EDDY_PUBSUB_H */

/* SPDX-License-Identifier: MIT */
/*
 * Task workers (task.c).
 */
#ifndef EDDY_TASK_H
#define EDDY_TASK_H

#include "eddy.h"

typedef struct eddy__taskpool eddy__taskpool_t;

/* Starts task_worker_num threads (none when it is 0). Returns 0 or an error. */
int eddy__taskpool_start(eddy_server_t *srv);
/* Runs what is queued to completion and joins the threads. */
void eddy__taskpool_stop(eddy_server_t *srv);

#endif /* EDDY_TASK_H */

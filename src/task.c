/* SPDX-License-Identifier: MIT */
/*
 * Task workers (Swoole's task/finish): blocking work runs on a pool of task_worker_num
 * threads, and its completion is delivered back to the loop that asked, as a posted
 * command, so the finish callback runs on that loop's thread like every other callback.
 */
#include <stdlib.h>
#include <string.h>

#include "loop.h"
#include "server.h"
#include "task.h"

typedef struct task {
    eddy__cmd_t done; /* posted to origin when the work is finished */
    struct task *next;
    uint64_t id;
    eddy_task_fn fn;
    eddy_task_finish_cb finish;
    void *arg;
    void *result;
    eddy__loop_t *origin;
} task_t;

/* The queue is guarded by srv->task_lock, which outlives every pool: eddy_task() may run
 * on an application thread while a stop frees the pool or a start makes a new one. */
struct eddy__taskpool {
    eddy_server_t *srv;
    pthread_cond_t ready;
    task_t *head;
    task_t *tail;
    bool stopping;
    int threads_len;
    pthread_t threads[];
};

static void task_done(eddy__loop_t *loop, eddy__cmd_t *cmd)
{
    task_t *task = (task_t *)cmd;
    if (task->finish != NULL)
        task->finish(loop->srv, task->id, task->result, task->arg);
    free(task);
}

static void *worker_main(void *arg)
{
    eddy__taskpool_t *pool = arg;
    pthread_mutex_t *lock = &pool->srv->task_lock;
    for (;;) {
        pthread_mutex_lock(lock);
        while (pool->head == NULL && !pool->stopping)
            pthread_cond_wait(&pool->ready, lock);
        task_t *task = pool->head;
        if (task != NULL) {
            pool->head = task->next;
            if (pool->head == NULL)
                pool->tail = NULL;
        }
        pthread_mutex_unlock(lock);
        /* Stopping still runs what was queued: each task's finish is owed to its caller. */
        if (task == NULL)
            return NULL;
        task->result = task->fn(task->arg);
        eddy__loop_post(task->origin, &task->done);
    }
}

int eddy__taskpool_start(eddy_server_t *srv)
{
    int n = srv->opts.task_worker_num;
    if (n == 0)
        return 0;
    eddy__taskpool_t *pool = calloc(1, sizeof(*pool) + (size_t)n * sizeof(pthread_t));
    if (pool == NULL)
        return EDDY_ENOMEM;
    pool->srv = srv;
    pthread_cond_init(&pool->ready, NULL);
    pthread_mutex_lock(&srv->task_lock);
    srv->tasks = pool;
    pthread_mutex_unlock(&srv->task_lock);
    for (int i = 0; i < n; i++) {
        int rc = pthread_create(&pool->threads[i], NULL, worker_main, pool);
        if (rc != 0) {
            eddy__log(srv, EDDY__LOG_ERROR, "cannot start task worker %d: %s", i, strerror(rc));
            eddy__taskpool_stop(srv);
            return -rc;
        }
        pool->threads_len = i + 1;
    }
    return 0;
}

void eddy__taskpool_stop(eddy_server_t *srv)
{
    pthread_mutex_lock(&srv->task_lock);
    eddy__taskpool_t *pool = srv->tasks;
    if (pool != NULL) {
        pool->stopping = true;
        pthread_cond_broadcast(&pool->ready);
    }
    pthread_mutex_unlock(&srv->task_lock);
    if (pool == NULL)
        return;
    for (int i = 0; i < pool->threads_len; i++)
        pthread_join(pool->threads[i], NULL);
    pthread_mutex_lock(&srv->task_lock);
    srv->tasks = NULL;
    pthread_mutex_unlock(&srv->task_lock);
    pthread_cond_destroy(&pool->ready);
    free(pool);
}

uint64_t eddy_task(eddy_server_t *srv, eddy_task_fn fn, eddy_task_finish_cb finish, void *arg)
{
    if (fn == NULL)
        return 0;
    task_t *task = calloc(1, sizeof(*task));
    if (task == NULL)
        return 0;
    eddy__loop_t *here = eddy__loop_here(srv);
    task->done.fn = task_done;
    task->id = atomic_fetch_add(&srv->task_seq, 1) + 1;
    task->fn = fn;
    task->finish = finish;
    task->arg = arg;
    task->origin = here != NULL ? here : srv->loops[0];
    uint64_t id = task->id;
    pthread_mutex_lock(&srv->task_lock);
    eddy__taskpool_t *pool = srv->tasks;
    if (pool == NULL || pool->stopping) {
        pthread_mutex_unlock(&srv->task_lock);
        free(task);
        return 0;
    }
    if (pool->tail)
        pool->tail->next = task;
    else
        pool->head = task;
    pool->tail = task;
    pthread_cond_signal(&pool->ready);
    pthread_mutex_unlock(&srv->task_lock);
    return id;
}

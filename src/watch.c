/* SPDX-License-Identifier: MIT */
/*
 * Watches: file descriptors the application owns (a libcurl or hiredis socket) driven by a
 * loop. A watch is one more eddy__io_t with a callback of its own, so the loop's dispatch
 * is the same indirect call for every watcher and costs connections nothing.
 */
#include <errno.h>
#include <stdlib.h>

#include "log.h"
#include "loop.h"

struct eddy_watch {
    eddy__io_t io; /* first member: the loop hands us this pointer */
    eddy__loop_t *loop;
    eddy_watch_cb cb;
    void *arg;
    int events;         /* EDDY_WATCH_* asked for */
    eddy_watch_t *prev; /* the loop's live watches */
    eddy_watch_t *next;
};

/* The backend's events for the user's: HANGUP, so that an error or a hang-up on a socket
 * watched for writing alone is reported (as WRITE) instead of waking the loop for nothing
 * forever. */
static unsigned io_events(int events)
{
    unsigned io = 0;
    if (events & EDDY_WATCH_READ)
        io |= EDDY__IO_READ;
    if (events & EDDY_WATCH_WRITE)
        io |= EDDY__IO_WRITE;
    return io != 0 ? io | EDDY__IO_HANGUP : 0;
}

static void watch_on_io(eddy__loop_t *loop, eddy__io_t *io, unsigned fired)
{
    (void)loop;
    eddy_watch_t *w = (eddy_watch_t *)io;
    int events = 0;
    if (fired & EDDY__IO_READ)
        events |= EDDY_WATCH_READ;
    if (fired & EDDY__IO_WRITE)
        events |= EDDY_WATCH_WRITE;
    /* Errors and hang-ups as the events watched: read() or write() tells which. */
    if (fired & EDDY__IO_HANGUP)
        events |= w->events;
    w->cb(w, w->io.fd, events, w->arg);
}

eddy_watch_t *eddy_watch_new(eddy_server_t *srv, int fd, int events, eddy_watch_cb cb, void *arg)
{
    eddy__loop_t *loop = eddy__loop_here(srv);
    if (loop == NULL || fd < 0 || cb == NULL ||
        (events & ~(EDDY_WATCH_READ | EDDY_WATCH_WRITE)) != 0)
        return NULL;
    eddy_watch_t *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    *w = (eddy_watch_t){.io = {.fd = fd, .events = 0, .cb = watch_on_io},
                        .loop = loop,
                        .cb = cb,
                        .arg = arg,
                        .events = events};
    int rc = eddy__io_set(loop, &w->io, io_events(events));
    if (rc != 0) {
        eddy__log(srv, EDDY__LOG_WARNING, "eddy_watch_new: cannot watch fd %d: %s", fd,
                  eddy_strerror(rc));
        free(w);
        return NULL;
    }
    w->next = loop->watches;
    if (loop->watches != NULL)
        loop->watches->prev = w;
    loop->watches = w;
    return w;
}

int eddy_watch_update(eddy_watch_t *w, int events)
{
    if (w == NULL || (events & ~(EDDY_WATCH_READ | EDDY_WATCH_WRITE)) != 0)
        return EDDY_EINVAL;
    int rc = eddy__io_set(w->loop, &w->io, io_events(events));
    if (rc == 0)
        w->events = events;
    return rc;
}

void eddy_watch_free(eddy_watch_t *w)
{
    if (w == NULL)
        return;
    eddy__loop_t *loop = w->loop;
    /* Failure means the fd was closed first, which removed it from epoll already. */
    if (eddy__io_set(loop, &w->io, 0) != 0)
        w->io.events = 0;
    if (w->prev != NULL)
        w->prev->next = w->next;
    else
        loop->watches = w->next;
    if (w->next != NULL)
        w->next->prev = w->prev;
    /* The batch of events being dispatched may still name it. */
    eddy__io_forget(loop, &w->io);
    free(w);
}

void eddy__watch_free_all(eddy__loop_t *loop)
{
    while (loop->watches != NULL) {
        eddy_watch_t *w = loop->watches;
        loop->watches = w->next;
        free(w);
    }
}

int eddy_loop_index(eddy_server_t *srv)
{
    eddy__loop_t *loop = eddy__loop_here(srv);
    return loop != NULL ? loop->index : -1;
}

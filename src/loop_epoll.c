/* SPDX-License-Identifier: MIT */
/*
 * The epoll backend, level-triggered: a watcher that leaves bytes unread is simply called
 * again, which keeps reading code free of "drain until EAGAIN" loops and starvation.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "loop.h"

#define MAX_EVENTS 1024

int eddy__backend_init(eddy__loop_t *loop)
{
    loop->backend_fd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->backend_fd < 0)
        return -errno;
    loop->backend_events = calloc(MAX_EVENTS, sizeof(struct epoll_event));
    if (loop->backend_events == NULL)
        return EDDY_ENOMEM;
    loop->backend_max_events = MAX_EVENTS;
    return 0;
}

void eddy__backend_free(eddy__loop_t *loop)
{
    if (loop->backend_fd >= 0)
        close(loop->backend_fd);
    loop->backend_fd = -1;
    free(loop->backend_events);
    loop->backend_events = NULL;
}

int eddy__backend_ctl(eddy__loop_t *loop, eddy__io_t *io, unsigned old_events, unsigned new_events)
{
    struct epoll_event ev = {.events = 0, .data.ptr = io};
    if (new_events & (EDDY__IO_READ | EDDY__IO_HANGUP))
        ev.events |= EPOLLRDHUP;
    if (new_events & EDDY__IO_READ)
        ev.events |= EPOLLIN;
    if (new_events & EDDY__IO_WRITE)
        ev.events |= EPOLLOUT;
    int op = old_events == 0 ? EPOLL_CTL_ADD : new_events == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
    if (epoll_ctl(loop->backend_fd, op, io->fd, &ev) != 0)
        return -errno;
    return 0;
}

int eddy__backend_poll(eddy__loop_t *loop, int timeout_ms)
{
    struct epoll_event *events = loop->backend_events;
    int n = epoll_wait(loop->backend_fd, events, loop->backend_max_events, timeout_ms);
    /* Before any callback: timers they arm count from now, not from before the wait (a
     * connection accepted after a long idle would otherwise find its header timeout due),
     * and a limit changed during the wait applies to what is read now. */
    eddy__loop_refresh_clock(loop);
    eddy__loop_refresh_limits(loop);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    /* What other threads posted before this batch's I/O arrived goes first: a request a
     * client sent after a publication was made to it must not be answered before it. A
     * command that frees a watcher of the batch forgets it first (eddy__io_forget). */
    loop->backend_batch_len = n;
    eddy__loop_run_posted(loop);
    for (int i = 0; i < n; i++) {
        eddy__io_t *io = events[i].data.ptr;
        if (io == NULL)
            continue;
        unsigned fired = 0;
        if (events[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            fired |= EDDY__IO_READ;
        if (events[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            fired |= EDDY__IO_HANGUP;
        if (events[i].events & EPOLLOUT)
            fired |= EDDY__IO_WRITE;
        /* A watcher stopped by an earlier callback in this batch is skipped. The memory
         * stays valid: connections are freed only when the loop reaps them, and other
         * watchers are forgotten before they are freed. */
        fired &= io->events;
        if (fired)
            io->cb(loop, io, fired);
    }
    loop->backend_batch_len = 0;
    return n;
}

void eddy__io_forget(eddy__loop_t *loop, eddy__io_t *io)
{
    struct epoll_event *events = loop->backend_events;
    for (int i = 0; i < loop->backend_batch_len; i++) {
        if (events[i].data.ptr == io)
            events[i].data.ptr = NULL;
    }
}

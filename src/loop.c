/*
 * The event loop: one per worker thread. An iteration waits for I/O (bounded by the
 * nearest timer), dispatches it, runs due timers, runs deferred calls, runs the close
 * callbacks of connections closed meanwhile, and flushes queued output after each phase
 * so that everything a phase pushed to one connection leaves in one writev.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define RECV_BUF_SIZE (256 * 1024)

/* ---- timer heap ---- */

static bool timer_before(const eddy__timer_t *a, const eddy__timer_t *b)
{
    return a->due_ms < b->due_ms || (a->due_ms == b->due_ms && a->seq < b->seq);
}

static void heap_place(eddy__loop_t *loop, size_t i, eddy__timer_t *timer)
{
    loop->heap[i] = timer;
    timer->heap_index = i;
}

static void heap_sift_up(eddy__loop_t *loop, size_t i)
{
    eddy__timer_t *timer = loop->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!timer_before(timer, loop->heap[parent]))
            break;
        heap_place(loop, i, loop->heap[parent]);
        i = parent;
    }
    heap_place(loop, i, timer);
}

static void heap_sift_down(eddy__loop_t *loop, size_t i)
{
    eddy__timer_t *timer = loop->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= loop->heap_len)
            break;
        if (child + 1 < loop->heap_len && timer_before(loop->heap[child + 1], loop->heap[child]))
            child++;
        if (!timer_before(loop->heap[child], timer))
            break;
        heap_place(loop, i, loop->heap[child]);
        i = child;
    }
    heap_place(loop, i, timer);
}

void eddy__timer_init(eddy__timer_t *timer, eddy__timer_fn fn)
{
    timer->due_ms = 0;
    timer->seq = 0;
    timer->heap_index = SIZE_MAX;
    timer->fn = fn;
}

void eddy__timer_stop(eddy__loop_t *loop, eddy__timer_t *timer)
{
    size_t i = timer->heap_index;
    if (i == SIZE_MAX)
        return;
    timer->heap_index = SIZE_MAX;
    eddy__timer_t *last = loop->heap[--loop->heap_len];
    if (i == loop->heap_len)
        return;
    heap_place(loop, i, last);
    if (i > 0 && timer_before(last, loop->heap[(i - 1) / 2]))
        heap_sift_up(loop, i);
    else
        heap_sift_down(loop, i);
}

int eddy__timer_start(eddy__loop_t *loop, eddy__timer_t *timer, uint64_t delay_ms)
{
    eddy__timer_stop(loop, timer);
    if (loop->heap_len == loop->heap_cap) {
        size_t cap = loop->heap_cap ? loop->heap_cap * 2 : 64;
        eddy__timer_t **heap = realloc(loop->heap, cap * sizeof(*heap));
        if (heap == NULL)
            return EDDY_ENOMEM;
        loop->heap = heap;
        loop->heap_cap = cap;
    }
    timer->due_ms = loop->now_ms + delay_ms;
    timer->seq = loop->timer_seq++;
    heap_place(loop, loop->heap_len++, timer);
    heap_sift_up(loop, timer->heap_index);
    return 0;
}

static void run_timers(eddy__loop_t *loop)
{
    /* Only timers due at the start of this phase run, so a timer re-armed with delay 0
     * waits for the next iteration instead of spinning here. */
    uint64_t now = loop->now_ms;
    uint64_t seq_limit = loop->timer_seq;
    while (loop->heap_len > 0) {
        eddy__timer_t *timer = loop->heap[0];
        if (timer->due_ms > now || timer->seq >= seq_limit)
            break;
        eddy__timer_stop(loop, timer);
        timer->fn(loop, timer);
    }
}

static int next_timeout(const eddy__loop_t *loop)
{
    if (loop->defers_len > 0 || loop->reap_head != NULL ||
        (atomic_load(&loop->stop_requested) && !loop->stopping))
        return 0;
    uint64_t due = UINT64_MAX;
    if (loop->heap_len > 0)
        due = loop->heap[0]->due_ms;
    if (loop->stopping)
        due = EDDY__MIN(due, loop->shutdown_deadline_ms);
    if (due == UINT64_MAX)
        return -1;
    uint64_t now = eddy__monotonic_ms();
    if (due <= now)
        return 0;
    return (int)EDDY__MIN(due - now, (uint64_t)60000);
}

/* ---- user timers (eddy_timer_after / eddy_timer_tick) ---- */

struct user_timer {
    eddy__timer_t timer; /* first member: the loop hands us this pointer */
    uint64_t id;
    uint64_t interval_ms; /* 0: one-shot */
    eddy_timer_cb cb;
    void *arg;
    bool firing;
    bool cleared;
};

static void user_timer_fire(eddy__loop_t *loop, eddy__timer_t *timer)
{
    struct user_timer *ut = (struct user_timer *)timer;
    if (ut->interval_ms == 0)
        eddy__map_remove(&loop->user_timers, ut->id);
    else
        eddy__timer_start(loop, &ut->timer, ut->interval_ms);
    ut->firing = true;
    ut->cb(loop->srv, ut->id, ut->arg);
    ut->firing = false;
    if (ut->interval_ms == 0 || ut->cleared)
        free(ut);
}

static uint64_t user_timer_add(eddy_server_t *srv, uint64_t ms, uint64_t interval, eddy_timer_cb cb,
                               void *arg)
{
    eddy__loop_t *loop = eddy__server_loop(srv);
    if (cb == NULL)
        return 0;
    struct user_timer *ut = calloc(1, sizeof(*ut));
    if (ut == NULL)
        return 0;
    eddy__timer_init(&ut->timer, user_timer_fire);
    ut->id = ++srv->timer_next_id;
    ut->interval_ms = interval;
    ut->cb = cb;
    ut->arg = arg;
    loop->now_ms = eddy__monotonic_ms();
    if (eddy__map_put(&loop->user_timers, ut->id, ut) != 0 ||
        eddy__timer_start(loop, &ut->timer, ms) != 0) {
        eddy__map_remove(&loop->user_timers, ut->id);
        free(ut);
        return 0;
    }
    return ut->id;
}

uint64_t eddy_timer_after(eddy_server_t *srv, uint64_t ms, eddy_timer_cb cb, void *arg)
{
    return user_timer_add(srv, ms, 0, cb, arg);
}

uint64_t eddy_timer_tick(eddy_server_t *srv, uint64_t ms, eddy_timer_cb cb, void *arg)
{
    if (ms == 0)
        return 0;
    return user_timer_add(srv, ms, ms, cb, arg);
}

bool eddy_timer_clear(eddy_server_t *srv, uint64_t timer_id)
{
    eddy__loop_t *loop = eddy__server_loop(srv);
    struct user_timer *ut = eddy__map_remove(&loop->user_timers, timer_id);
    if (ut == NULL)
        return false;
    eddy__timer_stop(loop, &ut->timer);
    if (ut->firing)
        ut->cleared = true; /* freed when its callback returns */
    else
        free(ut);
    return true;
}

/* ---- deferred calls ---- */

int eddy_defer(eddy_server_t *srv, eddy_defer_cb cb, void *arg)
{
    eddy__loop_t *loop = eddy__server_loop(srv);
    if (cb == NULL)
        return EDDY_EINVAL;
    if (loop->defers_len == loop->defers_cap) {
        size_t cap = loop->defers_cap ? loop->defers_cap * 2 : 16;
        eddy__defer_t *defers = realloc(loop->defers, cap * sizeof(*defers));
        if (defers == NULL)
            return EDDY_ENOMEM;
        loop->defers = defers;
        loop->defers_cap = cap;
    }
    loop->defers[loop->defers_len++] = (eddy__defer_t){cb, arg};
    return 0;
}

static void run_defers(eddy__loop_t *loop)
{
    /* Calls deferred while these run wait for the next iteration. */
    size_t n = loop->defers_len;
    if (n == 0)
        return;
    for (size_t i = 0; i < n; i++)
        loop->defers[i].cb(loop->srv, loop->defers[i].arg);
    memmove(loop->defers, loop->defers + n, (loop->defers_len - n) * sizeof(*loop->defers));
    loop->defers_len -= n;
}

/* ---- loop ---- */

static void on_wakeup(eddy__loop_t *loop, eddy__io_t *io, unsigned events)
{
    uint64_t value;
    ssize_t ignored = read(io->fd, &value, sizeof(value));
    (void)ignored;
}

int eddy__io_set(eddy__loop_t *loop, eddy__io_t *io, unsigned events)
{
    if (io->events == events)
        return 0;
    int rc = eddy__backend_ctl(loop, io, io->events, events);
    if (rc == 0)
        io->events = events;
    return rc;
}

int eddy__loop_init(eddy__loop_t *loop, eddy_server_t *srv, int index)
{
    memset(loop, 0, sizeof(*loop));
    loop->srv = srv;
    loop->index = index;
    loop->backend_fd = -1;
    loop->wakeup_fd = -1;
    loop->now_ms = eddy__monotonic_ms();
    atomic_init(&loop->stop_requested, false);
    eddy__timer_init(&loop->heartbeat, NULL);
    loop->recv_cap = RECV_BUF_SIZE;
    loop->recv_buf = malloc(loop->recv_cap + 1); /* +1: room for a NUL after a payload */
    if (loop->recv_buf == NULL)
        return EDDY_ENOMEM;
    int rc = eddy__backend_init(loop);
    if (rc != 0)
        return rc;
    loop->wakeup_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (loop->wakeup_fd < 0)
        return -errno;
    loop->wakeup_io = (eddy__io_t){.fd = loop->wakeup_fd, .events = 0, .cb = on_wakeup};
    return eddy__io_set(loop, &loop->wakeup_io, EDDY__IO_READ);
}

void eddy__loop_free(eddy__loop_t *loop)
{
    eddy__backend_free(loop);
    if (loop->wakeup_fd >= 0)
        close(loop->wakeup_fd);
    for (size_t i = 0; i <= loop->user_timers.mask && loop->user_timers.keys; i++) {
        if (loop->user_timers.keys[i] != 0)
            free(loop->user_timers.values[i]);
    }
    eddy__map_free(&loop->user_timers);
    while (loop->seg_cache != NULL) {
        eddy__seg_t *seg = loop->seg_cache;
        loop->seg_cache = seg->next;
        free(seg);
    }
    eddy__inflater_free(loop->shared_inflater);
    for (size_t i = 0; i < EDDY__ARRAY_SIZE(loop->shared_deflaters); i++)
        eddy__deflater_free(loop->shared_deflaters[i]);
    eddy__buf_free(&loop->deflate_out);
    free(loop->heap);
    free(loop->defers);
    free(loop->recv_buf);
    memset(loop, 0, sizeof(*loop));
    loop->backend_fd = loop->wakeup_fd = -1;
}

void eddy__loop_wakeup(eddy__loop_t *loop)
{
    uint64_t one = 1;
    ssize_t ignored = write(loop->wakeup_fd, &one, sizeof(one));
    (void)ignored;
}

const char *eddy__loop_http_date(eddy__loop_t *loop)
{
    time_t now = time(NULL);
    if (now != loop->date_sec) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(loop->date, sizeof(loop->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        loop->date_sec = now;
    }
    return loop->date;
}

void eddy__loop_run(eddy__loop_t *loop)
{
    for (;;) {
        if (eddy__server_loop_should_exit(loop))
            break;
        eddy__backend_poll(loop, next_timeout(loop));
        loop->now_ms = eddy__monotonic_ms();
        eddy__loop_flush(loop);
        run_timers(loop);
        eddy__loop_flush(loop);
        run_defers(loop);
        eddy__loop_flush(loop);
        eddy__loop_reap(loop);
    }
}

/* SPDX-License-Identifier: MIT */
/*
 * The event loop: one per worker thread. An iteration waits for I/O (bounded by the
 * nearest timer), runs what other threads posted, dispatches the I/O, runs due timers,
 * runs deferred calls, runs the close callbacks of connections closed meanwhile, and
 * flushes queued output after each phase so that everything a phase pushed to one
 * connection leaves in one writev.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "conn.h"
#include "log.h"
#include "loop.h"

#define RECV_BUF_SIZE (256 * 1024)
/* Timer ids carry their loop's index in the low bits, so any thread can route a clear. */
#define TIMER_LOOP_BITS 8

_Thread_local eddy__loop_t *eddy__current_loop;

/* The loop to use for work asked from the calling thread: its own loop, or loop 0 when an
 * application thread asks (then *foreign is set and the work must be posted). */
static eddy__loop_t *calling_loop(eddy_server_t *srv, bool *foreign)
{
    eddy__loop_t *here = eddy__loop_here(srv);
    *foreign = here == NULL;
    return *foreign ? srv->loops[0] : here;
}

/* ---- posted commands ---- */

void eddy__loop_post(eddy__loop_t *loop, eddy__cmd_t *cmd)
{
    eddy__cmd_t *head = atomic_load_explicit(&loop->inbox, memory_order_relaxed);
    do
        cmd->next = head;
    while (!atomic_compare_exchange_weak_explicit(&loop->inbox, &head, cmd, memory_order_seq_cst,
                                                  memory_order_relaxed));
    /* One wakeup per batch: the loop clears the flag when it drains the eventfd. */
    if (!atomic_exchange(&loop->wake_pending, true))
        eddy__loop_wakeup(loop);
}

void eddy__loop_run_posted(eddy__loop_t *loop)
{
    if (atomic_load(&loop->inbox) == NULL)
        return;
    /* Sequentially consistent, as are the push and the flag: see on_wakeup(). */
    eddy__cmd_t *list = atomic_exchange(&loop->inbox, NULL);
    /* The inbox is a stack: reverse it so commands run in the order they were posted. */
    eddy__cmd_t *ordered = NULL;
    while (list != NULL) {
        eddy__cmd_t *next = list->next;
        list->next = ordered;
        ordered = list;
        list = next;
    }
    while (ordered != NULL) {
        eddy__cmd_t *next = ordered->next;
        ordered->fn(loop, ordered);
        ordered = next;
    }
}

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

int eddy__timer_reserve(eddy__loop_t *loop)
{
    if (loop->heap_reserved == loop->heap_cap) {
        size_t cap = loop->heap_cap ? loop->heap_cap * 2 : 64;
        eddy__timer_t **heap = realloc(loop->heap, cap * sizeof(*heap));
        if (heap == NULL)
            return EDDY_ENOMEM;
        loop->heap = heap;
        loop->heap_cap = cap;
    }
    loop->heap_reserved++;
    return 0;
}

void eddy__timer_release(eddy__loop_t *loop)
{
    loop->heap_reserved--;
}

void eddy__timer_start(eddy__loop_t *loop, eddy__timer_t *timer, uint64_t delay_ms)
{
    eddy__timer_stop(loop, timer);
    timer->due_ms = loop->now_ms + delay_ms;
    timer->seq = loop->timer_seq++;
    heap_place(loop, loop->heap_len++, timer);
    heap_sift_up(loop, timer->heap_index);
}

void eddy__loop_run_timers(eddy__loop_t *loop)
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
    if (loop->defers_len > 0 || loop->reap_head != NULL || loop->flush_head != NULL ||
        atomic_load_explicit(&loop->inbox, memory_order_relaxed) != NULL ||
        (atomic_load(&loop->srv->stop_requested) && !loop->stopping))
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
    if (ut->interval_ms == 0) {
        eddy__map_remove(&loop->user_timers, ut->id);
        eddy__timer_release(loop);
    } else {
        eddy__timer_start(loop, &ut->timer, ut->interval_ms);
    }
    ut->firing = true;
    ut->cb(loop->srv, ut->id, ut->arg);
    ut->firing = false;
    if (ut->interval_ms == 0 || ut->cleared)
        free(ut);
}

/* Schedules ut, or frees it and returns EDDY_ENOMEM. */
static int user_timer_start(eddy__loop_t *loop, struct user_timer *ut, uint64_t ms)
{
    if (eddy__timer_reserve(loop) != 0) {
        free(ut);
        return EDDY_ENOMEM;
    }
    if (eddy__map_put(&loop->user_timers, ut->id, ut) != 0) {
        eddy__timer_release(loop);
        free(ut);
        return EDDY_ENOMEM;
    }
    loop->now_ms = eddy__monotonic_ms();
    eddy__timer_start(loop, &ut->timer, ms);
    return 0;
}

struct timer_cmd {
    eddy__cmd_t base;
    struct user_timer *timer;
    uint64_t ms;
};

static void timer_cmd_run(eddy__loop_t *loop, eddy__cmd_t *cmd)
{
    struct timer_cmd *tc = (struct timer_cmd *)cmd;
    uint64_t id = tc->timer->id;
    if (user_timer_start(loop, tc->timer, tc->ms) != 0)
        eddy__log(loop->srv, EDDY__LOG_ERROR, "out of memory adding timer %" PRIu64, id);
    free(tc);
}

static uint64_t user_timer_add(eddy_server_t *srv, uint64_t ms, uint64_t interval, eddy_timer_cb cb,
                               void *arg)
{
    bool foreign;
    eddy__loop_t *loop = calling_loop(srv, &foreign);
    if (cb == NULL)
        return 0;
    struct user_timer *ut = calloc(1, sizeof(*ut));
    struct timer_cmd *tc = foreign ? malloc(sizeof(*tc)) : NULL;
    if (ut == NULL || (foreign && tc == NULL)) {
        free(ut);
        free(tc);
        return 0;
    }
    eddy__timer_init(&ut->timer, user_timer_fire);
    ut->id = (atomic_fetch_add(&srv->timer_seq, 1) + 1) << TIMER_LOOP_BITS | (uint64_t)loop->index;
    ut->interval_ms = interval;
    ut->cb = cb;
    ut->arg = arg;
    uint64_t id = ut->id;
    if (foreign) {
        *tc = (struct timer_cmd){.base.fn = timer_cmd_run, .timer = ut, .ms = ms};
        eddy__loop_post(loop, &tc->base);
    } else if (user_timer_start(loop, ut, ms) != 0) {
        return 0;
    }
    return id;
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

static bool user_timer_clear(eddy__loop_t *loop, uint64_t timer_id)
{
    struct user_timer *ut = eddy__map_remove(&loop->user_timers, timer_id);
    if (ut == NULL)
        return false;
    eddy__timer_stop(loop, &ut->timer);
    eddy__timer_release(loop);
    if (ut->firing)
        ut->cleared = true; /* freed when its callback returns */
    else
        free(ut);
    return true;
}

struct clear_cmd {
    eddy__cmd_t base;
    uint64_t timer_id;
};

static void clear_cmd_run(eddy__loop_t *loop, eddy__cmd_t *cmd)
{
    user_timer_clear(loop, ((struct clear_cmd *)cmd)->timer_id);
    free(cmd);
}

bool eddy_timer_clear(eddy_server_t *srv, uint64_t timer_id)
{
    uint64_t owner = timer_id & ((1u << TIMER_LOOP_BITS) - 1);
    if (timer_id == 0 || owner >= (uint64_t)srv->loop_count)
        return false;
    eddy__loop_t *loop = srv->loops[owner];
    if (eddy__current_loop == loop)
        return user_timer_clear(loop, timer_id);
    struct clear_cmd *cc = malloc(sizeof(*cc));
    if (cc == NULL)
        return false;
    *cc = (struct clear_cmd){.base.fn = clear_cmd_run, .timer_id = timer_id};
    eddy__loop_post(loop, &cc->base);
    return true;
}

/* ---- deferred calls ---- */

static int defer_local(eddy__loop_t *loop, eddy_defer_cb cb, void *arg)
{
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

struct defer_cmd {
    eddy__cmd_t base;
    eddy_defer_cb cb;
    void *arg;
};

static void defer_cmd_run(eddy__loop_t *loop, eddy__cmd_t *cmd)
{
    struct defer_cmd *dc = (struct defer_cmd *)cmd;
    /* It runs now, in turn with the other commands posted: queued as a local deferred call,
     * a push posted after it from the same thread would overtake it. Posted commands run
     * inside no callback, as deferred calls do. */
    dc->cb(loop->srv, dc->arg);
    free(dc);
}

int eddy__loop_defer(eddy__loop_t *loop, eddy_defer_cb cb, void *arg)
{
    if (eddy__current_loop == loop)
        return defer_local(loop, cb, arg);
    struct defer_cmd *dc = malloc(sizeof(*dc));
    if (dc == NULL)
        return EDDY_ENOMEM;
    *dc = (struct defer_cmd){.base.fn = defer_cmd_run, .cb = cb, .arg = arg};
    eddy__loop_post(loop, &dc->base);
    return 0;
}

int eddy_defer(eddy_server_t *srv, eddy_defer_cb cb, void *arg)
{
    bool foreign;
    eddy__loop_t *loop = calling_loop(srv, &foreign);
    if (cb == NULL)
        return EDDY_EINVAL;
    return eddy__loop_defer(loop, cb, arg);
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

void eddy__loop_run_pending(eddy__loop_t *loop)
{
    /* Bounded: a callback that defers itself again must not keep eddy_server_free() from
     * finishing. */
    for (int pass = 0; pass < 8; pass++) {
        eddy__loop_run_posted(loop);
        if (loop->defers_len == 0)
            return;
        run_defers(loop);
    }
}

/* ---- loop ---- */

static void on_wakeup(eddy__loop_t *loop, eddy__io_t *io, unsigned events)
{
    uint64_t value;
    ssize_t ignored = read(io->fd, &value, sizeof(value));
    (void)ignored;
    /* Cleared here, once the eventfd is drained, and nowhere else: a poster that still
     * finds it set posted before this point, so the inbox is taken after it in this
     * iteration. Clearing it when taking the inbox instead could leave it set with the
     * eventfd drained (a post landing between the clear and the take is taken, its wakeup
     * read later), and the next poster would not wake a loop about to sleep. */
    atomic_store(&loop->wake_pending, false);
}

int eddy__io_change(eddy__loop_t *loop, eddy__io_t *io, unsigned events)
{
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
    loop->log_level = srv->opts.log_level;
    /* What runs on the loop before its first iteration has this limit; the fast path waits
     * for the run (eddy__loop_refresh_limits()). */
    loop->package_max_length = eddy__package_max_length(srv);
    loop->backend_fd = -1;
    loop->wakeup_fd = -1;
    loop->now_ms = eddy__monotonic_ms();
    atomic_init(&loop->inbox, NULL);
    atomic_init(&loop->wake_pending, false);
    loop->recv_cap = RECV_BUF_SIZE;
    loop->recv_buf = malloc(loop->recv_cap + 1); /* +1: room for a NUL after a payload */
    loop->cork = malloc(EDDY__CORK_SIZE);
    if (loop->recv_buf == NULL || loop->cork == NULL)
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
    eddy__watch_free_all(loop);
    eddy__connmap_free(&loop->conns);
    for (int i = 0; i < EDDY__SLOT_COUNT; i++) {
        if (loop->slots[i].data != NULL && loop->slots[i].free != NULL)
            loop->slots[i].free(loop->slots[i].data);
        free(loop->slots[i].data);
    }
    eddy__seg_t *caches[EDDY__SEG_CLASSES + 1] = {loop->ref_cache};
    memcpy(caches + 1, loop->seg_cache, sizeof(loop->seg_cache));
    for (int i = 0; i < EDDY__SEG_CLASSES + 1; i++) {
        while (caches[i] != NULL) {
            eddy__seg_t *seg = caches[i];
            caches[i] = seg->next;
            free(seg);
        }
    }
    for (int i = 0; i < loop->spare_aside_len; i++)
        free(loop->spare_asides[i]);
    free(loop->heap);
    free(loop->defers);
    free(loop->recv_buf);
    free(loop->cork);
    memset(loop, 0, sizeof(*loop));
    loop->backend_fd = loop->wakeup_fd = -1;
}

void eddy__loop_wakeup(eddy__loop_t *loop)
{
    uint64_t one = 1;
    ssize_t ignored = write(loop->wakeup_fd, &one, sizeof(one));
    (void)ignored;
}

void *eddy__loop_slot_make(eddy__loop_t *loop, enum eddy__loop_slot slot, size_t size,
                           eddy__slot_free_fn free_fn)
{
    void *data = calloc(1, size);
    if (data != NULL) {
        loop->slots[slot].data = data;
        loop->slots[slot].free = free_fn;
    }
    return data;
}

void eddy__loop_refresh_clock(eddy__loop_t *loop)
{
    loop->now_ms = eddy__monotonic_ms();
    loop->now_wall_ms = (uint64_t)(eddy__wall_time() * 1000.0);
}

void eddy__loop_refresh_limits(eddy__loop_t *loop)
{
    size_t max = eddy__package_max_length(loop->srv);
    loop->package_max_length = max;
    loop->ws_fast_limit = loop->log_level <= EDDY__LOG_TRACE ? 0 : max + 1;
}

void eddy__loop_run(eddy__loop_t *loop, bool (*should_exit)(eddy__loop_t *loop))
{
    eddy__current_loop = loop;
    eddy__loop_refresh_clock(loop);
    eddy__loop_refresh_limits(loop);
    for (;;) {
        if (should_exit(loop))
            break;
        /* The backend refreshes the clock and the limits when the wait ends, before any
         * callback. */
        eddy__backend_poll(loop, next_timeout(loop));
        eddy__loop_flush(loop);
        eddy__loop_run_posted(loop);
        eddy__loop_flush(loop);
        eddy__loop_run_timers(loop);
        eddy__loop_flush(loop);
        run_defers(loop);
        eddy__loop_flush(loop);
        eddy__loop_reap(loop);
    }
}

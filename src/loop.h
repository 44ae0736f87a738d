/* SPDX-License-Identifier: MIT */
/*
 * The event loop (loop.c) and its backend (loop_epoll.c): I/O watchers, timers, posted
 * commands, deferred calls, and slots for the per-loop state of the modules above.
 */
#ifndef EDDY_LOOP_H
#define EDDY_LOOP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "util.h"

typedef struct eddy__seg eddy__seg_t;

/* Output segments come in a few sizes (conn.c), each with a bounded per-loop cache: a
 * small frame queued to each of thousands of connections takes a small segment each. */
#define EDDY__SEG_CLASSES  4
#define EDDY__SPARE_ASIDES 16    /* 56 bytes each */
#define EDDY__SEG_MAX_SIZE 16384 /* the largest class; bigger writes get a segment of their own */
/* Bytes read at once behind input already pending. */
#define EDDY__READ_CHUNK 16384

typedef struct eddy__loop eddy__loop_t;
typedef struct eddy__io eddy__io_t;

/* HANGUP watches for the peer's hang-up (and errors) alone, for a socket whose input
 * waits: it fires only when READ is not watched. */
enum { EDDY__IO_READ = 1, EDDY__IO_WRITE = 2, EDDY__IO_HANGUP = 4 };

/* Called with the events that fired; errors and hang-ups are reported as READ so the
 * owner discovers them through read(), or as HANGUP to a watcher of that alone. */
typedef void (*eddy__io_cb)(eddy__loop_t *loop, eddy__io_t *io, unsigned events);

struct eddy__io {
    int fd;
    unsigned events; /* currently watched: EDDY__IO_* bits, 0 = not added */
    eddy__io_cb cb;
};

/* Drops io from the batch of events being dispatched (when called inside a batch): after
 * it stopped watching (events 0), memory holding io may be freed at once. Watchers freed
 * only when the loop reaps them (connections) need not call it. Loop thread only. */
void eddy__io_forget(eddy__loop_t *loop, eddy__io_t *io);
/* eddy__io_set() for events that differ from those watched. */
int eddy__io_change(eddy__loop_t *loop, eddy__io_t *io, unsigned events);
/* Starts, changes or stops (events 0) watching io->fd. Returns 0 or -errno. Inline: most
 * calls (one per reply written whole) change nothing. */
static inline int eddy__io_set(eddy__loop_t *loop, eddy__io_t *io, unsigned events)
{
    if (io->events == events)
        return 0;
    return eddy__io_change(loop, io, events);
}

/* worker_num's upper bound: the server keeps room for this many loops. */
#define EDDY__MAX_LOOPS 256

/* Backend interface: what an epoll, io_uring or kqueue backend provides. */
int eddy__backend_init(eddy__loop_t *loop);
void eddy__backend_free(eddy__loop_t *loop);
int eddy__backend_ctl(eddy__loop_t *loop, eddy__io_t *io, unsigned old_events, unsigned new_events);
/* Waits up to timeout_ms (-1: forever), refreshes the loop's clock and limits
 * (eddy__loop_refresh_clock, eddy__loop_refresh_limits), runs the commands posted so far,
 * then calls the watchers that are ready. */
int eddy__backend_poll(eddy__loop_t *loop, int timeout_ms);

typedef struct eddy__timer eddy__timer_t;
typedef void (*eddy__timer_fn)(eddy__loop_t *loop, eddy__timer_t *timer);

/* A timer embedded in its owner; the loop keeps scheduled timers in a binary min-heap. */
struct eddy__timer {
    uint64_t due_ms;
    uint64_t seq;      /* orders timers due at the same millisecond by start order */
    size_t heap_index; /* SIZE_MAX when not scheduled */
    eddy__timer_fn fn;
};

void eddy__timer_init(eddy__timer_t *timer, eddy__timer_fn fn);
/* Every timer that may be scheduled holds a place in its loop's heap, reserved when the
 * timer is made and released when it goes, so that scheduling it never fails: a timeout,
 * the heartbeat or a tick's next run cannot be lost to out-of-memory. Reserve returns 0 or
 * EDDY_ENOMEM. */
int eddy__timer_reserve(eddy__loop_t *loop);
void eddy__timer_release(eddy__loop_t *loop);
/* (Re)schedules a timer (holding a reservation) delay_ms from the loop's current time. */
void eddy__timer_start(eddy__loop_t *loop, eddy__timer_t *timer, uint64_t delay_ms);
void eddy__timer_stop(eddy__loop_t *loop, eddy__timer_t *timer);
/* Runs the timers due at loop->now_ms (on the loop's thread): eddy__loop_run()'s timer
 * phase, also for code that drives a loop by hand (the fuzz drivers' fake clock). */
void eddy__loop_run_timers(eddy__loop_t *loop);

typedef struct eddy__defer {
    eddy_defer_cb cb;
    void *arg;
} eddy__defer_t;

/*
 * Work posted to a loop from another thread: a function the loop runs on its own thread,
 * with the command (allocated by the poster, freed by fn) as argument. Commands from one
 * thread run in the order they were posted.
 */
typedef struct eddy__cmd eddy__cmd_t;
typedef void (*eddy__cmd_fn)(eddy__loop_t *loop, eddy__cmd_t *cmd);
struct eddy__cmd {
    eddy__cmd_t *next;
    eddy__cmd_fn fn;
};

/* Posts cmd to loop (any thread; lock-free) and wakes it if needed. */
void eddy__loop_post(eddy__loop_t *loop, eddy__cmd_t *cmd);
/* Queues cb(arg) for the end of loop's current iteration: at once when called on loop's
 * thread, else posted to it (the call then runs after the commands posted before it).
 * Returns 0 (then cb always runs, if need be when the loop is freed) or EDDY_ENOMEM. */
int eddy__loop_defer(eddy__loop_t *loop, eddy_defer_cb cb, void *arg);
/* Runs the commands posted so far (on the loop's thread). */
void eddy__loop_run_posted(eddy__loop_t *loop);
/* Runs posted commands and the deferred calls they queue, for a loop that is not
 * running (eddy_server_free()). */
void eddy__loop_run_pending(eddy__loop_t *loop);

/* Per-loop state of the modules above the loop, which the loop holds without knowing what
 * it is: a slot each, filled by its module on first use (eddy__loop_slot_make()) and freed
 * with the loop. */
enum eddy__loop_slot {
    EDDY__SLOT_SERVER,     /* server.c: listening sockets, spare descriptor, heartbeat and
                            * keep-alive ping timers */
    EDDY__SLOT_HTTP,       /* http.c: the request being dispatched, spare states, the
                            * current date (Date header and access log time) */
    EDDY__SLOT_WS,         /* ws.c: receive scratch state, shared zlib streams */
    EDDY__SLOT_PUBSUB,     /* pubsub.c: this loop's topics */
    EDDY__SLOT_ACCESS_LOG, /* log.c: access log lines not written yet */
    EDDY__SLOT_TLS,        /* tls.c: buffers for records being opened and sealed */
    EDDY__SLOT_COUNT,
};

/*
 * What a loop counts for eddy_server_stats(). Only the loop's thread writes a cell (or the
 * thread running a stopped loop's pending work), so a count is one plain add to memory:
 * no lock, no locked instruction. Other threads read the cells with relaxed atomic loads
 * and sum the loops. C11 _Atomic cells cost a load, an add and a store each: echoing a
 * 20-byte message took 618 instructions that way, 608 with plain adds, 598 with no
 * counting (bench/instructions).
 */
typedef struct eddy__loop_stats {
    uint64_t accepted;      /* accepted on this loop's listening sockets */
    uint64_t refused;       /* closed at accept (max_connection, out of fds) */
    uint64_t conns_opened;  /* connections this loop took on */
    uint64_t conns_closed;  /* ... and released */
    uint64_t http_requests; /* requests dispatched, upgrade requests included */
    uint64_t ws_opened;     /* WebSocket sessions established */
    uint64_t ws_closed;     /* ... and closed */
    uint64_t ws_refused;    /* upgrade requests answered with a refusal */
    uint64_t messages_in;   /* data messages delivered */
    uint64_t messages_out;  /* whole data messages queued (pushed, published) */
    uint64_t bytes_in;      /* bytes read (TLS: decrypted) */
    uint64_t bytes_out;     /* bytes written (TLS: before encryption) */
    uint64_t dropped;       /* messages dropped for a slow consumer */
    uint64_t slow_closes;   /* connections closed as slow consumers */
    uint64_t log_lost;      /* log lines this loop's thread could not write */
    uint64_t access_lost;   /* access log lines it could not write */
} eddy__loop_stats_t;

/* Adds n to a cell of the calling loop's stats (single writer: see eddy__loop_stats_t). */
static inline void eddy__stat_add(uint64_t *cell, uint64_t n)
{
    *cell += n;
}

/* Frees what a slot's data holds (the loop frees the data itself). */
typedef void (*eddy__slot_free_fn)(void *data);

struct eddy__loop {
    eddy_server_t *srv;
    int index;
    int log_level; /* the server's, copied at start for eddy__log_on() */
    /* The live limits as this loop's current batch of events sees them, for the per-frame
     * and per-push checks on its thread: package_max_length (the server's
     * live_package_max_length) and ws_fast_limit, below which a frame may take the
     * WebSocket fast path (ws.c): package_max_length + 1, or 0 at trace level, so that every
     * frame goes where it is logged. eddy__loop_refresh_limits() copies them once per
     * iteration, after the wait and before any callback: eddy_server_set() may change the
     * limit from another thread, and a relaxed atomic load per frame and per push cost 4
     * instructions per echoed 20-byte message, 2 of which these plain fields save
     * (bench/instructions: 583 before live limits, 587, 585). A change thus applies from
     * the loop's next batch of reads. */
    size_t package_max_length;
    size_t ws_fast_limit;
    pthread_t thread;
    bool thread_started;
    _Atomic(eddy__cmd_t *) inbox; /* posted commands, newest first */
    atomic_bool wake_pending;     /* the wakeup eventfd was written and not yet drained */
    /* Every connection this loop owns, by session id, from accept to the final close
     * (released ones included, which lookups skip). conn.c's: other modules use
     * eddy__conn_get(), eddy__conn_next() and eddy__conn_count(). */
    eddy__connmap_t conns;
    eddy__conn_t *dispatching; /* the connection whose message or open callback runs */
    struct {
        void *data;
        eddy__slot_free_fn free;
    } slots[EDDY__SLOT_COUNT];
    uint64_t now_wall_ms; /* Unix time in ms, refreshed with now_ms */
    int backend_fd;
    void *backend_events;
    int backend_max_events;
    int backend_batch_len; /* events of the batch being dispatched, 0 between batches */
    uint64_t now_ms;       /* monotonic time, refreshed once per iteration */

    eddy__timer_t **heap;
    size_t heap_len;
    size_t heap_cap;
    size_t heap_reserved; /* places promised to timers: heap_len <= heap_reserved <= cap */
    uint64_t timer_seq;
    eddy__map_t user_timers; /* timer id -> struct user_timer */

    eddy_watch_t *watches; /* live watches (watch.c), freed with the loop */

    eddy__defer_t *defers;
    size_t defers_len;
    size_t defers_cap;

    /* Every read lands here first; only bytes a parser cannot finish yet are copied into
     * the connection, so an idle connection owns no input buffer. */
    char *recv_buf;
    size_t recv_cap;

    /* Output of the connection being read while its queue is empty, sent in one write
     * when its input is processed (conn.c). */
    char *cork;
    size_t cork_len;

    eddy__conn_t *reading;    /* the connection whose input is being processed */
    eddy__conn_t *flush_head; /* connections with output to write, oldest first */
    eddy__conn_t *flush_tail;
    eddy__conn_t *reap_head; /* connections whose close callback is due, in order */
    eddy__conn_t *reap_tail;
    eddy__conn_t *free_head; /* closed connections, freed at the end of the iteration */

    eddy__seg_t *seg_cache[EDDY__SEG_CLASSES]; /* spare output segments by size class */
    uint16_t seg_cache_len[EDDY__SEG_CLASSES];
    eddy__seg_t *ref_cache; /* spare segments for shared frames */
    size_t ref_cache_len;
    /* Connections' asides (timer and held output, conn.c) let go, kept for the next. */
    struct eddy__conn_aside *spare_asides[EDDY__SPARE_ASIDES];
    uint8_t spare_aside_len;

    int wakeup_fd; /* eventfd: wakes the loop from other threads (stop) */
    eddy__io_t wakeup_io;
    bool stopping;
    uint64_t shutdown_deadline_ms; /* while stopping: peers still open then are dropped */

    eddy__loop_stats_t stats;
};

/* Whether lines at level are logged: one compare with the loop's copy of log_level, for
 * hot paths (per frame) that must not pay a call or formatting for lines that are off. */
static inline bool eddy__log_on(const eddy__loop_t *loop, int level)
{
    return __builtin_expect(level >= loop->log_level, 0);
}

/* The loop's access log lines not written yet (NULL: out of memory), written by
 * eddy__access_log_flush() at the end of the iteration or when the loop stops. */
eddy__buf_t *eddy__access_log_buf(eddy__loop_t *loop);
void eddy__access_log_flush(eddy__loop_t *loop);

/* Frees every watch of a loop that is being freed (their fds stay open). */
void eddy__watch_free_all(eddy__loop_t *loop);

/* The loop whose thread is running this code (NULL outside loop threads). */
extern _Thread_local eddy__loop_t *eddy__current_loop;

/* The calling thread's loop if it is one of srv's, else NULL (an application thread, or
 * another server's loop): the one answer to "which loop am I on". */
static inline eddy__loop_t *eddy__loop_here(const eddy_server_t *srv)
{
    eddy__loop_t *here = eddy__current_loop;
    return here != NULL && here->srv == srv ? here : NULL;
}

/* A slot's data, NULL until its module made it. */
static inline void *eddy__loop_slot(const eddy__loop_t *loop, enum eddy__loop_slot slot)
{
    return loop->slots[slot].data;
}

/* Fills an empty slot with size zeroed bytes; free_fn (may be NULL) frees what they hold
 * when the loop is freed. Returns the data, or NULL when memory is short. */
void *eddy__loop_slot_make(eddy__loop_t *loop, enum eddy__loop_slot slot, size_t size,
                           eddy__slot_free_fn free_fn);

int eddy__loop_init(eddy__loop_t *loop, eddy_server_t *srv, int index);
/* Frees the loop and its slots. */
void eddy__loop_free(eddy__loop_t *loop);
/* Reads the clocks into loop->now_ms and now_wall_ms. */
void eddy__loop_refresh_clock(eddy__loop_t *loop);
/* Copies the server's live limits into loop->package_max_length and ws_fast_limit (on the
 * loop's thread, or before it runs). */
void eddy__loop_refresh_limits(eddy__loop_t *loop);
/* Runs iterations until should_exit, called at the start of each, returns true. */
void eddy__loop_run(eddy__loop_t *loop, bool (*should_exit)(eddy__loop_t *loop));
void eddy__loop_wakeup(eddy__loop_t *loop);

#endif /* EDDY_LOOP_H */

/*
 * Private declarations shared by the modules of libeddy. Nothing here is API.
 *
 * Architecture, from the bottom up:
 *   loop.c / loop_epoll.c  an event loop per worker: I/O watchers behind a small backend
 *                          interface, a timer heap, deferred calls, a wakeup eventfd
 *   conn.c                 connections: the session table, reading into the loop's shared
 *                          buffer, the output queue flushed with writev once per
 *                          iteration, graceful teardown (flush, shutdown, linger, reap)
 *   http.c                 HTTP/1.1 session: drives codec.h's parser, request/response
 *   ws.c                   WebSocket session: handshake, frames, closing handshake, push
 *   server.c               listeners, accept, events, methods, heartbeat
 *   settings.c             the string-keyed setter behind the typed options struct
 */
#ifndef EDDY_INTERNAL_H
#define EDDY_INTERNAL_H

#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "codec.h"
#include "eddy.h"

/* Types defined further down, used before. */
typedef struct eddy__conn eddy__conn_t;
typedef struct eddy__seg eddy__seg_t;
typedef struct eddy__listener eddy__listener_t;
typedef struct eddy__listen_sock eddy__listen_sock_t;
typedef struct eddy__topic eddy__topic_t;
typedef struct eddy__sub eddy__sub_t;
typedef struct eddy__conn_timer eddy__conn_timer_t;

#define EDDY__UNUSED(x)     ((void)(x))
#define EDDY__MIN(a, b)     ((a) < (b) ? (a) : (b))
#define EDDY__MAX(a, b)     ((a) > (b) ? (a) : (b))
#define EDDY__ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ---------------------------------------------------------------------------------------
 * Logging (log.c): eddy's lines, the application's (eddy_log), the log callback, and the
 * per-loop buffer of the access log.
 * ------------------------------------------------------------------------------------- */

/* The public levels (eddy.h), under the names the modules use. */
enum eddy__log_level {
    EDDY__LOG_TRACE = EDDY_LOG_TRACE,
    EDDY__LOG_DEBUG = EDDY_LOG_DEBUG,
    EDDY__LOG_INFO = EDDY_LOG_INFO,
    EDDY__LOG_NOTICE = EDDY_LOG_NOTICE,
    EDDY__LOG_WARNING = EDDY_LOG_WARNING,
    EDDY__LOG_ERROR = EDDY_LOG_ERROR,
    EDDY__LOG_NONE = EDDY_LOG_NONE,
};

/* Writes one line "[date time *pid.loop]\tLEVEL\tmessage" to the server's log (or hands
 * the message to its log callback) if level is at or above its log_level. */
void eddy__log(const eddy_server_t *srv, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A log_level value: a level name or one of Swoole's numbers. Returns the level or -1. */
int eddy__log_level_parse(const char *value);
/* Copies in[0..len) to out (capacity cap, NUL-terminated) with '"', '\\' and bytes outside
 * printable ASCII written as \xHH, so a peer's bytes cannot forge or split a log line;
 * stops early rather than cut an escape. Returns the length written. */
size_t eddy__log_escape(char *out, size_t cap, const char *in, size_t len);

/* ---------------------------------------------------------------------------------------
 * Utilities (util.c)
 * ------------------------------------------------------------------------------------- */

uint64_t eddy__monotonic_ms(void);
double eddy__wall_time(void);

/* A growable byte buffer. */
typedef struct eddy__buf {
    char *data;
    size_t len;
    size_t cap;
} eddy__buf_t;

/* Makes room for extra more bytes (plus one spare byte, so data[len] may hold a NUL). */
int eddy__buf_reserve(eddy__buf_t *buf, size_t extra);
int eddy__buf_append(eddy__buf_t *buf, const void *data, size_t len);
int eddy__buf_printf(eddy__buf_t *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drops the first n bytes. */
void eddy__buf_consume(eddy__buf_t *buf, size_t n);
void eddy__buf_free(eddy__buf_t *buf);

/* A bump allocator whose blocks never move, so returned pointers stay valid until reset. */
typedef struct eddy__arena_block eddy__arena_block_t;
typedef struct eddy__arena {
    eddy__arena_block_t *head;
} eddy__arena_t;

void *eddy__arena_alloc(eddy__arena_t *arena, size_t size);
char *eddy__arena_strndup(eddy__arena_t *arena, const char *s, size_t len);
/* Frees every block but the first (kept for the next request) and empties it. */
void eddy__arena_reset(eddy__arena_t *arena);
void eddy__arena_free(eddy__arena_t *arena);

/* Mixes a 64-bit key (ids, timer ids) into a hash whose low bits index a power-of-two
 * table (the finalizer of MurmurHash3). */
static inline size_t eddy__hash_u64(uint64_t key)
{
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdull;
    key ^= key >> 33;
    return (size_t)key;
}

/* A uint64 -> pointer hash map (open addressing, linear probing). Key 0 is reserved. */
typedef struct eddy__map {
    uint64_t *keys;
    void **values;
    size_t len;
    size_t mask; /* capacity - 1, capacity a power of two */
} eddy__map_t;

/* Session id -> connection, open addressing over the connection pointers alone (the key is
 * read from the connection): 8 bytes a slot. registry.c. */
typedef struct eddy__connmap {
    eddy__conn_t **slots;
    size_t len;
    size_t mask; /* capacity - 1, capacity a power of two */
} eddy__connmap_t;

/* Adds conn under conn->id (not present). Returns 0 or EDDY_ENOMEM. */
int eddy__connmap_put(eddy__connmap_t *map, eddy__conn_t *conn);
eddy__conn_t *eddy__connmap_get(const eddy__connmap_t *map, eddy_fd_t id);
void eddy__connmap_remove(eddy__connmap_t *map, eddy_fd_t id);
void eddy__connmap_free(eddy__connmap_t *map);
/* Iterates: for (size_t i = 0; i <= map.mask && map.slots; i++) if (map.slots[i]) ... */

int eddy__map_put(eddy__map_t *map, uint64_t key, void *value);
void *eddy__map_get(const eddy__map_t *map, uint64_t key);
void *eddy__map_remove(eddy__map_t *map, uint64_t key);
void eddy__map_free(eddy__map_t *map);

/* ---------------------------------------------------------------------------------------
 * permessage-deflate (deflate.c)
 * ------------------------------------------------------------------------------------- */

typedef struct z_stream_s z_stream;
struct ssl_ctx_st; /* OpenSSL's SSL_CTX and SSL, kept opaque here */
struct ssl_st;

/* What the server accepts and asks for. */
typedef struct eddy__pmd_config {
    uint8_t server_window_bits; /* 9-15: the largest window we compress with */
    uint8_t client_window_bits; /* 8-15: asked of clients that offer client_max_window_bits */
    bool server_no_context_takeover;
    bool client_no_context_takeover;
} eddy__pmd_config_t;

/* What a connection agreed to. */
typedef struct eddy__pmd {
    uint8_t server_window_bits;
    uint8_t client_window_bits;
    bool server_no_context_takeover;
    bool client_no_context_takeover;
    bool announce_server_bits; /* the offer had server_max_window_bits: answer it */
    bool announce_client_bits;
} eddy__pmd_t;

/* Chooses the first acceptable permessage-deflate offer in a Sec-WebSocket-Extensions
 * value. Malformed offers and offers we cannot honour are skipped. Returns true with *out
 * filled in when one was accepted. */
bool eddy__pmd_negotiate(const char *value, size_t len, const eddy__pmd_config_t *cfg,
                         eddy__pmd_t *out);
/* Formats the Sec-WebSocket-Extensions response value. Returns its length or EDDY_ETOOBIG. */
int eddy__pmd_response(const eddy__pmd_t *pmd, char *out, size_t cap);

z_stream *eddy__inflater_new(int window_bits);
z_stream *eddy__deflater_new(int window_bits, int level, int mem_level);
void eddy__inflater_free(z_stream *zs);
void eddy__deflater_free(z_stream *zs);
/* Inflates in[0..len) (and, with final, the stripped 00 00 ff ff tail), appending to out,
 * which never grows past limit + 1 bytes. Returns 0, EDDY_ETOOBIG when the output would
 * exceed limit, EDDY_EPROTO for corrupt data, EDDY_ENOMEM. */
int eddy__inflate(z_stream *zs, const uint8_t *in, size_t len, bool final, eddy__buf_t *out,
                  size_t limit);
/* Compresses a whole message into out (replacing its contents), sync-flushed and without
 * the 00 00 ff ff tail, ready to send with RSV1. Returns 0 or an error. */
int eddy__deflate(z_stream *zs, const void *data, size_t len, eddy__buf_t *out);
/* zlib counts in uInt (32 bits): both functions above hand it at most this many bytes at
 * a time, so messages over 4 GiB go through whole. UINT_MAX; unit tests lower it to
 * exercise the chunking with small buffers. */
extern size_t eddy__zlib_chunk;

/* ---------------------------------------------------------------------------------------
 * Event loop (loop.c) and its backend (loop_epoll.c)
 * ------------------------------------------------------------------------------------- */

/* Output segments come in a few sizes (conn.c), each with a bounded per-loop cache: a
 * small frame queued to each of thousands of connections takes a small segment each. */
#define EDDY__SEG_CLASSES  4
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

/* Starts, changes or stops (events 0) watching io->fd. Returns 0 or -errno. */
int eddy__io_set(eddy__loop_t *loop, eddy__io_t *io, unsigned events);

/* worker_num's upper bound: the server keeps room for this many loops. */
#define EDDY__MAX_LOOPS 256

/* Backend interface: what an epoll, io_uring or kqueue backend provides. */
int eddy__backend_init(eddy__loop_t *loop);
void eddy__backend_free(eddy__loop_t *loop);
int eddy__backend_ctl(eddy__loop_t *loop, eddy__io_t *io, unsigned old_events, unsigned new_events);
/* Waits up to timeout_ms (-1: forever), refreshes the loop's clock (eddy__loop_refresh_clock)
 * and calls the watchers that are ready. */
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
static inline bool eddy__timer_active(const eddy__timer_t *timer)
{
    return timer->heap_index != SIZE_MAX;
}

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
/* Runs the commands posted so far (on the loop's thread). */
void eddy__loop_run_posted(eddy__loop_t *loop);
/* Runs posted commands and the deferred calls they queue, for a loop that is not
 * running (eddy_server_free()). */
void eddy__loop_run_pending(eddy__loop_t *loop);

/* Per-loop state of the modules above the loop, which the loop holds without knowing what
 * it is: a slot each, filled by its module on first use (eddy__loop_slot_make()) and freed
 * with the loop. */
enum eddy__loop_slot {
    EDDY__SLOT_HTTP,   /* http.c: the request being dispatched, spare states, Date cache */
    EDDY__SLOT_WS,     /* ws.c: receive scratch state, shared zlib streams */
    EDDY__SLOT_PUBSUB, /* pubsub.c: this loop's topics */
    EDDY__SLOT_COUNT,
};

/* Frees what a slot's data holds (the loop frees the data itself). */
typedef void (*eddy__slot_free_fn)(void *data);

struct eddy__loop {
    eddy_server_t *srv;
    int index;
    int log_level; /* the server's, copied at start for eddy__log_on() */
    /* Frames shorter than this may take the WebSocket fast path (ws.c): package_max_length
     * + 1, or 0 at trace level, so that every frame goes where it is logged. */
    size_t ws_fast_limit;
    pthread_t thread;
    bool thread_started;
    _Atomic(eddy__cmd_t *) inbox; /* posted commands, newest first */
    atomic_bool wake_pending;     /* the wakeup eventfd was written and not yet drained */
    /* Every connection this loop owns, by session id, from accept to the final close
     * (released ones included, which lookups skip). */
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
    uint64_t now_ms; /* monotonic time, refreshed once per iteration */

    eddy__timer_t **heap;
    size_t heap_len;
    size_t heap_cap;
    size_t heap_reserved; /* places promised to timers: heap_len <= heap_reserved <= cap */
    uint64_t timer_seq;
    eddy__map_t user_timers; /* timer id -> struct user_timer */

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

    int wakeup_fd; /* eventfd: wakes the loop from other threads (stop) */
    eddy__io_t wakeup_io;
    bool stopping;

    eddy__timer_t heartbeat;
    eddy__timer_t ws_ping;      /* websocket_ping_interval: keep-alive pings (server.c) */
    uint64_t ws_ping_next_ms;   /* when the next round of pings is due */
    eddy__timer_t accept_timer; /* resumes accepting after ENOBUFS/ENOMEM */
    int spare_fd;               /* kept open to shed the backlog when out of descriptors */
    uint64_t accept_shed;       /* connections shed that way (logged) */
    eddy__listen_sock_t *listen_socks;
    int listen_sock_count;
    int next_handoff; /* round-robin target when handing accepted sockets over */
    uint64_t shutdown_deadline_ms;

    /* Access log lines not written yet (written at the end of the iteration), and the
     * cached time field for them. */
    eddy__buf_t access_out;
    time_t access_date_sec;
    char access_date[32];
};

/* Whether lines at level are logged: one compare with the loop's copy of log_level, for
 * hot paths (per frame) that must not pay a call or formatting for lines that are off. */
static inline bool eddy__log_on(const eddy__loop_t *loop, int level)
{
    return __builtin_expect(level >= loop->log_level, 0);
}

/* The access log time field for now ("04/Dec/2026:21:00:00 +0000"), cached per second. */
const char *eddy__access_log_date(eddy__loop_t *loop);
/* Writes the loop's buffered access log lines (log.c). */
void eddy__access_log_flush(eddy__loop_t *loop);

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
/* Runs iterations until should_exit, called at the start of each, returns true. */
void eddy__loop_run(eddy__loop_t *loop, bool (*should_exit)(eddy__loop_t *loop));
void eddy__loop_wakeup(eddy__loop_t *loop);

/* ---------------------------------------------------------------------------------------
 * Settings (settings.c)
 * ------------------------------------------------------------------------------------- */

typedef struct eddy__options {
    int worker_num;
    size_t max_connection;
    int backlog;
    bool open_tcp_nodelay;
    size_t package_max_length;
    uint32_t heartbeat_check_interval_ms; /* as set; 0: unset */
    uint32_t heartbeat_idle_time_ms;      /* as set; 0: unset (2 * interval) */
    char *websocket_subprotocol;          /* comma-separated, server preference order */
    char *websocket_origins;              /* comma-separated allowed Origins; NULL/empty: all */
    bool open_websocket_close_frame;
    bool open_websocket_ping_frame;
    bool open_websocket_pong_frame;
    uint32_t websocket_close_timeout_ms;
    uint32_t websocket_ping_interval_ms; /* 0: no keep-alive pings */
    uint32_t websocket_ping_timeout_ms;  /* 0: an unanswered ping closes nothing */
    uint32_t http_header_timeout_ms;
    uint32_t http_body_timeout_ms; /* a deadline for the whole body, from the end of the head */
    uint32_t http_keepalive_timeout_ms;
    size_t http_max_header_size;
    int log_level;
    char *log_file;
    char *http_access_log; /* path, or "stderr"/"-"; NULL: off */
    bool websocket_compression;
    size_t websocket_compression_threshold; /* 0: compress only on EDDY_WS_FLAG_COMPRESS */
    int websocket_compression_level;
    int websocket_compression_mem_level;
    eddy__pmd_config_t pmd;
    bool enable_reuse_port;       /* a listening socket per loop (SO_REUSEPORT), not hand-off */
    size_t socket_buffer_size;    /* output a connection may hold; beyond it the policy applies */
    size_t buffer_high_watermark; /* push answers EDDY_QUEUED at or above it (0: 80% of size) */
    size_t buffer_low_watermark;  /* drain fires when a connection falls to it again */
    int slow_consumer_policy;     /* EDDY__SLOW_CLOSE or EDDY__SLOW_DROP */
    size_t socket_buffer_soft_limit; /* over it for soft_seconds, the policy applies (0: off) */
    int socket_buffer_soft_seconds;  /* how long output may stay over the soft limit */
    /* Derived by eddy__options_resolve() from the values set above, which it never
     * changes (so a restart derives them again from what the application set). */
    size_t high_watermark;          /* buffer_high_watermark or its default */
    size_t admit_limit;             /* output admitted without a closer look (the lower limit) */
    uint32_t heartbeat_interval_ms; /* 0: no heartbeat */
    uint32_t heartbeat_idle_ms;
    int task_worker_num;
    char *ssl_cert_file;
    char *ssl_key_file;
    char *ssl_ciphers;
    char *ssl_protocols; /* "TLSv1.2,TLSv1.3" by default */
} eddy__options_t;

enum { EDDY__SLOW_CLOSE, EDDY__SLOW_DROP };
#define EDDY__SOFT_TICK_SHIFT 7 /* 128 ms: the granularity of socket_buffer_soft_seconds */

void eddy__options_init(eddy__options_t *opts);
/* buffer_high_watermark, with its default applied (computed when the server starts). */
static inline size_t eddy__high_watermark(const eddy__options_t *opts)
{
    return opts->high_watermark;
}
/* Fills in the values derived from settings (defaults that depend on others), leaving the
 * values the application set as they are. */
void eddy__options_resolve(eddy__options_t *opts);
void eddy__options_free(eddy__options_t *opts);

/* ---------------------------------------------------------------------------------------
 * Output queue (conn.c): a chain of segments written with writev.
 * ------------------------------------------------------------------------------------- */

/* A frame shared by every recipient of a published message: built once, referenced by
 * each recipient's output queue, freed when the last reference goes (from any thread). */
typedef struct eddy__blob {
    atomic_int refs;
    size_t len;
    char data[];
} eddy__blob_t;

eddy__blob_t *eddy__blob_new(size_t len);
void eddy__blob_ref(eddy__blob_t *blob);
void eddy__blob_unref(eddy__blob_t *blob);

/* A piece of output: bytes of its own in data[], or references to shared frames (an
 * array of eddy__blob_t pointers in data[]; conn.c). */
struct eddy__seg {
    eddy__seg_t *next;
    size_t len;        /* bytes filled, or frames referenced */
    size_t cap;        /* bytes available, or reference slots */
    size_t sent;       /* bytes written (of the first frame not written whole, for references) */
    uint32_t done;     /* references: frames written whole and released */
    bool refs;         /* a segment of references */
    int8_t size_class; /* bytes: its size class (conn.c), -1 for an odd size */
    _Alignas(8) char data[];
};

/* Bytes a loop's cork holds: a read's worth of echoes and responses (conn.c). */
#define EDDY__CORK_SIZE (16 * 1024)

/* Output segments, a circular list held by its tail (conn.c); their byte count is the
 * connection's out_bytes. */
typedef struct eddy__outq {
    eddy__seg_t *tail;
} eddy__outq_t;

/* ---------------------------------------------------------------------------------------
 * Connections (conn.c)
 * ------------------------------------------------------------------------------------- */

/*
 * A protocol spoken over a connection. The connection (conn.c) owns the socket, TLS, the
 * output queue and cork, the timer, back-pressure and the lifecycle, and knows nothing of
 * what the bytes mean: it drives the protocol through these operations, each called on the
 * connection's loop. The protocol keeps its per-connection state in conn->proto_state. The
 * HTTP/1.1 server session (http.c) and the WebSocket session (ws.c) implement it.
 */
typedef struct eddy__proto {
    const char *name; /* for logs: "HTTP", "WebSocket" */
    /* The connection was accepted with this protocol: set up its state (before other
     * threads can see the connection). Returns 0 or an error. */
    int (*start)(eddy__conn_t *conn);
    /* Consumes input buf[0..len), which may be the loop's receive buffer or the
     * connection's own and may be changed in place. Returns the bytes consumed: fewer than
     * len when it needs more input, or when it switched the connection to another protocol
     * (eddy__conn_switch()), which gets the rest. */
    size_t (*process)(eddy__conn_t *conn, char *buf, size_t len);
    /* The connection's timer (eddy__conn_set_timeout()) fired. */
    void (*timeout)(eddy__conn_t *conn);
    /* Output fell to the low watermark after going over the high one. */
    void (*drained)(eddy__conn_t *conn);
    /* Ends the connection the protocol's polite way (slow consumer, heartbeat, server
     * shutdown), with a close code and reason for protocols that send them, waiting for
     * the peer's answer if wait_for_peer. */
    void (*end)(eddy__conn_t *conn, uint16_t code, const char *reason, size_t reason_len,
                bool wait_for_peer);
    /* eddy__conn_close() ran: no more input; let go of what points at the connection.
     * NULL: nothing to do. */
    void (*closing)(eddy__conn_t *conn);
    /* The connection is reaped: the application hears of it (close callback). */
    void (*closed)(eddy__conn_t *conn);
    /* Frees conn->proto_state (the connection is released, or its creation failed). */
    void (*free)(eddy__conn_t *conn);
} eddy__proto_t;

/* Input a parser could not finish yet (conn.c). */
typedef struct eddy__inbuf {
    size_t len;
    size_t cap; /* bytes of data[], one of them kept spare for a NUL */
    char data[];
} eddy__inbuf_t;

/* A peer's address, compactly: the IPv6 address or the IPv4 one in its first 4 bytes. */
typedef struct eddy__peer {
    uint8_t addr[16];
    uint16_t port; /* host order */
    bool v4;
} eddy__peer_t;

/* Stores a socket address (AF_INET or AF_INET6). */
void eddy__peer_set(eddy__peer_t *peer, const struct sockaddr *sa);
/* Formats it as text and port. */
void eddy__peer_format(const eddy__peer_t *peer, char ip[46], int *port);

/*
 * A connection. Every idle WebSocket connection costs this struct and its slots in two id
 * maps, so it is kept small: flags are bits, and state needed only at times (input being
 * parsed, a message being assembled, zlib streams, TLS, subscriptions) hangs off pointers
 * that are NULL at rest.
 */
struct eddy__conn {
    eddy_fd_t id;
    eddy__io_t io;
    eddy__loop_t *loop;
    eddy__conn_t *flush_next;
    eddy__conn_t *reap_next;
    struct ssl_st *tls; /* NULL on plain connections */

    /* The protocol's timeout (header, keep-alive, closing handshake), or the linger one:
     * allocated when first armed, given up when a WebSocket connection comes to rest (it
     * needs none then). */
    eddy__conn_timer_t *timer;

    eddy__inbuf_t *in; /* input a parser could not finish yet; usually NULL */
    eddy__outq_t out;
    /* Whole messages waiting behind a fragmented one being sent (hold_output); their bytes
     * count in out_bytes already, so back-pressure sees them. */
    eddy__outq_t held;

    const eddy__proto_t *proto; /* the protocol spoken: HTTP, then perhaps WebSocket */
    void *proto_state;          /* its state (may be NULL at rest: see ws.c) */
    eddy__sub_t *subs;          /* its topic subscriptions, linked through the subscriptions */

    bool ending;       /* eddy__conn_close() ran: input is discarded, output drains */
    uint8_t tls_wants; /* EDDY__IO_*: what OpenSSL waits for to make progress */
    bool in_flush_list : 1;
    bool released : 1;         /* removed from the session table: it is no longer "live" */
    bool read_eof : 1;         /* the peer shut down its side */
    bool aborted : 1;          /* output was dropped: close without draining */
    bool above_high : 1;       /* output went over the high watermark: drain is due */
    bool dropping : 1;         /* slow consumer under the drop policy (logged once per episode) */
    bool over_soft : 1;        /* output went over socket_buffer_soft_limit at over_soft_tick */
    bool shutdown_sent : 1;    /* our side is shut down (lingering close) */
    bool ever_established : 1; /* completed a WebSocket handshake at some point */
    bool paused : 1;           /* input not processed (detached HTTP response pending) */
    bool tls_handshaking : 1;
    bool pmd_on : 1;        /* permessage-deflate was negotiated: see pmd */
    bool ws_close_sent : 1; /* our close frame is queued: no more data frames */
    bool hold_output : 1;   /* a fragmented message is being sent: whole messages wait in held */
    eddy__pmd_t pmd;
    /* When output went over the soft limit, in ticks of 2^EDDY__SOFT_TICK_SHIFT ms of the
     * loop clock, wrapping: 16 bits fit in padding (the struct stays 168 bytes) and span
     * 8,388 s, more than socket_buffer_soft_seconds may be (3,600). */
    uint16_t over_soft_tick;

    /* What other threads may read, under the registry shard lock (registry.c): fields set
     * before the connection is registered, and atomics its loop updates. The memory is
     * freed only after the connection left the registry. */
    atomic_bool closing;       /* exist() is false; its loop closes it when told */
    _Atomic uint8_t ws_status; /* enum eddy_ws_status */
    uint16_t local_port;
    eddy__peer_t peer;
    uint32_t connect_s;            /* Unix time */
    _Atomic uint64_t last_recv_ms; /* monotonic (the loop's clock), for the heartbeat */
    uint64_t ping_sent_ms;         /* keep-alive ping waiting for any input since (0: none) */
    _Atomic size_t out_bytes;      /* output queued, not yet written */
    _Atomic(void *) user_data;
};

/* The queued byte count: only the owner writes it, other threads read it (relaxed, so
 * these are plain moves). */
static inline size_t eddy__conn_out_bytes(const eddy__conn_t *conn)
{
    return atomic_load_explicit(&conn->out_bytes, memory_order_relaxed);
}

static inline void eddy__conn_set_out_bytes(eddy__conn_t *conn, size_t bytes)
{
    atomic_store_explicit(&conn->out_bytes, bytes, memory_order_relaxed);
}

/* A copy of a session's fields, taken under the lock. */
typedef struct eddy__session_view {
    int loop;
    bool closing;
    uint8_t ws_status;
    int socket_fd;
    uint16_t local_port;
    size_t out_bytes;
    uint64_t last_recv_ms; /* Unix time, ms */
    uint64_t connect_ms;   /* Unix time, ms (whole seconds) */
    eddy__peer_t peer;
    void *user_data;
} eddy__session_view_t;

#define EDDY__REGISTRY_SHARDS 64

typedef struct eddy__registry_shard {
    pthread_mutex_t lock;
    eddy__connmap_t map;
} eddy__registry_shard_t;

typedef struct eddy__registry {
    eddy__registry_shard_t shards[EDDY__REGISTRY_SHARDS];
    _Atomic uint64_t next_id;
    _Atomic size_t live; /* sessions not closing */
} eddy__registry_t;

void eddy__registry_init(eddy__registry_t *reg);
void eddy__registry_free(eddy__registry_t *reg);
/* The next session id: 1 first, increasing, never reused. */
eddy_fd_t eddy__registry_next_id(eddy__registry_t *reg);
/* Registers a connection (its session fields set); returns 0 or EDDY_ENOMEM. */
int eddy__registry_add(eddy__registry_t *reg, eddy__conn_t *conn);
/* Unregisters a connection (owner loop only); no other thread sees it afterwards. */
void eddy__registry_remove(eddy__registry_t *reg, eddy__conn_t *conn);
/* Marks a connection closing: exist() is false from now on, the live count drops. */
void eddy__session_set_closing(eddy__registry_t *reg, eddy__conn_t *conn);
/* Marks a session closing from any thread (eddy_close() elsewhere than its loop): it is
 * gone for exist(), counts and lists at once; its loop closes it when told. Returns false
 * if there is no such session or it was already closing. */
bool eddy__registry_mark_closing(eddy__registry_t *reg, eddy_fd_t id);
/* Moves an established WebSocket's status to CLOSING from any thread (eddy_disconnect()
 * elsewhere than its loop): no longer established, for everyone, at once. Returns false
 * unless the session was established. */
bool eddy__registry_start_closing(eddy__registry_t *reg, eddy_fd_t id);
/* Copies a session's fields; false if no session has this id. Any thread. */
bool eddy__registry_get(eddy__registry_t *reg, eddy_fd_t id, eddy__session_view_t *view);
bool eddy__registry_set_user_data(eddy__registry_t *reg, eddy_fd_t id, void *user_data);
/* Allocates *ids with the ids of live sessions in increasing order; returns how many.
 * Out of memory: *ids is NULL (and 0 is returned), never a partial list. */
size_t eddy__registry_live_ids(eddy__registry_t *reg, eddy_fd_t **ids);

/* Where a method on session fd runs, from any thread: the owner runs it, others post it.
 * Sets *conn when the calling thread's loop owns the live session (act on it now), else
 * fills *view (post the work to srv->loops[view->loop]). Returns 0, or EDDY_ENOTFOUND
 * when there is no such live session. */
int eddy__session_find(eddy_server_t *srv, eddy_fd_t fd, eddy__conn_t **conn,
                       eddy__session_view_t *view);

/* This loop's live connection with this id, or NULL (also when another loop owns it). */
static inline eddy__conn_t *eddy__conn_lookup(eddy__loop_t *loop, eddy_fd_t id)
{
    if (loop == NULL || id == 0)
        return NULL;
    /* Most calls name the connection whose callback is running. */
    eddy__conn_t *conn = loop->dispatching;
    if (conn == NULL || conn->id != id)
        conn = eddy__connmap_get(&loop->conns, id);
    /* Closing (or released), or closed by another thread with the close not yet carried
     * out here. */
    if (conn == NULL || conn->ending || atomic_load_explicit(&conn->closing, memory_order_relaxed))
        return NULL;
    return conn;
}

/* Creates a connection for a socket accepted on listener, speaking proto, and registers it,
 * with session id id (0: the next one). Returns NULL (and closes nothing) on out-of-memory. */
eddy__conn_t *eddy__conn_new(eddy__loop_t *loop, int fd, const struct sockaddr *peer,
                             const eddy__listener_t *listener, eddy_fd_t id,
                             const eddy__proto_t *proto);
/* Switches the connection to another protocol (an upgrade), with no state yet. Called from
 * inside the old protocol's process(), which frees its own state before it returns and
 * returns the bytes it consumed; the new protocol gets the rest. */
void eddy__conn_switch(eddy__conn_t *conn, const eddy__proto_t *proto);
/* Sets websocket_status. */
void eddy__conn_set_status(eddy__conn_t *conn, int status);

/*
 * Back-pressure: asks room for bytes more output of a data message. Returns 0 (go ahead),
 * EDDY_QUEUED (go ahead; the connection is at or over the high watermark once they are
 * queued) or EDDY_EDROPPED (do not queue: the connection is over socket_buffer_size and
 * slow_consumer_policy dropped the message, or is closing the connection, logged).
 * Control frames and HTTP responses do not ask. (Inline, at the end of this file.)
 */
static inline int eddy__conn_admit(eddy__conn_t *conn, size_t bytes);
/* eddy__conn_admit() for a connection near or over a limit. */
int eddy__conn_admit_near_limits(eddy__conn_t *conn, size_t bytes);
/* eddy_send(): raw bytes, admitted like a message. */
int eddy__conn_send_raw(eddy__conn_t *conn, const void *data, size_t len);

/* Queues bytes (copied). Returns 0 or EDDY_ENOMEM. The data goes out when the loop flushes
 * at the end of the current phase of its iteration. */
int eddy__conn_write(eddy__conn_t *conn, const void *data, size_t len);
/* Queues a shared frame (a reference, no copy), a whole message: behind the fragmented
 * message being sent if there is one (hold_output). Returns 0 or EDDY_ENOMEM. */
int eddy__conn_write_blob(eddy__conn_t *conn, eddy__blob_t *blob);
/* Queues two pieces as one (a frame header and its payload) in held, behind the fragmented
 * message being sent (RFC 6455 5.4: nothing but control frames may come between its
 * frames). Returns 0 or EDDY_ENOMEM. */
int eddy__conn_hold2(eddy__conn_t *conn, const void *a, size_t a_len, const void *b, size_t b_len);
/* The fragmented message's last frame is queued: what waited in held follows it, in order,
 * and hold_output ends. */
void eddy__conn_release_held(eddy__conn_t *conn);
/* Queues two pieces as one (a frame header and its payload). */
int eddy__conn_write2(eddy__conn_t *conn, const void *a, size_t a_len, const void *b, size_t b_len);
/* Room at the end of the output queue, and bytes written there: behind the inline
 * functions below, which use the cork when they can. */
void *eddy__conn_reserve_queued(eddy__conn_t *conn, size_t n);
void eddy__conn_commit_queued(eddy__conn_t *conn, size_t n);

/* Room for n bytes at the end of the output (the loop's cork, the queue's last segment or
 * a new one), to be written in place and then queued with eddy__conn_commit(conn, m),
 * m <= n, before anything else is queued. NULL when n is over EDDY__SEG_MAX_SIZE or
 * memory is short: then queue with eddy__conn_write2(), which handles both. Inline for
 * the usual case, a reply to the connection being read. */
static inline void *eddy__conn_reserve(eddy__conn_t *conn, size_t n)
{
    eddy__loop_t *loop = conn->loop;
    if (conn == loop->reading && conn->out.tail == NULL && conn->tls == NULL &&
        EDDY__CORK_SIZE - loop->cork_len >= n)
        return loop->cork + loop->cork_len;
    return eddy__conn_reserve_queued(conn, n);
}

static inline void eddy__conn_commit(eddy__conn_t *conn, size_t n)
{
    if (conn->out.tail != NULL) {
        eddy__conn_commit_queued(conn, n);
        return;
    }
    conn->loop->cork_len += n; /* the room was in the cork */
    eddy__conn_set_out_bytes(conn, eddy__conn_out_bytes(conn) + n);
}
/* Writes everything the loop queued this iteration. */
void eddy__loop_flush(eddy__loop_t *loop);

/* How a connection ends. */
enum eddy__close_how {
    EDDY__CLOSE_GRACEFUL, /* send what is queued, shut down, wait for the peer's EOF */
    EDDY__CLOSE_ABORT,    /* drop queued output and close now (I/O error) */
};

/* Ends a live connection: processing of its input stops, its close (or disconnect)
 * callback runs at the end of the loop iteration, and the socket is closed when the
 * queued output is sent (GRACEFUL) or at once (ABORT). Safe inside the connection's own
 * callbacks and to call twice. */
void eddy__conn_close(eddy__conn_t *conn, int how);

/* Runs close callbacks of connections closed this iteration and releases them. */
void eddy__loop_reap(eddy__loop_t *loop);
/* Closes released sockets at once: those only waiting for the peer's EOF, or with all,
 * also those whose output has not drained (server shutdown). */
void eddy__loop_close_zombies(eddy__loop_t *loop, bool all);

/* Stops or resumes processing input (a detached HTTP response is pending). */
void eddy__conn_pause(eddy__conn_t *conn, bool paused);

/* (Re)arms the connection's timer, or stops it with ms == 0. The first call (made by
 * the protocol's start() for every connection) makes the timer and may fail with EDDY_ENOMEM
 * (logged); every later call succeeds, so a connection never loses its timeout. */
int eddy__conn_set_timeout(eddy__conn_t *conn, uint64_t ms);
/* Stops the connection's timer and frees it. */
void eddy__conn_drop_timer(eddy__conn_t *conn);

/* ---------------------------------------------------------------------------------------
 * HTTP session (http.c)
 * ------------------------------------------------------------------------------------- */

/* The request being dispatched: a view of the connection's buffer, valid during the
 * callback. Strings are NUL-terminated in place or copied into the arena. */
struct eddy_request {
    eddy_server_t *srv;
    eddy__conn_t *conn;
    eddy_fd_t fd;
    char *buf; /* the first byte of the request */
    const eddy__http_head_t *head;
    const char *path;
    const char *body;
    size_t body_len;
    eddy__arena_t *arena;
    char remote_ip[46];
    int remote_port;
    /* The upgrade callback is running: eddy_upgrade_refuse() may record its answer. */
    bool in_upgrade;
    int refuse_status;        /* 0: no answer recorded */
    char *refuse_headers;     /* "Name: value\r\n" lines, in the arena */
    bool refuse_content_type; /* refuse_headers has a Content-Type */
    const char *refuse_body;  /* in the arena */
    size_t refuse_body_len;
};

struct eddy_response {
    eddy_server_t *srv;
    eddy__conn_t *conn; /* NULL once the connection is gone (an orphaned response) */
    eddy_fd_t fd;
    int status;
    bool headers_sent;
    bool chunked; /* body sent with chunked coding (write() before end()) */
    bool finished;
    bool detached;
    bool handshake; /* the answer to an upgrade request, from the handshake callback */
    bool keep_alive;
    bool head_only; /* HEAD request: no body on the wire */
    bool has_server, has_content_type, has_date;
    int http_minor;
    char *reason;
    eddy__buf_t headers; /* "Name: value\r\n" lines set by the application */
    /* Access log: the start of the request's line (address, time, request line) until it
     * is written (then empty), when the request was dispatched, and the body bytes sent. */
    eddy__buf_t access;
    uint64_t access_start_ns;
    size_t body_bytes;
};

/* Writes the access log line of resp's request with status and resp->body_bytes, unless
 * the access log is off or the line was written already. */
void eddy__response_access_log(eddy_response_t *resp, int status);

/* Queues the status line and headers of resp (extra: headers eddy adds, already
 * formatted; body_len: Content-Length, or -1 for none). Returns 0 or EDDY_ENOMEM. */
int eddy__response_send_head(eddy_response_t *resp, const char *extra, int64_t body_len);

/* The HTTP/1.1 server session: every accepted connection starts with it. Its process()
 * stops early when the connection upgrades, pauses or closes, or when a request is
 * incomplete. */
extern const eddy__proto_t eddy__http_proto;

/* Who takes requests with "Upgrade: websocket" (srv->upgrade; ws.c provides it): the HTTP
 * session knows no more of the protocol it hands them to. */
typedef struct eddy__http_upgrade {
    /* A complete upgrade request (head parsed, body read); req and resp belong to the HTTP
     * session. It answers and calls eddy__conn_switch(), or fails the request. */
    void (*request)(eddy__conn_t *conn, eddy_request_t *req, eddy_response_t *resp);
    /* eddy_response_end() of a response whose handshake flag it set. */
    int (*end)(eddy_response_t *resp, const void *data, size_t len);
} eddy__http_upgrade_t;

/* The current HTTP date ("Sun, 06 Nov 1994 08:49:37 GMT"), cached per second in the
 * loop (which has HTTP connections). */
const char *eddy__http_date(eddy__loop_t *loop);
/* Sends a complete error response ("400 Bad Request" etc.) with a text body and closes. */
void eddy__http_fail(eddy__conn_t *conn, int status, const char *body);
/* Sends a complete response and closes: status, then headers ("Name: value\r\n" lines,
 * may be NULL) after eddy's Server and Date, a text/plain Content-Type unless
 * has_content_type (headers holds one), then body. */
void eddy__http_answer_close(eddy__conn_t *conn, int status, const char *headers,
                             bool has_content_type, const char *body, size_t body_len);
/* The request being dispatched on conn (valid during its callbacks). */
eddy_request_t *eddy__http_request(eddy__conn_t *conn);
/* True if the application set header name (lower case) on resp. */
bool eddy__response_has_header(const eddy_response_t *resp, const char *name);

/* ---------------------------------------------------------------------------------------
 * WebSocket session (ws.c)
 * ------------------------------------------------------------------------------------- */

/* The WebSocket session, and the upgrade hook that switches HTTP connections to it (the
 * handshake callback's response: 101 upgrades, anything else refuses and closes). */
extern const eddy__proto_t eddy__ws_proto;
extern const eddy__http_upgrade_t eddy__ws_upgrade;

/* Negotiates permessage-deflate for an upgrade request, if enabled. Returns true and fills
 * *pmd and header (a complete "Sec-WebSocket-Extensions: ...\r\n" line) when agreed. */
bool eddy__ws_negotiate(eddy__conn_t *conn, const eddy_request_t *req, eddy__pmd_t *pmd,
                        char *header, size_t header_cap);
/* The loop's compressor for window bits, shared by messages compressed whole with no
 * context takeover (reset after each), made on first use; NULL: out of memory. */
z_stream *eddy__ws_shared_deflater(eddy__loop_t *loop, int bits);
/* The loop's buffer for compressed output (framed and copied right away); NULL: out of
 * memory. */
eddy__buf_t *eddy__ws_deflate_out(eddy__loop_t *loop);
/* True while conn speaks WebSocket and is not closing. */
static inline bool eddy__ws_open(const eddy__conn_t *conn)
{
    return conn->proto == &eddy__ws_proto && !conn->ending;
}
/* Sends a close frame and enters the closing handshake (or, with code 0, closes after
 * sending a close frame without waiting: used when failing the connection). */
void eddy__ws_send_close(eddy__conn_t *conn, uint16_t code, const char *reason, size_t reason_len,
                         bool wait_for_peer);
/* True once a close frame went out (nothing may follow it). */
bool eddy__ws_close_sent(const eddy__conn_t *conn);
/* The window bits of the compressor a shared (published) frame may use for conn: > 0 when
 * it negotiated permessage-deflate without server context takeover, else 0. */
int eddy__ws_shared_deflate_bits(const eddy__conn_t *conn);
/* Frames and queues a message. Returns what eddy_push() documents. */
int eddy__ws_push(eddy__conn_t *conn, const void *data, size_t len, int opcode, int flags);
/* The checks eddy__ws_push() makes of its arguments alone: 0, EDDY_EINVAL, EDDY_ETOOBIG. */
int eddy__ws_push_check(const eddy_server_t *srv, const void *data, size_t len, int opcode,
                        int flags);

/* ---------------------------------------------------------------------------------------
 * TLS (tls.c): server contexts and the per-connection transport. The read/write functions
 * behave like read() and writev(): bytes, 0 for end of stream, -EAGAIN when OpenSSL waits
 * for conn->tls_wants, or another negative error.
 * ------------------------------------------------------------------------------------- */

int eddy__tls_ctx_new(eddy_server_t *srv, struct ssl_ctx_st **out);
void eddy__tls_ctx_free(struct ssl_ctx_st *ctx);
int eddy__tls_conn_start(eddy__conn_t *conn, struct ssl_ctx_st *ctx);
void eddy__tls_conn_free(eddy__conn_t *conn);
/* Returns 1 when the handshake is complete, -EAGAIN while it goes on, else an error. */
int eddy__tls_handshake(eddy__conn_t *conn);
ssize_t eddy__tls_read(eddy__conn_t *conn, void *buf, size_t cap);
ssize_t eddy__tls_writev(eddy__conn_t *conn, const struct iovec *iov, int n);
/* OpenSSL's description of the last EDDY_EPROTO these functions returned on this thread. */
const char *eddy__tls_last_error(void);
/* True if OpenSSL holds bytes already read from the socket. */
bool eddy__tls_pending(eddy__conn_t *conn);
void eddy__tls_shutdown(eddy__conn_t *conn);

/* ---------------------------------------------------------------------------------------
 * Pub/sub (pubsub.c)
 * ------------------------------------------------------------------------------------- */

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

/* ---------------------------------------------------------------------------------------
 * Task workers (task.c)
 * ------------------------------------------------------------------------------------- */

typedef struct eddy__taskpool eddy__taskpool_t;

/* Starts task_worker_num threads (none when it is 0). Returns 0 or an error. */
int eddy__taskpool_start(eddy_server_t *srv);
/* Runs what is queued to completion and joins the threads. */
void eddy__taskpool_stop(eddy_server_t *srv);

/* ---------------------------------------------------------------------------------------
 * Server (server.c)
 * ------------------------------------------------------------------------------------- */

struct eddy__listener {
    eddy_server_t *srv;
    char *host;
    int port;  /* as configured (0: any) */
    int flags; /* EDDY_LISTEN_* */
    int bound_port;
    struct ssl_ctx_st *tls_ctx;
};

/* A listening socket of a loop: with enable_reuse_port every loop has one per listener,
 * otherwise loop 0 has them all and hands accepted sockets to the other loops. */
struct eddy__listen_sock {
    eddy__io_t io;
    eddy__listener_t *listener;
    bool paused; /* out of memory or descriptors: accepting resumes after a pause */
};

struct eddy_server {
    eddy__options_t opts;
    void *user_data;

    eddy_server_cb on_start;
    eddy_server_cb on_shutdown;
    eddy_connect_cb on_connect;
    eddy_open_cb on_open;
    eddy_message_cb on_message;
    eddy_close_cb on_close;
    eddy_close_cb on_disconnect;
    eddy_request_cb on_handshake;
    eddy_upgrade_cb on_upgrade;
    eddy_request_cb on_request;
    eddy_drain_cb on_drain;
    const eddy__http_upgrade_t *http_upgrade; /* takes upgrade requests: eddy__ws_upgrade */

    eddy__listener_t *listeners;
    int listener_count;

    eddy__registry_t registry;
    eddy__topics_t topics;
    eddy__taskpool_t *tasks; /* guarded by task_lock */
    pthread_mutex_t task_lock;
    _Atomic uint64_t task_seq;
    /* Room for the most loops worker_num allows, so the array never moves. Loops live until
     * eddy_server_free(): application threads may reach them at any time before that. */
    eddy__loop_t **loops;   /* pointers: a loop never moves, epoll holds its watchers */
    _Atomic int loop_count; /* loops of the current (or last) run */
    int loops_made;         /* loops created so far: loop_count of them run, all are freed */
    bool running;
    /* eddy_server_stop() was called: every loop reads it, so loops a start creates later
     * (worker_num grew) see a stop asked before that start. */
    atomic_bool stop_requested;
    _Atomic uint64_t timer_seq;

    int log_fd;
    eddy_log_cb on_log;
    int access_fd; /* http_access_log, opened at start; -1: off */
};

static inline int eddy__conn_admit(eddy__conn_t *conn, size_t bytes)
{
    const eddy__options_t *opts = &conn->loop->srv->opts;
    size_t after = eddy__conn_out_bytes(conn) + bytes;
    /* The usual case, inline: under every limit, and neither dropping nor timing a stay
     * over the soft limit. */
    if (after < opts->high_watermark && after <= opts->admit_limit && !conn->dropping &&
        !conn->over_soft)
        return 0;
    return eddy__conn_admit_near_limits(conn, bytes);
}

/* Starts closing everything once a stop was requested; true when the loop may exit. */
bool eddy__server_loop_should_exit(eddy__loop_t *loop);
/* A session is reaped (proto->closed() of the server's protocols): runs the close or
 * disconnect callback and drops its subscriptions. */
void eddy__server_session_closed(eddy__conn_t *conn);

#endif /* EDDY_INTERNAL_H */

/* SPDX-License-Identifier: MIT */
/*
 * eddy: an event-driven WebSocket + HTTP/1.1 server library for C, modelled on
 * Swoole's WebSocket\Server.
 *
 * A server listens on one port and speaks HTTP/1.1 and WebSocket (RFC 6455) there.
 * The application registers callbacks for Swoole's events (open, message, close,
 * disconnect, handshake, request, ...) and calls Swoole's methods (push, disconnect,
 * exist, is_established, client_info, timers, defer, ...) with a connection's session id.
 *
 * Conventions used throughout this header:
 * - Functions returning int return a negative eddy_error value (or -errno, for system
 *   errors) on failure, and only then: `rc < 0` means failure (except EDDY_AGAIN from
 *   eddy_ws_unpack(), which asks for more input). On success most return 0 (EDDY_OK);
 *   the few that return something else say so, and a function returns either a status
 *   or a number, never both: eddy_push() and eddy_send() may return the status
 *   EDDY_QUEUED and never a count; eddy_publish() returns a count and
 *   eddy_server_add_listener() an index, never EDDY_QUEUED. eddy_strerror() describes
 *   every status and error.
 * - "Borrowed" pointers are valid only for the duration of the callback that received
 *   them; copy what you need to keep. "Copied" arguments may be freed by the caller as
 *   soon as the call returns.
 * - Threads: the server runs worker_num event loops, each on its own thread (loop 0 on
 *   the thread that called eddy_server_start()). A connection belongs to one loop, and
 *   all its callbacks run on that loop's thread. The methods on connections, pub/sub,
 *   timers, deferred calls, tasks and eddy_server_stop() may be called from any thread,
 *   loop threads and the application's own alike: called where the connection lives
 *   they act at once, elsewhere they are handed to its loop (lock-free, woken by an
 *   eventfd) and act there shortly after, in the order they were called. They stay safe
 *   from eddy_server_new() to eddy_server_free(), also while the server stops, after
 *   eddy_server_start() returned and across a restart: work handed over while no loop
 *   runs waits for the next start or for eddy_server_free(). The request and
 *   response functions, and eddy_server_set()/eddy_on_*(), are for the thread that owns
 *   the object (the loop that called you, or the thread configuring the server); the
 *   limits eddy_server_set() changes while running and eddy_server_reload_tls() are for
 *   any thread.
 */
#ifndef EDDY_H
#define EDDY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with -fvisibility=hidden: only what this header declares is
 * exported from libeddy.so, so internals cannot become ABI by accident. */
#if defined(__GNUC__) && __GNUC__ >= 4
#pragma GCC visibility push(default)
#endif

/* The version this header belongs to; the only place it is written (the Makefile reads
 * it from here for the soname and pkg-config). */
#define EDDY_VERSION_MAJOR  0
#define EDDY_VERSION_MINOR  1
#define EDDY_VERSION_PATCH  0
#define EDDY_VERSION_STRING "0.1.0"

/* The version of the library linked at run time ("0.1.0"): may differ from
 * EDDY_VERSION_STRING when a program runs against another build of libeddy.so. Static
 * string; any thread. */
const char *eddy_version(void);

/* ---------------------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------------------- */

/*
 * Status and error codes. Errors are negative; system errors are returned as -errno and
 * are not listed here (the values below never collide with an errno value). EDDY_OK and
 * EDDY_QUEUED are successes; EDDY_QUEUED is returned only by eddy_push() and eddy_send(),
 * EDDY_PENDING only by eddy_upgrade_defer().
 */
typedef enum eddy_error {
    EDDY_OK = 0,
    EDDY_QUEUED = 1,          /* push, send: accepted, but the connection is behind */
    EDDY_PENDING = 2,         /* eddy_upgrade_defer(): the upgrade is answered later */
    EDDY_AGAIN = -3000,       /* eddy_ws_unpack(): more input needed (not a failure) */
    EDDY_EINVAL = -3001,      /* an argument is out of range or malformed */
    EDDY_ENOMEM = -3002,      /* out of memory */
    EDDY_ENOTFOUND = -3003,   /* no live connection has this session id */
    EDDY_ESTATE = -3004,      /* the connection is not in a state that allows this call */
    EDDY_ETOOBIG = -3005,     /* data larger than the configured limit */
    EDDY_EPROTO = -3006,      /* malformed protocol input */
    EDDY_EUTF8 = -3007,       /* text that is not valid UTF-8 (a close reason) */
    EDDY_ECLOSED = -3008,     /* the connection closed before the call could complete */
    EDDY_EKEY = -3009,        /* unknown setting name */
    EDDY_EVALUE = -3010,      /* bad value for a setting */
    EDDY_ERUNNING = -3011,    /* not allowed while the server is running */
    EDDY_ENOCALLBACK = -3012, /* a required callback (message) is not set */
    EDDY_EDROPPED = -3013,    /* not sent: the connection is a slow consumer (see settings),
                               * or not keeping up with a volatile message */
} eddy_error_t;

/*
 * Returns a human-readable description of an eddy_error value (every one has its own) or
 * of a -errno value, and "unknown error" for anything else. The string is static: it is
 * never freed or overwritten, so any thread may call this at any time.
 */
const char *eddy_strerror(int err);

/* ---------------------------------------------------------------------------------------
 * WebSocket constants (values identical to Swoole's)
 * ------------------------------------------------------------------------------------- */

enum eddy_ws_opcode {
    EDDY_WS_OPCODE_CONTINUATION = 0x0,
    EDDY_WS_OPCODE_TEXT = 0x1,
    EDDY_WS_OPCODE_BINARY = 0x2,
    EDDY_WS_OPCODE_CLOSE = 0x8,
    EDDY_WS_OPCODE_PING = 0x9,
    EDDY_WS_OPCODE_PONG = 0xa,
};

/* Frame flags, for eddy_push(), eddy_ws_pack() and eddy_frame_t.flags. */
enum eddy_ws_flag {
    EDDY_WS_FLAG_FIN = 1 << 0,      /* last frame of a message */
    EDDY_WS_FLAG_COMPRESS = 1 << 1, /* compress if the connection negotiated it */
    EDDY_WS_FLAG_RSV1 = 1 << 2,     /* read-only: RSV1 was set (compressed message) */
    EDDY_WS_FLAG_RSV2 = 1 << 3,
    EDDY_WS_FLAG_RSV3 = 1 << 4,
    EDDY_WS_FLAG_MASK = 1 << 5, /* eddy_ws_pack(): mask the payload (client role);
                                 * received frames: the frame was masked */
    /* push, push_parts, publish, publish_parts, broadcast: a recipient that is not keeping
     * up right now does not get the message (dropped for it, never queued), as Socket.IO's
     * volatile events. Not keeping up: the last write to its socket left bytes unsent (it
     * waits for the socket to become writable), or its queued output is at or over
     * buffer_high_watermark. Each drop is logged at debug level. */
    EDDY_WS_FLAG_VOLATILE = 1 << 6,
};

/* websocket_status values reported by eddy_client_info() (Swoole's WEBSOCKET_STATUS_*). */
enum eddy_ws_status {
    EDDY_WS_STATUS_NONE = 0,       /* plain HTTP connection, no upgrade requested */
    EDDY_WS_STATUS_CONNECTION = 1, /* upgrade requested, waiting for the handshake */
    EDDY_WS_STATUS_HANDSHAKE = 2,  /* handshake in progress */
    EDDY_WS_STATUS_ACTIVE = 3,     /* handshake done: an established WebSocket */
    EDDY_WS_STATUS_CLOSING = 4,    /* closing handshake in progress */
};

/* Close codes (RFC 6455 section 7.4.1). */
enum eddy_ws_close_code {
    EDDY_WS_CLOSE_NORMAL = 1000,
    EDDY_WS_CLOSE_GOING_AWAY = 1001,
    EDDY_WS_CLOSE_PROTOCOL_ERROR = 1002,
    EDDY_WS_CLOSE_DATA_ERROR = 1003,
    EDDY_WS_CLOSE_STATUS_ERROR = 1005,  /* never sent: "no status code was present" */
    EDDY_WS_CLOSE_ABNORMAL = 1006,      /* never sent: closed without a close frame */
    EDDY_WS_CLOSE_MESSAGE_ERROR = 1007, /* invalid UTF-8 in a text message */
    EDDY_WS_CLOSE_POLICY_ERROR = 1008,
    EDDY_WS_CLOSE_MESSAGE_TOO_BIG = 1009,
    EDDY_WS_CLOSE_EXTENSION_MISSING = 1010,
    EDDY_WS_CLOSE_SERVER_ERROR = 1011,
};

/* Length of a Sec-WebSocket-Accept value, without the terminating NUL. */
#define EDDY_WS_ACCEPT_LEN 28
/* Largest WebSocket frame header: 2 + 8 (extended length) + 4 (mask). */
#define EDDY_WS_MAX_HEADER_LEN 14

/* ---------------------------------------------------------------------------------------
 * Types
 * ------------------------------------------------------------------------------------- */

/* A server (opaque). */
typedef struct eddy_server eddy_server_t;
/* An HTTP request: the WebSocket upgrade request or a plain request (opaque). */
typedef struct eddy_request eddy_request_t;
/* The HTTP response to a request (opaque). */
typedef struct eddy_response eddy_response_t;

/*
 * A connection's session id, Swoole's "$fd". It is not an operating-system descriptor:
 * the first connection gets 1, ids increase, and an id is never reused while the server
 * runs, so a stale id can never reach a newer connection. 0 is never a valid id.
 */
typedef uint64_t eddy_fd_t;

/*
 * A received WebSocket message or control frame, as passed to the message callback.
 * Everything it points to is borrowed.
 */
typedef struct eddy_frame {
    eddy_fd_t fd;
    /* The payload: a whole message (fragments are reassembled). data[len] is a NUL byte,
     * so text may be used as a C string (it may still contain NULs itself). */
    const char *data;
    size_t len;
    uint8_t opcode; /* EDDY_WS_OPCODE_TEXT, _BINARY, or _CLOSE/_PING/_PONG when enabled */
    bool finish;    /* FIN: always true from the message callback (eddy delivers whole
                     * messages); from eddy_ws_unpack() false for a frame that is not a
                     * message's last (Swoole's $frame->finish) */
    uint8_t flags;  /* EDDY_WS_FLAG_* as received, as Swoole reports them: FIN, RSV1 when
                     * the message was compressed, MASK for (masked) client frames; a
                     * client's whole text message is thus FIN | MASK = 33 */
    /* Close frames only: the status code (1005 when the peer sent none) and the reason
     * (borrowed, NUL-terminated, reason_len bytes of valid UTF-8). */
    uint16_t code;
    const char *reason;
    size_t reason_len;
} eddy_frame_t;

/* Connection details, Swoole's getClientInfo(). */
typedef struct eddy_client_info {
    eddy_fd_t fd;
    int websocket_status; /* enum eddy_ws_status */
    char remote_ip[46];   /* textual IPv4 or IPv6 address */
    int remote_port;
    int server_port;          /* local port the connection arrived on */
    int socket_fd;            /* the operating-system descriptor (for diagnostics only) */
    int reactor_id;           /* index of the loop thread owning the connection */
    int64_t connect_time;     /* Unix time, seconds */
    int64_t last_time;        /* Unix time of the last data received, seconds */
    double last_recv_time;    /* the same with sub-second precision */
    size_t send_queued_bytes; /* bytes waiting in the output buffer */
} eddy_client_info_t;

/* ---------------------------------------------------------------------------------------
 * Callbacks. Every callback receives the server first and a void *user_data last: for
 * event callbacks that is the server's user data (eddy_server_set_user_data()), for
 * timers and deferred calls the arg given when they were scheduled.
 * ------------------------------------------------------------------------------------- */

/* start (the loop is about to run) and shutdown (the loop stopped; connections are gone). */
typedef void (*eddy_server_cb)(eddy_server_t *srv, void *user_data);
/* connect: a TCP connection was accepted (fd is its session id). */
typedef void (*eddy_connect_cb)(eddy_server_t *srv, eddy_fd_t fd, void *user_data);
/* open: a WebSocket handshake completed. req is borrowed. */
typedef void (*eddy_open_cb)(eddy_server_t *srv, eddy_request_t *req, void *user_data);
/* message: a whole message, or a control frame when open_websocket_*_frame is set. */
typedef void (*eddy_message_cb)(eddy_server_t *srv, const eddy_frame_t *frame, void *user_data);
/* close / disconnect: the connection is gone; eddy_client_info() still answers for fd
 * during the callback, every other method fails for it. See eddy_on_disconnect(). */
typedef void (*eddy_close_cb)(eddy_server_t *srv, eddy_fd_t fd, void *user_data);
/* request: a plain HTTP request. handshake: an upgrade request the application answers
 * itself. req is borrowed; resp is valid until ended (see eddy_response_end()). */
typedef void (*eddy_request_cb)(eddy_server_t *srv, eddy_request_t *req, eddy_response_t *resp,
                                void *user_data);
/* upgrade: decides on a WebSocket upgrade request; see eddy_on_upgrade(). req is borrowed.
 * Returns 0 to accept, EDDY_PENDING (from eddy_upgrade_defer()) to answer later, anything
 * else to refuse. */
typedef int (*eddy_upgrade_cb)(eddy_server_t *srv, eddy_request_t *req, void *user_data);
/* timer_after / timer_tick callback; timer_id is the id the timer function returned. */
typedef void (*eddy_timer_cb)(eddy_server_t *srv, uint64_t timer_id, void *arg);
/* defer callback. */
typedef void (*eddy_defer_cb)(eddy_server_t *srv, void *arg);
/* drain: fd's output is back at buffer_low_watermark (see eddy_on_drain()). */
typedef void (*eddy_drain_cb)(eddy_server_t *srv, eddy_fd_t fd, void *user_data);
/* eddy_connection_foreach() visitor; return false to stop. */
typedef bool (*eddy_foreach_cb)(eddy_server_t *srv, eddy_fd_t fd, void *arg);

/* ---------------------------------------------------------------------------------------
 * Server lifecycle
 * ------------------------------------------------------------------------------------- */

/*
 * Creates a server that will listen on host:port (host: an IPv4 or IPv6 literal or a
 * name; port 0 picks a free port, see eddy_server_port()). With host NULL no listener is
 * created (add them with eddy_server_add_listener()). Nothing is bound until
 * eddy_server_start(). Returns NULL on out-of-memory or an invalid argument.
 */
eddy_server_t *eddy_server_new(const char *host, int port);

/*
 * Frees a server that is not running (never started, or eddy_server_start() returned).
 * Work other threads handed to the server after its last run (deferred calls, timer
 * clears, publications) runs here first, on the calling thread, so nothing is leaked.
 * Every other thread that uses the server must be done with it before this call.
 */
void eddy_server_free(eddy_server_t *srv);

/* Listener flags. */
enum eddy_listen_flag {
    EDDY_LISTEN_TLS = 1 << 0, /* HTTPS and WSS: needs ssl_cert_file and ssl_key_file */
};

/*
 * Adds a listener, as Swoole's addlistener(): one server serves HTTP and WebSocket on all
 * its listeners, plain and TLS alike. eddy_server_new(host, port) already added a plain
 * listener unless host was NULL (then every listener comes from here, e.g. a TLS-only
 * server). host is copied. Must be called before eddy_server_start(). Returns the
 * listener's index (>= 0), EDDY_EINVAL, EDDY_ERUNNING or EDDY_ENOMEM.
 */
int eddy_server_add_listener(eddy_server_t *srv, const char *host, int port, int flags);

/*
 * Adds a listener on a socket that is listening already, instead of binding one: a
 * descriptor inherited from the process this one replaces (eddy_server_listener_fd()
 * there) or from a service manager. Connections waiting in its backlog are accepted as
 * usual, so handing a socket over loses none. fd must be a listening TCP socket (IPv4 or
 * IPv6); the address it is bound to becomes the listener's (eddy_server_listener_port()),
 * and a later start of the same server binds that address again. The first start after
 * this call uses fd (made non-blocking and close-on-exec); it is served by loop 0, which
 * hands connections to the other loops, even with enable_reuse_port. On success the
 * server owns fd: it is closed when the server stops, or by eddy_server_free() if the
 * server never started; on failure it stays the caller's. Must be called before
 * eddy_server_start(). Returns the listener's index (>= 0), EDDY_EINVAL (fd is not a
 * listening TCP socket, bad flags), EDDY_ERUNNING or EDDY_ENOMEM.
 */
int eddy_server_add_listener_fd(eddy_server_t *srv, int fd, int flags);

/*
 * The listening socket of listener index while the server runs (loop 0's, with
 * enable_reuse_port), or -1 (not started yet, stopped, no such listener). It stays the
 * server's and is closed when the server stops: to hand it to another process, pass or
 * dup it (SCM_RIGHTS, an inherited descriptor) before asking this server to stop. The new
 * process's listener (eddy_server_add_listener_fd()) shares the socket, so a connection
 * is accepted by one process or the other until the old one stops; none is refused.
 * Any thread.
 */
int eddy_server_listener_fd(const eddy_server_t *srv, int index);

/*
 * Stops accepting while the connections the server has go on being served: every loop
 * closes its listening sockets, shortly after the call. eddy_server_listener_fd() returns
 * -1 once all have, and every connection accepted before is then a live one (counted by
 * eddy_connection_count(), none still being handed between loops). For a hand-over: once
 * another process shares the sockets, this one stops taking connections, answers the
 * requests it accepted already, and then eddy_server_stop() closes the rest (WebSocket
 * sessions with 1001). Call it while the server runs; any thread. Returns 0 or
 * EDDY_ENOMEM (nothing was changed).
 */
int eddy_server_close_listeners(eddy_server_t *srv);

/*
 * Applies one setting, Swoole's $server->set([key => value]) one pair at a time. Key and
 * value are copied. Call it before eddy_server_start(), from the thread configuring the
 * server. The same settings, typed: eddy_options_t and eddy_server_configure() below.
 *
 * While the server runs, four keys may change, from any thread: max_connection (for the
 * connections accepted after the call; those over the new limit stay),
 * package_max_length (for the messages and HTTP bodies whose size is checked after the
 * call, eddy_push() and the other sends included; a message being received when it is
 * lowered is checked against the new limit as its next frame arrives), each one relaxed
 * atomic load where it is checked (no lock per message), and websocket_ping_interval and
 * websocket_ping_timeout (every loop re-arms its ping timer shortly after the call: the
 * next round is an interval later; 0 turns pings off and forgives pings owed). Every other
 * key answers EDDY_ERUNNING while the server runs: they are read once per run
 * (worker_num, backlog, listeners, the heartbeat, compression, log files), or set up per
 * connection with more than one value to keep consistent (the output buffer bounds). For
 * TLS certificates see eddy_server_reload_tls().
 *
 * Keys (defaults in brackets):
 *   worker_num [CPU cores]         event loop threads (at most 256)
 *   task_worker_num [0]            threads for eddy_task()
 *   enable_reuse_port [false]      a listening socket per loop (SO_REUSEPORT, the kernel
 *                                  spreads connections); otherwise loop 0 accepts and hands
 *                                  connections to the loops in turn
 *   socket_buffer_size [8388608]   output a connection may hold; beyond it a message meets
 *                                  slow_consumer_policy (and input is not read meanwhile)
 *   buffer_high_watermark [80% of socket_buffer_size]  push answers EDDY_QUEUED from here
 *   buffer_low_watermark [0]       drain fires when output falls back to this
 *   slow_consumer_policy [close]   close: close with 1008 "slow consumer"; drop: drop the
 *                                  message (control frames are never dropped)
 *   socket_buffer_soft_limit [0]   a lower limit output may exceed for a while: a message
 *                                  admitted while output has been over it for
 *                                  socket_buffer_soft_seconds meets slow_consumer_policy, so
 *                                  a burst that drains in time passes (0: off; redis's
 *                                  client-output-buffer-limit soft limit)
 *   socket_buffer_soft_seconds [60]  how long output may stay over the soft limit (0-3600;
 *                                  0: at once). Measured as messages are admitted: the clock
 *                                  starts with the message that takes output over the limit,
 *                                  and stops with the first admitted under it (to 128 ms)
 *   max_connection [RLIMIT_NOFILE, at most 1048576]  further connections are refused
 *   backlog [511]                  listen() backlog
 *   open_tcp_nodelay [true]        TCP_NODELAY on accepted sockets
 *   package_max_length [2097152]   largest WebSocket message and HTTP body, bytes
 *   heartbeat_check_interval [0]   seconds between idle checks (0: off); only this turns
 *                                  the heartbeat on, as in Swoole
 *   heartbeat_idle_time [2 * heartbeat_check_interval]  idle seconds before a close.
 *                                  Set alone it checks nothing (logged at info when the
 *                                  server starts); an interval longer than it is halved
 *                                  to idle_time / 2 (logged as a warning), as in Swoole
 *   websocket_subprotocol [unset]  answered when the client offers it
 *   websocket_origins [unset]      comma-separated Origins allowed to upgrade, compared
 *                                  whole and case-insensitively ("https://a.example,
 *                                  http://localhost:8080"); an upgrade whose Origin is not
 *                                  listed, or that has several, gets 403. A request
 *                                  without Origin passes (browsers always send one; other
 *                                  clients need not: refuse them in eddy_on_upgrade() if
 *                                  they must). Unset or empty: every Origin passes
 *   open_websocket_close_frame [false]  deliver close frames to the message callback
 *   open_websocket_ping_frame [false]   deliver pings (and do not answer them)
 *   open_websocket_pong_frame [false]   deliver pongs
 *   websocket_close_timeout [5]    seconds to wait for the peer's close frame (0: none)
 *   websocket_ping_interval [0]    seconds between keep-alive pings (empty) to every
 *                                  established WebSocket (0: off)
 *   websocket_ping_timeout [0]     seconds a ping may go unanswered: with no input at all
 *                                  (a pong or any frame) by then the TCP connection is
 *                                  dropped, without a close frame, and no second ping is
 *                                  sent meanwhile (0: pings never close anything)
 *   websocket_upgrade_timeout [10] seconds an upgrade deferred by eddy_upgrade_defer() may
 *                                  wait for its answer, then 503 (0: no bound)
 *   http_header_timeout [10]       seconds to receive a request head, then 408
 *   http_body_timeout [60]         seconds to receive a request body, counted from the end
 *                                  of its head however the bytes trickle in, then 408
 *                                  (0: no deadline)
 *   http_keepalive_timeout [60]    seconds an idle keep-alive connection is kept
 *   http_max_header_size [65536]   bytes; a larger request head gets 431
 *   log_level [info]               trace|debug|info|notice|warning|error|none (see
 *                                  eddy_log_level), or Swoole's numbers 0-6 (SWOOLE_LOG_*:
 *                                  0 debug, 1 trace, 2 info, 3 notice, 4 warning, 5 error,
 *                                  6 none)
 *   log_file [stderr]              path of a file to append log lines to
 *   http_access_log [off]          one line per HTTP request (see Logging below): a file
 *                                  path to append to, or "stderr" or "-"
 *   websocket_compression [false]  permessage-deflate (RFC 7692) when the client offers it
 *   websocket_compression_threshold [0]  compress every message of at least this many bytes
 *                                  (0: only pushes with EDDY_WS_FLAG_COMPRESS)
 *   websocket_compression_level [6]      search effort 1-9, as zlib's levels
 *   websocket_compression_mem_level [8]  1-9, as zlib's memLevel: a hash table of
 *                                  2^(n + 7) entries per compressor
 *   websocket_compression_window_bits [15]  our compression window, 9-15
 *   websocket_compression_client_window_bits [15]  asked of clients that offer it, 8-15
 *   websocket_compression_server_no_context_takeover [false]  reset our compressor after
 *                                  every message (then no compressor is held per connection)
 *   websocket_compression_client_no_context_takeover [false]  ask clients to do the same
 *                                  (then no decompressor is held per connection)
 *   ssl_cert_file, ssl_key_file [unset]  PEM certificate (chain allowed) and key for TLS
 *                                  listeners
 *   ssl_ciphers [OpenSSL's default]  cipher list for TLS 1.2
 *   ssl_protocols [TLSv1.2,TLSv1.3]  allowed TLS versions
 *
 * Booleans accept true/false, 1/0, yes/no, on/off. Seconds (the heartbeat and *_timeout
 * keys) may be fractional ("0.5"), to the millisecond. Returns 0, EDDY_EKEY for an unknown
 * key, EDDY_EVALUE for a bad value (both logged with the key and value; nothing changes),
 * EDDY_ENOMEM, EDDY_ERUNNING (a key other than the four above while the server runs).
 */
int eddy_server_set(eddy_server_t *srv, const char *key, const char *value);

/*
 * Loads a new TLS certificate (PEM, chain allowed) and key for every TLS listener, with the
 * server's ssl_ciphers and ssl_protocols: the renewal of a certificate without a restart.
 * While the server runs, handshakes that start after the call use the new pair, and
 * established connections keep the one they were made with; the replaced context is
 * freed once every loop has moved on (the memory of the last connections that use it
 * goes with them). The files are read, and the key checked against the certificate,
 * before anything changes: a missing, unreadable or malformed file, or a key of another
 * certificate, is refused (logged with the file and OpenSSL's reason) and the running
 * pair is kept. The paths become the ssl_cert_file and ssl_key_file settings (when the run
 * ends, if it runs: the next eddy_server_start() loads them). Not running, the files are
 * checked the same way. Any thread; calls are serialised. Paths are copied. Returns 0,
 * EDDY_EINVAL (a NULL or empty path, a bad certificate or key), EDDY_EVALUE (bad
 * ssl_ciphers or ssl_protocols), EDDY_ENOMEM, or -errno (a file cannot be read).
 */
int eddy_server_reload_tls(eddy_server_t *srv, const char *cert_file, const char *key_file);

/* slow_consumer_policy values. */
enum eddy_slow_consumer_policy {
    EDDY_SLOW_CONSUMER_CLOSE = 0, /* close with 1008 "slow consumer" */
    EDDY_SLOW_CONSUMER_DROP = 1,  /* drop the message */
};

/*
 * Every setting, typed: the same keys as eddy_server_set() (see there for what each does
 * and its bounds), with seconds given as milliseconds (*_ms). Fill one with
 * eddy_options_init() (the defaults), change what you need, apply it with
 * eddy_server_configure(). Strings are borrowed by the struct (NULL: unset).
 */
typedef struct eddy_options {
    int worker_num;                               /* [CPU cores] 1-256 */
    int task_worker_num;                          /* [0] 0-1024 */
    bool enable_reuse_port;                       /* [false] */
    size_t socket_buffer_size;                    /* [8388608] */
    size_t buffer_high_watermark;                 /* [0: 80% of socket_buffer_size] */
    size_t buffer_low_watermark;                  /* [0] */
    int slow_consumer_policy;                     /* [EDDY_SLOW_CONSUMER_CLOSE] */
    size_t socket_buffer_soft_limit;              /* [0: off] */
    int socket_buffer_soft_seconds;               /* [60] 0-3600 */
    size_t max_connection;                        /* [RLIMIT_NOFILE, at most 1048576] */
    int backlog;                                  /* [511] 1-65535 */
    bool open_tcp_nodelay;                        /* [true] */
    size_t package_max_length;                    /* [2097152] */
    uint32_t heartbeat_check_interval_ms;         /* [0: off] */
    uint32_t heartbeat_idle_time_ms;              /* [0: 2 * heartbeat_check_interval_ms] */
    const char *websocket_subprotocol;            /* [NULL] */
    const char *websocket_origins;                /* [NULL: every Origin] */
    bool open_websocket_close_frame;              /* [false] */
    bool open_websocket_ping_frame;               /* [false] */
    bool open_websocket_pong_frame;               /* [false] */
    uint32_t websocket_close_timeout_ms;          /* [5000] */
    uint32_t websocket_ping_interval_ms;          /* [0: no keep-alive pings] */
    uint32_t websocket_ping_timeout_ms;           /* [0: an unanswered ping closes nothing] */
    uint32_t http_header_timeout_ms;              /* [10000] */
    uint32_t http_body_timeout_ms;                /* [60000] */
    uint32_t http_keepalive_timeout_ms;           /* [60000] */
    uint32_t websocket_upgrade_timeout_ms;        /* [10000] */
    size_t http_max_header_size;                  /* [65536] */
    bool websocket_compression;                   /* [false] */
    size_t websocket_compression_threshold;       /* [0] */
    int websocket_compression_level;              /* [6] 1-9 */
    int websocket_compression_mem_level;          /* [8] 1-9 */
    int websocket_compression_window_bits;        /* [15] 9-15 */
    int websocket_compression_client_window_bits; /* [15] 8-15 */
    bool websocket_compression_server_no_context_takeover; /* [false] */
    bool websocket_compression_client_no_context_takeover; /* [false] */
    const char *ssl_cert_file;                             /* [NULL] */
    const char *ssl_key_file;                              /* [NULL] */
    const char *ssl_ciphers;                               /* [NULL: OpenSSL's default] */
    const char *ssl_protocols;                             /* [NULL: TLSv1.2,TLSv1.3] */
    int log_level;                                         /* [EDDY_LOG_INFO] */
    const char *log_file;                                  /* [NULL: stderr] */
    const char *http_access_log;                           /* [NULL: off] */
} eddy_options_t;

/* Fills *opts with the defaults (those of a new server). Any thread. */
void eddy_options_init(eddy_options_t *opts);

/*
 * Applies every setting in *opts at once, replacing the server's (strings are copied).
 * Must be called before eddy_server_start(). Returns 0, EDDY_EVALUE when a field is out
 * of its bounds (logged with its key and value; nothing is changed), EDDY_ENOMEM,
 * EDDY_ERUNNING, EDDY_EINVAL (opts NULL).
 */
int eddy_server_configure(eddy_server_t *srv, const eddy_options_t *opts);

/*
 * Fills *out with the server's effective settings, derived defaults included: with
 * buffer_high_watermark unset it reports 80% of socket_buffer_size; heartbeat_idle_time_ms
 * and heartbeat_check_interval_ms are the ones the heartbeat uses (both 0 when it is off,
 * see heartbeat_idle_time). Strings are borrowed from the server until its next
 * eddy_server_set(), eddy_server_configure() or eddy_server_free(). For the thread that
 * configures the server (or any thread while no one changes the settings).
 */
void eddy_server_get_options(const eddy_server_t *srv, eddy_options_t *out);

/*
 * Binds, listens and runs the event loop until eddy_server_stop(). Returns 0 after a
 * clean stop, EDDY_ENOCALLBACK when no message callback is set, EDDY_EINVAL without a
 * listener or when a TLS listener's certificate or key is missing, unreadable or does
 * not match (logged with the file name), or -errno when an address cannot be bound
 * (logged with the address).
 */
int eddy_server_start(eddy_server_t *srv);

/*
 * Asks a running server to stop: listeners close, every connection is closed (WebSocket
 * ones with close code 1001), close callbacks run, then shutdown, then
 * eddy_server_start() returns. Safe to call from any thread and from a signal handler.
 * Asked while the server is not running, it makes the next eddy_server_start() stop at
 * once (a signal that arrives during start-up is not lost).
 */
void eddy_server_stop(eddy_server_t *srv);

/* The port the first listener is bound to (useful with port 0), or 0 before start. */
int eddy_server_port(const eddy_server_t *srv);
/* The port listener index is bound to, or 0 (not bound yet, or no such listener). */
int eddy_server_listener_port(const eddy_server_t *srv, int index);

/* Server-wide user data (borrowed pointer, never freed by eddy). */
void eddy_server_set_user_data(eddy_server_t *srv, void *user_data);
void *eddy_server_user_data(const eddy_server_t *srv);

/* ---------------------------------------------------------------------------------------
 * Logging
 *
 * eddy writes lines in Swoole's shape, "[2026-12-04 21:00:00 *pid.loop]\tLEVEL\tmessage",
 * to stderr or log_file, each with one write() (lines from several threads never mix).
 * loop is the index of the event loop that logged (0 outside the loops). Lines below
 * log_level are dropped before they are formatted. What eddy logs, by level:
 *   error/warning  failures of the server or of a connection it could not serve (out of
 *                  memory, cannot listen, slow consumers, max_connection refusals)
 *   notice/info    start and stop, malformed requests, protocol errors, I/O errors
 *   debug          connection lifecycle: accepted, WebSocket open, close frames sent and
 *                  received (code and reason), closed; refused handshakes (status, reason)
 *   trace          every WebSocket frame received (opcode, FIN, RSV1, length) and every
 *                  pong eddy answers with (costs nothing per message when off)
 *
 * The access log (setting http_access_log) is separate: one line per HTTP request, in the
 * Common Log Format plus the duration in seconds:
 *   127.0.0.1 - - [04/Dec/2026:21:00:00 +0000] "GET /chat HTTP/1.1" 101 0 0.000112
 * (remote address, local time the request was dispatched, request line with '"', '\' and
 * bytes outside printable ASCII escaped as \xHH, status, body bytes sent, seconds from
 * dispatch to the end of the response). An upgrade logs 101 (or the status it was refused
 * with); status 0 means no response was sent (eddy_response_close(), or the connection
 * closed first); requests refused before they could be parsed log "-" as request line.
 * Each loop buffers its lines and writes them once per loop iteration (and at stop).
 *
 * A log write that fails (a full disk, EIO, a closed pipe: with SIGPIPE ignored, as
 * servers do, else that signal ends the process) loses its lines and the server goes on:
 * nothing is retried, nothing blocks. The lines lost are counted
 * (log_lines_lost_total and access_log_lines_lost_total in eddy_stats_t). When writes to
 * a log start failing, one WARNING line on stderr (eddy_log_warning_fd()) names the file
 * and the error, unless stderr is that same file; a log that fails again within a minute
 * of that warning is not told again. The first write that works again is followed, in
 * the error log (or the log callback), by a WARNING line with the number of lines lost
 * meanwhile, written whatever log_level is.
 * ------------------------------------------------------------------------------------- */

/*
 * Log levels, most verbose first: a line is written if its level is at or above
 * log_level. The names are Swoole's, but trace is more verbose than debug here; Swoole's
 * numbers are accepted by the log_level setting (see eddy_server_set()), not these.
 */
typedef enum eddy_log_level {
    EDDY_LOG_TRACE = 0,
    EDDY_LOG_DEBUG = 1,
    EDDY_LOG_INFO = 2,
    EDDY_LOG_NOTICE = 3,
    EDDY_LOG_WARNING = 4,
    EDDY_LOG_ERROR = 5,
    EDDY_LOG_NONE = 6, /* log_level only: nothing is logged */
} eddy_log_level_t;

/*
 * Logs a line as eddy logs its own: printf-style, filtered by log_level, same format and
 * destination (or the log callback). level is EDDY_LOG_TRACE to EDDY_LOG_ERROR; other
 * values are ignored. Thread-safe: any thread may call it at any time while srv exists
 * (not concurrently with eddy_server_set() or eddy_on_log()). Lines longer than 1 KiB
 * are cut. srv NULL writes to stderr, unfiltered.
 */
void eddy_log(eddy_server_t *srv, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * The log callback: receives every line eddy would write (its own and eddy_log()'s,
 * those at or above log_level) INSTEAD of writing it: with a callback set nothing goes
 * to stderr or log_file (the access log is not affected). level is an eddy_log_level;
 * loop is the index of the event loop thread that logged, or -1 for any other thread
 * (the one configuring or starting the server, task workers, application threads).
 * msg is the message without prefix or newline, NUL-terminated, len bytes; it is
 * borrowed: valid only during the call. user_data is the server's user data.
 *
 * Threads: the callback runs on whichever thread logs, so several loops (and the
 * application's threads, through eddy_log()) may call it at once: it must be
 * thread-safe. It may run in the middle of eddy's own work: it must not call eddy
 * functions other than eddy_log(), and must not block for long (it holds up the loop
 * that logged). A line it logs itself with eddy_log() goes to the default output.
 */
typedef void (*eddy_log_cb)(eddy_server_t *srv, int level, int loop, const char *msg, size_t len,
                            void *user_data);

/* Sets the log callback, or with NULL removes it (lines go to stderr or log_file again).
 * Like the event setters: call it while the server is not running. */
void eddy_on_log(eddy_server_t *srv, eddy_log_cb cb);

/*
 * For a log callback that formats its lines itself: writes iov[0..iovcnt) (one or more
 * whole lines, newlines included; borrowed for the call) to the server's log, stderr or
 * log_file, with one writev(), and accounts for a failure as for eddy's own lines
 * (log_lines_lost_total, the warning, the line that reports the loss once writing works
 * again, which goes through the callback). A short write gets one more write for the
 * rest. Thread-safe, like eddy_log(); never blocks beyond the write. Returns 0,
 * EDDY_EINVAL (srv or iov NULL, iovcnt not 1 to 8) or -errno (the lines are lost).
 */
struct iovec;
int eddy_log_write(eddy_server_t *srv, const struct iovec *iov, int iovcnt);

/*
 * Where eddy says that writes to a log (the error log or the access log) started failing:
 * fd (borrowed; it must stay open while srv exists), or -1 for nowhere. Default:
 * STDERR_FILENO. Nothing is written there when it is the failing log's own file. A
 * program that points stderr at its log file can keep its original stderr open on
 * another descriptor and name it here. Call it while the server is not running.
 */
void eddy_log_warning_fd(eddy_server_t *srv, int fd);

/*
 * Opens log_file and http_access_log again by name, for log rotation (logrotate's create
 * mode: the old file was renamed, a new one takes its name; copytruncate needs nothing).
 * The new file replaces the old one under the same descriptor at once: lines written
 * meanwhile go to one or the other, none is lost or cut. A log that was failing is
 * written to the new file from then on: its next line that gets through is followed by
 * the count of lines lost, and a new failure is told at once. stderr ("stderr", "-", or
 * no log_file) is left alone; the access log only while the server runs (it is opened at
 * start). Any thread, any time between eddy_server_new() and eddy_server_free(), not
 * concurrently with eddy_server_set(). Returns 0, or -errno of the first file that could
 * not be opened (logged; that log keeps its old file).
 */
int eddy_server_reopen_logs(eddy_server_t *srv);

/* ---------------------------------------------------------------------------------------
 * Events (Swoole's $server->on(...)). Set before eddy_server_start(); NULL unsets.
 * ------------------------------------------------------------------------------------- */

void eddy_on_start(eddy_server_t *srv, eddy_server_cb cb);
void eddy_on_shutdown(eddy_server_t *srv, eddy_server_cb cb);
void eddy_on_connect(eddy_server_t *srv, eddy_connect_cb cb);
void eddy_on_open(eddy_server_t *srv, eddy_open_cb cb);
/* Required: eddy_server_start() fails with EDDY_ENOCALLBACK without it. */
void eddy_on_message(eddy_server_t *srv, eddy_message_cb cb);
/*
 * close: an established WebSocket connection ended. Connections that never completed
 * the WebSocket handshake (plain HTTP, failed handshake, eddy_response_close()) also get
 * close, unless a disconnect callback is set, in which case they get disconnect instead
 * (Swoole 4.7+). eddy_client_info() tells them apart through websocket_status.
 */
void eddy_on_close(eddy_server_t *srv, eddy_close_cb cb);
void eddy_on_disconnect(eddy_server_t *srv, eddy_close_cb cb);
/*
 * handshake: the application answers upgrade requests itself. It must call
 * eddy_response_status(resp, 101), set the headers (eddy_ws_accept_key() computes
 * Sec-WebSocket-Accept) and eddy_response_end() before returning; the connection is then
 * an established WebSocket, and open is NOT called (use eddy_defer() for that logic).
 * Any other answer, or none, fails the handshake and the connection is closed.
 */
void eddy_on_handshake(eddy_server_t *srv, eddy_request_cb cb);
/*
 * upgrade: accepts or refuses a WebSocket upgrade before eddy answers it, while eddy
 * keeps doing the handshake itself (unlike the handshake callback, which replaces it).
 * It runs on the connection's loop thread for each upgrade request that passed eddy's
 * checks (RFC 6455, then websocket_origins), before the 101; req is borrowed for the
 * call (eddy_request_get() etc. read the query, headers and cookies).
 * Return 0 to accept: the handshake completes and the open event follows as usual
 * (per-connection user data set here with eddy_conn_set_user_data() is kept). Return
 * anything else to refuse: the answer is the one eddy_upgrade_refuse() recorded, else
 * the returned status if it is 400-499 (with a short text body), else 403; then the
 * connection closes (close or disconnect follows, as for any failed handshake):
 *
 *     return token_ok(req) ? 0 : eddy_upgrade_refuse(req, 401, NULL, "bad token\n");
 *
 * Return eddy_upgrade_defer(req) to decide later (after asking another service, say):
 * the 101 or the refusal then waits for eddy_upgrade_accept() or eddy_upgrade_reject(),
 * from any thread (see eddy_upgrade_defer()).
 *
 * With a handshake callback as well, the upgrade callback runs first (after the Origin
 * check; eddy's RFC 6455 checks are then the handshake callback's business) and a
 * refusal means the handshake callback is not called (a deferred acceptance calls it
 * then). If the callback closes the connection itself (eddy_close()), nothing is
 * answered.
 */
void eddy_on_upgrade(eddy_server_t *srv, eddy_upgrade_cb cb);
/* request: plain HTTP requests. Without it they get 400 Bad Request. */
void eddy_on_request(eddy_server_t *srv, eddy_request_cb cb);
/*
 * drain: a connection whose output went over buffer_high_watermark has sent enough to be
 * back at buffer_low_watermark: pushing may resume (Swoole's onBufferEmpty).
 */
void eddy_on_drain(eddy_server_t *srv, eddy_drain_cb cb);

/* ---------------------------------------------------------------------------------------
 * Methods on connections. They return EDDY_ENOTFOUND for an id that is unknown or closed.
 * ------------------------------------------------------------------------------------- */

/*
 * Sends a WebSocket frame: data (copied, len bytes) with opcode EDDY_WS_OPCODE_* and flags
 * (EDDY_WS_FLAG_FIN for a whole message, the default in Swoole; without FIN it starts or
 * continues a fragmented message; EDDY_WS_FLAG_COMPRESS compresses when negotiated;
 * EDDY_WS_FLAG_VOLATILE drops a whole data message, EDDY_EDROPPED, when the connection is
 * not keeping up, see the flag: fragments and control frames ignore it). Sending a close frame
 * starts the closing handshake (prefer eddy_disconnect()). A fragmented message is one unit (RFC
 * 6455 5.4): from its first frame (TEXT or BINARY without FIN) to its last (CONTINUATION with FIN),
 * whole messages pushed or published to the connection wait, in order, and go out after it; control
 * frames go out at once. One fragmented message at a time per connection: a CONTINUATION with none
 * begun, or a second one begun before the first ended, gets EDDY_ESTATE (and a NOTICE log line).
 * Fragments are never compressed. Output is written at the end of the loop's current phase, batched
 * with everything else queued for the connection (one system call); at most 256 KiB of a
 * connection's output per loop iteration, so one large transfer does not hold up other connections.
 * Returns:
 *   0 (EDDY_OK)     sent: queued, and the connection keeps up;
 *   EDDY_QUEUED     queued under back-pressure: the connection's output is at or over
 *                   buffer_high_watermark (wait for the drain event before more);
 *   EDDY_EDROPPED   not sent: the connection is a slow consumer (its output is over
 *                   socket_buffer_size, or over socket_buffer_soft_limit for
 *                   socket_buffer_soft_seconds) and slow_consumer_policy dropped the message
 *                   or is closing the connection (logged with its id);
 *   EDDY_ENOTFOUND, EDDY_ESTATE if fd is not an established WebSocket (or a fragment is
 *   out of turn, above), EDDY_ETOOBIG if len exceeds package_max_length, EDDY_EINVAL for
 *   a bad opcode or an oversized or fragmented control frame.
 * Messages waiting behind a fragmented one count as queued output for back-pressure.
 * Called from a thread other than the connection's loop, the message is handed over and
 * the answer is 0 or EDDY_QUEUED (from the output size last seen); a drop or a fragment
 * out of turn is found later, on the loop, and is logged. Control frames are never dropped.
 */
int eddy_push(eddy_server_t *srv, eddy_fd_t fd, const void *data, size_t len, int opcode,
              int flags);

/* One whole WebSocket message of a multi-message unit (eddy_push_parts(),
 * eddy_publish_parts()): data (len bytes, borrowed for the call: copied or framed before
 * it returns) with opcode EDDY_WS_OPCODE_TEXT or EDDY_WS_OPCODE_BINARY. */
typedef struct eddy_part {
    const void *data;
    size_t len;
    int opcode;
} eddy_part_t;

/*
 * Sends nparts (1 to EDDY_PARTS_MAX) whole messages to one connection as one unit: they
 * reach the peer back to back, with nothing pushed or published from any thread in
 * between (control frames, which may come between any messages, aside). flags:
 * EDDY_WS_FLAG_COMPRESS (each part compressed when negotiated) and EDDY_WS_FLAG_VOLATILE;
 * FIN is implied. The unit is admitted, or dropped, whole: back-pressure counts the bytes
 * of all parts. Returns what eddy_push() returns (EDDY_EDROPPED also for a volatile unit
 * the connection was not ready for), and EDDY_EINVAL for nparts 0 or over EDDY_PARTS_MAX,
 * parts NULL, a part with another opcode or NULL data with len > 0; EDDY_ETOOBIG for a
 * part over package_max_length. Any thread, as eddy_push().
 */
#define EDDY_PARTS_MAX 64
int eddy_push_parts(eddy_server_t *srv, eddy_fd_t fd, const eddy_part_t *parts, size_t nparts,
                    int flags);

/* True if fd is a live connection (of any kind). */
bool eddy_exist(eddy_server_t *srv, eddy_fd_t fd);

/* True if fd is an established WebSocket (websocket_status ACTIVE). */
bool eddy_is_established(eddy_server_t *srv, eddy_fd_t fd);

/*
 * Starts the closing handshake: sends a close frame with code and reason (copied) and
 * closes the connection when the peer answers, or after websocket_close_timeout.
 * code may be any an endpoint may send (RFC 6455 7.4): 1000-1003, 1007-1014 or 3000-4999;
 * reason at most 123 bytes of valid UTF-8 (reason may be NULL). Returns 0, EDDY_EINVAL (bad
 * code or reason too long), EDDY_EUTF8 (reason is not valid UTF-8), EDDY_ENOTFOUND,
 * EDDY_ESTATE. When it refuses, nothing is sent and a NOTICE log line says why.
 */
int eddy_disconnect(eddy_server_t *srv, eddy_fd_t fd, int code, const char *reason);

/*
 * Closes the TCP connection after the bytes already queued are sent (Swoole's close()).
 * The close or disconnect callback runs later, on the loop. Returns 0 or EDDY_ENOTFOUND.
 */
int eddy_close(eddy_server_t *srv, eddy_fd_t fd);

/* Sends raw bytes (copied) on any connection, admitted as push admits messages. Returns 0,
 * EDDY_QUEUED, EDDY_EDROPPED or EDDY_ENOTFOUND. */
int eddy_send(eddy_server_t *srv, eddy_fd_t fd, const void *data, size_t len);

/*
 * Runs cb(srv, arg) on the loop thread that owns connection fd: at the end of the current
 * loop iteration when called there, else shortly after on that loop, in order with the
 * methods called for fd from the same thread, and before the loop reads what fd's peer
 * sent after the call. This is how work that belongs to a
 * connection's loop (ending a detached response, say) is handed there from another
 * thread. Once accepted (0), cb always runs, also when fd closes meanwhile (check
 * eddy_exist() in cb) and, if the server stopped first, at the next start or in
 * eddy_server_free(); arg is borrowed until then. Any thread. Returns 0, EDDY_ENOTFOUND
 * (no live connection has this id now: cb will not run), EDDY_EINVAL (cb NULL) or
 * EDDY_ENOMEM.
 */
int eddy_post(eddy_server_t *srv, eddy_fd_t fd, eddy_defer_cb cb, void *arg);

/* Fills *info for fd. Returns 0 or EDDY_ENOTFOUND. Also answers inside close callbacks. */
int eddy_client_info(eddy_server_t *srv, eddy_fd_t fd, eddy_client_info_t *info);

/*
 * Calls cb for every live connection in id order (Swoole's $server->connections). cb may
 * call any method, including eddy_close(). Returns the number of connections visited: 0,
 * with an error logged, if memory ran out (never a part of them).
 */
size_t eddy_connection_foreach(eddy_server_t *srv, eddy_foreach_cb cb, void *arg);

/* Number of live connections. */
size_t eddy_connection_count(eddy_server_t *srv);

/*
 * Counters and gauges of a server (Swoole's $server->stats(), for metrics). Counters
 * (_total) count from eddy_server_new() on, across runs (those of the loops of the current
 * or last run: with worker_num lowered between runs, the loops left out are not summed);
 * gauges are the present state.
 * Each event loop counts its own connections' events, so counting costs a plain add on
 * the loop that owns them (no lock, no locked instruction); a read sums the loops, so the
 * fields are not one snapshot: each is exact for a moment during the call.
 */
typedef struct eddy_stats {
    uint64_t connections;            /* gauge: live connections (accepted, not yet closed) */
    uint64_t websocket_connections;  /* gauge: established WebSocket sessions */
    uint64_t accepted_total;         /* connections accepted */
    uint64_t refused_total;          /* connections closed as soon as accepted: over max_connection,
                                      * or shed while out of file descriptors */
    uint64_t http_requests_total;    /* HTTP requests dispatched, WebSocket upgrades included */
    uint64_t websocket_opened_total; /* WebSocket handshakes completed */
    /* Upgrade requests refused: by eddy's checks (RFC 6455, websocket_origins), by the
     * upgrade callback, or by the handshake callback's answer. */
    uint64_t websocket_refused_total;
    uint64_t messages_received_total;    /* WebSocket data messages given to the message event */
    uint64_t messages_sent_total;        /* whole WebSocket data messages queued (push, publish) */
    uint64_t bytes_received_total;       /* bytes read from connections (TLS: decrypted) */
    uint64_t bytes_sent_total;           /* bytes written to them (TLS: before encryption) */
    uint64_t messages_dropped_total;     /* messages not sent to slow consumers (policy drop) */
    uint64_t slow_consumer_closes_total; /* connections closed as slow consumers (close) */
    /* Lines lost to failed writes (see Logging): of the error log (stderr or log_file,
     * eddy_log_write() included; lines logged off the loops count in the server's total
     * only) and of http_access_log. */
    uint64_t log_lines_lost_total;
    uint64_t access_log_lines_lost_total;
} eddy_stats_t;

/*
 * Fills *out with the figures of the whole server (loop -1) or of one event loop (0 to
 * worker_num - 1 of the current or last run: its connections are those it owns, its
 * accepted_total what its listening sockets accepted). Any thread, any time between
 * eddy_server_new() and eddy_server_free(). Returns 0, or EDDY_EINVAL (out NULL, or no
 * such loop).
 */
int eddy_server_stats(eddy_server_t *srv, int loop, eddy_stats_t *out);

/* Per-connection user data (borrowed pointer, never freed by eddy). */
int eddy_conn_set_user_data(eddy_server_t *srv, eddy_fd_t fd, void *user_data);
void *eddy_conn_user_data(eddy_server_t *srv, eddy_fd_t fd);

/* ---------------------------------------------------------------------------------------
 * Timers and deferred calls (run on the loop thread)
 * ------------------------------------------------------------------------------------- */

/* Timers run on the calling thread's loop, or on loop 0 when set from another thread. */

/* Calls cb once after ms milliseconds. Returns a timer id (> 0), or 0 on out-of-memory.
 * From another thread the timer is set up on its loop later: out-of-memory there is
 * logged, and the id then names no timer. */
uint64_t eddy_timer_after(eddy_server_t *srv, uint64_t ms, eddy_timer_cb cb, void *arg);
/* Calls cb every ms milliseconds (ms > 0) until cleared. Returns a timer id or 0. */
uint64_t eddy_timer_tick(eddy_server_t *srv, uint64_t ms, eddy_timer_cb cb, void *arg);
/* Cancels a timer; a timer may clear itself. Returns true if it was pending (from another
 * loop's or the application's thread: if the cancellation was handed to its loop). */
bool eddy_timer_clear(eddy_server_t *srv, uint64_t timer_id);
/* Calls cb at the end of the current loop iteration (on loop 0, soon, when called from
 * another thread). Returns 0 or EDDY_ENOMEM; a call accepted with 0 always runs. */
int eddy_defer(eddy_server_t *srv, eddy_defer_cb cb, void *arg);

/* ---------------------------------------------------------------------------------------
 * Watches: the application's own file descriptors on a loop (loop thread only)
 *
 * A watch calls cb on its loop's thread while fd is ready for what it watches, so that a
 * client library with an event interface (libcurl's multi socket API, hiredis' async
 * context) runs on eddy's loops instead of a thread of its own. Readiness is
 * level-triggered: cb is called again at the next iteration while data waits unread or the
 * socket stays writable (as both libraries expect), so watch WRITE only while there is
 * something to write. Errors and hang-ups are reported as the events watched (read() or
 * write() then says which). The fd stays the application's: eddy never reads, writes or
 * closes it; free the watch before closing the fd. One watch per fd and loop.
 *
 * A watch belongs to the loop that made it and is used (updated, freed) only on that
 * loop's thread; to watch on a given loop, make the watch from a callback that runs there
 * (a connection's callbacks run on its loop; eddy_loop_index() tells which loop that is).
 * While no loop runs (the shutdown callback, after eddy_server_start() returned) the
 * thread that started the server may update and free any watch. Watches outlive a stop:
 * they are not called while their loop does not run, and are called again after the next
 * eddy_server_start(); eddy_server_free() frees the watches still live (cb not called, fds
 * not closed).
 * ------------------------------------------------------------------------------------- */

enum { EDDY_WATCH_READ = 1, EDDY_WATCH_WRITE = 2 };
typedef struct eddy_watch eddy_watch_t;
/* events: the EDDY_WATCH_* bits that fired (only bits being watched). w and fd are those
 * given to eddy_watch_new(); cb may update or free w, and make or free other watches. */
typedef void (*eddy_watch_cb)(eddy_watch_t *w, int fd, int events, void *arg);

/* Watches fd (not owned) for events (EDDY_WATCH_READ | EDDY_WATCH_WRITE; 0 watches nothing
 * until eddy_watch_update()) on the calling thread's loop; arg is passed to cb. Returns the
 * watch, or NULL when not called on one of srv's loop threads, on a bad argument, when
 * memory is short or the kernel refuses the fd (already watched on this loop, not
 * pollable: logged at warning). */
eddy_watch_t *eddy_watch_new(eddy_server_t *srv, int fd, int events, eddy_watch_cb cb, void *arg);
/* Changes what w watches (0: nothing, the watch stays). Returns 0, EDDY_EINVAL or a
 * negative errno from the kernel. */
int eddy_watch_update(eddy_watch_t *w, int events);
/* Stops and frees w (NULL is ignored), also from its own callback or while events for it
 * are pending in the same iteration: cb is not called again. Does not close the fd. */
void eddy_watch_free(eddy_watch_t *w);
/* The index (0 to worker_num - 1) of the loop running the calling thread, or -1 on any
 * other thread: a key for per-loop state (watches, client handles) kept by the
 * application. Any thread. */
int eddy_loop_index(eddy_server_t *srv);

/* ---------------------------------------------------------------------------------------
 * Pub/sub rooms and broadcast (any thread)
 *
 * A published message is framed once; every recipient's output queue shares those bytes,
 * across loops. With compression it is compressed once per window size, for subscribers
 * that agreed to no server context takeover; subscribers whose compression keeps context
 * receive it uncompressed. Messages from one publisher reach each subscriber in order, and
 * before the answer to any request its client sent after the publication was made.
 * Back-pressure applies to every recipient as to push (a slow consumer is dropped from
 * the message or closed, by slow_consumer_policy). Subscriptions end when the connection
 * closes.
 * ------------------------------------------------------------------------------------- */

/* Subscribes an established WebSocket to topic (copied); subscribing twice is one
 * subscription. The subscription receives the publications made after this call, from
 * any thread, and none made before it (also those its loop has not delivered yet), so a
 * caller that sent to fd directly until now sends each message once. Returns 0,
 * EDDY_ENOTFOUND, EDDY_ESTATE (not an established WebSocket), EDDY_EINVAL, EDDY_ENOMEM. */
int eddy_subscribe(eddy_server_t *srv, eddy_fd_t fd, const char *topic);
/* Ends a subscription (0 also if there was none). */
int eddy_unsubscribe(eddy_server_t *srv, eddy_fd_t fd, const char *topic);
/* Sends a text or binary message (copied) to every subscriber of topic; flags may hold
 * EDDY_WS_FLAG_COMPRESS and EDDY_WS_FLAG_VOLATILE (checked per subscriber). Returns the number of
 * subscribers at the time (>= 0, a count: 1 means one subscriber, never EDDY_QUEUED; an unsubscribe
 * made from another thread counts once its loop applied it), or EDDY_EINVAL, EDDY_ETOOBIG (over
 * package_max_length), EDDY_ENOMEM. Back-pressure on a subscriber is not reported here
 * (see above). A subscription made before the publish, from the same thread, always
 * receives it. */
int eddy_publish(eddy_server_t *srv, const char *topic, const void *data, size_t len, int opcode,
                 int flags);
/* Sends a text or binary message (copied) to every established WebSocket, on every loop;
 * flags as publish. Returns 0 once the message is handed to the loops (it does not count
 * the recipients: see eddy_connection_count()), or EDDY_EINVAL, EDDY_ETOOBIG,
 * EDDY_ENOMEM as publish. */
int eddy_broadcast(eddy_server_t *srv, const void *data, size_t len, int opcode, int flags);
/* Subscribers of topic, on all loops. */
size_t eddy_topic_subscribers(eddy_server_t *srv, const char *topic);

/* Whom eddy_publish_parts() sends to. Every pointer is borrowed for the call (the names
 * are copied). */
typedef struct eddy_publish_spec {
    const char *const *topics; /* the union of their subscribers, each connection once */
    size_t ntopics;
    const char *const *except_topics; /* minus the subscribers of any of these */
    size_t nexcept;
    eddy_fd_t except_fd; /* minus this connection (0: none) */
    int flags;           /* EDDY_WS_FLAG_COMPRESS, EDDY_WS_FLAG_VOLATILE */
} eddy_publish_spec_t;

/*
 * Publishes nparts (1 to EDDY_PARTS_MAX) whole messages as one unit to the subscribers of
 * any of spec->topics, each connection once even if it is subscribed to several, except
 * the subscribers of any of spec->except_topics and the connection spec->except_fd. Every
 * recipient receives the parts back to back, with nothing pushed or published to it in
 * between, and admits (or drops: back-pressure, EDDY_WS_FLAG_VOLATILE) the unit whole.
 * Each part is framed once and shared by every recipient on every loop, as eddy_publish()
 * (and compressed once per window size with EDDY_WS_FLAG_COMPRESS). Units from one
 * publisher reach each recipient in order, also relative to its eddy_publish() calls.
 * Returns the sum of the subscriber counts of the (distinct) topics at the time: 0 means
 * no topic had a subscriber and nothing was sent; otherwise it is an upper bound of the
 * recipients, since a connection in several topics, the except-topics' subscribers and
 * except_fd are subtracted only where they live, on their loops. Errors: EDDY_EINVAL
 * (spec, parts or a topic NULL, ntopics 0, nparts 0 or over EDDY_PARTS_MAX, a part not
 * TEXT or BINARY), EDDY_ETOOBIG (a part over package_max_length), EDDY_ENOMEM. Any thread.
 */
int eddy_publish_parts(eddy_server_t *srv, const eddy_publish_spec_t *spec,
                       const eddy_part_t *parts, size_t nparts);

/* ---------------------------------------------------------------------------------------
 * Task workers (Swoole's task/finish): blocking work off the loop threads
 * ------------------------------------------------------------------------------------- */

/* Runs on a task worker thread; its return value is handed to the finish callback. */
typedef void *(*eddy_task_fn)(void *arg);
/* Runs on the loop that called eddy_task() (loop 0 if another thread did). */
typedef void (*eddy_task_finish_cb)(eddy_server_t *srv, uint64_t task_id, void *result, void *arg);

/*
 * Queues fn(arg) for one of task_worker_num threads; finish (may be NULL) then receives
 * its result. Tasks still queued when the server stops are run, and finished, before
 * eddy_server_start() returns. Returns the task id (> 0), or 0 if there are no task
 * workers (task_worker_num is 0), the server is stopping, or memory ran out. arg is
 * borrowed until finish runs.
 */
uint64_t eddy_task(eddy_server_t *srv, eddy_task_fn fn, eddy_task_finish_cb finish, void *arg);

/* ---------------------------------------------------------------------------------------
 * HTTP request (borrowed; valid during the callback that received it)
 * ------------------------------------------------------------------------------------- */

/* The session id of the connection the request arrived on. */
eddy_fd_t eddy_request_fd(const eddy_request_t *req);
/* The server that received the request. */
eddy_server_t *eddy_request_server(const eddy_request_t *req);
/* Method ("GET"), the path without the query string ("/chat"), and the raw query string
 * without '?' ("" if none). NUL-terminated. */
const char *eddy_request_method(const eddy_request_t *req);
const char *eddy_request_path(const eddy_request_t *req);
const char *eddy_request_query(const eddy_request_t *req);
/* The request target as sent ("/chat?room=1"). */
const char *eddy_request_uri(const eddy_request_t *req);
/* HTTP minor version: 0 or 1. */
int eddy_request_http_minor(const eddy_request_t *req);
/* Query parameter by name, percent-decoded, or NULL (Swoole's $request->get[name]; a
 * repeated name gives its last value, as there). The string lives until the callback
 * returns. */
const char *eddy_request_get(const eddy_request_t *req, const char *name);
/* Header value by case-insensitive name (the first one), or NULL. */
const char *eddy_request_header(const eddy_request_t *req, const char *name);
/* Number of headers, and the i-th name and value (NUL-terminated). */
size_t eddy_request_header_count(const eddy_request_t *req);
int eddy_request_header_at(const eddy_request_t *req, size_t i, const char **name,
                           const char **value);
/* Cookie value by name, percent-decoded, or NULL (a repeated name gives the first, as
 * PHP's $_COOKIE). The string lives until the callback returns. */
const char *eddy_request_cookie(const eddy_request_t *req, const char *name);
/* The request body (decoded if chunked) and its length; "" and 0 if none. */
const char *eddy_request_body(const eddy_request_t *req, size_t *len);
/* Remote address and port of the client. */
const char *eddy_request_remote_ip(const eddy_request_t *req);
int eddy_request_remote_port(const eddy_request_t *req);

/*
 * Records how to refuse the upgrade req, from inside the upgrade callback (and only
 * there): status 400-499, headers (NULL, or a NULL-terminated array of name and value
 * pairs: (const char *[]){"WWW-Authenticate", "Bearer", NULL}) and body (NULL for
 * none; NUL-terminated text), all copied. eddy adds Server (unless given), Date,
 * Content-Type text/plain (unless given), Content-Length and Connection: close.
 * Returns status, so that the callback can return it, or EDDY_EINVAL (status out of
 * range, a name that is not a token, a value with CR or LF, a name eddy manages:
 * Content-Length, Transfer-Encoding, Connection, Date; or a name without a value),
 * EDDY_ESTATE (not called from the upgrade callback for req) or EDDY_ENOMEM: then
 * nothing is recorded, and a callback returning that value still refuses (with 403), so
 * a mistake never turns into an accepted upgrade. A later call replaces the answer.
 */
int eddy_upgrade_refuse(eddy_request_t *req, int status, const char *const *headers,
                        const char *body);

/*
 * Defers the answer to the upgrade req, from inside the upgrade callback (and only
 * there), which returns what this returns: EDDY_PENDING. eddy then keeps the request
 * (a copy) and answers nothing until eddy_upgrade_accept() or eddy_upgrade_reject() is
 * called for eddy_request_fd(req), from any thread. Meanwhile the connection reads no
 * input (bytes the client sends early wait in the socket, pushed back by TCP flow
 * control, and go to the WebSocket session once accepted); a client that hangs up is
 * noticed at once, and the connection closes (close or disconnect follows, and a later
 * answer is ignored); an upgrade still unanswered after websocket_upgrade_timeout
 * seconds (see eddy_server_set()) is refused with 503 and the connection closed.
 * Returns EDDY_PENDING, or EDDY_ESTATE (not called from the upgrade callback for req),
 * EDDY_ENOMEM: a callback returning those refuses (with 403), as any value other than 0
 * and EDDY_PENDING. An upgrade callback that returns EDDY_PENDING without this call
 * refuses with 403 too.
 */
int eddy_upgrade_defer(eddy_request_t *req);

/*
 * Answers a deferred upgrade (eddy_upgrade_defer()) of connection fd with 101 Switching
 * Protocols: the handshake completes as if the upgrade callback had returned 0 (the
 * handshake callback runs now if one is set; else the open callback follows, with the
 * request as it arrived, valid during the call). headers: NULL, or a NULL-terminated
 * array of name and value pairs added to the 101 (copied), e.g. Set-Cookie, or
 * Sec-WebSocket-Protocol, which then replaces the one websocket_subprotocol would
 * choose; not allowed: Upgrade, Connection, Sec-WebSocket-Accept, Sec-WebSocket-Version,
 * Sec-WebSocket-Extensions, Content-Length, Transfer-Encoding, Date, Server. Per-connection
 * user data set with eddy_conn_set_user_data() before this call is there in open.
 * Any thread, and also from inside the upgrade callback: the answer is handed to fd's
 * loop and acts there shortly after (at the end of the current iteration at the
 * earliest). Exactly once: only the first answer (accept, reject, or the timeout) to
 * reach a pending upgrade acts; a later one, or one for a connection that hung up or
 * never deferred, is ignored (logged at debug level) and frees what it copied.
 * Returns 0 (handed over; whether it acted shows in the open or close callback),
 * EDDY_ENOTFOUND (no live connection has this id now), EDDY_EINVAL (a header not
 * allowed, not a token, with CR or LF, or without a value) or EDDY_ENOMEM.
 */
int eddy_upgrade_accept(eddy_server_t *srv, eddy_fd_t fd, const char *const *headers);

/*
 * Answers a deferred upgrade of connection fd with a refusal, as eddy_upgrade_refuse()
 * does from inside the callback: status 400-599, headers and body (NUL-terminated text,
 * NULL for none) copied, the same headers allowed and added; then the connection closes.
 * Any thread; exactly once, as eddy_upgrade_accept(). Returns 0 (handed over),
 * EDDY_ENOTFOUND, EDDY_EINVAL (status out of range, a bad header) or EDDY_ENOMEM.
 */
int eddy_upgrade_reject(eddy_server_t *srv, eddy_fd_t fd, int status, const char *const *headers,
                        const char *body);

/* ---------------------------------------------------------------------------------------
 * HTTP response. A response must be finished by eddy_response_end() or
 * eddy_response_close() exactly once. If the request callback returns without doing
 * either and without eddy_response_detach(), eddy answers 500 Internal Server Error with
 * an empty body, dropping any status and headers that were set (they were meant for a
 * body that never came), and logs a warning; if eddy_response_write() already sent the
 * head, eddy just ends the chunked body.
 * ------------------------------------------------------------------------------------- */

/* Sets the status code (default 200) and optional reason phrase (copied; NULL: the
 * standard one). Returns 0, EDDY_EINVAL (code outside 100-599), EDDY_ESTATE (headers sent). */
int eddy_response_status(eddy_response_t *resp, int code, const char *reason);
/* Adds a header (copied). Content-Length, Transfer-Encoding, Date and Connection are
 * managed by eddy and cannot be set. A response without Content-Type gets
 * "Content-Type: text/html"; name "Content-Type" with value NULL sends none at all (a bare
 * status, e.g. the empty 400 of an Engine.IO server). Returns 0, EDDY_EINVAL (CR/LF,
 * reserved name, NULL value for another name), EDDY_ESTATE (headers already sent). */
int eddy_response_header(eddy_response_t *resp, const char *name, const char *value);
/* Sends a chunk of a chunked response (copied), sending the headers first. Returns 0,
 * EDDY_ESTATE after end, EDDY_ECLOSED if the connection is gone (the response is still
 * valid then, and still owes its eddy_response_end() or eddy_response_close()). */
int eddy_response_write(eddy_response_t *resp, const void *data, size_t len);
/* Finishes the response with an optional last piece of body (copied; may be NULL/0).
 * The response object is invalid afterwards. Returns 0, EDDY_ECLOSED, or EDDY_ENOMEM
 * when the response could not be queued (the connection is then closed rather than
 * left waiting for it); the object is released either way. */
int eddy_response_end(eddy_response_t *resp, const void *data, size_t len);
/* Drops the connection without an answer (Swoole's $response->close()); the object is
 * invalid afterwards. */
void eddy_response_close(eddy_response_t *resp);
/* Keeps the response open after the request callback returns, to be ended later on the
 * loop thread (from a timer or a deferred call). The connection reads no further
 * requests meanwhile, but a client that hangs up (or shuts down its sending side) is
 * noticed at once: the connection closes, with the close callback, and writes to the
 * response return EDDY_ECLOSED; it must still be ended or closed. The request object is
 * still invalid after the callback returns. */
void eddy_response_detach(eddy_response_t *resp);
/* The session id the response belongs to. */
eddy_fd_t eddy_response_fd(const eddy_response_t *resp);

/* ---------------------------------------------------------------------------------------
 * WebSocket frame codec, usable without a server (Swoole's pack/unpack)
 * ------------------------------------------------------------------------------------- */

/*
 * Encodes one frame into out (capacity cap): opcode EDDY_WS_OPCODE_*, flags EDDY_WS_FLAG_*
 * (FIN; RSV1-3 copied to the header; MASK masks the payload with mask_key, the client
 * role; mask_key is ignored without MASK). Returns the frame size. If cap is too small,
 * nothing is written and the size needed is returned, so call with cap 0 to size a
 * buffer. Returns EDDY_EINVAL for an invalid opcode or a control frame that is longer
 * than 125 bytes or not FIN.
 */
ssize_t eddy_ws_pack(void *out, size_t cap, const void *data, size_t len, int opcode, int flags,
                     const uint8_t mask_key[4]);

/*
 * Decodes one frame from buf (a complete frame must be present). The payload is unmasked
 * in place; frame->data points into buf (not NUL-terminated), frame->fd is 0, and for a
 * close frame code/reason are filled in. Returns the number of bytes the frame occupies,
 * EDDY_AGAIN when buf holds only part of a frame, EDDY_EPROTO for a malformed header
 * (reserved opcode, oversized or fragmented control frame, 64-bit length with the top
 * bit set, close payload of 1 byte).
 */
ssize_t eddy_ws_unpack(void *buf, size_t len, eddy_frame_t *frame);

/*
 * Computes Sec-WebSocket-Accept for a Sec-WebSocket-Key: out receives EDDY_WS_ACCEPT_LEN
 * characters and a NUL. Returns 0, or EDDY_EINVAL if key does not decode to 16 bytes.
 */
int eddy_ws_accept_key(const char *key, size_t key_len, char out[EDDY_WS_ACCEPT_LEN + 1]);

/*
 * Base64 (RFC 4648 4) and base64url (RFC 4648 5). Pure functions: no allocation, no
 * state, thread-safe. flags combine the values below; 0 is the strict standard form
 * (alphabet '+' '/', '=' padding required, unused bits zero), as the handshake wants.
 */
enum {
    EDDY_BASE64_URL = 1 << 0,          /* alphabet '-' '_' for 62 and 63 (RFC 4648 5) */
    EDDY_BASE64_ANY_ALPHABET = 1 << 1, /* decode: accept both alphabets, even mixed */
    EDDY_BASE64_NOPAD = 1 << 2,        /* encode: write no '='; decode: refuse '=' */
    EDDY_BASE64_PAD_OPTIONAL = 1 << 3, /* decode: '=' padding may be left out */
    /* decode: accept nonzero unused bits in a short last group (as Node's Buffer.from
     * does); by default they are refused, so that each byte string has one encoding. */
    EDDY_BASE64_LAX_BITS = 1 << 4,
};

/* Length of the text eddy_base64_encode() writes for n bytes with these flags. */
size_t eddy_base64_encoded_len(size_t n, unsigned flags);
/* A bound on the bytes that n characters decode to (n / 4 * 3 + 2). */
size_t eddy_base64_decoded_max(size_t n);
/* Writes the text of in[0..n) to out, which must hold eddy_base64_encoded_len(n, flags)
 * bytes; no NUL is written. Returns that length. Only EDDY_BASE64_URL and
 * EDDY_BASE64_NOPAD matter here. */
size_t eddy_base64_encode(char *out, const void *in, size_t n, unsigned flags);
/*
 * Decodes in[0..n) (no whitespace, no NUL needed) into out, of capacity cap; out may be
 * in itself (decoding in place), or NULL to only validate (cap is then ignored). Returns
 * the decoded length; EDDY_EINVAL for a character outside the alphabet (whitespace and
 * '=' not at the end included), a length of 4k+1 digits, missing or refused padding, or
 * nonzero unused bits (unless EDDY_BASE64_LAX_BITS); EDDY_ETOOBIG if the result is longer
 * than cap (nothing is written then). After an error out may hold part of the result.
 */
ssize_t eddy_base64_decode(void *out, size_t cap, const char *in, size_t n, unsigned flags);
/* The 6-bit value of the digit c in the alphabet the flags name, or -1. */
int eddy_base64_value(char c, unsigned flags);

/* True if s[0..len) is valid UTF-8 (RFC 3629: no overlongs, surrogates or > U+10FFFF). */
bool eddy_utf8_valid(const void *s, size_t len);

/* ---------------------------------------------------------------------------------------
 * WebSocket client
 *
 * A client connects to one ws:// or wss:// URL and keeps at most one connection at a
 * time, reconnecting if asked to. It speaks with the same WebSocket session, codecs, TLS
 * and permessage-deflate code as the server, and is as strict: a masked frame from the
 * server, reserved bits that were not negotiated, invalid UTF-8, a message over
 * package_max_length or a bad close code fail the connection with the close code RFC 6455
 * asks for (1002, 1007, 1009, ...), reported by the error event.
 *
 * Loops: a client runs on one event loop. Created with a server (eddy_client_new(srv,
 * ...)), it runs on that server's loops: on the calling loop when created from one of its
 * callbacks (as Swoole's coroutine client inside a server), else on loop 0; its connection
 * is then a session of that server (an id eddy_client_id() returns, reached by the
 * server's methods except pub/sub, whose shared frames are unmasked, ended by its
 * shutdown, checked by its heartbeat) and the server's
 * settings apply to it (package_max_length, socket_buffer_size and the watermarks,
 * websocket_close_timeout, compression level and memory). Created with srv NULL, the
 * client is stand-alone: every stand-alone client of the process shares one loop that
 * eddy starts on a thread of its own with the first of them (a server with no listener
 * and the default settings: package_max_length 2 MiB, ...) and keeps for the life of the
 * process.
 *
 * Threads: the client's callbacks run on its loop. eddy_client_connect(),
 * eddy_client_push(), eddy_client_ping(), eddy_client_disconnect() and eddy_client_free()
 * may be called from any thread, callbacks included; they act on the loop, in the order
 * called. Name resolution runs on a thread of its own and connect() is non-blocking:
 * nothing the client does blocks a loop.
 * ------------------------------------------------------------------------------------- */

typedef struct eddy_client eddy_client_t;

/* A response header: name and value, NUL-terminated, borrowed. */
typedef struct eddy_header {
    const char *name;
    const char *value;
} eddy_header_t;

/* open: the server answered 101 and the handshake checked out. Borrowed. */
typedef struct eddy_client_open {
    int status;                   /* 101 */
    const char *subprotocol;      /* the one the server chose, or NULL */
    const char *extensions;       /* Sec-WebSocket-Extensions as answered, or NULL */
    const eddy_header_t *headers; /* every response header, in order */
    size_t num_headers;
} eddy_client_open_t;

/* What failed (eddy_client_error_t.kind). */
enum eddy_client_error_kind {
    EDDY_CLIENT_ERR_URL = 1,     /* the URL cannot be used */
    EDDY_CLIENT_ERR_RESOLVE,     /* name resolution failed (code: EAI_* value) */
    EDDY_CLIENT_ERR_CONNECT,     /* TCP connect failed (code: errno) */
    EDDY_CLIENT_ERR_TLS,         /* TLS handshake failed */
    EDDY_CLIENT_ERR_TLS_VERIFY,  /* the server's certificate did not verify (code: X509_V_ERR_*) */
    EDDY_CLIENT_ERR_TIMEOUT,     /* connect_timeout passed before the handshake ended */
    EDDY_CLIENT_ERR_HTTP_STATUS, /* an answer other than 101 (code: status; body) */
    EDDY_CLIENT_ERR_HANDSHAKE,   /* a 101 that breaks RFC 6455 4.1 (bad Sec-WebSocket-Accept,
                                  * Upgrade, subprotocol or extension not offered) */
    EDDY_CLIENT_ERR_PROTOCOL,    /* the server broke RFC 6455 (code: the close code sent) */
    EDDY_CLIENT_ERR_HEARTBEAT,   /* no pong nor any frame within ping_timeout */
    EDDY_CLIENT_ERR_CLOSED,      /* the connection ended during the handshake */
    EDDY_CLIENT_ERR_NOMEM,       /* out of memory */
};

/* error: what failed, borrowed. */
typedef struct eddy_client_error {
    int kind;            /* enum eddy_client_error_kind */
    int code;            /* see the kinds; 0 when there is none */
    const char *message; /* a description for humans */
    const char *body;    /* EDDY_CLIENT_ERR_HTTP_STATUS: the response body received with the
                          * head (up to 64 KiB), NUL-terminated; else NULL */
    size_t body_len;
} eddy_client_error_t;

/* Why a message that was pushed while disconnected was not sent (eddy_client_dropped_cb). */
enum eddy_client_drop_reason {
    EDDY_CLIENT_DROP_OVERFLOW = 1, /* queue full, queue_overflow DROP_OLDEST: it was the oldest */
    EDDY_CLIENT_DROP_EXPIRED,      /* older than queue_max_age */
    EDDY_CLIENT_DROP_CLOSED,       /* the client stopped (no more reconnects, or freed) */
};

/* queue_overflow: what a push does when the offline queue is full. */
enum eddy_client_queue_overflow {
    EDDY_CLIENT_QUEUE_REFUSE = 0,  /* the push returns EDDY_EDROPPED */
    EDDY_CLIENT_QUEUE_DROP_OLDEST, /* the oldest messages go (dropped callback) */
};

typedef void (*eddy_client_open_cb)(eddy_client_t *client, const eddy_client_open_t *open,
                                    void *user_data);
/* message: a whole message (fragments reassembled), as the server's message callback. */
typedef void (*eddy_client_message_cb)(eddy_client_t *client, const eddy_frame_t *frame,
                                       void *user_data);
/* close: an open connection ended. code: the server's close code (1005 when it sent none),
 * the code we sent when we failed the connection, or 1006 when it ended without a close
 * frame; reason borrowed, NUL-terminated. clean: the closing handshake completed (both
 * close frames). A reconnecting event may follow. */
typedef void (*eddy_client_close_cb)(eddy_client_t *client, int code, const char *reason,
                                     bool clean, void *user_data);
typedef void (*eddy_client_error_cb)(eddy_client_t *client, const eddy_client_error_t *error,
                                     void *user_data);
/* reconnecting: attempt (1, 2, ...) starts after delay seconds. */
typedef void (*eddy_client_reconnecting_cb)(eddy_client_t *client, int attempt, double delay,
                                            void *user_data);
/* drain: the connection's output, which went over buffer_high_watermark (a push answered
 * EDDY_QUEUED), is back at buffer_low_watermark: pushing may resume. */
typedef void (*eddy_client_drain_cb)(eddy_client_t *client, void *user_data);
/* stopped: the client has no connection and will not reconnect (after a disconnect, a
 * close code that ends reconnection, reconnect_max_attempts, or a failure without
 * reconnect); eddy_client_connect() may start it again. */
typedef void (*eddy_client_stopped_cb)(eddy_client_t *client, void *user_data);
/* dropped: a queued message will not be sent (data borrowed). */
typedef void (*eddy_client_dropped_cb)(eddy_client_t *client, const void *data, size_t len,
                                       int opcode, int reason, void *user_data);

/*
 * Client options. Initialise with eddy_client_options_init() (the defaults in brackets),
 * then set what you need. Strings and arrays are copied by eddy_client_new().
 */
typedef struct eddy_client_options {
    const char *url;            /* ws://host[:port][/path][?query] or wss://...; host a
                                 * name, an IPv4 literal or an [IPv6] literal. Required */
    const char *const *headers; /* extra request headers "Name: value", NULL-terminated
                                 * array [NULL] */
    const char *origin;         /* Origin header [none] */
    const char *subprotocols;   /* offered in Sec-WebSocket-Protocol: "chat, v2.chat" [none] */
    bool compression;           /* offer permessage-deflate [false]; inflated messages obey
                                 * package_max_length as on the server */
    double connect_timeout;     /* seconds from connect start to the 101 [10] */
    /* TLS (wss://): SNI and verification of the certificate chain and the host name
     * against the system's store are on by default. */
    const char *tls_ca_file;   /* PEM CAs to trust instead of the system store [none] */
    const char *tls_cert_file; /* client certificate (PEM) [none] */
    const char *tls_key_file;  /* its key (PEM) [none] */
    bool tls_insecure;         /* accept any certificate: for tests only [false] */
    /* Reconnection with exponential backoff and jitter: attempt n (from 0) waits
     * d = min(max, min * factor^n), less a random part of up to jitter * d (jitter 1:
     * "full jitter", uniform in (0, d]). socket.io-client: min 1, max 5, factor 2, jitter
     * 0.5; centrifuge-js: min 0.5, max 20, full jitter: eddy takes centrifuge-js's. */
    bool reconnect;               /* [false] */
    double reconnect_delay_min;   /* seconds [0.5] */
    double reconnect_delay_max;   /* seconds [20] */
    double reconnect_factor;      /* >= 1 [2] */
    double reconnect_jitter;      /* 0-1 [1] */
    int reconnect_max_attempts;   /* attempts after a loss before giving up, 0: no limit [0] */
    double reconnect_reset_after; /* seconds a connection must stay up for the attempt
                                   * counter to start again from 0 [5] */
    /* Close codes from the server that end reconnection: a comma-separated list of codes
     * and ranges. Every other code (and a loss without close frame, 1006) reconnects.
     * Default ["1000,1008,1009,3500-3999,4000-4099,4500-4999"]: normal closure, policy
     * violation, message too big, and the "do not come back" ranges of centrifuge-js and
     * pusher-js; 1001, 1006, 1011, 1012, 1013 and 4100-4499 reconnect. */
    const char *reconnect_stop_codes;
    /* Heartbeat: a ping every ping_interval seconds; with no pong nor any other input
     * within ping_timeout of it the connection is dead (error EDDY_CLIENT_ERR_HEARTBEAT,
     * close 1006) and reconnects if reconnect is on. */
    double ping_interval; /* seconds, 0: off [0] */
    double ping_timeout;  /* seconds, at most 604800 (7 days) [10] */
    /* Offline queue (with reconnect): data messages pushed while not connected wait, in
     * order, and go out first after the next open. Bounds: */
    size_t queue_max_messages; /* [1000]; 0: no queue (pushes get EDDY_ESTATE) */
    size_t queue_max_bytes;    /* [1048576] */
    double queue_max_age;      /* seconds, 0: no limit [60]; older ones are dropped */
    int queue_overflow;        /* enum eddy_client_queue_overflow [REFUSE] */
    /* Events (each may be NULL) and their user data. */
    eddy_client_open_cb on_open;
    eddy_client_message_cb on_message;
    eddy_client_close_cb on_close;
    eddy_client_error_cb on_error;
    eddy_client_reconnecting_cb on_reconnecting;
    eddy_client_dropped_cb on_dropped;
    eddy_client_stopped_cb on_stopped;
    eddy_client_drain_cb on_drain;
    void *user_data;
} eddy_client_options_t;

/* Fills *opts with the defaults. */
void eddy_client_options_init(eddy_client_options_t *opts);

/*
 * Creates a client (not yet connected) on srv's loops, or stand-alone with srv NULL (see
 * above). srv must have been started (or be starting: called from its start callback) and
 * must outlive the client, and the last name resolution the client started (a lookup
 * cannot be cancelled: its answer is handed to the loop when it comes). Returns NULL on
 * out-of-memory, a URL that cannot be parsed, a bad option (logged on stderr), or TLS set-up
 * failure (an unreadable CA, certificate or key file).
 */
eddy_client_t *eddy_client_new(eddy_server_t *srv, const eddy_client_options_t *opts);

/* Starts connecting (resolution, TCP, TLS, handshake) on the client's loop; the open or
 * error event tells how it went. A client already connecting, connected or waiting to
 * reconnect ignores it. Returns 0 or EDDY_ENOMEM. */
int eddy_client_connect(eddy_client_t *client);

/*
 * Sends a message or frame, as eddy_push() on the server: opcode, flags (FIN, COMPRESS;
 * without FIN a fragmented message, sent as one unit), data copied; the answers are
 * eddy_push()'s (0, EDDY_QUEUED under back-pressure: wait for the drain event,
 * EDDY_EDROPPED, EDDY_ETOOBIG, EDDY_EINVAL). While not connected, with reconnect on and an offline
 * queue, a whole data message is queued (EDDY_QUEUED) or, the queue being full, refused
 * (EDDY_EDROPPED) or makes room by dropping the oldest (dropped callback); anything else gets
 * EDDY_ESTATE.
 */
int eddy_client_push(eddy_client_t *client, const void *data, size_t len, int opcode, int flags);

/* Sends a ping (payload copied, at most 125 bytes). Returns 0, EDDY_EINVAL, EDDY_ESTATE. */
int eddy_client_ping(eddy_client_t *client, const void *data, size_t len);

/*
 * Closes: sends a close frame with code (1000, 1001 or 3000-4999) and reason (copied, at
 * most 123 bytes of UTF-8, may be NULL), waits for the server's (websocket_close_timeout)
 * and stops reconnecting; the close event follows. Also cancels a connection attempt or
 * a wait to reconnect. Returns 0, EDDY_EINVAL or EDDY_EUTF8.
 */
int eddy_client_disconnect(eddy_client_t *client, int code, const char *reason);

/* The session id of the current connection on the client's server (0 when none). */
eddy_fd_t eddy_client_id(const eddy_client_t *client);

/*
 * Frees the client: its connection is aborted and messages still queued are dropped, on
 * its loop, shortly after; no callback runs from then on (a callback already running on
 * another thread finishes). Any thread, a callback of the client included; the client
 * must not be used after this call. For a stand-alone client called from outside its loop
 * it returns once the loop let go of the client (so a program may exit right after).
 */
void eddy_client_free(eddy_client_t *client);

#if defined(__GNUC__) && __GNUC__ >= 4
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif

#endif /* EDDY_H */

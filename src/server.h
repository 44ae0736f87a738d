/* SPDX-License-Identifier: MIT */
/*
 * The server (server.c): listeners, accept, the methods of eddy.h, heartbeat, shutdown.
 */
#ifndef EDDY_SERVER_H
#define EDDY_SERVER_H

#include <stdatomic.h>
#include <stdbool.h>

#include "log.h"
#include "loop.h"
#include "pubsub.h"
#include "registry.h"
#include "settings.h"
#include "task.h"

typedef struct eddy__listener eddy__listener_t;
struct ssl_ctx_st;

struct eddy__listener {
    eddy_server_t *srv;
    char *host;
    int port;  /* as configured (0: any) */
    int flags; /* EDDY_LISTEN_* */
    int bound_port;
    /* A TLS listener's context: new connections take the one published here;
     * eddy_server_reload_tls() replaces it while the server runs (server.c). */
    _Atomic(struct ssl_ctx_st *) tls_ctx;
    /* eddy_server_add_listener_fd(): the socket the next start uses instead of binding
     * (-1: none, or used already). An adopted socket is served by loop 0 alone, which
     * hands connections to the others, even with enable_reuse_port. */
    int adopt_fd;
    bool single;
    /* Loop 0's listening socket while it is open, for eddy_server_listener_fd(). */
    _Atomic int fd;
};

/* A listening socket of a loop: with enable_reuse_port every loop has one per listener,
 * otherwise loop 0 has them all and hands accepted sockets to the other loops. */
typedef struct eddy__listen_sock eddy__listen_sock_t;
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
    const struct eddy__http_upgrade *http_upgrade; /* takes upgrade requests: eddy__ws_upgrade */

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
    atomic_bool running;    /* eddy_server_set() reads it from any thread */
    /* The settings eddy_server_set() may change while the server runs (settings.c): always
     * the values in force, read with relaxed loads (a plain load on x86: no lock or fence
     * per message). Not running, eddy_server_set() writes opts and these; running, these alone. */
    _Atomic size_t live_max_connection;
    _Atomic size_t live_package_max_length;
    _Atomic uint32_t live_ping_interval_ms; /* websocket_ping_interval, read per ping round */
    _Atomic uint32_t live_ping_timeout_ms;
    /* Orders eddy_server_reload_tls() against the start and the end of a run, and guards
     * the files it loaded while running, which become ssl_cert_file and ssl_key_file when
     * the run ends (NULL: none). */
    pthread_mutex_t tls_lock;
    char *tls_next_cert;
    char *tls_next_key;
    /* eddy_server_stop() was called: every loop reads it, so loops a start creates later
     * (worker_num grew) see a stop asked before that start. */
    atomic_bool stop_requested;
    _Atomic uint64_t timer_seq;

    int log_fd;
    eddy_log_cb on_log;
    int access_fd; /* http_access_log, opened at start; -1: off */
    /* Where a log output's failure is told (eddy_log_warning_fd()); -1: nowhere. */
    int warning_fd;
    eddy__log_sink_t log_sink;    /* log_fd's writes (and eddy_log_write()'s) */
    eddy__log_sink_t access_sink; /* access_fd's */
    /* The stand-alone clients' server (client.c): it runs its loop with no listener. */
    bool clients_only;
};

/* The limits eddy_server_set() may change while running (see live_max_connection). */
static inline size_t eddy__max_connection(const eddy_server_t *srv)
{
    return atomic_load_explicit(&srv->live_max_connection, memory_order_relaxed);
}
static inline size_t eddy__package_max_length(const eddy_server_t *srv)
{
    return atomic_load_explicit(&srv->live_package_max_length, memory_order_relaxed);
}

/* Copies opts' live settings to live_max_connection, live_package_max_length (and the
 * loops' package_max_length) and the ping intervals (settings.c; while the server is not
 * running). */
void eddy__options_publish(eddy_server_t *srv);

/* Makes every loop re-arm its keep-alive ping timer from live_ping_interval_ms and
 * live_ping_timeout_ms (server.c; eddy_server_set() while running). Allocates what it
 * posts first: returns 0, or EDDY_ENOMEM with nothing posted. */
int eddy__server_pings_changed(eddy_server_t *srv, uint32_t interval_ms, uint32_t timeout_ms);

/* Starts closing everything once a stop was requested; true when the loop may exit. */
bool eddy__server_loop_should_exit(eddy__loop_t *loop);
/* A session is reaped (proto->closed() of the server's protocols): runs the close or
 * disconnect callback and drops its subscriptions. */
void eddy__server_session_closed(eddy__conn_t *conn);

#endif /* EDDY_SERVER_H */

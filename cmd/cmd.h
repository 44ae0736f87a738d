/* SPDX-License-Identifier: MIT */
/*
 * The eddy program: declarations shared by the files of cmd/. The program uses only the public
 * header, like any other application.
 */
#ifndef EDDY_CMD_H
#define EDDY_CMD_H

#include <stdbool.h>
#include <stddef.h>

#include "eddy.h"

/* `eddy ws` (cmd/eddy_ws.c): the command-line WebSocket client, with argv[0] the command's
 * name. Returns its exit status (the table at the top of that file). */
int eddy_ws_main(int argc, char **argv);

/* Exit statuses (README "The eddy program"). */
enum {
    EXIT_OK = 0,
    EXIT_FAIL = 1,        /* the operation failed (could not start, stop in time, query) */
    EXIT_USAGE = 2,       /* bad command line or invalid configuration */
    EXIT_NOT_RUNNING = 3, /* status, stop, reload: no eddy process is running */
};

/* One key = value as read from the file or the environment. */
typedef struct cfg_entry {
    char *section;
    char *key;
    char *value;
    bool engine; /* passed to eddy_server_set() */
} cfg_entry_t;

/* A loaded configuration. Paths are absolute (relative ones are taken from base_dir). */
typedef struct cfg {
    char *path;     /* the file, absolute; NULL: built-in defaults only */
    char *base_dir; /* the directory relative paths are resolved in */
    cfg_entry_t *entries;
    size_t entry_count;

    char *host;
    int port;
    char *pid_file;
    double max_wait_time;  /* seconds `eddy stop` waits, after shutdown_delay */
    double shutdown_delay; /* seconds /readyz answers 503 before the server stops */
    char *tls_host;
    int tls_port; /* 0: no TLS listener */
    char *admin_host;
    int admin_port; /* 0: no admin listener (health and status on the main one) */
    char *document_root;
    char *index;
    char *ws_path;
    int log_level;  /* eddy_log_level */
    char *log_file; /* NULL: stderr */
} cfg_t;

/* The default configuration file, fully commented (`eddy config default`). */
extern const char cfg_default_text[];

/*
 * Loads path (NULL: the built-in defaults) and then the EDDY_<SECTION>_<KEY> environment
 * variables, resolving relative paths in base_dir (NULL: the current directory). Returns
 * the configuration, or NULL with the reason ("FILE:LINE: [section] key: why") in err.
 */
cfg_t *cfg_load(const char *path, const char *base_dir, char *err, size_t err_len);
void cfg_free(cfg_t *cfg);
/* The value an entry has in cfg, or NULL if the file and environment did not set it. */
const char *cfg_get(const cfg_t *cfg, const char *section, const char *key);
/* The name of a log level ("info"). */
const char *cfg_level_name(int level);

/*
 * Runs the server in this process until SIGTERM or SIGINT (SIGHUP reloads). ready_fd >= 0
 * (from `eddy start`) receives "PID\n" once the listeners are bound and is then closed.
 * Returns an exit status.
 */
int serve_run(cfg_t *cfg, int ready_fd);

/*
 * The pid in cfg's pid file if that process is alive and is an eddy program, else 0 (no
 * file, a dead pid, or a pid now used by another program: a stale file).
 */
int pidfile_running(const char *pid_file);

/* The backend proxy ([proxy], cmd/proxy.c). proxy_check_key validates [proxy] key = value:
 * 0, 1 with the reason in *why, or -1 for an unknown key. proxy_setup (before the server
 * starts) makes the backend client when connect_url is set: 0, or -1 out of memory.
 * proxy_request answers the request if it is the proxy's (true). proxy_upgrade, from the
 * upgrade callback, forwards a WebSocket upgrade and defers its answer: what the upgrade
 * callback returns (0 when there is no proxy). proxy_free logs the counters and frees the
 * client, after the server stopped and before it is freed. */
int proxy_check_key(const char *key, const char *value, const char **why);
int proxy_setup(eddy_server_t *srv, const cfg_t *cfg);
bool proxy_request(eddy_server_t *srv, eddy_request_t *req, eddy_response_t *resp);
int proxy_upgrade(eddy_request_t *req);
/* From the Socket.IO connect hook, after the token check: forwards the CONNECT to the
 * backend and defers the decision (eddy_rt_defer()); what the hook returns (0 when there
 * is no proxy). */
struct eddy_rt_socket;
int proxy_sio_connect(struct eddy_rt_socket *s);
/* [proxy] event_url: the namespaces' handler of events without one of their own (does
 * nothing without event_url). The event goes to the backend; its answer is the ack. */
struct eddy_rt_event;
void proxy_sio_event(struct eddy_rt_socket *s, const struct eddy_rt_event *ev, void *user_data);
/* [proxy] join_url: a client's join of room (client_rooms did not allow it) asked of the
 * backend, the ack (ack_id >= 0) answered once it decided. False without join_url (or out of
 * memory): the caller answers. */
bool proxy_sio_join(struct eddy_rt_socket *s, const char *room, int64_t ack_id);
void proxy_free(void);

#endif /* EDDY_CMD_H */

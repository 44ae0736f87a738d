/* SPDX-License-Identifier: MIT */
/*
 * The running server: static files, the WebSocket echo service, /healthz, /readyz and
 * /status, logging, the pid file, and the signals (SIGTERM/SIGINT stop, SIGHUP reloads).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "cmd.h"
#include "realtime.h"

/* Files larger than this are refused (the whole file is read into the response). */
#define STATIC_MAX_BYTES (64u << 20)

static struct {
    eddy_server_t *srv;
    cfg_t *cfg;
    char *root_real; /* realpath of the document root, NULL if it does not exist */
    int admin_index; /* listener index, -1 without one */
    int tls_index;
    time_t started;
    atomic_int log_level; /* the daemon's filter: it can change on reload */
    int engine_level;     /* what the engine was started with */
    atomic_bool draining;
    atomic_bool exiting;
    pthread_t signal_thread;
    int ready_fd;
} g = {.admin_index = -1, .tls_index = -1, .ready_fd = -1};

/* ---- logging: every line passes here, so the level can change while running ---- */

static void log_line(eddy_server_t *srv, int level, int loop, const char *msg, size_t len,
                     void *user_data)
{
    static const char *const names[] = {"TRACE", "DEBUG", "INFO", "NOTICE", "WARNING", "ERROR"};
    if (level < atomic_load_explicit(&g.log_level, memory_order_relaxed) || level < 0 ||
        level > EDDY_LOG_ERROR)
        return;
    char head[96];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    localtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(head, sizeof(head), "[%Y-%m-%d %H:%M:%S", &tm);
    n += (size_t)snprintf(head + n, sizeof(head) - n, " *%d.%d]\t%s\t", (int)getpid(),
                          loop < 0 ? 0 : loop, names[level]);
    /* One write per line, so lines from several loops never mix. */
    struct iovec iov[3] = {{head, n}, {(void *)msg, len}, {"\n", 1}};
    ssize_t ignored = writev(STDERR_FILENO, iov, 3);
    (void)ignored;
}

/* log_file replaces standard error (dup2 is atomic: a loop writing meanwhile writes to
 * the old file or the new one, never to a closed descriptor). */
static int open_log_file(const char *path)
{
    if (path == NULL)
        return 0;
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    if (dup2(fd, STDERR_FILENO) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    close(fd);
    return 0;
}

/* ---- HTTP ---- */

static void answer(eddy_response_t *resp, int status, const char *type, const char *body)
{
    eddy_response_status(resp, status, NULL);
    eddy_response_header(resp, "Content-Type", type);
    eddy_response_header(resp, "Cache-Control", "no-store");
    eddy_response_end(resp, body, strlen(body));
}

static void answer_status(eddy_response_t *resp)
{
    eddy_options_t opts;
    eddy_server_get_options(g.srv, &opts);
    char listeners[1024];
    int n = snprintf(listeners, sizeof(listeners), "\"http://%s:%d\"", g.cfg->host,
                     eddy_server_listener_port(g.srv, 0));
    if (g.tls_index >= 0)
        n += snprintf(listeners + n, sizeof(listeners) - (size_t)n, ",\"https://%s:%d\"",
                      g.cfg->tls_host, eddy_server_listener_port(g.srv, g.tls_index));
    if (g.admin_index >= 0)
        snprintf(listeners + n, sizeof(listeners) - (size_t)n, ",\"admin http://%s:%d\"",
                 g.cfg->admin_host, eddy_server_listener_port(g.srv, g.admin_index));
    char body[2048];
    snprintf(body, sizeof(body),
             "{\"version\":\"%s\",\"pid\":%d,\"state\":\"%s\",\"uptime_seconds\":%lld,"
             "\"listeners\":[%s],\"worker_num\":%d,\"task_worker_num\":%d,"
             "\"connections\":%zu,\"log_level\":\"%s\"}\n",
             eddy_version(), (int)getpid(), atomic_load(&g.draining) ? "draining" : "running",
             (long long)(time(NULL) - g.started), listeners, opts.worker_num, opts.task_worker_num,
             eddy_connection_count(g.srv), cfg_level_name(atomic_load(&g.log_level)));
    answer(resp, 200, "application/json", body);
}

static const char *content_type(const char *path)
{
    static const char *const types[][2] = {
        {".html", "text/html; charset=utf-8"},
        {".htm", "text/html; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"},
        {".json", "application/json"},
        {".map", "application/json"},
        {".txt", "text/plain; charset=utf-8"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".jpg", "image/jpeg"},
        {".jpeg", "image/jpeg"},
        {".gif", "image/gif"},
        {".ico", "image/x-icon"},
        {".webp", "image/webp"},
        {".wasm", "application/wasm"},
        {".woff2", "font/woff2"},
        {".d.ts", "text/plain; charset=utf-8"},
    };
    const char *dot = strrchr(path, '.');
    const char *slash = strrchr(path, '/');
    if (dot != NULL && (slash == NULL || dot > slash))
        for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
            if (strcasecmp(dot, types[i][0]) == 0)
                return types[i][1];
    return "application/octet-stream";
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/*
 * Maps a request path to a file path under the document root, in out. Refuses (false) a
 * path that does not decode, holds a NUL, or has a "." or ".." segment after decoding
 * (so "%2e%2e/" is caught as well as "../"); the file's real path is checked against the
 * root's afterwards, so a symbolic link cannot lead outside either.
 */
static bool map_path(const char *raw, char *out, size_t cap)
{
    char decoded[PATH_MAX];
    size_t n = 0;
    for (const char *p = raw; *p != '\0'; p++) {
        int c = (unsigned char)*p;
        if (c == '%') {
            int hi = hex_value(p[1]), lo = hi < 0 ? -1 : hex_value(p[2]);
            if (lo < 0)
                return false;
            c = hi * 16 + lo;
            p += 2;
        }
        if (c == '\0' || c == '\\' || n + 1 >= sizeof(decoded))
            return false;
        decoded[n++] = (char)c;
    }
    decoded[n] = '\0';
    if (decoded[0] != '/')
        return false;
    for (const char *seg = decoded; seg != NULL; seg = strchr(seg + 1, '/')) {
        const char *s = seg + 1;
        size_t len = strcspn(s, "/");
        if ((len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.'))
            return false;
    }
    int w = snprintf(out, cap, "%s%s", g.root_real, decoded);
    return w > 0 && (size_t)w < cap;
}

static void serve_file(eddy_request_t *req, eddy_response_t *resp)
{
    char path[PATH_MAX + 64];
    if (g.root_real == NULL || !map_path(eddy_request_path(req), path, sizeof(path) - 64)) {
        answer(resp, 404, "text/plain; charset=utf-8", "not found\n");
        return;
    }
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        size_t len = strlen(path);
        if (path[len - 1] != '/') { /* relative links in the index need the slash */
            char location[PATH_MAX + 8];
            snprintf(location, sizeof(location), "%s/", eddy_request_path(req));
            eddy_response_status(resp, 301, NULL);
            eddy_response_header(resp, "Location", location);
            eddy_response_end(resp, NULL, 0);
            return;
        }
        snprintf(path + len, sizeof(path) - len, "%s", g.cfg->index);
    }
    char real[PATH_MAX];
    size_t root_len = strlen(g.root_real);
    int fd = -1;
    if (realpath(path, real) != NULL && strncmp(real, g.root_real, root_len) == 0 &&
        (real[root_len] == '/' || root_len == 1))
        fd = open(real, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        answer(resp, 404, "text/plain; charset=utf-8", "not found\n");
        return;
    }
    if ((uint64_t)st.st_size > STATIC_MAX_BYTES) {
        close(fd);
        eddy_log(g.srv, EDDY_LOG_WARNING, "static: %s is larger than %u bytes: refused", real,
                 STATIC_MAX_BYTES);
        answer(resp, 500, "text/plain; charset=utf-8", "file too large\n");
        return;
    }
    char etag[64];
    snprintf(etag, sizeof(etag), "\"%llx-%llx\"", (unsigned long long)st.st_mtime,
             (unsigned long long)st.st_size);
    const char *match = eddy_request_header(req, "If-None-Match");
    eddy_response_header(resp, "Content-Type", content_type(real));
    eddy_response_header(resp, "ETag", etag);
    if (match != NULL && strcmp(match, etag) == 0) {
        close(fd);
        eddy_response_status(resp, 304, NULL);
        eddy_response_end(resp, NULL, 0);
        return;
    }
    size_t size = (size_t)st.st_size, got = 0;
    char *body = malloc(size + 1);
    while (body != NULL && got < size) {
        ssize_t r = read(fd, body + got, size - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    if (body == NULL || got != size) {
        free(body);
        answer(resp, 500, "text/plain; charset=utf-8", "cannot read the file\n");
        return;
    }
    eddy_response_end(resp, body, size);
    free(body);
}

static bool on_admin_listener(eddy_server_t *srv, eddy_fd_t fd)
{
    eddy_client_info_t info;
    return g.admin_index >= 0 && eddy_client_info(srv, fd, &info) == 0 &&
           info.server_port == eddy_server_listener_port(srv, g.admin_index);
}

static void on_request(eddy_server_t *srv, eddy_request_t *req, eddy_response_t *resp,
                       void *user_data)
{
    const char *path = eddy_request_path(req);
    bool admin = on_admin_listener(srv, eddy_request_fd(req));
    if (api_request(req, resp, admin, g.admin_index >= 0) ||
        (!admin && realtime_request(req, resp)))
        return;
    if (admin || g.admin_index < 0) {
        if (strcmp(path, "/healthz") == 0) {
            answer(resp, 200, "text/plain; charset=utf-8", "ok\n");
            return;
        }
        if (strcmp(path, "/readyz") == 0) {
            if (atomic_load(&g.draining))
                answer(resp, 503, "text/plain; charset=utf-8", "draining\n");
            else
                answer(resp, 200, "text/plain; charset=utf-8", "ready\n");
            return;
        }
        if (strcmp(path, "/status") == 0) {
            answer_status(resp);
            return;
        }
    }
    if (admin) {
        answer(resp, 404, "text/plain; charset=utf-8", "not found\n");
        return;
    }
    const char *method = eddy_request_method(req);
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        eddy_response_header(resp, "Allow", "GET, HEAD");
        answer(resp, 405, "text/plain; charset=utf-8", "method not allowed\n");
        return;
    }
    serve_file(req, resp);
}

/* ---- WebSocket: an echo service on [websocket] path ---- */

static int on_upgrade(eddy_server_t *srv, eddy_request_t *req, void *user_data)
{
    int status;
    if (!on_admin_listener(srv, eddy_request_fd(req)) && realtime_upgrade(req, &status))
        return status; /* Socket.IO checks tokens at its CONNECT, per namespace */
    if (on_admin_listener(srv, eddy_request_fd(req)) ||
        strcmp(eddy_request_path(req), g.cfg->ws_path) != 0)
        return eddy_upgrade_refuse(req, 404, NULL, "not found\n");
    return auth_upgrade(req);
}

static void on_open(eddy_server_t *srv, eddy_request_t *req, void *user_data)
{
    realtime_open(req);
}

static void on_close(eddy_server_t *srv, eddy_fd_t fd, void *user_data)
{
    realtime_close(fd);
}

static void on_message(eddy_server_t *srv, const eddy_frame_t *frame, void *user_data)
{
    if (realtime_message(frame))
        return;
    eddy_push(srv, frame->fd, frame->data, frame->len, frame->opcode, EDDY_WS_FLAG_FIN);
}

static void on_start(eddy_server_t *srv, void *user_data)
{
    if (g.root_real == NULL)
        eddy_log(srv, EDDY_LOG_NOTICE, "document_root %s does not exist: static files answer 404",
                 g.cfg->document_root != NULL ? g.cfg->document_root : "(unset)");
    else
        eddy_log(srv, EDDY_LOG_INFO, "serving files from %s; WebSocket echo on %s", g.root_real,
                 g.cfg->ws_path);
    if (g.ready_fd >= 0) {
        char msg[32];
        int n = snprintf(msg, sizeof(msg), "%d\n", (int)getpid());
        ssize_t ignored = write(g.ready_fd, msg, (size_t)n);
        (void)ignored;
        close(g.ready_fd);
        g.ready_fd = -1;
    }
}

/* ---- reload ---- */

static void reload(void)
{
    char err[1024];
    cfg_t *next = cfg_load(g.cfg->path, g.cfg->base_dir, err, sizeof(err));
    if (next == NULL) {
        eddy_log(g.srv, EDDY_LOG_ERROR, "reload refused, the running configuration is kept: %s",
                 err);
        return;
    }
    auth_apply(g.srv, next, true); /* [auth] is live: keys rotate without a restart */
    int level = next->log_level;
    if (level < g.engine_level) {
        eddy_log(g.srv, EDDY_LOG_WARNING,
                 "reload: log_level %s needs a restart (the server runs at %s at most)",
                 cfg_level_name(level), cfg_level_name(g.engine_level));
        level = g.engine_level;
    }
    int old = atomic_exchange(&g.log_level, level);
    if (old != level)
        eddy_log(g.srv, EDDY_LOG_NOTICE, "reload: log_level %s -> %s", cfg_level_name(old),
                 cfg_level_name(level));
    const char *old_file = g.cfg->log_file, *new_file = next->log_file;
    int rc = open_log_file(new_file); /* reopened even if unchanged: log rotation */
    if (rc < 0)
        eddy_log(g.srv, EDDY_LOG_ERROR, "reload: cannot open log_file %s: %s", new_file,
                 strerror(-rc));
    else if ((old_file == NULL) != (new_file == NULL) ||
             (old_file != NULL && strcmp(old_file, new_file) != 0))
        eddy_log(g.srv, EDDY_LOG_NOTICE, "reload: log_file %s", new_file ? new_file : "(stderr)");
    if (rc == 0 && new_file != NULL) { /* keep the new name for the next reload */
        char *copy = strdup(new_file);
        if (copy != NULL) {
            free(g.cfg->log_file);
            g.cfg->log_file = copy;
        }
    }
    /* Everything else is fixed at start: name what changed, so nobody waits for it. */
    for (int pass = 0; pass < 2; pass++) {
        const cfg_t *a = pass == 0 ? next : g.cfg, *b = pass == 0 ? g.cfg : next;
        for (size_t i = 0; i < a->entry_count; i++) {
            if (strcmp(a->entries[i].section, "auth") == 0)
                continue; /* applied above */
            const cfg_entry_t *e = &a->entries[i];
            if (strcmp(e->section, "log") == 0 &&
                (strcmp(e->key, "log_level") == 0 || strcmp(e->key, "log_file") == 0))
                continue;
            const char *other = cfg_get(b, e->section, e->key);
            if (other != NULL && (pass == 1 || strcmp(other, e->value) == 0))
                continue; /* same, or already reported in the first pass */
            eddy_log(g.srv, EDDY_LOG_WARNING,
                     "reload: [%s] %s changed; it needs a restart (kept the running value)",
                     e->section, e->key);
        }
    }
    cfg_free(next);
    eddy_log(g.srv, EDDY_LOG_NOTICE, "reload done");
}

/* shutdown_delay: /readyz answers 503 meanwhile (g.draining is set) while everything
 * else is served; a second SIGTERM or SIGINT ends the wait, a SIGHUP still reloads. */
static void drain_delay(const sigset_t *set)
{
    if (g.cfg->shutdown_delay <= 0)
        return;
    eddy_log(g.srv, EDDY_LOG_NOTICE, "not ready: stopping in %g s (shutdown_delay)",
             g.cfg->shutdown_delay);
    struct timespec now, end;
    clock_gettime(CLOCK_MONOTONIC, &end);
    double whole = (double)(long)g.cfg->shutdown_delay;
    end.tv_sec += (time_t)whole;
    end.tv_nsec += (long)((g.cfg->shutdown_delay - whole) * 1e9);
    if (end.tv_nsec >= 1000000000L) {
        end.tv_sec++;
        end.tv_nsec -= 1000000000L;
    }
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec > end.tv_sec || (now.tv_sec == end.tv_sec && now.tv_nsec >= end.tv_nsec))
            return;
        struct timespec left = {end.tv_sec - now.tv_sec, end.tv_nsec - now.tv_nsec};
        if (left.tv_nsec < 0) {
            left.tv_sec--;
            left.tv_nsec += 1000000000L;
        }
        int sig = sigtimedwait(set, NULL, &left);
        if (sig == SIGHUP) {
            reload();
        } else if (sig == SIGTERM || sig == SIGINT) {
            eddy_log(g.srv, EDDY_LOG_NOTICE, "%s: stopping now", strsignal(sig));
            return;
        }
    }
}

/* Signals are taken by one thread with sigwait(), so the handlers run as plain code:
 * reload may read files and log. */
static void *signal_main(void *arg)
{
    sigset_t *set = arg;
    for (;;) {
        int sig;
        if (sigwait(set, &sig) != 0)
            continue;
        if (atomic_load(&g.exiting))
            return NULL;
        if (sig == SIGHUP) {
            eddy_log(g.srv, EDDY_LOG_NOTICE, "SIGHUP: reloading %s",
                     g.cfg->path != NULL ? g.cfg->path : "(defaults)");
            reload();
        } else if (!atomic_exchange(&g.draining, true)) {
            eddy_log(g.srv, EDDY_LOG_NOTICE, "%s: shutting down", strsignal(sig));
            drain_delay(set);
            eddy_server_stop(g.srv);
        }
    }
}

/* ---- pid file ---- */

static int pidfile_write(const char *path)
{
    int running = pidfile_running(path);
    if (running > 0) {
        fprintf(stderr, "Failed! eddy is already running (pid %d, pid file %s).\n", running, path);
        return -1;
    }
    unlink(path); /* stale: a crash left it, or its pid now belongs to another program */
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "eddy: cannot create the pid file %s: %s\n", path, strerror(errno));
        return -1;
    }
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
    bool ok = write(fd, buf, (size_t)n) == n;
    close(fd);
    if (!ok) {
        unlink(path);
        fprintf(stderr, "eddy: cannot write the pid file %s\n", path);
        return -1;
    }
    return 0;
}

/* Removes the pid file if it is still ours. */
static void pidfile_remove(const char *path)
{
    FILE *f = fopen(path, "r");
    int pid = 0;
    if (f == NULL)
        return;
    if (fscanf(f, "%d", &pid) != 1)
        pid = 0;
    fclose(f);
    if (pid == (int)getpid())
        unlink(path);
}

int serve_run(cfg_t *cfg, int ready_fd)
{
    g.cfg = cfg;
    g.ready_fd = ready_fd;
    g.started = time(NULL);
    int rc = open_log_file(cfg->log_file);
    if (rc < 0) {
        fprintf(stderr, "eddy: cannot open log_file %s: %s\n", cfg->log_file, strerror(-rc));
        return EXIT_FAIL;
    }
    if (pidfile_write(cfg->pid_file) < 0)
        return EXIT_FAIL;
    g.root_real = cfg->document_root != NULL ? realpath(cfg->document_root, NULL) : NULL;

    int status = EXIT_FAIL;
    eddy_server_t *srv = eddy_server_new(cfg->host, cfg->port);
    if (srv == NULL) {
        fprintf(stderr, "eddy: cannot create the server on %s:%d\n", cfg->host, cfg->port);
        goto out;
    }
    g.srv = srv;
    /* The engine runs at debug (or trace) so that a reload can lower the level live; the
     * daemon's callback filters. trace is left off unless asked for: it costs per frame. */
    g.engine_level = cfg->log_level < EDDY_LOG_DEBUG ? cfg->log_level : EDDY_LOG_DEBUG;
    atomic_store(&g.log_level, cfg->log_level);
    eddy_on_log(srv, log_line);
    for (size_t i = 0; i < cfg->entry_count; i++) {
        const cfg_entry_t *e = &cfg->entries[i];
        if (e->engine && strcmp(e->key, "log_level") != 0 &&
            (rc = eddy_server_set(srv, e->key, e->value)) < 0) {
            fprintf(stderr, "eddy: [%s] %s: %s\n", e->section, e->key, eddy_strerror(rc));
            goto out;
        }
    }
    eddy_server_set(srv, "log_level", cfg_level_name(g.engine_level));
    if (cfg->tls_port != 0 && (g.tls_index = eddy_server_add_listener(
                                   srv, cfg->tls_host, cfg->tls_port, EDDY_LISTEN_TLS)) < 0) {
        fprintf(stderr, "eddy: [tls] listener: %s\n", eddy_strerror(g.tls_index));
        goto out;
    }
    if (cfg->admin_port != 0 &&
        (g.admin_index = eddy_server_add_listener(srv, cfg->admin_host, cfg->admin_port, 0)) < 0) {
        fprintf(stderr, "eddy: [admin] listener: %s\n", eddy_strerror(g.admin_index));
        goto out;
    }
    eddy_on_start(srv, on_start);
    eddy_on_request(srv, on_request);
    eddy_on_upgrade(srv, on_upgrade);
    eddy_on_message(srv, on_message);
    eddy_on_open(srv, on_open);
    eddy_on_close(srv, on_close);
    if (realtime_setup(srv, cfg) < 0)
        goto out;
    if (auth_apply(srv, cfg, false) < 0)
        goto out;

    /* Blocked before the loops start, so that every thread inherits the mask and only
     * the signal thread takes them. */
    static sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (pthread_create(&g.signal_thread, NULL, signal_main, &set) != 0) {
        fprintf(stderr, "eddy: cannot start the signal thread\n");
        goto out;
    }
    rc = eddy_server_start(srv);
    atomic_store(&g.exiting, true);
    pthread_kill(g.signal_thread, SIGTERM);
    pthread_join(g.signal_thread, NULL);
    if (rc < 0) {
        eddy_log(srv, EDDY_LOG_ERROR, "the server could not start: %s", eddy_strerror(rc));
    } else {
        status = EXIT_OK;
    }

out:
    pidfile_remove(cfg->pid_file);
    auth_release();
    realtime_free(); /* the layer goes before its server */
    if (srv != NULL)
        eddy_server_free(srv);
    free(g.root_real);
    if (g.ready_fd >= 0)
        close(g.ready_fd);
    return status;
}

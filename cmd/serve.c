/* SPDX-License-Identifier: MIT */
/*
 * The running server: static files, the WebSocket echo service, /healthz, /readyz,
 * /status and /metrics, logging, the pid file, the signals (SIGTERM/SIGINT stop, SIGHUP
 * reloads, SIGUSR2 restarts with zero downtime, SIGRTMIN reopens the log files) and
 * systemd's readiness notification.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "auth.h"
#include "cmd.h"
#include "realtime.h"

/* Files larger than this are refused (the whole file is read into the response). */
#define STATIC_MAX_BYTES (64u << 20)

/*
 * What the request handlers read and a reload may change, published whole by pointer: a
 * loop sees the old set or the new one, never a mix. A replaced set is kept until exit,
 * since a loop may still be reading it (reloads are rare; a set is a few hundred bytes).
 */
typedef struct live {
    struct live *retired; /* the set this one replaced */
    char *root_real;      /* realpath of the document root, NULL if it does not exist */
    char *index;
    char *ws_path;
} live_t;

static struct {
    eddy_server_t *srv;
    cfg_t *cfg;
    _Atomic(live_t *) live;
    int admin_index; /* listener index, -1 without one */
    int tls_index;
    time_t started;
    atomic_int log_level; /* the daemon's filter: it can change on reload */
    int engine_level;     /* what the engine was started with */
    atomic_bool draining;
    atomic_bool exiting;
    pthread_t signal_thread;
    int ready_fd;
    char exe[PATH_MAX]; /* this program, for the restart's exec */
    /* Listening sockets handed over by the process this one replaces (eddy restart): the
     * main, TLS and admin listeners' descriptors, -1 where none. */
    /* Standard error as the process got it, before log_file took its place: where a
     * failing log is told (eddy_log_warning_fd()); -1 if it could not be kept. */
    int console_fd;
    int inherited[3];
    int takeover_parent;         /* the pid replaced, 0 when not a restart */
    bool from_systemd;           /* inherited[] came from systemd's socket units (LISTEN_FDS) */
    bool handed_over;            /* the listeners went to a new process: it is systemd's main one */
    atomic_int restart_failures; /* in /status, for `eddy restart` to learn of them */
    bool takeover_refused;       /* a restart that could not write the pid file: exit 1 */
} g = {.admin_index = -1,
       .tls_index = -1,
       .ready_fd = -1,
       .console_fd = -1,
       .inherited = {-1, -1, -1}};

enum { INHERIT_MAIN, INHERIT_TLS, INHERIT_ADMIN };
static const char *const inherit_names[] = {"main", "tls", "admin"};

/* ---- systemd: sd_notify(3)'s datagram, by hand (no libsystemd needed) ---- */

static void notify_systemd(const char *msg)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = path != NULL ? strlen(path) : 0;
    if (len == 0 || len >= sizeof(sa.sun_path) || (path[0] != '/' && path[0] != '@'))
        return;
    memcpy(sa.sun_path, path, len);
    if (sa.sun_path[0] == '@') /* an abstract socket */
        sa.sun_path[0] = '\0';
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    ssize_t ignored = sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa,
                             (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len));
    (void)ignored;
    close(fd);
}

/* ---- logging: every line passes here, so the level can change while running ---- */

static void log_line(eddy_server_t *srv, int level, int loop, const char *msg, size_t len,
                     void *user_data)
{
    static const char *const names[] = {"TRACE", "DEBUG", "INFO", "NOTICE", "WARNING", "ERROR"};
    if (level < atomic_load_explicit(&g.log_level, memory_order_relaxed) || level < 0 ||
        level > EDDY_LOG_ERROR)
        return;
    if (admin_log_line(srv, level, loop, msg, len)) /* kept for the admin page; JSON written */
        return;
    char head[96];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    localtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(head, sizeof(head), "[%Y-%m-%d %H:%M:%S", &tm);
    n += (size_t)snprintf(head + n, sizeof(head) - n, " *%d.%d]\t%s\t", (int)getpid(),
                          loop < 0 ? 0 : loop, names[level]);
    /* One write per line, so lines from several loops never mix; a failed one is counted
     * (eddy_log_lines_lost_total) and told once on the original stderr. */
    struct iovec iov[3] = {{head, n}, {(void *)msg, len}, {"\n", 1}};
    eddy_log_write(srv, iov, 3);
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

/* What the process uses, from /proc/self (zeros where it cannot be read). */
typedef struct process_figures {
    uint64_t resident_bytes;
    double cpu_seconds; /* user + system */
    uint64_t open_fds;
    uint64_t max_fds;
} process_figures_t;

static process_figures_t process_figures(void)
{
    process_figures_t pf = {0};
    long page = sysconf(_SC_PAGESIZE), ticks = sysconf(_SC_CLK_TCK);
    unsigned long long size = 0, resident = 0, utime = 0, stime = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f != NULL) {
        if (fscanf(f, "%llu %llu", &size, &resident) == 2 && page > 0)
            pf.resident_bytes = resident * (uint64_t)page;
        fclose(f);
    }
    /* /proc/self/stat: fields 14 and 15 are utime and stime; the command name (field 2)
     * may hold spaces and parentheses, so the count starts after its last ')'. */
    char line[1024];
    f = fopen("/proc/self/stat", "r");
    if (f != NULL) {
        if (fgets(line, sizeof(line), f) != NULL) {
            const char *p = strrchr(line, ')');
            if (p != NULL &&
                sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime,
                       &stime) == 2 &&
                ticks > 0)
                pf.cpu_seconds = (double)(utime + stime) / (double)ticks;
        }
        fclose(f);
    }
    DIR *dir = opendir("/proc/self/fd");
    if (dir != NULL) {
        struct dirent *e;
        while ((e = readdir(dir)) != NULL)
            pf.open_fds += e->d_name[0] != '.';
        closedir(dir);
        pf.open_fds--; /* the directory's own descriptor */
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        pf.max_fds = (uint64_t)rl.rlim_cur;
    return pf;
}

/* "none" without a broker, else its state. */
static const char *broker_state_name(const eddy_rt_broker_status_t *b)
{
    static const char *const names[] = {"down", "recovering", "up"};
    return !b->clustered ? "none" : b->state >= 0 && b->state <= 2 ? names[b->state] : "down";
}

/* The broker's alive nodes as a JSON list of strings (at most STATUS_NODES; ids that would
 * need escaping are left out: ours are checked, another program's may not be). */
#define STATUS_NODES 32
static void status_nodes(char *out, size_t cap)
{
    char ids[STATUS_NODES][EDDY_RT_NODE_ID_SIZE];
    eddy_rt_t *rt = realtime_rt();
    size_t n = rt != NULL ? eddy_rt_broker_nodes(rt, ids, STATUS_NODES) : 0;
    size_t len = (size_t)snprintf(out, cap, "[");
    for (size_t i = 0; i < n && i < STATUS_NODES && len < cap; i++) {
        bool plain = true;
        for (const char *c = ids[i]; *c != '\0'; c++)
            plain = plain && (unsigned char)*c >= 0x20 && *c != '"' && *c != '\\';
        if (plain)
            len += (size_t)snprintf(out + len, cap - len, "%s\"%s\"", len > 1 ? "," : "", ids[i]);
    }
    if (len < cap)
        snprintf(out + len, cap - len, "]");
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
    eddy_stats_t st;
    eddy_server_stats(g.srv, -1, &st);
    process_figures_t pf = process_figures();
    eddy_rt_broker_status_t bs;
    realtime_broker(&bs);
    char nodes[STATUS_NODES * (EDDY_RT_NODE_ID_SIZE + 3) + 3];
    status_nodes(nodes, sizeof(nodes));
    char body[4096 + sizeof(nodes)];
    snprintf(body, sizeof(body),
             "{\"version\":\"%s\",\"pid\":%d,\"state\":\"%s\",\"uptime_seconds\":%lld,"
             "\"listeners\":[%s],\"worker_num\":%d,\"task_worker_num\":%d,"
             "\"connections\":%" PRIu64 ",\"websocket_connections\":%" PRIu64 ","
             "\"accepted\":%" PRIu64 ",\"refused\":%" PRIu64 ",\"http_requests\":%" PRIu64 ","
             "\"websocket_handshakes\":%" PRIu64 ",\"websocket_refused\":%" PRIu64 ","
             "\"messages_in\":%" PRIu64 ",\"messages_out\":%" PRIu64 ","
             "\"bytes_in\":%" PRIu64 ",\"bytes_out\":%" PRIu64 ","
             "\"messages_dropped\":%" PRIu64 ",\"slow_consumer_closes\":%" PRIu64 ","
             "\"log_lines_lost\":%" PRIu64 ",\"access_log_lines_lost\":%" PRIu64 ","
             "\"memory_rss_bytes\":%" PRIu64 ",\"cpu_seconds\":%.2f,\"open_fds\":%" PRIu64 ","
             "\"restart_failures\":%d,\"log_level\":\"%s\",\"broker\":\"%s\","
             "\"broker_ready\":%s,\"broker_nodes\":%" PRIu64 ",\"cluster_nodes\":%s}\n",
             eddy_version(), (int)getpid(), atomic_load(&g.draining) ? "draining" : "running",
             (long long)(time(NULL) - g.started), listeners, opts.worker_num, opts.task_worker_num,
             st.connections, st.websocket_connections, st.accepted_total, st.refused_total,
             st.http_requests_total, st.websocket_opened_total, st.websocket_refused_total,
             st.messages_received_total, st.messages_sent_total, st.bytes_received_total,
             st.bytes_sent_total, st.messages_dropped_total, st.slow_consumer_closes_total,
             st.log_lines_lost_total, st.access_log_lines_lost_total, pf.resident_bytes,
             pf.cpu_seconds, pf.open_fds, atomic_load(&g.restart_failures),
             cfg_level_name(atomic_load(&g.log_level)), broker_state_name(&bs),
             !bs.clustered || bs.ready ? "true" : "false", bs.nodes, nodes);
    answer(resp, 200, "application/json", body);
}

/* /metrics: Prometheus text exposition format 0.0.4. */
static void answer_metrics(eddy_response_t *resp)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    if (out == NULL) {
        answer(resp, 500, "text/plain; charset=utf-8", "out of memory\n");
        return;
    }
    eddy_options_t opts;
    eddy_server_get_options(g.srv, &opts);
    eddy_stats_t st;
    eddy_server_stats(g.srv, -1, &st);
    process_figures_t pf = process_figures();

    metric_head(out, "eddy_build_info", "gauge", "The running eddy's version (value 1).");
    fprintf(out, "eddy_build_info{version=\"%s\"} 1\n", eddy_version());
    metric(out, "eddy_start_time_seconds", "gauge", "Unix time the server started.",
           (uint64_t)g.started);
    metric(out, "eddy_uptime_seconds", "gauge", "Seconds since the server started.",
           (uint64_t)(time(NULL) - g.started));
    metric(out, "eddy_ready", "gauge",
           "1 while serving, 0 once stopping or while the broker is not ready (as /readyz).",
           atomic_load(&g.draining) || !realtime_ready() ? 0 : 1);
    metric(out, "eddy_worker_num", "gauge", "Event loop threads.", (uint64_t)opts.worker_num);
    metric_head(out, "eddy_connections", "gauge", "Live connections by kind.");
    fprintf(out, "eddy_connections{kind=\"websocket\"} %" PRIu64 "\n", st.websocket_connections);
    fprintf(out, "eddy_connections{kind=\"http\"} %" PRIu64 "\n",
            st.connections > st.websocket_connections ? st.connections - st.websocket_connections
                                                      : 0);
    metric(out, "eddy_connections_max", "gauge", "max_connection: accepting stops there.",
           (uint64_t)opts.max_connection);
    metric(out, "eddy_connections_accepted_total", "counter", "Connections accepted.",
           st.accepted_total);
    metric(out, "eddy_connections_refused_total", "counter",
           "Connections closed as soon as accepted (max_connection, out of descriptors).",
           st.refused_total);
    metric(out, "eddy_http_requests_total", "counter",
           "HTTP requests dispatched, WebSocket upgrades included.", st.http_requests_total);
    metric(out, "eddy_websocket_handshakes_total", "counter", "WebSocket handshakes completed.",
           st.websocket_opened_total);
    metric(out, "eddy_websocket_handshake_failures_total", "counter",
           "WebSocket upgrade requests refused (bad request, Origin, path, application).",
           st.websocket_refused_total);
    metric(out, "eddy_websocket_messages_received_total", "counter",
           "WebSocket data messages received.", st.messages_received_total);
    metric(out, "eddy_websocket_messages_sent_total", "counter",
           "WebSocket data messages queued to clients.", st.messages_sent_total);
    metric(out, "eddy_websocket_messages_dropped_total", "counter",
           "Messages not sent to slow consumers (slow_consumer_policy drop).",
           st.messages_dropped_total);
    metric(out, "eddy_websocket_slow_consumer_closes_total", "counter",
           "Connections closed as slow consumers (slow_consumer_policy close).",
           st.slow_consumer_closes_total);
    metric(out, "eddy_received_bytes_total", "counter",
           "Bytes read from connections, HTTP and WebSocket (TLS: decrypted).",
           st.bytes_received_total);
    metric(out, "eddy_sent_bytes_total", "counter",
           "Bytes written to connections (TLS: before encryption).", st.bytes_sent_total);
    metric_head(out, "eddy_log_lines_lost_total", "counter",
                "Log lines lost to failed writes (full disk, I/O error, closed pipe), by log.");
    fprintf(out, "eddy_log_lines_lost_total{log=\"error\"} %" PRIu64 "\n", st.log_lines_lost_total);
    fprintf(out, "eddy_log_lines_lost_total{log=\"access\"} %" PRIu64 "\n",
            st.access_log_lines_lost_total);

    /* Per event loop: how evenly the connections and the work are spread. */
    static const struct {
        const char *name, *type, *help;
    } per_loop[] = {
        {"eddy_loop_connections", "gauge", "Live connections owned by each event loop."},
        {"eddy_loop_websocket_messages_received_total", "counter",
         "WebSocket data messages received, by event loop."},
        {"eddy_loop_websocket_messages_sent_total", "counter",
         "WebSocket data messages queued, by event loop."},
        {"eddy_loop_received_bytes_total", "counter", "Bytes read, by event loop."},
        {"eddy_loop_sent_bytes_total", "counter", "Bytes written, by event loop."},
    };
    for (size_t m = 0; m < sizeof(per_loop) / sizeof(per_loop[0]); m++) {
        metric_head(out, per_loop[m].name, per_loop[m].type, per_loop[m].help);
        eddy_stats_t one;
        for (int i = 0; eddy_server_stats(g.srv, i, &one) == 0; i++) {
            uint64_t v = m == 0   ? one.connections
                         : m == 1 ? one.messages_received_total
                         : m == 2 ? one.messages_sent_total
                         : m == 3 ? one.bytes_received_total
                                  : one.bytes_sent_total;
            fprintf(out, "%s{loop=\"%d\"} %" PRIu64 "\n", per_loop[m].name, i, v);
        }
    }

    metrics_write(out, g.srv); /* Socket.IO, server API, proxy, loop lag */
    metric(out, "eddy_process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
           pf.resident_bytes);
    metric_head(out, "eddy_process_cpu_seconds_total", "counter",
                "User and system CPU time spent, in seconds.");
    fprintf(out, "eddy_process_cpu_seconds_total %.2f\n", pf.cpu_seconds);
    metric(out, "eddy_process_open_fds", "gauge", "Open file descriptors.", pf.open_fds);
    metric(out, "eddy_process_max_fds", "gauge", "The limit on open file descriptors.", pf.max_fds);
    if (fclose(out) != 0 || text == NULL) {
        free(text);
        answer(resp, 500, "text/plain; charset=utf-8", "out of memory\n");
        return;
    }
    eddy_response_status(resp, 200, NULL);
    eddy_response_header(resp, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    eddy_response_header(resp, "Cache-Control", "no-store");
    eddy_response_end(resp, text, len);
    free(text);
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
static bool map_path(const live_t *lv, const char *raw, char *out, size_t cap)
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
    int w = snprintf(out, cap, "%s%s", lv->root_real, decoded);
    return w > 0 && (size_t)w < cap;
}

static void serve_file(eddy_request_t *req, eddy_response_t *resp)
{
    const live_t *lv = atomic_load_explicit(&g.live, memory_order_acquire);
    char path[PATH_MAX + 64];
    if (lv->root_real == NULL || !map_path(lv, eddy_request_path(req), path, sizeof(path) - 64)) {
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
        snprintf(path + len, sizeof(path) - len, "%s", lv->index);
    }
    char real[PATH_MAX];
    size_t root_len = strlen(lv->root_real);
    int fd = -1;
    if (realpath(path, real) != NULL && strncmp(real, lv->root_real, root_len) == 0 &&
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
            else if (!realtime_ready())
                answer(resp, 503, "text/plain; charset=utf-8", "broker not ready\n");
            else
                answer(resp, 200, "text/plain; charset=utf-8", "ready\n");
            return;
        }
        if (strcmp(path, "/status") == 0) {
            answer_status(resp);
            return;
        }
        if (strcmp(path, "/metrics") == 0) {
            answer_metrics(resp);
            return;
        }
    }
    if (admin && admin_request(srv, req, resp))
        return;
    if (admin) {
        answer(resp, 404, "text/plain; charset=utf-8", "not found\n");
        return;
    }
    if (proxy_request(srv, req, resp))
        return;
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
        strcmp(eddy_request_path(req),
               atomic_load_explicit(&g.live, memory_order_acquire)->ws_path) != 0)
        return eddy_upgrade_refuse(req, 404, NULL, "not found\n");
    int verdict = auth_upgrade(req);
    return verdict != 0 ? verdict : proxy_upgrade(req);
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

static int pidfile_write(const char *path);

static void on_start(eddy_server_t *srv, void *user_data)
{
    /* A restart names itself in the pid file once it serves: should it fail before, the
     * file still names the process that goes on serving. If it cannot, it does not take
     * over (no readiness, exit 1): the old process would drain and exit with the file
     * naming it, and `eddy stop` would find nothing to stop while this one serves. */
    if (g.takeover_parent != 0 && pidfile_write(g.cfg->pid_file) < 0) {
        eddy_log(srv, EDDY_LOG_ERROR,
                 "restart: cannot write the pid file %s: not taking over; pid %d keeps serving",
                 g.cfg->pid_file, g.takeover_parent);
        g.takeover_refused = true;
        eddy_server_stop(srv);
        return;
    }
    char ready[64];
    snprintf(ready, sizeof(ready), "READY=1\nMAINPID=%d", (int)getpid());
    notify_systemd(ready);
    const live_t *lv = atomic_load(&g.live);
    if (lv->root_real == NULL)
        eddy_log(srv, EDDY_LOG_NOTICE, "document_root %s does not exist: static files answer 404",
                 g.cfg->document_root != NULL ? g.cfg->document_root : "(unset)");
    else
        eddy_log(srv, EDDY_LOG_INFO, "serving files from %s; WebSocket echo on %s", lv->root_real,
                 lv->ws_path);
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

static live_t *live_new(const cfg_t *cfg)
{
    live_t *lv = calloc(1, sizeof(*lv));
    if (lv == NULL)
        return NULL;
    lv->root_real = cfg->document_root != NULL ? realpath(cfg->document_root, NULL) : NULL;
    lv->index = strdup(cfg->index);
    lv->ws_path = strdup(cfg->ws_path);
    if (lv->index == NULL || lv->ws_path == NULL) {
        free(lv->root_real);
        free(lv->index);
        free(lv->ws_path);
        free(lv);
        return NULL;
    }
    return lv;
}

static void live_free_all(live_t *lv)
{
    while (lv != NULL) {
        live_t *older = lv->retired;
        free(lv->root_real);
        free(lv->index);
        free(lv->ws_path);
        free(lv);
        lv = older;
    }
}

/* Keys a reload applies while running; every other one needs `eddy restart`. */
static bool live_key(const char *section, const char *key)
{
    static const char *const keys[][2] = {
        {"log", "log_level"},
        {"log", "log_file"},
        {"static", "document_root"},
        {"static", "index"},
        {"websocket", "path"},
        {"server", "shutdown_delay"},
        {"server", "max_wait_time"},
        /* reload_engine_keys() */
        {"server", "max_connection"},
        {"server", "package_max_length"},
        {"tls", "ssl_cert_file"},
        {"tls", "ssl_key_file"},
        {"server", "websocket_ping_interval"},
        {"server", "websocket_ping_timeout"},
        /* realtime_reload() */
        {"socketio", "client_rooms"},
        {"api", "key"},
        {"api", "max_body"},
    };
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (strcmp(section, keys[i][0]) == 0 && strcmp(key, keys[i][1]) == 0)
            return true;
    return false;
}

/* Makes cfg's entry section.key what it is in from (or removes it), so that the next
 * reload compares with the value in force. */
static void cfg_take(cfg_t *cfg, const cfg_t *from, const char *section, const char *key)
{
    const char *value = cfg_get(from, section, key);
    for (size_t i = 0; i < cfg->entry_count; i++) {
        cfg_entry_t *e = &cfg->entries[i];
        if (strcmp(e->section, section) != 0 || strcmp(e->key, key) != 0)
            continue;
        char *copy = value != NULL ? strdup(value) : NULL;
        if (value != NULL && copy == NULL)
            return;
        free(e->value);
        if (copy != NULL) {
            e->value = copy;
        } else { /* unset now: the last entry takes its place */
            free(e->section);
            free(e->key);
            *e = cfg->entries[--cfg->entry_count];
        }
        return;
    }
    if (value == NULL)
        return;
    cfg_entry_t *grown = realloc(cfg->entries, (cfg->entry_count + 1) * sizeof(*grown));
    if (grown == NULL)
        return;
    cfg->entries = grown;
    cfg_entry_t *e = &grown[cfg->entry_count];
    e->section = strdup(section);
    e->key = strdup(key);
    e->value = strdup(value);
    e->engine = false;
    if (e->section == NULL || e->key == NULL || e->value == NULL) {
        free(e->section);
        free(e->key);
        free(e->value);
        return;
    }
    cfg->entry_count++;
}

static bool same(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* document_root, index, [websocket] path, shutdown_delay and max_wait_time from next. */
static void reload_daemon_keys(cfg_t *next)
{
    cfg_t *cur = g.cfg;
    if (!same(cur->document_root, next->document_root) || strcmp(cur->index, next->index) != 0 ||
        strcmp(cur->ws_path, next->ws_path) != 0) {
        live_t *lv = live_new(next);
        if (lv == NULL) {
            eddy_log(g.srv, EDDY_LOG_ERROR,
                     "reload: out of memory; [static] and [websocket] "
                     "keep their values");
        } else {
            if (!same(cur->document_root, next->document_root))
                eddy_log(g.srv, EDDY_LOG_NOTICE, "reload: [static] document_root %s%s",
                         next->document_root != NULL ? next->document_root : "(unset)",
                         lv->root_real == NULL ? " (does not exist: static files answer 404)" : "");
            if (strcmp(cur->index, next->index) != 0)
                eddy_log(g.srv, EDDY_LOG_NOTICE, "reload: [static] index %s", next->index);
            if (strcmp(cur->ws_path, next->ws_path) != 0)
                eddy_log(g.srv, EDDY_LOG_NOTICE, "reload: [websocket] path %s", next->ws_path);
            lv->retired = atomic_load(&g.live);
            atomic_store_explicit(&g.live, lv, memory_order_release);
            char *swap = cur->document_root;
            cur->document_root = next->document_root;
            next->document_root = swap;
            swap = cur->index;
            cur->index = next->index;
            next->index = swap;
            swap = cur->ws_path;
            cur->ws_path = next->ws_path;
            next->ws_path = swap;
        }
    }
    /* Read by this thread alone (the stop) and by the commands, which read the file. */
    if (cur->shutdown_delay != next->shutdown_delay)
        eddy_log(g.srv, EDDY_LOG_NOTICE, "reload: [server] shutdown_delay %g s",
                 next->shutdown_delay);
    cur->shutdown_delay = next->shutdown_delay;
    cur->max_wait_time = next->max_wait_time;
    static const char *const taken[][2] = {{"static", "document_root"},
                                           {"static", "index"},
                                           {"websocket", "path"},
                                           {"server", "shutdown_delay"},
                                           {"server", "max_wait_time"}};
    for (size_t i = 0; i < sizeof(taken) / sizeof(taken[0]); i++)
        cfg_take(cur, next, taken[i][0], taken[i][1]);
}

/*
 * The TLS certificate (read again even when its file names are the same: a renewal
 * replaces the files) and the limits the engine takes while running. Returns false, with
 * nothing changed, when the certificate cannot be loaded: the reload is refused then.
 */
static bool reload_engine_keys(cfg_t *next)
{
    const char *cert = cfg_get(next, "tls", "ssl_cert_file");
    const char *key = cfg_get(next, "tls", "ssl_key_file");
    if (g.tls_index >= 0) {
        int rc = eddy_server_reload_tls(g.srv, cert != NULL ? cert : "", key != NULL ? key : "");
        if (rc < 0) {
            eddy_log(g.srv, EDDY_LOG_ERROR,
                     "reload refused, the running configuration is kept: [tls] ssl_cert_file "
                     "%s, ssl_key_file %s: %s (the certificate in use stays)",
                     cert != NULL ? cert : "(unset)", key != NULL ? key : "(unset)",
                     eddy_strerror(rc));
            return false;
        }
        eddy_log(g.srv, EDDY_LOG_NOTICE,
                 "reload: [tls] certificate %s and key %s loaded (for new connections)", cert, key);
        cfg_take(g.cfg, next, "tls", "ssl_cert_file");
        cfg_take(g.cfg, next, "tls", "ssl_key_file");
    }
    eddy_options_t defaults;
    eddy_options_init(&defaults);
    static const char *const limits[] = {"max_connection", "package_max_length",
                                         "websocket_ping_interval", "websocket_ping_timeout"};
    for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
        const char *value = cfg_get(next, "server", limits[i]);
        if (same(value, cfg_get(g.cfg, "server", limits[i])))
            continue;
        char fallback[32]; /* unset now: the default again */
        if (i < 2)
            snprintf(fallback, sizeof(fallback), "%zu",
                     i == 0 ? defaults.max_connection : defaults.package_max_length);
        else
            snprintf(fallback, sizeof(fallback), "%g",
                     (i == 2 ? defaults.websocket_ping_interval_ms
                             : defaults.websocket_ping_timeout_ms) /
                         1000.0);
        int rc = eddy_server_set(g.srv, limits[i], value != NULL ? value : fallback);
        if (rc < 0) {
            eddy_log(g.srv, EDDY_LOG_ERROR, "reload: [server] %s %s: %s; kept the running value",
                     limits[i], value != NULL ? value : fallback, eddy_strerror(rc));
            continue;
        }
        eddy_log(g.srv, EDDY_LOG_NOTICE, "reload: [server] %s %s", limits[i],
                 value != NULL ? value : fallback);
        cfg_take(g.cfg, next, "server", limits[i]);
    }
    return true;
}

static void reload(void)
{
    char err[1024];
    cfg_t *next = cfg_load(g.cfg->path, g.cfg->base_dir, err, sizeof(err));
    if (next == NULL) {
        eddy_log(g.srv, EDDY_LOG_ERROR, "reload refused, the running configuration is kept: %s",
                 err);
        return;
    }
    if (!reload_engine_keys(next)) {
        cfg_free(next);
        return;
    }
    realtime_reload(g.srv, next);  /* [socketio] client_rooms, [api] key and max_body */
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
    eddy_server_reopen_logs(g.srv);   /* http_access_log too (an error is logged) */
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
    reload_daemon_keys(next);
    /* Everything else is fixed at start: name what changed, so nobody waits for it. */
    for (int pass = 0; pass < 2; pass++) {
        const cfg_t *a = pass == 0 ? next : g.cfg, *b = pass == 0 ? g.cfg : next;
        for (size_t i = 0; i < a->entry_count; i++) {
            if (strcmp(a->entries[i].section, "auth") == 0)
                continue; /* applied above */
            const cfg_entry_t *e = &a->entries[i];
            if (live_key(e->section, e->key))
                continue;
            const char *other = cfg_get(b, e->section, e->key);
            if (other != NULL && (pass == 1 || strcmp(other, e->value) == 0))
                continue; /* same, or already reported in the first pass */
            eddy_log(g.srv, EDDY_LOG_WARNING,
                     "reload: [%s] %s changed; it needs a restart (eddy restart; kept the "
                     "running value)",
                     e->section, e->key);
        }
    }
    cfg_free(next);
    eddy_log(g.srv, EDDY_LOG_NOTICE, "reload done");
}

static void restart(void);

/* SIGRTMIN, Swoole's signal for it: log_file and http_access_log are opened again by name
 * (logrotate's create mode), nothing else changes. A file that cannot be opened keeps its
 * old one, with an error in the log. */
static void reopen_logs(void)
{
    int rc = open_log_file(g.cfg->log_file);
    if (rc < 0)
        eddy_log(g.srv, EDDY_LOG_ERROR, "SIGRTMIN: cannot reopen log_file %s: %s", g.cfg->log_file,
                 strerror(-rc));
    if (eddy_server_reopen_logs(g.srv) == 0 && rc == 0)
        eddy_log(g.srv, EDDY_LOG_NOTICE, "SIGRTMIN: log files reopened");
}

/* shutdown_delay: /readyz answers 503 meanwhile (g.draining is set) while everything
 * else is served; a second SIGTERM or SIGINT ends the wait, a SIGHUP still reloads, a
 * SIGRTMIN reopens the logs, a SIGUSR2 (restart) is refused. */
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
        } else if (sig == SIGRTMIN) {
            reopen_logs();
        } else if (sig == SIGUSR2) {
            restart(); /* refused: the server is stopping */
        } else if (sig == SIGTERM || sig == SIGINT) {
            eddy_log(g.srv, EDDY_LOG_NOTICE, "%s: stopping now", strsignal(sig));
            return;
        }
    }
}

/* ---- restart: a new process takes the listening sockets over ---- */

/*
 * The new process is this program exec'd with the listening descriptors inherited and
 * named in EDDY_LISTEN_FDS ("main:3,tls:4,admin:5"), as systemd's LISTEN_FDS and nginx's
 * binary upgrade do: no socket file or protocol between the two, and the new process
 * stays in this one's service (its cgroup, its environment, under systemd the same unit,
 * which learns the new MAINPID). It shares the sockets, so connections are accepted by one
 * process or the other and none is refused. Once it reports ready on EDDY_READY_FD, this
 * one stops accepting, lets the plain HTTP requests it accepted finish (up to 1 s), and
 * stops as SIGTERM does: WebSocket clients get 1001 and reconnect to the new process.
 */
static void restart(void)
{
    if (atomic_load(&g.draining)) {
        eddy_log(g.srv, EDDY_LOG_WARNING, "SIGUSR2: restart refused: the server is stopping");
        atomic_fetch_add(&g.restart_failures, 1);
        return;
    }
    int fds[3] = {eddy_server_listener_fd(g.srv, 0),
                  g.tls_index >= 0 ? eddy_server_listener_fd(g.srv, g.tls_index) : -1,
                  g.admin_index >= 0 ? eddy_server_listener_fd(g.srv, g.admin_index) : -1};
    char listen_var[128] = "EDDY_LISTEN_FDS=";
    size_t n = strlen(listen_var);
    for (int i = 0; i < 3; i++)
        if (fds[i] >= 0)
            n += (size_t)snprintf(listen_var + n, sizeof(listen_var) - n, "%s%s:%d",
                                  n > 16 ? "," : "", inherit_names[i], fds[i]);
    int ready[2];
    if (pipe2(ready, O_CLOEXEC) != 0) {
        eddy_log(g.srv, EDDY_LOG_ERROR, "restart failed: pipe: %s", strerror(errno));
        return;
    }
    char ready_var[32], log_var[PATH_MAX + 32] = "";
    snprintf(ready_var, sizeof(ready_var), "EDDY_READY_FD=%d", ready[1]);
    /* `eddy start` logs to eddy.log without the file saying so: the new one must too. */
    if (g.cfg->log_file != NULL && cfg_get(g.cfg, "log", "log_file") == NULL)
        snprintf(log_var, sizeof(log_var), "EDDY_LOG_LOG_FILE=%s", g.cfg->log_file);
    extern char **environ;
    size_t count = 0;
    while (environ[count] != NULL)
        count++;
    char **envp = calloc(count + 4, sizeof(*envp));
    if (envp == NULL) {
        close(ready[0]);
        close(ready[1]);
        eddy_log(g.srv, EDDY_LOG_ERROR, "restart failed: out of memory");
        return;
    }
    size_t e = 0;
    for (size_t i = 0; i < count; i++)
        if (strncmp(environ[i], "EDDY_LISTEN_FDS=", 16) != 0 &&
            strncmp(environ[i], "EDDY_READY_FD=", 14) != 0)
            envp[e++] = environ[i];
    envp[e++] = listen_var;
    envp[e++] = ready_var;
    if (log_var[0] != '\0')
        envp[e++] = log_var;
    char *argv[] = {g.exe, "serve", "-c", g.cfg->path, NULL};
    if (g.cfg->path == NULL)
        argv[2] = NULL;
    sigset_t none;
    sigemptyset(&none);
    eddy_log(g.srv, EDDY_LOG_NOTICE, "SIGUSR2: restarting: starting %s with the listeners", g.exe);
    pid_t child = fork();
    if (child == 0) {
        /* Only async-signal-safe calls between fork and exec: this process has threads. */
        for (int i = 0; i < 3; i++)
            if (fds[i] >= 0)
                fcntl(fds[i], F_SETFD, 0);
        fcntl(ready[1], F_SETFD, 0);
        if (chdir(g.cfg->base_dir) != 0) /* relative paths in the file mean the same */
            _exit(127);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execve(g.exe, argv, envp);
        _exit(127);
    }
    int err = errno;
    free(envp);
    close(ready[1]);
    if (child < 0) {
        close(ready[0]);
        eddy_log(g.srv, EDDY_LOG_ERROR, "restart failed: fork: %s", strerror(err));
        return;
    }
    /* "PID\n" once its listeners serve; EOF if it failed (its log says why). */
    char buf[32] = {0};
    size_t got = 0;
    struct pollfd pfd = {.fd = ready[0], .events = POLLIN};
    while (got < sizeof(buf) - 1 && strchr(buf, '\n') == NULL && poll(&pfd, 1, 30000) > 0) {
        ssize_t r = read(ready[0], buf + got, sizeof(buf) - 1 - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(ready[0]);
    if (strchr(buf, '\n') == NULL) {
        kill(child, SIGKILL); /* dead already, or did not start in 30 s */
        waitpid(child, NULL, 0);
        eddy_log(g.srv, EDDY_LOG_ERROR,
                 "restart failed: the new process (pid %d) did not start; this one keeps "
                 "serving",
                 (int)child);
        atomic_fetch_add(&g.restart_failures, 1);
        return;
    }
    eddy_log(g.srv, EDDY_LOG_NOTICE,
             "restart: pid %d serves the listeners now; this one stops accepting and drains",
             atoi(buf));
    g.handed_over = true;
    atomic_store(&g.draining, true);
    eddy_server_close_listeners(g.srv);
    /* Once the listeners are closed every connection accepted is counted: the plain HTTP
     * ones (requests accepted just before) get up to 1 s to be answered. */
    struct timespec tick = {0, 10 * 1000 * 1000};
    for (int waited = 0; waited < 100; waited++) {
        eddy_stats_t st;
        eddy_server_stats(g.srv, -1, &st);
        if (eddy_server_listener_fd(g.srv, 0) < 0 && st.connections <= st.websocket_connections)
            break;
        nanosleep(&tick, NULL);
    }
    eddy_server_stop(g.srv);
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
            notify_systemd("RELOADING=1");
            reload();
            notify_systemd("READY=1");
        } else if (sig == SIGUSR2) {
            restart();
        } else if (sig == SIGRTMIN) {
            reopen_logs();
        } else if (!atomic_exchange(&g.draining, true)) {
            eddy_log(g.srv, EDDY_LOG_NOTICE, "%s: shutting down", strsignal(sig));
            notify_systemd("STOPPING=1");
            drain_delay(set);
            eddy_server_stop(g.srv);
        }
    }
}

/* ---- pid file ---- */

/* Refuses (-1) when the pid file names a live eddy other than the one being replaced. */
static int pidfile_check(const char *path)
{
    int running = pidfile_running(path);
    if (running > 0 && running != g.takeover_parent) {
        fprintf(stderr, "Failed! eddy is already running (pid %d, pid file %s).\n", running, path);
        return -1;
    }
    return 0;
}

/* Writes our pid to a temporary file renamed over path: a reader sees the old pid or the
 * new one, never an empty or partial file (a stale file is simply replaced). */
static int pidfile_write(const char *path)
{
    char tmp[PATH_MAX + 32];
    snprintf(tmp, sizeof(tmp), "%s.%d.tmp", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "eddy: cannot create the pid file %s: %s\n", path, strerror(errno));
        return -1;
    }
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
    ssize_t written = write(fd, buf, (size_t)n);
    const char *why = written < 0 ? strerror(errno) : written < n ? "short write" : NULL;
    if (close(fd) != 0 && why == NULL) /* a quota or NFS may say it only here */
        why = strerror(errno);
    if (why == NULL && rename(tmp, path) != 0)
        why = strerror(errno);
    if (why != NULL) {
        unlink(tmp);
        fprintf(stderr, "eddy: cannot write the pid file %s: %s\n", path, why);
        return -1;
    }
    return 0;
}

/* True if fd is a listening socket (anything else named by the environment is ignored:
 * closing it could close a descriptor of ours). */
static bool is_listening(int fd)
{
    int accepting = 0;
    socklen_t len = sizeof(accepting);
    return fd > STDERR_FILENO && getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) == 0 &&
           accepting;
}

/* systemd's socket activation (sd_listen_fds(3), by hand): LISTEN_FDS sockets from
 * descriptor 3 on, for this pid (LISTEN_PID), named by their socket unit's
 * FileDescriptorName= (main, tls, admin; a single unnamed one is the main listener). */
static void take_systemd_sockets(void)
{
    const char *pid = getenv("LISTEN_PID"), *count = getenv("LISTEN_FDS");
    const char *names = getenv("LISTEN_FDNAMES");
    if (pid == NULL || count == NULL || atoi(pid) != (int)getpid())
        return;
    int n = atoi(count);
    const char *name = names != NULL ? names : "";
    for (int fd = 3; fd < 3 + n && fd < 3 + 16; fd++) {
        size_t len = strcspn(name, ":");
        int which = -1;
        for (int i = 0; i < 3; i++)
            if (strlen(inherit_names[i]) == len && strncmp(name, inherit_names[i], len) == 0)
                which = i;
        if (which < 0 && n == 1 && (names == NULL || strcmp(names, "unknown") == 0))
            which = INHERIT_MAIN;
        if (!is_listening(fd)) {
            fprintf(stderr, "eddy: LISTEN_FDS: descriptor %d is not a listening socket\n", fd);
        } else if (which >= 0 && g.inherited[which] < 0) {
            fcntl(fd, F_SETFD, FD_CLOEXEC);
            g.inherited[which] = fd;
            g.from_systemd = true;
        } else {
            fprintf(stderr,
                    "eddy: systemd passed a socket named \"%.*s\": not one of main, "
                    "tls, admin; closed\n",
                    (int)len, name);
            close(fd);
        }
        name += len + (name[len] == ':');
    }
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
}

/* EDDY_LISTEN_FDS and EDDY_READY_FD from the process being replaced (see restart()),
 * taken out of the environment so that nothing started later inherits them; or
 * systemd's sockets. */
static void take_inherited(void)
{
    const char *fds = getenv("EDDY_LISTEN_FDS"), *ready = getenv("EDDY_READY_FD");
    if (fds == NULL) {
        take_systemd_sockets();
        return;
    }
    g.takeover_parent = (int)getppid();
    for (const char *p = fds; *p != '\0';) {
        size_t name_len = strcspn(p, ":");
        int fd = p[name_len] == ':' ? atoi(p + name_len + 1) : -1;
        for (int i = 0; i < 3; i++)
            if (strlen(inherit_names[i]) == name_len &&
                strncmp(p, inherit_names[i], name_len) == 0 && is_listening(fd))
                g.inherited[i] = fd;
        p += strcspn(p, ",");
        p += *p == ',';
    }
    if (ready != NULL && atoi(ready) > STDERR_FILENO && fcntl(atoi(ready), F_GETFD) >= 0) {
        g.ready_fd = atoi(ready);
        fcntl(g.ready_fd, F_SETFD, FD_CLOEXEC);
    }
    unsetenv("EDDY_LISTEN_FDS");
    unsetenv("EDDY_READY_FD");
}

/* True if the listening socket fd is bound to host:port (port 0: any port). */
static bool socket_is(int fd, const char *host, int port)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return false;
    const struct sockaddr_in *in4 = (const struct sockaddr_in *)&ss;
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
    int bound = ntohs(ss.ss_family == AF_INET6 ? in6->sin6_port : in4->sin_port);
    if (port != 0 && bound != port)
        return false;
    struct addrinfo hints = {.ai_family = ss.ss_family,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE},
                    *res;
    if (getaddrinfo(host, NULL, &hints, &res) != 0)
        return false;
    bool same = false;
    for (struct addrinfo *ai = res; ai != NULL && !same; ai = ai->ai_next) {
        if (ss.ss_family == AF_INET)
            same = memcmp(&((struct sockaddr_in *)ai->ai_addr)->sin_addr, &in4->sin_addr,
                          sizeof(in4->sin_addr)) == 0;
        else
            same = memcmp(&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr, &in6->sin6_addr,
                          sizeof(in6->sin6_addr)) == 0;
    }
    freeaddrinfo(res);
    return same;
}

/* Adds a listener: on the inherited socket when it is bound where the configuration asks
 * (a restart: a changed address is bound anew and the old socket closes), or wherever
 * systemd's socket unit bound it (the unit owns the address then); else a new one. */
static int add_listener(eddy_server_t *srv, int which, const char *host, int port, int flags)
{
    int fd = g.inherited[which];
    g.inherited[which] = -1;
    if (fd >= 0) {
        bool here = socket_is(fd, host, port);
        int index = here || g.from_systemd ? eddy_server_add_listener_fd(srv, fd, flags) : -1;
        if (index >= 0) {
            eddy_log(srv, EDDY_LOG_INFO, "%s listener taken over%s (port %d)", inherit_names[which],
                     g.from_systemd ? " from systemd" : "", eddy_server_listener_port(srv, index));
            if (!here)
                eddy_log(srv, EDDY_LOG_NOTICE,
                         "the %s socket systemd passed is not bound to %s:%d as the "
                         "configuration says: the socket unit's address is used",
                         inherit_names[which], host, port);
            return index;
        }
        eddy_log(srv, EDDY_LOG_NOTICE,
                 "the inherited %s listener is not bound to %s:%d: "
                 "binding that anew",
                 inherit_names[which], host, port);
        close(fd);
    }
    return eddy_server_add_listener(srv, host, port, flags);
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
    take_inherited();
    ssize_t exe_len = readlink("/proc/self/exe", g.exe, sizeof(g.exe) - 1);
    g.exe[exe_len > 0 ? exe_len : 0] = '\0';
    char *deleted = strstr(g.exe, " (deleted)"); /* replaced by a new build: exec that */
    if (deleted != NULL && deleted[10] == '\0')
        *deleted = '\0';
    live_t *first = live_new(cfg);
    if (first == NULL) {
        fprintf(stderr, "eddy: out of memory\n");
        return EXIT_FAIL;
    }
    atomic_store(&g.live, first);
    /* A file over RLIMIT_FSIZE (a quota-like full disk) fails the write with EFBIG, which
     * is counted like ENOSPC, instead of killing the server (SIGXFSZ's default). */
    signal(SIGXFSZ, SIG_IGN);
    g.console_fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
    int rc = open_log_file(cfg->log_file);
    if (rc < 0) {
        fprintf(stderr, "eddy: cannot open log_file %s: %s\n", cfg->log_file, strerror(-rc));
        return EXIT_FAIL;
    }
    if (pidfile_check(cfg->pid_file) < 0 ||
        (g.takeover_parent == 0 && pidfile_write(cfg->pid_file) < 0)) {
        for (int i = 0; i < 3; i++)
            if (g.inherited[i] >= 0)
                close(g.inherited[i]);
        return EXIT_FAIL;
    }

    int status = EXIT_FAIL;
    eddy_server_t *srv = eddy_server_new(NULL, 0);
    if (srv == NULL || (rc = add_listener(srv, INHERIT_MAIN, cfg->host, cfg->port, 0)) != 0) {
        fprintf(stderr, "eddy: cannot create the server on %s:%d\n", cfg->host, cfg->port);
        goto out;
    }
    g.srv = srv;
    /* The engine runs at debug (or trace) so that a reload can lower the level live; the
     * daemon's callback filters. trace is left off unless asked for: it costs per frame. */
    g.engine_level = cfg->log_level < EDDY_LOG_DEBUG ? cfg->log_level : EDDY_LOG_DEBUG;
    atomic_store(&g.log_level, cfg->log_level);
    admin_setup(cfg); /* [log] format, before the first line */
    eddy_on_log(srv, log_line);
    eddy_log_warning_fd(srv, g.console_fd >= 0 ? g.console_fd : STDERR_FILENO);
    for (size_t i = 0; i < cfg->entry_count; i++) {
        const cfg_entry_t *e = &cfg->entries[i];
        if (e->engine && strcmp(e->key, "log_level") != 0 &&
            (rc = eddy_server_set(srv, e->key, e->value)) < 0) {
            fprintf(stderr, "eddy: [%s] %s: %s\n", e->section, e->key, eddy_strerror(rc));
            goto out;
        }
    }
    eddy_server_set(srv, "log_level", cfg_level_name(g.engine_level));
    if (cfg->tls_port != 0 && (g.tls_index = add_listener(srv, INHERIT_TLS, cfg->tls_host,
                                                          cfg->tls_port, EDDY_LISTEN_TLS)) < 0) {
        fprintf(stderr, "eddy: [tls] listener: %s\n", eddy_strerror(g.tls_index));
        goto out;
    }
    if (cfg->admin_port != 0 && (g.admin_index = add_listener(srv, INHERIT_ADMIN, cfg->admin_host,
                                                              cfg->admin_port, 0)) < 0) {
        fprintf(stderr, "eddy: [admin] listener: %s\n", eddy_strerror(g.admin_index));
        goto out;
    }
    if (proxy_setup(srv, cfg) != 0) {
        fprintf(stderr, "eddy: [proxy]: out of memory\n");
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
    metrics_setup(srv);
    if (auth_apply(srv, cfg, false) < 0)
        goto out;

    /* Blocked before the loops start, so that every thread inherits the mask and only
     * the signal thread takes them. */
    static sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR2);
    sigaddset(&set, SIGRTMIN);
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
        status = g.takeover_refused ? EXIT_FAIL : EXIT_OK;
    }

out:
    for (int i = 0; i < 3; i++) /* inherited for listeners the configuration dropped */
        if (g.inherited[i] >= 0)
            close(g.inherited[i]);
    pidfile_remove(cfg->pid_file);
    auth_release();
    admin_free();
    proxy_free();    /* its watches and timers live on the server's loops */
    realtime_free(); /* the layer goes before its server */
    if (srv != NULL)
        eddy_server_free(srv);
    live_free_all(atomic_load(&g.live));
    if (g.ready_fd >= 0)
        close(g.ready_fd);
    if (g.console_fd >= 0)
        close(g.console_fd);
    return status;
}

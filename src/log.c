/* SPDX-License-Identifier: MIT */
/*
 * Log lines in Swoole's shape: "[2026-11-22 10:00:00 *1234.0]\tNOTICE\tmessage", where
 * the number after the pid is the loop that logged. Each line is formatted into one
 * buffer and written with a single write(), so lines from several threads never
 * interleave. Lines of any length are written whole. With a log callback set, the message
 * goes there instead.
 *
 * The access log is buffered per loop and written at the end of the loop iteration that
 * produced it (http.c defers the write) and when the loop stops.
 *
 * A write that fails (a full disk, EIO, a closed pipe) loses its lines: they are counted
 * (eddy_stats_t), never retried, and nothing blocks. The first failure is told once on
 * the warning descriptor (stderr), at most once a minute; the first write that works
 * again is followed by a line in the error log saying how many lines were lost.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "server.h"

#define LINE_MAX_BYTES 1024
/* A log output that fails again after it recovered is told again at most this often. */
#define WARNING_INTERVAL_MS 60000
/* eddy_log_write()'s most iovecs: a short write is finished from a copy on the stack. */
#define LOG_IOV_MAX 8

static const char *const level_names[] = {"TRACE",   "DEBUG", "INFO", "NOTICE",
                                          "WARNING", "ERROR", "NONE"};

/* Swoole's SWOOLE_LOG_* numbers, which log_level accepts, and the levels they name. */
static const int swoole_levels[] = {EDDY_LOG_DEBUG,  EDDY_LOG_TRACE,   EDDY_LOG_INFO,
                                    EDDY_LOG_NOTICE, EDDY_LOG_WARNING, EDDY_LOG_ERROR,
                                    EDDY_LOG_NONE};

/* Set while this thread runs the log callback: what it logs goes to the default output
 * rather than back into it. */
static _Thread_local bool in_log_callback;

int eddy__log_level_parse(const char *value)
{
    for (int i = 0; i < (int)EDDY__ARRAY_SIZE(level_names); i++) {
        if (strcasecmp(value, level_names[i]) == 0)
            return i;
    }
    if (value[0] >= '0' && value[0] <= '6' && value[1] == '\0')
        return swoole_levels[value[0] - '0'];
    return -1;
}

/* The index of the loop running on this thread if it is one of srv's, else -1. */
static int loop_index(const eddy_server_t *srv)
{
    const eddy__loop_t *loop = eddy__current_loop;
    return loop != NULL && loop->srv == srv ? loop->index : -1;
}

/* ---- failed writes ---- */

static uint64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The path of the file fd writes to (for the operator), or "descriptor N". */
static void fd_name(int fd, char *out, size_t cap)
{
    char link[64];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, out, cap - 1);
    if (n <= 0)
        n = snprintf(out, cap, "descriptor %d", fd);
    out[(size_t)n < cap ? (size_t)n : cap - 1] = '\0';
}

static uint64_t newlines(const char *data, size_t len)
{
    uint64_t lines = 0;
    for (const char *p = data, *end = data + len; (p = memchr(p, '\n', (size_t)(end - p))); p++)
        lines++;
    return lines;
}

/* The lines in [data, data + len) that a write did not reach: each newline ends one, and
 * bytes after the last newline are a line cut short. */
static uint64_t lines_in(const char *data, size_t len)
{
    return newlines(data, len) + (len > 0 && data[len - 1] != '\n');
}

/* Tells, on srv's warning descriptor, that writes to fd started failing, unless that is
 * fd's own file (it would fail too) or this file was told less than a minute ago. */
static void tell_failing(eddy_server_t *srv, eddy__log_sink_t *sink, int fd, const char *what,
                         int err)
{
    struct stat a, b;
    if (fstat(fd, &b) != 0)
        b.st_dev = b.st_ino = 0;
    uint64_t now = monotonic_ms(), last = atomic_load(&sink->warned_ms);
    bool same_file = atomic_load(&sink->warned_dev) == (uint64_t)b.st_dev &&
                     atomic_load(&sink->warned_ino) == (uint64_t)b.st_ino;
    if ((last != 0 && same_file && now - last < WARNING_INTERVAL_MS) ||
        !atomic_compare_exchange_strong(&sink->warned_ms, &last, now))
        return;
    atomic_store(&sink->warned_dev, (uint64_t)b.st_dev);
    atomic_store(&sink->warned_ino, (uint64_t)b.st_ino);
    int to = srv->warning_fd;
    if (to < 0 || to == fd || (fstat(to, &a) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino))
        return;
    char name[PATH_MAX];
    fd_name(fd, name, sizeof(name));
    char line[LINE_MAX_BYTES + PATH_MAX];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    localtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(line, sizeof(line), "[%Y-%m-%d %H:%M:%S", &tm);
    int loop = loop_index(srv);
    n += (size_t)snprintf(line + n, sizeof(line) - n,
                          " *%d.%d]\tWARNING\twrites to the %s %s fail (%s): its lines are lost "
                          "(counted in the server's stats) until writing works again\n",
                          (int)getpid(), EDDY__MAX(loop, 0), what, name, strerror(err));
    ssize_t ignored = write(to, line, EDDY__MIN(n, sizeof(line) - 1));
    (void)ignored;
}

/* Counts lines lost to a write to fd that failed with err, in the calling loop's stats
 * cell (cell NULL: not one of srv's loops). */
static void sink_failed(eddy_server_t *srv, eddy__log_sink_t *sink, uint64_t *cell, int fd,
                        const char *what, int err, uint64_t lines)
{
    if (cell != NULL)
        eddy__stat_add(cell, lines);
    else
        atomic_fetch_add(&sink->offloop, lines);
    atomic_fetch_add(&sink->lost, lines);
    atomic_store(&sink->error, err);
    if (!atomic_exchange(&sink->failing, true))
        tell_failing(srv, sink, fd, what, err);
}

/* A write to sink's output worked: if it was failing, its lost lines await the report. */
static inline void sink_worked(eddy__log_sink_t *sink)
{
    if (atomic_load_explicit(&sink->failing, memory_order_relaxed) &&
        atomic_exchange(&sink->failing, false))
        atomic_fetch_add(&sink->recovered, atomic_exchange(&sink->lost, 0));
}

static void vlog(const eddy_server_t *srv, int level, const char *fmt, va_list ap);

static void log_always(const eddy_server_t *srv, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void log_always(const eddy_server_t *srv, int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(srv, level, fmt, ap);
    va_end(ap);
}

/* Logs, once, how many lines sink's output lost while its writes failed (unfiltered by
 * log_level: the operator needs it to read the gap). */
static void report_recovered(const eddy_server_t *srv, eddy__log_sink_t *sink, const char *what,
                             int fd)
{
    if (atomic_load_explicit(&sink->recovered, memory_order_relaxed) == 0)
        return;
    uint64_t lost = atomic_exchange(&sink->recovered, 0);
    if (lost == 0)
        return;
    char name[PATH_MAX];
    fd_name(fd, name, sizeof(name));
    log_always(srv, EDDY__LOG_WARNING,
               "the %s %s is written again: %llu lines were lost while writes failed (%s)", what,
               name, (unsigned long long)lost, strerror(atomic_load(&sink->error)));
}

/* The calling thread's stats cell for lines lost to the error log, NULL off srv's loops. */
static uint64_t *log_lost_cell(const eddy_server_t *srv)
{
    eddy__loop_t *loop = eddy__current_loop;
    return loop != NULL && loop->srv == srv ? &loop->stats.log_lost : NULL;
}

/* Writes iov (whole lines, at most LOG_IOV_MAX parts) to srv's log with one writev(); a
 * short one (the disk filled up mid-line) gets one more write for the rest, which
 * finishes the line or says why not. Returns 0 or -errno, the lines lost counted. */
static int log_writev(eddy_server_t *srv, const struct iovec *iov, int iovcnt)
{
    int fd = srv->log_fd;
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    ssize_t n;
    do
        n = writev(fd, iov, iovcnt);
    while (n < 0 && errno == EINTR);
    if (n >= 0 && (size_t)n < total) {
        struct iovec rest[LOG_IOV_MAX];
        int count = 0;
        for (size_t skip = (size_t)n, i = 0; i < (size_t)iovcnt; i++) {
            if (skip >= iov[i].iov_len) {
                skip -= iov[i].iov_len;
                continue;
            }
            rest[count].iov_base = (char *)iov[i].iov_base + skip;
            rest[count++].iov_len = iov[i].iov_len - skip;
            skip = 0;
        }
        ssize_t more = writev(fd, rest, count); /* if it fails, errno says why */
        if (more >= 0) {
            n += more;
            errno = EIO; /* short twice: cut, with no reason given */
        }
    }
    if (n >= 0 && (size_t)n == total) {
        sink_worked(&srv->log_sink);
        return 0;
    }
    int err = errno;
    uint64_t lines = 0;
    for (size_t skip = n > 0 ? (size_t)n : 0, i = 0; i < (size_t)iovcnt; i++) {
        if (skip >= iov[i].iov_len) {
            skip -= iov[i].iov_len;
            continue;
        }
        /* A newline per line: the parts of one line are counted once, by its newline. */
        lines += newlines((const char *)iov[i].iov_base + skip, iov[i].iov_len - skip);
        skip = 0;
    }
    if (lines == 0)
        lines = 1; /* a line without its newline */
    sink_failed(srv, &srv->log_sink, log_lost_cell(srv), fd, "log", err, lines);
    return -err;
}

int eddy_log_write(eddy_server_t *srv, const struct iovec *iov, int iovcnt)
{
    if (srv == NULL || iov == NULL || iovcnt <= 0 || iovcnt > LOG_IOV_MAX)
        return EDDY_EINVAL;
    return log_writev(srv, iov, iovcnt);
}

void eddy_log_warning_fd(eddy_server_t *srv, int fd)
{
    srv->warning_fd = fd;
}

/* Opens path again on fd: dup2() replaces the file under the descriptor at once, so a
 * thread writing meanwhile writes to the old file or the new one, never to a closed
 * descriptor. Returns 0 or -errno (fd keeps its file). */
static int reopen_on(const char *path, int fd)
{
    int fresh = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fresh < 0)
        return -errno;
    int rc = dup2(fresh, fd) < 0 ? -errno : 0;
    close(fresh);
    return rc;
}

int eddy_server_reopen_logs(eddy_server_t *srv)
{
    int log_rc = 0, access_rc = 0;
    /* Under tls_lock, running, the access log stays open: the end of a run sets running
     * false under it before it closes the file. */
    pthread_mutex_lock(&srv->tls_lock);
    if (srv->opts.log_file != NULL && srv->log_fd > STDERR_FILENO)
        log_rc = reopen_on(srv->opts.log_file, srv->log_fd);
    if (atomic_load(&srv->running) && srv->access_fd > STDERR_FILENO)
        access_rc = reopen_on(srv->opts.http_access_log, srv->access_fd);
    pthread_mutex_unlock(&srv->tls_lock);
    if (log_rc < 0)
        eddy__log(srv, EDDY__LOG_ERROR, "cannot reopen log_file %s: %s (the old file is kept)",
                  srv->opts.log_file, strerror(-log_rc));
    if (access_rc < 0)
        eddy__log(srv, EDDY__LOG_ERROR,
                  "cannot reopen http_access_log %s: %s (the old file is kept)",
                  srv->opts.http_access_log, strerror(-access_rc));
    return log_rc < 0 ? log_rc : access_rc;
}

static void vlog(const eddy_server_t *srv, int level, const char *fmt, va_list ap)
{
    char line[LINE_MAX_BYTES];
    int loop = loop_index(srv);
    bool to_callback = srv != NULL && srv->on_log != NULL && !in_log_callback;
    size_t prefix = 0;
    if (!to_callback) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        struct tm tm;
        localtime_r(&ts.tv_sec, &tm);
        prefix = strftime(line, sizeof(line), "[%Y-%m-%d %H:%M:%S", &tm);
        prefix += (size_t)snprintf(line + prefix, sizeof(line) - prefix, " *%d.%d]\t%s\t",
                                   (int)getpid(), EDDY__MAX(loop, 0), level_names[level]);
    }
    size_t n = prefix;
    va_list again;
    va_copy(again, ap);
    int m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
    if (m < 0) {
        va_end(again);
        return;
    }
    char *out = line;
    if ((size_t)m >= sizeof(line) - n - 1) {
        /* Too long for the stack buffer (a long setting value, say): format it again into
         * one of its exact size, so the line is still written whole and at once. */
        char *big = malloc(n + (size_t)m + 2);
        if (big != NULL) {
            memcpy(big, line, n);
            vsnprintf(big + n, (size_t)m + 1, fmt, again);
            out = big;
        } else {
            static const char cut[] = " [log line cut: out of memory]";
            n = sizeof(line) - sizeof(cut) - 1;
            memcpy(line + n, cut, sizeof(cut) - 1);
            m = (int)(sizeof(cut) - 1);
        }
    }
    va_end(again);
    n += (size_t)m;
    if (to_callback) {
        out[n] = '\0';
        in_log_callback = true;
        srv->on_log((eddy_server_t *)srv, level, loop, out, n, srv->user_data);
        in_log_callback = false;
    } else {
        out[n++] = '\n';
        if (srv != NULL) {
            struct iovec iov = {out, n};
            log_writev((eddy_server_t *)srv, &iov, 1);
        } else {
            ssize_t ignored = write(STDERR_FILENO, out, n);
            (void)ignored;
        }
    }
    if (out != line)
        free(out);
    if (srv != NULL) /* after the callback: the report goes where every line goes */
        report_recovered(srv, &((eddy_server_t *)srv)->log_sink, "log", srv->log_fd);
}

void eddy__log(const eddy_server_t *srv, int level, const char *fmt, ...)
{
    if (srv != NULL && level < srv->opts.log_level)
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog(srv, level, fmt, ap);
    va_end(ap);
}

void eddy_log(eddy_server_t *srv, int level, const char *fmt, ...)
{
    if (fmt == NULL || level < EDDY_LOG_TRACE || level >= EDDY_LOG_NONE ||
        (srv != NULL && level < srv->opts.log_level))
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog(srv, level, fmt, ap);
    va_end(ap);
}

void eddy_on_log(eddy_server_t *srv, eddy_log_cb cb)
{
    srv->on_log = cb;
}

size_t eddy__log_escape(char *out, size_t cap, const char *in, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        bool plain = c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
        if (n + (plain ? 1 : 4) >= cap)
            break;
        if (plain) {
            out[n++] = (char)c;
            continue;
        }
        out[n++] = '\\';
        out[n++] = 'x';
        out[n++] = hex[c >> 4];
        out[n++] = hex[c & 15];
    }
    if (cap > 0)
        out[n] = '\0';
    return n;
}

/* ---- access log ---- */

/* Per loop (EDDY__SLOT_ACCESS_LOG), made by the first line. */
typedef struct access_log {
    eddy__buf_t out; /* lines not written yet */
} access_log_t;

static void access_log_free(void *data)
{
    eddy__buf_free(&((access_log_t *)data)->out);
}

static access_log_t *access_log(eddy__loop_t *loop)
{
    access_log_t *log = eddy__loop_slot(loop, EDDY__SLOT_ACCESS_LOG);
    if (log == NULL)
        log = eddy__loop_slot_make(loop, EDDY__SLOT_ACCESS_LOG, sizeof(*log), access_log_free);
    return log;
}

eddy__buf_t *eddy__access_log_buf(eddy__loop_t *loop)
{
    access_log_t *log = access_log(loop);
    return log != NULL ? &log->out : NULL;
}

void eddy__access_log_flush(eddy__loop_t *loop)
{
    access_log_t *log = eddy__loop_slot(loop, EDDY__SLOT_ACCESS_LOG);
    if (log == NULL)
        return;
    eddy__buf_t *out = &log->out;
    eddy_server_t *srv = loop->srv;
    int fd = srv->access_fd;
    if (out->len == 0 || fd < 0) {
        out->len = 0;
        return;
    }
    size_t done = 0;
    int err = 0;
    while (done < out->len) {
        ssize_t n = write(fd, out->data + done, out->len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            err = n < 0 ? errno : EIO;
            break;
        }
        done += (size_t)n;
    }
    if (done < out->len) {
        /* A full disk or a closed pipe: the lines are lost (counted), the loop goes on. */
        sink_failed(srv, &srv->access_sink, &loop->stats.access_lost, fd, "http_access_log", err,
                    lines_in(out->data + done, out->len - done));
    } else {
        sink_worked(&srv->access_sink);
        report_recovered(srv, &srv->access_sink, "http_access_log", fd);
    }
    out->len = 0;
}

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
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "server.h"

#define LINE_MAX_BYTES 1024

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
        int fd = srv != NULL ? srv->log_fd : STDERR_FILENO;
        ssize_t ignored = write(fd, out, n);
        (void)ignored;
    }
    if (out != line)
        free(out);
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
    int fd = loop->srv->access_fd;
    size_t done = 0;
    while (done < out->len && fd >= 0) {
        ssize_t n = write(fd, out->data + done, out->len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* a full disk or a closed pipe: the lines are lost, the loop goes on */
        done += (size_t)n;
    }
    out->len = 0;
}

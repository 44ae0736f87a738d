/*
 * Log lines in Swoole's shape: "[2026-11-22 10:00:00 *1234.0]\tNOTICE\tmessage". Each line
 * is formatted into one buffer and written with a single write(), so lines from several
 * threads never interleave. Lines of any length are written whole.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

static const char *const level_names[] = {"DEBUG",   "TRACE", "INFO", "NOTICE",
                                          "WARNING", "ERROR", "NONE"};

int eddy__log_level_parse(const char *value)
{
    for (int i = 0; i < (int)EDDY__ARRAY_SIZE(level_names); i++) {
        if (strcasecmp(value, level_names[i]) == 0)
            return i;
    }
    if (value[0] >= '0' && value[0] <= '6' && value[1] == '\0')
        return value[0] - '0';
    return -1;
}

void eddy__log(const eddy_server_t *srv, int level, const char *fmt, ...)
{
    if (srv != NULL && level < srv->opts.log_level)
        return;
    char line[1024];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    localtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(line, sizeof(line), "[%Y-%m-%d %H:%M:%S", &tm);
    /* Loop 0 runs on the thread that called eddy_server_start(), which is also where
     * settings and start-up are logged; other threads are counted as 0 too. */
    const eddy__loop_t *loop = eddy__current_loop;
    n += (size_t)snprintf(line + n, sizeof(line) - n, " *%d.%d]\t%s\t", (int)getpid(),
                          loop != NULL ? loop->index : 0, level_names[level]);
    va_list ap, again;
    va_start(ap, fmt);
    va_copy(again, ap);
    int m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
    va_end(ap);
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
    out[n++] = '\n';
    int fd = srv != NULL ? srv->log_fd : STDERR_FILENO;
    ssize_t ignored = write(fd, out, n);
    (void)ignored;
    if (out != line)
        free(out);
}

/* SPDX-License-Identifier: MIT */
/*
 * Logging (log.c): eddy's lines, the application's (eddy_log), the log callback, and the
 * per-loop buffer of the access log.
 */
#ifndef EDDY_LOG_H
#define EDDY_LOG_H

#include "eddy.h"

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

#endif /* EDDY_LOG_H */

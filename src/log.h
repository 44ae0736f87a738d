/* SPDX-License-Identifier: MIT */
/*
 * Logging (log.c): eddy's lines, the application's (eddy_log), the log callback, and the
 * per-loop buffer of the access log.
 */
#ifndef EDDY_LOG_H
#define EDDY_LOG_H

#include <stdatomic.h>
#include <stdint.h>

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

/*
 * The failure state of one log output (the error log or the access log), shared by every
 * thread that writes to it. Touched only when a write fails, and by one relaxed load per
 * successful write while it is not failing: a full disk costs nothing until it happens.
 * The lines lost by srv's loops are counted in their stats cells; those lost by other
 * threads in offloop.
 */
typedef struct eddy__log_sink {
    atomic_bool failing;         /* the last write failed */
    _Atomic uint64_t lost;       /* lines lost since failing began */
    _Atomic uint64_t recovered;  /* lines lost in a failure that ended, not reported yet */
    _Atomic uint64_t offloop;    /* lines lost by threads that are not srv's loops */
    atomic_int error;            /* errno of the last failed write */
    _Atomic uint64_t warned_ms;  /* monotonic time of the last warning on stderr; 0: none */
    _Atomic uint64_t warned_dev; /* ... and the file it was about (another one, reopened */
    _Atomic uint64_t warned_ino; /* in its place, is told at once) */
} eddy__log_sink_t;

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

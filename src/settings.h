/* SPDX-License-Identifier: MIT */
/*
 * Settings (settings.c): the options struct behind eddy_server_set().
 */
#ifndef EDDY_SETTINGS_H
#define EDDY_SETTINGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "deflate.h"

typedef struct eddy__options {
    int worker_num;
    size_t max_connection;
    int backlog;
    bool open_tcp_nodelay;
    size_t package_max_length;
    uint32_t heartbeat_check_interval_ms; /* as set; 0: unset */
    uint32_t heartbeat_idle_time_ms;      /* as set; 0: unset (2 * interval) */
    char *websocket_subprotocol;          /* comma-separated, server preference order */
    char *websocket_origins;              /* comma-separated allowed Origins; NULL/empty: all */
    bool open_websocket_close_frame;
    bool open_websocket_ping_frame;
    bool open_websocket_pong_frame;
    uint32_t websocket_close_timeout_ms;
    uint32_t websocket_ping_interval_ms; /* 0: no keep-alive pings */
    uint32_t websocket_ping_timeout_ms;  /* 0: an unanswered ping closes nothing */
    uint32_t http_header_timeout_ms;
    uint32_t http_body_timeout_ms; /* a deadline for the whole body, from the end of the head */
    uint32_t http_keepalive_timeout_ms;
    uint32_t websocket_upgrade_timeout_ms; /* a deferred upgrade's answer; 0: no bound */
    size_t http_max_header_size;
    int log_level;
    char *log_file;
    char *http_access_log; /* path, or "stderr"/"-"; NULL: off */
    bool websocket_compression;
    size_t websocket_compression_threshold; /* 0: compress only on EDDY_WS_FLAG_COMPRESS */
    int websocket_compression_level;
    int websocket_compression_mem_level;
    eddy__pmd_config_t pmd;
    bool enable_reuse_port;       /* a listening socket per loop (SO_REUSEPORT), not hand-off */
    size_t socket_buffer_size;    /* output a connection may hold; beyond it the policy applies */
    size_t buffer_high_watermark; /* push answers EDDY_QUEUED at or above it (0: 80% of size) */
    size_t buffer_low_watermark;  /* drain fires when a connection falls to it again */
    int slow_consumer_policy;     /* EDDY__SLOW_CLOSE or EDDY__SLOW_DROP */
    size_t socket_buffer_soft_limit; /* over it for soft_seconds, the policy applies (0: off) */
    int socket_buffer_soft_seconds;  /* how long output may stay over the soft limit */
    /* Derived by eddy__options_resolve() from the values set above, which it never
     * changes (so a restart derives them again from what the application set). */
    size_t high_watermark;          /* buffer_high_watermark or its default */
    size_t admit_limit;             /* output admitted without a closer look (the lower limit) */
    uint32_t heartbeat_interval_ms; /* 0: no heartbeat */
    uint32_t heartbeat_idle_ms;
    int task_worker_num;
    char *ssl_cert_file;
    char *ssl_key_file;
    char *ssl_ciphers;
    char *ssl_protocols; /* "TLSv1.2,TLSv1.3" by default */
} eddy__options_t;

enum { EDDY__SLOW_CLOSE, EDDY__SLOW_DROP };
#define EDDY__SOFT_TICK_SHIFT 7 /* 128 ms: the granularity of socket_buffer_soft_seconds */

void eddy__options_init(eddy__options_t *opts);
/* buffer_high_watermark, with its default applied (computed when the server starts). */
static inline size_t eddy__high_watermark(const eddy__options_t *opts)
{
    return opts->high_watermark;
}
/* Fills in the values derived from settings (defaults that depend on others), leaving the
 * values the application set as they are. */
void eddy__options_resolve(eddy__options_t *opts);
void eddy__options_free(eddy__options_t *opts);

#endif /* EDDY_SETTINGS_H */

/* SPDX-License-Identifier: MIT */
/*
 * Observability of the eddy program: the metrics the daemon adds to /metrics beyond the
 * engine's (cmd/metrics.c: Socket.IO, server API, backend proxy, event-loop lag), the admin
 * page on the [admin] listener and the log's format and recent errors (cmd/admin.c).
 * Public headers only, like every file of cmd/.
 */
#ifndef EDDY_CMD_ADMIN_H
#define EDDY_CMD_ADMIN_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "backend.h"
#include "cmd.h"

/* ---- cmd/metrics.c ---- */

/* Before the server starts: measures each loop's lag from its first connection on (a
 * 500 ms timer that notes how late it runs; eddy_on_connect is taken for that). */
void metrics_setup(eddy_server_t *srv);
/* A server API call answered with status (cmd/api.c); method as in the path. Any thread. */
void metrics_api_call(const char *method, int status);
/* A Socket.IO CONNECT the daemon refused with status (401, 403, or 500). Any thread. */
void metrics_connect_refused(int status);
/* Writes the daemon's families (Prometheus text format 0.0.4) to out. */
void metrics_write(FILE *out, eddy_server_t *srv);
/* The lag of loop i in seconds, last measured and the largest of the last 10 s; false
 * when the loop measured nothing yet. */
bool metrics_loop_lag(int loop, double *last, double *max);
/* Writes a metric family's HELP and TYPE lines (type "counter", "gauge"...) to out, for
 * /metrics (cmd/serve.c) and metrics_write(). */
void metric_head(FILE *out, const char *name, const char *type, const char *help);
/* A family of one sample without labels: its head, then "name value". */
void metric(FILE *out, const char *name, const char *type, const char *help, uint64_t value);

/* The backend proxy's counters (cmd/proxy.c); false when there is no proxy. */
bool proxy_stats(backend_stats_t *out);

/* ---- cmd/admin.c ---- */

/* Validates [admin] password and [log] format: 1 if section.key is one of them (*why set
 * to the reason when value is bad, else NULL), 0 if it is not. */
int admin_check_key(const char *section, const char *key, const char *value, const char **why);
/* Takes [admin] password and [log] format from cfg, before the server starts. */
void admin_setup(const cfg_t *cfg);
/* Forgets the password (at exit). */
void admin_free(void);
/* Answers the admin page's requests (/admin, /admin/stats) on the admin listener: true
 * when the request was one of them. */
bool admin_request(eddy_server_t *srv, eddy_request_t *req, eddy_response_t *resp);
/* Every log line the daemon writes passes here first: warnings and errors are kept in a
 * ring of the last ADMIN_RECENT (the admin page shows them). With [log] format = json it
 * writes the line as one JSON object to srv's log (eddy_log_write(): a failed write is
 * counted) and returns true (the caller writes nothing). Any thread; one short mutex per
 * warning or error, none for other lines. */
#define ADMIN_RECENT 50
bool admin_log_line(eddy_server_t *srv, int level, int loop, const char *msg, size_t len);

#endif /* EDDY_CMD_ADMIN_H */

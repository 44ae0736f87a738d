/* SPDX-License-Identifier: MIT */
/*
 * The daemon's families in /metrics beyond the engine's (admin.h): the Socket.IO layer's
 * (eddy_rt_stats(), the namespaces' sockets and rooms), the server API's calls by method
 * and status, the backend proxy's requests by outcome, and each event loop's lag.
 *
 * Lag: a timer on each loop every LAG_INTERVAL_MS notes how late it runs against the time
 * it was due (its loop was busy with other work meanwhile): 0 on an idle loop, the length
 * of the longest callback otherwise. The samples of the last LAG_SAMPLES periods are kept
 * per loop, written by their loop only (relaxed stores) and read by the scrape.
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "admin.h"
#include "realtime.h"

#define LAG_INTERVAL_MS 500
#define LAG_SAMPLES     20 /* 10 s */
#define LAG_LOOPS       256

typedef struct loop_lag {
    _Alignas(64) atomic_bool started; /* set on the loop's thread only */
    uint64_t due_ns;                  /* when the next tick is due (loop's thread only) */
    atomic_uint next;                 /* samples written so far */
    _Atomic uint64_t sample_ns[LAG_SAMPLES];
} loop_lag_t;

static const char *const api_methods[] = {"emit",     "publish", "disconnect", "join",    "leave",
                                          "presence", "history", "rooms",      "sockets", "stats"};
#define API_METHODS (sizeof(api_methods) / sizeof(api_methods[0]) + 1) /* + "other" */
static const int api_statuses[] = {200, 400, 401, 404, 405, 413, 500, 503};
#define API_STATUSES (sizeof(api_statuses) / sizeof(api_statuses[0]) + 1) /* + "other" */

static struct {
    eddy_server_t *srv;
    loop_lag_t lag[LAG_LOOPS];
    atomic_uint_fast64_t api[API_METHODS][API_STATUSES];
    atomic_uint_fast64_t refused_401, refused_403;
} M;

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void lag_tick(eddy_server_t *srv, uint64_t timer_id, void *arg)
{
    loop_lag_t *l = arg;
    uint64_t now = mono_ns();
    uint64_t late = now > l->due_ns ? now - l->due_ns : 0;
    unsigned n = atomic_load_explicit(&l->next, memory_order_relaxed);
    atomic_store_explicit(&l->sample_ns[n % LAG_SAMPLES], late, memory_order_relaxed);
    atomic_store_explicit(&l->next, n + 1, memory_order_release);
    l->due_ns = now + (uint64_t)LAG_INTERVAL_MS * 1000000u;
}

/* A loop's first connection starts its timer (the server has no per-loop start event). */
static void on_connect(eddy_server_t *srv, eddy_fd_t fd, void *user_data)
{
    int i = eddy_loop_index(srv);
    if (i < 0 || i >= LAG_LOOPS || atomic_load_explicit(&M.lag[i].started, memory_order_relaxed))
        return;
    loop_lag_t *l = &M.lag[i];
    l->due_ns = mono_ns() + (uint64_t)LAG_INTERVAL_MS * 1000000u;
    if (eddy_timer_tick(srv, LAG_INTERVAL_MS, lag_tick, l) != 0)
        atomic_store_explicit(&l->started, true, memory_order_relaxed);
}

void metrics_setup(eddy_server_t *srv)
{
    M.srv = srv;
    eddy_on_connect(srv, on_connect);
}

bool metrics_loop_lag(int loop, double *last, double *max)
{
    if (loop < 0 || loop >= LAG_LOOPS)
        return false;
    loop_lag_t *l = &M.lag[loop];
    unsigned n = atomic_load_explicit(&l->next, memory_order_acquire);
    if (n == 0)
        return false;
    uint64_t top = 0;
    for (unsigned k = 0; k < LAG_SAMPLES && k < n; k++) {
        uint64_t v = atomic_load_explicit(&l->sample_ns[k], memory_order_relaxed);
        top = v > top ? v : top;
    }
    *last =
        (double)atomic_load_explicit(&l->sample_ns[(n - 1) % LAG_SAMPLES], memory_order_relaxed) /
        1e9;
    *max = (double)top / 1e9;
    return true;
}

void metrics_api_call(const char *method, int status)
{
    size_t m = 0, s = 0;
    while (m < API_METHODS - 1 && strcmp(api_methods[m], method) != 0)
        m++;
    while (s < API_STATUSES - 1 && api_statuses[s] != status)
        s++;
    atomic_fetch_add_explicit(&M.api[m][s], 1, memory_order_relaxed);
}

void metrics_connect_refused(int status)
{
    if (status == 401)
        atomic_fetch_add_explicit(&M.refused_401, 1, memory_order_relaxed);
    else if (status == 403)
        atomic_fetch_add_explicit(&M.refused_403, 1, memory_order_relaxed);
}

void metric_head(FILE *out, const char *name, const char *type, const char *help)
{
    fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void metric(FILE *out, const char *name, const char *type, const char *help, uint64_t value)
{
    metric_head(out, name, type, help);
    fprintf(out, "%s %" PRIu64 "\n", name, value);
}

/* A label value: Prometheus escapes backslash, double quote and newline. */
static void label_value(FILE *out, const char *s)
{
    for (; *s != '\0'; s++) {
        if (*s == '\\' || *s == '"')
            fputc('\\', out);
        if (*s == '\n')
            fputs("\\n", out);
        else
            fputc(*s, out);
    }
}

static void count_room(const char *room, void *arg)
{
    (*(uint64_t *)arg)++;
}

static uint64_t sub0(uint64_t a, uint64_t b)
{
    return a > b ? a - b : 0;
}

static void write_socketio(FILE *out, eddy_rt_t *rt)
{
    eddy_rt_stats_t st;
    eddy_rt_stats(rt, &st);
    static const char *const transports[] = {"polling", "websocket"};
    metric_head(
        out, "eddy_socketio_connections", "gauge",
        "Open Engine.IO sessions (Socket.IO clients), by Engine.IO protocol and transport.");
    for (int p = 0; p < 2; p++)
        for (int t = 0; t < 2; t++)
            fprintf(out, "eddy_socketio_connections{eio=\"%d\",transport=\"%s\"} %" PRIu64 "\n",
                    p + 3, transports[t], st.clients[p][t]);
    metric_head(out, "eddy_socketio_handshakes_total", "counter",
                "Engine.IO sessions opened, by protocol and first transport.");
    for (int p = 0; p < 2; p++)
        for (int t = 0; t < 2; t++)
            fprintf(out,
                    "eddy_socketio_handshakes_total{eio=\"%d\",transport=\"%s\"} %" PRIu64 "\n",
                    p + 3, transports[t], st.handshakes_total[p][t]);
    metric_head(out, "eddy_socketio_upgrades_total", "counter",
                "Long-polling sessions upgraded to WebSocket, by protocol.");
    for (int p = 0; p < 2; p++)
        fprintf(out, "eddy_socketio_upgrades_total{eio=\"%d\"} %" PRIu64 "\n", p + 3,
                st.upgrades_total[p]);
    metric(out, "eddy_socketio_handshake_failures_total", "counter",
           "Engine.IO sessions the layer could not take (out of memory).",
           st.handshake_failures_total);
    static const char *const codes[] = {
        "transport_unknown", "session_id_unknown", "bad_handshake_method",
        "bad_request",       "forbidden",          "unsupported_protocol_version"};
    metric_head(out, "eddy_socketio_request_errors_total", "counter",
                "Engine.IO requests refused (HTTP 400 or 403), by Engine.IO error code.");
    for (int c = 0; c < 6; c++)
        fprintf(out, "eddy_socketio_request_errors_total{code=\"%d\",reason=\"%s\"} %" PRIu64 "\n",
                c, codes[c], st.request_errors_total[c]);
    metric(out, "eddy_socketio_connects_total", "counter",
           "Namespace CONNECTs accepted, recovered ones included.", st.connects_total);
    uint64_t r401 = atomic_load_explicit(&M.refused_401, memory_order_relaxed);
    uint64_t r403 = atomic_load_explicit(&M.refused_403, memory_order_relaxed);
    metric_head(out, "eddy_socketio_connect_refusals_total", "counter",
                "Namespace CONNECTs refused (CONNECT_ERROR), by reason.");
    fprintf(out,
            "eddy_socketio_connect_refusals_total{reason=\"invalid_namespace\"} %" PRIu64 "\n"
            "eddy_socketio_connect_refusals_total{reason=\"unauthorized\"} %" PRIu64 "\n"
            "eddy_socketio_connect_refusals_total{reason=\"forbidden\"} %" PRIu64 "\n"
            "eddy_socketio_connect_refusals_total{reason=\"other\"} %" PRIu64 "\n",
            st.connect_invalid_namespace_total, r401, r403,
            sub0(st.connect_refused_total, r401 + r403));
    metric_head(out, "eddy_socketio_recoveries_total", "counter",
                "Reconnections that asked for connection state recovery, by outcome.");
    fprintf(out,
            "eddy_socketio_recoveries_total{outcome=\"recovered\"} %" PRIu64 "\n"
            "eddy_socketio_recoveries_total{outcome=\"not_recovered\"} %" PRIu64 "\n",
            st.recovered_total, st.not_recovered_total);
    metric(out, "eddy_socketio_events_received_total", "counter",
           "Events received from clients (EVENT and BINARY_EVENT packets).",
           st.events_received_total);
    metric(out, "eddy_socketio_events_sent_total", "counter",
           "Events and acknowledgements emitted to one socket.", st.events_sent_total);
    metric(out, "eddy_socketio_broadcasts_total", "counter",
           "Broadcasts to rooms or namespaces (each counted once, whatever its recipients).",
           st.broadcasts_total);
    eddy_rt_nsp_t *nsp;
    metric_head(out, "eddy_socketio_sockets", "gauge", "Connected sockets, by namespace.");
    for (size_t i = 0; (nsp = realtime_nsp_at(i)) != NULL; i++) {
        fputs("eddy_socketio_sockets{namespace=\"", out);
        label_value(out, eddy_rt_nsp_name(nsp));
        fprintf(out, "\"} %zu\n", eddy_rt_nsp_count(nsp));
    }
    metric_head(out, "eddy_socketio_rooms", "gauge",
                "Rooms with members, by namespace (the sockets' own rooms not counted).");
    for (size_t i = 0; (nsp = realtime_nsp_at(i)) != NULL; i++) {
        uint64_t rooms = 0;
        realtime_rooms(nsp, count_room, &rooms);
        fputs("eddy_socketio_rooms{namespace=\"", out);
        label_value(out, eddy_rt_nsp_name(nsp));
        fprintf(out, "\"} %" PRIu64 "\n", rooms);
    }
}

/* The scale-out broker's figures ([broker] redis_url), when there is one. */
static void write_broker(FILE *out)
{
    eddy_rt_broker_status_t b;
    if (!realtime_broker(&b))
        return;
    metric(out, "eddy_broker_up", "gauge",
           "1 while connected to Redis with every subscription active.", b.state == 2);
    metric(out, "eddy_broker_ready", "gauge",
           "1 while this node's own round trip through Redis is recent (as /readyz).", b.ready);
    metric(out, "eddy_broker_nodes", "gauge", "Nodes alive in the cluster, this one included.",
           b.nodes);
    metric(out, "eddy_broker_published_total", "counter", "Broadcasts Redis confirmed.",
           b.published_total);
    metric(out, "eddy_broker_delivered_total", "counter",
           "Broadcasts Redis delivered to this node.", b.delivered_total);
    metric(out, "eddy_broker_buffered", "gauge", "Requests waiting for Redis now.", b.buffered);
    metric(out, "eddy_broker_buffered_bytes", "gauge", "Bytes of the requests waiting for Redis.",
           b.buffered_bytes);
    metric(out, "eddy_broker_dropped_total", "counter",
           "Requests dropped: the queue bound, or lost with a connection.", b.dropped_total);
    metric(out, "eddy_broker_retried_total", "counter",
           "Requests a demoted master refused, queued again for the next one, or held "
           "while their slot was migrated (Sentinel, Cluster).",
           b.retried_total);
    metric(out, "eddy_broker_slots_moved_total", "counter",
           "Redis Cluster slots moved to another master while running (resharding, "
           "followed; when not, ready is 0: restart the node).",
           b.slots_moved_total);
    metric(out, "eddy_broker_reconnects_total", "counter",
           "Reconnections to Redis after an outage.", b.reconnects_total);
    metric(out, "eddy_broker_gaps_total", "counter",
           "Outages after which clients were made to recover from history.", b.gaps_total);
    metric(out, "eddy_broker_master_switches_total", "counter",
           "Times Redis Sentinel or Redis Cluster named another master (redis+sentinel://, "
           "redis+cluster://).",
           b.master_switches_total);
    metric(out, "eddy_broker_presence_repairs_total", "counter",
           "Namespaces whose presence was written to Redis again after dropped writes.",
           b.presence_repairs_total);
    metric(out, "eddy_broker_messages_missed_total", "counter",
           "Broadcasts of other nodes to rooms held here that never arrived (no history).",
           b.messages_missed_total);
    metric(out, "eddy_broker_subscriptions", "gauge", "Redis channels subscribed now.",
           b.subscriptions);
    if (b.round_trip_age_ms != UINT64_MAX) {
        metric_head(out, "eddy_broker_round_trip_age_seconds", "gauge",
                    "Age of this node's last round trip through Redis.");
        fprintf(out, "eddy_broker_round_trip_age_seconds %.3f\n",
                (double)b.round_trip_age_ms / 1000);
    }
    /* Several Redis: which shard each namespace is on, and whether it crosses nodes now. */
    char shard[EDDY_RT_SHARD_NAME_SIZE];
    eddy_rt_nsp_t *nsp;
    for (size_t i = 0; (nsp = realtime_nsp_at(i)) != NULL; i++) {
        int up = eddy_rt_nsp_shard(nsp, shard);
        if (up < 0)
            break;
        if (i == 0)
            metric_head(out, "eddy_broker_namespace_up", "gauge",
                        "Several Redis: 1 while the shard of the namespace is up; 0: its "
                        "broadcasts are delivered on this node and may not reach the others.");
        fputs("eddy_broker_namespace_up{namespace=\"", out);
        label_value(out, eddy_rt_nsp_name(nsp));
        fputs("\",shard=\"", out);
        label_value(out, shard);
        fprintf(out, "\"} %d\n", up);
    }
}

void metrics_write(FILE *out, eddy_server_t *srv)
{
    eddy_rt_t *rt = realtime_rt();
    if (rt != NULL)
        write_socketio(out, rt);
    write_broker(out);

    metric_head(out, "eddy_api_requests_total", "counter",
                "Server API requests (/api/METHOD), by method and HTTP status.");
    for (size_t m = 0; m < API_METHODS; m++) {
        for (size_t s = 0; s < API_STATUSES; s++) {
            uint64_t v = atomic_load_explicit(&M.api[m][s], memory_order_relaxed);
            if (v == 0)
                continue;
            fprintf(out, "eddy_api_requests_total{method=\"%s\",status=\"",
                    m < API_METHODS - 1 ? api_methods[m] : "other");
            if (s < API_STATUSES - 1)
                fprintf(out, "%d", api_statuses[s]);
            else
                fputs("other", out);
            fprintf(out, "\"} %" PRIu64 "\n", v);
        }
    }

    backend_stats_t bs;
    static const char *const outcomes[BACKEND_ERRORS] = {
        "ok", "busy", "refused", "timeout", "server_error", "too_big", "failed", "canceled"};
    if (proxy_stats(&bs)) {
        metric_head(out, "eddy_proxy_requests_total", "counter",
                    "Requests forwarded to the backend ([proxy]), by outcome.");
        for (int e = 0; e < BACKEND_ERRORS; e++)
            fprintf(out, "eddy_proxy_requests_total{outcome=\"%s\"} %" PRIu64 "\n", outcomes[e],
                    bs.results[e]);
    }

    metric_head(
        out, "eddy_loop_lag_seconds", "gauge",
        "How late each event loop ran its last 0.5 s timer (from its first connection on).");
    double last, max;
    for (int i = 0; i < LAG_LOOPS; i++)
        if (metrics_loop_lag(i, &last, &max))
            fprintf(out, "eddy_loop_lag_seconds{loop=\"%d\"} %.6f\n", i, last);
    metric_head(out, "eddy_loop_lag_max_seconds", "gauge",
                "The largest lag of each event loop over the last 10 seconds.");
    for (int i = 0; i < LAG_LOOPS; i++)
        if (metrics_loop_lag(i, &last, &max))
            fprintf(out, "eddy_loop_lag_max_seconds{loop=\"%d\"} %.6f\n", i, max);
}

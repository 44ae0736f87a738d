/* SPDX-License-Identifier: MIT */
/*
 * socketio: the Socket.IO test application of the real-time layer, the same application
 * as tests/clients/sio_reference.js on Node's socket.io 4.8 (tests and benchmarks run both).
 * Socket.IO v5 (Engine.IO 4) and v4 (Engine.IO 3) clients on /socket.io/, WebSocket and
 * HTTP long-polling. The handlers (what each event does) are in socketio_app.h, which the
 * fuzz drivers of the real-time layer share.
 *
 * With --redis URL several of them on one Redis form one cluster (README "Scale-out"):
 * rooms, broadcasts and recovery then span the nodes. --redis URL,URL,... shards the
 * namespaces over several Redis (--namespaces N adds /n1 ... /nN to have some to spread).
 */
#include <stdint.h>

#include "eddy_rt.h"
#include "example.h"
#include "socketio_app.h"

static const example_option_spec_t options[] = {
    {"--ping-interval", "MS", "Engine.IO pingInterval (default 25000)"},
    {"--ping-timeout", "MS", "Engine.IO pingTimeout (default 20000)"},
    {"--connect-timeout", "MS", "Socket.IO connectTimeout (default 45000)"},
    {"--recovery", "MS", "connection state recovery: maxDisconnectionDuration (0: off)"},
    {"--history", "N",
     "events kept per room (history_max_messages; default 0, 1000 with recovery)"},
    {"--redis", "URL",
     "scale-out: redis://host:port of the cluster's Redis, or several separated by commas "
     "(namespaces sharded over them; default: one node)"},
    {"--redis-emitter", "KEY",
     "with --redis: broadcast what Socket.IO's Redis emitter publishes under KEY (socket.io)"},
    {"--namespaces", "N", "also serve /n1 ... /nN, each as /custom (default 0)"},
    {NULL, NULL, NULL},
};

static const example_spec_t spec = {
    .name = "socketio",
    .summary = "The Socket.IO test application (tests/clients/sio_reference.js) on eddy_rt.",
    .options = options,
};

/* A number of milliseconds (any uint32_t). */
static uint32_t ms_option(int argc, char **argv, const char *name, uint32_t fallback)
{
    return (uint32_t)example_number(argc, argv, &spec, name, 0, UINT32_MAX, fallback);
}

int main(int argc, char **argv)
{
    eddy_server_t *srv = example_new(argc, argv, &spec);
    eddy_rt_options_t opts;
    eddy_rt_options_init(&opts);
    opts.ping_interval_ms = ms_option(argc, argv, "--ping-interval", opts.ping_interval_ms);
    opts.ping_timeout_ms = ms_option(argc, argv, "--ping-timeout", opts.ping_timeout_ms);
    opts.connect_timeout_ms = ms_option(argc, argv, "--connect-timeout", opts.connect_timeout_ms);
    opts.recovery_max_disconnection_ms = ms_option(argc, argv, "--recovery", 0);
    opts.history_max_messages =
        (size_t)example_number(argc, argv, &spec, "--history", 0, UINT32_MAX, 0);
    opts.redis_url = example_option(argc, argv, "--redis", NULL);
    opts.redis_emitter_prefix = example_option(argc, argv, "--redis-emitter", NULL);
    eddy_rt_t *rt = eddy_rt_new(srv, &opts);
    if (rt == NULL)
        return 1;
    socketio_app_setup(eddy_rt_of(rt, "/"), true);
    socketio_app_setup(eddy_rt_of(rt, "/custom"), false);
    unsigned long extra = example_number(argc, argv, &spec, "--namespaces", 0, 1000, 0);
    for (unsigned long i = 1; i <= extra; i++) {
        char name[16];
        snprintf(name, sizeof(name), "/n%lu", i);
        socketio_app_setup(eddy_rt_of(rt, name), false);
    }
    eddy_rt_install(rt, NULL);
    int rc = example_serve(srv);
    eddy_rt_free(rt); /* first: its broker may still hand results to the server */
    eddy_server_free(srv);
    return rc;
}

/* SPDX-License-Identifier: MIT */
/*
 * The Engine.IO echo application on eddy's Engine.IO layer (rt/eio.h), for the tests:
 * every message packet goes back to the session that sent it, text as text and binary as
 * binary. tests/clients/eio_reference.js is the same application on Node's engine.io 6.6,
 * for differential tests. Path /socket.io/, both protocol revisions.
 *
 * Prints "open <sid>", "upgrade <sid>" and "close <sid> <reason>" per session. A text
 * message "close-me" closes the session from the server (eio_close) instead of echoing;
 * "twice" is answered with two messages sent as one unit ("twice" and 0x01 0x02 binary);
 * "burst N" makes a thread of the application (not a loop) send "burst <i>" for i from 0
 * to N-1 to the session, and "burst-done" when all were accepted; "volatile" is answered
 * with a volatile "v", then "after <what eio_send answered for it>".
 * A handshake whose query has refuse=1 is refused by the open handler (403).
 * With --print-threads, the upgrade and close handlers also print "thread <sid> <event>
 * <id of the calling thread>".
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eio.h"
#include "example.h"

static eio_server_t *engine;
static int print_threads;

static void print_thread(eio_session_t *s, const char *event)
{
    if (print_threads)
        printf("thread %s %s %lu\n", eio_session_id(s), event, (unsigned long)pthread_self());
}

struct burst {
    eio_session_t *s;
    int count;
};

/* The session stays open until its client got "burst-done": it outlives the thread. */
static void *burst_thread(void *arg)
{
    struct burst *b = arg;
    char text[32];
    for (int i = 0; i < b->count; i++) {
        int n = snprintf(text, sizeof(text), "burst %d", i);
        eio_part_t part = {text, (size_t)n, false};
        int rc = eio_send(b->s, &part, 1, 0);
        if (rc < 0)
            fprintf(stderr, "eio_send from a thread: %s\n", eddy_strerror(rc));
    }
    eio_part_t done = {"burst-done", 10, false};
    eio_send(b->s, &done, 1, 0);
    free(b);
    return NULL;
}

static int on_open(eio_session_t *s, eddy_request_t *req, void *ud)
{
    (void)ud;
    const char *refuse = eddy_request_get(req, "refuse");
    if (refuse != NULL && strcmp(refuse, "1") == 0)
        return 403;
    printf("open %s\n", eio_session_id(s));
    return 0;
}

static void on_eio_message(eio_session_t *s, const void *data, size_t len, bool binary, void *ud)
{
    (void)ud;
    if (!binary && len == 8 && memcmp(data, "close-me", 8) == 0) {
        eio_close(s);
        return;
    }
    if (!binary && len == 5 && memcmp(data, "twice", 5) == 0) {
        static const unsigned char bytes[] = {1, 2};
        eio_part_t parts[] = {{"twice", 5, false}, {bytes, sizeof(bytes), true}};
        eio_send(s, parts, 2, 0);
        return;
    }
    if (!binary && len == 8 && memcmp(data, "volatile", 8) == 0) {
        eio_part_t v = {"v", 1, false};
        char after[32];
        int n = snprintf(after, sizeof(after), "after %d", eio_send(s, &v, 1, EIO_SEND_VOLATILE));
        eio_part_t part = {after, (size_t)n, false};
        eio_send(s, &part, 1, 0);
        return;
    }
    if (!binary && len > 6 && memcmp(data, "burst ", 6) == 0) {
        struct burst *b = malloc(sizeof(*b));
        pthread_t thread;
        if (b == NULL)
            return;
        *b = (struct burst){s, atoi((const char *)data + 6)};
        if (pthread_create(&thread, NULL, burst_thread, b) != 0) {
            free(b);
            return;
        }
        pthread_detach(thread);
        return;
    }
    eio_part_t part = {data, len, binary};
    eio_send(s, &part, 1, 0);
}

static void on_upgrade_done(eio_session_t *s, void *ud)
{
    (void)ud;
    print_thread(s, "upgrade");
    printf("upgrade %s\n", eio_session_id(s));
}

static void on_eio_close(eio_session_t *s, const char *reason, void *ud)
{
    (void)ud;
    print_thread(s, "close");
    printf("close %s %s\n", eio_session_id(s), reason);
}

static void on_request(eddy_server_t *srv, eddy_request_t *req, eddy_response_t *resp, void *ud)
{
    if (eio_handle_request(engine, req, resp))
        return;
    eddy_response_status(resp, 404, NULL);
    eddy_response_end(resp, NULL, 0);
}

static int on_upgrade(eddy_server_t *srv, eddy_request_t *req, void *ud)
{
    int status = 0;
    if (eio_handle_upgrade(engine, req, &status))
        return status;
    return eddy_upgrade_refuse(req, 404, NULL, "not found\n");
}

static void on_open_ws(eddy_server_t *srv, eddy_request_t *req, void *ud)
{
    eio_handle_open(engine, req);
}

static void on_message(eddy_server_t *srv, const eddy_frame_t *frame, void *ud)
{
    eio_handle_message(engine, frame);
}

static void on_close(eddy_server_t *srv, eddy_fd_t fd, void *ud)
{
    eio_handle_close(engine, fd);
}

static const example_spec_t spec = {
    "eio_echo",
    "Engine.IO echo server (tests): every message goes back to its session.",
    (const example_option_spec_t[]){{"--ping-interval", "MS", "pingInterval (25000)"},
                                    {"--ping-timeout", "MS", "pingTimeout (20000)"},
                                    {"--upgrade-timeout", "MS", "upgradeTimeout (10000)"},
                                    {"--max-payload", "BYTES", "maxHttpBufferSize (1000000)"},
                                    {"--no-polling", NULL, "WebSocket transport only"},
                                    {"--print-threads", NULL, "print the handlers' threads"},
                                    {NULL, NULL, NULL}},
    NULL,
};

int main(int argc, char **argv)
{
    eddy_server_t *srv = example_new(argc, argv, &spec);
    eio_config_t cfg;
    eio_config_init(&cfg);
    cfg.ping_interval_ms = (unsigned)atoi(example_option(argc, argv, "--ping-interval", "25000"));
    cfg.ping_timeout_ms = (unsigned)atoi(example_option(argc, argv, "--ping-timeout", "20000"));
    cfg.upgrade_timeout_ms =
        (unsigned)atoi(example_option(argc, argv, "--upgrade-timeout", "10000"));
    cfg.max_payload = (size_t)atol(example_option(argc, argv, "--max-payload", "1000000"));
    cfg.allow_polling = !example_has_flag(argc, argv, "--no-polling");
    print_threads = example_has_flag(argc, argv, "--print-threads");
    eio_handlers_t handlers = {.open = on_open,
                               .message = on_eio_message,
                               .upgrade = on_upgrade_done,
                               .close = on_eio_close};
    engine = eio_server_new(srv, &cfg, &handlers, NULL);
    if (engine == NULL) {
        fprintf(stderr, "eio_server_new failed\n");
        return 1;
    }
    eddy_on_request(srv, on_request);
    eddy_on_upgrade(srv, on_upgrade);
    eddy_on_open(srv, on_open_ws);
    eddy_on_message(srv, on_message);
    eddy_on_close(srv, on_close);
    eddy_on_disconnect(srv, on_close);
    int rc = example_run(srv);
    eio_server_free(engine);
    return rc;
}

/* SPDX-License-Identifier: MIT */
/*
 * Deferred connect decisions in the real-time layer (eddy_rt_defer(), eddy_rt_accept(),
 * eddy_rt_refuse() later): the connect hook defers, this thread (none of the server's
 * loops) decides. Raw Engine.IO 4 clients over WebSocket assert what the wire carries: no
 * CONNECT reply before the decision, then the reply (or CONNECT_ERROR with the message),
 * and the events sent before it dispatched after it, in order; a client that leaves while
 * it waits, and a second decision, are harmless.
 */
#include <stdlib.h>

#include "eddy_rt.h"
#include "test.h"
#include "test_rt_server.h"

#include "eio_client.h"

static eddy_rt_t *rt;
static _Atomic(eddy_rt_socket_t *) waiting; /* the deferred socket, referenced */
static atomic_int connections, disconnects;
static char events[256]; /* "name:args|..." in dispatch order (client context) */
static atomic_int nevents;

static int on_connect(eddy_rt_socket_t *s, void *user_data)
{
    const char *auth = eddy_rt_socket_auth(s, NULL);
    if (strstr(auth, "\"now\"") != NULL)
        return 0;
    eddy_rt_socket_ref(s);
    int rc = eddy_rt_defer(s);
    atomic_store(&waiting, s);
    return rc;
}

static void on_connection(eddy_rt_socket_t *s, void *user_data)
{
    atomic_fetch_add(&connections, 1);
}

static void on_disconnect(eddy_rt_socket_t *s, const char *reason, void *user_data)
{
    atomic_fetch_add(&disconnects, 1);
}

static void on_any(eddy_rt_socket_t *s, const eddy_rt_event_t *ev, void *user_data)
{
    size_t used = strlen(events);
    snprintf(events + used, sizeof(events) - used, "%s%s:%.*s", used ? "|" : "", ev->name,
             (int)ev->args_len, ev->args);
    atomic_fetch_add(&nevents, 1);
}

static void sleep_ms(long ms)
{
    struct timespec t = {.tv_sec = ms / 1000, .tv_nsec = ms % 1000 * 1000000L};
    nanosleep(&t, NULL);
}

/* A client that opened its Engine.IO session and sent CONNECT with auth; returns its fd
 * and, once the hook deferred, the socket in *s (referenced by the hook). */
static int connect_deferred(int port, const char *auth, eddy_rt_socket_t **s)
{
    atomic_store(&waiting, NULL);
    int fd = eio_ws_connect(port, NULL);
    char buf[512];
    CHECK(fd >= 0 && eio_ws_recv(fd, buf, sizeof(buf), 2000) && buf[0] == '0');
    char connect[128];
    snprintf(connect, sizeof(connect), "40%s", auth);
    eio_ws_send(fd, connect);
    *s = NULL;
    for (int i = 0; i < 5000 && (*s = atomic_load(&waiting)) == NULL; i++)
        sleep_ms(1);
    CHECK(*s != NULL);
    return fd;
}

static bool wait_int(atomic_int *v, int want)
{
    for (int i = 0; i < 5000 && atomic_load(v) != want; i++)
        sleep_ms(1);
    return atomic_load(v) == want;
}

/* Accepted later: nothing before the decision, events sent meanwhile dispatched after the
 * connection, in order; a second decision does nothing. */
static void accept_later(int port)
{
    eddy_rt_socket_t *s;
    int fd = connect_deferred(port, "{\"token\":\"t\"}", &s);
    if (s == NULL)
        return;
    eio_ws_send(fd, "42[\"first\",1]");
    eio_ws_send(fd, "42[\"second\",2]");
    char buf[512];
    CHECK(!eio_ws_recv(fd, buf, sizeof(buf), 200)); /* no reply while it waits */
    CHECK_EQ_INT(atomic_load(&nevents), 0);
    int before = atomic_load(&connections);
    CHECK_EQ_INT(eddy_rt_socket_set_user(s, "u1"), 0);
    CHECK_EQ_INT(eddy_rt_accept(s), 0);
    CHECK(eio_ws_recv(fd, buf, sizeof(buf), 2000) && strncmp(buf, "40{\"sid\":\"", 10) == 0);
    CHECK(strncmp(buf + 10, eddy_rt_socket_id(s), 20) == 0);
    CHECK(wait_int(&connections, before + 1));
    CHECK(wait_int(&nevents, 2));
    CHECK_STR(events, "first:1|second:2");
    CHECK(eddy_rt_socket_connected(s));
    CHECK(eddy_rt_user_online(eddy_rt_socket_nsp(s), "u1"));
    /* Exactly once. */
    CHECK_EQ_INT(eddy_rt_accept(s), EDDY_ECLOSED);
    CHECK_EQ_INT(eddy_rt_refuse(s, "late", NULL), EDDY_ECLOSED);
    eddy_rt_socket_unref(s);
    close(fd);
}

/* Refused later: CONNECT_ERROR with the message and data; the events sent meanwhile go
 * nowhere (the namespace was never joined). */
static void refuse_later(int port)
{
    eddy_rt_socket_t *s;
    int fd = connect_deferred(port, "{\"token\":\"bad\"}", &s);
    if (s == NULL)
        return;
    eio_ws_send(fd, "42[\"ignored\"]");
    int before = atomic_load(&connections), events_before = atomic_load(&nevents);
    CHECK_EQ_INT(eddy_rt_refuse(s, "not allowed", "{\"code\":7}"), 0);
    char buf[512];
    CHECK(eio_ws_recv(fd, buf, sizeof(buf), 2000));
    CHECK_STR(buf, "44{\"message\":\"not allowed\",\"data\":{\"code\":7}}");
    CHECK(!eddy_rt_socket_connected(s));
    CHECK_EQ_INT(eddy_rt_accept(s), EDDY_ECLOSED);
    sleep_ms(50);
    CHECK_EQ_INT(atomic_load(&connections), before);
    CHECK_EQ_INT(atomic_load(&nevents), events_before);
    eddy_rt_socket_unref(s);
    close(fd);
}

/* The client leaves while its connect waits: the decision finds it gone. */
static void client_leaves_while_waiting(int port)
{
    eddy_rt_socket_t *s;
    int fd = connect_deferred(port, "{\"token\":\"t\"}", &s);
    if (s == NULL)
        return;
    close(fd);
    /* Its connection closes on the loop (the only one left open): then the decision finds
     * it gone. */
    for (int i = 0; i < 5000 && eddy_connection_count(test_server) > 0; i++)
        sleep_ms(1);
    CHECK_EQ_INT((int)eddy_connection_count(test_server), 0);
    CHECK_EQ_INT(eddy_rt_accept(s), EDDY_ECLOSED);
    CHECK(!eddy_rt_socket_connected(s));
    eddy_rt_socket_unref(s);
}

/* A client that sends more than the bound (1024 messages) while its connect waits is
 * closed; the decision then finds it gone. */
static void too_much_input_while_waiting(int port)
{
    eddy_rt_socket_t *s;
    int fd = connect_deferred(port, "{\"token\":\"t\"}", &s);
    if (s == NULL)
        return;
    for (int i = 0; i < 1100; i++)
        eio_ws_send(fd, "42[\"x\"]");
    for (int i = 0; i < 5000 && eddy_connection_count(test_server) > 0; i++)
        sleep_ms(1);
    CHECK_EQ_INT((int)eddy_connection_count(test_server), 0);
    CHECK_EQ_INT(eddy_rt_accept(s), EDDY_ECLOSED);
    eddy_rt_socket_unref(s);
    close(fd);
}

int main(void)
{
    if (!test_server_new("warning"))
        return test_report("test_rt_defer");
    CHECK_EQ_INT(eddy_server_set(test_server, "worker_num", "2"), 0);
    /* A client closed for too much input never answers the close frame: its connection
     * goes after this timeout (default 5 s). */
    CHECK_EQ_INT(eddy_server_set(test_server, "websocket_close_timeout", "0.2"), 0);
    eddy_rt_options_t opts;
    eddy_rt_options_init(&opts);
    opts.ping_interval_ms = 60000;
    rt = eddy_rt_new(test_server, &opts);
    CHECK(rt != NULL);
    eddy_rt_nsp_t *root = eddy_rt_of(rt, "/");
    eddy_rt_handlers_t h = {.connect = on_connect,
                            .connection = on_connection,
                            .disconnect = on_disconnect,
                            .any = on_any};
    eddy_rt_nsp_set_handlers(root, &h);
    int port = rt_test_start(rt);

    accept_later(port);
    refuse_later(port);
    client_leaves_while_waiting(port);
    too_much_input_while_waiting(port);

    rt_test_stop(rt);
    return test_report("test_rt_defer");
}

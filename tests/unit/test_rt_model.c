/* SPDX-License-Identifier: MIT */
/*
 * The real-time layer's model (rt/rt.c) driven through its public API (eddy_rt.h) on a
 * running server, by raw WebSocket clients speaking Engine.IO 4 / Socket.IO 5 from this
 * thread: rooms as unions (each socket once), except rooms and the sender, users, presence,
 * acknowledgements from the server (one socket and a room, with timeouts), disconnects by
 * user. The application calls come from this thread, not a loop's: the tables are shared.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>

#include "test.h"
#include "test_rt_server.h"

#include "eddy_rt.h"
#include "eio_client.h"

#define NCLIENTS 3

static eddy_rt_t *rt;
static eddy_rt_nsp_t *root;
static eddy_rt_socket_t *_Atomic sockets[NCLIENTS];
static atomic_int presence_joins, presence_leaves, disconnects;

/* ---- a raw client (tests/support/eio_client.h) ---- */

/* Expects the next message to be exactly want. */
static void expect(int fd, const char *want)
{
    char got[1024] = "";
    bool ok = eio_ws_recv(fd, got, sizeof(got), 2000);
    CHECK(ok);
    if (ok)
        CHECK_STR(got, want);
}

/* Expects nothing within ms. */
static void expect_quiet(int fd, int ms)
{
    char got[1024];
    bool any = eio_ws_recv(fd, got, sizeof(got), ms);
    if (any)
        fprintf(stderr, "unexpected message: %s\n", got);
    CHECK(!any);
}

/* ---- the application ---- */

static int on_connect(eddy_rt_socket_t *s, void *user_data)
{
    size_t len;
    const char *auth = eddy_rt_socket_auth(s, &len);
    const char *v;
    size_t vlen;
    if (eddy_rt_json_member(auth, len, "user", &v, &vlen) == EDDY_RT_JSON_STRING) {
        char user[64];
        snprintf(user, sizeof(user), "%.*s", (int)vlen - 2, v + 1);
        eddy_rt_socket_set_user(s, user);
    }
    return 0;
}

static void on_connection(eddy_rt_socket_t *s, void *user_data)
{
    size_t len;
    const char *auth = eddy_rt_socket_auth(s, &len);
    const char *v;
    size_t vlen;
    if (eddy_rt_json_member(auth, len, "n", &v, &vlen) == EDDY_RT_JSON_NUMBER) {
        eddy_rt_socket_ref(s);
        atomic_store(&sockets[v[0] - '0'], s);
    }
}

static void on_presence(eddy_rt_socket_t *s, const char *room, bool joined, void *user_data)
{
    atomic_fetch_add(joined ? &presence_joins : &presence_leaves, 1);
}

static void on_disconnect(eddy_rt_socket_t *s, const char *reason, void *user_data)
{
    atomic_fetch_add(&disconnects, 1);
}

/* "bye": the socket disconnects itself, then still uses its pointer (nobody else holds a
 * reference to it): the call must answer EDDY_ECLOSED, not touch freed memory. */
static atomic_int bye_rc = 1;

static void on_bye(eddy_rt_socket_t *s, const eddy_rt_event_t *ev, void *user_data)
{
    eddy_rt_disconnect(s, false);
    atomic_store(&bye_rc, eddy_rt_emit_json(s, "after", NULL));
}

/* Room history: the argument lists visited, joined with '|'. */
static char history[128];

static bool on_history(eddy_rt_nsp_t *nsp, const eddy_rt_event_t *ev, const char *offset, void *arg)
{
    size_t used = strlen(history);
    snprintf(history + used, sizeof(history) - used, "%s%s:%.*s", used ? "|" : "", ev->name,
             (int)ev->args_len, ev->args);
    return true;
}

/* Acknowledgement results, written by the callbacks (loop threads), read here. */
static atomic_int ack_status = 1;
static char ack_args[64];
static atomic_int bcast_done;
static int bcast_n, bcast_status[4];
static char bcast_first[64];

static void on_ack(eddy_rt_socket_t *s, int status, const eddy_rt_event_t *ev, void *arg)
{
    if (status == 0)
        snprintf(ack_args, sizeof(ack_args), "%.*s", (int)ev->args_len, ev->args);
    atomic_store(&ack_status, status);
}

static void on_bcast_ack(eddy_rt_nsp_t *nsp, const eddy_rt_ack_result_t *res, size_t n, void *arg)
{
    bcast_n = (int)n;
    for (size_t i = 0; i < n && i < 4; i++)
        bcast_status[i] = res[i].status;
    if (n > 0 && res[0].ev != NULL)
        snprintf(bcast_first, sizeof(bcast_first), "%.*s", (int)res[0].ev->args_len,
                 res[0].ev->args);
    atomic_store(&bcast_done, 1);
}

static bool wait_for(atomic_int *flag, int not_value, int ms)
{
    for (int i = 0; i < ms && atomic_load(flag) == not_value; i++) {
        struct timespec t = {.tv_nsec = 1000000L};
        nanosleep(&t, NULL);
    }
    return atomic_load(flag) != not_value;
}

static int msg_broadcast(const char *const *rooms, size_t nrooms, const char *const *users,
                         size_t nusers, const char *const *except, size_t nexcept,
                         eddy_rt_socket_t *except_socket, const char *args)
{
    eddy_rt_to_t to = {rooms, nrooms, users, nusers, except, nexcept, except_socket};
    eddy_rt_msg_t msg = {.event = "b", .args = args, .args_len = strlen(args)};
    return eddy_rt_broadcast(root, &to, &msg);
}

/* eddy_rt_room_presence() and eddy_rt_rooms() on one node with fd 0: answered in the call. */
static char presence_text[256];

static void on_room_presence(int err, const eddy_rt_presence_t *p, void *arg)
{
    size_t o = (size_t)snprintf(presence_text, sizeof(presence_text), "%d:", err);
    for (size_t i = 0; p != NULL && i < p->nsockets && o < sizeof(presence_text); i++)
        o += (size_t)snprintf(presence_text + o, sizeof(presence_text) - o, "%s/%s/%s,",
                              arg != NULL && strcmp(p->sockets[i].socket_id, arg) == 0 ? "s0"
                                                                                       : "other",
                              p->sockets[i].user_id ? p->sockets[i].user_id : "-",
                              p->sockets[i].node ? p->sockets[i].node : "-");
    for (size_t i = 0; p != NULL && i < p->nusers && o < sizeof(presence_text); i++)
        o += (size_t)snprintf(presence_text + o, sizeof(presence_text) - o, "%s;", p->users[i]);
}

static void on_rooms(int err, const eddy_rt_room_info_t *rooms, size_t n, void *arg)
{
    size_t o = (size_t)snprintf(presence_text, sizeof(presence_text), "%d:", err);
    for (size_t i = 0; i < n && o < sizeof(presence_text); i++)
        o += (size_t)snprintf(presence_text + o, sizeof(presence_text) - o, "%s=%zu/%zu,",
                              rooms[i].name, rooms[i].sockets, rooms[i].users);
}

/* ---- across nodes, on one node ---- */

static int fetched_status = 1;
static size_t fetched_n, fetched_nrooms, fetched_nmissing;
static char fetched_id[32], fetched_node[8], fetched_rooms[64];

static void on_fetch(eddy_rt_nsp_t *nsp, int status, const eddy_rt_socket_info_t *socks, size_t n,
                     const char *const *missing, size_t nmissing, void *arg)
{
    fetched_status = status;
    fetched_n = n;
    fetched_nmissing = nmissing;
    if (n > 0) {
        snprintf(fetched_id, sizeof(fetched_id), "%s", socks[0].id);
        snprintf(fetched_node, sizeof(fetched_node), "%s", socks[0].node);
        fetched_nrooms = socks[0].nrooms;
        fetched_rooms[0] = '\0';
        for (size_t i = 0; i < socks[0].nrooms; i++)
            snprintf(fetched_rooms + strlen(fetched_rooms),
                     sizeof(fetched_rooms) - strlen(fetched_rooms), "[%s]", socks[0].rooms[i]);
    }
}

int main(void)
{
    if (!test_server_new("warning"))
        return test_report("test_rt_model");
    CHECK_EQ_INT(eddy_server_set(test_server, "worker_num", "2"), 0);
    eddy_rt_options_t opts;
    eddy_rt_options_init(&opts);
    opts.ping_interval_ms = 60000;  /* no pings to skip in the clients */
    opts.history_max_messages = 10; /* history without recovery: no offsets on the wire */
    rt = eddy_rt_new(test_server, &opts);
    CHECK(rt != NULL);
    root = eddy_rt_of(rt, "/");
    eddy_rt_handlers_t h = {.connect = on_connect,
                            .connection = on_connection,
                            .presence = on_presence,
                            .disconnect = on_disconnect};
    eddy_rt_nsp_set_handlers(root, &h);
    eddy_rt_on(root, "bye", on_bye, NULL);
    int port = rt_test_start(rt);

    /* Three clients: 0 and 2 are user u1, 1 has no user. */
    static const char *const auths[NCLIENTS] = {"{\"n\":0,\"user\":\"u1\"}", "{\"n\":1}",
                                                "{\"n\":2,\"user\":\"u1\"}"};
    int fds[NCLIENTS];
    char buf[1024];
    for (int i = 0; i < NCLIENTS; i++) {
        fds[i] = eio_ws_connect(port, NULL);
        CHECK(fds[i] >= 0);
        CHECK(eio_ws_recv(fds[i], buf, sizeof(buf), 2000) && buf[0] == '0'); /* open */
        char connect[64];
        snprintf(connect, sizeof(connect), "40%s", auths[i]);
        eio_ws_send(fds[i], connect);
        CHECK(eio_ws_recv(fds[i], buf, sizeof(buf), 2000) && strncmp(buf, "40{\"sid\":", 9) == 0);
    }
    eddy_rt_socket_t *s[NCLIENTS];
    for (int i = 0; i < NCLIENTS; i++) {
        for (int w = 0; w < 2000 && atomic_load(&sockets[i]) == NULL; w++) {
            struct timespec t = {.tv_nsec = 1000000L};
            nanosleep(&t, NULL);
        }
        s[i] = atomic_load(&sockets[i]);
        CHECK(s[i] != NULL);
    }
    if (s[0] == NULL || s[1] == NULL || s[2] == NULL)
        goto out;
    CHECK_EQ_INT((int)eddy_rt_nsp_count(root), 3);

    /* Rooms: 0 in r1 and r2, 1 in r2, 2 in none. Presence sees each join once. */
    CHECK_EQ_INT(eddy_rt_join(s[0], "r1"), 0);
    CHECK_EQ_INT(eddy_rt_join(s[0], "r2"), 0);
    CHECK_EQ_INT(eddy_rt_join(s[0], "r2"), 0); /* twice is one membership */
    CHECK_EQ_INT(eddy_rt_join(s[1], "r2"), 0);
    CHECK_EQ_INT(atomic_load(&presence_joins), 3);
    CHECK_EQ_INT((int)eddy_rt_room_count(root, "r2"), 2);
    CHECK_EQ_INT((int)eddy_rt_room_user_count(root, "r2"), 1);
    CHECK_EQ_INT((int)eddy_rt_room_count(root, eddy_rt_socket_id(s[2])), 1); /* own room */

    /* The same counts through the cluster-wide queries (one node: no node id). */
    const char *s0 = eddy_rt_socket_id(s[0]);
    CHECK_EQ_INT(eddy_rt_room_presence(root, "r1", 0, on_room_presence, (void *)s0), 0);
    CHECK_STR(presence_text, "0:s0/u1/-,u1;");
    CHECK_EQ_INT(eddy_rt_room_presence(root, "nowhere", 0, on_room_presence, NULL), 0);
    CHECK_STR(presence_text, "0:");
    CHECK_EQ_INT(eddy_rt_room_presence(root, s0, 0, on_room_presence, (void *)s0), 0);
    CHECK_STR(presence_text, "0:s0/u1/-,u1;"); /* own room */
    CHECK_EQ_INT(eddy_rt_room_presence(root, NULL, 0, on_room_presence, NULL), EDDY_EINVAL);
    CHECK_EQ_INT(eddy_rt_rooms(root, 0, on_rooms, NULL), 0);
    CHECK_STR(presence_text, "0:r1=1/1,r2=2/1,");
    CHECK(eddy_rt_node_id(rt) == NULL);
    char ids[2][EDDY_RT_NODE_ID_SIZE];
    CHECK_EQ_INT((int)eddy_rt_broker_nodes(rt, ids, 2), 0);

    /* The union of r1 and r2 reaches 0 once and 1 once. */
    const char *r12[] = {"r1", "r2"};
    CHECK_EQ_INT(msg_broadcast(r12, 2, NULL, 0, NULL, 0, NULL, "1"), 0);
    expect(fds[0], "42[\"b\",1]");
    expect(fds[1], "42[\"b\",1]");
    expect_quiet(fds[0], 100);
    expect_quiet(fds[2], 50);

    /* r2 except the members of r1: 1 only. */
    const char *r1[] = {"r1"}, *r2[] = {"r2"};
    CHECK_EQ_INT(msg_broadcast(r2, 1, NULL, 0, r1, 1, NULL, "2"), 0);
    expect(fds[1], "42[\"b\",2]");
    expect_quiet(fds[0], 100);

    /* The whole namespace except socket 0 (the sender). */
    CHECK_EQ_INT(msg_broadcast(NULL, 0, NULL, 0, NULL, 0, s[0], "3"), 0);
    expect(fds[1], "42[\"b\",3]");
    expect(fds[2], "42[\"b\",3]");
    expect_quiet(fds[0], 100);

    /* A user is every connection of its id; a socket id is a room. */
    const char *u1[] = {"u1"};
    CHECK(eddy_rt_user_online(root, "u1"));
    CHECK(!eddy_rt_user_online(root, "nobody"));
    CHECK_EQ_INT(msg_broadcast(NULL, 0, u1, 1, NULL, 0, NULL, "4"), 0);
    expect(fds[0], "42[\"b\",4]");
    expect(fds[2], "42[\"b\",4]");
    expect_quiet(fds[1], 100);
    const char *own1[] = {eddy_rt_socket_id(s[1])};
    CHECK_EQ_INT(msg_broadcast(own1, 1, NULL, 0, NULL, 0, NULL, "5"), 0);
    expect(fds[1], "42[\"b\",5]");
    expect_quiet(fds[0], 50);

    /* Leaving: no longer reached; presence saw it. */
    CHECK_EQ_INT(eddy_rt_leave(s[0], "r2"), 0);
    CHECK_EQ_INT(atomic_load(&presence_leaves), 1);
    CHECK_EQ_INT(msg_broadcast(r2, 1, NULL, 0, NULL, 0, NULL, "6"), 0);
    expect(fds[1], "42[\"b\",6]");
    expect_quiet(fds[0], 100);

    /* History: what went to r2 (directly or in a union), oldest first; the namespace's own;
     * n bounds it. */
    CHECK_EQ_INT((int)eddy_rt_room_history(root, "r2", 10, on_history, NULL), 3);
    CHECK_STR(history, "b:1|b:2|b:6");
    history[0] = '\0';
    CHECK_EQ_INT((int)eddy_rt_room_history(root, NULL, 10, on_history, NULL), 1);
    CHECK_STR(history, "b:3");
    history[0] = '\0';
    CHECK_EQ_INT((int)eddy_rt_room_history(root, "r2", 1, on_history, NULL), 1);
    CHECK_STR(history, "b:6");

    /* An emit with ack to socket 0, answered. */
    eddy_rt_msg_t ask = {.event = "q", .args = "7", .args_len = 1};
    CHECK_EQ_INT(eddy_rt_emit_ack(s[0], &ask, 2000, on_ack, NULL), 0);
    CHECK(eio_ws_recv(fds[0], buf, sizeof(buf), 2000));
    unsigned long id = 0;
    CHECK(sscanf(buf, "42%lu[\"q\",7]", &id) == 1);
    char answer[64];
    snprintf(answer, sizeof(answer), "43%lu[\"ok\",1]", id);
    eio_ws_send(fds[0], answer);
    CHECK(wait_for(&ack_status, 1, 2000));
    CHECK_EQ_INT(atomic_load(&ack_status), 0);
    CHECK_STR(ack_args, "\"ok\",1");
    /* Unanswered: -ETIMEDOUT after the timeout. */
    atomic_store(&ack_status, 1);
    CHECK_EQ_INT(eddy_rt_emit_ack(s[1], &ask, 100, on_ack, NULL), 0);
    CHECK(eio_ws_recv(fds[1], buf, sizeof(buf), 2000));
    CHECK(wait_for(&ack_status, 1, 2000));
    CHECK_EQ_INT(atomic_load(&ack_status), -ETIMEDOUT);

    /* A broadcast with ack to r2 + socket 2's room: 1 answers, 2 does not. */
    CHECK_EQ_INT(eddy_rt_join(s[2], "r2"), 0);
    CHECK_EQ_INT(eddy_rt_broadcast_ack(root, &(eddy_rt_to_t){.rooms = r2, .nrooms = 1}, &ask, 300,
                                       on_bcast_ack, NULL),
                 0);
    CHECK(eio_ws_recv(fds[1], buf, sizeof(buf), 2000));
    CHECK(sscanf(buf, "42%lu[\"q\",7]", &id) == 1);
    CHECK(eio_ws_recv(fds[2], buf, sizeof(buf), 2000)); /* same packet, same id */
    unsigned long id2 = 0;
    CHECK(sscanf(buf, "42%lu[\"q\",7]", &id2) == 1);
    CHECK(id == id2);
    snprintf(answer, sizeof(answer), "43%lu[\"yes\"]", id);
    eio_ws_send(fds[1], answer);
    CHECK(wait_for(&bcast_done, 0, 2000));
    CHECK_EQ_INT(bcast_n, 2);
    CHECK_EQ_INT(bcast_status[0], 0);
    CHECK_STR(bcast_first, "\"yes\"");
    CHECK_EQ_INT(bcast_status[1], -ETIMEDOUT);

    /* Disconnecting user u1 disconnects sockets 0 and 2 ("41"), and they leave r1 and r2. */
    CHECK_EQ_INT((int)eddy_rt_user_disconnect(root, "u1", false), 2);
    expect(fds[0], "41");
    expect(fds[2], "41");
    CHECK_EQ_INT(atomic_load(&disconnects), 2);
    CHECK_EQ_INT(atomic_load(&presence_leaves), 3);
    CHECK(!eddy_rt_user_online(root, "u1"));
    CHECK_EQ_INT((int)eddy_rt_room_count(root, "r1"), 0);
    CHECK_EQ_INT((int)eddy_rt_room_count(root, "r2"), 1);
    CHECK(!eddy_rt_socket_connected(s[0]));
    CHECK_EQ_INT(eddy_rt_emit_json(s[0], "late", NULL), EDDY_ECLOSED);
    CHECK_EQ_INT((int)eddy_rt_nsp_count(root), 1);

    /* Across nodes on one node (no redis_url): the calls act on this node's sockets and the
     * listings answer before returning, on this thread. Socket 1 is left, in r2. */
    const char *xr[] = {"xr"};
    CHECK_EQ_INT(eddy_rt_sockets_join(root, &(eddy_rt_to_t){.rooms = r2, .nrooms = 1}, xr, 1), 0);
    CHECK_EQ_INT((int)eddy_rt_room_count(root, "xr"), 1);
    CHECK_EQ_INT(eddy_rt_fetch_sockets(root, &(eddy_rt_to_t){.rooms = xr, .nrooms = 1}, 1000,
                                       on_fetch, NULL),
                 0);
    CHECK_EQ_INT(fetched_status, 0);
    CHECK_EQ_INT(fetched_n, 1);
    CHECK_EQ_INT(fetched_nmissing, 0);
    CHECK_STR(fetched_id, eddy_rt_socket_id(s[1]));
    CHECK_STR(fetched_node, "");
    CHECK_EQ_INT(fetched_nrooms, 2);
    CHECK(strstr(fetched_rooms, "[r2]") && strstr(fetched_rooms, "[xr]"));
    /* A room joined through eddy_rt_sockets_join() is listed like any other (allRooms()). */
    CHECK_EQ_INT(eddy_rt_rooms(root, 0, on_rooms, NULL), 0);
    CHECK_STR(presence_text, "0:r2=1/0,xr=1/0,");
    CHECK(eddy_rt_node_id(rt) == NULL);
    CHECK_EQ_INT(eddy_rt_sockets_leave(root, NULL, xr, 1), 0);
    CHECK_EQ_INT((int)eddy_rt_room_count(root, "xr"), 0);
    CHECK_EQ_INT(eddy_rt_fetch_sockets(root, NULL, 0, on_fetch, NULL), EDDY_EINVAL);
    CHECK_EQ_INT(eddy_rt_sockets_join(NULL, NULL, xr, 1), EDDY_EINVAL);
    const char *none[] = {NULL};
    CHECK_EQ_INT(eddy_rt_sockets_join(root, NULL, none, 1), EDDY_EINVAL);
    CHECK_EQ_INT(eddy_rt_disconnect_sockets(root, &(eddy_rt_to_t){.rooms = r2, .nrooms = 1}, false),
                 0);
    expect(fds[1], "41");
    CHECK_EQ_INT((int)eddy_rt_nsp_count(root), 0);

    /* A socket that disconnects itself from its own handler (see on_bye). */
    int fd = eio_ws_connect(port, NULL);
    CHECK(fd >= 0);
    if (fd >= 0) {
        CHECK(eio_ws_recv(fd, buf, sizeof(buf), 2000) && buf[0] == '0');
        eio_ws_send(fd, "40");
        CHECK(eio_ws_recv(fd, buf, sizeof(buf), 2000) && strncmp(buf, "40{", 3) == 0);
        eio_ws_send(fd, "42[\"bye\"]");
        expect(fd, "41");
        CHECK(wait_for(&bye_rc, 1, 2000));
        CHECK_EQ_INT(atomic_load(&bye_rc), EDDY_ECLOSED);
        close(fd);
    }

out:
    for (int i = 0; i < NCLIENTS; i++) {
        if (fds[i] >= 0)
            close(fds[i]);
    }
    rt_test_stop_server();
    for (int i = 0; i < NCLIENTS; i++) {
        if (s[i] != NULL)
            eddy_rt_socket_unref(s[i]);
    }
    eddy_rt_free(rt);
    eddy_server_free(test_server);
    return test_report("test_rt_model");
}

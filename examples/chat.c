/* SPDX-License-Identifier: MIT */
/*
 * chat: a chat server on the real-time layer (eddy_rt.h), in seed 004's style: named events
 * answered with emit (laravel-swoole's Websocket::on("loginCheck", ...) and
 * $websocket->emit("message", ["code" => ..., "message" => ...])), users, rooms, presence
 * and history on join. It serves its page (examples/chat/index.html, --page) on "/"; the
 * page speaks Socket.IO over a plain WebSocket, and so can socket.io-client.
 *
 * Events from the client (arguments are one JSON object; a request event is answered with
 * an emit of the same name whose object has "code": 200, or 4xx/5xx and a "message"; a
 * client that asks for an acknowledgement gets the same object as ack):
 *   login {name}        the name (1-32 of A-Z a-z 0-9 _ - .) becomes the socket's user id:
 *                       the tabs of one name are one user -> login {code, user}
 *   join {room}         -> join {code, room, users, history, seq}: the room's users (each
 *                       once) and its last messages from the layer's room history
 *                       (eddy_rt_room_history), oldest first, each with its number "seq"
 *                       (1, 2, ... per room) and the layer's "offset"; the room's users get
 *                       presence when the user's first tab enters
 *   leave {room}        -> leave {code, room}; presence when the user's last tab leaves
 *   rooms {}            -> rooms {code, rooms: [{name, users, seq}]}
 *   say {room, text}    message {room, seq, from, text, ts} to the room (sender included)
 *   tell {to, text}     private {from, to, text, ts} to every tab of both users
 *   typing {room, typing}  typing {room, user, typing} to the room's other sockets, volatile
 * Events from the server on their own: presence {room, user, joined, users}.
 *
 * Rooms are the layer's rooms named "#" + the room's name, so a room never shares a name
 * with a socket's own room. Presence counts a user's tabs per room in the chat's table,
 * fed by the layer's presence callback (which also runs when a tab disconnects).
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eddy.h"
#include "eddy_rt.h"
#include "example.h"

#define NAME_MAX_LEN 32   /* user and room names */
#define TEXT_MAX_LEN 2000 /* a message's text, as JSON (quotes and escapes included) */
#define MAX_ROOMS    256  /* a socket's rooms are a bitmap over the room table */

/* A user in a room, with the number of their sockets (tabs) in it. */
typedef struct member {
    char user[NAME_MAX_LEN + 1];
    unsigned tabs;
} member_t;

typedef struct room {
    char name[NAME_MAX_LEN + 1];
    char layer_room[NAME_MAX_LEN + 2]; /* "#" + name */
    member_t *members;
    size_t nmembers, members_cap;
    uint64_t seq; /* the last message's number in the room (0: none yet) */
} room_t;

/* Per socket (eddy_rt_socket_set_data), made at login, freed at disconnect. Read and written
 * only in the socket's own callbacks, which never run at the same time. */
typedef struct client {
    char user[NAME_MAX_LEN + 1];
    uint64_t rooms[MAX_ROOMS / 64]; /* bit i: in rooms[i] */
} client_t;

/* The rooms and their members; their histories are the layer's. Rooms are never removed
 * (their numbering goes on), so an index into rooms is stable; lookups are linear, which
 * MAX_ROOMS keeps cheap. The lock is held while a message is numbered and broadcast (the
 * layer stores it then) and while a joiner's history is read and sent, so a joiner gets
 * every message either in its history or live. */
static struct {
    pthread_mutex_t lock;
    room_t *rooms[MAX_ROOMS];
    size_t nrooms;
    size_t history_len;
    eddy_rt_nsp_t *nsp;
    char *page;
    size_t page_len;
} chat = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* A growing JSON text for answers (not used per message). */
typedef struct buf {
    char *p;
    size_t len, cap;
    int failed;
} buf_t;

static void buf_printf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void buf_reserve(buf_t *b, size_t more)
{
    if (b->failed || b->len + more + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (p == NULL) {
        b->failed = 1;
        return;
    }
    b->p = p;
    b->cap = cap;
}

static void buf_add(buf_t *b, const char *data, size_t len)
{
    buf_reserve(b, len);
    if (b->failed)
        return;
    memcpy(b->p + b->len, data, len);
    b->len += len;
    b->p[b->len] = '\0';
}

static void buf_printf(buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    buf_reserve(b, (size_t)n);
    if (b->failed)
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Answers a request event: emits event with the JSON object, and acks with it when the
 * client asked for an acknowledgement. */
static void answer(eddy_rt_socket_t *s, const eddy_rt_event_t *ev, const char *event,
                   const char *object)
{
    eddy_rt_emit_json(s, event, object);
    if (ev->ack_id >= 0)
        eddy_rt_ack_json(s, ev->ack_id, object);
}

/* Answers with {"code": code, "message": message} (message has no characters to escape). */
static void fail(eddy_rt_socket_t *s, const eddy_rt_event_t *ev, const char *event, int code,
                 const char *message)
{
    char object[160];
    snprintf(object, sizeof(object), "{\"code\":%d,\"message\":\"%s\"}", code, message);
    answer(s, ev, event, object);
}

static int valid_name(const char *s, size_t len)
{
    if (len == 0 || len > NAME_MAX_LEN)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.'))
            return 0;
    }
    return 1;
}

/* The JSON span of member key of the event's first argument (an object), and its type. */
static int member(const eddy_rt_event_t *ev, const char *key, const char **val, size_t *len)
{
    const char *obj;
    size_t obj_len;
    if (eddy_rt_arg(ev, 0, &obj, &obj_len) != EDDY_RT_JSON_OBJECT)
        return EDDY_RT_JSON_NONE;
    return eddy_rt_json_member(obj, obj_len, key, val, len);
}

/* Copies member key, a name written without escapes, into out. Returns 1 if it is one. */
static int member_name(const eddy_rt_event_t *ev, const char *key, char out[NAME_MAX_LEN + 1])
{
    const char *val;
    size_t len;
    if (member(ev, key, &val, &len) != EDDY_RT_JSON_STRING || !valid_name(val + 1, len - 2))
        return 0;
    memcpy(out, val + 1, len - 2);
    out[len - 2] = '\0';
    return 1;
}

/* The message's text: a JSON string (the layer validated it) of at most TEXT_MAX_LEN. */
static int member_text(const eddy_rt_event_t *ev, const char **text, size_t *len)
{
    return member(ev, "text", text, len) == EDDY_RT_JSON_STRING && *len > 2 && *len <= TEXT_MAX_LEN;
}

/* Call with chat.lock held. */
static room_t *room_find(const char *name, size_t *index)
{
    for (size_t i = 0; i < chat.nrooms; i++) {
        if (strcmp(chat.rooms[i]->name, name) == 0) {
            if (index != NULL)
                *index = i;
            return chat.rooms[i];
        }
    }
    return NULL;
}

/* Call with chat.lock held. NULL when the table is full or out of memory. */
static room_t *room_get(const char *name)
{
    room_t *room = room_find(name, NULL);
    if (room != NULL || chat.nrooms == MAX_ROOMS)
        return room;
    room = calloc(1, sizeof(*room));
    if (room == NULL)
        return NULL;
    strcpy(room->name, name);
    snprintf(room->layer_room, sizeof(room->layer_room), "#%s", name);
    chat.rooms[chat.nrooms++] = room;
    return room;
}

static void room_free(room_t *room)
{
    free(room->members);
    free(room);
}

/* Appends ["u1","u2",...] (names need no escaping). Call with chat.lock held. */
static void add_users(buf_t *b, const room_t *room)
{
    buf_add(b, "[", 1);
    for (size_t i = 0; i < room->nmembers; i++)
        buf_printf(b, "%s\"%s\"", i ? "," : "", room->members[i].user);
    buf_add(b, "]", 1);
}

static int client_in(const client_t *c, size_t index)
{
    return (c->rooms[index / 64] >> (index % 64)) & 1;
}

/* ---- presence: a user's tabs per room, from the layer's presence callback ---- */

/* Tells the room's users that user came or went, with the users now. Sent to the users
 * rather than to the room so that it stays out of the room's history, which holds the
 * messages (a user's tabs outside the room ignore it by its room). Call with chat.lock
 * held. */
static void announce(const room_t *room, const char *user, bool joined)
{
    buf_t b = {0};
    buf_printf(&b, "{\"room\":\"%s\",\"user\":\"%s\",\"joined\":%s,\"users\":", room->name, user,
               joined ? "true" : "false");
    add_users(&b, room);
    buf_add(&b, "}", 1);
    const char **users = malloc((room->nmembers + 1) * sizeof(*users));
    if (!b.failed && users != NULL && room->nmembers > 0) {
        for (size_t i = 0; i < room->nmembers; i++)
            users[i] = room->members[i].user;
        eddy_rt_to_t to = {.users = users, .nusers = room->nmembers};
        eddy_rt_msg_t msg = {.event = "presence", .args = b.p, .args_len = b.len};
        eddy_rt_broadcast(chat.nsp, &to, &msg);
    }
    free(users);
    free(b.p);
}

/* Runs in s's context for every join and leave of a room, also when s disconnects (the
 * layer's user id is already gone then: the client's copy of the name is used). */
static void on_presence(eddy_rt_socket_t *s, const char *layer_room, bool joined, void *ud)
{
    (void)ud;
    client_t *c = eddy_rt_socket_data(s);
    if (layer_room[0] != '#' || c == NULL)
        return;
    pthread_mutex_lock(&chat.lock);
    size_t index;
    room_t *room = room_find(layer_room + 1, &index);
    if (room == NULL) {
        pthread_mutex_unlock(&chat.lock);
        return;
    }
    if (joined)
        c->rooms[index / 64] |= UINT64_C(1) << (index % 64);
    else
        c->rooms[index / 64] &= ~(UINT64_C(1) << (index % 64));
    size_t i = 0;
    while (i < room->nmembers && strcmp(room->members[i].user, c->user) != 0)
        i++;
    if (joined && i == room->nmembers) {
        if (room->nmembers == room->members_cap) {
            size_t cap = room->members_cap ? room->members_cap * 2 : 8;
            member_t *m = realloc(room->members, cap * sizeof(*m));
            if (m == NULL) {
                pthread_mutex_unlock(&chat.lock);
                return; /* the socket is in the layer's room, but not counted as present */
            }
            room->members = m;
            room->members_cap = cap;
        }
        member_t *m = &room->members[room->nmembers++];
        strcpy(m->user, c->user);
        m->tabs = 1;
        announce(room, c->user, true);
    } else if (joined) {
        room->members[i].tabs++;
    } else if (i < room->nmembers && --room->members[i].tabs == 0) {
        room->members[i] = room->members[--room->nmembers];
        announce(room, c->user, false);
    }
    pthread_mutex_unlock(&chat.lock);
}

/* ---- request events ---- */

static void on_login(eddy_rt_socket_t *s, const eddy_rt_event_t *ev, void *ud)
{
    (void)ud;
    char name[NAME_MAX_LEN + 1];
    if (!member_name(ev, "name", name))
        return fail(s, ev, "login", 422, "name: 1-32 of A-Z a-z 0-9 _ - .");
    client_t *c = eddy_rt_socket_data(s);
    if (c != NULL && strcmp(c->user, name) != 0)
        return fail(s, ev, "login", 409, "already logged in under another name");
    if (c == NULL) {
        if ((c = calloc(1, sizeof(*c))) == NULL)
            return fail(s, ev, "login", 500, "out of memory");
        strcpy(c->user, name);
        eddy_rt_socket_set_data(s, c);
        if (eddy_rt_socket_set_user(s, name) != 0)
            return fail(s, ev, "login", 500, "out of memory");
        eddy_log(eddy_rt_server(eddy_rt_nsp_rt(chat.nsp)), EDDY_LOG_INFO,
                 "chat: socket %s logged in as %s", eddy_rt_socket_id(s), name);
    }
    char object[96];
    snprintf(object, sizeof(object), "{\"code\":200,\"message\":\"success\",\"user\":\"%s\"}",
             name);
    answer(s, ev, "login", object);
}

typedef struct history {
    buf_t *out;
    size_t count;
} history_t;

/* Appends a message of the room's history (the layer's: the room's broadcasts that were
 * neither volatile nor acknowledged) as its object with the layer's offset added. */
static bool add_message(eddy_rt_nsp_t *nsp, const eddy_rt_event_t *ev, const char *offset,
                        void *arg)
{
    (void)nsp;
    history_t *h = arg;
    const char *obj;
    size_t len;
    if (strcmp(ev->name, "message") != 0 || eddy_rt_arg(ev, 0, &obj, &len) != EDDY_RT_JSON_OBJECT)
        return true;
    if (h->count++ > 0)
        buf_add(h->out, ",", 1);
    buf_add(h->out, obj, len - 1); /* without its '}' */
    buf_printf(h->out, ",\"offset\":\"%s\"}", offset);
    return true;
}

static void on_join(eddy_rt_socket_t *s, const eddy_rt_event_t *ev, void *ud)
{
    (void)ud;
    char name[NAME_MAX_LEN + 1];
    if (eddy_rt_socket_data(s) == NULL)
        return fail(s, ev, "join", 401, "login first");
    if (!member_name(ev, "room", name))
        return fail(s, ev, "join", 422, "room: 1-32 of A-Z a-z 0-9 _ - .");
    pthread_mutex_lock(&chat.lock);
    room_t *room = room_get(name);
    pthread_mutex_unlock(&chat.lock);
    if (room == NULL)
        return fail(s, ev, "join", 503, "too many rooms");
    /* Joined first, history after: a message stored after the history was read is
     * broadcast to the room with this socket in it. One stored before may also arrive
     * live (a broadcast from another loop still on its way); its seq tells the client. */
    if (eddy_rt_join(s, room->layer_room) != 0)
        return fail(s, ev, "join", 500, "could not join");
    buf_t b = {0};
    pthread_mutex_lock(&chat.lock);
    buf_printf(&b, "{\"code\":200,\"room\":\"%s\",\"seq\":%llu,\"users\":", room->name,
               (unsigned long long)room->seq);
    add_users(&b, room);
    buf_add(&b, ",\"history\":[", 12);
    history_t h = {&b, 0};
    eddy_rt_room_history(chat.nsp, room->layer_room, chat.history_len, add_message, &h);
    buf_add(&b, "]}", 2);
    if (b.failed)
        fail(s, ev, "join", 500, "out of memory");
    else
        answer(s, ev, "join", b.p);
    pthread_mutex_unlock(&chat.lock);
    free(b.p);
}

static void on_leave(eddy_rt_socket_t *s, const eddy_rt_event_t *ev, void *ud)
{
    (void)ud;
    char name[NAME_MAX_LEN + 1];
    client_t *c = eddy_rt_socket_data(s);
    if (c == NULL)
        return fail(s, ev, "leave", 401, "login first");
    if (!member_name(ev, "room", name))
        return fail(s, ev, "leave", 422, "room: 1-32 of A-Z a-z 0-9 _ - .");
    pthread_mutex_lock(&chat.lock);
    size_t index;
    room_t *room = room_find(name, &index);
    pthread_mutex_unlock(&chat.lock);
    if (room == NULL || !client_in(c, index))
        return fail(s, ev, "leave", 404, "not in this room");
    eddy_rt_leave(s, room->layer_room);
    char object[96];
    snprintf(object, sizeof(object), "{\"code\":200,\"room\":\"%s\"}", name);
    answer(s, ev, "leave", object);
}

static void on_rooms(eddy_rt_socket_t *s, const eddy_rt_event_t *ev, void *ud)
{
    (void)ud;
    buf_t b = {0};
    buf_add(&b, "{\"code\":200,\"rooms\":[", 21);
    pthread_mutex_lock(&chat.lock);
    for (size_t i = 0; i < chat.nrooms; i++) {
        const room_t *room = chat.rooms[i];
        buf_printf(&b, "%s{\"name\":\"%s\",\"users\":%zu,\"seq\":%llu}", i ? "," : "", room->name,
                   room->nmembers, (unsigned long long)room->seq);
    }
    pthread_mutex_unlock(&chat.lock);
    buf_add(&b, "]}", 2);
    if (b.failed)
        fail(s, ev, "rooms", 500, "out of memory");
    else
        answer(s, ev, "rooms", b.p);
    free(b.p);
}

/* The per-message path: the message is written once, on the stack, and broadcast; the
 * layer keeps it in the room's history (eddy_rt_options_t.history_max_messages). The lock
 * orders numbering, storing and sending against a joiner reading the history. */
static void on_say(eddy_rt_socket_t *s, const eddy_rt_event_t *ev, void *ud)
{
    (void)ud;
    char name[NAME_MAX_LEN + 1];
    const char *text;
    size_t text_len;
    client_t *c = eddy_rt_socket_data(s);
    if (c == NULL)
        return fail(s, ev, "say", 401, "login first");
    if (!member_name(ev, "room", name) || !member_text(ev, &text, &text_len))
        return fail(s, ev, "say", 422, "want room and text (1-2000 bytes)");
    pthread_mutex_lock(&chat.lock);
    size_t index;
    room_t *room = room_find(name, &index);
    if (room == NULL || !client_in(c, index)) {
        pthread_mutex_unlock(&chat.lock);
        return fail(s, ev, "say", 403, "join the room first");
    }
    char object[TEXT_MAX_LEN + 2 * NAME_MAX_LEN + 96];
    int n = snprintf(object, sizeof(object),
                     "{\"room\":\"%s\",\"seq\":%llu,\"from\":\"%s\",\"text\":", room->name,
                     (unsigned long long)room->seq + 1, c->user);
    memcpy(object + n, text, text_len);
    n += (int)text_len;
    n += snprintf(object + n, sizeof(object) - (size_t)n, ",\"ts\":%llu}",
                  (unsigned long long)now_ms());
    const char *rooms[] = {room->layer_room};
    eddy_rt_to_t to = {.rooms = rooms, .nrooms = 1};
    eddy_rt_msg_t msg = {.event = "message", .args = object, .args_len = (size_t)n};
    int rc = eddy_rt_broadcast(chat.nsp, &to, &msg);
    if (rc == 0)
        room->seq++;
    pthread_mutex_unlock(&chat.lock);
    if (rc != 0)
        return fail(s, ev, "say", 500, "could not send");
    if (ev->ack_id >= 0)
        eddy_rt_ack_json(s, ev->ack_id, "{\"code\":200}");
}

static void on_tell(eddy_rt_socket_t *s, const eddy_rt_event_t *ev, void *ud)
{
    (void)ud;
    char to_user[NAME_MAX_LEN + 1];
    const char *text;
    size_t text_len;
    client_t *c = eddy_rt_socket_data(s);
    if (c == NULL)
        return fail(s, ev, "tell", 401, "login first");
    if (!member_name(ev, "to", to_user) || !member_text(ev, &text, &text_len))
        return fail(s, ev, "tell", 422, "want to and text (1-2000 bytes)");
    if (!eddy_rt_user_online(chat.nsp, to_user))
        return fail(s, ev, "tell", 404, "no such user online");
    char object[TEXT_MAX_LEN + 2 * NAME_MAX_LEN + 64];
    int n = snprintf(object, sizeof(object), "{\"from\":\"%s\",\"to\":\"%s\",\"text\":", c->user,
                     to_user);
    memcpy(object + n, text, text_len);
    n += (int)text_len;
    n += snprintf(object + n, sizeof(object) - (size_t)n, ",\"ts\":%llu}",
                  (unsigned long long)now_ms());
    /* Every tab of the recipient, and the sender's tabs (which show what was sent). */
    const char *users[] = {to_user, c->user};
    eddy_rt_to_t to = {.users = users, .nusers = 2};
    eddy_rt_msg_t msg = {.event = "private", .args = object, .args_len = (size_t)n};
    eddy_rt_broadcast(chat.nsp, &to, &msg);
    if (ev->ack_id >= 0)
        eddy_rt_ack_json(s, ev->ack_id, "{\"code\":200}");
}

/* Typing indicators are volatile: a tab that is behind skips them rather than queue them. */
static void on_typing(eddy_rt_socket_t *s, const eddy_rt_event_t *ev, void *ud)
{
    (void)ud;
    char name[NAME_MAX_LEN + 1];
    client_t *c = eddy_rt_socket_data(s);
    if (c == NULL || !member_name(ev, "room", name))
        return;
    int typing = member(ev, "typing", NULL, NULL) == EDDY_RT_JSON_TRUE;
    pthread_mutex_lock(&chat.lock);
    size_t index;
    room_t *room = room_find(name, &index);
    pthread_mutex_unlock(&chat.lock);
    if (room == NULL || !client_in(c, index))
        return;
    char object[128];
    int n = snprintf(object, sizeof(object), "{\"room\":\"%s\",\"user\":\"%s\",\"typing\":%s}",
                     name, c->user, typing ? "true" : "false");
    const char *rooms[] = {room->layer_room};
    eddy_rt_to_t to = {.rooms = rooms, .nrooms = 1, .except_socket = s};
    eddy_rt_msg_t msg = {
        .event = "typing", .args = object, .args_len = (size_t)n, .flags = EDDY_RT_VOLATILE};
    eddy_rt_broadcast(chat.nsp, &to, &msg);
}

static void on_disconnect(eddy_rt_socket_t *s, const char *reason, void *ud)
{
    (void)reason;
    (void)ud;
    free(eddy_rt_socket_data(s));
    eddy_rt_socket_set_data(s, NULL);
}

/* ---- the page ---- */

static void on_request(eddy_server_t *srv, eddy_request_t *req, eddy_response_t *resp,
                       void *user_data)
{
    (void)srv;
    (void)user_data;
    const char *path = eddy_request_path(req);
    int is_page = strcmp(path, "/") == 0 || strcmp(path, "/index.html") == 0;
    if (!is_page || strcmp(eddy_request_method(req), "GET") != 0) {
        eddy_response_status(resp, is_page ? 405 : 404, NULL);
        eddy_response_end(resp, is_page ? "method not allowed\n" : "not found\n",
                          is_page ? 19 : 10);
        return;
    }
    eddy_response_header(resp, "Content-Type", "text/html; charset=utf-8");
    eddy_response_header(resp, "Cache-Control", "no-cache");
    eddy_response_end(resp, chat.page, chat.page_len);
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *data = NULL;
    size_t cap = 0, n = 0, got;
    do {
        if (n == cap) {
            char *p = realloc(data, cap = cap ? cap * 2 : 16384);
            if (p == NULL) {
                free(data);
                fclose(f);
                return NULL;
            }
            data = p;
        }
        got = fread(data + n, 1, cap - n, f);
        n += got;
    } while (got > 0);
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(data);
        return NULL;
    }
    *len = n;
    return data;
}

static const example_option_spec_t options[] = {
    {"--page", "FILE", "the chat page served on / (default examples/chat/index.html)"},
    {"--history", "N", "messages kept per room and replayed on join, 1-1000 (default 50)"},
    {"--ping-interval", "MS", "Engine.IO pingInterval (default 25000)"},
    {"--ping-timeout", "MS", "Engine.IO pingTimeout (default 20000)"},
    {NULL, NULL, NULL},
};

static const example_spec_t spec = {
    .name = "chat",
    .summary = "A chat on eddy_rt: users, rooms, presence, history on join, private messages.",
    .options = options,
};

int main(int argc, char **argv)
{
    eddy_server_t *srv = example_new(argc, argv, &spec);
    const char *page = example_option(argc, argv, "--page", "examples/chat/index.html");
    chat.history_len = example_number(argc, argv, &spec, "--history", 1, 1000, 50);
    eddy_rt_options_t opts;
    eddy_rt_options_init(&opts);
    opts.ping_interval_ms =
        (uint32_t)example_number(argc, argv, &spec, "--ping-interval", 1, UINT32_MAX, 25000);
    opts.ping_timeout_ms =
        (uint32_t)example_number(argc, argv, &spec, "--ping-timeout", 1, UINT32_MAX, 20000);
    /* The chat's history is the layer's: the last --history events of each room, for a day. */
    opts.history_max_messages = chat.history_len;
    opts.history_max_age_ms = 24 * 3600 * 1000;
    if ((chat.page = read_file(page, &chat.page_len)) == NULL) {
        fprintf(stderr, "chat: cannot read the page %s: %s (--page FILE)\n", page, strerror(errno));
        return 1;
    }
    eddy_rt_t *rt = eddy_rt_new(srv, &opts);
    if (rt == NULL)
        return 1;
    chat.nsp = eddy_rt_of(rt, "/");
    eddy_rt_nsp_set_handlers(
        chat.nsp, &(eddy_rt_handlers_t){.disconnect = on_disconnect, .presence = on_presence});
    eddy_rt_on(chat.nsp, "login", on_login, NULL);
    eddy_rt_on(chat.nsp, "join", on_join, NULL);
    eddy_rt_on(chat.nsp, "leave", on_leave, NULL);
    eddy_rt_on(chat.nsp, "rooms", on_rooms, NULL);
    eddy_rt_on(chat.nsp, "say", on_say, NULL);
    eddy_rt_on(chat.nsp, "tell", on_tell, NULL);
    eddy_rt_on(chat.nsp, "typing", on_typing, NULL);
    eddy_rt_install(rt, on_request);
    int rc = example_run(srv);
    eddy_rt_free(rt);
    for (size_t i = 0; i < chat.nrooms; i++)
        room_free(chat.rooms[i]);
    free(chat.page);
    return rc;
}

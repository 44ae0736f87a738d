/* SPDX-License-Identifier: MIT */
/*
 * testbed: a server for the integration tests that prints every event and runs server
 * methods on command, so tests can drive and observe the whole API from outside.
 *
 * Events print one line each (fd is the session id, status the websocket_status seen
 * through eddy_client_info() inside the callback):
 *   start | shutdown | connect <fd> | open <fd> <path> <query>
 *   message <fd> <opcode> <flags> <len> <data>       (text shown as is, binary as hex)
 *   control <fd> <opcode> <len> [code <code> reason <reason>]
 *   close <fd> <status> | disconnect <fd> <status>
 *   request <fd> <method> <uri> body=<len>
 *
 * A text message starting with '!' is a command; its result prints as "= <result>":
 *   !push <fd> <opcode> <flags> <text>   push text (use "-" for an empty payload)
 *   !pushsize <fd> <bytes>               push a binary message of that many 'x' bytes
 *   !exist <fd> | !established <fd>      true/false
 *   !disconnect <fd> <code> [reason]     eddy_disconnect() return code
 *   !close <fd> | !send <fd> <text>
 *   !info <fd>                           status ip port server_port connect last
 *   !count | !list                       live connections, ids in order
 *   !after <ms> <text>                   timer: prints "timer <id> <text>" (= the id)
 *   !tick <ms> <n> <text>                fires n times, then clears itself
 *   !clear <id>                          true/false
 *   !defer <text>                        prints "defer <text>" on the next iteration
 *   !queuedlater <fd>                    prints "queued <fd> <bytes>" from a deferred
 *                                        callback: after this iteration's output was written
 *   !userdata <fd>                       sets then reads back per-connection user data
 *   !stop                                eddy_server_stop()
 *   !heap                                bytes malloc has handed out and not taken back
 *                                        (mallinfo2's uordblks; 0 under sanitizers)
 *   !loop <fd>                           the loop (reactor_id) owning fd
 *   !pushmany <fd> <count> <bytes>       count binary pushes in one callback (nothing is
 *                                        flushed in between): prints every return code
 *   !queued <fd>                         send_queued_bytes of fd
 *   !recvtime <fd>                       last_recv_time of fd (seconds, 3 decimals)
 *   !sub <fd> <topic> | !unsub <fd> <topic>   eddy_subscribe()/eddy_unsubscribe()
 *   !pub <topic> <text> | !pubz <topic> <text>  eddy_publish() (z: with COMPRESS)
 *   !pubsize <topic> <bytes>             publish a binary message of that many 'p' bytes
 *   !pubmany <topic> <count> <bytes>     count binary publications in one callback, the
 *                                        i-th filled with byte i % 256: prints the last code
 *   !bcast <text> | !subs <topic>        eddy_broadcast(), eddy_topic_subscribers()
 *   !task <ms> <text>                    a task sleeping ms, returning text; its finish
 *                                        prints "finish <id> <text> <loop>"
 *   !thread push <fd> <n> <text>         an application thread pushes "<text> <i>" n times
 *   !thread pub <topic> <n> <text>       ... publishes them; both print "thread done"
 *   !thread pubparts <topics> <n> <text> an application thread publishes n units of 3
 *                                        parts (unit_parts(), text "<text> <i>") to the
 *                                        comma-separated topics with eddy_publish_parts()
 *   !thread pushparts <fd> <n> <text>    ... pushes them with eddy_push_parts()
 *   !pubparts <topics> <excepts> <except_fd> <flags> <nparts> <text>
 *                                        eddy_publish_parts(): topics and except-topics
 *                                        comma-separated ("-": none), flags letters
 *                                        v (VOLATILE) and z (COMPRESS) or "-"; the parts
 *                                        are unit_parts()
 *   !pushparts <fd> <flags> <nparts> <text>  eddy_push_parts(), the same parts
 *   !volatile pub|push <topic|fd> <bytes> <i>  eddy_publish()/eddy_push() with VOLATILE
 *                                        of a binary message of that many bytes: "<i>:"
 *                                        then 'v's
 * Events also print "drain <fd>" (the drain callback).
 * Other messages are echoed (compressed if they came compressed). Plain HTTP requests
 * (with --request) get "ok <path>" or, for /detach?ms=N, an answer N ms later from a timer
 * (with &write=1, a write before the end, each printing "detached write|end <code>");
 * /chunked answers in pieces; /close drops the connection; /status?code=N answers with
 * that status (&bare=1: without Content-Type); /page serves the file given with --page; POST
 * /report prints "report <body>" (how a browser page hands its results to a test). Flags: --request
 * (set the request callback), --disconnect (set disconnect),
 *        --handshake (a handshake callback answering 101 itself), --page FILE,
 *        --upgrade (an upgrade callback: prints "upgrade <fd> <origin or ->" and decides
 *        by the query: refuse=N refuses with status N, a WWW-Authenticate and an X-Why
 *        header and the body "refused N"; deny=N returns N; badheader=1 calls
 *        eddy_upgrade_refuse() with an invalid header name and returns its result;
 *        close=1 closes the connection; anything else is accepted, with user data
 *        that the open event prints as "userdata <fd> <value>").
 */
#include <ctype.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include "example.h"

static int printable(const char *data, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (!isprint((unsigned char)data[i]))
            return 0;
    }
    return 1;
}

static void status_line(eddy_server_t *srv, const char *event, eddy_fd_t fd)
{
    eddy_client_info_t info;
    int status = eddy_client_info(srv, fd, &info) == 0 ? info.websocket_status : -1;
    printf("%s %llu %d\n", event, (unsigned long long)fd, status);
}

static void on_start(eddy_server_t *srv, void *user_data)
{
    printf("start\n");
}

static void on_connect(eddy_server_t *srv, eddy_fd_t fd, void *user_data)
{
    printf("connect %llu\n", (unsigned long long)fd);
}

static void on_open(eddy_server_t *srv, eddy_request_t *req, void *user_data)
{
    const char *query = eddy_request_query(req);
    eddy_fd_t fd = eddy_request_fd(req);
    printf("open %llu %s %s\n", (unsigned long long)fd, eddy_request_path(req),
           *query ? query : "-");
    const char *mark = eddy_conn_user_data(srv, fd);
    if (mark != NULL)
        printf("userdata %llu %s\n", (unsigned long long)fd, mark);
}

static void on_drain(eddy_server_t *srv, eddy_fd_t fd, void *user_data)
{
    printf("drain %llu\n", (unsigned long long)fd);
}

/* Tasks: sleep, then hand the text back. */
struct task_arg {
    unsigned ms;
    char text[200];
};

static void *task_run(void *arg)
{
    struct task_arg *t = arg;
    struct timespec ts = {t->ms / 1000, (long)(t->ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
    return t->text;
}

static void task_finish(eddy_server_t *srv, uint64_t id, void *result, void *arg)
{
    printf("finish %llu %s\n", (unsigned long long)id, (char *)result);
    free(arg);
}

/* The parts of the unit named text: text itself, then nparts - 1 binary parts
 * "<text>/<k>" (k from 1), written into bufs. */
#define UNIT_PARTS_MAX 8
static size_t unit_parts(eddy_part_t *parts, char bufs[][160], size_t nparts, const char *text)
{
    nparts = nparts > UNIT_PARTS_MAX ? UNIT_PARTS_MAX : nparts;
    for (size_t k = 0; k < nparts; k++) {
        int len =
            k == 0 ? snprintf(bufs[k], 160, "%s", text) : snprintf(bufs[k], 160, "%s/%zu", text, k);
        parts[k] = (eddy_part_t){.data = bufs[k],
                                 .len = (size_t)len,
                                 .opcode = k == 0 ? EDDY_WS_OPCODE_TEXT : EDDY_WS_OPCODE_BINARY};
    }
    return nparts;
}

/* Splits a comma-separated list in place into names (at most max; "-" is none). */
static size_t split_names(char *list, const char **names, size_t max)
{
    size_t n = 0;
    char *save = NULL;
    if (list == NULL || strcmp(list, "-") == 0)
        return 0;
    for (char *name = strtok_r(list, ",", &save); name != NULL && n < max;
         name = strtok_r(NULL, ",", &save))
        names[n++] = name;
    return n;
}

static int parse_flags(const char *letters)
{
    int flags = 0;
    if (letters != NULL && strchr(letters, 'v'))
        flags |= EDDY_WS_FLAG_VOLATILE;
    if (letters != NULL && strchr(letters, 'z'))
        flags |= EDDY_WS_FLAG_COMPRESS;
    return flags;
}

/* Application threads calling the API. */
enum app_op { APP_PUSH, APP_PUB, APP_PUSH_PARTS, APP_PUB_PARTS };
struct app_thread {
    eddy_server_t *srv;
    enum app_op op;
    eddy_fd_t fd;
    char topic[100];
    int n;
    char text[100];
};

static void app_thread_parts(struct app_thread *t, const char *text)
{
    eddy_part_t parts[3];
    char bufs[3][160];
    unit_parts(parts, bufs, 3, text);
    if (t->op == APP_PUSH_PARTS) {
        eddy_push_parts(t->srv, t->fd, parts, 3, 0);
        return;
    }
    const char *topics[8];
    char list[sizeof(t->topic)];
    snprintf(list, sizeof(list), "%s", t->topic);
    eddy_publish_spec_t spec = {.topics = topics, .ntopics = split_names(list, topics, 8)};
    eddy_publish_parts(t->srv, &spec, parts, 3);
}

/* Joined at shutdown: threads that use a server must end before it is freed. */
#define MAX_APP_THREADS 64
static pthread_t app_threads[MAX_APP_THREADS];
static int app_threads_len;

static void *app_thread_main(void *arg)
{
    struct app_thread *t = arg;
    for (int i = 0; i < t->n; i++) {
        char msg[128];
        int len = snprintf(msg, sizeof(msg), "%s %d", t->text, i);
        if (t->op == APP_PUB)
            eddy_publish(t->srv, t->topic, msg, (size_t)len, EDDY_WS_OPCODE_TEXT, EDDY_WS_FLAG_FIN);
        else if (t->op == APP_PUSH)
            eddy_push(t->srv, t->fd, msg, (size_t)len, EDDY_WS_OPCODE_TEXT, EDDY_WS_FLAG_FIN);
        else
            app_thread_parts(t, msg);
    }
    printf("thread done\n");
    free(t);
    return NULL;
}

static void on_close(eddy_server_t *srv, eddy_fd_t fd, void *user_data)
{
    status_line(srv, "close", fd);
}

static void on_disconnect(eddy_server_t *srv, eddy_fd_t fd, void *user_data)
{
    status_line(srv, "disconnect", fd);
}

/* Timer arguments; those still pending at shutdown are freed there. */
struct timer_text {
    struct timer_text *prev, *next;
    int remaining; /* ticks left; -1 for a one-shot timer */
    char text[256];
};

static struct timer_text *pending_timers;

static struct timer_text *timer_text_new(void)
{
    struct timer_text *t = calloc(1, sizeof(*t));
    t->next = pending_timers;
    if (pending_timers)
        pending_timers->prev = t;
    pending_timers = t;
    return t;
}

static void timer_text_free(struct timer_text *t)
{
    if (t->prev)
        t->prev->next = t->next;
    else
        pending_timers = t->next;
    if (t->next)
        t->next->prev = t->prev;
    free(t);
}

static void on_timer(eddy_server_t *srv, uint64_t id, void *arg)
{
    struct timer_text *t = arg;
    printf("timer %llu %s\n", (unsigned long long)id, t->text);
    if (t->remaining > 0 && --t->remaining == 0) {
        eddy_timer_clear(srv, id);
        timer_text_free(t);
    } else if (t->remaining < 0) {
        timer_text_free(t);
    }
}

static void on_shutdown(eddy_server_t *srv, void *user_data)
{
    printf("shutdown\n");
    for (int i = 0; i < app_threads_len; i++)
        pthread_join(app_threads[i], NULL);
    while (pending_timers != NULL)
        timer_text_free(pending_timers);
}

static void on_defer(eddy_server_t *srv, void *arg)
{
    printf("defer %s\n", (char *)arg);
    free(arg);
}

/* Deferred callbacks run after the loop wrote its connections' output once. */
static void on_defer_queued(eddy_server_t *srv, void *arg)
{
    eddy_client_info_t info;
    eddy_fd_t fd = (eddy_fd_t)(uintptr_t)arg;
    int rc = eddy_client_info(srv, fd, &info);
    printf("queued %llu %zu\n", (unsigned long long)fd, rc == 0 ? info.send_queued_bytes : 0);
}

/* A result line is built here and printed with one call: other loops print too. */
struct line {
    char text[4096];
    size_t len;
};

static void line_add(struct line *line, const char *fmt, long long value)
{
    if (line->len < sizeof(line->text))
        line->len +=
            (size_t)snprintf(line->text + line->len, sizeof(line->text) - line->len, fmt, value);
}

static bool list_one(eddy_server_t *srv, eddy_fd_t fd, void *arg)
{
    line_add(arg, " %lld", (long long)fd);
    return true;
}

static eddy_fd_t arg_fd(const char *s)
{
    return (eddy_fd_t)strtoull(s, NULL, 10);
}

static void command(eddy_server_t *srv, eddy_fd_t self, char *line)
{
    char *save = NULL;
    char *cmd = strtok_r(line, " ", &save);
    char *a1 = strtok_r(NULL, " ", &save);
    char *rest = save; /* the remainder, unsplit */
    if (cmd == NULL)
        return;
    if (strcmp(cmd, "push") == 0 && a1 != NULL) {
        char *opcode = strtok_r(NULL, " ", &save);
        char *flags = strtok_r(NULL, " ", &save);
        const char *text = save && *save ? save : "";
        if (strcmp(text, "-") == 0)
            text = "";
        printf("= %d\n", eddy_push(srv, arg_fd(a1), text, strlen(text), atoi(opcode ? opcode : "1"),
                                   atoi(flags ? flags : "1")));
    } else if (strcmp(cmd, "pushsize") == 0 && a1 != NULL) {
        size_t n = strtoull(rest, NULL, 10);
        char *data = malloc(n + 1);
        memset(data, 'x', n);
        printf("= %d\n",
               eddy_push(srv, arg_fd(a1), data, n, EDDY_WS_OPCODE_BINARY, EDDY_WS_FLAG_FIN));
        free(data);
    } else if (strcmp(cmd, "exist") == 0 && a1 != NULL) {
        printf("= %s\n", eddy_exist(srv, arg_fd(a1)) ? "true" : "false");
    } else if (strcmp(cmd, "established") == 0 && a1 != NULL) {
        printf("= %s\n", eddy_is_established(srv, arg_fd(a1)) ? "true" : "false");
    } else if (strcmp(cmd, "disconnect") == 0 && a1 != NULL) {
        char *code = strtok_r(NULL, " ", &save);
        const char *reason = save && *save ? save : NULL;
        printf("= %d\n", eddy_disconnect(srv, arg_fd(a1), atoi(code ? code : "1000"), reason));
    } else if (strcmp(cmd, "close") == 0 && a1 != NULL) {
        printf("= %d\n", eddy_close(srv, arg_fd(a1)));
    } else if (strcmp(cmd, "send") == 0 && a1 != NULL) {
        printf("= %d\n", eddy_send(srv, arg_fd(a1), rest, strlen(rest)));
    } else if (strcmp(cmd, "info") == 0 && a1 != NULL) {
        eddy_client_info_t info;
        int rc = eddy_client_info(srv, arg_fd(a1), &info);
        if (rc != 0)
            printf("= %d\n", rc);
        else
            printf("= %d %s %d %d %lld %lld\n", info.websocket_status, info.remote_ip,
                   info.remote_port, info.server_port, (long long)info.connect_time,
                   (long long)info.last_time);
    } else if (strcmp(cmd, "recvtime") == 0 && a1 != NULL) {
        eddy_client_info_t info;
        int rc = eddy_client_info(srv, arg_fd(a1), &info);
        if (rc != 0)
            printf("= %d\n", rc);
        else
            printf("= %.3f\n", info.last_recv_time);
    } else if (strcmp(cmd, "count") == 0) {
        printf("= %zu\n", eddy_connection_count(srv));
    } else if (strcmp(cmd, "list") == 0) {
        struct line out = {.len = 0};
        eddy_connection_foreach(srv, list_one, &out);
        printf("=%.*s\n", (int)out.len, out.text);
    } else if ((strcmp(cmd, "after") == 0 || strcmp(cmd, "tick") == 0) && a1 != NULL) {
        struct timer_text *t = timer_text_new();
        uint64_t ms = strtoull(a1, NULL, 10);
        uint64_t id;
        if (strcmp(cmd, "tick") == 0) {
            char *n = strtok_r(NULL, " ", &save);
            t->remaining = atoi(n ? n : "1");
            snprintf(t->text, sizeof(t->text), "%s", save ? save : "");
            id = eddy_timer_tick(srv, ms, on_timer, t);
        } else {
            t->remaining = -1;
            snprintf(t->text, sizeof(t->text), "%s", rest ? rest : "");
            id = eddy_timer_after(srv, ms, on_timer, t);
        }
        printf("= %llu\n", (unsigned long long)id);
    } else if (strcmp(cmd, "clear") == 0 && a1 != NULL) {
        printf("= %s\n", eddy_timer_clear(srv, strtoull(a1, NULL, 10)) ? "true" : "false");
    } else if (strcmp(cmd, "defer") == 0) {
        char text[512];
        snprintf(text, sizeof(text), "%s%s%s", a1 ? a1 : "", rest && *rest ? " " : "",
                 rest ? rest : "");
        printf("= %d\n", eddy_defer(srv, on_defer, strdup(text)));
    } else if (strcmp(cmd, "queuedlater") == 0 && a1 != NULL) {
        printf("= %d\n", eddy_defer(srv, on_defer_queued, (void *)(uintptr_t)arg_fd(a1)));
    } else if (strcmp(cmd, "userdata") == 0 && a1 != NULL) {
        static int marker;
        int rc = eddy_conn_set_user_data(srv, arg_fd(a1), &marker);
        printf("= %d %s\n", rc, eddy_conn_user_data(srv, arg_fd(a1)) == &marker ? "same" : "none");
    } else if (strcmp(cmd, "pushmany") == 0 && a1 != NULL) {
        char *count = strtok_r(NULL, " ", &save);
        size_t n = strtoull(save ? save : "0", NULL, 10);
        char *data = malloc(n + 1);
        memset(data, 'm', n);
        struct line out = {.len = 0};
        for (int i = 0; i < atoi(count ? count : "1"); i++)
            line_add(&out, " %lld",
                     eddy_push(srv, arg_fd(a1), data, n, EDDY_WS_OPCODE_BINARY, EDDY_WS_FLAG_FIN));
        printf("=%.*s\n", (int)out.len, out.text);
        free(data);
    } else if (strcmp(cmd, "queued") == 0 && a1 != NULL) {
        eddy_client_info_t info;
        int rc = eddy_client_info(srv, arg_fd(a1), &info);
        printf("= %zu\n", rc == 0 ? info.send_queued_bytes : 0);
    } else if (strcmp(cmd, "loop") == 0 && a1 != NULL) {
        eddy_client_info_t info;
        int rc = eddy_client_info(srv, arg_fd(a1), &info);
        printf("= %d\n", rc == 0 ? info.reactor_id : rc);
    } else if ((strcmp(cmd, "sub") == 0 || strcmp(cmd, "unsub") == 0) && a1 != NULL) {
        const char *topic = rest ? rest : "";
        printf("= %d\n", strcmp(cmd, "sub") == 0 ? eddy_subscribe(srv, arg_fd(a1), topic)
                                                 : eddy_unsubscribe(srv, arg_fd(a1), topic));
    } else if ((strcmp(cmd, "pub") == 0 || strcmp(cmd, "pubz") == 0) && a1 != NULL) {
        const char *text = rest ? rest : "";
        int flags = EDDY_WS_FLAG_FIN | (cmd[3] == 'z' ? EDDY_WS_FLAG_COMPRESS : 0);
        printf("= %d\n", eddy_publish(srv, a1, text, strlen(text), EDDY_WS_OPCODE_TEXT, flags));
    } else if (strcmp(cmd, "pubsize") == 0 && a1 != NULL) {
        size_t n = strtoull(rest ? rest : "0", NULL, 10);
        char *data = malloc(n + 1);
        memset(data, 'p', n);
        printf("= %d\n", eddy_publish(srv, a1, data, n, EDDY_WS_OPCODE_BINARY, EDDY_WS_FLAG_FIN));
        free(data);
    } else if (strcmp(cmd, "pubmany") == 0 && a1 != NULL && rest != NULL) {
        char *save2 = NULL;
        int count = atoi(strtok_r(rest, " ", &save2));
        size_t n = strtoull(save2 ? save2 : "0", NULL, 10);
        char *data = malloc(n + 1);
        int rc = 0;
        for (int i = 0; i < count; i++) {
            memset(data, i % 256, n);
            rc = eddy_publish(srv, a1, data, n, EDDY_WS_OPCODE_BINARY, EDDY_WS_FLAG_FIN);
        }
        printf("= %d\n", rc);
        free(data);
    } else if (strcmp(cmd, "pubparts") == 0 && a1 != NULL) {
        char *excepts = strtok_r(NULL, " ", &save);
        char *except_fd = strtok_r(NULL, " ", &save);
        char *letters = strtok_r(NULL, " ", &save);
        char *nparts = strtok_r(NULL, " ", &save);
        const char *topics[16], *except_topics[16];
        eddy_part_t parts[UNIT_PARTS_MAX];
        char bufs[UNIT_PARTS_MAX][160];
        eddy_publish_spec_t spec = {
            .topics = topics,
            .ntopics = split_names(a1, topics, 16),
            .except_topics = except_topics,
            .nexcept = split_names(excepts, except_topics, 16),
            .except_fd = except_fd ? arg_fd(except_fd) : 0,
            .flags = parse_flags(letters),
        };
        size_t n =
            unit_parts(parts, bufs, nparts ? strtoull(nparts, NULL, 10) : 1, save ? save : "");
        printf("= %d\n", eddy_publish_parts(srv, &spec, parts, n));
    } else if (strcmp(cmd, "pushparts") == 0 && a1 != NULL) {
        char *letters = strtok_r(NULL, " ", &save);
        char *nparts = strtok_r(NULL, " ", &save);
        eddy_part_t parts[UNIT_PARTS_MAX];
        char bufs[UNIT_PARTS_MAX][160];
        size_t n =
            unit_parts(parts, bufs, nparts ? strtoull(nparts, NULL, 10) : 1, save ? save : "");
        printf("= %d\n", eddy_push_parts(srv, arg_fd(a1), parts, n, parse_flags(letters)));
    } else if (strcmp(cmd, "volatile") == 0 && a1 != NULL) {
        char *target = strtok_r(NULL, " ", &save);
        char *bytes = strtok_r(NULL, " ", &save);
        char *index = strtok_r(NULL, " ", &save);
        size_t n = bytes ? strtoull(bytes, NULL, 10) : 0;
        char *data = malloc(n + 32);
        int head = snprintf(data, 32, "%s:", index ? index : "0");
        memset(data + head, 'v', n > (size_t)head ? n - (size_t)head : 0);
        n = n > (size_t)head ? n : (size_t)head;
        int flags = EDDY_WS_FLAG_FIN | EDDY_WS_FLAG_VOLATILE;
        int rc = EDDY_EINVAL;
        if (target != NULL && strcmp(a1, "pub") == 0)
            rc = eddy_publish(srv, target, data, n, EDDY_WS_OPCODE_BINARY, flags);
        else if (target != NULL)
            rc = eddy_push(srv, arg_fd(target), data, n, EDDY_WS_OPCODE_BINARY, flags);
        printf("= %d\n", rc);
        free(data);
    } else if (strcmp(cmd, "bcast") == 0) {
        char text[512];
        snprintf(text, sizeof(text), "%s%s%s", a1 ? a1 : "", rest && *rest ? " " : "",
                 rest ? rest : "");
        printf("= %d\n",
               eddy_broadcast(srv, text, strlen(text), EDDY_WS_OPCODE_TEXT, EDDY_WS_FLAG_FIN));
    } else if (strcmp(cmd, "subs") == 0 && a1 != NULL) {
        printf("= %zu\n", eddy_topic_subscribers(srv, a1));
    } else if (strcmp(cmd, "task") == 0 && a1 != NULL) {
        struct task_arg *t = calloc(1, sizeof(*t));
        t->ms = (unsigned)atoi(a1);
        snprintf(t->text, sizeof(t->text), "%s", rest ? rest : "");
        uint64_t id = eddy_task(srv, task_run, task_finish, t);
        if (id == 0)
            free(t);
        printf("= %llu\n", (unsigned long long)id);
    } else if (strcmp(cmd, "thread") == 0 && a1 != NULL) {
        struct app_thread *t = calloc(1, sizeof(*t));
        char *target = strtok_r(NULL, " ", &save);
        char *n = strtok_r(NULL, " ", &save);
        t->srv = srv;
        t->op = strcmp(a1, "pub") == 0         ? APP_PUB
                : strcmp(a1, "pubparts") == 0  ? APP_PUB_PARTS
                : strcmp(a1, "pushparts") == 0 ? APP_PUSH_PARTS
                                               : APP_PUSH;
        if (target != NULL) {
            t->fd = arg_fd(target);
            snprintf(t->topic, sizeof(t->topic), "%s", target);
        }
        t->n = n ? atoi(n) : 1;
        snprintf(t->text, sizeof(t->text), "%s", save ? save : "");
        printf("= 0\n"); /* before the thread's own lines */
        if (app_threads_len < MAX_APP_THREADS)
            pthread_create(&app_threads[app_threads_len++], NULL, app_thread_main, t);
        else
            free(t);
    } else if (strcmp(cmd, "heap") == 0) {
        printf("= %zu\n", mallinfo2().uordblks);
    } else if (strcmp(cmd, "stop") == 0) {
        printf("= 0\n");
        eddy_server_stop(srv);
    } else {
        printf("= unknown command\n");
    }
    (void)self;
}

static void on_message(eddy_server_t *srv, const eddy_frame_t *frame, void *user_data)
{
    if (frame->opcode >= EDDY_WS_OPCODE_CLOSE) {
        if (frame->opcode == EDDY_WS_OPCODE_CLOSE)
            printf("control %llu %d %zu code %u reason %s\n", (unsigned long long)frame->fd,
                   frame->opcode, frame->len, frame->code, frame->reason);
        else
            printf("control %llu %d %zu\n", (unsigned long long)frame->fd, frame->opcode,
                   frame->len);
        return;
    }
    if (frame->opcode == EDDY_WS_OPCODE_TEXT && frame->len > 1 && frame->data[0] == '!') {
        char *line = strndup(frame->data + 1, frame->len - 1);
        command(srv, frame->fd, line);
        free(line);
        return;
    }
    flockfile(stdout); /* one line, whatever other loops print meanwhile */
    printf("message %llu %d %d %zu ", (unsigned long long)frame->fd, frame->opcode, frame->flags,
           frame->len);
    if (frame->len <= 200 && printable(frame->data, frame->len)) {
        fwrite(frame->data, 1, frame->len, stdout);
    } else {
        for (size_t i = 0; i < frame->len && i < 100; i++)
            printf("%02x", (unsigned char)frame->data[i]);
    }
    printf("\n");
    funlockfile(stdout);
    int flags = EDDY_WS_FLAG_FIN;
    if (frame->flags & EDDY_WS_FLAG_RSV1)
        flags |= EDDY_WS_FLAG_COMPRESS;
    eddy_push(srv, frame->fd, frame->data, frame->len, frame->opcode, flags);
}

static const char *page_file;

/* Serves the --page file. */
static void serve_page(eddy_response_t *resp)
{
    FILE *f = page_file ? fopen(page_file, "rb") : NULL;
    if (f == NULL) {
        eddy_response_status(resp, 404, NULL);
        eddy_response_end(resp, "no page", 7);
        return;
    }
    char chunk[8192];
    size_t n;
    eddy_response_header(resp, "Content-Type", "text/html; charset=utf-8");
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        eddy_response_write(resp, chunk, n);
    fclose(f);
    eddy_response_end(resp, NULL, 0);
}

struct detached {
    eddy_response_t *resp;
    char path[64];
    bool write_first;
};

static void finish_detached(eddy_server_t *srv, uint64_t id, void *arg)
{
    struct detached *d = arg;
    if (d->write_first)
        printf("detached write %d\n", eddy_response_write(d->resp, "early,", 6));
    int rc = eddy_response_end(d->resp, "late", 4);
    printf("detached end %d\n", rc);
    free(d);
}

static void on_request(eddy_server_t *srv, eddy_request_t *req, eddy_response_t *resp,
                       void *user_data)
{
    size_t body_len = 0;
    const char *body = eddy_request_body(req, &body_len);
    const char *path = eddy_request_path(req);
    printf("request %llu %s %s body=%zu\n", (unsigned long long)eddy_request_fd(req),
           eddy_request_method(req), eddy_request_uri(req), body_len);
    if (strcmp(path, "/detach") == 0) {
        struct detached *d = calloc(1, sizeof(*d));
        d->resp = resp;
        d->write_first = eddy_request_get(req, "write") != NULL;
        const char *ms = eddy_request_get(req, "ms");
        eddy_response_detach(resp);
        eddy_timer_after(srv, strtoull(ms ? ms : "10", NULL, 10), finish_detached, d);
    } else if (strcmp(path, "/chunked") == 0) {
        eddy_response_write(resp, "one,", 4);
        eddy_response_write(resp, "two,", 4);
        eddy_response_end(resp, "three", 5);
    } else if (strcmp(path, "/close") == 0) {
        eddy_response_close(resp);
    } else if (strcmp(path, "/status") == 0) {
        const char *code = eddy_request_get(req, "code");
        eddy_response_status(resp, atoi(code ? code : "200"), NULL);
        if (eddy_request_get(req, "bare") != NULL)
            eddy_response_header(resp, "Content-Type", NULL);
        eddy_response_end(resp, NULL, 0);
    } else if (strcmp(path, "/page") == 0) {
        serve_page(resp);
    } else if (strcmp(path, "/report") == 0) {
        printf("report %.*s\n", (int)body_len, body);
        eddy_response_status(resp, 204, NULL);
        eddy_response_end(resp, NULL, 0);
    } else if (strcmp(path, "/noend") == 0) {
        /* returns without ending: eddy answers 500, whatever status and headers were set */
        const char *code = eddy_request_get(req, "code");
        if (code != NULL) {
            eddy_response_status(resp, atoi(code), NULL);
            eddy_response_header(resp, "X-Set", "yes");
        }
    } else if (strcmp(path, "/echo") == 0) {
        const char *cookie = eddy_request_cookie(req, "name");
        const char *header = eddy_request_header(req, "x-test");
        const char *get = eddy_request_get(req, "q");
        eddy_response_header(resp, "X-Cookie", cookie ? cookie : "-");
        eddy_response_header(resp, "X-Header", header ? header : "-");
        eddy_response_header(resp, "X-Get", get ? get : "-");
        eddy_response_end(resp, body, body_len);
    } else {
        char text[300];
        int n = snprintf(text, sizeof(text), "ok %s", path);
        eddy_response_end(resp, text, (size_t)n);
    }
}

static int on_upgrade(eddy_server_t *srv, eddy_request_t *req, void *user_data)
{
    static char accepted_mark[] = "from-upgrade";
    eddy_fd_t fd = eddy_request_fd(req);
    const char *origin = eddy_request_header(req, "origin");
    printf("upgrade %llu %s\n", (unsigned long long)fd, origin ? origin : "-");
    const char *refuse = eddy_request_get(req, "refuse");
    if (refuse != NULL) {
        char body[32];
        snprintf(body, sizeof(body), "refused %s", refuse);
        const char *headers[] = {"WWW-Authenticate", "Bearer realm=\"testbed\"", "X-Why", refuse,
                                 NULL};
        return eddy_upgrade_refuse(req, atoi(refuse), headers, body);
    }
    const char *deny = eddy_request_get(req, "deny");
    if (deny != NULL)
        return atoi(deny);
    if (eddy_request_get(req, "badheader") != NULL)
        return eddy_upgrade_refuse(req, 401, (const char *[]){"Bad Name", "x", NULL}, "no");
    if (eddy_request_get(req, "close") != NULL) {
        eddy_close(srv, fd);
        return 0;
    }
    eddy_conn_set_user_data(srv, fd, accepted_mark);
    return 0;
}

static void on_handshake(eddy_server_t *srv, eddy_request_t *req, eddy_response_t *resp,
                         void *user_data)
{
    const char *key = eddy_request_header(req, "sec-websocket-key");
    char accept[EDDY_WS_ACCEPT_LEN + 1];
    printf("handshake %llu\n", (unsigned long long)eddy_request_fd(req));
    if (key == NULL || eddy_ws_accept_key(key, strlen(key), accept) != 0) {
        eddy_response_status(resp, 403, NULL);
        eddy_response_end(resp, "bad key", 7);
        return;
    }
    eddy_response_header(resp, "Upgrade", "websocket");
    eddy_response_header(resp, "Connection", "Upgrade");
    eddy_response_header(resp, "Sec-WebSocket-Accept", accept);
    eddy_response_status(resp, 101, NULL);
    eddy_response_end(resp, NULL, 0);
}

static const example_spec_t spec = {
    .name = "testbed",
    .summary = "The integration tests' server: every method, driven by messages.",
    .options =
        (const example_option_spec_t[]){{"--page", "FILE", "serve FILE to plain HTTP requests"},
                                        {"--disconnect", NULL, "set the disconnect callback"},
                                        {"--request", NULL, "set the request callback"},
                                        {"--handshake", NULL, "set the handshake callback"},
                                        {"--upgrade", NULL, "set the upgrade callback"},
                                        {NULL, NULL, NULL}},
};

int main(int argc, char **argv)
{
    eddy_server_t *srv = example_new(argc, argv, &spec);
    page_file = example_option(argc, argv, "--page", NULL);
    eddy_on_start(srv, on_start);
    eddy_on_shutdown(srv, on_shutdown);
    eddy_on_connect(srv, on_connect);
    eddy_on_open(srv, on_open);
    eddy_on_message(srv, on_message);
    eddy_on_close(srv, on_close);
    eddy_on_drain(srv, on_drain);
    if (example_has_flag(argc, argv, "--disconnect"))
        eddy_on_disconnect(srv, on_disconnect);
    if (example_has_flag(argc, argv, "--request"))
        eddy_on_request(srv, on_request);
    if (example_has_flag(argc, argv, "--handshake"))
        eddy_on_handshake(srv, on_handshake);
    if (example_has_flag(argc, argv, "--upgrade"))
        eddy_on_upgrade(srv, on_upgrade);
    return example_run(srv);
}

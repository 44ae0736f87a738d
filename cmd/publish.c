/* SPDX-License-Identifier: MIT */
/*
 * `eddy publish` and `eddy api`: the server API's command-line client (realtime.h). The
 * configuration says where the API listens (the admin listener if there is one, else the
 * main one) and its key ([api] key, or EDDY_API_KEY). One blocking HTTP/1.1 request over
 * a socket, bounded in time and size: a command-line tool needs no event loop.
 *
 * Exit statuses: 0 the API answered 200 (its result printed); 1 no answer (cannot connect,
 * timed out, malformed answer); 2 usage error, invalid configuration or no [api] key;
 * 4 the API refused the call (its error printed: bad request, 401, no such socket ...).
 */
#include <jansson.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "realtime.h"

#define EXIT_API_ERROR 4
#define ANSWER_MAX     (1u << 20)
#define TIMEOUT_MS     5000

static const char publish_usage[] =
    "usage: eddy publish [-c FILE] [--namespace NS] [--room ROOM]... [--user USER]...\n"
    "                    [--socket ID] [--except ROOM]... [--volatile] EVENT [ARG...]\n"
    "       eddy api [-c FILE] METHOD [JSON]\n"
    "\n"
    "publish emits EVENT with the JSON values ARG... as its arguments to the sockets of\n"
    "the rooms and users given (each socket once), or to one socket, or to the whole\n"
    "namespace (default /) when no target is given, through the server API (POST\n"
    "/api/emit). api calls any API method with JSON as its body (default {}): emit,\n"
    "disconnect, join, leave, presence, history, rooms, sockets, stats.\n"
    "\n"
    "The API's address and key come from the configuration: the [admin] listener if it has\n"
    "a port, else [server]; [api] key (or EDDY_API_KEY).\n"
    "\n"
    "Exit status: 0 done (the result printed); 1 no answer; 2 usage error, invalid\n"
    "configuration or no [api] key; 4 the API refused the call (its error printed).\n";

static int usage_error(const char *fmt, const char *arg)
{
    fputs("eddy: ", stderr);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n%s", publish_usage);
    return EXIT_USAGE;
}

static long ms_left(const struct timespec *deadline)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long)(deadline->tv_sec - now.tv_sec) * 1000 +
           (deadline->tv_nsec - now.tv_nsec) / 1000000;
}

/* Connects with a deadline; -1 on failure (reason on stderr). */
static int dial(const char *host, int port, const struct timespec *deadline)
{
    char port_str[16];
    snprintf(port_str, sizeof(port_str), "%d", port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
    int rc = getaddrinfo(host, port_str, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "eddy: %s: %s\n", host, gai_strerror(rc));
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int err = 0;
        socklen_t elen = sizeof(err);
        long left = ms_left(deadline);
        if (poll(&p, 1, left > 0 ? (int)left : 0) != 1 ||
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0 || err != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0)
        fprintf(stderr, "eddy: cannot connect to the API at %s:%d\n", host, port);
    return fd;
}

/* Writes all of buf or fails at the deadline. */
static bool send_all(int fd, const char *buf, size_t len, const struct timespec *deadline)
{
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
            continue;
        }
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        long left = ms_left(deadline);
        if (left <= 0 || poll(&p, 1, (int)left) != 1)
            return false;
    }
    return true;
}

/*
 * POSTs body to path and reads the answer (the server closes: Connection: close). Returns
 * the HTTP status and the body in *answer (malloc'd), or -1 (reason on stderr).
 */
static int post(const char *host, int port, const char *path, const char *key, const char *body,
                char **answer)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += TIMEOUT_MS / 1000;
    int fd = dial(host, port, &deadline);
    if (fd < 0)
        return -1;
    size_t len = strlen(body);
    char *req = malloc(len + strlen(path) + strlen(host) + strlen(key) + 256);
    char *buf = malloc(ANSWER_MAX + 1);
    int status = -1;
    if (req == NULL || buf == NULL)
        goto out;
    int n = sprintf(req,
                    "POST %s HTTP/1.1\r\nHost: %s:%d\r\nAuthorization: apikey %s\r\n"
                    "Content-Type: application/json\r\nContent-Length: %zu\r\n"
                    "Connection: close\r\n\r\n%s",
                    path, host, port, key, len, body);
    if (!send_all(fd, req, (size_t)n, &deadline)) {
        fprintf(stderr, "eddy: cannot send the request to %s:%d\n", host, port);
        goto out;
    }
    size_t got = 0;
    for (;;) {
        ssize_t r = recv(fd, buf + got, ANSWER_MAX - got, 0);
        if (r > 0) {
            got += (size_t)r;
            if (got == ANSWER_MAX)
                break;
            continue;
        }
        if (r == 0)
            break;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        long left = ms_left(&deadline);
        if (left <= 0 || poll(&p, 1, (int)left) != 1) {
            fprintf(stderr, "eddy: no complete answer from %s:%d within %d ms\n", host, port,
                    TIMEOUT_MS);
            goto out;
        }
    }
    buf[got] = '\0';
    char *head_end = strstr(buf, "\r\n\r\n");
    int code;
    if (head_end == NULL || sscanf(buf, "HTTP/1.%*d %d", &code) != 1) {
        fprintf(stderr, "eddy: malformed answer from %s:%d\n", host, port);
        goto out;
    }
    *answer = strdup(head_end + 4);
    status = *answer != NULL ? code : -1;
out:
    close(fd);
    free(req);
    free(buf);
    return status;
}

int publish_main(int argc, char **argv)
{
    bool api = strcmp(argv[0], "api") == 0;
    const char *file = NULL;
    json_t *body = json_object(), *rooms = json_array(), *users = json_array(),
           *except = json_array(), *args = json_array();
    const char *method = api ? NULL : "emit", *raw = NULL;
    int status = EXIT_USAGE;
    char *text = NULL, *answer = NULL;
    cfg_t *cfg = NULL;
    int i;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_value = i + 1 < argc;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(publish_usage, stdout);
            status = EXIT_OK;
            goto out;
        } else if ((strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) && has_value) {
            file = argv[++i];
        } else if (!api && strcmp(a, "--namespace") == 0 && has_value) {
            json_object_set_new(body, "namespace", json_string(argv[++i]));
        } else if (!api && strcmp(a, "--room") == 0 && has_value) {
            json_array_append_new(rooms, json_string(argv[++i]));
        } else if (!api && strcmp(a, "--user") == 0 && has_value) {
            json_array_append_new(users, json_string(argv[++i]));
        } else if (!api && strcmp(a, "--except") == 0 && has_value) {
            json_array_append_new(except, json_string(argv[++i]));
        } else if (!api && strcmp(a, "--socket") == 0 && has_value) {
            json_object_set_new(body, "socket", json_string(argv[++i]));
        } else if (!api && strcmp(a, "--volatile") == 0) {
            json_object_set_new(body, "volatile", json_true());
        } else if (a[0] == '-' && a[1] == '-') {
            status = usage_error("unexpected option '%s'", a);
            goto out;
        } else if (api && method == NULL) {
            method = a;
        } else if (api && raw == NULL) {
            raw = a;
        } else if (!api && json_object_get(body, "event") == NULL) {
            json_object_set_new(body, "event", json_string(a));
        } else if (!api) {
            json_t *v = json_loads(a, JSON_DECODE_ANY, NULL);
            if (v == NULL) {
                status = usage_error("'%s' is not a JSON value (a string is \"quoted\")", a);
                goto out;
            }
            json_array_append_new(args, v);
        } else {
            status = usage_error("unexpected argument '%s'", a);
            goto out;
        }
    }
    if (method == NULL || (!api && json_object_get(body, "event") == NULL)) {
        status = usage_error("%s", api ? "a METHOD is needed" : "an EVENT is needed");
        goto out;
    }
    if (api && raw != NULL) {
        json_t *parsed = json_loads(raw, 0, NULL);
        if (!json_is_object(parsed)) {
            json_decref(parsed);
            status = usage_error("'%s' is not a JSON object", raw);
            goto out;
        }
        json_decref(body);
        body = parsed;
    } else if (!api) {
        if (json_array_size(rooms) > 0)
            json_object_set(body, "rooms", rooms);
        if (json_array_size(users) > 0)
            json_object_set(body, "users", users);
        if (json_array_size(except) > 0)
            json_object_set(body, "except_rooms", except);
        json_object_set(body, "args", args);
    }
    char err[1024];
    cfg = cfg_load(file, NULL, err, sizeof(err));
    if (cfg == NULL) {
        fprintf(stderr, "eddy: invalid configuration: %s\n", err);
        goto out;
    }
    const char *key = cfg_get(cfg, "api", "key");
    if (key == NULL || key[0] == '\0') {
        fprintf(stderr, "eddy: no [api] key in %s (nor EDDY_API_KEY): the server API is off\n",
                file != NULL ? file : "the built-in defaults");
        goto out;
    }
    const char *host = cfg->admin_port != 0 ? cfg->admin_host : cfg->host;
    int port = cfg->admin_port != 0 ? cfg->admin_port : cfg->port;
    if (strcmp(host, "0.0.0.0") == 0)
        host = "127.0.0.1";
    else if (strcmp(host, "::") == 0)
        host = "::1";
    char path[128];
    snprintf(path, sizeof(path), "/api/%.100s", method);
    text = json_dumps(body, JSON_COMPACT);
    int code = text != NULL ? post(host, port, path, key, text, &answer) : -1;
    if (code < 0) {
        status = EXIT_FAIL;
        goto out;
    }
    size_t alen = strlen(answer);
    bool newline = alen > 0 && answer[alen - 1] == '\n';
    fprintf(code == 200 ? stdout : stderr, "%s%s", answer, newline ? "" : "\n");
    status = code == 200 ? EXIT_OK : code >= 500 ? EXIT_FAIL : EXIT_API_ERROR;
out:
    free(text);
    free(answer);
    cfg_free(cfg);
    json_decref(body);
    json_decref(rooms);
    json_decref(users);
    json_decref(except);
    json_decref(args);
    return status;
}

/* SPDX-License-Identifier: MIT */
/*
 * eddy: the program. `eddy --help` lists the commands; README "The eddy program" has the
 * details. Uses only include/eddy.h, like any application.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cmd.h"
#include "realtime.h"

static const char usage[] =
    "usage: eddy COMMAND [-c FILE]\n"
    "\n"
    "Commands:\n"
    "  serve [-c FILE]          run in the foreground (SIGTERM/SIGINT stop, SIGHUP reloads,\n"
    "                           SIGUSR2 restarts, SIGRTMIN reopens the log files)\n"
    "  start [-c FILE]          run in the background: pid file, log file (default eddy.log)\n"
    "  stop [-c FILE]           graceful stop (SIGTERM), waiting [server] max_wait_time\n"
    "  restart [-c FILE]        zero-downtime restart (SIGUSR2): a new process takes the\n"
    "                           listening sockets over, the old one drains and exits;\n"
    "                           starts eddy if it is not running\n"
    "  status [-c FILE] [--json]  version, pid, listeners, state, uptime, workers,\n"
    "                           connections, counters (--json: the /status JSON)\n"
    "  reload [-c FILE]         validate the file, then re-read it in the server (SIGHUP):\n"
    "                           log level and file, document root, index, WebSocket path,\n"
    "                           stop delays, max_connection, package_max_length, the ping\n"
    "                           keys, the TLS certificate, [auth], [socketio] client_rooms\n"
    "                           and [api] change live; other keys need `eddy restart`\n"
    "  config check [-c FILE]   validate a configuration file\n"
    "  config default           print the configuration file: every default, commented, and\n"
    "                           the demo chat's client permissions\n"
    "  version                  print the version\n"
    "  publish [-c FILE] [--room R]... [--user U]... [--socket ID] EVENT [ARG...]\n"
    "                           emit to Socket.IO clients through the server API\n"
    "                           (`eddy publish --help`; its exit statuses are its own)\n"
    "  api [-c FILE] METHOD [JSON]  call a server API method and print its result\n"
    "  ws [options] URL         a command-line WebSocket client (`eddy ws --help`; also\n"
    "                           installed as eddy-ws); its exit statuses are its own\n"
    "  --help                   this text\n"
    "\n"
    "Without -c the built-in defaults are used (`eddy config default` shows them, commented,\n"
    "and sets the demo chat's client permissions).\n"
    "Environment variables override the file: EDDY_<SECTION>_<KEY>, e.g. EDDY_SERVER_PORT=9600,\n"
    "EDDY_LOG_LOG_LEVEL=debug, EDDY_STATIC_DOCUMENT_ROOT=/srv/www.\n"
    "\n"
    "Exit status: 0 success; 1 failure (could not start, did not stop in time, no answer);\n"
    "2 usage error or invalid configuration; 3 not running (status, stop, reload).\n";

/* ---- pid file ---- */

/* The program file a process runs, without the " (deleted)" of a replaced binary. */
static bool process_exe(int pid, char *out, size_t cap)
{
    char link[64];
    snprintf(link, sizeof(link), "/proc/%d/exe", pid);
    ssize_t n = readlink(link, out, cap - 1);
    if (n <= 0)
        return false;
    out[n] = '\0';
    char *deleted = strstr(out, " (deleted)");
    if (deleted != NULL && deleted[10] == '\0')
        *deleted = '\0';
    return true;
}

/* Whether pid is a process that has not exited. An exited one its parent has not reaped yet
 * (a zombie, state Z; X while being reaped) still answers kill(pid, 0), but it serves
 * nothing and holds no socket: `eddy stop` would otherwise wait for a parent that reaps
 * late (PID 1 took 1.2 s on a test VM) or never (a container's init that does not reap).
 * Where /proc/PID/stat cannot be read (no /proc, or hidepid hiding another user's
 * process) the signal test alone decides. */
static bool process_alive(int pid)
{
    if (kill(pid, 0) != 0 && errno == ESRCH)
        return false;
    char path[64], line[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return true;
    size_t n = fread(line, 1, sizeof(line) - 1, f);
    fclose(f);
    line[n] = '\0';
    /* "pid (comm) S ...": comm may hold spaces and parentheses, so the state follows the
     * last ')'. */
    const char *comm_end = strrchr(line, ')');
    if (comm_end == NULL || comm_end[1] != ' ')
        return true;
    return comm_end[2] != 'Z' && comm_end[2] != 'X';
}

int pidfile_running(const char *pid_file)
{
    FILE *f = fopen(pid_file, "r");
    if (f == NULL)
        return 0;
    int pid = 0;
    if (fscanf(f, "%d", &pid) != 1)
        pid = 0;
    fclose(f);
    if (pid <= 0 || pid == (int)getpid())
        return 0;
    if (!process_alive(pid))
        return 0; /* dead: a crash left the file */
    /* Alive: still eddy, or a new process that got the pid after a crash? Same program
     * name as ours (a sanitizer build is still "eddy"). */
    char theirs[PATH_MAX], ours[PATH_MAX];
    if (!process_exe((int)getpid(), ours, sizeof(ours)))
        return pid; /* no /proc: trust the pid */
    if (!process_exe(pid, theirs, sizeof(theirs))) {
        /* Another user's process hides its exe; its command line is readable by all. */
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/cmdline", pid);
        FILE *cmdline = fopen(path, "r");
        size_t n = cmdline != NULL ? fread(theirs, 1, sizeof(theirs) - 1, cmdline) : 0;
        if (cmdline != NULL)
            fclose(cmdline);
        if (n == 0)
            return 0;     /* gone meanwhile, or a kernel thread */
        theirs[n] = '\0'; /* argv[0] ends at its own NUL */
    }
    return strcmp(basename(theirs), basename(ours)) == 0 ? pid : 0;
}

/* ---- commands ---- */

static cfg_t *load_or_report(const char *path)
{
    char err[1024];
    cfg_t *cfg = cfg_load(path, NULL, err, sizeof(err));
    if (cfg == NULL)
        fprintf(stderr, "eddy: invalid configuration: %s\n", err);
    return cfg;
}

static int cmd_start(cfg_t *cfg)
{
    int running = pidfile_running(cfg->pid_file);
    if (running > 0) {
        fprintf(stderr, "Failed! eddy is already running (pid %d, pid file %s).\n", running,
                cfg->pid_file);
        return EXIT_FAIL;
    }
    if (cfg->log_file == NULL) {
        size_t len = strlen(cfg->base_dir) + sizeof("/eddy.log");
        cfg->log_file = malloc(len);
        if (cfg->log_file == NULL)
            return EXIT_FAIL;
        snprintf(cfg->log_file, len, "%s/eddy.log", cfg->base_dir);
    }
    printf("Starting eddy...\n");
    fflush(stdout);
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0) {
        perror("eddy: pipe");
        return EXIT_FAIL;
    }
    pid_t child = fork();
    if (child < 0) {
        perror("eddy: fork");
        return EXIT_FAIL;
    }
    if (child == 0) {
        /* Double fork: setsid() leaves the terminal's session; the second fork makes the
         * server a non-leader, so it can never get a controlling terminal back. */
        close(pipefd[0]);
        if (setsid() < 0)
            _exit(EXIT_FAIL);
        pid_t server = fork();
        if (server != 0)
            _exit(server < 0 ? EXIT_FAIL : EXIT_OK);
        umask(022);
        if (chdir("/") != 0)
            _exit(EXIT_FAIL);
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) {
            dup2(devnull, STDIN_FILENO);
            dup2(devnull, STDOUT_FILENO);
            if (devnull > STDERR_FILENO)
                close(devnull);
        }
        /* Until the log file is open (serve_run does it first), errors go to the log too. */
        int log_fd = open(cfg->log_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (log_fd >= 0) {
            dup2(log_fd, STDERR_FILENO);
            close(log_fd);
        }
        _exit(serve_run(cfg, pipefd[1]));
    }
    close(pipefd[1]);
    int wstatus;
    waitpid(child, &wstatus, 0);
    /* The server writes its pid once its listeners are bound; EOF means it failed. */
    char buf[32] = {0};
    size_t got = 0;
    struct pollfd pfd = {.fd = pipefd[0], .events = POLLIN};
    while (got < sizeof(buf) - 1 && poll(&pfd, 1, 30000) > 0) {
        ssize_t n = read(pipefd[0], buf + got, sizeof(buf) - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(pipefd[0]);
    if (got == 0) {
        fprintf(stderr, "Failed! eddy did not start; see %s\n", cfg->log_file);
        return EXIT_FAIL;
    }
    printf("eddy started: http://%s:%d/ (pid %d, log %s)\n", cfg->host, cfg->port, atoi(buf),
           cfg->log_file);
    return EXIT_OK;
}

static int cmd_stop(cfg_t *cfg)
{
    int pid = pidfile_running(cfg->pid_file);
    if (pid == 0) {
        fprintf(stderr, "Failed! There is no eddy process running (pid file %s).\n", cfg->pid_file);
        return EXIT_NOT_RUNNING;
    }
    printf("Stopping eddy (pid %d)...\n", pid);
    fflush(stdout);
    if (kill(pid, SIGTERM) != 0) {
        fprintf(stderr, "eddy: cannot signal pid %d: %s\n", pid, strerror(errno));
        return EXIT_FAIL;
    }
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        if (!process_alive(pid))
            break;
        clock_gettime(CLOCK_MONOTONIC, &now);
        double waited = (double)(now.tv_sec - start.tv_sec) + (now.tv_nsec - start.tv_nsec) / 1e9;
        if (waited >= cfg->shutdown_delay + cfg->max_wait_time) {
            fprintf(stderr, "Unable to stop the eddy process (pid %d) within %g s.\n", pid,
                    cfg->shutdown_delay + cfg->max_wait_time);
            return EXIT_FAIL;
        }
        struct timespec tick = {0, 50 * 1000 * 1000};
        nanosleep(&tick, NULL);
    }
    printf("> success\n");
    return EXIT_OK;
}

static int http_get(const char *host, int port, const char *path, char *out, size_t cap);

/* The running server's count of failed restarts (its /status), or -1 if it does not say. */
static int restart_failures(const cfg_t *cfg)
{
    char body[8192];
    const char *host = cfg->admin_port != 0 ? cfg->admin_host : cfg->host;
    int port = cfg->admin_port != 0 ? cfg->admin_port : cfg->port;
    if (http_get(host, port, "/status", body, sizeof(body)) != 0)
        return -1;
    const char *field = strstr(body, "\"restart_failures\":");
    return field != NULL ? atoi(field + 19) : -1;
}

static double seconds_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (now.tv_nsec - start->tv_nsec) / 1e9;
}

static int cmd_restart(cfg_t *cfg)
{
    int old = pidfile_running(cfg->pid_file);
    if (old == 0) {
        printf("eddy is not running: starting it.\n");
        return cmd_start(cfg);
    }
    printf("Restarting eddy (pid %d)...\n", old);
    fflush(stdout);
    int failures = restart_failures(cfg);
    if (kill(old, SIGUSR2) != 0) {
        fprintf(stderr, "eddy: cannot signal pid %d: %s\n", old, strerror(errno));
        return EXIT_FAIL;
    }
    /* The new process names itself in the pid file once it serves; the old one drains
     * and exits after that. The old one waits 30 s for the new one at most, and counts a
     * failure in its /status. */
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    struct timespec tick = {0, 20 * 1000 * 1000};
    int now = old;
    for (int round = 1; (now = pidfile_running(cfg->pid_file)) == old && seconds_since(&start) < 31;
         round++) {
        if (failures >= 0 && round % 10 == 0 && restart_failures(cfg) > failures)
            break;
        nanosleep(&tick, NULL);
    }
    if (now == old || now == 0) {
        fprintf(stderr, "Failed! The new eddy process did not take over; %s (see the log).\n",
                now == old ? "the running one keeps serving" : "none is running now");
        return EXIT_FAIL;
    }
    clock_gettime(CLOCK_MONOTONIC, &start);
    while (process_alive(old) && seconds_since(&start) < cfg->max_wait_time)
        nanosleep(&tick, NULL);
    if (process_alive(old)) {
        fprintf(stderr,
                "eddy restarted (pid %d), but the old process (pid %d) is still draining after "
                "%g s.\n",
                now, old, cfg->max_wait_time);
        return EXIT_FAIL;
    }
    printf("eddy restarted: pid %d (pid %d drained and exited)\n> success\n", now, old);
    return EXIT_OK;
}

static int cmd_reload(cfg_t *cfg)
{
    int pid = pidfile_running(cfg->pid_file);
    if (pid == 0) {
        fprintf(stderr, "Failed! There is no eddy process running (pid file %s).\n", cfg->pid_file);
        return EXIT_NOT_RUNNING;
    }
    printf("Reloading eddy (pid %d)...\n", pid);
    if (kill(pid, SIGHUP) != 0) {
        fprintf(stderr, "> failure: %s\n", strerror(errno));
        return EXIT_FAIL;
    }
    printf("> success (the server's log says what changed and what needs a restart)\n");
    return EXIT_OK;
}

/* GET path from host:port over a blocking socket, with a deadline; the body in out. */
static int http_get(const char *host, int port, const char *path, char *out, size_t cap)
{
    char port_str[16];
    snprintf(port_str, sizeof(port_str), "%d", port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
    if (getaddrinfo(host, port_str, &hints, &res) != 0)
        return -1;
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct timeval tv = {.tv_sec = 5};
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    }
    if (fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
        if (fd >= 0)
            close(fd);
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    char req[256];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
                     path, host);
    size_t got = 0;
    if (write(fd, req, (size_t)n) == n) {
        ssize_t r;
        while (got < cap - 1 && (r = read(fd, out + got, cap - 1 - got)) > 0)
            got += (size_t)r;
    }
    close(fd);
    out[got] = '\0';
    char *body = strstr(out, "\r\n\r\n");
    if (strncmp(out, "HTTP/1.1 200", 12) != 0 || body == NULL)
        return -1;
    memmove(out, body + 4, strlen(body + 4) + 1);
    return 0;
}

/* One "key":value of the flat JSON object of /status: the key, and the value without its
 * quotes (a list keeps its brackets). */
typedef struct {
    const char *key, *key_end, *value, *value_end;
} status_field_t;

/* The field at or after *pos, which then points past it; false at the end. */
static bool status_field_next(const char **pos, status_field_t *field)
{
    const char *p = *pos;
    if (p == NULL || (p = strchr(p, '"')) == NULL)
        return false;
    const char *key = p + 1, *key_end = strchr(key, '"');
    if (key_end == NULL || key_end[1] != ':')
        return false;
    const char *v = key_end + 2, *end;
    if (*v == '[') {
        end = strchr(v, ']');
    } else if (*v == '"') {
        end = strchr(v + 1, '"');
        v++;
    } else {
        end = v + strcspn(v, ",}");
    }
    if (end == NULL)
        return false;
    *field = (status_field_t){key, key_end, v, end};
    *pos = end + 1;
    return true;
}

/* Prints the flat JSON object of /status as "Name   value" rows (seed 004's infos), the
 * values in one column after the longest name. */
static void print_status(const char *json)
{
    status_field_t f;
    int width = 16;
    for (const char *p = strchr(json, '{'); status_field_next(&p, &f);)
        if (f.key_end - f.key > width)
            width = (int)(f.key_end - f.key);
    for (const char *p = strchr(json, '{'); status_field_next(&p, &f);) {
        printf("%-*.*s ", width, (int)(f.key_end - f.key), f.key);
        if (*f.value == '[') { /* a list of strings: one per line */
            int first = 1;
            const char *end = f.value_end;
            for (const char *s = f.value; (s = memchr(s, '"', (size_t)(end - s))) != NULL;) {
                const char *e = memchr(s + 1, '"', (size_t)(end - s - 1));
                if (e == NULL)
                    break;
                printf("%*s%.*s\n", first ? 0 : width + 1, "", (int)(e - s - 1), s + 1);
                first = 0;
                s = e + 1;
            }
            if (first)
                printf("\n");
        } else {
            printf("%.*s\n", (int)(f.value_end - f.value), f.value);
        }
    }
}

static int cmd_status(cfg_t *cfg, bool json)
{
    int pid = pidfile_running(cfg->pid_file);
    if (pid == 0) {
        if (json)
            printf("{\"state\":\"stopped\"}\n");
        else
            printf("state            stopped (no eddy process; pid file %s)\n", cfg->pid_file);
        return EXIT_NOT_RUNNING;
    }
    const char *host = cfg->admin_port != 0 ? cfg->admin_host : cfg->host;
    int port = cfg->admin_port != 0 ? cfg->admin_port : cfg->port;
    char body[8192];
    if (http_get(host, port, "/status", body, sizeof(body)) != 0) {
        fprintf(stderr, "eddy: pid %d is running but %s:%d/status does not answer\n", pid, host,
                port);
        return EXIT_FAIL;
    }
    if (json)
        fputs(body, stdout);
    else
        print_status(body);
    return EXIT_OK;
}

int main(int argc, char **argv)
{
    /* eddy-ws is a link to this program: the WebSocket client under its own name. */
    const char *name = strrchr(argv[0], '/');
    if (strcmp(name != NULL ? name + 1 : argv[0], "eddy-ws") == 0)
        return eddy_ws_main(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "ws") == 0)
        return eddy_ws_main(argc - 1, argv + 1);
    if (argc >= 2 && (strcmp(argv[1], "publish") == 0 || strcmp(argv[1], "api") == 0))
        return publish_main(argc - 1, argv + 1);
    if (argc < 2) {
        fputs(usage, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1], *sub = NULL, *file = NULL;
    bool json = false;
    int i = 2;
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        fputs(usage, stdout);
        return EXIT_OK;
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("eddy %s\n", eddy_version());
        return EXIT_OK;
    }
    if (strcmp(cmd, "config") == 0 && i < argc)
        sub = argv[i++];
    for (; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc) {
            file = argv[++i];
        } else if (strcmp(argv[i], "--json") == 0 && strcmp(cmd, "status") == 0) {
            json = true;
        } else {
            fprintf(stderr, "eddy: unexpected argument '%s'\n%s", argv[i], usage);
            return EXIT_USAGE;
        }
    }
    if (strcmp(cmd, "config") == 0 && sub != NULL && strcmp(sub, "default") == 0 && file == NULL) {
        fputs(cfg_default_text, stdout);
        return EXIT_OK;
    }
    bool known = strcmp(cmd, "serve") == 0 || strcmp(cmd, "start") == 0 ||
                 strcmp(cmd, "stop") == 0 || strcmp(cmd, "status") == 0 ||
                 strcmp(cmd, "reload") == 0 || strcmp(cmd, "restart") == 0 ||
                 (strcmp(cmd, "config") == 0 && sub != NULL && strcmp(sub, "check") == 0);
    if (!known) {
        fprintf(stderr, "eddy: unknown command '%s%s%s'\n%s", cmd, sub ? " " : "", sub ? sub : "",
                usage);
        return EXIT_USAGE;
    }
    cfg_t *cfg = load_or_report(file);
    if (cfg == NULL)
        return EXIT_USAGE;
    int status;
    if (strcmp(cmd, "config") == 0) {
        printf("%s: ok\n", file != NULL ? file : "built-in defaults");
        status = EXIT_OK;
    } else if (strcmp(cmd, "serve") == 0) {
        status = serve_run(cfg, -1);
    } else if (strcmp(cmd, "start") == 0) {
        status = cmd_start(cfg);
    } else if (strcmp(cmd, "stop") == 0) {
        status = cmd_stop(cfg);
    } else if (strcmp(cmd, "reload") == 0) {
        status = cmd_reload(cfg);
    } else if (strcmp(cmd, "restart") == 0) {
        status = cmd_restart(cfg);
    } else {
        status = cmd_status(cfg, json);
    }
    cfg_free(cfg);
    return status;
}

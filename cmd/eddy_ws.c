/* SPDX-License-Identifier: MIT */
/*
 * eddy ws (also installed as eddy-ws): a command-line WebSocket client on libeddy's client
 * (wscat/websocat style).
 *
 * Each line of standard input is sent as one message (text, or binary with --binary).
 * On a terminal it is interactive: received messages are printed as "< message" and a
 * "> " prompt waits for input; otherwise (pipe mode) received messages are printed one
 * per line as they are, and after the end of input the client waits --wait seconds for
 * messages before it closes with 1000. Uses only the public header.
 *
 * Exit status (how the connection ended):
 *   0  closed with 1000 (by either side) or after the end of input
 *   1  never connected: URL, name resolution, connect, TLS, HTTP status, handshake
 *   2  usage error
 *   3  the server closed with a code other than 1000 (printed on stderr)
 *   4  the connection was lost: no close frame (1006), or the heartbeat found it dead
 *   5  the server broke the protocol: eddy failed the connection (1002, 1007, 1009...)
 *   6  reconnection gave up (--reconnect-attempts reached)
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"

enum {
    WS_EXIT_NORMAL = 0,
    WS_EXIT_CONNECT = 1,
    WS_EXIT_USAGE = 2,
    WS_EXIT_CLOSED = 3,
    WS_EXIT_LOST = 4,
    WS_EXIT_PROTOCOL = 5,
    WS_EXIT_GAVE_UP = 6
};

static int done_pipe[2];
static int open_pipe[2]; /* written at the first open: input may flow */
static atomic_int exit_status = WS_EXIT_NORMAL;
static atomic_bool opened;
static atomic_bool finished;
static atomic_long received;
static long max_messages;
static bool interactive, quiet, reconnecting, show_binary_hex;
static int last_error_kind;
static int attempts_seen, max_attempts;
static atomic_bool user_closed; /* we closed: end of input, or --count reached */

static void finish(int status)
{
    bool was = atomic_exchange(&finished, true);
    if (was)
        return;
    atomic_store(&exit_status, status);
    if (write(done_pipe[1], "x", 1) < 0)
        perror("write");
}

static void on_open(eddy_client_t *client, const eddy_client_open_t *open, void *user_data)
{
    if (!atomic_exchange(&opened, true) && write(open_pipe[1], "o", 1) < 0)
        perror("write");
    if (!quiet)
        fprintf(stderr, "connected%s%s%s%s\n", open->subprotocol ? " (subprotocol " : "",
                open->subprotocol ? open->subprotocol : "", open->subprotocol ? ")" : "",
                open->extensions ? " (compressed)" : "");
}

static void on_message(eddy_client_t *client, const eddy_frame_t *frame, void *user_data)
{
    if (frame->opcode != EDDY_WS_OPCODE_TEXT && frame->opcode != EDDY_WS_OPCODE_BINARY)
        return;
    if (interactive)
        fputs("< ", stdout);
    if (frame->opcode == EDDY_WS_OPCODE_BINARY && show_binary_hex) {
        for (size_t i = 0; i < frame->len; i++)
            printf("%02x", (unsigned char)frame->data[i]);
    } else {
        fwrite(frame->data, 1, frame->len, stdout);
    }
    fputs(interactive ? "\n> " : "\n", stdout);
    fflush(stdout);
    if (max_messages > 0 && atomic_fetch_add(&received, 1) + 1 >= max_messages) {
        atomic_store(&user_closed, true);
        eddy_client_disconnect(client, 1000, NULL);
    }
}

static void on_close(eddy_client_t *client, int code, const char *reason, bool clean,
                     void *user_data)
{
    if (!quiet || code != 1000)
        fprintf(stderr, "closed: %d%s%s%s\n", code, *reason ? " " : "", reason,
                clean ? "" : " (no closing handshake)");
    int status = code == 1000                                  ? WS_EXIT_NORMAL
                 : last_error_kind == EDDY_CLIENT_ERR_PROTOCOL ? WS_EXIT_PROTOCOL
                 : code == 1006                                ? WS_EXIT_LOST
                                                               : WS_EXIT_CLOSED;
    atomic_store(&exit_status, status);
}

static void on_error(eddy_client_t *client, const eddy_client_error_t *error, void *user_data)
{
    last_error_kind = error->kind;
    fprintf(stderr, "error: %s\n", error->message);
    if (error->body_len > 0)
        fprintf(stderr, "%s\n", error->body);
    if (error->kind != EDDY_CLIENT_ERR_PROTOCOL && error->kind != EDDY_CLIENT_ERR_HEARTBEAT)
        atomic_store(&exit_status, WS_EXIT_CONNECT);
}

static void on_reconnecting(eddy_client_t *client, int attempt, double delay, void *user_data)
{
    attempts_seen = attempt;
    if (!quiet)
        fprintf(stderr, "reconnecting (attempt %d) in %.2f s\n", attempt, delay);
}

static void on_dropped(eddy_client_t *client, const void *data, size_t len, int opcode, int reason,
                       void *user_data)
{
    fprintf(stderr, "dropped a queued message (%zu bytes): %s\n", len,
            reason == EDDY_CLIENT_DROP_EXPIRED    ? "too old"
            : reason == EDDY_CLIENT_DROP_OVERFLOW ? "queue full"
                                                  : "client stopped");
}

static void on_stopped(eddy_client_t *client, void *user_data)
{
    int status = atomic_load(&exit_status);
    if (reconnecting && max_attempts > 0 && attempts_seen >= max_attempts &&
        !atomic_load(&user_closed))
        status = WS_EXIT_GAVE_UP;
    finish(status);
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: eddy ws [options] ws[s]://host[:port][/path][?query]   (or eddy-ws ...)\n"
            "  -H, --header 'Name: value'  extra request header (repeatable)\n"
            "  -o, --origin ORIGIN         Origin header\n"
            "  -s, --subprotocol LIST      offer these subprotocols (comma-separated)\n"
            "  -c, --compress              offer permessage-deflate (and compress what is sent)\n"
            "  -b, --binary                send each line as a binary message\n"
            "  -x, --hex                   print binary messages in hex\n"
            "  -k, --insecure              do not verify the server's certificate (testing)\n"
            "      --ca FILE               trust these CAs (PEM) instead of the system's\n"
            "      --cert FILE, --key FILE client certificate and key (PEM)\n"
            "  -r, --reconnect             reconnect after a loss, with backoff\n"
            "      --reconnect-min S       first delay [0.5]\n"
            "      --reconnect-max S       largest delay [20]\n"
            "      --reconnect-factor F    growth per attempt [2]\n"
            "      --reconnect-jitter J    0-1, share of the delay drawn at random [1]\n"
            "      --reconnect-attempts N  give up after N attempts [0: never]\n"
            "      --reconnect-reset S     attempts count from 0 again after S seconds up [5]\n"
            "      --ping-interval S       heartbeat: a ping every S seconds [off]\n"
            "      --ping-timeout S        dead without input S seconds after a ping [10]\n"
            "      --connect-timeout S     [10]\n"
            "  -w, --wait S                pipe mode: seconds to wait for messages after the end\n"
            "                              of input before closing [1]\n"
            "  -n, --count N               close after receiving N messages\n"
            "  -q, --quiet                 no status lines on stderr\n"
            "  -h, --help, -V, --version\n"
            "Exit status: 0 closed with 1000 or after the end of input; 1 never connected;\n"
            "2 usage; 3 closed by the server with another code; 4 connection lost (1006,\n"
            "heartbeat); 5 the server broke the protocol; 6 reconnection gave up.\n");
}

static bool parse_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    *out = strtod(s, &end);
    return errno == 0 && end != s && *end == '\0' && *out >= 0;
}

int eddy_ws_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"header", required_argument, NULL, 'H'},
        {"origin", required_argument, NULL, 'o'},
        {"subprotocol", required_argument, NULL, 's'},
        {"compress", no_argument, NULL, 'c'},
        {"binary", no_argument, NULL, 'b'},
        {"hex", no_argument, NULL, 'x'},
        {"insecure", no_argument, NULL, 'k'},
        {"ca", required_argument, NULL, 1},
        {"cert", required_argument, NULL, 2},
        {"key", required_argument, NULL, 3},
        {"reconnect", no_argument, NULL, 'r'},
        {"reconnect-min", required_argument, NULL, 4},
        {"reconnect-max", required_argument, NULL, 5},
        {"reconnect-factor", required_argument, NULL, 6},
        {"reconnect-jitter", required_argument, NULL, 7},
        {"reconnect-attempts", required_argument, NULL, 8},
        {"reconnect-reset", required_argument, NULL, 12},
        {"ping-interval", required_argument, NULL, 9},
        {"ping-timeout", required_argument, NULL, 10},
        {"connect-timeout", required_argument, NULL, 11},
        {"wait", required_argument, NULL, 'w'},
        {"count", required_argument, NULL, 'n'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    eddy_client_options_t opts;
    eddy_client_options_init(&opts);
    const char *headers[argc + 1]; /* -H values, NULL-terminated */
    size_t header_count = 0;
    bool binary = false, compress = false;
    double wait_s = 1, value;
    int opt;
    while ((opt = getopt_long(argc, argv, "H:o:s:cbxkrw:n:qhV", longopts, NULL)) != -1) {
        bool ok = true;
        switch (opt) {
        case 'H':
            headers[header_count++] = optarg;
            break;
        case 'o':
            opts.origin = optarg;
            break;
        case 's':
            opts.subprotocols = optarg;
            break;
        case 'c':
            opts.compression = compress = true;
            break;
        case 'b':
            binary = true;
            break;
        case 'x':
            show_binary_hex = true;
            break;
        case 'k':
            opts.tls_insecure = true;
            break;
        case 1:
            opts.tls_ca_file = optarg;
            break;
        case 2:
            opts.tls_cert_file = optarg;
            break;
        case 3:
            opts.tls_key_file = optarg;
            break;
        case 'r':
            opts.reconnect = true;
            break;
        case 4:
            ok = parse_double(optarg, &opts.reconnect_delay_min);
            break;
        case 5:
            ok = parse_double(optarg, &opts.reconnect_delay_max);
            break;
        case 6:
            ok = parse_double(optarg, &opts.reconnect_factor);
            break;
        case 7:
            ok = parse_double(optarg, &opts.reconnect_jitter);
            break;
        case 8:
            ok = parse_double(optarg, &value) && value <= 1e6;
            opts.reconnect_max_attempts = (int)value;
            break;
        case 12:
            ok = parse_double(optarg, &opts.reconnect_reset_after);
            break;
        case 9:
            ok = parse_double(optarg, &opts.ping_interval);
            break;
        case 10:
            ok = parse_double(optarg, &opts.ping_timeout);
            break;
        case 11:
            ok = parse_double(optarg, &opts.connect_timeout);
            break;
        case 'w':
            ok = parse_double(optarg, &wait_s);
            break;
        case 'n':
            ok = parse_double(optarg, &value);
            max_messages = (long)value;
            break;
        case 'q':
            quiet = true;
            break;
        case 'h':
            usage(stdout);
            return WS_EXIT_NORMAL;
        case 'V':
            printf("eddy-ws %s\n", eddy_version());
            return WS_EXIT_NORMAL;
        default:
            usage(stderr);
            return WS_EXIT_USAGE;
        }
        if (!ok) {
            fprintf(stderr, "eddy-ws: bad value for an option: %s\n", optarg);
            return WS_EXIT_USAGE;
        }
    }
    if (optind != argc - 1) {
        usage(stderr);
        return WS_EXIT_USAGE;
    }
    opts.url = argv[optind];
    headers[header_count] = NULL;
    opts.headers = header_count ? headers : NULL;
    opts.on_open = on_open;
    opts.on_message = on_message;
    opts.on_close = on_close;
    opts.on_error = on_error;
    opts.on_reconnecting = on_reconnecting;
    opts.on_dropped = on_dropped;
    opts.on_stopped = on_stopped;
    max_attempts = opts.reconnect_max_attempts;
    reconnecting = opts.reconnect;
    interactive = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);
    if (pipe(done_pipe) != 0 || pipe(open_pipe) != 0) {
        perror("pipe");
        return WS_EXIT_CONNECT;
    }
    eddy_client_t *client = eddy_client_new(NULL, &opts);
    if (client == NULL)
        return WS_EXIT_USAGE; /* eddy_client_new() said why */
    eddy_client_connect(client);
    /* Standard input and the end of the connection, whichever comes first. */
    char *line = NULL;
    size_t cap = 0;
    bool input_open = true;
    int status = -1;
    FILE *in = stdin;
    for (;;) {
        /* Input is read once the connection opened (then, with --reconnect, lines typed
         * while it is down wait in the offline queue). */
        bool reading = input_open && atomic_load(&opened);
        struct pollfd fds[3] = {{.fd = done_pipe[0], .events = POLLIN},
                                {.fd = open_pipe[0], .events = POLLIN},
                                {.fd = reading ? STDIN_FILENO : -1, .events = POLLIN}};
        int timeout_ms = input_open ? -1 : (int)(wait_s * 1000);
        int n = poll(fds, 3, timeout_ms);
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0) {
            /* The wait after the end of input is over. */
            atomic_store(&user_closed, true);
            eddy_client_disconnect(client, 1000, NULL);
            input_open = false;
            wait_s = 10; /* then the closing handshake, bounded */
            continue;
        }
        if (fds[0].revents)
            break;
        if (fds[1].revents) {
            char byte;
            if (read(open_pipe[0], &byte, 1) < 0)
                perror("read");
            if (interactive)
                fputs("> ", stdout);
            fflush(stdout);
            continue;
        }
        if (fds[2].revents) {
            ssize_t len = getline(&line, &cap, in);
            if (len < 0) {
                input_open = false;
                continue;
            }
            if (len > 0 && line[len - 1] == '\n')
                line[--len] = '\0';
            int rc = eddy_client_push(client, line, (size_t)len,
                                      binary ? EDDY_WS_OPCODE_BINARY : EDDY_WS_OPCODE_TEXT,
                                      EDDY_WS_FLAG_FIN | (compress ? EDDY_WS_FLAG_COMPRESS : 0));
            if (rc < 0)
                fprintf(stderr, "not sent: %s\n", eddy_strerror(rc));
            else if (rc == EDDY_QUEUED && eddy_client_id(client) == 0 && !quiet)
                fprintf(stderr, "queued while disconnected\n");
        }
    }
    status = atomic_load(&exit_status);
    free(line);
    eddy_client_free(client);
    return status;
}

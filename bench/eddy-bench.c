/* SPDX-License-Identifier: MIT */
/*
 * eddy-bench: a single-threaded epoll load generator for WebSocket servers.
 *
 *   eddy-bench echo -c N -d D -s SIZE -t SECONDS [--binary]
 *   eddy-bench handshake -c CONCURRENCY -t SECONDS
 *   eddy-bench publish -c SUBSCRIBERS -n MESSAGES -s SIZE [--inflight W | --rate R]
 *   eddy-bench idle -c N --sources K [--hold SECONDS]
 *   (echo, publish and idle take --sio)
 *
 * With --sio, echo, publish and idle speak Socket.IO v5 over Engine.IO v4 on the WebSocket
 * transport (GET /socket.io/?EIO=4&transport=websocket): each connection reads the open
 * packet, sends CONNECT (`40`) to the main namespace, waits for the server's `40{...}` and the
 * test application's `auth` event, and answers server pings `2` with `3`. echo then emits
 * `42["message","<SIZE bytes>"]` and expects `42["message-back",...]`; publish subscribers
 * `join` the room --topic (waiting for the ack `430["joined"]`) and the publisher emits
 * `42["to-room",ROOM,"<16 hex digits of its clock><filler>"]`, delivered as `room-message`;
 * idle holds the handshaken sockets. The server is the Socket.IO test application
 * (examples/socketio, tests/clients/sio_reference.js).
 *
 * Common options: --host ADDR (127.0.0.1), --port N (9501), --path P (/), --sources K (bind
 * connections to 127.0.0.2 .. 127.0.0.(K+1) round-robin; 0: let the kernel choose),
 * --server-pid PID (read the server's CPU time and RSS from /proc; given up to 4 times, the
 * servers' CPU and waits are summed, RSS is the first's), --warmup SECONDS,
 * --connect-batch N (connections being set up at once), --label TEXT (copied to the JSON),
 * --tls (wss: TLS 1.3, the certificate is not checked; see "TLS records" below), --deflate
 * (offer permessage-deflate with client_no_context_takeover and send every message
 * compressed).
 *
 * TLS records: OpenSSL makes the handshake; the records after it are sealed and opened by
 * eddy's record layer (src/tls13.c), as eddy's server does with its own, because OpenSSL's
 * record layer made eddy-bench the bottleneck of a wss echo (the client at 99% of its CPU,
 * the server waiting for it). --openssl-records leaves them to OpenSSL's SSL_read and
 * SSL_write. Session tickets are skipped; a KeyUpdate from the server is not followed (the
 * next record fails to open, and the connection with it).
 *
 * Two nodes of one cluster (bench/scaleout/run): publish --port2 N connects every second
 * subscriber to port N instead (the publisher stays on --port), and --redis-port N reads the
 * cluster's Redis (INFO: used_cpu_user + used_cpu_sys, total_net_input_bytes and
 * total_net_output_bytes) at both ends of the steady window and reports its CPU and traffic
 * per message published in that window. --mark-steady prints a line "steady window: start"
 * and one "steady window: end" on stdout (flushed) when it opens and closes, so that a script
 * can probe Redis or the nodes over that window (bench/scaleout/run --probe).
 *
 * Every mode prints one human-readable line and one JSON line (starting with '{') on stdout.
 * See bench/README.md for what each mode measures. The client side of the opening handshake
 * is implemented here (random key, Sec-WebSocket-Accept verified with OpenSSL's SHA-1); frames
 * are masked with one random key per connection, fixed for the connection's lifetime.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "tls13.h"
#include "ws_frame.h"

#define MAX_EVENTS      1024
#define MAX_HTTP_HEAD   16384
#define MAX_SIZE        (1u << 20)
#define PUB_RING        1024         /* messages tracked at once in publish mode */
#define MAX_SERVER_PIDS 4            /* --server-pid given this many times at most */
#define CLOSE_WAIT_NS   1000000000LL /* handshake mode: wait for the server's FIN */
#define SAMPLE_INTERVAL 64           /* echo: verify the content of every 64th message */
#define SIO_PATH        "/socket.io/?EIO=4&transport=websocket"
#define SIO_MAX_PACKET  4096 /* --sio: longest control packet accepted (open, auth, acks) */

enum mode { MODE_ECHO, MODE_HANDSHAKE, MODE_PUBLISH, MODE_IDLE };
/* ST_SIO: upgraded, Socket.IO handshake (open, CONNECT, auth event, join) under way. */
enum conn_state { ST_FREE, ST_CONNECTING, ST_TLS, ST_UPGRADING, ST_SIO, ST_OPEN, ST_CLOSING };
/* --sio: what a connection in ST_SIO waits for next. */
enum sio_step { SIO_WAIT_OPEN, SIO_WAIT_CONNECT, SIO_WAIT_AUTH, SIO_WAIT_JOIN };
enum role { ROLE_ECHO, ROLE_HANDSHAKE, ROLE_IDLE, ROLE_SUB, ROLE_PUB };

typedef struct options {
    enum mode mode;
    const char *mode_name;
    const char *host;
    int port;
    const char *path;
    const char *topic;
    const char *label;
    int conns;
    int inflight;
    size_t size;
    double seconds;
    double warmup;
    long messages;
    long pub_warmup;
    double rate;
    int sources;
    int connect_batch;
    bool binary;
    bool tls;
    bool openssl_records; /* --tls: OpenSSL's record layer, not tls13.c */
    bool deflate;
    bool sio;
    pid_t server_pid;                   /* the first --server-pid */
    pid_t server_pids[MAX_SERVER_PIDS]; /* all of them, CPU summed */
    int nserver_pids;
    int port2;        /* publish: odd subscribers connect here (0: all on --port) */
    int redis_port;   /* publish: the Redis whose CPU is read (0: none) */
    bool mark_steady; /* publish: print the steady window's start and end on stdout */
    double setup_timeout;
    double hold;
    double settle;
    double stall;
} options_t;

/* The application traffic secrets of a TLS handshake, from OpenSSL's keylog callback. */
typedef struct tls_secrets {
    uint8_t client[EDDY__TLS13_SECRET_MAX];
    uint8_t server[EDDY__TLS13_SECRET_MAX];
    size_t client_len, server_len;
} tls_secrets_t;

typedef struct conn {
    int fd;
    uint8_t state;
    uint8_t role;
    bool close_sent;
    bool close_received;
    bool in_fragment;
    bool epollout;
    bool tls_full; /* the last read filled the buffer: OpenSSL may hold more records */
    bool tls_eof;  /* the server's close_notify was opened */
    uint8_t fragment_opcode;
    uint8_t sio_step;
    uint32_t id;
    uint32_t gen; /* bumped on release: a slot reused inside a callback is a new connection */
    uint32_t inflight;
    uint64_t received; /* data messages received */
    uint64_t fragment_len;
    int64_t deadline;
    uint8_t mask[4];
    char accept[EVP_ENCODE_LENGTH(SHA_DIGEST_LENGTH) + 1];
    uint8_t *in; /* leftover partial input (frame or HTTP head) */
    size_t in_len, in_cap;
    uint8_t *out; /* output the socket did not take yet */
    size_t out_off, out_len, out_cap;
    uint8_t *frame; /* echo: this connection's masked message, built once */
    size_t frame_len;
    SSL *ssl;               /* --tls: the handshake, and with --openssl-records the records */
    tls_secrets_t *secrets; /* --tls: what the handshake hands to rec */
    eddy__tls13_t *rec;     /* --tls: the records after the handshake */
    uint8_t *cipher;        /* a record received in part (EDDY__TLS13_RECORD_MAX bytes) */
    size_t cipher_len;
    z_stream *inflate; /* --deflate: the server's messages, one stream per connection */
} conn_t;

/* Log-linear latency histogram: 64 sub-buckets per power of two (error under 1.6%). */
#define HIST_SUB_BITS 6
#define HIST_SUB      (1 << HIST_SUB_BITS)
typedef struct histogram {
    uint64_t counts[64 * HIST_SUB];
    uint64_t total;
    uint64_t max;
} histogram_t;

static options_t opt = {
    .host = "127.0.0.1",
    .port = 9501,
    .topic = "bench",
    .conns = 100,
    .inflight = 1,
    .size = 20,
    .seconds = 5,
    .warmup = 1,
    .messages = 1000,
    .pub_warmup = -1,
    .connect_batch = 256,
    .server_pid = 0,
    .setup_timeout = 120,
    .hold = 300,
    .settle = 1,
    .stall = 5,
};

static int epfd;
static int sigfd;
static struct sockaddr_in server_addr, server_addr2;
static conn_t *conns;
static uint8_t *rbuf; /* shared receive buffer */
static size_t rbuf_cap;
static uint8_t *wbuf; /* shared scratch for building output */
static size_t wbuf_cap;
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static bool stop_requested;
static SSL_CTX *ssl_ctx;
static char tls_cipher[64];         /* what the first TLS connection negotiated */
static uint8_t *inflated;           /* --deflate: one inflated message */
static uint64_t compressed_replies; /* --deflate: messages that came compressed */
static size_t inflated_cap;

/* Totals. */
static int opened, failed, next_to_connect, setting_up, lost;
static uint64_t errors, verified, close_timeouts, measured;
static bool measuring;
static int64_t now_ns;

/* Publish mode. */
static histogram_t latency;
static conn_t *publisher;
static uint32_t pub_ring[PUB_RING];
static long pub_sent, pub_completed;
static uint64_t pub_deliveries; /* messages received by subscribers, all of them counted */
static int64_t pub_first_send, pub_last_complete, pub_progress;
static int timerfd = -1;

/* ---- small helpers ---- */

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static uint64_t rng_next(void)
{
    /* xorshift64*: good enough for mask keys and Sec-WebSocket-Key. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}

static void die(const char *fmt, const char *arg)
{
    fprintf(stderr, "eddy-bench: ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    exit(2);
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (p == NULL)
        die("out of memory%s", "");
    return p;
}

/* A process's utime + stime in seconds, from /proc/PID/stat (fields 14 and 15). */
static double pid_cpu_seconds(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NAN;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command name may contain spaces */
    if (p == NULL)
        return NAN;
    unsigned long long utime, stime;
    /* After ')' come field 3 (state) .. field 13, then utime and stime. */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2)
        return NAN;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* The servers' CPU time in seconds (every --server-pid, summed), or NaN. */
static double server_cpu_seconds(void)
{
    if (opt.nserver_pids == 0)
        return NAN;
    double sum = 0;
    for (int i = 0; i < opt.nserver_pids; i++)
        sum += pid_cpu_seconds(opt.server_pids[i]);
    return sum;
}

/* The server's resident set size in bytes (VmRSS), or -1. */
static long long server_rss_bytes(void)
{
    if (opt.server_pid <= 0)
        return -1;
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)opt.server_pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    long long kb = -1;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = atoll(line + 6);
            break;
        }
    }
    fclose(f);
    return kb < 0 ? -1 : kb * 1024;
}

/* The kernel's slab memory in bytes (Slab in /proc/meminfo: the whole machine), or -1. Socket
 * structures live there, outside any process's RSS. */
static long long slab_bytes(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (f == NULL)
        return -1;
    char line[256];
    long long kb = -1;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "Slab:", 5) == 0) {
            kb = atoll(line + 5);
            break;
        }
    }
    fclose(f);
    return kb < 0 ? -1 : kb * 1024;
}

/* Seconds a task spent runnable but waiting for a CPU (/proc/PID/schedstat, second field: the
 * main thread of pid, or this process for 0). Other processes on the same CPU show up here. */
static double cpu_wait_seconds(pid_t pid)
{
    char path[64];
    if (pid > 0)
        snprintf(path, sizeof(path), "/proc/%d/schedstat", (int)pid);
    else
        snprintf(path, sizeof(path), "/proc/self/schedstat");
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NAN;
    unsigned long long run_ns, wait_ns;
    int n = fscanf(f, "%llu %llu", &run_ns, &wait_ns);
    fclose(f);
    return n == 2 ? (double)wait_ns / 1e9 : NAN;
}

/* The servers' waits for a CPU (every --server-pid, summed), or NaN. */
static double server_wait_seconds(void)
{
    if (opt.nserver_pids == 0)
        return NAN;
    double sum = 0;
    for (int i = 0; i < opt.nserver_pids; i++)
        sum += cpu_wait_seconds(opt.server_pids[i]);
    return sum;
}

/* What --redis-port's INFO tells: CPU seconds (used_cpu_user + used_cpu_sys: its getrusage,
 * all of its threads, microsecond resolution), bytes read and written on its connections
 * (total_net_input_bytes, total_net_output_bytes) and PUBLISH commands run (commandstats:
 * a server that falls behind publishes fewer messages than the sender emitted). */
typedef struct redis_usage {
    double cpu, in, out, publishes;
} redis_usage_t;

/* One INFO exchange: a few kilobytes on loopback, twice per run (blocking, 2 s at most). All
 * NaN without --redis-port or on failure. */
static redis_usage_t redis_usage(void)
{
    redis_usage_t u = {NAN, NAN, NAN, NAN};
    if (opt.redis_port <= 0)
        return u;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return u;
    struct sockaddr_in addr = server_addr;
    addr.sin_port = htons((uint16_t)opt.redis_port);
    struct timeval tv = {.tv_sec = 2};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    static const char cmd[] = "INFO cpu stats commandstats\r\n";
    static char buf[65536];
    size_t len = 0;
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0 &&
        send(fd, cmd, sizeof(cmd) - 1, MSG_NOSIGNAL) == (ssize_t)sizeof(cmd) - 1) {
        /* A bulk string: $LEN\r\n, LEN bytes, \r\n. */
        long want = -1;
        while (len < sizeof(buf) - 1) {
            ssize_t n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
            if (n <= 0)
                break;
            len += (size_t)n;
            buf[len] = '\0';
            char *eol = strstr(buf, "\r\n");
            if (want < 0 && buf[0] == '$' && eol != NULL)
                want = (long)(eol - buf) + 2 + atol(buf + 1) + 2;
            if (want >= 0 && (long)len >= want)
                break;
        }
    }
    close(fd);
    buf[len] = '\0';
    static const char *const keys[] = {"\nused_cpu_user:", "\nused_cpu_sys:",
                                       "\ntotal_net_input_bytes:", "\ntotal_net_output_bytes:"};
    double v[4];
    for (int i = 0; i < 4; i++) {
        const char *at = strstr(buf, keys[i]);
        if (at == NULL)
            return u;
        v[i] = atof(at + strlen(keys[i]));
    }
    /* No PUBLISH yet: no cmdstat_publish line. */
    const char *pub = strstr(buf, "\ncmdstat_publish:calls=");
    double publishes = pub ? atof(pub + strlen("\ncmdstat_publish:calls=")) : 0;
    return (redis_usage_t){v[0] + v[1], v[2], v[3], publishes};
}

static double self_cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* Prints a JSON number, or null for NaN/inf (no server pid, nothing measured). */
static void json_num(const char *key, double v, bool last)
{
    if (isfinite(v))
        printf("\"%s\":%.6g%s", key, v, last ? "" : ",");
    else
        printf("\"%s\":null%s", key, last ? "" : ",");
}

static void json_head(void)
{
    printf("{\"mode\":\"%s\",", opt.mode_name);
    if (opt.sio)
        printf("\"sio\":true,");
    if (opt.label != NULL)
        printf("\"label\":\"%s\",", opt.label);
}

/* CPU and time at the start and end of the measured window. */
typedef struct window {
    int64_t t0, t1;
    double server0, server1, self0, self1;
    double server_wait0, server_wait1, self_wait0, self_wait1;
    redis_usage_t redis0, redis1; /* --redis-port */
} window_t;

static void window_start(window_t *w)
{
    w->t0 = mono_ns();
    w->server0 = server_cpu_seconds();
    w->self0 = self_cpu_seconds();
    w->server_wait0 = server_wait_seconds();
    w->redis0 = redis_usage();
    w->self_wait0 = cpu_wait_seconds(0);
}

static void window_end(window_t *w)
{
    w->t1 = mono_ns();
    w->server1 = server_cpu_seconds();
    w->self1 = self_cpu_seconds();
    w->server_wait1 = server_wait_seconds();
    w->redis1 = redis_usage();
    w->self_wait1 = cpu_wait_seconds(0);
}

static double window_seconds(const window_t *w)
{
    return (double)(w->t1 - w->t0) / 1e9;
}

/* ---- histogram ---- */

static unsigned hist_index(uint64_t v)
{
    if (v < HIST_SUB)
        return (unsigned)v;
    unsigned exp = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = exp - HIST_SUB_BITS;
    return (shift + 1) * HIST_SUB + (unsigned)((v >> shift) - HIST_SUB);
}

static double hist_bucket_mid(unsigned idx)
{
    if (idx < HIST_SUB)
        return idx;
    unsigned shift = idx / HIST_SUB - 1;
    uint64_t base = (uint64_t)(idx % HIST_SUB + HIST_SUB) << shift;
    return (double)base + (double)((1ull << shift) - 1) / 2.0;
}

static void hist_add(histogram_t *h, uint64_t v)
{
    h->counts[hist_index(v)]++;
    h->total++;
    if (v > h->max)
        h->max = v;
}

static double hist_quantile(const histogram_t *h, double q)
{
    if (h->total == 0)
        return NAN;
    uint64_t rank = (uint64_t)ceil(q * (double)h->total);
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < 64 * HIST_SUB; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            double mid = hist_bucket_mid(i);
            return mid > (double)h->max ? (double)h->max : mid;
        }
    }
    return (double)h->max;
}

/* ---- WebSocket client pieces ---- */

/* Builds a masked client frame; returns its length. out needs len + 14 bytes. */
static size_t ws_frame(uint8_t *out, int opcode, const uint8_t *payload, size_t len,
                       const uint8_t mask[4])
{
    size_t h = 0;
    out[h++] = (uint8_t)(0x80 | opcode);
    if (len < 126) {
        out[h++] = (uint8_t)(0x80 | len);
    } else if (len < 65536) {
        out[h++] = 0x80 | 126;
        out[h++] = (uint8_t)(len >> 8);
        out[h++] = (uint8_t)len;
    } else {
        out[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            out[h++] = (uint8_t)(len >> (8 * i));
    }
    memcpy(out + h, mask, 4);
    h += 4;
    for (size_t i = 0; i < len; i++)
        out[h + i] = payload[i] ^ mask[i & 3];
    return h + len;
}

/* The echo payload of connection id: printable ASCII for text, every byte value for binary. */
static uint8_t payload_byte(uint32_t id, size_t i)
{
    if (opt.binary)
        return (uint8_t)(i * 31 + id * 7);
    return (uint8_t)('a' + (i + id) % 26);
}

static void conn_update_events(conn_t *c, bool want_out)
{
    if (c->epollout == want_out)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->epollout = want_out;
}

static void conn_release(conn_t *c);
static void conn_fail(conn_t *c, const char *why);

/* Connecting, in the TLS or WebSocket handshake, or (--sio) in the Socket.IO one. */
static bool conn_setting_up(const conn_t *c)
{
    return c->state == ST_CONNECTING || c->state == ST_TLS || c->state == ST_UPGRADING ||
           c->state == ST_SIO;
}

/* ---- TLS records after the handshake (see "TLS records" above) ---- */

static uint8_t *sealed; /* the records of one conn_send() */
static size_t sealed_cap;
static uint8_t *tls_in; /* the records of one read (rbuf_cap bytes) */

static int secrets_index = -1; /* the SSL's ex_data slot for its conn_t */

/* OpenSSL's keylog callback: keeps the application traffic secrets of the handshake of the
 * connection ssl belongs to. A line is "LABEL <client random, hex> <secret, hex>". */
static void tls_keylog(const SSL *ssl, const char *line)
{
    conn_t *c = SSL_get_ex_data(ssl, secrets_index);
    if (c == NULL || c->secrets == NULL)
        return;
    uint8_t *secret;
    size_t *secret_len;
    if (strncmp(line, "CLIENT_TRAFFIC_SECRET_0 ", 24) == 0) {
        secret = c->secrets->client;
        secret_len = &c->secrets->client_len;
    } else if (strncmp(line, "SERVER_TRAFFIC_SECRET_0 ", 24) == 0) {
        secret = c->secrets->server;
        secret_len = &c->secrets->server_len;
    } else {
        return;
    }
    const char *hex = strrchr(line, ' ') + 1;
    size_t digits = strlen(hex);
    if (digits % 2 != 0 || digits / 2 > EDDY__TLS13_SECRET_MAX)
        return;
    for (size_t i = 0; i < digits / 2; i++) {
        unsigned byte;
        if (sscanf(hex + 2 * i, "%2x", &byte) != 1)
            return;
        secret[i] = (uint8_t)byte;
    }
    *secret_len = digits / 2;
}

/* After SSL_connect(): tls13.c takes the records over from OpenSSL, which has written none
 * (our Finished was the last handshake record) and, reading without read-ahead, holds none
 * of the server's. Returns false if it cannot (not TLS 1.3, a suite tls13.c lacks). */
static bool tls_take_over(conn_t *c)
{
    tls_secrets_t *s = c->secrets;
    const SSL_CIPHER *cipher = SSL_get_current_cipher(c->ssl);
    uint16_t suite = cipher != NULL ? SSL_CIPHER_get_protocol_id(cipher) : 0;
    size_t secret_len;
    bool ok = s != NULL && SSL_version(c->ssl) == TLS1_3_VERSION &&
              eddy__tls13_suite_supported(suite, &secret_len) && s->client_len == secret_len &&
              s->server_len == secret_len && SSL_has_pending(c->ssl) == 0 &&
              eddy__tls13_new(suite, s->server, s->client, secret_len, 0, 0, &c->rec) == 0;
    if (s != NULL) {
        OPENSSL_cleanse(s, sizeof(*s));
        free(s);
        c->secrets = NULL;
    }
    if (ok) {
        SSL_free(c->ssl); /* it sends nothing more: the socket is ours */
        c->ssl = NULL;
    }
    return ok;
}

/* Seals *len bytes at p into records; returns them (*len: their length), or NULL. */
static const uint8_t *tls_seal(conn_t *c, const uint8_t *p, size_t *len)
{
    size_t n = *len;
    size_t records = (n + EDDY__TLS13_PLAIN_MAX - 1) / EDDY__TLS13_PLAIN_MAX;
    size_t need = n + records * EDDY__TLS13_OVERHEAD;
    if (need > sealed_cap) {
        sealed_cap = need;
        sealed = xrealloc(sealed, sealed_cap);
    }
    size_t out = 0;
    for (size_t off = 0; off < n;) {
        size_t take = n - off < EDDY__TLS13_PLAIN_MAX ? n - off : EDDY__TLS13_PLAIN_MAX;
        memcpy(sealed + out + EDDY__TLS13_HEADER, p + off, take);
        size_t rec_len = eddy__tls13_seal(c->rec, EDDY__TLS13_APPLICATION_DATA, sealed + out, take);
        if (rec_len == 0)
            return NULL;
        out += rec_len;
        off += take;
    }
    *len = out;
    return sealed;
}

/* One recv() of records, opened into buf (cap bytes): as recv() returns. The records read
 * are at most cap bytes, so their plaintext fits; a record received in part waits in
 * c->cipher. Session tickets (handshake records) are skipped; close_notify ends the stream
 * once what came before it is handed out; any other alert is an error (EPROTO). */
static ssize_t tls_recv(conn_t *c, uint8_t *buf, size_t cap)
{
    if (c->tls_eof)
        return 0;
    size_t have = c->cipher_len;
    if (cap > rbuf_cap)
        cap = rbuf_cap;
    if (cap <= have)
        die("the receive buffer cannot take a TLS record%s", "");
    if (have > 0)
        memcpy(tls_in, c->cipher, have);
    ssize_t n = recv(c->fd, tls_in + have, cap - have, 0);
    if (n <= 0)
        return n;
    size_t total = have + (size_t)n, off = 0, got = 0;
    for (;;) {
        long rec_len = eddy__tls13_record_len(tls_in + off, total - off);
        if (rec_len < 0) {
            errno = EPROTO;
            return -1;
        }
        if (rec_len == 0 || (size_t)rec_len > total - off)
            break;
        uint8_t type;
        long len = eddy__tls13_open(c->rec, tls_in + off, (size_t)rec_len, buf + got, &type);
        if (len < 0) {
            errno = EPROTO;
            return -1;
        }
        off += (size_t)rec_len;
        if (type == EDDY__TLS13_APPLICATION_DATA) {
            got += (size_t)len;
        } else if (type == EDDY__TLS13_ALERT) {
            if (len != 2 || buf[got + 1] != 0) { /* not close_notify */
                errno = EPROTO;
                return -1;
            }
            c->tls_eof = true;
            off = total;
            break;
        }
    }
    c->cipher_len = total - off;
    if (c->cipher_len > 0) {
        if (c->cipher == NULL)
            c->cipher = xrealloc(NULL, EDDY__TLS13_RECORD_MAX);
        memcpy(c->cipher, tls_in + off, c->cipher_len);
    }
    if (got == 0 && !c->tls_eof) {
        errno = EAGAIN;
        return -1;
    }
    return (ssize_t)got;
}

/* send() or SSL_write(); -1 with errno EAGAIN when the socket (or TLS) cannot take more.
 * Records sealed by tls_seal() go out with send(). */
static ssize_t io_send(conn_t *c, const void *data, size_t len)
{
    if (c->ssl == NULL)
        return send(c->fd, data, len, MSG_NOSIGNAL);
    ERR_clear_error();
    int n = SSL_write(c->ssl, data, len > INT_MAX ? INT_MAX : (int)len);
    if (n > 0)
        return n;
    int e = SSL_get_error(c->ssl, n);
    errno = e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? EAGAIN : EIO;
    return -1;
}

/* recv() or SSL_read() until buf is full or nothing is left to read; 0 at end of stream.
 * OpenSSL reads ahead (one recv() takes every record the socket holds), so records it holds
 * are invisible to epoll: when buf fills, c->tls_full tells the caller to read again. */
static ssize_t io_recv(conn_t *c, uint8_t *buf, size_t cap)
{
    if (c->rec != NULL)
        return tls_recv(c, buf, cap);
    if (c->ssl == NULL)
        return recv(c->fd, buf, cap, 0);
    size_t got = 0;
    c->tls_full = false;
    while (got < cap) {
        ERR_clear_error();
        int n = SSL_read(c->ssl, buf + got, cap - got > INT_MAX ? INT_MAX : (int)(cap - got));
        if (n > 0) {
            got += (size_t)n;
            continue;
        }
        int e = SSL_get_error(c->ssl, n);
        if (got > 0)
            break;
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            errno = EAGAIN;
            return -1;
        }
        if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && errno == 0))
            return 0;
        errno = e == SSL_ERROR_SYSCALL ? errno : EPROTO;
        return -1;
    }
    c->tls_full = got == cap;
    return (ssize_t)got;
}

/* Queues bytes: writes at once when nothing is pending, keeps what the socket refuses. */
static bool conn_send(conn_t *c, const void *data, size_t len)
{
    if (c->rec != NULL && (data = tls_seal(c, data, &len)) == NULL) {
        conn_fail(c, "sealing a TLS record failed");
        return false;
    }
    if (c->out_len == c->out_off) {
        c->out_len = c->out_off = 0;
        ssize_t n = io_send(c, data, len);
        if (n < 0) {
            if (errno != EAGAIN && errno != EINTR) {
                conn_fail(c, "send failed");
                return false;
            }
            n = 0;
        }
        if ((size_t)n == len)
            return true;
        data = (const uint8_t *)data + n;
        len -= (size_t)n;
    }
    if (c->out_len + len > c->out_cap) {
        if (c->out_off > 0) {
            memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
            c->out_len -= c->out_off;
            c->out_off = 0;
        }
        if (c->out_len + len > c->out_cap) {
            c->out_cap = (c->out_len + len) * 2;
            c->out = xrealloc(c->out, c->out_cap);
        }
    }
    memcpy(c->out + c->out_len, data, len);
    c->out_len += len;
    conn_update_events(c, true);
    return true;
}

static void conn_flush(conn_t *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = io_send(c, c->out + c->out_off, c->out_len - c->out_off);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return;
            conn_fail(c, "send failed");
            return;
        }
        c->out_off += (size_t)n;
    }
    c->out_off = c->out_len = 0;
    conn_update_events(c, false);
}

static void send_control(conn_t *c, int opcode, const uint8_t *payload, size_t len)
{
    uint8_t frame[128 + 14];
    if (len > 125)
        len = 125;
    conn_send(c, frame, ws_frame(frame, opcode, payload, len, c->mask));
}

/* A short text message (--sio: Engine.IO and Socket.IO control packets). */
static void send_text(conn_t *c, const char *text, size_t len)
{
    uint8_t frame[256 + 14];
    if (len > 256)
        die("internal: control packet too long%s", "");
    conn_send(c, frame, ws_frame(frame, 0x1, (const uint8_t *)text, len, c->mask));
}

static void send_close(conn_t *c, uint16_t code)
{
    uint8_t payload[2] = {(uint8_t)(code >> 8), (uint8_t)code};
    c->close_sent = true;
    send_control(c, 0x8, payload, 2);
}

/* ---- connection setup ---- */

static const char *conn_path(const conn_t *c)
{
    static char path[512];
    if (!opt.sio && (c->role == ROLE_SUB || c->role == ROLE_PUB)) {
        snprintf(path, sizeof(path), "/%s?topic=%s", c->role == ROLE_SUB ? "sub" : "pub",
                 opt.topic);
        return path;
    }
    if (opt.path != NULL)
        return opt.path;
    return opt.sio ? SIO_PATH : "/";
}

/* publish --port2: every second subscriber is on the second node. */
static bool conn_on_port2(const conn_t *c)
{
    return opt.port2 > 0 && c->role == ROLE_SUB && (c->id & 1) != 0;
}

static void send_upgrade(conn_t *c)
{
    uint8_t raw_key[16];
    uint64_t r1 = rng_next(), r2 = rng_next();
    memcpy(raw_key, &r1, 8);
    memcpy(raw_key + 8, &r2, 8);
    char key[32];
    EVP_EncodeBlock((unsigned char *)key, raw_key, 16);

    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    char concat[64];
    size_t key_len = strlen(key);
    memcpy(concat, key, key_len);
    memcpy(concat + key_len, guid, sizeof(guid) - 1);
    unsigned char digest[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)concat, key_len + sizeof(guid) - 1, digest);
    EVP_EncodeBlock((unsigned char *)c->accept, digest, SHA_DIGEST_LENGTH);

    char req[1024];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n%s\r\n",
                     conn_path(c), opt.host, conn_on_port2(c) ? opt.port2 : opt.port, key,
                     opt.deflate ? "Sec-WebSocket-Extensions: permessage-deflate; "
                                   "client_no_context_takeover\r\n"
                                 : "");
    c->state = ST_UPGRADING;
    conn_update_events(c, false);
    conn_send(c, req, (size_t)n);
}

static void conn_connect(conn_t *c)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        perror("eddy-bench: socket");
        c->state = ST_FREE;
        failed++;
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (opt.sources > 0) {
        /* The port is chosen at connect() time, per destination, so each source address has
         * the whole ephemeral range. */
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl(0x7f000002u + c->id % (uint32_t)opt.sources);
        if (bind(fd, (struct sockaddr *)&src, sizeof(src)) != 0) {
            perror("eddy-bench: bind");
            close(fd);
            c->state = ST_FREE;
            failed++;
            return;
        }
    }
    c->fd = fd;
    c->state = ST_CONNECTING;
    c->close_sent = c->close_received = c->in_fragment = false;
    c->in_len = c->out_off = c->out_len = 0;
    c->inflight = 0;
    c->received = 0;
    uint32_t m = (uint32_t)rng_next();
    memcpy(c->mask, &m, 4);
    c->epollout = true;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        perror("eddy-bench: epoll_ctl");
        close(fd);
        c->state = ST_FREE;
        failed++;
        return;
    }
    setting_up++;
    const struct sockaddr_in *to = conn_on_port2(c) ? &server_addr2 : &server_addr;
    if (connect(fd, (const struct sockaddr *)to, sizeof(*to)) != 0 && errno != EINPROGRESS) {
        conn_fail(c, strerror(errno));
        return;
    }
}

/* Starts connections until connect_batch are being set up (echo, idle and publish modes). */
static void pump_connects(void)
{
    int total = opt.mode == MODE_PUBLISH ? opt.conns + 1 : opt.conns;
    while (setting_up < opt.connect_batch && next_to_connect < total) {
        conn_t *c = &conns[next_to_connect];
        c->id = (uint32_t)next_to_connect;
        if (opt.mode == MODE_PUBLISH)
            c->role = next_to_connect < opt.conns ? ROLE_SUB : ROLE_PUB;
        else
            c->role = opt.mode == MODE_IDLE ? ROLE_IDLE : ROLE_ECHO;
        /* The publisher connects only after every subscriber is open. */
        if (c->role == ROLE_PUB && opened + failed < opt.conns)
            return;
        next_to_connect++;
        conn_connect(c);
    }
}

static void conn_release(conn_t *c)
{
    if (c->fd >= 0)
        close(c->fd); /* also removes it from the epoll set */
    c->fd = -1;
    c->gen++;
    if (conn_setting_up(c))
        setting_up--;
    if (c->ssl != NULL) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    free(c->secrets);
    c->secrets = NULL;
    eddy__tls13_free(c->rec);
    c->rec = NULL;
    c->cipher_len = 0;
    c->tls_eof = false;
    if (c->inflate != NULL)
        inflateReset(c->inflate);
    c->state = ST_FREE;
    c->epollout = false;
}

static void handshake_restart(conn_t *c);

static void conn_fail(conn_t *c, const char *why)
{
    if (c->state == ST_FREE)
        return;
    bool was_setting_up = conn_setting_up(c);
    bool was_open = c->state == ST_OPEN || c->state == ST_CLOSING;
    errors++;
    if (errors <= 5)
        fprintf(stderr, "eddy-bench: connection %u: %s\n", c->id, why);
    conn_release(c);
    if (opt.mode == MODE_HANDSHAKE) {
        handshake_restart(c);
        return;
    }
    if (was_setting_up)
        failed++;
    else if (was_open)
        lost++;
}

/* ---- mode behaviour ---- */

/* Compresses one message as RFC 7692 says (raw deflate, sync flush, the trailing 00 00 ff ff
 * removed); returns the compressed length. out needs compressBound(len) + 16 bytes. */
static size_t deflate_message(const uint8_t *in, size_t len, uint8_t *out)
{
    z_stream z = {0};
    if (deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        die("deflateInit2 failed%s", "");
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)len;
    z.next_out = out;
    z.avail_out = (uInt)(compressBound(len) + 16);
    if (deflate(&z, Z_SYNC_FLUSH) != Z_OK || z.avail_in != 0)
        die("deflate failed%s", "");
    size_t n = z.total_out;
    deflateEnd(&z);
    return n >= 4 ? n - 4 : n;
}

/* Inflates one compressed message into `inflated`; returns its length, or -1. */
static long inflate_message(conn_t *c, const uint8_t *in, size_t len)
{
    static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};
    if (c->inflate == NULL) {
        c->inflate = xrealloc(NULL, sizeof(*c->inflate));
        memset(c->inflate, 0, sizeof(*c->inflate));
        if (inflateInit2(c->inflate, -15) != Z_OK)
            die("inflateInit2 failed%s", "");
    }
    z_stream *z = c->inflate;
    z->next_out = inflated;
    z->avail_out = (uInt)inflated_cap;
    for (int part = 0; part < 2; part++) {
        z->next_in = (Bytef *)(part == 0 ? in : tail);
        z->avail_in = (uInt)(part == 0 ? len : sizeof(tail));
        int rc = inflate(z, Z_SYNC_FLUSH);
        if ((rc != Z_OK && rc != Z_BUF_ERROR) || z->avail_in != 0)
            return -1; /* corrupt, or longer than any expected message */
    }
    return (long)(inflated_cap - z->avail_out);
}

static void echo_send(conn_t *c, uint32_t count)
{
    if (count == 0)
        return;
    size_t need = c->frame_len * count;
    if (need > wbuf_cap) {
        wbuf_cap = need * 2;
        wbuf = xrealloc(wbuf, wbuf_cap);
    }
    for (uint32_t i = 0; i < count; i++)
        memcpy(wbuf + i * c->frame_len, c->frame, c->frame_len);
    c->inflight += count;
    conn_send(c, wbuf, need);
}

static void on_open(conn_t *c)
{
    c->state = ST_OPEN;
    setting_up--;
    opened++;
    switch (c->role) {
    case ROLE_ECHO:
        if (c->frame == NULL) {
            uint8_t *plain = xrealloc(NULL, opt.size + 1);
            for (size_t i = 0; i < opt.size; i++)
                plain[i] = payload_byte(c->id, i);
            int opcode = opt.binary ? 0x2 : 0x1;
            size_t len = opt.size;
            if (opt.sio) {
                static const char head[] = "42[\"message\",\"", tail[] = "\"]";
                uint8_t *event = xrealloc(NULL, sizeof(head) + opt.size + sizeof(tail));
                memcpy(event, head, sizeof(head) - 1);
                memcpy(event + sizeof(head) - 1, plain, opt.size);
                memcpy(event + sizeof(head) - 1 + opt.size, tail, sizeof(tail) - 1);
                len = sizeof(head) - 1 + opt.size + sizeof(tail) - 1;
                free(plain);
                plain = event;
            }
            if (opt.deflate) {
                /* A fresh raw deflate stream per message is valid with or without context
                 * takeover, so the compressed frame too is built once. */
                uint8_t *packed = xrealloc(NULL, compressBound(opt.size) + 16);
                len = deflate_message(plain, opt.size, packed);
                free(plain);
                plain = packed;
                opcode |= 0x40; /* RSV1: compressed */
            }
            c->frame = xrealloc(NULL, len + 14);
            c->frame_len = ws_frame(c->frame, opcode, plain, len, c->mask);
            free(plain);
        }
        echo_send(c, (uint32_t)opt.inflight);
        break;
    case ROLE_HANDSHAKE:
        send_close(c, 1000);
        c->state = ST_CLOSING;
        c->deadline = now_ns + CLOSE_WAIT_NS;
        break;
    case ROLE_PUB:
        publisher = c;
        break;
    default:
        break;
    }
}

static void handshake_restart(conn_t *c)
{
    if (!stop_requested)
        conn_connect(c);
}

static void handshake_done(conn_t *c, bool clean)
{
    if (measuring && clean)
        measured++;
    conn_release(c);
    handshake_restart(c);
}

static bool echo_verify(const conn_t *c, const uint8_t *payload)
{
    for (size_t i = 0; i < opt.size; i++) {
        if (payload[i] != payload_byte(c->id, i))
            return false;
    }
    return true;
}

/* --sio: the publisher's clock as 16 lower-case hex digits (a JSON string carries text). */
static bool hex_u64(const uint8_t *p, uint64_t *out)
{
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        uint8_t d = p[i];
        if (d >= '0' && d <= '9')
            v = (v << 4) | (uint64_t)(d - '0');
        else if (d >= 'a' && d <= 'f')
            v = (v << 4) | (uint64_t)(d - 'a' + 10);
        else
            return false;
    }
    *out = v;
    return true;
}

static void hex_put(uint8_t *p, uint64_t v)
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--, v >>= 4)
        p[i] = (uint8_t)digits[v & 0xf];
}

/* A whole data message (opcode 1 or 2) of len bytes; payload is NULL if it came fragmented.
 * With --sio it is the string argument of a `message-back` or `room-message` event. */
static void on_message(conn_t *c, int opcode, const uint8_t *payload, uint64_t len,
                       uint32_t *replies)
{
    c->received++;
    switch (c->role) {
    case ROLE_ECHO:
        if (len != opt.size || opcode != (opt.binary ? 0x2 : 0x1)) {
            errors++;
            if (errors <= 5)
                fprintf(stderr,
                        "eddy-bench: connection %u: echo of %" PRIu64 " bytes, "
                        "opcode %d\n",
                        c->id, len, opcode);
        } else if (payload != NULL && (c->received % SAMPLE_INTERVAL) == 1) {
            if (echo_verify(c, payload)) {
                verified++;
            } else {
                errors++;
                fprintf(stderr, "eddy-bench: connection %u: echo content differs\n", c->id);
            }
        }
        if (c->inflight > 0)
            c->inflight--;
        if (measuring)
            measured++;
        (*replies)++;
        break;
    case ROLE_SUB: {
        if (len != opt.size || payload == NULL) {
            errors++;
            break;
        }
        uint64_t ts = 0;
        if (opt.sio) {
            if (!hex_u64(payload, &ts)) {
                errors++;
                break;
            }
        } else {
            for (int i = 7; i >= 0; i--)
                ts = (ts << 8) | payload[i];
        }
        uint64_t seq = c->received - 1;
        if ((long)seq >= opt.pub_warmup)
            hist_add(&latency, now_ns > (int64_t)ts ? (uint64_t)(now_ns - (int64_t)ts) : 0);
        if ((long)seq >= pub_sent) {
            errors++; /* more messages than were published */
            break;
        }
        pub_deliveries++;
        uint32_t *slot = &pub_ring[seq % PUB_RING];
        if (++*slot == (uint32_t)opened - 1) { /* every subscriber has it */
            *slot = 0;
            pub_completed++;
            pub_last_complete = now_ns;
            pub_progress = now_ns;
        }
        break;
    }
    default:
        break;
    }
}

/* --sio: the string argument of `42["<event>","<text>"]` (only what this tool sends: no
 * escapes); false if the event has another shape. */
static bool sio_string_arg(const uint8_t *p, size_t len, size_t name_end, const uint8_t **text,
                           size_t *text_len)
{
    size_t start = name_end + 3; /* `","` after the name's last character */
    if (len < start + 2 || memcmp(p + name_end, "\",\"", 3) != 0 ||
        memcmp(p + len - 2, "\"]", 2) != 0)
        return false;
    *text = p + start;
    *text_len = len - 2 - start;
    return true;
}

/* --sio: one Engine.IO packet (a whole text message). Handshake packets advance c->sio_step;
 * the events of the measured traffic go to on_message. */
static void sio_on_packet(conn_t *c, int opcode, const uint8_t *p, size_t len, uint32_t *replies)
{
    if (opcode != 0x1 || len == 0) {
        conn_fail(c, "binary or empty Engine.IO packet");
        return;
    }
    switch (p[0]) {
    case '0': /* open: CONNECT to the main namespace, no auth */
        if (c->state != ST_SIO || c->sio_step != SIO_WAIT_OPEN) {
            conn_fail(c, "unexpected Engine.IO open packet");
            return;
        }
        c->sio_step = SIO_WAIT_CONNECT;
        send_text(c, "40", 2);
        return;
    case '2': /* the server's heartbeat */
        send_text(c, "3", 1);
        return;
    case '6': /* noop */
        return;
    case '4': /* message: a Socket.IO packet follows */
        break;
    default:
        conn_fail(c, p[0] == '1' ? "Engine.IO close from the server"
                                 : "unexpected Engine.IO packet type");
        return;
    }
    bool handshake = c->state == ST_SIO;
    if (len >= 2 && p[1] == '0') { /* CONNECT reply `40{"sid":...}` */
        if (!handshake || c->sio_step != SIO_WAIT_CONNECT) {
            conn_fail(c, "unexpected Socket.IO CONNECT");
            return;
        }
        c->sio_step = SIO_WAIT_AUTH;
        return;
    }
    if (len >= 2 && p[1] == '3') { /* ACK: only the join's `430["joined"]` is expected */
        static const char joined[] = "430[\"joined\"]";
        if (!handshake || c->sio_step != SIO_WAIT_JOIN || len != sizeof(joined) - 1 ||
            memcmp(p, joined, len) != 0) {
            conn_fail(c, "unexpected Socket.IO ACK");
            return;
        }
        on_open(c); /* handshake done, room joined */
        return;
    }
    if (len < 2 || p[1] != '2') {
        conn_fail(c, len >= 2 && p[1] == '4'   ? "Socket.IO CONNECT_ERROR (refused)"
                     : len >= 2 && p[1] == '1' ? "Socket.IO DISCONNECT from the server"
                                               : "unexpected Socket.IO packet");
        return;
    }
    /* EVENT `42["name",...]`, main namespace, no ack id. */
    const uint8_t *name = p + 4;
    const uint8_t *name_end = len > 4 ? memchr(name, '"', len - 4) : NULL;
    if (len < 4 || memcmp(p, "42[\"", 4) != 0 || name_end == NULL) {
        conn_fail(c, "malformed Socket.IO EVENT");
        return;
    }
    size_t name_len = (size_t)(name_end - name);
#define IS_EVENT(lit) (name_len == sizeof(lit) - 1 && memcmp(name, lit, name_len) == 0)
    if (IS_EVENT("auth")) {
        if (!handshake || c->sio_step != SIO_WAIT_AUTH) {
            conn_fail(c, "unexpected auth event");
            return;
        }
        if (c->role != ROLE_SUB) {
            on_open(c); /* handshake done */
            return;
        }
        char join[300];
        int n = snprintf(join, sizeof(join), "420[\"join\",\"%s\"]", opt.topic);
        c->sio_step = SIO_WAIT_JOIN;
        send_text(c, join, (size_t)n);
        return;
    }
    const uint8_t *text;
    size_t text_len;
    bool expected = (c->role == ROLE_ECHO && IS_EVENT("message-back")) ||
                    (c->role == ROLE_SUB && IS_EVENT("room-message"));
#undef IS_EVENT
    if (handshake || !expected ||
        !sio_string_arg(p, len, (size_t)(name_end - p), &text, &text_len)) {
        errors++;
        if (errors <= 5)
            fprintf(stderr, "eddy-bench: connection %u: unexpected event %.*s\n", c->id,
                    (int)(len < 80 ? len : 80), (const char *)p);
        return;
    }
    on_message(c, opcode, text, text_len, replies);
}

/* Parses frames from the server; returns bytes consumed, or -1 if c was closed. */
static ssize_t parse_frames(conn_t *c, uint8_t *p, size_t len)
{
    size_t off = 0;
    uint32_t replies = 0;
    uint32_t gen = c->gen;
    size_t max_payload = opt.size > 125 ? opt.size : 125;
    if (opt.sio)
        max_payload = opt.size + SIO_MAX_PACKET;
    while (len - off >= 2) {
        uint8_t b0 = p[off], b1 = p[off + 1];
        int opcode = b0 & 0x0f;
        bool fin = (b0 & 0x80) != 0;
        /* RSV1 marks a compressed message, in its first frame only (RFC 7692). */
        bool compressed = opt.deflate && (b0 & 0x40) && (opcode == 0x1 || opcode == 0x2);
        if ((b1 & 0x80) || (b0 & (compressed ? 0x30 : 0x70))) {
            conn_fail(c, (b1 & 0x80) ? "masked frame from the server" : "reserved bits set");
            return -1;
        }
        uint64_t plen;
        size_t hlen = ws_frame_length(p + off, len - off, &plen);
        if (hlen == 0)
            break;
        if (plen > max_payload) {
            conn_fail(c, "frame larger than expected");
            return -1;
        }
        if (len - off - hlen < plen)
            break;
        uint8_t *payload = p + off + hlen;
        off += hlen + (size_t)plen;
        switch (opcode) {
        case 0x0:
            if (!c->in_fragment) {
                conn_fail(c, "continuation without a message");
                return -1;
            }
            c->fragment_len += plen;
            if (fin) {
                c->in_fragment = false;
                on_message(c, c->fragment_opcode, NULL, c->fragment_len, &replies);
            }
            break;
        case 0x1:
        case 0x2:
            if (compressed) {
                long n = fin ? inflate_message(c, payload, (size_t)plen) : -1;
                if (n < 0) {
                    conn_fail(c,
                              fin ? "cannot inflate a message" : "fragmented compressed message");
                    return -1;
                }
                compressed_replies++;
                on_message(c, opcode, inflated, (uint64_t)n, &replies);
                break;
            }
            if (opt.sio) {
                if (!fin) {
                    conn_fail(c, "fragmented Engine.IO packet");
                    return -1;
                }
                sio_on_packet(c, opcode, payload, (size_t)plen, &replies);
                break;
            }
            if (!fin) {
                c->in_fragment = true;
                c->fragment_opcode = (uint8_t)opcode;
                c->fragment_len = plen;
                break;
            }
            on_message(c, opcode, payload, plen, &replies);
            break;
        case 0x8:
            c->close_received = true;
            if (c->role == ROLE_HANDSHAKE) {
                c->deadline = now_ns + CLOSE_WAIT_NS; /* now wait for the server's FIN */
                break;
            }
            if (!c->close_sent) {
                uint16_t code = plen >= 2 ? (uint16_t)((payload[0] << 8) | payload[1]) : 1000;
                send_close(c, code);
            }
            conn_fail(c, "server closed the connection");
            return -1;
        case 0x9:
            send_control(c, 0xa, payload, (size_t)plen);
            break;
        case 0xa:
            break;
        default:
            conn_fail(c, "unknown opcode");
            return -1;
        }
        if (c->gen != gen)
            return -1;
    }
    if (replies > 0 && c->role == ROLE_ECHO && !stop_requested)
        echo_send(c, replies);
    return (ssize_t)off;
}

/* Parses the 101 response; returns bytes consumed, 0 if incomplete, -1 if c was closed. */
static ssize_t parse_upgrade(conn_t *c, uint8_t *p, size_t len)
{
    uint8_t *end = memmem(p, len, "\r\n\r\n", 4);
    if (end == NULL) {
        if (len > MAX_HTTP_HEAD) {
            conn_fail(c, "response head too long");
            return -1;
        }
        return 0;
    }
    size_t head_len = (size_t)(end - p) + 4;
    if (len < 13 || memcmp(p, "HTTP/1.1 101 ", 13) != 0) {
        conn_fail(c, "no 101 Switching Protocols");
        return -1;
    }
    bool accepted = false, deflate = false;
    for (uint8_t *line = p; line < end;) {
        uint8_t *eol = memmem(line, (size_t)(end + 2 - line), "\r\n", 2);
        static const char name[] = "sec-websocket-accept:";
        if ((size_t)(eol - line) > sizeof(name) - 1 &&
            strncasecmp((char *)line, name, sizeof(name) - 1) == 0) {
            uint8_t *v = line + sizeof(name) - 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            uint8_t *ve = eol;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            accepted = (size_t)(ve - v) == strlen(c->accept) &&
                       memcmp(v, c->accept, (size_t)(ve - v)) == 0;
        }
        static const char ext[] = "sec-websocket-extensions:";
        if ((size_t)(eol - line) > sizeof(ext) - 1 &&
            strncasecmp((char *)line, ext, sizeof(ext) - 1) == 0)
            deflate = memmem(line, (size_t)(eol - line), "permessage-deflate", 18) != NULL;
        line = eol + 2;
    }
    if (!accepted) {
        conn_fail(c, "wrong or missing Sec-WebSocket-Accept");
        return -1;
    }
    if (deflate != opt.deflate) {
        conn_fail(c, opt.deflate ? "permessage-deflate was not accepted"
                                 : "permessage-deflate accepted but not offered");
        return -1;
    }
    if (opt.sio) {
        c->state = ST_SIO; /* still setting up: the open packet comes next */
        c->sio_step = SIO_WAIT_OPEN;
        return (ssize_t)head_len;
    }
    uint32_t gen = c->gen;
    on_open(c);
    if (c->gen != gen)
        return -1;
    return (ssize_t)head_len;
}

static void on_readable(conn_t *c)
{
    size_t have = c->in_len;
    if (have > 0)
        memcpy(rbuf, c->in, have);
    ssize_t n = io_recv(c, rbuf + have, rbuf_cap - have);
    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR)
            conn_fail(c, strerror(errno));
        return;
    }
    if (n == 0) {
        if (c->role == ROLE_HANDSHAKE && c->close_received) {
            handshake_done(c, true);
            return;
        }
        conn_fail(c, c->state == ST_UPGRADING ? "closed during the handshake"
                                              : "closed by the server");
        return;
    }
    c->in_len = 0;
    size_t total = have + (size_t)n;
    size_t used = 0;
    if (c->state == ST_UPGRADING) {
        ssize_t r = parse_upgrade(c, rbuf, total);
        if (r < 0)
            return;
        used = (size_t)r;
        if (r == 0) {
            /* Keep the partial head. */
            if (total > c->in_cap) {
                c->in_cap = total;
                c->in = xrealloc(c->in, c->in_cap);
            }
            memcpy(c->in, rbuf, total);
            c->in_len = total;
            return;
        }
    }
    ssize_t r = parse_frames(c, rbuf + used, total - used);
    if (r < 0)
        return;
    used += (size_t)r;
    size_t left = total - used;
    if (left > 0) {
        if (left > c->in_cap) {
            c->in_cap = left < 256 ? 256 : left;
            c->in = xrealloc(c->in, c->in_cap);
        }
        memcpy(c->in, rbuf + used, left);
        c->in_len = left;
    }
}

/* Advances the TLS handshake; sends the upgrade request once it is done. */
static void tls_step(conn_t *c)
{
    ERR_clear_error();
    int r = SSL_connect(c->ssl);
    if (r == 1) {
        if (tls_cipher[0] == '\0')
            snprintf(tls_cipher, sizeof(tls_cipher), "%s %s", SSL_get_version(c->ssl),
                     SSL_get_cipher_name(c->ssl));
        if (opt.openssl_records) {
            SSL_set_read_ahead(c->ssl, 1); /* a recv() per read, not two per record */
        } else if (!tls_take_over(c)) {
            conn_fail(c, "tls13.c cannot take this connection's records (--openssl-records can)");
            return;
        }
        send_upgrade(c);
        return;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        conn_update_events(c, e == SSL_ERROR_WANT_WRITE);
        return;
    }
    conn_fail(c, "TLS handshake failed");
}

static void on_writable(conn_t *c)
{
    if (c->state == ST_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
            conn_fail(c, strerror(err));
            return;
        }
        if (!opt.tls) {
            send_upgrade(c);
            return;
        }
        c->ssl = SSL_new(ssl_ctx);
        if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
            conn_fail(c, "SSL_new failed");
            return;
        }
        if (!opt.openssl_records) {
            c->secrets = calloc(1, sizeof(*c->secrets));
            if (c->secrets == NULL || SSL_set_ex_data(c->ssl, secrets_index, c) != 1) {
                conn_fail(c, "out of memory");
                return;
            }
        }
        c->state = ST_TLS;
        tls_step(c);
        return;
    }
    if (c->state == ST_TLS) {
        tls_step(c);
        return;
    }
    conn_flush(c);
}

/* ---- event loop ---- */

static bool handle_signals(void)
{
    struct signalfd_siginfo si;
    while (read(sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
        stop_requested = true;
    return stop_requested;
}

static void publish_send(uint64_t ticks);

/* Runs one epoll_wait round; timeout in ms. */
static void poll_once(int timeout_ms)
{
    static struct epoll_event events[MAX_EVENTS];
    int n = epoll_wait(epfd, events, MAX_EVENTS, timeout_ms);
    now_ns = mono_ns();
    for (int i = 0; i < n; i++) {
        void *ptr = events[i].data.ptr;
        if (ptr == &sigfd) {
            handle_signals();
            continue;
        }
        if (ptr == &timerfd) {
            uint64_t ticks;
            if (read(timerfd, &ticks, sizeof(ticks)) == (ssize_t)sizeof(ticks))
                publish_send(ticks);
            continue;
        }
        if (ptr == &opt) { /* stdin: a line or EOF ends idle mode */
            stop_requested = true;
            continue;
        }
        conn_t *c = ptr;
        uint32_t ev = events[i].events;
        uint32_t gen = c->gen;
        if (c->state == ST_FREE)
            continue;
        if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
            if (c->state == ST_CONNECTING || c->state == ST_TLS)
                on_writable(c); /* reports the connect error, or continues TLS */
            else
                do
                    on_readable(c);
                while (c->gen == gen && c->state != ST_FREE && c->tls_full);
        }
        if (c->gen == gen && c->state != ST_FREE && (ev & EPOLLOUT))
            on_writable(c);
    }
}

/* Connects opt.conns (+1 publisher) connections; false on timeout or interruption. */
static bool setup_connections(void)
{
    int total = opt.mode == MODE_PUBLISH ? opt.conns + 1 : opt.conns;
    int64_t deadline = mono_ns() + (int64_t)(opt.setup_timeout * 1e9);
    pump_connects();
    while (opened + failed < total && !stop_requested) {
        poll_once(50);
        pump_connects();
        if (now_ns > deadline) {
            fprintf(stderr, "eddy-bench: only %d of %d connections open after %.0f s\n", opened,
                    total, opt.setup_timeout);
            return false;
        }
    }
    return !stop_requested;
}

static void print_cpu_json(const window_t *w, double units)
{
    double secs = window_seconds(w);
    double server = w->server1 - w->server0;
    json_num("server_cpu_s", server, false);
    json_num("server_us_per_msg", units > 0 ? server * 1e6 / units : NAN, false);
    json_num("server_cpu_s_per_million", units > 0 ? server * 1e6 / units : NAN, false);
    json_num("server_busy", server / secs, false);
    json_num("client_busy", (w->self1 - w->self0) / secs, false);
    json_num("server_cpu_wait", (w->server_wait1 - w->server_wait0) / secs, false);
    json_num("client_cpu_wait", (w->self_wait1 - w->self_wait0) / secs, false);
}

/* ", load generator busy N%", and how long either side waited for a CPU when it did. */
static void print_busy(const window_t *w, double secs)
{
    printf(", load generator busy %.0f%%", 100 * (w->self1 - w->self0) / secs);
    double server_wait = (w->server_wait1 - w->server_wait0) / secs;
    double self_wait = (w->self_wait1 - w->self_wait0) / secs;
    if ((isfinite(server_wait) && server_wait >= 0.02) || self_wait >= 0.02)
        printf(" (waiting for a CPU: server %.0f%%, load generator %.0f%% of the time)",
               100 * server_wait, 100 * self_wait);
}

static int run_echo(void)
{
    if (!setup_connections() || opened == 0)
        return 1;
    int64_t warm_end = now_ns + (int64_t)(opt.warmup * 1e9);
    while (!stop_requested && now_ns < warm_end)
        poll_once(10);
    window_t w;
    window_start(&w);
    measuring = true;
    int64_t end = w.t0 + (int64_t)(opt.seconds * 1e9);
    while (!stop_requested && now_ns < end && lost < opened)
        poll_once(10);
    measuring = false;
    window_end(&w);
    double secs = window_seconds(&w);
    double server = w.server1 - w.server0;
    const char *records = !opt.tls ? "" : opt.openssl_records ? "openssl" : "tls13.c";
    printf("echo: %d conns x %d in flight x %zu B %s%s%s%s%s%s%s, %.2f s: %.0f msg/s", opened,
           opt.inflight, opt.size, opt.binary ? "binary" : "text",
           opt.deflate ? " permessage-deflate" : "", opt.tls ? " over " : "", tls_cipher,
           opt.tls ? " (records: " : "", records, opt.tls ? ")" : "", secs,
           (double)measured / secs);
    if (isfinite(server) && measured > 0)
        printf("; server CPU %.2f us/msg (%.2f s per million), server busy %.0f%%",
               server * 1e6 / (double)measured, server * 1e6 / (double)measured,
               100 * server / secs);
    print_busy(&w, secs);
    printf("; %" PRIu64 " errors, %d lost, %" PRIu64 " sampled echoes verified\n", errors, lost,
           verified);
    json_head();
    printf("\"conns\":%d,\"open\":%d,\"inflight\":%d,\"size\":%zu,\"binary\":%s,", opt.conns,
           opened, opt.inflight, opt.size, opt.binary ? "true" : "false");
    printf("\"deflate\":%s,\"compressed_replies\":%" PRIu64 ",\"tls\":\"%s\",",
           opt.deflate ? "true" : "false", compressed_replies, tls_cipher);
    printf("\"tls_records\":\"%s\",", records);
    json_num("seconds", secs, false);
    printf("\"messages\":%" PRIu64 ",", measured);
    json_num("msg_per_s", (double)measured / secs, false);
    print_cpu_json(&w, (double)measured);
    printf("\"errors\":%" PRIu64 ",\"lost\":%d,\"verified\":%" PRIu64 "}\n", errors, lost,
           verified);
    return errors > 0 || measured == 0 ? 1 : 0;
}

static int run_handshake(void)
{
    for (int i = 0; i < opt.conns; i++) {
        conns[i].id = (uint32_t)i;
        conns[i].role = ROLE_HANDSHAKE;
        conn_connect(&conns[i]);
    }
    int64_t start = mono_ns();
    int64_t warm_end = start + (int64_t)(opt.warmup * 1e9);
    window_t w = {0};
    int64_t end = INT64_MAX;
    int64_t next_sweep = start;
    while (!stop_requested) {
        poll_once(10);
        if (!measuring && end == INT64_MAX && now_ns >= warm_end) {
            window_start(&w);
            measuring = true;
            end = w.t0 + (int64_t)(opt.seconds * 1e9);
        }
        if (now_ns >= end)
            break;
        if (now_ns >= next_sweep) {
            /* Connections whose server did not close the TCP connection in time. */
            next_sweep = now_ns + 50000000;
            for (int i = 0; i < opt.conns; i++) {
                conn_t *c = &conns[i];
                if (c->state == ST_CLOSING && now_ns > c->deadline) {
                    close_timeouts++;
                    handshake_done(c, c->close_received);
                }
            }
        }
    }
    measuring = false;
    window_end(&w);
    stop_requested = true;
    double secs = window_seconds(&w);
    double server = w.server1 - w.server0;
    printf("handshake: %d concurrent%s, %.2f s: %.0f handshakes/s (connect, upgrade, close "
           "handshake, server closes first)",
           opt.conns, opt.deflate ? ", permessage-deflate" : "", secs, (double)measured / secs);
    if (isfinite(server) && measured > 0)
        printf("; server CPU %.2f us/handshake, server busy %.0f%%",
               server * 1e6 / (double)measured, 100 * server / secs);
    print_busy(&w, secs);
    printf("; %" PRIu64 " errors, %" PRIu64 " close timeouts\n", errors, close_timeouts);
    json_head();
    printf("\"concurrency\":%d,\"deflate\":%s,", opt.conns, opt.deflate ? "true" : "false");
    json_num("seconds", secs, false);
    printf("\"handshakes\":%" PRIu64 ",", measured);
    json_num("msg_per_s", (double)measured / secs, false);
    print_cpu_json(&w, (double)measured);
    printf("\"errors\":%" PRIu64 ",\"close_timeouts\":%" PRIu64 "}\n", errors, close_timeouts);
    return measured == 0 ? 1 : 0;
}

/* Sends the next publish message(s) if pacing allows: up to the window, or one per timer tick
 * (ticks) in fixed-rate mode. */
static void publish_send(uint64_t ticks)
{
    static uint8_t *msg;
    static size_t msg_len, ts_at; /* the whole message, and where the clock goes in it */
    if (publisher == NULL || publisher->state != ST_OPEN || stop_requested)
        return;
    if (msg == NULL && opt.sio) {
        /* 42["to-room","ROOM","<16 hex digits><filler>"]: the room gets room-message with the
         * string, SIZE bytes. */
        char head[300];
        int n = snprintf(head, sizeof(head), "42[\"to-room\",\"%s\",\"", opt.topic);
        msg_len = (size_t)n + opt.size + 2;
        msg = xrealloc(NULL, msg_len);
        memcpy(msg, head, (size_t)n);
        ts_at = (size_t)n;
        for (size_t i = 16; i < opt.size; i++)
            msg[ts_at + i] = (uint8_t)('a' + i % 26);
        memcpy(msg + ts_at + opt.size, "\"]", 2);
    } else if (msg == NULL) {
        msg_len = opt.size;
        msg = xrealloc(NULL, msg_len);
        for (size_t i = 8; i < opt.size; i++)
            msg[i] = (uint8_t)i;
    }
    long window = opt.rate > 0 ? PUB_RING - 1 : opt.inflight;
    uint64_t budget = opt.rate > 0 ? ticks : (uint64_t)window;
    while (budget-- > 0 && pub_sent < opt.messages && pub_sent - pub_completed < window) {
        uint64_t ts = (uint64_t)mono_ns();
        if (opt.sio) {
            hex_put(msg + ts_at, ts);
        } else {
            for (int i = 0; i < 8; i++)
                msg[i] = (uint8_t)(ts >> (8 * i));
        }
        if (pub_sent == opt.pub_warmup)
            pub_first_send = (int64_t)ts;
        size_t need = msg_len + 14;
        if (need > wbuf_cap) {
            wbuf_cap = need * 2;
            wbuf = xrealloc(wbuf, wbuf_cap);
        }
        pub_sent++;
        conn_send(publisher, wbuf,
                  ws_frame(wbuf, opt.sio ? 0x1 : 0x2, msg, msg_len, publisher->mask));
    }
}

static int run_publish(void)
{
    if (opt.size < (opt.sio ? 16 : 8))
        die("publish needs -s 8 or more (16 with --sio: the timestamp)%s", "");
    if (opt.pub_warmup < 0)
        opt.pub_warmup = opt.messages / 10 < 10 ? opt.messages / 10 : 10;
    if (opt.inflight >= PUB_RING)
        opt.inflight = PUB_RING - 1;
    if (!setup_connections() || publisher == NULL || opened < 2) {
        fprintf(stderr, "eddy-bench: publish needs the publisher and subscribers open\n");
        return 1;
    }
    /* Subscribers are subscribed when the server runs open; give it a moment. */
    int64_t settle_end = mono_ns() + 200000000;
    while (!stop_requested && now_ns < settle_end)
        poll_once(10);
    int subscribers = opened - 1;
    window_t w;
    double server_at_first = NAN;
    /* The steady window: from the first measured message's completion to the end of -t (or of
     * the run), deliveries counted at the subscribers as they arrive, the server's CPU over
     * the same interval. Unlike the per-message figures it does not depend on when the
     * messages in flight at either end complete. */
    window_t steady = {0};
    uint64_t steady_from = 0, steady_to = 0;
    long steady_pub_from = 0, steady_pub_to = 0; /* messages published in the steady window */
    bool steady_started = false, steady_ended = false;
    window_start(&w);
    int64_t end = w.t0 + (int64_t)(opt.seconds * 1e9);
    pub_progress = w.t0;
    if (opt.rate > 0) {
        timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        long period = (long)(1e9 / opt.rate);
        struct itimerspec its = {.it_interval = {period / 1000000000, period % 1000000000},
                                 .it_value = {0, 1000}};
        timerfd_settime(timerfd, 0, &its, NULL);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &timerfd};
        epoll_ctl(epfd, EPOLL_CTL_ADD, timerfd, &ev);
    } else {
        publish_send(0);
    }
    bool timed_out = false;
    while (!stop_requested && pub_completed < opt.messages) {
        poll_once(10);
        if (pub_completed >= opt.pub_warmup && !steady_started && pub_first_send != 0) {
            /* CPU is counted from the first measured message on. */
            window_start(&steady);
            steady_from = pub_deliveries;
            steady_pub_from = pub_sent;
            steady_started = true;
            server_at_first = steady.server0;
            if (opt.mark_steady) {
                puts("steady window: start");
                fflush(stdout);
            }
            w.self0 = steady.self0;
            w.server_wait0 = steady.server_wait0;
            w.self_wait0 = steady.self_wait0;
        }
        if (opt.rate <= 0)
            publish_send(0);
        if (now_ns >= end && pub_sent < opt.messages) {
            opt.messages = pub_sent; /* time is up: wait for what was sent, then stop */
            timed_out = true;
            if (steady_started) {
                window_end(&steady);
                steady_to = pub_deliveries;
                steady_pub_to = pub_sent;
                steady_ended = true;
                if (opt.mark_steady) {
                    puts("steady window: end");
                    fflush(stdout);
                }
            }
        }
        if (now_ns - pub_progress > (int64_t)(opt.stall * 1e9)) {
            fprintf(stderr,
                    "eddy-bench: no message completed for %.0f s; %ld sent, %ld delivered "
                    "to all\n",
                    opt.stall, pub_sent, pub_completed);
            errors++;
            break;
        }
        if (lost > 0) {
            fprintf(stderr, "eddy-bench: %d subscribers lost\n", lost);
            break;
        }
    }
    window_end(&w);
    if (steady_started && !steady_ended) {
        window_end(&steady);
        steady_to = pub_deliveries;
        steady_pub_to = pub_sent;
    }
    double steady_published = (double)(steady_pub_to - steady_pub_from);
    double redis_cpu = steady_started ? steady.redis1.cpu - steady.redis0.cpu : NAN;
    double redis_in = steady_started ? steady.redis1.in - steady.redis0.in : NAN;
    double redis_out = steady_started ? steady.redis1.out - steady.redis0.out : NAN;
    double redis_publishes =
        steady_started ? steady.redis1.publishes - steady.redis0.publishes : NAN;
    double steady_secs = steady_started ? window_seconds(&steady) : NAN;
    double steady_deliveries = (double)(steady_to - steady_from);
    double steady_server = steady.server1 - steady.server0;
    if (isfinite(server_at_first))
        w.server0 = server_at_first;
    long measured_msgs = pub_completed > opt.pub_warmup ? pub_completed - opt.pub_warmup : 0;
    double secs = (double)(pub_last_complete - pub_first_send) / 1e9;
    double deliveries = (double)measured_msgs * subscribers;
    w.t0 = pub_first_send;
    w.t1 = pub_last_complete;
    char pacing[64];
    if (opt.rate > 0)
        snprintf(pacing, sizeof(pacing), "fixed rate %.0f/s", opt.rate);
    else if (opt.inflight == 1)
        snprintf(pacing, sizeof(pacing), "lockstep");
    else
        snprintf(pacing, sizeof(pacing), "window %d", opt.inflight);
    double server = w.server1 - w.server0;
    printf("publish: %d subscribers, %ld messages x %zu B (%s%s), %.2f s: %.0f frames/s "
           "delivered, latency p50 %.0f us, p99 %.0f us, max %.0f us",
           subscribers, measured_msgs, opt.size, pacing, timed_out ? ", stopped by -t" : "", secs,
           deliveries / secs, hist_quantile(&latency, 0.5) / 1e3,
           hist_quantile(&latency, 0.99) / 1e3, (double)latency.max / 1e3);
    if (isfinite(server) && deliveries > 0)
        printf("; server CPU %.3f us/frame, server busy %.0f%%", server * 1e6 / deliveries,
               100 * server / secs);
    print_busy(&w, secs);
    if (steady_started && steady_deliveries > 0 && isfinite(steady_server))
        printf("; steady %.2f s: %.0f delivered/s, server CPU %.3f us per delivery", steady_secs,
               steady_deliveries / steady_secs, steady_server * 1e6 / steady_deliveries);
    if (steady_started && steady_published > 0 && isfinite(redis_cpu))
        printf("; Redis CPU %.2f us per message published", redis_cpu * 1e6 / steady_published);
    printf("; %" PRIu64 " errors\n", errors);
    json_head();
    printf("\"subscribers\":%d,\"messages\":%ld,\"size\":%zu,\"pacing\":\"%s\",", subscribers,
           measured_msgs, opt.size, pacing);
    json_num("seconds", secs, false);
    json_num("deliveries", deliveries, false);
    json_num("msg_per_s", deliveries / secs, false);
    json_num("frames_per_s", deliveries / secs, false);
    json_num("published_per_s", (double)measured_msgs / secs, false);
    json_num("p50_us", hist_quantile(&latency, 0.5) / 1e3, false);
    json_num("p99_us", hist_quantile(&latency, 0.99) / 1e3, false);
    json_num("max_us", (double)latency.max / 1e3, false);
    json_num("steady_seconds", steady_secs, false);
    json_num("steady_deliveries", steady_deliveries, false);
    json_num("steady_per_s", steady_deliveries / steady_secs, false);
    json_num("steady_server_us_per_delivery",
             steady_deliveries > 0 ? steady_server * 1e6 / steady_deliveries : NAN, false);
    json_num("steady_server_busy", steady_server / steady_secs, false);
    json_num("steady_published", steady_started ? steady_published : NAN, false);
    json_num("redis_cpu_s", redis_cpu, false);
    json_num("redis_us_per_published",
             steady_published > 0 ? redis_cpu * 1e6 / steady_published : NAN, false);
    json_num("redis_busy", redis_cpu / steady_secs, false);
    json_num("redis_in_bytes_per_published",
             steady_published > 0 ? redis_in / steady_published : NAN, false);
    json_num("redis_out_bytes_per_published",
             steady_published > 0 ? redis_out / steady_published : NAN, false);
    json_num("redis_publish_calls_per_published",
             steady_published > 0 ? redis_publishes / steady_published : NAN, false);
    print_cpu_json(&w, deliveries);
    printf("\"errors\":%" PRIu64 ",\"lost\":%d}\n", errors, lost);
    return errors > 0 || measured_msgs <= 0 ? 1 : 0;
}

static int run_idle(void)
{
    long long rss0 = server_rss_bytes();
    long long slab0 = slab_bytes();
    int64_t t0 = mono_ns();
    setup_connections();
    double setup = (double)(mono_ns() - t0) / 1e9;
    /* Let the server finish what the last handshakes started (and a GC run, if any). */
    int64_t settle_end = mono_ns() + (int64_t)(opt.settle * 1e9);
    while (!stop_requested && now_ns < settle_end)
        poll_once(50);
    long long rss1 = server_rss_bytes();
    long long slab1 = slab_bytes();
    int open_now = opened - lost;
    double per_conn =
        rss0 >= 0 && rss1 >= 0 && open_now > 0 ? (double)(rss1 - rss0) / open_now : NAN;
    double slab_per_conn =
        slab0 >= 0 && slab1 >= 0 && open_now > 0 ? (double)(slab1 - slab0) / open_now : NAN;
    printf("idle: %d of %d connections open (%d failed) in %.2f s", open_now, opt.conns, failed,
           setup);
    if (isfinite(per_conn))
        printf("; server RSS %.1f MB -> %.1f MB, %.0f bytes per connection", rss0 / 1e6, rss1 / 1e6,
               per_conn);
    if (isfinite(slab_per_conn))
        printf("; kernel slab (whole machine, both ends) %.0f bytes per connection", slab_per_conn);
    printf("\n");
    json_head();
    printf("\"conns\":%d,\"open\":%d,\"failed\":%d,\"sources\":%d,", opt.conns, open_now, failed,
           opt.sources);
    json_num("setup_s", setup, false);
    json_num("rss_before", (double)rss0, false);
    json_num("rss_after", (double)rss1, false);
    json_num("bytes_per_conn", per_conn, false);
    json_num("slab_bytes_per_conn", slab_per_conn, true);
    printf("}\nready\n");
    fflush(stdout);
    /* Hold the connections (answering pings) until SIGINT/SIGTERM, stdin or --hold. */
    int64_t hold_end = mono_ns() + (int64_t)(opt.hold * 1e9);
    while (!stop_requested && now_ns < hold_end)
        poll_once(100);
    return open_now == opt.conns ? 0 : 1;
}

/* ---- main ---- */

static void usage(void)
{
    fputs("usage: eddy-bench echo -c N -d D -s SIZE -t SECONDS [--binary]\n"
          "       eddy-bench handshake -c CONCURRENCY -t SECONDS\n"
          "       eddy-bench publish -c SUBSCRIBERS -n MESSAGES -s SIZE [--inflight W | --rate "
          "R] [-t SECONDS] [--publish-warmup N] [--stall SECONDS]\n"
          "       eddy-bench idle -c N [--sources K] [--hold SECONDS] [--stdin]\n"
          "common: --host ADDR --port N --path P --server-pid PID --sources K --warmup S\n"
          "        --connect-batch N --setup-timeout S --topic T --label TEXT --tls\n"
          "        --openssl-records (--tls: OpenSSL's record layer after the handshake)\n"
          "publish: --port2 N (every second subscriber there) --redis-port N (its CPU)\n"
          "         --mark-steady (a line on stdout when the steady window starts and ends)\n"
          "echo, handshake: --deflate (handshake: offered, and required in the 101)\n"
          "echo, publish, idle: --sio (Socket.IO test application, see bench/README.md)\n",
          stderr);
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        usage();
    opt.mode_name = argv[1];
    if (strcmp(argv[1], "echo") == 0)
        opt.mode = MODE_ECHO;
    else if (strcmp(argv[1], "handshake") == 0)
        opt.mode = MODE_HANDSHAKE;
    else if (strcmp(argv[1], "publish") == 0)
        opt.mode = MODE_PUBLISH;
    else if (strcmp(argv[1], "idle") == 0)
        opt.mode = MODE_IDLE;
    else
        usage();

    enum {
        O_HOST = 256,
        O_PORT,
        O_PATH,
        O_PID,
        O_SOURCES,
        O_BINARY,
        O_WARMUP,
        O_BATCH,
        O_RATE,
        O_INFLIGHT,
        O_TOPIC,
        O_LABEL,
        O_SETUP,
        O_HOLD,
        O_STDIN,
        O_SETTLE,
        O_PUBWARM,
        O_STALL,
        O_TLS,
        O_OPENSSL_RECORDS,
        O_DEFLATE,
        O_SIO,
        O_PORT2,
        O_REDIS_PORT,
        O_MARK_STEADY,
    };
    static const struct option longopts[] = {
        {"host", required_argument, NULL, O_HOST},
        {"port", required_argument, NULL, O_PORT},
        {"path", required_argument, NULL, O_PATH},
        {"server-pid", required_argument, NULL, O_PID},
        {"sources", required_argument, NULL, O_SOURCES},
        {"binary", no_argument, NULL, O_BINARY},
        {"warmup", required_argument, NULL, O_WARMUP},
        {"connect-batch", required_argument, NULL, O_BATCH},
        {"rate", required_argument, NULL, O_RATE},
        {"inflight", required_argument, NULL, O_INFLIGHT},
        {"topic", required_argument, NULL, O_TOPIC},
        {"label", required_argument, NULL, O_LABEL},
        {"setup-timeout", required_argument, NULL, O_SETUP},
        {"hold", required_argument, NULL, O_HOLD},
        {"stdin", no_argument, NULL, O_STDIN},
        {"settle", required_argument, NULL, O_SETTLE},
        {"publish-warmup", required_argument, NULL, O_PUBWARM},
        {"stall", required_argument, NULL, O_STALL},
        {"tls", no_argument, NULL, O_TLS},
        {"openssl-records", no_argument, NULL, O_OPENSSL_RECORDS},
        {"deflate", no_argument, NULL, O_DEFLATE},
        {"sio", no_argument, NULL, O_SIO},
        {"port2", required_argument, NULL, O_PORT2},
        {"redis-port", required_argument, NULL, O_REDIS_PORT},
        {"mark-steady", no_argument, NULL, O_MARK_STEADY},
        {0, 0, 0, 0},
    };
    bool use_stdin = false;
    int ch;
    optind = 2;
    while ((ch = getopt_long(argc, argv, "c:d:s:t:n:", longopts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            opt.conns = atoi(optarg);
            break;
        case 'd':
        case O_INFLIGHT:
            opt.inflight = atoi(optarg);
            break;
        case 's':
            opt.size = (size_t)strtoul(optarg, NULL, 10);
            break;
        case 't':
            opt.seconds = atof(optarg);
            break;
        case 'n':
            opt.messages = atol(optarg);
            break;
        case O_HOST:
            opt.host = optarg;
            break;
        case O_PORT:
            opt.port = atoi(optarg);
            break;
        case O_PATH:
            opt.path = optarg;
            break;
        case O_PID:
            if (atoi(optarg) <= 0) /* none, as before */
                break;
            if (opt.nserver_pids == MAX_SERVER_PIDS)
                die("--server-pid given more than %s times", "4");
            opt.server_pids[opt.nserver_pids++] = (pid_t)atoi(optarg);
            opt.server_pid = opt.server_pids[0];
            break;
        case O_PORT2:
            opt.port2 = atoi(optarg);
            break;
        case O_REDIS_PORT:
            opt.redis_port = atoi(optarg);
            break;
        case O_SOURCES:
            opt.sources = atoi(optarg);
            break;
        case O_BINARY:
            opt.binary = true;
            break;
        case O_WARMUP:
            opt.warmup = atof(optarg);
            break;
        case O_BATCH:
            opt.connect_batch = atoi(optarg);
            break;
        case O_RATE:
            opt.rate = atof(optarg);
            break;
        case O_TOPIC:
            opt.topic = optarg;
            break;
        case O_LABEL:
            opt.label = optarg;
            break;
        case O_SETUP:
            opt.setup_timeout = atof(optarg);
            break;
        case O_HOLD:
            opt.hold = atof(optarg);
            break;
        case O_STDIN:
            use_stdin = true;
            break;
        case O_SETTLE:
            opt.settle = atof(optarg);
            break;
        case O_STALL:
            opt.stall = atof(optarg);
            break;
        case O_PUBWARM:
            opt.pub_warmup = atol(optarg);
            break;
        case O_TLS:
            opt.tls = true;
            break;
        case O_OPENSSL_RECORDS:
            opt.openssl_records = true;
            break;
        case O_DEFLATE:
            opt.deflate = true;
            break;
        case O_SIO:
            opt.sio = true;
            break;
        case O_MARK_STEADY:
            opt.mark_steady = true;
            break;
        default:
            usage();
        }
    }
    if (optind != argc || opt.conns <= 0 || opt.inflight <= 0 || opt.size > MAX_SIZE ||
        opt.seconds <= 0 || opt.stall <= 0 || opt.connect_batch <= 0 || opt.sources < 0 ||
        opt.sources > 253 || opt.messages <= 0 ||
        (opt.deflate && opt.mode != MODE_ECHO && opt.mode != MODE_HANDSHAKE) ||
        (opt.sio && (opt.mode == MODE_HANDSHAKE || opt.deflate || opt.binary)) || opt.port2 < 0 ||
        opt.port2 > 65535 || opt.redis_port < 0 || opt.redis_port > 65535 ||
        ((opt.port2 > 0 || opt.redis_port > 0 || opt.mark_steady) && opt.mode != MODE_PUBLISH))
        usage();
    /* --sio puts the room name into JSON strings as it is. */
    if (opt.sio && (strlen(opt.topic) > 200 || strpbrk(opt.topic, "\"\\") != NULL))
        die("--topic must be at most 200 bytes without quotes or backslashes with --sio%s", "");
    if (opt.nserver_pids > 0 && isnan(server_cpu_seconds()))
        die("cannot read the server's /proc/PID/stat (--server-pid %s)", "PID");

    if (inet_pton(AF_INET, opt.host, &server_addr.sin_addr) != 1)
        die("--host must be an IPv4 address, got %s", opt.host);
    server_addr.sin_family = AF_INET;
    server_addr.sin_port = htons((uint16_t)opt.port);
    server_addr2 = server_addr;
    server_addr2.sin_port = htons((uint16_t)opt.port2);
    uint32_t first = ntohl(server_addr.sin_addr.s_addr) >> 24;
    if (first != 127)
        die("refusing to send load outside 127.0.0.0/8 (%s)", opt.host);

    rng_state ^= (uint64_t)mono_ns() ^ ((uint64_t)getpid() << 32);
    signal(SIGPIPE, SIG_IGN);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &sigfd};
    epoll_ctl(epfd, EPOLL_CTL_ADD, sigfd, &ev);
    if (use_stdin) {
        struct epoll_event in_ev = {.events = EPOLLIN, .data.ptr = &opt};
        epoll_ctl(epfd, EPOLL_CTL_ADD, STDIN_FILENO, &in_ev);
    }

    size_t total = (size_t)opt.conns + 1;
    conns = calloc(total, sizeof(*conns));
    rbuf_cap = 4 * (opt.size + 14) > 262144 ? 4 * (opt.size + 14) : 262144;
    rbuf = malloc(rbuf_cap);
    wbuf_cap = 65536;
    wbuf = malloc(wbuf_cap);
    if (conns == NULL || rbuf == NULL || wbuf == NULL)
        die("out of memory%s", "");
    for (size_t i = 0; i < total; i++)
        conns[i].fd = -1;
    if (opt.deflate) {
        inflated_cap = opt.size + 1; /* one byte more than expected: longer is an error */
        inflated = malloc(inflated_cap);
        if (inflated == NULL)
            die("out of memory%s", "");
    }
    if (opt.tls) {
        /* TLS 1.3 only; the server's certificate is a throw-away one and is not checked. */
        ssl_ctx = SSL_CTX_new(TLS_client_method());
        if (ssl_ctx == NULL || SSL_CTX_set_min_proto_version(ssl_ctx, TLS1_3_VERSION) != 1)
            die("cannot set up OpenSSL%s", "");
        SSL_CTX_set_verify(ssl_ctx, SSL_VERIFY_NONE, NULL);
        SSL_CTX_set_mode(ssl_ctx,
                         SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        if (!opt.openssl_records) {
            secrets_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
            if (secrets_index < 0)
                die("cannot set up OpenSSL%s", "");
            SSL_CTX_set_keylog_callback(ssl_ctx, tls_keylog);
            tls_in = xrealloc(NULL, rbuf_cap);
        }
    }

    int rc = 1;
    switch (opt.mode) {
    case MODE_ECHO:
        rc = run_echo();
        break;
    case MODE_HANDSHAKE:
        rc = run_handshake();
        break;
    case MODE_PUBLISH:
        rc = run_publish();
        break;
    case MODE_IDLE:
        rc = run_idle();
        break;
    }
    fflush(stdout);
    /* Results are out: from here a SIGINT/SIGTERM may end the process at once (it would
     * otherwise stay pending through exit, which LeakSanitizer's exit-time check does not
     * survive). */
    sigprocmask(SIG_UNBLOCK, &mask, NULL);

    for (size_t i = 0; i < total; i++) {
        if (conns[i].fd >= 0)
            close(conns[i].fd);
        free(conns[i].in);
        free(conns[i].out);
        free(conns[i].frame);
        if (conns[i].ssl != NULL)
            SSL_free(conns[i].ssl);
        free(conns[i].secrets);
        eddy__tls13_free(conns[i].rec);
        free(conns[i].cipher);
        if (conns[i].inflate != NULL) {
            inflateEnd(conns[i].inflate);
            free(conns[i].inflate);
        }
    }
    free(conns);
    free(inflated);
    SSL_CTX_free(ssl_ctx);
    free(sealed);
    free(tls_in);
    free(rbuf);
    free(wbuf);
    if (timerfd >= 0)
        close(timerfd);
    close(sigfd);
    close(epfd);
    return rc;
}

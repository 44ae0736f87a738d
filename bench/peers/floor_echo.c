/* SPDX-License-Identifier: MIT */
/*
 * floor_echo: the floor for bench/run. A single-threaded server that answers any request
 * carrying a Sec-WebSocket-Key with 101 and then echoes frames back by rewriting each masked
 * client frame into an unmasked one (same FIN bit and opcode). It validates nothing: no
 * UTF-8, no reserved bits, no control-frame rules, no limits beyond its buffer. A close
 * frame is answered with a close frame and the connection is closed.
 *
 * Two loops over the same codec:
 *   epoll (default)  level-triggered epoll_wait, then one recv and one send per readable
 *                    connection: the system calls every epoll server makes.
 *   --io-uring       no readiness step and no per-message system call: a multishot recv per
 *                    connection fills buffers the kernel picks from a registered ring, the
 *                    echoes go out as send requests, and one io_uring_enter per iteration
 *                    submits them all and waits for the next completions.
 * Usage: floor_echo [--io-uring] PORT [HOST].
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <liburing.h>

#include "../ws_frame.h"

#define READ_BUF  (256 * 1024)
#define MAX_FRAME (READ_BUF / 2)

typedef struct conn {
    bool open;    /* upgraded */
    bool closing; /* close frame sent: close once the output is out */
    bool epollout;
    uint8_t *in; /* leftover partial input */
    size_t in_len;
    uint8_t *out; /* output the socket did not take yet */
    size_t out_len;
    size_t out_cap;   /* io_uring: out is kept between messages */
    bool sending;     /* io_uring: a send of out's first bytes is in flight */
    uint8_t *retired; /* io_uring: out before it grew during that send, freed after it */
    uint32_t gen;     /* io_uring: completions of an earlier connection on this fd are stale */
} conn_t;

static conn_t *conns; /* indexed by descriptor */
static int max_fds;
static int epfd;
static uint8_t rbuf[READ_BUF];
static uint8_t wbuf[READ_BUF + 64];
static volatile sig_atomic_t stop;
static bool use_uring;

static void queue_output(int fd, const uint8_t *data, size_t len);
static void uring_cancel(int fd);

static void on_signal(int signo)
{
    (void)signo;
    stop = 1;
}

static void drop(int fd)
{
    if (use_uring)
        uring_cancel(fd); /* before close(): armed requests hold the socket open */
    uint32_t gen = conns[fd].gen;
    free(conns[fd].in);
    free(conns[fd].out);
    free(conns[fd].retired);
    memset(&conns[fd], 0, sizeof(conns[fd]));
    conns[fd].gen = gen + 1;
    close(fd);
}

static void set_out(int fd, bool want)
{
    if (conns[fd].epollout == want)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.fd = fd};
    epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev);
    conns[fd].epollout = want;
}

/* Writes what it can and keeps the rest; false if the connection was dropped. */
static bool send_all(int fd, const uint8_t *data, size_t len)
{
    conn_t *c = &conns[fd];
    if (c->out_len == 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN) {
            drop(fd);
            return false;
        }
        if (n > 0) {
            data += n;
            len -= (size_t)n;
        }
    }
    if (len > 0) {
        uint8_t *grown = realloc(c->out, c->out_len + len);
        if (grown == NULL) {
            drop(fd);
            return false;
        }
        memcpy(grown + c->out_len, data, len);
        c->out = grown;
        c->out_len += len;
        set_out(fd, true);
    } else if (c->closing) {
        drop(fd);
        return false;
    }
    return true;
}

/* Answers the upgrade request in p[0..len); returns bytes used, 0 if incomplete, or -1 after
 * dropping the connection. */
static ssize_t handshake(int fd, uint8_t *p, size_t len)
{
    uint8_t *end = memmem(p, len, "\r\n\r\n", 4);
    if (end == NULL) {
        if (len <= 16384)
            return 0;
        drop(fd);
        return -1;
    }
    *end = '\0';
    char *key = strcasestr((char *)p, "\r\nSec-WebSocket-Key:");
    if (key == NULL) {
        drop(fd);
        return -1;
    }
    key += 20;
    while (*key == ' ')
        key++;
    size_t key_len = strcspn(key, "\r ");
    if (key_len > 64) {
        drop(fd);
        return -1;
    }
    char concat[128];
    memcpy(concat, key, key_len);
    memcpy(concat + key_len, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", 36);
    unsigned char digest[SHA_DIGEST_LENGTH];
    SHA1((unsigned char *)concat, key_len + 36, digest);
    char accept[32];
    EVP_EncodeBlock((unsigned char *)accept, digest, SHA_DIGEST_LENGTH);
    char resp[256];
    int n = snprintf(resp, sizeof(resp),
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                     accept);
    conns[fd].open = true;
    if (use_uring) {
        queue_output(fd, (uint8_t *)resp, (size_t)n);
    } else if (!send_all(fd, (uint8_t *)resp, (size_t)n)) {
        return -1;
    }
    return (end - p) + 4;
}

/* Rewrites the whole masked frames in p[0..len) into wbuf, unmasked; returns bytes used. */
static size_t echo_frames(uint8_t *p, size_t len, size_t *out_len, bool *close_seen)
{
    size_t off = 0, w = 0;
    while (len - off >= 2 && !*close_seen) {
        uint8_t b0 = p[off], b1 = p[off + 1];
        uint64_t plen;
        size_t hlen = ws_frame_length(p + off, len - off, &plen);
        if (hlen == 0)
            break;
        size_t mlen = (b1 & 0x80) ? 4 : 0;
        if (plen > MAX_FRAME || len - off - hlen - mlen < plen)
            break;
        const uint8_t *mask = p + off + hlen;
        const uint8_t *payload = p + off + hlen + mlen;
        int opcode = b0 & 0x0f;
        if (opcode == 0x9)
            b0 = (uint8_t)((b0 & 0xf0) | 0xa); /* ping: answer pong */
        if (opcode == 0x8)
            *close_seen = true;
        if (opcode != 0xa) { /* pongs are dropped */
            wbuf[w] = b0;
            wbuf[w + 1] = (uint8_t)(b1 & 0x7f);
            memcpy(wbuf + w + 2, p + off + 2, hlen - 2);
            w += hlen;
            if (mlen) {
                for (uint64_t i = 0; i < plen; i++)
                    wbuf[w + i] = payload[i] ^ mask[i & 3];
            } else {
                memcpy(wbuf + w, payload, plen);
            }
            w += plen;
        }
        off += hlen + mlen + plen;
    }
    *out_len = w;
    return off;
}

/* Handshakes or echoes the connection's input p[0..total) (leftovers first) and keeps what
 * is not a whole frame yet. */
static void consume(int fd, uint8_t *p, size_t total)
{
    conn_t *c = &conns[fd];
    size_t used = 0;
    c->in_len = 0;
    if (!c->open) {
        ssize_t r = handshake(fd, p, total);
        if (r < 0)
            return;
        used = (size_t)r;
    }
    if (c->open && used < total) {
        size_t out_len;
        bool close_seen = false;
        used += echo_frames(p + used, total - used, &out_len, &close_seen);
        c->closing = close_seen;
        if (out_len > 0) {
            if (use_uring)
                queue_output(fd, wbuf, out_len);
            else if (!send_all(fd, wbuf, out_len))
                return;
        }
    }
    if (used < total) {
        uint8_t *grown = realloc(c->in, total - used);
        if (grown == NULL) {
            drop(fd);
            return;
        }
        c->in = grown;
        memmove(c->in, p + used, total - used);
        c->in_len = total - used;
    }
}

static void on_read(int fd)
{
    size_t have = conns[fd].in_len;
    if (have)
        memcpy(rbuf, conns[fd].in, have);
    ssize_t n = recv(fd, rbuf + have, sizeof(rbuf) - have, 0);
    if (n <= 0) {
        if (n < 0 && errno == EAGAIN)
            return;
        drop(fd);
        return;
    }
    consume(fd, rbuf, have + (size_t)n);
}

static void on_write(int fd)
{
    conn_t *c = &conns[fd];
    ssize_t n = send(fd, c->out, c->out_len, MSG_NOSIGNAL);
    if (n < 0) {
        if (errno != EAGAIN)
            drop(fd);
        return;
    }
    memmove(c->out, c->out + n, c->out_len - (size_t)n);
    c->out_len -= (size_t)n;
    if (c->out_len == 0) {
        if (c->closing) {
            drop(fd);
            return;
        }
        set_out(fd, false);
    }
}

/* Takes a new connection; false (and closed) if its descriptor is beyond the table. */
static bool accepted(int cfd)
{
    if (cfd >= max_fds) {
        close(cfd);
        return false;
    }
    int one = 1;
    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return true;
}

/* ---- io_uring loop ---- */

#define RING_ENTRIES 4096
#define BUF_COUNT    256 /* provided receive buffers, returned as soon as they are parsed */
#define BUF_SIZE     16384
#define TAG_ACCEPT   (UINT64_C(1) << 63)
#define TAG_SEND     (UINT64_C(1) << 62)

static struct io_uring ring;
static struct io_uring_buf_ring *buf_ring;
static uint8_t *bufs;

static struct io_uring_sqe *get_sqe(void)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    if (sqe == NULL) { /* submission queue full: hand it to the kernel now */
        io_uring_submit(&ring);
        sqe = io_uring_get_sqe(&ring);
    }
    return sqe;
}

/* user_data: tag, the connection's generation, its descriptor. */
static uint64_t tag_of(int fd, uint64_t tag)
{
    return tag | ((uint64_t)conns[fd].gen << 24) | (uint64_t)fd;
}

static void arm_accept(int lfd)
{
    struct io_uring_sqe *sqe = get_sqe();
    io_uring_prep_multishot_accept(sqe, lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    sqe->user_data = TAG_ACCEPT;
}

static void arm_recv(int fd)
{
    struct io_uring_sqe *sqe = get_sqe();
    io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = 0;
    sqe->user_data = tag_of(fd, 0);
}

/* One send in flight per connection; what is queued meanwhile goes with the next one. */
static void arm_send(int fd)
{
    conn_t *c = &conns[fd];
    if (c->sending || c->out_len == 0)
        return;
    struct io_uring_sqe *sqe = get_sqe();
    io_uring_prep_send(sqe, fd, c->out, c->out_len, MSG_NOSIGNAL);
    sqe->user_data = tag_of(fd, TAG_SEND);
    c->sending = true;
}

static void queue_output(int fd, const uint8_t *data, size_t len)
{
    conn_t *c = &conns[fd];
    if (c->out_len + len > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 256;
        while (cap < c->out_len + len)
            cap *= 2;
        if (c->sending && c->retired == NULL) {
            /* The kernel may still read the old buffer: keep it until the send is done. */
            uint8_t *grown = malloc(cap);
            if (grown == NULL) {
                drop(fd);
                return;
            }
            memcpy(grown, c->out, c->out_len);
            c->retired = c->out;
            c->out = grown;
        } else {
            uint8_t *grown = realloc(c->out, cap);
            if (grown == NULL) {
                drop(fd);
                return;
            }
            c->out = grown;
        }
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, data, len);
    c->out_len += len;
    arm_send(fd);
}

static void uring_cancel(int fd)
{
    struct io_uring_sqe *sqe = get_sqe();
    io_uring_prep_cancel_fd(sqe, fd, IORING_ASYNC_CANCEL_ALL);
    sqe->user_data = 0;
    io_uring_submit(&ring); /* now, before the descriptor is closed and reused */
}

static void on_send_done(int fd, int res)
{
    conn_t *c = &conns[fd];
    c->sending = false;
    free(c->retired);
    c->retired = NULL;
    if (res < 0) {
        drop(fd);
        return;
    }
    memmove(c->out, c->out + res, c->out_len - (size_t)res);
    c->out_len -= (size_t)res;
    if (c->out_len > 0)
        arm_send(fd);
    else if (c->closing)
        drop(fd);
}

static void on_recv_done(int fd, int res, unsigned flags)
{
    if (res == -ENOBUFS) { /* every buffer was in use: they are back by now */
        arm_recv(fd);
        return;
    }
    if (res <= 0) {
        drop(fd);
        return;
    }
    unsigned id = flags >> IORING_CQE_BUFFER_SHIFT;
    uint8_t *buf = bufs + (size_t)id * BUF_SIZE;
    conn_t *c = &conns[fd];
    uint32_t gen = c->gen;
    if (c->in_len == 0) {
        consume(fd, buf, (size_t)res);
    } else if (c->in_len + (size_t)res <= sizeof(rbuf)) {
        memcpy(rbuf, c->in, c->in_len);
        memcpy(rbuf + c->in_len, buf, (size_t)res);
        consume(fd, rbuf, c->in_len + (size_t)res);
    } else {
        drop(fd);
    }
    io_uring_buf_ring_add(buf_ring, buf, BUF_SIZE, (unsigned short)id,
                          io_uring_buf_ring_mask(BUF_COUNT), 0);
    io_uring_buf_ring_advance(buf_ring, 1);
    if (!(flags & IORING_CQE_F_MORE) && conns[fd].gen == gen)
        arm_recv(fd); /* the kernel ended the multishot request (rare): re-arm it */
}

static int run_uring(int lfd)
{
    struct io_uring_params params = {.flags =
                                         IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN};
    int rc = io_uring_queue_init_params(RING_ENTRIES, &ring, &params);
    if (rc < 0) {
        fprintf(stderr, "floor_echo: io_uring_queue_init: %s\n", strerror(-rc));
        return 1;
    }
    if (posix_memalign((void **)&buf_ring, 4096, BUF_COUNT * sizeof(struct io_uring_buf)) != 0 ||
        (bufs = malloc((size_t)BUF_COUNT * BUF_SIZE)) == NULL) {
        fprintf(stderr, "floor_echo: out of memory\n");
        return 1;
    }
    io_uring_buf_ring_init(buf_ring);
    struct io_uring_buf_reg reg = {
        .ring_addr = (uintptr_t)buf_ring, .ring_entries = BUF_COUNT, .bgid = 0};
    rc = io_uring_register_buf_ring(&ring, &reg, 0);
    if (rc < 0) {
        fprintf(stderr, "floor_echo: io_uring_register_buf_ring: %s\n", strerror(-rc));
        return 1;
    }
    for (int i = 0; i < BUF_COUNT; i++)
        io_uring_buf_ring_add(buf_ring, bufs + (size_t)i * BUF_SIZE, BUF_SIZE, (unsigned short)i,
                              io_uring_buf_ring_mask(BUF_COUNT), i);
    io_uring_buf_ring_advance(buf_ring, BUF_COUNT);
    arm_accept(lfd);
    while (!stop) {
        rc = io_uring_submit_and_wait(&ring, 1);
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
            fprintf(stderr, "floor_echo: io_uring_enter: %s\n", strerror(-rc));
            return 1;
        }
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&ring, head, cqe)
        {
            seen++;
            uint64_t tag = cqe->user_data;
            if (tag == 0)
                continue; /* a cancellation's own completion */
            if (tag == TAG_ACCEPT) {
                int cfd = cqe->res;
                if (!(cqe->flags & IORING_CQE_F_MORE))
                    arm_accept(lfd);
                if (cfd >= 0 && accepted(cfd))
                    arm_recv(cfd);
                continue;
            }
            int fd = (int)(tag & 0xffffff);
            if ((uint32_t)((tag >> 24) & 0xffffffffu) != (conns[fd].gen & 0xffffffffu) ||
                (tag & TAG_SEND ? !conns[fd].sending : false)) {
                /* An earlier connection's: just give its buffer back. */
                if (cqe->flags & IORING_CQE_F_BUFFER) {
                    unsigned id = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
                    io_uring_buf_ring_add(buf_ring, bufs + (size_t)id * BUF_SIZE, BUF_SIZE,
                                          (unsigned short)id, io_uring_buf_ring_mask(BUF_COUNT), 0);
                    io_uring_buf_ring_advance(buf_ring, 1);
                }
                continue;
            }
            if (tag & TAG_SEND)
                on_send_done(fd, cqe->res);
            else
                on_recv_done(fd, cqe->res, cqe->flags);
        }
        io_uring_cq_advance(&ring, seen);
    }
    return 0;
}

/* ---- epoll loop ---- */

static int run_epoll(int lfd)
{
    epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.fd = lfd};
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev);
    struct epoll_event events[1024];
    while (!stop) {
        int n = epoll_wait(epfd, events, 1024, -1);
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == lfd) {
                for (;;) {
                    int cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (cfd < 0)
                        break;
                    if (!accepted(cfd))
                        continue;
                    struct epoll_event ev = {.events = EPOLLIN, .data.fd = cfd};
                    epoll_ctl(epfd, EPOLL_CTL_ADD, cfd, &ev);
                }
                continue;
            }
            if (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                on_read(fd);
            if ((events[i].events & EPOLLOUT) && conns[fd].epollout)
                on_write(fd);
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--io-uring") == 0) {
        use_uring = true;
        argv++;
        argc--;
    }
    int port = argc > 1 ? atoi(argv[1]) : 9505;
    const char *host = argc > 2 ? argv[2] : "127.0.0.1";
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    max_fds = (int)rl.rlim_cur;
    conns = calloc((size_t)max_fds, sizeof(*conns));
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, host, &addr.sin_addr);
    if (conns == NULL || bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) != 0 ||
        listen(lfd, 511) != 0) {
        perror("floor_echo");
        return 1;
    }
    printf("floor_echo (%s) listening on %s:%d\n", use_uring ? "io_uring" : "epoll", host, port);
    fflush(stdout);
    return use_uring ? run_uring(lfd) : run_epoll(lfd);
}

/*
 * epoll_echo: the floor for bench/run. A single-threaded epoll server that answers any
 * request carrying a Sec-WebSocket-Key with 101 and then echoes frames back by rewriting
 * each masked client frame into an unmasked one (same FIN bit and opcode). It validates
 * nothing: no UTF-8, no reserved bits, no control-frame rules, no limits beyond its buffer.
 * A close frame is answered with a close frame and the connection is closed.
 * Usage: epoll_echo PORT [HOST].
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
} conn_t;

static conn_t *conns; /* indexed by descriptor */
static int max_fds;
static int epfd;
static uint8_t rbuf[READ_BUF];
static uint8_t wbuf[READ_BUF + 64];
static volatile sig_atomic_t stop;

static void on_signal(int signo)
{
    (void)signo;
    stop = 1;
}

static void drop(int fd)
{
    free(conns[fd].in);
    free(conns[fd].out);
    memset(&conns[fd], 0, sizeof(conns[fd]));
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
    if (!send_all(fd, (uint8_t *)resp, (size_t)n))
        return -1;
    return (end - p) + 4;
}

/* Rewrites the whole masked frames in p[0..len) into wbuf, unmasked; returns bytes used. */
static size_t echo_frames(int fd, uint8_t *p, size_t len, size_t *out_len, bool *close_seen)
{
    size_t off = 0, w = 0;
    while (len - off >= 2 && !*close_seen) {
        uint8_t b0 = p[off], b1 = p[off + 1];
        uint64_t plen = b1 & 0x7f;
        size_t hlen = 2;
        if (plen == 126) {
            if (len - off < 4)
                break;
            plen = ((uint64_t)p[off + 2] << 8) | p[off + 3];
            hlen = 4;
        } else if (plen == 127) {
            if (len - off < 10)
                break;
            plen = 0;
            for (int i = 0; i < 8; i++)
                plen = (plen << 8) | p[off + 2 + i];
            hlen = 10;
        }
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
    (void)fd;
    *out_len = w;
    return off;
}

static void on_read(int fd)
{
    conn_t *c = &conns[fd];
    size_t have = c->in_len;
    if (have)
        memcpy(rbuf, c->in, have);
    ssize_t n = recv(fd, rbuf + have, sizeof(rbuf) - have, 0);
    if (n <= 0) {
        if (n < 0 && errno == EAGAIN)
            return;
        drop(fd);
        return;
    }
    size_t total = have + (size_t)n, used = 0;
    c->in_len = 0;
    if (!c->open) {
        ssize_t r = handshake(fd, rbuf, total);
        if (r < 0)
            return;
        used = (size_t)r;
    }
    if (c->open && used < total) {
        size_t out_len;
        bool close_seen = false;
        used += echo_frames(fd, rbuf + used, total - used, &out_len, &close_seen);
        c->closing = close_seen;
        if (out_len > 0 && !send_all(fd, wbuf, out_len))
            return;
    }
    if (used < total) {
        uint8_t *grown = realloc(c->in, total - used);
        if (grown == NULL) {
            drop(fd);
            return;
        }
        c->in = grown;
        memcpy(c->in, rbuf + used, total - used);
        c->in_len = total - used;
    }
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

int main(int argc, char **argv)
{
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
        perror("epoll_echo");
        return 1;
    }
    epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.fd = lfd};
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev);
    printf("epoll_echo listening on %s:%d\n", host, port);
    fflush(stdout);

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
                    if (cfd >= max_fds) {
                        close(cfd);
                        continue;
                    }
                    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
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

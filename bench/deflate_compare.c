/* SPDX-License-Identifier: MIT */
/*
 * bench/deflate_compare: eddy's DEFLATE compressor (src/deflater.c) beside zlib's deflate
 * on the same messages, as permessage-deflate uses them (each message sync-flushed, the
 * 00 00 ff ff tail left off): compressed bytes and CPU time per message, single-threaded.
 *
 * Usage: build/bench/deflate_compare [--seconds S]   (default 0.5 per case and round)
 *
 * Inputs: "chat", 500 JSON chat messages (about 240 bytes, the words and shape of
 * bench/deflate_ratio.py's, from a fixed seed), and "alphabet", the 1 KiB message of
 * eddy-bench's echo (the alphabet from 'a', repeated). Settings, level 6 throughout:
 *   15/8 kept   a 15-bit window and memLevel 8, context kept (eddy's default)
 *   9/1 kept    a 9-bit window and memLevel 1, context kept (what uWebSockets' dedicated
 *               compressor compresses with; bench/README.md "echo-deflate")
 *   alone       each message alone: eddy with the window fitted to the message as the
 *               server does (eddy__deflate_fit_bits, memLevel bits - 6), zlib with 15/8
 *               and deflateReset() after each message, as uWebSockets' shared compressor
 * Every output of both is inflated once and compared with the input before timing. Three
 * rounds; the median of each is printed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include "deflater.h"

#define ROUNDS        3
#define CHAT_MESSAGES 500

static const char *const words[] = {"alpha",   "beta",   "gamma", "delta",   "user",
                                    "message", "room",   "chat",  "hello",   "world",
                                    "eddy",    "socket", "event", "payload", "timestamp"};

static uint64_t rng = 3;
static uint32_t next_rand(void)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng >> 33);
}

typedef struct input {
    const char *name;
    int count;
    char *msg[CHAT_MESSAGES];
    size_t len[CHAT_MESSAGES];
} input_t;

static void make_chat(input_t *in)
{
    in->name = "chat";
    in->count = CHAT_MESSAGES;
    for (int i = 0; i < CHAT_MESSAGES; i++) {
        char *b = malloc(1024);
        int n = snprintf(b, 1024,
                         "{\"event\": \"message\", \"room\": \"room-%u\", \"user\": \"%s%u\", "
                         "\"text\": \"",
                         next_rand() % 5 + 1, words[next_rand() % 15], next_rand() % 99 + 1);
        int nwords = 5 + (int)(next_rand() % 36);
        for (int w = 0; w < nwords; w++)
            n += snprintf(b + n, 1024 - (size_t)n, "%s%s", w ? " " : "", words[next_rand() % 15]);
        n += snprintf(b + n, 1024 - (size_t)n, "\", \"ts\": %u, \"id\": %u}",
                      1733500000 + next_rand() % 100000, next_rand() % 1000000000 + 1);
        in->msg[i] = b;
        in->len[i] = (size_t)n;
    }
}

static void make_alphabet(input_t *in)
{
    in->name = "alphabet";
    in->count = 1;
    in->msg[0] = malloc(1024);
    for (int i = 0; i < 1024; i++)
        in->msg[0][i] = (char)('a' + i % 26);
    in->len[0] = 1024;
}

typedef struct setting {
    const char *name;
    int bits, mem_level;
    bool kept;
} setting_t;

static const setting_t settings[] = {
    {"15/8 kept", 15, 8, true},
    {"9/1 kept", 9, 1, true},
    {"alone", 15, 8, false},
};

/* One compressor of either kind for a setting. */
typedef struct compressor {
    bool zlib;
    const setting_t *set;
    z_stream zs;
    eddy__deflater_t *fitted[16]; /* eddy, alone: by window bits */
    eddy__deflater_t *d;
    eddy__buf_t out;
} compressor_t;

static void die(const char *what)
{
    fprintf(stderr, "deflate_compare: %s\n", what);
    exit(1);
}

static void compressor_init(compressor_t *c, bool zlib, const setting_t *set)
{
    memset(c, 0, sizeof(*c));
    c->zlib = zlib;
    c->set = set;
    if (zlib) {
        if (deflateInit2(&c->zs, 6, Z_DEFLATED, -set->bits, set->mem_level, Z_DEFAULT_STRATEGY) !=
            Z_OK)
            die("deflateInit2 failed");
        if (eddy__buf_reserve(&c->out, 1 << 16) != 0)
            die("out of memory");
    } else if (set->kept) {
        c->d = eddy__deflater_new(set->bits, 6, set->mem_level);
        if (c->d == NULL)
            die("eddy__deflater_new failed");
    }
}

static void compressor_free(compressor_t *c)
{
    if (c->zlib)
        deflateEnd(&c->zs);
    eddy__deflater_free(c->d);
    for (int b = 0; b < 16; b++)
        eddy__deflater_free(c->fitted[b]);
    eddy__buf_free(&c->out);
}

/* Compresses one message into c->out; returns its compressed length. */
static size_t compress_one(compressor_t *c, const char *msg, size_t len)
{
    if (c->zlib) {
        c->zs.next_in = (Bytef *)msg;
        c->zs.avail_in = (uInt)len;
        c->zs.next_out = (Bytef *)c->out.data;
        c->zs.avail_out = (uInt)c->out.cap;
        if (deflate(&c->zs, Z_SYNC_FLUSH) != Z_OK || c->zs.avail_in != 0)
            die("deflate failed");
        c->out.len = c->out.cap - c->zs.avail_out - 4; /* the 00 00 ff ff tail */
        if (!c->set->kept)
            deflateReset(&c->zs);
        return c->out.len;
    }
    eddy__deflater_t *d = c->d;
    if (!c->set->kept) {
        int bits = eddy__deflate_fit_bits(len, c->set->bits);
        if (c->fitted[bits] == NULL)
            c->fitted[bits] = eddy__deflater_new(bits, 6, bits - 6 < 8 ? bits - 6 : 8);
        d = c->fitted[bits];
        if (d == NULL)
            die("eddy__deflater_new failed");
    }
    if (eddy__deflate(d, msg, len, &c->out) != 0)
        die("eddy__deflate failed");
    if (!c->set->kept)
        eddy__deflater_reset(d);
    return c->out.len;
}

/* Compresses every message once, inflating each back; returns the compressed bytes. */
static size_t verified_pass(bool zlib, const setting_t *set, const input_t *in, int repeat)
{
    compressor_t c;
    compressor_init(&c, zlib, set);
    z_stream inf = {0};
    if (inflateInit2(&inf, -15) != Z_OK)
        die("inflateInit2 failed");
    static char back[4096];
    static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};
    size_t total = 0;
    for (int r = 0; r < repeat; r++)
        for (int i = 0; i < in->count; i++) {
            size_t n = compress_one(&c, in->msg[i], in->len[i]);
            total += n;
            if (!set->kept)
                inflateReset(&inf);
            inf.next_out = (Bytef *)back;
            inf.avail_out = sizeof(back);
            for (int pass = 0; pass < 2; pass++) {
                inf.next_in = pass == 0 ? (Bytef *)c.out.data : (Bytef *)tail;
                inf.avail_in = pass == 0 ? (uInt)n : 4;
                int rc = inflate(&inf, Z_SYNC_FLUSH);
                if (rc != Z_OK && rc != Z_BUF_ERROR)
                    die("an output does not inflate");
            }
            if (sizeof(back) - inf.avail_out != in->len[i] ||
                memcmp(back, in->msg[i], in->len[i]) != 0)
                die("an output inflates to something else");
        }
    inflateEnd(&inf);
    compressor_free(&c);
    return total;
}

static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* CPU microseconds per message over at least `seconds`. */
static double timed_pass(bool zlib, const setting_t *set, const input_t *in, double seconds)
{
    compressor_t c;
    compressor_init(&c, zlib, set);
    long messages = 0;
    double start = cpu_now(), now;
    do {
        for (int i = 0; i < in->count; i++)
            compress_one(&c, in->msg[i], in->len[i]);
        messages += in->count;
        now = cpu_now();
    } while (now - start < seconds);
    compressor_free(&c);
    return (now - start) * 1e6 / (double)messages;
}

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    double seconds = 0.5;
    if (argc == 3 && strcmp(argv[1], "--seconds") == 0)
        seconds = atof(argv[2]);
    else if (argc != 1)
        die("usage: deflate_compare [--seconds S]");
    static input_t inputs[2];
    make_chat(&inputs[0]);
    make_alphabet(&inputs[1]);
    printf("| input | setting | eddy bytes/msg | zlib bytes/msg | eddy µs/msg | zlib µs/msg | "
           "eddy / zlib (CPU) |\n|---|---|---|---|---|---|---|\n");
    for (int k = 0; k < 2; k++) {
        const input_t *in = &inputs[k];
        /* The alphabet message repeats 500 times, as an echo sends it. */
        int repeat = in->count == 1 ? CHAT_MESSAGES : 1;
        for (size_t s = 0; s < sizeof(settings) / sizeof(settings[0]); s++) {
            const setting_t *set = &settings[s];
            double eb = (double)verified_pass(false, set, in, repeat) / (in->count * repeat);
            double zb = (double)verified_pass(true, set, in, repeat) / (in->count * repeat);
            double et[ROUNDS], zt[ROUNDS];
            for (int r = 0; r < ROUNDS; r++) { /* interleaved: drift hits both alike */
                et[r] = timed_pass(false, set, in, seconds);
                zt[r] = timed_pass(true, set, in, seconds);
            }
            qsort(et, ROUNDS, sizeof(double), compare_double);
            qsort(zt, ROUNDS, sizeof(double), compare_double);
            printf("| %s | %s | %.1f | %.1f | %.2f | %.2f | %.2f |\n", in->name, set->name, eb, zb,
                   et[ROUNDS / 2], zt[ROUNDS / 2], et[ROUNDS / 2] / zt[ROUNDS / 2]);
            fflush(stdout);
        }
    }
    return 0;
}

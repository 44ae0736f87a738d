/* SPDX-License-Identifier: MIT */
/*
 * eddy's DEFLATE compressor (src/deflater.c): messages round-trip through zlib's inflate
 * with the deflater's window, with context takeover and without, for every window, level
 * and several memory levels; the output bound, the empty message, Huffman code lengths
 * kept to 15 bits, compression against zlib's, and argument checks.
 */
#include <zlib.h>

#include "deflater.h"
#include "test.h"

#define MiB (1u << 20)

/* Under ThreadSanitizer, which finds no race in one thread and makes the search 15 times
 * slower, the longest loops take every other level. */
#ifdef __SANITIZE_THREAD__
#define LEVEL_STEP 2
#else
#define LEVEL_STEP 1
#endif

static uint8_t data[MiB];  /* the message being sent */
static uint8_t zeros[MiB]; /* stays zero */

/* ---- zlib as the receiver ---- */

/* Inflates packed plus the sync flush's 00 00 ff ff one output byte per call: zlib checks
 * a distance against what it held before the call (at most its window) plus what the call
 * wrote, so with one byte per call every distance is checked against the window exactly.
 * True if the output is exactly want and the stream stays open (no final block). */
static bool inflates_to(z_stream *zs, const uint8_t *packed, size_t plen, const uint8_t *want,
                        size_t wlen)
{
    static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};
    size_t got = 0;
    uint8_t byte;
    for (int pass = 0; pass < 2; pass++) {
        zs->next_in = (Bytef *)(pass == 0 ? packed : tail);
        zs->avail_in = pass == 0 ? (uInt)plen : sizeof(tail);
        for (;;) {
            zs->next_out = &byte;
            zs->avail_out = 1;
            int rc = inflate(zs, Z_SYNC_FLUSH);
            if (zs->avail_out == 0) {
                if (got == wlen || byte != want[got])
                    return false;
                got++;
            }
            if (rc == Z_BUF_ERROR) /* no progress: wants more input */
                break;
            if (rc != Z_OK) /* corrupt (zs->msg says why), or Z_STREAM_END */
                return false;
        }
    }
    return got == wlen && zs->avail_in == 0;
}

/* ---- a deflater and the zlib inflater that receives its messages ---- */

typedef struct session {
    eddy__deflater_t *d;
    z_stream zs;
    bool zs_open;
    bool broken; /* a message failed: the rest of the stream means nothing */
    bool takeover;
    int bits, level, mem;
    unsigned msgs;
    eddy__buf_t out;
} session_t;

static bool session_open(session_t *s, int bits, int level, int mem, bool takeover)
{
    memset(s, 0, sizeof(*s));
    s->bits = bits;
    s->level = level;
    s->mem = mem;
    s->takeover = takeover;
    s->d = eddy__deflater_new(bits, level, mem);
    CHECK(s->d != NULL);
    return s->d != NULL; /* NULL: out of memory (tests/unit/oom_sweep.sh) */
}

static void session_close(session_t *s)
{
    eddy__deflater_free(s->d);
    if (s->zs_open)
        inflateEnd(&s->zs);
    eddy__buf_free(&s->out);
    s->d = NULL;
    s->zs_open = false;
}

/* Compresses msg and checks that the inflater gives it back, the output within the bound.
 * Without takeover the deflater is reset and a fresh inflater, with an empty window, takes
 * each message: a reference to an earlier message is "too far back" for it. Returns the
 * compressed length, SIZE_MAX on failure. */
static size_t session_send(session_t *s, const void *msg, size_t len)
{
    if (s->broken)
        return SIZE_MAX;
    if (!s->takeover) {
        eddy__deflater_reset(s->d);
        if (s->zs_open)
            inflateEnd(&s->zs);
        s->zs_open = false;
    }
    if (!s->zs_open) {
        memset(&s->zs, 0, sizeof(s->zs));
        s->zs_open = inflateInit2(&s->zs, -s->bits) == Z_OK;
        CHECK(s->zs_open);
        if (!s->zs_open) {
            s->broken = true;
            return SIZE_MAX;
        }
    }
    s->msgs++;
    int rc = eddy__deflate(s->d, msg, len, &s->out);
    CHECK_EQ_INT(rc, 0);
    if (rc != 0) { /* out of memory */
        s->broken = true;
        return SIZE_MAX;
    }
    CHECK(s->out.len >= 1);
    CHECK(s->out.len <= eddy__deflate_bound(len));
    bool ok = inflates_to(&s->zs, (const uint8_t *)s->out.data, s->out.len, msg, len);
    CHECK(ok);
    if (!ok || s->out.len > eddy__deflate_bound(len)) {
        fprintf(stderr,
                "  window %d level %d mem_level %d takeover %d: message %u (%zu bytes, %zu "
                "compressed): %s\n",
                s->bits, s->level, s->mem, s->takeover, s->msgs, len, s->out.len,
                s->zs.msg ? s->zs.msg : "wrong output");
        s->broken = true;
        return SIZE_MAX;
    }
    return s->out.len;
}

/* ---- data ---- */

enum { RANDOM, ALPHABET, TEXT, RUNS, PERIODIC, JSON, KINDS };

static char vocab[256][12];

static void make_vocab(void)
{
    for (int w = 0; w < 256; w++) {
        int n = 2 + (int)(test_rand() % 9);
        for (int i = 0; i < n; i++)
            vocab[w][i] = (char)('a' + test_rand() % 26);
        vocab[w][n] = '\0';
    }
}

/* Words, with Zipf-like frequencies (the low ones are common). */
static const char *word(void)
{
    return vocab[(test_rand() % 256) * (test_rand() % 256) / 256];
}

/* One chat message as JSON, as a chat server sends them; returns its length. */
static size_t chat_message(char *p, size_t cap, unsigned id)
{
    static const char *const users[] = {"alice", "bob", "carol", "dave", "erin", "frank"};
    static const char *const rooms[] = {"general", "random", "dev", "support"};
    char text[256];
    size_t t = 0;
    for (int words = 1 + (int)(test_rand() % 20); words > 0 && t < 200; words--)
        t += (size_t)snprintf(text + t, sizeof(text) - t, "%s%s", t ? " " : "", word());
    int n = snprintf(p, cap,
                     "{\"type\":\"message\",\"room\":\"%s\",\"user\":\"%s\",\"id\":%u,"
                     "\"ts\":%llu,\"text\":\"%s\"}",
                     rooms[test_rand() % 4], users[test_rand() % 6], id,
                     1733400000000ull + id * 1375 + test_rand() % 1000, text);
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

/* Fills p with len bytes of a kind. */
static void fill(int kind, uint8_t *p, size_t len)
{
    size_t i = 0;
    switch (kind) {
    case RANDOM:
        for (; i < len; i += 8) {
            uint64_t r = test_rand();
            memcpy(p + i, &r, len - i < 8 ? len - i : 8);
        }
        break;
    case ALPHABET:
        for (; i < len; i++)
            p[i] = (uint8_t) "acgt"[test_rand() % 4];
        break;
    case TEXT:
        /* Words (repeats at short distances), now and then a copy of an earlier stretch
         * from anywhere before (long distances, some beyond the window). */
        while (i < len) {
            if (i > 1000 && test_rand() % 40 == 0) {
                size_t n = 16 + test_rand() % 300, from = test_rand() % (i - 300);
                for (; n > 0 && i < len; n--)
                    p[i++] = p[from++];
                continue;
            }
            const char *w = word();
            for (; *w && i < len; w++)
                p[i++] = (uint8_t)*w;
            if (i < len)
                p[i++] = (uint8_t)(test_rand() % 10 == 0 ? '\n' : ' ');
        }
        break;
    case RUNS:
        while (i < len) {
            uint8_t b = (uint8_t)test_rand();
            for (size_t n = 1 + test_rand() % 3000; n > 0 && i < len; n--)
                p[i++] = b;
        }
        break;
    case PERIODIC:
        for (; i < len; i++)
            p[i] = (uint8_t)('a' + i % 26);
        break;
    default: {
        char msg[512];
        for (unsigned id = 0; i < len; id++) {
            size_t n = chat_message(msg, sizeof(msg), id);
            for (size_t j = 0; j < n && i < len; j++)
                p[i++] = (uint8_t)msg[j];
        }
    }
    }
}

/* ---- tests ---- */

static void test_arguments(void)
{
    static const int bad[][3] = {{8, 6, 8}, {16, 6, 8}, {15, 0, 8}, {15, 10, 8},
                                 {9, 6, 0}, {9, 6, 10}, {-1, 6, 8}, {15, 6, -1}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK(eddy__deflater_new(bad[i][0], bad[i][1], bad[i][2]) == NULL);
    /* The corners of the range are valid. */
    static const int good[][3] = {{9, 1, 1}, {15, 9, 9}, {9, 9, 9}, {15, 1, 1}};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        eddy__deflater_t *d = eddy__deflater_new(good[i][0], good[i][1], good[i][2]);
        CHECK(d != NULL);
        eddy__deflater_free(d);
    }
}

static void test_empty(void)
{
    /* An empty message is the single byte of an empty stored block's header (RFC 7692
     * 7.2.3.6), first, after a message, and after a reset. */
    for (int bits = 9; bits <= 15; bits++) {
        session_t s;
        if (!session_open(&s, bits, 6, 8, true))
            return;
        for (int i = 0; i < 3; i++) {
            if (i == 1)
                session_send(&s, "hello hello hello", 17);
            if (i == 2)
                eddy__deflater_reset(s.d);
            CHECK_EQ_INT(session_send(&s, "", 0), 1);
            CHECK_EQ_INT(s.out.len == 1 ? (uint8_t)s.out.data[0] : 0xff, 0x00);
        }
        session_close(&s);
    }
}

/* Every window and level, with and without takeover, the memory level turning through
 * 1-9: messages of the lengths around the internal limits, of every kind in turn. */
static void test_matrix(void)
{
    unsigned config = 0;
    for (int bits = 9; bits <= 15; bits++) {
        size_t w = (size_t)1 << bits;
        const size_t lens[] = {0,         1,    2,     3,         4,     5,         257,
                               258,       259,  w - 1, w,         w + 1, 2 * w - 1, 2 * w,
                               2 * w + 1, 1000, 100,   3 * w / 2, 17,    w / 3};
        for (int level = 1; level <= 9; level += LEVEL_STEP) {
            for (int takeover = 0; takeover < 2; takeover++) {
                session_t s;
                if (!session_open(&s, bits, level, 1 + (bits * 4 + level * 2 + takeover) % 9,
                                  takeover))
                    return;
                config++;
                for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
                    fill((int)((i + config) % KINDS), data, lens[i]);
                    session_send(&s, data, lens[i]);
                }
                session_close(&s);
            }
        }
    }
}

/* Messages over 64 KiB (70,000 crosses a stored block's limit) and of a few hundred KB,
 * each after a first message that leaves the deflater's buffer (two windows, at least
 * 2 KiB) 1-3 bytes short of full, so that the big one starts with a piece that short. */
static void test_big(void)
{
    static const size_t lens[] = {70000, 65536, 250001};
    for (int bits = 9; bits <= 15; bits++) {
        size_t size = bits == 9 ? 2048 : (size_t)2 << bits;
        for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
            for (int takeover = 0; takeover < 2; takeover++) {
                session_t s;
                int level = 1 + (bits * 2 + (int)i + takeover) % 9;
                if (!session_open(&s, bits, level, 8, takeover))
                    return;
                fill(TEXT, data, size - 1 - i);
                session_send(&s, data, size - 1 - i);
                fill((int)(i + (size_t)bits) % KINDS, data, lens[i]);
                session_send(&s, data, lens[i]);
                session_close(&s);
            }
        }
    }
}

/* Thousands of small messages: the buffer slides again and again (every 1.5 KiB with the
 * 9-bit window), and the 16-bit positions in the hash chains wrap many times. */
static void test_many_small(void)
{
    static const int configs[][3] = {{9, 1, 1}, {9, 4, 8}, {9, 9, 9}, {11, 2, 3}, {15, 6, 8}};
    for (size_t c = 0; c < sizeof(configs) / sizeof(configs[0]); c++) {
        for (int takeover = 0; takeover < 2; takeover++) {
            session_t s;
            if (!session_open(&s, configs[c][0], configs[c][1], configs[c][2], takeover))
                return;
            for (unsigned n = 0; n < 2500 && !s.broken; n++) {
                size_t len;
                if (n % 3 != 0) {
                    len = chat_message((char *)data, 512, n);
                } else {
                    len = test_rand() % 400;
                    fill((int)(test_rand() % KINDS), data, len);
                }
                session_send(&s, data, len);
            }
            session_close(&s);
        }
    }
}

/* Incompressible data in stored blocks: the output stays within the bound, with the 9-bit
 * window (the most blocks per byte) at every level, message after message (pieces start
 * anywhere in the buffer). */
static void test_bound(void)
{
    for (int level = 1; level <= 9; level += LEVEL_STEP) {
        for (int takeover = 0; takeover < 2; takeover++) {
            session_t s;
            if (!session_open(&s, 9, level, 1 + level % 9, takeover))
                return;
            for (int n = 0; n < 46 && !s.broken; n++) {
                size_t len = (size_t)(test_rand() % (n < 40 ? 3000 : 120000));
                fill(RANDOM, data, len);
                session_send(&s, data, len);
            }
            session_close(&s);
        }
    }
}

/* Symbol counts that make a Huffman code of 16 bits, one more than DEFLATE allows: the
 * lengths must be limited to 15. A tree is a chain, as deep as its leaves are many, when
 * each weight exceeds the sum of all but the one just before it: 1 (end of block), 1, 1,
 * 3, 4, 7, 11, ..., 843 and 1364 are 17 leaves, 16 levels, in a block of 3,570 symbols
 * (a block holds up to 4,096; Fibonacci counts would need ties to go the right way). The
 * 1364 are matches of 4 bytes, one after each group of 1 or 2 literals (so that literals
 * never repeat 4 bytes): copies from an earlier message whose bytes (none of the 15
 * literal values) never repeat 2 bytes, each from its own place, so that every match is
 * exactly 4 bytes and no other match exists. Windows of 14 and 15 bits reach every copy;
 * with 12 and 13, the message only round-trips. */
static void test_skewed(void)
{
    static const unsigned weights[17] = {1,  1,  1,   3,   4,   7,   11,  18,  29,
                                         47, 76, 123, 199, 322, 521, 843, 1364};
    static uint8_t src[2048], lits[2205], group[1364];
    static bool pair_used[256][256], is_lit[256], offset_used[2048];
    size_t nlits = 0;
    for (int s = 1; s < 16; s++) { /* weights[0] is the end of block, [16] the matches */
        uint8_t v = (uint8_t)(0x21 + s * 13);
        is_lit[v] = true;
        for (unsigned k = 0; k < weights[s]; k++)
            lits[nlits++] = v;
    }
    for (size_t i = nlits - 1; i > 0; i--) {
        size_t j = (size_t)(test_rand() % (i + 1));
        uint8_t t = lits[i];
        lits[i] = lits[j];
        lits[j] = t;
    }
    /* 2205 literals in 1364 groups: 841 of 2, 523 of 1, in random order. */
    for (size_t g = 0; g < 1364; g++)
        group[g] = g < nlits - 1364 ? 2 : 1;
    for (size_t g = 1363; g > 0; g--) {
        size_t j = (size_t)(test_rand() % (g + 1));
        uint8_t t = group[g];
        group[g] = group[j];
        group[j] = t;
    }
    for (size_t i = 0; i < sizeof(src); i++) {
        uint8_t b;
        do
            b = (uint8_t)test_rand();
        while (is_lit[b] || (i > 0 && pair_used[src[i - 1]][b]));
        if (i > 0)
            pair_used[src[i - 1]][b] = true;
        src[i] = b;
    }
    size_t len = 0, li = 0;
    for (size_t g = 0; g < 1364; g++) {
        for (int k = 0; k < group[g]; k++)
            data[len++] = lits[li++];
        size_t o;
        do
            o = (size_t)(test_rand() % (sizeof(src) - 4));
        while (offset_used[o]);
        offset_used[o] = true;
        memcpy(data + len, src + o, 4);
        len += 4;
    }
    for (int bits = 12; bits <= 15; bits++) {
        for (int level = 1; level <= 9; level++) {
            session_t s;
            if (!session_open(&s, bits, level, 8 + level % 2, true))
                return;
            session_send(&s, src, sizeof(src));
            session_send(&s, data, len);
            session_close(&s);
        }
    }
}

/* Compresses the chat messages with zlib (level 6, 15 bits, memLevel 8, a sync flush after
 * each, its 00 00 ff ff left off); returns the total length, 0 on failure. */
static size_t zlib_total(const uint8_t *msgs, const size_t *lens, int n)
{
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    if (deflateInit2(&zs, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return 0;
    static uint8_t out[4096];
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        zs.next_in = (Bytef *)msgs;
        zs.avail_in = (uInt)lens[i];
        zs.next_out = out;
        zs.avail_out = sizeof(out);
        if (deflate(&zs, Z_SYNC_FLUSH) != Z_OK || zs.avail_out == 0 || zs.avail_in != 0) {
            deflateEnd(&zs);
            return 0;
        }
        total += sizeof(out) - zs.avail_out - 4;
        msgs += lens[i];
    }
    deflateEnd(&zs);
    return total;
}

static void test_ratios(void)
{
    /* 500 chat messages with takeover: within 3% of zlib's output. */
    static size_t lens[500];
    size_t raw = 0;
    for (int i = 0; i < 500; i++) {
        lens[i] = chat_message((char *)data + raw, 512, (unsigned)i);
        raw += lens[i];
    }
    size_t theirs = zlib_total(data, lens, 500), ours = 0;
    CHECK(theirs > 0);
    session_t s;
    if (!session_open(&s, 15, 6, 8, true))
        return;
    const uint8_t *p = data;
    for (int i = 0; i < 500 && !s.broken; i++) {
        ours += session_send(&s, p, lens[i]);
        p += lens[i];
    }
    CHECK(!s.broken);
    session_close(&s);
    CHECK(s.broken || ours * 100 <= theirs * 103);
    if (!s.broken && ours * 100 > theirs * 103)
        fprintf(stderr, "  chat: %zu bytes -> %zu, zlib %zu\n", raw, ours, theirs);

    /* 1 KiB of the alphabet over and over with takeover: from the second message on, a
     * couple of matches. Every window holds the period (26), and 10 bits the message. */
    fill(PERIODIC, data, 1024);
    for (int bits = 9; bits <= 15; bits++) {
        for (int level = 1; level <= 9; level++) {
            if (!session_open(&s, bits, level, 8, true))
                return;
            CHECK(session_send(&s, data, 1024) < 48);
            for (int i = 0; i < 5; i++)
                CHECK(session_send(&s, data, 1024) < 20);
            session_close(&s);
        }
    }

    /* 1 MiB of zeros: runs of 258-byte matches. The buffer holds two windows (at least
     * 2 KiB), so small windows cut the input into many pieces; a block that compresses
     * goes on across them (about 1.6 KB at 9 bits; one block per piece made 7.9 KB). */
    for (int level = 1; level <= 9; level++) {
        for (int bits = level % 4 == 1 ? 9 : 15; bits <= 15; bits += 6) {
            if (!session_open(&s, bits, level, 8, level % 2))
                return;
            CHECK(session_send(&s, zeros, MiB) < 2048u);
            session_close(&s);
        }
    }
}

/* After a reset the next message compresses as the first of a new deflater would. */
static void test_reset(void)
{
    for (int bits = 9; bits <= 15; bits += 3) {
        for (int level = 1; level <= 9; level += 2) {
            session_t fresh, used;
            if (!session_open(&fresh, bits, level, 8, false))
                return;
            if (!session_open(&used, bits, level, 8, false)) {
                session_close(&fresh);
                return;
            }
            for (int n = 0; n < 40; n++) {
                size_t len = 1 + test_rand() % 1000;
                fill(n % 2 ? JSON : TEXT, data, len);
                /* used has seen the same text before, fresh nothing. */
                session_send(&used, data, len);
                size_t a = session_send(&used, data, len);
                size_t b = session_send(&fresh, data, len);
                CHECK(a != SIZE_MAX && a == b);
                if (a == b && a != SIZE_MAX)
                    CHECK_MEM(used.out.data, a, fresh.out.data, b);
                eddy__deflater_free(fresh.d); /* a new one for the next message */
                fresh.d = eddy__deflater_new(bits, level, 8);
                CHECK(fresh.d != NULL);
                if (fresh.d == NULL)
                    break;
            }
            session_close(&fresh);
            session_close(&used);
        }
    }
}

int main(void)
{
    make_vocab();
    test_arguments();
    test_empty();
    test_matrix();
    test_big();
    test_many_small();
    test_bound();
    test_skewed();
    test_ratios();
    test_reset();
    return test_report("test_deflater");
}

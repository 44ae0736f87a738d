/* SPDX-License-Identifier: MIT */
/* permessage-deflate: negotiation (RFC 7692 section 7) and the zlib stream wrappers. */
#include <limits.h>
#include <stdio.h>
#include <sys/mman.h>
#include <zlib.h>

#include "deflate.h"
#include "deflater.h"
#include "test.h"

static const eddy__pmd_config_t defaults = {.server_window_bits = 15, .client_window_bits = 15};

/* Negotiates value with cfg; returns the response header value or "" when declined. */
static const char *negotiate(const char *value, const eddy__pmd_config_t *cfg)
{
    static char out[200];
    eddy__pmd_t pmd;
    if (!eddy__pmd_negotiate(value, strlen(value), cfg, &pmd))
        return "";
    CHECK(eddy__pmd_response(&pmd, out, sizeof(out)) > 0);
    return out;
}

static void test_negotiation(void)
{
    CHECK_STR(negotiate("permessage-deflate", &defaults), "permessage-deflate");
    /* Browsers and python websockets offer client_max_window_bits without a value. */
    CHECK_STR(negotiate("permessage-deflate; client_max_window_bits", &defaults),
              "permessage-deflate");
    CHECK_STR(negotiate("permessage-deflate; server_no_context_takeover", &defaults),
              "permessage-deflate; server_no_context_takeover");
    CHECK_STR(negotiate("permessage-deflate; client_no_context_takeover", &defaults),
              "permessage-deflate; client_no_context_takeover");
    CHECK_STR(negotiate("permessage-deflate; server_max_window_bits=10", &defaults),
              "permessage-deflate; server_max_window_bits=10");
    CHECK_STR(negotiate("permessage-deflate; server_max_window_bits=\"12\"", &defaults),
              "permessage-deflate; server_max_window_bits=12");
    CHECK_STR(negotiate("permessage-deflate; client_max_window_bits=9", &defaults),
              "permessage-deflate; client_max_window_bits=9");
    /* Case and whitespace do not matter. */
    CHECK_STR(negotiate("  Permessage-Deflate ;Server_No_Context_Takeover  ", &defaults),
              "permessage-deflate; server_no_context_takeover");

    /* Declined: malformed, unknown or duplicated parameters, values out of range. */
    CHECK_STR(negotiate("permessage-deflate; foo", &defaults), "");
    CHECK_STR(negotiate("permessage-deflate; server_no_context_takeover=1", &defaults), "");
    CHECK_STR(negotiate("permessage-deflate; server_no_context_takeover; "
                        "server_no_context_takeover",
                        &defaults),
              "");
    CHECK_STR(negotiate("permessage-deflate; server_max_window_bits", &defaults), "");
    CHECK_STR(negotiate("permessage-deflate; server_max_window_bits=16", &defaults), "");
    CHECK_STR(negotiate("permessage-deflate; server_max_window_bits=08", &defaults), "");
    CHECK_STR(negotiate("permessage-deflate; client_max_window_bits=7", &defaults), "");
    CHECK_STR(negotiate("permessage-deflate; client_max_window_bits=", &defaults), "");
    CHECK_STR(negotiate("permessage-deflate; server_max_window_bits=\"9", &defaults), "");
    CHECK_STR(negotiate("permessage-deflate garbage", &defaults), "");
    CHECK_STR(negotiate("x-webkit-deflate-frame", &defaults), "");
    CHECK_STR(negotiate("", &defaults), "");
    CHECK_STR(negotiate(";;;,,,=", &defaults), "");
    /* zlib cannot honour a 256-byte server window: that offer is declined... */
    CHECK_STR(negotiate("permessage-deflate; server_max_window_bits=8", &defaults), "");
    /* ...and the next acceptable one is taken, as are offers after other extensions. */
    CHECK_STR(negotiate("permessage-deflate; server_max_window_bits=8, permessage-deflate; "
                        "client_no_context_takeover",
                        &defaults),
              "permessage-deflate; client_no_context_takeover");
    CHECK_STR(negotiate("foo; bar=\"a,b\", permessage-deflate", &defaults), "permessage-deflate");
    CHECK_STR(negotiate("permessage-deflate; foo, permessage-deflate", &defaults),
              "permessage-deflate");

    /* Our configuration: no context takeover is announced even when not asked for; a
     * smaller client window only when the client offered the parameter; a smaller server
     * window is used silently unless the client offered the parameter. */
    eddy__pmd_config_t strict = {.server_window_bits = 10,
                                 .client_window_bits = 11,
                                 .server_no_context_takeover = true,
                                 .client_no_context_takeover = true};
    CHECK_STR(negotiate("permessage-deflate", &strict),
              "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
    CHECK_STR(negotiate("permessage-deflate; client_max_window_bits", &strict),
              "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
              "client_max_window_bits=11");
    CHECK_STR(negotiate("permessage-deflate; server_max_window_bits=12", &strict),
              "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
              "server_max_window_bits=10");
    eddy__pmd_t pmd;
    CHECK(eddy__pmd_negotiate("permessage-deflate", 18, &strict, &pmd));
    CHECK_EQ_INT(pmd.server_window_bits, 10);
    CHECK_EQ_INT(pmd.client_window_bits, 15);
}

/* Compresses msg with deflater and inflates it with inflater; checks the round trip. */
static void roundtrip(eddy__deflater_t *deflater, z_stream *inflater, const char *msg, size_t len)
{
    eddy__buf_t packed = {0}, unpacked = {0};
    CHECK_EQ_INT(eddy__deflate(deflater, msg, len, &packed), 0);
    CHECK(packed.len > 0);
    /* Inflate in pieces, as payload arrives from the network. */
    size_t off = 0;
    while (off < packed.len) {
        size_t piece = (size_t)(1 + test_rand() % 100); /* not inside EDDY__MIN: evaluated twice */
        if (piece > packed.len - off)
            piece = packed.len - off;
        bool final = off + piece == packed.len;
        CHECK_EQ_INT(
            eddy__inflate(inflater, (uint8_t *)packed.data + off, piece, final, &unpacked, 1 << 24),
            0);
        off += piece;
    }
    CHECK_MEM(unpacked.data ? unpacked.data : "", unpacked.len, msg, len);
    eddy__buf_free(&packed);
    eddy__buf_free(&unpacked);
}

/* Fills text with random bytes from a small alphabet: text that compresses. */
static void random_text(char *text, size_t len)
{
    for (size_t i = 0; i < len; i++)
        text[i] = "abcdefgh ijk\n"[test_rand() % 13];
}

/* rounds times: text, "hello" and an empty message through one deflater and one inflater
 * with a window of bits, so that later messages refer back to earlier ones (context
 * takeover). */
static void takeover_roundtrips(int bits, const char *text, size_t len, int rounds)
{
    eddy__deflater_t *d = eddy__deflater_new(bits, 6, 8);
    z_stream *i = eddy__inflater_new(bits);
    CHECK(d != NULL && i != NULL);
    for (int n = 0; n < rounds && d != NULL && i != NULL; n++) { /* NULL: out of memory */
        roundtrip(d, i, text, len);
        roundtrip(d, i, "hello", 5);
        roundtrip(d, i, "", 0);
    }
    eddy__deflater_free(d);
    eddy__inflater_free(i);
}

/* The response value for every combination of parameters and window bits, against
 * snprintf; a buffer one byte short of the value and its NUL is refused whole. */
static void test_response_every_form(void)
{
    for (unsigned form = 0; form < 16; form++) {
        for (uint8_t bits = 8; bits <= 15; bits++) {
            eddy__pmd_t pmd = {.server_window_bits = (uint8_t)(bits < 9 ? 9 : bits),
                               .client_window_bits = (uint8_t)(23 - bits),
                               .server_no_context_takeover = form & 1,
                               .client_no_context_takeover = form & 2,
                               .announce_server_bits = form & 4,
                               .announce_client_bits = form & 8};
            char want[200], server_bits[40] = "", client_bits[40] = "";
            if (pmd.announce_server_bits)
                snprintf(server_bits, sizeof(server_bits), "; server_max_window_bits=%u",
                         pmd.server_window_bits);
            if (pmd.announce_client_bits)
                snprintf(client_bits, sizeof(client_bits), "; client_max_window_bits=%u",
                         pmd.client_window_bits);
            int want_len =
                snprintf(want, sizeof(want), "permessage-deflate%s%s%s%s",
                         pmd.server_no_context_takeover ? "; server_no_context_takeover" : "",
                         pmd.client_no_context_takeover ? "; client_no_context_takeover" : "",
                         server_bits, client_bits);
            char got[200];
            CHECK_EQ_INT(eddy__pmd_response(&pmd, got, sizeof(got)), want_len);
            CHECK_STR(got, want);
            CHECK_EQ_INT(eddy__pmd_response(&pmd, got, (size_t)want_len + 1), want_len);
            CHECK_STR(got, want);
            for (size_t cap = 0; cap <= (size_t)want_len; cap++)
                CHECK_EQ_INT(eddy__pmd_response(&pmd, got, cap), EDDY_ETOOBIG);
        }
    }
}

static void test_streams(void)
{
    char text[20000];
    random_text(text, sizeof(text));
    for (int bits = 9; bits <= 15; bits++)
        takeover_roundtrips(bits, text, sizeof(text), 5);
    /* An empty message compresses to the single empty-block byte RFC 7692 shows. */
    eddy__deflater_t *d = eddy__deflater_new(15, 6, 8);
    z_stream *i = eddy__inflater_new(15);
    z_stream *i2 = eddy__inflater_new(15);
    CHECK(d != NULL && i != NULL && i2 != NULL);
    if (d == NULL || i == NULL || i2 == NULL) {
        eddy__deflater_free(d);
        eddy__inflater_free(i);
        eddy__inflater_free(i2);
        return;
    }
    eddy__buf_t out = {0};
    CHECK_EQ_INT(eddy__deflate(d, "", 0, &out), 0);
    CHECK_EQ_INT(out.len, 1);
    CHECK_EQ_INT(out.len == 1 ? (uint8_t)out.data[0] : 0xff, 0x00);
    /* RFC 7692 7.2.3.1: "Hello" compressed with no context takeover. */
    eddy__deflater_reset(d);
    eddy__buf_t hello = {0};
    static const uint8_t rfc_hello[] = {0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00};
    CHECK_EQ_INT(eddy__inflate(i, rfc_hello, sizeof(rfc_hello), true, &hello, 100), 0);
    CHECK_MEM(hello.data, hello.len, "Hello", 5);
    /* Corrupt input is an error, not a crash. */
    eddy__buf_t junk = {0};
    static const uint8_t bad[] = {0xff, 0xff, 0xff, 0xff, 0xff};
    CHECK_EQ_INT(eddy__inflate(i2, bad, sizeof(bad), true, &junk, 100), EDDY_EPROTO);
    eddy__buf_free(&out);
    eddy__buf_free(&hello);
    eddy__buf_free(&junk);
    eddy__deflater_free(d);
    eddy__inflater_free(i);
    eddy__inflater_free(i2);
}

/* Compresses data alone with a deflater of bits (memLevel as the loop's shared ones) and
 * checks that it inflates back; returns the compressed length (0 on failure). */
static size_t compressed_alone(int bits, const char *data, size_t len)
{
    eddy__deflater_t *d = eddy__deflater_new(bits, 6, bits - 6 < 8 ? bits - 6 : 8);
    z_stream *i = eddy__inflater_new(15);
    eddy__buf_t out = {0}, back = {0};
    size_t n = 0;
    if (d != NULL && i != NULL && eddy__deflate(d, data, len, &out) == 0 &&
        eddy__inflate(i, (uint8_t *)out.data, out.len, true, &back, len) == 0 && back.len == len &&
        memcmp(back.data, data, len) == 0)
        n = out.len;
    eddy__buf_free(&out);
    eddy__buf_free(&back);
    eddy__deflater_free(d);
    eddy__inflater_free(i);
    return n;
}

static void test_fitted_window(void)
{
    CHECK_EQ_INT(eddy__deflate_fit_bits(0, 15), 9);
    CHECK_EQ_INT(eddy__deflate_fit_bits(512, 15), 9);
    CHECK_EQ_INT(eddy__deflate_fit_bits(513, 15), 10);
    CHECK_EQ_INT(eddy__deflate_fit_bits(1024, 15), 10);
    CHECK_EQ_INT(eddy__deflate_fit_bits(1025, 15), 11);
    CHECK_EQ_INT(eddy__deflate_fit_bits(1024, 10), 10);
    CHECK_EQ_INT(eddy__deflate_fit_bits(1u << 20, 15), 15);
    /* A message of the largest length a window fits ends with its first 200 bytes (random
     * binary, unlike the text between) again: the fitted window finds that match, as the
     * largest does (same output length), and the next smaller window does not (longer
     * output). */
    static char text[32768];
    for (int bits = 10; bits <= 15; bits++) {
        size_t len = (size_t)1 << bits;
        random_text(text, len);
        for (size_t i = 0; i < 200; i++)
            text[i] = (char)(test_rand() % 256);
        memcpy(text + len - 200, text, 200);
        CHECK_EQ_INT(eddy__deflate_fit_bits(len, 15), bits);
        size_t largest = compressed_alone(15, text, len);
        size_t fitted = compressed_alone(bits, text, len);
        size_t smaller = compressed_alone(bits - 1, text, len);
        CHECK(largest > 0 && fitted > 0 && smaller > 0);
        CHECK_EQ_INT(fitted, largest);
        CHECK(smaller > fitted);
    }
}

static void test_bomb(void)
{
    /* 8 MiB of zeros compress to about 8 KiB; a 1 MiB limit must stop the inflation
     * without the output ever growing past limit + 1 bytes. */
    size_t big = 8u << 20, limit = 1u << 20;
    char *zeros = calloc(1, big);
    eddy__deflater_t *d = eddy__deflater_new(15, 9, 9);
    z_stream *i = eddy__inflater_new(15);
    CHECK(zeros != NULL && d != NULL && i != NULL);
    if (zeros == NULL || d == NULL || i == NULL) { /* out of memory */
        free(zeros);
        eddy__deflater_free(d);
        eddy__inflater_free(i);
        return;
    }
    eddy__buf_t packed = {0}, out = {0};
    CHECK_EQ_INT(eddy__deflate(d, zeros, big, &packed), 0);
    CHECK(packed.len < 64 * 1024);
    CHECK_EQ_INT(eddy__inflate(i, (uint8_t *)packed.data, packed.len, true, &out, limit),
                 EDDY_ETOOBIG);
    CHECK(out.len <= limit + 1);
    /* Buffers grow by doubling: memory stays within twice the limit, never near 8 MiB. */
    CHECK(out.cap <= 2 * (limit + 2));
    free(zeros);
    eddy__buf_free(&packed);
    eddy__buf_free(&out);
    eddy__deflater_free(d);
    eddy__inflater_free(i);
}

/* Inflates a raw deflate stream plus the sync tail, counting the output without keeping
 * it: the round trip of a message too large to hold twice. */
static size_t inflated_len(const char *packed, size_t len)
{
    static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};
    static char sink[1 << 20];
    z_stream zs = {0};
    CHECK_EQ_INT(inflateInit2(&zs, -15), Z_OK);
    size_t total = 0;
    for (int pass = 0; pass < 2; pass++) {
        zs.next_in = pass == 0 ? (Bytef *)packed : (Bytef *)tail;
        zs.avail_in = pass == 0 ? (uInt)len : sizeof(tail);
        int rc;
        do {
            zs.next_out = (Bytef *)sink;
            zs.avail_out = sizeof(sink);
            rc = inflate(&zs, Z_SYNC_FLUSH);
            total += sizeof(sink) - zs.avail_out;
        } while (rc == Z_OK && (zs.avail_in > 0 || zs.avail_out == 0));
        CHECK(rc == Z_OK || rc == Z_BUF_ERROR);
    }
    inflateEnd(&zs);
    return total;
}

static void test_over_4gib(void)
{
    /* A message over 4 GiB (package_max_length allows 2^40): no length may be cut to 32
     * bits (zlib counts in them, and a cast once sent the length modulo 4 GiB). Untouched
     * anonymous pages read as zeros without taking memory, and zeros compress a
     * thousandfold. Not under ThreadSanitizer: one thread has no race to find, and the
     * shadow it maps for every page read made the test take 78 s (61 of them system time)
     * instead of 7 s. */
#ifdef __SANITIZE_THREAD__
    return;
#endif
    size_t big = ((size_t)UINT_MAX + 1) + (1u << 20) + 3;
    void *zeros = mmap(NULL, big, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    CHECK(zeros != MAP_FAILED);
    if (zeros == MAP_FAILED)
        return;
    eddy__deflater_t *d = eddy__deflater_new(15, 1, 8);
    CHECK(d != NULL);
    if (d == NULL) { /* out of memory (tests/unit/oom_sweep.sh) */
        munmap(zeros, big);
        return;
    }
    eddy__buf_t packed = {0};
    CHECK_EQ_INT(eddy__deflate(d, zeros, big, &packed), 0);
    CHECK(packed.len < big / 64);
    CHECK_EQ_INT(inflated_len(packed.data, packed.len), big);
    munmap(zeros, big);
    eddy__buf_free(&packed);
    eddy__deflater_free(d);
}

static void test_chunked_zlib_calls(void)
{
    /* zlib inflating in pieces of 7 bytes instead of 4 GiB: every message still
     * round-trips, with context takeover across messages. */
    char text[5000];
    random_text(text, sizeof(text));
    eddy__zlib_chunk = 7;
    takeover_roundtrips(15, text, sizeof(text), 3);
    eddy__zlib_chunk = UINT_MAX;
}

int main(void)
{
    test_negotiation();
    test_response_every_form();
    test_streams();
    test_fitted_window();
    test_bomb();
    test_chunked_zlib_calls();
    test_over_4gib();
    return test_report("test_deflate");
}

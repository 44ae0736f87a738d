/* SPDX-License-Identifier: MIT */
/* Unit tests for src/base64.c: the public base64 / base64url codec (eddy_base64_*). */
#include "eddy.h"
#include "test.h"

#define URL_NOPAD (EDDY_BASE64_URL | EDDY_BASE64_NOPAD)
#define EIO       (EDDY_BASE64_ANY_ALPHABET | EDDY_BASE64_PAD_OPTIONAL | EDDY_BASE64_LAX_BITS)

struct vector {
    const char *plain;
    const char *padded;
    const char *unpadded;
};

/* RFC 4648 section 10 (the same text in both alphabets: no 62 or 63 digit). */
static const struct vector rfc4648[] = {
    {"", "", ""},
    {"f", "Zg==", "Zg"},
    {"fo", "Zm8=", "Zm8"},
    {"foo", "Zm9v", "Zm9v"},
    {"foob", "Zm9vYg==", "Zm9vYg"},
    {"fooba", "Zm9vYmE=", "Zm9vYmE"},
    {"foobar", "Zm9vYmFy", "Zm9vYmFy"},
};

static void check_decodes(const char *text, unsigned flags, const void *plain, size_t len)
{
    unsigned char out[64];
    ssize_t n = eddy_base64_decode(out, sizeof(out), text, strlen(text), flags);
    CHECK_MEM(out, n < 0 ? 0 : (size_t)n, plain, len);
    CHECK_EQ_INT(eddy_base64_decode(NULL, 0, text, strlen(text), flags), (ssize_t)len);
}

static void check_refused(const char *text, size_t len, unsigned flags, ssize_t rc)
{
    unsigned char out[64];
    CHECK_EQ_INT(eddy_base64_decode(out, sizeof(out), text, len, flags), rc);
    CHECK_EQ_INT(eddy_base64_decode(NULL, 0, text, len, flags), rc);
}

static void test_rfc4648_vectors(void)
{
    for (size_t i = 0; i < sizeof(rfc4648) / sizeof(rfc4648[0]); i++) {
        const struct vector *v = &rfc4648[i];
        size_t len = strlen(v->plain);
        char enc[16];
        size_t n = eddy_base64_encode(enc, v->plain, len, 0);
        CHECK_MEM(enc, n, v->padded, strlen(v->padded));
        CHECK_EQ_INT(eddy_base64_encoded_len(len, 0), n);
        n = eddy_base64_encode(enc, v->plain, len, URL_NOPAD);
        CHECK_MEM(enc, n, v->unpadded, strlen(v->unpadded));
        CHECK_EQ_INT(eddy_base64_encoded_len(len, URL_NOPAD), n);
        CHECK(eddy_base64_decoded_max(strlen(v->padded)) >= len);
        check_decodes(v->padded, 0, v->plain, len);
        check_decodes(v->unpadded, URL_NOPAD, v->plain, len);
        check_decodes(v->padded, EIO, v->plain, len);
        check_decodes(v->unpadded, EIO, v->plain, len);
    }
}

/* The two alphabets differ in digits 62 and 63 only. */
static void test_alphabets(void)
{
    static const unsigned char raw[] = {0xfb, 0xff, 0xbf};
    char enc[8];
    CHECK_MEM(enc, eddy_base64_encode(enc, raw, 3, 0), "+/+/", 4);
    CHECK_MEM(enc, eddy_base64_encode(enc, raw, 3, EDDY_BASE64_URL), "-_-_", 4);
    check_decodes("+/+/", 0, raw, 3);
    check_decodes("-_-_", EDDY_BASE64_URL, raw, 3);
    check_decodes("-/+_", EDDY_BASE64_ANY_ALPHABET, raw, 3);
    check_refused("-_-_", 4, 0, EDDY_EINVAL);
    check_refused("+/+/", 4, EDDY_BASE64_URL, EDDY_EINVAL);
    CHECK_EQ_INT(eddy_base64_value('+', 0), 62);
    CHECK_EQ_INT(eddy_base64_value('_', EDDY_BASE64_URL), 63);
    CHECK_EQ_INT(eddy_base64_value('_', 0), -1);
    CHECK_EQ_INT(eddy_base64_value('/', EDDY_BASE64_URL), -1);
    CHECK_EQ_INT(eddy_base64_value('=', EDDY_BASE64_ANY_ALPHABET), -1);
    for (int v = 0; v < 64; v++) {
        unsigned char byte = (unsigned char)(v << 2);
        CHECK_EQ_INT(eddy_base64_encode(enc, &byte, 1, EDDY_BASE64_URL), 4);
        CHECK_EQ_INT(eddy_base64_value(enc[0], EDDY_BASE64_URL), v);
    }
}

/* Every error class, with the options each caller uses: the handshake (0), the daemon's
 * JWTs (URL_NOPAD), Engine.IO (EIO). */
static void test_errors(void)
{
    /* A character outside the alphabet: whitespace, NUL, '=' inside. */
    check_refused("Zm 9v", 5, EIO, EDDY_EINVAL);
    check_refused("Zm9v\n", 5, EIO, EDDY_EINVAL);
    check_refused("Zm\0v", 4, 0, EDDY_EINVAL);
    check_refused("Zg==Zg==", 8, 0, EDDY_EINVAL);
    check_refused("=Zg", 3, EIO, EDDY_EINVAL);
    check_refused("====", 4, 0, EDDY_EINVAL);
    check_refused("Z===", 4, EIO, EDDY_EINVAL);
    /* 4k+1 digits. */
    check_refused("Z", 1, URL_NOPAD, EDDY_EINVAL);
    check_refused("Zm9vY", 5, EIO, EDDY_EINVAL);
    /* Padding: required by default, refused by NOPAD, only completing a group. */
    check_refused("Zg", 2, 0, EDDY_EINVAL);
    check_refused("Zg==", 4, URL_NOPAD, EDDY_EINVAL);
    check_refused("Zg=", 3, EIO, EDDY_EINVAL);
    /* Nonzero unused bits: refused unless LAX_BITS ("Zh==" and "Zm9=" are "f", "fo"). */
    check_refused("Zh==", 4, 0, EDDY_EINVAL);
    check_refused("Zm9", 3, URL_NOPAD, EDDY_EINVAL);
    check_decodes("Zh==", EIO, "f", 1);
    check_decodes("Zm9", EIO, "fo", 2);
    /* Too long for cap: nothing written. */
    unsigned char out[4] = {0xAA, 0xAA, 0xAA, 0xAA};
    CHECK_EQ_INT(eddy_base64_decode(out, 2, "Zm9v", 4, 0), EDDY_ETOOBIG);
    CHECK_EQ_INT(out[0], 0xAA);
    CHECK_EQ_INT(eddy_base64_decode(out, 3, "Zm9v", 4, 0), 3);
}

/* Every length 0..64 and flag set round-trips, in place too, and each mutation of one
 * character either decodes to something else or is refused. */
static void test_roundtrip_in_place(void)
{
    static const unsigned flag_sets[] = {0, EDDY_BASE64_URL, URL_NOPAD, EDDY_BASE64_NOPAD};
    for (size_t f = 0; f < sizeof(flag_sets) / sizeof(flag_sets[0]); f++) {
        for (size_t len = 0; len <= 64; len++) {
            unsigned char raw[64];
            char buf[96];
            for (size_t i = 0; i < len; i++)
                raw[i] = (unsigned char)(len * 37 + i * 101 + f);
            size_t n = eddy_base64_encode(buf, raw, len, flag_sets[f]);
            CHECK_EQ_INT(n, eddy_base64_encoded_len(len, flag_sets[f]));
            ssize_t k = eddy_base64_decode(buf, sizeof(buf), buf, n, flag_sets[f]);
            CHECK_MEM(buf, k < 0 ? 0 : (size_t)k, raw, len);
        }
    }
}

/* Every byte under every choice of alphabet, against the alphabets as written. */
static void test_every_digit(void)
{
    static const char std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    static const char url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    static const unsigned flags[] = {0, EDDY_BASE64_URL, EDDY_BASE64_ANY_ALPHABET,
                                     EDDY_BASE64_URL | EDDY_BASE64_ANY_ALPHABET};
    for (size_t f = 0; f < sizeof(flags) / sizeof(flags[0]); f++) {
        bool any = flags[f] & EDDY_BASE64_ANY_ALPHABET, is_url = flags[f] & EDDY_BASE64_URL;
        for (int b = 0; b < 256; b++) {
            char c = (char)b;
            const char *in_std = b ? memchr(std, b, 64) : NULL;
            const char *in_url = b ? memchr(url, b, 64) : NULL;
            int want = -1;
            if (in_std && (any || !is_url))
                want = (int)(in_std - std);
            else if (in_url && (any || is_url))
                want = (int)(in_url - url);
            CHECK_EQ_INT(eddy_base64_value(c, flags[f]), want);
        }
    }
}

/* Standard alphabet, padding required, strict: bit by bit, as RFC 4648 describes it. */
static ssize_t reference_decode(unsigned char *out, const char *in, size_t n)
{
    static const char std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t pad = 0, o = 0;
    while (pad < 2 && pad < n && in[n - 1 - pad] == '=')
        pad++;
    if (n % 4 != 0 || (n - pad) % 4 == 1)
        return -1;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n - pad; i++) {
        const char *digit = in[i] ? memchr(std, in[i], 64) : NULL;
        if (digit == NULL)
            return -1;
        acc = acc << 6 | (uint32_t)(digit - std);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    return acc == 0 ? (ssize_t)o : -1;
}

/* The decoder reads whole groups and the short group by separate paths: every byte at
 * every position of the encodings of 1 to 20 bytes (a handshake key is 16) is decoded,
 * or refused, as the bit-by-bit reference does. */
static void test_every_byte_at_every_position(void)
{
    size_t wrong = 0, accepted = 0;
    for (size_t len = 1; len <= 20; len++) {
        unsigned char raw[20];
        char encoded[32];
        for (size_t i = 0; i < len; i++)
            raw[i] = (unsigned char)(len * 53 + i * 29);
        size_t n = eddy_base64_encode(encoded, raw, len, 0);
        for (size_t pos = 0; pos < n; pos++) {
            for (int b = 0; b < 256; b++) {
                char in[32];
                unsigned char got[24], want[24];
                memcpy(in, encoded, n);
                in[pos] = (char)b;
                ssize_t k = eddy_base64_decode(got, sizeof(got), in, n, 0);
                ssize_t r = reference_decode(want, in, n);
                if (r < 0)
                    wrong += k != EDDY_EINVAL;
                else
                    wrong += k != r || memcmp(got, want, (size_t)r) != 0;
                accepted += r >= 0;
            }
        }
    }
    CHECK_EQ_INT(wrong, 0);
    CHECK(accepted > 10000); /* most mutations are other valid encodings */
}

int main(void)
{
    test_rfc4648_vectors();
    test_alphabets();
    test_errors();
    test_roundtrip_in_place();
    test_every_digit();
    test_every_byte_at_every_position();
    return test_report("test_base64");
}

/* SPDX-License-Identifier: MIT */
/* Unit tests for src/utf8.c: the incremental UTF-8 validator. */
#include "codec.h"
#include "ref_utf8.h"
#include "test.h"

/* Feeds s one byte at a time; returns the index of the byte feed rejected, or -1. */
static long fail_index(const uint8_t *s, size_t len, uint32_t *state_out)
{
    uint32_t state = EDDY__UTF8_ACCEPT;
    long at = -1;
    for (size_t i = 0; i < len; i++) {
        if (!eddy__utf8_feed(&state, s + i, 1)) {
            at = (long)i;
            break;
        }
    }
    *state_out = state;
    return at;
}

/* Feeds s in random pieces; returns the same verdict a whole feed would. */
static bool feed_split(const uint8_t *s, size_t len, uint32_t *state_out)
{
    uint32_t state = EDDY__UTF8_ACCEPT;
    size_t i = 0;
    bool ok = true;
    while (i < len && ok) {
        size_t piece = (size_t)(test_rand() % (len - i + 1));
        ok = eddy__utf8_feed(&state, s + i, piece);
        i += piece;
    }
    *state_out = state;
    return ok;
}

enum verdict { VALID, TRUNCATED, INVALID };

struct sample {
    const char *name;
    const char *bytes;
    size_t len;
    enum verdict verdict;
    long fail_at; /* INVALID only: index of the first impossible byte */
};

#define S(name, lit, verdict, at)                                                                  \
    {                                                                                              \
        name, lit, sizeof(lit) - 1, verdict, at                                                    \
    }

static const struct sample samples[] = {
    /* Valid text (Autobahn 6.1-6.2, 6.5, 6.7, 6.22 and friends). */
    S("empty", "", VALID, -1),
    S("ascii", "Hello, World! 0123456789 ~`!@#$%^&*()", VALID, -1),
    S("kosme", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", VALID, -1),
    S("mixed", "Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!", VALID,
      -1),
    S("U+0000", "\x00", VALID, -1),
    S("U+007F", "\x7f", VALID, -1),
    S("U+0080", "\xc2\x80", VALID, -1),
    S("U+07FF", "\xdf\xbf", VALID, -1),
    S("U+0800", "\xe0\xa0\x80", VALID, -1),
    S("U+D7FF", "\xed\x9f\xbf", VALID, -1),
    S("U+E000", "\xee\x80\x80", VALID, -1),
    S("U+FFFD", "\xef\xbf\xbd", VALID, -1),
    S("U+FFFE noncharacter", "\xef\xbf\xbe", VALID, -1),
    S("U+FFFF", "\xef\xbf\xbf", VALID, -1),
    S("U+10000", "\xf0\x90\x80\x80", VALID, -1),
    S("U+10FFFF", "\xf4\x8f\xbf\xbf", VALID, -1),
    S("U+1FFFF U+FDD0", "\xf0\x9f\xbf\xbf\xef\xb7\x90", VALID, -1),
    S("emoji", "\xf0\x9f\x98\x80 ok \xf0\x9f\x91\x8d", VALID, -1),
    S("multibyte across word", "abcdefg\xc3\xa9hijklmn\xe2\x82\xac", VALID, -1),
    /* Truncated: nothing impossible yet, but not complete. */
    S("2-byte lead only", "\xc2", TRUNCATED, -1),
    S("3-byte, 1 of 2", "\xe0\xa0", TRUNCATED, -1),
    S("3-byte lead only", "\xe1", TRUNCATED, -1),
    S("4-byte, 2 of 3", "\xf0\x90\x80", TRUNCATED, -1),
    S("4-byte, max 2 of 3", "\xf4\x8f\xbf", TRUNCATED, -1),
    S("kosme truncated", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce", TRUNCATED, -1),
    /* Overlong forms: impossible at the byte that proves it. */
    S("overlong NUL 2-byte", "\xc0\x80", INVALID, 0),
    S("overlong max 2-byte", "\xc1\xbf", INVALID, 0),
    S("overlong NUL 3-byte", "\xe0\x80\x80", INVALID, 1),
    S("overlong max 3-byte", "\xe0\x9f\xbf", INVALID, 1),
    S("overlong NUL 4-byte", "\xf0\x80\x80\x80", INVALID, 1),
    S("overlong max 4-byte", "\xf0\x8f\xbf\xbf", INVALID, 1),
    S("overlong slash 5-byte", "\xf8\x80\x80\x80\xaf", INVALID, 0),
    S("overlong slash 6-byte", "\xfc\x80\x80\x80\x80\xaf", INVALID, 0),
    /* Surrogates (Autobahn 6.19-6.21). */
    S("U+D800", "\xed\xa0\x80", INVALID, 1),
    S("U+DB7F", "\xed\xad\xbf", INVALID, 1),
    S("U+DC00", "\xed\xb0\x80", INVALID, 1),
    S("U+DFFF", "\xed\xbf\xbf", INVALID, 1),
    S("paired surrogates", "\xed\xa0\x80\xed\xb0\x80", INVALID, 1),
    S("kosme + surrogate",
      "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"
      "edited",
      INVALID, 12),
    /* Beyond U+10FFFF. */
    S("U+110000", "\xf4\x90\x80\x80", INVALID, 1),
    S("F4 BF", "\xf4\xbf\xbf\xbf", INVALID, 1),
    S("F5 lead", "\xf5\x80\x80\x80", INVALID, 0),
    S("F7 lead", "\xf7\xbf\xbf\xbf", INVALID, 0),
    S("5-byte U+200000", "\xf8\x88\x80\x80\x80", INVALID, 0),
    S("6-byte U+4000000", "\xfc\x84\x80\x80\x80\x80", INVALID, 0),
    S("kosme + U+110000", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80", INVALID,
      12),
    /* Bytes that never appear. */
    S("FE", "\xfe", INVALID, 0),
    S("FF", "\xff", INVALID, 0),
    S("FE FE FF FF", "\xfe\xfe\xff\xff", INVALID, 0),
    /* Continuation bytes where a lead is expected. */
    S("lone 80", "\x80", INVALID, 0),
    S("lone BF", "\xbf", INVALID, 0),
    S("ascii then 80", "abc\x80", INVALID, 3),
    S("2-byte then extra continuation", "\xc2\x80\x80", INVALID, 2),
    S("after 8 ascii", "abcdefgh\x80", INVALID, 8),
    /* A sequence cut short by a byte that is not a continuation. */
    S("C2 then ascii", "\xc2\x41", INVALID, 1),
    S("E1 80 then ascii", "\xe1\x80\x41", INVALID, 2),
    S("F1 80 80 then ascii", "\xf1\x80\x80\x41", INVALID, 3),
    S("C2 then lead", "\xc2\xc2\x80", INVALID, 1),
    S("E0 A0 then lead", "\xe0\xa0\xe0\xa0\x80", INVALID, 2),
    S("kosme with cut E1", "\xce\xba\xe1\xcf\x83", INVALID, 3),
};

static void test_samples(void)
{
    for (size_t k = 0; k < sizeof(samples) / sizeof(samples[0]); k++) {
        const struct sample *t = &samples[k];
        const uint8_t *s = (const uint8_t *)t->bytes;
        uint32_t state = EDDY__UTF8_ACCEPT;
        bool fed = eddy__utf8_feed(&state, s, t->len);
        bool ok = true;

        /* Whole. */
        ok &= fed == (t->verdict != INVALID);
        ok &= eddy__utf8_complete(state) == (t->verdict == VALID);
        ok &= eddy_utf8_valid(s, t->len) == (t->verdict == VALID);
        ok &= ref_valid(s, t->len) == (t->verdict == VALID);

        /* Byte at a time: fails exactly at the expected byte. */
        uint32_t byte_state;
        ok &= fail_index(s, t->len, &byte_state) == t->fail_at;
        ok &= byte_state == state;

        /* Random splits. */
        for (int trial = 0; trial < 20; trial++) {
            uint32_t split_state;
            ok &= feed_split(s, t->len, &split_state) == fed;
            ok &= split_state == state;
        }
        if (!ok)
            fprintf(stderr, "utf8 sample \"%s\" failed\n", t->name);
        CHECK(ok);
    }
}

static size_t encode(uint32_t cp, uint8_t out[4])
{
    if (cp < 0x80) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xC0 | cp >> 6);
        out[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xE0 | cp >> 12);
        out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | cp >> 18);
    out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

/* Every code point, encoded minimally: valid exactly when it is not a surrogate. */
static void test_every_code_point(void)
{
    int wrong = 0;
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
        uint8_t b[4];
        size_t n = encode(cp, b);
        bool surrogate = cp >= 0xD800 && cp <= 0xDFFF;
        if (eddy_utf8_valid(b, n) != !surrogate)
            wrong++;
    }
    CHECK_EQ_INT(wrong, 0);
}

/* Every code point encoded in more bytes than needed is refused at byte 0 or 1. */
static void test_every_overlong(void)
{
    int wrong = 0;
    for (uint32_t cp = 0; cp < 0x10000; cp++) {
        uint8_t b[4];
        uint32_t state;
        if (cp < 0x80) { /* two bytes */
            b[0] = (uint8_t)(0xC0 | cp >> 6);
            b[1] = (uint8_t)(0x80 | (cp & 0x3F));
            wrong += fail_index(b, 2, &state) != 0;
        }
        if (cp < 0x800) { /* three bytes */
            b[0] = 0xE0;
            b[1] = (uint8_t)(0x80 | cp >> 6);
            b[2] = (uint8_t)(0x80 | (cp & 0x3F));
            wrong += fail_index(b, 3, &state) != 1;
        }
        /* four bytes */
        b[0] = 0xF0;
        b[1] = (uint8_t)(0x80 | cp >> 12);
        b[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        b[3] = (uint8_t)(0x80 | (cp & 0x3F));
        wrong += fail_index(b, 4, &state) != 1;
    }
    CHECK_EQ_INT(wrong, 0);
}

/* All strings of one, two and three bytes, against the reference decoder. */
static void test_exhaustive_short(void)
{
    int wrong = 0, wrong_fail_at = 0;
    uint8_t b[3];
    for (unsigned x = 0; x < 256; x++) {
        b[0] = (uint8_t)x;
        wrong += eddy_utf8_valid(b, 1) != ref_valid(b, 1);
        for (unsigned y = 0; y < 256; y++) {
            b[1] = (uint8_t)y;
            wrong += eddy_utf8_valid(b, 2) != ref_valid(b, 2);
            /* Fail position: the first byte after which no continuation can help. */
            uint32_t state;
            long at = fail_index(b, 2, &state);
            long expect = !ref_viable(b, 1) ? 0 : !ref_viable(b, 2) ? 1 : -1;
            wrong_fail_at += at != expect;
            for (unsigned z = 0; z < 256; z++) {
                b[2] = (uint8_t)z;
                wrong += eddy_utf8_valid(b, 3) != ref_valid(b, 3);
            }
        }
    }
    CHECK_EQ_INT(wrong, 0);
    CHECK_EQ_INT(wrong_fail_at, 0);
}

/* Random strings biased toward interesting bytes, against the reference decoder. */
static void test_random_against_reference(void)
{
    static const uint8_t pool[] = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF,
                                   0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xE1, 0xEC, 0xED, 0xEE,
                                   0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFE, 0xFF};
    int wrong = 0;
    for (int trial = 0; trial < 20000; trial++) {
        uint8_t s[24];
        size_t len = (size_t)(test_rand() % sizeof(s));
        for (size_t i = 0; i < len; i++)
            s[i] = test_rand() % 3 ? pool[test_rand() % sizeof(pool)] : (uint8_t)test_rand();

        uint32_t state = EDDY__UTF8_ACCEPT, byte_state, split_state;
        bool fed = eddy__utf8_feed(&state, s, len);
        bool valid = fed && eddy__utf8_complete(state);
        wrong += valid != ref_valid(s, len);
        long at = fail_index(s, len, &byte_state);
        wrong += byte_state != state || (at >= 0) != !fed;
        if (at >= 0)
            wrong += !ref_viable(s, (size_t)at) || ref_viable(s, (size_t)at + 1);
        else
            wrong += !ref_viable(s, len);
        wrong += feed_split(s, len, &split_state) != fed || split_state != state;
    }
    CHECK_EQ_INT(wrong, 0);
}

/* The eight-byte ASCII path: an invalid byte anywhere in a long ASCII run is found at
 * its exact position, and multi-byte characters at every alignment pass. */
static void test_fast_path(void)
{
    /* Long enough for the 32-byte vector loop, the 8-byte words after it and the last
     * overlapping word. */
    uint8_t s[100];
    int wrong = 0;

    for (size_t bad = 0; bad < sizeof(s); bad++) {
        memset(s, 'a', sizeof(s));
        s[bad] = 0xFF;
        uint32_t state;
        wrong += fail_index(s, sizeof(s), &state) != (long)bad;
        state = EDDY__UTF8_ACCEPT;
        wrong += eddy__utf8_feed(&state, s, sizeof(s));
        wrong += eddy_utf8_valid(s, sizeof(s));
    }
    for (size_t at = 0; at + 4 <= sizeof(s); at++) {
        memset(s, 'a', sizeof(s));
        memcpy(s + at, "\xf0\x9f\x98\x80", 4);
        wrong += !eddy_utf8_valid(s, sizeof(s));
        /* Unaligned starts too. */
        for (size_t off = 1; off < 8 && off <= at; off++)
            wrong += !eddy_utf8_valid(s + off, sizeof(s) - off);
        /* Cut before the last continuation byte: incomplete, then completed. */
        uint32_t state = EDDY__UTF8_ACCEPT;
        wrong += !eddy__utf8_feed(&state, s, at + 3);
        wrong += eddy__utf8_complete(state);
        wrong += !eddy__utf8_feed(&state, s + at + 3, sizeof(s) - at - 3);
        wrong += !eddy__utf8_complete(state);
    }
    CHECK_EQ_INT(wrong, 0);
}

/* After a failure the validator stays failed, whatever it is fed. */
static void test_reject_is_sticky(void)
{
    uint32_t state = EDDY__UTF8_ACCEPT;
    CHECK(!eddy__utf8_feed(&state, (const uint8_t *)"\xc0", 1));
    CHECK(!eddy__utf8_feed(&state, (const uint8_t *)"abc", 3));
    CHECK(!eddy__utf8_feed(&state, (const uint8_t *)"", 0));
    CHECK(!eddy__utf8_complete(state));
}

/* Feeding nothing changes nothing, also in the middle of a sequence. */
static void test_empty_feeds(void)
{
    uint32_t state = EDDY__UTF8_ACCEPT;
    CHECK(eddy__utf8_feed(&state, NULL, 0));
    CHECK(eddy__utf8_complete(state));
    CHECK(eddy__utf8_feed(&state, (const uint8_t *)"\xe2\x82", 2));
    uint32_t before = state;
    CHECK(eddy__utf8_feed(&state, NULL, 0));
    CHECK_EQ_INT(state, before);
    CHECK(eddy__utf8_feed(&state, (const uint8_t *)"\xac", 1));
    CHECK(eddy__utf8_complete(state));
    CHECK(eddy_utf8_valid(NULL, 0));
}

/* A long valid text split at random points gives the same verdict as a whole feed. */
static void test_long_text_random_splits(void)
{
    uint8_t text[4096];
    size_t len = 0;
    while (len + 4 <= sizeof(text)) {
        uint32_t cp = (uint32_t)(test_rand() % 0x110000);
        if (cp >= 0xD800 && cp <= 0xDFFF)
            continue;
        if (test_rand() % 2)
            cp &= 0x7F;
        len += encode(cp, text + len);
    }
    CHECK(eddy_utf8_valid(text, len));
    int wrong = 0;
    for (int trial = 0; trial < 300; trial++) {
        uint32_t state;
        wrong += !feed_split(text, len, &state) || !eddy__utf8_complete(state);
    }
    CHECK_EQ_INT(wrong, 0);
}

int main(void)
{
    test_samples();
    test_every_code_point();
    test_every_overlong();
    test_exhaustive_short();
    test_random_against_reference();
    test_fast_path();
    test_reject_is_sticky();
    test_empty_feeds();
    test_long_text_random_splits();
    return test_report("test_utf8");
}

/* SPDX-License-Identifier: MIT */
/*
 * Engine.IO packet and polling payload codecs (rt/eio_payload.c) and base64
 * (rt/rt_base64.h on src/base64.c). The decode table is also read by
 * tests/clients/eio_payload_check.js, which decodes every row with the reference parsers
 * (engine.io-parser for v4, engine.io's build/parser-v3 for v3) and fails if they disagree:
 *   ROW(protocol, binary_form, input, packets)  the reference decodes the same packets;
 *   STRICT(protocol, binary_form, input, packets)  a documented difference (eio_payload.h):
 *       we stop with an error where the reference delivers a (mangled) packet.
 * packets describes the result: "<type>:<text>" or "<type>#<hex>" (binary) per packet,
 * joined by '|', then "!" if decoding stopped with an error.
 */
#include <stdbool.h>

#include "eio_payload.h"
#include "rt_base64.h"
#include "test.h"

typedef struct row {
    int protocol;
    bool binary_form;
    const char *in;
    size_t len;
    const char *want;
    bool strict;
} row_t;

#define ROW(p, b, s, w)                                                                            \
    {                                                                                              \
        p, b, s, sizeof(s) - 1, w, false                                                           \
    }
#define STRICT(p, b, s, w)                                                                         \
    {                                                                                              \
        p, b, s, sizeof(s) - 1, w, true                                                            \
    }
#define RS "\x1e"

static const row_t rows[] = {
    /* v4 */
    ROW(4, false, "4hello", "4:hello"),
    ROW(4, false, "4hello" RS "2probe", "4:hello|2:probe"),
    ROW(4, false, "4a" RS "4b" RS "6", "4:a|4:b|6:"),
    ROW(4, false, "bAQID", "4#010203"),
    ROW(4, false, "4a" RS "bAQID" RS "3", "4:a|4#010203|3:"),
    ROW(4, false, "b", "4#"),
    ROW(4, false, "bAQ==", "4#01"),
    ROW(4, false, "bAQ", "4#01"),
    ROW(4, false, "b-_8", "4#fbff"),
    ROW(4, false, "4\xc3\xa9\xf0\x9f\x98\x80", "4:\xc3\xa9\xf0\x9f\x98\x80"),
    ROW(4, false, "1", "1:"),
    ROW(4, false, "", "!"),
    ROW(4, false, "4a" RS, "4:a|!"),
    ROW(4, false, RS "4a", "!"),
    ROW(4, false, "9", "!"),
    ROW(4, false, "x", "!"),
    ROW(4, false, "4a" RS "7" RS "4b", "4:a|!"),
    ROW(4, false, "4a" RS RS "4b", "4:a|!"),
    STRICT(4, false, "bAQ!D", "!"),
    STRICT(4, false, "bA", "!"),
    STRICT(4, false, "bAQ=", "!"),
    STRICT(4, false, "4a" RS "4\xff", "4:a|!"),
    /* v3 text */
    ROW(3, false, "6:4hello", "4:hello"),
    ROW(3, false, "6:4hello2:4a", "4:hello|4:a"),
    ROW(3, false, "0:", ""),
    ROW(3, false, "0:0:1:2", "2:"),
    ROW(3, false, "1:2", "2:"),
    ROW(3, false, "01:2", "2:"),
    ROW(3, false, "3:4h\xc3\xa9", "4:h\xc3\xa9"),
    ROW(3, false, "3:4\xe2\x82\xac\xc3\xa9", "4:\xe2\x82\xac\xc3\xa9"),
    ROW(3, false, "3:4\xf0\x9f\x98\x80", "4:\xf0\x9f\x98\x80"),
    ROW(3, false, "6:b4AQID", "4#010203"),
    ROW(3, false, "2:b4", "4#"),
    ROW(3, false, "6:b2AQID1:6", "2#010203|6:"),
    ROW(3, false, "", "!"),
    ROW(3, false, "5:4hello", "4:hell|!"),
    ROW(3, false, "7:4hello", "!"),
    ROW(3, false, "a:4x", "!"),
    ROW(3, false, ":4x", "!"),
    ROW(3, false, "2:4a3", "4:a|!"),
    ROW(3, false, "2:9a", "!"),
    ROW(3, false, "2:4a1:x", "4:a|!"),
    ROW(3, false, "2:4a" RS "3", "4:a|!"),
    STRICT(3, false, "2:4\xf0\x9f\x98\x80", "!"),
    STRICT(3, false, "1:b", "!"),
    STRICT(3, false, "3:b9A", "!"),
    STRICT(3, false, "6:b4AQ!D", "!"),
    /* v3 binary */
    ROW(3, true,
        "\x00\x06\xff"
        "4hello",
        "4:hello"),
    ROW(3, true,
        "\x01\x04\xff"
        "\x04\x01\x02\x03",
        "4#010203"),
    ROW(3, true,
        "\x00\x06\xff"
        "4hello"
        "\x01\x04\xff"
        "\x04\x01\x02\x03"
        "\x00\x01\xff"
        "6",
        "4:hello|4#010203|6:"),
    ROW(3, true,
        "\x00\x01\xff"
        "2",
        "2:"),
    ROW(3, true,
        "\x00\x03\xff"
        "4\xc3\xa9",
        "4:\xc3\xa9"),
    ROW(3, true,
        "\x00\x01\x00\xff"
        "4abcdefghi",
        "4:abcdefghi"),
    ROW(3, true,
        "\x00\x00\x01\xff"
        "2",
        "2:"),
    ROW(3, true,
        "\x01\x01\xff"
        "\x04",
        "4#"),
    ROW(3, true,
        "\x00\x05\xff"
        "b4AQI",
        "4#0102"),
    ROW(3, true, "", ""),
    STRICT(3, true,
           "\x00\x02\xff"
           "4",
           "!"),
    STRICT(3, true,
           "\x02\x01\xff"
           "\x04",
           "!"),
    STRICT(3, true,
           "\x01\x01\xff"
           "\x09",
           "!"),
    STRICT(3, true,
           "\x00\x01\xff"
           "2"
           "\x00\x02\xff"
           "4",
           "2:|!"),
};

/* Appends to out the description of what eio_payload_next yields (see the top comment). */
static void describe(const row_t *r, const char *body, char *out, size_t cap)
{
    eio_payload_iter_t it;
    eio_packet_t p;
    size_t n = 0;
    int rc;
    out[0] = 0;
    eio_payload_init(&it, r->protocol, r->binary_form, body, r->len);
    while ((rc = eio_payload_next(&it, &p)) == 1) {
        n += (size_t)snprintf(out + n, cap - n, "%s%c%c", n ? "|" : "", eio_type_char(p.type),
                              p.binary ? '#' : ':');
        if (!p.binary) {
            n += (size_t)snprintf(out + n, cap - n, "%.*s", (int)p.len, p.data);
            continue;
        }
        unsigned char bin[256];
        const unsigned char *d = (const unsigned char *)p.data;
        size_t len = p.len;
        if (p.base64) {
            long k = rt_base64_decode(bin, p.data, p.len);
            CHECK(k >= 0);
            d = bin;
            len = k < 0 ? 0 : (size_t)k;
        }
        for (size_t i = 0; i < len; i++)
            n += (size_t)snprintf(out + n, cap - n, "%02x", d[i]);
    }
    if (rc < 0)
        snprintf(out + n, cap - n, "%s!", n ? "|" : "");
    /* Errors are sticky; the end stays the end. */
    CHECK_EQ_INT(eio_payload_next(&it, &p), rc < 0 ? rc : 0);
}

static void test_table(void)
{
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const row_t *r = &rows[i];
        char got[512];
        /* An exact-size heap copy: a sanitizer build catches reads past the body. */
        char *body = malloc(r->len ? r->len : 1);
        memcpy(body, r->in, r->len);
        describe(r, body, got, sizeof(got));
        if (strcmp(got, r->want) != 0)
            fprintf(stderr, "row %zu: got \"%s\", expected \"%s\"\n", i, got, r->want);
        CHECK_STR(got, r->want);
        free(body);
        /* Every prefix: no overread, and never more packets than the whole body has. */
        for (size_t k = 0; k < r->len; k++) {
            row_t pr = *r;
            pr.len = k;
            body = malloc(k ? k : 1);
            memcpy(body, r->in, k);
            describe(&pr, body, got, sizeof(got));
            free(body);
        }
    }
}

static void test_errors(void)
{
    eio_payload_iter_t it;
    eio_packet_t p;
    eio_payload_init(&it, 4, false, "bAQ!D", 5);
    CHECK_EQ_INT(eio_payload_next(&it, &p), EIO_EBASE64);
    eio_payload_init(&it, 4, false, "4\xff", 2);
    CHECK_EQ_INT(eio_payload_next(&it, &p), EIO_EUTF8);
    eio_payload_init(&it, 3, false, "2:4\xff", 4);
    CHECK_EQ_INT(eio_payload_next(&it, &p), EIO_EUTF8);
    eio_payload_init(&it, 3, true,
                     "\x00\x02\xff"
                     "4\xff",
                     5);
    CHECK_EQ_INT(eio_payload_next(&it, &p), EIO_EUTF8);
    eio_payload_init(&it, 4, false, "9", 1);
    CHECK_EQ_INT(eio_payload_next(&it, &p), EIO_EPARSE);
    /* Overlong lengths are refused before they overflow. */
    eio_payload_init(&it, 3, false, "99999999999999999999:4", 22);
    CHECK_EQ_INT(eio_payload_next(&it, &p), EIO_EPARSE);
    static const char digits[] = "\x00\x09\x09\x09\x09\x09\x09\x09\x09\x09\x09\x09\x09\x09\x09"
                                 "\x09\x09\x09\x09\x09\x09\xff"
                                 "4";
    eio_payload_init(&it, 3, true, digits, sizeof(digits) - 1);
    CHECK_EQ_INT(eio_payload_next(&it, &p), EIO_EPARSE);
    /* binary_form means nothing in v4. */
    eio_payload_init(&it, 4, true, "4a", 2);
    CHECK_EQ_INT(eio_payload_next(&it, &p), 1);
    CHECK_MEM(p.data, p.len, "a", 1);
}

static void test_packet(void)
{
    eio_packet_t p;
    CHECK_EQ_INT(eio_packet_decode(4, "4hello", 6, &p), 0);
    CHECK(p.type == EIO_MESSAGE && !p.binary && !p.base64);
    CHECK_MEM(p.data, p.len, "hello", 5);
    CHECK_EQ_INT(eio_packet_decode(4, "2probe", 6, &p), 0);
    CHECK_EQ_INT(p.type, EIO_PING);
    CHECK_EQ_INT(eio_packet_decode(4, "6", 1, &p), 0);
    CHECK(p.type == EIO_NOOP && p.len == 0);
    CHECK_EQ_INT(eio_packet_decode(4, "bAQID", 5, &p), 0);
    CHECK(p.type == EIO_MESSAGE && p.binary && p.base64);
    CHECK_MEM(p.data, p.len, "AQID", 4);
    CHECK_EQ_INT(eio_packet_decode(3, "b4AQID", 6, &p), 0);
    CHECK(p.type == EIO_MESSAGE && p.binary && p.base64);
    CHECK_MEM(p.data, p.len, "AQID", 4);
    CHECK_EQ_INT(eio_packet_decode(3, "b", 1, &p), EIO_EPARSE);
    CHECK_EQ_INT(eio_packet_decode(3, "bx", 2, &p), EIO_EPARSE);
    CHECK_EQ_INT(eio_packet_decode(4, "b!", 2, &p), EIO_EBASE64);
    CHECK_EQ_INT(eio_packet_decode(4, "", 0, &p), EIO_EPARSE);
    CHECK_EQ_INT(eio_packet_decode(4, "7", 1, &p), EIO_EPARSE);
    CHECK_EQ_INT(eio_packet_decode(4, "/", 1, &p), EIO_EPARSE);

    CHECK_EQ_INT(eio3_binary_frame_decode("\x04\x01\x02", 3, &p), 0);
    CHECK(p.type == EIO_MESSAGE && p.binary && !p.base64);
    CHECK_MEM(p.data, p.len, "\x01\x02", 2);
    CHECK_EQ_INT(eio3_binary_frame_decode("\x04", 1, &p), 0);
    CHECK_EQ_INT(p.len, 0);
    CHECK_EQ_INT(eio3_binary_frame_decode("", 0, &p), EIO_EPARSE);
    CHECK_EQ_INT(eio3_binary_frame_decode("\x07", 1, &p), EIO_EPARSE);
    CHECK_EQ_INT(eio3_binary_frame_decode("4", 1, &p), EIO_EPARSE);

    for (int c = 0; c < 256; c++)
        CHECK_EQ_INT(eio_type_from_char(c), c >= '0' && c <= '6' ? c - '0' : EIO_EPARSE);
    CHECK_STR(eio_type_name(EIO_OPEN), "open");
    CHECK_STR(eio_type_name(EIO_MESSAGE), "message");
    CHECK_STR(eio_type_name(EIO_NOOP), "noop");
    CHECK_STR(eio_type_name(7), "unknown");
    CHECK_STR(eio_type_name(-1), "unknown");
    CHECK_EQ_INT(eio_type_char(EIO_UPGRADE), '5');
}

#define CHECK_OUT(out, n, lit) CHECK_MEM(out, n, lit, sizeof(lit) - 1)

/* The reference encoders' output for the same packets (checked by the node script). */
static void test_encode(void)
{
    char buf[256];
    size_t n = 0;
    n += eio4_payload_put(buf + n, sizeof(buf) - n, true, EIO_MESSAGE, "hello", 5, false);
    n += eio4_payload_put(buf + n, sizeof(buf) - n, false, EIO_PING, NULL, 0, false);
    n += eio4_payload_put(buf + n, sizeof(buf) - n, false, EIO_MESSAGE, "\x01\x02\x03", 3, true);
    n += eio4_payload_put(buf + n, sizeof(buf) - n, false, EIO_MESSAGE, "\xc3\xa9", 2, false);
    CHECK_OUT(buf, n, "4hello" RS "2" RS "bAQID" RS "4\xc3\xa9");

    n = 0;
    n += eio3_payload_put(buf + n, sizeof(buf) - n, EIO_MESSAGE, "hello", 5, false);
    n += eio3_payload_put(buf + n, sizeof(buf) - n, EIO_PING, NULL, 0, false);
    n += eio3_payload_put(buf + n, sizeof(buf) - n, EIO_MESSAGE, "\x01\x02\x03", 3, true);
    n += eio3_payload_put(buf + n, sizeof(buf) - n, EIO_MESSAGE, "\xf0\x9f\x98\x80\xc3\xa9", 6,
                          false);
    n += eio3_payload_put(buf + n, sizeof(buf) - n, EIO_MESSAGE, "", 0, true);
    CHECK_OUT(buf, n,
              "6:4hello1:26:b4AQID4:4\xf0\x9f\x98\x80\xc3\xa9"
              "2:b4");

    n = 0;
    n += eio3_binary_payload_put(buf + n, sizeof(buf) - n, EIO_MESSAGE, "hello", 5, false);
    n += eio3_binary_payload_put(buf + n, sizeof(buf) - n, EIO_MESSAGE, "\x01\x02\x03", 3, true);
    n += eio3_binary_payload_put(buf + n, sizeof(buf) - n, EIO_MESSAGE, "\xc3\xa9", 2, false);
    n += eio3_binary_payload_put(buf + n, sizeof(buf) - n, EIO_NOOP, NULL, 0, false);
    CHECK_OUT(buf, n,
              "\x00\x06\xff"
              "4hello"
              "\x01\x04\xff"
              "\x04\x01\x02\x03"
              "\x00\x03\xff"
              "4\xc3\xa9"
              "\x00\x01\xff"
              "6");

    /* A 12-byte packet has a two-digit length. */
    n = eio3_binary_payload_put(buf, sizeof(buf), EIO_MESSAGE, "abcdefghijk", 11, false);
    CHECK_OUT(buf, n,
              "\x00\x01\x02\xff"
              "4abcdefghijk");
    n = eio3_payload_put(buf, sizeof(buf), EIO_MESSAGE, "abcdefghijk", 11, false);
    CHECK_OUT(buf, n, "12:4abcdefghijk");

    /* Measuring, and nothing written when it does not fit. */
    memset(buf, 'Z', sizeof(buf));
    CHECK_EQ_INT(eio4_payload_put(NULL, 0, false, EIO_MESSAGE, "abc", 3, true), 6);
    CHECK_EQ_INT(eio4_payload_put(buf, 5, false, EIO_MESSAGE, "abc", 3, true), 6);
    CHECK_EQ_INT(eio3_payload_put(buf, 4, EIO_MESSAGE, "abc", 3, false), 6);
    CHECK_EQ_INT(eio3_binary_payload_put(buf, 6, EIO_MESSAGE, "abc", 3, true), 7);
    CHECK_EQ_INT(buf[0], 'Z');

    /* Round trip through the decoders. */
    static const struct {
        eio_type_t type;
        const char *data;
        size_t len;
        bool binary;
    } pk[] = {
        {EIO_MESSAGE, "42[\"m\",\"\xf0\x9f\x98\x80\"]", 14, false},
        {EIO_MESSAGE, "\x00\xff\x1e:", 4, true},
        {EIO_PONG, "probe", 5, false},
        {EIO_NOOP, "", 0, false},
    };
    for (int form = 0; form < 3; form++) {
        n = 0;
        for (size_t i = 0; i < 4; i++) {
            n += form == 0   ? eio4_payload_put(buf + n, sizeof(buf) - n, i == 0, pk[i].type,
                                                pk[i].data, pk[i].len, pk[i].binary)
                 : form == 1 ? eio3_payload_put(buf + n, sizeof(buf) - n, pk[i].type, pk[i].data,
                                                pk[i].len, pk[i].binary)
                             : eio3_binary_payload_put(buf + n, sizeof(buf) - n, pk[i].type,
                                                       pk[i].data, pk[i].len, pk[i].binary);
        }
        CHECK(n < sizeof(buf));
        eio_payload_iter_t it;
        eio_packet_t p;
        eio_payload_init(&it, form == 0 ? 4 : 3, form == 2, buf, n);
        for (size_t i = 0; i < 4; i++) {
            CHECK_EQ_INT(eio_payload_next(&it, &p), 1);
            CHECK_EQ_INT(p.type, pk[i].type);
            CHECK_EQ_INT(p.binary, pk[i].binary);
            char bin[64];
            const char *d = p.data;
            size_t len = p.len;
            if (p.base64) {
                long k = rt_base64_decode(bin, p.data, p.len);
                d = bin;
                len = k < 0 ? 0 : (size_t)k;
            }
            CHECK_MEM(d, len, pk[i].data, pk[i].len);
        }
        CHECK_EQ_INT(eio_payload_next(&it, &p), 0);
    }
}

static void test_base64(void)
{
    static const struct {
        const char *raw;
        size_t len;
        const char *b64;
    } v[] = {
        {"", 0, ""},
        {"f", 1, "Zg=="},
        {"fo", 2, "Zm8="},
        {"foo", 3, "Zm9v"},
        {"foob", 4, "Zm9vYg=="},
        {"fooba", 5, "Zm9vYmE="},
        {"foobar", 6, "Zm9vYmFy"},
        {"\xfb\xff\xbf", 3, "+/+/"},
    };
    char out[64], back[64];
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        size_t n = rt_base64_encode(out, v[i].raw, v[i].len);
        CHECK_EQ_INT(n, rt_base64_encoded_len(v[i].len));
        CHECK_MEM(out, n, v[i].b64, strlen(v[i].b64));
        long k = rt_base64_decode(back, v[i].b64, strlen(v[i].b64));
        CHECK_MEM(back, k < 0 ? 0 : (size_t)k, v[i].raw, v[i].len);
        CHECK_EQ_INT(rt_base64_check(v[i].b64, strlen(v[i].b64)), v[i].len);
        CHECK(rt_base64_decoded_max(strlen(v[i].b64)) >= v[i].len);
    }
    /* Unpadded and URL-safe forms. */
    long k = rt_base64_decode(back, "Zm9vYg", 6);
    CHECK_MEM(back, k < 0 ? 0 : (size_t)k, "foob", 4);
    k = rt_base64_decode(back, "-_-_", 4);
    CHECK_MEM(back, k < 0 ? 0 : (size_t)k, "\xfb\xff\xbf", 3);
    /* Refused. */
    static const char *const bad[] = {
        "Z", "Zm9vY", "Zg=", "Z===", "====", "Zg==Zg==", "Zm9v!", "Zm 9v", "Zm9v\n", "=Zg"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK_EQ_INT(rt_base64_decode(back, bad[i], strlen(bad[i])), -1);
        CHECK_EQ_INT(rt_base64_check(bad[i], strlen(bad[i])), -1);
    }
    /* In place, every length 0..48 and every byte value. */
    for (size_t len = 0; len <= 48; len++) {
        char raw[48], buf[64];
        for (size_t i = 0; i < len; i++)
            raw[i] = (char)(len * 37 + i * 101);
        size_t n = rt_base64_encode(buf, raw, len);
        k = rt_base64_decode(buf, buf, n);
        CHECK_MEM(buf, k < 0 ? 0 : (size_t)k, raw, len);
    }
}

int main(void)
{
    test_table();
    test_errors();
    test_packet();
    test_encode();
    test_base64();
    return test_report("test_eio_payload");
}

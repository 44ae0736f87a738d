/* SPDX-License-Identifier: MIT */
/* Unit tests for src/ws_codec.c: frame headers, masking, close payloads, pack/unpack. */
#include "codec.h"
#include "test.h"

static const uint8_t mask_key[4] = {0x37, 0xfa, 0x21, 0x3d};

/* Parses bytes whole and checks that every shorter prefix asks for more. */
static ssize_t parse_all_ways(const uint8_t *bytes, size_t len, eddy__ws_header_t *hdr)
{
    ssize_t rc = eddy__ws_parse_header(bytes, len, hdr);
    for (size_t n = 0; n < len; n++) {
        eddy__ws_header_t partial;
        ssize_t prc = eddy__ws_parse_header(bytes, n, &partial);
        /* A prefix of the header needs more bytes; once complete, the same answer. */
        if (rc > 0 && n < (size_t)rc)
            CHECK_EQ_INT(prc, EDDY_AGAIN);
        else if (rc > 0)
            CHECK_EQ_INT(prc, rc);
    }
    return rc;
}

struct header_case {
    const char *name;
    uint8_t bytes[16];
    size_t len;
    ssize_t rc;
    uint64_t payload_len;
};

static void test_parse_header_lengths(void)
{
    static const struct header_case cases[] = {
        {"len 0", {0x81, 0x00}, 2, 2, 0},
        {"len 125", {0x82, 0x7d}, 2, 2, 125},
        {"len 126", {0x82, 0x7e, 0x00, 0x7e}, 4, 4, 126},
        {"len 65535", {0x82, 0x7e, 0xff, 0xff}, 4, 4, 65535},
        {"len 65536", {0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0}, 10, 10, 65536},
        {"len 2^32", {0x82, 0x7f, 0, 0, 0, 1, 0, 0, 0, 0}, 10, 10, 1ull << 32},
        {"len 2^63-1",
         {0x82, 0x7f, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
         10,
         10,
         0x7fffffffffffffffull},
        {"len MSB set", {0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0}, 10, EDDY_EPROTO, 0},
        {"len all ones",
         {0x82, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
         10,
         EDDY_EPROTO,
         0},
        /* Non-minimal encodings are accepted (see codec.h). */
        {"len 5 in 16 bits", {0x82, 0x7e, 0x00, 0x05}, 4, 4, 5},
        {"len 5 in 64 bits", {0x82, 0x7f, 0, 0, 0, 0, 0, 0, 0, 5}, 10, 10, 5},
        /* Masked: four more bytes. */
        {"masked len 0", {0x81, 0x80, 1, 2, 3, 4}, 6, 6, 0},
        {"masked len 126", {0x82, 0xfe, 0x00, 0x7e, 1, 2, 3, 4}, 8, 8, 126},
        {"masked len 65536", {0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4}, 14, 14, 65536},
        {"masked MSB set", {0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}, 14, EDDY_EPROTO, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct header_case *c = &cases[i];
        eddy__ws_header_t hdr;
        ssize_t rc = parse_all_ways(c->bytes, c->len, &hdr);
        if (rc != c->rc)
            fprintf(stderr, "ws header case \"%s\"\n", c->name);
        CHECK_EQ_INT(rc, c->rc);
        if (rc < 0)
            continue;
        CHECK_EQ_INT(hdr.header_len, rc);
        CHECK(hdr.payload_len == c->payload_len);
        CHECK_EQ_INT(hdr.masked, (c->bytes[1] & 0x80) != 0);
        if (hdr.masked)
            CHECK_MEM(hdr.mask, 4, c->bytes + rc - 4, 4);
        /* Bytes after the header are not part of it. */
        uint8_t longer[32];
        memcpy(longer, c->bytes, c->len);
        memset(longer + c->len, 0xee, sizeof(longer) - c->len);
        eddy__ws_header_t again;
        CHECK_EQ_INT(eddy__ws_parse_header(longer, sizeof(longer), &again), rc);
        CHECK(again.payload_len == hdr.payload_len);
    }
}

static void test_parse_header_bits(void)
{
    eddy__ws_header_t hdr;
    const uint8_t all_set[] = {0xff, 0x85, 0xaa, 0xbb, 0xcc, 0xdd};
    CHECK_EQ_INT(eddy__ws_parse_header(all_set, sizeof(all_set), &hdr), 6);
    CHECK(hdr.fin);
    CHECK_EQ_INT(hdr.rsv, 0x7);
    CHECK_EQ_INT(hdr.opcode, 0xf);
    CHECK(hdr.masked);
    CHECK_MEM(hdr.mask, 4, all_set + 2, 4);
    CHECK(hdr.payload_len == 5);

    const uint8_t rsv1_only[] = {0x41, 0x00};
    CHECK_EQ_INT(eddy__ws_parse_header(rsv1_only, sizeof(rsv1_only), &hdr), 2);
    CHECK(!hdr.fin);
    CHECK_EQ_INT(hdr.rsv, 0x4);
    CHECK_EQ_INT(hdr.opcode, 1);
    CHECK(!hdr.masked);

    const uint8_t rsv3_only[] = {0x92, 0x00};
    CHECK_EQ_INT(eddy__ws_parse_header(rsv3_only, sizeof(rsv3_only), &hdr), 2);
    CHECK_EQ_INT(hdr.rsv, 0x1);
    CHECK_EQ_INT(hdr.opcode, 2);

    CHECK_EQ_INT(eddy__ws_parse_header(NULL, 0, &hdr), EDDY_AGAIN);
}

static eddy__ws_header_t header(uint8_t opcode, bool fin, uint8_t rsv, bool masked,
                                uint64_t payload_len)
{
    eddy__ws_header_t hdr = {.fin = fin,
                             .rsv = rsv,
                             .opcode = opcode,
                             .masked = masked,
                             .payload_len = payload_len,
                             .header_len = 2};
    return hdr;
}

static void test_check_header(void)
{
    const eddy__ws_rules_t server = {.expect_masked = true, .allowed_rsv = 0};
    const eddy__ws_rules_t client = {.expect_masked = false, .allowed_rsv = 0};
    const eddy__ws_rules_t deflate = {.expect_masked = true, .allowed_rsv = 0x4};
    eddy__ws_header_t h;

    /* Plain acceptable frames. */
    h = header(EDDY_WS_OPCODE_TEXT, true, 0, true, 10);
    CHECK_EQ_INT(eddy__ws_check_header(&h, &server, false), 0);
    h = header(EDDY_WS_OPCODE_BINARY, false, 0, true, 1000000);
    CHECK_EQ_INT(eddy__ws_check_header(&h, &server, false), 0);
    h = header(EDDY_WS_OPCODE_CONTINUATION, true, 0, true, 10);
    CHECK_EQ_INT(eddy__ws_check_header(&h, &server, true), 0);
    h = header(EDDY_WS_OPCODE_TEXT, true, 0, false, 10);
    CHECK_EQ_INT(eddy__ws_check_header(&h, &client, false), 0);

    /* Mask bit wrong for the role. */
    h = header(EDDY_WS_OPCODE_TEXT, true, 0, false, 10);
    CHECK_EQ_INT(eddy__ws_check_header(&h, &server, false), 1002);
    h = header(EDDY_WS_OPCODE_TEXT, true, 0, true, 10);
    CHECK_EQ_INT(eddy__ws_check_header(&h, &client, false), 1002);
    h = header(EDDY_WS_OPCODE_PING, true, 0, false, 0);
    CHECK_EQ_INT(eddy__ws_check_header(&h, &server, false), 1002);

    /* RSV bits nobody negotiated. */
    for (uint8_t rsv = 1; rsv < 8; rsv++) {
        h = header(EDDY_WS_OPCODE_TEXT, true, rsv, true, 10);
        CHECK_EQ_INT(eddy__ws_check_header(&h, &server, false), 1002);
    }
    /* RSV1 negotiated: fine on a first data frame, refused on control and continuation
     * frames; RSV2/RSV3 still refused. */
    h = header(EDDY_WS_OPCODE_TEXT, false, 0x4, true, 10);
    CHECK_EQ_INT(eddy__ws_check_header(&h, &deflate, false), 0);
    h = header(EDDY_WS_OPCODE_BINARY, true, 0x4, true, 10);
    CHECK_EQ_INT(eddy__ws_check_header(&h, &deflate, false), 0);
    h = header(EDDY_WS_OPCODE_CONTINUATION, true, 0x4, true, 10);
    CHECK_EQ_INT(eddy__ws_check_header(&h, &deflate, true), 1002);
    h = header(EDDY_WS_OPCODE_PING, true, 0x4, true, 10);
    CHECK_EQ_INT(eddy__ws_check_header(&h, &deflate, false), 1002);
    h = header(EDDY_WS_OPCODE_CLOSE, true, 0x4, true, 2);
    CHECK_EQ_INT(eddy__ws_check_header(&h, &deflate, false), 1002);
    h = header(EDDY_WS_OPCODE_TEXT, true, 0x2, true, 10);
    CHECK_EQ_INT(eddy__ws_check_header(&h, &deflate, false), 1002);
    h = header(EDDY_WS_OPCODE_TEXT, true, 0x1, true, 10);
    CHECK_EQ_INT(eddy__ws_check_header(&h, &deflate, false), 1002);
    h = header(EDDY_WS_OPCODE_CONTINUATION, true, 0, true, 10);
    CHECK_EQ_INT(eddy__ws_check_header(&h, &deflate, true), 0);

    /* Reserved opcodes, with or without a message in progress. */
    for (uint8_t op = 0; op < 16; op++) {
        bool reserved = (op >= 3 && op <= 7) || op >= 0xB;
        if (!reserved)
            continue;
        h = header(op, true, 0, true, 0);
        CHECK_EQ_INT(eddy__ws_check_header(&h, &server, false), 1002);
        CHECK_EQ_INT(eddy__ws_check_header(&h, &server, true), 1002);
    }

    /* Control frames: at most 125 bytes, never fragmented, allowed inside a message. */
    const uint8_t controls[] = {EDDY_WS_OPCODE_CLOSE, EDDY_WS_OPCODE_PING, EDDY_WS_OPCODE_PONG};
    for (size_t i = 0; i < sizeof(controls); i++) {
        h = header(controls[i], true, 0, true, 125);
        CHECK_EQ_INT(eddy__ws_check_header(&h, &server, false), 0);
        CHECK_EQ_INT(eddy__ws_check_header(&h, &server, true), 0);
        h = header(controls[i], true, 0, true, 126);
        CHECK_EQ_INT(eddy__ws_check_header(&h, &server, false), 1002);
        h = header(controls[i], true, 0, true, 1ull << 40);
        CHECK_EQ_INT(eddy__ws_check_header(&h, &server, false), 1002);
        h = header(controls[i], false, 0, true, 0);
        CHECK_EQ_INT(eddy__ws_check_header(&h, &server, false), 1002);
        CHECK_EQ_INT(eddy__ws_check_header(&h, &server, true), 1002);
    }

    /* Continuation with no message in progress; new data frame while one is. */
    h = header(EDDY_WS_OPCODE_CONTINUATION, true, 0, true, 1);
    CHECK_EQ_INT(eddy__ws_check_header(&h, &server, false), 1002);
    h = header(EDDY_WS_OPCODE_CONTINUATION, false, 0, true, 1);
    CHECK_EQ_INT(eddy__ws_check_header(&h, &server, false), 1002);
    h = header(EDDY_WS_OPCODE_TEXT, true, 0, true, 1);
    CHECK_EQ_INT(eddy__ws_check_header(&h, &server, true), 1002);
    h = header(EDDY_WS_OPCODE_BINARY, false, 0, true, 1);
    CHECK_EQ_INT(eddy__ws_check_header(&h, &server, true), 1002);
}

static void test_write_header(void)
{
    uint8_t out[EDDY_WS_MAX_HEADER_LEN];

    /* Exact bytes for each length class. */
    CHECK_EQ_INT(eddy__ws_write_header(out, EDDY_WS_OPCODE_TEXT, EDDY_WS_FLAG_FIN, 0, NULL), 2);
    CHECK_MEM(out, 2, "\x81\x00", 2);
    CHECK_EQ_INT(eddy__ws_write_header(out, EDDY_WS_OPCODE_BINARY, EDDY_WS_FLAG_FIN, 125, NULL), 2);
    CHECK_MEM(out, 2, "\x82\x7d", 2);
    CHECK_EQ_INT(eddy__ws_write_header(out, EDDY_WS_OPCODE_BINARY, EDDY_WS_FLAG_FIN, 126, NULL), 4);
    CHECK_MEM(out, 4, "\x82\x7e\x00\x7e", 4);
    CHECK_EQ_INT(eddy__ws_write_header(out, EDDY_WS_OPCODE_BINARY, 0, 65535, NULL), 4);
    CHECK_MEM(out, 4, "\x02\x7e\xff\xff", 4);
    CHECK_EQ_INT(eddy__ws_write_header(out, EDDY_WS_OPCODE_BINARY, 0, 65536, NULL), 10);
    CHECK_MEM(out, 10, "\x02\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10);
    CHECK_EQ_INT(eddy__ws_write_header(out, EDDY_WS_OPCODE_BINARY, 0, 1ull << 32, NULL), 10);
    CHECK_MEM(out, 10, "\x02\x7f\x00\x00\x00\x01\x00\x00\x00\x00", 10);

    /* Flags and mask. */
    int all = EDDY_WS_FLAG_FIN | EDDY_WS_FLAG_RSV1 | EDDY_WS_FLAG_RSV2 | EDDY_WS_FLAG_RSV3 |
              EDDY_WS_FLAG_MASK;
    CHECK_EQ_INT(eddy__ws_write_header(out, EDDY_WS_OPCODE_PING, all, 3, mask_key), 6);
    CHECK_MEM(out, 6, "\xf9\x83\x37\xfa\x21\x3d", 6);
    CHECK_EQ_INT(eddy__ws_write_header(out, EDDY_WS_OPCODE_TEXT, EDDY_WS_FLAG_RSV1, 0, NULL), 2);
    CHECK_MEM(out, 2, "\x41\x00", 2);
    /* COMPRESS is a request to the session layer, not a header bit. */
    CHECK_EQ_INT(eddy__ws_write_header(out, EDDY_WS_OPCODE_TEXT, EDDY_WS_FLAG_COMPRESS, 0, NULL),
                 2);
    CHECK_MEM(out, 2, "\x01\x00", 2);
    CHECK_EQ_INT(eddy__ws_write_header(out, EDDY_WS_OPCODE_BINARY,
                                       EDDY_WS_FLAG_FIN | EDDY_WS_FLAG_MASK, 70000, mask_key),
                 14);
    CHECK_MEM(out, 14, "\x82\xff\x00\x00\x00\x00\x00\x01\x11\x70\x37\xfa\x21\x3d", 14);

    /* Round trip through the parser for every length boundary. */
    static const uint64_t lengths[] = {0,     1,     125,        126,        127,
                                       65535, 65536, 1ull << 32, 1ull << 62, 0x7fffffffffffffffull};
    for (size_t i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
        for (int masked = 0; masked < 2; masked++) {
            int flags = EDDY_WS_FLAG_FIN | (masked ? EDDY_WS_FLAG_MASK : 0);
            size_t n =
                eddy__ws_write_header(out, EDDY_WS_OPCODE_BINARY, flags, lengths[i], mask_key);
            size_t minimal = 2 +
                             (lengths[i] < 126       ? 0
                              : lengths[i] <= 0xffff ? 2
                                                     : 8) +
                             (masked ? 4 : 0);
            CHECK_EQ_INT(n, minimal);
            eddy__ws_header_t hdr;
            CHECK_EQ_INT(parse_all_ways(out, n, &hdr), n);
            CHECK(hdr.payload_len == lengths[i]);
            CHECK(hdr.fin);
            CHECK_EQ_INT(hdr.masked, masked);
            if (masked)
                CHECK_MEM(hdr.mask, 4, mask_key, 4);
        }
        /* The inline writer of unmasked headers writes the same bytes, for every opcode and
         * combination of the flags it takes. */
        static const int flag_sets[] = {0, EDDY_WS_FLAG_FIN, EDDY_WS_FLAG_RSV1,
                                        EDDY_WS_FLAG_FIN | EDDY_WS_FLAG_RSV1};
        for (size_t f = 0; f < sizeof(flag_sets) / sizeof(flag_sets[0]); f++) {
            for (uint8_t opcode = 0; opcode < 16; opcode++) {
                uint8_t inline_out[EDDY_WS_MAX_HEADER_LEN];
                size_t n = eddy__ws_write_header(out, opcode, flag_sets[f], lengths[i], NULL);
                CHECK_EQ_INT(
                    eddy__ws_write_header_unmasked(inline_out, opcode, flag_sets[f], lengths[i]),
                    n);
                CHECK_MEM(inline_out, n, out, n);
            }
        }
    }
}

static void test_mask(void)
{
    uint8_t storage[300], data[300], ref[300];
    int wrong = 0;

    for (int trial = 0; trial < 2000; trial++) {
        size_t len = (size_t)(test_rand() % 260);
        size_t align = (size_t)(test_rand() % 8);
        uint64_t offset = test_rand() % 1000;
        uint8_t key[4];
        for (int k = 0; k < 4; k++)
            key[k] = (uint8_t)test_rand();
        for (size_t i = 0; i < len; i++)
            data[i] = (uint8_t)test_rand();

        /* Unaligned start, against a byte-at-a-time reference. */
        uint8_t *p = storage + align;
        memcpy(p, data, len);
        for (size_t i = 0; i < len; i++)
            ref[i] = data[i] ^ key[(offset + i) % 4];
        eddy__ws_mask(p, len, key, offset);
        wrong += memcmp(p, ref, len) != 0;

        /* Piecewise with the running offset equals whole. */
        memcpy(p, data, len);
        size_t done = 0;
        while (done < len) {
            size_t piece = (size_t)(test_rand() % (len - done + 1));
            eddy__ws_mask(p + done, piece, key, offset + done);
            done += piece;
        }
        wrong += memcmp(p, ref, len) != 0;

        /* Masking twice restores the data. */
        eddy__ws_mask(p, len, key, offset);
        wrong += memcmp(p, data, len) != 0;
    }
    CHECK_EQ_INT(wrong, 0);

    /* Unmasking a whole payload while checking it for ASCII: payloads that unmask to
     * ASCII, some with one byte over 0x7f placed anywhere (every path of the loop). */
    wrong = 0;
    for (int trial = 0; trial < 2000; trial++) {
        size_t len = (size_t)(test_rand() % 260);
        uint8_t *p = storage + test_rand() % 8;
        uint8_t key[4];
        for (int k = 0; k < 4; k++)
            key[k] = (uint8_t)test_rand();
        for (size_t i = 0; i < len; i++)
            ref[i] = (uint8_t)(test_rand() & 0x7f);
        bool expect = len == 0 || trial % 2 == 0;
        if (!expect)
            ref[test_rand() % len] |= 0x80;
        for (size_t i = 0; i < len; i++)
            p[i] = ref[i] ^ key[i % 4];
        wrong += eddy__ws_unmask_ascii(p, len, key) != expect;
        wrong += memcmp(p, ref, len) != 0;
    }
    CHECK_EQ_INT(wrong, 0);

    /* RFC 6455 5.7: "Hello" masked with 37 fa 21 3d. */
    uint8_t hello[] = "Hello";
    eddy__ws_mask(hello, 5, mask_key, 0);
    CHECK_MEM(hello, 5, "\x7f\x9f\x4d\x51\x58", 5);
    /* An offset beyond 32 bits. */
    uint8_t big[3] = {0, 0, 0};
    eddy__ws_mask(big, 3, mask_key, (1ull << 40) + 1);
    CHECK_MEM(big, 3, "\xfa\x21\x3d", 3);
}

static void test_close_code_valid(void)
{
    int wrong = 0;
    for (unsigned code = 0; code <= 70000; code++) {
        bool expect = (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
                      (code >= 3000 && code <= 4999);
        wrong += eddy__ws_close_code_valid(code) != expect;
    }
    CHECK_EQ_INT(wrong, 0);
    /* The table spelled out at its edges. */
    static const unsigned ok[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010,
                                  1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999};
    static const unsigned bad[] = {0,    1,    999,  1004, 1005, 1006, 1015,
                                   1016, 1100, 2000, 2999, 5000, 65535};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        CHECK(eddy__ws_close_code_valid(ok[i]));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK(!eddy__ws_close_code_valid(bad[i]));
    CHECK(!eddy__ws_close_code_valid(0x10000 + 1000));
}

static void test_parse_close(void)
{
    uint16_t code = 0;
    const char *reason = NULL;
    size_t reason_len = 99;

    CHECK_EQ_INT(eddy__ws_parse_close(NULL, 0, &code, &reason, &reason_len), 0);
    CHECK_EQ_INT(code, 1005);
    CHECK(reason != NULL && reason[0] == '\0');
    CHECK_EQ_INT(reason_len, 0);

    const uint8_t one[] = {0x03};
    CHECK_EQ_INT(eddy__ws_parse_close(one, 1, &code, &reason, &reason_len), 1002);

    const uint8_t normal[] = "\x03\xe8";
    CHECK_EQ_INT(eddy__ws_parse_close(normal, 2, &code, &reason, &reason_len), 0);
    CHECK_EQ_INT(code, 1000);
    CHECK(reason == (const char *)normal + 2);
    CHECK_EQ_INT(reason_len, 0);

    const uint8_t bye[] = "\x0f\xa0goodbye \xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5";
    CHECK_EQ_INT(eddy__ws_parse_close(bye, sizeof(bye) - 1, &code, &reason, &reason_len), 0);
    CHECK_EQ_INT(code, 4000);
    CHECK_MEM(reason, reason_len, bye + 2, sizeof(bye) - 3);

    /* Codes that must not appear on the wire. */
    static const unsigned bad_codes[] = {0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535};
    for (size_t i = 0; i < sizeof(bad_codes) / sizeof(bad_codes[0]); i++) {
        uint8_t p[4] = {(uint8_t)(bad_codes[i] >> 8), (uint8_t)bad_codes[i], 'o', 'k'};
        CHECK_EQ_INT(eddy__ws_parse_close(p, 2, &code, &reason, &reason_len), 1002);
        CHECK_EQ_INT(eddy__ws_parse_close(p, 4, &code, &reason, &reason_len), 1002);
    }

    /* Reasons that are not valid UTF-8, including one cut in the middle of a character. */
    const uint8_t bad_reason[] = "\x03\xe8\xce\xba\xe1\xbd\xed\xa0\x80";
    CHECK_EQ_INT(
        eddy__ws_parse_close(bad_reason, sizeof(bad_reason) - 1, &code, &reason, &reason_len),
        1007);
    const uint8_t cut_reason[] = "\x03\xe8ok\xce";
    CHECK_EQ_INT(
        eddy__ws_parse_close(cut_reason, sizeof(cut_reason) - 1, &code, &reason, &reason_len),
        1007);
    const uint8_t ff_reason[] = "\x03\xe8\xff";
    CHECK_EQ_INT(
        eddy__ws_parse_close(ff_reason, sizeof(ff_reason) - 1, &code, &reason, &reason_len), 1007);
}

/* Packs, then unpacks the frame fed whole and growing a byte at a time. */
static void check_roundtrip(const uint8_t *payload, size_t len, int opcode, int flags)
{
    const uint8_t *key = flags & EDDY_WS_FLAG_MASK ? mask_key : NULL;
    ssize_t size = eddy_ws_pack(NULL, 0, payload, len, opcode, flags, key);
    size_t header_len = 2 +
                        (len < 126       ? 0
                         : len <= 0xffff ? 2
                                         : 8) +
                        (flags & EDDY_WS_FLAG_MASK ? 4 : 0);
    CHECK_EQ_INT(size, header_len + len);
    if (size < 0)
        return;

    uint8_t *frame = malloc((size_t)size);
    CHECK_EQ_INT(eddy_ws_pack(frame, (size_t)size, payload, len, opcode, flags, key), size);
    if (flags & EDDY_WS_FLAG_MASK) {
        CHECK_MEM(frame + header_len - 4, 4, mask_key, 4);
        /* The payload on the wire is masked (checked where masking changes something). */
        if (len > 0 && memcmp(frame + header_len, payload, len) == 0)
            CHECK(memcmp(mask_key, "\0\0\0\0", 4) == 0);
    } else {
        CHECK_MEM(frame + header_len, len, payload, len);
    }

    /* Every prefix is incomplete; the prefix itself is not modified. */
    uint8_t *copy = malloc((size_t)size);
    int wrong = 0;
    size_t step = len > 1000 ? 997 : 1; /* byte by byte for small frames */
    for (size_t n = 0; n < (size_t)size; n += step) {
        eddy_frame_t frame_out;
        memcpy(copy, frame, n);
        wrong += eddy_ws_unpack(copy, n, &frame_out) != EDDY_AGAIN;
        wrong += memcmp(copy, frame, n) != 0;
    }
    CHECK_EQ_INT(wrong, 0);

    eddy_frame_t f;
    memset(&f, 0xa5, sizeof(f));
    CHECK_EQ_INT(eddy_ws_unpack(frame, (size_t)size, &f), size);
    CHECK_EQ_INT(f.fd, 0);
    CHECK_EQ_INT(f.opcode, opcode);
    CHECK_EQ_INT(f.finish, (flags & EDDY_WS_FLAG_FIN) != 0);
    int header_flags = flags & (EDDY_WS_FLAG_FIN | EDDY_WS_FLAG_RSV1 | EDDY_WS_FLAG_RSV2 |
                                EDDY_WS_FLAG_RSV3 | EDDY_WS_FLAG_MASK);
    CHECK_EQ_INT(f.flags, header_flags);
    CHECK(f.data == (const char *)frame + header_len);
    CHECK_MEM(f.data, f.len, payload, len);
    if (opcode != EDDY_WS_OPCODE_CLOSE) {
        CHECK_EQ_INT(f.code, 0);
        CHECK(f.reason == NULL);
        CHECK_EQ_INT(f.reason_len, 0);
    }
    free(copy);
    free(frame);
}

static void test_pack_unpack_roundtrip(void)
{
    static const size_t lengths[] = {0, 1, 7, 8, 9, 125, 126, 127, 65535, 65536, 70001};
    uint8_t *payload = malloc(70001);
    for (size_t i = 0; i < 70001; i++)
        payload[i] = (uint8_t)test_rand();

    for (size_t i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
        for (int role = 0; role < 2; role++) {
            int mask = role ? EDDY_WS_FLAG_MASK : 0; /* client role masks */
            check_roundtrip(payload, lengths[i], EDDY_WS_OPCODE_BINARY, EDDY_WS_FLAG_FIN | mask);
            check_roundtrip(payload, lengths[i], EDDY_WS_OPCODE_TEXT, mask);
            check_roundtrip(payload, lengths[i], EDDY_WS_OPCODE_CONTINUATION,
                            EDDY_WS_FLAG_FIN | EDDY_WS_FLAG_RSV1 | mask);
            check_roundtrip(payload, lengths[i], EDDY_WS_OPCODE_BINARY,
                            EDDY_WS_FLAG_RSV2 | EDDY_WS_FLAG_RSV3 | mask);
            if (lengths[i] <= 125) {
                check_roundtrip(payload, lengths[i], EDDY_WS_OPCODE_PING, EDDY_WS_FLAG_FIN | mask);
                check_roundtrip(payload, lengths[i], EDDY_WS_OPCODE_PONG, EDDY_WS_FLAG_FIN | mask);
            }
        }
    }
    free(payload);

    /* Close frames, both roles. */
    const uint8_t close_payload[] = "\x03\xe8normal closure";
    for (int role = 0; role < 2; role++) {
        int flags = EDDY_WS_FLAG_FIN | (role ? EDDY_WS_FLAG_MASK : 0);
        uint8_t frame[64];
        eddy_frame_t f;
        ssize_t n = eddy_ws_pack(frame, sizeof(frame), close_payload, sizeof(close_payload) - 1,
                                 EDDY_WS_OPCODE_CLOSE, flags, mask_key);
        CHECK_EQ_INT(eddy_ws_unpack(frame, (size_t)n, &f), n);
        CHECK_EQ_INT(f.opcode, EDDY_WS_OPCODE_CLOSE);
        CHECK_EQ_INT(f.code, 1000);
        CHECK_MEM(f.reason, f.reason_len, "normal closure", 14);
        CHECK_MEM(f.data, f.len, close_payload, sizeof(close_payload) - 1);

        n = eddy_ws_pack(frame, sizeof(frame), NULL, 0, EDDY_WS_OPCODE_CLOSE, flags, mask_key);
        CHECK_EQ_INT(eddy_ws_unpack(frame, (size_t)n, &f), n);
        CHECK_EQ_INT(f.code, 1005);
        CHECK(f.reason != NULL && f.reason[0] == '\0');
        CHECK_EQ_INT(f.reason_len, 0);
        CHECK_EQ_INT(f.len, 0);
    }
}

static void test_pack_size_query_and_errors(void)
{
    uint8_t out[32];
    const char *hello = "hello";

    memset(out, 0xcc, sizeof(out));
    CHECK_EQ_INT(eddy_ws_pack(NULL, 0, hello, 5, EDDY_WS_OPCODE_TEXT, EDDY_WS_FLAG_FIN, NULL), 7);
    CHECK_EQ_INT(eddy_ws_pack(out, 6, hello, 5, EDDY_WS_OPCODE_TEXT, EDDY_WS_FLAG_FIN, NULL), 7);
    CHECK_EQ_INT(eddy_ws_pack(out, 10, hello, 5, EDDY_WS_OPCODE_TEXT,
                              EDDY_WS_FLAG_FIN | EDDY_WS_FLAG_MASK, mask_key),
                 11);
    /* Too small: nothing written. */
    int untouched = 1;
    for (size_t i = 0; i < sizeof(out); i++)
        untouched &= out[i] == 0xcc;
    CHECK(untouched);
    CHECK_EQ_INT(eddy_ws_pack(out, 7, hello, 5, EDDY_WS_OPCODE_TEXT, EDDY_WS_FLAG_FIN, NULL), 7);
    CHECK_MEM(out, 7, "\x81\x05hello", 7);
    CHECK_EQ_INT(out[7], 0xcc);
    /* Large frames are sized without a payload buffer being read. */
    CHECK_EQ_INT(eddy_ws_pack(NULL, 0, hello, 70000, EDDY_WS_OPCODE_BINARY, 0, NULL), 70010);
    CHECK_EQ_INT(
        eddy_ws_pack(NULL, 0, hello, 65535, EDDY_WS_OPCODE_BINARY, EDDY_WS_FLAG_MASK, mask_key),
        65543);
    /* The RFC 6455 5.7 examples. */
    CHECK_EQ_INT(eddy_ws_pack(out, sizeof(out), "Hello", 5, EDDY_WS_OPCODE_TEXT,
                              EDDY_WS_FLAG_FIN | EDDY_WS_FLAG_MASK, mask_key),
                 11);
    CHECK_MEM(out, 11, "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58", 11);
    CHECK_EQ_INT(eddy_ws_pack(out, sizeof(out), "Hel", 3, EDDY_WS_OPCODE_TEXT, 0, NULL), 5);
    CHECK_MEM(out, 5, "\x01\x03\x48\x65\x6c", 5);
    /* Payload already in the output buffer, after room for the largest header: it moves
     * down over itself. */
    memcpy(out + EDDY_WS_MAX_HEADER_LEN, "0123456789abcdef", 16);
    CHECK_EQ_INT(eddy_ws_pack(out, sizeof(out), out + EDDY_WS_MAX_HEADER_LEN, 16,
                              EDDY_WS_OPCODE_CONTINUATION, EDDY_WS_FLAG_FIN, NULL),
                 18);
    CHECK_MEM(out, 18,
              "\x80\x10"
              "0123456789abcdef",
              18);

    /* Errors. */
    static const int bad_opcodes[] = {-1, 3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf, 16, 0x81};
    for (size_t i = 0; i < sizeof(bad_opcodes) / sizeof(bad_opcodes[0]); i++)
        CHECK_EQ_INT(
            eddy_ws_pack(out, sizeof(out), hello, 5, bad_opcodes[i], EDDY_WS_FLAG_FIN, NULL),
            EDDY_EINVAL);
    CHECK_EQ_INT(eddy_ws_pack(NULL, 0, hello, 126, EDDY_WS_OPCODE_PING, EDDY_WS_FLAG_FIN, NULL),
                 EDDY_EINVAL);
    CHECK_EQ_INT(eddy_ws_pack(NULL, 0, hello, 125, EDDY_WS_OPCODE_PONG, EDDY_WS_FLAG_FIN, NULL),
                 127);
    CHECK_EQ_INT(eddy_ws_pack(out, sizeof(out), hello, 5, EDDY_WS_OPCODE_CLOSE, 0, NULL),
                 EDDY_EINVAL);
    CHECK_EQ_INT(eddy_ws_pack(out, sizeof(out), hello, 5, EDDY_WS_OPCODE_PING, 0, NULL),
                 EDDY_EINVAL);
    CHECK_EQ_INT(eddy_ws_pack(out, sizeof(out), hello, 5, EDDY_WS_OPCODE_TEXT,
                              EDDY_WS_FLAG_FIN | EDDY_WS_FLAG_MASK, NULL),
                 EDDY_EINVAL);
    CHECK_EQ_INT(
        eddy_ws_pack(out, sizeof(out), NULL, 5, EDDY_WS_OPCODE_TEXT, EDDY_WS_FLAG_FIN, NULL),
        EDDY_EINVAL);
    CHECK_EQ_INT(eddy_ws_pack(NULL, 0, hello, SIZE_MAX - 5, EDDY_WS_OPCODE_BINARY, 0, NULL),
                 EDDY_EINVAL);
}

struct unpack_case {
    const char *name;
    const char *bytes;
    size_t len;
    ssize_t rc;
};

#define U(name, lit, rc)                                                                           \
    {                                                                                              \
        name, lit, sizeof(lit) - 1, rc                                                             \
    }

static void test_unpack_errors(void)
{
    static const struct unpack_case cases[] = {
        U("reserved opcode 3", "\x83\x00", EDDY_EPROTO),
        U("reserved opcode 7", "\x87\x00", EDDY_EPROTO),
        U("reserved opcode B", "\x8b\x00", EDDY_EPROTO),
        U("reserved opcode F", "\x8f\x00", EDDY_EPROTO),
        U("ping 126 in 16 bits", "\x89\x7e\x00\x7e", EDDY_EPROTO),
        U("close 126 in 64 bits", "\x88\x7f\x00\x00\x00\x00\x00\x00\x00\x7e", EDDY_EPROTO),
        U("fragmented ping", "\x09\x00", EDDY_EPROTO),
        U("fragmented close", "\x08\x02\x03\xe8", EDDY_EPROTO),
        U("64-bit MSB", "\x82\x7f\x80\x00\x00\x00\x00\x00\x00\x00", EDDY_EPROTO),
        U("close payload 1 byte", "\x88\x01\x03", EDDY_EPROTO),
        U("close code 1005", "\x88\x02\x03\xed", EDDY_EPROTO),
        U("close code 999", "\x88\x02\x03\xe7", EDDY_EPROTO),
        U("close code 5000", "\x88\x02\x13\x88", EDDY_EPROTO),
        U("close reason not UTF-8", "\x88\x04\x03\xe8\xc0\x80", EDDY_EPROTO),
        U("close reason cut", "\x88\x03\x03\xe8\xce", EDDY_EPROTO),
        /* Incomplete frames. */
        U("empty", "", EDDY_AGAIN),
        U("one byte", "\x81", EDDY_AGAIN),
        U("16-bit length cut", "\x82\x7e\x01", EDDY_AGAIN),
        U("mask cut", "\x82\x85\x01\x02\x03", EDDY_AGAIN),
        U("payload cut", "\x82\x05hell", EDDY_AGAIN),
        U("huge payload", "\x82\x7f\x00\x00\x01\x00\x00\x00\x00\x00", EDDY_AGAIN),
        U("max payload", "\x82\x7f\x7f\xff\xff\xff\xff\xff\xff\xff", EDDY_AGAIN),
        /* Accepted: unpack has no role and no negotiated extensions. */
        U("RSV bits", "\xf2\x00", 2),
        U("unmasked close", "\x88\x02\x03\xe8", 4),
        U("non-minimal length", "\x82\x7e\x00\x01x", 5),
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct unpack_case *c = &cases[i];
        uint8_t *buf = malloc(c->len ? c->len : 1);
        memcpy(buf, c->bytes, c->len);
        eddy_frame_t f;
        ssize_t rc = eddy_ws_unpack(buf, c->len, &f);
        if (rc != c->rc)
            fprintf(stderr, "unpack case \"%s\"\n", c->name);
        CHECK_EQ_INT(rc, c->rc);
        free(buf);
    }
}

static void test_unpack_details(void)
{
    eddy_frame_t f;

    /* RSV bits show up as flags. */
    uint8_t rsv[] = "\x72\x00";
    CHECK_EQ_INT(eddy_ws_unpack(rsv, 2, &f), 2);
    CHECK_EQ_INT(f.flags, EDDY_WS_FLAG_RSV1 | EDDY_WS_FLAG_RSV2 | EDDY_WS_FLAG_RSV3);
    CHECK(!f.finish);

    /* Two frames back to back: each call takes exactly one, unmasking in place. */
    uint8_t two[] = "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"
                    "\x82\x03"
                    "abc";
    CHECK_EQ_INT(eddy_ws_unpack(two, sizeof(two) - 1, &f), 11);
    CHECK_MEM(f.data, f.len, "Hello", 5);
    CHECK_EQ_INT(f.flags, EDDY_WS_FLAG_FIN | EDDY_WS_FLAG_MASK);
    CHECK_MEM(two + 11, 5,
              "\x82\x03"
              "abc",
              5);
    CHECK_EQ_INT(eddy_ws_unpack(two + 11, sizeof(two) - 12, &f), 5);
    CHECK_EQ_INT(f.opcode, EDDY_WS_OPCODE_BINARY);
    CHECK_MEM(f.data, f.len, "abc", 3);

    /* A masked close frame with a reason. */
    uint8_t close[16];
    ssize_t n = eddy_ws_pack(close, sizeof(close), "\x0b\xb8why", 5, EDDY_WS_OPCODE_CLOSE,
                             EDDY_WS_FLAG_FIN | EDDY_WS_FLAG_MASK, mask_key);
    CHECK_EQ_INT(eddy_ws_unpack(close, (size_t)n, &f), n);
    CHECK_EQ_INT(f.code, 3000);
    CHECK_MEM(f.reason, f.reason_len, "why", 3);
    CHECK(f.reason == f.data + 2);
}

/* Random frames: header parse agrees with the pack that produced it. */
static void test_random_frames(void)
{
    static const int opcodes[] = {0, 1, 2, 9, 10};
    uint8_t payload[300], frame[320];
    int wrong = 0;
    for (int trial = 0; trial < 3000; trial++) {
        int opcode = opcodes[test_rand() % 5];
        size_t len = (size_t)(test_rand() % (opcode >= 8 ? 126 : sizeof(payload)));
        int flags = (int)(test_rand() & (EDDY_WS_FLAG_FIN | EDDY_WS_FLAG_RSV1 | EDDY_WS_FLAG_RSV2 |
                                         EDDY_WS_FLAG_RSV3 | EDDY_WS_FLAG_MASK));
        if (opcode >= 8)
            flags |= EDDY_WS_FLAG_FIN;
        uint8_t key[4];
        for (int k = 0; k < 4; k++)
            key[k] = (uint8_t)test_rand();
        for (size_t i = 0; i < len; i++)
            payload[i] = (uint8_t)test_rand();

        ssize_t n = eddy_ws_pack(frame, sizeof(frame), payload, len, opcode, flags, key);
        eddy__ws_header_t hdr;
        ssize_t hl = eddy__ws_parse_header(frame, (size_t)n, &hdr);
        wrong += hl < 2 || hdr.payload_len != len || hdr.opcode != opcode ||
                 hdr.fin != ((flags & EDDY_WS_FLAG_FIN) != 0) ||
                 hdr.masked != ((flags & EDDY_WS_FLAG_MASK) != 0);

        /* Split the frame at a random point: the first part is always incomplete. */
        size_t cut = (size_t)(test_rand() % (size_t)n);
        eddy_frame_t f;
        wrong += eddy_ws_unpack(frame, cut, &f) != EDDY_AGAIN;
        wrong += eddy_ws_unpack(frame, (size_t)n, &f) != n;
        wrong += f.len != len || memcmp(f.data, payload, len) != 0;
    }
    CHECK_EQ_INT(wrong, 0);
}

int main(void)
{
    test_parse_header_lengths();
    test_parse_header_bits();
    test_check_header();
    test_write_header();
    test_mask();
    test_close_code_valid();
    test_parse_close();
    test_pack_unpack_roundtrip();
    test_pack_size_query_and_errors();
    test_unpack_errors();
    test_unpack_details();
    test_random_frames();
    return test_report("test_ws_codec");
}

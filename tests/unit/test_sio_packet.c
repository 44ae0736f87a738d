/* SPDX-License-Identifier: MIT */
/*
 * Socket.IO packet codec (rt/sio_packet.c). The decode table below is also read by
 * tests/clients/sio_packet_check.js, which runs every row through the reference parser
 * (socket.io-parser 4.2 in tests/clients/node_modules) and fails if the reference disagrees:
 *   OK(input, type, nsp, id)  the reference accepts it with that type, namespace and id
 *                             (id -1: none);
 *   BAD(input, error)         the reference rejects it too;
 *   STRICT(input, error)      a documented difference (sio_packet.h): we reject, the
 *                             reference accepts.
 * Rows whose bytes are not UTF-8 are skipped by the script (the reference sees text).
 */
#include <stdbool.h>

#include "sio_packet.h"
#include "test.h"

typedef struct row {
    const char *in;
    size_t len;
    int rc;
    int type;
    const char *nsp;
    long long id;
    bool strict;
} row_t;

#define OK(s, t, n, i)                                                                             \
    {                                                                                              \
        s, sizeof(s) - 1, 0, t, n, i, false                                                        \
    }
#define BAD(s, e)                                                                                  \
    {                                                                                              \
        s, sizeof(s) - 1, e, -1, NULL, -1, false                                                   \
    }
#define STRICT(s, e)                                                                               \
    {                                                                                              \
        s, sizeof(s) - 1, e, -1, NULL, -1, true                                                    \
    }

#define PH0     "{\"_placeholder\":true,\"num\":0}"
#define PH1     "{\"_placeholder\":true,\"num\":1}"
#define DEEP63  "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
#define CLOSE63 "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"

static const row_t rows[] = {
    /* CONNECT */
    OK("0", SIO_CONNECT, "/", -1),
    OK("0{}", SIO_CONNECT, "/", -1),
    OK("0{\"token\":\"123\"}", SIO_CONNECT, "/", -1),
    OK("0/admin,{\"token\":\"123\"}", SIO_CONNECT, "/admin", -1),
    OK("0/admin,", SIO_CONNECT, "/admin", -1),
    OK("0/admin", SIO_CONNECT, "/admin", -1),
    OK("0/admin{}", SIO_CONNECT, "/admin{}", -1),
    OK("0/admin,{\"a\":1,\"a\":2}", SIO_CONNECT, "/admin", -1),
    OK("01", SIO_CONNECT, "/", 1),
    STRICT("0 {} ", SIO_EID),
    OK("0/\xc3\xa9,{}", SIO_CONNECT, "/\xc3\xa9", -1),
    BAD("0[]", SIO_ECONNECT),
    BAD("0\"x\"", SIO_ECONNECT),
    BAD("0null", SIO_ECONNECT),
    BAD("01.5", SIO_EJSON),
    BAD("0x", SIO_EJSON),
    BAD("0{", SIO_EJSON),
    BAD("0{\"a\":}", SIO_EJSON),
    BAD("0{'a':1}", SIO_EJSON),
    /* DISCONNECT */
    OK("1", SIO_DISCONNECT, "/", -1),
    OK("1/admin,", SIO_DISCONNECT, "/admin", -1),
    OK("12", SIO_DISCONNECT, "/", 2),
    BAD("1{}", SIO_EDISCONNECT),
    BAD("1/admin,x", SIO_EDISCONNECT),
    STRICT("1 ", SIO_EID),
    BAD("1[]", SIO_EDISCONNECT),
    /* EVENT */
    OK("2[\"hey\",\"Jude\"]", SIO_EVENT, "/", -1),
    OK("2[\"message\"]", SIO_EVENT, "/", -1),
    OK("2[1]", SIO_EVENT, "/", -1),
    OK("2[-1.5e3,\"x\"]", SIO_EVENT, "/", -1),
    OK("2/admin,1[\"tellme\"]", SIO_EVENT, "/admin", 1),
    OK("2456[\"message-with-ack\",1,\"2\"]", SIO_EVENT, "/", 456),
    OK("2", SIO_EVENT, "/", -1),
    OK("2/admin,", SIO_EVENT, "/admin", -1),
    OK("20", SIO_EVENT, "/", 0),
    OK("2[\"a\"] \n", SIO_EVENT, "/", -1),
    OK("2[ \"a\" , 1 ] ", SIO_EVENT, "/", -1),
    STRICT("2 [\"a\"]", SIO_EID),
    STRICT("2/admin, [\"a\"]", SIO_EID),
    OK("2[\"disconnecting2\"]", SIO_EVENT, "/", -1),
    OK("2[\"Connect\"]", SIO_EVENT, "/", -1),
    OK("2[\" connect\"]", SIO_EVENT, "/", -1),
    OK("2[\"\"]", SIO_EVENT, "/", -1),
    OK("2[\"\\u0041\",{\"a\":[1,{\"b\":null}]},true,false,null]", SIO_EVENT, "/", -1),
    OK("2[\"a\",\"\\ud800\"]", SIO_EVENT, "/", -1),
    OK("2[\"\xf0\x9f\x98\x80\",\"\xe2\x82\xac\"]", SIO_EVENT, "/", -1),
    OK("2/,[\"a\"]", SIO_EVENT, "/", -1),
    OK("2/a/b,[\"a\"]", SIO_EVENT, "/a/b", -1),
    OK("2/a[\"x\"]", SIO_EVENT, "/a[\"x\"]", -1),
    OK("29007199254740991[\"a\"]", SIO_EVENT, "/", 9007199254740991LL),
    OK("2[\"a\"," DEEP63 "1" CLOSE63 "]", SIO_EVENT, "/", -1),
    BAD("2{}", SIO_EEVENT),
    BAD("2[]", SIO_EEVENT),
    BAD("2[null]", SIO_EEVENT),
    BAD("2[true]", SIO_EEVENT),
    BAD("2[[\"a\"]]", SIO_EEVENT),
    BAD("2[{\"a\":1},\"x\"]", SIO_EEVENT),
    BAD("2\"a\"", SIO_EEVENT),
    BAD("2abc[\"a\"]", SIO_EJSON),
    BAD("2[\"a\"", SIO_EJSON),
    BAD("2[\"a\"]x", SIO_EJSON),
    BAD("2[\"a\"]]", SIO_EJSON),
    BAD("2[\"a\",]", SIO_EJSON),
    BAD("2[\"a\" 1]", SIO_EJSON),
    BAD("2[\"a\",01]", SIO_EJSON),
    BAD("2[\"a\",1.]", SIO_EJSON),
    BAD("2[\"a\",+1]", SIO_EJSON),
    BAD("2[\"a\",NaN]", SIO_EJSON),
    BAD("2[\"a\",tru]", SIO_EJSON),
    BAD("2[\"a\\x\"]", SIO_EJSON),
    BAD("2[\"a\\u12\"]", SIO_EJSON),
    BAD("2[\"a\tb\"]", SIO_EJSON),
    BAD("2[\"connect\"]", SIO_ERESERVED),
    BAD("2[\"connect_error\"]", SIO_ERESERVED),
    BAD("2[\"disconnect\"]", SIO_ERESERVED),
    BAD("2[\"disconnecting\"]", SIO_ERESERVED),
    BAD("2[\"newListener\"]", SIO_ERESERVED),
    BAD("2[\"removeListener\",1]", SIO_ERESERVED),
    BAD("2[\"conn\\u0065ct\"]", SIO_ERESERVED),
    BAD("2[\"\\u0063onnect\"]", SIO_ERESERVED),
    BAD("2[\"\\u0072emoveListener\"]", SIO_ERESERVED),
    OK("2[\"\\u0063onnected\"]", SIO_EVENT, "/", -1),
    BAD("2/admin,3[\"disconnect\"]", SIO_ERESERVED),
    STRICT("29007199254740992[\"a\"]", SIO_EID),
    STRICT("299999999999999999999999[\"a\"]", SIO_EID),
    STRICT("2 1[\"a\"]", SIO_EID),
    STRICT("2[\"a\"," DEEP63 "[1]" CLOSE63 "]", SIO_EJSON),
    BAD("2/\xff,[\"a\"]", SIO_EUTF8),
    BAD("2[\"\xc3\"]", SIO_EJSON),
    BAD("2[\"\xed\xa0\x80\"]", SIO_EJSON),
    /* ACK */
    OK("3456[1,\"2\"]", SIO_ACK, "/", 456),
    OK("3/admin,7[]", SIO_ACK, "/admin", 7),
    OK("3", SIO_ACK, "/", -1),
    OK("31[null]", SIO_ACK, "/", 1),
    BAD("31{}", SIO_EACK),
    BAD("3\"a\"", SIO_EACK),
    BAD("3/admin,1{}", SIO_EACK),
    STRICT("31 2", SIO_EID),
    STRICT("31\t[]", SIO_EID),
    /* CONNECT_ERROR */
    OK("4{\"message\":\"Not authorized\"}", SIO_CONNECT_ERROR, "/", -1),
    OK("4\"str\"", SIO_CONNECT_ERROR, "/", -1),
    OK("4/random,{\"message\":\"Invalid namespace\"}", SIO_CONNECT_ERROR, "/random", -1),
    OK("4", SIO_CONNECT_ERROR, "/", -1),
    OK("41", SIO_CONNECT_ERROR, "/", 1),
    BAD("4[]", SIO_ECONNECT_ERROR),
    BAD("4null", SIO_ECONNECT_ERROR),
    BAD("4abc", SIO_EJSON),
    /* BINARY_EVENT / BINARY_ACK */
    OK("51-[\"message\"," PH0 "]", SIO_BINARY_EVENT, "/", -1),
    OK("52-/admin,3[\"a\"," PH0 "," PH1 "]", SIO_BINARY_EVENT, "/admin", 3),
    OK("61-/admin,1[" PH0 "]", SIO_BINARY_ACK, "/admin", 1),
    OK("610-[]", SIO_BINARY_ACK, "/", -1),
    OK("501-[\"a\"]", SIO_BINARY_EVENT, "/", -1),
    OK("51-", SIO_BINARY_EVENT, "/", -1),
    OK("51-[\"a\"]", SIO_BINARY_EVENT, "/", -1),
    OK("51-/x,", SIO_BINARY_EVENT, "/x", -1),
    BAD("5[\"a\"]", SIO_EATTACHMENTS),
    BAD("5-[\"a\"]", SIO_EATTACHMENTS),
    BAD("50-[\"a\"]", SIO_EATTACHMENTS),
    BAD("5a-[\"a\"]", SIO_EATTACHMENTS),
    BAD("51", SIO_EATTACHMENTS),
    BAD("5", SIO_EATTACHMENTS),
    BAD("511-[\"a\"]", SIO_ETOOMANY),
    BAD("599999999999999999999-[\"a\"]", SIO_ETOOMANY),
    BAD("51-[\"connect\"]", SIO_ERESERVED),
    BAD("51-{}", SIO_EEVENT),
    BAD("61-{}", SIO_EACK),
    STRICT("5 1-[\"a\"]", SIO_EATTACHMENTS),
    STRICT("51.0-[\"a\"]", SIO_EATTACHMENTS),
    STRICT("50x1-[\"a\"]", SIO_EATTACHMENTS),
    /* type */
    STRICT("", SIO_ETYPE),
    STRICT(" 0", SIO_ETYPE),
    BAD("7", SIO_ETYPE),
    BAD("9[\"a\"]", SIO_ETYPE),
    BAD("a", SIO_ETYPE),
    BAD("abc", SIO_ETYPE),
    BAD("-1", SIO_ETYPE),
};

/* Decodes from an exact-size heap copy, so a sanitizer build catches any read past len. */
static int decode_copy(const char *in, size_t len, unsigned max, sio_packet_t *p, char **copy)
{
    *copy = malloc(len ? len : 1);
    memcpy(*copy, in, len);
    return sio_packet_decode(*copy, len, max, p);
}

static void test_table(void)
{
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const row_t *r = &rows[i];
        sio_packet_t p;
        char *copy;
        int rc = decode_copy(r->in, r->len, SIO_MAX_ATTACHMENTS_DEFAULT, &p, &copy);
        if (rc != r->rc)
            fprintf(stderr, "row %zu: \"%s\" -> %d (%s), expected %d\n", i, r->in, rc,
                    sio_strerror(rc), r->rc);
        CHECK_EQ_INT(rc, r->rc);
        if (rc == 0 && r->rc == 0) {
            CHECK_EQ_INT(p.type, r->type);
            CHECK_MEM(p.nsp, p.nsp_len, r->nsp, strlen(r->nsp));
            CHECK_EQ_INT(p.has_id ? (long long)p.id : -1, r->id);
        }
        free(copy);
        /* Every prefix decodes without reading past its end (rc is whatever it is). */
        for (size_t k = 0; k < r->len; k++) {
            rc = decode_copy(r->in, k, SIO_MAX_ATTACHMENTS_DEFAULT, &p, &copy);
            CHECK(rc <= 0);
            free(copy);
        }
    }
}

static void test_fields(void)
{
    sio_packet_t p;
    const char *s = "2/chat,12[\"message\",\"hello\",{\"a\":[1,2]}]";
    CHECK_EQ_INT(sio_packet_decode(s, strlen(s), 10, &p), 0);
    CHECK_EQ_INT(p.type, SIO_EVENT);
    CHECK_EQ_INT(p.attachments, 0);
    CHECK_MEM(p.nsp, p.nsp_len, "/chat", 5);
    CHECK(p.has_id && p.id == 12);
    CHECK_EQ_INT(p.data.type, RT_JSON_ARRAY);
    CHECK_MEM(p.data.ptr, p.data.len, s + 9, strlen(s) - 9);
    CHECK_EQ_INT(p.event.type, RT_JSON_STRING);
    CHECK_MEM(p.event.ptr, p.event.len, "\"message\"", 9);
    CHECK_MEM(p.args, p.args_len, "\"hello\",{\"a\":[1,2]}", 19);
    rt_json_iter_t it;
    rt_json_value_t v;
    rt_json_iter_init_list(&it, p.args, p.args_len);
    CHECK(rt_json_iter_next(&it, NULL, &v) && v.type == RT_JSON_STRING);
    CHECK(rt_json_iter_next(&it, NULL, &v) && v.type == RT_JSON_OBJECT);
    CHECK(!rt_json_iter_next(&it, NULL, &v));

    /* Whitespace inside the array: args keep it, iteration skips it. */
    s = "2[ \"a\" , 1 , 2 ] ";
    CHECK_EQ_INT(sio_packet_decode(s, strlen(s), 10, &p), 0);
    CHECK_MEM(p.event.ptr, p.event.len, "\"a\"", 3);
    CHECK_MEM(p.args, p.args_len, " 1 , 2 ", 7);
    rt_json_iter_init_list(&it, p.args, p.args_len);
    CHECK(rt_json_iter_next(&it, NULL, &v) && v.len == 1 && v.ptr[0] == '1');
    CHECK(rt_json_iter_next(&it, NULL, &v) && v.len == 1 && v.ptr[0] == '2');
    CHECK(!rt_json_iter_next(&it, NULL, &v));

    /* A name only: no args. A number as the event. */
    CHECK_EQ_INT(sio_packet_decode("2[\"a\"]", 6, 10, &p), 0);
    CHECK_EQ_INT(p.args_len, 0);
    CHECK_EQ_INT(sio_packet_decode("2[7,8]", 6, 10, &p), 0);
    CHECK_EQ_INT(p.event.type, RT_JSON_NUMBER);
    CHECK_MEM(p.args, p.args_len, "8", 1);

    /* ACK: args are all elements. */
    CHECK_EQ_INT(sio_packet_decode("35[1,\"2\"]", 9, 10, &p), 0);
    CHECK_EQ_INT(p.event.type, RT_JSON_NONE);
    CHECK_MEM(p.args, p.args_len, "1,\"2\"", 5);

    /* No payload: data NONE. */
    CHECK_EQ_INT(sio_packet_decode("0/admin,", 8, 10, &p), 0);
    CHECK_EQ_INT(p.data.type, RT_JSON_NONE);
    CHECK(!p.has_id);
    CHECK_EQ_INT(sio_packet_decode("0", 1, 10, &p), 0);
    CHECK_MEM(p.nsp, p.nsp_len, "/", 1);

    /* Attachments and the max_attachments argument. */
    s = "53-[\"a\"]";
    CHECK_EQ_INT(sio_packet_decode(s, strlen(s), 10, &p), 0);
    CHECK_EQ_INT(p.attachments, 3);
    CHECK_EQ_INT(sio_packet_decode(s, strlen(s), 2, &p), SIO_ETOOMANY);
    CHECK_EQ_INT(sio_packet_decode(s, strlen(s), 3, &p), 0);
    CHECK_EQ_INT(sio_packet_decode("5100-[\"a\"]", 10, 100, &p), 0);
    CHECK_EQ_INT(p.attachments, 100);
}

#define CHECK_OUT(out, n, lit) CHECK_MEM(out, n, lit, sizeof(lit) - 1)

static void test_encode(void)
{
    char buf[256];
    size_t n;
    /* The reference Encoder's output for the same packets (checked by the node script). */
    n = sio_encode_event(buf, sizeof(buf), 0, NULL, 0, 0, -1, "hey", 3, "\"Jude\"", 6);
    CHECK_OUT(buf, n, "2[\"hey\",\"Jude\"]");
    n = sio_encode_event(buf, sizeof(buf), SIO_ENC_EIO_MESSAGE, "/", 1, 0, -1, "message", 7, "", 0);
    CHECK_OUT(buf, n, "42[\"message\"]");
    n = sio_encode_event(buf, sizeof(buf), 0, "/admin", 6, 0, 456, "a\"b\n", 4, "1,\"2\"", 5);
    CHECK_OUT(buf, n, "2/admin,456[\"a\\\"b\\n\",1,\"2\"]");
    n = sio_encode_event(buf, sizeof(buf), SIO_ENC_EIO_MESSAGE, "/admin", 6, 2, -1, "m", 1,
                         PH0 "," PH1, strlen(PH0 "," PH1));
    CHECK_STR((buf[n] = 0, buf), "452-/admin,[\"m\"," PH0 "," PH1 "]");
    n = sio_encode_ack(buf, sizeof(buf), 0, NULL, 0, 0, 456, "1,\"2\"", 5);
    CHECK_OUT(buf, n, "3456[1,\"2\"]");
    n = sio_encode_ack(buf, sizeof(buf), SIO_ENC_EIO_MESSAGE, "/admin", 6, 1, 1, PH0, strlen(PH0));
    CHECK_STR((buf[n] = 0, buf), "461-/admin,1[" PH0 "]");
    n = sio_encode_ack(buf, sizeof(buf), 0, NULL, 0, 0, 0, "", 0);
    CHECK_OUT(buf, n, "30[]");
    n = sio_encode(buf, sizeof(buf), SIO_ENC_EIO_MESSAGE, SIO_CONNECT, "/", 1, 0, -1,
                   "{\"sid\":\"x\"}", 11);
    CHECK_OUT(buf, n, "40{\"sid\":\"x\"}");
    n = sio_encode(buf, sizeof(buf), 0, SIO_CONNECT_ERROR, "/random", 7, 0, -1,
                   "{\"message\":\"Invalid namespace\"}", 31);
    CHECK_OUT(buf, n, "4/random,{\"message\":\"Invalid namespace\"}");
    n = sio_encode(buf, sizeof(buf), SIO_ENC_EIO_MESSAGE, SIO_DISCONNECT, "/admin", 6, 0, -1, NULL,
                   0);
    CHECK_OUT(buf, n, "41/admin,");
    n = sio_encode(buf, sizeof(buf), 0, SIO_DISCONNECT, NULL, 0, 0, -1, NULL, 0);
    CHECK_OUT(buf, n, "1");
    n = sio_encode(buf, sizeof(buf), 0, SIO_BINARY_EVENT, NULL, 0, 10, 9007199254740991LL,
                   "[\"a\"]", 5);
    CHECK_OUT(buf, n, "510-9007199254740991[\"a\"]");
    /* Attachments are ignored for non-binary types. */
    n = sio_encode(buf, sizeof(buf), 0, SIO_EVENT, NULL, 0, 3, -1, "[\"a\"]", 5);
    CHECK_OUT(buf, n, "2[\"a\"]");
    n = sio_encode_event(buf, sizeof(buf), 0, NULL, 0, 0, -1, "\x01\x1f\x7f", 3, "", 0);
    CHECK_OUT(buf, n, "2[\"\\u0001\\u001f\x7f\"]");

    /* Measuring, and nothing written when it does not fit. */
    size_t need = sio_encode_event(NULL, 0, SIO_ENC_EIO_MESSAGE, "/a", 2, 0, 5, "ev", 2, "1", 1);
    CHECK_EQ_INT(need, strlen("42/a,5[\"ev\",1]"));
    memset(buf, 'Z', sizeof(buf));
    CHECK_EQ_INT(
        sio_encode_event(buf, need - 1, SIO_ENC_EIO_MESSAGE, "/a", 2, 0, 5, "ev", 2, "1", 1), need);
    CHECK_EQ_INT(buf[0], 'Z');
    CHECK_EQ_INT(sio_encode_ack(buf, 3, 0, NULL, 0, 0, 5, "1", 1), 5);
    CHECK_EQ_INT(buf[0], 'Z');
    CHECK_EQ_INT(sio_encode(buf, 2, 0, SIO_CONNECT, NULL, 0, 0, -1, "{}", 2), 3);
    CHECK_EQ_INT(buf[0], 'Z');
    CHECK_EQ_INT(sio_encode_event(buf, need, SIO_ENC_EIO_MESSAGE, "/a", 2, 0, 5, "ev", 2, "1", 1),
                 need);
    CHECK_MEM(buf, need, "42/a,5[\"ev\",1]", need);
    CHECK_EQ_INT(buf[need], 'Z');
}

/* Encode then decode: the fields come back. */
static void test_roundtrip(void)
{
    static const char *const names[] = {"message", "a b",         "\xc3\xa9t\xc3\xa9",
                                        "q\"uote", "back\\slash", "tab\t"};
    static const char *const nsps[] = {"/", "/admin", "/a,b"};
    char buf[256], name[64];
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        for (size_t j = 0; j < sizeof(nsps) / sizeof(nsps[0]); j++) {
            for (int id = -1; id <= 1000; id += 1001 / 3) {
                sio_packet_t p;
                size_t n =
                    sio_encode_event(buf, sizeof(buf), 0, nsps[j], strlen(nsps[j]), (unsigned)j, id,
                                     names[i], strlen(names[i]), "1,[2]", 5);
                CHECK(n < sizeof(buf));
                int rc = sio_packet_decode(buf, n, 10, &p);
                if (strchr(nsps[j], ',')) {
                    /* A comma ends the namespace: "/a,b" cannot round-trip (nor does it in the
                     * reference). */
                    CHECK(rc != 0 || p.nsp_len != strlen(nsps[j]));
                    continue;
                }
                CHECK_EQ_INT(rc, 0);
                CHECK_EQ_INT(p.type, j ? SIO_BINARY_EVENT : SIO_EVENT);
                CHECK_EQ_INT(p.attachments, j);
                CHECK_MEM(p.nsp, p.nsp_len, nsps[j], strlen(nsps[j]));
                CHECK_EQ_INT(p.has_id ? (long long)p.id : -1, id);
                long k = rt_json_unescape(&p.event, name, sizeof(name));
                CHECK_MEM(name, k < 0 ? 0 : (size_t)k, names[i], strlen(names[i]));
                CHECK_MEM(p.args, p.args_len, "1,[2]", 5);
            }
        }
    }
}

static void test_strerror(void)
{
    for (int e = 0; e >= SIO_EACK; e--)
        CHECK(strcmp(sio_strerror(e), "unknown Socket.IO packet error") != 0);
    CHECK_STR(sio_strerror(-100), "unknown Socket.IO packet error");
}

int main(void)
{
    test_table();
    test_fields();
    test_encode();
    test_roundtrip();
    test_strerror();
    return test_report("test_sio_packet");
}

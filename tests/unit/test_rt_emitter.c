/* SPDX-License-Identifier: MIT */
/*
 * Socket.IO's Redis emitter format (rt/rt_emitter.h): messages packed here with msgpack-c
 * as @socket.io/redis-emitter packs them (notepack: strings as str, Buffers as bin),
 * decoded into namespace, rooms, flags and Socket.IO JSON arguments with placeholders;
 * every malformed class refused; every truncation of a valid message refused.
 */
#include <msgpack.h>
#include <string.h>

#include "eddy.h"
#include "rt_emitter.h"
#include "test.h"

static void pk_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

/* [uid, {type, data: [event, ...], nsp}, opts] with data written by body(). */
static void pack_msg(msgpack_sbuffer *sb, int type, const char *nsp, void (*body)(msgpack_packer *),
                     size_t nargs, void (*opts)(msgpack_packer *))
{
    msgpack_sbuffer_init(sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, opts ? 3 : 2);
    pk_str(&pk, "emitter");
    msgpack_pack_map(&pk, nsp ? 3 : 2);
    pk_str(&pk, "type");
    msgpack_pack_int(&pk, type);
    pk_str(&pk, "data");
    msgpack_pack_array(&pk, nargs);
    body(&pk);
    if (nsp) {
        pk_str(&pk, "nsp");
        pk_str(&pk, nsp);
    }
    if (opts)
        opts(&pk);
}

static void body_plain(msgpack_packer *pk)
{
    pk_str(pk, "hello");
    msgpack_pack_int(pk, 1);
    pk_str(pk, "a\"b\n\xc3\xa9");
    msgpack_pack_map(pk, 1);
    pk_str(pk, "a");
    msgpack_pack_array(pk, 5);
    msgpack_pack_true(pk);
    msgpack_pack_nil(pk);
    msgpack_pack_int(pk, -3);
    msgpack_pack_double(pk, 0.1);
    msgpack_pack_uint64(pk, 18446744073709551615ull);
}

static void opts_rooms(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 3);
    pk_str(pk, "rooms");
    msgpack_pack_array(pk, 2);
    pk_str(pk, "r1");
    pk_str(pk, "r2");
    pk_str(pk, "except");
    msgpack_pack_array(pk, 1);
    pk_str(pk, "x");
    pk_str(pk, "flags");
    msgpack_pack_map(pk, 2);
    pk_str(pk, "volatile");
    msgpack_pack_true(pk);
    pk_str(pk, "compress");
    msgpack_pack_false(pk);
}

static void body_binary(msgpack_packer *pk)
{
    pk_str(pk, "bin");
    msgpack_pack_bin(pk, 3);
    msgpack_pack_bin_body(pk, "\x00\x01\xff", 3);
    msgpack_pack_map(pk, 1);
    pk_str(pk, "b");
    msgpack_pack_bin(pk, 0);
}

static void opts_empty(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 2);
    pk_str(pk, "rooms");
    msgpack_pack_array(pk, 0);
    pk_str(pk, "except");
    msgpack_pack_array(pk, 0);
}

static void test_decode(void)
{
    msgpack_sbuffer sb;
    rt_emitter_msg_t *m;
    pack_msg(&sb, 2, "/chat", body_plain, 4, opts_rooms);
    CHECK_EQ_INT(rt_emitter_decode(sb.data, sb.size, &m), 0);
    if (m) {
        CHECK_STR(m->uid, "emitter");
        CHECK_STR(m->nsp, "/chat");
        CHECK_EQ_INT(m->nrooms, 2);
        CHECK_STR(m->rooms[0], "r1");
        CHECK_STR(m->rooms[1], "r2");
        CHECK_EQ_INT(m->nexcept, 1);
        CHECK_STR(m->except[0], "x");
        CHECK(m->volatile_flag);
        CHECK_EQ_INT(m->compress, 0);
        CHECK_STR(m->args, "[\"hello\",1,\"a\\\"b\\n\xc3\xa9\",{\"a\":[true,null,-3,0.1,"
                           "18446744073709551615]}]");
        CHECK_EQ_INT(m->args_len, strlen(m->args));
        CHECK_EQ_INT(m->nattachments, 0);
        rt_emitter_msg_free(m);
    }
    /* Every truncation is refused, never read past. */
    int refused = 1;
    for (size_t n = 0; n < sb.size; n++) {
        char *copy = malloc(n ? n : 1);
        memcpy(copy, sb.data, n);
        refused &= rt_emitter_decode(copy, n, &m) == EDDY_EPROTO && m == NULL;
        free(copy);
    }
    CHECK(refused);
    msgpack_sbuffer_destroy(&sb);

    /* Binary values: placeholders in order, attachments copied. */
    pack_msg(&sb, 5, NULL, body_binary, 3, opts_empty);
    CHECK_EQ_INT(rt_emitter_decode(sb.data, sb.size, &m), 0);
    if (m) {
        CHECK_STR(m->nsp, "/");
        CHECK_EQ_INT(m->nrooms, 0);
        CHECK(!m->volatile_flag);
        CHECK_EQ_INT(m->compress, -1);
        CHECK_STR(m->args, "[\"bin\",{\"_placeholder\":true,\"num\":0},{\"b\":{\"_placeholder\":"
                           "true,\"num\":1}}]");
        CHECK_EQ_INT(m->nattachments, 2);
        CHECK_MEM(m->attachments[0], m->attachment_lens[0], "\x00\x01\xff", 3);
        CHECK_EQ_INT(m->attachment_lens[1], 0);
        rt_emitter_msg_free(m);
    }
    msgpack_sbuffer_destroy(&sb);

    /* Without options. */
    pack_msg(&sb, 2, "/", body_plain, 4, NULL);
    CHECK_EQ_INT(rt_emitter_decode(sb.data, sb.size, &m), 0);
    if (m) {
        CHECK_EQ_INT(m->nrooms + m->nexcept, 0);
        rt_emitter_msg_free(m);
    }
    /* Trailing bytes. */
    msgpack_sbuffer_write(&sb, "\xc0", 1);
    CHECK_EQ_INT(rt_emitter_decode(sb.data, sb.size, &m), EDDY_EPROTO);
    msgpack_sbuffer_destroy(&sb);
}

static void body_number_event(msgpack_packer *pk)
{
    msgpack_pack_int(pk, 1);
}

static void body_bad_utf8(msgpack_packer *pk)
{
    pk_str(pk, "e");
    pk_str(pk, "\xc3");
}

static void body_int_key(msgpack_packer *pk)
{
    pk_str(pk, "e");
    msgpack_pack_map(pk, 1);
    msgpack_pack_int(pk, 1);
    msgpack_pack_int(pk, 2);
}

static void body_ext(msgpack_packer *pk)
{
    pk_str(pk, "e");
    msgpack_pack_ext(pk, 1, 5);
    msgpack_pack_ext_body(pk, "x", 1);
}

static void body_deep(msgpack_packer *pk)
{
    pk_str(pk, "e");
    for (int i = 0; i < 40; i++)
        msgpack_pack_array(pk, 1);
    msgpack_pack_nil(pk);
}

static void body_placeholder_key(msgpack_packer *pk)
{
    pk_str(pk, "e");
    msgpack_pack_map(pk, 2);
    pk_str(pk, "_placeholder");
    msgpack_pack_true(pk);
    pk_str(pk, "num");
    msgpack_pack_int(pk, 0);
}

static void body_nothing(msgpack_packer *pk)
{
}

static void opts_bad_rooms(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 1);
    pk_str(pk, "rooms");
    pk_str(pk, "r1");
}

static void test_refused(void)
{
    msgpack_sbuffer sb;
    rt_emitter_msg_t *m;
    struct {
        int type;
        void (*body)(msgpack_packer *);
        size_t nargs;
        void (*opts)(msgpack_packer *);
    } cases[] = {
        {3, body_plain, 4, NULL},           /* an ACK, not a broadcast */
        {2, body_nothing, 0, NULL},         /* no event */
        {2, body_number_event, 1, NULL},    /* event name not a string */
        {2, body_bad_utf8, 2, NULL},        /* string not UTF-8 */
        {2, body_int_key, 2, NULL},         /* map key not a string */
        {2, body_ext, 2, NULL},             /* extension type */
        {2, body_deep, 2, NULL},            /* nesting over 32 */
        {2, body_placeholder_key, 2, NULL}, /* a forged binary placeholder */
        {2, body_plain, 4, opts_bad_rooms}, /* rooms not an array */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        pack_msg(&sb, cases[i].type, "/", cases[i].body, cases[i].nargs, cases[i].opts);
        int rc = rt_emitter_decode(sb.data, sb.size, &m);
        if (rc != EDDY_EPROTO)
            fprintf(stderr, "case %zu: %d\n", i, rc);
        CHECK_EQ_INT(rc, EDDY_EPROTO);
        CHECK(m == NULL);
        msgpack_sbuffer_destroy(&sb);
    }
    CHECK_EQ_INT(rt_emitter_decode("\x92\xa1x\xc0", 4, &m), EDDY_EPROTO); /* packet nil */
    CHECK_EQ_INT(rt_emitter_decode("\xc0", 1, &m), EDDY_EPROTO);
    /* Containers declaring more elements than bytes follow (found by fuzz_rt_emitter:
     * msgpack-c would first try to allocate 0xdddddddd elements, 128 GiB). */
    CHECK_EQ_INT(rt_emitter_decode("\x93\x97\xa7\xdd\xdd\xdd\xdd\xdd\xdd", 9, &m), EDDY_EPROTO);
    CHECK_EQ_INT(rt_emitter_decode("\xdf\xff\xff\xff\xff", 5, &m), EDDY_EPROTO);
    CHECK_EQ_INT(rt_emitter_decode("\xc6\xff\xff\xff\xf0", 5, &m), EDDY_EPROTO);
    CHECK_EQ_INT(rt_emitter_decode("", 0, &m), EDDY_EPROTO);
}

int main(void)
{
    test_decode();
    test_refused();
    return test_report("test_rt_emitter");
}

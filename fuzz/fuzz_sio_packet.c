/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer driver for rt/sio_packet.c (Socket.IO packet decode and encode).
 * The first input byte picks max_attachments (0..15); the rest is the packet.
 *
 * Checked invariants, for a packet that decodes:
 * - every span lies inside the input; the namespace starts with '/' and is UTF-8;
 * - the fields obey the reference's rules: attachments 1..max for the BINARY_ types (else
 *   0), id <= SIO_MAX_ID, CONNECT data an object, DISCONNECT no data, CONNECT_ERROR a string
 *   or an object, EVENT an array whose first element is a string or a number, ACK an array;
 *   args iterate as many elements as the array holds after the name;
 * - re-encoding the fields (sio_encode; for a string event also sio_encode_event from the
 *   unescaped name and the args) gives text that decodes to the same fields; with
 *   SIO_ENC_EIO_MESSAGE the same text follows a '4';
 * - the measured length equals the written length, and a buffer one byte short is left
 *   untouched.
 * Decoding never reads past the input (the input buffer is exactly its size).
 */
#include <string.h>

#include "eddy.h"
#include "fuzz.h"
#include "sio_packet.h"

static char out[1 << 17], name[1 << 16];

static void same_fields(const sio_packet_t *a, const sio_packet_t *b)
{
    FUZZ_CHECK(a->type == b->type && a->attachments == b->attachments);
    FUZZ_CHECK(a->nsp_len == b->nsp_len && memcmp(a->nsp, b->nsp, a->nsp_len) == 0);
    FUZZ_CHECK(a->has_id == b->has_id && a->id == b->id);
    FUZZ_CHECK(a->data.type == b->data.type && a->data.len == b->data.len);
    FUZZ_CHECK(a->data.len == 0 || memcmp(a->data.ptr, b->data.ptr, a->data.len) == 0);
    FUZZ_CHECK(a->args_len == b->args_len);
    FUZZ_CHECK(a->args_len == 0 || memcmp(a->args, b->args, a->args_len) == 0);
}

static bool inside(const char *p, size_t len, const char *s, size_t size)
{
    return p >= s && p + len <= s + size;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > sizeof(name))
        return 0;
    unsigned max = data[0] % 16;
    const char *s = (const char *)data + 1;
    size_t len = size - 1;
    sio_packet_t p;
    int rc = sio_packet_decode(s, len, max, &p);
    FUZZ_CHECK(rc <= 0 && rc >= SIO_EACK);
    if (rc != 0)
        return 0;

    FUZZ_CHECK(p.type >= SIO_CONNECT && p.type <= SIO_BINARY_ACK);
    bool binary = p.type == SIO_BINARY_EVENT || p.type == SIO_BINARY_ACK;
    FUZZ_CHECK(binary ? p.attachments >= 1 && p.attachments <= max : p.attachments == 0);
    FUZZ_CHECK(p.nsp_len >= 1 && p.nsp[0] == '/' && eddy_utf8_valid(p.nsp, p.nsp_len));
    FUZZ_CHECK(inside(p.nsp, p.nsp_len, s, len) || (p.nsp_len == 1 && p.nsp[0] == '/'));
    FUZZ_CHECK(!p.has_id || p.id <= SIO_MAX_ID);
    if (p.data.type != RT_JSON_NONE)
        FUZZ_CHECK(inside(p.data.ptr, p.data.len, s, len));
    switch (p.type) {
    case SIO_CONNECT:
        FUZZ_CHECK(p.data.type == RT_JSON_NONE || p.data.type == RT_JSON_OBJECT);
        break;
    case SIO_DISCONNECT:
        FUZZ_CHECK(p.data.type == RT_JSON_NONE);
        break;
    case SIO_CONNECT_ERROR:
        FUZZ_CHECK(p.data.type == RT_JSON_NONE || p.data.type == RT_JSON_OBJECT ||
                   p.data.type == RT_JSON_STRING);
        break;
    default:
        FUZZ_CHECK(p.data.type == RT_JSON_NONE || p.data.type == RT_JSON_ARRAY);
        break;
    }
    bool event = p.type == SIO_EVENT || p.type == SIO_BINARY_EVENT;
    if (p.data.type == RT_JSON_ARRAY) {
        size_t count = rt_json_count(&p.data), nargs = 0;
        rt_json_iter_t it;
        rt_json_value_t v;
        FUZZ_CHECK(inside(p.args, p.args_len, p.data.ptr, p.data.len));
        rt_json_iter_init_list(&it, p.args, p.args_len);
        while (rt_json_iter_next(&it, NULL, &v))
            nargs++;
        if (event) {
            FUZZ_CHECK(p.event.type == RT_JSON_STRING || p.event.type == RT_JSON_NUMBER);
            FUZZ_CHECK(inside(p.event.ptr, p.event.len, p.data.ptr, p.data.len));
            FUZZ_CHECK(count >= 1 && nargs == count - 1);
        } else {
            FUZZ_CHECK(nargs == count);
        }
    }

    /* Re-encode the fields and decode again. */
    int64_t id = p.has_id ? (int64_t)p.id : -1;
    size_t need = sio_encode(NULL, 0, 0, p.type, p.nsp, p.nsp_len, p.attachments, id,
                             p.data.type ? p.data.ptr : NULL, p.data.len);
    FUZZ_CHECK(need <= sizeof(out));
    out[need - 1] = 'Z';
    FUZZ_CHECK(sio_encode(out, need - 1, 0, p.type, p.nsp, p.nsp_len, p.attachments, id,
                          p.data.type ? p.data.ptr : NULL, p.data.len) == need);
    FUZZ_CHECK(out[need - 1] == 'Z');
    FUZZ_CHECK(sio_encode(out, need, 0, p.type, p.nsp, p.nsp_len, p.attachments, id,
                          p.data.type ? p.data.ptr : NULL, p.data.len) == need);
    char *copy = malloc(need);
    memcpy(copy, out, need);
    sio_packet_t q;
    FUZZ_CHECK(sio_packet_decode(copy, need, max, &q) == 0);
    same_fields(&p, &q);
    free(copy);

    size_t need4 = sio_encode(out, sizeof(out), SIO_ENC_EIO_MESSAGE, p.type, p.nsp, p.nsp_len,
                              p.attachments, id, p.data.type ? p.data.ptr : NULL, p.data.len);
    FUZZ_CHECK(need4 == need + 1 && out[0] == '4');
    FUZZ_CHECK(sio_packet_decode(out + 1, need, max, &q) == 0);
    same_fields(&p, &q);

    if (event && p.event.type == RT_JSON_STRING) {
        long n = rt_json_unescape(&p.event, name, sizeof(name));
        FUZZ_CHECK(n >= 0);
        need = sio_encode_event(out, sizeof(out), 0, p.nsp, p.nsp_len, p.attachments, id, name,
                                (size_t)n, p.args, p.args_len);
        FUZZ_CHECK(need <= sizeof(out));
        FUZZ_CHECK(sio_packet_decode(out, need, max, &q) == 0);
        FUZZ_CHECK(q.type == p.type && q.attachments == p.attachments);
        FUZZ_CHECK(q.has_id == p.has_id && q.id == p.id);
        FUZZ_CHECK(rt_json_string_eq(&q.event, name, (size_t)n));
        FUZZ_CHECK(q.args_len == p.args_len &&
                   (p.args_len == 0 || memcmp(q.args, p.args, p.args_len) == 0));
    }
    if (p.type == SIO_ACK || p.type == SIO_BINARY_ACK) {
        if (p.data.type == RT_JSON_ARRAY && p.has_id) {
            need = sio_encode_ack(out, sizeof(out), 0, p.nsp, p.nsp_len, p.attachments, id, p.args,
                                  p.args_len);
            FUZZ_CHECK(sio_packet_decode(out, need, max, &q) == 0);
            FUZZ_CHECK(q.type == p.type && q.args_len == p.args_len);
        }
    }
    return 0;
}

/* SPDX-License-Identifier: MIT */
/* Engine.IO packet and polling payload codecs; see eio_payload.h for the wire forms. */
#include "eio_payload.h"

#include <string.h>

#include "eddy.h"
#include "rt_base64.h"

#define RECORD_SEPARATOR 0x1e
/* More length digits than any body can need (and than fit the arithmetic below). */
#define MAX_LEN_DIGITS 15

int eio_type_from_char(int c)
{
    return c >= '0' && c <= '6' ? c - '0' : EIO_EPARSE;
}

const char *eio_type_name(int t)
{
    static const char *const names[] = {"open",    "close",   "ping", "pong",
                                        "message", "upgrade", "noop"};
    return t >= 0 && t <= EIO_NOOP ? names[t] : "unknown";
}

int eio_packet_decode(int protocol, const char *s, size_t len, eio_packet_t *out)
{
    if (len == 0)
        return EIO_EPARSE;
    memset(out, 0, sizeof(*out));
    if (s[0] == 'b') {
        size_t skip = 1;
        out->type = EIO_MESSAGE;
        if (protocol == 3) {
            /* v3: "b<type><base64>" */
            if (len < 2 || eio_type_from_char(s[1]) < 0)
                return EIO_EPARSE;
            out->type = (eio_type_t)(s[1] - '0');
            skip = 2;
        }
        if (rt_base64_check(s + skip, len - skip) < 0)
            return EIO_EBASE64;
        out->binary = out->base64 = true;
        out->data = s + skip;
        out->len = len - skip;
        return 0;
    }
    int type = eio_type_from_char(s[0]);
    if (type < 0)
        return EIO_EPARSE;
    out->type = (eio_type_t)type;
    out->data = s + 1;
    out->len = len - 1;
    return 0;
}

int eio3_binary_frame_decode(const void *frame, size_t len, eio_packet_t *out)
{
    const unsigned char *p = frame;
    if (len == 0 || p[0] > EIO_NOOP)
        return EIO_EPARSE;
    memset(out, 0, sizeof(*out));
    out->type = (eio_type_t)p[0];
    out->binary = true;
    out->data = (const char *)p + 1;
    out->len = len - 1;
    return 0;
}

void eio_payload_init(eio_payload_iter_t *it, int protocol, bool binary_form, const void *body,
                      size_t len)
{
    it->pos = body;
    it->end = (const char *)body + len;
    it->protocol = protocol;
    it->binary_form = protocol == 3 && binary_form;
    it->started = false;
    it->error = 0;
}

/* A text packet of a payload: UTF-8 checked, then decoded. */
static int text_packet(int protocol, const char *s, size_t len, eio_packet_t *out)
{
    if (!eddy_utf8_valid(s, len))
        return EIO_EUTF8;
    return eio_packet_decode(protocol, s, len, out);
}

/* v4: the next 0x1e-separated packet. */
static int next_v4(eio_payload_iter_t *it, eio_packet_t *out)
{
    if (it->started) {
        if (it->pos == it->end)
            return 0;
        it->pos++; /* the separator that stopped the previous packet */
    }
    it->started = true;
    const char *s = it->pos;
    const char *sep = memchr(s, RECORD_SEPARATOR, (size_t)(it->end - s));
    const char *e = sep ? sep : it->end;
    it->pos = e;
    int rc = text_packet(4, s, (size_t)(e - s), out);
    return rc < 0 ? rc : 1;
}

/* The end of the first n UTF-16 code units of s[0..len) in bytes, or NULL if s is shorter or
 * the n-th unit is the first half of a surrogate pair. UTF-8 validity is checked later. */
static const char *utf16_units_end(const char *s, const char *e, size_t n)
{
    const char *p = s;
    size_t units = 0;
    while (units < n) {
        if (p >= e)
            return NULL;
        unsigned char c = (unsigned char)*p;
        /* Bytes that cannot start a sequence count as one unit; the check rejects them. */
        size_t seq = c >= 0xf0 && c <= 0xf7   ? 4
                     : c >= 0xe0 && c <= 0xef ? 3
                     : c >= 0xc0 && c <= 0xdf ? 2
                                              : 1;
        units += seq == 4 ? 2 : 1;
        /* Clamp to the body; a truncated or invalid sequence fails the UTF-8 check. */
        p += (size_t)(e - p) < seq ? (size_t)(e - p) : seq;
    }
    return units == n ? p : NULL;
}

/* v3 text: "<n>:<packet>", empty packets ("0:") skipped. */
static int next_v3_text(eio_payload_iter_t *it, eio_packet_t *out)
{
    if (!it->started && it->pos == it->end)
        return EIO_EPARSE;
    it->started = true;
    while (it->pos < it->end) {
        const char *p = it->pos;
        size_t n = 0, digits = 0;
        while (p < it->end && *p >= '0' && *p <= '9') {
            if (++digits > MAX_LEN_DIGITS)
                return EIO_EPARSE;
            n = n * 10 + (size_t)(*p++ - '0');
        }
        if (digits == 0 || p >= it->end || *p != ':')
            return EIO_EPARSE;
        p++;
        const char *e = utf16_units_end(p, it->end, n);
        if (!e)
            return EIO_EPARSE;
        it->pos = e;
        if (n == 0)
            continue;
        int rc = text_packet(3, p, (size_t)(e - p), out);
        return rc < 0 ? rc : 1;
    }
    return 0;
}

/* v3 binary: <0|1> <digit bytes> 0xff <packet>. */
static int next_v3_binary(eio_payload_iter_t *it, eio_packet_t *out)
{
    /* Unlike the text forms, an empty binary payload is no error in the reference. */
    if (it->pos == it->end)
        return 0;
    const unsigned char *p = (const unsigned char *)it->pos, *e = (const unsigned char *)it->end;
    unsigned char kind = *p++;
    size_t n = 0, digits = 0;
    if (kind > 1)
        return EIO_EPARSE;
    while (p < e && *p != 0xff) {
        if (*p > 9 || ++digits > MAX_LEN_DIGITS)
            return EIO_EPARSE;
        n = n * 10 + *p++;
    }
    if (digits == 0 || p >= e)
        return EIO_EPARSE;
    p++;
    if (n == 0 || (size_t)(e - p) < n)
        return EIO_EPARSE;
    it->pos = (const char *)p + n;
    if (kind == 1)
        return eio3_binary_frame_decode(p, n, out) < 0 ? EIO_EPARSE : 1;
    int rc = text_packet(3, (const char *)p, n, out);
    return rc < 0 ? rc : 1;
}

int eio_payload_next(eio_payload_iter_t *it, eio_packet_t *out)
{
    if (it->error)
        return it->error;
    int rc = it->protocol == 4 ? next_v4(it, out)
             : it->binary_form ? next_v3_binary(it, out)
                               : next_v3_text(it, out);
    if (rc < 0)
        it->error = rc;
    return rc;
}

/* Decimal digits of x. */
static size_t dec_len(size_t x)
{
    size_t n = 1;
    while (x >= 10) {
        x /= 10;
        n++;
    }
    return n;
}

/* Writes the decimal digits of x as characters, or as byte values 0..9 when raw. */
static char *put_dec(char *o, size_t x, bool raw)
{
    size_t n = dec_len(x);
    for (size_t k = n; k > 0; k--) {
        o[k - 1] = (char)((raw ? 0 : '0') + x % 10);
        x /= 10;
    }
    return o + n;
}

/* UTF-16 code units of the UTF-8 text s[0..len). */
static size_t utf16_units(const char *s, size_t len)
{
    size_t units = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c & 0xc0) != 0x80)
            units += c >= 0xf0 ? 2 : 1;
    }
    return units;
}

size_t eio4_payload_put(char *out, size_t cap, bool first, eio_type_t type, const void *data,
                        size_t len, bool binary)
{
    size_t need = (first ? 0 : 1) + 1 + (binary ? rt_base64_encoded_len(len) : len);
    if (need > cap)
        return need;
    char *o = out;
    if (!first)
        *o++ = RECORD_SEPARATOR;
    if (binary) {
        *o++ = 'b';
        rt_base64_encode(o, data, len);
    } else {
        *o++ = eio_type_char(type);
        if (len)
            memcpy(o, data, len);
    }
    return need;
}

size_t eio3_payload_put(char *out, size_t cap, eio_type_t type, const void *data, size_t len,
                        bool binary)
{
    size_t body = binary ? 2 + rt_base64_encoded_len(len) : 1 + utf16_units(data, len);
    size_t bytes = binary ? body : 1 + len;
    size_t need = dec_len(body) + 1 + bytes;
    if (need > cap)
        return need;
    char *o = put_dec(out, body, false);
    *o++ = ':';
    if (binary) {
        *o++ = 'b';
        *o++ = eio_type_char(type);
        rt_base64_encode(o, data, len);
    } else {
        *o++ = eio_type_char(type);
        if (len)
            memcpy(o, data, len);
    }
    return need;
}

size_t eio3_binary_payload_put(char *out, size_t cap, eio_type_t type, const void *data, size_t len,
                               bool binary)
{
    size_t need = 1 + dec_len(1 + len) + 1 + 1 + len;
    if (need > cap)
        return need;
    char *o = out;
    *o++ = binary ? 1 : 0;
    o = put_dec(o, 1 + len, true);
    *o++ = (char)0xff;
    *o++ = binary ? (char)type : eio_type_char(type);
    if (len)
        memcpy(o, data, len);
    return need;
}

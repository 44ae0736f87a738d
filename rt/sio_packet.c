/* SPDX-License-Identifier: MIT */
/* Socket.IO packet codec; see sio_packet.h for the rules and where they differ. */
#include "sio_packet.h"

#include <string.h>

#include "eddy.h"

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static bool is_reserved(const rt_json_value_t *name)
{
    static const struct {
        const char *s;
        size_t n;
    } reserved[] = {
        {"connect", 7},        {"connect_error", 13}, {"disconnect", 10},
        {"disconnecting", 13}, {"newListener", 11},   {"removeListener", 14},
    };
    /* Most real names are ruled out by their first character (all reserved names start
     * with c, d, n or r) or, escape-free, by their length. */
    char c = name->len > 2 ? name->ptr[1] : 0;
    if (c != 'c' && c != 'd' && c != 'n' && c != 'r' && c != '\\')
        return false;
    if (name->len > 16 && !memchr(name->ptr, '\\', name->len))
        return false;
    for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
        if (rt_json_string_eq(name, reserved[i].s, reserved[i].n))
            return true;
    return false;
}

/* The text of the validated array a from p (a position between its elements, before a
 * separating comma) to its closing bracket, without that comma. */
static void array_rest(const rt_json_value_t *a, const char *p, const char **rest, size_t *len)
{
    const char *e = a->ptr + a->len - 1;
    while (p < e && *p != ',')
        p++;
    if (p < e)
        p++;
    *rest = p;
    *len = (size_t)(e - p);
}

int sio_packet_decode(const char *s, size_t len, unsigned max_attachments, sio_packet_t *out)
{
    size_t i = 0;
    if (len == 0 || s[0] < '0' || s[0] > '6')
        return SIO_ETYPE;
    memset(out, 0, sizeof(*out));
    out->type = (sio_type_t)(s[0] - '0');
    if (out->type == SIO_BINARY_EVENT || out->type == SIO_BINARY_ACK) {
        size_t j = 1;
        uint64_t n = 0;
        while (j < len && s[j] != '-') {
            if (!is_digit(s[j]))
                return SIO_EATTACHMENTS;
            if (n <= UINT32_MAX)
                n = n * 10 + (uint64_t)(s[j] - '0');
            j++;
        }
        if (j == len || j == 1 || n == 0)
            return SIO_EATTACHMENTS;
        if (n > max_attachments)
            return SIO_ETOOMANY;
        out->attachments = (unsigned)n;
        i = j;
    }
    /* i is the index of the last byte consumed, as in the reference. */
    if (i + 1 < len && s[i + 1] == '/') {
        size_t start = i + 1;
        i = start;
        while (i < len && s[i] != ',')
            i++;
        out->nsp = s + start;
        out->nsp_len = i - start;
        if (!eddy_utf8_valid(out->nsp, out->nsp_len))
            return SIO_EUTF8;
    } else {
        out->nsp = "/";
        out->nsp_len = 1;
    }
    if (i + 1 < len && is_digit(s[i + 1])) {
        uint64_t id = 0;
        while (i + 1 < len && is_digit(s[i + 1])) {
            if (id > SIO_MAX_ID)
                return SIO_EID;
            id = id * 10 + (uint64_t)(s[i + 1] - '0');
            i++;
        }
        if (id > SIO_MAX_ID)
            return SIO_EID;
        out->has_id = true;
        out->id = id;
    }
    /* The reference reads whitespace here as part of the ack id (Number(" ") is 0, and
     * "1 2" gives NaN); refuse rather than decode a different id. */
    if (i + 1 < len && is_space(s[i + 1]))
        return SIO_EID;
    if (i + 1 >= len)
        return 0;
    if (out->type == SIO_DISCONNECT)
        return SIO_EDISCONNECT;
    if (rt_json_parse(s + i + 1, len - i - 1, &out->data) < 0)
        return SIO_EJSON;
    switch (out->type) {
    case SIO_CONNECT:
        return out->data.type == RT_JSON_OBJECT ? 0 : SIO_ECONNECT;
    case SIO_CONNECT_ERROR:
        return out->data.type == RT_JSON_OBJECT || out->data.type == RT_JSON_STRING
                   ? 0
                   : SIO_ECONNECT_ERROR;
    case SIO_EVENT:
    case SIO_BINARY_EVENT: {
        rt_json_iter_t it;
        if (out->data.type != RT_JSON_ARRAY)
            return SIO_EEVENT;
        rt_json_iter_init(&it, &out->data);
        if (!rt_json_iter_next(&it, NULL, &out->event) ||
            (out->event.type != RT_JSON_STRING && out->event.type != RT_JSON_NUMBER))
            return SIO_EEVENT;
        if (out->event.type == RT_JSON_STRING && is_reserved(&out->event))
            return SIO_ERESERVED;
        array_rest(&out->data, it.pos, &out->args, &out->args_len);
        return 0;
    }
    case SIO_ACK:
    case SIO_BINARY_ACK:
        if (out->data.type != RT_JSON_ARRAY)
            return SIO_EACK;
        out->args = out->data.ptr + 1;
        out->args_len = out->data.len - 2;
        return 0;
    default: /* SIO_DISCONNECT with a payload was refused above */
        return SIO_EDISCONNECT;
    }
}

const char *sio_strerror(int err)
{
    switch (err) {
    case 0:
        return "ok";
    case SIO_ETYPE:
        return "unknown packet type";
    case SIO_EATTACHMENTS:
        return "illegal attachments";
    case SIO_ETOOMANY:
        return "too many attachments";
    case SIO_EID:
        return "ack id out of range";
    case SIO_EUTF8:
        return "namespace is not UTF-8";
    case SIO_EJSON:
        return "payload is not JSON";
    case SIO_ECONNECT:
        return "CONNECT payload is not an object";
    case SIO_EDISCONNECT:
        return "DISCONNECT has a payload";
    case SIO_ECONNECT_ERROR:
        return "CONNECT_ERROR payload is not a string or an object";
    case SIO_EEVENT:
        return "EVENT payload is not an array starting with a name";
    case SIO_ERESERVED:
        return "EVENT name is reserved";
    case SIO_EACK:
        return "ACK payload is not an array";
    default:
        return "unknown Socket.IO packet error";
    }
}

/* Length of the decimal form of x. */
static size_t dec_len(uint64_t x)
{
    size_t n = 1;
    while (x >= 10) {
        x /= 10;
        n++;
    }
    return n;
}

static char *put_dec(char *o, uint64_t x)
{
    size_t n = dec_len(x);
    for (size_t k = n; k > 0; k--) {
        o[k - 1] = (char)('0' + x % 10);
        x /= 10;
    }
    return o + n;
}

/* The header: ['4'] type [n-] [nsp,] [id]. Returns its length; writes it when o != NULL. */
static size_t put_header(char *o, int flags, sio_type_t type, const char *nsp, size_t nsp_len,
                         unsigned attachments, int64_t id)
{
    bool binary = type == SIO_BINARY_EVENT || type == SIO_BINARY_ACK;
    bool has_nsp = nsp && nsp_len && !(nsp_len == 1 && nsp[0] == '/');
    size_t n = (flags & SIO_ENC_EIO_MESSAGE ? 1 : 0) + 1 + (binary ? dec_len(attachments) + 1 : 0) +
               (has_nsp ? nsp_len + 1 : 0) + (id >= 0 ? dec_len((uint64_t)id) : 0);
    if (!o)
        return n;
    if (flags & SIO_ENC_EIO_MESSAGE)
        *o++ = '4';
    *o++ = (char)('0' + type);
    if (binary) {
        o = put_dec(o, attachments);
        *o++ = '-';
    }
    if (has_nsp) {
        memcpy(o, nsp, nsp_len);
        o += nsp_len;
        *o++ = ',';
    }
    if (id >= 0)
        put_dec(o, (uint64_t)id);
    return n;
}

size_t sio_encode(char *out, size_t cap, int flags, sio_type_t type, const char *nsp,
                  size_t nsp_len, unsigned attachments, int64_t id, const char *json,
                  size_t json_len)
{
    size_t h = put_header(NULL, flags, type, nsp, nsp_len, attachments, id);
    size_t need = h + (json ? json_len : 0);
    if (need > cap)
        return need;
    put_header(out, flags, type, nsp, nsp_len, attachments, id);
    if (json && json_len)
        memcpy(out + h, json, json_len);
    return need;
}

size_t sio_encode_event(char *out, size_t cap, int flags, const char *nsp, size_t nsp_len,
                        unsigned attachments, int64_t id, const char *name, size_t name_len,
                        const char *args, size_t args_len)
{
    sio_type_t type = attachments ? SIO_BINARY_EVENT : SIO_EVENT;
    size_t h = put_header(NULL, flags, type, nsp, nsp_len, attachments, id);
    size_t q = rt_json_write_string(NULL, 0, name, name_len);
    size_t need = h + 1 + q + (args_len ? 1 + args_len : 0) + 1;
    if (need > cap)
        return need;
    char *o = out + put_header(out, flags, type, nsp, nsp_len, attachments, id);
    *o++ = '[';
    o += rt_json_write_string(o, q, name, name_len);
    if (args_len) {
        *o++ = ',';
        memcpy(o, args, args_len);
        o += args_len;
    }
    *o = ']';
    return need;
}

size_t sio_encode_ack(char *out, size_t cap, int flags, const char *nsp, size_t nsp_len,
                      unsigned attachments, int64_t id, const char *args, size_t args_len)
{
    sio_type_t type = attachments ? SIO_BINARY_ACK : SIO_ACK;
    size_t h = put_header(NULL, flags, type, nsp, nsp_len, attachments, id);
    size_t need = h + 2 + args_len;
    if (need > cap)
        return need;
    char *o = out + put_header(out, flags, type, nsp, nsp_len, attachments, id);
    *o++ = '[';
    if (args_len)
        memcpy(o, args, args_len);
    o[args_len] = ']';
    return need;
}

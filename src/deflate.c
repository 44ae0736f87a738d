/* SPDX-License-Identifier: MIT */
/*
 * permessage-deflate (RFC 7692): negotiation, and the zlib streams that inflate.
 *
 * Memory is the classic cost of this extension: a deflater with a 32 KiB window and
 * memLevel 8 holds about 210 KiB (zlib's: 260), an inflate stream about 40 KiB. So they are created
 * only when a connection first sends or receives a compressed message, and connections
 * that negotiated "no context takeover" in a direction hold no stream for it at all: they
 * borrow the loop's shared one, which is reset after every message.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include "codec.h"
#include "deflate.h"

/* ---- negotiation ---- */

/* One parsed offer: which parameters it has and their values (0 when absent or valueless). */
struct offer {
    bool server_no_context_takeover;
    bool client_no_context_takeover;
    bool has_server_max_window_bits;
    bool has_client_max_window_bits;
    int server_max_window_bits;
    int client_max_window_bits; /* 0: offered without a value */
};

static const char *skip_ows(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    return p;
}

/* Parses a token at *p; returns its length (0 if none). */
static size_t parse_token(const char **p, const char *end)
{
    const char *start = *p;
    while (*p < end && eddy__is_tchar(**p))
        (*p)++;
    return (size_t)(*p - start);
}

/* Parses a window-bits value ("8".."15", possibly quoted). Returns it, or -1. */
static int parse_bits(const char *value, size_t len)
{
    if (len >= 2 && value[0] == '"' && value[len - 1] == '"') {
        value++;
        len -= 2;
    }
    if (len == 0 || len > 2 || value[0] < '1' || value[0] > '9')
        return -1;
    int n = 0;
    for (size_t i = 0; i < len; i++) {
        if (value[i] < '0' || value[i] > '9')
            return -1;
        n = n * 10 + (value[i] - '0');
    }
    return n >= 8 && n <= 15 ? n : -1;
}

/*
 * Parses the parameters of one "permessage-deflate" element, from just after its name up
 * to the comma that ends it (or end). Sets *next past that comma. Returns true if the
 * offer is well-formed: known parameters, each at most once, with valid values.
 */
static bool parse_offer(const char *p, const char *end, const char **next, struct offer *offer)
{
    bool ok = true;
    memset(offer, 0, sizeof(*offer));
    for (;;) {
        p = skip_ows(p, end);
        if (p == end || *p == ',')
            break;
        if (*p != ';') {
            ok = false;
            break;
        }
        p = skip_ows(p + 1, end);
        const char *name = p;
        size_t name_len = parse_token(&p, end);
        const char *value = NULL;
        size_t value_len = 0;
        p = skip_ows(p, end);
        if (p < end && *p == '=') {
            p = skip_ows(p + 1, end);
            value = p;
            if (p < end && *p == '"') {
                p++;
                while (p < end && *p != '"')
                    p++;
                if (p == end) {
                    ok = false;
                    break;
                }
                p++;
            } else {
                parse_token(&p, end);
            }
            value_len = (size_t)(p - value);
            if (value_len == 0) {
                ok = false;
                break;
            }
        }
#define PARAM_IS(s) (name_len == sizeof(s) - 1 && strncasecmp(name, s, name_len) == 0)
        if (PARAM_IS("server_no_context_takeover") && value == NULL &&
            !offer->server_no_context_takeover) {
            offer->server_no_context_takeover = true;
        } else if (PARAM_IS("client_no_context_takeover") && value == NULL &&
                   !offer->client_no_context_takeover) {
            offer->client_no_context_takeover = true;
        } else if (PARAM_IS("server_max_window_bits") && value != NULL &&
                   !offer->has_server_max_window_bits) {
            offer->has_server_max_window_bits = true;
            offer->server_max_window_bits = parse_bits(value, value_len);
            ok &= offer->server_max_window_bits > 0;
        } else if (PARAM_IS("client_max_window_bits") && !offer->has_client_max_window_bits) {
            offer->has_client_max_window_bits = true;
            if (value != NULL) {
                offer->client_max_window_bits = parse_bits(value, value_len);
                ok &= offer->client_max_window_bits > 0;
            }
        } else {
            ok = false; /* unknown, duplicated, or a value where none belongs */
        }
#undef PARAM_IS
    }
    /* Skip the rest of a malformed element, quoted strings included. */
    bool quoted = false;
    while (p < end && (quoted || *p != ',')) {
        if (*p == '"')
            quoted = !quoted;
        p++;
    }
    *next = p < end ? p + 1 : end;
    return ok;
}

/* Applies our configuration to an acceptable offer. Returns false to decline it. */
static bool agree(const struct offer *offer, const eddy__pmd_config_t *cfg, eddy__pmd_t *out)
{
    memset(out, 0, sizeof(*out));
    int server_bits = cfg->server_window_bits;
    if (offer->has_server_max_window_bits) {
        /* zlib cannot produce a raw deflate stream with a 256-byte window. */
        if (offer->server_max_window_bits < 9)
            return false;
        server_bits = EDDY__MIN(server_bits, offer->server_max_window_bits);
        out->announce_server_bits = true;
    }
    out->server_window_bits = (uint8_t)server_bits;
    out->client_window_bits = 15;
    if (offer->has_client_max_window_bits) {
        int client_bits = cfg->client_window_bits;
        if (offer->client_max_window_bits > 0)
            client_bits = EDDY__MIN(client_bits, offer->client_max_window_bits);
        out->client_window_bits = (uint8_t)client_bits;
        /* Only answered when it limits the client: 15 is the default anyway. */
        out->announce_client_bits = client_bits < 15;
    }
    out->server_no_context_takeover =
        offer->server_no_context_takeover || cfg->server_no_context_takeover;
    out->client_no_context_takeover =
        offer->client_no_context_takeover || cfg->client_no_context_takeover;
    return true;
}

bool eddy__pmd_negotiate(const char *value, size_t len, const eddy__pmd_config_t *cfg,
                         eddy__pmd_t *out)
{
    const char *p = value, *end = value + len;
    while (p < end) {
        p = skip_ows(p, end);
        const char *name = p;
        size_t name_len = parse_token(&p, end);
        struct offer offer;
        bool ok = parse_offer(p, end, &p, &offer);
        if (ok && name_len == 18 && strncasecmp(name, "permessage-deflate", 18) == 0 &&
            agree(&offer, cfg, out))
            return true;
    }
    return false;
}

bool eddy__pmd_client_accept(const char *value, size_t len, eddy__pmd_t *out)
{
    const char *p = skip_ows(value, value + len), *end = value + len;
    const char *name = p;
    size_t name_len = parse_token(&p, end);
    struct offer answer;
    if (name_len != 18 || strncasecmp(name, "permessage-deflate", 18) != 0 ||
        !parse_offer(p, end, &p, &answer) || p != end)
        return false; /* one element, ours, well-formed: nothing else was offered */
    /* client_max_window_bits in an answer needs a value; zlib cannot compress with the
     * 256-byte window of 8. */
    if (answer.has_client_max_window_bits && answer.client_max_window_bits < 9)
        return false;
    memset(out, 0, sizeof(*out));
    /* Inflating with the largest window handles every smaller one the server uses. */
    out->server_window_bits = 15;
    out->client_window_bits =
        (uint8_t)(answer.has_client_max_window_bits ? answer.client_max_window_bits : 15);
    out->server_no_context_takeover = answer.server_no_context_takeover;
    out->client_no_context_takeover = answer.client_no_context_takeover;
    return true;
}

/* Appends len bytes at out[*n], keeping a byte for the terminating NUL; false if they do not
 * fit. The answer to every compressed handshake is built so, not with snprintf (which cost
 * 1,500 instructions of the handshake's 12,800). */
static bool append(char *out, size_t cap, size_t *n, const char *s, size_t len)
{
    if (len >= cap - *n)
        return false;
    memcpy(out + *n, s, len);
    *n += len;
    return true;
}

static bool append_param(char *out, size_t cap, size_t *n, const char *param, size_t len,
                         unsigned bits)
{
    char digits[3];
    size_t d = sizeof(digits);
    do
        digits[--d] = (char)('0' + bits % 10);
    while ((bits /= 10) != 0 && d > 0);
    return append(out, cap, n, param, len) && append(out, cap, n, digits + d, sizeof(digits) - d);
}

#define APPEND_LITERAL(out, cap, n, s)     append(out, cap, n, s, sizeof(s) - 1)
#define APPEND_PARAM(out, cap, n, s, bits) append_param(out, cap, n, s, sizeof(s) - 1, bits)

int eddy__pmd_response(const eddy__pmd_t *pmd, char *out, size_t cap)
{
    size_t n = 0;
    bool fits =
        cap > 0 && APPEND_LITERAL(out, cap, &n, "permessage-deflate") &&
        (!pmd->server_no_context_takeover ||
         APPEND_LITERAL(out, cap, &n, "; server_no_context_takeover")) &&
        (!pmd->client_no_context_takeover ||
         APPEND_LITERAL(out, cap, &n, "; client_no_context_takeover")) &&
        (!pmd->announce_server_bits ||
         APPEND_PARAM(out, cap, &n, "; server_max_window_bits=", pmd->server_window_bits)) &&
        (!pmd->announce_client_bits ||
         APPEND_PARAM(out, cap, &n, "; client_max_window_bits=", pmd->client_window_bits));
    if (!fits)
        return EDDY_ETOOBIG;
    out[n] = '\0';
    return (int)n;
}

/* ---- streams ---- */

static const uint8_t sync_tail[4] = {0x00, 0x00, 0xff, 0xff};

size_t eddy__zlib_chunk = UINT_MAX;

/* Gives zlib the next piece of *in (at most eddy__zlib_chunk bytes) once it used the last. */
static void feed(z_stream *zs, const uint8_t **in, size_t *left)
{
    if (zs->avail_in == 0 && *left > 0) {
        size_t n = EDDY__MIN(*left, eddy__zlib_chunk);
        zs->next_in = (Bytef *)*in;
        zs->avail_in = (uInt)n;
        *in += n;
        *left -= n;
    }
}

z_stream *eddy__inflater_new(int window_bits)
{
    z_stream *zs = calloc(1, sizeof(*zs));
    if (zs == NULL)
        return NULL;
    if (inflateInit2(zs, -window_bits) != Z_OK) {
        free(zs);
        return NULL;
    }
    return zs;
}

void eddy__inflater_free(z_stream *zs)
{
    if (zs != NULL) {
        inflateEnd(zs);
        free(zs);
    }
}

int eddy__inflate(z_stream *zs, const uint8_t *in, size_t len, bool final, eddy__buf_t *out,
                  size_t limit)
{
    for (int pass = 0; pass < 2; pass++) {
        /* Pass 0 feeds the payload; pass 1 the tail RFC 7692 strips from each message. */
        if (pass == 1 && !final)
            break;
        const uint8_t *next = pass == 0 ? in : sync_tail;
        size_t left = pass == 0 ? len : sizeof(sync_tail);
        zs->avail_in = 0;
        for (;;) {
            feed(zs, &next, &left);
            /* Output never grows past limit + 1 bytes: one byte over proves the bomb. */
            if (out->len > limit)
                return EDDY_ETOOBIG;
            size_t room = EDDY__MIN(limit + 1 - out->len, (size_t)64 * 1024);
            if (eddy__buf_reserve(out, room) != 0)
                return EDDY_ENOMEM;
            zs->next_out = (Bytef *)out->data + out->len;
            zs->avail_out = (uInt)room;
            int rc = inflate(zs, Z_SYNC_FLUSH);
            out->len += room - zs->avail_out;
            if (rc == Z_STREAM_END) {
                /* The peer ended a block with BFINAL: the next bytes start afresh. */
                inflateReset(zs);
                if (zs->avail_in == 0 && left == 0)
                    break;
                continue;
            }
            if (rc == Z_BUF_ERROR && left == 0)
                break; /* no progress possible: all input used and all output given */
            if (rc != Z_OK && rc != Z_BUF_ERROR)
                return EDDY_EPROTO;
            if (zs->avail_in == 0 && left == 0 && zs->avail_out > 0)
                break;
        }
    }
    return out->len > limit ? EDDY_ETOOBIG : 0;
}

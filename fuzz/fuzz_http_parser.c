/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer driver for src/http_parser.c.
 *
 * The first input byte steers the run (head size limit, split pattern); the rest is the
 * data. Checked invariants:
 * - the head parser gives the same result whole, resumed over growing prefixes, and
 *   byte by byte (small inputs), each call on a buffer of exactly the bytes so far;
 * - a parsed head lies inside the buffer and max_head, ends with LF, and its spans are
 *   inside it, the path and query inside the target, values trimmed and free of CR/LF;
 * - the chunked decoder gives the same status, body and leftover bytes whole and fed
 *   in pieces;
 * - url_decode never grows its input.
 */
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "fuzz.h"
#include "http_heads_equal.h"

static ssize_t parse_copy(eddy__http_parser_t *p, const uint8_t *data, size_t len,
                          eddy__http_head_t *head)
{
    char *buf = malloc(len ? len : 1);
    memcpy(buf, data, len);
    ssize_t rc = eddy__http_parse_head(p, buf, len, head);
    free(buf);
    return rc;
}

static bool span_inside(eddy__span_t s, size_t from, size_t to)
{
    return s.off >= from && (size_t)s.off + s.len <= to;
}

static void check_head(const uint8_t *data, size_t head_len, const eddy__http_head_t *h)
{
    const char *buf = (const char *)data;
    FUZZ_CHECK(buf[head_len - 1] == '\n');
    FUZZ_CHECK(h->method.len > 0 && h->target.len > 0);
    FUZZ_CHECK(span_inside(h->method, 0, head_len) && span_inside(h->target, 0, head_len));
    size_t t_end = (size_t)h->target.off + h->target.len;
    FUZZ_CHECK(span_inside(h->path, h->target.off, t_end));
    FUZZ_CHECK(span_inside(h->query, h->target.off, t_end));
    FUZZ_CHECK(h->minor_version == 0 || h->minor_version == 1);
    FUZZ_CHECK(h->num_headers <= EDDY__HTTP_MAX_HEADERS);
    FUZZ_CHECK(h->content_length >= -1 && h->content_length <= (int64_t)1 << 62);
    FUZZ_CHECK(!(h->chunked && h->content_length >= 0));
    for (size_t i = 0; i < h->num_headers; i++) {
        eddy__span_t name = h->headers[i].name, value = h->headers[i].value;
        FUZZ_CHECK(name.len > 0 && span_inside(name, 0, head_len));
        FUZZ_CHECK(span_inside(value, 0, head_len));
        FUZZ_CHECK(buf[name.off + name.len] == ':');
        for (size_t k = value.off; k < (size_t)value.off + value.len; k++)
            FUZZ_CHECK(buf[k] != '\r' && buf[k] != '\n' && buf[k] != '\0');
        if (value.len > 0) {
            FUZZ_CHECK(buf[value.off] != ' ' && buf[value.off] != '\t');
            char last = buf[value.off + value.len - 1];
            FUZZ_CHECK(last != ' ' && last != '\t');
        }
    }
}

static void fuzz_head(const uint8_t *data, size_t size, uint8_t ctl, uint64_t *rng)
{
    /* Small limits exercise EDDY_ETOOBIG; the usual one lets whole heads through. */
    size_t max_head = ctl & 0x80 ? 1 + (ctl & 0x7F) * 8 : 8192;
    eddy__http_parser_t p;
    eddy__http_head_t whole, other;

    eddy__http_parser_init(&p, max_head);
    memset(&whole, 0, sizeof(whole));
    ssize_t rc = parse_copy(&p, data, size, &whole);
    FUZZ_CHECK(rc > 0 || rc == EDDY_AGAIN || rc == EDDY_ETOOBIG || rc == EDDY_EPROTO);
    if (rc > 0) {
        FUZZ_CHECK((size_t)rc <= size && (size_t)rc <= max_head);
        check_head(data, (size_t)rc, &whole);
    }
    if (rc == EDDY_AGAIN)
        FUZZ_CHECK(size < max_head);

    /* Resumed over growing prefixes, as a connection reading in pieces would. */
    int passes = size <= 256 ? 2 : 1;
    for (int pass = 0; pass < passes; pass++) {
        bool bytewise = pass == 1;
        eddy__http_parser_init(&p, max_head);
        size_t n = 0;
        ssize_t prc;
        for (;;) {
            memset(&other, 0, sizeof(other));
            prc = parse_copy(&p, data, n, &other);
            if (prc != EDDY_AGAIN || n == size)
                break;
            size_t piece = bytewise ? 1 : 1 + (size_t)(fuzz_rng_next(rng) % (size / 8 + 1));
            n += piece < size - n ? piece : size - n;
        }
        FUZZ_CHECK(prc == rc);
        if (rc > 0)
            FUZZ_CHECK(heads_equal(&whole, &other));
    }

    /* The token helpers on the first header value, if any. */
    if (rc > 0 && whole.num_headers > 0) {
        const char *buf = (const char *)data;
        bool has = eddy__http_list_has_token(buf, whole.headers[0].value, "upgrade");
        if (eddy__span_eq(buf, whole.headers[0].value, "upgrade"))
            FUZZ_CHECK(has);
    }
}

static void fuzz_chunked(const uint8_t *data, size_t size, uint64_t *rng)
{
    eddy__chunked_t c;
    char *whole = malloc(size ? size : 1);
    memcpy(whole, data, size);
    size_t whole_len = size;
    eddy__chunked_init(&c);
    ssize_t whole_rc = eddy__chunked_decode(&c, whole, &whole_len);
    FUZZ_CHECK(whole_rc >= 0 || whole_rc == EDDY_AGAIN || whole_rc == EDDY_EPROTO ||
               whole_rc == EDDY_ETOOBIG);
    FUZZ_CHECK(whole_len <= size);
    if (whole_rc >= 0) {
        FUZZ_CHECK(whole_len + (size_t)whole_rc <= size);
        /* The leftover bytes are the input's last bytes, moved after the body. */
        FUZZ_CHECK(memcmp(whole + whole_len, data + size - (size_t)whole_rc, (size_t)whole_rc) ==
                   0);
    }

    /* The same input in random pieces, each in a buffer of its exact size. */
    char *out = malloc(size ? size : 1);
    size_t out_len = 0, pos = 0;
    ssize_t rc = EDDY_AGAIN;
    eddy__chunked_init(&c);
    do {
        size_t piece = 1 + (size_t)(fuzz_rng_next(rng) % (size / 4 + 2));
        if (piece > size - pos)
            piece = size - pos;
        char *buf = malloc(piece ? piece : 1);
        memcpy(buf, data + pos, piece);
        size_t n = piece;
        rc = eddy__chunked_decode(&c, buf, &n);
        FUZZ_CHECK(n <= piece);
        pos += piece;
        if (rc == EDDY_AGAIN || rc >= 0) {
            memcpy(out + out_len, buf, n);
            out_len += n;
        }
        if (rc >= 0) {
            FUZZ_CHECK(n + (size_t)rc <= piece);
            rc += (ssize_t)(size - pos); /* unfed input is left over too */
        }
        free(buf);
    } while (rc == EDDY_AGAIN && pos < size);

    FUZZ_CHECK(rc == whole_rc);
    if (rc == EDDY_AGAIN || rc >= 0) {
        FUZZ_CHECK(out_len == whole_len);
        FUZZ_CHECK(memcmp(out, whole, out_len) == 0);
    }
    free(out);
    free(whole);
}

static void fuzz_url_decode(const uint8_t *data, size_t size)
{
    char *dst = malloc(size + 1);
    size_t n = eddy__url_decode(dst, (const char *)data, size);
    FUZZ_CHECK(n <= size && dst[n] == '\0');
    free(dst);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t ctl = data[0];
    uint64_t rng = fuzz_seed_of(data, size);
    data++;
    size--;

    fuzz_head(data, size, ctl, &rng);
    fuzz_chunked(data, size, &rng);
    fuzz_url_decode(data, size);
    return 0;
}

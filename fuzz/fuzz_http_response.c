/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer driver for the response head parser in src/http_parser.c.
 *
 * The first input byte steers the run (bit 7: a small head size limit; bits 0-4: the
 * header capacity offered, 0-31); the rest is the data. Checked invariants:
 * - the parser gives the same result (status, reason, facts, headers) whole, repeated
 *   with the same bytes, resumed over random growing prefixes and byte by byte (small
 *   inputs), each call on a buffer of exactly the bytes so far;
 * - the header count is written only when a head is returned, and never exceeds the
 *   capacity;
 * - a parsed head lies inside the buffer and max_head and ends with LF; it starts with
 *   "HTTP/1.0 " or "HTTP/1.1 " and the status digits; its spans are inside it, the
 *   reason and values free of CR, LF and NUL, values trimmed, names followed by ':';
 * - the facts agree with the headers: chunked never together with a Content-Length.
 */
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "fuzz.h"
#include "http_heads_equal.h"

#define MAX_CAP 31

struct parsed {
    eddy__http_response_t resp;
    eddy__http_header_t headers[MAX_CAP];
    size_t num_headers;
};

static ssize_t parse_copy(eddy__http_parser_t *p, const uint8_t *data, size_t len, size_t cap,
                          struct parsed *out)
{
    char *buf = malloc(len ? len : 1);
    memcpy(buf, data, len);
    memset(out, 0, sizeof(*out));
    out->num_headers = cap;
    ssize_t rc =
        eddy__http_parse_response(p, buf, len, &out->resp, out->headers, &out->num_headers);
    free(buf);
    FUZZ_CHECK(rc > 0 || rc == EDDY_AGAIN || rc == EDDY_ETOOBIG || rc == EDDY_EPROTO);
    FUZZ_CHECK(rc > 0 ? out->num_headers <= cap : out->num_headers == cap);
    return rc;
}

static bool parsed_equal(const struct parsed *a, const struct parsed *b)
{
    return responses_equal(&a->resp, &b->resp) && a->num_headers == b->num_headers &&
           headers_equal(a->headers, b->headers, a->num_headers);
}

static bool span_inside(eddy__span_t s, size_t from, size_t to)
{
    return s.off >= from && (size_t)s.off + s.len <= to;
}

static void check_text(const char *buf, eddy__span_t s)
{
    for (size_t k = s.off; k < (size_t)s.off + s.len; k++)
        FUZZ_CHECK(buf[k] != '\r' && buf[k] != '\n' && buf[k] != '\0');
}

static void check_head(const uint8_t *data, size_t head_len, const struct parsed *r)
{
    const char *buf = (const char *)data;
    const eddy__http_response_t *resp = &r->resp;
    FUZZ_CHECK(head_len >= 13 && buf[head_len - 1] == '\n');
    FUZZ_CHECK(memcmp(buf, "HTTP/1.", 7) == 0 && buf[8] == ' ');
    FUZZ_CHECK(resp->minor_version == buf[7] - '0');
    FUZZ_CHECK(resp->minor_version == 0 || resp->minor_version == 1);
    FUZZ_CHECK(resp->status >= 100 && resp->status <= 599);
    FUZZ_CHECK(resp->status == (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0'));
    FUZZ_CHECK(span_inside(resp->reason, 12, head_len));
    check_text(buf, resp->reason);
    FUZZ_CHECK(resp->content_length >= -1 && resp->content_length <= (int64_t)1 << 62);
    FUZZ_CHECK(!(resp->chunked && resp->content_length >= 0));
    for (size_t i = 0; i < r->num_headers; i++) {
        eddy__span_t name = r->headers[i].name, value = r->headers[i].value;
        FUZZ_CHECK(name.len > 0 && span_inside(name, resp->reason.off, head_len));
        FUZZ_CHECK(span_inside(value, name.off + name.len, head_len));
        FUZZ_CHECK(buf[name.off + name.len] == ':');
        for (size_t k = name.off; k < (size_t)name.off + name.len; k++)
            FUZZ_CHECK(eddy__is_tchar(buf[k]));
        check_text(buf, value);
        if (value.len > 0) {
            FUZZ_CHECK(buf[value.off] != ' ' && buf[value.off] != '\t');
            char last = buf[value.off + value.len - 1];
            FUZZ_CHECK(last != ' ' && last != '\t');
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t ctl = data[0];
    uint64_t rng = fuzz_seed_of(data, size);
    data++;
    size--;

    size_t max_head = ctl & 0x80 ? 1 + (size_t)((ctl >> 5) & 0x3) * 64 + (ctl & 0x1F) : 8192;
    size_t cap = ctl & 0x1F;
    eddy__http_parser_t p;
    struct parsed whole, other;

    eddy__http_parser_init(&p, max_head);
    ssize_t rc = parse_copy(&p, data, size, cap, &whole);
    if (rc > 0) {
        FUZZ_CHECK((size_t)rc <= size && (size_t)rc <= max_head);
        check_head(data, (size_t)rc, &whole);
    }
    if (rc == EDDY_AGAIN)
        FUZZ_CHECK(size < max_head);

    /* The same bytes again, with the parser's saved search position. */
    FUZZ_CHECK(parse_copy(&p, data, size, cap, &other) == rc);
    if (rc > 0)
        FUZZ_CHECK(parsed_equal(&whole, &other));

    /* Resumed over growing prefixes, as a client reading in pieces would. */
    int passes = size <= 256 ? 2 : 1;
    for (int pass = 0; pass < passes; pass++) {
        bool bytewise = pass == 1;
        eddy__http_parser_init(&p, max_head);
        size_t n = 0;
        ssize_t prc;
        for (;;) {
            prc = parse_copy(&p, data, n, cap, &other);
            if (prc != EDDY_AGAIN || n == size)
                break;
            size_t piece = bytewise ? 1 : 1 + (size_t)(fuzz_rng_next(&rng) % (size / 8 + 1));
            n += piece < size - n ? piece : size - n;
        }
        FUZZ_CHECK(prc == rc);
        if (rc > 0)
            FUZZ_CHECK(parsed_equal(&whole, &other));
    }
    return 0;
}

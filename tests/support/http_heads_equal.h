/* SPDX-License-Identifier: MIT */
/*
 * Field-by-field equality of parsed HTTP heads, for the unit tests and the fuzz drivers
 * of src/http_parser.c, which compare a head parsed whole with the same head parsed in
 * pieces.
 */
#ifndef EDDY_HTTP_HEADS_EQUAL_H
#define EDDY_HTTP_HEADS_EQUAL_H

#include "codec.h"

static inline bool span_same(eddy__span_t a, eddy__span_t b)
{
    return a.off == b.off && a.len == b.len;
}

static inline bool headers_equal(const eddy__http_header_t *a, const eddy__http_header_t *b,
                                 size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!span_same(a[i].name, b[i].name) || !span_same(a[i].value, b[i].value))
            return false;
    }
    return true;
}

static inline bool heads_equal(const eddy__http_head_t *a, const eddy__http_head_t *b)
{
    return span_same(a->method, b->method) && span_same(a->target, b->target) &&
           span_same(a->path, b->path) && span_same(a->query, b->query) &&
           a->minor_version == b->minor_version && a->num_headers == b->num_headers &&
           a->content_length == b->content_length && a->chunked == b->chunked &&
           a->keep_alive == b->keep_alive && a->upgrade_websocket == b->upgrade_websocket &&
           a->connection_upgrade == b->connection_upgrade &&
           headers_equal(a->headers, b->headers, a->num_headers);
}

static inline bool responses_equal(const eddy__http_response_t *a, const eddy__http_response_t *b)
{
    return a->minor_version == b->minor_version && a->status == b->status &&
           span_same(a->reason, b->reason) && a->content_length == b->content_length &&
           a->chunked == b->chunked && a->keep_alive == b->keep_alive &&
           a->upgrade_websocket == b->upgrade_websocket &&
           a->connection_upgrade == b->connection_upgrade;
}

#endif /* EDDY_HTTP_HEADS_EQUAL_H */

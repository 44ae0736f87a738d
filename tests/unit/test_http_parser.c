/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for src/http_parser.c: request and response heads, the chunked coding, url
 * decoding.
 *
 * Every input is parsed whole, one byte at a time and in random pieces, and the results
 * must be identical. Each partial call gets a fresh heap buffer holding exactly the bytes
 * received so far, so AddressSanitizer catches any read past them and any use of a
 * pointer kept from an earlier call.
 */
#include <ctype.h>

#include "codec.h"
#include "http_heads_equal.h"
#include "test.h"

#define DEFAULT_MAX_HEAD 8192

static bool span_in(eddy__span_t s, size_t len)
{
    return (size_t)s.off + s.len <= len;
}

/* The length of the next prefix to feed after n of len bytes: one byte more, or a random
 * step (often a short one). */
static size_t next_prefix(size_t n, size_t len, bool bytewise)
{
    size_t piece = bytewise ? 1 : 1 + (size_t)(test_rand() % (len - n));
    if (test_rand() % 4 == 0 && !bytewise)
        piece = 1 + (size_t)(test_rand() % 3);
    return n + (piece < len - n ? piece : len - n);
}

/* Prints why, then (up to 200 bytes of) the input it is about. */
static void show_input(const char *why, const char *text, size_t len)
{
    fprintf(stderr, "%s for: ", why);
    fwrite(text, 1, len < 200 ? len : 200, stderr);
    fprintf(stderr, "\n");
}

/* Calls the parser on a fresh copy of req[0..len), as a connection would after a read. */
static ssize_t parse_prefix(eddy__http_parser_t *p, const char *req, size_t len,
                            eddy__http_head_t *head)
{
    char *buf = malloc(len ? len : 1);
    memcpy(buf, req, len);
    ssize_t rc = eddy__http_parse_head(p, buf, len, head);
    free(buf);
    return rc;
}

/* Feeds req[0..len) as growing prefixes: one byte more each call, or random steps. */
static ssize_t parse_growing(const char *req, size_t len, size_t max_head, eddy__http_head_t *head,
                             bool bytewise)
{
    eddy__http_parser_t p;
    eddy__http_parser_init(&p, max_head);
    size_t n = 0;
    for (;;) {
        ssize_t rc = parse_prefix(&p, req, n, head);
        if (rc != EDDY_AGAIN || n == len)
            return rc;
        n = next_prefix(n, len, bytewise);
    }
}

/*
 * Parses req whole, byte by byte and in random splits; checks the three agree and that
 * every span lies inside the head. Returns the whole-buffer result.
 */
static ssize_t parse_all_ways(const char *req, size_t len, size_t max_head, eddy__http_head_t *head)
{
    eddy__http_parser_t p;
    eddy__http_head_t other;
    bool ok = true;

    eddy__http_parser_init(&p, max_head);
    memset(head, 0, sizeof(*head));
    ssize_t rc = parse_prefix(&p, req, len, head);

    /* A second call with the same bytes gives the same answer. */
    memset(&other, 0, sizeof(other));
    ok &= parse_prefix(&p, req, len, &other) == rc;
    ok &= rc <= 0 || heads_equal(head, &other);

    memset(&other, 0, sizeof(other));
    ok &= parse_growing(req, len, max_head, &other, true) == rc;
    ok &= rc <= 0 || heads_equal(head, &other);
    for (int trial = 0; trial < 10; trial++) {
        memset(&other, 0, sizeof(other));
        ok &= parse_growing(req, len, max_head, &other, false) == rc;
        ok &= rc <= 0 || heads_equal(head, &other);
    }

    if (rc > 0) {
        size_t hl = (size_t)rc;
        ok &= hl <= len && hl <= max_head && req[hl - 1] == '\n';
        ok &= span_in(head->method, hl) && span_in(head->target, hl) && span_in(head->path, hl) &&
              span_in(head->query, hl);
        ok &= head->num_headers <= EDDY__HTTP_MAX_HEADERS;
        for (size_t i = 0; i < head->num_headers; i++)
            ok &= span_in(head->headers[i].name, hl) && span_in(head->headers[i].value, hl);
    }
    if (!ok)
        show_input("parse modes disagree", req, len);
    CHECK(ok);
    return rc;
}

static ssize_t parse_str(const char *req, eddy__http_head_t *head)
{
    return parse_all_ways(req, strlen(req), DEFAULT_MAX_HEAD, head);
}

#define CHECK_SPAN(req, span, expected)                                                            \
    CHECK_MEM((req) + (span).off, (span).len, expected, strlen(expected))

/* The value of the first header called name, or NULL. */
static const char *header_value(const char *req, const eddy__http_head_t *head, const char *name,
                                size_t *len)
{
    for (size_t i = 0; i < head->num_headers; i++) {
        if (eddy__span_eq(req, head->headers[i].name, name)) {
            *len = head->headers[i].value.len;
            return req + head->headers[i].value.off;
        }
    }
    return NULL;
}

static void test_simple_get(void)
{
    const char *req = "GET /chat?room=1&x=%20 HTTP/1.1\r\n"
                      "Host: example.com\r\n"
                      "User-Agent: test/1.0\r\n"
                      "\r\n";
    eddy__http_head_t h;
    CHECK_EQ_INT(parse_str(req, &h), strlen(req));
    CHECK_SPAN(req, h.method, "GET");
    CHECK_SPAN(req, h.target, "/chat?room=1&x=%20");
    CHECK_SPAN(req, h.path, "/chat");
    CHECK_SPAN(req, h.query, "room=1&x=%20");
    CHECK_EQ_INT(h.minor_version, 1);
    CHECK_EQ_INT(h.num_headers, 2);
    CHECK_SPAN(req, h.headers[0].name, "Host");
    CHECK_SPAN(req, h.headers[0].value, "example.com");
    CHECK_SPAN(req, h.headers[1].name, "User-Agent");
    CHECK_SPAN(req, h.headers[1].value, "test/1.0");
    CHECK_EQ_INT(h.content_length, -1);
    CHECK(!h.chunked);
    CHECK(h.keep_alive);
    CHECK(!h.upgrade_websocket);
    CHECK(!h.connection_upgrade);
}

static void test_paths_and_queries(void)
{
    eddy__http_head_t h;
    const char *req = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    CHECK(parse_str(req, &h) > 0);
    CHECK_SPAN(req, h.path, "/");
    CHECK_EQ_INT(h.query.len, 0);

    req = "GET /a/b/c? HTTP/1.1\r\nHost: a\r\n\r\n";
    CHECK(parse_str(req, &h) > 0);
    CHECK_SPAN(req, h.path, "/a/b/c");
    CHECK_EQ_INT(h.query.len, 0);

    req = "GET /p?a=1?b=2 HTTP/1.1\r\nHost: a\r\n\r\n";
    CHECK(parse_str(req, &h) > 0);
    CHECK_SPAN(req, h.path, "/p");
    CHECK_SPAN(req, h.query, "a=1?b=2");

    req = "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n";
    CHECK(parse_str(req, &h) > 0);
    CHECK_SPAN(req, h.method, "OPTIONS");
    CHECK_SPAN(req, h.target, "*");
    CHECK_SPAN(req, h.path, "*");
    CHECK_EQ_INT(h.query.len, 0);

    /* absolute-form: the path starts after the authority. */
    req = "GET http://example.com:8080/a/b?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n";
    CHECK(parse_str(req, &h) > 0);
    CHECK_SPAN(req, h.target, "http://example.com:8080/a/b?x=1");
    CHECK_SPAN(req, h.path, "/a/b");
    CHECK_SPAN(req, h.query, "x=1");

    req = "GET HTTPS://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n";
    CHECK(parse_str(req, &h) > 0);
    CHECK_EQ_INT(h.path.len, 0);
    CHECK_EQ_INT(h.query.len, 0);

    req = "GET coap2://h/p HTTP/1.1\r\nHost: h\r\n\r\n";
    CHECK(parse_str(req, &h) > 0);
    CHECK_SPAN(req, h.path, "/p");

    req = "GET ws+x.y-z://h?q HTTP/1.1\r\nHost: h\r\n\r\n";
    CHECK(parse_str(req, &h) > 0);
    CHECK_EQ_INT(h.path.len, 0);
    CHECK_SPAN(req, h.query, "q");

    /* Raw UTF-8 in the path passes; percent-escapes are left to the caller. */
    req = "GET /caf\xc3\xa9/%41 HTTP/1.1\r\nHost: a\r\n\r\n";
    CHECK(parse_str(req, &h) > 0);
    CHECK_SPAN(req, h.path, "/caf\xc3\xa9/%41");

    /* Other token methods. */
    req = "M-SEARCH! /x HTTP/1.1\r\nHost: a\r\n\r\n";
    CHECK(parse_str(req, &h) > 0);
    CHECK_SPAN(req, h.method, "M-SEARCH!");
}

#define PUNCT "a:b, \"c\" (d) <e> {f} [g] ~!@#$%^&*=+|\\/?;'`"

static void test_header_values(void)
{
    const char *req = "POST /upload HTTP/1.1\r\n"
                      "hOsT:example.com\r\n"
                      "X-Spaced:   spaced  value \t \r\n"
                      "X-Empty:\r\n"
                      "X-Blank:    \r\n"
                      "X-Tab:\tin\tside\t\r\n"
                      "X-Obs-Text: caf\xc3\xa9 \xff\x80\r\n"
                      "X-Punct: " PUNCT "\r\n"
                      "!#$%&'*+-.^_`|~09AZaz: token name\r\n"
                      "Content-Length: 5\r\n"
                      "\r\n"
                      "hello";
    eddy__http_head_t h;
    size_t head_len = strlen(req) - 5;
    CHECK_EQ_INT(parse_str(req, &h), head_len);
    CHECK_SPAN(req, h.method, "POST");
    CHECK_EQ_INT(h.num_headers, 9);
    CHECK_EQ_INT(h.content_length, 5);

    size_t len;
    const char *v = header_value(req, &h, "HOST", &len);
    CHECK(v && len == 11 && memcmp(v, "example.com", 11) == 0);
    v = header_value(req, &h, "x-spaced", &len);
    CHECK(v && len == 13 && memcmp(v, "spaced  value", 13) == 0);
    v = header_value(req, &h, "X-EMPTY", &len);
    CHECK(v && len == 0);
    v = header_value(req, &h, "x-blank", &len);
    CHECK(v && len == 0);
    v = header_value(req, &h, "x-tab", &len);
    CHECK(v && len == 7 && memcmp(v, "in\tside", 7) == 0);
    v = header_value(req, &h, "x-obs-text", &len);
    CHECK(v && len == 8 && memcmp(v, "caf\xc3\xa9 \xff\x80", 8) == 0);
    v = header_value(req, &h, "x-punct", &len);
    CHECK(v && len == strlen(PUNCT) && memcmp(v, PUNCT, len) == 0);
    v = header_value(req, &h, "!#$%&'*+-.^_`|~09azaz", &len);
    CHECK(v && len == 10);
}

static void test_websocket_upgrade(void)
{
    const char *req = "GET /ws HTTP/1.1\r\n"
                      "host: server.example.com\r\n"
                      "UPGRADE: WebSocket\r\n"
                      "connection: keep-alive, Upgrade\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      "Sec-WebSocket-Version: 13\r\n"
                      "\r\n";
    eddy__http_head_t h;
    CHECK_EQ_INT(parse_str(req, &h), strlen(req));
    CHECK(h.upgrade_websocket);
    CHECK(h.connection_upgrade);
    CHECK(h.keep_alive);
    CHECK_EQ_INT(h.num_headers, 5);

    /* Upgrade lists and several Connection fields. */
    req = "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: h2c, websocket/13, websocket\r\n"
          "Connection: foo\r\nConnection: ,,upgrade ,\r\n\r\n";
    CHECK(parse_str(req, &h) > 0);
    CHECK(h.upgrade_websocket);
    CHECK(h.connection_upgrade);

    req = "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websockets\r\nConnection: upgraded\r\n\r\n";
    CHECK(parse_str(req, &h) > 0);
    CHECK(!h.upgrade_websocket);
    CHECK(!h.connection_upgrade);
}

static void test_keep_alive(void)
{
    static const struct {
        const char *req;
        bool keep_alive;
    } cases[] = {
        {"GET / HTTP/1.1\r\nHost: a\r\n\r\n", true},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: CLOSE\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, close\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n", true},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n", true},
        {"GET / HTTP/1.0\r\n\r\n", false},
        {"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true},
        {"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n", false},
        {"GET / HTTP/1.0\r\nConnection: upgrade\r\n\r\n", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        eddy__http_head_t h;
        CHECK_EQ_INT(parse_str(cases[i].req, &h), strlen(cases[i].req));
        CHECK_EQ_INT(h.keep_alive, cases[i].keep_alive);
    }

    eddy__http_head_t h;
    CHECK(parse_str("GET / HTTP/1.0\r\n\r\n", &h) > 0);
    CHECK_EQ_INT(h.minor_version, 0);
    CHECK_EQ_INT(h.num_headers, 0);
}

static void test_line_endings(void)
{
    eddy__http_head_t h;

    /* Bare LF throughout. */
    const char *req = "GET /lf HTTP/1.1\nHost: a\nX: 1\n\n";
    CHECK_EQ_INT(parse_str(req, &h), strlen(req));
    CHECK_EQ_INT(h.num_headers, 2);
    CHECK_SPAN(req, h.headers[1].value, "1");

    /* Mixed, and a LF CR LF terminator. */
    req = "GET /mixed HTTP/1.1\r\nHost: a\nX: 1\r\n\n";
    CHECK_EQ_INT(parse_str(req, &h), strlen(req));
    req = "GET /mixed HTTP/1.1\nHost: a\n\r\n";
    CHECK_EQ_INT(parse_str(req, &h), strlen(req));
    CHECK_SPAN(req, h.headers[0].value, "a");

    /* Leading empty lines are skipped but counted in the head length. */
    req = "\r\n\r\nGET /after-crlf HTTP/1.1\r\nHost: a\r\n\r\n";
    CHECK_EQ_INT(parse_str(req, &h), strlen(req));
    CHECK_EQ_INT(h.method.off, 4);
    CHECK_SPAN(req, h.path, "/after-crlf");
    req = "\n\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    CHECK_EQ_INT(parse_str(req, &h), strlen(req));
    CHECK_EQ_INT(h.method.off, 4);

    /* Only empty lines so far: more is needed. */
    CHECK_EQ_INT(parse_str("\r\n\r\n\r\n", &h), EDDY_AGAIN);
    CHECK_EQ_INT(parse_str("\r\n\r", &h), EDDY_AGAIN);
    CHECK_EQ_INT(parse_str("", &h), EDDY_AGAIN);
}

#define FIRST  "GET /first HTTP/1.1\r\nHost: a\r\n\r\n"
#define SECOND "POST /second HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n"
#define THIRD  "GET /third HTTP/1.0\n\n"

static void test_pipelined(void)
{
    const char *reqs = FIRST SECOND "abc" THIRD;
    size_t len = strlen(reqs), off = 0;
    eddy__http_head_t h;

    ssize_t rc = parse_all_ways(reqs, len, DEFAULT_MAX_HEAD, &h);
    CHECK_EQ_INT(rc, strlen(FIRST));
    CHECK_SPAN(reqs, h.path, "/first");
    off += (size_t)rc;

    rc = parse_all_ways(reqs + off, len - off, DEFAULT_MAX_HEAD, &h);
    CHECK_EQ_INT(rc, strlen(SECOND));
    CHECK_SPAN(reqs + off, h.path, "/second");
    CHECK_EQ_INT(h.content_length, 3);
    off += (size_t)rc + 3;

    rc = parse_all_ways(reqs + off, len - off, DEFAULT_MAX_HEAD, &h);
    CHECK_EQ_INT(rc, strlen(THIRD));
    CHECK_EQ_INT(off + (size_t)rc, len);
    CHECK_SPAN(reqs + off, h.path, "/third");
}

static void test_content_length(void)
{
    static const struct {
        const char *fields;
        int64_t expect; /* -2: EDDY_EPROTO */
    } cases[] = {
        {"Content-Length: 0\r\n", 0},
        {"Content-Length: 42\r\n", 42},
        {"content-length:42\r\n", 42},
        {"Content-Length: 007\r\n", 7},
        {"Content-Length: 5, 5\r\n", 5},
        {"Content-Length: 5,5 ,  5\r\n", 5},
        {"Content-Length: 5\r\nContent-Length: 5\r\n", 5},
        {"Content-Length: 5\r\nContent-Length: 005\r\n", 5},
        {"Content-Length: 4611686018427387904\r\n", (int64_t)1 << 62},
        {"Content-Length: 4611686018427387905\r\n", -2},
        {"Content-Length: 9223372036854775807\r\n", -2},
        {"Content-Length: 18446744073709551616\r\n", -2},
        {"Content-Length: 99999999999999999999999999999\r\n", -2},
        {"Content-Length: 5\r\nContent-Length: 6\r\n", -2},
        {"Content-Length: 5, 6\r\n", -2},
        {"Content-Length: \r\n", -2},
        {"Content-Length: 5,\r\n", -2},
        {"Content-Length: ,5\r\n", -2},
        {"Content-Length: 5,,5\r\n", -2},
        {"Content-Length: -1\r\n", -2},
        {"Content-Length: +5\r\n", -2},
        {"Content-Length: 5 5\r\n", -2},
        {"Content-Length: 1.5\r\n", -2},
        {"Content-Length: 0x10\r\n", -2},
        {"Content-Length: five\r\n", -2},
        {"Content-Length: 5\r\nContent-Length: \r\n", -2},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char req[256];
        snprintf(req, sizeof(req), "POST / HTTP/1.1\r\nHost: a\r\n%s\r\n", cases[i].fields);
        eddy__http_head_t h;
        ssize_t rc = parse_str(req, &h);
        if (cases[i].expect == -2) {
            CHECK_EQ_INT(rc, EDDY_EPROTO);
        } else {
            CHECK_EQ_INT(rc, strlen(req));
            CHECK_EQ_INT(h.content_length, cases[i].expect);
            CHECK(!h.chunked);
        }
    }
}

static void test_transfer_encoding(void)
{
    static const struct {
        const char *fields;
        bool ok;
    } cases[] = {
        {"Transfer-Encoding: chunked\r\n", true},
        {"transfer-encoding: CHUNKED\r\n", true},
        {"Transfer-Encoding: gzip, chunked\r\n", true},
        {"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n", true},
        {"Transfer-Encoding: chunked ,\r\n", true},
        {"Transfer-Encoding: gzip\r\n", false},
        {"Transfer-Encoding: chunked, gzip\r\n", false},
        {"Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n", false},
        {"Transfer-Encoding: chunked, chunked\r\n", false},
        {"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", false},
        {"Transfer-Encoding: \r\n", false},
        {"Transfer-Encoding: chunkedx\r\n", false},
        {"Transfer-Encoding: chunked;q=1\r\n", false},
        /* With Content-Length, in either order: refused. */
        {"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", false},
        {"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", false},
        {"Content-Length: 0\r\nTransfer-Encoding: chunked\r\n", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char req[256];
        snprintf(req, sizeof(req), "POST / HTTP/1.1\r\nHost: a\r\n%s\r\n", cases[i].fields);
        eddy__http_head_t h;
        ssize_t rc = parse_str(req, &h);
        if (cases[i].ok) {
            CHECK_EQ_INT(rc, strlen(req));
            CHECK(h.chunked);
            CHECK_EQ_INT(h.content_length, -1);
        } else {
            CHECK_EQ_INT(rc, EDDY_EPROTO);
        }
    }
    /* HTTP/1.0 with chunked is accepted too. */
    eddy__http_head_t h;
    CHECK(parse_str("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", &h) > 0);
    CHECK(h.chunked);
}

static void test_host(void)
{
    eddy__http_head_t h;
    CHECK_EQ_INT(parse_str("GET / HTTP/1.1\r\n\r\n", &h), EDDY_EPROTO);
    CHECK_EQ_INT(parse_str("GET / HTTP/1.1\r\nX-Host: a\r\n\r\n", &h), EDDY_EPROTO);
    CHECK_EQ_INT(parse_str("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", &h), EDDY_EPROTO);
    CHECK_EQ_INT(parse_str("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", &h), EDDY_EPROTO);
    CHECK_EQ_INT(parse_str("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", &h), EDDY_EPROTO);
    CHECK(parse_str("GET / HTTP/1.1\r\nHost:\r\n\r\n", &h) > 0);
    CHECK(parse_str("GET / HTTP/1.0\r\nHost: a\r\n\r\n", &h) > 0);
}

/* Every malformed head is EDDY_EPROTO, whole or however split. */
static void test_malformed(void)
{
    static const char *const bad[] = {
        /* Request line. */
        "G(T / HTTP/1.1\r\nHost: a\r\n\r\n",
        "GE\"T / HTTP/1.1\r\nHost: a\r\n\r\n",
        " GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /  HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
        "GET /\r\nHost: a\r\n\r\n",
        "GET / \r\nHost: a\r\n\r\n",
        "GET\r\nHost: a\r\n\r\n",
        "/ HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET a/b HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET ** HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET ?x HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET http:/x HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET ://x HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET 1http://x HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET http:// HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET http:///path HTTP/1.1\r\nHost: a\r\n\r\n",
        "CONNECT example.com:443 HTTP/1.1\r\nHost: a\r\n\r\n",
        /* Version. */
        "GET / HTTP/1.2\r\nHost: a\r\n\r\n",
        "GET / HTTP/2.0\r\nHost: a\r\n\r\n",
        "GET / HTTP/0.9\r\n\r\n",
        "GET / http/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.10\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.\r\nHost: a\r\n\r\n",
        "GET / HTTP/11\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1x\r\nHost: a\r\n\r\n",
        "GET / HTTP\r\nHost: a\r\n\r\n",
        /* Header names. */
        "GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nBad\x01: x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nBad\xc3\xa9: x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nBad(): x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\n: empty name\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n",
        "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n",
        /* Obsolete line folding. */
        "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n",
        "GET / HTTP/1.1\r\n Host: a\r\n\r\n",
        /* Bare CR. */
        "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
        "GET / HTTP/1.1\r\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\n\rX: y\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: y\r\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX\r: y\r\n\r\n",
        "\rGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "\r\n\rGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        /* Control characters in values. */
        "GET / HTTP/1.1\r\nHost: a\r\nX: a\x01\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: \x1b[31m\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: \x0b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\x0c\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        eddy__http_head_t h;
        ssize_t rc = parse_str(bad[i], &h);
        if (rc != EDDY_EPROTO)
            fprintf(stderr, "accepted bad head #%zu: %s\n", i, bad[i]);
        CHECK_EQ_INT(rc, EDDY_EPROTO);
    }

    /* A NUL byte, which strlen() would cut short. */
    const char nul_value[] = "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n";
    eddy__http_head_t h;
    CHECK_EQ_INT(parse_all_ways(nul_value, sizeof(nul_value) - 1, DEFAULT_MAX_HEAD, &h),
                 EDDY_EPROTO);
    const char nul_target[] = "GET /\0 HTTP/1.1\r\nHost: a\r\n\r\n";
    CHECK_EQ_INT(parse_all_ways(nul_target, sizeof(nul_target) - 1, DEFAULT_MAX_HEAD, &h),
                 EDDY_EPROTO);
}

static void test_too_big(void)
{
    eddy__http_head_t h;
    const char *req = "GET /0123456789 HTTP/1.1\r\nHost: example.com\r\n\r\n";
    size_t len = strlen(req);

    /* A head of exactly max_head bytes fits; one byte less does not. */
    CHECK_EQ_INT(parse_all_ways(req, len, len, &h), len);
    CHECK_EQ_INT(parse_all_ways(req, len, len - 1, &h), EDDY_ETOOBIG);
    CHECK_EQ_INT(parse_all_ways(req, len, 10, &h), EDDY_ETOOBIG);
    /* Incomplete and still under the limit: more is needed. */
    CHECK_EQ_INT(parse_all_ways(req, len - 1, len, &h), EDDY_AGAIN);
    /* Incomplete and at the limit: too big, without waiting for the rest. */
    CHECK_EQ_INT(parse_all_ways(req, len - 1, len - 1, &h), EDDY_ETOOBIG);
    /* Data after the head does not count. */
    char longer[256];
    snprintf(longer, sizeof(longer), "%s%s", req, "body bytes beyond the limit");
    CHECK_EQ_INT(parse_all_ways(longer, strlen(longer), len, &h), len);
    /* Leading empty lines count. */
    snprintf(longer, sizeof(longer), "\r\n%s", req);
    CHECK_EQ_INT(parse_all_ways(longer, strlen(longer), len, &h), EDDY_ETOOBIG);
    CHECK_EQ_INT(parse_all_ways(longer, strlen(longer), len + 2, &h), len + 2);
    /* An endless stream of empty lines is stopped by the limit. */
    char crlfs[200];
    for (size_t i = 0; i < sizeof(crlfs); i += 2)
        memcpy(crlfs + i, "\r\n", 2);
    CHECK_EQ_INT(parse_all_ways(crlfs, sizeof(crlfs), 100, &h), EDDY_ETOOBIG);
    CHECK_EQ_INT(parse_all_ways(crlfs, 99, 100, &h), EDDY_AGAIN);
    /* max_head 0 allows nothing. */
    CHECK_EQ_INT(parse_all_ways(req, len, 0, &h), EDDY_ETOOBIG);

    /* EDDY__HTTP_MAX_HEADERS headers fit, one more does not. */
    static char many[8192];
    size_t n = (size_t)snprintf(many, sizeof(many), "GET / HTTP/1.1\r\n");
    for (int i = 0; i < EDDY__HTTP_MAX_HEADERS - 1; i++)
        n += (size_t)snprintf(many + n, sizeof(many) - n, "X-%d: %d\r\n", i, i);
    size_t before_host = n;
    n += (size_t)snprintf(many + n, sizeof(many) - n, "Host: a\r\n\r\n");
    CHECK_EQ_INT(parse_all_ways(many, n, sizeof(many), &h), n);
    CHECK_EQ_INT(h.num_headers, EDDY__HTTP_MAX_HEADERS);
    n = before_host + (size_t)snprintf(many + before_host, sizeof(many) - before_host,
                                       "X-Extra: 1\r\nHost: a\r\n\r\n");
    CHECK_EQ_INT(parse_all_ways(many, n, sizeof(many), &h), EDDY_ETOOBIG);
}

/* Every proper prefix of a valid head needs more input; the whole parses. */
static void test_every_prefix_is_again(void)
{
    const char *req = "\r\nPUT /a?b=c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                      "Connection: Upgrade\r\nUpgrade: websocket\r\n\n";
    size_t len = strlen(req);
    eddy__http_parser_t p;
    eddy__http_head_t h;
    int wrong = 0;
    for (size_t n = 0; n < len; n++) {
        eddy__http_parser_init(&p, DEFAULT_MAX_HEAD);
        wrong += parse_prefix(&p, req, n, &h) != EDDY_AGAIN;
    }
    CHECK_EQ_INT(wrong, 0);
    CHECK_EQ_INT(parse_all_ways(req, len, DEFAULT_MAX_HEAD, &h), len);
    CHECK(h.chunked);
    CHECK(h.upgrade_websocket && h.connection_upgrade);
}

/* A realistic browser head, in 500 random splits. */
static void test_random_splits(void)
{
    const char *req =
        "GET /chat/room/42?user=alice&token=abc%20def HTTP/1.1\r\n"
        "Host: chat.example.com:8443\r\n"
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n"
        "Accept: */*\r\n"
        "Accept-Language: en-US,en;q=0.5\r\n"
        "Accept-Encoding: gzip, deflate, br\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "Origin: https://chat.example.com\r\n"
        "Sec-WebSocket-Extensions: permessage-deflate\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Connection: keep-alive, Upgrade\r\n"
        "Cookie: session=xyz; theme=dark\r\n"
        "Pragma: no-cache\r\n"
        "Cache-Control: no-cache\r\n"
        "Upgrade: websocket\r\n"
        "\r\n";
    size_t len = strlen(req);
    eddy__http_head_t whole, split;
    CHECK_EQ_INT(parse_str(req, &whole), len);
    CHECK_EQ_INT(whole.num_headers, 14);
    CHECK(whole.upgrade_websocket && whole.connection_upgrade && whole.keep_alive);
    int wrong = 0;
    for (int trial = 0; trial < 500; trial++) {
        memset(&split, 0, sizeof(split));
        wrong += parse_growing(req, len, DEFAULT_MAX_HEAD, &split, false) != (ssize_t)len;
        wrong += !heads_equal(&whole, &split);
    }
    CHECK_EQ_INT(wrong, 0);
}

/* ---- response heads ---- */

#define RESP_MAX_HEADERS 16

/* A parsed response head with its caller-sized header array. */
struct parsed_response {
    eddy__http_response_t resp;
    eddy__http_header_t headers[RESP_MAX_HEADERS];
    size_t num_headers;
};

/* Parses a fresh copy of text[0..len), offering cap header slots. */
static ssize_t response_prefix(eddy__http_parser_t *p, const char *text, size_t len, size_t cap,
                               struct parsed_response *out)
{
    char *buf = malloc(len ? len : 1);
    memcpy(buf, text, len);
    out->num_headers = cap;
    ssize_t rc =
        eddy__http_parse_response(p, buf, len, &out->resp, out->headers, &out->num_headers);
    free(buf);
    /* The count is written only when a head is returned. */
    CHECK(rc > 0 || out->num_headers == cap);
    return rc;
}

static ssize_t response_growing(const char *text, size_t len, size_t max_head, size_t cap,
                                struct parsed_response *out, bool bytewise)
{
    eddy__http_parser_t p;
    eddy__http_parser_init(&p, max_head);
    size_t n = 0;
    for (;;) {
        ssize_t rc = response_prefix(&p, text, n, cap, out);
        if (rc != EDDY_AGAIN || n == len)
            return rc;
        n = next_prefix(n, len, bytewise);
    }
}

static bool parsed_equal(const struct parsed_response *a, const struct parsed_response *b)
{
    return responses_equal(&a->resp, &b->resp) && a->num_headers == b->num_headers &&
           headers_equal(a->headers, b->headers, a->num_headers);
}

/* The response counterpart of parse_all_ways(): whole, repeated, byte by byte and in
 * random splits must agree, and every span must lie inside the head. */
static ssize_t response_all_ways(const char *text, size_t len, size_t max_head, size_t cap,
                                 struct parsed_response *out)
{
    eddy__http_parser_t p;
    struct parsed_response other;
    bool ok = true;

    eddy__http_parser_init(&p, max_head);
    memset(out, 0, sizeof(*out));
    ssize_t rc = response_prefix(&p, text, len, cap, out);

    memset(&other, 0, sizeof(other));
    ok &= response_prefix(&p, text, len, cap, &other) == rc;
    ok &= rc <= 0 || parsed_equal(out, &other);
    memset(&other, 0, sizeof(other));
    ok &= response_growing(text, len, max_head, cap, &other, true) == rc;
    ok &= rc <= 0 || parsed_equal(out, &other);
    for (int trial = 0; trial < 10; trial++) {
        memset(&other, 0, sizeof(other));
        ok &= response_growing(text, len, max_head, cap, &other, false) == rc;
        ok &= rc <= 0 || parsed_equal(out, &other);
    }

    if (rc > 0) {
        size_t hl = (size_t)rc;
        ok &= hl <= len && hl <= max_head && text[hl - 1] == '\n';
        ok &= span_in(out->resp.reason, hl) && out->num_headers <= cap;
        for (size_t i = 0; i < out->num_headers; i++)
            ok &= span_in(out->headers[i].name, hl) && span_in(out->headers[i].value, hl);
    }
    if (!ok)
        show_input("response parse modes disagree", text, len);
    CHECK(ok);
    return rc;
}

static ssize_t response_str(const char *text, struct parsed_response *out)
{
    return response_all_ways(text, strlen(text), DEFAULT_MAX_HEAD, RESP_MAX_HEADERS, out);
}

static void test_response_switching_protocols(void)
{
    const char *text = "HTTP/1.1 101 Switching Protocols\r\n"
                       "Upgrade: websocket\r\n"
                       "Connection: Upgrade\r\n"
                       "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                       "\r\n"
                       "\x81\x05hello"; /* a first frame may follow in the same read */
    struct parsed_response r;
    CHECK_EQ_INT(response_str(text, &r), strlen(text) - 7);
    CHECK_EQ_INT(r.resp.minor_version, 1);
    CHECK_EQ_INT(r.resp.status, 101);
    CHECK_SPAN(text, r.resp.reason, "Switching Protocols");
    CHECK_EQ_INT(r.num_headers, 3);
    CHECK_SPAN(text, r.headers[2].name, "Sec-WebSocket-Accept");
    CHECK_SPAN(text, r.headers[2].value, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    CHECK(r.resp.upgrade_websocket && r.resp.connection_upgrade);
    CHECK(r.resp.keep_alive && !r.resp.chunked);
    CHECK_EQ_INT(r.resp.content_length, -1);
}

static void test_response_status_lines(void)
{
    struct parsed_response r;
    const char *text = "HTTP/1.0 404 Not Found\r\nContent-Length: 9\r\n\r\n";
    CHECK_EQ_INT(response_str(text, &r), strlen(text));
    CHECK_EQ_INT(r.resp.minor_version, 0);
    CHECK_EQ_INT(r.resp.status, 404);
    CHECK_SPAN(text, r.resp.reason, "Not Found");
    CHECK_EQ_INT(r.resp.content_length, 9);
    CHECK(!r.resp.keep_alive);

    /* Empty reason phrases, with and without the space before them. */
    text = "HTTP/1.1 200 \r\n\r\n";
    CHECK_EQ_INT(response_str(text, &r), strlen(text));
    CHECK_EQ_INT(r.resp.status, 200);
    CHECK_EQ_INT(r.resp.reason.len, 0);
    CHECK_EQ_INT(r.num_headers, 0);
    text = "HTTP/1.1 204\r\n\r\n";
    CHECK_EQ_INT(response_str(text, &r), strlen(text));
    CHECK_EQ_INT(r.resp.status, 204);
    CHECK_EQ_INT(r.resp.reason.len, 0);
    text = "HTTP/1.1 599\n\n";
    CHECK_EQ_INT(response_str(text, &r), strlen(text));
    CHECK_EQ_INT(r.resp.status, 599);

    /* The reason is taken as it is: spaces, tabs and obs-text inside it. */
    text = "HTTP/1.1 403 Go\taway  \xc3\xa9 \r\nX: 1\n\n";
    CHECK_EQ_INT(response_str(text, &r), strlen(text));
    CHECK_SPAN(text, r.resp.reason, "Go\taway  \xc3\xa9 ");
    CHECK_EQ_INT(r.num_headers, 1);

    /* Persistence after the version and Connection. */
    text = "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n";
    CHECK_EQ_INT(response_str(text, &r), strlen(text));
    CHECK(r.resp.keep_alive);
    text = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n";
    CHECK_EQ_INT(response_str(text, &r), strlen(text));
    CHECK(!r.resp.keep_alive);
}

static void test_response_body_framing(void)
{
    struct parsed_response r;
    const char *text = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
    CHECK_EQ_INT(response_str(text, &r), strlen(text));
    CHECK(r.resp.chunked);
    CHECK_EQ_INT(r.resp.content_length, -1);
    /* A response may end its codings with another one: its body lasts until the close. */
    text = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n";
    CHECK_EQ_INT(response_str(text, &r), strlen(text));
    CHECK(!r.resp.chunked);
    CHECK_EQ_INT(r.resp.content_length, -1);
    /* The same length repeated is one length. */
    text = "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\n";
    CHECK_EQ_INT(response_str(text, &r), strlen(text));
    CHECK_EQ_INT(r.resp.content_length, 5);
}

/* Every malformed class the request parser refuses, where it applies to a response, and
 * the status line's own. */
static void test_response_malformed(void)
{
    static const char *const bad[] = {
        /* status line */
        "\r\n\r\n",
        "\n\n",
        "HTTP/1.1\r\n\r\n",
        "HTTP/1.1 \r\n\r\n",
        "HTTP/2.0 200 OK\r\n\r\n",
        "HTTP/1.2 200 OK\r\n\r\n",
        "http/1.1 200 OK\r\n\r\n",
        "HTTP/1.1  200 OK\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 20x OK\r\n\r\n",
        "HTTP/1.1 099 Low\r\n\r\n",
        "HTTP/1.1 600 High\r\n\r\n",
        "HTTP/1.1 200\tOK\r\n\r\n",
        "HTTP/1.1 200 O\x01K\r\n\r\n",
        "HTTP/1.1 200 O\x7fK\r\n\r\n",
        "HTTP/1.1 200 OK\rX\r\n\r\n",
        " HTTP/1.1 200 OK\r\n\r\n",
        "\r\nHTTP/1.1 200 OK\r\n\r\n", /* no empty lines before a status line */
        "ICY 200 OK\r\n\r\n",
        /* header lines: the request parser's rules */
        "HTTP/1.1 200 OK\r\nX: 1\r\n folded\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX: 1\r\n\tfolded\r\n\r\n",
        "HTTP/1.1 200 OK\r\nBad Name: 1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nName : 1\r\n\r\n",
        "HTTP/1.1 200 OK\r\n: no name\r\n\r\n",
        "HTTP/1.1 200 OK\r\nNo-Colon\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX(y): 1\r\n\r\n",
        "HTTP/1.1 200 OK\r\n\xc3\xa9: 1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX: a\x01\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX: a\x7f\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1e3\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: gzip\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct parsed_response r;
        ssize_t rc =
            response_all_ways(bad[i], strlen(bad[i]), DEFAULT_MAX_HEAD, RESP_MAX_HEADERS, &r);
        if (rc != EDDY_EPROTO)
            fprintf(stderr, "response case %zu accepted (%zd): %s\n", i, rc, bad[i]);
        CHECK_EQ_INT(rc, EDDY_EPROTO);
    }
    /* A NUL byte in a value (strlen would stop at it). */
    static const char nul_value[] = "HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n";
    struct parsed_response r;
    CHECK_EQ_INT(
        response_all_ways(nul_value, sizeof(nul_value) - 1, DEFAULT_MAX_HEAD, RESP_MAX_HEADERS, &r),
        EDDY_EPROTO);
}

/* The caller's array bounds the header count; the head size limit holds as for requests. */
static void test_response_limits(void)
{
    char text[512];
    size_t n = (size_t)snprintf(text, sizeof(text), "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i < 4; i++)
        n += (size_t)snprintf(text + n, sizeof(text) - n, "X-%d: %d\r\n", i, i);
    n += (size_t)snprintf(text + n, sizeof(text) - n, "\r\n");
    struct parsed_response r;
    CHECK_EQ_INT(response_all_ways(text, n, DEFAULT_MAX_HEAD, 4, &r), n);
    CHECK_EQ_INT(r.num_headers, 4);
    CHECK_EQ_INT(response_all_ways(text, n, DEFAULT_MAX_HEAD, 3, &r), EDDY_ETOOBIG);
    CHECK_EQ_INT(response_all_ways(text, n, DEFAULT_MAX_HEAD, 0, &r), EDDY_ETOOBIG);
    /* No headers at all fit an empty array. */
    const char *bare = "HTTP/1.1 200 OK\r\n\r\n";
    CHECK_EQ_INT(response_all_ways(bare, strlen(bare), DEFAULT_MAX_HEAD, 0, &r), strlen(bare));
    CHECK_EQ_INT(r.num_headers, 0);

    /* max_head: a head of exactly the limit parses, one byte less is too big, and an
     * unterminated head at the limit is too big rather than pending. */
    CHECK_EQ_INT(response_all_ways(text, n, n, RESP_MAX_HEADERS, &r), n);
    CHECK_EQ_INT(response_all_ways(text, n, n - 1, RESP_MAX_HEADERS, &r), EDDY_ETOOBIG);
    CHECK_EQ_INT(response_all_ways(text, n - 2, n - 2, RESP_MAX_HEADERS, &r), EDDY_ETOOBIG);
    CHECK_EQ_INT(response_all_ways(text, n - 2, n, RESP_MAX_HEADERS, &r), EDDY_AGAIN);
}

/* Every proper prefix of a valid response head needs more input. */
static void test_response_every_prefix_is_again(void)
{
    const char *text = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Accept: x\n\n";
    size_t len = strlen(text);
    eddy__http_parser_t p;
    struct parsed_response r;
    int wrong = 0;
    for (size_t n = 0; n < len; n++) {
        eddy__http_parser_init(&p, DEFAULT_MAX_HEAD);
        wrong += response_prefix(&p, text, n, RESP_MAX_HEADERS, &r) != EDDY_AGAIN;
    }
    CHECK_EQ_INT(wrong, 0);
    CHECK_EQ_INT(response_str(text, &r), len);
}

/* A realistic server answer, in 500 random splits. */
static void test_response_random_splits(void)
{
    const char *text =
        "HTTP/1.1 101 Switching Protocols\r\n"
        "Server: nginx/1.25.3\r\n"
        "Date: Fri, 04 Dec 2026 21:00:00 GMT\r\n"
        "Connection: upgrade\r\n"
        "Upgrade: WebSocket\r\n"
        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
        "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n"
        "Sec-WebSocket-Protocol: chat\r\n"
        "Set-Cookie: a=b; Path=/\r\n"
        "\r\n";
    size_t len = strlen(text);
    struct parsed_response whole, split;
    CHECK_EQ_INT(response_str(text, &whole), len);
    CHECK_EQ_INT(whole.num_headers, 8);
    CHECK(whole.resp.upgrade_websocket && whole.resp.connection_upgrade);
    int wrong = 0;
    for (int trial = 0; trial < 500; trial++) {
        memset(&split, 0, sizeof(split));
        wrong += response_growing(text, len, DEFAULT_MAX_HEAD, RESP_MAX_HEADERS, &split, false) !=
                 (ssize_t)len;
        wrong += !parsed_equal(&whole, &split);
    }
    CHECK_EQ_INT(wrong, 0);
}

static void test_span_eq_and_tokens(void)
{
    const char *buf = "keep-alive, Upgrade ,, \tfoo\t,x";
    eddy__span_t all = {0, (uint32_t)strlen(buf)};
    CHECK(eddy__http_list_has_token(buf, all, "keep-alive"));
    CHECK(eddy__http_list_has_token(buf, all, "upgrade"));
    CHECK(eddy__http_list_has_token(buf, all, "UPGRADE"));
    CHECK(eddy__http_list_has_token(buf, all, "foo"));
    CHECK(eddy__http_list_has_token(buf, all, "x"));
    CHECK(!eddy__http_list_has_token(buf, all, "keep"));
    CHECK(!eddy__http_list_has_token(buf, all, "alive"));
    CHECK(!eddy__http_list_has_token(buf, all, "upgrad"));
    CHECK(!eddy__http_list_has_token(buf, all, "close"));
    /* Only the span is searched. */
    eddy__span_t first = {0, 10};
    CHECK(eddy__http_list_has_token(buf, first, "keep-alive"));
    CHECK(!eddy__http_list_has_token(buf, first, "upgrade"));
    eddy__span_t empty = {5, 0};
    CHECK(!eddy__http_list_has_token(buf, empty, "alive"));

    CHECK(eddy__span_eq(buf, first, "KEEP-ALIVE"));
    CHECK(!eddy__span_eq(buf, first, "keep-aliv"));
    CHECK(!eddy__span_eq(buf, first, "keep-alive!"));
    CHECK(eddy__span_eq(buf, empty, ""));
    /* Case folding is ASCII only, and only for letters. */
    eddy__span_t at = {0, 1};
    CHECK(eddy__span_eq("@", at, "@"));
    CHECK(!eddy__span_eq("@", at, "`"));
    CHECK(!eddy__span_eq("[", at, "{"));
}

static bool ascii_case_eq_reference(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
        if (x >= 'A' && x <= 'Z')
            x += 'a' - 'A';
        if (y >= 'A' && y <= 'Z')
            y += 'a' - 'A';
        if (x != y)
            return false;
    }
    return true;
}

/* eddy__ascii_case_eq compares eight bytes at a time (the last eight overlapping), 4 to 7
 * bytes as two overlapping fours and shorter strings a byte at a time: every pair of
 * bytes, at every position of strings that take each path, agrees with a byte-by-byte
 * comparison. */
static void test_ascii_case_eq_every_byte_pair(void)
{
    static const size_t lengths[] = {1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 23, 24, 25};
    for (size_t l = 0; l < sizeof(lengths) / sizeof(lengths[0]); l++) {
        size_t n = lengths[l], wrong = 0;
        char a[32], b[32];
        for (size_t pos = 0; pos < n; pos++) {
            for (int x = 0; x < 256; x++) {
                for (int y = 0; y < 256; y++) {
                    memset(a, 'Q', n);
                    memset(b, 'q', n);
                    a[pos] = (char)x;
                    b[pos] = (char)y;
                    wrong += eddy__ascii_case_eq(a, b, n) != ascii_case_eq_reference(a, b, n);
                }
            }
        }
        CHECK(wrong == 0);
    }
    /* Random strings of random lengths, one a case-changed copy of the other, with a byte
     * changed half the time. */
    uint64_t seed = 0x9E3779B97F4A7C15u;
    size_t wrong = 0, equal = 0;
    for (int round = 0; round < 200000; round++) {
        char a[40], b[40];
        seed = seed * 6364136223846793005u + 1442695040888963407u;
        size_t n = (size_t)(seed >> 59) + (seed >> 58 & 1) * 8; /* 0-39 */
        for (size_t i = 0; i < n; i++) {
            seed = seed * 6364136223846793005u + 1442695040888963407u;
            a[i] = (char)(seed >> 56);
            b[i] = (seed >> 40 & 1) && isalpha((unsigned char)a[i]) ? (char)(a[i] ^ 0x20) : a[i];
        }
        if (n > 0 && (seed >> 20 & 1))
            b[(seed >> 24) % n] ^= (char)(1 << (seed >> 32) % 8);
        bool expected = ascii_case_eq_reference(a, b, n);
        equal += expected;
        wrong += eddy__ascii_case_eq(a, b, n) != expected;
    }
    CHECK(wrong == 0);
    CHECK(equal > 50000 && equal < 150000); /* both outcomes were exercised */
}

/* ---------------------------------------------------------------------------------------
 * Chunked
 * ------------------------------------------------------------------------------------- */

struct chunked_result {
    ssize_t rc;
    char *out; /* decoded body bytes */
    size_t out_len;
    char *rest; /* bytes after the body, when complete */
    size_t rest_len;
};

static void result_free(struct chunked_result *r)
{
    free(r->out);
    free(r->rest);
}

/*
 * Decodes in[0..len) fed in pieces: piece_max 0 feeds it whole, 1 byte by byte, otherwise
 * random pieces of 1..piece_max bytes. Each piece goes in a buffer of its exact size.
 */
static struct chunked_result decode_pieces(const char *in, size_t len, size_t piece_max)
{
    struct chunked_result r = {EDDY_AGAIN, malloc(len + 1), 0, NULL, 0};
    eddy__chunked_t c;
    size_t pos = 0;

    eddy__chunked_init(&c);
    do {
        size_t piece = piece_max == 0   ? len - pos
                       : piece_max == 1 ? 1
                                        : 1 + (size_t)(test_rand() % piece_max);
        if (piece > len - pos)
            piece = len - pos;
        char *buf = malloc(piece ? piece : 1);
        memcpy(buf, in + pos, piece);
        size_t n = piece;
        r.rc = eddy__chunked_decode(&c, buf, &n);
        if (r.rc != EDDY_AGAIN && r.rc < 0) {
            free(buf);
            break;
        }
        memcpy(r.out + r.out_len, buf, n);
        r.out_len += n;
        pos += piece;
        if (r.rc >= 0) {
            /* The bytes after the body follow the decoded ones, then the unfed input. */
            CHECK((size_t)r.rc <= piece - n);
            r.rest_len = (size_t)r.rc + (len - pos);
            r.rest = malloc(r.rest_len + 1);
            memcpy(r.rest, buf + n, (size_t)r.rc);
            memcpy(r.rest + r.rc, in + pos, len - pos);
            r.rc = (ssize_t)r.rest_len;
        }
        free(buf);
    } while (r.rc == EDDY_AGAIN && pos < len);
    return r;
}

/* Decodes whole, byte by byte and in random pieces; checks they agree. */
static struct chunked_result decode_all_ways(const char *in, size_t len)
{
    struct chunked_result whole = decode_pieces(in, len, 0);
    bool ok = true;
    for (int trial = 0; trial < 12; trial++) {
        size_t piece_max = trial == 0 ? 1 : trial < 6 ? 4 : 1 + len / 3;
        struct chunked_result other = decode_pieces(in, len, piece_max);
        ok &= other.rc == whole.rc;
        if (whole.rc != EDDY_AGAIN && whole.rc < 0) {
            result_free(&other);
            continue;
        }
        ok &= other.out_len == whole.out_len && memcmp(other.out, whole.out, whole.out_len) == 0;
        ok &= other.rest_len == whole.rest_len &&
              (whole.rest_len == 0 || memcmp(other.rest, whole.rest, whole.rest_len) == 0);
        result_free(&other);
    }
    if (!ok)
        show_input("chunked modes disagree", in, len);
    CHECK(ok);
    return whole;
}

static void check_chunked(const char *in, size_t len, ssize_t rc, const char *body, size_t body_len,
                          const char *rest)
{
    struct chunked_result r = decode_all_ways(in, len);
    if (r.rc != rc)
        fprintf(stderr, "chunked input: %.*s\n", (int)(len < 100 ? len : 100), in);
    CHECK_EQ_INT(r.rc, rc);
    if (rc >= 0 || rc == EDDY_AGAIN)
        CHECK_MEM(r.out, r.out_len, body, body_len);
    if (rc >= 0)
        CHECK_MEM(r.rest, r.rest_len, rest, strlen(rest));
    result_free(&r);
}

#define CHUNKED_OK(in, body, rest)                                                                 \
    check_chunked(in, sizeof(in) - 1, (ssize_t)strlen(rest), body, sizeof(body) - 1, rest)
#define CHUNKED_AGAIN(in, body)                                                                    \
    check_chunked(in, sizeof(in) - 1, EDDY_AGAIN, body, sizeof(body) - 1, "")
#define CHUNKED_ERR(in, err) check_chunked(in, sizeof(in) - 1, err, "", 0, "")

static void test_chunked_valid(void)
{
    CHUNKED_OK("5\r\nhello\r\n0\r\n\r\n", "hello", "");
    CHUNKED_OK("0\r\n\r\n", "", "");
    CHUNKED_OK("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "hello world", "");
    CHUNKED_OK("1\r\na\r\n1\r\nb\r\n1\r\nc\r\n0\r\n\r\n", "abc", "");
    CHUNKED_OK("A\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n", "0123456789abcdefghij", "");
    CHUNKED_OK("0005\r\nhello\r\n000\r\n\r\n", "hello", "");
    /* Chunk data may contain anything, CRLFs included. */
    CHUNKED_OK("4\r\n\r\n\r\n\r\n0\r\n\r\n", "\r\n\r\n", "");
    CHUNKED_OK("3\r\n\0\xff\n\r\n0\r\n\r\n", "\0\xff\n", "");
    /* Extensions. */
    CHUNKED_OK("5;name=value\r\nhello\r\n0;last\r\n\r\n", "hello", "");
    CHUNKED_OK("5;a;b=\"quoted;\\\"str\"\r\nhello\r\n0\r\n\r\n", "hello", "");
    CHUNKED_OK("5 ;x\r\nhello\r\n0\t; y\r\n\r\n", "hello", "");
    CHUNKED_OK("5;\r\nhello\r\n0\r\n\r\n", "hello", "");
    /* Trailers. */
    CHUNKED_OK("5\r\nhello\r\n0\r\nX-Trailer: 1\r\nY: two\r\n\r\n", "hello", "");
    CHUNKED_OK("0\r\nExpires: never\n\n", "", "");
    /* Bare LF line endings. */
    CHUNKED_OK("5\nhello\n0\n\n", "hello", "");
    CHUNKED_OK("5;ext\nhello\r\n0\nT: 1\n\r\n", "hello", "");
    /* Bytes after the body follow the decoded bytes. */
    CHUNKED_OK("5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n", "hello", "GET / HTTP/1.1\r\n");
    CHUNKED_OK("0\r\n\r\n0\r\n\r\n", "", "0\r\n\r\n");
    CHUNKED_OK("0\n\nx", "", "x");
}

static void test_chunked_incomplete(void)
{
    CHUNKED_AGAIN("", "");
    CHUNKED_AGAIN("5", "");
    CHUNKED_AGAIN("5\r", "");
    CHUNKED_AGAIN("5\r\nhel", "hel");
    CHUNKED_AGAIN("5\r\nhello", "hello");
    CHUNKED_AGAIN("5\r\nhello\r", "hello");
    CHUNKED_AGAIN("5\r\nhello\r\n", "hello");
    CHUNKED_AGAIN("5\r\nhello\r\n0\r\n", "hello");
    CHUNKED_AGAIN("5\r\nhello\r\n0\r\nTrailer: x\r\n", "hello");
    CHUNKED_AGAIN("5\r\nhello\r\n0\r\n\r", "hello");
    CHUNKED_AGAIN("7fffffffffffffff\r\nabc", "abc");

    /* Every proper prefix of a body is incomplete. */
    const char body[] = "3;x=y\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nT: v\r\n\r\n";
    int wrong = 0;
    for (size_t n = 0; n < sizeof(body) - 1; n++) {
        struct chunked_result r = decode_pieces(body, n, 0);
        wrong += r.rc != EDDY_AGAIN;
        result_free(&r);
    }
    CHECK_EQ_INT(wrong, 0);
}

static void test_chunked_malformed(void)
{
    CHUNKED_ERR("\r\n", EDDY_EPROTO);
    CHUNKED_ERR("\n", EDDY_EPROTO);
    CHUNKED_ERR(";ext\r\n", EDDY_EPROTO);
    CHUNKED_ERR(" 5\r\nhello\r\n", EDDY_EPROTO);
    CHUNKED_ERR("g\r\n", EDDY_EPROTO);
    CHUNKED_ERR("-5\r\n", EDDY_EPROTO);
    CHUNKED_ERR("0x5\r\n", EDDY_EPROTO);
    CHUNKED_ERR("5x\r\nhello\r\n", EDDY_EPROTO);
    CHUNKED_ERR("5 \r\nhello\r\n", EDDY_EPROTO);
    CHUNKED_ERR("5 x\r\nhello\r\n", EDDY_EPROTO);
    CHUNKED_ERR("5\rX", EDDY_EPROTO);
    CHUNKED_ERR("5;ext\rX", EDDY_EPROTO);
    CHUNKED_ERR("5\r\nhelloX\r\n", EDDY_EPROTO);
    CHUNKED_ERR("5\r\nhelloX5\r\nworld\r\n0\r\n\r\n", EDDY_EPROTO);
    CHUNKED_ERR("5\r\nhello\rX", EDDY_EPROTO);
    CHUNKED_ERR("5\r\nhello\r\r\n", EDDY_EPROTO);
    CHUNKED_ERR("5\r\nhello world\r\n0\r\n\r\n", EDDY_EPROTO);
    CHUNKED_ERR("5\r\nhi\r\n0\r\n\r\n", EDDY_EPROTO);
    CHUNKED_ERR("0\r\nTrailer: x\rY\r\n\r\n", EDDY_EPROTO);
    CHUNKED_ERR("0\r\n\rX", EDDY_EPROTO);
    CHUNKED_ERR("0\r\nT: 1\r\n\r\r\n", EDDY_EPROTO);
    /* Chunk sizes over 63 bits. */
    CHUNKED_ERR("8000000000000000\r\n", EDDY_ETOOBIG);
    CHUNKED_ERR("ffffffffffffffff\r\n", EDDY_ETOOBIG);
    CHUNKED_ERR("10000000000000000\r\n", EDDY_ETOOBIG);
    CHUNKED_ERR("0000000000000000000000000000000000000010000000000000000\r\n", EDDY_ETOOBIG);
}

static void test_chunked_line_limits(void)
{
    static char in[12000];
    size_t n;

    /* An extension line of exactly 4096 bytes is fine; 4097 is too long. */
    n = (size_t)snprintf(in, sizeof(in), "5;");
    memset(in + n, 'e', 4094);
    n += 4094;
    n += (size_t)snprintf(in + n, sizeof(in) - n, "\r\nhello\r\n0\r\n\r\n");
    struct chunked_result r = decode_all_ways(in, n);
    CHECK_EQ_INT(r.rc, 0);
    CHECK_MEM(r.out, r.out_len, "hello", 5);
    result_free(&r);

    n = (size_t)snprintf(in, sizeof(in), "5;");
    memset(in + n, 'e', 4095);
    n += 4095;
    n += (size_t)snprintf(in + n, sizeof(in) - n, "\r\nhello\r\n0\r\n\r\n");
    r = decode_all_ways(in, n);
    CHECK_EQ_INT(r.rc, EDDY_ETOOBIG);
    result_free(&r);

    /* Leading zeros count toward the line too. */
    memset(in, '0', 5000);
    memcpy(in + 5000, "\r\n\r\n", 4);
    r = decode_all_ways(in, 5004);
    CHECK_EQ_INT(r.rc, EDDY_ETOOBIG);
    result_free(&r);

    /* Trailer lines: 4096 fine, 4097 too long; the limit is per line. */
    n = (size_t)snprintf(in, sizeof(in), "0\r\n");
    memset(in + n, 't', 4096);
    n += 4096;
    n += (size_t)snprintf(in + n, sizeof(in) - n, "\r\n");
    memset(in + n, 'u', 4096);
    n += 4096;
    n += (size_t)snprintf(in + n, sizeof(in) - n, "\r\n\r\n");
    r = decode_all_ways(in, n);
    CHECK_EQ_INT(r.rc, 0);
    result_free(&r);

    n = (size_t)snprintf(in, sizeof(in), "0\r\n");
    memset(in + n, 't', 4097);
    n += 4097;
    n += (size_t)snprintf(in + n, sizeof(in) - n, "\r\n\r\n");
    r = decode_all_ways(in, n);
    CHECK_EQ_INT(r.rc, EDDY_ETOOBIG);
    result_free(&r);
}

/* Big random chunks, in 300 random splits. */
static void test_chunked_random_body(void)
{
    size_t cap = 200000;
    char *in = malloc(cap), *body = malloc(cap);
    size_t n = 0, body_len = 0;
    while (body_len < 60000) {
        size_t chunk = (size_t)(test_rand() % 5000) + 1;
        n += (size_t)snprintf(in + n, cap - n, test_rand() % 2 ? "%zx\r\n" : "%zX;e=1\r\n", chunk);
        for (size_t i = 0; i < chunk; i++)
            in[n + i] = body[body_len + i] = (char)test_rand();
        n += chunk;
        body_len += chunk;
        memcpy(in + n, "\r\n", 2);
        n += 2;
    }
    n += (size_t)snprintf(in + n, cap - n, "0\r\nT: 1\r\n\r\nNEXT");

    struct chunked_result whole = decode_pieces(in, n, 0);
    CHECK_EQ_INT(whole.rc, 4);
    CHECK_MEM(whole.out, whole.out_len, body, body_len);
    int wrong = 0;
    for (int trial = 0; trial < 300; trial++) {
        struct chunked_result r = decode_pieces(in, n, 1 + (size_t)(test_rand() % 3000));
        wrong += r.rc != 4 || r.out_len != body_len || memcmp(r.out, body, body_len) != 0 ||
                 memcmp(r.rest, "NEXT", 4) != 0;
        result_free(&r);
    }
    CHECK_EQ_INT(wrong, 0);
    struct chunked_result bytewise = decode_pieces(in, n, 1);
    CHECK_EQ_INT(bytewise.rc, 4);
    CHECK_MEM(bytewise.out, bytewise.out_len, body, body_len);
    result_free(&bytewise);
    result_free(&whole);
    free(in);
    free(body);
}

static void test_chunked_after_done(void)
{
    eddy__chunked_t c;
    char buf[32];
    size_t n;

    eddy__chunked_init(&c);
    memcpy(buf, "0\r\n\r\n", 5);
    n = 5;
    CHECK_EQ_INT(eddy__chunked_decode(&c, buf, &n), 0);
    CHECK_EQ_INT(n, 0);
    /* Once complete, everything fed is left over. */
    memcpy(buf, "more", 4);
    n = 4;
    CHECK_EQ_INT(eddy__chunked_decode(&c, buf, &n), 4);
    CHECK_EQ_INT(n, 0);
    CHECK_MEM(buf, 4, "more", 4);
    /* init resets. */
    eddy__chunked_init(&c);
    memcpy(buf, "1\r\nz\r\n", 6);
    n = 6;
    CHECK_EQ_INT(eddy__chunked_decode(&c, buf, &n), EDDY_AGAIN);
    CHECK_MEM(buf, n, "z", 1);
}

/* ---------------------------------------------------------------------------------------
 * url_decode
 * ------------------------------------------------------------------------------------- */

static void check_url(const char *in, size_t in_len, const char *out, size_t out_len)
{
    char dst[64];
    memset(dst, 'X', sizeof(dst));
    CHECK_EQ_INT(eddy__url_decode(dst, in, in_len), out_len);
    CHECK_MEM(dst, out_len, out, out_len);
    CHECK_EQ_INT(dst[out_len], '\0');

    /* In place works too: the output never overtakes the input. */
    char inplace[64];
    memcpy(inplace, in, in_len);
    inplace[in_len] = '\0';
    CHECK_EQ_INT(eddy__url_decode(inplace, inplace, in_len), out_len);
    CHECK_MEM(inplace, out_len, out, out_len);
}

#define URL(in, out) check_url(in, sizeof(in) - 1, out, sizeof(out) - 1)

static void test_url_decode(void)
{
    URL("", "");
    URL("plain", "plain");
    URL("a%20b+c", "a b c");
    URL("%41%4a%4A%6b%6B", "AJJkk");
    URL("%e2%82%AC", "\xe2\x82\xac");
    URL("%00x", "\0x");
    URL("%%41", "%A");
    URL("%2B+%2b", "+ +");
    URL("100%", "100%");
    URL("%4", "%4");
    URL("%zz%4g%g4", "%zz%4g%g4");
    URL("a%", "a%");
    URL("%%%", "%%%");
    URL("++", "  ");
    /* Only the first len bytes count. */
    char dst[8];
    CHECK_EQ_INT(eddy__url_decode(dst, "%41%42", 4), 2);
    CHECK_MEM(dst, 3, "A%", 3);
}

int main(void)
{
    test_simple_get();
    test_paths_and_queries();
    test_header_values();
    test_websocket_upgrade();
    test_keep_alive();
    test_line_endings();
    test_pipelined();
    test_content_length();
    test_transfer_encoding();
    test_host();
    test_malformed();
    test_too_big();
    test_every_prefix_is_again();
    test_random_splits();
    test_response_switching_protocols();
    test_response_status_lines();
    test_response_body_framing();
    test_response_malformed();
    test_response_limits();
    test_response_every_prefix_is_again();
    test_response_random_splits();
    test_span_eq_and_tokens();
    test_ascii_case_eq_every_byte_pair();
    test_chunked_valid();
    test_chunked_incomplete();
    test_chunked_malformed();
    test_chunked_line_limits();
    test_chunked_random_body();
    test_chunked_after_done();
    test_url_decode();
    return test_report("test_http_parser");
}

/* SPDX-License-Identifier: MIT */
/*
 * HTTP/1.1 request and response heads (RFC 9112 2-6), the chunked transfer coding (RFC
 * 9112 7.1) and percent-decoding.
 *
 * The head parser works in two passes: a cheap, resumable search for the empty line that
 * ends the head, then a single full parse once the whole head is present. A head is
 * small (max_head), so parsing it once is cheaper than keeping a byte-level state
 * machine across reads, and every span can be checked against a complete line.
 */
#include <string.h>

#include "codec.h"

/* tchar (RFC 9110 5.6.2): the bytes of methods, header names and list tokens. */
const uint8_t eddy__tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1,         ['&'] = 1,         ['\''] = 1,
    ['*'] = 1, ['+'] = 1, ['-'] = 1, ['.'] = 1,         ['^'] = 1,         ['_'] = 1,
    ['`'] = 1, ['|'] = 1, ['~'] = 1, ['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1,
};

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static char ascii_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = ascii_lower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static eddy__span_t make_span(size_t from, size_t to)
{
    return (eddy__span_t){.off = (uint32_t)from, .len = (uint32_t)(to - from)};
}

/* x with each byte 'A'-'Z' made lowercase, eight bytes at once: no byte's sum carries
 * into the next, since each adds at most 0x3F to 7 bits. */
static uint64_t ascii_lower8(uint64_t x)
{
    const uint64_t ones = 0x0101010101010101u, high = ones * 0x80;
    uint64_t seven = x & ~high;
    uint64_t at_least_a = seven + ones * (0x80 - 'A');
    uint64_t above_z = seven + ones * (0x7F - 'Z');
    uint64_t upper = at_least_a & ~above_z & ~x & high;
    return x | upper >> 2;
}

static inline bool case_eq8(uint64_t x, uint64_t y)
{
    return x == y || ascii_lower8(x) == ascii_lower8(y);
}

static inline uint64_t load8(const char *p)
{
    uint64_t x;
    memcpy(&x, p, 8);
    return x;
}

/* p[0..4) and p[n-4..n) for 4 <= n < 8, as one word (they overlap when n < 8). */
static inline uint64_t load4_twice(const char *p, size_t n)
{
    uint32_t head, tail;
    memcpy(&head, p, 4);
    memcpy(&tail, p + n - 4, 4);
    return (uint64_t)tail << 32 | head;
}

bool eddy__ascii_case_eq(const char *a, const char *b, size_t n)
{
    /* Eight bytes at a time, the last eight overlapping the ones before when n is not a
     * multiple of eight; 4 to 7 bytes as two overlapping fours. */
    if (n >= 8) {
        for (size_t i = 0; i + 8 < n; i += 8) {
            if (!case_eq8(load8(a + i), load8(b + i)))
                return false;
        }
        return case_eq8(load8(a + n - 8), load8(b + n - 8));
    }
    if (n >= 4)
        return case_eq8(load4_twice(a, n), load4_twice(b, n));
    for (size_t i = 0; i < n; i++) {
        if (ascii_lower(a[i]) != ascii_lower(b[i]))
            return false;
    }
    return true;
}

/*
 * Iterates over the elements of a comma-separated list in buf[*pos..end): stores the next
 * element, without surrounding whitespace, in *elem and advances *pos past its comma.
 * Empty elements are returned too; callers decide whether they matter. Start with
 * *pos at the beginning of the list; returns false when the list is exhausted.
 */
static bool next_element(const char *buf, size_t *pos, size_t end, eddy__span_t *elem)
{
    if (*pos > end)
        return false;

    size_t from = *pos, to = from;
    while (to < end && buf[to] != ',')
        to++;
    *pos = to + 1;
    while (from < to && is_ows(buf[from]))
        from++;
    while (to > from && is_ows(buf[to - 1]))
        to--;
    *elem = make_span(from, to);
    return true;
}

bool eddy__http_list_has_token(const char *buf, eddy__span_t span, const char *token)
{
    size_t pos = span.off, end = (size_t)span.off + span.len;
    eddy__span_t elem;

    while (next_element(buf, &pos, end, &elem)) {
        if (eddy__span_eq(buf, elem, token))
            return true;
    }
    return false;
}

void eddy__http_parser_init(eddy__http_parser_t *p, size_t max_head)
{
    p->scanned = 0;
    p->max_head = max_head;
}

/*
 * Splits head->target into path and query. Origin-form ("/a?b") and asterisk-form ("*")
 * are taken as they are; in absolute-form ("http://host/a?b") the path starts after the
 * authority and is empty when the target has no '/' there.
 */
static int split_target(const char *buf, eddy__http_head_t *head)
{
    size_t begin = head->target.off, end = begin + head->target.len;
    size_t path = begin;

    if (buf[begin] != '/' && !(end - begin == 1 && buf[begin] == '*')) {
        size_t i = begin;
        char c = ascii_lower(buf[i]);
        if (c < 'a' || c > 'z')
            return EDDY_EPROTO;
        for (;;) {
            c = ascii_lower(buf[i]);
            if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '-' ||
                  c == '.'))
                break;
            i++;
        }
        if (end - i < 3 || memcmp(buf + i, "://", 3) != 0)
            return EDDY_EPROTO;
        size_t authority = i + 3;
        path = authority;
        while (path < end && buf[path] != '/' && buf[path] != '?')
            path++;
        if (path == authority)
            return EDDY_EPROTO;
    }

    size_t query = path;
    while (query < end && buf[query] != '?')
        query++;
    head->path = make_span(path, query);
    head->query = query < end ? make_span(query + 1, end) : make_span(end, end);
    return 0;
}

/*
 * Parses the request line at buf[*pos...], which the caller guarantees ends with a LF
 * before end. Advances *pos to the first header line.
 */
static int parse_request_line(const char *buf, size_t *pos, size_t end, eddy__http_head_t *head)
{
    size_t i = *pos;

    size_t method = i;
    while (eddy__is_tchar(buf[i]))
        i++;
    if (i == method || buf[i] != ' ')
        return EDDY_EPROTO;
    head->method = make_span(method, i);

    /* The target is checked only for bytes that could never appear in one (CTLs, space,
     * DEL); bytes >= 0x80 pass, since some clients send raw UTF-8 paths. */
    size_t target = ++i;
    while ((uint8_t)buf[i] > 0x20 && buf[i] != 0x7F)
        i++;
    if (i == target || buf[i] != ' ')
        return EDDY_EPROTO;
    head->target = make_span(target, i);
    int rc = split_target(buf, head);
    if (rc < 0)
        return rc;

    i++;
    if (end - i < 9 || memcmp(buf + i, "HTTP/1.", 7) != 0 ||
        (buf[i + 7] != '0' && buf[i + 7] != '1'))
        return EDDY_EPROTO;
    head->minor_version = buf[i + 7] - '0';
    i += 8;
    if (buf[i] == '\r' && buf[i + 1] == '\n')
        i += 2;
    else if (buf[i] == '\n')
        i += 1;
    else
        return EDDY_EPROTO;
    *pos = i;
    return 0;
}

/* Content-Length values beyond this are refused rather than risking overflow later. */
#define CONTENT_LENGTH_MAX ((int64_t)1 << 62)

/*
 * Folds one Content-Length field value into *content_length (-1 if none seen yet). A
 * value may repeat the same number as a list ("5, 5", RFC 9110 8.6); any difference,
 * between elements or between fields, makes the message ambiguous and is refused.
 */
static int add_content_length(const char *buf, eddy__span_t value, int64_t *content_length)
{
    size_t pos = value.off, end = (size_t)value.off + value.len;
    eddy__span_t elem;

    while (next_element(buf, &pos, end, &elem)) {
        if (elem.len == 0)
            return EDDY_EPROTO;
        int64_t n = 0;
        for (size_t i = elem.off; i < (size_t)elem.off + elem.len; i++) {
            if (buf[i] < '0' || buf[i] > '9')
                return EDDY_EPROTO;
            int digit = buf[i] - '0';
            if (n > (CONTENT_LENGTH_MAX - digit) / 10)
                return EDDY_EPROTO;
            n = n * 10 + digit;
        }
        if (*content_length >= 0 && *content_length != n)
            return EDDY_EPROTO;
        *content_length = n;
    }
    return 0;
}

/*
 * Folds one Transfer-Encoding field value into *chunked. "chunked" must be the
 * last coding of all Transfer-Encoding fields together, and appear only once (RFC 9112
 * 6.1); a coding after it means the body length cannot be determined.
 */
static int add_transfer_encoding(const char *buf, eddy__span_t value, bool *chunked)
{
    size_t pos = value.off, end = (size_t)value.off + value.len;
    eddy__span_t elem;

    while (next_element(buf, &pos, end, &elem)) {
        if (elem.len == 0)
            continue;
        if (*chunked)
            return EDDY_EPROTO;
        *chunked = eddy__span_eq(buf, elem, "chunked");
    }
    return 0;
}

/* What the header lines say about the message, gathered while they are parsed. */
struct header_facts {
    int64_t content_length; /* -1 when absent */
    bool te_seen;           /* a Transfer-Encoding field was present */
    bool chunked;           /* ... and "chunked" is its last coding */
    bool conn_close;
    bool conn_keep_alive;
    bool connection_upgrade;
    bool upgrade_websocket;
    int hosts;
};

/* The Connection header's options that matter here, in one walk over its list. */
static void add_connection_options(const char *buf, eddy__span_t value, struct header_facts *facts)
{
    size_t pos = value.off, end = (size_t)value.off + value.len;
    eddy__span_t elem;

    while (next_element(buf, &pos, end, &elem)) {
        facts->conn_close |= eddy__span_eq(buf, elem, "close");
        facts->conn_keep_alive |= eddy__span_eq(buf, elem, "keep-alive");
        facts->connection_upgrade |= eddy__span_eq(buf, elem, "upgrade");
    }
}

/* The bytes that end a header value or make it invalid: CR, LF, the other controls
 * except HTAB, and DEL (RFC 9110 5.5). A table: values are scanned a byte at a time. */
static const uint8_t value_stop[256] = {[0x00 ... 0x08] = 1, [0x0A ... 0x1F] = 1, [0x7F] = 1};

/*
 * Parses the header lines from buf[pos...] up to the empty line that ends the head (the
 * caller found it, so every line ends with a LF inside the head) into headers[0..
 * max_headers), storing their number in *num_headers, and gathers *facts. Shared by
 * requests and responses: the rules on each line are the same for both.
 */
static int parse_header_lines(const char *buf, size_t pos, eddy__http_header_t *headers,
                              size_t max_headers, size_t *num_headers, struct header_facts *facts)
{
    size_t n = 0;
    int rc;

    *facts = (struct header_facts){.content_length = -1};

    /* Every line ends with a LF inside the head, so looking one byte past a CR or at the
     * byte after the current one never leaves it. */
    while (!(buf[pos] == '\n' || (buf[pos] == '\r' && buf[pos + 1] == '\n'))) {
        size_t name = pos;
        while (eddy__is_tchar(buf[pos]))
            pos++;
        /* This also refuses obsolete line folding (a line starting with whitespace, RFC
         * 9112 5.2) and whitespace between name and colon (RFC 9112 5.1). */
        if (pos == name || buf[pos] != ':')
            return EDDY_EPROTO;
        size_t name_end = pos++;

        while (is_ows(buf[pos]))
            pos++;
        size_t value = pos, value_end;
        while (!value_stop[(uint8_t)buf[pos]])
            pos++;
        if (buf[pos] == '\n') {
            value_end = pos++;
        } else if (buf[pos] == '\r' && buf[pos + 1] == '\n') {
            value_end = pos;
            pos += 2;
        } else {
            return EDDY_EPROTO;
        }
        while (value_end > value && is_ows(buf[value_end - 1]))
            value_end--;

        if (n == max_headers)
            return EDDY_ETOOBIG;
        eddy__http_header_t *h = &headers[n++];
        h->name = make_span(name, name_end);
        h->value = make_span(value, value_end);

        if (eddy__span_eq(buf, h->name, "content-length")) {
            if ((rc = add_content_length(buf, h->value, &facts->content_length)) < 0)
                return rc;
        } else if (eddy__span_eq(buf, h->name, "transfer-encoding")) {
            facts->te_seen = true;
            if ((rc = add_transfer_encoding(buf, h->value, &facts->chunked)) < 0)
                return rc;
        } else if (eddy__span_eq(buf, h->name, "host")) {
            facts->hosts++;
        } else if (eddy__span_eq(buf, h->name, "connection")) {
            add_connection_options(buf, h->value, facts);
        } else if (eddy__span_eq(buf, h->name, "upgrade")) {
            facts->upgrade_websocket |= eddy__http_list_has_token(buf, h->value, "websocket");
        }
    }
    *num_headers = n;
    return 0;
}

/* Persistence after the version and the Connection header (RFC 9112 9.3). */
static bool keep_alive(int minor_version, const struct header_facts *facts)
{
    return minor_version == 1 ? !facts->conn_close : facts->conn_keep_alive && !facts->conn_close;
}

/*
 * Finds the end of the head at the start of buf[0..len): the LF that ends the first
 * empty line after the first line. With skip_empty_lines, empty lines before the first
 * line are skipped (requests, RFC 9112 2.2). Stores where the first line starts in
 * *start. Returns the head length, EDDY_AGAIN or EDDY_ETOOBIG.
 */
static ssize_t find_head_end(eddy__http_parser_t *p, const char *buf, size_t len,
                             bool skip_empty_lines, size_t *start)
{
    /* Spans are 32-bit offsets, so no head may be longer than that, whatever max_head. */
    size_t limit = p->max_head < UINT32_MAX ? p->max_head : UINT32_MAX;
    size_t avail = len < limit ? len : limit;

    /* Leading empty lines are skipped afresh on every call, but they count toward
     * max_head, which bounds that work. */
    size_t first = 0;
    while (skip_empty_lines && first < avail) {
        if (buf[first] == '\n')
            first++;
        else if (buf[first] == '\r' && first + 1 < avail && buf[first + 1] == '\n')
            first += 2;
        else
            break;
    }
    *start = first;

    /*
     * Search for a LF preceded by LF, or by CR LF. A match must have a non-empty line
     * before it: buf[first] is never a LF when empty lines are skipped, and otherwise an
     * empty first line is refused by the caller's parse of it. Positions before
     * p->scanned were checked by earlier calls with the same bytes.
     */
    size_t i = p->scanned > first + 1 ? p->scanned : first + 1;
    while (i < avail) {
        const char *lf = memchr(buf + i, '\n', avail - i);
        if (lf == NULL)
            break;
        i = (size_t)(lf - buf);
        if (buf[i - 1] == '\n' || (buf[i - 1] == '\r' && i >= first + 2 && buf[i - 2] == '\n')) {
            /* Leave the terminator to be found again, so a repeated call gives the same
             * answer. */
            p->scanned = i;
            return (ssize_t)(i + 1);
        }
        i++;
    }
    p->scanned = avail;
    return len >= limit ? EDDY_ETOOBIG : EDDY_AGAIN;
}

ssize_t eddy__http_parse_head(eddy__http_parser_t *p, const char *buf, size_t len,
                              eddy__http_head_t *head)
{
    size_t pos;
    ssize_t head_len = find_head_end(p, buf, len, true, &pos);
    if (head_len < 0)
        return head_len;

    int rc = parse_request_line(buf, &pos, (size_t)head_len, head);
    if (rc < 0)
        return rc;
    struct header_facts facts;
    rc = parse_header_lines(buf, pos, head->headers, EDDY__HTTP_MAX_HEADERS, &head->num_headers,
                            &facts);
    if (rc < 0)
        return rc;

    /* Transfer-Encoding with Content-Length is the classic request smuggling vector
     * (RFC 9112 6.3); so is a body length that is not given by "chunked". */
    if (facts.te_seen && (!facts.chunked || facts.content_length >= 0))
        return EDDY_EPROTO;
    if (facts.hosts > 1 || (facts.hosts == 0 && head->minor_version == 1))
        return EDDY_EPROTO;
    head->content_length = facts.content_length;
    head->chunked = facts.chunked;
    head->keep_alive = keep_alive(head->minor_version, &facts);
    head->upgrade_websocket = facts.upgrade_websocket;
    head->connection_upgrade = facts.connection_upgrade;
    return head_len;
}

/*
 * Parses the status line at buf[*pos...], which the caller guarantees ends with a LF
 * before end: "HTTP/1.x 101 Switching Protocols". Advances *pos to the first header line.
 */
static int parse_status_line(const char *buf, size_t *pos, size_t end, eddy__http_response_t *resp)
{
    size_t i = *pos;

    /* The shortest status line is "HTTP/1.1 200" and its LF: 13 bytes. */
    if (end - i < 13 || memcmp(buf + i, "HTTP/1.", 7) != 0 ||
        (buf[i + 7] != '0' && buf[i + 7] != '1') || buf[i + 8] != ' ')
        return EDDY_EPROTO;
    resp->minor_version = buf[i + 7] - '0';
    i += 9;

    int status = 0;
    for (int k = 0; k < 3; k++, i++) {
        if (buf[i] < '0' || buf[i] > '9')
            return EDDY_EPROTO;
        status = status * 10 + (buf[i] - '0');
    }
    if (status < 100 || status > 599)
        return EDDY_EPROTO;
    resp->status = status;

    /* The reason phrase may be empty, and some servers leave out the space before it. */
    if (buf[i] == ' ')
        i++;
    else if (buf[i] != '\r' && buf[i] != '\n')
        return EDDY_EPROTO;
    size_t reason = i;
    for (;;) {
        uint8_t c = (uint8_t)buf[i];
        if (c == '\n' || c == '\r')
            break;
        if ((c < 0x20 && c != '\t') || c == 0x7F)
            return EDDY_EPROTO;
        i++;
    }
    resp->reason = make_span(reason, i);
    if (buf[i] == '\r') {
        if (buf[i + 1] != '\n')
            return EDDY_EPROTO;
        i++;
    }
    *pos = i + 1;
    return 0;
}

ssize_t eddy__http_parse_response(eddy__http_parser_t *p, const char *buf, size_t len,
                                  eddy__http_response_t *resp, eddy__http_header_t *headers,
                                  size_t *num_headers)
{
    size_t pos;
    ssize_t head_len = find_head_end(p, buf, len, false, &pos);
    if (head_len < 0)
        return head_len;

    int rc = parse_status_line(buf, &pos, (size_t)head_len, resp);
    if (rc < 0)
        return rc;
    struct header_facts facts;
    size_t n;
    rc = parse_header_lines(buf, pos, headers, *num_headers, &n, &facts);
    if (rc < 0)
        return rc;

    /* Both lengths at once may be a smuggling attempt through an intermediary (RFC 9112
     * 6.3 lets a recipient treat it as an error). A coding other than chunked as the
     * last one is allowed in a response: its body then ends with the connection. */
    if (facts.te_seen && facts.content_length >= 0)
        return EDDY_EPROTO;
    *num_headers = n;
    resp->content_length = facts.content_length;
    resp->chunked = facts.chunked;
    resp->keep_alive = keep_alive(resp->minor_version, &facts);
    resp->upgrade_websocket = facts.upgrade_websocket;
    resp->connection_upgrade = facts.connection_upgrade;
    return head_len;
}

/* ---------------------------------------------------------------------------------------
 * Chunked transfer coding
 * ------------------------------------------------------------------------------------- */

enum chunked_state {
    CHUNK_SIZE,         /* hex digits of the chunk size; line_len counts the line */
    CHUNK_SIZE_BWS,     /* whitespace after the size, which only a ';' may follow */
    CHUNK_EXT,          /* chunk extensions, skipped up to the end of the line */
    CHUNK_SIZE_LF,      /* CR seen at the end of the size line */
    CHUNK_DATA,         /* remaining bytes of chunk data */
    CHUNK_DATA_CR,      /* the line break after the data */
    CHUNK_DATA_LF,      /* CR seen after the data */
    CHUNK_TRAILER,      /* start of a trailer line, or of the empty line ending the body */
    CHUNK_TRAILER_LINE, /* inside a trailer line, discarded */
    CHUNK_TRAILER_LF,   /* CR seen at the end of a trailer line */
    CHUNK_END_LF,       /* CR seen on the final empty line */
    CHUNK_DONE,
};

/* Size, extension and trailer lines longer than this are refused. */
#define CHUNK_LINE_MAX 4096

void eddy__chunked_init(eddy__chunked_t *c)
{
    c->state = CHUNK_SIZE;
    c->remaining = 0;
    c->line_len = 0;
}

/* The size line has ended: on to the data, or to the trailers after the last chunk. */
static int size_line_done(eddy__chunked_t *c)
{
    c->line_len = 0;
    c->state = c->remaining ? CHUNK_DATA : CHUNK_TRAILER;
    return 0;
}

/* Consumes one byte outside chunk data. */
static int chunked_step(eddy__chunked_t *c, char ch)
{
    switch (c->state) {
    case CHUNK_SIZE: {
        int digit = hex_value(ch);
        if (digit >= 0) {
            if (c->remaining > (uint64_t)INT64_MAX >> 4)
                return EDDY_ETOOBIG;
            c->remaining = c->remaining << 4 | (uint64_t)digit;
            break;
        }
        if (c->line_len == 0) /* no digits */
            return EDDY_EPROTO;
        if (ch == '\r') {
            c->state = CHUNK_SIZE_LF;
            return 0;
        }
        if (ch == '\n')
            return size_line_done(c);
        if (ch == ';')
            c->state = CHUNK_EXT;
        else if (is_ows(ch))
            c->state = CHUNK_SIZE_BWS;
        else
            return EDDY_EPROTO;
        break;
    }
    case CHUNK_SIZE_BWS:
        if (ch == ';')
            c->state = CHUNK_EXT;
        else if (!is_ows(ch))
            return EDDY_EPROTO;
        break;
    case CHUNK_EXT:
        if (ch == '\r') {
            c->state = CHUNK_SIZE_LF;
            return 0;
        }
        if (ch == '\n')
            return size_line_done(c);
        break;
    case CHUNK_SIZE_LF:
        if (ch != '\n')
            return EDDY_EPROTO;
        return size_line_done(c);
    case CHUNK_DATA_CR:
        if (ch == '\r')
            c->state = CHUNK_DATA_LF;
        else if (ch == '\n')
            c->state = CHUNK_SIZE;
        else
            return EDDY_EPROTO;
        return 0;
    case CHUNK_DATA_LF:
        if (ch != '\n')
            return EDDY_EPROTO;
        c->state = CHUNK_SIZE;
        return 0;
    case CHUNK_TRAILER:
        if (ch == '\r') {
            c->state = CHUNK_END_LF;
            return 0;
        }
        if (ch == '\n') {
            c->state = CHUNK_DONE;
            return 0;
        }
        c->state = CHUNK_TRAILER_LINE;
        break;
    case CHUNK_TRAILER_LINE:
        if (ch == '\r') {
            c->state = CHUNK_TRAILER_LF;
            return 0;
        }
        if (ch == '\n') {
            c->line_len = 0;
            c->state = CHUNK_TRAILER;
            return 0;
        }
        break;
    case CHUNK_TRAILER_LF:
        if (ch != '\n')
            return EDDY_EPROTO;
        c->line_len = 0;
        c->state = CHUNK_TRAILER;
        return 0;
    case CHUNK_END_LF:
        if (ch != '\n')
            return EDDY_EPROTO;
        c->state = CHUNK_DONE;
        return 0;
    default: /* CHUNK_DATA and CHUNK_DONE are handled by the caller */
        return EDDY_EPROTO;
    }
    /* The byte belongs to a size, extension or trailer line. */
    if (++c->line_len > CHUNK_LINE_MAX)
        return EDDY_ETOOBIG;
    return 0;
}

ssize_t eddy__chunked_decode(eddy__chunked_t *c, char *buf, size_t *len)
{
    size_t in = 0, out = 0, n = *len;

    while (in < n && c->state != CHUNK_DONE) {
        if (c->state == CHUNK_DATA) {
            /* Data moves down over the framing already consumed: out <= in always. */
            size_t take = n - in < c->remaining ? n - in : (size_t)c->remaining;
            memmove(buf + out, buf + in, take);
            in += take;
            out += take;
            c->remaining -= take;
            if (c->remaining == 0)
                c->state = CHUNK_DATA_CR;
            continue;
        }
        int rc = chunked_step(c, buf[in++]);
        if (rc < 0) {
            *len = out;
            return rc;
        }
    }
    *len = out;
    if (c->state != CHUNK_DONE)
        return EDDY_AGAIN;
    memmove(buf + out, buf + in, n - in);
    return (ssize_t)(n - in);
}

size_t eddy__url_decode(char *dst, const char *src, size_t len)
{
    size_t out = 0;

    for (size_t i = 0; i < len; i++) {
        int hi, lo;
        if (src[i] == '+') {
            dst[out++] = ' ';
        } else if (src[i] == '%' && len - i >= 3 && (hi = hex_value(src[i + 1])) >= 0 &&
                   (lo = hex_value(src[i + 2])) >= 0) {
            dst[out++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            dst[out++] = src[i];
        }
    }
    dst[out] = '\0';
    return out;
}

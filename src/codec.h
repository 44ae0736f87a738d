/* SPDX-License-Identifier: MIT */
/*
 * Pure codecs: HTTP/1.1 request and response heads and chunked bodies, WebSocket frame headers and
 * masking, UTF-8 validation, base64 and the handshake key. No I/O, no allocation, no
 * global state; every parser keeps its state in a caller-owned struct and resumes where
 * it stopped. The session layers (src/http.c, src/ws.c) drive them.
 */
#ifndef EDDY_CODEC_H
#define EDDY_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "eddy.h"

/* ---------------------------------------------------------------------------------------
 * HTTP/1.1 request and response heads (src/http_parser.c)
 * ------------------------------------------------------------------------------------- */

/* tchar (RFC 9110 5.6.2), the bytes of tokens: methods, header names, list elements. */
extern const uint8_t eddy__tchar[256];

static inline bool eddy__is_tchar(char c)
{
    return eddy__tchar[(uint8_t)c] != 0;
}

/* A byte range of the parsed buffer. Offsets, not pointers, so the buffer may move
 * between calls (a connection's buffer is reallocated as it grows). */
typedef struct eddy__span {
    uint32_t off;
    uint32_t len;
} eddy__span_t;

typedef struct eddy__http_header {
    eddy__span_t name;
    eddy__span_t value; /* without leading and trailing whitespace */
} eddy__http_header_t;

#define EDDY__HTTP_MAX_HEADERS 100

typedef struct eddy__http_head {
    eddy__span_t method;
    eddy__span_t target; /* as sent: "/a/b?x=1" */
    eddy__span_t path;   /* target up to '?' */
    eddy__span_t query;  /* after '?', without it (len 0 if none) */
    int minor_version;   /* HTTP/1.<minor>, 0 or 1 */
    size_t num_headers;
    eddy__http_header_t headers[EDDY__HTTP_MAX_HEADERS];
    /* Facts the parser derives from the headers while it is at them. */
    int64_t content_length;  /* -1 when absent */
    bool chunked;            /* Transfer-Encoding: chunked */
    bool keep_alive;         /* after the Connection header and the version */
    bool upgrade_websocket;  /* Upgrade contains the token "websocket" */
    bool connection_upgrade; /* Connection contains the token "upgrade" */
} eddy__http_head_t;

typedef struct eddy__http_parser {
    size_t scanned;  /* bytes already searched for the end of the head */
    size_t max_head; /* a head longer than this is EDDY_ETOOBIG (431) */
} eddy__http_parser_t;

/* Resets p for a new request, with max_head as the size limit of a request head. */
void eddy__http_parser_init(eddy__http_parser_t *p, size_t max_head);

/*
 * Parses the request head at the start of buf[0..len). buf holds everything received
 * for this request so far, from its first byte (a caller must pass the same bytes again,
 * possibly with more appended, after EDDY_AGAIN). Leading empty lines (CRLF) before the
 * request line are allowed and skipped, as RFC 9112 2.2 recommends.
 * Returns the length of the head including the final CRLFCRLF (> 0) with *head filled in
 * (spans relative to buf), EDDY_AGAIN when the head is not complete yet, EDDY_ETOOBIG
 * when the head is or would be longer than max_head or has more than
 * EDDY__HTTP_MAX_HEADERS headers (answer 431), or EDDY_EPROTO when it is malformed
 * (answer 400): bad request line, version other than HTTP/1.0 or 1.1, header name that
 * is not a token, whitespace before a colon, obsolete line folding, bare CR, control
 * characters in values, an invalid or conflicting Content-Length, Transfer-Encoding
 * together with Content-Length, a Transfer-Encoding other than "chunked" as last coding,
 * or no Host header in HTTP/1.1.
 * Bare LF line endings are accepted (RFC 9112 2.2).
 */
ssize_t eddy__http_parse_head(eddy__http_parser_t *p, const char *buf, size_t len,
                              eddy__http_head_t *head);

/* A response's status line and the facts the parser derives from its headers. */
typedef struct eddy__http_response {
    int minor_version;       /* HTTP/1.<minor>, 0 or 1 */
    int status;              /* 100-599 */
    eddy__span_t reason;     /* reason phrase, possibly empty */
    int64_t content_length;  /* -1 when absent */
    bool chunked;            /* Transfer-Encoding ends with chunked */
    bool keep_alive;         /* after the Connection header and the version */
    bool upgrade_websocket;  /* Upgrade contains the token "websocket" */
    bool connection_upgrade; /* Connection contains the token "upgrade" */
} eddy__http_response_t;

/*
 * Parses the response head at the start of buf[0..len), for a client: the same contract
 * as eddy__http_parse_head() (buf holds everything received for this response from its
 * first byte; call again with the same bytes and more after EDDY_AGAIN; p keeps how far
 * the end was searched, so p must be initialised once per response with the head size
 * limit). Headers go to the caller's array: *num_headers is its capacity on entry and the
 * number of headers on return (picohttpparser's convention); it is written only when a
 * head is returned. Spans are relative to buf.
 *
 * Returns the length of the head including the final empty line (> 0) with *resp and
 * headers filled in; EDDY_AGAIN when the head is not complete yet; EDDY_ETOOBIG when the
 * head is or would be longer than max_head, or has more headers than the capacity; or
 * EDDY_EPROTO when it is malformed: a status line other than "HTTP/1.0" or "HTTP/1.1",
 * one space and a status 100-599 of exactly three digits, then a reason phrase without
 * control characters (the space before an empty reason may be missing); empty lines
 * before the status line; and the request parser's header rules: a name that is not a
 * token, whitespace before a colon, obsolete line folding, bare CR, control characters
 * in values, an invalid or conflicting Content-Length, Transfer-Encoding with
 * Content-Length, a coding after "chunked". Unlike a request, a response may end its
 * Transfer-Encoding with another coding (chunked false, content_length -1): its body
 * then lasts until the connection closes (RFC 9112 6.3). Bare LF line endings are
 * accepted. Whether a body follows at all depends on the status and the request (1xx,
 * 204, 304 and answers to HEAD have none): that is the caller's business.
 */
ssize_t eddy__http_parse_response(eddy__http_parser_t *p, const char *buf, size_t len,
                                  eddy__http_response_t *resp, eddy__http_header_t *headers,
                                  size_t *num_headers);

/* Case-insensitive (ASCII) comparison of n bytes of a with n bytes of b. */
bool eddy__ascii_case_eq(const char *a, const char *b, size_t n);

/* Case-insensitive comparison of a span of buf with a NUL-terminated string. Inline, so
 * that a literal's length folds and a name of another length costs one comparison: the
 * parsers test each header name against several. */
static inline bool eddy__span_eq(const char *buf, eddy__span_t span, const char *str)
{
    size_t n = __builtin_strlen(str);
    return span.len == n && eddy__ascii_case_eq(buf + span.off, str, n);
}

/* True if the comma-separated list in buf[span] contains token (case-insensitive), as
 * in "Connection: keep-alive, Upgrade". */
bool eddy__http_list_has_token(const char *buf, eddy__span_t span, const char *token);

/* Chunked transfer coding decoder (RFC 9112 7.1), decoding in place. */
typedef struct eddy__chunked {
    uint8_t state;
    uint64_t remaining; /* bytes left in the current chunk */
    uint32_t line_len;  /* bytes in the current size/extension/trailer line */
} eddy__chunked_t;

void eddy__chunked_init(eddy__chunked_t *c);

/*
 * Decodes buf[0..*len) in place. On return the first *len bytes of buf are the body bytes
 * decoded by this call (the caller appends them to what earlier calls produced).
 * Returns EDDY_AGAIN when all input was consumed and the body is not complete, a value
 * >= 0 when the body is complete: the number of input bytes that follow the chunked body
 * (its trailers included), which the decoder moved to buf[*len ...] so they directly
 * follow the decoded bytes; EDDY_EPROTO for malformed input, or EDDY_ETOOBIG for a chunk
 * size that does not fit 63 bits or a chunk-size/extension/trailer line over 4096 bytes.
 */
ssize_t eddy__chunked_decode(eddy__chunked_t *c, char *buf, size_t *len);

/* Percent-decodes (and '+' to space, as in forms) src[0..len) into dst (capacity at least
 * len + 1), NUL-terminated. Returns the decoded length. Invalid escapes are copied as is. */
size_t eddy__url_decode(char *dst, const char *src, size_t len);

/* ---------------------------------------------------------------------------------------
 * WebSocket frames (src/ws_codec.c)
 * ------------------------------------------------------------------------------------- */

typedef struct eddy__ws_header {
    bool fin;
    uint8_t rsv;    /* the three RSV bits, RSV1 = 0x4, RSV2 = 0x2, RSV3 = 0x1 */
    uint8_t opcode; /* 0x0-0xf, not validated by the parser */
    bool masked;
    uint8_t mask[4];
    uint64_t payload_len;
    uint8_t header_len; /* 2-14 */
} eddy__ws_header_t;

/*
 * Parses a frame header from buf[0..len). Returns the header length (2-14) with *hdr
 * filled in, EDDY_AGAIN if fewer bytes than the header needs are present, or EDDY_EPROTO
 * when a 64-bit length has its most significant bit set (RFC 6455 5.2). A length encoded
 * in more bytes than needed is accepted (RFC 6455 requires the minimal encoding, but real
 * peers rely on leniency here and Autobahn does not test it).
 */
ssize_t eddy__ws_parse_header(const uint8_t *buf, size_t len, eddy__ws_header_t *hdr);

/* What a server (or client) may accept from its peer: used by eddy__ws_check_header(). */
typedef struct eddy__ws_rules {
    bool expect_masked;  /* true on the server: client frames must be masked */
    uint8_t allowed_rsv; /* RSV bits an extension negotiated (RSV1 = 0x4 for deflate) */
} eddy__ws_rules_t;

/*
 * Checks a parsed header against RFC 6455 given the rules and whether a fragmented data
 * message is in progress. Returns 0 when acceptable, or the close code to fail the
 * connection with (1002): mask bit wrong for the role, RSV bits not negotiated (RSV1 is
 * also refused on control and continuation frames), reserved opcode, control frame with
 * payload over 125 bytes or without FIN, continuation with no message in progress, new
 * data frame while a message is in progress.
 */
int eddy__ws_check_header(const eddy__ws_header_t *hdr, const eddy__ws_rules_t *rules,
                          bool in_message);

/*
 * Writes a frame header for a payload of payload_len bytes into out. flags are
 * EDDY_WS_FLAG_* (FIN, RSV1-3 and MASK); with MASK the mask key is written too (and the
 * caller masks the payload with eddy__ws_mask()). Returns the header length (2-14).
 */
size_t eddy__ws_write_header(uint8_t out[EDDY_WS_MAX_HEADER_LEN], uint8_t opcode, int flags,
                             uint64_t payload_len, const uint8_t mask[4]);

/* eddy__ws_write_header() for an unmasked frame with flags FIN and RSV1 at most: inline up
 * to 64 KiB (the 2- and 4-byte headers of echoes and most pushes), out of line beyond. */
static inline size_t eddy__ws_write_header_unmasked(uint8_t out[EDDY_WS_MAX_HEADER_LEN],
                                                    uint8_t opcode, int flags, uint64_t payload_len)
{
    if (payload_len > 0xFFFF)
        return eddy__ws_write_header(out, opcode, flags, payload_len, NULL);
    out[0] = (uint8_t)((flags & EDDY_WS_FLAG_FIN ? 0x80 : 0) |
                       (flags & EDDY_WS_FLAG_RSV1 ? 0x40 : 0) | (opcode & 0xF));
    if (payload_len < 126) {
        out[1] = (uint8_t)payload_len;
        return 2;
    }
    out[1] = 126;
    out[2] = (uint8_t)(payload_len >> 8);
    out[3] = (uint8_t)payload_len;
    return 4;
}

/*
 * XORs data[0..len) in place with mask, starting at mask position offset % 4 (so a
 * payload may be unmasked piecewise: pass the number of payload bytes already unmasked).
 * Works a machine word at a time.
 */
void eddy__ws_mask(uint8_t *data, size_t len, const uint8_t mask[4], uint64_t offset);

/* Unmasks a whole payload (eddy__ws_mask() at offset 0) and returns true if every byte of
 * the result is ASCII (then a text payload is valid UTF-8 without further checking). */
bool eddy__ws_unmask_ascii(uint8_t *data, size_t len, const uint8_t mask[4]);

/*
 * Validates a close frame payload. Returns 0 and sets *code (1005 for an empty payload)
 * and *reason and *reason_len (pointing into payload) when valid; returns 1002 for a 1-byte
 * payload or a status code that must not appear on the wire (below 1000, 1004-1006, 1015,
 * 1016-2999 unassigned, 5000 and above), and 1007 when the reason is not valid UTF-8.
 */
int eddy__ws_parse_close(const uint8_t *payload, size_t len, uint16_t *code, const char **reason,
                         size_t *reason_len);

/* True if code may be sent in a close frame (1000-1003, 1007-1014, 3000-4999). */
bool eddy__ws_close_code_valid(unsigned code);

/* ---------------------------------------------------------------------------------------
 * UTF-8 (src/utf8.c): an incremental validator that fails at the first byte that cannot
 * start or continue a valid sequence, so a text message split over many frames or reads
 * is rejected as early as possible.
 * ------------------------------------------------------------------------------------- */

#define EDDY__UTF8_ACCEPT 0u

/* Feeds s[0..len) to the validator whose state is *state (start with EDDY__UTF8_ACCEPT).
 * Returns false as soon as the input cannot be valid UTF-8 whatever follows. */
bool eddy__utf8_feed(uint32_t *state, const uint8_t *s, size_t len);

/* True if the validator is at a character boundary (the text so far is complete). */
static inline bool eddy__utf8_complete(uint32_t state)
{
    return state == EDDY__UTF8_ACCEPT;
}

/* ---------------------------------------------------------------------------------------
 * Base64 (src/base64.c, public: eddy_base64_*) and the handshake key (src/handshake.c)
 * ------------------------------------------------------------------------------------- */

/* The handshake's form of eddy_base64_encode() (standard, padded), NUL-terminated: dst
 * holds 4 * ((len + 2) / 3) + 1 bytes. Returns the encoded length. */
static inline size_t eddy__base64_encode(char *dst, const uint8_t *src, size_t len)
{
    size_t n = eddy_base64_encode(dst, src, len, 0);
    dst[n] = '\0';
    return n;
}

/* Strict base64 (eddy_base64_decode() with flags 0) into dst (capacity cap). Returns the
 * decoded length, or -1 if src is not valid base64 or does not fit. */
static inline ssize_t eddy__base64_decode(uint8_t *dst, size_t cap, const char *src, size_t len)
{
    ssize_t n = eddy_base64_decode(dst, cap, src, len, 0);
    return n < 0 ? -1 : n;
}

/* Prepares the handshake key's hashing. OpenSSL initialises itself on first use (its
 * configuration and providers: about 2 MB of pages touched); servers call this at start
 * so that the cost is not paid by the first handshake. Any thread, any number of times. */
void eddy__handshake_init(void);

/* eddy_ws_accept_key() for a key the caller has checked (24 characters of base64 that
 * decode to 16 bytes), without checking it again. */
void eddy__ws_accept_checked_key(const char key[24], char out[EDDY_WS_ACCEPT_LEN + 1]);

#endif /* EDDY_CODEC_H */

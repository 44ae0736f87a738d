/* SPDX-License-Identifier: MIT */
/*
 * Engine.IO packet and HTTP long-polling payload codecs, protocol 4 (engine.io-parser 5.2)
 * and protocol 3 (engine.io-parser 2.2, as shipped in engine.io 6.6 build/parser-v3).
 *
 * Packets: one type character '0'..'6' (open, close, ping, pong, message, upgrade, noop)
 * and the data. In a v4 text packet 'b' instead of a type means a binary message carried as
 * base64; in v3 'b' is followed by the type character and then base64. Over WebSocket a
 * v4 binary frame is a message packet as is; a v3 binary frame starts with the type as a
 * byte (4).
 *
 * Polling payloads (a POST body or a GET answer):
 *   v4: packets separated by 0x1e;
 *   v3 text: "<n>:<packet>" repeated, n counting the UTF-16 code units of the packet (what
 *       JavaScript's String length says), binary packets as "b4<base64>";
 *   v3 binary (when the client supports binary: XHR2, application/octet-stream): per packet
 *       0x00 (text) or 0x01 (binary), the decimal digits of the length as bytes 0..9, 0xff,
 *       then the packet: text as UTF-8 bytes "<type><data>", binary as <type byte><data>;
 *       the length counts bytes.
 *
 * tests/unit/test_eio_payload.c holds a decode table that tests/clients/eio_payload_check.js
 * runs through both reference parsers.
 *
 * Decoding is in place (spans into the input, nothing allocated) and stops at the first
 * malformed packet: packets before it are delivered, then the error, which the reference
 * turns into closing the session with "parse error". Deliberate differences from the
 * reference, on input no client sends: base64 must be well-formed (Node skips bad
 * characters), text must be UTF-8 (Node substitutes U+FFFD), lengths must be decimal digits
 * and not run past the body (the v3 binary decoder silently truncates), and an unknown type
 * is an error where the v3 parser yields a packet of type undefined.
 *
 * Pure functions, thread-safe.
 */
#ifndef EDDY_EIO_PAYLOAD_H
#define EDDY_EIO_PAYLOAD_H

#include <stdbool.h>
#include <stddef.h>

typedef enum eio_type {
    EIO_OPEN = 0,
    EIO_CLOSE = 1,
    EIO_PING = 2,
    EIO_PONG = 3,
    EIO_MESSAGE = 4,
    EIO_UPGRADE = 5,
    EIO_NOOP = 6,
} eio_type_t;

/* Decode errors (negative); the reference calls all of them "parser error". */
enum {
    EIO_EPARSE = -1,  /* empty packet, unknown type, bad or overlong length, truncation */
    EIO_EBASE64 = -2, /* a binary packet's base64 is malformed */
    EIO_EUTF8 = -3,   /* text that is not UTF-8 */
};

/* The type for a type character '0'..'6', or EIO_EPARSE. */
int eio_type_from_char(int c);

/* The type character ('0'..'6') of t. */
static inline char eio_type_char(eio_type_t t)
{
    return (char)('0' + (int)t);
}

/* The reference's name of t ("open", "close", "ping", "pong", "message", "upgrade", "noop"),
 * or "unknown"; for logs. */
const char *eio_type_name(int t);

/* One decoded packet; data borrows the input. */
typedef struct eio_packet {
    eio_type_t type;
    bool binary; /* binary data (always a MESSAGE in v4) */
    /* data is still base64 text (a 'b' packet), already checked: decode it with
     * rt_base64_decode (rt_base64.h), in place if the caller owns the input buffer. */
    bool base64;
    const char *data;
    size_t len;
} eio_packet_t;

/* Decodes one text packet of protocol 3 or 4: a WebSocket text frame, or one packet of a
 * polling payload. The input must be UTF-8 (WebSocket text frames are checked by the
 * engine); it is not re-checked here. Returns 0, EIO_EPARSE or EIO_EBASE64. */
int eio_packet_decode(int protocol, const char *s, size_t len, eio_packet_t *out);

/* Decodes a v3 WebSocket binary frame: a type byte 0..6 and the data (binary). Returns 0
 * or EIO_EPARSE. (A v4 binary frame needs no decoding: it is a message as is.) */
int eio3_binary_frame_decode(const void *frame, size_t len, eio_packet_t *out);

/* Walks a polling payload. The iterator borrows body, which must stay valid. */
typedef struct eio_payload_iter {
    const char *pos;
    const char *end;
    int protocol;     /* 3 or 4 */
    bool binary_form; /* v3 binary payload */
    bool started;
    int error; /* sticky: once an error was returned, every later call returns it */
} eio_payload_iter_t;

/* Starts walking body[0..len). protocol: 3 or 4. binary_form: the body is a v3 binary
 * payload (the request's Content-Type is application/octet-stream); ignored for v4 (the
 * reference answers a v4 POST with that Content-Type with 400, "invalid content"). */
void eio_payload_init(eio_payload_iter_t *it, int protocol, bool binary_form, const void *body,
                      size_t len);

/* Stores the next packet in *out. Returns 1 (a packet), 0 (end of payload) or a negative
 * error (EIO_EPARSE, EIO_EBASE64, EIO_EUTF8); deliver the packets returned before an error,
 * then close the session. As in the reference, an empty body is an error in the text forms
 * and an empty payload (no packet) in the v3 binary form; in v3 "0:" is an empty payload
 * too. Text packets are checked to be UTF-8. */
int eio_payload_next(eio_payload_iter_t *it, eio_packet_t *out);

/* Payload encoders: each appends one packet to a payload being built in out. It writes only
 * if the whole packet fits in cap (no NUL; nothing written otherwise) and returns the
 * packet's encoded length, so a call with cap 0 measures. data[0..len) is UTF-8 text, or
 * bytes when binary (binary needs type EIO_MESSAGE in v4). */

/* v4: [0x1e unless first] then "<type><data>", or "b<base64>" when binary. */
size_t eio4_payload_put(char *out, size_t cap, bool first, eio_type_t type, const void *data,
                        size_t len, bool binary);

/* v3 text payload: "<n>:<type><data>", or "<n>:b<type><base64>" when binary. An empty v3
 * payload is the text "0:" (what the reference sends when it has nothing). */
size_t eio3_payload_put(char *out, size_t cap, eio_type_t type, const void *data, size_t len,
                        bool binary);

/* v3 binary payload: 0x00, length digits, 0xff, "<type><data>" for text; 0x01, length
 * digits, 0xff, <type byte><data> for binary. */
size_t eio3_binary_payload_put(char *out, size_t cap, eio_type_t type, const void *data, size_t len,
                               bool binary);

#endif /* EDDY_EIO_PAYLOAD_H */

/* SPDX-License-Identifier: MIT */
/*
 * Socket.IO (protocol v5) packet codec: `<type>[<#attachments>-][<nsp>,][<ack id>][JSON]`.
 *
 * Decoding parses in place: every span in sio_packet_t points into the caller's input and
 * nothing is allocated. It accepts and rejects as the reference parser does
 * (socket.io-parser 4.2, Decoder.decodeString + isPayloadValid; the table in
 * tests/unit/test_sio_packet.c is checked against it by tests/clients/sio_packet_check.js),
 * with these deliberate differences, all on input no client sends:
 *   - the type must be a digit 0..6; the reference reads "" and a leading whitespace
 *     character as Number("") == 0, i.e. CONNECT;
 *   - the attachment count must be decimal digits; the reference takes anything Number()
 *     reads (" 1", "0x1", "1e0", "+1");
 *   - the ack id is decimal digits only and at most SIO_MAX_ID; the reference takes larger
 *     ids as inexact floating-point numbers, and reads whitespace where the id may start or
 *     continue as part of the id (" " is id 0, "1 2" is NaN): we refuse it (SIO_EID);
 *   - the input must be UTF-8 (the reference sees a string already decoded).
 * Like the reference, a packet without JSON is accepted for every type (`42` is an EVENT
 * without data: the reference server then dispatches nothing) and DISCONNECT must have none.
 *
 * Encoding writes into a caller buffer. Functions are pure and thread-safe.
 */
#ifndef EDDY_SIO_PACKET_H
#define EDDY_SIO_PACKET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rt_json.h"

typedef enum sio_type {
    SIO_CONNECT = 0,
    SIO_DISCONNECT = 1,
    SIO_EVENT = 2,
    SIO_ACK = 3,
    SIO_CONNECT_ERROR = 4,
    SIO_BINARY_EVENT = 5,
    SIO_BINARY_ACK = 6,
} sio_type_t;

/* The reference Decoder's default maxAttachments. */
#define SIO_MAX_ATTACHMENTS_DEFAULT 10u
/* Largest ack id accepted (Number.MAX_SAFE_INTEGER: ids above it are not exact in JS). */
#define SIO_MAX_ID 9007199254740991ull

/* Decode errors (negative). The reference's message for each is in the comment; all of them
 * close the connection there. */
enum {
    SIO_ETYPE = -1,          /* "unknown packet type": empty input or first byte not 0..6 */
    SIO_EATTACHMENTS = -2,   /* "Illegal attachments": no '-', not digits, or 0 */
    SIO_ETOOMANY = -3,       /* "too many attachments": more than max_attachments */
    SIO_EID = -4,            /* ack id above SIO_MAX_ID */
    SIO_EUTF8 = -5,          /* the namespace is not UTF-8 */
    SIO_EJSON = -6,          /* "invalid payload": the payload is not JSON (or nests too deep) */
    SIO_ECONNECT = -7,       /* "invalid payload": CONNECT payload is not an object */
    SIO_EDISCONNECT = -8,    /* "invalid payload": DISCONNECT has a payload */
    SIO_ECONNECT_ERROR = -9, /* "invalid payload": CONNECT_ERROR payload not string/object */
    SIO_EEVENT = -10,        /* "invalid payload": EVENT payload not an array starting with a
                                string or number */
    SIO_ERESERVED = -11,     /* "invalid payload": EVENT name is reserved (connect, connect_error,
                                disconnect, disconnecting, newListener, removeListener) */
    SIO_EACK = -12,          /* "invalid payload": ACK payload is not an array */
};

/* A decoded packet. Spans borrow the input given to sio_packet_decode. */
typedef struct sio_packet {
    sio_type_t type;
    unsigned attachments; /* BINARY_EVENT/BINARY_ACK: 1..max_attachments; else 0 */
    const char *nsp;      /* namespace, e.g. "/admin"; "/" (a static string) when absent */
    size_t nsp_len;
    bool has_id;
    uint64_t id;          /* ack id, when has_id; 0..SIO_MAX_ID */
    rt_json_value_t data; /* the JSON payload; type RT_JSON_NONE when there is none */
    /* EVENT/BINARY_EVENT with data: the first element (a STRING, the event name, or a
     * NUMBER). Otherwise type RT_JSON_NONE. */
    rt_json_value_t event;
    /* EVENT/BINARY_EVENT: the elements after the first; ACK/BINARY_ACK: all elements. As
     * the text between the brackets (comma-separated, possibly surrounded by whitespace,
     * empty when there are none): iterate with rt_json_iter_init_list, or copy as is into
     * an encoded packet. NULL/0 for other types. */
    const char *args;
    size_t args_len;
} sio_packet_t;

/* Decodes one Socket.IO packet s[0..len) (the Engine.IO message payload, without its '4').
 * max_attachments: the largest attachment count accepted (SIO_MAX_ATTACHMENTS_DEFAULT).
 * Returns 0 with *out filled, or one of the errors above (*out is then unspecified).
 * Binary attachments are not part of the text: a BINARY_* packet announces how many binary
 * messages follow; the caller collects them and resolves placeholders
 * (rt_json_placeholder). */
int sio_packet_decode(const char *s, size_t len, unsigned max_attachments, sio_packet_t *out);

/* A short description of a decode error ("unknown packet type", ...); never NULL. */
const char *sio_strerror(int err);

/* Encode flags. */
#define SIO_ENC_EIO_MESSAGE                                                                        \
    0x1 /* start with the Engine.IO message type '4', so the result                                \
           is the final WebSocket text payload (encode once, send                                  \
           to many) */

/* Encoders. Each writes the packet to out only if it fits in cap (no NUL terminator; nothing
 * is written otherwise) and returns its length, so a call with cap 0 measures. Common
 * arguments:
 *   nsp/nsp_len  namespace; omitted from the text when NULL, empty or "/";
 *   attachments  number of binary attachments: > 0 makes EVENT/ACK the BINARY_ types and
 *                writes "<n>-";
 *   id           ack id (0..SIO_MAX_ID), or -1 for none.
 * The JSON given is copied as is (it must be valid: these functions do not check it). */

/* Any packet type with a complete JSON payload json[0..json_len) (NULL/0: none). type
 * BINARY_EVENT/BINARY_ACK write their attachment count (attachments should then be >= 1);
 * other types ignore attachments. */
size_t sio_encode(char *out, size_t cap, int flags, sio_type_t type, const char *nsp,
                  size_t nsp_len, unsigned attachments, int64_t id, const char *json,
                  size_t json_len);

/* An EVENT (BINARY_EVENT when attachments > 0) with payload ["<name>",<args>]: name is raw
 * UTF-8, escaped here (rt_json_write_string); args is the comma-separated JSON of the
 * arguments without brackets (may be empty). */
size_t sio_encode_event(char *out, size_t cap, int flags, const char *nsp, size_t nsp_len,
                        unsigned attachments, int64_t id, const char *name, size_t name_len,
                        const char *args, size_t args_len);

/* An ACK (BINARY_ACK when attachments > 0) for ack id id (required, >= 0) with payload
 * [<args>]. */
size_t sio_encode_ack(char *out, size_t cap, int flags, const char *nsp, size_t nsp_len,
                      unsigned attachments, int64_t id, const char *args, size_t args_len);

#endif /* EDDY_SIO_PACKET_H */

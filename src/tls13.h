/* SPDX-License-Identifier: MIT */
/*
 * TLS 1.3 record protection (tls13.c, RFC 8446 sections 5 and 7): sealing and opening
 * the records of a connection whose handshake OpenSSL made, with the traffic secrets it
 * derived, and the key updates of section 4.6.3. The ciphers are OpenSSL's; this is the
 * framing around them, which costs a small message far less than OpenSSL's record layer.
 * Pure: no sockets; one connection's state is used by one thread at a time.
 */
#ifndef EDDY_TLS13_H
#define EDDY_TLS13_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EDDY__TLS13_HEADER 5
#define EDDY__TLS13_TAG    16
/* The most plaintext a record carries, and the longest record accepted (2^14 + 256). */
#define EDDY__TLS13_PLAIN_MAX  16384
#define EDDY__TLS13_RECORD_MAX (EDDY__TLS13_HEADER + EDDY__TLS13_PLAIN_MAX + 256)
/* What sealing adds to plaintext: the header, the inner content type and the tag. */
#define EDDY__TLS13_OVERHEAD (EDDY__TLS13_HEADER + 1 + EDDY__TLS13_TAG)
/* The longest traffic secret (SHA-384). */
#define EDDY__TLS13_SECRET_MAX 48

/* Content types (RFC 8446 appendix B.1). */
enum {
    EDDY__TLS13_ALERT = 21,
    EDDY__TLS13_HANDSHAKE = 22,
    EDDY__TLS13_APPLICATION_DATA = 23,
};

/* The alerts the record layer raises (RFC 8446 section 6); functions return them negated. */
enum {
    EDDY__TLS13_UNEXPECTED_MESSAGE = 10,
    EDDY__TLS13_BAD_RECORD_MAC = 20,
    EDDY__TLS13_RECORD_OVERFLOW = 22,
    EDDY__TLS13_ILLEGAL_PARAMETER = 47,
    EDDY__TLS13_DECODE_ERROR = 50,
    EDDY__TLS13_INTERNAL_ERROR = 80,
};

typedef struct eddy__tls13 eddy__tls13_t;

/* True if suite (its IANA number: 0x1301 AES-128-GCM, 0x1302 AES-256-GCM, 0x1303
 * ChaCha20-Poly1305) is one this layer protects, and the length of its secrets. */
bool eddy__tls13_suite_supported(uint16_t suite, size_t *secret_len);

/* Record protection for suite, reading with read_secret and writing with write_secret
 * (secret_len bytes each, copied), the next records being read_seq and write_seq. Returns
 * 0 and *out (free with eddy__tls13_free()), EDDY_EINVAL (a suite or length not
 * supported) or EDDY_ENOMEM. Any thread. */
int eddy__tls13_new(uint16_t suite, const uint8_t *read_secret, const uint8_t *write_secret,
                    size_t secret_len, uint64_t read_seq, uint64_t write_seq, eddy__tls13_t **out);
/* Frees t and wipes its keys. NULL is a no-op. */
void eddy__tls13_free(eddy__tls13_t *t);

/* Seals the len bytes of plaintext at rec + EDDY__TLS13_HEADER (len at most
 * EDDY__TLS13_PLAIN_MAX; rec has room for len + EDDY__TLS13_OVERHEAD bytes) in place into
 * a record of content type type. Returns the record's length, or 0 if OpenSSL failed. */
size_t eddy__tls13_seal(eddy__tls13_t *t, uint8_t type, uint8_t *rec, size_t len);

/* The length of the record starting at p, given avail bytes: 0 while its header is
 * incomplete, else the whole record's length (which may exceed avail), or a negated alert
 * (an outer type other than application data, a length out of bounds). */
long eddy__tls13_record_len(const uint8_t *p, size_t avail);

/* Opens the whole record rec (rec_len bytes, as eddy__tls13_record_len() measured) into
 * out, which has room for rec_len - EDDY__TLS13_OVERHEAD + 1 bytes and is either
 * rec + EDDY__TLS13_HEADER or does not overlap rec. Returns the plaintext's length (the
 * padding and the inner type removed) and its *type, or a negated alert. */
long eddy__tls13_open(eddy__tls13_t *t, const uint8_t *rec, size_t rec_len, uint8_t *out,
                      uint8_t *type);

/* A KeyUpdate (RFC 8446 section 4.6.3): the next traffic secret of the read or the write
 * direction, its key, and sequence numbers from 0. Returns 0 or EDDY_ENOMEM. */
int eddy__tls13_update(eddy__tls13_t *t, bool write);

/* The number of the next record written: past a cipher's safe limit (RFC 8446 section
 * 5.5) the writer updates its key. */
uint64_t eddy__tls13_write_seq(const eddy__tls13_t *t);

#endif /* EDDY_TLS13_H */

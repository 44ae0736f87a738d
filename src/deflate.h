/* SPDX-License-Identifier: MIT */
/*
 * permessage-deflate (deflate.c): negotiation and inflating with zlib. Messages are
 * compressed by eddy's own deflater (deflater.h).
 */
#ifndef EDDY_DEFLATE_H
#define EDDY_DEFLATE_H

#include <stdbool.h>
#include <stdint.h>

#include "util.h"

typedef struct z_stream_s z_stream;

/* What the server accepts and asks for. */
typedef struct eddy__pmd_config {
    uint8_t server_window_bits; /* 9-15: the largest window we compress with */
    uint8_t client_window_bits; /* 8-15: asked of clients that offer client_max_window_bits */
    bool server_no_context_takeover;
    bool client_no_context_takeover;
} eddy__pmd_config_t;

/* What a connection agreed to. */
typedef struct eddy__pmd {
    uint8_t server_window_bits;
    uint8_t client_window_bits;
    bool server_no_context_takeover;
    bool client_no_context_takeover;
    bool announce_server_bits; /* the offer had server_max_window_bits: answer it */
    bool announce_client_bits;
} eddy__pmd_t;

/* Chooses the first acceptable permessage-deflate offer in a Sec-WebSocket-Extensions
 * value. Malformed offers and offers we cannot honour are skipped. Returns true with *out
 * filled in when one was accepted. */
bool eddy__pmd_negotiate(const char *value, size_t len, const eddy__pmd_config_t *cfg,
                         eddy__pmd_t *out);
/* A client's check of the server's Sec-WebSocket-Extensions answer to its offer
 * ("permessage-deflate; client_max_window_bits"): true with *out filled in when it is one
 * permessage-deflate element with parameters the client can honour. */
bool eddy__pmd_client_accept(const char *value, size_t len, eddy__pmd_t *out);
/* Formats the Sec-WebSocket-Extensions response value. Returns its length or EDDY_ETOOBIG. */
int eddy__pmd_response(const eddy__pmd_t *pmd, char *out, size_t cap);

z_stream *eddy__inflater_new(int window_bits);
void eddy__inflater_free(z_stream *zs);
/* Inflates in[0..len) (and, with final, the stripped 00 00 ff ff tail), appending to out,
 * which never grows past limit + 1 bytes. Returns 0, EDDY_ETOOBIG when the output would
 * exceed limit, EDDY_EPROTO for corrupt data, EDDY_ENOMEM. */
int eddy__inflate(z_stream *zs, const uint8_t *in, size_t len, bool final, eddy__buf_t *out,
                  size_t limit);
/* zlib counts in uInt (32 bits): eddy__inflate hands it at most this many bytes at a
 * time, so messages over 4 GiB go through whole. UINT_MAX; unit tests lower it to
 * exercise the chunking with small buffers. */
extern size_t eddy__zlib_chunk;

#endif /* EDDY_DEFLATE_H */

/* SPDX-License-Identifier: MIT */
/*
 * Base64 (RFC 4648) and the WebSocket handshake key (RFC 6455 4.2.2).
 */
#include <pthread.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "codec.h"

/* SHA-1, fetched from OpenSSL's provider once: SHA1() looks it up on every call, which
 * costs more than the hashing itself. Kept for the life of the process. */
static EVP_MD *sha1_md;
static pthread_once_t sha1_once = PTHREAD_ONCE_INIT;

static void sha1_fetch(void)
{
    sha1_md = EVP_MD_fetch(NULL, "SHA1", NULL);
    /* One digest now, so that its code is paged in before the first handshake too. */
    uint8_t digest[SHA_DIGEST_LENGTH];
    if (sha1_md != NULL)
        EVP_Digest("", 0, digest, NULL, sha1_md, NULL);
}

void eddy__handshake_init(void)
{
    pthread_once(&sha1_once, sha1_fetch);
}

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t eddy__base64_encode(char *dst, const uint8_t *src, size_t len)
{
    size_t o = 0, i = 0;

    for (; len - i >= 3; i += 3) {
        uint32_t v = (uint32_t)src[i] << 16 | (uint32_t)src[i + 1] << 8 | src[i + 2];
        dst[o++] = b64_alphabet[v >> 18];
        dst[o++] = b64_alphabet[(v >> 12) & 63];
        dst[o++] = b64_alphabet[(v >> 6) & 63];
        dst[o++] = b64_alphabet[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)src[i] << 16;
        dst[o++] = b64_alphabet[v >> 18];
        dst[o++] = b64_alphabet[(v >> 12) & 63];
        dst[o++] = '=';
        dst[o++] = '=';
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)src[i] << 16 | (uint32_t)src[i + 1] << 8;
        dst[o++] = b64_alphabet[v >> 18];
        dst[o++] = b64_alphabet[(v >> 12) & 63];
        dst[o++] = b64_alphabet[(v >> 6) & 63];
        dst[o++] = '=';
    }
    dst[o] = '\0';
    return o;
}

/* The 6-bit value of a base64 digit, or -1. */
static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

ssize_t eddy__base64_decode(uint8_t *dst, size_t cap, const char *src, size_t len)
{
    if (len % 4 != 0)
        return -1;
    if (len == 0)
        return 0;

    size_t pad = src[len - 1] == '=' ? (src[len - 2] == '=' ? 2 : 1) : 0;
    size_t out_len = len / 4 * 3 - pad;
    if (out_len > cap)
        return -1;

    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        bool last = i + 4 == len;
        size_t digits = last ? 4 - pad : 4;
        uint32_t v = 0;
        for (size_t k = 0; k < 4; k++) {
            int d = k < digits ? b64_value(src[i + k]) : 0;
            if (d < 0)
                return -1;
            v = v << 6 | (uint32_t)d;
        }
        /* Strict: the bits a padded group leaves unused must be zero, so every byte
         * string has exactly one accepted encoding. */
        if ((pad == 1 && last && (v & 0xFF)) || (pad == 2 && last && (v & 0xFFFF)))
            return -1;
        dst[o++] = (uint8_t)(v >> 16);
        if (digits > 2)
            dst[o++] = (uint8_t)(v >> 8);
        if (digits > 3)
            dst[o++] = (uint8_t)v;
    }
    return (ssize_t)o;
}

int eddy_ws_accept_key(const char *key, size_t key_len, char out[EDDY_WS_ACCEPT_LEN + 1])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    uint8_t nonce[16];
    /* A key that decodes to 16 bytes is exactly 24 characters ("...=="). */
    char joined[24 + sizeof(guid) - 1];
    uint8_t digest[SHA_DIGEST_LENGTH];

    if (key == NULL || key_len != 24 || eddy__base64_decode(nonce, sizeof(nonce), key, 24) != 16)
        return EDDY_EINVAL;
    memcpy(joined, key, 24);
    memcpy(joined + 24, guid, sizeof(guid) - 1);
    eddy__handshake_init();
    if (sha1_md == NULL || !EVP_Digest(joined, sizeof(joined), digest, NULL, sha1_md, NULL))
        SHA1((const unsigned char *)joined, sizeof(joined), digest);
    eddy__base64_encode(out, digest, sizeof(digest));
    return 0;
}

/* SPDX-License-Identifier: MIT */
/*
 * HS256 JSON Web Token signing for the unit tests and the fuzz driver of the daemon's
 * verifier (cmd/auth.c). Its base64url encoder is written apart from the library's
 * (src/base64.c), so the tests do not check the codec against itself. Needs libcrypto.
 */
#ifndef EDDY_JWT_SIGN_H
#define EDDY_JWT_SIGN_H

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stddef.h>
#include <string.h>

/* Unpadded base64url of in[0..len) into out (len * 4 / 3 + 3 bytes), NUL-terminated.
 * Returns the length without the NUL. */
static inline size_t jwt_b64url(const unsigned char *in, size_t len, char *out)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t n = 0;
    for (size_t i = 0; i < len; i += 3) {
        unsigned v = (unsigned)in[i] << 16;
        if (i + 1 < len)
            v |= (unsigned)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        out[n++] = alphabet[(v >> 18) & 63];
        out[n++] = alphabet[(v >> 12) & 63];
        if (i + 1 < len)
            out[n++] = alphabet[(v >> 6) & 63];
        if (i + 2 < len)
            out[n++] = alphabet[v & 63];
    }
    out[n] = '\0';
    return n;
}

/* The base64url HMAC-SHA256 of msg[0..len) under key into out (44 bytes), NUL-terminated.
 * Returns 43. */
static inline size_t jwt_hs256_b64url(const char *key, const void *msg, size_t len, char *out)
{
    unsigned char mac[32];
    unsigned int mac_len = 0;
    HMAC(EVP_sha256(), key, (int)strlen(key), msg, len, mac, &mac_len);
    return jwt_b64url(mac, mac_len, out);
}

/* header.claims.signature (the two JSON texts as given, signed with key) into out, which
 * holds (header_len + claims_len) * 4 / 3 + 52 bytes; NUL-terminated. Returns its
 * length. */
static inline size_t jwt_sign(char *out, const void *header, size_t header_len, const void *claims,
                              size_t claims_len, const char *key)
{
    size_t n = jwt_b64url(header, header_len, out);
    out[n++] = '.';
    n += jwt_b64url(claims, claims_len, out + n);
    char *sig = out + n;
    *sig++ = '.';
    return n + 1 + jwt_hs256_b64url(key, out, n, sig);
}

#endif /* EDDY_JWT_SIGN_H */

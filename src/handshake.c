/* SPDX-License-Identifier: MIT */
/*
 * The WebSocket handshake key (RFC 6455 4.2.2); its base64 is src/base64.c.
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

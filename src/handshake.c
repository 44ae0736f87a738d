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
 * costs more than the hashing itself. Kept for the life of the process. Each thread keeps
 * one digest context too: EVP_Digest() makes and frees one per call (two allocations
 * and the context's cleansing, more than SHA-NI takes for the key itself). */
static EVP_MD *sha1_md;
static pthread_key_t sha1_ctx_key;
static bool sha1_ctx_keyed;
static pthread_once_t sha1_once = PTHREAD_ONCE_INIT;

static void sha1_ctx_free(void *ctx)
{
    EVP_MD_CTX_free(ctx);
}

static void sha1_fetch(void)
{
    sha1_md = EVP_MD_fetch(NULL, "SHA1", NULL);
    sha1_ctx_keyed = pthread_key_create(&sha1_ctx_key, sha1_ctx_free) == 0;
    /* One digest now, so that its code is paged in before the first handshake too. */
    uint8_t digest[SHA_DIGEST_LENGTH];
    if (sha1_md != NULL)
        EVP_Digest("", 0, digest, NULL, sha1_md, NULL);
}

void eddy__handshake_init(void)
{
    pthread_once(&sha1_once, sha1_fetch);
}

/* This thread's digest context, made on its first use; NULL if that fails. */
static EVP_MD_CTX *sha1_ctx(void)
{
    if (!sha1_ctx_keyed)
        return NULL;
    EVP_MD_CTX *ctx = pthread_getspecific(sha1_ctx_key);
    if (ctx == NULL && (ctx = EVP_MD_CTX_new()) != NULL &&
        pthread_setspecific(sha1_ctx_key, ctx) != 0) {
        EVP_MD_CTX_free(ctx);
        ctx = NULL;
    }
    return ctx;
}

static void sha1(const void *data, size_t len, uint8_t digest[SHA_DIGEST_LENGTH])
{
    eddy__handshake_init();
    if (sha1_md != NULL) {
        EVP_MD_CTX *ctx = sha1_ctx();
        if (ctx != NULL && EVP_DigestInit_ex(ctx, sha1_md, NULL) &&
            EVP_DigestUpdate(ctx, data, len) && EVP_DigestFinal_ex(ctx, digest, NULL))
            return;
        if (EVP_Digest(data, len, digest, NULL, sha1_md, NULL))
            return;
    }
    SHA1(data, len, digest);
}

void eddy__ws_accept_checked_key(const char key[24], char out[EDDY_WS_ACCEPT_LEN + 1])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    char joined[24 + sizeof(guid) - 1];
    uint8_t digest[SHA_DIGEST_LENGTH];

    memcpy(joined, key, 24);
    memcpy(joined + 24, guid, sizeof(guid) - 1);
    sha1(joined, sizeof(joined), digest);
    eddy__base64_encode(out, digest, sizeof(digest));
}

int eddy_ws_accept_key(const char *key, size_t key_len, char out[EDDY_WS_ACCEPT_LEN + 1])
{
    uint8_t nonce[16];
    /* A key that decodes to 16 bytes is exactly 24 characters ("...=="). */
    if (key == NULL || key_len != 24 || eddy__base64_decode(nonce, sizeof(nonce), key, 24) != 16)
        return EDDY_EINVAL;
    eddy__ws_accept_checked_key(key, out);
    return 0;
}

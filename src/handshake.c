/* SPDX-License-Identifier: MIT */
/*
 * The WebSocket handshake key (RFC 6455 4.2.2); its base64 is src/base64.c.
 */
#include <pthread.h>
#include <string.h>

#include <openssl/core_dispatch.h>
#include <openssl/evp.h>
#include <openssl/provider.h>
#include <openssl/sha.h>

#include "codec.h"
#include "provider.h"

/* SHA-1, fetched from OpenSSL's provider once: SHA1() looks it up on every call, which
 * costs more than the hashing itself. Kept for the life of the process. Its functions are
 * called in the provider (provider-digest(7)), each thread with a digest context of its
 * own: through EVP, even on a context kept per thread, EVP_DigestInit_ex() frees and
 * remakes the provider's context at every call (about 560 instructions, a twentieth of a
 * handshake's user space). EVP_Digest() stands in if the provider's functions cannot be
 * had or a thread's context cannot be made. */
static EVP_MD *sha1_md;
static struct {
    void *provctx;
    OSSL_FUNC_digest_newctx_fn *newctx;
    OSSL_FUNC_digest_freectx_fn *freectx;
    OSSL_FUNC_digest_init_fn *init;
    OSSL_FUNC_digest_update_fn *update;
    OSSL_FUNC_digest_final_fn *final;
} sha1_impl;
static bool sha1_direct; /* sha1_impl is complete and sha1_ctx_key made */
static pthread_key_t sha1_ctx_key;
static pthread_once_t sha1_once = PTHREAD_ONCE_INIT;

static const int sha1_fn_ids[] = {
    OSSL_FUNC_DIGEST_NEWCTX, OSSL_FUNC_DIGEST_FREECTX, OSSL_FUNC_DIGEST_INIT,
    OSSL_FUNC_DIGEST_UPDATE, OSSL_FUNC_DIGEST_FINAL,
};
#define SHA1_FN_COUNT (sizeof(sha1_fn_ids) / sizeof(sha1_fn_ids[0]))

static void sha1_ctx_free(void *ctx)
{
    sha1_impl.freectx(ctx);
}

static void sha1_fetch(void)
{
    sha1_md = EVP_MD_fetch(NULL, "SHA1", NULL);
    if (sha1_md == NULL)
        return;
    OSSL_PROVIDER *prov = (OSSL_PROVIDER *)EVP_MD_get0_provider(sha1_md);
    eddy__provider_fn fns[SHA1_FN_COUNT];
    if (prov != NULL &&
        eddy__provider_functions(prov, OSSL_OP_DIGEST, "SHA1", sha1_fn_ids, fns, SHA1_FN_COUNT)) {
        sha1_impl.provctx = OSSL_PROVIDER_get0_provider_ctx(prov);
        sha1_impl.newctx = (OSSL_FUNC_digest_newctx_fn *)fns[0];
        sha1_impl.freectx = (OSSL_FUNC_digest_freectx_fn *)fns[1];
        sha1_impl.init = (OSSL_FUNC_digest_init_fn *)fns[2];
        sha1_impl.update = (OSSL_FUNC_digest_update_fn *)fns[3];
        sha1_impl.final = (OSSL_FUNC_digest_final_fn *)fns[4];
        sha1_direct = pthread_key_create(&sha1_ctx_key, sha1_ctx_free) == 0;
    }
    /* One digest now, so that its code is paged in before the first handshake too. */
    uint8_t digest[SHA_DIGEST_LENGTH];
    EVP_Digest("", 0, digest, NULL, sha1_md, NULL);
}

void eddy__handshake_init(void)
{
    pthread_once(&sha1_once, sha1_fetch);
}

/* This thread's digest context in the provider, made on its first use; NULL if that
 * fails. */
static void *sha1_ctx(void)
{
    void *ctx = pthread_getspecific(sha1_ctx_key);
    if (ctx == NULL && (ctx = sha1_impl.newctx(sha1_impl.provctx)) != NULL &&
        pthread_setspecific(sha1_ctx_key, ctx) != 0) {
        sha1_impl.freectx(ctx);
        ctx = NULL;
    }
    return ctx;
}

static void sha1(const void *data, size_t len, uint8_t digest[SHA_DIGEST_LENGTH])
{
    eddy__handshake_init();
    void *ctx = sha1_direct ? sha1_ctx() : NULL;
    size_t digest_len;
    if (ctx != NULL && sha1_impl.init(ctx, NULL) && sha1_impl.update(ctx, data, len) &&
        sha1_impl.final(ctx, digest, &digest_len, SHA_DIGEST_LENGTH) &&
        digest_len == SHA_DIGEST_LENGTH)
        return;
    if (sha1_md != NULL && EVP_Digest(data, len, digest, NULL, sha1_md, NULL))
        return;
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

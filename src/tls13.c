/* SPDX-License-Identifier: MIT */
/*
 * TLS 1.3 record protection: RFC 8446 section 5.2 (the record and its inner plaintext),
 * 5.3 (the per-record nonce), 7.1 (HKDF-Expand-Label) and 7.3 (traffic keys).
 *
 * OpenSSL's SSL_write and SSL_read cost about 6,200 instructions each for a 20-byte
 * record, of which the AEAD itself is a third; the rest is its record layer, BIO and state
 * machine. Through EVP the AEAD costs about 2,900 a record, 1,000 of them EVP's own (an
 * IV set through EVP_CipherInit_ex() asks the provider for the IV length every time, in
 * OpenSSL 3.0). So records are sealed and opened with the cipher's implementation in the
 * provider EVP_CIPHER_fetch() chooses (the default, FIPS or another, as configured),
 * called through its dispatch table (provider-cipher(7)): about 1,900 a record.
 */
#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/provider.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "eddy.h"
#include "provider.h"
#include "tls13.h"

#define NONCE_LEN 12

typedef struct suite {
    uint16_t id;
    uint8_t key_len;
    uint8_t secret_len;
    const char *cipher_name;
    const char *digest_name;
} suite_t;

static const suite_t suites[] = {
    {0x1301, 16, 32, "AES-128-GCM", "SHA256"},
    {0x1302, 32, 48, "AES-256-GCM", "SHA384"},
    {0x1303, 32, 32, "ChaCha20-Poly1305", "SHA256"},
};
#define SUITE_COUNT (sizeof(suites) / sizeof(suites[0]))

/* A cipher's implementation in its provider. */
typedef struct cipher_impl {
    EVP_CIPHER *fetched; /* held for the process: it keeps the provider loaded */
    void *provctx;
    OSSL_FUNC_cipher_newctx_fn *newctx;
    OSSL_FUNC_cipher_freectx_fn *freectx;
    OSSL_FUNC_cipher_encrypt_init_fn *encrypt_init;
    OSSL_FUNC_cipher_decrypt_init_fn *decrypt_init;
    OSSL_FUNC_cipher_update_fn *update;
    OSSL_FUNC_cipher_final_fn *final;
    OSSL_FUNC_cipher_get_ctx_params_fn *get_ctx_params;
    OSSL_FUNC_cipher_set_ctx_params_fn *set_ctx_params;
} cipher_impl_t;

static cipher_impl_t impls[SUITE_COUNT];
static bool impl_found[SUITE_COUNT];
static EVP_KDF *hkdf;
static pthread_once_t fetch_once = PTHREAD_ONCE_INIT;

/* The functions find_impl() takes, in cipher_impl_t's order. */
static const int cipher_fn_ids[] = {
    OSSL_FUNC_CIPHER_NEWCTX,         OSSL_FUNC_CIPHER_FREECTX,        OSSL_FUNC_CIPHER_ENCRYPT_INIT,
    OSSL_FUNC_CIPHER_DECRYPT_INIT,   OSSL_FUNC_CIPHER_UPDATE,         OSSL_FUNC_CIPHER_FINAL,
    OSSL_FUNC_CIPHER_GET_CTX_PARAMS, OSSL_FUNC_CIPHER_SET_CTX_PARAMS,
};
#define CIPHER_FN_COUNT (sizeof(cipher_fn_ids) / sizeof(cipher_fn_ids[0]))

static bool find_impl(const char *name, cipher_impl_t *impl)
{
    impl->fetched = EVP_CIPHER_fetch(NULL, name, NULL);
    if (impl->fetched == NULL)
        return false;
    OSSL_PROVIDER *prov = (OSSL_PROVIDER *)EVP_CIPHER_get0_provider(impl->fetched);
    eddy__provider_fn fns[CIPHER_FN_COUNT];
    if (!eddy__provider_functions(prov, OSSL_OP_CIPHER, name, cipher_fn_ids, fns, CIPHER_FN_COUNT))
        return false;
    impl->provctx = OSSL_PROVIDER_get0_provider_ctx(prov);
    impl->newctx = (OSSL_FUNC_cipher_newctx_fn *)fns[0];
    impl->freectx = (OSSL_FUNC_cipher_freectx_fn *)fns[1];
    impl->encrypt_init = (OSSL_FUNC_cipher_encrypt_init_fn *)fns[2];
    impl->decrypt_init = (OSSL_FUNC_cipher_decrypt_init_fn *)fns[3];
    impl->update = (OSSL_FUNC_cipher_update_fn *)fns[4];
    impl->final = (OSSL_FUNC_cipher_final_fn *)fns[5];
    impl->get_ctx_params = (OSSL_FUNC_cipher_get_ctx_params_fn *)fns[6];
    impl->set_ctx_params = (OSSL_FUNC_cipher_set_ctx_params_fn *)fns[7];
    return true;
}

static void fetch_algorithms(void)
{
    for (size_t i = 0; i < SUITE_COUNT; i++)
        impl_found[i] = find_impl(suites[i].cipher_name, &impls[i]);
    hkdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
}

typedef struct direction {
    void *ctx; /* the provider's cipher context */
    uint64_t seq;
    uint8_t iv[NONCE_LEN];
    uint8_t secret[EDDY__TLS13_SECRET_MAX];
} direction_t;

struct eddy__tls13 {
    const suite_t *suite;
    const cipher_impl_t *impl;
    direction_t read;
    direction_t write;
};

static const suite_t *find_suite(uint16_t id, size_t *index)
{
    for (size_t i = 0; i < SUITE_COUNT; i++)
        if (suites[i].id == id) {
            *index = i;
            return &suites[i];
        }
    return NULL;
}

bool eddy__tls13_suite_supported(uint16_t suite, size_t *secret_len)
{
    size_t index;
    const suite_t *s = find_suite(suite, &index);
    if (s == NULL)
        return false;
    pthread_once(&fetch_once, fetch_algorithms);
    if (!impl_found[index] || hkdf == NULL)
        return false;
    *secret_len = s->secret_len;
    return true;
}

/* HKDF-Expand-Label(secret, label, "", len) (RFC 8446 section 7.1). */
static int expand_label(const suite_t *s, const uint8_t *secret, const char *label, uint8_t *out,
                        size_t len)
{
    /* HkdfLabel: uint16 length, opaque label<7..255> ("tls13 " + label), context<0..255>. */
    uint8_t info[2 + 1 + 6 + 16 + 1];
    size_t label_len = strlen(label);
    info[0] = (uint8_t)(len >> 8);
    info[1] = (uint8_t)len;
    info[2] = (uint8_t)(6 + label_len);
    memcpy(info + 3, "tls13 ", 6);
    memcpy(info + 9, label, label_len);
    info[9 + label_len] = 0;
    int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)s->digest_name, 0),
        OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)secret, s->secret_len),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, 10 + label_len),
        OSSL_PARAM_construct_end(),
    };
    EVP_KDF_CTX *kctx = EVP_KDF_CTX_new(hkdf);
    int ok = kctx != NULL && EVP_KDF_derive(kctx, out, len, params) == 1;
    EVP_KDF_CTX_free(kctx);
    return ok ? 0 : EDDY_ENOMEM;
}

/* Keys dir from dir->secret: its key and IV, and the sequence from 0. */
static int key_direction(eddy__tls13_t *t, direction_t *dir, int enc)
{
    uint8_t key[32];
    int rc = expand_label(t->suite, dir->secret, "key", key, t->suite->key_len);
    if (rc == 0)
        rc = expand_label(t->suite, dir->secret, "iv", dir->iv, NONCE_LEN);
    if (rc == 0 && (enc ? t->impl->encrypt_init : t->impl->decrypt_init)(
                       dir->ctx, key, t->suite->key_len, NULL, 0, NULL) != 1)
        rc = EDDY_ENOMEM;
    OPENSSL_cleanse(key, sizeof(key));
    dir->seq = 0;
    return rc;
}

int eddy__tls13_new(uint16_t suite, const uint8_t *read_secret, const uint8_t *write_secret,
                    size_t secret_len, uint64_t read_seq, uint64_t write_seq, eddy__tls13_t **out)
{
    size_t expected;
    size_t index = 0;
    if (!eddy__tls13_suite_supported(suite, &expected) || secret_len != expected)
        return EDDY_EINVAL;
    eddy__tls13_t *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return EDDY_ENOMEM;
    t->suite = find_suite(suite, &index);
    t->impl = &impls[index];
    memcpy(t->read.secret, read_secret, secret_len);
    memcpy(t->write.secret, write_secret, secret_len);
    t->read.ctx = t->impl->newctx(t->impl->provctx);
    t->write.ctx = t->impl->newctx(t->impl->provctx);
    if (t->read.ctx == NULL || t->write.ctx == NULL || key_direction(t, &t->read, 0) != 0 ||
        key_direction(t, &t->write, 1) != 0) {
        eddy__tls13_free(t);
        return EDDY_ENOMEM;
    }
    t->read.seq = read_seq;
    t->write.seq = write_seq;
    *out = t;
    return 0;
}

void eddy__tls13_free(eddy__tls13_t *t)
{
    if (t == NULL)
        return;
    if (t->read.ctx != NULL) /* wipes the key schedule */
        t->impl->freectx(t->read.ctx);
    if (t->write.ctx != NULL)
        t->impl->freectx(t->write.ctx);
    OPENSSL_cleanse(t, sizeof(*t));
    free(t);
}

int eddy__tls13_update(eddy__tls13_t *t, bool write)
{
    direction_t *dir = write ? &t->write : &t->read;
    uint8_t next[EDDY__TLS13_SECRET_MAX];
    int rc = expand_label(t->suite, dir->secret, "traffic upd", next, t->suite->secret_len);
    if (rc == 0) {
        memcpy(dir->secret, next, t->suite->secret_len);
        rc = key_direction(t, dir, write ? 1 : 0);
    }
    OPENSSL_cleanse(next, sizeof(next));
    return rc;
}

uint64_t eddy__tls13_write_seq(const eddy__tls13_t *t)
{
    return t->write.seq;
}

/* The per-record nonce: the IV with the sequence number, big-endian, XORed into its end. */
static void make_nonce(const direction_t *dir, uint8_t nonce[NONCE_LEN])
{
    memcpy(nonce, dir->iv, NONCE_LEN);
    for (int i = 0; i < 8; i++)
        nonce[NONCE_LEN - 1 - i] ^= (uint8_t)(dir->seq >> (8 * i));
}

/* The tag parameter of an AEAD context, to get (sealing) or set (opening). */
static void tag_param(OSSL_PARAM params[2], uint8_t *tag)
{
    params[0] = OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, tag, EDDY__TLS13_TAG);
    params[1] = OSSL_PARAM_construct_end();
}

size_t eddy__tls13_seal(eddy__tls13_t *t, uint8_t type, uint8_t *rec, size_t len)
{
    const cipher_impl_t *impl = t->impl;
    direction_t *dir = &t->write;
    uint8_t *body = rec + EDDY__TLS13_HEADER;
    body[len] = type;
    size_t inner = len + 1;
    size_t total = inner + EDDY__TLS13_TAG;
    rec[0] = EDDY__TLS13_APPLICATION_DATA;
    rec[1] = 3; /* legacy_record_version: TLS 1.2 */
    rec[2] = 3;
    rec[3] = (uint8_t)(total >> 8);
    rec[4] = (uint8_t)total;
    uint8_t nonce[NONCE_LEN];
    make_nonce(dir, nonce);
    size_t n;
    size_t tail;
    OSSL_PARAM params[2];
    tag_param(params, body + inner);
    /* The header is the AAD: an update without output (whose size is checked all the
     * same). */
    if (impl->encrypt_init(dir->ctx, NULL, 0, nonce, NONCE_LEN, NULL) != 1 ||
        impl->update(dir->ctx, NULL, &n, EDDY__TLS13_HEADER, rec, EDDY__TLS13_HEADER) != 1 ||
        impl->update(dir->ctx, body, &n, inner, body, inner) != 1 || n != inner ||
        impl->final(dir->ctx, body + n, &tail, EDDY__TLS13_TAG) != 1 ||
        impl->get_ctx_params(dir->ctx, params) != 1)
        return 0;
    dir->seq++;
    return EDDY__TLS13_HEADER + total;
}

long eddy__tls13_record_len(const uint8_t *p, size_t avail)
{
    if (avail < EDDY__TLS13_HEADER)
        return 0;
    /* After the handshake every record is protected, so its outer type is application
     * data; the version is ignored (section 5.1). */
    if (p[0] != EDDY__TLS13_APPLICATION_DATA)
        return -EDDY__TLS13_UNEXPECTED_MESSAGE;
    size_t len = ((size_t)p[3] << 8) | p[4];
    if (len > EDDY__TLS13_PLAIN_MAX + 256)
        return -EDDY__TLS13_RECORD_OVERFLOW;
    if (len < 1 + EDDY__TLS13_TAG)
        return -EDDY__TLS13_DECODE_ERROR;
    return (long)(EDDY__TLS13_HEADER + len);
}

long eddy__tls13_open(eddy__tls13_t *t, const uint8_t *rec, size_t rec_len, uint8_t *out,
                      uint8_t *type)
{
    const cipher_impl_t *impl = t->impl;
    direction_t *dir = &t->read;
    size_t clen = rec_len - EDDY__TLS13_HEADER - EDDY__TLS13_TAG;
    uint8_t nonce[NONCE_LEN];
    make_nonce(dir, nonce);
    size_t n;
    size_t tail;
    OSSL_PARAM params[2];
    tag_param(params, (uint8_t *)(rec + rec_len - EDDY__TLS13_TAG));
    if (impl->decrypt_init(dir->ctx, NULL, 0, nonce, NONCE_LEN, NULL) != 1 ||
        impl->update(dir->ctx, NULL, &n, EDDY__TLS13_HEADER, rec, EDDY__TLS13_HEADER) != 1 ||
        impl->update(dir->ctx, out, &n, clen, rec + EDDY__TLS13_HEADER, clen) != 1 || n != clen ||
        impl->set_ctx_params(dir->ctx, params) != 1 ||
        impl->final(dir->ctx, out + n, &tail, 0) != 1)
        return -EDDY__TLS13_BAD_RECORD_MAC;
    dir->seq++;
    /* The inner type is the last non-zero byte; zeros after it are padding. */
    size_t end = clen;
    while (end > 0 && out[end - 1] == 0)
        end--;
    if (end == 0)
        return -EDDY__TLS13_UNEXPECTED_MESSAGE;
    *type = out[end - 1];
    if (end - 1 > EDDY__TLS13_PLAIN_MAX)
        return -EDDY__TLS13_RECORD_OVERFLOW;
    return (long)(end - 1);
}

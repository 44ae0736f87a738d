/* SPDX-License-Identifier: MIT */
/* Unit tests for src/handshake.c: base64 and Sec-WebSocket-Accept. */
#include <pthread.h>

#include <openssl/evp.h>

#include "codec.h"
#include "test.h"

struct b64_vector {
    const char *plain;
    const char *encoded;
};

/* RFC 4648 section 10. */
static const struct b64_vector rfc4648[] = {
    {"", ""},
    {"f", "Zg=="},
    {"fo", "Zm8="},
    {"foo", "Zm9v"},
    {"foob", "Zm9vYg=="},
    {"fooba", "Zm9vYmE="},
    {"foobar", "Zm9vYmFy"},
};

static void test_base64_rfc4648_vectors(void)
{
    for (size_t i = 0; i < sizeof(rfc4648) / sizeof(rfc4648[0]); i++) {
        const struct b64_vector *v = &rfc4648[i];
        char enc[16];
        uint8_t dec[16];
        size_t plain_len = strlen(v->plain), enc_len = strlen(v->encoded);

        CHECK_EQ_INT(eddy__base64_encode(enc, (const uint8_t *)v->plain, plain_len), enc_len);
        CHECK_STR(enc, v->encoded);
        CHECK_EQ_INT(eddy__base64_decode(dec, sizeof(dec), v->encoded, enc_len), plain_len);
        CHECK_MEM(dec, plain_len, v->plain, plain_len);
        /* An exactly sized output buffer is enough; one byte less is not. */
        CHECK_EQ_INT(eddy__base64_decode(dec, plain_len, v->encoded, enc_len), plain_len);
        if (plain_len > 0)
            CHECK_EQ_INT(eddy__base64_decode(dec, plain_len - 1, v->encoded, enc_len), -1);
    }
}

static void test_base64_decode_rejects(void)
{
    static const char *const bad[] = {
        "Zg=",      /* length not a multiple of 4 */
        "Zg",       /* padding missing */
        "Z",        /* */
        "Zg=a",     /* data after padding */
        "=Zg=",     /* padding first */
        "Z===",     /* too much padding */
        "====",     /* */
        "Zm9v====", /* a whole group of padding */
        "Zg==Zg==", /* padding in the middle */
        "Zh==",     /* non-zero bits in the unused part of a padded group */
        "Zm9=",     /* */
        "Zm9v\n",   /* whitespace */
        "Zm 9v",    /* */
        "Zm9-",     /* base64url alphabet */
        "Zm9_",     /* */
        "Zm9v!AAA", /* */
    };
    uint8_t dec[16];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ssize_t rc = eddy__base64_decode(dec, sizeof(dec), bad[i], strlen(bad[i]));
        if (rc != -1)
            fprintf(stderr, "base64 accepted \"%s\"\n", bad[i]);
        CHECK_EQ_INT(rc, -1);
    }
    /* A NUL byte is not a base64 digit either. */
    CHECK_EQ_INT(eddy__base64_decode(dec, sizeof(dec), "Zm\0v", 4), -1);
}

/* Random data against OpenSSL's encoder, and back through our decoder. */
static void test_base64_random_roundtrip(void)
{
    int wrong = 0;
    for (int trial = 0; trial < 2000; trial++) {
        uint8_t plain[100], dec[100];
        char enc[4 * ((sizeof(plain) + 2) / 3) + 1];
        unsigned char ref[sizeof(enc)];
        size_t len = (size_t)(test_rand() % (sizeof(plain) + 1));
        for (size_t i = 0; i < len; i++)
            plain[i] = (uint8_t)test_rand();

        size_t enc_len = eddy__base64_encode(enc, plain, len);
        int ref_len = EVP_EncodeBlock(ref, plain, (int)len);
        wrong += enc_len != (size_t)ref_len || memcmp(enc, ref, enc_len + 1) != 0;
        wrong += enc_len != 4 * ((len + 2) / 3) || enc[enc_len] != '\0';
        ssize_t dec_len = eddy__base64_decode(dec, sizeof(dec), enc, enc_len);
        wrong += dec_len != (ssize_t)len || memcmp(dec, plain, len) != 0;
    }
    CHECK_EQ_INT(wrong, 0);
}

static void test_accept_key_rfc6455(void)
{
    char out[EDDY_WS_ACCEPT_LEN + 1];
    const char *key = "dGhlIHNhbXBsZSBub25jZQ==";

    memset(out, 'x', sizeof(out));
    CHECK_EQ_INT(eddy_ws_accept_key(key, strlen(key), out), 0);
    CHECK_STR(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    CHECK_EQ_INT(strlen(out), EDDY_WS_ACCEPT_LEN);

    key = "x3JJHMbDL1EzLkh9GBhXDw==";
    CHECK_EQ_INT(eddy_ws_accept_key(key, strlen(key), out), 0);
    CHECK_STR(out, "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");

    /* key_len bounds the key: bytes after it are not part of it. */
    const char *padded = "dGhlIHNhbXBsZSBub25jZQ==garbage";
    CHECK_EQ_INT(eddy_ws_accept_key(padded, 24, out), 0);
    CHECK_STR(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

static void test_accept_key_rejects(void)
{
    static const char *const bad[] = {
        "",                             /* empty */
        "dGhlIHNhbXBsZSBub25jZQ=",      /* 23 characters */
        "dGhlIHNhbXBsZSBub25jZQ",       /* unpadded */
        "AAECAwQFBgcICQoLDA0O",         /* 15 bytes */
        "AAECAwQFBgcICQoLDA0ODxA=",     /* 17 bytes, 24 characters */
        "AAECAwQFBgcICQoLDA0ODxAR",     /* 18 bytes, 24 characters */
        "AAECAwQFBgcICQoLDA0ODxAREhM=", /* 20 bytes */
        "dGhlIHNhbXBsZSBub25jZQ!=",     /* not base64 */
        "dGhlIHNhbXBsZSBub25jZR==",     /* non-canonical padding bits */
        "dGhlIHNhbXBsZSBub25jZQ== ",    /* untrimmed whitespace */
        " dGhlIHNhbXBsZSBub25jZQ==",    /* */
        "dGhlIHNhbXBs ZSBub25jZQ==",    /* */
        "dGhlIHNhbXBsZSBub25jZQ-_",     /* base64url */
    };
    char out[EDDY_WS_ACCEPT_LEN + 1];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = eddy_ws_accept_key(bad[i], strlen(bad[i]), out);
        if (rc != EDDY_EINVAL)
            fprintf(stderr, "accept key accepted \"%s\"\n", bad[i]);
        CHECK_EQ_INT(rc, EDDY_EINVAL);
    }
    CHECK_EQ_INT(eddy_ws_accept_key(NULL, 24, out), EDDY_EINVAL);
}

/* Any 16-byte nonce works, and gives what SHA-1 + base64 computed here gives. */
static void test_accept_key_random_nonces(void)
{
    int wrong = 0;
    for (int trial = 0; trial < 200; trial++) {
        uint8_t nonce[16], digest[EVP_MAX_MD_SIZE];
        char key[25], joined[128], out[EDDY_WS_ACCEPT_LEN + 1];
        unsigned char expect[64];
        unsigned digest_len = 0;
        for (size_t i = 0; i < sizeof(nonce); i++)
            nonce[i] = (uint8_t)test_rand();
        EVP_EncodeBlock((unsigned char *)key, nonce, sizeof(nonce));
        int n = snprintf(joined, sizeof(joined), "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
        EVP_Digest(joined, (size_t)n, digest, &digest_len, EVP_sha1(), NULL);
        EVP_EncodeBlock(expect, digest, (int)digest_len);

        wrong += eddy_ws_accept_key(key, 24, out) != 0;
        wrong += strcmp(out, (const char *)expect) != 0;
    }
    CHECK_EQ_INT(wrong, 0);
}

#define THREAD_KEYS 64

struct key_case {
    char key[25];
    char expect[EDDY_WS_ACCEPT_LEN + 1];
};

static struct key_case thread_cases[THREAD_KEYS];

static void *accept_keys_repeatedly(void *arg)
{
    size_t wrong = 0;
    for (int round = 0; round < 50; round++) {
        for (size_t i = 0; i < THREAD_KEYS; i++) {
            char out[EDDY_WS_ACCEPT_LEN + 1];
            wrong += eddy_ws_accept_key(thread_cases[i].key, 24, out) != 0;
            wrong += strcmp(out, thread_cases[i].expect) != 0;
        }
    }
    *(size_t *)arg = wrong;
    return NULL;
}

/* Each thread hashes with a digest context of its own, made on first use and freed when
 * the thread ends (AddressSanitizer's leak check sees one that is not): threads hashing
 * at once all get the right answers. */
static void test_accept_key_threads(void)
{
    for (size_t i = 0; i < THREAD_KEYS; i++) {
        uint8_t nonce[16];
        for (size_t j = 0; j < sizeof(nonce); j++)
            nonce[j] = (uint8_t)test_rand();
        EVP_EncodeBlock((unsigned char *)thread_cases[i].key, nonce, sizeof(nonce));
        char joined[128];
        uint8_t digest[EVP_MAX_MD_SIZE];
        unsigned digest_len = 0;
        int n = snprintf(joined, sizeof(joined), "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11",
                         thread_cases[i].key);
        EVP_Digest(joined, (size_t)n, digest, &digest_len, EVP_sha1(), NULL);
        EVP_EncodeBlock((unsigned char *)thread_cases[i].expect, digest, (int)digest_len);
    }
    pthread_t threads[4];
    size_t wrong[4];
    for (int t = 0; t < 4; t++)
        CHECK_EQ_INT(pthread_create(&threads[t], NULL, accept_keys_repeatedly, &wrong[t]), 0);
    for (int t = 0; t < 4; t++) {
        CHECK_EQ_INT(pthread_join(threads[t], NULL), 0);
        CHECK_EQ_INT((int)wrong[t], 0);
    }
}

int main(void)
{
    test_base64_rfc4648_vectors();
    test_base64_decode_rejects();
    test_base64_random_roundtrip();
    test_accept_key_rfc6455();
    test_accept_key_rejects();
    test_accept_key_random_nonces();
    test_accept_key_threads();
    return test_report("test_handshake");
}

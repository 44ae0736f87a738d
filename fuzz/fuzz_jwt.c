/* SPDX-License-Identifier: MIT */
/*
 * The daemon's HS256 JWT verifier (cmd/auth.c: auth_check_at()).
 *
 * Input: a control byte, then the rest. Control bit 0 clear: the rest is the token as
 * sent. Bit 0 set: the rest is the header JSON, a NUL byte, and the claims JSON, which the
 * driver encodes and signs (with the previous key if bit 1 is set), so that the claim
 * checks are reached. Bit 2: the optional mode (no token accepted); bit 3: an audience
 * is configured; bit 4: an issuer; bits 5-7: the leeway in seconds.
 *
 * Checks: the status is 0, 401 or 403 with a reason; a refusal leaves no user, no data
 * and no authentication; an accepted token's signature is exactly the base64url of the
 * HMAC-SHA256 of its first two parts under one of the two keys (so nothing unsigned, and
 * no second encoding of a signature, gets in) and its header held "HS256"; the user id
 * fits; the same input gives the same answer twice.
 */
#include <string.h>

#include "auth.h"
#include "fuzz.h"
#include "jwt_sign.h"

#define KEY          "fuzz-key-0123456789abcdef0123456"
#define PREVIOUS_KEY "fuzz-previous-key-0123456789abcd"
#define NOW          1700000000.0

static char token[AUTH_TOKEN_MAX * 2 + 64];

/* The base64url HMAC of token's signed part (up to its last '.') under key. */
static bool signature_matches(const char *tok, const char *key)
{
    const char *dot = strrchr(tok, '.');
    FUZZ_CHECK(dot != NULL);
    char expected[64];
    jwt_hs256_b64url(key, tok, (size_t)(dot - tok), expected);
    return strcmp(dot + 1, expected) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > AUTH_TOKEN_MAX + 256)
        return 0;
    uint8_t control = data[0];
    const uint8_t *rest = data + 1;
    size_t len = size - 1;

    auth_config_t cfg;
    char why[160];
    auth_config_init(&cfg);
    FUZZ_CHECK(auth_config_set(&cfg, "enabled", "true", why, sizeof(why)) == 0);
    FUZZ_CHECK(auth_config_set(&cfg, "key", KEY, why, sizeof(why)) == 0);
    FUZZ_CHECK(auth_config_set(&cfg, "previous_key", PREVIOUS_KEY, why, sizeof(why)) == 0);
    cfg.required = !(control & 4);
    if (control & 8)
        strcpy(cfg.audience, "chat");
    if (control & 16)
        strcpy(cfg.issuer, "app");
    cfg.leeway = control >> 5;

    const char *header_json = NULL;
    if (control & 1) {
        const uint8_t *nul = memchr(rest, 0, len);
        if (nul == NULL)
            return 0;
        header_json = (const char *)rest;
        jwt_sign(token, rest, (size_t)(nul - rest), nul + 1, len - (size_t)(nul + 1 - rest),
                 control & 2 ? PREVIOUS_KEY : KEY);
    } else {
        memcpy(token, rest, len);
        token[len] = '\0';
    }

    auth_result_t res, again;
    int status = auth_check_at(&cfg, token, NOW, &res);
    FUZZ_CHECK(status == res.status);
    FUZZ_CHECK(status == 0 || status == 401 || status == 403);
    FUZZ_CHECK(res.reason != NULL);
    FUZZ_CHECK(strlen(res.user) <= AUTH_NAME_MAX);
    if (status != 0) {
        FUZZ_CHECK(!res.authenticated && res.user[0] == '\0' && res.data == NULL &&
                   res.rooms == NULL);
    } else if (token[0] == '\0') {
        FUZZ_CHECK(!cfg.required && !res.authenticated);
    } else {
        FUZZ_CHECK(res.authenticated);
        FUZZ_CHECK(strlen(token) <= AUTH_TOKEN_MAX);
        FUZZ_CHECK(signature_matches(token, KEY) || signature_matches(token, PREVIOUS_KEY));
        if (header_json != NULL)
            FUZZ_CHECK(strstr(header_json, "HS256") != NULL);
    }
    FUZZ_CHECK(auth_check_at(&cfg, token, NOW, &again) == status);
    FUZZ_CHECK(strcmp(again.user, res.user) == 0 && strcmp(again.reason, res.reason) == 0);
    FUZZ_CHECK((again.data == NULL) == (res.data == NULL));
    FUZZ_CHECK(res.data == NULL || strcmp(again.data, res.data) == 0);
    auth_result_free(&again);
    auth_result_free(&res);
    auth_config_clear(&cfg);
    return 0;
}

/* SPDX-License-Identifier: MIT */
/*
 * The daemon's HS256 JWT verifier (cmd/auth.c) and its [auth] settings. Tokens are
 * signed here with OpenSSL's HMAC over header and claims written as text, so each test
 * names exactly the bytes it sends; RFC 7515 A.1's example token checks the whole path
 * against a token nobody here produced.
 */
#include "auth.h"
#include "jwt_sign.h"
#include "test.h"

#define KEY     "0123456789abcdef0123456789abcdef"
#define OLD_KEY "fedcba9876543210fedcba9876543210"
#define NOW     1700000000.0

/* header.claims.signature, signed with key; the result lives until the next call. */
static const char *sign(const char *header, const char *claims, const char *key)
{
    static char token[AUTH_TOKEN_MAX * 2];
    jwt_sign(token, header, strlen(header), claims, strlen(claims), key);
    return token;
}

#define HS256 "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

static auth_config_t config(void)
{
    auth_config_t cfg;
    char why[160];
    auth_config_init(&cfg);
    CHECK_EQ_INT(auth_config_set(&cfg, "enabled", "true", why, sizeof(why)), 0);
    CHECK_EQ_INT(auth_config_set(&cfg, "key", KEY, why, sizeof(why)), 0);
    return cfg;
}

/* Checks token at NOW; returns the status and leaves the reason in *reason. */
static int check(const auth_config_t *cfg, const char *token, const char **reason)
{
    auth_result_t res;
    int status = auth_check_at(cfg, token, NOW, &res);
    CHECK_EQ_INT(res.status, status);
    *reason = res.reason;
    if (status != 0)
        CHECK(res.user[0] == '\0' && res.data == NULL && res.rooms == NULL && !res.authenticated);
    auth_result_free(&res);
    return status;
}

#define CHECK_REFUSED(cfg, token, status, why)                                                     \
    do {                                                                                           \
        const char *reason_;                                                                       \
        CHECK_EQ_INT(check(cfg, token, &reason_), status);                                         \
        CHECK_STR(reason_, why);                                                                   \
    } while (0)

static void test_valid_token_and_claims(void)
{
    auth_config_t cfg = config();
    auth_result_t res;
    const char *token = sign(HS256,
                             "{\"sub\":\"alice\",\"exp\":1700000060,\"iat\":1699999990,"
                             "\"info\":{\"name\":\"Alice\",\"roles\":[\"a\",1]}}",
                             KEY);
    CHECK_EQ_INT(auth_check_at(&cfg, token, NOW, &res), 0);
    CHECK(res.authenticated);
    CHECK_STR(res.user, "alice");
    CHECK(res.data != NULL && strcmp(res.data, "{\"name\":\"Alice\",\"roles\":[\"a\",1]}") == 0);
    CHECK(res.expires == 1700000060.0);
    auth_result_free(&res);
    /* data instead of info, any JSON value; no typ; sub may be "" (anonymous user). */
    token = sign("{\"alg\":\"HS256\"}", "{\"sub\":\"\",\"data\":\"x\"}", KEY);
    CHECK_EQ_INT(auth_check_at(&cfg, token, NOW, &res), 0);
    CHECK_STR(res.user, "");
    CHECK(res.data != NULL && strcmp(res.data, "\"x\"") == 0);
    CHECK(res.expires == 0);
    auth_result_free(&res);
    token = sign(HS256, "{\"sub\":\"u\",\"info\":1,\"data\":2}", KEY);
    CHECK_REFUSED(&cfg, token, 401, "both info and data");
    /* rooms: an array of room names, given back as compact JSON. */
    token = sign(HS256, "{\"sub\":\"u\",\"rooms\": [\"chat:1\", \"team\"]}", KEY);
    CHECK_EQ_INT(auth_check_at(&cfg, token, NOW, &res), 0);
    CHECK(res.rooms != NULL && strcmp(res.rooms, "[\"chat:1\",\"team\"]") == 0);
    auth_result_free(&res);
    CHECK(res.rooms == NULL);
    static const char *const bad_rooms[] = {"\"r\"", "[1]", "[\"\"]", "{}", "[\"a\",null]"};
    for (size_t i = 0; i < sizeof(bad_rooms) / sizeof(bad_rooms[0]); i++) {
        char claims[128];
        snprintf(claims, sizeof(claims), "{\"sub\":\"u\",\"rooms\":%s}", bad_rooms[i]);
        CHECK_REFUSED(&cfg, sign(HS256, claims, KEY), 401,
                      "rooms is not an array of at most 64 room names");
    }
    char many[64 * 6 + 64] = "{\"sub\":\"u\",\"rooms\":[\"r\"";
    for (int i = 0; i < 64; i++)
        strcat(many, ",\"r\"");
    strcat(many, "]}");
    CHECK_REFUSED(&cfg, sign(HS256, many, KEY), 401,
                  "rooms is not an array of at most 64 room names");
    /* Hangs on the real clock too (auth_check()). */
    token = sign(HS256, "{\"sub\":\"bob\"}", KEY);
    CHECK_EQ_INT(auth_check(&cfg, token, &res), 0);
    CHECK_STR(res.user, "bob");
    auth_result_free(&res);
}

static void test_rfc7515_example(void)
{
    /* RFC 7515 A.1: an HS256 JWS with the key given as a JWK; it has no sub, so it passes
     * the signature and fails on the claims (the reason proves which). */
    static const unsigned char key[64] =
        "\x03\x23\x35\x4b\x2b\x0f\xa5\xbc\x83\x7e\x06\x65\x77\x7b\xa6\x8f\x5a\xb3\x28\xe6\xf0"
        "\x54\xc9\x28\xa9\x0f\x84\xb2\xd2\x50\x2e\xbf\xd3\xfb\x5a\x92\xd2\x06\x47\xef\x96\x8a"
        "\xb4\xc3\x77\x62\x3d\x22\x3d\x2e\x21\x72\x05\x2e\x4f\x08\xc0\xcd\x9a\xf5\x67\xd0\x80"
        "\xa3";
    static const char token[] =
        "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzOD"
        "AsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW"
        "1gFWFOEjXk";
    auth_config_t cfg = config();
    memcpy(cfg.key, key, sizeof(key));
    cfg.key_len = sizeof(key);
    const char *reason;
    auth_result_t res;
    CHECK_EQ_INT(auth_check_at(&cfg, token, 1300819000, &res), 401);
    CHECK_STR(res.reason, "no sub");
    auth_result_free(&res);
    CHECK_EQ_INT(auth_check_at(&cfg, token, 1300819381, &res), 401);
    CHECK_STR(res.reason, "expired");
    auth_result_free(&res);
    cfg.key[0] ^= 1;
    CHECK_EQ_INT(check(&cfg, token, &reason), 401);
    CHECK_STR(reason, "bad signature");
}

static void test_signature_and_keys(void)
{
    auth_config_t cfg = config();
    char why[160];
    const char *claims = "{\"sub\":\"u\"}";
    CHECK_REFUSED(&cfg, sign(HS256, claims, "another key, 32 bytes long......"), 401,
                  "bad signature");
    /* One flipped signature character, and one flipped claims character. */
    char token[1024];
    snprintf(token, sizeof(token), "%s", sign(HS256, claims, KEY));
    token[strlen(token) - 2] = token[strlen(token) - 2] == 'A' ? 'B' : 'A';
    CHECK_REFUSED(&cfg, token, 401, "bad signature");
    snprintf(token, sizeof(token), "%s", sign(HS256, claims, KEY));
    char *dot = strchr(token, '.');
    dot[2] = dot[2] == 'A' ? 'B' : 'A';
    CHECK_REFUSED(&cfg, token, 401, "bad signature");
    /* Rotation: the previous key is accepted beside the current one, and only while set. */
    const char *old = sign(HS256, claims, OLD_KEY);
    snprintf(token, sizeof(token), "%s", old);
    CHECK_REFUSED(&cfg, token, 401, "bad signature");
    CHECK_EQ_INT(auth_config_set(&cfg, "previous_key", OLD_KEY, why, sizeof(why)), 0);
    CHECK_REFUSED(&cfg, token, 0, "ok");
    CHECK_REFUSED(&cfg, sign(HS256, claims, KEY), 0, "ok");
    CHECK_EQ_INT(auth_config_set(&cfg, "previous_key", "", why, sizeof(why)), 0);
    CHECK_REFUSED(&cfg, token, 401, "bad signature");
    /* A key that is a prefix of the real one does not verify (HMAC takes the length). */
    cfg.key_len = 31;
    CHECK_REFUSED(&cfg, sign(HS256, claims, KEY), 401, "bad signature");
}

static void test_header(void)
{
    auth_config_t cfg = config();
    const char *claims = "{\"sub\":\"u\"}";
    CHECK_REFUSED(&cfg, sign("{\"alg\":\"none\"}", claims, KEY), 401, "alg none refused");
    /* The unsigned form "alg none" really takes: an empty signature. */
    char token[1024];
    snprintf(token, sizeof(token), "%s", sign("{\"alg\":\"none\",\"typ\":\"JWT\"}", claims, KEY));
    strrchr(token, '.')[1] = '\0';
    CHECK_REFUSED(&cfg, token, 401, "alg none refused");
    CHECK_REFUSED(&cfg, sign("{\"alg\":\"HS512\"}", claims, KEY), 401, "alg is not HS256");
    CHECK_REFUSED(&cfg, sign("{\"alg\":\"hs256\"}", claims, KEY), 401, "alg is not HS256");
    CHECK_REFUSED(&cfg, sign("{\"alg\":\"RS256\"}", claims, KEY), 401, "alg is not HS256");
    CHECK_REFUSED(&cfg, sign("{\"typ\":\"JWT\"}", claims, KEY), 401, "alg is not HS256");
    CHECK_REFUSED(&cfg, sign("{\"alg\":256}", claims, KEY), 401, "alg is not HS256");
    CHECK_REFUSED(&cfg, sign("{\"alg\":\"HS256\",\"typ\":\"JWS\"}", claims, KEY), 401,
                  "typ is not JWT");
    CHECK_REFUSED(&cfg, sign("{\"alg\":\"HS256\",\"typ\":\"jwt\"}", claims, KEY), 0, "ok");
    CHECK_REFUSED(&cfg, sign("{\"alg\":\"HS256\",\"crit\":[\"exp\"],\"exp\":1}", claims, KEY), 401,
                  "crit header not supported");
    /* Duplicate keys: the later "alg" must not win over the checked one. */
    CHECK_REFUSED(&cfg, sign("{\"alg\":\"HS256\",\"alg\":\"none\"}", claims, KEY), 401,
                  "header is not a JSON object");
    CHECK_REFUSED(&cfg, sign("[\"HS256\"]", claims, KEY), 401, "header is not a JSON object");
    CHECK_REFUSED(&cfg, sign("{\"alg\":\"HS256\"", claims, KEY), 401,
                  "header is not a JSON object");
}

static void test_malformed(void)
{
    auth_config_t cfg = config();
    char token[AUTH_TOKEN_MAX + 64];
    const char *good = sign(HS256, "{\"sub\":\"u\"}", KEY);
    size_t len = strlen(good);
    /* Every truncation of a good token is refused, never accepted. */
    for (size_t cut = 0; cut < len; cut++) {
        memcpy(token, good, cut);
        token[cut] = '\0';
        const char *reason;
        CHECK(check(&cfg, token, &reason) == 401);
    }
    CHECK_REFUSED(&cfg, "", 401, "no token");
    CHECK_REFUSED(&cfg, NULL, 401, "no token");
    CHECK_REFUSED(&cfg, "abc", 401, "not three base64url parts");
    CHECK_REFUSED(&cfg, "a.b.c.d", 401, "not three base64url parts");
    CHECK_REFUSED(&cfg, ".b.c", 401, "not three base64url parts");
    CHECK_REFUSED(&cfg, "a..c", 401, "not three base64url parts");
    /* Padding, the standard alphabet, spaces: not base64url. */
    snprintf(token, sizeof(token), "%s", good);
    token[0] = '+';
    CHECK_REFUSED(&cfg, token, 401, "header is not base64url");
    snprintf(token, sizeof(token), "%s=", good);
    CHECK_REFUSED(&cfg, token, 401, "signature is not 32 bytes of base64url");
    snprintf(token, sizeof(token), "%s", good);
    token[strlen(token) - 1] = '/';
    CHECK_REFUSED(&cfg, token, 401, "signature is not 32 bytes of base64url");
    /* A non-canonical last character (leftover bits set) in the signature: 43 characters
     * carry 258 bits, the last 2 must be zero. */
    snprintf(token, sizeof(token), "%s", good);
    char *last = &token[strlen(token) - 1];
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    *last = alphabet[(strchr(alphabet, *last) - alphabet) | 1];
    CHECK_REFUSED(&cfg, token, 401, "signature is not 32 bytes of base64url");
    /* A header of 4n+1 characters. */
    snprintf(token, sizeof(token), "eyJhb%s", strchr(good, '.'));
    CHECK_REFUSED(&cfg, token, 401, "header is not base64url");
    /* Claims that are not JSON, or not an object, signed correctly. */
    CHECK_REFUSED(&cfg, sign(HS256, "{\"sub\":\"u\"", KEY), 401, "claims are not JSON");
    CHECK_REFUSED(&cfg, sign(HS256, "{\"sub\":\"u\",\"sub\":\"root\"}", KEY), 401,
                  "claims are not JSON");
    CHECK_REFUSED(&cfg, sign(HS256, "{\"sub\":\"a\\u0000b\"}", KEY), 401, "claims are not JSON");
    CHECK_REFUSED(&cfg, sign(HS256, "[1]", KEY), 401, "claims are not a JSON object");
    CHECK_REFUSED(&cfg, sign(HS256, "\"x\"", KEY), 401, "claims are not JSON");
    CHECK_REFUSED(&cfg, sign(HS256, "{}", KEY), 401, "no sub");
    CHECK_REFUSED(&cfg, sign(HS256, "{\"sub\":42}", KEY), 401,
                  "sub is not a string of at most 255 bytes");
    char claims[600];
    snprintf(claims, sizeof(claims), "{\"sub\":\"%0256d\"}", 0);
    CHECK_REFUSED(&cfg, sign(HS256, claims, KEY), 401, "sub is not a string of at most 255 bytes");
    snprintf(claims, sizeof(claims), "{\"sub\":\"%0255d\"}", 0);
    CHECK_REFUSED(&cfg, sign(HS256, claims, KEY), 0, "ok");
}

static void test_oversize(void)
{
    auth_config_t cfg = config();
    /* The largest token accepted, then one byte more (a longer sub would be refused on
     * its own, so the size comes from an info claim). */
    static char claims[AUTH_TOKEN_MAX];
    size_t overhead = strlen(sign(HS256, "{\"sub\":\"u\",\"info\":\"\"}", KEY));
    size_t pad = (AUTH_TOKEN_MAX - overhead) * 3 / 4;
    const char *token = NULL;
    for (; pad > 0; pad--) { /* base64 rounds: find the longest fill that fits */
        snprintf(claims, sizeof(claims), "{\"sub\":\"u\",\"info\":\"%0*d\"}", (int)pad, 0);
        token = sign(HS256, claims, KEY);
        if (strlen(token) <= AUTH_TOKEN_MAX)
            break;
    }
    CHECK(strlen(token) > AUTH_TOKEN_MAX - 4);
    CHECK_REFUSED(&cfg, token, 0, "ok");
    snprintf(claims, sizeof(claims), "{\"sub\":\"u\",\"info\":\"%0*d\"}", (int)pad + 3, 0);
    token = sign(HS256, claims, KEY);
    CHECK(strlen(token) > AUTH_TOKEN_MAX);
    CHECK_REFUSED(&cfg, token, 401, "token too long");
    /* Far beyond: refused without reading it all (strnlen). */
    static char huge[1 << 20];
    memset(huge, 'A', sizeof(huge) - 1);
    CHECK_REFUSED(&cfg, huge, 401, "token too long");
}

static void test_times_with_leeway(void)
{
    auth_config_t cfg = config();
    char claims[256];
    const struct {
        const char *claim;
        double offset; /* claim = NOW + offset */
        double leeway;
        int status;
        const char *reason;
    } cases[] = {
        {"exp", 1, 0, 0, "ok"},
        {"exp", 0, 0, 401, "expired"}, /* exp is the first instant it is invalid */
        {"exp", -1, 0, 401, "expired"},
        {"exp", -9, 10, 0, "ok"},
        {"exp", -10, 10, 401, "expired"},
        {"exp", 0.5, 0, 0, "ok"}, /* NumericDate may have fractions */
        {"nbf", 0, 0, 0, "ok"},
        {"nbf", 1, 0, 401, "not valid yet (nbf)"},
        {"nbf", 10, 10, 0, "ok"},
        {"nbf", 11, 10, 401, "not valid yet (nbf)"},
        {"iat", -100, 0, 0, "ok"},
        {"iat", 1, 0, 401, "issued in the future (iat)"},
        {"iat", 5, 5, 0, "ok"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cfg.leeway = cases[i].leeway;
        snprintf(claims, sizeof(claims), "{\"sub\":\"u\",\"%s\":%.1f}", cases[i].claim,
                 NOW + cases[i].offset);
        const char *reason;
        int status = check(&cfg, sign(HS256, claims, KEY), &reason);
        if (status != cases[i].status || strcmp(reason, cases[i].reason) != 0)
            fprintf(stderr, "case %zu: %s %+g leeway %g: %d %s\n", i, cases[i].claim,
                    cases[i].offset, cases[i].leeway, status, reason);
        CHECK_EQ_INT(status, cases[i].status);
        CHECK_STR(reason, cases[i].reason);
    }
    cfg.leeway = 0;
    CHECK_REFUSED(&cfg, sign(HS256, "{\"sub\":\"u\",\"exp\":\"1800000000\"}", KEY), 401,
                  "exp, nbf or iat is not a number");
    CHECK_REFUSED(&cfg, sign(HS256, "{\"sub\":\"u\",\"nbf\":null}", KEY), 401,
                  "exp, nbf or iat is not a number");
    CHECK_REFUSED(&cfg, sign(HS256, "{\"sub\":\"u\",\"exp\":1e400}", KEY), 401,
                  "claims are not JSON");
}

static void test_audience_and_issuer(void)
{
    auth_config_t cfg = config();
    char why[160];
    /* No audience configured: a token naming one is not for us (RFC 7519 4.1.3). */
    CHECK_REFUSED(&cfg, sign(HS256, "{\"sub\":\"u\",\"aud\":\"chat\"}", KEY), 403,
                  "token has an audience, none is configured");
    CHECK_EQ_INT(auth_config_set(&cfg, "audience", "chat", why, sizeof(why)), 0);
    CHECK_REFUSED(&cfg, sign(HS256, "{\"sub\":\"u\",\"aud\":\"chat\"}", KEY), 0, "ok");
    CHECK_REFUSED(&cfg, sign(HS256, "{\"sub\":\"u\",\"aud\":[\"x\",\"chat\"]}", KEY), 0, "ok");
    CHECK_REFUSED(&cfg, sign(HS256, "{\"sub\":\"u\",\"aud\":\"chat2\"}", KEY), 403,
                  "audience not accepted");
    CHECK_REFUSED(&cfg, sign(HS256, "{\"sub\":\"u\",\"aud\":[]}", KEY), 403,
                  "audience not accepted");
    CHECK_REFUSED(&cfg, sign(HS256, "{\"sub\":\"u\"}", KEY), 403, "no audience in the token");
    CHECK_REFUSED(&cfg, sign(HS256, "{\"sub\":\"u\",\"aud\":[\"chat\",1]}", KEY), 401,
                  "aud is not a string or an array of strings");
    /* Issuer: checked only when configured. */
    CHECK_REFUSED(&cfg, sign(HS256, "{\"sub\":\"u\",\"aud\":\"chat\",\"iss\":\"a\"}", KEY), 0,
                  "ok");
    CHECK_EQ_INT(auth_config_set(&cfg, "issuer", "https://app", why, sizeof(why)), 0);
    CHECK_REFUSED(&cfg, sign(HS256, "{\"sub\":\"u\",\"aud\":\"chat\",\"iss\":\"a\"}", KEY), 403,
                  "issuer not accepted");
    CHECK_REFUSED(&cfg, sign(HS256, "{\"sub\":\"u\",\"aud\":\"chat\"}", KEY), 403,
                  "issuer not accepted");
    CHECK_REFUSED(&cfg,
                  sign(HS256, "{\"sub\":\"u\",\"aud\":\"chat\",\"iss\":\"https://app\"}", KEY), 0,
                  "ok");
    CHECK_REFUSED(&cfg, sign(HS256, "{\"sub\":\"u\",\"aud\":\"chat\",\"iss\":7}", KEY), 401,
                  "iss is not a string");
    /* An expired token for another audience is refused as expired (401 before 403). */
    CHECK_REFUSED(&cfg, sign(HS256, "{\"sub\":\"u\",\"aud\":\"x\",\"exp\":1}", KEY), 401,
                  "expired");
}

static void test_disabled_and_optional(void)
{
    auth_config_t cfg;
    auth_config_init(&cfg);
    const char *reason;
    CHECK_EQ_INT(check(&cfg, NULL, &reason), 0);
    CHECK_EQ_INT(check(&cfg, "garbage", &reason), 0); /* off: tokens are not looked at */
    cfg = config();
    cfg.required = false;
    auth_result_t res;
    CHECK_EQ_INT(auth_check_at(&cfg, NULL, NOW, &res), 0);
    CHECK(!res.authenticated && res.user[0] == '\0');
    auth_result_free(&res);
    CHECK_REFUSED(&cfg, "garbage", 401, "not three base64url parts");
    CHECK_REFUSED(&cfg, sign(HS256, "{\"sub\":\"u\"}", OLD_KEY), 401, "bad signature");
}

static void test_settings(void)
{
    auth_config_t cfg;
    char why[160];
    auth_config_init(&cfg);
    CHECK(!cfg.enabled && cfg.required && cfg.key_len == 0 && cfg.leeway == 0);
    CHECK_STR(cfg.query_param, "token");
    CHECK_EQ_INT(auth_config_set(&cfg, "enabled", "yes", why, sizeof(why)), 0);
    CHECK(cfg.enabled);
    CHECK_EQ_INT(auth_config_set(&cfg, "required", "maybe", why, sizeof(why)), EDDY_EINVAL);
    CHECK_EQ_INT(auth_config_set(&cfg, "colour", "red", why, sizeof(why)), EDDY_EKEY);
    /* A short key is refused without being quoted. */
    CHECK_EQ_INT(auth_config_set(&cfg, "key", "s3cret-but-short", why, sizeof(why)), EDDY_EINVAL);
    CHECK(strstr(why, "s3cret") == NULL && strstr(why, "32") != NULL);
    char long_key[AUTH_KEY_MAX + 2];
    memset(long_key, 'k', sizeof(long_key) - 1);
    long_key[sizeof(long_key) - 1] = '\0';
    CHECK_EQ_INT(auth_config_set(&cfg, "key", long_key, why, sizeof(why)), EDDY_EINVAL);
    long_key[AUTH_KEY_MAX] = '\0';
    CHECK_EQ_INT(auth_config_set(&cfg, "key", long_key, why, sizeof(why)), 0);
    CHECK_EQ_INT(cfg.key_len, AUTH_KEY_MAX);
    CHECK_EQ_INT(auth_config_set(&cfg, "key", KEY, why, sizeof(why)), 0);
    CHECK_EQ_INT(cfg.key_len, 32);
    CHECK(cfg.key[32] == 0); /* the longer key's tail is gone */
    CHECK_EQ_INT(auth_config_set(&cfg, "leeway", "-1", why, sizeof(why)), EDDY_EINVAL);
    CHECK_EQ_INT(auth_config_set(&cfg, "leeway", "nan", why, sizeof(why)), EDDY_EINVAL);
    CHECK_EQ_INT(auth_config_set(&cfg, "leeway", "2.5", why, sizeof(why)), 0);
    CHECK(cfg.leeway == 2.5);
    CHECK_EQ_INT(auth_config_set(&cfg, "query_param", "", why, sizeof(why)), EDDY_EINVAL);
    CHECK_EQ_INT(auth_config_set(&cfg, "query_param", "a&b", why, sizeof(why)), EDDY_EINVAL);
    CHECK_EQ_INT(auth_config_set(&cfg, "query_param", "access_token", why, sizeof(why)), 0);
    CHECK_STR(cfg.query_param, "access_token");
    auth_config_clear(&cfg);
    CHECK(cfg.key_len == 0 && cfg.key[0] == 0 && !cfg.enabled);

    /* Together: enabled or previous_key without key. */
    cfg_entry_t entries[] = {{"auth", "enabled", "true", false}};
    cfg_t file = {.entries = entries, .entry_count = 1};
    char err[256];
    CHECK_EQ_INT(auth_config_from(&file, &cfg, err, sizeof(err)), -1);
    CHECK_STR(err, "[auth] enabled needs key (32 to 256 bytes)");
    cfg_entry_t rotated[] = {{"log", "key", "x", false},
                             {"auth", "previous_key", OLD_KEY, false},
                             {"auth", "enabled", "true", false},
                             {"auth", "key", KEY, false}};
    file.entries = rotated;
    file.entry_count = 1;
    CHECK_EQ_INT(auth_config_from(&file, &cfg, err, sizeof(err)), 0);
    CHECK(!cfg.enabled);
    file.entry_count = 2;
    CHECK_EQ_INT(auth_config_from(&file, &cfg, err, sizeof(err)), -1);
    CHECK_STR(err, "[auth] previous_key needs key (32 to 256 bytes)");
    file.entry_count = 4;
    CHECK_EQ_INT(auth_config_from(&file, &cfg, err, sizeof(err)), 0);
    CHECK(cfg.enabled && cfg.key_len == 32 && cfg.previous_key_len == 32);
    auth_config_clear(&cfg);
}

int main(void)
{
    test_valid_token_and_claims();
    test_rfc7515_example();
    test_signature_and_keys();
    test_header();
    test_malformed();
    test_oversize();
    test_times_with_leeway();
    test_audience_and_issuer();
    test_disabled_and_optional();
    test_settings();
    return test_report("test_auth");
}

/* SPDX-License-Identifier: MIT */
/*
 * The HS256 JWT verifier and the [auth] settings (auth.h). Strict on purpose: a token
 * is accepted only in the one form eddy signs for, so that no parser leniency (padding,
 * non-canonical base64, duplicate JSON keys, "alg":"none") can turn into a bypass. The
 * header is parsed before the signature check, to say which alg a client used; the
 * claims only after it.
 */
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "auth.h"

/* ---- settings ---- */

void auth_config_init(auth_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->required = true;
    strcpy(cfg->query_param, "token");
}

void auth_config_clear(auth_config_t *cfg)
{
    OPENSSL_cleanse(cfg->key, sizeof(cfg->key));
    OPENSSL_cleanse(cfg->previous_key, sizeof(cfg->previous_key));
    auth_config_init(cfg);
}

static bool parse_bool(const char *value, bool *out)
{
    if (strcmp(value, "true") == 0 || strcmp(value, "on") == 0 || strcmp(value, "yes") == 0 ||
        strcmp(value, "1") == 0)
        *out = true;
    else if (strcmp(value, "false") == 0 || strcmp(value, "off") == 0 || strcmp(value, "no") == 0 ||
             strcmp(value, "0") == 0)
        *out = false;
    else
        return false;
    return true;
}

int auth_config_set(auth_config_t *cfg, const char *key, const char *value, char *why,
                    size_t why_len)
{
    size_t len = strlen(value);
    if (strcmp(key, "enabled") == 0 || strcmp(key, "required") == 0) {
        if (!parse_bool(value, key[0] == 'e' ? &cfg->enabled : &cfg->required)) {
            snprintf(why, why_len, "\"%s\" is not true or false", value);
            return EDDY_EINVAL;
        }
    } else if (strcmp(key, "key") == 0 || strcmp(key, "previous_key") == 0) {
        bool previous = key[0] == 'p';
        /* The value is never quoted: the error goes to the terminal and the log. */
        if (len != 0 && (len < AUTH_KEY_MIN || len > AUTH_KEY_MAX)) {
            snprintf(why, why_len, "an HS256 key has %d to %d bytes (this one has %zu)",
                     AUTH_KEY_MIN, AUTH_KEY_MAX, len);
            return EDDY_EINVAL;
        }
        unsigned char *dst = previous ? cfg->previous_key : cfg->key;
        OPENSSL_cleanse(dst, AUTH_KEY_MAX);
        memcpy(dst, value, len);
        *(previous ? &cfg->previous_key_len : &cfg->key_len) = len;
    } else if (strcmp(key, "leeway") == 0) {
        char *end;
        errno = 0;
        double v = strtod(value, &end);
        if (errno != 0 || end == value || *end != '\0' || !(v >= 0 && v <= 3600)) {
            snprintf(why, why_len, "\"%s\" is not a number of seconds [0-3600]", value);
            return EDDY_EINVAL;
        }
        cfg->leeway = v;
    } else if (strcmp(key, "audience") == 0 || strcmp(key, "issuer") == 0) {
        if (len > AUTH_NAME_MAX) {
            snprintf(why, why_len, "longer than %d bytes", AUTH_NAME_MAX);
            return EDDY_EINVAL;
        }
        memcpy(key[0] == 'a' ? cfg->audience : cfg->issuer, value, len + 1);
    } else if (strcmp(key, "query_param") == 0) {
        /* A name that needs no percent-encoding, so it matches as written. */
        bool ok = len > 0 && len <= AUTH_PARAM_MAX;
        for (size_t i = 0; ok && i < len; i++)
            ok = isalnum((unsigned char)value[i]) || strchr("-._~", value[i]) != NULL;
        if (!ok) {
            snprintf(why, why_len, "\"%s\" is not a parameter name (1-%d of A-Z a-z 0-9 - . _ ~)",
                     value, AUTH_PARAM_MAX);
            return EDDY_EINVAL;
        }
        memcpy(cfg->query_param, value, len + 1);
    } else {
        return EDDY_EKEY;
    }
    return 0;
}

int auth_config_from(const cfg_t *cfg, auth_config_t *out, char *err, size_t err_len)
{
    auth_config_init(out);
    for (size_t i = 0; i < cfg->entry_count; i++) {
        const cfg_entry_t *e = &cfg->entries[i];
        if (strcmp(e->section, "auth") != 0)
            continue;
        char why[160];
        if (auth_config_set(out, e->key, e->value, why, sizeof(why)) != 0) {
            snprintf(err, err_len, "[auth] %s: %s", e->key, why);
            auth_config_clear(out);
            return -1;
        }
    }
    const char *missing = out->enabled && out->key_len == 0                 ? "enabled"
                          : out->previous_key_len != 0 && out->key_len == 0 ? "previous_key"
                                                                            : NULL;
    if (missing != NULL) {
        snprintf(err, err_len, "[auth] %s needs key (%d to %d bytes)", missing, AUTH_KEY_MIN,
                 AUTH_KEY_MAX);
        auth_config_clear(out);
        return -1;
    }
    return 0;
}

/* ---- the verifier ---- */

/*
 * Decodes base64url without padding (RFC 7515 2) into out, which holds len * 3 / 4
 * bytes. Refuses any other character ('=' included), a length that no byte count
 * encodes (len % 4 == 1) and leftover bits that are not zero (so that each value has
 * exactly one encoding). Returns the decoded length, or -1.
 */
static long b64url_decode(const char *in, size_t len, unsigned char *out)
{
    ssize_t n = eddy_base64_decode(out, len * 3 / 4, in, len, EDDY_BASE64_URL | EDDY_BASE64_NOPAD);
    return n < 0 ? -1 : (long)n;
}

static int refuse(auth_result_t *out, int status, const char *reason)
{
    free(out->data);
    out->data = NULL;
    free(out->rooms);
    out->rooms = NULL;
    out->user[0] = '\0';
    out->authenticated = false;
    out->status = status;
    out->reason = reason;
    return status;
}

/* A NumericDate claim (RFC 7519 2): absent (true, *present false) or a finite number. */
static bool numeric_claim(json_t *claims, const char *name, double *value, bool *present)
{
    json_t *v = json_object_get(claims, name);
    *present = v != NULL;
    if (v == NULL)
        return true;
    if (!json_is_number(v))
        return false;
    *value = json_number_value(v);
    return isfinite(*value);
}

static bool signed_by(const unsigned char *key, size_t key_len, const char *input, size_t input_len,
                      const unsigned char sig[32])
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    if (key_len == 0 ||
        HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)input, input_len, mac,
             &mac_len) == NULL ||
        mac_len != 32)
        return false;
    return CRYPTO_memcmp(mac, sig, 32) == 0;
}

static int check_header(const unsigned char *text, size_t len, auth_result_t *out)
{
    json_t *header = json_loadb((const char *)text, len, JSON_REJECT_DUPLICATES, NULL);
    int rc = 0;
    if (!json_is_object(header)) {
        rc = refuse(out, 401, "header is not a JSON object");
        goto done;
    }
    json_t *alg = json_object_get(header, "alg"), *typ = json_object_get(header, "typ");
    if (!json_is_string(alg) || strcmp(json_string_value(alg), "HS256") != 0) {
        rc = refuse(out, 401,
                    json_is_string(alg) && strcmp(json_string_value(alg), "none") == 0
                        ? "alg none refused"
                        : "alg is not HS256");
    } else if (typ != NULL &&
               (!json_is_string(typ) || strcasecmp(json_string_value(typ), "JWT") != 0)) {
        rc = refuse(out, 401, "typ is not JWT");
    } else if (json_object_get(header, "crit") != NULL) {
        /* RFC 7515 4.1.11: extensions we do not implement must make the token invalid. */
        rc = refuse(out, 401, "crit header not supported");
    }
done:
    json_decref(header);
    return rc;
}

/* aud: a string or an array of strings (RFC 7519 4.1.3). */
static int check_audience(const auth_config_t *cfg, json_t *aud, auth_result_t *out)
{
    if (aud == NULL)
        return cfg->audience[0] == '\0' ? 0 : refuse(out, 403, "no audience in the token");
    bool holds = false, well_formed = json_is_string(aud) || json_is_array(aud);
    if (json_is_string(aud)) {
        holds = strcmp(json_string_value(aud), cfg->audience) == 0;
    } else if (json_is_array(aud)) {
        size_t i;
        json_t *item;
        json_array_foreach(aud, i, item)
        {
            if (!json_is_string(item))
                well_formed = false;
            else if (strcmp(json_string_value(item), cfg->audience) == 0)
                holds = true;
        }
    }
    if (!well_formed)
        return refuse(out, 401, "aud is not a string or an array of strings");
    if (cfg->audience[0] == '\0')
        return refuse(out, 403, "token has an audience, none is configured");
    return holds ? 0 : refuse(out, 403, "audience not accepted");
}

static int check_claims(const auth_config_t *cfg, json_t *claims, double now, auth_result_t *out)
{
    if (!json_is_object(claims))
        return refuse(out, 401, "claims are not a JSON object");
    double exp = 0, nbf = 0, iat = 0;
    bool has_exp, has_nbf, has_iat;
    if (!numeric_claim(claims, "exp", &exp, &has_exp) ||
        !numeric_claim(claims, "nbf", &nbf, &has_nbf) ||
        !numeric_claim(claims, "iat", &iat, &has_iat))
        return refuse(out, 401, "exp, nbf or iat is not a number");
    if (has_exp && exp + cfg->leeway <= now)
        return refuse(out, 401, "expired");
    if (has_nbf && nbf > now + cfg->leeway)
        return refuse(out, 401, "not valid yet (nbf)");
    if (has_iat && iat > now + cfg->leeway)
        return refuse(out, 401, "issued in the future (iat)");
    json_t *sub = json_object_get(claims, "sub");
    if (sub == NULL)
        return refuse(out, 401, "no sub");
    if (!json_is_string(sub) || json_string_length(sub) > AUTH_NAME_MAX)
        return refuse(out, 401, "sub is not a string of at most 255 bytes");
    json_t *iss = json_object_get(claims, "iss");
    if (iss != NULL && !json_is_string(iss))
        return refuse(out, 401, "iss is not a string");
    json_t *info = json_object_get(claims, "info"), *data = json_object_get(claims, "data");
    if (info != NULL && data != NULL)
        return refuse(out, 401, "both info and data");
    json_t *rooms = json_object_get(claims, "rooms"), *room;
    size_t i;
    bool rooms_ok =
        rooms == NULL || (json_is_array(rooms) && json_array_size(rooms) <= AUTH_ROOMS_MAX);
    if (rooms_ok && rooms != NULL)
        json_array_foreach(rooms, i, room) rooms_ok = rooms_ok && json_is_string(room) &&
                                                      json_string_length(room) > 0 &&
                                                      json_string_length(room) <= AUTH_ROOM_MAX;
    if (!rooms_ok)
        return refuse(out, 401, "rooms is not an array of at most 64 room names");
    int rc = check_audience(cfg, json_object_get(claims, "aud"), out);
    if (rc != 0)
        return rc;
    if (cfg->issuer[0] != '\0' && (iss == NULL || strcmp(json_string_value(iss), cfg->issuer) != 0))
        return refuse(out, 403, "issuer not accepted");
    if (info != NULL || data != NULL) {
        out->data = json_dumps(info != NULL ? info : data, JSON_COMPACT | JSON_ENCODE_ANY);
        if (out->data == NULL)
            return refuse(out, 401, "out of memory");
    }
    if (rooms != NULL && (out->rooms = json_dumps(rooms, JSON_COMPACT)) == NULL)
        return refuse(out, 401, "out of memory");
    memcpy(out->user, json_string_value(sub), json_string_length(sub) + 1);
    out->expires = has_exp ? exp : 0;
    out->authenticated = true;
    out->status = 0;
    out->reason = "ok";
    return 0;
}

int auth_check_at(const auth_config_t *cfg, const char *token, double now, auth_result_t *out)
{
    memset(out, 0, sizeof(*out));
    out->reason = "ok";
    if (!cfg->enabled)
        return 0;
    if (token == NULL || token[0] == '\0')
        return cfg->required ? refuse(out, 401, "no token") : 0;
    size_t len = strnlen(token, AUTH_TOKEN_MAX + 1);
    if (len > AUTH_TOKEN_MAX)
        return refuse(out, 401, "token too long");
    const char *dot1 = memchr(token, '.', len);
    const char *dot2 =
        dot1 != NULL ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
    if (dot2 == NULL || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)) != NULL ||
        dot1 == token || dot2 == dot1 + 1)
        return refuse(out, 401, "not three base64url parts");
    /* Decoded parts are 3/4 of their text: both fit, as the token does. */
    unsigned char buf[AUTH_TOKEN_MAX * 3 / 4 + 4], sig[48];
    long n = b64url_decode(token, (size_t)(dot1 - token), buf);
    if (n < 0)
        return refuse(out, 401, "header is not base64url");
    int rc = check_header(buf, (size_t)n, out);
    if (rc != 0)
        return rc;
    size_t sig_len = len - (size_t)(dot2 + 1 - token);
    if (sig_len != 43 || b64url_decode(dot2 + 1, sig_len, sig) != 32)
        return refuse(out, 401, "signature is not 32 bytes of base64url");
    size_t signed_len = (size_t)(dot2 - token);
    if (!signed_by(cfg->key, cfg->key_len, token, signed_len, sig) &&
        !signed_by(cfg->previous_key, cfg->previous_key_len, token, signed_len, sig))
        return refuse(out, 401, "bad signature");
    n = b64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), buf);
    if (n < 0)
        return refuse(out, 401, "claims are not base64url");
    json_t *claims = json_loadb((const char *)buf, (size_t)n, JSON_REJECT_DUPLICATES, NULL);
    rc = claims == NULL ? refuse(out, 401, "claims are not JSON")
                        : check_claims(cfg, claims, now, out);
    json_decref(claims);
    return rc;
}

int auth_check(const auth_config_t *cfg, const char *token, auth_result_t *out)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return auth_check_at(cfg, token, (double)ts.tv_sec + ts.tv_nsec / 1e9, out);
}

void auth_result_free(auth_result_t *res)
{
    free(res->data);
    res->data = NULL;
    free(res->rooms);
    res->rooms = NULL;
}

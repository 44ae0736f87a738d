/* SPDX-License-Identifier: MIT */
/*
 * Authentication at connect: HS256 JSON Web Tokens (RFC 7519, signed as RFC 7515 JWS
 * compact serialisation with HMAC-SHA256, RFC 7518 3.2), checked before the WebSocket
 * upgrade. cmd/auth.c holds the verifier and the [auth] settings (OpenSSL and jansson
 * only, no server); cmd/auth_upgrade.c the daemon's live settings and the upgrade check.
 */
#ifndef EDDY_CMD_AUTH_H
#define EDDY_CMD_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "cmd.h"

/* Longest token accepted, bytes (a longer one is refused as "token too long"). */
#define AUTH_TOKEN_MAX 8192
/* HMAC key length: RFC 7518 3.2 wants at least the hash size for HS256. */
#define AUTH_KEY_MIN 32
#define AUTH_KEY_MAX 256
/* Longest audience, issuer and user id (sub), bytes. */
#define AUTH_NAME_MAX 255
/* The rooms claim: at most this many names of at most AUTH_ROOM_MAX bytes. */
#define AUTH_ROOMS_MAX 64
#define AUTH_ROOM_MAX  200
#define AUTH_PARAM_MAX 63

/*
 * The [auth] settings, a plain value (no pointers: copied with =). Keys are bytes; they
 * are wiped by auth_config_clear(). Defaults (auth_config_init()): disabled, required,
 * no keys, leeway 0, no audience, no issuer, query parameter "token".
 */
typedef struct auth_config {
    bool enabled;  /* check tokens at all; false: every upgrade is accepted */
    bool required; /* with enabled: an upgrade without a token is refused (401) */
    unsigned char key[AUTH_KEY_MAX];
    size_t key_len; /* 0: none (only valid while disabled) */
    unsigned char previous_key[AUTH_KEY_MAX];
    size_t previous_key_len;              /* 0: none; else tokens signed with it pass too */
    double leeway;                        /* seconds of clock skew allowed for exp, nbf, iat */
    char audience[AUTH_NAME_MAX + 1];     /* "": tokens must carry no aud */
    char issuer[AUTH_NAME_MAX + 1];       /* "": iss not checked */
    char query_param[AUTH_PARAM_MAX + 1]; /* query parameter holding the token */
} auth_config_t;

void auth_config_init(auth_config_t *cfg);
/* Wipes the keys (OPENSSL_cleanse) and resets cfg to the defaults. */
void auth_config_clear(auth_config_t *cfg);
/*
 * Sets one [auth] key from its text value. Returns 0, EDDY_EKEY (not an [auth] key) or
 * EDDY_EINVAL with the reason in why (never quoting a key's value).
 */
int auth_config_set(auth_config_t *cfg, const char *key, const char *value, char *why,
                    size_t why_len);
/*
 * Builds out from cfg's [auth] entries (each already accepted by auth_config_set()) and
 * checks the keys together: enabled needs key, previous_key needs key. Returns 0, or -1
 * with the reason in err ("[auth] enabled needs key").
 */
int auth_config_from(const cfg_t *cfg, auth_config_t *out, char *err, size_t err_len);

/* What a check found. */
typedef struct auth_result {
    int status;         /* 0 accepted, 401 (missing or invalid token), 403 (not allowed) */
    const char *reason; /* static text: why it was refused ("expired"), or "ok" */
    bool authenticated; /* a token was verified (false: accepted anonymously, or refused) */
    char user[AUTH_NAME_MAX + 1]; /* the token's sub ("" if anonymous or refused) */
    char *data;                   /* the info or data claim as compact JSON (malloc'd), or NULL */
    char *rooms;    /* the rooms claim, a compact JSON array of strings (malloc'd), or NULL */
    double expires; /* the exp claim, 0 if none */
} auth_result_t;

/*
 * Checks token (NUL-terminated; NULL or "" for none) against cfg at the current time and
 * fills out (which the caller releases with auth_result_free() whatever the outcome).
 * Returns out->status. Disabled: 0 without looking at the token. No token: 401 if
 * required, else 0 (anonymous). Otherwise the token must be a compact JWS of at most
 * AUTH_TOKEN_MAX bytes, base64url without padding, header {"alg":"HS256"} (typ "JWT"
 * if present, no crit), signed with key or previous_key; the claims a JSON object with
 * sub a string; exp, nbf and iat, if present, numbers met with leeway; then aud (403 if
 * it does not hold the configured audience, or is present when none is configured,
 * RFC 7519 4.1.3) and iss (403 unless equal to the configured issuer). info or data
 * (not both) becomes out->data; rooms (an array of at most AUTH_ROOMS_MAX non-empty
 * strings of at most AUTH_ROOM_MAX bytes, else 401) out->rooms. Thread-safe for a cfg nobody
 * changes meanwhile.
 */
int auth_check(const auth_config_t *cfg, const char *token, auth_result_t *out);
/* auth_check() at time now (seconds since the epoch): for tests. */
int auth_check_at(const auth_config_t *cfg, const char *token, double now, auth_result_t *out);
void auth_result_free(auth_result_t *res);

/* ---- the daemon (cmd/auth_upgrade.c) ---- */

/*
 * Makes cfg's [auth] settings the live ones (at start, and on reload: keys rotate
 * without a restart), logging on srv what changed, never a key. Returns 0, or -1 (cfg
 * invalid: cfg_load() refuses such files, so only a bug gets here) with the error logged
 * and the live settings kept. Called from one thread at a time.
 */
int auth_apply(eddy_server_t *srv, const cfg_t *cfg, bool reloading);
/* auth_check() with the live settings; any thread (the Socket.IO connect hook's entry). */
int auth_check_live(const char *token, auth_result_t *out);
/*
 * The upgrade callback's check: takes the token from the Authorization: Bearer header
 * or the query parameter, and returns 0 (accepted; logged at info with the user id) or
 * the status recorded with eddy_upgrade_refuse() (400 both sources given, 401, 403;
 * logged at notice with the reason and the remote address, never the token).
 */
int auth_upgrade(eddy_request_t *req);
/* Wipes the live keys (at exit). */
void auth_release(void);

#endif /* EDDY_CMD_AUTH_H */

/* SPDX-License-Identifier: MIT */
/*
 * Authentication in the running daemon (auth.h): the live [auth] settings, which a
 * reload replaces (key rotation without a restart), and the check every WebSocket
 * upgrade passes before its 101. The settings are read by every loop thread and written
 * by the signal thread, under a read-write lock taken once per upgrade (never per
 * message).
 */
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "auth.h"

static pthread_rwlock_t live_lock = PTHREAD_RWLOCK_INITIALIZER;
static auth_config_t live = {.required = true, .query_param = "token"};

/* Names the [auth] settings that differ, for the reload's log line (no values). */
static void describe_changes(const auth_config_t *a, const auth_config_t *b, char *out, size_t cap)
{
    out[0] = '\0';
    size_t n = 0;
    struct {
        const char *name;
        bool differs;
    } fields[] = {
        {"enabled", a->enabled != b->enabled},
        {"required", a->required != b->required},
        {"key", a->key_len != b->key_len || CRYPTO_memcmp(a->key, b->key, sizeof(a->key)) != 0},
        {"previous_key",
         a->previous_key_len != b->previous_key_len ||
             CRYPTO_memcmp(a->previous_key, b->previous_key, sizeof(a->previous_key)) != 0},
        {"leeway", a->leeway != b->leeway},
        {"audience", strcmp(a->audience, b->audience) != 0},
        {"issuer", strcmp(a->issuer, b->issuer) != 0},
        {"query_param", strcmp(a->query_param, b->query_param) != 0},
    };
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        if (fields[i].differs && n < cap)
            n += (size_t)snprintf(out + n, cap - n, "%s%s", n > 0 ? ", " : "", fields[i].name);
}

int auth_apply(eddy_server_t *srv, const cfg_t *cfg, bool reloading)
{
    auth_config_t next;
    char err[256];
    if (auth_config_from(cfg, &next, err, sizeof(err)) < 0) {
        eddy_log(srv, EDDY_LOG_ERROR, "auth: %s; the running settings are kept", err);
        return -1;
    }
    char changed[128];
    pthread_rwlock_wrlock(&live_lock);
    describe_changes(&live, &next, changed, sizeof(changed));
    live = next;
    pthread_rwlock_unlock(&live_lock);
    if (reloading && changed[0] != '\0')
        eddy_log(srv, EDDY_LOG_NOTICE, "reload: [auth] %s applied", changed);
    if (next.enabled && (!reloading || changed[0] != '\0'))
        eddy_log(srv, EDDY_LOG_INFO,
                 "auth: HS256 tokens %s (Authorization: Bearer or ?%s=)%s%s%s%s%s",
                 next.required ? "required" : "checked when given", next.query_param,
                 next.previous_key_len != 0 ? ", previous key accepted" : "",
                 next.audience[0] != '\0' ? ", audience " : "", next.audience,
                 next.issuer[0] != '\0' ? ", issuer " : "", next.issuer);
    auth_config_clear(&next);
    return 0;
}

int auth_check_live(const char *token, auth_result_t *out)
{
    pthread_rwlock_rdlock(&live_lock);
    int rc = auth_check(&live, token, out);
    pthread_rwlock_unlock(&live_lock);
    return rc;
}

/* The token of "Authorization: Bearer TOKEN" (RFC 6750 2.1), or NULL. */
static const char *bearer_token(const char *authorization)
{
    if (authorization == NULL || strncasecmp(authorization, "Bearer ", 7) != 0)
        return NULL;
    const char *token = authorization + 7;
    while (*token == ' ')
        token++;
    return token;
}

/* Copies s into out for a log line: printable ASCII, the rest as \xHH. */
static void escape(char *out, size_t cap, const char *s)
{
    size_t n = 0;
    for (; *s != '\0' && n + 5 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            out[n++] = (char)c;
        else
            n += (size_t)snprintf(out + n, cap - n, "\\x%02x", c);
    }
    out[n] = '\0';
}

int auth_upgrade(eddy_request_t *req)
{
    char param[AUTH_PARAM_MAX + 1];
    pthread_rwlock_rdlock(&live_lock);
    bool enabled = live.enabled;
    memcpy(param, live.query_param, sizeof(param));
    pthread_rwlock_unlock(&live_lock);
    if (!enabled)
        return 0;

    eddy_server_t *srv = eddy_request_server(req);
    const char *ip = eddy_request_remote_ip(req);
    int port = eddy_request_remote_port(req);
    const char *from_query = eddy_request_get(req, param);
    const char *from_header = bearer_token(eddy_request_header(req, "Authorization"));
    if (from_query != NULL && from_query[0] == '\0')
        from_query = NULL;
    if (from_query != NULL && from_header != NULL) {
        /* RFC 6750 2: one method per request; two are a malformed request. */
        eddy_log(srv, EDDY_LOG_NOTICE,
                 "auth: refused %s:%d: 400 token both in the query and "
                 "in the Authorization header",
                 ip, port);
        static const char *const headers[] = {
            "WWW-Authenticate", "Bearer realm=\"eddy\", error=\"invalid_request\"", NULL};
        return eddy_upgrade_refuse(req, 400, headers,
                                   "a token in the query or the Authorization header, not both\n");
    }
    auth_result_t res;
    int status = auth_check_live(from_header != NULL ? from_header : from_query, &res);
    char user[4 * AUTH_NAME_MAX + 8];
    if (status == 0) {
        escape(user, sizeof(user), res.user);
        if (res.authenticated)
            eddy_log(srv, EDDY_LOG_INFO, "auth: %s:%d accepted as user \"%s\"", ip, port, user);
        else
            eddy_log(srv, EDDY_LOG_INFO, "auth: %s:%d accepted without a token", ip, port);
        auth_result_free(&res);
        return 0;
    }
    eddy_log(srv, EDDY_LOG_NOTICE, "auth: refused %s:%d: %d %s", ip, port, status, res.reason);
    char challenge[192], body[160];
    if (status == 401 && from_query == NULL && from_header == NULL) {
        /* RFC 6750 3.1: no error code when the request carried no credentials. */
        snprintf(challenge, sizeof(challenge), "Bearer realm=\"eddy\"");
        snprintf(body, sizeof(body), "authentication required\n");
    } else {
        snprintf(challenge, sizeof(challenge),
                 "Bearer realm=\"eddy\", error=\"invalid_token\", error_description=\"%s\"",
                 res.reason);
        snprintf(body, sizeof(body), "%s: %s\n", status == 401 ? "invalid token" : "forbidden",
                 res.reason);
    }
    const char *const headers[] = {"WWW-Authenticate", challenge, NULL};
    auth_result_free(&res);
    return eddy_upgrade_refuse(req, status, status == 401 ? headers : NULL, body);
}

void auth_release(void)
{
    pthread_rwlock_wrlock(&live_lock);
    auth_config_clear(&live);
    pthread_rwlock_unlock(&live_lock);
}

/* SPDX-License-Identifier: MIT */
/*
 * Redis URLs (rt_broker.h "Redis URLs"): redis:// for one Redis, redis+sentinel:// for a
 * master found through Redis Sentinel (the form redis-py's URL helpers, RedisVL and Prefect
 * read), rediss:// and rediss+sentinel:// for the same over TLS, redis+cluster:// for the
 * seed nodes of a Redis Cluster (rediss+cluster:// over TLS), a comma-separated list of
 * them for shards (a cluster URL stands alone).
 */
#include <stdlib.h>
#include <string.h>

#include "rt_broker.h"

/* The four schemes: with Sentinel or not, over TLS or not. */
static const struct scheme {
    const char *prefix;
    size_t len;
    bool sentinel, tls;
} schemes[] = {
    {"redis://", 8, false, false},
    {"redis+sentinel://", 17, true, false},
    {"rediss://", 9, false, true},
    {"rediss+sentinel://", 18, true, true},
};
#define NSCHEMES (sizeof(schemes) / sizeof(schemes[0]))

/* And the seeds of a Redis Cluster, plain or over TLS. */
static const struct scheme cluster_schemes[] = {
    {"redis+cluster://", 16, false, false},
    {"rediss+cluster://", 17, false, true},
};

/* The cluster scheme text[0..len) starts with, or NULL. */
static const struct scheme *cluster_scheme_of(const char *text, size_t len)
{
    for (size_t i = 0; i < sizeof(cluster_schemes) / sizeof(cluster_schemes[0]); i++)
        if (len >= cluster_schemes[i].len &&
            strncmp(text, cluster_schemes[i].prefix, cluster_schemes[i].len) == 0)
            return &cluster_schemes[i];
    return NULL;
}

/* The scheme text[0..len) starts with, or NULL. */
static const struct scheme *scheme_of(const char *text, size_t len)
{
    for (size_t i = 0; i < NSCHEMES; i++)
        if (len >= schemes[i].len && strncmp(text, schemes[i].prefix, schemes[i].len) == 0)
            return &schemes[i];
    return NULL;
}

#define REDIS_PORT    6379
#define SENTINEL_PORT 26379
#define MASTER_MAX    64

size_t rt_broker_url_len(const char *urls)
{
    for (const char *p = urls; (p = strchr(p, ',')) != NULL; p++)
        if (scheme_of(p + 1, strnlen(p + 1, schemes[NSCHEMES - 1].len)) != NULL ||
            cluster_scheme_of(p + 1, strnlen(p + 1, cluster_schemes[1].len)) != NULL)
            return (size_t)(p - urls);
    return strlen(urls);
}

/* "host[:port]" or "[v6][:port]", in place: *host NUL-terminated without brackets. NULL, or
 * what is wrong. */
static const char *host_port(char *s, int default_port, const char **host, int *port)
{
    *port = default_port;
    char *colon = strrchr(s, ':'), *bracket = strchr(s, ']');
    if (colon != NULL && (bracket == NULL || bracket < colon)) {
        *colon = '\0';
        char *end;
        long value = strtol(colon + 1, &end, 10);
        if (colon[1] == '\0' || *end != '\0' || value <= 0 || value > 65535)
            return "a port is not 1-65535";
        *port = (int)value;
    }
    size_t len = strlen(s);
    if (len >= 2 && s[0] == '[' && s[len - 1] == ']') {
        s[len - 1] = '\0';
        s++;
    }
    if (s[0] == '\0')
        return "a host is empty";
    if (strpbrk(s, ",?@/ ") != NULL)
        return "a host has one of , ? @ / or a space";
    *host = s;
    return NULL;
}

/* host_list()'s answer for a list longer than max. */
static const char too_many[] = "too many hosts";

/* The comma-separated host[:port] list s (in place) into out[0..*n), at most max: NULL, or
 * what is wrong (too_many for more than max). */
static const char *host_list(char *s, int default_port, rt_broker_addr_t *out, size_t max,
                             size_t *n)
{
    *n = 0;
    for (char *next = s; next != NULL; (*n)++) {
        char *item = next;
        if ((next = strchr(item, ',')) != NULL)
            *next++ = '\0';
        if (*n == max)
            return too_many;
        const char *why = host_port(item, default_port, &out[*n].host, &out[*n].port);
        if (why != NULL)
            return why;
    }
    return NULL;
}

/* Percent-decodes s in place (RFC 3986 2.1), so that a user name, password or parameter
 * can hold the bytes that delimit a URL (%40 is "@", %3F "?", %2F "/", %25 "%"). NULL, or
 * what is wrong. */
static const char *percent_decode(char *s)
{
    static const char hex[] = "0123456789abcdef0123456789ABCDEF";
    char *out = s;
    for (; *s != '\0'; s++) {
        if (*s != '%') {
            *out++ = *s;
            continue;
        }
        const char *hi = s[1] != '\0' ? strchr(hex, s[1]) : NULL;
        const char *lo = hi != NULL && s[2] != '\0' ? strchr(hex, s[2]) : NULL;
        if (lo == NULL)
            return "a % is not followed by two hex digits";
        char c = (char)((hi - hex) % 16 * 16 + (lo - hex) % 16);
        if (c == '\0')
            return "%00 in a user name, password or parameter";
        *out++ = c;
        s += 2;
    }
    *out = '\0';
    return NULL;
}

/* "[[user]:password@]" before at (in place, percent-decoded; without a colon all of it is
 * the password). NULL, or what is wrong. */
static const char *user_info(char *start, char *at, rt_broker_redis_config_t *cfg)
{
    *at = '\0';
    char *colon = strchr(start, ':'), *user = NULL, *password = start;
    if (colon != NULL) {
        *colon = '\0';
        password = colon + 1;
        if (start[0] != '\0' && password[0] == '\0')
            return "a user name without a password";
        if (start[0] != '\0')
            user = start;
    }
    const char *why = user != NULL ? percent_decode(user) : NULL;
    if (why == NULL)
        why = percent_decode(password);
    cfg->username = user;
    cfg->password = password;
    return why;
}

/* "/db" (db may be empty: 0). */
static const char *database(const char *s, int *db)
{
    char *end;
    long value = strtol(s, &end, 10);
    if (s[0] != '\0' && (*end != '\0' || value < 0 || value > 65535 || s[0] == '-'))
        return "the database is not a number 0-65535";
    *db = (int)value;
    return NULL;
}

static const char *parameters(char *query, const struct scheme *sc, rt_broker_redis_config_t *cfg);

/* The start of a URL after its scheme, *s: with TLS its parameters after the first "?"
 * (cut off), then its user information before the last "@" (skipped: *s moves past it). */
static const char *query_and_user(char **s, const struct scheme *sc, rt_broker_redis_config_t *cfg)
{
    char *query = sc->tls ? strchr(*s, '?') : NULL;
    if (query != NULL) {
        *query++ = '\0';
        const char *why = parameters(query, sc, cfg);
        if (why != NULL)
            return why;
    }
    char *at = strrchr(*s, '@');
    if (at != NULL) {
        const char *why = user_info(*s, at, cfg);
        if (why != NULL)
            return why;
        *s = at + 1;
    }
    return NULL;
}

/* What follows "redis://" or "rediss://". */
static const char *parse_redis(char *s, const struct scheme *sc, rt_broker_redis_config_t *cfg)
{
    const char *why = query_and_user(&s, sc, cfg);
    if (why != NULL)
        return why;
    if (!sc->tls && strstr(s, "?ssl_") != NULL)
        return "ssl_ parameters need rediss://";
    char *slash = strchr(s, '/');
    if (slash != NULL) {
        *slash = '\0';
        if ((why = database(slash + 1, &cfg->db)) != NULL)
            return why;
    }
    if (strchr(s, ',') != NULL)
        return "a comma in a redis:// URL (several Redis: several URLs)";
    return host_port(s, REDIS_PORT, &cfg->host, &cfg->port);
}

/* The query of a URL, "name=value[&name=value]" (in place, the values percent-decoded):
 * the sentinels' AUTH (Sentinel) and TLS (rediss: redis-py's names, rt_broker.h "Redis
 * URLs"). NULL, or what is wrong. */
static const char *parameters(char *query, const struct scheme *sc, rt_broker_redis_config_t *cfg)
{
    static const char *const names[] = {
        "sentinel_password=", "sentinel_username=", "ssl_ca_certs=", "ssl_certfile=",
        "ssl_keyfile=",       "ssl_servername=",    "ssl_cert_reqs="};
    const char *cert_reqs = NULL;
    const char **fields[] = {
        &cfg->sentinel_password, &cfg->sentinel_username, &cfg->tls_ca_file, &cfg->tls_cert_file,
        &cfg->tls_key_file,      &cfg->tls_server_name,   &cert_reqs};
    size_t first = sc->sentinel ? 0 : 2, end = sc->tls ? 7 : 2;
    for (char *next = query; next != NULL;) {
        char *item = next;
        if ((next = strchr(item, '&')) != NULL)
            *next++ = '\0';
        size_t i, len = 0;
        for (i = first; i < end; i++)
            if (strncmp(item, names[i], len = strlen(names[i])) == 0)
                break;
        if (i == end && !sc->tls && strncmp(item, "ssl_", 4) == 0)
            return "ssl_ parameters need rediss+sentinel://";
        if (i == end || item[len] == '\0' || *fields[i] != NULL)
            return !sc->tls ? "the parameters are sentinel_password=... and "
                              "sentinel_username=..., each once, not empty"
                   : sc->sentinel
                       ? "the parameters are sentinel_password=, sentinel_username=, "
                         "ssl_ca_certs=, ssl_certfile=, ssl_keyfile=, ssl_servername= and "
                         "ssl_cert_reqs=, each once, not empty"
                       : "the parameters are ssl_ca_certs=, ssl_certfile=, ssl_keyfile=, "
                         "ssl_servername= and ssl_cert_reqs=, each once, not empty";
        const char *why = percent_decode(item + len);
        if (why != NULL)
            return why;
        *fields[i] = item + len;
    }
    if (cfg->sentinel_username != NULL && cfg->sentinel_password == NULL)
        return "sentinel_username= without sentinel_password=";
    if (cfg->tls_key_file != NULL && cfg->tls_cert_file == NULL)
        return "ssl_keyfile= without ssl_certfile=";
    if (cert_reqs != NULL && strcmp(cert_reqs, "none") != 0 && strcmp(cert_reqs, "required") != 0)
        return "ssl_cert_reqs= is required (the default) or none";
    cfg->tls_insecure = cert_reqs != NULL && strcmp(cert_reqs, "none") == 0;
    return NULL;
}

/* What follows "redis+sentinel://" or "rediss+sentinel://". */
static const char *parse_sentinel(char *s, const struct scheme *sc, rt_broker_url_t *url,
                                  rt_broker_redis_config_t *cfg)
{
    char *query = strchr(s, '?');
    cfg->sentinel_password = NULL;
    cfg->sentinel_username = NULL;
    if (query != NULL) {
        *query++ = '\0';
        const char *why = parameters(query, sc, cfg);
        if (why != NULL)
            return why;
    }
    char *at = strrchr(s, '@');
    if (at != NULL) {
        const char *why = user_info(s, at, cfg);
        if (why != NULL)
            return why;
        s = at + 1;
    }
    char *slash = strchr(s, '/');
    if (slash == NULL || slash[1] == '\0' || slash[1] == '/')
        return "no master name after the sentinels (.../mymaster)";
    *slash = '\0';
    char *master = slash + 1;
    int db = 0;
    if ((slash = strchr(master, '/')) != NULL) {
        *slash = '\0';
        const char *why = database(slash + 1, &db);
        if (why != NULL)
            return why;
    }
    size_t mlen = strlen(master);
    if (mlen > MASTER_MAX || strspn(master, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                            "0123456789_-.:") != mlen)
        return "the master name is not 1-64 of A-Z a-z 0-9 _ - . :";
    size_t n;
    const char *why = host_list(s, SENTINEL_PORT, url->sentinels, RT_BROKER_SENTINELS_MAX, &n);
    if (why != NULL)
        return why != too_many ? why : "more than 16 sentinels";
    cfg->sentinel_master = master;
    cfg->sentinels = url->sentinels;
    cfg->nsentinels = n;
    cfg->db = db;
    return NULL;
}

/* What follows "redis+cluster://" or "rediss+cluster://":
 * [[user]:password@]host[:port][,host[:port]...] (seeds; no database: a cluster has only 0),
 * with rediss the TLS parameters after "?". */
static const char *parse_cluster(char *s, const struct scheme *sc, rt_broker_url_t *url,
                                 rt_broker_redis_config_t *cfg)
{
    const char *why = query_and_user(&s, sc, cfg);
    if (why != NULL)
        return why;
    if (!sc->tls && strstr(s, "?ssl_") != NULL)
        return "ssl_ parameters need rediss+cluster://";
    if (strpbrk(s, "/?") != NULL)
        return sc->tls ? "a path in a rediss+cluster:// URL (a cluster has database 0 only)"
                       : "a path or query in a redis+cluster:// URL (a cluster has database 0 "
                         "only)";
    size_t n;
    why = host_list(s, REDIS_PORT, url->cluster_seeds, RT_BROKER_CLUSTER_SEEDS_MAX, &n);
    if (why != NULL)
        return why != too_many ? why : "more than 16 cluster seeds";
    cfg->cluster_nodes = url->cluster_seeds;
    cfg->ncluster_nodes = n;
    cfg->db = 0;
    return NULL;
}

/* rt_broker_url_parse() of a redis+cluster:// or rediss+cluster:// URL. */
static int parse_url_cluster(eddy_server_t *srv, const struct scheme *sc, const char *text,
                             size_t len, rt_broker_url_t *url, rt_broker_redis_config_t *cfg)
{
    const char *why = "longer than 1023 bytes";
    size_t skip = sc->len;
    if (len - skip < sizeof(url->buf)) {
        memcpy(url->buf, text + skip, len - skip);
        url->buf[len - skip] = '\0';
        rt_broker_redis_config_t out = *cfg; /* a failure leaves cfg as it was */
        out.sentinel_master = NULL;
        out.tls = sc->tls;
        out.tls_insecure = false;
        out.tls_ca_file = out.tls_cert_file = out.tls_key_file = out.tls_server_name = NULL;
        if ((why = parse_cluster(url->buf, sc, url, &out)) == NULL) {
            *cfg = out;
            return 0;
        }
    }
    eddy_log(srv, EDDY_LOG_ERROR,
             "eddy_rt: bad Redis URL: %s (want "
             "redis[s]+cluster://[[user]:password@]host[:port][,host[:port]...]; rediss: TLS, "
             "with ?ssl_ca_certs=, ssl_certfile=, ssl_keyfile=, ssl_servername=, ssl_cert_reqs=)",
             why);
    return EDDY_EINVAL;
}

int rt_broker_url_parse(eddy_server_t *srv, const char *text, size_t len, rt_broker_url_t *url,
                        rt_broker_redis_config_t *cfg)
{
    const struct scheme *cluster = cluster_scheme_of(text, len);
    if (cluster != NULL)
        return parse_url_cluster(srv, cluster, text, len, url, cfg);
    const char *why;
    const struct scheme *sc = scheme_of(text, len);
    size_t skip = sc != NULL ? sc->len : 0;
    if (sc == NULL) {
        why = "not redis://, rediss://, redis+sentinel://, rediss+sentinel://, "
              "redis+cluster:// or rediss+cluster://";
    } else if (len - skip >= sizeof(url->buf)) {
        why = "longer than 1023 bytes";
    } else {
        memcpy(url->buf, text + skip, len - skip);
        url->buf[len - skip] = '\0';
        /* Parsed into a copy, so a failure leaves cfg as it was. The scheme says whether
         * the URL's connections are TLS, and its parameters are all there is of TLS. */
        rt_broker_redis_config_t out = *cfg;
        out.tls = sc->tls;
        out.tls_ca_file = out.tls_cert_file = out.tls_key_file = out.tls_server_name = NULL;
        out.tls_insecure = false;
        why = sc->sentinel ? parse_sentinel(url->buf, sc, url, &out)
                           : parse_redis(url->buf, sc, &out);
        if (why == NULL) {
            *cfg = out;
            return 0;
        }
    }
    /* Not the URL itself: it may carry a password. */
    eddy_log(srv, EDDY_LOG_ERROR,
             "eddy_rt: bad Redis URL: %s (want redis[s]://[[user]:password@]host[:port][/db], "
             "redis[s]+sentinel://[[user]:password@]host[:port][,host[:port]...]/master[/db]"
             "[?sentinel_username=...&sentinel_password=...] or "
             "redis[s]+cluster://[[user]:password@]host[:port][,host[:port]...]; rediss: TLS, "
             "with ssl_ca_certs=, ssl_certfile=, ssl_keyfile=, ssl_servername=, ssl_cert_reqs=)",
             why);
    return EDDY_EINVAL;
}

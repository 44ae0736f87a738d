/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer driver for the Redis URLs of redis_url (rt/rt_broker_url.c: redis://,
 * redis+sentinel://, their TLS forms rediss:// and rediss+sentinel://, redis+cluster://,
 * and the comma-separated lists of shards that rt_broker_url_len() splits). The input is the
 * whole redis_url value.
 *
 * Checked invariants: the list is split into pieces that cover the input exactly, each
 * starting after a comma; a piece is accepted (0) or refused (EDDY_EINVAL); a refusal
 * leaves the configuration untouched; an accepted piece gives a port in 1..65535 and, with
 * Sentinel, a master name of 1 to 64 bytes and 1 to RT_BROKER_SENTINELS_MAX sentinels with
 * valid ports; every string it sets points into the parse buffer (ASan checks the reads);
 * a user name (the master's or the sentinels') comes with a password, neither empty; the
 * TLS fields are set only by a rediss URL (then inside the parse buffer, not empty; a key
 * file only with a certificate file).
 */
#include <string.h>

#include "eddy.h"
#include "fuzz.h"
#include "rt_broker.h"

static eddy_server_t *quiet_server;

/* A refusal logs a line per input: dropped, so the run is not drowned in them. */
static void discard(eddy_server_t *srv, int level, int loop, const char *msg, size_t len, void *ud)
{
    (void)srv, (void)level, (void)loop, (void)msg, (void)len, (void)ud;
}

static bool in_buf(const rt_broker_url_t *url, const char *s)
{
    return s >= url->buf && s < url->buf + sizeof(url->buf) &&
           memchr(s, '\0', (size_t)(url->buf + sizeof(url->buf) - s)) != NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    quiet_server = eddy_server_new("127.0.0.1", 0);
    if (quiet_server != NULL)
        eddy_on_log(quiet_server, discard);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (memchr(data, '\0', size) != NULL) /* a C string, as redis_url is */
        return 0;
    char *text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    static rt_broker_url_t url; /* 1 KiB and the sentinels: not on the stack per piece */
    for (const char *p = text;;) {
        size_t len = rt_broker_url_len(p);
        FUZZ_CHECK(p + len <= text + size);
        FUZZ_CHECK(p[len] == '\0' || p[len] == ',');
        rt_broker_redis_config_t cfg, before;
        rt_broker_redis_config_init(&cfg);
        before = cfg;
        int rc = rt_broker_url_parse(quiet_server, p, len, &url, &cfg);
        FUZZ_CHECK(rc == 0 || rc == EDDY_EINVAL);
        if (rc != 0) {
            FUZZ_CHECK(memcmp(&cfg, &before, sizeof(cfg)) == 0);
        } else if (cfg.ncluster_nodes > 0) {
            FUZZ_CHECK(cfg.ncluster_nodes <= RT_BROKER_CLUSTER_SEEDS_MAX && cfg.db == 0);
            for (size_t i = 0; i < cfg.ncluster_nodes; i++) {
                FUZZ_CHECK(in_buf(&url, cfg.cluster_nodes[i].host));
                FUZZ_CHECK(cfg.cluster_nodes[i].port >= 1 && cfg.cluster_nodes[i].port <= 65535);
            }
            FUZZ_CHECK(cfg.password == NULL || in_buf(&url, cfg.password));
        } else if (cfg.sentinel_master != NULL) {
            FUZZ_CHECK(in_buf(&url, cfg.sentinel_master));
            size_t mlen = strlen(cfg.sentinel_master);
            FUZZ_CHECK(mlen >= 1 && mlen <= 64);
            FUZZ_CHECK(cfg.nsentinels >= 1 && cfg.nsentinels <= RT_BROKER_SENTINELS_MAX);
            for (size_t i = 0; i < cfg.nsentinels; i++) {
                FUZZ_CHECK(in_buf(&url, cfg.sentinels[i].host));
                FUZZ_CHECK(cfg.sentinels[i].port >= 1 && cfg.sentinels[i].port <= 65535);
            }
            FUZZ_CHECK(cfg.sentinel_password == NULL || in_buf(&url, cfg.sentinel_password));
            FUZZ_CHECK(cfg.sentinel_username == NULL || in_buf(&url, cfg.sentinel_username));
            /* AUTH needs a password: a user name comes with one. */
            FUZZ_CHECK(cfg.sentinel_username == NULL || cfg.sentinel_password != NULL);
        } else {
            FUZZ_CHECK(cfg.host == before.host || in_buf(&url, cfg.host));
            FUZZ_CHECK(cfg.port >= 1 && cfg.port <= 65535);
        }
        if (rc == 0 && cfg.password != NULL && cfg.password != before.password)
            FUZZ_CHECK(in_buf(&url, cfg.password));
        if (rc == 0 && cfg.username != NULL) {
            FUZZ_CHECK(in_buf(&url, cfg.username) && cfg.password != NULL);
            FUZZ_CHECK(cfg.username[0] != '\0' && cfg.password[0] != '\0');
        }
        if (rc == 0 && !cfg.tls) {
            FUZZ_CHECK(!cfg.tls_insecure && cfg.tls_ca_file == NULL && cfg.tls_cert_file == NULL);
            FUZZ_CHECK(cfg.tls_key_file == NULL && cfg.tls_server_name == NULL);
        } else if (rc == 0) {
            FUZZ_CHECK(strncmp(p, "rediss", 6) == 0);
            const char *tls[] = {cfg.tls_ca_file, cfg.tls_cert_file, cfg.tls_key_file,
                                 cfg.tls_server_name};
            for (size_t i = 0; i < 4; i++)
                FUZZ_CHECK(tls[i] == NULL || (in_buf(&url, tls[i]) && tls[i][0] != '\0'));
            FUZZ_CHECK(cfg.tls_key_file == NULL || cfg.tls_cert_file != NULL);
        }
        if (p[len] == '\0')
            break;
        p += len + 1;
    }
    free(text);
    return 0;
}

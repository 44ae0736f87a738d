/* SPDX-License-Identifier: MIT */
/*
 * Redis URLs (rt_broker.h "Redis URLs"): redis://, redis+sentinel://, their TLS forms
 * rediss:// and rediss+sentinel://, and redis+cluster:// and rediss+cluster:// parsed into a broker
 * configuration, a list split into its shards' URLs, and every malformed form refused with
 * EDDY_EINVAL and a log line that says why (never the password), leaving the configuration as it
 * was.
 */

#include "rt_broker.h"
#include "test.h"

static char last_line[1024];
static int lines;

static void collect(eddy_server_t *srv, int level, int loop, const char *msg, size_t len, void *ud)
{
    snprintf(last_line, sizeof(last_line), "%.*s", (int)len, msg);
    lines++;
}

static eddy_server_t *srv;

static int parse(const char *text, rt_broker_url_t *url, rt_broker_redis_config_t *cfg)
{
    rt_broker_redis_config_init(cfg);
    return rt_broker_url_parse(srv, text, strlen(text), url, cfg);
}

static void test_redis_urls(void)
{
    rt_broker_url_t url;
    rt_broker_redis_config_t cfg;
    CHECK_EQ_INT(parse("redis://10.0.0.1:6380/2", &url, &cfg), 0);
    CHECK(strcmp(cfg.host, "10.0.0.1") == 0);
    CHECK_EQ_INT(cfg.port, 6380);
    CHECK_EQ_INT(cfg.db, 2);
    CHECK(cfg.password == NULL && cfg.sentinel_master == NULL && cfg.nsentinels == 0);
    CHECK_EQ_INT(parse("redis://user:pw@h", &url, &cfg), 0);
    CHECK(strcmp(cfg.host, "h") == 0 && strcmp(cfg.password, "pw") == 0);
    CHECK(cfg.username && strcmp(cfg.username, "user") == 0);
    CHECK_EQ_INT(cfg.port, 6379);
    CHECK_EQ_INT(parse("redis://:pw@h", &url, &cfg), 0);
    CHECK(strcmp(cfg.password, "pw") == 0 && cfg.username == NULL);
    CHECK_EQ_INT(parse("redis://pw@h", &url, &cfg), 0); /* no colon: a password */
    CHECK(strcmp(cfg.password, "pw") == 0 && cfg.username == NULL);
    CHECK_EQ_INT(parse("redis://[::1]:7000/", &url, &cfg), 0);
    CHECK(strcmp(cfg.host, "::1") == 0);
    CHECK_EQ_INT(cfg.port, 7000);
    CHECK_EQ_INT(cfg.db, 0);
}

static void test_sentinel_urls(void)
{
    rt_broker_url_t url;
    rt_broker_redis_config_t cfg;
    CHECK_EQ_INT(parse("redis+sentinel://:pw@s1:26380,s2,[::1]:26381/mymaster/3"
                       "?sentinel_password=sp",
                       &url, &cfg),
                 0);
    CHECK(cfg.sentinel_master && strcmp(cfg.sentinel_master, "mymaster") == 0);
    CHECK_EQ_INT(cfg.nsentinels, 3);
    CHECK(cfg.sentinels == url.sentinels);
    CHECK(strcmp(url.sentinels[0].host, "s1") == 0 && url.sentinels[0].port == 26380);
    CHECK(strcmp(url.sentinels[1].host, "s2") == 0 && url.sentinels[1].port == 26379);
    CHECK(strcmp(url.sentinels[2].host, "::1") == 0 && url.sentinels[2].port == 26381);
    CHECK_EQ_INT(cfg.db, 3);
    CHECK(strcmp(cfg.password, "pw") == 0 && strcmp(cfg.sentinel_password, "sp") == 0);
    CHECK_EQ_INT(parse("redis+sentinel://127.0.0.1/redis-prod.eu:1", &url, &cfg), 0);
    CHECK_EQ_INT(cfg.nsentinels, 1);
    CHECK(strcmp(cfg.sentinel_master, "redis-prod.eu:1") == 0);
    CHECK(cfg.password == NULL && cfg.sentinel_password == NULL && cfg.db == 0);
    CHECK(cfg.username == NULL && cfg.sentinel_username == NULL);

    /* Its shard name is the master's, whatever address the sentinels name. */
    char name[RT_BROKER_SHARD_NAME_SIZE];
    rt_broker_shard_name(&cfg, name);
    CHECK(strcmp(name, "sentinel:redis-prod.eu:1/0") == 0);

    CHECK_EQ_INT(parse("redis+sentinel://app:pw@s1/m?sentinel_username=watcher"
                       "&sentinel_password=sp",
                       &url, &cfg),
                 0);
    CHECK(cfg.username && strcmp(cfg.username, "app") == 0 && strcmp(cfg.password, "pw") == 0);
    CHECK(cfg.sentinel_username && strcmp(cfg.sentinel_username, "watcher") == 0);
    CHECK(strcmp(cfg.sentinel_password, "sp") == 0);
}

/* User names, passwords and parameter values are percent-decoded, so that they can hold
 * what delimits the URL. */
static void test_percent_decoding(void)
{
    rt_broker_url_t url;
    rt_broker_redis_config_t cfg;
    CHECK_EQ_INT(parse("redis://us%40er:p%3Fa%2Fs%25s%40w%3a@h:1/2", &url, &cfg), 0);
    CHECK(strcmp(cfg.username, "us@er") == 0 && strcmp(cfg.password, "p?a/s%s@w:") == 0);
    CHECK(strcmp(cfg.host, "h") == 0 && cfg.port == 1 && cfg.db == 2);
    CHECK_EQ_INT(parse("redis+sentinel://a%3Ab:%2525@s1/m?sentinel_password=x%26y%3Fz%3D"
                       "&sentinel_username=%E2%82%AC",
                       &url, &cfg),
                 0);
    CHECK(strcmp(cfg.username, "a:b") == 0 && strcmp(cfg.password, "%25") == 0);
    CHECK(strcmp(cfg.sentinel_password, "x&y?z=") == 0);
    CHECK(strcmp(cfg.sentinel_username, "\xe2\x82\xac") == 0);
    CHECK(strcmp(cfg.sentinel_master, "m") == 0 && strcmp(url.sentinels[0].host, "s1") == 0);
}

/* rediss:// and rediss+sentinel:// set tls and the TLS parameters (percent-decoded; a path
 * may hold "/" and "@"); a redis URL clears what a previous parse set. */
static void test_tls_urls(void)
{
    rt_broker_url_t url;
    rt_broker_redis_config_t cfg;
    CHECK_EQ_INT(parse("rediss://u:p%3Fw@cache.example.com:6380/1", &url, &cfg), 0);
    CHECK(cfg.tls && !cfg.tls_insecure && cfg.tls_ca_file == NULL && cfg.tls_cert_file == NULL);
    CHECK(cfg.tls_key_file == NULL && cfg.tls_server_name == NULL);
    CHECK(strcmp(cfg.host, "cache.example.com") == 0 && cfg.port == 6380 && cfg.db == 1);
    CHECK(strcmp(cfg.username, "u") == 0 && strcmp(cfg.password, "p?w") == 0);
    CHECK_EQ_INT(parse("rediss://:pw@[::1]:7000/2?ssl_ca_certs=/etc/ca%20dir/r@1.pem"
                       "&ssl_certfile=/c.pem&ssl_keyfile=/k.pem&ssl_servername=redis.internal"
                       "&ssl_cert_reqs=required",
                       &url, &cfg),
                 0);
    CHECK(cfg.tls && !cfg.tls_insecure);
    CHECK(strcmp(cfg.host, "::1") == 0 && cfg.port == 7000 && cfg.db == 2);
    CHECK(strcmp(cfg.password, "pw") == 0);
    CHECK(strcmp(cfg.tls_ca_file, "/etc/ca dir/r@1.pem") == 0);
    CHECK(strcmp(cfg.tls_cert_file, "/c.pem") == 0 && strcmp(cfg.tls_key_file, "/k.pem") == 0);
    CHECK(strcmp(cfg.tls_server_name, "redis.internal") == 0);
    CHECK_EQ_INT(parse("rediss://h?ssl_cert_reqs=none", &url, &cfg), 0);
    CHECK(cfg.tls && cfg.tls_insecure && cfg.port == 6379 && strcmp(cfg.host, "h") == 0);
    CHECK_EQ_INT(parse("rediss+sentinel://app:pw@s1,s2:26380/mymaster/3?ssl_ca_certs=/ca.pem"
                       "&sentinel_password=sp&ssl_certfile=/c.pem",
                       &url, &cfg),
                 0);
    CHECK(cfg.tls && cfg.sentinel_master && strcmp(cfg.sentinel_master, "mymaster") == 0);
    CHECK(cfg.nsentinels == 2 && url.sentinels[1].port == 26380 && cfg.db == 3);
    CHECK(strcmp(cfg.sentinel_password, "sp") == 0 && strcmp(cfg.password, "pw") == 0);
    CHECK(strcmp(cfg.tls_ca_file, "/ca.pem") == 0 && strcmp(cfg.tls_cert_file, "/c.pem") == 0);
    CHECK(cfg.tls_key_file == NULL);
    /* A plain URL parsed into the same configuration leaves no TLS behind. */
    rt_broker_redis_config_t again = cfg;
    CHECK_EQ_INT(rt_broker_url_parse(srv, "redis://h", 9, &url, &again), 0);
    CHECK(!again.tls && !again.tls_insecure && again.tls_ca_file == NULL);
    CHECK(again.tls_cert_file == NULL && again.tls_server_name == NULL);
}

static void test_lists(void)
{
    CHECK_EQ_INT(rt_broker_url_len("redis://a"), 9);
    CHECK_EQ_INT(rt_broker_url_len("redis://a,redis://b"), 9);
    CHECK_EQ_INT(rt_broker_url_len("redis://a,,redis://b"), 10); /* refused by the parse */
    static const char one[] = "redis+sentinel://a,b:1,c/m";
    CHECK_EQ_INT(rt_broker_url_len(one), strlen(one));
    CHECK_EQ_INT(rt_broker_url_len("redis+sentinel://a,b/m,redis+sentinel://a,b/n"),
                 strlen("redis+sentinel://a,b/m"));
    CHECK_EQ_INT(rt_broker_url_len("redis+sentinel://a,b/m,redis://c"),
                 strlen("redis+sentinel://a,b/m"));
    CHECK_EQ_INT(rt_broker_url_len("redis://c,redis+sentinel://a,b/m"), 9);
    CHECK_EQ_INT(rt_broker_url_len("rediss://a?ssl_ca_certs=/x,rediss://b"),
                 strlen("rediss://a?ssl_ca_certs=/x"));
    CHECK_EQ_INT(rt_broker_url_len("rediss+sentinel://a,b/m,rediss+sentinel://c/n"),
                 strlen("rediss+sentinel://a,b/m"));
    CHECK_EQ_INT(rt_broker_url_len("redis://a,rediss+sentinel://c/n"), 9);
    CHECK_EQ_INT(rt_broker_url_len("rediss://a,redis"), 16); /* not a scheme: refused later */
}

static void test_bad_forms(void)
{
    static const struct {
        const char *url, *why;
    } cases[] = {
        {"http://secret@x", "not redis://, rediss://, redis+sentinel://, rediss+sentinel://, "
                            "redis+cluster:// or rediss+cluster://"},
        {"redis+sentinel:/s1/m", "not redis://, rediss://"},
        {"redisss://secret@x", "not redis://, rediss://"},
        {"redis://:secret@h?ssl_ca_certs=/ca.pem", "ssl_ parameters need rediss://"},
        {"redis://:secret@h/0?ssl_cert_reqs=none", "ssl_ parameters need rediss://"},
        {"redis+sentinel://:secret@s/m?ssl_ca_certs=/ca.pem",
         "ssl_ parameters need rediss+sentinel://"},
        {"rediss://:secret@h?sentinel_password=secret", "the parameters are ssl_ca_certs="},
        {"rediss://:secret@h?ssl_ca_certs=", "the parameters are ssl_ca_certs="},
        {"rediss://:secret@h?ssl_ca_certs=/a&ssl_ca_certs=/b", "the parameters are ssl_ca_certs="},
        {"rediss://:secret@h?", "the parameters are ssl_ca_certs="},
        {"rediss://:secret@h?ssl_verify=0", "the parameters are ssl_ca_certs="},
        {"rediss+sentinel://:secret@s/m?ssl_insecure=1",
         "the parameters are sentinel_password=, sentinel_username=, ssl_ca_certs="},
        {"rediss://:secret@h?ssl_keyfile=/k.pem", "ssl_keyfile= without ssl_certfile="},
        {"rediss://:secret@h?ssl_cert_reqs=optional", "ssl_cert_reqs= is required"},
        {"rediss://:secret@h?ssl_ca_certs=%zz", "a % is not followed by two hex digits"},
        {"rediss://:secret@h,i", "a comma in a redis:// URL"},
        {"rediss://", "a host is empty"},
        {"rediss+sentinel://s1", "no master name"},
        {"redis+sentinel://:secret@s1:26379", "no master name"},
        {"redis+sentinel://s1:26379/", "no master name"},
        {"redis+sentinel://s1//m", "no master name"},
        {"redis+sentinel://:secret@s1,,s2/m", "a host is empty"},
        {"redis+sentinel://:secret@/m", "a host is empty"},
        {"redis+sentinel://s1,/m", "a host is empty"},
        {"redis+sentinel://s1:0/m", "a port is not 1-65535"},
        {"redis+sentinel://s1:99999/m", "a port is not 1-65535"},
        {"redis+sentinel://s1:/m", "a port is not 1-65535"},
        {"redis+sentinel://s1/m/x", "the database is not a number"},
        {"redis+sentinel://s1/m/-1", "the database is not a number"},
        {"redis+sentinel://s1/m?password=secret", "the parameters are sentinel_password="},
        {"redis+sentinel://s1/m?sentinel_password=", "the parameters are sentinel_password="},
        {"redis+sentinel://s1/m?", "the parameters are sentinel_password="},
        {"redis+sentinel://s1/m?sentinel_password=secret&", "the parameters are"},
        {"redis+sentinel://s1/m?sentinel_password=secret&sentinel_password=secret",
         "the parameters are"},
        {"redis+sentinel://s1/m?sentinel_username=secret&sentinel_username=x&"
         "sentinel_password=y",
         "the parameters are"},
        {"redis+sentinel://s1/m?sentinel_username=secret",
         "sentinel_username= without sentinel_password="},
        {"redis+sentinel://s1/m?sentinel_password=secret%4", "a % is not followed by two hex"},
        {"redis+sentinel://s1/m?sentinel_password=secret%00", "%00 in a user name"},
        {"redis+sentinel://secret:@s1/m", "a user name without a password"},
        {"redis://secret:@h", "a user name without a password"},
        {"redis://:secret%@h", "a % is not followed by two hex digits"},
        {"redis://:secret%g0@h", "a % is not followed by two hex digits"},
        {"redis://:secret%0@h", "a % is not followed by two hex digits"},
        {"redis://secret%zz:secret@h", "a % is not followed by two hex digits"},
        {"redis://:secret%00@h", "%00 in a user name, password or parameter"},
        {"redis+sentinel://s1/my master", "the master name is not"},
        {"redis+sentinel://s1/{m}", "the master name is not"},
        {"redis+sentinel://s1/m0123456789012345678901234567890123456789012345678901234567890123",
         "the master name is not"},
        {"redis+sentinel://a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q/m", "more than 16 sentinels"},
        {"redis://:secret@a,b", "a comma in a redis:// URL"},
        {"redis://a,", "a comma in a redis:// URL"},
        {"redis://", "a host is empty"},
        {"redis://h:65536", "a port is not 1-65535"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        rt_broker_url_t url;
        rt_broker_redis_config_t cfg;
        rt_broker_redis_config_init(&cfg);
        int before = lines;
        last_line[0] = '\0';
        CHECK_EQ_INT(rt_broker_url_parse(srv, cases[i].url, strlen(cases[i].url), &url, &cfg),
                     EDDY_EINVAL);
        CHECK_EQ_INT(lines, before + 1);
        if (strstr(last_line, cases[i].why) == NULL || strstr(last_line, "secret") != NULL)
            fprintf(stderr, "%s: logged \"%s\"\n", cases[i].url, last_line);
        CHECK(strstr(last_line, cases[i].why) != NULL);
        CHECK(strstr(last_line, "secret") == NULL);
        /* Left as it was. */
        CHECK(strcmp(cfg.host, "127.0.0.1") == 0 && cfg.port == 6379 && cfg.db == 0);
        CHECK(cfg.password == NULL && cfg.sentinel_master == NULL && cfg.nsentinels == 0);
        CHECK(cfg.username == NULL && cfg.sentinel_username == NULL &&
              cfg.sentinel_password == NULL);
        CHECK(!cfg.tls && !cfg.tls_insecure && cfg.tls_ca_file == NULL &&
              cfg.tls_cert_file == NULL && cfg.tls_key_file == NULL && cfg.tls_server_name == NULL);
    }
    /* Longer than the buffer. */
    char long_url[1100];
    memset(long_url, 'a', sizeof(long_url) - 1);
    long_url[sizeof(long_url) - 1] = '\0';
    memcpy(long_url, "redis://", 8);
    rt_broker_url_t url;
    rt_broker_redis_config_t cfg;
    CHECK_EQ_INT(parse(long_url, &url, &cfg), EDDY_EINVAL);
    CHECK(strstr(last_line, "longer than 1023 bytes") != NULL);
}

/* redis+cluster://: the seeds (port 6379 by default, IPv6 in brackets), the user and
 * password every node gets, database 0; a list names it as one URL; no path, query or
 * empty seed; at most RT_BROKER_CLUSTER_SEEDS_MAX seeds. */
static void test_cluster_urls(void)
{
    rt_broker_url_t url;
    rt_broker_redis_config_t cfg;
    CHECK_EQ_INT(parse("redis+cluster://u:p%40w@10.0.0.1:7000,10.0.0.2,[::1]:7002", &url, &cfg), 0);
    CHECK_EQ_INT(cfg.ncluster_nodes, 3);
    CHECK(cfg.cluster_nodes == url.cluster_seeds);
    CHECK(strcmp(cfg.cluster_nodes[0].host, "10.0.0.1") == 0 && cfg.cluster_nodes[0].port == 7000);
    CHECK(strcmp(cfg.cluster_nodes[1].host, "10.0.0.2") == 0 && cfg.cluster_nodes[1].port == 6379);
    CHECK(strcmp(cfg.cluster_nodes[2].host, "::1") == 0 && cfg.cluster_nodes[2].port == 7002);
    CHECK(strcmp(cfg.username, "u") == 0 && strcmp(cfg.password, "p@w") == 0);
    CHECK(cfg.db == 0 && cfg.sentinel_master == NULL && cfg.nsentinels == 0);
    CHECK_EQ_INT(parse("redis+cluster://h", &url, &cfg), 0);
    CHECK(cfg.ncluster_nodes == 1 && cfg.password == NULL);
    /* A redis+cluster URL over a TLS configuration: plain, the TLS fields cleared. */
    cfg.tls = cfg.tls_insecure = true;
    cfg.tls_ca_file = cfg.tls_cert_file = cfg.tls_key_file = cfg.tls_server_name = "x";
    CHECK_EQ_INT(rt_broker_url_parse(srv, "redis+cluster://h", 17, &url, &cfg), 0);
    CHECK(!cfg.tls && !cfg.tls_insecure && cfg.tls_ca_file == NULL && cfg.tls_cert_file == NULL &&
          cfg.tls_key_file == NULL && cfg.tls_server_name == NULL);
    /* A list: the cluster URL's commas are its seeds'. */
    const char *list = "redis+cluster://a:1,b:2";
    CHECK_EQ_INT(rt_broker_url_len(list), strlen(list));
    list = "redis://x,redis+cluster://a:1,b:2";
    CHECK_EQ_INT(rt_broker_url_len(list), 9);
    list = "rediss+cluster://a:1,b:2?ssl_ca_certs=/x";
    CHECK_EQ_INT(rt_broker_url_len(list), strlen(list));
    list = "redis://x,rediss+cluster://a:1,b:2";
    CHECK_EQ_INT(rt_broker_url_len(list), 9);
    static const struct {
        const char *url, *why;
    } bad[] = {
        {"redis+cluster://:secret@h/1", "a path or query"},
        {"redis+cluster://:secret@h?x=1", "a path or query"},
        {"redis+cluster://", "a host is empty"},
        {"redis+cluster://a,,b", "a host is empty"},
        {"redis+cluster://a,", "a host is empty"},
        {"redis+cluster://a:0", "a port is not 1-65535"},
        {"redis+cluster://secret:@a", "a user name without a password"},
        {"redis+cluster://a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q", "more than 16 cluster seeds"},
        {"redis+cluster://:secret@h?ssl_ca_certs=/ca.pem",
         "ssl_ parameters need rediss+cluster://"},
        {"rediss+cluster://:secret@h/0", "a path in a rediss+cluster:// URL"},
        {"rediss+cluster://:secret@h/0?ssl_ca_certs=/ca.pem", "a path in a rediss+cluster:// URL"},
        {"rediss+cluster://:secret@h?sentinel_password=secret", "the parameters are ssl_ca_certs="},
        {"rediss+cluster://:secret@h?ssl_ca_certs=", "the parameters are ssl_ca_certs="},
        {"rediss+cluster://:secret@h?ssl_keyfile=/k", "ssl_keyfile= without ssl_certfile="},
        {"rediss+cluster://:secret@h?ssl_cert_reqs=optional", "ssl_cert_reqs= is required"},
        {"rediss+cluster://:secret@a,,b?ssl_ca_certs=/ca.pem", "a host is empty"},
        {"rediss+cluster://", "a host is empty"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        rt_broker_redis_config_init(&cfg);
        int before = lines;
        CHECK_EQ_INT(rt_broker_url_parse(srv, bad[i].url, strlen(bad[i].url), &url, &cfg),
                     EDDY_EINVAL);
        CHECK_EQ_INT(lines, before + 1);
        if (strstr(last_line, bad[i].why) == NULL)
            fprintf(stderr, "%s: logged \"%s\"\n", bad[i].url, last_line);
        CHECK(strstr(last_line, bad[i].why) != NULL && strstr(last_line, "secret") == NULL);
        CHECK(cfg.ncluster_nodes == 0 && cfg.password == NULL && cfg.username == NULL);
        CHECK(!cfg.tls && cfg.tls_ca_file == NULL);
    }
}

/* rediss+cluster://: the seeds as redis+cluster:// has them, tls set and the TLS
 * parameters of rediss:// (percent-decoded) after "?"; without parameters, TLS verified
 * against the system's store and each host. */
static void test_tls_cluster_urls(void)
{
    rt_broker_url_t url;
    rt_broker_redis_config_t cfg;
    rt_broker_redis_config_init(&cfg);
    CHECK_EQ_INT(parse("rediss+cluster://u:p%3Fw@10.0.0.1:7000,[::1]:7002?ssl_ca_certs=/ca%20dir/"
                       "ca.pem&ssl_certfile=/c.pem&ssl_keyfile=/k.pem&ssl_servername=redis.example",
                       &url, &cfg),
                 0);
    CHECK(cfg.tls && !cfg.tls_insecure);
    CHECK_EQ_INT(cfg.ncluster_nodes, 2);
    CHECK(cfg.cluster_nodes == url.cluster_seeds);
    CHECK(strcmp(cfg.cluster_nodes[0].host, "10.0.0.1") == 0 && cfg.cluster_nodes[0].port == 7000);
    CHECK(strcmp(cfg.cluster_nodes[1].host, "::1") == 0 && cfg.cluster_nodes[1].port == 7002);
    CHECK(strcmp(cfg.username, "u") == 0 && strcmp(cfg.password, "p?w") == 0);
    CHECK(strcmp(cfg.tls_ca_file, "/ca dir/ca.pem") == 0);
    CHECK(strcmp(cfg.tls_cert_file, "/c.pem") == 0 && strcmp(cfg.tls_key_file, "/k.pem") == 0);
    CHECK(strcmp(cfg.tls_server_name, "redis.example") == 0);
    CHECK(cfg.db == 0 && cfg.sentinel_master == NULL && cfg.nsentinels == 0);
    CHECK_EQ_INT(parse("rediss+cluster://h?ssl_cert_reqs=none", &url, &cfg), 0);
    CHECK(cfg.tls && cfg.tls_insecure && cfg.ncluster_nodes == 1);
    CHECK(cfg.tls_ca_file == NULL && cfg.tls_server_name == NULL);
    /* The configuration's TLS fields do not linger (a URL's parameters are all there is). */
    cfg.tls_ca_file = cfg.tls_cert_file = "x";
    const char *plain = "rediss+cluster://h:7000";
    CHECK_EQ_INT(rt_broker_url_parse(srv, plain, strlen(plain), &url, &cfg), 0);
    CHECK(cfg.tls && !cfg.tls_insecure && cfg.tls_ca_file == NULL && cfg.tls_cert_file == NULL);
    CHECK(cfg.password == NULL && cfg.cluster_nodes[0].port == 7000);
}

/* A session tag of 8 letters in slot (the first found, counting in base 26). */
static void session_tag_in(unsigned slot, char tag[RT_BROKER_SESSION_TAG_LEN + 1])
{
    for (unsigned n = 0;; n++) {
        unsigned v = n;
        for (int i = RT_BROKER_SESSION_TAG_LEN - 1; i >= 0; i--, v /= 26)
            tag[i] = (char)('a' + v % 26);
        tag[RT_BROKER_SESSION_TAG_LEN] = '\0';
        if (rt_broker_keyslot(tag, RT_BROKER_SESSION_TAG_LEN) == slot)
            return;
    }
}

/* A broker configuration with bad cluster fields is refused (no thread started). Its keys
 * must be in the slot it follows (cluster_slot): the node keys' tag and the session tag. */
static void test_bad_cluster_config(void)
{
    rt_broker_redis_config_t cfg;
    rt_broker_redis_config_init(&cfg);
    cfg.srv = srv;
    rt_broker_addr_t addrs[1] = {{"127.0.0.1", 7000}};
    char in_slot[RT_BROKER_SESSION_TAG_LEN + 1], elsewhere[RT_BROKER_SESSION_TAG_LEN + 1];
    session_tag_in(1584, in_slot); /* the slot of "3" */
    session_tag_in(1585, elsewhere);
    cfg.cluster_nodes = addrs;
    cfg.ncluster_nodes = 1;
    cfg.cluster_tag = "3";
    cfg.session_tag = in_slot;
    cfg.cluster_slot = RT_BROKER_CLUSTER_SLOTS; /* out of range */
    CHECK(rt_broker_redis_new(&cfg, NULL, NULL) == NULL);
    cfg.cluster_slot = 1584;
    cfg.cluster_tag = "a}b";
    CHECK(rt_broker_redis_new(&cfg, NULL, NULL) == NULL);
    cfg.cluster_tag = "4"; /* slot 14039 */
    CHECK(rt_broker_redis_new(&cfg, NULL, NULL) == NULL);
    cfg.cluster_tag = "3";
    cfg.db = 1; /* a cluster has database 0 only */
    CHECK(rt_broker_redis_new(&cfg, NULL, NULL) == NULL);
    cfg.db = 0;
    cfg.prefix = "eddy{x}:"; /* the keys' hash tag would be the prefix's */
    CHECK(rt_broker_redis_new(&cfg, NULL, NULL) == NULL);
    cfg.prefix = "eddy:";
    cfg.session_tag = "short";
    CHECK(rt_broker_redis_new(&cfg, NULL, NULL) == NULL);
    cfg.session_tag = elsewhere;
    CHECK(rt_broker_redis_new(&cfg, NULL, NULL) == NULL);
    cfg.session_tag = NULL; /* random: in any slot */
    CHECK(rt_broker_redis_new(&cfg, NULL, NULL) == NULL);
    CHECK(strstr(last_line, "bad Redis broker configuration") != NULL);
    /* The sharded broker of a cluster needs seeds and no server. */
    CHECK(rt_broker_cluster_new(&cfg, NULL, NULL) == NULL); /* srv set */
}

/* A broker configuration with bad Sentinel fields is refused (no thread started). */
static void test_bad_sentinel_config(void)
{
    rt_broker_redis_config_t cfg;
    rt_broker_redis_config_init(&cfg);
    cfg.srv = srv;
    rt_broker_addr_t addrs[2] = {{"127.0.0.1", 26379}, {"127.0.0.1", 0}};
    cfg.sentinel_master = "m";
    cfg.sentinels = addrs;
    cfg.nsentinels = 0;
    CHECK(rt_broker_redis_new(&cfg, NULL, NULL) == NULL);
    cfg.nsentinels = 2; /* the second's port */
    CHECK(rt_broker_redis_new(&cfg, NULL, NULL) == NULL);
    cfg.nsentinels = 1;
    cfg.sentinel_master = "";
    CHECK(rt_broker_redis_new(&cfg, NULL, NULL) == NULL);
    CHECK(strstr(last_line, "bad Redis broker configuration") != NULL);
}

int main(void)
{
    srv = eddy_server_new("127.0.0.1", 0);
    CHECK(srv != NULL);
    if (srv == NULL)
        return test_report("test_rt_broker_url");
    eddy_on_log(srv, collect);
    test_redis_urls();
    test_sentinel_urls();
    test_percent_decoding();
    test_tls_urls();
    test_lists();
    test_bad_forms();
    test_bad_sentinel_config();
    test_cluster_urls();
    test_tls_cluster_urls();
    test_bad_cluster_config();
    eddy_server_free(srv);
    return test_report("test_rt_broker_url");
}

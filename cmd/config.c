/* SPDX-License-Identifier: MIT */
/*
 * The configuration file: INI read by libinih (Debian's libinih-dev), then the
 * EDDY_<SECTION>_<KEY> environment variables. Server settings are validated by the
 * library itself (eddy_server_set() on a scratch server), so the daemon accepts exactly
 * the keys and values the library does.
 */
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin.h"
#include "auth.h"
#include "cmd.h"
#include "realtime.h"

extern char **environ;

static const char *const sections[] = {"server", "tls",   "admin",    "static", "websocket", "log",
                                       "auth",   "proxy", "socketio", "api",    "broker"};

/* Engine keys that live in a section other than [server]. */
static const char *const tls_engine_keys[] = {"ssl_cert_file", "ssl_key_file", "ssl_ciphers",
                                              "ssl_protocols"};
static const char *const log_engine_keys[] = {"log_level", "http_access_log"};

/* Engine keys holding a path, made absolute. */
static bool is_path_key(const char *key)
{
    return strcmp(key, "ssl_cert_file") == 0 || strcmp(key, "ssl_key_file") == 0 ||
           strcmp(key, "http_access_log") == 0 || strcmp(key, "pid_file") == 0 ||
           strcmp(key, "log_file") == 0 || strcmp(key, "document_root") == 0;
}

static bool in_list(const char *key, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(key, list[i]) == 0)
            return true;
    return false;
}

#define IN_LIST(key, list) in_list(key, list, sizeof(list) / sizeof(list[0]))

struct parse_ctx {
    cfg_t *cfg;
    FILE *file;
    const char *origin; /* the file name as given, or the variable's name */
    int line;           /* 0 for the environment */
    eddy_server_t *scratch;
    char *err;
    size_t err_len;
    bool failed;
};

static void fail(struct parse_ctx *ctx, const char *section, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Records the first error only: it is the one the user fixes first. */
static void fail(struct parse_ctx *ctx, const char *section, const char *key, const char *fmt, ...)
{
    if (ctx->failed)
        return;
    ctx->failed = true;
    int n;
    if (ctx->line > 0)
        n = snprintf(ctx->err, ctx->err_len, "%s:%d: [%s] %s: ", ctx->origin, ctx->line, section,
                     key);
    else
        n = snprintf(ctx->err, ctx->err_len, "%s: [%s] %s: ", ctx->origin, section, key);
    if (n < 0 || (size_t)n >= ctx->err_len)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->err + n, ctx->err_len - (size_t)n, fmt, ap);
    va_end(ap);
}

static char *xstrdup(const char *s)
{
    char *copy = strdup(s);
    if (copy == NULL) {
        fputs("eddy: out of memory\n", stderr);
        exit(EXIT_FAIL);
    }
    return copy;
}

static char *absolute(const cfg_t *cfg, const char *path)
{
    if (path[0] == '/' || path[0] == '\0')
        return xstrdup(path);
    size_t len = strlen(cfg->base_dir) + strlen(path) + 2;
    char *out = malloc(len);
    if (out == NULL) {
        fputs("eddy: out of memory\n", stderr);
        exit(EXIT_FAIL);
    }
    snprintf(out, len, "%s/%s", cfg->base_dir, path);
    return out;
}

static bool parse_int(const char *value, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(value, &end, 10);
    if (errno != 0 || end == value || *end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

static void set_string(char **field, char *value)
{
    free(*field);
    *field = value;
}

/* Keys the daemon itself reads. Returns true if section.key is one of them. */
static bool daemon_key(struct parse_ctx *ctx, const char *section, const char *key,
                       const char *value)
{
    cfg_t *cfg = ctx->cfg;
    long n;
    bool tls = strcmp(section, "tls") == 0, admin = strcmp(section, "admin") == 0;
    const char *why_admin;
    if (strcmp(key, "host") == 0 && (strcmp(section, "server") == 0 || tls || admin)) {
        if (value[0] == '\0')
            fail(ctx, section, key, "an address is needed");
        set_string(tls ? &cfg->tls_host : admin ? &cfg->admin_host : &cfg->host, xstrdup(value));
    } else if (strcmp(key, "port") == 0 && (strcmp(section, "server") == 0 || tls || admin)) {
        if (!parse_int(value, 0, 65535, &n))
            fail(ctx, section, key, "\"%s\" is not a port (0-65535)", value);
        else
            *(tls ? &cfg->tls_port : admin ? &cfg->admin_port : &cfg->port) = (int)n;
    } else if (strcmp(section, "server") == 0 && strcmp(key, "pid_file") == 0) {
        if (value[0] == '\0')
            fail(ctx, section, key, "a file name is needed");
        set_string(&cfg->pid_file, absolute(cfg, value));
    } else if (strcmp(section, "server") == 0 &&
               (strcmp(key, "max_wait_time") == 0 || strcmp(key, "shutdown_delay") == 0)) {
        bool wait = key[0] == 'm';
        char *end;
        double v = strtod(value, &end);
        if (end == value || *end != '\0' || !((wait ? v > 0 : v >= 0) && v <= 3600))
            fail(ctx, section, key, "\"%s\" is not a number of seconds %s", value,
                 wait ? "(0-3600]" : "[0-3600]");
        else
            *(wait ? &cfg->max_wait_time : &cfg->shutdown_delay) = v;
    } else if (strcmp(section, "static") == 0 && strcmp(key, "document_root") == 0) {
        set_string(&cfg->document_root, value[0] != '\0' ? absolute(cfg, value) : NULL);
    } else if (strcmp(section, "static") == 0 && strcmp(key, "index") == 0) {
        if (strchr(value, '/') != NULL || strcmp(value, "..") == 0 || strcmp(value, ".") == 0)
            fail(ctx, section, key, "\"%s\" is not a file name", value);
        set_string(&cfg->index, xstrdup(value));
    } else if (strcmp(section, "websocket") == 0 && strcmp(key, "path") == 0) {
        if (value[0] != '/')
            fail(ctx, section, key, "\"%s\" does not start with /", value);
        set_string(&cfg->ws_path, xstrdup(value));
    } else if (strcmp(section, "proxy") == 0) {
        const char *why = NULL;
        int rc = proxy_check_key(key, value, &why);
        if (rc < 0)
            return false;
        if (rc > 0)
            fail(ctx, section, key, "\"%s\": %s", value, why);
    } else if (strcmp(section, "log") == 0 && strcmp(key, "log_file") == 0) {
        set_string(&cfg->log_file, value[0] != '\0' ? absolute(cfg, value) : NULL);
    } else if (admin_check_key(section, key, value, &why_admin) > 0) {
        if (why_admin != NULL)
            fail(ctx, section, key, "%s", why_admin);
    } else {
        return false;
    }
    return true;
}

static bool engine_key(struct parse_ctx *ctx, const char *section, const char *key,
                       const char *value)
{
    bool in_tls = IN_LIST(key, tls_engine_keys), in_log = IN_LIST(key, log_engine_keys);
    if (strcmp(key, "log_file") == 0)
        in_log = true;
    if (strcmp(section, "server") == 0) {
        if (in_tls || in_log) {
            fail(ctx, section, key, "belongs in [%s]", in_tls ? "tls" : "log");
            return true;
        }
    } else if (!(strcmp(section, "tls") == 0 && in_tls) &&
               !(strcmp(section, "log") == 0 && in_log)) {
        return false;
    }
    int rc = eddy_server_set(ctx->scratch, key, value);
    if (rc == EDDY_EKEY)
        return false;
    if (rc < 0)
        fail(ctx, section, key, "bad value \"%s\" (%s)", value, eddy_strerror(rc));
    return true;
}

static void add_entry(cfg_t *cfg, const char *section, const char *key, const char *value,
                      bool engine)
{
    cfg_entry_t *grown = realloc(cfg->entries, (cfg->entry_count + 1) * sizeof(*grown));
    if (grown == NULL) {
        fputs("eddy: out of memory\n", stderr);
        exit(EXIT_FAIL);
    }
    cfg->entries = grown;
    cfg_entry_t *e = NULL;
    for (size_t i = 0; i < cfg->entry_count; i++)
        if (strcmp(grown[i].section, section) == 0 && strcmp(grown[i].key, key) == 0)
            e = &grown[i];
    if (e != NULL) { /* a later line or the environment wins */
        free(e->value);
    } else {
        e = &grown[cfg->entry_count++];
        e->section = xstrdup(section);
        e->key = xstrdup(key);
    }
    e->value = engine && is_path_key(key) && strcmp(value, "stderr") != 0 && strcmp(value, "-") != 0
                   ? absolute(cfg, value)
                   : xstrdup(value);
    e->engine = engine;
}

static int on_pair(void *user, const char *section, const char *key, const char *value)
{
    struct parse_ctx *ctx = user;
    if (!IN_LIST(section, sections)) {
        fail(ctx, section, key, "unknown section [%s]", section);
        return 0;
    }
    bool was_failed = ctx->failed;
    if (strcmp(section, "auth") == 0) {
        auth_config_t scratch;
        char why[160];
        auth_config_init(&scratch);
        int rc = auth_config_set(&scratch, key, value, why, sizeof(why));
        auth_config_clear(&scratch);
        if (rc == EDDY_EKEY)
            fail(ctx, section, key, "unknown key");
        else if (rc < 0)
            fail(ctx, section, key, "%s", why);
        else
            add_entry(ctx->cfg, section, key, value, false);
    } else if (realtime_section(section)) {
        char why[160];
        int rc = realtime_check_key(section, key, value, why, sizeof(why));
        if (rc == EDDY_EKEY)
            fail(ctx, section, key, "unknown key");
        else if (rc < 0)
            fail(ctx, section, key, "%s", why);
        else
            add_entry(ctx->cfg, section, key, value, false);
    } else if (daemon_key(ctx, section, key, value)) {
        add_entry(ctx->cfg, section, key, value, false);
    } else if (engine_key(ctx, section, key, value)) {
        add_entry(ctx->cfg, section, key, value, true);
    } else {
        fail(ctx, section, key, "unknown key");
    }
    return ctx->failed && !was_failed ? 0 : 1;
}

/* fgets for libinih that counts lines: Debian builds it without INI_HANDLER_LINENO. */
static char *read_line(char *str, int num, void *stream)
{
    struct parse_ctx *ctx = stream;
    ctx->line++;
    char *got = fgets(str, num, ctx->file);
    /* libinih reads lines into a fixed buffer: a longer one would be cut and its rest
     * parsed as a line of its own. */
    if (got != NULL && strchr(got, '\n') == NULL && !feof(ctx->file)) {
        if (!ctx->failed)
            snprintf(ctx->err, ctx->err_len, "%s:%d: line longer than %d bytes", ctx->origin,
                     ctx->line, num - 2);
        ctx->failed = true;
        return NULL;
    }
    return got;
}

static void apply_env(struct parse_ctx *ctx)
{
    for (char **env = environ; *env != NULL && !ctx->failed; env++) {
        if (strncmp(*env, "EDDY_", 5) != 0)
            continue;
        const char *eq = strchr(*env, '=');
        if (eq == NULL)
            continue;
        for (size_t s = 0; s < sizeof(sections) / sizeof(sections[0]); s++) {
            size_t slen = strlen(sections[s]);
            const char *p = *env + 5;
            bool match = (size_t)(eq - p) > slen + 1 && p[slen] == '_';
            for (size_t i = 0; match && i < slen; i++)
                match = p[i] == toupper((unsigned char)sections[s][i]);
            if (!match)
                continue;
            char name[128], key[128];
            size_t name_len = (size_t)(eq - *env), key_len = (size_t)(eq - (p + slen + 1));
            if (name_len >= sizeof(name) || key_len >= sizeof(key))
                break;
            memcpy(name, *env, name_len);
            name[name_len] = '\0';
            for (size_t i = 0; i < key_len; i++)
                key[i] = (char)tolower((unsigned char)p[slen + 1 + i]);
            key[key_len] = '\0';
            char origin[160];
            snprintf(origin, sizeof(origin), "environment variable %s", name);
            ctx->origin = origin;
            ctx->line = 0;
            on_pair(ctx, sections[s], key, eq + 1);
            ctx->origin = NULL;
            break;
        }
    }
}

/* The scratch server's lines (a bad value, with its key) are not shown: the daemon
 * reports the error itself, with the file and line. */
static void quiet_log(eddy_server_t *srv, int level, int loop, const char *msg, size_t len,
                      void *user_data)
{
}

const char *cfg_level_name(int level)
{
    static const char *const names[] = {"trace",   "debug", "info", "notice",
                                        "warning", "error", "none"};
    return level >= 0 && level <= EDDY_LOG_NONE ? names[level] : "?";
}

cfg_t *cfg_load(const char *path, const char *base_dir, char *err, size_t err_len)
{
    cfg_t *cfg = calloc(1, sizeof(*cfg));
    eddy_server_t *scratch = eddy_server_new(NULL, 0);
    if (cfg == NULL || scratch == NULL) {
        snprintf(err, err_len, "out of memory");
        free(cfg);
        eddy_server_free(scratch);
        return NULL;
    }
    eddy_on_log(scratch, quiet_log);
    char cwd[4096];
    if (base_dir == NULL)
        base_dir = getcwd(cwd, sizeof(cwd)) != NULL ? cwd : "/";
    cfg->base_dir = xstrdup(base_dir);
    cfg->host = xstrdup("127.0.0.1");
    cfg->port = 9501;
    cfg->pid_file = absolute(cfg, "eddy.pid");
    cfg->max_wait_time = 10;
    cfg->tls_host = xstrdup("127.0.0.1");
    cfg->admin_host = xstrdup("127.0.0.1");
    cfg->document_root = absolute(cfg, "www");
    cfg->index = xstrdup("index.html");
    cfg->ws_path = xstrdup("/ws");

    struct parse_ctx ctx = {.cfg = cfg, .scratch = scratch, .err = err, .err_len = err_len};
    if (path != NULL) {
        cfg->path = path[0] == '/' ? xstrdup(path) : absolute(cfg, path);
        ctx.file = fopen(path, "r");
        if (ctx.file == NULL) {
            snprintf(err, err_len, "%s: %s", path, strerror(errno));
            goto failed;
        }
        ctx.origin = path;
        int rc = ini_parse_stream(read_line, &ctx, on_pair, &ctx);
        fclose(ctx.file);
        if (rc > 0 && !ctx.failed) {
            snprintf(err, err_len, "%s:%d: syntax error (expected [section] or key = value)", path,
                     rc);
            goto failed;
        }
        if (rc < 0 && !ctx.failed) {
            snprintf(err, err_len, "%s: cannot be read", path);
            goto failed;
        }
    }
    if (!ctx.failed)
        apply_env(&ctx);
    if (ctx.failed)
        goto failed;
    if (cfg->tls_port != 0 && (cfg_get(cfg, "tls", "ssl_cert_file") == NULL ||
                               cfg_get(cfg, "tls", "ssl_key_file") == NULL)) {
        snprintf(err, err_len, "%s: [tls] port %d needs ssl_cert_file and ssl_key_file",
                 path != NULL ? path : "configuration", cfg->tls_port);
        goto failed;
    }
    auth_config_t auth;
    char why[256];
    if (auth_config_from(cfg, &auth, why, sizeof(why)) < 0) {
        snprintf(err, err_len, "%s: %s", path != NULL ? path : "configuration", why);
        goto failed;
    }
    auth_config_clear(&auth);
    if (realtime_check(cfg, why, sizeof(why)) < 0) {
        snprintf(err, err_len, "%s: %s", path != NULL ? path : "configuration", why);
        goto failed;
    }
    eddy_options_t opts;
    eddy_server_get_options(scratch, &opts);
    cfg->log_level = opts.log_level;
    eddy_server_free(scratch);
    return cfg;

failed:
    eddy_server_free(scratch);
    cfg_free(cfg);
    return NULL;
}

const char *cfg_get(const cfg_t *cfg, const char *section, const char *key)
{
    for (size_t i = 0; i < cfg->entry_count; i++)
        if (strcmp(cfg->entries[i].section, section) == 0 && strcmp(cfg->entries[i].key, key) == 0)
            return cfg->entries[i].value;
    return NULL;
}

void cfg_free(cfg_t *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t i = 0; i < cfg->entry_count; i++) {
        free(cfg->entries[i].section);
        free(cfg->entries[i].key);
        free(cfg->entries[i].value);
    }
    free(cfg->entries);
    free(cfg->path);
    free(cfg->base_dir);
    free(cfg->host);
    free(cfg->pid_file);
    free(cfg->tls_host);
    free(cfg->admin_host);
    free(cfg->document_root);
    free(cfg->index);
    free(cfg->ws_path);
    free(cfg->log_file);
    free(cfg);
}

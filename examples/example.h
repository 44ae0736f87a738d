/* SPDX-License-Identifier: MIT */
/*
 * Shared by the examples: command-line handling and running a server until SIGINT or
 * SIGTERM. Every example accepts:
 *   --host ADDR        listen address (default 127.0.0.1)
 *   --port N           listen port (default 9501; 0 picks a free one, logged at start)
 *   --tls-port N       also listen for HTTPS/WSS on port N (needs --set ssl_cert_file=...
 *                      and --set ssl_key_file=...)
 *   --set KEY=VALUE    any eddy_server_set() setting; may be repeated
 *   --help, --version
 * and the options its example_spec_t lists. Anything else is refused with exit status 2.
 * Settings apply in this order, the later winning: eddy's defaults, the example's own
 * (example_spec_t.settings), then each --set as given.
 */
#ifndef EDDY_EXAMPLE_H
#define EDDY_EXAMPLE_H

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eddy.h"

/* An option an example adds to the common ones: a flag when arg is NULL, else it takes a
 * value, named arg in --help. */
typedef struct example_option_spec {
    const char *name;
    const char *arg;
    const char *help;
} example_option_spec_t;

/* A setting (eddy_server_set key and value) the example uses unless --set says otherwise. */
typedef struct example_setting {
    const char *key;
    const char *value;
} example_setting_t;

/* What an example is, for --help and for checking its command line. options and settings
 * end with an entry whose first field is NULL; either may be NULL. */
typedef struct example_spec {
    const char *name;
    const char *summary;
    const example_option_spec_t *options;
    const example_setting_t *settings;
} example_spec_t;

static eddy_server_t *example_server;

static void example_on_signal(int signo)
{
    (void)signo;
    if (example_server != NULL)
        eddy_server_stop(example_server); /* async-signal-safe */
}

/* True if flag (e.g. "--no-disconnect") is among the arguments. */
static inline int example_has_flag(int argc, char **argv, const char *flag)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], flag) == 0)
            return 1;
    }
    return 0;
}

/* The value after option (e.g. "--page index.html"), or fallback. */
static inline const char *example_option(int argc, char **argv, const char *option,
                                         const char *fallback)
{
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], option) == 0)
            return argv[i + 1];
    }
    return fallback;
}

/* One option of --help: its name in a column of 18, its help wrapped to 80 columns beside
 * it (or under it, for a longer name). */
static inline void example_usage_option(FILE *out, const char *left, const char *help)
{
    enum { INDENT = 21, WIDTH = 80 };
    int col = INDENT;
    if (strlen(left) > INDENT - 3)
        fprintf(out, "  %s\n%*s", left, INDENT, "");
    else
        fprintf(out, "  %-18s ", left);
    for (const char *w = help; *w != '\0';) {
        int n = (int)strcspn(w, " ");
        if (col > INDENT && col + 1 + n > WIDTH)
            col = fprintf(out, "\n%*s", INDENT, "") - 1;
        else if (col > INDENT)
            col += fprintf(out, " ");
        col += fprintf(out, "%.*s", n, w);
        for (w += n; *w == ' '; w++)
            ;
    }
    fputc('\n', out);
}

static inline void example_usage(const example_spec_t *spec, FILE *out)
{
    fprintf(out,
            "usage: %s [OPTION]...\n%s\n\n"
            "Options:\n"
            "  --host ADDR        listen address (default 127.0.0.1)\n"
            "  --port N           listen port, 0-65535 (default 9501; 0 picks a free one,\n"
            "                     logged at start)\n"
            "  --tls-port N       also listen for HTTPS/WSS on port N (needs --set\n"
            "                     ssl_cert_file=... and --set ssl_key_file=...)\n"
            "  --set KEY=VALUE    any eddy setting (README \"Settings\"); may be repeated\n",
            spec->name, spec->summary);
    for (const example_option_spec_t *opt = spec->options; opt != NULL && opt->name != NULL;
         opt++) {
        char left[64];
        snprintf(left, sizeof(left), "%s%s%s", opt->name, opt->arg != NULL ? " " : "",
                 opt->arg != NULL ? opt->arg : "");
        example_usage_option(out, left, opt->help);
    }
    fputs("  --help             print this help and exit\n"
          "  --version          print the version and exit\n\n"
          "Settings apply in this order, the later winning: eddy's defaults, this example's\n"
          "defaults, then each --set in the order given. This example's defaults:",
          out);
    if (spec->settings == NULL || spec->settings[0].key == NULL)
        fputs(" none.\n", out);
    else
        fputc('\n', out);
    for (const example_setting_t *set = spec->settings; set != NULL && set->key != NULL; set++)
        fprintf(out, "  %s=%s\n", set->key, set->value);
}

static inline void example_fail(const example_spec_t *spec, const char *what, const char *arg)
{
    fprintf(stderr, "%s: %s%s%s (--help lists the options)\n", spec->name, what,
            arg != NULL ? ": " : "", arg != NULL ? arg : "");
    exit(2);
}

/* Parses text, decimal digits only, as a number from min to max into *v: false if it is
 * not one. */
static inline int example_parse_number(const char *text, unsigned long min, unsigned long max,
                                       unsigned long *v)
{
    char *end;
    errno = 0;
    *v = strtoul(text, &end, 10);
    return text[0] >= '0' && text[0] <= '9' && *end == '\0' && errno == 0 && *v >= min && *v <= max;
}

/* Parses a port number, 0-65535, or exits with status 2. */
static inline int example_port(const example_spec_t *spec, const char *option, const char *text)
{
    unsigned long port;
    if (!example_parse_number(text, 0, 65535, &port)) {
        fprintf(stderr, "%s: %s wants a port number from 0 to 65535, got '%s'\n", spec->name,
                option, text);
        exit(2);
    }
    return (int)port;
}

/* The value of option (e.g. "--history 50") as a number from min to max, or fallback when
 * the option is absent; exits with status 2 when the value is not such a number. */
static inline unsigned long example_number(int argc, char **argv, const example_spec_t *spec,
                                           const char *option, unsigned long min, unsigned long max,
                                           unsigned long fallback)
{
    const char *text = example_option(argc, argv, option, NULL);
    unsigned long v = fallback;
    if (text != NULL && !example_parse_number(text, min, max, &v)) {
        fprintf(stderr, "%s: %s wants a number from %lu to %lu, got '%s'\n", spec->name, option,
                min, max, text);
        exit(2);
    }
    return v;
}

/* 1 if arg is an option that takes a value, 0 if a flag, -1 if spec knows no such option. */
static inline int example_arity(const example_spec_t *spec, const char *arg)
{
    static const char *const with_value[] = {"--host", "--port", "--tls-port", "--set"};
    for (size_t k = 0; k < sizeof(with_value) / sizeof(with_value[0]); k++) {
        if (strcmp(arg, with_value[k]) == 0)
            return 1;
    }
    for (const example_option_spec_t *opt = spec->options; opt != NULL && opt->name != NULL;
         opt++) {
        if (strcmp(arg, opt->name) == 0)
            return opt->arg != NULL;
    }
    return -1;
}

/* Checks the command line against the common options and spec's (exits 0 after --help or
 * --version, 2 on anything unknown or malformed), creates the server from --host/--port
 * (the last of each counts), and applies the example's settings, then every --set in
 * order. Exits on error. */
static inline eddy_server_t *example_new(int argc, char **argv, const example_spec_t *spec)
{
    /* The examples print what they see; line buffering keeps output ordered for pipes. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *host = "127.0.0.1", *port = "9501", *tls_port = NULL;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            example_usage(spec, stdout);
            exit(0);
        }
        if (strcmp(arg, "--version") == 0) {
            printf("%s (eddy %s)\n", spec->name, EDDY_VERSION_STRING);
            exit(0);
        }
        int arity = example_arity(spec, arg);
        if (arity < 0)
            example_fail(spec, arg[0] == '-' ? "unknown option" : "unexpected argument", arg);
        if (arity == 0)
            continue;
        if (++i >= argc)
            example_fail(spec, "option needs a value", arg);
        if (strcmp(arg, "--host") == 0)
            host = argv[i];
        else if (strcmp(arg, "--port") == 0)
            port = argv[i];
        else if (strcmp(arg, "--tls-port") == 0)
            tls_port = argv[i];
        else if (strcmp(arg, "--set") == 0 && strchr(argv[i], '=') == NULL)
            example_fail(spec, "--set wants KEY=VALUE, got", argv[i]);
    }
    int port_num = example_port(spec, "--port", port);
    int tls_port_num = tls_port != NULL ? example_port(spec, "--tls-port", tls_port) : 0;

    eddy_server_t *srv = eddy_server_new(host, port_num);
    if (srv == NULL) {
        fprintf(stderr, "cannot create a server for %s:%d\n", host, port_num);
        exit(1);
    }
    if (tls_port != NULL &&
        eddy_server_add_listener(srv, host, tls_port_num, EDDY_LISTEN_TLS) < 0) {
        fprintf(stderr, "cannot add a TLS listener on %s:%d\n", host, tls_port_num);
        exit(2);
    }
    for (const example_setting_t *set = spec->settings; set != NULL && set->key != NULL; set++) {
        if (eddy_server_set(srv, set->key, set->value) != 0)
            exit(2);
    }
    for (int i = 1; i < argc; i++) {
        int is_set = strcmp(argv[i], "--set") == 0;
        if (example_arity(spec, argv[i]) == 1)
            i++;
        if (!is_set)
            continue;
        char *eq = strchr(argv[i], '=');
        *eq = '\0';
        int rc = eddy_server_set(srv, argv[i], eq + 1);
        *eq = '=';
        if (rc != 0)
            exit(2); /* eddy logged which key or value was wrong */
    }
    return srv;
}

/* Runs srv until SIGINT/SIGTERM (without freeing it) and returns the exit status. */
static inline int example_serve(eddy_server_t *srv)
{
    example_server = srv;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = example_on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    int rc = eddy_server_start(srv);
    if (rc != 0)
        fprintf(stderr, "eddy_server_start: %s\n", eddy_strerror(rc));
    example_server = NULL;
    return rc == 0 ? 0 : 1;
}

/* Runs srv until SIGINT/SIGTERM, frees it, and returns the exit status. */
static inline int example_run(eddy_server_t *srv)
{
    int rc = example_serve(srv);
    eddy_server_free(srv);
    return rc;
}

/* Writes "prefix", the bytes of data (which may hold NULs) and "suffix" to stdout, as one
 * piece: with several loop threads, lines printed at the same time must not interleave. */
static inline void example_print(const char *prefix, const char *data, size_t len,
                                 const char *suffix)
{
    flockfile(stdout);
    fputs(prefix, stdout);
    fwrite(data, 1, len, stdout);
    fputs(suffix, stdout);
    funlockfile(stdout);
}

#endif /* EDDY_EXAMPLE_H */

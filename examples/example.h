/*
 * Shared by the examples: command-line handling and running a server until SIGINT or
 * SIGTERM. Every example accepts:
 *   --host ADDR        listen address (default 127.0.0.1)
 *   --port N           listen port (default 9501; 0 picks a free one, logged at start)
 *   --tls-port N       also listen for HTTPS/WSS on port N (needs --set ssl_cert_file=...
 *                      and --set ssl_key_file=...)
 *   --set KEY=VALUE    any eddy_server_set() setting; may be repeated
 */
#ifndef EDDY_EXAMPLE_H
#define EDDY_EXAMPLE_H

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eddy.h"

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

/* The value after option (e.g. "--heartbeat-idle-time 62"), or fallback. */
static inline const char *example_option(int argc, char **argv, const char *option,
                                         const char *fallback)
{
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], option) == 0)
            return argv[i + 1];
    }
    return fallback;
}

/* Creates the server from --host/--port and applies every --set. Exits on error. */
static inline eddy_server_t *example_new(int argc, char **argv)
{
    /* The examples print what they see; line buffering keeps output ordered for pipes. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *host = example_option(argc, argv, "--host", "127.0.0.1");
    int port = atoi(example_option(argc, argv, "--port", "9501"));
    eddy_server_t *srv = eddy_server_new(host, port);
    if (srv == NULL) {
        fprintf(stderr, "cannot create a server for %s:%d\n", host, port);
        exit(1);
    }
    const char *tls_port = example_option(argc, argv, "--tls-port", NULL);
    if (tls_port != NULL &&
        eddy_server_add_listener(srv, host, atoi(tls_port), EDDY_LISTEN_TLS) < 0) {
        fprintf(stderr, "cannot add a TLS listener on %s:%s\n", host, tls_port);
        exit(2);
    }
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "--set") != 0)
            continue;
        char *eq = strchr(argv[i + 1], '=');
        if (eq == NULL) {
            fprintf(stderr, "--set wants KEY=VALUE, got %s\n", argv[i + 1]);
            exit(2);
        }
        *eq = '\0';
        if (eddy_server_set(srv, argv[i + 1], eq + 1) != 0)
            exit(2); /* eddy logged which key or value was wrong */
        *eq = '=';
    }
    return srv;
}

/* Sets a default of this example unless the command line sets key with --set. */
static inline void example_default(eddy_server_t *srv, int argc, char **argv, const char *key,
                                   const char *value)
{
    size_t key_len = strlen(key);
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "--set") == 0 && strncmp(argv[i + 1], key, key_len) == 0 &&
            argv[i + 1][key_len] == '=')
            return;
    }
    if (eddy_server_set(srv, key, value) != 0)
        exit(2);
}

/* Sets a setting the example needs; exits if eddy refuses it. */
static inline void example_set(eddy_server_t *srv, const char *key, const char *value)
{
    if (eddy_server_set(srv, key, value) != 0)
        exit(2);
}

/* Runs srv until SIGINT/SIGTERM, frees it, and returns the exit status. */
static inline int example_run(eddy_server_t *srv)
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
    eddy_server_free(srv);
    return rc == 0 ? 0 : 1;
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

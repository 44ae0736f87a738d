/* SPDX-License-Identifier: MIT */
/*
 * Client-side cost of eddy's WebSocket client: sends MESSAGES messages of SIZE bytes to an
 * echo server, WINDOW in flight, and prints the CPU time this process spent (user + system,
 * getrusage) per echoed message, handshake excluded. bench/client/run drives it beside the
 * Node ws and python-websockets clients.
 *
 * Usage: eddy-client-bench URL [MESSAGES [SIZE [WINDOW]]]
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "eddy.h"

static long total, size, window;
static atomic_long sent, received;
static char *payload;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int phase; /* 1: open, 2: all echoed, -1: failed */

static void set_phase(int p)
{
    pthread_mutex_lock(&lock);
    phase = p;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
}

static void on_open(eddy_client_t *client, const eddy_client_open_t *open, void *user_data)
{
    set_phase(1);
}

static void on_message(eddy_client_t *client, const eddy_frame_t *frame, void *user_data)
{
    long got = atomic_fetch_add(&received, 1) + 1;
    if (got == total) {
        set_phase(2);
        return;
    }
    /* Keep WINDOW in flight: each echo sends the next message, from the loop. */
    if (atomic_load(&sent) < total) {
        atomic_fetch_add(&sent, 1);
        eddy_client_push(client, payload, (size_t)size, EDDY_WS_OPCODE_BINARY, EDDY_WS_FLAG_FIN);
    }
}

static void on_error(eddy_client_t *client, const eddy_client_error_t *error, void *user_data)
{
    fprintf(stderr, "eddy-client-bench: %s\n", error->message);
    set_phase(-1);
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
           (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static int wait_phase(int want)
{
    pthread_mutex_lock(&lock);
    while (phase != want && phase != -1)
        pthread_cond_wait(&cond, &lock);
    int p = phase;
    pthread_mutex_unlock(&lock);
    return p;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: eddy-client-bench URL [MESSAGES [SIZE [WINDOW]]]\n");
        return 2;
    }
    total = argc > 2 ? atol(argv[2]) : 200000;
    size = argc > 3 ? atol(argv[3]) : 20;
    window = argc > 4 ? atol(argv[4]) : 1;
    if (window > total)
        window = total;
    payload = calloc(1, (size_t)size + 1);
    memset(payload, 'x', (size_t)size);
    eddy_client_options_t opts;
    eddy_client_options_init(&opts);
    opts.url = argv[1];
    opts.on_open = on_open;
    opts.on_message = on_message;
    opts.on_error = on_error;
    eddy_client_t *client = eddy_client_new(NULL, &opts);
    if (client == NULL || eddy_client_connect(client) != 0 || wait_phase(1) != 1)
        return 1;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    double cpu0 = cpu_seconds();
    for (long i = 0; i < window; i++) {
        atomic_fetch_add(&sent, 1);
        eddy_client_push(client, payload, (size_t)size, EDDY_WS_OPCODE_BINARY, EDDY_WS_FLAG_FIN);
    }
    if (wait_phase(2) != 2)
        return 1;
    double cpu = cpu_seconds() - cpu0;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double wall = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("eddy %ld messages of %ld bytes: %.2f us CPU per message, %.0f messages/s\n", total,
           size, cpu / total * 1e6, total / wall);
    eddy_client_free(client);
    free(payload);
    return 0;
}

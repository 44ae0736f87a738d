/* SPDX-License-Identifier: MIT */
/*
 * For unit tests that need a real redis-server (Debian's; `make deps-test` installs it):
 * started on a free loopback port with persistence off, commands on fresh hiredis
 * connections, polling helpers. Include once per test program (its state is static).
 */
#ifndef EDDY_TEST_REDIS_SERVER_H
#define EDDY_TEST_REDIS_SERVER_H

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "wait_for.h"

static int redis_port;
static pid_t redis_pid;

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        perror("free_port");
        exit(1);
    }
    close(fd);
    return ntohs(a.sin_port);
}

static redisContext *redis_connect(void)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", redis_port, tv);
    if (c && c->err) {
        redisFree(c);
        return NULL;
    }
    return c;
}

static void redis_start(void)
{
    char port[16];
    snprintf(port, sizeof(port), "%d", redis_port);
    redis_pid = fork();
    if (redis_pid == 0) {
        /* Its log goes to stdout: keep the test's output readable. */
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0)
            dup2(null, STDOUT_FILENO);
        execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning", (char *)NULL);
        perror("redis-server");
        _exit(127);
    }
    redisContext *c = NULL;
    redisReply *r = NULL;
    uint64_t end = ms_now() + 10000;
    while (ms_now() < end) {
        if ((c = redis_connect()) && (r = redisCommand(c, "PING")) && r->type == REDIS_REPLY_STATUS)
            break;
        if (r)
            freeReplyObject(r);
        if (c)
            redisFree(c);
        r = NULL;
        c = NULL;
        int status;
        if (waitpid(redis_pid, &status, WNOHANG) == redis_pid) {
            fprintf(stderr, "redis-server exited at start (is it installed? make deps-test)\n");
            exit(1);
        }
        sleep_ms(20);
    }
    if (!r) {
        fprintf(stderr, "redis-server did not answer on port %d\n", redis_port);
        exit(1);
    }
    freeReplyObject(r);
    redisFree(c);
}

static void redis_kill(void)
{
    kill(redis_pid, SIGKILL);
    waitpid(redis_pid, NULL, 0);
}

/* Runs a command on a fresh connection and returns its reply (caller frees). */
static redisReply *redis_cmd(const char *fmt, ...)
{
    redisContext *c = redis_connect();
    if (!c)
        return NULL;
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    redisFree(c);
    return r;
}

#endif

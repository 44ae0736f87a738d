/* SPDX-License-Identifier: MIT */
/* Failed-login throttle (throttle.h). */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "throttle.h"

#define IP_MAX 46 /* INET6_ADDRSTRLEN */

typedef struct slot {
    char ip[IP_MAX];
    uint64_t window_start; /* seconds */
    uint32_t failures;
} slot_t;

static struct {
    pthread_mutex_t lock;
    uint64_t (*now_s)(void);
    slot_t slots[THROTTLE_SLOTS];
} T = {.lock = PTHREAD_MUTEX_INITIALIZER};

static uint64_t real_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec;
}

static uint64_t now_s(void)
{
    return T.now_s != NULL ? T.now_s() : real_now_s();
}

/* FNV-1a of the address. */
static slot_t *slot_of(const char *ip)
{
    uint32_t h = 2166136261u;
    for (const char *p = ip; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    return &T.slots[h % THROTTLE_SLOTS];
}

static bool blocked(const slot_t *s, uint64_t now)
{
    return s->failures >= THROTTLE_FAILURES && now - s->window_start < THROTTLE_WINDOW_S;
}

bool throttle_allowed(const char *ip, uint32_t *retry_after_s)
{
    ip = ip != NULL ? ip : "";
    uint64_t now = now_s();
    pthread_mutex_lock(&T.lock);
    slot_t *s = slot_of(ip);
    /* A blocked slot blocks every address that hashes to it: an attacker cannot free its
     * own slot by trying from another address. */
    bool ok = !blocked(s, now);
    if (!ok && retry_after_s != NULL)
        *retry_after_s = (uint32_t)(THROTTLE_WINDOW_S - (now - s->window_start));
    pthread_mutex_unlock(&T.lock);
    return ok;
}

bool throttle_request(eddy_request_t *req, eddy_response_t *resp)
{
    uint32_t retry_after;
    if (throttle_allowed(eddy_request_remote_ip(req), &retry_after))
        return true;
    char secs[16];
    snprintf(secs, sizeof(secs), "%u", retry_after);
    eddy_response_header(resp, "Retry-After", secs);
    return false;
}

bool throttle_failed(const char *ip)
{
    ip = ip != NULL ? ip : "";
    uint64_t now = now_s();
    pthread_mutex_lock(&T.lock);
    slot_t *s = slot_of(ip);
    if (now - s->window_start >= THROTTLE_WINDOW_S ||
        (strncmp(s->ip, ip, IP_MAX) != 0 && !blocked(s, now))) {
        size_t len = strnlen(ip, IP_MAX - 1);
        memcpy(s->ip, ip, len);
        s->ip[len] = '\0';
        s->window_start = now;
        s->failures = 0;
    }
    if (s->failures < UINT32_MAX)
        s->failures++;
    bool now_blocked = s->failures == THROTTLE_FAILURES;
    pthread_mutex_unlock(&T.lock);
    return now_blocked;
}

void throttle_reset(void)
{
    pthread_mutex_lock(&T.lock);
    memset(T.slots, 0, sizeof(T.slots));
    pthread_mutex_unlock(&T.lock);
}

void throttle_set_clock(uint64_t (*clock_s)(void))
{
    pthread_mutex_lock(&T.lock);
    T.now_s = clock_s;
    pthread_mutex_unlock(&T.lock);
}

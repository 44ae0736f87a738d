/* SPDX-License-Identifier: MIT */
/*
 * The daemon's failed-login throttle (cmd/throttle.c) on a fake clock: the allowance per
 * address and window, Retry-After, the window's end, addresses counted apart, and a
 * blocked slot that other addresses cannot free.
 */
#include <stdio.h>

#include "test.h"
#include "throttle.h"

static uint64_t fake_now = 1000;

static uint64_t fake_clock(void)
{
    return fake_now;
}

static void test_allowance_and_window(void)
{
    throttle_reset();
    uint32_t retry = 0;
    for (int i = 1; i < THROTTLE_FAILURES; i++) {
        CHECK(throttle_allowed("127.0.0.1", &retry));
        CHECK(!throttle_failed("127.0.0.1"));
    }
    CHECK(throttle_allowed("127.0.0.1", &retry));
    CHECK(throttle_failed("127.0.0.1")); /* the last allowed wrong try */
    CHECK(!throttle_allowed("127.0.0.1", &retry));
    CHECK_EQ_INT(retry, THROTTLE_WINDOW_S);
    CHECK(throttle_allowed("127.0.0.2", NULL)); /* another address is counted apart */
    fake_now += 20;
    CHECK(!throttle_allowed("127.0.0.1", &retry));
    CHECK_EQ_INT(retry, THROTTLE_WINDOW_S - 20);
    fake_now += THROTTLE_WINDOW_S - 20;
    CHECK(throttle_allowed("127.0.0.1", &retry)); /* the window ended */
    CHECK(!throttle_failed("127.0.0.1"));         /* a new window starts */
    CHECK(throttle_allowed("127.0.0.1", NULL));
}

static void test_failures_spread_over_windows(void)
{
    throttle_reset();
    for (int i = 0; i < THROTTLE_FAILURES - 1; i++)
        throttle_failed("::1");
    fake_now += THROTTLE_WINDOW_S;
    throttle_failed("::1"); /* counts in a new window */
    CHECK(throttle_allowed("::1", NULL));
}

/* Another address hashing to a blocked address's slot is refused with it, and its failures
 * do not reset the count. */
static void test_blocked_slot_holds(void)
{
    throttle_reset();
    char other[32] = "";
    for (int i = 0; i < 100000 && other[0] == '\0'; i++) {
        char ip[32];
        snprintf(ip, sizeof(ip), "10.%d.%d.%d", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        /* Find an address sharing the slot of 192.0.2.1: block 192.0.2.1, then probe. */
        if (i == 0)
            for (int k = 0; k < THROTTLE_FAILURES; k++)
                throttle_failed("192.0.2.1");
        if (!throttle_allowed(ip, NULL))
            snprintf(other, sizeof(other), "%s", ip);
    }
    CHECK(other[0] != '\0');
    throttle_failed(other);
    CHECK(!throttle_allowed("192.0.2.1", NULL));
}

int main(void)
{
    throttle_set_clock(fake_clock);
    test_allowance_and_window();
    test_failures_spread_over_windows();
    test_blocked_slot_holds();
    throttle_set_clock(NULL);
    return test_report("test_throttle");
}

/* SPDX-License-Identifier: MIT */
/*
 * Failed-login throttle of the eddy program: the admin page's password and the HTTP API's
 * key are secrets a client can guess at, so each remote address gets THROTTLE_FAILURES
 * wrong tries per THROTTLE_WINDOW_S; beyond them it is answered 429 with Retry-After, right
 * credentials or not, until its window ends. A right answer does not erase the failures
 * already counted (it cannot be used to reset a guessing run).
 *
 * Addresses live in a fixed table (THROTTLE_SLOTS, no allocation): a new address takes
 * the slot of its hash, or, when that slot's address is still blocked, is counted in it
 * with it (so flooding the table from many addresses cannot unblock one). Times come from
 * CLOCK_MONOTONIC_COARSE, or from throttle_set_clock() in tests.
 *
 * Threads: every function may be called from any thread (one mutex).
 */
#ifndef EDDY_CMD_THROTTLE_H
#define EDDY_CMD_THROTTLE_H

#include <stdbool.h>
#include <stdint.h>

#include "eddy.h"

#define THROTTLE_FAILURES 10
#define THROTTLE_WINDOW_S 60
#define THROTTLE_SLOTS    1024

/* True if ip (a textual address, NULL: "") may try now; else false and *retry_after_s
 * (if not NULL) gets the seconds until it may (at least 1). */
bool throttle_allowed(const char *ip, uint32_t *retry_after_s);

/* throttle_allowed() for req's remote address; when it is refused, sets Retry-After on
 * resp (the caller then answers 429 in its own format). */
bool throttle_request(eddy_request_t *req, eddy_response_t *resp);

/* Counts a wrong try from ip. Returns true if this try used up its allowance (the address
 * is blocked from now on: worth a log line). */
bool throttle_failed(const char *ip);

/* Forgets every address (tests). */
void throttle_reset(void);

/* Seconds of a monotonic clock (NULL: the real one); for tests. */
void throttle_set_clock(uint64_t (*now_s)(void));

#endif /* EDDY_CMD_THROTTLE_H */

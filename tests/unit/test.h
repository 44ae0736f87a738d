/* SPDX-License-Identifier: MIT */
/*
 * A minimal unit-test harness: CHECK records a failure and continues, so one run shows
 * every broken expectation; the program exits non-zero if any check failed.
 */
#ifndef EDDY_TEST_H
#define EDDY_TEST_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_failures;
static int test_checks;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        test_checks++;                                                                             \
        if (!(cond)) {                                                                             \
            test_failures++;                                                                       \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_INT(actual, expected)                                                             \
    do {                                                                                           \
        long long check_a_ = (long long)(actual), check_e_ = (long long)(expected);                \
        test_checks++;                                                                             \
        if (check_a_ != check_e_) {                                                                \
            test_failures++;                                                                       \
            fprintf(stderr, "%s:%d: %s == %lld, expected %lld\n", __FILE__, __LINE__, #actual,     \
                    check_a_, check_e_);                                                           \
        }                                                                                          \
    } while (0)

#define CHECK_MEM(actual, actual_len, expected, expected_len)                                      \
    do {                                                                                           \
        size_t check_al_ = (actual_len), check_el_ = (expected_len);                               \
        test_checks++;                                                                             \
        if (check_al_ != check_el_ || memcmp((actual), (expected), check_el_) != 0) {              \
            test_failures++;                                                                       \
            fprintf(stderr, "%s:%d: %s (%zu bytes) differs from %s (%zu bytes)\n", __FILE__,       \
                    __LINE__, #actual, check_al_, #expected, check_el_);                           \
        }                                                                                          \
    } while (0)

#define CHECK_STR(actual, expected) CHECK_MEM(actual, strlen(actual), expected, strlen(expected))

/* A small deterministic PRNG (xorshift64*) so random splits are reproducible. */
static uint64_t test_rng_state = 0x9e3779b97f4a7c15ull;
static inline uint64_t test_rand(void)
{
    test_rng_state ^= test_rng_state >> 12;
    test_rng_state ^= test_rng_state << 25;
    test_rng_state ^= test_rng_state >> 27;
    return test_rng_state * 0x2545f4914f6cdd1dull;
}

static inline int test_report(const char *name)
{
    if (test_failures) {
        fprintf(stderr, "%s: %d of %d checks FAILED\n", name, test_failures, test_checks);
        return 1;
    }
    printf("%s: %d checks passed\n", name, test_checks);
    return 0;
}

#endif /* EDDY_TEST_H */

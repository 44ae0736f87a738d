/* SPDX-License-Identifier: MIT */
/*
 * Per-channel broadcast numbers (rt/rt_chanseq.c), what counts a plain publish's losses: a
 * publisher numbers each channel on its own; a receiver counts a jump on one channel as
 * that many missed, and nothing for what interest-based subscriptions never sent it (the
 * channels it does not hold), a first number, a new publisher instance, a publisher
 * numbering afresh, or a channel subscribed afresh (forget). Pruning drops idle entries,
 * and thousands of channels (the table grows) keep their own numbers.
 */
#include <stdio.h>
#include <string.h>

#include "rt_chanseq.h"
#include "test.h"

#define HEARD(t, ch, origin, inst, num, now)                                                       \
    rt_chanseq_heard(t, ch, strlen(ch), origin, inst, num, now)

static void test_publisher_numbers_each_channel(void)
{
    rt_chanseq_t *t = rt_chanseq_new();
    CHECK(t != NULL);
    CHECK_EQ_INT((int)rt_chanseq_next(t, "c:a", 3, 1), 1);
    CHECK_EQ_INT((int)rt_chanseq_next(t, "c:b", 3, 1), 1);
    CHECK_EQ_INT((int)rt_chanseq_next(t, "c:a", 3, 2), 2);
    CHECK_EQ_INT((int)rt_chanseq_next(t, "c:ab", 4, 2), 1); /* a prefix is another channel */
    CHECK_EQ_INT((int)rt_chanseq_next(t, "c:a", 3, 3), 3);
    CHECK_EQ_INT((int)rt_chanseq_size(t), 3);
    rt_chanseq_free(t);
}

static void test_receiver_counts_jumps_per_channel_and_origin(void)
{
    rt_chanseq_t *t = rt_chanseq_new();
    CHECK_EQ_INT((int)HEARD(t, "r1", "A", 7, 5, 1), 0); /* first heard: no base */
    CHECK_EQ_INT((int)HEARD(t, "r1", "A", 7, 6, 1), 0);
    CHECK_EQ_INT((int)HEARD(t, "r1", "B", 9, 1, 1), 0); /* another origin: its own numbers */
    CHECK_EQ_INT((int)HEARD(t, "r2", "A", 7, 40, 1), 0);
    CHECK_EQ_INT((int)HEARD(t, "r1", "A", 7, 9, 1), 2); /* 7 and 8 lost */
    CHECK_EQ_INT((int)HEARD(t, "r1", "B", 9, 2, 1), 0);
    CHECK_EQ_INT((int)HEARD(t, "r2", "A", 7, 41, 1), 0);
    CHECK_EQ_INT((int)HEARD(t, "r1", "A", 8, 30, 1), 0); /* A restarted: a new instance */
    CHECK_EQ_INT((int)HEARD(t, "r1", "A", 8, 31, 1), 0);
    CHECK_EQ_INT((int)HEARD(t, "r1", "A", 8, 1, 1), 0); /* A numbers r1 afresh */
    CHECK_EQ_INT((int)HEARD(t, "r1", "A", 8, 4, 1), 2); /* ... and from there on */
    CHECK_EQ_INT((int)HEARD(t, "r1", "A", 8, 0, 1), 0); /* unnumbered: ignored */
    CHECK_EQ_INT((int)HEARD(t, "r1", "A", 8, 5, 1), 0);
    CHECK_EQ_INT((int)rt_chanseq_size(t), 3);
    rt_chanseq_free(t);
}

static void test_forget_and_prune(void)
{
    rt_chanseq_t *t = rt_chanseq_new();
    HEARD(t, "r1", "A", 1, 3, 10);
    HEARD(t, "r1", "B", 2, 3, 10);
    HEARD(t, "r2", "A", 1, 3, 20);
    /* r1 unsubscribed, then subscribed again: what A sent meanwhile was not missed. */
    rt_chanseq_forget(t, "r1", 2);
    CHECK_EQ_INT((int)rt_chanseq_size(t), 1);
    CHECK_EQ_INT((int)HEARD(t, "r1", "A", 1, 50, 30), 0);
    CHECK_EQ_INT((int)HEARD(t, "r1", "A", 1, 52, 30), 1);
    rt_chanseq_forget(t, "nothing", 7);
    /* A pattern c:* held afresh: its channels start over, others keep their numbers. */
    HEARD(t, "c:x1", "A", 1, 3, 30);
    HEARD(t, "c:x2", "B", 2, 7, 30);
    HEARD(t, "d:x1", "A", 1, 3, 30);
    CHECK_EQ_INT((int)rt_chanseq_size(t), 5);
    rt_chanseq_forget_prefix(t, "c:", 2);
    CHECK_EQ_INT((int)rt_chanseq_size(t), 3);
    CHECK_EQ_INT((int)HEARD(t, "c:x1", "A", 1, 9, 30), 0);
    CHECK_EQ_INT((int)HEARD(t, "d:x1", "A", 1, 9, 30), 5);
    rt_chanseq_forget(t, "c:x1", 4);
    rt_chanseq_forget(t, "d:x1", 4);
    /* Idle since 20: pruned at cutoff 25; r1 (heard at 30) stays. */
    rt_chanseq_prune(t, 25);
    CHECK_EQ_INT((int)rt_chanseq_size(t), 1);
    CHECK_EQ_INT((int)HEARD(t, "r2", "A", 1, 9, 40), 0); /* no base any more */
    CHECK_EQ_INT((int)HEARD(t, "r1", "A", 1, 53, 40), 0);
    rt_chanseq_prune(t, UINT64_MAX);
    CHECK_EQ_INT((int)rt_chanseq_size(t), 0);
    rt_chanseq_free(t);
    rt_chanseq_free(NULL);
}

/* 5000 channels (the table grows from 64 buckets): each keeps its own numbers. */
static void test_many_channels(void)
{
    rt_chanseq_t *t = rt_chanseq_new();
    char ch[32];
    for (int round = 1; round <= 3; round++)
        for (int i = 0; i < 5000; i++) {
            int n = snprintf(ch, sizeof(ch), "eddy:{/}:c:room%d", i);
            CHECK_EQ_INT((int)rt_chanseq_next(t, ch, (size_t)n, 1), round);
        }
    uint64_t missed = 0;
    for (int i = 0; i < 5000; i++) {
        int n = snprintf(ch, sizeof(ch), "eddy:{/}:c:room%d", i);
        missed += rt_chanseq_heard(t, ch, (size_t)n, "A", 1, 1, 1);
        missed += rt_chanseq_heard(t, ch, (size_t)n, "A", 1, i % 7 == 0 ? 3 : 2, 1);
    }
    CHECK_EQ_INT((int)missed, 715); /* rooms 0, 7, ..., 4998 each lost one */
    CHECK_EQ_INT((int)rt_chanseq_size(t), 10000);
    rt_chanseq_free(t);
}

int main(void)
{
    test_publisher_numbers_each_channel();
    test_receiver_counts_jumps_per_channel_and_origin();
    test_forget_and_prune();
    test_many_channels();
    return test_report("test_rt_chanseq");
}

/* SPDX-License-Identifier: MIT */
/*
 * A 4-byte mutex for the objects the real-time layer keeps per connection (Engine.IO
 * sessions, Socket.IO clients), where pthread_mutex_t's 40 bytes, four of them per
 * connection, were an eighth of an idle socket's memory. Not recursive, no owner checks:
 * each use is a short critical section of one layer (see the locking notes at the top of
 * rt/eio.c and rt/rt.c). Linux futexes: uncontended lock and unlock are one atomic
 * instruction each, a contended lock sleeps in the kernel, as glibc's default mutex does.
 *
 * States: 0 unlocked, 1 locked, 2 locked with (possibly) sleepers.
 */
#ifndef RT_LOCK_H
#define RT_LOCK_H

#include <linux/futex.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

typedef struct rt_lock {
    _Atomic uint32_t state;
} rt_lock_t;

#define RT_LOCK_INIT                                                                               \
    {                                                                                              \
        0                                                                                          \
    }

static inline void rt_lock_init(rt_lock_t *l)
{
    atomic_init(&l->state, 0);
}

static inline bool rt_lock_try(rt_lock_t *l)
{
    uint32_t expected = 0;
    return atomic_compare_exchange_strong_explicit(&l->state, &expected, 1, memory_order_acquire,
                                                   memory_order_relaxed);
}

static inline void rt_lock(rt_lock_t *l)
{
    if (rt_lock_try(l))
        return;
    /* Mark it contended; sleep while it is held by someone else. */
    while (atomic_exchange_explicit(&l->state, 2, memory_order_acquire) != 0)
        syscall(SYS_futex, &l->state, FUTEX_WAIT_PRIVATE, 2, NULL, NULL, 0);
}

static inline void rt_unlock(rt_lock_t *l)
{
    if (atomic_exchange_explicit(&l->state, 0, memory_order_release) == 2)
        syscall(SYS_futex, &l->state, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

#endif /* RT_LOCK_H */

/* SPDX-License-Identifier: MIT */
/*
 * History and recovery store of one Socket.IO namespace (rt-design.md, "Recovery model").
 *
 * Positions are (epoch, seq): the epoch is random per store (an in-memory history dies
 * with the process, so positions from another incarnation are explicitly "not
 * recovered"); seq is 1, 2, 3, ... per store, one per appended message. The Socket.IO
 * offset string carries a position (rt_offset_encode / rt_offset_parse).
 *
 * A message is stored once (one allocation: header, except-rooms, payload) and referenced
 * from the ring of each target room, or from the namespace ring for a message to all.
 * Every ring is bounded by count, bytes and age; the store as a whole by entries, bytes,
 * rooms and sessions. A ring remembers the highest seq it evicted, so a recovery that
 * would miss an evicted entry answers "not recovered" instead of a partial answer.
 *
 * Threading: every function may be called from any thread; one mutex per store guards
 * it. Callbacks (rt_history_entry_cb) run with that mutex held: they must not call into
 * the same store and should only copy or queue what they are given.
 *
 * Time: the store reads the clock of its configuration (default CLOCK_MONOTONIC_COARSE in ms)
 * under its mutex, so entries and disconnections are recorded in time order; tests pass a
 * fake clock.
 *
 * Errors are the eddy_error_t values of eddy.h, plus RT_HISTORY_EFULL (a configured
 * count limit was reached; rt_history_strerror names it).
 */
#ifndef EDDY_RT_HISTORY_H
#define EDDY_RT_HISTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A configured count limit (rooms or sessions) is reached. */
#define RT_HISTORY_EFULL (-3200)
/* rt_history_since / rt_history_recover: not recovered (a success, nothing delivered). */
#define RT_HISTORY_GAP 1

/* The epoch has 48 bits: 8 offset characters. */
#define RT_HISTORY_EPOCH_BITS 48
/* Longest offset string (8 epoch + 11 seq characters) and a buffer for it with its NUL. */
#define RT_OFFSET_MAX  19
#define RT_OFFSET_SIZE (RT_OFFSET_MAX + 1)
/* A private session id (pid): 20 url-safe characters, and a buffer for it with its NUL. */
#define RT_HISTORY_PID_LEN  20
#define RT_HISTORY_PID_SIZE (RT_HISTORY_PID_LEN + 1)

typedef struct rt_history rt_history_t;

typedef struct rt_position {
    uint64_t epoch; /* < 2^48 */
    uint64_t seq;   /* 0: before the first message */
} rt_position_t;

/*
 * Limits. A zero field takes its default. A message larger than ring_max_bytes (or
 * max_bytes) for a ring is not stored there: the ring records it as evicted.
 */
typedef struct rt_history_config {
    size_t ring_max_count;     /* entries per room ring. Default: 1000 */
    size_t ring_max_bytes;     /* payload bytes per room ring. Default: 1 MiB */
    uint64_t ring_max_age_ms;  /* entry age. Default: 120000 (maxDisconnectionDuration) */
    size_t max_entries;        /* entries in the store. Default: 262144 */
    size_t max_bytes;          /* payload bytes in the store. Default: 64 MiB */
    size_t max_rooms;          /* known rooms (with entries or listed by a session).
                                * Default: 131072 */
    size_t max_sessions;       /* session records, live and disconnected. Default: 100000 */
    uint64_t session_ttl_ms;   /* a disconnected record's life. Default: 120000 */
    size_t max_room_len;       /* bytes of a room name. Default: 1024 */
    size_t max_rooms_per_call; /* rooms, except-rooms or session rooms in one call.
                                * Default: 1024 */
    size_t max_session_data;   /* bytes of a session's data. Default: 65536 */
    /* Milliseconds of a monotonic clock. Default: CLOCK_MONOTONIC_COARSE (a few ms of
     * resolution are plenty for ages of seconds, and it costs 15 ns less per append). */
    uint64_t (*clock)(void *clock_ud);
    void *clock_ud;
} rt_history_config_t;

/*
 * Creates a store with a fresh random epoch (getrandom). cfg is copied; NULL means all
 * defaults. Returns NULL when out of memory or when the kernel gives no randomness.
 */
rt_history_t *rt_history_new(const rt_history_config_t *cfg);
/* Frees the store, its entries and its session records. No call may be in progress. */
void rt_history_free(rt_history_t *h);

/* The store's current position: its epoch and the seq of its last appended message. */
rt_position_t rt_history_position(rt_history_t *h);

/* ---------------------------------------------------------------------------------------
 * Offsets (the Socket.IO wire form of a position)
 * ------------------------------------------------------------------------------------- */

/*
 * Writes pos as an offset string into out (NUL-terminated) and returns its length
 * (9..RT_OFFSET_MAX). The alphabet is A-Z a-z 0-9 - _ (URL- and JSON-safe): 8 characters
 * of epoch, then seq in base 64 without leading zero digits. pos.epoch must be < 2^48.
 */
size_t rt_offset_encode(rt_position_t pos, char out[RT_OFFSET_SIZE]);
/*
 * Parses an offset string of len bytes (no NUL needed). Returns 0 and fills *pos, or
 * EDDY_EINVAL for anything rt_offset_encode cannot have written (length, alphabet, a
 * leading zero digit, overflow).
 */
int rt_offset_parse(const char *s, size_t len, rt_position_t *pos);

/*
 * Writes n random characters of the offset alphabet (A-Z a-z 0-9 - _, 6 bits each) into
 * out[0..n) and no NUL. Uses getrandom; should it fail (not expected: it is never
 * interrupted at these sizes) a process-wide counter keeps the results unique.
 * Thread-safe.
 */
void rt_random_chars(char *out, size_t n);

/* ---------------------------------------------------------------------------------------
 * Messages
 * ------------------------------------------------------------------------------------- */

/*
 * Appends one message for the rooms of rooms[0..nrooms) (NUL-terminated names; duplicates
 * count once), or for the whole namespace when nrooms is 0, sent to everyone except the
 * members of except[0..nexcept). payload (len bytes, e.g. the encoded Socket.IO packet
 * without its offset) is copied once. Cost: one allocation plus O(nrooms) ring work
 * (a ring's slot array grows, doubling, up to ring_max_count).
 * Returns the message's seq (> 0), or: EDDY_EINVAL (a name too long, too many names),
 * RT_HISTORY_EFULL (a new room would exceed max_rooms), EDDY_ENOMEM. A failed append still
 * uses a seq and marks it lost: every later recovery from a position below it answers
 * RT_HISTORY_GAP, so a message sent live but not stored is never silently missing.
 */
int64_t rt_history_append(rt_history_t *h, const char *const *rooms, size_t nrooms,
                          const char *const *except, size_t nexcept, const void *payload,
                          size_t len);

/*
 * Called once per delivered entry, in seq order: seq, the payload as appended (valid
 * during the call only), and ud. Runs with the store's mutex held (see above). The
 * queries accept a NULL callback: they then only count.
 */
typedef void (*rt_history_entry_cb)(uint64_t seq, const void *payload, size_t len, void *ud);

/*
 * Recovery query: every entry with seq > after.seq in the namespace ring or the ring of a
 * room of rooms[0..nrooms) (the session's rooms, its own room included), each once, in
 * seq order, except entries whose except-rooms include one of those rooms. All or
 * nothing: returns 0 after calling cb for each (count in *delivered if not NULL), or
 * RT_HISTORY_GAP without calling cb when after.epoch is not this store's, after.seq is
 * ahead of the store, a ring involved evicted an entry above after.seq, a message above
 * after.seq was lost (failed append), or one of the rooms is unknown to the store and
 * some forgotten room had evicted above after.seq. The store knows a room while its ring
 * holds entries or a session record lists it; it forgets the others with their
 * watermarks folded into one store-wide watermark, so a query by names it no longer
 * knows is conservative. rt_history_recover is exact: a record's rooms stay known.
 * Other errors: EDDY_EINVAL (too many or too long names), EDDY_ENOMEM (more than 32
 * rooms need a cursor array).
 */
int rt_history_since(rt_history_t *h, rt_position_t after, const char *const *rooms, size_t nrooms,
                     rt_history_entry_cb cb, void *ud, size_t *delivered);

/*
 * History on join: the newest n entries of one room (NULL: the namespace ring), oldest
 * first, through cb. *top (if not NULL) gets the store's epoch and the seq of the newest
 * message ever appended to that room while the store knew it (0 if none). Returns the
 * number of entries delivered, or EDDY_EINVAL (name too long).
 */
int rt_history_recent(rt_history_t *h, const char *room, size_t n, rt_history_entry_cb cb, void *ud,
                      rt_position_t *top);

/* ---------------------------------------------------------------------------------------
 * Session records (for connection state recovery)
 * ------------------------------------------------------------------------------------- */

/* What is stored about a session. Strings are NUL-terminated. */
typedef struct rt_history_session_info {
    const char *sid;     /* the socket id (required) */
    const char *user_id; /* NULL: none */
    const void *data;    /* opaque application data, data_len bytes */
    size_t data_len;
    const char *const *rooms; /* its rooms, its own room included */
    size_t nrooms;
} rt_history_session_info_t;

/*
 * Creates a live record for a newly connected session from info (all copied) and writes
 * its new random pid into pid. Its "seq at connect" is the store's current seq: a client
 * that reconnects without an offset recovers from there (socket.io #5538).
 * Returns 0, EDDY_EINVAL (no sid, names or data too long, too many rooms),
 * RT_HISTORY_EFULL (max_sessions records exist, or max_rooms would be exceeded; the
 * caller then serves the session without recovery), EDDY_ENOMEM.
 */
int rt_history_session_open(rt_history_t *h, const rt_history_session_info_t *info,
                            char pid[RT_HISTORY_PID_SIZE]);
/* Replaces the record's rooms (on join and leave). Returns 0, EDDY_ENOTFOUND, EDDY_EINVAL,
 * RT_HISTORY_EFULL, EDDY_ENOMEM (the record is unchanged on error). */
int rt_history_session_set_rooms(rt_history_t *h, const char *pid, const char *const *rooms,
                                 size_t nrooms);
/* Replaces the record's user id and data (copied). Returns 0, EDDY_ENOTFOUND,
 * EDDY_EINVAL, EDDY_ENOMEM (the record is unchanged on error). */
int rt_history_session_set_data(rt_history_t *h, const char *pid, const char *user_id,
                                const void *data, size_t data_len);
/* The session's transport dropped: the record is kept for session_ttl_ms from now.
 * Returns 0 (also if it was already disconnected) or EDDY_ENOTFOUND. */
int rt_history_session_disconnect(rt_history_t *h, const char *pid);
/* Forgets the record (a disconnect that must not be recovered). Returns 0 or
 * EDDY_ENOTFOUND. */
int rt_history_session_remove(rt_history_t *h, const char *pid);

/* A record handed to the caller by rt_history_recover; free with rt_history_session_free.
 * All pointers point into the same allocation. */
typedef struct rt_history_session {
    char pid[RT_HISTORY_PID_SIZE];
    const char *sid;
    const char *user_id; /* NULL: none */
    const void *data;
    size_t data_len;
    const char *const *rooms;
    size_t nrooms;
    uint64_t seq_at_connect;
    /* The store's seq when the missed entries were delivered: they cover every message up
     * to it, so live messages of the new socket with a seq at or below it are duplicates. */
    uint64_t recovered_seq;
    bool was_connected; /* the record was still live: the caller closes the old socket */
} rt_history_session_t;
void rt_history_session_free(rt_history_session_t *s);

/*
 * Recovery of a reconnecting client: takes the record of pid (single use: it is removed
 * whatever the answer) and runs rt_history_since over its rooms, atomically (nothing is
 * appended or evicted in between), from the later of its seq at connect and *offset:
 * the record's stream starts at its connect, so an older offset of this epoch means the
 * client received nothing on this session (socket.io #5538), as does offset NULL (the
 * client sent none). An offset of another epoch, or ahead of the store, is a gap: it may
 * be a string argument the client took for an offset, and replaying from the connect
 * could then duplicate. Likewise the caller answers an offset that does not parse as
 * not recovered rather than passing NULL.
 * Returns 0 (recovered: cb was called for each missed entry and *out gets the record),
 * RT_HISTORY_GAP (unknown, malformed or expired pid, or not recovered as rt_history_since
 * says: cb never called, *out NULL), EDDY_ENOMEM (the record is kept, *out NULL).
 */
int rt_history_recover(rt_history_t *h, const char *pid, const rt_position_t *offset,
                       rt_history_entry_cb cb, void *ud, rt_history_session_t **out);

/* ---------------------------------------------------------------------------------------
 * Maintenance
 * ------------------------------------------------------------------------------------- */

/*
 * Evicts entries older than ring_max_age_ms and forgets disconnected records older than
 * session_ttl_ms; call it from a timer (every few seconds). Queries also evict what has
 * aged before answering. Cost: O(what expires). Returns the number of entries and records
 * removed.
 */
size_t rt_history_sweep(rt_history_t *h);

typedef struct rt_history_stats {
    size_t entries;      /* stored messages */
    size_t bytes;        /* their payload bytes */
    size_t rooms;        /* known rooms */
    size_t sessions;     /* session records, live and disconnected */
    size_t disconnected; /* of which disconnected */
    uint64_t seq;        /* last appended seq */
    uint64_t evicted;    /* entries evicted from rings since creation (any bound) */
    uint64_t lost;       /* failed appends */
    size_t slots;        /* ring slots allocated (a pointer each) */
} rt_history_stats_t;
void rt_history_stats(rt_history_t *h, rt_history_stats_t *stats);

/* A description of RT_HISTORY_EFULL, or eddy_strerror(err). Static string. */
const char *rt_history_strerror(int err);

#endif /* EDDY_RT_HISTORY_H */

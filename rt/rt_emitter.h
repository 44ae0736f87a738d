/* SPDX-License-Identifier: MIT */
/*
 * Socket.IO's Redis emitter format (npm @socket.io/redis-emitter and its PHP, Python, Go
 * ports; realtime-anchors.md 1.7): what a non-Socket.IO process PUBLISHes on
 * `socket.io#<nsp>#` (or `socket.io#<nsp>#<room>#` for exactly one room) so that the
 * Socket.IO servers of a cluster broadcast it. The message is msgpack:
 *   [uid, packet, {rooms: [..], except: [..], flags: {volatile?, compress?, ...}}]
 * where packet is {type: 2 (EVENT) or 5 (BINARY_EVENT), data: [event, args...], nsp}.
 *
 * rt_emitter_decode() turns one into what the layer broadcasts: the namespace, rooms,
 * except-rooms, flags, and the arguments as Socket.IO JSON text (`["event",1,{"a":2}]`)
 * whose binary values are placeholders {"_placeholder":true,"num":N} referring to the
 * attachments, exactly as a BINARY_EVENT packet carries them. Pure: no I/O, no global
 * state, thread-safe. Input is untrusted (anyone who can PUBLISH on Redis): anything that
 * is not this shape is refused.
 */
#ifndef EDDY_RT_EMITTER_H
#define EDDY_RT_EMITTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The default channel prefix (the emitter's `key` option). */
#define RT_EMITTER_PREFIX "socket.io"

/* A decoded broadcast: one allocation, every pointer inside it. Strings NUL-terminated. */
typedef struct rt_emitter_msg {
    const char *uid; /* the sender's uid ("emitter" for @socket.io/redis-emitter) */
    const char *nsp; /* packet.nsp, "/" when absent */
    const char *const *rooms;
    size_t nrooms;
    const char *const *except;
    size_t nexcept;
    bool volatile_flag; /* flags.volatile is true */
    int compress;       /* flags.compress: 1 true, 0 false, -1 absent */
    const char *args;   /* JSON array: event name then arguments, args_len bytes */
    size_t args_len;
    const void *const *attachments; /* binary values in placeholder order */
    const size_t *attachment_lens;
    size_t nattachments;
} rt_emitter_msg_t;

/*
 * Decodes data[0..len) (one msgpack value, nothing after it). On success returns 0 and
 * *out (free with rt_emitter_msg_free). Errors: EDDY_EPROTO (not msgpack, not the
 * emitter's shape, a packet type other than EVENT/BINARY_EVENT, an empty data array or
 * an event name that is not a string, a string that is not UTF-8, a map key that is not
 * a string, a map key "_placeholder" (it would pass for a binary placeholder), an
 * extension value, nesting deeper than 32), EDDY_ENOMEM.
 */
int rt_emitter_decode(const void *data, size_t len, rt_emitter_msg_t **out);
void rt_emitter_msg_free(rt_emitter_msg_t *m);

#endif /* EDDY_RT_EMITTER_H */

/* SPDX-License-Identifier: MIT */
/*
 * A JSON scanner for the real-time layer: validates a JSON text (RFC 8259) and walks it in
 * place, without building a tree and without allocating. Every value is a span into the
 * caller's input (rt_json_value_t), valid as long as that input is.
 *
 * Acceptance follows JavaScript's JSON.parse, which is what the Socket.IO reference parser
 * uses: whitespace around the value is allowed, duplicate keys are allowed (the LAST one wins,
 * see rt_json_find), \u escapes of lone surrogates are allowed. Unlike JSON.parse (which sees
 * a string already decoded from UTF-8), the input bytes must be valid UTF-8 and containers
 * may nest at most RT_JSON_MAX_DEPTH deep.
 *
 * All functions are pure and thread-safe (no global state).
 */
#ifndef EDDY_RT_JSON_H
#define EDDY_RT_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Containers nested deeper than this are refused (RT_JSON_EDEPTH). */
#define RT_JSON_MAX_DEPTH 64

/* Errors (negative). */
enum {
    RT_JSON_ESYNTAX = -1,   /* not JSON (or trailing bytes after the value) */
    RT_JSON_EDEPTH = -2,    /* nesting deeper than RT_JSON_MAX_DEPTH */
    RT_JSON_EUTF8 = -3,     /* a string holds bytes that are not UTF-8 */
    RT_JSON_ETYPE = -4,     /* the value is not of the kind the function needs */
    RT_JSON_ERANGE = -5,    /* a number that is not an integer in [-(2^53-1), 2^53-1] */
    RT_JSON_ESPACE = -6,    /* the output buffer is too small */
    RT_JSON_ENOTFOUND = -7, /* rt_json_find: no member of that name */
};

typedef enum rt_json_type {
    RT_JSON_NONE = 0, /* no value (end of iteration, absent payload) */
    RT_JSON_OBJECT,
    RT_JSON_ARRAY,
    RT_JSON_STRING,
    RT_JSON_NUMBER,
    RT_JSON_TRUE,
    RT_JSON_FALSE,
    RT_JSON_NULL,
} rt_json_type_t;

/* One JSON value: its type and the exact bytes of its text (for a string, quotes included;
 * for a container, brackets included), borrowed from the input. */
typedef struct rt_json_value {
    rt_json_type_t type;
    const char *ptr;
    size_t len;
} rt_json_value_t;

/* Validates that s[0..len) is exactly one JSON value with optional whitespace around it and
 * stores the value (without the whitespace) in *out (which may be NULL). Returns 0,
 * RT_JSON_ESYNTAX, RT_JSON_EDEPTH or RT_JSON_EUTF8; *out is untouched on error. */
int rt_json_parse(const char *s, size_t len, rt_json_value_t *out);

/* Scans the one JSON value at the start of s[0..len) (leading whitespace skipped) and stores
 * it in *out; *end receives the offset just past the value. Bytes after it are not looked at.
 * Returns as rt_json_parse. */
int rt_json_scan(const char *s, size_t len, rt_json_value_t *out, size_t *end);

/* Iterates the elements of an array or the members of an object in place. The container
 * must come from rt_json_parse / rt_json_scan (or from iterating such a value): iteration
 * does not re-validate. */
typedef struct rt_json_iter {
    const char *pos;
    const char *end;
    bool object;
} rt_json_iter_t;

/* Starts iterating v (an array or an object). Returns 0, or RT_JSON_ETYPE for any other
 * type (the iterator then yields nothing). */
int rt_json_iter_init(rt_json_iter_t *it, const rt_json_value_t *v);

/* Starts iterating a comma-separated list of validated values given without brackets, such
 * as sio_packet_t.args (the elements of an array after its first one). An empty (or
 * all-whitespace) list yields nothing. */
void rt_json_iter_init_list(rt_json_iter_t *it, const char *list, size_t len);

/* Stores the next element in *val (and, for an object, the member's key, a STRING, in *key;
 * key may be NULL). Returns true, or false at the end. */
bool rt_json_iter_next(rt_json_iter_t *it, rt_json_value_t *key, rt_json_value_t *val);

/* Counts the elements/members of a validated array/object (0 for other types). */
size_t rt_json_count(const rt_json_value_t *v);

/* Unescapes the validated STRING str into out[0..cap) as UTF-8 (no NUL terminator). An
 * escaped lone surrogate (\ud800) becomes U+FFFD, as a JavaScript string does when it is
 * encoded to UTF-8. Returns the length written, RT_JSON_ETYPE if str is not a string, or
 * RT_JSON_ESPACE if it does not fit (out then holds a prefix). The decoded text is never
 * longer than str->len - 2. */
long rt_json_unescape(const rt_json_value_t *str, char *out, size_t cap);

/* True if the validated STRING str, unescaped, equals s[0..n) (false for other types). No
 * buffer needed. */
bool rt_json_string_eq(const rt_json_value_t *str, const char *s, size_t n);

/* Finds the member of the validated OBJECT obj whose unescaped key is key[0..keylen) and
 * stores its value in *out. With duplicate keys the last one wins, as in JSON.parse.
 * Returns 0, RT_JSON_ENOTFOUND, or RT_JSON_ETYPE if obj is not an object. */
int rt_json_find(const rt_json_value_t *obj, const char *key, size_t keylen, rt_json_value_t *out);

/* Reads the validated NUMBER v as an integer: 1, 1.0, 1e0 and 10E-1 are all 1, like a
 * JavaScript number. Returns 0, RT_JSON_ETYPE (not a number) or RT_JSON_ERANGE (not an
 * integer, or outside +-(2^53-1), the range where JavaScript integers are exact). */
int rt_json_int(const rt_json_value_t *v, int64_t *out);

/* Socket.IO binary placeholder detection, with the reference reconstructor's rule: an object
 * whose member "_placeholder" is true is a placeholder; its "num" must then be an integer
 * with 0 <= num < nbuffers. Returns 1 (placeholder, *num set), 0 (v is not a placeholder:
 * plain data), or RT_JSON_ERANGE (a placeholder with a missing or bad num: the reference
 * fails with "illegal attachments"). */
int rt_json_placeholder(const rt_json_value_t *v, size_t nbuffers, size_t *num);

/* Visits every Socket.IO binary placeholder in the validated value v, in document order,
 * as the reference reconstructor does: arrays and objects are searched recursively, a
 * placeholder (see rt_json_placeholder) is not searched further. For each one, cb (may be
 * NULL) receives the placeholder object and its num. Returns the number of placeholders, or
 * RT_JSON_ERANGE at the first one whose num is missing or not below nbuffers (cb has been
 * called for the ones before it). Unlike the reference, members shadowed by a later
 * duplicate key are visited too, so a bad placeholder there is an error. */
int rt_json_placeholders(const rt_json_value_t *v, size_t nbuffers,
                         void (*cb)(void *ud, const rt_json_value_t *placeholder, size_t num),
                         void *ud);

/* Writes s[0..len) (UTF-8) as a JSON string literal, quotes included, escaped as
 * JSON.stringify does: \" \\ \b \f \n \r \t, other control characters as \u00XX, everything
 * else as is. Returns the length of the literal; it is written to out only if it fits in
 * cap (otherwise nothing is written), so a call with cap 0 measures. */
size_t rt_json_write_string(char *out, size_t cap, const char *s, size_t len);

/* A short name for an error code above ("syntax error", ...); never NULL. */
const char *rt_json_strerror(int err);

#endif /* EDDY_RT_JSON_H */

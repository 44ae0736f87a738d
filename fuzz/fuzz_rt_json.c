/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer driver for rt/rt_json.c (the JSON scanner of the real-time layer).
 *
 * Checked invariants, for a document that validates:
 * - the whole input is UTF-8 (outside strings only ASCII is accepted);
 * - walking it (every nested array and object) yields elements whose spans lie inside
 *   their container and re-validate on their own with the same type and length, as many
 *   as rt_json_count says; object keys are strings;
 * - rt_json_scan stops where rt_json_parse's value ends, also with bytes appended;
 * - every string unescapes into at most len - 2 bytes of UTF-8, compares equal to its
 *   unescaped text, and survives rt_json_write_string -> parse -> unescape unchanged;
 * - rt_json_find on each key finds the value of the last member with that key;
 * - rt_json_int succeeds only within +-(2^53-1); placeholders have num < nbuffers;
 *   rt_json_placeholders returns a count or RT_JSON_ERANGE.
 * An input that does not validate must not validate either with whitespace around it.
 */
#include <string.h>

#include "eddy.h"
#include "fuzz.h"
#include "rt_json.h"

static char unescaped[1 << 16], rewritten[6 * (1 << 16) + 2], again[1 << 16];

static void check_string(const rt_json_value_t *v)
{
    FUZZ_CHECK(v->type == RT_JSON_STRING && v->len >= 2);
    if (v->len - 2 > sizeof(unescaped))
        return;
    long n = rt_json_unescape(v, unescaped, sizeof(unescaped));
    FUZZ_CHECK(n >= 0 && (size_t)n <= v->len - 2);
    FUZZ_CHECK(eddy_utf8_valid(unescaped, (size_t)n));
    FUZZ_CHECK(rt_json_string_eq(v, unescaped, (size_t)n));
    if (n > 0)
        FUZZ_CHECK(!rt_json_string_eq(v, unescaped, (size_t)n - 1));
    size_t w = rt_json_write_string(rewritten, sizeof(rewritten), unescaped, (size_t)n);
    FUZZ_CHECK(w <= sizeof(rewritten));
    rt_json_value_t back;
    FUZZ_CHECK(rt_json_parse(rewritten, w, &back) == 0 && back.type == RT_JSON_STRING);
    long m = rt_json_unescape(&back, again, sizeof(again));
    FUZZ_CHECK(m == n && memcmp(again, unescaped, (size_t)n) == 0);
}

static void walk(const rt_json_value_t *v, int depth)
{
    FUZZ_CHECK(depth <= RT_JSON_MAX_DEPTH);
    rt_json_value_t alone;
    FUZZ_CHECK(rt_json_parse(v->ptr, v->len, &alone) == 0);
    FUZZ_CHECK(alone.type == v->type && alone.ptr == v->ptr && alone.len == v->len);
    switch (v->type) {
    case RT_JSON_STRING:
        check_string(v);
        return;
    case RT_JSON_NUMBER: {
        int64_t x;
        int rc = rt_json_int(v, &x);
        FUZZ_CHECK(rc == 0 || rc == RT_JSON_ERANGE);
        if (rc == 0)
            FUZZ_CHECK(x <= 9007199254740991LL && x >= -9007199254740991LL);
        return;
    }
    case RT_JSON_OBJECT: {
        size_t num;
        int rc = rt_json_placeholder(v, 4, &num);
        FUZZ_CHECK(rc == 0 || rc == RT_JSON_ERANGE || (rc == 1 && num < 4));
    }
    /* fall through */
    case RT_JSON_ARRAY: {
        rt_json_iter_t it;
        rt_json_value_t key, val;
        size_t count = 0;
        FUZZ_CHECK(rt_json_iter_init(&it, v) == 0);
        while (rt_json_iter_next(&it, &key, &val)) {
            count++;
            FUZZ_CHECK(val.ptr > v->ptr && val.ptr + val.len < v->ptr + v->len);
            if (v->type == RT_JSON_OBJECT) {
                FUZZ_CHECK(key.ptr > v->ptr && key.ptr + key.len < val.ptr);
                check_string(&key);
                if (key.len - 2 <= sizeof(unescaped)) {
                    /* find returns the last member with this key. */
                    long n = rt_json_unescape(&key, unescaped, sizeof(unescaped));
                    rt_json_iter_t later = it;
                    rt_json_value_t k2, v2, last = val, found;
                    while (rt_json_iter_next(&later, &k2, &v2))
                        if (rt_json_string_eq(&k2, unescaped, (size_t)n))
                            last = v2;
                    FUZZ_CHECK(rt_json_find(v, unescaped, (size_t)n, &found) == 0);
                    FUZZ_CHECK(found.ptr == last.ptr && found.len == last.len);
                }
            }
            walk(&val, depth + 1);
        }
        FUZZ_CHECK(count == rt_json_count(v));
        return;
    }
    default:
        return;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    rt_json_value_t v;
    int rc = rt_json_parse(s, size, &v);
    FUZZ_CHECK(rc == 0 || rc == RT_JSON_ESYNTAX || rc == RT_JSON_EDEPTH || rc == RT_JSON_EUTF8);

    char *padded = malloc(size + 2);
    padded[0] = ' ';
    memcpy(padded + 1, data, size);
    padded[size + 1] = '\n';
    rt_json_value_t pv;
    int prc = rt_json_parse(padded, size + 2, &pv);
    FUZZ_CHECK((prc == 0) == (rc == 0));

    if (rc == 0) {
        FUZZ_CHECK(eddy_utf8_valid(data, size));
        FUZZ_CHECK(v.ptr >= s && v.ptr + v.len <= s + size && v.len > 0);
        FUZZ_CHECK(pv.len == v.len && memcmp(pv.ptr, v.ptr, v.len) == 0);
        size_t end;
        rt_json_value_t sv;
        FUZZ_CHECK(rt_json_scan(s, size, &sv, &end) == 0);
        FUZZ_CHECK(sv.ptr == v.ptr && sv.len == v.len && s + end == v.ptr + v.len);
        walk(&v, 0);
        int n = rt_json_placeholders(&v, 4, NULL, NULL);
        FUZZ_CHECK(n >= 0 || n == RT_JSON_ERANGE);
    }
    free(padded);
    return 0;
}

/* SPDX-License-Identifier: MIT */
/* JSON scanner (rt/rt_json.c): validation classes, in-place walking, unescaping, lookup,
 * integers, Socket.IO placeholders and escape-writing. */
#include <stdbool.h>

#include "rt_json.h"
#include "test.h"

#define LIT(s) s, sizeof(s) - 1

/* Parses from an exact-size heap copy, so a sanitizer build catches reads past the end. */
static int parse_copy(const char *s, size_t len, rt_json_value_t *v)
{
    char *copy = malloc(len ? len : 1);
    memcpy(copy, s, len);
    int rc = rt_json_parse(copy, len, v);
    free(copy);
    return rc;
}

static const struct {
    const char *s;
    size_t len;
    int rc;
    rt_json_type_t type;
} cases[] = {
    {LIT("{}"), 0, RT_JSON_OBJECT},
    {LIT("[]"), 0, RT_JSON_ARRAY},
    {LIT(" \t\r\n[ ] \n"), 0, RT_JSON_ARRAY},
    {LIT("\"\""), 0, RT_JSON_STRING},
    {LIT("0"), 0, RT_JSON_NUMBER},
    {LIT("-0"), 0, RT_JSON_NUMBER},
    {LIT("-12.5e+3"), 0, RT_JSON_NUMBER},
    {LIT("1E-7"), 0, RT_JSON_NUMBER},
    {LIT("true"), 0, RT_JSON_TRUE},
    {LIT("false"), 0, RT_JSON_FALSE},
    {LIT("null"), 0, RT_JSON_NULL},
    {LIT("{\"a\":[1,{\"b\":null}],\"c\":\"d\",\"a\":2}"), 0, RT_JSON_OBJECT},
    {LIT("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\uD83D\\uDE00\\ud800\""), 0, RT_JSON_STRING},
    {LIT("\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\x7f\""), 0, RT_JSON_STRING},
    /* syntax */
    {LIT(""), RT_JSON_ESYNTAX, 0},
    {LIT("   "), RT_JSON_ESYNTAX, 0},
    {LIT("[1,]"), RT_JSON_ESYNTAX, 0},
    {LIT("[,1]"), RT_JSON_ESYNTAX, 0},
    {LIT("[1 2]"), RT_JSON_ESYNTAX, 0},
    {LIT("{\"a\"}"), RT_JSON_ESYNTAX, 0},
    {LIT("{\"a\":}"), RT_JSON_ESYNTAX, 0},
    {LIT("{\"a\":1,}"), RT_JSON_ESYNTAX, 0},
    {LIT("{a:1}"), RT_JSON_ESYNTAX, 0},
    {LIT("{1:1}"), RT_JSON_ESYNTAX, 0},
    {LIT("[1]]"), RT_JSON_ESYNTAX, 0},
    {LIT("[1}"), RT_JSON_ESYNTAX, 0},
    {LIT("1 2"), RT_JSON_ESYNTAX, 0},
    {LIT("01"), RT_JSON_ESYNTAX, 0},
    {LIT("-"), RT_JSON_ESYNTAX, 0},
    {LIT("1."), RT_JSON_ESYNTAX, 0},
    {LIT(".5"), RT_JSON_ESYNTAX, 0},
    {LIT("1e"), RT_JSON_ESYNTAX, 0},
    {LIT("1e+"), RT_JSON_ESYNTAX, 0},
    {LIT("+1"), RT_JSON_ESYNTAX, 0},
    {LIT("0x10"), RT_JSON_ESYNTAX, 0},
    {LIT("NaN"), RT_JSON_ESYNTAX, 0},
    {LIT("Infinity"), RT_JSON_ESYNTAX, 0},
    {LIT("tru"), RT_JSON_ESYNTAX, 0},
    {LIT("nul"), RT_JSON_ESYNTAX, 0},
    {LIT("True"), RT_JSON_ESYNTAX, 0},
    {LIT("'a'"), RT_JSON_ESYNTAX, 0},
    {LIT("\"a"), RT_JSON_ESYNTAX, 0},
    {LIT("\"\\\""), RT_JSON_ESYNTAX, 0},
    {LIT("\"\\x\""), RT_JSON_ESYNTAX, 0},
    {LIT("\"\\u12g4\""), RT_JSON_ESYNTAX, 0},
    {LIT("\"\\u123\""), RT_JSON_ESYNTAX, 0},
    {LIT("\"a\tb\""), RT_JSON_ESYNTAX, 0},
    {LIT("\"a\nb\""), RT_JSON_ESYNTAX, 0},
    {LIT("\"\0\""), RT_JSON_ESYNTAX, 0},
    {LIT("[1]\0"), RT_JSON_ESYNTAX, 0},
    {LIT("\xef\xbb\xbf[]"), RT_JSON_ESYNTAX, 0}, /* JSON.parse refuses a BOM too */
    {LIT("[\v]"), RT_JSON_ESYNTAX, 0},
    /* UTF-8 inside strings */
    {LIT("\"\x80\""), RT_JSON_EUTF8, 0},
    {LIT("\"\xc0\xaf\""), RT_JSON_EUTF8, 0},         /* overlong */
    {LIT("\"\xe0\x80\xaf\""), RT_JSON_EUTF8, 0},     /* overlong */
    {LIT("\"\xed\xa0\x80\""), RT_JSON_EUTF8, 0},     /* surrogate */
    {LIT("\"\xf4\x90\x80\x80\""), RT_JSON_EUTF8, 0}, /* > U+10FFFF */
    {LIT("\"\xf0\x80\x80\xaf\""), RT_JSON_EUTF8, 0}, /* overlong */
    {LIT("\"\xc3\""), RT_JSON_EUTF8, 0},             /* truncated */
    {LIT("\"\xe2\x82\""), RT_JSON_EUTF8, 0},         /* truncated */
    {LIT("\"\xf8\x88\x80\x80\x80\""), RT_JSON_EUTF8, 0},
    {LIT("\"\xff\""), RT_JSON_EUTF8, 0},
    {LIT("\xc3\xa9"), RT_JSON_ESYNTAX, 0}, /* outside a string */
};

static void test_validate(void)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        rt_json_value_t v = {RT_JSON_NONE, NULL, 0};
        int rc = parse_copy(cases[i].s, cases[i].len, &v);
        if (rc != cases[i].rc)
            fprintf(stderr, "case %zu: \"%s\" -> %d, expected %d\n", i, cases[i].s, rc,
                    cases[i].rc);
        CHECK_EQ_INT(rc, cases[i].rc);
        if (rc == 0)
            CHECK_EQ_INT(v.type, cases[i].type);
    }
    /* The value span excludes surrounding whitespace. */
    rt_json_value_t v;
    CHECK_EQ_INT(rt_json_parse(LIT("  [1, 2] \n"), &v), 0);
    CHECK_MEM(v.ptr, v.len, "[1, 2]", 6);
    CHECK_EQ_INT(rt_json_parse(LIT(" -1.5e3 "), &v), 0);
    CHECK_MEM(v.ptr, v.len, "-1.5e3", 6);
    /* rt_json_scan stops after the value. */
    size_t end = 0;
    CHECK_EQ_INT(rt_json_scan(LIT(" {\"a\":1}xyz"), &v, &end), 0);
    CHECK_EQ_INT(end, 8);
    CHECK_EQ_INT(v.type, RT_JSON_OBJECT);
    CHECK_EQ_INT(rt_json_scan(LIT("12,3"), &v, &end), 0);
    CHECK_EQ_INT(end, 2);
    CHECK_EQ_INT(rt_json_scan(LIT("{"), &v, &end), RT_JSON_ESYNTAX);
}

/* Nesting: exactly RT_JSON_MAX_DEPTH containers pass, one more is refused. */
static void test_depth(void)
{
    char buf[6 * (RT_JSON_MAX_DEPTH + 1) + 1];
    for (int deep = RT_JSON_MAX_DEPTH; deep <= RT_JSON_MAX_DEPTH + 1; deep++) {
        for (int obj = 0; obj < 2; obj++) {
            size_t n = 0;
            for (int i = 0; i < deep; i++) {
                if (obj && i % 2) {
                    memcpy(buf + n, "{\"k\":", 5);
                    n += 5;
                } else {
                    buf[n++] = '[';
                }
            }
            buf[n++] = '0';
            for (int i = deep - 1; i >= 0; i--)
                buf[n++] = obj && i % 2 ? '}' : ']';
            CHECK_EQ_INT(parse_copy(buf, n, NULL), deep <= RT_JSON_MAX_DEPTH ? 0 : RT_JSON_EDEPTH);
        }
    }
    /* A long flat array is not deep. */
    static char flat[20001];
    flat[0] = '[';
    for (int i = 0; i < 9999; i++) {
        flat[1 + 2 * i] = '0';
        flat[2 + 2 * i] = ',';
    }
    flat[19999] = '0';
    flat[20000] = ']';
    rt_json_value_t v;
    CHECK_EQ_INT(rt_json_parse(flat, sizeof(flat), &v), 0);
    CHECK_EQ_INT(rt_json_count(&v), 10000);
}

/* Every proper prefix of a container or string is refused; every byte-split of a valid
 * document reads only its own bytes. */
static void test_prefixes(void)
{
    static const char *const docs[] = {
        "{\"a\":[1,{\"b\":null}],\"c\":\"d\\u00e9\\n\"}",
        "[\"\xf0\x9f\x98\x80\",-1.5e-3,true,false,null,{}]",
        "\"\\ud83d\\ude00 \xe2\x82\xac\"",
    };
    for (size_t d = 0; d < sizeof(docs) / sizeof(docs[0]); d++) {
        size_t len = strlen(docs[d]);
        CHECK_EQ_INT(parse_copy(docs[d], len, NULL), 0);
        for (size_t k = 0; k < len; k++)
            CHECK(parse_copy(docs[d], k, NULL) < 0);
    }
}

static void test_iterate(void)
{
    rt_json_value_t v, key, val;
    rt_json_iter_t it;
    const char *s = "{ \"a\" : [1, 2] , \"b\\\"\":\"x,y\", \"c\":{\"d\":\"}\"} }";
    CHECK_EQ_INT(rt_json_parse(s, strlen(s), &v), 0);
    CHECK_EQ_INT(rt_json_count(&v), 3);
    CHECK_EQ_INT(rt_json_iter_init(&it, &v), 0);
    CHECK(rt_json_iter_next(&it, &key, &val));
    CHECK_MEM(key.ptr, key.len, "\"a\"", 3);
    CHECK_EQ_INT(val.type, RT_JSON_ARRAY);
    CHECK_MEM(val.ptr, val.len, "[1, 2]", 6);
    CHECK(rt_json_iter_next(&it, &key, &val));
    CHECK_MEM(key.ptr, key.len, "\"b\\\"\"", 5);
    CHECK_MEM(val.ptr, val.len, "\"x,y\"", 5);
    CHECK(rt_json_iter_next(&it, NULL, &val));
    CHECK_EQ_INT(val.type, RT_JSON_OBJECT);
    CHECK_MEM(val.ptr, val.len, "{\"d\":\"}\"}", 9);
    CHECK(!rt_json_iter_next(&it, &key, &val));
    CHECK(!rt_json_iter_next(&it, &key, &val));

    s = "[true,false,null,-1e5,\"s\",[],{}]";
    static const rt_json_type_t types[] = {RT_JSON_TRUE,   RT_JSON_FALSE,  RT_JSON_NULL,
                                           RT_JSON_NUMBER, RT_JSON_STRING, RT_JSON_ARRAY,
                                           RT_JSON_OBJECT};
    CHECK_EQ_INT(rt_json_parse(s, strlen(s), &v), 0);
    rt_json_iter_init(&it, &v);
    for (size_t i = 0; i < 7; i++) {
        CHECK(rt_json_iter_next(&it, NULL, &val));
        CHECK_EQ_INT(val.type, types[i]);
    }
    CHECK(!rt_json_iter_next(&it, NULL, &val));
    CHECK_EQ_INT(rt_json_count(&v), 7);

    /* Empty containers, non-containers. */
    CHECK_EQ_INT(rt_json_parse(LIT("[ ]"), &v), 0);
    rt_json_iter_init(&it, &v);
    CHECK(!rt_json_iter_next(&it, NULL, &val));
    CHECK_EQ_INT(rt_json_parse(LIT("\"x\""), &v), 0);
    CHECK_EQ_INT(rt_json_iter_init(&it, &v), RT_JSON_ETYPE);
    CHECK(!rt_json_iter_next(&it, NULL, &val));
    CHECK_EQ_INT(rt_json_count(&v), 0);

    /* Lists. */
    rt_json_iter_init_list(&it, LIT(" 1 , \"a,b\" ,[2]"));
    CHECK(rt_json_iter_next(&it, NULL, &val) && val.len == 1);
    CHECK(rt_json_iter_next(&it, NULL, &val) && val.len == 5);
    CHECK(rt_json_iter_next(&it, NULL, &val) && val.type == RT_JSON_ARRAY && val.len == 3);
    CHECK(!rt_json_iter_next(&it, NULL, &val));
    rt_json_iter_init_list(&it, LIT("  "));
    CHECK(!rt_json_iter_next(&it, NULL, &val));
    rt_json_iter_init_list(&it, NULL, 0);
    CHECK(!rt_json_iter_next(&it, NULL, &val));
}

static void test_unescape(void)
{
    rt_json_value_t v;
    char out[64];
    const char *s = "\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\\u00e9\\u20AC\\ud83d\\ude00\xe2\x82\xac\"";
    CHECK_EQ_INT(rt_json_parse(s, strlen(s), &v), 0);
    long n = rt_json_unescape(&v, out, sizeof(out));
    const char want[] = "a\"b\\c/d\b\f\n\r\t\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xe2\x82\xac";
    CHECK_MEM(out, n < 0 ? 0 : (size_t)n, want, sizeof(want) - 1);
    CHECK(rt_json_string_eq(&v, want, sizeof(want) - 1));
    CHECK(!rt_json_string_eq(&v, want, sizeof(want) - 2));
    CHECK_EQ_INT(rt_json_unescape(&v, out, sizeof(want) - 2), RT_JSON_ESPACE);
    CHECK_EQ_INT(rt_json_unescape(&v, out, sizeof(want) - 1), sizeof(want) - 1);

    /* Lone surrogates (and a high one followed by a non-low escape) become U+FFFD. */
    s = "\"\\ud800x\\udc00\\ud83d\\u0041\\ud83d\"";
    CHECK_EQ_INT(rt_json_parse(s, strlen(s), &v), 0);
    n = rt_json_unescape(&v, out, sizeof(out));
    const char fffd[] = "\xef\xbf\xbdx\xef\xbf\xbd\xef\xbf\xbd"
                        "A\xef\xbf\xbd";
    CHECK_MEM(out, n < 0 ? 0 : (size_t)n, fffd, sizeof(fffd) - 1);
    CHECK(rt_json_string_eq(&v, fffd, sizeof(fffd) - 1));

    CHECK_EQ_INT(rt_json_parse(LIT("\"\""), &v), 0);
    CHECK_EQ_INT(rt_json_unescape(&v, out, 0), 0);
    CHECK(rt_json_string_eq(&v, "", 0));
    CHECK(!rt_json_string_eq(&v, "a", 1));
    CHECK_EQ_INT(rt_json_parse(LIT("12"), &v), 0);
    CHECK_EQ_INT(rt_json_unescape(&v, out, sizeof(out)), RT_JSON_ETYPE);
    CHECK(!rt_json_string_eq(&v, "12", 2));
    CHECK_EQ_INT(rt_json_parse(LIT("\"\\u0000\""), &v), 0);
    CHECK(rt_json_string_eq(&v, "\0", 1));
}

static void test_find(void)
{
    rt_json_value_t v, m;
    const char *s = "{\"a\":1,\"b\":{\"a\":2},\"a\":3,\"k\\u0065y\":\"v\",\"\":[]}";
    CHECK_EQ_INT(rt_json_parse(s, strlen(s), &v), 0);
    CHECK_EQ_INT(rt_json_find(&v, "a", 1, &m), 0);
    CHECK_MEM(m.ptr, m.len, "3", 1); /* last wins, as in JSON.parse */
    CHECK_EQ_INT(rt_json_find(&v, "b", 1, &m), 0);
    CHECK_EQ_INT(m.type, RT_JSON_OBJECT);
    CHECK_EQ_INT(rt_json_find(&v, "key", 3, &m), 0);
    CHECK_MEM(m.ptr, m.len, "\"v\"", 3);
    CHECK_EQ_INT(rt_json_find(&v, "", 0, &m), 0);
    CHECK_EQ_INT(m.type, RT_JSON_ARRAY);
    CHECK_EQ_INT(rt_json_find(&v, "c", 1, &m), RT_JSON_ENOTFOUND);
    CHECK_EQ_INT(rt_json_find(&v, "ke", 2, &m), RT_JSON_ENOTFOUND);
    CHECK_EQ_INT(rt_json_parse(LIT("[\"a\",1]"), &v), 0);
    CHECK_EQ_INT(rt_json_find(&v, "a", 1, &m), RT_JSON_ETYPE);
}

static void test_int(void)
{
    static const struct {
        const char *s;
        int rc;
        int64_t x;
    } nums[] = {
        {"0", 0, 0},
        {"-0", 0, 0},
        {"7", 0, 7},
        {"-7", 0, -7},
        {"1.0", 0, 1},
        {"1e0", 0, 1},
        {"10E-1", 0, 1},
        {"0.5e1", 0, 5},
        {"1200e-2", 0, 12},
        {"0.000e5", 0, 0},
        {"12.3400e2", 0, 1234},
        {"9007199254740991", 0, 9007199254740991LL},
        {"-9007199254740991", 0, -9007199254740991LL},
        {"9007199254740991.000000000000", 0, 9007199254740991LL},
        {"900719925474099.1e1", 0, 9007199254740991LL},
        {"9007199254740992", RT_JSON_ERANGE, 0},
        {"1e16", RT_JSON_ERANGE, 0},
        {"1e15", 0, 1000000000000000LL},
        {"1e999999999", RT_JSON_ERANGE, 0},
        {"1e-999999999", RT_JSON_ERANGE, 0},
        {"0.5", RT_JSON_ERANGE, 0},
        {"1.05e1", RT_JSON_ERANGE, 0},
        {"123456789012345678901234567890", RT_JSON_ERANGE, 0},
        {"1.00000000000000000000000000001", RT_JSON_ERANGE, 0},
        {"0.00000000000000000000000000000", 0, 0},
    };
    for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
        rt_json_value_t v;
        int64_t x = -1;
        CHECK_EQ_INT(rt_json_parse(nums[i].s, strlen(nums[i].s), &v), 0);
        int rc = rt_json_int(&v, &x);
        if (rc != nums[i].rc)
            fprintf(stderr, "int case %s -> %d\n", nums[i].s, rc);
        CHECK_EQ_INT(rc, nums[i].rc);
        if (rc == 0)
            CHECK_EQ_INT(x, nums[i].x);
    }
    rt_json_value_t v;
    int64_t x;
    CHECK_EQ_INT(rt_json_parse(LIT("\"1\""), &v), 0);
    CHECK_EQ_INT(rt_json_int(&v, &x), RT_JSON_ETYPE);
}

static void test_placeholder(void)
{
    static const struct {
        const char *s;
        int rc;
        size_t num;
    } ph[] = {
        {"{\"_placeholder\":true,\"num\":0}", 1, 0},
        {"{\"num\":2,\"_placeholder\":true}", 1, 2},
        {"{ \"_placeholder\" : true , \"num\" : 1.0 , \"x\":[] }", 1, 1},
        {"{\"_placeholder\":true,\"num\":3}", RT_JSON_ERANGE, 0}, /* >= nbuffers */
        {"{\"_placeholder\":true,\"num\":-1}", RT_JSON_ERANGE, 0},
        {"{\"_placeholder\":true,\"num\":0.5}", RT_JSON_ERANGE, 0},
        {"{\"_placeholder\":true,\"num\":\"0\"}", RT_JSON_ERANGE, 0},
        {"{\"_placeholder\":true}", RT_JSON_ERANGE, 0},
        {"{\"_placeholder\":false,\"num\":0}", 0, 0},
        {"{\"_placeholder\":1,\"num\":0}", 0, 0},
        {"{\"_placeholder\":\"true\",\"num\":0}", 0, 0},
        {"{\"_placeholder\":true,\"_placeholder\":false,\"num\":0}", 0, 0},
        {"{\"_placeholder\":false,\"_placeholder\":true,\"num\":0}", 1, 0},
        {"{\"_placeholder\":true,\"num\":9,\"num\":1}", 1, 1},
        {"{\"_plac\\u0065holder\":true,\"num\":1}", 1, 1},
        {"{\"num\":0}", 0, 0},
        {"[\"_placeholder\",true]", 0, 0},
        {"\"_placeholder\"", 0, 0},
        {"null", 0, 0},
    };
    for (size_t i = 0; i < sizeof(ph) / sizeof(ph[0]); i++) {
        rt_json_value_t v;
        size_t num = 99;
        CHECK_EQ_INT(rt_json_parse(ph[i].s, strlen(ph[i].s), &v), 0);
        int rc = rt_json_placeholder(&v, 3, &num);
        if (rc != ph[i].rc)
            fprintf(stderr, "placeholder case %s -> %d\n", ph[i].s, rc);
        CHECK_EQ_INT(rc, ph[i].rc);
        if (rc == 1)
            CHECK_EQ_INT(num, ph[i].num);
    }
}

typedef struct seen {
    size_t n;
    size_t nums[8];
    const char *ptrs[8];
} seen_t;

static void on_placeholder(void *ud, const rt_json_value_t *ph, size_t num)
{
    seen_t *seen = ud;
    if (seen->n < 8) {
        seen->nums[seen->n] = num;
        seen->ptrs[seen->n] = ph->ptr;
    }
    seen->n++;
}

static void test_placeholders(void)
{
    rt_json_value_t v;
    seen_t seen = {0};
    const char *s = "[1,{\"_placeholder\":true,\"num\":1},{\"a\":[{\"_placeholder\":true,"
                    "\"num\":0}]},\"x\"]";
    CHECK_EQ_INT(rt_json_parse(s, strlen(s), &v), 0);
    CHECK_EQ_INT(rt_json_placeholders(&v, 2, on_placeholder, &seen), 2);
    CHECK_EQ_INT(seen.n, 2);
    CHECK_EQ_INT(seen.nums[0], 1);
    CHECK_EQ_INT(seen.nums[1], 0);
    CHECK(seen.ptrs[0] == s + 3);
    CHECK_EQ_INT(rt_json_placeholders(&v, 2, NULL, NULL), 2);
    /* num 1 is not below 1 buffer: an error, after nothing was visited. */
    memset(&seen, 0, sizeof(seen));
    CHECK_EQ_INT(rt_json_placeholders(&v, 1, on_placeholder, &seen), RT_JSON_ERANGE);
    CHECK_EQ_INT(seen.n, 0);
    /* A placeholder is not searched further. */
    s = "{\"_placeholder\":true,\"num\":0,\"x\":{\"_placeholder\":true,\"num\":5}}";
    CHECK_EQ_INT(rt_json_parse(s, strlen(s), &v), 0);
    CHECK_EQ_INT(rt_json_placeholders(&v, 1, NULL, NULL), 1);
    /* Plain data. */
    CHECK_EQ_INT(rt_json_parse(LIT("[\"a\",{\"b\":[1,2,{}]},null]"), &v), 0);
    CHECK_EQ_INT(rt_json_placeholders(&v, 0, NULL, NULL), 0);
    CHECK_EQ_INT(rt_json_parse(LIT("\"_placeholder\""), &v), 0);
    CHECK_EQ_INT(rt_json_placeholders(&v, 3, NULL, NULL), 0);
    /* Shadowed duplicate keys are visited too (documented difference). */
    CHECK_EQ_INT(rt_json_parse(LIT("{\"a\":{\"_placeholder\":true,\"num\":9},\"a\":1}"), &v), 0);
    CHECK_EQ_INT(rt_json_placeholders(&v, 1, NULL, NULL), RT_JSON_ERANGE);
}

static void test_write_string(void)
{
    char out[64];
    size_t n =
        rt_json_write_string(out, sizeof(out), LIT("a\"b\\c/\b\f\n\r\t\x01\x1f\x7f\xc3\xa9"));
    const char want[] = "\"a\\\"b\\\\c/\\b\\f\\n\\r\\t\\u0001\\u001f\x7f\xc3\xa9\"";
    CHECK_MEM(out, n, want, sizeof(want) - 1);
    CHECK_EQ_INT(rt_json_write_string(NULL, 0, LIT("a\"b\\c/\b\f\n\r\t\x01\x1f\x7f\xc3\xa9")),
                 sizeof(want) - 1);
    /* Nothing written when it does not fit. */
    memset(out, 'Z', sizeof(out));
    CHECK_EQ_INT(rt_json_write_string(out, 3, LIT("ab")), 4);
    CHECK_EQ_INT(out[0], 'Z');
    CHECK_EQ_INT(rt_json_write_string(out, 4, LIT("ab")), 4);
    CHECK_MEM(out, 4, "\"ab\"", 4);
    CHECK_EQ_INT(rt_json_write_string(out, 2, "", 0), 2);
    CHECK_MEM(out, 2, "\"\"", 2);
    /* What is written parses back to the same bytes, for every byte value < 0x80. */
    char raw[128], lit[128 * 6 + 2], back[128];
    for (int i = 0; i < 128; i++)
        raw[i] = (char)i;
    n = rt_json_write_string(lit, sizeof(lit), raw, sizeof(raw));
    rt_json_value_t v;
    CHECK_EQ_INT(rt_json_parse(lit, n, &v), 0);
    CHECK_EQ_INT(rt_json_unescape(&v, back, sizeof(back)), 128);
    CHECK_MEM(back, 128, raw, 128);
}

static void test_strerror(void)
{
    for (int e = 0; e >= RT_JSON_ENOTFOUND; e--)
        CHECK(strcmp(rt_json_strerror(e), "unknown JSON error") != 0);
    CHECK_STR(rt_json_strerror(-99), "unknown JSON error");
}

int main(void)
{
    test_validate();
    test_depth();
    test_prefixes();
    test_iterate();
    test_unescape();
    test_find();
    test_int();
    test_placeholder();
    test_placeholders();
    test_write_string();
    test_strerror();
    return test_report("test_rt_json");
}

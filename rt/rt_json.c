/* SPDX-License-Identifier: MIT */
/* JSON scanner: validation by recursive descent (depth-bounded), walking by skipping. */
#include "rt_json.h"

#include <string.h>

static const char *skip_ws(const char *p, const char *e)
{
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Length of the UTF-8 sequence at p (RFC 3629: no overlongs, no surrogates, at most
 * U+10FFFF), or 0 if it is not one. p[0] >= 0x80. */
static size_t utf8_seq(const unsigned char *p, const unsigned char *e)
{
    unsigned char c = p[0];
    size_t n = (size_t)(e - p);
    if (c >= 0xc2 && c <= 0xdf)
        return n >= 2 && (p[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        if (n < 3 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80)
            return 0;
        if (c == 0xe0 && p[1] < 0xa0)
            return 0;
        if (c == 0xed && p[1] >= 0xa0)
            return 0;
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if (n < 4 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 || (p[3] & 0xc0) != 0x80)
            return 0;
        if (c == 0xf0 && p[1] < 0x90)
            return 0;
        if (c == 0xf4 && p[1] >= 0x90)
            return 0;
        return 4;
    }
    return 0;
}

/* Bytes that a string holds as is, without a closer look: printable ASCII but '"' and '\\'. */
static const unsigned char plain[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

/* p at the opening quote; on success *pp is just past the closing quote. */
static int scan_string(const char **pp, const char *e)
{
    const unsigned char *p = (const unsigned char *)*pp + 1, *ue = (const unsigned char *)e;
    for (;;) {
        while (p < ue && plain[*p])
            p++;
        if (p >= ue)
            return RT_JSON_ESYNTAX;
        unsigned char c = *p;
        if (c == '"') {
            *pp = (const char *)p + 1;
            return 0;
        }
        if (c < 0x20)
            return RT_JSON_ESYNTAX;
        if (c == '\\') {
            if (ue - p < 2)
                return RT_JSON_ESYNTAX;
            switch (p[1]) {
            case '"':
            case '\\':
            case '/':
            case 'b':
            case 'f':
            case 'n':
            case 'r':
            case 't':
                p += 2;
                break;
            case 'u':
                if (ue - p < 6 || hexval(p[2]) < 0 || hexval(p[3]) < 0 || hexval(p[4]) < 0 ||
                    hexval(p[5]) < 0)
                    return RT_JSON_ESYNTAX;
                p += 6;
                break;
            default:
                return RT_JSON_ESYNTAX;
            }
            continue;
        }
        size_t n = utf8_seq(p, ue);
        if (!n)
            return RT_JSON_EUTF8;
        p += n;
    }
}

static int scan_number(const char **pp, const char *e)
{
    const char *p = *pp;
    if (p < e && *p == '-')
        p++;
    if (p >= e)
        return RT_JSON_ESYNTAX;
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (p < e && *p >= '0' && *p <= '9')
            p++;
    } else {
        return RT_JSON_ESYNTAX;
    }
    if (p < e && *p == '.') {
        p++;
        if (p >= e || *p < '0' || *p > '9')
            return RT_JSON_ESYNTAX;
        while (p < e && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < e && (*p == '+' || *p == '-'))
            p++;
        if (p >= e || *p < '0' || *p > '9')
            return RT_JSON_ESYNTAX;
        while (p < e && *p >= '0' && *p <= '9')
            p++;
    }
    *pp = p;
    return 0;
}

static int scan_literal(const char **pp, const char *e, const char *word, size_t n)
{
    if ((size_t)(e - *pp) < n || memcmp(*pp, word, n) != 0)
        return RT_JSON_ESYNTAX;
    *pp += n;
    return 0;
}

/* p is at a non-whitespace byte (or e). */
static int scan_value(const char **pp, const char *e, int depth, rt_json_type_t *type)
{
    const char *p = *pp;
    int rc;
    if (p >= e)
        return RT_JSON_ESYNTAX;
    switch (*p) {
    case '"':
        *type = RT_JSON_STRING;
        return scan_string(pp, e);
    case '{':
    case '[': {
        bool object = *p == '{';
        char close = object ? '}' : ']';
        *type = object ? RT_JSON_OBJECT : RT_JSON_ARRAY;
        if (depth >= RT_JSON_MAX_DEPTH)
            return RT_JSON_EDEPTH;
        p = skip_ws(p + 1, e);
        if (p < e && *p == close) {
            *pp = p + 1;
            return 0;
        }
        for (;;) {
            rt_json_type_t t;
            if (object) {
                if (p >= e || *p != '"')
                    return RT_JSON_ESYNTAX;
                if ((rc = scan_string(&p, e)) < 0)
                    return rc;
                p = skip_ws(p, e);
                if (p >= e || *p != ':')
                    return RT_JSON_ESYNTAX;
                p = skip_ws(p + 1, e);
            }
            if ((rc = scan_value(&p, e, depth + 1, &t)) < 0)
                return rc;
            p = skip_ws(p, e);
            if (p >= e)
                return RT_JSON_ESYNTAX;
            if (*p == close) {
                *pp = p + 1;
                return 0;
            }
            if (*p != ',')
                return RT_JSON_ESYNTAX;
            p = skip_ws(p + 1, e);
        }
    }
    case 't':
        *type = RT_JSON_TRUE;
        return scan_literal(pp, e, "true", 4);
    case 'f':
        *type = RT_JSON_FALSE;
        return scan_literal(pp, e, "false", 5);
    case 'n':
        *type = RT_JSON_NULL;
        return scan_literal(pp, e, "null", 4);
    default:
        *type = RT_JSON_NUMBER;
        return scan_number(pp, e);
    }
}

int rt_json_scan(const char *s, size_t len, rt_json_value_t *out, size_t *end)
{
    const char *e = s + len, *p = skip_ws(s, e), *start = p;
    rt_json_type_t type = RT_JSON_NONE;
    int rc = scan_value(&p, e, 0, &type);
    if (rc < 0)
        return rc;
    if (out) {
        out->type = type;
        out->ptr = start;
        out->len = (size_t)(p - start);
    }
    if (end)
        *end = (size_t)(p - s);
    return 0;
}

int rt_json_parse(const char *s, size_t len, rt_json_value_t *out)
{
    rt_json_value_t v;
    size_t end;
    int rc = rt_json_scan(s, len, &v, &end);
    if (rc < 0)
        return rc;
    if (skip_ws(s + end, s + len) != s + len)
        return RT_JSON_ESYNTAX;
    if (out)
        *out = v;
    return 0;
}

/* Skips one validated value starting at p (a non-whitespace byte); returns the end. */
static const char *skip_value(const char *p, const char *e, rt_json_type_t *type)
{
    char c = *p;
    if (c == '"') {
        *type = RT_JSON_STRING;
        for (p++; *p != '"'; p++)
            if (*p == '\\')
                p++;
        return p + 1;
    }
    if (c == '{' || c == '[') {
        *type = c == '{' ? RT_JSON_OBJECT : RT_JSON_ARRAY;
        int depth = 0;
        for (; p < e; p++) {
            c = *p;
            if (c == '"') {
                for (p++; *p != '"'; p++)
                    if (*p == '\\')
                        p++;
            } else if (c == '{' || c == '[') {
                depth++;
            } else if (c == '}' || c == ']') {
                if (--depth == 0)
                    return p + 1;
            }
        }
        return e;
    }
    *type = c == 't'   ? RT_JSON_TRUE
            : c == 'f' ? RT_JSON_FALSE
            : c == 'n' ? RT_JSON_NULL
                       : RT_JSON_NUMBER;
    while (p < e && *p != ',' && *p != ']' && *p != '}' && *p != ' ' && *p != '\t' && *p != '\n' &&
           *p != '\r')
        p++;
    return p;
}

int rt_json_iter_init(rt_json_iter_t *it, const rt_json_value_t *v)
{
    if (v->type != RT_JSON_ARRAY && v->type != RT_JSON_OBJECT) {
        it->pos = it->end = NULL;
        it->object = false;
        return RT_JSON_ETYPE;
    }
    it->object = v->type == RT_JSON_OBJECT;
    it->pos = v->ptr + 1;
    it->end = v->ptr + v->len - 1;
    return 0;
}

void rt_json_iter_init_list(rt_json_iter_t *it, const char *list, size_t len)
{
    /* An absent list (NULL, 0: a packet without payload) is empty; NULL + 0 is undefined. */
    if (list == NULL)
        list = "";
    it->pos = list;
    it->end = list + len;
    it->object = false;
}

bool rt_json_iter_next(rt_json_iter_t *it, rt_json_value_t *key, rt_json_value_t *val)
{
    const char *p = skip_ws(it->pos, it->end), *e = it->end;
    if (p < e && *p == ',')
        p = skip_ws(p + 1, e);
    if (p >= e) {
        it->pos = e;
        return false;
    }
    rt_json_type_t t;
    if (it->object) {
        const char *k = p;
        p = skip_value(p, e, &t);
        if (key) {
            key->type = RT_JSON_STRING;
            key->ptr = k;
            key->len = (size_t)(p - k);
        }
        p = skip_ws(p, e);
        p = skip_ws(p + 1, e); /* the ':' */
    }
    const char *start = p;
    p = skip_value(p, e, &t);
    val->type = t;
    val->ptr = start;
    val->len = (size_t)(p - start);
    it->pos = p;
    return true;
}

size_t rt_json_count(const rt_json_value_t *v)
{
    rt_json_iter_t it;
    rt_json_value_t val;
    size_t n = 0;
    if (rt_json_iter_init(&it, v) < 0)
        return 0;
    while (rt_json_iter_next(&it, NULL, &val))
        n++;
    return n;
}

/* Decodes the next piece of a validated string body: a run of plain bytes (returned as a
 * span into the input) or one escape (decoded into buf). Returns the piece's length and
 * sets *piece, or 0 at the closing quote. */
static size_t next_piece(const char **pp, char buf[4], const char **piece)
{
    const char *p = *pp;
    if (*p == '"')
        return 0;
    if (*p != '\\') {
        const char *s = p;
        while (*p != '"' && *p != '\\')
            p++;
        *pp = p;
        *piece = s;
        return (size_t)(p - s);
    }
    char c = p[1];
    *piece = buf;
    if (c != 'u') {
        *pp = p + 2;
        buf[0] = c == 'b'   ? '\b'
                 : c == 'f' ? '\f'
                 : c == 'n' ? '\n'
                 : c == 'r' ? '\r'
                 : c == 't' ? '\t'
                            : c;
        return 1;
    }
    unsigned cp = (unsigned)(hexval((unsigned char)p[2]) << 12 | hexval((unsigned char)p[3]) << 8 |
                             hexval((unsigned char)p[4]) << 4 | hexval((unsigned char)p[5]));
    p += 6;
    if (cp >= 0xd800 && cp <= 0xdbff && p[0] == '\\' && p[1] == 'u') {
        int h0 = hexval((unsigned char)p[2]), h1 = hexval((unsigned char)p[3]);
        int h2 = hexval((unsigned char)p[4]), h3 = hexval((unsigned char)p[5]);
        unsigned lo = (unsigned)(h0 << 12 | h1 << 8 | h2 << 4 | h3);
        if (lo >= 0xdc00 && lo <= 0xdfff) {
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            p += 6;
        }
    }
    *pp = p;
    if (cp >= 0xd800 && cp <= 0xdfff)
        cp = 0xfffd;
    if (cp < 0x80) {
        buf[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        buf[0] = (char)(0xc0 | cp >> 6);
        buf[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        buf[0] = (char)(0xe0 | cp >> 12);
        buf[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        buf[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    buf[0] = (char)(0xf0 | cp >> 18);
    buf[1] = (char)(0x80 | (cp >> 12 & 0x3f));
    buf[2] = (char)(0x80 | (cp >> 6 & 0x3f));
    buf[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

long rt_json_unescape(const rt_json_value_t *str, char *out, size_t cap)
{
    if (str->type != RT_JSON_STRING)
        return RT_JSON_ETYPE;
    const char *p = str->ptr + 1, *piece;
    char buf[4];
    size_t n, len = 0;
    while ((n = next_piece(&p, buf, &piece)) != 0) {
        if (cap - len < n) {
            memcpy(out + len, piece, cap - len);
            return RT_JSON_ESPACE;
        }
        memcpy(out + len, piece, n);
        len += n;
    }
    return (long)len;
}

bool rt_json_string_eq(const rt_json_value_t *str, const char *s, size_t n)
{
    if (str->type != RT_JSON_STRING)
        return false;
    if (str->len - 2 < n)
        return false; /* unescaping never lengthens */
    const char *p = str->ptr + 1, *piece;
    char buf[4];
    size_t k, off = 0;
    while ((k = next_piece(&p, buf, &piece)) != 0) {
        if (n - off < k || memcmp(s + off, piece, k) != 0)
            return false;
        off += k;
    }
    return off == n;
}

int rt_json_find(const rt_json_value_t *obj, const char *key, size_t keylen, rt_json_value_t *out)
{
    rt_json_iter_t it;
    rt_json_value_t k, v;
    int rc = RT_JSON_ENOTFOUND;
    if (obj->type != RT_JSON_OBJECT)
        return RT_JSON_ETYPE;
    rt_json_iter_init(&it, obj);
    while (rt_json_iter_next(&it, &k, &v)) {
        if (rt_json_string_eq(&k, key, keylen)) {
            *out = v;
            rc = 0;
        }
    }
    return rc;
}

int rt_json_int(const rt_json_value_t *v, int64_t *out)
{
    if (v->type != RT_JSON_NUMBER)
        return RT_JSON_ETYPE;
    const char *p = v->ptr, *e = v->ptr + v->len;
    bool neg = false;
    if (*p == '-') {
        neg = true;
        p++;
    }
    /* The significant digits (integer and fraction parts, leading zeros dropped) times
     * 10^exp10: exact, and independent of the C locale unlike strtod. */
    char digits[17];
    size_t nd = 0;
    long exp10 = 0;
    bool frac = false, overflow = false;
    for (; p < e && ((*p >= '0' && *p <= '9') || *p == '.'); p++) {
        if (*p == '.') {
            frac = true;
            continue;
        }
        if (frac)
            exp10--;
        if (nd == 0 && *p == '0')
            continue;
        if (nd < sizeof(digits)) {
            digits[nd++] = *p;
        } else if (*p != '0') {
            overflow = true; /* more than 17 significant digits: beyond 2^53 or fractional */
        } else {
            exp10++;
        }
    }
    if (overflow)
        return RT_JSON_ERANGE;
    if (p < e) { /* exponent */
        bool eneg = false;
        long x = 0;
        p++;
        if (*p == '+' || *p == '-')
            eneg = *p++ == '-';
        for (; p < e; p++)
            if (x < 100000)
                x = x * 10 + (*p - '0');
        exp10 += eneg ? -x : x;
    }
    while (nd > 0 && digits[nd - 1] == '0') {
        nd--;
        exp10++;
    }
    if (nd == 0) {
        *out = 0;
        return 0;
    }
    if (exp10 < 0 || (long)nd + exp10 > 16)
        return RT_JSON_ERANGE;
    int64_t x = 0;
    for (size_t i = 0; i < nd; i++)
        x = x * 10 + (digits[i] - '0');
    for (long i = 0; i < exp10; i++)
        x *= 10;
    if (x > 9007199254740991LL)
        return RT_JSON_ERANGE;
    *out = neg ? -x : x;
    return 0;
}

int rt_json_placeholder(const rt_json_value_t *v, size_t nbuffers, size_t *num)
{
    rt_json_value_t flag, n;
    int64_t x;
    if (v->type != RT_JSON_OBJECT || rt_json_find(v, "_placeholder", 12, &flag) != 0 ||
        flag.type != RT_JSON_TRUE)
        return 0;
    if (rt_json_find(v, "num", 3, &n) != 0 || rt_json_int(&n, &x) != 0 || x < 0 ||
        (uint64_t)x >= nbuffers)
        return RT_JSON_ERANGE;
    *num = (size_t)x;
    return 1;
}

int rt_json_placeholders(const rt_json_value_t *v, size_t nbuffers,
                         void (*cb)(void *ud, const rt_json_value_t *placeholder, size_t num),
                         void *ud)
{
    size_t num;
    if (v->type != RT_JSON_ARRAY && v->type != RT_JSON_OBJECT)
        return 0;
    int rc = rt_json_placeholder(v, nbuffers, &num);
    if (rc < 0)
        return rc;
    if (rc == 1) {
        if (cb)
            cb(ud, v, num);
        return 1;
    }
    /* Recursion depth is bounded by the validation (RT_JSON_MAX_DEPTH). */
    rt_json_iter_t it;
    rt_json_value_t val;
    int count = 0;
    rt_json_iter_init(&it, v);
    while (rt_json_iter_next(&it, NULL, &val)) {
        if (val.type != RT_JSON_ARRAY && val.type != RT_JSON_OBJECT)
            continue;
        rc = rt_json_placeholders(&val, nbuffers, cb, ud);
        if (rc < 0)
            return rc;
        count += rc;
    }
    return count;
}

/* The escape JSON.stringify uses for byte c, or 0 when c is written as is. */
static char short_escape(unsigned char c)
{
    switch (c) {
    case '"':
        return '"';
    case '\\':
        return '\\';
    case '\b':
        return 'b';
    case '\f':
        return 'f';
    case '\n':
        return 'n';
    case '\r':
        return 'r';
    case '\t':
        return 't';
    default:
        return 0;
    }
}

size_t rt_json_write_string(char *out, size_t cap, const char *s, size_t len)
{
    size_t need = 2;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        need += c >= 0x20 && c != '"' && c != '\\' ? 1 : short_escape(c) ? 2 : 6;
    }
    if (need > cap)
        return need;
    static const char hex[] = "0123456789abcdef";
    char *o = out;
    *o++ = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            *o++ = (char)c;
        } else if (short_escape(c)) {
            *o++ = '\\';
            *o++ = short_escape(c);
        } else {
            memcpy(o, "\\u00", 4);
            o[4] = hex[c >> 4];
            o[5] = hex[c & 15];
            o += 6;
        }
    }
    *o++ = '"';
    return need;
}

const char *rt_json_strerror(int err)
{
    switch (err) {
    case 0:
        return "ok";
    case RT_JSON_ESYNTAX:
        return "JSON syntax error";
    case RT_JSON_EDEPTH:
        return "JSON nested too deep";
    case RT_JSON_EUTF8:
        return "invalid UTF-8 in JSON string";
    case RT_JSON_ETYPE:
        return "unexpected JSON type";
    case RT_JSON_ERANGE:
        return "JSON number out of range";
    case RT_JSON_ESPACE:
        return "output buffer too small";
    case RT_JSON_ENOTFOUND:
        return "JSON member not found";
    default:
        return "unknown JSON error";
    }
}

/* SPDX-License-Identifier: MIT */
/* Decoder of Socket.IO's Redis emitter format (rt_emitter.h), on Debian's msgpack-c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "eddy.h"
#include "rt_emitter.h"
#include "rt_json.h"

/* A growable text buffer; failed stays set after an allocation failed. */
typedef struct text {
    char *p;
    size_t len, cap;
    bool failed;
} text_t;

static void put(text_t *t, const void *s, size_t n)
{
    if (t->failed || n == 0) /* n == 0: s may be an empty msgpack string's NULL */
        return;
    if (t->len + n > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        while (cap < t->len + n)
            cap *= 2;
        char *p = realloc(t->p, cap);
        if (!p) {
            t->failed = true;
            return;
        }
        t->p = p;
        t->cap = cap;
    }
    memcpy(t->p + t->len, s, n);
    t->len += n;
}

static void puts_(text_t *t, const char *s)
{
    put(t, s, strlen(s));
}

static int put_string(text_t *t, const char *s, size_t n)
{
    if (!eddy_utf8_valid(s, n))
        return EDDY_EPROTO;
    size_t need = rt_json_write_string(NULL, 0, s, n);
    char *buf = malloc(need);
    if (!buf) {
        t->failed = true;
        return 0;
    }
    rt_json_write_string(buf, need, s, n);
    put(t, buf, need);
    free(buf);
    return 0;
}

/* A double as JSON.stringify writes it: the shortest form that reads back the same,
 * null for NaN and infinities. */
static void put_double(text_t *t, double v)
{
    if (!isfinite(v)) {
        puts_(t, "null");
        return;
    }
    char num[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(num, sizeof(num), "%.*g", prec, v);
        if (strtod(num, NULL) == v)
            break;
    }
    puts_(t, num);
}

typedef struct bins {
    const msgpack_object_bin **v;
    size_t n, cap;
} bins_t;

static bool key_is(const msgpack_object *k, const char *name)
{
    size_t n = strlen(name);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
           memcmp(k->via.str.ptr, name, n) == 0;
}

/* Writes o as JSON; binary values become placeholders collected in b. */
static int put_value(text_t *t, bins_t *b, const msgpack_object *o)
{
    char num[32];
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        puts_(t, "null");
        return 0;
    case MSGPACK_OBJECT_BOOLEAN:
        puts_(t, o->via.boolean ? "true" : "false");
        return 0;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        snprintf(num, sizeof(num), "%llu", (unsigned long long)o->via.u64);
        puts_(t, num);
        return 0;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        snprintf(num, sizeof(num), "%lld", (long long)o->via.i64);
        puts_(t, num);
        return 0;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        put_double(t, o->via.f64);
        return 0;
    case MSGPACK_OBJECT_STR:
        return put_string(t, o->via.str.ptr, o->via.str.size);
    case MSGPACK_OBJECT_BIN:
        if (b->n == b->cap) {
            size_t cap = b->cap ? b->cap * 2 : 4;
            const msgpack_object_bin **v = realloc(b->v, cap * sizeof(*v));
            if (!v) {
                t->failed = true;
                return 0;
            }
            b->v = v;
            b->cap = cap;
        }
        snprintf(num, sizeof(num), "%zu}", b->n);
        b->v[b->n++] = &o->via.bin;
        puts_(t, "{\"_placeholder\":true,\"num\":");
        puts_(t, num);
        return 0;
    case MSGPACK_OBJECT_ARRAY:
        put(t, "[", 1);
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            if (i)
                put(t, ",", 1);
            int rc = put_value(t, b, &o->via.array.ptr[i]);
            if (rc)
                return rc;
        }
        put(t, "]", 1);
        return 0;
    case MSGPACK_OBJECT_MAP:
        put(t, "{", 1);
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            /* A key "_placeholder" would read as a binary placeholder in the packet. */
            if (kv->key.type != MSGPACK_OBJECT_STR || key_is(&kv->key, "_placeholder"))
                return EDDY_EPROTO;
            if (i)
                put(t, ",", 1);
            int rc = put_string(t, kv->key.via.str.ptr, kv->key.via.str.size);
            if (rc)
                return rc;
            put(t, ":", 1);
            if ((rc = put_value(t, b, &kv->val)))
                return rc;
        }
        put(t, "}", 1);
        return 0;
    default:
        return EDDY_EPROTO;
    }
}

static const msgpack_object *map_get(const msgpack_object *map, const char *name)
{
    if (map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++)
        if (key_is(&map->via.map.ptr[i].key, name))
            return &map->via.map.ptr[i].val;
    return NULL;
}

/* A list of room names (absent or nil: none). */
/* memchr on msgpack-c's strings: an empty one has a NULL pointer. */
static bool has_nul(const char *s, size_t n)
{
    return n > 0 && memchr(s, 0, n) != NULL;
}

static bool rooms_ok(const msgpack_object *o, size_t *n, size_t *bytes)
{
    *n = 0;
    if (!o || o->type == MSGPACK_OBJECT_NIL)
        return true;
    if (o->type != MSGPACK_OBJECT_ARRAY)
        return false;
    for (uint32_t i = 0; i < o->via.array.size; i++) {
        const msgpack_object *r = &o->via.array.ptr[i];
        if (r->type != MSGPACK_OBJECT_STR || !eddy_utf8_valid(r->via.str.ptr, r->via.str.size) ||
            has_nul(r->via.str.ptr, r->via.str.size))
            return false;
        *bytes += r->via.str.size + 1;
    }
    *n = o->via.array.size;
    return true;
}

static bool str_ok(const msgpack_object *o)
{
    return o && o->type == MSGPACK_OBJECT_STR && !has_nul(o->via.str.ptr, o->via.str.size) &&
           eddy_utf8_valid(o->via.str.ptr, o->via.str.size);
}

static char *copy_str(char **p, const char *s, size_t n)
{
    char *d = *p;
    if (n > 0) /* msgpack-c gives an empty string a NULL pointer */
        memcpy(d, s, n);
    d[n] = 0;
    *p += n + 1;
    return d;
}

static uint64_t be(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/*
 * Walks one msgpack value without building it: true if it is well formed, ends exactly at
 * len, and no container declares more elements than bytes remain. msgpack-c allocates a
 * container's elements from its declared count before reading them, so 5 bytes declaring
 * 2^32 elements would ask for 100 GiB: this check keeps its allocations proportional to
 * the input.
 */
static bool mp_sane(const unsigned char *p, size_t len)
{
    size_t off = 0;
    uint64_t items = 1; /* values still to read, over all open containers */
    while (items) {
        if (off >= len || items > len - off)
            return false;
        items--;
        unsigned char c = p[off++];
        uint64_t skip = 0, count = 0;
        int n = 0;
        if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3)
            continue;
        if (c >= 0x80 && c <= 0x8f)
            count = 2 * (uint64_t)(c & 0x0f);
        else if (c >= 0x90 && c <= 0x9f)
            count = c & 0x0f;
        else if (c >= 0xa0 && c <= 0xbf)
            skip = c & 0x1f;
        else if (c >= 0xc4 && c <= 0xc6)
            n = 1 << (c - 0xc4); /* bin: length then data */
        else if (c >= 0xc7 && c <= 0xc9)
            n = 1 << (c - 0xc7); /* ext: length, type, data */
        else if (c == 0xca || c == 0xcb)
            skip = c == 0xca ? 4 : 8;
        else if (c >= 0xcc && c <= 0xd3)
            skip = 1u << ((c - 0xcc) & 3);
        else if (c >= 0xd4 && c <= 0xd8)
            skip = 1 + (1u << (c - 0xd4));
        else if (c >= 0xd9 && c <= 0xdb)
            n = 1 << (c - 0xd9); /* str: length then data */
        else if (c == 0xdc || c == 0xdd || c == 0xde || c == 0xdf)
            n = c == 0xdc || c == 0xde ? 2 : 4;
        else
            return false; /* 0xc1: never used */
        if (n) {
            if (len - off < (size_t)n)
                return false;
            uint64_t v = be(p + off, n);
            off += (size_t)n;
            if (c >= 0xdc)
                count = c >= 0xde ? 2 * v : v;
            else
                skip = v + (c >= 0xc7 && c <= 0xc9 ? 1 : 0);
        }
        if (skip > len - off)
            return false;
        off += (size_t)skip;
        items += count;
    }
    return off == len;
}

int rt_emitter_decode(const void *data, size_t len, rt_emitter_msg_t **out)
{
    *out = NULL;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    int rc = EDDY_EPROTO;
    text_t t = {0};
    bins_t b = {0};
    if (!mp_sane(data, len) || msgpack_unpack_next(&u, data, len, &off) != MSGPACK_UNPACK_SUCCESS ||
        off != len)
        goto done;
    const msgpack_object *root = &u.data;
    if (root->type != MSGPACK_OBJECT_ARRAY || root->via.array.size < 2 || root->via.array.size > 3)
        goto done;
    const msgpack_object *uid = &root->via.array.ptr[0], *packet = &root->via.array.ptr[1];
    const msgpack_object *opts = root->via.array.size == 3 ? &root->via.array.ptr[2] : NULL;
    if (opts && opts->type == MSGPACK_OBJECT_NIL)
        opts = NULL;
    const msgpack_object *type = map_get(packet, "type"), *pdata = map_get(packet, "data"),
                         *nsp = map_get(packet, "nsp");
    if (!str_ok(uid) || !type || type->type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        (type->via.u64 != 2 && type->via.u64 != 5) || !pdata ||
        pdata->type != MSGPACK_OBJECT_ARRAY || pdata->via.array.size == 0 ||
        pdata->via.array.ptr[0].type != MSGPACK_OBJECT_STR || (nsp && !str_ok(nsp)) ||
        (opts && opts->type != MSGPACK_OBJECT_MAP))
        goto done;
    const msgpack_object *rooms = opts ? map_get(opts, "rooms") : NULL;
    const msgpack_object *except = opts ? map_get(opts, "except") : NULL;
    const msgpack_object *flags = opts ? map_get(opts, "flags") : NULL;
    size_t nrooms, nexcept, bytes = 0;
    if (!rooms_ok(rooms, &nrooms, &bytes) || !rooms_ok(except, &nexcept, &bytes) ||
        (flags && flags->type != MSGPACK_OBJECT_MAP && flags->type != MSGPACK_OBJECT_NIL))
        goto done;
    if ((rc = put_value(&t, &b, pdata)) != 0)
        goto done;
    rc = EDDY_ENOMEM;
    if (t.failed)
        goto done;

    const char *nsp_s = nsp ? nsp->via.str.ptr : "/";
    size_t nsp_len = nsp ? nsp->via.str.size : 1;
    size_t bin_bytes = 0;
    for (size_t i = 0; i < b.n; i++)
        bin_bytes += b.v[i]->size;
    size_t size = sizeof(rt_emitter_msg_t) + (nrooms + nexcept + b.n) * sizeof(char *) +
                  b.n * sizeof(size_t) + uid->via.str.size + 1 + nsp_len + 1 + bytes + t.len + 1 +
                  bin_bytes;
    rt_emitter_msg_t *m = calloc(1, size);
    if (!m)
        goto done;
    const char **names = (const char **)(m + 1);
    const void **att = (const void **)(names + nrooms + nexcept);
    size_t *att_len = (size_t *)(att + b.n);
    char *p = (char *)(att_len + b.n);
    m->uid = copy_str(&p, uid->via.str.ptr, uid->via.str.size);
    m->nsp = copy_str(&p, nsp_s, nsp_len);
    for (size_t i = 0; i < nrooms; i++)
        names[i] =
            copy_str(&p, rooms->via.array.ptr[i].via.str.ptr, rooms->via.array.ptr[i].via.str.size);
    for (size_t i = 0; i < nexcept; i++)
        names[nrooms + i] = copy_str(&p, except->via.array.ptr[i].via.str.ptr,
                                     except->via.array.ptr[i].via.str.size);
    m->rooms = names;
    m->nrooms = nrooms;
    m->except = names + nrooms;
    m->nexcept = nexcept;
    m->args = copy_str(&p, t.p, t.len);
    m->args_len = t.len;
    for (size_t i = 0; i < b.n; i++) {
        att[i] = p;
        att_len[i] = b.v[i]->size;
        if (b.v[i]->size)
            memcpy(p, b.v[i]->ptr, b.v[i]->size);
        p += b.v[i]->size;
    }
    m->attachments = att;
    m->attachment_lens = att_len;
    m->nattachments = b.n;
    const msgpack_object *vol = flags ? map_get(flags, "volatile") : NULL;
    const msgpack_object *comp = flags ? map_get(flags, "compress") : NULL;
    m->volatile_flag = vol && vol->type == MSGPACK_OBJECT_BOOLEAN && vol->via.boolean;
    m->compress = comp && comp->type == MSGPACK_OBJECT_BOOLEAN ? comp->via.boolean : -1;
    *out = m;
    rc = 0;
done:
    free(t.p);
    free(b.v);
    msgpack_unpacked_destroy(&u);
    return rc;
}

void rt_emitter_msg_free(rt_emitter_msg_t *m)
{
    free(m);
}

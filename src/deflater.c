/* SPDX-License-Identifier: MIT */
/*
 * DEFLATE (RFC 1951) for permessage-deflate (RFC 7692): every message is compressed
 * whole and ends with a sync flush (an empty stored block whose 00 00 ff ff is left off).
 *
 * Why not zlib's deflate(): its stream is built for files, and WebSocket messages are
 * small. A 9-bit window reaches back only 250 bytes in zlib, memLevel 1 ends a block (and
 * builds its codes) every 128 symbols, a reset for no context takeover clears a hash table
 * of up to 64 KiB, and every position of a long match is hashed. Here a small message is
 * one block, a reset costs nothing (matches simply may not reach before the message), the
 * search hashes 4 bytes at a time, so fewer candidates are compared, and only the tail of
 * a long match is hashed. The search itself is the classic one: hash chains, with levels
 * 4-9 deferring a match when the next position has a longer one, and the same effort per
 * level as zlib's (longest chain, length that ends the search). bench/deflate_compare
 * measures both on the same messages.
 *
 * Input is copied into a buffer of at least two windows; when it is full, its last window
 * moves to the front. The hash chains hold positions as 16-bit stamps, the position in the
 * stream modulo 2^16, so that move changes no table. A stamp is read as a distance back
 * from the current position, and a chain is followed only while the distances grow and
 * stay inside the window and the message's reach: an old stamp that aliases a recent one
 * at worst offers a candidate that is compared and not taken, and anything taken is a
 * real match with data the receiver holds.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "deflater.h"
#include "eddy.h"

#define MIN_MATCH    4 /* candidates are found by hashing 4 bytes */
#define MAX_MATCH    258
#define LITLEN_CODES 286
#define DIST_CODES   30
#define CL_CODES     19
#define END_OF_BLOCK 256
#define STORED_MAX   65535
#define TAIL_HASHED  32

/* Search effort. For levels 1-3 (greedy: a match is taken at once) `lazy` is the longest
 * match whose inner positions are still hashed; for 4-9 it is the length from which a
 * match is taken without looking at the next position. A chain is cut to a quarter once
 * a match of `good` bytes is in hand, and the search ends at a match of `nice` bytes. */
typedef struct effort {
    uint16_t good, lazy, nice, chain;
} effort_t;

static const effort_t efforts[10] = {
    {0, 0, 0, 0},         {4, 4, 8, 4},         {4, 5, 16, 8},     {4, 6, 32, 32},
    {4, 4, 16, 16},       {8, 16, 32, 32},      {8, 16, 128, 128}, {8, 32, 128, 256},
    {32, 128, 258, 1024}, {32, 258, 258, 4096},
};

struct eddy__deflater {
    effort_t effort;
    bool greedy;
    uint8_t hash_shift; /* 32 - hash bits */
    uint16_t stamp;     /* the stamp of buf[0] */
    uint32_t wsize;
    uint32_t size;  /* of buf */
    uint32_t pos;   /* bytes in buf: where the next message goes */
    uint32_t valid; /* matches reach back to here: the first message since a reset */
    uint32_t syms_max;
    uint32_t
        *syms; /* one block's symbols: a literal, or 1 << 31 | (distance-1) << 8 | (length-3) */
    uint16_t *head; /* by hash: the stamp of the latest position with it */
    uint16_t *prev; /* by stamp % wsize: the stamp of the position before with its hash */
    uint8_t *buf;
};

/* ---- static tables ---- */

/* A Huffman code: its lengths, the symbols that have one (in symbol order) and, once
 * canonical_codes() ran, the codes. */
typedef struct huff {
    int nused;
    uint16_t used[LITLEN_CODES + 2];
    uint8_t len[LITLEN_CODES + 2];
    uint16_t code[LITLEN_CODES + 2];
} huff_t;

static uint8_t len_code[256]; /* by length - 3: the length code - 257 */
static uint16_t len_base[29]; /* by length code - 257 */
static uint8_t len_extra[29];
static uint16_t dist_base[DIST_CODES];
static uint8_t dist_extra[DIST_CODES];
static uint8_t reversed[256];
/* The fixed codes (RFC 1951 3.2.6). Literal/length symbols 286 and 287 are never sent but
 * take their codes. */
static huff_t fixed_ll, fixed_dist;
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static void canonical_codes(huff_t *h);

static void build_tables(void)
{
    unsigned base = 3;
    for (int c = 0; c < 28; c++) {
        len_extra[c] = (uint8_t)(c < 8 ? 0 : (c - 4) / 4);
        len_base[c] = (uint16_t)base;
        for (unsigned j = 0; j < (1u << len_extra[c]) && base - 3 + j < 256; j++)
            len_code[base - 3 + j] = (uint8_t)c;
        base += 1u << len_extra[c];
    }
    /* 258 has a code of its own (285), not the last value of 284's range. */
    len_code[255] = 28;
    len_base[28] = 258;
    len_extra[28] = 0;
    base = 1;
    for (int c = 0; c < DIST_CODES; c++) {
        dist_extra[c] = (uint8_t)(c < 4 ? 0 : c / 2 - 1);
        dist_base[c] = (uint16_t)base;
        base += 1u << dist_extra[c];
    }
    for (int i = 0; i < 256; i++) {
        unsigned r = 0;
        for (int b = 0; b < 8; b++)
            r |= ((i >> b) & 1u) << (7 - b);
        reversed[i] = (uint8_t)r;
    }
    for (int s = 0; s < 288; s++) {
        fixed_ll.used[s] = (uint16_t)s;
        fixed_ll.len[s] = s < 144 ? 8 : s < 256 ? 9 : s < 280 ? 7 : 8;
    }
    fixed_ll.nused = 288;
    canonical_codes(&fixed_ll);
    for (int c = 0; c < DIST_CODES; c++) {
        fixed_dist.used[c] = (uint16_t)c;
        fixed_dist.len[c] = 5;
    }
    fixed_dist.nused = DIST_CODES;
    canonical_codes(&fixed_dist);
}

static inline unsigned dist_code(uint32_t d) /* d: distance - 1 */
{
    if (d < 4)
        return d;
    unsigned top = 31u - (unsigned)__builtin_clz(d);
    return 2 * top + ((d >> (top - 1)) & 1);
}

/* ---- Huffman codes ---- */

/* Sorts keys (frequency << 9 | symbol) in ascending order. */
static void sort_keys(uint32_t *key, int n)
{
    if (n <= 32) {
        for (int i = 1; i < n; i++) {
            uint32_t k = key[i];
            int j = i;
            for (; j > 0 && key[j - 1] > k; j--)
                key[j] = key[j - 1];
            key[j] = k;
        }
        return;
    }
    /* Two stable passes on the frequency's bytes (frequencies stay below 2^16); the keys
     * came in symbol order, so equal frequencies stay in symbol order. */
    uint32_t tmp[LITLEN_CODES];
    uint32_t *from = key, *to = tmp;
    for (int shift = 9; shift < 25; shift += 8) {
        unsigned count[257] = {0};
        for (int i = 0; i < n; i++)
            count[((from[i] >> shift) & 255) + 1]++;
        for (int b = 1; b < 257; b++)
            count[b] += count[b - 1];
        for (int i = 0; i < n; i++)
            to[count[(from[i] >> shift) & 255]++] = from[i];
        uint32_t *t = from;
        from = to;
        to = t;
    }
}

/* Code lengths (at most limit bits) of a Huffman code for freq[0..n); unused symbols get
 * 0. At least two symbols get a code, as inflaters expect (a single code would be one bit
 * with a missing sibling). */
static void huffman_lengths(const uint32_t *freq, int n, int limit, huff_t *h)
{
    uint32_t key[LITLEN_CODES];
    uint32_t weight[2 * LITLEN_CODES];
    uint16_t parent[2 * LITLEN_CODES];
    uint16_t depth[2 * LITLEN_CODES];
    memset(h->len, 0, (size_t)n);
    int used = 0;
    for (int s = 0; s < n; s++) { /* without a branch: which symbols are used is random */
        h->used[used] = (uint16_t)s;
        used += freq[s] != 0;
    }
    for (int s = 0; used < 2; s++) {
        if (freq[s] != 0)
            continue;
        int i = used++;
        for (; i > 0 && h->used[i - 1] > s; i--)
            h->used[i] = h->used[i - 1];
        h->used[i] = (uint16_t)s;
    }
    h->nused = used;
    for (int i = 0; i < used; i++) {
        uint32_t f = freq[h->used[i]];
        key[i] = (f != 0 ? f : 1) << 9 | h->used[i];
    }
    sort_keys(key, used);

    /* Two queues: the leaves in order, and the inner nodes, made in order of weight. */
    for (int i = 0; i < used; i++)
        weight[i] = key[i] >> 9;
    int leaf = 0, inner = used, next = used;
    for (int k = 0; k < used - 1; k++) {
        int a = leaf < used && (inner >= next || weight[leaf] <= weight[inner]) ? leaf++ : inner++;
        int b = leaf < used && (inner >= next || weight[leaf] <= weight[inner]) ? leaf++ : inner++;
        weight[next] = weight[a] + weight[b];
        parent[a] = parent[b] = (uint16_t)next;
        next++;
    }
    depth[next - 1] = 0;
    for (int i = next - 2; i >= 0; i--)
        depth[i] = (uint16_t)(depth[parent[i]] + 1);

    /* Leaves deeper than the limit go up to it; the code is then over-full, so leaves move
     * down one level at a time from the deepest level above the limit (the smallest
     * step), and any room left is filled again by moving the deepest leaves up. */
    unsigned count[16] = {0};
    for (int i = 0; i < used; i++)
        count[depth[i] > limit ? limit : depth[i]]++;
    uint32_t full = 1u << limit, kraft = 0;
    for (int d = 1; d <= limit; d++)
        kraft += count[d] << (limit - d);
    while (kraft > full) {
        int d = limit - 1;
        while (count[d] == 0)
            d--;
        count[d]--;
        count[d + 1]++;
        kraft -= 1u << (limit - d - 1);
    }
    while (kraft < full) {
        int d = limit;
        while (count[d] == 0)
            d--;
        count[d]--;
        count[d - 1]++;
        kraft += 1u << (limit - d);
    }
    /* The rarest symbols get the longest codes. */
    int i = 0;
    for (int d = limit; d >= 1; d--)
        for (unsigned c = count[d]; c > 0; c--)
            h->len[key[i++] & 511] = (uint8_t)d;
}

/* Canonical codes (RFC 1951 3.2.2) for the lengths, bit-reversed: DEFLATE sends Huffman
 * codes from their most significant bit, and bits are written from the least. */
static void canonical_codes(huff_t *h)
{
    unsigned count[16] = {0};
    uint32_t next[16];
    for (int i = 0; i < h->nused; i++)
        count[h->len[h->used[i]]]++;
    uint32_t c = 0;
    for (int b = 1; b < 16; b++) {
        c = (c + count[b - 1]) << 1;
        next[b] = c;
    }
    for (int i = 0; i < h->nused; i++) {
        unsigned s = h->used[i], l = h->len[s];
        uint32_t v = next[l]++;
        uint32_t r = (uint32_t)reversed[v & 255] << 8 | reversed[(v >> 8) & 255];
        h->code[s] = (uint16_t)(r >> (16 - l));
    }
}

/* ---- bits ---- */

typedef struct bits {
    uint64_t acc;
    unsigned n; /* bits in acc, below 32 between calls */
    uint8_t *p;
} bits_t;

static inline void put(bits_t *w, uint32_t v, unsigned n)
{
    w->acc |= (uint64_t)v << w->n;
    w->n += n;
    if (w->n >= 32) {
        uint32_t lo = (uint32_t)w->acc;
        w->p[0] = (uint8_t)lo;
        w->p[1] = (uint8_t)(lo >> 8);
        w->p[2] = (uint8_t)(lo >> 16);
        w->p[3] = (uint8_t)(lo >> 24);
        w->p += 4;
        w->acc >>= 32;
        w->n -= 32;
    }
}

/* Pads with zero bits to a byte boundary and writes out every bit held. */
static void align(bits_t *w)
{
    while (w->n > 0) {
        *w->p++ = (uint8_t)w->acc;
        w->acc >>= 8;
        w->n = w->n > 8 ? w->n - 8 : 0;
    }
    w->acc = 0;
}

/* ---- blocks ---- */

typedef struct block {
    uint32_t ll_freq[LITLEN_CODES];
    uint32_t dist_freq[DIST_CODES];
    uint32_t nsyms;
    uint32_t start;   /* where the block's part in the current piece of input starts */
    uint32_t carried; /* bytes it covers in earlier pieces (gone from buf: not storable) */
} block_t;

static void block_clear(block_t *b, uint32_t start)
{
    memset(b->ll_freq, 0, sizeof(b->ll_freq));
    memset(b->dist_freq, 0, sizeof(b->dist_freq));
    b->nsyms = 0;
    b->start = start;
    b->carried = 0;
}

static const uint8_t cl_order[CL_CODES] = {16, 17, 18, 0, 8,  7, 9,  6, 10, 5,
                                           11, 4,  12, 3, 13, 2, 14, 1, 15};

static void write_symbols(bits_t *w, const uint32_t *syms, uint32_t nsyms, const huff_t *ll,
                          const huff_t *dist)
{
    for (uint32_t i = 0; i < nsyms; i++) {
        uint32_t s = syms[i];
        if (s < 256) {
            put(w, ll->code[s], ll->len[s]);
            continue;
        }
        unsigned l = s & 255, d = (s >> 8) & 0x7fff;
        unsigned lc = len_code[l], dc = dist_code(d);
        put(w, ll->code[257 + lc], ll->len[257 + lc]);
        if (len_extra[lc])
            put(w, l + 3 - len_base[lc], len_extra[lc]);
        put(w, dist->code[dc], dist->len[dc]);
        if (dist_extra[dc])
            put(w, d + 1 - dist_base[dc], dist_extra[dc]);
    }
    put(w, ll->code[END_OF_BLOCK], ll->len[END_OF_BLOCK]);
}

/* Bits of the symbols of freq under the code h and under the fixed code fixed. */
static void code_sizes(const uint32_t *freq, const huff_t *h, const huff_t *fixed, uint64_t *dyn,
                       uint64_t *fix)
{
    for (int i = 0; i < h->nused; i++) {
        unsigned s = h->used[i];
        *dyn += (uint64_t)freq[s] * h->len[s];
        *fix += (uint64_t)freq[s] * fixed->len[s];
    }
}

/* Writes the block b, which covers raw_len bytes, in whichever of the three forms
 * (dynamic or fixed Huffman codes, or stored) is shortest; not stored when raw, those
 * bytes, is NULL. */
static void write_block(bits_t *w, block_t *b, const uint32_t *syms, const uint8_t *raw,
                        uint32_t raw_len)
{
    b->ll_freq[END_OF_BLOCK] = 1;
    huff_t ll, dist, cl;
    huffman_lengths(b->ll_freq, LITLEN_CODES, 15, &ll);
    huffman_lengths(b->dist_freq, DIST_CODES, 15, &dist);

    /* The code lengths, run-length coded (RFC 1951 3.2.7): 16 repeats the previous length
     * 3-6 times, 17 and 18 give 3-10 and 11-138 zeros. Entries are symbol | extra << 5. */
    int hlit = ll.used[ll.nused - 1] + 1, hdist = dist.used[dist.nused - 1] + 1;
    if (hlit < 257)
        hlit = 257;
    uint8_t lens[LITLEN_CODES + DIST_CODES];
    memcpy(lens, ll.len, (size_t)hlit);
    memcpy(lens + hlit, dist.len, (size_t)hdist);
    uint16_t rle[LITLEN_CODES + DIST_CODES];
    uint32_t cl_freq[CL_CODES] = {0};
    int nrle = 0;
    for (int i = 0, total = hlit + hdist; i < total;) {
        uint8_t v = lens[i];
        int run = 1;
        while (i + run < total && lens[i + run] == v)
            run++;
        i += run;
        if (v == 0) {
            for (; run >= 11; run -= run < 138 ? run : 138) {
                int r = run < 138 ? run : 138;
                rle[nrle++] = (uint16_t)(18 | (r - 11) << 5);
                cl_freq[18]++;
            }
            if (run >= 3) {
                rle[nrle++] = (uint16_t)(17 | (run - 3) << 5);
                cl_freq[17]++;
                run = 0;
            }
        } else {
            rle[nrle++] = v;
            cl_freq[v]++;
            run--;
            for (; run >= 3; run -= run < 6 ? run : 6) {
                int r = run < 6 ? run : 6;
                rle[nrle++] = (uint16_t)(16 | (r - 3) << 5);
                cl_freq[16]++;
            }
        }
        for (; run > 0; run--) {
            rle[nrle++] = v;
            cl_freq[v]++;
        }
    }
    huffman_lengths(cl_freq, CL_CODES, 7, &cl);
    int hclen = CL_CODES;
    while (hclen > 4 && cl.len[cl_order[hclen - 1]] == 0)
        hclen--;

    /* Sizes in bits of the three forms. */
    uint64_t extra = 0, dyn = 3 + 5 + 5 + 4 + 3 * (uint64_t)hclen, fixed = 3, unused = 0;
    for (int c = 0; c < 29; c++)
        extra += (uint64_t)b->ll_freq[257 + c] * len_extra[c];
    for (int c = 0; c < DIST_CODES; c++)
        extra += (uint64_t)b->dist_freq[c] * dist_extra[c];
    code_sizes(b->ll_freq, &ll, &fixed_ll, &dyn, &fixed);
    code_sizes(b->dist_freq, &dist, &fixed_dist, &dyn, &fixed);
    code_sizes(cl_freq, &cl, &cl, &dyn, &unused);
    dyn += 2 * (uint64_t)cl_freq[16] + 3 * (uint64_t)cl_freq[17] + 7 * (uint64_t)cl_freq[18];
    dyn += extra;
    fixed += extra;
    uint32_t pieces = (raw_len + STORED_MAX - 1) / STORED_MAX;
    uint64_t stored =
        3 + ((8 - ((w->n + 3) & 7)) & 7) + 32 + (uint64_t)(pieces - 1) * 40 + 8 * (uint64_t)raw_len;

    if (raw != NULL && stored <= dyn && stored <= fixed) {
        for (uint32_t off = 0; off < raw_len; off += STORED_MAX) {
            uint32_t n = raw_len - off < STORED_MAX ? raw_len - off : STORED_MAX;
            put(w, 0, 3); /* BFINAL 0, BTYPE 00 */
            align(w);
            w->p[0] = (uint8_t)n;
            w->p[1] = (uint8_t)(n >> 8);
            w->p[2] = (uint8_t)~n;
            w->p[3] = (uint8_t)(~n >> 8);
            memcpy(w->p + 4, raw + off, n);
            w->p += 4 + n;
        }
    } else if (fixed <= dyn) {
        put(w, 1 << 1, 3); /* BTYPE 01 */
        write_symbols(w, syms, b->nsyms, &fixed_ll, &fixed_dist);
    } else {
        canonical_codes(&ll);
        canonical_codes(&dist);
        canonical_codes(&cl);
        put(w, 2 << 1, 3); /* BTYPE 10 */
        put(w, (uint32_t)(hlit - 257), 5);
        put(w, (uint32_t)(hdist - 1), 5);
        put(w, (uint32_t)(hclen - 4), 4);
        for (int i = 0; i < hclen; i++)
            put(w, cl.len[cl_order[i]], 3);
        static const uint8_t rle_extra[3] = {2, 3, 7};
        for (int i = 0; i < nrle; i++) {
            unsigned sym = rle[i] & 31;
            put(w, cl.code[sym], cl.len[sym]);
            if (sym >= 16)
                put(w, rle[i] >> 5, rle_extra[sym - 16]);
        }
        write_symbols(w, syms, b->nsyms, &ll, &dist);
    }
}

/* ---- matching ---- */

static inline uint32_t load32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline uint32_t hash4(const uint8_t *p, unsigned shift)
{
    return (load32(p) * 0x9E3779B1u) >> shift;
}

/* How many of the first max bytes of a and b are equal. */
static inline uint32_t match_len(const uint8_t *a, const uint8_t *b, uint32_t max)
{
    uint32_t n = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    for (; n + 8 <= max; n += 8) {
        uint64_t x, y;
        memcpy(&x, a + n, 8);
        memcpy(&y, b + n, 8);
        if (x != y)
            return n + (uint32_t)__builtin_ctzll(x ^ y) / 8;
    }
#endif
    while (n < max && a[n] == b[n])
        n++;
    return n;
}

/* Enters buf position p in the hash chains; returns the stamp of the previous position
 * with its hash. */
static inline uint16_t insert(eddy__deflater_t *d, uint32_t p)
{
    uint16_t stamp = (uint16_t)(d->stamp + p);
    uint32_t h = hash4(d->buf + p, d->hash_shift);
    uint16_t cand = d->head[h];
    d->prev[stamp & (d->wsize - 1)] = cand;
    d->head[h] = stamp;
    return cand;
}

/* The longest match for buf position p (at most end - p bytes) longer than `better`,
 * starting the chain at stamp cand; 0 if none. */
static uint32_t longest(const eddy__deflater_t *d, uint32_t p, uint16_t cand, uint32_t end,
                        uint32_t better, uint32_t *dist)
{
    uint16_t here = (uint16_t)(d->stamp + p);
    uint32_t reach = p - d->valid < d->wsize - 1 ? p - d->valid : d->wsize - 1;
    uint32_t max = end - p < MAX_MATCH ? end - p : MAX_MATCH;
    uint32_t best = better >= MIN_MATCH ? better : MIN_MATCH - 1;
    if (best >= max)
        return 0;
    uint32_t nice = d->effort.nice < max ? d->effort.nice : max;
    unsigned chain = d->effort.chain;
    if (better >= d->effort.good)
        chain >>= 2;
    const uint8_t *s = d->buf + p;
    uint32_t found = 0, last = 0;
    for (uint32_t back = (uint16_t)(here - cand); back > last && back <= reach && chain-- > 0;
         back = (uint16_t)(here - cand)) {
        const uint8_t *c = s - back;
        /* A longer match must agree on the 4 bytes that end at best, and on the first 4. */
        if (load32(c + best - 3) == load32(s + best - 3) && load32(c) == load32(s)) {
            uint32_t n = match_len(c, s, max);
            if (n > best) {
                best = n;
                found = n;
                *dist = back;
                if (n >= nice)
                    break;
            }
        }
        last = back;
        cand = d->prev[cand & (d->wsize - 1)];
    }
    return found;
}

/* Whether block b, open at the end of a piece of input, may go on into the next piece
 * (of up to `next` bytes) although it can then no longer be stored: only if it is already
 * so much smaller than stored, in fixed codes, that the next piece cannot make it longer
 * than stored (a byte takes at most 9 bits in fixed codes, 8 stored). Blocks then span
 * pieces, which matters for small windows: a 9-bit window's pieces are 1.5 KiB. */
static bool block_carries(const block_t *b, uint32_t bytes, uint32_t next)
{
    uint64_t fixed = 3 + 7; /* the header and END_OF_BLOCK */
    for (int c = 0; c < 29; c++)
        fixed += (uint64_t)b->ll_freq[257 + c] * (fixed_ll.len[257 + c] + len_extra[c]);
    for (int s = 0; s < 256; s++)
        fixed += (uint64_t)b->ll_freq[s] * fixed_ll.len[s];
    for (int c = 0; c < DIST_CODES; c++)
        fixed += (uint64_t)b->dist_freq[c] * (5 + dist_extra[c]);
    return fixed + (uint64_t)next + 64 <= 8 * (uint64_t)bytes;
}

/* Compresses buf[start..end), a piece of input, into block b (and the blocks it fills);
 * the last piece of a message ends its block. */
static void compress_range(eddy__deflater_t *d, bits_t *w, block_t *b, uint32_t start, uint32_t end,
                           bool last)
{
    b->start = start;
    const uint8_t *buf = d->buf;
    uint32_t hash_end = end - start >= MIN_MATCH ? end - (MIN_MATCH - 1) : start;
    uint32_t p = start, ins = start; /* ins: the next position to enter in the chains */
    while (p < end) {
        uint32_t len = 0, dist = 0;
        if (p < hash_end) {
            len = longest(d, p, insert(d, p), end, 0, &dist);
            ins = p + 1;
            /* Lazy matching: a longer match at the next position wins, and this byte
             * goes as a literal. */
            while (!d->greedy && len != 0 && len < d->effort.lazy && p + 1 < hash_end &&
                   b->nsyms + 1 < d->syms_max) {
                uint32_t dist2 = 0;
                uint32_t len2 = longest(d, p + 1, insert(d, p + 1), end, len, &dist2);
                ins = p + 2;
                if (len2 == 0)
                    break;
                d->syms[b->nsyms++] = buf[p];
                b->ll_freq[buf[p]]++;
                p++;
                len = len2;
                dist = dist2;
            }
        }
        if (len != 0) {
            d->syms[b->nsyms++] = 1u << 31 | (dist - 1) << 8 | (len - 3);
            b->ll_freq[257 + len_code[len - 3]]++;
            b->dist_freq[dist_code(dist - 1)]++;
            /* The inner positions of a long match are not hashed (fast levels: over `lazy`
             * bytes; the others: `nice` or more), only its last TAIL_HASHED: what follows
             * a repeat is often more of it, within reach of a small window. */
            uint32_t stop = p + len < hash_end ? p + len : hash_end;
            if (len > (d->greedy ? d->effort.lazy : d->effort.nice - 1u) &&
                stop > ins + TAIL_HASHED)
                ins = stop - TAIL_HASHED;
            for (; ins < stop; ins++)
                insert(d, ins);
            p += len;
        } else {
            d->syms[b->nsyms++] = buf[p];
            b->ll_freq[buf[p]]++;
            p++;
        }
        if (b->nsyms == d->syms_max) {
            write_block(w, b, d->syms, b->carried ? NULL : buf + b->start,
                        b->carried + p - b->start);
            block_clear(b, p);
        }
    }
    if (b->nsyms == 0)
        return;
    uint32_t bytes = b->carried + end - b->start;
    if (!last && block_carries(b, bytes, d->size - d->wsize)) {
        b->carried = bytes;
        return;
    }
    write_block(w, b, d->syms, b->carried ? NULL : buf + b->start, bytes);
    block_clear(b, end);
}

/* Moves the last window of buf to its front. */
static void slide(eddy__deflater_t *d)
{
    uint32_t ws = d->wsize, gone = d->pos - ws;
    memmove(d->buf, d->buf + gone, ws);
    d->stamp = (uint16_t)(d->stamp + gone);
    d->pos = ws;
    d->valid = d->valid > gone ? d->valid - gone : 0;
}

/* ---- public ---- */

eddy__deflater_t *eddy__deflater_new(int window_bits, int level, int mem_level)
{
    if (window_bits < 9 || window_bits > 15 || level < 1 || level > 9 || mem_level < 1 ||
        mem_level > 9)
        return NULL;
    pthread_once(&tables_once, build_tables);
    size_t wsize = (size_t)1 << window_bits;
    size_t hsize = (size_t)1 << (mem_level + 7);
    /* A message of 1.5 KiB goes in one piece even with a 9-bit window. */
    size_t bufsize = 2 * wsize < 2048 ? 2048 : 2 * wsize;
    size_t syms = wsize < 1024 ? 1024 : wsize > 4096 ? 4096 : wsize;
    size_t size = sizeof(eddy__deflater_t) + syms * 4 + hsize * 2 + wsize * 2 + bufsize;
    eddy__deflater_t *d = calloc(1, size);
    if (d == NULL)
        return NULL;
    d->effort = efforts[level];
    d->greedy = level <= 3;
    d->hash_shift = (uint8_t)(32 - (mem_level + 7));
    d->wsize = (uint32_t)wsize;
    d->size = (uint32_t)bufsize;
    d->syms_max = (uint32_t)syms;
    d->syms = (uint32_t *)(d + 1);
    d->head = (uint16_t *)(d->syms + syms);
    d->prev = d->head + hsize;
    d->buf = (uint8_t *)(d->prev + wsize);
    return d;
}

void eddy__deflater_free(eddy__deflater_t *d)
{
    free(d);
}

void eddy__deflater_reset(eddy__deflater_t *d)
{
    d->valid = d->pos;
}

size_t eddy__deflate_bound(size_t len)
{
    /* A block is never longer than stored: its bytes plus at most 6 (3 bits of header, 7 of
     * padding, LEN and NLEN), 5 more for a second piece when it covers 64 KiB; a block that
     * goes on across pieces stays shorter than that (block_carries). A block ends after at
     * least 1,024 symbols (>= 1,024 bytes) or where the input is cut for the window (every
     * >= 1,024 bytes, and once where the first piece ends): fewer than len / 512 + 2
     * blocks, 6 * len / 512 + 12 bytes, plus 1 for the flush. */
    return len + len / 32 + 32;
}

int eddy__deflate_fit_bits(size_t len, int max_bits)
{
    /* The deflater matches at most 2^bits - 1 bytes back, and a message compressed alone
     * never further back than its own start. */
    int bits = 9;
    while (bits < max_bits && ((size_t)1 << bits) < len)
        bits++;
    return bits;
}

int eddy__deflate(eddy__deflater_t *d, const void *data, size_t len, eddy__buf_t *out)
{
    out->len = 0;
    /* put() writes 4 bytes at a time: 8 bytes of room beyond the bound. */
    if (eddy__buf_reserve(out, eddy__deflate_bound(len) + 8) != 0)
        return EDDY_ENOMEM;
    bits_t w = {0, 0, (uint8_t *)out->data};
    block_t b;
    block_clear(&b, d->pos);
    const uint8_t *in = data;
    size_t left = len;
    /* A message that would fit whole after a slide gets one now, not after its first
     * piece: one piece, one block. */
    if (d->pos > d->wsize && len > d->size - d->pos && len <= d->size - d->wsize)
        slide(d);
    while (left > 0) {
        if (d->pos == d->size)
            slide(d);
        size_t room = d->size - d->pos;
        uint32_t n = (uint32_t)(left < room ? left : room);
        memcpy(d->buf + d->pos, in, n);
        compress_range(d, &w, &b, d->pos, d->pos + n, n == left);
        d->pos += n;
        in += n;
        left -= n;
    }
    put(&w, 0, 3); /* the sync flush: an empty stored block, whose LEN and NLEN are left off */
    align(&w);
    out->len = (size_t)(w.p - (uint8_t *)out->data);
    return 0;
}

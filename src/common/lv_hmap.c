/* lv_hmap.c - chained hash table over intrusive nodes, SipHash-1-3 with a random key per table. */
#include "lv_hmap.h"

#include <stdlib.h>

#include "lv_common.h"
#include "lv_rand.h"

#define MIN_BUCKETS 16

/* ---- SipHash (Aumasson and Bernstein, "SipHash: a fast short-input PRF", 2012) ---- */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = ROTL(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = ROTL(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = ROTL(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = ROTL(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = ROTL(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = ROTL(v2, 32);                                                                         \
    } while (0)

static uint64_t load64_le(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* SipHash-1-3: one compression round per 8-byte block, three finalisation rounds. The reduced
 * rounds are what redis and Rust use for hash tables: a flooding attacker never sees a hash
 * value, only timings, so the margin of SipHash-2-4 (a MAC) is not needed. */
static uint64_t siphash13(uint64_t k0, uint64_t k1, const void *in, size_t len)
{
    const unsigned char *p = in;
    uint64_t v0 = 0x736f6d6570736575ULL ^ k0;
    uint64_t v1 = 0x646f72616e646f6dULL ^ k1;
    uint64_t v2 = 0x6c7967656e657261ULL ^ k0;
    uint64_t v3 = 0x7465646279746573ULL ^ k1;
    size_t whole = len - (len % 8);

    for (size_t i = 0; i < whole; i += 8) {
        uint64_t m = load64_le(p + i);
        v3 ^= m;
        SIPROUND;
        v0 ^= m;
    }
    /* The last block: the remaining 0..7 bytes, and the length's low byte on top. */
    uint64_t b = (uint64_t)len << 56;
    for (size_t i = 0; i < len % 8; i++)
        b |= (uint64_t)p[whole + i] << (8 * i);
    v3 ^= b;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

uint64_t lv_hmap_hash(const lv_hmap_t *m, const void *key, size_t len)
{
    return siphash13(m->k0, m->k1, key, len);
}

/* ---- the table ---- */

int lv_hmap_init(lv_hmap_t *m, size_t max_entries)
{
    unsigned char k[16];
    memset(m, 0, sizeof(*m));
    m->max_entries = max_entries;
    if (lv_rand_bytes(k, sizeof(k)) != 0)
        return LV_EIO;
    m->k0 = load64_le(k);
    m->k1 = load64_le(k + 8);
    return 0;
}

void lv_hmap_free(lv_hmap_t *m)
{
    free(m->buckets);
    m->buckets = NULL;
    m->n_buckets = 0;
    m->count = 0;
}

/* Move every node into a new array of n buckets. Nothing changes when the allocation fails:
 * the old array still works, with longer chains. */
static int resize(lv_hmap_t *m, size_t n)
{
    lv_hmap_node_t **b = calloc(n, sizeof(*b));
    if (!b)
        return LV_ENOMEM;
    for (size_t i = 0; i < m->n_buckets; i++) {
        lv_hmap_node_t *node = m->buckets[i];
        while (node) {
            lv_hmap_node_t *next = node->next;
            lv_hmap_node_t **slot = &b[node->hash & (n - 1)];
            node->next = *slot;
            *slot = node;
            node = next;
        }
    }
    free(m->buckets);
    m->buckets = b;
    m->n_buckets = n;
    return 0;
}

lv_hmap_node_t *lv_hmap_find(const lv_hmap_t *m, const void *key, size_t len)
{
    if (m->count == 0)
        return NULL;
    uint64_t h = lv_hmap_hash(m, key, len);
    for (lv_hmap_node_t *n = m->buckets[h & (m->n_buckets - 1)]; n; n = n->next)
        if (n->hash == h && n->key_len == len && memcmp(n->key, key, len) == 0)
            return n;
    return NULL;
}

int lv_hmap_insert(lv_hmap_t *m, lv_hmap_node_t *n, const void *key, size_t len)
{
    if (lv_hmap_find(m, key, len))
        return LV_EEXIST;
    if (m->max_entries && m->count >= m->max_entries)
        return LV_ELIMIT;
    /* Load factor at most 1 while memory allows; shrink (one halving per insert) once a table
     * that grew for a crowd is down to an eighth, so an idle server gives the memory back. Only
     * here, never in remove, so a walk may remove what it visits. */
    if (m->n_buckets == 0) {
        if (resize(m, MIN_BUCKETS) != 0)
            return LV_ENOMEM;
    } else if (m->count + 1 > m->n_buckets) {
        (void)resize(m, m->n_buckets * 2);
    } else if (m->n_buckets > MIN_BUCKETS && (m->count + 1) * 8 < m->n_buckets) {
        (void)resize(m, m->n_buckets / 2);
    }
    n->key = key;
    n->key_len = len;
    n->hash = lv_hmap_hash(m, key, len);
    lv_hmap_node_t **slot = &m->buckets[n->hash & (m->n_buckets - 1)];
    n->next = *slot;
    *slot = n;
    m->count++;
    return 0;
}

void lv_hmap_remove(lv_hmap_t *m, lv_hmap_node_t *n)
{
    if (m->n_buckets == 0)
        return;
    lv_hmap_node_t **pp = &m->buckets[n->hash & (m->n_buckets - 1)];
    while (*pp && *pp != n)
        pp = &(*pp)->next;
    if (!*pp)
        return; /* not in this table: a caller bug, but not one worth corrupting a chain over */
    *pp = n->next;
    n->next = NULL;
    m->count--;
}

void lv_hmap_iter_init(const lv_hmap_t *m, lv_hmap_iter_t *it)
{
    it->bucket = 0;
    it->next = NULL;
    while (it->bucket < m->n_buckets && !(it->next = m->buckets[it->bucket]))
        it->bucket++;
}

lv_hmap_node_t *lv_hmap_iter_next(const lv_hmap_t *m, lv_hmap_iter_t *it)
{
    lv_hmap_node_t *n = it->next;
    if (!n)
        return NULL;
    it->next = n->next;
    while (!it->next && ++it->bucket < m->n_buckets)
        it->next = m->buckets[it->bucket];
    return n;
}

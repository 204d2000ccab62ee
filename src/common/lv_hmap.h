/* lv_hmap.h - the one hash table: intrusive, chained, keyed by byte strings, hashed with SipHash. */
#ifndef LV_HMAP_H
#define LV_HMAP_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Why SipHash with a random key. The keys that reach our tables are chosen by remote peers:
 * client addresses (an IPv6 client owns 2^64 of them), session ids sent back by the page, user
 * names. With an unkeyed hash (FNV, or FNV with a seed mixed in, whose collisions can be found
 * independently of the seed) a peer can precompute thousands of keys that land in one chain and
 * turn every lookup into a linear scan. SipHash-1-3 is a keyed PRF, so without the 128-bit key,
 * drawn from getrandom() when the table is initialised, which keys collide cannot be predicted.
 * (redis dict and Rust's HashMap use the same family, for the same reason.)
 *
 * Intrusive (STYLE habit 9): the owner embeds an lv_hmap_node_t and gets back to itself with
 * LV_CONTAINER_OF; the table allocates only its bucket array, never per entry. The key bytes
 * stay the owner's: the node points at them, so they must not move or change while the node is
 * in a table (keep them in the same struct as the node). Not thread-safe; one loop owns a table. */

typedef struct lv_hmap_node {
    struct lv_hmap_node *next; /* chain within one bucket; private to lv_hmap */
    uint64_t hash;             /* of key, kept so growing never rehashes bytes; private */
    const char *key;           /* the owner's bytes, set by lv_hmap_insert() */
    size_t key_len;
} lv_hmap_node_t;

typedef struct {
    lv_hmap_node_t **buckets; /* n_buckets chains; NULL until the first insert */
    size_t n_buckets;         /* a power of two, or 0 */
    size_t count;             /* nodes in the table */
    size_t max_entries;       /* inserts past this many fail with LV_ELIMIT; 0 = no cap */
    uint64_t k0, k1;          /* the SipHash key */
} lv_hmap_t;

/* A cursor over a table. The next node is looked up before the current one is returned, so the
 * caller may lv_hmap_remove() (and free) the node it was just given; any other change while
 * walking (an insert, removing another node) may make the walk skip or repeat nodes. */
typedef struct {
    size_t bucket;
    lv_hmap_node_t *next;
} lv_hmap_iter_t;

/** An empty table, capped at max_entries (0: no cap, for tables bounded some other way), with a
 * fresh random hash key. Allocates nothing yet. LV_EIO when the kernel gives no random bytes. */
int lv_hmap_init(lv_hmap_t *m, size_t max_entries);
/** Free the bucket array. The nodes are the caller's: walk and free them first (the table does
 * not touch them here). m may then be reused after lv_hmap_init(). */
void lv_hmap_free(lv_hmap_t *m);

/** The node whose key is key[0..len), or NULL. */
lv_hmap_node_t *lv_hmap_find(const lv_hmap_t *m, const void *key, size_t len);
static inline lv_hmap_node_t *lv_hmap_find_str(const lv_hmap_t *m, const char *key)
{
    return lv_hmap_find(m, key, strlen(key));
}

/** Put n into the table under key[0..len), which must stay valid and unchanged until n is
 * removed. LV_EEXIST when the key is already there (the table is unchanged), LV_ELIMIT at the
 * cap, LV_ENOMEM when the first bucket array cannot be allocated (a failed later growth only
 * leaves chains longer). */
int lv_hmap_insert(lv_hmap_t *m, lv_hmap_node_t *n, const void *key, size_t len);
static inline int lv_hmap_insert_str(lv_hmap_t *m, lv_hmap_node_t *n, const char *key)
{
    return lv_hmap_insert(m, n, key, strlen(key));
}

/** Take n (which must be in m) out of the table. Never resizes, so it is safe while walking. */
void lv_hmap_remove(lv_hmap_t *m, lv_hmap_node_t *n);

static inline size_t lv_hmap_count(const lv_hmap_t *m) { return m->count; }

/** Start a walk over every node, in no particular order. */
void lv_hmap_iter_init(const lv_hmap_t *m, lv_hmap_iter_t *it);
/** The next node of the walk, or NULL at the end. */
lv_hmap_node_t *lv_hmap_iter_next(const lv_hmap_t *m, lv_hmap_iter_t *it);

/** SipHash-1-3 of key[0..len) under the table's key (exposed for tests and for callers that
 * shard by hash). */
uint64_t lv_hmap_hash(const lv_hmap_t *m, const void *key, size_t len);

#endif

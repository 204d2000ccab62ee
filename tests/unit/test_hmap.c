/* test_hmap.c - the one hash table: SipHash-1-3 vectors, caps, walks that remove, keys that FNV
 * would chain together, and random operations checked against a plain array model. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lv_common.h"
#include "lv_hmap.h"

typedef struct {
    lv_hmap_node_t node;
    size_t len;
    char key[16];
} item_t;

static item_t *item_of(lv_hmap_node_t *n) { return n ? LV_CONTAINER_OF(n, item_t, node) : NULL; }

/* Key 00..0f, message 00..len-1; expected values from OpenSSL 3's SIPHASH MAC with size:8,
 * c-rounds:1, d-rounds:3 (read as a little-endian 64-bit word). */
static void test_siphash13_vectors(void **state)
{
    (void)state;
    static const struct {
        size_t len;
        uint64_t h;
    } v[] = {
        {0, 0xabac0158050fc4dcULL},  {1, 0xc9f49bf37d57ca93ULL},  {7, 0xd3927d989bb11140ULL},
        {8, 0x369095118d299a8eULL},  {9, 0x25a48eb36c063de4ULL},  {15, 0xd320d86d2a519956ULL},
        {16, 0xcc4fdd1a7d908b66ULL}, {63, 0x9d199062b7bbb3a8ULL},
    };
    unsigned char msg[64];
    for (size_t i = 0; i < sizeof(msg); i++)
        msg[i] = (unsigned char)i;
    lv_hmap_t m;
    assert_int_equal(lv_hmap_init(&m, 0), 0);
    m.k0 = 0x0706050403020100ULL;
    m.k1 = 0x0f0e0d0c0b0a0908ULL;
    for (size_t i = 0; i < LV_ARRAY_LEN(v); i++)
        assert_true(lv_hmap_hash(&m, msg, v[i].len) == v[i].h);
    lv_hmap_free(&m);
}

static void test_keys_differ_per_table(void **state)
{
    (void)state;
    lv_hmap_t a, b;
    assert_int_equal(lv_hmap_init(&a, 0), 0);
    assert_int_equal(lv_hmap_init(&b, 0), 0);
    assert_true(a.k0 != b.k0 || a.k1 != b.k1);
    assert_true(lv_hmap_hash(&a, "10.0.0.1", 8) != lv_hmap_hash(&b, "10.0.0.1", 8));
}

static void test_basic(void **state)
{
    (void)state;
    lv_hmap_t m;
    item_t a = {.key = "alpha"}, b = {.key = "beta"}, a2 = {.key = "alpha"};
    assert_int_equal(lv_hmap_init(&m, 0), 0);
    assert_null(lv_hmap_find_str(&m, "alpha")); /* empty, nothing allocated */
    lv_hmap_remove(&m, &a.node);                 /* harmless on an empty table */
    assert_int_equal(lv_hmap_insert_str(&m, &a.node, a.key), 0);
    assert_int_equal(lv_hmap_insert_str(&m, &b.node, b.key), 0);
    assert_int_equal(lv_hmap_insert_str(&m, &a2.node, a2.key), LV_EEXIST);
    assert_int_equal(lv_hmap_count(&m), 2);
    assert_ptr_equal(item_of(lv_hmap_find_str(&m, "alpha")), &a);
    assert_ptr_equal(item_of(lv_hmap_find_str(&m, "beta")), &b);
    assert_null(lv_hmap_find_str(&m, "alph"));
    assert_null(lv_hmap_find(&m, "alpha", 6)); /* the NUL is part of a 6-byte key */
    lv_hmap_remove(&m, &a.node);
    assert_null(lv_hmap_find_str(&m, "alpha"));
    assert_int_equal(lv_hmap_insert_str(&m, &a2.node, a2.key), 0);
    assert_ptr_equal(item_of(lv_hmap_find_str(&m, "alpha")), &a2);
    /* the empty key and keys with NULs inside are keys like any other */
    item_t e = {.key = ""}, z = {.key = {'a', 0, 'b'}};
    assert_int_equal(lv_hmap_insert(&m, &e.node, e.key, 0), 0);
    assert_int_equal(lv_hmap_insert(&m, &z.node, z.key, 3), 0);
    assert_ptr_equal(item_of(lv_hmap_find(&m, "", 0)), &e);
    assert_ptr_equal(item_of(lv_hmap_find(&m, "a\0b", 3)), &z);
    assert_null(lv_hmap_find(&m, "a\0c", 3));
    lv_hmap_free(&m);
}

static void test_cap(void **state)
{
    (void)state;
    lv_hmap_t m;
    item_t it[4];
    assert_int_equal(lv_hmap_init(&m, 3), 0);
    for (int i = 0; i < 4; i++)
        snprintf(it[i].key, sizeof(it[i].key), "k%d", i);
    for (int i = 0; i < 3; i++)
        assert_int_equal(lv_hmap_insert_str(&m, &it[i].node, it[i].key), 0);
    assert_int_equal(lv_hmap_insert_str(&m, &it[3].node, it[3].key), LV_ELIMIT);
    assert_int_equal(lv_hmap_insert_str(&m, &it[0].node, it[0].key), LV_EEXIST); /* checked first */
    assert_null(lv_hmap_find_str(&m, "k3"));
    lv_hmap_remove(&m, &it[1].node);
    assert_int_equal(lv_hmap_insert_str(&m, &it[3].node, it[3].key), 0);
    assert_int_equal(lv_hmap_count(&m), 3);
    lv_hmap_free(&m);
}

/* Grow to thousands, walk removing everything visited, then check the table shrinks back when
 * used again, and that every node was seen exactly once. */
static void test_grow_walk_remove_shrink(void **state)
{
    (void)state;
    enum { N = 5000 };
    lv_hmap_t m;
    item_t *it = calloc(N, sizeof(*it));
    assert_non_null(it);
    assert_int_equal(lv_hmap_init(&m, 0), 0);
    for (int i = 0; i < N; i++) {
        snprintf(it[i].key, sizeof(it[i].key), "id-%d", i);
        assert_int_equal(lv_hmap_insert_str(&m, &it[i].node, it[i].key), 0);
    }
    assert_true(m.n_buckets >= N);
    for (int i = 0; i < N; i++)
        assert_ptr_equal(item_of(lv_hmap_find_str(&m, it[i].key)), &it[i]);

    unsigned char *seen = calloc(N, 1);
    assert_non_null(seen);
    lv_hmap_iter_t cur;
    lv_hmap_iter_init(&m, &cur);
    size_t walked = 0;
    for (lv_hmap_node_t *n; (n = lv_hmap_iter_next(&m, &cur)) != NULL; walked++) {
        item_t *x = item_of(n);
        assert_int_equal(seen[x - it], 0);
        seen[x - it] = 1;
        if ((x - it) % 2 == 0)
            lv_hmap_remove(&m, n);
    }
    assert_int_equal(walked, N);
    assert_int_equal(lv_hmap_count(&m), N / 2);
    for (int i = 0; i < N; i++)
        assert_true((lv_hmap_find_str(&m, it[i].key) != NULL) == (i % 2 == 1));

    for (int i = 1; i < N; i += 2)
        lv_hmap_remove(&m, &it[i].node);
    size_t big = m.n_buckets;
    for (int i = 0; i < 8; i++)
        assert_int_equal(lv_hmap_insert_str(&m, &it[i].node, it[i].key), 0);
    assert_true(m.n_buckets < big); /* a few inserts give most of the memory back */
    for (int i = 0; i < 8; i++)
        assert_ptr_equal(item_of(lv_hmap_find_str(&m, it[i].key)), &it[i]);
    free(seen);
    free(it);
    lv_hmap_free(&m);
}

/* 32-bit FNV-1a, the unkeyed hash the hand-rolled tables used. */
static uint32_t fnv1a(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/* Addresses picked so that FNV-1a puts every one in the same bucket of a 1024-bucket table: under
 * a keyed hash they spread like any other keys. */
static void test_fnv_collisions_spread(void **state)
{
    (void)state;
    enum { N = 300 };
    item_t *it = calloc(N, sizeof(*it));
    assert_non_null(it);
    int found = 0;
    for (unsigned a = 0; found < N && a < 65536 * 64; a++) {
        char key[16];
        snprintf(key, sizeof(key), "10.%u.%u.%u", a >> 16, (a >> 8) & 255, a & 255);
        if (fnv1a(key) % 1024 == 0)
            memcpy(it[found++].key, key, sizeof(key));
    }
    assert_int_equal(found, N);
    lv_hmap_t m;
    assert_int_equal(lv_hmap_init(&m, 0), 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(lv_hmap_insert_str(&m, &it[i].node, it[i].key), 0);
    size_t longest = 0;
    for (size_t b = 0; b < m.n_buckets; b++) {
        size_t len = 0;
        for (lv_hmap_node_t *n = m.buckets[b]; n; n = n->next)
            len++;
        longest = LV_MAX(longest, len);
    }
    /* 300 random keys in 512 buckets: the longest chain is about 4; 12 is astronomically rare. */
    assert_true(longest <= 12);
    lv_hmap_free(&m);
    free(it);
}

/* Random inserts, finds, removes and walks against an array that records which key each item
 * holds and whether it is in the table. Keys come from a small alphabet and short lengths, so
 * duplicates (LV_EEXIST) and re-inserts after removal are frequent; a cap makes LV_ELIMIT happen. */
static uint64_t rng_state;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void test_against_model(void **state)
{
    (void)state;
    enum { ITEMS = 400, STEPS = 200000, CAP = 150 };
    item_t *it = calloc(ITEMS, sizeof(*it));
    unsigned char *in = calloc(ITEMS, 1);
    assert_non_null(it);
    assert_non_null(in);
    for (uint64_t seed = 1; seed <= 4; seed++) {
        rng_state = 0x9e3779b97f4a7c15ULL * seed;
        lv_hmap_t m;
        size_t cap = seed % 2 ? CAP : 0;
        size_t model_count = 0, n_exist = 0, n_limit = 0;
        assert_int_equal(lv_hmap_init(&m, cap), 0);
        memset(in, 0, ITEMS);
        for (int step = 0; step < STEPS; step++) {
            size_t i = rnd() % ITEMS;
            unsigned op = (unsigned)(rnd() % 10);
            if (op < 4) { /* insert item i under a fresh random key (only when it is out) */
                if (in[i])
                    continue;
                it[i].len = rnd() % 6;
                for (size_t k = 0; k < it[i].len; k++)
                    it[i].key[k] = "ab\0c"[rnd() % 4];
                int holder = -1;
                for (size_t j = 0; j < ITEMS; j++)
                    if (in[j] && it[j].len == it[i].len && memcmp(it[j].key, it[i].key, it[i].len) == 0)
                        holder = (int)j;
                int want = holder >= 0 ? LV_EEXIST : (cap && model_count >= cap) ? LV_ELIMIT : 0;
                assert_int_equal(lv_hmap_insert(&m, &it[i].node, it[i].key, it[i].len), want);
                n_exist += want == LV_EEXIST;
                n_limit += want == LV_ELIMIT;
                if (want == 0) {
                    in[i] = 1;
                    model_count++;
                }
            } else if (op < 6) { /* remove */
                if (!in[i])
                    continue;
                lv_hmap_remove(&m, &it[i].node);
                in[i] = 0;
                model_count--;
            } else if (op < 9) { /* find a random key: the model says who holds it, if anyone */
                char key[8];
                size_t len = rnd() % 6;
                for (size_t k = 0; k < len; k++)
                    key[k] = "ab\0c"[rnd() % 4];
                item_t *holder = NULL;
                for (size_t j = 0; j < ITEMS; j++)
                    if (in[j] && it[j].len == len && memcmp(it[j].key, key, len) == 0)
                        holder = &it[j];
                assert_ptr_equal(item_of(lv_hmap_find(&m, key, len)), holder);
            } else { /* walk: exactly the items the model has in */
                size_t walked = 0;
                lv_hmap_iter_t cur;
                lv_hmap_iter_init(&m, &cur);
                for (lv_hmap_node_t *n; (n = lv_hmap_iter_next(&m, &cur)) != NULL; walked++)
                    assert_true(in[item_of(n) - it]);
                assert_int_equal(walked, model_count);
            }
            assert_int_equal(lv_hmap_count(&m), model_count);
        }
        assert_true(n_exist > 1000);           /* the model test is not vacuous: */
        assert_true(cap == 0 || n_limit > 1000); /* duplicates and the cap both came up */
        lv_hmap_free(&m);
    }
    free(in);
    free(it);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_siphash13_vectors),
        cmocka_unit_test(test_keys_differ_per_table),
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_cap),
        cmocka_unit_test(test_grow_walk_remove_shrink),
        cmocka_unit_test(test_fnv_collisions_spread),
        cmocka_unit_test(test_against_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

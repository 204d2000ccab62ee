/* lv_store_mem.c - the in-memory session store (the store port, src/core/lv_store.h): a chained
 * hash table keyed by session id. Every call completes before it returns. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lv_common.h"
#include "lv_store_mem.h"

#define NBUCKETS 4096

typedef struct mem_node {
    struct mem_node *next;
    lv_session_rec_t rec;
} mem_node_t;

typedef struct {
    lv_store_t base;
    mem_node_t *buckets[NBUCKETS];
    size_t count;
    size_t max_records;
} mem_store_t;

static size_t bucket_of(const char *id)
{
    return lv_hash_str(id) % NBUCKETS; /* ids are random hex: FNV spreads them well */
}

static mem_node_t **find_slot(mem_store_t *m, const char *id)
{
    mem_node_t **pp = &m->buckets[bucket_of(id)];
    while (*pp && strcmp((*pp)->rec.id, id) != 0)
        pp = &(*pp)->next;
    return pp;
}

static int mem_create_now(lv_store_t *st, const lv_session_rec_t *rec)
{
    mem_store_t *m = (mem_store_t *)st;
    mem_node_t **pp = find_slot(m, rec->id);
    if (*pp)
        return LV_EEXIST;
    if (m->count >= m->max_records)
        return LV_ELIMIT;
    mem_node_t *n = malloc(sizeof(*n));
    if (!n)
        return LV_ENOMEM;
    n->rec = *rec;
    n->next = NULL;
    *pp = n;
    m->count++;
    return 0;
}

static int mem_load_now(lv_store_t *st, const char *id, lv_session_rec_t *out)
{
    mem_node_t *n = *find_slot((mem_store_t *)st, id);
    if (!n)
        return LV_ENOTFOUND;
    *out = n->rec;
    return 0;
}

static int mem_save_now(lv_store_t *st, const lv_session_rec_t *rec)
{
    mem_node_t *n = *find_slot((mem_store_t *)st, rec->id);
    if (!n)
        return LV_ENOTFOUND;
    n->rec = *rec;
    return 0;
}

static int mem_remove_now(lv_store_t *st, const char *id)
{
    mem_store_t *m = (mem_store_t *)st;
    mem_node_t **pp = find_slot(m, id);
    mem_node_t *n = *pp;
    if (!n)
        return LV_ENOTFOUND;
    *pp = n->next;
    free(n);
    m->count--;
    return 0;
}

/* The port's calls: each completes at once, `done` (if any) before the call returns. */
static int mem_create(lv_store_t *st, const lv_session_rec_t *rec, lv_store_done_fn done, void *ud)
{
    int rc = mem_create_now(st, rec);
    if (done)
        done(ud, rc, NULL);
    return 0;
}

static int mem_load(lv_store_t *st, const char *id, lv_store_done_fn done, void *ud)
{
    lv_session_rec_t rec;
    int rc = mem_load_now(st, id, &rec);
    if (done)
        done(ud, rc, rc == 0 ? &rec : NULL);
    return 0;
}

static int mem_save(lv_store_t *st, const lv_session_rec_t *rec, lv_store_done_fn done, void *ud)
{
    int rc = mem_save_now(st, rec);
    if (done)
        done(ud, rc, NULL);
    return 0;
}

static int mem_remove(lv_store_t *st, const char *id, lv_store_done_fn done, void *ud)
{
    int rc = mem_remove_now(st, id);
    if (done)
        done(ud, rc, NULL);
    return 0;
}

static size_t mem_count(lv_store_t *st) { return ((mem_store_t *)st)->count; }

static void mem_destroy(lv_store_t *st)
{
    mem_store_t *m = (mem_store_t *)st;
    if (!m)
        return;
    for (size_t i = 0; i < NBUCKETS; i++) {
        mem_node_t *n = m->buckets[i];
        while (n) {
            mem_node_t *next = n->next;
            free(n);
            n = next;
        }
    }
    free(m);
}

static const lv_store_ops_t mem_ops = {mem_create, mem_load, mem_save, mem_remove, mem_count, mem_destroy};

int lv_store_mem_create(size_t max_records, lv_store_t **out)
{
    mem_store_t *m = calloc(1, sizeof(*m));
    if (!m)
        return LV_ENOMEM;
    m->base.ops = &mem_ops;
    m->max_records = max_records;
    *out = &m->base;
    return 0;
}

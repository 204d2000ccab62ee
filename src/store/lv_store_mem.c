/* lv_store_mem.c - the in-memory session store (the store port, src/core/lv_store.h): session
 * records in an lv_hmap keyed by id. Every call completes before it returns. */
#include <stdlib.h>
#include <string.h>

#include "lv_common.h"
#include "lv_hmap.h"
#include "lv_store_mem.h"

typedef struct {
    lv_hmap_node_t node; /* keyed by rec.id */
    lv_session_rec_t rec;
} mem_node_t;

typedef struct {
    lv_store_t base;
    lv_hmap_t records; /* mem_node_t.node */
    size_t max_records;
} mem_store_t;

static mem_node_t *find(const mem_store_t *m, const char *id)
{
    lv_hmap_node_t *n = lv_hmap_find_str(&m->records, id);
    return n ? LV_CONTAINER_OF(n, mem_node_t, node) : NULL;
}

static int mem_create_now(lv_store_t *st, const lv_session_rec_t *rec)
{
    mem_store_t *m = (mem_store_t *)st;
    if (find(m, rec->id))
        return LV_EEXIST;
    if (lv_hmap_count(&m->records) >= m->max_records) /* before allocating */
        return LV_ELIMIT;
    mem_node_t *n = malloc(sizeof(*n));
    if (!n)
        return LV_ENOMEM;
    n->rec = *rec;
    int rc = lv_hmap_insert_str(&m->records, &n->node, n->rec.id);
    if (rc != 0)
        free(n);
    return rc;
}

static int mem_load_now(lv_store_t *st, const char *id, lv_session_rec_t *out)
{
    mem_node_t *n = find((mem_store_t *)st, id);
    if (!n)
        return LV_ENOTFOUND;
    *out = n->rec;
    return 0;
}

static int mem_save_now(lv_store_t *st, const lv_session_rec_t *rec)
{
    mem_node_t *n = find((mem_store_t *)st, rec->id);
    if (!n)
        return LV_ENOTFOUND;
    n->rec = *rec; /* its id, the table's key, is the one it was found by: the key stays the same */
    return 0;
}

static int mem_remove_now(lv_store_t *st, const char *id)
{
    mem_store_t *m = (mem_store_t *)st;
    mem_node_t *n = find(m, id);
    if (!n)
        return LV_ENOTFOUND;
    lv_hmap_remove(&m->records, &n->node);
    free(n);
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

static size_t mem_count(lv_store_t *st) { return lv_hmap_count(&((mem_store_t *)st)->records); }

static void mem_destroy(lv_store_t *st)
{
    mem_store_t *m = (mem_store_t *)st;
    lv_hmap_iter_t it;
    lv_hmap_node_t *n;
    if (!m)
        return;
    lv_hmap_iter_init(&m->records, &it);
    while ((n = lv_hmap_iter_next(&m->records, &it)) != NULL) {
        lv_hmap_remove(&m->records, n);
        free(LV_CONTAINER_OF(n, mem_node_t, node));
    }
    lv_hmap_free(&m->records);
    free(m);
}

static const lv_store_ops_t mem_ops = {mem_create, mem_load, mem_save, mem_remove, mem_count, mem_destroy};

int lv_store_mem_create(size_t max_records, lv_store_t **out)
{
    mem_store_t *m = calloc(1, sizeof(*m));
    if (!m)
        return LV_ENOMEM;
    /* uncapped: mem_create_now checks max_records before it allocates a record */
    if (lv_hmap_init(&m->records, 0) != 0) {
        free(m); /* the table allocates nothing before its first insert */
        return LV_EIO;
    }
    m->base.ops = &mem_ops;
    m->max_records = max_records;
    *out = &m->base;
    return 0;
}

/* lv_drr.c - deficit round-robin across tenants, within a tenant across its users, round-robin
 * across each user's sessions. */
#include "lv_drr.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "lv_common.h"

/* Idle user records are kept for reuse: a user whose only session is in flight leaves and comes
 * back with every frame, and reusing its record keeps enqueue allocation-free. The cache is
 * bounded by the most users queued at once in the current and the previous window of
 * CACHE_WINDOW_US (plus CACHE_SLACK); lv_drr_run trims what a fallen peak no longer needs.
 * A cached record stays in the users table under its last key, so the table does not shrink and
 * grow again (reallocating) when every user leaves and comes back, and a returning user gets its
 * own record; a new user takes the record cached longest. */
#define CACHE_WINDOW_US 10000000ULL
#define CACHE_SLACK 64
#define CACHE_TRIM_PER_RUN 64
/* Idle tenant records kept for reuse (a tenant whose only user comes and goes with every frame);
 * tenants come from accounts, not from the network, so a flat bound is enough. */
#define TENANT_KEEP 64

/* A tenant: the first level of the round. Known while one of its users is. */
typedef struct lv_drr_tenant {
    lv_queue_t active_link;  /* in lv_drr_t.active while it has queued nodes */
    lv_queue_t users;        /* lv_drr_user.active_link: its users with queued nodes, round order */
    lv_hmap_node_t node;     /* in lv_drr_t.tenants, keyed by key[] */
    size_t n_users;          /* users in `users` */
    size_t n_queued;         /* nodes queued under its users */
    size_t n_known;          /* its known users (queued, in flight, lingering) */
    uint64_t weight_known;   /* sum of its known users' weights */
    size_t unoffered;        /* in run unoffered_run: its nodes not offered yet */
    uint64_t unoffered_run;
    long n_under;            /* in a run: its users in the round below their share */
    int weight;
    int deficit;             /* jobs left in the current turn; 0 when not in turn */
    int in_turn;
    int in_ring;
    int inflight;            /* its users' jobs in flight */
    char key[LV_DRR_USER_MAX_LEN + 1];
} lv_drr_tenant_t;

typedef struct lv_drr_user {
    lv_queue_t active_link;       /* in its tenant's users ring */
    lv_drr_tenant_t *tenant;      /* while known; NULL when cached */
    lv_queue_t sessions;          /* lv_drr_node_t.link, in service order */
    lv_hmap_node_t node;          /* in lv_drr_t.users, keyed by key[] */
    lv_queue_t cache_link;        /* in lv_drr_t.cache while cached: then not a known user, it
                                   * only keeps its key and its place in the table */
    lv_queue_t *cursor;           /* next node to offer in run cursor_run (BUSY ones lie before) */
    uint64_t cursor_run;
    size_t n_queued;
    int weight;
    int deficit; /* jobs left in the current turn; 0 when not in turn */
    int in_turn; /* got its quantum and has not used it up: keeps its place in the round */
    int in_ring; /* has queued nodes: in lv_drr_t.active */
    int inflight;/* jobs in flight (job tracking) */
    int lingering;              /* in lv_drr_t.idle */
    lv_queue_t idle_link;
    uint64_t linger_until_us;   /* competes until then once it has nothing queued or in flight */
    char key[LV_DRR_USER_MAX_LEN + 1];
} lv_drr_user_t;

typedef struct lv_drr_weight {
    lv_hmap_node_t node; /* in lv_drr_t.weights, keyed by key[] */
    int weight;
    char key[LV_DRR_USER_MAX_LEN + 1];
} lv_drr_weight_t;

/* ---------- keys and tables ---------- */

/* 1..63 bytes, else -1. */
static int key_len(const char *key)
{
    if (!key)
        return -1;
    size_t n = strnlen(key, LV_DRR_USER_MAX_LEN + 1);
    return (n == 0 || n > LV_DRR_USER_MAX_LEN) ? -1 : (int)n;
}

static void *drr_calloc(lv_drr_t *d, size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (p)
        d->allocs++;
    return p;
}

/* lv_hmap_insert, with a new bucket array (growing or shrinking) counted among the scheduler's
 * allocations: the steady state is meant to make none, tables included. */
static int table_insert(lv_drr_t *d, lv_hmap_t *m, lv_hmap_node_t *n, const char *key, size_t len)
{
    size_t n_buckets = m->n_buckets;
    int rc = lv_hmap_insert(m, n, key, len);
    if (m->n_buckets != n_buckets)
        d->allocs++;
    return rc;
}

static lv_drr_weight_t *weight_find(const lv_drr_t *d, const char *key, size_t len)
{
    lv_hmap_node_t *n = lv_hmap_find(&d->weights, key, len);
    return n ? LV_CONTAINER_OF(n, lv_drr_weight_t, node) : NULL;
}

static int weight_of(const lv_drr_t *d, const char *key, size_t len)
{
    const lv_drr_weight_t *w = weight_find(d, key, len);
    return w ? w->weight : 1;
}

static int user_cached(const lv_drr_user_t *u)
{
    return lv_queue_linked(&u->cache_link);
}

/* The record under key, known or cached. */
static lv_drr_user_t *user_lookup(const lv_drr_t *d, const char *key, size_t len)
{
    lv_hmap_node_t *n = lv_hmap_find(&d->users, key, len);
    return n ? LV_CONTAINER_OF(n, lv_drr_user_t, node) : NULL;
}

/* A known user's record; NULL for a user with nothing queued, in flight or lingering (also after
 * lv_drr_free(), whose emptied table finds nobody). */
static lv_drr_user_t *user_find(const lv_drr_t *d, const char *key, size_t len)
{
    lv_drr_user_t *u = user_lookup(d, key, len);
    return u && !user_cached(u) ? u : NULL;
}

static int tweight_of(const lv_drr_t *d, const char *key, size_t len)
{
    lv_hmap_node_t *n = lv_hmap_find(&d->tweights, key, len);
    return n ? LV_CONTAINER_OF(n, lv_drr_weight_t, node)->weight : 1;
}

static lv_drr_tenant_t *tenant_lookup(const lv_drr_t *d, const char *key, size_t len)
{
    lv_hmap_node_t *n = lv_hmap_find(&d->tenants, key, len);
    return n ? LV_CONTAINER_OF(n, lv_drr_tenant_t, node) : NULL;
}

/* The tenant's record, made when missing (NULL: out of memory). Not known until a user joins. */
static lv_drr_tenant_t *tenant_get(lv_drr_t *d, const char *key, size_t len)
{
    lv_drr_tenant_t *t = tenant_lookup(d, key, len);
    if (t)
        return t;
    if (!(t = drr_calloc(d, 1, sizeof(*t))))
        return NULL;
    memcpy(t->key, key, len);
    lv_queue_init(&t->users);
    lv_queue_init(&t->active_link);
    t->weight = tweight_of(d, key, len);
    if (table_insert(d, &d->tenants, &t->node, t->key, len) != 0) {
        free(t);
        return NULL;
    }
    return t;
}

/* A user of t became known. */
static void tenant_user_known(lv_drr_t *d, lv_drr_tenant_t *t, int user_weight)
{
    if (t->n_known++ == 0) {
        t->weight = tweight_of(d, t->key, strlen(t->key));
        d->n_tenants_known++;
        d->weight_known += (uint64_t)t->weight;
    }
    t->weight_known += (uint64_t)user_weight;
}

/* A user of t is forgotten; the tenant too when it was the last (its record kept a while). */
static void tenant_user_gone(lv_drr_t *d, lv_drr_tenant_t *t, int user_weight)
{
    t->weight_known -= (uint64_t)user_weight;
    if (--t->n_known > 0)
        return;
    d->n_tenants_known--;
    d->weight_known -= (uint64_t)t->weight;
    if (lv_hmap_count(&d->tenants) - d->n_tenants_known > TENANT_KEEP) {
        lv_hmap_remove(&d->tenants, &t->node);
        free(t);
    }
}

static size_t cache_limit(const lv_drr_t *d)
{
    return LV_MAX(d->peak_cur, d->peak_prev) + CACHE_SLACK;
}

/* Move the peak window along with the caller's clock (a clock going backwards is ignored). */
static void peak_tick(lv_drr_t *d, uint64_t now_us)
{
    if (now_us > d->clock_us)
        d->clock_us = now_us;
    if (now_us < d->peak_start_us + CACHE_WINDOW_US)
        return;
    d->peak_prev = d->peak_cur;
    d->peak_cur = d->n_known;
    d->peak_start_us = now_us;
}

/* Out of the cache and the users table, and freed. */
static void cache_drop(lv_drr_t *d, lv_drr_user_t *u)
{
    lv_queue_remove(&u->cache_link);
    d->n_cached--;
    lv_hmap_remove(&d->users, &u->node);
    free(u);
}

/* A record for a user the scheduler does not know yet: its own cached one (own, or NULL), else
 * the one cached longest, else the heap. In the table, not yet in the round (ring_join). NULL
 * when out of memory. */
static lv_drr_user_t *user_create(lv_drr_t *d, lv_drr_user_t *own, lv_drr_tenant_t *t, const char *key,
                                  size_t len)
{
    lv_drr_user_t *u = own;
    if (!u && !lv_queue_empty(&d->cache))
        u = LV_CONTAINER_OF(lv_queue_head(&d->cache), lv_drr_user_t, cache_link);
    if (u) {
        lv_queue_remove(&u->cache_link);
        d->n_cached--;
        lv_hmap_remove(&d->users, &u->node); /* and back below, perhaps under another key */
    } else if (!(u = drr_calloc(d, 1, sizeof(*u)))) {
        return NULL;
    }
    memset(u, 0, sizeof(*u));
    memcpy(u->key, key, len);
    lv_queue_init(&u->sessions);
    lv_queue_init(&u->cache_link);
    lv_queue_init(&u->idle_link);
    /* Fails only for a record from the heap going into an empty table (the first bucket array):
     * a recycled record takes back the place it just left. Either way the record is in no list
     * now, so freeing it leaves everything as it was. */
    if (table_insert(d, &d->users, &u->node, u->key, len) != 0) {
        free(u);
        return NULL;
    }
    u->weight = weight_of(d, key, len);
    u->tenant = t;
    tenant_user_known(d, t, u->weight);
    d->n_known++;
    if (d->n_known > d->peak_cur)
        d->peak_cur = d->n_known;
    return u;
}

/* The user got a queued node: it joins the end of the round with no turn in progress. */
static void ring_join(lv_drr_t *d, lv_drr_user_t *u)
{
    if (u->lingering) {
        lv_queue_remove(&u->idle_link);
        u->lingering = 0;
        d->n_idle--;
    }
    lv_drr_tenant_t *t = u->tenant;
    u->in_ring = 1;
    u->in_turn = 0;
    u->deficit = 0;
    lv_queue_insert_tail(&t->users, &u->active_link);
    t->n_users++;
    d->n_users++;
    if (!t->in_ring) {
        t->in_ring = 1;
        t->in_turn = 0;
        t->deficit = 0;
        lv_queue_insert_tail(&d->active, &t->active_link);
        d->n_tenants_active++;
    }
}

/* Its last queued node left: out of its tenant's round, and the tenant out of the round when it
 * was its last user; an unused turn is forfeited (no hoarding). */
static void ring_leave(lv_drr_t *d, lv_drr_user_t *u)
{
    lv_drr_tenant_t *t = u->tenant;
    lv_queue_remove(&u->active_link);
    u->in_ring = 0;
    u->in_turn = 0;
    u->deficit = 0;
    d->n_users--;
    if (--t->n_users == 0) {
        lv_queue_remove(&t->active_link);
        t->in_ring = 0;
        t->in_turn = 0;
        t->deficit = 0;
        d->n_tenants_active--;
    }
}

/* No longer known: into the cache (or freed). Only for users with nothing queued or in flight. */
static void user_release(lv_drr_t *d, lv_drr_user_t *u)
{
    if (u->lingering) {
        lv_queue_remove(&u->idle_link);
        u->lingering = 0;
        d->n_idle--;
    }
    d->n_known--;
    tenant_user_gone(d, u->tenant, u->weight);
    u->tenant = NULL;
    if (d->n_cached + d->n_known >= cache_limit(d)) {
        lv_hmap_remove(&d->users, &u->node);
        free(u);
        return;
    }
    lv_queue_insert_tail(&d->cache, &u->cache_link);
    d->n_cached++;
}

/* A user out of the round: kept while it has jobs in flight; then lingering until its linger ends,
 * in the idle list sorted by that time; then released. Inside a run nothing is released (the run
 * holds pointers to records): a user due for release lingers until the next run's sweep. */
static void user_settle(lv_drr_t *d, lv_drr_user_t *u)
{
    if (u->in_ring || u->inflight > 0)
        return;
    if (!d->running && u->linger_until_us <= d->clock_us) {
        user_release(d, u);
        return;
    }
    if (u->lingering)
        lv_queue_remove(&u->idle_link);
    else
        d->n_idle++;
    u->lingering = 1;
    lv_queue_t *q = d->idle.prev; /* lingers are alike: the right place is almost always the tail */
    while (q != &d->idle && LV_CONTAINER_OF(q, lv_drr_user_t, idle_link)->linger_until_us > u->linger_until_us)
        q = q->prev;
    lv_queue_insert_head(q, &u->idle_link); /* right after q */
}

/* Release lingering users whose time is up. Not inside a run. Each user is released once per stay,
 * so the work is O(1) per user over time. */
static void idle_sweep(lv_drr_t *d, uint64_t now_us)
{
    while (!lv_queue_empty(&d->idle)) {
        lv_drr_user_t *u = LV_CONTAINER_OF(lv_queue_head(&d->idle), lv_drr_user_t, idle_link);
        if (u->linger_until_us > now_us)
            break;
        user_release(d, u);
    }
}

/* Unlink a node from its user's ring; the caller releases the user when it became empty. */
static void node_detach(lv_drr_t *d, lv_drr_node_t *node)
{
    if (d->starved_node == node)
        d->starved_node = NULL;
    lv_queue_remove(&node->link);
    node->user->n_queued--;
    node->user->tenant->n_queued--;
    node->user = NULL;
    d->n_queued--;
}

/* ---------- public API ---------- */

void lv_drr_node_init(lv_drr_node_t *node)
{
    memset(node, 0, sizeof(*node));
}

const char *lv_drr_node_user(const lv_drr_node_t *node)
{
    return node->user ? node->user->key : NULL;
}

const char *lv_drr_node_tenant(const lv_drr_node_t *node)
{
    return node->user ? node->user->tenant->key : NULL;
}

int lv_drr_init(lv_drr_t *d, int quantum)
{
    memset(d, 0, sizeof(*d));
    lv_queue_init(&d->active); /* first, so lv_drr_free() is safe whatever happens below */
    lv_queue_init(&d->idle);
    lv_queue_init(&d->cache);
    if (quantum < 1 || quantum > LV_DRR_QUANTUM_MAX)
        return LV_EINVAL;
    d->quantum = quantum;
    /* Uncapped: users are bounded by the nodes queued and jobs in flight (the caller's sessions),
     * cached records by cache_limit(), weights by the check in lv_drr_set_weight. */
    if (lv_hmap_init(&d->users, 0) != 0 || lv_hmap_init(&d->weights, 0) != 0 ||
        lv_hmap_init(&d->tweights, 0) != 0 || lv_hmap_init(&d->tenants, 0) != 0)
        return LV_EIO;
    return 0;
}

void lv_drr_free(lv_drr_t *d)
{
    lv_hmap_iter_t it;
    lv_hmap_node_t *n;
    while (!lv_queue_empty(&d->active)) {
        lv_drr_tenant_t *t = LV_CONTAINER_OF(lv_queue_head(&d->active), lv_drr_tenant_t, active_link);
        while (!lv_queue_empty(&t->users)) {
            lv_drr_user_t *u = LV_CONTAINER_OF(lv_queue_head(&t->users), lv_drr_user_t, active_link);
            while (!lv_queue_empty(&u->sessions))
                node_detach(d, LV_CONTAINER_OF(lv_queue_head(&u->sessions), lv_drr_node_t, link));
            lv_queue_remove(&u->active_link);
        }
        lv_queue_remove(&t->active_link);
    }
    /* every record, known or cached, is in the users table */
    lv_hmap_iter_init(&d->users, &it);
    while ((n = lv_hmap_iter_next(&d->users, &it)) != NULL) {
        lv_hmap_remove(&d->users, n);
        free(LV_CONTAINER_OF(n, lv_drr_user_t, node));
    }
    lv_hmap_iter_init(&d->tenants, &it);
    while ((n = lv_hmap_iter_next(&d->tenants, &it)) != NULL) {
        lv_hmap_remove(&d->tenants, n);
        free(LV_CONTAINER_OF(n, lv_drr_tenant_t, node));
    }
    lv_hmap_t *tables[] = {&d->weights, &d->tweights};
    for (size_t i = 0; i < LV_ARRAY_LEN(tables); i++) {
        lv_hmap_iter_init(tables[i], &it);
        while ((n = lv_hmap_iter_next(tables[i], &it)) != NULL) {
            lv_hmap_remove(tables[i], n);
            free(LV_CONTAINER_OF(n, lv_drr_weight_t, node));
        }
    }
    lv_hmap_free(&d->users);
    lv_hmap_free(&d->weights);
    lv_hmap_free(&d->tweights);
    lv_hmap_free(&d->tenants);
    memset(d, 0, sizeof(*d));
    lv_queue_init(&d->active);
    lv_queue_init(&d->idle);
    lv_queue_init(&d->cache);
}

/* Put a weight into a table (weight 1 removes the entry). */
static int weight_put(lv_drr_t *d, lv_hmap_t *table, const char *key, size_t len, int weight)
{
    lv_hmap_node_t *hn = lv_hmap_find(table, key, len);
    lv_drr_weight_t *w = hn ? LV_CONTAINER_OF(hn, lv_drr_weight_t, node) : NULL;
    if (weight == 1) {
        if (w) {
            lv_hmap_remove(table, &w->node);
            free(w);
        }
        return 0;
    }
    if (w) {
        w->weight = weight;
        return 0;
    }
    if (lv_hmap_count(table) >= LV_DRR_MAX_WEIGHTS) /* before allocating */
        return LV_ELIMIT;
    w = drr_calloc(d, 1, sizeof(*w));
    if (!w)
        return LV_ENOMEM;
    memcpy(w->key, key, len);
    w->weight = weight;
    int rc = table_insert(d, table, &w->node, w->key, len);
    if (rc != 0)
        free(w);
    return rc;
}

/* A known user's weight changes: its tenant's sum follows (from its next turn). */
static void user_reweigh(lv_drr_user_t *u, int weight)
{
    u->tenant->weight_known += (uint64_t)weight - (uint64_t)u->weight; /* wraps back: stays exact */
    u->weight = weight;
}

static void tenant_reweigh(lv_drr_t *d, lv_drr_tenant_t *t, int weight)
{
    if (t->n_known > 0)
        d->weight_known += (uint64_t)weight - (uint64_t)t->weight;
    t->weight = weight;
}

int lv_drr_set_weight(lv_drr_t *d, const char *user, int weight)
{
    int len = key_len(user);
    if (len < 0 || weight < 1 || weight > LV_DRR_WEIGHT_MAX)
        return LV_EINVAL;
    if (d->running)
        return LV_EAGAIN;
    int rc = weight_put(d, &d->weights, user, (size_t)len, weight);
    if (rc != 0)
        return rc;
    lv_drr_user_t *u = user_find(d, user, (size_t)len);
    if (u)
        user_reweigh(u, weight); /* the current deficit is left alone */
    return 0;
}

int lv_drr_weight(const lv_drr_t *d, const char *user)
{
    int len = key_len(user);
    if (len < 0)
        return 1;
    return weight_of(d, user, (size_t)len);
}

int lv_drr_set_tenant_weight(lv_drr_t *d, const char *tenant, int weight)
{
    int len = key_len(tenant);
    if (len < 0 || weight < 1 || weight > LV_DRR_WEIGHT_MAX)
        return LV_EINVAL;
    if (d->running)
        return LV_EAGAIN;
    int rc = weight_put(d, &d->tweights, tenant, (size_t)len, weight);
    if (rc != 0)
        return rc;
    lv_drr_tenant_t *t = tenant_lookup(d, tenant, (size_t)len);
    if (t)
        tenant_reweigh(d, t, weight);
    return 0;
}

int lv_drr_tenant_weight(const lv_drr_t *d, const char *tenant)
{
    int len = key_len(tenant);
    if (len < 0)
        return 1;
    return tweight_of(d, tenant, (size_t)len);
}

int lv_drr_clear_weights(lv_drr_t *d)
{
    if (d->running)
        return LV_EAGAIN;
    lv_hmap_iter_t it;
    lv_hmap_node_t *n;
    lv_hmap_iter_init(&d->weights, &it);
    while ((n = lv_hmap_iter_next(&d->weights, &it)) != NULL) {
        lv_drr_weight_t *w = LV_CONTAINER_OF(n, lv_drr_weight_t, node);
        lv_drr_user_t *u = user_find(d, w->key, strlen(w->key));
        if (u)
            user_reweigh(u, 1);
        lv_hmap_remove(&d->weights, n);
        free(w);
    }
    lv_hmap_iter_init(&d->tweights, &it);
    while ((n = lv_hmap_iter_next(&d->tweights, &it)) != NULL) {
        lv_drr_weight_t *w = LV_CONTAINER_OF(n, lv_drr_weight_t, node);
        lv_drr_tenant_t *t = tenant_lookup(d, w->key, strlen(w->key));
        if (t)
            tenant_reweigh(d, t, 1);
        lv_hmap_remove(&d->tweights, n);
        free(w);
    }
    return 0;
}

int lv_drr_enqueue(lv_drr_t *d, lv_drr_node_t *node, const char *user, uint64_t now_us)
{
    return lv_drr_enqueue_tenant(d, node, LV_DRR_TENANT_DEFAULT, user, now_us);
}

int lv_drr_enqueue_tenant(lv_drr_t *d, lv_drr_node_t *node, const char *tenant, const char *user,
                          uint64_t now_us)
{
    if (node->user)
        return 0;
    int len = key_len(user), tlen = key_len(tenant);
    if (len < 0 || tlen < 0)
        return LV_EINVAL;
    if (d->running)
        return LV_EAGAIN;
    peak_tick(d, now_us);
    lv_drr_user_t *u = user_lookup(d, user, (size_t)len);
    if (!u || user_cached(u)) {
        lv_drr_tenant_t *t = tenant_get(d, tenant, (size_t)tlen);
        if (!t || !(u = user_create(d, u, t, user, (size_t)len)))
            return LV_ENOMEM;
    }
    if (!u->in_ring)
        ring_join(d, u);
    lv_queue_insert_tail(&u->sessions, &node->link);
    u->n_queued++;
    u->tenant->n_queued++;
    node->user = u;
    node->enqueued_us = now_us;
    d->n_queued++;
    return 0;
}

void lv_drr_remove(lv_drr_t *d, lv_drr_node_t *node)
{
    lv_drr_user_t *u = node->user;
    if (!u)
        return;
    assert(!d->running); /* the run holds cursors into these rings */
    node_detach(d, node);
    if (u->n_queued == 0) {
        ring_leave(d, u);
        user_settle(d, u);
    }
}

static int node_is_stale(const lv_drr_node_t *n, uint64_t now_us)
{
    return n->max_age_us != 0 && now_us > n->enqueued_us && now_us - n->enqueued_us > n->max_age_us;
}

/* The share bound as one run sees it (capacity and weights are taken at its start). */
typedef struct {
    size_t capacity; /* 0: no bound */
    uint64_t weights;  /* of the competing tenants */
    size_t tenants;    /* competing tenants */
    long n_under;      /* tenants in the round below their share */
} share_t;

static uint64_t tenant_share(const share_t *sh, const lv_drr_tenant_t *t)
{
    uint64_t share = sh->weights ? (uint64_t)sh->capacity * (uint64_t)t->weight / sh->weights : sh->capacity;
    return LV_MAX(share, (uint64_t)1);
}

static uint64_t user_share(const share_t *sh, const lv_drr_user_t *u)
{
    const lv_drr_tenant_t *t = u->tenant;
    uint64_t ts = tenant_share(sh, t);
    uint64_t share = t->weight_known ? ts * (uint64_t)u->weight / t->weight_known : ts;
    return LV_MAX(share, (uint64_t)1);
}

static int tenant_over(const share_t *sh, const lv_drr_tenant_t *t)
{
    return (uint64_t)t->inflight >= tenant_share(sh, t);
}

/* Over its share: its own within its tenant, or its tenant's while other tenants compete (with one
 * tenant this is the single-level bound). */
static int user_over_own(const share_t *sh, const lv_drr_user_t *u)
{
    return (uint64_t)u->inflight >= user_share(sh, u);
}

static int over_share(const share_t *sh, const lv_drr_user_t *u)
{
    return user_over_own(sh, u) || (sh->tenants > 1 && tenant_over(sh, u->tenant));
}

/* A tenant over its share waits while another queued tenant is below its share; a user over its own
 * share waits while another queued user of its tenant is below its share; and neither may take a
 * slot that a lingering user (between two frames) will want back: one free slot stays for each. */
static int held_back(const lv_drr_t *d, const share_t *sh, const lv_drr_user_t *u, int u_counted_under,
                     int t_counted_under)
{
    const lv_drr_tenant_t *t = u->tenant;
    int t_over = sh->tenants > 1 && tenant_over(sh, t);
    int u_over = user_over_own(sh, u);
    if (!t_over && !u_over)
        return 0;
    if (t_over && sh->n_under - t_counted_under > 0)
        return 1;
    if (u_over && t->n_under - u_counted_under > 0)
        return 1;
    size_t free_slots = sh->capacity > d->inflight ? sh->capacity - d->inflight : 0;
    return free_slots <= d->n_idle;
}

/* One run's walk state. */
typedef struct {
    lv_drr_t *d;
    share_t sh;
    uint64_t run;
    uint64_t now_us;
    size_t max_dispatch;
    size_t dispatched;
    size_t unoffered; /* exact: nothing is queued or removed from outside meanwhile */
    int stop;
    lv_drr_try_fn try_dispatch;
    lv_drr_stale_fn on_stale;
    void *ud;
} walk_t;

/* Offer u's nodes for what is left of its turn and its tenant's. */
static void visit_user(walk_t *w, lv_drr_tenant_t *t, lv_drr_user_t *u, int t_was_under)
{
    lv_drr_t *d = w->d;
    const share_t *sh = &w->sh;
    int was_under = sh->capacity && !user_over_own(sh, u);
    while (u->deficit > 0 && t->deficit > 0 && u->cursor != &u->sessions && w->dispatched < w->max_dispatch) {
        if (sh->capacity && held_back(d, sh, u, was_under, t_was_under)) {
            /* like BUSY for the rest of its line: it keeps its turn and its place */
            for (const lv_queue_t *r = u->cursor; r != &u->sessions; r = r->next) {
                w->unoffered--;
                t->unoffered--;
            }
            u->cursor = &u->sessions;
            d->held_back++;
            break;
        }
        lv_queue_t *nl = u->cursor;
        lv_drr_node_t *n = LV_CONTAINER_OF(nl, lv_drr_node_t, link);
        lv_queue_t *after = nl->next;
        w->unoffered--;
        t->unoffered--;
        if (node_is_stale(n, w->now_us)) {
            u->cursor = after;
            node_detach(d, n);
            if (w->on_stale)
                w->on_stale(n, w->ud);
            continue;
        }
        lv_drr_verdict_t v = w->try_dispatch(n, w->ud);
        if ((v == LV_DRR_BUSY || v == LV_DRR_STOP) && sh->capacity && !over_share(sh, u)) {
            d->starved++; /* below its share and no slot: someone over theirs holds it */
            if (!d->starved_node)
                d->starved_node = n;
        }
        if (v == LV_DRR_STOP) {
            w->stop = 1;
            break;
        }
        u->cursor = after;
        if (v == LV_DRR_BUSY)
            continue;
        node_detach(d, n);
        if (v == LV_DRR_DISPATCHED) {
            w->dispatched++;
            u->deficit--;
            t->deficit--;
            if (d->track_jobs) {
                u->inflight++;
                t->inflight++;
                d->inflight++;
            }
        }
    }
    if (sh->capacity) /* the user's standing after this visit (signed: approximate in a run) */
        t->n_under += (u->n_queued > 0 && !user_over_own(sh, u)) - was_under;
}

/* Offer t's nodes for what is left of its turn: its users in their round order. Every visit to a
 * user holding unoffered nodes offers at least one (a user not in its turn starts one, and a turn
 * gives at least one job) or marks them all offered (held back), so the walk ends after at most one
 * lap of users per offer. A user whose turn ends moves to the tail of its tenant's round; one cut
 * short (its tenant's turn ended, or its nodes were all BUSY) keeps its turn and place. */
static void visit_tenant(walk_t *w, lv_drr_tenant_t *t, int t_was_under)
{
    lv_drr_t *d = w->d;
    lv_queue_t *ul = lv_queue_head(&t->users);
    while (!w->stop && t->deficit > 0 && t->unoffered > 0 && w->dispatched < w->max_dispatch) {
        if (ul == &t->users) {
            ul = lv_queue_head(&t->users);
            continue;
        }
        lv_drr_user_t *u = LV_CONTAINER_OF(ul, lv_drr_user_t, active_link);
        lv_queue_t *next_ul = ul->next;
        if (u->cursor_run != w->run) {
            u->cursor_run = w->run;
            u->cursor = lv_queue_head(&u->sessions);
        }
        if (u->cursor == &u->sessions) { /* everything of this user was offered in this run */
            ul = next_ul;
            continue;
        }
        if (!u->in_turn) {
            u->in_turn = 1;
            u->deficit = d->quantum * u->weight;
        }
        visit_user(w, t, u, t_was_under);
        if (u->n_queued == 0) {
            ring_leave(d, u); /* the tenant too when u was its last: t->unoffered is 0 then */
            user_settle(d, u);
        } else if (u->deficit == 0) {
            u->in_turn = 0; /* turn used up: to the back of its tenant's round */
            lv_queue_remove(&u->active_link);
            lv_queue_insert_tail(&t->users, &u->active_link);
        }
        ul = next_ul;
    }
}

size_t lv_drr_run(lv_drr_t *d, size_t max_dispatch, uint64_t now_us, lv_drr_try_fn try_dispatch,
                  lv_drr_stale_fn on_stale, void *ud)
{
    if (!try_dispatch || d->running || max_dispatch == 0)
        return 0;
    peak_tick(d, now_us);
    idle_sweep(d, now_us);
    for (int i = 0; i < CACHE_TRIM_PER_RUN && d->n_cached && d->n_cached + d->n_known > cache_limit(d); i++)
        cache_drop(d, LV_CONTAINER_OF(lv_queue_head(&d->cache), lv_drr_user_t, cache_link));
    d->running = 1;
    walk_t w = {.d = d, .run = ++d->run_seq, .now_us = now_us, .max_dispatch = max_dispatch,
                .unoffered = d->n_queued, .try_dispatch = try_dispatch, .on_stale = on_stale, .ud = ud};
    d->starved = 0;
    d->starved_node = NULL;
    w.sh = (share_t){.capacity = d->track_jobs ? d->capacity : 0, .weights = d->weight_known,
                     .tenants = d->n_tenants_known, .n_under = 0};
    const lv_queue_t *q, *r;
    if (w.sh.capacity)
        LV_QUEUE_FOREACH(q, &d->active) {
            lv_drr_tenant_t *t = LV_CONTAINER_OF(q, lv_drr_tenant_t, active_link);
            w.sh.n_under += !tenant_over(&w.sh, t);
            t->n_under = 0;
            LV_QUEUE_FOREACH(r, &t->users) {
                t->n_under += !user_over_own(&w.sh, LV_CONTAINER_OF(r, lv_drr_user_t, active_link));
            }
        }
    lv_queue_t *tl = lv_queue_head(&d->active);
    /* Tenants in round order, like users within a tenant (visit_tenant): a tenant whose turn ends
     * moves to the tail; one whose nodes were all BUSY or held back keeps its turn and its place. */
    while (!w.stop && w.dispatched < max_dispatch && w.unoffered > 0) {
        if (tl == &d->active) {
            tl = lv_queue_head(&d->active);
            continue;
        }
        lv_drr_tenant_t *t = LV_CONTAINER_OF(tl, lv_drr_tenant_t, active_link);
        lv_queue_t *next_tl = tl->next;
        if (t->unoffered_run != w.run) {
            t->unoffered_run = w.run;
            t->unoffered = t->n_queued;
        }
        if (t->unoffered == 0) {
            tl = next_tl;
            continue;
        }
        if (!t->in_turn) {
            t->in_turn = 1;
            t->deficit = d->quantum * t->weight;
        }
        int t_was_under = w.sh.capacity && !tenant_over(&w.sh, t);
        visit_tenant(&w, t, t_was_under);
        if (w.sh.capacity)
            w.sh.n_under += (t->n_queued > 0 && !tenant_over(&w.sh, t)) - t_was_under;
        if (t->in_ring && t->deficit == 0) {
            t->in_turn = 0;
            lv_queue_remove(&t->active_link);
            lv_queue_insert_tail(&d->active, &t->active_link);
        }
        tl = next_tl;
    }
    d->running = 0;
    idle_sweep(d, d->clock_us); /* users that left the round in this run and have no reason to stay */
    return w.dispatched;
}

/* Dispatches before `need` more of `me`'s own happen, at one level of the round: entries ahead of
 * me in ring order get turns 0..t before my turn t, entries behind me turns 0..t-1; each dispatches
 * at most what it has queued. first_me: what my current turn has left (or a fresh one). */
typedef struct {
    int in_turn, deficit, weight;
    size_t queued;
} level_entry_t;

static uint64_t turns_needed(uint64_t need, uint64_t first_me, uint64_t per_turn_me)
{
    return need <= first_me ? 0 : 1 + (need - first_me - 1) / per_turn_me;
}

static uint64_t others_allowance(int quantum, const level_entry_t *v, uint64_t turns)
{
    if (turns == 0)
        return 0;
    uint64_t per_turn = (uint64_t)quantum * (uint64_t)v->weight;
    uint64_t allowance = (v->in_turn ? (uint64_t)v->deficit : per_turn) + (turns - 1) * per_turn;
    return LV_MIN(allowance, (uint64_t)v->queued);
}

size_t lv_drr_position(const lv_drr_t *d, const lv_drr_node_t *node)
{
    const lv_drr_user_t *me = node->user;
    if (!me)
        return 0;
    const lv_drr_tenant_t *mt = me->tenant;
    size_t ahead_mine = 0;
    const lv_queue_t *q;
    LV_QUEUE_FOREACH(q, &me->sessions) {
        if (q == &node->link)
            break;
        ahead_mine++;
    }
    /* within my tenant: my turns needed, then the other users' dispatches meanwhile */
    uint64_t per_turn_me = (uint64_t)d->quantum * (uint64_t)me->weight;
    uint64_t t = turns_needed((uint64_t)ahead_mine + 1, me->in_turn ? (uint64_t)me->deficit : per_turn_me,
                              per_turn_me);
    uint64_t pos_in_tenant = ahead_mine;
    int before_me = 1;
    LV_QUEUE_FOREACH(q, &mt->users) {
        const lv_drr_user_t *v = LV_CONTAINER_OF(q, lv_drr_user_t, active_link);
        if (v == me) {
            before_me = 0;
            continue;
        }
        level_entry_t e = {v->in_turn, v->deficit, v->weight, v->n_queued};
        pos_in_tenant += others_allowance(d->quantum, &e, t + (uint64_t)before_me);
    }
    /* across tenants: my tenant's turns needed for that many of its dispatches plus mine */
    uint64_t per_turn_t = (uint64_t)d->quantum * (uint64_t)mt->weight;
    uint64_t tt = turns_needed(pos_in_tenant + 1, mt->in_turn ? (uint64_t)mt->deficit : per_turn_t, per_turn_t);
    uint64_t pos = pos_in_tenant;
    before_me = 1;
    LV_QUEUE_FOREACH(q, &d->active) {
        const lv_drr_tenant_t *v = LV_CONTAINER_OF(q, lv_drr_tenant_t, active_link);
        if (v == mt) {
            before_me = 0;
            continue;
        }
        level_entry_t e = {v->in_turn, v->deficit, v->weight, v->n_queued};
        pos += others_allowance(d->quantum, &e, tt + (uint64_t)before_me);
    }
    return (size_t)pos;
}

size_t lv_drr_queued(const lv_drr_t *d)
{
    return d->n_queued;
}

size_t lv_drr_users_active(const lv_drr_t *d)
{
    return d->n_users;
}

size_t lv_drr_tenants_active(const lv_drr_t *d)
{
    return d->n_tenants_active;
}

void lv_drr_stats(const lv_drr_t *d, lv_drr_stats_t *out)
{
    out->queued = d->n_queued;
    out->users_active = d->n_users;
    out->tenants_active = d->n_tenants_active;
    out->tenants_known = d->n_tenants_known;
    out->users_cached = d->n_cached;
    out->weights = lv_hmap_count(&d->weights) + lv_hmap_count(&d->tweights);
    out->allocs = d->allocs;
    out->users_known = d->n_known;
    out->users_idle = d->n_idle;
    out->inflight = d->inflight;
    out->held_back = d->held_back;
}

void lv_drr_track_jobs(lv_drr_t *d)
{
    d->track_jobs = 1;
}

void lv_drr_set_capacity(lv_drr_t *d, size_t slots)
{
    d->capacity = slots;
}

int lv_drr_job_done(lv_drr_t *d, const char *user, uint64_t now_us, uint64_t linger_us)
{
    int len = key_len(user);
    if (len < 0)
        return LV_EINVAL;
    /* also after lv_drr_free (a job that outlived the scheduler at shutdown): nobody is found */
    lv_drr_user_t *u = user_find(d, user, (size_t)len);
    if (!u || u->inflight <= 0)
        return LV_ENOTFOUND;
    if (now_us > d->clock_us)
        d->clock_us = now_us;
    u->inflight--;
    u->tenant->inflight--;
    d->inflight--;
    if (now_us + linger_us > u->linger_until_us)
        u->linger_until_us = now_us + linger_us;
    user_settle(d, u);
    return 0;
}

static share_t share_now(const lv_drr_t *d)
{
    return (share_t){.capacity = d->capacity, .weights = d->weight_known, .tenants = d->n_tenants_known};
}

int lv_drr_over_share(const lv_drr_t *d, const char *user)
{
    int len = key_len(user);
    if (len < 0 || !d->track_jobs || !d->capacity)
        return 0;
    const lv_drr_user_t *u = user_find(d, user, (size_t)len);
    share_t sh = share_now(d);
    return u && over_share(&sh, u);
}

size_t lv_drr_share(const lv_drr_t *d, const char *user)
{
    int len = key_len(user);
    if (len < 0 || !d->track_jobs || !d->capacity)
        return 0;
    const lv_drr_user_t *u = user_find(d, user, (size_t)len);
    share_t sh = share_now(d);
    if (u)
        return (size_t)user_share(&sh, u);
    /* a user not competing yet is counted as if it joined the default tenant: its weight adds to
     * its tenant's users', and the tenant's to the tenants' when it is not competing either */
    uint64_t w = (uint64_t)weight_of(d, user, (size_t)len);
    const char *dt = LV_DRR_TENANT_DEFAULT;
    const lv_drr_tenant_t *t = tenant_lookup(d, dt, strlen(dt));
    lv_drr_tenant_t joined = {.weight = tweight_of(d, dt, strlen(dt))};
    if (t && t->n_known > 0) {
        joined = *t;
    } else {
        sh.weights += (uint64_t)joined.weight;
        sh.tenants++;
    }
    joined.weight_known += w;
    uint64_t ts = tenant_share(&sh, &joined);
    uint64_t share = ts * w / joined.weight_known;
    return (size_t)LV_MAX(share, (uint64_t)1);
}

lv_drr_node_t *lv_drr_starved(const lv_drr_t *d)
{
    return d->starved_node;
}

uint64_t lv_drr_linger_next_us(const lv_drr_t *d)
{
    if (lv_queue_empty(&d->idle))
        return 0;
    return LV_CONTAINER_OF(lv_queue_head(&d->idle), lv_drr_user_t, idle_link)->linger_until_us;
}

int lv_drr_user_inflight(const lv_drr_t *d, const char *user)
{
    int len = key_len(user);
    if (len < 0)
        return 0;
    const lv_drr_user_t *u = user_find(d, user, (size_t)len);
    return u ? u->inflight : 0;
}

int lv_drr_tenant_inflight(const lv_drr_t *d, const char *tenant)
{
    int len = key_len(tenant);
    if (len < 0)
        return 0;
    const lv_drr_tenant_t *t = tenant_lookup(d, tenant, (size_t)len);
    return t ? t->inflight : 0;
}

/* One tenant in the round: its users ring and counts. Adds its users and nodes to *users, *nodes. */
static int check_tenant(const lv_drr_t *d, const lv_drr_tenant_t *t, size_t *users, size_t *nodes)
{
    const lv_queue_t *q, *r;
    size_t t_users = 0, t_nodes = 0;
    if (!t->in_ring || t->n_known == 0 || t->deficit < 0 || (!t->in_turn && t->deficit) ||
        tenant_lookup(d, t->key, strlen(t->key)) != t || t->weight != tweight_of(d, t->key, strlen(t->key)))
        return LV_EINVAL;
    LV_QUEUE_FOREACH(q, &t->users) {
        const lv_drr_user_t *u = LV_CONTAINER_OF(q, lv_drr_user_t, active_link);
        size_t mine = 0;
        if (q->next->prev != q || u->n_queued == 0 || !u->in_ring || u->lingering || u->tenant != t ||
            user_find(d, u->key, strlen(u->key)) != u)
            return LV_EINVAL;
        if (u->weight != weight_of(d, u->key, strlen(u->key)) || u->deficit < 0 || (!u->in_turn && u->deficit))
            return LV_EINVAL;
        LV_QUEUE_FOREACH(r, &u->sessions) {
            const lv_drr_node_t *n = LV_CONTAINER_OF(r, lv_drr_node_t, link);
            if (n->user != u || r->next->prev != r)
                return LV_EINVAL;
            mine++;
        }
        if (mine != u->n_queued)
            return LV_EINVAL;
        t_users++;
        t_nodes += mine;
    }
    if (t_users == 0 || t_users != t->n_users || t_nodes != t->n_queued)
        return LV_EINVAL;
    *users += t_users;
    *nodes += t_nodes;
    return 0;
}

int lv_drr_check(const lv_drr_t *d)
{
    size_t users = 0, nodes = 0, hashed = 0, hashed_cached = 0, cached = 0, idle = 0, inflight = 0;
    size_t tenants_active = 0, tenants_known = 0, tenant_records = 0, t_known_users = 0;
    uint64_t weights = 0, last_linger = 0;
    const lv_queue_t *q;
    lv_hmap_iter_t it;
    const lv_hmap_node_t *hn;
    LV_QUEUE_FOREACH(q, &d->active) {
        if (q->next->prev != q ||
            check_tenant(d, LV_CONTAINER_OF(q, lv_drr_tenant_t, active_link), &users, &nodes) != 0)
            return LV_EINVAL;
        tenants_active++;
    }
    lv_hmap_iter_init(&d->users, &it);
    while ((hn = lv_hmap_iter_next(&d->users, &it)) != NULL) {
        const lv_drr_user_t *u = LV_CONTAINER_OF(hn, lv_drr_user_t, node);
        if (user_cached(u)) {
            if (u->in_ring || u->lingering || u->n_queued || u->inflight || u->tenant)
                return LV_EINVAL;
            hashed_cached++;
            continue;
        }
        /* out of the round only while it has jobs in flight or lingers */
        if (u->inflight < 0 || !u->tenant || (!u->in_ring && u->inflight == 0 && !u->lingering) ||
            (u->in_ring && u->n_queued == 0) || (!u->in_ring && u->n_queued != 0) ||
            (u->lingering && (u->in_ring || u->inflight)))
            return LV_EINVAL;
        hashed++;
        inflight += (size_t)u->inflight;
    }
    /* each tenant's sums against its users' (O(tenants × users): tests only) */
    lv_hmap_iter_init(&d->tenants, &it);
    while ((hn = lv_hmap_iter_next(&d->tenants, &it)) != NULL) {
        const lv_drr_tenant_t *t = LV_CONTAINER_OF(hn, lv_drr_tenant_t, node);
        uint64_t t_weights = 0;
        size_t t_users = 0;
        long t_inflight = 0;
        lv_hmap_iter_t uit;
        const lv_hmap_node_t *un;
        lv_hmap_iter_init(&d->users, &uit);
        while ((un = lv_hmap_iter_next(&d->users, &uit)) != NULL) {
            const lv_drr_user_t *u = LV_CONTAINER_OF(un, lv_drr_user_t, node);
            if (u->tenant != t)
                continue;
            t_weights += (uint64_t)u->weight;
            t_users++;
            t_inflight += u->inflight;
        }
        if (t_users != t->n_known || t_weights != t->weight_known || t_inflight != t->inflight ||
            (t->in_ring && !t->n_known) || (!t->in_ring && t->n_queued))
            return LV_EINVAL;
        tenant_records++;
        t_known_users += t_users;
        if (t->n_known) {
            tenants_known++;
            weights += (uint64_t)t->weight;
        }
    }
    LV_QUEUE_FOREACH(q, &d->idle) {
        const lv_drr_user_t *u = LV_CONTAINER_OF(q, lv_drr_user_t, idle_link);
        if (q->next->prev != q || !u->lingering || u->linger_until_us < last_linger ||
            user_find(d, u->key, strlen(u->key)) != u)
            return LV_EINVAL;
        last_linger = u->linger_until_us;
        idle++;
    }
    LV_QUEUE_FOREACH(q, &d->cache) {
        const lv_drr_user_t *u = LV_CONTAINER_OF(q, lv_drr_user_t, cache_link);
        if (q->next->prev != q || user_lookup(d, u->key, strlen(u->key)) != u)
            return LV_EINVAL;
        cached++;
    }
    if (users != d->n_users || hashed != d->n_known || nodes != d->n_queued || cached != d->n_cached ||
        hashed_cached != d->n_cached || idle != d->n_idle || weights != d->weight_known ||
        inflight != d->inflight || tenants_active != d->n_tenants_active || tenants_known != d->n_tenants_known ||
        tenant_records != lv_hmap_count(&d->tenants) || t_known_users != d->n_known)
        return LV_EINVAL;
    return 0;
}

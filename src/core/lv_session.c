/* lv_session.c - session registry, mailbox, history. */
#include "lv_session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lv_common.h"
#include "lv_rand.h"

/* A principal's record. It lives while the principal has a session or something queued. */
typedef struct principal_count {
    lv_hmap_node_t node;        /* in lv_registry.principals, keyed by principal[] */
    lv_queue_t link;            /* in lv_registry.principal_order */
    size_t count;               /* its sessions, live and detached: the length of `sessions` */
    size_t queued;              /* frames waiting plus credits outstanding (the pipeline's count) */
    lv_queue_t sessions;        /* lv_session_t.principal_link, in creation order */
    char principal[LV_PRINCIPAL_KEY_MAX];
} principal_count_t;

/* The hash tables answer "which session has this id" and "which record is this principal's"; the
 * bounded walks (sweep, snapshot) need a stable order instead, since a table reorders itself as it
 * grows and shrinks. They go principal by principal in order of arrival, each principal's sessions
 * oldest first, and resume at a session that session_remove() moves along when it goes. */
struct lv_registry {
    lv_store_t *store;
    lv_registry_caps_t caps;
    lv_hmap_t sessions;         /* lv_session_t.hash_node, by rec.id */
    lv_hmap_t principals;       /* principal_count_t.node, by principal */
    lv_queue_t principal_order; /* principal_count_t.link, oldest first */
    size_t count;
    lv_session_t *sweep_next;   /* where the bounded sweep resumes; NULL: at the start */
    lv_queue_t started;
    uint64_t started_order;     /* the last lv_session_t.started_order given */
    lv_queue_t just_started;    /* lv_session_t.credit_link: started since the pipeline's last tick */
    void (*before_evict)(lv_session_t *s, void *ud);
    void *evict_ud;
    bool persist_removed;       /* a session went since the last snapshot */
    lv_queue_t dirty;           /* lv_session_t.dirty_link: changed since encoded, oldest change first */
    lv_session_t *persist_next; /* where the snapshot's bounded re-encoding resumes; NULL: at the start */
};

lv_frame_t *lv_frame_new(const void *jpeg, size_t len)
{
    lv_frame_t *f = malloc(sizeof(*f) + len);
    if (!f)
        return NULL;
    memset(f, 0, sizeof(*f));
    f->refs = 1;
    f->len = len;
    memcpy(f->data, jpeg, len);
    return f;
}

lv_frame_t *lv_frame_ref(lv_frame_t *f)
{
    f->refs++;
    return f;
}

void lv_frame_unref(lv_frame_t *f)
{
    if (f && --f->refs == 0)
        free(f);
}

/* A name longer than a record holds is keyed by the part that fits (as rec.principal keeps it),
 * so lookups with the caller's string and with a session's copy agree. */
static size_t principal_key_len(const char *principal)
{
    return strnlen(principal, LV_PRINCIPAL_KEY_MAX - 1);
}

static principal_count_t *principal_find(const lv_registry_t *reg, const char *principal)
{
    lv_hmap_node_t *n = lv_hmap_find(&reg->principals, principal, principal_key_len(principal));
    return n ? LV_CONTAINER_OF(n, principal_count_t, node) : NULL;
}

/* The principal's record, made on first use; NULL when out of memory. */
static principal_count_t *principal_get(lv_registry_t *reg, const char *principal)
{
    principal_count_t *o = principal_find(reg, principal);
    if (o)
        return o;
    size_t len = principal_key_len(principal);
    o = calloc(1, sizeof(*o));
    if (!o)
        return NULL;
    memcpy(o->principal, principal, len);
    lv_queue_init(&o->sessions);
    if (lv_hmap_insert(&reg->principals, &o->node, o->principal, len) != 0) {
        free(o);
        return NULL;
    }
    lv_queue_insert_tail(&reg->principal_order, &o->link);
    return o;
}

/* Free the record once nothing refers to it any more. */
static void principal_release(lv_registry_t *reg, principal_count_t *o)
{
    if (o->count || o->queued)
        return;
    lv_hmap_remove(&reg->principals, &o->node);
    lv_queue_remove(&o->link);
    free(o);
}

size_t lv_registry_principal_count(const lv_registry_t *reg, const char *principal)
{
    const principal_count_t *o = principal_find(reg, principal);
    return o ? o->count : 0;
}

int lv_registry_create(lv_store_t *store, const lv_registry_caps_t *caps, lv_registry_t **out)
{
    lv_registry_t *reg = calloc(1, sizeof(*reg));
    if (!reg)
        return LV_ENOMEM;
    /* no caps on the tables: sessions are counted against max_sessions before one is allocated,
     * and a principal has a record only while it has a session or something queued */
    if (lv_hmap_init(&reg->sessions, 0) != 0 || lv_hmap_init(&reg->principals, 0) != 0) {
        free(reg); /* the tables allocate nothing before their first insert */
        return LV_EIO;
    }
    reg->store = store;
    reg->caps = *caps;
    lv_queue_init(&reg->dirty);
    lv_queue_init(&reg->principal_order);
    lv_queue_init(&reg->started);
    lv_queue_init(&reg->just_started);
    *out = reg;
    return 0;
}

static void session_free(lv_session_t *s)
{
    lv_frame_unref(s->pending);
    for (size_t i = 0; i < LV_HISTORY_MAX; i++) {
        free(s->history[i].text);
        free(s->history[i].json);
    }
    lv_statefile_line_unref(s->persist_line);
    free(s);
}

void lv_registry_destroy(lv_registry_t *reg)
{
    if (!reg)
        return;
    /* every session is in exactly one principal's list; the tables only point at them */
    lv_queue_t *l = lv_queue_head(&reg->principal_order);
    while (l != &reg->principal_order) {
        principal_count_t *o = LV_CONTAINER_OF(l, principal_count_t, link);
        lv_queue_t *q = lv_queue_head(&o->sessions);
        while (q != &o->sessions) {
            lv_session_t *s = LV_CONTAINER_OF(q, lv_session_t, principal_link);
            q = q->next;
            session_free(s);
        }
        l = l->next;
        free(o);
    }
    lv_hmap_free(&reg->sessions);
    lv_hmap_free(&reg->principals);
    free(reg);
}

lv_session_t *lv_session_find(lv_registry_t *reg, const char *id)
{
    lv_hmap_node_t *n = lv_hmap_find_str(&reg->sessions, id);
    return n ? LV_CONTAINER_OF(n, lv_session_t, hash_node) : NULL;
}

void lv_registry_set_evict_cb(lv_registry_t *reg, void (*before_evict)(lv_session_t *s, void *ud), void *ud)
{
    reg->before_evict = before_evict;
    reg->evict_ud = ud;
}

/* Detached = its sockets have all gone. A session just created has not been attached yet and
 * counts as live (the caller attaches it at once). */
static bool is_detached(const lv_session_t *s) { return !lv_session_attached(s) && s->detached_since_ms != 0; }

size_t lv_registry_principal_queued(lv_registry_t *reg, const char *principal, int delta)
{
    principal_count_t *o = principal_find(reg, principal);
    if (!o)
        return 0; /* no session of it is left: nothing of it can be waiting */
    if (delta < 0 && o->queued > 0)
        o->queued--;
    else if (delta > 0)
        o->queued++;
    size_t q = o->queued;
    principal_release(reg, o);
    return q;
}

size_t lv_registry_principal_live(const lv_registry_t *reg, const char *principal)
{
    const principal_count_t *o = principal_find(reg, principal);
    size_t live = 0;
    const lv_queue_t *n;
    if (!o)
        return 0;
    LV_QUEUE_FOREACH(n, &o->sessions)
    {
        if (!is_detached(LV_CONTAINER_OF(n, lv_session_t, principal_link)))
            live++;
    }
    return live;
}

void lv_store_result_cb(void *ud, int rc, const lv_session_rec_t *rec)
{
    lv_store_result_t *res = ud;
    res->completed = true;
    res->rc = rc;
    if (rec)
        res->rec = *rec;
}

/* Insert a new record. A store that completes later is trusted with it (ids are 128 random bits,
 * so LV_EEXIST cannot be expected); a refusal it reports now fails the create. */
static int store_create(lv_registry_t *reg, const lv_session_rec_t *rec)
{
    lv_store_result_t res = {0};
    int rc = reg->store->ops->create(reg->store, rec, lv_store_result_cb, &res);
    if (rc != 0)
        return rc;
    return res.completed ? res.rc : 0;
}

/* Put a session that is in no structure yet into the store and the registry. On failure it is in
 * neither, and the caller frees it. */
static int session_register(lv_registry_t *reg, lv_session_t *s)
{
    principal_count_t *o;
    int rc = lv_hmap_insert_str(&reg->sessions, &s->hash_node, s->rec.id);
    if (rc != 0)
        return rc;
    if ((rc = store_create(reg, &s->rec)) != 0)
        goto unhash;
    if (!(o = principal_get(reg, s->rec.principal))) {
        rc = LV_ENOMEM;
        goto unstore;
    }
    o->count++;
    lv_queue_insert_tail(&o->sessions, &s->principal_link);
    reg->count++;
    s->reg = reg;
    if (s->persist_dirty)
        lv_session_mark_dirty(s);
    return 0;
unstore:
    reg->store->ops->remove(reg->store, s->rec.id, NULL, NULL);
unhash:
    lv_hmap_remove(&reg->sessions, &s->hash_node);
    return rc;
}

/* The session after s in the walks' order, wrapping around (s itself when it is the only one).
 * *o is s's principal on entry and the returned session's on return. */
static lv_session_t *session_after(lv_registry_t *reg, principal_count_t **o, const lv_session_t *s)
{
    lv_queue_t *q = s->principal_link.next;
    while (q == &(*o)->sessions) { /* past o's last: the next principal's first (one may have none) */
        lv_queue_t *l = (*o)->link.next;
        if (l == &reg->principal_order)
            l = l->next;
        *o = LV_CONTAINER_OF(l, principal_count_t, link);
        q = (*o)->sessions.next;
    }
    return LV_CONTAINER_OF(q, lv_session_t, principal_link);
}

/* Where a walk starts: at its saved place, or at the first session; *o gets its principal. NULL
 * when the registry is empty. */
static lv_session_t *walk_start(lv_registry_t *reg, lv_session_t *saved, principal_count_t **o)
{
    lv_queue_t *l;
    if (saved) {
        *o = principal_find(reg, saved->rec.principal);
        return saved;
    }
    LV_QUEUE_FOREACH(l, &reg->principal_order)
    {
        *o = LV_CONTAINER_OF(l, principal_count_t, link);
        if (!lv_queue_empty(&(*o)->sessions))
            return LV_CONTAINER_OF(lv_queue_head(&(*o)->sessions), lv_session_t, principal_link);
    }
    return NULL;
}

/* Take a session out of every registry structure and the store, and free it. */
static void session_remove(lv_registry_t *reg, lv_session_t *s)
{
    principal_count_t *o = principal_find(reg, s->rec.principal);
    if (reg->sweep_next == s || reg->persist_next == s) { /* a walk was to resume here: at the next one */
        principal_count_t *next_o = o;
        lv_session_t *next = session_after(reg, &next_o, s);
        if (next == s)
            next = NULL;
        if (reg->sweep_next == s)
            reg->sweep_next = next;
        if (reg->persist_next == s)
            reg->persist_next = next;
    }
    lv_hmap_remove(&reg->sessions, &s->hash_node);
    if (lv_queue_linked(&s->started_link))
        lv_queue_remove(&s->started_link);
    lv_queue_remove(&s->credit_link); /* the pipeline's timetable (embedded: it outlives s) */
    lv_queue_remove(&s->principal_link);
    /* the other lists' heads outlive it (the registry's, the cluster's): unlinked here, not in
     * session_free, which lv_registry_destroy also calls when neighbours are already gone */
    lv_queue_remove(&s->dirty_link);
    lv_queue_remove(&s->cluster.link);
    o->count--;
    principal_release(reg, o);
    reg->store->ops->remove(reg->store, s->rec.id, NULL, NULL);
    reg->count--;
    reg->persist_removed = true;
    session_free(s);
}

/* Make room for one more session of principal by evicting its longest-detached session, if it has
 * one. The walk is bounded by the principal's session count, itself bounded by the per-principal cap. */
static int evict_oldest_detached(lv_registry_t *reg, const char *principal)
{
    principal_count_t *o = principal_find(reg, principal);
    lv_session_t *oldest = NULL;
    lv_queue_t *n;
    if (!o)
        return LV_ENOTFOUND;
    LV_QUEUE_FOREACH(n, &o->sessions)
    {
        lv_session_t *s = LV_CONTAINER_OF(n, lv_session_t, principal_link);
        if (is_detached(s) && (!oldest || s->detached_since_ms < oldest->detached_since_ms))
            oldest = s;
    }
    if (!oldest)
        return LV_ENOTFOUND;
    if (reg->before_evict)
        reg->before_evict(oldest, reg->evict_ud);
    session_remove(reg, oldest);
    return 0;
}

/* A zeroed session with its links initialised, in no list yet; NULL when out of memory. */
static lv_session_t *session_alloc(void)
{
    lv_session_t *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    lv_queue_init(&s->viewers);
    lv_queue_init(&s->sources);
    lv_queue_init(&s->principal_link);
    lv_drr_node_init(&s->drr);
    lv_queue_init(&s->started_link);
    lv_queue_init(&s->credit_link);
    lv_queue_init(&s->dirty_link);
    lv_queue_init(&s->cluster.link);
    /* a trace of its own until a caller's traceparent replaces it; none if the CSPRNG fails */
    if (lv_trace_new_id(s->trace.trace_id, sizeof(s->trace.trace_id), LV_TRACE_ID_HEX) != 0)
        s->trace.trace_id[0] = '\0';
    return s;
}

int lv_session_create(lv_registry_t *reg, const char *principal, const char *tenant,
                      const lv_settings_t *settings, char secret_out[65], lv_session_t **out)
{
    int rc;
    /* live sessions are what the per-principal cap refuses; detached ones give way (see the header) */
    if (lv_registry_principal_live(reg, principal) >= reg->caps.max_sessions_per_principal)
        return LV_ELIMIT;
    while (lv_registry_principal_count(reg, principal) >= reg->caps.max_sessions_per_principal)
        if (evict_oldest_detached(reg, principal) != 0)
            return LV_ELIMIT;
    if (reg->count >= reg->caps.max_sessions && evict_oldest_detached(reg, principal) != 0)
        return LV_ELIMIT;
    lv_session_t *s = session_alloc();
    if (!s)
        return LV_ENOMEM;
    if (settings)
        s->rec.settings = *settings;
    else
        lv_settings_defaults(&s->rec.settings);
    snprintf(s->rec.principal, sizeof(s->rec.principal), "%s", principal);
    snprintf(s->rec.tenant, sizeof(s->rec.tenant), "%s", tenant && tenant[0] ? tenant : "default");
    s->rec.created_ms = lv_wall_ms();
    s->detached_wall_ms = s->rec.created_ms;
    s->persist_dirty = true;
    /* 128-bit id and 256-bit secret from the CSPRNG; a collision only retries */
    for (int tries = 0;; tries++) {
        if ((rc = lv_rand_hex(s->rec.id, sizeof(s->rec.id), LV_SESSION_ID_LEN / 2)) != 0)
            goto fail;
        if (!lv_session_find(reg, s->rec.id))
            break;
        if (tries > 3) {
            rc = LV_EIO;
            goto fail;
        }
    }
    if ((rc = lv_rand_hex(secret_out, 65, 32)) != 0)
        goto fail;
    lv_secret_hash(secret_out, s->rec.secret_hash);
    if ((rc = session_register(reg, s)) != 0)
        goto fail;
    *out = s;
    return 0;
fail:
    free(s);
    return rc;
}

int lv_session_resume(lv_registry_t *reg, const char *id, const char *secret, lv_session_t **out)
{
    char hash[LV_SECRET_HASH_LEN + 1];
    /* the store is the authority: a record may exist there without a local object. A store that
     * answers later (networked) cannot confirm it now: the resume is refused, the page starts anew */
    lv_store_result_t res = {0};
    if (reg->store->ops->load(reg->store, id, lv_store_result_cb, &res) != 0 || !res.completed || res.rc != 0)
        return LV_ENOTFOUND;
    lv_secret_hash(secret, hash);
    if (!lv_secure_equal(hash, strlen(hash), res.rec.secret_hash, strlen(res.rec.secret_hash)))
        return LV_ENOTFOUND;
    lv_session_t *s = lv_session_find(reg, id);
    if (!s)
        return LV_ENOTFOUND; /* known to the store but not here: cluster mode will adopt it */
    *out = s;
    return 0;
}

int lv_session_save(lv_registry_t *reg, lv_session_t *s)
{
    lv_session_mark_dirty(s);
    /* the record is ours (s->rec); the store's copy follows, now or (networked) a little later */
    return reg->store->ops->save(reg->store, &s->rec, NULL, NULL);
}

void lv_session_set_started(lv_registry_t *reg, lv_session_t *s, bool started, uint64_t now_ms)
{
    s->rec.started = started;
    lv_session_mark_dirty(s);
    if (started && !lv_queue_linked(&s->started_link)) {
        lv_queue_insert_tail(&reg->started, &s->started_link);
        s->started_order = ++reg->started_order;
        s->next_credit_ms = now_ms;
        s->credit_outstanding = 0;
        lv_queue_remove(&s->credit_link);
        lv_queue_insert_tail(&reg->just_started, &s->credit_link);
    } else if (!started && lv_queue_linked(&s->started_link)) {
        lv_queue_remove(&s->started_link);
        lv_queue_remove(&s->credit_link);
        s->credit_outstanding = 0;
    }
}

lv_queue_t *lv_registry_started(lv_registry_t *reg) { return &reg->started; }

void lv_registry_started_to_back(lv_registry_t *reg, lv_session_t *s)
{
    lv_queue_remove(&s->started_link);
    lv_queue_insert_tail(&reg->started, &s->started_link);
    s->started_order = ++reg->started_order;
}

lv_queue_t *lv_registry_just_started(lv_registry_t *reg) { return &reg->just_started; }

int lv_session_mailbox_put(lv_session_t *s, lv_frame_t *f)
{
    int replaced = s->pending != NULL;
    if (replaced) {
        lv_frame_unref(s->pending);
        s->frames_replaced++;
    }
    s->pending = f;
    return replaced;
}

lv_frame_t *lv_session_mailbox_take(lv_session_t *s)
{
    lv_frame_t *f = s->pending;
    s->pending = NULL;
    return f;
}

void lv_session_history_add(lv_session_t *s, uint64_t answer_id, const char *text, size_t len,
                            double latency_ms, uint64_t wall_ms)
{
    size_t slot;
    if (s->history_len < LV_HISTORY_MAX) {
        slot = (s->history_head + s->history_len) % LV_HISTORY_MAX;
        s->history_len++;
    } else {
        slot = s->history_head;
        s->history_head = (s->history_head + 1) % LV_HISTORY_MAX;
    }
    lv_history_entry_t *e = &s->history[slot];
    free(e->text);
    free(e->json); /* the slot's previous entry's form */
    e->json = NULL;
    e->json_len = 0;
    if (len > LV_HISTORY_TEXT_MAX)
        len = LV_HISTORY_TEXT_MAX;
    e->text = malloc(len + 1);
    e->text_len = 0;
    if (e->text) {
        memcpy(e->text, text, len);
        e->text[len] = '\0';
        e->text_len = strlen(e->text); /* what readers of the C string (and the file) see */
    }
    e->answer_id = answer_id;
    e->wall_ms = wall_ms;
    e->latency_ms = latency_ms;
    lv_session_mark_dirty(s);
}

/* Where the i-th entry, oldest first, sits in the ring (i < history_len). */
static size_t history_slot(const lv_session_t *s, size_t i)
{
    return (s->history_head + i) % LV_HISTORY_MAX;
}

const lv_history_entry_t *lv_session_history_at(const lv_session_t *s, size_t i)
{
    return i < s->history_len ? &s->history[history_slot(s, i)] : NULL;
}

void lv_session_attach_changed(lv_session_t *s, uint64_t now_ms)
{
    if (!lv_session_attached(s)) {
        if (s->detached_since_ms == 0) {
            s->detached_since_ms = now_ms ? now_ms : 1;
            s->detached_wall_ms = lv_wall_ms();
        }
    } else {
        s->detached_since_ms = 0;
    }
    lv_session_mark_dirty(s); /* attached or not decides what the state file says it was last seen */
}

void lv_registry_remove(lv_registry_t *reg, lv_session_t *s) { session_remove(reg, s); }

size_t lv_registry_sweep(lv_registry_t *reg, uint64_t now_ms, uint64_t idle_ms, size_t max_examined,
                         void (*before_free)(lv_session_t *s, void *ud), void *ud)
{
    size_t removed = 0;
    size_t left = LV_MIN(max_examined, reg->count); /* at most one lap */
    principal_count_t *o = NULL;
    lv_session_t *s = walk_start(reg, reg->sweep_next, &o);
    for (; s && left > 0; left--) {
        /* the place moves on first: removing s then leaves it on a session that stays */
        reg->sweep_next = session_after(reg, &o, s);
        if (!lv_session_attached(s) && s->detached_since_ms && now_ms - s->detached_since_ms >= idle_ms) {
            if (before_free)
                before_free(s, ud);
            session_remove(reg, s); /* sets sweep_next to NULL when s was the only one left */
            removed++;
        }
        s = reg->sweep_next;
    }
    return removed;
}

size_t lv_registry_count(const lv_registry_t *reg) { return reg->count; }

void lv_registry_each(lv_registry_t *reg, int (*fn)(lv_session_t *s, void *ud), void *ud)
{
    lv_queue_t *p, *q;
    for (p = reg->principal_order.next; p != &reg->principal_order; p = p->next) {
        principal_count_t *o = LV_CONTAINER_OF(p, principal_count_t, link);
        for (q = o->sessions.next; q != &o->sessions; q = q->next)
            if (fn(LV_CONTAINER_OF(q, lv_session_t, principal_link), ud) != 0)
                return;
    }
}

/* ---------- the state file (lv_statefile.h) ---------- */

_Static_assert(LV_HISTORY_MAX <= LV_STATEFILE_ANSWERS_MAX, "the state file must hold a whole history");
_Static_assert(LV_HISTORY_TEXT_MAX <= LV_STATEFILE_TEXT_MAX, "the state file must hold whole answers");

void lv_session_queue_write(lv_session_t *s)
{
    /* before it is registered it has no list yet: session_register puts it there */
    if (s->reg && !lv_queue_linked(&s->dirty_link))
        lv_queue_insert_tail(&s->reg->dirty, &s->dirty_link);
}

void lv_session_mark_dirty(lv_session_t *s)
{
    s->persist_dirty = true;
    lv_session_queue_write(s);
}

lv_session_t *lv_registry_dirty_pop(lv_registry_t *reg)
{
    if (lv_queue_empty(&reg->dirty))
        return NULL;
    lv_queue_t *q = lv_queue_head(&reg->dirty);
    lv_queue_remove(q);
    return LV_CONTAINER_OF(q, lv_session_t, dirty_link);
}

/* A cached form is at most twice its text plus this (lv_history_entry_t's memory bound); a longer
 * one (control characters) is formatted on each encode instead. */
#define HISTORY_JSON_SLACK 128

/* Keep e's saved form (a's fields) with it. Best effort: one not kept is formatted by the encoder,
 * which also reports what made it fail. */
static void history_cache(lv_history_entry_t *e, const lv_statefile_answer_t *a)
{
    lv_buf_t b;
    size_t max = 2 * a->text_len + HISTORY_JSON_SLACK;
    lv_buf_init(&b, LV_MIN(max, (size_t)LV_STATEFILE_ANSWER_JSON_MAX));
    /* room for plain text and a few escapes: most entries take one allocation, then give back the
     * slack (the buffer rounds up to a power of two) */
    if (lv_buf_reserve(&b, LV_MIN(b.max, HISTORY_JSON_SLACK + a->text_len + a->text_len / 8)) != 0 ||
        lv_statefile_encode_answer(a, &b) != 0) {
        lv_buf_free(&b);
        return;
    }
    char *p = realloc(b.data, b.len + 1);
    e->json = p ? p : b.data;
    e->json_len = b.len;
}

/* Replace the session's saved line with its current state. On failure the previous line stays
 * (a session that cannot be encoded is not retried every period: it waits for its next change). */
int lv_session_encode(lv_session_t *s)
{
    lv_statefile_session_t *v = malloc(sizeof(*v)); /* ~5 KiB */
    lv_statefile_line_t *line = NULL;
    if (!v)
        return LV_ENOMEM;
    memset(v, 0, sizeof(*v));
    v->rec = s->rec;
    v->attached = lv_session_attached(s);
    v->last_seen_ms = s->detached_wall_ms;
    v->answer_seq = s->answer_seq;
    v->n_answers = s->history_len;
    v->size_hint = s->persist_line ? s->persist_line->len : 0; /* a new entry or a changed counter:
                                                                 * about the same length */
    for (size_t i = 0; i < s->history_len; i++) {
        lv_history_entry_t *e = &s->history[history_slot(s, i)]; /* its cached form is filled in */
        lv_statefile_answer_t *a = &v->answers[i];
        *a = (lv_statefile_answer_t){.answer_id = e->answer_id, .wall_ms = e->wall_ms, .latency_ms = e->latency_ms,
                                     .text = e->text, .text_len = e->text_len};
        if (!e->json)
            history_cache(e, a);
        a->json = e->json;
        a->json_len = e->json_len;
    }
    int rc = lv_statefile_encode_session(v, &line);
    free(v); /* the texts and forms were borrowed */
    s->persist_dirty = false;
    lv_queue_remove(&s->dirty_link);
    if (rc)
        return rc;
    lv_statefile_line_unref(s->persist_line);
    s->persist_line = line;
    return 0;
}

int lv_registry_restore(lv_registry_t *reg, const lv_statefile_session_t *saved, uint64_t now_ms)
{
    int rc;
    if (lv_session_find(reg, saved->rec.id))
        return LV_EEXIST;
    if (reg->count >= reg->caps.max_sessions)
        return LV_ELIMIT;
    lv_session_t *s = session_alloc();
    if (!s)
        return LV_ENOMEM;
    s->rec = saved->rec;
    size_t first = saved->n_answers > LV_HISTORY_MAX ? saved->n_answers - LV_HISTORY_MAX : 0;
    for (size_t i = first; i < saved->n_answers; i++) {
        const lv_statefile_answer_t *a = &saved->answers[i];
        lv_session_history_add(s, a->answer_id, a->text ? a->text : "", a->text ? a->text_len : 0, a->latency_ms,
                               a->wall_ms);
        s->answer_seq = LV_MAX(s->answer_seq, a->answer_id);
    }
    /* new answers must not reuse an id the page already shows */
    s->answer_seq = LV_MAX(s->answer_seq, saved->answer_seq);
    uint64_t wall = lv_wall_ms();
    s->detached_wall_ms = wall > saved->age_ms ? wall - saved->age_ms : 0;
    /* the monotonic clock may have restarted with the machine: then the idle time counts from 1 */
    s->detached_since_ms = now_ms > saved->age_ms + 1 ? now_ms - saved->age_ms : 1;
    if ((rc = session_register(reg, s)) != 0)
        goto fail;
    if (s->rec.started)
        lv_session_set_started(reg, s, true, now_ms);
    lv_session_encode(s); /* its line is ready before the first write, whatever the encoding budget */
    return 0;
fail:
    session_free(s);
    return rc;
}

int lv_registry_snapshot(lv_registry_t *reg, bool force, size_t encode_budget_bytes, size_t max_bytes,
                         lv_statefile_snap_t *out)
{
    bool changed = force || reg->persist_removed;
    size_t spent = 0;
    principal_count_t *o = NULL;
    lv_session_t *s = walk_start(reg, reg->persist_next, &o);
    /* re-encode what changed, fairly: each call starts where the budget stopped the last one */
    for (size_t i = 0; i < reg->count; i++, s = session_after(reg, &o, s)) {
        if (!s->persist_dirty)
            continue;
        changed = true;
        if (spent >= encode_budget_bytes) {
            reg->persist_next = s;
            break;
        }
        if (lv_session_encode(s) == 0)
            spent += s->persist_line->len;
    }
    if (!changed)
        return LV_EAGAIN;
    reg->persist_removed = false;
    lv_queue_t *l, *q;
    LV_QUEUE_FOREACH(l, &reg->principal_order)
    {
        o = LV_CONTAINER_OF(l, principal_count_t, link);
        LV_QUEUE_FOREACH(q, &o->sessions)
        {
            s = LV_CONTAINER_OF(q, lv_session_t, principal_link);
            if (!s->persist_line)
                continue;
            if (out->bytes + s->persist_line->len > max_bytes) {
                out->skipped++;
                continue;
            }
            if (lv_statefile_snap_add(out, s->persist_line) != 0) {
                lv_statefile_snap_clear(out);
                reg->persist_removed = true; /* so the next call tries again */
                return LV_ENOMEM;
            }
        }
    }
    return 0;
}

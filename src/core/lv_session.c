/* lv_session.c - session registry, mailbox, history. */
#include "lv_session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lv_common.h"
#include "lv_rand.h"

#define NBUCKETS 4096
#define PRINCIPAL_BUCKETS 1024

typedef struct principal_count {
    struct principal_count *next;
    size_t count;
    size_t queued;              /* frames waiting plus credits outstanding (the pipeline's count) */
    lv_queue_t sessions;        /* lv_session_t.principal_link, in creation order */
    char principal[64];
} principal_count_t;

struct lv_registry {
    lv_store_t *store;
    lv_registry_caps_t caps;
    lv_session_t *buckets[NBUCKETS];
    principal_count_t *principals[PRINCIPAL_BUCKETS];
    size_t count;
    size_t sweep_bucket;        /* where the bounded sweep resumes */
    lv_queue_t started;
    void (*before_evict)(lv_session_t *s, void *ud);
    void *evict_ud;
    bool persist_removed;       /* a session went since the last snapshot */
    size_t persist_bucket;      /* where the snapshot's bounded re-encoding resumes */
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

static principal_count_t **principal_slot(lv_registry_t *reg, const char *principal)
{
    principal_count_t **pp = &reg->principals[lv_hash_str(principal) % PRINCIPAL_BUCKETS];
    while (*pp && strcmp((*pp)->principal, principal) != 0)
        pp = &(*pp)->next;
    return pp;
}

size_t lv_registry_principal_count(const lv_registry_t *reg, const char *principal)
{
    principal_count_t **pp = principal_slot((lv_registry_t *)reg, principal);
    return *pp ? (*pp)->count : 0;
}

static int principal_add(lv_registry_t *reg, const char *principal, int delta)
{
    principal_count_t **pp = principal_slot(reg, principal);
    principal_count_t *o = *pp;
    if (!o) {
        if (delta < 0)
            return 0;
        o = calloc(1, sizeof(*o));
        if (!o)
            return LV_ENOMEM;
        lv_queue_init(&o->sessions);
        snprintf(o->principal, sizeof(o->principal), "%s", principal);
        *pp = o;
    }
    if (delta < 0 && o->count > 0)
        o->count--;
    else if (delta > 0)
        o->count++;
    if (o->count == 0 && o->queued == 0) {
        *pp = o->next;
        free(o);
    }
    return 0;
}

int lv_registry_create(lv_store_t *store, const lv_registry_caps_t *caps, lv_registry_t **out)
{
    lv_registry_t *reg = calloc(1, sizeof(*reg));
    if (!reg)
        return LV_ENOMEM;
    reg->store = store;
    reg->caps = *caps;
    lv_queue_init(&reg->started);
    *out = reg;
    return 0;
}

static void session_free(lv_session_t *s)
{
    lv_frame_unref(s->pending);
    for (size_t i = 0; i < LV_HISTORY_MAX; i++)
        free(s->history[i].text);
    lv_statefile_line_unref(s->persist_line);
    free(s);
}

void lv_registry_destroy(lv_registry_t *reg)
{
    if (!reg)
        return;
    for (size_t i = 0; i < NBUCKETS; i++) {
        lv_session_t *s = reg->buckets[i];
        while (s) {
            lv_session_t *next = s->hash_next;
            session_free(s);
            s = next;
        }
    }
    for (size_t i = 0; i < PRINCIPAL_BUCKETS; i++) {
        principal_count_t *o = reg->principals[i];
        while (o) {
            principal_count_t *next = o->next;
            free(o);
            o = next;
        }
    }
    free(reg);
}

static lv_session_t **session_slot(lv_registry_t *reg, const char *id)
{
    lv_session_t **pp = &reg->buckets[lv_hash_str(id) % NBUCKETS];
    while (*pp && strcmp((*pp)->rec.id, id) != 0)
        pp = &(*pp)->hash_next;
    return pp;
}

lv_session_t *lv_session_find(lv_registry_t *reg, const char *id) { return *session_slot(reg, id); }

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
    principal_count_t **pp = principal_slot(reg, principal);
    principal_count_t *o = *pp;
    if (!o)
        return 0; /* no session of it is left: nothing of it can be waiting */
    if (delta < 0 && o->queued > 0)
        o->queued--;
    else if (delta > 0)
        o->queued++;
    size_t q = o->queued;
    if (o->count == 0 && o->queued == 0) {
        *pp = o->next;
        free(o);
    }
    return q;
}

size_t lv_registry_principal_live(const lv_registry_t *reg, const char *principal)
{
    principal_count_t **pp = principal_slot((lv_registry_t *)reg, principal);
    size_t live = 0;
    lv_queue_t *n;
    if (!*pp)
        return 0;
    LV_QUEUE_FOREACH(n, &(*pp)->sessions)
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

/* Take a session out of every registry structure and the store, and free it; *pp is its link in
 * its hash chain. */
static void session_remove(lv_registry_t *reg, lv_session_t **pp)
{
    lv_session_t *s = *pp;
    *pp = s->hash_next;
    if (lv_queue_linked(&s->started_link))
        lv_queue_remove(&s->started_link);
    if (lv_queue_linked(&s->principal_link))
        lv_queue_remove(&s->principal_link);
    reg->store->ops->remove(reg->store, s->rec.id, NULL, NULL);
    principal_add(reg, s->rec.principal, -1);
    reg->count--;
    reg->persist_removed = true;
    session_free(s);
}

/* Make room for one more session of principal by evicting its longest-detached session, if it has
 * one. The walk is bounded by the principal's session count, itself bounded by the per-principal cap. */
static int evict_oldest_detached(lv_registry_t *reg, const char *principal)
{
    principal_count_t *o = *principal_slot(reg, principal);
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
    session_remove(reg, session_slot(reg, oldest->rec.id));
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
    return s;
}

int lv_session_create(lv_registry_t *reg, const char *principal, const lv_settings_t *settings,
                      char secret_out[65], lv_session_t **out)
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
    s->rec.created_ms = lv_wall_ms();
    s->detached_wall_ms = s->rec.created_ms;
    s->persist_dirty = true;
    /* 128-bit id and 256-bit secret from the CSPRNG; a collision only retries */
    for (int tries = 0;; tries++) {
        if ((rc = lv_rand_hex(s->rec.id, sizeof(s->rec.id), LV_SESSION_ID_LEN / 2)) != 0)
            goto fail;
        if (!*session_slot(reg, s->rec.id))
            break;
        if (tries > 3) {
            rc = LV_EIO;
            goto fail;
        }
    }
    if ((rc = lv_rand_hex(secret_out, 65, 32)) != 0)
        goto fail;
    lv_secret_hash(secret_out, s->rec.secret_hash);
    if ((rc = store_create(reg, &s->rec)) != 0)
        goto fail;
    if ((rc = principal_add(reg, principal, +1)) != 0) {
        reg->store->ops->remove(reg->store, s->rec.id, NULL, NULL);
        goto fail;
    }
    lv_queue_insert_tail(&(*principal_slot(reg, principal))->sessions, &s->principal_link);
    lv_session_t **pp = session_slot(reg, s->rec.id);
    *pp = s;
    reg->count++;
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
    s->persist_dirty = true;
    /* the record is ours (s->rec); the store's copy follows, now or (networked) a little later */
    return reg->store->ops->save(reg->store, &s->rec, NULL, NULL);
}

void lv_session_set_started(lv_registry_t *reg, lv_session_t *s, bool started, uint64_t now_ms)
{
    s->rec.started = started;
    s->persist_dirty = true;
    if (started && !lv_queue_linked(&s->started_link)) {
        lv_queue_insert_tail(&reg->started, &s->started_link);
        s->next_credit_ms = now_ms;
        s->credit_outstanding = 0;
    } else if (!started && lv_queue_linked(&s->started_link)) {
        lv_queue_remove(&s->started_link);
        s->credit_outstanding = 0;
    }
}

lv_queue_t *lv_registry_started(lv_registry_t *reg) { return &reg->started; }

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
    if (len > LV_HISTORY_TEXT_MAX)
        len = LV_HISTORY_TEXT_MAX;
    e->text = malloc(len + 1);
    if (e->text) {
        memcpy(e->text, text, len);
        e->text[len] = '\0';
    }
    e->answer_id = answer_id;
    e->wall_ms = wall_ms;
    e->latency_ms = latency_ms;
    s->persist_dirty = true;
}

const lv_history_entry_t *lv_session_history_at(const lv_session_t *s, size_t i)
{
    if (i >= s->history_len)
        return NULL;
    return &s->history[(s->history_head + i) % LV_HISTORY_MAX];
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
    s->persist_dirty = true; /* attached or not decides what the state file says it was last seen */
}

size_t lv_registry_sweep(lv_registry_t *reg, uint64_t now_ms, uint64_t idle_ms, size_t max_examined,
                         void (*before_free)(lv_session_t *s, void *ud), void *ud)
{
    size_t removed = 0, examined = 0;
    for (size_t nb = 0; nb < NBUCKETS && examined < max_examined; nb++) {
        size_t b = reg->sweep_bucket;
        reg->sweep_bucket = (reg->sweep_bucket + 1) % NBUCKETS;
        lv_session_t **pp = &reg->buckets[b];
        while (*pp) {
            lv_session_t *s = *pp;
            examined++;
            if (!lv_session_attached(s) && s->detached_since_ms && now_ms - s->detached_since_ms >= idle_ms) {
                if (before_free)
                    before_free(s, ud);
                session_remove(reg, pp);
                removed++;
            } else {
                pp = &s->hash_next;
            }
        }
    }
    return removed;
}

size_t lv_registry_count(const lv_registry_t *reg) { return reg->count; }

/* ---------- the state file (lv_statefile.h) ---------- */

_Static_assert(LV_HISTORY_MAX <= LV_STATEFILE_ANSWERS_MAX, "the state file must hold a whole history");
_Static_assert(LV_HISTORY_TEXT_MAX <= LV_STATEFILE_TEXT_MAX, "the state file must hold whole answers");

/* Replace the session's saved line with its current state. On failure the previous line stays
 * (a session that cannot be encoded is not retried every period: it waits for its next change). */
static int session_encode(lv_session_t *s)
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
    for (size_t i = 0; i < s->history_len; i++) {
        const lv_history_entry_t *e = lv_session_history_at(s, i);
        v->answers[i] = (lv_statefile_answer_t){e->answer_id, e->wall_ms, e->latency_ms, e->text,
                                                e->text ? strlen(e->text) : 0};
    }
    int rc = lv_statefile_encode_session(v, &line);
    free(v); /* the texts were borrowed */
    s->persist_dirty = false;
    if (rc)
        return rc;
    lv_statefile_line_unref(s->persist_line);
    s->persist_line = line;
    return 0;
}

int lv_registry_restore(lv_registry_t *reg, const lv_statefile_session_t *saved, uint64_t now_ms)
{
    int rc;
    if (*session_slot(reg, saved->rec.id))
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
    if ((rc = store_create(reg, &s->rec)) != 0)
        goto fail;
    if ((rc = principal_add(reg, s->rec.principal, +1)) != 0) {
        reg->store->ops->remove(reg->store, s->rec.id, NULL, NULL);
        goto fail;
    }
    lv_queue_insert_tail(&(*principal_slot(reg, s->rec.principal))->sessions, &s->principal_link);
    *session_slot(reg, s->rec.id) = s;
    reg->count++;
    if (s->rec.started)
        lv_session_set_started(reg, s, true, now_ms);
    session_encode(s); /* its line is ready before the first write, whatever the encoding budget */
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
    /* re-encode what changed, fairly: each call starts where the budget stopped the last one */
    for (size_t i = 0; i < NBUCKETS; i++) {
        size_t b = (reg->persist_bucket + i) % NBUCKETS;
        for (lv_session_t *s = reg->buckets[b]; s; s = s->hash_next) {
            if (!s->persist_dirty)
                continue;
            changed = true;
            if (spent >= encode_budget_bytes) {
                reg->persist_bucket = b;
                goto collect;
            }
            if (session_encode(s) == 0)
                spent += s->persist_line->len;
        }
    }
collect:
    if (!changed)
        return LV_EAGAIN;
    reg->persist_removed = false;
    for (size_t b = 0; b < NBUCKETS; b++) {
        for (lv_session_t *s = reg->buckets[b]; s; s = s->hash_next) {
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

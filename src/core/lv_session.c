/* lv_session.c - session registry, mailbox, history. */
#include "lv_session.h"

#include <stdlib.h>
#include <string.h>

#include "lv_common.h"
#include "lv_rand.h"

#define NBUCKETS 4096
#define OWNER_BUCKETS 1024

typedef struct owner_count {
    struct owner_count *next;
    size_t count;
    char owner[64];
} owner_count_t;

struct lv_registry {
    lv_store_t *store;
    lv_registry_caps_t caps;
    lv_session_t *buckets[NBUCKETS];
    owner_count_t *owners[OWNER_BUCKETS];
    size_t count;
    size_t sweep_bucket;        /* where the bounded sweep resumes */
    lv_queue_t started;
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

static owner_count_t **owner_slot(lv_registry_t *reg, const char *owner)
{
    owner_count_t **pp = &reg->owners[lv_hash_str(owner) % OWNER_BUCKETS];
    while (*pp && strcmp((*pp)->owner, owner) != 0)
        pp = &(*pp)->next;
    return pp;
}

size_t lv_registry_owner_count(const lv_registry_t *reg, const char *owner)
{
    owner_count_t **pp = owner_slot((lv_registry_t *)reg, owner);
    return *pp ? (*pp)->count : 0;
}

static int owner_add(lv_registry_t *reg, const char *owner, int delta)
{
    owner_count_t **pp = owner_slot(reg, owner);
    owner_count_t *o = *pp;
    if (!o) {
        if (delta < 0)
            return 0;
        o = calloc(1, sizeof(*o));
        if (!o)
            return LV_ENOMEM;
        snprintf(o->owner, sizeof(o->owner), "%s", owner);
        *pp = o;
    }
    if (delta < 0 && o->count > 0)
        o->count--;
    else if (delta > 0)
        o->count++;
    if (o->count == 0) {
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
    for (size_t i = 0; i < OWNER_BUCKETS; i++) {
        owner_count_t *o = reg->owners[i];
        while (o) {
            owner_count_t *next = o->next;
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

int lv_session_create(lv_registry_t *reg, const char *owner, const lv_settings_t *settings,
                      char secret_out[65], lv_session_t **out)
{
    int rc;
    if (reg->count >= reg->caps.max_sessions ||
        lv_registry_owner_count(reg, owner) >= reg->caps.max_sessions_per_owner)
        return LV_ELIMIT;
    lv_session_t *s = calloc(1, sizeof(*s));
    if (!s)
        return LV_ENOMEM;
    lv_queue_init(&s->conns);
    lv_drr_node_init(&s->drr);
    lv_queue_init(&s->started_link);
    if (settings)
        s->rec.settings = *settings;
    else
        lv_settings_defaults(&s->rec.settings);
    snprintf(s->rec.owner, sizeof(s->rec.owner), "%s", owner);
    s->rec.created_ms = lv_wall_ms();
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
    lv_store_hash_secret(secret_out, s->rec.secret_hash);
    if ((rc = reg->store->ops->create(reg->store, &s->rec)) != 0)
        goto fail;
    if ((rc = owner_add(reg, owner, +1)) != 0) {
        reg->store->ops->remove(reg->store, s->rec.id);
        goto fail;
    }
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
    lv_session_rec_t rec;
    char hash[LV_SECRET_HASH_LEN + 1];
    /* the store is the authority: a record may exist there without a local object */
    if (reg->store->ops->load(reg->store, id, &rec) != 0)
        return LV_ENOTFOUND;
    lv_store_hash_secret(secret, hash);
    if (!lv_secure_equal(hash, strlen(hash), rec.secret_hash, strlen(rec.secret_hash)))
        return LV_ENOTFOUND;
    lv_session_t *s = lv_session_find(reg, id);
    if (!s)
        return LV_ENOTFOUND; /* known to the store but not here: cluster mode will adopt it */
    *out = s;
    return 0;
}

int lv_session_save(lv_registry_t *reg, lv_session_t *s) { return reg->store->ops->save(reg->store, &s->rec); }

void lv_session_set_started(lv_registry_t *reg, lv_session_t *s, bool started, uint64_t now_ms)
{
    s->rec.started = started;
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
}

const lv_history_entry_t *lv_session_history_at(const lv_session_t *s, size_t i)
{
    if (i >= s->history_len)
        return NULL;
    return &s->history[(s->history_head + i) % LV_HISTORY_MAX];
}

void lv_session_attach_changed(lv_session_t *s, uint64_t now_ms)
{
    if (s->n_conns == 0) {
        if (s->detached_since_ms == 0)
            s->detached_since_ms = now_ms ? now_ms : 1;
    } else {
        s->detached_since_ms = 0;
    }
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
            if (s->n_conns == 0 && s->detached_since_ms && now_ms - s->detached_since_ms >= idle_ms) {
                if (before_free)
                    before_free(s, ud);
                *pp = s->hash_next;
                if (lv_queue_linked(&s->started_link))
                    lv_queue_remove(&s->started_link);
                reg->store->ops->remove(reg->store, s->rec.id);
                owner_add(reg, s->rec.owner, -1);
                reg->count--;
                session_free(s);
                removed++;
            } else {
                pp = &s->hash_next;
            }
        }
    }
    return removed;
}

size_t lv_registry_count(const lv_registry_t *reg) { return reg->count; }

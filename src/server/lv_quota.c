/* lv_quota.c - per-user and per-tenant quota counters and their checks (lv_quota.h). */
#include "lv_quota.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lv_accounts.h"
#include "lv_app.h"
#include "lv_common.h"
#include "lv_hmap.h"
#include "lv_log.h"
#include "lv_session.h"
#include "lv_usage.h"

#define MINUTE_MS 60000
#define DAY_MS 86400000

enum { SEED_NONE = 0, SEED_PENDING, SEED_DONE };

/* The counters of one user ("u" + user id / principal key) or tenant ("t" + id). */
typedef struct {
    lv_hmap_node_t node;
    char key[LV_PRINCIPAL_KEY_MAX + 2];
    bool tenant;
    int64_t minute, frames;      /* frames in wall-clock minute `minute` */
    int64_t day, answers, tokens; /* since UTC midnight of day `day` */
    int seed;
    uint64_t seed_ms;            /* monotonic: when the pending seed was asked for */
    uint64_t active_ms;          /* monotonic: the last charge or check */
} counter_t;

/* A session already told of a refusal, until it renews. */
typedef struct {
    lv_hmap_node_t node;
    char session_id[48];
    char quota[16];
    int64_t renews_ms;
} told_t;

struct lv_quota {
    lv_app_t *app;
    lv_hmap_t counters, told;
    uv_timer_t sweep;
    bool full_logged;
    size_t seeds;                /* seed jobs queued: the counters they point at stay until done */
    bool stopping, closed;
};

static void quota_free(struct lv_quota *q);

typedef struct {
    struct lv_quota *q;
    counter_t *c;                /* kept in the table while its seed is pending */
    char tenant[LV_ACCT_ID_MAX], user_id[LV_ACCT_ID_MAX];
    int64_t day, answers, tokens;
} seed_job_t;

const char *lv_quota_user_of(const char *principal)
{
    return strncmp(principal, "u:", 2) == 0 ? principal + 2 : principal;
}

static int64_t wall_ms(void) { return (int64_t)lv_wall_ms(); }

/* ---------- seeding (database thread, then the loop) ---------- */

static int seed_work(lv_db_t *db, void *ud)
{
    seed_job_t *sj = ud;
    return lv_acct_db_usage_sum(db, sj->tenant, sj->user_id, sj->day * DAY_MS, &sj->answers, &sj->tokens);
}

static void seed_done(int rc, void *ud)
{
    seed_job_t *sj = ud;
    counter_t *c = sj->c;
    struct lv_quota *q = sj->q;
    q->seeds--;
    if (q->stopping) {
        free(sj);
        if (q->closed && q->seeds == 0)
            quota_free(q);
        return;
    }
    if (rc) {
        LV_WARN("quota: could not read today's usage of %s %s (%s); it is counted from now and read again later",
                c->tenant ? "tenant" : "user", c->key + 1, lv_strerror(rc));
        c->seed = SEED_NONE;
    } else {
        c->seed = SEED_DONE;
        if (c->day == sj->day) { /* what this process charged since the record was made comes on top */
            c->answers += sj->answers;
            c->tokens += sj->tokens;
        }
    }
    free(sj);
}

static void seed(struct lv_quota *q, counter_t *c)
{
    lv_app_t *app = q->app;
    if (!app->db || c->seed != SEED_NONE)
        return;
    seed_job_t *sj = calloc(1, sizeof(*sj));
    if (!sj)
        return;
    sj->q = q;
    sj->c = c;
    sj->day = c->day;
    if (c->tenant)
        snprintf(sj->tenant, sizeof(sj->tenant), "%s", c->key + 1);
    else
        snprintf(sj->user_id, sizeof(sj->user_id), "%s", lv_quota_user_of(c->key + 1));
    /* the journal's tail first: jobs run in order, so the sum sees every answer journaled before
     * this record existed, and none charged to it since */
    lv_usage_flush(app);
    if (lv_db_submit(app->db, seed_work, seed_done, sj) != 0) {
        free(sj); /* the queue is full: tried again at its next check */
        return;
    }
    q->seeds++;
    c->seed = SEED_PENDING;
    c->seed_ms = lv_now_ms();
}

/* ---------- counters ---------- */

static void roll(counter_t *c, int64_t now)
{
    if (c->minute != now / MINUTE_MS) {
        c->minute = now / MINUTE_MS;
        c->frames = 0;
    }
    if (c->day != now / DAY_MS) {
        c->day = now / DAY_MS;
        c->answers = c->tokens = 0;
        /* a new day starts at zero: nothing to read (a seed still pending for the old day is
         * ignored when it lands: seed_done compares the day) */
    }
}

/* The counter of a user (key = principal) or tenant; made (and seeded) when create. */
static counter_t *counter(struct lv_quota *q, bool tenant, const char *id, bool create)
{
    char key[LV_PRINCIPAL_KEY_MAX + 2];
    snprintf(key, sizeof(key), "%c%s", tenant ? 't' : 'u', id);
    lv_hmap_node_t *n = lv_hmap_find_str(&q->counters, key);
    counter_t *c = n ? LV_CONTAINER_OF(n, counter_t, node) : NULL;
    int64_t now = wall_ms();
    if (!c && create) {
        c = calloc(1, sizeof(*c));
        if (!c)
            return NULL;
        snprintf(c->key, sizeof(c->key), "%s", key);
        c->tenant = tenant;
        c->minute = now / MINUTE_MS;
        c->day = now / DAY_MS;
        if (lv_hmap_insert_str(&q->counters, &c->node, c->key) != 0) {
            if (!q->full_logged)
                LV_WARN("quota: %d users and tenants active at once; the ones past that are not limited",
                        LV_QUOTA_MAX_RECORDS);
            q->full_logged = true;
            free(c);
            return NULL;
        }
    }
    if (!c)
        return NULL;
    roll(c, now);
    c->active_ms = lv_now_ms();
    if (c->seed == SEED_NONE)
        seed(q, c);
    return c;
}

/* The limits of the principal and of its tenant from the snapshot; false without accounts. */
static bool limits(lv_app_t *app, const char *principal, const char *tenant, lv_quota_t *user, lv_quota_t *ten)
{
    lv_acct_snap_t *snap = app->accts ? lv_accounts_snap(app) : NULL;
    memset(user, 0, sizeof(*user));
    memset(ten, 0, sizeof(*ten));
    if (!snap)
        return false;
    const lv_user_t *u = strncmp(principal, "u:", 2) == 0 ? lv_acct_snap_user(snap, principal + 2) : NULL;
    const lv_tenant_t *t = tenant && tenant[0] ? lv_acct_snap_tenant(snap, tenant) : NULL;
    if (u)
        *user = u->quota;
    if (t)
        *ten = t->quota;
    return true;
}

static bool any(const lv_quota_t *l) { return l->fpm > 0 || l->answers_day > 0 || l->tokens_day > 0; }

static void fill(lv_quota_over_t *why, bool tenant, const char *quota, int64_t limit, int64_t used, int64_t renews)
{
    int64_t now = wall_ms();
    why->hold = false;
    why->scope = tenant ? "tenant" : "user";
    why->quota = quota;
    why->limit = limit;
    why->used = used;
    why->renews_ms = renews;
    why->retry_after_s = renews > now ? (int)((renews - now + 999) / 1000) : 1;
    if (why->retry_after_s < 1)
        why->retry_after_s = 1;
}

#define SEED_HOLD_MS 2000 /* credits wait this long at most for a record's seed (a few ms normally) */

static bool check(counter_t *c, const lv_quota_t *l, lv_quota_over_t *why)
{
    if (!c)
        return false;
    if ((l->answers_day > 0 || l->tokens_day > 0) && c->seed == SEED_PENDING &&
        lv_now_ms() - c->seed_ms < SEED_HOLD_MS) {
        /* today's count is being read: a credit now could pass a quota already spent (a restart) */
        memset(why, 0, sizeof(*why));
        why->hold = true;
        why->scope = c->tenant ? "tenant" : "user";
        why->quota = "answers_day";
        return true;
    }
    if (l->fpm > 0 && c->frames >= l->fpm) {
        fill(why, c->tenant, "fpm", l->fpm, c->frames, (c->minute + 1) * MINUTE_MS);
        return true;
    }
    if (l->answers_day > 0 && c->answers >= l->answers_day) {
        fill(why, c->tenant, "answers_day", l->answers_day, c->answers, (c->day + 1) * DAY_MS);
        return true;
    }
    if (l->tokens_day > 0 && c->tokens >= l->tokens_day) {
        fill(why, c->tenant, "tokens_day", l->tokens_day, c->tokens, (c->day + 1) * DAY_MS);
        return true;
    }
    return false;
}

bool lv_quota_over(lv_app_t *app, const char *principal, const char *tenant, lv_quota_over_t *why)
{
    struct lv_quota *q = app->quota;
    lv_quota_t ul, tl;
    if (!q || !limits(app, principal, tenant, &ul, &tl))
        return false;
    /* records are made for limited principals only: an unlimited one costs nothing here */
    if (any(&ul) && check(counter(q, false, principal, true), &ul, why))
        return true;
    return any(&tl) && check(counter(q, true, tenant, true), &tl, why);
}

void lv_quota_frame(lv_app_t *app, const char *principal, const char *tenant)
{
    struct lv_quota *q = app->quota;
    lv_quota_t ul, tl;
    if (!q || !limits(app, principal, tenant, &ul, &tl))
        return;
    counter_t *c = any(&ul) ? counter(q, false, principal, true) : NULL;
    if (c)
        c->frames++;
    c = any(&tl) ? counter(q, true, tenant, true) : NULL;
    if (c)
        c->frames++;
}

void lv_quota_answer(lv_app_t *app, const char *principal, const char *tenant, int64_t tokens, bool answered)
{
    struct lv_quota *q = app->quota;
    lv_quota_t ul, tl;
    if (!q || !limits(app, principal, tenant, &ul, &tl))
        return;
    counter_t *cs[2] = {any(&ul) ? counter(q, false, principal, true) : NULL,
                        any(&tl) ? counter(q, true, tenant, true) : NULL};
    for (int i = 0; i < 2; i++) {
        if (!cs[i])
            continue;
        cs[i]->tokens += tokens > 0 ? tokens : 0;
        cs[i]->answers += answered ? 1 : 0;
    }
}

typedef struct {
    lv_app_t *app;
    const char *tenant;
    int64_t live;
} tenant_live_t;

static int add_live(const lv_user_t *u, void *ud)
{
    tenant_live_t *tl = ud;
    char key[LV_PRINCIPAL_KEY_MAX];
    if (strcmp(u->tenant, tl->tenant) != 0)
        return 0;
    snprintf(key, sizeof(key), "u:%s", u->id);
    tl->live += (int64_t)lv_registry_principal_live(tl->app->reg, key);
    return 0;
}

bool lv_quota_sessions_over(lv_app_t *app, const lv_principal_t *who, lv_quota_over_t *why)
{
    lv_quota_t ul, tl;
    if (!app->quota || !limits(app, who->key, who->tenant, &ul, &tl))
        return false;
    if (ul.sessions > 0) {
        int64_t live = (int64_t)lv_registry_principal_live(app->reg, who->key);
        if (live >= ul.sessions) {
            fill(why, false, "sessions", ul.sessions, live, 0);
            return true;
        }
    }
    if (tl.sessions > 0) {
        /* a walk over the snapshot's users: only at a hello, and only for a tenant with a cap */
        tenant_live_t t = {app, who->tenant, 0};
        lv_acct_snap_each_user(lv_accounts_snap(app), add_live, &t);
        if (t.live >= tl.sessions) {
            fill(why, true, "sessions", tl.sessions, t.live, 0);
            return true;
        }
    }
    return false;
}

bool lv_quota_tell_once(lv_app_t *app, const char *session_id, const lv_quota_over_t *why)
{
    struct lv_quota *q = app->quota;
    if (!q)
        return false;
    lv_hmap_node_t *n = lv_hmap_find_str(&q->told, session_id);
    told_t *t = n ? LV_CONTAINER_OF(n, told_t, node) : NULL;
    if (t && t->renews_ms == why->renews_ms && strcmp(t->quota, why->quota) == 0)
        return false;
    if (!t) {
        t = calloc(1, sizeof(*t));
        if (!t)
            return false;
        snprintf(t->session_id, sizeof(t->session_id), "%s", session_id);
        if (lv_hmap_insert_str(&q->told, &t->node, t->session_id) != 0) {
            free(t);
            return false; /* at the cap (as many as sessions): not told rather than told every tick */
        }
    }
    snprintf(t->quota, sizeof(t->quota), "%s", why->quota);
    t->renews_ms = why->renews_ms;
    return true;
}

json_t *lv_quota_over_json(const lv_quota_over_t *why)
{
    char iso[32] = "";
    if (why->renews_ms > 0) {
        time_t t = (time_t)(why->renews_ms / 1000);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(iso, sizeof(iso), "%Y-%m-%dT%H:%M:%SZ", &tm);
    }
    return json_pack("{s:s, s:s, s:I, s:I, s:o, s:i}", "scope", why->scope, "quota", why->quota, "limit",
                     (json_int_t)why->limit, "used", (json_int_t)why->used, "renews_at",
                     iso[0] ? json_string(iso) : json_null(), "retry_after_s", why->retry_after_s);
}

void lv_quota_sentence(const lv_quota_over_t *why, char *out, size_t size)
{
    const char *what = strcmp(why->quota, "fpm") == 0           ? "frames per minute"
                       : strcmp(why->quota, "answers_day") == 0 ? "answers per day"
                       : strcmp(why->quota, "tokens_day") == 0  ? "tokens per day"
                                                                : "live sessions";
    if (why->renews_ms > 0)
        snprintf(out, size, "Quota reached: %s of this %s (%" PRId64 "/%" PRId64 "); it renews in %d s", what,
                 why->scope, why->used, why->limit, why->retry_after_s);
    else
        snprintf(out, size, "Quota reached: %s of this %s (%" PRId64 "/%" PRId64 "); close another session first",
                 what, why->scope, why->used, why->limit);
}

/* ---------- lifetime ---------- */

static void on_sweep(uv_timer_t *t)
{
    struct lv_quota *q = t->data;
    uint64_t now = lv_now_ms();
    int64_t wall = wall_ms();
    lv_hmap_iter_t it;
    lv_hmap_node_t *n;
    lv_hmap_iter_init(&q->counters, &it);
    while ((n = lv_hmap_iter_next(&q->counters, &it)) != NULL) {
        counter_t *c = LV_CONTAINER_OF(n, counter_t, node);
        if (c->seed != SEED_PENDING && now - c->active_ms > LV_QUOTA_IDLE_MS) {
            lv_hmap_remove(&q->counters, n);
            free(c);
        }
    }
    lv_hmap_iter_init(&q->told, &it);
    while ((n = lv_hmap_iter_next(&q->told, &it)) != NULL) {
        told_t *tt = LV_CONTAINER_OF(n, told_t, node);
        if (tt->renews_ms <= wall) { /* sessions quotas (renews 0) are told again at the next hello */
            lv_hmap_remove(&q->told, n);
            free(tt);
        }
    }
}

int lv_quota_start(lv_app_t *app)
{
    struct lv_quota *q = calloc(1, sizeof(*q));
    if (!q)
        return LV_ENOMEM;
    if (lv_hmap_init(&q->counters, LV_QUOTA_MAX_RECORDS) != 0 || lv_hmap_init(&q->told, LV_QUOTA_MAX_RECORDS) != 0) {
        free(q);
        return LV_EIO;
    }
    q->app = app;
    uv_timer_init(app->loop, &q->sweep);
    q->sweep.data = q;
    uv_timer_start(&q->sweep, on_sweep, LV_QUOTA_SWEEP_MS, LV_QUOTA_SWEEP_MS);
    app->quota = q;
    return 0;
}

static void free_table(lv_hmap_t *m, size_t off)
{
    lv_hmap_iter_t it;
    lv_hmap_node_t *n;
    lv_hmap_iter_init(m, &it);
    while ((n = lv_hmap_iter_next(m, &it)) != NULL) {
        lv_hmap_remove(m, n);
        free((char *)n - off);
    }
    lv_hmap_free(m);
}

static void quota_free(struct lv_quota *q)
{
    free_table(&q->counters, offsetof(counter_t, node));
    free_table(&q->told, offsetof(told_t, node));
    free(q);
}

static void on_closed(uv_handle_t *h)
{
    struct lv_quota *q = h->data;
    q->closed = true;
    if (q->seeds == 0)
        quota_free(q);
}

void lv_quota_stop(lv_app_t *app)
{
    struct lv_quota *q = app->quota;
    if (!q)
        return;
    app->quota = NULL;
    q->stopping = true; /* seed jobs still queued end without touching the counters */
    uv_timer_stop(&q->sweep);
    uv_close((uv_handle_t *)&q->sweep, on_closed);
}

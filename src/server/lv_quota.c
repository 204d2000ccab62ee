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
#include "lv_cluster.h"
#include "lv_common.h"
#include "lv_hmap.h"
#include "lv_log.h"
#include "lv_session.h"
#include "lv_usage.h"

#define MINUTE_MS 60000
#define DAY_MS 86400000
#define MINUTE_KEY_TTL_MS 120000   /* a minute's key outlives its minute, then goes */
#define DAY_KEY_GRACE_MS 600000    /* a day's key lives this long past its UTC midnight */
#define SYNC_ACTIVE_MS 5000        /* a counter used this recently has its cluster totals re-read */
#define SYNC_EAGER_TENTHS 8        /* past 8/10 of a limit each charge is sent at once */

enum { SEED_NONE = 0, SEED_PENDING, SEED_DONE };

struct lv_quota;
struct counter;

/* Cluster mode: one counted quantity's exchange with Redis (lv:qt:..., INCRBY), as the cluster's
 * --user-fpm does it (lv_cluster.c): the local figure is the cluster-wide total the last reply
 * gave plus what this frontend counted since (sending + unflushed). One INCRBY in flight each. */
typedef struct {
    int64_t unflushed;           /* counted here, not yet sent */
    int64_t sending;             /* in the INCRBY in flight */
    int64_t sent_window;         /* the window (minute or day) the one in flight counts in */
    int64_t expiry_window;       /* window + 1 whose key was given its TTL (one PEXPIRE per key) */
    bool in_flight;
    bool nx_pending;             /* day keys: the database's sum goes first (SET NX) */
    int64_t nx_value;
    struct counter *c;           /* the owner (the reply's ud is the sync_t) */
    int kind;                    /* LV_QUOTA_FPM ... */
} sync_t;

/* The counters of one user ("u" + user id / principal key) or tenant ("t" + id). */
typedef struct counter {
    lv_hmap_node_t node;
    struct lv_quota *q;
    char key[LV_PRINCIPAL_KEY_MAX + 2];
    bool tenant;
    int64_t minute, frames;      /* frames in wall-clock minute `minute` */
    int64_t day, answers, tokens; /* since UTC midnight of day `day` */
    int seed;
    uint64_t seed_ms;            /* monotonic: when the pending seed was asked for */
    uint64_t active_ms;          /* monotonic: the last charge or check */
    sync_t sy[LV_QUOTA_KINDS];   /* cluster mode; a counter is freed only with none in flight */
    bool day_synced;             /* cluster mode: a day total came back from Redis */
    uint64_t made_ms;            /* monotonic */
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
    size_t replies;              /* Redis replies pending (cluster): q stays until they came */
    size_t n_fe;                 /* live frontends, for each one's share of what is left */
    bool down_logged;            /* "Redis unreachable: counting locally" said (once per outage) */
    bool stopping, closed;
};

static void quota_free(struct lv_quota *q);
static void sync_send(struct lv_quota *q, counter_t *c, int kind);

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

static const char *const kind_names[LV_QUOTA_KINDS] = {"fpm", "ans", "tok"};

int64_t lv_quota_window(int kind, int64_t wall_ms)
{
    return wall_ms / (kind == LV_QUOTA_FPM ? MINUTE_MS : DAY_MS);
}

int lv_quota_redis_key(char *out, size_t size, bool tenant, const char *id, int kind, int64_t window)
{
    size_t n = id ? strlen(id) : 0;
    if (kind < 0 || kind >= LV_QUOTA_KINDS || n == 0 || n >= LV_PRINCIPAL_KEY_MAX || window < 0)
        return LV_EINVAL;
    /* a user's principal key already reads "u:<id>"; a tenant id gets "t:" */
    int len = snprintf(out, size, LV_QUOTA_KEY_PREFIX "%s%s:%s:%" PRId64, tenant ? "t:" : "", id, kind_names[kind],
                       window);
    return len < 0 || (size_t)len >= size ? LV_ELIMIT : len;
}

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
        if (q->closed && q->seeds == 0 && q->replies == 0)
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
            /* cluster: the day's key starts from the shared database's sum when no frontend has
             * made it yet (a new day's first record, a Redis that lost it); else Redis's count
             * holds (SET NX) and the next reply brings it */
            c->sy[LV_QUOTA_ANSWERS].nx_pending = c->sy[LV_QUOTA_TOKENS].nx_pending = true;
            c->sy[LV_QUOTA_ANSWERS].nx_value = sj->answers;
            c->sy[LV_QUOTA_TOKENS].nx_value = sj->tokens;
        }
    }
    free(sj);
    if (q->app->cluster) { /* day totals were held back while the seed was read */
        sync_send(q, c, LV_QUOTA_ANSWERS);
        sync_send(q, c, LV_QUOTA_TOKENS);
    }
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
        c->sy[LV_QUOTA_FPM].unflushed = 0; /* the old minute's: its key no longer matters */
    }
    if (c->day != now / DAY_MS) {
        c->day = now / DAY_MS;
        c->answers = c->tokens = 0;
        for (int k = LV_QUOTA_ANSWERS; k <= LV_QUOTA_TOKENS; k++) {
            c->sy[k].unflushed = 0;
            c->sy[k].nx_pending = false;
        }
        /* a new day starts at zero: nothing to read (a seed still pending for the old day is
         * ignored when it lands: seed_done compares the day) */
    }
}

/* ---------- cluster mode: the counters in Redis ---------- */

static int64_t *value_of(counter_t *c, int kind)
{
    return kind == LV_QUOTA_FPM ? &c->frames : kind == LV_QUOTA_ANSWERS ? &c->answers : &c->tokens;
}

static int64_t window_of(const counter_t *c, int kind) { return kind == LV_QUOTA_FPM ? c->minute : c->day; }

static void note_redis(struct lv_quota *q, bool up)
{
    if (!up && !q->down_logged)
        LV_WARN("quota: Redis unreachable: each frontend counts only its own traffic against the quotas until "
                "it is back");
    else if (up && q->down_logged)
        LV_INFO("quota: Redis answers again: quotas count cluster-wide");
    q->down_logged = !up;
}

static void sync_reply(void *ud, const redisReply *reply, const char *err)
{
    sync_t *y = ud;
    counter_t *c = y->c;
    struct lv_quota *q = c->q;
    (void)err;
    q->replies--;
    y->in_flight = false;
    if (q->stopping) {
        if (q->closed && q->replies == 0 && q->seeds == 0)
            quota_free(q);
        return;
    }
    roll(c, wall_ms());
    if (y->sent_window == window_of(c, y->kind)) {
        if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer >= 0) {
            /* the cluster's count, ours up to this send included; what was counted since on top */
            *value_of(c, y->kind) = (int64_t)reply->integer + y->unflushed;
            if (y->kind != LV_QUOTA_FPM)
                c->day_synced = true;
            note_redis(q, true);
        } else {
            y->unflushed += y->sending; /* not counted there: sent again next time */
        }
    }
    y->sending = 0;
}

/* INCRBY the counter's key for this window by what this frontend counted since (0: only read the
 * cluster's total); the reply sets the local figure. One in flight per counter and kind. Day
 * totals wait for the seed. Redis down: nothing is sent, the counts stay local (and go with the
 * next send once it is back). */
static void sync_send(struct lv_quota *q, counter_t *c, int kind)
{
    sync_t *y = &c->sy[kind];
    lv_cluster_t *cl = q->app->cluster;
    lv_redis_t *r = cl ? lv_cluster_redis(cl) : NULL;
    if (!cl || q->stopping || y->in_flight || (kind != LV_QUOTA_FPM && c->seed == SEED_PENDING))
        return;
    if (!r || !lv_cluster_up(cl)) {
        note_redis(q, false);
        return;
    }
    char key[sizeof(LV_QUOTA_KEY_PREFIX) + LV_PRINCIPAL_KEY_MAX + 48];
    int64_t window = window_of(c, kind), now = wall_ms();
    if (lv_quota_redis_key(key, sizeof(key), c->tenant, c->key + 1, kind, window) < 0)
        return;
    int64_t ttl_ms = kind == LV_QUOTA_FPM ? MINUTE_KEY_TTL_MS : (window + 1) * DAY_MS - now + DAY_KEY_GRACE_MS;
    if (y->nx_pending) {
        if (lv_redis_cmdf(r, NULL, NULL, "SET %s %lld NX PX %lld", key, (long long)y->nx_value,
                          (long long)ttl_ms) != 0)
            return;
        y->nx_pending = false;
    }
    if (lv_redis_cmdf(r, sync_reply, y, "INCRBY %s %lld", key, (long long)y->unflushed) != 0)
        return; /* too much pending: the counts stay here for the next send */
    q->replies++;
    y->in_flight = true;
    y->sending = y->unflushed;
    y->sent_window = window;
    y->unflushed = 0;
    /* the TTL once per key, not at every send (near a limit every charge is sent) */
    if (y->expiry_window != window + 1 &&
        lv_redis_cmdf(r, NULL, NULL, "PEXPIRE %s %lld", key, (long long)ttl_ms) == 0)
        y->expiry_window = window + 1; /* + 1: window 0 is a real one, the field starts at 0 */
}

/* n more of kind charged to c (local figure and, in a cluster, what is to be sent). Sent at once
 * when this frontend holds half its share of what is left of the limit (left / frontends / 2) or
 * the limit is 8/10 used, else with the next sweep's round (each second): the frontends together
 * pass a limit by what they count while a send is in flight, not by a second's worth. */
static void charge(struct lv_quota *q, counter_t *c, int kind, int64_t n, int64_t limit)
{
    int64_t *v = value_of(c, kind);
    *v += n;
    if (!q->app->cluster || n <= 0)
        return;
    sync_t *y = &c->sy[kind];
    y->unflushed += n;
    if (limit <= 0 || y->in_flight)
        return;
    int64_t left = limit > *v ? limit - *v : 0;
    int64_t share = left / (2 * (int64_t)LV_MAX(q->n_fe, (size_t)1));
    if (y->unflushed >= LV_MAX(share, (int64_t)1) || *v * 10 >= limit * SYNC_EAGER_TENTHS)
        sync_send(q, c, kind);
}

/* The counter of a user (key = principal) or tenant; made (and seeded) when create. */
static counter_t *counter(struct lv_quota *q, bool tenant, const char *id, bool create)
{
    char key[LV_PRINCIPAL_KEY_MAX + 2];
    snprintf(key, sizeof(key), "%c%s", tenant ? 't' : 'u', id);
    lv_hmap_node_t *n = lv_hmap_find_str(&q->counters, key);
    counter_t *c = n ? LV_CONTAINER_OF(n, counter_t, node) : NULL;
    int64_t now = wall_ms();
    bool made = false;
    if (!c && create) {
        made = true;
        c = calloc(1, sizeof(*c));
        if (!c)
            return NULL;
        snprintf(c->key, sizeof(c->key), "%s", key);
        c->q = q;
        c->tenant = tenant;
        c->made_ms = lv_now_ms();
        for (int k = 0; k < LV_QUOTA_KINDS; k++) {
            c->sy[k].c = c;
            c->sy[k].kind = k;
        }
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
    if (made) /* a new record: read the cluster's totals now (day ones after the seed) */
        for (int k = 0; k < LV_QUOTA_KINDS; k++)
            sync_send(q, c, k);
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

/* pending: the principal's (or tenant's) jobs in flight, each an answer that will be charged when
 * it ends. A credit granted while they run would let one more answer past the day's limit (the page
 * sends its next frame while the last answer streams), so they count as spent; no sentence then
 * (hold): the limit is told when the answers have really ended. */
static bool check(counter_t *c, const lv_quota_t *l, int64_t pending, lv_quota_over_t *why)
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
    if ((l->answers_day > 0 || l->tokens_day > 0) && c->q->app->cluster && !c->day_synced &&
        lv_cluster_up(c->q->app->cluster) && lv_now_ms() - c->made_ms < SEED_HOLD_MS) {
        /* cluster: the other frontends' count of today comes with the first reply (a few ms) */
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
    if (l->answers_day > 0 && pending > 0 && c->answers + pending >= l->answers_day) {
        memset(why, 0, sizeof(*why));
        why->hold = true;
        why->scope = c->tenant ? "tenant" : "user";
        why->quota = "answers_day";
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
    if (any(&ul) && check(counter(q, false, principal, true), &ul, lv_drr_user_inflight(&app->drr, principal), why))
        return true;
    return any(&tl) && check(counter(q, true, tenant, true), &tl, lv_drr_tenant_inflight(&app->drr, tenant), why);
}

void lv_quota_frame(lv_app_t *app, const char *principal, const char *tenant)
{
    struct lv_quota *q = app->quota;
    lv_quota_t ul, tl;
    if (!q || !limits(app, principal, tenant, &ul, &tl))
        return;
    counter_t *c = any(&ul) ? counter(q, false, principal, true) : NULL;
    if (c)
        charge(q, c, LV_QUOTA_FPM, 1, ul.fpm);
    c = any(&tl) ? counter(q, true, tenant, true) : NULL;
    if (c)
        charge(q, c, LV_QUOTA_FPM, 1, tl.fpm);
}

void lv_quota_answer(lv_app_t *app, const char *principal, const char *tenant, int64_t tokens, bool answered)
{
    struct lv_quota *q = app->quota;
    lv_quota_t ul, tl;
    if (!q || !limits(app, principal, tenant, &ul, &tl))
        return;
    counter_t *cs[2] = {any(&ul) ? counter(q, false, principal, true) : NULL,
                        any(&tl) ? counter(q, true, tenant, true) : NULL};
    const lv_quota_t *ls[2] = {&ul, &tl};
    for (int i = 0; i < 2; i++) {
        if (!cs[i])
            continue;
        charge(q, cs[i], LV_QUOTA_TOKENS, tokens > 0 ? tokens : 0, ls[i]->tokens_day);
        charge(q, cs[i], LV_QUOTA_ANSWERS, answered ? 1 : 0, ls[i]->answers_day);
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

void lv_quota_sessions_limits(lv_app_t *app, const char *principal, const char *tenant, int64_t *user_max,
                              int64_t *tenant_max)
{
    lv_quota_t ul, tl;
    *user_max = *tenant_max = 0;
    if (!app->quota || !limits(app, principal, tenant, &ul, &tl))
        return;
    *user_max = ul.sessions > 0 ? ul.sessions : 0;
    *tenant_max = tl.sessions > 0 ? tl.sessions : 0;
}

void lv_quota_sessions_refusal(lv_quota_over_t *why, bool tenant, int64_t limit, int64_t used)
{
    fill(why, tenant, "sessions", limit, used, 0);
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
    lv_cluster_t *cl = q->app->cluster;
    if (cl) {
        lv_cluster_fe_t fe[LV_CLUSTER_FRONTENDS_MAX];
        q->n_fe = lv_cluster_frontends(cl, fe, LV_ARRAY_LEN(fe));
    }
    lv_hmap_iter_init(&q->counters, &it);
    while ((n = lv_hmap_iter_next(&q->counters, &it)) != NULL) {
        counter_t *c = LV_CONTAINER_OF(n, counter_t, node);
        bool in_flight = false;
        for (int k = 0; k < LV_QUOTA_KINDS; k++)
            in_flight |= c->sy[k].in_flight;
        if (c->seed != SEED_PENDING && !in_flight && now - c->active_ms > LV_QUOTA_IDLE_MS) {
            lv_hmap_remove(&q->counters, n);
            free(c);
            continue;
        }
        /* cluster: this second's round: what was counted here goes out, and a counter in use
         * reads the others' counts back (INCRBY 0) */
        if (cl) {
            roll(c, wall);
            for (int k = 0; k < LV_QUOTA_KINDS; k++)
                if (c->sy[k].unflushed > 0 || now - c->active_ms < SYNC_ACTIVE_MS)
                    sync_send(q, c, k);
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
    if (q->seeds == 0 && q->replies == 0)
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

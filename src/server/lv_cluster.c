/* lv_cluster.c - `serve --redis URL`: this process as one frontend of a cluster (lv_cluster.h):
 * the Redis client and what hangs off it, the frontend heartbeat, cluster-wide --user-fpm. */
#include "lv_cluster.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lv_app.h"
#include "lv_cluster_queue.h"
#include "lv_cluster_sessions.h"
#include "lv_common.h"
#include "lv_dispatch_redis.h"
#include "lv_hmap.h"
#include "lv_log.h"
#include "lv_principal.h"
#include "lv_rand.h"
#include "lv_redisurl.h"
#include "lv_session.h"
#include "lv_stat.h"
#include "lv_worker.h"

#define FE_KEY LV_CQ_PREFIX "fe"
#define FPM_KEY_PREFIX LV_CQ_PREFIX "fpm:"
#define FPM_KEY_TTL_MS 120000        /* a minute's count outlives its minute, then goes */
#define FPM_ACTIVE_MS 5000           /* a principal asked about this recently has its total re-read */
#define FPM_IDLE_MS 60000            /* ... one untouched this long is forgotten */
#define FPM_EAGER_TENTHS 8           /* past 8/10 of its budget a principal's frames are sent one by one */
#define FE_SCAN_MAX 2048             /* lv:fe reply elements looked at per beat */
#define FE_FORGET_PER_BEAT 16        /* dead frontends' fields deleted per beat */
#define CLOSE_POLL_MS 10
#define UNREACHABLE_WARN_MS 3000     /* say so when Redis has not answered this long after start */

/* One principal's frames in the current minute. Allocated on its first use, freed by the minute
 * sweep once idle; never while a flush reply for it is pending (the reply's ud points at it). */
typedef struct {
    lv_hmap_node_t node;
    char key[LV_PRINCIPAL_KEY_MAX];
    uint64_t minute;          /* wall ms / 60000 the figures below count in */
    uint64_t total;           /* the cluster's count, as the last INCRBY reply said (ours included) */
    uint32_t unflushed;       /* counted here, not yet sent */
    uint32_t sending;         /* sent in the flush in flight, not yet in total */
    uint64_t sent_minute;     /* the minute the flush in flight counts in */
    uint64_t expiry_minute;   /* the minute whose key was given its TTL (one PEXPIRE per key) */
    bool in_flight;           /* a flush reply is pending: do not free */
    uint64_t used_ms;         /* monotonic: last asked or counted */
} fpm_entry_t;

struct lv_cluster {
    lv_app_t *app;
    char node_id[LV_NODE_ID_MAX + 1];
    char url_clean[LV_REDISURL_MAX + 1];
    char channel[sizeof(LV_CQ_EVENT_CHANNEL_PREFIX) + LV_NODE_ID_MAX];
    lv_redis_t *redis;
    lv_cq_scripts_t scripts;
    lv_dispatch_t *dispatch;
    lv_worker_t *worker;
    bool csess_started;
    uv_timer_t beat;           /* heartbeat + fpm flush; at stop, the wait for the last replies */
    bool beat_on;              /* initialised: needs a uv_close */
    bool stopping;
    uint64_t started_ms, stop_ms;
    bool ever_up, warned_unreachable;
    /* lv:fe read back */
    char nonce[17];            /* this process's mark on its heartbeat (random) */
    char foreign[64];          /* the last value of our field written by someone else */
    uint64_t duplicate_until_ms, duplicate_logged_ms; /* another live frontend has our node id */
    bool fe_pending;
    lv_cluster_fe_t fe[LV_CLUSTER_FRONTENDS_MAX];
    uint64_t fe_wall_ms[LV_CLUSTER_FRONTENDS_MAX]; /* each one's heartbeat time */
    size_t n_fe;
    /* --user-fpm */
    lv_hmap_t fpm;
    size_t fpm_pending;        /* a round is in flight (its closing PING unanswered): the next waits */
    uint64_t fpm_swept_minute;
    uint64_t fpm_full_logged_ms;
};

/* ---------- small helpers ---------- */

static uint64_t wall_minute(void) { return lv_wall_ms() / 60000u; }

static unsigned weight_of(void *ud, const char *user)
{
    lv_cluster_t *c = ud;
    const lv_config_t *cfg = &c->app->cfg;
    if (c->app->drr.quantum) /* the scheduler holds every weight (lv_fair_apply: accounts, --user-weight) */
        return (unsigned)lv_drr_weight(&c->app->drr, user);
    /* at most LV_MAX_USER_WEIGHTS (256) names, once per job: a scan is cheaper than the round
     * trip the job makes anyway */
    for (size_t i = 0; i < cfg->n_user_weights; i++)
        if (strcmp(cfg->user_weights[i].user, user) == 0)
            return (unsigned)cfg->user_weights[i].weight;
    return 1;
}

static unsigned tenant_weight_of(void *ud, const char *tenant)
{
    lv_cluster_t *c = ud;
    return (unsigned)lv_drr_tenant_weight(&c->app->drr, tenant); /* 1 before lv_fair_apply */
}

static void job_lost(void *ud, const char *reason)
{
    lv_cluster_t *c = ud;
    if (c->app->stat)
        lv_stat_cluster_lost(c->app, reason);
}

/* Frontend ids are ours ([A-Za-z0-9_-], lv_config_validate); lv:fe can be written by anyone with
 * the password, so a field is shown only when it looks like one (it becomes a metric label). */
static bool id_ok(const char *s, size_t len)
{
    if (len == 0 || len > LV_NODE_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
              ch == '-'))
            return false;
    }
    return true;
}

static bool parse_u64(const char **p, uint64_t *out)
{
    char *end;
    const char *s = *p;
    while (*s == ' ')
        s++;
    if (*s < '0' || *s > '9')
        return false;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return false;
    *out = v;
    *p = end;
    return true;
}

/* ---------- Redis up and down, messages ---------- */

static void on_beat(uv_timer_t *t);

static void on_state(void *ud, bool up)
{
    lv_cluster_t *c = ud;
    if (c->dispatch)
        lv_dispatch_redis_set_up(c->dispatch, up);
    if (c->csess_started)
        lv_csess_set_up(c->app, up);
    if (c->stopping)
        return;
    if (up) {
        LV_INFO("cluster: Redis at %s is reachable%s", c->url_clean, c->ever_up ? " again" : "");
        c->ever_up = true;
        /* heartbeat now, so lv:fe and the fpm totals are fresh at once */
        if (c->beat_on)
            uv_timer_start(&c->beat, on_beat, 0, LV_CLUSTER_BEAT_MS);
    } else {
        LV_WARN("cluster: lost Redis at %s: /readyz answers 503, new sessions are refused and frames wait until it "
                "is back (reconnecting)",
                c->url_clean);
    }
}

static void on_message(void *ud, const char *channel, const char *payload, size_t len)
{
    lv_cluster_t *c = ud;
    if (c->dispatch && strcmp(channel, c->channel) == 0)
        lv_dispatch_redis_on_message(c->dispatch, payload, len);
}

/* ---------- frontend heartbeat (lv:fe) ---------- */

/* Our own field as read back (before this beat's write): a value with another nonce that differs
 * from the last foreign one seen was written since by a live process using our node id. A
 * frontend that crashed and was restarted under the same id leaves one value behind, seen once at
 * most, which is not that. */
static void check_own_field(lv_cluster_t *c, const char *value, const char *nonce)
{
    while (*nonce == ' ')
        nonce++;
    if (strcmp(nonce, c->nonce) == 0)
        return; /* ours */
    char seen[sizeof(c->foreign)];
    snprintf(seen, sizeof(seen), "%s", value); /* its wall ms changes at each write */
    bool changed = c->foreign[0] && strcmp(seen, c->foreign) != 0;
    memcpy(c->foreign, seen, sizeof(seen));
    if (!changed)
        return;
    uint64_t now = lv_now_ms();
    c->duplicate_until_ms = now + LV_CLUSTER_FE_STALE_MS;
    if (!c->duplicate_logged_ms || now - c->duplicate_logged_ms >= 60000) {
        c->duplicate_logged_ms = now;
        LV_ERROR("cluster: another frontend runs with node id %s: their jobs, answers and sessions would mix "
                 "(an answer could reach another user's page). This one answers /readyz 503 while it lasts; "
                 "give each frontend its own --node-id, or none (a random one)",
                 c->node_id);
    }
}

static void fe_reply(void *ud, const redisReply *reply, const char *err)
{
    lv_cluster_t *c = ud;
    c->fe_pending = false;
    if (!reply || reply->type != REDIS_REPLY_ARRAY)
        return;
    uint64_t now = lv_wall_ms();
    size_t n = 0, forgotten = 0;
    size_t elements = LV_MIN(reply->elements, (size_t)FE_SCAN_MAX);
    for (size_t i = 0; i + 1 < elements; i += 2) {
        const redisReply *f = reply->element[i], *v = reply->element[i + 1];
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        const char *p = v->str;
        uint64_t sessions, sockets, wall;
        bool ok = parse_u64(&p, &sessions) && parse_u64(&p, &sockets) && parse_u64(&p, &wall);
        uint64_t age = ok && now > wall ? now - wall : 0;
        if (ok && strlen(c->node_id) == f->len && memcmp(c->node_id, f->str, f->len) == 0)
            check_own_field(c, v->str, p);
        if (!ok || age > LV_CLUSTER_FE_FORGET_MS) {
            /* a frontend that crashed or was scaled in: its field would stay forever */
            if (forgotten < FE_FORGET_PER_BEAT &&
                lv_redis_cmdf(c->redis, NULL, NULL, "HDEL %s %b", FE_KEY, f->str, f->len) == 0)
                forgotten++;
            continue;
        }
        if (age > LV_CLUSTER_FE_STALE_MS || !id_ok(f->str, f->len) || n >= LV_CLUSTER_FRONTENDS_MAX)
            continue;
        memcpy(c->fe[n].id, f->str, f->len);
        c->fe[n].id[f->len] = '\0';
        c->fe[n].sessions = (size_t)sessions;
        c->fe[n].sockets = (size_t)sockets;
        c->fe_wall_ms[n] = wall;
        n++;
    }
    c->n_fe = n;
}

/* Read lv:fe, then write our field: the read shows what others wrote since our last write. */
static void heartbeat(lv_cluster_t *c)
{
    char value[128];
    if (!c->fe_pending && lv_redis_cmdf(c->redis, fe_reply, c, "HGETALL %s", FE_KEY) == 0)
        c->fe_pending = true;
    snprintf(value, sizeof(value), "%zu %zu %llu %s", lv_registry_count(c->app->reg), c->app->n_conns,
             (unsigned long long)lv_wall_ms(), c->nonce);
    lv_redis_cmdf(c->redis, NULL, NULL, "HSET %s %s %s", FE_KEY, c->node_id, value);
}

/* ---------- --user-fpm, cluster-wide ---------- */

/* Entries count in one minute; the first use in a new one starts from zero (what is still being
 * sent belongs to the old minute, and its reply is ignored). */
static void fpm_roll(fpm_entry_t *e, uint64_t minute)
{
    if (e->minute == minute)
        return;
    e->minute = minute;
    e->total = 0;
    e->unflushed = 0;
}

static fpm_entry_t *fpm_get(lv_cluster_t *c, const char *principal)
{
    size_t len = strlen(principal);
    if (len == 0 || len >= LV_PRINCIPAL_KEY_MAX)
        return NULL;
    lv_hmap_node_t *n = lv_hmap_find(&c->fpm, principal, len);
    fpm_entry_t *e;
    if (n) {
        e = LV_CONTAINER_OF(n, fpm_entry_t, node);
    } else {
        e = calloc(1, sizeof(*e));
        if (!e)
            return NULL;
        memcpy(e->key, principal, len + 1);
        if (lv_hmap_insert(&c->fpm, &e->node, e->key, len) != 0) {
            free(e);
            uint64_t now = lv_now_ms();
            if (now - c->fpm_full_logged_ms >= 60000 || !c->fpm_full_logged_ms) {
                c->fpm_full_logged_ms = now;
                LV_WARN("cluster: --user-fpm counts %zu principals already: frames of new ones are not counted "
                        "until idle ones are forgotten",
                        lv_hmap_count(&c->fpm));
            }
            return NULL;
        }
        e->minute = wall_minute();
    }
    fpm_roll(e, wall_minute());
    e->used_ms = lv_now_ms();
    return e;
}

bool lv_cluster_fpm_allows(lv_cluster_t *c, const char *principal, unsigned fpm)
{
    if (!c || fpm == 0)
        return true;
    fpm_entry_t *e = fpm_get(c, principal);
    if (!e)
        return true;
    uint64_t sending = e->sent_minute == e->minute ? e->sending : 0;
    return e->total + sending + e->unflushed < fpm;
}

static int fpm_send(lv_cluster_t *c, fpm_entry_t *e, uint64_t minute);

void lv_cluster_fpm_count(lv_cluster_t *c, const char *principal)
{
    if (!c)
        return;
    fpm_entry_t *e = fpm_get(c, principal);
    if (!e || e->unflushed == UINT32_MAX)
        return;
    e->unflushed++;
    /* With counts sent once a second only, every frontend allows from a total up to a second old,
     * and together they would overshoot by a second of the principal's frames. So a frontend also
     * sends its count as soon as it holds half its share of what is left of the budget (left /
     * frontends / 2), and, past 8/10 of the budget, every frame: the counts held back across the
     * frontends stay within what is left, and each send brings a fresh total back. Far from the
     * budget the per-second rounds carry it all. */
    uint64_t fpm = (uint64_t)c->app->cfg.user_fpm;
    if (e->in_flight || fpm == 0)
        return;
    uint64_t used = e->total + e->unflushed, left = used < fpm ? fpm - used : 0;
    uint64_t share = left / (2 * LV_MAX(c->n_fe, (size_t)1));
    if (e->unflushed >= LV_MAX(share, (uint64_t)1) || used * 10 >= fpm * FPM_EAGER_TENTHS)
        fpm_send(c, e, e->minute);
}

uint64_t lv_cluster_fpm_retry_ms(const lv_cluster_t *c)
{
    return 60000u - lv_wall_ms() % 60000u;
}

static void fpm_reply(void *ud, const redisReply *reply, const char *err)
{
    fpm_entry_t *e = ud;
    e->in_flight = false;
    if (e->sent_minute == e->minute) {
        if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer >= 0)
            e->total = (uint64_t)reply->integer;
        else if (e->unflushed <= UINT32_MAX - e->sending)
            e->unflushed += e->sending; /* not counted there: send it again next time */
    }
    e->sending = 0;
}

/* INCRBY the principal's minute by what this frontend counted since (0: only read the total) and
 * keep the key FPM_KEY_TTL_MS; the reply sets the total. One in flight per principal. */
static int fpm_send(lv_cluster_t *c, fpm_entry_t *e, uint64_t minute)
{
    char key[sizeof(FPM_KEY_PREFIX) + LV_PRINCIPAL_KEY_MAX + 24];
    snprintf(key, sizeof(key), FPM_KEY_PREFIX "%s:%llu", e->key, (unsigned long long)minute);
    int rc = lv_redis_cmdf(c->redis, fpm_reply, e, "INCRBY %s %u", key, (unsigned)e->unflushed);
    if (rc)
        return rc;
    e->in_flight = true;
    e->sending = e->unflushed;
    e->sent_minute = minute;
    e->unflushed = 0;
    /* the key lives one minute: its TTL is set once, not at every send (past 8/10 of the budget a
     * send goes with every frame). A failed PEXPIRE is sent again with the next INCRBY. */
    if (e->expiry_minute != minute + 1 &&
        lv_redis_cmdf(c->redis, NULL, NULL, "PEXPIRE %s %d", key, FPM_KEY_TTL_MS) == 0)
        e->expiry_minute = minute + 1; /* + 1: minute 0 is a real minute, the field starts at 0 */
    return 0;
}

/* The reply of a flush round's last command: the round is over. Replies come in order on the one
 * command connection, so every INCRBY of the round has been answered by then. */
static void fpm_round_done(void *ud, const redisReply *reply, const char *err)
{
    lv_cluster_t *c = ud;
    c->fpm_pending = 0;
}

static void fpm_flush(lv_cluster_t *c)
{
    if (c->fpm_pending || lv_hmap_count(&c->fpm) == 0)
        return;
    uint64_t minute = wall_minute(), now = lv_now_ms();
    bool sweep = c->fpm_swept_minute != minute;
    lv_hmap_iter_t it;
    lv_hmap_node_t *n;
    size_t sent = 0;
    lv_hmap_iter_init(&c->fpm, &it);
    while ((n = lv_hmap_iter_next(&c->fpm, &it)) != NULL) {
        fpm_entry_t *e = LV_CONTAINER_OF(n, fpm_entry_t, node);
        fpm_roll(e, minute);
        if (sweep && !e->in_flight && e->unflushed == 0 && now - e->used_ms >= FPM_IDLE_MS) {
            lv_hmap_remove(&c->fpm, n);
            free(e);
            continue;
        }
        /* INCRBY 0 too, for a principal in use: other frontends' frames raise its total */
        if (e->in_flight || (e->unflushed == 0 && now - e->used_ms >= FPM_ACTIVE_MS))
            continue;
        if (fpm_send(c, e, minute) != 0)
            break; /* down, or too much pending: the counts stay here for the next round */
        sent++;
    }
    if (sweep)
        c->fpm_swept_minute = minute;
    /* a PING closes the round: pipelined behind the INCRBYs, its reply says they are all in */
    if (sent && lv_redis_cmdf(c->redis, fpm_round_done, c, "PING") == 0)
        c->fpm_pending = sent;
}

/* ---------- the beat ---------- */

static void on_beat(uv_timer_t *t)
{
    lv_cluster_t *c = t->data;
    if (!lv_redis_up(c->redis)) {
        if (!c->ever_up && !c->warned_unreachable && lv_now_ms() - c->started_ms >= UNREACHABLE_WARN_MS) {
            c->warned_unreachable = true;
            LV_WARN("cluster: cannot reach Redis at %s yet: /readyz answers 503 and new sessions are refused until "
                    "it answers (retrying)",
                    c->url_clean);
        }
        return;
    }
    heartbeat(c);
    fpm_flush(c);
}

/* ---------- start, stop, free ---------- */

static void free_fpm(lv_cluster_t *c)
{
    lv_hmap_iter_t it;
    lv_hmap_node_t *n;
    lv_hmap_iter_init(&c->fpm, &it);
    while ((n = lv_hmap_iter_next(&c->fpm, &it)) != NULL) {
        lv_hmap_remove(&c->fpm, n);
        free(LV_CONTAINER_OF(n, fpm_entry_t, node));
    }
    lv_hmap_free(&c->fpm);
}

int lv_cluster_start(lv_app_t *app)
{
    const lv_config_t *cfg = &app->cfg;
    lv_redisurl_t url;
    const char *why = NULL;
    int rc = 0;
    app->cluster = NULL;
    if (!cfg->redis_url[0])
        return 0;
    lv_cluster_t *c = calloc(1, sizeof(*c));
    if (!c)
        return LV_ENOMEM;
    c->app = app;
    c->started_ms = lv_now_ms();
    if (lv_hmap_init(&c->fpm, LV_CLUSTER_FPM_PRINCIPALS_MAX) != 0) {
        free(c);
        return LV_EIO;
    }
    if (cfg->node_id[0])
        snprintf(c->node_id, sizeof(c->node_id), "%s", cfg->node_id);
    else if ((rc = lv_rand_hex(c->node_id, sizeof(c->node_id), 6)) != 0) {
        LV_ERROR("cluster: no random bytes for a node id");
        goto fail;
    }
    if ((rc = lv_redisurl_parse(cfg->redis_url, &url, &why)) != 0) {
        LV_ERROR("--redis: %s", why ? why : "not a Redis URL");
        goto fail;
    }
    if ((rc = lv_rand_hex(c->nonce, sizeof(c->nonce), 8)) != 0)
        goto fail;
    lv_redisurl_clean(&url, c->url_clean, sizeof(c->url_clean));
    snprintf(c->channel, sizeof(c->channel), "%s%s", LV_CQ_EVENT_CHANNEL_PREFIX, c->node_id);

    char name[64];
    snprintf(name, sizeof(name), "frontend %s", c->node_id);
    lv_redis_cfg_t rcfg = {.name = name, .ud = c, .on_state = on_state, .on_message = on_message};
    if ((rc = lv_redis_create(app->loop, &url, &rcfg, &c->redis)) != 0) {
        LV_ERROR("cluster: cannot create the Redis client (%s)", lv_strerror(rc));
        goto fail;
    }
    memset(&url, 0, sizeof(url)); /* the password: the client keeps its own copy */
    if ((rc = lv_cq_scripts_add(c->redis, &c->scripts)) != 0) {
        LV_ERROR("cluster: cannot register the queue scripts (%s)", lv_strerror(rc));
        goto fail;
    }
    lv_dispatch_redis_cfg_t dcfg = {
        .frontend_id = c->node_id,
        .max_frame_age_ms = cfg->max_frame_age_ms,
        .max_frame_bytes = cfg->max_frame_bytes,
        .out_factor = 2, /* a backlogged user keeps a job waiting in the queue (lv_dispatch_redis.h) */
        .ud = c,
        .weight_of = weight_of,
        .tenant_weight_of = tenant_weight_of,
        .lost = job_lost,
    };
    if ((rc = lv_dispatch_redis_create(app->loop, c->redis, &c->scripts, &dcfg, &c->dispatch)) != 0) {
        LV_ERROR("cluster: cannot create the dispatcher (%s)", lv_strerror(rc));
        goto fail;
    }
    if ((rc = lv_redis_subscribe(c->redis, c->channel)) != 0) {
        LV_ERROR("cluster: cannot subscribe to %s (%s)", c->channel, lv_strerror(rc));
        goto fail;
    }
    app->cluster = c;
    if ((rc = lv_csess_start(app)) != 0) {
        LV_ERROR("cluster: cannot start the cluster sessions (%s)", lv_strerror(rc));
        lv_csess_free(app);
        goto fail;
    }
    c->csess_started = true;
    if (cfg->workers_inline) {
        if ((rc = lv_worker_start(app->loop, app->pool, cfg, &c->worker)) != 0) {
            LV_ERROR("cluster: cannot start the inline worker (%s)", lv_strerror(rc));
            goto fail;
        }
    }
    uv_timer_init(app->loop, &c->beat);
    c->beat.data = c;
    c->beat_on = true;
    uv_timer_start(&c->beat, on_beat, LV_CLUSTER_BEAT_MS, LV_CLUSTER_BEAT_MS);
    return 0;
fail:
    /* nothing has run on the loop yet: no reply, message or job can be pending */
    if (c->csess_started) {
        lv_csess_stop(app);
        lv_csess_free(app);
    }
    app->cluster = NULL;
    lv_redis_close(c->redis);
    lv_dispatch_redis_close(c->dispatch);
    free_fpm(c);
    free(c);
    return rc ? rc : LV_EINVAL;
}

/* The last part of stop: once Redis answered what was pending (the sessions' last writes, the
 * heartbeat's removal, the pipeline's cancels), or LV_CLUSTER_CLOSE_WAIT_MS passed. The client
 * goes first: its pending callbacks fail while the dispatcher they may point at still exists. */
static void on_close_wait(uv_timer_t *t)
{
    lv_cluster_t *c = t->data;
    lv_redis_stats_t st;
    lv_redis_stats(c->redis, &st);
    if (st.pending > 0 && lv_now_ms() - c->stop_ms < LV_CLUSTER_CLOSE_WAIT_MS)
        return;
    if (st.pending > 0)
        LV_WARN("cluster: closing with %zu Redis command(s) unanswered", st.pending);
    uv_timer_stop(&c->beat);
    uv_close((uv_handle_t *)&c->beat, NULL);
    lv_redis_close(c->redis);
    c->redis = NULL;
    lv_dispatch_redis_close(c->dispatch);
    c->dispatch = NULL;
}

void lv_cluster_stop(lv_app_t *app)
{
    lv_cluster_t *c = app->cluster;
    if (!c || c->stopping)
        return;
    c->stopping = true;
    c->stop_ms = lv_now_ms();
    /* the inline worker first: it uses the backend pool, which goes right after this */
    lv_worker_stop(c->worker);
    c->worker = NULL;
    if (c->csess_started)
        lv_csess_stop(app);
    lv_redis_cmdf(c->redis, NULL, NULL, "HDEL %s %s", FE_KEY, c->node_id);
    uv_timer_stop(&c->beat);
    uv_timer_start(&c->beat, on_close_wait, 0, CLOSE_POLL_MS);
}

void lv_cluster_free(lv_app_t *app)
{
    lv_cluster_t *c = app->cluster;
    if (!c)
        return;
    /* whatever is still open: the loop ended without a stop (start failed further on), or stop's
     * wait never ran; each is NULL once closed, and every close takes NULL */
    if (!c->stopping)
        lv_worker_stop(c->worker);
    lv_redis_close(c->redis);
    lv_dispatch_redis_close(c->dispatch);
    if (c->csess_started)
        lv_csess_free(app);
    free_fpm(c);
    app->cluster = NULL;
    free(c);
}

/* ---------- accessors ---------- */

lv_dispatch_t *lv_cluster_dispatch(lv_cluster_t *c) { return c ? c->dispatch : NULL; }
lv_redis_t *lv_cluster_redis(lv_cluster_t *c) { return c ? c->redis : NULL; }
const char *lv_cluster_node_id(const lv_cluster_t *c) { return c ? c->node_id : ""; }
const char *lv_cluster_url(const lv_cluster_t *c) { return c ? c->url_clean : ""; }
bool lv_cluster_up(const lv_cluster_t *c) { return c && c->redis && lv_redis_up(c->redis); }

bool lv_cluster_ready(const lv_cluster_t *c, const char **why)
{
    *why = NULL;
    if (!lv_cluster_up(c))
        *why = "redis unreachable";
    else if (c->stopping)
        *why = "shutting down";
    else if (lv_now_ms() < c->duplicate_until_ms)
        *why = "another frontend has this node id";
    return *why == NULL;
}
lv_worker_t *lv_cluster_worker(lv_cluster_t *c) { return c ? c->worker : NULL; }

size_t lv_cluster_frontends(const lv_cluster_t *c, lv_cluster_fe_t *out, size_t max)
{
    if (!c)
        return 0;
    uint64_t now = lv_wall_ms();
    size_t n = 0;
    for (size_t i = 0; i < c->n_fe && n < max; i++) {
        uint64_t age = now > c->fe_wall_ms[i] ? now - c->fe_wall_ms[i] : 0;
        if (age > LV_CLUSTER_FE_STALE_MS)
            continue;
        out[n] = c->fe[i];
        out[n].age_ms = age;
        n++;
    }
    return n;
}

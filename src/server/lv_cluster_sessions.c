/* lv_cluster_sessions.c - sessions in a cluster (lv_cluster_sessions.h): the write-behind of each
 * owned session's line to Redis, resume on any frontend (claim, load, check, restore), the
 * cluster-wide admission of new sessions, and letting go of a session another frontend took. */
#include "lv_cluster_sessions.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "lv_app.h"
#include "lv_cluster.h"
#include "lv_common.h"
#include "lv_engine.h"
#include "lv_hmap.h"
#include "lv_log.h"
#include "lv_queue.h"
#include "lv_quota.h"
#include "lv_rand.h"
#include "lv_redis.h"
#include "lv_secret.h"
#include "lv_session.h"
#include "lv_statefile.h"
#include "lv_trace.h"
#include "lv_wsconn.h"

#define ANSWER_SEQ_GAP 64              /* answer ids skipped when a session is taken over from its record */
#define TICK_MS 100                    /* a change reaches Redis within about this */
#define WRITE_BUDGET_BYTES (4u << 20)  /* lines sent per tick; the other changed sessions go next tick */
#define INFLIGHT_MAX_BYTES (32u << 20) /* lines sent and not answered yet: past this a tick sends none */
#define REFRESH_MAX_MS 60000           /* an attached session's TTL is renewed at least this often ... */
#define REFRESH_MIN_MS 200             /* ... and at most this often (a tiny --session-idle) */
#define REFRESH_SCAN_MAX 4096          /* sessions looked at per tick for a due refresh */
#define PROVISIONAL_MS 10000           /* an admitted session's place, until its first write */
#define HELLOS_MAX 65536               /* hellos waiting for Redis */
#define ERROR_LOG_EVERY_MS 60000
#define KEY_MAX (8 + LV_PRINCIPAL_KEY_MAX)

/* A hello waiting for Redis: a resume (claim + load) or a new session (admission). */
typedef struct {
    lv_hmap_node_t node; /* in cs->hellos while its socket is open, keyed by `key` */
    struct lv_csess *cs;
    lv_conn_t *conn;      /* NULL once the socket closed */
    const lv_conn_t *key; /* the socket's address: the table's key bytes */
    char id[LV_SESSION_ID_LEN + 1];
    char secret_hash[LV_SECRET_HASH_LEN + 1];
    char provisional[33]; /* admission: this hello's member in lv:us:<principal> */
    char principal[LV_PRINCIPAL_KEY_MAX];
    char tenant[LV_PRINCIPAL_ID_MAX]; /* admission: the principal's tenant (the fair queue's level) */
    int64_t user_max, tenant_max;     /* admission: the sessions quotas it was checked against (0 none) */
    lv_settings_t settings;           /* admission: the new session's (checked) settings */
} hello_t;

/* One write of a session's line, waiting for its reply. */
typedef struct {
    struct lv_csess *cs;
    char id[LV_SESSION_ID_LEN + 1];
    uint32_t gen; /* the incarnation that was written */
    size_t bytes;
} write_t;

typedef struct lv_csess {
    lv_app_t *app; /* NULL once freed (callbacks still pending then touch nothing) */
    lv_redis_t *redis;
    char node[64];
    uv_timer_t *timer; /* its own allocation, freed by its close callback */
    int s_write, s_load, s_admit, s_delete, s_unadmit;
    bool up, stopping, freed;
    lv_queue_t managed; /* lv_session_t.cluster.link: every session written here, oldest write first */
    lv_hmap_t hellos;   /* hello_t.node */
    uint32_t gen;
    size_t inflight_bytes;
    size_t outstanding; /* commands whose callback holds a pointer here */
    uint64_t idle_ms, refresh_ms, lease_ms;
    uint64_t error_logged_ms;
    uint64_t errors_unlogged;
} lv_csess_t;

/* app->csess, set by lv_csess_start; every entry point goes through here (NULL: single node, or
 * not started). */
static lv_csess_t *csess_of(const lv_app_t *app)
{
    return app && app->cluster ? app->csess : NULL;
}

/* ---------- the scripts ---------- */

/* KEYS: lv:s:<id>, lv:o:<id>, lv:us:<principal>, lv:ts:<tenant>. ARGV: node, line, ttl ms,
 * live-until score ("0": not live, out of both sets), id, the sets' ttl ms, create ("1": the id
 * must be new), a provisional member to drop (or ""). 1 written; 0 another frontend owns it; -1
 * create found the id taken. The two sets always change together (the user's and its tenant's
 * count of live sessions). */
static const char SCRIPT_WRITE[] =
    "local owner = redis.call('GET', KEYS[2])\n"
    "if owner and owner ~= ARGV[1] then return 0 end\n"
    "if ARGV[7] == '1' and redis.call('EXISTS', KEYS[1]) == 1 then return -1 end\n"
    "redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])\n"
    "redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[3])\n"
    "for k = 3, 4 do\n"
    "  if ARGV[8] ~= '' then redis.call('ZREM', KEYS[k], ARGV[8]) end\n"
    "  if ARGV[4] == '0' then\n"
    "    redis.call('ZREM', KEYS[k], ARGV[5])\n"
    "  else\n"
    "    redis.call('ZADD', KEYS[k], ARGV[4], ARGV[5])\n"
    "    if redis.call('PTTL', KEYS[k]) < tonumber(ARGV[6]) then redis.call('PEXPIRE', KEYS[k], ARGV[6]) end\n"
    "  end\n"
    "end\n"
    "return 1\n";

/* KEYS: lv:s:<id>, lv:o:<id>. ARGV: node, ttl ms, the secret's hash. The record is claimed only
 * for the right secret, so an id alone cannot take a session from the frontend serving it (C
 * checks the hash again, in constant time). {0}: nothing to resume here; {1, line?}: it was ours
 * or nobody's (a copy here is current); {2, line}: taken from another frontend. */
static const char SCRIPT_LOAD[] =
    "local owner = redis.call('GET', KEYS[2])\n"
    "local mine = (not owner) or owner == ARGV[1]\n"
    "local line = redis.call('GET', KEYS[1])\n"
    "if not line then\n"
    "  if mine then return {1} end\n"
    "  return {0}\n"
    "end\n"
    "if string.match(line, '\"secret_sha256\":\"(%x+)\"') ~= ARGV[3] then return {0} end\n"
    "redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "if mine then return {1, line} end\n"
    "return {2, line}\n";

/* KEYS: lv:us:<principal>, lv:ts:<tenant>. ARGV: now (wall ms), the cap (--max-sessions-per-ip),
 * a provisional member, its score, the sets' ttl ms, the user's sessions quota, the tenant's (0:
 * none). Checked in a single node's order (lv_engine.c: the user's quota, the tenant's, then the
 * cap). {1}: admitted (the member holds its place in both sets); {0, live}: the cap; {2, live}:
 * the user's quota; {3, live}: the tenant's. */
static const char SCRIPT_ADMIT[] =
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])\n"
    "local live = redis.call('ZCARD', KEYS[1])\n"
    "local uq, tq = tonumber(ARGV[6]), tonumber(ARGV[7])\n"
    "if uq > 0 and live >= uq then return {2, live} end\n"
    "if tq > 0 then\n"
    "  local tlive = redis.call('ZCARD', KEYS[2])\n"
    "  if tlive >= tq then return {3, tlive} end\n"
    "end\n"
    "if live >= tonumber(ARGV[2]) then return {0, live} end\n"
    "for k = 1, 2 do\n"
    "  redis.call('ZADD', KEYS[k], ARGV[4], ARGV[3])\n"
    "  if redis.call('PTTL', KEYS[k]) < tonumber(ARGV[5]) then redis.call('PEXPIRE', KEYS[k], ARGV[5]) end\n"
    "end\n"
    "return {1}\n";

/* KEYS: lv:us:<principal>, lv:ts:<tenant>. ARGV: a provisional member. Its place is given back. */
static const char SCRIPT_UNADMIT[] = "redis.call('ZREM', KEYS[1], ARGV[1])\n"
                                     "redis.call('ZREM', KEYS[2], ARGV[1])\n"
                                     "return 1\n";

/* KEYS: lv:s:<id>, lv:o:<id>, lv:us:<principal>, lv:ts:<tenant>. ARGV: node, id. Only the owner
 * deletes. */
static const char SCRIPT_DELETE[] = "if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end\n"
                                    "redis.call('DEL', KEYS[1], KEYS[2])\n"
                                    "redis.call('ZREM', KEYS[3], ARGV[2])\n"
                                    "redis.call('ZREM', KEYS[4], ARGV[2])\n"
                                    "return 1\n";

/* ---------- helpers ---------- */

static void csess_unref(lv_csess_t *cs)
{
    cs->outstanding--;
    if (cs->freed && cs->outstanding == 0)
        free(cs);
}

/* Redis errors repeat while it is in trouble: one line a minute, with how many were not logged. */
static void log_error(lv_csess_t *cs, const char *what, const char *detail)
{
    uint64_t now = lv_now_ms();
    if (cs->error_logged_ms && now - cs->error_logged_ms < ERROR_LOG_EVERY_MS) {
        cs->errors_unlogged++;
        return;
    }
    LV_WARN("cluster sessions: %s (%s)%s", what, detail ? detail : "no reply",
            cs->errors_unlogged ? "; more errors since the last such line" : "");
    cs->error_logged_ms = now;
    cs->errors_unlogged = 0;
}

static const char *reply_error(const redisReply *reply, const char *err)
{
    if (!reply)
        return err ? err : "no reply";
    if (reply->type == REDIS_REPLY_ERROR)
        return reply->str ? reply->str : "error reply";
    return "unexpected reply";
}

static bool valid_id(const char *id)
{
    if (strlen(id) != LV_SESSION_ID_LEN)
        return false;
    for (const char *p = id; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

static bool secret_matches(const char *hash, const char *stored)
{
    return lv_secure_equal(hash, strlen(hash), stored, strlen(stored));
}

static void u64_text(char *dst, size_t size, uint64_t v)
{
    snprintf(dst, size, "%llu", (unsigned long long)v);
}

/* The live sets of a principal and of its tenant (an empty tenant is the default one, as
 * lv_session_create and the session line have it). */
static void live_keys(char *k_us, char *k_ts, const char *principal, const char *tenant)
{
    snprintf(k_us, KEY_MAX, "lv:us:%s", principal);
    snprintf(k_ts, KEY_MAX, "lv:ts:%s", tenant && tenant[0] ? tenant : "default");
}

/* One script call whose arguments are all C strings. */
static int eval_strs(lv_csess_t *cs, int script, lv_redis_reply_fn cb, void *ud, int nkeys, int argc, const char **argv)
{
    size_t argvlen[16];
    if (argc < 1 || (size_t)argc > LV_ARRAY_LEN(argvlen))
        return LV_EINVAL;
    for (int i = 0; i < argc; i++)
        argvlen[i] = strlen(argv[i]);
    return lv_redis_eval(cs->redis, script, cb, ud, nkeys, argc, argv, argvlen);
}

/* s's record and owner key live for what is left of its idle time: all of it while a socket is
 * attached (or it was just made), else counted from when its last socket left. */
static uint64_t record_ttl_ms(const lv_csess_t *cs, const lv_session_t *s, uint64_t now)
{
    if (lv_session_attached(s) || s->detached_since_ms == 0)
        return cs->idle_ms;
    uint64_t idle = now > s->detached_since_ms ? now - s->detached_since_ms : 0;
    return idle + 1000 < cs->idle_ms ? cs->idle_ms - idle : 1000;
}

/* s is written from here on: its place in the refresh order, a new incarnation number. */
static void manage(lv_csess_t *cs, lv_session_t *s, uint64_t now)
{
    s->cluster.managed = true;
    if (++cs->gen == 0)
        cs->gen = 1;
    s->cluster.gen = cs->gen;
    s->cluster.written_ms = now;
    if (lv_queue_linked(&s->cluster.link))
        lv_queue_remove(&s->cluster.link);
    if (!cs->stopping) /* after stop nothing is written, and the queue lets go of every session */
        lv_queue_insert_tail(&cs->managed, &s->cluster.link);
}

/* Another frontend owns s now: let the copy here go (its sockets hear session_moved and close;
 * the page reconnects and resumes wherever it lands). Nothing is deleted in Redis. */
static void lost(lv_csess_t *cs, lv_session_t *s)
{
    lv_log_ctx_t lctx = lv_trace_log_ctx(s, NULL);
    LV_INFO_CTX(&lctx, "session %.8s is served by another frontend now: this frontend lets its copy go", s->rec.id);
    lv_engine_session_release(cs->app, s, "session_moved",
                              "This session is now served by another server of the cluster; the page "
                              "reconnects to it.");
}

/* ---------- the write-behind ---------- */

static void on_written(void *ud, const redisReply *reply, const char *err)
{
    write_t *w = ud;
    lv_csess_t *cs = w->cs;
    cs->inflight_bytes -= w->bytes;
    if (!cs->freed) {
        lv_session_t *s = lv_session_find(cs->app->reg, w->id);
        if (s && (!s->cluster.managed || s->cluster.gen != w->gen))
            s = NULL; /* a write of an earlier copy of it */
        if (!reply || reply->type != REDIS_REPLY_INTEGER) {
            log_error(cs, "a session could not be written; it is written again", reply_error(reply, err));
            if (s)
                lv_session_queue_write(s); /* its line is still current */
        } else if (reply->integer <= 0 && s && !cs->stopping) {
            lost(cs, s); /* (while stopping the sockets are going anyway) */
        }
    }
    free(w);
    csess_unref(cs);
}

/* Send s's current line (s->persist_line, encoded by the caller). create: a new session's first
 * write (its id must be new), dropping the admission's provisional member. 0, or lv_redis's error
 * (down, too many pending: the caller puts s back on the dirty list). */
static int send_write(lv_csess_t *cs, lv_session_t *s, uint64_t now, bool create, const char *provisional)
{
    char k_s[KEY_MAX], k_o[KEY_MAX], k_us[KEY_MAX], k_ts[KEY_MAX], ttl[24], score[24], us_ttl[24];
    const lv_statefile_line_t *line = s->persist_line;
    if (!line || line->len < 2)
        return LV_EINVAL;
    bool live = lv_session_attached(s) || s->detached_since_ms == 0;
    snprintf(k_s, sizeof(k_s), "lv:s:%s", s->rec.id);
    snprintf(k_o, sizeof(k_o), "lv:o:%s", s->rec.id);
    live_keys(k_us, k_ts, s->rec.principal, s->rec.tenant);
    u64_text(ttl, sizeof(ttl), record_ttl_ms(cs, s, now));
    u64_text(score, sizeof(score), live ? lv_wall_ms() + cs->lease_ms : 0);
    u64_text(us_ttl, sizeof(us_ttl), cs->lease_ms + PROVISIONAL_MS);
    const char *pv = provisional ? provisional : "";
    const char *argv[] = {k_s, k_o,   k_us,      k_ts,   cs->node,           line->data,
                          ttl, score, s->rec.id, us_ttl, create ? "1" : "0", pv};
    enum { LINE_ARG = 5 };
    size_t argvlen[LV_ARRAY_LEN(argv)];
    for (size_t i = 0; i < LV_ARRAY_LEN(argv); i++) /* the line is no C string: its length is its own */
        argvlen[i] = i == LINE_ARG ? line->len - 1 : strlen(argv[i]); /* without its "\n" */
    write_t *w = calloc(1, sizeof(*w));
    if (!w)
        return LV_ENOMEM;
    w->cs = cs;
    memcpy(w->id, s->rec.id, sizeof(w->id));
    w->gen = s->cluster.gen;
    w->bytes = line->len;
    int rc = lv_redis_eval(cs->redis, cs->s_write, on_written, w, 4, (int)LV_ARRAY_LEN(argv), argv, argvlen);
    if (rc) {
        free(w);
        return rc;
    }
    cs->outstanding++;
    cs->inflight_bytes += w->bytes;
    s->cluster.written_ms = now;
    if (lv_queue_linked(&s->cluster.link)) {
        lv_queue_remove(&s->cluster.link);
        lv_queue_insert_tail(&cs->managed, &s->cluster.link);
    }
    return 0;
}

/* Write the sessions that changed, oldest change first, up to budget bytes of lines (and while
 * fewer than inflight_max bytes wait for replies); the rest stay on the dirty list for later. */
static void write_dirty(lv_csess_t *cs, uint64_t now, size_t budget, size_t inflight_max)
{
    size_t spent = 0;
    while (spent < budget && cs->inflight_bytes < inflight_max) {
        lv_session_t *s = lv_registry_dirty_pop(cs->app->reg);
        if (!s)
            break;
        if (!s->cluster.managed)
            continue; /* a one-request session (POST /api/v1/analyze): never written */
        /* re-encoded only when it changed: a refresh or a retry sends the line it has */
        if (((s->persist_dirty || !s->persist_line) && lv_session_encode(s) != 0) || !s->persist_line) {
            log_error(cs, "a session could not be encoded; it waits for its next change", s->rec.id);
            continue;
        }
        if (send_write(cs, s, now, false, NULL) != 0) {
            lv_session_queue_write(s); /* down or busy: next tick (a change keeps persist_dirty) */
            break;
        }
        spent += s->persist_line->len;
    }
}

/* Attached sessions are written at least every refresh period even unchanged, so their record
 * and live entry never expire while a page holds them. The managed queue is in order of last
 * write, so only its due head is looked at. */
static void refresh_due(lv_csess_t *cs, uint64_t now)
{
    for (size_t i = 0; i < REFRESH_SCAN_MAX && !lv_queue_empty(&cs->managed); i++) {
        lv_session_t *s = LV_CONTAINER_OF(lv_queue_head(&cs->managed), lv_session_t, cluster.link);
        if (now - s->cluster.written_ms < cs->refresh_ms)
            break;
        if (lv_session_attached(s) || s->detached_since_ms == 0)
            lv_session_queue_write(s); /* unchanged: the same line, a fresh TTL */
        /* looked at: the next look is a period away (its write, if any, sets the same) */
        s->cluster.written_ms = now;
        lv_queue_remove(&s->cluster.link);
        lv_queue_insert_tail(&cs->managed, &s->cluster.link);
    }
}

static void on_tick(uv_timer_t *t)
{
    lv_csess_t *cs = t->data;
    if (!cs->up || cs->stopping)
        return; /* changes wait on the dirty list; all are written again when Redis is back */
    uint64_t now = lv_now_ms();
    refresh_due(cs, now);
    write_dirty(cs, now, WRITE_BUDGET_BYTES, INFLIGHT_MAX_BYTES);
}

/* ---------- hellos ---------- */

static hello_t *hello_new(lv_csess_t *cs, lv_conn_t *c)
{
    hello_t *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->cs = cs;
    h->conn = c;
    h->key = c;
    if (lv_hmap_insert(&cs->hellos, &h->node, &h->key, sizeof(h->key)) != 0) {
        free(h);
        return NULL;
    }
    return h;
}

/* The reply came: the socket, if it is still open, leaves the table. */
static lv_conn_t *hello_take_conn(lv_csess_t *cs, hello_t *h)
{
    lv_conn_t *c = h->conn;
    if (c) {
        lv_hmap_remove(&cs->hellos, &h->node);
        h->conn = NULL;
    }
    return c;
}

/* A hello's script call: on refusal the hello is given up here (its socket untouched: the caller
 * answers it) and LV_ENOMEM or LV_ECLOSED is returned; else its callback owns h. */
static int hello_eval(lv_csess_t *cs, hello_t *h, int script, lv_redis_reply_fn cb, int nkeys, int argc,
                      const char **argv)
{
    int rc = eval_strs(cs, script, cb, h, nkeys, argc, argv);
    if (rc) {
        hello_take_conn(cs, h);
        free(h);
        return rc == LV_ENOMEM ? LV_ENOMEM : LV_ECLOSED;
    }
    cs->outstanding++;
    return 0;
}

/* Restore the session of a line read from Redis. 0 with *out, LV_ENOTFOUND (unreadable, another
 * id, a wrong secret), or lv_registry_restore's error. */
static int restore_line(lv_csess_t *cs, const hello_t *h, const char *p, size_t len, lv_session_t **out)
{
    const char *why = NULL;
    lv_statefile_session_t *saved = malloc(sizeof(*saved));
    if (!saved)
        return LV_ENOMEM;
    int rc = lv_statefile_parse_line(p, len, lv_wall_ms(), saved, &why);
    if (rc) {
        LV_WARN("session %.8s: its record in Redis cannot be read (%s); the page starts a new session", h->id, why);
        rc = LV_ENOTFOUND;
        goto out;
    }
    if (strcmp(saved->rec.id, h->id) != 0 || !secret_matches(h->secret_hash, saved->rec.secret_hash)) {
        rc = LV_ENOTFOUND;
        goto out_clear;
    }
    if (saved->settings_reset)
        LV_WARN("session %.8s had settings this version refuses: it has the defaults now", h->id);
    /* the record may lag the answers its last owner numbered (an answer id is taken when its
     * request is dispatched; the write follows within ~100 ms, or never if that frontend died):
     * skip ahead so no id the page has seen is handed out again. Ids only need to grow. */
    saved->answer_seq += ANSWER_SEQ_GAP;
    if ((rc = lv_registry_restore(cs->app->reg, saved, lv_now_ms())) != 0) {
        LV_WARN("session %.8s cannot be taken over by this frontend (%s)", h->id, lv_strerror(rc));
        goto out_clear;
    }
    *out = lv_session_find(cs->app->reg, h->id);
    manage(cs, *out, lv_now_ms());
    lv_log_ctx_t lctx = lv_trace_log_ctx(*out, NULL);
    LV_INFO_CTX(&lctx, "session %.8s resumed here from its record in Redis", h->id);
out_clear:
    lv_statefile_session_clear(saved);
out:
    free(saved);
    return rc;
}

/* What a claim's reply means (SCRIPT_LOAD): 0 with *out, LV_ENOTFOUND, LV_ECLOSED (Redis failed). */
static int apply_load(lv_csess_t *cs, const hello_t *h, const redisReply *reply, const char *err, lv_session_t **out)
{
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 1 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER) {
        log_error(cs, "a session could not be loaded", reply_error(reply, err));
        return LV_ECLOSED;
    }
    long long state = reply->element[0]->integer;
    const redisReply *line =
        reply->elements > 1 && reply->element[1]->type == REDIS_REPLY_STRING ? reply->element[1] : NULL;
    lv_session_t *local = lv_session_find(cs->app->reg, h->id);
    if (local && !local->cluster.managed)
        return LV_ENOTFOUND; /* a one-request session: nobody resumes those */
    if (state == 0)
        return LV_ENOTFOUND;
    if (state == 1 && local) {
        /* ours all along: the copy here has every change, even one not written yet */
        if (!secret_matches(h->secret_hash, local->rec.secret_hash))
            return LV_ENOTFOUND;
        *out = local;
        return 0;
    }
    if (!line)
        return LV_ENOTFOUND;
    if (local)
        lost(cs, local); /* served elsewhere since: the record there is newer than this copy */
    return restore_line(cs, h, line->str, line->len, out);
}

static void on_loaded(void *ud, const redisReply *reply, const char *err)
{
    hello_t *h = ud;
    lv_csess_t *cs = h->cs;
    if (!cs->freed) {
        lv_conn_t *c = hello_take_conn(cs, h);
        lv_session_t *s = NULL;
        /* applied even with the socket gone: the claim is done, so the copy lives here now (not
         * while stopping: the record stays in Redis, claimed, for the next frontend to take) */
        int rc = cs->stopping ? LV_ECLOSED : apply_load(cs, h, reply, err, &s);
        if (c)
            lv_engine_hello_done(c, rc == 0 ? s : NULL, NULL, rc);
    }
    free(h);
    csess_unref(cs);
}

int lv_csess_resume(lv_app_t *app, lv_conn_t *c, const char *id, const char *secret)
{
    char k_s[KEY_MAX], k_o[KEY_MAX], ttl[24];
    lv_csess_t *cs = csess_of(app);
    if (!cs || !cs->up)
        return LV_ECLOSED;
    if (!valid_id(id))
        return LV_ENOTFOUND;
    hello_t *h = hello_new(cs, c);
    if (!h)
        return LV_ENOMEM;
    memcpy(h->id, id, sizeof(h->id));
    lv_secret_hash(secret, h->secret_hash);
    snprintf(k_s, sizeof(k_s), "lv:s:%s", id);
    snprintf(k_o, sizeof(k_o), "lv:o:%s", id);
    u64_text(ttl, sizeof(ttl), cs->idle_ms);
    const char *argv[] = {k_s, k_o, cs->node, ttl, h->secret_hash};
    return hello_eval(cs, h, cs->s_load, on_loaded, 2, (int)LV_ARRAY_LEN(argv), argv);
}

/* Give back an admission's place (its hello went unanswered or the create failed). */
static void drop_provisional(lv_csess_t *cs, const hello_t *h)
{
    char k_us[KEY_MAX], k_ts[KEY_MAX];
    live_keys(k_us, k_ts, h->principal, h->tenant);
    const char *argv[] = {k_us, k_ts, h->provisional};
    /* fire and forget: else it lapses in PROVISIONAL_MS */
    (void)eval_strs(cs, cs->s_unadmit, NULL, NULL, 2, (int)LV_ARRAY_LEN(argv), argv);
}

/* Admitted: make the session here, answer the hello, and write its record at once. */
static void create_admitted(lv_csess_t *cs, hello_t *h, lv_conn_t *c)
{
    char secret[65];
    lv_session_t *s = NULL;
    uint64_t now = lv_now_ms();
    int rc = lv_session_create(cs->app->reg, h->principal, h->tenant, &h->settings, secret, &s);
    if (rc) {
        drop_provisional(cs, h);
        lv_engine_hello_done(c, NULL, NULL, rc);
        return;
    }
    manage(cs, s, now);
    lv_engine_hello_done(c, s, secret, 0); /* attached: the line below says so */
    memset(secret, 0, sizeof(secret));
    if (lv_session_encode(s) != 0 || send_write(cs, s, now, true, h->provisional) != 0)
        lv_session_mark_dirty(s); /* the next tick writes it; the provisional place lapses */
}

static void on_admitted(void *ud, const redisReply *reply, const char *err)
{
    hello_t *h = ud;
    lv_csess_t *cs = h->cs;
    if (!cs->freed) {
        lv_conn_t *c = hello_take_conn(cs, h);
        if (c && c->kill)
            c = NULL; /* closing: a session made for it would never be attached, so never expire */
        long long verdict = -1, live = 0;
        if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements >= 1 &&
            reply->element[0]->type == REDIS_REPLY_INTEGER) {
            verdict = reply->element[0]->integer;
            if (reply->elements >= 2 && reply->element[1]->type == REDIS_REPLY_INTEGER)
                live = reply->element[1]->integer;
        }
        if (verdict < 0 || verdict > 3) {
            log_error(cs, "a new session could not be admitted", reply_error(reply, err));
            if (c)
                lv_engine_hello_done(c, NULL, NULL, LV_ECLOSED);
        } else if (verdict == 0) {
            if (c)
                lv_engine_hello_done(c, NULL, NULL, LV_ELIMIT);
        } else if (verdict >= 2) {
            if (c) {
                lv_quota_over_t over;
                bool tenant = verdict == 3;
                lv_quota_sessions_refusal(&over, tenant, tenant ? h->tenant_max : h->user_max, live);
                lv_engine_hello_over_quota(c, &over);
            }
        } else if (!c) {
            drop_provisional(cs, h); /* nobody to make it for */
        } else {
            create_admitted(cs, h, c);
        }
    }
    memset(&h->settings, 0, sizeof(h->settings));
    free(h);
    csess_unref(cs);
}

int lv_csess_admit(lv_app_t *app, lv_conn_t *c, const lv_settings_t *settings)
{
    char k_us[KEY_MAX], k_ts[KEY_MAX], now_text[24], cap[24], score[24], us_ttl[24], uq[24], tq[24];
    lv_csess_t *cs = csess_of(app);
    if (!cs || !cs->up)
        return LV_ECLOSED;
    hello_t *h = hello_new(cs, c);
    if (!h)
        return LV_ENOMEM;
    h->settings = *settings;
    snprintf(h->principal, sizeof(h->principal), "%s", c->principal.key);
    snprintf(h->tenant, sizeof(h->tenant), "%s", c->principal.tenant);
    if (lv_rand_hex(h->provisional, sizeof(h->provisional), 16) != 0) {
        hello_take_conn(cs, h);
        free(h);
        return LV_ENOMEM;
    }
    /* the quotas as the snapshot has them now: a change reaches the next hello */
    lv_quota_sessions_limits(app, h->principal, h->tenant, &h->user_max, &h->tenant_max);
    uint64_t wall = lv_wall_ms();
    live_keys(k_us, k_ts, h->principal, h->tenant);
    u64_text(now_text, sizeof(now_text), wall);
    u64_text(cap, sizeof(cap), app->cfg.max_sessions_per_ip);
    u64_text(score, sizeof(score), wall + PROVISIONAL_MS);
    u64_text(us_ttl, sizeof(us_ttl), cs->lease_ms + PROVISIONAL_MS);
    u64_text(uq, sizeof(uq), (uint64_t)h->user_max);
    u64_text(tq, sizeof(tq), (uint64_t)h->tenant_max);
    const char *argv[] = {k_us, k_ts, now_text, cap, h->provisional, score, us_ttl, uq, tq};
    return hello_eval(cs, h, cs->s_admit, on_admitted, 2, (int)LV_ARRAY_LEN(argv), argv);
}

bool lv_csess_hello_pending(lv_app_t *app, const lv_conn_t *c)
{
    lv_csess_t *cs = csess_of(app);
    return cs && lv_hmap_find(&cs->hellos, &c, sizeof(c)) != NULL;
}

void lv_csess_conn_closed(lv_app_t *app, const lv_conn_t *c)
{
    lv_csess_t *cs = csess_of(app);
    lv_hmap_node_t *n = cs ? lv_hmap_find(&cs->hellos, &c, sizeof(c)) : NULL;
    if (!n)
        return;
    hello_t *h = LV_CONTAINER_OF(n, hello_t, node);
    hello_take_conn(cs, h);
}

/* ---------- sessions leaving ---------- */

void lv_csess_session_gone(lv_app_t *app, lv_session_t *s)
{
    char k_s[KEY_MAX], k_o[KEY_MAX], k_us[KEY_MAX], k_ts[KEY_MAX];
    lv_csess_t *cs = csess_of(app);
    if (!cs || !s->cluster.managed)
        return;
    s->cluster.managed = false;
    if (lv_queue_linked(&s->cluster.link))
        lv_queue_remove(&s->cluster.link);
    snprintf(k_s, sizeof(k_s), "lv:s:%s", s->rec.id);
    snprintf(k_o, sizeof(k_o), "lv:o:%s", s->rec.id);
    live_keys(k_us, k_ts, s->rec.principal, s->rec.tenant);
    const char *argv[] = {k_s, k_o, k_us, k_ts, cs->node, s->rec.id};
    /* fire and forget: refused (down), the record lapses with its TTL, which is the same expiry */
    (void)eval_strs(cs, cs->s_delete, NULL, NULL, 4, (int)LV_ARRAY_LEN(argv), argv);
}

/* ---------- lifetime ---------- */

int lv_csess_start(lv_app_t *app)
{
    int rc = LV_ENOMEM;
    lv_csess_t *cs = NULL;
    if (!app->cluster) /* lv_cluster_start sets app->cluster before it calls this */
        return app->cfg.redis_url[0] ? LV_EINVAL : 0;
    if (app->csess)
        return LV_EEXIST;
    if (!(cs = calloc(1, sizeof(*cs))) || !(cs->timer = calloc(1, sizeof(*cs->timer))))
        goto fail;
    cs->app = app;
    cs->redis = lv_cluster_redis(app->cluster);
    snprintf(cs->node, sizeof(cs->node), "%s", lv_cluster_node_id(app->cluster));
    lv_queue_init(&cs->managed);
    if ((rc = lv_hmap_init(&cs->hellos, HELLOS_MAX)) != 0)
        goto fail;
    if ((rc = lv_redis_script_add(cs->redis, SCRIPT_WRITE, &cs->s_write)) != 0 ||
        (rc = lv_redis_script_add(cs->redis, SCRIPT_LOAD, &cs->s_load)) != 0 ||
        (rc = lv_redis_script_add(cs->redis, SCRIPT_ADMIT, &cs->s_admit)) != 0 ||
        (rc = lv_redis_script_add(cs->redis, SCRIPT_DELETE, &cs->s_delete)) != 0 ||
        (rc = lv_redis_script_add(cs->redis, SCRIPT_UNADMIT, &cs->s_unadmit)) != 0)
        goto fail_map;
    cs->idle_ms = (uint64_t)app->cfg.session_idle_s * 1000u;
    cs->refresh_ms = LV_MAX(REFRESH_MIN_MS, LV_MIN(REFRESH_MAX_MS, cs->idle_ms / 3));
    cs->lease_ms = 3 * cs->refresh_ms;
    cs->up = lv_cluster_up(app->cluster);
    uv_timer_init(app->loop, cs->timer);
    cs->timer->data = cs;
    uv_timer_start(cs->timer, on_tick, TICK_MS, TICK_MS);
    uv_unref((uv_handle_t *)cs->timer); /* the write-behind never keeps the loop alive */
    app->csess = cs;
    return 0;
fail_map:
    lv_hmap_free(&cs->hellos);
fail:
    if (cs)
        free(cs->timer);
    free(cs);
    return rc;
}

void lv_csess_set_up(lv_app_t *app, bool up)
{
    lv_csess_t *cs = csess_of(app);
    lv_queue_t *q;
    size_t n = 0;
    if (!cs || cs->up == up)
        return;
    cs->up = up;
    if (!up)
        return;
    /* Redis may have come back empty (restarted without its files): every record again */
    LV_QUEUE_FOREACH(q, &cs->managed)
    {
        lv_session_queue_write(LV_CONTAINER_OF(q, lv_session_t, cluster.link));
        n++;
    }
    if (n)
        LV_INFO("cluster sessions: Redis is reachable again; the %zu session(s) of this frontend are written again", n);
}

static void on_timer_closed(uv_handle_t *h)
{
    free(h);
}

/* Every session leaves the write-behind's queue (they outlive this side: the registry is
 * destroyed on its own schedule, and must not find a freed head among their links). */
static void release_managed(lv_csess_t *cs)
{
    while (!lv_queue_empty(&cs->managed))
        lv_queue_remove(lv_queue_head(&cs->managed));
}

void lv_csess_stop(lv_app_t *app)
{
    lv_csess_t *cs = csess_of(app);
    if (!cs || cs->stopping)
        return;
    if (cs->up)
        write_dirty(cs, lv_now_ms(), SIZE_MAX, SIZE_MAX); /* what changed last, fire and forget */
    cs->stopping = true;
    release_managed(cs);
    uv_timer_stop(cs->timer);
    uv_close((uv_handle_t *)cs->timer, on_timer_closed);
    cs->timer = NULL;
}

void lv_csess_free(lv_app_t *app)
{
    lv_csess_t *cs = csess_of(app);
    lv_hmap_iter_t it;
    lv_hmap_node_t *n;
    if (!cs)
        return;
    if (!cs->stopping) { /* never stopped: the sessions are still there (lv_csess_free's rule) */
        cs->stopping = true;
        release_managed(cs);
        /* closed now, freed if the loop runs again (else a small leak, never a use after free) */
        uv_timer_stop(cs->timer);
        uv_close((uv_handle_t *)cs->timer, on_timer_closed);
        cs->timer = NULL;
    }
    lv_hmap_iter_init(&cs->hellos, &it);
    while ((n = lv_hmap_iter_next(&cs->hellos, &it)) != NULL) {
        hello_t *h = LV_CONTAINER_OF(n, hello_t, node);
        lv_hmap_remove(&cs->hellos, n);
        h->conn = NULL; /* each is freed by its callback, which lv_redis_close runs */
    }
    lv_hmap_free(&cs->hellos);
    cs->app->csess = NULL;
    cs->app = NULL;
    cs->freed = true;
    if (cs->outstanding == 0)
        free(cs);
}

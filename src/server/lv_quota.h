/* lv_quota.h - quotas per user and per tenant (docs/internals/accounts.md "Quotas"): frames per
 * minute (the wall clock's minute), answers and tokens (prompt + completion) per UTC day, live
 * sessions. Limits come from the accounts snapshot (the user's quota and its tenant's; 0 = none);
 * without accounts nothing is limited. Counters live in memory, one record per user or tenant with
 * recent activity (evicted after LV_QUOTA_IDLE_MS idle); a new record's day counters are seeded
 * from the usage table (lv_acct_db_usage_sum since UTC midnight, on the database thread, after a
 * flush of the usage journal so the sum includes every answer journaled before).
 *
 * Cluster mode (app->cluster): the fpm, answers and tokens counters are cluster-wide, in Redis:
 *   lv:qt:u:<user id>:<fpm|ans|tok>:<window>   and   lv:qt:t:<tenant>:<fpm|ans|tok>:<window>
 * strings, window = wall ms / 60000 (fpm) or / 86400000 (the UTC day); INCRBY by what this
 * frontend counted, PEXPIRE once per key (a minute's: 120 s; a day's: to its midnight + 10 min).
 * A check stays a table look-up: the local figure is the last INCRBY reply (the cluster's total)
 * plus what was counted here since. Counts go out each second (INCRBY 0 for a counter in use, so
 * the others' counts come back) and at once when this frontend holds half its share of what is
 * left of a limit, or past 8/10 of it (as lv_cluster_fpm_count does): the frontends together pass
 * a limit by what is counted while a send is in flight. A day's key is started from the shared
 * database's sum (SET NX after the seed: the first frontend of the day, or a Redis that lost it);
 * day credits also wait (up to the seed's 2 s) for the first reply. Redis unreachable: the counts
 * stay local (one warning line per outage) and go out when it is back. Live sessions: single node,
 * counted in the registry (lv_quota_sessions_over); cluster, in Redis by the admission script
 * (lv:us:<principal>, lv:ts:<tenant>: lv_cluster_sessions.h), with lv_quota_sessions_limits's
 * caps. Loop thread only. */
#ifndef LV_QUOTA_H
#define LV_QUOTA_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lv_principal.h"

#define LV_QUOTA_IDLE_MS 180000    /* a record idle this long is dropped (re-seeded when it returns) */
#define LV_QUOTA_MAX_RECORDS 100000
#define LV_QUOTA_SWEEP_MS 1000     /* also the cluster's send round */
#define LV_QUOTA_KEY_PREFIX "lv:qt:"

/* What is counted (cluster keys, lv_quota_redis_key). */
enum { LV_QUOTA_FPM = 0, LV_QUOTA_ANSWERS, LV_QUOTA_TOKENS, LV_QUOTA_KINDS };

struct lv_app;

/* Why a principal is refused. Strings are static. */
typedef struct {
    const char *scope;           /* "user" | "tenant" */
    const char *quota;           /* "fpm" | "answers_day" | "tokens_day" | "sessions" */
    int64_t limit, used;
    int64_t renews_ms;           /* wall clock when it renews; 0 for sessions (when one ends) */
    int retry_after_s;           /* seconds until then, at least 1 */
    bool hold;                   /* not over: today's counts are still being read from the database
                                  * (ms): no credit yet, nothing to tell; the other fields unset */
} lv_quota_over_t;

/** Sets app->quota and starts the sweep timer. LV_ENOMEM / LV_EIO. */
int lv_quota_start(struct lv_app *app);
/** Stop the timer; freed when it has closed (the loop runs on). Safe when not started. */
void lv_quota_stop(struct lv_app *app);

/** Is the principal (its key, its tenant) over its fpm, answers or tokens quota now? true with
 * *why filled. Cheap (two table look-ups); called before every credit. */
bool lv_quota_over(struct lv_app *app, const char *principal, const char *tenant, lv_quota_over_t *why);
/** One frame (a credit granted, an analyze request) charged to the principal and its tenant. */
void lv_quota_frame(struct lv_app *app, const char *principal, const char *tenant);
/** An answer's end: tokens charged always, the answer itself when answered. */
void lv_quota_answer(struct lv_app *app, const char *principal, const char *tenant, int64_t tokens, bool answered);
/** Would one more live session put who (or its tenant) over its sessions quota? */
bool lv_quota_sessions_over(struct lv_app *app, const lv_principal_t *who, lv_quota_over_t *why);
/** The sessions quotas of principal (0 = none; only a user's "u:<id>" has one) and of its tenant,
 * from the accounts snapshot; both 0 without accounts. Cluster mode hands them to the admission
 * script, which counts live sessions cluster-wide (lv_cluster_sessions.h). */
void lv_quota_sessions_limits(struct lv_app *app, const char *principal, const char *tenant, int64_t *user_max,
                              int64_t *tenant_max);
/** Fill *why for a hello refused by the sessions quota of the user (tenant false) or its tenant,
 * with used live sessions of limit: what lv_quota_sessions_over fills. */
void lv_quota_sessions_refusal(lv_quota_over_t *why, bool tenant, int64_t limit, int64_t used);
/** true the first time session_id is refused for this quota until it renews (the page hears
 * quota_exceeded once, not at every tick). */
bool lv_quota_tell_once(struct lv_app *app, const char *session_id, const lv_quota_over_t *why);

/** The fields of a refusal: {scope, quota, limit, used, renews_at (ISO 8601 UTC, or null),
 * retry_after_s}. NULL without memory. */
json_t *lv_quota_over_json(const lv_quota_over_t *why);
/** A sentence for people: "Quota reached: answers per day for user (120/120), renews at ...". */
void lv_quota_sentence(const lv_quota_over_t *why, char *out, size_t size);
/** The window a count of kind falls in at wall_ms: the minute (fpm) or the UTC day, as a number
 * (unix ms / 60000 or / 86400000). */
int64_t lv_quota_window(int kind, int64_t wall_ms);
/** The Redis key of a counter: "lv:qt:" + scope + ":" + "fpm"|"ans"|"tok" + ":" + window, where
 * scope is the user's principal key as it is ("u:<id>") or "t:" + tenant id. Returns its length,
 * LV_EINVAL (kind out of range, id empty or LV_PRINCIPAL_KEY_MAX long or more, window < 0) or
 * LV_ELIMIT (size too small; out then holds a cut key). */
int lv_quota_redis_key(char *out, size_t size, bool tenant, const char *id, int kind, int64_t window);
/** The user id for usage records: the id in "u:<id>", else the key itself (an address). */
const char *lv_quota_user_of(const char *principal);

#endif

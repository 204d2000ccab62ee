/* lv_quota.h - quotas per user and per tenant (docs/internals/accounts.md "Quotas"): frames per
 * minute (the wall clock's minute), answers and tokens (prompt + completion) per UTC day, live
 * sessions. Limits come from the accounts snapshot (the user's quota and its tenant's; 0 = none);
 * without accounts nothing is limited. Counters live in memory, one record per user or tenant with
 * recent activity (evicted after LV_QUOTA_IDLE_MS idle); a new record's day counters are seeded
 * from the usage table (lv_acct_db_usage_sum since UTC midnight, on the database thread, after a
 * flush of the usage journal so the sum includes every answer journaled before).
 *
 * Cluster mode: the counters are this frontend's only (not shared through Redis yet): a user
 * served by two frontends may get up to twice its fpm; the day counters are seeded from the shared
 * database, so they converge at each re-seed. Loop thread only. */
#ifndef LV_QUOTA_H
#define LV_QUOTA_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "lv_principal.h"

#define LV_QUOTA_IDLE_MS 180000    /* a record idle this long is dropped (re-seeded when it returns) */
#define LV_QUOTA_MAX_RECORDS 100000
#define LV_QUOTA_SWEEP_MS 1000

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
/** true the first time session_id is refused for this quota until it renews (the page hears
 * quota_exceeded once, not at every tick). */
bool lv_quota_tell_once(struct lv_app *app, const char *session_id, const lv_quota_over_t *why);

/** The fields of a refusal: {scope, quota, limit, used, renews_at (ISO 8601 UTC, or null),
 * retry_after_s}. NULL without memory. */
json_t *lv_quota_over_json(const lv_quota_over_t *why);
/** A sentence for people: "Quota reached: answers per day for user (120/120), renews at ...". */
void lv_quota_sentence(const lv_quota_over_t *why, char *out, size_t size);
/** The user id for usage records: the id in "u:<id>", else the key itself (an address). */
const char *lv_quota_user_of(const char *principal);

#endif

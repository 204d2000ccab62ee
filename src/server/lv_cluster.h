/* lv_cluster.h - `serve --redis URL`: this process as one stateless frontend of a cluster
 * (docs/internals/cluster.md, docs/operations.md "Cluster"). It owns the Redis client (lv_redis.h),
 * the queue scripts (lv_cluster_queue.h), the dispatcher the pipeline uses (lv_dispatch_redis.h),
 * this frontend's event channel (lv:ev:<node id>, routed to the dispatcher), the frontend
 * heartbeat (lv:fe, for per-frontend metrics), cluster-wide frame budgets (--user-fpm counted in
 * Redis), the figures behind the cluster metrics (lv_stat.c renders them), and, with
 * --workers-inline, a worker on the same loop and backend pool (lv_worker.h). The sessions' side
 * (records in Redis, resume on any frontend, ownership) is lv_cluster_sessions.h; this module
 * starts, stops and frees it and tells it when Redis goes up or down.
 *
 * Degraded: while Redis is unreachable lv_cluster_up is false; /readyz answers 503, new sessions
 * are refused with cluster_unavailable, pages hear why (no_backend with a sentence) and get no
 * credits (the dispatcher's serves() is false); everything resumes by itself when Redis is back
 * (lv_redis reconnects; no restart).
 *
 * Redis keys of its own (the queue's are in lv_cluster_queue.h):
 *   lv:fe                      hash   frontend id -> "<sessions> <sockets> <wall ms> <nonce>" (nonce:
 *                                     random per process), read back then written every
 *                                     LV_CLUSTER_BEAT_MS; a field older than
 *                                     LV_CLUSTER_FE_STALE_MS is not counted, one older than
 *                                     LV_CLUSTER_FE_FORGET_MS is deleted by whichever frontend sees
 *                                     it (a crashed or scaled-in frontend); removed at a clean stop
 *   lv:fpm:<principal>:<min>   string frames the principal sent in wall-clock minute <min>
 *                                     (unix ms / 60000), summed over frontends (INCRBY: see
 *                                     lv_cluster_fpm_count), expiring 120 s after the last one
 *
 * Lifetime (main.c): lv_cluster_start after the loop, the thread pool and the backend pool exist,
 * before lv_state_start (which keeps no state file in cluster mode) and lv_engine_start (which
 * takes lv_cluster_dispatch as its dispatcher and must not close it); lv_cluster_stop in the
 * second half of the shutdown, after lv_engine_stop cancelled the pipeline's jobs and before the
 * backend pool is destroyed (the inline worker uses it); lv_cluster_free after the loop ended.
 * Stop writes the sessions a last time and removes this frontend's heartbeat, waits (at most
 * LV_CLUSTER_CLOSE_WAIT_MS, on the loop) for Redis to answer what is pending, then closes the
 * client and the dispatcher; the loop runs on until they are closed. Loop thread only. Every
 * function is a no-op, or answers as for a cluster that is down, when c is NULL (single node). */
#ifndef LV_CLUSTER_H
#define LV_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lv_jobmsg.h"
#include "lv_redis.h"

#define LV_CLUSTER_BEAT_MS 1000         /* frontend heartbeat and --user-fpm flush period */
#define LV_CLUSTER_FE_STALE_MS 5000     /* a frontend's heartbeat older than this is not shown */
#define LV_CLUSTER_FE_FORGET_MS 60000   /* ... older than this is deleted from lv:fe */
#define LV_CLUSTER_FRONTENDS_MAX 64     /* frontends shown in /metrics (the rest are left out) */
#define LV_CLUSTER_CLOSE_WAIT_MS 1000   /* how long stop waits for Redis's last replies */
#define LV_CLUSTER_FPM_PRINCIPALS_MAX 65536 /* principals whose frames this frontend counts */

struct lv_app;
struct lv_dispatch;
struct lv_worker;
typedef struct lv_cluster lv_cluster_t;

/** One frontend's last heartbeat, as read back from lv:fe. */
typedef struct {
    char id[LV_NODE_ID_MAX + 1];
    size_t sessions, sockets;
    uint64_t age_ms;                    /* since its heartbeat, by this machine's wall clock */
} lv_cluster_fe_t;

/** Set up app->cluster when app->cfg.redis_url is set (leaves it NULL and returns 0 otherwise):
 * node id (cfg.node_id, else 12 random hex digits), the Redis client (connecting in the
 * background: does not wait for Redis), the queue scripts, the dispatcher, the event channel, the
 * cluster sessions (lv_csess_start), the heartbeat timer and, with cfg.workers_inline, a worker on
 * app->loop and app->pool. Logs why and returns non-zero (LV_EINVAL, LV_ENOMEM, LV_EIO) when it
 * cannot; app->cluster is then NULL and nothing is left running. */
int lv_cluster_start(struct lv_app *app);
/** Shutdown (see Lifetime above). Idempotent. */
void lv_cluster_stop(struct lv_app *app);
/** After the loop ended: free what is left (the sessions' side included); app->cluster = NULL. */
void lv_cluster_free(struct lv_app *app);

/** The pipeline's dispatcher in cluster mode (owned by the cluster: the engine must not close
 * it). NULL after lv_cluster_stop. */
struct lv_dispatch *lv_cluster_dispatch(lv_cluster_t *c);
/** The Redis client (for lv_cluster_sessions.c). NULL once stop has closed it. */
lv_redis_t *lv_cluster_redis(lv_cluster_t *c);
/** This frontend's id in the cluster ("" for NULL). */
const char *lv_cluster_node_id(const lv_cluster_t *c);
/** The Redis URL without its password, for logs and pages ("" for NULL). */
const char *lv_cluster_url(const lv_cluster_t *c);
/** Redis reachable (the command connection is up). False for NULL and after stop. */
bool lv_cluster_up(const lv_cluster_t *c);
/** /readyz: Redis reachable, not stopping, and no other live frontend writes heartbeats under this
 * node id (seen within LV_CLUSTER_FE_STALE_MS: two frontends with one id would share job ids,
 * an event channel and session ownership, so answers could reach the wrong page; logged as an
 * error). Else false with why set ("redis unreachable", ...; static). */
bool lv_cluster_ready(const lv_cluster_t *c, const char **why);
/** The inline worker (--workers-inline), or NULL. */
struct lv_worker *lv_cluster_worker(lv_cluster_t *c);

/** The principal's frames this minute, cluster-wide: the last total read from Redis plus what this
 * frontend counted since (sent or not), below fpm. The credit rule for --user-fpm. The first
 * question about a principal makes the next round read its total (until then this frontend
 * counts from 0). True when fpm is 0 or c is NULL, and when the principal table is full
 * (LV_CLUSTER_FPM_PRINCIPALS_MAX: fail open, logged once a minute). */
bool lv_cluster_fpm_allows(lv_cluster_t *c, const char *principal, unsigned fpm);
/** Count one frame taken from principal against the cluster-wide minute. Counts are sent to Redis
 * every LV_CLUSTER_BEAT_MS, and at once when this frontend holds half its share of what is left
 * of the budget (left / live frontends / 2) or the budget is 8/10 used: the frontends together
 * overshoot fpm by a few frames at most (those counted while a send is in flight), not by a
 * second's worth. Measured: 2 frontends, one principal at 30 frames/s, fpm 40 and 120: 41 and 121
 * frames counted in the minute. */
void lv_cluster_fpm_count(lv_cluster_t *c, const char *principal);
/** Milliseconds until the cluster-wide minute the budgets count in renews (wall clock), for the
 * page's "frames are accepted again in N s". */
uint64_t lv_cluster_fpm_retry_ms(const lv_cluster_t *c);

/** The frontends whose heartbeat is fresher than LV_CLUSTER_FE_STALE_MS (this one included once
 * its first heartbeat was read back), at most max of them; returns how many were written. */
size_t lv_cluster_frontends(const lv_cluster_t *c, lv_cluster_fe_t *out, size_t max);

#endif

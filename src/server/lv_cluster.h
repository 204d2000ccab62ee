/* lv_cluster.h - `serve --redis URL`: this process as one stateless frontend of a cluster
 * (docs/internals/cluster.md). It owns the Redis client (lv_redis.h), the queue scripts
 * (lv_cluster_queue.h), the dispatcher the pipeline uses (lv_dispatch_redis.h), this frontend's
 * event channel (lv:ev:<node id>, routed to the dispatcher), the frontend heartbeat (lv:fe, for
 * per-frontend metrics), cluster-wide frame budgets (--user-fpm counted in Redis), the cluster
 * metrics, and, with --workers-inline, a worker on the same loop (lv_worker.h). The sessions'
 * side (records in Redis, resume on any frontend, ownership) is lv_cluster_sessions.h.
 *
 * Degraded: while Redis is unreachable lv_cluster_up is false; /readyz answers 503, new sessions
 * are refused with cluster_unavailable, pages hear why (no_backend with a sentence) and get no
 * credits; everything resumes by itself when Redis is back (no restart).
 *
 * Lifetime: lv_cluster_start after the loop and thread pool exist and before lv_engine_init (which
 * takes lv_cluster_dispatch as its dispatcher); lv_cluster_stop when shutdown begins (after the
 * pipeline cancelled its jobs); lv_cluster_free after the loop ended. Loop thread only. No-ops when
 * app->cfg.redis_url is empty (single node). */
#ifndef LV_CLUSTER_H
#define LV_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>

#include "lv_redis.h"

struct lv_app;
struct lv_dispatch;
typedef struct lv_cluster lv_cluster_t;

/** Set up app->cluster (NULL in single-node mode). Logs why and returns non-zero when it cannot
 * (a bad URL is caught by lv_config_validate before). Does not wait for Redis. */
int lv_cluster_start(struct lv_app *app);
void lv_cluster_stop(struct lv_app *app);
void lv_cluster_free(struct lv_app *app);

/** The pipeline's dispatcher in cluster mode (owned by the cluster). */
struct lv_dispatch *lv_cluster_dispatch(lv_cluster_t *c);
lv_redis_t *lv_cluster_redis(lv_cluster_t *c);
const char *lv_cluster_node_id(const lv_cluster_t *c);
/** Redis reachable (the command connection is up). */
bool lv_cluster_up(const lv_cluster_t *c);
/** The principal's frames this minute, cluster-wide (the last figure read from Redis plus what
 * this frontend counted since): the credit rule for --user-fpm. */
bool lv_cluster_fpm_allows(lv_cluster_t *c, const char *principal, unsigned fpm);
/** Count one frame taken from principal (credited against the cluster-wide minute). */
void lv_cluster_fpm_count(lv_cluster_t *c, const char *principal);

#endif

/* lv_dispatch_redis.h - the dispatch port (lv_port_dispatch.h) of a cluster frontend: a job goes
 * to the cluster's queue in Redis (lv_cluster_queue.h: enqueue), a worker takes it in fair order
 * across users and sends it, and its events come back on this frontend's channel (lv:ev:<id>,
 * handed in through lv_dispatch_redis_on_message by whoever owns the pub/sub connection).
 *
 * What the pipeline sees:
 *   - capacity: the slots of the workers alive now (their heartbeats, refreshed every 500 ms),
 *     times cfg.out_factor; free_slots: that minus this frontend's jobs in the cluster (queued or
 *     running): each frontend keeps at most that many jobs out, so every user with demand has a
 *     job waiting in the queue when its turn comes (the queue, not the frontend, decides the order);
 *   - serves: false, with a sentence for the page, while Redis is unreachable or no worker is
 *     alive (the pipeline then asks for no frames); until the first workers snapshot after Redis
 *     is reached, true with capacity 0 (frames wait);
 *   - reopened: the slots gained when workers join or Redis comes back (frames waiting in the
 *     local queue need a run then, and no job ending would give them one);
 *   - submit: the job's body is queued with a deadline (the frame's receipt + max_frame_age: the
 *     same rule as the local queue, so a frame that waited in the local queue has that much less
 *     left); `started` comes when a worker sends the request, with its backend id and model;
 *     LV_EAGAIN while this frontend has `capacity` jobs out; LV_ENOTFOUND with the sentence while
 *     Redis is down; submit never delivers an event (a failure it detects is its return value);
 *   - replace_frame: a newer frame for a job still waiting in the queue replaces its body (latest
 *     wins cluster-wide; no second job);
 *   - cancel: a waiting job is removed from the queue; a running one is taken back by its worker
 *     (lv:cancel).
 * Every job ends within a bounded time, whatever fails: a job still unstarted LV_DREDIS_GRACE_MS
 * after its deadline ends stale (and leaves the queue); a worker that drops a job unsent (past its
 * deadline) makes it end stale too; a started job whose worker stops heartbeating
 * (LV_CQ_WORKER_STALE_MS) ends with worker_lost; while Redis is down, jobs in the cluster end with
 * cluster_unavailable (their answers cannot reach this frontend any more); a started job ends with
 * cluster_unavailable when the client reconnected one of its connections while commands kept
 * working (lv_redis_stats.reconnects grew: the subscriber's, and pub/sub keeps no message for a
 * client that was away). These endings are delivered from a timer of this dispatcher (a loop turn
 * of their own, never inside a pipeline call; a worker's stale drop comes with its event); a done
 * carries rc != 0, error_code "stale",
 * "worker_lost" or "cluster_unavailable", a sentence, job->backend_id "cluster" when no worker had
 * named one (the pipeline prefixes error messages with it), and cfg.lost hears the reason. A worker's
 * done with requeue set is not passed on: the worker queued the job again itself.
 *
 * Ownership: created by the frontend (lv_cluster.c), given to the pipeline; r and the scripts
 * are borrowed and must outlive it. lv_dispatch_redis_close after the pipeline cancelled its jobs.
 * Loop thread only. */
#ifndef LV_DISPATCH_REDIS_H
#define LV_DISPATCH_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "lv_cluster_queue.h"
#include "lv_jobmsg.h"
#include "lv_port_dispatch.h"
#include "lv_redis.h"

#define LV_DREDIS_GRACE_MS 2000
#define LV_DREDIS_REFRESH_MS 500
#define LV_DREDIS_WORKERS_MAX 256

typedef struct {
    const char *frontend_id;     /* copied */
    int max_frame_age_ms;        /* > 0: a job's deadline is its frame's receipt + this; 0: two
                                  * of its session's intervals, at least 2 s (lv_pipeline_ready's
                                  * rule) */
    size_t max_frame_bytes;      /* cap of a job body's JPEG */
    unsigned out_factor;         /* jobs this frontend may keep out per live worker slot (capacity
                                  * and free_slots as the pipeline sees them); 0 = 1. A frontend
                                  * runs with 2: for the queue to decide the order, a backlogged
                                  * user must have a job WAITING there when a slot frees, not only
                                  * the one running; with each user held to its share of the slots
                                  * (the local fair queue's bound), twice the slots gives every
                                  * share s >= 1 room for s + 1 (docs/internals/cluster.md) */
    void *ud;
    /** The user's fair-share weight (1..1000) within its tenant. NULL = 1. */
    unsigned (*weight_of)(void *ud, const char *user);
    /** The tenant's fair-share weight (1..1000) among tenants. NULL = 1. */
    unsigned (*tenant_weight_of)(void *ud, const char *tenant);
    /** A job ended without an answer for a cluster reason ("stale", "worker_lost",
     * "cluster_unavailable"), for metrics. May be NULL. */
    void (*lost)(void *ud, const char *reason);
} lv_dispatch_redis_cfg_t;

typedef struct {
    char id[LV_NODE_ID_MAX + 1];
    size_t capacity, in_flight;
    uint64_t age_ms;             /* since its last heartbeat */
} lv_dredis_worker_t;

typedef struct {
    bool up;                     /* Redis reachable */
    size_t queue_len;            /* jobs waiting cluster-wide */
    uint64_t oldest_ms;          /* age of the oldest waiting job; 0 = none */
    uint64_t stale_total;        /* jobs workers dropped as stale, cluster-wide */
    size_t capacity;             /* live workers' slots */
    size_t jobs_out;             /* this frontend's jobs in the cluster */
    size_t n_workers;            /* live */
    lv_dredis_worker_t workers[LV_DREDIS_WORKERS_MAX];
} lv_dredis_stats_t;

/** Starts the 500 ms refresh at once. LV_EINVAL (frontend_id empty, over LV_NODE_ID_MAX or with
 * bytes other than [A-Za-z0-9_.:-]: it becomes part of every job id), LV_ENOMEM. */
int lv_dispatch_redis_create(uv_loop_t *loop, lv_redis_t *r, const lv_cq_scripts_t *scripts,
                             const lv_dispatch_redis_cfg_t *cfg, lv_dispatch_t **out);
/** One message from this frontend's event channel (lv:ev:<frontend id>). Unknown jobs (a
 * cancelled or already ended one, another frontend's) are ignored. */
void lv_dispatch_redis_on_message(lv_dispatch_t *d, const char *payload, size_t len);
/** Redis went up or down (the owner of r hears it: lv_redis_cfg_t.on_state). Down: every job in
 * the cluster ends (cluster_unavailable, on a later loop turn) and serves() says why. The refresh
 * also looks at lv_redis_up itself, so a missed call only delays this by up to 500 ms. */
void lv_dispatch_redis_set_up(lv_dispatch_t *d, bool up);
void lv_dispatch_redis_stats(const lv_dispatch_t *d, lv_dredis_stats_t *out);
/** After the pipeline cancelled its jobs (any left are dropped without events); frees
 * everything once its timers are closed and the Redis callbacks it has pending have run (they do
 * nothing after close; lv_redis_close runs them). NULL ignored. */
void lv_dispatch_redis_close(lv_dispatch_t *d);

#endif

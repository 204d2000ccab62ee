/* lv_worker.h - a cluster worker (docs/internals/cluster.md): takes jobs from the cluster's queue
 * in Redis (lv_cluster_queue.h) while its backend pool has free slots, sends each through this
 * process's dispatcher (lv_dispatch_local: adaptive windows, circuit breakers, retry, frame
 * shaping), and publishes the job's events to the frontend that queued it. A job whose deadline
 * has passed when it is taken is dropped unsent (counted, and its frontend told). A job taken
 * back by its frontend (lv:cancel) is cancelled at the backend. Heartbeats its capacity and load
 * into lv:workers every second. Loop thread only.
 *
 * Two ways to run one: `livevlm worker --redis URL --backend ...` (lv_worker_main: its own loop,
 * backend pool, and a small HTTP listener for /metrics, /healthz and /readyz), or inside a
 * frontend (`serve --redis URL --workers-inline`: lv_worker_start on the frontend's loop and pool). */
#ifndef LV_WORKER_H
#define LV_WORKER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "lv_config.h"

struct lv_pool;
typedef struct lv_worker lv_worker_t;

typedef struct {
    uint64_t taken;          /* jobs taken from the queue */
    uint64_t stale;          /* ... dropped because their deadline had passed */
    uint64_t cancelled;      /* ... taken back by their frontend */
    uint64_t answered;       /* ... ended with an answer */
    uint64_t failed;         /* ... ended with an error */
    size_t in_flight;        /* now */
    size_t capacity;         /* slots its backends take now (the windows' sum) */
    double take_ms_p99;      /* enqueue -> taken, recent p99 (the queue's wait) */
} lv_worker_stats_t;

/** `livevlm worker ...`: parse flags (the serve flags that apply: --redis (required), --backend*,
 * timeouts, --node-id, --host/--port for its metrics listener (default 127.0.0.1:0, plain HTTP),
 * --log-level), run until SIGINT/SIGTERM (jobs in flight finish or fail within 5 s, the heartbeat
 * is removed), return the exit status. */
int lv_worker_main(const char *prog, int argc, char **argv);

/** Start a worker on an existing loop and backend pool (cfg borrowed for the worker's life:
 * redis_url, node_id, timeouts, backends). LV_EINVAL (bad URL), LV_ENOMEM. */
int lv_worker_start(uv_loop_t *loop, struct lv_pool *pool, const lv_config_t *cfg, lv_worker_t **out);
/** Stop taking jobs, cancel those in flight (their frontends hear an error), remove the
 * heartbeat, free once closed. NULL ignored. */
void lv_worker_stop(lv_worker_t *w);
void lv_worker_stats(const lv_worker_t *w, lv_worker_stats_t *out);

#endif

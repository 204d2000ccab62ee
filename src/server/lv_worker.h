/* lv_worker.h - a cluster worker (docs/internals/cluster.md): takes jobs from the cluster's queue
 * in Redis (lv_cluster_queue.h) while its backend pool has free slots, sends each through this
 * process's dispatcher (lv_dispatch_local: adaptive windows, circuit breakers, retry, frame
 * shaping), and publishes the job's events to the frontend that queued it. A job whose deadline
 * has passed when it is taken is dropped unsent (counted, and its frontend told). A job taken
 * back by its frontend (lv:cancel) is cancelled at the backend. Heartbeats its capacity and load
 * into lv:workers every second. Loop thread only.
 *
 * Two ways to run one: `livevlm worker --redis URL --backend ...` (lv_worker_main, in
 * lv_worker_main.c: its own loop, backend pool, and a small HTTP listener for /metrics, /healthz
 * and /readyz), or inside a frontend (`serve --redis URL --workers-inline`: lv_worker_start on the frontend's loop and pool).
 *
 * Taking jobs: one `pop` script call at a time while free slots (the pool's, less jobs held here)
 * remain; when the queue is empty, one BLPOP on lv:q:ready (1 s) wakes it. A job the pool cannot
 * place after all (a window shrank) is held here, retried every 20 ms, handed back to the queue
 * after 500 ms. Events: started at once, deltas coalesced to one PUBLISH per job per 40 ms, done
 * with the whole answer; a job that failed before its first token with the other backends full
 * (result.requeue) goes back to the queue instead. Redis down: nothing is taken, running jobs
 * finish with their events lost (their frontends end them), taking resumes when it is back. */
#ifndef LV_WORKER_H
#define LV_WORKER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "lv_buf.h"
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
    bool redis_up;           /* its Redis command connection is up (jobs can be taken) */
} lv_worker_stats_t;

/** `livevlm worker ...`: parse flags (the serve flags that apply: --redis (required), --backend*,
 * timeouts, --node-id, --host/--port/--port-file for its metrics listener (default 127.0.0.1:0,
 * plain HTTP: GET /metrics, /healthz, /readyz; one request per connection, 8 KiB head, 5 s),
 * --log-level), run until SIGINT/SIGTERM (jobs in flight are cancelled and their frontends hear
 * worker_stopping, the heartbeat is removed, exit within 5 s), return the exit status: 0, 2 for a
 * flag error (no --redis included), 1 when it cannot start. argv[0] is the command's own name
 * ("worker", as main passes it: lv_worker_main(prog, argc - 1, argv + 1)); an argv that starts
 * with a flag is taken whole. */
int lv_worker_main(const char *prog, int argc, char **argv);

/** Start a worker on an existing loop and backend pool (cfg borrowed for the worker's life:
 * redis_url, node_id ("" = random), timeouts, max_frame_*). It opens its own Redis client (name
 * "worker <id>"), subscribes to lv:cancel, and takes jobs once Redis is up. LV_EINVAL (bad URL),
 * LV_ENOMEM. */
int lv_worker_start(uv_loop_t *loop, struct lv_pool *pool, const lv_config_t *cfg, lv_worker_t **out);
/** Stop taking jobs, cancel those in flight at their backends (their frontends hear done with
 * code worker_stopping while Redis is up), hand the ones not started yet back to the queue, remove
 * the heartbeat. Returns at once and touches the pool no more (it may be destroyed right after);
 * the worker frees itself from the loop once Redis answered those last commands (at most 2 s
 * later): the loop must keep running until then. w is invalid after the call. NULL ignored. */
void lv_worker_stop(lv_worker_t *w);
/** Counters since start; in_flight, capacity and take_ms_p99 as of now. */
void lv_worker_stats(const lv_worker_t *w, lv_worker_stats_t *out);
/** Its Redis command connection is up (jobs can be taken): /readyz, without lv_worker_stats's sort. */
bool lv_worker_redis_up(const lv_worker_t *w);
/** Append the worker's Prometheus series (livevlm_worker_*: jobs by outcome, taken, in flight,
 * capacity, take wait p99, Redis up) to b: `livevlm worker`'s /metrics and, with --workers-inline,
 * the frontend's. LV_ELIMIT, LV_ENOMEM. */
int lv_worker_metrics(const lv_worker_t *w, lv_buf_t *b);

#endif

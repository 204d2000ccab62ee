/* lv_cluster_queue.h - the cluster's job queue in Redis: key layout and the Lua scripts that are
 * its only writers, shared by frontends (enqueue, replace, cancel) and workers (pop). One Redis,
 * not Redis Cluster: the scripts touch keys they derive themselves. docs/internals/cluster.md
 * says why the queue is fair across users and how; this header is the contract.
 *
 * Keys (every key starts with LV_CQ_PREFIX):
 *   lv:j:<job id>        string  the job body (lv_jobmsg.h) while it waits; gone once taken or cancelled
 *   lv:q:u:<user>        list    the user's waiting job ids, oldest first
 *   lv:q:users           zset    users with something waiting; score = the virtual start time of
 *                                their next job (start-time fair queuing, weighted)
 *   lv:q:w               hash    user -> weight (the last enqueue's), while the user has jobs waiting
 *   lv:q:last            hash    user -> the virtual time its next job would start at, kept when
 *                                its list empties (so leaving and coming back earns no credit);
 *                                entries at or below lv:q:vt mean nothing and are dropped as met
 *   lv:q:vt              string  the virtual time: the start tag of the job taken last
 *   lv:q:age             zset    job id -> enqueue wall ms (the oldest waiting job's age)
 *   lv:q:len             string  jobs waiting (INCR/DECR by the scripts only)
 *   lv:q:ready           list    one token per enqueued job, never more than lv:q:len: workers BLPOP
 *                                it to wake up (and pop again after their BLPOP timeout anyway)
 *   lv:workers           hash    worker id -> "<capacity> <in flight> <wall ms>" (worker heartbeat
 *                                every second; a field older than LV_CQ_WORKER_STALE_MS is dead)
 *   lv:stat:stale        string  jobs dropped by a worker because their deadline had passed (the
 *                                worker INCRs it; the only key here no script writes)
 * Channels:
 *   lv:ev:<frontend id>  a frontend's job events (lv_jobev_t), published by workers
 *   lv:cancel            job ids taken back by their frontend after a worker took them */
#ifndef LV_CLUSTER_QUEUE_H
#define LV_CLUSTER_QUEUE_H

#include "lv_redis.h"

#define LV_CQ_PREFIX "lv:"
#define LV_CQ_READY_KEY "lv:q:ready"
#define LV_CQ_WORKERS_KEY "lv:workers"
#define LV_CQ_CANCEL_CHANNEL "lv:cancel"
#define LV_CQ_EVENT_CHANNEL_PREFIX "lv:ev:"
#define LV_CQ_WORKER_HEARTBEAT_MS 1000
#define LV_CQ_WORKER_STALE_MS 3000

/* The scripts' handles for lv_redis_eval. None takes KEYS (nkeys = 0): each derives its keys from
 * the fixed names above and its ARGV. Each checks its arguments before writing anything and answers
 * a Redis error reply ("ERR lv <script>: expected ...") for bad ones. */
typedef struct {
    /** ARGV: job id, user, weight (clamped to 1..1000), body, enqueue wall ms. Returns 1 (queued at
     * the tail of the user's list), or 0 when a job with that id already waits (its body is
     * replaced, nothing is added: an enqueue sent twice queues the job once). A worker hands a job
     * back (requeue) with the same script, id, body and original enqueue time. */
    int enqueue;
    /** ARGV: job id, new body. Returns 1 when the job was still waiting (body replaced), else 0. */
    int replace;
    /** ARGV: job id, user (the one it was enqueued under). Returns 1 when it was still waiting (now
     * gone, len/age updated), 0 when a worker has it (or it never existed). */
    int cancel;
    /** ARGV: none. Returns nil when nothing waits, else [job id, body]: the head job of the user
     * with the smallest tag; lv:q:vt becomes that tag and the user's tag advances by 1/weight.
     * Skips (and counts out) ids whose body is gone, at most 256 per call (nil past that).
     * Clears lv:q:ready when the queue is empty and trims it to lv:q:len tokens otherwise. */
    int pop;
    /** ARGV: none. Returns [len, oldest enqueue wall ms or 0, stale count]. */
    int stats;
} lv_cq_scripts_t;

/** Register the scripts on r (lv_redis_script_add). 0 or its error. */
int lv_cq_scripts_add(lv_redis_t *r, lv_cq_scripts_t *out);

#endif

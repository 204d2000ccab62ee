/* lv_cluster_queue.h - the cluster's job queue in Redis: key layout and the Lua scripts that are
 * its only writers, shared by frontends (enqueue, replace, cancel) and workers (pop). One Redis,
 * not Redis Cluster: the scripts touch keys they derive themselves. docs/internals/cluster.md
 * says why the queue is fair across users and how; this header is the contract.
 *
 * Keys (every key starts with LV_CQ_PREFIX):
 *   lv:j:<job id>        string  the job body (lv_jobmsg.h) while it waits; gone once taken or cancelled
 *   lv:q:u:<user>        list    the user's waiting job ids, oldest first
 *   lv:q:ten             zset    tenants with something waiting; score = the virtual start time of
 *                                their next job (start-time fair queuing, weighted, two levels)
 *   lv:q:tw              hash    tenant -> weight (the last enqueue's), while it has jobs waiting
 *   lv:q:tlast           hash    tenant -> its next tag, kept when its last user leaves (as lv:q:last)
 *   lv:q:vt              string  the virtual time among tenants: the tenant tag of the job taken last
 *   lv:q:tu:<tenant>     zset    the tenant's users with something waiting; score = the virtual start
 *                                time of their next job within the tenant
 *   lv:q:tvt             hash    tenant -> its virtual time among its users (kept: tenants are few)
 *   lv:q:ut              hash    user -> its tenant, while the user has jobs waiting
 *   lv:q:w               hash    user -> weight (the last enqueue's), while the user has jobs waiting
 *   lv:q:last:<tenant>   hash    user -> the virtual time its next job would start at, kept when
 *                                its list empties (so leaving and coming back earns no credit);
 *                                entries at or below the tenant's lv:q:tvt mean nothing, dropped as met
 *   lv:q:age             zset    job id -> enqueue wall ms (the oldest waiting job's age)
 *   lv:q:dl              hash    job id -> "<deadline wall ms> <frontend id>" while the job waits and
 *                                its enqueue gave a deadline (pop drops a job past it, unsent)
 *   lv:q:len             string  jobs waiting (INCR/DECR by the scripts only)
 *   lv:q:ready           list    one token per enqueued job, never more than lv:q:len: workers BLPOP
 *                                it to wake up (and pop again after their BLPOP timeout anyway)
 *   lv:workers           hash    worker id -> "<capacity> <in flight> <wall ms>" (worker heartbeat
 *                                every second; a field older than LV_CQ_WORKER_STALE_MS is dead)
 *   lv:stat:stale        string  jobs dropped because their deadline had passed: by pop (INCRBY) or
 *                                by a worker that found a taken job stale (INCR)
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
#define LV_CQ_POP_MAX 32 /* the most jobs one pop takes */

/* The scripts' handles for lv_redis_eval. None takes KEYS (nkeys = 0): each derives its keys from
 * the fixed names above and its ARGV. Each checks its arguments before writing anything and answers
 * a Redis error reply ("ERR lv <script>: expected ...") for bad ones. */
typedef struct {
    /** ARGV: job id, user, weight (clamped to 1..1000), body, enqueue wall ms, and optionally the
     * deadline wall ms, the frontend id, the tenant (1..64 bytes; none or "" = "default") and the
     * tenant's weight (clamped to 1..1000; none = 1). A user already waiting stays in the tenant
     * it joined under. The deadline and frontend are there to tell when the job goes stale (both kept in lv:q:dl;
     * a job enqueued without a deadline is never dropped by pop, only by the worker that reads its
     * body). Returns 1 (queued at the tail of the user's list), or 0 when a job with that id already
     * waits (its body and deadline are replaced, nothing is added: an enqueue sent twice queues the
     * job once). A worker hands a job back (requeue) with the same script, id, body, original
     * enqueue time, deadline and frontend. */
    int enqueue;
    /** ARGV: job id, new body, optionally the new deadline wall ms. Returns 1 when the job was still
     * waiting (body replaced; its deadline too, or dropped when none is given, so the old one never
     * makes pop drop the newer picture), else 0. */
    int replace;
    /** ARGV: job id, user (the one it was enqueued under). Returns 1 when it was still waiting (now
     * gone, len/age/dl updated), 0 when a worker has it (or it never existed). */
    int cancel;
    /** ARGV: now (wall ms, the caller's clock), max jobs to take (1..32). Returns nil when it neither
     * took a job nor dropped a stale one, else a 2-element array {taken, stale}:
     *   taken  [id1, body1, id2, body2, ...]  up to max jobs, in fair order: each is the head job of
     *          the user with the smallest tag in the tenant with the smallest tag at its turn;
     *          lv:q:vt becomes the tenant's tag, the tenant's virtual time the user's, and the tags
     *          advance by 1/tenant weight and 1/user weight (the same order as that many pops of one);
     *   stale  [id1, frontend1, ...]  jobs found at a head past their deadline (now > deadline):
     *          removed unsent and counted in lv:stat:stale, WITHOUT advancing their user's tag (the
     *          user keeps its turn: its next job is looked at again); frontend is "" when the
     *          enqueue gave none. The caller tells each frontend (a stale done event).
     * Either list may be empty. Ids whose body is gone are skipped the same way, uncounted. Work per
     * call is bounded: it stops at max taken, 64 stale or 256 bodiless ids; a reply with stale jobs
     * and fewer than max taken may leave more waiting, so pop again. Clears lv:q:ready (and lv:q:dl)
     * when the queue is empty and trims lv:q:ready to lv:q:len tokens otherwise. */
    int pop;
    /** ARGV: none. Returns [len, oldest enqueue wall ms or 0, stale count]. */
    int stats;
} lv_cq_scripts_t;

/** Register the scripts on r (lv_redis_script_add). 0 or its error. */
int lv_cq_scripts_add(lv_redis_t *r, lv_cq_scripts_t *out);

#endif

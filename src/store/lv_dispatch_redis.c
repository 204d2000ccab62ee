/* lv_dispatch_redis.c - the dispatch port of a cluster frontend (lv_dispatch_redis.h): jobs go to
 * the cluster's queue in Redis, their events come back on this frontend's channel, and every job
 * ends within a bounded time whatever fails. */
#include "lv_dispatch_redis.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lv_common.h"
#include "lv_log.h"
#include "lv_session.h"

/* Worker ids kept for the liveness check of started jobs (a cluster has tens of workers; a
 * hash value from outside cannot make this set grow past the cap). */
#define LIVE_MAX 4096
/* One worker's capacity as read from its heartbeat: more is nonsense, and summing stays safe. */
#define WORKER_CAPACITY_MAX 100000
/* Jobs ended per wake-up of the ending timer; the rest on the next loop turn. */
#define ENDINGS_PER_TURN 256

static const char MSG_DOWN[] =
    "The cluster's job queue (Redis) cannot be reached; answers resume by themselves when it is back.";
static const char MSG_NO_WORKER[] = "No worker is running in the cluster: start `livevlm worker --redis ...`.";

/* How a job ends without its worker's done event. */
typedef enum {
    END_NONE = 0,
    END_STALE,           /* unstarted past deadline + grace, or a worker dropped it unsent */
    END_WORKER_LOST,     /* started, and its worker stopped heartbeating */
    END_UNAVAILABLE,     /* Redis went down: its events can no longer reach us */
    END_EVENTS_LOST,     /* started, and the connection that brings its events was re-made */
    END_REFUSED,         /* the enqueue script failed */
} end_t;

typedef struct dredis dredis_t;

/* One job of ours in the cluster. Lives while it is out (job set) and while Redis callbacks that
 * carry it are pending: both hold a reference. */
typedef struct {
    dredis_t *d;
    lv_job_t *job;              /* NULL once it ended or was cancelled: nothing reaches it again */
    int refs;
    lv_hmap_node_t node;        /* in d->jobs (keyed by id) while its events are wanted */
    bool in_table;
    lv_queue_t link;            /* d->out while out, d->endings once an ending was decided */
    end_t ending;
    bool started_sent;          /* the pipeline heard started */
    uint64_t running_since_us;  /* monotonic: a worker said started; 0 = waiting in the queue */
    uint64_t deadline_wall_ms;
    uint64_t ttft_floor_us;
    unsigned weight;            /* its user's, 1..1000, when it was queued */
    unsigned tenant_weight;     /* its tenant's, 1..1000, when it was queued */
    char id[LV_JOB_ID_MAX + 1];
    char user[LV_PRINCIPAL_KEY_MAX];
    char tenant[LV_PRINCIPAL_ID_MAX]; /* the session's: the queue's first level */
    char worker[LV_NODE_ID_MAX + 1]; /* who runs it; "" while it waits */
} rjob_t;

struct dredis {
    lv_dispatch_t port; /* first: the pipeline's pointer is ours */
    lv_dispatch_redis_cfg_t cfg;
    char frontend_id[LV_NODE_ID_MAX + 1];
    uv_loop_t *loop;
    lv_redis_t *r;
    lv_cq_scripts_t scripts;
    uv_timer_t refresh;         /* LV_DREDIS_REFRESH_MS: workers, queue stats, stale sweep */
    uv_timer_t end_timer;       /* 0 ms: delivers decided endings on a loop turn of their own */
    int holds;                  /* the owner's (until close), open handles, pending callbacks */
    bool closed;
    bool up;                    /* Redis reachable */
    bool known;                 /* a workers snapshot came since Redis was last (re)reached */
    uint64_t seq;               /* the last job id's number */
    uint64_t reconnects;        /* lv_redis_stats's, as last seen */

    lv_hmap_t jobs;             /* id -> rjob_t, jobs whose events are wanted */
    lv_queue_t out;             /* rjob_t.link: out, no ending decided; oldest first */
    lv_queue_t endings;         /* rjob_t.link: ending decided, done not yet delivered */
    size_t n_out;               /* out + endings: what counts against capacity */
    lv_buf_t body;              /* a job body being encoded (lv_redis_eval copies it) */
    lv_buf_t evtext;            /* an event's unescaped text */

    bool workers_pending, stats_pending;
    uint64_t workers_sent_us;   /* monotonic: when the pending HGETALL went out */
    char (*live)[LV_NODE_ID_MAX + 1]; /* live worker ids, sorted (bsearch) */
    size_t n_live;
    size_t capacity;            /* the live workers' slots */
    size_t opened;              /* slots gained since reopened() was last asked */
    size_t n_workers;
    lv_dredis_worker_t workers[LV_DREDIS_WORKERS_MAX]; /* age_ms filled at stats time */
    uint64_t worker_wall_ms[LV_DREDIS_WORKERS_MAX];    /* their heartbeats */
    size_t queue_len;
    uint64_t oldest_wall_ms;
    uint64_t stale_total;
    uint64_t bad_events;
};

static dredis_t *dredis_of(lv_dispatch_t *port) { return (dredis_t *)port; }
static const dredis_t *dredis_of_const(const lv_dispatch_t *port) { return (const dredis_t *)port; }

/* ---------- lifetimes ---------- */

static void dredis_release(dredis_t *d)
{
    if (--d->holds > 0)
        return;
    free(d->live);
    free(d);
}

static void rjob_unref(rjob_t *rj)
{
    if (--rj->refs == 0)
        free(rj);
}

/* A Redis callback will carry rj: it and the dispatcher stay allocated until it ran. */
static void rjob_hold(rjob_t *rj)
{
    rj->refs++;
    rj->d->holds++;
}

static void rjob_release(rjob_t *rj)
{
    dredis_t *d = rj->d;
    rjob_unref(rj);
    dredis_release(d);
}

static void untable(dredis_t *d, rjob_t *rj)
{
    if (rj->in_table) {
        lv_hmap_remove(&d->jobs, &rj->node);
        rj->in_table = false;
    }
}

/* rj is no longer out (ended or cancelled): nothing about it reaches the pipeline any more. */
static void rjob_detach(dredis_t *d, rjob_t *rj)
{
    untable(d, rj);
    lv_queue_remove(&rj->link);
    rj->job = NULL;
    d->n_out--;
}

static rjob_t *rjob_find(dredis_t *d, const char *id)
{
    lv_hmap_node_t *n = lv_hmap_find_str(&d->jobs, id);
    return n ? LV_CONTAINER_OF(n, rjob_t, node) : NULL;
}

/* ---------- Redis replies ---------- */

/* An integer reply element, or a string one holding digits (Lua numbers come back as integers,
 * HGETALL fields as strings). false for anything else. */
static bool reply_u64(const redisReply *e, uint64_t *out)
{
    if (e->type == REDIS_REPLY_INTEGER) {
        *out = e->integer > 0 ? (uint64_t)e->integer : 0;
        return true;
    }
    if (e->type != REDIS_REPLY_STRING || e->len == 0 || e->len > 20)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < e->len; i++) {
        if (e->str[i] < '0' || e->str[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(e->str[i] - '0');
    }
    *out = v;
    return true;
}

/* "<capacity> <in flight> <wall ms>": three decimal numbers separated by single spaces. */
static bool parse_heartbeat(const char *p, size_t len, uint64_t v[3])
{
    size_t i = 0;
    for (int k = 0; k < 3; k++) {
        if (k > 0) {
            if (i >= len || p[i] != ' ')
                return false;
            i++;
        }
        size_t start = i;
        uint64_t x = 0;
        while (i < len && p[i] >= '0' && p[i] <= '9' && i - start < 19)
            x = x * 10 + (uint64_t)(p[i++] - '0');
        if (i == start)
            return false;
        v[k] = x;
    }
    return i == len;
}

static bool node_id_ok(const char *s, size_t len) { return lv_jobmsg_id_ok(s, len, LV_NODE_ID_MAX); }

static int live_cmp(const void *a, const void *b) { return strcmp(a, b); }

static bool worker_live(const dredis_t *d, const char *id)
{
    return d->n_live && bsearch(id, d->live, d->n_live, sizeof(d->live[0]), live_cmp) != NULL;
}

/* ---------- endings ---------- */

static void finish_as(dredis_t *d, rjob_t *rj, end_t why);

static void on_end_timer(uv_timer_t *t);

static void cancel_in_queue(dredis_t *d, rjob_t *rj);

/* Decide how rj ends; the done event goes out from the ending timer, on a loop turn of its own
 * (never inside a pipeline call). Its events are ignored from now on. */
static void end_job(dredis_t *d, rjob_t *rj, end_t why)
{
    if (!rj->job || rj->ending != END_NONE)
        return;
    rj->ending = why;
    untable(d, rj);
    lv_queue_remove(&rj->link);
    lv_queue_insert_tail(&d->endings, &rj->link);
    /* a worker may still hold it (it took it a moment ago, or is alive behind a partition):
     * take it back so nobody answers into the void */
    if (why == END_STALE || why == END_WORKER_LOST || why == END_EVENTS_LOST)
        cancel_in_queue(d, rj);
    if (!d->closed)
        uv_timer_start(&d->end_timer, on_end_timer, 0, 0);
}

static void ending_result(end_t why, lv_dispatch_result_t *r, const char **reason)
{
    memset(r, 0, sizeof(*r));
    r->text = "";
    switch (why) {
    case END_STALE:
        r->rc = LV_ETIMEDOUT;
        r->stale = true; /* the pipeline drops it as a stale frame (frame_dropped), not an error */
        r->error_code = "stale";
        r->error_message = "The frame waited in the cluster's queue past its deadline and was dropped unanswered; "
                           "a newer frame goes next.";
        *reason = "stale";
        break;
    case END_WORKER_LOST:
        r->rc = LV_EBACKEND;
        r->error_code = "worker_lost";
        r->error_message = "The worker answering this frame stopped; the next frame goes to another worker.";
        *reason = "worker_lost";
        break;
    case END_EVENTS_LOST:
        r->rc = LV_ECLOSED;
        r->error_code = "cluster_unavailable";
        r->error_message = "The connection to the cluster's job queue (Redis) was interrupted and this answer was "
                           "lost on the way; the next frame is sent as usual.";
        *reason = "cluster_unavailable";
        break;
    case END_REFUSED:
        r->rc = LV_EIO;
        r->error_code = "cluster_unavailable";
        r->error_message = "The cluster's job queue (Redis) did not take the frame; the next frame is tried again.";
        *reason = "cluster_unavailable";
        break;
    case END_UNAVAILABLE:
    default:
        r->rc = LV_ECLOSED;
        r->error_code = "cluster_unavailable";
        r->error_message = "The cluster's job queue (Redis) was lost; answers resume when it is back.";
        *reason = "cluster_unavailable";
        break;
    }
}

/* Hand rj's job its done (rj is detached first: the handler may cancel other jobs, and whatever
 * it does, it never reaches this one again). */
static void deliver_done(dredis_t *d, rjob_t *rj, const lv_dispatch_result_t *r, const char *lost_reason)
{
    lv_job_t *job = rj->job;
    rjob_detach(d, rj);
    job->impl = NULL;
    if (!job->backend_id[0]) /* the pipeline prefixes errors with it: say where it failed */
        snprintf(job->backend_id, sizeof(job->backend_id), "cluster");
    if (lost_reason && d->cfg.lost)
        d->cfg.lost(d->cfg.ud, lost_reason);
    d->port.events->done(&d->port, job, r);
}

/* rj ends for a cluster reason: the pipeline hears its done, rj drops the reference it held
 * while out. */
static void finish_as(dredis_t *d, rjob_t *rj, end_t why)
{
    lv_dispatch_result_t res;
    const char *reason = NULL;
    ending_result(why, &res, &reason);
    LV_DEBUG("cluster job %s (answer %llu) ends: %s", rj->id, (unsigned long long)rj->job->answer_id,
             res.error_code);
    deliver_done(d, rj, &res, reason);
    rjob_unref(rj);
}

static void on_end_timer(uv_timer_t *t)
{
    dredis_t *d = t->data;
    for (int n = 0; n < ENDINGS_PER_TURN && !d->closed && !lv_queue_empty(&d->endings); n++) {
        rjob_t *rj = LV_CONTAINER_OF(lv_queue_head(&d->endings), rjob_t, link);
        finish_as(d, rj, rj->ending);
    }
    if (!d->closed && !lv_queue_empty(&d->endings))
        uv_timer_start(&d->end_timer, on_end_timer, 0, 0); /* bounded work per turn */
}

/* Every job out ends (Redis was lost: no event can reach this frontend until it is back, and by
 * then its worker has long published into the void). */
static void end_all(dredis_t *d, end_t why)
{
    while (!lv_queue_empty(&d->out))
        end_job(d, LV_CONTAINER_OF(lv_queue_head(&d->out), rjob_t, link), why);
}

static void set_up(dredis_t *d, bool up)
{
    if (d->closed)
        return;
    if (!up) {
        end_all(d, END_UNAVAILABLE);
        d->capacity = 0;
        d->n_workers = 0;
        d->n_live = 0;
    }
    if (up && !d->up)
        d->known = false; /* until the first snapshot, no verdict on the workers */
    d->up = up;
    lv_redis_stats_t rs;
    lv_redis_stats(d->r, &rs);
    d->reconnects = rs.reconnects; /* a reconnect that came with this change is accounted for */
}

/* ---------- cancel ---------- */

static void on_cancel_reply(void *ud, const redisReply *reply, const char *err)
{
    rjob_t *rj = ud;
    dredis_t *d = rj->d;
    (void)err;
    uint64_t v = 1;
    if (!d->closed && reply && reply_u64(reply, &v) && v == 0) {
        /* a worker took it already: it cancels a job named on this channel */
        const char *argv[] = {"PUBLISH", LV_CQ_CANCEL_CHANNEL, rj->id};
        size_t argvlen[] = {7, strlen(LV_CQ_CANCEL_CHANNEL), strlen(rj->id)};
        if (lv_redis_cmd(d->r, NULL, NULL, 3, argv, argvlen) != 0)
            LV_DEBUG("cluster job %s: cancel not published (Redis down)", rj->id);
    } else if (reply && reply->type == REDIS_REPLY_ERROR) {
        LV_WARN("cluster job %s: the cancel script failed: %.*s", rj->id, (int)LV_MIN(reply->len, 200), reply->str);
    }
    rjob_release(rj);
}

/* Take rj out of the queue, or back from the worker that has it. Best effort: while Redis is down
 * nothing can be said, and a worker drops the job at its deadline anyway. */
static void cancel_in_queue(dredis_t *d, rjob_t *rj)
{
    if (d->closed || !d->up)
        return;
    const char *argv[] = {rj->id, rj->user};
    size_t argvlen[] = {strlen(rj->id), strlen(rj->user)};
    rjob_hold(rj);
    int rc = lv_redis_eval(d->r, d->scripts.cancel, on_cancel_reply, rj, 0, 2, argv, argvlen);
    if (rc != 0) {
        LV_DEBUG("cluster job %s: cancel not sent (%s)", rj->id, lv_strerror(rc));
        rjob_release(rj);
    }
}

/* ---------- submit, replace ---------- */

/* The rule of the local queue (lv_pipeline_ready): a frame older than max_frame_age_ms, else two
 * of its session's intervals (at least 2 s), counted from when this process received it, is
 * never sent. */
static uint64_t deadline_wall_ms(const dredis_t *d, const lv_job_t *job, const lv_frame_t *f, uint64_t now_wall)
{
    uint64_t max_age_ms = d->cfg.max_frame_age_ms > 0
                              ? (uint64_t)d->cfg.max_frame_age_ms
                              : LV_MAX(2u * (uint64_t)LV_MAX(job->settings.interval_ms, 0), (uint64_t)2000);
    uint64_t now_us = lv_now_us(), waited_ms = 0;
    if (f->recv_us && f->recv_us < now_us)
        waited_ms = LV_MIN((now_us - f->recv_us) / 1000u, now_wall);
    return now_wall - waited_ms + max_age_ms;
}

/* Encode rj's body for frame f, queued at now_wall, into d->body. 0, or an LV_E* with why
 * written. */
static int encode_body(dredis_t *d, const rjob_t *rj, const lv_job_t *job, const lv_frame_t *f, uint64_t now_wall,
                       uint64_t *deadline, char *why, size_t why_size)
{
    size_t cap = d->cfg.max_frame_bytes ? LV_MIN(d->cfg.max_frame_bytes, (size_t)LV_JOBMSG_JPEG_MAX)
                                        : (size_t)LV_JOBMSG_JPEG_MAX;
    if (f->len > cap) {
        snprintf(why, why_size, "The frame (%zu bytes) is larger than the cluster takes (%zu bytes).", f->len, cap);
        return LV_ELIMIT;
    }
    lv_jobmsg_t m;
    memset(&m, 0, sizeof(m));
    snprintf(m.id, sizeof(m.id), "%s", rj->id);
    snprintf(m.frontend, sizeof(m.frontend), "%s", d->frontend_id);
    snprintf(m.session, sizeof(m.session), "%s", job->session->rec.id);
    snprintf(m.user, sizeof(m.user), "%s", rj->user);
    m.weight = rj->weight;
    m.answer_id = job->answer_id;
    m.enq_wall_ms = now_wall;
    m.deadline_wall_ms = deadline_wall_ms(d, job, f, now_wall);
    m.capture_age_ms = f->capture_age_ms;
    m.settings = job->settings; /* allow_backends too: the worker picks only the tenant's ("ab") */
    m.trace = job->trace;
    m.jpeg = f->data;
    m.jpeg_len = f->len;
    lv_buf_reset(&d->body);
    int rc = lv_jobmsg_encode(&m, &d->body);
    if (rc != 0) {
        snprintf(why, why_size, "The frame could not be packed for the cluster's queue (%s).", lv_strerror(rc));
        return rc;
    }
    *deadline = m.deadline_wall_ms;
    return 0;
}

static void on_enqueued(void *ud, const redisReply *reply, const char *err)
{
    rjob_t *rj = ud;
    dredis_t *d = rj->d;
    if (!d->closed && rj->job && (!reply || reply->type == REDIS_REPLY_ERROR)) {
        if (reply)
            LV_WARN("cluster job %s: the enqueue script failed: %.*s", rj->id, (int)LV_MIN(reply->len, 200),
                    reply->str);
        else
            LV_WARN("cluster job %s: not queued (%s)", rj->id, err ? err : "no reply");
        end_job(d, rj, reply ? END_REFUSED : END_UNAVAILABLE);
    }
    rjob_release(rj);
}

/* The slots as the pipeline sees them: the live workers' times the out factor. */
static size_t slots_of(const dredis_t *d)
{
    return d->up && !d->closed ? d->capacity * (d->cfg.out_factor ? d->cfg.out_factor : 1) : 0;
}

static size_t free_slots_of(const dredis_t *d)
{
    size_t cap = slots_of(d);
    return cap > d->n_out ? cap - d->n_out : 0;
}

static int dredis_submit(lv_dispatch_t *port, lv_job_t *job, char *why, size_t why_size)
{
    dredis_t *d = dredis_of(port);
    if (d->closed)
        return LV_ECLOSED;
    if (!d->up) {
        snprintf(why, why_size, "%s", MSG_DOWN);
        return LV_ENOTFOUND;
    }
    if (free_slots_of(d) == 0)
        return LV_EAGAIN;
    rjob_t *rj = calloc(1, sizeof(*rj));
    if (!rj)
        return LV_ENOMEM;
    rj->d = d;
    rj->refs = 1; /* while out */
    lv_queue_init(&rj->link);
    snprintf(rj->id, sizeof(rj->id), "%s-%" PRIu64, d->frontend_id, ++d->seq);
    snprintf(rj->user, sizeof(rj->user), "%s", job->session->rec.principal);
    unsigned weight = d->cfg.weight_of ? d->cfg.weight_of(d->cfg.ud, rj->user) : 1;
    rj->weight = LV_MIN(LV_MAX(weight, 1u), 1000u);
    snprintf(rj->tenant, sizeof(rj->tenant), "%s", job->session->rec.tenant[0] ? job->session->rec.tenant : "default");
    unsigned tweight = d->cfg.tenant_weight_of ? d->cfg.tenant_weight_of(d->cfg.ud, rj->tenant) : 1;
    rj->tenant_weight = LV_MIN(LV_MAX(tweight, 1u), 1000u);
    uint64_t now_wall = lv_wall_ms();
    int rc = encode_body(d, rj, job, job->frame, now_wall, &rj->deadline_wall_ms, why, why_size);
    if (rc != 0)
        goto fail;
    char weight_s[16], tweight_s[16], enq_s[24], dl_s[24];
    snprintf(weight_s, sizeof(weight_s), "%u", rj->weight);
    snprintf(tweight_s, sizeof(tweight_s), "%u", rj->tenant_weight);
    snprintf(enq_s, sizeof(enq_s), "%" PRIu64, now_wall);
    /* the deadline and our id beside it: pop drops the job unsent once it is stale, and a worker
     * tells us at once */
    snprintf(dl_s, sizeof(dl_s), "%" PRIu64, rj->deadline_wall_ms);
    const char *argv[] = {rj->id, rj->user, weight_s, d->body.data, enq_s, dl_s, d->frontend_id, rj->tenant, tweight_s};
    size_t argvlen[] = {strlen(rj->id),  strlen(rj->user), strlen(weight_s),      d->body.len,
                        strlen(enq_s), strlen(dl_s),    strlen(d->frontend_id), strlen(rj->tenant),
                        strlen(tweight_s)};
    rc = lv_hmap_insert_str(&d->jobs, &rj->node, rj->id);
    if (rc != 0) {
        snprintf(why, why_size, "The frame could not be tracked (%s).", lv_strerror(rc));
        goto fail;
    }
    rj->in_table = true;
    rjob_hold(rj);
    rc = lv_redis_eval(d->r, d->scripts.enqueue, on_enqueued, rj, 0, (int)LV_ARRAY_LEN(argv), argv, argvlen);
    if (rc != 0) {
        rjob_release(rj); /* no callback will come */
        untable(d, rj);
        if (rc == LV_ECLOSED) { /* it went down a moment ago; set_up(false) follows */
            snprintf(why, why_size, "%s", MSG_DOWN);
            rc = LV_ENOTFOUND;
        } else {
            snprintf(why, why_size, "The cluster's job queue (Redis) did not take the frame (%s).", lv_strerror(rc));
        }
        goto fail;
    }
    lv_queue_insert_tail(&d->out, &rj->link);
    d->n_out++;
    rj->job = job;
    job->impl = rj;
    return 0;
fail:
    free(rj);
    return rc;
}

static void on_replaced(void *ud, const redisReply *reply, const char *err)
{
    rjob_t *rj = ud;
    (void)err;
    /* 0: a worker took the old body a moment ago; it answers that one, nothing to do */
    if (reply && reply->type == REDIS_REPLY_ERROR)
        LV_WARN("cluster job %s: the replace script failed: %.*s", rj->id, (int)LV_MIN(reply->len, 200), reply->str);
    rjob_release(rj);
}

/* The new body goes out now and the answer comes later: optimistic, because the only other
 * outcome (a worker took the old body in between) needs nothing from us. lv_redis_eval copies the
 * body, so f is not kept. */
static int dredis_replace_frame(lv_dispatch_t *port, lv_job_t *job, lv_frame_t *f)
{
    dredis_t *d = dredis_of(port);
    rjob_t *rj = job->impl;
    if (d->closed || !d->up || !rj || rj->ending != END_NONE || rj->running_since_us)
        return LV_EAGAIN;
    char why[256];
    uint64_t deadline = 0;
    int rc = encode_body(d, rj, job, f, lv_wall_ms(), &deadline, why, sizeof(why));
    if (rc != 0) {
        LV_DEBUG("cluster job %s: newer frame not used: %s", rj->id, why);
        return rc;
    }
    char dl_s[24];
    snprintf(dl_s, sizeof(dl_s), "%" PRIu64, deadline); /* the newer picture's: pop judges by it */
    const char *argv[] = {rj->id, d->body.data, dl_s};
    size_t argvlen[] = {strlen(rj->id), d->body.len, strlen(dl_s)};
    rjob_hold(rj);
    rc = lv_redis_eval(d->r, d->scripts.replace, on_replaced, rj, 0, (int)LV_ARRAY_LEN(argv), argv, argvlen);
    if (rc != 0) {
        rjob_release(rj);
        return rc;
    }
    rj->deadline_wall_ms = deadline;
    return 0;
}

static void dredis_cancel(lv_dispatch_t *port, lv_job_t *job)
{
    dredis_t *d = dredis_of(port);
    rjob_t *rj = job->impl;
    job->impl = NULL;
    if (!rj)
        return;
    bool ending = rj->ending != END_NONE; /* already taken back when its ending was decided */
    rjob_detach(d, rj);
    if (!ending)
        cancel_in_queue(d, rj);
    rjob_unref(rj);
}

/* ---------- the rest of the port ---------- */

static size_t dredis_capacity(lv_dispatch_t *port)
{
    return slots_of(dredis_of(port));
}

static size_t dredis_free_slots(lv_dispatch_t *port) { return free_slots_of(dredis_of(port)); }

static uint64_t dredis_ttft_floor_us(lv_dispatch_t *port, const lv_job_t *job)
{
    (void)port;
    const rjob_t *rj = job->impl;
    return rj ? rj->ttft_floor_us : 0;
}

static bool dredis_serves(lv_dispatch_t *port, const lv_settings_t *st, char *why, size_t why_size)
{
    dredis_t *d = dredis_of(port);
    (void)st; /* which models the workers' backends serve is theirs to say (a failed job) */
    if (d->closed || !d->up) {
        snprintf(why, why_size, "%s", MSG_DOWN);
        return false;
    }
    if (d->known && d->n_live == 0) {
        snprintf(why, why_size, "%s", MSG_NO_WORKER);
        return false;
    }
    return true;
}

/* Slots appear without any job ending when a worker joins or Redis comes back: frames waiting in
 * the local queue need a run then, and nothing else would give them one. */
static int dredis_reopened(lv_dispatch_t *port)
{
    dredis_t *d = dredis_of(port);
    size_t n = d->opened;
    d->opened = 0;
    return d->closed ? 0 : (int)LV_MIN(n, (size_t)WORKER_CAPACITY_MAX);
}

static const lv_dispatch_ops_t dredis_ops = {
    .submit = dredis_submit,
    .cancel = dredis_cancel,
    .capacity = dredis_capacity,
    .free_slots = dredis_free_slots,
    .grow = NULL, /* workers grow their own windows */
    .could_serve = NULL, /* no preemption: taking a job back frees a worker's slot for whichever
                          * job the queue's fair order picks next, not for the principal this
                          * frontend thinks is starved (it sees only its own users) */
    .ttft_floor_us = dredis_ttft_floor_us,
    .serves = dredis_serves,
    .reopened = dredis_reopened,
    .replace_frame = dredis_replace_frame,
};

/* ---------- events ---------- */

static void ev_started(dredis_t *d, rjob_t *rj, const lv_jobev_t *ev)
{
    lv_job_t *job = rj->job;
    snprintf(rj->worker, sizeof(rj->worker), "%s", ev->worker);
    rj->running_since_us = lv_now_us();
    rj->ttft_floor_us = ev->ttft_floor_us;
    if (ev->backend_id[0])
        snprintf(job->backend_id, sizeof(job->backend_id), "%s", ev->backend_id);
    if (ev->model[0])
        snprintf(job->model, sizeof(job->model), "%s", ev->model);
    if (rj->started_sent)
        return; /* a requeued job started again on another worker: the pipeline heard it once */
    rj->started_sent = true;
    d->port.events->started(&d->port, job);
}

static void ev_done(dredis_t *d, rjob_t *rj, const lv_jobev_t *ev)
{
    lv_job_t *job = rj->job;
    if (ev->requeue) {
        /* its worker put it back in the queue itself (another backend of the model is full): it
         * waits again, the same job, for the next worker */
        rj->running_since_us = 0;
        rj->worker[0] = '\0';
        return;
    }
    if (ev->stale) {
        finish_as(d, rj, END_STALE);
        return;
    }
    if (ev->backend_id[0])
        snprintf(job->backend_id, sizeof(job->backend_id), "%s", ev->backend_id);
    if (ev->model[0])
        snprintf(job->model, sizeof(job->model), "%s", ev->model);
    if (ev->rc == 0 && !rj->started_sent) {
        /* an answer always follows answer_start: the started event went missing, say it now
         * (the handler never cancels its own job: lv_port_dispatch.h) */
        rj->started_sent = true;
        d->port.events->started(&d->port, job);
    }
    lv_dispatch_result_t res = {
        .rc = ev->rc,
        .error_code = ev->rc ? (ev->error_code[0] ? ev->error_code : "backend_error") : NULL,
        .error_message = ev->rc ? (ev->error_message[0] ? ev->error_message : lv_strerror(ev->rc)) : NULL,
        .text = ev->text ? ev->text : "",
        .text_len = ev->text ? ev->text_len : 0,
        .tokens = ev->tokens,
        .prompt_tokens = ev->prompt_tokens,
        .ttft_us = ev->ttft_us,
        .streamed = ev->streamed,
        .shape_ms = ev->shape_ms,
    };
    deliver_done(d, rj, &res, NULL);
    rjob_unref(rj);
}

void lv_dispatch_redis_on_message(lv_dispatch_t *port, const char *payload, size_t len)
{
    dredis_t *d = dredis_of(port);
    if (d->closed)
        return;
    lv_jobev_t ev;
    const char *why = NULL;
    int rc = lv_jobev_parse(payload, len, &ev, &d->evtext, &why);
    if (rc != 0) {
        d->bad_events++;
        LV_DEBUG("cluster event ignored (%s): %s", lv_strerror(rc), why ? why : "malformed");
        return;
    }
    rjob_t *rj = rjob_find(d, ev.job);
    if (!rj || !rj->job)
        return; /* cancelled, ended, or not ours */
    switch (ev.kind) {
    case LV_JOBEV_STARTED:
        ev_started(d, rj, &ev);
        break;
    case LV_JOBEV_DELTA:
        if (rj->started_sent && ev.text_len)
            d->port.events->delta(&d->port, rj->job, ev.text, ev.text_len);
        break;
    case LV_JOBEV_DONE:
        ev_done(d, rj, &ev);
        break;
    }
}

/* ---------- the 500 ms refresh: workers, queue figures, bounded endings ---------- */

static void on_workers(void *ud, const redisReply *reply, const char *err)
{
    dredis_t *d = ud;
    (void)err;
    d->workers_pending = false;
    if (d->closed || !d->up || !reply || reply->type != REDIS_REPLY_ARRAY)
        goto out;
    uint64_t now = lv_wall_ms();
    size_t pairs = reply->elements / 2, capacity = 0;
    if (!d->live) {
        d->live = malloc(LIVE_MAX * sizeof(d->live[0]));
        if (!d->live)
            goto out;
    }
    d->n_live = 0;
    d->n_workers = 0;
    for (size_t i = 0; i < pairs; i++) {
        const redisReply *k = reply->element[2 * i], *v = reply->element[2 * i + 1];
        uint64_t hb[3];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING || !node_id_ok(k->str, k->len) ||
            !parse_heartbeat(v->str, v->len, hb))
            continue;
        uint64_t age = now > hb[2] ? now - hb[2] : 0; /* clocks of two machines: ahead counts as fresh */
        if (age > LV_CQ_WORKER_STALE_MS)
            continue;
        if (d->n_live < LIVE_MAX) {
            memcpy(d->live[d->n_live], k->str, k->len);
            d->live[d->n_live][k->len] = '\0';
            d->n_live++;
        }
        capacity += (size_t)LV_MIN(hb[0], (uint64_t)WORKER_CAPACITY_MAX);
        if (d->n_workers < LV_DREDIS_WORKERS_MAX) {
            lv_dredis_worker_t *w = &d->workers[d->n_workers];
            memcpy(w->id, k->str, k->len);
            w->id[k->len] = '\0';
            w->capacity = (size_t)LV_MIN(hb[0], (uint64_t)WORKER_CAPACITY_MAX);
            w->in_flight = (size_t)LV_MIN(hb[1], (uint64_t)WORKER_CAPACITY_MAX);
            d->worker_wall_ms[d->n_workers] = hb[2];
            d->n_workers++;
        }
    }
    qsort(d->live, d->n_live, sizeof(d->live[0]), live_cmp);
    if (capacity > d->capacity)
        d->opened += (capacity - d->capacity) * (d->cfg.out_factor ? d->cfg.out_factor : 1);
    d->capacity = capacity;
    d->known = true;
    /* a started job whose worker has no fresh heartbeat ends: only when the worker was already
     * running it before this snapshot was asked for (the events and the commands come on two
     * connections, so a started may overtake a snapshot taken before its worker's first beat) */
    lv_queue_t *n, *next;
    for (n = d->out.next; n != &d->out; n = next) {
        next = n->next; /* end_job moves it to the endings */
        rjob_t *rj = LV_CONTAINER_OF(n, rjob_t, link);
        if (rj->running_since_us && rj->running_since_us < d->workers_sent_us && !worker_live(d, rj->worker)) {
            LV_WARN("cluster job %s: worker %s stopped heartbeating", rj->id, rj->worker);
            end_job(d, rj, END_WORKER_LOST);
        }
    }
out:
    dredis_release(d);
}

static void on_stats(void *ud, const redisReply *reply, const char *err)
{
    dredis_t *d = ud;
    (void)err;
    d->stats_pending = false;
    uint64_t v[3];
    if (!d->closed && reply && reply->type == REDIS_REPLY_ARRAY && reply->elements >= 3 &&
        reply_u64(reply->element[0], &v[0]) && reply_u64(reply->element[1], &v[1]) &&
        reply_u64(reply->element[2], &v[2])) {
        d->queue_len = (size_t)v[0];
        d->oldest_wall_ms = v[1];
        d->stale_total = v[2];
    } else if (reply && reply->type == REDIS_REPLY_ERROR) {
        LV_WARN("cluster: the stats script failed: %.*s", (int)LV_MIN(reply->len, 200), reply->str);
    }
    dredis_release(d);
}

/* Unstarted jobs past their deadline + grace end stale: the worker that takes one drops it, but
 * no worker may come for it at all. */
static void sweep_stale(dredis_t *d)
{
    uint64_t now = lv_wall_ms();
    lv_queue_t *n, *next;
    for (n = d->out.next; n != &d->out; n = next) {
        next = n->next;
        rjob_t *rj = LV_CONTAINER_OF(n, rjob_t, link);
        if (!rj->running_since_us && now > rj->deadline_wall_ms + LV_DREDIS_GRACE_MS)
            end_job(d, rj, END_STALE);
    }
}

static void on_refresh(uv_timer_t *t)
{
    dredis_t *d = t->data;
    if (d->closed)
        return;
    bool up = lv_redis_up(d->r);
    if (up != d->up) /* the owner tells us too (set_up); whoever is first */
        set_up(d, up);
    sweep_stale(d);
    if (!d->up)
        return;
    lv_redis_stats_t rs;
    lv_redis_stats(d->r, &rs);
    if (rs.reconnects != d->reconnects) {
        /* a connection was made again while commands kept working: the subscriber's, and pub/sub
         * keeps nothing for a client that was away. A started job's remaining events may be gone;
         * an unstarted one still ends by the sweep if its started went missing. */
        d->reconnects = rs.reconnects;
        lv_queue_t *n, *next;
        for (n = d->out.next; n != &d->out; n = next) {
            next = n->next;
            rjob_t *rj = LV_CONTAINER_OF(n, rjob_t, link);
            if (rj->running_since_us)
                end_job(d, rj, END_EVENTS_LOST);
        }
    }
    /* one of each in flight: a slow Redis gets no pile of refreshes */
    if (!d->workers_pending) {
        d->holds++;
        d->workers_pending = true;
        d->workers_sent_us = lv_now_us();
        if (lv_redis_cmdf(d->r, on_workers, d, "HGETALL %s", LV_CQ_WORKERS_KEY) != 0) {
            d->workers_pending = false;
            d->holds--;
        }
    }
    if (!d->stats_pending) {
        d->holds++;
        d->stats_pending = true;
        if (lv_redis_eval(d->r, d->scripts.stats, on_stats, d, 0, 0, NULL, NULL) != 0) {
            d->stats_pending = false;
            d->holds--;
        }
    }
}

/* ---------- create, state, stats, close ---------- */

static void on_handle_closed(uv_handle_t *h) { dredis_release(h->data); }

int lv_dispatch_redis_create(uv_loop_t *loop, lv_redis_t *r, const lv_cq_scripts_t *scripts,
                             const lv_dispatch_redis_cfg_t *cfg, lv_dispatch_t **out)
{
    const char *fe = cfg->frontend_id ? cfg->frontend_id : "";
    if (!node_id_ok(fe, strlen(fe)))
        return LV_EINVAL;
    dredis_t *d = calloc(1, sizeof(*d));
    if (!d)
        return LV_ENOMEM;
    if (lv_hmap_init(&d->jobs, 0) != 0) {
        free(d);
        return LV_ENOMEM;
    }
    d->port.ops = &dredis_ops;
    d->cfg = *cfg;
    snprintf(d->frontend_id, sizeof(d->frontend_id), "%s", fe);
    d->cfg.frontend_id = d->frontend_id;
    d->loop = loop;
    d->r = r;
    d->scripts = *scripts;
    lv_queue_init(&d->out);
    lv_queue_init(&d->endings);
    lv_buf_init(&d->body, LV_JOBMSG_HDR_MAX + 8 + LV_JOBMSG_JPEG_MAX);
    lv_buf_init(&d->evtext, LV_JOBEV_TEXT_MAX);
    /* job ids stay unique across restarts of a frontend with the same id: jobs of the previous
     * run may still wait in the queue (they go stale there) */
    d->seq = lv_wall_ms() * 1000u;
    d->up = lv_redis_up(r);
    lv_redis_stats_t rs;
    lv_redis_stats(r, &rs);
    d->reconnects = rs.reconnects;
    d->holds = 3; /* the owner's, and the two timers' until closed */
    uv_timer_init(loop, &d->refresh);
    uv_timer_init(loop, &d->end_timer);
    d->refresh.data = d->end_timer.data = d;
    uv_timer_start(&d->refresh, on_refresh, 0, LV_DREDIS_REFRESH_MS);
    *out = &d->port;
    return 0;
}

void lv_dispatch_redis_set_up(lv_dispatch_t *port, bool up)
{
    dredis_t *d = dredis_of(port);
    set_up(d, up);
    if (up && !d->closed) /* the workers' picture is wanted now, not in up to 500 ms */
        uv_timer_start(&d->refresh, on_refresh, 0, LV_DREDIS_REFRESH_MS);
}

void lv_dispatch_redis_stats(const lv_dispatch_t *port, lv_dredis_stats_t *out)
{
    const dredis_t *d = dredis_of_const(port);
    uint64_t now = lv_wall_ms();
    memset(out, 0, offsetof(lv_dredis_stats_t, workers));
    out->up = d->up && !d->closed;
    out->queue_len = d->queue_len;
    out->oldest_ms = d->oldest_wall_ms && now > d->oldest_wall_ms ? now - d->oldest_wall_ms : 0;
    out->stale_total = d->stale_total;
    out->capacity = out->up ? d->capacity : 0;
    out->jobs_out = d->n_out;
    out->n_workers = out->up ? d->n_workers : 0;
    for (size_t i = 0; i < out->n_workers; i++) {
        out->workers[i] = d->workers[i];
        out->workers[i].age_ms = now > d->worker_wall_ms[i] ? now - d->worker_wall_ms[i] : 0;
    }
}

void lv_dispatch_redis_close(lv_dispatch_t *port)
{
    if (!port)
        return;
    dredis_t *d = dredis_of(port);
    d->closed = true;
    /* the pipeline cancelled its jobs first; anything left is dropped without events */
    lv_queue_t *lists[] = {&d->out, &d->endings};
    for (size_t i = 0; i < LV_ARRAY_LEN(lists); i++) {
        while (!lv_queue_empty(lists[i])) {
            rjob_t *rj = LV_CONTAINER_OF(lv_queue_head(lists[i]), rjob_t, link);
            if (rj->job)
                rj->job->impl = NULL;
            rjob_detach(d, rj);
            rjob_unref(rj);
        }
    }
    lv_hmap_free(&d->jobs);
    lv_buf_free(&d->body);
    lv_buf_free(&d->evtext);
    uv_timer_stop(&d->refresh);
    uv_timer_stop(&d->end_timer);
    uv_close((uv_handle_t *)&d->refresh, on_handle_closed);
    uv_close((uv_handle_t *)&d->end_timer, on_handle_closed);
    dredis_release(d); /* the owner's; pending Redis callbacks hold the rest */
}

/* lv_worker.c - a cluster worker (lv_worker.h): jobs from the Redis queue to this process's
 * backend pool, their events back to the frontends that queued them. The `livevlm worker` process
 * around it is lv_worker_main.c. */
#include "lv_worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lv_allowlist.h"
#include "lv_backend.h"
#include "lv_cluster_queue.h"
#include "lv_common.h"
#include "lv_dispatch_local.h"
#include "lv_hmap.h"
#include "lv_jobmsg.h"
#include "lv_jpeg.h"
#include "lv_log.h"
#include "lv_rand.h"
#include "lv_redis.h"
#include "lv_session.h"
#include "lv_utf8.h"

#define TICK_MS 20                   /* delta flushes, held jobs, heartbeat checks */
#define DELTA_COALESCE_MS 40         /* at most one delta PUBLISH per job per this long */
#define DELTA_PENDING_MAX (16u << 10) /* text that waits longer goes out at once */
#define BLPOP_TIMEOUT_S 1            /* a lost token costs at most this long */
#define HELD_MAX 64                  /* jobs taken while a window shrank under them */
#define HELD_REQUEUE_MS 500          /* a held job goes back to the queue for another worker */
#define STOP_FLUSH_MS 2000           /* how long the last events and the HDEL get at stop */
#define POP_ERROR_BACKOFF_MS 1000    /* after an error reply to pop (the script refused) */
#define POP_IDLE_RETRY_MS 250        /* queue empty and no BLPOP possible (its connection is down) */
#define POP_MAX 16                   /* jobs one pop may take (the script allows LV_CQ_POP_MAX) */
#define TAKE_SAMPLES 256             /* recent enqueue -> taken waits, for the p99 */
#define EV_BUF_MAX (LV_JOBEV_MAX + 1024)
#define BODY_BUF_MAX (8 + LV_JOBMSG_HDR_MAX + LV_JOBMSG_JPEG_MAX)

_Static_assert(POP_MAX >= 1 && POP_MAX <= LV_CQ_POP_MAX, "the pop script refuses other counts");

/* One job taken from the queue: from pop until its done event (or cancel, or requeue). */
typedef struct {
    lv_job_t job;            /* the port's view; job.frame holds our reference */
    lv_worker_t *w;
    lv_queue_t link;         /* in w->running or w->held */
    lv_hmap_node_t node;     /* in w->by_id under msg.id */
    lv_jobmsg_t msg;         /* the body's header; msg.jpeg points into job.frame (for a requeue) */
    bool submitted;          /* the dispatcher has it */
    bool got_delta;
    uint64_t held_since_ms;
    lv_buf_t delta;          /* text not published yet */
    uint64_t delta_pub_ms;   /* when the last delta went out; 0 = none yet */
} wjob_t;

struct lv_worker {
    uv_loop_t *loop;
    lv_pool_t *pool;
    const lv_config_t *cfg;
    char id[LV_NODE_ID_MAX + 1];
    lv_redis_t *redis;
    lv_cq_scripts_t cq;
    lv_dispatch_t *d;        /* NULL once stopping */
    lv_dispatch_events_t events;
    uv_timer_t tick;
    lv_hmap_t by_id;
    lv_queue_t running, held;
    size_t n_running, n_held;
    bool up;                 /* the Redis command connection */
    bool popping;            /* a pop script is out */
    bool blocking;           /* a BLPOP is out */
    bool demand;             /* the last pop found a job: the queue may hold more */
    bool stopping;
    bool redis_closed;       /* callbacks after this only see "closing" */
    size_t final_pending;    /* stop's own commands not answered yet */
    uint64_t stop_deadline_ms;
    uint64_t last_heartbeat_ms;
    uint64_t pop_retry_ms;   /* no pop before this (an error reply) */
    lv_worker_stats_t st;
    double take_ms[TAKE_SAMPLES];
    size_t n_take, take_pos;
    lv_buf_t ev;             /* an event being encoded */
};

static void pump(lv_worker_t *w);

/* ---------- events out ---------- */

static void final_reply(void *ud, const redisReply *reply, const char *err)
{
    lv_worker_t *w = ud;
    if (w->final_pending > 0)
        w->final_pending--;
}

/* PUBLISH the event encoded in w->ev to its frontend's channel. Fire and forget while running
 * (pub/sub is): an event that cannot go out while Redis is down is dropped, and the frontend ends
 * the job itself. At stop the reply is awaited so the connection is not closed under it. */
static void publish_encoded(lv_worker_t *w, const char *frontend)
{
    char channel[sizeof(LV_CQ_EVENT_CHANNEL_PREFIX) + LV_NODE_ID_MAX + 1];
    if (!w->up || w->redis_closed)
        return;
    snprintf(channel, sizeof(channel), "%s%s", LV_CQ_EVENT_CHANNEL_PREFIX, frontend);
    bool wait = w->stopping;
    if (lv_redis_cmdf(w->redis, wait ? final_reply : NULL, w, "PUBLISH %s %b", channel, w->ev.data, w->ev.len) == 0 &&
        wait)
        w->final_pending++;
}

static void publish(lv_worker_t *w, const char *frontend, const lv_jobev_t *e)
{
    lv_buf_reset(&w->ev);
    int rc = lv_jobev_encode(e, &w->ev);
    if (rc != 0) {
        LV_WARN("worker %s: job %s: event not encodable (%s); dropped", w->id, e->job, lv_strerror(rc));
        return;
    }
    publish_encoded(w, frontend);
}

static void ev_init(lv_jobev_t *e, lv_jobev_kind_t kind, const lv_worker_t *w, const lv_jobmsg_t *msg)
{
    memset(e, 0, sizeof(*e));
    e->kind = kind;
    snprintf(e->job, sizeof(e->job), "%s", msg->id);
    snprintf(e->worker, sizeof(e->worker), "%s", w->id);
}

/* A done event that is not an answer: stale, no backend, stopping, a bad frame. */
static void publish_end(lv_worker_t *w, const lv_jobmsg_t *msg, int rc, const char *code, const char *message,
                        bool stale)
{
    lv_jobev_t e;
    ev_init(&e, LV_JOBEV_DONE, w, msg);
    e.rc = rc;
    e.stale = stale;
    snprintf(e.error_code, sizeof(e.error_code), "%s", code);
    snprintf(e.error_message, sizeof(e.error_message), "%s", message);
    publish(w, msg->frontend, &e);
}

static void flush_delta(lv_worker_t *w, wjob_t *wj, uint64_t now_ms)
{
    if (wj->delta.len == 0)
        return;
    lv_jobev_t e;
    ev_init(&e, LV_JOBEV_DELTA, w, &wj->msg);
    e.text = wj->delta.data;
    e.text_len = wj->delta.len;
    publish(w, wj->msg.frontend, &e);
    lv_buf_reset(&wj->delta);
    wj->delta_pub_ms = now_ms;
}

/* ---------- jobs ---------- */

static void wjob_free(wjob_t *wj)
{
    lv_worker_t *w = wj->w;
    if (lv_queue_linked(&wj->link)) {
        lv_queue_remove(&wj->link);
        if (wj->submitted)
            w->n_running--;
        else
            w->n_held--;
    }
    lv_hmap_remove(&w->by_id, &wj->node);
    lv_frame_unref(wj->job.frame);
    lv_buf_free(&wj->delta);
    free(wj);
}

static void note_take(lv_worker_t *w, uint64_t wait_ms)
{
    w->take_ms[w->take_pos] = (double)wait_ms;
    w->take_pos = (w->take_pos + 1) % TAKE_SAMPLES;
    if (w->n_take < TAKE_SAMPLES)
        w->n_take++;
}

/* Hand a job back to the queue (same id, body and enqueue time): it failed before its first token
 * with other backends full, or sat here while no window had room, or this worker is stopping. */
static void requeue(lv_worker_t *w, const lv_jobmsg_t *msg)
{
    lv_buf_t body;
    char weight[16], enq[24], dl[24];
    lv_buf_init(&body, BODY_BUF_MAX);
    int rc = lv_jobmsg_encode(msg, &body);
    if (rc == 0) {
        snprintf(weight, sizeof(weight), "%u", msg->weight);
        snprintf(enq, sizeof(enq), "%llu", (unsigned long long)msg->enq_wall_ms);
        snprintf(dl, sizeof(dl), "%llu", (unsigned long long)msg->deadline_wall_ms);
        const char *argv[] = {msg->id, msg->user, weight, body.data, enq, dl, msg->frontend};
        size_t argvlen[] = {strlen(msg->id), strlen(msg->user), strlen(weight), body.len,
                            strlen(enq),     strlen(dl),        strlen(msg->frontend)};
        bool wait = w->stopping;
        rc = lv_redis_eval(w->redis, w->cq.enqueue, wait ? final_reply : NULL, w, 0, (int)LV_ARRAY_LEN(argv), argv,
                           argvlen);
        if (rc == 0 && wait)
            w->final_pending++;
    }
    if (rc != 0)
        LV_WARN("worker %s: job %s could not go back to the queue (%s); its frontend ends it", w->id, msg->id,
                lv_strerror(rc));
    lv_buf_free(&body);
}

static void publish_stale(lv_worker_t *w, const lv_jobmsg_t *msg)
{
    w->st.stale++;
    publish_end(w, msg, LV_ETIMEDOUT, "stale", "the frame waited in the cluster queue past its deadline", true);
}

/* A job found stale here (held too long, or taken without a deadline in the queue); the ones the
 * pop script drops it counts itself. */
static void job_stale(lv_worker_t *w, const lv_jobmsg_t *msg)
{
    lv_redis_cmdf(w->redis, NULL, NULL, "INCR lv:stat:stale");
    publish_stale(w, msg);
}

/* A job the pop script dropped as stale: its frontend hears at once, not 2 s later by its own
 * check. Only the id and frontend are known (the body was not fetched); that is all the event needs. */
static void popped_stale(lv_worker_t *w, const redisReply *id, const redisReply *frontend)
{
    if (id->type != REDIS_REPLY_STRING || frontend->type != REDIS_REPLY_STRING || id->len == 0 ||
        id->len > LV_JOB_ID_MAX || frontend->len == 0 || frontend->len > LV_NODE_ID_MAX) {
        w->st.stale++; /* a frontend we cannot name ends the job by its own check */
        return;
    }
    lv_jobmsg_t msg;
    memset(&msg, 0, sizeof(msg));
    memcpy(msg.id, id->str, id->len);
    memcpy(msg.frontend, frontend->str, frontend->len);
    publish_stale(w, &msg);
}

/* Give wj to the dispatcher. 0: it is running (events follow); LV_EAGAIN: every backend that could
 * serve it is full (the caller holds it); anything else: ended here (its done event published) and
 * freed. */
static int job_submit(lv_worker_t *w, wjob_t *wj)
{
    char why[512] = "";
    bool was_held = lv_queue_linked(&wj->link);
    if (was_held) {
        lv_queue_remove(&wj->link);
        w->n_held--;
    }
    /* running before submit: `started` may fire from inside it */
    wj->submitted = true;
    lv_queue_insert_tail(&w->running, &wj->link);
    w->n_running++;
    int rc = w->d->ops->submit(w->d, &wj->job, why, sizeof(why));
    if (rc == 0)
        return 0;
    lv_queue_remove(&wj->link);
    w->n_running--;
    wj->submitted = false;
    if (rc == LV_EAGAIN) {
        lv_queue_insert_tail(&w->held, &wj->link);
        w->n_held++;
        if (!was_held)
            wj->held_since_ms = lv_now_ms();
        return LV_EAGAIN;
    }
    w->st.failed++;
    const lv_settings_t *st = &wj->job.settings;
    if (rc == LV_ENOTFOUND && lv_allowlist_restricts(st->allow_backends)) {
        /* the tenant's list came with the job (the body's "ab"): a backend outside it is never
         * the fallback, so say which list left this worker with none */
        snprintf(why, sizeof(why),
                 "no backend this tenant may use serves model '%.128s' on worker %s (it may use: %.128s). Ask the "
                 "operator to give the cluster's workers one of those backends.",
                 st->model[0] ? st->model : "(none chosen)", w->id, st->allow_backends);
    }
    if (rc == LV_ENOTFOUND)
        publish_end(w, &wj->msg, rc, "no_backend", why[0] ? why : "no backend serves this model", false);
    else
        publish_end(w, &wj->msg, rc, "backend_error", "could not start the backend request", false);
    wjob_free(wj);
    return rc;
}

/* A job the pop script returned: parse it, drop it when stale, else start it. */
static void job_take(lv_worker_t *w, const char *id, const char *body, size_t len)
{
    lv_jobmsg_t msg;
    const char *why = NULL;
    int rc = lv_jobmsg_parse(body, len, &msg, &why);
    if (rc != 0) {
        /* no frontend to tell: it never answers a job it cannot read, and its own deadline check
         * ends the job there */
        w->st.failed++;
        LV_WARN("worker %s: job %.64s: unreadable body (%s); dropped", w->id, id, why ? why : lv_strerror(rc));
        return;
    }
    w->st.taken++;
    uint64_t now_wall = lv_wall_ms();
    uint64_t waited_ms = now_wall > msg.enq_wall_ms ? now_wall - msg.enq_wall_ms : 0;
    note_take(w, waited_ms);
    if (now_wall > msg.deadline_wall_ms) {
        job_stale(w, &msg);
        return;
    }
    lv_jpeg_info_t info;
    lv_jpeg_caps_t caps = {w->cfg->max_frame_bytes, w->cfg->max_frame_side, w->cfg->max_frame_pixels};
    rc = lv_jpeg_check(msg.jpeg, msg.jpeg_len, &caps, &info, &why);
    if (rc != 0) {
        char text[200];
        snprintf(text, sizeof(text), "frame rejected: %s", why ? why : "invalid JPEG");
        w->st.failed++;
        publish_end(w, &msg, rc, rc == LV_ELIMIT ? "frame_too_large" : "bad_frame", text, false);
        return;
    }
    wjob_t *wj = calloc(1, sizeof(*wj));
    lv_frame_t *f = wj ? lv_frame_new(msg.jpeg, msg.jpeg_len) : NULL;
    if (!f) {
        free(wj);
        w->st.failed++;
        publish_end(w, &msg, LV_ENOMEM, "backend_error", "the worker is out of memory", false);
        return;
    }
    /* the frame's age counts from when the frontend got it: the monotonic clock here, set back by
     * the time the job waited (wall clocks of two machines; a skew shows up as age, not a crash) */
    uint64_t now_us = lv_now_us();
    uint64_t waited_us = waited_ms * 1000u;
    f->recv_us = now_us > waited_us ? now_us - waited_us : 0;
    f->capture_age_ms = msg.capture_age_ms;
    f->width = info.width;
    f->height = info.height;
    wj->w = w;
    wj->msg = msg;
    wj->msg.jpeg = f->data;
    wj->job.answer_id = msg.answer_id;
    wj->job.settings = msg.settings;
    wj->job.trace = msg.trace; /* its backend request carries the session's trace */
    wj->job.frame = f;
    wj->job.queue_wait_ms = (double)waited_ms;
    wj->job.frame_age_ms = (double)waited_ms + msg.capture_age_ms;
    lv_queue_init(&wj->link);
    lv_queue_init(&wj->job.link);
    lv_buf_init(&wj->delta, LV_JOBEV_TEXT_MAX);
    if (lv_hmap_insert_str(&w->by_id, &wj->node, wj->msg.id) != 0) {
        /* the same id twice: a frontend reused one, or a requeue raced a pop; run the first only */
        LV_WARN("worker %s: job %s is already running here; the second copy is dropped", w->id, wj->msg.id);
        lv_frame_unref(f);
        lv_buf_free(&wj->delta);
        free(wj);
        return;
    }
    job_submit(w, wj);
}

/* Held jobs: try again, give back the ones held too long, drop the stale. */
static void retry_held(lv_worker_t *w)
{
    uint64_t now = lv_now_ms(), now_wall = lv_wall_ms();
    size_t n = w->n_held; /* a job held again goes to the tail: each is looked at once */
    while (n-- > 0 && !lv_queue_empty(&w->held) && w->d) {
        wjob_t *wj = LV_CONTAINER_OF(lv_queue_head(&w->held), wjob_t, link);
        if (now_wall > wj->msg.deadline_wall_ms) {
            job_stale(w, &wj->msg);
            wjob_free(wj);
        } else if (now - wj->held_since_ms >= HELD_REQUEUE_MS && w->up) {
            requeue(w, &wj->msg);
            wjob_free(wj);
        } else {
            job_submit(w, wj);
        }
    }
}

/* ---------- the dispatcher's events ---------- */

static wjob_t *wjob_of(lv_job_t *job) { return LV_CONTAINER_OF(job, wjob_t, job); }

static void ev_started(lv_dispatch_t *d, lv_job_t *job)
{
    wjob_t *wj = wjob_of(job);
    lv_worker_t *w = wj->w;
    lv_jobev_t e;
    ev_init(&e, LV_JOBEV_STARTED, w, &wj->msg);
    snprintf(e.backend_id, sizeof(e.backend_id), "%s", job->backend_id);
    snprintf(e.model, sizeof(e.model), "%s", job->model);
    e.ttft_floor_us = d->ops->ttft_floor_us ? d->ops->ttft_floor_us(d, job) : 0;
    publish(w, wj->msg.frontend, &e);
}

static void ev_delta(lv_dispatch_t *d, lv_job_t *job, const char *text, size_t len)
{
    wjob_t *wj = wjob_of(job);
    lv_worker_t *w = wj->w;
    uint64_t now = lv_now_ms();
    bool first = !wj->got_delta;
    wj->got_delta = true;
    if (wj->delta.len + len > DELTA_PENDING_MAX)
        flush_delta(w, wj, now);
    /* one piece past the cap (a backend that sends a whole answer as one delta): the done event
     * carries the whole text anyway */
    size_t n = lv_utf8_cut(text, len, LV_JOBEV_TEXT_MAX - wj->delta.len);
    if (lv_buf_append(&wj->delta, text, n) != 0)
        LV_WARN("worker %s: job %s: a piece of the answer could not be kept", w->id, wj->msg.id);
    if (now - wj->delta_pub_ms >= DELTA_COALESCE_MS)
        flush_delta(w, wj, now);
    /* a request past its first token is the evidence that lets a full window grow (as the
     * single node's pipeline does) */
    if (first && (w->n_held > 0 || w->demand) && d->ops->grow && d->ops->grow(d, job) > 0)
        pump(w);
}

/* The whole text, cut shorter when the event would not fit (or not encode): an answer longer
 * than an event is rare (max_tokens), and its end is better lost than the whole event. */
static void publish_done(lv_worker_t *w, wjob_t *wj, const lv_dispatch_result_t *r)
{
    lv_jobev_t e;
    ev_init(&e, LV_JOBEV_DONE, w, &wj->msg);
    snprintf(e.backend_id, sizeof(e.backend_id), "%s", wj->job.backend_id);
    snprintf(e.model, sizeof(e.model), "%s", wj->job.model);
    e.rc = r->rc;
    snprintf(e.error_code, sizeof(e.error_code), "%s", r->error_code ? r->error_code : "");
    snprintf(e.error_message, sizeof(e.error_message), "%s", r->error_message ? r->error_message : "");
    e.tokens = r->tokens > 0 ? r->tokens : 0;
    e.prompt_tokens = r->prompt_tokens > 0 ? r->prompt_tokens : 0;
    e.ttft_us = r->ttft_us;
    e.streamed = r->streamed;
    e.shape_ms = r->shape_ms;
    e.stale = r->stale;
    const char *text = r->text ? r->text : "";
    size_t len = r->text ? r->text_len : 0;
    const size_t caps[] = {LV_JOBEV_TEXT_MAX, LV_JOBEV_TEXT_MAX / 8, 0};
    for (size_t i = 0; i < LV_ARRAY_LEN(caps); i++) {
        e.text = text;
        e.text_len = lv_utf8_cut(text, len, caps[i]);
        if (i > 0 && e.text_len == lv_utf8_cut(text, len, caps[i - 1]))
            continue; /* the same text again would fail again */
        lv_buf_reset(&w->ev);
        if (lv_jobev_encode(&e, &w->ev) == 0) {
            publish_encoded(w, wj->msg.frontend);
            return;
        }
    }
    /* not even without its text (a bad backend id or model): say it failed */
    publish_end(w, &wj->msg, r->rc ? r->rc : LV_EBACKEND, "backend_error", "the answer could not be sent back", false);
}

static void ev_done(lv_dispatch_t *d, lv_job_t *job, const lv_dispatch_result_t *r)
{
    wjob_t *wj = wjob_of(job);
    lv_worker_t *w = wj->w;
    job->impl = NULL;
    if (r->requeue && !w->stopping && w->up) {
        /* failed before its first token, the other backends full here: another worker may have room */
        requeue(w, &wj->msg);
    } else {
        flush_delta(w, wj, lv_now_ms()); /* in order: what was streamed, then the end */
        if (r->rc == 0) {
            w->st.answered++;
        } else {
            w->st.failed++;
            lv_log_ctx_t ctx = {.user = wj->msg.user, .session = wj->msg.session, .answer = job->answer_id,
                                .trace_id = job->trace.trace_id, .backend = job->backend_id, .model = job->model};
            LV_INFO_CTX(&ctx, "worker %s: job %s: %s %s: %s", w->id, wj->msg.id,
                        r->error_code ? r->error_code : "backend_error", job->backend_id,
                        r->error_message ? r->error_message : lv_strerror(r->rc));
        }
        publish_done(w, wj, r);
    }
    wjob_free(wj);
    pump(w); /* a slot is free */
}

/* ---------- taking jobs ---------- */

/* Free slots not promised to held jobs. */
static size_t room(lv_worker_t *w)
{
    size_t free_slots = w->d->ops->free_slots(w->d);
    return free_slots > w->n_held ? free_slots - w->n_held : 0;
}

static void on_token(void *ud, const redisReply *reply, const char *err)
{
    lv_worker_t *w = ud;
    w->blocking = false;
    if (w->stopping || w->redis_closed || !reply)
        return; /* lost: the tick or the next up pumps again */
    if (reply->type == REDIS_REPLY_ARRAY && w->up && room(w) == 0) {
        /* filled up meanwhile (a job taken when another ended): the token is another worker's
         * wake-up, not ours to swallow */
        lv_redis_cmdf(w->redis, NULL, NULL, "RPUSH %s 1", LV_CQ_READY_KEY);
        return;
    }
    pump(w);
}

/* A flat [a1, b1, a2, b2, ...] array of strings (or an empty one). */
static bool is_pairs(const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements % 2 != 0)
        return false;
    for (size_t i = 0; i < r->elements; i++)
        if (r->element[i]->type != REDIS_REPLY_STRING)
            return false;
    return true;
}

static void on_popped(void *ud, const redisReply *reply, const char *err)
{
    lv_worker_t *w = ud;
    if (w->redis_closed || !reply) {
        w->popping = false;
        return;
    }
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 && is_pairs(reply->element[0]) &&
        is_pairs(reply->element[1])) {
        const redisReply *taken = reply->element[0], *stale = reply->element[1];
        for (size_t i = 0; i < stale->elements; i += 2)
            popped_stale(w, stale->element[i], stale->element[i + 1]);
        /* none taken but some dropped: the script stopped at its bound, or the queue is empty now;
         * the next pop says which */
        w->demand = taken->elements > 0 || stale->elements > 0;
        for (size_t i = 0; i < taken->elements; i += 2) {
            const redisReply *id = taken->element[i], *body = taken->element[i + 1];
            if (w->stopping) {
                /* taken while stopping: straight back, untouched */
                lv_jobmsg_t msg;
                if (lv_jobmsg_parse(body->str, body->len, &msg, NULL) == 0)
                    requeue(w, &msg);
                continue;
            }
            /* still `popping`: a pump from inside a job's start must not ask for the slots the
             * rest of this reply fills */
            job_take(w, id->str, body->str, body->len);
        }
        w->popping = false;
        pump(w);
        return;
    }
    w->popping = false;
    if (w->stopping)
        return;
    if (reply->type == REDIS_REPLY_NIL) {
        w->demand = false;
        if (w->blocking)
            return;
        if (lv_redis_blpop(w->redis, LV_CQ_READY_KEY, BLPOP_TIMEOUT_S, on_token, w) == 0)
            w->blocking = true;
        else
            w->pop_retry_ms = lv_now_ms() + POP_IDLE_RETRY_MS; /* no wake-up: poll, gently */
        return;
    }
    w->pop_retry_ms = lv_now_ms() + POP_ERROR_BACKOFF_MS;
    LV_WARN("worker %s: the pop script failed: %.200s", w->id,
            reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
}

/* Ask the queue for as many jobs as this pool has room for (up to POP_MAX) and for the stale ones
 * at its head. One pop out at a time; each reply asks again while room is left, so a burst is
 * taken at one round trip per POP_MAX jobs. */
static void pump(lv_worker_t *w)
{
    if (w->stopping || !w->up || w->popping || w->n_held >= HELD_MAX || lv_now_ms() < w->pop_retry_ms)
        return;
    size_t n = room(w);
    if (n == 0)
        return;
    /* more than HELD_MAX held would never be taken: ask for no more than that leaves */
    n = LV_MIN(n, (size_t)POP_MAX);
    n = LV_MIN(n, (size_t)HELD_MAX - w->n_held);
    char now_s[24], max_s[8];
    snprintf(now_s, sizeof(now_s), "%llu", (unsigned long long)lv_wall_ms());
    snprintf(max_s, sizeof(max_s), "%zu", n);
    const char *argv[] = {now_s, max_s};
    size_t argvlen[] = {strlen(now_s), strlen(max_s)};
    if (lv_redis_eval(w->redis, w->cq.pop, on_popped, w, 0, (int)LV_ARRAY_LEN(argv), argv, argvlen) == 0)
        w->popping = true;
}

/* ---------- Redis state, cancels, heartbeat ---------- */

static void heartbeat(lv_worker_t *w)
{
    w->last_heartbeat_ms = lv_now_ms();
    if (!w->up)
        return;
    /* the value is formatted here: hiredis's format knows %s, %b and plain integers, not %zu */
    char value[80];
    snprintf(value, sizeof(value), "%zu %zu %llu", w->d->ops->capacity(w->d), w->n_running,
             (unsigned long long)lv_wall_ms());
    lv_redis_cmdf(w->redis, NULL, NULL, "HSET %s %s %s", LV_CQ_WORKERS_KEY, w->id, value);
}

static void on_state(void *ud, bool up)
{
    lv_worker_t *w = ud;
    w->up = up;
    if (w->stopping)
        return;
    if (up) {
        LV_INFO("worker %s: Redis is up; taking jobs", w->id);
        heartbeat(w);
        pump(w);
        return;
    }
    /* jobs running go on (their events are lost; their frontends end them); held ones cannot
     * even go back, and their frontends have already given up on them */
    LV_WARN("worker %s: Redis is down; no jobs taken until it is back", w->id);
    while (!lv_queue_empty(&w->held)) {
        w->st.failed++;
        wjob_free(LV_CONTAINER_OF(lv_queue_head(&w->held), wjob_t, link));
    }
}

static void on_message(void *ud, const char *channel, const char *payload, size_t len)
{
    lv_worker_t *w = ud;
    if (w->stopping || strcmp(channel, LV_CQ_CANCEL_CHANNEL) != 0 || len == 0 || len > LV_JOB_ID_MAX)
        return;
    lv_hmap_node_t *n = lv_hmap_find(&w->by_id, payload, len);
    if (!n)
        return; /* another worker's */
    wjob_t *wj = LV_CONTAINER_OF(n, wjob_t, node);
    if (wj->submitted)
        w->d->ops->cancel(w->d, &wj->job);
    w->st.cancelled++;
    wjob_free(wj);
    pump(w);
}

/* ---------- the tick, and stopping ---------- */

static void on_tick_closed(uv_handle_t *h)
{
    lv_worker_t *w = h->data;
    lv_hmap_free(&w->by_id);
    lv_buf_free(&w->ev);
    free(w);
}

static void finish_stop(lv_worker_t *w)
{
    uv_timer_stop(&w->tick);
    w->redis_closed = true;
    lv_redis_close(w->redis); /* fails what is left (the BLPOP): those callbacks return at once */
    w->redis = NULL;
    uv_close((uv_handle_t *)&w->tick, on_tick_closed);
}

static void on_tick(uv_timer_t *t)
{
    lv_worker_t *w = t->data;
    uint64_t now = lv_now_ms();
    if (w->stopping) {
        if ((w->final_pending == 0 && !w->popping) || now >= w->stop_deadline_ms)
            finish_stop(w);
        return;
    }
    lv_queue_t *q;
    LV_QUEUE_FOREACH(q, &w->running)
    {
        wjob_t *wj = LV_CONTAINER_OF(q, wjob_t, link);
        if (wj->delta.len && now - wj->delta_pub_ms >= DELTA_COALESCE_MS)
            flush_delta(w, wj, now);
    }
    if (now - w->last_heartbeat_ms >= LV_CQ_WORKER_HEARTBEAT_MS)
        heartbeat(w);
    lv_dispatch_t *d = w->d;
    bool kick = d->ops->reopened && d->ops->reopened(d) > 0;
    /* jobs wait (here or in the queue): a full backend that shows free room grows its window */
    if ((w->n_held > 0 || w->demand) && d->ops->grow && d->ops->grow(d, NULL) > 0)
        kick = true;
    if (w->n_held > 0)
        retry_held(w);
    if (!w->blocking || kick)
        pump(w);
}

int lv_worker_start(uv_loop_t *loop, struct lv_pool *pool, const lv_config_t *cfg, lv_worker_t **out)
{
    lv_redisurl_t url;
    const char *why = NULL;
    char name[64];
    int rc = 0;
    if (lv_redisurl_parse(cfg->redis_url, &url, &why) != 0) {
        LV_ERROR("worker: --redis: %s", why ? why : "not a Redis URL");
        return LV_EINVAL;
    }
    lv_worker_t *w = calloc(1, sizeof(*w));
    if (!w)
        return LV_ENOMEM;
    w->loop = loop;
    w->pool = pool;
    w->cfg = cfg;
    lv_queue_init(&w->running);
    lv_queue_init(&w->held);
    lv_buf_init(&w->ev, EV_BUF_MAX);
    w->events.started = ev_started;
    w->events.delta = ev_delta;
    w->events.done = ev_done;
    if (cfg->node_id[0])
        snprintf(w->id, sizeof(w->id), "%s", cfg->node_id);
    else if ((rc = lv_rand_hex(w->id, sizeof(w->id), 6)) != 0)
        goto out;
    if ((rc = lv_hmap_init(&w->by_id, 0)) != 0)
        goto out;
    lv_dispatch_local_cfg_t dcfg = {
        .connect_timeout_ms = cfg->connect_timeout_ms,
        .first_token_timeout_ms = cfg->first_token_timeout_ms,
        .total_timeout_ms = cfg->total_timeout_ms,
        .stream_idle_timeout_ms = cfg->stream_idle_timeout_ms,
        .max_frame_bytes = cfg->max_frame_bytes,
        .no_backend_help = "The cluster's workers have no backend for it: pick another model, or ask the operator "
                           "to add one (livevlm worker --backend ...).",
    };
    if ((rc = lv_dispatch_local_create(loop, pool, &dcfg, &w->d)) != 0)
        goto out;
    w->d->events = &w->events;
    w->d->events_ud = w;
    snprintf(name, sizeof(name), "worker %s", w->id);
    lv_redis_cfg_t rcfg = {.name = name, .ud = w, .on_state = on_state, .on_message = on_message};
    if ((rc = lv_redis_create(loop, &url, &rcfg, &w->redis)) != 0 || (rc = lv_cq_scripts_add(w->redis, &w->cq)) != 0 ||
        (rc = lv_redis_subscribe(w->redis, LV_CQ_CANCEL_CHANNEL)) != 0)
        goto out;
    uv_timer_init(loop, &w->tick);
    w->tick.data = w;
    uv_timer_start(&w->tick, on_tick, TICK_MS, TICK_MS);
    char clean[LV_REDISURL_MAX + 1];
    lv_redisurl_clean(&url, clean, sizeof(clean));
    LV_INFO("worker %s: taking jobs from %s", w->id, clean);
    *out = w;
    return 0;
out:
    lv_redis_close(w->redis);
    lv_dispatch_local_close(w->d);
    lv_hmap_free(&w->by_id);
    lv_buf_free(&w->ev);
    free(w);
    return rc;
}

void lv_worker_stop(lv_worker_t *w)
{
    if (!w || w->stopping)
        return;
    w->stopping = true;
    w->stop_deadline_ms = lv_now_ms() + STOP_FLUSH_MS;
    size_t given_back = w->n_held, cancelled = w->n_running;
    while (!lv_queue_empty(&w->held)) {
        wjob_t *wj = LV_CONTAINER_OF(lv_queue_head(&w->held), wjob_t, link);
        requeue(w, &wj->msg); /* never started: another worker takes it */
        wjob_free(wj);
    }
    while (!lv_queue_empty(&w->running)) {
        wjob_t *wj = LV_CONTAINER_OF(lv_queue_head(&w->running), wjob_t, link);
        w->d->ops->cancel(w->d, &wj->job);
        w->st.failed++;
        publish_end(w, &wj->msg, LV_ECLOSED, "worker_stopping",
                    "the worker answering stopped; the next frame goes to another", false);
        wjob_free(wj);
    }
    lv_dispatch_local_close(w->d);
    w->d = NULL;
    if (w->up && lv_redis_cmdf(w->redis, final_reply, w, "HDEL %s %s", LV_CQ_WORKERS_KEY, w->id) == 0)
        w->final_pending++;
    LV_INFO("worker %s: stopping (%zu job(s) cancelled, %zu given back to the queue)", w->id, cancelled, given_back);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

void lv_worker_stats(const lv_worker_t *w, lv_worker_stats_t *out)
{
    *out = w->st;
    out->in_flight = w->n_running;
    out->capacity = w->d ? w->d->ops->capacity(w->d) : 0;
    out->take_ms_p99 = 0;
    out->redis_up = w->up;
    if (w->n_take > 0) {
        double sorted[TAKE_SAMPLES];
        memcpy(sorted, w->take_ms, w->n_take * sizeof(double));
        qsort(sorted, w->n_take, sizeof(double), cmp_double);
        out->take_ms_p99 = sorted[(w->n_take * 99) / 100 < w->n_take ? (w->n_take * 99) / 100 : w->n_take - 1];
    }
}

bool lv_worker_redis_up(const lv_worker_t *w) { return w->up; }

int lv_worker_metrics(const lv_worker_t *w, lv_buf_t *b)
{
    lv_worker_stats_t st;
    lv_worker_stats(w, &st);
    return lv_buf_printf(
        b,
        "# HELP livevlm_worker_jobs_total Jobs this worker took from the cluster queue, by how they ended.\n"
        "# TYPE livevlm_worker_jobs_total counter\n"
        "livevlm_worker_jobs_total{outcome=\"answered\"} %llu\n"
        "livevlm_worker_jobs_total{outcome=\"failed\"} %llu\n"
        "livevlm_worker_jobs_total{outcome=\"stale\"} %llu\n"
        "livevlm_worker_jobs_total{outcome=\"cancelled\"} %llu\n"
        "# HELP livevlm_worker_taken_total Jobs taken from the cluster queue.\n"
        "# TYPE livevlm_worker_taken_total counter\n"
        "livevlm_worker_taken_total %llu\n"
        "# HELP livevlm_worker_in_flight Jobs running on this worker's backends now.\n"
        "# TYPE livevlm_worker_in_flight gauge\n"
        "livevlm_worker_in_flight %zu\n"
        "# HELP livevlm_worker_capacity Requests this worker's healthy backends take at once now.\n"
        "# TYPE livevlm_worker_capacity gauge\n"
        "livevlm_worker_capacity %zu\n"
        "# HELP livevlm_worker_take_wait_seconds_p99 Enqueue to taken, recent 99th percentile.\n"
        "# TYPE livevlm_worker_take_wait_seconds_p99 gauge\n"
        "livevlm_worker_take_wait_seconds_p99 %.6f\n"
        "# HELP livevlm_worker_redis_up 1 while the worker's Redis connection is up.\n"
        "# TYPE livevlm_worker_redis_up gauge\n"
        "livevlm_worker_redis_up %d\n",
        (unsigned long long)st.answered, (unsigned long long)st.failed, (unsigned long long)st.stale,
        (unsigned long long)st.cancelled, (unsigned long long)st.taken, st.in_flight, st.capacity,
        st.take_ms_p99 / 1000.0, st.redis_up ? 1 : 0);
}

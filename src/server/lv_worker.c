/* lv_worker.c - a cluster worker (lv_worker.h): jobs from the Redis queue to this process's
 * backend pool, their events back to the frontends that queued them; and `livevlm worker`, the
 * process that runs one with a small plain-HTTP listener for /metrics, /healthz and /readyz. */
#include "lv_worker.h"

#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lv_backend.h"
#include "lv_cluster_queue.h"
#include "lv_common.h"
#include "lv_dispatch_local.h"
#include "lv_hmap.h"
#include "lv_http.h"
#include "lv_http1.h"
#include "lv_jobmsg.h"
#include "lv_jpeg.h"
#include "lv_log.h"
#include "lv_poolcfg.h"
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
#define TAKE_SAMPLES 256             /* recent enqueue -> taken waits, for the p99 */
#define EV_BUF_MAX (LV_JOBEV_MAX + 1024)
#define BODY_BUF_MAX (8 + LV_JOBMSG_HDR_MAX + LV_JOBMSG_JPEG_MAX)

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
    char weight[16], enq[24];
    lv_buf_init(&body, BODY_BUF_MAX);
    int rc = lv_jobmsg_encode(msg, &body);
    if (rc == 0) {
        snprintf(weight, sizeof(weight), "%u", msg->weight);
        snprintf(enq, sizeof(enq), "%llu", (unsigned long long)msg->enq_wall_ms);
        const char *argv[] = {msg->id, msg->user, weight, body.data, enq};
        size_t argvlen[] = {strlen(msg->id), strlen(msg->user), strlen(weight), body.len, strlen(enq)};
        bool wait = w->stopping;
        rc = lv_redis_eval(w->redis, w->cq.enqueue, wait ? final_reply : NULL, w, 0, 5, argv, argvlen);
        if (rc == 0 && wait)
            w->final_pending++;
    }
    if (rc != 0)
        LV_WARN("worker %s: job %s could not go back to the queue (%s); its frontend ends it", w->id, msg->id,
                lv_strerror(rc));
    lv_buf_free(&body);
}

static void job_stale(lv_worker_t *w, const lv_jobmsg_t *msg)
{
    w->st.stale++;
    lv_redis_cmdf(w->redis, NULL, NULL, "INCR lv:stat:stale");
    publish_end(w, msg, LV_ETIMEDOUT, "stale", "the frame waited in the cluster queue past its deadline", true);
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
        if (r->rc == 0)
            w->st.answered++;
        else
            w->st.failed++;
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

static void on_popped(void *ud, const redisReply *reply, const char *err)
{
    lv_worker_t *w = ud;
    w->popping = false;
    if (w->redis_closed || !reply)
        return;
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 && reply->element[0]->type == REDIS_REPLY_STRING &&
        reply->element[1]->type == REDIS_REPLY_STRING) {
        const redisReply *id = reply->element[0], *body = reply->element[1];
        w->demand = true;
        if (w->stopping) {
            /* taken while stopping: straight back, untouched */
            lv_jobmsg_t msg;
            if (lv_jobmsg_parse(body->str, body->len, &msg, NULL) == 0)
                requeue(w, &msg);
            return;
        }
        job_take(w, id->str, body->str, body->len);
        pump(w);
        return;
    }
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

/* Ask the queue for a job while this pool has room for one. One pop out at a time; each reply
 * asks again, so a burst is taken at one round trip per job while slots last. */
static void pump(lv_worker_t *w)
{
    if (w->stopping || !w->up || w->popping || w->n_held >= HELD_MAX || lv_now_ms() < w->pop_retry_ms)
        return;
    if (room(w) == 0)
        return;
    if (lv_redis_eval(w->redis, w->cq.pop, on_popped, w, 0, 0, NULL, NULL) == 0)
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
    if (w->n_take > 0) {
        double sorted[TAKE_SAMPLES];
        memcpy(sorted, w->take_ms, w->n_take * sizeof(double));
        qsort(sorted, w->n_take, sizeof(double), cmp_double);
        out->take_ms_p99 = sorted[(w->n_take * 99) / 100 < w->n_take ? (w->n_take * 99) / 100 : w->n_take - 1];
    }
}

/* ---------- `livevlm worker`: the process ---------- */

#define HEALTH_PERIOD_MS 10000
#define HTTP_HEAD_MAX 8192       /* one request head; longer: 431 */
#define HTTP_TIMEOUT_MS 5000     /* a connection's whole life */
#define HTTP_CONNS_MAX 32        /* at once; more are closed unanswered */
#define HTTP_BODY_MAX (256u << 10)
#define EXIT_DEADLINE_MS 4500    /* SIGTERM -> exit, whatever is still open */

typedef struct wmain wmain_t;

/* One metrics connection: one request, one answer, closed. */
typedef struct {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wr;
    wmain_t *m;
    lv_queue_t link;
    int handles_open;
    bool closing;
    size_t in_len;
    char in[HTTP_HEAD_MAX];
    lv_buf_t out;
} mconn_t;

struct wmain {
    uv_loop_t loop;
    lv_config_t cfg;
    lv_http_t *http;
    lv_pool_t *pool;
    lv_worker_t *worker;
    uv_tcp_t listener;
    bool listener_open;
    int bound_port;
    uv_signal_t sigint, sigterm;
    uv_timer_t exit_timer;
    lv_queue_t conns;
    size_t n_conns;
    bool stopping;
};

static void mconn_handle_closed(uv_handle_t *h)
{
    mconn_t *c = h->data;
    if (--c->handles_open == 0) {
        lv_buf_free(&c->out);
        free(c);
    }
}

static void mconn_close(mconn_t *c)
{
    if (c->closing)
        return;
    c->closing = true;
    lv_queue_remove(&c->link);
    c->m->n_conns--;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->tcp, mconn_handle_closed);
    uv_close((uv_handle_t *)&c->timer, mconn_handle_closed);
}

static void on_mconn_timeout(uv_timer_t *t) { mconn_close(t->data); }

static void on_written(uv_write_t *wr, int status) { mconn_close(wr->data); }

static void respond(mconn_t *c, int status, const char *ctype, const char *body, size_t len, bool head_only,
                    const char *extra)
{
    uv_read_stop((uv_stream_t *)&c->tcp);
    lv_buf_reset(&c->out);
    if (lv_buf_printf(&c->out,
                      "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nCache-Control: no-store\r\n"
                      "Connection: close\r\n%s\r\n",
                      status, lv_http1_reason(status), ctype, len, extra ? extra : "") != 0 ||
        (!head_only && lv_buf_append(&c->out, body, len) != 0)) {
        mconn_close(c);
        return;
    }
    uv_buf_t b = uv_buf_init(c->out.data, (unsigned)c->out.len);
    c->wr.data = c;
    if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0)
        mconn_close(c);
}

static void respond_text(mconn_t *c, int status, const char *text, bool head_only)
{
    respond(c, status, "text/plain; charset=utf-8", text, strlen(text), head_only, NULL);
}

static bool any_backend_healthy(lv_pool_t *pool)
{
    for (size_t i = 0; i < lv_pool_count(pool); i++)
        if (lv_pool_at(pool, i)->healthy)
            return true;
    return false;
}

static int metrics_text(wmain_t *m, lv_buf_t *b)
{
    lv_worker_stats_t st;
    lv_worker_stats(m->worker, &st);
    int rc = lv_buf_printf(
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
        st.take_ms_p99 / 1000.0, m->worker->up ? 1 : 0);
    static const struct {
        const char *name, *type, *help;
    } fams[] = {
        {"livevlm_backend_inflight", "gauge", "Requests in flight per backend."},
        {"livevlm_backend_window", "gauge", "Concurrency window per backend (adaptive or fixed)."},
        {"livevlm_backend_healthy", "gauge", "1 when the backend is in rotation."},
        {"livevlm_backend_circuit_state", "gauge", "Circuit breaker: 0 closed, 1 half-open, 2 open."},
        {"livevlm_backend_latency_seconds", "gauge", "Smoothed time to first token per backend."},
        {"livevlm_backend_requests_total", "counter", "Requests finished per backend."},
        {"livevlm_backend_errors_total", "counter", "Failed requests per backend."},
        {"livevlm_backend_timeouts_total", "counter", "Timed-out requests per backend."},
    };
    size_t n = lv_pool_count(m->pool);
    for (size_t f = 0; f < LV_ARRAY_LEN(fams) && rc == 0 && n > 0; f++) {
        rc = lv_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", fams[f].name, fams[f].help, fams[f].name, fams[f].type);
        for (size_t i = 0; i < n && rc == 0; i++) {
            const lv_backend_t *be = lv_pool_at(m->pool, i);
            const char *state = lv_backend_state_name(be);
            double v = 0;
            switch (f) {
            case 0: v = be->inflight; break;
            case 1: v = lv_backend_limit(be); break;
            case 2: v = be->healthy ? 1 : 0; break;
            case 3: v = strcmp(state, "open") == 0 ? 2 : strcmp(state, "half_open") == 0 ? 1 : 0; break;
            case 4: v = be->lat_ewma_ms / 1000.0; break;
            case 5: v = (double)be->requests_total; break;
            case 6: v = (double)be->errors_total; break;
            default: v = (double)be->timeouts_total; break;
            }
            /* backend ids are [A-Za-z0-9._-]: nothing to escape in the label */
            rc = lv_buf_printf(b, "%s{backend=\"%s\"} %.17g\n", fams[f].name, be->id, v);
        }
    }
    return rc;
}

static void route(mconn_t *c, const lv_http1_req_t *req)
{
    wmain_t *m = c->m;
    bool head = req->method.len == 4 && memcmp(req->method.ptr, "HEAD", 4) == 0;
    bool get = req->method.len == 3 && memcmp(req->method.ptr, "GET", 3) == 0;
    const lv_view_t *p = &req->path;
#define PATH_IS(s) (p->len == sizeof(s) - 1 && memcmp(p->ptr, s, sizeof(s) - 1) == 0)
    if (!PATH_IS("/metrics") && !PATH_IS("/healthz") && !PATH_IS("/readyz")) {
        respond_text(c, 404, "not found: this worker answers GET /metrics, /healthz and /readyz\n", head);
        return;
    }
    if (!get && !head) {
        respond(c, 405, "text/plain; charset=utf-8", "method not allowed\n", 19, false, "Allow: GET, HEAD\r\n");
        return;
    }
    if (PATH_IS("/healthz")) {
        respond_text(c, 200, "ok\n", head);
    } else if (PATH_IS("/readyz")) {
        if (m->stopping)
            respond_text(c, 503, "the worker is stopping\n", head);
        else if (!m->worker->up)
            respond_text(c, 503, "redis unreachable: no jobs can be taken until it is back\n", head);
        else if (!any_backend_healthy(m->pool))
            respond_text(c, 503, "no backend is healthy: no job could be answered\n", head);
        else
            respond_text(c, 200, "ready\n", head);
    } else {
        lv_buf_t body;
        lv_buf_init(&body, HTTP_BODY_MAX);
        if (metrics_text(m, &body) != 0)
            respond_text(c, 500, "metrics did not fit\n", head);
        else
            respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", body.data, body.len, head, NULL);
        lv_buf_free(&body);
    }
#undef PATH_IS
}

static void on_mconn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    mconn_t *c = h->data;
    *buf = uv_buf_init(c->in + c->in_len, (unsigned)(sizeof(c->in) - c->in_len));
}

static void on_mconn_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    mconn_t *c = s->data;
    if (nread < 0 && nread != UV_ENOBUFS) {
        mconn_close(c);
        return;
    }
    if (nread > 0)
        c->in_len += (size_t)nread;
    lv_http1_req_t req;
    int status = 400;
    int rc = lv_http1_parse_request(c->in, c->in_len, sizeof(c->in), &req, &status);
    if (rc == LV_EAGAIN && c->in_len < sizeof(c->in))
        return;
    if (rc == LV_EAGAIN)
        status = 431;
    if (rc != 0) {
        char text[64];
        snprintf(text, sizeof(text), "%s\n", lv_http1_reason(status));
        respond_text(c, status, text, false);
        return;
    }
    route(c, &req);
}

static void on_mconn(uv_stream_t *server, int status)
{
    wmain_t *m = server->data;
    if (status < 0)
        return;
    mconn_t *c = calloc(1, sizeof(*c));
    if (!c)
        return; /* the connection waits in the backlog; the next accept takes it */
    c->m = m;
    lv_buf_init(&c->out, HTTP_BODY_MAX + 512);
    uv_tcp_init(&m->loop, &c->tcp);
    uv_timer_init(&m->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->handles_open = 2;
    lv_queue_insert_tail(&m->conns, &c->link);
    m->n_conns++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 || m->n_conns > HTTP_CONNS_MAX || m->stopping) {
        mconn_close(c);
        return;
    }
    uv_timer_start(&c->timer, on_mconn_timeout, HTTP_TIMEOUT_MS, 0);
    if (uv_read_start((uv_stream_t *)&c->tcp, on_mconn_alloc, on_mconn_read) != 0)
        mconn_close(c);
}

static int listen_metrics(wmain_t *m, char *err, size_t err_size)
{
    struct sockaddr_storage ss;
    const char *host = strcmp(m->cfg.host, "localhost") == 0 ? "127.0.0.1" : m->cfg.host;
    int rc = strchr(host, ':') ? uv_ip6_addr(host, m->cfg.port, (struct sockaddr_in6 *)(void *)&ss)
                               : uv_ip4_addr(host, m->cfg.port, (struct sockaddr_in *)(void *)&ss);
    if (rc != 0) {
        snprintf(err, err_size, "--host %s: not an address to listen on", m->cfg.host);
        return LV_EINVAL;
    }
    uv_tcp_init(&m->loop, &m->listener);
    m->listener.data = m;
    m->listener_open = true;
    if ((rc = uv_tcp_bind(&m->listener, (const struct sockaddr *)&ss, 0)) != 0 ||
        (rc = uv_listen((uv_stream_t *)&m->listener, 64, on_mconn)) != 0) {
        snprintf(err, err_size, "cannot listen on %s:%d: %s", m->cfg.host, m->cfg.port, uv_strerror(rc));
        return LV_EIO;
    }
    int len = sizeof(ss);
    if (uv_tcp_getsockname(&m->listener, (struct sockaddr *)&ss, &len) == 0)
        m->bound_port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)(void *)&ss)->sin6_port)
                                                  : ntohs(((struct sockaddr_in *)(void *)&ss)->sin_port);
    return 0;
}

static void write_port_file(const wmain_t *m)
{
    if (!m->cfg.port_file[0])
        return;
    char tmp[sizeof(m->cfg.port_file) + 8];
    snprintf(tmp, sizeof(tmp), "%s.tmp", m->cfg.port_file);
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f, "%d\n", m->bound_port) < 0 || fclose(f) != 0 || rename(tmp, m->cfg.port_file) != 0)
        LV_ERROR("could not write the port file %s", m->cfg.port_file);
}

static void on_exit_deadline(uv_timer_t *t)
{
    wmain_t *m = t->data;
    LV_WARN("worker: still closing after %d ms; exiting anyway", EXIT_DEADLINE_MS);
    uv_stop(&m->loop);
}

static void shutdown_worker(wmain_t *m)
{
    if (m->stopping)
        return;
    m->stopping = true;
    LV_INFO("worker: shutting down");
    lv_worker_stop(m->worker); /* cancels its backend requests: before the pool goes */
    m->worker = NULL;
    while (!lv_queue_empty(&m->conns))
        mconn_close(LV_CONTAINER_OF(lv_queue_head(&m->conns), mconn_t, link));
    if (m->listener_open)
        uv_close((uv_handle_t *)&m->listener, NULL);
    m->listener_open = false;
    lv_pool_destroy(m->pool);
    m->pool = NULL;
    lv_http_destroy(m->http);
    m->http = NULL;
    uv_signal_stop(&m->sigint);
    uv_signal_stop(&m->sigterm);
    uv_close((uv_handle_t *)&m->sigint, NULL);
    uv_close((uv_handle_t *)&m->sigterm, NULL);
    /* the worker's last events and heartbeat removal take up to 2 s; the loop ends when they are
     * done, or here */
    uv_timer_init(&m->loop, &m->exit_timer);
    m->exit_timer.data = m;
    uv_timer_start(&m->exit_timer, on_exit_deadline, EXIT_DEADLINE_MS, 0);
    uv_unref((uv_handle_t *)&m->exit_timer);
}

static void on_signal(uv_signal_t *h, int signum) { shutdown_worker(h->data); }

static void on_refreshed(void *ud)
{
    wmain_t *m = ud;
    if (!m->pool)
        return;
    for (size_t i = 0; i < lv_pool_count(m->pool); i++) {
        const lv_backend_t *b = lv_pool_at(m->pool, i);
        LV_INFO("backend %s: %s, %zu model(s)%s%s, up to %d concurrent", b->id, b->healthy ? "healthy" : "DOWN",
                b->n_models, b->last_error[0] ? ", " : "", b->last_error, b->max_concurrency);
    }
    if (lv_pool_count(m->pool) == 0)
        LV_WARN("worker: no backend is configured and none was found on this machine: it takes no jobs. Restart it "
                "with --backend NAME=URL");
}

static void on_detected(void *ud, int found) { on_refreshed(ud); }

static void worker_help(const char *prog)
{
    printf("Usage: %s worker --redis URL [--backend ID=URL ...] [OPTIONS]\n"
           "\n"
           "Answer the jobs of a livevlm cluster: take frames queued in Redis by the frontends\n"
           "(`%s serve --redis URL`), send them to this worker's model backends and send the answers\n"
           "back through Redis. Jobs are taken only while a backend has a free slot, in the order the\n"
           "queue decides (fair across users, weighted by --user-weight on the frontends); a job whose\n"
           "deadline passed while it waited is dropped unsent. Run as many workers as the backends need;\n"
           "each announces its capacity in Redis every second, and the frontends stop sending to one\n"
           "that has been silent for 3 s. SIGINT/SIGTERM: stop taking jobs, end those in flight (their\n"
           "pages hear worker_stopping and the next frame goes to another worker), exit within 5 s.\n"
           "\n"
           "Cluster:\n"
           "  --redis URL              the cluster's Redis (required): redis://[user:pass@]host[:port][/db]\n"
           "                           or unix:///path.sock (LIVEVLM_REDIS_PASSWORD for a socket's\n"
           "                           password); also LIVEVLM_REDIS\n"
           "  --node-id ID             this worker's id, 1..32 of a-z A-Z 0-9 _ - (default: random)\n"
           "\n"
           "Model backends (as `serve --help` describes them):\n"
           "  --backend ID=URL         add a backend (repeatable)\n"
           "  --backend-key ID=ENVVAR  its API key from environment variable ENVVAR\n"
           "  --backend-max ID=N, --backend-min ID=N, --backend-adaptive ID=on|off,\n"
           "  --backend-models ID=a,b, --backend-max-side ID=N, --backend-jpeg-quality ID=Q\n"
           "  --no-detect              do not look for local backends when none is configured\n"
           "  --connect-timeout-ms N, --first-token-timeout-ms N, --total-timeout-ms N,\n"
           "  --stream-idle-timeout-ms N   backend request deadlines\n"
           "  --max-frame-bytes N      largest frame a job may carry (default 4194304)\n"
           "\n"
           "Metrics and health (plain HTTP, one request per connection):\n"
           "  --host ADDR              address of the listener (default 127.0.0.1)\n"
           "  --port N                 its port (default 0: any free one; see --port-file)\n"
           "  --port-file PATH         write the bound port to PATH once listening\n"
           "  GET /metrics             livevlm_worker_jobs_total{outcome=answered|failed|stale|cancelled},\n"
           "                           livevlm_worker_in_flight, livevlm_worker_capacity,\n"
           "                           livevlm_worker_redis_up, livevlm_backend_* per backend\n"
           "  GET /healthz             200 while the process runs\n"
           "  GET /readyz              200 when Redis is reachable and a backend is healthy, else 503\n"
           "\n"
           "Other:\n"
           "  --config FILE            JSON file with any of these options (as serve's)\n"
           "  --log-level L            debug, info, warn or error (default info)\n"
           "  -h, --help               this text\n"
           "\n"
           "Example: one Redis, two frontends behind haproxy, one worker per GPU server (the frontends\n"
           "share a --config-dir for the access token; docs/operations.md \"Cluster\"):\n"
           "  redis-server --appendonly yes --port 6379 &\n"
           "  R=redis://127.0.0.1:6379 B=vllm=http://gpu1:8000/v1\n"
           "  %s serve --redis $R --no-tls --host 127.0.0.1 --port 8091 --backend $B &\n"
           "  %s serve --redis $R --no-tls --host 127.0.0.1 --port 8092 --backend $B &\n"
           "  %s worker --redis $R --backend $B --backend-max vllm=32 --port 9101 &\n"
           "  LIVEVLM_HAPROXY_BIND=0.0.0.0:8090 LIVEVLM_FRONTEND_1=127.0.0.1:8091 \\\n"
           "    LIVEVLM_FRONTEND_2=127.0.0.1:8092 haproxy -f deploy/haproxy.cfg\n"
           "  curl -s 127.0.0.1:9101/metrics | grep livevlm_worker_\n",
           prog, prog, prog, prog, prog);
}

int lv_worker_main(const char *prog, int argc, char **argv)
{
    static wmain_t main_storage; /* large (the config); lives for the whole process */
    wmain_t *m = &main_storage;
    char err[512] = "";
    int rc;
    /* main passes the command's own argv: "worker" first */
    if (argc > 0 && argv[0][0] != '-') {
        argc--;
        argv++;
    }
    lv_config_defaults(&m->cfg);
    snprintf(m->cfg.host, sizeof(m->cfg.host), "127.0.0.1");
    m->cfg.port = 0;
    if ((rc = lv_config_load(&m->cfg, argc, argv, err, sizeof(err))) < 0 ||
        (rc == 0 && lv_config_validate(&m->cfg, err, sizeof(err)) != 0)) {
        fprintf(stderr, "livevlm worker: %s\n", err);
        return 2;
    }
    if (rc == 1) {
        worker_help(prog);
        return 0;
    }
    if (!m->cfg.redis_url[0]) {
        fprintf(stderr, "livevlm worker: --redis URL is required: the Redis the frontends queue their jobs in (for "
                        "example --redis redis://127.0.0.1:6379); see `%s worker --help`\n",
                prog);
        return 2;
    }
    lv_log_level_t level;
    if (lv_log_parse_level(m->cfg.log_level, &level) != 0) {
        fprintf(stderr, "livevlm worker: --log-level: expected debug, info, warn or error\n");
        return 2;
    }
    lv_log_set_level(level);
    signal(SIGPIPE, SIG_IGN);

    uv_loop_init(&m->loop);
    lv_queue_init(&m->conns);
    if (lv_http_create(&m->loop, &m->http) != 0 || lv_pool_create(&m->loop, m->http, &m->pool) != 0) {
        fprintf(stderr, "livevlm worker: out of memory at start\n");
        return 1;
    }
    if (lv_poolcfg_add(m->pool, &m->cfg) != 0)
        return 2;
    if (listen_metrics(m, err, sizeof(err)) != 0) {
        fprintf(stderr, "livevlm worker: %s\n", err);
        return 1;
    }
    if (lv_worker_start(&m->loop, m->pool, &m->cfg, &m->worker) != 0) {
        fprintf(stderr, "livevlm worker: could not start (see the log above)\n");
        return 1;
    }
    uv_signal_init(&m->loop, &m->sigint);
    uv_signal_init(&m->loop, &m->sigterm);
    m->sigint.data = m->sigterm.data = m;
    uv_signal_start(&m->sigint, on_signal, SIGINT);
    uv_signal_start(&m->sigterm, on_signal, SIGTERM);
    if (lv_pool_count(m->pool) > 0)
        lv_pool_refresh(m->pool, on_refreshed, m);
    else if (m->cfg.detect)
        lv_pool_detect_local(m->pool, on_detected, m);
    else
        on_refreshed(m);
    lv_pool_start_health(m->pool, HEALTH_PERIOD_MS);
    LV_INFO("worker: metrics on http://%s:%d/metrics", m->cfg.host, m->bound_port);
    write_port_file(m);

    uv_run(&m->loop, UV_RUN_DEFAULT);
    if (m->stopping) {
        /* the deadline timer is unreferenced, so the run ended without it: close it too */
        uv_close((uv_handle_t *)&m->exit_timer, NULL);
        for (int i = 0; i < 16 && uv_run(&m->loop, UV_RUN_NOWAIT) != 0; i++)
            ;
    }
    if (uv_loop_close(&m->loop) != 0)
        LV_WARN("worker: event loop closed with handles still open");
    LV_INFO("worker: stopped");
    return 0;
}

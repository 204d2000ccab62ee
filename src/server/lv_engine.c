/* lv_engine.c - the frame path: WebSocket messages -> session mailbox -> fair queue -> backend call
 * -> deltas and answers to the session's sockets. Also the periodic work: credits, stats, hello
 * deadlines, idle sessions. Everything here runs on the loop thread. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lv_app.h"
#include "lv_backend.h"
#include "lv_chat.h"
#include "lv_chatreq.h"
#include "lv_common.h"
#include "lv_frame.h"
#include "lv_json_str.h"
#include "lv_jpeg.h"
#include "lv_log.h"
#include "lv_pipeline.h"
#include "lv_shape.h"
#include "lv_stat.h"
#include "lv_sysmon.h"
#include "lv_wsmsg.h"

#define TICK_MS 20
#define SWEEP_MS 1000
#define HELLO_TIMEOUT_MS 10000
#define MAX_TEXT_BYTES 65536
#define MAX_JSON_DEPTH 16
#define RATE_MSGS_PER_S 50.0
#define RATE_NOTICE_MS 1000  /* at most one rate_limited error per socket per second */
#define FLOOD_FACTOR 10      /* more than 10x RATE_MSGS_PER_S in a second ... */
#define FLOOD_SECONDS 3      /* ... for this many seconds in a row closes the socket with 1008 */
#define DISPATCH_PER_RUN 256
/* Deltas after the first are coalesced for this long: one WebSocket message (one TLS record, one
 * send) per ~40 ms instead of one per token, which people cannot tell apart while reading. */
#define DELTA_COALESCE_MS 40
/* A settings change cancels the answer in progress and sends the frame again, but a session's
 * request is replaced at most once per this: updates cannot become a stream of backend requests. */
#define SUPERSEDE_MIN_MS 1000
/* A request of a user over its share that has produced nothing this long may be taken back for a
 * user below its share who waits (preempt_for_starved): this many no-queue TTFTs, at least ... */
#define PREEMPT_FLOOR_FACTOR 4
#define PREEMPT_MIN_MS 1000

/* One backend request in flight for one session. */
typedef struct lv_job {
    lv_queue_t link; /* app->jobs */
    lv_app_t *app;
    lv_session_t *session;
    lv_chat_t *chat;
    lv_backend_t *backend;
    uint64_t answer_id;
    uint64_t frame_recv_us;
    uint64_t dispatch_us;
    double queue_wait_ms;
    double frame_age_ms;
    lv_frame_t *frame;       /* kept for a retry on another backend */
    lv_buf_t shaped;         /* the frame scaled down for this backend; empty = send frame as is */
    lv_shape_req_t shape;
    bool shaping;            /* a shape request is on the thread pool; on_shaped frees an orphan */
    bool retried;
    double shape_ms;
    uint64_t gateway_us;     /* the gateway's own time on this frame (receive, dispatch, deliver) */
    char model_asked[LV_MODEL_MAX + 1];
    lv_buf_t delta;          /* streamed text not yet sent to the session */
    uint64_t delta_since_ms; /* when the oldest unsent piece arrived; 0 = nothing pending */
    bool first_delta_sent;
    char model[LV_MODEL_MAX + 1];
    /* fair share of the slots in flight (lv_drr job tracking) */
    bool counted;            /* dispatched by the scheduler: its end is reported to it once */
    char user[64];           /* the scheduler's user key it was dispatched under */
    uint64_t linger_us;      /* how long its user keeps competing after it ends */
    bool settings_stale;     /* the session's prompt/model/... changed while it ran */
} lv_job_t;

static void credit_clear(lv_app_t *app, lv_session_t *s);
static bool preempt_for_starved(lv_app_t *app);

/* ---------- messages ---------- */

/* lv_msg_new, lv_msg_from_json, lv_msg_unref: lv_msg.c (each WebSocket frame is built once, its
 * header in front of the payload, and shared by every socket it goes to) */

/* Build, send to a session, release: the common case for session-wide messages. */
static void session_send_json(lv_session_t *s, json_t *obj)
{
    lv_msg_t *m = lv_msg_from_json(obj);
    json_decref(obj);
    if (!m)
        return;
    lv_session_send(s, m);
    lv_msg_unref(m);
}

/* Send text already in JSON form to every socket of a session (templates on the hot path). */
static void session_send_text(lv_session_t *s, const char *text, size_t len)
{
    lv_msg_t *m = lv_msg_new(text, len, false);
    if (!m)
        return;
    lv_session_send(s, m);
    lv_msg_unref(m);
}

static void conn_send_json(lv_conn_t *c, json_t *obj)
{
    lv_msg_t *m = lv_msg_from_json(obj);
    json_decref(obj);
    if (!m)
        return;
    lv_conn_send(c, m);
    lv_msg_unref(m);
}

int lv_conn_send(lv_conn_t *c, lv_msg_t *m)
{
    if (c->kill)
        return LV_ECLOSED;
    /* a socket that does not drain is closed rather than allowed to grow without bound */
    size_t queued = lv_sock_queued_msgs(c->sock);
    if (queued >= LV_CONN_TXQ_MAX || lv_sock_queued_bytes(c->sock) + m->len > LV_CONN_TX_BYTES_MAX) {
        LV_WARN("closing a WebSocket from %s that stopped reading (%zu messages queued)", c->ip, queued);
        lv_conn_close(c, LV_WS_CLOSE_POLICY, "slow reader");
        return LV_ELIMIT;
    }
    return lv_sock_send(c->sock, m); /* written on a later loop turn, with whatever joins it */
}

void lv_session_send(lv_session_t *s, lv_msg_t *m)
{
    lv_queue_t *n, *next;
    for (n = s->viewers.next; n != &s->viewers; n = next) {
        next = n->next;
        lv_conn_send(LV_CONTAINER_OF(n, lv_conn_t, viewer.link), m);
    }
}

void lv_conn_send_error(lv_conn_t *c, const char *code, const char *message, const char *field)
{
    char *text = lv_wsmsg_error(code, message, field);
    if (!text)
        return;
    lv_msg_t *m = lv_msg_new(text, strlen(text), false);
    free(text);
    if (m) {
        lv_conn_send(c, m);
        lv_msg_unref(m);
    }
}

static void session_send_error(lv_app_t *app, lv_session_t *s, const char *code, const char *message, uint64_t answer_id)
{
    lv_pipeline_error(&app->pipe, s, code, message, answer_id);
}

void lv_conn_close(lv_conn_t *c, int status, const char *reason)
{
    if (c->kill)
        return;
    c->kill = true;
    c->kill_status = status;
    c->kill_reason = reason;
    lv_ws_close(c); /* behind what is queued: the error that explains the close goes first */
}

/* ---------- session views ---------- */

static json_t *metrics_json(const lv_session_t *s)
{
    return json_pack("{s:f, s:f, s:I, s:b, s:I, s:I, s:I, s:I}", "last_latency_ms", s->last_latency_ms,
                     "avg_latency_ms", s->rec.avg_latency_ms, "total_inferences", (json_int_t)s->rec.total_inferences,
                     "is_processing", s->job != NULL, "frames_received", (json_int_t)s->frames_received,
                     "frames_replaced", (json_int_t)s->frames_replaced, "frames_rejected",
                     (json_int_t)s->frames_rejected, "errors", (json_int_t)s->errors);
}

static json_t *history_json(const lv_session_t *s)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < s->history_len; i++) {
        const lv_history_entry_t *e = lv_session_history_at(s, i);
        json_array_append_new(arr, json_pack("{s:I, s:s, s:f, s:I}", "answer_id", (json_int_t)e->answer_id, "text",
                                             e->text ? e->text : "", "latency_ms", e->latency_ms, "wall_ms",
                                             (json_int_t)e->wall_ms));
    }
    return arr;
}

static void send_session_hello(lv_conn_t *c, const char *secret, bool resumed)
{
    lv_session_t *s = c->session;
    json_t *o = json_pack("{s:s, s:i, s:s, s:b, s:b, s:o, s:o, s:o}", "type", "session", "protocol", 1, "session_id",
                          s->rec.id, "resumed", resumed, "started", s->rec.started, "settings",
                          lv_settings_to_json(&s->rec.settings), "metrics", metrics_json(s), "history",
                          history_json(s));
    if (secret)
        json_object_set_new(o, "resume_secret", json_string(secret));
    conn_send_json(c, o);
}

/* The page's WebSocket as a source (lv_port_source.h): a credit asks it for one frame. */
static void ws_request_frame(lv_source_t *src, lv_session_t *s, uint32_t credit_id)
{
    lv_conn_t *c = LV_CONTAINER_OF(src, lv_conn_t, source);
    char text[64];
    int len = snprintf(text, sizeof(text), "{\"type\":\"credit\",\"credit_id\":%u}", credit_id);
    lv_msg_t *m = lv_msg_new(text, (size_t)len, false);
    if (!m)
        return;
    lv_conn_send(c, m);
    lv_msg_unref(m);
}

static const lv_source_ops_t ws_source_ops = {ws_request_frame, NULL};

/* The page's WebSocket as a viewer (lv_port_viewer.h): the pipeline's events become its JSON. */
static void ws_queued(lv_viewer_t *v, lv_session_t *s, size_t position, size_t queued)
{
    lv_conn_t *c = LV_CONTAINER_OF(v, lv_conn_t, viewer);
    char text[96];
    int len = snprintf(text, sizeof(text), "{\"type\":\"queued\",\"position\":%zu,\"queued\":%zu}", position, queued);
    lv_msg_t *m = lv_msg_new(text, (size_t)len, false);
    if (!m)
        return;
    lv_conn_send(c, m);
    lv_msg_unref(m);
}

static void ws_frame_dropped(lv_viewer_t *v, lv_session_t *s, const char *reason, double age_ms)
{
    lv_conn_t *c = LV_CONTAINER_OF(v, lv_conn_t, viewer);
    conn_send_json(c, json_pack("{s:s, s:s, s:f}", "type", "frame_dropped", "reason", reason, "age_ms", age_ms));
}

static void ws_error(lv_viewer_t *v, lv_session_t *s, const char *code, const char *message, uint64_t answer_id)
{
    lv_conn_t *c = LV_CONTAINER_OF(v, lv_conn_t, viewer);
    json_t *o = json_pack("{s:s, s:s, s:s}", "type", "error", "code", code, "message", message);
    if (o && answer_id)
        json_object_set_new(o, "answer_id", json_integer((json_int_t)answer_id));
    conn_send_json(c, o);
}

static void ws_answer_cancelled(lv_viewer_t *v, lv_session_t *s, uint64_t answer_id, const char *reason)
{
    lv_conn_t *c = LV_CONTAINER_OF(v, lv_conn_t, viewer);
    char text[128];
    int len = snprintf(text, sizeof(text), "{\"type\":\"answer_cancelled\",\"answer_id\":%llu,\"reason\":\"%s\"}",
                       (unsigned long long)answer_id, reason);
    lv_msg_t *m = lv_msg_new(text, (size_t)len, false);
    if (!m)
        return;
    lv_conn_send(c, m);
    lv_msg_unref(m);
}

static const lv_viewer_ops_t ws_viewer_ops = {
    .queued = ws_queued,
    .error = ws_error,
    .frame_dropped = ws_frame_dropped,
    .answer_cancelled = ws_answer_cancelled,
};

static void attach(lv_conn_t *c, lv_session_t *s)
{
    uint64_t now = lv_now_ms();
    c->session = s;
    c->viewer.ops = &ws_viewer_ops;
    c->source.ops = &ws_source_ops;
    lv_pipeline_attach_viewer(&c->app->pipe, s, &c->viewer, now);
    lv_pipeline_attach_source(&c->app->pipe, s, &c->source, now);
}

/* ---------- the scheduler and backend calls ---------- */

static void job_free(lv_job_t *job)
{
    if (job->counted) /* its slot is free: the user's share counts one job less */
        lv_drr_job_done(&job->app->drr, job->user, lv_now_us(), job->linger_us);
    if (job->session)
        job->session->job = NULL;
    lv_queue_remove(&job->link);
    lv_buf_free(&job->delta);
    lv_buf_free(&job->shaped);
    lv_frame_unref(job->frame);
    free(job);
}

/* Stop a job's work. A chat is cancelled and the job freed now; a frame being shaped cannot be
 * taken back from its thread, so the job is orphaned and on_shaped frees it. */
static void job_abort(lv_job_t *job)
{
    if (job->session)
        job->session->job = NULL;
    job->session = NULL;
    if (job->shaping) {
        lv_shape_cancel(&job->shape);
        lv_queue_remove(&job->link);
        return;
    }
    lv_chat_cancel(job->chat);
    job->chat = NULL;
    job_free(job);
}

static void flush_delta(lv_job_t *job)
{
    if (job->delta.len && job->session) {
        /* the hottest message: written from a template, not through a JSON tree */
        lv_buf_t b;
        lv_buf_init(&b, 8 * job->delta.len + 128);
        if (lv_buf_printf(&b, "{\"type\":\"delta\",\"answer_id\":%llu,\"text\":",
                          (unsigned long long)job->answer_id) == 0 &&
            lv_json_str_append(&b, job->delta.data, job->delta.len) == 0 && lv_buf_append(&b, "}", 1) == 0)
            session_send_text(job->session, b.data, b.len);
        lv_buf_free(&b);
    }
    lv_buf_reset(&job->delta);
    job->delta_since_ms = 0;
}

static void on_delta(void *ud, const char *text, size_t len)
{
    lv_job_t *job = ud;
    if (!job->session)
        return;
    if (lv_buf_append(&job->delta, text, len) != 0) {
        flush_delta(job); /* over the cap: send what we have, then this piece alone */
        lv_buf_append(&job->delta, text, len);
    }
    if (!job->first_delta_sent) {
        /* the first token goes out at once: time to first token is what people notice */
        job->first_delta_sent = true;
        flush_delta(job);
        /* a request past its first token may be the evidence that lets a full window grow */
        if (lv_drr_queued(&job->app->drr) && lv_backend_grow_on_demand(job->backend))
            lv_engine_kick(job->app);
    } else if (!job->delta_since_ms) {
        job->delta_since_ms = lv_now_ms();
    }
}

static void on_done(void *ud, const lv_chat_result_t *r);
static const lv_chat_cb_t chat_cbs = {on_delta, on_done};
static int job_send(lv_job_t *job);

static void session_ready(lv_app_t *app, lv_session_t *s) { lv_pipeline_ready(&app->pipe, s); }
static void session_unready(lv_app_t *app, lv_session_t *s) { lv_pipeline_unready(&app->pipe, s); }

/* The job ends without an answer and its frame goes back in line (unless a newer one already
 * waits, or the session stopped): the session is queued again at once. */
static void job_requeue(lv_app_t *app, lv_job_t *job)
{
    lv_session_t *s = job->session;
    if (!s->pending && s->rec.started) {
        s->pending = job->frame;
        job->frame = NULL;
    }
    job_free(job);
    session_ready(app, s);
    lv_engine_kick(app);
}

static bool retryable(const lv_chat_result_t *r)
{
    /* only before the first token: after it, the user has already seen part of this answer */
    if (r->n_deltas > 0 || r->rc == LV_ETIMEDOUT)
        return false;
    return r->http_status == 0 || r->http_status >= 500 || r->http_status == 429;
}

static void on_done(void *ud, const lv_chat_result_t *r)
{
    lv_job_t *job = ud;
    lv_app_t *app = job->app;
    lv_session_t *s = job->session;
    job->chat = NULL;
    if (!s) {
        job_free(job);
        return;
    }
    if (r->rc != 0 && !job->retried && !app->stopping && retryable(r)) {
        lv_backend_t *other = NULL;
        const char *model = NULL;
        int rc = lv_pool_resolve_excluding(app->pool, s->rec.settings.backend, job->model_asked, job->backend, &other,
                                           &model);
        if (rc == LV_EAGAIN) {
            /* another backend serves the model but has no free slot: the frame goes back in line
             * (unless a newer one already waits) instead of failing in front of the user */
            LV_INFO("session %.8s: %s failed before the first token (%s); the frame waits for another backend",
                    s->rec.id, job->backend->id, r->error_message ? r->error_message : "error");
            lv_stat_retry(app);
            job_requeue(app, job);
            return;
        }
        if (rc == 0) {
            LV_INFO("session %.8s: %s failed before the first token (%s); retrying on %s", s->rec.id,
                    job->backend->id, r->error_message ? r->error_message : "error", other->id);
            lv_stat_retry(app);
            job->retried = true;
            job->backend = other;
            snprintf(job->model, sizeof(job->model), "%s", model);
            if (job_send(job) == 0)
                return;
        }
    }
    flush_delta(job); /* every delta precedes the final answer */
    uint64_t t0 = lv_now_us();
    if (r->rc == 0) {
        double latency_ms = (double)(t0 - job->frame_recv_us) / 1000.0;
        s->last_latency_ms = latency_ms;
        s->rec.total_inferences++;
        s->rec.avg_latency_ms += (latency_ms - s->rec.avg_latency_ms) / (double)s->rec.total_inferences;
        app->answers_total++;
        int tokens = r->completion_tokens > 0 ? r->completion_tokens : r->n_deltas;
        s->job = NULL; /* so is_processing reads false in the final metrics */
        json_t *m = metrics_json(s);
        json_object_set_new(m, "ttft_ms", json_real((double)r->ttft_us / 1000.0));
        json_object_set_new(m, "queue_wait_ms", json_real(job->queue_wait_ms));
        json_object_set_new(m, "frame_age_ms", json_real(job->frame_age_ms));
        json_object_set_new(m, "shape_ms", json_real(job->shape_ms));
        json_object_set_new(m, "tokens", json_integer(tokens));
        json_object_set_new(m, "backend", json_string(job->backend->id));
        json_object_set_new(m, "model", json_string(job->model));
        json_object_set_new(m, "streamed", json_boolean(r->streamed));
        json_t *o = json_pack("{s:s, s:I, s:s%, s:o}", "type", "vlm_response", "answer_id",
                              (json_int_t)job->answer_id, "text", r->text ? r->text : "", r->text ? r->text_len : 0,
                              "metrics", m);
        if (o && s->rec.settings.debug) {
            json_t *req = r->request_debug_json ? json_loads(r->request_debug_json, 0, NULL) : NULL;
            json_t *resp = r->response_debug_json ? json_loads(r->response_debug_json, 0, NULL) : NULL;
            json_object_set_new(o, "request_payload", req ? req : json_null());
            json_object_set_new(o, "response_payload", resp ? resp : json_null());
        }
        lv_session_history_add(s, job->answer_id, r->text ? r->text : "", r->text ? r->text_len : 0, latency_ms,
                               lv_wall_ms());
        lv_session_save(app->reg, s);
        if (o)
            session_send_json(s, o);
        lv_stat_answer(app, r, latency_ms, job->gateway_us + (lv_now_us() - t0));
    } else {
        app->errors_total++;
        const char *code = r->error_code ? r->error_code : (r->rc == LV_ETIMEDOUT ? "backend_timeout" : "backend_error");
        char msg[512];
        snprintf(msg, sizeof(msg), "%s: %s", job->backend->id,
                 r->error_message ? r->error_message : lv_strerror(r->rc));
        LV_INFO("session %.8s: %s %s", s->rec.id, code, msg);
        session_send_error(app, s, code, msg, job->answer_id);
        lv_stat_error(app, code);
    }
    job_free(job);
    /* the slot this job held is free, and this session may have a frame waiting */
    session_ready(app, s);
    lv_engine_kick(app);
}

/* Start (or restart, for a retry) the backend call of a job whose frame is ready to send. */
static int job_send(lv_job_t *job)
{
    lv_app_t *app = job->app;
    lv_session_t *s = job->session;
    const unsigned char *jpeg = job->shaped.len ? (const unsigned char *)job->shaped.data : job->frame->data;
    size_t jpeg_len = job->shaped.len ? job->shaped.len : job->frame->len;
    lv_chat_req_t req = {
        .model = job->model,
        .prompt = s->rec.settings.prompt,
        .max_tokens = s->rec.settings.max_tokens,
        .temperature = s->rec.settings.temperature,
        .jpeg = jpeg,
        .jpeg_len = jpeg_len,
        .connect_timeout_ms = app->cfg.connect_timeout_ms,
        .first_token_timeout_ms = app->cfg.first_token_timeout_ms,
        .total_timeout_ms = app->cfg.total_timeout_ms,
        .stream_idle_timeout_ms = app->cfg.stream_idle_timeout_ms > 0 ? app->cfg.stream_idle_timeout_ms : -1,
        .want_debug = s->rec.settings.debug,
    };
    /* the request is built from the settings as they are now (a change while the frame was being
     * shaped is in it), except the model, which was resolved at dispatch */
    job->settings_stale = strcmp(job->model_asked, s->rec.settings.model) != 0;
    uint64_t t0 = lv_now_us();
    int rc = lv_chat_start(app->pool, job->backend, &req, &chat_cbs, job, &job->chat);
    job->gateway_us += lv_now_us() - t0;
    return rc;
}

static void start_failed(lv_job_t *job)
{
    lv_session_t *s = job->session;
    lv_app_t *app = job->app;
    job_free(job);
    if (s) {
        session_send_error(app, s, "backend_error", "could not start the backend request", 0);
        session_ready(app, s);
    }
}

static void announce(lv_job_t *job)
{
    json_t *o = json_pack("{s:s, s:I, s:s, s:s, s:f, s:f}", "type", "answer_start", "answer_id",
                          (json_int_t)job->answer_id, "backend", job->backend->id, "model", job->model,
                          "queue_wait_ms", job->queue_wait_ms, "frame_age_ms", job->frame_age_ms);
    if (o)
        session_send_json(job->session, o);
}

static void on_shaped(lv_shape_req_t *req, int rc)
{
    lv_job_t *job = req->data;
    lv_app_t *app = job->app;
    job->shaping = false;
    job->backend->inflight--; /* the slot was held while shaping; lv_chat_start takes it again */
    if (!job->session || app->stopping) {
        job_free(job);
        return;
    }
    if (rc < 0) {
        lv_buf_reset(&job->shaped); /* send the original: a model can still read it */
        LV_WARN("session %.8s: frame shaping failed (%s); sending it unshaped", job->session->rec.id, lv_strerror(rc));
    } else if (rc == 0) {
        job->shape_ms = (double)(req->info.decode_us + req->info.resize_us + req->info.encode_us) / 1000.0;
        lv_stat_shape(app, job->shape_ms);
    }
    if (job_send(job) != 0) {
        start_failed(job);
        lv_engine_kick(app);
        return;
    }
    announce(job);
}

static bool detached_too_long(const lv_app_t *app, const lv_session_t *s, uint64_t now_ms)
{
    return lv_pipeline_detached_too_long(&app->pipe, s, now_ms);
}

/* The job counts against its user's share of the slots in flight until it ends (job_free). Its
 * user keeps competing a little after that, for about one frame interval: long enough for the
 * page's next frame to come back (so a user between two frames keeps its slot against one who
 * borrows), never long when the interval is. */
static void job_count(lv_job_t *job, const lv_session_t *s)
{
    job->counted = true;
    snprintf(job->user, sizeof(job->user), "%s", s->rec.principal);
    uint64_t interval_us = (uint64_t)s->rec.settings.interval_ms * 1000u;
    job->linger_us = LV_MIN(interval_us + 500000u, (uint64_t)5000000u);
}

static lv_drr_verdict_t try_dispatch(lv_drr_node_t *node, void *ud)
{
    lv_app_t *app = ud;
    lv_session_t *s = LV_CONTAINER_OF(node, lv_session_t, drr);
    lv_backend_t *b = NULL;
    const char *model = NULL;
    if (s->job || !s->pending)
        return LV_DRR_DROP; /* queued again when the job ends */
    if (detached_too_long(app, s, lv_now_ms())) {
        lv_pipeline_left_queue(&app->pipe, s);
        lv_frame_unref(lv_session_mailbox_take(s));
        return LV_DRR_DROP;
    }
    int rc = lv_pool_resolve(app->pool, s->rec.settings.backend, s->rec.settings.model, &b, &model);
    if (rc == LV_EAGAIN)
        return LV_DRR_BUSY;
    uint64_t t0 = lv_now_us();
    lv_frame_t *f = lv_session_mailbox_take(s);
    if (rc != 0) {
        char msg[1024];
        snprintf(msg, sizeof(msg), "no healthy backend serves model '%s'%s%s. %s",
                 s->rec.settings.model[0] ? s->rec.settings.model : "(none chosen)",
                 s->rec.settings.backend[0] ? " on backend " : "", s->rec.settings.backend,
                 app->no_backend_help[0] ? app->no_backend_help : "Pick another model or check the backend.");
        session_send_error(app, s, "no_backend", msg, 0);
        lv_stat_drop(app, "no_backend");
        lv_frame_unref(f);
        return LV_DRR_DROP;
    }
    lv_job_t *job = calloc(1, sizeof(*job));
    if (!job) {
        lv_frame_unref(f);
        return LV_DRR_DROP;
    }
    job->app = app;
    job->session = s;
    job->frame = f;
    lv_buf_init(&job->delta, 65536);
    lv_buf_init(&job->shaped, app->cfg.max_frame_bytes);
    job->backend = b;
    job->answer_id = ++s->answer_seq;
    job->frame_recv_us = f->recv_us;
    job->dispatch_us = t0;
    job->queue_wait_ms = (double)(t0 - f->recv_us) / 1000.0;
    job->frame_age_ms = job->queue_wait_ms + f->capture_age_ms;
    snprintf(job->model, sizeof(job->model), "%s", model ? model : s->rec.settings.model);
    snprintf(job->model_asked, sizeof(job->model_asked), "%s", s->rec.settings.model);
    s->job = job;
    lv_queue_insert_tail(&app->jobs, &job->link);
    lv_pipeline_left_queue(&app->pipe, s); /* it leaves the queue */
    lv_stat_dispatch(app, job->queue_wait_ms, job->frame_age_ms);

    if (b->max_side > 0 && LV_MAX(f->width, f->height) > b->max_side) {
        /* shaping decodes pixels: never on the loop thread */
        job->shape.data = job;
        job->shaping = true;
        b->inflight++; /* hold the slot while shaping */
        if (lv_shape_submit(app->loop, &job->shape, f->data, f->len, b->max_side,
                            b->jpeg_quality > 0 ? b->jpeg_quality : 85, &job->shaped, on_shaped) == 0) {
            job->gateway_us += lv_now_us() - t0;
            job_count(job, s);
            return LV_DRR_DISPATCHED;
        }
        job->shaping = false;
        b->inflight--;
    }
    if (job_send(job) != 0) {
        start_failed(job);
        return LV_DRR_DROP;
    }
    job->gateway_us += lv_now_us() - t0 - 0; /* dispatch work, the call start included */
    announce(job);
    job_count(job, s);
    return LV_DRR_DISPATCHED;
}

static void on_stale(lv_drr_node_t *node, void *ud)
{
    lv_app_t *app = ud;
    lv_pipeline_drop_stale(&app->pipe, LV_CONTAINER_OF(node, lv_session_t, drr), lv_now_us());
}

static void on_kick(uv_timer_t *t)
{
    lv_app_t *app = t->data;
    app->kick_pending = false;
    if (app->stopping)
        return;
    lv_drr_set_capacity(&app->drr, lv_pool_capacity(app->pool));
    size_t n = lv_drr_run(&app->drr, DISPATCH_PER_RUN, lv_now_us(), try_dispatch, on_stale, app);
    /* frames still wait: a full backend that shows free room grows its window (one request per
     * first token), and the next run may use it */
    if (lv_drr_queued(&app->drr) && lv_pool_grow_on_demand(app->pool) > 0)
        lv_engine_kick(app);
    else if (preempt_for_starved(app))
        lv_engine_kick(app);
    /* bounded work per wake-up: if a full batch went out, come back for the rest */
    if (n == DISPATCH_PER_RUN)
        lv_engine_kick(app);
}

void lv_engine_kick(lv_app_t *app)
{
    if (app->kick_pending || app->stopping)
        return;
    app->kick_pending = true;
    uv_timer_start(&app->kick, on_kick, 0, 0);
}

/* ---------- client messages ---------- */

/* update_settings: the answer in progress, if any, was asked with the old settings. */
static void job_settings_changed(lv_session_t *s, const lv_settings_t *next)
{
    if (lv_pipeline_supersedes(s, next))
        ((lv_job_t *)s->job)->settings_stale = true;
}

/* The backend and model a session chose must exist: the backend id is configured, and the model
 * is listed by a backend it could go to. A model is refused only when that is known (every such
 * backend has listed its models); until then it is accepted and frames get no_backend if it is
 * not served. Only a changed choice is checked: a backend that drops a model later must not make
 * every other update fail. 0, or LV_EINVAL with the field and a message in msg. */
static int check_choice(lv_app_t *app, const lv_settings_t *next, const lv_settings_t *prev, const char **field,
                        char *msg, size_t msg_size)
{
    bool model_changed = strcmp(next->model, prev->model) != 0;
    if (next->backend[0] && !lv_pool_find(app->pool, next->backend)) {
        *field = "backend";
        snprintf(msg, msg_size, "no backend with that id is configured");
        return LV_EINVAL;
    }
    if ((model_changed || strcmp(next->backend, prev->backend) != 0) &&
        lv_pool_model_known(app->pool, next->backend, next->model) == 0) {
        *field = model_changed ? "model" : "backend";
        snprintf(msg, msg_size, "no %s%s serves model '%.256s' (GET /api/v1/models lists what is served)",
                 next->backend[0] ? "backend " : "configured backend", next->backend, next->model);
        return LV_EINVAL;
    }
    return 0;
}

static void handle_hello(lv_conn_t *c, const lv_client_msg_t *m)
{
    lv_app_t *app = c->app;
    if (c->session) {
        lv_conn_send_error(c, "bad_message", "hello was already sent on this socket", NULL);
        return;
    }
    if (m->session_id || m->resume_secret) {
        lv_session_t *s = NULL;
        if (!m->session_id || !m->resume_secret ||
            lv_session_resume(app->reg, m->session_id, m->resume_secret, &s) != 0) {
            lv_conn_send_error(c, "session_not_found",
                               "no session with that id and secret (it may have expired); send hello without them "
                               "to start a new one",
                               NULL);
            return;
        }
        attach(c, s);
        send_session_hello(c, NULL, true);
        return;
    }
    lv_settings_t settings, base;
    lv_settings_defaults(&settings);
    const char *def_model = lv_pool_default_model(app->pool);
    if (def_model)
        snprintf(settings.model, sizeof(settings.model), "%s", def_model);
    base = settings;
    if (m->settings) {
        const char *field = NULL, *why = NULL;
        char msg[400];
        if (lv_settings_apply_json(&settings, m->settings, &field, &why) != 0) {
            lv_conn_send_error(c, "invalid_setting", why ? why : "invalid setting", field);
            return;
        }
        if (check_choice(app, &settings, &base, &field, msg, sizeof(msg)) != 0) {
            lv_conn_send_error(c, "invalid_setting", msg, field);
            return;
        }
    }
    char secret[65];
    lv_session_t *s = NULL;
    int rc = lv_session_create(app->reg, c->ip, &settings, secret, &s);
    if (rc == LV_ELIMIT) {
        lv_conn_send_error(c, "too_many_sessions",
                           "session limit reached (per address or in total); close other tabs or wait for idle "
                           "sessions to expire",
                           NULL);
        lv_conn_close(c, LV_WS_CLOSE_POLICY, "too many sessions");
        return;
    }
    if (rc) {
        lv_conn_send_error(c, "internal", "could not create a session", NULL);
        return;
    }
    attach(c, s);
    send_session_hello(c, secret, false);
    memset(secret, 0, sizeof(secret));
}

static void handle_update_settings(lv_conn_t *c, const lv_client_msg_t *m)
{
    lv_session_t *s = c->session;
    const char *field = NULL, *why = NULL;
    if (!m->settings) {
        lv_conn_send_error(c, "bad_message", "update_settings needs a \"settings\" object", "settings");
        return;
    }
    lv_settings_t next = s->rec.settings;
    if (lv_settings_apply_json(&next, m->settings, &field, &why) != 0) {
        lv_conn_send_error(c, "invalid_setting", why ? why : "invalid setting", field);
        return;
    }
    char msg[400];
    if (check_choice(c->app, &next, &s->rec.settings, &field, msg, sizeof(msg)) != 0) {
        lv_conn_send_error(c, "invalid_setting", msg, field);
        return;
    }
    bool interval_changed = next.interval_ms != s->rec.settings.interval_ms;
    job_settings_changed(s, &next);
    s->rec.settings = next;
    if (interval_changed && s->rec.started && !s->credit_outstanding)
        s->next_credit_ms = lv_now_ms();
    lv_session_save(c->app->reg, s);
    session_send_json(s, json_pack("{s:s, s:o}", "type", "settings_updated", "settings", lv_settings_to_json(&next)));
}

/* A text message over the rate is dropped unread. The sender hears of it at most once a second, in
 * one error that says how many went since the last one: a reply per dropped message would let a
 * flood fill the socket's send queue and close it as a "slow reader" (docs/protocol.md, Caps). */
static void text_dropped(lv_conn_t *c, uint64_t now)
{
    c->rl_dropped++;
    lv_stat_rate_limited(c->app, "messages");
    if (c->rl_notice_ms && now - c->rl_notice_ms < RATE_NOTICE_MS)
        return;
    char msg[160];
    snprintf(msg, sizeof(msg), "too many messages: at most %d per second; %llu dropped", (int)RATE_MSGS_PER_S,
             (unsigned long long)c->rl_dropped);
    json_t *o = json_pack("{s:s, s:s, s:s, s:I}", "type", "error", "code", "rate_limited", "message", msg, "dropped",
                          (json_int_t)c->rl_dropped);
    if (o)
        conn_send_json(c, o);
    c->rl_notice_ms = now;
    c->rl_dropped = 0;
}

/* A page with a bug may send too fast for a moment; far beyond the rate for seconds on end is a
 * flood, and reading it costs the loop: the socket is closed (1008). 1 when it was. */
static int text_flood(lv_conn_t *c, uint64_t now)
{
    if (now - c->flood_win_ms >= 1000) {
        bool over = c->flood_win_n > FLOOD_FACTOR * RATE_MSGS_PER_S;
        /* a strike counts only for the window right before this one: a quiet second resets */
        c->flood_strikes = over && now - c->flood_win_ms < 2000 ? c->flood_strikes + 1 : 0;
        c->flood_win_ms = now;
        c->flood_win_n = 0;
    }
    if (++c->flood_win_n <= FLOOD_FACTOR * RATE_MSGS_PER_S || c->flood_strikes < FLOOD_SECONDS - 1)
        return 0;
    LV_WARN("closing a WebSocket from %s: more than %d text messages a second for %d s", c->ip,
            (int)(FLOOD_FACTOR * RATE_MSGS_PER_S), FLOOD_SECONDS);
    lv_stat_rate_limited(c->app, "flood");
    lv_conn_close(c, LV_WS_CLOSE_POLICY, "message flood");
    return 1;
}

static void handle_text(lv_conn_t *c, const char *p, size_t len)
{
    lv_client_msg_t m;
    const char *code = NULL, *text = NULL;
    uint64_t now = lv_now_ms();
    if (c->kill || text_flood(c, now))
        return;
    /* token bucket: RATE_MSGS_PER_S sustained, the same as burst */
    c->rl_tokens += (double)(now - c->rl_last_ms) * RATE_MSGS_PER_S / 1000.0;
    if (c->rl_tokens > RATE_MSGS_PER_S)
        c->rl_tokens = RATE_MSGS_PER_S;
    c->rl_last_ms = now;
    if (c->rl_tokens < 1.0) {
        text_dropped(c, now);
        return;
    }
    c->rl_tokens -= 1.0;
    if (lv_wsmsg_parse(p, len, MAX_TEXT_BYTES, MAX_JSON_DEPTH, &m, &code, &text) != 0) {
        lv_conn_send_error(c, code ? code : "bad_message", text ? text : "malformed message", NULL);
        return;
    }
    if (m.type == LV_MSG_HELLO) {
        handle_hello(c, &m);
        goto out;
    }
    if (m.type == LV_MSG_UNKNOWN) {
        char msg[160];
        snprintf(msg, sizeof(msg), "unknown message type '%.64s'", m.type_name ? m.type_name : "");
        lv_conn_send_error(c, "unknown_type", msg, NULL);
        goto out;
    }
    if (!c->session) {
        lv_conn_send_error(c, "hello_required", "send {\"type\":\"hello\"} first", NULL);
        goto out;
    }
    lv_session_t *s = c->session;
    switch (m.type) {
    case LV_MSG_UPDATE_SETTINGS:
        handle_update_settings(c, &m);
        break;
    case LV_MSG_START:
        lv_pipeline_start(&c->app->pipe, s, now);
        lv_session_save(c->app->reg, s);
        session_send_json(s, json_pack("{s:s}", "type", "started"));
        break;
    case LV_MSG_STOP:
        lv_pipeline_stop(&c->app->pipe, s, now);
        lv_session_save(c->app->reg, s);
        session_send_json(s, json_pack("{s:s}", "type", "stopped"));
        break;
    case LV_MSG_PING: {
        json_t *o = json_pack("{s:s}", "type", "pong");
        if (m.t)
            json_object_set(o, "t", m.t);
        conn_send_json(c, o);
        break;
    }
    default:
        break;
    }
out:
    lv_wsmsg_free(&m);
}

static void reject_frame(lv_conn_t *c, const char *code, const char *message, const char *reason)
{
    c->session->frames_rejected++;
    lv_stat_drop(c->app, reason);
    lv_conn_send_error(c, code, message, NULL);
}

static void handle_frame(lv_conn_t *c, const unsigned char *p, size_t len)
{
    lv_app_t *app = c->app;
    lv_session_t *s = c->session;
    lv_frame_hdr_t hdr;
    lv_jpeg_info_t info;
    const char *why = NULL;
    uint64_t t0 = lv_now_us();
    if (!s) {
        lv_conn_send_error(c, "hello_required", "send {\"type\":\"hello\"} before frames", NULL);
        return;
    }
    s->frames_received++;
    if (lv_frame_parse(p, len, &hdr) != 0) {
        reject_frame(c, "bad_frame", "a frame must be a JPEG, bare or behind the 16-byte LVF1 header", "rejected");
        return;
    }
    lv_jpeg_caps_t caps = {app->cfg.max_frame_bytes, app->cfg.max_frame_side, app->cfg.max_frame_pixels};
    int rc = lv_jpeg_check(hdr.jpeg, hdr.jpeg_len, &caps, &info, &why);
    if (rc != 0) {
        char msg[200];
        snprintf(msg, sizeof(msg), "frame rejected: %s", why ? why : "invalid JPEG");
        reject_frame(c, rc == LV_ELIMIT ? "frame_too_large" : "bad_frame", msg, "rejected");
        return;
    }
    if (hdr.credit_id && hdr.credit_id == s->credit_outstanding)
        credit_clear(app, s);
    if (!s->rec.started) {
        reject_frame(c, "not_started", "send {\"type\":\"start\"} before frames", "not_started");
        return;
    }
    uint64_t now_ms = t0 / 1000;
    if (app->cfg.user_fpm > 0 && !lv_iptable_frame_allowed(app->ips, s->rec.principal, app->cfg.user_fpm, now_ms)) {
        char msg[200];
        snprintf(msg, sizeof(msg), "frame rate limit: at most %d frames per minute per user; frames are accepted "
                 "again in %d s", app->cfg.user_fpm,
                 (int)(lv_iptable_frame_retry_ms(app->ips, s->rec.principal, now_ms) / 1000) + 1);
        lv_stat_rate_limited(app, "frames");
        reject_frame(c, "rate_limited", msg, "rate_limited");
        return;
    }
    lv_frame_t *f = lv_frame_new(hdr.jpeg, hdr.jpeg_len);
    if (!f)
        return;
    f->recv_us = t0;
    f->capture_age_ms = hdr.capture_age_ms;
    f->width = info.width;
    f->height = info.height;
    app->frames_total++;
    if (lv_session_mailbox_put(s, f))
        lv_stat_drop(app, "replaced");
    if (!s->job) {
        session_ready(app, s);
        lv_engine_kick(app);
    }
    lv_stat_frame_received(app, lv_now_us() - t0);
}

void lv_engine_on_message(lv_conn_t *c, const char *p, size_t len, bool binary)
{
    if (binary)
        handle_frame(c, (const unsigned char *)p, len);
    else
        handle_text(c, p, len);
}

void lv_engine_on_close(lv_conn_t *c)
{
    lv_session_t *s = c->session;
    if (!s)
        return;
    uint64_t now = lv_now_ms();
    c->session = NULL;
    lv_pipeline_detach_viewer(&c->app->pipe, s, &c->viewer, now);
    lv_pipeline_detach_source(&c->app->pipe, s, &c->source, now);
}

/* ---------- periodic work ---------- */

static void credit_clear(lv_app_t *app, lv_session_t *s) { lv_pipeline_credit_clear(&app->pipe, s); }

/* The pipeline's questions about the backends and principals (lv_pipeline.h). */
static size_t pipe_capacity(void *ud)
{
    lv_app_t *app = ud;
    size_t capacity = 0;
    for (size_t i = 0; i < lv_pool_count(app->pool); i++) {
        lv_backend_t *b = lv_pool_at(app->pool, i);
        if (b->healthy)
            capacity += (size_t)lv_backend_limit(b);
    }
    return capacity;
}


static size_t pipe_free_slots(void *ud)
{
    lv_app_t *app = ud;
    size_t free_slots = 0;
    for (size_t i = 0; i < lv_pool_count(app->pool); i++) {
        lv_backend_t *b = lv_pool_at(app->pool, i);
        int limit = lv_backend_limit(b);
        if (b->healthy && b->inflight < limit)
            free_slots += (size_t)(limit - b->inflight);
    }
    return free_slots;
}

static void pipe_dropped(void *ud, const char *reason) { lv_stat_drop((lv_app_t *)ud, reason); }

static bool pipe_credit_allowed(void *ud, const lv_session_t *s, uint64_t now)
{
    lv_app_t *app = ud;
    return app->cfg.user_fpm <= 0 || lv_iptable_frame_would_allow(app->ips, s->rec.principal, app->cfg.user_fpm, now);
}

static void send_stats_and_deadlines(lv_app_t *app, uint64_t now)
{
    size_t len = 0;
    const char *stats = app->sysmon ? lv_sysmon_json(app->sysmon, &len) : NULL;
    lv_msg_t *msg = NULL;
    lv_queue_t *n, *next;
    for (n = app->conns.next; n != &app->conns; n = next) {
        next = n->next;
        lv_conn_t *c = LV_CONTAINER_OF(n, lv_conn_t, app_link);
        if (!c->session) {
            if (now - c->opened_ms > HELLO_TIMEOUT_MS) {
                lv_conn_send_error(c, "hello_required", "no hello within 10 s", NULL);
                lv_conn_close(c, LV_WS_CLOSE_POLICY, "no hello");
            }
            continue;
        }
        int every = c->session->rec.settings.stats_interval_ms;
        if (!stats || every <= 0 || now - c->last_stats_ms < (uint64_t)every)
            continue;
        if (!msg) {
            /* rendered once per tick for every socket that is due */
            static const char head[] = "{\"type\":\"gpu_stats\",\"stats\":";
            lv_buf_t b;
            lv_buf_init(&b, 1u << 20);
            if (lv_buf_append(&b, head, sizeof(head) - 1) == 0 && lv_buf_append(&b, stats, len) == 0 &&
                lv_buf_append(&b, "}", 1) == 0)
                msg = lv_msg_new(b.data, b.len, false);
            lv_buf_free(&b);
            if (!msg)
                return;
        }
        c->last_stats_ms = now;
        lv_conn_send(c, msg);
    }
    lv_msg_unref(msg);
}

/* Cancel the answer in progress, tell the page (`answer_cancelled` with the reason) and put the
 * frame back in line (unless a newer one waits): the session's next answer follows as usual.
 * reason: "settings_changed" (it was for settings nobody asks for any more) or "preempted" (its
 * slot went to a user below its share). */
static void job_take_back(lv_app_t *app, lv_job_t *job, const char *reason)
{
    lv_session_t *s = job->session;
    lv_chat_cancel(job->chat);
    job->chat = NULL;
    lv_buf_reset(&job->delta); /* unsent pieces of an answer nobody wants */
    job->delta_since_ms = 0;
    LV_DEBUG("session %.8s: answer %llu cancelled (%s), the frame goes back in line", s->rec.id,
             (unsigned long long)job->answer_id, reason);
    lv_pipeline_answer_cancelled(&app->pipe, s, job->answer_id, reason);
    lv_stat_cancel(app, reason);
    job_requeue(app, job);
}

/* A user below its share waits and no slot is free: users over their share hold them (they
 * borrowed idle slots while nobody else waited). Take back the oldest request of such a user that
 * has produced nothing for PREEMPT_FLOOR_FACTOR x the backend's no-queue time to first token (at
 * least PREEMPT_MIN_MS): it is hung or queued inside the backend, so little is lost, and its frame
 * waits behind its user's share. Only on a backend the waiting session can use; never a request
 * that is streaming (those end, and growth on demand makes room meanwhile). One per call. */
static bool preempt_for_starved(lv_app_t *app)
{
    lv_drr_node_t *node = lv_drr_starved(&app->drr);
    if (!node)
        return false;
    const lv_session_t *want = LV_CONTAINER_OF(node, lv_session_t, drr);
    uint64_t now_us = lv_now_us();
    lv_job_t *victim = NULL;
    lv_queue_t *n;
    LV_QUEUE_FOREACH(n, &app->jobs)
    {
        lv_job_t *job = LV_CONTAINER_OF(n, lv_job_t, link);
        if (!job->counted || !job->session || job->shaping || !job->chat || job->first_delta_sent)
            continue;
        if (victim && job->dispatch_us >= victim->dispatch_us)
            continue;
        if ((want->rec.settings.backend[0] && strcmp(want->rec.settings.backend, job->backend->id) != 0) ||
            lv_pool_model_known(app->pool, job->backend->id, want->rec.settings.model) != 1)
            continue; /* that slot would not serve it */
        lv_window_stats_t ws;
        lv_window_stats(&job->backend->window, &ws);
        uint64_t patience_us = LV_MAX((uint64_t)(PREEMPT_FLOOR_FACTOR * ws.ttft_floor_us), (uint64_t)PREEMPT_MIN_MS * 1000u);
        if (now_us - job->dispatch_us < patience_us || !lv_drr_over_share(&app->drr, job->user))
            continue;
        victim = job;
    }
    if (!victim)
        return false;
    LV_INFO("session %.8s: request without a first token after %llu ms taken back: user %s holds more than its "
            "share while another waits", victim->session->rec.id,
            (unsigned long long)((now_us - victim->dispatch_us) / 1000), victim->user);
    job_take_back(app, victim, "preempted");
    return true;
}

/* Jobs nobody waits for any more: the session's last socket has been gone for
 * --detached-cancel-ms (its waiting frame goes too; the backend frees the slot when the
 * connection closes), or its settings changed (job_supersede, once SUPERSEDE_MIN_MS after the
 * request started). A job being shaped is looked at again once it is sent. Every 100 ms. */
static void review_jobs(lv_app_t *app, uint64_t now_ms)
{
    lv_queue_t *n, *next;
    uint64_t now_us = lv_now_us();
    for (n = app->jobs.next; n != &app->jobs; n = next) {
        next = n->next; /* neither path frees another job */
        lv_job_t *job = LV_CONTAINER_OF(n, lv_job_t, link);
        lv_session_t *s = job->session;
        if (!s || job->shaping || !job->chat)
            continue;
        if (detached_too_long(app, s, now_ms)) {
            LV_INFO("session %.8s: no socket for %d ms, its backend request is cancelled", s->rec.id,
                    app->cfg.detached_cancel_ms);
            session_unready(app, s);
            lv_frame_unref(lv_session_mailbox_take(s));
            lv_stat_cancel(app, "detached");
            job_abort(job);
        } else if (job->settings_stale && now_us - job->dispatch_us >= (uint64_t)SUPERSEDE_MIN_MS * 1000u) {
            job_take_back(app, job, "settings_changed");
        }
    }
    if (preempt_for_starved(app))
        lv_engine_kick(app);
    /* a lingering user's time is up: users held back for it may go now */
    uint64_t linger_end = lv_drr_linger_next_us(&app->drr);
    if (linger_end && linger_end <= now_us && lv_drr_queued(&app->drr))
        lv_engine_kick(app);
}

static void flush_due_deltas(lv_app_t *app, uint64_t now)
{
    lv_queue_t *n;
    LV_QUEUE_FOREACH(n, &app->jobs)
    {
        lv_job_t *job = LV_CONTAINER_OF(n, lv_job_t, link);
        if (job->delta_since_ms && now - job->delta_since_ms >= DELTA_COALESCE_MS)
            flush_delta(job);
    }
}

static void on_tick(uv_timer_t *t)
{
    lv_app_t *app = t->data;
    uint64_t now = lv_now_ms();
    lv_pipeline_tick(&app->pipe, now);
    flush_due_deltas(app, now);
    if (now - app->last_slow_tick_ms >= 100) {
        app->last_slow_tick_ms = now;
        send_stats_and_deadlines(app, now);
        review_jobs(app, now);
    }
}

/* The engine's hold on a session the registry is about to free: scheduler, credit, job. */
static void session_release(lv_app_t *app, lv_session_t *s)
{
    session_unready(app, s);
    credit_clear(app, s);
    if (s->job)
        job_abort(s->job);
}

static void before_free(lv_session_t *s, void *ud)
{
    lv_app_t *app = ud;
    session_release(app, s);
    LV_INFO("session %.8s expired after %d s without a socket", s->rec.id, app->cfg.session_idle_s);
}

static void before_evict(lv_session_t *s, void *ud)
{
    lv_app_t *app = ud;
    session_release(app, s);
    LV_INFO("session %.8s (no socket) gave way to a new session from the same address (%zu per address)",
            s->rec.id, app->cfg.max_sessions_per_ip);
}

static void on_sweep(uv_timer_t *t)
{
    lv_app_t *app = t->data;
    lv_registry_sweep(app->reg, lv_now_ms(), (uint64_t)app->cfg.session_idle_s * 1000u, 4096, before_free, app);
}

int lv_engine_start(lv_app_t *app)
{
    if (lv_drr_init(&app->drr, 1) != 0 || lv_stat_create(app) != 0)
        return LV_ENOMEM;
    lv_drr_track_jobs(&app->drr); /* fair share of the slots in flight, not only of turns */
    for (size_t i = 0; i < app->cfg.n_user_weights; i++)
        if (lv_drr_set_weight(&app->drr, app->cfg.user_weights[i].user, app->cfg.user_weights[i].weight) != 0)
            LV_WARN("user weight for %s not applied", app->cfg.user_weights[i].user);
    lv_queue_init(&app->jobs);
    lv_pipeline_hooks_t hooks = {app, pipe_capacity, pipe_credit_allowed, pipe_free_slots, pipe_dropped};
    if (lv_pipeline_init(&app->pipe, app->reg, &app->drr, &hooks) != 0)
        return LV_EIO;
    app->pipe.max_frame_age_ms = app->cfg.max_frame_age_ms;
    app->pipe.detached_cancel_ms = app->cfg.detached_cancel_ms;
    lv_registry_set_evict_cb(app->reg, before_evict, app);
    uv_timer_init(app->loop, &app->tick);
    uv_timer_init(app->loop, &app->sweep);
    uv_timer_init(app->loop, &app->kick);
    app->tick.data = app->sweep.data = app->kick.data = app;
    uv_timer_start(&app->tick, on_tick, TICK_MS, TICK_MS);
    uv_timer_start(&app->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
    return 0;
}

void lv_engine_stop(lv_app_t *app)
{
    /* cancel every backend call before the pool goes */
    while (!lv_queue_empty(&app->jobs))
        job_abort(LV_CONTAINER_OF(lv_queue_head(&app->jobs), lv_job_t, link));
    uv_timer_stop(&app->tick);
    uv_timer_stop(&app->sweep);
    uv_timer_stop(&app->kick);
    uv_close((uv_handle_t *)&app->tick, NULL);
    uv_close((uv_handle_t *)&app->sweep, NULL);
    uv_close((uv_handle_t *)&app->kick, NULL);
}

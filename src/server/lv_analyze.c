/* lv_analyze.c - POST /api/v1/analyze (lv_analyze.h): a picture in, the answer out, through the
 * same pipeline as a page's frames. */
#include "lv_analyze.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lv_allow.h"
#include "lv_app.h"
#include "lv_auth.h"
#include "lv_backend.h"
#include "lv_camera.h"
#include "lv_common.h"
#include "lv_engine.h"
#include "lv_frame.h"
#include "lv_httpd.h"
#include "lv_httputil.h"
#include "lv_iptable.h"
#include "lv_jpeg.h"
#include "lv_log.h"
#include "lv_offer.h"
#include "lv_pipeline.h"
#include "lv_quota.h"
#include "lv_session.h"
#include "lv_stat.h"
#include "lv_usage.h"
#include "lv_trace.h"

/* One request in progress. Lives from the accepted request until the tick after its answer went
 * out or its client went (lv_analyze_reap removes the session and frees it). */
typedef struct {
    lv_viewer_t viewer;     /* the request watches its session */
    lv_queue_t link;        /* host->live, then host->done */
    lv_app_t *app;
    lv_req_t *req;          /* NULL once answered or gone: nothing more is written */
    lv_session_t *session;
    bool stream;            /* Server-Sent Events rather than one JSON body */
} analyze_t;

struct lv_analyze_host {
    lv_queue_t live;        /* analyze_t.link: waiting for their answer */
    lv_queue_t done;        /* answered or abandoned: removed at the next reap */
    lv_queue_t waiters;     /* lv_req_t.wait_link of the requests still open */
};

static analyze_t *of_viewer(lv_viewer_t *v) { return LV_CONTAINER_OF(v, analyze_t, viewer); }

/* Nothing more goes to the client; the session goes at the next reap (never from inside a viewer
 * call: the pipeline is still using it). */
static void finish(analyze_t *a)
{
    if (a->req)
        a->req->on_gone = NULL;
    a->req = NULL;
    lv_queue_remove(&a->link);
    lv_queue_insert_tail(&a->app->analyze->done, &a->link);
}

static void respond_json(lv_req_t *r, int status, json_t *o, const char *extra)
{
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (text)
        lv_req_respond(r, status, "application/json", text, strlen(text), true, extra);
    else
        lv_req_respond_error(r, 500, "internal", "out of memory");
    free(text);
}

static json_t *error_json(const char *code, const char *message)
{
    return json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", message);
}

/* An error as a's client gets it: the data of an `error` event, or the JSON error body. */
static json_t *error_for(const analyze_t *a, const char *code, const char *message)
{
    return a->stream ? json_pack("{s:s, s:s}", "code", code, "message", message) : error_json(code, message);
}

/* One Server-Sent Event: data is one line of JSON (jansson's compact form has no newline). */
static void sse(analyze_t *a, const char *event, json_t *o)
{
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!text || !a->req) {
        free(text);
        return;
    }
    lv_buf_t b;
    lv_buf_init(&b, strlen(text) + 64);
    if (lv_buf_printf(&b, "event: %s\ndata: %s\n\n", event, text) == 0)
        lv_req_stream_write(a->req, b.data, b.len);
    lv_buf_free(&b);
    free(text);
}

/* The last event (or the whole answer) and the end of the request. */
static void conclude(analyze_t *a, int status, const char *event, json_t *o, const char *extra)
{
    if (!a->req) { /* the client went: nothing to send */
        json_decref(o);
        finish(a);
        return;
    }
    if (a->stream) {
        sse(a, event, o);
        if (a->req) /* still there: a client that stopped reading was closed by the write */
            lv_req_stream_end(a->req);
    } else {
        respond_json(a->req, status, o, extra);
    }
    finish(a);
}

static void v_queued(lv_viewer_t *v, lv_session_t *s, size_t position, size_t queued)
{
    analyze_t *a = of_viewer(v);
    if (a->stream)
        sse(a, "queued", json_pack("{s:I, s:I}", "position", (json_int_t)position, "queued", (json_int_t)queued));
}

static void v_answer_start(lv_viewer_t *v, lv_session_t *s, const lv_job_t *job)
{
    analyze_t *a = of_viewer(v);
    if (a->stream)
        sse(a, "answer_start",
            json_pack("{s:I, s:s, s:s, s:f, s:f}", "answer_id", (json_int_t)job->answer_id, "backend", job->backend_id,
                      "model", job->model, "queue_wait_ms", job->queue_wait_ms, "frame_age_ms", job->frame_age_ms));
}

static void v_delta(lv_viewer_t *v, lv_session_t *s, uint64_t answer_id, const char *text, size_t len)
{
    analyze_t *a = of_viewer(v);
    if (a->stream)
        sse(a, "delta", json_pack("{s:I, s:s%}", "answer_id", (json_int_t)answer_id, "text", text, len));
}

static void v_answer(lv_viewer_t *v, lv_session_t *s, const lv_job_t *job, const lv_dispatch_result_t *r,
                     double latency_ms)
{
    analyze_t *a = of_viewer(v);
    json_t *o = json_pack("{s:I, s:s%, s:s, s:s, s:{s:f, s:f, s:f, s:f, s:f, s:i, s:b}}", "answer_id",
                          (json_int_t)job->answer_id, "text", r->text, r->text_len, "backend", job->backend_id, "model",
                          job->model, "metrics", "latency_ms", latency_ms, "ttft_ms", (double)r->ttft_us / 1000.0,
                          "queue_wait_ms", job->queue_wait_ms, "frame_age_ms", job->frame_age_ms, "shape_ms",
                          r->shape_ms, "tokens", r->tokens, "streamed", r->streamed);
    conclude(a, 200, "answer", o, NULL);
}

/* The status a script should see for each error the pipeline reports. */
static int error_status(const char *code)
{
    if (strcmp(code, "no_backend") == 0)
        return 503;
    if (strcmp(code, "backend_timeout") == 0)
        return 504;
    return 502; /* backend_error and anything else from upstream */
}

static void v_error(lv_viewer_t *v, lv_session_t *s, const char *code, const char *message, uint64_t answer_id)
{
    analyze_t *a = of_viewer(v);
    json_t *o = error_for(a, code, message);
    conclude(a, error_status(code), "error", o, NULL);
}

static void v_frame_dropped(lv_viewer_t *v, lv_session_t *s, const char *reason, double age_ms)
{
    analyze_t *a = of_viewer(v);
    char msg[200];
    snprintf(msg, sizeof(msg), "the backends were busy: the picture waited %.0f ms in line, longer than it may; try "
             "again", age_ms);
    json_t *o = error_for(a, "busy", msg);
    conclude(a, 503, "error", o, "retry-after: 1\r\n");
}

static void v_answer_cancelled(lv_viewer_t *v, lv_session_t *s, uint64_t answer_id, const char *reason)
{
    analyze_t *a = of_viewer(v);
    if (a->stream) /* the picture waits again; another answer_start follows */
        sse(a, "answer_cancelled", json_pack("{s:I, s:s}", "answer_id", (json_int_t)answer_id, "reason", reason));
}

static const lv_viewer_ops_t analyze_viewer_ops = {
    .queued = v_queued,
    .answer_start = v_answer_start,
    .delta = v_delta,
    .answer = v_answer,
    .error = v_error,
    .frame_dropped = v_frame_dropped,
    .answer_cancelled = v_answer_cancelled,
};

/* The client went before its answer: its request is cancelled at the next reap. */
static void on_gone(lv_req_t *r)
{
    analyze_t *a = r->user;
    a->req = NULL;
    finish(a);
}

/* ---------- the request ---------- */

static int bad_request(lv_req_t *r, int status, const char *code, const char *message, const char *field)
{
    json_t *o = error_json(code, message);
    if (o && field)
        json_object_set_new(json_object_get(o, "error"), "field", json_string(field));
    respond_json(r, status, o, NULL);
    return 0;
}

/* Settings from the query string: prompt, model, backend (strings), max_tokens (integer) and
 * temperature (number), checked by the same rules as the page's (lv_settings_apply_json). */
static int settings_from_query(lv_app_t *app, const lv_allow_t *allow, const char *query, lv_settings_t *st,
                               const char **field, const char **why)
{
    static const char *const strings[] = {"prompt", "model", "backend"};
    char value[LV_PROMPT_MAX * 3 + 1];
    json_t *o = json_object();
    int rc = 0;
    lv_settings_defaults(st);
    lv_allow_default_model(app, allow, st->model, sizeof(st->model)); /* the tenant's first */
    for (size_t i = 0; o && i < LV_ARRAY_LEN(strings); i++) {
        int q = lv_query_get(query, strings[i], value, sizeof(value));
        if (q == LV_ENOTFOUND)
            continue;
        if (q != 0) {
            *field = strings[i];
            *why = "too long or malformed (percent-encoding)";
            rc = LV_EINVAL;
            goto out;
        }
        json_object_set_new(o, strings[i], json_string(value));
        if (!json_object_get(o, strings[i])) {
            *field = strings[i];
            *why = "not valid UTF-8";
            rc = LV_EINVAL;
            goto out;
        }
    }
    static const char *const numbers[] = {"max_tokens", "temperature"};
    for (size_t i = 0; o && i < LV_ARRAY_LEN(numbers); i++) {
        if (lv_query_get(query, numbers[i], value, 64) != 0)
            continue;
        char *end = NULL;
        errno = 0;
        double d = strtod(value, &end);
        if (!value[0] || *end || errno) {
            *field = numbers[i];
            *why = "not a number";
            rc = LV_EINVAL;
            goto out;
        }
        if (i == 0 && (d < -1e9 || d > 1e9 || (double)(long long)d != d)) {
            *field = numbers[i];
            *why = "not a whole number in range";
            rc = LV_EINVAL;
            goto out;
        }
        json_object_set_new(o, numbers[i], i == 0 ? json_integer((json_int_t)d) : json_real(d));
    }
    if (!o || lv_settings_apply_json(st, o, field, why) != 0)
        rc = LV_EINVAL;
    if (!rc && st->backend[0] && !lv_pool_find(app->pool, st->backend)) {
        *field = "backend";
        *why = "no backend with that id is configured";
        rc = LV_EINVAL;
    }
out:
    json_decref(o);
    return rc;
}

static bool wants_stream(const lv_req_t *r)
{
    char v[8];
    if (lv_query_get(r->query, "stream", v, sizeof(v)) == 0)
        return strcmp(v, "1") == 0 || strcmp(v, "true") == 0;
    const lv_view_t *accept = lv_http1_header(r->head, "accept");
    return accept && memmem(accept->ptr, accept->len, "text/event-stream", 17) != NULL;
}

int lv_analyze_handle(lv_app_t *app, lv_req_t *r, const lv_principal_t *requester)
{
    lv_settings_t st;
    const char *field = NULL, *why = NULL;
    lv_frame_hdr_t hdr;
    lv_jpeg_info_t info;
    uint64_t t0 = lv_now_us(), now_ms = t0 / 1000;
    lv_principal_t who = *requester; /* authenticated by the router (lv_server.c) */
    lv_allow_t allow;
    char amsg[400];
    const char *acode;
    lv_allow_of(app, who.tenant, &allow);
    if (settings_from_query(app, &allow, r->query, &st, &field, &why) != 0)
        return bad_request(r, 400, "invalid_setting", why ? why : "invalid setting", field);
    if ((acode = lv_allow_check(&allow, &st, &field, amsg, sizeof(amsg))) != NULL)
        return bad_request(r, 403, acode, amsg, field);
    lv_allow_fill(&allow, &st); /* the dispatcher picks among the tenant's backends only */
    if (r->body->len == 0)
        return bad_request(r, 400, "bad_frame", "send the JPEG as the request body (Content-Type: image/jpeg)", NULL);
    if (lv_frame_parse(r->body->data, r->body->len, &hdr) != 0)
        return bad_request(r, 400, "bad_frame", "the body must be a JPEG, bare or behind the 16-byte LVF1 header",
                           NULL);
    lv_jpeg_caps_t caps = {app->cfg.max_frame_bytes, app->cfg.max_frame_side, app->cfg.max_frame_pixels};
    const char *jwhy = NULL;
    int rc = lv_jpeg_check(hdr.jpeg, hdr.jpeg_len, &caps, &info, &jwhy);
    if (rc != 0) {
        char msg[200];
        snprintf(msg, sizeof(msg), "frame rejected: %s", jwhy ? jwhy : "invalid JPEG");
        lv_stat_drop(app, "rejected");
        return bad_request(r, rc == LV_ELIMIT ? 413 : 400, rc == LV_ELIMIT ? "frame_too_large" : "bad_frame", msg,
                           NULL);
    }
    if (app->cfg.user_fpm > 0 && !lv_engine_frame_budget_take(app, who.key, now_ms)) {
        char msg[200], extra[64];
        uint64_t wait_s = (uint64_t)lv_engine_frame_budget_retry_s(app, who.key, now_ms);
        snprintf(msg, sizeof(msg), "frame rate limit: at most %d frames per minute per user", app->cfg.user_fpm);
        snprintf(extra, sizeof(extra), "retry-after: %llu\r\n", (unsigned long long)wait_s);
        lv_stat_rate_limited(app, "frames");
        lv_stat_drop(app, "rate_limited");
        respond_json(r, 429, error_json("rate_limited", msg), extra);
        return 0;
    }
    lv_quota_over_t over;
    if (lv_quota_over(app, who.key, who.tenant, &over) && !over.hold) {
        char msg[200], extra[64];
        lv_quota_sentence(&over, msg, sizeof(msg));
        json_t *o = error_json("quota_exceeded", msg), *fields = lv_quota_over_json(&over);
        if (o && fields)
            json_object_update(json_object_get(o, "error"), fields);
        json_decref(fields);
        snprintf(extra, sizeof(extra), "retry-after: %d\r\n", over.retry_after_s);
        lv_usage_count_refusal(app, over.scope, over.quota);
        respond_json(r, 429, o, extra);
        return 0;
    }
    lv_quota_frame(app, who.key, who.tenant);
    lv_usage_count_frame(app, who.tenant);
    analyze_t *a = calloc(1, sizeof(*a));
    lv_frame_t *f = lv_frame_new(hdr.jpeg, hdr.jpeg_len);
    char secret[65];
    lv_session_t *s = NULL;
    rc = a && f ? lv_session_create(app->reg, who.key, who.tenant, &st, secret, &s) : LV_ENOMEM;
    memset(secret, 0, sizeof(secret)); /* nobody resumes a one-shot session */
    if (rc) {
        free(a);
        lv_frame_unref(f);
        if (rc == LV_ELIMIT)
            return bad_request(r, 429, "too_many_sessions",
                               "session limit reached (per user or in total): wait for answers in progress", NULL);
        return bad_request(r, 500, "internal", "could not create a session", NULL);
    }
    lv_trace_t trace; /* the request's traceparent is this answer's trace (docs/protocol.md "Tracing") */
    if (lv_trace_from_head(app, r->head, r->ip, &trace))
        s->trace = trace;
    lv_log_ctx_t lctx = lv_trace_log_ctx(s, r->ip);
    LV_DEBUG_CTX(&lctx, "analyze request: one-shot session %.8s", s->rec.id);
    a->app = app;
    a->session = s;
    a->req = r;
    a->stream = wants_stream(r);
    a->viewer.ops = &analyze_viewer_ops;
    lv_queue_insert_tail(&app->analyze->live, &a->link);
    r->user = a;
    r->on_gone = on_gone;
    lv_queue_insert_tail(&app->analyze->waiters, &r->wait_link);
    r->waiting = true;
    if (a->stream &&
        lv_req_stream_begin(r, 200, "text/event-stream", "x-accel-buffering: no\r\n") != 0) {
        finish(a); /* the connection went: reaped at the next tick */
        return 0;
    }
    lv_pipeline_attach_viewer(&app->pipe, s, &a->viewer, now_ms);
    lv_pipeline_start(&app->pipe, s, now_ms);
    f->recv_us = t0;
    f->capture_age_ms = hdr.capture_age_ms;
    f->width = info.width;
    f->height = info.height;
    app->frames_total++;
    lv_pipeline_put_frame(&app->pipe, s, f);
    lv_stat_frame_received(app, lv_now_us() - t0);
    return 0;
}

/* ---------- lifetime ---------- */

int lv_analyze_init(lv_app_t *app)
{
    struct lv_analyze_host *h = calloc(1, sizeof(*h));
    if (!h)
        return LV_ENOMEM;
    lv_queue_init(&h->live);
    lv_queue_init(&h->done);
    lv_queue_init(&h->waiters);
    app->analyze = h;
    return 0;
}

void lv_analyze_reap(lv_app_t *app)
{
    struct lv_analyze_host *h = app->analyze;
    if (!h)
        return;
    uint64_t now = lv_now_ms();
    while (!lv_queue_empty(&h->done)) {
        analyze_t *a = LV_CONTAINER_OF(lv_queue_head(&h->done), analyze_t, link);
        lv_queue_remove(&a->link);
        if (lv_queue_linked(&a->viewer.link))
            lv_pipeline_detach_viewer(&app->pipe, a->session, &a->viewer, now);
        lv_pipeline_release(&app->pipe, a->session); /* a request still running is cancelled */
        /* An analyze session's source is "page" (settings_from_query takes no source) and its id is
         * never sent, but it lives in the registry like any other: a POST /offer naming it (same
         * principal, a guessed id) would give it a WebRTC feed. Let go of any camera and feed
         * before the memory goes, as the engine does before it frees a session; both are no-ops
         * otherwise. */
        lv_cameras_unwatch_all(app->cameras, a->session);
        lv_offer_session_close(app, a->session, "the session ended");
        lv_registry_remove(app->reg, a->session);
        free(a);
    }
}

void lv_analyze_stop(lv_app_t *app)
{
    struct lv_analyze_host *h = app->analyze;
    if (!h)
        return;
    while (!lv_queue_empty(&h->live)) {
        analyze_t *a = LV_CONTAINER_OF(lv_queue_head(&h->live), analyze_t, link);
        conclude(a, 503, "error", error_for(a, "shutting_down", "the server is stopping"), NULL);
    }
    lv_analyze_reap(app);
    free(h);
    app->analyze = NULL;
}

size_t lv_analyze_body_cap(const lv_app_t *app) { return app->cfg.max_frame_bytes + 16; }

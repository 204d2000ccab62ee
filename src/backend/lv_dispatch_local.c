/* lv_dispatch_local.c - the dispatch port on the local backend pool (lv_dispatch_local.h). */
#include "lv_dispatch_local.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lv_allowlist.h"
#include "lv_chat.h"
#include "lv_common.h"
#include "lv_log.h"
#include "lv_session.h"
#include "lv_shape.h"

typedef struct {
    lv_dispatch_t port; /* first: the pipeline's pointer is ours */
    lv_dispatch_local_cfg_t cfg;
    uv_loop_t *loop;
    lv_pool_t *pool;    /* NULL once closed */
    size_t n_reqs;      /* requests alive, orphans being shaped included */
    bool closed;
} local_t;

/* One job's request: lives from submit until done, or, when cancelled while its frame is being
 * shaped, until the shape comes back. */
typedef struct {
    local_t *d;
    lv_job_t *job;       /* NULL once cancelled */
    lv_backend_t *backend;
    lv_chat_t *chat;
    lv_frame_t *frame;   /* own reference: a retry sends it again (each chat takes one more) */
    lv_buf_t shaped;     /* the frame scaled down for this backend; empty = send it as is */
    lv_shape_req_t shape;
    bool shaping;        /* on the thread pool; the backend slot is held meanwhile */
    bool retried;
    double shape_ms;
} req_t;

static local_t *local_of(lv_dispatch_t *d) { return (local_t *)d; }

static void req_free(req_t *rq)
{
    local_t *d = rq->d;
    lv_buf_free(&rq->shaped);
    lv_frame_unref(rq->frame);
    free(rq);
    if (--d->n_reqs == 0 && d->closed)
        free(d);
}

static void on_delta(void *ud, const char *text, size_t len)
{
    req_t *rq = ud;
    if (rq->job)
        rq->d->port.events->delta(&rq->d->port, rq->job, text, len);
}

static void on_done(void *ud, const lv_chat_result_t *r);
static const lv_chat_cb_t chat_cbs = {on_delta, on_done};

/* Start (or restart, for a retry) the chat for a request whose frame is ready to send. */
static int req_send(req_t *rq)
{
    local_t *d = rq->d;
    lv_job_t *job = rq->job;
    const lv_settings_t *st = &job->settings;
    lv_chat_req_t req = {
        .model = job->model,
        .prompt = st->prompt,
        .max_tokens = st->max_tokens,
        .temperature = st->temperature,
        /* the frame goes by reference (the chat reads it in place on the backend I/O thread);
         * a shaped copy is this request's own buffer, freed at cancel, so the chat copies it */
        .jpeg = rq->shaped.len ? (const unsigned char *)rq->shaped.data : NULL,
        .jpeg_len = rq->shaped.len,
        .frame = rq->shaped.len ? NULL : rq->frame,
        .connect_timeout_ms = d->cfg.connect_timeout_ms,
        .first_token_timeout_ms = d->cfg.first_token_timeout_ms,
        .total_timeout_ms = d->cfg.total_timeout_ms,
        .stream_idle_timeout_ms = d->cfg.stream_idle_timeout_ms > 0 ? d->cfg.stream_idle_timeout_ms : -1,
        .want_debug = st->debug,
        .trace = &job->trace,
    };
    uint64_t t0 = lv_now_us();
    int rc = lv_chat_start(d->pool, rq->backend, &req, &chat_cbs, rq, &rq->chat);
    job->gateway_us += lv_now_us() - t0;
    return rc;
}

static void use_backend(req_t *rq, lv_backend_t *b, const char *model)
{
    rq->backend = b;
    snprintf(rq->job->backend_id, sizeof(rq->job->backend_id), "%s", b->id);
    snprintf(rq->job->model, sizeof(rq->job->model), "%s", model ? model : rq->job->settings.model);
}

static bool retryable(const lv_chat_result_t *r)
{
    /* only before the first token: after it, the user has already seen part of this answer */
    if (r->n_deltas > 0 || r->rc == LV_ETIMEDOUT)
        return false;
    return r->http_status == 0 || r->http_status >= 500 || r->http_status == 429;
}

static void finish(req_t *rq, const lv_dispatch_result_t *res)
{
    lv_job_t *job = rq->job;
    rq->job = NULL;
    rq->d->port.events->done(&rq->d->port, job, res);
    req_free(rq);
}

static void noted_retry(local_t *d)
{
    if (d->cfg.retried)
        d->cfg.retried(d->cfg.ud);
}

static void on_done(void *ud, const lv_chat_result_t *r)
{
    req_t *rq = ud;
    local_t *d = rq->d;
    lv_job_t *job = rq->job;
    rq->chat = NULL;
    if (r->rc != 0 && !rq->retried && !d->closed && retryable(r)) {
        lv_backend_t *other = NULL;
        const char *model = NULL;
        int rc = lv_pool_resolve_among(d->pool, job->settings.backend, job->settings.allow_backends,
                                       job->settings.model, rq->backend, &other, &model);
        if (rc == LV_EAGAIN) {
            /* another backend serves the model but has no free slot: the frame goes back in line
             * instead of failing in front of the user */
            lv_log_ctx_t ctx = {.answer = job->answer_id, .trace_id = job->trace.trace_id,
                                .backend = rq->backend->id, .model = job->model};
            LV_INFO_CTX(&ctx, "%s failed before the first token (%s); the frame waits for another backend",
                        rq->backend->id, r->error_message ? r->error_message : "error");
            noted_retry(d);
            lv_dispatch_result_t res = {.rc = r->rc, .requeue = true, .text = ""};
            finish(rq, &res);
            return;
        }
        if (rc == 0) {
            lv_log_ctx_t ctx = {.answer = job->answer_id, .trace_id = job->trace.trace_id,
                                .backend = rq->backend->id, .model = job->model};
            LV_INFO_CTX(&ctx, "%s failed before the first token (%s); retrying on %s", rq->backend->id,
                        r->error_message ? r->error_message : "error", other->id);
            noted_retry(d);
            rq->retried = true;
            use_backend(rq, other, model);
            if (req_send(rq) == 0) /* the frame as sent before (shaped or not) */
                return;
        }
    }
    lv_dispatch_result_t res = {
        .rc = r->rc,
        .error_code = r->rc ? (r->error_code ? r->error_code : (r->rc == LV_ETIMEDOUT ? "backend_timeout"
                                                                                          : "backend_error"))
                            : NULL,
        .error_message = r->rc ? (r->error_message ? r->error_message : lv_strerror(r->rc)) : NULL,
        .text = r->text ? r->text : "",
        .text_len = r->text ? r->text_len : 0,
        .tokens = r->completion_tokens > 0 ? r->completion_tokens : r->n_deltas,
        .prompt_tokens = r->prompt_tokens,
        .ttft_us = r->ttft_us,
        .streamed = r->streamed != 0,
        .shape_ms = rq->shape_ms,
        .request_debug_json = r->request_debug_json,
        .response_debug_json = r->response_debug_json,
    };
    finish(rq, &res);
}

static void on_shaped(lv_shape_req_t *shape, int rc)
{
    req_t *rq = shape->data;
    local_t *d = rq->d;
    rq->shaping = false;
    if (d->closed || !rq->job) {
        if (!d->closed)
            rq->backend->inflight--; /* closed: the pool and its backends may be gone */
        req_free(rq);
        return;
    }
    rq->backend->inflight--; /* the slot was held while shaping; lv_chat_start takes it again */
    if (rc < 0) {
        lv_buf_reset(&rq->shaped); /* send the original: a model can still read it */
        LV_WARN("answer %llu: frame shaping failed (%s); sending it unshaped", (unsigned long long)rq->job->answer_id,
                lv_strerror(rc));
    } else if (rc == 0) {
        rq->shape_ms = (double)(shape->info.decode_us + shape->info.resize_us + shape->info.encode_us) / 1000.0;
        if (d->cfg.shaped)
            d->cfg.shaped(d->cfg.ud, rq->shape_ms);
    }
    if (req_send(rq) != 0) {
        lv_dispatch_result_t res = {.rc = LV_EIO,
                                    .error_code = "backend_error",
                                    .error_message = "could not start the backend request",
                                    .text = ""};
        finish(rq, &res);
        return;
    }
    d->port.events->started(&d->port, rq->job);
}

/* The sentence a session hears when no backend in rotation serves its model. */
static void no_backend_why(const local_t *d, const lv_settings_t *st, char *why, size_t why_size)
{
    snprintf(why, why_size, "no healthy backend%s serves model '%s'%s%s. %s",
             lv_allowlist_restricts(st->allow_backends) ? " your tenant may use" : "",
             st->model[0] ? st->model : "(none chosen)", st->backend[0] ? " on backend " : "", st->backend,
             d->cfg.no_backend_help && d->cfg.no_backend_help[0] ? d->cfg.no_backend_help
                                                                 : "Pick another model or check the backend.");
}

static bool local_serves(lv_dispatch_t *port, const lv_settings_t *st, char *why, size_t why_size)
{
    local_t *d = local_of(port);
    if (!d->closed && lv_pool_serves_among(d->pool, st->backend, st->allow_backends, st->model))
        return true;
    no_backend_why(d, st, why, why_size);
    return false;
}

static int local_submit(lv_dispatch_t *port, lv_job_t *job, char *why, size_t why_size)
{
    local_t *d = local_of(port);
    lv_backend_t *b = NULL;
    const char *model = NULL;
    const lv_settings_t *st = &job->settings;
    if (d->closed)
        return LV_ECLOSED;
    /* only the tenant's backends are candidates (st->allow_backends, set by the engine) */
    int rc = lv_pool_resolve_among(d->pool, st->backend, st->allow_backends, st->model, NULL, &b, &model);
    if (rc == LV_EAGAIN)
        return LV_EAGAIN;
    if (rc != 0) {
        no_backend_why(d, st, why, why_size);
        return LV_ENOTFOUND;
    }
    req_t *rq = calloc(1, sizeof(*rq));
    if (!rq)
        return LV_ENOMEM;
    rq->d = d;
    rq->job = job;
    rq->frame = lv_frame_ref(job->frame);
    lv_buf_init(&rq->shaped, d->cfg.max_frame_bytes);
    d->n_reqs++;
    job->impl = rq;
    use_backend(rq, b, model);
    const lv_frame_t *f = rq->frame;
    if (b->max_side > 0 && LV_MAX(f->width, f->height) > b->max_side) {
        /* shaping decodes pixels: never on the loop thread */
        rq->shape.data = rq;
        rq->shaping = true;
        b->inflight++; /* hold the slot while shaping */
        if (lv_shape_submit(d->loop, &rq->shape, f->data, f->len, b->max_side,
                            b->jpeg_quality > 0 ? b->jpeg_quality : 85, &rq->shaped, on_shaped) == 0)
            return 0;
        rq->shaping = false;
        b->inflight--;
    }
    if (req_send(rq) != 0) {
        job->impl = NULL;
        req_free(rq);
        return LV_EIO;
    }
    port->events->started(port, job);
    return 0;
}

static void local_cancel(lv_dispatch_t *port, lv_job_t *job)
{
    req_t *rq = job->impl;
    job->impl = NULL;
    if (!rq)
        return;
    rq->job = NULL;
    if (rq->shaping) {
        lv_shape_cancel(&rq->shape); /* on_shaped frees it */
        return;
    }
    lv_chat_cancel(rq->chat);
    req_free(rq);
}

static size_t local_capacity(lv_dispatch_t *port)
{
    local_t *d = local_of(port);
    return d->closed ? 0 : lv_pool_capacity(d->pool);
}

static size_t local_free_slots(lv_dispatch_t *port)
{
    local_t *d = local_of(port);
    return d->closed ? 0 : lv_pool_free_slots(d->pool);
}

static int local_grow(lv_dispatch_t *port, lv_job_t *job)
{
    local_t *d = local_of(port);
    if (d->closed)
        return 0;
    if (!job)
        return lv_pool_grow_on_demand(d->pool);
    req_t *rq = job->impl;
    return rq ? lv_backend_grow_on_demand(rq->backend) : 0;
}

static bool local_could_serve(lv_dispatch_t *port, const lv_job_t *job, const lv_settings_t *want)
{
    local_t *d = local_of(port);
    const req_t *rq = job->impl;
    if (!rq || d->closed)
        return false;
    if (want->backend[0] && strcmp(want->backend, rq->backend->id) != 0)
        return false;
    if (!lv_allowlist_has(want->allow_backends, rq->backend->id))
        return false; /* a slot on a backend the other session's tenant may not use */
    return lv_pool_model_known(d->pool, rq->backend->id, want->model) == 1;
}

static uint64_t local_ttft_floor_us(lv_dispatch_t *port, const lv_job_t *job)
{
    const req_t *rq = job->impl;
    if (!rq || local_of(port)->closed)
        return 0;
    lv_window_stats_t ws;
    lv_window_stats(&rq->backend->window, &ws);
    return (uint64_t)ws.ttft_floor_us;
}

static int local_reopened(lv_dispatch_t *port)
{
    local_t *d = local_of(port);
    return d->closed ? 0 : lv_pool_retry_after_ended(d->pool);
}

static const lv_dispatch_ops_t local_ops = {
    .submit = local_submit,
    .cancel = local_cancel,
    .capacity = local_capacity,
    .free_slots = local_free_slots,
    .grow = local_grow,
    .could_serve = local_could_serve,
    .ttft_floor_us = local_ttft_floor_us,
    .serves = local_serves,
    .reopened = local_reopened,
};

int lv_dispatch_local_create(uv_loop_t *loop, lv_pool_t *pool, const lv_dispatch_local_cfg_t *cfg,
                             lv_dispatch_t **out)
{
    local_t *d = calloc(1, sizeof(*d));
    if (!d)
        return LV_ENOMEM;
    d->port.ops = &local_ops;
    d->cfg = *cfg;
    d->loop = loop;
    d->pool = pool;
    *out = &d->port;
    return 0;
}

void lv_dispatch_local_close(lv_dispatch_t *port)
{
    if (!port)
        return;
    local_t *d = local_of(port);
    d->closed = true;
    d->pool = NULL;
    if (d->n_reqs == 0)
        free(d);
}

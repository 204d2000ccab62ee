/* lv_stat.c - the metrics series livevlm exports, on top of the lv_metrics registry. */
#include "lv_stat.h"

#include <stdlib.h>

#include "lv_app.h"
#include "lv_backend.h"
#include "lv_buf.h"
#include "lv_common.h"
#include "lv_drr.h"
#include "lv_metrics.h"
#include "lv_session.h"
#include "lv_window.h"

struct lv_stat {
    lv_metrics_t *m;
    lv_hist_t *frame_receive, *shape, *queue_wait, *frame_age, *ttft, *answer, *gateway;
    lv_counter_t *frames, *answers, *retries, *held_back, *credits_held, *coalesced;
    lv_counter_vec_t *drops, *errors, *limited, *cancelled;
    lv_gauge_t *sessions, *sockets, *queued, *queued_users, *credits;
    lv_gauge_vec_t *b_inflight, *b_window, *b_state, *b_healthy, *b_latency;
    lv_counter_vec_t *b_requests, *b_errors, *b_timeouts, *b_grows;
};

static double read_sessions(void *ud) { return (double)lv_registry_count(((lv_app_t *)ud)->reg); }
static double read_sockets(void *ud) { return (double)((lv_app_t *)ud)->n_conns; }
static double read_queued(void *ud) { return (double)lv_drr_queued(&((lv_app_t *)ud)->drr); }
static double read_queued_users(void *ud) { return (double)lv_drr_users_active(&((lv_app_t *)ud)->drr); }
static double read_credits(void *ud) { return (double)((lv_app_t *)ud)->pipe.credits_outstanding; }

int lv_stat_create(lv_app_t *app)
{
    struct lv_stat *st = calloc(1, sizeof(*st));
    static const char *backend_l[] = {"backend"};
    static const char *reason_l[] = {"reason"};
    static const char *code_l[] = {"code"};
    static const char *limit_l[] = {"limit"};
    int rc = 0;
    if (!st || lv_metrics_new(&st->m) != 0) {
        free(st);
        return LV_ENOMEM;
    }
    lv_metrics_t *m = st->m;
#define H(field, name, help) rc |= lv_hist_new(m, name, help, NULL, 0, NULL, 0, &st->field)
    H(frame_receive, "livevlm_frame_receive_seconds", "Loop time per received frame: envelope, JPEG header check, mailbox.");
    H(shape, "livevlm_shape_seconds", "Time to scale a frame down for a backend (thread pool).");
    H(queue_wait, "livevlm_queue_wait_seconds", "Time a frame waited for a backend slot.");
    H(frame_age, "livevlm_frame_age_seconds", "Age of a frame when it was sent to a backend, capture age included.");
    H(ttft, "livevlm_ttft_seconds", "Backend request start to first token.");
    H(answer, "livevlm_answer_seconds", "Frame received to complete answer.");
    H(gateway, "livevlm_gateway_seconds", "The gateway's own time per answered frame: receive, dispatch and delivery work, waiting excluded.");
#undef H
    rc |= lv_counter_new(m, "livevlm_frames_total", "Frames accepted into a mailbox.", NULL, 0, &st->frames);
    rc |= lv_counter_new(m, "livevlm_answers_total", "Answers delivered.", NULL, 0, &st->answers);
    rc |= lv_counter_new(m, "livevlm_answers_coalesced_total", "Answers a session got by following another session's request for the same picture and question (no request of its own).", NULL, 0, &st->coalesced);
    rc |= lv_counter_new(m, "livevlm_retries_total", "Requests retried on another backend before the first token.", NULL, 0, &st->retries);
    rc |= lv_counter_vec_new(m, "livevlm_frames_dropped_total", "Frames not sent to a backend, by reason.", NULL, 0, reason_l, 1, &st->drops);
    rc |= lv_counter_vec_new(m, "livevlm_errors_total", "Errors reported to sessions, by code.", NULL, 0, code_l, 1, &st->errors);
    rc |= lv_counter_vec_new(m, "livevlm_rate_limited_total", "Requests refused by a limit.", NULL, 0, limit_l, 1, &st->limited);
    rc |= lv_counter_vec_new(m, "livevlm_requests_cancelled_total", "Backend requests cancelled because nobody needs the answer, by reason.", NULL, 0, reason_l, 1, &st->cancelled);
    rc |= lv_counter_new(m, "livevlm_share_held_back_total", "Waiting frames held back because their user held its share of the requests in flight.", NULL, 0, &st->held_back);
    rc |= lv_counter_new(m, "livevlm_credits_held_back_total", "Credits not sent while the backends were full because their user already had its share in flight or waiting.", NULL, 0, &st->credits_held);
    rc |= lv_gauge_new(m, "livevlm_sessions", "Live sessions.", NULL, 0, &st->sessions);
    rc |= lv_gauge_new(m, "livevlm_sockets", "Open WebSockets.", NULL, 0, &st->sockets);
    rc |= lv_gauge_new(m, "livevlm_queued_sessions", "Sessions with a frame waiting for a backend slot.", NULL, 0, &st->queued);
    rc |= lv_gauge_new(m, "livevlm_queued_users", "Users with a frame waiting.", NULL, 0, &st->queued_users);
    rc |= lv_gauge_new(m, "livevlm_credits_outstanding", "Frames asked for and not yet received.", NULL, 0, &st->credits);
    rc |= lv_gauge_vec_new(m, "livevlm_backend_inflight", "Requests in flight per backend.", NULL, 0, backend_l, 1, &st->b_inflight);
    rc |= lv_gauge_vec_new(m, "livevlm_backend_window", "Concurrency window per backend (adaptive or fixed).", NULL, 0, backend_l, 1, &st->b_window);
    rc |= lv_gauge_vec_new(m, "livevlm_backend_circuit_state", "Circuit breaker: 0 closed, 1 half-open, 2 open.", NULL, 0, backend_l, 1, &st->b_state);
    rc |= lv_gauge_vec_new(m, "livevlm_backend_healthy", "1 when the backend is in rotation.", NULL, 0, backend_l, 1, &st->b_healthy);
    rc |= lv_gauge_vec_new(m, "livevlm_backend_latency_seconds", "Smoothed time to first token per backend.", NULL, 0, backend_l, 1, &st->b_latency);
    rc |= lv_counter_vec_new(m, "livevlm_backend_requests_total", "Requests finished per backend.", NULL, 0, backend_l, 1, &st->b_requests);
    rc |= lv_counter_vec_new(m, "livevlm_backend_errors_total", "Failed requests per backend.", NULL, 0, backend_l, 1, &st->b_errors);
    rc |= lv_counter_vec_new(m, "livevlm_backend_timeouts_total", "Timed-out requests per backend.", NULL, 0, backend_l, 1, &st->b_timeouts);
    rc |= lv_counter_vec_new(m, "livevlm_backend_window_grows_total", "Window growths on demand: frames waiting, every request in flight past its first token.", NULL, 0, backend_l, 1, &st->b_grows);
    if (rc) {
        lv_metrics_free(m);
        free(st);
        return LV_ENOMEM;
    }
    /* export the known label values at 0 from the start, so a rate() sees the first event */
    static const char *reasons[] = {"replaced", "stale", "rejected", "not_started", "rate_limited", "no_backend"};
    static const char *codes[] = {"backend_error", "backend_timeout", "no_backend"};
    static const char *limits[] = {"frames"};
    static const char *cancel_reasons[] = {"detached", "settings_changed"};
    for (size_t i = 0; i < LV_ARRAY_LEN(cancel_reasons); i++)
        lv_counter_vec_with(st->cancelled, &cancel_reasons[i]);
    for (size_t i = 0; i < LV_ARRAY_LEN(reasons); i++)
        lv_counter_vec_with(st->drops, &reasons[i]);
    for (size_t i = 0; i < LV_ARRAY_LEN(codes); i++)
        lv_counter_vec_with(st->errors, &codes[i]);
    for (size_t i = 0; i < LV_ARRAY_LEN(limits); i++)
        lv_counter_vec_with(st->limited, &limits[i]);
    lv_gauge_set_fn(st->sessions, read_sessions, app);
    lv_gauge_set_fn(st->sockets, read_sockets, app);
    lv_gauge_set_fn(st->queued, read_queued, app);
    lv_gauge_set_fn(st->queued_users, read_queued_users, app);
    lv_gauge_set_fn(st->credits, read_credits, app);
    app->stat = st;
    return 0;
}

void lv_stat_destroy(lv_app_t *app)
{
    if (!app->stat)
        return;
    lv_metrics_free(app->stat->m);
    free(app->stat);
    app->stat = NULL;
}

void lv_stat_frame_received(lv_app_t *app, uint64_t us)
{
    lv_hist_observe_us(app->stat->frame_receive, us);
    lv_counter_inc(app->stat->frames);
}

void lv_stat_dispatch(lv_app_t *app, double queue_wait_ms, double frame_age_ms)
{
    lv_hist_observe(app->stat->queue_wait, queue_wait_ms / 1000.0);
    lv_hist_observe(app->stat->frame_age, frame_age_ms / 1000.0);
}

void lv_stat_shape(lv_app_t *app, double ms) { lv_hist_observe(app->stat->shape, ms / 1000.0); }

void lv_stat_answer(lv_app_t *app, uint64_t ttft_us, double latency_ms, uint64_t gateway_us)
{
    lv_counter_inc(app->stat->answers);
    lv_hist_observe_us(app->stat->ttft, ttft_us);
    lv_hist_observe(app->stat->answer, latency_ms / 1000.0);
    lv_hist_observe_us(app->stat->gateway, gateway_us);
}

static void inc_label(lv_counter_vec_t *v, const char *value)
{
    const char *vals[1] = {value};
    lv_counter_t *c = lv_counter_vec_with(v, vals);
    if (c)
        lv_counter_inc(c);
}

void lv_stat_error(lv_app_t *app, const char *code) { inc_label(app->stat->errors, code); }
void lv_stat_drop(lv_app_t *app, const char *reason) { inc_label(app->stat->drops, reason); }
void lv_stat_retry(lv_app_t *app) { lv_counter_inc(app->stat->retries); }
void lv_stat_rate_limited(lv_app_t *app, const char *limit) { inc_label(app->stat->limited, limit); }
void lv_stat_cancel(lv_app_t *app, const char *reason) { inc_label(app->stat->cancelled, reason); }
void lv_stat_coalesced(lv_app_t *app) { lv_counter_inc(app->stat->coalesced); }

/* counters owned by the backend pool are mirrored at scrape time */
static void mirror(lv_counter_vec_t *v, const char *id, uint64_t total)
{
    const char *vals[1] = {id};
    lv_counter_t *c = lv_counter_vec_with(v, vals);
    if (c && (double)total > lv_counter_value(c))
        lv_counter_add(c, (double)total - lv_counter_value(c));
}

static void set_label(lv_gauge_vec_t *v, const char *id, double x)
{
    const char *vals[1] = {id};
    lv_gauge_t *g = lv_gauge_vec_with(v, vals);
    if (g)
        lv_gauge_set(g, x);
}

int lv_stat_render(lv_app_t *app, lv_buf_t *out)
{
    struct lv_stat *st = app->stat;
    for (size_t i = 0; app->pool && i < lv_pool_count(app->pool); i++) {
        lv_backend_t *b = lv_pool_at(app->pool, i);
        const char *state = lv_backend_state_name(b);
        set_label(st->b_inflight, b->id, b->inflight);
        set_label(st->b_window, b->id, lv_backend_limit(b));
        set_label(st->b_state, b->id, state[0] == 'c' ? 0 : state[0] == 'h' ? 1 : 2);
        set_label(st->b_healthy, b->id, b->healthy);
        set_label(st->b_latency, b->id, b->lat_ewma_ms / 1000.0);
        mirror(st->b_requests, b->id, b->requests_total);
        mirror(st->b_errors, b->id, b->errors_total);
        mirror(st->b_timeouts, b->id, b->timeouts_total);
        lv_window_stats_t ws;
        lv_window_stats(&b->window, &ws);
        mirror(st->b_grows, b->id, ws.demand_grows);
    }
    lv_drr_stats_t ds;
    lv_drr_stats(&app->drr, &ds);
    if ((double)ds.held_back > lv_counter_value(st->held_back))
        lv_counter_add(st->held_back, (double)ds.held_back - lv_counter_value(st->held_back));
    if ((double)app->pipe.credits_held > lv_counter_value(st->credits_held))
        lv_counter_add(st->credits_held, (double)app->pipe.credits_held - lv_counter_value(st->credits_held));
    return lv_metrics_render(st->m, out);
}

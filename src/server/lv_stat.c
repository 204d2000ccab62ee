/* lv_stat.c - the metrics series livevlm exports, on top of the lv_metrics registry. */
#include "lv_stat.h"

#include <stdlib.h>
#include <string.h>

#include "lv_app.h"
#include "lv_backend.h"
#include "lv_buf.h"
#include "lv_cluster.h"
#include "lv_common.h"
#include "lv_dispatch_redis.h"
#include "lv_drr.h"
#include "lv_metrics.h"
#include "lv_session.h"
#include "lv_window.h"
#include "lv_worker.h"

struct lv_stat {
    lv_metrics_t *m;
    lv_hist_t *frame_receive, *shape, *queue_wait, *frame_age, *ttft, *answer, *gateway;
    lv_counter_t *frames, *answers, *retries, *held_back, *credits_held, *coalesced;
    lv_counter_t *trace_invalid;
    lv_counter_vec_t *drops, *errors, *limited, *cancelled;
    lv_gauge_t *sessions, *sockets, *queued, *queued_users, *credits;
    lv_gauge_vec_t *b_inflight, *b_window, *b_state, *b_healthy, *b_latency;
    lv_counter_vec_t *b_requests, *b_errors, *b_timeouts, *b_grows;
    /* cluster mode only (app->cluster at create); NULL otherwise */
    lv_dredis_stats_t *cl;     /* the dispatcher's figures, read once per scrape */
    lv_gauge_t *cl_up, *cl_depth, *cl_oldest, *cl_workers, *cl_capacity, *cl_jobs_out, *cl_frontends;
    lv_counter_vec_t *cl_lost;
    lv_counter_t *cl_reconnects;
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
    rc |= lv_counter_new(m, "livevlm_traceparent_invalid_total", "Malformed traceparent headers ignored (a new trace was used).", NULL, 0, &st->trace_invalid);
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
    if (app->cluster) {
        static const char *lost_reasons[] = {"stale", "worker_lost", "cluster_unavailable"};
        st->cl = calloc(1, sizeof(*st->cl));
        rc |= st->cl ? 0 : LV_ENOMEM;
        rc |= lv_gauge_new(m, "livevlm_cluster_up", "1 while this frontend reaches the cluster's Redis.", NULL, 0, &st->cl_up);
        rc |= lv_gauge_new(m, "livevlm_cluster_queue_depth", "Jobs waiting in the cluster's queue, all frontends.", NULL, 0, &st->cl_depth);
        rc |= lv_gauge_new(m, "livevlm_cluster_oldest_job_seconds", "Age of the oldest job waiting in the cluster's queue; 0 when none waits.", NULL, 0, &st->cl_oldest);
        rc |= lv_gauge_new(m, "livevlm_cluster_workers", "Workers alive (heartbeat within 3 s).", NULL, 0, &st->cl_workers);
        rc |= lv_gauge_new(m, "livevlm_cluster_capacity", "Requests the live workers' backends take at once (the sum of their slots).", NULL, 0, &st->cl_capacity);
        rc |= lv_gauge_new(m, "livevlm_cluster_jobs_out", "This frontend's jobs in the cluster, queued or running.", NULL, 0, &st->cl_jobs_out);
        rc |= lv_gauge_new(m, "livevlm_cluster_frontends", "Frontends alive (heartbeat within 5 s).", NULL, 0, &st->cl_frontends);
        rc |= lv_counter_vec_new(m, "livevlm_cluster_jobs_lost_total", "This frontend's jobs that ended without an answer for a cluster reason: stale (waited past its deadline), worker_lost (its worker stopped), cluster_unavailable (Redis unreachable).", NULL, 0, reason_l, 1, &st->cl_lost);
        rc |= lv_counter_new(m, "livevlm_cluster_redis_reconnects_total", "Connections to Redis made again after a loss.", NULL, 0, &st->cl_reconnects);
        for (size_t i = 0; !rc && i < LV_ARRAY_LEN(lost_reasons); i++)
            lv_counter_vec_with(st->cl_lost, &lost_reasons[i]);
    }
    if (rc) {
        lv_metrics_free(m);
        free(st->cl);
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
    free(app->stat->cl);
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
void lv_stat_trace_invalid(lv_app_t *app) { lv_counter_inc(app->stat->trace_invalid); }

void lv_stat_cluster_lost(lv_app_t *app, const char *reason)
{
    if (app->stat && app->stat->cl_lost)
        inc_label(app->stat->cl_lost, reason);
}

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

/* ---------- cluster mode ---------- */

static void cluster_gauges(lv_app_t *app)
{
    struct lv_stat *st = app->stat;
    lv_dispatch_t *d = lv_cluster_dispatch(app->cluster);
    memset(st->cl, 0, sizeof(*st->cl));
    if (d)
        lv_dispatch_redis_stats(d, st->cl);
    lv_gauge_set(st->cl_up, lv_cluster_up(app->cluster));
    lv_gauge_set(st->cl_depth, (double)st->cl->queue_len);
    lv_gauge_set(st->cl_oldest, (double)st->cl->oldest_ms / 1000.0);
    lv_gauge_set(st->cl_workers, (double)st->cl->n_workers);
    lv_gauge_set(st->cl_capacity, (double)st->cl->capacity);
    lv_gauge_set(st->cl_jobs_out, (double)st->cl->jobs_out);
    lv_cluster_fe_t fe[LV_CLUSTER_FRONTENDS_MAX];
    lv_gauge_set(st->cl_frontends, (double)lv_cluster_frontends(app->cluster, fe, LV_ARRAY_LEN(fe)));
    lv_redis_t *r = lv_cluster_redis(app->cluster);
    if (r) {
        lv_redis_stats_t rs;
        lv_redis_stats(r, &rs);
        if ((double)rs.reconnects > lv_counter_value(st->cl_reconnects))
            lv_counter_add(st->cl_reconnects, (double)rs.reconnects - lv_counter_value(st->cl_reconnects));
    }
}

/* One labelled sample. */
static int sample(lv_buf_t *out, const char *name, const char *label, const char *value, double x)
{
    int rc = lv_buf_printf(out, "%s{%s=\"", name, label);
    if (!rc)
        rc = lv_metrics_label_value(out, value);
    if (!rc)
        rc = lv_buf_printf(out, "\"} %.17g\n", x);
    return rc;
}

/* Families whose label sets follow who is alive now (workers, frontends come and go with
 * autoscaling): written by hand from this scrape's figures, so a gone worker leaves no series
 * behind (a registry family keeps every label set it ever saw). Bounded: at most
 * LV_DREDIS_WORKERS_MAX workers and LV_CLUSTER_FRONTENDS_MAX frontends. */
static int cluster_render(lv_app_t *app, lv_buf_t *out)
{
    const lv_dredis_stats_t *cl = app->stat->cl;
    size_t nw = LV_MIN(cl->n_workers, (size_t)LV_DREDIS_WORKERS_MAX);
    int rc = lv_buf_append_str(out, "# HELP livevlm_cluster_worker_in_flight Requests a live worker is running.\n"
                                    "# TYPE livevlm_cluster_worker_in_flight gauge\n");
    for (size_t i = 0; !rc && i < nw; i++)
        rc = sample(out, "livevlm_cluster_worker_in_flight", "worker", cl->workers[i].id, (double)cl->workers[i].in_flight);
    if (!rc)
        rc = lv_buf_append_str(out, "# HELP livevlm_cluster_worker_capacity Requests a live worker's backends take at once.\n"
                                    "# TYPE livevlm_cluster_worker_capacity gauge\n");
    for (size_t i = 0; !rc && i < nw; i++)
        rc = sample(out, "livevlm_cluster_worker_capacity", "worker", cl->workers[i].id, (double)cl->workers[i].capacity);
    lv_cluster_fe_t fe[LV_CLUSTER_FRONTENDS_MAX];
    size_t nf = lv_cluster_frontends(app->cluster, fe, LV_ARRAY_LEN(fe));
    if (!rc)
        rc = lv_buf_append_str(out, "# HELP livevlm_cluster_frontend_sessions Live sessions per frontend (its heartbeat in Redis).\n"
                                    "# TYPE livevlm_cluster_frontend_sessions gauge\n");
    for (size_t i = 0; !rc && i < nf; i++)
        rc = sample(out, "livevlm_cluster_frontend_sessions", "frontend", fe[i].id, (double)fe[i].sessions);
    if (!rc)
        rc = lv_buf_append_str(out, "# HELP livevlm_cluster_frontend_sockets Open WebSockets per frontend (its heartbeat in Redis).\n"
                                    "# TYPE livevlm_cluster_frontend_sockets gauge\n");
    for (size_t i = 0; !rc && i < nf; i++)
        rc = sample(out, "livevlm_cluster_frontend_sockets", "frontend", fe[i].id, (double)fe[i].sockets);
    lv_worker_t *w = lv_cluster_worker(app->cluster);
    if (!rc && w) {
        /* --workers-inline: the worker in this process, as `livevlm worker` shows its own */
        rc = lv_worker_metrics(w, out);
    }
    return rc;
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
    if (st->cl)
        cluster_gauges(app);
    size_t mark = out->len;
    int rc = lv_metrics_render(st->m, out);
    if (!rc && st->cl)
        rc = cluster_render(app, out);
    if (rc)
        lv_buf_truncate(out, mark);
    return rc;
}

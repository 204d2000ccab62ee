/* lv_stat.h - livevlm's own metrics: what the frame path records at each stage, and the
 * Prometheus text served at /metrics. Loop thread only. */
#ifndef LV_STAT_H
#define LV_STAT_H

#include <stdint.h>

#include "lv_buf.h"

struct lv_app;

/** Create the registry and every series (app->stat). LV_ENOMEM. */
int lv_stat_create(struct lv_app *app);
void lv_stat_destroy(struct lv_app *app);

/** Time the loop spent on one received frame (envelope, JPEG header, mailbox). */
void lv_stat_frame_received(struct lv_app *app, uint64_t us);
/** A frame left the queue for a backend. */
void lv_stat_dispatch(struct lv_app *app, double queue_wait_ms, double frame_age_ms);
void lv_stat_shape(struct lv_app *app, double ms);
/** A complete answer: latency from frame receipt, and the gateway's own time on this frame. */
void lv_stat_answer(struct lv_app *app, uint64_t ttft_us, double latency_ms, uint64_t gateway_us);
void lv_stat_error(struct lv_app *app, const char *code);
/** A frame that was not sent: replaced, stale, rejected, not_started, rate_limited, no_backend. */
void lv_stat_drop(struct lv_app *app, const char *reason);
void lv_stat_retry(struct lv_app *app);
/** A limit was hit: frames, sessions, sockets, login. */
void lv_stat_rate_limited(struct lv_app *app, const char *limit);
/** A backend request was cancelled because nobody needs its answer: detached, settings_changed. */
void lv_stat_cancel(struct lv_app *app, const char *reason);
/** A session's frame joined a request already asking the same about the same picture. */
void lv_stat_coalesced(struct lv_app *app);
/** A request's traceparent header was malformed (ignored: a new trace was used). */
void lv_stat_trace_invalid(struct lv_app *app);
/** Cluster mode: a job ended without an answer for a cluster reason (stale, worker_lost,
 * cluster_unavailable; lv_dispatch_redis.h). Ignored in single-node mode. */
void lv_stat_cluster_lost(struct lv_app *app, const char *reason);
/** Append the Prometheus text exposition (version 0.0.4). In cluster mode (app->cluster) it also
 * carries the livevlm_cluster_* families (docs/operations.md "Cluster") and, with
 * --workers-inline, the inline worker's livevlm_worker_* families. */
int lv_stat_render(struct lv_app *app, lv_buf_t *out);

#endif

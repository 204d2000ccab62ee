/* lv_port_viewer.h - the viewer port: whoever watches a session gets what the pipeline has to say
 * about it (where its frame stands in line, the answer as it streams, errors). The page's WebSocket
 * is one implementation (src/server/lv_engine.c, the only place the page's JSON is written); a
 * test's fake records the calls. The pipeline (lv_pipeline.c) makes every call.
 *
 * Ownership and lifetimes:
 *   - The implementation owns the lv_viewer_t (embed it in your connection struct) and its ops
 *     table (static). lv_pipeline_attach_viewer links it into session->viewers (counted in
 *     n_viewers) and lv_pipeline_detach_viewer unlinks it; detach before freeing it.
 *   - Every call runs on the loop thread, synchronously, from inside a pipeline call or event; it
 *     must not free the session or call back into the pipeline for the same session (queue the
 *     work instead). It may close its own transport, but stays linked until it detaches itself.
 *   - Pointers passed in (text, job, result) are borrowed for the call only: copy what you keep.
 *   - Any op may be NULL: that event is not delivered to this viewer. */
#ifndef LV_PORT_VIEWER_H
#define LV_PORT_VIEWER_H

#include <stddef.h>
#include <stdint.h>

#include "lv_queue.h"

struct lv_session;
struct lv_job;
struct lv_dispatch_result;
typedef struct lv_viewer lv_viewer_t;

typedef struct {
    /** The session's waiting frame is behind `position` others for a slot; `queued` wait in all. */
    void (*queued)(lv_viewer_t *v, struct lv_session *s, size_t position, size_t queued);
    /** The request for job->answer_id went out (job->backend_id, job->model, job->queue_wait_ms). */
    void (*answer_start)(lv_viewer_t *v, struct lv_session *s, const struct lv_job *job);
    /** More of the answer's text (coalesced: the first piece at once, then every ~40 ms). */
    void (*delta)(lv_viewer_t *v, struct lv_session *s, uint64_t answer_id, const char *text, size_t len);
    /** The complete answer; every delta of it came first. s's metrics are already updated. */
    void (*answer)(lv_viewer_t *v, struct lv_session *s, const struct lv_job *job,
                   const struct lv_dispatch_result *r, double latency_ms);
    /** An error for the session (answer_id 0 when not about one answer). */
    void (*error)(lv_viewer_t *v, struct lv_session *s, const char *code, const char *message, uint64_t answer_id);
    /** The waiting frame was thrown away: older than the session's max age when its turn came. */
    void (*frame_dropped)(lv_viewer_t *v, struct lv_session *s, const char *reason, double age_ms);
    /** The answer in progress was taken back ("settings_changed", "preempted"); its frame waits again. */
    void (*answer_cancelled)(lv_viewer_t *v, struct lv_session *s, uint64_t answer_id, const char *reason);
} lv_viewer_ops_t;

/* Embedded in the implementation's own struct (container_of to get back to it). */
struct lv_viewer {
    const lv_viewer_ops_t *ops;
    lv_queue_t link; /* in session->viewers; the pipeline's */
};

#endif

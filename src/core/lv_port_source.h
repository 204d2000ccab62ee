/* lv_port_source.h - the source port: where a session's frames come from. The pipeline pulls:
 * it asks a source for one frame (a credit) when the session's interval is due and the frame could
 * be served soon, and the source answers with a frame carrying the credit id (the engine's frame
 * path today). The page's WebSocket is one
 * source (src/server/lv_engine.c); a camera feed (RTSP, WebRTC) would be another, and a session
 * fed only by a source, with nobody watching, lives and gets credits like any other.
 *
 * Ownership and lifetimes:
 *   - The implementation owns the lv_source_t (embedded in its own struct) and its static ops.
 *     lv_pipeline_attach_source links it into session->sources (counted in n_sources) and
 *     lv_pipeline_detach_source unlinks it (detach before freeing it); with the last source gone
 *     the session's outstanding credit is dropped. lv_pipeline_stop calls stop on each.
 *   - Calls run on the loop thread, synchronously, inside a pipeline call; they must not call back
 *     into the pipeline for the same session (no put_frame from inside request_frame: send it on a
 *     later turn). Any op may be NULL.
 *   - A session with several sources asks each of them; the first frame that carries the credit
 *     id answers it. */
#ifndef LV_PORT_SOURCE_H
#define LV_PORT_SOURCE_H

#include <stdint.h>

#include "lv_queue.h"

struct lv_session;
typedef struct lv_source lv_source_t;

typedef struct {
    /** Send one frame, tagged with credit_id, when you can. Unanswered credits are asked again
     * after max(5 s, 2 intervals). */
    void (*request_frame)(lv_source_t *src, struct lv_session *s, uint32_t credit_id);
    /** The session stopped (or expired): send no more frames until the next request. */
    void (*stop)(lv_source_t *src, struct lv_session *s);
} lv_source_ops_t;

struct lv_source {
    const lv_source_ops_t *ops;
    lv_queue_t link; /* in session->sources; the pipeline's */
};

#endif

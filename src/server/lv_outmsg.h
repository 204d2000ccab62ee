/* lv_outmsg.h - the page's hot WebSocket messages (docs/protocol.md "Server messages"), each
 * written straight into the refcounted socket message it is sent as (lv_msg_text_start): no JSON
 * tree, no intermediate buffer, one allocation per message. lv_engine.c sends them; bench/micro.c
 * times them ("delta build").
 *
 * Every function returns a new message with one reference (the caller sends it with lv_conn_send,
 * which takes its own, then lv_msg_unref), or NULL when it cannot be built: out of memory, or a
 * string that is not UTF-8 where the message must not alter it (a delta's text: the next piece
 * would not line up). Strings are escaped with lv_json_str (src/common). Numbers of milliseconds
 * are written with 3 decimals; a value that is not finite is written as 0 (JSON has no NaN). */
#ifndef LV_OUTMSG_H
#define LV_OUTMSG_H

#include <stddef.h>
#include <stdint.h>

#include "lv_net.h"
#include "lv_port_dispatch.h"
#include "lv_session.h"

/** {"type":"credit","credit_id":N}: the page may send one frame. */
lv_msg_t *lv_outmsg_credit(uint32_t credit_id);

/** {"type":"queued","position":P,"queued":Q}: where the session's frame waits. */
lv_msg_t *lv_outmsg_queued(size_t position, size_t queued);

/** {"type":"answer_start","answer_id":..,"backend":..,"model":..,"queue_wait_ms":..,
 * "frame_age_ms":..[,"camera_frame":N]}: the job went to a backend. camera_frame (the sample's
 * number, for GET /api/v1/cameras/{id}/snapshot?seq=) only for a camera source's shared frame. */
lv_msg_t *lv_outmsg_answer_start(const lv_job_t *job);

/** {"type":"delta","answer_id":..,"text":".."}: more of the answer. NULL when text[0..len) is not
 * UTF-8 (the pipeline hands whole characters; a delta must not be altered). */
lv_msg_t *lv_outmsg_delta(uint64_t answer_id, const char *text, size_t len);

/** {"type":"vlm_response","answer_id":..,"text":..,"metrics":{..}} for the finished job, with
 * s's metrics (already updated by the pipeline); with job->settings.debug, also
 * "request_payload" and "response_payload" (the result's debug JSON re-encoded compact, or null).
 * The text is written lossily (a bad byte becomes U+FFFD): an answer is never dropped for one. */
lv_msg_t *lv_outmsg_answer(const lv_session_t *s, const lv_job_t *job, const lv_dispatch_result_t *r);

/** {"type":"answer_cancelled","answer_id":..,"reason":".."}. */
lv_msg_t *lv_outmsg_answer_cancelled(uint64_t answer_id, const char *reason);

/** {"type":"frame_dropped","reason":"..","age_ms":..}. */
lv_msg_t *lv_outmsg_frame_dropped(const char *reason, double age_ms);

#endif

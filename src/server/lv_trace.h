/* lv_trace.h - W3C trace context at the server's edge, and the log context of a session: a
 * request's traceparent header becomes the trace of the session it starts (POST /api/v1/analyze)
 * or of the WebSocket's session; the line logged about a session names its tenant, user, id and
 * trace. Loop thread only. Parsing is lv_traceparent.c's (pure, fuzzed). */
#ifndef LV_TRACE_H
#define LV_TRACE_H

#include <stdbool.h>

#include "lv_http1.h"
#include "lv_log.h"
#include "lv_traceparent.h"

struct lv_app;
struct lv_session;

/** Read head's traceparent (and tracestate, passed on when lv_tracestate_ok takes it and it comes
 * with a valid traceparent) into *out. true when a valid traceparent was given; false when none
 * was, or a malformed one, which is then counted (livevlm_traceparent_invalid_total) and noted at
 * debug level without its bytes; *out is then empty (the caller keeps its own trace). */
bool lv_trace_from_head(struct lv_app *app, const lv_http1_req_t *head, const char *ip, lv_trace_t *out);

/** A log context for session s (tenant, user when its principal is an account, id, trace) plus
 * the client address ip (NULL = none). Every string points into s or ip: the context is valid
 * while they are. */
lv_log_ctx_t lv_trace_log_ctx(const struct lv_session *s, const char *ip);

#endif

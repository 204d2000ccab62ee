/* lv_analyze.h - POST /api/v1/analyze: one picture, one answer, for scripts. The request becomes a
 * session of its own (charged to the caller's principal, so per-principal caps, the frame budget,
 * the fair queue and metrics apply as for a page), watched by the HTTP request through the viewer
 * port; the answer comes back as one JSON body, or as Server-Sent Events while it streams
 * (docs/protocol.md, "One-shot analysis"). The session is removed when the answer is out or the
 * client goes (its backend request is then cancelled).
 *
 * Ownership: the module's state hangs off the app (lv_analyze_init/lv_analyze_stop); each request's
 * state is the module's until the answer is sent and the session removed. Loop thread only. */
#ifndef LV_ANALYZE_H
#define LV_ANALYZE_H

#include <stddef.h>

#include "lv_principal.h"

struct lv_app;
struct lv_req;

/** Set up the module's state on app (after the pipeline). LV_ENOMEM. */
int lv_analyze_init(struct lv_app *app);
/** Answer every request still waiting with 503 and remove their sessions (shutdown, before the
 * pipeline shuts down). */
void lv_analyze_stop(struct lv_app *app);
/** Sessions of answered or abandoned requests are removed here, outside pipeline calls (the
 * engine's tick). */
void lv_analyze_reap(struct lv_app *app);
/** Handle POST /api/v1/analyze (credentials already checked). Answers now or later, once. */
int lv_analyze_handle(struct lv_app *app, struct lv_req *r, const lv_principal_t *who);
/** The largest body POST /api/v1/analyze takes: a frame (and its optional LVF1 envelope). */
size_t lv_analyze_body_cap(const struct lv_app *app);

#endif

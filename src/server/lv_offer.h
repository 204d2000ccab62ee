/* lv_offer.h - POST /offer (and /api/v1/offer): WebRTC signalling compatible with the tool livevlm
 * replaces. A full SDP offer in, a full SDP answer out (non-trickle), for a session of the caller's
 * principal, whose frames then come from that video (its `source` becomes "webrtc"). The media
 * side is src/media/lv_webrtc.h; the offer is checked first by src/proto/lv_sdp.h. Loop thread
 * only; the module's state hangs off the app, created on the first offer. */
#ifndef LV_OFFER_H
#define LV_OFFER_H

#include <stdbool.h>
#include <stddef.h>

#include "lv_buf.h"
#include "lv_principal.h"

struct lv_app;
struct lv_req;
struct lv_session;

/** Is path one of the offer routes? */
bool lv_offer_route(const char *path);
/** Handle the POST (credentials and Origin already checked). Answers now or later, once. */
int lv_offer_handle(struct lv_app *app, struct lv_req *r, const lv_principal_t *who);
/** The largest body taken: an offer at the SDP cap, JSON-escaped (CRLF becomes 4 bytes). */
size_t lv_offer_body_cap(const struct lv_app *app);
/** Session s no longer takes its frames from WebRTC (its `source` changed): its stream, if any,
 * is closed (lv_webrtc_session_close; an answer still owed is a 503 with reason). */
void lv_offer_session_close(struct lv_app *app, struct lv_session *s, const char *reason);
/** Append the WebRTC families to a /metrics body (nothing before the first offer). 0 or LV_ENOMEM. */
int lv_offer_metrics(struct lv_app *app, lv_buf_t *out);
/** Answer every waiting offer with 503 and stop every WebRTC stream (shutdown; the loop runs on
 * to free them). */
void lv_offer_stop(struct lv_app *app);

#endif

/* lv_engine.h - the frame path on the loop (lv_engine.c): mailbox -> scheduler -> backend ->
 * sockets. The page's WebSocket messages go into the pipeline (src/core) and its events come back
 * out as the page's JSON; the engine also hosts the pipeline's timers, dispatcher and metrics.
 * Loop thread only. */
#ifndef LV_ENGINE_H
#define LV_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lv_quota.h"

struct lv_app;
struct lv_conn;
struct lv_session;

/** Start the frame path: the scheduler, metrics (lv_stat.h), the dispatcher (the local one on
 * app->pool, or in cluster mode lv_cluster_dispatch(app->cluster), so lv_cluster_start comes
 * first), the pipeline, its tick and the idle sweep. After the registry and the pool exist.
 * LV_ENOMEM or LV_EIO. */
int lv_engine_start(struct lv_app *app);
/** Cancel every backend call and close the dispatcher (the local one: the cluster's is the
 * cluster's to close) and the timers (the loop must run on to free them). Before the pool is
 * destroyed. */
void lv_engine_stop(struct lv_app *app);
/** A complete WebSocket message arrived on conn. */
void lv_engine_on_message(struct lv_conn *c, const char *p, size_t len, bool binary);
/** conn is going away: detach it from its session. */
void lv_engine_on_close(struct lv_conn *c);
/** Set s's `source` (a valid value) as update_settings does: saved, settings_updated to every
 * socket of s, a camera it watched let go (or the one named watched), its WebRTC stream closed
 * unless the source is "webrtc", the new source asked for a frame at once. Nothing when unchanged.
 * POST /offer sets "webrtc" with it. */
void lv_engine_set_source(struct lv_app *app, struct lv_session *s, const char *source);

/* ---- cluster mode (lv_cluster_sessions.h calls these) ---- */

/** The answer to a hello that went asynchronous, for a socket still open: rc 0 attaches c to s and
 * sends `session` (with secret, the new session's resume secret, or resumed when secret is NULL);
 * LV_ENOTFOUND sends session_not_found, LV_ELIMIT too_many_sessions (and closes), LV_ECLOSED
 * cluster_unavailable (the socket stays open: the page says hello again), anything else internal. */
void lv_engine_hello_done(struct lv_conn *c, struct lv_session *s, const char *secret, int rc);
/** The answer to such a hello refused by the sessions quota of the user or its tenant (counted
 * cluster-wide), for a socket still open: quota_exceeded as a single node sends it, then close. */
void lv_engine_hello_over_quota(struct lv_conn *c, const lv_quota_over_t *over);
/** Another frontend serves s now: each of its sockets hears error `code` with `message` and is
 * closed (the page reconnects and resumes wherever it lands), its camera and WebRTC stream are let
 * go, and the copy here is freed (nothing is deleted in Redis). */
void lv_engine_session_release(struct lv_app *app, struct lv_session *s, const char *code, const char *message);
/** An admin ended s (POST /api/v1/admin/sessions/ID/kick): as lv_engine_session_release, but its
 * sockets hear error kicked_by_admin with `message` (the page stops reconnecting) and, in a
 * cluster, its record is deleted too, so it cannot be resumed anywhere. s is freed unless
 * something other than a page still holds it. */
void lv_engine_session_kick(struct lv_app *app, struct lv_session *s, const char *message);
/** The account or API key behind s was taken away (lv_accounts.c checks the sockets at each
 * snapshot): as lv_engine_session_kick, with error `code` (account_disabled, key_revoked). */
void lv_engine_session_revoke(struct lv_app *app, struct lv_session *s, const char *code, const char *message);

/** --user-fpm: take one frame from the principal's budget (false: over it). Single node: per
 * process (lv_iptable); in a cluster, per wall-clock minute across every frontend (lv_cluster.h).
 * Used by the page's frames and POST /api/v1/analyze alike. */
bool lv_engine_frame_budget_take(struct lv_app *app, const char *principal, uint64_t now_ms);
/** Seconds until the principal's frames are accepted again (rounded up). */
int lv_engine_frame_budget_retry_s(struct lv_app *app, const char *principal, uint64_t now_ms);

#endif

/* lv_engine.h - the frame path on the loop (lv_engine.c): mailbox -> scheduler -> backend ->
 * sockets. The page's WebSocket messages go into the pipeline (src/core) and its events come back
 * out as the page's JSON; the engine also hosts the pipeline's timers, dispatcher and metrics.
 * Loop thread only. */
#ifndef LV_ENGINE_H
#define LV_ENGINE_H

#include <stdbool.h>
#include <stddef.h>

struct lv_app;
struct lv_conn;
struct lv_session;

/** Start the frame path: the scheduler, metrics (lv_stat.h), the local dispatcher on app->pool,
 * the pipeline, its tick and the idle sweep. After the registry and the pool exist. LV_ENOMEM or
 * LV_EIO. */
int lv_engine_start(struct lv_app *app);
/** Cancel every backend call and close the dispatcher and the timers (the loop must run on to
 * free them). Before the pool is destroyed. */
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

#endif

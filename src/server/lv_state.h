/* lv_state.h - sessions across restarts in the single-node mode: the registry is loaded from the
 * state file at start, saved while running (off the loop) and once more at a clean shutdown.
 * `--state-file PATH|none` chooses the file (default <config-dir>/sessions.db). */
#ifndef LV_STATE_H
#define LV_STATE_H

struct lv_app;

/** Restore the saved sessions into app->reg and start saving (app->persist). Call after the
 * registry exists and before the loop runs. Never fails the start: a missing, locked, corrupt or
 * unreadable file is logged and the server starts with no sessions. */
void lv_state_start(struct lv_app *app);

/** The final save, synchronous: call once when shutdown begins, while the sessions still exist.
 * Periodic saves stop. No-op when sessions are not kept. */
void lv_state_save_final(struct lv_app *app);

/** Free what lv_state_start made; after the loop has ended, before the registry is destroyed. */
void lv_state_destroy(struct lv_app *app);

#endif

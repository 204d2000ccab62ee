/* lv_cluster_sessions.h - sessions in a cluster (docs/internals/cluster.md): each session's
 * durable form (lv_statefile's session line: settings, resume-secret hash, principal, history,
 * answer numbering) lives in Redis under lv:s:<id> with a TTL of the idle expiry, written by the
 * frontend that owns it (lv:o:<id>) within ~100 ms of each change. A page that reconnects to any
 * frontend resumes: that frontend takes ownership, loads the line, checks the secret against its
 * hash and restores the session (lv_registry_restore) before answering hello. A frontend that
 * finds it lost ownership (a write refused) lets its copy go. New sessions are admitted by a
 * script that counts the principal's live sessions cluster-wide (--max-sessions-per-ip).
 *
 * Called by lv_cluster.c (start/stop/up) and lv_engine.c (hello). Loop thread only. */
#ifndef LV_CLUSTER_SESSIONS_H
#define LV_CLUSTER_SESSIONS_H

#include <stdbool.h>

struct lv_app;

/** After app->cluster's Redis client exists: register the scripts, start the write-behind timer. */
int lv_csess_start(struct lv_app *app);
/** Redis went up or down (lv_cluster.c's on_state). Up again: every local session is written. */
void lv_csess_set_up(struct lv_app *app, bool up);
/** Shutdown begins: write every dirty session one last time (fire and forget). */
void lv_csess_stop(struct lv_app *app);
void lv_csess_free(struct lv_app *app);

#endif

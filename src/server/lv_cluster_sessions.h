/* lv_cluster_sessions.h - sessions in a cluster (docs/internals/cluster.md): each session's
 * durable form (lv_statefile's session line: settings, resume-secret hash, principal, history,
 * answer numbering) lives in Redis under lv:s:<id> with a TTL of the idle expiry, written by the
 * frontend that owns it (lv:o:<id>) within ~100 ms of each change. A page that reconnects to any
 * frontend resumes: that frontend takes ownership, loads the line, checks the secret against its
 * hash and restores the session (lv_registry_restore) before answering hello. A frontend that
 * finds it lost ownership (a write refused) lets its copy go. New sessions are admitted by a
 * script that counts the principal's and its tenant's live sessions cluster-wide, against
 * --max-sessions-per-ip and the sessions quotas of the user and the tenant (lv_quota.h).
 *
 * Keys (every write is one Lua script, so a check and its write are one step):
 *   lv:s:<id>          the session line (without its "\n"); PX = what is left of its idle time
 *                      (the whole --session-idle while a socket is attached, refreshed at least
 *                      every min(60 s, idle/3))
 *   lv:o:<id>          the owning frontend's node id, same PX
 *   lv:us:<principal>  zset: session id -> until when it counts as live (wall ms). A session with a
 *                      socket is live for 3 refresh periods past its last write; one without a
 *                      socket is not in the set (detached sessions give way, as in single-node
 *                      mode: docs/protocol.md, too_many_sessions); a new session holds a
 *                      provisional member for 10 s until its first write replaces it.
 *   lv:ts:<tenant>     zset: the same members for every principal of the tenant ("default"
 *                      without accounts), changed by the same scripts in the same steps, so it is
 *                      always the union of its principals' lv:us sets (the tenant's sessions quota).
 *
 * Called by lv_cluster.c (start/stop/up/free) and lv_engine.c (hello, sockets closing, sessions
 * freed). Loop thread only. Every function is a no-op (or answers "not here") in single-node mode. */
#ifndef LV_CLUSTER_SESSIONS_H
#define LV_CLUSTER_SESSIONS_H

#include <stdbool.h>

#include "lv_settings.h"

struct lv_app;
struct lv_conn;
struct lv_session;

/** After app->cluster's Redis client exists: register the scripts, start the write-behind timer. */
int lv_csess_start(struct lv_app *app);
/** Redis went up or down (lv_cluster.c's on_state). Up again: every local session is written. */
void lv_csess_set_up(struct lv_app *app, bool up);
/** Shutdown begins: write every dirty session one last time (fire and forget); nothing is written
 * after it. While the loop runs and the registry exists. */
void lv_csess_stop(struct lv_app *app);
/** Free what start made, after lv_csess_stop (or, without it, while the registry still exists).
 * Commands still pending in the Redis client may call back later (lv_redis_close fails them):
 * their state is freed then, and they touch nothing of the app. */
void lv_csess_free(struct lv_app *app);

/* ---- hello (lv_engine.c). A hello that goes asynchronous is answered through
 * lv_engine_hello_done (lv_engine.h) exactly once, and only while its socket is open: a socket
 * that closes meanwhile (lv_csess_conn_closed) hears nothing, and what the reply brings is still
 * applied (a claimed session is restored without a socket: it is ours now, and expires as any
 * detached one). */

/** hello with an id and a secret, in cluster mode, for a session that is not here or is here with
 * no socket (another frontend may have taken it since: Redis says who owns it). Returns 0 (the
 * answer follows), LV_ENOTFOUND (not a session id: answer session_not_found now), LV_ECLOSED
 * (Redis is down: a copy held here is resumed as it is, since nobody can take it over meanwhile;
 * else answer cluster_unavailable now), LV_ENOMEM. */
int lv_csess_resume(struct lv_app *app, struct lv_conn *c, const char *id, const char *secret);
/** hello for a new session with these (checked) settings, in cluster mode: the principal's and
 * its tenant's live sessions are counted cluster-wide first (a refusal by a sessions quota is
 * answered by lv_engine_hello_over_quota, by the cap by too_many_sessions). Returns 0 (the answer
 * follows), LV_ECLOSED (Redis is down: cluster_unavailable, nothing created), LV_ENOMEM. */
int lv_csess_admit(struct lv_app *app, struct lv_conn *c, const lv_settings_t *settings);
/** A hello of c is being answered (a second one is refused meanwhile). */
bool lv_csess_hello_pending(struct lv_app *app, const struct lv_conn *c);
/** c is closing: a hello in flight for it is answered to nobody. */
void lv_csess_conn_closed(struct lv_app *app, const struct lv_conn *c);

/** The registry is about to free s (idle expiry, eviction): its record, owner key and live entry
 * are deleted, if this frontend still owns it. */
void lv_csess_session_gone(struct lv_app *app, struct lv_session *s);

#endif

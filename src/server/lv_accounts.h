/* lv_accounts.h - the serving process's side of accounts (docs/internals/accounts.md): it opens
 * the database (lv_db.h), makes the default tenant and the first admin, keeps the snapshot
 * (lv_acct.h) current on the loop and runs database work for HTTP handlers without blocking it.
 * Loop thread only. app->accts is NULL with --auth token and none; the database (usage, audit) is
 * open in every mode (app->db). */
#ifndef LV_ACCOUNTS_H
#define LV_ACCOUNTS_H

#include <stdbool.h>

#include "lv_acct.h"
#include "lv_db.h"
#include "lv_httpd.h"
#include "lv_principal.h"

struct lv_app;

/** At start, before the server listens: open app->cfg.db_url (lv_db_open), then with accounts
 * make the default tenant and, when there is no admin, an admin "admin" with a random password
 * printed once on standard output; load the snapshot; start the reload poll (every second: when
 * meta.version moved, a new snapshot replaces the old). 0 or an LV_E* code (logged). */
int lv_accounts_start(struct lv_app *app);
/** At the end, while the loop still runs: stop the poll, close the database (its queued jobs
 * finish). */
void lv_accounts_stop(struct lv_app *app);
/** The current snapshot (NULL without accounts). Valid until the next loop turn: do not keep it. */
lv_acct_snap_t *lv_accounts_snap(struct lv_app *app);

/** Run work on the database thread for request r, then done on the loop with r, or with r NULL
 * when the client left meanwhile (done still runs: free ud there). Marks r waiting. On a full queue
 * answers r 503 itself and returns LV_ELIMIT (done is not called). */
typedef void (*lv_accounts_req_done_fn)(struct lv_app *app, lv_req_t *r, int rc, void *ud);
int lv_accounts_submit_req(struct lv_app *app, lv_req_t *r, lv_db_work_fn work, lv_accounts_req_done_fn done,
                           void *ud);

/** Write an audit record (queued; never blocks). actor is who did it. */
void lv_accounts_audit(struct lv_app *app, const lv_principal_t *actor, const char *ip, const char *action,
                       const char *target, const char *detail);

/** End the live WebSockets the current snapshot no longer admits (a user disabled or gone, an API
 * key revoked or expired, a sign-in ended): each hears its reason (account_disabled, key_revoked,
 * signed_out) and its session ends like a kick. Runs at every snapshot install; call it after
 * changing the current snapshot by hand (a sign-out). O(connections). */
void lv_accounts_check_conns(struct lv_app *app);
/** The sockets opened with sign-in old_hash belong to new_hash now (a password change replaces
 * the page's own sign-in: its sockets must not end with the others). */
void lv_accounts_conns_relogin(struct lv_app *app, const char *old_hash, const char *new_hash);

/** Ask for a reload now (after this process changed something the snapshot holds). */
void lv_accounts_reload(struct lv_app *app);

/** Install a snapshot a job of this process built (after a change it made, so the next request
 * sees it): takes snap; one older than the current is freed instead. Calls lv_fair_apply. */
void lv_accounts_install(struct lv_app *app, lv_acct_snap_t *snap);
/** Database thread, or a CLI's db: make the default tenant when it is missing. */
int lv_accounts_ensure_default_tenant(lv_db_t *db);

/** The per-account password failure table (lv_auth.h lv_auth_account_locked); NULL without
 * accounts. */
struct lv_auth_locks *lv_accounts_locks(struct lv_app *app);
/** The API keys' last-use table (lv_auth.h lv_auth_keyuse_*), written to the database each second;
 * NULL without accounts. */
struct lv_auth_keyuse *lv_accounts_keyuse(struct lv_app *app);

#endif

/* lv_auth.h - who may use the server (lv_auth.c): the access token (a file in the config dir), the
 * credential a request carries (API key, JWT, sign-in cookie, a trusted proxy's user header, or
 * the shared token), and the principal it acts for (lv_principal.h).
 * Failed credentials are counted per address in the iptable (lv_iptable.h). Loop thread only,
 * except the token files, which main reads before the loop runs. */
#ifndef LV_AUTH_H
#define LV_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lv_http1.h"
#include "lv_httpd.h"
#include "lv_principal.h"

struct lv_app;

/** Create the config directory (and parents) with mode 0700 if missing. */
int lv_auth_ensure_dir(const char *dir);
/** Read the access token (64 hex digits) from config_dir/token into out; when the file is missing
 * or holds anything else, write a new one (lv_auth_rotate_token) and set *created. 0 or an LV_E*
 * code. */
int lv_auth_load_token(const char *config_dir, char out[65], bool *created);
/** Write a new random token to config_dir/token (mode 0600, replaced whole; the directory is made
 * when missing) and into out. 0 or an LV_E* code. */
int lv_auth_rotate_token(const char *config_dir, char out[65]);
/** Authenticate r (docs/internals/accounts.md "Credentials", in this order: Bearer lvk_ API key,
 * Bearer JWT, the livevlm_session sign-in cookie, with --auth proxy the proxy's user header from a
 * --trusted-proxy peer; with --auth token the shared token, with none nobody is asked). 0 and *who
 * filled (every field) when r carries a valid credential. Else the status to answer and in *why a
 * static sentence saying what was wrong (a revoked key, a disabled user...): 401; 403 for a POST
 * signed in with the cookie that lacks the right X-CSRF-Token (code "csrf"); 429 when r carries a
 * wrong credential and its address is over its failed credentials this minute (wrong ones count);
 * 503 while bearer JWT keys are still being fetched. who and why may be NULL. With --auth proxy, a
 * proxy user seen for the first time is not in the snapshot yet: see lv_auth_proxy_pending. */
int lv_auth_check(struct lv_app *app, const lv_req_t *r, lv_principal_t *who, const char **why);
/** Who the holder of r's credential is (lv_auth_check's principal, for handlers that run after the
 * check passed): the principal its sessions and fair share are charged to (lv_principal.h). */
void lv_auth_principal(struct lv_app *app, const lv_req_t *r, lv_principal_t *out);
/** Count a failed credential from ip (any kind: header, cookie, login form, ?token= link);
 * returns 429 when ip was already over LOGIN_FAILS_PER_MIN (lv_iptable.c) this minute, else 401.
 * ip is the request's client address (lv_req_t.ip): the TCP peer, or behind a --trusted-proxy the
 * client it forwarded (lv_httpd.c), never a header from anyone else. */
int lv_auth_failed(struct lv_app *app, const char *ip);

#define LV_AUTH_SESSION_COOKIE "livevlm_session" /* a sign-in: password, invite or OpenID Connect */
#define LV_AUTH_TOKEN_COOKIE "livevlm_auth"      /* --auth token's shared token */
/** Into out (truncated to size): the "set-cookie: ...\r\n" header line of the sign-in cookie,
 * HttpOnly (scripts never see it), SameSite=Lax (a link from another site still arrives signed
 * in, its POSTs do not carry it), Secure when tls. An empty secret with max_age_s 0 clears it. */
void lv_auth_session_cookie(char *out, size_t size, bool tls, const char *secret, long max_age_s);
/** The same for --auth token's cookie, exactly as the token login always set it: SameSite=Strict,
 * Secure with --tls. */
void lv_auth_token_cookie(const struct lv_app *app, char *out, size_t size, const char *token, int max_age_s);

/** --auth proxy: when r comes from a --trusted-proxy peer naming a user that does not exist yet,
 * create it (role user, default tenant) off the loop and call again(app, r) once it is in the
 * snapshot (r waits meanwhile; r NULL is never passed: a request whose client left is dropped).
 * True when r was taken this way (the caller returns); false when there is nothing to create. */
bool lv_auth_proxy_pending(struct lv_app *app, lv_req_t *r, void (*again)(struct lv_app *app, lv_req_t *r));

/* Per-account password failures (docs/internals/accounts.md "Credentials"): 5 failed passwords
 * for one account name within a minute lock that account's password sign-in for a minute,
 * whichever address tries, so a locked account cannot be probed faster from many addresses. The
 * table is bounded (LV_AUTH_LOCKS_MAX names; the oldest entries are evicted first), so unknown
 * names sent to fill it cost memory only up to the cap. */
#define LV_AUTH_ACCOUNT_FAILS_PER_MIN 5
#define LV_AUTH_ACCOUNT_LOCK_MS 60000
#define LV_AUTH_LOCKS_MAX 4096

/** True while name's password sign-in is locked (the sign-in route answers 429 without checking
 * the password). now_ms: lv_now_ms(). False without accounts. */
bool lv_auth_account_locked(struct lv_app *app, const char *name, uint64_t now_ms);
/** Count a failed password for name (an unknown name counts too: it looks the same outside). */
void lv_auth_account_failed(struct lv_app *app, const char *name, uint64_t now_ms);

/* The table itself, without an app (unit tests; lv_accounts.c owns the process's one). */
typedef struct lv_auth_locks lv_auth_locks_t;
lv_auth_locks_t *lv_auth_locks_create(size_t max_names);
void lv_auth_locks_free(lv_auth_locks_t *l);
bool lv_auth_locks_locked(lv_auth_locks_t *l, const char *name, uint64_t now_ms);
void lv_auth_locks_failed(lv_auth_locks_t *l, const char *name, uint64_t now_ms);

/* API keys' last use (docs/internals/accounts.md "Credentials"): each accepted API key is recorded
 * here on the loop (key id -> the last use's wall time), and lv_accounts.c writes what is due in one
 * database job a second: a key at its first use seen by this process, then at most once per
 * LV_AUTH_KEYUSE_PERIOD_MS, so a busy key costs one UPDATE a minute, not one per request. Bounded:
 * LV_AUTH_KEYUSE_MAX keys; at the cap the least recently used entry is dropped (an unwritten use
 * of it is lost: its key was idle longer than every other one here). An entry written and then
 * idle for the period is dropped, since its next use is due at once anyway. */
#define LV_AUTH_KEYUSE_MAX 4096
#define LV_AUTH_KEYUSE_PERIOD_MS 60000

typedef struct {
    char key_id[LV_PRINCIPAL_ID_MAX];
    int64_t used_ms; /* wall clock */
} lv_auth_keyuse_item_t;

typedef struct lv_auth_keyuse lv_auth_keyuse_t;
lv_auth_keyuse_t *lv_auth_keyuse_create(size_t max_keys);
void lv_auth_keyuse_free(lv_auth_keyuse_t *t);
/** Key key_id was used at wall time used_ms (safe on t NULL). */
void lv_auth_keyuse_record(lv_auth_keyuse_t *t, const char *key_id, int64_t used_ms);
/** The uses due at now_ms (lv_now_ms()), at most max of them into out, marked written; the rest
 * wait for a later call. Returns how many. O(entries). */
size_t lv_auth_keyuse_take(lv_auth_keyuse_t *t, uint64_t now_ms, lv_auth_keyuse_item_t *out, size_t max);
/** Entries in the table (tests). */
size_t lv_auth_keyuse_count(const lv_auth_keyuse_t *t);

#endif

/* lv_acct.h - accounts, API keys, sign-ins, tenants, quotas, usage and the audit log, stored in
 * the database (lv_db.h); docs/internals/accounts.md has the model and why.
 *
 * Two halves:
 * - lv_acct_db_*: statements, run ONLY on the database thread (inside an lv_db work callback) or
 *   by a CLI command on a db opened without a loop. Every change of users, keys, sign-ins or tenants
 *   also bumps meta.version in the same transaction, so other frontends reload.
 * - lv_acct_snap_*: an in-memory snapshot of what a request needs to be authorised and charged
 *   (tenants, users, API keys, sign-ins), built on the database thread by lv_acct_db_load and then
 *   owned by the loop thread, which reads it without locks and may apply its own changes to it
 *   (a new sign-in, a revoked key) after the database took them. The snapshot is replaced whole when
 *   meta.version moves (lv_accounts.c polls it).
 *
 * Secrets: passwords are argon2id strings (libsodium crypto_pwhash_str); API keys, sign-in cookies
 * and invite codes are 32 random bytes shown once and stored as SHA-256 hex only. */
#ifndef LV_ACCT_H
#define LV_ACCT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lv_db.h"
#include "lv_hmap.h"

#define LV_ACCT_ID_MAX 33       /* ids: 1..32 of a-z 0-9 _ - (users get 16 random hex), NUL included */
#define LV_ACCT_NAME_MAX 65     /* user login names: 1..64 of a-z A-Z 0-9 . _ @ + - */
#define LV_ACCT_TEXT_MAX 129    /* display names, key names */
#define LV_ACCT_LIST_MAX 513    /* comma lists of backend ids / models; "" = all */
#define LV_ACCT_HASH_HEX 65     /* SHA-256 hex */
#define LV_ACCT_SECRET_HEX 65   /* a shown-once secret: 64 hex digits */
#define LV_ACCT_KEY_PREFIX "lvk_"    /* API keys are "lvk_" + 64 hex (68 chars) */
#define LV_ACCT_LOGIN_TTL_MS (30ull * 86400 * 1000)
#define LV_ACCT_INVITE_TTL_MS (7ull * 86400 * 1000)
#define LV_ACCT_DEFAULT_TENANT "default"

typedef enum { LV_ROLE_VIEWER = 0, LV_ROLE_USER = 1, LV_ROLE_ADMIN = 2 } lv_role_t;

/* API key scopes (bits). A stream key may use the WebSocket and the stream API (analyze, models,
 * config, usage of its own user); an admin key also /api/v1/admin/... and only with an admin user. */
enum { LV_SCOPE_STREAM = 1, LV_SCOPE_ADMIN = 2 };

/* Quotas: 0 = no limit at this level. fpm: frames per minute; answers and tokens per UTC day;
 * sessions: live sessions at once. */
typedef struct {
    int64_t fpm, answers_day, tokens_day, sessions;
} lv_quota_t;

typedef struct {
    char id[LV_ACCT_ID_MAX];
    char name[LV_ACCT_TEXT_MAX];
    int weight;                     /* fair share among tenants, 1..1000 */
    char backends[LV_ACCT_LIST_MAX]; /* allowed backend ids, "" = all */
    char models[LV_ACCT_LIST_MAX];   /* allowed models, "" = all */
    lv_quota_t quota;
    int64_t created_ms;
} lv_tenant_t;

typedef struct {
    char id[LV_ACCT_ID_MAX];
    char name[LV_ACCT_NAME_MAX];     /* the login name; unique */
    char tenant[LV_ACCT_ID_MAX];
    lv_role_t role;
    bool disabled;
    bool has_password;               /* false: SSO-only, or invited and not yet set */
    int weight;                      /* fair share among its tenant's users, 1..1000 */
    lv_quota_t quota;
    char oidc_iss[256], oidc_sub[256];
    int64_t created_ms;
} lv_user_t;

typedef struct {
    char id[LV_ACCT_ID_MAX];
    char user_id[LV_ACCT_ID_MAX];
    char name[LV_ACCT_TEXT_MAX];
    char prefix[16];                 /* "lvk_" + first 8 hex: shown in lists to tell keys apart */
    char hash[LV_ACCT_HASH_HEX];
    int scope;                       /* LV_SCOPE_* bits */
    int64_t expires_ms;              /* 0 = never (wall clock) */
    int64_t last_used_ms;
    bool revoked;
    int64_t created_ms;
} lv_apikey_t;

typedef struct {
    char hash[LV_ACCT_HASH_HEX];     /* SHA-256 of the cookie's secret */
    char user_id[LV_ACCT_ID_MAX];
    char csrf[LV_ACCT_SECRET_HEX];   /* the double-submit token the page sends on state changes */
    int64_t expires_ms;
} lv_login_t;

/* ---------- the snapshot (loop thread after hand-off) ---------- */

typedef struct lv_acct_snap lv_acct_snap_t; /* private; maps by id / name / hash */

/** Free a snapshot (safe on NULL). */
void lv_acct_snap_free(lv_acct_snap_t *s);
/** meta.version it was built from. */
int64_t lv_acct_snap_version(const lv_acct_snap_t *s);
const lv_tenant_t *lv_acct_snap_tenant(const lv_acct_snap_t *s, const char *id);
const lv_user_t *lv_acct_snap_user(const lv_acct_snap_t *s, const char *id);
const lv_user_t *lv_acct_snap_user_by_name(const lv_acct_snap_t *s, const char *name);
/** The key whose SHA-256 hex is hash, or NULL (revoked and expired ones are returned too: callers
 * check, so they can say why). */
const lv_apikey_t *lv_acct_snap_key(const lv_acct_snap_t *s, const char *hash);
const lv_login_t *lv_acct_snap_login(const lv_acct_snap_t *s, const char *hash);
/** Apply a change the database already took (loop thread). */
int lv_acct_snap_put_login(lv_acct_snap_t *s, const lv_login_t *l);
void lv_acct_snap_drop_login(lv_acct_snap_t *s, const char *hash);
/** Drop every sign-in of a user (sign out everywhere). */
void lv_acct_snap_drop_user_logins(lv_acct_snap_t *s, const char *user_id);
/** Iterate: calls fn for each tenant / user; stops when fn returns non-zero. */
void lv_acct_snap_each_tenant(const lv_acct_snap_t *s, int (*fn)(const lv_tenant_t *t, void *ud), void *ud);
void lv_acct_snap_each_user(const lv_acct_snap_t *s, int (*fn)(const lv_user_t *u, void *ud), void *ud);
/** ... and each API key it holds (the unrevoked ones; expired ones too: callers check). */
void lv_acct_snap_each_key(const lv_acct_snap_t *s, int (*fn)(const lv_apikey_t *k, void *ud), void *ud);
size_t lv_acct_snap_users(const lv_acct_snap_t *s);

/* ---------- statements (database thread) ---------- */

/** Build a snapshot of tenants, users, unrevoked API keys and unexpired sign-ins. */
int lv_acct_db_load(lv_db_t *db, lv_acct_snap_t **out);
/** meta.version now (cheap: one row). */
int lv_acct_db_version(lv_db_t *db, int64_t *out);

/** Users. pw may be NULL or "" (no password: SSO-only or invited). role/tenant checked. On
 * LV_EEXIST the name is taken. out (may be NULL) gets the new user. */
int lv_acct_db_user_add(lv_db_t *db, const char *name, const char *pw, lv_role_t role, const char *tenant,
                        lv_user_t *out);
/** Fields of u written back (name, tenant, role, disabled, weight, quota); by u->id. */
int lv_acct_db_user_update(lv_db_t *db, const lv_user_t *u);
int lv_acct_db_user_set_password(lv_db_t *db, const char *user_id, const char *pw);
/** Disabling also deletes the user's sign-ins and revokes nothing else (keys stop working because
 * their user is disabled). */
int lv_acct_db_user_set_disabled(lv_db_t *db, const char *user_id, bool disabled);
int lv_acct_db_user_delete(lv_db_t *db, const char *user_id);
/** Check a password: 0 and *out on success; LV_EAUTH for a wrong password, an unknown or disabled
 * user, or one with no password (the same code for all, so an attacker learns nothing). Runs
 * argon2id: ~50 ms of CPU on the database thread's caller. */
int lv_acct_db_check_password(lv_db_t *db, const char *name, const char *pw, lv_user_t *out);
/** Users of the database (for `livevlm user list` and the admin page), by name. */
int lv_acct_db_user_list(lv_db_t *db, lv_user_t **out, size_t *n);
/** Count users with role admin (first start makes one when there are none). */
int lv_acct_db_admin_count(lv_db_t *db, int64_t *out);

/** Invites: a code (shown once, 64 hex) that lets the invited user set a password within
 * LV_ACCT_INVITE_TTL_MS; redeeming it clears it. LV_EAUTH for a wrong or expired code. */
int lv_acct_db_invite(lv_db_t *db, const char *user_id, char code_out[LV_ACCT_SECRET_HEX]);
int lv_acct_db_redeem_invite(lv_db_t *db, const char *code, const char *pw, lv_user_t *out);

/** Sign in with OpenID Connect: the user linked to (iss, sub); else, when may_link (preferred is
 * an e-mail address the issuer says it verified), an unlinked user of that name WITHOUT a password
 * (one the admin made for single sign-on, or invited and not yet redeemed) is linked now; else a
 * new user in tenant with role, named preferred (or preferred-<hex> when taken, user-<hex> when
 * unusable). A user with a password is never linked by name: a provider that lets people choose
 * their name would otherwise hand out local accounts ("admin"). An existing user's tenant and role
 * follow the claims when claims_rule is true (the admin mapped them). LV_EAUTH when the user is
 * disabled. */
int lv_acct_db_oidc_user(lv_db_t *db, const char *iss, const char *sub, const char *preferred, bool may_link,
                         const char *tenant, lv_role_t role, bool claims_rule, lv_user_t *out);

/** Sign-ins: a new one for user_id; cookie_out gets the secret for the cookie (64 hex), login_out
 * what the snapshot keeps. */
int lv_acct_db_login_add(lv_db_t *db, const char *user_id, const char *ip, char cookie_out[LV_ACCT_SECRET_HEX],
                         lv_login_t *login_out);
int lv_acct_db_login_delete(lv_db_t *db, const char *hash);
int lv_acct_db_login_delete_user(lv_db_t *db, const char *user_id);

/** API keys: secret_out gets the whole key ("lvk_" + 64 hex), shown once. */
int lv_acct_db_key_add(lv_db_t *db, const char *user_id, const char *name, int scope, int64_t expires_ms,
                       char secret_out[LV_ACCT_SECRET_HEX + 8], lv_apikey_t *out);
int lv_acct_db_key_revoke(lv_db_t *db, const char *key_id);
int lv_acct_db_key_list(lv_db_t *db, const char *user_id /* NULL = all */, lv_apikey_t **out, size_t *n);
/** Write last-used times (batched by the loop, at most once a minute per key; no version bump). */
int lv_acct_db_key_touch(lv_db_t *db, const char *key_id, int64_t when_ms);

/** Tenants. */
int lv_acct_db_tenant_put(lv_db_t *db, const lv_tenant_t *t); /* insert or update by id */
int lv_acct_db_tenant_delete(lv_db_t *db, const char *id);    /* LV_EEXIST while it has users */
int lv_acct_db_tenant_list(lv_db_t *db, lv_tenant_t **out, size_t *n);

/* ---------- usage and audit ---------- */

typedef struct {
    char answer_id[LV_ACCT_ID_MAX];  /* unique: a replayed record is ignored (ON CONFLICT DO NOTHING) */
    int64_t t_ms;                    /* wall clock at the answer's end */
    char tenant[LV_ACCT_ID_MAX], user_id[LV_ACCT_ID_MAX], session_id[LV_ACCT_ID_MAX];
    char backend[65], model[129];
    int64_t image_bytes, prompt_tokens, completion_tokens, backend_ms;
    char outcome[16];                /* ok, error, cancelled, timeout */
} lv_usage_t;

/** Insert records in one transaction (idempotent per answer_id). */
int lv_acct_db_usage_add(lv_db_t *db, const lv_usage_t *u, size_t n);

typedef struct {
    int64_t from_ms, to_ms;          /* [from, to); 0 = open */
    char tenant[LV_ACCT_ID_MAX];     /* "" = any */
    char user_id[LV_ACCT_ID_MAX];    /* "" = any */
    char model[129];                 /* "" = any */
    size_t limit;                    /* rows, <= 100000 */
} lv_usage_filter_t;

int lv_acct_db_usage_query(lv_db_t *db, const lv_usage_filter_t *f, lv_usage_t **out, size_t *n);
/** Sums since since_ms per (scope) for the quota counters at start: answers and tokens of a user or
 * tenant (user_id or tenant "" = not filtered). */
int lv_acct_db_usage_sum(lv_db_t *db, const char *tenant, const char *user_id, int64_t since_ms, int64_t *answers,
                         int64_t *tokens);

typedef struct {
    int64_t t_ms;
    char actor[LV_ACCT_NAME_MAX];    /* user name, or "cli" */
    char ip[48];
    char action[48];                 /* user.add, user.disable, key.revoke, tenant.put, session.kick ... */
    char target[LV_ACCT_TEXT_MAX];
    char detail[256];
} lv_audit_t;

int lv_acct_db_audit_add(lv_db_t *db, const lv_audit_t *a);
int lv_acct_db_audit_list(lv_db_t *db, size_t limit, lv_audit_t **out, size_t *n);

/** Names and ids: 0 when valid. */
int lv_acct_check_name(const char *name);
int lv_acct_check_id(const char *id);
const char *lv_role_name(lv_role_t r);
int lv_role_parse(const char *s, lv_role_t *out);
/** SHA-256 of s as 64 hex digits. */
void lv_acct_sha256_hex(const char *s, size_t len, char out[LV_ACCT_HASH_HEX]);

#endif

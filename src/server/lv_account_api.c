/* lv_account_api.c - the signed-in person's own routes (lv_account_api.h): sign-in with a password
 * (or, with --auth token, the access token), sign-out here or everywhere, who am I, own API keys,
 * password change, invite redemption. Every database step runs on the database thread through
 * lv_accounts_submit_req; the request waits meanwhile and nothing here blocks the loop.
 *
 * Why the snapshot is touched here: a sign-in, sign-out or password change made by this process
 * is applied to the loop's snapshot in the job's done callback, so the very next request sees it
 * (docs/internals/accounts.md "The snapshot"). The snapshot has no call to add or revoke one key,
 * so after a key change the answer waits until a reload has installed a snapshot at least as new
 * as the write (settle below): a revoked key must not work once the page was told it is gone. */
#include "lv_account_api.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lv_accounts.h"
#include "lv_acct.h"
#include "lv_acctreq.h"
#include "lv_app.h"
#include "lv_auth.h"
#include "lv_common.h"
#include "lv_httputil.h"
#include "lv_iptable.h"
#include "lv_log.h"
#include "lv_rand.h"

#define RETRY_AFTER_S 60                /* both failure windows are a minute (lv_auth.h, lv_iptable.c) */
#define SETTLE_ROUNDS_MAX 20            /* database round trips waited for a reload after a key change */
#define KEYS_PREFIX "/api/v1/keys/"

enum { JOB_LOGIN, JOB_INVITE, JOB_LOGOUT, JOB_LOGOUT_ALL, JOB_PASSWD, JOB_KEYS, JOB_KEY_ADD, JOB_KEY_REVOKE };

/* One request's database work: inputs copied in on the loop, results written on the database
 * thread, read back in the done callback (which frees it, wiping the secrets). */
typedef struct {
    int kind;
    bool tls;                       /* the request came over TLS: the cookie gets Secure */
    char ip[64];
    lv_principal_t who;             /* the acting principal (zeroed for sign-in and invite) */
    char name[LV_ACCT_NAME_MAX];    /* sign-in name; password change: the user's full name */
    char pw[LV_ACCTREQ_PASSWORD_MAX + 1], pw_new[LV_ACCTREQ_PASSWORD_MAX + 1];
    char code[LV_ACCTREQ_CODE_LEN + 1];
    char hash[LV_ACCT_HASH_HEX];    /* the sign-in to end (logout) */
    char key_id[LV_ACCT_ID_MAX];
    lv_acctreq_key_t key_req;
    int64_t expires_ms;
    /* results */
    lv_user_t user;
    lv_login_t login;
    char cookie[LV_ACCT_SECRET_HEX];
    char secret[LV_ACCT_SECRET_HEX + 8];
    lv_apikey_t key;
    lv_apikey_t *keys;
    size_t n_keys;
    int64_t version;                /* meta.version after a key change */
    int rounds;
} job_t;

static void job_free(job_t *j)
{
    if (!j)
        return;
    free(j->keys);
    explicit_bzero(j, sizeof(*j)); /* passwords, the cookie and the key's secret */
    free(j);
}

/* ---------- answers ---------- */

static int respond_json(lv_req_t *r, int status, json_t *obj, const char *extra)
{
    char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    if (!text)
        return lv_req_respond_error(r, 500, "internal", "out of memory");
    int rc = lv_req_respond(r, status, "application/json", text, strlen(text), true, extra);
    explicit_bzero(text, strlen(text)); /* it may hold a csrf value or a new key */
    free(text);
    return rc;
}

/* {"error":{"code","message"[,"retry_after_s"]}}, with Retry-After when retry_s > 0. */
static int respond_err(lv_req_t *r, int status, const char *code, const char *message, int retry_s)
{
    char hdr[64] = "";
    json_t *err = json_pack("{s:s, s:s}", "code", code, "message", message);
    if (retry_s > 0 && err) {
        json_object_set_new(err, "retry_after_s", json_integer(retry_s));
        snprintf(hdr, sizeof(hdr), "retry-after: %d\r\n", retry_s);
    }
    return respond_json(r, status, err ? json_pack("{s:o}", "error", err) : NULL, hdr[0] ? hdr : NULL);
}

/* The address is over its failed sign-ins this minute. */
static int respond_rate_limited(lv_req_t *r)
{
    return respond_err(r, 429, "rate_limited", "too many failed sign-ins from this address; wait a minute",
                       RETRY_AFTER_S);
}

/* A wrong password or invite code: counted against the address, then 401 with what was wrong, or
 * 429 once this failure puts the address over its limit. */
static int respond_sign_in_failed(lv_app_t *app, lv_req_t *r, const char *code, const char *message)
{
    return lv_auth_failed(app, r->ip) == 429 ? respond_rate_limited(r) : respond_err(r, 401, code, message, 0);
}

/* What lv_auth_check refused, in its own words. */
static int respond_auth(lv_req_t *r, int status, const char *why)
{
    switch (status) {
    case 403:
        return respond_err(r, 403, "csrf", why ? why : "send the X-CSRF-Token header GET /api/v1/me gave", 0);
    case 429:
        return respond_err(r, 429, "rate_limited", "too many failed credentials from this address; wait a minute",
                           RETRY_AFTER_S);
    case 503:
        return respond_err(r, 503, "unavailable", why ? why : "try again in a moment", 0);
    default:
        return respond_err(r, 401, "unauthorized", why ? why : "sign in first", 0);
    }
}

static int respond_db_error(lv_req_t *r, int rc)
{
    LV_WARN("account route %s: database job failed: %s", r->path, lv_strerror(rc));
    return respond_err(r, 503, "db_unavailable", "the account database did not answer; try again", 0);
}

static const char *mode_name(lv_app_t *app) { return lv_config_auth_name(app->cfg.auth_mode); }

static bool oidc_on(lv_app_t *app) { return app->accts && app->cfg.oidc_issuer[0]; }

static json_t *user_json(const lv_user_t *u)
{
    return json_pack("{s:s, s:s, s:s, s:s}", "id", u->id, "name", u->name, "role", lv_role_name(u->role), "tenant",
                     u->tenant);
}

/* The principal a fresh sign-in acts as (for the audit record). */
static void principal_of(const lv_user_t *u, const char *csrf, lv_principal_t *p)
{
    memset(p, 0, sizeof(*p));
    snprintf(p->key, sizeof(p->key), "u:%s", u->id);
    snprintf(p->tenant, sizeof(p->tenant), "%s", u->tenant);
    snprintf(p->user_id, sizeof(p->user_id), "%s", u->id);
    /* a 64-byte name (LV_ACCT_NAME_MAX) loses its last byte here (LV_PRINCIPAL_KEY_MAX): audit only */
    snprintf(p->name, sizeof(p->name), "%.*s", (int)sizeof(p->name) - 1, u->name);
    p->role = u->role == LV_ROLE_ADMIN ? LV_PRINCIPAL_ADMIN : u->role == LV_ROLE_USER ? LV_PRINCIPAL_USER
                                                                                     : LV_PRINCIPAL_VIEWER;
    p->cred = LV_CRED_COOKIE;
    snprintf(p->csrf, sizeof(p->csrf), "%s", csrf ? csrf : "");
}

/* 200 {user, csrf} with a new sign-in cookie (password sign-in, invite, password change). */
static int respond_signed_in(lv_req_t *r, const job_t *j)
{
    char hdr[256];
    lv_auth_session_cookie(hdr, sizeof(hdr), j->tls, j->cookie, (long)(LV_ACCT_LOGIN_TTL_MS / 1000));
    int rc = respond_json(r, 200, json_pack("{s:o, s:s}", "user", user_json(&j->user), "csrf", j->login.csrf), hdr);
    explicit_bzero(hdr, sizeof(hdr));
    return rc;
}

static void put_login(lv_app_t *app, const lv_login_t *l)
{
    lv_acct_snap_t *snap = lv_accounts_snap(app);
    if (snap && lv_acct_snap_put_login(snap, l) != 0)
        LV_WARN("a new sign-in was stored but not added to the snapshot (out of memory); it works after the "
                "next reload");
}

static job_t *job_new(lv_req_t *r, int kind, const lv_principal_t *who)
{
    job_t *j = calloc(1, sizeof(*j));
    if (!j)
        return NULL;
    j->kind = kind;
    j->tls = r->tls;
    snprintf(j->ip, sizeof(j->ip), "%s", r->ip);
    if (who)
        j->who = *who;
    return j;
}

/* Queue j; on a refusal lv_accounts_submit_req has answered r (503) and j is freed here. */
static int submit(lv_app_t *app, lv_req_t *r, job_t *j, lv_db_work_fn work, lv_accounts_req_done_fn done)
{
    if (!j)
        return lv_req_respond_error(r, 500, "internal", "out of memory");
    int rc = lv_accounts_submit_req(app, r, work, done, j);
    if (rc)
        job_free(j);
    return rc;
}

/* ---------- database work (database thread) ---------- */

static int work_login(lv_db_t *db, void *ud)
{
    job_t *j = ud;
    int rc = lv_acct_db_check_password(db, j->name, j->pw, &j->user);
    explicit_bzero(j->pw, sizeof(j->pw));
    return rc ? rc : lv_acct_db_login_add(db, j->user.id, j->ip, j->cookie, &j->login);
}

static int work_invite(lv_db_t *db, void *ud)
{
    job_t *j = ud;
    int rc = lv_acct_db_redeem_invite(db, j->code, j->pw, &j->user);
    explicit_bzero(j->pw, sizeof(j->pw));
    return rc ? rc : lv_acct_db_login_add(db, j->user.id, j->ip, j->cookie, &j->login);
}

static int work_logout(lv_db_t *db, void *ud)
{
    job_t *j = ud;
    return j->kind == JOB_LOGOUT ? lv_acct_db_login_delete(db, j->hash) : lv_acct_db_login_delete_user(db, j->who.user_id);
}

/* The current password is checked like a sign-in (a stolen cookie must not be enough to take
 * the account over); every other sign-in of the user ends, and this one gets a new cookie. */
static int work_passwd(lv_db_t *db, void *ud)
{
    job_t *j = ud;
    int rc = lv_acct_db_check_password(db, j->name, j->pw, &j->user);
    explicit_bzero(j->pw, sizeof(j->pw));
    if (rc == 0 && strcmp(j->user.id, j->who.user_id) != 0)
        rc = LV_EAUTH; /* renamed since the sign-in: its name now names someone else */
    if (rc == 0)
        rc = lv_acct_db_user_set_password(db, j->user.id, j->pw_new);
    explicit_bzero(j->pw_new, sizeof(j->pw_new));
    if (rc == 0)
        rc = lv_acct_db_login_delete_user(db, j->user.id);
    if (rc == 0 && j->who.cred == LV_CRED_COOKIE)
        rc = lv_acct_db_login_add(db, j->user.id, j->ip, j->cookie, &j->login);
    return rc;
}

static int work_keys(lv_db_t *db, void *ud)
{
    job_t *j = ud;
    return lv_acct_db_key_list(db, j->who.user_id, &j->keys, &j->n_keys);
}

static int work_key_add(lv_db_t *db, void *ud)
{
    job_t *j = ud;
    int scope = LV_SCOPE_STREAM | (j->key_req.admin_scope ? LV_SCOPE_ADMIN : 0);
    int rc = lv_acct_db_key_add(db, j->who.user_id, j->key_req.name, scope, j->expires_ms, j->secret, &j->key);
    return rc ? rc : lv_acct_db_version(db, &j->version);
}

/* Own keys only: the key is looked for among the acting user's, so another user's id is
 * "no such key" (it says nothing about whether that id exists). */
static int work_key_revoke(lv_db_t *db, void *ud)
{
    job_t *j = ud;
    int rc = lv_acct_db_key_list(db, j->who.user_id, &j->keys, &j->n_keys);
    if (rc)
        return rc;
    const lv_apikey_t *k = NULL;
    for (size_t i = 0; i < j->n_keys && !k; i++)
        if (strcmp(j->keys[i].id, j->key_id) == 0)
            k = &j->keys[i];
    if (!k)
        return LV_ENOTFOUND;
    j->key = *k;
    if (!k->revoked && (rc = lv_acct_db_key_revoke(db, j->key_id)) != 0)
        return rc;
    return lv_acct_db_version(db, &j->version);
}

static int work_nothing(lv_db_t *db, void *ud)
{
    (void)db;
    (void)ud;
    return 0;
}

/* ---------- sign-in ---------- */

/* Answer a sign-in once the loop's snapshot knows its user: one made a moment ago (the CLI, an
 * invite, another frontend) is only there after the next reload, and until then the new cookie
 * would be refused as "this account was deleted". Reloads are asked for meanwhile, as in
 * settle_done; the reload loads the new sign-in from the database too. */
static void signin_settle_done(lv_app_t *app, lv_req_t *r, int rc, void *ud)
{
    job_t *j = ud;
    (void)rc;
    if (!r) {
        job_free(j);
        return;
    }
    lv_acct_snap_t *snap = lv_accounts_snap(app);
    if (snap && !lv_acct_snap_user(snap, j->user.id) && j->rounds++ < SETTLE_ROUNDS_MAX) {
        lv_accounts_reload(app);
        if (lv_accounts_submit_req(app, r, work_nothing, signin_settle_done, j) != 0)
            job_free(j); /* r was answered 503 */
        return;
    }
    respond_signed_in(r, j);
    job_free(j);
}

static void login_done(lv_app_t *app, lv_req_t *r, int rc, void *ud)
{
    job_t *j = ud;
    if (rc == LV_EAUTH) {
        /* counted even when the client left meanwhile: hanging up before the answer must not
         * buy password guesses (and argon2 CPU) past both limits */
        lv_auth_account_failed(app, j->name, lv_now_ms());
        LV_WARN("failed sign-in as %s from %s", j->name, j->ip);
        if (!r) {
            lv_auth_failed(app, j->ip);
            goto out;
        }
        respond_sign_in_failed(app, r, "bad_credentials", "wrong name or password");
        goto out;
    }
    if (!r)
        goto out;
    if (rc) {
        respond_db_error(r, rc);
        goto out;
    }
    put_login(app, &j->login);
    lv_principal_t p;
    principal_of(&j->user, j->login.csrf, &p);
    lv_accounts_audit(app, &p, r->ip, j->kind == JOB_INVITE ? "invite.redeem" : "login", j->user.name,
                      j->kind == JOB_INVITE ? "password set, signed in" : "password");
    LV_INFO("%s signed in from %s", j->user.name, r->ip);
    signin_settle_done(app, r, 0, j);
    return;
out:
    job_free(j);
}

/* --auth token / none: trade the access token for its cookie, as before accounts. The right
 * token always signs in, even from an address over its failures (see lv_auth_failed). */
static int login_token(lv_app_t *app, lv_req_t *r, const lv_acctreq_login_t *in)
{
    char hdr[256];
    const char *tok = in->has_token ? in->token : NULL;
    if (app->cfg.auth_none || (tok && lv_secure_equal(tok, strlen(tok), app->token, 64))) {
        lv_auth_token_cookie(app, hdr, sizeof(hdr), app->cfg.auth_none ? "none" : app->token, 30 * 86400);
        int rc = lv_req_respond(r, 204, NULL, "", 0, false, hdr);
        explicit_bzero(hdr, sizeof(hdr));
        return rc;
    }
    if (lv_auth_failed(app, r->ip) == 429)
        return lv_req_respond_error(r, 429, "rate_limited", "too many failed logins; wait a minute");
    LV_WARN("failed login from %s", r->ip);
    return lv_req_respond_error(r, 401, "bad_token", "wrong access token");
}

/* Limits before the password is even looked at (argon2id costs ~50 ms of CPU): the address's
 * failures this minute, then the account's. 0 when neither stops it (r is answered otherwise). */
static int password_gate(lv_app_t *app, lv_req_t *r, const char *name)
{
    uint64_t now = lv_now_ms();
    if (lv_iptable_login_blocked(app->ips, r->ip, now)) {
        respond_rate_limited(r);
        return LV_ELIMIT;
    }
    if (name && lv_auth_account_locked(app, name, now)) {
        respond_err(r, 429, "account_locked",
                    "too many wrong passwords for this account: its password sign-in is locked for a minute",
                    (int)(LV_AUTH_ACCOUNT_LOCK_MS / 1000));
        return LV_ELIMIT;
    }
    return 0;
}

static int api_login(lv_app_t *app, lv_req_t *r)
{
    lv_acctreq_login_t in;
    lv_acctreq_err_t err;
    int rc = lv_acctreq_login(r->body->data, r->body->len, &in, &err);
    if (!app->accts) {
        if (rc)
            memset(&in, 0, sizeof(in)); /* as before: an unreadable body is a missing token */
        rc = login_token(app, r, &in);
        goto out;
    }
    if (rc) {
        rc = respond_err(r, 400, err.code, err.message, 0);
        goto out;
    }
    if (!in.has_name || !in.has_password || !in.name[0] || !in.password[0]) {
        rc = respond_err(r, 400, "missing_field",
                         in.has_token ? "this server signs in with a name and a password, not the access token"
                                      : "enter your name and your password",
                         0);
        goto out;
    }
    if ((rc = password_gate(app, r, in.name)) != 0)
        goto out;
    if (lv_acct_check_name(in.name) != 0) {
        /* no such user can exist: answered at once, and counted like any wrong name */
        lv_auth_account_failed(app, in.name, lv_now_ms());
        rc = respond_sign_in_failed(app, r, "bad_credentials", "wrong name or password");
        goto out;
    }
    job_t *j = job_new(r, JOB_LOGIN, NULL);
    if (j) {
        snprintf(j->name, sizeof(j->name), "%s", in.name);
        memcpy(j->pw, in.password, sizeof(j->pw));
    }
    rc = submit(app, r, j, work_login, login_done);
out:
    explicit_bzero(&in, sizeof(in));
    return rc;
}

/* login_done answers a wrong invite code as a wrong password; say what it is instead. */
static void invite_done(lv_app_t *app, lv_req_t *r, int rc, void *ud)
{
    if (r && rc == LV_EAUTH) {
        respond_sign_in_failed(app, r, "bad_invite",
                               "this invite is wrong, already used or expired: ask for a new one");
        job_free(ud);
        return;
    }
    login_done(app, r, rc, ud);
}

static int api_invite(lv_app_t *app, lv_req_t *r)
{
    lv_acctreq_invite_t in;
    lv_acctreq_err_t err;
    int rc;
    if (!app->accts) {
        rc = respond_err(r, 404, "accounts_off", "invites need accounts (this server runs without them)", 0);
        goto out;
    }
    if ((rc = lv_acctreq_invite(r->body->data, r->body->len, &in, &err)) != 0) {
        rc = respond_err(r, 400, err.code, err.message, 0);
        goto out;
    }
    if ((rc = password_gate(app, r, NULL)) != 0)
        goto out;
    job_t *j = job_new(r, JOB_INVITE, NULL);
    if (j) {
        memcpy(j->code, in.code, sizeof(j->code));
        memcpy(j->pw, in.password, sizeof(j->pw));
    }
    rc = submit(app, r, j, work_invite, invite_done);
out:
    explicit_bzero(&in, sizeof(in));
    return rc;
}

/* ---------- sign-out ---------- */

static void logout_done(lv_app_t *app, lv_req_t *r, int rc, void *ud)
{
    job_t *j = ud;
    char hdr[160];
    lv_acct_snap_t *snap = lv_accounts_snap(app);
    if (rc == 0 && snap) { /* gone from the database: gone here too, even if the client left */
        if (j->kind == JOB_LOGOUT)
            lv_acct_snap_drop_login(snap, j->hash);
        else
            lv_acct_snap_drop_user_logins(snap, j->who.user_id);
        lv_accounts_check_conns(app); /* the pages of those sign-ins stop too */
    }
    if (rc == 0 && j->kind == JOB_LOGOUT_ALL)
        lv_accounts_audit(app, &j->who, j->ip, "logout.everywhere", j->who.name, "");
    if (!r)
        goto out;
    if (rc) {
        respond_db_error(r, rc);
        goto out;
    }
    lv_auth_session_cookie(hdr, sizeof(hdr), j->tls, "", 0);
    lv_req_respond(r, 204, NULL, "", 0, false, hdr);
out:
    job_free(j);
}

static bool query_flag(const char *query, const char *name)
{
    char v[8];
    return lv_query_get(query, name, v, sizeof(v)) == 0 && strcmp(v, "0") != 0 && strcmp(v, "false") != 0;
}

static int api_logout(lv_app_t *app, lv_req_t *r)
{
    char hdr[160], cookies[1024], secret[LV_ACCT_SECRET_HEX + 8];
    if (!app->accts) { /* as before accounts: forget the token's cookie */
        lv_auth_token_cookie(app, hdr, sizeof(hdr), "", 0);
        return lv_req_respond(r, 204, NULL, "", 0, false, hdr);
    }
    lv_principal_t who;
    const char *why = NULL;
    int st = lv_auth_check(app, r, &who, &why);
    bool everywhere = query_flag(r->query, "everywhere");
    if (st == 403 || st == 503 || (everywhere && st))
        return respond_auth(r, st, why);
    if (everywhere) {
        if (!who.user_id[0])
            return respond_err(r, 400, "no_account", "this credential belongs to no account", 0);
        return submit(app, r, job_new(r, JOB_LOGOUT_ALL, &who), work_logout, logout_done);
    }
    /* this sign-in: the cookie's own, when it is one; anything else just loses the cookie */
    if (st == 0 && who.cred == LV_CRED_COOKIE &&
        lv_http1_header_copy(r->head, "cookie", cookies, sizeof(cookies)) == 0 &&
        lv_cookie_get(cookies, LV_AUTH_SESSION_COOKIE, secret, sizeof(secret)) == 0 && secret[0]) {
        job_t *j = job_new(r, JOB_LOGOUT, &who);
        if (j)
            lv_acct_sha256_hex(secret, strlen(secret), j->hash);
        explicit_bzero(secret, sizeof(secret));
        explicit_bzero(cookies, sizeof(cookies));
        return submit(app, r, j, work_logout, logout_done);
    }
    explicit_bzero(cookies, sizeof(cookies));
    lv_auth_session_cookie(hdr, sizeof(hdr), r->tls, "", 0);
    return lv_req_respond(r, 204, NULL, "", 0, false, hdr);
}

/* ---------- who am I ---------- */

/* Without accounts there is nobody to name: the page only learns the mode (and, with a token,
 * whether it holds it); 200 either way, so a token-mode page asks without a failed request. */
static int api_me(lv_app_t *app, lv_req_t *r)
{
    lv_principal_t who;
    const char *why = NULL;
    int st = lv_auth_check(app, r, &who, &why);
    if (!app->accts) {
        json_t *o = json_pack("{s:b, s:n, s:{s:s, s:s}, s:s, s:s, s:s, s:b}", "signed_in", st == 0, "user", "tenant",
                              "id", LV_ACCT_DEFAULT_TENANT, "name", LV_ACCT_DEFAULT_TENANT, "role",
                              st == 0 ? "admin" : "", "csrf", "", "auth_mode", mode_name(app), "oidc", 0);
        return respond_json(r, 200, o, NULL);
    }
    if (st == 401) {
        /* the page's cue to go to /login; it also says whether single sign-on is offered there */
        json_t *o = json_pack("{s:{s:s, s:s}, s:s, s:b}", "error", "code", "unauthorized", "message",
                              why ? why : "sign in first", "auth_mode", mode_name(app), "oidc", oidc_on(app));
        return respond_json(r, 401, o, NULL);
    }
    if (st)
        return respond_auth(r, st, why);
    lv_acct_snap_t *snap = lv_accounts_snap(app);
    const lv_user_t *u = snap && who.user_id[0] ? lv_acct_snap_user(snap, who.user_id) : NULL;
    const lv_tenant_t *t = snap ? lv_acct_snap_tenant(snap, who.tenant) : NULL;
    static const char *const roles[] = {"viewer", "user", "admin"};
    const char *role = who.role >= 0 && who.role <= 2 ? roles[who.role] : "viewer";
    static const char *const creds[] = {"token", "cookie", "api_key", "jwt", "proxy"};
    const char *cred = who.cred >= 0 && who.cred <= 4 ? creds[who.cred] : "token";
    json_t *user = u ? user_json(u)
                     : json_pack("{s:s, s:s, s:s, s:s}", "id", who.user_id, "name", who.name, "role", role, "tenant",
                                 who.tenant);
    json_t *o = json_pack("{s:b, s:o, s:{s:s, s:s}, s:s, s:s, s:s, s:s, s:b}", "signed_in", 1, "user", user, "tenant",
                          "id", who.tenant, "name", t ? t->name : who.tenant, "role", role, "credential", cred, "csrf",
                          who.cred == LV_CRED_COOKIE ? who.csrf : "", "auth_mode", mode_name(app), "oidc",
                          oidc_on(app));
    return respond_json(r, 200, o, NULL);
}

/* ---------- password ---------- */

static void passwd_done(lv_app_t *app, lv_req_t *r, int rc, void *ud)
{
    job_t *j = ud;
    lv_acct_snap_t *snap = lv_accounts_snap(app);
    if (rc == 0) {
        if (snap) {
            lv_acct_snap_drop_user_logins(snap, j->user.id);
            if (j->who.cred == LV_CRED_COOKIE) {
                put_login(app, &j->login);
                lv_accounts_conns_relogin(app, j->who.login_hash, j->login.hash); /* this page goes on */
            }
            lv_accounts_check_conns(app);
        }
        lv_accounts_audit(app, &j->who, j->ip, "password.change", j->name, "other sign-ins ended");
    }
    if (rc == LV_EAUTH) {
        lv_auth_account_failed(app, j->name, lv_now_ms()); /* counted even if the client left */
        if (!r) {
            lv_auth_failed(app, j->ip);
            goto out;
        }
        if (lv_auth_failed(app, r->ip) == 429)
            respond_err(r, 429, "rate_limited", "too many failed credentials from this address; wait a minute",
                        RETRY_AFTER_S);
        else
            respond_err(r, 403, "wrong_password", "the current password is wrong", 0);
    } else if (!r) {
        goto out;
    } else if (rc) {
        respond_db_error(r, rc);
    } else if (j->who.cred == LV_CRED_COOKIE) {
        respond_signed_in(r, j); /* the new cookie and csrf: the old ones ended with the others */
    } else {
        lv_req_respond(r, 204, NULL, "", 0, false, NULL);
    }
out:
    job_free(j);
}

/* The acting user, or an answer saying why there is none (r answered, false returned). */
static bool need_user(lv_app_t *app, lv_req_t *r, lv_principal_t *who)
{
    const char *why = NULL;
    if (!app->accts) {
        respond_err(r, 404, "accounts_off", "this needs accounts (the server runs with --auth token or none)", 0);
        return false;
    }
    int st = lv_auth_check(app, r, who, &why);
    if (st) {
        respond_auth(r, st, why);
        return false;
    }
    if (!who->user_id[0]) {
        respond_err(r, 403, "no_account", "this credential belongs to no account", 0);
        return false;
    }
    return true;
}

static int api_password(lv_app_t *app, lv_req_t *r)
{
    lv_principal_t who;
    lv_acctreq_passwd_t in;
    lv_acctreq_err_t err;
    int rc = 0;
    memset(&in, 0, sizeof(in));
    if (!need_user(app, r, &who))
        goto out;
    if (who.cred == LV_CRED_APIKEY || who.cred == LV_CRED_JWT) {
        rc = respond_err(r, 403, "sign_in_needed", "sign in to change the password (an API key or bearer token cannot)",
                         0);
        goto out;
    }
    if ((rc = lv_acctreq_passwd(r->body->data, r->body->len, &in, &err)) != 0) {
        rc = respond_err(r, 400, err.code, err.message, 0);
        goto out;
    }
    /* the login name as the account has it (the snapshot is what the password is checked against) */
    lv_acct_snap_t *snap = lv_accounts_snap(app);
    const lv_user_t *u = snap ? lv_acct_snap_user(snap, who.user_id) : NULL;
    if (!u) {
        rc = respond_err(r, 503, "unavailable", "your account is not loaded yet; try again in a moment", 0);
        goto out;
    }
    if ((rc = password_gate(app, r, u->name)) != 0)
        goto out;
    job_t *j = job_new(r, JOB_PASSWD, &who);
    if (j) {
        snprintf(j->name, sizeof(j->name), "%s", u->name);
        memcpy(j->pw, in.current, sizeof(j->pw));
        memcpy(j->pw_new, in.new_password, sizeof(j->pw_new));
    }
    rc = submit(app, r, j, work_passwd, passwd_done);
out:
    explicit_bzero(&in, sizeof(in));
    return rc;
}

/* ---------- API keys ---------- */

static json_t *key_json(const lv_apikey_t *k)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:I, s:b}", "id", k->id, "name", k->name, "prefix", k->prefix, "scope",
                          (k->scope & LV_SCOPE_ADMIN) ? "admin" : "stream", "created_ms", (json_int_t)k->created_ms,
                          "revoked", k->revoked);
    if (o) {
        json_object_set_new(o, "expires_ms", k->expires_ms ? json_integer(k->expires_ms) : json_null());
        json_object_set_new(o, "last_used_ms", k->last_used_ms ? json_integer(k->last_used_ms) : json_null());
    }
    return o;
}

static void keys_done(lv_app_t *app, lv_req_t *r, int rc, void *ud)
{
    job_t *j = ud;
    (void)app;
    if (!r)
        goto out;
    if (rc) {
        respond_db_error(r, rc);
        goto out;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < j->n_keys && arr; i++)
        json_array_append_new(arr, key_json(&j->keys[i]));
    respond_json(r, 200, arr ? json_pack("{s:o}", "keys", arr) : NULL, NULL);
out:
    job_free(j);
}

/* Answer a key change once the loop's snapshot is at least as new as the write (see the top of
 * the file), asking for reloads meanwhile; after SETTLE_ROUNDS_MAX round trips it answers anyway
 * (the once-a-second poll installs it shortly). */
static void settle_done(lv_app_t *app, lv_req_t *r, int rc, void *ud)
{
    job_t *j = ud;
    (void)rc;
    if (!r) {
        job_free(j);
        return;
    }
    lv_acct_snap_t *snap = lv_accounts_snap(app);
    if (snap && lv_acct_snap_version(snap) < j->version && j->rounds++ < SETTLE_ROUNDS_MAX) {
        /* the reload job (version and load in one) runs before this empty one, and its done
         * installs the snapshot before ours runs: one round is enough unless a poll was already
         * queued before the write */
        lv_accounts_reload(app);
        if (lv_accounts_submit_req(app, r, work_nothing, settle_done, j) != 0)
            job_free(j); /* r was answered 503 */
        return;
    }
    if (j->rounds > SETTLE_ROUNDS_MAX)
        LV_WARN("a key change was answered before the snapshot caught up (version %lld)", (long long)j->version);
    if (j->kind == JOB_KEY_ADD) {
        json_t *o = key_json(&j->key);
        if (o)
            json_object_set_new(o, "key", json_string(j->secret));
        respond_json(r, 201, o, NULL);
    } else {
        lv_req_respond(r, 204, NULL, "", 0, false, NULL);
    }
    job_free(j);
}

static void key_change_done(lv_app_t *app, lv_req_t *r, int rc, void *ud)
{
    job_t *j = ud;
    if (rc == 0)
        lv_accounts_audit(app, &j->who, j->ip, j->kind == JOB_KEY_ADD ? "key.add" : "key.revoke", j->key.id,
                          j->kind == JOB_KEY_ADD ? ((j->key.scope & LV_SCOPE_ADMIN) ? "scope admin" : "scope stream")
                                                 : j->key.name);
    if (r && rc == LV_ENOTFOUND) {
        respond_err(r, 404, "no_such_key", "you have no API key with this id", 0);
        job_free(j);
        return;
    }
    if (r && rc) {
        respond_db_error(r, rc);
        job_free(j);
        return;
    }
    settle_done(app, r, 0, j);
}

static int api_keys(lv_app_t *app, lv_req_t *r)
{
    lv_principal_t who;
    lv_acctreq_err_t err;
    if (!need_user(app, r, &who))
        return 0;
    if (!r->is_post)
        return submit(app, r, job_new(r, JOB_KEYS, &who), work_keys, keys_done);
    /* a leaked key must not be able to outlive its own expiry or revocation by minting more, nor a
     * bearer JWT outlive its exp: keys are made by a person signed in with a cookie */
    if (who.cred == LV_CRED_APIKEY || who.cred == LV_CRED_JWT)
        return respond_err(r, 403, "sign_in_needed",
                           "sign in to create API keys (an API key or a bearer token cannot make more)", 0);
    job_t *j = job_new(r, JOB_KEY_ADD, &who);
    if (!j)
        return lv_req_respond_error(r, 500, "internal", "out of memory");
    if (lv_acctreq_key(r->body->data, r->body->len, &j->key_req, &err) != 0) {
        job_free(j);
        return respond_err(r, 400, err.code, err.message, 0);
    }
    if (j->key_req.admin_scope && who.role != LV_PRINCIPAL_ADMIN) {
        job_free(j);
        return respond_err(r, 403, "forbidden", "only an admin may create a key with the admin scope", 0);
    }
    j->expires_ms = j->key_req.expires_days ? (int64_t)lv_wall_ms() + (int64_t)j->key_req.expires_days * 86400000 : 0;
    return submit(app, r, j, work_key_add, key_change_done);
}

/* POST /api/v1/keys/<id>/revoke */
static int api_key_revoke(lv_app_t *app, lv_req_t *r)
{
    lv_principal_t who;
    char id[LV_ACCT_ID_MAX];
    const char *p = r->path + strlen(KEYS_PREFIX), *slash = strchr(p, '/');
    size_t n = slash ? (size_t)(slash - p) : 0;
    if (!slash || strcmp(slash, "/revoke") != 0 || n == 0 || n >= sizeof(id))
        return respond_err(r, 404, "not_found", "no such API route (POST /api/v1/keys/<id>/revoke)", 0);
    memcpy(id, p, n);
    id[n] = '\0';
    if (!r->is_post)
        return respond_err(r, 405, "method_not_allowed", "revoke a key with POST", 0);
    if (!need_user(app, r, &who))
        return 0;
    if (lv_acct_check_id(id) != 0)
        return respond_err(r, 404, "no_such_key", "you have no API key with this id", 0);
    job_t *j = job_new(r, JOB_KEY_REVOKE, &who);
    if (j)
        snprintf(j->key_id, sizeof(j->key_id), "%s", id);
    return submit(app, r, j, work_key_revoke, key_change_done);
}

/* ---------- routing ---------- */

static const struct {
    const char *path;
    bool post; /* the method it takes: POST, else GET (and HEAD) */
    int (*fn)(lv_app_t *app, lv_req_t *r);
} routes[] = {
    {"/api/v1/login", true, api_login},       {"/api/v1/logout", true, api_logout},
    {"/api/v1/me", false, api_me},            {"/api/v1/password", true, api_password},
    {"/api/v1/invite", true, api_invite},
};

bool lv_account_api_route(const char *path)
{
    for (size_t i = 0; i < LV_ARRAY_LEN(routes); i++)
        if (strcmp(path, routes[i].path) == 0)
            return true;
    return strcmp(path, "/api/v1/keys") == 0 || strncmp(path, KEYS_PREFIX, strlen(KEYS_PREFIX)) == 0;
}

int lv_account_api_handle(lv_app_t *app, lv_req_t *r)
{
    if (strcmp(r->path, "/api/v1/keys") == 0)
        return api_keys(app, r);
    if (strncmp(r->path, KEYS_PREFIX, strlen(KEYS_PREFIX)) == 0)
        return api_key_revoke(app, r);
    for (size_t i = 0; i < LV_ARRAY_LEN(routes); i++) {
        if (strcmp(r->path, routes[i].path) != 0)
            continue;
        if (routes[i].post != r->is_post) {
            json_t *o = json_pack("{s:{s:s, s:s}}", "error", "code", "method_not_allowed", "message",
                                  routes[i].post ? "this route takes POST" : "this route takes GET");
            return respond_json(r, 405, o, routes[i].post ? "allow: POST\r\n" : "allow: GET, HEAD\r\n");
        }
        return routes[i].fn(app, r);
    }
    return lv_req_respond_error(r, 404, "not_found", "no such API route");
}

/* lv_auth.c - the access token (a file in the config dir), credential checks and the principal
 * they make (lv_auth.h; docs/internals/accounts.md "Credentials"), and the per-account password
 * failure table. The per-address counters are lv_iptable.c's, keyed on the request's client
 * address (behind a trusted proxy the forwarded one, so one client's failures do not block the
 * proxy's others). */
#include "lv_auth.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lv_accounts.h"
#include "lv_acct.h"
#include "lv_app.h"
#include "lv_common.h"
#include "lv_http1.h"
#include "lv_httputil.h"
#include "lv_iptable.h"
#include "lv_log.h"
#include "lv_net.h"
#include "lv_oidc.h"
#include "lv_principal.h"
#include "lv_queue.h"
#include "lv_rand.h"

int lv_auth_ensure_dir(const char *dir)
{
    char tmp[512];
    snprintf(tmp, sizeof(tmp), "%s", dir);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0700) && errno != EEXIST)
                return LV_EIO;
            *p = '/';
        }
    }
    if (mkdir(tmp, 0700) && errno != EEXIST)
        return LV_EIO;
    return 0;
}

static int write_token(const char *path, const char *token)
{
    char tmp[700];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return LV_EIO;
    size_t n = strlen(token);
    int ok = write(fd, token, n) == (ssize_t)n && write(fd, "\n", 1) == 1;
    ok = (close(fd) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return LV_EIO;
    }
    return 0;
}

int lv_auth_rotate_token(const char *config_dir, char out[65])
{
    char path[600];
    int rc = lv_auth_ensure_dir(config_dir);
    if (rc)
        return rc;
    snprintf(path, sizeof(path), "%s/token", config_dir);
    if ((rc = lv_rand_hex(out, 65, 32)) != 0)
        return rc;
    return write_token(path, out);
}

int lv_auth_load_token(const char *config_dir, char out[65], bool *created)
{
    char path[600];
    *created = false;
    snprintf(path, sizeof(path), "%s/token", config_dir);
    FILE *f = fopen(path, "r");
    if (f) {
        char line[128] = {0};
        char *got = fgets(line, sizeof(line), f);
        fclose(f);
        size_t n = got ? strcspn(line, "\r\n") : 0;
        line[n] = '\0';
        int hex = n == 64;
        for (size_t i = 0; hex && i < n; i++)
            hex = (line[i] >= '0' && line[i] <= '9') || (line[i] >= 'a' && line[i] <= 'f');
        if (hex) {
            memcpy(out, line, 65);
            return 0;
        }
        LV_WARN("%s does not hold a 64-hex-digit token; writing a new one", path);
    }
    *created = true;
    return lv_auth_rotate_token(config_dir, out);
}

/* Every failed credential counts the same, wherever it was presented (Bearer header on the API or
 * the WebSocket upgrade, cookie, login form, ?token= link): after LOGIN_FAILS_PER_MIN
 * (lv_iptable.c) in a minute the address gets 429 for its failures. A request with the right
 * credential still passes: tokens, keys and cookies are 256 random bits, so the limit is not what
 * stops guessing (2^256 tries do); it keeps noise out of the log and the CPU spent on hopeless
 * tries bounded, and it must not let anyone lock a legitimate user out by failing on purpose from
 * the same (NAT) address. */
int lv_auth_failed(lv_app_t *app, const char *ip)
{
    uint64_t now = lv_now_ms();
    if (lv_iptable_login_blocked(app->ips, ip, now))
        return 429;
    lv_iptable_login_failed(app->ips, ip, now);
    return 401;
}

/* ---------- principals ---------- */

/* The shared token's holder (--auth token, none): told apart by its address, charged to the
 * default tenant, and an admin, since the token could always do everything. */
static void token_principal(const char *ip, lv_principal_t *who)
{
    memset(who, 0, sizeof(*who));
    snprintf(who->key, sizeof(who->key), "%s", ip);
    snprintf(who->tenant, sizeof(who->tenant), "%s", LV_ACCT_DEFAULT_TENANT);
    who->role = LV_PRINCIPAL_ADMIN;
    who->cred = LV_CRED_TOKEN;
}

/* An account's principal. A credential narrows the role, never widens it: an API key without the
 * admin scope acts as a user even for an admin. */
static void user_principal(const lv_user_t *u, int cred, int max_role, const char *csrf, lv_principal_t *who)
{
    memset(who, 0, sizeof(*who));
    snprintf(who->key, sizeof(who->key), "u:%s", u->id);
    snprintf(who->tenant, sizeof(who->tenant), "%s", u->tenant);
    snprintf(who->user_id, sizeof(who->user_id), "%s", u->id);
    /* names are up to 64 characters, the principal keeps 63: for logs and pages only */
    snprintf(who->name, sizeof(who->name), "%.*s", (int)sizeof(who->name) - 1, u->name);
    who->role = (int)u->role < max_role ? (int)u->role : max_role;
    who->cred = cred;
    if (csrf)
        snprintf(who->csrf, sizeof(who->csrf), "%s", csrf);
}

/* ---------- the credentials, one function each ---------- */

/* What a credential check found: the principal, or why not. */
typedef enum { CRED_NONE = 0, CRED_OK = 1, CRED_BAD = -1, CRED_LATER = -2 } cred_t;

/* 1 when s looks like a JWT (RFC 7519 compact form): three non-empty base64url parts. A bearer that
 * is not one is never sent to the JWKS verifier. */
static bool looks_like_jwt(const char *s)
{
    size_t dots = 0, part = 0;
    for (const char *p = s; *p; p++) {
        if (*p == '.') {
            if (part == 0 || ++dots > 2)
                return false;
            part = 0;
            continue;
        }
        bool b64u = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
                    *p == '_';
        if (!b64u)
            return false;
        part++;
    }
    return dots == 2 && part > 0;
}

static bool is_hex64(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
            return false;
    return n == 64;
}

/* Authorization: Bearer lvk_<64 hex>. Looked up by its SHA-256: the snapshot holds no secret. */
static cred_t apikey_cred(lv_app_t *app, const char *tok, lv_principal_t *who, const char **why)
{
    lv_acct_snap_t *snap = lv_accounts_snap(app);
    char hash[LV_ACCT_HASH_HEX];
    size_t plen = strlen(LV_ACCT_KEY_PREFIX);
    if (!snap || !is_hex64(tok + plen)) {
        *why = "this is not an API key (lvk_ and 64 hex digits)";
        return CRED_BAD;
    }
    lv_acct_sha256_hex(tok, strlen(tok), hash);
    const lv_apikey_t *k = lv_acct_snap_key(snap, hash);
    if (!k) {
        *why = "unknown or revoked API key";
        return CRED_BAD;
    }
    if (k->revoked) {
        *why = "this API key was revoked";
        return CRED_BAD;
    }
    if (k->expires_ms > 0 && (int64_t)lv_wall_ms() >= k->expires_ms) {
        *why = "this API key has expired";
        return CRED_BAD;
    }
    const lv_user_t *u = lv_acct_snap_user(snap, k->user_id);
    if (!u) {
        *why = "the user of this API key was deleted";
        return CRED_BAD;
    }
    if (u->disabled) {
        *why = "the user of this API key is disabled";
        return CRED_BAD;
    }
    user_principal(u, LV_CRED_APIKEY, (k->scope & LV_SCOPE_ADMIN) ? LV_PRINCIPAL_ADMIN : LV_PRINCIPAL_USER, NULL, who);
    snprintf(who->key_id, sizeof(who->key_id), "%s", k->id);
    lv_auth_keyuse_record(lv_accounts_keyuse(app), k->id, (int64_t)lv_wall_ms());
    return CRED_OK;
}

/* Cookie livevlm_session=<64 hex>: a sign-in (password, invite or OpenID Connect). */
static cred_t session_cred(lv_app_t *app, const char *secret, lv_principal_t *who, const char **why)
{
    lv_acct_snap_t *snap = lv_accounts_snap(app);
    char hash[LV_ACCT_HASH_HEX];
    if (!snap || !is_hex64(secret)) {
        *why = "the sign-in cookie is malformed; sign in again";
        return CRED_BAD;
    }
    lv_acct_sha256_hex(secret, 64, hash);
    const lv_login_t *l = lv_acct_snap_login(snap, hash);
    if (!l) {
        *why = "this sign-in has ended (signed out, or unknown); sign in again";
        return CRED_BAD;
    }
    if (l->expires_ms > 0 && (int64_t)lv_wall_ms() >= l->expires_ms) {
        *why = "this sign-in has expired; sign in again";
        return CRED_BAD;
    }
    const lv_user_t *u = lv_acct_snap_user(snap, l->user_id);
    if (!u || u->disabled) {
        *why = u ? "this account is disabled" : "this account was deleted";
        return CRED_BAD;
    }
    user_principal(u, LV_CRED_COOKIE, LV_PRINCIPAL_ADMIN, l->csrf, who);
    snprintf(who->login_hash, sizeof(who->login_hash), "%s", l->hash);
    return CRED_OK;
}

/* The TCP peer of r is a --trusted-proxy (the address it forwarded is r->ip; the peer is not). */
static bool from_trusted_proxy(const lv_app_t *app, const lv_req_t *r)
{
    unsigned char peer[16];
    const char *ip = r->sock ? r->sock->ip : r->ip;
    return app->cfg.n_trusted_proxies > 0 && lv_ip_parse(ip, strlen(ip), peer) == 0 &&
           lv_ipnet_contains(app->cfg.trusted_proxies, app->cfg.n_trusted_proxies, peer);
}

/* --auth proxy: the user name in the proxy's header, when r came from a trusted proxy and carries
 * one. 0, LV_ENOTFOUND (no header, or not from a trusted proxy: then the header is nobody's word),
 * LV_EINVAL (not a valid user name). */
static int proxy_user_name(const lv_app_t *app, const lv_req_t *r, char name[LV_ACCT_NAME_MAX])
{
    if (app->cfg.auth_mode != LV_AUTH_PROXY || !from_trusted_proxy(app, r))
        return LV_ENOTFOUND;
    int rc = lv_http1_header_copy(r->head, app->cfg.auth_proxy_header, name, LV_ACCT_NAME_MAX);
    if (rc == LV_ENOTFOUND)
        return rc;
    if (rc != 0 || lv_acct_check_name(name) != 0)
        return LV_EINVAL;
    return 0;
}

static cred_t proxy_cred(lv_app_t *app, const lv_req_t *r, lv_principal_t *who, const char **why)
{
    char name[LV_ACCT_NAME_MAX];
    int rc = proxy_user_name(app, r, name);
    if (rc == LV_ENOTFOUND)
        return CRED_NONE;
    if (rc) {
        *why = "the proxy's user header names no valid user name";
        return CRED_BAD;
    }
    lv_acct_snap_t *snap = lv_accounts_snap(app);
    const lv_user_t *u = snap ? lv_acct_snap_user_by_name(snap, name) : NULL;
    if (!u) {
        *why = "the user named by the proxy is not set up yet; try again";
        return CRED_LATER;
    }
    if (u->disabled) {
        *why = "this account is disabled";
        return CRED_BAD;
    }
    user_principal(u, LV_CRED_PROXY, LV_PRINCIPAL_ADMIN, NULL, who);
    return CRED_OK;
}

/* Accounts (--auth accounts, proxy): the credentials in docs/internals/accounts.md's order. */
static cred_t accounts_cred(lv_app_t *app, const lv_req_t *r, lv_principal_t *who, const char **why)
{
    char hdr[LV_HTTP_MAX_HEAD_BYTES], tok[LV_HTTP_MAX_HEAD_BYTES];
    int rc = lv_http1_header_copy(r->head, "authorization", hdr, sizeof(hdr));
    if (rc != LV_ENOTFOUND) {
        if (rc != 0 || lv_bearer_get(hdr, tok, sizeof(tok)) != 0) {
            *why = "the Authorization header must be Bearer followed by an API key or token";
            return CRED_BAD;
        }
        if (strncmp(tok, LV_ACCT_KEY_PREFIX, strlen(LV_ACCT_KEY_PREFIX)) == 0)
            return apikey_cred(app, tok, who, why);
        if (looks_like_jwt(tok)) {
            rc = lv_oidc_verify_bearer(app, tok, who, why);
            if (rc == LV_EAGAIN)
                return CRED_LATER;
            if (rc == 0)
                who->cred = LV_CRED_JWT;
            return rc == 0 ? CRED_OK : CRED_BAD;
        }
        *why = "the bearer credential is neither an API key (lvk_...) nor a JWT";
        return CRED_BAD;
    }
    char secret[80];
    rc = lv_http1_header_copy(r->head, "cookie", hdr, sizeof(hdr));
    if (rc == 0 && (rc = lv_cookie_get(hdr, LV_AUTH_SESSION_COOKIE, secret, sizeof(secret))) != LV_ENOTFOUND) {
        if (rc == 0 && secret[0] == '\0')
            rc = LV_ENOTFOUND; /* an emptied cookie (after sign-out) is no credential */
        else if (rc != 0) {
            *why = "the sign-in cookie is malformed; sign in again";
            return CRED_BAD;
        } else
            return session_cred(app, secret, who, why);
    }
    return proxy_cred(app, r, who, why);
}

/* --auth token: the shared token, as a Bearer header or the livevlm_auth cookie. */
static cred_t token_cred(lv_app_t *app, const lv_req_t *r, const char **why)
{
    char hdr[1024], tok[128];
    bool presented = false;
    int rc = lv_http1_header_copy(r->head, "authorization", hdr, sizeof(hdr));
    if (rc != LV_ENOTFOUND) {
        presented = true;
        if (rc == 0 && lv_bearer_get(hdr, tok, sizeof(tok)) == 0 && lv_secure_equal(tok, strlen(tok), app->token, 64))
            return CRED_OK;
    }
    rc = lv_http1_header_copy(r->head, "cookie", hdr, sizeof(hdr));
    if (rc == 0 && (rc = lv_cookie_get(hdr, LV_AUTH_TOKEN_COOKIE, tok, sizeof(tok))) != LV_ENOTFOUND) {
        if (rc == 0 && lv_secure_equal(tok, strlen(tok), app->token, 64))
            return CRED_OK;
        if (rc != 0 || tok[0]) /* an emptied cookie (after logout) is no credential */
            presented = true;
    } else if (rc == LV_ELIMIT) {
        presented = true; /* a Cookie header over 1 KiB: nothing of ours is that long */
    }
    *why = "wrong access token";
    return presented ? CRED_BAD : CRED_NONE;
}

/* A state change signed in with the ambient cookie must prove the page that sent it read
 * GET /api/v1/me (double submit): a page of another site cannot read it, so cannot send it.
 * Bearer credentials are never sent by a browser on its own and need none. */
static bool csrf_ok(const lv_req_t *r, const lv_principal_t *who)
{
    char got[80];
    if (!r->is_post || who->cred != LV_CRED_COOKIE)
        return true;
    return lv_http1_header_copy(r->head, "x-csrf-token", got, sizeof(got)) == 0 && who->csrf[0] &&
           lv_secure_equal(got, strlen(got), who->csrf, strlen(who->csrf));
}

int lv_auth_check(lv_app_t *app, const lv_req_t *r, lv_principal_t *who, const char **why)
{
    lv_principal_t tmp;
    const char *tmp_why = NULL;
    if (!who)
        who = &tmp;
    if (!why)
        why = &tmp_why;
    *why = NULL;
    cred_t c;
    switch (app->cfg.auth_mode) {
    case LV_AUTH_NONE:
        token_principal(r->ip, who);
        return 0;
    case LV_AUTH_TOKEN:
        c = token_cred(app, r, why);
        if (c == CRED_OK)
            token_principal(r->ip, who);
        break;
    default:
        c = accounts_cred(app, r, who, why);
        break;
    }
    switch (c) {
    case CRED_OK:
        if (!csrf_ok(r, who)) {
            *why = "a signed-in POST must carry the X-CSRF-Token header (its value comes from GET /api/v1/me)";
            return 403;
        }
        return 0;
    case CRED_LATER:
        return 503;
    case CRED_BAD:
        if (app->cfg.auth_mode != LV_AUTH_TOKEN)
            LV_INFO("refused a credential from %s: %s", r->ip, *why);
        return lv_auth_failed(app, r->ip);
    default:
        *why = app->cfg.auth_mode == LV_AUTH_TOKEN ? "log in with the access token printed by the server"
                                                   : "sign in, or send an API key (Authorization: Bearer lvk_...)";
        return 401;
    }
}

void lv_auth_session_cookie(char *out, size_t size, bool tls, const char *secret, long max_age_s)
{
    snprintf(out, size, "set-cookie: " LV_AUTH_SESSION_COOKIE "=%s; Path=/; HttpOnly; SameSite=Lax; Max-Age=%ld%s\r\n",
             secret, max_age_s, tls ? "; Secure" : "");
}

void lv_auth_token_cookie(const lv_app_t *app, char *out, size_t size, const char *token, int max_age_s)
{
    snprintf(out, size, "set-cookie: " LV_AUTH_TOKEN_COOKIE "=%s; Path=/; HttpOnly; SameSite=Strict; Max-Age=%d%s\r\n",
             token, max_age_s, app->cfg.tls ? "; Secure" : "");
}

void lv_auth_principal(lv_app_t *app, const lv_req_t *r, lv_principal_t *out)
{
    if (lv_auth_check(app, r, out, NULL) != 0)
        token_principal(r->ip, out); /* only called after a passed check; never an account's */
}

/* ---------- --auth proxy: a user seen for the first time ---------- */

typedef struct {
    char name[LV_ACCT_NAME_MAX];
    lv_acct_snap_t *snap; /* built after the user exists, installed on the loop */
    void (*again)(lv_app_t *app, lv_req_t *r);
} proxy_new_t;

static int proxy_new_work(lv_db_t *db, void *ud)
{
    proxy_new_t *p = ud;
    int rc = lv_acct_db_user_add(db, p->name, NULL, LV_ROLE_USER, LV_ACCT_DEFAULT_TENANT, NULL);
    if (rc && rc != LV_EEXIST) /* another frontend (or request) made it first: fine */
        return rc;
    return lv_acct_db_load(db, &p->snap);
}

static void proxy_new_done(lv_app_t *app, lv_req_t *r, int rc, void *ud)
{
    proxy_new_t *p = ud;
    if (rc == 0 && p->snap) {
        LV_INFO("created user %s, named by the trusted proxy", p->name);
        lv_accounts_install(app, p->snap);
        p->snap = NULL;
    } else if (rc) {
        LV_WARN("could not create user %s named by the trusted proxy: %s", p->name, lv_strerror(rc));
    }
    lv_acct_snap_free(p->snap);
    if (r && rc == 0 && lv_acct_snap_user_by_name(lv_accounts_snap(app), p->name))
        p->again(app, r);
    else if (r)
        lv_req_respond_error(r, 503, "unavailable", "your account could not be set up; try again");
    free(p);
}

bool lv_auth_proxy_pending(lv_app_t *app, lv_req_t *r, void (*again)(lv_app_t *app, lv_req_t *r))
{
    char name[LV_ACCT_NAME_MAX];
    lv_acct_snap_t *snap = lv_accounts_snap(app);
    if (!snap || proxy_user_name(app, r, name) != 0 || lv_acct_snap_user_by_name(snap, name))
        return false;
    proxy_new_t *p = calloc(1, sizeof(*p));
    if (!p)
        return false; /* lv_auth_check then answers 503 */
    memcpy(p->name, name, sizeof(p->name));
    p->again = again;
    if (lv_accounts_submit_req(app, r, proxy_new_work, proxy_new_done, p) != 0)
        free(p); /* answered 503 already */
    return true;
}

/* ---------- per-account password failures ---------- */

typedef struct {
    lv_hmap_node_t node;
    lv_queue_t link;            /* in lv_auth_locks.order, oldest first */
    char name[LV_ACCT_NAME_MAX];
    uint64_t window_start_ms;   /* the minute the failures are counted in */
    unsigned fails;
    uint64_t locked_until_ms;
} lock_entry_t;

struct lv_auth_locks {
    lv_hmap_t map;
    lv_queue_t order; /* least recently failed first: evicted first at the cap */
    size_t max_names;
};

lv_auth_locks_t *lv_auth_locks_create(size_t max_names)
{
    lv_auth_locks_t *l = calloc(1, sizeof(*l));
    if (!l || lv_hmap_init(&l->map, 0) != 0) {
        free(l);
        return NULL;
    }
    lv_queue_init(&l->order);
    l->max_names = max_names ? max_names : 1;
    return l;
}

void lv_auth_locks_free(lv_auth_locks_t *l)
{
    if (!l)
        return;
    while (!lv_queue_empty(&l->order)) {
        lock_entry_t *e = LV_CONTAINER_OF(lv_queue_head(&l->order), lock_entry_t, link);
        lv_queue_remove(&e->link);
        free(e);
    }
    lv_hmap_free(&l->map);
    free(l);
}

static lock_entry_t *lock_find(lv_auth_locks_t *l, const char *name)
{
    /* names longer than any valid one are cut: they fail anyway, and share one entry per prefix */
    size_t n = strnlen(name, LV_ACCT_NAME_MAX - 1);
    lv_hmap_node_t *node = lv_hmap_find(&l->map, name, n);
    return node ? LV_CONTAINER_OF(node, lock_entry_t, node) : NULL;
}

bool lv_auth_locks_locked(lv_auth_locks_t *l, const char *name, uint64_t now_ms)
{
    lock_entry_t *e = l ? lock_find(l, name) : NULL;
    return e && now_ms < e->locked_until_ms;
}

void lv_auth_locks_failed(lv_auth_locks_t *l, const char *name, uint64_t now_ms)
{
    if (!l)
        return;
    lock_entry_t *e = lock_find(l, name);
    if (!e) {
        if (lv_hmap_count(&l->map) >= l->max_names) {
            lock_entry_t *old = LV_CONTAINER_OF(lv_queue_head(&l->order), lock_entry_t, link);
            lv_hmap_remove(&l->map, &old->node);
            lv_queue_remove(&old->link);
            free(old);
        }
        if (!(e = calloc(1, sizeof(*e))))
            return;
        snprintf(e->name, sizeof(e->name), "%.*s", (int)strnlen(name, LV_ACCT_NAME_MAX - 1), name);
        if (lv_hmap_insert_str(&l->map, &e->node, e->name) != 0) {
            free(e);
            return;
        }
        lv_queue_init(&e->link);
        e->window_start_ms = now_ms;
    } else {
        lv_queue_remove(&e->link);
    }
    lv_queue_insert_tail(&l->order, &e->link);
    if (now_ms - e->window_start_ms >= LV_AUTH_ACCOUNT_LOCK_MS) {
        e->window_start_ms = now_ms;
        e->fails = 0;
    }
    if (++e->fails >= LV_AUTH_ACCOUNT_FAILS_PER_MIN && now_ms >= e->locked_until_ms) {
        e->locked_until_ms = now_ms + LV_AUTH_ACCOUNT_LOCK_MS;
        e->window_start_ms = e->locked_until_ms; /* counting starts again once the lock ends */
        e->fails = 0;
        LV_WARN("password sign-in for %s is locked for a minute after %d failures", e->name,
                LV_AUTH_ACCOUNT_FAILS_PER_MIN);
    }
}

bool lv_auth_account_locked(lv_app_t *app, const char *name, uint64_t now_ms)
{
    return lv_auth_locks_locked(lv_accounts_locks(app), name, now_ms);
}

void lv_auth_account_failed(lv_app_t *app, const char *name, uint64_t now_ms)
{
    lv_auth_locks_failed(lv_accounts_locks(app), name, now_ms);
}

/* ---------- API keys' last use ---------- */

typedef struct {
    lv_hmap_node_t node;
    lv_queue_t link;          /* in lv_auth_keyuse.order, least recently used first */
    char key_id[LV_PRINCIPAL_ID_MAX];
    int64_t used_ms;          /* the last use (wall clock) */
    uint64_t written_ms;      /* when a use was last handed out to be written (monotonic) */
    bool written;             /* ... at all, since this entry exists */
    bool dirty;               /* used since then */
} keyuse_entry_t;

struct lv_auth_keyuse {
    lv_hmap_t map;
    lv_queue_t order;
    size_t max_keys;
};

lv_auth_keyuse_t *lv_auth_keyuse_create(size_t max_keys)
{
    lv_auth_keyuse_t *t = calloc(1, sizeof(*t));
    if (!t || lv_hmap_init(&t->map, 0) != 0) {
        free(t);
        return NULL;
    }
    lv_queue_init(&t->order);
    t->max_keys = max_keys ? max_keys : 1;
    return t;
}

static void keyuse_drop(lv_auth_keyuse_t *t, keyuse_entry_t *e)
{
    lv_hmap_remove(&t->map, &e->node);
    lv_queue_remove(&e->link);
    free(e);
}

void lv_auth_keyuse_free(lv_auth_keyuse_t *t)
{
    if (!t)
        return;
    while (!lv_queue_empty(&t->order))
        keyuse_drop(t, LV_CONTAINER_OF(lv_queue_head(&t->order), keyuse_entry_t, link));
    lv_hmap_free(&t->map);
    free(t);
}

size_t lv_auth_keyuse_count(const lv_auth_keyuse_t *t) { return t ? lv_hmap_count(&t->map) : 0; }

void lv_auth_keyuse_record(lv_auth_keyuse_t *t, const char *key_id, int64_t used_ms)
{
    size_t n = key_id ? strnlen(key_id, LV_PRINCIPAL_ID_MAX) : 0;
    if (!t || n == 0 || n >= LV_PRINCIPAL_ID_MAX)
        return;
    lv_hmap_node_t *node = lv_hmap_find(&t->map, key_id, n);
    keyuse_entry_t *e = node ? LV_CONTAINER_OF(node, keyuse_entry_t, node) : NULL;
    if (!e) {
        if (lv_hmap_count(&t->map) >= t->max_keys)
            keyuse_drop(t, LV_CONTAINER_OF(lv_queue_head(&t->order), keyuse_entry_t, link));
        if (!(e = calloc(1, sizeof(*e))))
            return;
        memcpy(e->key_id, key_id, n + 1);
        if (lv_hmap_insert(&t->map, &e->node, e->key_id, n) != 0) {
            free(e);
            return;
        }
        lv_queue_init(&e->link);
    } else {
        lv_queue_remove(&e->link);
    }
    lv_queue_insert_tail(&t->order, &e->link);
    if (used_ms > e->used_ms)
        e->used_ms = used_ms;
    e->dirty = true;
}

size_t lv_auth_keyuse_take(lv_auth_keyuse_t *t, uint64_t now_ms, lv_auth_keyuse_item_t *out, size_t max)
{
    size_t n = 0;
    if (!t)
        return 0;
    lv_queue_t *q, *next;
    for (q = t->order.next; q != &t->order; q = next) {
        next = q->next;
        keyuse_entry_t *e = LV_CONTAINER_OF(q, keyuse_entry_t, link);
        bool period_over = !e->written || now_ms - e->written_ms >= LV_AUTH_KEYUSE_PERIOD_MS;
        if (!period_over)
            continue;
        if (!e->dirty) {
            keyuse_drop(t, e); /* written, then idle a whole period: nothing left to hold back */
            continue;
        }
        if (n >= max)
            continue;
        memcpy(out[n].key_id, e->key_id, sizeof(out[n].key_id));
        out[n].used_ms = e->used_ms;
        n++;
        e->written = true;
        e->written_ms = now_ms;
        e->dirty = false;
    }
    return n;
}

/* lv_oidc.c - single sign-on (lv_oidc.h): OpenID Connect sign-in (authorization code + PKCE) and
 * bearer JWTs verified against the issuer's JWKS.
 *
 * Threads: every HTTP call to the issuer (discovery, JWKS, the token exchange) is a blocking curl
 * easy transfer run on libuv's thread pool (uv_queue_work), bounded by HTTP_TIMEOUT_MS and
 * FETCH_MAX_BYTES; the worker sees only its own job struct (copies of what it needs), and its
 * results are installed by the after-work callback on the loop. Everything else runs on the loop.
 *
 * Keys: each issuer (the sign-in one, and --jwt-issuer when it is another) is a provider_t with its
 * discovery document and JWKS. The tick fetches them at start (retrying every RETRY_MS while they
 * fail), refreshes the JWKS every JWKS_REFRESH_MS, and a token naming a kid we do not know starts a
 * refresh at most once per KID_REFRESH_MIN_MS (so a key rotation is picked up within a request or
 * two, and junk kids cannot make us hammer the issuer). */
#include "lv_oidc.h"

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lv_accounts.h"
#include "lv_acct.h"
#include "lv_app.h"
#include "lv_auth.h"
#include "lv_b64.h"
#include "lv_buf.h"
#include "lv_common.h"
#include "lv_hmap.h"
#include "lv_httputil.h"
#include "lv_jwt.h"
#include "lv_log.h"
#include "lv_rand.h"

#define PENDING_MAX 1024             /* sign-ins between /login and /callback */
#define PENDING_PER_IP_MAX 32        /* of them from one address */
#define PENDING_TTL_MS (10u * 60 * 1000)
#define LINKS_MAX 4096               /* (iss, sub) -> user id, a cache over the snapshot */
#define LINK_REFUSED_MS 30000        /* a refused first sign-in (disabled user) is remembered */
#define JWKS_REFRESH_MS (10u * 60 * 1000)
#define KID_REFRESH_MIN_MS 30000
#define RETRY_MS 5000
#define TICK_MS 1000
#define HTTP_TIMEOUT_MS 10000
#define FETCH_MAX_BYTES (256u * 1024)
#define URL_MAX 512
#define CODE_MAX 1024                /* an authorization code from the query */
#define SNAP_WAIT_TRIES 150          /* x 20 ms: a new user must reach the snapshot */
#define STATE_COOKIE "livevlm_oidc_state"
#define CALLBACK_PATH "/auth/oidc/callback"

typedef struct {
    char issuer[256];
    char authz_ep[URL_MAX], token_ep[URL_MAX], jwks_uri[URL_MAX];
    bool basic_auth;                 /* token endpoint: client_secret_basic (else _post) */
    bool discovered, have_keys, fetching;
    lv_jwks_t keys;
    uint64_t fetched_ms, tried_ms, kid_refresh_ms;
    char error[200];                 /* the last failure, for the log and the 503 */
} provider_t;

typedef struct {
    lv_hmap_node_t node;
    char state[33], nonce[33], verifier[65];
    char redirect_uri[URL_MAX];
    char next[256];                  /* where to go once signed in: a local path */
    char ip[LV_IP_TEXT_MAX];
    uint64_t created_ms;
} pending_t;

typedef struct {
    lv_hmap_node_t node;
    char key[520];                   /* iss "\n" sub */
    char user_id[LV_ACCT_ID_MAX];    /* "" while being made */
    int rc;                          /* 0 known, LV_EAGAIN being made, LV_EAUTH refused */
    uint64_t t_ms;
} link_t;

typedef struct lv_oidc {
    lv_app_t *app;                   /* NULL once stopped */
    provider_t sso, jwt_own;
    provider_t *bearer;              /* &sso or &jwt_own; NULL when bearer JWTs are off */
    bool sso_on;
    char bearer_aud[128];
    lv_role_t default_role;
    lv_hmap_t pending, links;
    uv_timer_t tick;
    int refs;                        /* the tick handle + work in flight: freed at 0 */
} lv_oidc_t;

static void oidc_unref(lv_oidc_t *o)
{
    if (--o->refs > 0)
        return;
    lv_jwks_free(&o->sso.keys);
    lv_jwks_free(&o->jwt_own.keys);
    free(o);
}

/* ---------- HTTP on the worker thread ---------- */

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    lv_buf_t *b = ud;
    return lv_buf_append(b, p, size * n) == 0 ? size * n : 0; /* over the cap: curl stops */
}

/* GET url, or POST form when form is non-NULL (with HTTP basic user:pw when user is non-NULL).
 * 0 and the body in out when the status is 200; else LV_EIO with a sentence in err. */
static int http_call(const char *url, const char *form, const char *user, const char *pw, lv_buf_t *out, char *err,
                     size_t err_size)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    long status = 0;
    int rc = LV_EIO;
    if (!c) {
        snprintf(err, err_size, "could not start an HTTP request");
        return LV_ENOMEM;
    }
    h = curl_slist_append(h, "Accept: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)HTTP_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)HTTP_TIMEOUT_MS / 2);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "livevlm-oidc");
    if (form) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, form);
        if (user) {
            curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
            curl_easy_setopt(c, CURLOPT_USERNAME, user);
            curl_easy_setopt(c, CURLOPT_PASSWORD, pw);
        }
    }
    CURLcode cc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (cc != CURLE_OK)
        snprintf(err, err_size, "%s: %s", url, cc == CURLE_WRITE_ERROR ? "answer larger than 256 KiB" : curl_easy_strerror(cc));
    else if (status != 200)
        snprintf(err, err_size, "%s answered HTTP %ld", url, status);
    else
        rc = 0;
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return rc;
}

static int copy_url(json_t *doc, const char *name, char *out, size_t size)
{
    const char *v = json_string_value(json_object_get(doc, name));
    if (!v || (strncmp(v, "https://", 8) != 0 && strncmp(v, "http://", 7) != 0) || strlen(v) >= size)
        return LV_EPARSE;
    memcpy(out, v, strlen(v) + 1);
    return 0;
}

/* Discovery (OpenID Connect Discovery 1.0 section 4) into the job's copy of p. */
static int discover(provider_t *p, char *err, size_t err_size)
{
    char url[URL_MAX];
    lv_buf_t b;
    json_t *doc = NULL;
    int rc;
    size_t n = strlen(p->issuer);
    while (n && p->issuer[n - 1] == '/')
        n--;
    snprintf(url, sizeof(url), "%.*s/.well-known/openid-configuration", (int)n, p->issuer);
    lv_buf_init(&b, FETCH_MAX_BYTES);
    if ((rc = http_call(url, NULL, NULL, NULL, &b, err, err_size)) != 0)
        goto out;
    rc = LV_EPARSE;
    doc = json_loadb(b.data ? b.data : "", b.len, 0, NULL);
    const char *iss = json_string_value(json_object_get(doc, "issuer"));
    /* section 4.3: the document's issuer must be exactly the one we asked */
    if (!iss || strcmp(iss, p->issuer) != 0) {
        snprintf(err, err_size, "%.60s: its issuer is not exactly %.60s", url, p->issuer);
        goto out;
    }
    if (copy_url(doc, "jwks_uri", p->jwks_uri, sizeof(p->jwks_uri)) != 0 ||
        copy_url(doc, "authorization_endpoint", p->authz_ep, sizeof(p->authz_ep)) != 0 ||
        copy_url(doc, "token_endpoint", p->token_ep, sizeof(p->token_ep)) != 0) {
        snprintf(err, err_size, "%.120s: no http(s) jwks_uri, authorization_endpoint and token_endpoint", url);
        goto out;
    }
    /* RFC 8414: absent means client_secret_basic */
    json_t *methods = json_object_get(doc, "token_endpoint_auth_methods_supported"), *m;
    size_t i;
    p->basic_auth = !json_is_array(methods);
    json_array_foreach(methods, i, m) {
        if (json_is_string(m) && strcmp(json_string_value(m), "client_secret_basic") == 0)
            p->basic_auth = true;
    }
    rc = 0;
out:
    json_decref(doc);
    lv_buf_free(&b);
    return rc;
}

static int fetch_jwks(const char *uri, lv_jwks_t *keys, char *err, size_t err_size)
{
    lv_buf_t b;
    const char *why;
    int rc;
    lv_buf_init(&b, LV_JWKS_MAX_BYTES);
    if ((rc = http_call(uri, NULL, NULL, NULL, &b, err, err_size)) != 0)
        goto out;
    if ((rc = lv_jwks_parse(b.data ? b.data : "", b.len, keys, &why)) != 0) {
        snprintf(err, err_size, "%s: %s", uri, why);
        goto out;
    }
    if (keys->n == 0) {
        snprintf(err, err_size, "%s: no RS256 or ES256 signing key in it", uri);
        rc = LV_EPARSE;
    }
out:
    lv_buf_free(&b);
    return rc;
}

/* ---------- keys: discovery and JWKS fetches ---------- */

typedef struct {
    uv_work_t w;
    lv_oidc_t *o;
    provider_t *p;                   /* the loop's: touched only in fetch_after */
    provider_t copy;                 /* the worker's (keys empty on the way in) */
    int rc;
    char err[200];
} fetch_job_t;

static void fetch_work(uv_work_t *w)
{
    fetch_job_t *j = LV_CONTAINER_OF(w, fetch_job_t, w);
    j->rc = 0;
    if (!j->copy.discovered && (j->rc = discover(&j->copy, j->err, sizeof(j->err))) != 0)
        return;
    j->copy.discovered = true;
    j->rc = fetch_jwks(j->copy.jwks_uri, &j->copy.keys, j->err, sizeof(j->err));
}

static void fetch_after(uv_work_t *w, int status)
{
    fetch_job_t *j = LV_CONTAINER_OF(w, fetch_job_t, w);
    lv_oidc_t *o = j->o;
    provider_t *p = j->p;
    p->fetching = false;
    if (o->app && status == 0) {
        if (j->copy.discovered && !p->discovered) {
            memcpy(p->authz_ep, j->copy.authz_ep, sizeof(p->authz_ep));
            memcpy(p->token_ep, j->copy.token_ep, sizeof(p->token_ep));
            memcpy(p->jwks_uri, j->copy.jwks_uri, sizeof(p->jwks_uri));
            p->basic_auth = j->copy.basic_auth;
            p->discovered = true;
        }
        if (j->rc == 0) {
            bool first = !p->have_keys;
            lv_jwks_free(&p->keys);
            p->keys = j->copy.keys; /* moved */
            memset(&j->copy.keys, 0, sizeof(j->copy.keys));
            p->have_keys = true;
            p->fetched_ms = lv_now_ms();
            p->error[0] = '\0';
            if (first)
                LV_INFO("single sign-on: %s ready (%zu signing keys)", p->issuer, p->keys.n);
        } else {
            if (strcmp(p->error, j->err) != 0)
                LV_WARN("single sign-on: %s", j->err);
            snprintf(p->error, sizeof(p->error), "%s", j->err);
        }
    }
    lv_jwks_free(&j->copy.keys);
    free(j);
    oidc_unref(o);
}

static void fetch_start(lv_oidc_t *o, provider_t *p)
{
    if (p->fetching || !o->app)
        return;
    fetch_job_t *j = calloc(1, sizeof(*j));
    if (!j)
        return;
    j->o = o;
    j->p = p;
    memcpy(&j->copy, p, sizeof(*p));
    memset(&j->copy.keys, 0, sizeof(j->copy.keys)); /* the loop's keys stay the loop's */
    p->tried_ms = lv_now_ms();
    if (uv_queue_work(o->app->loop, &j->w, fetch_work, fetch_after) != 0) {
        free(j);
        return;
    }
    p->fetching = true;
    o->refs++;
}

static void provider_tick(lv_oidc_t *o, provider_t *p, uint64_t now)
{
    if (p->fetching)
        return;
    if (!p->have_keys ? now - p->tried_ms >= RETRY_MS : now - p->fetched_ms >= JWKS_REFRESH_MS)
        fetch_start(o, p);
}

static void on_tick(uv_timer_t *t)
{
    lv_oidc_t *o = t->data;
    uint64_t now = lv_now_ms();
    provider_tick(o, &o->sso, now);
    if (o->bearer == &o->jwt_own)
        provider_tick(o, &o->jwt_own, now);
    /* expired sign-ins; refused first sign-ins to be tried again */
    lv_hmap_iter_t it;
    lv_hmap_node_t *n;
    lv_hmap_iter_init(&o->pending, &it);
    while ((n = lv_hmap_iter_next(&o->pending, &it))) {
        pending_t *pe = LV_CONTAINER_OF(n, pending_t, node);
        if (now - pe->created_ms >= PENDING_TTL_MS) {
            lv_hmap_remove(&o->pending, n);
            free(pe);
        }
    }
    lv_hmap_iter_init(&o->links, &it);
    while ((n = lv_hmap_iter_next(&o->links, &it))) {
        link_t *l = LV_CONTAINER_OF(n, link_t, node);
        if (l->rc == LV_EAUTH && now - l->t_ms >= LINK_REFUSED_MS) {
            lv_hmap_remove(&o->links, n);
            free(l);
        }
    }
}

/* ---------- claims -> tenant, role, name ---------- */

/* A claim by name; "a.b.c" walks nested objects (Keycloak's realm_access.roles). */
static json_t *claim_path(json_t *claims, const char *path)
{
    char seg[64];
    json_t *v = claims;
    while (v && *path) {
        size_t n = strcspn(path, ".");
        if (n >= sizeof(seg))
            return NULL;
        memcpy(seg, path, n);
        seg[n] = '\0';
        v = json_object_get(v, seg);
        path += n + (path[n] == '.');
    }
    return v;
}

static int role_rank(const char *s)
{
    lv_role_t r;
    return s && lv_role_parse(s, &r) == 0 ? (int)r : -1;
}

typedef struct {
    char tenant[LV_ACCT_ID_MAX];
    lv_role_t role;
    bool tenant_from_claim, role_from_claim;
    char preferred[LV_ACCT_NAME_MAX];
    bool may_link; /* preferred is a verified e-mail: it may link a password-less account */
    char bad_tenant[LV_ACCT_ID_MAX + 32]; /* the claim's value when it names no tenant */
} mapped_t;

/* Map the claims as docs say (report "Single sign-on"): tenant from --oidc-tenant-claim (it must
 * name an existing tenant), role from --oidc-role-claim (a string, or an array whose highest of
 * admin/user/viewer wins; --oidc-default-role when it names none), the login name from a verified
 * e-mail or preferred_username. LV_EAUTH with why (static) on a tenant that is not here. */
static int map_claims(lv_oidc_t *o, const lv_jwt_t *j, lv_acct_snap_t *snap, mapped_t *m, const char **why)
{
    const lv_config_t *cfg = &o->app->cfg;
    memset(m, 0, sizeof(*m));
    snprintf(m->tenant, sizeof(m->tenant), "%s", LV_ACCT_DEFAULT_TENANT);
    if (cfg->oidc_tenant_claim[0]) {
        json_t *t = claim_path(j->claims, cfg->oidc_tenant_claim);
        const char *tv = json_string_value(t);
        m->tenant_from_claim = true;
        if (!tv || strlen(tv) >= sizeof(m->tenant) || lv_acct_check_id(tv) != 0 || !lv_acct_snap_tenant(snap, tv)) {
            snprintf(m->bad_tenant, sizeof(m->bad_tenant), "%.60s", tv ? tv : "(none)");
            *why = "the sign-in's tenant claim names no tenant on this server; ask the admin";
            return LV_EAUTH;
        }
        snprintf(m->tenant, sizeof(m->tenant), "%s", tv);
    }
    m->role = o->default_role;
    if (cfg->oidc_role_claim[0]) {
        json_t *r = claim_path(j->claims, cfg->oidc_role_claim), *v;
        int best = role_rank(json_string_value(r));
        size_t i;
        json_array_foreach(r, i, v) {
            if (i >= 256)
                break;
            best = LV_MAX(best, role_rank(json_string_value(v)));
        }
        m->role_from_claim = true;
        if (best >= 0)
            m->role = (lv_role_t)best;
    }
    /* an unverified e-mail could be anyone's: it may only name (and link) an account when the
     * issuer says it checked it */
    const char *email = lv_jwt_claim_str(j, "email");
    const char *pu = lv_jwt_claim_str(j, "preferred_username");
    m->may_link = false;
    if (email && json_is_true(json_object_get(j->claims, "email_verified")) && lv_acct_check_name(email) == 0) {
        snprintf(m->preferred, sizeof(m->preferred), "%s", email);
        m->may_link = true;
    }
    else if (pu && lv_acct_check_name(pu) == 0)
        snprintf(m->preferred, sizeof(m->preferred), "%s", pu);
    else {
        char h[LV_ACCT_HASH_HEX];
        const char *sub = lv_jwt_claim_str(j, "sub");
        lv_acct_sha256_hex(sub, strlen(sub), h);
        snprintf(m->preferred, sizeof(m->preferred), "sso-%.16s", h);
    }
    return 0;
}

/* ---------- (iss, sub) -> user ---------- */

typedef struct {
    const char *iss, *sub;
    const lv_user_t *found;
} scan_t;

static int scan_user(const lv_user_t *u, void *ud)
{
    scan_t *s = ud;
    if (strcmp(u->oidc_sub, s->sub) == 0 && strcmp(u->oidc_iss, s->iss) == 0) {
        s->found = u;
        return 1;
    }
    return 0;
}

static link_t *link_get(lv_oidc_t *o, const char *iss, const char *sub, bool create)
{
    char key[520];
    int n = snprintf(key, sizeof(key), "%s\n%s", iss, sub);
    if (n < 0 || (size_t)n >= sizeof(key))
        return NULL;
    lv_hmap_node_t *hn = lv_hmap_find(&o->links, key, (size_t)n);
    if (hn || !create)
        return hn ? LV_CONTAINER_OF(hn, link_t, node) : NULL;
    if (lv_hmap_count(&o->links) >= LINKS_MAX) { /* a cache: start over rather than grow */
        lv_hmap_iter_t it;
        lv_hmap_iter_init(&o->links, &it);
        while ((hn = lv_hmap_iter_next(&o->links, &it))) {
            lv_hmap_remove(&o->links, hn);
            free(LV_CONTAINER_OF(hn, link_t, node));
        }
    }
    link_t *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    memcpy(l->key, key, (size_t)n + 1);
    l->rc = LV_ENOTFOUND;
    if (lv_hmap_insert(&o->links, &l->node, l->key, (size_t)n) != 0) {
        free(l);
        return NULL;
    }
    return l;
}

/* The user linked to (iss, sub) in the snapshot, or NULL. */
static const lv_user_t *linked_user(lv_oidc_t *o, lv_acct_snap_t *snap, const char *iss, const char *sub)
{
    link_t *l = link_get(o, iss, sub, false);
    const lv_user_t *u = l && l->user_id[0] ? lv_acct_snap_user(snap, l->user_id) : NULL;
    if (u && strcmp(u->oidc_iss, iss) == 0 && strcmp(u->oidc_sub, sub) == 0)
        return u;
    if (l && l->rc == LV_EAGAIN)
        return NULL; /* being made: do not scan for it on every request */
    scan_t s = {iss, sub, NULL};
    lv_acct_snap_each_user(snap, scan_user, &s);
    if (s.found && (l = link_get(o, iss, sub, true))) {
        snprintf(l->user_id, sizeof(l->user_id), "%s", s.found->id);
        l->rc = 0;
    }
    return s.found;
}

/* What the database job needs to find, link or make the user (copies: it runs on the db thread). */
typedef struct {
    lv_app_t *app;
    char iss[256], sub[256];
    mapped_t m;
    bool claims_rule;
    char ip[LV_IP_TEXT_MAX];
    bool tls, login;                 /* sign-in: also make a sign-in cookie */
    char next[256];                  /* sign-in: where the browser goes then */
    lv_user_t user;
    char cookie[LV_ACCT_SECRET_HEX];
    lv_login_t lg;
    uv_timer_t wait;                 /* sign-in: until the new user is in the snapshot */
    int wait_tries;
    lv_req_t *r;
} user_job_t;

static int user_work(lv_db_t *db, void *ud)
{
    user_job_t *j = ud;
    int rc = lv_acct_db_oidc_user(db, j->iss, j->sub, j->m.preferred, j->m.may_link, j->m.tenant, j->m.role,
                                  j->claims_rule, &j->user);
    if (rc == 0 && j->login)
        rc = lv_acct_db_login_add(db, j->user.id, j->ip, j->cookie, &j->lg);
    return rc;
}

/* Fill the job from the claims; an existing user keeps what no claim rules (the admin set it). */
static void user_job_init(user_job_t *j, lv_oidc_t *o, lv_acct_snap_t *snap, const char *iss, const char *sub,
                          const mapped_t *m)
{
    j->app = o->app;
    snprintf(j->iss, sizeof(j->iss), "%s", iss);
    snprintf(j->sub, sizeof(j->sub), "%s", sub);
    j->m = *m;
    const lv_user_t *u = linked_user(o, snap, iss, sub);
    if (!u)
        u = lv_acct_snap_user_by_name(snap, m->preferred);
    if (u && !m->tenant_from_claim)
        snprintf(j->m.tenant, sizeof(j->m.tenant), "%s", u->tenant);
    if (u && !m->role_from_claim)
        j->m.role = u->role;
    j->claims_rule = m->tenant_from_claim || m->role_from_claim;
}

static void link_learn(lv_app_t *app, const user_job_t *j, int rc)
{
    lv_oidc_t *o = app->oidc;
    link_t *l = o ? link_get(o, j->iss, j->sub, true) : NULL;
    if (!l)
        return;
    l->rc = rc == 0 ? 0 : LV_EAUTH;
    l->t_ms = lv_now_ms();
    snprintf(l->user_id, sizeof(l->user_id), "%s", rc == 0 ? j->user.id : "");
}

/* ---------- bearer JWTs ---------- */

static void bearer_user_done(int rc, void *ud)
{
    user_job_t *j = ud;
    if (rc != 0 && rc != LV_EAUTH)
        LV_WARN("single sign-on: could not set up the user for a bearer token: %s", lv_strerror(rc));
    link_learn(j->app, j, rc == LV_EAUTH ? LV_EAUTH : rc);
    if (rc != 0 && rc != LV_EAUTH && j->app->oidc) { /* a database hiccup: let the next try redo it */
        link_t *l = link_get(j->app->oidc, j->iss, j->sub, false);
        if (l)
            l->rc = LV_ENOTFOUND;
    }
    if (rc == 0)
        lv_accounts_reload(j->app);
    free(j);
}

static int bearer_verify(lv_oidc_t *o, provider_t *p, const char *jwt, lv_jwt_t *j, const char **why)
{
    int rc = lv_jwt_parse(jwt, strlen(jwt), j, why);
    if (rc != 0)
        return LV_EAUTH;
    const lv_jwk_t *key = lv_jwks_find(&p->keys, j->kid, j->alg);
    if (!key) {
        uint64_t now = lv_now_ms();
        if (p->fetching) {
            *why = "the issuer's signing keys are being refreshed; retry";
            return LV_EAGAIN;
        }
        if (now - p->kid_refresh_ms >= KID_REFRESH_MIN_MS || !p->kid_refresh_ms) {
            p->kid_refresh_ms = now;
            fetch_start(o, p);
            *why = "the token's signing key is new here; the issuer's keys are being refreshed, retry";
            return LV_EAGAIN;
        }
        *why = "the token's signing key (kid) is not in the issuer's JWKS";
        return LV_EAUTH;
    }
    if ((rc = lv_jwt_verify(j, key, why)) != 0)
        return rc;
    if ((rc = lv_jwt_check_claims(j, p->issuer, o->bearer_aud, (int64_t)time(NULL), why)) != 0)
        return rc;
    const char *sub = lv_jwt_claim_str(j, "sub");
    if (!sub || !sub[0] || strlen(sub) >= 256) {
        *why = "the token has no subject (sub)";
        return LV_EAUTH;
    }
    return 0;
}

int lv_oidc_verify_bearer(lv_app_t *app, const char *jwt, lv_principal_t *out, const char **why)
{
    lv_oidc_t *o = app->oidc;
    lv_jwt_t j = {0};
    mapped_t m;
    int rc = LV_EAUTH;
    provider_t *p = o ? o->bearer : NULL;
    lv_acct_snap_t *snap = lv_accounts_snap(app);
    if (!p) {
        *why = "bearer JWTs are not accepted: no --jwt-issuer or --oidc-issuer";
        return LV_EAUTH;
    }
    if (!snap) {
        *why = "bearer JWTs need --auth accounts";
        return LV_EAUTH;
    }
    if (!p->have_keys) {
        *why = "the issuer's signing keys are not fetched yet; retry";
        return LV_EAGAIN;
    }
    if ((rc = bearer_verify(o, p, jwt, &j, why)) != 0)
        goto out;
    const char *iss = p->issuer, *sub = lv_jwt_claim_str(&j, "sub");
    if ((rc = map_claims(o, &j, snap, &m, why)) != 0)
        goto out;
    const lv_user_t *u = linked_user(o, snap, iss, sub);
    if (!u) {
        link_t *l = link_get(o, iss, sub, true);
        rc = LV_EAGAIN;
        *why = "first sign-in being set up; retry";
        if (l && l->rc == LV_EAUTH) {
            rc = LV_EAUTH;
            *why = "this account is disabled";
        } else if (l && l->rc == 0) {
            /* made: waiting for the snapshot to carry it */
        } else if (l && l->rc != LV_EAGAIN) {
            user_job_t *uj = calloc(1, sizeof(*uj));
            if (uj) {
                user_job_init(uj, o, snap, iss, sub, &m);
                if (lv_db_submit(app->db, user_work, bearer_user_done, uj) == 0)
                    l->rc = LV_EAGAIN;
                else
                    free(uj);
            }
        }
        goto out;
    }
    if (u->disabled) {
        *why = "this account is disabled";
        rc = LV_EAUTH;
        goto out;
    }
    memset(out, 0, sizeof(*out));
    snprintf(out->key, sizeof(out->key), "u:%s", u->id);
    snprintf(out->tenant, sizeof(out->tenant), "%s", m.tenant_from_claim ? m.tenant : u->tenant);
    snprintf(out->user_id, sizeof(out->user_id), "%s", u->id);
    snprintf(out->name, sizeof(out->name), "%.63s", u->name); /* LV_PRINCIPAL_KEY_MAX */
    out->role = (int)(m.role_from_claim ? m.role : u->role);
    out->cred = LV_CRED_JWT;
    rc = 0;
out:
    lv_jwt_free(&j);
    return rc;
}

/* ---------- pages ---------- */

static void html_esc(lv_buf_t *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<': lv_buf_append_str(b, "&lt;"); break;
        case '>': lv_buf_append_str(b, "&gt;"); break;
        case '&': lv_buf_append_str(b, "&amp;"); break;
        case '"': lv_buf_append_str(b, "&quot;"); break;
        case '\'': lv_buf_append_str(b, "&#39;"); break;
        default:
            if ((unsigned char)*s >= 0x20)
                lv_buf_append(b, s, 1);
        }
    }
}

/* A small readable page: title, a sentence (escaped) with an optional quoted detail, a link to
 * /login. extra: more header lines or NULL. */
static int page(lv_req_t *r, int status, const char *title, const char *text, const char *detail, const char *extra)
{
    lv_buf_t b;
    lv_buf_init(&b, 8192);
    lv_buf_append_str(&b, "<!doctype html><html lang=en><meta charset=utf-8>"
                          "<meta name=viewport content=\"width=device-width,initial-scale=1\"><link rel=icon href=\"/favicon.svg\"><title>");
    html_esc(&b, title);
    lv_buf_append_str(&b, " - livevlm</title><body style=\"font-family:system-ui,sans-serif;max-width:36em;"
                          "margin:3em auto;padding:0 1em\"><h1>");
    html_esc(&b, title);
    lv_buf_append_str(&b, "</h1><p id=message>");
    html_esc(&b, text);
    if (detail && detail[0]) {
        lv_buf_append_str(&b, " <q>");
        html_esc(&b, detail);
        lv_buf_append_str(&b, "</q>");
    }
    lv_buf_append_str(&b, "</p><p><a href=\"/login\">Back to sign-in</a></p></body></html>\n");
    char hdrs[512];
    snprintf(hdrs, sizeof(hdrs), "Cache-Control: no-store\r\n%s", extra ? extra : "");
    int rc = lv_req_respond(r, status, "text/html; charset=utf-8", b.data ? b.data : "", b.len, true, hdrs);
    lv_buf_free(&b);
    return rc;
}

/* ---------- sign-in: /auth/oidc/login ---------- */

static void url_esc(lv_buf_t *b, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
            c == '_' || c == '~')
            lv_buf_append(b, s, 1);
        else
            lv_buf_printf(b, "%%%02X", c);
    }
}

/* The callback URL: --oidc-redirect-url, else the scheme and Host this request came with. */
static int redirect_uri(lv_oidc_t *o, lv_req_t *r, char *out, size_t size)
{
    char host[256];
    if (o->app->cfg.oidc_redirect_url[0]) {
        snprintf(out, size, "%s", o->app->cfg.oidc_redirect_url);
        return 0;
    }
    if (lv_http1_header_copy(r->head, "host", host, sizeof(host)) != 0 || !host[0])
        return LV_EINVAL;
    for (const char *c = host; *c; c++) /* a host name, an address or [v6], and a port */
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || strchr(".-:[]", *c)))
            return LV_EINVAL;
    snprintf(out, size, "%s://%s%s", r->tls ? "https" : "http", host, CALLBACK_PATH);
    return 0;
}

/* Printable ASCII without a backslash: it goes into a Location header as it is. */
static bool next_ok(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f || *s == '\\')
            return false;
    return true;
}

static int handle_login(lv_oidc_t *o, lv_req_t *r)
{
    provider_t *p = &o->sso;
    pending_t *pe = NULL;
    lv_buf_t b;
    int rc;
    if (!p->discovered || !p->have_keys)
        return page(r, 503, "Single sign-on is starting", "The sign-in provider is not reachable yet; try again in a few seconds.",
                    p->error, "Retry-After: 5\r\n");
    size_t from_ip = 0;
    lv_hmap_iter_t it;
    lv_hmap_node_t *n;
    lv_hmap_iter_init(&o->pending, &it);
    while ((n = lv_hmap_iter_next(&o->pending, &it)))
        from_ip += strcmp(LV_CONTAINER_OF(n, pending_t, node)->ip, r->ip) == 0;
    if (from_ip >= PENDING_PER_IP_MAX || lv_hmap_count(&o->pending) >= PENDING_MAX)
        return page(r, 429, "Too many sign-ins in progress", "Finish or wait for the sign-ins already started (10 minutes).",
                    NULL, "Retry-After: 60\r\n");
    if (!(pe = calloc(1, sizeof(*pe))))
        return page(r, 503, "Single sign-on", "Out of memory; try again.", NULL, NULL);
    if (redirect_uri(o, r, pe->redirect_uri, sizeof(pe->redirect_uri)) != 0) {
        free(pe);
        return page(r, 400, "Single sign-on", "The request has no usable Host header to come back to.", NULL, NULL);
    }
    /* state binds the callback to this browser (its cookie), nonce the id_token to this sign-in,
     * the verifier the code to us (PKCE, RFC 7636): each 128 random bits or more */
    if (lv_rand_hex(pe->state, sizeof(pe->state), 16) || lv_rand_hex(pe->nonce, sizeof(pe->nonce), 16) ||
        lv_rand_hex(pe->verifier, sizeof(pe->verifier), 32)) {
        free(pe);
        return page(r, 503, "Single sign-on", "No random bytes; try again.", NULL, NULL);
    }
    unsigned char dg[32];
    char challenge[48];
    EVP_Digest(pe->verifier, strlen(pe->verifier), dg, NULL, EVP_sha256(), NULL);
    lv_b64url_encode(dg, sizeof(dg), challenge, sizeof(challenge));
    snprintf(pe->ip, sizeof(pe->ip), "%s", r->ip);
    pe->created_ms = lv_now_ms();
    /* ?next= (the sign-in page passes where the person was going): a path on this server only,
     * never "//host" or "/\\host", which browsers take for another site */
    if (lv_query_get(r->query, "next", pe->next, sizeof(pe->next)) != 0 || pe->next[0] != '/' || pe->next[1] == '/' ||
        pe->next[1] == '\\' || !next_ok(pe->next))
        snprintf(pe->next, sizeof(pe->next), "/");
    if (lv_hmap_insert_str(&o->pending, &pe->node, pe->state) != 0) {
        free(pe);
        return page(r, 503, "Single sign-on", "Could not keep the sign-in; try again.", NULL, NULL);
    }
    const lv_config_t *cfg = &o->app->cfg;
    lv_buf_init(&b, 4096);
    lv_buf_printf(&b, "Location: %s%cresponse_type=code&client_id=", p->authz_ep, strchr(p->authz_ep, '?') ? '&' : '?');
    url_esc(&b, cfg->oidc_client_id);
    lv_buf_append_str(&b, "&redirect_uri=");
    url_esc(&b, pe->redirect_uri);
    lv_buf_append_str(&b, "&scope=");
    url_esc(&b, cfg->oidc_scopes);
    lv_buf_printf(&b, "&state=%s&nonce=%s&code_challenge=%s&code_challenge_method=S256\r\n", pe->state, pe->nonce, challenge);
    lv_buf_printf(&b, "Set-Cookie: " STATE_COOKIE "=%s; Path=/auth/oidc; Max-Age=600; HttpOnly; SameSite=Lax%s\r\n"
                      "Cache-Control: no-store\r\n", pe->state, r->tls ? "; Secure" : "");
    rc = b.data && b.len < b.max ? lv_req_respond(r, 302, "text/plain; charset=utf-8", "", 0, false, b.data)
                                 : page(r, 500, "Single sign-on", "The sign-in address is too long.", NULL, NULL);
    lv_buf_free(&b);
    return rc;
}

/* ---------- sign-in: /auth/oidc/callback ---------- */

typedef struct {
    uv_work_t w;
    lv_oidc_t *o;
    lv_req_t *r;                     /* NULL once the client left */
    bool tls;
    char ip[LV_IP_TEXT_MAX];
    char token_ep[URL_MAX], jwks_uri[URL_MAX];
    bool basic_auth;
    char client_id[128], client_secret[256];
    char code[CODE_MAX], verifier[65], nonce[33], redirect_uri[URL_MAX];
    char next[256];
    char kids[LV_JWKS_MAX_KEYS][LV_JWT_KID_MAX]; /* the loop's key ids: a new one means fetch */
    size_t n_kids;
    /* out */
    int rc;
    char err[200];
    char *id_token;
    lv_jwks_t keys;                  /* fetched when the id_token names a kid we lack */
} exch_job_t;

static char *form_value(CURL *c, const char *s)
{
    return curl_easy_escape(c, s, 0);
}

static void exch_work(uv_work_t *w)
{
    exch_job_t *j = LV_CONTAINER_OF(w, exch_job_t, w);
    lv_buf_t body, form;
    json_t *doc = NULL;
    CURL *c = curl_easy_init();
    char *e_code = NULL, *e_red = NULL, *e_ver = NULL, *e_id = NULL, *e_sec = NULL;
    lv_buf_init(&body, FETCH_MAX_BYTES);
    lv_buf_init(&form, 8192);
    j->rc = LV_ENOMEM;
    if (!c || !(e_code = form_value(c, j->code)) || !(e_red = form_value(c, j->redirect_uri)) ||
        !(e_ver = form_value(c, j->verifier)) || !(e_id = form_value(c, j->client_id)) ||
        !(e_sec = form_value(c, j->client_secret)))
        goto out;
    lv_buf_printf(&form, "grant_type=authorization_code&code=%s&redirect_uri=%s&code_verifier=%s", e_code, e_red, e_ver);
    /* RFC 6749 2.3.1: basic credentials are the form-encoded id and secret; no secret: a public
     * client, which PKCE alone protects, names itself in the form */
    if (!j->basic_auth || !j->client_secret[0])
        lv_buf_printf(&form, "&client_id=%s", e_id);
    if (!j->basic_auth && j->client_secret[0])
        lv_buf_printf(&form, "&client_secret=%s", e_sec);
    if (!form.data) {
        snprintf(j->err, sizeof(j->err), "the token request is too large");
        goto out;
    }
    bool basic = j->basic_auth && j->client_secret[0];
    if ((j->rc = http_call(j->token_ep, form.data, basic ? e_id : NULL, e_sec, &body, j->err, sizeof(j->err))) != 0)
        goto out;
    j->rc = LV_EPARSE;
    doc = json_loadb(body.data ? body.data : "", body.len, 0, NULL);
    const char *idt = json_string_value(json_object_get(doc, "id_token"));
    if (!idt || strlen(idt) > LV_JWT_MAX_TOKEN) {
        snprintf(j->err, sizeof(j->err), "the provider's token answer has no id_token (is \"openid\" in --oidc-scopes?)");
        goto out;
    }
    if (!(j->id_token = strdup(idt))) {
        j->rc = LV_ENOMEM;
        goto out;
    }
    j->rc = 0;
    /* a key rotated since our last fetch: get the new set now rather than fail this sign-in */
    lv_jwt_t t;
    const char *why;
    if (lv_jwt_parse(idt, strlen(idt), &t, &why) == 0) {
        bool known = false;
        for (size_t i = 0; i < j->n_kids; i++)
            known = known || strcmp(j->kids[i], t.kid) == 0;
        if (!known && fetch_jwks(j->jwks_uri, &j->keys, j->err, sizeof(j->err)) != 0)
            lv_jwks_free(&j->keys);
        lv_jwt_free(&t);
    }
out:
    json_decref(doc);
    curl_free(e_code);
    curl_free(e_red);
    curl_free(e_ver);
    curl_free(e_id);
    curl_free(e_sec);
    curl_easy_cleanup(c);
    lv_buf_free(&body);
    lv_buf_free(&form);
    OPENSSL_cleanse(j->client_secret, sizeof(j->client_secret));
}

static void signin_finish(user_job_t *j)
{
    lv_req_t *r = j->r;
    char session[192], hdrs[640];
    lv_auth_session_cookie(session, sizeof(session), j->tls, j->cookie, (long)(LV_ACCT_LOGIN_TTL_MS / 1000));
    snprintf(hdrs, sizeof(hdrs),
             "Location: %s\r\n%sSet-Cookie: " STATE_COOKIE "=; Path=/auth/oidc; Max-Age=0\r\nCache-Control: no-store\r\n",
             j->next[0] ? j->next : "/", session);
    OPENSSL_cleanse(session, sizeof(session));
    r->on_gone = NULL;
    r->user = NULL;
    lv_req_respond(r, 302, "text/plain; charset=utf-8", "", 0, false, hdrs);
    OPENSSL_cleanse(j->cookie, sizeof(j->cookie));
}

static void wait_closed(uv_handle_t *h)
{
    free(h->data);
}

static void wait_gone(lv_req_t *r)
{
    user_job_t *j = r->user;
    j->r = NULL;
}

/* A new user reaches the snapshot with the reload lv_accounts_reload asked for; the redirect goes
 * out once it has, so the page's first request finds the sign-in's user. */
static void wait_tick(uv_timer_t *t)
{
    user_job_t *j = t->data;
    lv_acct_snap_t *snap = j->app->oidc ? lv_accounts_snap(j->app) : NULL;
    if (j->r && snap && lv_acct_snap_user(snap, j->user.id)) {
        if (!lv_acct_snap_login(snap, j->lg.hash))
            lv_acct_snap_put_login(snap, &j->lg);
        signin_finish(j);
    } else if (j->r && ++j->wait_tries < SNAP_WAIT_TRIES) {
        return;
    } else if (j->r) {
        j->r->on_gone = NULL;
        page(j->r, 503, "Signed in, but not ready", "Your account is being set up; reload this page in a moment.", NULL,
             NULL);
    }
    uv_timer_stop(t);
    uv_close((uv_handle_t *)t, wait_closed);
}

static void signin_done(lv_app_t *app, lv_req_t *r, int rc, void *ud)
{
    user_job_t *j = ud;
    lv_acct_snap_t *snap = lv_accounts_snap(app);
    link_learn(app, j, rc);
    if (!r || rc != 0 || !snap) {
        if (r && rc == LV_EAUTH)
            page(r, 403, "Account disabled", "Your account here is disabled; ask the admin.", NULL, NULL);
        else if (r)
            page(r, 500, "Sign-in failed", "The sign-in could not be recorded; try again.", lv_strerror(rc), NULL);
        free(j);
        return;
    }
    lv_acct_snap_put_login(snap, &j->lg);
    j->r = r;
    if (lv_acct_snap_user(snap, j->user.id)) {
        signin_finish(j);
        free(j);
        return;
    }
    lv_accounts_reload(app);
    r->waiting = true;
    r->user = j;
    r->on_gone = wait_gone;
    uv_timer_init(app->loop, &j->wait);
    j->wait.data = j;
    uv_timer_start(&j->wait, wait_tick, 20, 20);
}

static void exch_gone(lv_req_t *r)
{
    exch_job_t *j = r->user;
    j->r = NULL;
}

static void exch_after(uv_work_t *w, int status)
{
    exch_job_t *j = LV_CONTAINER_OF(w, exch_job_t, w);
    lv_oidc_t *o = j->o;
    lv_req_t *r = j->r;
    lv_jwt_t t = {0};
    const char *why = "";
    mapped_t m;
    if (r) {
        r->on_gone = NULL;
        r->user = NULL;
    }
    if (!o->app || status != 0) {
        if (r)
            page(r, 503, "Single sign-on", "The server is stopping; try again.", NULL, NULL);
        goto out;
    }
    provider_t *p = &o->sso;
    if (j->keys.n) { /* fresher keys came with this sign-in */
        lv_jwks_free(&p->keys);
        p->keys = j->keys;
        memset(&j->keys, 0, sizeof(j->keys));
        p->fetched_ms = lv_now_ms();
    }
    if (!r)
        goto out;
    if (j->rc != 0) {
        LV_WARN("single sign-on: token exchange: %s", j->err);
        page(r, 502, "Sign-in failed", "The sign-in provider did not give us your identity:", j->err, NULL);
        goto out;
    }
    /* OpenID Connect Core 3.1.3.7: signature, iss, aud = our client id, exp, and our nonce */
    if (lv_jwt_parse(j->id_token, strlen(j->id_token), &t, &why) != 0 ||
        lv_jwt_verify(&t, lv_jwks_find(&p->keys, t.kid, t.alg), &why) != 0 ||
        lv_jwt_check_claims(&t, p->issuer, o->app->cfg.oidc_client_id, (int64_t)time(NULL), &why) != 0) {
        page(r, 401, "Sign-in failed", "The provider's identity token was refused:", why, NULL);
        goto out;
    }
    const char *nonce = lv_jwt_claim_str(&t, "nonce"), *sub = lv_jwt_claim_str(&t, "sub");
    if (!nonce || strcmp(nonce, j->nonce) != 0) {
        page(r, 401, "Sign-in failed", "The provider's identity token is not for this sign-in (nonce).", NULL, NULL);
        goto out;
    }
    if (!sub || !sub[0] || strlen(sub) >= 256) {
        page(r, 401, "Sign-in failed", "The provider's identity token names no subject.", NULL, NULL);
        goto out;
    }
    lv_acct_snap_t *snap = lv_accounts_snap(o->app);
    if (!snap) {
        page(r, 503, "Single sign-on", "Single sign-on needs --auth accounts.", NULL, NULL);
        goto out;
    }
    if (map_claims(o, &t, snap, &m, &why) != 0) {
        char msg[200];
        snprintf(msg, sizeof(msg), "Your organisation '%s' has no tenant here; ask the admin to add it.", m.bad_tenant);
        page(r, 403, "No tenant for your organisation", msg, NULL, NULL);
        goto out;
    }
    user_job_t *uj = calloc(1, sizeof(*uj));
    if (!uj) {
        page(r, 503, "Single sign-on", "Out of memory; try again.", NULL, NULL);
        goto out;
    }
    user_job_init(uj, o, snap, p->issuer, sub, &m);
    uj->login = true;
    uj->tls = j->tls;
    memcpy(uj->next, j->next, sizeof(uj->next));
    snprintf(uj->ip, sizeof(uj->ip), "%s", j->ip);
    if (lv_accounts_submit_req(o->app, r, user_work, signin_done, uj) != 0)
        free(uj); /* it answered r (503) */
out:
    lv_jwt_free(&t);
    lv_jwks_free(&j->keys);
    free(j->id_token);
    free(j);
    oidc_unref(o);
}

static int handle_callback(lv_oidc_t *o, lv_req_t *r)
{
    char state[64], code[CODE_MAX], err[64], desc[256], cookie[1024], sc[64];
    if (lv_query_get(r->query, "state", state, sizeof(state)) != 0)
        state[0] = '\0';
    /* RFC 6749 4.1.2.1: the provider says why it sends the browser back without a code */
    if (lv_query_get(r->query, "error", err, sizeof(err)) != LV_ENOTFOUND) {
        lv_hmap_node_t *n = state[0] ? lv_hmap_find_str(&o->pending, state) : NULL;
        if (n) {
            lv_hmap_remove(&o->pending, n);
            free(LV_CONTAINER_OF(n, pending_t, node));
        }
        if (lv_query_get(r->query, "error_description", desc, sizeof(desc)) != 0)
            desc[0] = '\0';
        if (strcmp(err, "access_denied") == 0)
            return page(r, 403, "Sign-in cancelled", "The sign-in provider did not let you in (access denied).", desc, NULL);
        return page(r, 400, "Sign-in failed", "The sign-in provider answered with an error:", desc[0] ? desc : err, NULL);
    }
    if (!state[0] || lv_query_get(r->query, "code", code, sizeof(code)) != 0 || !code[0])
        return page(r, 400, "Sign-in failed", "This address lacks the code or state of a sign-in; start again.", NULL, NULL);
    if (lv_http1_header_copy(r->head, "cookie", cookie, sizeof(cookie)) != 0 ||
        lv_cookie_get(cookie, STATE_COOKIE, sc, sizeof(sc)) != 0 || !lv_secure_equal(sc, strlen(sc), state, strlen(state)))
        return page(r, 400, "Sign-in failed",
                    "This sign-in was not started in this browser, or its state does not match; start again.", NULL, NULL);
    lv_hmap_node_t *n = lv_hmap_find_str(&o->pending, state);
    if (!n)
        return page(r, 400, "Sign-in failed", "This sign-in expired or was already used; start again.", NULL, NULL);
    pending_t *pe = LV_CONTAINER_OF(n, pending_t, node);
    lv_hmap_remove(&o->pending, n); /* single use */
    if (lv_now_ms() - pe->created_ms >= PENDING_TTL_MS) {
        free(pe);
        return page(r, 400, "Sign-in failed", "This sign-in expired; start again.", NULL, NULL);
    }
    exch_job_t *j = calloc(1, sizeof(*j));
    if (!j) {
        free(pe);
        return page(r, 503, "Single sign-on", "Out of memory; try again.", NULL, NULL);
    }
    const lv_config_t *cfg = &o->app->cfg;
    provider_t *p = &o->sso;
    j->o = o;
    j->r = r;
    j->tls = r->tls;
    snprintf(j->ip, sizeof(j->ip), "%s", r->ip);
    memcpy(j->token_ep, p->token_ep, sizeof(j->token_ep));
    memcpy(j->jwks_uri, p->jwks_uri, sizeof(j->jwks_uri));
    j->basic_auth = p->basic_auth;
    snprintf(j->client_id, sizeof(j->client_id), "%s", cfg->oidc_client_id);
    snprintf(j->client_secret, sizeof(j->client_secret), "%s", cfg->oidc_client_secret);
    snprintf(j->code, sizeof(j->code), "%s", code);
    memcpy(j->verifier, pe->verifier, sizeof(j->verifier));
    memcpy(j->nonce, pe->nonce, sizeof(j->nonce));
    memcpy(j->redirect_uri, pe->redirect_uri, sizeof(j->redirect_uri));
    memcpy(j->next, pe->next, sizeof(j->next));
    for (size_t i = 0; i < p->keys.n; i++)
        memcpy(j->kids[j->n_kids++], p->keys.keys[i].kid, LV_JWT_KID_MAX);
    free(pe);
    if (uv_queue_work(o->app->loop, &j->w, exch_work, exch_after) != 0) {
        free(j);
        return page(r, 503, "Single sign-on", "Could not start the sign-in; try again.", NULL, NULL);
    }
    o->refs++;
    r->waiting = true;
    r->user = j;
    r->on_gone = exch_gone;
    return 0;
}

/* ---------- the module ---------- */

bool lv_oidc_route(const char *path)
{
    return strncmp(path, "/auth/oidc/", 11) == 0;
}

int lv_oidc_handle(lv_app_t *app, lv_req_t *r)
{
    lv_oidc_t *o = app->oidc;
    if (!o || !o->sso_on)
        return page(r, 404, "Single sign-on", "Single sign-on is not configured on this server.", NULL, NULL);
    if (r->is_post)
        return lv_req_respond_error(r, 405, "method_not_allowed", "use GET");
    if (strcmp(r->path, "/auth/oidc/login") == 0)
        return handle_login(o, r);
    if (strcmp(r->path, CALLBACK_PATH) == 0)
        return handle_callback(o, r);
    return page(r, 404, "Single sign-on", "No such single sign-on address.", NULL, NULL);
}

bool lv_oidc_enabled(const lv_app_t *app)
{
    return app->oidc != NULL && app->oidc->sso_on;
}

static int check_issuer(const char *flag, const char *url)
{
    if (strncmp(url, "https://", 8) != 0 && strncmp(url, "http://", 7) != 0) {
        LV_ERROR("%s must be an http(s) URL, not \"%s\"", flag, url);
        return LV_EINVAL;
    }
    if (strncmp(url, "http://", 7) == 0 && strncmp(url, "http://127.", 11) != 0 && strncmp(url, "http://localhost", 16) != 0 &&
        strncmp(url, "http://[::1]", 12) != 0)
        LV_WARN("%s is plain http: tokens and keys travel unprotected; use https", flag);
    return 0;
}

int lv_oidc_start(lv_app_t *app)
{
    const lv_config_t *cfg = &app->cfg;
    const char *jwt_iss = cfg->jwt_issuer[0] ? cfg->jwt_issuer : cfg->oidc_issuer;
    if (!cfg->oidc_issuer[0] && !jwt_iss[0])
        return 0;
    lv_oidc_t *o = calloc(1, sizeof(*o));
    if (!o)
        return LV_ENOMEM;
    int rc = LV_EINVAL;
    if (cfg->oidc_issuer[0]) {
        if (check_issuer("--oidc-issuer", cfg->oidc_issuer) != 0)
            goto fail;
        if (!cfg->oidc_client_id[0]) {
            LV_ERROR("--oidc-issuer needs --oidc-client-id (the client registered with the provider)");
            goto fail;
        }
        snprintf(o->sso.issuer, sizeof(o->sso.issuer), "%s", cfg->oidc_issuer);
        o->sso_on = true;
    }
    if (lv_role_parse(cfg->oidc_default_role, &o->default_role) != 0) {
        LV_ERROR("--oidc-default-role must be admin, user or viewer, not \"%s\"", cfg->oidc_default_role);
        goto fail;
    }
    if (jwt_iss[0]) {
        if (check_issuer("--jwt-issuer", jwt_iss) != 0)
            goto fail;
        snprintf(o->bearer_aud, sizeof(o->bearer_aud), "%s", cfg->jwt_audience[0] ? cfg->jwt_audience : cfg->oidc_client_id);
        if (!o->bearer_aud[0]) {
            LV_ERROR("--jwt-issuer needs --jwt-audience (the aud bearer tokens carry for this server)");
            goto fail;
        }
        if (o->sso_on && strcmp(jwt_iss, o->sso.issuer) == 0) {
            o->bearer = &o->sso;
        } else {
            snprintf(o->jwt_own.issuer, sizeof(o->jwt_own.issuer), "%s", jwt_iss);
            o->bearer = &o->jwt_own;
        }
    }
    if (lv_hmap_init(&o->pending, PENDING_MAX) != 0 || lv_hmap_init(&o->links, 0) != 0) {
        rc = LV_EIO;
        goto fail;
    }
    if (!o->sso_on) { /* bearer only: its provider lives in the sso slot, which the tick fetches */
        o->sso = o->jwt_own;
        o->bearer = &o->sso;
        memset(&o->jwt_own, 0, sizeof(o->jwt_own));
    }
    o->app = app;
    o->refs = 1; /* the tick */
    uv_timer_init(app->loop, &o->tick);
    o->tick.data = o;
    uv_timer_start(&o->tick, on_tick, 0, TICK_MS);
    app->oidc = o;
    LV_INFO("single sign-on: %s%s%s%s", o->sso_on ? "sign-in with " : "", o->sso_on ? o->sso.issuer : "",
            o->bearer ? "; bearer JWTs from " : "", o->bearer ? o->bearer->issuer : "");
    return 0;
fail:
    free(o);
    return rc;
}

static void free_table(lv_hmap_t *m, size_t off)
{
    lv_hmap_iter_t it;
    lv_hmap_node_t *n;
    lv_hmap_iter_init(m, &it);
    while ((n = lv_hmap_iter_next(m, &it))) {
        lv_hmap_remove(m, n);
        free((char *)n - off);
    }
    lv_hmap_free(m);
}

static void tick_closed(uv_handle_t *h)
{
    oidc_unref(h->data);
}

void lv_oidc_stop(lv_app_t *app)
{
    lv_oidc_t *o = app->oidc;
    if (!o)
        return;
    app->oidc = NULL;
    o->app = NULL; /* work still in flight finds this and only frees itself */
    free_table(&o->pending, offsetof(pending_t, node));
    free_table(&o->links, offsetof(link_t, node));
    uv_timer_stop(&o->tick);
    uv_close((uv_handle_t *)&o->tick, tick_closed);
}

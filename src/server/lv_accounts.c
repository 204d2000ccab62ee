/* lv_accounts.c - the serving process's side of accounts (lv_accounts.h): the database opened at
 * start in every mode, the default tenant and first admin, the snapshot kept current by a
 * one-second poll of meta.version, and database work for HTTP handlers and the audit log, none of
 * which ever waits on the loop thread. */
#include "lv_accounts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lv_app.h"
#include "lv_auth.h"
#include "lv_common.h"
#include "lv_engine.h"
#include "lv_fair.h"
#include "lv_hmap.h"
#include "lv_log.h"
#include "lv_queue.h"
#include "lv_rand.h"
#include "lv_wsconn.h"

#define POLL_PERIOD_MS 1000
#define FIRST_ADMIN_NAME "admin"
#define FIRST_ADMIN_PW_BYTES 12 /* 96 bits, printed as 24 hex digits */
#define KEYUSE_BATCH_MAX 512    /* last-use writes per database job; the rest go a second later */

#define MSG_ACCOUNT_DISABLED "Your account was disabled or removed. Ask an administrator."
#define CONNS_CHECK_MS 10000 /* sockets whose key or sign-in expired meanwhile end within this */
#define MSG_SIGNED_OUT "This sign-in ended (signed out here or everywhere, or the password was changed)."
#define MSG_KEY_REVOKED "The API key this connection was opened with was revoked or has expired."

struct lv_accounts {
    lv_app_t *app;
    lv_acct_snap_t *snap;     /* the current snapshot; replaced whole */
    uv_timer_t poll;          /* meta.version, every POLL_PERIOD_MS */
    bool poll_in_flight;      /* one version check at a time */
    bool fair_pending;        /* the start snapshot's weights reach the fair queue at the first tick */
    lv_auth_locks_t *locks;   /* per-account password failures (lv_auth.h) */
    lv_auth_keyuse_t *keyuse; /* API keys' last use, written by flush_keyuse (lv_auth.h) */
    bool keyuse_in_flight;    /* one last-use job at a time */
    uint64_t conns_checked_ms; /* the last check_conns by the clock: keys and sign-ins also expire
                               * with no accounts change */
};

/* ---------- the database thread's side of start ---------- */

int lv_accounts_ensure_default_tenant(lv_db_t *db)
{
    lv_tenant_t *list = NULL;
    size_t n = 0;
    int rc = lv_acct_db_tenant_list(db, &list, &n);
    if (rc)
        return rc;
    bool found = false;
    for (size_t i = 0; i < n && !found; i++)
        found = strcmp(list[i].id, LV_ACCT_DEFAULT_TENANT) == 0;
    free(list);
    if (found)
        return 0;
    lv_tenant_t t;
    memset(&t, 0, sizeof(t));
    snprintf(t.id, sizeof(t.id), "%s", LV_ACCT_DEFAULT_TENANT);
    snprintf(t.name, sizeof(t.name), "Default");
    t.weight = 1;
    t.created_ms = (int64_t)lv_wall_ms();
    rc = lv_acct_db_tenant_put(db, &t);
    return rc == LV_EEXIST ? 0 : rc; /* another process made it meanwhile */
}

/* When no admin remains (a fresh database), make "admin" with a random password and print it once
 * on standard output, never in the log (docs/internals/accounts.md). A user already called admin
 * is promoted and given the new password: the operator who reads this output owns the server. */
static int ensure_admin(lv_db_t *db)
{
    int64_t admins = 0;
    char pw[2 * FIRST_ADMIN_PW_BYTES + 1];
    int rc = lv_acct_db_admin_count(db, &admins);
    if (rc || admins > 0)
        return rc;
    if ((rc = lv_rand_hex(pw, sizeof(pw), FIRST_ADMIN_PW_BYTES)) != 0)
        return rc;
    rc = lv_acct_db_user_add(db, FIRST_ADMIN_NAME, pw, LV_ROLE_ADMIN, LV_ACCT_DEFAULT_TENANT, NULL);
    if (rc == LV_EEXIST) {
        lv_user_t *users = NULL;
        size_t n = 0;
        if ((rc = lv_acct_db_user_list(db, &users, &n)) != 0)
            return rc;
        rc = LV_ENOTFOUND;
        for (size_t i = 0; i < n; i++) {
            if (strcmp(users[i].name, FIRST_ADMIN_NAME) != 0)
                continue;
            users[i].role = LV_ROLE_ADMIN;
            users[i].disabled = false;
            rc = lv_acct_db_user_update(db, &users[i]);
            if (rc == 0)
                rc = lv_acct_db_user_set_password(db, users[i].id, pw);
            if (rc == 0)
                rc = lv_acct_db_user_set_disabled(db, users[i].id, false);
            break;
        }
        free(users);
    }
    if (rc)
        return rc;
    LV_INFO("no administrator existed: made user \"%s\" (its password is printed once on standard output, "
            "never in the log)", FIRST_ADMIN_NAME);
    printf("\nAn administrator account was made: sign in at /login as \"%s\" (`livevlm user passwd %s` sets\n"
           "another password). Its password, shown only this once, is on the next line:\n%s\n",
           FIRST_ADMIN_NAME, FIRST_ADMIN_NAME, pw);
    fflush(stdout);
    return 0;
}

/* Start-up work on a connection of its own opened without a loop, so it runs before the server
 * listens and before the database thread exists: the default tenant, the first admin, the first
 * snapshot. */
static int bootstrap(lv_app_t *app, lv_acct_snap_t **snap)
{
    char err[512] = "";
    lv_db_t *db = NULL;
    int rc = lv_db_open(NULL, app->cfg.db_url, app->cfg.config_dir, &db, err, sizeof(err));
    if (rc) {
        LV_ERROR("accounts database: %s", err);
        return rc;
    }
    if ((rc = lv_accounts_ensure_default_tenant(db)) != 0 || (rc = ensure_admin(db)) != 0 ||
        (rc = lv_acct_db_load(db, snap)) != 0)
        LV_ERROR("accounts database: %s", lv_db_error(db));
    lv_db_close(db);
    return rc;
}

/* ---------- the snapshot ---------- */

lv_acct_snap_t *lv_accounts_snap(lv_app_t *app) { return app->accts ? app->accts->snap : NULL; }

lv_auth_locks_t *lv_accounts_locks(lv_app_t *app) { return app->accts ? app->accts->locks : NULL; }

lv_auth_keyuse_t *lv_accounts_keyuse(lv_app_t *app) { return app->accts ? app->accts->keyuse : NULL; }

/* ---------- sockets whose account or key went away ---------- */

/* The snapshot's usable API keys by id, for one walk over the sockets. The nodes point at the ids
 * inside snap, which outlives the walk. */
typedef struct {
    lv_hmap_t ids;
    lv_hmap_node_t *nodes;
    size_t n, cap;
    int64_t now_ms;
} live_keys_t;

static int count_key(const lv_apikey_t *k, void *ud)
{
    (void)k;
    ((live_keys_t *)ud)->cap++;
    return 0;
}

static int add_key(const lv_apikey_t *k, void *ud)
{
    live_keys_t *lk = ud;
    if (k->revoked || (k->expires_ms > 0 && lk->now_ms >= k->expires_ms) || lk->n >= lk->cap)
        return 0;
    if (lv_hmap_insert_str(&lk->ids, &lk->nodes[lk->n], k->id) == 0)
        lk->n++;
    return 0;
}

/* End c (and, like a kick, its session, so the page does not reconnect into a new one). */
static void end_conn(lv_app_t *app, lv_conn_t *c, const char *code, const char *message)
{
    lv_log_ctx_t lctx = {.tenant = c->principal.tenant, .user = c->principal.user_id, .ip = c->ip};
    LV_INFO_CTX(&lctx, "ending a WebSocket of %s from %s: %s", c->principal.name, c->ip, code);
    if (c->session) {
        lv_engine_session_revoke(app, c->session, code, message);
        if (c->kill)
            return; /* closed with its session */
    }
    lv_conn_send_error(c, code, message, NULL);
    lv_conn_close(c, LV_WS_CLOSE_NORMAL, "access revoked");
}

/* After a new snapshot: every open WebSocket whose user is gone or disabled hears
 * account_disabled, one opened with an API key that is revoked or expired hears key_revoked, and
 * both are closed with their sessions. A change made by the CLI or another frontend reaches live
 * sockets this way within the poll's second. (A cookie's sign-in ending is not checked: the socket
 * does not know which sign-in opened it.) O(sockets + keys), at
 * most once per snapshot. Closing is deferred (lv_conn_close), so the list stays walkable; a
 * socket closed with an earlier one's session is skipped by its kill flag. */
/* A sign-in that is still in the snapshot and not past its expiry. */
static bool login_live(const lv_acct_snap_t *snap, const char *hash, int64_t now_ms)
{
    const lv_login_t *l = lv_acct_snap_login(snap, hash);
    return l && (l->expires_ms <= 0 || now_ms < l->expires_ms);
}

static void check_conns(lv_app_t *app, const lv_acct_snap_t *snap)
{
    live_keys_t lk = {.now_ms = (int64_t)lv_wall_ms()};
    bool keys_ready = false, any_key = false;
    lv_queue_t *q, *next;
    for (q = app->conns.next; q != &app->conns && !any_key; q = q->next)
        any_key = LV_CONTAINER_OF(q, lv_conn_t, app_link)->principal.key_id[0] != '\0';
    if (any_key) {
        lv_acct_snap_each_key(snap, count_key, &lk);
        lk.nodes = calloc(lk.cap ? lk.cap : 1, sizeof(*lk.nodes));
        keys_ready = lk.nodes && lv_hmap_init(&lk.ids, 0) == 0;
        if (keys_ready)
            lv_acct_snap_each_key(snap, add_key, &lk);
        else
            LV_WARN("accounts: no memory to check the sockets opened with API keys against this snapshot");
    }
    for (q = app->conns.next; q != &app->conns; q = next) {
        next = q->next;
        lv_conn_t *c = LV_CONTAINER_OF(q, lv_conn_t, app_link);
        const lv_principal_t *p = &c->principal;
        if (c->kill || !p->user_id[0])
            continue; /* closing already, or no account (--auth token, none) */
        const lv_user_t *u = lv_acct_snap_user(snap, p->user_id);
        if (!u || u->disabled)
            end_conn(app, c, "account_disabled", MSG_ACCOUNT_DISABLED);
        else if (p->cred == LV_CRED_APIKEY && keys_ready && !lv_hmap_find_str(&lk.ids, p->key_id))
            end_conn(app, c, "key_revoked", MSG_KEY_REVOKED);
        else if (p->cred == LV_CRED_COOKIE && p->login_hash[0] && !login_live(snap, p->login_hash, lk.now_ms))
            end_conn(app, c, "signed_out", MSG_SIGNED_OUT);
    }
    if (keys_ready)
        lv_hmap_free(&lk.ids);
    free(lk.nodes);
}

void lv_accounts_check_conns(lv_app_t *app)
{
    if (app->accts && app->accts->snap)
        check_conns(app, app->accts->snap);
}

void lv_accounts_conns_relogin(lv_app_t *app, const char *old_hash, const char *new_hash)
{
    lv_queue_t *q;
    if (!old_hash[0])
        return;
    for (q = app->conns.next; q != &app->conns; q = q->next) {
        lv_principal_t *p = &LV_CONTAINER_OF(q, lv_conn_t, app_link)->principal;
        if (p->cred == LV_CRED_COOKIE && strcmp(p->login_hash, old_hash) == 0)
            snprintf(p->login_hash, sizeof(p->login_hash), "%s", new_hash);
    }
}

/* Install snap unless the current one is newer (a reload started before another's install can
 * finish after it). Equal versions keep the current one: it may hold this process's own changes
 * (lv_acct_snap_put_login) on top of the same database state. */
static bool install(struct lv_accounts *a, lv_acct_snap_t *snap)
{
    if (a->snap && lv_acct_snap_version(snap) <= lv_acct_snap_version(a->snap)) {
        lv_acct_snap_free(snap);
        return false;
    }
    lv_acct_snap_free(a->snap);
    a->snap = snap;
    return true;
}

void lv_accounts_install(lv_app_t *app, lv_acct_snap_t *snap)
{
    if (!app->accts) {
        lv_acct_snap_free(snap);
        return;
    }
    if (install(app->accts, snap)) {
        lv_fair_apply(app);
        check_conns(app, app->accts->snap);
    }
}

/* One poll: the version, and a whole new snapshot when it moved. */
typedef struct {
    lv_app_t *app;
    int64_t have;        /* the current snapshot's version when the job was queued */
    int64_t got;
    lv_acct_snap_t *snap; /* built on the database thread when got != have */
} poll_job_t;

static int poll_work(lv_db_t *db, void *ud)
{
    poll_job_t *j = ud;
    int rc = lv_acct_db_version(db, &j->got);
    if (rc == 0 && j->got != j->have)
        rc = lv_acct_db_load(db, &j->snap);
    return rc;
}

static void poll_done(int rc, void *ud)
{
    poll_job_t *j = ud;
    lv_app_t *app = j->app;
    if (app->accts)
        app->accts->poll_in_flight = false;
    if (rc)
        LV_WARN("accounts: reloading from the database failed: %s", lv_strerror(rc));
    if (j->snap) {
        LV_DEBUG("accounts: version %lld -> %lld, snapshot replaced", (long long)j->have, (long long)j->got);
        lv_accounts_install(app, j->snap); /* frees it when accounts stopped meanwhile */
    }
    free(j);
}

static void poll_now(lv_app_t *app)
{
    struct lv_accounts *a = app->accts;
    if (!a || a->poll_in_flight || !app->db)
        return;
    poll_job_t *j = calloc(1, sizeof(*j));
    if (!j)
        return;
    j->app = app;
    j->have = a->snap ? lv_acct_snap_version(a->snap) : -1;
    if (lv_db_submit(app->db, poll_work, poll_done, j) != 0) {
        free(j); /* a full queue: the next tick asks again */
        return;
    }
    a->poll_in_flight = true;
}

/* ---------- API keys' last use ---------- */

/* One batch of last-use times (lv_auth.h lv_auth_keyuse_take), written in one transaction. No
 * version bump (lv_acct_db_key_touch): the snapshot does not hold them, so no frontend reloads. */
typedef struct {
    lv_app_t *app;
    size_t n;
    lv_auth_keyuse_item_t items[KEYUSE_BATCH_MAX];
} keyuse_job_t;

static int keyuse_work(lv_db_t *db, void *ud)
{
    keyuse_job_t *j = ud;
    int rc = lv_db_begin(db);
    for (size_t i = 0; rc == 0 && i < j->n; i++)
        rc = lv_acct_db_key_touch(db, j->items[i].key_id, j->items[i].used_ms);
    if (rc == 0)
        rc = lv_db_commit(db);
    else
        lv_db_rollback(db);
    return rc;
}

static void keyuse_done(int rc, void *ud)
{
    keyuse_job_t *j = ud;
    if (j->app->accts)
        j->app->accts->keyuse_in_flight = false;
    if (rc) /* lost, not retried: the next use of each key (a minute later at most) writes again */
        LV_WARN("accounts: %zu API key last-use time(s) were not written: %s", j->n, lv_strerror(rc));
    free(j);
}

/* Write the last uses that are due. now_ms UINT64_MAX: everything (at stop). */
static void flush_keyuse(lv_app_t *app, struct lv_accounts *a, uint64_t now_ms)
{
    if (a->keyuse_in_flight || !app->db || lv_auth_keyuse_count(a->keyuse) == 0)
        return;
    keyuse_job_t *j = malloc(sizeof(*j));
    if (!j)
        return;
    j->app = app;
    j->n = lv_auth_keyuse_take(a->keyuse, now_ms, j->items, KEYUSE_BATCH_MAX);
    if (j->n == 0) {
        free(j);
        return;
    }
    if (lv_db_submit(app->db, keyuse_work, keyuse_done, j) != 0) {
        LV_WARN("accounts: %zu API key last-use time(s) dropped: the database queue is full", j->n);
        free(j);
        return;
    }
    a->keyuse_in_flight = true;
}

static void on_poll(uv_timer_t *t)
{
    lv_app_t *app = t->data;
    struct lv_accounts *a = app->accts;
    if (a && a->fair_pending) {
        a->fair_pending = false;
        lv_fair_apply(app);
    }
    if (a)
        flush_keyuse(app, a, lv_now_ms());
    if (a && a->snap && lv_now_ms() - a->conns_checked_ms >= CONNS_CHECK_MS) {
        a->conns_checked_ms = lv_now_ms();
        check_conns(app, a->snap);
    }
    poll_now(app);
}

void lv_accounts_reload(lv_app_t *app) { poll_now(app); }

/* ---------- start and stop ---------- */

int lv_accounts_start(lv_app_t *app)
{
    char err[512] = "";
    lv_acct_snap_t *snap = NULL;
    bool accounts = app->cfg.auth_mode == LV_AUTH_ACCOUNTS || app->cfg.auth_mode == LV_AUTH_PROXY;
    int rc;
    if ((rc = lv_auth_ensure_dir(app->cfg.config_dir)) != 0) {
        LV_ERROR("cannot make the config directory %s", app->cfg.config_dir);
        return rc;
    }
    if (accounts && (rc = bootstrap(app, &snap)) != 0)
        return rc;
    if ((rc = lv_db_open(app->loop, app->cfg.db_url, app->cfg.config_dir, &app->db, err, sizeof(err))) != 0) {
        LV_ERROR("accounts database: %s", err);
        lv_acct_snap_free(snap);
        return rc;
    }
    LV_INFO("accounts database %s", lv_db_url_clean(app->db));
    if (!accounts)
        return 0;
    struct lv_accounts *a = calloc(1, sizeof(*a));
    if (!a || !(a->locks = lv_auth_locks_create(LV_AUTH_LOCKS_MAX)) ||
        !(a->keyuse = lv_auth_keyuse_create(LV_AUTH_KEYUSE_MAX))) {
        if (a)
            lv_auth_locks_free(a->locks);
        free(a);
        lv_acct_snap_free(snap);
        return LV_ENOMEM;
    }
    a->app = app;
    a->snap = snap;
    a->fair_pending = true; /* the fair queue starts after this: weights reach it at the first tick */
    uv_timer_init(app->loop, &a->poll);
    a->poll.data = app;
    uv_timer_start(&a->poll, on_poll, 0, POLL_PERIOD_MS);
    app->accts = a;
    LV_INFO("accounts: %zu user(s), version %lld", lv_acct_snap_users(snap), (long long)lv_acct_snap_version(snap));
    return 0;
}

static void on_poll_closed(uv_handle_t *h)
{
    struct lv_accounts *a = LV_CONTAINER_OF((uv_timer_t *)h, struct lv_accounts, poll);
    lv_acct_snap_free(a->snap);
    lv_auth_locks_free(a->locks);
    lv_auth_keyuse_free(a->keyuse);
    free(a);
}

void lv_accounts_stop(lv_app_t *app)
{
    struct lv_accounts *a = app->accts;
    /* the timer first, so no poll is queued while the queue drains; then the queued jobs finish
     * (their done callbacks see app->accts NULL and install nothing) */
    if (a) {
        a->keyuse_in_flight = false; /* the last uses go in one more job, behind any in flight */
        flush_keyuse(app, a, UINT64_MAX);
    }
    app->accts = NULL;
    if (a) {
        uv_timer_stop(&a->poll);
        uv_close((uv_handle_t *)&a->poll, on_poll_closed);
    }
    lv_db_close(app->db);
    app->db = NULL;
}

/* ---------- database work for requests ---------- */

typedef struct {
    lv_app_t *app;
    lv_req_t *r; /* NULL once the client left */
    lv_db_work_fn work;
    lv_accounts_req_done_fn done;
    void *ud;
} req_job_t;

static int req_work(lv_db_t *db, void *ud)
{
    req_job_t *j = ud;
    return j->work(db, j->ud);
}

static void req_done(int rc, void *ud)
{
    req_job_t *j = ud;
    lv_req_t *r = j->r;
    if (r) {
        /* the handler answers (or waits again) from done */
        lv_queue_remove(&r->wait_link);
        r->waiting = false;
        r->on_gone = NULL;
        r->user = NULL;
    }
    j->done(j->app, r, rc, j->ud);
    free(j);
}

static void req_gone(lv_req_t *r)
{
    req_job_t *j = r->user;
    if (j)
        j->r = NULL; /* the job still runs; its done hears r NULL */
}

int lv_accounts_submit_req(lv_app_t *app, lv_req_t *r, lv_db_work_fn work, lv_accounts_req_done_fn done, void *ud)
{
    req_job_t *j = calloc(1, sizeof(*j));
    int rc = j ? 0 : LV_ENOMEM;
    if (j) {
        *j = (req_job_t){.app = app, .r = r, .work = work, .done = done, .ud = ud};
        rc = app->db ? lv_db_submit(app->db, req_work, req_done, j) : LV_ECLOSED;
    }
    if (rc) {
        free(j);
        lv_req_respond_error(r, 503, "busy", rc == LV_ELIMIT ? "the accounts database is busy; try again in a moment"
                                                             : "the accounts database is not available");
        return rc == LV_ENOMEM ? LV_ELIMIT : rc;
    }
    /* no queue of its own: the link only has to be a valid (self-linked) node for lv_httpd */
    lv_queue_init(&r->wait_link);
    r->waiting = true;
    r->on_gone = req_gone;
    r->user = j;
    return 0;
}

/* ---------- the audit log ---------- */

static int audit_work(lv_db_t *db, void *ud) { return lv_acct_db_audit_add(db, ud); }

static void audit_done(int rc, void *ud)
{
    lv_audit_t *a = ud;
    if (rc)
        LV_WARN("audit record %s %s was not written: %s", a->action, a->target, lv_strerror(rc));
    free(a);
}

void lv_accounts_audit(lv_app_t *app, const lv_principal_t *actor, const char *ip, const char *action,
                       const char *target, const char *detail)
{
    lv_audit_t *a = app->db ? calloc(1, sizeof(*a)) : NULL;
    if (!a)
        return;
    a->t_ms = (int64_t)lv_wall_ms();
    snprintf(a->actor, sizeof(a->actor), "%s",
             actor ? (actor->name[0] ? actor->name : actor->key) : "server");
    snprintf(a->ip, sizeof(a->ip), "%s", ip ? ip : "");
    snprintf(a->action, sizeof(a->action), "%s", action ? action : "");
    snprintf(a->target, sizeof(a->target), "%s", target ? target : "");
    snprintf(a->detail, sizeof(a->detail), "%s", detail ? detail : "");
    if (lv_db_submit(app->db, audit_work, audit_done, a) != 0) {
        LV_WARN("audit record %s %s dropped: the database queue is full", a->action, a->target);
        free(a);
    }
}

/* lv_acct.c - accounts in the database (users, keys, sign-ins, tenants, usage, audit) and the
 * snapshot the loop reads them from (docs/internals/accounts.md). Statements run on the database
 * thread; the snapshot is built there and then owned by the loop. */
#include "lv_acct.h"

#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lv_common.h"
#include "lv_rand.h"
#include "lv_secret.h"

#define PW_MAX_BYTES 1024               /* longer passwords are refused (argon2 would take them) */
#define SNAP_LOGINS_MAX 1000000         /* sign-ins held in memory */
#define KEEP_DEAD_KEYS_MS (30ll * 86400 * 1000) /* revoked/expired keys stay looked-up this long */
#define USAGE_ROWS_MAX 100000

/* ---------- small helpers ---------- */

static void cp(char *dst, size_t cap, const char *src) { snprintf(dst, cap, "%s", src ? src : ""); }

typedef struct {
    char s[24];
} num_t;

static const char *num(num_t *b, int64_t v)
{
    snprintf(b->s, sizeof(b->s), "%lld", (long long)v);
    return b->s;
}

static int64_t now_ms(void) { return (int64_t)lv_wall_ms(); }

static int bump_version(lv_db_t *db)
{
    return lv_db_exec(db, "UPDATE meta SET v = v + 1 WHERE k = 'version'", 0, NULL, NULL);
}

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;
static int sodium_ok;
static char dummy_hash[crypto_pwhash_STRBYTES];

/* Once: libsodium, and a hash of a random password to verify against when the user is unknown or
 * has none, so that case costs the same argon2id time as a wrong password. */
static void sodium_setup(void)
{
    char pw[33];
    if (sodium_init() < 0 || lv_rand_hex(pw, sizeof(pw), 16))
        return;
    if (crypto_pwhash_str(dummy_hash, pw, strlen(pw), crypto_pwhash_OPSLIMIT_INTERACTIVE,
                          crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0)
        return;
    sodium_ok = 1;
}

static int hash_password(lv_db_t *db, const char *pw, char out[crypto_pwhash_STRBYTES])
{
    pthread_once(&sodium_once, sodium_setup);
    if (!sodium_ok)
        return LV_ENOMEM; /* argon2id could not get its memory, or no randomness */
    size_t len = strlen(pw);
    if (len > PW_MAX_BYTES)
        return LV_EINVAL;
    if (crypto_pwhash_str(out, pw, len, crypto_pwhash_OPSLIMIT_INTERACTIVE, crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0)
        return LV_ENOMEM;
    return 0;
}

void lv_acct_sha256_hex(const char *s, size_t len, char out[LV_ACCT_HASH_HEX])
{
    lv_secret_hash_n(s, len, out); /* the project's one SHA-256 hex (lv_secret.h) */
}

int lv_acct_check_name(const char *name)
{
    size_t len = name ? strlen(name) : 0;
    if (len < 1 || len > LV_ACCT_NAME_MAX - 1)
        return LV_EINVAL;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '@' || c == '+' || c == '-'))
            return LV_EINVAL;
    }
    return 0;
}

int lv_acct_check_id(const char *id)
{
    size_t len = id ? strlen(id) : 0;
    if (len < 1 || len > LV_ACCT_ID_MAX - 1)
        return LV_EINVAL;
    for (size_t i = 0; i < len; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return LV_EINVAL;
    }
    return 0;
}

/* Free text (display names, key names, audit fields): bounded, no control characters. */
static int check_text(const char *s, size_t cap)
{
    size_t len = s ? strlen(s) : 0;
    if (len >= cap)
        return LV_EINVAL;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return LV_EINVAL;
    return 0;
}

static bool is_hex64(const char *s)
{
    if (!s || strlen(s) != 64)
        return false;
    for (size_t i = 0; i < 64; i++)
        if (lv_hex_digit((unsigned char)s[i]) < 0 || (s[i] >= 'A' && s[i] <= 'F'))
            return false;
    return true;
}

const char *lv_role_name(lv_role_t r)
{
    switch (r) {
    case LV_ROLE_VIEWER: return "viewer";
    case LV_ROLE_USER: return "user";
    case LV_ROLE_ADMIN: return "admin";
    }
    return "?";
}

int lv_role_parse(const char *s, lv_role_t *out)
{
    static const lv_role_t all[] = {LV_ROLE_VIEWER, LV_ROLE_USER, LV_ROLE_ADMIN};
    for (size_t i = 0; s && i < LV_ARRAY_LEN(all); i++)
        if (!strcmp(s, lv_role_name(all[i]))) {
            *out = all[i];
            return 0;
        }
    return LV_EINVAL;
}

static bool role_ok(lv_role_t r) { return r == LV_ROLE_VIEWER || r == LV_ROLE_USER || r == LV_ROLE_ADMIN; }

static int check_quota(const lv_quota_t *q)
{
    return q->fpm < 0 || q->answers_day < 0 || q->tokens_day < 0 || q->sessions < 0 ? LV_EINVAL : 0;
}

/* ---------- rows to structs ---------- */

#define USER_COLS                                                                                               \
    "id, name, tenant_id, role, disabled, CASE WHEN pw_hash IS NULL THEN 0 ELSE 1 END, weight, q_fpm, "       \
    "q_answers_day, q_tokens_day, q_sessions, oidc_iss, oidc_sub, created_ms"
#define USER_NCOLS 14
#define TENANT_COLS                                                                                             \
    "id, name, weight, backends, models, q_fpm, q_answers_day, q_tokens_day, q_sessions, created_ms"
#define KEY_COLS "id, user_id, name, prefix, hash, scope, expires_ms, last_used_ms, revoked_ms, created_ms"
#define LOGIN_COLS "hash, user_id, csrf, expires_ms"
#define USAGE_COLS                                                                                              \
    "answer_id, t_ms, tenant_id, user_id, session_id, backend, model, image_bytes, prompt_tokens, "           \
    "completion_tokens, backend_ms, outcome"
#define AUDIT_COLS "t_ms, actor, ip, action, target, detail"

static void row_user(const lv_db_rows_t *r, size_t i, lv_user_t *u)
{
    memset(u, 0, sizeof(*u));
    cp(u->id, sizeof(u->id), lv_db_cell(r, i, 0));
    cp(u->name, sizeof(u->name), lv_db_cell(r, i, 1));
    cp(u->tenant, sizeof(u->tenant), lv_db_cell(r, i, 2));
    u->role = (lv_role_t)lv_db_int(r, i, 3, LV_ROLE_VIEWER);
    if (!role_ok(u->role))
        u->role = LV_ROLE_VIEWER;
    u->disabled = lv_db_int(r, i, 4, 1) != 0;
    u->has_password = lv_db_int(r, i, 5, 0) != 0;
    u->weight = (int)lv_db_int(r, i, 6, 1);
    u->quota.fpm = lv_db_int(r, i, 7, 0);
    u->quota.answers_day = lv_db_int(r, i, 8, 0);
    u->quota.tokens_day = lv_db_int(r, i, 9, 0);
    u->quota.sessions = lv_db_int(r, i, 10, 0);
    cp(u->oidc_iss, sizeof(u->oidc_iss), lv_db_cell(r, i, 11));
    cp(u->oidc_sub, sizeof(u->oidc_sub), lv_db_cell(r, i, 12));
    u->created_ms = lv_db_int(r, i, 13, 0);
}

static void row_tenant(const lv_db_rows_t *r, size_t i, lv_tenant_t *t)
{
    memset(t, 0, sizeof(*t));
    cp(t->id, sizeof(t->id), lv_db_cell(r, i, 0));
    cp(t->name, sizeof(t->name), lv_db_cell(r, i, 1));
    t->weight = (int)lv_db_int(r, i, 2, 1);
    cp(t->backends, sizeof(t->backends), lv_db_cell(r, i, 3));
    cp(t->models, sizeof(t->models), lv_db_cell(r, i, 4));
    t->quota.fpm = lv_db_int(r, i, 5, 0);
    t->quota.answers_day = lv_db_int(r, i, 6, 0);
    t->quota.tokens_day = lv_db_int(r, i, 7, 0);
    t->quota.sessions = lv_db_int(r, i, 8, 0);
    t->created_ms = lv_db_int(r, i, 9, 0);
}

static void row_key(const lv_db_rows_t *r, size_t i, lv_apikey_t *k)
{
    memset(k, 0, sizeof(*k));
    cp(k->id, sizeof(k->id), lv_db_cell(r, i, 0));
    cp(k->user_id, sizeof(k->user_id), lv_db_cell(r, i, 1));
    cp(k->name, sizeof(k->name), lv_db_cell(r, i, 2));
    cp(k->prefix, sizeof(k->prefix), lv_db_cell(r, i, 3));
    cp(k->hash, sizeof(k->hash), lv_db_cell(r, i, 4));
    k->scope = (int)lv_db_int(r, i, 5, 0);
    k->expires_ms = lv_db_int(r, i, 6, 0);
    k->last_used_ms = lv_db_int(r, i, 7, 0);
    k->revoked = lv_db_int(r, i, 8, 0) != 0;
    k->created_ms = lv_db_int(r, i, 9, 0);
}

static void row_login(const lv_db_rows_t *r, size_t i, lv_login_t *l)
{
    memset(l, 0, sizeof(*l));
    cp(l->hash, sizeof(l->hash), lv_db_cell(r, i, 0));
    cp(l->user_id, sizeof(l->user_id), lv_db_cell(r, i, 1));
    cp(l->csrf, sizeof(l->csrf), lv_db_cell(r, i, 2));
    l->expires_ms = lv_db_int(r, i, 3, 0);
}

static void row_usage(const lv_db_rows_t *r, size_t i, lv_usage_t *u)
{
    memset(u, 0, sizeof(*u));
    cp(u->answer_id, sizeof(u->answer_id), lv_db_cell(r, i, 0));
    u->t_ms = lv_db_int(r, i, 1, 0);
    cp(u->tenant, sizeof(u->tenant), lv_db_cell(r, i, 2));
    cp(u->user_id, sizeof(u->user_id), lv_db_cell(r, i, 3));
    cp(u->session_id, sizeof(u->session_id), lv_db_cell(r, i, 4));
    cp(u->backend, sizeof(u->backend), lv_db_cell(r, i, 5));
    cp(u->model, sizeof(u->model), lv_db_cell(r, i, 6));
    u->image_bytes = lv_db_int(r, i, 7, 0);
    u->prompt_tokens = lv_db_int(r, i, 8, 0);
    u->completion_tokens = lv_db_int(r, i, 9, 0);
    u->backend_ms = lv_db_int(r, i, 10, 0);
    cp(u->outcome, sizeof(u->outcome), lv_db_cell(r, i, 11));
}

static void row_audit(const lv_db_rows_t *r, size_t i, lv_audit_t *a)
{
    memset(a, 0, sizeof(*a));
    a->t_ms = lv_db_int(r, i, 0, 0);
    cp(a->actor, sizeof(a->actor), lv_db_cell(r, i, 1));
    cp(a->ip, sizeof(a->ip), lv_db_cell(r, i, 2));
    cp(a->action, sizeof(a->action), lv_db_cell(r, i, 3));
    cp(a->target, sizeof(a->target), lv_db_cell(r, i, 4));
    cp(a->detail, sizeof(a->detail), lv_db_cell(r, i, 5));
}

/* A query's rows as a malloc'd array of T through the row function (n may be 0: *out NULL). */
#define ROWS_TO_ARRAY(res_, type, fn, out, n)                                                                   \
    do {                                                                                                        \
        *(out) = NULL;                                                                                          \
        *(n) = 0;                                                                                               \
        if ((res_)->rows == 0)                                                                                  \
            break;                                                                                              \
        type *arr_ = calloc((res_)->rows, sizeof(type));                                                        \
        if (!arr_) {                                                                                            \
            rc = LV_ENOMEM;                                                                                     \
            break;                                                                                              \
        }                                                                                                       \
        for (size_t i_ = 0; i_ < (res_)->rows; i_++)                                                            \
            fn((res_), i_, &arr_[i_]);                                                                          \
        *(out) = arr_;                                                                                          \
        *(n) = (res_)->rows;                                                                                    \
    } while (0)

/* ---------- the snapshot ---------- */

typedef struct {
    lv_hmap_node_t node;
    lv_tenant_t t;
} snap_tenant_t;

typedef struct {
    lv_hmap_node_t by_id, by_name;
    lv_user_t u;
} snap_user_t;

typedef struct {
    lv_hmap_node_t node;
    lv_apikey_t k;
} snap_key_t;

typedef struct {
    lv_hmap_node_t node;
    lv_login_t l;
} snap_login_t;

struct lv_acct_snap {
    int64_t version;
    snap_tenant_t *tenants; /* arrays in the database's order (tenants by id, users by name) */
    size_t n_tenants;
    snap_user_t *users;
    size_t n_users;
    snap_key_t *keys;
    size_t n_keys;
    lv_hmap_t tenant_map, user_map, name_map, key_map, login_map; /* login entries malloc'd one by one */
};

void lv_acct_snap_free(lv_acct_snap_t *s)
{
    if (!s)
        return;
    lv_hmap_iter_t it;
    lv_hmap_iter_init(&s->login_map, &it);
    for (lv_hmap_node_t *n; (n = lv_hmap_iter_next(&s->login_map, &it));) {
        lv_hmap_remove(&s->login_map, n);
        free(LV_CONTAINER_OF(n, snap_login_t, node));
    }
    lv_hmap_free(&s->tenant_map);
    lv_hmap_free(&s->user_map);
    lv_hmap_free(&s->name_map);
    lv_hmap_free(&s->key_map);
    lv_hmap_free(&s->login_map);
    free(s->tenants);
    free(s->users);
    free(s->keys);
    free(s);
}

int64_t lv_acct_snap_version(const lv_acct_snap_t *s) { return s ? s->version : 0; }

const lv_tenant_t *lv_acct_snap_tenant(const lv_acct_snap_t *s, const char *id)
{
    lv_hmap_node_t *n = s && id ? lv_hmap_find_str(&s->tenant_map, id) : NULL;
    return n ? &LV_CONTAINER_OF(n, snap_tenant_t, node)->t : NULL;
}

const lv_user_t *lv_acct_snap_user(const lv_acct_snap_t *s, const char *id)
{
    lv_hmap_node_t *n = s && id ? lv_hmap_find_str(&s->user_map, id) : NULL;
    return n ? &LV_CONTAINER_OF(n, snap_user_t, by_id)->u : NULL;
}

const lv_user_t *lv_acct_snap_user_by_name(const lv_acct_snap_t *s, const char *name)
{
    lv_hmap_node_t *n = s && name ? lv_hmap_find_str(&s->name_map, name) : NULL;
    return n ? &LV_CONTAINER_OF(n, snap_user_t, by_name)->u : NULL;
}

const lv_apikey_t *lv_acct_snap_key(const lv_acct_snap_t *s, const char *hash)
{
    lv_hmap_node_t *n = s && hash ? lv_hmap_find_str(&s->key_map, hash) : NULL;
    return n ? &LV_CONTAINER_OF(n, snap_key_t, node)->k : NULL;
}

const lv_login_t *lv_acct_snap_login(const lv_acct_snap_t *s, const char *hash)
{
    lv_hmap_node_t *n = s && hash ? lv_hmap_find_str(&s->login_map, hash) : NULL;
    return n ? &LV_CONTAINER_OF(n, snap_login_t, node)->l : NULL;
}

int lv_acct_snap_put_login(lv_acct_snap_t *s, const lv_login_t *l)
{
    if (!s || !l || !is_hex64(l->hash))
        return LV_EINVAL;
    lv_hmap_node_t *n = lv_hmap_find_str(&s->login_map, l->hash);
    if (n) { /* same hash: the key bytes do not change, the rest is updated */
        LV_CONTAINER_OF(n, snap_login_t, node)->l = *l;
        return 0;
    }
    snap_login_t *e = malloc(sizeof(*e));
    if (!e)
        return LV_ENOMEM;
    e->l = *l;
    int rc = lv_hmap_insert_str(&s->login_map, &e->node, e->l.hash);
    if (rc)
        free(e);
    return rc;
}

void lv_acct_snap_drop_login(lv_acct_snap_t *s, const char *hash)
{
    lv_hmap_node_t *n = s && hash ? lv_hmap_find_str(&s->login_map, hash) : NULL;
    if (!n)
        return;
    lv_hmap_remove(&s->login_map, n);
    free(LV_CONTAINER_OF(n, snap_login_t, node));
}

void lv_acct_snap_drop_user_logins(lv_acct_snap_t *s, const char *user_id)
{
    if (!s || !user_id)
        return;
    lv_hmap_iter_t it;
    lv_hmap_iter_init(&s->login_map, &it);
    for (lv_hmap_node_t *n; (n = lv_hmap_iter_next(&s->login_map, &it));) {
        snap_login_t *e = LV_CONTAINER_OF(n, snap_login_t, node);
        if (!strcmp(e->l.user_id, user_id)) {
            lv_hmap_remove(&s->login_map, n);
            free(e);
        }
    }
}

void lv_acct_snap_each_tenant(const lv_acct_snap_t *s, int (*fn)(const lv_tenant_t *t, void *ud), void *ud)
{
    for (size_t i = 0; s && i < s->n_tenants; i++)
        if (fn(&s->tenants[i].t, ud))
            return;
}

void lv_acct_snap_each_user(const lv_acct_snap_t *s, int (*fn)(const lv_user_t *u, void *ud), void *ud)
{
    for (size_t i = 0; s && i < s->n_users; i++)
        if (fn(&s->users[i].u, ud))
            return;
}

void lv_acct_snap_each_key(const lv_acct_snap_t *s, int (*fn)(const lv_apikey_t *k, void *ud), void *ud)
{
    for (size_t i = 0; s && i < s->n_keys; i++)
        if (fn(&s->keys[i].k, ud))
            return;
}

size_t lv_acct_snap_users(const lv_acct_snap_t *s) { return s ? s->n_users : 0; }

int lv_acct_db_version(lv_db_t *db, int64_t *out)
{
    lv_db_rows_t r;
    int rc = lv_db_exec(db, "SELECT v FROM meta WHERE k = 'version'", 0, NULL, &r);
    if (rc)
        return rc;
    if (r.rows != 1)
        rc = lv_db_fail(db, LV_EIO, "meta has no version row");
    else
        *out = lv_db_int(&r, 0, 0, 0);
    lv_db_rows_free(&r);
    return rc;
}

int lv_acct_db_load(lv_db_t *db, lv_acct_snap_t **out)
{
    lv_db_rows_t r = {0};
    num_t b1;
    int rc;
    *out = NULL;
    lv_acct_snap_t *s = calloc(1, sizeof(*s));
    if (!s)
        return LV_ENOMEM;
    if ((rc = lv_hmap_init(&s->tenant_map, 0)) || (rc = lv_hmap_init(&s->user_map, 0)) ||
        (rc = lv_hmap_init(&s->name_map, 0)) || (rc = lv_hmap_init(&s->key_map, 0)) ||
        (rc = lv_hmap_init(&s->login_map, SNAP_LOGINS_MAX)))
        goto out;
    /* The version first: a change that lands while the tables are read makes the snapshot newer
     * than its version says, and the next poll reloads once more; never the other way round. */
    if ((rc = lv_acct_db_version(db, &s->version)))
        goto out;

    if ((rc = lv_db_exec(db, "SELECT " TENANT_COLS " FROM tenants ORDER BY id", 0, NULL, &r)))
        goto out;
    if (r.rows && !(s->tenants = calloc(r.rows, sizeof(*s->tenants)))) {
        rc = LV_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < r.rows; i++) {
        snap_tenant_t *e = &s->tenants[s->n_tenants];
        row_tenant(&r, i, &e->t);
        if (lv_hmap_insert_str(&s->tenant_map, &e->node, e->t.id) == 0)
            s->n_tenants++;
    }
    lv_db_rows_free(&r);

    if ((rc = lv_db_exec(db, "SELECT " USER_COLS " FROM users ORDER BY name", 0, NULL, &r)))
        goto out;
    if (r.rows && !(s->users = calloc(r.rows, sizeof(*s->users)))) {
        rc = LV_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < r.rows; i++) {
        snap_user_t *e = &s->users[s->n_users];
        row_user(&r, i, &e->u);
        if (lv_hmap_insert_str(&s->user_map, &e->by_id, e->u.id))
            continue;
        if (lv_hmap_insert_str(&s->name_map, &e->by_name, e->u.name)) {
            lv_hmap_remove(&s->user_map, &e->by_id);
            continue;
        }
        s->n_users++;
    }
    lv_db_rows_free(&r);

    /* Revoked and expired keys stay a while, so a request with one hears why it is refused. */
    const char *pk[] = {num(&b1, now_ms() - KEEP_DEAD_KEYS_MS)};
    rc = lv_db_exec(db,
                    "SELECT " KEY_COLS " FROM api_keys WHERE (revoked_ms = 0 OR revoked_ms > $1) "
                    "AND (expires_ms = 0 OR expires_ms > $1)",
                    1, pk, &r);
    if (rc)
        goto out;
    if (r.rows && !(s->keys = calloc(r.rows, sizeof(*s->keys)))) {
        rc = LV_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < r.rows; i++) {
        snap_key_t *e = &s->keys[s->n_keys];
        row_key(&r, i, &e->k);
        if (lv_hmap_insert_str(&s->key_map, &e->node, e->k.hash) == 0)
            s->n_keys++;
    }
    lv_db_rows_free(&r);

    const char *pl[] = {num(&b1, now_ms())};
    if ((rc = lv_db_exec(db, "SELECT " LOGIN_COLS " FROM logins WHERE expires_ms > $1", 1, pl, &r)))
        goto out;
    for (size_t i = 0; i < r.rows; i++) {
        lv_login_t l;
        row_login(&r, i, &l);
        if ((rc = lv_acct_snap_put_login(s, &l)) == LV_ENOMEM || rc == LV_ELIMIT)
            goto out;
        rc = 0;
    }
out:
    lv_db_rows_free(&r);
    if (rc) {
        lv_acct_snap_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

/* ---------- users ---------- */

static int user_get(lv_db_t *db, const char *where, const char *arg, lv_user_t *u)
{
    lv_db_rows_t r;
    char sql[512];
    snprintf(sql, sizeof(sql), "SELECT " USER_COLS " FROM users WHERE %s", where);
    const char *p[] = {arg};
    int rc = lv_db_exec(db, sql, 1, p, &r);
    if (rc)
        return rc;
    if (r.rows == 0)
        rc = LV_ENOTFOUND;
    else if (u)
        row_user(&r, 0, u);
    lv_db_rows_free(&r);
    return rc;
}

/* INSERT a user (inside the caller's transaction). pw_hash NULL: no password. */
static int user_insert(lv_db_t *db, const char *name, const char *pw_hash, lv_role_t role, const char *tenant,
                       const char *iss, const char *sub, lv_user_t *out)
{
    char id[17];
    num_t b_role, b_now;
    int64_t t = now_ms();
    int rc = lv_rand_hex(id, sizeof(id), 8);
    if (rc)
        return lv_db_fail(db, rc, "no random bytes for a user id");
    const char *p[] = {id, name, tenant, num(&b_role, role), pw_hash, iss, sub, num(&b_now, t)};
    rc = lv_db_exec(db,
                    "INSERT INTO users (id, name, tenant_id, role, disabled, pw_hash, weight, oidc_iss, oidc_sub, "
                    "created_ms) VALUES ($1, $2, $3, $4, 0, $5, 1, $6, $7, $8)",
                    8, p, NULL);
    if (rc == LV_EEXIST)
        return lv_db_fail(db, rc, "a user named '%s' exists already", name);
    if (rc == LV_ENOTFOUND)
        return lv_db_fail(db, rc, "no tenant '%s'", tenant);
    if (rc)
        return rc;
    if (out) {
        memset(out, 0, sizeof(*out));
        cp(out->id, sizeof(out->id), id);
        cp(out->name, sizeof(out->name), name);
        cp(out->tenant, sizeof(out->tenant), tenant);
        out->role = role;
        out->has_password = pw_hash != NULL;
        out->weight = 1;
        cp(out->oidc_iss, sizeof(out->oidc_iss), iss);
        cp(out->oidc_sub, sizeof(out->oidc_sub), sub);
        out->created_ms = t;
    }
    return 0;
}

int lv_acct_db_user_add(lv_db_t *db, const char *name, const char *pw, lv_role_t role, const char *tenant,
                        lv_user_t *out)
{
    char h[crypto_pwhash_STRBYTES];
    int rc;
    if (!tenant || !*tenant)
        tenant = LV_ACCT_DEFAULT_TENANT;
    if (lv_acct_check_name(name))
        return lv_db_fail(db, LV_EINVAL, "a user name is 1 to 64 of a-z A-Z 0-9 . _ @ + -");
    if (!role_ok(role))
        return lv_db_fail(db, LV_EINVAL, "the role must be admin, user or viewer");
    if (lv_acct_check_id(tenant))
        return lv_db_fail(db, LV_EINVAL, "a tenant id is 1 to 32 of a-z 0-9 _ -");
    bool has_pw = pw && *pw;
    if (has_pw && (rc = hash_password(db, pw, h)))
        return lv_db_fail(db, rc, "cannot take this password (longer than %d bytes, or out of memory)", PW_MAX_BYTES);
    if ((rc = lv_db_begin(db)))
        return rc;
    if ((rc = user_insert(db, name, has_pw ? h : NULL, role, tenant, NULL, NULL, out)))
        goto out;
    if ((rc = bump_version(db)))
        goto out;
    rc = lv_db_commit(db);
out:
    lv_db_rollback(db);
    sodium_memzero(h, sizeof(h));
    return rc;
}

int lv_acct_db_user_update(lv_db_t *db, const lv_user_t *u)
{
    lv_db_rows_t r = {0};
    num_t b[7];
    int rc;
    if (lv_acct_check_name(u->name))
        return lv_db_fail(db, LV_EINVAL, "a user name is 1 to 64 of a-z A-Z 0-9 . _ @ + -");
    if (lv_acct_check_id(u->tenant))
        return lv_db_fail(db, LV_EINVAL, "a tenant id is 1 to 32 of a-z 0-9 _ -");
    if (!role_ok(u->role) || u->weight < 1 || u->weight > 1000 || check_quota(&u->quota))
        return lv_db_fail(db, LV_EINVAL, "role admin|user|viewer, weight 1..1000, quotas >= 0");
    const char *p[] = {u->id,
                       u->name,
                       u->tenant,
                       num(&b[0], u->role),
                       u->disabled ? "1" : "0",
                       num(&b[1], u->weight),
                       num(&b[2], u->quota.fpm),
                       num(&b[3], u->quota.answers_day),
                       num(&b[4], u->quota.tokens_day),
                       num(&b[5], u->quota.sessions)};
    if ((rc = lv_db_begin(db)))
        return rc;
    rc = lv_db_exec(db,
                    "UPDATE users SET name = $2, tenant_id = $3, role = $4, disabled = $5, weight = $6, q_fpm = $7, "
                    "q_answers_day = $8, q_tokens_day = $9, q_sessions = $10 WHERE id = $1 RETURNING id",
                    10, p, &r);
    if (rc == LV_EEXIST)
        rc = lv_db_fail(db, rc, "a user named '%s' exists already", u->name);
    else if (rc == LV_ENOTFOUND)
        rc = lv_db_fail(db, rc, "no tenant '%s'", u->tenant);
    if (rc)
        goto out;
    if (r.rows == 0) {
        rc = lv_db_fail(db, LV_ENOTFOUND, "no user with id '%s'", u->id);
        goto out;
    }
    if (u->disabled && (rc = lv_db_exec(db, "DELETE FROM logins WHERE user_id = $1", 1, p, NULL)))
        goto out;
    if ((rc = bump_version(db)))
        goto out;
    rc = lv_db_commit(db);
out:
    lv_db_rows_free(&r);
    lv_db_rollback(db);
    return rc;
}

/* An UPDATE/DELETE ... RETURNING id inside a transaction that bumps the version: LV_ENOTFOUND
 * when no row matched. then (may be NULL) runs in the same transaction with the same params. */
static int change_one(lv_db_t *db, const char *sql, size_t n, const char *const *p, const char *then,
                      const char *what)
{
    lv_db_rows_t r = {0};
    int rc = lv_db_begin(db);
    if (rc)
        return rc;
    if ((rc = lv_db_exec(db, sql, n, p, &r)))
        goto out;
    if (r.rows == 0) {
        rc = lv_db_fail(db, LV_ENOTFOUND, "no %s '%s'", what, p[0] ? p[0] : "");
        goto out;
    }
    if (then && (rc = lv_db_exec(db, then, 1, p, NULL)))
        goto out;
    if ((rc = bump_version(db)))
        goto out;
    rc = lv_db_commit(db);
out:
    lv_db_rows_free(&r);
    lv_db_rollback(db);
    return rc;
}

int lv_acct_db_user_set_password(lv_db_t *db, const char *user_id, const char *pw)
{
    char h[crypto_pwhash_STRBYTES];
    int rc;
    bool has_pw = pw && *pw;
    if (has_pw && (rc = hash_password(db, pw, h)))
        return lv_db_fail(db, rc, "cannot take this password (longer than %d bytes, or out of memory)", PW_MAX_BYTES);
    const char *p[] = {user_id, has_pw ? h : NULL};
    rc = change_one(db, "UPDATE users SET pw_hash = $2, invite_hash = NULL, invite_expires_ms = 0 WHERE id = $1 "
                        "RETURNING id",
                    2, p, NULL, "user with id");
    sodium_memzero(h, sizeof(h));
    return rc;
}

int lv_acct_db_user_set_disabled(lv_db_t *db, const char *user_id, bool disabled)
{
    const char *p[] = {user_id, disabled ? "1" : "0"};
    return change_one(db, "UPDATE users SET disabled = $2 WHERE id = $1 RETURNING id", 2, p,
                      disabled ? "DELETE FROM logins WHERE user_id = $1" : NULL, "user with id");
}

int lv_acct_db_user_delete(lv_db_t *db, const char *user_id)
{
    const char *p[] = {user_id};
    /* api_keys and logins go with it (ON DELETE CASCADE); usage and audit stay. */
    return change_one(db, "DELETE FROM users WHERE id = $1 RETURNING id", 1, p, NULL, "user with id");
}

int lv_acct_db_check_password(lv_db_t *db, const char *name, const char *pw, lv_user_t *out)
{
    lv_db_rows_t r = {0};
    int rc = 0;
    pthread_once(&sodium_once, sodium_setup);
    if (!sodium_ok)
        return lv_db_fail(db, LV_ENOMEM, "cannot check passwords (libsodium did not start)");
    if (!pw)
        pw = "";
    size_t pw_len = LV_MIN(strlen(pw), (size_t)PW_MAX_BYTES + 1);
    const char *hash = dummy_hash;
    bool found = false;
    if (lv_acct_check_name(name) == 0) {
        const char *p[] = {name};
        rc = lv_db_exec(db, "SELECT " USER_COLS ", pw_hash FROM users WHERE name = $1", 1, p, &r);
        if (rc)
            return rc;
        found = r.rows == 1 && lv_db_cell(&r, 0, USER_NCOLS) != NULL;
        if (found)
            hash = lv_db_cell(&r, 0, USER_NCOLS);
    }
    /* Always one argon2id verification, whatever was found, so timing tells nothing. */
    bool ok = crypto_pwhash_str_verify(hash, pw, pw_len) == 0;
    if (!found || !ok || pw_len == 0 || pw_len > PW_MAX_BYTES || lv_db_int(&r, 0, 4, 1) != 0) {
        rc = lv_db_fail(db, LV_EAUTH, "wrong user name or password");
        goto out;
    }
    if (out)
        row_user(&r, 0, out);
out:
    lv_db_rows_free(&r);
    return rc;
}

int lv_acct_db_user_list(lv_db_t *db, lv_user_t **out, size_t *n)
{
    lv_db_rows_t r;
    int rc = lv_db_exec(db, "SELECT " USER_COLS " FROM users ORDER BY name", 0, NULL, &r);
    if (rc)
        return rc;
    ROWS_TO_ARRAY(&r, lv_user_t, row_user, out, n);
    lv_db_rows_free(&r);
    return rc;
}

int lv_acct_db_admin_count(lv_db_t *db, int64_t *out)
{
    lv_db_rows_t r;
    int rc = lv_db_exec(db, "SELECT COUNT(*) FROM users WHERE role = 2", 0, NULL, &r);
    if (rc)
        return rc;
    *out = lv_db_int(&r, 0, 0, 0);
    lv_db_rows_free(&r);
    return 0;
}

/* ---------- invites ---------- */

int lv_acct_db_invite(lv_db_t *db, const char *user_id, char code_out[LV_ACCT_SECRET_HEX])
{
    char hash[LV_ACCT_HASH_HEX];
    num_t b;
    int rc = lv_rand_hex(code_out, LV_ACCT_SECRET_HEX, 32);
    if (rc)
        return lv_db_fail(db, rc, "no random bytes for an invite");
    lv_acct_sha256_hex(code_out, 64, hash);
    const char *p[] = {user_id, hash, num(&b, now_ms() + (int64_t)LV_ACCT_INVITE_TTL_MS)};
    rc = change_one(db, "UPDATE users SET invite_hash = $2, invite_expires_ms = $3 WHERE id = $1 RETURNING id", 3, p,
                    NULL, "user with id");
    if (rc)
        memset(code_out, 0, LV_ACCT_SECRET_HEX);
    return rc;
}

int lv_acct_db_redeem_invite(lv_db_t *db, const char *code, const char *pw, lv_user_t *out)
{
    char hash[LV_ACCT_HASH_HEX], h[crypto_pwhash_STRBYTES];
    lv_user_t u;
    num_t b;
    int rc;
    if (!is_hex64(code))
        return lv_db_fail(db, LV_EAUTH, "this invite is wrong or has expired");
    if (!pw || !*pw)
        return lv_db_fail(db, LV_EINVAL, "choose a password");
    if ((rc = hash_password(db, pw, h)))
        return lv_db_fail(db, rc, "cannot take this password (longer than %d bytes, or out of memory)", PW_MAX_BYTES);
    lv_acct_sha256_hex(code, 64, hash);
    if ((rc = lv_db_begin(db)))
        goto out;
    lv_db_rows_t r;
    const char *p[] = {hash, num(&b, now_ms())};
    rc = lv_db_exec(db, "SELECT " USER_COLS " FROM users WHERE invite_hash = $1 AND invite_expires_ms > $2", 2, p,
                    &r);
    if (rc)
        goto out;
    if (r.rows == 1)
        row_user(&r, 0, &u);
    bool found = r.rows == 1;
    lv_db_rows_free(&r);
    if (!found || u.disabled) {
        rc = lv_db_fail(db, LV_EAUTH, "this invite is wrong or has expired");
        goto out;
    }
    const char *pu[] = {u.id, h};
    rc = lv_db_exec(db, "UPDATE users SET pw_hash = $2, invite_hash = NULL, invite_expires_ms = 0 WHERE id = $1", 2,
                    pu, NULL);
    if (rc || (rc = bump_version(db)) || (rc = lv_db_commit(db)))
        goto out;
    u.has_password = true;
    if (out)
        *out = u;
out:
    lv_db_rollback(db);
    sodium_memzero(h, sizeof(h));
    return rc;
}

/* ---------- OpenID Connect ---------- */

int lv_acct_db_oidc_user(lv_db_t *db, const char *iss, const char *sub, const char *preferred, bool may_link,
                         const char *tenant, lv_role_t role, bool claims_rule, lv_user_t *out)
{
    lv_db_rows_t r = {0};
    lv_user_t u;
    num_t b;
    bool have = false, changed = false, name_taken = false;
    int rc;
    if (!tenant || !*tenant)
        tenant = LV_ACCT_DEFAULT_TENANT;
    if (!iss || !*iss || !sub || !*sub || strlen(iss) >= sizeof(u.oidc_iss) || strlen(sub) >= sizeof(u.oidc_sub))
        return lv_db_fail(db, LV_EINVAL, "the identity provider sent no usable issuer or subject");
    if (!role_ok(role) || lv_acct_check_id(tenant))
        return lv_db_fail(db, LV_EINVAL, "bad tenant or role for a new sign-in");
    if ((rc = lv_db_begin(db)))
        return rc;
    const char *pis[] = {iss, sub};
    rc = lv_db_exec(db, "SELECT " USER_COLS " FROM users WHERE oidc_iss = $1 AND oidc_sub = $2", 2, pis, &r);
    if (rc)
        goto out;
    if (r.rows == 1) {
        row_user(&r, 0, &u);
        have = true;
    }
    lv_db_rows_free(&r);
    bool pref_ok = preferred && lv_acct_check_name(preferred) == 0;
    if (!have && pref_ok) {
        const char *pn[] = {preferred};
        rc = lv_db_exec(db, "SELECT " USER_COLS " FROM users WHERE name = $1", 1, pn, &r);
        if (rc)
            goto out;
        lv_user_t named;
        if (r.rows == 1)
            row_user(&r, 0, &named);
        if (r.rows == 1 && may_link && lv_db_cell(&r, 0, 11) == NULL && !named.has_password) {
            /* made for single sign-on and not linked yet: link it now (see lv_acct.h) */
            u = named;
            have = true;
            if (u.disabled) {
                rc = lv_db_fail(db, LV_EAUTH, "this account is disabled");
                goto out;
            }
            const char *pl[] = {u.id, iss, sub};
            if ((rc = lv_db_exec(db, "UPDATE users SET oidc_iss = $2, oidc_sub = $3 WHERE id = $1", 3, pl, NULL)))
                goto out;
            cp(u.oidc_iss, sizeof(u.oidc_iss), iss);
            cp(u.oidc_sub, sizeof(u.oidc_sub), sub);
            changed = true;
        } else if (r.rows == 1) {
            name_taken = true; /* linked to someone else at the provider: a new user, another name */
        }
        lv_db_rows_free(&r);
    }
    if (!have) {
        char name[LV_ACCT_NAME_MAX], suffix[9];
        if ((rc = lv_rand_hex(suffix, sizeof(suffix), 4)))
            goto out;
        if (pref_ok && !name_taken)
            cp(name, sizeof(name), preferred);
        else if (pref_ok)
            snprintf(name, sizeof(name), "%.55s-%s", preferred, suffix);
        else
            snprintf(name, sizeof(name), "user-%s", suffix);
        if ((rc = user_insert(db, name, NULL, role, tenant, iss, sub, &u)))
            goto out;
        changed = true;
    } else if (claims_rule && (strcmp(u.tenant, tenant) || u.role != role)) {
        const char *pc[] = {u.id, tenant, num(&b, role)};
        rc = lv_db_exec(db, "UPDATE users SET tenant_id = $2, role = $3 WHERE id = $1", 3, pc, NULL);
        if (rc == LV_ENOTFOUND)
            rc = lv_db_fail(db, rc, "no tenant '%s'", tenant);
        if (rc)
            goto out;
        cp(u.tenant, sizeof(u.tenant), tenant);
        u.role = role;
        changed = true;
    }
    if (u.disabled) {
        rc = lv_db_fail(db, LV_EAUTH, "this account is disabled");
        goto out;
    }
    if (changed && (rc = bump_version(db)))
        goto out;
    if ((rc = lv_db_commit(db)))
        goto out;
    if (out)
        *out = u;
out:
    lv_db_rows_free(&r);
    lv_db_rollback(db);
    return rc;
}

/* ---------- sign-ins ---------- */

int lv_acct_db_login_add(lv_db_t *db, const char *user_id, const char *ip, char cookie_out[LV_ACCT_SECRET_HEX],
                         lv_login_t *login_out)
{
    lv_login_t l;
    lv_user_t u;
    num_t b1, b2;
    char ipb[48];
    int rc;
    memset(&l, 0, sizeof(l));
    cp(ipb, sizeof(ipb), ip);
    if ((rc = lv_rand_hex(cookie_out, LV_ACCT_SECRET_HEX, 32)) || (rc = lv_rand_hex(l.csrf, sizeof(l.csrf), 32)))
        return lv_db_fail(db, rc, "no random bytes for a sign-in");
    lv_acct_sha256_hex(cookie_out, 64, l.hash);
    cp(l.user_id, sizeof(l.user_id), user_id);
    int64_t t = now_ms();
    l.expires_ms = t + (int64_t)LV_ACCT_LOGIN_TTL_MS;
    if ((rc = lv_db_begin(db)))
        goto out;
    if ((rc = user_get(db, "id = $1", user_id, &u))) {
        if (rc == LV_ENOTFOUND)
            lv_db_fail(db, rc, "no user with id '%s'", user_id ? user_id : "");
        goto out;
    }
    if (u.disabled) {
        rc = lv_db_fail(db, LV_EAUTH, "this account is disabled");
        goto out;
    }
    const char *p[] = {l.hash, l.user_id, l.csrf, ipb, num(&b1, t), num(&b2, l.expires_ms)};
    rc = lv_db_exec(db,
                    "INSERT INTO logins (hash, user_id, csrf, ip, created_ms, expires_ms) VALUES ($1, $2, $3, $4, $5, "
                    "$6)",
                    6, p, NULL);
    if (rc || (rc = bump_version(db)) || (rc = lv_db_commit(db)))
        goto out;
    if (login_out)
        *login_out = l;
out:
    lv_db_rollback(db);
    if (rc)
        memset(cookie_out, 0, LV_ACCT_SECRET_HEX);
    return rc;
}

/* A DELETE that bumps the version; deleting nothing is fine (signing out twice). */
static int delete_bump(lv_db_t *db, const char *sql, const char *arg)
{
    const char *p[] = {arg};
    int rc = lv_db_begin(db);
    if (rc)
        return rc;
    if ((rc = lv_db_exec(db, sql, 1, p, NULL)) || (rc = bump_version(db)))
        goto out;
    rc = lv_db_commit(db);
out:
    lv_db_rollback(db);
    return rc;
}

int lv_acct_db_login_delete(lv_db_t *db, const char *hash)
{
    return delete_bump(db, "DELETE FROM logins WHERE hash = $1", hash);
}

int lv_acct_db_login_delete_user(lv_db_t *db, const char *user_id)
{
    return delete_bump(db, "DELETE FROM logins WHERE user_id = $1", user_id);
}

/* ---------- API keys ---------- */

int lv_acct_db_key_add(lv_db_t *db, const char *user_id, const char *name, int scope, int64_t expires_ms,
                       char secret_out[LV_ACCT_SECRET_HEX + 8], lv_apikey_t *out)
{
    lv_apikey_t k;
    num_t b1, b2, b3;
    int rc;
    memset(&k, 0, sizeof(k));
    if (scope < LV_SCOPE_STREAM || scope > (LV_SCOPE_STREAM | LV_SCOPE_ADMIN))
        return lv_db_fail(db, LV_EINVAL, "the scope must be stream or admin");
    if (expires_ms < 0 || check_text(name, sizeof(k.name)))
        return lv_db_fail(db, LV_EINVAL, "a key name is at most %zu printable bytes", sizeof(k.name) - 1);
    memcpy(secret_out, LV_ACCT_KEY_PREFIX, 4);
    if ((rc = lv_rand_hex(secret_out + 4, LV_ACCT_SECRET_HEX, 32)) || (rc = lv_rand_hex(k.id, sizeof(k.id), 8)))
        return lv_db_fail(db, rc, "no random bytes for a key");
    lv_acct_sha256_hex(secret_out, 68, k.hash);
    snprintf(k.prefix, sizeof(k.prefix), "%.12s", secret_out);
    cp(k.user_id, sizeof(k.user_id), user_id);
    cp(k.name, sizeof(k.name), name);
    k.scope = scope;
    k.expires_ms = expires_ms;
    k.created_ms = now_ms();
    const char *p[] = {k.id, k.user_id, k.name, k.prefix, k.hash, num(&b1, scope), num(&b2, expires_ms),
                       num(&b3, k.created_ms)};
    if ((rc = lv_db_begin(db)))
        goto out;
    rc = lv_db_exec(db,
                    "INSERT INTO api_keys (id, user_id, name, prefix, hash, scope, expires_ms, created_ms) VALUES ($1, "
                    "$2, $3, $4, $5, $6, $7, $8)",
                    8, p, NULL);
    if (rc == LV_ENOTFOUND)
        lv_db_fail(db, rc, "no user with id '%s'", user_id ? user_id : "");
    if (rc || (rc = bump_version(db)) || (rc = lv_db_commit(db)))
        goto out;
    if (out)
        *out = k;
out:
    lv_db_rollback(db);
    if (rc)
        memset(secret_out, 0, LV_ACCT_SECRET_HEX + 8);
    return rc;
}

int lv_acct_db_key_revoke(lv_db_t *db, const char *key_id)
{
    num_t b;
    const char *p[] = {key_id, num(&b, now_ms())};
    /* Revoking twice keeps the first time. */
    return change_one(db,
                      "UPDATE api_keys SET revoked_ms = CASE WHEN revoked_ms = 0 THEN CAST($2 AS BIGINT) ELSE "
                      "revoked_ms END WHERE id = $1 RETURNING id",
                      2, p, NULL, "key with id");
}

int lv_acct_db_key_list(lv_db_t *db, const char *user_id, lv_apikey_t **out, size_t *n)
{
    lv_db_rows_t r;
    const char *p[] = {user_id};
    int rc = user_id ? lv_db_exec(db, "SELECT " KEY_COLS " FROM api_keys WHERE user_id = $1 ORDER BY created_ms, id",
                                  1, p, &r)
                     : lv_db_exec(db, "SELECT " KEY_COLS " FROM api_keys ORDER BY created_ms, id", 0, NULL, &r);
    if (rc)
        return rc;
    ROWS_TO_ARRAY(&r, lv_apikey_t, row_key, out, n);
    lv_db_rows_free(&r);
    return rc;
}

int lv_acct_db_key_touch(lv_db_t *db, const char *key_id, int64_t when_ms)
{
    num_t b;
    const char *p[] = {key_id, num(&b, when_ms)};
    /* No version bump: last-used times are not in what a request is authorised with. */
    return lv_db_exec(db, "UPDATE api_keys SET last_used_ms = $2 WHERE id = $1 AND last_used_ms < $2", 2, p, NULL);
}

/* ---------- tenants ---------- */

int lv_acct_db_tenant_put(lv_db_t *db, const lv_tenant_t *t)
{
    num_t b[6];
    int rc;
    if (lv_acct_check_id(t->id))
        return lv_db_fail(db, LV_EINVAL, "a tenant id is 1 to 32 of a-z 0-9 _ -");
    if (t->weight < 1 || t->weight > 1000 || check_quota(&t->quota))
        return lv_db_fail(db, LV_EINVAL, "a tenant's weight is 1..1000 and its quotas >= 0");
    if (check_text(t->name, sizeof(t->name)) || check_text(t->backends, sizeof(t->backends)) ||
        check_text(t->models, sizeof(t->models)))
        return lv_db_fail(db, LV_EINVAL, "a tenant's name, backends or models hold control characters or are too long");
    const char *p[] = {t->id,
                       t->name,
                       num(&b[0], t->weight),
                       t->backends,
                       t->models,
                       num(&b[1], t->quota.fpm),
                       num(&b[2], t->quota.answers_day),
                       num(&b[3], t->quota.tokens_day),
                       num(&b[4], t->quota.sessions),
                       num(&b[5], t->created_ms ? t->created_ms : now_ms())};
    if ((rc = lv_db_begin(db)))
        return rc;
    rc = lv_db_exec(db,
                    "INSERT INTO tenants (id, name, weight, backends, models, q_fpm, q_answers_day, q_tokens_day, "
                    "q_sessions, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (id) DO "
                    "UPDATE SET name = excluded.name, weight = excluded.weight, backends = excluded.backends, models = "
                    "excluded.models, q_fpm = excluded.q_fpm, q_answers_day = excluded.q_answers_day, q_tokens_day = "
                    "excluded.q_tokens_day, q_sessions = excluded.q_sessions",
                    10, p, NULL);
    if (rc || (rc = bump_version(db)))
        goto out;
    rc = lv_db_commit(db);
out:
    lv_db_rollback(db);
    return rc;
}

int lv_acct_db_tenant_delete(lv_db_t *db, const char *id)
{
    lv_db_rows_t r = {0};
    const char *p[] = {id};
    int rc;
    if (id && !strcmp(id, LV_ACCT_DEFAULT_TENANT))
        return lv_db_fail(db, LV_EINVAL, "the default tenant cannot be deleted");
    if ((rc = lv_db_begin(db)))
        return rc;
    if ((rc = lv_db_exec(db, "SELECT COUNT(*) FROM users WHERE tenant_id = $1", 1, p, &r)))
        goto out;
    int64_t users = lv_db_int(&r, 0, 0, 0);
    lv_db_rows_free(&r);
    if (users > 0) {
        rc = lv_db_fail(db, LV_EEXIST, "tenant '%s' still has %lld users: move or delete them first", id,
                        (long long)users);
        goto out;
    }
    if ((rc = lv_db_exec(db, "DELETE FROM tenants WHERE id = $1 RETURNING id", 1, p, &r)))
        goto out;
    if (r.rows == 0) {
        rc = lv_db_fail(db, LV_ENOTFOUND, "no tenant '%s'", id ? id : "");
        goto out;
    }
    if ((rc = bump_version(db)))
        goto out;
    rc = lv_db_commit(db);
out:
    lv_db_rows_free(&r);
    lv_db_rollback(db);
    return rc;
}

int lv_acct_db_tenant_list(lv_db_t *db, lv_tenant_t **out, size_t *n)
{
    lv_db_rows_t r;
    int rc = lv_db_exec(db, "SELECT " TENANT_COLS " FROM tenants ORDER BY id", 0, NULL, &r);
    if (rc)
        return rc;
    ROWS_TO_ARRAY(&r, lv_tenant_t, row_tenant, out, n);
    lv_db_rows_free(&r);
    return rc;
}

/* ---------- usage ---------- */

int lv_acct_db_usage_add(lv_db_t *db, const lv_usage_t *u, size_t n)
{
    num_t b[6];
    int rc;
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!u[i].answer_id[0])
            return lv_db_fail(db, LV_EINVAL, "a usage record has no answer id");
    if ((rc = lv_db_begin(db)))
        return rc;
    for (size_t i = 0; i < n; i++) {
        const lv_usage_t *x = &u[i];
        const char *p[] = {x->answer_id,
                           num(&b[0], x->t_ms),
                           x->tenant,
                           x->user_id,
                           x->session_id,
                           x->backend,
                           x->model,
                           num(&b[1], x->image_bytes),
                           num(&b[2], x->prompt_tokens),
                           num(&b[3], x->completion_tokens),
                           num(&b[4], x->backend_ms),
                           x->outcome};
        rc = lv_db_exec(db,
                        "INSERT INTO usage (" USAGE_COLS ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) "
                        "ON CONFLICT (answer_id) DO NOTHING",
                        12, p, NULL);
        if (rc)
            goto out;
    }
    rc = lv_db_commit(db);
out:
    lv_db_rollback(db);
    return rc;
}

int lv_acct_db_usage_query(lv_db_t *db, const lv_usage_filter_t *f, lv_usage_t **out, size_t *n)
{
    char sql[768];
    const char *p[6];
    num_t b[3];
    size_t np = 0, len;
    lv_db_rows_t r;
    int rc;
    *out = NULL;
    *n = 0;
    len = (size_t)snprintf(sql, sizeof(sql), "SELECT " USAGE_COLS " FROM usage WHERE 1 = 1");
#define ADD_FILTER(cond, text, val)                                                                             \
    if (cond) {                                                                                                 \
        p[np] = (val);                                                                                          \
        np++;                                                                                                   \
        len += (size_t)snprintf(sql + len, sizeof(sql) - len, text "$%zu", np);                                \
    }
    ADD_FILTER(f->from_ms > 0, " AND t_ms >= ", num(&b[0], f->from_ms));
    ADD_FILTER(f->to_ms > 0, " AND t_ms < ", num(&b[1], f->to_ms));
    ADD_FILTER(f->tenant[0], " AND tenant_id = ", f->tenant);
    ADD_FILTER(f->user_id[0], " AND user_id = ", f->user_id);
    ADD_FILTER(f->model[0], " AND model = ", f->model);
#undef ADD_FILTER
    size_t limit = f->limit == 0 || f->limit > USAGE_ROWS_MAX ? USAGE_ROWS_MAX : f->limit;
    p[np++] = num(&b[2], (int64_t)limit);
    snprintf(sql + len, sizeof(sql) - len, " ORDER BY t_ms, answer_id LIMIT CAST($%zu AS INTEGER)", np);
    if ((rc = lv_db_exec(db, sql, np, p, &r)))
        return rc;
    ROWS_TO_ARRAY(&r, lv_usage_t, row_usage, out, n);
    lv_db_rows_free(&r);
    return rc;
}

int lv_acct_db_usage_sum(lv_db_t *db, const char *tenant, const char *user_id, int64_t since_ms, int64_t *answers,
                         int64_t *tokens)
{
    char sql[256];
    const char *p[3];
    size_t np = 0;
    num_t b;
    lv_db_rows_t r;
    p[np++] = num(&b, since_ms);
    int len = snprintf(sql, sizeof(sql),
                       "SELECT COUNT(*), COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM usage "
                       "WHERE t_ms >= $1");
    if (tenant && *tenant) {
        p[np++] = tenant;
        len += snprintf(sql + len, sizeof(sql) - (size_t)len, " AND tenant_id = $%zu", np);
    }
    if (user_id && *user_id) {
        p[np++] = user_id;
        snprintf(sql + len, sizeof(sql) - (size_t)len, " AND user_id = $%zu", np);
    }
    int rc = lv_db_exec(db, sql, np, p, &r);
    if (rc)
        return rc;
    *answers = lv_db_int(&r, 0, 0, 0);
    *tokens = lv_db_int(&r, 0, 1, 0);
    lv_db_rows_free(&r);
    return 0;
}

/* ---------- audit ---------- */

int lv_acct_db_audit_add(lv_db_t *db, const lv_audit_t *a)
{
    char id[17];
    num_t b;
    int rc = lv_rand_hex(id, sizeof(id), 8);
    if (rc)
        return lv_db_fail(db, rc, "no random bytes for an audit id");
    const char *p[] = {id, num(&b, a->t_ms ? a->t_ms : now_ms()), a->actor, a->ip, a->action, a->target, a->detail};
    return lv_db_exec(db,
                      "INSERT INTO audit (id, t_ms, actor, ip, action, target, detail) VALUES ($1, $2, $3, $4, $5, $6, "
                      "$7)",
                      7, p, NULL);
}

int lv_acct_db_audit_list(lv_db_t *db, size_t limit, lv_audit_t **out, size_t *n)
{
    num_t b;
    lv_db_rows_t r;
    if (limit == 0 || limit > USAGE_ROWS_MAX)
        limit = USAGE_ROWS_MAX;
    const char *p[] = {num(&b, (int64_t)limit)};
    int rc = lv_db_exec(db, "SELECT " AUDIT_COLS " FROM audit ORDER BY t_ms DESC, id DESC LIMIT CAST($1 AS INTEGER)",
                        1, p, &r);
    if (rc)
        return rc;
    ROWS_TO_ARRAY(&r, lv_audit_t, row_audit, out, n);
    lv_db_rows_free(&r);
    return rc;
}

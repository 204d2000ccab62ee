/* lv_admin_api.c - the admin's routes under /api/v1/admin/ (lv_admin_api.h): users, API keys,
 * tenants (database jobs, lv_accounts_submit_req), live sessions and backends (in memory, on the
 * loop), the audit log and a per-day usage summary. Every change is written to the audit log.
 *
 * Bodies are JSON objects read whole (lv_httpd caps them at 64 KiB); each field has its own cap
 * and a 400 sentence naming it, and an unknown field is refused too, so a typo ("quotas") is not
 * silently ignored. Database work copies everything it needs into its job: the request may be
 * gone when the job ends (done runs with r NULL), and the audit row is still written then. */
#include "lv_admin_api.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lv_accounts.h"
#include "lv_acct.h"
#include "lv_acctreq.h"
#include "lv_app.h"
#include "lv_backend.h"
#include "lv_buf.h"
#include "lv_common.h"
#include "lv_engine.h"
#include "lv_http1.h"
#include "lv_httputil.h"
#include "lv_json_str.h"
#include "lv_log.h"
#include "lv_rand.h"
#include "lv_session.h"
#include "lv_utf8.h"

#define PREFIX "/api/v1/admin"
#define SEG_MAX 80 /* bytes of one path segment; longer: 404 */
#define PASSWORD_MAX 256 /* argon2id takes any length; a cap keeps the work bounded */
#define WEIGHT_MAX 1000
#define QUOTA_MAX 1000000000000LL /* 10^12: any real limit is far below */
#define LIST_ITEMS_MAX 64         /* backends or models in one tenant's list */
#define MODEL_NAME_MAX 128
#define AUDIT_DEFAULT 100
#define AUDIT_MAX 1000
#define USAGE_DAYS_MAX 90
#define USAGE_TENANTS_MAX 64  /* tenants drawn apart; the rest add up as "(other)" */
#define USAGE_PAGE_ROWS 20000 /* rows per usage query: ~8 MiB at most on the database thread */
#define USAGE_QUERIES_MAX 512 /* past this the summary says it is partial */
#define SESSIONS_MAX 5000     /* rows in one listing (the registry's cap is usually lower) */
#define KICK_BATCH 256        /* a disabled user's sessions ended at once */
#define DAY_MS 86400000LL

/* ---------- answers ---------- */

/* Our error body {"error":{"code","message"}}. Unlike lv_req_respond_error (constant texts only),
 * the message may quote what the client sent (a field name, an id): it is escaped by the one JSON
 * string writer, bytes that are not UTF-8 replaced. */
static int respond_error(lv_req_t *r, int status, const char *code, const char *message)
{
    lv_buf_t b;
    lv_buf_init(&b, 4096);
    int rc = lv_buf_append_str(&b, "{\"error\":{\"code\":");
    if (!rc)
        rc = lv_json_str_append(&b, code, strlen(code));
    if (!rc)
        rc = lv_buf_append_str(&b, ",\"message\":");
    if (!rc)
        rc = lv_json_str_append_lossy(&b, message, strlen(message));
    if (!rc)
        rc = lv_buf_append_str(&b, "}}");
    rc = rc ? lv_req_respond_error(r, 500, "internal", "could not write the error")
            : lv_req_respond(r, status, "application/json", b.data, b.len, true, NULL);
    lv_buf_free(&b);
    return rc;
}

static int respond_json(lv_req_t *r, int status, json_t *obj)
{
    char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    if (!text)
        return lv_req_respond_error(r, 500, "internal", "out of memory");
    int rc = lv_req_respond(r, status, "application/json", text, strlen(text), true, NULL);
    free(text);
    return rc;
}

/* 400 with a sentence built like printf. */
static int bad_request(lv_req_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad_request(lv_req_t *r, const char *fmt, ...)
{
    char msg[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return respond_error(r, 400, "bad_request", msg);
}

static int not_found(lv_req_t *r)
{
    return respond_error(r, 404, "not_found", "no such admin route");
}

/* ---------- body fields ---------- */

/* A parse error's sentence; the caller answers 400 with it. */
typedef struct {
    char msg[320];
} perr_t;

static int perr(perr_t *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int perr(perr_t *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
    return LV_EINVAL;
}

/* Text a person typed: valid UTF-8 without control characters. */
static bool plain_text(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return lv_utf8_valid(s, len) == 1;
}

/* The object's keys must all be in allowed (NULL-terminated). */
static int only_fields(const json_t *obj, const char *const *allowed, const char *what, perr_t *e)
{
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)obj, key, v)
    {
        bool ok = false;
        for (size_t i = 0; allowed[i] && !ok; i++)
            ok = strcmp(key, allowed[i]) == 0;
        if (ok)
            continue;
        char list[160] = "";
        size_t used = 0;
        for (size_t i = 0; allowed[i] && used < sizeof(list); i++) {
            int k = snprintf(list + used, sizeof(list) - used, "%s%s", i ? ", " : "", allowed[i]);
            used += k > 0 ? (size_t)k : 0;
        }
        return perr(e, "%s has no field '%.40s' (it takes %s)", what, plain_text(key, strlen(key)) ? key : "?", list);
    }
    (void)v;
    return 0;
}

/* Parse the body as a JSON object (an empty body is {}). */
static json_t *body_object(const lv_req_t *r, perr_t *e)
{
    json_error_t je;
    if (r->body->len == 0)
        return json_object();
    json_t *root = json_loadb(r->body->data, r->body->len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        perr(e, "the body is not JSON: %.200s (line %d, column %d)", je.text, je.line, je.column);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        perr(e, "the body must be a JSON object");
        return NULL;
    }
    return root;
}

/* A string field: absent -> 0 with *present false; otherwise 1..cap-1 bytes of plain text. */
static int field_str(const json_t *obj, const char *key, char *out, size_t cap, bool *present, perr_t *e)
{
    const json_t *v = json_object_get(obj, key);
    *present = v != NULL;
    if (!v)
        return 0;
    if (!json_is_string(v))
        return perr(e, "%s must be a string", key);
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    if (len >= cap)
        return perr(e, "%s is too long (at most %zu bytes)", key, cap - 1);
    if (strlen(s) != len || !plain_text(s, len))
        return perr(e, "%s must be text without control characters", key);
    memcpy(out, s, len + 1);
    return 0;
}

static int field_int(const json_t *obj, const char *key, int64_t min, int64_t max, int64_t *out, bool *present,
                     perr_t *e)
{
    const json_t *v = json_object_get(obj, key);
    *present = v != NULL;
    if (!v)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
        return perr(e, "%s must be a whole number from %lld to %lld", key, (long long)min, (long long)max);
    *out = (int64_t)json_integer_value(v);
    return 0;
}

static int field_bool(const json_t *obj, const char *key, bool *out, bool *present, perr_t *e)
{
    const json_t *v = json_object_get(obj, key);
    *present = v != NULL;
    if (!v)
        return 0;
    if (!json_is_boolean(v))
        return perr(e, "%s must be true or false", key);
    *out = json_is_true(v);
    return 0;
}

/* quota: {fpm, answers_day, tokens_day, sessions}, any subset, merged into q; 0 = no limit. */
static int field_quota(const json_t *obj, lv_quota_t *q, bool *present, perr_t *e)
{
    static const char *const keys[] = {"fpm", "answers_day", "tokens_day", "sessions", NULL};
    const json_t *v = json_object_get(obj, "quota");
    int64_t *slots[] = {&q->fpm, &q->answers_day, &q->tokens_day, &q->sessions};
    *present = v != NULL;
    if (!v)
        return 0;
    if (!json_is_object(v))
        return perr(e, "quota must be an object {fpm, answers_day, tokens_day, sessions} (0 = no limit)");
    if (only_fields(v, keys, "quota", e))
        return LV_EINVAL;
    for (size_t i = 0; keys[i]; i++) {
        char name[32];
        int64_t x = 0;
        snprintf(name, sizeof(name), "quota.%s", keys[i]);
        const json_t *f = json_object_get(v, keys[i]);
        if (f && (!json_is_integer(f) || json_integer_value(f) < 0 || json_integer_value(f) > QUOTA_MAX))
            return perr(e, "%s must be a whole number from 0 (no limit) to %lld", name, (long long)QUOTA_MAX);
        if (f) {
            x = (int64_t)json_integer_value(f);
            *slots[i] = x;
        }
    }
    return 0;
}

/* A comma list of backend ids or model names, as a string "a, b" or an array ["a","b"],
 * normalised to "a,b" ("" = all). */
static int field_list(const json_t *obj, const char *key, bool ids, char out[LV_ACCT_LIST_MAX], bool *present,
                      perr_t *e)
{
    const json_t *v = json_object_get(obj, key);
    char item[MODEL_NAME_MAX + 1];
    size_t used = 0, items = 0;
    *present = v != NULL;
    if (!v)
        return 0;
    if (!json_is_string(v) && !json_is_array(v))
        return perr(e, "%s must be a comma list (\"a,b\") or an array of strings; empty means all", key);
    size_t n = json_is_array(v) ? json_array_size(v) : 1;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        const json_t *s = json_is_array(v) ? json_array_get(v, i) : v;
        if (!json_is_string(s))
            return perr(e, "%s must hold strings only", key);
        const char *p = json_string_value(s), *end = p + json_string_length(s);
        if (strlen(p) != json_string_length(s))
            return perr(e, "%s must be text without control characters", key);
        while (p <= end) {
            const char *comma = memchr(p, ',', (size_t)(end - p));
            const char *stop = comma ? comma : end;
            const char *a = p, *b = stop;
            while (a < b && (*a == ' ' || *a == '\t'))
                a++;
            while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
                b--;
            size_t len = (size_t)(b - a);
            if (len) {
                size_t cap = ids ? LV_BACKEND_ID_MAX_LEN : MODEL_NAME_MAX;
                if (len > cap)
                    return perr(e, "%s: '%.40s...' is too long (at most %zu bytes)", key, a, cap);
                memcpy(item, a, len);
                item[len] = '\0';
                if (!plain_text(item, len))
                    return perr(e, "%s must be text without control characters", key);
                for (size_t k = 0; ids && k < len; k++) {
                    char c = item[k];
                    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                          c == '_' || c == '-'))
                        return perr(e, "%s: '%.64s' is not a backend id (letters, digits, . _ -)", key, item);
                }
                if (++items > LIST_ITEMS_MAX)
                    return perr(e, "%s has too many entries (at most %d)", key, LIST_ITEMS_MAX);
                int k = snprintf(out + used, LV_ACCT_LIST_MAX - used, "%s%s", used ? "," : "", item);
                if (k < 0 || (size_t)k >= LV_ACCT_LIST_MAX - used)
                    return perr(e, "%s is too long (at most %d bytes in all)", key, LV_ACCT_LIST_MAX - 1);
                used += (size_t)k;
            }
            if (!comma)
                break;
            p = comma + 1;
        }
    }
    return 0;
}

/* ---------- database jobs ---------- */

typedef enum {
    J_USERS,
    J_USER_ADD,
    J_USER_UPDATE,
    J_USER_DELETE,
    J_KEYS,
    J_KEY_REVOKE,
    J_TENANTS,
    J_TENANT_PUT,
    J_TENANT_DELETE,
    J_AUDIT,
    J_USAGE,
} job_kind_t;

/* which fields an update or a tenant put names */
enum {
    F_ROLE = 1 << 0,
    F_TENANT = 1 << 1,
    F_DISABLED = 1 << 2,
    F_WEIGHT = 1 << 3,
    F_QUOTA = 1 << 4,
    F_PASSWORD = 1 << 5,
    F_INVITE = 1 << 6,
    F_NAME = 1 << 7,
    F_BACKENDS = 1 << 8,
    F_MODELS = 1 << 9,
};

typedef struct {
    int64_t day0_ms; /* UTC midnight of the first day */
    int days;
    size_t n_tenants;
    char tenant[USAGE_TENANTS_MAX + 1][LV_ACCT_ID_MAX]; /* the last one: "(other)" */
    int64_t answers[USAGE_TENANTS_MAX + 1][USAGE_DAYS_MAX];
    int64_t tokens[USAGE_TENANTS_MAX + 1][USAGE_DAYS_MAX];
    int queries;
    bool partial;
} usage_agg_t;

typedef struct {
    job_kind_t kind;
    lv_principal_t who; /* copied: the request may be gone at done */
    char ip[48];
    char id[LV_ACCT_ID_MAX]; /* the target's id */
    unsigned fields;         /* F_*: what the body named */
    lv_user_t user;          /* add: name, role, tenant; update: the new values */
    lv_quota_t quota;        /* update: merged into the stored quota field by field */
    bool quota_set[4];
    char password[PASSWORD_MAX + 1]; /* wiped when the job ends */
    lv_tenant_t tenant;              /* put: the new values (fields say which) */
    size_t limit;
    /* results */
    int status;    /* an HTTP status for an error found on the database thread */
    char msg[320]; /* its sentence */
    char invite[LV_ACCT_SECRET_HEX];
    char detail[256];              /* the audit row's detail */
    char target[LV_ACCT_TEXT_MAX]; /* the audit row's target (a name where there is one) */
    bool disabled_now;             /* the user was disabled by this job: end its sessions */
    bool deleted;
    bool created; /* a tenant put made a new tenant: 201 */
    lv_user_t *users;
    size_t n_users;
    lv_apikey_t *keys;
    size_t n_keys;
    lv_tenant_t *tenants;
    size_t n_tenants;
    lv_audit_t *audit;
    size_t n_audit;
    usage_agg_t *usage;
} job_t;

static void job_free(job_t *j)
{
    if (!j)
        return;
    explicit_bzero(j->password, sizeof(j->password));
    explicit_bzero(j->invite, sizeof(j->invite));
    free(j->users);
    free(j->keys);
    free(j->tenants);
    free(j->audit);
    free(j->usage);
    free(j);
}

static int job_fail(job_t *j, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int job_fail(job_t *j, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->msg, sizeof(j->msg), fmt, ap);
    va_end(ap);
    j->status = status;
    return LV_EINVAL;
}

static const lv_user_t *find_user(const job_t *j, const char *id)
{
    for (size_t i = 0; i < j->n_users; i++)
        if (strcmp(j->users[i].id, id) == 0)
            return &j->users[i];
    return NULL;
}

static const lv_tenant_t *find_tenant(const job_t *j, const char *id)
{
    for (size_t i = 0; i < j->n_tenants; i++)
        if (strcmp(j->tenants[i].id, id) == 0)
            return &j->tenants[i];
    return NULL;
}

/* The users, and *cur the one j->id names: 0, a 404 job failure, or the database's code. */
static int load_user(lv_db_t *db, job_t *j, const lv_user_t **cur)
{
    int rc = lv_acct_db_user_list(db, &j->users, &j->n_users);
    if (rc)
        return rc;
    *cur = find_user(j, j->id);
    return *cur ? 0 : job_fail(j, 404, "no user with id '%s'", j->id);
}

static int need_tenant(lv_db_t *db, job_t *j, const char *id)
{
    int rc = j->tenants ? 0 : lv_acct_db_tenant_list(db, &j->tenants, &j->n_tenants);
    if (rc)
        return rc;
    if (!find_tenant(j, id))
        return job_fail(j, 400, "no tenant '%s': create it first (Tenants)", id);
    return 0;
}

static void quota_text(char *out, size_t size, const lv_quota_t *q)
{
    snprintf(out, size, "fpm=%lld answers_day=%lld tokens_day=%lld sessions=%lld", (long long)q->fpm,
             (long long)q->answers_day, (long long)q->tokens_day, (long long)q->sessions);
}

static int work_user_add(lv_db_t *db, job_t *j)
{
    int rc = need_tenant(db, j, j->user.tenant);
    if (rc)
        return rc;
    lv_user_t out;
    rc = lv_acct_db_user_add(db, j->user.name, (j->fields & F_PASSWORD) ? j->password : NULL, j->user.role,
                             j->user.tenant, &out);
    if (rc == LV_EEXIST)
        return job_fail(j, 409, "a user named '%s' exists already", j->user.name);
    if (rc)
        return rc;
    j->user = out;
    if ((j->fields & F_INVITE) && (rc = lv_acct_db_invite(db, out.id, j->invite)) != 0)
        return rc;
    snprintf(j->target, sizeof(j->target), "%s", out.name);
    snprintf(j->detail, sizeof(j->detail), "id=%s role=%s tenant=%s %s", out.id, lv_role_name(out.role), out.tenant,
             (j->fields & F_INVITE) ? "invite" : "password");
    return 0;
}

static int work_user_update(lv_db_t *db, job_t *j)
{
    const lv_user_t *cur;
    int rc = load_user(db, j, &cur);
    if (rc)
        return rc;
    lv_user_t u = *cur;
    size_t used = 0;
    char q[160];
    j->detail[0] = '\0';
#define NOTE(...)                                                                                                      \
    do {                                                                                                               \
        int k_ = snprintf(j->detail + used, sizeof(j->detail) - used, __VA_ARGS__);                                    \
        if (k_ > 0)                                                                                                    \
            used = LV_MIN(sizeof(j->detail) - 1, used + (size_t)k_);                                                   \
    } while (0)
    if (j->fields & F_TENANT) {
        if ((rc = need_tenant(db, j, j->user.tenant)) != 0)
            return rc;
        snprintf(u.tenant, sizeof(u.tenant), "%s", j->user.tenant);
        NOTE("tenant=%s ", u.tenant);
    }
    if (j->fields & F_ROLE) {
        u.role = j->user.role;
        NOTE("role=%s ", lv_role_name(u.role));
    }
    if (j->fields & F_WEIGHT) {
        u.weight = j->user.weight;
        NOTE("weight=%d ", u.weight);
    }
    if (j->fields & F_QUOTA) {
        int64_t *dst[] = {&u.quota.fpm, &u.quota.answers_day, &u.quota.tokens_day, &u.quota.sessions};
        const int64_t src[] = {j->quota.fpm, j->quota.answers_day, j->quota.tokens_day, j->quota.sessions};
        for (size_t i = 0; i < 4; i++)
            if (j->quota_set[i])
                *dst[i] = src[i];
        quota_text(q, sizeof(q), &u.quota);
        NOTE("%s ", q);
    }
    bool disable = (j->fields & F_DISABLED) && j->user.disabled && !cur->disabled;
    bool enable = (j->fields & F_DISABLED) && !j->user.disabled && cur->disabled;
    if ((rc = lv_acct_db_user_update(db, &u)) != 0)
        return rc;
    if ((disable || enable) && (rc = lv_acct_db_user_set_disabled(db, u.id, disable)) != 0)
        return rc;
    if (disable || enable)
        NOTE("%s ", disable ? "disabled" : "enabled");
    if ((j->fields & F_PASSWORD) && (rc = lv_acct_db_user_set_password(db, u.id, j->password)) != 0)
        return rc;
    if (j->fields & F_PASSWORD)
        NOTE("password ");
    if ((j->fields & F_INVITE) && (rc = lv_acct_db_invite(db, u.id, j->invite)) != 0)
        return rc;
    if (j->fields & F_INVITE)
        NOTE("invite ");
#undef NOTE
    if (used && j->detail[used - 1] == ' ')
        j->detail[used - 1] = '\0';
    u.disabled = disable ? true : enable ? false : cur->disabled;
    j->disabled_now = disable;
    j->user = u;
    snprintf(j->target, sizeof(j->target), "%s", u.name);
    return 0;
}

static int work_user_delete(lv_db_t *db, job_t *j)
{
    const lv_user_t *cur;
    int rc = load_user(db, j, &cur);
    if (rc)
        return rc;
    snprintf(j->target, sizeof(j->target), "%s", cur->name);
    snprintf(j->detail, sizeof(j->detail), "id=%s tenant=%s", cur->id, cur->tenant);
    if ((rc = lv_acct_db_user_delete(db, j->id)) != 0)
        return rc == LV_ENOTFOUND ? job_fail(j, 404, "no user with id '%s'", j->id) : rc;
    j->deleted = true;
    return 0;
}

static int work_key_revoke(lv_db_t *db, job_t *j)
{
    int rc = lv_acct_db_key_list(db, NULL, &j->keys, &j->n_keys);
    if (rc)
        return rc;
    const lv_apikey_t *k = NULL;
    for (size_t i = 0; i < j->n_keys && !k; i++)
        if (strcmp(j->keys[i].id, j->id) == 0)
            k = &j->keys[i];
    if (!k)
        return job_fail(j, 404, "no API key with id '%s'", j->id);
    if (k->revoked)
        return job_fail(j, 409, "API key '%s' is revoked already", j->id);
    snprintf(j->target, sizeof(j->target), "%s", k->id);
    snprintf(j->detail, sizeof(j->detail), "prefix=%s user_id=%s name=%s", k->prefix, k->user_id, k->name);
    return lv_acct_db_key_revoke(db, j->id);
}

static int work_tenant_put(lv_db_t *db, job_t *j)
{
    int rc = lv_acct_db_tenant_list(db, &j->tenants, &j->n_tenants);
    if (rc)
        return rc;
    const lv_tenant_t *cur = find_tenant(j, j->tenant.id);
    lv_tenant_t t;
    char q[160];
    if (cur) {
        t = *cur;
    } else {
        memset(&t, 0, sizeof(t));
        snprintf(t.id, sizeof(t.id), "%s", j->tenant.id);
        snprintf(t.name, sizeof(t.name), "%s", j->tenant.id);
        t.weight = 1;
    }
    if (j->fields & F_NAME)
        snprintf(t.name, sizeof(t.name), "%s", j->tenant.name);
    if (j->fields & F_WEIGHT)
        t.weight = j->tenant.weight;
    if (j->fields & F_BACKENDS)
        snprintf(t.backends, sizeof(t.backends), "%s", j->tenant.backends);
    if (j->fields & F_MODELS)
        snprintf(t.models, sizeof(t.models), "%s", j->tenant.models);
    if (j->fields & F_QUOTA) {
        int64_t *dst[] = {&t.quota.fpm, &t.quota.answers_day, &t.quota.tokens_day, &t.quota.sessions};
        const int64_t src[] = {j->quota.fpm, j->quota.answers_day, j->quota.tokens_day, j->quota.sessions};
        for (size_t i = 0; i < 4; i++)
            if (j->quota_set[i])
                *dst[i] = src[i];
    }
    if ((rc = lv_acct_db_tenant_put(db, &t)) != 0)
        return rc;
    j->tenant = t;
    j->created = cur == NULL;
    quota_text(q, sizeof(q), &t.quota);
    snprintf(j->target, sizeof(j->target), "%s", t.id);
    snprintf(j->detail, sizeof(j->detail), "%s weight=%d backends=%.40s models=%.40s %.100s",
             cur ? "updated" : "created", t.weight, t.backends[0] ? t.backends : "all", t.models[0] ? t.models : "all",
             q);
    return 0;
}

static int work_tenant_delete(lv_db_t *db, job_t *j)
{
    int rc = lv_acct_db_tenant_list(db, &j->tenants, &j->n_tenants);
    if (!rc)
        rc = lv_acct_db_user_list(db, &j->users, &j->n_users);
    if (rc)
        return rc;
    if (!find_tenant(j, j->id))
        return job_fail(j, 404, "no tenant '%s'", j->id);
    size_t members = 0;
    for (size_t i = 0; i < j->n_users; i++)
        members += strcmp(j->users[i].tenant, j->id) == 0;
    if (members)
        return job_fail(j, 409, "tenant '%s' still has %zu user%s: move them to another tenant or delete them first",
                        j->id, members, members == 1 ? "" : "s");
    rc = lv_acct_db_tenant_delete(db, j->id);
    if (rc == LV_EEXIST) /* a user joined meanwhile (the CLI, another frontend) */
        return job_fail(j, 409, "tenant '%s' still has users: move them to another tenant or delete them first", j->id);
    snprintf(j->target, sizeof(j->target), "%s", j->id);
    return rc;
}

/* ---- the usage summary: answers and tokens per UTC day per tenant ---- */

static void usage_add(usage_agg_t *a, const lv_usage_t *u, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int64_t d = (u[i].t_ms - a->day0_ms) / DAY_MS;
        if (u[i].t_ms < a->day0_ms || d >= a->days)
            continue;
        size_t t = 0;
        while (t < a->n_tenants && strcmp(a->tenant[t], u[i].tenant) != 0)
            t++;
        if (t == a->n_tenants) {
            if (a->n_tenants < USAGE_TENANTS_MAX) {
                snprintf(a->tenant[t], sizeof(a->tenant[t]), "%s", u[i].tenant);
                a->n_tenants++;
            } else {
                t = USAGE_TENANTS_MAX; /* "(other)" */
            }
        }
        if (strcmp(u[i].outcome, "ok") == 0)
            a->answers[t][d]++;
        a->tokens[t][d] += u[i].prompt_tokens + u[i].completion_tokens;
    }
}

/* Rows of [from, to), a page at a time: a full page means more may lie beyond it, so the span is
 * halved and each half asked again (the query has no cursor), down to a second. Bounded by
 * USAGE_QUERIES_MAX queries; past that, or a second with more than a page of answers, the
 * summary is marked partial rather than loading everything into memory. */
static int usage_span(lv_db_t *db, usage_agg_t *a, int64_t from, int64_t to)
{
    lv_usage_filter_t f;
    lv_usage_t *rows = NULL;
    size_t n = 0;
    if (a->queries >= USAGE_QUERIES_MAX) {
        a->partial = true;
        return 0;
    }
    a->queries++;
    memset(&f, 0, sizeof(f));
    f.from_ms = from;
    f.to_ms = to;
    f.limit = USAGE_PAGE_ROWS;
    int rc = lv_acct_db_usage_query(db, &f, &rows, &n);
    if (rc)
        return rc;
    if (n >= USAGE_PAGE_ROWS && to - from > 1000) {
        free(rows);
        int64_t mid = from + (to - from) / 2;
        rc = usage_span(db, a, from, mid);
        return rc ? rc : usage_span(db, a, mid, to);
    }
    if (n >= USAGE_PAGE_ROWS)
        a->partial = true;
    usage_add(a, rows, n);
    free(rows);
    return 0;
}

static int work_usage(lv_db_t *db, job_t *j)
{
    usage_agg_t *a = j->usage;
    snprintf(a->tenant[USAGE_TENANTS_MAX], sizeof(a->tenant[0]), "(other)");
    return usage_span(db, a, a->day0_ms, a->day0_ms + (int64_t)a->days * DAY_MS);
}

static int job_work(lv_db_t *db, void *ud)
{
    job_t *j = ud;
    switch (j->kind) {
    case J_USERS:
        return lv_acct_db_user_list(db, &j->users, &j->n_users);
    case J_USER_ADD:
        return work_user_add(db, j);
    case J_USER_UPDATE:
        return work_user_update(db, j);
    case J_USER_DELETE:
        return work_user_delete(db, j);
    case J_KEYS: {
        int rc = lv_acct_db_key_list(db, NULL, &j->keys, &j->n_keys);
        return rc ? rc : lv_acct_db_user_list(db, &j->users, &j->n_users);
    }
    case J_KEY_REVOKE:
        return work_key_revoke(db, j);
    case J_TENANTS: {
        int rc = lv_acct_db_tenant_list(db, &j->tenants, &j->n_tenants);
        return rc ? rc : lv_acct_db_user_list(db, &j->users, &j->n_users);
    }
    case J_TENANT_PUT:
        return work_tenant_put(db, j);
    case J_TENANT_DELETE:
        return work_tenant_delete(db, j);
    case J_AUDIT:
        return lv_acct_db_audit_list(db, j->limit, &j->audit, &j->n_audit);
    case J_USAGE:
        return work_usage(db, j);
    }
    return LV_EINVAL;
}

/* ---------- JSON forms ---------- */

static json_t *quota_json(const lv_quota_t *q)
{
    return json_pack("{s:I, s:I, s:I, s:I}", "fpm", (json_int_t)q->fpm, "answers_day", (json_int_t)q->answers_day,
                     "tokens_day", (json_int_t)q->tokens_day, "sessions", (json_int_t)q->sessions);
}

static json_t *user_json(const lv_user_t *u)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:b, s:b, s:b, s:i, s:o, s:I}", "id", u->id, "name", u->name, "role",
                     lv_role_name(u->role), "tenant", u->tenant, "disabled", u->disabled, "has_password",
                     u->has_password, "sso", u->oidc_sub[0] != '\0', "weight", u->weight, "quota",
                     quota_json(&u->quota), "created_ms", (json_int_t)u->created_ms);
}

/* users < 0: not counted (the answer to a put) */
static json_t *tenant_json(const lv_tenant_t *t, long users)
{
    json_t *o = json_pack("{s:s, s:s, s:i, s:s, s:s, s:o, s:I}", "id", t->id, "name", t->name, "weight", t->weight,
                          "backends", t->backends, "models", t->models, "quota", quota_json(&t->quota), "created_ms",
                          (json_int_t)t->created_ms);
    if (o && users >= 0)
        json_object_set_new(o, "users", json_integer(users));
    return o;
}

static json_t *key_json(const lv_apikey_t *k, const lv_user_t *owner)
{
    json_t *scope = json_array();
    if (k->scope & LV_SCOPE_STREAM)
        json_array_append_new(scope, json_string("stream"));
    if (k->scope & LV_SCOPE_ADMIN)
        json_array_append_new(scope, json_string("admin"));
    return json_pack("{s:s, s:s, s:s?, s:s, s:s, s:o, s:I, s:I, s:b, s:I}", "id", k->id, "user_id", k->user_id, "user",
                     owner ? owner->name : NULL, "name", k->name, "prefix", k->prefix, "scope", scope, "expires_ms",
                     (json_int_t)k->expires_ms, "last_used_ms", (json_int_t)k->last_used_ms, "revoked", k->revoked,
                     "created_ms", (json_int_t)k->created_ms);
}

static json_t *job_result(job_t *j)
{
    json_t *arr = json_array();
    switch (j->kind) {
    case J_USERS:
        for (size_t i = 0; i < j->n_users; i++)
            json_array_append_new(arr, user_json(&j->users[i]));
        return json_pack("{s:o}", "users", arr);
    case J_KEYS:
        for (size_t i = 0; i < j->n_keys; i++)
            json_array_append_new(arr, key_json(&j->keys[i], find_user(j, j->keys[i].user_id)));
        return json_pack("{s:o}", "keys", arr);
    case J_TENANTS:
        for (size_t i = 0; i < j->n_tenants; i++) {
            size_t users = 0;
            for (size_t k = 0; k < j->n_users; k++)
                users += strcmp(j->users[k].tenant, j->tenants[i].id) == 0;
            json_array_append_new(arr, tenant_json(&j->tenants[i], (long)users));
        }
        return json_pack("{s:o}", "tenants", arr);
    case J_AUDIT:
        for (size_t i = 0; i < j->n_audit; i++) {
            const lv_audit_t *a = &j->audit[i];
            json_array_append_new(arr, json_pack("{s:I, s:s, s:s, s:s, s:s, s:s}", "t_ms", (json_int_t)a->t_ms, "actor",
                                                 a->actor, "ip", a->ip, "action", a->action, "target", a->target,
                                                 "detail", a->detail));
        }
        return json_pack("{s:o}", "audit", arr);
    case J_USAGE: {
        const usage_agg_t *a = j->usage;
        json_t *days = json_array();
        for (int d = 0; d < a->days; d++) {
            char day[16];
            time_t t = (time_t)((a->day0_ms + (int64_t)d * DAY_MS) / 1000);
            struct tm tm;
            gmtime_r(&t, &tm);
            strftime(day, sizeof(day), "%Y-%m-%d", &tm);
            json_array_append_new(days, json_string(day));
        }
        for (size_t t = 0; t <= USAGE_TENANTS_MAX; t++) {
            if (t == a->n_tenants && t < USAGE_TENANTS_MAX)
                t = USAGE_TENANTS_MAX; /* the "(other)" row, only when something is in it */
            json_t *ans = json_array(), *tok = json_array();
            int64_t sum = 0;
            for (int d = 0; d < a->days; d++) {
                json_array_append_new(ans, json_integer(a->answers[t][d]));
                json_array_append_new(tok, json_integer(a->tokens[t][d]));
                sum += a->answers[t][d] + a->tokens[t][d];
            }
            if (t == USAGE_TENANTS_MAX && sum == 0) {
                json_decref(ans);
                json_decref(tok);
                continue;
            }
            json_array_append_new(arr, json_pack("{s:s, s:o, s:o}", "id", a->tenant[t], "answers", ans, "tokens", tok));
        }
        return json_pack("{s:o, s:o, s:b}", "days", days, "tenants", arr, "partial", a->partial);
    }
    case J_USER_ADD: {
        json_decref(arr);
        json_t *o = json_pack("{s:o}", "user", user_json(&j->user));
        if (o && (j->fields & F_INVITE)) {
            char link[32 + LV_ACCT_SECRET_HEX];
            snprintf(link, sizeof(link), "/login?invite=%s", j->invite);
            json_object_set_new(o, "invite_link", json_string(link));
        }
        return o;
    }
    case J_USER_UPDATE: {
        json_decref(arr);
        json_t *o = json_pack("{s:o}", "user", user_json(&j->user));
        if (o && (j->fields & F_INVITE)) {
            char link[32 + LV_ACCT_SECRET_HEX];
            snprintf(link, sizeof(link), "/login?invite=%s", j->invite);
            json_object_set_new(o, "invite_link", json_string(link));
        }
        return o;
    }
    case J_TENANT_PUT:
        json_decref(arr);
        return json_pack("{s:o}", "tenant", tenant_json(&j->tenant, -1));
    case J_USER_DELETE:
    case J_KEY_REVOKE:
    case J_TENANT_DELETE:
        json_decref(arr);
        return json_pack("{s:b}", "ok", true);
    }
    json_decref(arr);
    return NULL;
}

static const char *job_action(job_kind_t k)
{
    switch (k) {
    case J_USER_ADD:
        return "user.add";
    case J_USER_UPDATE:
        return "user.update";
    case J_USER_DELETE:
        return "user.delete";
    case J_KEY_REVOKE:
        return "key.revoke";
    case J_TENANT_PUT:
        return "tenant.put";
    case J_TENANT_DELETE:
        return "tenant.delete";
    default:
        return NULL; /* a listing changes nothing */
    }
}

/* ---------- live sessions ---------- */

/* End every session of user_id here (a disabled or deleted account): their sockets hear
 * kicked_by_admin. Ids first, then the kicks: the walk must not see the registry change. */
static size_t kick_user_sessions(lv_app_t *app, const char *user_id, const char *message);

static void job_done(lv_app_t *app, lv_req_t *r, int rc, void *ud)
{
    job_t *j = ud;
    const char *action = job_action(j->kind);
    if (rc == 0 && action) {
        lv_accounts_audit(app, &j->who, j->ip, action, j->target, j->detail);
        if (j->disabled_now || j->deleted) {
            lv_acct_snap_t *snap = lv_accounts_snap(app);
            if (snap) /* its sign-ins stop at once, not at the next reload */
                lv_acct_snap_drop_user_logins(snap, j->user.id[0] ? j->user.id : j->id);
            kick_user_sessions(app, j->user.id[0] ? j->user.id : j->id,
                               j->deleted ? "An administrator deleted this account."
                                          : "An administrator disabled this account.");
        }
        lv_accounts_reload(app);
    }
    if (!r)
        goto out;
    if (rc == 0) {
        respond_json(r, j->kind == J_USER_ADD || j->created ? 201 : 200, job_result(j));
    } else if (j->status) {
        static const struct {
            int status;
            const char *code;
        } codes[] = {{400, "bad_request"}, {404, "not_found"}, {409, "conflict"}};
        const char *code = "error";
        for (size_t i = 0; i < LV_ARRAY_LEN(codes); i++)
            if (codes[i].status == j->status)
                code = codes[i].code;
        respond_error(r, j->status, code, j->msg);
    } else {
        LV_WARN("admin %s: database: %s", action ? action : "listing", lv_strerror(rc));
        respond_error(r, 500, "database", "the database could not do it; the server log says why");
    }
out:
    job_free(j);
}

static job_t *job_new(job_kind_t kind, lv_req_t *r, const lv_principal_t *who)
{
    job_t *j = calloc(1, sizeof(*j));
    if (!j)
        return NULL;
    j->kind = kind;
    j->who = *who;
    snprintf(j->ip, sizeof(j->ip), "%s", r->ip);
    return j;
}

/* Queue j for r; on a full queue lv_accounts_submit_req answered 503 itself. */
static int submit(lv_app_t *app, lv_req_t *r, job_t *j)
{
    if (!j)
        return respond_error(r, 500, "internal", "out of memory");
    int rc = lv_accounts_submit_req(app, r, job_work, job_done, j);
    if (rc) {
        job_free(j);
        return rc == LV_ELIMIT ? 0 : respond_error(r, 503, "database", "the database is not available");
    }
    return 0;
}

/* ---------- routes: users ---------- */

static int check_role(const char *s, lv_role_t *out, perr_t *e)
{
    if (lv_role_parse(s, out) != 0)
        return perr(e, "role must be admin, user or viewer");
    return 0;
}

/* the one rule for new passwords (lv_acctreq.h), as the sign-in page and the CLI apply it */
static int check_password(const char *pw, perr_t *e)
{
    lv_acctreq_err_t why;
    if (lv_acctreq_password_ok(pw, &why) != 0)
        return perr(e, "%s", why.message);
    return 0;
}

static int parse_quota_into(job_t *j, const json_t *body, perr_t *e, bool *present)
{
    lv_quota_t q;
    memset(&q, 0, sizeof(q));
    /* mark which were given: -1 is never a valid value */
    q.fpm = q.answers_day = q.tokens_day = q.sessions = -1;
    int rc = field_quota(body, &q, present, e);
    if (rc || !*present)
        return rc;
    const int64_t v[] = {q.fpm, q.answers_day, q.tokens_day, q.sessions};
    for (size_t i = 0; i < 4; i++)
        j->quota_set[i] = v[i] >= 0;
    j->quota.fpm = LV_MAX(q.fpm, 0);
    j->quota.answers_day = LV_MAX(q.answers_day, 0);
    j->quota.tokens_day = LV_MAX(q.tokens_day, 0);
    j->quota.sessions = LV_MAX(q.sessions, 0);
    j->fields |= F_QUOTA;
    return 0;
}

static int user_add(lv_app_t *app, lv_req_t *r, const lv_principal_t *who, const json_t *body)
{
    static const char *const keys[] = {"name", "role", "tenant", "invite", "password", NULL};
    perr_t e;
    char role[16] = "user";
    bool has_name, has_role, has_tenant, has_invite, has_pw, invite = false;
    job_t *j = job_new(J_USER_ADD, r, who);
    if (!j)
        return respond_error(r, 500, "internal", "out of memory");
    snprintf(j->user.tenant, sizeof(j->user.tenant), "%s", LV_ACCT_DEFAULT_TENANT);
    int rc = only_fields(body, keys, "a new user", &e);
    if (!rc)
        rc = field_str(body, "name", j->user.name, sizeof(j->user.name), &has_name, &e);
    if (!rc && (!has_name || lv_acct_check_name(j->user.name) != 0))
        rc = perr(&e, "name must be 1 to 64 of a-z A-Z 0-9 . _ @ + -");
    if (!rc)
        rc = field_str(body, "role", role, sizeof(role), &has_role, &e);
    if (!rc)
        rc = check_role(role, &j->user.role, &e);
    if (!rc)
        rc = field_str(body, "tenant", j->user.tenant, sizeof(j->user.tenant), &has_tenant, &e);
    if (!rc && lv_acct_check_id(j->user.tenant) != 0)
        rc = perr(&e, "tenant must be a tenant id: 1 to 32 of a-z 0-9 _ -");
    if (!rc)
        rc = field_bool(body, "invite", &invite, &has_invite, &e);
    if (!rc)
        rc = field_str(body, "password", j->password, sizeof(j->password), &has_pw, &e);
    if (!rc && has_pw)
        rc = check_password(j->password, &e);
    if (!rc && invite == has_pw)
        rc = perr(&e, invite ? "give either invite: true or a password, not both"
                             : "give invite: true (the user sets a password with the link) or a password");
    if (rc) {
        job_free(j);
        return bad_request(r, "%s", e.msg);
    }
    j->fields = (invite ? F_INVITE : 0) | (has_pw ? F_PASSWORD : 0);
    return submit(app, r, j);
}

static int user_update(lv_app_t *app, lv_req_t *r, const lv_principal_t *who, const char *id, const json_t *body)
{
    static const char *const keys[] = {"role", "tenant", "disabled", "weight", "quota", "password", "invite", NULL};
    perr_t e;
    char role[16];
    bool has_role, has_tenant, has_dis, has_weight, has_quota, has_pw, has_invite, invite = false;
    int64_t weight = 0;
    job_t *j = job_new(J_USER_UPDATE, r, who);
    if (!j)
        return respond_error(r, 500, "internal", "out of memory");
    snprintf(j->id, sizeof(j->id), "%s", id);
    int rc = only_fields(body, keys, "a user update", &e);
    if (!rc)
        rc = field_str(body, "role", role, sizeof(role), &has_role, &e);
    if (!rc && has_role)
        rc = check_role(role, &j->user.role, &e);
    if (!rc)
        rc = field_str(body, "tenant", j->user.tenant, sizeof(j->user.tenant), &has_tenant, &e);
    if (!rc && has_tenant && lv_acct_check_id(j->user.tenant) != 0)
        rc = perr(&e, "tenant must be a tenant id: 1 to 32 of a-z 0-9 _ -");
    if (!rc)
        rc = field_bool(body, "disabled", &j->user.disabled, &has_dis, &e);
    if (!rc)
        rc = field_int(body, "weight", 1, WEIGHT_MAX, &weight, &has_weight, &e);
    if (!rc)
        rc = parse_quota_into(j, body, &e, &has_quota);
    if (!rc)
        rc = field_str(body, "password", j->password, sizeof(j->password), &has_pw, &e);
    if (!rc && has_pw)
        rc = check_password(j->password, &e);
    if (!rc)
        rc = field_bool(body, "invite", &invite, &has_invite, &e);
    if (!rc && !(has_role || has_tenant || has_dis || has_weight || has_quota || has_pw || invite))
        rc = perr(&e, "nothing to change: give role, tenant, disabled, weight, quota, password or invite: true");
    if (rc) {
        job_free(j);
        return bad_request(r, "%s", e.msg);
    }
    /* an admin who locks themselves out needs another admin to undo it; there may be none */
    if (strcmp(who->user_id, id) == 0 &&
        ((has_role && j->user.role != LV_ROLE_ADMIN) || (has_dis && j->user.disabled))) {
        job_free(j);
        return respond_error(r, 409, "conflict",
                             "you cannot take the admin role from, or disable, your own account; another "
                             "admin can");
    }
    j->user.weight = (int)weight;
    j->fields |= (has_role ? F_ROLE : 0) | (has_tenant ? F_TENANT : 0) | (has_dis ? F_DISABLED : 0) |
                 (has_weight ? F_WEIGHT : 0) | (has_pw ? F_PASSWORD : 0) | (invite ? F_INVITE : 0);
    return submit(app, r, j);
}

/* ---------- routes: tenants ---------- */

static int tenant_put(lv_app_t *app, lv_req_t *r, const lv_principal_t *who, const json_t *body)
{
    static const char *const keys[] = {"id", "name", "weight", "backends", "models", "quota", NULL};
    perr_t e;
    bool has_id, has_name, has_weight, has_b, has_m, has_quota;
    int64_t weight = 1;
    job_t *j = job_new(J_TENANT_PUT, r, who);
    if (!j)
        return respond_error(r, 500, "internal", "out of memory");
    int rc = only_fields(body, keys, "a tenant", &e);
    if (!rc)
        rc = field_str(body, "id", j->tenant.id, sizeof(j->tenant.id), &has_id, &e);
    if (!rc && (!has_id || lv_acct_check_id(j->tenant.id) != 0))
        rc = perr(&e, "id must be 1 to 32 of a-z 0-9 _ -");
    if (!rc)
        rc = field_str(body, "name", j->tenant.name, sizeof(j->tenant.name), &has_name, &e);
    if (!rc)
        rc = field_int(body, "weight", 1, WEIGHT_MAX, &weight, &has_weight, &e);
    if (!rc)
        rc = field_list(body, "backends", true, j->tenant.backends, &has_b, &e);
    if (!rc)
        rc = field_list(body, "models", false, j->tenant.models, &has_m, &e);
    if (!rc)
        rc = parse_quota_into(j, body, &e, &has_quota);
    if (rc) {
        job_free(j);
        return bad_request(r, "%s", e.msg);
    }
    j->tenant.weight = (int)weight;
    j->fields |=
        (has_name ? F_NAME : 0) | (has_weight ? F_WEIGHT : 0) | (has_b ? F_BACKENDS : 0) | (has_m ? F_MODELS : 0);
    return submit(app, r, j);
}

/* ---------- routes: sessions ---------- */

typedef struct {
    lv_app_t *app;
    lv_acct_snap_t *snap;
    json_t *arr;
    uint64_t now_ms, wall_ms;
    size_t n;
    bool truncated;
} sess_walk_t;

static int session_row(lv_session_t *s, void *ud)
{
    sess_walk_t *w = ud;
    if (w->n >= SESSIONS_MAX) {
        w->truncated = true;
        return 1;
    }
    const char *user = NULL;
    if (w->snap && strncmp(s->rec.principal, "u:", 2) == 0) {
        const lv_user_t *u = lv_acct_snap_user(w->snap, s->rec.principal + 2);
        user = u ? u->name : NULL;
    }
    bool attached = lv_session_attached(s);
    uint64_t created = s->rec.created_ms;
    json_t *o = json_pack("{s:s, s:s, s:s?, s:s, s:s, s:s, s:s, s:b, s:b, s:I, s:I, s:I, s:i, s:b, s:I, s:I}", "id",
                          s->rec.id, "principal", s->rec.principal, "user", user, "tenant", s->rec.tenant, "model",
                          s->rec.settings.model, "backend", s->rec.settings.backend, "source", s->rec.settings.source,
                          "started", s->rec.started, "connected", attached, "frames", (json_int_t)s->frames_received,
                          "answers", (json_int_t)s->rec.total_inferences, "errors", (json_int_t)s->errors, "sockets",
                          (int)(s->n_viewers + s->n_sources), "in_flight", s->job != NULL, "age_s",
                          (json_int_t)(w->wall_ms > created ? (w->wall_ms - created) / 1000 : 0), "detached_s",
                          (json_int_t)(!attached && s->detached_since_ms && w->now_ms > s->detached_since_ms
                                           ? (w->now_ms - s->detached_since_ms) / 1000
                                           : 0));
    if (o)
        json_array_append_new(w->arr, o);
    w->n++;
    return 0;
}

static int sessions_list(lv_app_t *app, lv_req_t *r)
{
    sess_walk_t w = {
        .app = app, .snap = lv_accounts_snap(app), .arr = json_array(), .now_ms = lv_now_ms(), .wall_ms = lv_wall_ms()};
    if (app->reg)
        lv_registry_each(app->reg, session_row, &w);
    /* in a cluster each frontend lists the sessions it holds: the others are theirs */
    return respond_json(r, 200,
                        json_pack("{s:o, s:b, s:b}", "sessions", w.arr, "truncated", w.truncated, "this_node_only",
                                  app->cluster != NULL));
}

typedef struct {
    const char *key;
    char ids[KICK_BATCH][LV_SESSION_ID_LEN + 1];
    size_t n;
} kick_walk_t;

static int kick_collect(lv_session_t *s, void *ud)
{
    kick_walk_t *k = ud;
    if (strcmp(s->rec.principal, k->key) == 0)
        snprintf(k->ids[k->n++], sizeof(k->ids[0]), "%s", s->rec.id);
    return k->n >= KICK_BATCH;
}

static size_t kick_user_sessions(lv_app_t *app, const char *user_id, const char *message)
{
    char key[LV_PRINCIPAL_KEY_MAX];
    size_t ended = 0;
    kick_walk_t *k = calloc(1, sizeof(*k));
    if (!k || !app->reg || !user_id[0]) {
        free(k);
        return 0;
    }
    snprintf(key, sizeof(key), "u:%s", user_id);
    k->key = key;
    lv_registry_each(app->reg, kick_collect, k);
    for (size_t i = 0; i < k->n; i++) {
        lv_session_t *s = lv_session_find(app->reg, k->ids[i]);
        if (s) {
            lv_engine_session_kick(app, s, message);
            ended++;
        }
    }
    free(k);
    return ended;
}

static bool session_id_ok(const char *id)
{
    size_t n = strlen(id);
    for (size_t i = 0; i < n; i++)
        if (lv_hex_digit((unsigned char)id[i]) < 0)
            return false;
    return n == LV_SESSION_ID_LEN;
}

static int session_kick(lv_app_t *app, lv_req_t *r, const lv_principal_t *who, const char *id)
{
    lv_session_t *s = session_id_ok(id) && app->reg ? lv_session_find(app->reg, id) : NULL;
    if (!s)
        return respond_error(r, 404, "not_found",
                             app->cluster ? "no session with that id on this server (in a cluster, ask the "
                                            "frontend that lists it)"
                                          : "no live session with that id");
    char detail[160];
    snprintf(detail, sizeof(detail), "principal=%.64s tenant=%s", s->rec.principal, s->rec.tenant);
    lv_engine_session_kick(app, s, "An administrator ended this session. Reload the page to start a new one.");
    lv_accounts_audit(app, who, r->ip, "session.kick", id, detail);
    return respond_json(r, 200, json_pack("{s:b}", "ok", true));
}

/* ---------- routes: backends ---------- */

static int backends_list(lv_app_t *app, lv_req_t *r)
{
    json_t *arr = json_array();
    for (size_t i = 0; app->pool && i < lv_pool_count(app->pool); i++) {
        lv_backend_t *b = lv_pool_at(app->pool, i);
        json_t *models = json_array();
        for (size_t k = 0; k < b->n_models; k++)
            json_array_append_new(models, json_string(b->models[k]));
        /* base_url never holds the key (lv_pool_add refuses user:password@; the key travels in a
         * header only) */
        json_array_append_new(arr, json_pack("{s:s, s:s, s:b, s:b, s:s, s:i, s:i, s:i, s:o, s:s, s:I, s:I}", "id",
                                             b->id, "url", b->base_url, "healthy", b->healthy != 0, "draining",
                                             b->draining != 0, "state", lv_backend_state_name(b), "window",
                                             lv_backend_limit(b), "max_concurrency", b->max_concurrency, "inflight",
                                             b->inflight, "models", models, "error", b->last_error, "requests",
                                             (json_int_t)b->requests_total, "errors", (json_int_t)b->errors_total));
    }
    return respond_json(r, 200, json_pack("{s:o, s:b}", "backends", arr, "cluster", app->cluster != NULL));
}

static int backend_set(lv_app_t *app, lv_req_t *r, const lv_principal_t *who, const char *id, bool drain)
{
    if (app->cluster)
        return respond_error(r, 409, "conflict",
                             "in a cluster the workers call the backends: drain workers with their own flags "
                             "(stop one, or start it without that --backend)");
    lv_backend_t *b = lv_pool_find(app->pool, id);
    if (!b)
        return respond_error(r, 404, "not_found", "no backend with that id");
    bool changed = (b->draining != 0) != drain;
    b->draining = drain;
    if (changed) {
        char detail[64];
        snprintf(detail, sizeof(detail), "inflight=%d", b->inflight);
        LV_INFO("backend %s %s by %s", b->id, drain ? "drained" : "enabled", who->name[0] ? who->name : who->key);
        lv_accounts_audit(app, who, r->ip, drain ? "backend.drain" : "backend.enable", b->id, detail);
    }
    return respond_json(
        r, 200,
        json_pack("{s:s, s:b, s:i, s:b}", "id", b->id, "draining", drain, "inflight", b->inflight, "changed", changed));
}

/* ---------- routes: audit and usage ---------- */

static int query_int(lv_req_t *r, const char *name, int64_t min, int64_t max, int64_t def, int64_t *out)
{
    char arg[24], *end;
    int rc = lv_query_get(r->query, name, arg, sizeof(arg));
    if (rc == LV_ENOTFOUND) {
        *out = def;
        return 0;
    }
    long long v = rc ? 0 : strtoll(arg, &end, 10);
    if (rc || end == arg || *end || v < min || v > max) {
        bad_request(r, "%s must be a whole number from %lld to %lld", name, (long long)min, (long long)max);
        return LV_EINVAL;
    }
    *out = v;
    return 0;
}

static int audit_list(lv_app_t *app, lv_req_t *r, const lv_principal_t *who)
{
    int64_t limit;
    if (query_int(r, "limit", 1, AUDIT_MAX, AUDIT_DEFAULT, &limit))
        return 0;
    job_t *j = job_new(J_AUDIT, r, who);
    if (j)
        j->limit = (size_t)limit;
    return submit(app, r, j);
}

static int usage_summary(lv_app_t *app, lv_req_t *r, const lv_principal_t *who)
{
    int64_t days;
    if (query_int(r, "days", 1, USAGE_DAYS_MAX, 14, &days))
        return 0;
    job_t *j = job_new(J_USAGE, r, who);
    if (j && !(j->usage = calloc(1, sizeof(*j->usage)))) {
        job_free(j);
        j = NULL;
    }
    if (j) {
        int64_t today = (int64_t)lv_wall_ms() / DAY_MS * DAY_MS;
        j->usage->days = (int)days;
        j->usage->day0_ms = today - (days - 1) * DAY_MS;
    }
    return submit(app, r, j);
}

/* ---------- routing ---------- */

/* Split "/a/b/c" into at most 3 segments of at most SEG_MAX bytes; -1 otherwise. */
static int split(const char *rest, char seg[3][SEG_MAX + 1])
{
    int n = 0;
    while (*rest == '/' && rest[1]) {
        rest++;
        size_t len = strcspn(rest, "/");
        if (n == 3 || len == 0 || len > SEG_MAX)
            return -1;
        memcpy(seg[n], rest, len);
        seg[n][len] = '\0';
        n++;
        rest += len;
    }
    return *rest == '\0' || strcmp(rest, "/") == 0 ? n : -1;
}

bool lv_admin_api_route(const char *path)
{
    size_t n = strlen(PREFIX);
    return strncmp(path, PREFIX, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/* A sign-in cookie's state change must carry its X-CSRF-Token (docs/internals/accounts.md). The
 * server checks it centrally too; this keeps the admin routes safe on their own. */
static bool csrf_ok(const lv_req_t *r, const lv_principal_t *who)
{
    char tok[80];
    if (who->cred != LV_CRED_COOKIE)
        return true;
    if (!who->csrf[0] || lv_http1_header_copy(r->head, "x-csrf-token", tok, sizeof(tok)) != 0)
        return false;
    return lv_secure_equal(tok, strlen(tok), who->csrf, strlen(who->csrf)) != 0;
}

static bool accounts_on(lv_app_t *app, lv_req_t *r)
{
    if (app->accts)
        return true;
    respond_error(r, 409, "accounts_off",
                  "accounts are off (--auth token or none): start the server with --auth accounts to manage "
                  "users, keys and tenants");
    return false;
}

static int handle_post(lv_app_t *app, lv_req_t *r, const lv_principal_t *who, char seg[3][SEG_MAX + 1], int n)
{
    perr_t e;
    int rc = 0;
    const char *what = seg[0];
    bool collection = strcmp(what, "users") == 0 || strcmp(what, "keys") == 0 || strcmp(what, "tenants") == 0;
    if (collection && !accounts_on(app, r))
        return 0;
    if (n == 3 && strcmp(what, "sessions") == 0 && strcmp(seg[2], "kick") == 0)
        return session_kick(app, r, who, seg[1]);
    if (n == 3 && strcmp(what, "backends") == 0 && (strcmp(seg[2], "drain") == 0 || strcmp(seg[2], "enable") == 0))
        return backend_set(app, r, who, seg[1], strcmp(seg[2], "drain") == 0);
    if (n == 3 && strcmp(what, "keys") == 0 && strcmp(seg[2], "revoke") == 0) {
        if (lv_acct_check_id(seg[1]) != 0)
            return respond_error(r, 404, "not_found", "no API key with that id");
        job_t *j = job_new(J_KEY_REVOKE, r, who);
        if (j)
            snprintf(j->id, sizeof(j->id), "%s", seg[1]);
        return submit(app, r, j);
    }
    if (n == 3 && strcmp(seg[2], "delete") == 0 && (strcmp(what, "users") == 0 || strcmp(what, "tenants") == 0)) {
        bool users = strcmp(what, "users") == 0;
        if (lv_acct_check_id(seg[1]) != 0)
            return respond_error(r, 404, "not_found", users ? "no user with that id" : "no tenant with that id");
        if (users && strcmp(seg[1], who->user_id) == 0)
            return respond_error(r, 409, "conflict", "you cannot delete your own account; another admin can");
        if (!users && strcmp(seg[1], LV_ACCT_DEFAULT_TENANT) == 0)
            return respond_error(r, 409, "conflict",
                                 "the default tenant cannot be deleted: new users and sign-ins land in it");
        job_t *j = job_new(users ? J_USER_DELETE : J_TENANT_DELETE, r, who);
        if (j)
            snprintf(j->id, sizeof(j->id), "%s", seg[1]);
        return submit(app, r, j);
    }
    /* the rest take a JSON body */
    bool add_user = n == 1 && strcmp(what, "users") == 0;
    bool upd_user = n == 2 && strcmp(what, "users") == 0;
    bool put_tenant = n == 1 && strcmp(what, "tenants") == 0;
    if (!add_user && !upd_user && !put_tenant)
        return not_found(r);
    if (upd_user && lv_acct_check_id(seg[1]) != 0)
        return respond_error(r, 404, "not_found", "no user with that id");
    json_t *body = body_object(r, &e);
    if (!body)
        return bad_request(r, "%s", e.msg);
    if (add_user)
        rc = user_add(app, r, who, body);
    else if (upd_user)
        rc = user_update(app, r, who, seg[1], body);
    else
        rc = tenant_put(app, r, who, body);
    json_decref(body);
    return rc;
}

static int handle_get(lv_app_t *app, lv_req_t *r, const lv_principal_t *who, char seg[3][SEG_MAX + 1], int n)
{
    const char *what = seg[0];
    if (n == 1 && strcmp(what, "sessions") == 0)
        return sessions_list(app, r);
    if (n == 1 && strcmp(what, "backends") == 0)
        return backends_list(app, r);
    if (n == 1 && strcmp(what, "audit") == 0)
        return audit_list(app, r, who);
    if (n == 2 && strcmp(what, "usage") == 0 && strcmp(seg[1], "summary") == 0)
        return usage_summary(app, r, who);
    job_kind_t kind;
    if (n == 1 && strcmp(what, "users") == 0)
        kind = J_USERS;
    else if (n == 1 && strcmp(what, "keys") == 0)
        kind = J_KEYS;
    else if (n == 1 && strcmp(what, "tenants") == 0)
        kind = J_TENANTS;
    else
        return not_found(r);
    if (!accounts_on(app, r))
        return 0;
    return submit(app, r, job_new(kind, r, who));
}

int lv_admin_api_handle(lv_app_t *app, lv_req_t *r, const lv_principal_t *who)
{
    char seg[3][SEG_MAX + 1];
    if (!who)
        return respond_error(r, 401, "unauthorized", "sign in as an administrator");
    if (who->role != LV_PRINCIPAL_ADMIN)
        return respond_error(r, 403, "forbidden_role",
                             "this needs an administrator: an account with role admin (an API key also needs "
                             "the admin scope)");
    int n = split(r->path + strlen(PREFIX), seg);
    if (n <= 0)
        return not_found(r);
    if (!r->is_post)
        return handle_get(app, r, who, seg, n);
    if (!csrf_ok(r, who))
        return respond_error(r, 403, "csrf_failed",
                             "missing or wrong X-CSRF-Token: the page gets it from GET /api/v1/me");
    return handle_post(app, r, who, seg, n);
}

/* lv_usage_api.c - GET /api/v1/usage: answers recorded, filtered, as JSON or CSV (lv_usage_api.h).
 * The query and the rendering (up to 100,000 rows) run on the database thread; the loop only
 * parses the parameters and sends the finished body. */
#include "lv_usage_api.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lv_accounts.h"
#include "lv_app.h"
#include "lv_buf.h"
#include "lv_common.h"
#include "lv_httputil.h"
#include "lv_json_str.h"
#include "lv_log.h"
#include "lv_quota.h"

#define DEFAULT_LIMIT 10000
#define MAX_LIMIT 100000
#define BODY_CAP ((size_t)64 << 20) /* 100,000 rows of ~500 bytes fit */

bool lv_usage_api_route(const char *path) { return strcmp(path, "/api/v1/usage") == 0; }

typedef struct {
    lv_usage_filter_t f;
    bool csv;
    lv_buf_t body;
} usage_job_t;

/* ---------- parameters ---------- */

static int digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return LV_EINVAL;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

/* Epoch milliseconds (all digits), or ISO 8601: YYYY-MM-DD[THH:MM[:SS[.fff]]][Z|+HH:MM|-HH:MM]
 * (no zone = UTC). */
static int parse_time(const char *s, int64_t *out)
{
    const char *p = s;
    struct tm tm;
    int y, mo, d, h = 0, mi = 0, sec = 0, ms = 0, off_min = 0;
    if (*s && strspn(s, "0123456789") == strlen(s)) {
        if (strlen(s) > 15)
            return LV_EINVAL;
        *out = strtoll(s, NULL, 10);
        return 0;
    }
    if (digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) || *p++ != '-' || digits(&p, 2, &d))
        return LV_EINVAL;
    if (*p == 'T' || *p == 't' || *p == ' ') {
        p++;
        if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &mi))
            return LV_EINVAL;
        if (*p == ':') {
            p++;
            if (digits(&p, 2, &sec))
                return LV_EINVAL;
            if (*p == '.') {
                int scale = 100;
                p++;
                if (!isdigit((unsigned char)*p))
                    return LV_EINVAL;
                for (; isdigit((unsigned char)*p); p++, scale /= 10)
                    ms += scale * (*p - '0');
            }
        }
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1, oh, om;
        if (digits(&p, 2, &oh) || *p++ != ':' || digits(&p, 2, &om) || oh > 23 || om > 59)
            return LV_EINVAL;
        off_min = sign * (oh * 60 + om);
    }
    if (*p || y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return LV_EINVAL;
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    *out = ((int64_t)timegm(&tm) - (int64_t)off_min * 60) * 1000 + ms;
    return 0;
}

static int bad(lv_req_t *r, const char *message) { return lv_req_respond_error(r, 400, "invalid_parameter", message); }

/* ---------- rendering (database thread) ---------- */

static int csv_field(lv_buf_t *b, const char *s)
{
    /* RFC 4180: a field with a comma, quote or line break is quoted, its quotes doubled */
    if (!strpbrk(s, ",\"\r\n"))
        return lv_buf_append_str(b, s);
    int rc = lv_buf_append(b, "\"", 1);
    for (const char *p = s; !rc && *p; p++)
        rc = *p == '"' ? lv_buf_append(b, "\"\"", 2) : lv_buf_append(b, p, 1);
    return rc ? rc : lv_buf_append(b, "\"", 1);
}

static void iso(int64_t ms, char out[32])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03dZ", (int)(ms % 1000));
}

static int render_csv(lv_buf_t *b, const lv_usage_t *v, size_t n)
{
    int rc = lv_buf_append_str(b, "answer_id,time,tenant,user,session,backend,model,image_bytes,prompt_tokens,"
                                  "completion_tokens,backend_ms,outcome\r\n");
    for (size_t i = 0; !rc && i < n; i++) {
        const lv_usage_t *u = &v[i];
        char t[32];
        iso(u->t_ms, t);
        const char *text[] = {u->answer_id, t, u->tenant, u->user_id, u->session_id, u->backend, u->model};
        for (size_t k = 0; !rc && k < LV_ARRAY_LEN(text); k++) {
            rc = csv_field(b, text[k]);
            if (!rc)
                rc = lv_buf_append(b, ",", 1);
        }
        if (!rc)
            rc = lv_buf_printf(b, "%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64 ",", u->image_bytes, u->prompt_tokens,
                               u->completion_tokens, u->backend_ms);
        if (!rc)
            rc = csv_field(b, u->outcome);
        if (!rc)
            rc = lv_buf_append(b, "\r\n", 2);
    }
    return rc;
}

static int json_field(lv_buf_t *b, const char *name, const char *value, bool first)
{
    int rc = lv_buf_printf(b, "%s\"%s\":", first ? "" : ",", name);
    return rc ? rc : lv_json_str_append(b, value, strlen(value));
}

static int render_json(lv_buf_t *b, const lv_usage_t *v, size_t n)
{
    int64_t answers = 0, prompt = 0, completion = 0, image = 0;
    int rc = lv_buf_append_str(b, "{\"records\":[");
    for (size_t i = 0; !rc && i < n; i++) {
        const lv_usage_t *u = &v[i];
        char t[32];
        iso(u->t_ms, t);
        if (strcmp(u->outcome, "ok") == 0)
            answers++;
        prompt += u->prompt_tokens;
        completion += u->completion_tokens;
        image += u->image_bytes;
        rc = lv_buf_append_str(b, i ? ",{" : "{");
        rc = rc ? rc : json_field(b, "answer_id", u->answer_id, true);
        rc = rc ? rc : lv_buf_printf(b, ",\"t_ms\":%" PRId64, u->t_ms);
        rc = rc ? rc : json_field(b, "time", t, false);
        rc = rc ? rc : json_field(b, "tenant", u->tenant, false);
        rc = rc ? rc : json_field(b, "user", u->user_id, false);
        rc = rc ? rc : json_field(b, "session", u->session_id, false);
        rc = rc ? rc : json_field(b, "backend", u->backend, false);
        rc = rc ? rc : json_field(b, "model", u->model, false);
        rc = rc ? rc
                : lv_buf_printf(b,
                                ",\"image_bytes\":%" PRId64 ",\"prompt_tokens\":%" PRId64
                                ",\"completion_tokens\":%" PRId64 ",\"backend_ms\":%" PRId64,
                                u->image_bytes, u->prompt_tokens, u->completion_tokens, u->backend_ms);
        rc = rc ? rc : json_field(b, "outcome", u->outcome, false);
        rc = rc ? rc : lv_buf_append(b, "}", 1);
    }
    if (!rc)
        rc = lv_buf_printf(b,
                           "],\"totals\":{\"answers\":%" PRId64 ",\"prompt_tokens\":%" PRId64
                           ",\"completion_tokens\":%" PRId64 ",\"image_bytes\":%" PRId64 "}}",
                           answers, prompt, completion, image);
    return rc;
}

static int usage_work(lv_db_t *db, void *ud)
{
    usage_job_t *j = ud;
    lv_usage_t *v = NULL;
    size_t n = 0;
    int rc = lv_acct_db_usage_query(db, &j->f, &v, &n);
    if (!rc)
        rc = j->csv ? render_csv(&j->body, v, n) : render_json(&j->body, v, n);
    free(v);
    return rc;
}

static void usage_done(lv_app_t *app, lv_req_t *r, int rc, void *ud)
{
    usage_job_t *j = ud;
    if (r) {
        if (rc)
            lv_req_respond_error(r, 500, "internal", "the usage records could not be read; the log says why");
        else if (j->csv)
            lv_req_respond(r, 200, "text/csv; charset=utf-8", j->body.data ? j->body.data : "", j->body.len, true,
                           "content-disposition: attachment; filename=\"usage.csv\"\r\n");
        else
            lv_req_respond(r, 200, "application/json", j->body.data, j->body.len, true, NULL);
    }
    if (rc)
        LV_WARN("GET /api/v1/usage: %s", lv_strerror(rc));
    lv_buf_free(&j->body);
    free(j);
}

/* ---------- the request ---------- */

/* A string parameter into out; its absence leaves out "". */
static int string_param(lv_req_t *r, const char *name, char *out, size_t size)
{
    int q = lv_query_get(r->query, name, out, size);
    if (q == LV_ENOTFOUND) {
        out[0] = '\0';
        return 0;
    }
    return q;
}

int lv_usage_api_handle(lv_app_t *app, lv_req_t *r, const lv_principal_t *who)
{
    char v[160], msg[200];
    if (r->is_post)
        return lv_req_respond_error(r, 405, "method_not_allowed", "GET /api/v1/usage only");
    if (!who)
        return lv_req_respond_error(r, 401, "unauthorized", "send a credential");
    usage_job_t *j = calloc(1, sizeof(*j));
    if (!j)
        return lv_req_respond_error(r, 500, "internal", "out of memory");
    lv_buf_init(&j->body, BODY_CAP);
    j->f.limit = DEFAULT_LIMIT;
    int rc = 0;
    static const char *const times[] = {"from", "to"};
    for (int i = 0; i < 2; i++) {
        if (string_param(r, times[i], v, sizeof(v)) != 0) {
            snprintf(msg, sizeof(msg), "%s is too long or malformed", times[i]);
            rc = bad(r, msg);
            goto fail;
        }
        if (v[0] && parse_time(v, i ? &j->f.to_ms : &j->f.from_ms) != 0) {
            snprintf(msg, sizeof(msg),
                     "%s must be epoch milliseconds or ISO 8601 (2024-05-01, 2024-05-01T12:00:00Z, "
                     "2024-05-01T14:00:00+02:00)",
                     times[i]);
            rc = bad(r, msg);
            goto fail;
        }
    }
    if (j->f.from_ms && j->f.to_ms && j->f.to_ms <= j->f.from_ms) {
        rc = bad(r, "to must be after from");
        goto fail;
    }
    if (string_param(r, "format", v, sizeof(v)) != 0 || (v[0] && strcmp(v, "json") != 0 && strcmp(v, "csv") != 0)) {
        rc = bad(r, "format must be json or csv");
        goto fail;
    }
    j->csv = strcmp(v, "csv") == 0;
    if (string_param(r, "limit", v, sizeof(v)) != 0) {
        rc = bad(r, "limit is malformed");
        goto fail;
    }
    if (v[0]) {
        char *end;
        errno = 0;
        long long n = strtoll(v, &end, 10);
        if (errno || *end || n < 1 || n > MAX_LIMIT) {
            rc = bad(r, "limit must be a whole number from 1 to 100000 (page with from and to for more)");
            goto fail;
        }
        j->f.limit = (size_t)n;
    }
    if (string_param(r, "model", j->f.model, sizeof(j->f.model)) != 0) {
        rc = bad(r, "model is too long (at most 128 bytes) or malformed");
        goto fail;
    }
    if (string_param(r, "tenant", j->f.tenant, sizeof(j->f.tenant)) != 0) {
        rc = bad(r, "tenant is too long (at most 32 bytes) or malformed");
        goto fail;
    }
    if (string_param(r, "user", v, sizeof(v)) != 0 || strlen(v) >= sizeof(j->f.user_id) + 32) {
        rc = bad(r, "user is too long or malformed");
        goto fail;
    }
    /* user: an id, or a login name the snapshot knows */
    const lv_user_t *named = v[0] && lv_accounts_snap(app) ? lv_acct_snap_user_by_name(lv_accounts_snap(app), v) : NULL;
    snprintf(j->f.user_id, sizeof(j->f.user_id), "%.32s", named ? named->id : v);
    if (who->role != LV_PRINCIPAL_ADMIN) {
        /* everybody else sees their own answers only, whatever they asked for */
        snprintf(j->f.user_id, sizeof(j->f.user_id), "%.32s", lv_quota_user_of(who->key));
        j->f.tenant[0] = '\0';
    }
    if (r->is_head) {
        rc = lv_req_respond(r, 200, j->csv ? "text/csv; charset=utf-8" : "application/json", "", 0, false, NULL);
        goto fail;
    }
    /* on a full queue submit answers 503 itself; usage_done frees j in every other case */
    if (lv_accounts_submit_req(app, r, usage_work, usage_done, j) != 0)
        goto fail;
    return 0;
fail:
    lv_buf_free(&j->body);
    free(j);
    return rc;
}

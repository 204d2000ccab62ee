/* lv_jobmsg.c - the job body and job events that cross Redis in cluster mode (format in lv_jobmsg.h). */
#include "lv_jobmsg.h"

#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <string.h>

#include "lv_common.h"
#include "lv_json_str.h"
#include "lv_utf8.h"

#define MAGIC_LEN 4
#define PREFIX_LEN (MAGIC_LEN + 4) /* magic + u32 header length */
#define WEIGHT_MIN 1
#define WEIGHT_MAX 1000
/* jansson holds integers as json_int_t (long long) and refuses a literal past it, so a number
 * written must stay within INT64_MAX or the other side could not read it back */
#define WIRE_U64_MAX ((uint64_t)INT64_MAX)

#define FAIL(code, reason)                                                                                             \
    do {                                                                                                               \
        rc = (code);                                                                                                   \
        *why = (reason);                                                                                               \
        goto out;                                                                                                      \
    } while (0)

/* ---------- shared checks ---------- */

/* Ids go into Redis key names, channel names, metric labels and log lines: a boring alphabet. */
static bool id_valid(const char *s, size_t n, size_t min, size_t max)
{
    if (n < min || n > max)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
              c == ':' || c == '-'))
            return false;
    }
    return true;
}

bool lv_jobmsg_id_ok(const char *s, size_t n, size_t max) { return id_valid(s, n, 1, max); }

/* A principal's key (lv_principal.h: printable; today a client address, e.g. "::ffff:10.0.0.7"
 * or "?" when none could be read): visible ASCII without the two bytes JSON would need escaped. */
static bool user_valid(const char *s, size_t n)
{
    if (n < 1 || n > LV_PRINCIPAL_KEY_MAX - 1)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x21 || s[i] > 0x7e || s[i] == '"' || s[i] == '\\')
            return false;
    return true;
}

/* A session id as lv_rand_hex makes it: exactly LV_SESSION_ID_LEN lowercase hex digits. */
static bool sid_valid(const char *s, size_t n)
{
    if (n != LV_SESSION_ID_LEN)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

/* strlen bounded by the field's array: a field without its NUL reads as too long (size). */
static size_t field_len(const char *s, size_t size)
{
    const char *nul = memchr(s, '\0', size);
    return nul ? (size_t)(nul - s) : size;
}

#define FIELD_LEN(arr) field_len((arr), sizeof(arr))

/* ---------- reading JSON fields ---------- */

/* The outcome of reading one field: wrong type or absent is EPARSE (not our format), a value out
 * of its range EINVAL. */
static int get_u64(const json_t *o, const char *key, uint64_t max, uint64_t *dst)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_integer(v))
        return LV_EPARSE;
    json_int_t x = json_integer_value(v);
    if (x < 0 || (uint64_t)x > max)
        return LV_EINVAL;
    *dst = (uint64_t)x;
    return 0;
}

static int get_bool(const json_t *o, const char *key, bool *dst)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_boolean(v))
        return LV_EPARSE;
    *dst = json_is_true(v);
    return 0;
}

/* An id string into dst (size = max + 1). */
static int get_id(const json_t *o, const char *key, size_t min, size_t max, char *dst)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_string(v))
        return LV_EPARSE;
    size_t n = json_string_length(v);
    if (!id_valid(json_string_value(v), n, min, max))
        return LV_EINVAL;
    memcpy(dst, json_string_value(v), n + 1);
    return 0;
}

/* Free text (jansson checked it is UTF-8 and, parsing without JSON_ALLOW_NUL, that it holds no
 * NUL) of at most size - 1 bytes into dst. cut: a longer one is cut at a character boundary
 * instead of refused (an error sentence for people, whose end matters least). */
static int get_text(const json_t *o, const char *key, char *dst, size_t size, bool cut)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_string(v))
        return LV_EPARSE;
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n >= size) {
        if (!cut)
            return LV_ELIMIT;
        n = lv_utf8_cut(s, n, size - 1);
    }
    memcpy(dst, s, n);
    dst[n] = '\0';
    return 0;
}

/* Maps a field reader's code to the reason given for it. */
static const char *reason_of(int rc, const char *missing, const char *invalid)
{
    return rc == LV_EPARSE ? missing : invalid;
}

/* ---------- job: encode ---------- */

/* json_dump_callback's sink: appends to an lv_buf_t; the failure code is kept in the caller's ctx. */
typedef struct {
    lv_buf_t *out;
    int rc;
} dump_ctx_t;

static int dump_to_buf(const char *buffer, size_t size, void *data)
{
    dump_ctx_t *ctx = data;
    if (ctx->rc == 0)
        ctx->rc = lv_buf_append(ctx->out, buffer, size);
    return ctx->rc ? -1 : 0;
}

/* What lv_settings_to_json can write at all (it answers NULL otherwise, which would read as out of
 * memory): UTF-8 strings within their arrays, a finite temperature. */
static bool settings_writable(const lv_settings_t *s)
{
    return isfinite(s->temperature) && lv_utf8_valid(s->prompt, FIELD_LEN(s->prompt)) &&
           lv_utf8_valid(s->model, FIELD_LEN(s->model)) && FIELD_LEN(s->prompt) <= LV_PROMPT_MAX &&
           FIELD_LEN(s->model) <= LV_MODEL_MAX && FIELD_LEN(s->backend) <= LV_BACKEND_ID_MAX &&
           FIELD_LEN(s->source) <= LV_SOURCE_MAX;
}

/* The settings as JSON, refused unless lv_settings_apply_json accepts them: what goes out must
 * parse back on the worker. Returns a new reference or NULL with *rc set. */
static json_t *settings_checked_json(const lv_settings_t *s, int *rc)
{
    if (!settings_writable(s)) {
        *rc = LV_EINVAL; /* lv_settings_to_json would refuse it; say why rather than ENOMEM */
        return NULL;
    }
    json_t *st = lv_settings_to_json(s);
    if (!st) {
        *rc = LV_ENOMEM;
        return NULL;
    }
    lv_settings_t check;
    lv_settings_defaults(&check);
    if (lv_settings_apply_json(&check, st, NULL, NULL) != 0) {
        json_decref(st);
        *rc = LV_EINVAL;
        return NULL;
    }
    return st;
}

/* The optional trace fields (lv_traceparent.h): written only when the job has a trace id; a
 * tracestate only when it is one to pass on. The values need no escaping (hex; visible ASCII
 * checked for '"' and '\\' here). */
static int trace_encode(const lv_trace_t *t, lv_buf_t *out)
{
    size_t n = FIELD_LEN(t->trace_id);
    if (n == 0)
        return 0;
    if (!lv_trace_id_valid(t->trace_id, n, LV_TRACE_ID_HEX))
        return LV_EINVAL;
    int rc = lv_buf_printf(out, ",\"tr\":\"%s\"", t->trace_id);
    size_t sn = FIELD_LEN(t->state);
    if (rc == 0 && sn > 0 && lv_tracestate_ok(t->state, sn)) {
        rc = lv_buf_append_str(out, ",\"ts\":");
        if (rc == 0)
            rc = lv_json_str_append(out, t->state, sn);
    }
    return rc;
}

static int trace_parse(const json_t *hdr, lv_trace_t *t, const char **why)
{
    const json_t *tr = json_object_get(hdr, "tr"), *ts = json_object_get(hdr, "ts");
    if (!tr && !ts)
        return 0; /* a body from before tracing, or a job without a trace */
    if (!json_is_string(tr) || (ts && !json_is_string(ts))) {
        *why = "a job's trace fields are not strings, or a tracestate comes without a trace id";
        return LV_EPARSE;
    }
    if (!lv_trace_id_valid(json_string_value(tr), json_string_length(tr), LV_TRACE_ID_HEX)) {
        *why = "a job's trace id is not 32 lowercase hex digits, not all zero";
        return LV_EINVAL;
    }
    if (ts && !lv_tracestate_ok(json_string_value(ts), json_string_length(ts))) {
        *why = "a job's tracestate is empty, over 512 bytes or holds control characters";
        return LV_EINVAL;
    }
    memcpy(t->trace_id, json_string_value(tr), LV_TRACE_ID_HEX + 1);
    if (ts)
        memcpy(t->state, json_string_value(ts), json_string_length(ts) + 1);
    return 0;
}

/* The optional allow-list ("ab", lv_settings_t.allow_backends): the backend ids the session's
 * tenant may use, so the worker's dispatcher picks only among them. A comma list as the tenant
 * holds it (lv_acct: text without control characters), within the settings' array. */
static bool allow_valid(const char *s, size_t n)
{
    if (n > LV_ALLOWLIST_MAX - 1 || !lv_utf8_valid(s, n))
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

/* Written only when the list is not "" (all backends): an unrestricted job's body is as before. */
static int allow_encode(const lv_settings_t *s, lv_buf_t *out)
{
    size_t n = FIELD_LEN(s->allow_backends);
    if (n == 0)
        return 0;
    if (!allow_valid(s->allow_backends, n))
        return LV_EINVAL;
    int rc = lv_buf_append_str(out, ",\"ab\":");
    return rc ? rc : lv_json_str_append(out, s->allow_backends, n);
}

/* Absent (a frontend from before "ab", or a tenant that may use any backend): "" = all. */
static int allow_parse(const json_t *hdr, lv_settings_t *s, const char **why)
{
    const json_t *ab = json_object_get(hdr, "ab");
    if (!ab)
        return 0;
    if (!json_is_string(ab)) {
        *why = "a job's allowed backends (ab) are not a string";
        return LV_EPARSE;
    }
    if (!allow_valid(json_string_value(ab), json_string_length(ab))) {
        *why = "a job's allowed backends (ab) are over 512 bytes or hold control characters";
        return LV_EINVAL;
    }
    memcpy(s->allow_backends, json_string_value(ab), json_string_length(ab) + 1);
    return 0;
}

int lv_jobmsg_encode(const lv_jobmsg_t *j, lv_buf_t *out)
{
    int rc = 0;
    json_t *st = NULL;
    size_t start = out->len;

    if (!id_valid(j->id, FIELD_LEN(j->id), 1, LV_JOB_ID_MAX) ||
        !id_valid(j->frontend, FIELD_LEN(j->frontend), 1, LV_NODE_ID_MAX) ||
        !sid_valid(j->session, FIELD_LEN(j->session)) ||
        !user_valid(j->user, FIELD_LEN(j->user)) || j->weight < WEIGHT_MIN ||
        j->weight > WEIGHT_MAX || j->answer_id > WIRE_U64_MAX || j->enq_wall_ms > WIRE_U64_MAX ||
        j->deadline_wall_ms > WIRE_U64_MAX || j->jpeg_len == 0 || !j->jpeg || j->jpeg_len > LV_JOBMSG_JPEG_MAX)
        return LV_EINVAL;
    if (!(st = settings_checked_json(&j->settings, &rc)))
        return rc;

    /* the header length is patched in once the header is written */
    if ((rc = lv_buf_append(out, LV_JOBMSG_MAGIC "\0\0\0\0", PREFIX_LEN)) != 0)
        goto out;
    size_t hdr_start = out->len;
    /* the ids passed id_valid: nothing in them needs escaping */
    if ((rc = lv_buf_printf(out,
                            "{\"id\":\"%s\",\"fe\":\"%s\",\"sid\":\"%s\",\"user\":\"%s\",\"w\":%u,\"aid\":%llu,"
                            "\"enq\":%llu,\"dl\":%llu,\"age\":%lu,\"st\":",
                            j->id, j->frontend, j->session, j->user, j->weight, (unsigned long long)j->answer_id,
                            (unsigned long long)j->enq_wall_ms, (unsigned long long)j->deadline_wall_ms,
                            (unsigned long)j->capture_age_ms)) != 0)
        goto out;
    dump_ctx_t ctx = {out, 0};
    if (json_dump_callback(st, dump_to_buf, &ctx, JSON_COMPACT) != 0) {
        rc = ctx.rc ? ctx.rc : LV_ENOMEM;
        goto out;
    }
    if ((rc = trace_encode(&j->trace, out)) != 0)
        goto out;
    if ((rc = allow_encode(&j->settings, out)) != 0)
        goto out;
    if ((rc = lv_buf_append(out, "}", 1)) != 0)
        goto out;
    size_t hdr_len = out->len - hdr_start;
    if (hdr_len > LV_JOBMSG_HDR_MAX) {
        rc = LV_EINVAL;
        goto out;
    }
    unsigned char *lenp = (unsigned char *)out->data + hdr_start - 4;
    lenp[0] = (unsigned char)(hdr_len >> 24);
    lenp[1] = (unsigned char)(hdr_len >> 16);
    lenp[2] = (unsigned char)(hdr_len >> 8);
    lenp[3] = (unsigned char)hdr_len;
    rc = lv_buf_append(out, j->jpeg, j->jpeg_len);
out:
    if (rc)
        lv_buf_truncate(out, start);
    json_decref(st);
    return rc;
}

/* ---------- job: parse ---------- */

int lv_jobmsg_parse(const void *p, size_t len, lv_jobmsg_t *out, const char **why)
{
    int rc = 0;
    const char *why_local = NULL;
    const unsigned char *b = p;
    json_t *hdr = NULL;
    uint64_t u = 0;
    if (!why)
        why = &why_local;
    *why = NULL;
    memset(out, 0, sizeof(*out));

    if (len < PREFIX_LEN)
        FAIL(LV_EPARSE, "a job is shorter than its magic and header length");
    if (memcmp(b, LV_JOBMSG_MAGIC, MAGIC_LEN) != 0)
        FAIL(LV_EPARSE, "a job does not start with LVJ1");
    uint32_t hdr_len = (uint32_t)b[4] << 24 | (uint32_t)b[5] << 16 | (uint32_t)b[6] << 8 | (uint32_t)b[7];
    if (hdr_len > LV_JOBMSG_HDR_MAX)
        FAIL(LV_ELIMIT, "a job's header is longer than the cap");
    if (hdr_len > len - PREFIX_LEN)
        FAIL(LV_EPARSE, "a job's header length runs past its end");
    size_t jpeg_len = len - PREFIX_LEN - hdr_len;
    if (jpeg_len > LV_JOBMSG_JPEG_MAX)
        FAIL(LV_ELIMIT, "a job's frame is larger than the cap");
    if (jpeg_len == 0)
        FAIL(LV_EPARSE, "a job has no frame");

    hdr = json_loadb((const char *)b + PREFIX_LEN, hdr_len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(hdr))
        FAIL(LV_EPARSE, "a job's header is not a JSON object");
    if ((rc = get_id(hdr, "id", 1, LV_JOB_ID_MAX, out->id)) != 0)
        FAIL(rc, reason_of(rc, "a job's id is missing", "a job's id is not 1..64 of A-Z a-z 0-9 _ . : -"));
    if ((rc = get_id(hdr, "fe", 1, LV_NODE_ID_MAX, out->frontend)) != 0)
        FAIL(rc,
             reason_of(rc, "a job's frontend is missing", "a job's frontend id is not 1..32 of A-Z a-z 0-9 _ . : -"));
    const json_t *sid = json_object_get(hdr, "sid");
    if (!json_is_string(sid))
        FAIL(LV_EPARSE, "a job's session id is missing");
    if (!sid_valid(json_string_value(sid), json_string_length(sid)))
        FAIL(LV_EINVAL, "a job's session id is not 32 lowercase hex digits");
    memcpy(out->session, json_string_value(sid), LV_SESSION_ID_LEN + 1);
    const json_t *uv = json_object_get(hdr, "user");
    if (!json_is_string(uv))
        FAIL(LV_EPARSE, "a job's user is missing");
    if (!user_valid(json_string_value(uv), json_string_length(uv)))
        FAIL(LV_EINVAL, "a job's user is not 1..63 visible ASCII characters without quote or backslash");
    memcpy(out->user, json_string_value(uv), json_string_length(uv) + 1);
    if ((rc = get_u64(hdr, "w", WEIGHT_MAX, &u)) != 0 || u < WEIGHT_MIN)
        FAIL(rc ? rc : LV_EINVAL,
             reason_of(rc, "a job's weight is missing or not an integer", "a job's weight is not 1..1000"));
    out->weight = (unsigned)u;
    if ((rc = get_u64(hdr, "aid", WIRE_U64_MAX, &out->answer_id)) != 0 ||
        (rc = get_u64(hdr, "enq", WIRE_U64_MAX, &out->enq_wall_ms)) != 0 ||
        (rc = get_u64(hdr, "dl", WIRE_U64_MAX, &out->deadline_wall_ms)) != 0)
        FAIL(rc, reason_of(rc, "a job's answer id, enqueue or deadline time is missing or not an integer",
                           "a job's answer id, enqueue or deadline time is negative"));
    if ((rc = get_u64(hdr, "age", UINT32_MAX, &u)) != 0)
        FAIL(rc, reason_of(rc, "a job's capture age is missing or not an integer",
                           "a job's capture age is negative or past 2^32 ms"));
    out->capture_age_ms = (uint32_t)u;
    const json_t *st = json_object_get(hdr, "st");
    if (!json_is_object(st))
        FAIL(LV_EPARSE, "a job's settings are missing");
    /* onto the defaults, as the statefile does, so a field a newer frontend leaves out still has
     * a sane value; but a field the checks refuse refuses the job (its answer would be wrong) */
    lv_settings_defaults(&out->settings);
    if (lv_settings_apply_json(&out->settings, st, NULL, NULL) != 0)
        FAIL(LV_EINVAL, "a job's settings do not pass the settings checks");
    if ((rc = trace_parse(hdr, &out->trace, why)) != 0)
        goto out;
    if ((rc = allow_parse(hdr, &out->settings, why)) != 0)
        goto out;
    out->jpeg = b + PREFIX_LEN + hdr_len;
    out->jpeg_len = jpeg_len;
    rc = 0;
out:
    if (rc)
        memset(out, 0, sizeof(*out));
    json_decref(hdr);
    return rc;
}

/* ---------- events: encode ---------- */

/* A C string field of the struct as a JSON string; LV_EINVAL when it has no NUL within its array
 * or is not UTF-8. */
static int put_str(lv_buf_t *out, const char *key_prefix, const char *s, size_t size)
{
    size_t n = field_len(s, size);
    if (n == size)
        return LV_EINVAL;
    int rc = lv_buf_append_str(out, key_prefix);
    return rc ? rc : lv_json_str_append(out, s, n);
}

static bool ev_text_valid(const lv_jobev_t *e)
{
    if (e->text_len > LV_JOBEV_TEXT_MAX || (!e->text && e->text_len))
        return false;
    /* the parser reads with jansson, which refuses "\u0000": a NUL cannot go through */
    return e->text_len == 0 || !memchr(e->text, '\0', e->text_len);
}

int lv_jobev_encode(const lv_jobev_t *e, lv_buf_t *out)
{
    int rc = 0;
    size_t start = out->len;
    const char *text = e->text ? e->text : "";

    if (!id_valid(e->job, FIELD_LEN(e->job), 1, LV_JOB_ID_MAX))
        return LV_EINVAL;
    switch (e->kind) {
    case LV_JOBEV_STARTED:
        if (!id_valid(e->worker, FIELD_LEN(e->worker), 1, LV_NODE_ID_MAX) ||
            !id_valid(e->backend_id, FIELD_LEN(e->backend_id), 0, LV_BACKEND_ID_MAX) || e->ttft_floor_us > WIRE_U64_MAX)
            return LV_EINVAL;
        if ((rc = lv_buf_printf(out, "{\"t\":\"s\",\"j\":\"%s\",\"w\":\"%s\",\"b\":\"%s\"", e->job, e->worker,
                                e->backend_id)) != 0 ||
            (rc = put_str(out, ",\"m\":", e->model, sizeof(e->model))) != 0 ||
            (rc = lv_buf_printf(out, ",\"f\":%llu}", (unsigned long long)e->ttft_floor_us)) != 0)
            goto out;
        break;
    case LV_JOBEV_DELTA:
        /* the hot one (one per ~40 ms per answer): no tree, one escape pass over the text */
        if (!ev_text_valid(e))
            return LV_EINVAL;
        if ((rc = lv_buf_printf(out, "{\"t\":\"d\",\"j\":\"%s\",\"x\":", e->job)) != 0 ||
            (rc = lv_json_str_append(out, text, e->text_len)) != 0 || (rc = lv_buf_append(out, "}", 1)) != 0)
            goto out;
        break;
    case LV_JOBEV_DONE: {
        if (!id_valid(e->worker, FIELD_LEN(e->worker), 1, LV_NODE_ID_MAX) ||
            !id_valid(e->backend_id, FIELD_LEN(e->backend_id), 0, LV_BACKEND_ID_MAX) || !ev_text_valid(e) ||
            e->rc > 0 || e->tokens < 0 || e->prompt_tokens < 0 || e->ttft_us > WIRE_U64_MAX ||
            FIELD_LEN(e->error_message) == sizeof(e->error_message))
            return LV_EINVAL;
        /* JSON has no NaN or infinity; a shaping time that is not a finite, non-negative number
         * goes as 0 (as the statefile does with durations); -0.0 as 0 */
        double shape = isfinite(e->shape_ms) && e->shape_ms > 0 ? e->shape_ms : 0.0;
        if ((rc = lv_buf_printf(out, "{\"t\":\"e\",\"j\":\"%s\",\"w\":\"%s\",\"rc\":%d", e->job, e->worker, e->rc)) !=
                0 ||
            (rc = put_str(out, ",\"code\":", e->error_code, sizeof(e->error_code))) != 0 ||
            (rc = lv_buf_append_str(out, ",\"msg\":")) != 0 ||
            /* an error sentence may quote a backend's reply, which need not be UTF-8: it goes out
             * with U+FFFD for bad bytes rather than not at all (the parser cuts it to fit) */
            (rc = lv_json_str_append_lossy(out, e->error_message, FIELD_LEN(e->error_message))) != 0 ||
            (rc = lv_buf_append_str(out, ",\"x\":")) != 0 || (rc = lv_json_str_append(out, text, e->text_len)) != 0 ||
            (rc = lv_buf_printf(out,
                                ",\"tok\":%d,\"ptok\":%d,\"ttft\":%llu,\"sse\":%s,\"shape\":%.17g,\"rq\":%s,\"stale\":%s,"
                                "\"b\":\"%s\"",
                                e->tokens, e->prompt_tokens, (unsigned long long)e->ttft_us, e->streamed ? "true" : "false", shape,
                                e->requeue ? "true" : "false", e->stale ? "true" : "false", e->backend_id)) != 0 ||
            (rc = put_str(out, ",\"m\":", e->model, sizeof(e->model))) != 0 || (rc = lv_buf_append(out, "}", 1)) != 0)
            goto out;
        break;
    }
    default:
        return LV_EINVAL;
    }
    if (out->len - start > LV_JOBEV_MAX)
        rc = LV_EINVAL;
out:
    if (rc)
        lv_buf_truncate(out, start);
    return rc;
}

/* ---------- events: parse ---------- */

int lv_jobev_parse(const char *p, size_t len, lv_jobev_t *out, lv_buf_t *textbuf, const char **why)
{
    int rc = 0;
    const char *why_local = NULL;
    json_t *o = NULL;
    uint64_t u = 0;
    if (!why)
        why = &why_local;
    *why = NULL;
    memset(out, 0, sizeof(*out));
    lv_buf_reset(textbuf);

    if (len > LV_JOBEV_MAX)
        FAIL(LV_ELIMIT, "an event is longer than the cap");
    o = json_loadb(p, len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(o))
        FAIL(LV_EPARSE, "an event is not one JSON object");
    const json_t *t = json_object_get(o, "t");
    if (!json_is_string(t))
        FAIL(LV_EPARSE, "an event has no type");
    const char *ts = json_string_value(t);
    if (json_string_length(t) != 1 || (ts[0] != 's' && ts[0] != 'd' && ts[0] != 'e'))
        FAIL(LV_EINVAL, "an event's type is not s, d or e");
    out->kind = ts[0] == 's' ? LV_JOBEV_STARTED : ts[0] == 'd' ? LV_JOBEV_DELTA : LV_JOBEV_DONE;
    if ((rc = get_id(o, "j", 1, LV_JOB_ID_MAX, out->job)) != 0)
        FAIL(rc,
             reason_of(rc, "an event's job id is missing", "an event's job id is not 1..64 of A-Z a-z 0-9 _ . : -"));

    if (out->kind != LV_JOBEV_DELTA) {
        if ((rc = get_id(o, "w", 1, LV_NODE_ID_MAX, out->worker)) != 0)
            FAIL(rc, reason_of(rc, "an event's worker id is missing",
                               "an event's worker id is not 1..32 of A-Z a-z 0-9 _ . : -"));
        if ((rc = get_id(o, "b", 0, LV_BACKEND_ID_MAX, out->backend_id)) != 0)
            FAIL(rc, reason_of(rc, "an event's backend id is missing",
                               "an event's backend id is longer than 64 bytes or not of A-Z a-z 0-9 _ . : -"));
        if ((rc = get_text(o, "m", out->model, sizeof(out->model), false)) != 0)
            FAIL(rc, reason_of(rc, "an event's model is missing", "an event's model is longer than 256 bytes"));
    }
    if (out->kind == LV_JOBEV_STARTED) {
        if ((rc = get_u64(o, "f", WIRE_U64_MAX, &out->ttft_floor_us)) != 0)
            FAIL(rc,
                 reason_of(rc, "a started event's ttft floor is missing", "a started event's ttft floor is negative"));
        rc = 0;
        goto out;
    }

    const json_t *x = json_object_get(o, "x");
    if (!json_is_string(x))
        FAIL(LV_EPARSE, "an event's text is missing");
    if (json_string_length(x) > LV_JOBEV_TEXT_MAX)
        FAIL(LV_ELIMIT, "an event's text is longer than the cap");
    if ((rc = lv_buf_append(textbuf, json_string_value(x), json_string_length(x))) != 0)
        FAIL(rc, rc == LV_ELIMIT ? "an event's text is longer than the caller's buffer" : "out of memory");
    out->text = textbuf->data ? textbuf->data : "";
    out->text_len = textbuf->len;
    if (out->kind == LV_JOBEV_DELTA) {
        rc = 0;
        goto out;
    }

    const json_t *jrc = json_object_get(o, "rc");
    if (!json_is_integer(jrc))
        FAIL(LV_EPARSE, "a done event's rc is missing or not an integer");
    if (json_integer_value(jrc) > 0 || json_integer_value(jrc) < INT_MIN)
        FAIL(LV_EINVAL, "a done event's rc is not 0 or a negative code");
    out->rc = (int)json_integer_value(jrc);
    if ((rc = get_text(o, "code", out->error_code, sizeof(out->error_code), false)) != 0)
        FAIL(rc, reason_of(rc, "a done event's error code is missing",
                           "a done event's error code is longer than 63 bytes"));
    if ((rc = get_text(o, "msg", out->error_message, sizeof(out->error_message), true)) != 0)
        FAIL(rc, "a done event's error message is missing");
    if ((rc = get_u64(o, "tok", INT_MAX, &u)) != 0)
        FAIL(rc, reason_of(rc, "a done event's token count is missing", "a done event's token count is out of range"));
    out->tokens = (int)u;
    /* optional: a worker from before prompt tokens crossed the cluster leaves it out (0) */
    if (json_object_get(o, "ptok")) {
        if ((rc = get_u64(o, "ptok", INT_MAX, &u)) != 0)
            FAIL(rc, reason_of(rc, "a done event's prompt token count is not an integer",
                               "a done event's prompt token count is out of range"));
        out->prompt_tokens = (int)u;
    }
    if ((rc = get_u64(o, "ttft", WIRE_U64_MAX, &out->ttft_us)) != 0)
        FAIL(rc, reason_of(rc, "a done event's ttft is missing", "a done event's ttft is negative"));
    const json_t *shape = json_object_get(o, "shape");
    if (!json_is_number(shape))
        FAIL(LV_EPARSE, "a done event's shaping time is missing");
    out->shape_ms = json_number_value(shape);
    if (!isfinite(out->shape_ms) || out->shape_ms < 0)
        FAIL(LV_EINVAL, "a done event's shaping time is negative");
    out->shape_ms += 0.0; /* -0 as 0 */
    if (get_bool(o, "sse", &out->streamed) || get_bool(o, "rq", &out->requeue) || get_bool(o, "stale", &out->stale))
        FAIL(LV_EPARSE, "a done event's sse, rq or stale is missing or not true/false");
    rc = 0;
out:
    if (rc) {
        memset(out, 0, sizeof(*out));
        lv_buf_reset(textbuf);
    }
    json_decref(o);
    return rc;
}

/* lv_outmsg.c - the page's hot WebSocket messages written in place (lv_outmsg.h): a template, the
 * one JSON string writer, and numbers formatted here, into the message's own memory. */
#include "lv_outmsg.h"

#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lv_buf.h"
#include "lv_common.h"
#include "lv_json_str.h"

/* ---------- writing ---------- */

/* Writes one message into w; 0, or LV_ELIMIT when w is too small, or another LV_E*. */
typedef int (*write_fn)(lv_buf_t *w, const void *ctx);

/* Messages are sized by what they most likely need (text a little longer than its bytes), and
 * built again at the worst case only when that was too little (text full of escapes): one
 * allocation in the common case, and no 6x over-allocation held in the socket queues. */
static lv_msg_t *build(write_fn fn, const void *ctx, size_t likely, size_t worst)
{
    size_t room = likely;
    for (;;) {
        lv_buf_t w;
        lv_msg_t *m = lv_msg_text_start(room, &w);
        if (!m)
            return NULL;
        int rc = fn(&w, ctx);
        if (rc == 0)
            return lv_msg_text_finish(m, &w);
        lv_msg_unref(m);
        if (rc != LV_ELIMIT || room >= worst)
            return NULL;
        room = worst;
    }
}

/* Room for n bytes of text as a JSON string: likely and at most (every byte an escape or U+FFFD,
 * 6 bytes each, plus the quotes). */
static size_t str_likely(size_t n) { return n + n / 8 + 2; }
static size_t str_worst(size_t n) { return 6 * n + 2; }

static int put(lv_buf_t *w, const char *s) { return lv_buf_append(w, s, strlen(s)); }


/* v with 3 decimals, as "%.3f" would write it for the durations these messages carry, without
 * printf (two vsnprintf passes per field through lv_buf_printf were most of a message's cost).
 * Rounded half away from zero on v * 1000; not finite: 0. */
static int put_ms(lv_buf_t *w, double v)
{
    char d[32];
    if (!isfinite(v))
        v = 0.0;
    if (fabs(v) >= 1e12) { /* past what the integer path holds exactly: printf's own digits (up to
                            * 309 of them for DBL_MAX: a mean restored from a state file may be
                            * anything finite, and a message must not be lost for it) */
        char big[330];
        int n = snprintf(big, sizeof(big), "%.3f", v);
        return n > 0 && (size_t)n < sizeof(big) ? lv_buf_append(w, big, (size_t)n) : LV_EINVAL;
    }
    long long t = llround(v * 1000.0);
    bool neg = t < 0;
    uint64_t u = neg ? (uint64_t)(-t) : (uint64_t)t;
    size_t n = sizeof(d);
    for (int i = 0; i < 3; i++, u /= 10)
        d[--n] = (char)('0' + u % 10);
    d[--n] = '.';
    do
        d[--n] = (char)('0' + u % 10);
    while ((u /= 10) != 0);
    if (neg)
        d[--n] = '-';
    return lv_buf_append(w, d + n, sizeof(d) - n);
}

static int put_json_str(lv_buf_t *w, const char *s) { return lv_json_str_append(w, s, strlen(s)); }

/* name (the JSON text before the value, e.g. ",\"errors\":"), then the value */
static int put_field_ms(lv_buf_t *w, const char *name, double v)
{
    int rc = put(w, name);
    return rc ? rc : put_ms(w, v);
}

static int put_field_u64(lv_buf_t *w, const char *name, uint64_t v)
{
    int rc = put(w, name);
    return rc ? rc : lv_buf_append_u64(w, v);
}

static int put_field_str(lv_buf_t *w, const char *name, const char *v)
{
    int rc = put(w, name);
    return rc ? rc : put_json_str(w, v);
}

/* ---------- the messages ---------- */

lv_msg_t *lv_outmsg_credit(uint32_t credit_id)
{
    lv_buf_t w;
    lv_msg_t *m = lv_msg_text_start(64, &w);
    if (!m)
        return NULL;
    if (put_field_u64(&w, "{\"type\":\"credit\",\"credit_id\":", credit_id) || put(&w, "}")) {
        lv_msg_unref(m);
        return NULL;
    }
    return lv_msg_text_finish(m, &w);
}

lv_msg_t *lv_outmsg_queued(size_t position, size_t queued)
{
    lv_buf_t w;
    lv_msg_t *m = lv_msg_text_start(96, &w);
    if (!m)
        return NULL;
    if (put_field_u64(&w, "{\"type\":\"queued\",\"position\":", position) ||
        put_field_u64(&w, ",\"queued\":", queued) || put(&w, "}")) {
        lv_msg_unref(m);
        return NULL;
    }
    return lv_msg_text_finish(m, &w);
}

static int write_answer_start(lv_buf_t *w, const void *ctx)
{
    const lv_job_t *job = ctx;
    int rc = put_field_u64(w, "{\"type\":\"answer_start\",\"answer_id\":", job->answer_id);
    if (!rc)
        rc = put_field_str(w, ",\"backend\":", job->backend_id);
    if (!rc)
        rc = put_field_str(w, ",\"model\":", job->model);
    if (!rc)
        rc = put_field_ms(w, ",\"queue_wait_ms\":", job->queue_wait_ms);
    if (!rc)
        rc = put_field_ms(w, ",\"frame_age_ms\":", job->frame_age_ms);
    /* a camera's sample: its number, for GET /api/v1/cameras/{id}/snapshot?seq= */
    if (!rc && job->frame && job->frame->share_key && strncmp(job->settings.source, "camera:", 7) == 0)
        rc = put_field_u64(w, ",\"camera_frame\":", job->frame->share_key & 0xffffffffu);
    if (!rc)
        rc = put(w, "}");
    return rc;
}

lv_msg_t *lv_outmsg_answer_start(const lv_job_t *job)
{
    size_t names = strlen(job->backend_id) + strlen(job->model);
    return build(write_answer_start, job, 192 + str_likely(names), 192 + str_worst(names));
}

typedef struct {
    uint64_t answer_id;
    const char *text;
    size_t len;
} delta_ctx_t;

static int write_delta(lv_buf_t *w, const void *ctx)
{
    const delta_ctx_t *d = ctx;
    int rc = put_field_u64(w, "{\"type\":\"delta\",\"answer_id\":", d->answer_id);
    if (!rc)
        rc = put(w, ",\"text\":");
    if (!rc)
        rc = lv_json_str_append(w, d->text, d->len);
    if (!rc)
        rc = put(w, "}");
    return rc;
}

lv_msg_t *lv_outmsg_delta(uint64_t answer_id, const char *text, size_t len)
{
    delta_ctx_t d = {answer_id, text, len};
    return build(write_delta, &d, 64 + str_likely(len), 64 + str_worst(len));
}

typedef struct {
    const lv_session_t *s;
    const lv_job_t *job;
    const lv_dispatch_result_t *r;
    const char *request_payload, *response_payload; /* debug: compact JSON text, or NULL */
} answer_ctx_t;

static int write_answer(lv_buf_t *w, const void *ctx)
{
    const answer_ctx_t *a = ctx;
    const lv_session_t *s = a->s;
    const lv_job_t *job = a->job;
    const lv_dispatch_result_t *r = a->r;
    int rc = put_field_u64(w, "{\"type\":\"vlm_response\",\"answer_id\":", job->answer_id);
    if (!rc)
        rc = put(w, ",\"text\":");
    if (!rc)
        rc = lv_json_str_append_lossy(w, r->text, r->text_len); /* never drop an answer for one bad byte */
    if (!rc)
        rc = put_field_ms(w, ",\"metrics\":{\"last_latency_ms\":", s->last_latency_ms);
    if (!rc)
        rc = put_field_ms(w, ",\"avg_latency_ms\":", s->rec.avg_latency_ms);
    if (!rc)
        rc = put_field_u64(w, ",\"total_inferences\":", s->rec.total_inferences);
    if (!rc)
        rc = put(w, s->job ? ",\"is_processing\":true" : ",\"is_processing\":false");
    if (!rc)
        rc = put_field_u64(w, ",\"frames_received\":", s->frames_received);
    if (!rc)
        rc = put_field_u64(w, ",\"frames_replaced\":", s->frames_replaced);
    if (!rc)
        rc = put_field_u64(w, ",\"frames_rejected\":", s->frames_rejected);
    if (!rc)
        rc = put_field_u64(w, ",\"errors\":", s->errors);
    if (!rc)
        rc = put_field_ms(w, ",\"ttft_ms\":", (double)r->ttft_us / 1000.0);
    if (!rc)
        rc = put_field_ms(w, ",\"queue_wait_ms\":", job->queue_wait_ms);
    if (!rc)
        rc = put_field_ms(w, ",\"frame_age_ms\":", job->frame_age_ms);
    if (!rc)
        rc = put_field_ms(w, ",\"shape_ms\":", r->shape_ms);
    if (!rc)
        rc = put(w, ",\"tokens\":");
    if (!rc && r->tokens < 0)
        rc = put(w, "-");
    if (!rc)
        rc = lv_buf_append_u64(w, r->tokens < 0 ? (uint64_t)(-(int64_t)r->tokens) : (uint64_t)r->tokens);
    if (!rc)
        rc = put_field_str(w, ",\"backend\":", job->backend_id);
    if (!rc)
        rc = put_field_str(w, ",\"model\":", job->model);
    if (!rc)
        rc = put(w, r->streamed ? ",\"streamed\":true}" : ",\"streamed\":false}");
    if (!rc && job->settings.debug) {
        /* the debug view: the same object with the request and response payloads added */
        rc = put(w, ",\"request_payload\":");
        if (!rc)
            rc = put(w, a->request_payload ? a->request_payload : "null");
        if (!rc)
            rc = put(w, ",\"response_payload\":");
        if (!rc)
            rc = put(w, a->response_payload ? a->response_payload : "null");
    }
    if (!rc)
        rc = put(w, "}");
    return rc;
}

/* A debug payload as compact JSON text: what lv_chat kept (valid JSON), re-encoded, or NULL when
 * there is none or it does not parse. The caller frees it. */
static char *payload_text(const char *json)
{
    json_t *o = json ? json_loads(json, 0, NULL) : NULL;
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return text;
}

lv_msg_t *lv_outmsg_answer(const lv_session_t *s, const lv_job_t *job, const lv_dispatch_result_t *r)
{
    answer_ctx_t a = {s, job, r, NULL, NULL};
    size_t fixed = 640 + str_worst(strlen(job->backend_id) + strlen(job->model));
    if (job->settings.debug) {
        a.request_payload = payload_text(r->request_debug_json);
        a.response_payload = payload_text(r->response_debug_json);
        fixed += (a.request_payload ? strlen(a.request_payload) : 4) +
                 (a.response_payload ? strlen(a.response_payload) : 4) + 64;
    }
    lv_msg_t *m = build(write_answer, &a, fixed + str_likely(r->text_len), fixed + str_worst(r->text_len));
    free((void *)a.request_payload);
    free((void *)a.response_payload);
    return m;
}

lv_msg_t *lv_outmsg_answer_cancelled(uint64_t answer_id, const char *reason)
{
    size_t n = strlen(reason);
    lv_buf_t w;
    lv_msg_t *m = lv_msg_text_start(96 + str_worst(n), &w);
    if (!m)
        return NULL;
    if (put_field_u64(&w, "{\"type\":\"answer_cancelled\",\"answer_id\":", answer_id) ||
        put(&w, ",\"reason\":") || lv_json_str_append_lossy(&w, reason, n) || put(&w, "}")) {
        lv_msg_unref(m);
        return NULL;
    }
    return lv_msg_text_finish(m, &w);
}

lv_msg_t *lv_outmsg_frame_dropped(const char *reason, double age_ms)
{
    size_t n = strlen(reason);
    lv_buf_t w;
    lv_msg_t *m = lv_msg_text_start(96 + str_worst(n), &w);
    if (!m)
        return NULL;
    if (put(&w, "{\"type\":\"frame_dropped\",\"reason\":") || lv_json_str_append_lossy(&w, reason, n) ||
        put_field_ms(&w, ",\"age_ms\":", age_ms) || put(&w, "}")) {
        lv_msg_unref(m);
        return NULL;
    }
    return lv_msg_text_finish(m, &w);
}

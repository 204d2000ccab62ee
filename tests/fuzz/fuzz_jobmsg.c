/* fuzz_jobmsg.c - libFuzzer driver for the cluster's job body and job events (lv_jobmsg.h): the
 * whole input goes to both parsers (Redis hands them bytes any holder of its password wrote).
 * Checks: codes and reasons; a parsed job or event obeys its caps and alphabets, its frame lies
 * inside the input and its text is UTF-8; what parsed encodes again (only a cap may refuse it,
 * and only for an input near that cap), parses again to the same values, and the second encoding
 * is byte for byte the first (a fixed point).
 * fuzz-sources: src/proto/lv_jobmsg.c src/proto/lv_settings.c src/proto/lv_rtspurl.c
 * fuzz-sources: src/common/lv_buf.c src/common/lv_common.c src/common/lv_json_str.c src/common/lv_utf8.c
 * fuzz-sources: src/proto/lv_traceparent.c src/common/lv_rand.c
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lv_buf.h"
#include "lv_common.h"
#include "lv_jobmsg.h"
#include "lv_utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An encoding may outgrow the input it was parsed from: defaults written for settings the input
 * left out, a temperature written with 17 digits, a shaping time likewise. */
#define GROWTH_SLACK 1024

static lv_jobmsg_t job, job2;
static lv_jobev_t ev, ev2;

static bool id_ok(const char *s, size_t size, size_t min)
{
    size_t n = strnlen(s, size);
    if (n == size || n < min)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-", s[i]))
            return false;
    return true;
}

/* A user (a principal's key): visible ASCII without quote or backslash. */
static bool user_ok(const char *s, size_t size)
{
    size_t n = strnlen(s, size);
    if (n == size || n < 1)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x21 || s[i] > 0x7e || s[i] == '"' || s[i] == '\\')
            return false;
    return true;
}

static bool settings_same(const lv_settings_t *a, const lv_settings_t *b)
{
    return strcmp(a->prompt, b->prompt) == 0 && a->max_tokens == b->max_tokens && a->temperature == b->temperature &&
           a->interval_ms == b->interval_ms && strcmp(a->backend, b->backend) == 0 && strcmp(a->model, b->model) == 0 &&
           a->frame_max_side == b->frame_max_side && a->jpeg_quality == b->jpeg_quality &&
           a->stats_interval_ms == b->stats_interval_ms && a->debug == b->debug && strcmp(a->source, b->source) == 0 &&
           strcmp(a->allow_backends, b->allow_backends) == 0;
}

static bool job_same(const lv_jobmsg_t *a, const lv_jobmsg_t *b)
{
    return strcmp(a->id, b->id) == 0 && strcmp(a->frontend, b->frontend) == 0 && strcmp(a->session, b->session) == 0 &&
           strcmp(a->user, b->user) == 0 && a->weight == b->weight && a->answer_id == b->answer_id &&
           a->enq_wall_ms == b->enq_wall_ms && a->deadline_wall_ms == b->deadline_wall_ms &&
           a->capture_age_ms == b->capture_age_ms && settings_same(&a->settings, &b->settings) &&
           a->jpeg_len == b->jpeg_len && memcmp(a->jpeg, b->jpeg, a->jpeg_len) == 0;
}

static bool ev_same(const lv_jobev_t *a, const lv_jobev_t *b)
{
    return a->kind == b->kind && strcmp(a->job, b->job) == 0 && strcmp(a->worker, b->worker) == 0 &&
           strcmp(a->backend_id, b->backend_id) == 0 && strcmp(a->model, b->model) == 0 &&
           a->ttft_floor_us == b->ttft_floor_us && a->text_len == b->text_len &&
           (a->text_len == 0 || memcmp(a->text, b->text, a->text_len) == 0) && a->rc == b->rc &&
           strcmp(a->error_code, b->error_code) == 0 && strcmp(a->error_message, b->error_message) == 0 &&
           a->tokens == b->tokens && a->ttft_us == b->ttft_us && a->streamed == b->streamed &&
           a->shape_ms == b->shape_ms && a->requeue == b->requeue && a->stale == b->stale;
}

static void check_rc(int rc, const char *why)
{
    if (rc != 0 && rc != LV_EPARSE && rc != LV_ELIMIT && rc != LV_EINVAL)
        abort();
    if (rc != 0 && !why)
        abort();
}

static void fuzz_job(const uint8_t *d, size_t size)
{
    const char *why = NULL;
    lv_buf_t a, b;
    lv_buf_init(&a, LV_JOBMSG_HDR_MAX + LV_JOBMSG_JPEG_MAX + 8);
    lv_buf_init(&b, LV_JOBMSG_HDR_MAX + LV_JOBMSG_JPEG_MAX + 8);
    int rc = lv_jobmsg_parse(d, size, &job, &why);
    check_rc(rc, why);
    if (rc)
        goto out;
    if (!id_ok(job.id, sizeof(job.id), 1) || !id_ok(job.frontend, sizeof(job.frontend), 1) ||
        strlen(job.session) != LV_SESSION_ID_LEN || !user_ok(job.user, sizeof(job.user)) || job.weight < 1 ||
        job.weight > 1000 || job.answer_id > INT64_MAX || job.enq_wall_ms > INT64_MAX ||
        job.deadline_wall_ms > INT64_MAX)
        abort();
    /* the tenant's allowed backends ("ab"): within its array, no control byte */
    size_t ab_len = strnlen(job.settings.allow_backends, sizeof(job.settings.allow_backends));
    if (ab_len == sizeof(job.settings.allow_backends))
        abort();
    for (size_t i = 0; i < ab_len; i++)
        if ((unsigned char)job.settings.allow_backends[i] < 0x20 || job.settings.allow_backends[i] == 0x7f)
            abort();
    /* the frame is the input's tail */
    if (job.jpeg_len == 0 || job.jpeg_len > LV_JOBMSG_JPEG_MAX || job.jpeg + job.jpeg_len != d + size)
        abort();
    size_t in_hdr = size - 8 - job.jpeg_len;
    rc = lv_jobmsg_encode(&job, &a);
    if (rc == LV_EINVAL && in_hdr + GROWTH_SLACK > LV_JOBMSG_HDR_MAX)
        goto out; /* the header grew past its cap */
    if (rc != 0)
        abort();
    if (lv_jobmsg_parse(a.data, a.len, &job2, &why) != 0 || !job_same(&job, &job2))
        abort();
    if (lv_jobmsg_encode(&job2, &b) != 0 || a.len != b.len || memcmp(a.data, b.data, a.len) != 0)
        abort();
out:
    lv_buf_free(&a);
    lv_buf_free(&b);
}

static void fuzz_event(const uint8_t *d, size_t size)
{
    const char *why = NULL;
    lv_buf_t text, text2, a, b;
    lv_buf_init(&text, LV_JOBEV_TEXT_MAX);
    lv_buf_init(&text2, LV_JOBEV_TEXT_MAX);
    /* room past the event cap, so a refusal is the encoder's check, not the buffer's */
    lv_buf_init(&a, LV_JOBEV_MAX + GROWTH_SLACK);
    lv_buf_init(&b, LV_JOBEV_MAX + GROWTH_SLACK);
    int rc = lv_jobev_parse((const char *)d, size, &ev, &text, &why);
    check_rc(rc, why);
    if (rc) {
        if (text.len)
            abort();
        goto out;
    }
    if (ev.kind < LV_JOBEV_STARTED || ev.kind > LV_JOBEV_DONE || !id_ok(ev.job, sizeof(ev.job), 1))
        abort();
    if (ev.kind != LV_JOBEV_DELTA &&
        (!id_ok(ev.worker, sizeof(ev.worker), 1) || !id_ok(ev.backend_id, sizeof(ev.backend_id), 0) ||
         strnlen(ev.model, sizeof(ev.model)) == sizeof(ev.model)))
        abort();
    if (ev.kind == LV_JOBEV_STARTED ? ev.text != NULL
                                    : (!ev.text || ev.text_len > LV_JOBEV_TEXT_MAX ||
                                       !lv_utf8_valid(ev.text, ev.text_len) || memchr(ev.text, '\0', ev.text_len)))
        abort();
    if (ev.kind == LV_JOBEV_DONE && (ev.rc > 0 || ev.tokens < 0 || !(ev.shape_ms >= 0) ||
                                     strnlen(ev.error_message, sizeof(ev.error_message)) == sizeof(ev.error_message) ||
                                     !lv_utf8_valid(ev.error_message, strlen(ev.error_message))))
        abort();
    rc = lv_jobev_encode(&ev, &a);
    if (rc == LV_EINVAL && size + GROWTH_SLACK > LV_JOBEV_MAX)
        goto out;
    if (rc != 0)
        abort();
    if (lv_jobev_parse(a.data, a.len, &ev2, &text2, &why) != 0 || !ev_same(&ev, &ev2))
        abort();
    if (lv_jobev_encode(&ev2, &b) != 0 || a.len != b.len || memcmp(a.data, b.data, a.len) != 0)
        abort();
out:
    lv_buf_free(&text);
    lv_buf_free(&text2);
    lv_buf_free(&a);
    lv_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* an exact-size copy: a read past the end is caught by ASan */
    uint8_t *d = malloc(size ? size : 1);
    if (!d)
        return 0;
    memcpy(d, data, size);
    fuzz_job(d, size);
    fuzz_event(d, size);
    free(d);
    return 0;
}

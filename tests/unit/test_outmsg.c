/* test_outmsg.c - the hot WebSocket messages written in place (src/server/lv_outmsg.c): each is
 * one text frame whose header matches its payload, and its payload is the JSON docs/protocol.md
 * describes; text full of escapes (past the first, likely size) is built again at the worst case;
 * what must not be altered (a delta that is not UTF-8) is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <jansson.h>

#include "lv_common.h"
#include "lv_net.h"
#include "lv_outmsg.h"
#include "lv_session.h"
#include "lv_settings.h"
#include "lv_wsframe.h"

/* The message's payload parsed, after checking the frame header in front of it. */
static json_t *payload(lv_msg_t *m)
{
    assert_non_null(m);
    assert_int_equal(m->refs, 1);
    assert_false(m->binary);
    uint8_t hdr[10];
    size_t hlen = lv_ws_frame_header(hdr, LV_WS_OP_TEXT, m->len);
    assert_int_equal(m->wire_len, hlen + m->len);
    assert_memory_equal(m->wire, hdr, hlen);
    json_error_t err;
    json_t *o = json_loadb((const char *)m->wire + hlen, m->len, JSON_REJECT_DUPLICATES, &err);
    if (!o)
        fail_msg("not JSON: %s: %.*s", err.text, (int)m->len, (const char *)m->wire + hlen);
    lv_msg_unref(m);
    return o;
}

static const char *str(json_t *o, const char *k) { return json_string_value(json_object_get(o, k)); }
static json_int_t num(json_t *o, const char *k) { return json_integer_value(json_object_get(o, k)); }
static double real(json_t *o, const char *k) { return json_number_value(json_object_get(o, k)); }

static void small_messages(void **state)
{
    json_t *o = payload(lv_outmsg_credit(UINT32_MAX));
    assert_string_equal(str(o, "type"), "credit");
    assert_int_equal(num(o, "credit_id"), UINT32_MAX);
    json_decref(o);
    o = payload(lv_outmsg_queued(0, 12345));
    assert_string_equal(str(o, "type"), "queued");
    assert_int_equal(num(o, "position"), 0);
    assert_int_equal(num(o, "queued"), 12345);
    json_decref(o);
    o = payload(lv_outmsg_answer_cancelled(UINT64_C(9007199254740991), "settings_changed"));
    assert_string_equal(str(o, "type"), "answer_cancelled");
    assert_int_equal(num(o, "answer_id"), 9007199254740991LL);
    assert_string_equal(str(o, "reason"), "settings_changed");
    json_decref(o);
    o = payload(lv_outmsg_frame_dropped("stale", 1234.5678));
    assert_string_equal(str(o, "reason"), "stale");
    assert_true(real(o, "age_ms") == 1234.568);
    json_decref(o);
}

/* Durations: 3 decimals, rounding, negatives, huge values, and no NaN (JSON has none). */
static void milliseconds(void **state)
{
    static const struct {
        double v;
        const char *want;
    } cases[] = {{0.0, "0.000"}, {1.0, "1.000"}, {0.0004, "0.000"}, {0.0006, "0.001"}, {12.3456, "12.346"},
                 {-2.5, "-2.500"}, {999999.9999, "1000000.000"}, {1e13, "10000000000000.000"}, {0.0 / 0.0, "0.000"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        lv_msg_t *m = lv_outmsg_frame_dropped("stale", cases[i].v);
        assert_non_null(m);
        const char *p = (const char *)m->wire + (m->wire_len - m->len);
        const char *at = strstr(p, "\"age_ms\":");
        assert_non_null(at);
        at += 9;
        size_t n = strlen(cases[i].want);
        if (strncmp(at, cases[i].want, n) != 0 || at[n] != '}')
            fail_msg("%g: got %.*s, want %s", cases[i].v, (int)(m->len - (size_t)(at - p)), at, cases[i].want);
        lv_msg_unref(m);
    }
}

static void make_job(lv_job_t *job)
{
    memset(job, 0, sizeof(*job));
    job->answer_id = 77;
    lv_settings_defaults(&job->settings);
    snprintf(job->backend_id, sizeof(job->backend_id), "%s", "gpu-\"1\"");
    snprintf(job->model, sizeof(job->model), "%s", "Qwen/Qwen2.5-VL-7B");
    job->queue_wait_ms = 1.25;
    job->frame_age_ms = 40.0;
}

static void answer_start(void **state)
{
    lv_job_t job;
    make_job(&job);
    json_t *o = payload(lv_outmsg_answer_start(&job));
    assert_string_equal(str(o, "type"), "answer_start");
    assert_int_equal(num(o, "answer_id"), 77);
    assert_string_equal(str(o, "backend"), "gpu-\"1\"");
    assert_string_equal(str(o, "model"), "Qwen/Qwen2.5-VL-7B");
    assert_true(real(o, "queue_wait_ms") == 1.25);
    assert_true(real(o, "frame_age_ms") == 40.0);
    assert_null(json_object_get(o, "camera_frame"));
    json_decref(o);
    /* a camera's shared sample names its number */
    lv_frame_t *f = lv_frame_new("x", 1);
    f->share_key = UINT64_C(0x1234567800000042);
    job.frame = f;
    snprintf(job.settings.source, sizeof(job.settings.source), "%s", "camera:door");
    o = payload(lv_outmsg_answer_start(&job));
    assert_int_equal(num(o, "camera_frame"), 0x42);
    json_decref(o);
    lv_frame_unref(f);
}

static void delta(void **state)
{
    json_t *o = payload(lv_outmsg_delta(5, " kitchen \xc3\xa9", 11));
    assert_string_equal(str(o, "type"), "delta");
    assert_int_equal(num(o, "answer_id"), 5);
    assert_string_equal(str(o, "text"), " kitchen \xc3\xa9");
    json_decref(o);
    /* every byte an escape: six times its length, past the first size tried */
    char ctl[300];
    for (size_t i = 0; i < sizeof(ctl); i++)
        ctl[i] = (char)(1 + i % 31);
    lv_msg_t *m = lv_outmsg_delta(6, ctl, sizeof(ctl));
    assert_true(m->len > 5 * sizeof(ctl));
    o = payload(m);
    const char *t = str(o, "text");
    assert_non_null(t);
    assert_memory_equal(t, ctl, sizeof(ctl));
    json_decref(o);
    /* empty, and not UTF-8: refused, never altered */
    o = payload(lv_outmsg_delta(7, "", 0));
    assert_string_equal(str(o, "text"), "");
    json_decref(o);
    assert_null(lv_outmsg_delta(8, "a\xff", 2));
}

static void answer(void **state)
{
    lv_job_t job;
    make_job(&job);
    lv_session_t *s = calloc(1, sizeof(*s));
    s->last_latency_ms = 151.5;
    s->rec.avg_latency_ms = 150.25;
    s->rec.total_inferences = 3;
    s->frames_received = 10;
    s->frames_replaced = 2;
    s->frames_rejected = 1;
    s->errors = 4;
    char text[5000];
    for (size_t i = 0; i < sizeof(text); i++)
        text[i] = i % 50 == 49 ? '\n' : 'a' + (char)(i % 26);
    text[10] = '\xff'; /* lossy: U+FFFD, the answer still goes out */
    lv_dispatch_result_t r = {.text = text, .text_len = sizeof(text), .tokens = 20, .ttft_us = 50500,
                              .streamed = true, .shape_ms = 0.5};
    json_t *o = payload(lv_outmsg_answer(s, &job, &r));
    assert_string_equal(str(o, "type"), "vlm_response");
    assert_int_equal(num(o, "answer_id"), 77);
    const char *t = str(o, "text");
    assert_memory_equal(t, text, 10);
    assert_memory_equal(t + 10, "\xef\xbf\xbd", 3);
    assert_memory_equal(t + 13, text + 11, sizeof(text) - 11);
    json_t *mt = json_object_get(o, "metrics");
    assert_true(real(mt, "last_latency_ms") == 151.5);
    assert_true(real(mt, "avg_latency_ms") == 150.25);
    assert_int_equal(num(mt, "total_inferences"), 3);
    assert_true(json_is_false(json_object_get(mt, "is_processing")));
    assert_int_equal(num(mt, "frames_received"), 10);
    assert_int_equal(num(mt, "frames_replaced"), 2);
    assert_int_equal(num(mt, "frames_rejected"), 1);
    assert_int_equal(num(mt, "errors"), 4);
    assert_true(real(mt, "ttft_ms") == 50.5);
    assert_true(real(mt, "queue_wait_ms") == 1.25);
    assert_true(real(mt, "frame_age_ms") == 40.0);
    assert_true(real(mt, "shape_ms") == 0.5);
    assert_int_equal(num(mt, "tokens"), 20);
    assert_string_equal(str(mt, "backend"), "gpu-\"1\"");
    assert_string_equal(str(mt, "model"), "Qwen/Qwen2.5-VL-7B");
    assert_true(json_is_true(json_object_get(mt, "streamed")));
    assert_null(json_object_get(o, "request_payload"));
    json_decref(o);
    /* the debug view: payloads re-encoded compact, null when missing or not JSON */
    job.settings.debug = true;
    r.request_debug_json = "{ \"model\" : \"m\", \"n\": [1, 2] }";
    r.response_debug_json = "not json";
    r.tokens = -1;
    o = payload(lv_outmsg_answer(s, &job, &r));
    json_t *req = json_object_get(o, "request_payload");
    assert_string_equal(str(req, "model"), "m");
    assert_int_equal(json_array_size(json_object_get(req, "n")), 2);
    assert_true(json_is_null(json_object_get(o, "response_payload")));
    assert_int_equal(num(json_object_get(o, "metrics"), "tokens"), -1);
    json_decref(o);
    free(s);
}

/* lv_msg_text_start's writer: bounded by its room, never reallocated. */
static void text_writer(void **state)
{
    lv_buf_t w;
    lv_msg_t *m = lv_msg_text_start(4, &w);
    assert_non_null(m);
    char *mem = w.data;
    assert_int_equal(lv_buf_append(&w, "abcd", 4), 0);
    assert_int_equal(lv_buf_append(&w, "e", 1), LV_ELIMIT);
    assert_ptr_equal(w.data, mem);
    m = lv_msg_text_finish(m, &w);
    assert_null(w.data);
    assert_int_equal(m->len, 4);
    assert_int_equal(m->wire_len, 6);
    assert_memory_equal(m->wire + 2, "abcd", 4);
    lv_msg_unref(m);
    /* a large room mostly unused is given back; the bytes stay */
    m = lv_msg_text_start(100000, &w);
    assert_int_equal(lv_buf_append(&w, "{}", 2), 0);
    m = lv_msg_text_finish(m, &w);
    assert_int_equal(m->wire_len, 4);
    assert_memory_equal(m->wire + 2, "{}", 2);
    lv_msg_unref(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(small_messages), cmocka_unit_test(milliseconds), cmocka_unit_test(answer_start),
        cmocka_unit_test(delta),          cmocka_unit_test(answer),       cmocka_unit_test(text_writer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

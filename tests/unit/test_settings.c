/* test_settings.c - settings ranges, strict types, all-or-nothing updates, JSON form, presets. */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "lv_common.h"
#include "lv_settings.h"

/* Apply the JSON text `text` (an object) onto *s; returns the rc and the reported field. */
static int apply_text(lv_settings_t *s, const char *text, const char **field)
{
    json_error_t err;
    json_t *obj = json_loads(text, 0, &err);
    if (!obj)
        fail_msg("test JSON does not parse: %s (%s)", text, err.text);
    const char *why = NULL;
    *field = NULL;
    int rc = lv_settings_apply_json(s, obj, field, &why);
    if (rc != 0 && (!why || !*why))
        fail_msg("no reason given for %s", text);
    json_decref(obj);
    return rc;
}

/* Apply {field: value} built by the caller; steals the value reference. */
static int apply_value(lv_settings_t *s, const char *field, json_t *value, const char **bad)
{
    assert_non_null(value);
    json_t *obj = json_object();
    json_object_set_new(obj, field, value);
    const char *why = NULL;
    *bad = NULL;
    int rc = lv_settings_apply_json(s, obj, bad, &why);
    json_decref(obj);
    return rc;
}

static void test_defaults(void **state)
{
    (void)state;
    lv_settings_t s;
    size_t n = 0;
    const lv_preset_t *p = lv_presets(&n);
    lv_settings_defaults(&s);
    assert_string_equal(s.prompt, p[0].prompt);
    assert_string_equal(p[0].id, "scene");
    assert_int_equal(s.max_tokens, 512);
    assert_true(s.temperature > 0.69 && s.temperature < 0.71);
    assert_int_equal(s.interval_ms, 1000);
    assert_string_equal(s.backend, "");
    assert_string_equal(s.model, "");
    assert_int_equal(s.frame_max_side, 768);
    assert_int_equal(s.jpeg_quality, 80);
    assert_int_equal(s.stats_interval_ms, 1000);
    assert_false(s.debug);
    assert_string_equal(s.source, "page");
}

typedef struct {
    const char *json; /* a whole settings object */
    int ok;
} case_t;

/* Every range boundary, one past it, and wrong JSON types for each field. */
static const case_t cases[] = {
    {"{\"max_tokens\":0}", 0}, {"{\"max_tokens\":1}", 1}, {"{\"max_tokens\":4096}", 1},
    {"{\"max_tokens\":4097}", 0}, {"{\"max_tokens\":-1}", 0},
    {"{\"max_tokens\":9223372036854775807}", 0}, {"{\"max_tokens\":-9223372036854775807}", 0},
    {"{\"max_tokens\":512.0}", 0}, {"{\"max_tokens\":\"512\"}", 0}, {"{\"max_tokens\":true}", 0},
    {"{\"max_tokens\":null}", 0}, {"{\"max_tokens\":[512]}", 0},

    {"{\"temperature\":0}", 1}, {"{\"temperature\":0.0}", 1}, {"{\"temperature\":-0.0}", 1},
    {"{\"temperature\":2}", 1}, {"{\"temperature\":2.0}", 1}, {"{\"temperature\":1.3}", 1},
    {"{\"temperature\":2.0000001}", 0}, {"{\"temperature\":-0.0001}", 0}, {"{\"temperature\":3}", 0},
    {"{\"temperature\":1e308}", 0}, {"{\"temperature\":\"0.5\"}", 0}, {"{\"temperature\":false}", 0},
    {"{\"temperature\":null}", 0},

    {"{\"interval_ms\":99}", 0}, {"{\"interval_ms\":100}", 1}, {"{\"interval_ms\":3600000}", 1},
    {"{\"interval_ms\":3600001}", 0}, {"{\"interval_ms\":1000.5}", 0}, {"{\"interval_ms\":\"1000\"}", 0},

    {"{\"frame_max_side\":63}", 0}, {"{\"frame_max_side\":64}", 1}, {"{\"frame_max_side\":4096}", 1},
    {"{\"frame_max_side\":4097}", 0}, {"{\"frame_max_side\":{}}", 0},

    {"{\"jpeg_quality\":9}", 0}, {"{\"jpeg_quality\":10}", 1}, {"{\"jpeg_quality\":100}", 1},
    {"{\"jpeg_quality\":101}", 0}, {"{\"jpeg_quality\":80.0}", 0},

    {"{\"stats_interval_ms\":0}", 1}, {"{\"stats_interval_ms\":1}", 0}, {"{\"stats_interval_ms\":-1}", 0},
    {"{\"stats_interval_ms\":249}", 0}, {"{\"stats_interval_ms\":250}", 1},
    {"{\"stats_interval_ms\":60000}", 1}, {"{\"stats_interval_ms\":60001}", 0},
    {"{\"stats_interval_ms\":false}", 0},

    {"{\"debug\":true}", 1}, {"{\"debug\":false}", 1}, {"{\"debug\":0}", 0}, {"{\"debug\":1}", 0},
    {"{\"debug\":\"true\"}", 0}, {"{\"debug\":null}", 0},

    {"{\"source\":\"page\"}", 1}, {"{\"source\":\"webrtc\"}", 1}, {"{\"source\":\"camera:lobby\"}", 1},
    {"{\"source\":\"camera:a_b-9\"}", 1}, {"{\"source\":\"camera:abcdefghijklmnopqrstuvwxyz012345\"}", 1},
    {"{\"source\":\"camera:abcdefghijklmnopqrstuvwxyz0123456\"}", 0}, {"{\"source\":\"camera:\"}", 0},
    {"{\"source\":\"camera:Lobby\"}", 0}, {"{\"source\":\"camera:a/b\"}", 0}, {"{\"source\":\"Page\"}", 0},
    {"{\"source\":\"rtsp://cam/x\"}", 0}, {"{\"source\":\"camera:x\\u0001\"}", 0}, {"{\"source\":1}", 0},
    {"{\"source\":null}", 0}, {"{\"source\":\"\"}", 0},

    {"{\"prompt\":\"a\"}", 1}, {"{\"prompt\":\"\"}", 0}, {"{\"prompt\":\"  \\n\\t \"}", 0},
    {"{\"prompt\":\"caf\\u00e9 \\ud83d\\ude00?\"}", 1}, {"{\"prompt\":42}", 0},
    {"{\"prompt\":null}", 0}, {"{\"prompt\":[\"a\"]}", 0},

    {"{\"backend\":\"\"}", 1}, {"{\"backend\":\"vllm-1.local_A\"}", 1}, {"{\"backend\":\"a b\"}", 0},
    {"{\"backend\":\"a/b\"}", 0}, {"{\"backend\":\"caf\\u00e9\"}", 0}, {"{\"backend\":\"a\\nb\"}", 0},
    {"{\"backend\":1}", 0}, {"{\"backend\":null}", 0},

    {"{\"model\":\"\"}", 1}, {"{\"model\":\"Qwen/Qwen2.5-VL-7B-Instruct\"}", 1},
    {"{\"model\":\"llava:13b q4 (local)\"}", 1}, {"{\"model\":\"mod\\u00e8le\"}", 1},
    {"{\"model\":\"a\\nb\"}", 0}, {"{\"model\":\"a\\tb\"}", 0}, {"{\"model\":\"a\\u007fb\"}", 0},
    {"{\"model\":\"a\\u0085b\"}", 0}, {"{\"model\":7}", 0}, {"{\"model\":false}", 0},

    {"{}", 1}, {"{\"unknown_field\":[1,2,3],\"another\":null}", 1},
};

static void test_ranges_and_types(void **state)
{
    (void)state;
    for (size_t i = 0; i < LV_ARRAY_LEN(cases); i++) {
        lv_settings_t s, before;
        const char *field;
        lv_settings_defaults(&s);
        before = s;
        int rc = apply_text(&s, cases[i].json, &field);
        if ((rc == 0) != cases[i].ok)
            fail_msg("%s: rc %d, expected %s", cases[i].json, rc, cases[i].ok ? "ok" : "error");
        if (!cases[i].ok) {
            assert_int_equal(rc, LV_EINVAL);
            assert_non_null(field);
            /* The reported field is the one in the object (each case has exactly one). */
            assert_non_null(strstr(cases[i].json, field));
            assert_memory_equal(&s, &before, sizeof(s));
        }
    }
}

static void test_values_stored(void **state)
{
    (void)state;
    lv_settings_t s;
    const char *field;
    lv_settings_defaults(&s);
    assert_int_equal(apply_text(&s,
                                "{\"prompt\":\"  What is this?\\n\",\"max_tokens\":4096,\"temperature\":2,"
                                "\"interval_ms\":100,\"backend\":\"b-1\",\"model\":\"m:7b\","
                                "\"frame_max_side\":64,\"jpeg_quality\":10,\"stats_interval_ms\":0,"
                                "\"debug\":true}",
                                &field),
                     0);
    assert_string_equal(s.prompt, "What is this?"); /* trimmed */
    assert_int_equal(s.max_tokens, 4096);
    assert_true(s.temperature == 2.0);
    assert_int_equal(s.interval_ms, 100);
    assert_string_equal(s.backend, "b-1");
    assert_string_equal(s.model, "m:7b");
    assert_int_equal(s.frame_max_side, 64);
    assert_int_equal(s.jpeg_quality, 10);
    assert_int_equal(s.stats_interval_ms, 0);
    assert_true(s.debug);
}

static void test_all_or_nothing(void **state)
{
    (void)state;
    lv_settings_t s, before;
    const char *field;
    lv_settings_defaults(&s);
    before = s;
    /* Valid fields first (in the object and in the checking order), then one bad field. */
    assert_int_equal(apply_text(&s, "{\"prompt\":\"new\",\"max_tokens\":100,\"jpeg_quality\":5}", &field),
                     LV_EINVAL);
    assert_string_equal(field, "jpeg_quality");
    assert_memory_equal(&s, &before, sizeof(s));

    assert_int_equal(apply_text(&s, "{\"debug\":\"yes\",\"model\":\"m\",\"interval_ms\":5000}", &field),
                     LV_EINVAL);
    assert_string_equal(field, "debug");
    assert_memory_equal(&s, &before, sizeof(s));

    /* A later good update still works. */
    assert_int_equal(apply_text(&s, "{\"max_tokens\":100}", &field), 0);
    assert_int_equal(s.max_tokens, 100);
}

static void test_string_lengths(void **state)
{
    (void)state;
    lv_settings_t s;
    const char *bad;
    char big[LV_PROMPT_MAX + 64];

    lv_settings_defaults(&s);
    memset(big, 'p', sizeof(big));
    assert_int_equal(apply_value(&s, "prompt", json_stringn(big, LV_PROMPT_MAX), &bad), 0);
    assert_int_equal(strlen(s.prompt), LV_PROMPT_MAX);
    assert_int_equal(apply_value(&s, "prompt", json_stringn(big, LV_PROMPT_MAX + 1), &bad), LV_EINVAL);
    assert_string_equal(bad, "prompt");
    /* 4000 bytes plus whitespace around them: the limit applies after trimming. */
    big[0] = ' ';
    memset(big + 1, 'q', LV_PROMPT_MAX);
    memcpy(big + 1 + LV_PROMPT_MAX, " \n\t", 3);
    assert_int_equal(apply_value(&s, "prompt", json_stringn(big, LV_PROMPT_MAX + 4), &bad), 0);
    assert_int_equal(strlen(s.prompt), LV_PROMPT_MAX);
    assert_int_equal(s.prompt[0], 'q');

    memset(big, 'm', LV_MODEL_MAX + 1);
    assert_int_equal(apply_value(&s, "model", json_stringn(big, LV_MODEL_MAX), &bad), 0);
    assert_int_equal(strlen(s.model), LV_MODEL_MAX);
    assert_int_equal(apply_value(&s, "model", json_stringn(big, LV_MODEL_MAX + 1), &bad), LV_EINVAL);
    assert_string_equal(bad, "model");

    memset(big, 'b', LV_BACKEND_ID_MAX + 1);
    assert_int_equal(apply_value(&s, "backend", json_stringn(big, LV_BACKEND_ID_MAX), &bad), 0);
    assert_int_equal(strlen(s.backend), LV_BACKEND_ID_MAX);
    assert_int_equal(apply_value(&s, "backend", json_stringn(big, LV_BACKEND_ID_MAX + 1), &bad), LV_EINVAL);
    assert_string_equal(bad, "backend");
}

static void test_nul_and_invalid_bytes(void **state)
{
    (void)state;
    lv_settings_t s, before;
    const char *bad;
    lv_settings_defaults(&s);
    before = s;
    /* Jansson keeps embedded NULs in strings built with json_stringn. */
    assert_int_equal(apply_value(&s, "prompt", json_stringn("ab\0cd", 5), &bad), LV_EINVAL);
    assert_string_equal(bad, "prompt");
    assert_int_equal(apply_value(&s, "model", json_stringn("ab\0cd", 5), &bad), LV_EINVAL);
    assert_int_equal(apply_value(&s, "backend", json_stringn("ab\0cd", 5), &bad), LV_EINVAL);
    /* json_stringn_nocheck skips jansson's UTF-8 check: lone continuation byte, overlong '/',
     * surrogate, past U+10FFFF, truncated sequence. */
    static const char *const invalid[] = {"a\x80z", "\xC0\xAF", "\xED\xA0\x80", "\xF4\x90\x80\x80", "ok\xE2\x82"};
    for (size_t i = 0; i < LV_ARRAY_LEN(invalid); i++) {
        assert_int_equal(apply_value(&s, "prompt", json_stringn_nocheck(invalid[i], strlen(invalid[i])), &bad),
                         LV_EINVAL);
        assert_int_equal(apply_value(&s, "model", json_stringn_nocheck(invalid[i], strlen(invalid[i])), &bad),
                         LV_EINVAL);
    }
    assert_memory_equal(&s, &before, sizeof(s));
    /* A 4-byte sequence at the very end is fine. */
    assert_int_equal(apply_value(&s, "prompt", json_string("x\xF0\x9F\x98\x80"), &bad), 0);
}

static void test_not_an_object(void **state)
{
    (void)state;
    lv_settings_t s, before;
    const char *bad = NULL, *why = NULL;
    lv_settings_defaults(&s);
    before = s;
    json_t *arr = json_array();
    assert_int_equal(lv_settings_apply_json(&s, arr, &bad, &why), LV_EINVAL);
    assert_string_equal(bad, "settings");
    assert_non_null(why);
    json_decref(arr);
    assert_int_equal(lv_settings_apply_json(&s, NULL, &bad, &why), LV_EINVAL);
    /* Out-parameters are optional. */
    json_t *obj = json_pack("{s:i}", "max_tokens", 0);
    assert_int_equal(lv_settings_apply_json(&s, obj, NULL, NULL), LV_EINVAL);
    json_decref(obj);
    assert_memory_equal(&s, &before, sizeof(s));
}

static void test_json_roundtrip(void **state)
{
    (void)state;
    lv_settings_t a, b;
    const char *field;
    lv_settings_defaults(&a);
    assert_int_equal(apply_text(&a,
                                "{\"prompt\":\"p \\u00fc\",\"max_tokens\":7,\"temperature\":0.25,"
                                "\"interval_ms\":2500,\"backend\":\"x\",\"model\":\"y\",\"frame_max_side\":1024,"
                                "\"jpeg_quality\":55,\"stats_interval_ms\":250,\"debug\":true,"
                                "\"source\":\"camera:lobby\"}",
                                &field),
                     0);
    json_t *j = lv_settings_to_json(&a);
    assert_non_null(j);
    assert_int_equal(json_object_size(j), 11);
    assert_string_equal(json_string_value(json_object_get(j, "source")), "camera:lobby");
    assert_true(json_is_real(json_object_get(j, "temperature")));
    assert_true(json_is_integer(json_object_get(j, "max_tokens")));
    assert_true(json_is_true(json_object_get(j, "debug")));
    lv_settings_defaults(&b);
    assert_int_equal(lv_settings_apply_json(&b, j, NULL, NULL), 0);
    assert_memory_equal(&a, &b, sizeof(a));
    json_decref(j);

    /* The defaults survive the trip too (temperature 0.7 as a real). */
    lv_settings_defaults(&a);
    j = lv_settings_to_json(&a);
    b = a;
    b.max_tokens = 1;
    assert_int_equal(lv_settings_apply_json(&b, j, NULL, NULL), 0);
    assert_memory_equal(&a, &b, sizeof(a));
    json_decref(j);
    assert_null(lv_settings_to_json(NULL));
}

static void test_presets(void **state)
{
    (void)state;
    static const char *const want[] = {"scene", "objects", "activity", "safety", "emotion",
                                       "accessibility", "ocr", "yesno", "robot_simple", "robot_ros"};
    size_t n = 0;
    const lv_preset_t *p = lv_presets(&n);
    assert_int_equal(n, 10);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(p[i].id, want[i]);
        assert_true(strlen(p[i].label) > 0);
        /* Every preset is itself a valid prompt. */
        lv_settings_t s;
        const char *bad;
        lv_settings_defaults(&s);
        assert_int_equal(apply_value(&s, "prompt", json_string(p[i].prompt), &bad), 0);
        assert_string_equal(s.prompt, p[i].prompt);
    }
    assert_non_null(strstr(p[3].prompt, "ALERT:"));
    assert_non_null(strstr(p[3].prompt, "SAFE"));
    assert_non_null(strstr(p[9].prompt, "linear_x"));
    /* The default is one sentence. */
    const char *dot = strchr(p[0].prompt, '.');
    assert_non_null(dot);
    assert_int_equal(dot[1], '\0');
    assert_non_null(lv_presets(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_ranges_and_types),
        cmocka_unit_test(test_values_stored),
        cmocka_unit_test(test_all_or_nothing),
        cmocka_unit_test(test_string_lengths),
        cmocka_unit_test(test_nul_and_invalid_bytes),
        cmocka_unit_test(test_not_an_object),
        cmocka_unit_test(test_json_roundtrip),
        cmocka_unit_test(test_presets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

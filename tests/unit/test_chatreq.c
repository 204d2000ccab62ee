/* test_chatreq.c - request bodies parse as JSON and carry model, prompt and image exactly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "lv_b64.h"
#include "lv_buf.h"
#include "lv_chatreq.h"
#include "lv_common.h"
#include "lv_json_str.h"

static json_t *parse_ok(const lv_buf_t *b)
{
    json_error_t e;
    json_t *j = json_loadb(b->data, b->len, 0, &e);
    if (!j)
        fail_msg("body does not parse: %s at %d: %.*s", e.text, e.position, (int)b->len, b->data);
    return j;
}

static const char *jstr(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_string(v))
        fail_msg("no string member %s", key);
    return json_string_value(v);
}

static void test_roundtrip_tricky_strings(void **state)
{
    (void)state;
    static const char *strings[] = {
        "plain",
        "quote \" and backslash \\ and slash /",
        "new\nline\r\ttab\b\f",
        "emoji \xF0\x9F\x98\x80 and \xC3\xA9\xE2\x82\xAC CJK \xE4\xB8\xAD",
        "ctl \x01\x02\x1f\x7f end",
        "\\\"\\\\\"",
        "",
    };
    unsigned char jpeg[100];
    for (size_t i = 0; i < sizeof jpeg; i++)
        jpeg[i] = (unsigned char)(255 - i);
    for (size_t i = 0; i < LV_ARRAY_LEN(strings); i++) {
        lv_chatreq_t r = {.model = i ? strings[i][0] ? strings[i] : "m" : "qwen2.5-vl:7b",
                          .prompt = strings[i], .max_tokens = 512, .temperature = 0.7,
                          .jpeg = jpeg, .jpeg_len = sizeof jpeg, .stream = 1, .include_usage = 1};
        lv_buf_t b;
        lv_buf_init(&b, 1 << 20);
        assert_int_equal(lv_chatreq_build(&b, &r), 0);
        json_t *j = parse_ok(&b);
        assert_string_equal(jstr(j, "model"), r.model);
        json_t *content = json_object_get(json_array_get(json_object_get(j, "messages"), 0), "content");
        assert_string_equal(jstr(json_array_get(content, 0), "type"), "text");
        const char *text = NULL;
        assert_int_equal(json_unpack(json_array_get(content, 0), "{s:s}", "text", &text), 0);
        assert_string_equal(text, strings[i]);
        const char *url = NULL;
        assert_int_equal(json_unpack(json_array_get(content, 1), "{s:{s:s}}", "image_url", "url", &url), 0);
        lv_buf_t want;
        lv_buf_init(&want, 1 << 20);
        assert_int_equal(lv_buf_append_str(&want, "data:image/jpeg;base64,"), 0);
        assert_int_equal(lv_b64_encode(&want, jpeg, sizeof jpeg), 0);
        assert_string_equal(url, want.data);
        int mt = 0, stream = 0, usage = 0;
        double t = 0;
        assert_int_equal(json_unpack(j, "{s:i,s:F,s:b,s:{s:b}}", "max_tokens", &mt, "temperature", &t,
                                     "stream", &stream, "stream_options", "include_usage", &usage), 0);
        assert_int_equal(mt, 512);
        assert_true(t > 0.6999 && t < 0.7001);
        assert_true(stream);
        assert_true(usage);
        json_decref(j);
        lv_buf_free(&want);
        lv_buf_free(&b);
    }
}

static void test_escaper_exact(void **state)
{
    (void)state;
    lv_buf_t b;
    lv_buf_init(&b, 256);
    assert_int_equal(lv_json_str_append(&b, "a\"b\\c\n\x01\xC3\xA9", 9), 0);
    assert_string_equal(b.data, "\"a\\\"b\\\\c\\n\\u0001\xC3\xA9\"");
    /* embedded NUL is escaped too */
    lv_buf_reset(&b);
    assert_int_equal(lv_json_str_append(&b, "x\0y", 3), 0);
    assert_string_equal(b.data, "\"x\\u0000y\"");
    lv_buf_free(&b);
}

static void test_invalid_utf8_rejected(void **state)
{
    (void)state;
    static const char *bad[] = {
        "\xC3",             /* truncated */
        "\xC0\xAF",         /* overlong '/' */
        "\xE0\x80\xAF",     /* overlong */
        "\xED\xA0\x80",     /* surrogate */
        "\xF4\x90\x80\x80", /* > U+10FFFF */
        "\xFF",
        "ok \x80",
    };
    for (size_t i = 0; i < LV_ARRAY_LEN(bad); i++) {
        lv_buf_t b;
        lv_buf_init(&b, 256);
        assert_int_equal(lv_buf_append_str(&b, "keep"), 0);
        lv_chatreq_t r = {.model = "m", .prompt = bad[i], .temperature = 1, .stream = 1};
        assert_int_equal(lv_chatreq_build(&b, &r), LV_EINVAL);
        assert_int_equal(b.len, 4);
        assert_string_equal(b.data, "keep");
        lv_buf_free(&b);
    }
}

static void test_no_image_no_stream_no_max_tokens(void **state)
{
    (void)state;
    lv_chatreq_t r = {.model = "m", .prompt = "p", .max_tokens = 0, .temperature = 0, .stream = 0};
    lv_buf_t b;
    lv_buf_init(&b, 4096);
    assert_int_equal(lv_chatreq_build(&b, &r), 0);
    assert_string_equal(b.data, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":["
                                "{\"type\":\"text\",\"text\":\"p\"}]}],\"temperature\":0,\"stream\":false}");
    json_decref(parse_ok(&b));
    lv_buf_free(&b);
}

static void test_temperature_format(void **state)
{
    (void)state;
    static const struct {
        double t;
        const char *want;
    } cases[] = {{0, "0"}, {0.7, "0.7"}, {1, "1"}, {2, "2"}, {0.05, "0.05"}, {1.234567, "1.234567"},
                 {0.0000004, "0"}};
    for (size_t i = 0; i < LV_ARRAY_LEN(cases); i++) {
        lv_chatreq_t r = {.model = "m", .prompt = "", .temperature = cases[i].t, .stream = 1};
        lv_buf_t b;
        lv_buf_init(&b, 4096);
        assert_int_equal(lv_chatreq_build(&b, &r), 0);
        const char *p = strstr(b.data, "\"temperature\":");
        assert_non_null(p);
        p += strlen("\"temperature\":");
        assert_int_equal(strncmp(p, cases[i].want, strlen(cases[i].want)), 0);
        assert_int_equal(p[strlen(cases[i].want)], ',');
        lv_buf_free(&b);
    }
    lv_chatreq_t r = {.model = "m", .prompt = "", .temperature = -1};
    lv_buf_t b;
    lv_buf_init(&b, 4096);
    assert_int_equal(lv_chatreq_build(&b, &r), LV_EINVAL);
    r.temperature = 0.0 / 0.0;
    assert_int_equal(lv_chatreq_build(&b, &r), LV_EINVAL);
    r.temperature = 1;
    r.model = "";
    assert_int_equal(lv_chatreq_build(&b, &r), LV_EINVAL);
    assert_int_equal(lv_chatreq_build(&b, NULL), LV_EINVAL);
    lv_buf_free(&b);
}

static void test_debug_form(void **state)
{
    (void)state;
    size_t n = 30000;
    unsigned char *jpeg = malloc(n);
    assert_non_null(jpeg);
    for (size_t i = 0; i < n; i++)
        jpeg[i] = (unsigned char)(i * 31);
    lv_chatreq_t r = {.model = "m", .prompt = "what \"is\" it?", .max_tokens = 9, .temperature = 0.5,
                      .jpeg = jpeg, .jpeg_len = n, .stream = 1, .include_usage = 1};
    lv_buf_t full, dbg;
    lv_buf_init(&full, 1 << 20);
    lv_buf_init(&dbg, 4096);
    assert_int_equal(lv_chatreq_build(&full, &r), 0);
    assert_int_equal(lv_chatreq_build_debug(&dbg, &r), 0);
    json_t *j = parse_ok(&dbg);
    const char *url = NULL;
    assert_int_equal(json_unpack(j, "{s:[{s:[{},{s:{s:s}}]}]}", "messages", "content", "image_url", "url",
                                 &url), 0);
    const char *prefix = "data:image/jpeg;base64,";
    assert_int_equal(strncmp(url, prefix, strlen(prefix)), 0);
    const char *b64 = url + strlen(prefix);
    const char *full_b64 = strstr(full.data, prefix) + strlen(prefix);
    assert_int_equal(strncmp(b64, full_b64, LV_CHATREQ_DEBUG_B64_CHARS), 0);
    assert_string_equal(b64 + LV_CHATREQ_DEBUG_B64_CHARS, "...<40000 chars total>");
    json_decref(j);

    /* small image: the debug form equals the real body */
    r.jpeg_len = 90;
    lv_buf_reset(&full);
    lv_buf_reset(&dbg);
    assert_int_equal(lv_chatreq_build(&full, &r), 0);
    assert_int_equal(lv_chatreq_build_debug(&dbg, &r), 0);
    assert_string_equal(full.data, dbg.data);
    free(jpeg);
    lv_buf_free(&full);
    lv_buf_free(&dbg);
}

static void test_cap(void **state)
{
    (void)state;
    unsigned char jpeg[3000] = {0};
    lv_chatreq_t r = {.model = "m", .prompt = "p", .max_tokens = 1, .temperature = 1, .jpeg = jpeg,
                      .jpeg_len = sizeof jpeg, .stream = 1};
    lv_buf_t b;
    lv_buf_init(&b, 4000); /* base64 alone is 4000 */
    assert_int_equal(lv_chatreq_build(&b, &r), LV_ELIMIT);
    assert_int_equal(b.len, 0);
    lv_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_tricky_strings),
        cmocka_unit_test(test_escaper_exact),
        cmocka_unit_test(test_invalid_utf8_rejected),
        cmocka_unit_test(test_no_image_no_stream_no_max_tokens),
        cmocka_unit_test(test_temperature_format),
        cmocka_unit_test(test_debug_form),
        cmocka_unit_test(test_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

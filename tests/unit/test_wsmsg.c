/* test_wsmsg.c - client text messages: types, size and depth caps, malformed JSON, error replies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lv_common.h"
#include "lv_wsmsg.h"

#define MAX_BYTES 65536
#define MAX_DEPTH 16

/* Parse s[0..len) from an exact-size, unterminated copy so ASan catches reads past the end. */
static int parse_n(const char *s, size_t len, lv_client_msg_t *m, const char **code)
{
    char *c = malloc(len ? len : 1);
    assert_non_null(c);
    memcpy(c, s, len);
    const char *text = NULL;
    *code = NULL;
    int rc = lv_wsmsg_parse(c, len, MAX_BYTES, MAX_DEPTH, m, code, &text);
    free(c); /* nothing in m may point into the input */
    if (rc != 0) {
        assert_non_null(*code);
        assert_non_null(text);
        assert_null(m->root);
    }
    return rc;
}

static int parse(const char *s, lv_client_msg_t *m, const char **code)
{
    return parse_n(s, strlen(s), m, code);
}

/* Expect s to be rejected as bad_message. */
static void expect_bad(const char *s)
{
    lv_client_msg_t m;
    const char *code;
    int rc = parse(s, &m, &code);
    if (rc != LV_EINVAL || strcmp(code, "bad_message") != 0)
        fail_msg("expected bad_message for %s, got rc %d", s, rc);
    lv_wsmsg_free(&m);
}

static void test_types(void **state)
{
    (void)state;
    static const struct {
        const char *json;
        lv_msg_type_t type;
    } t[] = {
        {"{\"type\":\"hello\"}", LV_MSG_HELLO},
        {"{\"type\":\"update_settings\",\"settings\":{}}", LV_MSG_UPDATE_SETTINGS},
        {"{\"type\":\"start\"}", LV_MSG_START},
        {"{\"type\":\"stop\"}", LV_MSG_STOP},
        {"  {\"type\":\"ping\"}\n", LV_MSG_PING},
        {"{\"type\":\"Hello\"}", LV_MSG_UNKNOWN},
        {"{\"type\":\"\"}", LV_MSG_UNKNOWN},
        {"{\"type\":\"reboot\",\"x\":[1,{\"y\":null}]}", LV_MSG_UNKNOWN},
    };
    for (size_t i = 0; i < LV_ARRAY_LEN(t); i++) {
        lv_client_msg_t m;
        const char *code;
        assert_int_equal(parse(t[i].json, &m, &code), 0);
        assert_int_equal(m.type, t[i].type);
        assert_non_null(m.root);
        assert_non_null(m.type_name);
        assert_non_null(strstr(t[i].json, m.type_name));
        lv_wsmsg_free(&m);
        assert_null(m.root);
    }
}

static void test_hello_fields(void **state)
{
    (void)state;
    lv_client_msg_t m;
    const char *code;
    assert_int_equal(parse("{\"type\":\"hello\",\"session_id\":\"abc\",\"resume_secret\":\"s3\","
                           "\"settings\":{\"prompt\":\"hi\",\"interval_ms\":2000},\"extra\":1}",
                           &m, &code),
                     0);
    assert_int_equal(m.type, LV_MSG_HELLO);
    assert_string_equal(m.session_id, "abc");
    assert_string_equal(m.resume_secret, "s3");
    assert_non_null(m.settings);
    assert_ptr_equal(m.settings, json_object_get(m.root, "settings"));
    assert_int_equal(json_integer_value(json_object_get(m.settings, "interval_ms")), 2000);
    assert_null(m.t);
    lv_wsmsg_free(&m);

    assert_int_equal(parse("{\"type\":\"hello\"}", &m, &code), 0);
    assert_null(m.session_id);
    assert_null(m.resume_secret);
    assert_null(m.settings);
    lv_wsmsg_free(&m);
}

static void test_id_lengths(void **state)
{
    (void)state;
    char buf[512], id[LV_WSMSG_ID_MAX + 2];
    lv_client_msg_t m;
    const char *code;
    memset(id, 'a', sizeof(id));
    static const char *const keys[] = {"session_id", "resume_secret"};
    for (size_t k = 0; k < 2; k++) {
        snprintf(buf, sizeof(buf), "{\"type\":\"hello\",\"%s\":\"%.*s\"}", keys[k], LV_WSMSG_ID_MAX, id);
        assert_int_equal(parse(buf, &m, &code), 0);
        assert_int_equal(strlen(k == 0 ? m.session_id : m.resume_secret), LV_WSMSG_ID_MAX);
        lv_wsmsg_free(&m);
        snprintf(buf, sizeof(buf), "{\"type\":\"hello\",\"%s\":\"%.*s\"}", keys[k], LV_WSMSG_ID_MAX + 1, id);
        expect_bad(buf);
        snprintf(buf, sizeof(buf), "{\"type\":\"hello\",\"%s\":12}", keys[k]);
        expect_bad(buf);
        snprintf(buf, sizeof(buf), "{\"type\":\"hello\",\"%s\":null}", keys[k]);
        expect_bad(buf);
        snprintf(buf, sizeof(buf), "{\"type\":\"hello\",\"%s\":[\"x\"]}", keys[k]);
        expect_bad(buf);
    }
}

static void test_settings_not_object(void **state)
{
    (void)state;
    expect_bad("{\"type\":\"update_settings\",\"settings\":[]}");
    expect_bad("{\"type\":\"update_settings\",\"settings\":\"prompt\"}");
    expect_bad("{\"type\":\"update_settings\",\"settings\":null}");
    expect_bad("{\"type\":\"hello\",\"settings\":5}");
    /* The field rules apply whatever the type, also to unknown ones. */
    expect_bad("{\"type\":\"whatever\",\"settings\":true}");
}

static void test_ping_token(void **state)
{
    (void)state;
    lv_client_msg_t m;
    const char *code;
    assert_int_equal(parse("{\"type\":\"ping\",\"t\":1712345678901}", &m, &code), 0);
    assert_non_null(m.t);
    assert_true(json_integer_value(m.t) == 1712345678901LL);
    lv_wsmsg_free(&m);
    assert_int_equal(parse("{\"type\":\"ping\",\"t\":0.5}", &m, &code), 0);
    assert_true(json_is_real(m.t));
    lv_wsmsg_free(&m);
    /* Non-numbers are not echoed. */
    assert_int_equal(parse("{\"type\":\"ping\",\"t\":\"x\"}", &m, &code), 0);
    assert_null(m.t);
    lv_wsmsg_free(&m);
    assert_int_equal(parse("{\"type\":\"ping\",\"t\":{\"a\":1}}", &m, &code), 0);
    assert_null(m.t);
    lv_wsmsg_free(&m);
}

static void test_size_cap(void **state)
{
    (void)state;
    lv_client_msg_t m;
    const char *code = NULL, *text = NULL;
    const char *s = "{\"type\":\"ping\"}";
    size_t len = strlen(s);
    assert_int_equal(lv_wsmsg_parse(s, len, len, MAX_DEPTH, &m, &code, &text), 0);
    lv_wsmsg_free(&m);
    assert_int_equal(lv_wsmsg_parse(s, len, len - 1, MAX_DEPTH, &m, &code, &text), LV_ELIMIT);
    assert_string_equal(code, "message_too_large");
    assert_null(m.root);

    /* A realistic cap: 64 KiB of padding inside a string. */
    size_t big = MAX_BYTES + 1;
    char *b = malloc(big);
    assert_non_null(b);
    memset(b, ' ', big);
    memcpy(b, s, len);
    assert_int_equal(lv_wsmsg_parse(b, big, MAX_BYTES, MAX_DEPTH, &m, &code, &text), LV_ELIMIT);
    assert_string_equal(code, "message_too_large");
    assert_int_equal(lv_wsmsg_parse(b, big - 1, MAX_BYTES, MAX_DEPTH, &m, &code, &text), 0);
    lv_wsmsg_free(&m);
    free(b);
    /* Error out-parameters are optional. */
    assert_int_equal(lv_wsmsg_parse(s, len, 1, MAX_DEPTH, &m, NULL, NULL), LV_ELIMIT);
    assert_int_equal(lv_wsmsg_parse(s, len, MAX_BYTES, MAX_DEPTH, NULL, NULL, NULL), LV_EINVAL);
}

static void test_not_json(void **state)
{
    (void)state;
    lv_client_msg_t m;
    const char *code;
    assert_int_equal(parse_n("", 0, &m, &code), LV_EINVAL);
    assert_string_equal(code, "bad_message");
    assert_int_equal(lv_wsmsg_parse(NULL, 0, MAX_BYTES, MAX_DEPTH, &m, &code, NULL), LV_EINVAL);
    expect_bad("hello");
    expect_bad("{");
    expect_bad("{\"type\":\"ping\"");
    expect_bad("{\"type\":\"ping\"} x");
    expect_bad("{\"type\":\"ping\"}{}");
    expect_bad("{'type':'ping'}");
    expect_bad("{\"type\":\"ping\",}");
    expect_bad("[]");
    expect_bad("[{\"type\":\"ping\"}]");
    expect_bad("\"ping\"");
    expect_bad("42");
    expect_bad("null");
    expect_bad("{\"type\":\"ping\",\"n\":123456789012345678901234567890}");
}

static void test_type_field(void **state)
{
    (void)state;
    expect_bad("{}");
    expect_bad("{\"Type\":\"ping\"}");
    expect_bad("{\"type\":1}");
    expect_bad("{\"type\":null}");
    expect_bad("{\"type\":true}");
    expect_bad("{\"type\":[\"ping\"]}");
    expect_bad("{\"type\":{\"name\":\"ping\"}}");
}

static void test_duplicates(void **state)
{
    (void)state;
    expect_bad("{\"type\":\"stop\",\"type\":\"start\"}");
    expect_bad("{\"type\":\"ping\",\"t\":1,\"t\":2}");
    expect_bad("{\"type\":\"update_settings\",\"settings\":{\"prompt\":\"a\",\"prompt\":\"b\"}}");
}

static void test_nul_and_invalid_bytes(void **state)
{
    (void)state;
    lv_client_msg_t m;
    const char *code;
    expect_bad("{\"type\":\"ping\\u0000x\"}");
    expect_bad("{\"type\":\"hello\",\"session_id\":\"a\\u0000b\"}");
    /* Raw NUL inside a string, and after the object. */
    static const char raw_nul[] = "{\"type\":\"pi\0ng\"}";
    assert_int_equal(parse_n(raw_nul, sizeof(raw_nul) - 1, &m, &code), LV_EINVAL);
    static const char trailing_nul[] = "{\"type\":\"ping\"}\0";
    assert_int_equal(parse_n(trailing_nul, sizeof(trailing_nul) - 1, &m, &code), LV_EINVAL);
    /* Invalid UTF-8: lone continuation, overlong, surrogate escape pair broken. */
    expect_bad("{\"type\":\"p\x80ng\"}");
    expect_bad("{\"type\":\"\xC0\xAF\"}");
    expect_bad("{\"type\":\"\\ud800\"}");
    /* Raw control character inside a string. */
    expect_bad("{\"type\":\"pi\nng\"}");
    /* Valid non-ASCII is fine (an unknown type). */
    assert_int_equal(parse("{\"type\":\"caf\xC3\xA9\"}", &m, &code), 0);
    assert_int_equal(m.type, LV_MSG_UNKNOWN);
    lv_wsmsg_free(&m);
}

/* {"type":"ping","x":[[...]]} with depth-1 nested arrays: exactly `depth` levels in all. */
static char *nested_arrays(int depth)
{
    size_t cap = 64 + 2 * (size_t)depth;
    char *s = malloc(cap);
    assert_non_null(s);
    size_t n = (size_t)snprintf(s, cap, "{\"type\":\"ping\",\"x\":");
    for (int i = 1; i < depth; i++)
        s[n++] = '[';
    for (int i = 1; i < depth; i++)
        s[n++] = ']';
    s[n++] = '}';
    s[n] = '\0';
    return s;
}

/* {"type":"ping","a":{"b":0,"a":{...}}} with exactly `depth` levels of objects. */
static char *nested_objects(int depth)
{
    size_t cap = 64 + 16 * (size_t)depth;
    char *s = malloc(cap);
    assert_non_null(s);
    size_t n = (size_t)snprintf(s, cap, "{\"type\":\"ping\"");
    for (int i = 1; i < depth; i++)
        n += (size_t)snprintf(s + n, cap - n, ",\"a\":{\"b\":0");
    for (int i = 0; i < depth; i++)
        s[n++] = '}';
    s[n] = '\0';
    return s;
}

static void test_depth(void **state)
{
    (void)state;
    lv_client_msg_t m;
    const char *code;
    char *s;

    s = nested_arrays(16);
    assert_int_equal(parse(s, &m, &code), 0);
    lv_wsmsg_free(&m);
    free(s);
    s = nested_arrays(17);
    expect_bad(s);
    free(s);
    s = nested_objects(16);
    assert_int_equal(parse(s, &m, &code), 0);
    lv_wsmsg_free(&m);
    free(s);
    s = nested_objects(17);
    expect_bad(s);
    free(s);
    /* A very deep prefix is refused before jansson ever sees it. */
    s = nested_arrays(20000);
    expect_bad(s);
    const char *text = NULL;
    assert_int_equal(lv_wsmsg_parse(s, strlen(s), MAX_BYTES, MAX_DEPTH, &m, &code, &text), LV_EINVAL);
    assert_non_null(strstr(text, "deep"));
    free(s);

    /* Brackets inside strings do not count, escaped quotes included. */
    assert_int_equal(parse("{\"type\":\"ping\",\"s\":\"[[[[[[[[[[{{{{{{{{{{[[[[[[[[[[\"}", &m, &code), 0);
    lv_wsmsg_free(&m);
    assert_int_equal(parse("{\"type\":\"ping\",\"s\":\"\\\"[[[[[[[[[[[[[[[[[[[[\\\"\"}", &m, &code), 0);
    lv_wsmsg_free(&m);
    /* An escaped backslash ends right before the quote, so the brackets after are real. */
    expect_bad("{\"type\":\"ping\",\"s\":\"\\\\\",\"a\":[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]}");
    /* Closing brackets never push the count negative (and a later deep part is still seen). */
    expect_bad("]]]]]]]]]]]]]]]]]]]][[[[[[[[[[[[[[[[[[");
}

static void test_free_is_safe(void **state)
{
    (void)state;
    lv_client_msg_t m;
    memset(&m, 0, sizeof(m));
    lv_wsmsg_free(&m);
    lv_wsmsg_free(NULL);
    const char *code;
    assert_int_equal(parse("{\"type\":\"stop\"}", &m, &code), 0);
    lv_wsmsg_free(&m);
    lv_wsmsg_free(&m);
}

static void test_error_reply(void **state)
{
    (void)state;
    char *s = lv_wsmsg_error("invalid_setting", "out of range", "max_tokens");
    assert_non_null(s);
    assert_string_equal(s, "{\"type\":\"error\",\"code\":\"invalid_setting\",\"message\":\"out of range\","
                           "\"field\":\"max_tokens\"}");
    free(s);
    s = lv_wsmsg_error("bad_message", "quote \" and \\ and\nnewline", NULL);
    assert_string_equal(s, "{\"type\":\"error\",\"code\":\"bad_message\","
                           "\"message\":\"quote \\\" and \\\\ and\\nnewline\"}");
    free(s);
    s = lv_wsmsg_error("no_backend", NULL, NULL);
    assert_string_equal(s, "{\"type\":\"error\",\"code\":\"no_backend\",\"message\":\"\"}");
    free(s);
    /* Latin-1 from a backend: the reply still goes out, with the bad byte replaced by U+FFFD. */
    s = lv_wsmsg_error("backend_error", "caf\xE9 \xC3\xA9", "f\xFF");
    assert_string_equal(s, "{\"type\":\"error\",\"code\":\"backend_error\",\"message\":\"caf\\ufffd \xC3\xA9\","
                           "\"field\":\"f\\ufffd\"}");
    free(s);
    assert_null(lv_wsmsg_error(NULL, "x", NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_types),
        cmocka_unit_test(test_hello_fields),
        cmocka_unit_test(test_id_lengths),
        cmocka_unit_test(test_settings_not_object),
        cmocka_unit_test(test_ping_token),
        cmocka_unit_test(test_size_cap),
        cmocka_unit_test(test_not_json),
        cmocka_unit_test(test_type_field),
        cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_nul_and_invalid_bytes),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_free_is_safe),
        cmocka_unit_test(test_error_reply),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_log.c - lv_log's JSON lines (--log-format json): one object per line, context fields
 * present only when given, every string escaped, the line capped; text lines unchanged. stderr is
 * pointed at a temporary file for each case. */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "lv_common.h"
#include "lv_log.h"

static int saved_fd = -1;
static FILE *capture;

static void capture_start(void)
{
    fflush(stderr);
    capture = tmpfile();
    assert_non_null(capture);
    saved_fd = dup(2);
    dup2(fileno(capture), 2);
}

/* What was written since capture_start (caller frees). */
static char *capture_end(void)
{
    fflush(stderr);
    dup2(saved_fd, 2);
    close(saved_fd);
    long n = ftell(capture);
    assert_true(n >= 0);
    char *text = calloc(1, (size_t)n + 1);
    rewind(capture);
    assert_int_equal(fread(text, 1, (size_t)n, capture), (size_t)n);
    fclose(capture);
    return text;
}

static json_t *one_json_line(const char *text)
{
    size_t len = strlen(text);
    assert_true(len > 0 && text[len - 1] == '\n');
    assert_null(memchr(text, '\n', len - 1)); /* exactly one line */
    json_error_t err;
    json_t *o = json_loadb(text, len - 1, 0, &err);
    assert_non_null(o);
    assert_true(json_is_object(o));
    return o;
}

static void json_line_with_context(void **state)
{
    (void)state;
    lv_log_set_json(true);
    lv_log_ctx_t ctx = {.tenant = "acme", .user = "u1", .session = "0123abcd", .answer = 42,
                        .trace_id = "4bf92f3577b34da6a3ce929d0e0e4736", .backend = "vllm", .model = "m",
                        .ip = "127.0.0.1"};
    capture_start();
    LV_INFO_CTX(&ctx, "session %s created", "0123abcd");
    char *text = capture_end();
    json_t *o = one_json_line(text);
    assert_string_equal(json_string_value(json_object_get(o, "level")), "info");
    assert_string_equal(json_string_value(json_object_get(o, "msg")), "session 0123abcd created");
    const char *ts = json_string_value(json_object_get(o, "ts"));
    assert_non_null(ts);
    assert_int_equal(strlen(ts), 24); /* 2026-12-05T13:40:00.123Z */
    assert_int_equal(ts[10], 'T');
    assert_int_equal(ts[23], 'Z');
    assert_string_equal(json_string_value(json_object_get(o, "tenant")), "acme");
    assert_string_equal(json_string_value(json_object_get(o, "user")), "u1");
    assert_string_equal(json_string_value(json_object_get(o, "session")), "0123abcd");
    assert_int_equal(json_integer_value(json_object_get(o, "answer")), 42);
    assert_string_equal(json_string_value(json_object_get(o, "trace_id")), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_string_equal(json_string_value(json_object_get(o, "backend")), "vllm");
    assert_string_equal(json_string_value(json_object_get(o, "model")), "m");
    assert_string_equal(json_string_value(json_object_get(o, "ip")), "127.0.0.1");
    json_decref(o);
    free(text);
}

static void absent_fields_left_out(void **state)
{
    (void)state;
    lv_log_set_json(true);
    lv_log_ctx_t ctx = {.session = "s1", .user = ""};
    capture_start();
    LV_WARN_CTX(&ctx, "x");
    LV_ERROR("plain");
    char *text = capture_end();
    char *second = strchr(text, '\n') + 1;
    char *first = strndup(text, (size_t)(second - text));
    json_t *o = one_json_line(first);
    assert_string_equal(json_string_value(json_object_get(o, "level")), "warn");
    assert_int_equal(json_object_size(o), 4); /* ts, level, msg, session */
    assert_null(json_object_get(o, "user"));
    json_decref(o);
    o = one_json_line(second);
    assert_string_equal(json_string_value(json_object_get(o, "level")), "error");
    assert_int_equal(json_object_size(o), 3);
    json_decref(o);
    free(first);
    free(text);
}

/* quotes, newlines, control bytes and bytes that are not UTF-8 never break the line */
static void hostile_strings_escaped(void **state)
{
    (void)state;
    lv_log_set_json(true);
    lv_log_ctx_t ctx = {.ip = "1.2.3.4\"}\n{\"level\":\"error", .backend = "b\xff\xfe"};
    capture_start();
    LV_INFO_CTX(&ctx, "a \"quote\"\nand a newline\x01 and \xc3 bad utf-8");
    char *text = capture_end();
    json_t *o = one_json_line(text);
    assert_string_equal(json_string_value(json_object_get(o, "level")), "info");
    assert_string_equal(json_string_value(json_object_get(o, "ip")), "1.2.3.4\"}\n{\"level\":\"error");
    assert_non_null(strstr(json_string_value(json_object_get(o, "msg")), "\"quote\"\nand"));
    json_decref(o);
    free(text);
}

static void long_lines_capped(void **state)
{
    (void)state;
    lv_log_set_json(true);
    char big[3000];
    memset(big, '"', sizeof(big) - 1); /* each escapes to 2 bytes */
    big[sizeof(big) - 1] = '\0';
    char field[400];
    memset(field, 'f', sizeof(field) - 1);
    field[sizeof(field) - 1] = '\0';
    lv_log_ctx_t ctx = {.tenant = field, .user = field, .session = field, .trace_id = field, .backend = field,
                        .model = field, .ip = field, .answer = 1};
    capture_start();
    LV_INFO_CTX(&ctx, "%s", big);
    char *text = capture_end();
    assert_true(strlen(text) <= LV_LOG_LINE_MAX);
    json_t *o = one_json_line(text);
    assert_true(json_is_true(json_object_get(o, "truncated")));
    assert_int_equal(strlen(json_string_value(json_object_get(o, "tenant"))), LV_LOG_FIELD_MAX);
    assert_true(json_string_length(json_object_get(o, "msg")) > 100); /* cut, not dropped */
    json_decref(o);
    free(text);
}

static void text_format_unchanged(void **state)
{
    (void)state;
    lv_log_set_json(false);
    lv_log_ctx_t ctx = {.session = "s1", .trace_id = "t"};
    capture_start();
    LV_INFO_CTX(&ctx, "hello %d", 5);
    LV_DEBUG("not shown at info");
    char *text = capture_end();
    /* "<ts> info hello 5\n" */
    assert_int_equal(strlen(text), 24 + 1 + 4 + 1 + 7 + 1);
    assert_non_null(strstr(text, " info hello 5\n"));
    assert_null(strstr(text, "s1"));
    free(text);
}

int main(void)
{
    lv_log_set_level(LV_LOG_INFO);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(json_line_with_context), cmocka_unit_test(absent_fields_left_out),
        cmocka_unit_test(hostile_strings_escaped), cmocka_unit_test(long_lines_capped),
        cmocka_unit_test(text_format_unchanged),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

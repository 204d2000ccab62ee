/* test_json_str.c - the one JSON string writer: exact escapes, strict and lossy UTF-8 handling,
 * all-or-nothing on the cap, and random bytes read back by jansson. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "lv_buf.h"
#include "lv_common.h"
#include "lv_json_str.h"
#include "lv_utf8.h"

static void test_escapes_exact(void **state)
{
    (void)state;
    lv_buf_t b;
    lv_buf_init(&b, 1024);
    assert_int_equal(lv_json_str_append(&b, "", 0), 0);
    assert_string_equal(b.data, "\"\"");
    lv_buf_reset(&b);
    assert_int_equal(lv_json_str_append(&b, "a\"b\\c/d\b\f\n\r\t\x01\x1f\x7f", 15), 0);
    /* '/' and DEL need no escape (RFC 8259 section 7) and get none */
    assert_string_equal(b.data, "\"a\\\"b\\\\c/d\\b\\f\\n\\r\\t\\u0001\\u001f\x7f\"");
    lv_buf_reset(&b);
    assert_int_equal(lv_json_str_append(&b, "x\0y", 3), 0);
    assert_string_equal(b.data, "\"x\\u0000y\"");
    lv_buf_reset(&b);
    static const char utf8[] = "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80";
    assert_int_equal(lv_json_str_append(&b, utf8, sizeof utf8 - 1), 0);
    assert_int_equal(b.len, sizeof utf8 + 1);
    assert_memory_equal(b.data + 1, utf8, sizeof utf8 - 1);
    lv_buf_free(&b);
}

static void test_strict_rejects_and_keeps_buffer(void **state)
{
    (void)state;
    static const char *bad[] = {"caf\xE9", "\xC0\x80", "\xED\xA0\x80", "\xF4\x90\x80\x80", "\xE2\x82", "\x80"};
    lv_buf_t b;
    lv_buf_init(&b, 1024);
    assert_int_equal(lv_buf_append_str(&b, "keep"), 0);
    for (size_t i = 0; i < LV_ARRAY_LEN(bad); i++) {
        assert_int_equal(lv_json_str_append(&b, bad[i], strlen(bad[i])), LV_EINVAL);
        assert_int_equal(b.len, 4);
        assert_string_equal(b.data, "keep");
    }
    lv_buf_free(&b);
}

static void test_lossy(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"caf\xE9 ok", "\"caf\\ufffd ok\""},
        {"\xC0\x80", "\"\\ufffd\\ufffd\""},             /* overlong: bad lead, then a stray tail */
        {"\xED\xA0\x80", "\"\\ufffd\\ufffd\\ufffd\""},   /* a surrogate */
        {"a\xE2\x82", "\"a\\ufffd\\ufffd\""},            /* cut at the end */
        {"\xE2\x82\xAC\xFF\"", "\"\xE2\x82\xAC\\ufffd\\\"\""}, /* good, bad, then an escape */
        {"plain\n", "\"plain\\n\""},                       /* valid text: same as the strict form */
    };
    lv_buf_t b;
    lv_buf_init(&b, 1024);
    for (size_t i = 0; i < LV_ARRAY_LEN(cases); i++) {
        lv_buf_reset(&b);
        assert_int_equal(lv_json_str_append_lossy(&b, cases[i].in, strlen(cases[i].in)), 0);
        assert_string_equal(b.data, cases[i].out);
    }
    lv_buf_free(&b);
}

/* Every prefix length of the cap: either the whole string fits or the buffer is as it was. */
static void test_cap_all_or_nothing(void **state)
{
    (void)state;
    static const char s[] = "ab\"\n\xC3\xA9\xFF" "cd";
    lv_buf_t full;
    lv_buf_init(&full, 1024);
    assert_int_equal(lv_json_str_append_lossy(&full, s, sizeof s - 1), 0);
    for (size_t cap = 2; cap < full.len + 3; cap++) {
        lv_buf_t b;
        lv_buf_init(&b, cap);
        assert_int_equal(lv_buf_append(&b, "[", 1), 0);
        int rc = lv_json_str_append_lossy(&b, s, sizeof s - 1);
        if (cap >= full.len + 1) {
            assert_int_equal(rc, 0);
            assert_memory_equal(b.data + 1, full.data, full.len);
        } else {
            assert_int_equal(rc, LV_ELIMIT);
            assert_int_equal(b.len, 1);
            assert_string_equal(b.data, "[");
        }
        lv_buf_free(&b);
    }
    lv_buf_free(&full);
}

/* Random short byte strings, biased towards the interesting bytes: the strict form succeeds
 * exactly on UTF-8 and reads back as the same bytes; the lossy form always reads back, and as
 * the same bytes whenever the input was UTF-8. */
static void test_random_read_back(void **state)
{
    (void)state;
    static const unsigned char pool[] = {0, 1, 0x1f, '"', '\\', 'a', 0x7f, 0x80, 0xBF, 0xC2, 0xC3, 0xE0, 0xED,
                                         0xA0, 0xF0, 0xF4, 0x90, 0x8F, 0xFF, 0xA9};
    uint64_t x = 88172645463325252ULL;
    lv_buf_t b;
    lv_buf_init(&b, 4096);
    for (int iter = 0; iter < 50000; iter++) {
        unsigned char in[12];
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t n = x % sizeof in;
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            in[i] = pool[x % sizeof pool];
        }
        int valid = lv_utf8_valid(in, n);
        for (int lossy = 0; lossy < 2; lossy++) {
            lv_buf_reset(&b);
            int rc = lossy ? lv_json_str_append_lossy(&b, (const char *)in, n)
                           : lv_json_str_append(&b, (const char *)in, n);
            if (!lossy && !valid) {
                assert_int_equal(rc, LV_EINVAL);
                continue;
            }
            assert_int_equal(rc, 0);
            json_error_t err;
            json_t *j = json_loadb(b.data, b.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
            assert_non_null(j);
            assert_true(json_is_string(j));
            if (valid) {
                assert_int_equal(json_string_length(j), n);
                assert_memory_equal(json_string_value(j), in, n);
            }
            json_decref(j);
        }
    }
    lv_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escapes_exact),
        cmocka_unit_test(test_strict_rejects_and_keeps_buffer),
        cmocka_unit_test(test_lossy),
        cmocka_unit_test(test_cap_all_or_nothing),
        cmocka_unit_test(test_random_read_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

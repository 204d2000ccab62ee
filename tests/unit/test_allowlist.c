/* test_allowlist.c - tenants' allow-lists (lv_allowlist.h): "" allows everything, entries are
 * trimmed and empty ones skipped, matching is exact except Ollama's ":latest" twin (both ways,
 * never for a tagged name), an empty item passes only an empty list, and entries read back in
 * order, cut to the buffer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "lv_allowlist.h"
#include "lv_common.h"

static void test_empty_allows_all(void **state)
{
    (void)state;
    assert_true(lv_allowlist_has("", "m1"));
    assert_true(lv_allowlist_has(NULL, "m1"));
    assert_true(lv_allowlist_has(" , ,", "m1")); /* no real entry: not a restriction */
    assert_true(lv_allowlist_has("", ""));
    assert_false(lv_allowlist_restricts(""));
    assert_false(lv_allowlist_restricts(NULL));
    assert_false(lv_allowlist_restricts(" ,"));
    assert_true(lv_allowlist_restricts("a"));
}

static void test_exact_and_trimmed(void **state)
{
    (void)state;
    assert_true(lv_allowlist_has("m1,m2", "m2"));
    assert_true(lv_allowlist_has(" m1 , m2 ", "m1"));
    assert_false(lv_allowlist_has("m1,m2", "m3"));
    assert_false(lv_allowlist_has("m1,m2", "m"));   /* no prefix match */
    assert_false(lv_allowlist_has("m1,m2", "m12"));
    assert_false(lv_allowlist_has("m1,m2", "M1"));  /* ids are case-sensitive */
    assert_false(lv_allowlist_has("m1", ""));       /* "" = a backend's first model: not allowed */
    assert_false(lv_allowlist_has("m1", NULL));
}

static void test_latest_twin(void **state)
{
    (void)state;
    assert_true(lv_allowlist_has("llava", "llava:latest"));
    assert_true(lv_allowlist_has("llava:latest", "llava"));
    assert_false(lv_allowlist_has("llava", "llava:7b"));
    assert_false(lv_allowlist_has("llava:7b", "llava:7b:latest")); /* tagged: no twin */
    assert_false(lv_allowlist_has("llava:latest", "llava:latest:latest"));
}

static void test_at(void **state)
{
    (void)state;
    char out[8];
    assert_int_equal(lv_allowlist_at(" a ,, bb,", 0, out, sizeof(out)), 0);
    assert_string_equal(out, "a");
    assert_int_equal(lv_allowlist_at(" a ,, bb,", 1, out, sizeof(out)), 0);
    assert_string_equal(out, "bb");
    assert_int_equal(lv_allowlist_at(" a ,, bb,", 2, out, sizeof(out)), LV_ENOTFOUND);
    assert_int_equal(lv_allowlist_at("", 0, out, sizeof(out)), LV_ENOTFOUND);
    assert_int_equal(lv_allowlist_at("abcdefghijk", 0, out, sizeof(out)), 0);
    assert_string_equal(out, "abcdefg"); /* cut to the buffer */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_allows_all),
        cmocka_unit_test(test_exact_and_trimmed),
        cmocka_unit_test(test_latest_twin),
        cmocka_unit_test(test_at),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

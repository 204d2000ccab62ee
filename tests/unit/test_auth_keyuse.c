/* test_auth_keyuse.c - API keys' last-use table (lv_auth.h lv_auth_keyuse_*): a key is due at its
 * first use, then at most once a period; the latest use wins; written-and-idle entries are dropped;
 * the table stays bounded (least recently used evicted); a batch is capped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "lv_auth.h"

#define P LV_AUTH_KEYUSE_PERIOD_MS

static void test_first_use_at_once_then_once_a_period(void **state)
{
    (void)state;
    lv_auth_keyuse_item_t out[4];
    lv_auth_keyuse_t *t = lv_auth_keyuse_create(16);
    uint64_t now = 1000000;
    assert_int_equal(lv_auth_keyuse_take(t, now, out, 4), 0);
    lv_auth_keyuse_record(t, "k1", 111);
    assert_int_equal(lv_auth_keyuse_take(t, now, out, 4), 1);
    assert_string_equal(out[0].key_id, "k1");
    assert_int_equal(out[0].used_ms, 111);
    /* used twice more within the period: held back, the latest (not the last recorded) kept */
    lv_auth_keyuse_record(t, "k1", 333);
    lv_auth_keyuse_record(t, "k1", 222);
    assert_int_equal(lv_auth_keyuse_take(t, now + 1000, out, 4), 0);
    assert_int_equal(lv_auth_keyuse_take(t, now + P - 1, out, 4), 0);
    assert_int_equal(lv_auth_keyuse_take(t, now + P, out, 4), 1);
    assert_int_equal(out[0].used_ms, 333);
    /* idle for a period after its write: dropped; its next use is due at once again */
    assert_int_equal(lv_auth_keyuse_count(t), 1);
    assert_int_equal(lv_auth_keyuse_take(t, now + 2 * P, out, 4), 0);
    assert_int_equal(lv_auth_keyuse_count(t), 0);
    lv_auth_keyuse_record(t, "k1", 444);
    assert_int_equal(lv_auth_keyuse_take(t, now + 2 * P + 1, out, 4), 1);
    lv_auth_keyuse_free(t);
}

static void test_bounded_and_batch_capped(void **state)
{
    (void)state;
    lv_auth_keyuse_item_t out[3];
    char id[16];
    lv_auth_keyuse_t *t = lv_auth_keyuse_create(4);
    for (int i = 0; i < 10; i++) {
        snprintf(id, sizeof(id), "k%d", i);
        lv_auth_keyuse_record(t, id, 100 + i);
    }
    assert_int_equal(lv_auth_keyuse_count(t), 4); /* k6..k9: the least recently used went first */
    assert_int_equal(lv_auth_keyuse_take(t, 5, out, 3), 3);
    assert_string_equal(out[0].key_id, "k6");
    assert_int_equal(lv_auth_keyuse_take(t, 5, out, 3), 1); /* the rest at the next call */
    assert_string_equal(out[0].key_id, "k9");
    lv_auth_keyuse_free(t);
    lv_auth_keyuse_free(NULL);
    lv_auth_keyuse_record(NULL, "k", 1);
    assert_int_equal(lv_auth_keyuse_take(NULL, 0, out, 3), 0);
}

static void test_bad_ids_ignored(void **state)
{
    (void)state;
    lv_auth_keyuse_item_t out[2];
    char longid[100];
    memset(longid, 'a', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    lv_auth_keyuse_t *t = lv_auth_keyuse_create(4);
    lv_auth_keyuse_record(t, "", 1);
    lv_auth_keyuse_record(t, NULL, 1);
    lv_auth_keyuse_record(t, longid, 1); /* longer than any key id: not one */
    assert_int_equal(lv_auth_keyuse_count(t), 0);
    assert_int_equal(lv_auth_keyuse_take(t, 0, out, 2), 0);
    lv_auth_keyuse_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_use_at_once_then_once_a_period),
        cmocka_unit_test(test_bounded_and_batch_capped),
        cmocka_unit_test(test_bad_ids_ignored),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_quota_key.c - the cluster's quota keys (lv_quota_redis_key, lv_quota_window): the shape
 * every frontend must agree on, the windows at their edges, the caps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "lv_common.h"
#include "lv_quota.h"

static void keys(void **state)
{
    (void)state;
    char k[128];
    assert_int_equal(lv_quota_redis_key(k, sizeof(k), false, "u:42", LV_QUOTA_FPM, 28333333), 23);
    assert_string_equal(k, "lv:qt:u:42:fpm:28333333");
    assert_true(lv_quota_redis_key(k, sizeof(k), true, "acme", LV_QUOTA_ANSWERS, 19700) > 0);
    assert_string_equal(k, "lv:qt:t:acme:ans:19700");
    assert_true(lv_quota_redis_key(k, sizeof(k), false, "u:7", LV_QUOTA_TOKENS, 0) > 0);
    assert_string_equal(k, "lv:qt:u:7:tok:0");
    /* a user and a tenant of the same name never share a key */
    char k2[128];
    lv_quota_redis_key(k, sizeof(k), false, "x", LV_QUOTA_FPM, 1);
    lv_quota_redis_key(k2, sizeof(k2), true, "x", LV_QUOTA_FPM, 1);
    assert_string_not_equal(k, k2);
}

static void refusals(void **state)
{
    (void)state;
    char k[128];
    assert_int_equal(lv_quota_redis_key(k, sizeof(k), false, "", LV_QUOTA_FPM, 1), LV_EINVAL);
    assert_int_equal(lv_quota_redis_key(k, sizeof(k), false, NULL, LV_QUOTA_FPM, 1), LV_EINVAL);
    assert_int_equal(lv_quota_redis_key(k, sizeof(k), false, "u:1", -1, 1), LV_EINVAL);
    assert_int_equal(lv_quota_redis_key(k, sizeof(k), false, "u:1", LV_QUOTA_KINDS, 1), LV_EINVAL);
    assert_int_equal(lv_quota_redis_key(k, sizeof(k), false, "u:1", LV_QUOTA_FPM, -1), LV_EINVAL);
    char longid[LV_PRINCIPAL_KEY_MAX + 1];
    memset(longid, 'a', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    assert_int_equal(lv_quota_redis_key(k, sizeof(k), false, longid, LV_QUOTA_FPM, 1), LV_EINVAL);
    longid[LV_PRINCIPAL_KEY_MAX - 1] = '\0'; /* the longest a principal key is */
    char big[sizeof(LV_QUOTA_KEY_PREFIX) + LV_PRINCIPAL_KEY_MAX + 48];
    assert_true(lv_quota_redis_key(big, sizeof(big), true, longid, LV_QUOTA_TOKENS, INT64_MAX) > 0);
    /* too small a buffer: refused, never overrun */
    char small[12];
    assert_int_equal(lv_quota_redis_key(small, sizeof(small), false, "u:42", LV_QUOTA_FPM, 5), LV_ELIMIT);
    assert_int_equal(strlen(small), sizeof(small) - 1);
}

static void windows(void **state)
{
    (void)state;
    assert_true(lv_quota_window(LV_QUOTA_FPM, 0) == 0);
    assert_true(lv_quota_window(LV_QUOTA_FPM, 59999) == 0);
    assert_true(lv_quota_window(LV_QUOTA_FPM, 60000) == 1);
    /* 2024-03-01T00:00:00Z = 1709251200000 ms: day 19783; one ms before is the day before */
    assert_true(lv_quota_window(LV_QUOTA_ANSWERS, 1709251200000) == 19783);
    assert_true(lv_quota_window(LV_QUOTA_TOKENS, 1709251199999) == 19782);
    assert_true(lv_quota_window(LV_QUOTA_FPM, 1709251200000) == 28487520);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(keys),
        cmocka_unit_test(refusals),
        cmocka_unit_test(windows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_auth.c - the per-account password failure table (lv_auth.h lv_auth_locks_*): 5 failures a
 * minute lock an account for a minute, per name, whatever address tries; the table stays bounded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "lv_auth.h"

static void test_five_failures_lock_for_a_minute(void **state)
{
    (void)state;
    lv_auth_locks_t *l = lv_auth_locks_create(16);
    assert_non_null(l);
    uint64_t t = 1000000;
    for (int i = 0; i < LV_AUTH_ACCOUNT_FAILS_PER_MIN - 1; i++) {
        lv_auth_locks_failed(l, "alice", t + (uint64_t)i * 1000);
        assert_false(lv_auth_locks_locked(l, "alice", t + (uint64_t)i * 1000));
    }
    lv_auth_locks_failed(l, "alice", t + 10000);
    assert_true(lv_auth_locks_locked(l, "alice", t + 10000));
    assert_false(lv_auth_locks_locked(l, "bob", t + 10000)); /* per account */
    assert_true(lv_auth_locks_locked(l, "alice", t + 10000 + LV_AUTH_ACCOUNT_LOCK_MS - 1));
    assert_false(lv_auth_locks_locked(l, "alice", t + 10000 + LV_AUTH_ACCOUNT_LOCK_MS));
    lv_auth_locks_free(l);
}

static void test_failures_spread_over_minutes_do_not_lock(void **state)
{
    (void)state;
    lv_auth_locks_t *l = lv_auth_locks_create(16);
    uint64_t t = 5000000;
    for (int i = 0; i < 20; i++) { /* one every 20 s: at most 3 in any minute-long window */
        lv_auth_locks_failed(l, "carol", t + (uint64_t)i * 20000);
        assert_false(lv_auth_locks_locked(l, "carol", t + (uint64_t)i * 20000));
    }
    lv_auth_locks_free(l);
}

static void test_bounded_with_eviction_of_the_oldest(void **state)
{
    (void)state;
    lv_auth_locks_t *l = lv_auth_locks_create(4);
    char name[32];
    uint64_t t = 100;
    for (int i = 0; i < LV_AUTH_ACCOUNT_FAILS_PER_MIN; i++)
        lv_auth_locks_failed(l, "victim", t);
    assert_true(lv_auth_locks_locked(l, "victim", t));
    for (int i = 0; i < 3; i++) { /* room for 3 more: the locked one stays */
        snprintf(name, sizeof(name), "n%d", i);
        lv_auth_locks_failed(l, name, t + 1);
    }
    assert_true(lv_auth_locks_locked(l, "victim", t + 1));
    for (int i = 3; i < 1000; i++) { /* many more names: the table keeps 4, the oldest go */
        snprintf(name, sizeof(name), "n%d", i);
        lv_auth_locks_failed(l, name, t + 2);
    }
    assert_false(lv_auth_locks_locked(l, "victim", t + 2));
    lv_auth_locks_failed(l, "n999", t + 2); /* the newest is still counted */
    lv_auth_locks_free(l);
    lv_auth_locks_free(NULL);
    assert_false(lv_auth_locks_locked(NULL, "x", 0));
}

static void test_overlong_names_are_cut_not_overflowed(void **state)
{
    (void)state;
    lv_auth_locks_t *l = lv_auth_locks_create(8);
    char longname[300];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    for (int i = 0; i < LV_AUTH_ACCOUNT_FAILS_PER_MIN; i++)
        lv_auth_locks_failed(l, longname, 10);
    assert_true(lv_auth_locks_locked(l, longname, 10));
    lv_auth_locks_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_five_failures_lock_for_a_minute),
        cmocka_unit_test(test_failures_spread_over_minutes_do_not_lock),
        cmocka_unit_test(test_bounded_with_eviction_of_the_oldest),
        cmocka_unit_test(test_overlong_names_are_cut_not_overflowed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

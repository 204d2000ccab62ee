/* test_breaker.c - circuit breaker: tripping (connect, consecutive, rate), cool-down doubling and
 * cap, half-open probes, rejoining, holds (Retry-After), state names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "lv_breaker.h"

static void connect_failure_opens_at_once(void **state)
{
    (void)state;
    lv_breaker_t b;
    lv_breaker_init(&b, NULL, 1000);
    assert_int_equal(lv_breaker_state(&b, 1000), LV_BREAKER_CLOSED);
    assert_true(lv_breaker_allow(&b, 1000));
    lv_breaker_on_failure(&b, 1010, LV_BREAKER_FAIL_CONNECT);
    assert_int_equal(lv_breaker_state(&b, 1010), LV_BREAKER_OPEN);
    assert_false(lv_breaker_allow(&b, 1011));
    assert_false(lv_breaker_would_allow(&b, 1509));
    assert_int_equal(lv_breaker_retry_in_ms(&b, 1011), 499);
    /* cool-down 500 ms: half-open, one probe */
    assert_int_equal(lv_breaker_state(&b, 1510), LV_BREAKER_HALF_OPEN);
    assert_true(lv_breaker_would_allow(&b, 1510));
    assert_true(lv_breaker_allow(&b, 1510));
    assert_false(lv_breaker_allow(&b, 1511)); /* the probe is out */
    assert_int_equal(lv_breaker_retry_in_ms(&b, 1511), UINT64_MAX);
    lv_breaker_on_success(&b, 1600);
    assert_int_equal(lv_breaker_state(&b, 1600), LV_BREAKER_CLOSED);
    assert_true(lv_breaker_allow(&b, 1601));
    assert_int_equal(b.trips_total, 1);
    assert_int_equal(b.rejected_total, 2);
}

static void consecutive_failures_open(void **state)
{
    (void)state;
    lv_breaker_t b;
    lv_breaker_init(&b, NULL, 0);
    for (int i = 0; i < 4; i++) {
        assert_true(lv_breaker_allow(&b, (uint64_t)i));
        lv_breaker_on_failure(&b, (uint64_t)i, i % 2 ? LV_BREAKER_FAIL_TIMEOUT : LV_BREAKER_FAIL_ERROR);
    }
    assert_int_equal(lv_breaker_state(&b, 4), LV_BREAKER_CLOSED);
    lv_breaker_on_success(&b, 5); /* breaks the run */
    for (int i = 0; i < 4; i++)
        lv_breaker_on_failure(&b, 6, LV_BREAKER_FAIL_ERROR);
    assert_int_equal(lv_breaker_state(&b, 6), LV_BREAKER_CLOSED);
    lv_breaker_on_failure(&b, 7, LV_BREAKER_FAIL_ERROR); /* fifth in a row */
    assert_int_equal(lv_breaker_state(&b, 7), LV_BREAKER_OPEN);

    /* connect_opens off: a connect failure is an ordinary failure */
    lv_breaker_config_t cfg;
    lv_breaker_config_default(&cfg);
    cfg.connect_opens = false;
    lv_breaker_init(&b, &cfg, 0);
    lv_breaker_on_failure(&b, 1, LV_BREAKER_FAIL_CONNECT);
    assert_int_equal(lv_breaker_state(&b, 1), LV_BREAKER_CLOSED);
}

static void error_rate_opens(void **state)
{
    (void)state;
    lv_breaker_config_t cfg;
    lv_breaker_config_default(&cfg);
    cfg.window = 10;
    cfg.rate_pct = 40;
    lv_breaker_t b;
    lv_breaker_init(&b, &cfg, 0);
    /* fail, ok, ok, fail, ok, ok, ... never 5 in a row; trips once the window is full and 4/10 failed */
    int tripped_at = -1;
    for (int i = 0; i < 30 && tripped_at < 0; i++) {
        if (i % 3 == 0 || i == 7)
            lv_breaker_on_failure(&b, (uint64_t)i, LV_BREAKER_FAIL_ERROR);
        else
            lv_breaker_on_success(&b, (uint64_t)i);
        if (lv_breaker_state(&b, (uint64_t)i) == LV_BREAKER_OPEN)
            tripped_at = i;
    }
    /* failures at 0, 3, 6, 7, 9: the window is full at i = 9 with 5 failures */
    assert_int_equal(tripped_at, 9);

    /* a steady 30% failure rate under a 40% threshold never trips */
    lv_breaker_init(&b, &cfg, 0);
    for (int i = 0; i < 1000; i++) {
        if (i % 10 < 3)
            lv_breaker_on_failure(&b, (uint64_t)i, LV_BREAKER_FAIL_ERROR);
        else
            lv_breaker_on_success(&b, (uint64_t)i);
        assert_int_equal(lv_breaker_state(&b, (uint64_t)i), LV_BREAKER_CLOSED);
    }
    /* window 64 (the largest) works too */
    cfg.window = 200; /* clamped to 64 */
    cfg.rate_pct = 100;
    cfg.consecutive_failures = 1000;
    lv_breaker_init(&b, &cfg, 0);
    assert_int_equal(b.cfg.window, 64);
    for (int i = 0; i < 63; i++)
        lv_breaker_on_failure(&b, 0, LV_BREAKER_FAIL_ERROR);
    assert_int_equal(lv_breaker_state(&b, 0), LV_BREAKER_CLOSED);
    lv_breaker_on_failure(&b, 0, LV_BREAKER_FAIL_ERROR);
    assert_int_equal(lv_breaker_state(&b, 0), LV_BREAKER_OPEN);
}

static void cooldown_doubles_to_cap(void **state)
{
    (void)state;
    lv_breaker_t b;
    lv_breaker_init(&b, NULL, 0);
    uint64_t now = 0;
    lv_breaker_on_failure(&b, now, LV_BREAKER_FAIL_CONNECT);
    uint32_t expect[] = {500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000};
    for (size_t i = 0; i < sizeof(expect) / sizeof(expect[0]); i++) {
        assert_int_equal(b.cooldown_ms, expect[i]);
        assert_false(lv_breaker_allow(&b, now + expect[i] - 1));
        now += expect[i];
        assert_true(lv_breaker_allow(&b, now)); /* probe */
        assert_int_equal(lv_breaker_state(&b, now), LV_BREAKER_HALF_OPEN);
        lv_breaker_on_failure(&b, now + 5, LV_BREAKER_FAIL_CONNECT); /* still dead: reopens */
        now += 5;
        assert_int_equal(lv_breaker_state(&b, now), LV_BREAKER_OPEN);
    }
    /* it comes back: the next probe succeeds and the cool-down starts over */
    now += 30000;
    assert_true(lv_breaker_allow(&b, now));
    lv_breaker_on_success(&b, now + 100);
    assert_int_equal(lv_breaker_state(&b, now + 100), LV_BREAKER_CLOSED);
    lv_breaker_on_failure(&b, now + 200, LV_BREAKER_FAIL_CONNECT);
    assert_int_equal(b.cooldown_ms, 500);
}

static void half_open_probes(void **state)
{
    (void)state;
    lv_breaker_config_t cfg;
    lv_breaker_config_default(&cfg);
    cfg.probe_count = 3;
    lv_breaker_t b;
    lv_breaker_init(&b, &cfg, 0);
    lv_breaker_on_failure(&b, 0, LV_BREAKER_FAIL_CONNECT);
    for (int i = 0; i < 3; i++)
        assert_true(lv_breaker_allow(&b, 500));
    assert_false(lv_breaker_allow(&b, 500));
    lv_breaker_on_cancel(&b, 501); /* one probe never went: its slot comes back */
    assert_true(lv_breaker_allow(&b, 502));
    assert_false(lv_breaker_allow(&b, 502));
    lv_breaker_on_failure(&b, 600, LV_BREAKER_FAIL_TIMEOUT); /* one probe fails: open again */
    assert_int_equal(lv_breaker_state(&b, 600), LV_BREAKER_OPEN);
    assert_int_equal(b.cooldown_ms, 1000);
    /* the other probes' late answers do not change an open breaker */
    lv_breaker_on_success(&b, 700);
    lv_breaker_on_failure(&b, 701, LV_BREAKER_FAIL_ERROR);
    assert_int_equal(lv_breaker_state(&b, 701), LV_BREAKER_OPEN);
    assert_int_equal(b.open_until_ms, 1600);
    /* a passing health check lets it probe before the cool-down ends */
    lv_breaker_health_ok(&b, 800);
    assert_int_equal(lv_breaker_state(&b, 800), LV_BREAKER_HALF_OPEN);
    assert_true(lv_breaker_allow(&b, 800));
    lv_breaker_on_success(&b, 900);
    assert_int_equal(lv_breaker_state(&b, 900), LV_BREAKER_CLOSED);
    lv_breaker_health_ok(&b, 901); /* no effect when closed */
    assert_int_equal(lv_breaker_state(&b, 901), LV_BREAKER_CLOSED);
}

/* A dead backend is out within 1 s and back soon after it recovers, in a simulated stream of
 * requests every 10 ms. */
static void dead_backend_leaves_and_rejoins(void **state)
{
    (void)state;
    lv_breaker_t b;
    lv_breaker_init(&b, NULL, 0);
    uint64_t dead_from = 5000, alive_from = 20000;
    uint64_t out_at = 0, back_at = 0;
    int sent_while_dead = 0;
    for (uint64_t t = 0; t < 40000; t += 10) {
        if (!lv_breaker_allow(&b, t))
            continue;
        int dead = t >= dead_from && t < alive_from;
        if (dead) {
            sent_while_dead++;
            lv_breaker_on_failure(&b, t + 1, LV_BREAKER_FAIL_CONNECT);
            if (!out_at && lv_breaker_state(&b, t + 1) == LV_BREAKER_OPEN)
                out_at = t + 1;
        } else {
            lv_breaker_on_success(&b, t + 50);
            if (t >= alive_from && !back_at && lv_breaker_state(&b, t + 50) == LV_BREAKER_CLOSED)
                back_at = t + 50;
        }
    }
    print_message("dead at %llu ms: out at %llu ms; alive at %llu ms: back at %llu ms; %d requests sent "
                  "while dead\n",
                  (unsigned long long)dead_from, (unsigned long long)out_at, (unsigned long long)alive_from,
                  (unsigned long long)back_at, sent_while_dead);
    assert_true(out_at >= dead_from && out_at - dead_from <= 1000);
    /* 15 s dead: cool-downs 0.5+1+2+4+8 s, so the probe after the 8 s one finds it back */
    assert_true(back_at >= alive_from && back_at - alive_from <= 16000);
    assert_true(sent_while_dead <= 8);
}

/* A hold (Retry-After) lets nothing through until it ends, in any state, and changes no state. */
static void hold_until(void **state)
{
    (void)state;
    lv_breaker_t b;
    lv_breaker_init(&b, NULL, 1000);
    assert_int_equal(lv_breaker_held_ms(&b, 1000), 0);
    lv_breaker_hold_until(&b, 4000); /* "Retry-After: 3" at 1000 */
    assert_int_equal(b.holds_total, 1);
    assert_int_equal(lv_breaker_held_ms(&b, 1000), 3000);
    assert_int_equal(lv_breaker_retry_in_ms(&b, 1000), 3000);
    assert_int_equal(lv_breaker_state(&b, 1000), LV_BREAKER_CLOSED); /* not a state */
    for (uint64_t t = 1000; t < 4000; t += 250) {
        assert_false(lv_breaker_would_allow(&b, t));
        assert_false(lv_breaker_allow(&b, t));
    }
    assert_int_equal(b.rejected_total, 12);
    assert_false(lv_breaker_allow(&b, 3999));
    assert_int_equal(lv_breaker_held_ms(&b, 3999), 1);
    /* a shorter wait from a late answer changes nothing; a longer one extends it */
    lv_breaker_hold_until(&b, 3500);
    assert_int_equal(b.holds_total, 1);
    assert_int_equal(lv_breaker_held_ms(&b, 3000), 1000);
    /* over: requests flow, nothing else changed */
    assert_true(lv_breaker_would_allow(&b, 4000));
    assert_true(lv_breaker_allow(&b, 4000));
    assert_int_equal(lv_breaker_retry_in_ms(&b, 4000), 0);
    assert_int_equal(lv_breaker_held_ms(&b, 4000), 0);
    assert_int_equal(lv_breaker_state(&b, 4000), LV_BREAKER_CLOSED);
    assert_int_equal(b.trips_total, 0);

    /* OPEN with a longer hold: the cool-down ends, the hold still rules; no probe is taken */
    lv_breaker_on_failure(&b, 5000, LV_BREAKER_FAIL_CONNECT); /* open until 5500 */
    lv_breaker_hold_until(&b, 7000);
    assert_int_equal(b.holds_total, 2);
    assert_int_equal(lv_breaker_retry_in_ms(&b, 5000), 2000);
    assert_int_equal(lv_breaker_state(&b, 6000), LV_BREAKER_HALF_OPEN);
    assert_false(lv_breaker_would_allow(&b, 6000));
    assert_false(lv_breaker_allow(&b, 6000));
    assert_int_equal(b.probes_out, 0);
    assert_true(lv_breaker_allow(&b, 7000)); /* the probe, once the hold is over */
    assert_false(lv_breaker_allow(&b, 7001));
    lv_breaker_on_success(&b, 7100);
    assert_int_equal(lv_breaker_state(&b, 7100), LV_BREAKER_CLOSED);

    /* OPEN with a shorter hold: the cool-down rules */
    lv_breaker_on_failure(&b, 8000, LV_BREAKER_FAIL_CONNECT); /* open until 8500 */
    lv_breaker_hold_until(&b, 8200);
    assert_int_equal(lv_breaker_retry_in_ms(&b, 8000), 500);
    assert_false(lv_breaker_would_allow(&b, 8300));
    assert_true(lv_breaker_would_allow(&b, 8500));

    /* a health check that passes does not lift a hold */
    lv_breaker_init(&b, NULL, 0);
    lv_breaker_hold_until(&b, 1000);
    lv_breaker_health_ok(&b, 10);
    assert_false(lv_breaker_would_allow(&b, 10));
    /* HALF_OPEN waiting for its probe and held: the probe wait is the longer one */
    lv_breaker_on_failure(&b, 1000, LV_BREAKER_FAIL_CONNECT);
    assert_true(lv_breaker_allow(&b, 1500)); /* the probe goes */
    lv_breaker_hold_until(&b, 2000);
    assert_int_equal(lv_breaker_retry_in_ms(&b, 1600), UINT64_MAX);
}

static void names(void **state)
{
    (void)state;
    assert_string_equal(lv_breaker_state_name(LV_BREAKER_CLOSED), "closed");
    assert_string_equal(lv_breaker_state_name(LV_BREAKER_OPEN), "open");
    assert_string_equal(lv_breaker_state_name(LV_BREAKER_HALF_OPEN), "half_open");
    lv_breaker_config_t cfg = {0};
    lv_breaker_t b;
    lv_breaker_init(&b, &cfg, 0); /* all zero: clamped to something usable */
    assert_int_equal(b.cfg.window, 1);
    assert_int_equal(b.cfg.probe_count, 1);
    assert_int_equal(b.cfg.consecutive_failures, 1);
    assert_int_equal(b.cfg.cooldown_ms, 1);
    lv_breaker_on_failure(&b, 0, LV_BREAKER_FAIL_ERROR);
    assert_int_equal(lv_breaker_state(&b, 0), LV_BREAKER_OPEN);
    assert_int_equal(lv_breaker_state(&b, 1), LV_BREAKER_HALF_OPEN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(connect_failure_opens_at_once),
        cmocka_unit_test(consecutive_failures_open),
        cmocka_unit_test(error_rate_opens),
        cmocka_unit_test(cooldown_doubles_to_cap),
        cmocka_unit_test(half_open_probes),
        cmocka_unit_test(dead_backend_leaves_and_rejoins),
        cmocka_unit_test(hold_until),
        cmocka_unit_test(names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

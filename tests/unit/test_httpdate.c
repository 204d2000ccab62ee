/* test_httpdate.c - HTTP-date in its three forms and Retry-After (delta-seconds, dates against
 * the caller's clock, the cap, malformed values). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "lv_common.h"
#include "lv_httpdate.h"

/* 1994-11-06 08:49:37 UTC, RFC 9110's example */
#define EXAMPLE_S INT64_C(784111777)

static int date(const char *s, int64_t *out)
{
    return lv_http_date_parse(s, strlen(s), out);
}

static int retry_after(const char *s, int64_t now_s, uint64_t max_ms, uint64_t *out)
{
    return lv_retry_after_parse(s, strlen(s), now_s, max_ms, out);
}

static void date_three_forms(void **state)
{
    (void)state;
    int64_t t = 0;
    assert_int_equal(date("Sun, 06 Nov 1994 08:49:37 GMT", &t), 0);
    assert_int_equal(t, EXAMPLE_S);
    t = 0;
    assert_int_equal(date("Sunday, 06-Nov-94 08:49:37 GMT", &t), 0);
    assert_int_equal(t, EXAMPLE_S);
    t = 0;
    assert_int_equal(date("Sun Nov  6 08:49:37 1994", &t), 0);
    assert_int_equal(t, EXAMPLE_S);
    /* asctime with a two-digit day */
    assert_int_equal(date("Thu Nov 16 08:49:37 1994", &t), 0);
    assert_int_equal(t, EXAMPLE_S + 10 * 86400);
    /* names in any case, blanks around the value */
    assert_int_equal(date(" \tsun, 06 NOV 1994 08:49:37 gmt\t ", &t), 0);
    assert_int_equal(t, EXAMPLE_S);
    /* the epoch, a leap day, the end of a year, a leap second */
    assert_int_equal(date("Thu, 01 Jan 1970 00:00:00 GMT", &t), 0);
    assert_int_equal(t, 0);
    assert_int_equal(date("Tue, 29 Feb 2000 12:00:00 GMT", &t), 0);
    assert_int_equal(t, INT64_C(951825600));
    assert_int_equal(date("Fri, 31 Dec 1999 23:59:59 GMT", &t), 0);
    assert_int_equal(t, INT64_C(946684799));
    assert_int_equal(date("Sat, 31 Dec 2016 23:59:60 GMT", &t), 0);
    assert_int_equal(t, INT64_C(1483228800));
    /* before 1970 and far ahead */
    assert_int_equal(date("Mon, 01 Jan 1900 00:00:00 GMT", &t), 0);
    assert_int_equal(t, INT64_C(-2208988800));
    assert_int_equal(date("Fri, 31 Dec 9999 23:59:59 GMT", &t), 0);
    assert_int_equal(t, INT64_C(253402300799));
    /* two-digit years: 70..99 are 19xx, 00..69 20xx */
    assert_int_equal(date("Monday, 06-Oct-25 10:03:40 GMT", &t), 0);
    assert_int_equal(t, INT64_C(1759745020));
    assert_int_equal(date("Thursday, 01-Jan-70 00:00:00 GMT", &t), 0);
    assert_int_equal(t, 0);
    /* the weekday is not checked against the date */
    assert_int_equal(date("Wed, 06 Nov 1994 08:49:37 GMT", &t), 0);
    assert_int_equal(t, EXAMPLE_S);
}

static void date_malformed(void **state)
{
    (void)state;
    static const char *bad[] = {
        "",
        "   ",
        "Sun, 06 Nov 1994 08:49:37",        /* no GMT */
        "Sun, 06 Nov 1994 08:49:37 UTC",    /* only GMT */
        "Sun, 06 Nov 1994 08:49:37 GMT x",  /* trailing bytes */
        "Sun, 6 Nov 1994 08:49:37 GMT",     /* 2DIGIT day */
        "Sun,  06 Nov 1994 08:49:37 GMT",   /* one SP */
        "Sun, 06 Nov 94 08:49:37 GMT",      /* 4DIGIT year */
        "Sun, 06 Foo 1994 08:49:37 GMT",    /* month */
        "Sunday, 06 Nov 1994 08:49:37 GMT", /* long name in the IMF form */
        "Sun, 06-Nov-94 08:49:37 GMT",      /* short name in the RFC 850 form */
        "Sun, 31 Nov 1994 08:49:37 GMT",    /* no such day */
        "Sun, 29 Feb 1900 08:49:37 GMT",    /* 1900 is no leap year */
        "Sun, 00 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:00 GMT",
        "Sun, 06 Nov 1994 08:49:61 GMT",
        "Sun, 06 Nov 1899 08:49:37 GMT", /* before 1900 */
        "Sun, 06 Nov 1994 8:49:37 GMT",
        "Sun, 06 Nov 1994 08:49 GMT",
        "Sun Nov 6 08:49:37 1994", /* asctime pads a one-digit day with SP */
        "Sun Nov  6 08:49:37 94",
        "Sun Nov  6 08:49:37 1994 GMT",
        "Funday, 06-Nov-94 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 GM",
        "Sun, 06 Nov 1994 08:49:37 GMT\r\n", /* CR LF are not blanks */
        "1994-11-06T08:49:37Z",
        "Sun",
        "Sun,",
    };
    for (size_t i = 0; i < LV_ARRAY_LEN(bad); i++) {
        int64_t t = 42;
        if (date(bad[i], &t) != LV_EINVAL)
            fail_msg("accepted \"%s\"", bad[i]);
        assert_int_equal(t, 42);
    }
    int64_t t;
    assert_int_equal(lv_http_date_parse(NULL, 0, &t), LV_EINVAL);
    assert_int_equal(lv_http_date_parse("Sun, 06 Nov 1994 08:49:37 GMT", 29, NULL), LV_EINVAL);
    /* the length, not a NUL, ends the value */
    assert_int_equal(lv_http_date_parse("Sun, 06 Nov 1994 08:49:37 GMTxyz", 29, &t), 0);
    assert_int_equal(t, EXAMPLE_S);
    assert_int_equal(lv_http_date_parse("Sun, 06 Nov 1994 08:49:37 GMT", 28, &t), LV_EINVAL);
}

static void retry_after_seconds(void **state)
{
    (void)state;
    uint64_t w = 7;
    assert_int_equal(retry_after("3", 0, 60000, &w), 0);
    assert_int_equal(w, 3000);
    assert_int_equal(retry_after(" 120\t", 0, 600000, &w), 0);
    assert_int_equal(w, 120000);
    assert_int_equal(retry_after("0", 0, 60000, &w), 0);
    assert_int_equal(w, 0);
    assert_int_equal(retry_after("007", 0, 60000, &w), 0);
    assert_int_equal(w, 7000);
    /* the cap, exactly and past it; numbers of any length saturate */
    assert_int_equal(retry_after("60", 0, 60000, &w), 0);
    assert_int_equal(w, 60000);
    assert_int_equal(retry_after("61", 0, 60000, &w), 0);
    assert_int_equal(w, 60000);
    assert_int_equal(retry_after("86400", 0, 60000, &w), 0);
    assert_int_equal(w, 60000);
    assert_int_equal(retry_after("99999999999999999999999999999999999999", 0, 60000, &w), 0);
    assert_int_equal(w, 60000);
    assert_int_equal(retry_after("18446744073709551616", 0, UINT64_MAX, &w), 0);
    assert_int_equal(w, UINT64_MAX);
    assert_int_equal(retry_after("2", 0, 1500, &w), 0); /* a cap that is not whole seconds */
    assert_int_equal(w, 1500);
    assert_int_equal(retry_after("1", 0, 1500, &w), 0);
    assert_int_equal(w, 1000);
}

static void retry_after_date(void **state)
{
    (void)state;
    uint64_t w = 7;
    /* against the caller's clock: 7 s ahead, passed, far ahead */
    assert_int_equal(retry_after("Sun, 06 Nov 1994 08:49:37 GMT", EXAMPLE_S - 7, 60000, &w), 0);
    assert_int_equal(w, 7000);
    assert_int_equal(retry_after("Sun, 06 Nov 1994 08:49:37 GMT", EXAMPLE_S, 60000, &w), 0);
    assert_int_equal(w, 0);
    assert_int_equal(retry_after("Sun, 06 Nov 1994 08:49:37 GMT", EXAMPLE_S + 3600, 60000, &w), 0);
    assert_int_equal(w, 0);
    assert_int_equal(retry_after("Fri, 31 Dec 9999 23:59:59 GMT", EXAMPLE_S, 60000, &w), 0);
    assert_int_equal(w, 60000);
    assert_int_equal(retry_after("Sunday, 06-Nov-94 08:49:47 GMT", EXAMPLE_S, 60000, &w), 0);
    assert_int_equal(w, 10000);
    assert_int_equal(retry_after("Sun Nov  6 08:49:39 1994", EXAMPLE_S, 60000, &w), 0);
    assert_int_equal(w, 2000);
    /* extreme clocks do not overflow */
    assert_int_equal(retry_after("Fri, 31 Dec 9999 23:59:59 GMT", INT64_MIN, UINT64_MAX, &w), 0);
    assert_int_equal(w, UINT64_MAX);
    assert_int_equal(retry_after("Mon, 01 Jan 1900 00:00:00 GMT", INT64_MAX, UINT64_MAX, &w), 0);
    assert_int_equal(w, 0);
}

static void retry_after_malformed(void **state)
{
    (void)state;
    static const char *bad[] = {"",
                                " ",
                                "1.5",
                                "-1",
                                "+3",
                                "3 s",
                                "3s",
                                "soon",
                                "0x10",
                                "1 2",
                                "Sun, 06 Nov 1994 08:49:37",
                                "3\r\n",
                                "\xC2\xA0"
                                "3"};
    for (size_t i = 0; i < LV_ARRAY_LEN(bad); i++) {
        uint64_t w = 42;
        if (retry_after(bad[i], 0, 60000, &w) != LV_EINVAL)
            fail_msg("accepted \"%s\"", bad[i]);
        assert_int_equal(w, 42); /* untouched */
    }
    uint64_t w;
    assert_int_equal(lv_retry_after_parse(NULL, 0, 0, 60000, &w), LV_EINVAL);
    assert_int_equal(lv_retry_after_parse("3", 1, 0, 60000, NULL), LV_EINVAL);
    /* the length ends the value */
    assert_int_equal(lv_retry_after_parse("12x", 2, 0, 60000, &w), 0);
    assert_int_equal(w, 12000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(date_three_forms),      cmocka_unit_test(date_malformed),
        cmocka_unit_test(retry_after_seconds),   cmocka_unit_test(retry_after_date),
        cmocka_unit_test(retry_after_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_utf8.c - the one UTF-8 check: every boundary of RFC 3629's table, and streams split at
 * every byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "lv_common.h"
#include "lv_utf8.h"

static int valid_s(const char *s)
{
    return lv_utf8_valid(s, strlen(s));
}

static void test_valid(void **state)
{
    (void)state;
    assert_int_equal(lv_utf8_valid(NULL, 0), 1);
    assert_int_equal(valid_s(""), 1);
    assert_int_equal(valid_s("plain ascii, long enough for the 8-byte path"), 1);
    assert_int_equal(lv_utf8_valid("a\0b", 3), 1); /* NUL is a valid code point */
    assert_int_equal(valid_s("\x7f"), 1);
    assert_int_equal(valid_s("\xc2\x80"), 1);         /* U+0080 */
    assert_int_equal(valid_s("\xdf\xbf"), 1);         /* U+07FF */
    assert_int_equal(valid_s("\xe0\xa0\x80"), 1);     /* U+0800 */
    assert_int_equal(valid_s("\xed\x9f\xbf"), 1);     /* U+D7FF */
    assert_int_equal(valid_s("\xee\x80\x80"), 1);     /* U+E000 */
    assert_int_equal(valid_s("\xef\xbf\xbf"), 1);     /* U+FFFF */
    assert_int_equal(valid_s("\xf0\x90\x80\x80"), 1); /* U+10000 */
    assert_int_equal(valid_s("\xf4\x8f\xbf\xbf"), 1); /* U+10FFFF */
    assert_int_equal(valid_s("h\xc3\xa9llo w\xc3\xb6rld \xe2\x82\xac \xf0\x9f\x98\x80 ascii tail"), 1);
}

static void test_invalid(void **state)
{
    (void)state;
    static const char *bad[] = {
        "\x80", /* lone continuation */
        "\xbf",
        "\xc0\x80",     /* overlong NUL */
        "\xc1\xbf",     /* overlong */
        "\xe0\x80\x80", /* overlong 3-byte */
        "\xe0\x9f\xbf",
        "\xf0\x80\x80\x80", /* overlong 4-byte */
        "\xf0\x8f\xbf\xbf",
        "\xed\xa0\x80",     /* U+D800, a surrogate */
        "\xed\xbf\xbf",     /* U+DFFF */
        "\xf4\x90\x80\x80", /* U+110000 */
        "\xf5\x80\x80\x80",
        "\xff",
        "\xfe",
        "\xc2", /* truncated */
        "\xe2\x82",
        "\xf0\x9f\x98",
        "\xc2\x41", /* lead followed by ASCII */
        "\xe2\x82\x41",
        "abcdefghij\x80klmnop", /* bad byte after the 8-byte path */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(valid_s(bad[i]), 0);
}

/* The stream form agrees with the whole-buffer form at every split point. */
static void test_stream_splits(void **state)
{
    (void)state;
    static const char *cases[] = {
        "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80!",
        "\xf4\x8f\xbf\xbf\xed\x9f\xbf",
        "ok \xed\xa0\x80 surrogate",
        "overlong \xe0\x9f\xbf",
        "cut \xf0\x9f\x98",
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        const char *s = cases[c];
        size_t n = strlen(s);
        int want = lv_utf8_valid(s, n);
        for (size_t a = 0; a <= n; a++) {
            for (size_t b = a; b <= n; b++) {
                lv_utf8_state_t st;
                lv_utf8_init(&st);
                int ok = lv_utf8_feed(&st, s, a) && lv_utf8_feed(&st, s + a, b - a) && lv_utf8_feed(&st, s + b, n - b);
                assert_int_equal(ok && lv_utf8_done(&st), want);
            }
        }
    }
    /* A failure is sticky, and a valid prefix is not done until its sequence ends. */
    lv_utf8_state_t st;
    lv_utf8_init(&st);
    assert_int_equal(lv_utf8_feed(&st, "\xe2\x82", 2), 1);
    assert_false(lv_utf8_done(&st));
    assert_int_equal(lv_utf8_feed(&st, "\xac", 1), 1);
    assert_true(lv_utf8_done(&st));
    assert_int_equal(lv_utf8_feed(&st, "\xff", 1), 0);
    assert_int_equal(lv_utf8_feed(&st, "a", 1), 0);
    assert_false(lv_utf8_done(&st));
}

/* Every 1-, 2- and 3-byte sequence (and 4-byte leads with sampled tails) against a decoder
 * written from the definition. */
static int reference_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            k = 1, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            k = 2, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            k = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return 0;
        }
        if (n - i - 1 < k)
            return 0;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + j] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += k + 1;
    }
    return 1;
}

static void test_exhaustive(void **state)
{
    (void)state;
    unsigned char b[4];
    for (unsigned x = 0; x < 256; x++) {
        b[0] = (unsigned char)x;
        assert_int_equal(lv_utf8_valid(b, 1), reference_valid(b, 1));
        for (unsigned y = 0; y < 256; y++) {
            b[1] = (unsigned char)y;
            assert_int_equal(lv_utf8_valid(b, 2), reference_valid(b, 2));
            for (unsigned z = 0; z < 256; z += (x >= 0xE0 ? 1 : 51)) {
                b[2] = (unsigned char)z;
                assert_int_equal(lv_utf8_valid(b, 3), reference_valid(b, 3));
                if (x >= 0xF0) {
                    for (unsigned w = 0x70; w < 0xD0; w += 0x0F) {
                        b[3] = (unsigned char)w;
                        assert_int_equal(lv_utf8_valid(b, 4), reference_valid(b, 4));
                    }
                }
            }
        }
    }
}

/* lv_utf8_seq_len is the length of the first sequence: the shortest valid prefix (a longer
 * sequence never has a valid shorter prefix), 0 when none of up to 4 bytes is. Every 1- and
 * 2-byte start with sampled tails, and every cut length. */
static void test_seq_len(void **state)
{
    (void)state;
    static const unsigned char tails[] = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xF0, 0xFF};
    assert_int_equal(lv_utf8_seq_len("", 0), 0);
    for (unsigned a = 0; a < 256; a++) {
        for (unsigned b = 0; b < 256; b++) {
            for (size_t t = 0; t < sizeof tails; t++) {
                unsigned char p[4] = {(unsigned char)a, (unsigned char)b, tails[t], tails[(t * 7) % sizeof tails]};
                for (size_t len = 1; len <= 4; len++) {
                    size_t want = 0;
                    for (size_t k = 1; k <= len && !want; k++)
                        if (lv_utf8_valid(p, k))
                            want = k;
                    assert_int_equal(lv_utf8_seq_len(p, len), want);
                }
            }
        }
    }
    assert_int_equal(lv_utf8_seq_len("\xF0\x9F\x98\x80rest", 8), 4);
    assert_int_equal(lv_utf8_seq_len("\xF0\x9F\x98", 3), 0);
}

static void test_cut(void **state)
{
    (void)state;
    static const char s[] = "ab\xE2\x82\xAC\xF0\x9F\x98\x80"; /* a b EURO SIGN GRINNING FACE */
    size_t len = sizeof s - 1;
    static const size_t want[] = {0, 1, 2, 2, 2, 5, 5, 5, 5, 9, 9};
    for (size_t max = 0; max < LV_ARRAY_LEN(want); max++) {
        size_t n = lv_utf8_cut(s, len, max);
        assert_int_equal(n, want[max]);
        assert_int_equal(lv_utf8_valid(s, n), 1);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_stream_splits),
        cmocka_unit_test(test_exhaustive),
        cmocka_unit_test(test_seq_len),
        cmocka_unit_test(test_cut),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

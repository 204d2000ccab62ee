/* test_frame.c - the binary frame envelope: bare JPEG, LVF1 header, malformed starts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "lv_common.h"
#include "lv_frame.h"

static void test_bare_jpeg(void **state)
{
    (void)state;
    static const unsigned char b[] = {0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3};
    lv_frame_hdr_t h;
    assert_int_equal(lv_frame_parse(b, sizeof(b), &h), 0);
    assert_ptr_equal(h.jpeg, b);
    assert_int_equal(h.jpeg_len, sizeof(b));
    assert_int_equal(h.credit_id, 0);
    assert_int_equal(h.capture_age_ms, 0);
    /* Just the SOI is still a "bare JPEG" envelope; lv_jpeg_check rejects it later. */
    assert_int_equal(lv_frame_parse(b, 2, &h), 0);
    assert_int_equal(h.jpeg_len, 2);
}

static void test_header_roundtrip(void **state)
{
    (void)state;
    unsigned char buf[LV_FRAME_HDR_LEN + 3];
    lv_frame_hdr_t h;
    assert_int_equal(lv_frame_encode_header(buf, 0xDEADBEEFu, 1234), LV_FRAME_HDR_LEN);
    static const unsigned char want[] = {'L', 'V', 'F', '1', 0xDE, 0xAD, 0xBE, 0xEF,
                                         0, 0, 0x04, 0xD2, 0, 0, 0, 0};
    assert_memory_equal(buf, want, LV_FRAME_HDR_LEN);
    memcpy(buf + LV_FRAME_HDR_LEN, "\xFF\xD8\xFF", 3);
    assert_int_equal(lv_frame_parse(buf, sizeof(buf), &h), 0);
    assert_int_equal(h.credit_id, 0xDEADBEEFu);
    assert_int_equal(h.capture_age_ms, 1234);
    assert_ptr_equal(h.jpeg, buf + LV_FRAME_HDR_LEN);
    assert_int_equal(h.jpeg_len, 3);
    assert_int_equal(lv_frame_encode_header(NULL, 1, 2), LV_EINVAL);
}

static void test_age_cap(void **state)
{
    (void)state;
    unsigned char buf[LV_FRAME_HDR_LEN + 1] = {0};
    lv_frame_hdr_t h;
    static const uint32_t ages[][2] = {
        {0, 0}, {3599999, 3599999}, {3600000, 3600000}, {3600001, 3600000}, {0xFFFFFFFFu, 3600000},
    };
    for (size_t i = 0; i < LV_ARRAY_LEN(ages); i++) {
        lv_frame_encode_header(buf, 7, ages[i][0]);
        assert_int_equal(lv_frame_parse(buf, sizeof(buf), &h), 0);
        assert_int_equal(h.capture_age_ms, ages[i][1]);
        assert_int_equal(h.credit_id, 7);
    }
}

static void test_reserved_ignored(void **state)
{
    (void)state;
    unsigned char buf[LV_FRAME_HDR_LEN + 1] = {0};
    lv_frame_hdr_t h;
    lv_frame_encode_header(buf, 1, 2);
    memset(buf + 12, 0xAB, 4);
    assert_int_equal(lv_frame_parse(buf, sizeof(buf), &h), 0);
    assert_int_equal(h.credit_id, 1);
}

static void test_malformed(void **state)
{
    (void)state;
    unsigned char buf[LV_FRAME_HDR_LEN + 4] = {0};
    lv_frame_hdr_t h;
    lv_frame_encode_header(buf, 1, 2);

    /* Header with nothing after it: a zero-size frame. */
    assert_int_equal(lv_frame_parse(buf, LV_FRAME_HDR_LEN, &h), LV_EINVAL);
    assert_null(h.jpeg);
    /* Cut inside the header, at every length. */
    for (size_t n = 0; n < LV_FRAME_HDR_LEN; n++) {
        unsigned char *c = malloc(n ? n : 1);
        assert_non_null(c);
        memcpy(c, buf, n);
        assert_int_equal(lv_frame_parse(c, n, &h), LV_EINVAL);
        free(c);
    }
    /* Wrong magic, case matters; lone FF; FF D9. */
    memcpy(buf, "lvf1", 4);
    assert_int_equal(lv_frame_parse(buf, sizeof(buf), &h), LV_EINVAL);
    memcpy(buf, "LVF2", 4);
    assert_int_equal(lv_frame_parse(buf, sizeof(buf), &h), LV_EINVAL);
    static const unsigned char ff[] = {0xFF}, ffd9[] = {0xFF, 0xD9, 0, 0};
    assert_int_equal(lv_frame_parse(ff, 1, &h), LV_EINVAL);
    assert_int_equal(lv_frame_parse(ffd9, sizeof(ffd9), &h), LV_EINVAL);
    assert_int_equal(lv_frame_parse(NULL, 0, &h), LV_EINVAL);
    assert_int_equal(lv_frame_parse(NULL, 20, &h), LV_EINVAL);
    assert_int_equal(lv_frame_parse(ff, 1, NULL), LV_EINVAL);
    assert_int_equal(lv_frame_parse("", 0, &h), LV_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bare_jpeg),
        cmocka_unit_test(test_header_roundtrip),
        cmocka_unit_test(test_age_cap),
        cmocka_unit_test(test_reserved_ignored),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

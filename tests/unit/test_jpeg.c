/* test_jpeg.c - header-only JPEG checks on real JPEGs made here, then truncated and patched. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

#include "lv_common.h"
#include "lv_jpeg.h"

static const lv_jpeg_caps_t default_caps = {4u << 20, 8192, 16777216u};

/* A real w x h JPEG from a generated RGB gradient, in an exact-size malloc block so ASan sees
 * any read past its end. Caller frees. */
static unsigned char *make_jpeg(int w, int h, int subsamp, size_t *len)
{
    size_t n = (size_t)w * (size_t)h * 3;
    unsigned char *rgb = malloc(n);
    assert_non_null(rgb);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            unsigned char *px = rgb + ((size_t)y * (size_t)w + (size_t)x) * 3;
            px[0] = (unsigned char)(x * 255 / (w > 1 ? w - 1 : 1));
            px[1] = (unsigned char)(y * 255 / (h > 1 ? h - 1 : 1));
            px[2] = (unsigned char)((x ^ y) & 0xFF);
        }
    tjhandle tj = tjInitCompress();
    assert_non_null(tj);
    unsigned char *jpeg = NULL;
    unsigned long jlen = 0;
    assert_int_equal(tjCompress2(tj, rgb, w, 0, h, TJPF_RGB, &jpeg, &jlen, subsamp, 80, 0), 0);
    unsigned char *copy = malloc(jlen);
    assert_non_null(copy);
    memcpy(copy, jpeg, jlen);
    tjFree(jpeg);
    tjDestroy(tj);
    free(rgb);
    *len = jlen;
    return copy;
}

/* Offset of the first marker m (the FF byte) walking segments from SOI, or 0. */
static size_t find_marker(const unsigned char *b, size_t len, unsigned m)
{
    size_t i = 2;
    while (i + 4 <= len && b[i] == 0xFF) {
        if (b[i + 1] == m)
            return i;
        i += 2 + (((size_t)b[i + 2] << 8) | b[i + 3]);
    }
    return 0;
}

/* Check a copy of b[0..len) in its own exact-size block. */
static int check_copy(const unsigned char *b, size_t len, const lv_jpeg_caps_t *caps, lv_jpeg_info_t *info)
{
    unsigned char *c = malloc(len ? len : 1);
    assert_non_null(c);
    memcpy(c, b, len);
    const char *why = NULL;
    int rc = lv_jpeg_check(c, len, caps, info, &why);
    if (rc != 0)
        assert_true(why && *why);
    free(c);
    return rc;
}

static void test_valid(void **state)
{
    (void)state;
    static const int subsamps[] = {TJSAMP_420, TJSAMP_422, TJSAMP_444, TJSAMP_GRAY};
    for (size_t i = 0; i < LV_ARRAY_LEN(subsamps); i++) {
        size_t len;
        unsigned char *j = make_jpeg(64, 48, subsamps[i], &len);
        lv_jpeg_info_t info = {0, 0, -1};
        const char *why = "untouched";
        assert_int_equal(lv_jpeg_check(j, len, &default_caps, &info, &why), 0);
        assert_int_equal(info.width, 64);
        assert_int_equal(info.height, 48);
        assert_int_equal(info.subsamp, subsamps[i]);
        /* caps, out and why are optional. */
        assert_int_equal(lv_jpeg_check(j, len, NULL, NULL, NULL), 0);
        free(j);
    }
}

static void test_not_jpeg(void **state)
{
    (void)state;
    static const unsigned char png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n', 0, 0};
    static const unsigned char soi_only[] = {0xFF, 0xD8};
    static const unsigned char soi_eoi[] = {0xFF, 0xD8, 0xFF, 0xD9};
    static const unsigned char soi_junk[] = {0xFF, 0xD8, 0x00, 0x00, 0x00, 0x00};
    const char *why = NULL;
    assert_int_equal(lv_jpeg_check(NULL, 0, &default_caps, NULL, &why), LV_EINVAL);
    assert_non_null(why);
    assert_int_equal(lv_jpeg_check(png, 0, &default_caps, NULL, NULL), LV_EINVAL);
    assert_int_equal(check_copy(png, sizeof(png), &default_caps, NULL), LV_EINVAL);
    assert_int_equal(check_copy((const unsigned char *)"hello world", 11, &default_caps, NULL), LV_EINVAL);
    assert_int_equal(check_copy(soi_only, sizeof(soi_only), &default_caps, NULL), LV_EINVAL);
    assert_int_equal(check_copy(soi_eoi, sizeof(soi_eoi), &default_caps, NULL), LV_EINVAL);
    assert_int_equal(check_copy(soi_junk, sizeof(soi_junk), &default_caps, NULL), LV_EINVAL);
}

static void test_truncated(void **state)
{
    (void)state;
    size_t len;
    unsigned char *j = make_jpeg(40, 30, TJSAMP_420, &len);
    size_t sos = find_marker(j, len, 0xDA);
    assert_true(sos > 0);
    /* Every cut before the scan starts leaves no parsable header. */
    for (size_t cut = 0; cut <= sos + 1; cut++) {
        int rc = check_copy(j, cut, &default_caps, NULL);
        if (rc != LV_EINVAL)
            fail_msg("cut at %zu of %zu (SOS at %zu): rc %d", cut, len, sos, rc);
    }
    /* Cut inside the entropy-coded data: the header is whole, and we do not decode (documented). */
    assert_int_equal(check_copy(j, len - 2, &default_caps, NULL), 0);
    assert_int_equal(check_copy(j, (sos + len) / 2, &default_caps, NULL), 0);
    free(j);
}

static void test_corrupt(void **state)
{
    (void)state;
    size_t len;
    unsigned char *j = make_jpeg(40, 30, TJSAMP_420, &len);
    unsigned char *c = malloc(len);
    assert_non_null(c);
    size_t sof = find_marker(j, len, 0xC0);
    size_t dqt = find_marker(j, len, 0xDB);
    assert_true(sof > 0 && dqt > 0);

    /* SOF declares zero components. */
    memcpy(c, j, len);
    c[sof + 9] = 0;
    assert_int_equal(check_copy(c, len, &default_caps, NULL), LV_EINVAL);
    /* SOF declares 12-bit precision's nonsense cousin, 3 bits. */
    memcpy(c, j, len);
    c[sof + 4] = 3;
    assert_int_equal(check_copy(c, len, &default_caps, NULL), LV_EINVAL);
    /* Segment length running past the end of the data. */
    memcpy(c, j, len);
    c[dqt + 2] = 0xFF;
    c[dqt + 3] = 0xFF;
    assert_int_equal(check_copy(c, len, &default_caps, NULL), LV_EINVAL);
    /* Segment length below its own two bytes. */
    memcpy(c, j, len);
    c[dqt + 2] = 0;
    c[dqt + 3] = 1;
    assert_int_equal(check_copy(c, len, &default_caps, NULL), LV_EINVAL);
    /* Zero height (DNL is not supported) and zero width. */
    memcpy(c, j, len);
    c[sof + 5] = 0;
    c[sof + 6] = 0;
    assert_int_equal(check_copy(c, len, &default_caps, NULL), LV_EINVAL);
    memcpy(c, j, len);
    c[sof + 7] = 0;
    c[sof + 8] = 0;
    assert_int_equal(check_copy(c, len, &default_caps, NULL), LV_EINVAL);
    /* A tables-only datastream: everything before SOF, then EOI. */
    memcpy(c, j, sof);
    c[sof] = 0xFF;
    c[sof + 1] = 0xD9;
    assert_int_equal(check_copy(c, sof + 2, &default_caps, NULL), LV_EINVAL);
    free(c);
    free(j);
}

static void patch_size(unsigned char *b, size_t sof, unsigned w, unsigned h)
{
    b[sof + 5] = (unsigned char)(h >> 8);
    b[sof + 6] = (unsigned char)h;
    b[sof + 7] = (unsigned char)(w >> 8);
    b[sof + 8] = (unsigned char)w;
}

static void test_huge_dimensions(void **state)
{
    (void)state;
    size_t len;
    unsigned char *j = make_jpeg(40, 30, TJSAMP_420, &len);
    size_t sof = find_marker(j, len, 0xC0);
    assert_true(sof > 0);
    lv_jpeg_caps_t caps = {4u << 20, 8192, 16777216u};
    lv_jpeg_info_t info;

    patch_size(j, sof, 60000, 60000);
    assert_int_equal(check_copy(j, len, &caps, NULL), LV_ELIMIT);
    /* Without caps the header is fine: the size is only declared, nothing is allocated. */
    assert_int_equal(check_copy(j, len, NULL, &info), 0);
    assert_int_equal(info.width, 60000);
    assert_int_equal(info.height, 60000);

    /* Past libjpeg's own 65500 limit: still reported as too large, not as garbage. */
    patch_size(j, sof, 65535, 65535);
    assert_int_equal(check_copy(j, len, &caps, NULL), LV_ELIMIT);
    /* One side over, the other tiny. */
    patch_size(j, sof, 8193, 16);
    assert_int_equal(check_copy(j, len, &caps, NULL), LV_ELIMIT);
    patch_size(j, sof, 16, 8193);
    assert_int_equal(check_copy(j, len, &caps, NULL), LV_ELIMIT);
    /* Both sides at the cap: 8192 x 8192 = 67 M pixels, over the pixel cap. */
    patch_size(j, sof, 8192, 8192);
    assert_int_equal(check_copy(j, len, &caps, NULL), LV_ELIMIT);
    /* 8192 x 2048 = exactly 16777216 pixels: allowed; one more row is not. */
    patch_size(j, sof, 8192, 2048);
    assert_int_equal(check_copy(j, len, &caps, &info), 0);
    assert_int_equal(info.width, 8192);
    patch_size(j, sof, 8192, 2049);
    assert_int_equal(check_copy(j, len, &caps, NULL), LV_ELIMIT);
    free(j);
}

static void test_caps_boundaries(void **state)
{
    (void)state;
    size_t len, len65;
    unsigned char *j = make_jpeg(64, 48, TJSAMP_420, &len);
    unsigned char *j65 = make_jpeg(65, 48, TJSAMP_420, &len65);

    lv_jpeg_caps_t caps = {len, 64, 64 * 48};
    assert_int_equal(check_copy(j, len, &caps, NULL), 0);
    caps.max_bytes = len - 1;
    assert_int_equal(check_copy(j, len, &caps, NULL), LV_ELIMIT);
    caps.max_bytes = 0; /* no byte cap */
    assert_int_equal(check_copy(j, len, &caps, NULL), 0);

    caps.max_side = 63;
    assert_int_equal(check_copy(j, len, &caps, NULL), LV_ELIMIT);
    caps.max_side = 64;
    assert_int_equal(check_copy(j65, len65, &caps, NULL), LV_ELIMIT);
    caps.max_side = 65;
    caps.max_pixels = 65 * 48;
    assert_int_equal(check_copy(j65, len65, &caps, NULL), 0);
    caps.max_pixels = 65 * 48 - 1;
    assert_int_equal(check_copy(j65, len65, &caps, NULL), LV_ELIMIT);
    caps.max_pixels = 0; /* no pixel cap */
    assert_int_equal(check_copy(j65, len65, &caps, NULL), 0);

    /* The byte cap wins over "not a JPEG": it is checked first. */
    caps.max_bytes = 3;
    assert_int_equal(check_copy((const unsigned char *)"junk", 4, &caps, NULL), LV_ELIMIT);
    free(j);
    free(j65);
}

/* libjpeg-turbo 2.1 leaves the handle mid-header after an error; the next good frame must pass. */
static void test_valid_after_error(void **state)
{
    (void)state;
    size_t len;
    unsigned char *j = make_jpeg(64, 48, TJSAMP_420, &len);
    size_t sof = find_marker(j, len, 0xC0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(check_copy(j, sof + 4, &default_caps, NULL), LV_EINVAL);
        assert_int_equal(check_copy(j, len, &default_caps, NULL), 0);
    }
    free(j);
}

typedef struct {
    const unsigned char *jpeg;
    size_t len;
    int failures;
} thread_arg_t;

static void *thread_main(void *p)
{
    thread_arg_t *a = p;
    lv_jpeg_info_t info;
    for (int i = 0; i < 500; i++)
        if (lv_jpeg_check(a->jpeg, a->len, &default_caps, &info, NULL) != 0 || info.width != 64)
            a->failures++;
    lv_jpeg_thread_cleanup();
    return NULL;
}

static void test_threads_and_cleanup(void **state)
{
    (void)state;
    size_t len;
    unsigned char *j = make_jpeg(64, 48, TJSAMP_420, &len);
    thread_arg_t args[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (thread_arg_t){j, len, 0};
        assert_int_equal(pthread_create(&th[i], NULL, thread_main, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(args[i].failures, 0);
    }
    /* Cleanup is idempotent, and the handle comes back on the next call. */
    lv_jpeg_thread_cleanup();
    lv_jpeg_thread_cleanup();
    assert_int_equal(lv_jpeg_check(j, len, &default_caps, NULL, NULL), 0);
    lv_jpeg_thread_cleanup();
    free(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_not_jpeg),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_corrupt),
        cmocka_unit_test(test_huge_dimensions),
        cmocka_unit_test(test_caps_boundaries),
        cmocka_unit_test(test_valid_after_error),
        cmocka_unit_test(test_threads_and_cleanup),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    lv_jpeg_thread_cleanup();
    return rc;
}

/* test_b64.c - base64 and base64url against RFC 4648 vectors, caps and the NUL terminator. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lv_b64.h"
#include "lv_buf.h"
#include "lv_common.h"

static void test_rfc4648_vectors(void **state)
{
    (void)state;
    static const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *want[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (size_t i = 0; i < LV_ARRAY_LEN(in); i++) {
        lv_buf_t b;
        lv_buf_init(&b, 64);
        assert_int_equal(lv_b64_encode(&b, in[i], strlen(in[i])), 0);
        assert_int_equal(b.len, strlen(want[i]));
        assert_int_equal(lv_b64_encoded_len(strlen(in[i])), strlen(want[i]));
        if (b.len)
            assert_string_equal(b.data, want[i]);
        lv_buf_free(&b);
    }
}

static void test_appends_after_existing(void **state)
{
    (void)state;
    lv_buf_t b;
    lv_buf_init(&b, 64);
    assert_int_equal(lv_buf_append_str(&b, "x:"), 0);
    assert_int_equal(lv_b64_encode(&b, "\xff\xfe\x00", 3), 0);
    assert_string_equal(b.data, "x://4A");
    assert_int_equal(b.len, 6);
    lv_buf_free(&b);
}

static void test_exact_cap_and_over(void **state)
{
    (void)state;
    unsigned char raw[300];
    for (size_t i = 0; i < sizeof raw; i++)
        raw[i] = (unsigned char)(i * 7);
    lv_buf_t b;
    lv_buf_init(&b, 400); /* 300 bytes -> exactly 400 chars */
    assert_int_equal(lv_b64_encode(&b, raw, sizeof raw), 0);
    assert_int_equal(b.len, 400);
    assert_int_equal(b.data[400], '\0');
    lv_buf_free(&b);

    lv_buf_init(&b, 399);
    assert_int_equal(lv_buf_append_str(&b, "ab"), 0);
    assert_int_equal(lv_b64_encode(&b, raw, sizeof raw), LV_ELIMIT);
    assert_int_equal(b.len, 2);
    assert_string_equal(b.data, "ab");
    lv_buf_free(&b);
}

static void test_large_matches_reference(void **state)
{
    (void)state;
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = 40001;
    unsigned char *raw = malloc(n);
    assert_non_null(raw);
    for (size_t i = 0; i < n; i++)
        raw[i] = (unsigned char)((i * 2654435761u) >> 13);
    lv_buf_t b;
    lv_buf_init(&b, 1 << 20);
    assert_int_equal(lv_b64_encode(&b, raw, n), 0);
    assert_int_equal(b.len, lv_b64_encoded_len(n));
    size_t o = 0;
    for (size_t i = 0; i + 3 <= n; i += 3, o += 4) {
        uint32_t v = (uint32_t)raw[i] << 16 | (uint32_t)raw[i + 1] << 8 | raw[i + 2];
        assert_int_equal(b.data[o], tbl[v >> 18]);
        assert_int_equal(b.data[o + 1], tbl[(v >> 12) & 63]);
        assert_int_equal(b.data[o + 2], tbl[(v >> 6) & 63]);
        assert_int_equal(b.data[o + 3], tbl[v & 63]);
    }
    /* 40001 = 3*13333 + 2: one padding char */
    assert_int_equal(b.data[b.len - 1], '=');
    assert_int_not_equal(b.data[b.len - 2], '=');
    free(raw);
    lv_buf_free(&b);
}

static void test_b64url(void **state)
{
    (void)state;
    unsigned char out[16];
    size_t n;
    char enc[32];
    assert_int_equal(lv_b64url_decode("_-8", 3, out, sizeof(out), &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(out[0], 0xff);
    assert_int_equal(out[1], 0xef);
    assert_int_equal(lv_b64url_encode(out, 2, enc, sizeof(enc)), 0);
    assert_string_equal(enc, "_-8");
    assert_int_equal(lv_b64url_decode("A", 1, out, sizeof(out), &n), LV_EPARSE);
    assert_int_equal(lv_b64url_decode("AA==", 4, out, sizeof(out), &n), LV_EPARSE);
    assert_int_equal(lv_b64url_decode("AAAAAAAAAAAAAAAAAAAAAAAA", 24, out, sizeof(out), &n), LV_ELIMIT);
    assert_int_equal(lv_b64url_decode("Zm+v", 4, out, sizeof(out), &n), LV_EPARSE); /* standard alphabet */
    assert_int_equal(lv_b64url_decode("Zm9vYmE", 7, out, sizeof(out), &n), 0);       /* RFC 4648 vector */
    assert_int_equal(n, 5);
    assert_memory_equal(out, "fooba", 5);
    assert_int_equal(lv_b64url_decode("Zm9vYmE", 7, out, 4, &n), LV_ELIMIT);
    assert_int_equal(lv_b64url_decode("", 0, out, sizeof(out), &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(lv_b64url_encode("fooba", 5, enc, 8), 0);
    assert_string_equal(enc, "Zm9vYmE");
    assert_int_equal(lv_b64url_encode("fooba", 5, enc, 7), LV_ELIMIT); /* no room for the NUL */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc4648_vectors),
        cmocka_unit_test(test_appends_after_existing),
        cmocka_unit_test(test_exact_cap_and_over),
        cmocka_unit_test(test_large_matches_reference),
        cmocka_unit_test(test_b64url),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

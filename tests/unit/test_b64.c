/* test_b64.c - base64 and base64url against RFC 4648 vectors, caps and the NUL terminator; the
 * AVX2 and scalar encoders each against OpenSSL's EVP_EncodeBlock on every length to 300 and a few
 * large ones, from misaligned pointers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

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

/* Deterministic bytes (xorshift64, fixed seed) so a failure reproduces. */
static void fill_random(unsigned char *p, size_t n, uint64_t seed)
{
    uint64_t x = seed;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (unsigned char)(x >> 32);
    }
}

enum { PATH_SCALAR, PATH_AVX2, PATH_BUF };
enum { FILL_RANDOM, FILL_ZERO, FILL_FF, FILL_KINDS };

/* Encode n bytes of the given fill, starting off bytes past a 64-byte boundary and ending exactly
 * at the end of their allocation (so ASan sees any over-read), with the chosen path; the output
 * also starts off bytes into its buffer and must match EVP_EncodeBlock and leave the canary after
 * it alone. PATH_BUF goes through lv_b64_encode after a prefix of off bytes. */
static void check_one(int path, size_t n, size_t off, int fill)
{
    void *in_mem = NULL;
    assert_int_equal(posix_memalign(&in_mem, 64, off + n ? off + n : 1), 0);
    unsigned char *in = (unsigned char *)in_mem + off;
    if (fill == FILL_RANDOM)
        fill_random(in, n, 0x9e3779b97f4a7c15u ^ (n * 131 + off));
    else
        memset(in, fill == FILL_ZERO ? 0x00 : 0xff, n);

    size_t enc = lv_b64_encoded_len(n);
    unsigned char *want = malloc(enc + 1);
    assert_non_null(want);
    assert_int_equal(EVP_EncodeBlock(want, in, (int)n), (int)enc);

    if (path == PATH_BUF) {
        lv_buf_t b;
        lv_buf_init(&b, off + enc);
        char prefix[32];
        memset(prefix, 'p', sizeof prefix);
        assert_int_equal(lv_buf_append(&b, prefix, off), 0);
        assert_int_equal(lv_b64_encode(&b, n ? in : NULL, n), 0);
        assert_int_equal(b.len, off + enc);
        if (b.len) {
            assert_memory_equal(b.data + off, want, enc);
            assert_int_equal(b.data[b.len], '\0');
        }
        lv_buf_free(&b);
    } else {
        char *got_mem = malloc(off + enc + 8);
        assert_non_null(got_mem);
        memset(got_mem, 0xa5, off + enc + 8);
        char *got = got_mem + off;
        if (path == PATH_SCALAR)
            lv_b64_encode_scalar(got, in, n);
        else
            assert_int_equal(lv_b64_encode_avx2(got, in, n), 0);
        assert_memory_equal(got, want, enc);
        for (size_t i = 0; i < 8; i++)
            assert_int_equal((unsigned char)got[enc + i], 0xa5);
        for (size_t i = 0; i < off; i++)
            assert_int_equal((unsigned char)got_mem[i], 0xa5);
        free(got_mem);
    }
    free(want);
    free(in_mem);
}

/* Every length 0..300 (the AVX2 loop's edges at 28 and every 24 after, and all three tails) at
 * offsets 0..31, three fills; then 64 KiB + 1 and 1 MiB at a few offsets. */
static void check_path(int path)
{
    for (size_t n = 0; n <= 300; n++)
        for (size_t off = 0; off < 32; off++)
            for (int fill = 0; fill < FILL_KINDS; fill++)
                check_one(path, n, off, fill);
    static const size_t big[] = {65537, 1 << 20};
    static const size_t big_off[] = {0, 1, 17, 31};
    for (size_t i = 0; i < LV_ARRAY_LEN(big); i++)
        for (size_t j = 0; j < LV_ARRAY_LEN(big_off); j++)
            for (int fill = 0; fill < FILL_KINDS; fill++)
                check_one(path, big[i], big_off[j], fill);
}

static void test_scalar_matches_openssl(void **state)
{
    (void)state;
    check_path(PATH_SCALAR);
}

static void test_avx2_matches_openssl(void **state)
{
    (void)state;
    char c[4];
    if (lv_b64_encode_avx2(c, "x", 1) == LV_EINVAL) {
        print_message("no AVX2 on this CPU (or not an x86-64 GCC/clang build): AVX2 path not tested\n");
        skip();
    }
    check_path(PATH_AVX2);
}

static void test_encode_matches_openssl(void **state)
{
    (void)state;
    check_path(PATH_BUF);
}

/* A frame-sized input (the vector path) against a cap one short of its base64 and exactly its
 * base64: LV_ELIMIT leaves the buffer as it was, the exact fit is taken. */
static void test_cap_large(void **state)
{
    (void)state;
    size_t n = 32 * 1024 + 2;
    unsigned char *raw = malloc(n);
    assert_non_null(raw);
    fill_random(raw, n, 42);
    size_t enc = lv_b64_encoded_len(n);

    lv_buf_t b;
    lv_buf_init(&b, 5 + enc - 1);
    assert_int_equal(lv_buf_append_str(&b, "head:"), 0);
    char *before = b.data;
    assert_int_equal(lv_b64_encode(&b, raw, n), LV_ELIMIT);
    assert_int_equal(b.len, 5);
    assert_ptr_equal(b.data, before);
    assert_string_equal(b.data, "head:");
    lv_buf_free(&b);

    lv_buf_init(&b, 5 + enc);
    assert_int_equal(lv_buf_append_str(&b, "head:"), 0);
    assert_int_equal(lv_b64_encode(&b, raw, n), 0);
    assert_int_equal(b.len, 5 + enc);
    assert_int_equal(b.data[b.len], '\0');
    unsigned char *want = malloc(enc + 1);
    assert_non_null(want);
    assert_int_equal(EVP_EncodeBlock(want, raw, (int)n), (int)enc);
    assert_memory_equal(b.data + 5, want, enc);
    free(want);
    lv_buf_free(&b);

    /* n == 0 appends nothing, even with p == NULL and a full buffer */
    lv_buf_init(&b, 2);
    assert_int_equal(lv_buf_append_str(&b, "ab"), 0);
    assert_int_equal(lv_b64_encode(&b, NULL, 0), 0);
    assert_int_equal(b.len, 2);
    assert_int_equal(lv_b64_encode(&b, raw, 1), LV_ELIMIT);
    assert_string_equal(b.data, "ab");
    lv_buf_free(&b);
    free(raw);
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
        cmocka_unit_test(test_scalar_matches_openssl),
        cmocka_unit_test(test_avx2_matches_openssl),
        cmocka_unit_test(test_encode_matches_openssl),
        cmocka_unit_test(test_cap_large),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_jwt.c - lv_jwt: tokens signed here with RSA and P-256 keys that OpenSSL generates for the
 * test, their JWKS built from the keys' public parameters; tampering, wrong keys, claims, refused
 * algorithms and caps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "lv_b64.h"
#include "lv_common.h"
#include "lv_jwt.h"

#define NOW 1700000000

static EVP_PKEY *g_rsa, *g_rsa2, *g_ec;

static void b64url_bn(EVP_PKEY *k, const char *param, size_t width, char *out, size_t out_size)
{
    BIGNUM *bn = NULL;
    unsigned char buf[1024];
    assert_int_equal(EVP_PKEY_get_bn_param(k, param, &bn), 1);
    size_t n = width ? width : (size_t)BN_num_bytes(bn);
    assert_true(BN_bn2binpad(bn, buf, (int)n) > 0);
    assert_int_equal(lv_b64url_encode(buf, n, out, out_size), 0);
    BN_free(bn);
}

static void jwk_of(EVP_PKEY *k, const char *kid, char *out, size_t out_size)
{
    char a[1400], b[1400];
    if (EVP_PKEY_get_base_id(k) == EVP_PKEY_RSA) {
        b64url_bn(k, OSSL_PKEY_PARAM_RSA_N, 0, a, sizeof(a));
        b64url_bn(k, OSSL_PKEY_PARAM_RSA_E, 0, b, sizeof(b));
        snprintf(out, out_size, "{\"kty\":\"RSA\",\"kid\":\"%s\",\"use\":\"sig\",\"n\":\"%s\",\"e\":\"%s\"}", kid, a, b);
    } else {
        b64url_bn(k, OSSL_PKEY_PARAM_EC_PUB_X, 32, a, sizeof(a));
        b64url_bn(k, OSSL_PKEY_PARAM_EC_PUB_Y, 32, b, sizeof(b));
        snprintf(out, out_size, "{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"%s\",\"x\":\"%s\",\"y\":\"%s\"}", kid, a, b);
    }
}

/* A JWKS with the RSA key as "r1" and the EC key as "e1" (plus an encryption key to skip). */
static void make_jwks(lv_jwks_t *s)
{
    char r[4096], e[4096], doc[8400];
    const char *why = NULL;
    jwk_of(g_rsa, "r1", r, sizeof(r));
    jwk_of(g_ec, "e1", e, sizeof(e));
    snprintf(doc, sizeof(doc), "{\"keys\":[{\"kty\":\"RSA\",\"use\":\"enc\",\"kid\":\"x\",\"n\":\"AQAB\",\"e\":\"AQAB\"},%s,%s]}",
             r, e);
    assert_int_equal(lv_jwks_parse(doc, strlen(doc), s, &why), 0);
    assert_int_equal(s->n, 2);
}

/* Sign header.payload with k; ES256 signatures are turned from DER into r||s. */
static char *sign_token(EVP_PKEY *k, const char *header, const char *payload)
{
    char *tok = malloc(8192);
    size_t n;
    assert_non_null(tok);
    assert_int_equal(lv_b64url_encode(header, strlen(header), tok, 4096), 0);
    n = strlen(tok);
    tok[n++] = '.';
    assert_int_equal(lv_b64url_encode(payload, strlen(payload), tok + n, 4096), 0);
    n += strlen(tok + n);
    unsigned char sig[1024], raw[64];
    size_t sig_len = sizeof(sig);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, k), 1);
    assert_int_equal(EVP_DigestSign(ctx, sig, &sig_len, (unsigned char *)tok, n), 1);
    EVP_MD_CTX_free(ctx);
    const unsigned char *out = sig;
    if (EVP_PKEY_get_base_id(k) == EVP_PKEY_EC) {
        const unsigned char *p = sig;
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)sig_len);
        assert_non_null(es);
        BN_bn2binpad(ECDSA_SIG_get0_r(es), raw, 32);
        BN_bn2binpad(ECDSA_SIG_get0_s(es), raw + 32, 32);
        ECDSA_SIG_free(es);
        out = raw;
        sig_len = 64;
    }
    tok[n++] = '.';
    assert_int_equal(lv_b64url_encode(out, sig_len, tok + n, 8192 - n), 0);
    return tok;
}

static const char *CLAIMS = "{\"iss\":\"https://idp.test\",\"aud\":\"livevlm\",\"sub\":\"u1\",\"exp\":1700000600,"
                            "\"nbf\":1699999990,\"email\":\"a@b.test\"}";

/* Parse, find the key, verify, check: 0 or the first failing code. */
static int accept(const lv_jwks_t *s, const char *tok, const char *aud, int64_t now, const char **why)
{
    lv_jwt_t j;
    int rc = lv_jwt_parse(tok, strlen(tok), &j, why);
    if (rc == 0)
        rc = lv_jwt_verify(&j, lv_jwks_find(s, j.kid, j.alg), why);
    if (rc == 0)
        rc = lv_jwt_check_claims(&j, "https://idp.test", aud, now, why);
    lv_jwt_free(&j);
    return rc;
}

static void test_rs256_and_es256_accepted(void **state)
{
    (void)state;
    lv_jwks_t s;
    const char *why = NULL;
    make_jwks(&s);
    char *t1 = sign_token(g_rsa, "{\"alg\":\"RS256\",\"kid\":\"r1\",\"typ\":\"JWT\"}", CLAIMS);
    char *t2 = sign_token(g_ec, "{\"alg\":\"ES256\",\"kid\":\"e1\"}", CLAIMS);
    assert_int_equal(accept(&s, t1, "livevlm", NOW, &why), 0);
    assert_int_equal(accept(&s, t2, "livevlm", NOW, &why), 0);
    lv_jwt_t j;
    assert_int_equal(lv_jwt_parse(t2, strlen(t2), &j, &why), 0);
    assert_string_equal(lv_jwt_claim_str(&j, "email"), "a@b.test");
    assert_null(lv_jwt_claim_str(&j, "exp"));
    lv_jwt_free(&j);
    free(t1);
    free(t2);
    lv_jwks_free(&s);
}

static void test_tampered_and_wrong_key(void **state)
{
    (void)state;
    lv_jwks_t s;
    const char *why = NULL;
    make_jwks(&s);
    char *t = sign_token(g_rsa, "{\"alg\":\"RS256\",\"kid\":\"r1\"}", CLAIMS);
    /* another payload under the same signature */
    char *other = sign_token(g_rsa, "{\"alg\":\"RS256\",\"kid\":\"r1\"}",
                             "{\"iss\":\"https://idp.test\",\"aud\":\"livevlm\",\"sub\":\"admin\",\"exp\":1700000600}");
    char *d1 = strchr(t, '.'), *d2 = strchr(d1 + 1, '.');
    char *o1 = strchr(other, '.'), *o2 = strchr(o1 + 1, '.');
    char forged[8192];
    snprintf(forged, sizeof(forged), "%.*s%s", (int)(o2 - other), other, d2);
    assert_int_equal(accept(&s, forged, "livevlm", NOW, &why), LV_EAUTH);
    assert_string_equal(why, "the token's signature does not verify");
    /* one flipped signature character */
    char flip[8192];
    snprintf(flip, sizeof(flip), "%s", t);
    char *last = flip + strlen(flip) - 3;
    *last = *last == 'A' ? 'B' : 'A';
    assert_int_equal(accept(&s, flip, "livevlm", NOW, &why), LV_EAUTH);
    /* signed by a key the JWKS does not hold, under a kid it does */
    char *t3 = sign_token(g_rsa2, "{\"alg\":\"RS256\",\"kid\":\"r1\"}", CLAIMS);
    assert_int_equal(accept(&s, t3, "livevlm", NOW, &why), LV_EAUTH);
    /* an unknown kid finds no key */
    char *t4 = sign_token(g_rsa, "{\"alg\":\"RS256\",\"kid\":\"nope\"}", CLAIMS);
    assert_int_equal(accept(&s, t4, "livevlm", NOW, &why), LV_EAUTH);
    assert_string_equal(why, "no key of the token's algorithm to verify it");
    /* the RSA kid with ES256: a key is used only for its own algorithm */
    char *t5 = sign_token(g_ec, "{\"alg\":\"ES256\",\"kid\":\"r1\"}", CLAIMS);
    assert_int_equal(accept(&s, t5, "livevlm", NOW, &why), LV_EAUTH);
    /* no kid: the only key of the alg is used */
    char *t6 = sign_token(g_ec, "{\"alg\":\"ES256\"}", CLAIMS);
    assert_int_equal(accept(&s, t6, "livevlm", NOW, &why), 0);
    free(t);
    free(other);
    free(t3);
    free(t4);
    free(t5);
    free(t6);
    lv_jwks_free(&s);
}

static void test_claims(void **state)
{
    (void)state;
    lv_jwks_t s;
    const char *why = NULL;
    make_jwks(&s);
    char *t = sign_token(g_ec, "{\"alg\":\"ES256\",\"kid\":\"e1\"}", CLAIMS);
    assert_int_equal(accept(&s, t, "other", NOW, &why), LV_EAUTH);
    assert_string_equal(why, "the token's audience (aud) does not include this server");
    /* exp 1700000600 with 60 s leeway */
    assert_int_equal(accept(&s, t, "livevlm", 1700000660, &why), 0);
    assert_int_equal(accept(&s, t, "livevlm", 1700000661, &why), LV_EAUTH);
    assert_string_equal(why, "the token has expired");
    /* nbf 1699999990 with 60 s leeway */
    assert_int_equal(accept(&s, t, "livevlm", 1699999930, &why), 0);
    assert_int_equal(accept(&s, t, "livevlm", 1699999929, &why), LV_EAUTH);
    assert_string_equal(why, "the token is not valid yet (nbf)");
    char *wrong_iss = sign_token(g_ec, "{\"alg\":\"ES256\",\"kid\":\"e1\"}",
                                 "{\"iss\":\"https://evil.test\",\"aud\":\"livevlm\",\"exp\":1700000600}");
    assert_int_equal(accept(&s, wrong_iss, "livevlm", NOW, &why), LV_EAUTH);
    assert_string_equal(why, "the token's issuer (iss) is not the configured one");
    char *aud_list = sign_token(g_ec, "{\"alg\":\"ES256\",\"kid\":\"e1\"}",
                                "{\"iss\":\"https://idp.test\",\"aud\":[\"x\",\"livevlm\"],\"exp\":1700000600}");
    assert_int_equal(accept(&s, aud_list, "livevlm", NOW, &why), 0);
    assert_int_equal(accept(&s, aud_list, "y", NOW, &why), LV_EAUTH);
    char *no_exp = sign_token(g_ec, "{\"alg\":\"ES256\",\"kid\":\"e1\"}", "{\"iss\":\"https://idp.test\",\"aud\":\"livevlm\"}");
    assert_int_equal(accept(&s, no_exp, "livevlm", NOW, &why), LV_EAUTH);
    assert_string_equal(why, "the token has no expiry (exp)");
    free(t);
    free(wrong_iss);
    free(aud_list);
    free(no_exp);
    lv_jwks_free(&s);
}

static void test_refused_algorithms(void **state)
{
    (void)state;
    const char *why = NULL;
    lv_jwt_t j;
    char tok[1024], h[256], p[256];
    static const char *hdrs[] = {"{\"alg\":\"none\"}", "{\"alg\":\"HS256\"}", "{\"alg\":\"RS512\"}",
                                 "{\"alg\":\"RS256\",\"crit\":[\"b64\"]}"};
    lv_b64url_encode(CLAIMS, strlen(CLAIMS), p, sizeof(p));
    for (size_t i = 0; i < LV_ARRAY_LEN(hdrs); i++) {
        lv_b64url_encode(hdrs[i], strlen(hdrs[i]), h, sizeof(h));
        snprintf(tok, sizeof(tok), "%s.%s.", h, p);
        assert_int_equal(lv_jwt_parse(tok, strlen(tok), &j, &why), LV_EINVAL);
        snprintf(tok, sizeof(tok), "%s.%s.c2ln", h, p);
        assert_int_equal(lv_jwt_parse(tok, strlen(tok), &j, &why), LV_EINVAL);
        lv_jwt_free(&j);
    }
    /* RS256 with an empty signature */
    lv_b64url_encode("{\"alg\":\"RS256\"}", 15, h, sizeof(h));
    snprintf(tok, sizeof(tok), "%s.%s.", h, p);
    assert_int_equal(lv_jwt_parse(tok, strlen(tok), &j, &why), LV_EPARSE);
}

static void test_malformed_and_oversize(void **state)
{
    (void)state;
    const char *why = NULL;
    lv_jwt_t j;
    static const char *bad[] = {"", "a", "a.b", "a.b.c.d", "...", "e30.e30.", "!!.e30.AAAA", "eyJhbGciOiJSUzI1NiJ9.W10.AAAA",
                                "eyJhbGciOiJSUzI1NiJ9.e30=.AAAA"};
    for (size_t i = 0; i < LV_ARRAY_LEN(bad); i++) {
        int rc = lv_jwt_parse(bad[i], strlen(bad[i]), &j, &why);
        assert_true(rc == LV_EPARSE || rc == LV_EINVAL);
        assert_non_null(why);
        lv_jwt_free(&j);
    }
    char *big = malloc(LV_JWT_MAX_TOKEN + 2);
    memset(big, 'A', LV_JWT_MAX_TOKEN + 1);
    big[10] = '.';
    big[20] = '.';
    big[LV_JWT_MAX_TOKEN + 1] = '\0';
    assert_int_equal(lv_jwt_parse(big, strlen(big), &j, &why), LV_ELIMIT);
    free(big);
    /* JWKS: not JSON, no keys, too big, a short RSA key and an off-curve point skipped */
    lv_jwks_t s;
    assert_int_equal(lv_jwks_parse("nope", 4, &s, &why), LV_EPARSE);
    assert_int_equal(lv_jwks_parse("{\"k\":1}", 7, &s, &why), LV_EPARSE);
    assert_int_equal(lv_jwks_parse("{}", LV_JWKS_MAX_BYTES + 1, &s, &why), LV_ELIMIT);
    const char *weak = "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\"},"
                       "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\","
                       "\"y\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE\"},{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"AA\"}]}";
    assert_int_equal(lv_jwks_parse(weak, strlen(weak), &s, &why), 0);
    assert_int_equal(s.n, 0);
    lv_jwks_free(&s);
}

static int setup(void **state)
{
    (void)state;
    g_rsa = EVP_RSA_gen(2048);
    g_rsa2 = EVP_RSA_gen(2048);
    g_ec = EVP_EC_gen("P-256");
    return g_rsa && g_rsa2 && g_ec ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    EVP_PKEY_free(g_rsa);
    EVP_PKEY_free(g_rsa2);
    EVP_PKEY_free(g_ec);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rs256_and_es256_accepted), cmocka_unit_test(test_tampered_and_wrong_key),
        cmocka_unit_test(test_claims),                   cmocka_unit_test(test_refused_algorithms),
        cmocka_unit_test(test_malformed_and_oversize),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

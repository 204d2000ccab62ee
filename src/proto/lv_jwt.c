/* lv_jwt.c - parse and verify compact JWS tokens and JWKS documents (lv_jwt.h). */
#include "lv_jwt.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lv_b64.h"
#include "lv_common.h"

#define JWT_MAX_PART 6144      /* decoded bytes of the header or payload */
#define RSA_MIN_BITS 2048
#define RSA_MAX_BITS 8192

/* Decode one part and parse it as a JSON object. */
static int part_json(const char *p, size_t n, json_t **out)
{
    unsigned char buf[JWT_MAX_PART];
    size_t len;
    if (lv_b64url_decode(p, n, buf, sizeof(buf), &len) != 0)
        return LV_EPARSE;
    json_error_t err;
    json_t *j = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES, &err);
    if (!j)
        return LV_EPARSE;
    if (!json_is_object(j)) {
        json_decref(j);
        return LV_EPARSE;
    }
    *out = j;
    return 0;
}

void lv_jwt_free(lv_jwt_t *j)
{
    if (!j)
        return;
    json_decref(j->claims);
    free(j->signing_input);
    free(j->sig);
    memset(j, 0, sizeof(*j));
}

int lv_jwt_parse(const char *token, size_t len, lv_jwt_t *out, const char **why)
{
    json_t *hdr = NULL;
    int rc = LV_EPARSE;
    memset(out, 0, sizeof(*out));
    if (len > LV_JWT_MAX_TOKEN) {
        *why = "the token is longer than 8 KiB";
        return LV_ELIMIT;
    }
    const char *d1 = memchr(token, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token)) : NULL;
    if (!d1 || !d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token))) {
        *why = "the token is not three base64url parts separated by dots";
        return LV_EPARSE;
    }
    if (part_json(token, (size_t)(d1 - token), &hdr) != 0) {
        *why = "the token's header is not base64url JSON object";
        goto out;
    }
    const char *alg = json_string_value(json_object_get(hdr, "alg"));
    if (!alg) {
        *why = "the token's header names no alg";
        goto out;
    }
    if (strcmp(alg, "RS256") == 0) {
        out->alg = LV_JWT_RS256;
    } else if (strcmp(alg, "ES256") == 0) {
        out->alg = LV_JWT_ES256;
    } else {
        *why = "the token's alg is not accepted (only RS256 and ES256)";
        rc = LV_EINVAL;
        goto out;
    }
    /* RFC 7515 4.1.11: a critical extension we do not understand makes the token invalid */
    if (json_object_get(hdr, "crit")) {
        *why = "the token's header has crit extensions, which are not supported";
        rc = LV_EINVAL;
        goto out;
    }
    json_t *typ = json_object_get(hdr, "typ");
    if (typ && (!json_is_string(typ) ||
                (strcasecmp(json_string_value(typ), "JWT") != 0 && strcasecmp(json_string_value(typ), "at+jwt") != 0))) {
        *why = "the token's typ is not JWT";
        goto out;
    }
    json_t *kid = json_object_get(hdr, "kid");
    if (kid) {
        if (!json_is_string(kid) || json_string_length(kid) >= sizeof(out->kid)) {
            *why = "the token's kid is not a string of at most 127 bytes";
            goto out;
        }
        memcpy(out->kid, json_string_value(kid), json_string_length(kid) + 1);
    }
    if (part_json(d1 + 1, (size_t)(d2 - d1 - 1), &out->claims) != 0) {
        *why = "the token's payload is not a base64url JSON object";
        goto out;
    }
    size_t sig_b64 = len - (size_t)(d2 + 1 - token);
    size_t want = out->alg == LV_JWT_ES256 ? 64 : 0;
    out->sig = malloc(sig_b64 * 3 / 4 + 1);
    out->signing_len = (size_t)(d2 - token);
    out->signing_input = malloc(out->signing_len + 1);
    if (!out->sig || !out->signing_input) {
        *why = "out of memory";
        rc = LV_ENOMEM;
        goto out;
    }
    if (lv_b64url_decode(d2 + 1, sig_b64, out->sig, sig_b64 * 3 / 4 + 1, &out->sig_len) != 0 || out->sig_len == 0 ||
        (want && out->sig_len != want) || (!want && (out->sig_len < RSA_MIN_BITS / 8 || out->sig_len > RSA_MAX_BITS / 8))) {
        *why = "the token's signature is not base64url of the size its alg needs";
        goto out;
    }
    memcpy(out->signing_input, token, out->signing_len);
    out->signing_input[out->signing_len] = '\0';
    rc = 0;
out:
    json_decref(hdr);
    if (rc)
        lv_jwt_free(out);
    return rc;
}

const char *lv_jwt_claim_str(const lv_jwt_t *j, const char *name)
{
    return json_string_value(json_object_get(j->claims, name));
}

static bool aud_has(json_t *aud, const char *want)
{
    if (json_is_string(aud))
        return strcmp(json_string_value(aud), want) == 0;
    if (!json_is_array(aud))
        return false;
    size_t i;
    json_t *v;
    json_array_foreach(aud, i, v) {
        if (i >= 64)
            break;
        if (json_is_string(v) && strcmp(json_string_value(v), want) == 0)
            return true;
    }
    return false;
}

/* A NumericDate (RFC 7519 section 2): seconds, possibly fractional. */
static bool numeric_date(json_t *v, double *out)
{
    if (!json_is_number(v))
        return false;
    *out = json_number_value(v);
    return *out == *out; /* not NaN */
}

int lv_jwt_check_claims(const lv_jwt_t *j, const char *iss, const char *aud, int64_t now_s, const char **why)
{
    const char *got_iss = lv_jwt_claim_str(j, "iss");
    double exp, nbf;
    if (!got_iss || strcmp(got_iss, iss) != 0) {
        *why = "the token's issuer (iss) is not the configured one";
        return LV_EAUTH;
    }
    if (!aud_has(json_object_get(j->claims, "aud"), aud)) {
        *why = "the token's audience (aud) does not include this server";
        return LV_EAUTH;
    }
    if (!numeric_date(json_object_get(j->claims, "exp"), &exp)) {
        *why = "the token has no expiry (exp)";
        return LV_EAUTH;
    }
    if ((double)now_s > exp + LV_JWT_LEEWAY_S) {
        *why = "the token has expired";
        return LV_EAUTH;
    }
    json_t *n = json_object_get(j->claims, "nbf");
    if (n && !numeric_date(n, &nbf)) {
        *why = "the token's nbf is not a number";
        return LV_EAUTH;
    }
    if (n && (double)now_s < nbf - LV_JWT_LEEWAY_S) {
        *why = "the token is not valid yet (nbf)";
        return LV_EAUTH;
    }
    return 0;
}

/* ES256 signatures are r || s, 32 bytes each (RFC 7518 section 3.4); OpenSSL verifies the DER
 * ECDSA-Sig-Value. */
static int es256_der(const unsigned char *rs, unsigned char **der, int *der_len)
{
    ECDSA_SIG *s = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(rs, 32, NULL), *sv = BN_bin2bn(rs + 32, 32, NULL);
    int rc = LV_ENOMEM;
    if (!s || !r || !sv)
        goto out;
    if (!ECDSA_SIG_set0(s, r, sv))
        goto out;
    r = sv = NULL; /* owned by s now */
    *der = NULL;
    *der_len = i2d_ECDSA_SIG(s, der);
    if (*der_len > 0)
        rc = 0;
out:
    BN_free(r);
    BN_free(sv);
    ECDSA_SIG_free(s);
    return rc;
}

int lv_jwt_verify(const lv_jwt_t *j, const lv_jwk_t *key, const char **why)
{
    EVP_MD_CTX *ctx = NULL;
    unsigned char *der = NULL;
    const unsigned char *sig = j->sig;
    size_t sig_len = j->sig_len;
    int rc = LV_EAUTH;
    *why = "the token's signature does not verify";
    if (!key || !key->pkey || key->alg != j->alg || !j->signing_input) {
        *why = "no key of the token's algorithm to verify it";
        return LV_EAUTH;
    }
    if (j->alg == LV_JWT_ES256) {
        int der_len;
        if (es256_der(j->sig, &der, &der_len) != 0)
            goto out;
        sig = der;
        sig_len = (size_t)der_len;
    }
    ctx = EVP_MD_CTX_new();
    if (!ctx || EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, key->pkey) != 1)
        goto out;
    if (EVP_DigestVerify(ctx, sig, sig_len, (const unsigned char *)j->signing_input, j->signing_len) == 1)
        rc = 0;
out:
    EVP_MD_CTX_free(ctx);
    OPENSSL_free(der);
    return rc;
}

/* ---------- JWKS ---------- */

/* A base64url member of a JWK, decoded into buf (cap: 1024 bytes = an 8192-bit modulus). */
static int jwk_bytes(json_t *k, const char *name, unsigned char *buf, size_t cap, size_t *len)
{
    json_t *v = json_object_get(k, name);
    if (!json_is_string(v))
        return LV_EPARSE;
    if (lv_b64url_decode(json_string_value(v), json_string_length(v), buf, cap, len) != 0 || *len == 0)
        return LV_EPARSE;
    return 0;
}

static EVP_PKEY *pkey_fromdata(const char *type, OSSL_PARAM_BLD *bld)
{
    EVP_PKEY *pkey = NULL;
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    if (!params || !ctx || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
        pkey = NULL;
    OSSL_PARAM_free(params);
    EVP_PKEY_CTX_free(ctx);
    return pkey;
}

static EVP_PKEY *rsa_key(json_t *k)
{
    unsigned char n[RSA_MAX_BITS / 8], e[8];
    size_t nl, el;
    BIGNUM *bn = NULL, *be = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    EVP_PKEY *pkey = NULL;
    if (jwk_bytes(k, "n", n, sizeof(n), &nl) != 0 || jwk_bytes(k, "e", e, sizeof(e), &el) != 0)
        return NULL;
    bn = BN_bin2bn(n, (int)nl, NULL);
    be = BN_bin2bn(e, (int)el, NULL);
    if (!bn || !be || BN_num_bits(bn) < RSA_MIN_BITS || BN_is_zero(be) || !BN_is_odd(be))
        goto out;
    bld = OSSL_PARAM_BLD_new();
    if (!bld || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be))
        goto out;
    pkey = pkey_fromdata("RSA", bld);
out:
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn);
    BN_free(be);
    return pkey;
}

static EVP_PKEY *ec_key(json_t *k)
{
    unsigned char x[33], y[33], pt[65];
    size_t xl, yl;
    OSSL_PARAM_BLD *bld = NULL;
    EVP_PKEY *pkey = NULL;
    EVP_PKEY_CTX *chk = NULL;
    const char *crv = json_string_value(json_object_get(k, "crv"));
    if (!crv || strcmp(crv, "P-256") != 0)
        return NULL;
    /* RFC 7518 6.2.1.2: x and y are the full 32 bytes of the coordinate */
    if (jwk_bytes(k, "x", x, sizeof(x), &xl) != 0 || jwk_bytes(k, "y", y, sizeof(y), &yl) != 0 || xl != 32 ||
        yl != 32)
        return NULL;
    pt[0] = 0x04; /* uncompressed point */
    memcpy(pt + 1, x, 32);
    memcpy(pt + 33, y, 32);
    bld = OSSL_PARAM_BLD_new();
    if (!bld || !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) ||
        !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof(pt)))
        goto out;
    pkey = pkey_fromdata("EC", bld);
    /* a point off the curve is an invalid-curve attack waiting: refuse it */
    if (pkey && (!(chk = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL)) || EVP_PKEY_public_check(chk) != 1)) {
        EVP_PKEY_free(pkey);
        pkey = NULL;
    }
out:
    EVP_PKEY_CTX_free(chk);
    OSSL_PARAM_BLD_free(bld);
    return pkey;
}

void lv_jwks_free(lv_jwks_t *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++)
        EVP_PKEY_free(s->keys[i].pkey);
    memset(s, 0, sizeof(*s));
}

int lv_jwks_parse(const char *json, size_t len, lv_jwks_t *out, const char **why)
{
    memset(out, 0, sizeof(*out));
    if (len > LV_JWKS_MAX_BYTES) {
        *why = "the JWKS is larger than 64 KiB";
        return LV_ELIMIT;
    }
    json_error_t err;
    json_t *doc = json_loadb(json, len, 0, &err);
    json_t *keys = json_object_get(doc, "keys");
    if (!json_is_array(keys)) {
        json_decref(doc);
        *why = "the JWKS is not a JSON object with a keys array";
        return LV_EPARSE;
    }
    size_t i;
    json_t *k;
    json_array_foreach(keys, i, k) {
        if (out->n == LV_JWKS_MAX_KEYS || i >= 256)
            break;
        const char *kty = json_string_value(json_object_get(k, "kty"));
        const char *use = json_string_value(json_object_get(k, "use"));
        const char *alg = json_string_value(json_object_get(k, "alg"));
        json_t *kid = json_object_get(k, "kid");
        if (!kty || (json_object_get(k, "use") && (!use || strcmp(use, "sig") != 0)))
            continue;
        if (kid && (!json_is_string(kid) || json_string_length(kid) >= LV_JWT_KID_MAX))
            continue;
        lv_jwk_t *key = &out->keys[out->n];
        if (strcmp(kty, "RSA") == 0 && (!alg || strcmp(alg, "RS256") == 0)) {
            key->alg = LV_JWT_RS256;
            key->pkey = rsa_key(k);
        } else if (strcmp(kty, "EC") == 0 && (!alg || strcmp(alg, "ES256") == 0)) {
            key->alg = LV_JWT_ES256;
            key->pkey = ec_key(k);
        }
        if (!key->pkey) {
            memset(key, 0, sizeof(*key));
            continue;
        }
        if (kid)
            memcpy(key->kid, json_string_value(kid), json_string_length(kid) + 1);
        out->n++;
    }
    json_decref(doc);
    return 0;
}

const lv_jwk_t *lv_jwks_find(const lv_jwks_t *s, const char *kid, lv_jwt_alg_t alg)
{
    const lv_jwk_t *only = NULL;
    size_t n_alg = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (s->keys[i].alg != alg)
            continue;
        if (kid[0] && strcmp(s->keys[i].kid, kid) == 0)
            return &s->keys[i];
        only = &s->keys[i];
        n_alg++;
    }
    return !kid[0] && n_alg == 1 ? only : NULL;
}

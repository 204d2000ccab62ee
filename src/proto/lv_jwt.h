/* lv_jwt.h - JSON Web Tokens as single sign-on uses them (docs/internals/accounts.md
 * "Credentials"): a compact JWS (RFC 7515) split, base64url-decoded and parsed with caps; its
 * claims checked (iss, aud, exp, nbf, RFC 7519 section 4.1); its signature verified with a key from
 * the issuer's JWKS (RFC 7517), RS256 or ES256 only (RFC 7518 section 3). Pure: no I/O; OpenSSL 3
 * for the keys and the signatures, jansson for the JSON.
 *
 * Algorithms are an allow-list: "none", the HMAC family (HS256 with a public key as the secret is
 * the classic forgery) and everything else are refused by lv_jwt_parse, and a key is used only for
 * the algorithm its type fixes (RSA: RS256, EC P-256: ES256), never for the one a token asks. */
#ifndef LV_JWT_H
#define LV_JWT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define LV_JWT_MAX_TOKEN 8192   /* bytes of a compact token; longer: LV_ELIMIT */
#define LV_JWT_LEEWAY_S 60      /* clock skew allowed on exp and nbf */
#define LV_JWT_KID_MAX 128      /* bytes of a key id, the NUL included */
#define LV_JWKS_MAX_BYTES 65536 /* a JWKS document larger than this is refused */
#define LV_JWKS_MAX_KEYS 16     /* usable signing keys kept from one JWKS; the rest ignored */

typedef enum { LV_JWT_NONE = 0, LV_JWT_RS256 = 1, LV_JWT_ES256 = 2 } lv_jwt_alg_t;

/* A parsed (not yet trusted) token. Owns its memory: lv_jwt_free. */
typedef struct {
    lv_jwt_alg_t alg;
    char kid[LV_JWT_KID_MAX]; /* "" when the header has none */
    json_t *claims;           /* the payload object (owned) */
    char *signing_input;      /* "<header>.<payload>" as received (owned, NUL-terminated) */
    size_t signing_len;
    unsigned char *sig;       /* the decoded signature (owned) */
    size_t sig_len;
} lv_jwt_t;

/* One verification key. pkey is an OpenSSL EVP_PKEY (declared opaque here so callers need not
 * include OpenSSL). */
typedef struct {
    char kid[LV_JWT_KID_MAX]; /* "" when the JWK has none */
    lv_jwt_alg_t alg;         /* what this key verifies, fixed by its kty/crv */
    struct evp_pkey_st *pkey; /* owned by the set */
} lv_jwk_t;

typedef struct {
    lv_jwk_t keys[LV_JWKS_MAX_KEYS];
    size_t n;
} lv_jwks_t;

/** Parse token[0..len): three base64url parts (no padding), a JSON header with "alg" RS256 or
 * ES256 (typ, when present, "JWT" or "at+jwt", case-insensitive; "crit" refused), a JSON object
 * payload, a signature of the size the alg needs. 0 and *out (free it with lv_jwt_free);
 * else LV_ELIMIT (over LV_JWT_MAX_TOKEN), LV_EPARSE (malformed), LV_EINVAL (an algorithm we refuse),
 * LV_ENOMEM, with a static sentence in *why; *out is then empty (lv_jwt_free is still safe). */
int lv_jwt_parse(const char *token, size_t len, lv_jwt_t *out, const char **why);
/** Free what lv_jwt_parse kept (safe on a zeroed or freed token). */
void lv_jwt_free(lv_jwt_t *j);

/** Check the registered claims at now_s (seconds since the epoch): "iss" equal to iss, "aud" (a
 * string, or an array of strings) holding aud, "exp" present and now_s <= exp + leeway, "nbf" when
 * present now_s >= nbf - leeway (LV_JWT_LEEWAY_S both). 0, or LV_EAUTH with *why. */
int lv_jwt_check_claims(const lv_jwt_t *j, const char *iss, const char *aud, int64_t now_s, const char **why);
/** A string claim, or NULL when absent or not a string. Valid while j is. */
const char *lv_jwt_claim_str(const lv_jwt_t *j, const char *name);

/** Verify j's signature with key (whose alg must equal j's). 0, or LV_EAUTH with *why. */
int lv_jwt_verify(const lv_jwt_t *j, const lv_jwk_t *key, const char **why);

/** Parse a JWKS document json[0..len) ({"keys":[...]}, at most LV_JWKS_MAX_BYTES): keep the
 * signature keys we can use (kty RSA with n and e, 2048..8192 bits; kty EC with crv P-256 and a
 * point on the curve; "use" absent or "sig"; "alg" absent or the one the type fixes), skip the
 * others (encryption keys, other curves, Ed25519). 0 and *out (free with lv_jwks_free; it may
 * hold 0 keys); else LV_ELIMIT, LV_EPARSE, LV_ENOMEM with *why. */
int lv_jwks_parse(const char *json, size_t len, lv_jwks_t *out, const char **why);
void lv_jwks_free(lv_jwks_t *s);
/** The key for a token: the one with kid and alg; when kid is "" the only key of alg (NULL when
 * there are several: the token must then say which). */
const lv_jwk_t *lv_jwks_find(const lv_jwks_t *s, const char *kid, lv_jwt_alg_t alg);

#endif

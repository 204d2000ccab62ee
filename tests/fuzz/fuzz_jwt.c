/* fuzz_jwt.c - libFuzzer driver for lv_jwt: the input is a JWKS document, a NUL byte, then a
 * compact token. Both are parsed; a token that parses has its claims checked and its signature
 * verified with whatever key the JWKS yields for it. Also: base64url encode then decode of the
 * raw input must give it back.
 * fuzz-sources: src/common/lv_common.c src/common/lv_buf.c src/proto/lv_b64.c src/proto/lv_jwt.c */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lv_b64.h"
#include "lv_common.h"
#include "lv_jwt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *why = NULL;
    const uint8_t *nul = memchr(data, 0, size);
    size_t jwks_len = nul ? (size_t)(nul - data) : 0;
    const char *tok = nul ? (const char *)nul + 1 : (const char *)data;
    size_t tok_len = nul ? size - jwks_len - 1 : size;

    lv_jwks_t s;
    if (lv_jwks_parse((const char *)data, jwks_len, &s, &why) != 0 && !why)
        abort();
    lv_jwt_t j;
    int rc = lv_jwt_parse(tok, tok_len, &j, &why);
    if (rc == 0) {
        if (!j.claims || !j.signing_input || !j.sig)
            abort();
        lv_jwt_check_claims(&j, "https://idp.test", "livevlm", 1700000000, &why);
        lv_jwt_claim_str(&j, "sub");
        lv_jwt_verify(&j, lv_jwks_find(&s, j.kid, j.alg), &why);
    } else if (!why) {
        abort();
    }
    lv_jwt_free(&j);
    lv_jwks_free(&s);

    if (size <= 4096) {
        char enc[5600];
        unsigned char dec[4097];
        size_t n;
        if (lv_b64url_encode(data, size, enc, sizeof(enc)) != 0 ||
            lv_b64url_decode(enc, strlen(enc), dec, sizeof(dec), &n) != 0 || n != size || memcmp(dec, data, size) != 0)
            abort();
    }
    return 0;
}

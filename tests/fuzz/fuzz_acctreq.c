/* fuzz_acctreq.c - libFuzzer driver for the account routes' JSON bodies (lv_acctreq.h: sign-in,
 * password change, invite, new API key: text anyone can send without a credential). The first byte
 * picks the parser, the rest is the body. Checks: only 0 or LV_EINVAL; a refusal has a code and a
 * sentence; what parsed obeys the caps (NUL-terminated within its buffer, no control byte in a key
 * name, a new password that passes lv_acctreq_password_ok, an invite code of 64 hex digits).
 * fuzz-sources: src/proto/lv_acctreq.c src/common/lv_utf8.c src/common/lv_common.c
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lv_acctreq.h"
#include "lv_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_str(const char *s, size_t cap)
{
    if (strnlen(s, cap + 1) > cap)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned which = data[0] % 4;
    const uint8_t *body = data + 1;
    size_t len = size - 1;
    lv_acctreq_err_t err = {0};
    int rc;
    if (which == 0) {
        lv_acctreq_login_t in;
        rc = lv_acctreq_login(body, len, &in, &err);
        if (rc == 0) {
            check_str(in.name, LV_ACCTREQ_NAME_MAX);
            check_str(in.password, LV_ACCTREQ_PASSWORD_MAX);
            check_str(in.token, LV_ACCTREQ_TOKEN_MAX);
        }
    } else if (which == 1) {
        lv_acctreq_passwd_t in;
        rc = lv_acctreq_passwd(body, len, &in, &err);
        if (rc == 0 && lv_acctreq_password_ok(in.new_password, &err) != 0)
            abort();
    } else if (which == 2) {
        lv_acctreq_invite_t in;
        rc = lv_acctreq_invite(body, len, &in, &err);
        if (rc == 0) {
            if (strlen(in.code) != LV_ACCTREQ_CODE_LEN || strspn(in.code, "0123456789abcdef") != LV_ACCTREQ_CODE_LEN)
                abort();
            if (lv_acctreq_password_ok(in.password, &err) != 0)
                abort();
        }
    } else {
        lv_acctreq_key_t in;
        rc = lv_acctreq_key(body, len, &in, &err);
        if (rc == 0) {
            check_str(in.name, LV_ACCTREQ_KEYNAME_MAX);
            if (!in.name[0] || in.expires_days < 0 || in.expires_days > LV_ACCTREQ_EXPIRES_DAYS_MAX)
                abort();
            for (const char *p = in.name; *p; p++)
                if ((unsigned char)*p < 0x20 || *p == 0x7f)
                    abort();
        }
    }
    if (rc != 0 && (rc != LV_EINVAL || !err.code || !err.message || !err.message[0]))
        abort();
    return 0;
}

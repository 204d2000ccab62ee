/* test_acctreq.c - the account routes' bodies (lv_acctreq.h): what each accepts, every cap and
 * refusal with its code, and the password rules (characters counted, not bytes). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "lv_acctreq.h"
#include "lv_common.h"

static lv_acctreq_err_t err;

#define LOGIN(s, out) lv_acctreq_login((s), strlen(s), (out), &err)

static void login_fields(void **st)
{
    (void)st;
    lv_acctreq_login_t in;
    assert_int_equal(LOGIN("{\"name\":\"alice\",\"password\":\"pw pw pw\"}", &in), 0);
    assert_string_equal(in.name, "alice");
    assert_string_equal(in.password, "pw pw pw");
    assert_true(in.has_name && in.has_password && !in.has_token);
    assert_int_equal(LOGIN("{\"token\":\"abc\"}", &in), 0);
    assert_true(in.has_token && !in.has_name);
    assert_string_equal(in.token, "abc");
    assert_int_equal(LOGIN("{\"name\":null}", &in), 0);
    assert_false(in.has_name);
}

static void login_refusals(void **st)
{
    (void)st;
    lv_acctreq_login_t in;
    char big[LV_ACCTREQ_PASSWORD_MAX + 64];
    assert_int_equal(LOGIN("", &in), LV_EINVAL);
    assert_string_equal(err.code, "bad_request");
    assert_int_equal(LOGIN("not json", &in), LV_EINVAL);
    assert_string_equal(err.code, "bad_json");
    assert_int_equal(LOGIN("[1]", &in), LV_EINVAL);
    assert_string_equal(err.code, "bad_request");
    assert_int_equal(LOGIN("{\"name\":1}", &in), LV_EINVAL);
    assert_string_equal(err.code, "bad_field");
    assert_int_equal(LOGIN("{\"name\":\"a\",\"name\":\"b\"}", &in), LV_EINVAL);
    assert_string_equal(err.code, "bad_json");
    assert_int_equal(LOGIN("{\"name\":\"a\\u0000b\"}", &in), LV_EINVAL); /* NUL inside a string */
    /* a password of 257 bytes: refused with a sentence, not cut */
    memset(big, 0, sizeof(big));
    int n = snprintf(big, sizeof(big), "{\"password\":\"");
    memset(big + n, 'x', LV_ACCTREQ_PASSWORD_MAX + 1);
    memcpy(big + n + LV_ACCTREQ_PASSWORD_MAX + 1, "\"}", 3);
    assert_int_equal(LOGIN(big, &in), LV_EINVAL);
    assert_string_equal(err.code, "bad_field");
    assert_non_null(strstr(err.message, "256"));
    /* exactly 256 is taken */
    memcpy(big + n + LV_ACCTREQ_PASSWORD_MAX, "\"}", 3);
    assert_int_equal(LOGIN(big, &in), 0);
    assert_int_equal(strlen(in.password), LV_ACCTREQ_PASSWORD_MAX);
}

static void password_rules(void **st)
{
    (void)st;
    assert_int_equal(lv_acctreq_password_ok("0123456789", &err), 0);
    assert_int_equal(lv_acctreq_password_ok("012345678", &err), LV_EINVAL);
    assert_string_equal(err.code, "password_too_short");
    /* ten characters of two bytes each: characters count, not bytes */
    assert_int_equal(lv_acctreq_password_ok("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9",
                                            &err),
                     0);
    /* five two-byte characters: 10 bytes, still too short */
    assert_int_equal(lv_acctreq_password_ok("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", &err), LV_EINVAL);
    assert_int_equal(lv_acctreq_password_ok("0123456789\n", &err), LV_EINVAL);
    assert_string_equal(err.code, "bad_password");
    char big[300];
    memset(big, 'x', 257);
    big[257] = '\0';
    assert_int_equal(lv_acctreq_password_ok(big, &err), LV_EINVAL);
    assert_string_equal(err.code, "password_too_long");
}

static void passwd_and_invite(void **st)
{
    (void)st;
    lv_acctreq_passwd_t p;
    lv_acctreq_invite_t inv;
    const char *ok = "{\"current\":\"old\",\"new\":\"a long new one\"}";
    assert_int_equal(lv_acctreq_passwd(ok, strlen(ok), &p, &err), 0);
    assert_string_equal(p.current, "old");
    assert_string_equal(p.new_password, "a long new one");
    const char *shortnew = "{\"current\":\"old\",\"new\":\"short\"}";
    assert_int_equal(lv_acctreq_passwd(shortnew, strlen(shortnew), &p, &err), LV_EINVAL);
    assert_string_equal(err.code, "password_too_short");
    const char *missing = "{\"new\":\"a long new one\"}";
    assert_int_equal(lv_acctreq_passwd(missing, strlen(missing), &p, &err), LV_EINVAL);
    assert_string_equal(err.code, "missing_field");

    char body[200];
    snprintf(body, sizeof(body), "{\"code\":\"%064d\",\"password\":\"0123456789\"}", 7);
    assert_int_equal(lv_acctreq_invite(body, strlen(body), &inv, &err), 0);
    assert_int_equal(strlen(inv.code), 64);
    snprintf(body, sizeof(body), "{\"code\":\"%063d\",\"password\":\"0123456789\"}", 7);
    assert_int_equal(lv_acctreq_invite(body, strlen(body), &inv, &err), LV_EINVAL);
    assert_string_equal(err.code, "bad_field");
    snprintf(body, sizeof(body), "{\"code\":\"%063dG\",\"password\":\"0123456789\"}", 7);
    assert_int_equal(lv_acctreq_invite(body, strlen(body), &inv, &err), LV_EINVAL);
}

static void keys(void **st)
{
    (void)st;
    lv_acctreq_key_t k;
    assert_int_equal(lv_acctreq_key("", 0, &k, &err), 0);
    assert_string_equal(k.name, "key");
    assert_false(k.admin_scope);
    assert_int_equal(k.expires_days, 0);
    const char *full = "{\"name\":\"ci runner\",\"scope\":\"admin\",\"expires_days\":30}";
    assert_int_equal(lv_acctreq_key(full, strlen(full), &k, &err), 0);
    assert_string_equal(k.name, "ci runner");
    assert_true(k.admin_scope);
    assert_int_equal(k.expires_days, 30);
    const char *bad[] = {
        "{\"scope\":\"root\"}", "{\"expires_days\":-1}", "{\"expires_days\":3651}", "{\"expires_days\":1.5}",
        "{\"expires_days\":\"7\"}", "{\"name\":\"\"}", "{\"name\":\"a\\nb\"}",
    };
    for (size_t i = 0; i < LV_ARRAY_LEN(bad); i++) {
        err.code = NULL;
        if (lv_acctreq_key(bad[i], strlen(bad[i]), &k, &err) != LV_EINVAL)
            fail_msg("%s was accepted", bad[i]);
        assert_string_equal(err.code, "bad_field");
        assert_non_null(err.message);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(login_fields),   cmocka_unit_test(login_refusals), cmocka_unit_test(password_rules),
        cmocka_unit_test(passwd_and_invite), cmocka_unit_test(keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

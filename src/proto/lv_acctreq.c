/* lv_acctreq.c - the account routes' JSON bodies, parsed and capped (lv_acctreq.h). */
#include "lv_acctreq.h"

#include <jansson.h>
#include <stdint.h>
#include <string.h>

#include "lv_common.h"
#include "lv_utf8.h"

/* One field: where it goes, its cap, and what to say when it is wrong. */
typedef struct {
    const char *key;
    char *out;
    size_t max_bytes;
    bool *has;           /* may be NULL */
    bool required;
    const char *missing; /* sentences: static, ASCII, no quotes */
    const char *wrong;
} field_t;

static int fail(lv_acctreq_err_t *err, const char *code, const char *message)
{
    err->code = code;
    err->message = message;
    return LV_EINVAL;
}

static int load_object(const void *body, size_t len, json_t **out, lv_acctreq_err_t *err)
{
    *out = NULL;
    if (len == 0)
        return fail(err, "bad_request", "send a JSON object");
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
    if (!root)
        return fail(err, "bad_json", "the body is not valid JSON (or repeats a field)");
    if (!json_is_object(root)) {
        json_decref(root);
        return fail(err, "bad_request", "send a JSON object");
    }
    *out = root;
    return 0;
}

/* Copy a string field; jansson already refused invalid UTF-8 and NUL bytes (no JSON_ALLOW_NUL). */
static int take(json_t *root, const field_t *f, lv_acctreq_err_t *err)
{
    json_t *v = json_object_get(root, f->key);
    f->out[0] = '\0';
    if (f->has)
        *f->has = false;
    if (!v || json_is_null(v))
        return f->required ? fail(err, "missing_field", f->missing) : 0;
    if (!json_is_string(v) || json_string_length(v) > f->max_bytes)
        return fail(err, "bad_field", f->wrong);
    memcpy(f->out, json_string_value(v), json_string_length(v) + 1);
    if (f->has)
        *f->has = true;
    return 0;
}

static int take_all(json_t *root, const field_t *fields, size_t n, lv_acctreq_err_t *err)
{
    for (size_t i = 0; i < n; i++)
        if (take(root, &fields[i], err) != 0)
            return LV_EINVAL;
    return 0;
}

/* A body that is an object of string fields only: load it, take every field, let it go. */
static int take_body(const void *body, size_t len, const field_t *fields, size_t n, lv_acctreq_err_t *err)
{
    json_t *root;
    int rc = load_object(body, len, &root, err);
    if (rc)
        return rc;
    rc = take_all(root, fields, n, err);
    json_decref(root);
    return rc;
}

int lv_acctreq_password_ok(const char *pw, lv_acctreq_err_t *err)
{
    size_t len = strlen(pw), chars = 0;
    if (len > LV_ACCTREQ_PASSWORD_MAX)
        return fail(err, "password_too_long", "a password has at most 256 bytes");
    if (!lv_utf8_valid(pw, len))
        return fail(err, "bad_password", "a password must be UTF-8 text");
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)pw[i];
        if (c < 0x20 || c == 0x7f)
            return fail(err, "bad_password", "a password may not hold control characters (tab, newline...)");
        chars += (c & 0xC0) != 0x80; /* count lead bytes: characters, not bytes */
    }
    if (chars < LV_ACCTREQ_PASSWORD_MIN)
        return fail(err, "password_too_short", "a new password needs at least 10 characters");
    return 0;
}

int lv_acctreq_login(const void *body, size_t len, lv_acctreq_login_t *out, lv_acctreq_err_t *err)
{
    memset(out, 0, sizeof(*out));
    const field_t fields[] = {
        {"name", out->name, LV_ACCTREQ_NAME_MAX, &out->has_name, false, NULL,
         "name must be a string of at most 64 characters"},
        {"password", out->password, LV_ACCTREQ_PASSWORD_MAX, &out->has_password, false, NULL,
         "password must be a string of at most 256 bytes"},
        {"token", out->token, LV_ACCTREQ_TOKEN_MAX, &out->has_token, false, NULL,
         "token must be a string of at most 128 characters"},
    };
    return take_body(body, len, fields, LV_ARRAY_LEN(fields), err);
}

int lv_acctreq_passwd(const void *body, size_t len, lv_acctreq_passwd_t *out, lv_acctreq_err_t *err)
{
    memset(out, 0, sizeof(*out));
    const field_t fields[] = {
        {"current", out->current, LV_ACCTREQ_PASSWORD_MAX, NULL, true, "send the current password as current",
         "current must be a string of at most 256 bytes"},
        {"new", out->new_password, LV_ACCTREQ_PASSWORD_MAX, NULL, true, "send the new password as new",
         "new must be a string of at most 256 bytes (a password has at most 256 bytes)"},
    };
    int rc = take_body(body, len, fields, LV_ARRAY_LEN(fields), err);
    if (rc == 0)
        rc = lv_acctreq_password_ok(out->new_password, err);
    return rc;
}

static bool all_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

int lv_acctreq_invite(const void *body, size_t len, lv_acctreq_invite_t *out, lv_acctreq_err_t *err)
{
    memset(out, 0, sizeof(*out));
    const field_t fields[] = {
        {"code", out->code, LV_ACCTREQ_CODE_LEN, NULL, true, "send the invite code as code",
         "the invite code is 64 hex digits: copy the whole link"},
        {"password", out->password, LV_ACCTREQ_PASSWORD_MAX, NULL, true, "choose a password",
         "password must be a string of at most 256 bytes (a password has at most 256 bytes)"},
    };
    int rc = take_body(body, len, fields, LV_ARRAY_LEN(fields), err);
    if (rc == 0 && (strlen(out->code) != LV_ACCTREQ_CODE_LEN || !all_hex(out->code, LV_ACCTREQ_CODE_LEN)))
        rc = fail(err, "bad_field", "the invite code is 64 hex digits: copy the whole link");
    if (rc == 0)
        rc = lv_acctreq_password_ok(out->password, err);
    return rc;
}

int lv_acctreq_key(const void *body, size_t len, lv_acctreq_key_t *out, lv_acctreq_err_t *err)
{
    json_t *root = NULL;
    char scope[16];
    int rc = 0;
    memset(out, 0, sizeof(*out));
    memcpy(out->name, "key", 4);
    if (len == 0)
        return 0;
    if ((rc = load_object(body, len, &root, err)) != 0)
        return rc;
    bool has_name = false;
    const field_t fields[] = {
        {"name", out->name, LV_ACCTREQ_KEYNAME_MAX, &has_name, false, NULL,
         "name must be a string of at most 128 bytes"},
        {"scope", scope, sizeof(scope) - 1, NULL, false, NULL, "scope is stream or admin"},
    };
    if ((rc = take_all(root, fields, LV_ARRAY_LEN(fields), err)) != 0)
        goto out;
    if (!has_name)
        memcpy(out->name, "key", 4);
    size_t n = strlen(out->name);
    if (n == 0) {
        rc = fail(err, "bad_field", "name may not be empty (leave it out for the default)");
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)out->name[i] < 0x20 || out->name[i] == 0x7f) {
            rc = fail(err, "bad_field", "name may not hold control characters");
            goto out;
        }
    if (scope[0] && strcmp(scope, "stream") != 0 && strcmp(scope, "admin") != 0) {
        rc = fail(err, "bad_field", "scope is stream or admin");
        goto out;
    }
    out->admin_scope = strcmp(scope, "admin") == 0;
    json_t *d = json_object_get(root, "expires_days");
    if (d && !json_is_null(d)) {
        if (!json_is_integer(d) || json_integer_value(d) < 0 || json_integer_value(d) > LV_ACCTREQ_EXPIRES_DAYS_MAX) {
            rc = fail(err, "bad_field", "expires_days is a whole number of days from 0 (never) to 3650");
            goto out;
        }
        out->expires_days = (int)json_integer_value(d);
    }
out:
    json_decref(root);
    return rc;
}

/* lv_acctreq.h - the JSON bodies a person sends to their own account routes (lv_account_api.c):
 * sign-in, password change, invite redemption, a new API key. Pure (no I/O, no allocation that
 * outlives a call): everything here is remotely controlled, so every field is capped, typed and
 * checked, and a refusal comes with a code and a sentence the page can show as it is. */
#ifndef LV_ACCTREQ_H
#define LV_ACCTREQ_H

#include <stdbool.h>
#include <stddef.h>

#define LV_ACCTREQ_NAME_MAX 64      /* bytes of a login name (lv_acct.h LV_ACCT_NAME_MAX - 1) */
#define LV_ACCTREQ_PASSWORD_MAX 256 /* bytes of a password; argon2 would take more, a person does not */
#define LV_ACCTREQ_PASSWORD_MIN 10  /* characters (code points) of a new password */
#define LV_ACCTREQ_TOKEN_MAX 128    /* bytes of an access token (--auth token: 64 hex) */
#define LV_ACCTREQ_CODE_LEN 64      /* hex digits of an invite code */
#define LV_ACCTREQ_KEYNAME_MAX 128  /* bytes of an API key's label (LV_ACCT_TEXT_MAX - 1) */
#define LV_ACCTREQ_EXPIRES_DAYS_MAX 3650

/* A refusal: both strings are static constants (ASCII, no quotes), safe to put in a JSON error. */
typedef struct {
    const char *code;
    const char *message;
} lv_acctreq_err_t;

/* POST /api/v1/login: {name, password} with accounts; {token} with --auth token. Absent fields
 * are "" (has_* false). */
typedef struct {
    char name[LV_ACCTREQ_NAME_MAX + 1];
    char password[LV_ACCTREQ_PASSWORD_MAX + 1];
    char token[LV_ACCTREQ_TOKEN_MAX + 1];
    bool has_name, has_password, has_token;
} lv_acctreq_login_t;

/* POST /api/v1/password {current, new}. */
typedef struct {
    char current[LV_ACCTREQ_PASSWORD_MAX + 1];
    char new_password[LV_ACCTREQ_PASSWORD_MAX + 1];
} lv_acctreq_passwd_t;

/* POST /api/v1/invite {code, password}. */
typedef struct {
    char code[LV_ACCTREQ_CODE_LEN + 1];
    char password[LV_ACCTREQ_PASSWORD_MAX + 1];
} lv_acctreq_invite_t;

/* POST /api/v1/keys {name, scope, expires_days}: name defaults to "key", scope to "stream",
 * expires_days to 0 (never). */
typedef struct {
    char name[LV_ACCTREQ_KEYNAME_MAX + 1];
    bool admin_scope;
    int expires_days;
} lv_acctreq_key_t;

/** Parse a sign-in body. 0, or LV_EINVAL with *err set (not JSON, not an object, a field of the
 * wrong type or over its cap). Neither a name nor a token is not an error here: the route decides
 * what its mode needs. Passwords are wiped from out by the caller (explicit_bzero) when done. */
int lv_acctreq_login(const void *body, size_t len, lv_acctreq_login_t *out, lv_acctreq_err_t *err);
/** Parse a password change; the new password must pass lv_acctreq_password_ok. */
int lv_acctreq_passwd(const void *body, size_t len, lv_acctreq_passwd_t *out, lv_acctreq_err_t *err);
/** Parse an invite redemption: code is 64 lowercase hex digits, password passes the rules. */
int lv_acctreq_invite(const void *body, size_t len, lv_acctreq_invite_t *out, lv_acctreq_err_t *err);
/** Parse a new key: name 1..128 bytes of printable UTF-8, scope "stream" or "admin", expires_days
 * an integer 0..3650. An empty body takes every default. */
int lv_acctreq_key(const void *body, size_t len, lv_acctreq_key_t *out, lv_acctreq_err_t *err);
/** A new password's rules: LV_ACCTREQ_PASSWORD_MIN characters or more, LV_ACCTREQ_PASSWORD_MAX
 * bytes or fewer, no control characters. 0 or LV_EINVAL with *err. */
int lv_acctreq_password_ok(const char *pw, lv_acctreq_err_t *err);

#endif

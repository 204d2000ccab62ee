/* test_acct.c - every lv_acct function on a real SQLite file, and the same suite on a real
 * PostgreSQL under scripts/pg-test.sh: users and passwords (argon2id, the same time for an unknown
 * user), invites, OIDC linking, sign-ins, API keys, tenants, usage, audit, meta.version bumps and
 * the snapshot. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "db_fixture.h"
#include "lv_acct.h"
#include "lv_common.h"

static int64_t version(lv_db_t *db)
{
    int64_t v = -1;
    assert_int_equal(lv_acct_db_version(db, &v), 0);
    return v;
}

static lv_db_t *open_db(void **state)
{
    lv_db_t *db = dbfx_open(*state, NULL);
    assert_non_null(db);
    return db;
}

static void test_names_roles_sha(void **state)
{
    (void)state;
    assert_int_equal(lv_acct_check_name("alice.b+c@x-y_z"), 0);
    assert_int_not_equal(lv_acct_check_name(""), 0);
    assert_int_not_equal(lv_acct_check_name("a b"), 0);
    assert_int_not_equal(lv_acct_check_name("a'b"), 0);
    char n65[66];
    memset(n65, 'a', 65);
    n65[65] = '\0';
    assert_int_not_equal(lv_acct_check_name(n65), 0);
    n65[64] = '\0';
    assert_int_equal(lv_acct_check_name(n65), 0);
    assert_int_equal(lv_acct_check_id("acme-1_b"), 0);
    assert_int_not_equal(lv_acct_check_id("Acme"), 0);
    assert_int_not_equal(lv_acct_check_id(""), 0);
    assert_int_not_equal(lv_acct_check_id("012345678901234567890123456789012"), 0);
    lv_role_t r;
    assert_int_equal(lv_role_parse("admin", &r), 0);
    assert_int_equal(r, LV_ROLE_ADMIN);
    assert_int_equal(lv_role_parse("viewer", &r), 0);
    assert_int_equal(r, LV_ROLE_VIEWER);
    assert_int_equal(lv_role_parse("root", &r), LV_EINVAL);
    assert_string_equal(lv_role_name(LV_ROLE_USER), "user");
    char h[LV_ACCT_HASH_HEX];
    lv_acct_sha256_hex("abc", 3, h);
    assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void test_users(void **state)
{
    lv_db_t *db = open_db(state);
    int64_t v0 = version(db);
    lv_user_t u, v;
    assert_int_equal(lv_acct_db_user_add(db, "alice", "pw-alice-1", LV_ROLE_ADMIN, NULL, &u), 0);
    assert_int_equal(strlen(u.id), 16);
    assert_string_equal(u.tenant, "default");
    assert_true(u.has_password);
    assert_true(version(db) > v0);
    assert_int_equal(lv_acct_db_user_add(db, "alice", NULL, LV_ROLE_USER, NULL, NULL), LV_EEXIST);
    assert_non_null(strstr(lv_db_error(db), "exists"));
    assert_int_equal(lv_acct_db_user_add(db, "bad name", NULL, LV_ROLE_USER, NULL, NULL), LV_EINVAL);
    assert_int_equal(lv_acct_db_user_add(db, "bob", NULL, (lv_role_t)7, NULL, NULL), LV_EINVAL);
    assert_int_equal(lv_acct_db_user_add(db, "bob", NULL, LV_ROLE_USER, "nosuch", NULL), LV_ENOTFOUND);
    assert_non_null(strstr(lv_db_error(db), "nosuch"));
    assert_int_equal(lv_acct_db_user_add(db, "bob", "", LV_ROLE_VIEWER, "default", &v), 0);
    assert_false(v.has_password);

    int64_t admins = -1;
    assert_int_equal(lv_acct_db_admin_count(db, &admins), 0);
    assert_int_equal(admins, 1);

    lv_user_t *list = NULL;
    size_t n = 0;
    assert_int_equal(lv_acct_db_user_list(db, &list, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(list[0].name, "alice");
    assert_string_equal(list[1].name, "bob");
    assert_int_equal(list[1].role, LV_ROLE_VIEWER);
    assert_false(list[1].has_password);
    free(list);

    /* update: role, weight, quota, tenant */
    lv_tenant_t t = {.id = "acme", .name = "Acme", .weight = 3};
    assert_int_equal(lv_acct_db_tenant_put(db, &t), 0);
    int64_t v1 = version(db);
    v.role = LV_ROLE_USER;
    v.weight = 5;
    v.quota.fpm = 60;
    v.quota.sessions = 2;
    snprintf(v.tenant, sizeof(v.tenant), "acme");
    assert_int_equal(lv_acct_db_user_update(db, &v), 0);
    assert_true(version(db) > v1);
    assert_int_equal(lv_acct_db_user_list(db, &list, &n), 0);
    assert_int_equal(list[1].weight, 5);
    assert_int_equal(list[1].quota.fpm, 60);
    assert_int_equal(list[1].quota.sessions, 2);
    assert_string_equal(list[1].tenant, "acme");
    assert_int_equal(list[1].role, LV_ROLE_USER);
    free(list);
    snprintf(v.name, sizeof(v.name), "alice");
    assert_int_equal(lv_acct_db_user_update(db, &v), LV_EEXIST);
    snprintf(v.name, sizeof(v.name), "bob");
    v.weight = 0;
    assert_int_equal(lv_acct_db_user_update(db, &v), LV_EINVAL);
    v.weight = 1;
    snprintf(v.tenant, sizeof(v.tenant), "nosuch");
    assert_int_equal(lv_acct_db_user_update(db, &v), LV_ENOTFOUND);
    lv_user_t ghost = v;
    snprintf(ghost.id, sizeof(ghost.id), "0000000000000000");
    snprintf(ghost.tenant, sizeof(ghost.tenant), "default");
    assert_int_equal(lv_acct_db_user_update(db, &ghost), LV_ENOTFOUND);

    /* delete takes the user's keys and sign-ins with it */
    char secret[LV_ACCT_SECRET_HEX + 8], cookie[LV_ACCT_SECRET_HEX];
    assert_int_equal(lv_acct_db_key_add(db, v.id, "k", LV_SCOPE_STREAM, 0, secret, NULL), 0);
    assert_int_equal(lv_acct_db_login_add(db, v.id, "127.0.0.1", cookie, NULL), 0);
    assert_int_equal(lv_acct_db_user_delete(db, v.id), 0);
    assert_int_equal(lv_acct_db_user_delete(db, v.id), LV_ENOTFOUND);
    lv_apikey_t *keys = NULL;
    assert_int_equal(lv_acct_db_key_list(db, NULL, &keys, &n), 0);
    assert_int_equal(n, 0);
    assert_null(keys);
    lv_acct_snap_t *s = NULL;
    assert_int_equal(lv_acct_db_load(db, &s), 0);
    char h[LV_ACCT_HASH_HEX];
    lv_acct_sha256_hex(cookie, 64, h);
    assert_null(lv_acct_snap_login(s, h));
    assert_int_equal(lv_acct_snap_users(s), 1);
    lv_acct_snap_free(s);
    lv_db_close(db);
}

static void test_passwords(void **state)
{
    lv_db_t *db = open_db(state);
    lv_user_t u, out;
    assert_int_equal(lv_acct_db_user_add(db, "carol", "correct horse", LV_ROLE_USER, NULL, &u), 0);
    assert_int_equal(lv_acct_db_user_add(db, "nopw", NULL, LV_ROLE_USER, NULL, NULL), 0);
    assert_int_equal(lv_acct_db_check_password(db, "carol", "correct horse", &out), 0);
    assert_string_equal(out.id, u.id);
    uint64_t t0 = lv_now_us();
    assert_int_equal(lv_acct_db_check_password(db, "carol", "wrong", NULL), LV_EAUTH);
    uint64_t t_wrong = lv_now_us() - t0;
    t0 = lv_now_us();
    assert_int_equal(lv_acct_db_check_password(db, "nobody", "wrong", NULL), LV_EAUTH);
    uint64_t t_unknown = lv_now_us() - t0;
    /* Both ran one argon2id verification: within a factor of 3 of each other (measured ~1:1). */
    printf("# check_password: wrong %llu us, unknown user %llu us\n", (unsigned long long)t_wrong,
           (unsigned long long)t_unknown);
    assert_true(t_unknown * 3 > t_wrong && t_wrong * 3 > t_unknown);
    assert_int_equal(lv_acct_db_check_password(db, "nopw", "", NULL), LV_EAUTH);
    assert_int_equal(lv_acct_db_check_password(db, "nopw", "x", NULL), LV_EAUTH);
    assert_int_equal(lv_acct_db_check_password(db, "bad name!", "x", NULL), LV_EAUTH);
    assert_int_equal(lv_acct_db_check_password(db, "carol", NULL, NULL), LV_EAUTH);

    int64_t v = version(db);
    assert_int_equal(lv_acct_db_user_set_password(db, u.id, "new pass"), 0);
    assert_true(version(db) > v);
    assert_int_equal(lv_acct_db_check_password(db, "carol", "correct horse", NULL), LV_EAUTH);
    assert_int_equal(lv_acct_db_check_password(db, "carol", "new pass", NULL), 0);
    assert_int_equal(lv_acct_db_user_set_password(db, "0000000000000000", "x"), LV_ENOTFOUND);

    /* disabled: the right password fails too, and its sign-ins are gone */
    char cookie[LV_ACCT_SECRET_HEX];
    lv_login_t l;
    assert_int_equal(lv_acct_db_login_add(db, u.id, "::1", cookie, &l), 0);
    v = version(db);
    assert_int_equal(lv_acct_db_user_set_disabled(db, u.id, true), 0);
    assert_true(version(db) > v);
    assert_int_equal(lv_acct_db_check_password(db, "carol", "new pass", NULL), LV_EAUTH);
    lv_acct_snap_t *s;
    assert_int_equal(lv_acct_db_load(db, &s), 0);
    assert_null(lv_acct_snap_login(s, l.hash));
    assert_true(lv_acct_snap_user(s, u.id)->disabled);
    lv_acct_snap_free(s);
    assert_int_equal(lv_acct_db_login_add(db, u.id, "::1", cookie, &l), LV_EAUTH);
    assert_int_equal(lv_acct_db_user_set_disabled(db, u.id, false), 0);
    assert_int_equal(lv_acct_db_check_password(db, "carol", "new pass", NULL), 0);
    /* an empty password clears it */
    assert_int_equal(lv_acct_db_user_set_password(db, u.id, ""), 0);
    assert_int_equal(lv_acct_db_check_password(db, "carol", "new pass", NULL), LV_EAUTH);
    lv_db_close(db);
}

static void test_invites(void **state)
{
    lv_db_t *db = open_db(state);
    lv_user_t u, out;
    char code[LV_ACCT_SECRET_HEX], wrong[LV_ACCT_SECRET_HEX];
    assert_int_equal(lv_acct_db_user_add(db, "dave", NULL, LV_ROLE_USER, NULL, &u), 0);
    int64_t v = version(db);
    assert_int_equal(lv_acct_db_invite(db, u.id, code), 0);
    assert_int_equal(strlen(code), 64);
    assert_true(version(db) > v);
    memcpy(wrong, code, sizeof(wrong));
    wrong[0] = wrong[0] == 'a' ? 'b' : 'a';
    assert_int_equal(lv_acct_db_redeem_invite(db, wrong, "pw1", NULL), LV_EAUTH);
    assert_int_equal(lv_acct_db_redeem_invite(db, "zz", "pw1", NULL), LV_EAUTH);
    assert_int_equal(lv_acct_db_redeem_invite(db, code, "", NULL), LV_EINVAL);
    assert_int_equal(lv_acct_db_redeem_invite(db, code, "pw1", &out), 0);
    assert_string_equal(out.id, u.id);
    assert_true(out.has_password);
    assert_int_equal(lv_acct_db_redeem_invite(db, code, "pw2", NULL), LV_EAUTH); /* once */
    assert_int_equal(lv_acct_db_check_password(db, "dave", "pw1", NULL), 0);
    /* an expired invite */
    assert_int_equal(lv_acct_db_invite(db, u.id, code), 0);
    assert_int_equal(lv_db_exec(db, "UPDATE users SET invite_expires_ms = 1", 0, NULL, NULL), 0);
    assert_int_equal(lv_acct_db_redeem_invite(db, code, "pw3", NULL), LV_EAUTH);
    assert_int_equal(lv_acct_db_invite(db, "0000000000000000", code), LV_ENOTFOUND);
    lv_db_close(db);
}

static void test_oidc(void **state)
{
    lv_db_t *db = open_db(state);
    lv_user_t a, b, c;
    const char *iss = "https://idp.example";
    /* new user, named after the claim */
    assert_int_equal(lv_acct_db_oidc_user(db, iss, "sub-1", "erin@example.com", true, NULL, LV_ROLE_USER, false, &a), 0);
    assert_string_equal(a.name, "erin@example.com");
    assert_string_equal(a.oidc_sub, "sub-1");
    assert_false(a.has_password);
    /* the same subject again: the same user */
    int64_t v = version(db);
    assert_int_equal(lv_acct_db_oidc_user(db, iss, "sub-1", "other", true, NULL, LV_ROLE_USER, false, &b), 0);
    assert_string_equal(b.id, a.id);
    assert_int_equal(version(db), v); /* nothing changed */
    /* a password user of that name is never linked by name (a provider may let anyone pick it) */
    lv_user_t f, g;
    assert_int_equal(lv_acct_db_user_add(db, "admin2", "pw", LV_ROLE_ADMIN, NULL, &g), 0);
    assert_int_equal(lv_acct_db_oidc_user(db, iss, "sub-9", "admin2", true, NULL, LV_ROLE_USER, false, &b), 0);
    assert_string_not_equal(b.id, g.id);
    assert_true(strncmp(b.name, "admin2-", 7) == 0);
    assert_int_equal(b.role, LV_ROLE_USER);
    /* an unverified name does not link even a password-less user */
    assert_int_equal(lv_acct_db_user_add(db, "frank", NULL, LV_ROLE_VIEWER, NULL, &f), 0);
    assert_int_equal(lv_acct_db_oidc_user(db, iss, "sub-8", "frank", false, NULL, LV_ROLE_USER, false, &b), 0);
    assert_string_not_equal(b.id, f.id);
    /* a password-less user made for single sign-on, named by a verified e-mail: linked now */
    assert_int_equal(lv_acct_db_oidc_user(db, iss, "sub-2", "frank", true, NULL, LV_ROLE_USER, false, &b), 0);
    assert_string_equal(b.id, f.id);
    assert_int_equal(b.role, LV_ROLE_VIEWER); /* no claims rule: the role stays */
    assert_string_equal(b.oidc_sub, "sub-2");
    /* claims rule: tenant and role follow */
    lv_tenant_t t = {.id = "acme", .weight = 1};
    assert_int_equal(lv_acct_db_tenant_put(db, &t), 0);
    assert_int_equal(lv_acct_db_oidc_user(db, iss, "sub-2", "frank", true, "acme", LV_ROLE_ADMIN, true, &b), 0);
    assert_int_equal(b.role, LV_ROLE_ADMIN);
    assert_string_equal(b.tenant, "acme");
    /* "frank" is linked to sub-2: another subject claiming that name gets a new user */
    assert_int_equal(lv_acct_db_oidc_user(db, iss, "sub-3", "frank", true, NULL, LV_ROLE_USER, false, &c), 0);
    assert_string_not_equal(c.id, f.id);
    assert_true(strncmp(c.name, "frank-", 6) == 0);
    /* no usable name */
    assert_int_equal(lv_acct_db_oidc_user(db, iss, "sub-4", "not a name", true, NULL, LV_ROLE_USER, false, &c), 0);
    assert_true(strncmp(c.name, "user-", 5) == 0);
    /* disabled */
    assert_int_equal(lv_acct_db_user_set_disabled(db, a.id, true), 0);
    assert_int_equal(lv_acct_db_oidc_user(db, iss, "sub-1", "x", true, NULL, LV_ROLE_USER, false, &b), LV_EAUTH);
    assert_int_equal(lv_acct_db_oidc_user(db, "", "sub-1", "x", true, NULL, LV_ROLE_USER, false, &b), LV_EINVAL);
    lv_db_close(db);
}

static void test_logins_and_snapshot(void **state)
{
    lv_db_t *db = open_db(state);
    lv_user_t u, w;
    assert_int_equal(lv_acct_db_user_add(db, "gina", "pw", LV_ROLE_USER, NULL, &u), 0);
    assert_int_equal(lv_acct_db_user_add(db, "hank", "pw", LV_ROLE_ADMIN, NULL, &w), 0);
    char c1[LV_ACCT_SECRET_HEX], c2[LV_ACCT_SECRET_HEX], c3[LV_ACCT_SECRET_HEX];
    lv_login_t l1, l2, l3;
    int64_t v = version(db);
    assert_int_equal(lv_acct_db_login_add(db, u.id, "10.0.0.1", c1, &l1), 0);
    assert_true(version(db) > v);
    assert_int_equal(lv_acct_db_login_add(db, u.id, "10.0.0.1", c2, &l2), 0);
    assert_int_equal(lv_acct_db_login_add(db, w.id, "10.0.0.2", c3, &l3), 0);
    assert_int_equal(lv_acct_db_login_add(db, "0000000000000000", "x", c3, NULL), LV_ENOTFOUND);
    char h[LV_ACCT_HASH_HEX];
    lv_acct_sha256_hex(c1, 64, h);
    assert_string_equal(h, l1.hash);
    assert_int_equal(strlen(l1.csrf), 64);
    assert_true(l1.expires_ms > (int64_t)lv_wall_ms() + 29ll * 86400 * 1000);
    /* an expired sign-in is left out of the snapshot */
    const char *p[] = {l2.hash};
    assert_int_equal(lv_db_exec(db, "UPDATE logins SET expires_ms = 5 WHERE hash = $1", 1, p, NULL), 0);

    lv_acct_snap_t *s;
    assert_int_equal(lv_acct_db_load(db, &s), 0);
    assert_int_equal(lv_acct_snap_version(s), version(db));
    const lv_login_t *got = lv_acct_snap_login(s, l1.hash);
    assert_non_null(got);
    assert_string_equal(got->csrf, l1.csrf);
    assert_string_equal(got->user_id, u.id);
    assert_null(lv_acct_snap_login(s, l2.hash));
    assert_non_null(lv_acct_snap_login(s, l3.hash));
    assert_non_null(lv_acct_snap_tenant(s, "default"));
    assert_null(lv_acct_snap_tenant(s, "nope"));
    assert_string_equal(lv_acct_snap_user(s, u.id)->name, "gina");
    assert_string_equal(lv_acct_snap_user_by_name(s, "hank")->id, w.id);
    assert_null(lv_acct_snap_user_by_name(s, "nobody"));
    assert_int_equal(lv_acct_snap_users(s), 2);
    /* the loop's own changes */
    lv_login_t l4 = l2;
    l4.expires_ms = (int64_t)lv_wall_ms() + 1000;
    assert_int_equal(lv_acct_snap_put_login(s, &l4), 0);
    assert_non_null(lv_acct_snap_login(s, l2.hash));
    snprintf(l4.csrf, sizeof(l4.csrf), "%064d", 0);
    assert_int_equal(lv_acct_snap_put_login(s, &l4), 0); /* the same hash: updated */
    assert_string_equal(lv_acct_snap_login(s, l2.hash)->csrf, l4.csrf);
    lv_acct_snap_drop_login(s, l3.hash);
    assert_null(lv_acct_snap_login(s, l3.hash));
    lv_acct_snap_drop_login(s, l3.hash); /* twice is fine */
    lv_acct_snap_drop_user_logins(s, u.id);
    assert_null(lv_acct_snap_login(s, l1.hash));
    assert_null(lv_acct_snap_login(s, l2.hash));
    lv_acct_snap_free(s);

    /* delete one, then all of a user's */
    assert_int_equal(lv_acct_db_login_delete(db, l1.hash), 0);
    assert_int_equal(lv_acct_db_login_delete(db, l1.hash), 0);
    assert_int_equal(lv_acct_db_login_add(db, w.id, "10.0.0.2", c2, &l2), 0);
    v = version(db);
    assert_int_equal(lv_acct_db_login_delete_user(db, w.id), 0);
    assert_true(version(db) > v);
    assert_int_equal(lv_acct_db_load(db, &s), 0);
    assert_null(lv_acct_snap_login(s, l2.hash));
    assert_null(lv_acct_snap_login(s, l3.hash));
    lv_acct_snap_free(s);
    lv_db_close(db);
}

static int count_tenant(const lv_tenant_t *t, void *ud)
{
    (void)t;
    return ++*(int *)ud >= 2; /* stops after two */
}

static int count_user(const lv_user_t *u, void *ud)
{
    (void)u;
    ++*(int *)ud;
    return 0;
}

static void test_keys(void **state)
{
    lv_db_t *db = open_db(state);
    lv_user_t u;
    assert_int_equal(lv_acct_db_user_add(db, "ivy", NULL, LV_ROLE_USER, NULL, &u), 0);
    char s1[LV_ACCT_SECRET_HEX + 8], s2[LV_ACCT_SECRET_HEX + 8], s3[LV_ACCT_SECRET_HEX + 8];
    lv_apikey_t k1, k2, k3;
    int64_t v = version(db);
    assert_int_equal(lv_acct_db_key_add(db, u.id, "laptop", LV_SCOPE_STREAM, 0, s1, &k1), 0);
    assert_true(version(db) > v);
    assert_int_equal(strlen(s1), 68);
    assert_memory_equal(s1, "lvk_", 4);
    char h[LV_ACCT_HASH_HEX];
    lv_acct_sha256_hex(s1, strlen(s1), h);
    assert_string_equal(k1.hash, h);
    assert_int_equal(strncmp(k1.prefix, s1, 12), 0);
    assert_int_equal(strlen(k1.prefix), 12);
    assert_int_equal(strlen(k1.id), 16);
    assert_int_equal(lv_acct_db_key_add(db, u.id, "ci", LV_SCOPE_STREAM | LV_SCOPE_ADMIN,
                                        (int64_t)lv_wall_ms() + 86400000, s2, &k2),
                     0);
    assert_int_equal(lv_acct_db_key_add(db, u.id, "old", LV_SCOPE_STREAM, 0, s3, &k3), 0);
    assert_int_equal(lv_acct_db_key_add(db, u.id, "x", 0, 0, s3, NULL), LV_EINVAL);
    assert_int_equal(lv_acct_db_key_add(db, u.id, "x", 4, 0, s3, NULL), LV_EINVAL);
    assert_int_equal(lv_acct_db_key_add(db, u.id, "bad\nname", 1, 0, s3, NULL), LV_EINVAL);
    assert_int_equal(lv_acct_db_key_add(db, "0000000000000000", "x", 1, 0, s3, NULL), LV_ENOTFOUND);

    v = version(db);
    assert_int_equal(lv_acct_db_key_revoke(db, k1.id), 0);
    assert_true(version(db) > v);
    assert_int_equal(lv_acct_db_key_revoke(db, k1.id), 0); /* twice */
    assert_int_equal(lv_acct_db_key_revoke(db, "nosuchkey"), LV_ENOTFOUND);
    /* k3 was revoked 31 days ago: no longer in the snapshot */
    const char *p[] = {k3.id};
    assert_int_equal(lv_db_exec(db, "UPDATE api_keys SET revoked_ms = 1000 WHERE id = $1", 1, p, NULL), 0);

    v = version(db);
    assert_int_equal(lv_acct_db_key_touch(db, k2.id, 12345), 0);
    assert_int_equal(lv_acct_db_key_touch(db, k2.id, 100), 0); /* never moves back */
    assert_int_equal(version(db), v);                         /* no bump */

    lv_apikey_t *keys;
    size_t n;
    assert_int_equal(lv_acct_db_key_list(db, u.id, &keys, &n), 0);
    assert_int_equal(n, 3);
    int seen = 0;
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(keys[i].id, k1.id)) {
            assert_true(keys[i].revoked);
            assert_string_equal(keys[i].name, "laptop");
            seen++;
        }
        if (!strcmp(keys[i].id, k2.id)) {
            assert_false(keys[i].revoked);
            assert_int_equal(keys[i].last_used_ms, 12345);
            assert_int_equal(keys[i].scope, LV_SCOPE_STREAM | LV_SCOPE_ADMIN);
            assert_int_equal(keys[i].expires_ms, k2.expires_ms);
            seen++;
        }
    }
    assert_int_equal(seen, 2);
    free(keys);
    assert_int_equal(lv_acct_db_key_list(db, "0000000000000000", &keys, &n), 0);
    assert_int_equal(n, 0);

    lv_acct_snap_t *s;
    assert_int_equal(lv_acct_db_load(db, &s), 0);
    const lv_apikey_t *k = lv_acct_snap_key(s, k1.hash);
    assert_non_null(k); /* revoked today: kept, so the caller can say why */
    assert_true(k->revoked);
    assert_non_null(lv_acct_snap_key(s, k2.hash));
    assert_null(lv_acct_snap_key(s, k3.hash));
    assert_null(lv_acct_snap_key(s, "0000"));
    int nt = 0, nu = 0;
    lv_acct_snap_each_tenant(s, count_tenant, &nt);
    lv_acct_snap_each_user(s, count_user, &nu);
    assert_int_equal(nt, 1);
    assert_int_equal(nu, 1);
    lv_acct_snap_free(s);
    lv_acct_snap_free(NULL);
    lv_db_close(db);
}

static void test_tenants(void **state)
{
    lv_db_t *db = open_db(state);
    lv_tenant_t t = {.id = "acme", .name = "Acme Inc", .weight = 10, .backends = "a,b", .models = "m1"};
    t.quota = (lv_quota_t){.fpm = 100, .answers_day = 1000, .tokens_day = 50000, .sessions = 5};
    int64_t v = version(db);
    assert_int_equal(lv_acct_db_tenant_put(db, &t), 0);
    assert_true(version(db) > v);
    t.weight = 20;
    snprintf(t.models, sizeof(t.models), "m1,m2");
    assert_int_equal(lv_acct_db_tenant_put(db, &t), 0); /* update */
    lv_tenant_t bad = t;
    bad.weight = 0;
    assert_int_equal(lv_acct_db_tenant_put(db, &bad), LV_EINVAL);
    bad = t;
    snprintf(bad.id, sizeof(bad.id), "Bad Id");
    assert_int_equal(lv_acct_db_tenant_put(db, &bad), LV_EINVAL);
    bad = t;
    bad.quota.fpm = -1;
    assert_int_equal(lv_acct_db_tenant_put(db, &bad), LV_EINVAL);
    lv_tenant_t b2 = {.id = "beta", .weight = 1};
    assert_int_equal(lv_acct_db_tenant_put(db, &b2), 0);

    lv_tenant_t *list;
    size_t n;
    assert_int_equal(lv_acct_db_tenant_list(db, &list, &n), 0);
    assert_int_equal(n, 3);
    assert_string_equal(list[0].id, "acme");
    assert_int_equal(list[0].weight, 20);
    assert_string_equal(list[0].models, "m1,m2");
    assert_string_equal(list[0].backends, "a,b");
    assert_string_equal(list[0].name, "Acme Inc");
    assert_int_equal(list[0].quota.tokens_day, 50000);
    assert_int_equal(list[0].quota.sessions, 5);
    assert_string_equal(list[1].id, "beta");
    assert_string_equal(list[2].id, "default");
    free(list);

    lv_user_t u;
    assert_int_equal(lv_acct_db_user_add(db, "jo", NULL, LV_ROLE_USER, "acme", &u), 0);
    assert_int_equal(lv_acct_db_tenant_delete(db, "acme"), LV_EEXIST);
    assert_non_null(strstr(lv_db_error(db), "users"));
    assert_int_equal(lv_acct_db_tenant_delete(db, "default"), LV_EINVAL);
    assert_int_equal(lv_acct_db_tenant_delete(db, "nosuch"), LV_ENOTFOUND);
    v = version(db);
    assert_int_equal(lv_acct_db_tenant_delete(db, "beta"), 0);
    assert_true(version(db) > v);
    lv_acct_snap_t *s;
    assert_int_equal(lv_acct_db_load(db, &s), 0);
    assert_int_equal(lv_acct_snap_tenant(s, "acme")->weight, 20);
    assert_null(lv_acct_snap_tenant(s, "beta"));
    assert_string_equal(lv_acct_snap_user(s, u.id)->tenant, "acme");
    lv_acct_snap_free(s);
    lv_db_close(db);
}

static lv_usage_t usage(const char *id, int64_t t, const char *tenant, const char *user, const char *model, int64_t pt,
                        int64_t ct)
{
    lv_usage_t u = {.t_ms = t, .image_bytes = 1000, .prompt_tokens = pt, .completion_tokens = ct, .backend_ms = 50};
    snprintf(u.answer_id, sizeof(u.answer_id), "%s", id);
    snprintf(u.tenant, sizeof(u.tenant), "%s", tenant);
    snprintf(u.user_id, sizeof(u.user_id), "%s", user);
    snprintf(u.model, sizeof(u.model), "%s", model);
    snprintf(u.session_id, sizeof(u.session_id), "s1");
    snprintf(u.backend, sizeof(u.backend), "b1");
    snprintf(u.outcome, sizeof(u.outcome), "ok");
    return u;
}

static void test_usage(void **state)
{
    lv_db_t *db = open_db(state);
    lv_usage_t in[] = {
        usage("a1", 3000, "default", "u1", "m1", 10, 5), usage("a2", 1000, "default", "u1", "m2", 20, 1),
        usage("a3", 2000, "acme", "u2", "m1", 1, 1),     usage("a4", 4000, "acme", "u2", "m1", 7, 3),
    };
    int64_t v = version(db);
    assert_int_equal(lv_acct_db_usage_add(db, in, 4), 0);
    assert_int_equal(lv_acct_db_usage_add(db, in, 4), 0); /* replayed: ignored */
    assert_int_equal(lv_acct_db_usage_add(db, in, 0), 0);
    assert_int_equal(version(db), v);
    lv_usage_t noid = in[0];
    noid.answer_id[0] = '\0';
    assert_int_equal(lv_acct_db_usage_add(db, &noid, 1), LV_EINVAL);

    lv_usage_filter_t f = {0};
    lv_usage_t *out;
    size_t n;
    assert_int_equal(lv_acct_db_usage_query(db, &f, &out, &n), 0);
    assert_int_equal(n, 4);
    assert_string_equal(out[0].answer_id, "a2"); /* by time */
    assert_string_equal(out[3].answer_id, "a4");
    assert_int_equal(out[0].prompt_tokens, 20);
    assert_int_equal(out[0].image_bytes, 1000);
    assert_int_equal(out[0].backend_ms, 50);
    assert_string_equal(out[0].outcome, "ok");
    assert_string_equal(out[0].backend, "b1");
    assert_string_equal(out[0].session_id, "s1");
    free(out);
    f.from_ms = 2000;
    f.to_ms = 4000;
    assert_int_equal(lv_acct_db_usage_query(db, &f, &out, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(out[0].answer_id, "a3");
    assert_string_equal(out[1].answer_id, "a1");
    free(out);
    f = (lv_usage_filter_t){.limit = 1};
    snprintf(f.tenant, sizeof(f.tenant), "acme");
    assert_int_equal(lv_acct_db_usage_query(db, &f, &out, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(out[0].answer_id, "a3");
    free(out);
    f = (lv_usage_filter_t){.limit = 1000000};
    snprintf(f.user_id, sizeof(f.user_id), "u1");
    snprintf(f.model, sizeof(f.model), "m1");
    assert_int_equal(lv_acct_db_usage_query(db, &f, &out, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(out[0].answer_id, "a1");
    free(out);
    snprintf(f.user_id, sizeof(f.user_id), "nobody");
    assert_int_equal(lv_acct_db_usage_query(db, &f, &out, &n), 0);
    assert_int_equal(n, 0);

    int64_t answers, tokens;
    assert_int_equal(lv_acct_db_usage_sum(db, "", "", 0, &answers, &tokens), 0);
    assert_int_equal(answers, 4);
    assert_int_equal(tokens, 48);
    assert_int_equal(lv_acct_db_usage_sum(db, "acme", NULL, 0, &answers, &tokens), 0);
    assert_int_equal(answers, 2);
    assert_int_equal(tokens, 12);
    assert_int_equal(lv_acct_db_usage_sum(db, NULL, "u1", 2000, &answers, &tokens), 0);
    assert_int_equal(answers, 1);
    assert_int_equal(tokens, 15);
    assert_int_equal(lv_acct_db_usage_sum(db, "acme", "u1", 0, &answers, &tokens), 0);
    assert_int_equal(answers, 0);
    assert_int_equal(tokens, 0);
    lv_db_close(db);
}

static void test_audit(void **state)
{
    lv_db_t *db = open_db(state);
    lv_audit_t a = {.t_ms = 1000};
    snprintf(a.actor, sizeof(a.actor), "cli");
    snprintf(a.action, sizeof(a.action), "user.add");
    snprintf(a.target, sizeof(a.target), "alice");
    snprintf(a.ip, sizeof(a.ip), "127.0.0.1");
    snprintf(a.detail, sizeof(a.detail), "role=admin");
    assert_int_equal(lv_acct_db_audit_add(db, &a), 0);
    a.t_ms = 2000;
    snprintf(a.action, sizeof(a.action), "key.revoke");
    assert_int_equal(lv_acct_db_audit_add(db, &a), 0);
    a.t_ms = 0; /* now */
    snprintf(a.action, sizeof(a.action), "tenant.put");
    assert_int_equal(lv_acct_db_audit_add(db, &a), 0);
    lv_audit_t *out;
    size_t n;
    assert_int_equal(lv_acct_db_audit_list(db, 2, &out, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(out[0].action, "tenant.put"); /* newest first */
    assert_true(out[0].t_ms > 1000000);
    assert_string_equal(out[1].action, "key.revoke");
    assert_string_equal(out[1].actor, "cli");
    assert_string_equal(out[1].ip, "127.0.0.1");
    assert_string_equal(out[1].target, "alice");
    assert_string_equal(out[1].detail, "role=admin");
    free(out);
    assert_int_equal(lv_acct_db_audit_list(db, 0, &out, &n), 0);
    assert_int_equal(n, 3);
    free(out);
    lv_db_close(db);
}

int main(void)
{
    const struct CMUnitTest sqlite[] = {
        cmocka_unit_test(test_names_roles_sha), DBFX_TEST(test_users),  DBFX_TEST(test_passwords),
        DBFX_TEST(test_invites),                DBFX_TEST(test_oidc),   DBFX_TEST(test_logins_and_snapshot),
        DBFX_TEST(test_keys),                   DBFX_TEST(test_tenants), DBFX_TEST(test_usage),
        DBFX_TEST(test_audit),
    };
    const struct CMUnitTest pg[] = {
        DBFX_TEST_PG(test_users),   DBFX_TEST_PG(test_passwords), DBFX_TEST_PG(test_invites),
        DBFX_TEST_PG(test_oidc),    DBFX_TEST_PG(test_logins_and_snapshot), DBFX_TEST_PG(test_keys),
        DBFX_TEST_PG(test_tenants), DBFX_TEST_PG(test_usage),     DBFX_TEST_PG(test_audit),
    };
    return dbfx_run("acct", sqlite, LV_ARRAY_LEN(sqlite), pg, LV_ARRAY_LEN(pg));
}

/* test_redisurl.c - the Redis URL (`--redis`): the parts the accepted forms split into (host name,
 * IPv4, [IPv6], userinfo percent-decoded, db, Unix socket), every refusal with its sentence and
 * nothing left behind, and the printable form that never holds the password. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "lv_common.h"
#include "lv_redisurl.h"

static lv_redisurl_t u;

static void ok(const char *text)
{
    const char *why = "unset";
    int rc = lv_redisurl_parse(text, &u, &why);
    if (rc != 0)
        fail_msg("\"%s\": rc %d why \"%s\"", text, rc, why ? why : "(null)");
}

static const char *clean(void)
{
    static char buf[LV_REDISURL_MAX + 32];
    lv_redisurl_clean(&u, buf, sizeof(buf));
    return buf;
}

/* A refused URL: LV_EINVAL, a sentence that says which part, and nothing left in the result. */
static void refused(const char *text, const char *why_has)
{
    const char *why = NULL;
    memset(&u, 0x5a, sizeof(u));
    int rc = lv_redisurl_parse(text, &u, &why);
    if (rc != LV_EINVAL || !why || !strstr(why, why_has))
        fail_msg("\"%s\": rc %d why \"%s\" (want \"%s\")", text, rc, why ? why : "(null)", why_has);
    static const lv_redisurl_t zero;
    assert_memory_equal(&u, &zero, sizeof(u));
}

static void hosts_ports_dbs(void **state)
{
    (void)state;
    ok("redis://127.0.0.1");
    assert_false(u.is_unix);
    assert_string_equal(u.host, "127.0.0.1");
    assert_int_equal(u.port, 6379);
    assert_int_equal(u.db, 0);
    assert_string_equal(u.user, "");
    assert_string_equal(u.password, "");
    assert_string_equal(clean(), "redis://127.0.0.1:6379/0");

    ok("redis://redis.internal.example:6380/2");
    assert_string_equal(u.host, "redis.internal.example");
    assert_int_equal(u.port, 6380);
    assert_int_equal(u.db, 2);
    assert_string_equal(clean(), "redis://redis.internal.example:6380/2");

    ok("redis://my_redis-1:1/");
    assert_string_equal(u.host, "my_redis-1");
    assert_int_equal(u.port, 1);
    assert_int_equal(u.db, 0);
    ok("redis://h:65535/15");
    assert_int_equal(u.port, 65535);
    assert_int_equal(u.db, 15);
    ok("REDIS://H"); /* schemes are case-insensitive (RFC 3986 3.1) */
    assert_string_equal(u.host, "H");
    refused("REDISS://h", "TLS");
    ok("redis://h:06379/007"); /* leading zeros are the same numbers */
    assert_int_equal(u.port, 6379);
    assert_int_equal(u.db, 7);

    /* IPv6 in brackets, stored without them, printed with them */
    ok("redis://[::1]:7000/1");
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 7000);
    assert_int_equal(u.db, 1);
    assert_string_equal(clean(), "redis://[::1]:7000/1");
    ok("redis://[fd00:1:2::abcd]");
    assert_string_equal(u.host, "fd00:1:2::abcd");
    assert_int_equal(u.port, 6379);
    ok("redis://[::ffff:10.0.0.1]:6379");
    assert_string_equal(u.host, "::ffff:10.0.0.1");
}

static void userinfo(void **state)
{
    (void)state;
    ok("redis://:s3cret@h");
    assert_string_equal(u.user, "");
    assert_string_equal(u.password, "s3cret");
    assert_string_equal(clean(), "redis://:***@h:6379/0");

    ok("redis://worker:pw@10.1.2.3:6400/3");
    assert_string_equal(u.user, "worker");
    assert_string_equal(u.password, "pw");
    assert_string_equal(u.host, "10.1.2.3");
    assert_string_equal(clean(), "redis://worker:***@10.1.2.3:6400/3");

    /* percent-encoding: reserved characters, a space, UTF-8; both hex cases */
    ok("redis://us%65r:p%40ss%3Aw%2Fo%3frd%23%20%C3%A9%25@h");
    assert_string_equal(u.user, "user");
    assert_string_equal(u.password, "p@ss:w/o?rd# \xc3\xa9%");
    assert_null(strstr(clean(), "p@ss"));
    assert_string_equal(clean(), "redis://user:***@h:6379/0");

    /* the last '@' ends the userinfo: an unencoded '@' in the password is taken as written */
    ok("redis://:p@ss@h:1");
    assert_string_equal(u.password, "p@ss");
    assert_string_equal(u.host, "h");
    /* a ':' in the password (the first ':' splits user from password) */
    ok("redis://u:a:b@h");
    assert_string_equal(u.user, "u");
    assert_string_equal(u.password, "a:b");

    /* IPv6 with userinfo */
    ok("redis://:pw@[::1]:6380/4");
    assert_string_equal(u.host, "::1");
    assert_string_equal(u.password, "pw");
    assert_string_equal(clean(), "redis://:***@[::1]:6380/4");

    /* the caps, exactly */
    char url[LV_REDISURL_MAX + 64];
    char user[LV_REDISURL_USER_MAX + 2], pass[LV_REDISURL_PASS_MAX + 2];
    memset(user, 'u', sizeof(user));
    memset(pass, 'p', sizeof(pass));
    user[LV_REDISURL_USER_MAX] = '\0';
    pass[LV_REDISURL_PASS_MAX] = '\0';
    snprintf(url, sizeof(url), "redis://%s:%s@h", user, pass);
    ok(url);
    assert_int_equal(strlen(u.user), LV_REDISURL_USER_MAX);
    assert_int_equal(strlen(u.password), LV_REDISURL_PASS_MAX);
    user[LV_REDISURL_USER_MAX] = 'u';
    user[LV_REDISURL_USER_MAX + 1] = '\0';
    snprintf(url, sizeof(url), "redis://%s:pw@h", user);
    refused(url, "too long");
    pass[LV_REDISURL_PASS_MAX] = 'p';
    pass[LV_REDISURL_PASS_MAX + 1] = '\0';
    snprintf(url, sizeof(url), "redis://:%s@h", pass);
    refused(url, "too long");
    /* an encoded password counts decoded bytes: 256 x "%41" is 768 bytes written, 256 decoded */
    char *w = url + snprintf(url, sizeof(url), "redis://:");
    for (int i = 0; i < LV_REDISURL_PASS_MAX; i++)
        w += snprintf(w, 4, "%%41");
    snprintf(w, 8, "@h");
    ok(url);
    assert_int_equal(strlen(u.password), LV_REDISURL_PASS_MAX);
}

static void unix_sockets(void **state)
{
    (void)state;
    ok("unix:///run/redis/redis.sock");
    assert_true(u.is_unix);
    assert_string_equal(u.path, "/run/redis/redis.sock");
    assert_string_equal(u.host, "");
    assert_int_equal(u.port, 0);
    assert_int_equal(u.db, 0);
    assert_string_equal(clean(), "unix:///run/redis/redis.sock");
    ok("unix:///tmp/r.sock?db=5");
    assert_int_equal(u.db, 5);
    assert_string_equal(clean(), "unix:///tmp/r.sock?db=5");
    ok("unix:///tmp/with%20space.sock");
    assert_string_equal(u.path, "/tmp/with space.sock");
    /* sun_path holds 107 bytes and the NUL */
    char url[256], path[LV_REDISURL_PATH_MAX + 2];
    memset(path, 'a', sizeof(path));
    path[0] = '/';
    path[LV_REDISURL_PATH_MAX] = '\0';
    snprintf(url, sizeof(url), "unix://%s", path);
    ok(url);
    assert_int_equal(strlen(u.path), LV_REDISURL_PATH_MAX);
    path[LV_REDISURL_PATH_MAX] = 'a';
    path[LV_REDISURL_PATH_MAX + 1] = '\0';
    snprintf(url, sizeof(url), "unix://%s", path);
    refused(url, "too long");

    refused("unix://relative.sock", "absolute");
    refused("unix://", "absolute");
    refused("unix://:pw@/tmp/r.sock", "absolute");
    refused("unix:///tmp/r.sock?db=16", "?db=N");
    refused("unix:///tmp/r.sock?db=", "?db=N");
    refused("unix:///tmp/r.sock?x=1", "?db=N");
    refused("unix:///tmp/r.sock?db=1&x=2", "?db=N");
    refused("unix:///tmp/r%00.sock", "percent-encoded");
    refused("unix:///tmp/r%0a.sock", "percent-encoded");
    refused("unix:///tmp/r%zz.sock", "percent-encoded");
}

static void refusals(void **state)
{
    (void)state;
    refused("", "empty");
    refused(NULL, "empty");
    refused("rediss://h:6380", "TLS");
    refused("rediss://:pw@h", "TLS");
    refused("http://h:6379", "must start with redis:// or unix://");
    refused("redis:/h", "must start with");
    refused("h:6379", "must start with");
    refused("redis://h:6379#frag", "fragment");
    refused("redis://h:6379?db=1", "no query");
    refused("redis://h /1", "space");
    refused("redis://h\t:1", "control");
    refused("redis://h\xc3\xa9", "non-ASCII");
    /* hosts */
    refused("redis://", "host is empty");
    refused("redis://:6379", "host is empty");
    refused("redis:///2", "host is empty");
    refused("redis://h!st", "cannot have");
    refused("redis://h%41", "cannot have");
    refused("redis://::1:6379", "IPv6 host needs brackets");
    refused("redis://[::1", "closing bracket");
    refused("redis://[]:1", "empty");
    refused("redis://[::1]x", "only :port");
    refused("redis://[::1]:", "port");
    refused("redis://[nothex::1]", "not an IPv6");
    refused("redis://[10.0.0.1]", "not an IPv6");
    refused("redis://[fe80::1%25eth0]", "not an IPv6");
    /* ports */
    refused("redis://h:", "port");
    refused("redis://h:0", "port");
    refused("redis://h:65536", "port");
    refused("redis://h:1234567", "port");
    refused("redis://h:-1", "port");
    refused("redis://h:+1", "port");
    refused("redis://h:0x10", "port");
    /* databases */
    refused("redis://h/16", "database");
    refused("redis://h/-1", "database");
    refused("redis://h/a", "database");
    refused("redis://h/1/2", "database");
    refused("redis://h:1/1x", "database");
    /* userinfo */
    refused("redis://pw@h", "user:password@");
    refused("redis://user:@h", "without a password");
    refused("redis://:pa/ss@h", "percent-encode");
    refused("redis://:pa?ss@h", "percent-encode");
    refused("redis://:pa%2@h", "badly percent-encoded");
    refused("redis://:pa%@h", "badly percent-encoded");
    refused("redis://:pa%g1@h", "badly percent-encoded");
    refused("redis://:pa%00ss@h", "badly percent-encoded");
    refused("redis://:pa%0dss@h", "badly percent-encoded");
    refused("redis://:pa%7fss@h", "badly percent-encoded");
    refused("redis://us%0aer:pw@h", "badly percent-encoded");
    /* a password decoded before a later error is not left behind (refused() checks) */
    refused("redis://:s3cret@h:0", "port");
    refused("redis://u:s3cret@[bad]", "not an IPv6");
    /* the whole URL's cap */
    char url[LV_REDISURL_MAX + 16];
    int n = snprintf(url, sizeof(url), "redis://");
    memset(url + n, 'h', sizeof(url) - (size_t)n - 1);
    url[LV_REDISURL_MAX + 1] = '\0';
    refused(url, "1024");
    /* a host over its cap */
    memset(url + n, 'h', LV_REDISURL_HOST_MAX + 1);
    url[n + LV_REDISURL_HOST_MAX + 1] = '\0';
    refused(url, "too long");
    url[n + LV_REDISURL_HOST_MAX] = '\0';
    ok(url);
    assert_int_equal(strlen(u.host), LV_REDISURL_HOST_MAX);
}

static void clean_never_shows_the_password(void **state)
{
    (void)state;
    /* cut to any size, always NUL-terminated and never a password byte */
    ok("redis://admin:Zq9Zq9Zq9@[2001:db8::7]:6390/9");
    char full[256];
    lv_redisurl_clean(&u, full, sizeof(full));
    assert_string_equal(full, "redis://admin:***@[2001:db8::7]:6390/9");
    for (size_t size = 1; size <= strlen(full) + 1; size++) {
        char buf[64];
        memset(buf, 'X', sizeof(buf));
        lv_redisurl_clean(&u, buf, size);
        assert_int_equal(strlen(buf), size - 1);
        assert_memory_equal(buf, full, size - 1);
    }
    char untouched = 'X';
    lv_redisurl_clean(&u, &untouched, 0);
    assert_int_equal(untouched, 'X');
    /* the printable form parses again (with "***" as its password) to the same place */
    lv_redisurl_t again;
    const char *why;
    assert_int_equal(lv_redisurl_parse(full, &again, &why), 0);
    assert_string_equal(again.host, u.host);
    assert_int_equal(again.port, u.port);
    assert_int_equal(again.db, u.db);
    assert_string_equal(again.user, u.user);
    assert_string_equal(again.password, "***");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hosts_ports_dbs),
        cmocka_unit_test(userinfo),
        cmocka_unit_test(unix_sockets),
        cmocka_unit_test(refusals),
        cmocka_unit_test(clean_never_shows_the_password),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_rtspurl.c - admin camera definitions (ID=rtsp://user:pass@host:port/path): the parts they
 * split into, url_clean without credentials, every refusal with its reason, and the scrubber
 * that keeps credentials out of error text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "lv_common.h"
#include "lv_rtspurl.h"

static lv_camera_def_t def;

static int parse(const char *text, const char **why)
{
    *why = NULL;
    return lv_camera_def_parse(text, &def, why);
}

/* A refused definition: the code, a reason that says which part is wrong, and nothing left in
 * the result (above all no password). */
static void refused(const char *text, int want_rc, const char *why_has)
{
    const char *why = NULL;
    memset(&def, 0x5a, sizeof(def));
    int rc = lv_camera_def_parse(text, &def, &why);
    if (rc != want_rc || !why || !strstr(why, why_has))
        fail_msg("\"%s\": rc %d why \"%s\" (want %d, \"%s\")", text, rc, why ? why : "(null)",
                 want_rc, why_has);
    static const lv_camera_def_t zero;
    assert_memory_equal(&def, &zero, sizeof(def));
}

static void parse_full(void **state)
{
    (void)state;
    const char *why;
    assert_int_equal(parse("lobby=rtsp://admin:s3cret@cam.example.com:8554/live/main?ch=1&sub=0", &why), 0);
    assert_string_equal(def.id, "lobby");
    assert_int_equal(def.tls, 0);
    assert_int_equal(def.has_userinfo, 1);
    assert_string_equal(def.user, "admin");
    assert_string_equal(def.password, "s3cret");
    assert_string_equal(def.host, "cam.example.com");
    assert_int_equal(def.host_is_ipv6, 0);
    assert_int_equal(def.port, 8554);
    assert_string_equal(def.path, "/live/main?ch=1&sub=0");
    assert_string_equal(def.url_clean, "rtsp://cam.example.com:8554/live/main?ch=1&sub=0");
    assert_null(strstr(def.url_clean, "s3cret"));
    assert_null(strstr(def.url_clean, "admin"));
}

static void parse_defaults(void **state)
{
    (void)state;
    const char *why;
    /* no userinfo, default ports per scheme, scheme and host case folded, empty path is "/" */
    assert_int_equal(parse("a=rtsp://10.0.0.7/stream1", &why), 0);
    assert_int_equal(def.has_userinfo, 0);
    assert_string_equal(def.user, "");
    assert_string_equal(def.password, "");
    assert_int_equal(def.port, 554);
    assert_string_equal(def.url_clean, "rtsp://10.0.0.7:554/stream1");
    assert_int_equal(parse("b_2=RTSPS://Cam.Local", &why), 0);
    assert_int_equal(def.tls, 1);
    assert_int_equal(def.port, 322);
    assert_string_equal(def.host, "cam.local");
    assert_string_equal(def.path, "/");
    assert_string_equal(def.url_clean, "rtsps://cam.local:322/");
    /* a query with no path */
    assert_int_equal(parse("c-3=rtsp://h?x=1", &why), 0);
    assert_string_equal(def.url_clean, "rtsp://h:554/?x=1");
    /* the port's bounds */
    assert_int_equal(parse("p=rtsp://h:1/", &why), 0);
    assert_int_equal(def.port, 1);
    assert_int_equal(parse("p=rtsp://h:65535/", &why), 0);
    assert_int_equal(def.port, 65535);
    /* an ID of exactly 32 characters */
    assert_int_equal(parse("abcdefghijklmnopqrstuvwxyz012345=rtsp://h/", &why), 0);
    assert_string_equal(def.id, "abcdefghijklmnopqrstuvwxyz012345");
    /* '=' after the first belongs to the URL */
    assert_int_equal(parse("q=rtsp://h/p?a=b=c", &why), 0);
    assert_string_equal(def.path, "/p?a=b=c");
}

static void parse_ipv6(void **state)
{
    (void)state;
    const char *why;
    assert_int_equal(parse("v6=rtsp://u:p@[FE80::1:2]:10554/x", &why), 0);
    assert_int_equal(def.host_is_ipv6, 1);
    assert_string_equal(def.host, "fe80::1:2");
    assert_int_equal(def.port, 10554);
    assert_string_equal(def.url_clean, "rtsp://[fe80::1:2]:10554/x");
    assert_int_equal(parse("v6=rtsp://[::1]", &why), 0);
    assert_string_equal(def.url_clean, "rtsp://[::1]:554/");
    assert_int_equal(parse("v6=rtsp://[::ffff:192.0.2.1]/", &why), 0);
    assert_string_equal(def.host, "::ffff:192.0.2.1");
}

static void parse_userinfo(void **state)
{
    (void)state;
    const char *why;
    /* percent-decoding, and the last '@' before the path splitting userinfo from host */
    assert_int_equal(parse("x=rtsp://ad%6Din:p%40ss@w%3Ard%2F%3F%23@host/s@1", &why), 0);
    assert_string_equal(def.user, "admin");
    assert_string_equal(def.password, "p@ss@w:rd/?#");
    assert_string_equal(def.host, "host");
    assert_string_equal(def.path, "/s@1");
    assert_string_equal(def.url_clean, "rtsp://host:554/s@1");
    assert_string_equal(def.userinfo_raw, "ad%6Din:p%40ss@w%3Ard%2F%3F%23");
    /* a user without a password, an empty password, ':' inside the password */
    assert_int_equal(parse("x=rtsp://viewer@h/", &why), 0);
    assert_string_equal(def.user, "viewer");
    assert_string_equal(def.password, "");
    assert_int_equal(def.has_userinfo, 1);
    assert_int_equal(parse("x=rtsp://viewer:@h/", &why), 0);
    assert_string_equal(def.password, "");
    assert_int_equal(parse("x=rtsp://u:a:b:c@h:99/", &why), 0);
    assert_string_equal(def.user, "u");
    assert_string_equal(def.password, "a:b:c");
    assert_int_equal(def.port, 99);
    /* decoded non-ASCII bytes are fine (UTF-8 passwords) */
    assert_int_equal(parse("x=rtsp://u:%C3%A9t%C3%A9@h/", &why), 0);
    assert_string_equal(def.password, "\xc3\xa9t\xc3\xa9");
    /* 128 bytes of password decoded from 384 written */
    char text[600];
    int n = snprintf(text, sizeof(text), "x=rtsp://u:");
    for (int i = 0; i < 128; i++)
        n += snprintf(text + n, sizeof(text) - (size_t)n, "%%41");
    snprintf(text + n, sizeof(text) - (size_t)n, "@h/");
    assert_int_equal(parse(text, &why), 0);
    assert_int_equal(strlen(def.password), 128);
}

static void refuse_schemes(void **state)
{
    (void)state;
    refused("x=file:///etc/passwd", LV_EINVAL, "only rtsp:// and rtsps://");
    refused("x=http://cam/video.mjpg", LV_EINVAL, "only rtsp:// and rtsps://");
    refused("x=rtspt://cam/", LV_EINVAL, "only rtsp:// and rtsps://");
    refused("x=rtmp://cam/", LV_EINVAL, "only rtsp:// and rtsps://");
    refused("x=cam.local:554/path", LV_EINVAL, "no scheme");
    refused("x=/dev/video0", LV_EINVAL, "no scheme");
    refused("x=://cam/", LV_EINVAL, "no scheme");
    refused("x=rtsp:cam/", LV_EINVAL, "\"//\"");
    refused("x=rtsp:/cam/", LV_EINVAL, "\"//\"");
    refused("x=1rtsp://cam/", LV_EINVAL, "no scheme");
    refused("x=", LV_EINVAL, "empty");
}

static void refuse_ids(void **state)
{
    (void)state;
    refused("rtsp://cam/", LV_EINVAL, "ID=");
    refused("=rtsp://cam/", LV_EINVAL, "ID before '=' is empty");
    refused("Lobby=rtsp://cam/", LV_EINVAL, "lowercase letters");
    refused("lob by=rtsp://cam/", LV_EINVAL, "lowercase letters");
    refused("lob.by=rtsp://cam/", LV_EINVAL, "lowercase letters");
    refused("../x=rtsp://cam/", LV_EINVAL, "lowercase letters");
    refused("abcdefghijklmnopqrstuvwxyz0123456=rtsp://cam/", LV_ELIMIT, "longer than 32");
    refused("", LV_EINVAL, "ID=");
    assert_true(lv_camera_id_valid("a", 1));
    assert_true(lv_camera_id_valid("front-door_2", 12));
    assert_false(lv_camera_id_valid("", 0));
    assert_false(lv_camera_id_valid("a/b", 3));
    assert_false(lv_camera_id_valid("a\0b", 3));
    assert_false(lv_camera_id_valid(NULL, 1));
}

static void refuse_hosts_ports(void **state)
{
    (void)state;
    refused("x=rtsp:///path", LV_EINVAL, "no host");
    refused("x=rtsp://u:p@/path", LV_EINVAL, "no host");
    refused("x=rtsp://:554/path", LV_EINVAL, "no host");
    refused("x=rtsp://h:/p", LV_EINVAL, "port after ':' is empty");
    refused("x=rtsp://h:0/p", LV_EINVAL, "1..65535");
    refused("x=rtsp://h:65536/p", LV_EINVAL, "1..65535");
    refused("x=rtsp://h:000554/p", LV_EINVAL, "1..65535");
    refused("x=rtsp://h:99999999999999999999/p", LV_EINVAL, "1..65535");
    refused("x=rtsp://h:-1/p", LV_EINVAL, "not a number");
    refused("x=rtsp://h:80a/p", LV_EINVAL, "not a number");
    refused("x=rtsp://a..b/", LV_EINVAL, "empty label");
    refused("x=rtsp://.a/", LV_EINVAL, "empty label");
    refused("x=rtsp://a./", LV_EINVAL, "empty label");
    refused("x=rtsp://h%41/", LV_EINVAL, "percent-encoded host");
    refused("x=rtsp://h!x/", LV_EINVAL, "letters, digits");
    refused("x=rtsp://10.0.0.300/", LV_EINVAL, "IPv4");
    refused("x=rtsp://1.2.3/", LV_EINVAL, "IPv4");
    refused("x=rtsp://123/", LV_EINVAL, "IPv4");
    refused("x=rtsp://fe80::1/", LV_EINVAL, "brackets");
    refused("x=rtsp://[fe80::1/", LV_EINVAL, "no closing ']'");
    refused("x=rtsp://[fe80::1%25eth0]/", LV_EINVAL, "zone");
    refused("x=rtsp://[v1.x]/", LV_EINVAL, "IPvFuture");
    refused("x=rtsp://[::g]/", LV_EINVAL, "IPv6");
    refused("x=rtsp://[]/", LV_EINVAL, "IPv6");
    refused("x=rtsp://[::1]x/", LV_EINVAL, "only ':' and a port");
    refused("x=rtsp://[::1]:/", LV_EINVAL, "port after ':' is empty");
    char text[400];
    int n = snprintf(text, sizeof(text), "x=rtsp://");
    for (int i = 0; i < 4; i++)
        n += snprintf(text + n, sizeof(text) - (size_t)n, "%063d.", i);
    snprintf(text + n, sizeof(text) - (size_t)n, "a/"); /* 4 x 64 + 1 = 257 bytes */
    refused(text, LV_ELIMIT, "longer than 253");
    n = snprintf(text, sizeof(text), "x=rtsp://%064d/", 7);
    refused(text, LV_EINVAL, "longer than 63");
}

static void refuse_userinfo_path(void **state)
{
    (void)state;
    refused("x=rtsp://@h/", LV_EINVAL, "no user name");
    refused("x=rtsp://:pw@h/", LV_EINVAL, "no user name");
    refused("x=rtsp://u:p%4@h/", LV_EINVAL, "password");
    refused("x=rtsp://u:100%@h/", LV_EINVAL, "%25");
    refused("x=rtsp://u%zz:p@h/", LV_EINVAL, "user name");
    refused("x=rtsp://u:a%00b@h/", LV_EINVAL, "control byte");
    refused("x=rtsp://u%0A:p@h/", LV_EINVAL, "control byte");
    /* a raw '/' or '#' in a password splits the authority early: the hint says to encode it */
    refused("x=rtsp://u:pa/ss@h/", LV_EINVAL, "%2F");
    refused("x=rtsp://u:pa#ss@h/", LV_EINVAL, "%23");
    refused("x=rtsp://h/p#frag", LV_EINVAL, "fragment");
    refused("x=rtsp://h/p q", LV_EINVAL, "space");
    refused("x=rtsp://h/p\tq", LV_EINVAL, "control byte");
    refused("x=rtsp://h/p\x7f", LV_EINVAL, "control byte");
    refused("x=rtsp://h/\xc3\xa9", LV_EINVAL, "non-ASCII");
    refused("x=rtsp://h/a%2", LV_EINVAL, "two hex digits");
    refused("x=rtsp://h/a%g0", LV_EINVAL, "two hex digits");
    refused("x=rtsp://h/a<b>", LV_EINVAL, "percent-encoded");
    refused("x=rtsp://h/a\\b", LV_EINVAL, "percent-encoded");
    refused("x=rtsp://h/a\"b", LV_EINVAL, "percent-encoded");
    const char *why;
    assert_int_equal(parse("x=rtsp://h/a%2fb%C3%A9;c=1:2@3?$&'()*+,;=:@/?~", &why), 0);
    assert_string_equal(def.path, "/a%2fb%C3%A9;c=1:2@3?$&'()*+,;=:@/?~");
}

static void refuse_lengths(void **state)
{
    (void)state;
    static char text[LV_CAMERA_DEF_MAX + 64];
    /* user and password: 129 decoded bytes */
    int n = snprintf(text, sizeof(text), "x=rtsp://u:");
    memset(text + n, 'p', 129);
    snprintf(text + n + 129, sizeof(text) - (size_t)n - 129, "@h/");
    refused(text, LV_ELIMIT, "password is longer than 128");
    n = snprintf(text, sizeof(text), "x=rtsp://");
    memset(text + n, 'u', 129);
    snprintf(text + n + 129, sizeof(text) - (size_t)n - 129, ":p@h/");
    refused(text, LV_ELIMIT, "user name is longer than 128");
    /* the written userinfo: 515 bytes */
    n = snprintf(text, sizeof(text), "x=rtsp://u:");
    for (int i = 0; i < 171; i++)
        n += snprintf(text + n, sizeof(text) - (size_t)n, "%%41");
    snprintf(text + n, sizeof(text) - (size_t)n, "@h/");
    refused(text, LV_ELIMIT, "too long");
    /* path of exactly 1024 is fine, 1025 is not */
    n = snprintf(text, sizeof(text), "x=rtsp://h/");
    memset(text + n, 'a', 1023);
    text[n + 1023] = '\0';
    const char *why;
    assert_int_equal(parse(text, &why), 0);
    assert_int_equal(strlen(def.path), 1024);
    text[n + 1023] = 'a';
    text[n + 1024] = '\0';
    refused(text, LV_ELIMIT, "path is longer than 1024");
    /* the whole definition */
    memset(text, 'a', sizeof(text) - 1);
    text[sizeof(text) - 1] = '\0';
    memcpy(text, "x=rtsp://h/", 11);
    refused(text, LV_ELIMIT, "longer than 2048");
    /* an embedded NUL with an explicit length */
    static const char nul[] = "x=rtsp://h/a\0b";
    assert_int_equal(lv_camera_def_parse_n(nul, sizeof(nul) - 1, &def, &why), LV_EINVAL);
    assert_non_null(strstr(why, "control byte"));
    /* NULL arguments */
    assert_int_equal(lv_camera_def_parse(NULL, &def, &why), LV_EINVAL);
    assert_int_equal(lv_camera_def_parse("x=rtsp://h/", NULL, &why), LV_EINVAL);
    assert_int_equal(lv_camera_def_parse("x=rtsp://h/", &def, NULL), 0);
}

/* The reason never quotes the input: a password with a telling shape stays out of every why. */
static void why_never_quotes(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "x=rtsp://u:Zq9Secret@h:0/", "x=rtsp://u:Zq9Secret@h/a b", "x=http://u:Zq9Secret@h/",
        "x=rtsp://u:Zq9Secret%@h/",  "X=rtsp://u:Zq9Secret@h/",    "x=rtsp://u:Zq9Secret@/",
    };
    for (size_t i = 0; i < LV_ARRAY_LEN(bad); i++) {
        const char *why = NULL;
        assert_int_not_equal(lv_camera_def_parse(bad[i], &def, &why), 0);
        assert_non_null(why);
        assert_null(strstr(why, "Zq9"));
    }
}

static void parse_url_only(void **state)
{
    (void)state;
    const char *why = NULL;
    const char *url = "rtsp://u:p@h/x";
    assert_int_equal(lv_rtspurl_parse(url, strlen(url), &def, &why), 0);
    assert_string_equal(def.id, "");
    assert_string_equal(def.url_clean, "rtsp://h:554/x");
    /* len bounds the URL: "rtsp://u:p@h/x" cut after the host */
    assert_int_equal(lv_rtspurl_parse(url, 12, &def, &why), 0);
    assert_string_equal(def.url_clean, "rtsp://h:554/");
    lv_camera_def_wipe(&def);
    assert_string_equal(def.password, "");
}

static void scrub_text(const char *deftext, const char *text, const char *want)
{
    const char *why;
    char out[512];
    assert_int_equal(parse(deftext, &why), 0);
    assert_int_equal(lv_rtspurl_scrub(text, &def, out, sizeof(out)), 0);
    if (strcmp(out, want) != 0)
        fail_msg("scrub \"%s\" -> \"%s\", want \"%s\"", text, out, want);
}

static void scrub(void **state)
{
    (void)state;
    const char *d = "x=rtsp://admin:Tr0ub4dor@cam:554/live";
    /* the userinfo in a URL goes, leaving what url_clean would say */
    scrub_text(d, "Could not open resource for reading: rtsp://admin:Tr0ub4dor@cam:554/live",
               "Could not open resource for reading: rtsp://cam:554/live");
    /* the password alone is masked, as often as it occurs */
    scrub_text(d, "auth Tr0ub4dor failed (Tr0ub4dor)", "auth *** failed (***)");
    /* percent-encoded in either case, and partly encoded */
    scrub_text(d, "pw=Tr0ub%34dor, Tr%30ub4dor, %54%72%30%75%62%34%64%6f%72",
               "pw=***, ***, ***");
    /* text without secrets is copied unchanged, the user name alone is not cut */
    scrub_text(d, "Unauthorized for user admin", "Unauthorized for user admin");
    scrub_text(d, "", "");
    /* a password cut short at the end of the text (3 bytes or more) */
    scrub_text(d, "message ends with Tr0u", "message ends with ***");
    scrub_text(d, "message ends with Tr", "message ends with Tr");

    /* secrets with URL-special bytes: decoded form, as-written form, another encoding */
    d = "x=rtsp://us%40er:p%2Fw%25d@[::1]/s";
    scrub_text(d, "rtsp://us%40er:p%2Fw%25d@[::1]:554/s", "rtsp://[::1]:554/s");
    scrub_text(d, "rtsp://us@er:p/w%d@[::1]:554/s", "rtsp://[::1]:554/s");
    scrub_text(d, "pw p/w%d and p%2fw%25d and p/w%25d", "pw *** and *** and ***");
    /* a user with no password: "user@" only right after "//" */
    d = "x=rtsp://viewer@cam/s";
    scrub_text(d, "rtsp://viewer@cam:554/s mail viewer@cam", "rtsp://cam:554/s mail viewer@cam");
    /* deleting a userinfo must not bring the password together from its two sides */
    d = "x=rtsp://adm:sc@cam/";
    scrub_text(d, "s" "adm:sc@" "cam", "**am");
    scrub_text(d, "xs" "adm:sc@" "c", "x**");
    d = "x=rtsp://u:secret@h/";
    scrub_text(d, "sec" "u:secret@" "ret!", "***!");
    /* no userinfo at all: nothing to do */
    d = "x=rtsp://cam/s";
    scrub_text(d, "rtsp://a:b@cam:554/s", "rtsp://a:b@cam:554/s");
}

/* Credentials in the query (some cameras take them there): url_clean shows them as ***, url_rtsp
 * (rtspsrc's) keeps them, the scrubber masks their values, decoded or as written. */
static void query_secrets(void **state)
{
    (void)state;
    const char *why;
    assert_int_equal(parse("q=rtsp://cam/stream?User=admin&ch=1&PASSWORD=s%40cret&token=&pwd&key=k3y", &why), 0);
    assert_string_equal(def.url_clean, "rtsp://cam:554/stream?User=***&ch=1&PASSWORD=***&token=***&pwd&key=***");
    assert_string_equal(def.url_rtsp, "rtsp://cam:554/stream?User=admin&ch=1&PASSWORD=s%40cret&token=&pwd&key=k3y");
    assert_int_equal(def.n_qsecrets, 3);
    assert_null(strstr(def.url_clean, "admin"));
    assert_null(strstr(def.url_clean, "cret"));
    /* every name of the list, any case, percent-encoded names too; others are left alone */
    static const char *const names[] = {"user", "username", "password", "pass", "pwd", "passwd", "token",
                                        "auth", "key", "Pass", "%70wd", "AUTH"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char u[128];
        snprintf(u, sizeof(u), "q=rtsp://cam/s?%s=hush", names[i]);
        assert_int_equal(parse(u, &why), 0);
        if (!strstr(def.url_clean, "=***") || strstr(def.url_clean, "hush"))
            fail_msg("%s: url_clean %s", names[i], def.url_clean);
    }
    static const char *const plain[] = {"users", "keys", "passkey", "monkey", "ch", "user_id"};
    for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
        char u[128];
        snprintf(u, sizeof(u), "q=rtsp://cam/s?%s=hush", plain[i]);
        assert_int_equal(parse(u, &why), 0);
        if (!strstr(def.url_clean, "hush") || def.n_qsecrets != 0)
            fail_msg("%s: url_clean %s", plain[i], def.url_clean);
    }
    /* the path is not the query: "/key=x/" stays */
    assert_int_equal(parse("q=rtsp://cam/key=x/s", &why), 0);
    assert_string_equal(def.url_clean, "rtsp://cam:554/key=x/s");
    /* url_clean parses again to itself */
    assert_int_equal(parse("q=rtsp://cam/stream?user=admin&password=pw1", &why), 0);
    char clean[sizeof(def.url_clean) + 2];
    snprintf(clean, sizeof(clean), "q=%s", def.url_clean);
    assert_int_equal(parse(clean, &why), 0);
    assert_string_equal(def.url_clean, "rtsp://cam:554/stream?user=***&password=***");
    /* a secret that decodes to a control byte is refused; masking must fit the path's cap */
    refused("q=rtsp://cam/s?password=a%00b", LV_EINVAL, "control byte");
    char longq[LV_RTSPURL_PATH_MAX + 64] = "q=rtsp://cam/";
    size_t at = strlen(longq);
    while (at + 5 < 13 + LV_RTSPURL_PATH_MAX) {
        memcpy(longq + at, "?key=", 5);
        longq[at] = at == 13 ? '?' : '&';
        at += 5;
    }
    longq[at] = '\0';
    refused(longq, LV_ELIMIT, "once its credentials read ***");

    /* the scrubber: decoded, as written, cut short at the end of the text */
    char out[512];
    assert_int_equal(parse("q=rtsp://cam/stream?user=admin&password=s%40cret%21", &why), 0);
    assert_int_equal(lv_rtspurl_scrub("Could not open rtsp://cam:554/stream?user=admin&password=s%40cret%21: denied",
                                      &def, out, sizeof(out)), 0);
    assert_string_equal(out, "Could not open rtsp://cam:554/stream?user=***&password=***: denied");
    assert_int_equal(lv_rtspurl_scrub("pw s@cret! or s%40cret%21, then s@c", &def, out, sizeof(out)), 0);
    assert_string_equal(out, "pw *** or ***, then ***");
    /* with a userinfo as well */
    assert_int_equal(parse("q=rtsp://u:pw9@cam/s?token=T0k3n", &why), 0);
    assert_string_equal(def.url_clean, "rtsp://cam:554/s?token=***");
    assert_int_equal(lv_rtspurl_scrub("rtsp://u:pw9@cam:554/s?token=T0k3n pw9", &def, out, sizeof(out)), 0);
    assert_string_equal(out, "rtsp://cam:554/s?token=*** ***");
}

static void scrub_caps(void **state)
{
    (void)state;
    const char *why;
    char out[16];
    assert_int_equal(parse("x=rtsp://u:secretpw@h/", &why), 0);
    /* a cut keeps the output terminated and never splits "***" */
    assert_int_equal(lv_rtspurl_scrub("0123456789ab secretpw", &def, out, sizeof(out)), LV_ELIMIT);
    assert_string_equal(out, "0123456789ab ");
    assert_int_equal(lv_rtspurl_scrub("0123456789abcdefgh", &def, out, sizeof(out)), LV_ELIMIT);
    assert_string_equal(out, "0123456789abcde");
    /* nor a UTF-8 sequence: "é" (2 bytes) at bytes 14..15 of a 16-byte buffer */
    assert_int_equal(lv_rtspurl_scrub("0123456789abcd\xc3\xa9", &def, out, sizeof(out)), LV_ELIMIT);
    assert_string_equal(out, "0123456789abcd");
    assert_int_equal(lv_rtspurl_scrub("\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac", &def, out, sizeof(out)), LV_ELIMIT);
    assert_string_equal(out, "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac");
    /* bad arguments */
    assert_int_equal(lv_rtspurl_scrub("x", &def, out, 0), LV_EINVAL);
    assert_int_equal(lv_rtspurl_scrub("x", NULL, out, sizeof(out)), LV_EINVAL);
    assert_string_equal(out, "");
    assert_int_equal(lv_rtspurl_scrub(NULL, &def, out, sizeof(out)), 0);
    assert_string_equal(out, "");
    assert_int_equal(lv_rtspurl_scrub("abc", &def, out, 1), LV_ELIMIT);
    assert_string_equal(out, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse_full),         cmocka_unit_test(parse_defaults),
        cmocka_unit_test(parse_ipv6),         cmocka_unit_test(parse_userinfo),
        cmocka_unit_test(refuse_schemes),     cmocka_unit_test(refuse_ids),
        cmocka_unit_test(refuse_hosts_ports), cmocka_unit_test(refuse_userinfo_path),
        cmocka_unit_test(refuse_lengths),     cmocka_unit_test(why_never_quotes),
        cmocka_unit_test(parse_url_only),     cmocka_unit_test(scrub),
        cmocka_unit_test(scrub_caps),         cmocka_unit_test(query_secrets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_httputil.c - cookies, query parameters, Origin/Host matching, Bearer tokens, Accept-Encoding,
 * If-None-Match, and the client address behind trusted proxies (X-Forwarded-For). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "lv_common.h"
#include "lv_httputil.h"

static void test_cookie_basic(void **state)
{
    (void)state;
    char out[64];
    const char *h = "theme=dark; livevlm_auth=abc123; lang=en";
    assert_int_equal(lv_cookie_get(h, "livevlm_auth", out, sizeof(out)), 0);
    assert_string_equal(out, "abc123");
    assert_int_equal(lv_cookie_get(h, "theme", out, sizeof(out)), 0);
    assert_string_equal(out, "dark");
    assert_int_equal(lv_cookie_get(h, "lang", out, sizeof(out)), 0);
    assert_string_equal(out, "en");
    assert_int_equal(lv_cookie_get(h, "missing", out, sizeof(out)), LV_ENOTFOUND);
    /* Names are whole and case-sensitive: no prefix, suffix or case-folded matches. */
    assert_int_equal(lv_cookie_get(h, "livevlm", out, sizeof(out)), LV_ENOTFOUND);
    assert_int_equal(lv_cookie_get(h, "vlm_auth", out, sizeof(out)), LV_ENOTFOUND);
    assert_int_equal(lv_cookie_get(h, "LIVEVLM_AUTH", out, sizeof(out)), LV_ENOTFOUND);
    assert_int_equal(lv_cookie_get("xlivevlm_auth=1", "livevlm_auth", out, sizeof(out)), LV_ENOTFOUND);
    assert_int_equal(lv_cookie_get(NULL, "a", out, sizeof(out)), LV_ENOTFOUND);
    assert_int_equal(lv_cookie_get("", "a", out, sizeof(out)), LV_ENOTFOUND);
    assert_int_equal(lv_cookie_get("a=1", NULL, out, sizeof(out)), LV_EINVAL);
    assert_int_equal(lv_cookie_get("a=1", "", out, sizeof(out)), LV_EINVAL);
}

static void test_cookie_spacing_and_quotes(void **state)
{
    (void)state;
    char out[64];
    const char *h = "  a = 1 ;b=2;;  ; c=\"quoted value\" ;\td\t=\t\"\" ; e= ; novalue; f=x=y";
    assert_int_equal(lv_cookie_get(h, "a", out, sizeof(out)), 0);
    assert_string_equal(out, "1");
    assert_int_equal(lv_cookie_get(h, "b", out, sizeof(out)), 0);
    assert_string_equal(out, "2");
    assert_int_equal(lv_cookie_get(h, "c", out, sizeof(out)), 0);
    assert_string_equal(out, "quoted value");
    assert_int_equal(lv_cookie_get(h, "d", out, sizeof(out)), 0);
    assert_string_equal(out, "");
    assert_int_equal(lv_cookie_get(h, "e", out, sizeof(out)), 0);
    assert_string_equal(out, "");
    assert_int_equal(lv_cookie_get(h, "novalue", out, sizeof(out)), LV_ENOTFOUND);
    assert_int_equal(lv_cookie_get(h, "f", out, sizeof(out)), 0);
    assert_string_equal(out, "x=y");
    /* A lone quote is not a quoted value. */
    assert_int_equal(lv_cookie_get("q=\"", "q", out, sizeof(out)), 0);
    assert_string_equal(out, "\"");
    /* The first of two same-named cookies wins (browsers send the most specific path first). */
    assert_int_equal(lv_cookie_get("t=first; t=second", "t", out, sizeof(out)), 0);
    assert_string_equal(out, "first");
}

static void test_cookie_limits(void **state)
{
    (void)state;
    char out[8];
    assert_int_equal(lv_cookie_get("k=1234567", "k", out, sizeof(out)), 0);
    assert_string_equal(out, "1234567");
    assert_int_equal(lv_cookie_get("k=12345678", "k", out, sizeof(out)), LV_ELIMIT);
    /* Quotes do not count against the buffer. */
    assert_int_equal(lv_cookie_get("k=\"1234567\"", "k", out, sizeof(out)), 0);
    assert_int_equal(lv_cookie_get("k=", "k", out, 0), LV_ELIMIT);
    assert_int_equal(lv_cookie_get("k=", "k", out, 1), 0);
    assert_int_equal(lv_cookie_get("k=x", "k", NULL, 0), LV_ELIMIT);
}

static void test_query_basic(void **state)
{
    (void)state;
    char out[80];
    const char *q = "a=1&token=0123abcd&refresh=1&empty=&flag&x=y=z";
    assert_int_equal(lv_query_get(q, "token", out, sizeof(out)), 0);
    assert_string_equal(out, "0123abcd");
    assert_int_equal(lv_query_get(q, "a", out, sizeof(out)), 0);
    assert_string_equal(out, "1");
    assert_int_equal(lv_query_get(q, "empty", out, sizeof(out)), 0);
    assert_string_equal(out, "");
    assert_int_equal(lv_query_get(q, "flag", out, sizeof(out)), 0);
    assert_string_equal(out, "");
    assert_int_equal(lv_query_get(q, "x", out, sizeof(out)), 0);
    assert_string_equal(out, "y=z");
    assert_int_equal(lv_query_get(q, "tok", out, sizeof(out)), LV_ENOTFOUND);
    assert_int_equal(lv_query_get(q, "Token", out, sizeof(out)), LV_ENOTFOUND);
    assert_int_equal(lv_query_get(NULL, "a", out, sizeof(out)), LV_ENOTFOUND);
    assert_int_equal(lv_query_get("", "a", out, sizeof(out)), LV_ENOTFOUND);
    assert_int_equal(lv_query_get("&&&", "a", out, sizeof(out)), LV_ENOTFOUND);
    assert_int_equal(lv_query_get("a=1", "", out, sizeof(out)), LV_EINVAL);
    assert_int_equal(lv_query_get("a=1", NULL, out, sizeof(out)), LV_EINVAL);
    /* First match wins. */
    assert_int_equal(lv_query_get("a=1&a=2", "a", out, sizeof(out)), 0);
    assert_string_equal(out, "1");
}

static void test_query_decoding(void **state)
{
    (void)state;
    char out[80];
    assert_int_equal(lv_query_get("p=a+b%20c%2Bd%25e%2fF", "p", out, sizeof(out)), 0);
    assert_string_equal(out, "a b c+d%e/F");
    assert_int_equal(lv_query_get("p=caf%C3%A9", "p", out, sizeof(out)), 0);
    assert_string_equal(out, "caf\xC3\xA9");
    /* Names are decoded too. */
    assert_int_equal(lv_query_get("my%20key=v&my+key2=w", "my key", out, sizeof(out)), 0);
    assert_string_equal(out, "v");
    assert_int_equal(lv_query_get("my%20key=v&my+key2=w", "my key2", out, sizeof(out)), 0);
    assert_string_equal(out, "w");
    /* Bad escapes and %00 in the matching value. */
    static const char *const bad[] = {"p=%", "p=%4", "p=%zz", "p=%4g", "p=ab%", "p=%00", "p=a%00b", "p=%%41"};
    for (size_t i = 0; i < LV_ARRAY_LEN(bad); i++) {
        snprintf(out, sizeof(out), "untouched");
        if (lv_query_get(bad[i], "p", out, sizeof(out)) != LV_EINVAL)
            fail_msg("%s not rejected", bad[i]);
        assert_string_equal(out, "untouched");
    }
    /* A bad escape elsewhere does not matter. */
    assert_int_equal(lv_query_get("x=%zz&p=ok", "p", out, sizeof(out)), 0);
    assert_string_equal(out, "ok");
    /* A malformed or NUL-bearing name never matches. */
    assert_int_equal(lv_query_get("p%=1&p%00=2", "p", out, sizeof(out)), LV_ENOTFOUND);
    /* A bad value that would also be too long is reported as bad. */
    char small[3];
    assert_int_equal(lv_query_get("p=abcdef%zz", "p", small, sizeof(small)), LV_EINVAL);
}

static void test_query_limits(void **state)
{
    (void)state;
    char out[4];
    assert_int_equal(lv_query_get("p=abc", "p", out, sizeof(out)), 0);
    assert_int_equal(lv_query_get("p=abcd", "p", out, sizeof(out)), LV_ELIMIT);
    /* The limit is on the decoded length. */
    assert_int_equal(lv_query_get("p=%41%42%43", "p", out, sizeof(out)), 0);
    assert_string_equal(out, "ABC");
    assert_int_equal(lv_query_get("p=", "p", out, 0), LV_ELIMIT);
    assert_int_equal(lv_query_get("p=x", "p", NULL, 0), LV_ELIMIT);
}

static void test_origin(void **state)
{
    (void)state;
    static const struct {
        const char *origin, *host;
        int match;
    } t[] = {
        {"https://host:8090", "host:8090", 1},
        {"https://HOST:8090", "Host:8090", 1},
        {"http://127.0.0.1:8090", "127.0.0.1:8090", 1},
        {"https://host:8090", "host:8091", 0},
        {"https://host:8090", "host", 0},
        {"https://host", "host:8090", 0},
        {"https://other:8090", "host:8090", 0},
        {"https://host.example:8090", "host:8090", 0},
        {"https://host:8090", "host.example:8090", 0},
        /* Default ports, omitted on either side. */
        {"https://host", "host", 1},
        {"https://host", "host:443", 1},
        {"https://host:443", "host", 1},
        {"http://host", "host:80", 1},
        {"http://host:80", "host", 1},
        {"https://host", "host:80", 0},
        {"http://host", "host:443", 0},
        {"HTTPS://host", "host", 1},
        /* IPv6 literals. */
        {"https://[::1]:8090", "[::1]:8090", 1},
        {"https://[::1]", "[::1]:443", 1},
        {"https://[FE80::1]:8090", "[fe80::1]:8090", 1},
        {"https://[::1]:8090", "[::1]:8091", 0},
        {"https://[::1]:8090", "[::2]:8090", 0},
        {"https://[::1]:8090", "::1:8090", 0},
        {"https://[::1]:8090", "[::1:8090", 0},
        {"https://[]:8090", "[]:8090", 0},
        {"https://[::1%eth0]:8090", "[::1%eth0]:8090", 0},
        /* Opaque and malformed origins fail closed. */
        {"null", "host:8090", 0},
        {"", "host", 0},
        {"ftp://host", "host", 0},
        {"file://", "host", 0},
        {"https://", "", 0},
        {"https://host:8090/", "host:8090", 0},
        {"https://host:8090/path", "host:8090", 0},
        {"https://user@host:8090", "host:8090", 0},
        {"https://evil.example#@host:8090", "host:8090", 0},
        {"https://host:", "host", 0},
        {"https://host:0", "host:0", 0},
        {"https://host:65535", "host:65535", 1},
        {"https://host:65536", "host:65536", 0},
        {"https://host:008090", "host:8090", 0},
        {"https://host:08090", "host:8090", 1},
        {"https://host:80a", "host:80a", 0},
        {"https://host:8090", "host:8090 ", 1},
        {"https://ho st:8090", "ho st:8090", 0},
        {"https://host:8090", "host:8090:1", 0},
    };
    for (size_t i = 0; i < LV_ARRAY_LEN(t); i++)
        if (lv_origin_matches(t[i].origin, t[i].host) != t[i].match)
            fail_msg("origin '%s' host '%s': expected %d", t[i].origin, t[i].host, t[i].match);
    assert_int_equal(lv_origin_matches(NULL, "host"), 0);
    assert_int_equal(lv_origin_matches("https://host", NULL), 0);
}

static void test_bearer(void **state)
{
    (void)state;
    char out[80];
    const char *tok = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    char h[128];
    snprintf(h, sizeof(h), "Bearer %s", tok);
    assert_int_equal(lv_bearer_get(h, out, sizeof(out)), 0);
    assert_string_equal(out, tok);
    assert_int_equal(lv_bearer_get("bearer abc", out, sizeof(out)), 0);
    assert_string_equal(out, "abc");
    assert_int_equal(lv_bearer_get("BEARER\tabc", out, sizeof(out)), 0);
    assert_int_equal(lv_bearer_get("  Bearer   a-b.c_d~e+f/g==  ", out, sizeof(out)), 0);
    assert_string_equal(out, "a-b.c_d~e+f/g==");
    static const char *const none[] = {
        "Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Bearer    ", "Bearerabc", "Bearer a b",
        "Bearer ab=c", "Bearer =abc", "Bearer a\"b", "Bearer a,b", "", "Token abc", "Bear abc",
    };
    for (size_t i = 0; i < LV_ARRAY_LEN(none); i++)
        if (lv_bearer_get(none[i], out, sizeof(out)) != LV_ENOTFOUND)
            fail_msg("'%s' accepted", none[i]);
    assert_int_equal(lv_bearer_get(NULL, out, sizeof(out)), LV_ENOTFOUND);
    char small[4];
    assert_int_equal(lv_bearer_get("Bearer abc", small, sizeof(small)), 0);
    assert_int_equal(lv_bearer_get("Bearer abcd", small, sizeof(small)), LV_ELIMIT);
    assert_int_equal(lv_bearer_get("Bearer abcd", NULL, 0), LV_ELIMIT);
}

/* lv_accept_encoding_q on a C string (the field value as lv_http1 hands it over, blanks trimmed) */
static int ae_q(const char *value, const char *coding)
{
    return lv_accept_encoding_q(value, value ? strlen(value) : 0, coding);
}

static void test_accept_encoding(void **state)
{
    (void)state;
    static const struct {
        const char *value;
        int gzip_q;
    } t[] = {
        /* what browsers and tools send */
        {"gzip, deflate, br, zstd", 1000},
        {"gzip, deflate", 1000},
        {"deflate, gzip;q=1.0, *;q=0.5", 1000},
        {"br;q=1.0, gzip;q=0.8, *;q=0.1", 800},
        {"identity", 0},
        {"br", 0},
        {"", 0},
        /* q=0 means "not acceptable" (RFC 9110 section 12.5.3) */
        {"gzip;q=0", 0},
        {"gzip;q=0.000", 0},
        {"gzip; q=0, deflate", 0},
        {"gzip;q=0.001", 1},
        {"gzip;Q=0.5", 500},
        {"gzip ; q=0.25", 250},
        {"gzip;q=1", 1000},
        {"gzip;q=1.", 1000},
        {"gzip;q=1.000", 1000},
        /* "*" stands for codings not named; the coding's own entry wins, whatever the order */
        {"*", 1000},
        {"*;q=0", 0},
        {"*;q=0, gzip", 1000},
        {"gzip;q=0, *", 0},
        {"*;q=0.3, br", 300},
        /* names: case-insensitive; x-gzip is gzip; no prefix or substring matches */
        {"GZIP", 1000},
        {"x-gzip", 1000},
        {"X-Gzip;q=0.7", 700},
        {"gzipx", 0},
        {"xgzip", 0},
        {"x-gzipp", 0},
        {"gzi", 0},
        {"br, x-compress, gzip2", 0},
        /* the first entry for a name wins */
        {"gzip;q=0.5, gzip;q=1", 500},
        {"gzip;q=0, x-gzip", 0},
        /* empty list elements and blanks are fine */
        {" , ,gzip ,", 1000},
        {",,, \t gzip\t", 1000},
        /* malformed weights and parameters: that entry is ignored */
        {"gzip;q=2", 0},
        {"gzip;q=1.5", 0},
        {"gzip;q=1.001", 0},
        {"gzip;q=0.1234", 0},
        {"gzip;q=", 0},
        {"gzip;q", 0},
        {"gzip;q=.5", 0},
        {"gzip;q=-0", 0},
        {"gzip;q=0.5x", 0},
        {"gzip;q =0.5", 0},
        {"gzip;level=9", 0},
        {"gzip;q=0.5;level=9", 0},
        {"gzip deflate", 0},
        {"gzip;", 0},
        {";q=1", 0},
        {"g\"zip", 0},
        {"gzip;q=0.x, *", 1000},
        {"gzip;q=5, *;q=0.2", 200},
        {"*;q=9", 0},
    };
    for (size_t i = 0; i < LV_ARRAY_LEN(t); i++)
        if (ae_q(t[i].value, "gzip") != t[i].gzip_q)
            fail_msg("Accept-Encoding '%s': gzip q %d, expected %d", t[i].value, ae_q(t[i].value, "gzip"), t[i].gzip_q);
    /* absent: no coding (see the header for why) */
    assert_int_equal(ae_q(NULL, "gzip"), 0);
    /* other codings and the coding argument */
    assert_int_equal(ae_q("gzip;q=0.5, br;q=0.9", "br"), 900);
    assert_int_equal(ae_q("x-compress", "compress"), 1000);
    assert_int_equal(ae_q("gzip", ""), 0);
    assert_int_equal(ae_q("gzip", NULL), 0);
    assert_int_equal(ae_q("*", "GZIP"), 1000);
    /* the length bounds the field: bytes past it are not read */
    assert_int_equal(lv_accept_encoding_q("br, gzip", 2, "gzip"), 0);
    assert_int_equal(lv_accept_encoding_q("gzip;q=0", 4, "gzip"), 1000);
    /* a NUL spoils its element only (lv_http1 never hands one over) */
    assert_int_equal(lv_accept_encoding_q("gzip\0, br", 9, "gzip"), 0);
    assert_int_equal(lv_accept_encoding_q("gzip\0, br", 9, "br"), 1000);
}

/* lv_etag_match on a C string */
static int inm(const char *value, const char *etag)
{
    return lv_etag_match(value, value ? strlen(value) : 0, etag);
}

static void test_etag_match(void **state)
{
    (void)state;
    const char *tag = "\"5b065d88cf58908e5e328483aa29cccc\"";
    static const struct {
        const char *value;
        int match;
    } t[] = {
        {"\"5b065d88cf58908e5e328483aa29cccc\"", 1},
        {"W/\"5b065d88cf58908e5e328483aa29cccc\"", 1},               /* weak comparison */
        {"\"other\", \"5b065d88cf58908e5e328483aa29cccc\"", 1},
        {"\"other\",W/\"5b065d88cf58908e5e328483aa29cccc\" , \"x\"", 1},
        {" \t\"5b065d88cf58908e5e328483aa29cccc\"\t ", 1},
        {",,\"5b065d88cf58908e5e328483aa29cccc\",,", 1},
        {"*", 1},
        {"  *  ", 1},
        {"\"other\"", 0},
        {"\"5b065d88cf58908e5e328483aa29ccc\"", 0},                 /* one digit short */
        {"\"5B065D88CF58908E5E328483AA29CCCC\"", 0},                /* opaque: case matters */
        {"5b065d88cf58908e5e328483aa29cccc", 0},                    /* unquoted */
        {"\"5b065d88cf58908e5e328483aa29cccc", 0},
        {"w/\"5b065d88cf58908e5e328483aa29cccc\"", 0},              /* "W/" is case-sensitive */
        {"\"5b065d88cf58908e5e328483aa29cccc\" junk", 0},
        {"\"5b065d88cf58908e5e328483aa29cccc\"\"x\"", 0},
        {"\"5b065d88cf58908e5e328483aa29cccc\", bad", 0},           /* malformed anywhere: none */
        {"*, \"5b065d88cf58908e5e328483aa29cccc\"", 0},             /* "*" only alone */
        {"\"5b065d88cf58908e5e328483aa29cccc\", *", 0},
        {"\"5b065d88 cf58908e5e328483aa29cccc\"", 0},
        {"\"\"", 0},
        {"", 0},
        {",", 0},
        {"W/", 0},
        {"**", 0},
    };
    for (size_t i = 0; i < LV_ARRAY_LEN(t); i++)
        if (inm(t[i].value, tag) != t[i].match)
            fail_msg("If-None-Match '%s': expected %d", t[i].value, t[i].match);
    assert_int_equal(inm(NULL, tag), 0);
    assert_int_equal(inm("*", NULL), 0);
    /* the current tag may itself be weak; an empty opaque tag is a tag */
    assert_int_equal(inm("\"a\"", "W/\"a\""), 1);
    assert_int_equal(inm("\"\"", "\"\""), 1);
    assert_int_equal(inm("\"a\"", "a"), 0);
    /* obs-text inside a tag is allowed; the length bounds the field */
    assert_int_equal(inm("\"\xc3\xa9\"", "\"\xc3\xa9\""), 1);
    assert_int_equal(lv_etag_match("\"a\"\"b\"", 3, "\"a\""), 1);
    assert_int_equal(lv_etag_match("\"ab\"", 3, "\"ab\""), 0);
}

/* ---------- addresses, address blocks, X-Forwarded-For ---------- */

static void test_ip_parse_and_text(void **state)
{
    (void)state;
    unsigned char a[16], b[16];
    char text[LV_IP_TEXT_MAX];
    static const struct {
        const char *in, *out;
    } ok[] = {
        {"10.0.0.1", "10.0.0.1"},
        {"::ffff:10.0.0.1", "10.0.0.1"}, /* one client, one text: the peer is written so (lv_net.c) */
        {"::FFFF:a00:1", "10.0.0.1"},
        {"2001:DB8:0:0:0:0:0:1", "2001:db8::1"},
        {"::1", "::1"},
        {"0.0.0.0", "0.0.0.0"},
        {"255.255.255.255", "255.255.255.255"},
    };
    for (size_t i = 0; i < LV_ARRAY_LEN(ok); i++) {
        assert_int_equal(lv_ip_parse(ok[i].in, strlen(ok[i].in), a), 0);
        lv_ip_text(a, text, sizeof(text));
        assert_string_equal(text, ok[i].out);
    }
    assert_int_equal(lv_ip_parse("10.0.0.1", 8, a), 0);
    assert_int_equal(lv_ip_parse("::ffff:10.0.0.1", 15, b), 0);
    assert_memory_equal(a, b, 16);
    static const char *const bad[] = {"", "10.0.0", "127.1", "010.0.0.1", "10.0.0.256", "10.0.0.1 ", " 10.0.0.1",
                                      "10.0.0.1:80", "[::1]", "fe80::1%eth0", "unknown", "1.2.3.4.5", "::g",
                                      "0x7f.0.0.1", "2001:db8::1/64"};
    for (size_t i = 0; i < LV_ARRAY_LEN(bad); i++)
        if (lv_ip_parse(bad[i], strlen(bad[i]), a) != LV_EINVAL)
            fail_msg("'%s' parsed as an address", bad[i]);
    /* the length is the view's: bytes after it are not read, a NUL inside it is refused */
    assert_int_equal(lv_ip_parse("10.0.0.12", 8, a), 0);
    lv_ip_text(a, text, sizeof(text));
    assert_string_equal(text, "10.0.0.1");
    assert_int_equal(lv_ip_parse("10.0.0.1\0x", 10, a), LV_EINVAL);
    assert_int_equal(lv_ip_parse(NULL, 0, a), LV_EINVAL);
    /* too small a buffer: "?" rather than half an address */
    assert_int_equal(lv_ip_parse("2001:db8::1", 11, a), 0);
    lv_ip_text(a, text, 5);
    assert_string_equal(text, "?");
}

static int in_net(const char *net, const char *ip)
{
    lv_ipnet_t n;
    unsigned char a[16];
    assert_int_equal(lv_ipnet_parse(net, &n), 0);
    assert_int_equal(lv_ip_parse(ip, strlen(ip), a), 0);
    return lv_ipnet_contains(&n, 1, a);
}

static void test_ipnet(void **state)
{
    (void)state;
    assert_int_equal(in_net("127.0.0.1", "127.0.0.1"), 1);
    assert_int_equal(in_net("127.0.0.1", "127.0.0.2"), 0);
    assert_int_equal(in_net("127.0.0.1", "::ffff:127.0.0.1"), 1);
    assert_int_equal(in_net("::ffff:127.0.0.1", "127.0.0.1"), 1);
    assert_int_equal(in_net("10.0.0.0/8", "10.255.1.2"), 1);
    assert_int_equal(in_net("10.0.0.0/8", "11.0.0.0"), 0);
    assert_int_equal(in_net("10.1.2.3/8", "10.9.9.9"), 1); /* host bits past the prefix are ignored */
    assert_int_equal(in_net("172.16.0.0/12", "172.31.255.255"), 1);
    assert_int_equal(in_net("172.16.0.0/12", "172.32.0.0"), 0);
    assert_int_equal(in_net("192.168.1.128/25", "192.168.1.200"), 1);
    assert_int_equal(in_net("192.168.1.128/25", "192.168.1.127"), 0);
    assert_int_equal(in_net("0.0.0.0/0", "203.0.113.9"), 1);
    assert_int_equal(in_net("0.0.0.0/0", "2001:db8::1"), 0); /* every IPv4 address, no IPv6 one */
    assert_int_equal(in_net("::/0", "2001:db8::1"), 1);
    assert_int_equal(in_net("::/0", "203.0.113.9"), 1);
    assert_int_equal(in_net("2001:db8::/32", "2001:db8:ffff::1"), 1);
    assert_int_equal(in_net("2001:db8::/32", "2001:db9::1"), 0);
    assert_int_equal(in_net("fd00::/7", "fdff::1"), 1);
    assert_int_equal(in_net("fd00::/7", "fe00::1"), 0);
    assert_int_equal(in_net("::1/128", "::1"), 1);
    assert_int_equal(in_net("10.0.0.5/32", "10.0.0.5"), 1);
    assert_int_equal(in_net("10.0.0.5/32", "10.0.0.4"), 0);
    lv_ipnet_t n;
    static const char *const bad[] = {"", "/8", "10.0.0.0/", "10.0.0.0/33", "::/129", "10.0.0.0/-1",
                                      "10.0.0.0/8x", "10.0.0.0/0008", "10.0.0.0 /8", "10.0.0.0/ 8",
                                      "[::1]", "[::1]/128", "10.0.0.1:80", "localhost", "10.0.0.0/8/8"};
    for (size_t i = 0; i < LV_ARRAY_LEN(bad); i++)
        if (lv_ipnet_parse(bad[i], &n) != LV_EINVAL)
            fail_msg("'%s' parsed as an address block", bad[i]);
    assert_int_equal(lv_ipnet_parse(NULL, &n), LV_EINVAL);
    assert_int_equal(lv_ipnet_parse("10.0.0.0/8", &n), 0);
    assert_int_equal(n.bits, 104);
    assert_int_equal(lv_ipnet_contains(NULL, 0, n.addr), 0); /* no block: nothing is in it */
}

/* the trusted proxies of these cases: 127.0.0.1 and 10.0.0.0/8 */
static int xff(const char *const *fields, size_t n, char *out)
{
    static lv_ipnet_t trusted[2];
    assert_int_equal(lv_ipnet_parse("127.0.0.1", &trusted[0]), 0);
    assert_int_equal(lv_ipnet_parse("10.0.0.0/8", &trusted[1]), 0);
    lv_view_t v[8];
    assert_true(n <= LV_ARRAY_LEN(v));
    for (size_t i = 0; i < n; i++)
        v[i] = (lv_view_t){fields[i], strlen(fields[i])};
    return lv_forwarded_for_client(v, n, trusted, 2, out, LV_IP_TEXT_MAX);
}

static void expect_client(const char *field, const char *client)
{
    char out[LV_IP_TEXT_MAX];
    const char *f[] = {field};
    int rc = xff(f, 1, out);
    if (rc != 0 || strcmp(out, client) != 0)
        fail_msg("'%s' -> %d '%s', expected '%s'", field, rc, out, client);
}

static void expect_error(const char *field, int want)
{
    char out[LV_IP_TEXT_MAX] = "x";
    const char *f[] = {field};
    int rc = xff(f, 1, out);
    if (rc != want || out[0])
        fail_msg("'%.60s' -> %d '%s', expected %d and no address", field, rc, out, want);
}

static void test_forwarded_for(void **state)
{
    (void)state;
    char out[LV_IP_TEXT_MAX];
    expect_client("203.0.113.7", "203.0.113.7");
    /* the rightmost address that is not a trusted proxy: the left part is the client's to write */
    expect_client("198.51.100.1, 203.0.113.7", "203.0.113.7");
    expect_client("198.51.100.1, 203.0.113.7, 10.1.1.1", "203.0.113.7");
    expect_client("203.0.113.7, 127.0.0.1", "203.0.113.7");
    expect_client("203.0.113.7,10.0.0.2,127.0.0.1", "203.0.113.7");
    /* a forged entry left of the real one changes nothing, nor does junk there */
    expect_client("127.0.0.1, 203.0.113.7", "203.0.113.7");
    expect_client("not an address, 203.0.113.7", "203.0.113.7");
    expect_client("unknown,,203.0.113.7, 10.0.0.9", "203.0.113.7");
    /* every entry a trusted proxy: the leftmost, furthest from us, was the client */
    expect_client("10.0.0.3, 10.0.0.2, 127.0.0.1", "10.0.0.3");
    /* written as the peer address would be: one client, one principal */
    expect_client("::ffff:203.0.113.7", "203.0.113.7");
    expect_client("::ffff:203.0.113.7, ::ffff:10.0.0.2", "203.0.113.7");
    expect_client("2001:DB8::0:1", "2001:db8::1");
    expect_client("[2001:db8::1]", "2001:db8::1");
    expect_client(" \t203.0.113.7 \t", "203.0.113.7");
    expect_client("203.0.113.7,", "203.0.113.7");
    expect_client(",203.0.113.7", "203.0.113.7");
    /* several fields are one list, in order */
    const char *two[] = {"198.51.100.1", "203.0.113.7, 10.0.0.2"};
    assert_int_equal(xff(two, 2, out), 0);
    assert_string_equal(out, "203.0.113.7");
    const char *spill[] = {"198.51.100.1", "10.0.0.4", "127.0.0.1"};
    assert_int_equal(xff(spill, 3, out), 0);
    assert_string_equal(out, "198.51.100.1");
    const char *blank_last[] = {"198.51.100.1", ""};
    assert_int_equal(xff(blank_last, 2, out), 0);
    assert_string_equal(out, "198.51.100.1");

    /* no field at all: the peer is the client */
    assert_int_equal(xff(NULL, 0, out), LV_ENOTFOUND);
    assert_string_equal(out, "");
    /* empty, malformed where the walk reads, over the caps: an error, no address */
    expect_error("", LV_EINVAL);
    expect_error(" , ,", LV_EINVAL);
    expect_error("garbage", LV_EINVAL);
    expect_error("203.0.113.7, garbage", LV_EINVAL);
    expect_error("203.0.113.7, garbage, 127.0.0.1", LV_EINVAL);
    expect_error("203.0.113.7:4711", LV_EINVAL);
    expect_error("[203.0.113.7]:4711", LV_EINVAL);
    expect_error("[2001:db8::1]:4711", LV_EINVAL);
    expect_error("for=203.0.113.7", LV_EINVAL); /* RFC 7239 Forwarded syntax is another header */
    expect_error("203.0.113.7 198.51.100.1", LV_EINVAL);
    expect_error("fe80::1%eth0", LV_EINVAL);
    expect_error("0000000000000000000000000000000000000000000000000000000001.2.3.4", LV_EINVAL);
    char big[LV_XFF_MAX_BYTES + 64];
    size_t used = 0;
    for (int i = 0; i < LV_XFF_MAX_ENTRIES + 1; i++)
        used += (size_t)snprintf(big + used, sizeof(big) - used, "%s10.0.0.%d", i ? ", " : "", i + 1);
    expect_error(big, LV_ELIMIT); /* 33 proxies walked */
    /* ... but a long list is fine when the client's address comes within the caps */
    used = (size_t)snprintf(big, sizeof(big), "203.0.113.7");
    for (int i = 0; i < LV_XFF_MAX_ENTRIES - 1; i++)
        used += (size_t)snprintf(big + used, sizeof(big) - used, ", 10.0.0.%d", i + 1);
    expect_client(big, "203.0.113.7");
    /* and the client may pad its own part as it likes: it is never read */
    memset(big, 'x', sizeof(big));
    used = sizeof(big) - 32;
    snprintf(big + used, sizeof(big) - used, ",203.0.113.7, 127.0.0.1");
    expect_client(big, "203.0.113.7");
    /* blanks count against the byte cap */
    memset(big, ' ', sizeof(big));
    snprintf(big, sizeof(big), "203.0.113.7,");
    big[strlen(big)] = ' ';
    big[sizeof(big) - 1] = '\0';
    expect_error(big, LV_ELIMIT);
    /* the caller's buffer must hold any address */
    lv_view_t one = {"203.0.113.7", 11};
    char small[8];
    assert_int_equal(lv_forwarded_for_client(&one, 1, NULL, 0, small, sizeof(small)), LV_EINVAL);
    /* no trusted proxy listed: the rightmost entry is the client */
    lv_view_t chain = {"203.0.113.7, 127.0.0.1", 22};
    assert_int_equal(lv_forwarded_for_client(&chain, 1, NULL, 0, out, sizeof(out)), 0);
    assert_string_equal(out, "127.0.0.1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cookie_basic),
        cmocka_unit_test(test_cookie_spacing_and_quotes),
        cmocka_unit_test(test_cookie_limits),
        cmocka_unit_test(test_query_basic),
        cmocka_unit_test(test_query_decoding),
        cmocka_unit_test(test_query_limits),
        cmocka_unit_test(test_origin),
        cmocka_unit_test(test_bearer),
        cmocka_unit_test(test_accept_encoding),
        cmocka_unit_test(test_etag_match),
        cmocka_unit_test(test_ip_parse_and_text),
        cmocka_unit_test(test_ipnet),
        cmocka_unit_test(test_forwarded_for),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

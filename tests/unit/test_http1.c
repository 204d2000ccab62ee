/* test_http1.c - the HTTP/1.1 request head parser and the chunked body decoder: valid heads,
 * every refusal with its status, caps, incremental input, pipelining, chunked bodies split at
 * every byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lv_common.h"
#include "lv_http1.h"

#define CAP 8192

static lv_http1_req_t req; /* 1.5 KB of headers: keep it off cmocka's small stacks */

static int parse_s(const char *s, int *status)
{
    return lv_http1_parse_request(s, strlen(s), CAP, &req, status);
}

static bool view_is(lv_view_t v, const char *s)
{
    return v.len == strlen(s) && memcmp(v.ptr, s, v.len) == 0;
}

/* Parse expecting a refusal with this return code and status. */
static void expect_refused(const char *s, int rc, int status)
{
    int st = -1;
    int got = parse_s(s, &st);
    if (got != rc || st != status)
        fail_msg("%s: rc %d status %d, wanted rc %d status %d", s, got, st, rc, status);
}

static void test_simple_get(void **state)
{
    (void)state;
    const char *s = "GET /ws?token=abc&x=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent:  curl/8 \t\r\n\r\n";
    int st = -1;
    assert_int_equal(parse_s(s, &st), 0);
    assert_int_equal(st, 0);
    assert_true(view_is(req.method, "GET"));
    assert_true(view_is(req.target, "/ws?token=abc&x=1"));
    assert_true(view_is(req.path, "/ws"));
    assert_true(view_is(req.query, "token=abc&x=1"));
    assert_int_equal(req.minor_version, 1);
    assert_int_equal(req.n_headers, 2);
    assert_true(view_is(req.headers[0].name, "Host"));
    assert_true(view_is(req.headers[0].value, "example.com"));
    assert_true(view_is(req.headers[1].value, "curl/8")); /* blanks trimmed both sides */
    assert_int_equal(req.content_length, -1);
    assert_false(req.chunked);
    assert_true(req.keep_alive);
    assert_false(req.upgrade_websocket);
    assert_int_equal(req.head_len, strlen(s));
    /* views point into the buffer */
    assert_ptr_equal(req.method.ptr, s);

    assert_int_equal(parse_s("GET / HTTP/1.1\r\n\r\n", NULL), 0);
    assert_true(view_is(req.path, "/"));
    assert_int_equal(req.query.len, 0);
    assert_int_equal(req.n_headers, 0);
    /* '?' with nothing after it: an empty query */
    assert_int_equal(parse_s("GET /a? HTTP/1.1\r\n\r\n", NULL), 0);
    assert_true(view_is(req.path, "/a"));
    assert_int_equal(req.query.len, 0);
    /* a header with an empty value */
    assert_int_equal(parse_s("GET / HTTP/1.1\r\nX-Empty:\r\nY:   \r\n\r\n", NULL), 0);
    assert_int_equal(req.n_headers, 2);
    assert_int_equal(req.headers[0].value.len, 0);
    assert_int_equal(req.headers[1].value.len, 0);
    /* obs-text in a value is kept as is */
    assert_int_equal(parse_s("GET / HTTP/1.1\r\nX-Name: caf\xc3\xa9\r\n\r\n", NULL), 0);
    assert_true(view_is(req.headers[0].value, "caf\xc3\xa9"));
}

static void test_post_content_length(void **state)
{
    (void)state;
    const char *s = "POST /api/chat HTTP/1.1\r\nContent-Length: 11\r\nContent-Type: text/plain\r\n\r\nhello world";
    assert_int_equal(parse_s(s, NULL), 0);
    assert_true(view_is(req.method, "POST"));
    assert_int_equal(req.content_length, 11);
    assert_int_equal(req.head_len, strlen(s) - 11);
    assert_string_equal(s + req.head_len, "hello world");
    assert_int_equal(parse_s("POST / HTTP/1.1\r\ncontent-length: 0\r\n\r\n", NULL), 0);
    assert_int_equal(req.content_length, 0);
    assert_int_equal(parse_s("POST / HTTP/1.1\r\nContent-Length: 007\r\n\r\n", NULL), 0);
    assert_int_equal(req.content_length, 7);
    assert_int_equal(parse_s("POST / HTTP/1.1\r\nContent-Length: 9223372036854775807\r\n\r\n", NULL), 0);
    assert_int_equal(req.content_length, INT64_MAX);
}

static void test_pipelined(void **state)
{
    (void)state;
    const char *s = "GET /one HTTP/1.1\r\nHost: a\r\n\r\n"
                    "POST /two HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
                    "GET /three HTTP/1.1\r\n\r\n";
    size_t off = 0, len = strlen(s);
    assert_int_equal(lv_http1_parse_request(s, len, CAP, &req, NULL), 0);
    assert_true(view_is(req.path, "/one"));
    off += req.head_len;
    assert_memory_equal(s + off, "POST", 4);
    assert_int_equal(lv_http1_parse_request(s + off, len - off, CAP, &req, NULL), 0);
    assert_true(view_is(req.path, "/two"));
    off += req.head_len + (size_t)req.content_length;
    assert_int_equal(lv_http1_parse_request(s + off, len - off, CAP, &req, NULL), 0);
    assert_true(view_is(req.path, "/three"));
    off += req.head_len;
    assert_int_equal(off, len);
    assert_int_equal(lv_http1_parse_request(s + off, 0, CAP, &req, NULL), LV_EAGAIN);
}

static void test_incremental(void **state)
{
    (void)state;
    const char *s = "\r\nPOST /p?q=1 HTTP/1.0\r\nConnection: keep-alive\nContent-Length: 2\r\nA: 1\r\n\r\nxy";
    size_t full = strlen(s) - 2;
    for (size_t n = 0; n < full; n++) {
        int st = -1;
        assert_int_equal(lv_http1_parse_request(s, n, CAP, &req, &st), LV_EAGAIN);
        assert_int_equal(st, 0);
    }
    for (size_t n = full; n <= full + 2; n++) {
        assert_int_equal(lv_http1_parse_request(s, n, CAP, &req, NULL), 0);
        assert_int_equal(req.head_len, full);
        assert_int_equal(req.content_length, 2);
        assert_true(req.keep_alive);
        assert_int_equal(req.minor_version, 0);
        assert_true(view_is(req.query, "q=1"));
    }
    /* A refusal comes as soon as the offending byte arrives, before the head ends. */
    const char *bad = "GET / HTTP/1.1\r\nBad Name: 1\r\n";
    size_t at = strlen("GET / HTTP/1.1\r\nBad");
    assert_int_equal(lv_http1_parse_request(bad, at, CAP, &req, NULL), LV_EAGAIN);
    int st = 0;
    assert_int_equal(lv_http1_parse_request(bad, at + 1, CAP, &req, &st), LV_EPARSE);
    assert_int_equal(st, 400);
}

static void test_line_endings(void **state)
{
    (void)state;
    /* LF only */
    const char *s = "GET /lf HTTP/1.1\nHost: x\nX-B: 2\n\n";
    assert_int_equal(parse_s(s, NULL), 0);
    assert_int_equal(req.head_len, strlen(s));
    assert_int_equal(req.n_headers, 2);
    assert_true(view_is(req.headers[1].value, "2"));
    /* mixed */
    s = "GET /m HTTP/1.1\r\nHost: x\n\r\n";
    assert_int_equal(parse_s(s, NULL), 0);
    assert_int_equal(req.head_len, strlen(s));
    /* leading empty lines (up to 8) are skipped */
    s = "\r\n\n\r\nGET /lead HTTP/1.1\r\n\r\n";
    assert_int_equal(parse_s(s, NULL), 0);
    assert_true(view_is(req.path, "/lead"));
    assert_int_equal(req.head_len, strlen(s));
    assert_int_equal(parse_s("\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n", NULL), 0);
    expect_refused("\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n", LV_EPARSE, 400);
    assert_int_equal(parse_s("\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n", NULL), LV_EAGAIN);
    assert_int_equal(parse_s("\r", NULL), LV_EAGAIN);
    /* a bare CR is no line ending */
    expect_refused("\rGET / HTTP/1.1\r\n\r\n", LV_EPARSE, 400);
    expect_refused("GET / HTTP/1.1\rHost: x\r\n\r\n", LV_EPARSE, 400);
    expect_refused("GET / HTTP/1.1\r\nHost: x\rY\r\n\r\n", LV_EPARSE, 400);
    expect_refused("GET / HTTP/1.1\r\nHost: x\r\n\rX", LV_EPARSE, 400);
}

static void test_header_names(void **state)
{
    (void)state;
    /* one-character names (lws 4.1.6 never answered "A:") */
    assert_int_equal(parse_s("GET / HTTP/1.1\r\nA: 1\r\n\r\n", NULL), 0);
    assert_int_equal(req.n_headers, 1);
    assert_true(view_is(req.headers[0].name, "A"));
    assert_true(view_is(req.headers[0].value, "1"));
    assert_int_equal(parse_s("GET / HTTP/1.1\r\nX-A: 1\r\nA:2\r\n\r\n", NULL), 0);
    assert_true(view_is(req.headers[0].name, "X-A"));
    assert_true(view_is(req.headers[1].value, "2"));
    /* lookups are case-insensitive and whole-name */
    assert_non_null(lv_http1_header(&req, "x-a"));
    assert_true(view_is(*lv_http1_header(&req, "a"), "2"));
    assert_null(lv_http1_header(&req, "X"));
    assert_null(lv_http1_header(&req, "X-A-B"));
    assert_null(lv_http1_header(&req, NULL));
    assert_null(lv_http1_header(NULL, "a"));
    /* every tchar is a name character */
    assert_int_equal(parse_s("GET / HTTP/1.1\r\n!#$%&'*+-.^_`|~09azAZ: v\r\n\r\n", NULL), 0);
    /* the first of duplicates wins */
    assert_int_equal(parse_s("GET / HTTP/1.1\r\nCookie: a=1\r\ncookie: b=2\r\n\r\n", NULL), 0);
    assert_true(view_is(*lv_http1_header(&req, "COOKIE"), "a=1"));
}

static void test_header_copy(void **state)
{
    (void)state;
    char out[8];
    assert_int_equal(parse_s("GET / HTTP/1.1\r\nK: 1234567\r\nL: 12345678\r\nE:\r\n\r\n", NULL), 0);
    assert_int_equal(lv_http1_header_copy(&req, "k", out, sizeof(out)), 0);
    assert_string_equal(out, "1234567");
    assert_int_equal(lv_http1_header_copy(&req, "L", out, sizeof(out)), LV_ELIMIT);
    assert_string_equal(out, "");
    assert_int_equal(lv_http1_header_copy(&req, "e", out, sizeof(out)), 0);
    assert_string_equal(out, "");
    assert_int_equal(lv_http1_header_copy(&req, "missing", out, sizeof(out)), LV_ENOTFOUND);
    assert_string_equal(out, "");
    assert_int_equal(lv_http1_header_copy(&req, "k", out, 0), LV_ELIMIT);
    assert_int_equal(lv_http1_header_copy(&req, "e", out, 1), 0);
}

static void test_bad_header_lines(void **state)
{
    (void)state;
    expect_refused("GET / HTTP/1.1\r\nNoColon\r\n\r\n", LV_EPARSE, 400);
    expect_refused("GET / HTTP/1.1\r\nHost : x\r\n\r\n", LV_EPARSE, 400); /* blank before ':' */
    expect_refused("GET / HTTP/1.1\r\nHost\t: x\r\n\r\n", LV_EPARSE, 400);
    expect_refused("GET / HTTP/1.1\r\n: x\r\n\r\n", LV_EPARSE, 400);        /* empty name */
    expect_refused("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", LV_EPARSE, 400); /* obs-fold */
    expect_refused("GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n", LV_EPARSE, 400);
    expect_refused("GET / HTTP/1.1\r\n Host: x\r\n\r\n", LV_EPARSE, 400); /* blank before first field */
    expect_refused("GET / HTTP/1.1\r\nX(y): 1\r\n\r\n", LV_EPARSE, 400);  /* non-token name */
    expect_refused("GET / HTTP/1.1\r\nX\xc3\xa9: 1\r\n\r\n", LV_EPARSE, 400);
    /* control bytes in a value */
    char buf[64];
    static const unsigned char ctl[] = {0x00, 0x01, 0x08, 0x0b, 0x0c, 0x1f, 0x7f};
    for (size_t i = 0; i < sizeof(ctl); i++) {
        int n = snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nX: a%cb\r\n\r\n", ctl[i]);
        int st = 0;
        assert_int_equal(lv_http1_parse_request(buf, (size_t)n, CAP, &req, &st), LV_EPARSE);
        assert_int_equal(st, 400);
    }
    /* HTAB inside a value is fine */
    assert_int_equal(parse_s("GET / HTTP/1.1\r\nX: a\tb\r\n\r\n", NULL), 0);
    assert_true(view_is(req.headers[0].value, "a\tb"));
}

static void test_bad_request_line(void **state)
{
    (void)state;
    expect_refused("GET  / HTTP/1.1\r\n\r\n", LV_EPARSE, 400);
    expect_refused("GET / HTTP/1.1 \r\n\r\n", LV_EPARSE, 400);
    expect_refused(" GET / HTTP/1.1\r\n\r\n", LV_EPARSE, 400);
    expect_refused("GET /\r\n\r\n", LV_EPARSE, 400); /* HTTP/0.9 */
    expect_refused("GET\r\n\r\n", LV_EPARSE, 400);
    expect_refused("G(T / HTTP/1.1\r\n\r\n", LV_EPARSE, 400);
    expect_refused("GET / http/1.1\r\n\r\n", LV_EPARSE, 400);
    expect_refused("GET / HTTP/1.10\r\n\r\n", LV_EPARSE, 400);
    expect_refused("GET / HTTP/11\r\n\r\n", LV_EPARSE, 400);
    expect_refused("GET /a\x01 HTTP/1.1\r\n\r\n", LV_EPARSE, 400);
    expect_refused("GET /a\x7f HTTP/1.1\r\n\r\n", LV_EPARSE, 400);
    expect_refused("GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n", LV_EPARSE, 400);
    expect_refused("GET /a\tb HTTP/1.1\r\n\r\n", LV_EPARSE, 400);
    /* not origin-form: 400 (documented in lv_http1.h) */
    expect_refused("OPTIONS * HTTP/1.1\r\n\r\n", LV_EPARSE, 400);
    expect_refused("GET http://example.com/ HTTP/1.1\r\n\r\n", LV_EPARSE, 400);
    expect_refused("CONNECT example.com:443 HTTP/1.1\r\n\r\n", LV_EPARSE, 400);
    /* versions */
    expect_refused("GET / HTTP/2.0\r\n\r\n", LV_EPARSE, 505);
    expect_refused("GET / HTTP/1.2\r\n\r\n", LV_EPARSE, 505);
    expect_refused("GET / HTTP/0.9\r\n\r\n", LV_EPARSE, 505);
    assert_int_equal(parse_s("GET / HTTP/1.0\r\n\r\n", NULL), 0);
    assert_int_equal(req.minor_version, 0);
    /* methods are case-sensitive tokens, passed through */
    assert_int_equal(parse_s("get / HTTP/1.1\r\n\r\n", NULL), 0);
    assert_true(view_is(req.method, "get"));
}

static void test_target_cap(void **state)
{
    (void)state;
    char *s = malloc(LV_HTTP1_MAX_TARGET + 64);
    assert_non_null(s);
    memcpy(s, "GET /", 5);
    memset(s + 5, 'a', LV_HTTP1_MAX_TARGET - 1);
    size_t n = 5 + LV_HTTP1_MAX_TARGET - 1;
    memcpy(s + n, " HTTP/1.1\r\n\r\n", 14);
    assert_int_equal(parse_s(s, NULL), 0);
    assert_int_equal(req.target.len, LV_HTTP1_MAX_TARGET);
    s[n] = 'a';
    memcpy(s + n + 1, " HTTP/1.1\r\n\r\n", 14);
    expect_refused(s, LV_ELIMIT, 414);
    /* refused as soon as the target passes the cap, without waiting for the line to end */
    int st = 0;
    assert_int_equal(lv_http1_parse_request(s, n + 1, CAP, &req, &st), LV_ELIMIT);
    assert_int_equal(st, 414);
    assert_int_equal(lv_http1_parse_request(s, n, CAP, &req, &st), LV_EAGAIN);
    free(s);
}

static void test_head_caps(void **state)
{
    (void)state;
    char *s = malloc(CAP * 2);
    assert_non_null(s);
    size_t n = 0;
    n += (size_t)snprintf(s + n, CAP * 2 - n, "GET / HTTP/1.1\r\n");
    for (int i = 0; i < LV_HTTP1_MAX_HEADERS; i++)
        n += (size_t)snprintf(s + n, CAP * 2 - n, "H%d: %d\r\n", i, i);
    size_t before_end = n;
    n += (size_t)snprintf(s + n, CAP * 2 - n, "\r\n");
    assert_int_equal(lv_http1_parse_request(s, n, CAP, &req, NULL), 0);
    assert_int_equal(req.n_headers, LV_HTTP1_MAX_HEADERS);
    /* one more header: 431 */
    n = before_end;
    n += (size_t)snprintf(s + n, CAP * 2 - n, "One-More: x\r\n\r\n");
    int st = 0;
    assert_int_equal(lv_http1_parse_request(s, n, CAP, &req, &st), LV_ELIMIT);
    assert_int_equal(st, 431);

    /* head over the byte cap: EAGAIN while under it, 431 once it is reached without an end */
    n = (size_t)snprintf(s, CAP * 2, "GET / HTTP/1.1\r\nBig: ");
    memset(s + n, 'x', 300);
    n += 200;
    size_t cap = n + 10;
    for (size_t k = 0; k < cap; k++)
        assert_int_equal(lv_http1_parse_request(s, k, cap, &req, &st), LV_EAGAIN);
    assert_int_equal(lv_http1_parse_request(s, cap, cap, &req, &st), LV_ELIMIT);
    assert_int_equal(st, 431);
    assert_int_equal(lv_http1_parse_request(s, n + 100, cap, &req, &st), LV_ELIMIT);
    /* a head that ends exactly at the cap is fine; one byte more is not */
    memcpy(s + n, "\r\n\r\n", 4);
    assert_int_equal(lv_http1_parse_request(s, n + 4, n + 4, &req, NULL), 0);
    assert_int_equal(lv_http1_parse_request(s, n + 4, n + 3, &req, &st), LV_ELIMIT);
    assert_int_equal(st, 431);
    /* the bytes after the cap do not matter, even a complete body */
    assert_int_equal(lv_http1_parse_request(s, n + 4, 0, &req, &st), LV_ELIMIT);
    free(s);
}

static void test_content_length_errors(void **state)
{
    (void)state;
    expect_refused("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", LV_EPARSE, 400);
    expect_refused("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", LV_EPARSE, 400);
    expect_refused("POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n", LV_EPARSE, 400);
    expect_refused("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", LV_EPARSE, 400);
    expect_refused("POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n", LV_EPARSE, 400);
    expect_refused("POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n", LV_EPARSE, 400);
    expect_refused("POST / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n", LV_EPARSE, 400);
    expect_refused("POST / HTTP/1.1\r\nContent-Length:\r\n\r\n", LV_EPARSE, 400);
    expect_refused("POST / HTTP/1.1\r\nContent-Length: 9223372036854775808\r\n\r\n", LV_EPARSE, 400);
    expect_refused("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", LV_EPARSE, 400);
}

static void test_transfer_encoding(void **state)
{
    (void)state;
    assert_int_equal(parse_s("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", NULL), 0);
    assert_true(req.chunked);
    assert_int_equal(req.content_length, -1);
    assert_int_equal(parse_s("POST / HTTP/1.1\r\ntransfer-encoding:  CHUNKED \r\n\r\n", NULL), 0);
    assert_true(req.chunked);
    /* CL + TE: the smuggling case */
    expect_refused("POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", LV_EPARSE, 400);
    expect_refused("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", LV_EPARSE, 400);
    /* codings this server does not implement */
    expect_refused("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", LV_EPARSE, 501);
    expect_refused("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", LV_EPARSE, 501);
    expect_refused("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n", LV_EPARSE,
                   501);
    /* chunked not final, twice, or no coding at all */
    expect_refused("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", LV_EPARSE, 400);
    expect_refused("POST / HTTP/1.1\r\nTransfer-Encoding:\r\n\r\n", LV_EPARSE, 400);
    expect_refused("POST / HTTP/1.1\r\nTransfer-Encoding: ,\r\n\r\n", LV_EPARSE, 400);
    /* HTTP/1.0 has no Transfer-Encoding */
    expect_refused("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", LV_EPARSE, 400);
}

static void test_connection(void **state)
{
    (void)state;
    assert_int_equal(parse_s("GET / HTTP/1.1\r\n\r\n", NULL), 0);
    assert_true(req.keep_alive);
    assert_int_equal(parse_s("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", NULL), 0);
    assert_false(req.keep_alive);
    assert_int_equal(parse_s("GET / HTTP/1.1\r\nConnection: Keep-Alive, CLOSE\r\n\r\n", NULL), 0);
    assert_false(req.keep_alive);
    assert_int_equal(parse_s("GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n", NULL), 0);
    assert_true(req.keep_alive);
    assert_int_equal(parse_s("GET / HTTP/1.1\r\nConnection: closed\r\n\r\n", NULL), 0);
    assert_true(req.keep_alive);
    assert_int_equal(parse_s("GET / HTTP/1.0\r\n\r\n", NULL), 0);
    assert_false(req.keep_alive);
    assert_int_equal(parse_s("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", NULL), 0);
    assert_true(req.keep_alive);
    assert_int_equal(parse_s("GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n", NULL), 0);
    assert_false(req.keep_alive);
}

static void test_upgrade(void **state)
{
    (void)state;
    const char *ws = "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    assert_int_equal(parse_s(ws, NULL), 0);
    assert_true(req.upgrade_websocket);
    assert_true(view_is(*lv_http1_header(&req, "sec-websocket-key"), "dGhlIHNhbXBsZSBub25jZQ=="));
    /* Firefox sends a token list */
    assert_int_equal(parse_s("GET /ws HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\nUpgrade: WebSocket\r\n\r\n", NULL),
                     0);
    assert_true(req.upgrade_websocket);
    assert_int_equal(parse_s("GET /ws HTTP/1.1\r\nUpgrade: h2c, websocket\r\nConnection:upgrade,x\r\n\r\n", NULL), 0);
    assert_true(req.upgrade_websocket);
    /* each half alone, tokens that only contain the word, the wrong method or version */
    assert_int_equal(parse_s("GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n", NULL), 0);
    assert_false(req.upgrade_websocket);
    assert_int_equal(parse_s("GET /ws HTTP/1.1\r\nConnection: upgrade\r\n\r\n", NULL), 0);
    assert_false(req.upgrade_websocket);
    assert_int_equal(parse_s("GET /ws HTTP/1.1\r\nConnection: upgraded\r\nUpgrade: websockets\r\n\r\n", NULL), 0);
    assert_false(req.upgrade_websocket);
    assert_int_equal(parse_s("POST /ws HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", NULL), 0);
    assert_false(req.upgrade_websocket);
    assert_int_equal(parse_s("GET /ws HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", NULL), 0);
    assert_false(req.upgrade_websocket);
}

static void test_reason(void **state)
{
    (void)state;
    assert_string_equal(lv_http1_reason(200), "OK");
    assert_string_equal(lv_http1_reason(101), "Switching Protocols");
    assert_string_equal(lv_http1_reason(404), "Not Found");
    assert_string_equal(lv_http1_reason(413), "Content Too Large");
    assert_string_equal(lv_http1_reason(414), "URI Too Long");
    assert_string_equal(lv_http1_reason(431), "Request Header Fields Too Large");
    assert_string_equal(lv_http1_reason(501), "Not Implemented");
    assert_string_equal(lv_http1_reason(505), "HTTP Version Not Supported");
    assert_string_equal(lv_http1_reason(299), "Unknown");
    assert_string_equal(lv_http1_reason(-1), "Unknown");
}

/* --- chunked ------------------------------------------------------------------------------- */

/* Decode s fed in two pieces split at `at` (the decoder works in place on a copy). Returns the
 * final rc; the decoded body goes to out, the consumed count to *used. */
static int chunked_two(const char *s, size_t n, size_t at, size_t cap, char *out, size_t *out_n, size_t *used)
{
    lv_http1_chunked_t c;
    lv_http1_chunked_init(&c, cap);
    char *copy = malloc(n + 1);
    assert_non_null(copy);
    memcpy(copy, s, n);
    size_t pos = 0, o = 0;
    int rc = 0;
    size_t ends[2] = {at, n};
    for (int k = 0; k < 2 && rc == 0; k++) {
        size_t len = ends[k] - pos, dec = 0;
        rc = lv_http1_chunked_feed(&c, copy + pos, &len, &dec);
        memcpy(out + o, copy + pos, dec);
        o += dec;
        if (rc == 0)
            assert_int_equal(len, ends[k] - pos); /* consumed everything while not done */
        pos += len;
    }
    *out_n = o;
    *used = pos;
    free(copy);
    return rc;
}

static void test_chunked_splits(void **state)
{
    (void)state;
    const char *s = "5\r\nhello\r\n"
                    "1;name=value;quoted=\"a b\"\r\n \r\n"
                    "0A \t;ext\r\n0123456789\r\n"
                    "000\r\n"
                    "Trailer-One: 1\r\nT2: x\r\n\r\n"
                    "GET /next HTTP/1.1\r\n\r\n";
    size_t n = strlen(s);
    size_t body_end = n - strlen("GET /next HTTP/1.1\r\n\r\n");
    char out[64];
    for (size_t at = 0; at <= n; at++) {
        size_t on = 0, used = 0;
        int rc = chunked_two(s, n, at, 1024, out, &on, &used);
        assert_int_equal(rc, 1);
        assert_int_equal(on, 16);
        assert_memory_equal(out, "hello 0123456789", 16);
        assert_int_equal(used, body_end);
    }
    /* byte by byte */
    lv_http1_chunked_t c;
    lv_http1_chunked_init(&c, 1024);
    char *copy = strdup(s);
    size_t o = 0, i = 0;
    int rc = 0;
    for (; i < n && rc == 0; i++) {
        size_t len = 1, dec = 0;
        rc = lv_http1_chunked_feed(&c, copy + i, &len, &dec);
        assert_int_equal(len, 1);
        if (dec)
            out[o++] = copy[i];
    }
    assert_int_equal(rc, 1);
    assert_int_equal(i, body_end);
    assert_memory_equal(out, "hello 0123456789", 16);
    assert_int_equal(c.body_len, 16);
    /* after the end: nothing more is consumed, still 1 */
    size_t len = n - i, dec = 7;
    assert_int_equal(lv_http1_chunked_feed(&c, copy + i, &len, &dec), 1);
    assert_int_equal(len, 0);
    assert_int_equal(dec, 0);
    free(copy);
}

static int chunked_all(const char *s, size_t cap)
{
    char out[256];
    size_t on, used;
    return chunked_two(s, strlen(s), 0, cap, out, &on, &used);
}

static void test_chunked_errors(void **state)
{
    (void)state;
    assert_int_equal(chunked_all("0\r\n\r\n", 100), 1);
    assert_int_equal(chunked_all("0\r\n\r", 100), 0);
    assert_int_equal(chunked_all("5\r\nabc", 100), 0);
    assert_int_equal(chunked_all("g\r\n", 100), LV_EPARSE); /* invalid hex */
    assert_int_equal(chunked_all("\r\n", 100), LV_EPARSE);  /* no digits */
    assert_int_equal(chunked_all(";x\r\n", 100), LV_EPARSE);
    assert_int_equal(chunked_all("-1\r\n", 100), LV_EPARSE);
    assert_int_equal(chunked_all("0x5\r\n", 100), LV_EPARSE);
    assert_int_equal(chunked_all(" 5\r\nhello\r\n0\r\n\r\n", 100), LV_EPARSE);
    assert_int_equal(chunked_all("5 \r\nhello\r\n0\r\n\r\n", 100), LV_EPARSE); /* BWS needs a ';' */
    assert_int_equal(chunked_all("5\nhello\r\n0\r\n\r\n", 100), LV_EPARSE);    /* bare LF */
    assert_int_equal(chunked_all("5\r\nhello\n0\r\n\r\n", 100), LV_EPARSE);
    assert_int_equal(chunked_all("5\r\nhelloX\r\n0\r\n\r\n", 100), LV_EPARSE); /* data longer than its size */
    assert_int_equal(chunked_all("5;a\nb\r\nhello\r\n0\r\n\r\n", 100), LV_EPARSE);
    assert_int_equal(chunked_all("5;a\x01\r\nhello\r\n0\r\n\r\n", 100), LV_EPARSE);
    assert_int_equal(chunked_all("0\r\nT: 1\n\r\n", 100), LV_EPARSE);
    assert_int_equal(chunked_all("0\r\n\n", 100), LV_EPARSE);
    assert_int_equal(chunked_all("0\r\n folded\r\n\r\n", 100), LV_EPARSE);
    assert_int_equal(chunked_all("0\r\nT: a\x7f\r\n\r\n", 100), LV_EPARSE);
    assert_int_equal(chunked_all("0\r\n\rX", 100), LV_EPARSE);
    /* sizes: 2^63-1 is a size (over the cap), 2^63 and more are malformed */
    assert_int_equal(chunked_all("7fffffffffffffff\r\n", SIZE_MAX), 0);
    assert_int_equal(chunked_all("7fffffffffffffff\r\n", 100), LV_ELIMIT);
    assert_int_equal(chunked_all("8000000000000000\r\n", SIZE_MAX), LV_EPARSE);
    assert_int_equal(chunked_all("10000000000000000\r\n", SIZE_MAX), LV_EPARSE);
    assert_int_equal(chunked_all("fffffffffffffffffffffffff\r\n", 100), LV_EPARSE);
    /* leading zeros do not overflow */
    assert_int_equal(chunked_all("0000000000000000000000000000001\r\nx\r\n0\r\n\r\n", 100), 1);

    /* errors are sticky */
    lv_http1_chunked_t c;
    lv_http1_chunked_init(&c, 100);
    char b[] = "zz\r\n0\r\n\r\n";
    size_t len = sizeof(b) - 1, dec;
    assert_int_equal(lv_http1_chunked_feed(&c, b, &len, &dec), LV_EPARSE);
    char b2[] = "0\r\n\r\n";
    len = 5;
    assert_int_equal(lv_http1_chunked_feed(&c, b2, &len, &dec), LV_EPARSE);
    len = 0;
    assert_int_equal(lv_http1_chunked_feed(&c, b2, &len, &dec), LV_EPARSE);
}

static void test_chunked_caps(void **state)
{
    (void)state;
    /* body cap: exactly at it is fine, one byte over is 413 when the size line says so */
    assert_int_equal(chunked_all("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", 5), 1);
    assert_int_equal(chunked_all("3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n", 5), LV_ELIMIT);
    assert_int_equal(chunked_all("6\r\n", 5), LV_ELIMIT);
    assert_int_equal(chunked_all("0\r\n\r\n", 0), 1);

    /* line caps: an extension line and a trailer line of 4 KiB are fine, longer ones are not */
    size_t big = 4096 + 64;
    char *s = malloc(big + 64);
    assert_non_null(s);
    char out[16];
    size_t on, used;
    for (int over = 0; over < 2; over++) {
        /* "1;" + x... + "\r\n" where the line before CR is 4096 (+over) bytes */
        size_t line = 4096 + (size_t)over;
        memcpy(s, "1;", 2);
        memset(s + 2, 'x', line - 2);
        memcpy(s + line, "\r\na\r\n0\r\n\r\n", 11);
        assert_int_equal(chunked_two(s, line + 10, 0, 100, out, &on, &used), over ? LV_ELIMIT : 1);
        memcpy(s, "0\r\n", 3);
        memcpy(s + 3, "T:", 2);
        memset(s + 5, 'y', line - 2);
        memcpy(s + 3 + line, "\r\n\r\n", 5);
        assert_int_equal(chunked_two(s, 3 + line + 4, 0, 100, out, &on, &used), over ? LV_ELIMIT : 1);
    }
    free(s);
    /* all trailers together are capped too (16 KiB) */
    size_t tn = 0, tcap = 64 * 1024;
    char *t = malloc(tcap);
    assert_non_null(t);
    tn += (size_t)snprintf(t, tcap, "0\r\n");
    while (tn < 20000)
        tn += (size_t)snprintf(t + tn, tcap - tn, "Trailer-Field: %0100d\r\n", 0);
    tn += (size_t)snprintf(t + tn, tcap - tn, "\r\n");
    assert_int_equal(chunked_two(t, tn, tn / 2, 100, out, &on, &used), LV_ELIMIT);
    free(t);
}

/* A chunked POST followed by a pipelined request, the way a server would walk them. */
static void test_chunked_pipeline(void **state)
{
    (void)state;
    char buf[] = "POST /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n"
                 "GET /after HTTP/1.1\r\n\r\n";
    size_t n = strlen(buf);
    assert_int_equal(lv_http1_parse_request(buf, n, CAP, &req, NULL), 0);
    assert_true(req.chunked);
    size_t off = req.head_len;
    lv_http1_chunked_t c;
    lv_http1_chunked_init(&c, 1 << 20);
    size_t len = n - off, dec = 0;
    assert_int_equal(lv_http1_chunked_feed(&c, buf + off, &len, &dec), 1);
    assert_int_equal(dec, 9);
    assert_memory_equal(buf + off, "Wikipedia", 9);
    off += len;
    assert_int_equal(lv_http1_parse_request(buf + off, n - off, CAP, &req, NULL), 0);
    assert_true(view_is(req.path, "/after"));
    assert_int_equal(off + req.head_len, n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_get),        cmocka_unit_test(test_post_content_length),
        cmocka_unit_test(test_pipelined),         cmocka_unit_test(test_incremental),
        cmocka_unit_test(test_line_endings),      cmocka_unit_test(test_header_names),
        cmocka_unit_test(test_header_copy),       cmocka_unit_test(test_bad_header_lines),
        cmocka_unit_test(test_bad_request_line),  cmocka_unit_test(test_target_cap),
        cmocka_unit_test(test_head_caps),         cmocka_unit_test(test_content_length_errors),
        cmocka_unit_test(test_transfer_encoding), cmocka_unit_test(test_connection),
        cmocka_unit_test(test_upgrade),           cmocka_unit_test(test_reason),
        cmocka_unit_test(test_chunked_splits),    cmocka_unit_test(test_chunked_errors),
        cmocka_unit_test(test_chunked_caps),      cmocka_unit_test(test_chunked_pipeline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

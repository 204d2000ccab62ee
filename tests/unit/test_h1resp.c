/* test_h1resp.c - the HTTP/1.1 response parser: framings, interim heads, header lookup, every
 * error, and that splitting the input anywhere (or feeding it byte by byte) changes nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <unistd.h>

#include <cmocka.h>

#include "lv_buf.h"
#include "lv_common.h"
#include "lv_h1resp.h"
#include "wire_data.h"

/* What one parse gave; compared between the whole input and every split of it. */
typedef struct {
    int rc;
    bool head_done, done, conn_close, reusable;
    int status, minor;
    lv_h1resp_framing_t framing;
    uint64_t content_length;
    size_t used;      /* bytes of the input that belonged to the response */
    lv_buf_t body;
    int calls;        /* on_body calls */
    int abort_value;  /* on_body returns this on its first call when non-zero */
} res_t;

static int on_body(void *ud, const char *data, size_t len)
{
    res_t *r = ud;
    assert_true(len > 0);
    r->calls++;
    assert_int_equal(lv_buf_append(&r->body, data, len), 0);
    return r->abort_value;
}

static void res_init(res_t *r)
{
    memset(r, 0, sizeof *r);
    lv_buf_init(&r->body, 1 << 20);
}

/* Feed in[0..n) in pieces of step bytes (step 0: cut once at cut), stopping at an error or
 * once done; then lv_h1resp_eof when eof is set and the response is not done. The parser is
 * left to the caller (keep) or freed. */
static void run(const char *in, size_t n, size_t cut, size_t step, bool eof, res_t *r, lv_h1resp_t *keep)
{
    lv_h1resp_t p;
    lv_h1resp_init(&p);
    res_init(r);
    size_t off = 0;
    int rc = 0;
    for (int piece = 0; off < n || piece == 0; piece++) {
        size_t len = step ? LV_MIN(step, n - off) : piece == 0 ? cut : n - off;
        size_t used = 12345;
        rc = lv_h1resp_feed(&p, in + off, len, &used, on_body, r);
        assert_true(used <= len);
        if (!rc && !p.done)
            assert_int_equal(used, len); /* short only once done */
        r->used += used;
        off += len;
        if (rc || p.done || piece > (int)n + 2)
            break;
    }
    if (!rc && eof && !p.done)
        rc = lv_h1resp_eof(&p);
    r->rc = rc;
    r->head_done = p.head_done;
    r->done = p.done;
    r->conn_close = p.conn_close;
    r->reusable = lv_h1resp_reusable(&p);
    r->status = p.status;
    r->minor = p.minor;
    r->framing = p.framing;
    r->content_length = p.content_length;
    if (rc) { /* sticky: a later feed uses nothing and says the same */
        size_t used = 99;
        assert_int_equal(lv_h1resp_feed(&p, "HTTP/1.1 200 OK\r\n", 17, &used, on_body, r), rc);
        assert_int_equal(used, 0);
        assert_int_equal(lv_h1resp_eof(&p), rc);
    }
    if (keep)
        *keep = p;
    else
        lv_h1resp_free(&p);
}

static void res_free(res_t *r) { lv_buf_free(&r->body); }

static void res_same(const res_t *a, const res_t *b, const char *how, size_t at)
{
    if (a->rc != b->rc || a->head_done != b->head_done || a->done != b->done || a->conn_close != b->conn_close ||
        a->reusable != b->reusable || a->status != b->status || a->minor != b->minor ||
        a->framing != b->framing || a->content_length != b->content_length ||
        (a->rc == 0 && a->used != b->used) || /* on an error used depends on where the cut was */
        a->body.len != b->body.len || (a->body.len && memcmp(a->body.data, b->body.data, a->body.len) != 0))
        fail_msg("%s %zu: rc %d/%d status %d/%d done %d/%d used %zu/%zu body %zu/%zu bytes", how, at, a->rc, b->rc,
                 a->status, b->status, a->done, b->done, a->used, b->used, a->body.len, b->body.len);
}

/* Parse in whole into *r (the parser into *keep when not NULL), then split in two at every
 * stride-th position and byte by byte: every result must be the same. */
static void check_stride(const char *in, size_t n, bool eof, size_t stride, res_t *r, lv_h1resp_t *keep)
{
    run(in, n, n, 0, eof, r, keep);
    for (size_t cut = 0; cut <= n; cut += stride) {
        res_t s;
        run(in, n, cut, 0, eof, &s, NULL);
        res_same(r, &s, "split at", cut);
        res_free(&s);
    }
    res_t s;
    run(in, n, 0, 1, eof, &s, NULL);
    res_same(r, &s, "byte by byte", 1);
    res_free(&s);
}

static void check(const char *in, size_t n, bool eof, res_t *r, lv_h1resp_t *keep)
{
    check_stride(in, n, eof, 1, r, keep);
}

#define CHECK(lit, eof, r) check(lit, sizeof(lit) - 1, eof, r, NULL)

static void assert_body(const res_t *r, const char *want)
{
    size_t n = strlen(want);
    if (r->body.len != n || (n && memcmp(r->body.data, want, n) != 0))
        fail_msg("body \"%.*s\" want \"%s\"", (int)r->body.len, r->body.len ? r->body.data : "", want);
}

/* ====================== framings ====================== */

static void test_content_length(void **state)
{
    (void)state;
    static const char in[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world";
    res_t r;
    CHECK(in, false, &r);
    assert_int_equal(r.rc, 0);
    assert_true(r.head_done && r.done && r.reusable && !r.conn_close);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.minor, 1);
    assert_int_equal(r.framing, LV_H1RESP_BODY_LENGTH);
    assert_int_equal(r.content_length, 11);
    assert_int_equal(r.used, sizeof in - 1);
    assert_body(&r, "hello world");
    assert_int_equal(r.calls, 1);
    res_free(&r);

    /* Content-Length: 0 is done at the head; bare LF line ends; equal repeated values */
    static const char zero[] = "HTTP/1.1 200 OK\nContent-Length: 0\n\n";
    CHECK(zero, false, &r);
    assert_true(r.rc == 0 && r.done && r.reusable);
    assert_int_equal(r.framing, LV_H1RESP_BODY_LENGTH);
    assert_body(&r, "");
    res_free(&r);
    static const char same[] = "HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\ncontent-length:3\r\n\r\nabc";
    CHECK(same, false, &r);
    assert_true(r.rc == 0 && r.done);
    assert_body(&r, "abc");
    res_free(&r);
}

static void test_chunked(void **state)
{
    (void)state;
    static const char in[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                             "5;name=val\r\nhello\r\n"
                             "6 ; a=b;c=\"q;x\"\r\n world\r\n"
                             "a\r\n0123456789\r\n"
                             "000F\r\nABCDEFGHIJKLMNO\r\n"
                             "0;last\r\nX-Trailer: 1\r\nX-Other: two\r\n\r\n";
    res_t r;
    lv_h1resp_t p;
    check(in, sizeof in - 1, false, &r, &p);
    assert_int_equal(r.rc, 0);
    assert_true(r.done && r.reusable);
    assert_int_equal(r.framing, LV_H1RESP_BODY_CHUNKED);
    assert_int_equal(r.used, sizeof in - 1);
    assert_body(&r, "hello world0123456789ABCDEFGHIJKLMNO");
    assert_int_equal(r.calls, 4); /* one span per chunk when fed whole */
    assert_null(lv_h1resp_header(&p, "X-Trailer", NULL, NULL)); /* trailers are dropped */
    lv_h1resp_free(&p);
    res_free(&r);

    /* bare LF everywhere; no trailers */
    static const char lf[] = "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n3\nabc\n1\nd\n0\n\n";
    CHECK(lf, false, &r);
    assert_true(r.rc == 0 && r.done);
    assert_body(&r, "abcd");
    res_free(&r);

    /* the last coding decides; Transfer-Encoding wins over Content-Length (RFC 9112 6.3) */
    static const char list[] = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: gzip\r\n"
                               "transfer-encoding: CHUNKED\r\n\r\n2\r\nzz\r\n0\r\n\r\n";
    CHECK(list, false, &r);
    assert_true(r.rc == 0 && r.done);
    assert_int_equal(r.framing, LV_H1RESP_BODY_CHUNKED);
    assert_body(&r, "zz");
    /* ... but a message with both may be a smuggling attempt: the connection is not reused */
    assert_true(r.conn_close && !r.reusable);
    res_free(&r);
    static const char notlast[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n2\r\nzz";
    CHECK(notlast, true, &r);
    assert_true(r.rc == 0 && r.done && !r.reusable);
    assert_int_equal(r.framing, LV_H1RESP_BODY_CLOSE);
    assert_body(&r, "2\r\nzz");
    res_free(&r);
    /* with Transfer-Encoding a bad Content-Length is ignored, not an error */
    static const char badcl[] = "HTTP/1.1 200 OK\r\nContent-Length: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    CHECK(badcl, false, &r);
    assert_true(r.rc == 0 && r.done);
    res_free(&r);

    /* the largest chunk size taken: 2^62 */
    static const char big[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4000000000000000\r\nxy";
    CHECK(big, false, &r);
    assert_true(r.rc == 0 && !r.done);
    assert_body(&r, "xy");
    res_free(&r);
}

static void test_close_delimited(void **state)
{
    (void)state;
    static const char in[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: a\n\ndata: b\n\n";
    res_t r;
    CHECK(in, true, &r);
    assert_int_equal(r.rc, 0);
    assert_true(r.done && !r.reusable);
    assert_int_equal(r.framing, LV_H1RESP_BODY_CLOSE);
    assert_body(&r, "data: a\n\ndata: b\n\n");
    res_free(&r);
    /* without the close it is not done */
    CHECK(in, false, &r);
    assert_true(r.rc == 0 && r.head_done && !r.done);
    res_free(&r);
}

static void test_no_body_statuses(void **state)
{
    (void)state;
    /* 204 and 304 have no body whatever the head says; what follows is the next response's */
    static const char in[] = "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nHTTP/1.1 200 OK\r\n";
    res_t r;
    CHECK(in, false, &r);
    assert_true(r.rc == 0 && r.done && r.reusable);
    assert_int_equal(r.status, 204);
    assert_int_equal(r.framing, LV_H1RESP_BODY_NONE);
    assert_int_equal(r.used, sizeof in - 1 - 17);
    assert_int_equal(r.calls, 0);
    res_free(&r);
    static const char nm[] = "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n";
    CHECK(nm, false, &r);
    assert_true(r.rc == 0 && r.done && r.reusable);
    res_free(&r);
    /* 101 ends at its head and the connection is someone else's */
    static const char up[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x00";
    CHECK(up, false, &r);
    assert_true(r.rc == 0 && r.done && !r.reusable);
    assert_int_equal(r.used, sizeof up - 1 - 2);
    res_free(&r);
}

static void test_interim_skipped(void **state)
{
    (void)state;
    static const char in[] = "HTTP/1.1 100 Continue\r\n\r\n"
                             "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
                             "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    res_t r;
    lv_h1resp_t p;
    check(in, sizeof in - 1, false, &r, &p);
    assert_true(r.rc == 0 && r.done);
    assert_int_equal(r.status, 200);
    assert_body(&r, "ok");
    assert_null(lv_h1resp_header(&p, "link", NULL, NULL));
    size_t len;
    const char *v = lv_h1resp_header(&p, "content-length", &len, NULL);
    assert_non_null(v);
    assert_int_equal(len, 1);
    assert_int_equal(v[0], '2');
    lv_h1resp_free(&p);
    res_free(&r);

    /* only the interim head so far: not head_done */
    static const char only[] = "HTTP/1.1 100 Continue\r\n\r\n";
    CHECK(only, false, &r);
    assert_true(r.rc == 0 && !r.head_done && !r.done);
    res_free(&r);
}

static void test_http10_and_connection(void **state)
{
    (void)state;
    res_t r;
    static const char h10[] = "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok";
    CHECK(h10, false, &r);
    assert_true(r.rc == 0 && r.done && r.conn_close && !r.reusable);
    assert_int_equal(r.minor, 0);
    res_free(&r);
    static const char ka[] = "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nok";
    CHECK(ka, false, &r);
    assert_true(r.rc == 0 && r.done && !r.conn_close && r.reusable);
    res_free(&r);
    static const char cl[] = "HTTP/1.1 200 OK\r\nConnection: x-foo ,  CLOSE\r\nContent-Length: 2\r\n\r\nok";
    CHECK(cl, false, &r);
    assert_true(r.rc == 0 && r.done && r.conn_close && !r.reusable);
    res_free(&r);
    /* "closed" is not "close" */
    static const char notclose[] = "HTTP/1.1 200 OK\r\nConnection: closed\r\nContent-Length: 0\r\n\r\n";
    CHECK(notclose, false, &r);
    assert_true(r.rc == 0 && r.done && !r.conn_close && r.reusable);
    res_free(&r);
    /* HTTP/1.x with a later minor is taken as 1.1 */
    static const char h19[] = "HTTP/1.9 200 OK\r\nContent-Length: 0\r\n\r\n";
    CHECK(h19, false, &r);
    assert_true(r.rc == 0 && r.done && r.reusable);
    assert_int_equal(r.minor, 9);
    res_free(&r);
}

static void test_header_lookup(void **state)
{
    (void)state;
    static const char in[] = "HTTP/1.1 200\r\nX-A:   v1 \t\r\nx-a: v2\r\nEmpty:\r\nSpaced:  \t \r\n"
                             "Content-Type:text/plain; charset=utf-8\r\nContent-Length: 0\r\n\r\n";
    res_t r;
    lv_h1resp_t p;
    check(in, sizeof in - 1, false, &r, &p);
    assert_true(r.rc == 0 && r.done);
    size_t len = 99;
    int count = 99;
    const char *v = lv_h1resp_header(&p, "X-a", &len, &count);
    assert_non_null(v);
    assert_int_equal(len, 2);
    assert_memory_equal(v, "v1", 2);
    assert_int_equal(count, 2);
    v = lv_h1resp_header(&p, "empty", &len, &count);
    assert_non_null(v);
    assert_int_equal(len, 0);
    assert_int_equal(count, 1);
    v = lv_h1resp_header(&p, "SPACED", &len, NULL);
    assert_non_null(v);
    assert_int_equal(len, 0);
    v = lv_h1resp_header(&p, "content-type", &len, NULL);
    assert_int_equal(len, strlen("text/plain; charset=utf-8"));
    assert_memory_equal(v, "text/plain; charset=utf-8", len);
    assert_null(lv_h1resp_header(&p, "missing", &len, &count));
    assert_int_equal(len, 0);
    assert_int_equal(count, 0);
    assert_null(lv_h1resp_header(&p, "X-", NULL, NULL)); /* a prefix is not the name */
    lv_h1resp_free(&p);
    res_free(&r);

    /* "SP" with an empty reason is allowed; 100 fields is the cap, not over it */
    lv_buf_t b;
    lv_buf_init(&b, 1 << 16);
    assert_int_equal(lv_buf_append_str(&b, "HTTP/1.1 200 \r\n"), 0);
    for (int i = 0; i < LV_H1RESP_FIELDS_MAX - 1; i++)
        assert_int_equal(lv_buf_printf(&b, "F%d: %d\r\n", i, i), 0);
    assert_int_equal(lv_buf_append_str(&b, "Content-Length: 0\r\n\r\n"), 0);
    check_stride(b.data, b.len, false, 13, &r, &p);
    assert_true(r.rc == 0 && r.done);
    v = lv_h1resp_header(&p, "f98", &len, NULL);
    assert_non_null(v);
    assert_memory_equal(v, "98", 2);
    lv_h1resp_free(&p);
    res_free(&r);
    lv_buf_free(&b);
}

static void test_reusable(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        bool eof;
        bool want;
    } cases[] = {
        {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx", false, true},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", false, true},
        {"HTTP/1.1 204 No Content\r\n\r\n", false, true},
        {"HTTP/1.1 200 OK\r\n\r\nx", true, false},                          /* close-delimited */
        {"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", false, false},
        {"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false, false},
        {"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", false, true},
        {"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", false, false},
        {"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nx", false, false},  /* not done yet */
        {"HTTP/1.1 101 Switching Protocols\r\n\r\n", false, false},
    };
    for (size_t i = 0; i < LV_ARRAY_LEN(cases); i++) {
        res_t r;
        check(cases[i].in, strlen(cases[i].in), cases[i].eof, &r, NULL);
        assert_int_equal(r.rc, 0);
        if (r.reusable != cases[i].want)
            fail_msg("case %zu: reusable %d want %d", i, r.reusable, cases[i].want);
        res_free(&r);
    }
}

/* ====================== errors ====================== */

static void test_errors(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        bool eof;
        int want;
    } cases[] = {
        /* status line */
        {"HTTP/1.1 20 OK\r\n\r\n", false, LV_EPARSE},
        {"HTTP/1.1 200OK\r\n\r\n", false, LV_EPARSE},
        {"HTTP/1.1  200 OK\r\n\r\n", false, LV_EPARSE},
        {"HTTP/1.1 099 Low\r\n\r\n", false, LV_EPARSE},
        {"HTTP/1.1 2x0 OK\r\n\r\n", false, LV_EPARSE},
        {"ICY 200 OK\r\n\r\n", false, LV_EPARSE},
        {"\r\nHTTP/1.1 200 OK\r\n\r\n", false, LV_EPARSE},
        {"HTTP/1.1 200 O\x01K\r\n\r\n", false, LV_EPARSE},
        /* versions */
        {"HTTP/2.0 200 OK\r\n\r\n", false, LV_EPARSE},
        {"HTTP/1.x 200 OK\r\n\r\n", false, LV_EPARSE},
        {"HTTP/10.1 200 OK\r\n\r\n", false, LV_EPARSE},
        {"http/1.1 200 OK\r\n\r\n", false, LV_EPARSE},
        {"HTTP/0.9 200 OK\r\n\r\n", false, LV_EPARSE},
        /* fields */
        {"HTTP/1.1 200 OK\r\nNoColon\r\n\r\n", false, LV_EPARSE},
        {"HTTP/1.1 200 OK\r\nName : v\r\n\r\n", false, LV_EPARSE},
        {"HTTP/1.1 200 OK\r\nName\t: v\r\n\r\n", false, LV_EPARSE},
        {"HTTP/1.1 200 OK\r\n: v\r\n\r\n", false, LV_EPARSE},
        {"HTTP/1.1 200 OK\r\nA(b): v\r\n\r\n", false, LV_EPARSE},
        {"HTTP/1.1 200 OK\r\nA: b\r\n  c\r\n\r\n", false, LV_EPARSE},  /* obs-fold */
        {"HTTP/1.1 200 OK\r\nA: b\r\n\tc\r\n\r\n", false, LV_EPARSE},
        {"HTTP/1.1 200 OK\r\nA: b\rc\r\n\r\n", false, LV_EPARSE},     /* CR alone */
        {"HTTP/1.1 200 OK\r\nA: b\r\r\n\r\n", false, LV_EPARSE},
        {"HTTP/1.1 200 OK\r\nA: b\x7f\r\n\r\n", false, LV_EPARSE},
        {"HTTP/1.1 200 OK\r\n\r\r\n", false, LV_EPARSE},
        /* Content-Length */
        {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", false, LV_EPARSE},
        {"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n", false, LV_EPARSE},
        {"HTTP/1.1 200 OK\r\nContent-Length: 5,\r\n\r\n", false, LV_EPARSE},
        {"HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n", false, LV_EPARSE},
        {"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n", false, LV_EPARSE},
        {"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", false, LV_EPARSE},
        {"HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n", false, LV_EPARSE},
        {"HTTP/1.1 200 OK\r\nContent-Length: 1 2\r\n\r\n", false, LV_EPARSE},
        {"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551616\r\n\r\n", false, LV_EPARSE},
        /* chunk sizes */
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", false, LV_EPARSE},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n", false, LV_EPARSE},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n;x\r\n", false, LV_EPARSE},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n -1\r\n", false, LV_EPARSE},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1 2\r\n", false, LV_EPARSE},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\rx\n", false, LV_EPARSE},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4000000000000001\r\n", false, LV_EPARSE},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFFFF\r\n", false, LV_EPARSE},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000000000001\r\nx\r\n0\r\n\r\n", false, 0},
        /* the CRLF after chunk data */
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n", false, LV_EPARSE},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r0\r\n\r\n", false, LV_EPARSE},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc0\r\n\r\n", false, LV_EPARSE},
        /* a trailer line with a CR alone */
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: b\rx\r\n\r\n", false, LV_EPARSE},
        /* cut short */
        {"", true, LV_EPARSE},
        {"HTTP/1.1 200 OK\r\nContent-", true, LV_EPARSE},
        {"HTTP/1.1 100 Continue\r\n\r\n", true, LV_EPARSE},
        {"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", true, LV_EPARSE},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", true, LV_EPARSE},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n", true, LV_EPARSE},
    };
    for (size_t i = 0; i < LV_ARRAY_LEN(cases); i++) {
        res_t r;
        check(cases[i].in, strlen(cases[i].in), cases[i].eof, &r, NULL);
        if (r.rc != cases[i].want)
            fail_msg("case %zu \"%s\": rc %d want %d", i, cases[i].in, r.rc, cases[i].want);
        res_free(&r);
    }
    /* a NUL in a value (not expressible in the strings above) */
    static const char nul[] = "HTTP/1.1 200 OK\r\nA: b\0c\r\n\r\n";
    res_t r;
    CHECK(nul, false, &r);
    assert_int_equal(r.rc, LV_EPARSE);
    res_free(&r);
}

static void test_caps(void **state)
{
    (void)state;
    lv_buf_t b;
    res_t r;
    lv_buf_init(&b, 1 << 17);

    /* the head over LV_H1RESP_HEAD_MAX, as one long field and as many lines */
    assert_int_equal(lv_buf_append_str(&b, "HTTP/1.1 200 OK\r\nX-Big: "), 0);
    while (b.len < LV_H1RESP_HEAD_MAX + 10)
        assert_int_equal(lv_buf_append_str(&b, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"), 0);
    assert_int_equal(lv_buf_append_str(&b, "\r\nContent-Length: 0\r\n\r\n"), 0);
    check_stride(b.data, b.len, false, 97, &r, NULL);
    assert_int_equal(r.rc, LV_ELIMIT);
    assert_false(r.head_done);
    res_free(&r);
    /* a head of exactly LV_H1RESP_HEAD_MAX bytes (the empty line included) fits; one more does not */
    for (int over = 0; over <= 1; over++) {
        lv_buf_reset(&b);
        assert_int_equal(lv_buf_append_str(&b, "HTTP/1.1 200 OK\r\nX: "), 0);
        while (b.len < (size_t)LV_H1RESP_HEAD_MAX - 23 + (size_t)over)
            assert_int_equal(lv_buf_append(&b, "b", 1), 0);
        assert_int_equal(lv_buf_append_str(&b, "\r\nContent-Length: 0\r\n\r\n"), 0);
        assert_int_equal(b.len, LV_H1RESP_HEAD_MAX + over);
        check_stride(b.data, b.len, false, 101, &r, NULL);
        assert_int_equal(r.rc, over ? LV_ELIMIT : 0);
        assert_int_equal(r.done, !over);
        res_free(&r);
    }

    /* too many fields */
    lv_buf_reset(&b);
    assert_int_equal(lv_buf_append_str(&b, "HTTP/1.1 200 OK\r\n"), 0);
    for (int i = 0; i < LV_H1RESP_FIELDS_MAX; i++)
        assert_int_equal(lv_buf_printf(&b, "F%d: %d\r\n", i, i), 0);
    assert_int_equal(lv_buf_append_str(&b, "Content-Length: 0\r\n\r\n"), 0);
    check_stride(b.data, b.len, false, 31, &r, NULL);
    assert_int_equal(r.rc, LV_ELIMIT);
    res_free(&r);

    /* a chunk-size line (extensions) and a trailer line over LV_H1RESP_CHUNK_LINE_MAX */
    lv_buf_reset(&b);
    assert_int_equal(lv_buf_append_str(&b, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;"), 0);
    for (int i = 0; i < LV_H1RESP_CHUNK_LINE_MAX; i++)
        assert_int_equal(lv_buf_append(&b, "e", 1), 0);
    assert_int_equal(lv_buf_append_str(&b, "\r\nx\r\n0\r\n\r\n"), 0);
    check_stride(b.data, b.len, false, 37, &r, NULL);
    assert_int_equal(r.rc, LV_ELIMIT);
    res_free(&r);
    lv_buf_reset(&b);
    assert_int_equal(lv_buf_append_str(&b, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: "), 0);
    for (int i = 0; i < LV_H1RESP_CHUNK_LINE_MAX; i++)
        assert_int_equal(lv_buf_append(&b, "t", 1), 0);
    assert_int_equal(lv_buf_append_str(&b, "\r\n\r\n"), 0);
    check_stride(b.data, b.len, false, 37, &r, NULL);
    assert_int_equal(r.rc, LV_ELIMIT);
    res_free(&r);
    /* a chunk-size line of exactly the cap (CRLF included) is fine */
    lv_buf_reset(&b);
    assert_int_equal(lv_buf_append_str(&b, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), 0);
    size_t line_start = b.len;
    assert_int_equal(lv_buf_append_str(&b, "1;"), 0);
    while (b.len - line_start < LV_H1RESP_CHUNK_LINE_MAX - 2)
        assert_int_equal(lv_buf_append(&b, "e", 1), 0);
    assert_int_equal(lv_buf_append_str(&b, "\r\nx\r\n0\r\n\r\n"), 0);
    check_stride(b.data, b.len, false, 37, &r, NULL);
    assert_int_equal(r.rc, 0);
    assert_true(r.done);
    assert_body(&r, "x");
    res_free(&r);
    lv_buf_free(&b);
}

static void test_body_abort(void **state)
{
    (void)state;
    static const char in[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n";
    lv_h1resp_t p;
    res_t r;
    res_init(&r);
    r.abort_value = 77;
    lv_h1resp_init(&p);
    size_t used = 0;
    assert_int_equal(lv_h1resp_feed(&p, in, sizeof in - 1, &used, on_body, &r), 77);
    assert_int_equal(r.calls, 1);
    assert_body(&r, "abc");
    assert_int_equal(p.err, 77);
    assert_int_equal(lv_h1resp_feed(&p, "x", 1, &used, on_body, &r), 77);
    assert_int_equal(used, 0);
    assert_int_equal(r.calls, 1);
    assert_int_equal(lv_h1resp_eof(&p), 77);
    assert_false(lv_h1resp_reusable(&p));
    lv_h1resp_free(&p);
    res_free(&r);

    /* NULL on_body drops the bytes */
    lv_h1resp_init(&p);
    assert_int_equal(lv_h1resp_feed(&p, in, sizeof in - 1, NULL, NULL, NULL), 0);
    assert_true(p.done);
    lv_h1resp_free(&p);
}

/* Two responses back to back in one buffer: the first parser takes exactly its own bytes. */
static void test_back_to_back(void **state)
{
    (void)state;
    static const char in[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\nT: x\r\n\r\n"
                             "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ncde"
                             "HTTP/1.1 204 No Content\r\n\r\n"
                             "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nf";
    const char *want[] = {"ab", "cde", "", "f"};
    size_t off = 0;
    for (size_t i = 0; i < LV_ARRAY_LEN(want); i++) {
        res_t r;
        check(in + off, sizeof in - 1 - off, false, &r, NULL);
        assert_int_equal(r.rc, 0);
        assert_true(r.done && r.reusable);
        assert_body(&r, want[i]);
        assert_true(r.used > 0);
        off += r.used;
        res_free(&r);
    }
    assert_int_equal(off, sizeof in - 1);

    /* once done, a feed uses nothing */
    lv_h1resp_t p;
    lv_h1resp_init(&p);
    size_t used = 0;
    assert_int_equal(lv_h1resp_feed(&p, in, sizeof in - 1, &used, NULL, NULL), 0);
    assert_true(p.done);
    assert_int_equal(lv_h1resp_feed(&p, in, sizeof in - 1, &used, NULL, NULL), 0);
    assert_int_equal(used, 0);
    assert_int_equal(lv_h1resp_eof(&p), 0);
    lv_h1resp_free(&p);
}

/* ====================== recorded backend answers ====================== */

/* A recorded answer (tests/data/wire/<name>: '#' comment lines, the head with LF line ends, a
 * blank line, the body) put on the wire as its server would: the head with CRLF, the body as one
 * chunk per SSE event ("\n\n"-terminated) when the head says chunked, else as it is. The whole
 * response must parse, every split of it the same way, and give back the body exactly. */
static void check_wire_file(const char *name)
{
    lv_buf_t raw, wire;
    wire_read(name, &raw);
    lv_buf_init(&wire, 1 << 21);
    const char *s = wire_skip_comments(raw.data);
    const char *end = strstr(s, "\n\n");
    assert_non_null(end);
    for (const char *q = s; q <= end; q++) {
        if (*q == '\n')
            assert_int_equal(lv_buf_append(&wire, "\r", 1), 0);
        assert_int_equal(lv_buf_append(&wire, q, 1), 0);
    }
    assert_int_equal(lv_buf_append_str(&wire, "\r\n"), 0);
    const char *body = end + 2;
    size_t body_len = raw.len - (size_t)(body - raw.data);
    bool chunked = false;
    for (const char *q = s; q < end; q++)
        if ((q == s || q[-1] == '\n') && strncasecmp(q, "transfer-encoding: chunked", 26) == 0)
            chunked = true;
    if (chunked) {
        const char *q = body, *bend = body + body_len;
        while (q < bend) {
            const char *ev = strstr(q, "\n\n");
            size_t k = ev && ev + 2 <= bend ? (size_t)(ev + 2 - q) : (size_t)(bend - q);
            assert_int_equal(lv_buf_printf(&wire, "%zx\r\n", k), 0);
            assert_int_equal(lv_buf_append(&wire, q, k), 0);
            assert_int_equal(lv_buf_append_str(&wire, "\r\n"), 0);
            q += k;
        }
        assert_int_equal(lv_buf_append_str(&wire, "0\r\n\r\n"), 0);
    } else {
        assert_int_equal(lv_buf_append(&wire, body, body_len), 0);
    }

    res_t r;
    lv_h1resp_t p;
    check_stride(wire.data, wire.len, true, 7, &r, &p);
    if (r.rc != 0 || !r.done)
        fail_msg("%s: rc %d done %d", name, r.rc, r.done);
    assert_int_equal(r.framing, chunked ? LV_H1RESP_BODY_CHUNKED
                                        : lv_h1resp_header(&p, "content-length", NULL, NULL) ? LV_H1RESP_BODY_LENGTH
                                                                                             : LV_H1RESP_BODY_CLOSE);
    assert_int_equal(r.used, wire.len);
    if (r.body.len != body_len || memcmp(r.body.data, body, body_len) != 0)
        fail_msg("%s: body of %zu bytes differs from the recorded %zu", name, r.body.len, body_len);
    assert_true(r.status >= 200);
    assert_non_null(lv_h1resp_header(&p, "content-type", NULL, NULL));
    lv_h1resp_free(&p);
    res_free(&r);
    lv_buf_free(&raw);
    lv_buf_free(&wire);
}

static void test_wire_recorded(void **state)
{
    (void)state;
    check_wire_file("vllm-stream.txt"); /* chunked, one chunk per event */
    check_wire_file("openai-401.txt");  /* Content-Length */
    /* and every other recording there */
    DIR *d = opendir(wire_dir());
    assert_non_null(d);
    int seen = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && seen < 200) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 4, ".txt") != 0)
            continue;
        check_wire_file(e->d_name);
        seen++;
    }
    closedir(d);
    assert_true(seen >= 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_content_length),
        cmocka_unit_test(test_chunked),
        cmocka_unit_test(test_close_delimited),
        cmocka_unit_test(test_no_body_statuses),
        cmocka_unit_test(test_interim_skipped),
        cmocka_unit_test(test_http10_and_connection),
        cmocka_unit_test(test_header_lookup),
        cmocka_unit_test(test_reusable),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_body_abort),
        cmocka_unit_test(test_back_to_back),
        cmocka_unit_test(test_wire_recorded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_fakevlm_parse.c - fakevlm's pure parts: the HTTP request parser, chat-request validation,
 * base64, JPEG frame headers and the answer text. The Makefile links unit tests with src/ objects
 * only, so the tools/ files under test are included here directly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../tools/fakevlm/fv_chat.c"
#include "../../tools/fakevlm/fv_http.c"

/* ---------- helpers ---------- */

static int feed_all(fv_http_parser_t *p, const char *s)
{
    fv_http_parser_init(p);
    return fv_http_feed(p, s, strlen(s));
}

/* Feed a growing prefix one byte at a time, as a slow client would send it. */
static int feed_bytewise(fv_http_parser_t *p, const char *s, size_t len, size_t *calls_before_done)
{
    fv_http_parser_init(p);
    int rc = LV_EAGAIN;
    for (size_t i = 1; i <= len; i++) {
        rc = fv_http_feed(p, s, i);
        if (rc != LV_EAGAIN) {
            *calls_before_done = i;
            return rc;
        }
    }
    *calls_before_done = len;
    return rc;
}

static char *b64(const unsigned char *in, size_t n)
{
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc(n / 3 * 4 + 5);
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
        out[o++] = al[v >> 18 & 63];
        out[o++] = al[v >> 12 & 63];
        out[o++] = i + 1 < n ? al[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? al[v & 63] : '=';
    }
    out[o] = '\0';
    return out;
}

/* A JPEG-shaped byte string: SOI, APP0, a COM segment of pad bytes (0xFF-rich, so its base64
 * holds '/'), SOF0 with the given size, SOS, EOI. Not decodable, but every marker is right. */
static unsigned char *fake_jpeg(unsigned w, unsigned h, size_t pad, size_t *len)
{
    unsigned char *p = malloc(64 + pad);
    size_t n = 0;
    const unsigned char head[] = {0xFF, 0xD8, 0xFF, 0xE0, 0, 16, 'J', 'F', 'I', 'F', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0};
    memcpy(p, head, sizeof(head));
    n = sizeof(head);
    p[n++] = 0xFF;
    p[n++] = 0xFE;
    p[n++] = (unsigned char)((pad + 2) >> 8);
    p[n++] = (unsigned char)(pad + 2);
    for (size_t i = 0; i < pad; i++)
        p[n++] = (unsigned char)(i % 3 == 0 ? 0xFF : i);
    const unsigned char sof[] = {0xFF, 0xC0, 0, 11, 8, (unsigned char)(h >> 8), (unsigned char)h,
                                 (unsigned char)(w >> 8), (unsigned char)w, 1, 1, 0x11, 0};
    memcpy(p + n, sof, sizeof(sof));
    n += sizeof(sof);
    const unsigned char tail[] = {0xFF, 0xDA, 0, 2, 0x12, 0x34, 0xFF, 0xD9};
    memcpy(p + n, tail, sizeof(tail));
    n += sizeof(tail);
    *len = n;
    return p;
}

static const char *const models[] = {"fake-vlm-1", "fake-vlm-2"};

static int parse_chat(const char *body, fv_chat_request_t *r, fv_error_t *e)
{
    return fv_chat_parse(body, strlen(body), models, 2, r, e);
}

/* A chat body with a prompt and an image data URL; escape_slashes writes '/' as "\/". */
static char *chat_body(const char *prompt, const char *mime, const unsigned char *img, size_t img_len,
                       bool escape_slashes, const char *url_key_spacing)
{
    char *enc = b64(img, img_len);
    size_t cap = strlen(enc) * 2 + 1024;
    char *esc = malloc(cap);
    size_t o = 0;
    for (const char *c = enc; *c; c++) {
        if (escape_slashes && *c == '/')
            esc[o++] = '\\';
        esc[o++] = *c;
    }
    esc[o] = '\0';
    char *body = malloc(cap + 512);
    snprintf(body, cap + 512,
             "{\"model\":\"fake-vlm-1\",\"stream\":true,\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"},"
             "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"%s\"},{\"type\":\"image_url\","
             "\"image_url\":{\"url\"%s\"data:%s;base64,%s\"}}]}]}",
             prompt, url_key_spacing, mime, esc);
    free(enc);
    free(esc);
    return body;
}

/* ---------- HTTP parser ---------- */

static void test_http_simple_get(void **state)
{
    (void)state;
    fv_http_parser_t p;
    const char *req = "GET /v1/models?x=1 HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_int_equal(feed_all(&p, req), 0);
    assert_string_equal(p.req.method, "GET");
    assert_string_equal(p.req.path, "/v1/models");
    assert_int_equal(p.req.minor_version, 1);
    assert_true(p.req.keep_alive);
    assert_false(p.req.has_fault);
    assert_int_equal(p.req.head_len, strlen(req));
    assert_int_equal(p.req.content_length, 0);
}

static void test_http_post_bytewise(void **state)
{
    (void)state;
    fv_http_parser_t p;
    const char *req = "POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 5\r\nX-Fake-Fault: drop\r\n"
                      "Expect: 100-continue\r\n\r\nhello";
    size_t at = 0;
    assert_int_equal(feed_bytewise(&p, req, strlen(req), &at), 0);
    assert_int_equal(at, strlen(req)); /* done exactly at the last body byte */
    assert_int_equal(p.req.content_length, 5);
    assert_int_equal(p.req.head_len, strlen(req) - 5);
    assert_true(p.req.expect_continue);
    assert_true(p.req.has_fault);
    assert_string_equal(p.req.fault, "drop");
    /* the head is known before the body arrives */
    fv_http_parser_init(&p);
    assert_int_equal(fv_http_feed(&p, req, strlen(req) - 2), LV_EAGAIN);
    assert_true(p.head_done);
}

static void test_http_keep_alive_rules(void **state)
{
    (void)state;
    fv_http_parser_t p;
    assert_int_equal(feed_all(&p, "GET / HTTP/1.0\r\n\r\n"), 0);
    assert_false(p.req.keep_alive);
    assert_int_equal(feed_all(&p, "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"), 0);
    assert_true(p.req.keep_alive);
    assert_int_equal(feed_all(&p, "GET / HTTP/1.1\r\nConnection: foo, close\r\n\r\n"), 0);
    assert_false(p.req.keep_alive);
    assert_int_equal(feed_all(&p, "GET / HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\n\r\n"), 0);
    assert_true(p.req.keep_alive);
}

static void test_http_leniencies(void **state)
{
    (void)state;
    fv_http_parser_t p;
    /* leading empty lines (RFC 9112 §2.2), bare LF line ends, absolute-form */
    const char *req = "\r\n\r\nGET http://h:1/healthz?q HTTP/1.1\nHost: x\n\n";
    assert_int_equal(feed_all(&p, req), 0);
    assert_string_equal(p.req.path, "/healthz");
    assert_int_equal(p.req.head_len, strlen(req));
    assert_int_equal(feed_all(&p, "GET http://h HTTP/1.1\r\n\r\n"), 0);
    assert_string_equal(p.req.path, "/");
    /* the same Content-Length twice is fine */
    assert_int_equal(feed_all(&p, "POST / HTTP/1.1\r\nContent-Length: 0\r\ncontent-length: 0\r\n\r\n"), 0);
    /* an over-long fault value is kept as "", which names no fault */
    char big[200];
    snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nX-Fake-Fault: %040d\r\n\r\n", 0);
    assert_int_equal(feed_all(&p, big), 0);
    assert_true(p.req.has_fault);
    assert_string_equal(p.req.fault, "");
}

static void test_http_pipelined(void **state)
{
    (void)state;
    fv_http_parser_t p;
    const char *two = "POST /a HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}GET /b HTTP/1.1\r\n\r\n";
    assert_int_equal(feed_all(&p, two), 0);
    size_t used = p.req.head_len + p.req.content_length;
    assert_string_equal(p.req.path, "/a");
    fv_http_parser_init(&p);
    assert_int_equal(fv_http_feed(&p, two + used, strlen(two) - used), 0);
    assert_string_equal(p.req.path, "/b");
}

static void test_http_errors(void **state)
{
    (void)state;
    static const struct {
        const char *req;
        int status;
    } cases[] = {
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 411},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nHost: x\r\n\r\n", 411},
        {"POST / HTTP/1.1\r\nContent-Length: 12a\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nContent-Length: 16777217\r\n\r\n", 413},
        {"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\n: empty\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n", 400},
        {"GET / HTTP/2.0\r\n\r\n", 505},
        {"GET / HTTP/1.2\r\n\r\n", 505},
        {"GET / HTTP/1.1x\r\n\r\n", 400},
        {"GET / HTTQ/1.1\r\n\r\n", 400},
        {"GET  / HTTP/1.1\r\n\r\n", 400},
        {"GET /\r\n\r\n", 400},
        {"GET x HTTP/1.1\r\n\r\n", 400},
        {"G(T / HTTP/1.1\r\n\r\n", 400},
        {"VERYLONGMETHODNAME / HTTP/1.1\r\n\r\n", 501},
        {"GET / HTTP/1.1\r\nExpect: 200-ok\r\n\r\n", 417},
    };
    for (size_t i = 0; i < LV_ARRAY_LEN(cases); i++) {
        fv_http_parser_t p;
        int rc = feed_all(&p, cases[i].req);
        if (rc != LV_EPARSE || p.status != cases[i].status)
            fail_msg("case %zu (%s): rc %d status %d, want %d", i, cases[i].req, rc, p.status, cases[i].status);
        assert_non_null(p.reason);
        /* a failed parser stays failed */
        assert_int_equal(fv_http_feed(&p, cases[i].req, strlen(cases[i].req)), LV_EPARSE);
    }
}

static void test_http_caps(void **state)
{
    (void)state;
    fv_http_parser_t p;
    /* a head that never ends: 431 once 16 KiB are in */
    size_t n = FV_HTTP_HEAD_MAX + 10;
    char *buf = malloc(n + 1);
    memset(buf, 'a', n);
    memcpy(buf, "GET / HTTP/1.1\r\nX: ", 19);
    buf[n] = '\0';
    fv_http_parser_init(&p);
    assert_int_equal(fv_http_feed(&p, buf, FV_HTTP_HEAD_MAX - 1), LV_EAGAIN);
    assert_int_equal(fv_http_feed(&p, buf, n), LV_EPARSE);
    assert_int_equal(p.status, 431);
    free(buf);
    /* a head that just fits */
    n = FV_HTTP_HEAD_MAX;
    buf = malloc(n + 1);
    memset(buf, 'a', n);
    memcpy(buf, "GET / HTTP/1.1\r\nX: ", 19);
    memcpy(buf + n - 4, "\r\n\r\n", 4);
    assert_int_equal(feed_all(&p, "GET / HTTP/1.1\r\n\r\n"), 0);
    fv_http_parser_init(&p);
    assert_int_equal(fv_http_feed(&p, buf, n), 0);
    free(buf);
    /* too many header lines */
    char many[4096];
    size_t o = (size_t)snprintf(many, sizeof(many), "GET / HTTP/1.1\r\n");
    for (int i = 0; i <= FV_HTTP_HEADERS_MAX; i++)
        o += (size_t)snprintf(many + o, sizeof(many) - o, "A: b\r\n");
    snprintf(many + o, sizeof(many) - o, "\r\n");
    assert_int_equal(feed_all(&p, many), LV_EPARSE);
    assert_int_equal(p.status, 431);
    /* a path over FV_HTTP_PATH_MAX */
    char *longp = malloc(FV_HTTP_PATH_MAX + 64);
    o = (size_t)snprintf(longp, 8, "GET /");
    memset(longp + o, 'p', FV_HTTP_PATH_MAX);
    snprintf(longp + o + FV_HTTP_PATH_MAX, 32, " HTTP/1.1\r\n\r\n");
    assert_int_equal(feed_all(&p, longp), LV_EPARSE);
    assert_int_equal(p.status, 414);
    free(longp);
    /* NUL in the head */
    const char nul[] = "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n";
    fv_http_parser_init(&p);
    assert_int_equal(fv_http_feed(&p, nul, sizeof(nul) - 1), LV_EPARSE);
    assert_int_equal(p.status, 400);
}

/* ---------- base64, JPEG ---------- */

static void test_base64(void **state)
{
    (void)state;
    unsigned char out[16];
    size_t n = 0;
    assert_int_equal(fv_base64_decode("TWFu", 4, out, sizeof(out), &n), 0);
    assert_int_equal(n, 3);
    assert_memory_equal(out, "Man", 3);
    assert_int_equal(fv_base64_decode("TWE=", 4, out, sizeof(out), &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(fv_base64_decode("TWE", 3, out, sizeof(out), &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(fv_base64_decode("TQ==", 4, out, sizeof(out), &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(out[0], 'M');
    assert_int_equal(fv_base64_decode("", 0, out, sizeof(out), &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(fv_base64_decode("T", 1, out, sizeof(out), &n), LV_EINVAL);
    assert_int_equal(fv_base64_decode("TW!u", 4, out, sizeof(out), &n), LV_EINVAL);
    assert_int_equal(fv_base64_decode("TW=u", 4, out, sizeof(out), &n), LV_EINVAL);
    assert_int_equal(fv_base64_decode("TWFu TWFu", 9, out, sizeof(out), &n), LV_EINVAL);
    assert_int_equal(fv_base64_decode("TWFuTWFu", 8, out, 5, &n), LV_ELIMIT);
}

static void test_jpeg_size(void **state)
{
    (void)state;
    size_t n;
    unsigned w = 0, h = 0;
    unsigned char *j = fake_jpeg(640, 480, 100, &n);
    assert_int_equal(fv_jpeg_size(j, n, &w, &h), 0);
    assert_int_equal(w, 640);
    assert_int_equal(h, 480);
    /* progressive (SOF2) and fill bytes before a marker */
    const unsigned char prog[] = {0xFF, 0xD8, 0xFF, 0xFF, 0xC2, 0, 11, 8, 0x01, 0x00, 0x02, 0x00, 1, 1, 0x11, 0};
    assert_int_equal(fv_jpeg_size(prog, sizeof(prog), &w, &h), 0);
    assert_int_equal(w, 512);
    assert_int_equal(h, 256);
    /* DHT (C4) is not a frame header */
    const unsigned char dht[] = {0xFF, 0xD8, 0xFF, 0xC4, 0, 2, 0xFF, 0xC1, 0, 11, 8, 0, 9, 0, 7, 1, 1, 0x11, 0};
    assert_int_equal(fv_jpeg_size(dht, sizeof(dht), &w, &h), 0);
    assert_int_equal(w, 7);
    assert_int_equal(h, 9);
    /* truncated inside the SOF segment, scan before any SOF, no markers at all */
    assert_int_equal(fv_jpeg_size(j, n - 16, &w, &h), LV_ENOTFOUND);
    const unsigned char sos[] = {0xFF, 0xD8, 0xFF, 0xDA, 0, 2, 0xFF, 0xC0, 0, 11, 8, 0, 1, 0, 1};
    assert_int_equal(fv_jpeg_size(sos, sizeof(sos), &w, &h), LV_ENOTFOUND);
    const unsigned char bare[] = {0xFF, 0xD8};
    assert_int_equal(fv_jpeg_size(bare, sizeof(bare), &w, &h), LV_ENOTFOUND);
    const unsigned char png[] = {0x89, 'P', 'N', 'G'};
    assert_int_equal(fv_jpeg_size(png, sizeof(png), &w, &h), LV_EINVAL);
    assert_int_equal(fv_jpeg_size(png, 0, &w, &h), LV_EINVAL);
    free(j);
}

/* ---------- chat requests ---------- */

static void test_chat_valid_with_image(void **state)
{
    (void)state;
    size_t n;
    unsigned char *j = fake_jpeg(320, 240, 3000, &n);
    char *body = chat_body("Describe the scene.", "image/jpeg", j, n, false, ":");
    fv_chat_request_t r;
    fv_error_t e;
    assert_int_equal(parse_chat(body, &r, &e), 0);
    assert_int_equal(r.model_index, 0);
    assert_true(r.stream);
    assert_false(r.include_usage);
    assert_true(r.has_image);
    assert_int_equal(r.image_bytes, n);
    assert_int_equal(r.width, 320);
    assert_int_equal(r.height, 240);
    assert_string_equal(r.prompt_sha8, "c36bb5b2"); /* sha256("Describe the scene.") */
    assert_int_equal(r.prompt_words, 3);
    assert_false(r.has_prompt_fault);
    free(body);
    free(j);
}

/* The fast path (long data: URLs lifted before jansson) must agree with jansson's own reading. */
static void test_chat_fast_path_matches_slow_path(void **state)
{
    (void)state;
    for (size_t pad = 0; pad < 5000; pad += 700) {
        size_t n;
        unsigned char *j = fake_jpeg(100 + (unsigned)pad, 50, pad, &n);
        char *fast = chat_body("p", "image/jpeg", j, n, false, " : ");
        char *slow = chat_body("p", "image/jpeg", j, n, true, ":"); /* "\/" escapes: never lifted */
        fv_chat_request_t a, b;
        fv_error_t e;
        assert_int_equal(parse_chat(fast, &a, &e), 0);
        assert_int_equal(parse_chat(slow, &b, &e), 0);
        assert_int_equal(a.image_bytes, n);
        assert_int_equal(b.image_bytes, n);
        assert_int_equal(a.width, b.width);
        assert_int_equal(a.height, b.height);
        assert_string_equal(a.prompt_sha8, b.prompt_sha8);
        /* and the fast path was really taken for one and not the other */
        lifted_t lift = {.n = 0, .nonce = "0123456789abcdef"};
        char *copy = malloc(strlen(slow) + 1);
        lift_images(fast, strlen(fast), copy, &lift);
        assert_int_equal(lift.n, n >= LIFT_MIN_BYTES ? 1 : 0);
        if (lift.n)
            assert_non_null(strstr(copy, "\"url\" : \"data:fakevlm-ref-0123456789abcdef,0\"}"));
        lift.n = 0;
        lift_images(slow, strlen(slow), copy, &lift);
        assert_int_equal(lift.n, 0);
        assert_string_equal(copy, slow);
        free(copy);
        free(fast);
        free(slow);
        free(j);
    }
    /* a long not-a-JPEG image is refused the same way on both paths */
    unsigned char junk[3000];
    memset(junk, 0x42, sizeof(junk));
    char *fast = chat_body("p", "image/jpeg", junk, sizeof(junk), false, ":");
    fv_chat_request_t r;
    fv_error_t e;
    assert_int_equal(parse_chat(fast, &r, &e), LV_EINVAL);
    assert_int_equal(e.status, 400);
    assert_string_equal(e.code, "invalid_image");
    free(fast);
}

/* A long prompt that starts with "data:" is text, not an image: never lifted, hash intact. */
static void test_chat_long_data_text_is_not_lifted(void **state)
{
    (void)state;
    size_t len = 3000;
    char *text = malloc(len + 1);
    memcpy(text, "data:image/jpeg;base64,", 23);
    memset(text + 23, 'A', len - 23);
    text[len] = '\0';
    char *body = malloc(len + 200);
    snprintf(body, len + 200,
             "{\"model\":\"fake-vlm-2\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\","
             "\"text\":\"%s\"}]}]}",
             text);
    fv_chat_request_t r;
    fv_error_t e;
    assert_int_equal(parse_chat(body, &r, &e), 0);
    assert_int_equal(r.model_index, 1);
    assert_false(r.has_image);
    char want[9];
    assert_int_equal(hash_prompt(text, len, want), 0);
    assert_string_equal(r.prompt_sha8, want);
    free(body);
    free(text);
}

/* Invalid JSON around a lifted image still reports the client's own line and column. */
static void test_chat_invalid_json_keeps_position(void **state)
{
    (void)state;
    size_t n;
    unsigned char *j = fake_jpeg(10, 10, 3000, &n);
    char *body = chat_body("p", "image/jpeg", j, n, false, ":");
    size_t len = strlen(body);
    body[len - 1] = ','; /* ...]}] , instead of the closing brace */
    fv_chat_request_t r;
    fv_error_t e;
    assert_int_equal(parse_chat(body, &r, &e), LV_EINVAL);
    assert_string_equal(e.code, "invalid_json");
    char col[32];
    snprintf(col, sizeof(col), "column %zu)", len);
    if (!strstr(e.message, col))
        fail_msg("message \"%s\" lacks \"%s\"", e.message, col);
    free(body);
    free(j);
}

static void test_chat_errors(void **state)
{
    (void)state;
    static const struct {
        const char *body;
        int status;
        const char *code;
    } cases[] = {
        {"{\"model\":", 400, "invalid_json"},
        {"[]", 400, "invalid_request"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", 400, "invalid_request"},
        {"{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", 404, "model_not_found"},
        {"{\"model\":\"fake-vlm-1\",\"messages\":{}}", 400, "invalid_request"},
        {"{\"model\":\"fake-vlm-1\",\"messages\":[]}", 400, "invalid_request"},
        {"{\"model\":\"fake-vlm-1\",\"messages\":[{\"role\":\"system\",\"content\":\"x\"}]}", 400, "invalid_request"},
        {"{\"model\":\"fake-vlm-1\",\"messages\":[{\"content\":\"x\"}]}", 400, "invalid_request"},
        {"{\"model\":\"fake-vlm-1\",\"stream\":\"yes\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", 400,
         "invalid_request"},
        {"{\"model\":\"fake-vlm-1\",\"max_tokens\":0,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", 400,
         "invalid_request"},
        {"{\"model\":\"fake-vlm-1\",\"stream_options\":{\"include_usage\":1},\"messages\":[{\"role\":\"user\","
         "\"content\":\"x\"}]}",
         400, "invalid_request"},
        {"{\"model\":\"fake-vlm-1\",\"messages\":[{\"role\":\"user\",\"content\":42}]}", 400, "invalid_request"},
        {"{\"model\":\"fake-vlm-1\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]}", 400,
         "invalid_request"},
        {"{\"model\":\"fake-vlm-1\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\","
         "\"image_url\":{\"url\":\"https://example.com/a.jpg\"}}]}]}",
         400, "invalid_image_url"},
        {"{\"model\":\"fake-vlm-1\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\","
         "\"image_url\":{\"url\":\"data:image/png;base64,iVBORw0KGgo=\"}}]}]}",
         400, "invalid_image"},
        {"{\"model\":\"fake-vlm-1\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\","
         "\"image_url\":{\"url\":\"data:text/plain;base64,/9j/\"}}]}]}",
         400, "invalid_image"},
        {"{\"model\":\"fake-vlm-1\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\","
         "\"image_url\":{\"url\":\"data:image/jpeg;base64,/9j!\"}}]}]}",
         400, "invalid_image"},
        {"{\"model\":\"fake-vlm-1\",\"messages\":[{\"role\":\"user\",\"content\":\"a [[fault:nope]] b\"}]}", 400,
         "unknown_fault"},
    };
    for (size_t i = 0; i < LV_ARRAY_LEN(cases); i++) {
        fv_chat_request_t r;
        fv_error_t e;
        int rc = parse_chat(cases[i].body, &r, &e);
        if (rc == 0 || e.status != cases[i].status || !e.code || strcmp(e.code, cases[i].code) != 0)
            fail_msg("case %zu: rc %d status %d code %s, want %d %s", i, rc, e.status, e.code ? e.code : "(null)",
                     cases[i].status, cases[i].code);
        assert_non_null(e.type);
        assert_true(strlen(e.message) > 0);
    }
}

static void test_chat_options_and_last_user(void **state)
{
    (void)state;
    const char *body =
        "{\"model\":\"fake-vlm-2\",\"stream\":true,\"stream_options\":{\"include_usage\":true},\"max_tokens\":5,"
        "\"max_completion_tokens\":9,\"messages\":[{\"role\":\"user\",\"content\":\"first\"},"
        "{\"role\":\"assistant\",\"content\":null},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"two\"},{\"type\":\"input_audio\"},"
        "{\"type\":\"text\",\"text\":\"parts [[fault:stall-after-first]]\"},"
        "{\"type\":\"image_url\",\"image_url\":\"data:image/jpeg;base64,/9j/2Q==\"}]}]}";
    fv_chat_request_t r;
    fv_error_t e;
    assert_int_equal(parse_chat(body, &r, &e), 0);
    assert_int_equal(r.model_index, 1);
    assert_true(r.stream);
    assert_true(r.include_usage);
    assert_int_equal(r.max_tokens, 9); /* max_completion_tokens wins */
    assert_true(r.has_prompt_fault);
    assert_int_equal(r.prompt_fault, FV_FAULT_STALL_AFTER_FIRST);
    assert_int_equal(r.prompt_words, 3);
    char want[9];
    const char *joined = "two\nparts [[fault:stall-after-first]]";
    assert_int_equal(hash_prompt(joined, strlen(joined), want), 0);
    assert_string_equal(r.prompt_sha8, want);
    /* FF D8 FF D9: a JPEG without a frame header is accepted as 0x0 */
    assert_true(r.has_image);
    assert_int_equal(r.image_bytes, 4);
    assert_int_equal(r.width, 0);
    assert_int_equal(r.height, 0);
}

/* ---------- answers and faults ---------- */

static void test_answer_text(void **state)
{
    (void)state;
    fv_chat_request_t r = {.image_bytes = 31389, .width = 640, .height = 480};
    memcpy(r.prompt_sha8, "c36bb5b2", 9);
    lv_buf_t b;
    lv_buf_init(&b, 4096);
    assert_int_equal(fv_answer_text(&b, "fake-vlm-1", &r, 17, 10), 0);
    assert_string_equal(b.data, "fakevlm model=fake-vlm-1 prompt=c36bb5b2 image=31389 bytes jpeg=640x480 seq=17. "
                                "lorem ipsum dolor ");
    lv_buf_reset(&b);
    assert_int_equal(fv_answer_text(&b, "m", &r, 1, 1), 0); /* never fewer than the head */
    assert_string_equal(b.data, "fakevlm model=m prompt=c36bb5b2 image=31389 bytes jpeg=640x480 seq=1. ");
    /* walking it word by word, each word keeps its space */
    size_t pos = 0, words = 0;
    while (pos < b.len) {
        size_t n = fv_word_len(b.data + pos, b.len - pos);
        assert_int_equal(b.data[pos + n - 1], ' ');
        pos += n;
        words++;
    }
    assert_int_equal(words, FV_HEADER_WORDS);
    lv_buf_free(&b);
}

static void test_fault_names(void **state)
{
    (void)state;
    for (int f = 0; f < FV_FAULT_COUNT; f++) {
        fv_fault_t got;
        const char *name = fv_fault_name((fv_fault_t)f);
        assert_int_equal(fv_fault_parse(name, strlen(name), &got), 0);
        assert_int_equal(got, f);
        if (f != FV_FAULT_NONE)
            assert_non_null(strstr(fv_fault_list(), name));
    }
    fv_fault_t got;
    assert_int_equal(fv_fault_parse("stall-after", 11, &got), LV_EINVAL);
    assert_int_equal(fv_fault_parse("", 0, &got), LV_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_simple_get),
        cmocka_unit_test(test_http_post_bytewise),
        cmocka_unit_test(test_http_keep_alive_rules),
        cmocka_unit_test(test_http_leniencies),
        cmocka_unit_test(test_http_pipelined),
        cmocka_unit_test(test_http_errors),
        cmocka_unit_test(test_http_caps),
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_jpeg_size),
        cmocka_unit_test(test_chat_valid_with_image),
        cmocka_unit_test(test_chat_fast_path_matches_slow_path),
        cmocka_unit_test(test_chat_long_data_text_is_not_lifted),
        cmocka_unit_test(test_chat_invalid_json_keeps_position),
        cmocka_unit_test(test_chat_errors),
        cmocka_unit_test(test_chat_options_and_last_user),
        cmocka_unit_test(test_answer_text),
        cmocka_unit_test(test_fault_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

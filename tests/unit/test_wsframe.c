/* test_wsframe.c - the WebSocket accept key, the client frame reader (every RFC 6455 rule it
 * enforces, fragmentation, caps, byte-by-byte input) and the server frame writers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lv_buf.h"
#include "lv_common.h"
#include "lv_wsframe.h"

/* --- building client frames ---------------------------------------------------------------- */

typedef struct {
    uint8_t *data;
    size_t len, cap;
} wire_t;

static void wire_put(wire_t *w, const void *p, size_t n)
{
    if (w->len + n > w->cap) {
        w->cap = (w->len + n) * 2 + 64;
        w->data = realloc(w->data, w->cap);
        assert_non_null(w->data);
    }
    memcpy(w->data + w->len, p, n);
    w->len += n;
}

/* A raw frame: b0 is FIN|RSV|opcode; masked unless mask == NULL; len64 forces the 8-byte form. */
static void frame_raw(wire_t *w, uint8_t b0, const void *payload, size_t n, const uint8_t *mask, bool len64)
{
    uint8_t h[14];
    size_t hl = 2;
    h[0] = b0;
    uint8_t mbit = mask ? 0x80 : 0;
    if (n < 126 && !len64) {
        h[1] = (uint8_t)(mbit | n);
    } else if (n <= 0xFFFF && !len64) {
        h[1] = mbit | 126;
        h[2] = (uint8_t)(n >> 8);
        h[3] = (uint8_t)n;
        hl = 4;
    } else {
        h[1] = mbit | 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
        hl = 10;
    }
    if (mask) {
        memcpy(h + hl, mask, 4);
        hl += 4;
    }
    wire_put(w, h, hl);
    size_t start = w->len;
    wire_put(w, payload, n);
    if (mask)
        for (size_t i = 0; i < n; i++)
            w->data[start + i] ^= mask[i & 3];
}

static const uint8_t MASK[4] = {0x37, 0xfa, 0x21, 0x3d};

static void frame(wire_t *w, bool fin, int op, const void *payload, size_t n)
{
    frame_raw(w, (uint8_t)((fin ? 0x80 : 0) | op), payload, n, MASK, false);
}

static void frame_s(wire_t *w, bool fin, int op, const char *s)
{
    frame(w, fin, op, s, strlen(s));
}

static void close_frame(wire_t *w, int code, const char *reason)
{
    uint8_t p[125];
    size_t n = 0;
    if (code >= 0) {
        p[0] = (uint8_t)(code >> 8);
        p[1] = (uint8_t)code;
        n = 2;
    }
    if (reason) {
        memcpy(p + n, reason, strlen(reason));
        n += strlen(reason);
    }
    frame(w, true, LV_WS_OP_CLOSE, p, n);
}

/* --- reading them back --------------------------------------------------------------------- */

/* Every event of a feed, recorded as text: "M:t:hello" "M:b:3" "PING:x" "PONG:" "C:1000:bye"
 * "BIG:t:300" "E:1002", separated by '|'. chunk is the piece size (0 = all at once). */
static char *read_all(lv_ws_reader_t *r, wire_t *w, size_t chunk)
{
    lv_buf_t out;
    lv_buf_init(&out, 1 << 20);
    size_t pos = 0;
    bool stop = false;
    while (pos < w->len && !stop) {
        size_t piece = chunk ? LV_MIN(chunk, w->len - pos) : w->len - pos;
        size_t off = 0;
        for (;;) {
            size_t used = 99999;
            lv_ws_event_t ev;
            lv_ws_reader_feed(r, w->data + pos + off, piece - off, &used, &ev);
            assert_true(used <= piece - off);
            off += used;
            if (ev.kind == LV_WS_EV_NONE) {
                assert_int_equal(off, piece); /* NONE means everything was consumed */
                break;
            }
            switch (ev.kind) {
            case LV_WS_EV_MESSAGE:
                assert_non_null(ev.data);
                if (ev.binary)
                    lv_buf_printf(&out, "M:b:%zu|", ev.len);
                else
                    lv_buf_printf(&out, "M:t:%.*s|", (int)ev.len, (const char *)ev.data);
                break;
            case LV_WS_EV_PING:
                lv_buf_printf(&out, "PING:%.*s|", (int)ev.len, (const char *)ev.data);
                break;
            case LV_WS_EV_PONG:
                lv_buf_printf(&out, "PONG:%.*s|", (int)ev.len, (const char *)ev.data);
                break;
            case LV_WS_EV_CLOSE:
                lv_buf_printf(&out, "C:%d:%.*s|", ev.close_code, (int)ev.len, (const char *)ev.data);
                break;
            case LV_WS_EV_TOO_BIG:
                lv_buf_printf(&out, "BIG:%c:%zu|", ev.binary ? 'b' : 't', ev.len);
                break;
            case LV_WS_EV_ERROR: {
                assert_non_null(ev.why);
                lv_buf_printf(&out, "E:%d|", ev.close_code);
                /* sticky */
                lv_ws_event_t ev2;
                size_t used2 = 5;
                lv_ws_reader_feed(r, w->data, w->len, &used2, &ev2);
                assert_int_equal(ev2.kind, LV_WS_EV_ERROR);
                assert_int_equal(ev2.close_code, ev.close_code);
                assert_int_equal(used2, 0);
                stop = true;
                break;
            }
            default:
                fail();
            }
            if (stop)
                break;
        }
        pos += piece;
    }
    char *s = strdup(out.len ? out.data : "");
    lv_buf_free(&out);
    return s;
}

/* Read the wire at once, in 1-byte pieces, and in pieces of 2..17 bytes: all must agree with
 * want. The wire is masked in place by the reader, so each run uses a fresh copy. */
static void expect_events(wire_t *w, size_t max_bin, size_t max_text, const char *want)
{
    size_t chunks[] = {0, 1, 2, 3, 5, 7, 13, 17};
    for (size_t k = 0; k < sizeof(chunks) / sizeof(chunks[0]); k++) {
        wire_t copy = {0};
        wire_put(&copy, w->data, w->len);
        lv_ws_reader_t r;
        lv_ws_reader_init(&r, max_bin, max_text);
        char *got = read_all(&r, &copy, chunks[k]);
        if (strcmp(got, want) != 0)
            fail_msg("chunk %zu: got \"%s\", wanted \"%s\"", chunks[k], got, want);
        free(got);
        lv_ws_reader_free(&r);
        free(copy.data);
    }
    free(w->data);
    w->data = NULL;
    w->len = w->cap = 0;
}

/* --- tests --------------------------------------------------------------------------------- */

static void test_accept_key(void **state)
{
    (void)state;
    char out[29];
    /* RFC 6455 section 1.3 */
    const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
    assert_int_equal(lv_ws_accept_key(key, strlen(key), out), 0);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    /* a second key (the example on Wikipedia), its accept computed independently */
    assert_int_equal(lv_ws_accept_key("x3JJHMbDL1EzLkh9GBhXDw==", 24, out), 0);
    assert_string_equal(out, "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
    assert_int_equal(lv_ws_accept_key(key, 23, out), LV_EINVAL);
    assert_int_equal(lv_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ=", 23, out), LV_EINVAL);
    assert_int_equal(lv_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==x", 25, out), LV_EINVAL);
    assert_int_equal(lv_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ=A", 24, out), LV_EINVAL);
    assert_int_equal(lv_ws_accept_key("dGhlIHNhbXBsZSBub25jZ!==", 24, out), LV_EINVAL);
    assert_int_equal(lv_ws_accept_key("dGhlIHNhbXBsZSBub25j Q==", 24, out), LV_EINVAL);
    assert_int_equal(lv_ws_accept_key(NULL, 24, out), LV_EINVAL);
    assert_string_equal(out, "");
}

static void test_text_and_binary(void **state)
{
    (void)state;
    wire_t w = {0};
    frame_s(&w, true, LV_WS_OP_TEXT, "Hello");
    frame(&w, true, LV_WS_OP_BINARY, "\x00\x01\x02", 3);
    frame_s(&w, true, LV_WS_OP_TEXT, "");
    frame(&w, true, LV_WS_OP_BINARY, "", 0);
    frame_s(&w, true, LV_WS_OP_TEXT, "caf\xc3\xa9");
    expect_events(&w, 100, 100, "M:t:Hello|M:b:3|M:t:|M:b:0|M:t:caf\xc3\xa9|");

    /* RFC 6455 section 5.7: a single-frame masked text message */
    static const uint8_t rfc[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    wire_put(&w, rfc, sizeof(rfc));
    expect_events(&w, 100, 100, "M:t:Hello|");

    /* 16- and 64-bit lengths (the 64-bit form for a short payload is accepted too) */
    char big[70000];
    memset(big, 'a', sizeof(big));
    frame(&w, true, LV_WS_OP_BINARY, big, 200);
    frame(&w, true, LV_WS_OP_BINARY, big, 70000);
    frame_raw(&w, 0x82, big, 5, MASK, true);
    expect_events(&w, 100000, 100, "M:b:200|M:b:70000|M:b:5|");
}

static void test_message_content(void **state)
{
    (void)state;
    /* the payload is unmasked correctly across pieces of every size (the 8-byte path included),
     * for every length mod 4 */
    for (size_t n = 0; n < 300; n += 37) {
        wire_t w = {0};
        uint8_t p[300];
        for (size_t i = 0; i < n; i++)
            p[i] = (uint8_t)(i * 7 + 1);
        frame(&w, false, LV_WS_OP_BINARY, p, n / 3);
        frame(&w, true, LV_WS_OP_CONT, p + n / 3, n - n / 3);
        static const size_t chunks[] = {1, 2, 3, 5, 8, 17, 33, 101, 100000};
        for (size_t ci = 0; ci < sizeof(chunks) / sizeof(chunks[0]); ci++) {
            size_t chunk = chunks[ci];
            wire_t copy = {0};
            wire_put(&copy, w.data, w.len);
            lv_ws_reader_t r;
            lv_ws_reader_init(&r, 1000, 1000);
            size_t pos = 0;
            bool got = false;
            while (pos < copy.len) {
                size_t piece = LV_MIN(chunk, copy.len - pos), used;
                lv_ws_event_t ev;
                lv_ws_reader_feed(&r, copy.data + pos, piece, &used, &ev);
                pos += used;
                if (ev.kind == LV_WS_EV_MESSAGE) {
                    assert_int_equal(ev.len, n);
                    assert_true(ev.binary);
                    if (n)
                        assert_memory_equal(ev.data, p, n);
                    got = true;
                } else {
                    assert_int_equal(ev.kind, LV_WS_EV_NONE);
                }
            }
            assert_true(got);
            lv_ws_reader_free(&r);
            free(copy.data);
        }
        free(w.data);
    }
}

static void test_protocol_errors(void **state)
{
    (void)state;
    wire_t w = {0};
    /* unmasked client frame (section 5.1) */
    frame_raw(&w, 0x81, "hi", 2, NULL, false);
    expect_events(&w, 100, 100, "E:1002|");
    /* reserved bits (section 5.2) */
    frame_raw(&w, 0xC1, "hi", 2, MASK, false);
    expect_events(&w, 100, 100, "E:1002|");
    frame_raw(&w, 0x91, "hi", 2, MASK, false);
    expect_events(&w, 100, 100, "E:1002|");
    /* unknown opcodes */
    for (int op = 3; op <= 0xF; op++) {
        if (op >= 8 && op <= 0xA)
            continue;
        frame_s(&w, true, LV_WS_OP_TEXT, "ok");
        frame_s(&w, true, op, "x");
        expect_events(&w, 100, 100, "M:t:ok|E:1002|");
    }
    /* control frames: over 125 bytes, or not final (section 5.5) */
    char p[200];
    memset(p, 'p', sizeof(p));
    frame(&w, true, LV_WS_OP_PING, p, 126);
    expect_events(&w, 100, 100, "E:1002|");
    frame(&w, true, LV_WS_OP_PING, p, 125);
    char want[200];
    snprintf(want, sizeof(want), "PING:%.125s|", p);
    expect_events(&w, 100, 100, want);
    frame(&w, false, LV_WS_OP_PING, "x", 1);
    expect_events(&w, 100, 100, "E:1002|");
    frame(&w, false, LV_WS_OP_CLOSE, "", 0);
    expect_events(&w, 100, 100, "E:1002|");
    /* continuation without a start; a new data frame inside a fragmented message (5.4) */
    frame_s(&w, true, LV_WS_OP_CONT, "x");
    expect_events(&w, 100, 100, "E:1002|");
    frame_s(&w, false, LV_WS_OP_TEXT, "a");
    frame_s(&w, true, LV_WS_OP_TEXT, "b");
    expect_events(&w, 100, 100, "E:1002|");
    frame_s(&w, false, LV_WS_OP_BINARY, "a");
    frame_s(&w, true, LV_WS_OP_BINARY, "b");
    expect_events(&w, 100, 100, "E:1002|");
    frame_s(&w, true, LV_WS_OP_TEXT, "a");
    frame_s(&w, true, LV_WS_OP_CONT, "b");
    expect_events(&w, 100, 100, "M:t:a|E:1002|");
    /* 64-bit length with the top bit set (section 5.2) */
    uint8_t h[] = {0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4};
    wire_put(&w, h, sizeof(h));
    expect_events(&w, 100, 100, "E:1002|");
}

static void test_fragments_and_control(void **state)
{
    (void)state;
    wire_t w = {0};
    frame_s(&w, false, LV_WS_OP_TEXT, "Hel");
    frame_s(&w, true, LV_WS_OP_PING, "p1");
    frame_s(&w, false, LV_WS_OP_CONT, "");
    frame_s(&w, true, LV_WS_OP_PONG, "");
    frame_s(&w, false, LV_WS_OP_CONT, "lo ");
    frame_s(&w, true, LV_WS_OP_CONT, "there");
    frame(&w, false, LV_WS_OP_BINARY, "ab", 2);
    frame_s(&w, true, LV_WS_OP_PING, "");
    frame(&w, true, LV_WS_OP_CONT, "c", 1);
    frame_s(&w, true, LV_WS_OP_TEXT, "next");
    expect_events(&w, 100, 100, "PING:p1|PONG:|M:t:Hello there|PING:|M:b:3|M:t:next|");
}

static void test_utf8(void **state)
{
    (void)state;
    wire_t w = {0};
    frame_s(&w, true, LV_WS_OP_TEXT, "bad \xff");
    expect_events(&w, 100, 100, "E:1007|");
    frame_s(&w, true, LV_WS_OP_TEXT, "surrogate \xed\xa0\x80");
    expect_events(&w, 100, 100, "E:1007|");
    /* a sequence split across fragments is fine */
    frame_s(&w, false, LV_WS_OP_TEXT, "\xe2\x82");
    frame_s(&w, true, LV_WS_OP_CONT, "\xac!");
    expect_events(&w, 100, 100, "M:t:\xe2\x82\xac!|");
    /* invalid across fragments: detected in the fragment that breaks it, before the end */
    frame_s(&w, false, LV_WS_OP_TEXT, "ok \xe2\x82");
    frame_s(&w, false, LV_WS_OP_CONT, "x");
    expect_events(&w, 100, 100, "E:1007|");
    /* a message that ends inside a sequence */
    frame_s(&w, false, LV_WS_OP_TEXT, "a");
    frame_s(&w, true, LV_WS_OP_CONT, "\xf0\x9f\x98");
    expect_events(&w, 100, 100, "E:1007|");
    /* binary messages are not checked */
    frame(&w, true, LV_WS_OP_BINARY, "\xff\xfe", 2);
    expect_events(&w, 100, 100, "M:b:2|");
}

static void test_close(void **state)
{
    (void)state;
    wire_t w = {0};
    close_frame(&w, 1000, "bye");
    expect_events(&w, 100, 100, "C:1000:bye|");
    close_frame(&w, -1, NULL);
    expect_events(&w, 100, 100, "C:1005:|");
    close_frame(&w, 1001, NULL);
    expect_events(&w, 100, 100, "C:1001:|");
    close_frame(&w, 4999, "\xc3\xa9");
    expect_events(&w, 100, 100, "C:4999:\xc3\xa9|");
    /* a 1-byte payload (section 5.5.1) */
    frame(&w, true, LV_WS_OP_CLOSE, "\x03", 1);
    expect_events(&w, 100, 100, "E:1002|");
    /* codes a peer must not send */
    static const int bad[] = {0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        close_frame(&w, bad[i], NULL);
        expect_events(&w, 100, 100, "E:1002|");
    }
    static const int good[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010,
                               1011, 1012, 1013, 1014, 3000, 3999, 4000};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        close_frame(&w, good[i], "r");
        char want[32];
        snprintf(want, sizeof(want), "C:%d:r|", good[i]);
        expect_events(&w, 100, 100, want);
    }
    /* a reason that is not UTF-8 */
    close_frame(&w, 1000, "\xc3");
    expect_events(&w, 100, 100, "E:1007|");
    /* a close in the middle of a fragmented message is still a control frame */
    frame_s(&w, false, LV_WS_OP_TEXT, "a");
    close_frame(&w, 1000, "");
    expect_events(&w, 100, 100, "C:1000:|");
}

static void test_too_big(void **state)
{
    (void)state;
    wire_t w = {0};
    char p[400];
    memset(p, 'x', sizeof(p));
    /* one frame over the text cap: TOO_BIG once, skipped, and the next message reads fine */
    frame(&w, true, LV_WS_OP_TEXT, p, 300);
    frame_s(&w, true, LV_WS_OP_TEXT, "after");
    expect_events(&w, 1000, 100, "BIG:t:300|M:t:after|");
    /* at the cap exactly is fine */
    frame(&w, true, LV_WS_OP_TEXT, p, 100);
    frame(&w, true, LV_WS_OP_BINARY, p, 101);
    char want[200];
    snprintf(want, sizeof(want), "M:t:%.100s|M:b:101|", p);
    expect_events(&w, 101, 100, want);
    /* fragmented: passes the cap in its third fragment; pings in between still arrive; the
     * fragments after it are skipped without events; then the next message */
    frame(&w, false, LV_WS_OP_BINARY, p, 40);
    frame(&w, false, LV_WS_OP_CONT, p, 40);
    frame_s(&w, true, LV_WS_OP_PING, "a");
    frame(&w, false, LV_WS_OP_CONT, p, 40);
    frame_s(&w, true, LV_WS_OP_PING, "b");
    frame(&w, false, LV_WS_OP_CONT, p, 300);
    frame(&w, true, LV_WS_OP_CONT, p, 0);
    frame(&w, true, LV_WS_OP_BINARY, p, 7);
    expect_events(&w, 100, 1000, "PING:a|BIG:b:120|PING:b|M:b:7|");
    /* fragmentation rules still hold while skipping */
    frame(&w, false, LV_WS_OP_BINARY, p, 200);
    frame(&w, true, LV_WS_OP_BINARY, p, 1);
    expect_events(&w, 100, 100, "BIG:b:200|E:1002|");
    /* an announced length far past the cap is refused from the header alone */
    uint8_t h[] = {0x82, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4};
    lv_ws_reader_t r;
    lv_ws_reader_init(&r, 100, 100);
    size_t used;
    lv_ws_event_t ev;
    lv_ws_reader_feed(&r, h, sizeof(h), &used, &ev);
    assert_int_equal(ev.kind, LV_WS_EV_TOO_BIG);
    assert_int_equal(used, sizeof(h));
    assert_int_equal(r.msg.len, 0);
    lv_ws_reader_free(&r);
}

/* The reader hands back one event per call and the rest of the buffer. */
static void test_one_event_per_call(void **state)
{
    (void)state;
    wire_t w = {0};
    frame_s(&w, true, LV_WS_OP_TEXT, "one");
    size_t first = w.len;
    frame_s(&w, true, LV_WS_OP_PING, "two");
    lv_ws_reader_t r;
    lv_ws_reader_init(&r, 100, 100);
    size_t used;
    lv_ws_event_t ev;
    lv_ws_reader_feed(&r, w.data, w.len, &used, &ev);
    assert_int_equal(ev.kind, LV_WS_EV_MESSAGE);
    assert_int_equal(used, first);
    lv_ws_reader_feed(&r, w.data + used, w.len - used, &used, &ev);
    assert_int_equal(ev.kind, LV_WS_EV_PING);
    assert_int_equal(used, w.len - first);
    lv_ws_reader_feed(&r, w.data, 0, &used, &ev);
    assert_int_equal(ev.kind, LV_WS_EV_NONE);
    assert_int_equal(used, 0);
    lv_ws_reader_free(&r);
    free(w.data);

    /* a big message's buffer is given back between messages */
    w = (wire_t){0};
    char *big = calloc(1, 200000);
    assert_non_null(big);
    frame(&w, true, LV_WS_OP_BINARY, big, 200000);
    frame(&w, true, LV_WS_OP_BINARY, big, 1);
    lv_ws_reader_init(&r, 1 << 20, 100);
    lv_ws_reader_feed(&r, w.data, w.len, &used, &ev);
    assert_int_equal(ev.kind, LV_WS_EV_MESSAGE);
    assert_int_equal(ev.len, 200000);
    lv_ws_reader_feed(&r, w.data + used, w.len - used, &used, &ev);
    assert_int_equal(ev.kind, LV_WS_EV_MESSAGE);
    assert_true(r.msg.cap < 200000);
    lv_ws_reader_free(&r);
    free(big);
    free(w.data);
}

static void test_frame_header(void **state)
{
    (void)state;
    uint8_t h[10];
    assert_int_equal(lv_ws_frame_header(h, LV_WS_OP_TEXT, 0), 2);
    assert_int_equal(h[0], 0x81);
    assert_int_equal(h[1], 0);
    assert_int_equal(lv_ws_frame_header(h, LV_WS_OP_BINARY, 125), 2);
    assert_int_equal(h[0], 0x82);
    assert_int_equal(h[1], 125);
    assert_int_equal(lv_ws_frame_header(h, LV_WS_OP_TEXT, 126), 4);
    assert_int_equal(h[1], 126);
    assert_int_equal(h[2], 0);
    assert_int_equal(h[3], 126);
    assert_int_equal(lv_ws_frame_header(h, LV_WS_OP_TEXT, 65535), 4);
    assert_int_equal(h[2], 0xFF);
    assert_int_equal(h[3], 0xFF);
    assert_int_equal(lv_ws_frame_header(h, LV_WS_OP_BINARY, 65536), 10);
    assert_int_equal(h[1], 127);
    static const uint8_t l65536[8] = {0, 0, 0, 0, 0, 1, 0, 0};
    assert_memory_equal(h + 2, l65536, 8);
    assert_int_equal(lv_ws_frame_header(h, LV_WS_OP_PONG, 0x0102030405060708ull), 10);
    assert_int_equal(h[0], 0x8A);
    static const uint8_t lbig[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    assert_memory_equal(h + 2, lbig, 8);
}

static void test_close_writer(void **state)
{
    (void)state;
    uint8_t f[127];
    size_t n = lv_ws_close_frame(f, 1000, "bye");
    assert_int_equal(n, 7);
    static const uint8_t want[] = {0x88, 5, 0x03, 0xE8, 'b', 'y', 'e'};
    assert_memory_equal(f, want, 7);
    n = lv_ws_close_frame(f, 1009, NULL);
    assert_int_equal(n, 4);
    assert_int_equal(f[1], 2);
    /* codes that must not be sent: an empty close frame */
    assert_int_equal(lv_ws_close_frame(f, 1005, "x"), 2);
    assert_int_equal(f[0], 0x88);
    assert_int_equal(f[1], 0);
    assert_int_equal(lv_ws_close_frame(f, 0, NULL), 2);
    assert_int_equal(lv_ws_close_frame(f, 5000, NULL), 2);
    /* a long reason is cut to 123 bytes, never inside a UTF-8 sequence */
    char r[300];
    memset(r, 'a', 200);
    r[200] = '\0';
    n = lv_ws_close_frame(f, 1000, r);
    assert_int_equal(n, 127);
    assert_int_equal(f[1], 125);
    memset(r, 'a', 122);
    memcpy(r + 122, "\xe2\x82\xac\xe2\x82\xac", 7); /* a 3-byte sequence straddles byte 123 */
    n = lv_ws_close_frame(f, 1000, r);
    assert_int_equal(f[1], 2 + 122);
    assert_int_equal(n, 2 + 2 + 122);
    memset(r, 'a', 121);
    memcpy(r + 121, "\xc3\xa9\xc3\xa9", 5); /* ends exactly at 123 */
    n = lv_ws_close_frame(f, 1000, r);
    assert_int_equal(f[1], 125);
    /* an invalid reason is left out */
    n = lv_ws_close_frame(f, 1000, "\xff");
    assert_int_equal(n, 4);
    /* what it writes, the reader reads back */
    n = lv_ws_close_frame(f, 4001, "caf\xc3\xa9");
    f[1] |= 0x80; /* a client would mask: insert a zero mask */
    uint8_t masked[140];
    memcpy(masked, f, 2);
    memset(masked + 2, 0, 4);
    memcpy(masked + 6, f + 2, n - 2);
    lv_ws_reader_t rd;
    lv_ws_reader_init(&rd, 10, 10);
    size_t used;
    lv_ws_event_t ev;
    lv_ws_reader_feed(&rd, masked, n + 4, &used, &ev);
    assert_int_equal(ev.kind, LV_WS_EV_CLOSE);
    assert_int_equal(ev.close_code, 4001);
    assert_int_equal(ev.len, 5);
    assert_memory_equal(ev.data, "caf\xc3\xa9", 5);
    lv_ws_reader_free(&rd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept_key),
        cmocka_unit_test(test_text_and_binary),
        cmocka_unit_test(test_message_content),
        cmocka_unit_test(test_protocol_errors),
        cmocka_unit_test(test_fragments_and_control),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_close),
        cmocka_unit_test(test_too_big),
        cmocka_unit_test(test_one_event_per_call),
        cmocka_unit_test(test_frame_header),
        cmocka_unit_test(test_close_writer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

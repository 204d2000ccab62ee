/* test_sse.c - the SSE parser: splits at every byte boundary, line endings, comments, caps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lv_buf.h"
#include "lv_common.h"
#include "lv_sse.h"

/* Collects dispatched events as "<data>|" into one string. */
typedef struct {
    lv_buf_t got;
    int n;
    int stop_at; /* return 99 from the callback at this event number (1-based), 0 = never */
} sink_t;

static int on_data(void *ud, const char *data, size_t len)
{
    sink_t *s = ud;
    assert_int_equal(data[len], '\0');
    s->n++;
    assert_int_equal(lv_buf_append(&s->got, data, len), 0);
    assert_int_equal(lv_buf_append(&s->got, "|", 1), 0);
    return s->stop_at && s->n == s->stop_at ? 99 : 0;
}

static void sink_init(sink_t *s)
{
    lv_buf_init(&s->got, 1 << 20);
    s->n = 0;
    s->stop_at = 0;
}

static const char *sink_str(sink_t *s) { return s->got.len ? s->got.data : ""; }

/* Parse in with every split into two feeds, and into one-byte feeds; every result must be want. */
static void check_all_splits(const char *in, size_t n, const char *want, size_t max_line)
{
    for (size_t cut = 0; cut <= n; cut++) {
        lv_sse_t p;
        sink_t s;
        sink_init(&s);
        lv_sse_init(&p, max_line);
        assert_int_equal(lv_sse_feed(&p, in, cut, on_data, &s), 0);
        assert_int_equal(lv_sse_feed(&p, in + cut, n - cut, on_data, &s), 0);
        if (strcmp(sink_str(&s), want) != 0)
            fail_msg("cut at %zu: got \"%s\" want \"%s\"", cut, sink_str(&s), want);
        lv_sse_free(&p);
        lv_buf_free(&s.got);
    }
    lv_sse_t p;
    sink_t s;
    sink_init(&s);
    lv_sse_init(&p, max_line);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(lv_sse_feed(&p, in + i, 1, on_data, &s), 0);
    assert_string_equal(sink_str(&s), want);
    lv_sse_free(&p);
    lv_buf_free(&s.got);
}

static const char stream_lf[] =
    "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n"
    ": keep-alive\n\n"
    "event: message\nid: 7\nretry: 100\ndata: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\n"
    "data: line1\ndata: line2\ndata:line3\n\n"
    "data\n\n"
    "data:  two spaces\n\n"
    "data: [DONE]\n\n";
static const char want_events[] =
    "{\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}|"
    "{\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}|"
    "line1\nline2\nline3|"
    "|"
    " two spaces|"
    "[DONE]|";

static void test_every_split_lf(void **state)
{
    (void)state;
    check_all_splits(stream_lf, sizeof stream_lf - 1, want_events, 4096);
}

/* The same stream with CRLF and with bare CR line endings. */
static char *convert(const char *in, const char *eol)
{
    size_t n = strlen(in), el = strlen(eol);
    char *o = malloc(n * el + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (in[i] == '\n') {
            memcpy(o + k, eol, el);
            k += el;
        } else {
            o[k++] = in[i];
        }
    }
    o[k] = '\0';
    return o;
}

static void test_every_split_crlf_and_cr(void **state)
{
    (void)state;
    char *crlf = convert(stream_lf, "\r\n");
    check_all_splits(crlf, strlen(crlf), want_events, 4096);
    free(crlf);
    char *cr = convert(stream_lf, "\r");
    check_all_splits(cr, strlen(cr), want_events, 4096);
    free(cr);
}

static void test_mixed_endings(void **state)
{
    (void)state;
    /* "\r\r" is two line ends (an empty line = dispatch); "\r\n\n" is one end then an empty line. */
    const char in[] = "data: a\r\rdata: b\r\n\ndata: c\n\r\n";
    check_all_splits(in, sizeof in - 1, "a|b|c|", 64);
}

static void test_bom_and_no_space(void **state)
{
    (void)state;
    const char in[] = "\xEF\xBB\xBF" "data:x\n\n";
    check_all_splits(in, sizeof in - 1, "x|", 64);
}

static void test_no_dispatch_without_blank_line(void **state)
{
    (void)state;
    lv_sse_t p;
    sink_t s;
    sink_init(&s);
    lv_sse_init(&p, 64);
    assert_int_equal(lv_sse_feed(&p, "data: a\n", 8, on_data, &s), 0);
    assert_int_equal(s.n, 0);
    /* lenient end of stream: dispatches the pending event */
    assert_int_equal(lv_sse_finish(&p, on_data, &s), 0);
    assert_string_equal(sink_str(&s), "a|");
    lv_sse_free(&p);
    lv_buf_free(&s.got);

    sink_init(&s);
    lv_sse_init(&p, 64);
    assert_int_equal(lv_sse_feed(&p, "data: [DONE]", 12, on_data, &s), 0);
    assert_int_equal(lv_sse_finish(&p, on_data, &s), 0);
    assert_string_equal(sink_str(&s), "[DONE]|");
    lv_sse_free(&p);
    lv_buf_free(&s.got);
}

static void test_line_cap(void **state)
{
    (void)state;
    char line[80];
    memset(line, 'x', sizeof line);
    memcpy(line, "data: ", 6);
    /* a 32-byte line is fine with a 32-byte cap, 33 is not, whether split or whole */
    for (int split = 0; split < 2; split++) {
        lv_sse_t p;
        sink_t s;
        sink_init(&s);
        lv_sse_init(&p, 32);
        if (split) {
            assert_int_equal(lv_sse_feed(&p, line, 10, on_data, &s), 0);
            assert_int_equal(lv_sse_feed(&p, line + 10, 22, on_data, &s), 0);
        } else {
            assert_int_equal(lv_sse_feed(&p, line, 32, on_data, &s), 0);
        }
        assert_int_equal(lv_sse_feed(&p, "\n\n", 2, on_data, &s), 0);
        assert_int_equal(s.n, 1);
        assert_int_equal(s.got.len, 26 + 1);
        if (split) {
            assert_int_equal(lv_sse_feed(&p, line, 10, on_data, &s), 0);
            assert_int_equal(lv_sse_feed(&p, line + 10, 23, on_data, &s), LV_ELIMIT);
        } else {
            char l2[40];
            memcpy(l2, line, 33);
            l2[33] = '\n';
            assert_int_equal(lv_sse_feed(&p, l2, 34, on_data, &s), LV_ELIMIT);
        }
        /* sticky */
        assert_int_equal(lv_sse_feed(&p, "\n", 1, on_data, &s), LV_ELIMIT);
        assert_int_equal(lv_sse_finish(&p, on_data, &s), LV_ELIMIT);
        lv_sse_free(&p);
        lv_buf_free(&s.got);
    }
}

static void test_event_cap(void **state)
{
    (void)state;
    lv_sse_t p;
    sink_t s;
    sink_init(&s);
    lv_sse_init(&p, 16);
    /* each line fits, the joined data (10 + 1 + 10 bytes) does not */
    assert_int_equal(lv_sse_feed(&p, "data: 0123456789\n", 17, on_data, &s), 0);
    assert_int_equal(lv_sse_feed(&p, "data: 0123456789\n", 17, on_data, &s), LV_ELIMIT);
    assert_int_equal(s.n, 0);
    lv_sse_free(&p);
    lv_buf_free(&s.got);
}

static void test_callback_stops(void **state)
{
    (void)state;
    lv_sse_t p;
    sink_t s;
    sink_init(&s);
    s.stop_at = 2;
    lv_sse_init(&p, 64);
    const char in[] = "data: 1\n\ndata: 2\n\ndata: 3\n\n";
    assert_int_equal(lv_sse_feed(&p, in, sizeof in - 1, on_data, &s), 99);
    assert_int_equal(s.n, 2);
    assert_int_equal(lv_sse_feed(&p, in, sizeof in - 1, on_data, &s), 99);
    assert_int_equal(s.n, 2);
    lv_sse_free(&p);
    lv_buf_free(&s.got);
}

static void test_empty_and_unknown(void **state)
{
    (void)state;
    /* blank lines with no data dispatch nothing; "data" prefix of a longer name is not data */
    const char in[] = "\n\n\r\n:comment only\n\ndatax: no\nDATA: no\n\nfoo\n\n";
    check_all_splits(in, sizeof in - 1, "", 64);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_split_lf),
        cmocka_unit_test(test_every_split_crlf_and_cr),
        cmocka_unit_test(test_mixed_endings),
        cmocka_unit_test(test_bom_and_no_space),
        cmocka_unit_test(test_no_dispatch_without_blank_line),
        cmocka_unit_test(test_line_cap),
        cmocka_unit_test(test_event_cap),
        cmocka_unit_test(test_callback_stops),
        cmocka_unit_test(test_empty_and_unknown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

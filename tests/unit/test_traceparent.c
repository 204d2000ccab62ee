/* test_traceparent.c - the W3C traceparent parser and formatter (lv_traceparent.c): the spec's
 * examples, every malformed form the spec names, later versions, tracestate, new ids; and the
 * job body's optional trace fields (lv_jobmsg.c), an old body without them still decoding. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "lv_common.h"
#include "lv_jobmsg.h"
#include "lv_rand.h"
#include "lv_traceparent.h"

/* the example of the spec, section 3.2.4 */
#define EX_TRACE "4bf92f3577b34da6a3ce929d0e0e4736"
#define EX_PARENT "00f067aa0ba902b7"
#define EX "00-" EX_TRACE "-" EX_PARENT "-01"

static int parse(const char *s, lv_traceparent_t *tp) { return lv_traceparent_parse(s, strlen(s), tp); }

static void parses_the_example(void **state)
{
    (void)state;
    lv_traceparent_t tp;
    assert_int_equal(parse(EX, &tp), 0);
    assert_int_equal(tp.version, 0);
    assert_string_equal(tp.trace_id, EX_TRACE);
    assert_string_equal(tp.parent_id, EX_PARENT);
    assert_int_equal(tp.flags, 1);
    assert_int_equal(parse("00-" EX_TRACE "-" EX_PARENT "-00", &tp), 0);
    assert_int_equal(tp.flags, 0);
    assert_int_equal(parse("00-" EX_TRACE "-" EX_PARENT "-ff", &tp), 0); /* unknown flags are kept */
    assert_int_equal(tp.flags, 0xff);
}

static void refuses_malformed(void **state)
{
    (void)state;
    static const char *bad[] = {
        "",
        "00",
        "00-" EX_TRACE "-" EX_PARENT "-0",                        /* short */
        "00-" EX_TRACE "-" EX_PARENT "-01-",                      /* version 00 is exactly 55 */
        "00-" EX_TRACE "-" EX_PARENT "-01x",
        " 00-" EX_TRACE "-" EX_PARENT "-0",
        "00-00000000000000000000000000000000-" EX_PARENT "-01", /* all-zero trace id */
        "00-" EX_TRACE "-0000000000000000-01",                    /* all-zero parent id */
        "ff-" EX_TRACE "-" EX_PARENT "-01",                       /* version ff */
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-" EX_PARENT "-01", /* upper case */
        "00-" EX_TRACE "-00F067AA0BA902B7-01",
        "00-" EX_TRACE "-" EX_PARENT "-0A",
        "0g-" EX_TRACE "-" EX_PARENT "-01",
        "00_" EX_TRACE "-" EX_PARENT "-01",                       /* separators */
        "00-" EX_TRACE "_" EX_PARENT "-01",
        "00-" EX_TRACE "-" EX_PARENT "_01",
        "00-4bf92f3577b34da6a3ce929d0e0e473-" EX_PARENT "0-01",  /* fields shifted */
        "00-" EX_TRACE "-" EX_PARENT "-zz",
        "01-" EX_TRACE "-" EX_PARENT "-01x",                      /* later version: after 55, only "-" */
    };
    for (size_t i = 0; i < LV_ARRAY_LEN(bad); i++) {
        lv_traceparent_t tp;
        memset(&tp, 0x55, sizeof(tp));
        assert_int_equal(parse(bad[i], &tp), LV_EINVAL);
        assert_string_equal(tp.trace_id, ""); /* zeroed on failure */
    }
    /* a NUL inside the length given is not a digit */
    char withnul[] = EX;
    withnul[10] = '\0';
    lv_traceparent_t tp;
    assert_int_equal(lv_traceparent_parse(withnul, sizeof(withnul) - 1, &tp), LV_EINVAL);
    assert_int_equal(lv_traceparent_parse(NULL, 55, &tp), LV_EINVAL);
    assert_int_equal(lv_traceparent_parse(EX, 55, NULL), LV_EINVAL);
}

static void later_versions_read_as_00(void **state)
{
    (void)state;
    lv_traceparent_t tp;
    assert_int_equal(parse("cc-" EX_TRACE "-" EX_PARENT "-01", &tp), 0);
    assert_int_equal(tp.version, 0xcc);
    assert_string_equal(tp.trace_id, EX_TRACE);
    assert_int_equal(parse("cc-" EX_TRACE "-" EX_PARENT "-01-what-the-future-holds", &tp), 0);
    assert_string_equal(tp.parent_id, EX_PARENT);
}

static void formats_and_round_trips(void **state)
{
    (void)state;
    char out[LV_TRACEPARENT_LEN + 1];
    assert_int_equal(lv_traceparent_format(EX_TRACE, EX_PARENT, 1, out, sizeof(out)), 0);
    assert_string_equal(out, EX);
    lv_traceparent_t tp;
    assert_int_equal(parse(out, &tp), 0);
    /* invalid ids and a small buffer are refused */
    assert_int_equal(lv_traceparent_format("00000000000000000000000000000000", EX_PARENT, 1, out, sizeof(out)),
                     LV_EINVAL);
    assert_int_equal(lv_traceparent_format(EX_TRACE, "0000000000000000", 1, out, sizeof(out)), LV_EINVAL);
    assert_int_equal(lv_traceparent_format(EX_TRACE "0", EX_PARENT, 1, out, sizeof(out)), LV_EINVAL);
    assert_int_equal(lv_traceparent_format(EX_TRACE, EX_PARENT, 1, out, sizeof(out) - 1), LV_EINVAL);
}

static void new_ids(void **state)
{
    (void)state;
    char a[LV_TRACE_ID_HEX + 1], b[LV_TRACE_ID_HEX + 1], span[LV_SPAN_ID_HEX + 1];
    assert_int_equal(lv_trace_new_id(a, sizeof(a), LV_TRACE_ID_HEX), 0);
    assert_int_equal(lv_trace_new_id(b, sizeof(b), LV_TRACE_ID_HEX), 0);
    assert_true(lv_trace_id_valid(a, strlen(a), LV_TRACE_ID_HEX));
    assert_string_not_equal(a, b);
    assert_int_equal(lv_trace_new_id(span, sizeof(span), LV_SPAN_ID_HEX), 0);
    assert_true(lv_trace_id_valid(span, strlen(span), LV_SPAN_ID_HEX));
    assert_int_equal(lv_trace_new_id(span, LV_SPAN_ID_HEX, LV_SPAN_ID_HEX), LV_EINVAL); /* no room for NUL */
    assert_int_equal(lv_trace_new_id(span, sizeof(span), 15), LV_EINVAL);
}

/* lv_rand_fast_hex, which new ids come from: no repeats over many draws, every byte position
 * takes many values (a generator stuck on one byte would still give distinct strings), each thread
 * its own sequence, and the same size checks as lv_rand_hex. */
#define FAST_N 4096
static char fast_ids[FAST_N][17];

static int cmp_id(const void *a, const void *b) { return strcmp(a, b); }

static void *draw_one(void *arg)
{
    lv_rand_fast_hex(arg, 17, 8);
    return NULL;
}

static void fast_ids_unique(void **state)
{
    (void)state;
    for (int i = 0; i < FAST_N; i++) {
        assert_int_equal(lv_rand_fast_hex(fast_ids[i], sizeof(fast_ids[i]), 8), 0);
        assert_int_equal(strspn(fast_ids[i], "0123456789abcdef"), 16);
    }
    for (int pos = 0; pos < 16; pos++) {
        int seen[16] = {0}, kinds = 0;
        for (int i = 0; i < FAST_N; i++) {
            int d = fast_ids[i][pos] <= '9' ? fast_ids[i][pos] - '0' : fast_ids[i][pos] - 'a' + 10;
            kinds += !seen[d]++;
        }
        assert_int_equal(kinds, 16);
    }
    qsort(fast_ids, FAST_N, sizeof(fast_ids[0]), cmp_id);
    for (int i = 1; i < FAST_N; i++)
        assert_string_not_equal(fast_ids[i - 1], fast_ids[i]);
    /* a new thread starts from a seed of its own, not from this thread's sequence */
    char mine[17], other[17];
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, draw_one, other), 0);
    pthread_join(t, NULL);
    assert_int_equal(lv_rand_fast_hex(mine, sizeof(mine), 8), 0);
    assert_string_not_equal(mine, other);
    assert_int_equal(strlen(other), 16);
    char odd[4];
    assert_int_equal(lv_rand_fast_hex(odd, sizeof(odd), 2), LV_EINVAL); /* 4 digits + NUL do not fit */
    assert_int_equal(lv_rand_fast_hex(odd, sizeof(odd), 1), 0);
    assert_int_equal(strlen(odd), 2);
}

static void tracestate_checks(void **state)
{
    (void)state;
    assert_true(lv_tracestate_ok("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE", 39));
    assert_false(lv_tracestate_ok("", 0));
    assert_false(lv_tracestate_ok("a=b\r\nx-evil: 1", 14));
    assert_false(lv_tracestate_ok("a=\x7f", 3));
    assert_false(lv_tracestate_ok("a=\xc3\xa9", 4)); /* not ASCII */
    char big[LV_TRACESTATE_MAX + 2];
    memset(big, 'a', sizeof(big));
    assert_true(lv_tracestate_ok(big, LV_TRACESTATE_MAX));
    assert_false(lv_tracestate_ok(big, LV_TRACESTATE_MAX + 1));
}

/* the job body: the trace rides along, an old body (no trace fields) still decodes */
static void job_body_trace(void **state)
{
    (void)state;
    static const unsigned char jpeg[] = {0xff, 0xd8, 0xff, 0xd9};
    lv_jobmsg_t j, back;
    memset(&j, 0, sizeof(j));
    snprintf(j.id, sizeof(j.id), "job-1");
    snprintf(j.frontend, sizeof(j.frontend), "fe1");
    snprintf(j.session, sizeof(j.session), "0123456789abcdef0123456789abcdef");
    snprintf(j.user, sizeof(j.user), "u:alice");
    j.weight = 1;
    j.answer_id = 7;
    lv_settings_defaults(&j.settings);
    j.jpeg = jpeg;
    j.jpeg_len = sizeof(jpeg);
    lv_buf_t b;
    lv_buf_init(&b, 1 << 20);
    /* no trace: no field, and it parses with none */
    assert_int_equal(lv_jobmsg_encode(&j, &b), 0);
    assert_null(memmem(b.data, b.len, "\"tr\"", 4));
    assert_int_equal(lv_jobmsg_parse(b.data, b.len, &back, NULL), 0);
    assert_string_equal(back.trace.trace_id, "");
    /* with a trace and a tracestate */
    snprintf(j.trace.trace_id, sizeof(j.trace.trace_id), "%s", EX_TRACE);
    snprintf(j.trace.state, sizeof(j.trace.state), "rojo=00f067aa0ba902b7");
    lv_buf_reset(&b);
    assert_int_equal(lv_jobmsg_encode(&j, &b), 0);
    assert_int_equal(lv_jobmsg_parse(b.data, b.len, &back, NULL), 0);
    assert_string_equal(back.trace.trace_id, EX_TRACE);
    assert_string_equal(back.trace.state, "rojo=00f067aa0ba902b7");
    /* an invalid trace id is not written out */
    snprintf(j.trace.trace_id, sizeof(j.trace.trace_id), "%s", "NOTHEX");
    lv_buf_reset(&b);
    assert_int_equal(lv_jobmsg_encode(&j, &b), LV_EINVAL);
    assert_int_equal(b.len, 0);
    lv_buf_free(&b);
}

/* a body with a trace field that is not one is refused with a reason */
static void job_body_bad_trace(void **state)
{
    (void)state;
    static const char *hdrs[] = {
        "{\"id\":\"j\",\"fe\":\"f\",\"sid\":\"0123456789abcdef0123456789abcdef\",\"user\":\"u\",\"w\":1,\"aid\":1,"
        "\"enq\":0,\"dl\":0,\"age\":0,\"st\":{},\"tr\":\"00000000000000000000000000000000\"}",
        "{\"id\":\"j\",\"fe\":\"f\",\"sid\":\"0123456789abcdef0123456789abcdef\",\"user\":\"u\",\"w\":1,\"aid\":1,"
        "\"enq\":0,\"dl\":0,\"age\":0,\"st\":{},\"tr\":5}",
        "{\"id\":\"j\",\"fe\":\"f\",\"sid\":\"0123456789abcdef0123456789abcdef\",\"user\":\"u\",\"w\":1,\"aid\":1,"
        "\"enq\":0,\"dl\":0,\"age\":0,\"st\":{},\"ts\":\"a=b\"}",
        "{\"id\":\"j\",\"fe\":\"f\",\"sid\":\"0123456789abcdef0123456789abcdef\",\"user\":\"u\",\"w\":1,\"aid\":1,"
        "\"enq\":0,\"dl\":0,\"age\":0,\"st\":{},\"tr\":\"" EX_TRACE "\",\"ts\":\"a\\nb\"}",
    };
    for (size_t i = 0; i < LV_ARRAY_LEN(hdrs); i++) {
        unsigned char body[1024];
        size_t n = strlen(hdrs[i]);
        memcpy(body, "LVJ1", 4);
        body[4] = 0, body[5] = 0, body[6] = (unsigned char)(n >> 8), body[7] = (unsigned char)n;
        memcpy(body + 8, hdrs[i], n);
        body[8 + n] = 0xff;
        lv_jobmsg_t out;
        const char *why = NULL;
        int rc = lv_jobmsg_parse(body, 8 + n + 1, &out, &why);
        assert_true(rc == LV_EINVAL || rc == LV_EPARSE);
        assert_non_null(why);
        assert_non_null(strstr(why, "trace")); /* refused for its trace, not for something else */
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parses_the_example),      cmocka_unit_test(refuses_malformed),
        cmocka_unit_test(later_versions_read_as_00), cmocka_unit_test(formats_and_round_trips),
        cmocka_unit_test(new_ids),                 cmocka_unit_test(fast_ids_unique),
        cmocka_unit_test(tracestate_checks),
        cmocka_unit_test(job_body_trace),          cmocka_unit_test(job_body_bad_trace),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

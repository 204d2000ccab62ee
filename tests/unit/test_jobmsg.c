/* test_jobmsg.c - the cluster's job body and job events (lv_jobmsg.h): round trips of every field
 * with a real JPEG, and every refusal: the framing (magic, header length, caps), each required
 * field missing or of the wrong type, bad ids and ranges, bad settings, unknown event types, text
 * caps, invalid UTF-8 on encode, trailing bytes. */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lv_buf.h"
#include "lv_common.h"
#include "lv_jobmsg.h"

#define SID "0123456789abcdef0123456789abcdef"

static unsigned char *jpeg; /* tests/data/frame-320x240.jpg */
static size_t jpeg_len;

/* ---------- fixture ---------- */

static int load_jpeg(void **state)
{
    (void)state;
    const char *name = "frame-320x240.jpg";
    char paths[3][1100], exe[900];
    size_t n_paths = 0;
    snprintf(paths[n_paths++], sizeof paths[0], "tests/data/%s", name);
    const char *env = getenv("LV_TEST_DATA");
    if (env)
        snprintf(paths[n_paths++], sizeof paths[0], "%.1000s/%s", env, name);
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash)
            *slash = '\0';
        snprintf(paths[n_paths++], sizeof paths[0], "%.900s/../../tests/data/%s", exe, name);
    }
    for (size_t i = 0; i < n_paths; i++) {
        FILE *f = fopen(paths[i], "rb");
        if (!f)
            continue;
        jpeg = malloc(1 << 20);
        jpeg_len = jpeg ? fread(jpeg, 1, 1 << 20, f) : 0;
        fclose(f);
        return jpeg_len > 2 && jpeg[0] == 0xFF && jpeg[1] == 0xD8 ? 0 : -1;
    }
    fprintf(stderr, "tests/data/%s not found (run from the repository root)\n", name);
    return -1;
}

static int free_jpeg(void **state)
{
    (void)state;
    free(jpeg);
    return 0;
}

/* ---------- helpers ---------- */

/* Every field away from its default, strings that need escaping included. */
static void make_job(lv_jobmsg_t *j)
{
    memset(j, 0, sizeof(*j));
    snprintf(j->id, sizeof(j->id), "fe-a:17.42_x");
    snprintf(j->frontend, sizeof(j->frontend), "fe-a");
    snprintf(j->session, sizeof(j->session), "%s", SID);
    snprintf(j->user, sizeof(j->user), "2001:db8::7");
    j->weight = 250;
    j->answer_id = 12345678901234ull;
    j->enq_wall_ms = 1700000000123ull;
    j->deadline_wall_ms = 1700000002123ull;
    j->capture_age_ms = 3456;
    lv_settings_defaults(&j->settings);
    snprintf(j->settings.prompt, sizeof(j->settings.prompt), "Say \"what\" you see,\tplease:\nÉté 🌞 \\ end");
    j->settings.max_tokens = 77;
    j->settings.temperature = 0.35;
    j->settings.interval_ms = 2500;
    snprintf(j->settings.backend, sizeof(j->settings.backend), "gpu-1");
    snprintf(j->settings.model, sizeof(j->settings.model), "org/model:tag-é");
    j->settings.frame_max_side = 1024;
    j->settings.jpeg_quality = 55;
    j->settings.stats_interval_ms = 0;
    j->settings.debug = true;
    snprintf(j->settings.source, sizeof(j->settings.source), "camera:lobby");
    j->jpeg = jpeg;
    j->jpeg_len = jpeg_len;
}

static void assert_settings_equal(const lv_settings_t *a, const lv_settings_t *b)
{
    assert_string_equal(a->prompt, b->prompt);
    assert_int_equal(a->max_tokens, b->max_tokens);
    assert_true(a->temperature == b->temperature);
    assert_int_equal(a->interval_ms, b->interval_ms);
    assert_string_equal(a->backend, b->backend);
    assert_string_equal(a->model, b->model);
    assert_int_equal(a->frame_max_side, b->frame_max_side);
    assert_int_equal(a->jpeg_quality, b->jpeg_quality);
    assert_int_equal(a->stats_interval_ms, b->stats_interval_ms);
    assert_int_equal(a->debug, b->debug);
    assert_string_equal(a->source, b->source);
    assert_string_equal(a->allow_backends, b->allow_backends);
}

static void assert_job_equal(const lv_jobmsg_t *a, const lv_jobmsg_t *b)
{
    assert_string_equal(a->id, b->id);
    assert_string_equal(a->frontend, b->frontend);
    assert_string_equal(a->session, b->session);
    assert_string_equal(a->user, b->user);
    assert_int_equal(a->weight, b->weight);
    assert_true(a->answer_id == b->answer_id);
    assert_true(a->enq_wall_ms == b->enq_wall_ms);
    assert_true(a->deadline_wall_ms == b->deadline_wall_ms);
    assert_int_equal(a->capture_age_ms, b->capture_age_ms);
    assert_settings_equal(&a->settings, &b->settings);
    assert_int_equal(a->jpeg_len, b->jpeg_len);
    assert_memory_equal(a->jpeg, b->jpeg, a->jpeg_len);
}

static void encode_ok(const lv_jobmsg_t *j, lv_buf_t *out)
{
    lv_buf_init(out, LV_JOBMSG_HDR_MAX + LV_JOBMSG_JPEG_MAX + 64);
    assert_int_equal(lv_jobmsg_encode(j, out), 0);
}

/* A body made by hand: magic, the given header length, the header bytes, then the frame. */
static void raw_body(lv_buf_t *out, const char *magic, uint32_t hdr_len_field, const char *hdr, size_t hdr_len,
                     const void *frame, size_t frame_len)
{
    unsigned char be[4] = {(unsigned char)(hdr_len_field >> 24), (unsigned char)(hdr_len_field >> 16),
                           (unsigned char)(hdr_len_field >> 8), (unsigned char)hdr_len_field};
    lv_buf_init(out, LV_JOBMSG_HDR_MAX + LV_JOBMSG_JPEG_MAX + 64);
    assert_int_equal(lv_buf_append(out, magic, 4), 0);
    assert_int_equal(lv_buf_append(out, be, 4), 0);
    assert_int_equal(lv_buf_append(out, hdr, hdr_len), 0);
    assert_int_equal(lv_buf_append(out, frame, frame_len), 0);
}

/* The valid header of make_job as a jansson object, to be altered by a test. */
static json_t *valid_header(void)
{
    lv_jobmsg_t j;
    lv_buf_t b;
    make_job(&j);
    encode_ok(&j, &b);
    uint32_t h = (uint32_t)(unsigned char)b.data[4] << 24 | (uint32_t)(unsigned char)b.data[5] << 16 |
                 (uint32_t)(unsigned char)b.data[6] << 8 | (uint32_t)(unsigned char)b.data[7];
    json_t *o = json_loadb(b.data + 8, h, 0, NULL);
    assert_non_null(o);
    lv_buf_free(&b);
    return o;
}

/* Parse a body whose header is the JSON text hdr and whose frame is the fixture. Checks that a
 * failure has a reason and leaves the result zeroed. */
static int parse_header_text(const char *hdr, size_t hdr_len, lv_jobmsg_t *out, const char **why)
{
    lv_buf_t b;
    raw_body(&b, LV_JOBMSG_MAGIC, (uint32_t)hdr_len, hdr, hdr_len, jpeg, jpeg_len);
    *why = NULL;
    int rc = lv_jobmsg_parse(b.data, b.len, out, why);
    if (rc) {
        static const lv_jobmsg_t zero;
        if (!*why)
            fail_msg("rc %d without a reason for %.*s", rc, (int)LV_MIN(hdr_len, 300), hdr);
        assert_memory_equal(out, &zero, sizeof(*out));
    }
    lv_buf_free(&b);
    return rc;
}

/* Parse a header object (stolen) and expect rc with a reason containing why_has. */
static void header_refused(json_t *hdr, int want_rc, const char *why_has)
{
    char *text = json_dumps(hdr, JSON_COMPACT);
    assert_non_null(text);
    lv_jobmsg_t out;
    const char *why;
    int rc = parse_header_text(text, strlen(text), &out, &why);
    if (rc != want_rc || !strstr(why, why_has))
        fail_msg("%.300s: rc %d why \"%s\" (want %d, \"%s\")", text, rc, why ? why : "(null)", want_rc, why_has);
    free(text);
    json_decref(hdr);
}

static json_t *header_with(const char *key, json_t *value)
{
    json_t *o = valid_header();
    assert_int_equal(json_object_set_new(o, key, value), 0);
    return o;
}

/* ---------- jobs ---------- */

static void job_round_trip(void **state)
{
    (void)state;
    lv_jobmsg_t j, got;
    lv_buf_t b;
    const char *why = "unset";
    make_job(&j);
    encode_ok(&j, &b);
    assert_memory_equal(b.data, "LVJ1", 4);
    uint32_t h = (uint32_t)(unsigned char)b.data[4] << 24 | (uint32_t)(unsigned char)b.data[5] << 16 |
                 (uint32_t)(unsigned char)b.data[6] << 8 | (uint32_t)(unsigned char)b.data[7];
    assert_true(h > 0 && h <= LV_JOBMSG_HDR_MAX);
    assert_int_equal(b.len, 8 + h + jpeg_len);
    assert_int_equal(b.data[8], '{');
    assert_int_equal(b.data[8 + h - 1], '}');
    assert_memory_equal(b.data + 8 + h, jpeg, jpeg_len);

    assert_int_equal(lv_jobmsg_parse(b.data, b.len, &got, &why), 0);
    assert_null(why);
    assert_job_equal(&j, &got);
    /* the frame is a view into the parsed bytes, not a copy */
    assert_ptr_equal(got.jpeg, (const unsigned char *)b.data + 8 + h);
    lv_buf_free(&b);

    /* the edges of each number; the default settings; a one-byte frame */
    make_job(&j);
    j.weight = 1;
    j.answer_id = INT64_MAX;
    j.enq_wall_ms = 0;
    j.deadline_wall_ms = INT64_MAX;
    j.capture_age_ms = UINT32_MAX;
    lv_settings_defaults(&j.settings);
    j.jpeg_len = 1;
    encode_ok(&j, &b);
    assert_int_equal(lv_jobmsg_parse(b.data, b.len, &got, NULL), 0);
    assert_job_equal(&j, &got);
    lv_buf_free(&b);
    j.weight = 1000;
    snprintf(j.id, sizeof(j.id), "%.*s", LV_JOB_ID_MAX,
             "0123456789012345678901234567890123456789012345678901234567890123456789");
    memset(j.frontend, 'F', LV_NODE_ID_MAX);
    j.frontend[LV_NODE_ID_MAX] = '\0';
    memset(j.user, 'u', LV_PRINCIPAL_KEY_MAX - 1);
    j.user[LV_PRINCIPAL_KEY_MAX - 1] = '\0';
    encode_ok(&j, &b);
    assert_int_equal(lv_jobmsg_parse(b.data, b.len, &got, NULL), 0);
    assert_job_equal(&j, &got);
    assert_int_equal(strlen(got.id), LV_JOB_ID_MAX);
    lv_buf_free(&b);
}

/* Encode appends: what the buffer held stays in front. */
static void job_encode_appends(void **state)
{
    (void)state;
    lv_jobmsg_t j, got;
    lv_buf_t b;
    make_job(&j);
    lv_buf_init(&b, 1 << 20);
    assert_int_equal(lv_buf_append(&b, "abc", 3), 0);
    assert_int_equal(lv_jobmsg_encode(&j, &b), 0);
    assert_memory_equal(b.data, "abcLVJ1", 7);
    assert_int_equal(lv_jobmsg_parse(b.data + 3, b.len - 3, &got, NULL), 0);
    assert_job_equal(&j, &got);
    lv_buf_free(&b);
}

/* A job the encoder refuses: the code, and the buffer exactly as it was. */
static void encode_refused(const lv_jobmsg_t *j, int want_rc, size_t cap, const char *what)
{
    lv_buf_t b;
    lv_buf_init(&b, cap);
    assert_int_equal(lv_buf_append(&b, "keep", 4), 0);
    int rc = lv_jobmsg_encode(j, &b);
    if (rc != want_rc)
        fail_msg("%s: rc %d, want %d", what, rc, want_rc);
    assert_int_equal(b.len, 4);
    assert_memory_equal(b.data, "keep", 4);
    lv_buf_free(&b);
}

static void job_encode_refusals(void **state)
{
    (void)state;
    lv_jobmsg_t j;
    const size_t big = 1 << 20;
#define REFUSE(mutation, want)                                                                                         \
    do {                                                                                                               \
        make_job(&j);                                                                                                  \
        mutation;                                                                                                      \
        encode_refused(&j, want, big, #mutation);                                                                      \
    } while (0)
    REFUSE(j.id[0] = '\0', LV_EINVAL);
    REFUSE(j.id[3] = '/', LV_EINVAL);
    REFUSE(j.id[3] = ' ', LV_EINVAL);
    REFUSE(memset(j.id, 'a', sizeof(j.id)), LV_EINVAL); /* no NUL within its array */
    REFUSE(j.frontend[0] = '\0', LV_EINVAL);
    REFUSE(j.frontend[1] = '"', LV_EINVAL);
    REFUSE(memset(j.frontend, 'a', sizeof(j.frontend)), LV_EINVAL);
    REFUSE(j.session[0] = 'A', LV_EINVAL);
    REFUSE(j.session[0] = 'g', LV_EINVAL);
    REFUSE(j.session[31] = '\0', LV_EINVAL);
    REFUSE(j.user[0] = '\0', LV_EINVAL);
    REFUSE(j.user[2] = '"', LV_EINVAL);
    REFUSE(memset(j.user, 'u', sizeof(j.user)), LV_EINVAL);
    REFUSE(j.weight = 0, LV_EINVAL);
    REFUSE(j.weight = 1001, LV_EINVAL);
    REFUSE(j.answer_id = (uint64_t)INT64_MAX + 1, LV_EINVAL);
    REFUSE(j.enq_wall_ms = UINT64_MAX, LV_EINVAL);
    REFUSE(j.deadline_wall_ms = UINT64_MAX, LV_EINVAL);
    REFUSE(j.jpeg_len = 0, LV_EINVAL);
    REFUSE(j.jpeg = NULL, LV_EINVAL);
    REFUSE(j.jpeg_len = LV_JOBMSG_JPEG_MAX + 1, LV_EINVAL); /* refused before a byte is read */
    /* settings the worker's checks would refuse do not go out */
    REFUSE(j.settings.max_tokens = 0, LV_EINVAL);
    REFUSE(j.settings.temperature = NAN, LV_EINVAL);
    REFUSE(snprintf(j.settings.source, sizeof(j.settings.source), "disk"), LV_EINVAL);
    REFUSE(j.settings.prompt[0] = '\xff', LV_EINVAL);
    REFUSE(snprintf(j.settings.model, sizeof(j.settings.model), "a\xc3"), LV_EINVAL);
    REFUSE(memset(j.settings.backend, 'b', sizeof(j.settings.backend)), LV_EINVAL);
#undef REFUSE
    /* the largest header legal settings make (a prompt of control characters, each written as
     * \u00XX) fits under the cap: any session's job can be queued, and reads back the same */
    make_job(&j);
    memset(j.settings.prompt, '\x01', LV_PROMPT_MAX);
    j.settings.prompt[LV_PROMPT_MAX] = '\0';
    lv_buf_t hdr_buf;
    lv_buf_init(&hdr_buf, 1u << 20);
    assert_int_equal(lv_jobmsg_encode(&j, &hdr_buf), 0);
    lv_jobmsg_t back;
    const char *why = NULL;
    assert_int_equal(lv_jobmsg_parse(hdr_buf.data, hdr_buf.len, &back, &why), 0);
    assert_string_equal(back.settings.prompt, j.settings.prompt);
    lv_buf_free(&hdr_buf);
    /* the output's own cap */
    make_job(&j);
    encode_refused(&j, LV_ELIMIT, 4 + 8 + 100, "tiny output cap");
    encode_refused(&j, LV_ELIMIT, 4 + jpeg_len, "cap short of the frame");
}

static void job_parse_framing(void **state)
{
    (void)state;
    lv_jobmsg_t j, got;
    lv_buf_t b, raw;
    const char *why;
    make_job(&j);
    encode_ok(&j, &b);
    size_t h = b.len - 8 - jpeg_len;

    /* every prefix shorter than the whole is refused (the frame needs at least one byte) */
    for (size_t n = 0; n <= 8 + h; n++) {
        why = NULL;
        int rc = lv_jobmsg_parse(b.data, n, &got, &why);
        if (rc == 0 || !why)
            fail_msg("prefix of %zu bytes: rc %d", n, rc);
    }
    assert_int_equal(lv_jobmsg_parse(b.data, 7, &got, NULL), LV_EPARSE); /* why may be NULL */
    assert_int_equal(lv_jobmsg_parse(b.data, 7, &got, &why), LV_EPARSE);
    assert_non_null(strstr(why, "shorter"));
    assert_int_equal(lv_jobmsg_parse(b.data, 8 + h, &got, &why), LV_EPARSE);
    assert_non_null(strstr(why, "no frame"));

    /* bad magic */
    raw_body(&raw, "LVJ2", (uint32_t)h, b.data + 8, h, jpeg, jpeg_len);
    assert_int_equal(lv_jobmsg_parse(raw.data, raw.len, &got, &why), LV_EPARSE);
    assert_non_null(strstr(why, "LVJ1"));
    lv_buf_free(&raw);
    raw_body(&raw, "lvj1", (uint32_t)h, b.data + 8, h, jpeg, jpeg_len);
    assert_int_equal(lv_jobmsg_parse(raw.data, raw.len, &got, &why), LV_EPARSE);
    lv_buf_free(&raw);

    /* a header length past the data; one byte short of it still parses as a header */
    raw_body(&raw, "LVJ1", (uint32_t)(h + jpeg_len + 1), b.data + 8, h, jpeg, jpeg_len);
    assert_int_equal(lv_jobmsg_parse(raw.data, raw.len, &got, &why), LV_EPARSE);
    assert_non_null(strstr(why, "past its end"));
    lv_buf_free(&raw);
    raw_body(&raw, "LVJ1", 0xFFFFFFFFu, b.data + 8, h, jpeg, jpeg_len);
    assert_int_equal(lv_jobmsg_parse(raw.data, raw.len, &got, &why), LV_ELIMIT);
    lv_buf_free(&raw);
    /* a header length that takes the frame's first bytes: the header is no longer JSON */
    raw_body(&raw, "LVJ1", (uint32_t)(h + 2), b.data + 8, h, jpeg, jpeg_len);
    assert_int_equal(lv_jobmsg_parse(raw.data, raw.len, &got, &why), LV_EPARSE);
    assert_non_null(strstr(why, "not a JSON object"));
    lv_buf_free(&raw);

    /* a header over the cap, even with the data there: whitespace padding keeps it JSON */
    {
        size_t pad = LV_JOBMSG_HDR_MAX + 1 - h;
        char *hdr = malloc(LV_JOBMSG_HDR_MAX + 1);
        assert_non_null(hdr);
        memcpy(hdr, b.data + 8, h);
        memset(hdr + h, ' ', pad);
        raw_body(&raw, "LVJ1", LV_JOBMSG_HDR_MAX + 1, hdr, LV_JOBMSG_HDR_MAX + 1, jpeg, jpeg_len);
        assert_int_equal(lv_jobmsg_parse(raw.data, raw.len, &got, &why), LV_ELIMIT);
        assert_non_null(strstr(why, "header is longer than the cap"));
        lv_buf_free(&raw);
        /* exactly at the cap it is fine */
        raw_body(&raw, "LVJ1", LV_JOBMSG_HDR_MAX, hdr, LV_JOBMSG_HDR_MAX, jpeg, jpeg_len);
        assert_int_equal(lv_jobmsg_parse(raw.data, raw.len, &got, &why), 0);
        assert_job_equal(&j, &got);
        lv_buf_free(&raw);
        free(hdr);
    }

    /* a frame over the cap; at the cap it is fine */
    {
        unsigned char *frame = calloc(1, LV_JOBMSG_JPEG_MAX + 1);
        assert_non_null(frame);
        raw_body(&raw, "LVJ1", (uint32_t)h, b.data + 8, h, frame, LV_JOBMSG_JPEG_MAX + 1);
        assert_int_equal(lv_jobmsg_parse(raw.data, raw.len, &got, &why), LV_ELIMIT);
        assert_non_null(strstr(why, "frame"));
        assert_int_equal(lv_jobmsg_parse(raw.data, raw.len - 1, &got, &why), 0);
        assert_int_equal(got.jpeg_len, LV_JOBMSG_JPEG_MAX);
        lv_buf_free(&raw);
        free(frame);
    }

    /* bytes after the header's object, inside its length */
    {
        char hdr[LV_JOBMSG_HDR_MAX];
        memcpy(hdr, b.data + 8, h);
        memcpy(hdr + h, " {}", 3);
        assert_int_equal(parse_header_text(hdr, h + 3, &got, &why), LV_EPARSE);
        memcpy(hdr + h, " \n\t", 3); /* whitespace is JSON's own */
        assert_int_equal(parse_header_text(hdr, h + 3, &got, &why), 0);
    }
    assert_int_equal(parse_header_text("[]", 2, &got, &why), LV_EPARSE);
    assert_int_equal(parse_header_text("", 0, &got, &why), LV_EPARSE);
    assert_int_equal(parse_header_text("{\"id\":", 6, &got, &why), LV_EPARSE);
    lv_buf_free(&b);
}

/* Every top-level header field is required; each missing, and each with a value of the wrong type. */
static void job_parse_fields(void **state)
{
    (void)state;
    json_t *tmpl = valid_header();
    const char *key;
    json_t *value;
    size_t n_keys = 0;
    json_object_foreach(tmpl, key, value)
    {
        json_t *o = json_deep_copy(tmpl);
        assert_int_equal(json_object_del(o, key), 0);
        header_refused(o, LV_EPARSE, "missing");
        o = json_deep_copy(tmpl);
        json_t *wrong = json_is_string(value) ? json_integer(1) : json_string("1");
        assert_int_equal(json_object_set_new(o, key, wrong), 0);
        header_refused(o, LV_EPARSE, "");
        o = json_deep_copy(tmpl);
        assert_int_equal(json_object_set_new(o, key, json_null()), 0);
        header_refused(o, LV_EPARSE, "");
        n_keys++;
    }
    assert_int_equal(n_keys, 10); /* id fe sid user w aid enq dl age st */
    json_decref(tmpl);

    /* numbers that are not integers */
    header_refused(header_with("w", json_real(2.0)), LV_EPARSE, "weight");
    header_refused(header_with("aid", json_real(1.5)), LV_EPARSE, "answer id");
    header_refused(header_with("age", json_true()), LV_EPARSE, "capture age");
    header_refused(header_with("st", json_array()), LV_EPARSE, "settings");
}

static void job_parse_values(void **state)
{
    (void)state;
    char long_id[LV_JOB_ID_MAX + 2];
    memset(long_id, 'a', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';

    header_refused(header_with("id", json_string("")), LV_EINVAL, "job's id");
    header_refused(header_with("id", json_string("a b")), LV_EINVAL, "job's id");
    header_refused(header_with("id", json_string("a/b")), LV_EINVAL, "job's id");
    header_refused(header_with("id", json_string("é")), LV_EINVAL, "job's id");
    header_refused(header_with("id", json_string(long_id)), LV_EINVAL, "job's id");
    long_id[LV_JOB_ID_MAX] = '\0';
    json_t *ok = header_with("id", json_string(long_id));
    char *text = json_dumps(ok, JSON_COMPACT);
    lv_jobmsg_t got;
    const char *why;
    assert_int_equal(parse_header_text(text, strlen(text), &got, &why), 0);
    assert_string_equal(got.id, long_id);
    free(text);
    json_decref(ok);
    long_id[LV_NODE_ID_MAX + 1] = '\0';
    header_refused(header_with("fe", json_string(long_id)), LV_EINVAL, "frontend id");
    header_refused(header_with("fe", json_string("")), LV_EINVAL, "frontend id");
    header_refused(header_with("fe", json_string("fe\n")), LV_EINVAL, "frontend id");
    header_refused(header_with("sid", json_string("0123456789ABCDEF0123456789ABCDEF")), LV_EINVAL, "session id");
    header_refused(header_with("sid", json_string("0123456789abcdef0123456789abcde")), LV_EINVAL, "session id");
    header_refused(header_with("sid", json_string(SID "0")), LV_EINVAL, "session id");
    header_refused(header_with("sid", json_string("0123456789abcdef0123456789abcdeg")), LV_EINVAL, "session id");
    header_refused(header_with("user", json_string("")), LV_EINVAL, "user");
    header_refused(header_with("user", json_string("a b")), LV_EINVAL, "user");
    char long_user[LV_PRINCIPAL_KEY_MAX + 1];
    memset(long_user, 'u', LV_PRINCIPAL_KEY_MAX);
    long_user[LV_PRINCIPAL_KEY_MAX] = '\0';
    header_refused(header_with("user", json_string(long_user)), LV_EINVAL, "user");
    long_user[LV_PRINCIPAL_KEY_MAX - 1] = '\0'; /* 63 bytes and its NUL: fits */
    ok = header_with("user", json_string(long_user));
    text = json_dumps(ok, JSON_COMPACT);
    assert_int_equal(parse_header_text(text, strlen(text), &got, &why), 0);
    assert_string_equal(got.user, long_user);
    free(text);
    json_decref(ok);
}

static void job_parse_ranges(void **state)
{
    (void)state;
    header_refused(header_with("w", json_integer(0)), LV_EINVAL, "weight is not 1..1000");
    header_refused(header_with("w", json_integer(1001)), LV_EINVAL, "weight is not 1..1000");
    header_refused(header_with("w", json_integer(-1)), LV_EINVAL, "weight");
    header_refused(header_with("aid", json_integer(-1)), LV_EINVAL, "negative");
    header_refused(header_with("enq", json_integer(-5)), LV_EINVAL, "negative");
    header_refused(header_with("dl", json_integer(INT64_MIN)), LV_EINVAL, "negative");
    header_refused(header_with("age", json_integer(-1)), LV_EINVAL, "capture age");
    header_refused(header_with("age", json_integer((json_int_t)UINT32_MAX + 1)), LV_EINVAL, "capture age");

    /* a number past what jansson holds is not a header at all */
    json_t *o = valid_header();
    char *text = json_dumps(o, JSON_COMPACT);
    char *at = strstr(text, "\"aid\":");
    assert_non_null(at);
    size_t head = (size_t)(at - text) + 6;
    char *tail = strchr(at, ',');
    char patched[LV_JOBMSG_HDR_MAX];
    int n = snprintf(patched, sizeof patched, "%.*s18446744073709551615%s", (int)head, text, tail);
    lv_jobmsg_t got;
    const char *why;
    assert_int_equal(parse_header_text(patched, (size_t)n, &got, &why), LV_EPARSE);
    /* duplicate keys are refused (which one would count?) */
    n = snprintf(patched, sizeof patched, "%.*s,\"w\":6}", (int)(strlen(text) - 1), text);
    assert_int_equal(parse_header_text(patched, (size_t)n, &got, &why), LV_EPARSE);
    free(text);
    json_decref(o);

    /* settings: refused by the settings checks; absent fields take the defaults; unknown ones
     * (a newer frontend's) are ignored, at the top level too */
    header_refused(header_with("st", json_pack("{s:i}", "max_tokens", 0)), LV_EINVAL, "settings checks");
    header_refused(header_with("st", json_pack("{s:s}", "source", "disk")), LV_EINVAL, "settings checks");
    header_refused(header_with("st", json_pack("{s:s}", "prompt", "   ")), LV_EINVAL, "settings checks");
    header_refused(header_with("st", json_pack("{s:f}", "temperature", 2.5)), LV_EINVAL, "settings checks");
    o = header_with("st", json_pack("{s:i, s:[i]}", "max_tokens", 9, "future", 1));
    assert_int_equal(json_object_set_new(o, "zz", json_pack("{s:[i,i]}", "x", 1, 2)), 0);
    text = json_dumps(o, JSON_COMPACT);
    assert_int_equal(parse_header_text(text, strlen(text), &got, &why), 0);
    lv_settings_t want;
    lv_settings_defaults(&want);
    want.max_tokens = 9;
    assert_settings_equal(&got.settings, &want);
    assert_int_equal(got.weight, 250);
    free(text);
    json_decref(o);
}

/* Whether the JSON header of the encoded body b holds the text needle. */
static bool header_has(const lv_buf_t *b, const char *needle)
{
    uint32_t h = (uint32_t)(unsigned char)b->data[4] << 24 | (uint32_t)(unsigned char)b->data[5] << 16 |
                 (uint32_t)(unsigned char)b->data[6] << 8 | (uint32_t)(unsigned char)b->data[7];
    char *text = strndup(b->data + 8, h);
    assert_non_null(text);
    bool found = strstr(text, needle) != NULL;
    free(text);
    return found;
}

/* The tenant's allowed backends ("ab"): optional, written only when restricting; an older body
 * without it reads as "" (all); a value too long or with control characters is refused. */
static void job_allow_backends(void **state)
{
    (void)state;
    lv_jobmsg_t j, got;
    lv_buf_t b;
    const char *why = "unset";
    make_job(&j);
    snprintf(j.settings.allow_backends, sizeof(j.settings.allow_backends), " gpu-1, \"q\\é\" ,cpu");
    encode_ok(&j, &b);
    assert_true(header_has(&b, ",\"ab\":\" gpu-1, \\\"q\\\\é\\\" ,cpu\""));
    assert_int_equal(lv_jobmsg_parse(b.data, b.len, &got, &why), 0);
    assert_null(why);
    assert_job_equal(&j, &got);
    lv_buf_free(&b);

    /* the longest list fits and reads back */
    memset(j.settings.allow_backends, 'a', LV_ALLOWLIST_MAX - 1);
    j.settings.allow_backends[LV_ALLOWLIST_MAX - 1] = '\0';
    encode_ok(&j, &b);
    assert_int_equal(lv_jobmsg_parse(b.data, b.len, &got, NULL), 0);
    assert_int_equal(strlen(got.settings.allow_backends), LV_ALLOWLIST_MAX - 1);
    lv_buf_free(&b);

    /* "" is not written: the body is the one an older frontend sends, and reads back as "" */
    make_job(&j);
    encode_ok(&j, &b);
    assert_false(header_has(&b, "\"ab\""));
    memset(&got, 0x55, sizeof(got));
    assert_int_equal(lv_jobmsg_parse(b.data, b.len, &got, NULL), 0);
    assert_string_equal(got.settings.allow_backends, "");
    lv_buf_free(&b);

    /* the encoder refuses what the parser would */
    make_job(&j);
    memset(j.settings.allow_backends, 'a', sizeof(j.settings.allow_backends)); /* no NUL */
    encode_refused(&j, LV_EINVAL, 1 << 20, "allow list without its NUL");
    make_job(&j);
    snprintf(j.settings.allow_backends, sizeof(j.settings.allow_backends), "a,\tb");
    encode_refused(&j, LV_EINVAL, 1 << 20, "allow list with a tab");
    make_job(&j);
    snprintf(j.settings.allow_backends, sizeof(j.settings.allow_backends), "a\xc3");
    encode_refused(&j, LV_EINVAL, 1 << 20, "allow list not UTF-8");

    /* the parser: too long, control characters, not a string */
    char long_list[LV_ALLOWLIST_MAX + 1];
    memset(long_list, 'b', LV_ALLOWLIST_MAX);
    long_list[LV_ALLOWLIST_MAX] = '\0';
    header_refused(header_with("ab", json_string(long_list)), LV_EINVAL, "allowed backends");
    header_refused(header_with("ab", json_string("gpu-1,\ngpu-2")), LV_EINVAL, "control characters");
    header_refused(header_with("ab", json_string("gpu\x7f")), LV_EINVAL, "allowed backends");
    header_refused(header_with("ab", json_integer(1)), LV_EPARSE, "not a string");
    header_refused(header_with("ab", json_null()), LV_EPARSE, "not a string");
    header_refused(header_with("ab", json_pack("[s]", "gpu-1")), LV_EPARSE, "not a string");
    long_list[LV_ALLOWLIST_MAX - 1] = '\0'; /* 512 bytes: fits */
    json_t *ok = header_with("ab", json_string(long_list));
    char *text = json_dumps(ok, JSON_COMPACT);
    assert_int_equal(parse_header_text(text, strlen(text), &got, &why), 0);
    assert_string_equal(got.settings.allow_backends, long_list);
    free(text);
    json_decref(ok);
    /* the settings object cannot set it: only the header's field does (it is server-owned) */
    ok = header_with("st", json_pack("{s:s}", "allow_backends", "gpu-9"));
    text = json_dumps(ok, JSON_COMPACT);
    assert_int_equal(parse_header_text(text, strlen(text), &got, &why), 0);
    assert_string_equal(got.settings.allow_backends, "");
    free(text);
    json_decref(ok);
}

/* ---------- events ---------- */

static void make_done(lv_jobev_t *e)
{
    memset(e, 0, sizeof(*e));
    e->kind = LV_JOBEV_DONE;
    snprintf(e->job, sizeof(e->job), "fe-a:17.42");
    snprintf(e->worker, sizeof(e->worker), "w-2");
    snprintf(e->backend_id, sizeof(e->backend_id), "gpu-1");
    snprintf(e->model, sizeof(e->model), "org/model:tag \"é\"");
    e->text = "A cat\n\"sits\" on a mat \\ \x01 — 🐈";
    e->text_len = strlen(e->text);
    e->rc = LV_EBACKEND;
    snprintf(e->error_code, sizeof(e->error_code), "backend_error");
    snprintf(e->error_message, sizeof(e->error_message), "the backend said: \"no\"\n");
    e->tokens = 42;
    e->prompt_tokens = 1234;
    e->ttft_us = 123456789;
    e->streamed = true;
    e->shape_ms = 12.625;
    e->requeue = true;
    e->stale = true;
}

/* The fields that kind carries are equal; the others came back zero. */
static void assert_ev_equal(const lv_jobev_t *a, const lv_jobev_t *b)
{
    assert_int_equal(a->kind, b->kind);
    assert_string_equal(a->job, b->job);
    if (a->kind == LV_JOBEV_DELTA) {
        assert_string_equal(b->worker, "");
        assert_string_equal(b->backend_id, "");
        assert_string_equal(b->model, "");
    } else {
        assert_string_equal(a->worker, b->worker);
        assert_string_equal(a->backend_id, b->backend_id);
        assert_string_equal(a->model, b->model);
    }
    if (a->kind == LV_JOBEV_STARTED) {
        assert_true(a->ttft_floor_us == b->ttft_floor_us);
        assert_null(b->text);
        assert_int_equal(b->text_len, 0);
    } else {
        assert_true(b->ttft_floor_us == 0);
        assert_non_null(b->text);
        assert_int_equal(a->text_len, b->text_len);
        if (a->text_len)
            assert_memory_equal(a->text, b->text, a->text_len);
    }
    if (a->kind == LV_JOBEV_DONE) {
        assert_int_equal(a->rc, b->rc);
        assert_string_equal(a->error_code, b->error_code);
        assert_string_equal(a->error_message, b->error_message);
        assert_int_equal(a->tokens, b->tokens);
        assert_int_equal(a->prompt_tokens, b->prompt_tokens);
        assert_true(a->ttft_us == b->ttft_us);
        assert_int_equal(a->streamed, b->streamed);
        assert_true(a->shape_ms == b->shape_ms);
        assert_int_equal(a->requeue, b->requeue);
        assert_int_equal(a->stale, b->stale);
    } else {
        assert_int_equal(b->rc, 0);
        assert_string_equal(b->error_code, "");
        assert_int_equal(b->tokens, 0);
        assert_int_equal(b->prompt_tokens, 0);
        assert_int_equal(b->streamed || b->requeue || b->stale, 0);
    }
}

/* Encode e, parse it back and compare; returns the encoded JSON in *json (caller frees). */
static void ev_round_trip(const lv_jobev_t *e, char **json)
{
    lv_buf_t b, text;
    lv_jobev_t got;
    const char *why = "unset";
    lv_buf_init(&b, LV_JOBEV_MAX);
    lv_buf_init(&text, LV_JOBEV_TEXT_MAX);
    assert_int_equal(lv_jobev_encode(e, &b), 0);
    /* one compact line of JSON */
    assert_null(memchr(b.data, '\n', b.len));
    json_t *check = json_loadb(b.data, b.len, 0, NULL);
    assert_non_null(check);
    json_decref(check);
    assert_int_equal(lv_jobev_parse(b.data, b.len, &got, &text, &why), 0);
    assert_null(why);
    assert_ev_equal(e, &got);
    /* the text lives in the caller's buffer */
    if (e->kind != LV_JOBEV_STARTED && e->text_len)
        assert_ptr_equal(got.text, text.data);
    if (json) {
        *json = malloc(b.len + 1);
        memcpy(*json, b.data, b.len + 1);
    }
    lv_buf_free(&b);
    lv_buf_free(&text);
}

static void event_round_trips(void **state)
{
    (void)state;
    lv_jobev_t e;
    char *json;

    memset(&e, 0, sizeof(e));
    e.kind = LV_JOBEV_STARTED;
    snprintf(e.job, sizeof(e.job), "j1");
    snprintf(e.worker, sizeof(e.worker), "worker.1");
    snprintf(e.backend_id, sizeof(e.backend_id), "ollama-a");
    snprintf(e.model, sizeof(e.model), "qwen2.5-vl:7b");
    e.ttft_floor_us = 250000;
    ev_round_trip(&e, &json);
    assert_string_equal(json, "{\"t\":\"s\",\"j\":\"j1\",\"w\":\"worker.1\",\"b\":\"ollama-a\",\"m\":\"qwen2.5-vl:7b\","
                              "\"f\":250000}");
    free(json);
    e.backend_id[0] = '\0';
    e.model[0] = '\0';
    e.ttft_floor_us = INT64_MAX;
    ev_round_trip(&e, NULL);

    memset(&e, 0, sizeof(e));
    e.kind = LV_JOBEV_DELTA;
    snprintf(e.job, sizeof(e.job), "j1");
    e.text = "He said \"hi\"\n\t\\ é 🌞 \x1f";
    e.text_len = strlen(e.text);
    ev_round_trip(&e, &json);
    assert_string_equal(json, "{\"t\":\"d\",\"j\":\"j1\",\"x\":\"He said \\\"hi\\\"\\n\\t\\\\ é 🌞 \\u001f\"}");
    free(json);
    e.text = NULL;
    e.text_len = 0;
    ev_round_trip(&e, &json);
    assert_string_equal(json, "{\"t\":\"d\",\"j\":\"j1\",\"x\":\"\"}");
    free(json);

    make_done(&e);
    ev_round_trip(&e, NULL);
    /* a success: every field still written, so the parser can require each */
    memset(&e, 0, sizeof(e));
    e.kind = LV_JOBEV_DONE;
    snprintf(e.job, sizeof(e.job), "j9");
    snprintf(e.worker, sizeof(e.worker), "w");
    ev_round_trip(&e, &json);
    assert_string_equal(json, "{\"t\":\"e\",\"j\":\"j9\",\"w\":\"w\",\"rc\":0,\"code\":\"\",\"msg\":\"\",\"x\":\"\","
                              "\"tok\":0,\"ptok\":0,\"ttft\":0,\"sse\":false,\"shape\":0,\"rq\":false,"
                              "\"stale\":false,\"b\":\"\",\"m\":\"\"}");
    free(json);
    /* the edges */
    make_done(&e);
    e.rc = INT32_MIN;
    e.tokens = INT32_MAX;
    e.prompt_tokens = INT32_MAX;
    e.ttft_us = INT64_MAX;
    e.shape_ms = 0.1; /* not exact in binary: still the same double after the trip */
    memset(e.error_code, 'c', sizeof(e.error_code) - 1);
    memset(e.error_message, 'm', sizeof(e.error_message) - 1);
    ev_round_trip(&e, NULL);
    e.shape_ms = 1e300;
    ev_round_trip(&e, NULL);
    /* text at its cap */
    char *big = malloc(LV_JOBEV_TEXT_MAX);
    memset(big, 'x', LV_JOBEV_TEXT_MAX);
    e.text = big;
    e.text_len = LV_JOBEV_TEXT_MAX;
    ev_round_trip(&e, NULL);
    e.kind = LV_JOBEV_DELTA;
    ev_round_trip(&e, NULL);
    free(big);
}

/* Not-a-number shaping time goes out as 0; an error message that is not UTF-8 goes out with
 * U+FFFD in place of its bad bytes instead of not at all. */
static void event_encode_sanitizes(void **state)
{
    (void)state;
    lv_jobev_t e, got;
    lv_buf_t b, text;
    lv_buf_init(&b, LV_JOBEV_MAX);
    lv_buf_init(&text, LV_JOBEV_TEXT_MAX);
    make_done(&e);
    e.shape_ms = NAN;
    snprintf(e.error_message, sizeof(e.error_message), "caf\xe9 ok");
    assert_int_equal(lv_jobev_encode(&e, &b), 0);
    assert_int_equal(lv_jobev_parse(b.data, b.len, &got, &text, NULL), 0);
    assert_true(got.shape_ms == 0);
    assert_string_equal(got.error_message, "caf\xef\xbf\xbd ok");
    lv_buf_reset(&b);
    e.shape_ms = -3;
    assert_int_equal(lv_jobev_encode(&e, &b), 0);
    assert_int_equal(lv_jobev_parse(b.data, b.len, &got, &text, NULL), 0);
    assert_true(got.shape_ms == 0 && !signbit(got.shape_ms));
    lv_buf_free(&b);
    lv_buf_free(&text);
}

static void ev_encode_refused(const lv_jobev_t *e, int want_rc, size_t cap, const char *what)
{
    lv_buf_t b;
    lv_buf_init(&b, cap);
    assert_int_equal(lv_buf_append(&b, "keep", 4), 0);
    int rc = lv_jobev_encode(e, &b);
    if (rc != want_rc)
        fail_msg("%s: rc %d, want %d", what, rc, want_rc);
    assert_int_equal(b.len, 4);
    assert_memory_equal(b.data, "keep", 4);
    lv_buf_free(&b);
}

static void event_encode_refusals(void **state)
{
    (void)state;
    lv_jobev_t e;
    char *big = malloc(LV_JOBEV_TEXT_MAX + 1);
    memset(big, 'x', LV_JOBEV_TEXT_MAX + 1);
#define REFUSE(mutation, want)                                                                                         \
    do {                                                                                                               \
        make_done(&e);                                                                                                 \
        mutation;                                                                                                      \
        ev_encode_refused(&e, want, LV_JOBEV_MAX, #mutation);                                                          \
    } while (0)
    REFUSE(e.kind = 0, LV_EINVAL);
    REFUSE(e.kind = 4, LV_EINVAL);
    REFUSE(e.job[0] = '\0', LV_EINVAL);
    REFUSE(e.job[1] = '"', LV_EINVAL);
    REFUSE(memset(e.job, 'j', sizeof(e.job)), LV_EINVAL);
    REFUSE(e.worker[0] = '\0', LV_EINVAL);
    REFUSE(e.worker[0] = '{', LV_EINVAL);
    REFUSE(e.backend_id[0] = '\\', LV_EINVAL);
    REFUSE(memset(e.backend_id, 'b', sizeof(e.backend_id)), LV_EINVAL);
    REFUSE(snprintf(e.model, sizeof(e.model), "bad \xc3\x28"), LV_EINVAL);
    REFUSE(memset(e.model, 'm', sizeof(e.model)), LV_EINVAL);
    REFUSE(snprintf(e.error_code, sizeof(e.error_code), "\xff"), LV_EINVAL);
    REFUSE(memset(e.error_code, 'c', sizeof(e.error_code)), LV_EINVAL);
    REFUSE(memset(e.error_message, 'm', sizeof(e.error_message)), LV_EINVAL);
    REFUSE(e.rc = 1, LV_EINVAL);
    REFUSE(e.tokens = -1, LV_EINVAL);
    REFUSE(e.prompt_tokens = -1, LV_EINVAL);
    REFUSE(e.ttft_us = UINT64_MAX, LV_EINVAL);
    /* text: invalid UTF-8 (a cut sequence, a lone continuation byte, a surrogate), a NUL, over
     * the cap, a length with no pointer */
    REFUSE((e.text = "ab\xe2\x82", e.text_len = 4), LV_EINVAL);
    REFUSE((e.text = "\x80", e.text_len = 1), LV_EINVAL);
    REFUSE((e.text = "\xed\xa0\x80", e.text_len = 3), LV_EINVAL);
    REFUSE((e.text = "a\0b", e.text_len = 3), LV_EINVAL);
    REFUSE((e.text = big, e.text_len = LV_JOBEV_TEXT_MAX + 1), LV_EINVAL);
    REFUSE((e.text = NULL, e.text_len = 1), LV_EINVAL);
    /* the same for a delta */
    REFUSE((e.kind = LV_JOBEV_DELTA, e.text = "ab\xe2\x82", e.text_len = 4), LV_EINVAL);
    REFUSE((e.kind = LV_JOBEV_DELTA, e.text = big, e.text_len = LV_JOBEV_TEXT_MAX + 1), LV_EINVAL);
    REFUSE((e.kind = LV_JOBEV_DELTA, e.job[0] = ' '), LV_EINVAL);
    /* started */
    REFUSE((e.kind = LV_JOBEV_STARTED, e.worker[0] = '\0'), LV_EINVAL);
    REFUSE((e.kind = LV_JOBEV_STARTED, e.ttft_floor_us = UINT64_MAX), LV_EINVAL);
    REFUSE((e.kind = LV_JOBEV_STARTED, snprintf(e.model, sizeof(e.model), "\xc0\xaf")), LV_EINVAL);
#undef REFUSE
    /* text within its cap whose escaped form outgrows the event cap (an output with room) */
    memset(big, '\x01', LV_JOBEV_TEXT_MAX);
    make_done(&e);
    e.kind = LV_JOBEV_DELTA;
    e.text = big;
    e.text_len = LV_JOBEV_TEXT_MAX;
    ev_encode_refused(&e, LV_EINVAL, 8 * LV_JOBEV_MAX, "escaped text over the event cap");
    /* the output's own cap */
    make_done(&e);
    ev_encode_refused(&e, LV_ELIMIT, 4 + 30, "tiny output cap");
    e.kind = LV_JOBEV_DELTA;
    ev_encode_refused(&e, LV_ELIMIT, 4 + 30, "tiny output cap (delta)");
    e.kind = LV_JOBEV_STARTED;
    ev_encode_refused(&e, LV_ELIMIT, 4 + 30, "tiny output cap (started)");
    free(big);
}

/* Parse text as an event and expect rc with a reason containing why_has; a failure leaves the
 * result and the text buffer empty. */
static void ev_refused_n(const char *p, size_t n, int want_rc, const char *why_has)
{
    lv_buf_t text;
    lv_jobev_t got;
    const char *why = NULL;
    lv_buf_init(&text, LV_JOBEV_TEXT_MAX);
    assert_int_equal(lv_buf_append_str(&text, "stale"), 0);
    int rc = lv_jobev_parse(p, n, &got, &text, &why);
    if (rc != want_rc || !why || !strstr(why, why_has))
        fail_msg("%.300s: rc %d why \"%s\" (want %d, \"%s\")", p, rc, why ? why : "(null)", want_rc, why_has);
    static const lv_jobev_t zero;
    assert_memory_equal(&got, &zero, sizeof(got));
    assert_int_equal(text.len, 0);
    lv_buf_free(&text);
}

static void ev_refused(const char *p, int want_rc, const char *why_has)
{
    ev_refused_n(p, strlen(p), want_rc, why_has);
}

/* o (stolen) as compact JSON, refused */
static void ev_obj_refused(json_t *o, int want_rc, const char *why_has)
{
    char *s = json_dumps(o, JSON_COMPACT);
    assert_non_null(s);
    ev_refused(s, want_rc, why_has);
    free(s);
    json_decref(o);
}

static json_t *encoded_obj(const lv_jobev_t *e)
{
    lv_buf_t b;
    lv_buf_init(&b, LV_JOBEV_MAX);
    assert_int_equal(lv_jobev_encode(e, &b), 0);
    json_t *o = json_loadb(b.data, b.len, 0, NULL);
    assert_non_null(o);
    lv_buf_free(&b);
    return o;
}

/* The done event e with one field set to value (stolen), refused. */
static void done_refused(const lv_jobev_t *e, const char *key, json_t *value, int want_rc, const char *why_has)
{
    json_t *o = encoded_obj(e);
    assert_int_equal(json_object_set_new(o, key, value), 0);
    ev_obj_refused(o, want_rc, why_has);
}

static void event_parse_refusals(void **state)
{
    (void)state;
    {
        lv_buf_t text;
        lv_jobev_t got;
        lv_buf_init(&text, 64);
        assert_int_equal(lv_jobev_parse("{", 1, &got, &text, NULL), LV_EPARSE); /* why may be NULL */
        lv_buf_free(&text);
    }
    ev_refused("", LV_EPARSE, "not one JSON object");
    ev_refused("[]", LV_EPARSE, "not one JSON object");
    ev_refused("\"t\"", LV_EPARSE, "not one JSON object");
    ev_refused("{\"t\":\"d\",\"j\":\"a\",\"x\":\"\"", LV_EPARSE, "not one JSON object");
    /* trailing garbage, a second object */
    ev_refused("{\"t\":\"d\",\"j\":\"a\",\"x\":\"\"} x", LV_EPARSE, "not one JSON object");
    ev_refused("{\"t\":\"d\",\"j\":\"a\",\"x\":\"\"}{}", LV_EPARSE, "not one JSON object");
    static const char with_nul[] = "{\"t\":\"d\",\"j\":\"a\",\"x\":\"\"}";
    ev_refused_n(with_nul, sizeof(with_nul), LV_EPARSE, "not one JSON object"); /* its NUL too */
    /* the type */
    ev_refused("{\"j\":\"a\",\"x\":\"\"}", LV_EPARSE, "no type");
    ev_refused("{\"t\":1,\"j\":\"a\",\"x\":\"\"}", LV_EPARSE, "no type");
    ev_refused("{\"t\":\"x\",\"j\":\"a\",\"x\":\"\"}", LV_EINVAL, "type is not s, d or e");
    ev_refused("{\"t\":\"\",\"j\":\"a\",\"x\":\"\"}", LV_EINVAL, "type");
    ev_refused("{\"t\":\"dd\",\"j\":\"a\",\"x\":\"\"}", LV_EINVAL, "type");
    ev_refused("{\"t\":\"D\",\"j\":\"a\",\"x\":\"\"}", LV_EINVAL, "type");
    /* duplicate keys */
    ev_refused("{\"t\":\"d\",\"j\":\"a\",\"x\":\"1\",\"x\":\"2\"}", LV_EPARSE, "");
    /* ids */
    ev_refused("{\"t\":\"d\",\"j\":\"\",\"x\":\"\"}", LV_EINVAL, "job id");
    ev_refused("{\"t\":\"d\",\"j\":\"a b\",\"x\":\"\"}", LV_EINVAL, "job id");
    ev_refused("{\"t\":\"d\",\"j\":7,\"x\":\"\"}", LV_EPARSE, "job id");
    ev_refused("{\"t\":\"s\",\"j\":\"a\",\"w\":\"w/1\",\"b\":\"\",\"m\":\"\",\"f\":0}", LV_EINVAL, "worker id");
    ev_refused("{\"t\":\"s\",\"j\":\"a\",\"w\":\"012345678901234567890123456789012\",\"b\":\"\",\"m\":\"\",\"f\":0}",
               LV_EINVAL, "worker id");
    ev_refused("{\"t\":\"s\",\"j\":\"a\",\"w\":\"w\",\"b\":\"a b\",\"m\":\"\",\"f\":0}", LV_EINVAL, "backend id");
    ev_refused("{\"t\":\"s\",\"j\":\"a\",\"w\":\"w\",\"b\":\"\",\"m\":\"\",\"f\":-1}", LV_EINVAL, "ttft floor");
    ev_refused("{\"t\":\"s\",\"j\":\"a\",\"w\":\"w\",\"b\":\"\",\"m\":\"\",\"f\":1.0}", LV_EPARSE, "ttft floor");
    /* a NUL inside a string is not text */
    ev_refused("{\"t\":\"d\",\"j\":\"a\",\"x\":\"a\\u0000b\"}", LV_EPARSE, "not one JSON object");

    /* every field of each kind is required: each missing, each of the wrong type */
    lv_jobev_t e;
    make_done(&e);
    for (int kind = LV_JOBEV_STARTED; kind <= LV_JOBEV_DONE; kind++) {
        e.kind = (lv_jobev_kind_t)kind;
        json_t *tmpl = encoded_obj(&e);
        const char *key;
        json_t *value;
        size_t n_keys = 0;
        json_object_foreach(tmpl, key, value)
        {
            json_t *o = json_deep_copy(tmpl);
            assert_int_equal(json_object_del(o, key), 0);
            if (strcmp(key, "ptok") == 0) /* optional: an older worker's done event has none */
                json_decref(o);
            else
                ev_obj_refused(o, LV_EPARSE, strcmp(key, "t") == 0 ? "no type" : "missing");
            o = json_deep_copy(tmpl);
            json_t *wrong = json_is_string(value) ? json_integer(1) : json_string("1");
            assert_int_equal(json_object_set_new(o, key, wrong), 0);
            ev_obj_refused(o, LV_EPARSE, "");
            o = json_deep_copy(tmpl);
            assert_int_equal(json_object_set_new(o, key, json_null()), 0);
            ev_obj_refused(o, LV_EPARSE, "");
            n_keys++;
        }
        assert_int_equal(n_keys, kind == LV_JOBEV_STARTED ? 6 : kind == LV_JOBEV_DELTA ? 3 : 16);
        json_decref(tmpl);
    }

    /* done values */
    make_done(&e);
    done_refused(&e, "rc", json_integer(1), LV_EINVAL, "rc");
    done_refused(&e, "rc", json_integer((json_int_t)INT32_MIN - 1), LV_EINVAL, "rc");
    done_refused(&e, "rc", json_real(-2.0), LV_EPARSE, "rc");
    done_refused(&e, "tok", json_integer(-1), LV_EINVAL, "token count");
    done_refused(&e, "tok", json_integer((json_int_t)INT32_MAX + 1), LV_EINVAL, "token count");
    done_refused(&e, "ptok", json_integer(-1), LV_EINVAL, "prompt token count");
    done_refused(&e, "ptok", json_integer((json_int_t)INT32_MAX + 1), LV_EINVAL, "prompt token count");
    done_refused(&e, "ptok", json_real(1.5), LV_EPARSE, "prompt token count");
    done_refused(&e, "ttft", json_integer(-1), LV_EINVAL, "ttft");
    done_refused(&e, "shape", json_real(-0.5), LV_EINVAL, "shaping");
    done_refused(&e, "sse", json_integer(1), LV_EPARSE, "sse");
    done_refused(&e, "stale", json_string("true"), LV_EPARSE, "stale");
    char s64[65];
    memset(s64, 'c', 64);
    s64[64] = '\0';
    done_refused(&e, "code", json_string(s64), LV_ELIMIT, "error code");
    char s257[258];
    memset(s257, 'm', 257);
    s257[257] = '\0';
    done_refused(&e, "m", json_string(s257), LV_ELIMIT, "model");
}

static void event_parse_caps(void **state)
{
    (void)state;
    lv_buf_t ev, text;
    lv_jobev_t got;
    const char *why;
    lv_buf_init(&ev, 2 * LV_JOBEV_MAX);
    lv_buf_init(&text, LV_JOBEV_TEXT_MAX);

    /* text one byte over its cap, the event itself within its own */
    assert_int_equal(lv_buf_append_str(&ev, "{\"t\":\"d\",\"j\":\"a\",\"x\":\""), 0);
    for (size_t i = 0; i <= LV_JOBEV_TEXT_MAX; i++)
        assert_int_equal(lv_buf_append(&ev, "y", 1), 0);
    assert_int_equal(lv_buf_append_str(&ev, "\"}"), 0);
    ev_refused_n(ev.data, ev.len, LV_ELIMIT, "text is longer than the cap");
    /* at the cap: fine */
    lv_buf_reset(&ev);
    assert_int_equal(lv_buf_append_str(&ev, "{\"t\":\"d\",\"j\":\"a\",\"x\":\""), 0);
    for (size_t i = 0; i < LV_JOBEV_TEXT_MAX; i++)
        assert_int_equal(lv_buf_append(&ev, "y", 1), 0);
    assert_int_equal(lv_buf_append_str(&ev, "\"}"), 0);
    assert_int_equal(lv_jobev_parse(ev.data, ev.len, &got, &text, &why), 0);
    assert_int_equal(got.text_len, LV_JOBEV_TEXT_MAX);
    /* a caller's text buffer with a smaller cap */
    lv_buf_t small;
    lv_buf_init(&small, 100);
    assert_int_equal(lv_jobev_parse(ev.data, ev.len, &got, &small, &why), LV_ELIMIT);
    assert_non_null(strstr(why, "caller's buffer"));
    lv_buf_free(&small);

    /* an event over its cap, however it is made up (here: padding an unknown field) */
    lv_buf_reset(&ev);
    assert_int_equal(lv_buf_append_str(&ev, "{\"t\":\"d\",\"j\":\"a\",\"x\":\"\",\"pad\":\""), 0);
    while (ev.len < LV_JOBEV_MAX - 1)
        assert_int_equal(lv_buf_append(&ev, "p", 1), 0);
    assert_int_equal(lv_buf_append_str(&ev, "\"}"), 0);
    assert_int_equal(ev.len, LV_JOBEV_MAX + 1);
    ev_refused_n(ev.data, ev.len, LV_ELIMIT, "event is longer than the cap");
    /* one byte less (the pad one shorter) parses, the unknown field ignored */
    ev.data[ev.len - 3] = '"';
    ev.data[ev.len - 2] = '}';
    assert_int_equal(lv_jobev_parse(ev.data, ev.len - 1, &got, &text, &why), 0);
    assert_int_equal(got.kind, LV_JOBEV_DELTA);
    assert_int_equal(got.text_len, 0);
    assert_non_null(got.text);

    /* an error message longer than its field is cut at a character boundary, not refused */
    lv_buf_reset(&ev);
    assert_int_equal(
        lv_buf_append_str(&ev, "{\"t\":\"e\",\"j\":\"a\",\"w\":\"w\",\"rc\":-11,\"code\":\"x\",\"msg\":\""), 0);
    for (size_t i = 0; i < 200; i++)
        assert_int_equal(lv_buf_append_str(&ev, "é€"), 0); /* 5 bytes each: 1000 */
    assert_int_equal(lv_buf_append_str(&ev, "\",\"x\":\"\",\"tok\":0,\"ttft\":0,\"sse\":false,\"shape\":1,"
                                            "\"rq\":false,\"stale\":false,\"b\":\"\",\"m\":\"\",\"new\":[1]}"),
                     0);
    assert_int_equal(lv_jobev_parse(ev.data, ev.len, &got, &text, &why), 0);
    size_t ml = strlen(got.error_message);
    assert_true(ml <= 511 && ml >= 507);
    assert_int_equal(ml % 5 == 0 || ml % 5 == 2, 1); /* ends after a whole é or € */
    assert_true(got.shape_ms == 1.0);
    assert_int_equal(got.rc, LV_EBACKEND);
    assert_int_equal(got.prompt_tokens, 0); /* an event from before "ptok": none */

    /* the text buffer is reset: a second parse does not append to the first text */
    lv_buf_reset(&ev);
    assert_int_equal(lv_buf_append_str(&ev, "{\"t\":\"d\",\"j\":\"a\",\"x\":\"one\"}"), 0);
    assert_int_equal(lv_jobev_parse(ev.data, ev.len, &got, &text, &why), 0);
    assert_int_equal(lv_jobev_parse(ev.data, ev.len, &got, &text, &why), 0);
    assert_int_equal(got.text_len, 3);
    assert_memory_equal(got.text, "one", 3);
    lv_buf_free(&ev);
    lv_buf_free(&text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(job_round_trip),         cmocka_unit_test(job_encode_appends),
        cmocka_unit_test(job_encode_refusals),    cmocka_unit_test(job_parse_framing),
        cmocka_unit_test(job_parse_fields),       cmocka_unit_test(job_parse_values),
        cmocka_unit_test(job_parse_ranges),       cmocka_unit_test(event_round_trips),
        cmocka_unit_test(job_allow_backends),
        cmocka_unit_test(event_encode_sanitizes), cmocka_unit_test(event_encode_refusals),
        cmocka_unit_test(event_parse_refusals),   cmocka_unit_test(event_parse_caps),
    };
    return cmocka_run_group_tests(tests, load_jpeg, free_jpeg);
}

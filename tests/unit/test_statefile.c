/* test_statefile.c - the session state file: format round trip, every truncation and single-byte
 * corruption refused, versions, expiry, caps; one session line alone (the cluster's records); the
 * registry's snapshot/restore and dirty list; the writer's file (mode 0600, lock, corrupt file
 * moved aside, thread-pool writes). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <jansson.h>
#include <math.h>
#include <openssl/evp.h>

#include "lv_buf.h"
#include "lv_common.h"
#include "lv_persist.h"
#include "lv_session.h"
#include "lv_statefile.h"
#include "lv_store_mem.h"

#define NOW_MS 1700000000000ull
#define HOUR_MS 3600000ull

static const lv_statefile_limits_t LIM = {LV_STATEFILE_MAX_BYTES, 1000, HOUR_MS};

/* ---------- helpers ---------- */

static int buf_sink(void *ud, const void *p, size_t n)
{
    return lv_buf_append(ud, p, n);
}

static void make_session(lv_statefile_session_t *s, int i, size_t n_answers)
{
    memset(s, 0, sizeof(*s));
    snprintf(s->rec.id, sizeof(s->rec.id), "%032x", 0xabc000 + i);
    for (int k = 0; k < LV_SECRET_HASH_LEN; k++)
        s->rec.secret_hash[k] = "0123456789abcdef"[(k + i) % 16];
    snprintf(s->rec.principal, sizeof(s->rec.principal), "10.0.0.%d", i);
    lv_settings_defaults(&s->rec.settings);
    snprintf(s->rec.settings.prompt, sizeof(s->rec.settings.prompt), "Prompt %d: \"quotes\", \\ and\nnewline é", i);
    s->rec.settings.max_tokens = 100 + i;
    s->rec.settings.temperature = 0.3;
    snprintf(s->rec.settings.model, sizeof(s->rec.settings.model), "model-%d", i);
    s->rec.started = i % 2;
    s->rec.created_ms = NOW_MS - 5000;
    s->rec.total_inferences = 7;
    s->rec.avg_latency_ms = 123.456;
    s->attached = false;
    s->last_seen_ms = NOW_MS - 1000;
    s->answer_seq = 40 + n_answers;
    s->n_answers = n_answers;
    for (size_t k = 0; k < n_answers; k++) {
        char t[64];
        int len = snprintf(t, sizeof(t), "answer %zu of %d\n\ttab ü", k, i);
        s->answers[k] = (lv_statefile_answer_t){40 + k + 1, NOW_MS - 100 * (n_answers - k), 10.5 + (double)k, strdup(t),
                                                (size_t)len, NULL, 0};
    }
}

/* A whole file holding these sessions, written by the real emitter. */
static void make_file(lv_buf_t *out, lv_statefile_session_t *ss, size_t n, uint64_t saved_ms)
{
    lv_statefile_snap_t snap;
    memset(&snap, 0, sizeof(snap));
    for (size_t i = 0; i < n; i++) {
        lv_statefile_line_t *line = NULL;
        assert_int_equal(lv_statefile_encode_session(&ss[i], &line), 0);
        assert_int_equal(lv_statefile_snap_add(&snap, line), 0);
        lv_statefile_line_unref(line);
    }
    snap.saved_ms = saved_ms;
    lv_buf_init(out, 64u << 20);
    assert_int_equal(lv_statefile_emit(&snap, buf_sink, out), 0);
    lv_statefile_snap_clear(&snap);
}

/* body + a correct checksum line: for files the emitter would never write. */
static void seal(lv_buf_t *out, const char *body)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    char hex[65];
    assert_int_equal(EVP_Digest(body, strlen(body), md, &md_len, EVP_sha256(), NULL), 1);
    for (unsigned i = 0; i < md_len; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    lv_buf_init(out, 64u << 20);
    assert_int_equal(lv_buf_append_str(out, body), 0);
    assert_int_equal(lv_buf_printf(out, "{\"sha256\":\"%s\"}\n", hex), 0);
}

static bool settings_equal(const lv_settings_t *a, const lv_settings_t *b)
{
    return strcmp(a->prompt, b->prompt) == 0 && a->max_tokens == b->max_tokens && a->temperature == b->temperature &&
           a->interval_ms == b->interval_ms && strcmp(a->backend, b->backend) == 0 && strcmp(a->model, b->model) == 0 &&
           a->frame_max_side == b->frame_max_side && a->jpeg_quality == b->jpeg_quality &&
           a->stats_interval_ms == b->stats_interval_ms && a->debug == b->debug;
}

typedef struct {
    size_t n;
    lv_statefile_session_t got[8];
} collect_t;

/* Keep a deep copy of what the parser delivers. */
static int collect_cb(void *ud, const lv_statefile_session_t *s)
{
    collect_t *c = ud;
    if (c->n == 8)
        return -1;
    lv_statefile_session_t *d = &c->got[c->n++];
    *d = *s;
    for (size_t k = 0; k < s->n_answers; k++)
        d->answers[k].text = strdup(s->answers[k].text);
    return 0;
}

static void collect_free(collect_t *c)
{
    for (size_t i = 0; i < c->n; i++)
        lv_statefile_session_clear(&c->got[i]);
    c->n = 0;
}

static int never_cb(void *ud, const lv_statefile_session_t *s)
{
    (*(int *)ud)++;
    return 0;
}

static const char HEAD[] =
    "{\"format\":\"livevlm-sessions\",\"version\":1,\"saved_ms\":1700000000000,\"sessions\":%d}\n";
static const char SESSION_FMT[] =
    "{\"id\":\"0123456789abcdef0123456789abcdef\",\"secret_sha256\":"
    "\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\",\"owner\":\"1.2.3.4\","
    "\"created_ms\":1,\"last_seen_ms\":1699999999000,\"attached\":false,\"started\":false,\"answer_seq\":0,"
    "\"total_inferences\":0,\"avg_latency_ms\":0,\"settings\":%s,\"history\":%s}\n";

/* SESSION_FMT with these settings and history JSON into dst (size bytes); returns the length. */
static int session_line_fmt(char *dst, size_t size, const char *settings, const char *history)
{
    int n = snprintf(dst, size, SESSION_FMT, settings, history);
    assert_true(n > 0 && (size_t)n < size);
    return n;
}

/* A one-session file with these settings and history JSON. */
static void one_session_file(lv_buf_t *out, const char *settings, const char *history)
{
    size_t size = sizeof(HEAD) + sizeof(SESSION_FMT) + strlen(settings) + strlen(history) + 64;
    char *body = malloc(size);
    int n = snprintf(body, size, HEAD, 1);
    snprintf(body + n, size - (size_t)n, SESSION_FMT, settings, history);
    seal(out, body);
    free(body);
}

/* ---------- the format ---------- */

static void round_trip(void **state)
{
    lv_statefile_session_t ss[3];
    lv_buf_t file;
    collect_t c = {0};
    lv_statefile_stats_t st;
    const char *why = NULL;
    for (int i = 0; i < 3; i++)
        make_session(&ss[i], i, (size_t)(i == 0 ? 0 : i == 1 ? 3 : LV_STATEFILE_ANSWERS_MAX));
    ss[2].attached = true;
    make_file(&file, ss, 3, NOW_MS - 2000);
    assert_non_null(memchr(file.data, '\n', file.len));
    assert_int_equal(lv_statefile_parse(file.data, file.len, &LIM, NOW_MS, collect_cb, &c, &st, &why), 0);
    assert_null(why);
    assert_int_equal(c.n, 3);
    assert_int_equal(st.sessions, 3);
    assert_int_equal(st.delivered, 3);
    assert_int_equal(st.saved_ms, NOW_MS - 2000);
    for (int i = 0; i < 3; i++) {
        const lv_statefile_session_t *a = &ss[i], *b = &c.got[i];
        assert_string_equal(a->rec.id, b->rec.id);
        assert_string_equal(a->rec.secret_hash, b->rec.secret_hash);
        assert_string_equal(a->rec.principal, b->rec.principal);
        assert_true(settings_equal(&a->rec.settings, &b->rec.settings));
        assert_int_equal(a->rec.started, b->rec.started);
        assert_int_equal(a->rec.created_ms, b->rec.created_ms);
        assert_int_equal(a->rec.total_inferences, b->rec.total_inferences);
        assert_true(a->rec.avg_latency_ms == b->rec.avg_latency_ms);
        assert_int_equal(a->attached, b->attached);
        assert_int_equal(a->answer_seq, b->answer_seq);
        assert_int_equal(a->n_answers, b->n_answers);
        assert_false(b->settings_reset);
        for (size_t k = 0; k < a->n_answers; k++) {
            assert_int_equal(a->answers[k].answer_id, b->answers[k].answer_id);
            assert_int_equal(a->answers[k].wall_ms, b->answers[k].wall_ms);
            assert_true(a->answers[k].latency_ms == b->answers[k].latency_ms);
            assert_string_equal(a->answers[k].text, b->answers[k].text);
            assert_int_equal(a->answers[k].text_len, b->answers[k].text_len);
        }
    }
    /* age: detached ones from their last_seen, attached ones from the file's saved_ms */
    assert_int_equal(c.got[0].age_ms, 1000);
    assert_int_equal(c.got[2].age_ms, 2000);
    collect_free(&c);
    for (int i = 0; i < 3; i++)
        lv_statefile_session_clear(&ss[i]);
    lv_buf_free(&file);
}

static void truncated_at_every_byte(void **state)
{
    lv_statefile_session_t ss[2];
    lv_buf_t file;
    make_session(&ss[0], 0, 2);
    make_session(&ss[1], 1, 1);
    make_file(&file, ss, 2, NOW_MS);
    for (size_t len = 0; len < file.len; len++) {
        int calls = 0;
        char *copy = malloc(len ? len : 1); /* exactly len bytes: ASan sees any over-read */
        memcpy(copy, file.data, len);
        int rc = lv_statefile_parse(copy, len, &LIM, NOW_MS, never_cb, &calls, NULL, NULL);
        free(copy);
        if (rc == 0 || calls != 0)
            fail_msg("a file cut at %zu of %zu bytes was accepted (rc %d, %d sessions)", len, file.len, rc, calls);
    }
    lv_statefile_session_clear(&ss[0]);
    lv_statefile_session_clear(&ss[1]);
    lv_buf_free(&file);
}

static void corrupted_at_every_byte(void **state)
{
    static const unsigned char masks[] = {0x01, 0x20, 0x80, 0xff};
    lv_statefile_session_t ss[2];
    lv_buf_t file;
    make_session(&ss[0], 0, 2);
    make_session(&ss[1], 1, 0);
    make_file(&file, ss, 2, NOW_MS);
    char *copy = malloc(file.len);
    for (size_t i = 0; i < file.len; i++) {
        for (size_t m = 0; m < sizeof(masks); m++) {
            int calls = 0;
            memcpy(copy, file.data, file.len);
            copy[i] = (char)(copy[i] ^ masks[m]);
            int rc = lv_statefile_parse(copy, file.len, &LIM, NOW_MS, never_cb, &calls, NULL, NULL);
            if (rc == 0 || calls != 0)
                fail_msg("byte %zu ^ 0x%02x was accepted", i, masks[m]);
        }
    }
    /* and the intact copy still parses */
    memcpy(copy, file.data, file.len);
    assert_int_equal(lv_statefile_parse(copy, file.len, &LIM, NOW_MS, NULL, NULL, NULL, NULL), 0);
    free(copy);
    lv_statefile_session_clear(&ss[0]);
    lv_statefile_session_clear(&ss[1]);
    lv_buf_free(&file);
}

static void wrong_version_or_format(void **state)
{
    lv_buf_t f;
    const char *why = NULL;
    seal(&f, "{\"format\":\"livevlm-sessions\",\"version\":2,\"saved_ms\":1,\"sessions\":0}\n");
    assert_int_equal(lv_statefile_parse(f.data, f.len, &LIM, NOW_MS, NULL, NULL, NULL, &why), LV_EINVAL);
    assert_non_null(strstr(why, "version"));
    lv_buf_free(&f);
    seal(&f, "{\"format\":\"something-else\",\"version\":1,\"saved_ms\":1,\"sessions\":0}\n");
    assert_int_equal(lv_statefile_parse(f.data, f.len, &LIM, NOW_MS, NULL, NULL, NULL, &why), LV_EINVAL);
    lv_buf_free(&f);
    /* version 1 with no session is fine */
    seal(&f, "{\"format\":\"livevlm-sessions\",\"version\":1,\"saved_ms\":1,\"sessions\":0}\n");
    assert_int_equal(lv_statefile_parse(f.data, f.len, &LIM, NOW_MS, NULL, NULL, NULL, &why), 0);
    lv_buf_free(&f);
    /* not even JSON */
    const char junk[] = "hello\nworld\n";
    assert_int_equal(lv_statefile_parse(junk, sizeof(junk) - 1, &LIM, NOW_MS, NULL, NULL, NULL, &why), LV_EPARSE);
    assert_int_equal(lv_statefile_parse("", 0, &LIM, NOW_MS, NULL, NULL, NULL, &why), LV_EPARSE);
}

static void expired_sessions_skipped(void **state)
{
    lv_statefile_session_t ss[4];
    lv_buf_t file;
    collect_t c = {0};
    lv_statefile_stats_t st;
    for (int i = 0; i < 4; i++)
        make_session(&ss[i], i, 1);
    ss[0].last_seen_ms = NOW_MS - HOUR_MS - 1;  /* detached an hour ago: expired */
    ss[1].last_seen_ms = NOW_MS - HOUR_MS + 10; /* just within */
    ss[2].attached = true;                      /* seen at the file's saved_ms: within */
    ss[2].last_seen_ms = 0;
    ss[3].last_seen_ms = NOW_MS + 5000; /* the clock went back: age 0 */
    make_file(&file, ss, 4, NOW_MS - 60000);
    assert_int_equal(lv_statefile_parse(file.data, file.len, &LIM, NOW_MS, collect_cb, &c, &st, NULL), 0);
    assert_int_equal(st.expired, 1);
    assert_int_equal(c.n, 3);
    assert_string_equal(c.got[0].rec.id, ss[1].rec.id);
    assert_int_equal(c.got[1].age_ms, 60000);
    assert_int_equal(c.got[2].age_ms, 0);
    collect_free(&c);
    /* an attached session in a file saved long ago has expired too */
    assert_int_equal(lv_statefile_parse(file.data, file.len, &LIM, NOW_MS + HOUR_MS, collect_cb, &c, &st, NULL), 0);
    assert_int_equal(st.expired, 3);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.got[0].rec.id, ss[3].rec.id);
    collect_free(&c);
    /* idle 0 = never expire */
    lv_statefile_limits_t forever = LIM;
    forever.idle_ms = 0;
    assert_int_equal(lv_statefile_parse(file.data, file.len, &forever, NOW_MS, collect_cb, &c, &st, NULL), 0);
    assert_int_equal(c.n, 4);
    collect_free(&c);
    for (int i = 0; i < 4; i++)
        lv_statefile_session_clear(&ss[i]);
    lv_buf_free(&file);
}

static void caps(void **state)
{
    lv_statefile_session_t ss[3];
    lv_buf_t file, f;
    collect_t c = {0};
    lv_statefile_stats_t st;
    const char *why;
    for (int i = 0; i < 3; i++)
        make_session(&ss[i], i, 1);
    make_file(&file, ss, 3, NOW_MS);

    /* sessions past max_sessions are skipped, not an error */
    lv_statefile_limits_t lim = LIM;
    lim.max_sessions = 1;
    assert_int_equal(lv_statefile_parse(file.data, file.len, &lim, NOW_MS, collect_cb, &c, &st, NULL), 0);
    assert_int_equal(c.n, 1);
    assert_int_equal(st.over_cap, 2);
    collect_free(&c);

    /* a file over max_bytes is refused before anything is read */
    lim = LIM;
    lim.max_bytes = file.len - 1;
    assert_int_equal(lv_statefile_parse(file.data, file.len, &lim, NOW_MS, NULL, NULL, NULL, &why), LV_ELIMIT);

    /* a callback refusing a session (a duplicate id, a full registry) is counted, not fatal */
    int calls = 0;
    assert_int_equal(lv_statefile_parse(file.data, file.len, &LIM, NOW_MS, never_cb, &calls, &st, NULL), 0);
    assert_int_equal(calls, 3);

    /* more history entries than the cap */
    lv_buf_t h;
    lv_buf_init(&h, 1u << 20);
    lv_buf_append_str(&h, "[");
    for (int i = 0; i <= LV_STATEFILE_ANSWERS_MAX; i++)
        lv_buf_printf(&h, "%s{\"answer_id\":%d,\"wall_ms\":1,\"latency_ms\":1,\"text\":\"x\"}", i ? "," : "", i);
    lv_buf_append_str(&h, "]");
    one_session_file(&f, "{}", h.data);
    assert_int_equal(lv_statefile_parse(f.data, f.len, &LIM, NOW_MS, NULL, NULL, NULL, &why), LV_ELIMIT);
    lv_buf_free(&f);
    lv_buf_free(&h);

    /* a text over the cap */
    char *big = malloc(LV_STATEFILE_TEXT_MAX + 200);
    memset(big, 0, LV_STATEFILE_TEXT_MAX + 200);
    strcpy(big, "[{\"answer_id\":1,\"wall_ms\":1,\"latency_ms\":1,\"text\":\"");
    memset(big + strlen(big), 'a', LV_STATEFILE_TEXT_MAX + 1);
    strcat(big, "\"}]");
    one_session_file(&f, "{}", big);
    assert_int_equal(lv_statefile_parse(f.data, f.len, &LIM, NOW_MS, NULL, NULL, NULL, &why), LV_ELIMIT);
    lv_buf_free(&f);
    free(big);

    /* a line over the line cap */
    char *huge = malloc(LV_STATEFILE_LINE_MAX + 100);
    memset(huge, 0, LV_STATEFILE_LINE_MAX + 100);
    strcpy(huge, "{\"prompt\":\"");
    memset(huge + strlen(huge), 'b', LV_STATEFILE_LINE_MAX);
    strcat(huge, "\"}");
    one_session_file(&f, huge, "[]");
    assert_int_equal(lv_statefile_parse(f.data, f.len, &LIM, NOW_MS, NULL, NULL, NULL, &why), LV_ELIMIT);
    lv_buf_free(&f);
    free(huge);

    for (int i = 0; i < 3; i++)
        lv_statefile_session_clear(&ss[i]);
    lv_buf_free(&file);
}

/* Session lines a parser must refuse (in a file or alone). */
static const char *const BAD_LINES[] = {
    "[]",
    "{\"id\":\"0123\"}",
    /* id not hex */
    "{\"id\":\"0123456789abcdef0123456789abcdeZ\",\"secret_sha256\":"
    "\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\",\"owner\":\"a\",\"created_ms\":1,\"last_"
    "seen_ms\":1,\"attached\":false,\"started\":false,\"answer_seq\":0,\"total_inferences\":0,\"avg_latency_ms\":0,"
    "\"settings\":{},\"history\":[]}",
    /* upper-case hash */
    "{\"id\":\"0123456789abcdef0123456789abcdef\",\"secret_sha256\":"
    "\"0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef\",\"owner\":\"a\",\"created_ms\":1,\"last_"
    "seen_ms\":1,\"attached\":false,\"started\":false,\"answer_seq\":0,\"total_inferences\":0,\"avg_latency_ms\":0,"
    "\"settings\":{},\"history\":[]}",
    /* negative time */
    "{\"id\":\"0123456789abcdef0123456789abcdef\",\"secret_sha256\":"
    "\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\",\"owner\":\"a\",\"created_ms\":-1,\"last_"
    "seen_ms\":1,\"attached\":false,\"started\":false,\"answer_seq\":0,\"total_inferences\":0,\"avg_latency_ms\":0,"
    "\"settings\":{},\"history\":[]}",
    /* empty owner */
    "{\"id\":\"0123456789abcdef0123456789abcdef\",\"secret_sha256\":"
    "\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\",\"owner\":\"\",\"created_ms\":1,\"last_"
    "seen_ms\":1,\"attached\":false,\"started\":false,\"answer_seq\":0,\"total_inferences\":0,\"avg_latency_ms\":0,"
    "\"settings\":{},\"history\":[]}",
    /* duplicate key */
    "{\"id\":\"0123456789abcdef0123456789abcdef\",\"id\":\"0123456789abcdef0123456789abcdef\",\"secret_sha256\":"
    "\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\",\"owner\":\"a\",\"created_ms\":1,\"last_"
    "seen_ms\":1,\"attached\":false,\"started\":false,\"answer_seq\":0,\"total_inferences\":0,\"avg_latency_ms\":0,"
    "\"settings\":{},\"history\":[]}",
    /* history entry without text */
    "{\"id\":\"0123456789abcdef0123456789abcdef\",\"secret_sha256\":"
    "\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\",\"owner\":\"a\",\"created_ms\":1,\"last_"
    "seen_ms\":1,\"attached\":false,\"started\":false,\"answer_seq\":0,\"total_inferences\":0,\"avg_latency_ms\":0,"
    "\"settings\":{},\"history\":[{\"answer_id\":1,\"wall_ms\":1,\"latency_ms\":1}]}",
    /* NUL inside a text */
    "{\"id\":\"0123456789abcdef0123456789abcdef\",\"secret_sha256\":"
    "\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\",\"owner\":\"a\",\"created_ms\":1,\"last_"
    "seen_ms\":1,\"attached\":false,\"started\":false,\"answer_seq\":0,\"total_inferences\":0,\"avg_latency_ms\":0,"
    "\"settings\":{},\"history\":[{\"answer_id\":1,\"wall_ms\":1,\"latency_ms\":1,\"text\":\"a\\u0000b\"}]}",
};

static void malformed_fields(void **state)
{
    for (size_t i = 0; i < LV_ARRAY_LEN(BAD_LINES); i++) {
        char body[4096];
        lv_buf_t f;
        int calls = 0;
        int n = snprintf(body, sizeof(body), HEAD, 1);
        snprintf(body + n, sizeof(body) - (size_t)n, "%s\n", BAD_LINES[i]);
        seal(&f, body);
        int rc = lv_statefile_parse(f.data, f.len, &LIM, NOW_MS, never_cb, &calls, NULL, NULL);
        if (rc == 0 || calls)
            fail_msg("bad line %zu accepted", i);
        lv_buf_free(&f);
    }
    /* the header's count must match */
    lv_buf_t f;
    char body[4096];
    int n = snprintf(body, sizeof(body), HEAD, 2);
    snprintf(body + n, sizeof(body) - (size_t)n, SESSION_FMT, "{}", "[]");
    seal(&f, body);
    assert_int_equal(lv_statefile_parse(f.data, f.len, &LIM, NOW_MS, NULL, NULL, NULL, NULL), LV_EPARSE);
    lv_buf_free(&f);
    /* an empty line */
    n = snprintf(body, sizeof(body), HEAD, 0);
    snprintf(body + n, sizeof(body) - (size_t)n, "\n");
    seal(&f, body);
    assert_int_equal(lv_statefile_parse(f.data, f.len, &LIM, NOW_MS, NULL, NULL, NULL, NULL), LV_EPARSE);
    lv_buf_free(&f);
}

static void refused_settings_reset(void **state)
{
    lv_buf_t f;
    collect_t c = {0};
    lv_statefile_stats_t st;
    lv_settings_t def;
    lv_settings_defaults(&def);
    one_session_file(&f, "{\"max_tokens\":999999,\"prompt\":\"kept?\"}", "[]");
    assert_int_equal(lv_statefile_parse(f.data, f.len, &LIM, NOW_MS, collect_cb, &c, &st, NULL), 0);
    assert_int_equal(c.n, 1);
    assert_true(c.got[0].settings_reset);
    assert_int_equal(st.settings_reset, 1);
    assert_true(settings_equal(&c.got[0].rec.settings, &def)); /* all or nothing, like a client update */
    collect_free(&c);
    lv_buf_free(&f);
}

static void encode_cuts_broken_utf8(void **state)
{
    lv_statefile_session_t s;
    lv_statefile_line_t *line = NULL;
    lv_buf_t file;
    collect_t c = {0};
    make_session(&s, 1, 0);
    char text[] = "caf\xc3\xa9 \xe2\x82"; /* "café " + the first two bytes of a 3-byte sequence */
    s.answers[0] = (lv_statefile_answer_t){1, 1, 1, text, sizeof(text) - 1, NULL, 0};
    s.answers[1] = (lv_statefile_answer_t){2, 1, 1, NULL, 0, NULL, 0};
    s.n_answers = 2;
    assert_int_equal(lv_statefile_encode_session(&s, &line), 0);
    assert_int_equal(line->data[line->len - 1], '\n');
    assert_null(memchr(line->data, '\n', line->len - 1));
    lv_statefile_line_unref(line);
    make_file(&file, &s, 1, NOW_MS);
    assert_int_equal(lv_statefile_parse(file.data, file.len, &LIM, NOW_MS, collect_cb, &c, NULL, NULL), 0);
    assert_string_equal(c.got[0].answers[0].text, "caf\xc3\xa9 ");
    assert_string_equal(c.got[0].answers[1].text, "");
    collect_free(&c);
    lv_buf_free(&file);
    s.n_answers = LV_STATEFILE_ANSWERS_MAX + 1;
    assert_int_equal(lv_statefile_encode_session(&s, &line), LV_ELIMIT);
    assert_null(line);
}

/* The encoder as it was, through a jansson tree and json_dumps: lv_statefile_encode_session now
 * writes the line itself and must produce the same bytes, so files of either version read alike. */
static char *jansson_line(const lv_statefile_session_t *s)
{
    json_t *o = json_object(), *hist = json_array();
    json_object_set_new(o, "id", json_string(s->rec.id));
    json_object_set_new(o, "secret_sha256", json_string(s->rec.secret_hash));
    json_object_set_new(o, "owner", json_string(s->rec.principal));
    json_object_set_new(o, "tenant", json_string(s->rec.tenant[0] ? s->rec.tenant : "default"));
    json_object_set_new(o, "created_ms", json_integer((json_int_t)s->rec.created_ms));
    json_object_set_new(o, "last_seen_ms", json_integer((json_int_t)s->last_seen_ms));
    json_object_set_new(o, "attached", json_boolean(s->attached));
    json_object_set_new(o, "started", json_boolean(s->rec.started));
    json_object_set_new(o, "answer_seq", json_integer((json_int_t)s->answer_seq));
    json_object_set_new(o, "total_inferences", json_integer((json_int_t)s->rec.total_inferences));
    double avg = s->rec.avg_latency_ms;
    json_object_set_new(o, "avg_latency_ms", json_real(isfinite(avg) && avg >= 0 ? avg : 0.0));
    json_object_set_new(o, "settings", lv_settings_to_json(&s->rec.settings));
    for (size_t i = 0; i < s->n_answers; i++) {
        const lv_statefile_answer_t *a = &s->answers[i];
        json_t *e = json_object();
        json_object_set_new(e, "answer_id", json_integer((json_int_t)a->answer_id));
        json_object_set_new(e, "wall_ms", json_integer((json_int_t)a->wall_ms));
        json_object_set_new(e, "latency_ms", json_real(isfinite(a->latency_ms) && a->latency_ms >= 0 ? a->latency_ms : 0.0));
        json_object_set_new(e, "text", json_stringn(a->text ? a->text : "", a->text ? a->text_len : 0));
        json_array_append_new(hist, e);
    }
    json_object_set_new(o, "history", hist);
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return text;
}

static void assert_line_is_jansson(const lv_statefile_session_t *s)
{
    lv_statefile_line_t *line = NULL;
    char *want = jansson_line(s);
    assert_non_null(want);
    assert_int_equal(lv_statefile_encode_session(s, &line), 0);
    assert_int_equal(line->len, strlen(want) + 1);
    assert_memory_equal(line->data, want, line->len - 1);
    assert_int_equal(line->data[line->len - 1], '\n');
    lv_statefile_line_unref(line);
    free(want);
}

static void encode_matches_jansson(void **state)
{
    lv_statefile_session_t s;
    /* reals of every shape %.17g gives: integral, fractions, exponents both ways, zero, -0 */
    static const double reals[] = {0.0, -0.0, 1.0, 0.3, 123.456, 1e-7, 2.5e-300, 1e22, 1.7976931348623157e308, 4096.125};
    for (size_t n = 0; n <= LV_STATEFILE_ANSWERS_MAX; n += 8) {
        for (size_t r = 0; r < sizeof(reals) / sizeof(reals[0]); r++) {
            make_session(&s, (int)(n + r), n);
            s.rec.avg_latency_ms = reals[r];
            s.rec.settings.temperature = reals[(r + 3) % 10];
            s.rec.settings.debug = r % 2;
            s.rec.settings.max_tokens = r % 3 == 0 ? -5 : (int)r;
            s.attached = r % 2;
            s.rec.created_ms = r == 1 ? (uint64_t)INT64_MAX : 0;
            snprintf(s.rec.tenant, sizeof(s.rec.tenant), "%s", r % 2 ? "acme" : "");
            for (size_t k = 0; k < n; k++)
                s.answers[k].latency_ms = reals[(k + r) % 10];
            assert_line_is_jansson(&s);
            lv_statefile_session_clear(&s);
        }
    }
    /* a full-length text of multi-byte characters, quotes and backslashes */
    make_session(&s, 7, 1);
    free(s.answers[0].text);
    char *big = malloc(LV_STATEFILE_TEXT_MAX + 16);
    for (size_t i = 0; i + 2 <= LV_STATEFILE_TEXT_MAX + 16; i += 2)
        memcpy(big + i, i % 6 == 0 ? "\xc3\xa9" : (i % 6 == 2 ? "\"\\" : "/\n"), 2);
    s.answers[0] = (lv_statefile_answer_t){1, 2, 3, big, LV_STATEFILE_TEXT_MAX, NULL, 0};
    assert_line_is_jansson(&s);
    lv_statefile_session_clear(&s);
    /* what JSON cannot carry is refused as before: not UTF-8 in a string, numbers past int64 */
    lv_statefile_line_t *line = NULL;
    make_session(&s, 8, 0);
    memcpy(s.rec.settings.model, "m\xff", 3);
    assert_int_equal(lv_statefile_encode_session(&s, &line), LV_EINVAL);
    make_session(&s, 8, 0);
    s.answer_seq = (uint64_t)INT64_MAX + 1;
    assert_int_equal(lv_statefile_encode_session(&s, &line), LV_EINVAL);
    make_session(&s, 8, 0);
    s.rec.settings.temperature = NAN;
    assert_int_equal(lv_statefile_encode_session(&s, &line), LV_EINVAL);
    assert_null(line);
}

/* lv_statefile_encode_answer writes each entry's bytes as the session encoder does, and the session
 * encoder copies an entry handed to it encoded (json) instead of formatting it. */
static void encode_answer_pieces(void **state)
{
    lv_statefile_session_t *s = malloc(sizeof(*s));
    lv_statefile_line_t *plain = NULL, *pieced = NULL;
    lv_buf_t pieces[LV_STATEFILE_ANSWERS_MAX], b;
    assert_non_null(s);
    make_session(s, 5, LV_STATEFILE_ANSWERS_MAX);
    static const double lat[] = {0.1, 1e-7, 12345.678, 42.0, 0.0, -3.0, 1e17, 99999999999999984.0, 2.5e-300};
    for (size_t k = 0; k < LV_STATEFILE_ANSWERS_MAX; k++)
        s->answers[k].latency_ms = lat[k % LV_ARRAY_LEN(lat)];
    assert_int_equal(lv_statefile_encode_session(s, &plain), 0);
    for (size_t k = 0; k < LV_STATEFILE_ANSWERS_MAX; k++) {
        lv_buf_init(&pieces[k], LV_STATEFILE_ANSWER_JSON_MAX);
        assert_int_equal(lv_buf_append(&pieces[k], "..", 2), 0); /* appends after what is there */
        assert_int_equal(lv_statefile_encode_answer(&s->answers[k], &pieces[k]), 0);
        assert_memory_equal(pieces[k].data, "..{\"answer_id\":", 15);
        /* the piece is the very bytes the line holds for the entry */
        assert_non_null(memmem(plain->data, plain->len, pieces[k].data + 2, pieces[k].len - 2));
        s->answers[k].json = pieces[k].data + 2;
        s->answers[k].json_len = pieces[k].len - 2;
    }
    /* whatever the size hint (none, too small, the line's, past the line cap) */
    static const size_t hints[] = {0, 1, 0, SIZE_MAX};
    for (size_t h = 0; h < LV_ARRAY_LEN(hints); h++) {
        s->size_hint = h == 2 ? plain->len : hints[h];
        assert_int_equal(lv_statefile_encode_session(s, &pieced), 0);
        assert_int_equal(pieced->len, plain->len);
        assert_memory_equal(pieced->data, plain->data, plain->len);
        lv_statefile_line_unref(pieced);
    }
    /* the pieces are copied, not checked: a caller's form is what the line gets */
    s->answers[1].json = "{\"answer_id\":7}";
    s->answers[1].json_len = strlen(s->answers[1].json);
    assert_int_equal(lv_statefile_encode_session(s, &pieced), 0);
    assert_non_null(memmem(pieced->data, pieced->len, "},{\"answer_id\":7},{", 19));
    lv_statefile_line_unref(pieced);
    for (size_t k = 0; k < LV_STATEFILE_ANSWERS_MAX; k++)
        lv_buf_free(&pieces[k]);
    lv_statefile_line_unref(plain);
    lv_statefile_session_clear(s);

    /* the longest entry fits LV_STATEFILE_ANSWER_JSON_MAX */
    char *ctl = malloc(LV_STATEFILE_TEXT_MAX);
    assert_non_null(ctl);
    memset(ctl, 1, LV_STATEFILE_TEXT_MAX);
    lv_statefile_answer_t big = {.answer_id = INT64_MAX, .wall_ms = INT64_MAX, .latency_ms = 1.2345678901234567e-300,
                                 .text = ctl, .text_len = LV_STATEFILE_TEXT_MAX};
    lv_buf_init(&b, LV_STATEFILE_ANSWER_JSON_MAX);
    assert_int_equal(lv_statefile_encode_answer(&big, &b), 0);
    assert_int_equal(b.len, 47 + 19 + 19 + 23 + 2 + 6 * LV_STATEFILE_TEXT_MAX);
    lv_buf_free(&b);
    /* all or nothing: a number past int64, a full buffer leave it as it was */
    lv_buf_init(&b, 64);
    assert_int_equal(lv_buf_append(&b, "xyz", 3), 0);
    big.answer_id = (uint64_t)INT64_MAX + 1;
    assert_int_equal(lv_statefile_encode_answer(&big, &b), LV_EINVAL);
    assert_int_equal(b.len, 3);
    big.answer_id = 1;
    big.wall_ms = (uint64_t)INT64_MAX + 1;
    assert_int_equal(lv_statefile_encode_answer(&big, &b), LV_EINVAL);
    assert_int_equal(b.len, 3);
    big.wall_ms = 1;
    assert_int_equal(lv_statefile_encode_answer(&big, &b), LV_ELIMIT); /* the text is over 64 bytes */
    assert_int_equal(b.len, 3);
    assert_string_equal(b.data, "xyz");
    lv_buf_free(&b);
    free(ctl);
    free(s);
}

/* ---------- one line alone (lv_statefile_parse_line: the cluster's records) ---------- */

static void assert_same_session(const lv_statefile_session_t *a, const lv_statefile_session_t *b)
{
    assert_string_equal(a->rec.id, b->rec.id);
    assert_string_equal(a->rec.secret_hash, b->rec.secret_hash);
    assert_string_equal(a->rec.principal, b->rec.principal);
    assert_true(settings_equal(&a->rec.settings, &b->rec.settings));
    assert_int_equal(a->rec.started, b->rec.started);
    assert_int_equal(a->rec.created_ms, b->rec.created_ms);
    assert_int_equal(a->rec.total_inferences, b->rec.total_inferences);
    assert_true(a->rec.avg_latency_ms == b->rec.avg_latency_ms);
    assert_int_equal(a->attached, b->attached);
    assert_int_equal(a->last_seen_ms, b->last_seen_ms);
    assert_int_equal(a->answer_seq, b->answer_seq);
    assert_int_equal(a->n_answers, b->n_answers);
    for (size_t k = 0; k < a->n_answers; k++) {
        assert_int_equal(a->answers[k].answer_id, b->answers[k].answer_id);
        assert_int_equal(a->answers[k].wall_ms, b->answers[k].wall_ms);
        assert_true(a->answers[k].latency_ms == b->answers[k].latency_ms);
        assert_string_equal(a->answers[k].text, b->answers[k].text);
        assert_int_equal(a->answers[k].text_len, b->answers[k].text_len);
    }
}

/* *s after a refused parse: nothing owned, nothing half-filled that a caller could mistake */
static void assert_parse_line_refused(const char *p, size_t len, const char *what)
{
    lv_statefile_session_t *s = malloc(sizeof(*s));
    const char *why = NULL;
    assert_non_null(s);
    memset(s, 0x5a, sizeof(*s));
    int rc = lv_statefile_parse_line(p, len, NOW_MS, s, &why);
    if (rc == 0)
        fail_msg("%s: accepted", what);
    assert_non_null(why);
    assert_int_equal(s->n_answers, 0);
    lv_statefile_session_clear(s); /* must be safe (and free nothing) */
    free(s);
}

static void parse_line_round_trip(void **state)
{
    lv_statefile_session_t *in = malloc(sizeof(*in)), *out = malloc(sizeof(*out));
    assert_non_null(in);
    assert_non_null(out);
    for (int i = 0; i < 3; i++) {
        lv_statefile_line_t *line = NULL;
        const char *why = "unset";
        make_session(in, i, (size_t)(i == 0 ? 0 : i == 1 ? 3 : LV_STATEFILE_ANSWERS_MAX));
        in->attached = i == 2;
        assert_int_equal(lv_statefile_encode_session(in, &line), 0);
        /* as stored (with its newline), and without it: both are one line */
        for (int trim = 0; trim < 2; trim++) {
            assert_int_equal(lv_statefile_parse_line(line->data, line->len - (size_t)trim, NOW_MS, out, &why), 0);
            assert_null(why);
            assert_same_session(in, out);
            assert_false(out->settings_reset);
            /* detached: aged from its last_seen; attached: being resumed now */
            assert_int_equal(out->age_ms, i == 2 ? 0 : 1000);
            lv_statefile_session_clear(out);
        }
        /* what the line parser gives back encodes to the very same bytes */
        assert_int_equal(lv_statefile_parse_line(line->data, line->len, NOW_MS, out, NULL), 0);
        lv_statefile_line_t *again = NULL;
        assert_int_equal(lv_statefile_encode_session(out, &again), 0);
        assert_int_equal(again->len, line->len);
        assert_memory_equal(again->data, line->data, line->len);
        lv_statefile_line_unref(again);
        lv_statefile_session_clear(out);
        /* a clock behind the record's last_seen gives age 0, not a wrapped one */
        assert_int_equal(lv_statefile_parse_line(line->data, line->len, 5, out, NULL), 0);
        assert_int_equal(out->age_ms, 0);
        lv_statefile_session_clear(out);
        lv_statefile_line_unref(line);
        lv_statefile_session_clear(in);
    }
    /* settings a newer rule refuses reset to the defaults, as in a file */
    char text[4096];
    lv_settings_t def;
    lv_settings_defaults(&def);
    int n = snprintf(text, sizeof(text), SESSION_FMT, "{\"max_tokens\":999999}", "[]");
    assert_int_equal(lv_statefile_parse_line(text, (size_t)n, NOW_MS, out, NULL), 0);
    assert_true(out->settings_reset);
    assert_true(settings_equal(&out->rec.settings, &def));
    assert_int_equal(out->age_ms, NOW_MS - 1699999999000ull);
    lv_statefile_session_clear(out);
    free(in);
    free(out);
}

static void parse_line_rejects(void **state)
{
    char text[8192];
    /* every line the file parser refuses */
    for (size_t i = 0; i < LV_ARRAY_LEN(BAD_LINES); i++) {
        snprintf(text, sizeof(text), "bad line %zu", i);
        assert_parse_line_refused(BAD_LINES[i], strlen(BAD_LINES[i]), text);
    }
    assert_parse_line_refused("", 0, "empty");
    assert_parse_line_refused("\n", 1, "a bare newline");
    /* a good line cut anywhere (the newline aside) is refused */
    lv_statefile_session_t *s = malloc(sizeof(*s));
    lv_statefile_line_t *line = NULL;
    assert_non_null(s);
    make_session(s, 4, 2);
    assert_int_equal(lv_statefile_encode_session(s, &line), 0);
    lv_statefile_session_clear(s);
    for (size_t cut = 0; cut + 1 < line->len; cut++)
        assert_parse_line_refused(line->data, cut, "a cut line");
    /* a newline inside (JSON whitespace, but a file never has one: two lines there) */
    int n = snprintf(text, sizeof(text), "{\n%.*s", (int)(line->len - 1), line->data + 1);
    assert_parse_line_refused(text, (size_t)n, "an inner newline");
    /* a second line behind the first */
    n = snprintf(text, sizeof(text), "%.*s%.*s", (int)line->len, line->data, (int)line->len, line->data);
    assert_parse_line_refused(text, (size_t)n, "two lines");
    /* a NUL byte inside */
    memcpy(text, line->data, line->len);
    text[line->len / 2] = '\0';
    assert_parse_line_refused(text, line->len, "a NUL byte");
    lv_statefile_line_unref(line);

    /* caps: too many answers, a text over the cap, a line over the cap */
    lv_buf_t b;
    lv_buf_init(&b, 4u << 20);
    assert_int_equal(lv_buf_append_str(&b, "["), 0);
    for (int k = 0; k <= LV_STATEFILE_ANSWERS_MAX; k++)
        assert_int_equal(lv_buf_printf(&b, "%s{\"answer_id\":%d,\"wall_ms\":1,\"latency_ms\":1,\"text\":\"x\"}",
                                       k ? "," : "", k + 1),
                         0);
    assert_int_equal(lv_buf_append_str(&b, "]"), 0);
    assert_int_equal(lv_buf_append(&b, "", 1), 0);
    char *big = malloc(b.len + sizeof(SESSION_FMT) + 64);
    assert_non_null(big);
    n = session_line_fmt(big, b.len + sizeof(SESSION_FMT) + 64, "{}", b.data);
    assert_int_equal(lv_statefile_parse_line(big, (size_t)n, NOW_MS, s, NULL), LV_ELIMIT);
    free(big);
    lv_buf_free(&b);

    char *long_text = malloc(LV_STATEFILE_TEXT_MAX + 2);
    assert_non_null(long_text);
    memset(long_text, 'a', LV_STATEFILE_TEXT_MAX + 1);
    long_text[LV_STATEFILE_TEXT_MAX + 1] = '\0';
    lv_buf_init(&b, 4u << 20);
    assert_int_equal(lv_buf_printf(&b, "[{\"answer_id\":1,\"wall_ms\":1,\"latency_ms\":1,\"text\":\"%s\"}]", long_text), 0);
    assert_int_equal(lv_buf_append(&b, "", 1), 0);
    big = malloc(b.len + sizeof(SESSION_FMT) + 64);
    assert_non_null(big);
    n = session_line_fmt(big, b.len + sizeof(SESSION_FMT) + 64, "{}", b.data);
    assert_int_equal(lv_statefile_parse_line(big, (size_t)n, NOW_MS, s, NULL), LV_ELIMIT);
    free(big);
    free(long_text);
    lv_buf_free(&b);

    size_t huge_len = LV_STATEFILE_LINE_MAX + 1;
    char *huge = malloc(huge_len);
    assert_non_null(huge);
    memset(huge, ' ', huge_len);
    huge[0] = '{';
    huge[huge_len - 1] = '}';
    assert_int_equal(lv_statefile_parse_line(huge, huge_len, NOW_MS, s, NULL), LV_ELIMIT);
    free(huge);
    free(s);
}

/* ---------- the registry's snapshot and restore ---------- */

typedef struct {
    lv_store_t *store;
    lv_registry_t *reg;
} fx_t;

static void fx_init(fx_t *fx, size_t max_sessions)
{
    lv_registry_caps_t caps = {.max_sessions = max_sessions, .max_sessions_per_principal = 100};
    assert_int_equal(lv_store_mem_create(1000, &fx->store), 0);
    assert_int_equal(lv_registry_create(fx->store, &caps, &fx->reg), 0);
}

static void fx_free(fx_t *fx)
{
    lv_registry_destroy(fx->reg);
    fx->store->ops->destroy(fx->store);
}

static int restore_cb(void *ud, const lv_statefile_session_t *s)
{
    fx_t *fx = ud;
    return lv_registry_restore(fx->reg, s, 5000000);
}

static void snapshot_file(lv_registry_t *reg, lv_buf_t *file)
{
    lv_statefile_snap_t snap;
    memset(&snap, 0, sizeof(snap));
    assert_int_equal(lv_registry_snapshot(reg, true, SIZE_MAX, LV_STATEFILE_MAX_BYTES, &snap), 0);
    snap.saved_ms = lv_wall_ms();
    lv_buf_init(file, 64u << 20);
    assert_int_equal(lv_statefile_emit(&snap, buf_sink, file), 0);
    lv_statefile_snap_clear(&snap);
}

static void registry_restart(void **state)
{
    fx_t a, b;
    char secret[65], secret2[65];
    lv_session_t *s, *s2, *r;
    lv_buf_t file;
    lv_statefile_stats_t st;
    lv_settings_t set;
    fx_init(&a, 10);
    lv_settings_defaults(&set);
    snprintf(set.prompt, sizeof(set.prompt), "Describe the cat.");
    set.max_tokens = 77;
    assert_int_equal(lv_session_create(a.reg, "1.2.3.4", NULL, &set, secret, &s), 0);
    assert_int_equal(lv_session_create(a.reg, "5.6.7.8", NULL, NULL, secret2, &s2), 0);
    s->n_viewers = 1;
    lv_session_attach_changed(s, 1000);
    lv_session_attach_changed(s2, 1000); /* s2 detached */
    lv_session_set_started(a.reg, s, true, 1000);
    for (uint64_t i = 1; i <= LV_HISTORY_MAX + 3; i++) {
        char t[32];
        int n = snprintf(t, sizeof(t), "answer %llu", (unsigned long long)i);
        lv_session_history_add(s, i, t, (size_t)n, 5.0, 1000 + i);
    }
    s->answer_seq = LV_HISTORY_MAX + 3;
    s->rec.total_inferences = LV_HISTORY_MAX + 3;
    lv_session_save(a.reg, s);
    snapshot_file(a.reg, &file);

    fx_init(&b, 10);
    assert_int_equal(lv_statefile_parse(file.data, file.len, &LIM, lv_wall_ms(), restore_cb, &b, &st, NULL), 0);
    assert_int_equal(st.delivered, 2);
    assert_int_equal(st.refused, 0);
    assert_int_equal(lv_registry_count(b.reg), 2);
    /* the same secret opens the same session; another does not */
    assert_int_equal(lv_session_resume(b.reg, s->rec.id, secret2, &r), LV_ENOTFOUND);
    assert_int_equal(lv_session_resume(b.reg, s->rec.id, secret, &r), 0);
    assert_string_equal(r->rec.id, s->rec.id);
    assert_string_equal(r->rec.principal, "1.2.3.4");
    assert_string_equal(r->rec.settings.prompt, "Describe the cat.");
    assert_int_equal(r->rec.settings.max_tokens, 77);
    assert_true(r->rec.started);
    assert_false(lv_queue_empty(lv_registry_started(b.reg)));
    assert_int_equal(r->history_len, LV_HISTORY_MAX);
    assert_string_equal(lv_session_history_at(r, 0)->text, "answer 4");
    assert_string_equal(lv_session_history_at(r, LV_HISTORY_MAX - 1)->text, "answer 23");
    assert_int_equal(r->answer_seq, LV_HISTORY_MAX + 3);
    assert_int_equal(r->rec.total_inferences, LV_HISTORY_MAX + 3);
    /* restored sessions have no socket and are on their idle clock */
    assert_int_equal(r->n_viewers, 0);
    assert_true(r->detached_since_ms > 0);
    assert_int_equal(lv_registry_principal_count(b.reg, "1.2.3.4"), 1);
    assert_int_equal(lv_session_resume(b.reg, s2->rec.id, secret2, &r), 0);
    /* they expire like any session */
    assert_int_equal(lv_registry_sweep(b.reg, 5000000 + 3600000, 600000, 100000, NULL, NULL), 2);
    assert_int_equal(lv_registry_count(b.reg), 0);

    /* a second load of the same file into a registry that has them: refused as duplicates */
    fx_t c;
    fx_init(&c, 1);
    assert_int_equal(lv_statefile_parse(file.data, file.len, &LIM, lv_wall_ms(), restore_cb, &c, &st, NULL), 0);
    assert_int_equal(lv_registry_count(c.reg), 1); /* max_sessions 1 */
    assert_int_equal(st.refused, 1);
    assert_int_equal(lv_statefile_parse(file.data, file.len, &LIM, lv_wall_ms(), restore_cb, &c, &st, NULL), 0);
    assert_int_equal(st.refused, 2);

    lv_buf_free(&file);
    fx_free(&a);
    fx_free(&b);
    fx_free(&c);
}

/* The dirty list (what the cluster's write-behind walks): each changed session once, oldest change
 * first, off the list once encoded or removed; a restored session is encoded already. */
static void dirty_list(void **state)
{
    fx_t fx;
    lv_session_t *s[3], *t = NULL;
    char secret[65];
    fx_init(&fx, 10);
    for (int i = 0; i < 3; i++)
        assert_int_equal(lv_session_create(fx.reg, "1.2.3.4", NULL, NULL, secret, &s[i]), 0);
    /* created: dirty, in creation order; a second change does not queue it twice */
    lv_session_mark_dirty(s[0]);
    for (int i = 0; i < 3; i++)
        assert_ptr_equal(lv_registry_dirty_pop(fx.reg), s[i]);
    assert_null(lv_registry_dirty_pop(fx.reg));
    /* popped but not encoded: still dirty (the snapshot would encode it); put back, it returns */
    assert_true(s[1]->persist_dirty);
    lv_session_mark_dirty(s[1]);
    assert_ptr_equal(lv_registry_dirty_pop(fx.reg), s[1]);
    assert_null(lv_registry_dirty_pop(fx.reg));
    for (int i = 0; i < 3; i++) {
        assert_int_equal(lv_session_encode(s[i]), 0);
        assert_false(s[i]->persist_dirty);
        assert_non_null(s[i]->persist_line);
    }
    /* every change the registry makes queues it: history, start, attach/detach, save */
    lv_session_history_add(s[2], 1, "a", 1, 1.0, 1);
    lv_session_set_started(fx.reg, s[0], true, 1000);
    s[1]->n_viewers = 1;
    lv_session_attach_changed(s[1], 1000);
    lv_session_save(fx.reg, s[0]);
    assert_ptr_equal(lv_registry_dirty_pop(fx.reg), s[2]);
    assert_ptr_equal(lv_registry_dirty_pop(fx.reg), s[0]);
    assert_ptr_equal(lv_registry_dirty_pop(fx.reg), s[1]);
    assert_null(lv_registry_dirty_pop(fx.reg));
    /* encoding takes it off the list; removing a queued one too */
    lv_session_mark_dirty(s[0]);
    lv_session_mark_dirty(s[2]);
    assert_int_equal(lv_session_encode(s[0]), 0);
    s[1]->n_viewers = 0;
    lv_session_attach_changed(s[1], 2000);
    lv_registry_remove(fx.reg, s[2]);
    assert_ptr_equal(lv_registry_dirty_pop(fx.reg), s[1]);
    assert_null(lv_registry_dirty_pop(fx.reg));
    /* a restored session comes encoded, off the list, with the line it was restored from */
    lv_statefile_session_t *saved = malloc(sizeof(*saved));
    lv_statefile_line_t *line = NULL;
    assert_non_null(saved);
    make_session(saved, 9, 3);
    assert_int_equal(lv_statefile_encode_session(saved, &line), 0);
    assert_int_equal(lv_registry_restore(fx.reg, saved, 5000000), 0);
    t = lv_session_find(fx.reg, saved->rec.id);
    assert_non_null(t);
    assert_false(t->persist_dirty);
    assert_null(lv_registry_dirty_pop(fx.reg));
    assert_ptr_equal(t->reg, fx.reg);
    lv_statefile_session_t *back = malloc(sizeof(*back));
    assert_non_null(back);
    assert_int_equal(lv_statefile_parse_line(t->persist_line->data, t->persist_line->len, NOW_MS, back, NULL), 0);
    back->last_seen_ms = saved->last_seen_ms; /* restored with age 0: last seen when restored */
    assert_same_session(saved, back);
    lv_statefile_session_clear(back);
    free(back);
    lv_statefile_line_unref(line);
    lv_statefile_session_clear(saved);
    free(saved);
    fx_free(&fx); /* sessions still queued are freed with it */
}

/* ---------- cached history entries (lv_history_entry_t.json) ---------- */

typedef struct {
    const char *p;
    size_t n;
} text_t;
#define TEXT(lit) {lit, sizeof(lit) - 1}

/* What the encoder treats apart: quotes and backslashes, control characters (escaped; a text made
 * of them has a form too long to cache), UTF-8 of 2 to 4 bytes, a cut UTF-8 sequence at the end
 * (dropped), empty, an inner NUL (the C string ends there, as it always did) */
static const text_t ODD_TEXTS[] = {
    TEXT("A cat sits on a mat."),
    TEXT("say \"hi\" \\ back\\slash \\\""),
    TEXT("tab\tnew\nline\rcr\b\f \x01\x1f\x7f end"),
    TEXT("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\x88 \xe4\xb8\xad\xe6\x96\x87"),
    TEXT("cut \xe2\x82"),
    TEXT(""),
    TEXT("\x01\x02\x03\x04\x05\x06\x07\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f"
         "\x01\x02\x03\x04\x05\x06\x07\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f"),
    TEXT("inner\0nul"),
};
/* fractions, tiny and huge exponents, integers (with and without printf), what is saved as 0 */
static const double ODD_LATENCIES[] = {0.1, 1e-7, 12345.678, 42.0, 0.0, 3.0000000000000004, 1e17,
                                       99999999999999984.0, 2.5e-300, -1.0, 7.0, 1e22};

/* s's line as the encoder writes it with no cached entry: the fields as lv_session_encode read them
 * before the cache (strlen of the texts), nothing pre-encoded, no size hint */
static lv_statefile_line_t *uncached_line(const lv_session_t *s)
{
    lv_statefile_session_t *v = calloc(1, sizeof(*v));
    lv_statefile_line_t *line = NULL;
    assert_non_null(v);
    v->rec = s->rec;
    v->attached = lv_session_attached(s);
    v->last_seen_ms = s->detached_wall_ms;
    v->answer_seq = s->answer_seq;
    v->n_answers = s->history_len;
    for (size_t i = 0; i < s->history_len; i++) {
        const lv_history_entry_t *e = lv_session_history_at(s, i);
        v->answers[i] = (lv_statefile_answer_t){.answer_id = e->answer_id, .wall_ms = e->wall_ms,
                                                .latency_ms = e->latency_ms, .text = e->text,
                                                .text_len = e->text ? strlen(e->text) : 0};
    }
    assert_int_equal(lv_statefile_encode_session(v, &line), 0);
    free(v);
    return line;
}

static void assert_line_equal(const lv_statefile_line_t *a, const lv_statefile_line_t *b)
{
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(a->len, b->len);
    assert_memory_equal(a->data, b->data, a->len);
}

/* Every cached form is the entry's encoding; an entry is left uncached only for being too long. */
static size_t check_cached(const lv_session_t *s)
{
    size_t cached = 0;
    for (size_t i = 0; i < s->history_len; i++) {
        const lv_history_entry_t *e = lv_session_history_at(s, i);
        lv_statefile_answer_t a = {.answer_id = e->answer_id, .wall_ms = e->wall_ms, .latency_ms = e->latency_ms,
                                   .text = e->text, .text_len = strlen(e->text)};
        lv_buf_t b;
        lv_buf_init(&b, LV_STATEFILE_ANSWER_JSON_MAX);
        assert_int_equal(lv_statefile_encode_answer(&a, &b), 0);
        assert_int_equal(e->text_len, a.text_len);
        if (e->json) {
            assert_int_equal(e->json_len, b.len);
            assert_memory_equal(e->json, b.data, b.len);
            assert_true(e->json_len <= 2 * e->text_len + 128);
            cached++;
        } else {
            assert_true(b.len > 2 * e->text_len + 128);
        }
        lv_buf_free(&b);
    }
    return cached;
}

/* A session whose history ring wrapped, re-encoded as answers come in, writes the bytes the encoder
 * writes without the cache; the cache is what the line is copied from. */
static void cached_history_same_bytes(void **state)
{
    fx_t fx;
    char secret[65];
    lv_session_t *s;
    lv_settings_t set;
    lv_statefile_line_t *want = NULL;
    fx_init(&fx, 10);
    lv_settings_defaults(&set);
    snprintf(set.prompt, sizeof(set.prompt), "Describe \"it\" \\ briefly\n\xc3\xa9");
    set.temperature = 0.7;
    assert_int_equal(lv_session_create(fx.reg, "10.1.2.3", "acme", &set, secret, &s), 0);
    s->rec.total_inferences = 5;
    s->rec.avg_latency_ms = 321.25;
    size_t n_total = 2 * LV_HISTORY_MAX + 3, cached = 0;
    for (size_t i = 0; i < n_total; i++) {
        const text_t *t = &ODD_TEXTS[i % LV_ARRAY_LEN(ODD_TEXTS)];
        lv_session_history_add(s, i + 1, t->p, t->n, ODD_LATENCIES[i % LV_ARRAY_LEN(ODD_LATENCIES)],
                               NOW_MS + 1000 * i);
        s->answer_seq = i + 1;
        if (i % 3 != 0 && i + 1 != n_total)
            continue; /* several answers between writes: some new entries at each encode */
        assert_int_equal(lv_session_encode(s), 0);
        want = uncached_line(s);
        assert_line_equal(s->persist_line, want);
        lv_statefile_line_unref(want);
        cached = check_cached(s);
    }
    assert_int_equal(s->history_len, LV_HISTORY_MAX);
    assert_int_not_equal(s->history_head, 0); /* wrapped */
    size_t too_long = 0; /* the entries of control characters only */
    for (size_t i = n_total - LV_HISTORY_MAX; i < n_total; i++)
        too_long += i % LV_ARRAY_LEN(ODD_TEXTS) == 6;
    assert_true(too_long > 0);
    assert_int_equal(cached, LV_HISTORY_MAX - too_long);
    /* encoding again without a change (an attach, a counter) copies every entry, same bytes */
    s->rec.total_inferences++;
    lv_session_mark_dirty(s);
    assert_int_equal(lv_session_encode(s), 0);
    want = uncached_line(s);
    assert_line_equal(s->persist_line, want);

    /* the line is copied from the cache: a different cached form shows in it */
    lv_history_entry_t *e = &s->history[(s->history_head + 2) % LV_HISTORY_MAX];
    assert_non_null(e->json);
    char *real_form = e->json;
    e->json = strdup("{\"answer_id\":999999}");
    e->json_len = strlen(e->json);
    lv_session_mark_dirty(s);
    assert_int_equal(lv_session_encode(s), 0);
    assert_int_not_equal(s->persist_line->len, want->len);
    assert_non_null(memmem(s->persist_line->data, s->persist_line->len, "},{\"answer_id\":999999},{", 24));
    free(e->json);
    e->json = real_form;
    e->json_len = strlen(real_form);
    /* with every cached form cleared, it encodes (and caches) the same */
    for (size_t i = 0; i < LV_HISTORY_MAX; i++) {
        free(s->history[i].json);
        s->history[i].json = NULL;
        s->history[i].json_len = 0;
    }
    lv_session_mark_dirty(s);
    assert_int_equal(lv_session_encode(s), 0);
    assert_line_equal(s->persist_line, want);
    assert_int_equal(check_cached(s), cached);
    lv_statefile_line_unref(want);

    /* and it reads back as the history it holds */
    lv_statefile_session_t *back = malloc(sizeof(*back));
    assert_non_null(back);
    assert_int_equal(lv_statefile_parse_line(s->persist_line->data, s->persist_line->len, NOW_MS, back, NULL), 0);
    assert_int_equal(back->n_answers, LV_HISTORY_MAX);
    for (size_t i = 0; i < LV_HISTORY_MAX; i++) {
        const lv_history_entry_t *h = lv_session_history_at(s, i);
        const lv_statefile_answer_t *a = &back->answers[i];
        double lat = isfinite(h->latency_ms) && h->latency_ms >= 0 ? h->latency_ms : 0.0;
        assert_int_equal(a->answer_id, h->answer_id);
        assert_int_equal(a->wall_ms, h->wall_ms);
        assert_true(a->latency_ms == lat);
        /* the text, less a cut UTF-8 sequence at its end */
        assert_true(a->text_len <= h->text_len && h->text_len - a->text_len <= 3);
        assert_memory_equal(a->text, h->text, a->text_len);
    }
    lv_statefile_session_clear(back);
    free(back);
    fx_free(&fx);
}

/* A session restored from a line encodes to that line, and restore -> encode -> restore keeps
 * everything (settings, counters, the whole history ring). */
static void restored_session_encodes_its_line(void **state)
{
    fx_t fx[2];
    lv_statefile_session_t *in = malloc(sizeof(*in)), *parsed = malloc(sizeof(*parsed));
    lv_statefile_line_t *line = NULL;
    assert_non_null(in);
    assert_non_null(parsed);
    make_session(in, 6, LV_HISTORY_MAX);
    in->rec.settings.temperature = 1.25;
    snprintf(in->rec.tenant, sizeof(in->rec.tenant), "acme");
    for (size_t k = 0; k < LV_HISTORY_MAX; k++) {
        /* every odd text but the inner NUL, which no line carries (jansson refuses \u0000) */
        const text_t *t = &ODD_TEXTS[k % (LV_ARRAY_LEN(ODD_TEXTS) - 1)];
        free(in->answers[k].text);
        in->answers[k].text = malloc(t->n + 1);
        assert_non_null(in->answers[k].text);
        memcpy(in->answers[k].text, t->p, t->n + 1);
        in->answers[k].text_len = t->n;
        in->answers[k].latency_ms = ODD_LATENCIES[k % LV_ARRAY_LEN(ODD_LATENCIES)];
    }
    assert_int_equal(lv_statefile_encode_session(in, &line), 0);
    const lv_statefile_line_t *from = line;
    for (int round = 0; round < 2; round++) {
        fx_init(&fx[round], 10);
        assert_int_equal(lv_statefile_parse_line(from->data, from->len, lv_wall_ms(), parsed, NULL), 0);
        assert_int_equal(lv_registry_restore(fx[round].reg, parsed, 5000000), 0);
        lv_session_t *r = lv_session_find(fx[round].reg, in->rec.id);
        assert_non_null(r);
        assert_non_null(r->persist_line); /* encoded (and its entries cached) when restored */
        assert_int_equal(check_cached(r), LV_HISTORY_MAX - 2); /* all but the control characters' (k 6, 13) */
        /* "last seen" comes back from the age, against the wall clock: put it back as saved */
        r->detached_wall_ms = in->last_seen_ms;
        lv_session_mark_dirty(r);
        assert_int_equal(lv_session_encode(r), 0);
        assert_line_equal(r->persist_line, line);
        lv_statefile_line_t *plain = uncached_line(r);
        assert_line_equal(plain, line);
        lv_statefile_line_unref(plain);
        /* everything is back: the line it writes parses to the session it came from */
        lv_statefile_session_t *again = malloc(sizeof(*again));
        assert_non_null(again);
        assert_int_equal(lv_statefile_parse_line(r->persist_line->data, r->persist_line->len, NOW_MS, again, NULL), 0);
        assert_same_session(parsed, again);
        assert_string_equal(again->rec.tenant, "acme");
        lv_statefile_session_clear(again);
        free(again);
        lv_statefile_session_clear(parsed);
        from = r->persist_line; /* the next round restores from the restored session's line */
    }
    fx_free(&fx[0]);
    fx_free(&fx[1]);
    lv_statefile_line_unref(line);
    lv_statefile_session_clear(in);
    free(in);
    free(parsed);
}

static void snapshot_only_when_changed(void **state)
{
    fx_t a;
    char secret[65];
    lv_session_t *s[3];
    lv_statefile_snap_t snap;
    fx_init(&a, 10);
    memset(&snap, 0, sizeof(snap));
    assert_int_equal(lv_registry_snapshot(a.reg, false, SIZE_MAX, SIZE_MAX, &snap), LV_EAGAIN);
    for (int i = 0; i < 3; i++)
        assert_int_equal(lv_session_create(a.reg, "1.1.1.1", NULL, NULL, secret, &s[i]), 0);
    /* a budget of one byte encodes one session per call; the others wait */
    assert_int_equal(lv_registry_snapshot(a.reg, false, 1, SIZE_MAX, &snap), 0);
    assert_int_equal(snap.n, 1);
    lv_statefile_snap_clear(&snap);
    assert_int_equal(lv_registry_snapshot(a.reg, false, 1, SIZE_MAX, &snap), 0);
    assert_int_equal(snap.n, 2);
    lv_statefile_snap_clear(&snap);
    assert_int_equal(lv_registry_snapshot(a.reg, false, 1, SIZE_MAX, &snap), 0);
    assert_int_equal(snap.n, 3);
    lv_statefile_snap_clear(&snap);
    assert_int_equal(lv_registry_snapshot(a.reg, false, 1, SIZE_MAX, &snap), LV_EAGAIN);
    assert_int_equal(snap.n, 0);
    /* force writes anyway */
    assert_int_equal(lv_registry_snapshot(a.reg, true, 1, SIZE_MAX, &snap), 0);
    assert_int_equal(snap.n, 3);
    size_t one = snap.lines[0]->len;
    lv_statefile_snap_clear(&snap);
    /* a change to one session re-encodes it */
    snprintf(s[1]->rec.settings.prompt, sizeof(s[1]->rec.settings.prompt), "new");
    lv_session_save(a.reg, s[1]);
    assert_int_equal(lv_registry_snapshot(a.reg, false, SIZE_MAX, SIZE_MAX, &snap), 0);
    lv_statefile_snap_clear(&snap);
    assert_int_equal(lv_registry_snapshot(a.reg, false, SIZE_MAX, SIZE_MAX, &snap), LV_EAGAIN);
    /* the byte cap leaves sessions out and counts them */
    assert_int_equal(lv_registry_snapshot(a.reg, true, SIZE_MAX, one + 1, &snap), 0);
    assert_int_equal(snap.n, 1);
    assert_int_equal(snap.skipped, 2);
    lv_statefile_snap_clear(&snap);
    /* a removal is a change */
    s[0]->n_viewers = 0;
    lv_session_attach_changed(s[0], 1);
    assert_int_equal(lv_registry_snapshot(a.reg, false, SIZE_MAX, SIZE_MAX, &snap), 0);
    lv_statefile_snap_clear(&snap);
    assert_int_equal(lv_registry_sweep(a.reg, 1000000, 1000, 100000, NULL, NULL), 1);
    assert_int_equal(lv_registry_snapshot(a.reg, false, SIZE_MAX, SIZE_MAX, &snap), 0);
    assert_int_equal(snap.n, 2);
    lv_statefile_snap_clear(&snap);
    fx_free(&a);
}

/* ---------- the writer ---------- */

typedef struct {
    fx_t *fx;
    int calls;
} persist_ud_t;

static int persist_snapshot(void *ud, bool force, size_t budget, size_t max_bytes, lv_statefile_snap_t *out)
{
    persist_ud_t *p = ud;
    p->calls++;
    return lv_registry_snapshot(p->fx->reg, force, budget, max_bytes, out);
}

static void on_keepalive(uv_timer_t *t) {}

static void tmp_dir(char *dir, size_t size)
{
    snprintf(dir, size, "%s/lv-statefile-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(dir));
}

static void rm_dir(const char *dir)
{
    static const char *const names[] = {"sessions.db", "sessions.db.lock", "sessions.db.tmp", "sessions.db.corrupt"};
    char path[600];
    for (size_t i = 0; i < LV_ARRAY_LEN(names); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

static void persist_file(void **state)
{
    char dir[512], path[600], aside[640];
    uv_loop_t loop;
    fx_t a, b;
    lv_persist_t *p = NULL, *p2 = NULL;
    lv_session_t *s;
    char secret[65];
    struct stat st;
    lv_statefile_stats_t stats;
    const char *why;
    persist_ud_t ud = {&a, 0};
    tmp_dir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/sessions.db", dir);
    snprintf(aside, sizeof(aside), "%s.corrupt", path);
    assert_int_equal(uv_loop_init(&loop), 0);
    fx_init(&a, 10);

    assert_int_equal(lv_persist_open(&loop, path, &p), 0);
    /* one process per file */
    assert_int_equal(lv_persist_open(&loop, path, &p2), LV_EAGAIN);
    assert_null(p2);
    /* no file yet: nothing loaded, no error */
    assert_int_equal(lv_persist_load(p, &LIM, lv_wall_ms(), restore_cb, &b, &stats, &why), 0);
    assert_int_equal(stats.sessions, 0);

    assert_int_equal(lv_persist_start(p, 10, 60000, persist_snapshot, &ud), 0);
    assert_int_equal(lv_session_create(a.reg, "9.9.9.9", NULL, NULL, secret, &s), 0);
    /* the writer's timer does not keep a loop alive (by design); this one does, meanwhile */
    uv_timer_t keepalive;
    uv_timer_init(&loop, &keepalive);
    uv_timer_start(&keepalive, on_keepalive, 5, 5);
    /* the periodic write goes through the thread pool; bounded wait */
    uint64_t deadline = lv_now_ms() + 5000;
    while (stat(path, &st) != 0 && lv_now_ms() < deadline)
        uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_true(ud.calls >= 1);

    /* the final save is synchronous and stops the periodic ones */
    lv_session_history_add(s, 1, "the last answer", 15, 1.0, 1);
    size_t n = 0;
    assert_int_equal(lv_persist_save_now(p, &n), 0);
    assert_int_equal(n, 1);
    int calls = ud.calls;
    for (int i = 0; i < 5; i++)
        uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(ud.calls, calls);
    uv_close((uv_handle_t *)&keepalive, NULL);
    uv_run(&loop, UV_RUN_DEFAULT); /* until a write still in flight has called back */
    lv_persist_destroy(p);

    /* the file never holds the secret, only its hash */
    FILE *f = fopen(path, "r");
    char *text = calloc(1, 1u << 20);
    size_t got = fread(text, 1, (1u << 20) - 1, f);
    fclose(f);
    assert_true(got > 0);
    assert_null(strstr(text, secret));
    assert_non_null(strstr(text, s->rec.secret_hash));
    assert_non_null(strstr(text, "the last answer"));
    free(text);

    /* a new process loads it; the lock was released */
    fx_init(&b, 10);
    assert_int_equal(lv_persist_open(&loop, path, &p), 0);
    assert_int_equal(lv_persist_load(p, &LIM, lv_wall_ms(), restore_cb, &b, &stats, &why), 0);
    assert_int_equal(stats.delivered, 1);
    lv_session_t *r;
    assert_int_equal(lv_session_resume(b.reg, s->rec.id, secret, &r), 0);
    assert_string_equal(lv_session_history_at(r, 0)->text, "the last answer");
    lv_persist_destroy(p);

    /* a damaged file is refused, moved aside, and the next load starts empty */
    f = fopen(path, "r+");
    fseek(f, 10, SEEK_SET);
    fputc('#', f);
    fclose(f);
    fx_t c;
    fx_init(&c, 10);
    assert_int_equal(lv_persist_open(&loop, path, &p), 0);
    assert_int_equal(lv_persist_load(p, &LIM, lv_wall_ms(), restore_cb, &c, &stats, &why), LV_EPARSE);
    assert_non_null(why);
    assert_int_equal(lv_registry_count(c.reg), 0);
    assert_int_equal(stat(aside, &st), 0);
    assert_int_not_equal(stat(path, &st), 0);
    lv_persist_destroy(p);

    assert_int_equal(uv_run(&loop, UV_RUN_NOWAIT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
    fx_free(&a);
    fx_free(&b);
    fx_free(&c);
    rm_dir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip),
        cmocka_unit_test(truncated_at_every_byte),
        cmocka_unit_test(corrupted_at_every_byte),
        cmocka_unit_test(wrong_version_or_format),
        cmocka_unit_test(expired_sessions_skipped),
        cmocka_unit_test(caps),
        cmocka_unit_test(malformed_fields),
        cmocka_unit_test(refused_settings_reset),
        cmocka_unit_test(encode_cuts_broken_utf8),
        cmocka_unit_test(encode_matches_jansson),
        cmocka_unit_test(encode_answer_pieces),
        cmocka_unit_test(parse_line_round_trip),
        cmocka_unit_test(parse_line_rejects),
        cmocka_unit_test(registry_restart),
        cmocka_unit_test(snapshot_only_when_changed),
        cmocka_unit_test(dirty_list),
        cmocka_unit_test(cached_history_same_bytes),
        cmocka_unit_test(restored_session_encodes_its_line),
        cmocka_unit_test(persist_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

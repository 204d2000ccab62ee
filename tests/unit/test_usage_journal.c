/* test_usage_journal.c - the usage journal (src/server/lv_usage.c): a record's round trip and its
 * checksum, appends read back by range, a reopen (the replay at start) that finds every record, a
 * torn last record from a crash cut off (a partial one, and a full-size one with bad bytes) while
 * a corrupt one in the middle is skipped, the cap, and emptying the file. Real files in a temp dir. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "lv_common.h"
#include "lv_usage.h"

#define REC LV_USAGE_RECORD_BYTES

typedef struct {
    char dir[64];
    char path[128];
} fx_t;

static int setup(void **state)
{
    fx_t *fx = calloc(1, sizeof(*fx));
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/lvusageXXXXXX");
    if (!mkdtemp(fx->dir))
        return -1;
    snprintf(fx->path, sizeof(fx->path), "%s/usage.journal", fx->dir);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    unlink(fx->path);
    rmdir(fx->dir);
    free(fx);
    return 0;
}

static void make(lv_usage_t *u, int i)
{
    memset(u, 0, sizeof(*u));
    snprintf(u->answer_id, sizeof(u->answer_id), "0123456789abcdef0123-%d", i);
    u->t_ms = 1700000000000 + i;
    snprintf(u->tenant, sizeof(u->tenant), "acme");
    snprintf(u->user_id, sizeof(u->user_id), "u%015d", i % 3);
    snprintf(u->session_id, sizeof(u->session_id), "%032d", i);
    snprintf(u->backend, sizeof(u->backend), "fake");
    snprintf(u->model, sizeof(u->model), "model\twith tab %d", i);
    u->image_bytes = 1000 + i;
    u->prompt_tokens = 10 + i;
    u->completion_tokens = 20 + i;
    u->backend_ms = 30 + i;
    snprintf(u->outcome, sizeof(u->outcome), "%s", i % 5 ? "ok" : "timeout");
}

static off_t file_size(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_size;
}

static void test_record_round_trip(void **state)
{
    (void)state;
    lv_usage_t u, back;
    char rec[REC];
    make(&u, 7);
    lv_usage_encode(&u, rec);
    assert_int_equal(rec[REC - 1], '\n');
    assert_int_equal(lv_usage_decode(rec, &back), 0);
    assert_string_equal(back.answer_id, u.answer_id);
    assert_string_equal(back.model, "model with tab 7"); /* a tab would split the fields */
    assert_int_equal(back.t_ms, u.t_ms);
    assert_int_equal(back.prompt_tokens, 17);
    assert_int_equal(back.completion_tokens, 27);
    assert_int_equal(back.backend_ms, 37);
    assert_int_equal(back.image_bytes, 1007);
    assert_string_equal(back.outcome, "ok");
    assert_string_equal(back.session_id, u.session_id);
    /* every single-byte change is caught (checksum, magic or the line end) */
    for (size_t i = 0; i < REC; i++) {
        char bad[REC];
        memcpy(bad, rec, REC);
        bad[i] ^= 0x01;
        assert_int_equal(lv_usage_decode(bad, &back), LV_EPARSE);
    }
    /* strings at their full sizes stay within the record */
    memset(u.model, 'm', sizeof(u.model) - 1);
    memset(u.backend, 'b', sizeof(u.backend) - 1);
    lv_usage_encode(&u, rec);
    assert_int_equal(lv_usage_decode(rec, &back), 0);
    assert_int_equal(strlen(back.model), sizeof(u.model) - 1);
}

static void test_append_read_reopen(void **state)
{
    fx_t *fx = *state;
    lv_usage_journal_t *j;
    size_t records = 99, n, bad;
    uint64_t cut = 99;
    lv_usage_t *v;
    assert_int_equal(lv_usage_journal_open(fx->path, LV_USAGE_JOURNAL_CAP, &j, &records, &cut), 0);
    assert_int_equal(records, 0);
    assert_int_equal(cut, 0);
    for (int i = 0; i < 10; i++) {
        lv_usage_t u;
        make(&u, i);
        assert_int_equal(lv_usage_journal_append(j, &u), 0);
    }
    assert_int_equal(lv_usage_journal_size(j), 10 * REC);
    assert_int_equal(file_size(fx->path), 10 * REC);
    assert_int_equal(lv_usage_journal_read(j, 2 * REC, 5 * REC, &v, &n, &bad), 0);
    assert_int_equal(n, 3);
    assert_int_equal(bad, 0);
    assert_string_equal(v[0].answer_id, "0123456789abcdef0123-2");
    assert_string_equal(v[2].answer_id, "0123456789abcdef0123-4");
    free(v);
    assert_int_equal(lv_usage_journal_read(j, 1, 5 * REC, &v, &n, &bad), LV_EINVAL); /* not on a boundary */
    lv_usage_journal_close(j);

    /* the replay at start: every record is there */
    assert_int_equal(lv_usage_journal_open(fx->path, LV_USAGE_JOURNAL_CAP, &j, &records, &cut), 0);
    assert_int_equal(records, 10);
    assert_int_equal(cut, 0);
    assert_int_equal(lv_usage_journal_read(j, 0, lv_usage_journal_size(j), &v, &n, &bad), 0);
    assert_int_equal(n, 10);
    for (int i = 0; i < 10; i++)
        assert_int_equal(v[i].t_ms, 1700000000000 + i);
    free(v);
    /* emptied once everything is in the database; appends go on from zero */
    assert_int_equal(lv_usage_journal_truncate(j), 0);
    assert_int_equal(file_size(fx->path), 0);
    lv_usage_t u;
    make(&u, 42);
    assert_int_equal(lv_usage_journal_append(j, &u), 0);
    assert_int_equal(file_size(fx->path), REC);
    lv_usage_journal_close(j);
    assert_int_equal(lv_usage_journal_open(fx->path, LV_USAGE_JOURNAL_CAP, &j, &records, &cut), 0);
    assert_int_equal(records, 1);
    lv_usage_journal_close(j);
}

/* A crash inside the last write: a partial record at the end, or (power loss) a full-size one
 * whose bytes are wrong. Both are cut off at open, so the next append starts on a boundary. */
static void test_torn_tail(void **state)
{
    fx_t *fx = *state;
    lv_usage_journal_t *j;
    size_t records, n, bad;
    uint64_t cut;
    lv_usage_t u, *v;
    assert_int_equal(lv_usage_journal_open(fx->path, LV_USAGE_JOURNAL_CAP, &j, NULL, NULL), 0);
    for (int i = 0; i < 5; i++) {
        make(&u, i);
        assert_int_equal(lv_usage_journal_append(j, &u), 0);
    }
    lv_usage_journal_close(j);
    /* a partial sixth record, as a kill between two halves of a write would leave */
    char rec[REC];
    make(&u, 5);
    lv_usage_encode(&u, rec);
    int fd = open(fx->path, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, rec, 200), 200);
    close(fd);
    assert_int_equal(lv_usage_journal_open(fx->path, LV_USAGE_JOURNAL_CAP, &j, &records, &cut), 0);
    assert_int_equal(records, 5);
    assert_int_equal(cut, 200);
    assert_int_equal(file_size(fx->path), 5 * REC);
    make(&u, 6);
    assert_int_equal(lv_usage_journal_append(j, &u), 0);
    lv_usage_journal_close(j);

    /* a full-size last record with zeros in it (a page not written before power went) */
    fd = open(fx->path, O_WRONLY | O_APPEND);
    memset(rec + 100, 0, 64);
    assert_int_equal(write(fd, rec, REC), REC);
    close(fd);
    assert_int_equal(lv_usage_journal_open(fx->path, LV_USAGE_JOURNAL_CAP, &j, &records, &cut), 0);
    assert_int_equal(records, 6);
    assert_int_equal(cut, REC);
    assert_int_equal(lv_usage_journal_read(j, 0, lv_usage_journal_size(j), &v, &n, &bad), 0);
    assert_int_equal(n, 6);
    assert_string_equal(v[5].answer_id, "0123456789abcdef0123-6");
    free(v);
    lv_usage_journal_close(j);

    /* a bad record in the middle is skipped when read, not cut (later ones are good) */
    fd = open(fx->path, O_WRONLY);
    assert_int_equal(pwrite(fd, "X", 1, 2 * REC + 40), 1);
    close(fd);
    assert_int_equal(lv_usage_journal_open(fx->path, LV_USAGE_JOURNAL_CAP, &j, &records, &cut), 0);
    assert_int_equal(records, 5);
    assert_int_equal(cut, 0);
    assert_int_equal(lv_usage_journal_read(j, 0, lv_usage_journal_size(j), &v, &n, &bad), 0);
    assert_int_equal(n, 5);
    assert_int_equal(bad, 1);
    free(v);
    lv_usage_journal_close(j);
}

static void test_cap(void **state)
{
    fx_t *fx = *state;
    lv_usage_journal_t *j;
    lv_usage_t u;
    make(&u, 1);
    assert_int_equal(lv_usage_journal_open(fx->path, 3 * REC, &j, NULL, NULL), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(lv_usage_journal_append(j, &u), 0);
    assert_int_equal(lv_usage_journal_append(j, &u), LV_ELIMIT);
    assert_int_equal(file_size(fx->path), 3 * REC); /* nothing half-written */
    assert_int_equal(lv_usage_journal_truncate(j), 0);
    assert_int_equal(lv_usage_journal_append(j, &u), 0);
    lv_usage_journal_close(j);
}

/* Several records in one write (one loop turn's): all of them, or as many as fit under the cap,
 * and they read back in order. */
static void test_append_encoded(void **state)
{
    fx_t *fx = *state;
    lv_usage_journal_t *j;
    static char recs[5 * REC];
    lv_usage_t u;
    size_t written = 99;
    for (int i = 0; i < 5; i++) {
        make(&u, i + 1);
        lv_usage_encode(&u, recs + i * REC);
    }
    assert_int_equal(lv_usage_journal_open(fx->path, 7 * REC, &j, NULL, NULL), 0);
    assert_int_equal(lv_usage_journal_append_encoded(j, recs, 0, &written), 0);
    assert_int_equal(written, 0);
    assert_int_equal(lv_usage_journal_append_encoded(j, recs, 5, &written), 0);
    assert_int_equal(written, 5);
    assert_int_equal(lv_usage_journal_append_encoded(j, recs, 5, &written), LV_ELIMIT);
    assert_int_equal(written, 2); /* the first two fit under the cap, the rest are refused */
    assert_int_equal(file_size(fx->path), 7 * REC);
    assert_int_equal(lv_usage_journal_append_encoded(j, recs, 1, &written), LV_ELIMIT);
    assert_int_equal(written, 0);
    lv_usage_t *v = NULL;
    size_t n = 0, bad = 0;
    assert_int_equal(lv_usage_journal_read(j, 0, 7 * REC, &v, &n, &bad), 0);
    assert_int_equal(n, 7);
    assert_int_equal(bad, 0);
    for (size_t i = 0; i < n; i++) {
        make(&u, (int)(i < 5 ? i + 1 : i - 4));
        assert_string_equal(v[i].answer_id, u.answer_id);
    }
    free(v);
    lv_usage_journal_close(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record_round_trip),
        cmocka_unit_test_setup_teardown(test_append_read_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_encoded, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

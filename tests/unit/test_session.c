/* test_session.c - session registry (many principals, bounded sweeps, random operations against a
 * model), mailbox, history, expiry and the round-robin ready queue. */
#include <setjmp.h>
#include <stdio.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "lv_buf.h"
#include "lv_common.h"
#include "lv_session.h"
#include "lv_store_mem.h"

/* The memory store completes every call before it returns: these read the outcome. */
static int st_call_rc(int rc, const lv_store_result_t *res)
{
    assert_int_equal(rc, 0);
    assert_true(res->completed);
    return res->rc;
}
static int st_create(lv_store_t *st, const lv_session_rec_t *rec)
{
    lv_store_result_t res = {0};
    return st_call_rc(st->ops->create(st, rec, lv_store_result_cb, &res), &res);
}
static int st_save(lv_store_t *st, const lv_session_rec_t *rec)
{
    lv_store_result_t res = {0};
    return st_call_rc(st->ops->save(st, rec, lv_store_result_cb, &res), &res);
}
static int st_remove(lv_store_t *st, const char *id)
{
    lv_store_result_t res = {0};
    return st_call_rc(st->ops->remove(st, id, lv_store_result_cb, &res), &res);
}
static int st_load(lv_store_t *st, const char *id, lv_session_rec_t *out)
{
    lv_store_result_t res = {0};
    int rc = st_call_rc(st->ops->load(st, id, lv_store_result_cb, &res), &res);
    if (rc == 0)
        *out = res.rec;
    return rc;
}

typedef struct {
    lv_store_t *store;
    lv_registry_t *reg;
} fx_t;

static int setup(void **state)
{
    static fx_t fx;
    lv_registry_caps_t caps = {.max_sessions = 5, .max_sessions_per_principal = 3};
    assert_int_equal(lv_store_mem_create(100, &fx.store), 0);
    assert_int_equal(lv_registry_create(fx.store, &caps, &fx.reg), 0);
    *state = &fx;
    return 0;
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    lv_registry_destroy(fx->reg);
    fx->store->ops->destroy(fx->store);
    return 0;
}

static void create_and_resume(void **state)
{
    fx_t *fx = *state;
    char secret[65], other[65];
    lv_session_t *s, *r;
    assert_int_equal(lv_session_create(fx->reg, "1.2.3.4", NULL, NULL, secret, &s), 0);
    assert_int_equal(strlen(s->rec.id), LV_SESSION_ID_LEN);
    assert_int_equal(strlen(secret), 64);
    /* the secret is not stored in clear */
    assert_null(strstr(s->rec.secret_hash, secret));
    assert_int_equal(lv_session_resume(fx->reg, s->rec.id, secret, &r), 0);
    assert_ptr_equal(r, s);
    memcpy(other, secret, sizeof(other));
    other[0] = other[0] == 'a' ? 'b' : 'a';
    assert_int_equal(lv_session_resume(fx->reg, s->rec.id, other, &r), LV_ENOTFOUND);
    assert_int_equal(lv_session_resume(fx->reg, "00000000000000000000000000000000", secret, &r), LV_ENOTFOUND);
    /* two sessions never share an id */
    lv_session_t *s2;
    assert_int_equal(lv_session_create(fx->reg, "1.2.3.4", NULL, NULL, secret, &s2), 0);
    assert_string_not_equal(s->rec.id, s2->rec.id);
}

static void caps_per_owner_and_total(void **state)
{
    fx_t *fx = *state;
    char secret[65];
    lv_session_t *s;
    for (int i = 0; i < 3; i++)
        assert_int_equal(lv_session_create(fx->reg, "a", NULL, NULL, secret, &s), 0);
    assert_int_equal(lv_session_create(fx->reg, "a", NULL, NULL, secret, &s), LV_ELIMIT);
    assert_int_equal(lv_registry_principal_count(fx->reg, "a"), 3);
    assert_int_equal(lv_session_create(fx->reg, "b", NULL, NULL, secret, &s), 0);
    assert_int_equal(lv_session_create(fx->reg, "c", NULL, NULL, secret, &s), 0);
    assert_int_equal(lv_session_create(fx->reg, "d", NULL, NULL, secret, &s), LV_ELIMIT); /* 5 in total */
    assert_int_equal(lv_registry_count(fx->reg), 5);
}

static void mailbox_latest_wins(void **state)
{
    fx_t *fx = *state;
    char secret[65];
    lv_session_t *s;
    assert_int_equal(lv_session_create(fx->reg, "x", NULL, NULL, secret, &s), 0);
    lv_frame_t *f1 = lv_frame_new("one", 3), *f2 = lv_frame_new("two!", 4);
    assert_int_equal(lv_session_mailbox_put(s, f1), 0);
    assert_int_equal(lv_session_mailbox_put(s, f2), 1);
    assert_int_equal(s->frames_replaced, 1);
    lv_frame_t *got = lv_session_mailbox_take(s);
    assert_ptr_equal(got, f2);
    assert_memory_equal(got->data, "two!", 4);
    assert_null(lv_session_mailbox_take(s));
    lv_frame_unref(got);
}

static void frame_refcount(void **state)
{
    (void)state;
    lv_frame_t *f = lv_frame_new("abc", 3);
    assert_ptr_equal(lv_frame_ref(f), f);
    assert_int_equal(f->refs, 2);
    lv_frame_unref(f);
    assert_int_equal(f->refs, 1);
    lv_frame_unref(f); /* freed; ASan would report a leak otherwise */
    lv_frame_unref(NULL);
}

static void history_bounded(void **state)
{
    fx_t *fx = *state;
    char secret[65], text[32];
    lv_session_t *s;
    assert_int_equal(lv_session_create(fx->reg, "x", NULL, NULL, secret, &s), 0);
    for (int i = 1; i <= LV_HISTORY_MAX + 5; i++) {
        int n = snprintf(text, sizeof(text), "answer %d", i);
        lv_session_history_add(s, (uint64_t)i, text, (size_t)n, 10.0, 1000);
    }
    assert_int_equal(s->history_len, LV_HISTORY_MAX);
    assert_string_equal(lv_session_history_at(s, 0)->text, "answer 6");
    assert_string_equal(lv_session_history_at(s, LV_HISTORY_MAX - 1)->text, "answer 25");
    assert_null(lv_session_history_at(s, LV_HISTORY_MAX));
    /* long answers are cut */
    static char big[LV_HISTORY_TEXT_MAX * 2];
    memset(big, 'z', sizeof(big));
    lv_session_history_add(s, 99, big, sizeof(big), 1.0, 1);
    assert_int_equal(strlen(lv_session_history_at(s, LV_HISTORY_MAX - 1)->text), LV_HISTORY_TEXT_MAX);
}

/* The state file's form of each entry is kept with it: made by the first encode that sees it, gone
 * when its ring slot takes a new answer, the same bytes as the entry encoded afresh. */
static void history_cache_follows_ring(void **state)
{
    fx_t *fx = *state;
    char secret[65], text[48];
    lv_session_t *s;
    assert_int_equal(lv_session_create(fx->reg, "x", NULL, NULL, secret, &s), 0);
    for (int i = 1; i <= 3; i++) {
        int n = snprintf(text, sizeof(text), "answer \"%d\"\n", i);
        lv_session_history_add(s, (uint64_t)i, text, (size_t)n, 0.1 * i, 1000 + (uint64_t)i);
        assert_null(lv_session_history_at(s, (size_t)i - 1)->json); /* nothing made before an encode */
    }
    /* an inner NUL ends the text, as for every reader of the C string */
    lv_session_history_add(s, 4, "four\0hidden", 11, 4.0, 1004);
    assert_int_equal(lv_session_history_at(s, 3)->text_len, 4);
    for (int round = 0; round < 3; round++) {
        assert_int_equal(lv_session_encode(s), 0);
        for (size_t i = 0; i < s->history_len; i++) {
            const lv_history_entry_t *e = lv_session_history_at(s, i);
            lv_statefile_answer_t a = {.answer_id = e->answer_id, .wall_ms = e->wall_ms,
                                       .latency_ms = e->latency_ms, .text = e->text, .text_len = strlen(e->text)};
            lv_buf_t b;
            lv_buf_init(&b, LV_STATEFILE_ANSWER_JSON_MAX);
            assert_int_equal(lv_statefile_encode_answer(&a, &b), 0);
            assert_non_null(e->json);
            assert_int_equal(e->json_len, b.len);
            assert_memory_equal(e->json, b.data, b.len);
            /* and the line holds it, between its neighbours */
            assert_non_null(memmem(s->persist_line->data, s->persist_line->len, e->json, e->json_len));
            lv_buf_free(&b);
        }
        /* new answers take the oldest slots: their forms go, the others stay */
        size_t added = round == 0 ? LV_HISTORY_MAX - 4 : 7;
        for (size_t k = 0; k < added; k++) {
            uint64_t id = s->answer_seq = 100 * (uint64_t)(round + 1) + k;
            lv_session_history_add(s, id, "new", 3, 1.5, 2000 + id);
        }
        for (size_t i = 0; i < s->history_len; i++)
            assert_true((lv_session_history_at(s, i)->json == NULL) == (i >= s->history_len - added));
    }
    assert_int_equal(s->history_len, LV_HISTORY_MAX);
    /* the forms go with the session (a leak here shows under ASan) */
}

static int freed_count;
static void count_free(lv_session_t *s, void *ud)
{
    (void)s;
    (void)ud;
    freed_count++;
}

static void expiry_only_detached(void **state)
{
    fx_t *fx = *state;
    char secret[65];
    lv_session_t *a, *b;
    assert_int_equal(lv_session_create(fx->reg, "x", NULL, NULL, secret, &a), 0);
    assert_int_equal(lv_session_create(fx->reg, "y", NULL, NULL, secret, &b), 0);
    char id_a[40];
    snprintf(id_a, sizeof(id_a), "%s", a->rec.id);
    /* a: detached at t=1000; b: has a socket */
    a->n_viewers = 0;
    lv_session_attach_changed(a, 1000);
    b->n_viewers = 1;
    lv_session_attach_changed(b, 1000);
    freed_count = 0;
    assert_int_equal(lv_registry_sweep(fx->reg, 1500, 1000, 100000, count_free, NULL), 0);
    assert_int_equal(lv_registry_sweep(fx->reg, 2000, 1000, 100000, count_free, NULL), 1);
    assert_int_equal(freed_count, 1);
    assert_null(lv_session_find(fx->reg, id_a));
    lv_session_rec_t rec;
    assert_int_equal(st_load(fx->store, id_a, &rec), LV_ENOTFOUND);
    assert_int_equal(lv_registry_count(fx->reg), 1);
    assert_int_equal(lv_registry_principal_count(fx->reg, "x"), 0);
    b->n_viewers = 0; /* let teardown free it without complaint */
}

/* give a session n sockets at time now (0 = all gone: detached since now) */
static void set_conns(lv_session_t *s, size_t n, uint64_t now)
{
    s->n_viewers = n;
    lv_session_attach_changed(s, now);
}

static int evicted_count;
static void count_evict(lv_session_t *s, void *ud)
{
    assert_int_equal(s->n_viewers, 0); /* only sessions without a socket give way */
    (void)ud;
    evicted_count++;
}

/* per-owner cap 3: live sessions refuse, detached ones give way, oldest-detached first */
static void owner_cap_counts_live_and_evicts_detached(void **state)
{
    fx_t *fx = *state;
    char secret[65], id_b[40];
    lv_session_t *a, *b, *c, *d;
    lv_registry_set_evict_cb(fx->reg, count_evict, NULL);
    evicted_count = 0;
    assert_int_equal(lv_session_create(fx->reg, "n", NULL, NULL, secret, &a), 0);
    assert_int_equal(lv_session_create(fx->reg, "n", NULL, NULL, secret, &b), 0);
    assert_int_equal(lv_session_create(fx->reg, "n", NULL, NULL, secret, &c), 0);
    set_conns(a, 1, 10);
    set_conns(b, 1, 10);
    set_conns(c, 2, 10); /* two sockets on one session: still one session */
    assert_int_equal(lv_registry_principal_live(fx->reg, "n"), 3);
    assert_int_equal(lv_session_create(fx->reg, "n", NULL, NULL, secret, &d), LV_ELIMIT);
    /* a leaves at t=200, b at t=100: b has been gone longest and gives way first */
    set_conns(a, 0, 200);
    set_conns(b, 0, 100);
    snprintf(id_b, sizeof(id_b), "%s", b->rec.id);
    assert_int_equal(lv_registry_principal_live(fx->reg, "n"), 1);
    assert_int_equal(lv_session_create(fx->reg, "n", NULL, NULL, secret, &d), 0);
    assert_int_equal(evicted_count, 1);
    assert_null(lv_session_find(fx->reg, id_b));
    lv_session_rec_t rec;
    assert_int_equal(st_load(fx->store, id_b, &rec), LV_ENOTFOUND);
    assert_ptr_equal(lv_session_find(fx->reg, a->rec.id), a);
    assert_int_equal(lv_registry_principal_count(fx->reg, "n"), 3);
    /* resuming a (a socket again) makes it live: now 3 live, nothing left to give way */
    set_conns(a, 1, 300);
    set_conns(d, 1, 300);
    assert_int_equal(lv_session_create(fx->reg, "n", NULL, NULL, secret, &b), LV_ELIMIT);
    assert_int_equal(evicted_count, 1);
    /* another owner is not affected by n's sessions */
    assert_int_equal(lv_session_create(fx->reg, "m", NULL, NULL, secret, &b), 0);
    set_conns(a, 0, 400);
    set_conns(c, 0, 400);
    set_conns(d, 0, 400);
    set_conns(b, 0, 400);
}

/* one person reloading a page 25 times: each reload is a new session, the old one detached */
static void reloads_never_lock_out(void **state)
{
    fx_t *fx = *state;
    char secret[65];
    lv_session_t *s;
    lv_registry_set_evict_cb(fx->reg, count_evict, NULL);
    evicted_count = 0;
    for (int i = 0; i < 25; i++) {
        assert_int_equal(lv_session_create(fx->reg, "r", NULL, NULL, secret, &s), 0);
        set_conns(s, 1, 1000 + (uint64_t)i);
        set_conns(s, 0, 1000 + (uint64_t)i);
        assert_true(lv_registry_principal_count(fx->reg, "r") <= 3);
    }
    assert_int_equal(evicted_count, 22);
    assert_int_equal(lv_registry_count(fx->reg), 3);
}

/* the total cap bounds memory: a full registry takes a new session only from an owner who has a
 * detached one to give up, never at the cost of another owner's sessions */
static void total_cap_evicts_only_own(void **state)
{
    fx_t *fx = *state;
    char secret[65];
    lv_session_t *s[5], *x;
    lv_registry_set_evict_cb(fx->reg, count_evict, NULL);
    evicted_count = 0;
    const char *owners[5] = {"a", "a", "b", "b", "c"};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(lv_session_create(fx->reg, owners[i], NULL, NULL, secret, &s[i]), 0);
        set_conns(s[i], 1, 10);
    }
    set_conns(s[0], 0, 20); /* a has a detached session */
    set_conns(s[2], 0, 20); /* so has b */
    assert_int_equal(lv_session_create(fx->reg, "d", NULL, NULL, secret, &x), LV_ELIMIT);
    assert_int_equal(evicted_count, 0);
    assert_int_equal(lv_session_create(fx->reg, "a", NULL, NULL, secret, &x), 0);
    assert_int_equal(evicted_count, 1);
    assert_int_equal(lv_registry_count(fx->reg), 5);
    assert_int_equal(lv_registry_principal_count(fx->reg, "b"), 2);
    for (int i = 1; i < 5; i++)
        set_conns(s[i], 0, 30);
}

static void started_list(void **state)
{
    fx_t *fx = *state;
    char secret[65];
    lv_session_t *s;
    assert_int_equal(lv_session_create(fx->reg, "x", NULL, NULL, secret, &s), 0);
    lv_session_set_started(fx->reg, s, true, 5);
    assert_false(lv_queue_empty(lv_registry_started(fx->reg)));
    assert_int_equal(s->next_credit_ms, 5);
    lv_session_set_started(fx->reg, s, true, 9); /* idempotent */
    lv_session_set_started(fx->reg, s, false, 9);
    assert_true(lv_queue_empty(lv_registry_started(fx->reg)));
}

static void store_roundtrip(void **state)
{
    (void)state;
    lv_store_t *st;
    lv_session_rec_t a, b;
    assert_int_equal(lv_store_mem_create(2, &st), 0);
    memset(&a, 0, sizeof(a));
    snprintf(a.id, sizeof(a.id), "aa");
    lv_settings_defaults(&a.settings);
    assert_int_equal(st_create(st, &a), 0);
    assert_int_equal(st_create(st, &a), LV_EEXIST);
    a.settings.max_tokens = 7;
    assert_int_equal(st_save(st, &a), 0);
    assert_int_equal(st_load(st, "aa", &b), 0);
    assert_int_equal(b.settings.max_tokens, 7);
    snprintf(b.id, sizeof(b.id), "bb");
    assert_int_equal(st_create(st, &b), 0);
    snprintf(b.id, sizeof(b.id), "cc");
    assert_int_equal(st_create(st, &b), LV_ELIMIT);
    assert_int_equal(st->ops->count(st), 2);
    assert_int_equal(st_remove(st, "aa"), 0);
    assert_int_equal(st_remove(st, "aa"), LV_ENOTFOUND);
    char h1[65], h2[65];
    lv_secret_hash("x", h1);
    lv_secret_hash("y", h2);
    assert_int_equal(strlen(h1), 64);
    assert_string_not_equal(h1, h2);
    st->ops->destroy(st);
}

/* ---------- many principals, bounded walks ---------- */

static lv_registry_t *big_registry(lv_store_t **st, size_t max_sessions, size_t per_principal)
{
    lv_registry_caps_t caps = {.max_sessions = max_sessions, .max_sessions_per_principal = per_principal};
    lv_registry_t *reg;
    assert_int_equal(lv_store_mem_create(max_sessions, st), 0);
    assert_int_equal(lv_registry_create(*st, &caps, &reg), 0);
    return reg;
}

/* Thousands of principals: each keeps its own count through the tables' growth, expiry empties
 * them all (their records go), and the registry and the store take a second crowd afterwards. */
static void many_principals(void **state)
{
    (void)state;
    enum { P = 3000, PER = 2 };
    lv_store_t *st;
    lv_registry_t *reg = big_registry(&st, P * PER, PER);
    char secret[65], who[32];
    lv_session_t *s;
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < P * PER; i++) {
            snprintf(who, sizeof(who), "10.%d.%d.%d", round, i % P / 256, i % P % 256);
            assert_int_equal(lv_session_create(reg, who, NULL, NULL, secret, &s), 0);
            assert_ptr_equal(lv_session_find(reg, s->rec.id), s);
            set_conns(s, 0, 100); /* detached at once */
        }
        assert_int_equal(lv_registry_count(reg), P * PER);
        assert_int_equal(st->ops->count(st), P * PER);
        for (int i = 0; i < P; i++) {
            snprintf(who, sizeof(who), "10.%d.%d.%d", round, i / 256, i % 256);
            assert_int_equal(lv_registry_principal_count(reg, who), PER);
            assert_int_equal(lv_registry_principal_live(reg, who), 0);
        }
        /* a full registry: a principal with room but no detached session is refused */
        assert_int_equal(lv_session_create(reg, "192.0.2.1", NULL, NULL, secret, &s), LV_ELIMIT);
        freed_count = 0;
        assert_int_equal(lv_registry_sweep(reg, 1100, 1000, SIZE_MAX, count_free, NULL), P * PER);
        assert_int_equal(freed_count, P * PER);
        assert_int_equal(lv_registry_count(reg), 0);
        assert_int_equal(st->ops->count(st), 0);
        for (int i = 0; i < P; i++) {
            snprintf(who, sizeof(who), "10.%d.%d.%d", round, i / 256, i % 256);
            assert_int_equal(lv_registry_principal_count(reg, who), 0);
        }
    }
    lv_registry_destroy(reg);
    st->ops->destroy(st);
}

/* A bounded sweep looks at max_examined sessions per call and carries on from there the next
 * time, so every session is looked at within count / max_examined calls, across principals, with
 * expired ones removed on the way (and the sweep's place moved off them). */
static void sweep_bounded_resumes(void **state)
{
    (void)state;
    lv_store_t *st;
    lv_registry_t *reg = big_registry(&st, 100, 10);
    char secret[65], who[16];
    lv_session_t *s[9];
    for (int i = 0; i < 9; i++) {
        snprintf(who, sizeof(who), "p%d", i / 3);
        assert_int_equal(lv_session_create(reg, who, NULL, NULL, secret, &s[i]), 0);
        /* 1, 4, 5 and 8 have been idle long enough; the others have a socket */
        set_conns(s[i], (i == 1 || i == 4 || i == 5 || i == 8) ? 0 : 1, 10);
    }
    size_t removed = 0;
    for (int call = 0; call < 5; call++) { /* 9 sessions, 2 per call */
        freed_count = 0;
        size_t r = lv_registry_sweep(reg, 5000, 1000, 2, count_free, NULL);
        assert_true(r <= 2);
        assert_int_equal(freed_count, r);
        removed += r;
    }
    assert_int_equal(removed, 4);
    assert_int_equal(lv_registry_count(reg), 5);
    assert_int_equal(lv_registry_principal_count(reg, "p1"), 1); /* 4 and 5 went, 3 stays */
    assert_int_equal(lv_registry_sweep(reg, 5000, 1000, SIZE_MAX, count_free, NULL), 0);
    for (int i = 0; i < 9; i++)
        if (i != 1 && i != 4 && i != 5 && i != 8)
            set_conns(s[i], 0, 30);
    lv_registry_destroy(reg);
    st->ops->destroy(st);
}

/* Random creates (which may evict), attaches, detaches, bounded sweeps and bounded snapshots,
 * checked against what the registry reports through its callbacks: every session it keeps is
 * found by its id and counted under its principal, only sessions idle long enough expire, only
 * detached ones give way, and a full lap of bounded sweeps leaves nothing expired behind. The
 * sessions the sweep and the snapshot were to resume at are removed in passing, which ASan would
 * report if a saved place were left pointing at freed memory. */
enum { RP = 12, RS = 200, RIDLE = 300 };

typedef struct {
    lv_session_t *s[RS];
    int principal[RS];
    size_t n;
    uint64_t now;
    size_t freed, evicted;
} reg_model_t;

static uint64_t reg_rng = 88172645463325252ULL;
static unsigned reg_rnd(unsigned n)
{
    reg_rng ^= reg_rng << 13;
    reg_rng ^= reg_rng >> 7;
    reg_rng ^= reg_rng << 17;
    return (unsigned)(reg_rng % n);
}

static void model_forget(reg_model_t *m, lv_session_t *s)
{
    for (size_t i = 0; i < m->n; i++) {
        if (m->s[i] == s) {
            m->s[i] = m->s[m->n - 1];
            m->principal[i] = m->principal[m->n - 1];
            m->n--;
            return;
        }
    }
    fail_msg("the registry removed a session it did not have");
}

static void model_on_free(lv_session_t *s, void *ud)
{
    reg_model_t *m = ud;
    assert_false(lv_session_attached(s));
    assert_true(s->detached_since_ms != 0 && m->now - s->detached_since_ms >= RIDLE);
    model_forget(m, s);
    m->freed++;
}

static void model_on_evict(lv_session_t *s, void *ud)
{
    reg_model_t *m = ud;
    assert_false(lv_session_attached(s));
    assert_true(s->detached_since_ms != 0);
    model_forget(m, s);
    m->evicted++;
}

static size_t model_expired(const reg_model_t *m)
{
    size_t n = 0;
    for (size_t i = 0; i < m->n; i++)
        n += !lv_session_attached(m->s[i]) && m->s[i]->detached_since_ms &&
             m->now - m->s[i]->detached_since_ms >= RIDLE;
    return n;
}

static void registry_random_ops(void **state)
{
    (void)state;
    lv_store_t *st;
    lv_registry_t *reg = big_registry(&st, 60, 6);
    reg_model_t *m = calloc(1, sizeof(*m));
    assert_non_null(m);
    lv_registry_set_evict_cb(reg, model_on_evict, m);
    char secret[65], who[16];
    lv_statefile_snap_t snap;
    memset(&snap, 0, sizeof(snap));
    size_t sweeps = 0, laps = 0;
    for (int op = 0; op < 30000; op++) {
        m->now += 1 + reg_rnd(20);
        unsigned r = reg_rnd(100);
        if (r < 30) {
            int p = (int)reg_rnd(RP);
            lv_session_t *s;
            snprintf(who, sizeof(who), "p%d", p);
            if (lv_session_create(reg, who, NULL, NULL, secret, &s) == 0) {
                assert_true(m->n < RS);
                m->s[m->n] = s;
                m->principal[m->n++] = p;
                if (reg_rnd(2))
                    set_conns(s, 1, m->now);
            }
        } else if (r < 55 && m->n) {
            lv_session_t *s = m->s[reg_rnd((unsigned)m->n)];
            set_conns(s, reg_rnd(3) == 0 ? 1 : 0, m->now);
        } else if (r < 80) {
            size_t max = 1 + reg_rnd(4);
            size_t freed = m->freed;
            size_t got = lv_registry_sweep(reg, m->now, RIDLE, max, model_on_free, m);
            assert_true(got <= max);
            assert_int_equal(got, m->freed - freed);
            sweeps++;
        } else if (r < 95) {
            int rc = lv_registry_snapshot(reg, reg_rnd(4) == 0, reg_rnd(3) * 200, SIZE_MAX, &snap);
            assert_true(rc == 0 || rc == LV_EAGAIN);
            assert_true(snap.n <= m->n);
            lv_statefile_snap_clear(&snap);
        } else if (m->n) { /* a lap of bounded sweeps, nothing else happening meanwhile */
            size_t max = 1 + reg_rnd(3), calls = (m->n + max - 1) / max;
            for (size_t c = 0; c < calls; c++)
                lv_registry_sweep(reg, m->now, RIDLE, max, model_on_free, m);
            assert_int_equal(model_expired(m), 0);
            laps++;
        }
        assert_int_equal(lv_registry_count(reg), m->n);
        assert_int_equal(st->ops->count(st), m->n);
        size_t per[RP] = {0};
        for (size_t i = 0; i < m->n; i++) {
            assert_ptr_equal(lv_session_find(reg, m->s[i]->rec.id), m->s[i]);
            per[m->principal[i]]++;
        }
        for (int p = 0; p < RP; p++) {
            snprintf(who, sizeof(who), "p%d", p);
            assert_int_equal(lv_registry_principal_count(reg, who), per[p]);
            assert_true(lv_registry_principal_live(reg, who) <= 6);
        }
    }
    print_message("30k ops: %zu sweeps (%zu laps) freed %zu, %zu evicted, %zu left\n", sweeps, laps, m->freed,
                  m->evicted, m->n);
    assert_true(m->freed > 500 && m->evicted > 100);
    for (size_t i = 0; i < m->n; i++)
        set_conns(m->s[i], 0, m->now);
    lv_registry_destroy(reg);
    st->ops->destroy(st);
    free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(create_and_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(caps_per_owner_and_total, setup, teardown),
        cmocka_unit_test_setup_teardown(mailbox_latest_wins, setup, teardown),
        cmocka_unit_test(frame_refcount),
        cmocka_unit_test_setup_teardown(history_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(history_cache_follows_ring, setup, teardown),
        cmocka_unit_test_setup_teardown(expiry_only_detached, setup, teardown),
        cmocka_unit_test_setup_teardown(started_list, setup, teardown),
        cmocka_unit_test_setup_teardown(owner_cap_counts_live_and_evicts_detached, setup, teardown),
        cmocka_unit_test_setup_teardown(reloads_never_lock_out, setup, teardown),
        cmocka_unit_test_setup_teardown(total_cap_evicts_only_own, setup, teardown),
        cmocka_unit_test(store_roundtrip),
        cmocka_unit_test(many_principals),
        cmocka_unit_test(sweep_bounded_resumes),
        cmocka_unit_test(registry_random_ops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

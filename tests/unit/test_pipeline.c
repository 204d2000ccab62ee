/* test_pipeline.c - the frame pipeline's core (src/core/lv_pipeline.h) with fakes: a source that
 * records the credits it is asked for, hooks for capacity and per-principal counts, the real
 * registry over the memory store. Covers credits so far (the job path is still in the engine). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "lv_common.h"
#include "lv_pipeline.h"
#include "lv_session.h"
#include "lv_store_mem.h"

/* ---- fakes ---- */

typedef struct {
    lv_source_t src;
    uint32_t last_credit;
    int asked;
} fake_source_t;

static void fake_request_frame(lv_source_t *src, lv_session_t *s, uint32_t credit_id)
{
    fake_source_t *f = LV_CONTAINER_OF(src, fake_source_t, src);
    (void)s;
    f->last_credit = credit_id;
    f->asked++;
}
static const lv_source_ops_t fake_source_ops = {fake_request_frame, NULL};

#define MAX_P 8
typedef struct {
    size_t capacity;
    char names[MAX_P][64];
    size_t counts[MAX_P];
    size_t n;
    bool deny_all;
} fake_host_t;

static size_t host_capacity(void *ud) { return ((fake_host_t *)ud)->capacity; }

static size_t host_waiting(void *ud, const char *principal, int delta)
{
    fake_host_t *h = ud;
    size_t i;
    for (i = 0; i < h->n; i++)
        if (strcmp(h->names[i], principal) == 0)
            break;
    if (i == h->n) {
        assert_true(h->n < MAX_P);
        snprintf(h->names[h->n++], sizeof h->names[0], "%s", principal);
        h->counts[i] = 0;
    }
    if (delta < 0)
        assert_true(h->counts[i] >= (size_t)-delta); /* never below zero: every -1 had its +1 */
    h->counts[i] = (size_t)((long)h->counts[i] + delta);
    return h->counts[i];
}

static bool host_allowed(void *ud, const lv_session_t *s, uint64_t now)
{
    (void)s;
    (void)now;
    return !((fake_host_t *)ud)->deny_all;
}

typedef struct {
    lv_store_t *store;
    lv_registry_t *reg;
    lv_drr_t drr;
    fake_host_t host;
    lv_pipeline_t pipe;
} fx_t;

static int setup(void **state)
{
    static fx_t fx;
    memset(&fx, 0, sizeof fx);
    lv_registry_caps_t caps = {.max_sessions = 64, .max_sessions_per_principal = 16};
    assert_int_equal(lv_store_mem_create(100, &fx.store), 0);
    assert_int_equal(lv_registry_create(fx.store, &caps, &fx.reg), 0);
    assert_int_equal(lv_drr_init(&fx.drr, 1), 0);
    fx.host.capacity = 4;
    lv_pipeline_hooks_t hooks = {&fx.host, host_capacity, host_waiting, host_allowed};
    lv_pipeline_init(&fx.pipe, fx.reg, &fx.drr, &hooks);
    *state = &fx;
    return 0;
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    lv_drr_free(&fx->drr);
    lv_registry_destroy(fx->reg);
    fx->store->ops->destroy(fx->store);
    return 0;
}

/* A started session with one fake source and nobody watching. */
static lv_session_t *new_session(fx_t *fx, const char *principal, fake_source_t *src, int interval_ms, uint64_t now)
{
    char secret[65];
    lv_session_t *s = NULL;
    assert_int_equal(lv_session_create(fx->reg, principal, NULL, secret, &s), 0);
    s->rec.settings.interval_ms = interval_ms;
    if (src) {
        memset(src, 0, sizeof *src);
        src->src.ops = &fake_source_ops;
        lv_queue_insert_tail(&s->sources, &src->src.link);
        s->n_sources++;
        lv_session_attach_changed(s, now);
    }
    lv_session_set_started(fx->reg, s, true, now);
    return s;
}

static void detach_source(lv_pipeline_t *p, lv_session_t *s, fake_source_t *src, uint64_t now)
{
    lv_queue_remove(&src->src.link);
    s->n_sources--;
    lv_session_attach_changed(s, now);
    if (s->n_sources == 0)
        lv_pipeline_credit_clear(p, s);
}

/* ---- tests ---- */

/* A session fed by a source with no viewer gets credits, one at a time, paced by its interval. */
static void source_only_session_gets_credits(void **state)
{
    fx_t *fx = *state;
    fake_source_t src;
    lv_session_t *s = new_session(fx, "p1", &src, 500, 1000);
    assert_int_equal(s->n_viewers, 0);
    assert_int_equal(lv_pipeline_tick(&fx->pipe, 1000), 1);
    assert_int_equal(src.asked, 1);
    assert_int_not_equal(src.last_credit, 0);
    assert_int_equal(s->credit_outstanding, src.last_credit);
    assert_int_equal(fx->pipe.credits_outstanding, 1);
    assert_int_equal(host_waiting(&fx->host, "p1", 0), 1);
    /* unanswered: not asked again */
    assert_int_equal(lv_pipeline_tick(&fx->pipe, 1600), 0);
    /* answered (a frame came): due again one interval after the credit went out */
    lv_pipeline_credit_clear(&fx->pipe, s);
    assert_int_equal(fx->pipe.credits_outstanding, 0);
    assert_int_equal(host_waiting(&fx->host, "p1", 0), 0);
    lv_pipeline_credit_clear(&fx->pipe, s); /* idempotent */
    assert_int_equal(host_waiting(&fx->host, "p1", 0), 0);
    assert_int_equal(lv_pipeline_tick(&fx->pipe, 1499), 0);
    assert_int_equal(lv_pipeline_tick(&fx->pipe, 1500), 1);
    assert_int_equal(src.asked, 2);
    lv_pipeline_credit_clear(&fx->pipe, s);
}

/* An unanswered credit is asked again after max(5 s, 2 intervals), under a new id. */
static void lost_credit_is_reissued(void **state)
{
    fx_t *fx = *state;
    fake_source_t src;
    lv_session_t *s = new_session(fx, "p1", &src, 100, 0);
    assert_int_equal(lv_pipeline_tick(&fx->pipe, 0), 1);
    uint32_t first = src.last_credit;
    assert_int_equal(lv_pipeline_tick(&fx->pipe, 4999), 0);
    assert_int_equal(lv_pipeline_tick(&fx->pipe, 5000), 1);
    assert_int_not_equal(src.last_credit, first);
    assert_int_equal(fx->pipe.credits_outstanding, 1);
    assert_int_equal(host_waiting(&fx->host, "p1", 0), 1);
    /* a slow interval stretches the retry to two intervals */
    s->rec.settings.interval_ms = 4000;
    assert_int_equal(lv_pipeline_tick(&fx->pipe, 12999), 0);
    assert_int_equal(lv_pipeline_tick(&fx->pipe, 13000), 1);
    lv_pipeline_credit_clear(&fx->pipe, s);
}

/* No source, stopped, a frame already waiting, or over the frame budget: no credit. The last
 * source leaving drops the outstanding credit. */
static void who_gets_no_credit(void **state)
{
    fx_t *fx = *state;
    fake_source_t src;
    lv_session_t *bare = new_session(fx, "p1", NULL, 100, 0);
    lv_session_t *s = new_session(fx, "p2", &src, 100, 0);
    (void)bare;
    fx->host.deny_all = true;
    assert_int_equal(lv_pipeline_tick(&fx->pipe, 0), 0);
    fx->host.deny_all = false;
    lv_session_set_started(fx->reg, s, false, 0);
    assert_int_equal(lv_pipeline_tick(&fx->pipe, 0), 0);
    lv_session_set_started(fx->reg, s, true, 0);
    s->pending = (lv_frame_t *)(void *)&src; /* only tested for NULL by the credit walk */
    assert_int_equal(lv_pipeline_tick(&fx->pipe, 0), 0);
    s->pending = NULL;
    assert_int_equal(lv_pipeline_tick(&fx->pipe, 0), 1);
    assert_int_equal(src.asked, 1);
    detach_source(&fx->pipe, s, &src, 10);
    assert_int_equal(s->credit_outstanding, 0);
    assert_int_equal(fx->pipe.credits_outstanding, 0);
    assert_int_equal(host_waiting(&fx->host, "p2", 0), 0);
    assert_int_equal(lv_pipeline_tick(&fx->pipe, 1000), 0);
}

/* Fairness of credits across principals: once as much is waiting as the backends hold, a principal
 * with something waiting is not asked for more, but one with nothing waiting still is. */
static void credits_paced_by_capacity_and_principal(void **state)
{
    fx_t *fx = *state;
    fake_source_t a1, a2, a3, b1;
    fx->host.capacity = 2;
    lv_session_t *sa1 = new_session(fx, "alice", &a1, 100, 0);
    lv_session_t *sa2 = new_session(fx, "alice", &a2, 100, 0);
    lv_session_t *sa3 = new_session(fx, "alice", &a3, 100, 0);
    /* below capacity everyone with a due interval is asked, alice's third only once 2 are out */
    assert_int_equal(lv_pipeline_tick(&fx->pipe, 0), 2);
    assert_int_equal(a1.asked + a2.asked, 2);
    assert_int_equal(a3.asked, 0);
    /* bob arrives with nothing waiting: asked although the total is at capacity */
    lv_session_t *sb1 = new_session(fx, "bob", &b1, 100, 0);
    assert_int_equal(lv_pipeline_tick(&fx->pipe, 50), 1);
    assert_int_equal(b1.asked, 1);
    assert_int_equal(a3.asked, 0);
    /* alice's frames are answered: her waiting session is asked first on the next tick */
    lv_pipeline_credit_clear(&fx->pipe, sa1);
    lv_pipeline_credit_clear(&fx->pipe, sa2);
    assert_int_equal(lv_pipeline_tick(&fx->pipe, 60), 1);
    assert_int_equal(a3.asked, 1);
    assert_int_equal(host_waiting(&fx->host, "alice", 0), 1);
    assert_int_equal(host_waiting(&fx->host, "bob", 0), 1);
    lv_pipeline_credit_clear(&fx->pipe, sa3);
    lv_pipeline_credit_clear(&fx->pipe, sb1);
    assert_int_equal(fx->pipe.credits_outstanding, 0);
}

/* Sessions that got a credit go to the back of the started list: the walk asks the one that waited
 * longest first. */
static void granted_sessions_rotate(void **state)
{
    fx_t *fx = *state;
    fake_source_t x, y;
    lv_session_t *sx = new_session(fx, "p", &x, 100, 0);
    lv_session_t *sy = new_session(fx, "p", &y, 100, 0);
    lv_queue_t *head = lv_registry_started(fx->reg);
    assert_ptr_equal(LV_CONTAINER_OF(head->next, lv_session_t, started_link), sx);
    fx->host.capacity = 0; /* only principals with nothing waiting are asked: one per tick */
    assert_int_equal(lv_pipeline_tick(&fx->pipe, 0), 1);
    assert_int_equal(x.asked, 1);
    assert_ptr_equal(LV_CONTAINER_OF(head->next, lv_session_t, started_link), sy);
    lv_pipeline_credit_clear(&fx->pipe, sx);
    assert_int_equal(lv_pipeline_tick(&fx->pipe, 200), 1);
    assert_int_equal(y.asked, 1); /* y waited longer, though x is due too */
    assert_int_equal(x.asked, 1);
    lv_pipeline_credit_clear(&fx->pipe, sy);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(source_only_session_gets_credits, setup, teardown),
        cmocka_unit_test_setup_teardown(lost_credit_is_reissued, setup, teardown),
        cmocka_unit_test_setup_teardown(who_gets_no_credit, setup, teardown),
        cmocka_unit_test_setup_teardown(credits_paced_by_capacity_and_principal, setup, teardown),
        cmocka_unit_test_setup_teardown(granted_sessions_rotate, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

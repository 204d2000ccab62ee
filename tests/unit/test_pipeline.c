/* test_pipeline.c - the frame pipeline's core (src/core/lv_pipeline.h) with fakes: a source that
 * records the credits it is asked for, hooks for capacity and per-principal counts, the real
 * registry over the memory store, a fake viewer that records what the page would see. Covers
 * credits and the fair queue's entry (queue positions, stale drops, fairness across principals),
 * the detached-cancel and supersede decisions;
 * the job path is still in the engine. */
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
    int asked, stopped;
} fake_source_t;

static void fake_request_frame(lv_source_t *src, lv_session_t *s, uint32_t credit_id)
{
    fake_source_t *f = LV_CONTAINER_OF(src, fake_source_t, src);
    (void)s;
    f->last_credit = credit_id;
    f->asked++;
}
static void fake_source_stop(lv_source_t *src, lv_session_t *s)
{
    (void)s;
    LV_CONTAINER_OF(src, fake_source_t, src)->stopped++;
}
static const lv_source_ops_t fake_source_ops = {fake_request_frame, fake_source_stop};

typedef struct {
    lv_viewer_t v;
    int queued_calls;
    size_t position, queued;
    int dropped_calls;
    char drop_reason[32];
    double drop_age_ms;
    int errors, cancels;
    char last_code[32], cancel_reason[32];
    uint64_t last_answer_id;
} fake_viewer_t;

static void fake_queued(lv_viewer_t *v, lv_session_t *s, size_t position, size_t queued)
{
    fake_viewer_t *f = LV_CONTAINER_OF(v, fake_viewer_t, v);
    (void)s;
    f->queued_calls++;
    f->position = position;
    f->queued = queued;
}
static void fake_frame_dropped(lv_viewer_t *v, lv_session_t *s, const char *reason, double age_ms)
{
    fake_viewer_t *f = LV_CONTAINER_OF(v, fake_viewer_t, v);
    (void)s;
    f->dropped_calls++;
    snprintf(f->drop_reason, sizeof f->drop_reason, "%s", reason);
    f->drop_age_ms = age_ms;
}
static void fake_error(lv_viewer_t *v, lv_session_t *s, const char *code, const char *message, uint64_t answer_id)
{
    fake_viewer_t *f = LV_CONTAINER_OF(v, fake_viewer_t, v);
    (void)s;
    (void)message;
    f->errors++;
    snprintf(f->last_code, sizeof f->last_code, "%s", code);
    f->last_answer_id = answer_id;
}
static void fake_answer_cancelled(lv_viewer_t *v, lv_session_t *s, uint64_t answer_id, const char *reason)
{
    fake_viewer_t *f = LV_CONTAINER_OF(v, fake_viewer_t, v);
    (void)s;
    f->cancels++;
    snprintf(f->cancel_reason, sizeof f->cancel_reason, "%s", reason);
    f->last_answer_id = answer_id;
}
static const lv_viewer_ops_t fake_viewer_ops = {.queued = fake_queued,
                                                .error = fake_error,
                                                .frame_dropped = fake_frame_dropped,
                                                .answer_cancelled = fake_answer_cancelled};

static void add_viewer(lv_session_t *s, fake_viewer_t *v, uint64_t now)
{
    memset(v, 0, sizeof *v);
    v->v.ops = &fake_viewer_ops;
    lv_queue_insert_tail(&s->viewers, &v->v.link);
    s->n_viewers++;
    lv_session_attach_changed(s, now);
}

typedef struct {
    size_t capacity, free_slots;
    int drops;
    bool deny_all;
} fake_host_t;

static size_t host_capacity(void *ud) { return ((fake_host_t *)ud)->capacity; }

static size_t host_free_slots(void *ud) { return ((fake_host_t *)ud)->free_slots; }
static void host_dropped(void *ud, const char *reason)
{
    assert_string_equal(reason, "stale");
    ((fake_host_t *)ud)->drops++;
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
    lv_pipeline_hooks_t hooks = {&fx.host, host_capacity, host_allowed, host_free_slots, host_dropped};
    assert_int_equal(lv_pipeline_init(&fx.pipe, fx.reg, &fx.drr, &hooks), 0);
    *state = &fx;
    return 0;
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    assert_int_equal(lv_hmap_count(&fx->pipe.waiting), 0); /* every +1 had its -1 */
    lv_pipeline_free(&fx->pipe);
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
    assert_int_equal(lv_pipeline_principal_waiting(&fx->pipe, "p1"), 1);
    /* unanswered: not asked again */
    assert_int_equal(lv_pipeline_tick(&fx->pipe, 1600), 0);
    /* answered (a frame came): due again one interval after the credit went out */
    lv_pipeline_credit_clear(&fx->pipe, s);
    assert_int_equal(fx->pipe.credits_outstanding, 0);
    assert_int_equal(lv_pipeline_principal_waiting(&fx->pipe, "p1"), 0);
    lv_pipeline_credit_clear(&fx->pipe, s); /* idempotent */
    assert_int_equal(lv_pipeline_principal_waiting(&fx->pipe, "p1"), 0);
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
    assert_int_equal(lv_pipeline_principal_waiting(&fx->pipe, "p1"), 1);
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
    assert_int_equal(lv_pipeline_principal_waiting(&fx->pipe, "p2"), 0);
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
    assert_int_equal(lv_pipeline_principal_waiting(&fx->pipe, "alice"), 1);
    assert_int_equal(lv_pipeline_principal_waiting(&fx->pipe, "bob"), 1);
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

/* A frame put in the mailbox at recv_us. */
static void give_frame(lv_session_t *s, uint64_t recv_us)
{
    static const unsigned char jpeg[] = {0xff, 0xd8, 0xff, 0xd9};
    lv_frame_t *f = lv_frame_new(jpeg, sizeof jpeg);
    assert_non_null(f);
    f->recv_us = recv_us;
    lv_session_mailbox_put(s, f);
}

/* Viewers hear where their frame stands only when it has to wait for a slot; positions count
 * past the free slots. Leaving the queue gives the principal's count back. */
static void queue_positions(void **state)
{
    fx_t *fx = *state;
    fake_viewer_t va, vb, vc;
    lv_session_t *a = new_session(fx, "alice", NULL, 500, 0);
    lv_session_t *b = new_session(fx, "bob", NULL, 500, 0);
    lv_session_t *c = new_session(fx, "carol", NULL, 500, 0);
    add_viewer(a, &va, 0);
    add_viewer(b, &vb, 0);
    add_viewer(c, &vc, 0);
    fx->host.free_slots = 1;
    give_frame(a, 1000);
    lv_pipeline_ready(&fx->pipe, a);
    assert_int_equal(va.queued_calls, 0); /* a slot is free for it */
    assert_int_equal(lv_pipeline_principal_waiting(&fx->pipe, "alice"), 1);
    give_frame(b, 1100);
    lv_pipeline_ready(&fx->pipe, b);
    assert_int_equal(vb.queued_calls, 1);
    assert_int_equal(vb.position, 1);
    assert_int_equal(vb.queued, 2);
    give_frame(c, 1200);
    lv_pipeline_ready(&fx->pipe, c);
    assert_int_equal(vc.position, 2);
    assert_int_equal(vc.queued, 3);
    /* a newer frame for a queued session keeps its place, no second message, no second count */
    give_frame(b, 1300);
    lv_pipeline_ready(&fx->pipe, b);
    assert_int_equal(vb.queued_calls, 1);
    assert_int_equal(b->drr.enqueued_us, 1300);
    assert_int_equal(lv_pipeline_principal_waiting(&fx->pipe, "bob"), 1);
    /* not started, or no frame: not queued */
    lv_pipeline_unready(&fx->pipe, c);
    lv_pipeline_unready(&fx->pipe, c); /* idempotent */
    assert_int_equal(lv_pipeline_principal_waiting(&fx->pipe, "carol"), 0);
    lv_session_set_started(fx->reg, c, false, 0);
    lv_pipeline_ready(&fx->pipe, c);
    assert_false(lv_drr_node_queued(&c->drr));
    lv_pipeline_unready(&fx->pipe, a);
    lv_pipeline_unready(&fx->pipe, b);
    assert_int_equal(lv_drr_queued(&fx->drr), 0);
    assert_int_equal(lv_pipeline_principal_waiting(&fx->pipe, "alice") + lv_pipeline_principal_waiting(&fx->pipe, "bob"), 0);
    a->n_viewers = b->n_viewers = c->n_viewers = 0;
}

typedef struct {
    fx_t *fx;
    char order[16][64];
    size_t n;
} run_log_t;

static lv_drr_verdict_t take_turn(lv_drr_node_t *node, void *ud)
{
    run_log_t *log = ud;
    lv_session_t *s = LV_CONTAINER_OF(node, lv_session_t, drr);
    lv_frame_unref(lv_session_mailbox_take(s));
    lv_pipeline_left_queue(&log->fx->pipe, s);
    if (log->n < 16)
        snprintf(log->order[log->n++], sizeof log->order[0], "%s", s->rec.principal);
    return LV_DRR_DISPATCHED;
}

static void on_stale_cb(lv_drr_node_t *node, void *ud)
{
    run_log_t *log = ud;
    lv_pipeline_drop_stale(&log->fx->pipe, LV_CONTAINER_OF(node, lv_session_t, drr), 10000000);
}

/* A frame older than its max age when its turn comes is dropped and the viewers are told; the
 * default max age is two intervals, at least 2 s. */
static void stale_frames_dropped(void **state)
{
    fx_t *fx = *state;
    fake_viewer_t v;
    lv_session_t *s = new_session(fx, "alice", NULL, 500, 0);
    add_viewer(s, &v, 0);
    give_frame(s, 1000000);
    s->pending->capture_age_ms = 30;
    lv_pipeline_ready(&fx->pipe, s);
    assert_int_equal(s->drr.max_age_us, 2000000);
    run_log_t log = {.fx = fx};
    lv_drr_run(&fx->drr, 16, 10000000, take_turn, on_stale_cb, &log); /* 9 s later */
    assert_int_equal(log.n, 0);
    assert_int_equal(v.dropped_calls, 1);
    assert_string_equal(v.drop_reason, "stale");
    assert_true(v.drop_age_ms > 9029.0 && v.drop_age_ms < 9031.0);
    assert_int_equal(s->frames_stale, 1);
    assert_null(s->pending);
    assert_int_equal(fx->host.drops, 1);
    assert_int_equal(lv_pipeline_principal_waiting(&fx->pipe, "alice"), 0);
    /* --max-frame-age-ms overrides the default */
    fx->pipe.max_frame_age_ms = 100;
    give_frame(s, 1000000);
    lv_pipeline_ready(&fx->pipe, s);
    assert_int_equal(s->drr.max_age_us, 100000);
    lv_pipeline_unready(&fx->pipe, s);
    s->n_viewers = 0;
}

/* Fairness across principals: alice has three sessions waiting and bob one; turns alternate
 * between principals, so bob is served second, not fourth. */
static void turns_fair_across_principals(void **state)
{
    fx_t *fx = *state;
    lv_session_t *a[3];
    for (int i = 0; i < 3; i++) {
        a[i] = new_session(fx, "alice", NULL, 500, 0);
        give_frame(a[i], 1000 + (uint64_t)i);
        lv_pipeline_ready(&fx->pipe, a[i]);
    }
    lv_session_t *b = new_session(fx, "bob", NULL, 500, 0);
    give_frame(b, 2000);
    lv_pipeline_ready(&fx->pipe, b);
    assert_int_equal(lv_pipeline_principal_waiting(&fx->pipe, "alice"), 3);
    run_log_t log = {.fx = fx};
    assert_int_equal(lv_drr_run(&fx->drr, 16, 3000, take_turn, on_stale_cb, &log), 4);
    assert_int_equal(log.n, 4);
    assert_string_equal(log.order[0], "alice");
    assert_string_equal(log.order[1], "bob");
    assert_string_equal(log.order[2], "alice");
    assert_string_equal(log.order[3], "alice");
    assert_int_equal(lv_pipeline_principal_waiting(&fx->pipe, "alice") + lv_pipeline_principal_waiting(&fx->pipe, "bob"), 0);
}

/* Cancel on detach: only a session with neither viewer nor source, for detached_cancel_ms. A
 * session fed by a source with nobody watching keeps its work. */
static void detached_sessions_get_no_work(void **state)
{
    fx_t *fx = *state;
    fake_source_t src;
    fake_viewer_t v;
    fx->pipe.detached_cancel_ms = 2000;
    lv_session_t *s = new_session(fx, "alice", &src, 500, 1000);
    assert_false(lv_pipeline_detached_too_long(&fx->pipe, s, 1000000)); /* a source: attached */
    add_viewer(s, &v, 1000);
    detach_source(&fx->pipe, s, &src, 1000);
    assert_false(lv_pipeline_detached_too_long(&fx->pipe, s, 1000000)); /* a viewer: attached */
    lv_queue_remove(&v.v.link);
    s->n_viewers--;
    lv_session_attach_changed(s, 5000);
    assert_false(lv_pipeline_detached_too_long(&fx->pipe, s, 6999));
    assert_true(lv_pipeline_detached_too_long(&fx->pipe, s, 7000));
    /* it comes back: attached again */
    add_viewer(s, &v, 8000);
    assert_false(lv_pipeline_detached_too_long(&fx->pipe, s, 100000));
    s->n_viewers = 0;
}

/* Supersede on a settings change: only settings the request is made of, only with a job. */
static void settings_change_supersedes_job(void **state)
{
    fx_t *fx = *state;
    lv_session_t *s = new_session(fx, "alice", NULL, 500, 0);
    lv_settings_t next = s->rec.settings;
    snprintf(next.prompt, sizeof next.prompt, "%s", "what changed?");
    assert_false(lv_pipeline_supersedes(s, &next)); /* no job */
    s->job = (struct lv_job *)(void *)s; /* only tested for NULL */
    assert_true(lv_pipeline_supersedes(s, &next));
    next = s->rec.settings;
    next.interval_ms = s->rec.settings.interval_ms * 2;
    assert_false(lv_pipeline_supersedes(s, &next)); /* pacing, not the request */
    next.max_tokens = s->rec.settings.max_tokens + 1;
    assert_true(lv_pipeline_supersedes(s, &next));
    next = s->rec.settings;
    next.temperature = s->rec.settings.temperature + 0.5;
    assert_true(lv_pipeline_supersedes(s, &next));
    next = s->rec.settings;
    snprintf(next.model, sizeof next.model, "%s", "other-model");
    assert_true(lv_pipeline_supersedes(s, &next));
    s->job = NULL;
}

/* Errors and take-backs reach every viewer; an error counts once for the session, watched or not. */
static void errors_and_cancels_reach_viewers(void **state)
{
    fx_t *fx = *state;
    fake_viewer_t v1, v2;
    lv_session_t *s = new_session(fx, "alice", NULL, 500, 0);
    lv_pipeline_error(&fx->pipe, s, "no_backend", "nobody serves it", 0);
    assert_int_equal(s->errors, 1);
    add_viewer(s, &v1, 0);
    add_viewer(s, &v2, 0);
    lv_pipeline_error(&fx->pipe, s, "backend_error", "b1: 500", 7);
    assert_int_equal(s->errors, 2);
    assert_int_equal(v1.errors, 1);
    assert_int_equal(v2.errors, 1);
    assert_string_equal(v2.last_code, "backend_error");
    assert_int_equal(v2.last_answer_id, 7);
    lv_pipeline_answer_cancelled(&fx->pipe, s, 8, "settings_changed");
    assert_int_equal(v1.cancels, 1);
    assert_int_equal(v2.cancels, 1);
    assert_string_equal(v1.cancel_reason, "settings_changed");
    assert_int_equal(v1.last_answer_id, 8);
    s->n_viewers = 0;
}

/* stop: the credit, the queue place and the waiting frame go, sources hear stop, no more credits
 * until start. */
static void stop_and_start(void **state)
{
    fx_t *fx = *state;
    fake_source_t src;
    fake_viewer_t v;
    lv_session_t *s = new_session(fx, "alice", &src, 100, 0);
    add_viewer(s, &v, 0);
    assert_int_equal(lv_pipeline_tick(&fx->pipe, 0), 1);
    lv_pipeline_credit_clear(&fx->pipe, s); /* a frame came */
    give_frame(s, 1000);
    lv_pipeline_ready(&fx->pipe, s);
    assert_int_equal(lv_pipeline_principal_waiting(&fx->pipe, "alice"), 1);
    lv_pipeline_stop(&fx->pipe, s, 50);
    assert_false(s->rec.started);
    assert_null(s->pending);
    assert_false(lv_drr_node_queued(&s->drr));
    assert_int_equal(src.stopped, 1);
    assert_int_equal(lv_pipeline_principal_waiting(&fx->pipe, "alice"), 0);
    assert_int_equal(lv_pipeline_tick(&fx->pipe, 10000), 0);
    lv_pipeline_start(&fx->pipe, s, 10000);
    assert_int_equal(lv_pipeline_tick(&fx->pipe, 10000), 1);
    /* stop with a credit out: it is dropped */
    lv_pipeline_stop(&fx->pipe, s, 10010);
    assert_int_equal(s->credit_outstanding, 0);
    assert_int_equal(fx->pipe.credits_outstanding, 0);
    s->n_viewers = 0;
}

/* close: the page's socket was viewer and source; when it goes, the credit goes and the idle clock
 * starts. A camera source that stays keeps the session asked for frames with nobody watching. */
static void close_detaches(void **state)
{
    fx_t *fx = *state;
    fake_source_t page_src, camera;
    fake_viewer_t page;
    lv_session_t *s = new_session(fx, "alice", NULL, 100, 0);
    memset(&page_src, 0, sizeof page_src);
    memset(&camera, 0, sizeof camera);
    memset(&page, 0, sizeof page);
    page_src.src.ops = camera.src.ops = &fake_source_ops;
    page.v.ops = &fake_viewer_ops;
    lv_pipeline_attach_viewer(&fx->pipe, s, &page.v, 0);
    lv_pipeline_attach_source(&fx->pipe, s, &page_src.src, 0);
    lv_pipeline_attach_source(&fx->pipe, s, &camera.src, 0);
    assert_int_equal(lv_pipeline_tick(&fx->pipe, 0), 1);
    assert_int_equal(page_src.asked + camera.asked, 2); /* every source is asked */
    lv_pipeline_detach_viewer(&fx->pipe, s, &page.v, 10);
    lv_pipeline_detach_source(&fx->pipe, s, &page_src.src, 10);
    assert_true(lv_session_attached(s));
    assert_int_not_equal(s->credit_outstanding, 0); /* the camera may still answer it */
    lv_pipeline_credit_clear(&fx->pipe, s);
    assert_int_equal(lv_pipeline_tick(&fx->pipe, 100), 1);
    assert_int_equal(camera.asked, 2);
    assert_int_equal(page_src.asked, 1);
    lv_pipeline_detach_source(&fx->pipe, s, &camera.src, 150);
    assert_false(lv_session_attached(s));
    assert_int_equal(s->detached_since_ms, 150);
    assert_int_equal(s->credit_outstanding, 0);
    assert_int_equal(fx->pipe.credits_outstanding, 0);
    assert_int_equal(lv_pipeline_tick(&fx->pipe, 10000), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(source_only_session_gets_credits, setup, teardown),
        cmocka_unit_test_setup_teardown(lost_credit_is_reissued, setup, teardown),
        cmocka_unit_test_setup_teardown(who_gets_no_credit, setup, teardown),
        cmocka_unit_test_setup_teardown(credits_paced_by_capacity_and_principal, setup, teardown),
        cmocka_unit_test_setup_teardown(granted_sessions_rotate, setup, teardown),
        cmocka_unit_test_setup_teardown(queue_positions, setup, teardown),
        cmocka_unit_test_setup_teardown(stale_frames_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(turns_fair_across_principals, setup, teardown),
        cmocka_unit_test_setup_teardown(detached_sessions_get_no_work, setup, teardown),
        cmocka_unit_test_setup_teardown(settings_change_supersedes_job, setup, teardown),
        cmocka_unit_test_setup_teardown(errors_and_cancels_reach_viewers, setup, teardown),
        cmocka_unit_test_setup_teardown(stop_and_start, setup, teardown),
        cmocka_unit_test_setup_teardown(close_detaches, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

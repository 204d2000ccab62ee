/* test_lane.c - lv_lane: items cross between the main loop and the I/O side, inline and on a
 * thread; a queued item runs once; references keep an item alive until every side and queue has
 * let go; soon-posts arrive in one batch; destroy drops what is still queued. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <stdlib.h>
#include <uv.h>

#include "lv_common.h"
#include "lv_http.h"
#include "lv_lane.h"

typedef struct {
    lv_lane_item_t item;
    lv_lane_t *lane;
    atomic_int io_runs;       /* written on the I/O side */
    int main_runs;            /* main loop only */
    int soon;                 /* io_turn: post it back with post_main_soon instead of post_main */
    int *freed;               /* counts frees (either thread; read after the thread is joined) */
} probe_t;

static void io_turn(lv_lane_item_t *it)
{
    probe_t *p = LV_CONTAINER_OF(it, probe_t, item);
    atomic_fetch_add(&p->io_runs, 1);
    if (p->soon)
        lv_lane_post_main_soon(p->lane, it);
    else
        lv_lane_post_main(p->lane, it);
}

static void main_turn(lv_lane_item_t *it)
{
    probe_t *p = LV_CONTAINER_OF(it, probe_t, item);
    p->main_runs++;
}

static void probe_free(lv_lane_item_t *it)
{
    probe_t *p = LV_CONTAINER_OF(it, probe_t, item);
    (*p->freed)++;
    free(p);
}

typedef struct {
    uv_loop_t loop;
    lv_http_t *http;
    lv_lane_t *lane;
    int freed;
} fx_t;

static int setup_mode(void **state, bool threaded)
{
    fx_t *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_int_equal(lv_http_create(&f->loop, &f->http), 0);
    assert_int_equal(lv_lane_create(&f->loop, f->http, threaded, &f->lane), 0);
    assert_int_equal(lv_lane_threaded(f->lane), threaded);
    *state = f;
    return 0;
}
static int setup_inline(void **state) { return setup_mode(state, false); }
static int setup_thread(void **state) { return setup_mode(state, true); }

static int teardown(void **state)
{
    fx_t *f = *state;
    if (f->lane)
        lv_lane_destroy(f->lane);
    lv_http_destroy(f->http);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    free(f);
    return 0;
}

static probe_t *probe_new(fx_t *f, int refs)
{
    probe_t *p = calloc(1, sizeof *p);
    assert_non_null(p);
    p->lane = f->lane;
    p->freed = &f->freed;
    atomic_init(&p->io_runs, 0);
    lv_lane_item_init(f->lane, &p->item, refs, io_turn, main_turn, probe_free);
    return p;
}

/* run the main loop until cond or 2 s */
#define RUN_UNTIL(f, cond)                                                                                   \
    do {                                                                                                     \
        uint64_t until_ = lv_now_ms() + 2000;                                                                \
        while (!(cond) && lv_now_ms() < until_)                                                              \
            uv_run(&(f)->loop, UV_RUN_NOWAIT);                                                               \
    } while (0)

/* A round trip: posted to the I/O side, which posts it back; both turns run once each, on the
 * right side, and never from inside the post. */
/* The I/O loop's pause: 4 ms until 40 transfers, then one more millisecond per 8, 10 ms at most. */
static void test_pace(void **state)
{
    (void)state;
    assert_int_equal(lv_lane_io_pace_ms(0), LV_LANE_IO_PACE_MS);
    assert_int_equal(lv_lane_io_pace_ms(39), 4);
    assert_int_equal(lv_lane_io_pace_ms(40), 5);
    assert_int_equal(lv_lane_io_pace_ms(79), 9);
    assert_int_equal(lv_lane_io_pace_ms(80), LV_LANE_IO_PACE_MAX_MS);
    assert_int_equal(lv_lane_io_pace_ms((size_t)-1), LV_LANE_IO_PACE_MAX_MS);
}

static void test_round_trip(void **state)
{
    fx_t *f = *state;
    probe_t *p = probe_new(f, 1);
    lv_lane_post_io(f->lane, &p->item);
    lv_lane_post_io(f->lane, &p->item); /* already queued: runs once */
    assert_int_equal(p->main_runs, 0);
    RUN_UNTIL(f, p->main_runs == 1);
    assert_int_equal(atomic_load(&p->io_runs), 1);
    assert_int_equal(p->main_runs, 1);
    assert_int_equal(f->freed, 0);
    lv_lane_unref(f->lane, &p->item); /* the owner's reference: the last one */
    assert_int_equal(f->freed, 1);
}

/* Many items posted soon arrive together within the batch time, each once. */
static void test_soon_batch(void **state)
{
    fx_t *f = *state;
    enum { N = 50 };
    probe_t *v[N];
    for (int i = 0; i < N; i++) {
        v[i] = probe_new(f, 1);
        v[i]->soon = 1;
        lv_lane_post_io(f->lane, &v[i]->item);
    }
    uint64_t t0 = lv_now_ms();
    int all = 0;
    uint64_t until = t0 + 2000;
    while (!all && lv_now_ms() < until) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        all = 1;
        for (int i = 0; i < N; i++)
            all &= v[i]->main_runs == 1;
    }
    assert_true(all);
    /* within the batch time plus scheduling slack, not one wake-up per item */
    assert_true(lv_now_ms() - t0 < LV_LANE_BATCH_MS + 500);
    for (int i = 0; i < N; i++) {
        assert_int_equal(v[i]->main_runs, 1);
        lv_lane_unref(f->lane, &v[i]->item);
    }
    assert_int_equal(f->freed, N);
}

/* An item whose owner let go while it sits in a queue stays valid until that queue drops it. */
static void test_ref_held_by_queue(void **state)
{
    fx_t *f = *state;
    probe_t *p = probe_new(f, 1);
    lv_lane_post_io(f->lane, &p->item);
    lv_lane_unref(f->lane, &p->item); /* the owner goes; the io queue holds it */
    assert_int_equal(f->freed, 0);
    RUN_UNTIL(f, f->freed == 1); /* io turn posts it to main; main runs it; the last ref goes */
    assert_int_equal(f->freed, 1);
}

/* Destroy with items still queued for the main side: they are dropped, not run, and freed. */
static void test_destroy_drops_queued(void **state)
{
    fx_t *f = *state;
    probe_t *p = probe_new(f, 1);
    lv_lane_post_main(f->lane, &p->item);
    lv_lane_unref(f->lane, &p->item);
    assert_int_equal(f->freed, 0);
    lv_lane_destroy(f->lane);
    f->lane = NULL;
    assert_int_equal(f->freed, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pace),
        cmocka_unit_test_setup_teardown(test_round_trip, setup_inline, teardown),
        cmocka_unit_test_setup_teardown(test_round_trip, setup_thread, teardown),
        cmocka_unit_test_setup_teardown(test_soon_batch, setup_inline, teardown),
        cmocka_unit_test_setup_teardown(test_soon_batch, setup_thread, teardown),
        cmocka_unit_test_setup_teardown(test_ref_held_by_queue, setup_inline, teardown),
        cmocka_unit_test_setup_teardown(test_ref_held_by_queue, setup_thread, teardown),
        cmocka_unit_test_setup_teardown(test_destroy_drops_queued, setup_inline, teardown),
        cmocka_unit_test_setup_teardown(test_destroy_drops_queued, setup_thread, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

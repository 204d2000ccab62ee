/* test_pipeline.c - the frame pipeline (src/core/lv_pipeline.h) alone, with fakes for every port:
 * a source that records the credits it is asked for, a viewer that records what the page would
 * see, a dispatcher whose jobs the test starts, streams and ends by hand, a fake clock, and the
 * real registry over the memory store. Covers credits, queue positions, stale drops, fairness
 * across principals, the answer path (answer_start, deltas coalesced, the answer, metrics),
 * a busy backend, the requeue after a failure before the first token, errors, no backend,
 * cancel on detach and release, supersede on a settings change, preemption for a starved
 * principal, shutdown, and identical requests done once (coalescing: followers, hand-over). */
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
    char last_message[1100];
    uint64_t last_answer_id;
    int starts, deltas, answers;
    char text[256];      /* the deltas of the current answer, joined */
    char answer[256];    /* the last complete answer */
    char log[256];       /* S (answer_start), D (delta), A (answer), E, C: the order things came */
    double latency_ms;
    bool processing_at_answer;
} fake_viewer_t;

static void vlog(fake_viewer_t *f, char c)
{
    size_t n = strlen(f->log);
    if (n + 1 < sizeof f->log) {
        f->log[n] = c;
        f->log[n + 1] = '\0';
    }
}

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
    vlog(f, 'E');
    snprintf(f->last_code, sizeof f->last_code, "%s", code);
    snprintf(f->last_message, sizeof f->last_message, "%s", message);
    f->last_answer_id = answer_id;
}
static void fake_answer_cancelled(lv_viewer_t *v, lv_session_t *s, uint64_t answer_id, const char *reason)
{
    fake_viewer_t *f = LV_CONTAINER_OF(v, fake_viewer_t, v);
    (void)s;
    f->cancels++;
    vlog(f, 'C');
    snprintf(f->cancel_reason, sizeof f->cancel_reason, "%s", reason);
    f->last_answer_id = answer_id;
}
static void fake_answer_start(lv_viewer_t *v, lv_session_t *s, const lv_job_t *job)
{
    fake_viewer_t *f = LV_CONTAINER_OF(v, fake_viewer_t, v);
    (void)s;
    f->starts++;
    f->last_answer_id = job->answer_id;
    f->text[0] = '\0';
    vlog(f, 'S');
}
static void fake_delta(lv_viewer_t *v, lv_session_t *s, uint64_t answer_id, const char *text, size_t len)
{
    fake_viewer_t *f = LV_CONTAINER_OF(v, fake_viewer_t, v);
    (void)s;
    assert_int_equal(answer_id, f->last_answer_id);
    f->deltas++;
    size_t n = strlen(f->text);
    assert_true(n + len < sizeof f->text);
    memcpy(f->text + n, text, len);
    f->text[n + len] = '\0';
    vlog(f, 'D');
}
static void fake_answer(lv_viewer_t *v, lv_session_t *s, const lv_job_t *job, const lv_dispatch_result_t *r,
                        double latency_ms)
{
    fake_viewer_t *f = LV_CONTAINER_OF(v, fake_viewer_t, v);
    f->answers++;
    f->latency_ms = latency_ms;
    f->processing_at_answer = s->job != NULL;
    assert_true(r->text_len < sizeof f->answer);
    memcpy(f->answer, r->text, r->text_len);
    f->answer[r->text_len] = '\0';
    assert_int_equal(job->answer_id, f->last_answer_id);
    vlog(f, 'A');
}
static const lv_viewer_ops_t fake_viewer_ops = {.queued = fake_queued,
                                                .answer_start = fake_answer_start,
                                                .delta = fake_delta,
                                                .answer = fake_answer,
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

/* A dispatcher whose jobs do what the test says: submit takes up to `slots` jobs (then LV_EAGAIN),
 * or fails with submit_rc; each job is started at once (or later with fake_start, like a frame
 * being shaped), streams with fake_delta and ends with fake_done. */
#define FAKE_MAX_JOBS 32
typedef struct {
    lv_dispatch_t d;
    size_t capacity, free_slots, slots;
    int submit_rc;
    bool start_later;
    lv_job_t *jobs[FAKE_MAX_JOBS];
    size_t n_jobs;
    int submits, cancels, grows_asked, reopened;
    bool down; /* serves: no backend serves anything */
    uint64_t ttft_floor_us;
    bool replace_ok; /* replace_frame takes a newer frame for an unstarted job */
    int replaces;
} fake_dispatch_t;

static int fd_submit(lv_dispatch_t *d, lv_job_t *job, char *why, size_t why_size)
{
    fake_dispatch_t *fd = (fake_dispatch_t *)d;
    if (fd->submit_rc) {
        snprintf(why, why_size, "nobody serves '%s'", job->settings.model);
        return fd->submit_rc;
    }
    if (fd->n_jobs >= fd->slots)
        return LV_EAGAIN;
    fd->submits++;
    fd->jobs[fd->n_jobs++] = job;
    snprintf(job->backend_id, sizeof job->backend_id, "%s", "b1");
    snprintf(job->model, sizeof job->model, "%s", job->settings.model[0] ? job->settings.model : "m1");
    if (!fd->start_later)
        d->events->started(d, job);
    return 0;
}
static void fd_forget(fake_dispatch_t *fd, lv_job_t *job)
{
    for (size_t i = 0; i < fd->n_jobs; i++)
        if (fd->jobs[i] == job) {
            memmove(&fd->jobs[i], &fd->jobs[i + 1], (fd->n_jobs - i - 1) * sizeof fd->jobs[0]);
            fd->n_jobs--;
            return;
        }
    fail_msg("job not known to the dispatcher");
}
static void fd_cancel(lv_dispatch_t *d, lv_job_t *job)
{
    fake_dispatch_t *fd = (fake_dispatch_t *)d;
    fd_forget(fd, job);
    fd->cancels++;
}
static size_t fd_capacity(lv_dispatch_t *d) { return ((fake_dispatch_t *)d)->capacity; }
static size_t fd_free_slots(lv_dispatch_t *d) { return ((fake_dispatch_t *)d)->free_slots; }
static int fd_grow(lv_dispatch_t *d, lv_job_t *job)
{
    (void)job;
    ((fake_dispatch_t *)d)->grows_asked++;
    return 0;
}
static bool fd_could_serve(lv_dispatch_t *d, const lv_job_t *job, const lv_settings_t *want)
{
    (void)d;
    return strcmp(job->settings.model, want->model) == 0;
}
static uint64_t fd_ttft_floor_us(lv_dispatch_t *d, const lv_job_t *job)
{
    (void)job;
    return ((fake_dispatch_t *)d)->ttft_floor_us;
}
static int fd_reopened(lv_dispatch_t *d) { return ((fake_dispatch_t *)d)->reopened; }
static bool fd_serves(lv_dispatch_t *d, const lv_settings_t *st, char *why, size_t why_size)
{
    if (!((fake_dispatch_t *)d)->down)
        return true;
    snprintf(why, why_size, "nobody serves '%s'", st->model);
    return false;
}
static int fd_replace_frame(lv_dispatch_t *d, lv_job_t *job, lv_frame_t *f)
{
    fake_dispatch_t *fd = (fake_dispatch_t *)d;
    assert_false(job->started);
    assert_non_null(f);
    if (!fd->replace_ok)
        return LV_EAGAIN;
    fd->replaces++;
    return 0;
}
static const lv_dispatch_ops_t fd_ops = {.submit = fd_submit,
                                         .replace_frame = fd_replace_frame,
                                         .cancel = fd_cancel,
                                         .capacity = fd_capacity,
                                         .free_slots = fd_free_slots,
                                         .grow = fd_grow,
                                         .could_serve = fd_could_serve,
                                         .ttft_floor_us = fd_ttft_floor_us,
                                         .serves = fd_serves,
                                         .reopened = fd_reopened};

static void fake_start(fake_dispatch_t *fd, lv_job_t *job) { fd->d.events->started(&fd->d, job); }
static void fake_delta_in(fake_dispatch_t *fd, lv_job_t *job, const char *text)
{
    fd->d.events->delta(&fd->d, job, text, strlen(text));
}
/* End job: rc 0 answers text; requeue hands the frame back; otherwise an error. */
static void fake_done(fake_dispatch_t *fd, lv_job_t *job, int rc, bool requeue, const char *text)
{
    lv_dispatch_result_t r = {.rc = rc,
                              .requeue = requeue,
                              .error_code = rc ? "backend_error" : NULL,
                              .error_message = rc ? "HTTP 500" : NULL,
                              .text = text,
                              .text_len = strlen(text),
                              .tokens = 3,
                              .ttft_us = 50000,
                              .streamed = true};
    fd_forget(fd, job);
    fd->d.events->done(&fd->d, job, &r);
}

typedef struct {
    int drops, no_backend_drops, kicks, dispatched, answered, failed, coalesced;
    char cancelled[64];
    bool deny_all;
    uint64_t now_us;
} fake_host_t;

static void host_dropped(void *ud, const char *reason)
{
    fake_host_t *h = ud;
    if (strcmp(reason, "stale") == 0)
        h->drops++;
    else if (strcmp(reason, "no_backend") == 0)
        h->no_backend_drops++;
    else
        fail_msg("unexpected drop reason %s", reason);
}

static bool host_allowed(void *ud, const lv_session_t *s, uint64_t now)
{
    (void)s;
    (void)now;
    return !((fake_host_t *)ud)->deny_all;
}
static void host_kick(void *ud) { ((fake_host_t *)ud)->kicks++; }
static uint64_t host_now_us(void *ud) { return ((fake_host_t *)ud)->now_us; }
static void host_dispatched(void *ud, double queue_wait_ms, double frame_age_ms)
{
    (void)queue_wait_ms;
    (void)frame_age_ms;
    ((fake_host_t *)ud)->dispatched++;
}
static void host_answered(void *ud, const lv_job_t *job, const lv_dispatch_result_t *r, double latency_ms,
                          uint64_t gateway_us)
{
    (void)job;
    (void)r;
    (void)latency_ms;
    (void)gateway_us;
    ((fake_host_t *)ud)->answered++;
}
static void host_failed(void *ud, const char *code)
{
    (void)code;
    ((fake_host_t *)ud)->failed++;
}
static void host_coalesced(void *ud, const lv_job_t *follower)
{
    assert_non_null(follower->session);
    ((fake_host_t *)ud)->coalesced++;
}
static void host_cancelled(void *ud, const char *reason)
{
    fake_host_t *h = ud;
    size_t n = strlen(h->cancelled);
    snprintf(h->cancelled + n, sizeof h->cancelled - n, "%s%s", n ? "," : "", reason);
}

typedef struct {
    lv_store_t *store;
    lv_registry_t *reg;
    lv_drr_t drr;
    fake_host_t host;
    fake_dispatch_t disp;
    lv_pipeline_t pipe;
} fx_t;

static int setup_caps(void **state, size_t max_sessions, size_t per_principal)
{
    static fx_t fx;
    memset(&fx, 0, sizeof fx);
    lv_registry_caps_t caps = {.max_sessions = max_sessions, .max_sessions_per_principal = per_principal};
    assert_int_equal(lv_store_mem_create(max_sessions + 36, &fx.store), 0);
    assert_int_equal(lv_registry_create(fx.store, &caps, &fx.reg), 0);
    assert_int_equal(lv_drr_init(&fx.drr, 1), 0);
    lv_drr_track_jobs(&fx.drr);
    fx.disp.d.ops = &fd_ops;
    fx.disp.capacity = 4;
    fx.disp.slots = FAKE_MAX_JOBS;
    lv_pipeline_hooks_t hooks = {.ud = &fx.host,
                                 .kick = host_kick,
                                 .now_us = host_now_us,
                                 .credit_allowed = host_allowed,
                                 .dropped = host_dropped,
                                 .dispatched = host_dispatched,
                                 .answered = host_answered,
                                 .failed = host_failed,
                                 .cancelled = host_cancelled,
                                 .coalesced = host_coalesced};
    assert_int_equal(lv_pipeline_init(&fx.pipe, fx.reg, &fx.drr, &fx.disp.d, &hooks), 0);
    *state = &fx;
    return 0;
}

static int setup(void **state) { return setup_caps(state, 64, 16); }
/* for the credit timetable at scale (MANY sessions, 100 principals) */
static int setup_many(void **state) { return setup_caps(state, 12000, 200); }

static int teardown(void **state)
{
    fx_t *fx = *state;
    lv_pipeline_shutdown(&fx->pipe);
    assert_int_equal(fx->disp.n_jobs, 0); /* every job the dispatcher had was ended or cancelled */
    assert_int_equal(lv_hmap_count(&fx->pipe.waiting), 0); /* every +1 had its -1 */
    assert_int_equal(lv_drr_check(&fx->drr), 0);
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
    assert_int_equal(lv_session_create(fx->reg, principal, NULL, NULL, secret, &s), 0);
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
    fx->disp.capacity = 2;
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
    fx->disp.capacity = 0; /* only principals with nothing waiting are asked: one per tick */
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
    fx->disp.free_slots = 1;
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
    fx->host.now_us = 10000000; /* 9 s later */
    assert_int_equal(lv_pipeline_run(&fx->pipe), 0);
    assert_int_equal(fx->disp.submits, 0);
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
    fx->host.now_us = 3000;
    fx->disp.capacity = 0; /* no share bound: only the turn order is tested here */
    assert_int_equal(lv_pipeline_run(&fx->pipe), 4);
    assert_int_equal(fx->disp.n_jobs, 4);
    const char *order[] = {"alice", "bob", "alice", "alice"};
    for (int i = 0; i < 4; i++)
        assert_string_equal(fx->disp.jobs[i]->session->rec.principal, order[i]);
    assert_int_equal(lv_pipeline_principal_waiting(&fx->pipe, "alice") + lv_pipeline_principal_waiting(&fx->pipe, "bob"), 0);
    while (fx->disp.n_jobs)
        fake_done(&fx->disp, fx->disp.jobs[0], 0, false, "ok");
    assert_int_equal(fx->host.answered, 4);
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

/* ---- the job path ---- */

/* A started session with one viewer and a frame put through the pipeline, as the engine does. */
static lv_session_t *watched_session(fx_t *fx, const char *principal, fake_viewer_t *v)
{
    lv_session_t *s = new_session(fx, principal, NULL, 500, 0);
    add_viewer(s, v, 0);
    return s;
}

static void put_frame(fx_t *fx, lv_session_t *s, uint64_t recv_us)
{
    static const unsigned char jpeg[] = {0xff, 0xd8, 0xff, 0xd9};
    lv_frame_t *f = lv_frame_new(jpeg, sizeof jpeg);
    assert_non_null(f);
    f->recv_us = recv_us;
    lv_pipeline_put_frame(&fx->pipe, s, f);
}

/* The whole answer path: the frame's turn starts a job (answer_start), the first delta goes out at
 * once, later ones are coalesced for 40 ms, every delta precedes the answer, the session's metrics
 * and history are updated before the viewers hear the answer, and a frame that came while the job
 * ran is queued when it ends. */
/* A dispatcher whose jobs wait before they start (a cluster's queue) takes a newer frame of the
 * same session into the waiting job: one request, about the newest picture. Once the job has
 * started, or when the dispatcher declines, the frame waits in the mailbox as usual. */
static void waiting_job_takes_newer_frame(void **state)
{
    fx_t *fx = *state;
    fake_viewer_t v;
    lv_session_t *s = watched_session(fx, "alice", &v);
    fx->disp.start_later = true;
    fx->disp.replace_ok = true;
    fx->host.now_us = 1000000;
    put_frame(fx, s, 1000000);
    assert_int_equal(lv_pipeline_run(&fx->pipe), 1);
    lv_job_t *job = fx->disp.jobs[0];
    assert_false(job->started);
    put_frame(fx, s, 1200000);
    assert_int_equal(fx->disp.replaces, 1);
    assert_null(s->pending); /* taken by the job, not waiting beside it */
    assert_int_equal(job->frame->recv_us, 1200000);
    assert_int_equal(job->frame_recv_us, 1200000);
    assert_int_equal(fx->disp.submits, 1);
    /* declined: the frame waits in the mailbox */
    fx->disp.replace_ok = false;
    put_frame(fx, s, 1300000);
    assert_non_null(s->pending);
    assert_int_equal(job->frame->recv_us, 1200000);
    /* started: never replaced */
    fx->disp.replace_ok = true;
    fake_start(&fx->disp, job);
    put_frame(fx, s, 1400000);
    assert_int_equal(fx->disp.replaces, 1);
    assert_int_equal(s->pending->recv_us, 1400000);
    fake_done(&fx->disp, job, 0, false, "about the newer picture");
    assert_string_equal(v.answer, "about the newer picture");
    assert_int_equal(lv_pipeline_run(&fx->pipe), 1);
    /* a job that waited too long inside the dispatcher ends as a stale frame, not an error */
    job = fx->disp.jobs[0];
    fx->host.now_us = 3600000;
    lv_dispatch_result_t r = {.rc = LV_ETIMEDOUT, .stale = true, .error_code = "stale", .text = ""};
    fd_forget(&fx->disp, job);
    fx->disp.d.events->done(&fx->disp.d, job, &r);
    assert_int_equal(fx->host.drops, 1);
    assert_int_equal(fx->host.failed, 0);
    assert_int_equal(s->frames_stale, 1);
    assert_null(s->job);
    assert_int_equal(v.dropped_calls, 1);
    assert_string_equal(v.drop_reason, "stale");
    assert_true(v.drop_age_ms > 1999.0); /* received at 1.4 s, dropped at 3.6 s */
    s->n_viewers = 0;
}

static void answer_path(void **state)
{
    fx_t *fx = *state;
    fake_viewer_t v;
    lv_session_t *s = watched_session(fx, "alice", &v);
    fx->host.now_us = 1000000;
    put_frame(fx, s, 1000000);
    assert_true(fx->host.kicks > 0); /* a run is asked for; the host runs it on a later turn */
    assert_int_equal(fx->disp.submits, 0);
    fx->host.now_us = 1010000;
    assert_int_equal(lv_pipeline_run(&fx->pipe), 1);
    assert_int_equal(fx->host.dispatched, 1);
    lv_job_t *job = fx->disp.jobs[0];
    assert_ptr_equal(s->job, job);
    assert_int_equal(job->answer_id, 1);
    assert_true(job->queue_wait_ms > 9.9 && job->queue_wait_ms < 10.1);
    assert_null(s->pending);
    assert_string_equal(v.log, "S");
    fake_delta_in(&fx->disp, job, "A cat");
    assert_string_equal(v.text, "A cat"); /* the first piece at once */
    fake_delta_in(&fx->disp, job, " sits");
    fx->host.now_us = 1020000;
    fake_delta_in(&fx->disp, job, " on");
    assert_int_equal(v.deltas, 1); /* coalescing */
    lv_pipeline_tick(&fx->pipe, 1030); /* 20 ms after the second piece: not yet */
    assert_int_equal(v.deltas, 1);
    lv_pipeline_tick(&fx->pipe, 1050);
    assert_int_equal(v.deltas, 2);
    assert_string_equal(v.text, "A cat sits on");
    /* a newer frame while the job runs waits in the mailbox, not in the queue */
    put_frame(fx, s, 1055000);
    assert_false(lv_drr_node_queued(&s->drr));
    fx->host.now_us = 1060000;
    fake_delta_in(&fx->disp, job, " a mat");
    fake_done(&fx->disp, job, 0, false, "A cat sits on a mat");
    assert_string_equal(v.log, "SDDDA"); /* the last piece was flushed before the answer */
    assert_string_equal(v.answer, "A cat sits on a mat");
    assert_false(v.processing_at_answer);
    assert_true(v.latency_ms > 59.9 && v.latency_ms < 60.1);
    assert_int_equal(s->rec.total_inferences, 1);
    assert_int_equal(s->history_len, 1);
    assert_string_equal(lv_session_history_at(s, 0)->text, "A cat sits on a mat");
    assert_null(s->job);
    assert_int_equal(fx->host.answered, 1);
    assert_true(lv_drr_node_queued(&s->drr)); /* the waiting frame's turn */
    assert_int_equal(lv_pipeline_run(&fx->pipe), 1);
    assert_int_equal(fx->disp.jobs[0]->answer_id, 2);
    fake_done(&fx->disp, fx->disp.jobs[0], 0, false, "still a cat");
    s->n_viewers = 0;
}

/* With delta_rate set the coalescing interval follows the answers in flight: n_jobs * 1000 /
 * delta_rate ms, never under 40 (the first piece still goes at once) nor over 250. */
static void delta_interval_follows_load(void **state)
{
    fx_t *fx = *state;
    fake_viewer_t v;
    lv_session_t *s = watched_session(fx, "alice", &v);
    fx->pipe.delta_rate = 10; /* one job in flight: 100 ms */
    fx->host.now_us = 1000000;
    put_frame(fx, s, 1000000);
    assert_int_equal(lv_pipeline_run(&fx->pipe), 1);
    lv_job_t *job = fx->disp.jobs[0];
    lv_pipeline_tick(&fx->pipe, 1000);
    assert_int_equal(fx->pipe.delta_ms, 100);
    fake_delta_in(&fx->disp, job, "A cat");
    assert_int_equal(v.deltas, 1); /* the first piece at once, whatever the interval */
    fake_delta_in(&fx->disp, job, " sits");
    lv_pipeline_tick(&fx->pipe, 1060); /* 40 ms would have sent it by now */
    assert_int_equal(v.deltas, 1);
    lv_pipeline_tick(&fx->pipe, 1099);
    assert_int_equal(v.deltas, 1);
    lv_pipeline_tick(&fx->pipe, 1100);
    assert_int_equal(v.deltas, 2);
    assert_string_equal(v.text, "A cat sits");
    fx->pipe.delta_rate = 1; /* 1000 ms, held to the 250 ms ceiling */
    lv_pipeline_tick(&fx->pipe, 1120);
    assert_int_equal(fx->pipe.delta_ms, LV_PIPELINE_DELTA_MAX_MS);
    fx->pipe.delta_rate = 1000; /* 1 ms, held to the 40 ms floor */
    lv_pipeline_tick(&fx->pipe, 1140);
    assert_int_equal(fx->pipe.delta_ms, LV_PIPELINE_DELTA_COALESCE_MS);
    fx->pipe.delta_rate = 0; /* off: the floor */
    lv_pipeline_tick(&fx->pipe, 1160);
    assert_int_equal(fx->pipe.delta_ms, LV_PIPELINE_DELTA_COALESCE_MS);
    fake_done(&fx->disp, job, 0, false, "A cat sits");
    lv_pipeline_tick(&fx->pipe, 1180);
    s->n_viewers = 0;
}

/* Every backend full: the frame keeps its place (the viewer hears its position) and goes when a
 * slot frees; a job whose frame is still being shaped says answer_start only when it is sent. */
static void busy_backend_waits(void **state)
{
    fx_t *fx = *state;
    fake_viewer_t va, vb;
    lv_session_t *a = watched_session(fx, "alice", &va);
    lv_session_t *b = watched_session(fx, "bob", &vb);
    fx->disp.slots = 1;
    fx->disp.free_slots = 1;
    fx->disp.start_later = true;
    put_frame(fx, a, 1000);
    put_frame(fx, b, 1000);
    assert_int_equal(vb.queued_calls, 1);
    assert_int_equal(vb.position, 1);
    fx->host.now_us = 2000;
    assert_int_equal(lv_pipeline_run(&fx->pipe), 1);
    assert_string_equal(va.log, ""); /* shaping: not sent yet */
    fake_start(&fx->disp, a->job);
    assert_string_equal(va.log, "S");
    assert_true(lv_drr_node_queued(&b->drr));
    assert_int_equal(lv_pipeline_run(&fx->pipe), 0); /* still full */
    assert_true(lv_drr_node_queued(&b->drr));
    assert_int_equal(lv_pipeline_principal_waiting(&fx->pipe, "bob"), 1);
    int kicks = fx->host.kicks;
    fake_done(&fx->disp, a->job, 0, false, "a");
    assert_true(fx->host.kicks > kicks);
    assert_int_equal(lv_pipeline_run(&fx->pipe), 1);
    assert_ptr_equal(fx->disp.jobs[0]->session, b);
    assert_int_equal(lv_pipeline_principal_waiting(&fx->pipe, "bob"), 0);
    fake_start(&fx->disp, b->job);
    fake_done(&fx->disp, b->job, 0, false, "b");
    a->n_viewers = b->n_viewers = 0;
}

/* A failure before the first token with the other backends full: no error, the frame waits again
 * (unless a newer one came meanwhile) and is sent on the next turn. A failure the dispatcher does
 * not hand back is an error for that answer, with the backend's id. */
static void requeue_and_errors(void **state)
{
    fx_t *fx = *state;
    fake_viewer_t v;
    lv_session_t *s = watched_session(fx, "alice", &v);
    put_frame(fx, s, 1000);
    lv_pipeline_run(&fx->pipe);
    lv_frame_t *first = fx->disp.jobs[0]->frame;
    fake_done(&fx->disp, s->job, LV_EBACKEND, true, "");
    assert_int_equal(v.errors, 0);
    assert_ptr_equal(s->pending, first);
    assert_true(lv_drr_node_queued(&s->drr));
    assert_int_equal(lv_pipeline_run(&fx->pipe), 1);
    assert_ptr_equal(fx->disp.jobs[0]->frame, first);
    assert_int_equal(fx->disp.jobs[0]->answer_id, 2); /* a new answer: the page saw the first start */
    /* a newer frame came while it ran: that one is sent, the old one goes */
    put_frame(fx, s, 5000);
    lv_frame_t *newer = s->pending;
    fake_done(&fx->disp, s->job, LV_EBACKEND, true, "");
    assert_ptr_equal(s->pending, newer);
    lv_pipeline_run(&fx->pipe);
    /* an error: told to the viewers with the answer id and the backend */
    fake_done(&fx->disp, s->job, LV_EBACKEND, false, "");
    assert_int_equal(v.errors, 1);
    assert_string_equal(v.last_code, "backend_error");
    assert_string_equal(v.last_message, "b1: HTTP 500");
    assert_int_equal(v.last_answer_id, 3);
    assert_int_equal(s->errors, 1);
    assert_int_equal(fx->host.failed, 1);
    assert_false(lv_drr_node_queued(&s->drr));
    s->n_viewers = 0;
}

/* No backend serves the model: the frame goes with an error that says why, nothing stays counted. */
static void no_backend(void **state)
{
    fx_t *fx = *state;
    fake_viewer_t v;
    lv_session_t *s = watched_session(fx, "alice", &v);
    snprintf(s->rec.settings.model, sizeof s->rec.settings.model, "%s", "ghost");
    fx->disp.submit_rc = LV_ENOTFOUND;
    put_frame(fx, s, 1000);
    assert_int_equal(lv_pipeline_run(&fx->pipe), 0);
    assert_string_equal(v.last_code, "no_backend");
    assert_string_equal(v.last_message, "nobody serves 'ghost'");
    assert_int_equal(fx->host.no_backend_drops, 1);
    assert_null(s->pending);
    assert_null(s->job);
    assert_int_equal(lv_pipeline_principal_waiting(&fx->pipe, "alice"), 0);
    /* a start failure is an error too */
    fx->disp.submit_rc = LV_EIO;
    put_frame(fx, s, 2000);
    lv_pipeline_run(&fx->pipe);
    assert_string_equal(v.last_code, "backend_error");
    assert_int_equal(s->errors, 2);
    assert_int_equal(s->answer_seq, 0); /* no answer was started */
    s->n_viewers = 0;
}

/* Work nobody waits for: a session detached for detached_cancel_ms loses its job and its waiting
 * frame at the next review; a session the registry frees loses its job at once. */
static void cancel_detached_and_released(void **state)
{
    fx_t *fx = *state;
    fake_viewer_t v;
    fx->pipe.detached_cancel_ms = 2000;
    lv_session_t *s = new_session(fx, "alice", NULL, 500, 0);
    memset(&v, 0, sizeof v);
    v.v.ops = &fake_viewer_ops;
    lv_pipeline_attach_viewer(&fx->pipe, s, &v.v, 0);
    put_frame(fx, s, 1000);
    lv_pipeline_run(&fx->pipe);
    put_frame(fx, s, 2000);
    lv_pipeline_detach_viewer(&fx->pipe, s, &v.v, 5000);
    fx->host.now_us = 6000000;
    lv_pipeline_tick(&fx->pipe, 6000); /* 1 s detached: kept (a reload comes back sooner) */
    assert_non_null(s->job);
    fx->host.now_us = 7000000;
    lv_pipeline_tick(&fx->pipe, 7000);
    assert_null(s->job);
    assert_null(s->pending);
    assert_int_equal(fx->disp.cancels, 1);
    assert_string_equal(fx->host.cancelled, "detached");
    assert_int_equal(v.answers + v.errors + v.cancels, 0);
    /* released by the registry (expiry, eviction) with a job: cancelled at once */
    lv_session_t *t = new_session(fx, "bob", NULL, 500, 0);
    put_frame(fx, t, 8000000);
    lv_pipeline_run(&fx->pipe);
    assert_non_null(t->job);
    lv_pipeline_release(&fx->pipe, t);
    assert_null(t->job);
    assert_int_equal(fx->disp.cancels, 2);
    /* a job still waiting inside the dispatcher (a cluster's queue) for a session nobody watches
     * any more is taken back the same way */
    fx->disp.start_later = true;
    fake_viewer_t w;
    memset(&w, 0, sizeof w);
    w.v.ops = &fake_viewer_ops;
    lv_session_t *u = new_session(fx, "carol", NULL, 500, 9000);
    lv_pipeline_attach_viewer(&fx->pipe, u, &w.v, 9000);
    put_frame(fx, u, 9000000);
    lv_pipeline_run(&fx->pipe);
    assert_non_null(u->job);
    assert_false(u->job->started);
    lv_pipeline_detach_viewer(&fx->pipe, u, &w.v, 9100);
    fx->host.now_us = 10000000;
    lv_pipeline_tick(&fx->pipe, 10000);
    assert_non_null(u->job); /* not yet */
    fx->host.now_us = 11200000;
    lv_pipeline_tick(&fx->pipe, 11200);
    assert_null(u->job);
    assert_int_equal(fx->disp.cancels, 3);
}

/* A settings change that alters the request takes the answer back after it has run a second, says
 * answer_cancelled, and sends the frame again with the new settings. */
static void supersede_resends(void **state)
{
    fx_t *fx = *state;
    fake_viewer_t v;
    lv_session_t *s = watched_session(fx, "alice", &v);
    fx->host.now_us = 1000000;
    put_frame(fx, s, 1000000);
    lv_pipeline_run(&fx->pipe);
    lv_settings_t next = s->rec.settings;
    snprintf(next.prompt, sizeof next.prompt, "%s", "count the cats");
    lv_pipeline_settings_changed(&fx->pipe, s, &next);
    s->rec.settings = next;
    fx->host.now_us = 1500000;
    lv_pipeline_tick(&fx->pipe, 1500);
    assert_int_equal(v.cancels, 0); /* not before a second */
    fx->host.now_us = 2000000;
    lv_pipeline_tick(&fx->pipe, 2000);
    assert_int_equal(v.cancels, 1);
    assert_string_equal(v.cancel_reason, "settings_changed");
    assert_int_equal(v.last_answer_id, 1);
    assert_string_equal(fx->host.cancelled, "settings_changed");
    assert_int_equal(lv_pipeline_run(&fx->pipe), 1);
    assert_string_equal(fx->disp.jobs[0]->settings.prompt, "count the cats");
    assert_int_equal(fx->disp.jobs[0]->answer_id, 2);
    /* a change of pacing only does not take the answer back */
    next.interval_ms = 2000;
    lv_pipeline_settings_changed(&fx->pipe, s, &next);
    fx->host.now_us = 5000000;
    lv_pipeline_tick(&fx->pipe, 5000);
    assert_int_equal(v.cancels, 1);
    fake_done(&fx->disp, s->job, 0, false, "3 cats");
    assert_string_equal(v.log, "SCSA");
    s->n_viewers = 0;
}

/* Preemption: alice borrowed both slots while alone; bob arrives and finds none. Once alice's
 * oldest request has produced nothing for 4 no-queue TTFTs (at least 1 s), it is taken back
 * ("preempted", its frame waits again) and bob gets the slot. A streaming request is never taken. */
static void preempt_for_starved_principal(void **state)
{
    fx_t *fx = *state;
    fake_viewer_t va1, va2, vb;
    lv_session_t *a1 = watched_session(fx, "alice", &va1);
    lv_session_t *a2 = watched_session(fx, "alice", &va2);
    lv_session_t *b = watched_session(fx, "bob", &vb);
    fx->disp.capacity = 2;
    fx->disp.slots = 2;
    fx->disp.ttft_floor_us = 100000;
    fx->host.now_us = 1000;
    put_frame(fx, a1, 1000);
    put_frame(fx, a2, 1000);
    assert_int_equal(lv_pipeline_run(&fx->pipe), 2);
    lv_job_t *a2_job = a2->job;
    fake_delta_in(&fx->disp, a2_job, "stream"); /* a2 streams: never preempted */
    fx->host.now_us = 500000;
    put_frame(fx, b, 500000);
    assert_int_equal(lv_pipeline_run(&fx->pipe), 0); /* full, and alice's requests are young */
    assert_int_equal(fx->disp.cancels, 0);
    fx->host.now_us = 1002000;
    assert_int_equal(lv_pipeline_run(&fx->pipe), 0); /* the run that finds bob starved takes one */
    assert_int_equal(fx->disp.cancels, 1);
    assert_int_equal(va1.cancels, 1);
    assert_string_equal(va1.cancel_reason, "preempted");
    assert_int_equal(va2.cancels, 0);
    assert_ptr_equal(a2->job, a2_job);
    assert_non_null(a1->pending); /* alice's frame waits again */
    assert_int_equal(lv_pipeline_run(&fx->pipe), 1);
    assert_ptr_equal(b->job, fx->disp.jobs[1]); /* bob first: alice is at her share */
    assert_null(a1->job);
    fake_done(&fx->disp, a2_job, 0, false, "a2");
    fake_done(&fx->disp, b->job, 0, false, "b");
    assert_int_equal(lv_pipeline_run(&fx->pipe), 1); /* alice's frame that was taken back */
    assert_ptr_equal(a1->job, fx->disp.jobs[0]);
    fake_done(&fx->disp, a1->job, 0, false, "a1");
    assert_string_equal(va1.log, "SCSA");
    a1->n_viewers = a2->n_viewers = b->n_viewers = 0;
}

/* Credits are timed to a principal's next turn: while every slot is busy or spoken for, a principal
 * that already has its share in flight (or waiting) is not asked for another frame (it would only
 * age behind its own request; that is recorded as demand, the evidence a full backend needs to
 * grow), one below its share is. With a slot to spare, sessions are asked ahead, so the next frame
 * is there when the request ends. */
static void credits_timed_to_share(void **state)
{
    fx_t *fx = *state;
    fake_source_t sa1, sa2, sb, sc;
    fx->disp.capacity = 2;
    lv_session_t *a1 = new_session(fx, "alice", &sa1, 100, 0);
    lv_session_t *a2 = new_session(fx, "alice", &sa2, 100, 0);
    lv_session_t *b = new_session(fx, "bob", &sb, 100, 0);
    lv_session_t *c = new_session(fx, "carol", &sc, 100, 0);
    lv_session_set_started(fx->reg, a2, false, 0);
    lv_session_set_started(fx->reg, c, false, 0);
    assert_int_equal(lv_pipeline_tick(&fx->pipe, 0), 2); /* a1, b */
    lv_pipeline_credit_clear(&fx->pipe, a1);
    lv_pipeline_credit_clear(&fx->pipe, b);
    put_frame(fx, a1, 1000);
    put_frame(fx, b, 1000);
    assert_int_equal(lv_pipeline_run(&fx->pipe), 2); /* both slots in flight: contended */
    lv_session_set_started(fx->reg, a2, true, 10);
    lv_session_set_started(fx->reg, c, true, 10);
    assert_int_equal(lv_pipeline_tick(&fx->pipe, 200), 1); /* carol only: alice and bob have their share */
    assert_int_equal(sc.asked, 1);
    assert_int_equal(sa2.asked + sa1.asked, 1);
    assert_true(fx->pipe.demand);
    fake_done(&fx->disp, a1->job, 0, false, "a1");
    assert_int_equal(lv_pipeline_tick(&fx->pipe, 300), 1); /* alice's request ended: her turn comes */
    assert_int_equal(sa1.asked + sa2.asked, 2);
    lv_pipeline_credit_clear(&fx->pipe, a1);
    lv_pipeline_credit_clear(&fx->pipe, a2);
    lv_pipeline_credit_clear(&fx->pipe, c);
    /* room to spare: bob's next frame is asked for while his request still runs */
    fx->disp.capacity = 8;
    int asked = sb.asked;
    lv_pipeline_tick(&fx->pipe, 400);
    assert_int_equal(sb.asked, asked + 1);
    assert_false(fx->pipe.demand);
    fake_done(&fx->disp, b->job, 0, false, "b");
    lv_session_t *all[] = {a1, a2, b, c};
    for (size_t i = 0; i < LV_ARRAY_LEN(all); i++)
        lv_pipeline_stop(&fx->pipe, all[i], 500); /* credits out are dropped */
}

/* The interval is a cadence: a credit sent late (ticks are 20 ms apart) does not push the next one
 * later; one held back longer than an interval restarts the cadence instead of catching up. */
static void credits_keep_their_cadence(void **state)
{
    fx_t *fx = *state;
    fake_source_t src;
    lv_session_t *s = new_session(fx, "alice", &src, 100, 0);
    assert_int_equal(lv_pipeline_tick(&fx->pipe, 0), 1);
    lv_pipeline_credit_clear(&fx->pipe, s);
    assert_int_equal(lv_pipeline_tick(&fx->pipe, 99), 0);
    assert_int_equal(lv_pipeline_tick(&fx->pipe, 115), 1); /* due at 100, sent 15 ms late */
    lv_pipeline_credit_clear(&fx->pipe, s);
    assert_int_equal(lv_pipeline_tick(&fx->pipe, 200), 1); /* due at 200, not 215 */
    lv_pipeline_credit_clear(&fx->pipe, s);
    fx->host.deny_all = true; /* held back (its frame budget) for 300 ms */
    assert_int_equal(lv_pipeline_tick(&fx->pipe, 300), 0);
    fx->host.deny_all = false;
    assert_int_equal(lv_pipeline_tick(&fx->pipe, 610), 1);
    lv_pipeline_credit_clear(&fx->pipe, s);
    assert_int_equal(lv_pipeline_tick(&fx->pipe, 700), 0); /* restarted from 610: no catch-up */
    assert_int_equal(lv_pipeline_tick(&fx->pipe, 710), 1);
    lv_pipeline_credit_clear(&fx->pipe, s);
}

/* Nobody serves the model: the source is not asked for frames it would upload in vain; the viewers
 * hear no_backend once, again after 10 s, and credits resume at once when a backend is back. */
static void no_credits_while_nobody_serves(void **state)
{
    fx_t *fx = *state;
    fake_source_t src;
    fake_viewer_t v;
    lv_session_t *s = new_session(fx, "alice", &src, 100, 0);
    add_viewer(s, &v, 0);
    fx->disp.down = true;
    assert_int_equal(lv_pipeline_tick(&fx->pipe, 0), 0);
    assert_int_equal(src.asked, 0);
    assert_int_equal(v.errors, 1);
    assert_string_equal(v.last_code, "no_backend");
    assert_string_equal(v.last_message, "nobody serves ''");
    for (uint64_t t = 20; t < 10000; t += 20)
        lv_pipeline_tick(&fx->pipe, t);
    assert_int_equal(v.errors, 1); /* not once a tick */
    lv_pipeline_tick(&fx->pipe, 10020);
    assert_int_equal(v.errors, 2);
    fx->disp.down = false;
    assert_int_equal(lv_pipeline_tick(&fx->pipe, 10040), 1);
    assert_int_equal(s->no_backend_ms, 0);
    lv_pipeline_stop(&fx->pipe, s, 10050);
    s->n_viewers = 0;
}

/* ---- identical work done once (coalescing) ---- */

#define CAM_KEY ((uint64_t)1 << 32 | 7) /* camera 1, sample 7 */

/* One camera sample as the camera hands it to a session: its own frame, the shared key. */
static void put_shared(fx_t *fx, lv_session_t *s, uint64_t recv_us, uint64_t share_key)
{
    static const unsigned char jpeg[] = {0xff, 0xd8, 0xff, 0xd9};
    lv_frame_t *f = lv_frame_new(jpeg, sizeof jpeg);
    assert_non_null(f);
    f->recv_us = recv_us;
    f->share_key = share_key;
    lv_pipeline_put_frame(&fx->pipe, s, f);
}

static void set_prompt(fx_t *fx, lv_session_t *s, const char *prompt)
{
    lv_settings_t next = s->rec.settings;
    snprintf(next.prompt, sizeof next.prompt, "%s", prompt);
    lv_pipeline_settings_changed(&fx->pipe, s, &next);
    s->rec.settings = next;
}

/* Three people watch one camera with the same question: their three frames of one sample make one
 * backend request, paid by the principal whose turn sent it; each hears the whole answer under
 * its own answer id (start, deltas, answer), gets a history entry and its metrics. */
static void coalesce_one_request_for_three(void **state)
{
    fx_t *fx = *state;
    const char *who[3] = {"alice", "bob", "carol"};
    fake_viewer_t v[3];
    lv_session_t *s[3];
    for (int i = 0; i < 3; i++)
        s[i] = watched_session(fx, who[i], &v[i]);
    s[1]->answer_seq = 41; /* answer ids are each session's own */
    fx->host.now_us = 1000000;
    for (int i = 0; i < 3; i++)
        put_shared(fx, s[i], 1000000 + (uint64_t)i * 1000, CAM_KEY);
    assert_int_equal(lv_drr_queued(&fx->drr), 3); /* nothing runs yet: they meet at their turns */
    fx->host.now_us = 1010000;
    assert_int_equal(lv_pipeline_run(&fx->pipe), 1);
    assert_int_equal(fx->disp.submits, 1);
    assert_int_equal(fx->host.dispatched, 1);
    assert_int_equal(fx->host.coalesced, 2);
    assert_int_equal(lv_drr_queued(&fx->drr), 0);
    lv_job_t *lead = fx->disp.jobs[0];
    assert_ptr_equal(lead->session, s[0]);
    assert_int_equal(lead->n_followers, 2);
    /* who pays: alice's turn sent it; bob and carol hold no slot and have nothing waiting */
    assert_int_equal(lv_drr_user_inflight(&fx->drr, "alice"), 1);
    assert_int_equal(lv_drr_user_inflight(&fx->drr, "bob") + lv_drr_user_inflight(&fx->drr, "carol"), 0);
    for (int i = 0; i < 3; i++) {
        assert_string_equal(v[i].log, "S");
        assert_non_null(s[i]->job);
        assert_null(s[i]->pending);
        assert_int_equal(lv_pipeline_principal_waiting(&fx->pipe, who[i]), 0);
    }
    assert_int_equal(v[0].last_answer_id, 1);
    assert_int_equal(v[1].last_answer_id, 42);
    assert_int_equal(v[2].last_answer_id, 1);
    assert_string_equal(s[1]->job->backend_id, "b1");
    fake_delta_in(&fx->disp, lead, "Two");
    fake_delta_in(&fx->disp, lead, " dogs");
    for (int i = 0; i < 3; i++)
        assert_string_equal(v[i].text, "Two"); /* the first piece at once, the rest coalesced */
    lv_pipeline_tick(&fx->pipe, 1050);
    for (int i = 0; i < 3; i++)
        assert_string_equal(v[i].text, "Two dogs");
    fx->host.now_us = 1100000;
    fake_delta_in(&fx->disp, lead, " play");
    fake_done(&fx->disp, lead, 0, false, "Two dogs play");
    for (int i = 0; i < 3; i++) {
        assert_string_equal(v[i].log, "SDDDA");
        assert_string_equal(v[i].text, "Two dogs play");
        assert_string_equal(v[i].answer, "Two dogs play");
        assert_false(v[i].processing_at_answer);
        assert_null(s[i]->job);
        assert_int_equal(s[i]->rec.total_inferences, 1);
        assert_int_equal(s[i]->history_len, 1);
        assert_string_equal(lv_session_history_at(s[i], 0)->text, "Two dogs play");
    }
    assert_int_equal(lv_session_history_at(s[1], 0)->answer_id, 42);
    /* latency from each session's own frame */
    assert_true(v[0].latency_ms > 99.9 && v[0].latency_ms < 100.1);
    assert_true(v[2].latency_ms > 97.9 && v[2].latency_ms < 98.1);
    assert_int_equal(fx->host.answered, 3);
    assert_int_equal(lv_drr_user_inflight(&fx->drr, "alice"), 0);
    assert_int_equal(lv_hmap_count(&fx->pipe.coalesce), 0);
    for (int i = 0; i < 3; i++)
        s[i]->n_viewers = 0;
}

/* Another question about the same picture is another request; a session that asked nothing, or
 * asked about its own JPEG, hears nothing of either answer. */
static void coalesce_only_the_same_question(void **state)
{
    fx_t *fx = *state;
    fake_viewer_t va, vb, vc, vd, ve;
    lv_session_t *a = watched_session(fx, "alice", &va);
    lv_session_t *b = watched_session(fx, "bob", &vb);
    lv_session_t *c = watched_session(fx, "carol", &vc);
    lv_session_t *d = watched_session(fx, "dave", &vd); /* same question, sent no frame */
    lv_session_t *e = watched_session(fx, "erin", &ve); /* same question, a page JPEG */
    snprintf(c->rec.settings.prompt, sizeof c->rec.settings.prompt, "%s", "count the dogs");
    (void)d;
    put_shared(fx, a, 1000, CAM_KEY);
    put_shared(fx, b, 1000, CAM_KEY);
    put_shared(fx, c, 1000, CAM_KEY);
    put_shared(fx, e, 1000, 0);
    fx->host.now_us = 2000;
    assert_int_equal(lv_pipeline_run(&fx->pipe), 3); /* a (b follows), c, e */
    assert_int_equal(fx->disp.submits, 3);
    assert_int_equal(fx->host.coalesced, 1);
    assert_ptr_equal(b->job->lead, a->job);
    assert_null(c->job->lead);
    assert_int_equal(c->job->n_followers, 0);
    /* a different temperature, model or frame size is a different request too */
    fake_viewer_t vf;
    lv_session_t *f = watched_session(fx, "frank", &vf);
    f->rec.settings.temperature = a->rec.settings.temperature + 0.25;
    put_shared(fx, f, 3000, CAM_KEY);
    assert_null(f->job);
    assert_true(lv_drr_node_queued(&f->drr));
    lv_pipeline_unready(&fx->pipe, f);
    lv_frame_unref(lv_session_mailbox_take(f));
    fake_delta_in(&fx->disp, a->job, "dogs");
    fake_delta_in(&fx->disp, c->job, "2");
    fake_done(&fx->disp, c->job, 0, false, "2");
    fake_done(&fx->disp, a->job, 0, false, "dogs");
    fake_done(&fx->disp, e->job, 0, false, "a page");
    assert_string_equal(va.answer, "dogs");
    assert_string_equal(vb.answer, "dogs");
    assert_string_equal(vb.log, "SDA");
    assert_string_equal(vc.answer, "2");
    assert_string_equal(vc.log, "SDA");
    assert_string_equal(ve.answer, "a page");
    assert_string_equal(vd.log, "");
    assert_string_equal(vf.log, "");
    assert_int_equal(d->history_len + f->history_len, 0);
    a->n_viewers = b->n_viewers = c->n_viewers = d->n_viewers = e->n_viewers = f->n_viewers = 0;
}

/* Frames with share_key 0 (the page's own JPEGs, the one-shot API) never coalesce, even with the
 * same question at the same time. */
static void coalesce_never_without_share_key(void **state)
{
    fx_t *fx = *state;
    fake_viewer_t va, vb;
    lv_session_t *a = watched_session(fx, "alice", &va);
    lv_session_t *b = watched_session(fx, "bob", &vb);
    put_shared(fx, a, 1000, 0);
    fx->host.now_us = 2000;
    assert_int_equal(lv_pipeline_run(&fx->pipe), 1);
    put_shared(fx, b, 2000, 0); /* while a's runs: b queues for its own */
    assert_null(b->job);
    assert_true(lv_drr_node_queued(&b->drr));
    assert_int_equal(lv_pipeline_run(&fx->pipe), 1);
    assert_int_equal(fx->disp.submits, 2);
    assert_int_equal(fx->host.coalesced, 0);
    assert_int_equal(lv_hmap_count(&fx->pipe.coalesce), 0);
    fake_done(&fx->disp, a->job, 0, false, "a");
    fake_done(&fx->disp, b->job, 0, false, "b");
    assert_string_equal(va.answer, "a");
    assert_string_equal(vb.answer, "b");
    a->n_viewers = b->n_viewers = 0;
}

/* A session whose sample arrives while the request streams follows at once (nothing queued, no
 * turn): answer_start, then the text so far as its first delta, then the rest with the others. One
 * that arrives before the request went out (its frame still being shaped) starts with the lead. */
static void coalesce_late_follower_gets_text_so_far(void **state)
{
    fx_t *fx = *state;
    fake_viewer_t va, vb, vc;
    lv_session_t *a = watched_session(fx, "alice", &va);
    lv_session_t *b = watched_session(fx, "bob", &vb);
    lv_session_t *c = watched_session(fx, "carol", &vc);
    fx->disp.start_later = true;
    fx->host.now_us = 1000000;
    put_shared(fx, a, 1000000, CAM_KEY);
    assert_int_equal(lv_pipeline_run(&fx->pipe), 1);
    lv_job_t *lead = a->job;
    put_shared(fx, b, 1005000, CAM_KEY); /* before the request went out */
    assert_ptr_equal(b->job->lead, lead);
    assert_false(lv_drr_node_queued(&b->drr));
    assert_string_equal(vb.log, "");
    fake_start(&fx->disp, lead);
    assert_string_equal(va.log, "S");
    assert_string_equal(vb.log, "S");
    fake_delta_in(&fx->disp, lead, "A cat");
    fx->host.now_us = 1020000;
    fake_delta_in(&fx->disp, lead, " sits");
    /* carol's sample comes mid-stream */
    fx->host.now_us = 1030000;
    put_shared(fx, c, 1030000, CAM_KEY);
    assert_int_equal(fx->host.coalesced, 2);
    assert_ptr_equal(c->job->lead, lead);
    assert_false(lv_drr_node_queued(&c->drr));
    assert_int_equal(lv_pipeline_principal_waiting(&fx->pipe, "carol"), 0);
    assert_string_equal(vc.log, "SD");
    assert_string_equal(vc.text, "A cat sits"); /* the text so far, in one piece */
    assert_string_equal(va.text, "A cat");      /* " sits" is still being coalesced for a and b */
    fake_delta_in(&fx->disp, lead, " on");
    lv_pipeline_tick(&fx->pipe, 1070); /* 40 ms after carol's " on" came */
    assert_string_equal(va.text, "A cat sits on");
    assert_string_equal(vb.text, "A cat sits on");
    assert_string_equal(vc.text, "A cat sits on");
    fx->host.now_us = 1080000;
    fake_delta_in(&fx->disp, lead, " a mat");
    fake_done(&fx->disp, lead, 0, false, "A cat sits on a mat");
    assert_string_equal(va.log, "SDDDA");
    assert_string_equal(vc.log, "SDDDA");
    assert_string_equal(vc.text, "A cat sits on a mat");
    assert_string_equal(vc.answer, "A cat sits on a mat");
    assert_true(vc.latency_ms > 49.9 && vc.latency_ms < 50.1); /* from its own frame */
    assert_int_equal(fx->disp.submits, 1);
    a->n_viewers = b->n_viewers = c->n_viewers = 0;
}

/* The lead's session goes (expired, evicted) mid-stream: the request is not cancelled, the oldest
 * follower takes the job over, the others still hear the rest; the session that went hears
 * nothing more. Then the new lead goes too, and the last follower finishes alone. */
static void coalesce_lead_released_followers_finish(void **state)
{
    fx_t *fx = *state;
    fake_viewer_t va, vb, vc;
    lv_session_t *a = watched_session(fx, "alice", &va);
    lv_session_t *b = watched_session(fx, "bob", &vb);
    lv_session_t *c = watched_session(fx, "carol", &vc);
    put_shared(fx, a, 1000, CAM_KEY);
    put_shared(fx, b, 1000, CAM_KEY);
    put_shared(fx, c, 1000, CAM_KEY);
    fx->host.now_us = 2000;
    lv_pipeline_run(&fx->pipe);
    lv_job_t *job = fx->disp.jobs[0];
    fake_delta_in(&fx->disp, job, "one");
    fake_delta_in(&fx->disp, job, " two"); /* pending for everyone */
    lv_pipeline_release(&fx->pipe, a);
    assert_int_equal(fx->disp.cancels, 0);
    assert_int_equal(fx->disp.n_jobs, 1);
    assert_null(a->job);
    assert_ptr_equal(b->job, job); /* the dispatcher's job is now bob's */
    assert_ptr_equal(job->session, b);
    assert_null(job->lead);
    assert_int_equal(job->n_followers, 1);
    assert_ptr_equal(c->job->lead, job);
    assert_string_equal(fx->host.cancelled, "");
    /* alice's principal paid for the slot and pays until the request ends */
    assert_int_equal(lv_drr_user_inflight(&fx->drr, "alice"), 1);
    lv_pipeline_tick(&fx->pipe, 100);
    assert_string_equal(vb.text, "one two");
    assert_string_equal(vc.text, "one two");
    assert_string_equal(va.log, "SD");
    lv_pipeline_release(&fx->pipe, b);
    assert_int_equal(fx->disp.cancels, 0);
    assert_ptr_equal(c->job, job);
    assert_int_equal(job->n_followers, 0);
    fake_delta_in(&fx->disp, job, " three");
    fake_done(&fx->disp, job, 0, false, "one two three");
    assert_string_equal(vc.log, "SDDDA");
    assert_string_equal(vc.answer, "one two three");
    assert_int_equal(c->history_len, 1);
    assert_string_equal(va.log, "SD");
    assert_string_equal(vb.log, "SDD");
    assert_int_equal(a->history_len + b->history_len, 0);
    assert_int_equal(fx->host.answered, 1);
    assert_int_equal(lv_drr_user_inflight(&fx->drr, "alice"), 0);
    /* with nobody following, releasing the lead cancels the request as before */
    put_shared(fx, c, 9000, CAM_KEY + 1);
    lv_pipeline_run(&fx->pipe);
    lv_pipeline_release(&fx->pipe, c);
    assert_int_equal(fx->disp.cancels, 1);
    assert_int_equal(lv_hmap_count(&fx->pipe.coalesce), 0);
    a->n_viewers = b->n_viewers = c->n_viewers = 0;
}

/* A follower that goes just stops hearing the answer; the lead and the other followers finish,
 * nothing is cancelled. A follower's own newer frame waits in its mailbox and goes when the shared
 * job ends. */
static void coalesce_follower_released(void **state)
{
    fx_t *fx = *state;
    fake_viewer_t va, vb, vc;
    lv_session_t *a = watched_session(fx, "alice", &va);
    lv_session_t *b = watched_session(fx, "bob", &vb);
    lv_session_t *c = watched_session(fx, "carol", &vc);
    put_shared(fx, a, 1000, CAM_KEY);
    put_shared(fx, b, 1000, CAM_KEY);
    put_shared(fx, c, 1000, CAM_KEY);
    fx->host.now_us = 2000;
    lv_pipeline_run(&fx->pipe);
    lv_job_t *job = a->job;
    fake_delta_in(&fx->disp, job, "x");
    lv_pipeline_release(&fx->pipe, b);
    assert_null(b->job);
    assert_int_equal(job->n_followers, 1);
    assert_int_equal(fx->disp.cancels, 0);
    /* carol's next sample waits for the shared answer to end, as for a lead */
    put_shared(fx, c, 3000, CAM_KEY + 1);
    assert_non_null(c->pending);
    assert_false(lv_drr_node_queued(&c->drr));
    assert_int_equal(lv_pipeline_principal_waiting(&fx->pipe, "carol"), 0);
    fake_delta_in(&fx->disp, job, "y");
    fake_done(&fx->disp, job, 0, false, "xy");
    assert_string_equal(va.log, "SDDA");
    assert_string_equal(vc.log, "SDDA");
    assert_string_equal(vb.log, "SD");
    assert_int_equal(b->history_len, 0);
    assert_true(lv_drr_node_queued(&c->drr)); /* its newer sample's turn */
    assert_int_equal(lv_pipeline_principal_waiting(&fx->pipe, "carol"), 1);
    assert_int_equal(lv_pipeline_run(&fx->pipe), 1);
    assert_ptr_equal(fx->disp.jobs[0]->session, c);
    fake_done(&fx->disp, c->job, 0, false, "z");
    assert_string_equal(vc.answer, "z");
    assert_string_equal(vb.log, "SD");
    a->n_viewers = b->n_viewers = c->n_viewers = 0;
}

/* The lead's question changes mid-answer: it hears answer_cancelled and asks again (its own new
 * request), while the request goes on for the followers (a follower takes it over; nothing
 * cancelled at the backend). A follower whose question changes hears answer_cancelled and asks
 * anew at its turn, and meets the lead's new request there. */
static void coalesce_settings_change(void **state)
{
    fx_t *fx = *state;
    fake_viewer_t va, vb, vc;
    lv_session_t *a = watched_session(fx, "alice", &va);
    lv_session_t *b = watched_session(fx, "bob", &vb);
    lv_session_t *c = watched_session(fx, "carol", &vc);
    fx->host.now_us = 1000000;
    put_shared(fx, a, 1000000, CAM_KEY);
    put_shared(fx, b, 1000000, CAM_KEY);
    put_shared(fx, c, 1000000, CAM_KEY);
    lv_pipeline_run(&fx->pipe);
    lv_job_t *old = a->job;
    fake_delta_in(&fx->disp, old, "a dog");
    set_prompt(fx, a, "count the cats");
    set_prompt(fx, c, "count the cats");
    fx->host.now_us = 1500000;
    lv_pipeline_tick(&fx->pipe, 1500); /* the follower lets go at once, the lead after a second */
    assert_string_equal(vc.log, "SDC");
    assert_int_equal(vc.last_answer_id, 1);
    assert_true(lv_drr_node_queued(&c->drr));
    assert_string_equal(va.log, "SD");
    assert_int_equal(old->n_followers, 1);
    fx->host.now_us = 2000000;
    lv_pipeline_tick(&fx->pipe, 2000);
    assert_string_equal(va.log, "SDC");
    assert_string_equal(va.cancel_reason, "settings_changed");
    assert_int_equal(fx->disp.cancels, 0);
    assert_string_equal(fx->host.cancelled, "");
    assert_ptr_equal(b->job, old); /* bob took it over */
    assert_int_equal(old->n_followers, 0);
    assert_true(lv_drr_node_queued(&a->drr));
    /* carol and alice meet at their turns: one new request with the new question */
    assert_int_equal(lv_pipeline_run(&fx->pipe), 1);
    assert_int_equal(fx->disp.submits, 2);
    lv_job_t *fresh = fx->disp.jobs[1];
    assert_string_equal(fresh->settings.prompt, "count the cats");
    assert_int_equal(fresh->n_followers, 1);
    assert_int_equal(fx->host.coalesced, 3);
    fake_done(&fx->disp, old, 0, false, "a dog");
    fake_done(&fx->disp, fresh, 0, false, "no cats");
    assert_string_equal(vb.log, "SDA");
    assert_string_equal(vb.answer, "a dog");
    assert_string_equal(va.log, "SDCSA");
    assert_string_equal(va.answer, "no cats");
    assert_string_equal(vc.log, "SDCSA");
    assert_string_equal(vc.answer, "no cats");
    assert_int_equal(va.last_answer_id, 2);
    assert_int_equal(fx->disp.cancels, 0);
    a->n_viewers = b->n_viewers = c->n_viewers = 0;
}

/* The shared request's end reaches every participant exactly once: a backend retry's requeue sends
 * every frame back in line (no error; they meet again at their turns and share the new request),
 * and an error reaches each with its own answer id. */
static void coalesce_requeue_and_error_reach_all(void **state)
{
    fx_t *fx = *state;
    const char *who[3] = {"alice", "bob", "carol"};
    fake_viewer_t v[3];
    lv_session_t *s[3];
    for (int i = 0; i < 3; i++)
        s[i] = watched_session(fx, who[i], &v[i]);
    for (int i = 0; i < 3; i++)
        put_shared(fx, s[i], 1000, CAM_KEY);
    fx->host.now_us = 2000;
    lv_pipeline_run(&fx->pipe);
    fake_done(&fx->disp, fx->disp.jobs[0], LV_EBACKEND, true, "");
    assert_int_equal(lv_drr_queued(&fx->drr), 3);
    assert_int_equal(lv_hmap_count(&fx->pipe.coalesce), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(v[i].errors, 0);
        assert_null(s[i]->job);
        assert_non_null(s[i]->pending);
        assert_int_equal(lv_pipeline_principal_waiting(&fx->pipe, who[i]), 1);
    }
    assert_int_equal(lv_pipeline_run(&fx->pipe), 1);
    assert_int_equal(fx->disp.submits, 2);
    assert_int_equal(fx->host.coalesced, 4);
    fake_delta_in(&fx->disp, fx->disp.jobs[0], "half");
    fake_done(&fx->disp, fx->disp.jobs[0], LV_EBACKEND, false, "half");
    for (int i = 0; i < 3; i++) {
        assert_string_equal(v[i].log, "SSDE");
        assert_int_equal(v[i].errors, 1);
        assert_string_equal(v[i].last_code, "backend_error");
        assert_string_equal(v[i].last_message, "b1: HTTP 500");
        assert_int_equal(v[i].last_answer_id, 2);
        assert_int_equal(s[i]->errors, 1);
        assert_null(s[i]->job);
        assert_int_equal(s[i]->history_len, 0);
    }
    assert_int_equal(fx->host.failed, 3);
    assert_int_equal(fx->host.answered, 0);
    for (int i = 0; i < 3; i++)
        s[i]->n_viewers = 0;
}

/* Nobody watching for detached_cancel_ms: a detached lead hands its request over instead of
 * cancelling it; a detached follower just stops following (its waiting frame goes). */
static void coalesce_detached_lead_hands_over(void **state)
{
    fx_t *fx = *state;
    fake_viewer_t va, vb, vc;
    fx->pipe.detached_cancel_ms = 2000;
    lv_session_t *a = new_session(fx, "alice", NULL, 500, 0);
    memset(&va, 0, sizeof va);
    va.v.ops = &fake_viewer_ops;
    lv_pipeline_attach_viewer(&fx->pipe, a, &va.v, 0);
    lv_session_t *b = watched_session(fx, "bob", &vb);
    lv_session_t *c = new_session(fx, "carol", NULL, 500, 0);
    memset(&vc, 0, sizeof vc);
    vc.v.ops = &fake_viewer_ops;
    lv_pipeline_attach_viewer(&fx->pipe, c, &vc.v, 0);
    fx->host.now_us = 1000000;
    put_shared(fx, a, 1000000, CAM_KEY);
    put_shared(fx, b, 1000000, CAM_KEY);
    put_shared(fx, c, 1000000, CAM_KEY);
    lv_pipeline_run(&fx->pipe);
    lv_job_t *job = a->job;
    put_shared(fx, a, 1100000, CAM_KEY + 1); /* a's next sample waits */
    put_shared(fx, c, 1100000, CAM_KEY + 1);
    lv_pipeline_detach_viewer(&fx->pipe, a, &va.v, 1200);
    lv_pipeline_detach_viewer(&fx->pipe, c, &vc.v, 1200);
    fx->host.now_us = 3200000;
    lv_pipeline_tick(&fx->pipe, 3200);
    assert_int_equal(fx->disp.cancels, 0);
    assert_string_equal(fx->host.cancelled, "");
    assert_ptr_equal(b->job, job);
    assert_ptr_equal(job->session, b);
    assert_int_equal(job->n_followers, 0);
    assert_null(a->job);
    assert_null(a->pending);
    assert_null(c->job);
    assert_null(c->pending);
    fake_done(&fx->disp, job, 0, false, "done");
    assert_string_equal(vb.answer, "done");
    assert_string_equal(va.log, "S");
    assert_string_equal(vc.log, "S");
    b->n_viewers = 0;
}

/* The per-principal waiting counts stay balanced through following: a session whose older frame
 * waited in line and whose new sample follows gives its count back; one released with a frame in
 * line and nothing in flight leaves nothing behind (the teardown checks the table is empty). */
static void coalesce_counts_balanced(void **state)
{
    fx_t *fx = *state;
    fake_viewer_t va, vb, vc;
    lv_session_t *a = watched_session(fx, "alice", &va);
    lv_session_t *b = watched_session(fx, "bob", &vb);
    lv_session_t *c = watched_session(fx, "carol", &vc);
    fx->disp.slots = 1;
    put_shared(fx, a, 1000, CAM_KEY);
    fx->host.now_us = 2000;
    lv_pipeline_run(&fx->pipe);
    put_shared(fx, b, 2000, CAM_KEY + 5); /* another sample: no slot, it waits in line */
    assert_int_equal(lv_pipeline_run(&fx->pipe), 0);
    assert_int_equal(lv_pipeline_principal_waiting(&fx->pipe, "bob"), 1);
    put_shared(fx, b, 3000, CAM_KEY); /* then bob's camera hands it a's sample */
    assert_ptr_equal(b->job->lead, a->job);
    assert_false(lv_drr_node_queued(&b->drr));
    assert_int_equal(lv_pipeline_principal_waiting(&fx->pipe, "bob"), 0);
    put_shared(fx, c, 3000, CAM_KEY + 6);
    assert_int_equal(lv_pipeline_principal_waiting(&fx->pipe, "carol"), 1);
    lv_pipeline_release(&fx->pipe, c);
    assert_int_equal(lv_pipeline_principal_waiting(&fx->pipe, "carol"), 0);
    fake_done(&fx->disp, a->job, 0, false, "ok");
    assert_string_equal(vb.answer, "ok");
    assert_int_equal(lv_hmap_count(&fx->pipe.waiting), 0);
    lv_pipeline_release(&fx->pipe, a);
    lv_pipeline_release(&fx->pipe, b);
    assert_int_equal(lv_hmap_count(&fx->pipe.waiting), 0);
    assert_int_equal(lv_drr_queued(&fx->drr), 0);
    assert_string_equal(vc.log, "");
    a->n_viewers = b->n_viewers = c->n_viewers = 0;
}

/* A shared request's answer is kept a little: a watcher asked about the same sample after the
 * request ended hears it at once (its own answer id, history, metrics) and nothing is sent again;
 * once the answer is older than LV_PIPELINE_ANSWER_KEEP_MS, or for another question, a request
 * goes out as usual. */
static void coalesce_latecomer_hears_kept_answer(void **state)
{
    fx_t *fx = *state;
    fake_viewer_t va, vb, vc, vd;
    lv_session_t *a = watched_session(fx, "alice", &va);
    lv_session_t *b = watched_session(fx, "bob", &vb);
    lv_session_t *c = watched_session(fx, "carol", &vc);
    lv_session_t *d = watched_session(fx, "dave", &vd);
    b->answer_seq = 9;
    fx->host.now_us = 1000000;
    put_shared(fx, a, 1000000, CAM_KEY);
    lv_pipeline_run(&fx->pipe);
    fake_delta_in(&fx->disp, a->job, "a red car");
    fx->host.now_us = 1500000;
    fake_done(&fx->disp, a->job, 0, false, "a red car");
    assert_int_equal(fx->pipe.n_answers, 1);
    /* bob's camera hands him the same sample a second later */
    fx->host.now_us = 2500000;
    put_shared(fx, b, 2500000, CAM_KEY);
    assert_string_equal(vb.log, "SDA");
    assert_string_equal(vb.text, "a red car");
    assert_string_equal(vb.answer, "a red car");
    assert_int_equal(vb.last_answer_id, 10);
    assert_null(b->job);
    assert_null(b->pending);
    assert_false(lv_drr_node_queued(&b->drr));
    assert_int_equal(b->history_len, 1);
    assert_int_equal(lv_pipeline_principal_waiting(&fx->pipe, "bob"), 0);
    assert_int_equal(fx->disp.submits, 1);
    assert_int_equal(fx->host.coalesced, 1);
    assert_int_equal(fx->host.answered, 2);
    /* another question about it: a request of its own */
    snprintf(c->rec.settings.prompt, sizeof c->rec.settings.prompt, "%s", "what colour?");
    put_shared(fx, c, 2500000, CAM_KEY);
    assert_true(lv_drr_node_queued(&c->drr));
    assert_string_equal(vc.log, "");
    lv_pipeline_unready(&fx->pipe, c);
    lv_frame_unref(lv_session_mailbox_take(c));
    /* too old: asked again */
    fx->host.now_us = 4600000;
    lv_pipeline_tick(&fx->pipe, 4600);
    assert_int_equal(fx->pipe.n_answers, 0);
    put_shared(fx, d, 4600000, CAM_KEY);
    assert_true(lv_drr_node_queued(&d->drr));
    assert_int_equal(lv_pipeline_run(&fx->pipe), 1);
    assert_int_equal(fx->disp.submits, 2);
    fake_done(&fx->disp, d->job, 0, false, "a red car");
    assert_string_equal(vd.log, "SA");
    assert_string_equal(va.log, "SDA");
    a->n_viewers = b->n_viewers = c->n_viewers = d->n_viewers = 0;
}

/* ---- the credit timetable (lv_pipeline.c): a tick looks only at the sessions due ---- */

/* The credits a walk over every started session would send now, with the backends never full (the
 * walk's rules before its capacity test). */
static bool walk_would_ask(const lv_session_t *s, uint64_t now)
{
    if (!lv_queue_linked(&s->started_link) || s->n_sources == 0 || s->pending)
        return false;
    if (s->credit_outstanding) {
        uint64_t retry = LV_MAX((uint64_t)LV_PIPELINE_CREDIT_RETRY_MIN_MS, 2u * (uint64_t)s->rec.settings.interval_ms);
        if (now - s->credit_sent_ms < retry)
            return false;
    }
    return now >= s->next_credit_ms;
}

#define MANY 10000
static fake_source_t many_src[MANY];
static lv_session_t *many[MANY];
static bool many_expect[MANY], many_attached[MANY];
static int many_asked[MANY];
static uint32_t many_rng = 12345;
static uint32_t rnd(uint32_t n)
{
    many_rng = many_rng * 1103515245u + 12345u;
    return (many_rng >> 8) % n;
}

/* 10,000 sessions with mixed intervals (200 ms to 20 s, past the wheel's 16 s), started over the
 * first 1.2 s, for 25 s of 20 ms ticks; between ticks most credits are answered, some never are
 * (re-asked after max(5 s, 2 intervals)), and sessions change interval, lose and regain their
 * source, stop and start, and hold a waiting frame. Every tick asks exactly whom the walk over every
 * started session would ask, and looks at a few sessions per credit instead of all of them. */
static void timetable_asks_whom_the_walk_would(void **state)
{
    fx_t *fx = *state;
    static const int intervals[] = {200, 500, 1000, 5000, 20000};
    static const lv_frame_t dummy;
    fx->disp.capacity = 1u << 30; /* never full: who is due is the question here */
    many_rng = 12345;
    for (size_t i = 0; i < MANY; i++) {
        char principal[16], secret[65];
        snprintf(principal, sizeof principal, "p%zu", i % 100);
        assert_int_equal(lv_session_create(fx->reg, principal, NULL, NULL, secret, &many[i]), 0);
        many[i]->rec.settings.interval_ms = intervals[i % LV_ARRAY_LEN(intervals)];
        memset(&many_src[i], 0, sizeof many_src[i]);
        many_src[i].src.ops = &fake_source_ops;
        lv_pipeline_attach_source(&fx->pipe, many[i], &many_src[i].src, 0);
        many_attached[i] = true;
        many_asked[i] = 0;
    }
    uint64_t visits0 = fx->pipe.credit_visits, credits = 0, ops = 0, ticks = 0;
    for (uint64_t now = 0; now <= 25000; now += 20, ticks++) {
        if (now < 1200) /* started over 60 ticks: no tick has more than LV_PIPELINE_CREDITS_PER_TICK due */
            for (size_t i = now / 20; i < MANY; i += 60)
                lv_pipeline_start(&fx->pipe, many[i], now);
        for (int k = 0; k < 8 && now >= 1200; k++, ops++) { /* the host's changes between ticks */
            size_t i = rnd(MANY);
            lv_session_t *s = many[i];
            switch (rnd(5)) {
            case 0: /* a settings commit (lv_engine.c settings_commit) */
                s->rec.settings.interval_ms = intervals[rnd(LV_ARRAY_LEN(intervals))];
                if (s->rec.started && !s->credit_outstanding)
                    s->next_credit_ms = now;
                lv_pipeline_credit_reschedule(&fx->pipe, s);
                break;
            case 1:
                if (many_attached[i])
                    detach_source(&fx->pipe, s, &many_src[i], now);
                else
                    lv_pipeline_attach_source(&fx->pipe, s, &many_src[i].src, now);
                many_attached[i] = !many_attached[i];
                break;
            case 2:
                if (s->rec.started) {
                    s->pending = NULL; /* stop drops the waiting frame: not the dummy */
                    lv_pipeline_stop(&fx->pipe, s, now);
                } else {
                    lv_pipeline_start(&fx->pipe, s, now);
                }
                break;
            case 3: /* a frame waits (only tested for NULL by the credits) for a few ticks */
                s->pending = (lv_frame_t *)(uintptr_t)&dummy;
                break;
            default: /* a lost credit turns up after all */
                lv_pipeline_credit_clear(&fx->pipe, s);
                break;
            }
        }
        size_t expected = 0;
        for (size_t i = 0; i < MANY; i++) {
            many_expect[i] = walk_would_ask(many[i], now);
            expected += many_expect[i];
        }
        assert_true(expected <= LV_PIPELINE_CREDITS_PER_TICK);
        size_t granted = lv_pipeline_tick(&fx->pipe, now);
        assert_int_equal(granted, expected);
        credits += granted;
        for (size_t i = 0; i < MANY; i++) {
            assert_int_equal(many_src[i].asked - many_asked[i], many_expect[i]);
            many_asked[i] = many_src[i].asked;
            if (many_expect[i] && rnd(10) != 0) /* most are answered; the rest are lost */
                lv_pipeline_credit_clear(&fx->pipe, many[i]);
            if (many[i]->pending && rnd(4) == 0) /* its turn came */
                many[i]->pending = NULL;
        }
    }
    uint64_t visits = fx->pipe.credit_visits - visits0;
    /* a credit costs a look or two in the wheel and one in the due list; a session due later than
     * the wheel's 16 s is looked at once per turn; a change files one again; held sessions (a
     * frame waiting, here for 4 ticks on average) are looked at every tick, as before. The walk
     * looked at all 10,000 a tick. */
    print_message("timetable: %llu credits in %llu ticks, %llu sessions looked at (a walk: %llu)\n",
                  (unsigned long long)credits, (unsigned long long)ticks, (unsigned long long)visits,
                  (unsigned long long)(ticks * MANY));
    assert_true(credits > 100000);
    assert_true(visits < 3 * credits + 8 * ops + 2 * MANY);
    assert_true(visits * 20 < ticks * MANY);
    for (size_t i = 0; i < MANY; i++) {
        many[i]->pending = NULL;
        lv_pipeline_release(&fx->pipe, many[i]);
    }
}

/* Started sessions whose credit is not due cost a tick nothing: 10,000 sessions at a 1 h interval
 * after their first credit, and 10,000 started without a source; a minute of ticks looks at each
 * of the first about once per turn of the wheel and at none of the others. A source attached is
 * asked on the next tick. */
static void idle_sessions_cost_nothing(void **state)
{
    fx_t *fx = *state;
    fx->disp.capacity = 1u << 30;
    for (size_t i = 0; i < MANY; i++) {
        char principal[16], secret[65];
        snprintf(principal, sizeof principal, "p%zu", i % 100);
        assert_int_equal(lv_session_create(fx->reg, principal, NULL, NULL, secret, &many[i]), 0);
        many[i]->rec.settings.interval_ms = 3600000;
        if (i % 2 == 0) {
            memset(&many_src[i], 0, sizeof many_src[i]);
            many_src[i].src.ops = &fake_source_ops;
            lv_pipeline_attach_source(&fx->pipe, many[i], &many_src[i].src, 0);
        }
        lv_pipeline_start(&fx->pipe, many[i], 0);
    }
    size_t granted = 0;
    for (uint64_t now = 0; now < 200; now += 20)
        granted += lv_pipeline_tick(&fx->pipe, now);
    assert_int_equal(granted, MANY / 2);
    for (size_t i = 0; i < MANY; i += 2)
        lv_pipeline_credit_clear(&fx->pipe, many[i]);
    uint64_t visits0 = fx->pipe.credit_visits;
    for (uint64_t now = 200; now < 60200; now += 20)
        assert_int_equal(lv_pipeline_tick(&fx->pipe, now), 0);
    uint64_t visits = fx->pipe.credit_visits - visits0;
    print_message("idle: 3000 ticks over 10,000 started sessions looked at %llu (a walk: %u)\n",
                  (unsigned long long)visits, 3000u * MANY);
    assert_true(visits <= (MANY / 2) * (60000 / (LV_PIPELINE_WHEEL_SLOTS * LV_PIPELINE_WHEEL_SLOT_MS) + 2));
    /* one without a source gets one (and only it) on the tick after a source is attached */
    memset(&many_src[1], 0, sizeof many_src[1]);
    many_src[1].src.ops = &fake_source_ops;
    lv_pipeline_attach_source(&fx->pipe, many[1], &many_src[1].src, 60200);
    assert_int_equal(lv_pipeline_tick(&fx->pipe, 60200), 1);
    assert_int_equal(many_src[1].asked, 1);
    /* the hour is up for the others */
    granted = 0;
    for (uint64_t now = 3600000; now < 3600200; now += 20)
        granted += lv_pipeline_tick(&fx->pipe, now);
    assert_int_equal(granted, MANY / 2);
    for (size_t i = 0; i < MANY; i++)
        lv_pipeline_release(&fx->pipe, many[i]);
}

/* Among sessions due in the same tick, the one that got a credit longest ago is asked first
 * whether it waited in the due list (held back) or came off the wheel. One principal, no slots:
 * while it has a credit out, its other sessions wait. */
static void due_order_is_started_order(void **state)
{
    fx_t *fx = *state;
    fake_source_t a, e, d;
    fx->disp.capacity = 0;
    lv_session_t *sa = new_session(fx, "p", &a, 100, 0);
    lv_session_t *se = new_session(fx, "p", &e, 100, 0);
    assert_int_equal(lv_pipeline_tick(&fx->pipe, 0), 1); /* a; e held back (a's credit is out) */
    assert_int_equal(a.asked, 1);
    lv_pipeline_credit_clear(&fx->pipe, sa);              /* a: due again at 100, in the wheel */
    lv_session_t *sd = new_session(fx, "p", &d, 100, 50); /* started after a's credit */
    assert_int_equal(lv_pipeline_tick(&fx->pipe, 60), 1); /* e waited longest */
    assert_int_equal(e.asked, 1);
    assert_int_equal(lv_pipeline_tick(&fx->pipe, 80), 0); /* d held back: e's credit is out */
    assert_int_equal(lv_pipeline_tick(&fx->pipe, 100), 0); /* a is due too, held back */
    lv_pipeline_credit_clear(&fx->pipe, se);
    assert_int_equal(lv_pipeline_tick(&fx->pipe, 120), 1); /* a (from the wheel) before d (held) */
    assert_int_equal(a.asked, 2);
    assert_int_equal(d.asked, 0);
    lv_pipeline_credit_clear(&fx->pipe, sa);
    assert_int_equal(lv_pipeline_tick(&fx->pipe, 140), 1);
    assert_int_equal(d.asked, 1);
    lv_pipeline_credit_clear(&fx->pipe, sd);
}

/* The host's reschedule: an interval cut while a credit is out brings its re-ask forward (without
 * it the session would wait for the old one); a source switch makes it due at once. */
static void reschedule_brings_credits_forward(void **state)
{
    fx_t *fx = *state;
    fake_source_t src;
    lv_session_t *s = new_session(fx, "p", &src, 4000, 0);
    assert_int_equal(lv_pipeline_tick(&fx->pipe, 0), 1); /* re-asked at 8000 unless answered */
    s->rec.settings.interval_ms = 100;
    lv_pipeline_credit_reschedule(&fx->pipe, s); /* re-asked at max(5 s, 200 ms) */
    for (uint64_t now = 20; now < 5000; now += 20)
        assert_int_equal(lv_pipeline_tick(&fx->pipe, now), 0);
    assert_int_equal(lv_pipeline_tick(&fx->pipe, 5000), 1);
    lv_pipeline_credit_clear(&fx->pipe, s); /* next due at 5100 */
    s->rec.settings.interval_ms = 60000;
    lv_pipeline_credit_reschedule(&fx->pipe, s);
    assert_int_equal(lv_pipeline_tick(&fx->pipe, 5100), 1); /* its due time was not moved */
    lv_pipeline_credit_clear(&fx->pipe, s);
    s->next_credit_ms = 5200; /* the source changed: due at once */
    lv_pipeline_credit_reschedule(&fx->pipe, s);
    assert_int_equal(lv_pipeline_tick(&fx->pipe, 5200), 1);
    assert_int_equal(src.asked, 4);
    lv_pipeline_credit_clear(&fx->pipe, s);
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
        cmocka_unit_test_setup_teardown(answer_path, setup, teardown),
        cmocka_unit_test_setup_teardown(delta_interval_follows_load, setup, teardown),
        cmocka_unit_test_setup_teardown(waiting_job_takes_newer_frame, setup, teardown),
        cmocka_unit_test_setup_teardown(busy_backend_waits, setup, teardown),
        cmocka_unit_test_setup_teardown(requeue_and_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(no_backend, setup, teardown),
        cmocka_unit_test_setup_teardown(cancel_detached_and_released, setup, teardown),
        cmocka_unit_test_setup_teardown(supersede_resends, setup, teardown),
        cmocka_unit_test_setup_teardown(preempt_for_starved_principal, setup, teardown),
        cmocka_unit_test_setup_teardown(credits_timed_to_share, setup, teardown),
        cmocka_unit_test_setup_teardown(credits_keep_their_cadence, setup, teardown),
        cmocka_unit_test_setup_teardown(no_credits_while_nobody_serves, setup, teardown),
        cmocka_unit_test_setup_teardown(timetable_asks_whom_the_walk_would, setup_many, teardown),
        cmocka_unit_test_setup_teardown(idle_sessions_cost_nothing, setup_many, teardown),
        cmocka_unit_test_setup_teardown(due_order_is_started_order, setup, teardown),
        cmocka_unit_test_setup_teardown(reschedule_brings_credits_forward, setup, teardown),
        cmocka_unit_test_setup_teardown(coalesce_one_request_for_three, setup, teardown),
        cmocka_unit_test_setup_teardown(coalesce_only_the_same_question, setup, teardown),
        cmocka_unit_test_setup_teardown(coalesce_never_without_share_key, setup, teardown),
        cmocka_unit_test_setup_teardown(coalesce_late_follower_gets_text_so_far, setup, teardown),
        cmocka_unit_test_setup_teardown(coalesce_lead_released_followers_finish, setup, teardown),
        cmocka_unit_test_setup_teardown(coalesce_follower_released, setup, teardown),
        cmocka_unit_test_setup_teardown(coalesce_settings_change, setup, teardown),
        cmocka_unit_test_setup_teardown(coalesce_requeue_and_error_reach_all, setup, teardown),
        cmocka_unit_test_setup_teardown(coalesce_detached_lead_hands_over, setup, teardown),
        cmocka_unit_test_setup_teardown(coalesce_counts_balanced, setup, teardown),
        cmocka_unit_test_setup_teardown(coalesce_latecomer_hears_kept_answer, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

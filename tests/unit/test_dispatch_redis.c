/* test_dispatch_redis.c - the cluster frontend's dispatcher (src/store/lv_dispatch_redis.h) against
 * a real redis-server of its own (a free loopback port, a temp dir) and a fake worker written here
 * with raw lv_redis calls (heartbeats, the pop script, events published on the frontend's
 * channel, lv:cancel heard): the job body in the queue, events in order to a recording events
 * table, cancel before and after a worker took the job, replace_frame, capacity and free slots from
 * heartbeats, serves() sentences, the bounded endings (worker_lost, stale, cluster_unavailable
 * when Redis is killed, then recovery, or when the subscriber's connection was re-made), a
 * worker's requeue, bad events, and close with callbacks pending. No event may come from inside a
 * port call. Every wait is bounded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lv_cluster_queue.h"
#include "lv_common.h"
#include "lv_dispatch_redis.h"
#include "lv_jobmsg.h"
#include "lv_redis.h"
#include "lv_session.h"
#include "redis_fixture.h"

#define FE_ID "fe1"
#define FE_CHANNEL LV_CQ_EVENT_CHANNEL_PREFIX FE_ID
#define MSG_DOWN "The cluster's job queue (Redis) cannot be reached; answers resume by themselves when it is back."
#define MSG_NO_WORKER "No worker is running in the cluster: start `livevlm worker --redis ...`."

/* ---------- the redis-server of this test ---------- */

static rfx_server_t redis;

static int group_setup(void **state)
{
    (void)state;
    return rfx_init(&redis, "dredis") == 0 && rfx_start(&redis) == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    rfx_cleanup(&redis);
    return 0;
}

/* ---------- what the pipeline would hear ---------- */

typedef struct {
    char kind; /* s d e */
    lv_job_t *job;
    char text[256];
    int rc;
    char code[64];
    char msg[256];
    char backend[LV_BACKEND_ID_MAX + 1];
    char model[LV_MODEL_MAX + 1];
    uint64_t floor_us;
    bool impl_cleared;
    bool stale;
} rec_t;

static struct {
    uv_loop_t loop;
    uv_timer_t tick;
    lv_redis_t *fe, *wk;
    lv_cq_scripts_t fe_scripts, wk_scripts;
    lv_dispatch_t *d;
    rec_t recs[64];
    size_t n_recs;
    bool in_call;        /* inside a port call: an event now breaks the port's rule */
    int events_in_call;
    int lost_stale, lost_worker, lost_unavailable, lost_other;
    char cancels[8][LV_JOB_ID_MAX + 1];
    size_t n_cancels;
    int fe_pings, wk_pings; /* subscription checks heard */
    lv_session_t sessions[3];
    lv_job_t *jobs[8];
    size_t n_jobs;
    lv_buf_t enc;
} T;

static rec_t *rec_add(char kind, lv_job_t *job)
{
    if (T.in_call)
        T.events_in_call++;
    assert_true(T.n_recs < LV_ARRAY_LEN(T.recs));
    rec_t *r = &T.recs[T.n_recs++];
    memset(r, 0, sizeof(*r));
    r->kind = kind;
    r->job = job;
    return r;
}

static void on_started(lv_dispatch_t *d, lv_job_t *job)
{
    rec_t *r = rec_add('s', job);
    snprintf(r->backend, sizeof(r->backend), "%s", job->backend_id);
    snprintf(r->model, sizeof(r->model), "%s", job->model);
    r->floor_us = d->ops->ttft_floor_us(d, job);
    job->started = true;
}

static void on_delta(lv_dispatch_t *d, lv_job_t *job, const char *text, size_t len)
{
    (void)d;
    rec_t *r = rec_add('d', job);
    snprintf(r->text, sizeof(r->text), "%.*s", (int)len, text);
}

static void on_done(lv_dispatch_t *d, lv_job_t *job, const lv_dispatch_result_t *res)
{
    (void)d;
    rec_t *r = rec_add('e', job);
    snprintf(r->text, sizeof(r->text), "%.*s", (int)res->text_len, res->text);
    r->rc = res->rc;
    snprintf(r->code, sizeof(r->code), "%s", res->error_code ? res->error_code : "");
    r->stale = res->stale;
    snprintf(r->msg, sizeof(r->msg), "%s", res->error_message ? res->error_message : "");
    snprintf(r->backend, sizeof(r->backend), "%s", job->backend_id);
    r->impl_cleared = job->impl == NULL;
}

static const lv_dispatch_events_t fake_events = {on_started, on_delta, on_done};

static unsigned weight_of(void *ud, const char *user)
{
    (void)ud;
    return strcmp(user, "alice") == 0 ? 3 : 1;
}

static void lost(void *ud, const char *reason)
{
    (void)ud;
    if (strcmp(reason, "stale") == 0)
        T.lost_stale++;
    else if (strcmp(reason, "worker_lost") == 0)
        T.lost_worker++;
    else if (strcmp(reason, "cluster_unavailable") == 0)
        T.lost_unavailable++;
    else
        T.lost_other++;
}

/* ---------- the loop, bounded ---------- */

#define RUN_UNTIL(cond, ms)                                                                        \
    do {                                                                                           \
        uint64_t dl_ = lv_now_ms() + (ms);                                                         \
        while (!(cond) && lv_now_ms() < dl_)                                                       \
            uv_run(&T.loop, UV_RUN_ONCE);                                                          \
    } while (0)

static void run_for(uint64_t ms)
{
    uint64_t dl = lv_now_ms() + ms;
    while (lv_now_ms() < dl)
        uv_run(&T.loop, UV_RUN_ONCE);
}

static void on_tick(uv_timer_t *t) { (void)t; /* keeps UV_RUN_ONCE from blocking for long */ }

/* ---------- Redis from the test's side ---------- */

typedef struct {
    bool done;
    bool nil;
    int type;
    long long integer;
    size_t n;
    char *str[4];
    size_t len[4];
    char err[128];
} got_t;

static void got_free(got_t *g)
{
    for (int i = 0; i < 4; i++)
        free(g->str[i]);
    memset(g, 0, sizeof(*g));
}

static void keep_str(got_t *g, int i, const redisReply *e)
{
    if (i >= 4 || (e->type != REDIS_REPLY_STRING && e->type != REDIS_REPLY_STATUS && e->type != REDIS_REPLY_ERROR))
        return;
    g->str[i] = malloc(e->len + 1);
    memcpy(g->str[i], e->str, e->len);
    g->str[i][e->len] = '\0';
    g->len[i] = e->len;
}

static void got_cb(void *ud, const redisReply *r, const char *err)
{
    got_t *g = ud;
    g->done = true;
    if (!r) {
        snprintf(g->err, sizeof(g->err), "%s", err ? err : "?");
        return;
    }
    g->type = r->type;
    g->nil = r->type == REDIS_REPLY_NIL;
    g->integer = r->integer;
    if (r->type == REDIS_REPLY_ARRAY) {
        g->n = r->elements;
        for (size_t i = 0; i < r->elements && i < 4; i++)
            keep_str(g, (int)i, r->element[i]);
    } else {
        keep_str(g, 0, r);
    }
}

/* A command on the worker's connection, waited for. */
static void wk_cmd(got_t *g, int argc, const char **argv)
{
    size_t lens[8];
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    memset(g, 0, sizeof(*g));
    assert_int_equal(lv_redis_cmd(T.wk, got_cb, g, argc, argv, lens), 0);
    RUN_UNTIL(g->done, 3000);
    assert_true(g->done);
}

/* Everything the frontend sent before now has been executed by Redis (one connection, in order). */
static void fe_sync(void)
{
    got_t g = {0};
    const char *argv[] = {"PING"};
    size_t lens[] = {4};
    assert_int_equal(lv_redis_cmd(T.fe, got_cb, &g, 1, argv, lens), 0);
    RUN_UNTIL(g.done, 3000);
    assert_true(g.done);
    got_free(&g);
}

static void heartbeat(const char *worker, unsigned capacity, unsigned in_flight, uint64_t wall_ms)
{
    char v[64];
    snprintf(v, sizeof(v), "%u %u %llu", capacity, in_flight, (unsigned long long)wall_ms);
    const char *argv[] = {"HSET", LV_CQ_WORKERS_KEY, worker, v};
    got_t g;
    wk_cmd(&g, 4, argv);
    got_free(&g);
}

static void heartbeat_gone(const char *worker)
{
    const char *argv[] = {"HDEL", LV_CQ_WORKERS_KEY, worker};
    got_t g;
    wk_cmd(&g, 3, argv);
    got_free(&g);
}

/* The pop script's reply {taken [id, body], stale [...]} as one taken job: str[0] its id, str[1]
 * its body; nil when none was taken (a job gone stale in the queue counts as none here). */
static void pop_cb(void *ud, const redisReply *r, const char *err)
{
    got_t *g = ud;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_ARRAY ||
        r->element[0]->elements == 0) {
        got_cb(ud, r, err);
        g->nil = g->nil || (r && r->type == REDIS_REPLY_ARRAY);
        return;
    }
    got_cb(ud, r->element[0], err);
}

/* The worker's pop of one job; g->str[0] the job id and str[1] the body, or g->nil. */
static void fe_sync(void);

static void pop(got_t *g)
{
    fe_sync(); /* what the frontend sent is in Redis: the worker's connection is another one */
    memset(g, 0, sizeof(*g));
    char now[24];
    snprintf(now, sizeof(now), "%llu", (unsigned long long)lv_wall_ms());
    const char *argv[] = {now, "1"};
    size_t lens[] = {strlen(now), 1};
    assert_int_equal(lv_redis_eval(T.wk, T.wk_scripts.pop, pop_cb, g, 0, 2, argv, lens), 0);
    RUN_UNTIL(g->done, 3000);
    assert_true(g->done);
    if (!g->nil) {
        assert_int_equal(g->type, REDIS_REPLY_ARRAY);
        assert_int_equal(g->n, 2);
    }
}

static void pop_parse(got_t *g, lv_jobmsg_t *m)
{
    pop(g);
    assert_false(g->nil);
    const char *why = NULL;
    int rc = lv_jobmsg_parse(g->str[1], g->len[1], m, &why);
    if (rc != 0)
        fail_msg("body does not parse: %s", why ? why : "?");
}

static void publish_ev(const lv_jobev_t *e)
{
    lv_buf_reset(&T.enc);
    assert_int_equal(lv_jobev_encode(e, &T.enc), 0);
    const char *argv[] = {"PUBLISH", FE_CHANNEL, T.enc.data};
    size_t lens[] = {7, strlen(FE_CHANNEL), T.enc.len};
    got_t g = {0};
    assert_int_equal(lv_redis_cmd(T.wk, got_cb, &g, 3, argv, lens), 0);
    RUN_UNTIL(g.done, 3000);
    assert_true(g.done);
    got_free(&g);
}

static void ev_started(const char *job, const char *worker, uint64_t floor_us)
{
    lv_jobev_t e;
    memset(&e, 0, sizeof(e));
    e.kind = LV_JOBEV_STARTED;
    snprintf(e.job, sizeof(e.job), "%s", job);
    snprintf(e.worker, sizeof(e.worker), "%s", worker);
    snprintf(e.backend_id, sizeof(e.backend_id), "b1");
    snprintf(e.model, sizeof(e.model), "m1");
    e.ttft_floor_us = floor_us;
    publish_ev(&e);
}

static void ev_delta(const char *job, const char *text)
{
    lv_jobev_t e;
    memset(&e, 0, sizeof(e));
    e.kind = LV_JOBEV_DELTA;
    snprintf(e.job, sizeof(e.job), "%s", job);
    e.text = text;
    e.text_len = strlen(text);
    publish_ev(&e);
}

static void ev_done(const char *job, const char *worker, int rc, const char *text, bool requeue, bool stale)
{
    lv_jobev_t e;
    memset(&e, 0, sizeof(e));
    e.kind = LV_JOBEV_DONE;
    snprintf(e.job, sizeof(e.job), "%s", job);
    snprintf(e.worker, sizeof(e.worker), "%s", worker);
    snprintf(e.backend_id, sizeof(e.backend_id), "b1");
    snprintf(e.model, sizeof(e.model), "m1");
    e.rc = rc;
    if (rc) {
        snprintf(e.error_code, sizeof(e.error_code), "%s", stale ? "stale" : "backend_error");
        snprintf(e.error_message, sizeof(e.error_message), "it went wrong");
    }
    e.text = text;
    e.text_len = strlen(text);
    e.tokens = 2;
    e.ttft_us = 5000;
    e.streamed = true;
    e.requeue = requeue;
    e.stale = stale;
    publish_ev(&e);
}

/* ---------- clients, dispatcher, jobs ---------- */

static void fe_state(void *ud, bool up)
{
    (void)ud;
    if (T.d)
        lv_dispatch_redis_set_up(T.d, up);
}

static void fe_message(void *ud, const char *channel, const char *payload, size_t len)
{
    (void)ud;
    if (strcmp(channel, FE_CHANNEL) != 0)
        return;
    if (len == 4 && memcmp(payload, "ping", 4) == 0)
        T.fe_pings++;
    if (T.d)
        lv_dispatch_redis_on_message(T.d, payload, len);
}

static void wk_message(void *ud, const char *channel, const char *payload, size_t len)
{
    (void)ud;
    if (strcmp(channel, LV_CQ_CANCEL_CHANNEL) != 0)
        return;
    if (len == 4 && memcmp(payload, "ping", 4) == 0) {
        T.wk_pings++;
        return;
    }
    if (T.n_cancels < LV_ARRAY_LEN(T.cancels))
        snprintf(T.cancels[T.n_cancels++], sizeof(T.cancels[0]), "%.*s", (int)len, payload);
}

static lv_dispatch_redis_cfg_t default_cfg(void)
{
    lv_dispatch_redis_cfg_t cfg = {
        .frontend_id = FE_ID,
        .max_frame_age_ms = 0,
        .max_frame_bytes = 1 << 20,
        .weight_of = weight_of,
        .lost = lost,
    };
    return cfg;
}

static void dispatcher_new(const lv_dispatch_redis_cfg_t *cfg)
{
    assert_int_equal(lv_dispatch_redis_create(&T.loop, T.fe, &T.fe_scripts, cfg, &T.d), 0);
    T.d->events = &fake_events;
    T.d->events_ud = NULL;
}

/* Publish "ping" on channel until the subscriber counted one: its SUBSCRIBE is in effect. */
static void wait_subscribed(const char *channel, int *pings)
{
    uint64_t dl = lv_now_ms() + 5000;
    while (*pings == 0 && lv_now_ms() < dl) {
        const char *argv[] = {"PUBLISH", channel, "ping"};
        got_t g;
        wk_cmd(&g, 3, argv);
        got_free(&g);
        RUN_UNTIL(*pings > 0, 100);
    }
    assert_true(*pings > 0);
}

static int setup(void **state)
{
    (void)state;
    memset(&T, 0, sizeof(T));
    lv_buf_init(&T.enc, LV_JOBEV_MAX);
    assert_int_equal(uv_loop_init(&T.loop), 0);
    uv_timer_init(&T.loop, &T.tick);
    uv_timer_start(&T.tick, on_tick, 5, 5);
    lv_redisurl_t url;
    const char *why = NULL;
    char u[64];
    snprintf(u, sizeof(u), "redis://127.0.0.1:%d", redis.port);
    assert_int_equal(lv_redisurl_parse(u, &url, &why), 0);
    lv_redis_cfg_t fe_cfg = {.name = "test frontend", .on_state = fe_state, .on_message = fe_message};
    lv_redis_cfg_t wk_cfg = {.name = "test worker", .on_message = wk_message};
    assert_int_equal(lv_redis_create(&T.loop, &url, &fe_cfg, &T.fe), 0);
    assert_int_equal(lv_redis_create(&T.loop, &url, &wk_cfg, &T.wk), 0);
    assert_int_equal(lv_cq_scripts_add(T.fe, &T.fe_scripts), 0);
    assert_int_equal(lv_cq_scripts_add(T.wk, &T.wk_scripts), 0);
    assert_int_equal(lv_redis_subscribe(T.fe, FE_CHANNEL), 0);
    assert_int_equal(lv_redis_subscribe(T.wk, LV_CQ_CANCEL_CHANNEL), 0);
    RUN_UNTIL(lv_redis_up(T.fe) && lv_redis_up(T.wk), 5000);
    assert_true(lv_redis_up(T.fe) && lv_redis_up(T.wk));
    const char *flush[] = {"FLUSHALL"};
    got_t g;
    wk_cmd(&g, 1, flush);
    got_free(&g);
    wait_subscribed(FE_CHANNEL, &T.fe_pings);
    wait_subscribed(LV_CQ_CANCEL_CHANNEL, &T.wk_pings);
    for (size_t i = 0; i < LV_ARRAY_LEN(T.sessions); i++) {
        lv_session_t *s = &T.sessions[i];
        snprintf(s->rec.id, sizeof(s->rec.id), "%032zx", i + 0xabc);
        snprintf(s->rec.principal, sizeof(s->rec.principal), "%s", i == 0 ? "alice" : "bob");
        lv_settings_defaults(&s->rec.settings);
        snprintf(s->rec.settings.model, sizeof(s->rec.settings.model), "m1");
        s->rec.settings.interval_ms = 1500;
    }
    lv_dispatch_redis_cfg_t cfg = default_cfg();
    dispatcher_new(&cfg);
    return 0;
}

static void on_closed_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static int teardown(void **state)
{
    (void)state;
    /* as the pipeline's shutdown: its jobs are cancelled first */
    for (size_t i = 0; i < T.n_jobs; i++)
        if (T.jobs[i]->impl)
            T.d->ops->cancel(T.d, T.jobs[i]);
    lv_dispatch_redis_close(T.d);
    T.d = NULL;
    lv_redis_close(T.fe);
    lv_redis_close(T.wk);
    uv_close((uv_handle_t *)&T.tick, NULL);
    RUN_UNTIL(!uv_loop_alive(&T.loop), 5000);
    uv_walk(&T.loop, on_closed_walk, NULL); /* none should be left; a bug here must not hang */
    uv_run(&T.loop, UV_RUN_NOWAIT);
    assert_int_equal(uv_loop_close(&T.loop), 0);
    for (size_t i = 0; i < T.n_jobs; i++) {
        lv_frame_unref(T.jobs[i]->frame);
        free(T.jobs[i]);
    }
    lv_buf_free(&T.enc);
    return 0;
}

static lv_frame_t *frame_new(const char *tag, uint32_t capture_age_ms)
{
    char jpeg[64];
    int n = snprintf(jpeg, sizeof(jpeg), "\xff\xd8 picture %s \xff\xd9", tag);
    lv_frame_t *f = lv_frame_new(jpeg, (size_t)n);
    assert_non_null(f);
    f->recv_us = lv_now_us();
    f->capture_age_ms = capture_age_ms;
    return f;
}

static lv_job_t *job_new(size_t session, uint64_t answer_id, const char *tag)
{
    lv_job_t *job = calloc(1, sizeof(*job));
    assert_non_null(job);
    assert_true(T.n_jobs < LV_ARRAY_LEN(T.jobs));
    T.jobs[T.n_jobs++] = job;
    job->session = &T.sessions[session];
    job->settings = job->session->rec.settings;
    job->answer_id = answer_id;
    job->frame = frame_new(tag, 40);
    return job;
}

static int submit(lv_job_t *job, char *why, size_t why_size)
{
    T.in_call = true;
    int rc = T.d->ops->submit(T.d, job, why, why_size);
    T.in_call = false;
    return rc;
}

static void submit_ok(lv_job_t *job)
{
    char why[256] = "";
    int rc = submit(job, why, sizeof(why));
    if (rc != 0)
        fail_msg("submit: %s (%s)", lv_strerror(rc), why);
    assert_non_null(job->impl);
}

static void cancel(lv_job_t *job)
{
    T.in_call = true;
    T.d->ops->cancel(T.d, job);
    T.in_call = false;
    assert_null(job->impl);
}

static void wait_capacity(size_t want)
{
    RUN_UNTIL(T.d->ops->capacity(T.d) == want, 3000);
    assert_int_equal(T.d->ops->capacity(T.d), want);
}

static void jpeg_is(const lv_jobmsg_t *m, const lv_frame_t *f)
{
    assert_int_equal(m->jpeg_len, f->len);
    assert_memory_equal(m->jpeg, f->data, f->len);
}

/* ---------- tests ---------- */

static void submit_enqueues(void **state)
{
    (void)state;
    heartbeat("w1", 2, 0, lv_wall_ms());
    wait_capacity(2);
    assert_int_equal(T.d->ops->free_slots(T.d), 2);
    char why[256] = "";
    assert_true(T.d->ops->serves(T.d, &T.sessions[0].rec.settings, why, sizeof(why)));

    lv_job_t *a = job_new(0, 7, "A");
    uint64_t t0 = lv_wall_ms();
    submit_ok(a);
    uint64_t t1 = lv_wall_ms();
    assert_int_equal(T.d->ops->free_slots(T.d), 1);

    /* the deadline and our id wait beside the job, for pop's stale check */
    got_t g;
    fe_sync();
    const char *hvals[] = {"HVALS", "lv:q:dl"};
    wk_cmd(&g, 2, hvals);
    assert_int_equal(g.n, 1);
    char want_dl[80];
    snprintf(want_dl, sizeof(want_dl), " %s", FE_ID);
    assert_non_null(g.str[0]);
    assert_non_null(strstr(g.str[0], want_dl));
    unsigned long long queued_dl = strtoull(g.str[0], NULL, 10);
    got_free(&g);
    lv_jobmsg_t m;
    pop_parse(&g, &m);
    assert_int_equal(queued_dl, m.deadline_wall_ms);
    assert_int_equal(strncmp(g.str[0], FE_ID "-", strlen(FE_ID) + 1), 0);
    assert_string_equal(m.id, g.str[0]);
    assert_string_equal(m.frontend, FE_ID);
    assert_string_equal(m.session, T.sessions[0].rec.id);
    assert_string_equal(m.user, "alice");
    assert_int_equal(m.weight, 3);
    assert_int_equal(m.answer_id, 7);
    assert_true(m.enq_wall_ms >= t0 && m.enq_wall_ms <= t1);
    /* two intervals of 1.5 s from the frame's receipt (just now) */
    assert_true(m.deadline_wall_ms >= m.enq_wall_ms + 2990 && m.deadline_wall_ms <= m.enq_wall_ms + 3000);
    assert_int_equal(m.capture_age_ms, 40);
    assert_string_equal(m.settings.prompt, T.sessions[0].rec.settings.prompt);
    assert_string_equal(m.settings.model, "m1");
    assert_int_equal(m.settings.interval_ms, 1500);
    jpeg_is(&m, a->frame);

    lv_job_t *b = job_new(1, 1, "B");
    submit_ok(b);
    assert_int_equal(T.d->ops->free_slots(T.d), 0);
    lv_job_t *c = job_new(2, 1, "C");
    assert_int_equal(submit(c, why, sizeof(why)), LV_EAGAIN);
    assert_null(c->impl);

    /* the second one waits in the queue: the stats script says so; distinct ids */
    lv_dredis_stats_t st;
    uint64_t dl = lv_now_ms() + 3000;
    do {
        run_for(50);
        lv_dispatch_redis_stats(T.d, &st);
    } while (st.queue_len != 1 && lv_now_ms() < dl);
    assert_int_equal(st.queue_len, 1);
    assert_true(st.up);
    assert_int_equal(st.jobs_out, 2);
    assert_int_equal(st.capacity, 2);
    assert_int_equal(st.n_workers, 1);
    assert_string_equal(st.workers[0].id, "w1");
    assert_true(st.oldest_ms < 5000);
    char first_id[LV_JOB_ID_MAX + 1];
    snprintf(first_id, sizeof(first_id), "%s", g.str[0]);
    got_free(&g);
    pop_parse(&g, &m);
    assert_string_equal(m.user, "bob");
    assert_int_equal(m.weight, 1);
    assert_string_not_equal(m.id, first_id);
    jpeg_is(&m, b->frame);
    got_free(&g);
    assert_int_equal(T.n_recs, 0);
}

static void events_in_order(void **state)
{
    (void)state;
    heartbeat("w1", 2, 0, lv_wall_ms());
    wait_capacity(2);
    lv_job_t *a = job_new(0, 3, "A");
    submit_ok(a);
    got_t g;
    lv_jobmsg_t m;
    pop_parse(&g, &m);
    char id[LV_JOB_ID_MAX + 1];
    snprintf(id, sizeof(id), "%s", m.id);
    got_free(&g);

    ev_started("fe1-0", "w1", 1); /* not ours: nothing */
    ev_started(id, "w1", 1234);
    ev_delta(id, "hello ");
    ev_delta(id, "world");
    ev_done(id, "w1", 0, "hello world", false, false);
    RUN_UNTIL(T.n_recs == 4, 3000);
    assert_int_equal(T.n_recs, 4);
    assert_int_equal(T.events_in_call, 0);
    assert_int_equal(T.recs[0].kind, 's');
    assert_ptr_equal(T.recs[0].job, a);
    assert_string_equal(T.recs[0].backend, "b1");
    assert_string_equal(T.recs[0].model, "m1");
    assert_int_equal(T.recs[0].floor_us, 1234);
    assert_int_equal(T.recs[1].kind, 'd');
    assert_string_equal(T.recs[1].text, "hello ");
    assert_int_equal(T.recs[2].kind, 'd');
    assert_string_equal(T.recs[2].text, "world");
    assert_int_equal(T.recs[3].kind, 'e');
    assert_int_equal(T.recs[3].rc, 0);
    assert_string_equal(T.recs[3].text, "hello world");
    assert_true(T.recs[3].impl_cleared);
    assert_int_equal(T.d->ops->free_slots(T.d), 2);

    /* late or repeated events for a job that ended are ignored */
    ev_delta(id, "late");
    ev_done(id, "w1", 0, "again", false, false);
    run_for(300);
    assert_int_equal(T.n_recs, 4);

    /* an error answer carries the worker's code and message */
    lv_job_t *b = job_new(1, 4, "B");
    submit_ok(b);
    pop_parse(&g, &m);
    ev_started(m.id, "w1", 10);
    ev_done(m.id, "w1", LV_EBACKEND, "part", false, false);
    got_free(&g);
    RUN_UNTIL(T.n_recs == 6, 3000);
    assert_int_equal(T.n_recs, 6);
    assert_int_equal(T.recs[5].kind, 'e');
    assert_int_equal(T.recs[5].rc, LV_EBACKEND);
    assert_string_equal(T.recs[5].code, "backend_error");
    assert_string_equal(T.recs[5].msg, "it went wrong");
    assert_string_equal(T.recs[5].text, "part");
    assert_int_equal(T.lost_stale + T.lost_worker + T.lost_unavailable + T.lost_other, 0);
}

static void cancel_before_pop(void **state)
{
    (void)state;
    heartbeat("w1", 2, 0, lv_wall_ms());
    wait_capacity(2);
    lv_job_t *a = job_new(0, 1, "A");
    submit_ok(a);
    cancel(a);
    assert_int_equal(T.d->ops->free_slots(T.d), 2);
    fe_sync();
    got_t g;
    pop(&g);
    assert_true(g.nil); /* it left the queue */
    run_for(300);
    assert_int_equal(T.n_cancels, 0); /* nobody had it: nothing to tell the workers */
    assert_int_equal(T.n_recs, 0);
    cancel(a); /* twice is nothing */
}

static void cancel_after_pop(void **state)
{
    (void)state;
    heartbeat("w1", 2, 0, lv_wall_ms());
    wait_capacity(2);
    lv_job_t *a = job_new(0, 1, "A");
    submit_ok(a);
    got_t g;
    lv_jobmsg_t m;
    pop_parse(&g, &m);
    got_free(&g);
    ev_started(m.id, "w1", 1);
    RUN_UNTIL(T.n_recs == 1, 3000);
    cancel(a);
    RUN_UNTIL(T.n_cancels == 1, 3000);
    assert_int_equal(T.n_cancels, 1);
    assert_string_equal(T.cancels[0], m.id);
    /* the worker's answer that was already on its way reaches nobody */
    ev_delta(m.id, "x");
    ev_done(m.id, "w1", 0, "x", false, false);
    run_for(300);
    assert_int_equal(T.n_recs, 1);
    assert_int_equal(T.events_in_call, 0);
}

static void replace_frame(void **state)
{
    (void)state;
    heartbeat("w1", 2, 0, lv_wall_ms());
    wait_capacity(2);
    lv_job_t *a = job_new(0, 5, "A");
    submit_ok(a);
    lv_frame_t *b = frame_new("B-newer", 7);
    T.in_call = true;
    assert_int_equal(T.d->ops->replace_frame(T.d, a, b), 0);
    T.in_call = false;
    lv_frame_unref(a->frame); /* as the pipeline: the job now asks about the newer frame */
    a->frame = b;
    fe_sync();
    got_t g;
    const char *hvals[] = {"HVALS", "lv:q:dl"};
    wk_cmd(&g, 2, hvals);
    assert_int_equal(g.n, 1);
    assert_non_null(g.str[0]);
    unsigned long long queued_dl = strtoull(g.str[0], NULL, 10);
    assert_non_null(strstr(g.str[0], " " FE_ID)); /* the frontend id stays beside the new deadline */
    got_free(&g);
    lv_jobmsg_t m;
    pop_parse(&g, &m);
    assert_int_equal(queued_dl, m.deadline_wall_ms); /* the newer picture's deadline */
    jpeg_is(&m, b);
    assert_int_equal(m.capture_age_ms, 7);
    assert_int_equal(m.answer_id, 5);
    got_t g2;
    pop(&g2);
    assert_true(g2.nil); /* still one job */
    got_free(&g2);

    /* taken by a worker, started not heard yet: optimistic 0, the script says 0, nothing else */
    lv_frame_t *c = frame_new("C", 0);
    assert_int_equal(T.d->ops->replace_frame(T.d, a, c), 0);
    lv_frame_unref(a->frame);
    a->frame = c;
    fe_sync();
    pop(&g2);
    assert_true(g2.nil); /* no second job appeared */
    got_free(&g2);
    assert_int_equal(T.n_recs, 0);
    assert_non_null(a->impl);

    /* started: no more replacing */
    ev_started(m.id, "w1", 1);
    RUN_UNTIL(T.n_recs == 1, 3000);
    lv_frame_t *d = frame_new("D", 0);
    assert_int_not_equal(T.d->ops->replace_frame(T.d, a, d), 0);
    lv_frame_unref(d);
    got_free(&g);
    assert_int_equal(T.events_in_call, 0);
}

static void capacity_from_heartbeats(void **state)
{
    (void)state;
    assert_int_equal(T.d->ops->reopened(T.d), 0);
    uint64_t now = lv_wall_ms();
    heartbeat("w1", 3, 1, now);
    heartbeat("w2", 2, 0, now - 1000);
    heartbeat("w3", 7, 0, now - 10000);      /* dead: too old */
    heartbeat("w4", 5, 0, now + 500);       /* a clock a little ahead counts as fresh */
    const char *bad[] = {"HSET", LV_CQ_WORKERS_KEY, "w5", "lots of slots"};
    got_t g;
    wk_cmd(&g, 4, bad);
    got_free(&g);
    const char *bad_id[] = {"HSET", LV_CQ_WORKERS_KEY, "w 6", "9 0 99999999999999"};
    wk_cmd(&g, 4, bad_id);
    got_free(&g);
    wait_capacity(10);
    assert_true(T.d->ops->reopened(T.d) > 0); /* slots came without any job ending */
    assert_int_equal(T.d->ops->reopened(T.d), 0);
    lv_dredis_stats_t st;
    lv_dispatch_redis_stats(T.d, &st);
    assert_int_equal(st.n_workers, 3);
    assert_int_equal(st.capacity, 10);
    size_t in_flight = 0;
    for (size_t i = 0; i < st.n_workers; i++) {
        in_flight += st.workers[i].in_flight;
        assert_true(st.workers[i].age_ms <= LV_CQ_WORKER_STALE_MS);
    }
    assert_int_equal(in_flight, 1);

    lv_job_t *a = job_new(0, 1, "A");
    submit_ok(a);
    assert_int_equal(T.d->ops->free_slots(T.d), 9);
    heartbeat_gone("w4");
    wait_capacity(5);
    assert_int_equal(T.d->ops->free_slots(T.d), 4);
    assert_int_equal(T.d->ops->reopened(T.d), 0);
    heartbeat_gone("w1");
    heartbeat_gone("w2");
    wait_capacity(0);
    assert_int_equal(T.d->ops->free_slots(T.d), 0); /* never negative with a job out */
    char why[256] = "";
    assert_false(T.d->ops->serves(T.d, &T.sessions[0].rec.settings, why, sizeof(why)));
    assert_string_equal(why, MSG_NO_WORKER);
    char why2[256] = "";
    lv_job_t *b = job_new(1, 1, "B");
    assert_int_equal(submit(b, why2, sizeof(why2)), LV_EAGAIN);
    heartbeat("w9", 1, 0, lv_wall_ms());
    wait_capacity(1);
    assert_true(T.d->ops->serves(T.d, &T.sessions[0].rec.settings, why, sizeof(why)));
}

/* ttft_floor_us from the started event; no could_serve (no preemption: a job's slot is the
 * cluster's to give, not this frontend's), no grow (workers grow their own windows) */
static void slot_questions(void **state)
{
    (void)state;
    heartbeat("w1", 2, 0, lv_wall_ms());
    wait_capacity(2);
    lv_job_t *a = job_new(0, 1, "A");
    submit_ok(a);
    assert_int_equal(T.d->ops->ttft_floor_us(T.d, a), 0);
    got_t g;
    lv_jobmsg_t m;
    pop_parse(&g, &m);
    got_free(&g);
    ev_started(m.id, "w1", 777);
    RUN_UNTIL(T.n_recs == 1, 3000);
    assert_int_equal(T.d->ops->ttft_floor_us(T.d, a), 777);
    assert_null(T.d->ops->could_serve);
    assert_null(T.d->ops->grow);
}

static void worker_lost(void **state)
{
    (void)state;
    /* one heartbeat, never refreshed: the worker dies right after taking the job */
    heartbeat("w1", 2, 1, lv_wall_ms());
    uint64_t t_hb = lv_now_ms();
    wait_capacity(2);
    lv_job_t *a = job_new(0, 1, "A");
    submit_ok(a);
    lv_job_t *b = job_new(1, 1, "B"); /* waits in the queue: not lost, only stale later */
    submit_ok(b);
    got_t g;
    lv_jobmsg_t m;
    pop_parse(&g, &m);
    got_free(&g);
    ev_started(m.id, "w1", 1);
    RUN_UNTIL(T.n_recs == 2, 5000);
    uint64_t took = lv_now_ms() - t_hb;
    assert_int_equal(T.n_recs, 2);
    assert_int_equal(T.recs[1].kind, 'e');
    assert_ptr_equal(T.recs[1].job, a);
    assert_int_equal(T.recs[1].rc, LV_EBACKEND);
    assert_string_equal(T.recs[1].code, "worker_lost");
    assert_false(T.recs[1].stale);
    assert_string_equal(T.recs[1].msg,
                        "The worker answering this frame stopped; the next frame goes to another worker.");
    assert_true(took >= LV_CQ_WORKER_STALE_MS && took <= LV_CQ_WORKER_STALE_MS + 1200);
    assert_int_equal(T.lost_worker, 1);
    assert_int_equal(T.events_in_call, 0);
    /* the job is taken back from the worker, in case it is alive after all */
    RUN_UNTIL(T.n_cancels == 1, 3000);
    assert_int_equal(T.n_cancels, 1);
    assert_string_equal(T.cancels[0], m.id);
    /* its worker's late answer reaches nobody */
    ev_done(m.id, "w1", 0, "late", false, false);
    run_for(200);
    assert_int_equal(T.n_recs, 2);
    assert_non_null(b->impl);
    char why[256] = "";
    assert_false(T.d->ops->serves(T.d, &T.sessions[0].rec.settings, why, sizeof(why)));
    assert_string_equal(why, MSG_NO_WORKER);
}

static void stale_ending(void **state)
{
    (void)state;
    lv_dispatch_redis_close(T.d);
    lv_dispatch_redis_cfg_t cfg = default_cfg();
    cfg.max_frame_age_ms = 300;
    dispatcher_new(&cfg);
    heartbeat("w1", 2, 0, lv_wall_ms());
    wait_capacity(2);
    lv_job_t *a = job_new(0, 1, "A");
    uint64_t t0 = lv_now_ms();
    submit_ok(a);
    /* no worker takes it: ended stale 300 ms + the grace after it was received */
    for (uint64_t dl = lv_now_ms() + 5000; T.n_recs == 0 && lv_now_ms() < dl;) {
        heartbeat("w1", 2, 0, lv_wall_ms()); /* alive, just busy */
        run_for(200);
    }
    uint64_t took = lv_now_ms() - t0;
    assert_int_equal(T.n_recs, 1);
    assert_int_equal(T.recs[0].kind, 'e');
    assert_string_equal(T.recs[0].code, "stale");
    assert_true(T.recs[0].stale); /* the page hears frame_dropped("stale"), not an error */
    assert_true(T.recs[0].rc != 0);
    assert_string_equal(T.recs[0].backend, "cluster"); /* the pipeline prefixes the message with it */
    assert_true(took >= 300 + LV_DREDIS_GRACE_MS && took <= 300 + LV_DREDIS_GRACE_MS + 1200);
    assert_int_equal(T.lost_stale, 1);
    assert_int_equal(T.d->ops->free_slots(T.d), 2);
    fe_sync();
    got_t g;
    pop(&g);
    assert_true(g.nil); /* it left the queue */

    /* a worker that took it too late drops it unsent: the same ending */
    lv_job_t *b = job_new(1, 1, "B");
    submit_ok(b);
    lv_jobmsg_t m;
    pop_parse(&g, &m);
    got_free(&g);
    ev_done(m.id, "w1", LV_ETIMEDOUT, "", false, true);
    RUN_UNTIL(T.n_recs == 2, 3000);
    assert_int_equal(T.n_recs, 2);
    assert_string_equal(T.recs[1].code, "stale");
    assert_true(T.recs[1].stale);
    assert_int_equal(T.lost_stale, 2);
    assert_int_equal(T.events_in_call, 0);
}

static void requeue_ignored(void **state)
{
    (void)state;
    heartbeat("w1", 2, 0, lv_wall_ms());
    heartbeat("w2", 2, 0, lv_wall_ms());
    wait_capacity(4);
    lv_job_t *a = job_new(0, 1, "A");
    submit_ok(a);
    got_t g;
    lv_jobmsg_t m;
    pop_parse(&g, &m);
    ev_started(m.id, "w1", 100);
    ev_done(m.id, "w1", LV_EBACKEND, "", true, false);
    run_for(300);
    assert_int_equal(T.n_recs, 1); /* started only */
    assert_non_null(a->impl);
    /* the worker queued it again itself; another takes it */
    char enq[24];
    snprintf(enq, sizeof(enq), "%llu", (unsigned long long)m.enq_wall_ms);
    char dl[24];
    snprintf(dl, sizeof(dl), "%llu", (unsigned long long)m.deadline_wall_ms);
    const char *argv[] = {m.id, m.user, "3", g.str[1], enq, dl, m.frontend};
    size_t lens[] = {strlen(m.id), strlen(m.user), 1, g.len[1], strlen(enq), strlen(dl), strlen(m.frontend)};
    got_t g2 = {0};
    assert_int_equal(lv_redis_eval(T.wk, T.wk_scripts.enqueue, got_cb, &g2, 0, 7, argv, lens), 0);
    RUN_UNTIL(g2.done, 3000);
    got_free(&g2);
    got_free(&g);
    pop_parse(&g, &m);
    got_free(&g);
    ev_started(m.id, "w2", 200);
    ev_done(m.id, "w2", 0, "answer", false, false);
    RUN_UNTIL(T.n_recs == 2, 3000);
    run_for(100);
    assert_int_equal(T.n_recs, 2); /* started once, then the answer */
    assert_int_equal(T.recs[0].kind, 's');
    assert_int_equal(T.recs[1].kind, 'e');
    assert_int_equal(T.recs[1].rc, 0);
    assert_string_equal(T.recs[1].text, "answer");
}

static void redis_killed(void **state)
{
    (void)state;
    heartbeat("w1", 2, 0, lv_wall_ms());
    wait_capacity(2);
    lv_job_t *a = job_new(0, 1, "A");
    submit_ok(a);
    lv_job_t *b = job_new(1, 1, "B");
    submit_ok(b);
    got_t g;
    lv_jobmsg_t m;
    pop_parse(&g, &m);
    got_free(&g);
    ev_started(m.id, "w1", 1);
    RUN_UNTIL(T.n_recs == 1, 3000);
    fe_sync();

    rfx_kill(&redis);
    RUN_UNTIL(T.n_recs == 3, 5000);
    assert_int_equal(T.n_recs, 3);
    assert_int_equal(T.events_in_call, 0);
    for (size_t i = 1; i < 3; i++) {
        assert_int_equal(T.recs[i].kind, 'e');
        assert_string_equal(T.recs[i].code, "cluster_unavailable");
        assert_string_equal(T.recs[i].msg, "The cluster's job queue (Redis) was lost; answers resume when it is back.");
    }
    assert_true((T.recs[1].job == a && T.recs[2].job == b) || (T.recs[1].job == b && T.recs[2].job == a));
    assert_int_equal(T.lost_unavailable, 2);
    char why[256] = "";
    assert_false(T.d->ops->serves(T.d, &T.sessions[0].rec.settings, why, sizeof(why)));
    assert_string_equal(why, MSG_DOWN);
    assert_int_equal(T.d->ops->capacity(T.d), 0);
    lv_job_t *c = job_new(2, 1, "C");
    why[0] = '\0';
    assert_int_equal(submit(c, why, sizeof(why)), LV_ENOTFOUND);
    assert_string_equal(why, MSG_DOWN);
    lv_dredis_stats_t st;
    lv_dispatch_redis_stats(T.d, &st);
    assert_false(st.up);
    assert_int_equal(st.jobs_out, 0);

    /* back by itself */
    assert_int_equal(rfx_start(&redis), 0);
    RUN_UNTIL(lv_redis_up(T.fe) && lv_redis_up(T.wk), 8000);
    assert_true(lv_redis_up(T.fe) && lv_redis_up(T.wk));
    heartbeat("w1", 2, 0, lv_wall_ms());
    wait_capacity(2);
    assert_true(T.d->ops->serves(T.d, &T.sessions[0].rec.settings, why, sizeof(why)));
    T.fe_pings = 0;
    wait_subscribed(FE_CHANNEL, &T.fe_pings);
    run_for(2 * LV_DREDIS_REFRESH_MS); /* the subscriber's reconnect is accounted for */
    submit_ok(c);
    pop_parse(&g, &m);
    got_free(&g);
    ev_started(m.id, "w1", 1);
    ev_done(m.id, "w1", 0, "back", false, false);
    RUN_UNTIL(T.n_recs >= 5, 3000);
    run_for(600);
    assert_int_equal(T.n_recs, 5);
    assert_int_equal(T.recs[3].kind, 's');
    assert_int_equal(T.recs[4].kind, 'e');
    assert_ptr_equal(T.recs[4].job, c);
    assert_int_equal(T.recs[4].rc, 0);
    assert_string_equal(T.recs[4].text, "back");
}

/* The subscriber's connection is re-made while commands keep working (Redis closes a slow
 * subscriber, a proxy drops it): pub/sub kept nothing for it, so a started job's remaining events
 * may be gone and it ends instead of waiting forever; an unstarted one keeps waiting (the stale
 * sweep bounds it). */
static void events_lost_on_resubscribe(void **state)
{
    (void)state;
    heartbeat("w1", 2, 0, lv_wall_ms());
    wait_capacity(2);
    lv_job_t *a = job_new(0, 1, "A");
    lv_job_t *b = job_new(1, 1, "B");
    submit_ok(a);
    submit_ok(b);
    got_t g;
    lv_jobmsg_t m;
    pop_parse(&g, &m);
    got_free(&g);
    ev_started(m.id, "w1", 1);
    RUN_UNTIL(T.n_recs == 1, 3000);
    const char *kill_sub[] = {"CLIENT", "KILL", "TYPE", "pubsub"};
    wk_cmd(&g, 4, kill_sub);
    got_free(&g);
    uint64_t t0 = lv_now_ms();
    for (uint64_t dl = lv_now_ms() + 4000; T.n_recs < 2 && lv_now_ms() < dl;) {
        heartbeat("w1", 2, 1, lv_wall_ms()); /* the worker is alive: not worker_lost */
        run_for(100);
    }
    assert_int_equal(T.n_recs, 2);
    assert_ptr_equal(T.recs[1].job, a);
    assert_string_equal(T.recs[1].code, "cluster_unavailable");
    assert_true(lv_now_ms() - t0 < 2500);
    assert_int_equal(T.lost_unavailable, 1);
    assert_non_null(b->impl);
    assert_true(lv_redis_up(T.fe));
    assert_int_equal(T.events_in_call, 0);
}

static void bad_events(void **state)
{
    (void)state;
    heartbeat("w1", 2, 0, lv_wall_ms());
    wait_capacity(2);
    lv_job_t *a = job_new(0, 1, "A");
    submit_ok(a);
    const char *bad[] = {"", "{", "not json", "{\"t\":\"x\",\"j\":\"fe1-1\"}", "{\"t\":\"d\"}",
                         "{\"t\":\"e\",\"j\":\"fe1-1\",\"rc\":5}", "[1,2,3]"};
    for (size_t i = 0; i < LV_ARRAY_LEN(bad); i++)
        lv_dispatch_redis_on_message(T.d, bad[i], strlen(bad[i]));
    char big[600];
    memset(big, 'a', sizeof(big));
    lv_dispatch_redis_on_message(T.d, big, sizeof(big));
    assert_int_equal(T.n_recs, 0);
    assert_non_null(a->impl);
    /* a delta before started (an out-of-order worker) is not passed on */
    got_t g;
    lv_jobmsg_t m;
    pop_parse(&g, &m);
    got_free(&g);
    ev_delta(m.id, "early");
    run_for(200);
    assert_int_equal(T.n_recs, 0);
    /* a done without started: the answer still begins with started */
    ev_done(m.id, "w1", 0, "whole", false, false);
    RUN_UNTIL(T.n_recs == 2, 3000);
    assert_int_equal(T.recs[0].kind, 's');
    assert_int_equal(T.recs[1].kind, 'e');
    assert_string_equal(T.recs[1].text, "whole");
}

static void close_with_callbacks_pending(void **state)
{
    (void)state;
    heartbeat("w1", 2, 0, lv_wall_ms());
    wait_capacity(2);
    lv_job_t *a = job_new(0, 1, "A");
    lv_job_t *b = job_new(1, 1, "B");
    submit_ok(a);
    submit_ok(b);
    lv_frame_t *f = frame_new("A2", 0);
    assert_int_equal(T.d->ops->replace_frame(T.d, a, f), 0);
    lv_frame_unref(f);
    cancel(a);
    /* b left out on purpose: close drops it without an event; enqueue, replace and cancel
     * replies are still on their way */
    lv_dispatch_redis_close(T.d);
    T.d = NULL;
    b->impl = NULL;
    run_for(300);
    assert_int_equal(T.n_recs, 0);
    lv_dispatch_redis_cfg_t cfg = default_cfg();
    dispatcher_new(&cfg); /* for the teardown */
}

static void create_refuses_bad_ids(void **state)
{
    (void)state;
    lv_dispatch_t *d = NULL;
    lv_dispatch_redis_cfg_t cfg = default_cfg();
    cfg.frontend_id = "bad id";
    assert_int_equal(lv_dispatch_redis_create(&T.loop, T.fe, &T.fe_scripts, &cfg, &d), LV_EINVAL);
    cfg.frontend_id = "";
    assert_int_equal(lv_dispatch_redis_create(&T.loop, T.fe, &T.fe_scripts, &cfg, &d), LV_EINVAL);
    cfg.frontend_id = "a-very-long-frontend-id-of-forty-bytes-x";
    assert_int_equal(lv_dispatch_redis_create(&T.loop, T.fe, &T.fe_scripts, &cfg, &d), LV_EINVAL);
    assert_null(d);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(submit_enqueues, setup, teardown),
        cmocka_unit_test_setup_teardown(events_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(cancel_before_pop, setup, teardown),
        cmocka_unit_test_setup_teardown(cancel_after_pop, setup, teardown),
        cmocka_unit_test_setup_teardown(replace_frame, setup, teardown),
        cmocka_unit_test_setup_teardown(capacity_from_heartbeats, setup, teardown),
        cmocka_unit_test_setup_teardown(slot_questions, setup, teardown),
        cmocka_unit_test_setup_teardown(worker_lost, setup, teardown),
        cmocka_unit_test_setup_teardown(stale_ending, setup, teardown),
        cmocka_unit_test_setup_teardown(requeue_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(events_lost_on_resubscribe, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_events, setup, teardown),
        cmocka_unit_test_setup_teardown(close_with_callbacks_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(create_refuses_bad_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(redis_killed, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

/* test_worker.c - a cluster worker end to end with real peers: a redis-server and a fakevlm of our
 * own (free loopback ports, a temp dir, killed at the end). Jobs are queued the way a frontend
 * queues them (lv_jobmsg body, the enqueue script) and the test listens on the frontend's event
 * channel: answers (started, coalesced deltas, done with the whole text), a stale job dropped
 * unsent, no backend for a model, a cancel on lv:cancel, lv_worker_stop ending a running job with
 * worker_stopping and removing the heartbeat, a Redis restart survived, jobs held for a full
 * backend and handed back to the queue; then `livevlm worker`
 * itself (lv_worker_main in a child process): its flags, /healthz, /readyz, /metrics and SIGTERM.
 * Every wait runs the loop under a deadline. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <uv.h>

#include "lv_backend.h"
#include "lv_cluster_queue.h"
#include "lv_common.h"
#include "lv_config.h"
#include "lv_http.h"
#include "lv_jobmsg.h"
#include "lv_redis.h"
#include "lv_redisurl.h"
#include "lv_worker.h"
#include "redis_fixture.h"

#define WAIT_MS 8000
#define FE "fe1"
#define EV_MAX 256

/* ---------- peers: redis-server and fakevlm ---------- */

static struct {
    rfx_server_t redis; /* its dir holds fakevlm's and the worker's files too */
    pid_t fake_pid;
    int fake_port;
    char fakevlm[1100];
    unsigned char *jpeg;
    size_t jpeg_len;
} peers;

/* A blocking request to 127.0.0.1:port (200 ms receive timeout per read, 2 s in all); the whole
 * answer in out. Returns the bytes read, -1 when nothing could be sent. */
static ssize_t http_roundtrip(int port, const char *request, char *out, size_t out_size)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {0, 200000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    size_t len = strlen(request), got = 0;
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || write(fd, request, len) != (ssize_t)len) {
        close(fd);
        return -1;
    }
    uint64_t deadline = lv_now_ms() + 2000;
    while (got + 1 < out_size && lv_now_ms() < deadline) {
        ssize_t n = read(fd, out + got, out_size - 1 - got);
        if (n == 0)
            break;
        if (n > 0)
            got += (size_t)n;
    }
    out[got] = '\0';
    close(fd);
    return (ssize_t)got;
}

/* BUILD/tests/test_worker -> BUILD/fakevlm */
static int find_fakevlm(void)
{
    char exe[900];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0)
        return -1;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash)
        *slash = '\0';
    snprintf(peers.fakevlm, sizeof(peers.fakevlm), "%s/../fakevlm", exe);
    if (access(peers.fakevlm, X_OK) != 0) {
        fprintf(stderr, "%s is missing: build it first (make BUILD=... all)\n", peers.fakevlm);
        return -1;
    }
    return 0;
}

static int fakevlm_start(void)
{
    char port_file[128], port[16];
    snprintf(port_file, sizeof(port_file), "%s/fake.port", peers.redis.dir);
    peers.fake_port = rfx_free_port();
    snprintf(port, sizeof(port), "%d", peers.fake_port);
    /* answers of 20 words over ~320 ms: long enough to cancel one, short enough to wait for */
    char *argv[] = {peers.fakevlm, "--port", port, "--port-file", port_file, "--quiet", "--ttft-ms", "30",
                    "--token-ms", "15", "--tokens", "20", "--slots", "8", NULL};
    peers.fake_pid = rfx_spawn(peers.redis.dir, "fakevlm.log", false, peers.fakevlm, argv);
    uint64_t deadline = lv_now_ms() + 5000;
    while (access(port_file, R_OK) != 0) {
        if (waitpid(peers.fake_pid, NULL, WNOHANG) == peers.fake_pid || lv_now_ms() > deadline) {
            fprintf(stderr, "fakevlm did not start (see %s/fakevlm.log)\n", peers.redis.dir);
            return -1;
        }
        rfx_sleep_ms(20);
    }
    return 0;
}

static int load_jpeg(void)
{
    const char *paths[] = {"tests/data/frame-320x240.jpg", "../tests/data/frame-320x240.jpg"};
    for (size_t i = 0; i < LV_ARRAY_LEN(paths); i++) {
        FILE *f = fopen(paths[i], "rb");
        if (!f)
            continue;
        peers.jpeg = malloc(1 << 20);
        peers.jpeg_len = peers.jpeg ? fread(peers.jpeg, 1, 1 << 20, f) : 0;
        fclose(f);
        return peers.jpeg_len > 2 ? 0 : -1;
    }
    fprintf(stderr, "tests/data/frame-320x240.jpg not found (run from the repository root)\n");
    return -1;
}

static int group_setup(void **state)
{
    if (rfx_init(&peers.redis, "worker") != 0 || load_jpeg() != 0 || find_fakevlm() != 0)
        return -1;
    return rfx_start(&peers.redis) == 0 && fakevlm_start() == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    rfx_kill_wait(&peers.fake_pid);
    rfx_cleanup(&peers.redis); /* and the dir, with fakevlm's and the worker's files */
    free(peers.jpeg);
    return 0;
}

/* ---------- per test: a loop, a backend pool, a frontend's Redis client, a worker ---------- */

typedef struct {
    lv_jobev_kind_t kind;
    char job[LV_JOB_ID_MAX + 1];
    char worker[LV_NODE_ID_MAX + 1];
    char backend[LV_BACKEND_ID_MAX + 1];
    char model[LV_MODEL_MAX + 1];
    char code[64];
    char text[2048];
    int rc, tokens;
    bool stale, streamed;
    uint64_t at_ms;
} rec_ev_t;

static struct {
    uv_loop_t loop;
    rfx_deadline_t deadline;
    lv_config_t cfg;
    lv_http_t *http;
    lv_pool_t *pool;
    lv_redis_t *fe;          /* the test's "frontend" */
    lv_cq_scripts_t cq;
    bool fe_up;
    int subscribed;
    lv_worker_t *w;
    rec_ev_t ev[EV_MAX];
    int n_ev;
    lv_buf_t textbuf;
} t;

static bool run_until(bool (*cond)(void *), void *arg, int ms)
{
    return rfx_run_until(&t.deadline, cond, arg, ms);
}

static void run_for(int ms) { rfx_run_for(&t.deadline, ms); }

static void on_fe_state(void *ud, bool up) { t.fe_up = up; }

static void on_fe_message(void *ud, const char *channel, const char *payload, size_t len)
{
    if (strcmp(channel, LV_CQ_EVENT_CHANNEL_PREFIX FE) != 0) {
        if (strcmp(channel, "probe") == 0)
            t.subscribed++;
        return;
    }
    lv_jobev_t e;
    const char *why = NULL;
    if (lv_jobev_parse(payload, len, &e, &t.textbuf, &why) != 0)
        fail_msg("an event that does not parse (%s): %.*s", why, (int)LV_MIN(len, 300), payload);
    if (t.n_ev >= EV_MAX)
        fail_msg("more than %d events", EV_MAX);
    rec_ev_t *r = &t.ev[t.n_ev++];
    memset(r, 0, sizeof(*r));
    r->kind = e.kind;
    snprintf(r->job, sizeof(r->job), "%s", e.job);
    snprintf(r->worker, sizeof(r->worker), "%s", e.worker);
    snprintf(r->backend, sizeof(r->backend), "%s", e.backend_id);
    snprintf(r->model, sizeof(r->model), "%s", e.model);
    snprintf(r->code, sizeof(r->code), "%s", e.error_code);
    snprintf(r->text, sizeof(r->text), "%.*s", (int)e.text_len, e.text ? e.text : "");
    r->rc = e.rc;
    r->tokens = e.tokens;
    r->stale = e.stale;
    r->streamed = e.streamed;
    r->at_ms = lv_now_ms();
}

/* the job's events of one kind */
static int count_ev(const char *job, lv_jobev_kind_t kind)
{
    int n = 0;
    for (int i = 0; i < t.n_ev; i++)
        n += t.ev[i].kind == kind && strcmp(t.ev[i].job, job) == 0;
    return n;
}

static const rec_ev_t *find_ev(const char *job, lv_jobev_kind_t kind)
{
    for (int i = 0; i < t.n_ev; i++)
        if (t.ev[i].kind == kind && strcmp(t.ev[i].job, job) == 0)
            return &t.ev[i];
    return NULL;
}

static bool done_for(void *job) { return find_ev(job, LV_JOBEV_DONE) != NULL; }
static bool started_for(void *job) { return find_ev(job, LV_JOBEV_STARTED) != NULL; }
static bool is_fe_up(void *arg) { return t.fe_up; }
static bool is_subscribed(void *arg) { return t.subscribed > 0; }

typedef struct {
    bool done;
    int type;
    long long integer;
    char str[256];
} reply_t;

static void on_reply(void *ud, const redisReply *r, const char *err)
{
    reply_t *out = ud;
    out->done = true;
    out->type = r ? r->type : -1;
    if (r) {
        out->integer = r->integer;
        if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_ERROR || r->type == REDIS_REPLY_STATUS)
            snprintf(out->str, sizeof(out->str), "%.*s", (int)r->len, r->str);
    }
}

static bool reply_done(void *arg) { return ((reply_t *)arg)->done; }

static reply_t fe_cmd(const char *fmt, const char *a, const char *b)
{
    reply_t rep = {0};
    assert_int_equal(lv_redis_cmdf(t.fe, on_reply, &rep, fmt, a, b), 0);
    if (!run_until(reply_done, &rep, WAIT_MS))
        fail_msg("no reply to %s within %d ms", fmt, WAIT_MS);
    return rep;
}

static const char *pin_backend = ""; /* settings.backend of the jobs queued */

/* Queue a job as a frontend does: the body, then the enqueue script. */
/* false: enqueue as an older frontend did, with no deadline in the queue (the worker judges) */
static bool enqueue_with_deadline = true;

static void enqueue_job(const char *id, const char *user, const char *model, int64_t deadline_in_ms)
{
    lv_jobmsg_t m;
    memset(&m, 0, sizeof(m));
    snprintf(m.id, sizeof(m.id), "%s", id);
    snprintf(m.frontend, sizeof(m.frontend), "%s", FE);
    snprintf(m.session, sizeof(m.session), "0123456789abcdef0123456789abcdef");
    snprintf(m.user, sizeof(m.user), "%s", user);
    m.weight = 1;
    m.answer_id = 7;
    m.enq_wall_ms = lv_wall_ms();
    m.deadline_wall_ms = (uint64_t)((int64_t)m.enq_wall_ms + deadline_in_ms);
    m.capture_age_ms = 12;
    lv_settings_defaults(&m.settings);
    snprintf(m.settings.model, sizeof(m.settings.model), "%s", model);
    snprintf(m.settings.backend, sizeof(m.settings.backend), "%s", pin_backend);
    snprintf(m.settings.prompt, sizeof(m.settings.prompt), "what is in the picture?");
    m.jpeg = peers.jpeg;
    m.jpeg_len = peers.jpeg_len;
    lv_buf_t body;
    lv_buf_init(&body, 2u << 20);
    assert_int_equal(lv_jobmsg_encode(&m, &body), 0);
    char enq[24], dl[24];
    snprintf(enq, sizeof(enq), "%llu", (unsigned long long)m.enq_wall_ms);
    snprintf(dl, sizeof(dl), "%llu", (unsigned long long)m.deadline_wall_ms);
    const char *argv[] = {id, user, "1", body.data, enq, dl, FE};
    size_t lens[] = {strlen(id), strlen(user), 1, body.len, strlen(enq), strlen(dl), strlen(FE)};
    reply_t rep = {0};
    int argc = enqueue_with_deadline ? 7 : 5;
    assert_int_equal(lv_redis_eval(t.fe, t.cq.enqueue, on_reply, &rep, 0, argc, argv, lens), 0);
    lv_buf_free(&body);
    assert_true(run_until(reply_done, &rep, WAIT_MS));
    assert_int_equal(rep.type, REDIS_REPLY_INTEGER);
    assert_int_equal(rep.integer, 1);
}

static void fe_open(void)
{
    char url_text[64];
    snprintf(url_text, sizeof(url_text), "redis://127.0.0.1:%d", peers.redis.port);
    lv_redisurl_t url;
    const char *why = NULL;
    assert_int_equal(lv_redisurl_parse(url_text, &url, &why), 0);
    lv_redis_cfg_t cfg = {.name = "test frontend", .on_state = on_fe_state, .on_message = on_fe_message};
    assert_int_equal(lv_redis_create(&t.loop, &url, &cfg, &t.fe), 0);
    assert_int_equal(lv_cq_scripts_add(t.fe, &t.cq), 0);
    assert_int_equal(lv_redis_subscribe(t.fe, LV_CQ_EVENT_CHANNEL_PREFIX FE), 0);
    assert_int_equal(lv_redis_subscribe(t.fe, "probe"), 0);
    assert_true(run_until(is_fe_up, NULL, WAIT_MS));
    /* subscribed for sure once a message on the second channel comes back */
    uint64_t deadline = lv_now_ms() + WAIT_MS;
    while (t.subscribed == 0 && lv_now_ms() < deadline) {
        fe_cmd("PUBLISH %s %s", "probe", "x");
        run_until(is_subscribed, NULL, 100);
    }
    assert_true(t.subscribed > 0);
}

static void worker_start(void)
{
    assert_int_equal(lv_worker_start(&t.loop, t.pool, &t.cfg, &t.w), 0);
}

static int setup(void **state)
{
    memset(&t, 0, sizeof(t));
    pin_backend = "";
    enqueue_with_deadline = true;
    uv_loop_init(&t.loop);
    rfx_deadline_init(&t.deadline, &t.loop);
    lv_buf_init(&t.textbuf, LV_JOBEV_TEXT_MAX);
    lv_config_defaults(&t.cfg);
    snprintf(t.cfg.redis_url, sizeof(t.cfg.redis_url), "redis://127.0.0.1:%d", peers.redis.port);
    snprintf(t.cfg.node_id, sizeof(t.cfg.node_id), "wtest");
    char base[64];
    snprintf(base, sizeof(base), "http://127.0.0.1:%d/v1", peers.fake_port);
    if (lv_http_create(&t.loop, &t.http) != 0 || lv_pool_create(&t.loop, t.http, &t.pool) != 0 ||
        lv_pool_add(t.pool, "fake", base, NULL, 8, "fake-vlm-1,fake-vlm-2") != 0)
        return -1;
    fe_open();
    fe_cmd("FLUSHALL%s%s", "", "");
    return 0;
}

static int teardown(void **state)
{
    lv_worker_stop(t.w);
    t.w = NULL;
    lv_pool_destroy(t.pool);
    lv_http_destroy(t.http);
    lv_redis_close(t.fe);
    int rc = rfx_loop_close(&t.loop, &t.deadline, 5000);
    lv_buf_free(&t.textbuf);
    assert_int_equal(rc, 0);
    return 0;
}

/* ---------- the worker ---------- */

/* Three jobs from two users: each started on the fake backend, streamed in deltas that add up to
 * the done event's text, done with the answer; the heartbeat names the worker's capacity. */
static void answers_jobs(void **state)
{
    worker_start();
    enqueue_job("fe1-1", "alice", "fake-vlm-1", 10000);
    enqueue_job("fe1-2", "bob", "fake-vlm-2", 10000);
    enqueue_job("fe1-3", "alice", "fake-vlm-1", 10000);
    const char *jobs[] = {"fe1-1", "fe1-2", "fe1-3"};
    for (size_t i = 0; i < 3; i++) {
        if (!run_until(done_for, (void *)jobs[i], WAIT_MS))
            fail_msg("no done event for %s", jobs[i]);
    }
    for (size_t i = 0; i < 3; i++) {
        const rec_ev_t *s = find_ev(jobs[i], LV_JOBEV_STARTED), *d = find_ev(jobs[i], LV_JOBEV_DONE);
        assert_non_null(s);
        assert_string_equal(s->worker, "wtest");
        assert_string_equal(s->backend, "fake");
        assert_string_equal(s->model, i == 1 ? "fake-vlm-2" : "fake-vlm-1");
        assert_int_equal(count_ev(jobs[i], LV_JOBEV_STARTED), 1);
        assert_int_equal(count_ev(jobs[i], LV_JOBEV_DONE), 1);
        assert_int_equal(d->rc, 0);
        assert_false(d->stale);
        assert_true(d->tokens > 0);
        assert_true(d->streamed);
        assert_string_equal(d->backend, "fake");
        /* fakevlm names what it got: the model and the picture's size */
        assert_non_null(strstr(d->text, i == 1 ? "model=fake-vlm-2" : "model=fake-vlm-1"));
        assert_non_null(strstr(d->text, "jpeg=320x240"));
        /* started, then deltas, then done; the deltas are the text */
        char joined[2048] = "";
        size_t jl = 0;
        bool after_start = false, before_done = true;
        for (int k = 0; k < t.n_ev; k++) {
            const rec_ev_t *e = &t.ev[k];
            if (strcmp(e->job, jobs[i]) != 0)
                continue;
            if (e->kind == LV_JOBEV_STARTED)
                after_start = true;
            if (e->kind == LV_JOBEV_DONE)
                before_done = false;
            if (e->kind == LV_JOBEV_DELTA) {
                assert_true(after_start);
                assert_true(before_done);
                jl += (size_t)snprintf(joined + jl, sizeof(joined) - jl, "%s", e->text);
            }
        }
        assert_string_equal(joined, d->text);
    }
    reply_t hb = fe_cmd("HGET %s %s", LV_CQ_WORKERS_KEY, "wtest");
    assert_int_equal(hb.type, REDIS_REPLY_STRING);
    unsigned long cap = 0, inflight = 99;
    unsigned long long wall = 0;
    assert_int_equal(sscanf(hb.str, "%lu %lu %llu", &cap, &inflight, &wall), 3);
    assert_true(cap >= 1 && cap <= 8);
    assert_true(wall + 5000 > lv_wall_ms());
    lv_worker_stats_t st;
    lv_worker_stats(t.w, &st);
    assert_int_equal(st.taken, 3);
    assert_int_equal(st.answered, 3);
    assert_int_equal(st.failed + st.stale + st.cancelled, 0);
    assert_int_equal(st.in_flight, 0);
    /* the queue is empty and so is its wake-up list */
    assert_int_equal(fe_cmd("EXISTS %s%s", "lv:q:ready", "").integer, 0);
}

/* Deltas are coalesced: one PUBLISH per job per 40 ms at most (20 words over ~300 ms). */
static void deltas_coalesced(void **state)
{
    worker_start();
    enqueue_job("fe1-9", "alice", "fake-vlm-1", 10000);
    assert_true(run_until(done_for, "fe1-9", WAIT_MS));
    int n = count_ev("fe1-9", LV_JOBEV_DELTA);
    const rec_ev_t *d = find_ev("fe1-9", LV_JOBEV_DONE);
    assert_true(n >= 2);
    assert_true(n < d->tokens);
    uint64_t prev = 0;
    int close_pairs = 0;
    for (int k = 0; k < t.n_ev; k++) {
        if (t.ev[k].kind != LV_JOBEV_DELTA)
            continue;
        /* received times jitter a little: count pairs closer than half the period */
        if (prev && t.ev[k].at_ms - prev < 20)
            close_pairs++;
        prev = t.ev[k].at_ms;
    }
    assert_true(close_pairs <= 1);
}

/* Jobs waiting before the worker starts come out several per pop, stale ones among them: each
 * stale one said as stale at once (the pop script dropped it), the others answered. */
static void batch_with_stale(void **state)
{
    const char *jobs[] = {"fe1-40", "fe1-41", "fe1-42", "fe1-43", "fe1-44", "fe1-45"};
    for (size_t i = 0; i < LV_ARRAY_LEN(jobs); i++)
        enqueue_job(jobs[i], i % 2 ? "bob" : "alice", "fake-vlm-1", i == 0 || i == 3 ? -1 : 10000);
    worker_start();
    for (size_t i = 0; i < LV_ARRAY_LEN(jobs); i++) {
        if (!run_until(done_for, (void *)jobs[i], WAIT_MS))
            fail_msg("no done event for %s", jobs[i]);
    }
    for (size_t i = 0; i < LV_ARRAY_LEN(jobs); i++) {
        const rec_ev_t *d = find_ev(jobs[i], LV_JOBEV_DONE);
        bool stale = i == 0 || i == 3;
        assert_int_equal(d->stale, stale);
        assert_int_equal(count_ev(jobs[i], LV_JOBEV_STARTED), stale ? 0 : 1);
        if (!stale)
            assert_int_equal(d->rc, 0);
    }
    assert_string_equal(fe_cmd("GET %s%s", "lv:stat:stale", "").str, "2");
    lv_worker_stats_t st;
    lv_worker_stats(t.w, &st);
    assert_int_equal(st.stale, 2);
    assert_int_equal(st.taken, 4);
    assert_int_equal(st.answered, 4);
    assert_int_equal(fe_cmd("EXISTS %s%s", "lv:q:dl", "").integer, 0);
}

/* A job enqueued with no deadline in the queue (an older frontend) but past the one in its body:
 * the worker drops it when it reads the body, and counts it itself. */
static void stale_job_dropped_by_worker(void **state)
{
    enqueue_with_deadline = false;
    worker_start();
    enqueue_job("fe1-21", "alice", "fake-vlm-1", -1);
    assert_true(run_until(done_for, "fe1-21", WAIT_MS));
    const rec_ev_t *d = find_ev("fe1-21", LV_JOBEV_DONE);
    assert_true(d->stale);
    assert_int_equal(count_ev("fe1-21", LV_JOBEV_STARTED), 0);
    assert_string_equal(fe_cmd("GET %s%s", "lv:stat:stale", "").str, "1"); /* INCR went before the event */
    lv_worker_stats_t st;
    lv_worker_stats(t.w, &st);
    assert_int_equal(st.stale, 1);
    assert_int_equal(st.taken, 1);
}

/* A job past its deadline when taken: dropped unsent by the pop script, said as stale, counted. */
static void stale_job_dropped(void **state)
{
    worker_start();
    enqueue_job("fe1-20", "alice", "fake-vlm-1", -1);
    assert_true(run_until(done_for, "fe1-20", WAIT_MS));
    const rec_ev_t *d = find_ev("fe1-20", LV_JOBEV_DONE);
    assert_true(d->stale);
    assert_int_not_equal(d->rc, 0);
    assert_int_equal(count_ev("fe1-20", LV_JOBEV_STARTED), 0);
    assert_string_equal(fe_cmd("GET %s%s", "lv:stat:stale", "").str, "1");
    lv_worker_stats_t st;
    lv_worker_stats(t.w, &st);
    assert_int_equal(st.stale, 1);
    assert_int_equal(st.taken, 0); /* the script dropped it: its body never came here */
    assert_int_equal(st.answered, 0);
}

static void no_backend_for_model(void **state)
{
    worker_start();
    enqueue_job("fe1-30", "alice", "no-such-model", 10000);
    assert_true(run_until(done_for, "fe1-30", WAIT_MS));
    const rec_ev_t *d = find_ev("fe1-30", LV_JOBEV_DONE);
    assert_string_equal(d->code, "no_backend");
    assert_int_equal(d->rc, LV_ENOTFOUND);
    assert_false(d->stale);
}

/* A frontend takes back a job a worker runs: cancelled at the backend, no done event. */
static void cancel_running_job(void **state)
{
    worker_start();
    enqueue_job("fe1-40", "alice", "fake-vlm-1", 10000);
    assert_true(run_until(started_for, "fe1-40", WAIT_MS));
    fe_cmd("PUBLISH %s %s", LV_CQ_CANCEL_CHANNEL, "fe1-40");
    fe_cmd("PUBLISH %s %s", LV_CQ_CANCEL_CHANNEL, "someone-elses-job");
    run_for(700); /* longer than the answer would take */
    assert_int_equal(count_ev("fe1-40", LV_JOBEV_DONE), 0);
    lv_worker_stats_t st;
    lv_worker_stats(t.w, &st);
    assert_int_equal(st.cancelled, 1);
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(lv_pool_find(t.pool, "fake")->inflight, 0);
    /* the slot is free again: the next job is answered */
    enqueue_job("fe1-41", "alice", "fake-vlm-1", 10000);
    assert_true(run_until(done_for, "fe1-41", WAIT_MS));
    assert_int_equal(find_ev("fe1-41", LV_JOBEV_DONE)->rc, 0);
}

/* Stopping with a job running: its frontend hears worker_stopping, the heartbeat goes, a job
 * queued afterwards stays in the queue for another worker. */
static void stop_ends_running_jobs(void **state)
{
    worker_start();
    enqueue_job("fe1-50", "alice", "fake-vlm-1", 10000);
    assert_true(run_until(started_for, "fe1-50", WAIT_MS));
    assert_int_equal(fe_cmd("HEXISTS %s %s", LV_CQ_WORKERS_KEY, "wtest").integer, 1);
    lv_worker_stop(t.w);
    t.w = NULL;
    assert_true(run_until(done_for, "fe1-50", WAIT_MS));
    const rec_ev_t *d = find_ev("fe1-50", LV_JOBEV_DONE);
    assert_string_equal(d->code, "worker_stopping");
    run_for(100);
    assert_int_equal(fe_cmd("HEXISTS %s %s", LV_CQ_WORKERS_KEY, "wtest").integer, 0);
    enqueue_job("fe1-51", "alice", "fake-vlm-1", 10000);
    run_for(300);
    assert_int_equal(fe_cmd("GET %s%s", "lv:q:len", "").str[0], '1');
}

/* Redis killed and started again on the same port: the worker takes jobs again by itself. */
static void survives_redis_restart(void **state)
{
    worker_start();
    enqueue_job("fe1-60", "alice", "fake-vlm-1", 10000);
    assert_true(run_until(done_for, "fe1-60", WAIT_MS));
    rfx_kill(&peers.redis);
    run_for(300);
    assert_int_equal(rfx_start(&peers.redis), 0);
    t.subscribed = 0;
    assert_true(run_until(is_fe_up, NULL, WAIT_MS));
    uint64_t deadline = lv_now_ms() + WAIT_MS;
    while (t.subscribed == 0 && lv_now_ms() < deadline) {
        lv_redis_cmdf(t.fe, NULL, NULL, "PUBLISH probe x");
        run_until(is_subscribed, NULL, 100);
    }
    enqueue_job("fe1-61", "alice", "fake-vlm-1", 10000);
    if (!run_until(done_for, "fe1-61", WAIT_MS))
        fail_msg("the worker did not take a job after Redis came back");
    assert_int_equal(find_ev("fe1-61", LV_JOBEV_DONE)->rc, 0);
    /* its heartbeat is back too */
    run_for(LV_CQ_WORKER_HEARTBEAT_MS + 200);
    assert_int_equal(fe_cmd("HEXISTS %s %s", LV_CQ_WORKERS_KEY, "wtest").integer, 1);
}

/* Jobs for a backend that is full while another backend has room: the worker takes
 * them (its pool has free slots), holds them, hands the ones held too long back to the queue, and
 * every job is answered exactly once, one at a time on the full backend. */
static void held_jobs_wait_for_their_backend(void **state)
{
    char base[64];
    snprintf(base, sizeof(base), "http://127.0.0.1:%d/v1", peers.fake_port);
    assert_int_equal(lv_pool_add(t.pool, "one", base, NULL, 1, "fake-vlm-1"), 0);
    assert_int_equal(lv_backend_configure(lv_pool_find(t.pool, "one"), 0, 1, 1, 0, 0), 0);
    worker_start();
    char ids[5][24];
    for (int i = 0; i < 5; i++) {
        snprintf(ids[i], sizeof(ids[i]), "fe1-8%d", i);
        pin_backend = "one"; /* the session picked that backend */
        enqueue_job(ids[i], i % 2 ? "bob" : "alice", "fake-vlm-1", 20000);
        pin_backend = "";
    }
    int max_inflight = 0;
    uint64_t deadline = lv_now_ms() + 3 * WAIT_MS;
    for (int i = 0; i < 5; i++) {
        while (!find_ev(ids[i], LV_JOBEV_DONE) && lv_now_ms() < deadline) {
            run_for(10);
            max_inflight = LV_MAX(max_inflight, lv_pool_find(t.pool, "one")->inflight);
        }
        if (!find_ev(ids[i], LV_JOBEV_DONE))
            fail_msg("no done event for %s", ids[i]);
    }
    for (int i = 0; i < 5; i++) {
        assert_int_equal(count_ev(ids[i], LV_JOBEV_DONE), 1);
        assert_int_equal(count_ev(ids[i], LV_JOBEV_STARTED), 1);
        const rec_ev_t *d = find_ev(ids[i], LV_JOBEV_DONE);
        assert_int_equal(d->rc, 0);
        assert_string_equal(d->backend, "one");
    }
    assert_int_equal(max_inflight, 1);
    lv_worker_stats_t st;
    lv_worker_stats(t.w, &st);
    assert_int_equal(st.answered, 5);
    assert_true(st.taken > 5); /* some went back to the queue and were taken again */
    assert_int_equal(fe_cmd("GET %s%s", "lv:q:len", "").str[0], '0');
}

/* ---------- `livevlm worker` (lv_worker_main in a child) ---------- */

static pid_t worker_main_child(char **argv, int argc)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    char log[128];
    snprintf(log, sizeof(log), "%s/worker.log", peers.redis.dir);
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
    }
    _exit(lv_worker_main("livevlm", argc, argv));
}

static int wait_exit(pid_t pid, int ms)
{
    uint64_t deadline = lv_now_ms() + (uint64_t)ms;
    int st = 0;
    while (lv_now_ms() < deadline) {
        if (waitpid(pid, &st, WNOHANG) == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        rfx_sleep_ms(20);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

static void main_refuses_without_redis(void **state)
{
    char *argv[] = {"worker", "--backend", "fake=http://127.0.0.1:1/v1", NULL};
    assert_int_equal(wait_exit(worker_main_child(argv, 3), 5000), 2);
    char *argv2[] = {"worker", "--redis", "rediss://127.0.0.1:6379", NULL};
    assert_int_equal(wait_exit(worker_main_child(argv2, 3), 5000), 2);
    char *argv3[] = {"worker", "--help", NULL};
    assert_int_equal(wait_exit(worker_main_child(argv3, 2), 5000), 0);
}

static void main_serves_health_and_stops(void **state)
{
    char redis[64], backend[96], port_file[128];
    snprintf(redis, sizeof(redis), "redis://127.0.0.1:%d", peers.redis.port);
    snprintf(backend, sizeof(backend), "fake=http://127.0.0.1:%d/v1", peers.fake_port);
    snprintf(port_file, sizeof(port_file), "%s/worker.port", peers.redis.dir);
    unlink(port_file);
    char *argv[] = {"worker", "--redis", redis, "--backend", backend, "--node-id", "wmain", "--port-file", port_file,
                    NULL};
    pid_t pid = worker_main_child(argv, 9);
    int port = 0;
    uint64_t deadline = lv_now_ms() + WAIT_MS;
    while (port == 0 && lv_now_ms() < deadline) {
        FILE *f = fopen(port_file, "r");
        if (f) {
            if (fscanf(f, "%d", &port) != 1)
                port = 0;
            fclose(f);
        }
        if (!port)
            rfx_sleep_ms(20);
    }
    assert_true(port > 0);
    static char buf[65536];
    assert_true(http_roundtrip(port, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", buf, sizeof(buf)) > 0);
    assert_non_null(strstr(buf, "HTTP/1.1 200"));
    /* ready once Redis is up and the backend answered its first check */
    bool ready = false;
    deadline = lv_now_ms() + WAIT_MS;
    while (!ready && lv_now_ms() < deadline) {
        http_roundtrip(port, "GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n", buf, sizeof(buf));
        ready = strstr(buf, "HTTP/1.1 200") != NULL;
        if (!ready)
            rfx_sleep_ms(50);
    }
    assert_true(ready);
    /* a job through the process */
    enqueue_job("fe1-70", "alice", "fake-vlm-1", 10000);
    assert_true(run_until(done_for, "fe1-70", WAIT_MS));
    assert_string_equal(find_ev("fe1-70", LV_JOBEV_DONE)->worker, "wmain");
    assert_true(http_roundtrip(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", buf, sizeof(buf)) > 0);
    assert_non_null(strstr(buf, "HTTP/1.1 200"));
    assert_non_null(strstr(buf, "text/plain; version=0.0.4"));
    assert_non_null(strstr(buf, "livevlm_worker_jobs_total{outcome=\"answered\"} 1\n"));
    assert_non_null(strstr(buf, "livevlm_worker_jobs_total{outcome=\"stale\"} 0\n"));
    assert_non_null(strstr(buf, "livevlm_worker_redis_up 1\n"));
    assert_non_null(strstr(buf, "livevlm_worker_in_flight 0\n"));
    assert_non_null(strstr(buf, "livevlm_backend_window{backend=\"fake\"}"));
    http_roundtrip(port, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", buf, sizeof(buf));
    assert_non_null(strstr(buf, "HTTP/1.1 404"));
    http_roundtrip(port, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", buf, sizeof(buf));
    assert_non_null(strstr(buf, "HTTP/1.1 405"));
    http_roundtrip(port, "garbage\r\n\r\n", buf, sizeof(buf));
    assert_non_null(strstr(buf, "HTTP/1.1 400"));
    /* a head past 8 KiB is refused, not buffered */
    static char big[12000];
    memset(big, 'a', sizeof(big) - 1);
    memcpy(big, "GET /metrics HTTP/1.1\r\nX: ", 26);
    http_roundtrip(port, big, buf, sizeof(buf));
    assert_non_null(strstr(buf, "HTTP/1.1 431"));
    assert_int_equal(fe_cmd("HEXISTS %s %s", LV_CQ_WORKERS_KEY, "wmain").integer, 1);
    uint64_t t0 = lv_now_ms();
    kill(pid, SIGTERM);
    assert_int_equal(wait_exit(pid, 5000), 0);
    assert_true(lv_now_ms() - t0 < 5000);
    assert_int_equal(fe_cmd("HEXISTS %s %s", LV_CQ_WORKERS_KEY, "wmain").integer, 0);
    /* a clean exit: every handle closed, nothing the sanitizers or the worker complained about */
    char log_path[128];
    snprintf(log_path, sizeof(log_path), "%s/worker.log", peers.redis.dir);
    FILE *f = fopen(log_path, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    assert_non_null(strstr(buf, "worker: stopped"));
    assert_null(strstr(buf, "still open"));
    assert_null(strstr(buf, "Sanitizer"));
    assert_null(strstr(buf, "runtime error"));
    assert_null(strstr(buf, " error "));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(answers_jobs, setup, teardown),
        cmocka_unit_test_setup_teardown(deltas_coalesced, setup, teardown),
        cmocka_unit_test_setup_teardown(stale_job_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(stale_job_dropped_by_worker, setup, teardown),
        cmocka_unit_test_setup_teardown(batch_with_stale, setup, teardown),
        cmocka_unit_test_setup_teardown(no_backend_for_model, setup, teardown),
        cmocka_unit_test_setup_teardown(cancel_running_job, setup, teardown),
        cmocka_unit_test_setup_teardown(stop_ends_running_jobs, setup, teardown),
        cmocka_unit_test_setup_teardown(survives_redis_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(held_jobs_wait_for_their_backend, setup, teardown),
        cmocka_unit_test_setup_teardown(main_refuses_without_redis, setup, teardown),
        cmocka_unit_test_setup_teardown(main_serves_health_and_stops, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

/* test_cluster_queue.c - the cluster queue's Lua scripts (lv_cluster_queue.c) run for real: a
 * redis-server of our own (a free loopback port, a temp dir, killed at the end), the scripts
 * registered and sent through lv_redis. Weighted fairness across users, no credit for a user
 * who leaves and comes back, one share however many jobs a user queues, replace and cancel
 * before and after a pop, exact len/age/ready bookkeeping, stats, refused arguments, and
 * lv:q:last staying small; two levels: tenants by weight whatever their user counts, users by
 * weight within a tenant, an idle tenant's share to the others, no credit for a tenant that comes
 * back, an old enqueue (no tenant) in "default". Every wait runs the loop under a deadline. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "jain.h"
#include "lv_cluster_queue.h"
#include "lv_common.h"
#include "lv_redis.h"
#include "lv_redisurl.h"
#include "redis_fixture.h"

#define WAIT_MS 5000

/* ---------- a redis-server of our own ---------- */

static struct {
    rfx_server_t srv;
    uv_loop_t loop;
    rfx_deadline_t deadline;
    lv_redis_t *r;
    lv_cq_scripts_t cq;
} g;

/* ---------- the loop, under deadlines ---------- */

static bool run_until(bool *flag, int ms)
{
    return rfx_run_until(&g.deadline, rfx_is_set, flag, ms);
}

/* One reply, copied out of the callback. */
typedef struct {
    bool done;
    int type;
    long long integer;
    char str[256];
    size_t elements;
    long long ints[4];
    char el[2][256];
    bool el_nil[2];
} reply_t;

static void on_reply(void *ud, const redisReply *r, const char *err)
{
    reply_t *out = ud;
    out->done = true;
    if (!r) {
        out->type = -1;
        snprintf(out->str, sizeof(out->str), "%s", err ? err : "?");
        return;
    }
    out->type = r->type;
    out->integer = r->integer;
    if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_ERROR || r->type == REDIS_REPLY_STATUS)
        snprintf(out->str, sizeof(out->str), "%.*s", (int)r->len, r->str);
    if (r->type == REDIS_REPLY_ARRAY) {
        out->elements = r->elements;
        for (size_t i = 0; i < r->elements && i < 4; i++) {
            const redisReply *e = r->element[i];
            out->ints[i] = e->integer;
            if (i < 2) {
                out->el_nil[i] = e->type == REDIS_REPLY_NIL;
                if (e->type == REDIS_REPLY_STRING)
                    snprintf(out->el[i], sizeof(out->el[i]), "%.*s", (int)e->len, e->str);
            }
        }
    }
}

static reply_t eval(int script, int argc, const char **argv)
{
    reply_t rep = {0};
    size_t lens[16];
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    assert_int_equal(lv_redis_eval(g.r, script, on_reply, &rep, 0, argc, argv, lens), 0);
    if (!run_until(&rep.done, WAIT_MS))
        fail_msg("no reply within %d ms", WAIT_MS);
    assert_int_not_equal(rep.type, -1);
    return rep;
}

static reply_t cmd(const char *fmt, const char *arg)
{
    reply_t rep = {0};
    assert_int_equal(lv_redis_cmdf(g.r, on_reply, &rep, fmt, arg), 0);
    if (!run_until(&rep.done, WAIT_MS))
        fail_msg("no reply within %d ms", WAIT_MS);
    return rep;
}

static long long cmd_int(const char *fmt, const char *arg)
{
    reply_t rep = cmd(fmt, arg);
    if (rep.type == REDIS_REPLY_STRING)
        return strtoll(rep.str, NULL, 10);
    if (rep.type == REDIS_REPLY_NIL)
        return 0;
    assert_int_equal(rep.type, REDIS_REPLY_INTEGER);
    return rep.integer;
}

static long long enqueue_at(const char *id, const char *user, int weight, const char *body, long long enq_ms)
{
    char w[16], enq[24];
    snprintf(w, sizeof(w), "%d", weight);
    snprintf(enq, sizeof(enq), "%lld", enq_ms);
    const char *argv[] = {id, user, w, body, enq};
    reply_t rep = eval(g.cq.enqueue, 5, argv);
    assert_int_equal(rep.type, REDIS_REPLY_INTEGER);
    return rep.integer;
}

/* A job with a deadline and the frontend to tell when it goes stale (fe NULL: none given). */
static long long enqueue_dl(const char *id, const char *user, long long deadline_ms, const char *fe)
{
    char dl[24], body[80];
    snprintf(dl, sizeof(dl), "%lld", deadline_ms);
    snprintf(body, sizeof(body), "body of %s", id);
    const char *argv[] = {id, user, "1", body, "1000", dl, fe};
    reply_t rep = eval(g.cq.enqueue, fe ? 7 : 6, argv);
    assert_int_equal(rep.type, REDIS_REPLY_INTEGER);
    return rep.integer;
}

static long long enqueue(const char *id, const char *user, int weight)
{
    char body[80];
    snprintf(body, sizeof(body), "body of %s", id);
    return enqueue_at(id, user, weight, body, 1000);
}

/* One pop's reply: the jobs taken and the stale ones, copied out. */
typedef struct {
    bool done, nil, error;
    size_t n_taken, n_stale;
    char id[LV_CQ_POP_MAX][64], body[LV_CQ_POP_MAX][64];
    char stale_id[64][64], stale_fe[64][64];
} batch_t;

static void copy_str(char *dst, size_t size, const redisReply *e)
{
    assert_int_equal(e->type, REDIS_REPLY_STRING);
    snprintf(dst, size, "%.*s", (int)e->len, e->str);
}

static void on_batch(void *ud, const redisReply *r, const char *err)
{
    batch_t *out = ud;
    out->done = true;
    if (!r || r->type == REDIS_REPLY_ERROR) {
        out->error = true;
        return;
    }
    if (r->type == REDIS_REPLY_NIL) {
        out->nil = true;
        return;
    }
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 2);
    const redisReply *taken = r->element[0], *stale = r->element[1];
    assert_int_equal(taken->type, REDIS_REPLY_ARRAY);
    assert_int_equal(stale->type, REDIS_REPLY_ARRAY);
    assert_int_equal(taken->elements % 2, 0);
    assert_int_equal(stale->elements % 2, 0);
    assert_true(taken->elements / 2 <= LV_CQ_POP_MAX);
    assert_true(stale->elements / 2 <= 64);
    out->n_taken = taken->elements / 2;
    out->n_stale = stale->elements / 2;
    for (size_t i = 0; i < out->n_taken; i++) {
        copy_str(out->id[i], sizeof(out->id[i]), taken->element[2 * i]);
        copy_str(out->body[i], sizeof(out->body[i]), taken->element[2 * i + 1]);
    }
    for (size_t i = 0; i < out->n_stale; i++) {
        copy_str(out->stale_id[i], sizeof(out->stale_id[i]), stale->element[2 * i]);
        copy_str(out->stale_fe[i], sizeof(out->stale_fe[i]), stale->element[2 * i + 1]);
    }
}

/* Pop up to max jobs at wall time now_ms (argument strings as given, to test refusals too). */
static batch_t *pop_raw(const char *now_ms, const char *max)
{
    static batch_t b;
    memset(&b, 0, sizeof(b));
    const char *argv[] = {now_ms, max};
    size_t lens[] = {strlen(now_ms), strlen(max)};
    assert_int_equal(lv_redis_eval(g.r, g.cq.pop, on_batch, &b, 0, 2, argv, lens), 0);
    if (!run_until(&b.done, WAIT_MS))
        fail_msg("no reply within %d ms", WAIT_MS);
    return &b;
}

static batch_t *pop_batch(long long now_ms, int max)
{
    char now_s[24], max_s[16];
    snprintf(now_s, sizeof(now_s), "%lld", now_ms);
    snprintf(max_s, sizeof(max_s), "%d", max);
    batch_t *b = pop_raw(now_s, max_s);
    assert_false(b->error);
    return b;
}

/* Pop one job: its id in id (and body in body, when given); false when nothing waits. The tests'
 * jobs have no deadline (or one far ahead of NOW_MS) unless they say otherwise. */
#define NOW_MS 1700000000000LL
static bool pop(char *id, size_t id_size, char *body, size_t body_size)
{
    batch_t *b = pop_batch(NOW_MS, 1);
    if (b->nil)
        return false;
    assert_int_equal(b->n_stale, 0);
    assert_int_equal(b->n_taken, 1);
    snprintf(id, id_size, "%.*s", (int)id_size - 1, b->id[0]);
    if (body)
        snprintf(body, body_size, "%.*s", (int)body_size - 1, b->body[0]);
    return true;
}

static long long script_int(int script, const char *a, const char *b)
{
    const char *argv[] = {a, b};
    reply_t rep = eval(script, 2, argv);
    assert_int_equal(rep.type, REDIS_REPLY_INTEGER);
    return rep.integer;
}

/* [len, oldest enqueue ms, stale] */
static void stats(long long out[3])
{
    reply_t rep = eval(g.cq.stats, 0, NULL);
    assert_int_equal(rep.type, REDIS_REPLY_ARRAY);
    assert_int_equal(rep.elements, 3);
    memcpy(out, rep.ints, 3 * sizeof(long long));
}

/* len, age and the ready tokens agree with what the test knows waits */
static void assert_waiting(long long n)
{
    long long st[3];
    stats(st);
    assert_int_equal(st[0], n);
    assert_int_equal(cmd_int("ZCARD %s", "lv:q:age"), n);
    assert_true(cmd_int("LLEN %s", "lv:q:ready") <= n);
    if (n == 0) {
        assert_int_equal(cmd_int("EXISTS %s", "lv:q:ready"), 0);
        assert_int_equal(cmd_int("ZCARD %s", "lv:q:ten"), 0);
        assert_int_equal(cmd_int("HLEN %s", "lv:q:ut"), 0);
        assert_int_equal(cmd_int("HLEN %s", "lv:q:tw"), 0);
    }
}

/* ---------- fixtures ---------- */

static bool up_flag;

static void on_state(void *ud, bool up) { up_flag = up; }

static int group_setup(void **state)
{
    if (rfx_init(&g.srv, "cq") != 0 || rfx_start(&g.srv) != 0)
        return -1;
    uv_loop_init(&g.loop);
    rfx_deadline_init(&g.deadline, &g.loop);
    char url_text[64];
    snprintf(url_text, sizeof(url_text), "redis://127.0.0.1:%d", g.srv.port);
    lv_redisurl_t url;
    const char *why = NULL;
    lv_redis_cfg_t cfg = {.name = "test_cluster_queue", .on_state = on_state};
    if (lv_redisurl_parse(url_text, &url, &why) != 0 || lv_redis_create(&g.loop, &url, &cfg, &g.r) != 0 ||
        lv_cq_scripts_add(g.r, &g.cq) != 0)
        return -1;
    return run_until(&up_flag, WAIT_MS) ? 0 : -1;
}

static int group_teardown(void **state)
{
    lv_redis_close(g.r);
    g.r = NULL;
    int rc = rfx_loop_close(&g.loop, &g.deadline, 1000);
    rfx_cleanup(&g.srv);
    return rc == 0 ? 0 : -1;
}

static int flush(void **state)
{
    reply_t rep = cmd("FLUSHALL%s", "");
    return rep.type == REDIS_REPLY_STATUS ? 0 : -1;
}

/* ---------- fairness ---------- */

/* A (weight 1) and B (weight 3) each queue 50: over the first 40 pops B gets three turns for
 * each of A's, whichever queued first. */
static void weighted_shares(void **state)
{
    char id[64];
    for (int i = 0; i < 50; i++) {
        snprintf(id, sizeof(id), "a%d", i);
        assert_int_equal(enqueue(id, "A", 1), 1);
    }
    for (int i = 0; i < 50; i++) {
        snprintf(id, sizeof(id), "b%d", i);
        assert_int_equal(enqueue(id, "B", 3), 1);
    }
    assert_waiting(100);
    int a = 0, b = 0, next_a = 0, next_b = 0;
    for (int i = 0; i < 40; i++) {
        assert_true(pop(id, sizeof(id), NULL, 0));
        /* each user's own jobs come out in the order they were queued */
        char want[16];
        if (id[0] == 'a') {
            snprintf(want, sizeof(want), "a%d", next_a++);
            a++;
        } else {
            snprintf(want, sizeof(want), "b%d", next_b++);
            b++;
        }
        assert_string_equal(id, want);
    }
    assert_in_range(a, 9, 11);
    assert_in_range(b, 29, 31);
    assert_waiting(60);
}

/* A user whose list emptied comes back at the virtual time: its idle time earns nothing. */
static void no_credit_for_leaving(void **state)
{
    char id[64];
    for (int i = 0; i < 60; i++) {
        snprintf(id, sizeof(id), "a%d", i);
        enqueue(id, "A", 1);
    }
    enqueue("b0", "B", 1);
    int b = 0;
    for (int i = 0; i < 30; i++) {
        assert_true(pop(id, sizeof(id), NULL, 0));
        b += id[0] == 'b';
    }
    assert_int_equal(b, 1); /* B's one job went early */
    for (int i = 1; i <= 20; i++) {
        snprintf(id, sizeof(id), "b%d", i);
        enqueue(id, "B", 1);
    }
    /* with credit for the 28 turns it sat out, B would take the next 20 in a row */
    b = 0;
    for (int i = 0; i < 20; i++) {
        assert_true(pop(id, sizeof(id), NULL, 0));
        b += id[0] == 'b';
    }
    assert_in_range(b, 9, 11);
}

/* Ten times the jobs is still one share. */
static void many_jobs_one_share(void **state)
{
    char id[64];
    for (int i = 0; i < 100; i++) {
        snprintf(id, sizeof(id), "a%d", i);
        enqueue(id, "A", 1);
        if (i % 10 == 0) {
            snprintf(id, sizeof(id), "b%d", i / 10);
            enqueue(id, "B", 1);
        }
    }
    int b = 0;
    for (int i = 0; i < 20; i++) {
        assert_true(pop(id, sizeof(id), NULL, 0));
        b += id[0] == 'b';
    }
    assert_in_range(b, 9, 11);
    /* B is out of jobs: A takes the rest alone, nothing is lost */
    int left = 0;
    while (pop(id, sizeof(id), NULL, 0)) {
        assert_true(left < 200);
        left++;
    }
    assert_int_equal(left, 110 - 20);
    assert_waiting(0);
}

/* A newcomer starts at the virtual time, not behind the backlog of others. */
static void newcomer_does_not_wait_behind_backlog(void **state)
{
    char id[64];
    for (int i = 0; i < 30; i++) {
        snprintf(id, sizeof(id), "a%d", i);
        enqueue(id, "A", 1);
    }
    for (int i = 0; i < 10; i++)
        assert_true(pop(id, sizeof(id), NULL, 0));
    enqueue("c0", "C", 1);
    bool seen = false;
    for (int i = 0; i < 2 && !seen; i++) {
        assert_true(pop(id, sizeof(id), NULL, 0));
        seen = strcmp(id, "c0") == 0;
    }
    assert_true(seen);
}

/* ---------- replace, cancel ---------- */

static void replace_waiting_and_taken(void **state)
{
    char id[64], body[128];
    enqueue("j1", "A", 1);
    assert_int_equal(script_int(g.cq.replace, "j1", "newer picture"), 1);
    assert_waiting(1); /* replaced, not added */
    assert_true(pop(id, sizeof(id), body, sizeof(body)));
    assert_string_equal(id, "j1");
    assert_string_equal(body, "newer picture");
    assert_int_equal(script_int(g.cq.replace, "j1", "too late"), 0);
    assert_int_equal(cmd_int("EXISTS %s", "lv:j:j1"), 0); /* no body left behind */
    assert_int_equal(script_int(g.cq.replace, "never-queued", "x"), 0);
    assert_waiting(0);
}

/* The same id queued twice (a frontend's retry, a requeue racing): one job, the newer body. */
static void enqueue_twice_is_one_job(void **state)
{
    char id[64], body[128];
    assert_int_equal(enqueue_at("j1", "A", 1, "first", 1000), 1);
    assert_int_equal(enqueue_at("j1", "A", 1, "second", 1001), 0);
    assert_waiting(1);
    assert_true(pop(id, sizeof(id), body, sizeof(body)));
    assert_string_equal(body, "second");
    assert_false(pop(id, sizeof(id), NULL, 0));
}

static void cancel_waiting_and_taken(void **state)
{
    char id[64];
    long long st[3];
    enqueue_at("j1", "A", 1, "1", 100);
    enqueue_at("j2", "A", 1, "2", 50);
    enqueue_at("j3", "B", 1, "3", 200);
    assert_int_equal(script_int(g.cq.cancel, "j2", "A"), 1);
    assert_int_equal(script_int(g.cq.cancel, "j2", "A"), 0); /* once */
    assert_waiting(2);
    stats(st);
    assert_int_equal(st[1], 100); /* the cancelled one was the oldest: it no longer counts */
    int seen = 0;
    while (pop(id, sizeof(id), NULL, 0)) {
        assert_string_not_equal(id, "j2");
        assert_true(++seen <= 2);
    }
    assert_int_equal(seen, 2);
    assert_waiting(0);
    assert_int_equal(script_int(g.cq.cancel, "j1", "A"), 0); /* a worker has it */
    assert_waiting(0);

    /* a user's only job cancelled: the user leaves the set */
    enqueue("k1", "C", 1);
    assert_int_equal(script_int(g.cq.cancel, "k1", "C"), 1);
    assert_int_equal(cmd_int("ZCARD %s", "lv:q:users"), 0);
    assert_waiting(0);
}

/* A cancel that names the wrong user still takes the job out: len and age at once, its id when
 * pop meets it (skipped, costing its user no turn). */
static void cancel_wrong_user_is_skipped(void **state)
{
    char id[64];
    enqueue("j1", "A", 1);
    enqueue("j2", "A", 1);
    assert_int_equal(script_int(g.cq.cancel, "j1", "B"), 1);
    assert_waiting(1);
    assert_true(pop(id, sizeof(id), NULL, 0));
    assert_string_equal(id, "j2");
    assert_false(pop(id, sizeof(id), NULL, 0));
    assert_waiting(0);
}

/* ---------- bookkeeping ---------- */

static void stats_and_stale_count(void **state)
{
    long long st[3];
    stats(st);
    assert_int_equal(st[0], 0);
    assert_int_equal(st[1], 0);
    assert_int_equal(st[2], 0);
    enqueue_at("j1", "A", 1, "x", 1700000000123LL);
    enqueue_at("j2", "B", 1, "x", 1700000000001LL);
    enqueue_at("j3", "A", 1, "x", 1700000000999LL);
    cmd("INCR %s", "lv:stat:stale");
    cmd("INCR %s", "lv:stat:stale");
    stats(st);
    assert_int_equal(st[0], 3);
    assert_true(st[1] == 1700000000001LL); /* wall ms come back exact */
    assert_int_equal(st[2], 2);
}

/* One token per job waiting, never more; none once empty. */
static void ready_tokens(void **state)
{
    char id[64];
    enqueue("j1", "A", 1);
    enqueue("j2", "B", 1);
    enqueue("j3", "C", 1);
    assert_int_equal(cmd_int("LLEN %s", "lv:q:ready"), 3);
    /* a worker that pops without taking a token (it had slots free) leaves tokens > len: trimmed */
    assert_true(pop(id, sizeof(id), NULL, 0));
    assert_int_equal(cmd_int("LLEN %s", "lv:q:ready"), 2);
    assert_int_equal(script_int(g.cq.cancel, "j2", "B"), 1);
    assert_int_equal(cmd_int("LLEN %s", "lv:q:ready"), 1);
    /* tokens taken by BLPOPs: enqueue tops them up to the count waiting, one per job */
    cmd("DEL %s", "lv:q:ready");
    enqueue("j4", "A", 1);
    assert_int_equal(cmd_int("LLEN %s", "lv:q:ready"), 1);
    enqueue("j5", "A", 1);
    assert_int_equal(cmd_int("LLEN %s", "lv:q:ready"), 2);
    while (pop(id, sizeof(id), NULL, 0))
        ;
    assert_waiting(0);
    assert_int_equal(cmd_int("EXISTS %s", "lv:q:ready"), 0);
}

static void bad_arguments_write_nothing(void **state)
{
    const char *bad_weight[] = {"j1", "A", "heavy", "body", "1000"};
    reply_t rep = eval(g.cq.enqueue, 5, bad_weight);
    assert_int_equal(rep.type, REDIS_REPLY_ERROR);
    const char *bad_time[] = {"j1", "A", "1", "body", "soon"};
    rep = eval(g.cq.enqueue, 5, bad_time);
    assert_int_equal(rep.type, REDIS_REPLY_ERROR);
    const char *no_user[] = {"j1", "", "1", "body", "1000"};
    rep = eval(g.cq.enqueue, 5, no_user);
    assert_int_equal(rep.type, REDIS_REPLY_ERROR);
    rep = eval(g.cq.cancel, 1, no_user);
    assert_int_equal(rep.type, REDIS_REPLY_ERROR);
    rep = eval(g.cq.replace, 1, no_user);
    assert_int_equal(rep.type, REDIS_REPLY_ERROR);
    assert_int_equal(cmd_int("DBSIZE%s", ""), 0);
    /* weights out of range are clamped, not refused */
    enqueue("j1", "A", 0);
    enqueue("j2", "B", 5000);
    reply_t w = cmd("HGET lv:q:w %s", "B");
    assert_string_equal(w.str, "1000");
    w = cmd("HGET lv:q:w %s", "A");
    assert_string_equal(w.str, "1");
}

/* lv:q:last holds only tags ahead of the virtual time: 200 users who came and went once are
 * forgotten as the queue moves on. */
static void last_stays_small(void **state)
{
    char id[64], user[32];
    for (int i = 0; i < 200; i++) {
        snprintf(id, sizeof(id), "u%d", i);
        snprintf(user, sizeof(user), "user%d", i);
        enqueue(id, user, 1);
    }
    while (pop(id, sizeof(id), NULL, 0))
        ;
    assert_int_equal(cmd_int("HLEN %s", "lv:q:last:default"), 200); /* each left one turn ahead */
    for (int i = 0; i < 150; i++) {
        snprintf(id, sizeof(id), "z%d", i);
        enqueue(id, "Z", 1);
    }
    while (pop(id, sizeof(id), NULL, 0))
        ;
    assert_true(cmd_int("HLEN %s", "lv:q:last:default") <= 1); /* Z's own, at most */
    assert_int_equal(cmd_int("HLEN %s", "lv:q:w"), 0);
    assert_waiting(0);
}

/* ---------- batch pop, stale jobs ---------- */

static void queue_mix(void)
{
    char id[64];
    for (int i = 0; i < 12; i++) {
        snprintf(id, sizeof(id), "a%d", i);
        enqueue(id, "A", 1);
        snprintf(id, sizeof(id), "b%d", i);
        enqueue(id, "B", 2);
        if (i < 5) {
            snprintf(id, sizeof(id), "c%d", i);
            enqueue(id, "C", 3);
        }
    }
}

/* Popping 7 at a time gives exactly the order (and bodies) of popping one at a time. */
static void batch_same_order_as_single(void **state)
{
    char single[29][64], id[64], body[64];
    queue_mix();
    for (int i = 0; i < 29; i++) {
        assert_true(pop(single[i], sizeof(single[i]), NULL, 0));
    }
    assert_false(pop(id, sizeof(id), NULL, 0));
    assert_int_equal(flush(NULL), 0);
    queue_mix();
    int n = 0;
    for (int round = 0; round < 10; round++) {
        batch_t *b = pop_batch(NOW_MS, 7);
        if (b->nil)
            break;
        assert_int_equal(b->n_stale, 0);
        assert_int_equal(b->n_taken, n + 7 <= 29 ? 7 : 29 - n);
        for (size_t i = 0; i < b->n_taken; i++, n++) {
            assert_string_equal(b->id[i], single[n]);
            snprintf(body, sizeof(body), "body of %s", single[n]);
            assert_string_equal(b->body[i], body);
        }
    }
    assert_int_equal(n, 29);
    assert_waiting(0);
}

/* A's first job is stale: it is dropped, counted and returned with A's frontend, and A keeps its
 * turn, so the jobs still alternate A, B, A, B (with A's tag advanced, B would go first). */
static void stale_head_keeps_turn(void **state)
{
    char id[64];
    for (int i = 0; i < 3; i++) {
        snprintf(id, sizeof(id), "a%d", i);
        enqueue_dl(id, "A", i == 0 ? NOW_MS - 1 : NOW_MS + 5000, "feA");
        snprintf(id, sizeof(id), "b%d", i);
        enqueue_dl(id, "B", NOW_MS + 5000, "feB");
    }
    batch_t *b = pop_batch(NOW_MS, 4);
    assert_false(b->nil);
    assert_int_equal(b->n_stale, 1);
    assert_string_equal(b->stale_id[0], "a0");
    assert_string_equal(b->stale_fe[0], "feA");
    assert_int_equal(b->n_taken, 4);
    const char *want[] = {"a1", "b0", "a2", "b1"};
    for (int i = 0; i < 4; i++)
        assert_string_equal(b->id[i], want[i]);
    long long st[3];
    stats(st);
    assert_int_equal(st[2], 1);
    assert_waiting(1);
    assert_int_equal(cmd_int("HLEN %s", "lv:q:dl"), 1); /* b2's: the others went with their jobs */
    assert_int_equal(cmd_int("EXISTS %s", "lv:j:a0"), 0);
    assert_true(pop(id, sizeof(id), NULL, 0));
    assert_string_equal(id, "b2");
    assert_waiting(0);
    assert_int_equal(cmd_int("EXISTS %s", "lv:q:dl"), 0);
}

/* Only the stale: the reply says so with nothing taken; the queue empties and nil follows. A stale
 * job of a user who then has nothing left leaves it its tag (it was never served). */
static void stale_only_and_frontend_absent(void **state)
{
    char id[64];
    enqueue_dl("s1", "A", NOW_MS - 10, NULL);
    batch_t *b = pop_batch(NOW_MS, 16);
    assert_false(b->nil);
    assert_int_equal(b->n_taken, 0);
    assert_int_equal(b->n_stale, 1);
    assert_string_equal(b->stale_id[0], "s1");
    assert_string_equal(b->stale_fe[0], "");
    assert_waiting(0);
    assert_int_equal(cmd_int("HLEN %s", "lv:q:last"), 0); /* tag 0 = the virtual time: nothing owed */
    assert_false(pop(id, sizeof(id), NULL, 0));
}

/* No deadline given (an older enqueue) = never stale here; the deadline itself is not past it. */
static void deadline_absent_never_stale(void **state)
{
    char id[64];
    enqueue("old", "A", 1);
    enqueue_dl("edge", "B", NOW_MS, "fe");
    batch_t *b = pop_batch(NOW_MS, 8);
    assert_int_equal(b->n_stale, 0);
    assert_int_equal(b->n_taken, 2);
    assert_waiting(0);
    /* a retried enqueue without a deadline drops the one it had */
    enqueue_dl("j", "A", 1, "fe");
    enqueue("j", "A", 1);
    assert_true(pop(id, sizeof(id), NULL, 0));
    assert_string_equal(id, "j");
}

/* A newer picture brings its own deadline (the frontend id stays); a replace without one drops the
 * old deadline rather than let it drop the newer picture; cancel takes the entry with the job. */
static void replace_and_cancel_deadline(void **state)
{
    enqueue_dl("j1", "A", NOW_MS - 1, "fe1");
    const char *argv[] = {"j1", "newer", "1800000000000"};
    reply_t rep = eval(g.cq.replace, 3, argv);
    assert_int_equal(rep.integer, 1);
    reply_t dl = cmd("HGET lv:q:dl %s", "j1");
    assert_string_equal(dl.str, "1800000000000 fe1");
    enqueue_dl("j2", "B", NOW_MS - 1, "fe2");
    assert_int_equal(script_int(g.cq.replace, "j2", "newer too"), 1);
    assert_int_equal(cmd_int("HEXISTS lv:q:dl %s", "j2"), 0);
    enqueue_dl("j3", "C", NOW_MS - 1, "fe3");
    assert_int_equal(script_int(g.cq.cancel, "j3", "C"), 1);
    assert_int_equal(cmd_int("HLEN %s", "lv:q:dl"), 1); /* j1's only */
    const char *bad[] = {"j1", "x", "soon"};
    rep = eval(g.cq.replace, 3, bad);
    assert_int_equal(rep.type, REDIS_REPLY_ERROR);
    batch_t *b = pop_batch(NOW_MS, 8);
    assert_int_equal(b->n_stale, 0);
    assert_int_equal(b->n_taken, 2);
    assert_waiting(0);
}

/* max bounds the jobs taken; 64 stale in one call at most (the rest in the next); bad max or now
 * refused before any write. */
static void pop_bounds(void **state)
{
    char id[64];
    for (int i = 0; i < 40; i++) {
        snprintf(id, sizeof(id), "a%d", i);
        enqueue(id, "A", 1);
    }
    const char *bad[][2] = {{"1", "0"}, {"1", "33"}, {"1", "2.5"}, {"soon", "4"}, {"1", "many"}};
    for (size_t i = 0; i < LV_ARRAY_LEN(bad); i++)
        assert_true(pop_raw(bad[i][0], bad[i][1])->error);
    assert_waiting(40);
    assert_int_equal(pop_batch(NOW_MS, 32)->n_taken, 32);
    assert_int_equal(pop_batch(NOW_MS, 1)->n_taken, 1);
    assert_int_equal(pop_batch(NOW_MS, 32)->n_taken, 7);
    assert_true(pop_batch(NOW_MS, 32)->nil);
    for (int i = 0; i < 70; i++) {
        snprintf(id, sizeof(id), "s%02d", i);
        enqueue_dl(id, "S", NOW_MS - 1, "fe");
    }
    enqueue_dl("fresh", "S", NOW_MS + 1, "fe");
    batch_t *b = pop_batch(NOW_MS, 4);
    assert_int_equal(b->n_stale, 64);
    assert_int_equal(b->n_taken, 0);
    assert_string_equal(b->stale_id[63], "s63");
    assert_waiting(7);
    b = pop_batch(NOW_MS, 4);
    assert_int_equal(b->n_stale, 6);
    assert_int_equal(b->n_taken, 1);
    assert_string_equal(b->id[0], "fresh");
    long long st[3];
    stats(st);
    assert_int_equal(st[2], 70);
    assert_waiting(0);
}


/* ---------- tenants ---------- */

static long long enqueue_t(const char *id, const char *user, int weight, const char *tenant, int tweight)
{
    char w[16], tw[16], body[80];
    snprintf(w, sizeof(w), "%d", weight);
    snprintf(tw, sizeof(tw), "%d", tweight);
    snprintf(body, sizeof(body), "%s", id);
    const char *argv[] = {id, user, w, body, "1000", "9999999999999", "fe1", tenant, tw};
    reply_t rep = eval(g.cq.enqueue, 9, argv);
    assert_int_equal(rep.type, REDIS_REPLY_INTEGER);
    return rep.integer;
}

/* job ids are "<tenant index>.<user index>.<n>" */
static void parse_job(const char *id, int *t, int *u)
{
    assert_int_equal(sscanf(id, "%d.%d.", t, u), 2);
}

/* Tenants of weight 1, 2, 4 with 1, 10 and 100 users, all backlogged: 700 pops give 100, 200 and
 * 400 within 2 %, and the users within each tenant equal shares. */
static void tenants_by_weight_cq(void **state)
{
    static const int users[3] = {1, 10, 100}, jobs_each[3] = {150, 30, 6}, tw[3] = {1, 2, 4};
    char id[64], user[32], tenant[16];
    for (int t = 0; t < 3; t++)
        for (int j = 0; j < jobs_each[t]; j++) /* interleaved: arrival order must not matter */
            for (int u = 0; u < users[t]; u++) {
                snprintf(id, sizeof(id), "%d.%d.%d", t, u, j);
                snprintf(user, sizeof(user), "u:%d-%d", t, u);
                snprintf(tenant, sizeof(tenant), "t%d", t);
                assert_int_equal(enqueue_t(id, user, 1, tenant, tw[t]), 1);
            }
    long per_tenant[3] = {0}, per_user[3][100];
    memset(per_user, 0, sizeof(per_user));
    batch_t *b;
    for (int popped = 0; popped < 700;) {
        b = pop_batch(NOW_MS, 20);
        assert_int_equal(b->n_taken, 20);
        for (size_t i = 0; i < b->n_taken; i++) {
            int t, u;
            parse_job(b->id[i], &t, &u);
            per_tenant[t]++;
            per_user[t][u]++;
        }
        popped += 20;
    }
    for (int t = 0; t < 3; t++) {
        double x[100];
        for (int u = 0; u < users[t]; u++)
            x[u] = (double)per_user[t][u];
        double ratio = (double)per_tenant[t] / (100.0 * tw[t]);
        print_message("tenant %d weight %d, %d users: %ld jobs (%.4f of its weight's share), users' Jain %.4f\n", t,
                      tw[t], users[t], per_tenant[t], ratio, lv_jain(x, (size_t)users[t]));
        assert_true(ratio > 0.98 && ratio < 1.02);
        assert_true(lv_jain(x, (size_t)users[t]) > 0.98);
    }
}

/* Users by weight within a tenant (1:3), beside another tenant that still gets half. */
static void users_by_weight_in_tenant_cq(void **state)
{
    char id[64];
    for (int i = 0; i < 60; i++) {
        snprintf(id, sizeof(id), "0.0.%d", i);
        enqueue_t(id, "u:a", 1, "acme", 1);
        snprintf(id, sizeof(id), "0.1.%d", i);
        enqueue_t(id, "u:b", 3, "acme", 1);
        snprintf(id, sizeof(id), "1.0.%d", i);
        enqueue_t(id, "u:c", 1, "other", 1);
    }
    long n[2][2] = {{0}};
    for (int i = 0; i < 80; i++) {
        int t, u;
        assert_true(pop(id, sizeof(id), NULL, 0));
        parse_job(id, &t, &u);
        n[t][u]++;
    }
    assert_in_range(n[1][0], 39, 41);
    assert_in_range(n[0][0], 9, 11);
    assert_in_range(n[0][1], 29, 31);
}

/* Within a tenant a user with 50 jobs waiting and one who always has 1 get the same turns. */
static void many_jobs_vs_one_in_tenant_cq(void **state)
{
    char id[64];
    int next_a = 0, next_b = 0;
    for (; next_a < 50; next_a++) {
        snprintf(id, sizeof(id), "0.0.%d", next_a);
        enqueue_t(id, "u:many", 1, "acme", 1);
    }
    snprintf(id, sizeof(id), "0.1.%d", next_b++);
    enqueue_t(id, "u:one", 1, "acme", 1);
    long n[2] = {0};
    for (int i = 0; i < 200; i++) {
        int t, u;
        assert_true(pop(id, sizeof(id), NULL, 0));
        parse_job(id, &t, &u);
        n[u]++;
        /* each refills what was taken: 50 waiting for one, 1 for the other */
        if (u == 0)
            snprintf(id, sizeof(id), "0.0.%d", next_a++);
        else
            snprintf(id, sizeof(id), "0.1.%d", next_b++);
        enqueue_t(id, u == 0 ? "u:many" : "u:one", 1, "acme", 1);
    }
    assert_in_range(n[0], 99, 101);
    assert_in_range(n[1], 99, 101);
}

/* A tenant with nothing waiting costs nothing (the others split every pop 1:2), and when it comes
 * back it gets its share from then on, with no credit for the time it sat out. */
static void idle_tenant_cq(void **state)
{
    char id[64];
    for (int i = 0; i < 200; i++) {
        snprintf(id, sizeof(id), "1.0.%d", i);
        enqueue_t(id, "u:b", 1, "tb", 1);
        snprintf(id, sizeof(id), "2.0.%d", i);
        enqueue_t(id, "u:c", 1, "tc", 2);
    }
    long n[3] = {0};
    for (int i = 0; i < 90; i++) {
        int t, u;
        assert_true(pop(id, sizeof(id), NULL, 0));
        parse_job(id, &t, &u);
        n[t]++;
    }
    assert_in_range(n[1], 29, 31);
    assert_in_range(n[2], 59, 61);
    for (int i = 0; i < 100; i++) {
        snprintf(id, sizeof(id), "0.0.%d", i);
        enqueue_t(id, "u:a", 1, "ta", 1);
    }
    memset(n, 0, sizeof(n));
    for (int i = 0; i < 40; i++) {
        int t, u;
        assert_true(pop(id, sizeof(id), NULL, 0));
        parse_job(id, &t, &u);
        n[t]++;
    }
    /* 1:1:2 from its arrival; with credit for 90 pops it would take the next 40 alone */
    assert_in_range(n[0], 9, 11);
    assert_in_range(n[1], 9, 11);
    assert_in_range(n[2], 19, 21);
}

/* An enqueue without a tenant (an older frontend) is tenant "default"; a waiting user stays in the
 * tenant it joined under; a cancel empties the tenant level too; a tenant name over 64 bytes and a
 * tenant weight that is not a number are refused before any write. */
static void tenant_arguments_cq(void **state)
{
    enqueue("j1", "A", 1);
    assert_true(cmd_int("ZSCORE lv:q:ten %s", "default") == 0);
    reply_t rep = cmd("HGET lv:q:ut %s", "A");
    assert_string_equal(rep.str, "default");
    enqueue_t("j2", "A", 1, "acme", 5); /* A waits: stays in default */
    rep = cmd("HGET lv:q:ut %s", "A");
    assert_string_equal(rep.str, "default");
    assert_int_equal(script_int(g.cq.cancel, "j1", "A"), 1);
    assert_int_equal(script_int(g.cq.cancel, "j2", "A"), 1);
    assert_waiting(0);
    char long_t[80];
    memset(long_t, 'x', 65);
    long_t[65] = '\0';
    const char *bad_t[] = {"j3", "B", "1", "body", "1000", "1", "fe", long_t, "1"};
    rep = eval(g.cq.enqueue, 9, bad_t);
    assert_int_equal(rep.type, REDIS_REPLY_ERROR);
    const char *bad_tw[] = {"j3", "B", "1", "body", "1000", "1", "fe", "acme", "heavy"};
    rep = eval(g.cq.enqueue, 9, bad_tw);
    assert_int_equal(rep.type, REDIS_REPLY_ERROR);
    assert_int_equal(cmd_int("EXISTS %s", "lv:j:j3"), 0);
    enqueue_t("j4", "B", 1, "acme", 5000); /* clamped */
    rep = cmd("HGET lv:q:tw %s", "acme");
    assert_string_equal(rep.str, "1000");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(weighted_shares, flush),
        cmocka_unit_test_setup(no_credit_for_leaving, flush),
        cmocka_unit_test_setup(many_jobs_one_share, flush),
        cmocka_unit_test_setup(newcomer_does_not_wait_behind_backlog, flush),
        cmocka_unit_test_setup(replace_waiting_and_taken, flush),
        cmocka_unit_test_setup(enqueue_twice_is_one_job, flush),
        cmocka_unit_test_setup(cancel_waiting_and_taken, flush),
        cmocka_unit_test_setup(cancel_wrong_user_is_skipped, flush),
        cmocka_unit_test_setup(stats_and_stale_count, flush),
        cmocka_unit_test_setup(ready_tokens, flush),
        cmocka_unit_test_setup(bad_arguments_write_nothing, flush),
        cmocka_unit_test_setup(last_stays_small, flush),
        cmocka_unit_test_setup(batch_same_order_as_single, flush),
        cmocka_unit_test_setup(stale_head_keeps_turn, flush),
        cmocka_unit_test_setup(stale_only_and_frontend_absent, flush),
        cmocka_unit_test_setup(deadline_absent_never_stale, flush),
        cmocka_unit_test_setup(replace_and_cancel_deadline, flush),
        cmocka_unit_test_setup(pop_bounds, flush),
        cmocka_unit_test_setup(tenants_by_weight_cq, flush),
        cmocka_unit_test_setup(users_by_weight_in_tenant_cq, flush),
        cmocka_unit_test_setup(many_jobs_vs_one_in_tenant_cq, flush),
        cmocka_unit_test_setup(idle_tenant_cq, flush),
        cmocka_unit_test_setup(tenant_arguments_cq, flush),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

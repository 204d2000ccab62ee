/* test_cluster_queue.c - the cluster queue's Lua scripts (lv_cluster_queue.c) run for real: a
 * redis-server of our own (a free loopback port, a temp dir, killed at the end), the scripts
 * registered and sent through lv_redis. Weighted fairness across users, no credit for a user
 * who leaves and comes back, one share however many jobs a user queues, replace and cancel
 * before and after a pop, exact len/age/ready bookkeeping, stats, refused arguments, and
 * lv:q:last staying small. Every wait runs the loop under a deadline. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

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
    size_t lens[8];
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

static long long enqueue(const char *id, const char *user, int weight)
{
    char body[80];
    snprintf(body, sizeof(body), "body of %s", id);
    return enqueue_at(id, user, weight, body, 1000);
}

/* Pop one job: its id in id (and body in body, when given); false when nothing waits. */
static bool pop(char *id, size_t id_size, char *body, size_t body_size)
{
    reply_t rep = eval(g.cq.pop, 0, NULL);
    if (rep.type == REDIS_REPLY_NIL)
        return false;
    assert_int_equal(rep.type, REDIS_REPLY_ARRAY);
    assert_int_equal(rep.elements, 2);
    snprintf(id, id_size, "%.*s", (int)id_size - 1, rep.el[0]);
    if (body)
        snprintf(body, body_size, "%.*s", (int)body_size - 1, rep.el[1]);
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
        assert_int_equal(cmd_int("ZCARD %s", "lv:q:users"), 0);
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
    assert_int_equal(cmd_int("HLEN %s", "lv:q:last"), 200); /* each left one turn ahead */
    for (int i = 0; i < 150; i++) {
        snprintf(id, sizeof(id), "z%d", i);
        enqueue(id, "Z", 1);
    }
    while (pop(id, sizeof(id), NULL, 0))
        ;
    assert_true(cmd_int("HLEN %s", "lv:q:last") <= 1); /* Z's own, at most */
    assert_int_equal(cmd_int("HLEN %s", "lv:q:w"), 0);
    assert_waiting(0);
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
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

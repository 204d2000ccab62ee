/* test_drr_tenants.c - the fair queue's two levels: tenants by weight, users within a tenant by
 * weight, a user's sessions round-robin; work conservation, the share bound per tenant and per
 * user, weights cleared and set again, queue positions across tenants. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "jain.h"
#include "lv_common.h"
#include "lv_drr.h"

#define MAX_SESS 2048
#define MAX_USERS 256
#define MAX_TENANTS 4

static uint64_t rng_state;
static uint64_t rng_next(void) /* xorshift64*: fixed seeds make every run the same */
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dULL;
}

typedef struct {
    lv_drr_node_t node;
    int tenant, user;
    uint64_t busy_until; /* sim: in flight until then; 0 = idle */
    long served;
} sess_t;

/* A population of tenants, users and sessions, all backlogged, and a simulated backend. */
typedef struct {
    lv_drr_t d;
    sess_t sess[MAX_SESS];
    int n_sess;
    int n_users;
    int user_tenant[MAX_USERS];
    int user_weight[MAX_USERS];
    int tenant_weight[MAX_TENANTS];
    int n_tenants;
    long user_served[MAX_USERS];
    long tenant_served[MAX_TENANTS];
    /* the backend: slots free now; job tracking on when slots > 0 */
    int slots, free_slots;
    uint64_t now;
    double tenant_slot_time[MAX_TENANTS]; /* integral of slots held (share bound checks) */
    int tenant_inflight[MAX_TENANTS];
} pop_t;

static void tenant_key(char *out, size_t size, int t)
{
    snprintf(out, size, "tenant-%c", 'a' + t);
}

static void user_key(char *out, size_t size, int u)
{
    snprintf(out, size, "u:%d", u);
}

static void pop_enqueue(pop_t *p, sess_t *s)
{
    char tk[16], uk[16];
    tenant_key(tk, sizeof(tk), s->tenant);
    user_key(uk, sizeof(uk), s->user);
    assert_int_equal(lv_drr_enqueue_tenant(&p->d, &s->node, tk, uk, p->now), 0);
}

/* users[t] users in tenant t, user i of a tenant gets sessions_of(i) sessions. */
static void pop_init(pop_t *p, int n_tenants, const int *tweights, const int *users, int (*sessions_of)(int))
{
    memset(p, 0, sizeof(*p));
    assert_int_equal(lv_drr_init(&p->d, 1), 0);
    p->n_tenants = n_tenants;
    for (int t = 0; t < n_tenants; t++) {
        char tk[16];
        tenant_key(tk, sizeof(tk), t);
        p->tenant_weight[t] = tweights[t];
        assert_int_equal(lv_drr_set_tenant_weight(&p->d, tk, tweights[t]), 0);
        for (int i = 0; i < users[t]; i++) {
            int u = p->n_users++;
            assert_true(u < MAX_USERS);
            p->user_tenant[u] = t;
            p->user_weight[u] = 1;
            for (int k = 0; k < sessions_of(i); k++) {
                assert_true(p->n_sess < MAX_SESS);
                sess_t *s = &p->sess[p->n_sess++];
                s->tenant = t;
                s->user = u;
            }
        }
    }
}

static lv_drr_verdict_t take_any(lv_drr_node_t *n, void *ud)
{
    pop_t *p = ud;
    sess_t *s = LV_CONTAINER_OF(n, sess_t, node);
    if (p->slots) {
        if (p->free_slots == 0)
            return LV_DRR_STOP;
        p->free_slots--;
        p->tenant_inflight[s->tenant]++;
        s->busy_until = p->now + 1 + rng_next() % 20; /* service time 1..20 ticks */
    }
    s->served++;
    p->user_served[s->user]++;
    p->tenant_served[s->tenant]++;
    return LV_DRR_DISPATCHED;
}

/* Without a backend: every session re-queues at once after its dispatch (always backlogged). */
static void pop_run_unbounded(pop_t *p, long dispatches)
{
    for (int i = 0; i < p->n_sess; i++)
        pop_enqueue(p, &p->sess[i]);
    for (long done = 0; done < dispatches;) {
        size_t got = lv_drr_run(&p->d, 1, p->now, take_any, NULL, p);
        assert_int_equal(got, 1);
        done++;
        for (int i = 0; i < p->n_sess; i++)
            if (!lv_drr_node_queued(&p->sess[i].node))
                pop_enqueue(p, &p->sess[i]);
    }
    assert_int_equal(lv_drr_check(&p->d), 0);
}

/* With a backend of p->slots slots and job tracking: ticks of time, jobs end, sessions re-queue. */
static void pop_run_slots(pop_t *p, int slots, long ticks)
{
    if (!p->slots) { /* the first period; later ones go on with the jobs in flight */
        p->slots = slots;
        p->free_slots = slots;
    }
    lv_drr_track_jobs(&p->d);
    lv_drr_set_capacity(&p->d, (size_t)slots);
    for (long tick = 0; tick < ticks; tick++) {
        p->now++;
        for (int i = 0; i < p->n_sess; i++) {
            sess_t *s = &p->sess[i];
            if (s->busy_until && s->busy_until <= p->now) {
                char uk[16];
                user_key(uk, sizeof(uk), s->user);
                assert_int_equal(lv_drr_job_done(&p->d, uk, p->now, 0), 0);
                s->busy_until = 0;
                p->free_slots++;
                p->tenant_inflight[s->tenant]--;
            }
            if (!s->busy_until && !lv_drr_node_queued(&s->node))
                pop_enqueue(p, s);
        }
        lv_drr_run(&p->d, (size_t)slots, p->now, take_any, NULL, p);
        for (int t = 0; t < p->n_tenants; t++)
            p->tenant_slot_time[t] += p->tenant_inflight[t];
    }
    assert_int_equal(lv_drr_check(&p->d), 0);
}

static int one_session(int i)
{
    (void)i;
    return 1;
}

static int eight_sessions(int i)
{
    (void)i;
    return 8;
}

static int twenty_sessions(int i)
{
    (void)i;
    return 20;
}

static int varied_sessions(int i)
{
    return 1 + (i * 7) % 5; /* 1..5 */
}

/* Jain's index of the users of tenant t, service over weight. */
static double tenant_users_jain(const pop_t *p, int t)
{
    double x[MAX_USERS];
    size_t n = 0;
    for (int u = 0; u < p->n_users; u++)
        if (p->user_tenant[u] == t)
            x[n++] = (double)p->user_served[u] / p->user_weight[u];
    return lv_jain(x, n);
}

/* ---------- tests ---------- */

/* Tenants weighted 1:2:4 with 1, 10 and 100 users (1..5 sessions each): dispatches follow the
 * tenants' weights within 2 %, whatever their user and session counts; users within each tenant
 * get equal shares. */
static void tenants_by_weight(void **state)
{
    (void)state;
    static pop_t p;
    rng_state = 7;
    const int w[] = {1, 2, 4}, users[] = {1, 10, 100};
    pop_init(&p, 3, w, users, varied_sessions);
    pop_run_unbounded(&p, 70000);
    double x[3];
    for (int t = 0; t < 3; t++) {
        double ratio = (double)p.tenant_served[t] / (double)p.tenant_served[0] / w[t];
        print_message("tenant %c weight %d, %d users: %ld dispatches (ratio to weight %.4f), users' Jain %.5f\n",
                      'a' + t, w[t], users[t], p.tenant_served[t], ratio, tenant_users_jain(&p, t));
        assert_true(ratio > 0.98 && ratio < 1.02);
        assert_true(tenant_users_jain(&p, t) > 0.99);
        x[t] = (double)p.tenant_served[t] / w[t];
    }
    assert_true(lv_jain(x, 3) > 0.999);
    lv_drr_free(&p.d);
}

/* Users of one tenant share its turns by their weights; another tenant is not affected. */
static void users_by_weight_within_tenant(void **state)
{
    (void)state;
    static pop_t p;
    const int w[] = {1, 1}, users[] = {3, 1};
    pop_init(&p, 2, w, users, eight_sessions); /* a turn of w jobs needs w queued */
    assert_int_equal(lv_drr_set_weight(&p.d, "u:1", 2), 0);
    assert_int_equal(lv_drr_set_weight(&p.d, "u:2", 4), 0);
    p.user_weight[1] = 2;
    p.user_weight[2] = 4;
    pop_run_unbounded(&p, 14000);
    print_message("tenant a users 1:2:4 -> %ld:%ld:%ld, tenant b %ld\n", p.user_served[0], p.user_served[1],
                  p.user_served[2], p.tenant_served[1]);
    assert_int_equal(p.tenant_served[0], 7000);
    assert_int_equal(p.tenant_served[1], 7000);
    assert_int_equal(p.user_served[0], 1000);
    assert_int_equal(p.user_served[1], 2000);
    assert_int_equal(p.user_served[2], 4000);
    lv_drr_free(&p.d);
}

static int fifty_then_one(int i)
{
    return i == 0 ? 50 : 1;
}

/* A user with 50 sessions and one with 1 in the same tenant get equal shares; the 50 sessions
 * share their user's equally. */
static void sessions_do_not_buy_share(void **state)
{
    (void)state;
    static pop_t p;
    const int w[] = {1}, users[] = {2};
    pop_init(&p, 1, w, users, fifty_then_one);
    pop_run_unbounded(&p, 10000);
    assert_int_equal(p.user_served[0], 5000);
    assert_int_equal(p.user_served[1], 5000);
    for (int i = 0; i < 50; i++)
        assert_int_equal(p.sess[i].served, 100);
    lv_drr_free(&p.d);
}

/* A tenant with nothing queued costs nobody anything: the backend stays full and the others split
 * it by their weights; when it comes back it gets its share at once. */
static void idle_tenant_work_conserving(void **state)
{
    (void)state;
    static pop_t p;
    rng_state = 11;
    const int w[] = {4, 1, 2}, users[] = {1, 3, 5};
    pop_init(&p, 3, w, users, one_session);
    p.sess[0].busy_until = UINT64_MAX; /* tenant a's only session never asks (idle tenant) */
    lv_drr_node_init(&p.sess[0].node);
    int n_sess = p.n_sess;
    /* unbounded: a's session is left out of the population by moving it past n_sess */
    p.sess[0] = p.sess[n_sess - 1];
    p.n_sess = n_sess - 1;
    pop_run_unbounded(&p, 6000);
    assert_int_equal(p.tenant_served[0], 0);
    assert_int_equal(p.tenant_served[1], 2000);
    assert_int_equal(p.tenant_served[2], 4000);
    lv_drr_free(&p.d);

    /* with slots: the backend never idles while work waits, and a tenant that comes back gets
     * its weight's share (4/7 of the slots) */
    pop_init(&p, 3, w, users, twenty_sessions);
    for (int i = 0; i < 20; i++) /* tenant a's sessions (the first 20) ask nothing yet */
        p.sess[i].busy_until = UINT64_MAX;
    pop_run_slots(&p, 14, 2000);
    assert_int_equal(p.tenant_served[0], 0);
    assert_true(p.tenant_slot_time[1] + p.tenant_slot_time[2] >= 14.0 * 1990);
    for (int i = 0; i < 20; i++)
        p.sess[i].busy_until = 0;
    memset(p.tenant_slot_time, 0, sizeof(p.tenant_slot_time));
    pop_run_slots(&p, 14, 4000);
    double total = p.tenant_slot_time[0] + p.tenant_slot_time[1] + p.tenant_slot_time[2];
    print_message("slots held after a returns: %.3f / %.3f / %.3f (weights 4:1:2)\n", p.tenant_slot_time[0] / total,
                  p.tenant_slot_time[1] / total, p.tenant_slot_time[2] / total);
    assert_true(p.tenant_slot_time[0] / total > 4.0 / 7 - 0.03);
    assert_true(p.tenant_slot_time[1] / total > 1.0 / 7 - 0.03);
    assert_true(p.tenant_slot_time[2] / total > 2.0 / 7 - 0.03);
    assert_true(total >= 14.0 * 3990);
    lv_drr_free(&p.d);
}

/* The share bound at the tenant level: tenant a (1 user, 20 sessions) and tenant b (100 users of one
 * session, each entitled to at least one slot) share 10 slots equally: b's users are held back
 * while a is below its share, though each of them is below its own. */
static void share_bound_per_tenant(void **state)
{
    (void)state;
    static pop_t p;
    rng_state = 5;
    const int w[] = {1, 1}, users_a[] = {1, 0};
    pop_init(&p, 1, w, users_a, twenty_sessions);
    /* add tenant b by hand: 100 users of one session */
    p.n_tenants = 2;
    p.tenant_weight[1] = 1;
    for (int i = 0; i < 100; i++) {
        int u = p.n_users++;
        p.user_tenant[u] = 1;
        p.user_weight[u] = 1;
        sess_t *s = &p.sess[p.n_sess++];
        s->tenant = 1;
        s->user = u;
    }
    pop_run_slots(&p, 10, 5000);
    double total = p.tenant_slot_time[0] + p.tenant_slot_time[1];
    print_message("10 slots, tenants 1 user vs 100 users: held %.3f / %.3f, Jain of b's users %.4f\n",
                  p.tenant_slot_time[0] / total, p.tenant_slot_time[1] / total, tenant_users_jain(&p, 1));
    assert_true(p.tenant_slot_time[0] / total > 0.48 && p.tenant_slot_time[0] / total < 0.52);
    assert_true(tenant_users_jain(&p, 1) > 0.95);
    assert_int_equal(lv_drr_tenant_inflight(&p.d, "tenant-a") + lv_drr_tenant_inflight(&p.d, "tenant-b"),
                     10 - p.free_slots);
    /* a's user is over nothing at 5 of 10 with b competing; b's users each entitled to 1 */
    assert_int_equal(lv_drr_share(&p.d, "u:0"), 5);
    assert_int_equal(lv_drr_share(&p.d, "u:1"), 1);
    lv_drr_free(&p.d);
}

/* The share bound at the user level, inside a tenant of weight 3 beside one of weight 1 (12 slots:
 * 9 and 3): user weights 1:2 within it hold 3 and 6. */
static void share_bound_per_user(void **state)
{
    (void)state;
    static pop_t p;
    rng_state = 9;
    const int w[] = {3, 1}, users[] = {2, 1};
    pop_init(&p, 2, w, users, twenty_sessions);
    assert_int_equal(lv_drr_set_weight(&p.d, "u:1", 2), 0);
    p.user_weight[1] = 2;
    pop_run_slots(&p, 12, 5000);
    double total = p.tenant_slot_time[0] + p.tenant_slot_time[1];
    assert_true(p.tenant_slot_time[0] / total > 0.73 && p.tenant_slot_time[0] / total < 0.77);
    assert_int_equal(lv_drr_share(&p.d, "u:0"), 3);
    assert_int_equal(lv_drr_share(&p.d, "u:1"), 6);
    assert_int_equal(lv_drr_share(&p.d, "u:2"), 3);
    assert_true(lv_drr_user_inflight(&p.d, "u:0") <= 3 + 1);
    assert_true(lv_drr_user_inflight(&p.d, "u:1") <= 6 + 1);
    print_message("user weights 1:2 in a tenant of 9 slots: served %ld:%ld\n", p.user_served[0], p.user_served[1]);
    double r = (double)p.user_served[1] / (double)p.user_served[0];
    assert_true(r > 1.9 && r < 2.1);
    lv_drr_free(&p.d);
}

/* Weights: tenant and user tables apart, cleared together; a node knows its tenant; a user stays
 * in its first tenant while known; bad keys refused. */
static void weights_and_keys(void **state)
{
    (void)state;
    lv_drr_t d;
    lv_drr_node_t a, b, c;
    lv_drr_node_init(&a);
    lv_drr_node_init(&b);
    lv_drr_node_init(&c);
    assert_int_equal(lv_drr_init(&d, 1), 0);
    assert_int_equal(lv_drr_set_tenant_weight(&d, "acme", 3), 0);
    assert_int_equal(lv_drr_set_tenant_weight(&d, "acme", 0), LV_EINVAL);
    assert_int_equal(lv_drr_set_tenant_weight(&d, "", 2), LV_EINVAL);
    assert_int_equal(lv_drr_set_weight(&d, "u:1", 5), 0);
    assert_int_equal(lv_drr_tenant_weight(&d, "acme"), 3);
    assert_int_equal(lv_drr_weight(&d, "acme"), 1); /* tables apart */
    assert_int_equal(lv_drr_enqueue_tenant(&d, &a, "", "u:1", 0), LV_EINVAL);
    assert_int_equal(lv_drr_enqueue_tenant(&d, &a, "acme", "u:1", 0), 0);
    assert_int_equal(lv_drr_enqueue_tenant(&d, &b, "other", "u:1", 0), 0); /* stays in acme */
    assert_string_equal(lv_drr_node_tenant(&b), "acme");
    assert_int_equal(lv_drr_enqueue(&d, &c, "10.0.0.1", 0), 0);
    assert_string_equal(lv_drr_node_tenant(&c), LV_DRR_TENANT_DEFAULT);
    assert_int_equal(lv_drr_tenants_active(&d), 2);
    assert_int_equal(lv_drr_check(&d), 0);
    assert_int_equal(lv_drr_clear_weights(&d), 0);
    assert_int_equal(lv_drr_tenant_weight(&d, "acme"), 1);
    assert_int_equal(lv_drr_weight(&d, "u:1"), 1);
    assert_int_equal(lv_drr_check(&d), 0);
    assert_int_equal(lv_drr_set_tenant_weight(&d, "acme", 2), 0); /* a known tenant reweighed */
    assert_int_equal(lv_drr_check(&d), 0);
    lv_drr_remove(&d, &a);
    lv_drr_remove(&d, &b);
    assert_null(lv_drr_node_tenant(&a));
    /* forgotten: now it goes where it is sent */
    assert_int_equal(lv_drr_enqueue_tenant(&d, &a, "other", "u:1", 0), 0);
    assert_string_equal(lv_drr_node_tenant(&a), "other");
    assert_int_equal(lv_drr_check(&d), 0);
    lv_drr_free(&d);
}

static lv_drr_verdict_t take_record(lv_drr_node_t *n, void *ud)
{
    lv_drr_node_t ***out = ud;
    *(*out)++ = n;
    return LV_DRR_DISPATCHED;
}

/* Queue positions are exact across tenants when every offer is dispatched. */
static void positions_across_tenants(void **state)
{
    (void)state;
    lv_drr_t d;
    assert_int_equal(lv_drr_init(&d, 1), 0);
    assert_int_equal(lv_drr_set_tenant_weight(&d, "t2", 2), 0);
    assert_int_equal(lv_drr_set_weight(&d, "y", 3), 0);
    enum { N = 24 };
    lv_drr_node_t n[N];
    const char *tenant[] = {"t1", "t2", "t2", "t3"};
    const char *user[] = {"x", "y", "z", "w"};
    for (int i = 0; i < N; i++) {
        lv_drr_node_init(&n[i]);
        int k = (i * 5) % 4;
        assert_int_equal(lv_drr_enqueue_tenant(&d, &n[i], tenant[k], user[k], 0), 0);
    }
    /* a little history: turns in progress */
    lv_drr_node_t *order[N], **w = order;
    assert_int_equal(lv_drr_run(&d, 3, 0, take_record, NULL, &w), 3);
    size_t expect[N];
    for (int i = 0; i < N; i++)
        expect[i] = lv_drr_position(&d, &n[i]);
    w = order;
    assert_int_equal(lv_drr_run(&d, N, 0, take_record, NULL, &w), N - 3);
    for (int i = 0; i < N - 3; i++)
        assert_int_equal(expect[order[i] - n], (size_t)i);
    lv_drr_free(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tenants_by_weight),
        cmocka_unit_test(users_by_weight_within_tenant),
        cmocka_unit_test(sessions_do_not_buy_share),
        cmocka_unit_test(idle_tenant_work_conserving),
        cmocka_unit_test(share_bound_per_tenant),
        cmocka_unit_test(share_bound_per_user),
        cmocka_unit_test(weights_and_keys),
        cmocka_unit_test(positions_across_tenants),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

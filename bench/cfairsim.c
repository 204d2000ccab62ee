/* cfairsim.c - the cluster queue's two-level fairness (src/store/lv_cluster_queue.c, Lua in a real
 * redis-server started the way the unit tests do: tests/unit/redis_fixture.h) under simulated
 * workers: W workers of S slots each, random service times, the population of bench/fairsim.c
 * (tenants of weights 1, 2 and 4 with 1, 10 and 100 users of 1..8 sessions; the same seed draws the
 * same sessions), every session always backlogged: a session enqueues its next job (one at a time,
 * as a frontend does) the moment its last one ends. Time is simulated (a tick is a millisecond of
 * the scripts' wall clock); Redis and the scripts are real. One round trip per event: the enqueues
 * of the jobs that ended, then one pop per worker with free slots for exactly its free slots, all
 * pipelined on lv_redis's command connection (answered in order). Prints Jain's index of
 * weight-normalised service (slot time) among tenants, among the users of each tenant and among
 * the sessions of each user (the lowest), the same figures over jobs taken, and jobs taken per
 * wall second. A pop that takes fewer jobs than asked while sessions wait is an error (exit 1).
 * Exits 3 when the time limit stopped it first (the figures then cover the jobs taken), 2 on bad usage.
 * Usage: cfairsim [pops] [workers] [slots per worker] [seed] [time limit s]
 *        (defaults 20000 pops, 4 workers of 8 slots, seed 1, 30 s) */
#include <inttypes.h>
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

#define N_TENANTS 3
#define MAX_USERS 111
#define MAX_SESS 1000
#define MAX_WORKERS 64
#define REPLY_MS 5000                  /* a round trip that takes longer is a failure */
#define T0_MS 1700000000000LL          /* the simulated wall clock's origin */
#define DEADLINE_MS (T0_MS + 1000000000LL) /* every job's deadline: far past any run, never stale */

static const int TENANT_WEIGHT[N_TENANTS] = {1, 2, 4};
static const int TENANT_USERS[N_TENANTS] = {1, 10, 100};

typedef struct {
    int tenant, user;
    int worker;          /* the worker running its job, -1 while the job waits in Redis */
    uint64_t busy_until; /* tick its running job ends */
    double service;      /* slot ticks received (counted at the pop) */
    long jobs;           /* jobs taken */
} sess_t;

static struct {
    rfx_server_t srv;
    uv_loop_t loop;
    rfx_deadline_t deadline;
    lv_redis_t *r;
    lv_cq_scripts_t cq;
    bool up;
    sess_t sess[MAX_SESS];
    int n_sess, n_users;
    int user_tenant[MAX_USERS];
    int n_workers, slots;
    int free_slots[MAX_WORKERS];
    int asked[MAX_WORKERS]; /* jobs the worker's pop in flight asked for */
    uint64_t now, rng, seq;
    long taken, pop_calls, short_pops, waiting;
    int replies_due; /* replies of this round trip not yet in */
    const char *error; /* the first failure, a static sentence */
} g;

static uint64_t rng_next(void) /* xorshift64*: a fixed seed makes a run repeatable (fairsim's) */
{
    g.rng ^= g.rng >> 12;
    g.rng ^= g.rng << 25;
    g.rng ^= g.rng >> 27;
    return g.rng * 0x2545f4914f6cdd1dULL;
}

static void fail(const char *why)
{
    if (!g.error)
        g.error = why;
}

static void on_state(void *ud, bool up)
{
    (void)ud;
    g.up = up;
}

static bool replies_in(void *arg)
{
    (void)arg;
    return g.replies_due == 0 || g.error;
}

static void on_enqueue(void *ud, const redisReply *r, const char *err)
{
    (void)ud;
    g.replies_due--;
    if (!r || r->type != REDIS_REPLY_INTEGER || r->integer != 1)
        fail(err ? err : "an enqueue was not queued (reply not 1)");
}

/* The job ids are "<session>-<seq>": the session is read back from the id. */
static void on_pop(void *ud, const redisReply *r, const char *err)
{
    int w = (int)(intptr_t)ud;
    g.replies_due--;
    g.pop_calls++;
    int asked = g.asked[w];
    if (!r || r->type == REDIS_REPLY_ERROR) {
        fail(err ? err : "the pop script answered an error");
        return;
    }
    const redisReply *taken = NULL;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 && r->element[0]->type == REDIS_REPLY_ARRAY &&
        r->element[1]->type == REDIS_REPLY_ARRAY && r->element[1]->elements == 0)
        taken = r->element[0];
    else if (r->type != REDIS_REPLY_NIL) {
        fail("a pop reply is not {taken, stale} with no stale job");
        return;
    }
    size_t n = taken ? taken->elements / 2 : 0;
    if ((int)n > asked) {
        fail("a pop took more jobs than asked");
        return;
    }
    if ((int)n < asked && g.waiting > (long)n)
        g.short_pops++;
    for (size_t i = 0; i < n; i++) {
        const redisReply *id = taken->element[2 * i];
        char buf[32];
        if (id->type != REDIS_REPLY_STRING || id->len >= sizeof(buf)) {
            fail("a taken job id is not a short string");
            return;
        }
        memcpy(buf, id->str, id->len);
        buf[id->len] = '\0';
        char *end;
        long s = strtol(buf, &end, 10);
        if (end == buf || *end != '-' || s < 0 || s >= g.n_sess || g.sess[s].worker >= 0) {
            fail("a taken job names no waiting session");
            return;
        }
        sess_t *ss = &g.sess[s];
        uint64_t service = 5 + rng_next() % 46; /* 5..50 ticks, mean 27.5, as fairsim */
        ss->worker = w;
        ss->busy_until = g.now + service;
        ss->service += (double)service;
        ss->jobs++;
        g.free_slots[w]--;
        g.waiting--;
        g.taken++;
    }
}

static void enqueue(int s)
{
    sess_t *ss = &g.sess[s];
    char id[32], user[16], tenant[16], tw[8], enq[24], dl[24];
    snprintf(id, sizeof(id), "%d-%" PRIu64, s, g.seq++);
    snprintf(user, sizeof(user), "u%d", ss->user);
    snprintf(tenant, sizeof(tenant), "tenant-%c", 'a' + ss->tenant);
    snprintf(tw, sizeof(tw), "%d", TENANT_WEIGHT[ss->tenant]);
    snprintf(enq, sizeof(enq), "%lld", T0_MS + (long long)g.now);
    snprintf(dl, sizeof(dl), "%lld", DEADLINE_MS);
    /* id, user, user weight, body, enqueue ms, deadline ms, frontend, tenant, tenant weight */
    const char *argv[] = {id, user, "1", "frame", enq, dl, "", tenant, tw};
    size_t lens[9];
    for (int i = 0; i < 9; i++)
        lens[i] = strlen(argv[i]);
    ss->worker = -1;
    if (lv_redis_eval(g.r, g.cq.enqueue, on_enqueue, NULL, 0, 9, argv, lens) != 0) {
        fail("lv_redis_eval refused an enqueue");
        return;
    }
    g.replies_due++;
    g.waiting++;
}

/* Pop for worker w: at most max jobs (1..its free slots). */
static void pop(int w, int max_jobs)
{
    char now[24], max[8];
    g.asked[w] = max_jobs < LV_CQ_POP_MAX ? max_jobs : LV_CQ_POP_MAX;
    snprintf(now, sizeof(now), "%lld", T0_MS + (long long)g.now);
    snprintf(max, sizeof(max), "%d", g.asked[w]);
    const char *argv[] = {now, max};
    size_t lens[] = {strlen(now), strlen(max)};
    if (lv_redis_eval(g.r, g.cq.pop, on_pop, (void *)(intptr_t)w, 0, 2, argv, lens) != 0) {
        fail("lv_redis_eval refused a pop");
        return;
    }
    g.replies_due++;
}

/* Send what is queued and wait for every reply, REPLY_MS at most. */
static void round_trip(void)
{
    if (g.replies_due && !rfx_run_until(&g.deadline, replies_in, NULL, REPLY_MS))
        fail("no reply from Redis within 5 s");
}

/* [len, oldest, stale] from the stats script: len must equal the sessions whose job waits. */
static long long waiting_in_redis = -1;
static void on_stats(void *ud, const redisReply *r, const char *err)
{
    (void)ud;
    g.replies_due--;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 3 && r->element[0]->type == REDIS_REPLY_INTEGER)
        waiting_in_redis = r->element[0]->integer;
    else
        fail(err ? err : "the stats script answered no [len, oldest, stale]");
}

/* Redis's own time in the scripts (INFO commandstats, EVALSHA: enqueues and pops together), which
 * the wall rate above also holds the client's and the loopback's share of. */
static double evalsha_usec_per_call = -1;
static long long evalsha_calls;
static void on_info(void *ud, const redisReply *r, const char *err)
{
    (void)ud;
    g.replies_due--;
    const char *p = r && r->type == REDIS_REPLY_STRING ? strstr(r->str, "cmdstat_evalsha:calls=") : NULL;
    if (!p || sscanf(p, "cmdstat_evalsha:calls=%lld,usec=%*d,usec_per_call=%lf", &evalsha_calls,
                     &evalsha_usec_per_call) != 2)
        fail(err ? err : "INFO commandstats has no cmdstat_evalsha line");
}

static void report(double wall_s, long max_pops)
{
    double tenant_service[N_TENANTS] = {0}, user_service[MAX_USERS] = {0};
    double tenant_jobs[N_TENANTS] = {0}, user_jobs[MAX_USERS] = {0};
    for (int i = 0; i < g.n_sess; i++) {
        tenant_service[g.sess[i].tenant] += g.sess[i].service;
        user_service[g.sess[i].user] += g.sess[i].service;
        tenant_jobs[g.sess[i].tenant] += (double)g.sess[i].jobs;
        user_jobs[g.sess[i].user] += (double)g.sess[i].jobs;
    }
    double x[MAX_SESS], xj[MAX_SESS], total = 0;
    for (int t = 0; t < N_TENANTS; t++) {
        x[t] = tenant_service[t] / TENANT_WEIGHT[t];
        xj[t] = tenant_jobs[t] / TENANT_WEIGHT[t];
        total += tenant_service[t];
    }
    double tj = lv_jain(x, N_TENANTS), tjj = lv_jain(xj, N_TENANTS);
    int slots = g.n_workers * g.slots;
    printf("cfairsim: %ld jobs taken of %ld asked, %d workers x %d slots, service 5..50 ticks, %d tenants, %d users, "
           "%d sessions, %" PRIu64 " ticks, utilisation %.4f\n",
           g.taken, max_pops, g.n_workers, g.slots, N_TENANTS, g.n_users, g.n_sess, g.now,
           total / ((double)g.now * slots));
    printf("redis: %ld pop calls (%.2f jobs each), %ld short pops, %.2f s wall: %.0f jobs taken/s (each with its "
           "enqueue)\n",
           g.pop_calls, g.pop_calls ? (double)g.taken / (double)g.pop_calls : 0.0, g.short_pops, wall_s,
           (double)g.taken / wall_s);
    printf("redis-server: %lld EVALSHA (enqueue and pop), %.1f us each inside Redis\n", evalsha_calls,
           evalsha_usec_per_call);
    printf("tenants (weights 1:2:4, users 1/10/100): Jain %.5f (jobs %.5f); shares", tj, tjj);
    for (int t = 0; t < N_TENANTS; t++)
        printf(" %.4f", tenant_service[t] / total);
    printf(" (fair 0.1429 0.2857 0.5714)\n");
    double worst_user_j = 1;
    for (int t = 0; t < N_TENANTS; t++) {
        size_t n = 0;
        int low = -1; /* the least served user, and its session count: a user of few sessions cannot
                       * always have a job waiting (one per session), so its share may be demand-bound */
        for (int u = 0; u < g.n_users; u++)
            if (g.user_tenant[u] == t) {
                xj[n] = user_jobs[u];
                x[n++] = user_service[u];
                if (low < 0 || user_service[u] < user_service[low])
                    low = u;
            }
        int low_sessions = 0;
        for (int i = 0; i < g.n_sess; i++)
            low_sessions += g.sess[i].user == low;
        double j = lv_jain(x, n);
        worst_user_j = j < worst_user_j ? j : worst_user_j;
        printf("users within tenant-%c (%zu users): Jain %.5f (jobs %.5f); least served: %.3f of the mean, %d "
               "session%s\n",
               'a' + t, n, j, lv_jain(xj, n), user_service[low] / (tenant_service[t] / (double)n), low_sessions,
               low_sessions == 1 ? "" : "s");
    }
    double worst_sess_j = 1, sum_sess_j = 0, worst_sess_jobs = 1;
    int multi = 0;
    for (int u = 0; u < g.n_users; u++) {
        size_t n = 0;
        for (int i = 0; i < g.n_sess; i++)
            if (g.sess[i].user == u) {
                xj[n] = (double)g.sess[i].jobs;
                x[n++] = g.sess[i].service;
            }
        if (n < 2)
            continue;
        double j = lv_jain(x, n), jj = lv_jain(xj, n);
        worst_sess_j = j < worst_sess_j ? j : worst_sess_j;
        worst_sess_jobs = jj < worst_sess_jobs ? jj : worst_sess_jobs;
        sum_sess_j += j;
        multi++;
    }
    printf("sessions within a user (%d users with 2..8 sessions): Jain lowest %.5f, mean %.5f (jobs: lowest %.5f)\n",
           multi, worst_sess_j, multi ? sum_sess_j / multi : 1.0, worst_sess_jobs);
    printf("RESULT tenants %.5f users_min %.5f sessions_min %.5f jobs_per_s %.0f taken %ld sessions_jobs_min %.5f\n",
           tj, worst_user_j, worst_sess_j, (double)g.taken / wall_s, g.taken, worst_sess_jobs);
}

int main(int argc, char **argv)
{
    long max_pops = argc > 1 ? strtol(argv[1], NULL, 10) : 20000;
    g.n_workers = argc > 2 ? (int)strtol(argv[2], NULL, 10) : 4;
    g.slots = argc > 3 ? (int)strtol(argv[3], NULL, 10) : 8;
    g.rng = argc > 4 ? strtoull(argv[4], NULL, 10) : 1;
    long limit_s = argc > 5 ? strtol(argv[5], NULL, 10) : 30;
    if (max_pops < 1000 || max_pops > 10000000 || g.n_workers < 1 || g.n_workers > MAX_WORKERS || g.slots < 1 ||
        g.slots > 1000 || g.rng == 0 || limit_s < 1 || limit_s > 3600) {
        fprintf(stderr, "usage: cfairsim [pops 1000..1e7] [workers 1..%d] [slots per worker 1..1000] [seed > 0] "
                        "[time limit s 1..3600]\n", MAX_WORKERS);
        return 2;
    }
    int rc = 1;
    bool loop_open = false;
    if (rfx_init(&g.srv, "cfairsim") != 0 || rfx_start(&g.srv) != 0)
        goto out;
    uv_loop_init(&g.loop);
    rfx_deadline_init(&g.deadline, &g.loop);
    loop_open = true;
    char url_text[64];
    snprintf(url_text, sizeof(url_text), "redis://127.0.0.1:%d", g.srv.port);
    lv_redisurl_t url;
    const char *why = NULL;
    lv_redis_cfg_t cfg = {.name = "cfairsim", .on_state = on_state};
    if (lv_redisurl_parse(url_text, &url, &why) != 0 || lv_redis_create(&g.loop, &url, &cfg, &g.r) != 0 ||
        lv_cq_scripts_add(g.r, &g.cq) != 0) {
        fprintf(stderr, "cfairsim: no Redis client for %s%s%s\n", url_text, why ? ": " : "", why ? why : "");
        goto out;
    }
    if (!rfx_run_until(&g.deadline, rfx_is_set, &g.up, REPLY_MS)) {
        fprintf(stderr, "cfairsim: the client did not connect to %s within %d ms\n", url_text, REPLY_MS);
        goto out;
    }

    for (int t = 0; t < N_TENANTS; t++)
        for (int i = 0; i < TENANT_USERS[t]; i++) {
            int u = g.n_users++;
            g.user_tenant[u] = t;
            int n = 1 + (int)(rng_next() % 8); /* 1..8 sessions, fairsim's draws */
            for (int k = 0; k < n && g.n_sess < MAX_SESS; k++) {
                g.sess[g.n_sess].tenant = t;
                g.sess[g.n_sess].user = u;
                g.n_sess++;
            }
        }
    for (int w = 0; w < g.n_workers; w++)
        g.free_slots[w] = g.slots;

    uint64_t t_start = lv_now_ms(), stop_at = t_start + (uint64_t)limit_s * 1000;
    bool timed_out = false;
    for (int s = 0; s < g.n_sess; s++)
        enqueue(s);
    while (!g.error) {
        /* pop for every free slot (never past the run's bound), then jump to the next job's end */
        long room = max_pops - g.taken;
        for (int w = 0; w < g.n_workers && room > 0; w++)
            if (g.free_slots[w] > 0) {
                int want = g.free_slots[w] < room ? g.free_slots[w] : (int)room; /* the last ask for what is left */
                room -= want;
                pop(w, want);
            }
        round_trip();
        if (g.error || g.taken >= max_pops)
            break;
        if (lv_now_ms() > stop_at) {
            timed_out = true;
            break;
        }
        uint64_t next = UINT64_MAX;
        for (int s = 0; s < g.n_sess; s++)
            if (g.sess[s].worker >= 0 && g.sess[s].busy_until < next)
                next = g.sess[s].busy_until;
        if (next == UINT64_MAX) {
            fail("no job running and none taken: the queue stalled");
            break;
        }
        g.now = next;
        for (int s = 0; s < g.n_sess; s++)
            if (g.sess[s].worker >= 0 && g.sess[s].busy_until == g.now) {
                g.free_slots[g.sess[s].worker]++;
                enqueue(s);
            }
    }
    double wall_s = (double)(lv_now_ms() - t_start) / 1000.0;
    if (!g.error) {
        if (lv_redis_eval(g.r, g.cq.stats, on_stats, NULL, 0, 0, NULL, NULL) == 0)
            g.replies_due++;
        if (lv_redis_cmdf(g.r, on_info, NULL, "INFO commandstats") == 0)
            g.replies_due++;
        round_trip();
        if (!g.error && waiting_in_redis != g.waiting)
            fail("Redis's lv:q:len disagrees with the sessions whose job waits");
    }
    if (g.error) {
        fprintf(stderr, "cfairsim: %s (after %ld jobs taken)\n", g.error, g.taken);
        goto out;
    }
    report(wall_s, max_pops);
    if (timed_out)
        printf("stopped at the %ld s time limit before %ld jobs\n", limit_s, max_pops);
    if (g.short_pops) {
        fprintf(stderr, "cfairsim: %ld pops took fewer jobs than asked while jobs waited\n", g.short_pops);
        goto out;
    }
    rc = timed_out ? 3 : 0;
out:
    if (g.r)
        lv_redis_close(g.r);
    if (loop_open && rfx_loop_close(&g.loop, &g.deadline, 1000) != 0)
        fprintf(stderr, "cfairsim: the loop still had handles open at exit\n");
    rfx_cleanup(&g.srv);
    return rc;
}

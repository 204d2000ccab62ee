/* fairsim.c - the two-level fair queue (src/core/lv_drr.c) under a simulated backend: S slots,
 * random service times, tenants of weights 1, 2 and 4 with 1, 10 and 100 users of 1..8 sessions,
 * every session always backlogged (a new frame waits as soon as its last job ended). Prints Jain's
 * index of weight-normalised service (slot time) among tenants, among the users of each tenant,
 * and among the sessions of each user (the lowest such index over users with several sessions).
 * Usage: fairsim [ticks] [slots] [seed]   (defaults 200000 ticks, 32 slots, seed 1) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jain.h"
#include "lv_common.h"
#include "lv_drr.h"

#define N_TENANTS 3
#define MAX_USERS 111
#define MAX_SESS 1000

static const int TENANT_WEIGHT[N_TENANTS] = {1, 2, 4};
static const int TENANT_USERS[N_TENANTS] = {1, 10, 100};

typedef struct {
    lv_drr_node_t node;
    int tenant, user;
    uint64_t busy_until; /* 0 = idle */
    double service;      /* slot ticks received */
} sess_t;

static struct {
    lv_drr_t d;
    sess_t sess[MAX_SESS];
    int n_sess;
    int user_tenant[MAX_USERS];
    int n_users;
    int free_slots;
    uint64_t now;
    uint64_t rng;
} g;

static uint64_t rng_next(void) /* xorshift64*: a fixed seed makes a run repeatable */
{
    g.rng ^= g.rng >> 12;
    g.rng ^= g.rng << 25;
    g.rng ^= g.rng >> 27;
    return g.rng * 0x2545f4914f6cdd1dULL;
}

static void keys(const sess_t *s, char *tk, size_t tn, char *uk, size_t un)
{
    snprintf(tk, tn, "tenant-%c", 'a' + s->tenant);
    snprintf(uk, un, "u:%d", s->user);
}

static lv_drr_verdict_t take(lv_drr_node_t *n, void *ud)
{
    (void)ud;
    sess_t *s = LV_CONTAINER_OF(n, sess_t, node);
    if (g.free_slots == 0)
        return LV_DRR_STOP;
    g.free_slots--;
    uint64_t service = 5 + rng_next() % 46; /* 5..50 ticks, mean 27.5 */
    s->busy_until = g.now + service;
    s->service += (double)service;
    return LV_DRR_DISPATCHED;
}

int main(int argc, char **argv)
{
    long ticks = argc > 1 ? strtol(argv[1], NULL, 10) : 200000;
    int slots = argc > 2 ? (int)strtol(argv[2], NULL, 10) : 32;
    g.rng = argc > 3 ? strtoull(argv[3], NULL, 10) : 1;
    if (ticks < 1000 || ticks > 100000000 || slots < 1 || slots > 10000 || g.rng == 0) {
        fprintf(stderr, "usage: fairsim [ticks 1000..1e8] [slots 1..10000] [seed > 0]\n");
        return 2;
    }
    if (lv_drr_init(&g.d, 1) != 0)
        return 1;
    lv_drr_track_jobs(&g.d);
    lv_drr_set_capacity(&g.d, (size_t)slots);
    for (int t = 0; t < N_TENANTS; t++) {
        char tk[16];
        snprintf(tk, sizeof(tk), "tenant-%c", 'a' + t);
        lv_drr_set_tenant_weight(&g.d, tk, TENANT_WEIGHT[t]);
        for (int i = 0; i < TENANT_USERS[t]; i++) {
            int u = g.n_users++;
            g.user_tenant[u] = t;
            int n = 1 + (int)(rng_next() % 8); /* 1..8 sessions */
            for (int k = 0; k < n && g.n_sess < MAX_SESS; k++) {
                g.sess[g.n_sess].tenant = t;
                g.sess[g.n_sess].user = u;
                g.n_sess++;
            }
        }
    }
    g.free_slots = slots;
    for (g.now = 1; g.now <= (uint64_t)ticks; g.now++) {
        for (int i = 0; i < g.n_sess; i++) {
            sess_t *s = &g.sess[i];
            char tk[16], uk[16];
            keys(s, tk, sizeof(tk), uk, sizeof(uk));
            if (s->busy_until && s->busy_until <= g.now) {
                lv_drr_job_done(&g.d, uk, g.now, 0);
                s->busy_until = 0;
                g.free_slots++;
            }
            if (!s->busy_until && !lv_drr_node_queued(&s->node))
                lv_drr_enqueue_tenant(&g.d, &s->node, tk, uk, g.now);
        }
        lv_drr_run(&g.d, (size_t)slots, g.now, take, NULL, NULL);
    }
    /* service counted at dispatch: a job still running counts whole, which a long run makes small */
    double tenant_service[N_TENANTS] = {0}, user_service[MAX_USERS] = {0};
    for (int i = 0; i < g.n_sess; i++) {
        tenant_service[g.sess[i].tenant] += g.sess[i].service;
        user_service[g.sess[i].user] += g.sess[i].service;
    }
    double x[MAX_SESS], total = 0;
    for (int t = 0; t < N_TENANTS; t++) {
        x[t] = tenant_service[t] / TENANT_WEIGHT[t];
        total += tenant_service[t];
    }
    printf("fairsim: %ld ticks, %d slots, service 5..50 ticks, %d tenants, %d users, %d sessions, "
           "utilisation %.4f\n",
           ticks, slots, N_TENANTS, g.n_users, g.n_sess, total / ((double)ticks * slots));
    printf("tenants (weights 1:2:4, users 1/10/100): Jain %.5f; shares", lv_jain(x, N_TENANTS));
    for (int t = 0; t < N_TENANTS; t++)
        printf(" %.4f", tenant_service[t] / total);
    printf(" (fair 0.1429 0.2857 0.5714)\n");
    double worst_user_j = 1;
    for (int t = 0; t < N_TENANTS; t++) {
        size_t n = 0;
        for (int u = 0; u < g.n_users; u++)
            if (g.user_tenant[u] == t)
                x[n++] = user_service[u];
        double j = lv_jain(x, n);
        worst_user_j = j < worst_user_j ? j : worst_user_j;
        printf("users within tenant-%c (%zu users): Jain %.5f\n", 'a' + t, n, j);
    }
    double worst_sess_j = 1, sum_sess_j = 0;
    int multi = 0;
    for (int u = 0; u < g.n_users; u++) {
        size_t n = 0;
        for (int i = 0; i < g.n_sess; i++)
            if (g.sess[i].user == u)
                x[n++] = g.sess[i].service;
        if (n < 2)
            continue;
        double j = lv_jain(x, n);
        worst_sess_j = j < worst_sess_j ? j : worst_sess_j;
        sum_sess_j += j;
        multi++;
    }
    printf("sessions within a user (%d users with 2..8 sessions): Jain lowest %.5f, mean %.5f\n", multi, worst_sess_j,
           multi ? sum_sess_j / multi : 1.0);
    printf("RESULT tenants %.5f users_min %.5f sessions_min %.5f\n", lv_jain((double[]){tenant_service[0] / 1,
           tenant_service[1] / 2, tenant_service[2] / 4}, 3), worst_user_j, worst_sess_j);
    lv_drr_free(&g.d);
    return 0;
}

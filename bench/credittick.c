/* credittick.c - what lv_pipeline_tick costs with many started sessions: the credit timetable
 * (lv_pipeline.c) against the walk over every started session it replaced (kept here, verbatim
 * but for its name, as walk_tick), in one process on the same sessions, interleaved.
 *
 * Two loads, each for N = 1,000 / 5,000 / 20,000 sessions (real registry, lv_session_create):
 *   idle: started, a source each, their credit answered and the next one an hour away;
 *   1fps: interval 1 s, each credit answered right after the tick that sent it.
 * "cold": a 64 MB buffer is swept between ticks (untimed), as a server's other work does in the
 * 20 ms between two ticks; "warm": not. Prints ns per tick (the median of 7 rounds).
 *
 * Build (the pipeline is included here, so its object is left out):
 *   make -j2 BUILD=build-x build-x/livevlm
 *   cc -std=c11 -D_GNU_SOURCE -O2 -g -Isrc/common -Isrc/proto -Isrc/core -Isrc/backend -Isrc/store \
 *      -o build-x/credittick bench/credittick.c build-x/src/store/lv_store_mem.o \
 *      $(find build-x/src/common build-x/src/proto build-x/src/core -name '*.o' ! -name lv_pipeline.o) \
 *      -ljansson -lcrypto -lturbojpeg -lsodium -lm
 *   build-x/credittick */
#include "../src/core/lv_pipeline.c"

#include <time.h>

#include "lv_store_mem.h"

/* ---- the walk the timetable replaced (lv_pipeline_tick before the timetable) ---- */
static size_t walk_tick(lv_pipeline_t *p, uint64_t now)
{
    flush_due_deltas(p, now);
    lv_coalesce_expire(p, lv_pipeline_now_us(p) / 1000u);
    if (now - p->last_review_ms >= LV_PIPELINE_REVIEW_MS) {
        p->last_review_ms = now;
        review_jobs(p, now);
    }
    size_t capacity = p->dispatch->ops->capacity(p->dispatch);
    size_t waiting = lv_drr_queued(p->drr) + p->credits_outstanding;
    p->demand = false;
    lv_queue_t *head = lv_registry_started(p->reg), *n;
    lv_session_t *granted[LV_PIPELINE_CREDITS_PER_TICK];
    size_t n_granted = 0;
    LV_QUEUE_FOREACH(n, head)
    {
        if (n_granted == LV_PIPELINE_CREDITS_PER_TICK)
            break;
        lv_session_t *s = LV_CONTAINER_OF(n, lv_session_t, started_link);
        if (s->n_sources == 0 || s->pending)
            continue;
        if (s->credit_outstanding) {
            uint64_t retry = LV_MAX((uint64_t)LV_PIPELINE_CREDIT_RETRY_MIN_MS, 2u * (uint64_t)s->rec.settings.interval_ms);
            if (now - s->credit_sent_ms < retry)
                continue;
            credit_drop(p, s);
            waiting--;
        }
        if (now < s->next_credit_ms)
            continue;
        if (!session_served(p, s, now))
            continue;
        if (p->n_jobs + waiting >= capacity) {
            size_t mine = lv_pipeline_principal_waiting(p, s->rec.principal);
            if (waiting >= capacity && mine > 0)
                continue;
            size_t share = lv_drr_share(p->drr, s->rec.principal);
            if (share && mine + (size_t)lv_drr_user_inflight(p->drr, s->rec.principal) >= share) {
                p->credits_held++;
                p->demand = true;
                continue;
            }
        }
        if (p->hooks.credit_allowed && !p->hooks.credit_allowed(p->hooks.ud, s, now))
            continue;
        s->credit_outstanding = ++s->credit_seq ? s->credit_seq : ++s->credit_seq;
        p->credits_outstanding++;
        waiting++;
        principal_add(p, s->rec.principal, +1);
        s->credit_sent_ms = now;
        uint64_t interval = (uint64_t)s->rec.settings.interval_ms, due = s->next_credit_ms;
        s->next_credit_ms = (due && now - due < interval ? due : now) + interval;
        granted[n_granted++] = s;
        lv_queue_t *sn, *snext;
        for (sn = s->sources.next; sn != &s->sources; sn = snext) {
            snext = sn->next;
            lv_source_t *src = LV_CONTAINER_OF(sn, lv_source_t, link);
            if (src->ops && src->ops->request_frame)
                src->ops->request_frame(src, s, s->credit_outstanding);
        }
    }
    for (size_t i = 0; i < n_granted; i++) {
        lv_queue_remove(&granted[i]->started_link);
        lv_queue_insert_tail(head, &granted[i]->started_link);
    }
    return n_granted;
}

/* ---- fakes: a dispatcher with room, a source whose credits the bench answers ---- */
static size_t fd_capacity(lv_dispatch_t *d) { return (void)d, (size_t)1 << 30; }
static size_t fd_free_slots(lv_dispatch_t *d) { return (void)d, (size_t)1 << 30; }
static bool fd_serves(lv_dispatch_t *d, const lv_settings_t *st, char *why, size_t why_size)
{
    (void)d, (void)st, (void)why, (void)why_size;
    return true;
}
static const lv_dispatch_ops_t fd_ops = {.capacity = fd_capacity, .free_slots = fd_free_slots, .serves = fd_serves};

#define MAX_N 20000
static lv_session_t *asked[MAX_N];
static size_t n_asked;
static void src_request_frame(lv_source_t *src, lv_session_t *s, uint32_t credit_id)
{
    (void)src, (void)credit_id;
    if (n_asked < MAX_N)
        asked[n_asked++] = s;
}
static const lv_source_ops_t src_ops = {.request_frame = src_request_frame};
static lv_source_t sources[MAX_N];
static void host_kick(void *ud) { (void)ud; }

static uint64_t ns_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static unsigned char *sweep_buf;
#define SWEEP_BYTES (64u << 20)
static volatile unsigned sweep_sink;
static void sweep_cache(void)
{
    unsigned acc = 0;
    for (size_t i = 0; i < SWEEP_BYTES; i += 64)
        acc += sweep_buf[i]++;
    sweep_sink = acc;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

typedef size_t (*tick_fn)(lv_pipeline_t *p, uint64_t now);

/* `ticks` ticks of fn from *now on, 20 ms apart; credits answered after each (untimed). Returns
 * the mean ns per tick. */
static uint64_t run_ticks(lv_pipeline_t *p, tick_fn fn, uint64_t *now, int ticks, bool cold, size_t *credits)
{
    uint64_t total = 0;
    for (int i = 0; i < ticks; i++, *now += 20) {
        if (cold)
            sweep_cache();
        n_asked = 0;
        uint64_t t0 = ns_now();
        *credits += fn(p, *now);
        total += ns_now() - t0;
        for (size_t k = 0; k < n_asked; k++)
            lv_pipeline_credit_clear(p, asked[k]);
    }
    return total / (uint64_t)ticks;
}

static void bench(size_t n, int interval_ms, bool cold)
{
    lv_store_t *store;
    lv_registry_t *reg;
    lv_drr_t drr;
    static lv_dispatch_t disp;
    static lv_pipeline_t pipe;
    lv_registry_caps_t caps = {.max_sessions = n, .max_sessions_per_principal = n};
    if (lv_store_mem_create(n + 16, &store) != 0 || lv_registry_create(store, &caps, &reg) != 0 ||
        lv_drr_init(&drr, 1) != 0)
        abort();
    memset(&disp, 0, sizeof disp);
    disp.ops = &fd_ops;
    lv_pipeline_hooks_t hooks = {.kick = host_kick};
    if (lv_pipeline_init(&pipe, reg, &drr, &disp, &hooks) != 0)
        abort();
    for (size_t i = 0; i < n; i++) {
        char principal[32], secret[65];
        lv_session_t *s;
        snprintf(principal, sizeof principal, "u:%zu", i % 500);
        if (lv_session_create(reg, principal, NULL, NULL, secret, &s) != 0)
            abort();
        s->rec.settings.interval_ms = interval_ms;
        sources[i].ops = &src_ops;
        lv_pipeline_attach_source(&pipe, s, &sources[i], 0);
        lv_pipeline_start(&pipe, s, (uint64_t)(i * 1000u / n)); /* phases spread over a second */
    }
    uint64_t now = 0;
    size_t credits = 0;
    run_ticks(&pipe, lv_pipeline_tick, &now, 100, false, &credits); /* everyone has had a credit */
    enum { ROUNDS = 7, TICKS = 100 };
    uint64_t walk_ns[ROUNDS], table_ns[ROUNDS];
    size_t walk_credits = 0, table_credits = 0;
    uint64_t visits = 0;
    for (int r = 0; r < ROUNDS; r++) {
        walk_ns[r] = run_ticks(&pipe, walk_tick, &now, TICKS, cold, &walk_credits);
        lv_queue_t *q; /* the walk moved credits without the timetable: file everyone again */
        LV_QUEUE_FOREACH(q, lv_registry_started(reg))
            lv_pipeline_credit_reschedule(&pipe, LV_CONTAINER_OF(q, lv_session_t, started_link));
        uint64_t v0 = pipe.credit_visits;
        table_ns[r] = run_ticks(&pipe, lv_pipeline_tick, &now, TICKS, cold, &table_credits);
        visits += pipe.credit_visits - v0;
    }
    qsort(walk_ns, ROUNDS, sizeof walk_ns[0], cmp_u64);
    qsort(table_ns, ROUNDS, sizeof table_ns[0], cmp_u64);
    printf("%-4s %-5s N=%6zu  walk %8llu ns/tick (%6zu credits)  timetable %7llu ns/tick (%6zu credits, %5.1f "
           "looks/tick)  x%.1f\n",
           interval_ms >= 3600000 ? "idle" : "1fps", cold ? "cold" : "warm", n,
           (unsigned long long)walk_ns[ROUNDS / 2], walk_credits, (unsigned long long)table_ns[ROUNDS / 2],
           table_credits, (double)visits / (ROUNDS * TICKS),
           (double)walk_ns[ROUNDS / 2] / (double)(table_ns[ROUNDS / 2] ? table_ns[ROUNDS / 2] : 1));
    lv_pipeline_shutdown(&pipe);
    lv_pipeline_free(&pipe);
    lv_drr_free(&drr);
    lv_registry_destroy(reg);
    store->ops->destroy(store);
}

int main(void)
{
    static const size_t ns[] = {1000, 5000, 20000};
    lv_log_set_level(LV_LOG_WARN);
    sweep_buf = calloc(1, SWEEP_BYTES);
    if (!sweep_buf)
        return 1;
    for (int cold = 0; cold < 2; cold++)
        for (size_t i = 0; i < LV_ARRAY_LEN(ns); i++) {
            bench(ns[i], 3600000, cold);
            bench(ns[i], 1000, cold);
        }
    free(sweep_buf);
    return 0;
}

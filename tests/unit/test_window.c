/* test_window.c - adaptive concurrency window against simulated backends: convergence from below
 * and above, capacity halving and coming back, noise, answer length, errors, fixed mode. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "lv_common.h"
#include "lv_window.h"

/* ---------- a simulated backend ---------- */

static uint64_t rng_state;
static double urand(void) /* xorshift64*, [0, 1) */
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 0x2545f4914f6cdd1dULL) >> 11) / 9007199254740992.0;
}

enum {
    MODEL_PROPORTIONAL, /* K slots; beyond K a request's latency grows as inflight / K */
    MODEL_FIFO,         /* K servers and a FIFO queue in front: TTFT = wait + prefill */
};

#define SIM_MAX_INFLIGHT 512

typedef struct {
    uint64_t start, done, ttft;
    int inflight_at_start, tokens;
    double busy_us; /* server time it used */
} req_t;

typedef struct {
    int model;
    int slots;        /* K now */
    double service_us;/* S: no-queue TTFT */
    double noise;     /* ±fraction, uniform */
    int max_tokens;   /* answers are 5..max_tokens tokens long */
    double tpot_us;   /* time per output token */
    int no_ttft;      /* backend does not stream: report ttft 0 */
    int outlier_pct;  /* this % of requests take 5x as long (a stall, a long prompt) */
    uint64_t now;
    req_t r[SIM_MAX_INFLIGHT];
    int n;
    uint64_t server_free[SIM_MAX_INFLIGHT];
    double busy_sum;  /* server time of completed requests, for utilisation */
} sim_t;

static void sim_init(sim_t *s, int model, int slots, double noise, uint64_t seed)
{
    memset(s, 0, sizeof(*s));
    s->model = model;
    s->slots = slots;
    s->service_us = 100000;
    s->noise = noise;
    s->max_tokens = 60;
    s->tpot_us = 4000;
    rng_state = seed;
}

static double jitter(const sim_t *s)
{
    return 1.0 + s->noise * (2.0 * urand() - 1.0);
}

static void sim_dispatch(sim_t *s)
{
    req_t *q = &s->r[s->n++];
    q->start = s->now;
    q->inflight_at_start = s->n;
    q->tokens = 5 + (int)(urand() * (s->max_tokens - 4));
    double decode = q->tokens * s->tpot_us * jitter(s);
    double stall = urand() * 100 < s->outlier_pct ? 5.0 : 1.0;
    if (s->model == MODEL_PROPORTIONAL) {
        /* processor sharing: everything it does slows down by inflight / K */
        double f = s->n > s->slots ? (double)s->n / s->slots : 1.0;
        double ttft = s->service_us * f * jitter(s) * stall;
        q->ttft = (uint64_t)ttft;
        q->done = s->now + (uint64_t)(ttft + decode * f);
        q->busy_us = s->service_us + decode;
    } else {
        int best = 0;
        for (int i = 1; i < s->slots; i++)
            if (s->server_free[i] < s->server_free[best])
                best = i;
        uint64_t begin = LV_MAX(s->server_free[best], s->now);
        double prefill = s->service_us * jitter(s) * stall;
        s->server_free[best] = begin + (uint64_t)(prefill + decode);
        q->ttft = begin + (uint64_t)prefill - s->now;
        q->done = s->server_free[best];
        q->busy_us = prefill + decode;
    }
}

/* Keep the window full (demand is unlimited), complete the next request and feed it back. */
static void sim_step(sim_t *s, lv_window_t *w)
{
    int limit = lv_window_limit(w);
    assert_true(limit >= 1 && limit <= SIM_MAX_INFLIGHT);
    while (s->n < limit)
        sim_dispatch(s);
    int b = 0;
    for (int i = 1; i < s->n; i++)
        if (s->r[i].done < s->r[b].done)
            b = i;
    req_t q = s->r[b];
    s->r[b] = s->r[--s->n];
    s->now = q.done;
    s->busy_sum += q.busy_us;
    lv_window_sample(w, s->no_ttft ? 0 : q.ttft, q.done - q.start, q.tokens, q.inflight_at_start, s->now);
}

typedef struct {
    int converged_at; /* first sample after which the start-up measurement is over and the
                       * window stays in range (except during later base measurements) */
    double mean, sd;  /* over the tail, outside probes */
    int min, max;
    double util;      /* busy fraction of the backend's slots over the tail */
    double probing;   /* fraction of tail samples taken while probing */
    double in_range;  /* fraction of tail samples (outside probes) with the window in range */
} run_t;

/* Run n samples; the tail is from `tail` on. Range [lo, hi] for convergence. */
static run_t sim_run(sim_t *s, lv_window_t *w, int n, int tail, int lo, int hi)
{
    run_t r = {.converged_at = 0, .min = 1 << 30, .max = 0};
    double sum = 0, sum2 = 0;
    int cnt = 0, probing = 0, started = 0, in_range = 0;
    uint64_t t0 = 0;
    double busy0 = 0;
    for (int i = 0; i < n; i++) {
        if (i == tail) {
            t0 = s->now;
            busy0 = s->busy_sum;
        }
        sim_step(s, w);
        lv_window_stats_t st;
        lv_window_stats(w, &st);
        int l = st.limit;
        if (!started && st.phase == LV_WINDOW_PROBE)
            r.converged_at = i + 1;
        else
            started = 1;
        if (st.phase != LV_WINDOW_PROBE && (l < lo || l > hi))
            r.converged_at = i + 1;
        if (i >= tail) {
            if (st.phase == LV_WINDOW_PROBE) {
                probing++;
                continue;
            }
            sum += l;
            sum2 += (double)l * l;
            cnt++;
            in_range += l >= lo && l <= hi;
            r.min = LV_MIN(r.min, l);
            r.max = LV_MAX(r.max, l);
        }
    }
    r.mean = cnt ? sum / cnt : 0;
    r.sd = cnt ? sqrt(LV_MAX(0.0, sum2 / cnt - r.mean * r.mean)) : 0;
    r.util = (s->busy_sum - busy0) / ((double)s->slots * (double)(s->now - t0));
    r.probing = (double)probing / (n - tail);
    r.in_range = cnt ? (double)in_range / cnt : 0;
    return r;
}

static void print_run(const char *what, int k, int initial, const run_t *r)
{
    print_message("%-28s K=%-2d from %-2d: in [K,K+2] from sample %4d; tail: mean %.2f sd %.2f [%d..%d] "
                  "in range %.0f%%, util %.3f, probing %.1f%%\n",
                  what, k, initial, r->converged_at, r->mean, r->sd, r->min, r->max, 100 * r->in_range, r->util,
                  100 * r->probing);
}


/* ---------- an event-driven FIFO backend, as the gateway sees it ----------
 * K slots, every request takes the same service time (prefill, then decode), more wait in a FIFO
 * inside the backend: TTFT = floor + queue wait, which is what fakevlm --slots K does. Demand is
 * unlimited (overload: frames always wait in front of the window). First tokens are reported as
 * they arrive and the engine asks for growth on demand after each event, as lv_dispatch does;
 * requests that end feed lv_window_sample. Counts the queue inside the backend and busy slots,
 * time-weighted. */

#define EV_MAX 1200

typedef struct {
    uint64_t sent, begin, first, done;
    int inflight_at_start, first_seen;
} ev_req_t;

typedef struct {
    int slots;
    double prefill_us, decode_us, noise;
    int demand;       /* most requests the gateway has to send at once (sessions with a frame
                       * waiting: each has one request out at most); 0 = unlimited */
    uint64_t now;
    ev_req_t r[EV_MAX];
    int n, awaiting;
    uint64_t slot_free[EV_MAX];
    /* time-weighted, from the last reset */
    uint64_t t0;
    double queue_area, busy_area, window_area;
    int window_min, window_max;
} ev_sim_t;

static void ev_init(ev_sim_t *s, int slots, double prefill_us, double decode_us, double noise, uint64_t seed)
{
    memset(s, 0, sizeof(*s));
    s->slots = slots;
    s->prefill_us = prefill_us;
    s->decode_us = decode_us;
    s->noise = noise;
    s->now = 1000000;
    rng_state = seed;
}

static double ev_jitter(const ev_sim_t *s) { return 1.0 + s->noise * (2.0 * urand() - 1.0); }

static void ev_dispatch(ev_sim_t *s)
{
    ev_req_t *q = &s->r[s->n++];
    int best = 0;
    for (int i = 1; i < s->slots; i++)
        if (s->slot_free[i] < s->slot_free[best])
            best = i;
    q->sent = s->now;
    q->begin = LV_MAX(s->slot_free[best], s->now);
    q->first = q->begin + (uint64_t)(s->prefill_us * ev_jitter(s));
    q->done = q->first + (uint64_t)(s->decode_us * ev_jitter(s));
    q->inflight_at_start = s->n;
    q->first_seen = 0;
    s->slot_free[best] = q->done;
    s->awaiting++;
}

static void ev_reset_stats(ev_sim_t *s)
{
    s->t0 = s->now;
    s->queue_area = s->busy_area = s->window_area = 0;
    s->window_min = 1 << 30;
    s->window_max = 0;
}

/* Advance to the next event (a first token or an end) and report it. */
static void ev_step(ev_sim_t *s, lv_window_t *w)
{
    int limit = lv_window_limit(w);
    assert_true(limit >= 1 && limit <= EV_MAX);
    while (s->n < limit && (s->demand == 0 || s->n < s->demand))
        ev_dispatch(s);
    int b = -1, is_first = 0;
    uint64_t t = UINT64_MAX;
    for (int i = 0; i < s->n; i++) {
        if (!s->r[i].first_seen && s->r[i].first < t) {
            t = s->r[i].first;
            b = i;
            is_first = 1;
        }
        if (s->r[i].done < t) {
            t = s->r[i].done;
            b = i;
            is_first = 0;
        }
    }
    /* time-weighted: requests waiting inside (sent, not begun) and busy slots until t */
    int queued = 0, busy = 0;
    for (int i = 0; i < s->n; i++) {
        queued += s->r[i].begin > s->now;
        busy += s->r[i].begin <= s->now;
    }
    double dt = (double)(t - s->now);
    s->queue_area += queued * dt;
    s->busy_area += LV_MIN(busy, s->slots) * dt;
    s->window_area += limit * dt;
    s->window_min = LV_MIN(s->window_min, limit);
    s->window_max = LV_MAX(s->window_max, limit);
    s->now = t;
    ev_req_t *q = &s->r[b];
    if (is_first) {
        q->first_seen = 1;
        s->awaiting--;
        lv_window_first_token(w, q->first - q->sent, s->now);
    } else {
        ev_req_t d = *q;
        *q = s->r[--s->n];
        lv_window_sample(w, d.first - d.sent, d.done - d.sent, 20, d.inflight_at_start, s->now);
    }
    lv_window_on_demand(w, s->n, s->awaiting, s->now);
    int l = lv_window_limit(w);
    if (getenv("WIN_TRACE")) {
        static int last = -1;
        if (l != last) {
            lv_window_stats_t st;
            lv_window_stats(w, &st);
            print_message("  t=%.2f limit %d phase %s q %.2f inflight %d base %.0f\n", (double)(s->now - 1000000) / 1e6, l,
                          lv_window_phase_name(st.phase), st.queue_est, s->n, st.base_us);
            last = l;
        }
    }
}

typedef struct {
    double window, queue, busy; /* time-weighted means; busy as a fraction of the slots */
    int min, max;
} ev_result_t;

/* Run for `seconds`, noting when the window last left [lo, hi] (seconds from the call). */
static double ev_run_until_settled(ev_sim_t *s, lv_window_t *w, double seconds, int lo, int hi)
{
    uint64_t start = s->now, end = s->now + (uint64_t)(seconds * 1e6);
    double left = 0;
    for (long i = 0; s->now < end && i < 50000000L; i++) {
        ev_step(s, w);
        int l = lv_window_limit(w);
        if (l < lo || l > hi)
            left = (double)(s->now - start) / 1e6;
    }
    return left;
}

static ev_result_t ev_result(const ev_sim_t *s)
{
    double span = (double)(s->now - s->t0);
    ev_result_t r = {s->window_area / span, s->queue_area / span, s->busy_area / (span * s->slots), s->window_min,
                     s->window_max};
    return r;
}

/* Run until `seconds` of simulated time have passed. */
static void ev_run_for(ev_sim_t *s, lv_window_t *w, double seconds)
{
    uint64_t end = s->now + (uint64_t)(seconds * 1e6);
    for (long i = 0; s->now < end && i < 50000000L; i++)
        ev_step(s, w);
}

/* ---------- tests ---------- */

static void init_and_bounds(void **state)
{
    (void)state;
    lv_window_t w;
    assert_int_equal(lv_window_init(&w, 0, 10, 5), LV_EINVAL);
    assert_int_equal(lv_window_limit(&w), 1);
    assert_int_equal(lv_window_init(&w, 5, 4, 5), LV_EINVAL);
    assert_int_equal(lv_window_init(&w, 1, 10, 11), LV_EINVAL);
    assert_int_equal(lv_window_init(&w, 1, LV_WINDOW_MAX_LIMIT + 1, 1), LV_EINVAL);
    assert_int_equal(lv_window_init(&w, 2, 10, 4), 0);
    assert_int_equal(lv_window_limit(&w), 4); /* the first round measures at the initial limit */
    lv_window_stats_t st;
    lv_window_stats(&w, &st);
    assert_string_equal(lv_window_phase_name(st.phase), "probe");
    assert_string_equal(lv_window_phase_name(LV_WINDOW_STEADY), "steady");
    assert_string_equal(lv_window_phase_name(LV_WINDOW_GROW), "grow");
    assert_string_equal(lv_window_phase_name(LV_WINDOW_FIXED), "fixed");
    /* junk samples are ignored */
    lv_window_sample(&w, 10, 0, 1, 1, 100);
    lv_window_sample(&w, 10, 10, 1, 0, 100);
    lv_window_stats(&w, &st);
    assert_int_equal(st.samples, 0);
}

/* The window settles in K..K+3 from 1 and from 64, on a noise-free processor-sharing backend. */
static void converges_from_below_and_above(void **state)
{
    (void)state;
    int ks[] = {1, 2, 4, 8, 16, 32};
    int starts[] = {1, 64};
    for (size_t i = 0; i < LV_ARRAY_LEN(ks); i++) {
        for (size_t j = 0; j < LV_ARRAY_LEN(starts); j++) {
            sim_t s;
            lv_window_t w;
            sim_init(&s, MODEL_PROPORTIONAL, ks[i], 0, 1 + i);
            assert_int_equal(lv_window_init(&w, 1, 256, starts[j]), 0);
            run_t r = sim_run(&s, &w, 4000, 1000, ks[i], ks[i] + 2);
            print_run("proportional, no noise", ks[i], starts[j], &r);
            /* q reads the queue a FIFO builds; a processor-sharing backend shows only the TTFT
             * part of its slowdown in it, so the window settles a request or two higher */
            assert_true(r.mean >= ks[i] && r.mean <= ks[i] + 3);
            assert_true(r.max <= ks[i] + 4);
            assert_true(r.util >= 0.95);
        }
    }
}

/* A FIFO backend whose TTFT is prefill + wait, with ±20% noise on every time and answers of 5..60
 * tokens: the window stays near K, fills the backend, and does not swing. */
static void noise_and_fifo_stay_bounded(void **state)
{
    (void)state;
    int ks[] = {2, 4, 8, 16, 32};
    int starts[] = {1, 64};
    for (int model = MODEL_PROPORTIONAL; model <= MODEL_FIFO; model++) {
        for (size_t i = 0; i < LV_ARRAY_LEN(ks); i++) {
            for (size_t j = 0; j < LV_ARRAY_LEN(starts); j++) {
                sim_t s;
                lv_window_t w;
                int k = ks[i];
                sim_init(&s, model, k, 0.2, 100 + i * 7 + j);
                assert_int_equal(lv_window_init(&w, 1, 256, starts[j]), 0);
                run_t r = sim_run(&s, &w, 6000, 2000, k, k + 2);
                print_run(model == MODEL_FIFO ? "FIFO, noise 20%" : "proportional, noise 20%", k, starts[j], &r);
                assert_true(r.mean >= k - 1 && r.mean <= k + 3);
                assert_true(r.sd <= 1.5);
                assert_true(r.min >= k - 4 && r.max <= k + 5);
                assert_true(r.util >= 0.93);
                assert_true(r.probing <= 0.05);
            }
        }
    }
}

/* Capacity halves mid-run: the window follows it down, and back up when it returns. */
static void follows_capacity_changes(void **state)
{
    (void)state;
    int ks[] = {8, 16, 32};
    for (int model = MODEL_PROPORTIONAL; model <= MODEL_FIFO; model++) {
        for (size_t i = 0; i < LV_ARRAY_LEN(ks); i++) {
            int k = ks[i];
            sim_t s;
            lv_window_t w;
            sim_init(&s, model, k, model == MODEL_FIFO ? 0.2 : 0, 300 + i);
            assert_int_equal(lv_window_init(&w, 1, 256, 4), 0);
            run_t r = sim_run(&s, &w, 2000, 1000, k - 1, k + 3);
            s.slots = k / 2;
            /* the FIFO's extra servers finish their work and stop */
            for (int n = k / 2; n < k; n++)
                s.server_free[n] = UINT64_MAX / 2;
            run_t down = sim_run(&s, &w, 2000, 1000, k / 2 - 1, k / 2 + 3);
            s.slots = k;
            for (int n = k / 2; n < k; n++)
                s.server_free[n] = s.now;
            run_t up = sim_run(&s, &w, 2500, 1500, k - 1, k + 3);
            print_message("%s K=%d -> %d -> %d: mean %.1f -> %.1f (down in %d samples) -> %.1f (up in %d "
                          "samples), util %.3f / %.3f\n",
                          model == MODEL_FIFO ? "FIFO, noise 20%" : "proportional", k, k / 2, k, r.mean, down.mean,
                          down.converged_at, up.mean, up.converged_at, down.util, up.util);
            assert_true(down.converged_at <= 400);
            assert_true(down.mean >= k / 2 - 1 && down.mean <= k / 2 + 3);
            assert_true(up.converged_at <= 1000);
            assert_true(up.mean >= k - 1 && up.mean <= k + 3);
            assert_true(down.util >= 0.93 && up.util >= 0.93);
        }
    }
}

/* Answer length varies 5..500 tokens (total time 10x apart); TTFT is the signal, so the window
 * does not care. Without TTFT (no streaming) per-token time is used. */
static void answer_length_does_not_matter(void **state)
{
    (void)state;
    sim_t s;
    lv_window_t w;
    sim_init(&s, MODEL_FIFO, 8, 0.1, 77);
    s.max_tokens = 500;
    assert_int_equal(lv_window_init(&w, 1, 256, 1), 0);
    run_t r = sim_run(&s, &w, 4000, 1000, 8, 10);
    print_run("TTFT, answers 5..500 tok", 8, 1, &r);
    assert_true(r.mean >= 8 && r.mean <= 10.5);
    lv_window_stats_t st;
    lv_window_stats(&w, &st);
    assert_int_equal(st.signal, LV_WINDOW_SIGNAL_TTFT);

    /* not streamed: TTFT unknown, total/tokens with fixed-length answers */
    sim_init(&s, MODEL_PROPORTIONAL, 8, 0.1, 78);
    s.no_ttft = 1;
    s.max_tokens = 5;
    assert_int_equal(lv_window_init(&w, 1, 256, 1), 0);
    r = sim_run(&s, &w, 4000, 1000, 8, 10);
    print_run("per-token (no TTFT)", 8, 1, &r);
    lv_window_stats(&w, &st);
    assert_int_equal(st.signal, LV_WINDOW_SIGNAL_PER_TOKEN);
    assert_true(r.mean >= 7 && r.mean <= 11);

    /* the backend starts streaming: the scale changed, so base is measured again */
    s.no_ttft = 0;
    uint64_t probes = st.probes;
    sim_step(&s, &w);
    lv_window_stats(&w, &st);
    assert_int_equal(st.signal, LV_WINDOW_SIGNAL_TTFT);
    assert_int_equal(st.phase, LV_WINDOW_PROBE);
    assert_int_equal(st.probes, probes + 1);
    r = sim_run(&s, &w, 3000, 1000, 8, 10);
    assert_true(r.mean >= 7 && r.mean <= 11);
}

/* Heavy tail: 5% of requests stall 5x. The window must not collapse or swing. */
static void outliers_do_not_collapse(void **state)
{
    (void)state;
    int ks[] = {4, 16};
    for (int model = MODEL_PROPORTIONAL; model <= MODEL_FIFO; model++) {
        for (size_t i = 0; i < LV_ARRAY_LEN(ks); i++) {
            sim_t s;
            lv_window_t w;
            int k = ks[i];
            sim_init(&s, model, k, 0.2, 500 + i);
            s.outlier_pct = 5;
            assert_int_equal(lv_window_init(&w, 1, 256, 1), 0);
            run_t r = sim_run(&s, &w, 6000, 2000, k, k + 2);
            print_run(model == MODEL_FIFO ? "FIFO, 5% stalls x5" : "proportional, 5% stalls x5", k, 1, &r);
            assert_true(r.mean >= k - 1 && r.mean <= k + 3);
            assert_true(r.sd <= 2.0);
        }
    }
}

static void errors_and_timeouts_shrink(void **state)
{
    (void)state;
    sim_t s;
    lv_window_t w;
    sim_init(&s, MODEL_PROPORTIONAL, 16, 0, 5);
    assert_int_equal(lv_window_init(&w, 2, 256, 2), 0);
    sim_run(&s, &w, 2000, 1000, 16, 18);
    int l = lv_window_limit(&w);
    assert_true(l >= 16 && l <= 18);
    lv_window_on_error(&w, s.now);
    assert_int_equal(lv_window_limit(&w), l * 3 / 4);
    l = lv_window_limit(&w);
    lv_window_on_timeout(&w, s.now);
    assert_int_equal(lv_window_limit(&w), l / 2);
    for (int i = 0; i < 20; i++)
        lv_window_on_error(&w, s.now);
    assert_int_equal(lv_window_limit(&w), 2); /* min */
    lv_window_stats_t st;
    lv_window_stats(&w, &st);
    assert_int_equal(st.errors, 21);
    assert_int_equal(st.timeouts, 1);
    /* the backend is fine again: the window grows back */
    run_t r = sim_run(&s, &w, 3000, 1500, 16, 18);
    print_run("after errors", 16, 2, &r);
    assert_true(r.mean >= 15 && r.mean <= 18.5);
    assert_true(r.converged_at <= 1200);
}

static void fixed_mode(void **state)
{
    (void)state;
    sim_t s;
    lv_window_t w;
    sim_init(&s, MODEL_PROPORTIONAL, 4, 0, 9);
    assert_int_equal(lv_window_init(&w, 1, 32, 8), 0);
    lv_window_set_adaptive(&w, false, 0);
    for (int i = 0; i < 500; i++) {
        sim_step(&s, &w);
        assert_int_equal(lv_window_limit(&w), 32);
    }
    lv_window_on_error(&w, s.now);
    lv_window_on_timeout(&w, s.now);
    assert_int_equal(lv_window_limit(&w), 32);
    lv_window_stats_t st;
    lv_window_stats(&w, &st);
    assert_int_equal(st.phase, LV_WINDOW_FIXED);
    assert_true(st.latency_ewma_us > 0); /* still measured, for metrics */
    lv_window_set_adaptive(&w, true, s.now);
    lv_window_stats(&w, &st);
    assert_int_equal(st.phase, LV_WINDOW_PROBE);
    run_t r = sim_run(&s, &w, 3000, 1000, 4, 6);
    print_run("fixed, then adaptive", 4, 8, &r);
    assert_true(r.min >= 4 && r.max <= 6);
}

/* Demand below capacity: the window does not run away (it stays near what is used). */
static void app_limited_does_not_grow(void **state)
{
    (void)state;
    lv_window_t w;
    assert_int_equal(lv_window_init(&w, 1, 256, 4), 0);
    uint64_t now = 0;
    /* 3 requests in flight at a time, always; backend has room for far more */
    for (int i = 0; i < 3000; i++) {
        now += 33333;
        lv_window_sample(&w, 100000, 120000, 20, 1 + i % 3, now);
    }
    int l = lv_window_limit(&w);
    print_message("app-limited at 3 in flight: limit %d\n", l);
    assert_true(l >= 3 && l <= 8);
}

/* Growth on demand: the rules, one at a time. */
static void demand_growth_rules(void **state)
{
    (void)state;
    lv_window_t w;
    lv_window_stats_t st;
    assert_int_equal(lv_window_init(&w, 1, 16, 4), 0);
    assert_int_equal(lv_window_on_demand(&w, 4, 0, 1000), 0); /* no first token seen yet: no evidence */
    lv_window_first_token(&w, 100000, 2000);
    assert_int_equal(lv_window_on_demand(&w, 3, 0, 3000), 0); /* not full */
    assert_int_equal(lv_window_on_demand(&w, 4, 1, 3000), 0); /* one may wait inside the backend */
    assert_int_equal(lv_window_on_demand(&w, 4, 0, 3000), 1);
    assert_int_equal(lv_window_limit(&w), 5);
    lv_window_stats(&w, &st);
    assert_int_equal(st.phase, LV_WINDOW_PROBE); /* the start-up round grows with it and goes on */
    assert_int_equal(st.demand_grows, 1);
    assert_int_equal(lv_window_on_demand(&w, 5, 0, 4000), 0); /* once per first token */
    lv_window_first_token(&w, 300000, 5000);                  /* 3x the floor: a queue */
    assert_int_equal(lv_window_on_demand(&w, 5, 0, 5000), 0);
    lv_window_first_token(&w, 140000, 6000); /* within 1.5x the floor */
    assert_int_equal(lv_window_on_demand(&w, 5, 0, 6000), 1);
    assert_int_equal(lv_window_limit(&w), 6);
    /* never past max */
    for (int i = 0; i < 40; i++) {
        lv_window_first_token(&w, 100000, 7000 + (uint64_t)i);
        lv_window_on_demand(&w, lv_window_limit(&w), 0, 7000 + (uint64_t)i);
    }
    assert_int_equal(lv_window_limit(&w), 16);
    /* fixed mode: never */
    lv_window_set_adaptive(&w, false, 8000);
    lv_window_first_token(&w, 100000, 8000);
    assert_int_equal(lv_window_on_demand(&w, 16, 0, 8000), 0);

    /* a probe below requests that cannot be taken back is abandoned: back to at least the limit */
    assert_int_equal(lv_window_init(&w, 1, 64, 8), 0);
    uint64_t now = 0;
    /* the cold probe's first round at 8 (the first 8 samples are skipped as the burst that filled
     * the window): no queue, base 100 ms; then it measures one step lower */
    for (int i = 0; i < 100 && lv_window_limit(&w) == 8; i++) {
        now += 50000;
        lv_window_sample(&w, 100000, 150000, 20, 8, now);
    }
    lv_window_stats(&w, &st);
    assert_int_equal(st.phase, LV_WINDOW_PROBE);
    assert_int_equal(lv_window_limit(&w), 4); /* measuring one step lower */
    lv_window_first_token(&w, 100000, now);
    /* a probe whose round can still end in a few request times is left alone */
    assert_int_equal(lv_window_on_demand(&w, 8, 0, now), 0);
    lv_window_stats(&w, &st);
    assert_int_equal(st.phase, LV_WINDOW_PROBE);
    /* no sample for long: it is stuck below requests that hold the backend */
    now += 5000000;
    lv_window_first_token(&w, 100000, now);
    assert_int_equal(lv_window_on_demand(&w, 8, 0, now), 1);
    assert_true(lv_window_limit(&w) >= 8);
    lv_window_stats(&w, &st);
    assert_true(st.phase != LV_WINDOW_PROBE);
}

/* Long answers hold every slot, so no request ends to feed a round: without growth on demand the
 * window would stay where it started while the backend has room for many more. A FIFO backend
 * with K slots, 150 ms prefill and answers longer than the run; requests wait without end. The
 * window grows one request per first token up to K + 1 (the one that finds the backend full waits
 * in its queue without a first token, which stops the growth), and no further. */
static void demand_growth_reaches_capacity(void **state)
{
    (void)state;
    enum { K = 24, PREFILL_US = 150000, MAXN = 256 };
    int ks[] = {4, 24, 40};
    for (size_t t = 0; t < LV_ARRAY_LEN(ks); t++) {
        int k = ks[t];
        lv_window_t w;
        assert_int_equal(lv_window_init(&w, 1, MAXN, 4), 0);
        uint64_t first_at[MAXN]; /* when each request's first token comes; 0 = never (queued) */
        uint64_t sent_at[MAXN];
        int n = 0, awaiting = 0, grows = 0;
        uint64_t now = 1000;
        for (int step = 0; step < 2000; step++) {
            while (n < lv_window_limit(&w) && n < MAXN) { /* unlimited demand: fill the window */
                sent_at[n] = now;
                first_at[n] = n < k ? now + PREFILL_US : 0; /* the (k+1)th waits for a slot forever */
                n++;
                awaiting++;
            }
            /* next first token */
            int next = -1;
            for (int i = 0; i < n; i++)
                if (first_at[i] && (next < 0 || first_at[i] < first_at[next]))
                    next = i;
            if (next < 0)
                break;
            now = first_at[next];
            first_at[next] = 0;
            awaiting--;
            lv_window_first_token(&w, now - sent_at[next], now);
            grows += lv_window_on_demand(&w, n, awaiting, now);
        }
        print_message("long answers, K=%d: window %d after %d growths (%d in flight, %d waiting inside)\n", k,
                      lv_window_limit(&w), grows, n, awaiting);
        assert_true(lv_window_limit(&w) >= k && lv_window_limit(&w) <= k + 1);
        assert_true(awaiting <= 1);
    }
}


/* Issue 11: against K = 8, 64, 256 slots (fakevlm's model: 100 ms to the first token, 400 ms of
 * decode, FIFO beyond K), from a window that starts below and above K, with and without ±10 %
 * noise, the window settles within 10 % of K in 30 s (about 60 service times), keeps the backend
 * >= 95 % busy and the queue inside it under 10 % of K for the next 60 s; then K halves and it
 * follows. A slot left by the halving finishes its request and takes no more (slots < K). */
static void finds_capacity_8_64_256(void **state)
{
    (void)state;
    int ks[] = {8, 64, 256};
    for (size_t i = 0; i < LV_ARRAY_LEN(ks); i++) {
        int k = ks[i];
        int starts[] = {LV_MAX(1, k / 4), 2 * k};
        for (size_t j = 0; j < LV_ARRAY_LEN(starts); j++) {
            for (int noisy = 0; noisy <= 1; noisy++) {
                ev_sim_t s;
                lv_window_t w;
                ev_init(&s, k, 100000, 400000, noisy ? 0.1 : 0, 11 + i * 5 + j * 2 + noisy);
                assert_int_equal(lv_window_init(&w, 1, 4 * k, starts[j]), 0);
                ev_reset_stats(&s);
                ev_run_for(&s, &w, 30);
                ev_result_t warm = ev_result(&s);
                ev_reset_stats(&s);
                ev_run_for(&s, &w, 60);
                ev_result_t r = ev_result(&s);
                lv_window_stats_t st;
                lv_window_stats(&w, &st);
                print_message("K=%-3d from %-3d noise %2d%%: first 30 s window %.1f [%d..%d]; then window %.1f [%d..%d], "
                              "queue inside %.2f, busy %.3f, %llu rounds\n",
                              k, starts[j], noisy ? 10 : 0, warm.window, warm.min, warm.max, r.window, r.min, r.max,
                              r.queue, r.busy, (unsigned long long)st.rounds);
                /* within 10 % of K; a window is whole requests, so for K < 10 within one */
                double tol = LV_MAX(1.0, 0.1 * k);
                assert_true(fabs(r.window - k) <= tol);
                assert_true(r.queue <= tol);
                assert_true(r.busy >= 0.95);
                /* capacity halves: the window follows it down */
                int half = k / 2;
                s.slots = half;
                ev_run_for(&s, &w, 20);
                ev_reset_stats(&s);
                ev_run_for(&s, &w, 30);
                r = ev_result(&s);
                print_message("    K -> %d: window %.1f [%d..%d], queue inside %.2f, busy %.3f\n", half, r.window, r.min,
                              r.max, r.queue, r.busy);
                /* looser than above: noise-free, K 64 -> 32 from 128 settles at 38.7-40.1 with 6.7-8.4
                 * waiting: with no jitter the slots finish in lockstep, the requests that queued end
                 * a whole service later than the rest and miss the round, so rounds read q = 0 at
                 * 37-45 (the noisy runs settle at 32.7); open in window.md */
                tol = LV_MAX(1.0, 0.3 * half);
                assert_true(fabs(r.window - half) <= tol);
                assert_true(r.queue <= tol);
                assert_true(r.busy >= 0.9); /* at K = 4 a base measurement at 3/4 costs a slot */
            }
        }
    }
}

/* Issue 11, the live bench (bench/scenarios/utilisation.sh) in simulation: fakevlm with K = 8, 64,
 * 256 slots, 200 ms to the first token + 800 ms of decode, 2K sessions each with one request out
 * at most (demand-limited: the window can sit far above what is in flight), livevlm's window max
 * 1024 starting at 256. After the bench's 8 s warm-up, over its 12 s: the window within 10 % of K
 * (one request for K = 8), at most 10 % of K waiting inside the backend, >= 95 % busy. K = 8 starts
 * 32x above K with only 16 requests in flight: the start-up round must follow what is really in
 * flight (a round of a whole window, 64 samples at 8 answers/s, outlasted the warm-up), and the
 * window must come down from 256 to near K within a few request times. Jitter of 5 and 10 % (a
 * noise-free FIFO runs its slots in lockstep, see finds_capacity_8_64_256). */
static void finds_capacity_from_far_above(void **state)
{
    (void)state;
    int ks[] = {8, 64, 256};
    int ok = 1;
    for (size_t i = 0; i < LV_ARRAY_LEN(ks); i++) {
        for (int noisy = 0; noisy <= 1; noisy++) {
            int k = ks[i];
            ev_sim_t s;
            lv_window_t w;
            ev_init(&s, k, 200000, 800000, noisy ? 0.1 : 0.05, 71 + i * 3 + noisy);
            s.demand = 2 * k;
            assert_int_equal(lv_window_init(&w, 1, 1024, 256), 0);
            int tol = (int)LV_MAX(1.0, 0.1 * k);
            ev_reset_stats(&s);
            double settled = ev_run_until_settled(&s, &w, 8, k - tol, k + tol);
            ev_result_t warm = ev_result(&s);
            ev_reset_stats(&s);
            ev_run_for(&s, &w, 12);
            ev_result_t r = ev_result(&s);
            lv_window_stats_t st;
            lv_window_stats(&w, &st);
            print_message("K=%-3d demand %-3d from 256 noise %2d%%: warm-up 8 s window %.1f [%d..%d], within 10 %% "
                          "after %.1f s; then 12 s window %.1f [%d..%d], queue inside %.2f, busy %.3f, %llu rounds, "
                          "%llu probes\n",
                          k, 2 * k, noisy ? 10 : 5, warm.window, warm.min, warm.max, settled, r.window, r.min, r.max,
                          r.queue, r.busy, (unsigned long long)st.rounds, (unsigned long long)st.probes);
            /* every case printed before one fails */
            ok &= settled <= 6.0 && fabs(r.window - k) <= tol && r.queue <= tol && r.busy >= 0.95;
        }
    }
    assert_true(ok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(init_and_bounds),
        cmocka_unit_test(converges_from_below_and_above),
        cmocka_unit_test(noise_and_fifo_stay_bounded),
        cmocka_unit_test(follows_capacity_changes),
        cmocka_unit_test(answer_length_does_not_matter),
        cmocka_unit_test(outliers_do_not_collapse),
        cmocka_unit_test(errors_and_timeouts_shrink),
        cmocka_unit_test(fixed_mode),
        cmocka_unit_test(app_limited_does_not_grow),
        cmocka_unit_test(demand_growth_rules),
        cmocka_unit_test(demand_growth_reaches_capacity),
        cmocka_unit_test(finds_capacity_8_64_256),
        cmocka_unit_test(finds_capacity_from_far_above),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

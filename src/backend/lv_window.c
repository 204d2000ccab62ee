/* lv_window.c - adaptive concurrency window (Vegas-style queue estimate over measured base latency). */
#include "lv_window.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lv_common.h"

/* Thresholds on q, the requests waiting inside the backend, each max(absolute, fraction of the
 * window): about one request on small backends, a few per cent on large ones, where one waiting
 * request adds only service / K to TTFT and the noise of a round's mean is worth a request or two. */
#define QUEUE_LOW 0.5        /* q below (and the window full): grow */
#define QUEUE_LOW_FRAC 0.01
#define QUEUE_HIGH 0.9       /* q above: shrink to the capacity estimate */
#define QUEUE_HIGH_FRAC 0.04
#define PROBE_PATIENCE 4.0   /* growth on demand leaves a probe alone for this many request times
                              * more than its round needs */
#define FASTER_FRACTION 0.85 /* rounds this far under base mean the backend got faster */
#define EWMA_ALPHA 0.1       /* metrics only */
#define ROUND_MIN 4          /* samples per round: about one window, within these bounds */
#define ROUND_MAX LV_WINDOW_ROUND_CAP
#define PROBE_ROUND_MIN 16   /* base comes from a probe round: more samples, less noise */
#define PROBE_ROUND_MAX 64
#define PROBE_MIN_SAMPLES 1024 /* and at least this many samples between probes */
#define PROBE_MIN_INTERVAL_US 30000000ULL /* and 30 s: 64 rounds of a 51-request window at 200 ms
                                           * were 15 s, each probe a dip (issue 11) */
#define DEMAND_TTFT_FACTOR 1.5 /* growth on demand: the latest first token within this × floor */
#define DEMAND_TTFT_SLACK_US 2000.0 /* ... plus this (timer and scheduling noise on tiny TTFTs) */
#define QUEUE_HOLD_FACTOR 3.0 /* q up to this x the threshold waits a round on large windows */
#define GROW_FRACTION_DEN 32 /* growth steps are at least window / this */
#define WARM_FINE_MIN 48     /* a warm probe steps 7/8 down from this many in flight, else 3/4 */
#define FLOOR_FACTOR 1.25    /* a round within this x the lowest first token seen had no queue */

static int clamp_limit(const lv_window_t *w, long v)
{
    if (v < w->min_limit)
        return w->min_limit;
    if (v > w->max_limit)
        return w->max_limit;
    return (int)v;
}

static int round_size(int level, int lo, int hi)
{
    return level < lo ? lo : level > hi ? hi : level;
}

/* The window the caller sees. */
static int effective(const lv_window_t *w)
{
    if (w->phase == LV_WINDOW_FIXED)
        return w->max_limit;
    return w->phase == LV_WINDOW_PROBE ? w->probe_level : w->limit;
}

/* Start collecting a new round. fresh: only requests started from now on count (the window
 * changed); otherwise requests started under the same window keep counting. When the window
 * grew, the requests that fill the new room are dispatched in a burst and the first of them saw
 * less concurrency than the window: skip as many samples as the window grew by. */
static void round_reset(lv_window_t *w, uint64_t now_us, int fresh, int lo, int hi)
{
    if (fresh) {
        w->round_start_us = now_us;
        int grew = effective(w) - w->round_level;
        w->round_skip = grew > 0 ? grew : 0;
        w->round_from = w->round_level;
        w->round_level = effective(w);
        w->round_skipped = 0;
        w->round_seen_max = 0;
    }
    w->round_n = 0;
    w->round_lo = lo;
    w->round_hi = hi;
    w->round_need = round_size(w->round_level, lo, hi);
    w->round_sum_x = 0;
    w->round_sum_inflight = 0;
    w->round_sum_total = 0;
    w->round_max_inflight = 0;
}

/* Set the limit and start a round under it. fresh: a new round even if the limit is unchanged
 * (the window the caller saw was different, e.g. a probe level). */
static void set_limit(lv_window_t *w, long v, int fresh, uint64_t now_us)
{
    int nv = clamp_limit(w, v);
    /* A small step up (a window of 32 or more, by at most 1/32) goes on collecting: requests
     * started under a window one step smaller saw nearly the same backend, and a fresh round
     * waits a whole request time for its first sample (rounds of 2 request times made growth
     * twice as slow). The round's level follows, so that its requests are not dropped as started
     * while a larger window drained. */
    int small_up = nv > w->limit && w->phase == LV_WINDOW_STEADY && w->limit >= GROW_FRACTION_DEN &&
                   nv - w->limit <= w->limit / GROW_FRACTION_DEN && w->round_level == w->limit;
    fresh |= nv != w->limit && !small_up;
    w->limit = nv;
    if (small_up)
        w->round_level = nv;
    round_reset(w, now_us, fresh, ROUND_MIN, ROUND_MAX);
}

/* One step down from level: by frac, at least 1, not below min. */
static int step_down(const lv_window_t *w, int level, double frac)
{
    int v = (int)floor((double)level * frac);
    if (v >= level)
        v = level - 1;
    return clamp_limit(w, v);
}

static void probe_level_set(lv_window_t *w, int level, uint64_t now_us)
{
    w->probe_level = level;
    round_reset(w, now_us, 1, PROBE_ROUND_MIN, PROBE_ROUND_MAX);
}

/* Measure from the current limit down: the first round at the limit itself (no base known). */
static void probe_start_cold(lv_window_t *w, uint64_t now_us)
{
    w->phase = LV_WINDOW_PROBE;
    w->probes++;
    w->probe_cold = 1;
    w->probe_hi_level = 0;
    w->probe_queue_seen = 0;
    probe_level_set(w, w->limit, now_us);
}

/* A new base measurement: averaged with the last one when they agree (noise), taken as is when
 * they do not (the backend changed). */
static void base_measured(lv_window_t *w, double x, uint64_t now_us)
{
    w->base_at_us = now_us;
    if (w->base_us > 0 && x > w->base_us * 0.85 && x < w->base_us * 1.15)
        w->base_us = (w->base_us + x) / 2;
    else
        w->base_us = x;
    w->samples_at_base = w->samples;
    w->rounds_since_base = 0;
    w->below_base_rounds = 0;
}

/* Requests waiting inside the backend during a round (Little's law): the backend completes
 * inflight / total requests a second, and each of them waited x - base longer than it would with
 * no queue, so inflight × (x - base) / total are waiting at any time. total is the round's mean
 * request time on the signal's scale (for the per-token signal, x itself). In a FIFO with K slots
 * and a window of K + e this is e exactly; dividing by x instead of total (what a Vegas rule on
 * TTFT alone would do) reads every ms of TTFT noise total / TTFT times too large. */
static double queue_estimate(const lv_window_t *w, double x, double inflight, double total)
{
    if (w->base_us <= 0 || total <= 0)
        return 0;
    return inflight * (x - w->base_us) / total;
}

static double queue_threshold(int level, double abs, double frac)
{
    return LV_MAX(abs, frac * level);
}

/* The probe found a level with no queue (or could go no lower): set the window from it. */
static void probe_finish(lv_window_t *w, double base_x, uint64_t now_us)
{
    base_measured(w, base_x, now_us);
    w->phase = LV_WINDOW_STEADY;
    long nv = w->limit;
    if (w->probe_queue_seen) {
        /* capacity from the lowest level that was queueing: what was in flight less what waited */
        double q = queue_estimate(w, w->probe_q_x, w->probe_q_inflight, w->probe_q_total);
        nv = lround(w->probe_q_inflight - q) + 1;
    } else if (w->probe_cold) {
        /* the level we started at had no queue: grow from there */
        w->phase = LV_WINDOW_GROW;
        nv = w->probe_hi_level;
    }
    set_limit(w, nv, 1, now_us); /* fresh: the probe ran lower */
    w->limit_at_base = w->limit;
}

/* The round's latency is at the floor, the lowest first token seen: no request of it waited in a
 * queue. The floor comes from the requests that found a free slot (the first K of a start-up
 * burst); it sits a little under the true base (the minimum of noisy samples), hence the factor. */
static int at_floor(const lv_window_t *w, double x)
{
    return w->signal == LV_WINDOW_SIGNAL_TTFT && w->ft_min_us > 0 &&
           x <= w->ft_min_us * FLOOR_FACTOR + DEMAND_TTFT_SLACK_US;
}

static void probe_hi_set(lv_window_t *w, double x, double inflight, double total)
{
    w->probe_hi_level = w->probe_level;
    w->probe_hi_x = x;
    w->probe_hi_inflight = inflight;
    w->probe_hi_total = total;
}

static void probe_round_done(lv_window_t *w, double x, double inflight, double total, int max_inflight,
                             uint64_t now_us)
{
    int used = LV_MIN(w->probe_level, max_inflight);
    if (w->probe_hi_level == 0 && at_floor(w, x)) {
        /* start-up round with no queue: its latency is the base, no need to measure lower */
        probe_hi_set(w, x, inflight, total);
        probe_finish(w, x, now_us);
        return;
    }
    if (w->probe_hi_level == 0 && w->signal == LV_WINDOW_SIGNAL_TTFT && w->ft_min_us > 0) {
        /* start-up round with a queue (a window far above K): measure next at the capacity the
         * floor suggests, what was in flight less what waited, instead of halving step by step
         * (16 -> 8 -> 4 at 8 answers/s took most of the bench's warm-up) */
        double q = inflight * (x - w->ft_min_us) / total;
        long khat = lround(inflight - q);
        probe_hi_set(w, x, inflight, total);
        long next = LV_MIN(khat, (long)step_down(w, used, 0.75));
        probe_level_set(w, clamp_limit(w, next), now_us);
        return;
    }
    if (w->probe_hi_level != 0) {
        /* In a queue latency is proportional to concurrency, so it falls to f of what it was;
         * with no queue it stays. The level above was queueing when latency fell past half-way
         * (and concurrency really fell: an idle backend's levels look alike). */
        double f = inflight / w->probe_hi_inflight;
        double ratio = x / w->probe_hi_x;
        if (f >= 0.9 || ratio >= (1.0 + f) / 2.0) {
            probe_finish(w, x, now_us);
            return;
        }
        w->probe_queue_seen = 1;
        w->probe_q_x = w->probe_hi_x;
        w->probe_q_inflight = w->probe_hi_inflight;
        w->probe_q_total = w->probe_hi_total;
        if (at_floor(w, x)) { /* the level above queued, this one is at the floor: measured */
            probe_finish(w, x, now_us);
            return;
        }
    }
    /* this level becomes the one to compare with; go one step lower (halving) */
    w->probe_hi_level = w->probe_level;
    w->probe_hi_x = x;
    w->probe_hi_inflight = inflight;
    w->probe_hi_total = total;
    /* from what was really in flight: a window larger than the demand (fewer sessions than the
     * window, each with one frame out) would otherwise be "lowered" to a level it never used */
    int next = step_down(w, used, 0.5);
    if (next == w->probe_level) { /* at min: the best no-queue latency we can see is this one */
        probe_finish(w, x, now_us);
        return;
    }
    probe_level_set(w, next, now_us);
}

/* Steady state: start a base measurement one step (7/8 or 3/4) below, comparing with this round. */
static void probe_start_warm(lv_window_t *w, double x, double inflight, double total, int max_inflight,
                             uint64_t now_us)
{
    int used = LV_MIN(w->limit, max_inflight);
    /* 7/8 from WARM_FINE_MIN in flight: a dip to 3/4 cost a quarter of the backend (or of the
     * demand, when it is below the window) for a round, live (issue 11) */
    int next = step_down(w, used, used >= WARM_FINE_MIN ? 0.875 : 0.75);
    if (next == w->limit) { /* at min: the best no-queue latency we can see is this one */
        base_measured(w, x, now_us);
        w->limit_at_base = w->limit;
        return;
    }
    w->phase = LV_WINDOW_PROBE;
    w->probes++;
    w->probe_cold = 0;
    w->probe_queue_seen = 0;
    w->probe_hi_level = w->limit;
    w->probe_hi_x = x;
    w->probe_hi_inflight = inflight;
    w->probe_hi_total = total;
    probe_level_set(w, next, now_us);
}

static void steady_round_done(lv_window_t *w, double x, double inflight, double total, int max_inflight,
                              uint64_t now_us)
{
    if (w->base_us <= 0) {
        probe_start_cold(w, now_us);
        return;
    }
    double q = queue_estimate(w, x, inflight, total);
    w->queue_est = q;
    /* got faster: two rounds in a row well under base, take the new level as base */
    if (x < w->base_us * FASTER_FRACTION) {
        if (++w->below_base_rounds >= 2)
            base_measured(w, x, now_us);
    } else {
        w->below_base_rounds = 0;
    }
    long nv = w->limit;
    double high = queue_threshold(w->limit, QUEUE_HIGH, QUEUE_HIGH_FRAC);
    w->high_rounds = q > high ? w->high_rounds + 1 : 0;
    /* A large window waits for a second round over the threshold unless far over: one round's
     * mean TTFT 40 ms up (a stall of the gateway's loop on a shared machine) read as 10 waiting of
     * 257 and threw the window 35 under 256 slots, live (issue 11). A real queue inside a FIFO
     * backend stays until the window comes down; a window under 32 acts at once (one request
     * there is a few per cent). */
    int hold = q > high && q <= QUEUE_HOLD_FACTOR * high && w->high_rounds < 2 && w->limit >= GROW_FRACTION_DEN &&
               w->phase == LV_WINDOW_STEADY;
    if (hold) {
        /* keep the window */
    } else if (q > high) {
        w->high_rounds = 0;
        /* straight to the capacity estimate, what was in flight less what waited (at least -1,
         * at most halving): a slow start that doubled past K, or a step that overshot, is undone
         * in one round instead of one request per round */
        nv = LV_MAX(LV_MIN(w->limit, max_inflight) / 2, lround(inflight - q));
        nv = LV_MIN(nv, (long)w->limit - 1);
        w->phase = LV_WINDOW_STEADY;
    } else if (w->phase == LV_WINDOW_GROW) {
        /* slow start: double while no clear queue and the window fills */
        if (max_inflight >= w->limit) {
            nv = 2L * w->limit;
            w->grow_from = w->limit;
        }
    } else if (q < queue_threshold(w->limit, QUEUE_LOW, QUEUE_LOW_FRAC) && max_inflight >= w->limit) {
        /* +1, and after three rounds of +1 in a row, steps that double (up to a quarter of the
         * window): capacity that came back is regained in a few rounds, and an overshoot is
         * caught by the jump rule above */
        long step = 1;
        if (w->increases >= 3)
            step = LV_MIN(1L << LV_MIN(w->increases - 2, 20), LV_MAX(1L, (long)w->limit / 4));
        /* and at least 1/32 of the window: one request a round is 80 s from 175 to 256 slots at
         * a round a second (live, issue 11); an overshoot of 3 % is within the jump rule's reach */
        step = LV_MAX(step, (long)w->limit / GROW_FRACTION_DEN);
        nv = w->limit + step;
    }
    w->increases = nv > w->limit && w->phase == LV_WINDOW_STEADY ? w->increases + 1 : 0;
    if (nv >= w->max_limit)
        w->phase = LV_WINDOW_STEADY; /* nothing left to grow into */
    set_limit(w, nv, 0, now_us);
    w->rounds_since_base++;
    /* re-measure base now and then, and soon when the window has halved since: latency that a
     * smaller window does not bring down means the base itself moved */
    int due = w->rounds_since_base >= LV_WINDOW_PROBE_ROUNDS && w->samples - w->samples_at_base >= PROBE_MIN_SAMPLES &&
              now_us - w->base_at_us >= PROBE_MIN_INTERVAL_US;
    int halved = w->limit_at_base >= 4 && 2 * w->limit <= w->limit_at_base;
    if (due || halved)
        probe_start_warm(w, x, inflight, total, max_inflight, now_us);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The round's latency: the mean of the middle 15/16 of its samples. A stalled request or two (a
 * long prompt, a GC pause) must not read as a queue, and a lucky one must not lower the base. */
static double trimmed_mean(lv_window_t *w)
{
    int n = LV_MIN(w->round_n, LV_WINDOW_ROUND_CAP);
    if (n < w->round_n) /* cannot happen (rounds are at most the cap); stay correct anyway */
        return w->round_sum_x / w->round_n;
    qsort(w->round_x, (size_t)n, sizeof(w->round_x[0]), cmp_double);
    int cut = n / 32;
    double sum = 0;
    for (int i = cut; i < n - cut; i++)
        sum += w->round_x[i];
    return sum / (n - 2 * cut);
}

int lv_window_init(lv_window_t *w, int min_limit, int max_limit, int initial_limit)
{
    memset(w, 0, sizeof(*w));
    w->min_limit = w->max_limit = w->limit = w->probe_level = 1;
    w->phase = LV_WINDOW_STEADY;
    if (min_limit < 1 || max_limit < min_limit || max_limit > LV_WINDOW_MAX_LIMIT || initial_limit < min_limit ||
        initial_limit > max_limit)
        return LV_EINVAL;
    w->min_limit = min_limit;
    w->max_limit = max_limit;
    w->limit = initial_limit;
    probe_start_cold(w, 0);
    w->probes = 0;
    return 0;
}

void lv_window_set_adaptive(lv_window_t *w, bool adaptive, uint64_t now_us)
{
    if (!adaptive) {
        w->phase = LV_WINDOW_FIXED;
        return;
    }
    if (w->phase != LV_WINDOW_FIXED)
        return;
    w->base_us = 0;
    probe_start_cold(w, now_us);
}

void lv_window_sample(lv_window_t *w, uint64_t ttft_us, uint64_t total_us, int tokens, int inflight_at_start,
                      uint64_t now_us)
{
    if (total_us == 0 || inflight_at_start < 1)
        return;
    lv_window_signal_t kind = ttft_us > 0 ? LV_WINDOW_SIGNAL_TTFT : LV_WINDOW_SIGNAL_PER_TOKEN;
    double x = kind == LV_WINDOW_SIGNAL_TTFT ? (double)ttft_us : (double)total_us / (double)(tokens > 0 ? tokens : 1);
    w->samples++;
    if (kind != w->signal) {
        /* a different signal has a different scale: measure base again (first sample too) */
        int first = w->signal == LV_WINDOW_SIGNAL_NONE;
        w->signal = kind;
        w->latency_ewma_us = x;
        if (!first && w->phase != LV_WINDOW_FIXED) {
            w->base_us = 0;
            probe_start_cold(w, now_us);
        }
    }
    w->latency_ewma_us += EWMA_ALPHA * (x - w->latency_ewma_us);
    w->total_ewma_us = w->total_ewma_us > 0 ? w->total_ewma_us + EWMA_ALPHA * ((double)total_us - w->total_ewma_us)
                                            : (double)total_us;
    if (w->phase == LV_WINDOW_FIXED)
        return;
    uint64_t start_us = now_us >= total_us ? now_us - total_us : 0;
    if (start_us < w->round_start_us)
        return; /* started under an older window */
    if (inflight_at_start > w->round_level)
        return; /* started while a larger window drained: it queued behind that window's requests */
    if (inflight_at_start > w->round_seen_max)
        w->round_seen_max = inflight_at_start;
    /* The burst that filled the new room is at most what the window grew by, and no more than
     * demand allowed past the old window: a window above what is in flight (few sessions: the last
     * round did not fill the old window; or the ramp at start-up) has no burst beyond what was
     * really dispatched. Skipping a whole window's
     * growth there (256 at start-up) held the first round back for 30 s at 8 answers/s. */
    int skip = w->round_skip;
    if (w->round_from == 0 || w->demand_seen < w->round_from)
        skip = LV_MIN(skip, w->round_seen_max - w->round_from);
    if (w->round_skipped < skip) {
        w->round_skipped++;
        return;
    }
    if (w->round_n < LV_WINDOW_ROUND_CAP)
        w->round_x[w->round_n] = x;
    w->round_n++;
    w->round_sum_x += x;
    w->round_sum_inflight += inflight_at_start;
    w->round_sum_total += kind == LV_WINDOW_SIGNAL_TTFT ? (double)total_us : x;
    if (inflight_at_start > w->round_max_inflight)
        w->round_max_inflight = inflight_at_start;
    /* a round is one window of samples, of what was really in flight (this round's or, while it
     * has seen little, the last one's: samples of a burst come in with low counts): a window far
     * above the demand (256 with 16 sessions) would otherwise wait for 64 samples at 8 answers/s */
    w->round_need =
        round_size(LV_MIN(w->round_level, LV_MAX(w->demand_seen, w->round_seen_max)), w->round_lo, w->round_hi);
    if (w->round_n < w->round_need)
        return;
    w->demand_seen = w->round_seen_max;
    double mean_x = trimmed_mean(w);
    double mean_inflight = w->round_sum_inflight / w->round_n;
    double mean_total = w->round_sum_total / w->round_n;
    int max_inflight = w->round_max_inflight;
    w->rounds++;
    if (w->phase == LV_WINDOW_PROBE)
        probe_round_done(w, mean_x, mean_inflight, mean_total, max_inflight, now_us);
    else
        steady_round_done(w, mean_x, mean_inflight, mean_total, max_inflight, now_us);
}

void lv_window_first_token(lv_window_t *w, uint64_t ttft_us, uint64_t now_us)
{
    double x = (double)ttft_us;
    w->ft_last_us = x;
    if (w->ft_min_us <= 0 || x < w->ft_min_us)
        w->ft_min_us = x;
    w->ft_fresh = 1;
    /* Slow start doubled past capacity: the first request that found every slot taken gets its
     * first token late, one slot's turn after the doubling, long before the round at the doubled
     * window ends (that took 2-4 request times with a queue of a whole window inside the backend:
     * 256 -> 512 against 256 slots). Back to the level the last round found without a queue. */
    if (w->phase == LV_WINDOW_GROW && w->grow_from > 0 && w->base_us > 0 && w->signal == LV_WINDOW_SIGNAL_TTFT &&
        x > w->base_us * DEMAND_TTFT_FACTOR + DEMAND_TTFT_SLACK_US) {
        w->phase = LV_WINDOW_STEADY;
        w->increases = 0;
        set_limit(w, w->grow_from, 1, now_us);
    }
}

int lv_window_on_demand(lv_window_t *w, int inflight, int awaiting_first, uint64_t now_us)
{
    if (w->phase == LV_WINDOW_FIXED || !w->ft_fresh || awaiting_first > 0)
        return 0;
    int eff = effective(w);
    if (inflight < eff || eff >= w->max_limit)
        return 0;
    /* the floor: the measured no-queue TTFT, or the lowest seen before one is measured */
    lv_window_stats_t st;
    lv_window_stats(w, &st);
    double floor_us = st.ttft_floor_us;
    if (floor_us <= 0 || w->ft_last_us > floor_us * DEMAND_TTFT_FACTOR + DEMAND_TTFT_SLACK_US)
        return 0;
    if (w->phase == LV_WINDOW_PROBE && w->probe_cold && w->probe_hi_level == 0) {
        /* the start-up round measures the window itself: it may grow with it, and goes on */
        w->ft_fresh = 0;
        w->demand_grows++;
        w->probe_level = w->limit = clamp_limit(w, (long)LV_MAX(eff, inflight) + 1);
        w->round_level = w->probe_level;
        return 1;
    }
    if (w->phase == LV_WINDOW_PROBE) {
        /* A probe whose round ends within a few request times is left alone: abandoning it
         * whenever a first token came at the floor (every few ms under load) meant the base was
         * never measured and the window never left its start (issue 11). One that has waited
         * longer is stuck below requests we cannot take back (answers of a minute, issue 12):
         * it would measure nothing. Measure again later (a cold start measures again at the next
         * round's end). */
        double patience_us = w->total_ewma_us * (PROBE_PATIENCE + (double)w->round_need / LV_MAX(1, eff));
        if (w->samples > 0 && (double)(now_us - w->round_start_us) < patience_us)
            return 0;
        w->phase = LV_WINDOW_STEADY;
        w->rounds_since_base = 0;
        w->samples_at_base = w->samples;
    }
    w->ft_fresh = 0;
    w->demand_grows++;
    w->increases = 0;
    /* one above what is in use: during a probe the limit is the level being measured down from,
     * and jumping back to it would queue inside the backend what the probe just found too much */
    set_limit(w, (long)LV_MAX(eff, inflight) + 1, 1, now_us);
    return 1;
}

/* Multiply the window the caller sees by num/den (at least -1, not below min). A probe or slow
 * start in progress is abandoned; without a base yet, the next round starts measuring again. */
static void shrink(lv_window_t *w, long num, long den, uint64_t now_us)
{
    if (w->phase == LV_WINDOW_FIXED)
        return;
    long cur = effective(w);
    long nv = cur * num / den;
    if (nv >= cur)
        nv = cur - 1;
    w->phase = LV_WINDOW_STEADY;
    w->increases = 0;
    set_limit(w, nv, 1, now_us);
}

void lv_window_on_error(lv_window_t *w, uint64_t now_us)
{
    w->errors++;
    shrink(w, 3, 4, now_us);
}

void lv_window_on_timeout(lv_window_t *w, uint64_t now_us)
{
    w->timeouts++;
    shrink(w, 1, 2, now_us);
}

int lv_window_limit(const lv_window_t *w)
{
    if (w->phase == LV_WINDOW_FIXED)
        return w->max_limit;
    if (w->phase == LV_WINDOW_PROBE)
        return w->probe_level;
    return w->limit;
}

void lv_window_stats(const lv_window_t *w, lv_window_stats_t *out)
{
    out->limit = lv_window_limit(w);
    out->phase = w->phase;
    out->signal = w->signal;
    out->base_us = w->base_us;
    out->latency_ewma_us = w->latency_ewma_us;
    out->queue_est = w->queue_est;
    out->samples = w->samples;
    out->rounds = w->rounds;
    out->probes = w->probes;
    out->errors = w->errors;
    out->timeouts = w->timeouts;
    out->demand_grows = w->demand_grows;
    out->ttft_floor_us = w->base_us > 0 && w->signal == LV_WINDOW_SIGNAL_TTFT ? w->base_us : w->ft_min_us;
}

const char *lv_window_phase_name(lv_window_phase_t phase)
{
    switch (phase) {
    case LV_WINDOW_PROBE:
        return "probe";
    case LV_WINDOW_GROW:
        return "grow";
    case LV_WINDOW_STEADY:
        return "steady";
    case LV_WINDOW_FIXED:
        return "fixed";
    }
    return "unknown";
}

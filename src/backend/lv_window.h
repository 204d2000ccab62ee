/* lv_window.h - adaptive concurrency window for one backend: how many requests may be in flight
 * so that the backend is kept busy without a queue building inside it. Pure: fed with samples
 * and the caller's clock, no I/O, one thread. The rule and its measurements are in
 * docs/internals/window.md; in short, TCP Vegas applied to requests:
 *
 *  - Signal: time to first token (TTFT). A request that finds every batch slot of an
 *    OpenAI-compatible server taken waits in the server's queue before its prefill, so the queue
 *    shows up whole in TTFT, while TTFT does not depend on how long the answer is (total time
 *    grows with the number of tokens, 10x between answers). A backend that gives no TTFT (not
 *    streamed) is judged on total time per token.
 *  - Rounds: samples are taken in rounds of about one window of what is really in flight (a
 *    window above the demand counts the demand) that started under the same window; a round's
 *    latency is the mean of its middle 15/16 (stalls do not count).
 *  - Base: the no-queue latency. At start the first round is read against the lowest first token
 *    seen (the requests that found a free slot): at that floor, it is the base; above it, the
 *    window measures next at the capacity the floor implies, and then steps down (halving) until a
 *    round sits at the floor or latency stops falling with concurrency. Later, at most every 30 s
 *    (and LV_WINDOW_PROBE_ROUNDS rounds, 1024 samples), and soon after the window halved, one round
 *    7/8 (3/4 under 48 in flight) below: latency that does not fall is the base.
 *  - Each round: q = inflight × (TTFT − base) / total request time, the requests waiting inside
 *    the backend (Little's law). q < max(0.5, 1 % of the window) and the window was full: grow, by
 *    at least 1/32 of the window (+1, doubling after three rounds, up to a quarter); q > max(0.9,
 *    4 %): straight down to the capacity estimate inflight − q (at most halving; a window of 32 or
 *    more waits for a second such round unless q is over 3× the threshold). The window so settles
 *    a few per cent above K: every slot busy, a request or a few per cent waiting inside.
 *  - After a start-up round at the floor with the window full, it doubles per round (slow start)
 *    until a queue shows; the first late first token (over 1.5 × base + 2 ms) takes it back to
 *    the last level without one.
 *  - Growth on demand: rounds need requests to end, and long answers (thousands of tokens) may
 *    hold every slot for a minute while the backend has room for many more. So when requests
 *    wait and the window is full, it grows by one if every request in flight is past its first
 *    token (none waits in a queue inside the backend) and the latest first token came at the
 *    floor (lv_window_on_demand; first tokens are reported as they come, lv_window_first_token).
 *  - Errors shrink it (× 3/4), timeouts halve it. Always within [min, max].
 * Fixed mode (adaptive off) pins the limit at max, for comparison runs. */
#ifndef LV_WINDOW_H
#define LV_WINDOW_H

#include <stdbool.h>
#include <stdint.h>

#define LV_WINDOW_MAX_LIMIT 4096
#define LV_WINDOW_PROBE_ROUNDS 64 /* rounds between base measurements in steady state */
#define LV_WINDOW_ROUND_CAP 512   /* most samples in one round */

typedef enum {
    LV_WINDOW_PROBE,  /* measuring the no-queue latency at a lower level */
    LV_WINDOW_GROW,   /* after start-up, doubling per round until a queue shows */
    LV_WINDOW_STEADY, /* ±1 per round around capacity */
    LV_WINDOW_FIXED,  /* adaptive off: limit = max */
} lv_window_phase_t;

typedef enum {
    LV_WINDOW_SIGNAL_NONE,
    LV_WINDOW_SIGNAL_TTFT,      /* time to first token */
    LV_WINDOW_SIGNAL_PER_TOKEN, /* total time / tokens, when no TTFT is known */
} lv_window_signal_t;

/** One backend's window. Embedded by its owner (e.g. next to lv_backend_t); fields are private. */
typedef struct lv_window {
    int min_limit, max_limit;
    int limit;            /* the window outside probes */
    int probe_level;      /* the window during a probe */
    lv_window_phase_t phase;
    lv_window_signal_t signal;
    double base_us;       /* no-queue latency of the signal; 0 = not measured yet */
    double latency_ewma_us; /* for metrics only */
    double total_ewma_us; /* mean request time: how long a probe round may take */
    double queue_est;     /* q of the last round */
    /* the round being collected: samples of requests started at or after round_start_us */
    uint64_t round_start_us;
    int round_level;      /* the window the round is collected under */
    int round_from;       /* the window before it: what was in flight when the round began */
    int round_skip;       /* most samples to skip: the burst that filled a larger window */
    int round_skipped;
    int round_seen_max;   /* most in flight at a start among the round's samples, skipped too */
    int demand_seen;      /* round_seen_max of the last round that ended: what demand filled */
    int round_lo, round_hi; /* samples a round needs: what was really in flight, within these */
    int round_n, round_need;
    double round_sum_x, round_sum_inflight, round_sum_total;
    double round_x[LV_WINDOW_ROUND_CAP]; /* the round's latencies (for a trimmed mean) */
    int round_max_inflight;
    /* probing */
    int probe_cold;       /* started with no base: its first round measures the limit itself */
    int probe_hi_level;   /* the level measured before this one and its mean latency */
    double probe_hi_x, probe_hi_inflight, probe_hi_total;
    int probe_queue_seen; /* an upper level was found queueing */
    double probe_q_x, probe_q_inflight, probe_q_total; /* the lowest level found queueing */
    int limit_at_base;    /* limit when the base was last measured */
    int rounds_since_base;
    uint64_t samples_at_base;
    uint64_t base_at_us;  /* when the base was last measured */
    int increases;        /* consecutive rounds that raised the limit in steady state */
    int grow_from;        /* slow start: the limit before the last doubling (it had no queue) */
    int high_rounds;      /* consecutive rounds with q over the shrink threshold */
    int below_base_rounds;/* consecutive rounds well below base (the backend got faster) */
    uint64_t samples, rounds, probes, errors, timeouts;
    /* growth on demand: evidence from first tokens as they arrive */
    double ft_last_us;    /* TTFT of the latest first token */
    double ft_min_us;     /* lowest TTFT seen: the floor while no base is measured */
    int ft_fresh;         /* a first token arrived since the last growth on demand */
    uint64_t demand_grows;
} lv_window_t;

typedef struct {
    int limit;
    lv_window_phase_t phase;
    lv_window_signal_t signal;
    double base_us, latency_ewma_us, queue_est;
    uint64_t samples, rounds, probes, errors, timeouts;
    uint64_t demand_grows; /* growths by lv_window_on_demand */
    double ttft_floor_us;  /* no-queue time to first token: the base when measured on TTFT, else the
                            * lowest first token seen; 0 = none seen yet */
} lv_window_stats_t;

/** Start a window: min_limit 1..max_limit, max_limit ..LV_WINDOW_MAX_LIMIT, initial_limit in
 * [min, max] (the configured max_concurrency is a good start; the first round measures there).
 * Adaptive on. LV_EINVAL on bad bounds (the window is then left pinned at 1). */
int lv_window_init(lv_window_t *w, int min_limit, int max_limit, int initial_limit);
/** Adaptive on (default) or off. Off: the limit is max_limit and samples only feed the metrics.
 * Switching on again starts over with a base measurement at the current limit. */
void lv_window_set_adaptive(lv_window_t *w, bool adaptive, uint64_t now_us);

/** Feed one finished, successful request.
 * ttft_us: dispatch to first content token, 0 if unknown (not streamed);
 * total_us: dispatch to the end (> 0); tokens: completion tokens (0 if unknown);
 * inflight_at_start: requests in flight on this backend right after this one was dispatched
 * (counting itself); now_us: the caller's monotonic clock now (the request started at
 * now_us - total_us). Samples with total_us == 0 or inflight_at_start < 1 are ignored. */
void lv_window_sample(lv_window_t *w, uint64_t ttft_us, uint64_t total_us, int tokens, int inflight_at_start,
                      uint64_t now_us);
/** A streamed request got its first token ttft_us after it was sent (report it when the token
 * arrives, long before the request ends). Evidence for lv_window_on_demand; rounds are still fed
 * by lv_window_sample when requests end. */
void lv_window_first_token(lv_window_t *w, uint64_t ttft_us, uint64_t now_us);
/** Requests wait for this backend and the window is full (inflight >= the limit). Grow it by one
 * when the backend shows free room: every request in flight is past its first token
 * (awaiting_first == 0: none waits in a queue inside the backend) and the latest first token came
 * at the floor (at most 1.5 × base + 2 ms; before a base is measured, of the lowest TTFT seen)
 * after the last growth on demand, so it grows at most once per first token. The start-up round
 * grows with it and goes on (it measures the window itself); a later probe is left alone for 4
 * request times more than its round needs, then abandoned (it cannot measure below requests that
 * cannot be taken back) and the window goes back to at least its limit. This is what lets the
 * window grow while long answers hold every slot and no request ends to feed a round. 1 when it grew, else 0; never in fixed mode. */
int lv_window_on_demand(lv_window_t *w, int inflight, int awaiting_first, uint64_t now_us);

/** A request failed on the backend's side (connect error, 5xx, 429): window × 3/4. Do not call it
 * for failures the client caused (4xx other than 429) or for cancellations. */
void lv_window_on_error(lv_window_t *w, uint64_t now_us);
/** A request hit its first-token or total timeout: window halves. */
void lv_window_on_timeout(lv_window_t *w, uint64_t now_us);

/** Requests that may be in flight now: in [min, max]; max in fixed mode. */
int lv_window_limit(const lv_window_t *w);
/** Current numbers for metrics. */
void lv_window_stats(const lv_window_t *w, lv_window_stats_t *out);
/** "probe", "grow", "steady", "fixed" (static strings). */
const char *lv_window_phase_name(lv_window_phase_t phase);

#endif

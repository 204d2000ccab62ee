/* lv_breaker.c - per-backend circuit breaker (closed / open / half-open, doubling cool-down). */
#include "lv_breaker.h"

#include <limits.h>
#include <string.h>

#define WINDOW_MAX 64

void lv_breaker_config_default(lv_breaker_config_t *cfg)
{
    cfg->consecutive_failures = 5;
    cfg->window = 20;
    cfg->rate_pct = 50;
    cfg->probe_count = 1;
    cfg->cooldown_ms = 500;
    cfg->cooldown_max_ms = 30000;
    cfg->connect_opens = true;
}

static int clampi(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

static void set_state(lv_breaker_t *b, lv_breaker_state_t s, uint64_t now_ms)
{
    b->state = s;
    b->changed_ms = now_ms;
}

static void forget_outcomes(lv_breaker_t *b)
{
    b->outcomes = 0;
    b->n_outcomes = 0;
    b->consecutive = 0;
}

void lv_breaker_init(lv_breaker_t *b, const lv_breaker_config_t *cfg, uint64_t now_ms)
{
    memset(b, 0, sizeof(*b));
    if (cfg)
        b->cfg = *cfg;
    else
        lv_breaker_config_default(&b->cfg);
    b->cfg.consecutive_failures = clampi(b->cfg.consecutive_failures, 1, INT_MAX);
    b->cfg.window = clampi(b->cfg.window, 1, WINDOW_MAX);
    b->cfg.rate_pct = clampi(b->cfg.rate_pct, 1, 100);
    b->cfg.probe_count = clampi(b->cfg.probe_count, 1, INT_MAX);
    if (b->cfg.cooldown_ms < 1)
        b->cfg.cooldown_ms = 1;
    if (b->cfg.cooldown_max_ms < b->cfg.cooldown_ms)
        b->cfg.cooldown_max_ms = b->cfg.cooldown_ms;
    b->cooldown_ms = b->cfg.cooldown_ms;
    set_state(b, LV_BREAKER_CLOSED, now_ms);
}

/* Open for the next cool-down: the first trip after a close waits cooldown_ms, each further trip
 * in a row twice the last, up to cooldown_max_ms. */
static void trip(lv_breaker_t *b, uint64_t now_ms)
{
    if (b->trips == 0)
        b->cooldown_ms = b->cfg.cooldown_ms;
    else if (b->cooldown_ms > b->cfg.cooldown_max_ms / 2)
        b->cooldown_ms = b->cfg.cooldown_max_ms;
    else
        b->cooldown_ms *= 2;
    b->trips++;
    b->trips_total++;
    b->open_until_ms = now_ms + b->cooldown_ms;
    b->probes_out = 0;
    forget_outcomes(b);
    set_state(b, LV_BREAKER_OPEN, now_ms);
}

static void close_breaker(lv_breaker_t *b, uint64_t now_ms)
{
    b->trips = 0;
    b->cooldown_ms = b->cfg.cooldown_ms;
    b->probes_out = 0;
    forget_outcomes(b);
    set_state(b, LV_BREAKER_CLOSED, now_ms);
}

/* Record one CLOSED outcome in the sliding window (bit 0 = the newest). */
static void record(lv_breaker_t *b, int failed)
{
    uint64_t mask = b->cfg.window == 64 ? UINT64_MAX : ((1ULL << b->cfg.window) - 1);
    b->outcomes = ((b->outcomes << 1) | (failed ? 1u : 0u)) & mask;
    if (b->n_outcomes < b->cfg.window)
        b->n_outcomes++;
}

static int window_failures(const lv_breaker_t *b)
{
    return __builtin_popcountll(b->outcomes);
}

/* Whether the state alone lets a request through now (the hold aside). */
static bool state_would_allow(const lv_breaker_t *b, uint64_t now_ms)
{
    switch (b->state) {
    case LV_BREAKER_CLOSED:
        return true;
    case LV_BREAKER_OPEN:
        return now_ms >= b->open_until_ms; /* would turn HALF_OPEN with no probe out */
    case LV_BREAKER_HALF_OPEN:
        return b->probes_out < b->cfg.probe_count;
    }
    return false;
}

bool lv_breaker_would_allow(const lv_breaker_t *b, uint64_t now_ms)
{
    return now_ms >= b->hold_until_ms && state_would_allow(b, now_ms);
}

bool lv_breaker_allow(lv_breaker_t *b, uint64_t now_ms)
{
    if (now_ms < b->hold_until_ms) {
        b->rejected_total++; /* held: not even an OPEN breaker's cool-down ends here */
        return false;
    }
    if (b->state == LV_BREAKER_OPEN && now_ms >= b->open_until_ms) {
        b->probes_out = 0;
        set_state(b, LV_BREAKER_HALF_OPEN, now_ms);
    }
    switch (b->state) {
    case LV_BREAKER_CLOSED:
        return true;
    case LV_BREAKER_HALF_OPEN:
        if (b->probes_out < b->cfg.probe_count) {
            b->probes_out++;
            return true;
        }
        break;
    case LV_BREAKER_OPEN:
        break;
    }
    b->rejected_total++;
    return false;
}

void lv_breaker_on_success(lv_breaker_t *b, uint64_t now_ms)
{
    switch (b->state) {
    case LV_BREAKER_CLOSED:
        record(b, 0);
        b->consecutive = 0;
        break;
    case LV_BREAKER_HALF_OPEN:
        close_breaker(b, now_ms);
        break;
    case LV_BREAKER_OPEN:
        break; /* sent before the trip: the cool-down stands */
    }
}

void lv_breaker_on_failure(lv_breaker_t *b, uint64_t now_ms, lv_breaker_fail_t why)
{
    switch (b->state) {
    case LV_BREAKER_CLOSED:
        record(b, 1);
        b->consecutive++;
        if ((why == LV_BREAKER_FAIL_CONNECT && b->cfg.connect_opens) ||
            b->consecutive >= b->cfg.consecutive_failures ||
            (b->n_outcomes >= b->cfg.window && window_failures(b) * 100 >= b->cfg.rate_pct * b->cfg.window))
            trip(b, now_ms);
        break;
    case LV_BREAKER_HALF_OPEN:
        trip(b, now_ms);
        break;
    case LV_BREAKER_OPEN:
        break; /* a late failure of a request sent before the trip: already out */
    }
}

void lv_breaker_on_cancel(lv_breaker_t *b, uint64_t now_ms)
{
    (void)now_ms;
    if (b->state == LV_BREAKER_HALF_OPEN && b->probes_out > 0)
        b->probes_out--;
}

void lv_breaker_health_ok(lv_breaker_t *b, uint64_t now_ms)
{
    if (b->state == LV_BREAKER_OPEN && b->open_until_ms > now_ms)
        b->open_until_ms = now_ms;
}

void lv_breaker_hold_until(lv_breaker_t *b, uint64_t until_ms)
{
    if (until_ms <= b->hold_until_ms)
        return;
    b->hold_until_ms = until_ms;
    b->holds_total++;
}

uint64_t lv_breaker_held_ms(const lv_breaker_t *b, uint64_t now_ms)
{
    return b->hold_until_ms > now_ms ? b->hold_until_ms - now_ms : 0;
}

lv_breaker_state_t lv_breaker_state(const lv_breaker_t *b, uint64_t now_ms)
{
    if (b->state == LV_BREAKER_OPEN && now_ms >= b->open_until_ms)
        return LV_BREAKER_HALF_OPEN;
    return b->state;
}

uint64_t lv_breaker_retry_in_ms(const lv_breaker_t *b, uint64_t now_ms)
{
    uint64_t held = lv_breaker_held_ms(b, now_ms), by_state = UINT64_MAX;
    if (state_would_allow(b, now_ms))
        by_state = 0;
    else if (b->state == LV_BREAKER_OPEN)
        by_state = b->open_until_ms - now_ms;
    return held > by_state ? held : by_state;
}

const char *lv_breaker_state_name(lv_breaker_state_t state)
{
    switch (state) {
    case LV_BREAKER_CLOSED:
        return "closed";
    case LV_BREAKER_OPEN:
        return "open";
    case LV_BREAKER_HALF_OPEN:
        return "half_open";
    }
    return "unknown";
}

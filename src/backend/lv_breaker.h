/* lv_breaker.h - circuit breaker for one backend: takes a failing backend out of rotation fast
 * and lets it back in when it answers again. Pure: time is passed in (monotonic ms), no I/O, one
 * thread. Notes in docs/internals/window.md.
 *
 *  CLOSED    --(one connect failure, or N failures in a row, or at least rate_pct % failures
 *               among the last `window` requests)--> OPEN
 *  OPEN      --(cool-down over: 500 ms, doubling with each trip in a row, capped at 30 s; or an
 *               out-of-band health check passed)--> HALF_OPEN
 *  HALF_OPEN lets probe_count requests through at a time: a success closes (the trip count and
 *            the cool-down start over), a failure opens again with the next, doubled cool-down.
 *
 * A backend that refuses connections is out after its first failed request (well within 1 s);
 * a backend that hangs is out after its first-token timeouts (N in a row, or the rate).
 *
 * Apart from the states, a backend may ask for a pause (HTTP 429/503 with Retry-After):
 * lv_breaker_hold_until. Until then nothing is let through, whatever the state; the hold changes
 * no state, and nothing but time ends it. */
#ifndef LV_BREAKER_H
#define LV_BREAKER_H

#include <stdbool.h>
#include <stdint.h>

typedef enum {
    LV_BREAKER_CLOSED,    /* requests flow; outcomes are counted */
    LV_BREAKER_OPEN,      /* no requests until the cool-down ends */
    LV_BREAKER_HALF_OPEN, /* a few probe requests decide */
} lv_breaker_state_t;

/** Why a request failed: a connect failure says more than an error answer. */
typedef enum {
    LV_BREAKER_FAIL_ERROR,   /* 5xx, 429, a stream that broke off */
    LV_BREAKER_FAIL_TIMEOUT, /* first-token or total deadline passed */
    LV_BREAKER_FAIL_CONNECT, /* refused, unreachable, name lookup, TLS handshake: opens at once */
} lv_breaker_fail_t;

typedef struct {
    int consecutive_failures; /* trip after this many failures in a row (default 5) */
    int window;               /* requests the failure rate is taken over, 1..64 (default 20) */
    int rate_pct;             /* trip when at least this % of a full window failed, 1..100 (50) */
    int probe_count;          /* requests let through at once in HALF_OPEN (default 1) */
    uint32_t cooldown_ms;     /* first cool-down (default 500) */
    uint32_t cooldown_max_ms; /* cap of the doubling cool-down (default 30000) */
    bool connect_opens;       /* one connect failure opens at once (default true) */
} lv_breaker_config_t;

/** One backend's breaker, embedded by its owner. Fields are private: use the functions. */
typedef struct lv_breaker {
    lv_breaker_config_t cfg;
    lv_breaker_state_t state;
    uint64_t outcomes;      /* CLOSED: bit i set = the i-th most recent request failed */
    int n_outcomes;         /* bits filled, up to cfg.window */
    int consecutive;        /* failures in a row */
    int trips;              /* trips since the breaker last closed; sets the cool-down */
    uint32_t cooldown_ms;   /* cool-down of the current (or last) trip */
    uint64_t open_until_ms; /* OPEN: when probing may start */
    int probes_out;         /* HALF_OPEN: probes let through and not answered yet */
    uint64_t changed_ms;    /* when the state last changed */
    uint64_t hold_until_ms; /* no request before this (a Retry-After); 0 = never held */
    uint64_t trips_total, rejected_total, holds_total;
} lv_breaker_t;

/** Fill cfg with the defaults documented on lv_breaker_config_t. */
void lv_breaker_config_default(lv_breaker_config_t *cfg);
/** Start CLOSED. cfg NULL = defaults (copied). Out-of-range fields are clamped: window 1..64,
 * rate_pct 1..100, consecutive_failures and probe_count >= 1, cooldown_ms >= 1,
 * cooldown_max_ms >= cooldown_ms. */
void lv_breaker_init(lv_breaker_t *b, const lv_breaker_config_t *cfg, uint64_t now_ms);

/** May a request go to this backend now? false while a hold lasts (lv_breaker_hold_until; no
 * state change then). Otherwise true in CLOSED; in HALF_OPEN true while fewer than
 * probe_count probes are out, and then the request counts as a probe: call it only right before
 * sending, and report its end with on_success, on_failure or on_cancel exactly once. OPEN turns
 * HALF_OPEN here once its cool-down is over. false otherwise (counted in rejected_total). */
bool lv_breaker_allow(lv_breaker_t *b, uint64_t now_ms);
/** Like allow, without taking a probe or changing state: for listings and pre-checks. */
bool lv_breaker_would_allow(const lv_breaker_t *b, uint64_t now_ms);

/** A request answered well (for streams: it completed). In HALF_OPEN this closes the breaker.
 * Late answers of requests sent before a trip do not change an OPEN breaker. */
void lv_breaker_on_success(lv_breaker_t *b, uint64_t now_ms);
/** A request failed for a backend reason (not for a client error such as 400, nor for a
 * cancellation). May trip the breaker; in HALF_OPEN it re-opens it. */
void lv_breaker_on_failure(lv_breaker_t *b, uint64_t now_ms, lv_breaker_fail_t why);
/** A request that allow() let through ended without an outcome (cancelled, never sent): gives
 * back its probe slot in HALF_OPEN; no effect otherwise. */
void lv_breaker_on_cancel(lv_breaker_t *b, uint64_t now_ms);
/** An out-of-band health check (GET /models) passed: an OPEN breaker may probe at once. Does not
 * close it: real requests decide. */
void lv_breaker_health_ok(lv_breaker_t *b, uint64_t now_ms);

/** The backend asked for no requests before until_ms (HTTP 429/503 Retry-After, capped by the
 * caller): allow and would_allow say false until then, in every state. A hold only ever grows: an
 * earlier until_ms than the one in force changes nothing (answers to requests sent before the
 * first 429 may arrive later with shorter waits). Counted in holds_total when it grows. */
void lv_breaker_hold_until(lv_breaker_t *b, uint64_t until_ms);
/** Milliseconds left of the hold at now_ms; 0 when none is in force. */
uint64_t lv_breaker_held_ms(const lv_breaker_t *b, uint64_t now_ms);

/** The state as of now_ms (an OPEN breaker whose cool-down is over reads HALF_OPEN). A hold is
 * not a state: a held CLOSED breaker reads CLOSED. */
lv_breaker_state_t lv_breaker_state(const lv_breaker_t *b, uint64_t now_ms);
/** Milliseconds until a request may be let through: 0 when allow() would say yes now, the rest of
 * the cool-down when OPEN, UINT64_MAX while HALF_OPEN waits for its probes; never less than
 * what is left of a hold. */
uint64_t lv_breaker_retry_in_ms(const lv_breaker_t *b, uint64_t now_ms);
/** "closed", "open", "half_open" (static strings, for metrics and the UI). */
const char *lv_breaker_state_name(lv_breaker_state_t state);

#endif

/* lg_stats.h - the load generator's measurements: bounded sample sets with percentiles, counters
 * keyed by short names (error codes, failure reasons), Jain's fairness index and a small PRNG. */
#ifndef LG_STATS_H
#define LG_STATS_H

#include <stddef.h>
#include <stdint.h>

/** xorshift64* state; never 0. Not for secrets: mask keys and reservoir picks only. */
typedef struct {
    uint64_t s;
} lg_rng_t;

void lg_rng_seed(lg_rng_t *r, uint64_t seed);
uint64_t lg_rng_next(lg_rng_t *r);

/* A sample set holding at most max values: past that, reservoir sampling (Algorithm R) keeps a
 * uniform subset, so percentiles stay unbiased while memory stays bounded. count, sum and
 * max cover every value seen. */
typedef struct {
    double *v;
    size_t n;      /* values held */
    size_t cap;    /* allocated */
    size_t max;    /* held at most */
    uint64_t seen; /* values offered */
    double sum;
    double maxv;
    int sorted;
} lg_samples_t;

void lg_samples_init(lg_samples_t *s, size_t max);
void lg_samples_free(lg_samples_t *s);
/** Add one value (allocation failures only make the reservoir smaller). */
void lg_samples_add(lg_samples_t *s, double x, lg_rng_t *rng);
/** Nearest-rank percentile, p in [0,100]; sorts on first use. 0 when empty. */
double lg_samples_pct(lg_samples_t *s, double p);
double lg_samples_mean(const lg_samples_t *s);

/* Counters by name, in first-seen order; at most LG_COUNTERS_MAX names, the rest go to "other". */
#define LG_COUNTERS_MAX 32
#define LG_COUNTER_NAME_MAX 64
typedef struct {
    char name[LG_COUNTERS_MAX][LG_COUNTER_NAME_MAX];
    uint64_t count[LG_COUNTERS_MAX];
    size_t n;
    uint64_t total;
} lg_counters_t;

/** Count one event under name (n bytes; cut to LG_COUNTER_NAME_MAX-1). */
void lg_counters_add(lg_counters_t *c, const char *name, size_t n);

/** Jain's fairness index (sum x)^2 / (n * sum x^2) over n values: 1 when all are equal, 1/n when
 * one has everything. Returns -1 when n is 0 or every value is 0 (undefined). */
double lg_jain(const uint64_t *x, size_t n);

#endif

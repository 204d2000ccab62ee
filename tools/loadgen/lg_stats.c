/* lg_stats.c - samples, percentiles, named counters and fairness for the load generator. */
#include "lg_stats.h"

#include <stdlib.h>
#include <string.h>

void lg_rng_seed(lg_rng_t *r, uint64_t seed)
{
    /* splitmix64 once, so that nearby seeds give unrelated streams */
    uint64_t z = seed + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    r->s = z ? z : 0x2545f4914f6cdd1dull;
}

uint64_t lg_rng_next(lg_rng_t *r)
{
    uint64_t x = r->s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * 0x2545f4914f6cdd1dull;
}

void lg_samples_init(lg_samples_t *s, size_t max)
{
    memset(s, 0, sizeof(*s));
    s->max = max ? max : 1;
}

void lg_samples_free(lg_samples_t *s)
{
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}

void lg_samples_add(lg_samples_t *s, double x, lg_rng_t *rng)
{
    s->seen++;
    s->sum += x;
    if (s->seen == 1 || x > s->maxv)
        s->maxv = x;
    s->sorted = 0;
    if (s->n < s->max) {
        if (s->n == s->cap) {
            size_t ncap = s->cap ? s->cap * 2 : 1024;
            if (ncap > s->max)
                ncap = s->max;
            double *nv = realloc(s->v, ncap * sizeof(*nv));
            if (!nv)
                return;
            s->v = nv;
            s->cap = ncap;
        }
        s->v[s->n++] = x;
        return;
    }
    /* Algorithm R: the seen-th value replaces a random slot with probability max/seen */
    uint64_t j = lg_rng_next(rng) % s->seen;
    if (j < s->n)
        s->v[j] = x;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double lg_samples_pct(lg_samples_t *s, double p)
{
    if (s->n == 0)
        return 0;
    if (!s->sorted) {
        qsort(s->v, s->n, sizeof(double), cmp_double);
        s->sorted = 1;
    }
    if (p >= 100)
        return s->v[s->n - 1];
    if (p <= 0)
        return s->v[0];
    /* nearest rank: the smallest value with at least p% of the values at or below it */
    size_t rank = (size_t)((p / 100.0) * (double)s->n + 0.999999999);
    if (rank < 1)
        rank = 1;
    if (rank > s->n)
        rank = s->n;
    return s->v[rank - 1];
}

double lg_samples_mean(const lg_samples_t *s) { return s->seen ? s->sum / (double)s->seen : 0; }

void lg_counters_add(lg_counters_t *c, const char *name, size_t n)
{
    if (n >= LG_COUNTER_NAME_MAX)
        n = LG_COUNTER_NAME_MAX - 1;
    c->total++;
    for (size_t i = 0; i < c->n; i++) {
        if (strncmp(c->name[i], name, n) == 0 && c->name[i][n] == '\0') {
            c->count[i]++;
            return;
        }
    }
    size_t i = c->n;
    if (i >= LG_COUNTERS_MAX - 1) {
        /* the last slot is "other": names past the table's size are counted there */
        i = LG_COUNTERS_MAX - 1;
        if (c->n == LG_COUNTERS_MAX - 1) {
            memcpy(c->name[i], "other", 6);
            c->count[i] = 0;
            c->n = LG_COUNTERS_MAX;
        }
        c->count[i]++;
        return;
    }
    memcpy(c->name[i], name, n);
    c->name[i][n] = '\0';
    c->count[i] = 1;
    c->n++;
}

double lg_jain(const uint64_t *x, size_t n)
{
    double sum = 0, sq = 0;
    for (size_t i = 0; i < n; i++) {
        sum += (double)x[i];
        sq += (double)x[i] * (double)x[i];
    }
    if (n == 0 || sq == 0)
        return -1;
    return sum * sum / ((double)n * sq);
}

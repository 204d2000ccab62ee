/* lv_metrics.h - a small Prometheus metrics registry (counters, gauges, histograms) for /metrics. */
#ifndef LV_METRICS_H
#define LV_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "lv_buf.h"

/*
 * Threading: none. A registry and every metric in it belong to one thread, the loop thread;
 * nothing here takes a lock or uses atomics, so an update costs a few instructions. Work that
 * runs on the thread pool measures there and observes from its after-work callback, which libuv
 * runs on the loop thread.
 *
 * Memory: creating a metric, and the first use of a label set in a labelled family, allocate.
 * After that, updating a series (lv_counter_add, lv_gauge_set, lv_hist_observe, ...) never
 * allocates and never fails; a histogram observation is a binary search over its bounds,
 * O(log buckets). Hot paths resolve a labelled series once (e.g. when a backend is created) and
 * keep the returned pointer.
 *
 * Lifetimes: the registry owns every metric and series; the pointers handed out stay valid until
 * lv_metrics_free(). There is no unregistering.
 *
 * Names follow the Prometheus data model: metric names match [a-zA-Z_:][a-zA-Z0-9_:]*, label
 * names [a-zA-Z_][a-zA-Z0-9_]* and must not start with "__" (reserved); a histogram may not use
 * the label "le". A histogram named x also takes the names x_bucket, x_sum and x_count; a metric
 * whose name collides with any name already taken is refused with LV_EEXIST. Label values and help
 * text are any bytes except NUL (UTF-8 by convention) and are escaped when rendered.
 */

typedef struct lv_metrics lv_metrics_t;
typedef struct lv_counter lv_counter_t;
typedef struct lv_gauge lv_gauge_t;
typedef struct lv_hist lv_hist_t;
typedef struct lv_counter_vec lv_counter_vec_t;
typedef struct lv_gauge_vec lv_gauge_vec_t;
typedef struct lv_hist_vec lv_hist_vec_t;

/** A constant label: the same name="value" pair on every series of one metric. */
typedef struct {
    const char *name;
    const char *value;
} lv_label_t;

/** Most distinct label sets a labelled family keeps. The next new set is folded into one
 * series whose every label value is "other" (so a family holds at most this + 1 series). */
#define LV_METRICS_MAX_LABEL_SETS 64
/** Most label names of a family, constant labels included. */
#define LV_METRICS_MAX_LABELS 8
/** Most finite bucket bounds of a histogram (the +Inf bucket is implicit and extra). */
#define LV_METRICS_MAX_BUCKETS 64
/** The value every label of the overflow series carries. */
#define LV_METRICS_OTHER "other"

/** The default histogram bounds, a latency scale in seconds from 50 µs to 120 s in roughly x2
 * steps (1-2-5): 0.00005 0.0001 0.0002 0.0005 0.001 0.002 0.005 0.01 0.02 0.05 0.1 0.2 0.5 1 2 5
 * 10 20 30 60 120. Passing bounds == NULL to a histogram constructor selects them. */
extern const double lv_metrics_latency_bounds_s[];
/** Number of entries in lv_metrics_latency_bounds_s (21). */
extern const size_t lv_metrics_latency_bounds_n;

/* ---- registry ---- */

/** Create an empty registry in *out. Returns 0 or LV_ENOMEM. Free with lv_metrics_free(). */
int lv_metrics_new(lv_metrics_t **out);

/** Free the registry and every metric and series in it; all their pointers become invalid.
 * NULL is a no-op. */
void lv_metrics_free(lv_metrics_t *m);

/**
 * Append every metric to out in the Prometheus text exposition format 0.0.4 (Content-Type
 * "text/plain; version=0.0.4; charset=utf-8"), in registration order, series in order of first
 * use. Per metric: "# HELP name text" (omitted when the help text is NULL or empty; backslash and
 * newline escaped as \\ and \n), "# TYPE name counter|gauge|histogram", then one line per sample
 * "name{l1="v1",...} value" (no braces without labels; label values escape \\, \" and \n).
 * Constant labels come first, then family labels, in the order they were declared. A histogram
 * writes name_bucket{...,le="bound"} with cumulative counts for each bound and le="+Inf", then
 * name_sum and name_count. A labelled family with no series yet writes nothing. Every line ends
 * in "\n"; no timestamps.
 * Numbers: integers of magnitude below 2^53 print as integers ("3", "-2"), others with the
 * fewest digits that read back exactly, in fixed notation when the decimal exponent is in
 * [-4, 15) ("0.25", "1.5e-05", "2.5e+20"); "NaN", "+Inf", "-Inf" for the special values.
 * Gauge callbacks (lv_gauge_set_fn) are called here, on this thread.
 * All or nothing: returns 0, or LV_ELIMIT / LV_ENOMEM with out restored to its previous length.
 */
int lv_metrics_render(lv_metrics_t *m, lv_buf_t *out);

/* ---- counters: only go up ---- */

/**
 * Register a counter (name should end in _total by convention). const_labels may be NULL when
 * n_const is 0. help may be NULL. Names, help and label strings are copied.
 * Returns 0 with *out set, LV_EINVAL (bad name, label name or count, NULL name), LV_EEXIST (name
 * taken), LV_ELIMIT (help text or rendered constant labels over 16 KiB), or LV_ENOMEM.
 */
int lv_counter_new(lv_metrics_t *m, const char *name, const char *help,
                   const lv_label_t *const_labels, size_t n_const, lv_counter_t **out);
/** Add 1. */
void lv_counter_inc(lv_counter_t *c);
/** Add v; negative and NaN values are ignored (a counter never goes down). */
void lv_counter_add(lv_counter_t *c, double v);
/** The current value. */
double lv_counter_value(const lv_counter_t *c);

/* ---- gauges: go up and down, or are read from a callback at scrape time ---- */

/** Register a gauge (starts at 0). Arguments and returns as lv_counter_new(). */
int lv_gauge_new(lv_metrics_t *m, const char *name, const char *help,
                 const lv_label_t *const_labels, size_t n_const, lv_gauge_t **out);
/** Set the value (and stop using a callback, if one was set). */
void lv_gauge_set(lv_gauge_t *g, double v);
/** Add delta (may be negative) to the stored value. */
void lv_gauge_add(lv_gauge_t *g, double delta);
/** Read the value from read(ud) at every render and lv_gauge_value() instead of storing it;
 * read == NULL goes back to the stored value. read runs on the registry's thread and must not
 * touch the registry. ud must stay valid while the callback is set. */
void lv_gauge_set_fn(lv_gauge_t *g, double (*read)(void *ud), void *ud);
/** The current value (calls the callback when one is set). */
double lv_gauge_value(const lv_gauge_t *g);

/* ---- histograms ---- */

/**
 * Register a histogram with the given finite upper bounds, strictly increasing (copied; a
 * trailing +Inf is accepted and dropped, since the +Inf bucket is always there). bounds == NULL
 * selects lv_metrics_latency_bounds_s (n_bounds is then ignored). At most
 * LV_METRICS_MAX_BUCKETS bounds. Other arguments and returns as lv_counter_new(); LV_EINVAL also
 * for unsorted, duplicate or NaN bounds.
 */
int lv_hist_new(lv_metrics_t *m, const char *name, const char *help,
                const lv_label_t *const_labels, size_t n_const, const double *bounds,
                size_t n_bounds, lv_hist_t **out);
/** Record one value: it lands in the first bucket whose bound is >= v (a value equal to a
 * bound counts in that bound's bucket), else in +Inf. NaN is ignored. O(log buckets). */
void lv_hist_observe(lv_hist_t *h, double v);
/** Record a duration given in microseconds, as seconds (for the latency bounds). */
void lv_hist_observe_us(lv_hist_t *h, uint64_t us);
/** Number of values observed. */
uint64_t lv_hist_count(const lv_hist_t *h);
/** Sum of the values observed. */
double lv_hist_sum(const lv_hist_t *h);
/**
 * Estimate the q-quantile (0 <= q <= 1) the way Prometheus' histogram_quantile() does: find the
 * bucket holding rank q*count and interpolate linearly between its lower and upper bound. The
 * lowest bucket's lower bound is 0 when its upper bound is positive (else the estimate is that
 * upper bound); a rank in the +Inf bucket gives the highest finite bound. Returns NaN when the
 * histogram is empty or q is outside [0, 1] or NaN. O(buckets); for logs and benchmarks.
 */
double lv_hist_quantile(const lv_hist_t *h, double q);

/* ---- labelled families: one series per label set, at most LV_METRICS_MAX_LABEL_SETS ---- */

/**
 * Register a counter family with n_labels (1..LV_METRICS_MAX_LABELS, constant labels included)
 * label names, e.g. {"backend"} or {"reason"}. label_names are copied. Returns as
 * lv_counter_new(); LV_EINVAL also for a label name used twice.
 */
int lv_counter_vec_new(lv_metrics_t *m, const char *name, const char *help,
                       const lv_label_t *const_labels, size_t n_const,
                       const char *const *label_names, size_t n_labels, lv_counter_vec_t **out);
/**
 * The series for one label set: values[i] is the value of label_names[i], one per label name.
 * The first call with a new set creates the series (copying the values); later calls find it
 * (a linear scan, so keep the pointer on hot paths). Once LV_METRICS_MAX_LABEL_SETS sets exist,
 * a new set gets the overflow series whose values are all "other". Returns NULL only when
 * values or one of its entries is NULL, when the rendered labels of the set would exceed
 * 16 KiB, or on allocation failure.
 */
lv_counter_t *lv_counter_vec_with(lv_counter_vec_t *v, const char *const *values);

/** Register a gauge family. As lv_counter_vec_new(). */
int lv_gauge_vec_new(lv_metrics_t *m, const char *name, const char *help,
                     const lv_label_t *const_labels, size_t n_const,
                     const char *const *label_names, size_t n_labels, lv_gauge_vec_t **out);
/** The gauge for one label set. As lv_counter_vec_with(). */
lv_gauge_t *lv_gauge_vec_with(lv_gauge_vec_t *v, const char *const *values);

/** Register a histogram family; every series shares the bounds. As lv_counter_vec_new() and
 * lv_hist_new(). */
int lv_hist_vec_new(lv_metrics_t *m, const char *name, const char *help,
                    const lv_label_t *const_labels, size_t n_const,
                    const char *const *label_names, size_t n_labels, const double *bounds,
                    size_t n_bounds, lv_hist_vec_t **out);
/** The histogram for one label set. As lv_counter_vec_with(). */
lv_hist_t *lv_hist_vec_with(lv_hist_vec_t *v, const char *const *values);

/** Append s as a label value of the exposition format (\\, \" and \n escaped), for families a
 * caller writes by hand (label sets that follow who is alive at each scrape). LV_ELIMIT, LV_ENOMEM. */
int lv_metrics_label_value(lv_buf_t *b, const char *s);

#endif

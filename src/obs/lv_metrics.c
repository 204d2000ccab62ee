/* lv_metrics.c - Prometheus registry: series with pre-rendered label text, rendered on scrape. */
#include "lv_metrics.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lv_common.h"

/* Rendered label text of one series is bounded so a hostile label value (say, a model name a
 * client picked) cannot make one line huge. */
#define METRICS_LABELS_MAX_BYTES (16 * 1024)
#define METRICS_HELP_MAX_BYTES (16 * 1024)
/* Doubles render in at most 24 characters ("-1.2345678901234567e-308"). */
#define METRICS_NUM_MAX 32

enum { KIND_COUNTER, KIND_GAUGE, KIND_HIST };

struct lv_counter {
    double value;
};

struct lv_gauge {
    double value;
    double (*read)(void *ud);
    void *ud;
};

/* counts[] holds per-bucket (not cumulative) counts, n_bounds + 1 of them, the last for +Inf, so
 * an observation touches one slot; the render accumulates. */
struct lv_hist {
    const double *bounds;
    size_t n_bounds;
    uint64_t *counts;
    uint64_t count;
    double sum;
};

typedef struct {
    char **values; /* the family's label values, NULL for an unlabelled metric */
    char *labels;  /* rendered `a="x",b="y"`: constant labels then family labels; "" if none */
    union {
        lv_counter_t c;
        lv_gauge_t g;
        lv_hist_t h;
    } u;
    uint64_t counts[]; /* histograms only: the bucket counts, allocated with the series */
} series_t;

typedef struct metric {
    struct metric *next;
    int kind;
    int labelled;
    char *name;
    char *help;         /* escaped; NULL when there is none */
    char *const_labels; /* rendered constant labels, "" when none */
    size_t n_labels;    /* family label names, constant ones not counted */
    char **label_names;
    double *bounds; /* histograms */
    size_t n_bounds;
    char **le; /* rendered bounds for the le label */
    series_t **series; /* LV_METRICS_MAX_LABEL_SETS + 1 slots for a family, 1 otherwise */
    size_t n_series;
} metric_t;

/* The family handles are the metric itself; distinct struct types only keep callers from
 * passing a counter family where a histogram family is expected. */
struct lv_counter_vec {
    metric_t m;
};
struct lv_gauge_vec {
    metric_t m;
};
struct lv_hist_vec {
    metric_t m;
};

struct lv_metrics {
    metric_t *head;
    metric_t *tail;
};

const double lv_metrics_latency_bounds_s[] = {
    0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1,
    0.2,     0.5,    1,      2,      5,     10,    20,    30,   60,   120,
};
const size_t lv_metrics_latency_bounds_n = LV_ARRAY_LEN(lv_metrics_latency_bounds_s);

/* ---- names, escaping, numbers ---- */

static int name_char(char c, int first, int colon_ok)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_')
        return 1;
    if (c == ':')
        return colon_ok;
    return !first && c >= '0' && c <= '9';
}

/* Metric names: [a-zA-Z_:][a-zA-Z0-9_:]*; label names: [a-zA-Z_][a-zA-Z0-9_]*, not "__..." . */
static int valid_name(const char *s, int is_label)
{
    if (!s || !*s)
        return 0;
    for (size_t i = 0; s[i]; i++)
        if (!name_char(s[i], i == 0, !is_label))
            return 0;
    return !is_label || strncmp(s, "__", 2) != 0;
}

/* Exposition format 0.0.4: in help text `\` and newline are escaped; in label values also `"`. */
static int append_escaped(lv_buf_t *b, const char *s, int is_label_value)
{
    int rc = 0;
    size_t run = 0;
    for (size_t i = 0;; i++) {
        const char *esc = NULL;
        if (s[i] == '\\')
            esc = "\\\\";
        else if (s[i] == '\n')
            esc = "\\n";
        else if (s[i] == '"' && is_label_value)
            esc = "\\\"";
        if (!esc && s[i])
            continue;
        if ((rc = lv_buf_append(b, s + run, i - run)) != 0)
            return rc;
        if (!s[i])
            return 0;
        if ((rc = lv_buf_append_str(b, esc)) != 0)
            return rc;
        run = i + 1;
    }
}

int lv_metrics_label_value(lv_buf_t *b, const char *s) { return append_escaped(b, s, 1); }

/* The fewest significant digits that read back exactly; fixed notation for decimal exponents in
 * [-4, 15), integers below 2^53 without a fraction. */
static void format_double(char *buf, size_t size, double v)
{
    if (isnan(v)) {
        snprintf(buf, size, "%s", "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(buf, size, "%s", v > 0 ? "+Inf" : "-Inf");
        return;
    }
    if (v == 0) {
        snprintf(buf, size, "%s", "0");
        return;
    }
    if (fabs(v) < 9007199254740992.0 && v == floor(v)) {
        snprintf(buf, size, "%.0f", v);
        return;
    }
    char e[METRICS_NUM_MAX];
    int digits;
    for (digits = 1; digits < 17; digits++) {
        snprintf(e, sizeof e, "%.*e", digits - 1, v);
        if (strtod(e, NULL) == v)
            break;
    }
    if (digits == 17)
        snprintf(e, sizeof e, "%.16e", v);
    const char *ep = strchr(e, 'e');
    long exp10 = ep ? strtol(ep + 1, NULL, 10) : 0;
    if (exp10 >= -4 && exp10 < 15) {
        long decimals = digits - 1 - exp10;
        snprintf(buf, size, "%.*f", (int)(decimals > 0 ? decimals : 0), v);
    } else {
        snprintf(buf, size, "%s", e);
    }
}

/* ---- construction helpers ---- */

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p)
        memcpy(p, s, n);
    return p;
}

/* Take a buffer's bytes as a heap string ("" when nothing was appended). */
static char *buf_take(lv_buf_t *b)
{
    if (!b->data)
        return dup_str("");
    char *p = b->data;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

/* Does x equal base followed by suffix? */
static int is_derived(const char *x, const char *base, const char *suffix)
{
    size_t n = strlen(base);
    return strncmp(x, base, n) == 0 && strcmp(x + n, suffix) == 0;
}

/* A histogram x owns x, x_bucket, x_sum and x_count; refuse any overlap between two metrics.
 * Two derived names a+s1 == b+s2 with a != b would need one suffix to end with another, which
 * none of them does, so comparing each base with the other's derived names is enough. */
static int names_collide(const char *a, int a_hist, const char *b, int b_hist)
{
    static const char *const sfx[] = {"_bucket", "_sum", "_count"};
    if (strcmp(a, b) == 0)
        return 1;
    for (size_t i = 0; i < LV_ARRAY_LEN(sfx); i++) {
        if (a_hist && is_derived(b, a, sfx[i]))
            return 1;
        if (b_hist && is_derived(a, b, sfx[i]))
            return 1;
    }
    return 0;
}

static void series_free(series_t *s, size_t n_values)
{
    if (!s)
        return;
    if (s->values)
        for (size_t i = 0; i < n_values; i++)
            free(s->values[i]);
    free(s->values);
    free(s->labels);
    free(s);
}

static void metric_free(metric_t *mt)
{
    for (size_t i = 0; i < mt->n_series; i++)
        series_free(mt->series[i], mt->n_labels);
    free(mt->series);
    for (size_t i = 0; mt->label_names && i < mt->n_labels; i++)
        free(mt->label_names[i]);
    free(mt->label_names);
    for (size_t i = 0; mt->le && i < mt->n_bounds; i++)
        free(mt->le[i]);
    free(mt->le);
    free(mt->bounds);
    free(mt->const_labels);
    free(mt->help);
    free(mt->name);
    free(mt);
}

/* Make a series; values (n_labels of them) are copied, NULL for an unlabelled metric. */
static series_t *series_new(const metric_t *mt, const char *const *values)
{
    size_t n_counts = mt->kind == KIND_HIST ? mt->n_bounds + 1 : 0;
    series_t *s = calloc(1, sizeof(*s) + n_counts * sizeof(uint64_t));
    if (!s)
        return NULL;
    lv_buf_t lb;
    lv_buf_init(&lb, METRICS_LABELS_MAX_BYTES);
    int rc = lv_buf_append_str(&lb, mt->const_labels);
    if (values) {
        s->values = calloc(mt->n_labels, sizeof(char *));
        if (!s->values)
            rc = LV_ENOMEM;
        for (size_t i = 0; !rc && i < mt->n_labels; i++) {
            if (!(s->values[i] = dup_str(values[i]))) {
                rc = LV_ENOMEM;
                break;
            }
            if (lb.len)
                rc = lv_buf_append_str(&lb, ",");
            if (!rc)
                rc = lv_buf_printf(&lb, "%s=\"", mt->label_names[i]);
            if (!rc)
                rc = append_escaped(&lb, values[i], 1);
            if (!rc)
                rc = lv_buf_append_str(&lb, "\"");
        }
    }
    if (!rc && !(s->labels = buf_take(&lb)))
        rc = LV_ENOMEM;
    lv_buf_free(&lb);
    if (rc) {
        series_free(s, mt->n_labels);
        return NULL;
    }
    if (mt->kind == KIND_HIST) {
        s->u.h.bounds = mt->bounds;
        s->u.h.n_bounds = mt->n_bounds;
        s->u.h.counts = s->counts;
    }
    return s;
}

static int check_bounds(const double *bounds, size_t *n_bounds)
{
    size_t n = *n_bounds;
    if (n && isinf(bounds[n - 1]) && bounds[n - 1] > 0)
        n--; /* the +Inf bucket is implicit */
    if (n > LV_METRICS_MAX_BUCKETS)
        return LV_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (isnan(bounds[i]) || isinf(bounds[i]))
            return LV_EINVAL;
        if (i && !(bounds[i] > bounds[i - 1]))
            return LV_EINVAL;
    }
    *n_bounds = n;
    return 0;
}

/* Validate, build and register one metric (labelled when label_names != NULL). */
static int metric_new(lv_metrics_t *m, int kind, const char *name, const char *help,
                      const lv_label_t *const_labels, size_t n_const,
                      const char *const *label_names, size_t n_labels, const double *bounds,
                      size_t n_bounds, metric_t **out)
{
    int rc = 0;
    metric_t *mt = NULL;
    lv_buf_t b;
    lv_buf_init(&b, METRICS_LABELS_MAX_BYTES);

    if (!m || !out || !valid_name(name, 0) || (n_const && !const_labels))
        return LV_EINVAL;
    if (label_names && (n_labels == 0))
        return LV_EINVAL;
    if (n_const + n_labels > LV_METRICS_MAX_LABELS)
        return LV_EINVAL;
    /* Every label name valid, not "le" on a histogram, and no name twice. */
    for (size_t i = 0; i < n_const + n_labels; i++) {
        const char *li = i < n_const ? const_labels[i].name : label_names[i - n_const];
        if (!valid_name(li, 1) || (kind == KIND_HIST && strcmp(li, "le") == 0))
            return LV_EINVAL;
        if (i < n_const && !const_labels[i].value)
            return LV_EINVAL;
        for (size_t j = 0; j < i; j++) {
            const char *lj = j < n_const ? const_labels[j].name : label_names[j - n_const];
            if (strcmp(li, lj) == 0)
                return LV_EINVAL;
        }
    }
    if (kind == KIND_HIST) {
        if (!bounds) {
            bounds = lv_metrics_latency_bounds_s;
            n_bounds = lv_metrics_latency_bounds_n;
        }
        if ((rc = check_bounds(bounds, &n_bounds)) != 0)
            return rc;
    }
    for (metric_t *e = m->head; e; e = e->next)
        if (names_collide(name, kind == KIND_HIST, e->name, e->kind == KIND_HIST))
            return LV_EEXIST;

    mt = calloc(1, sizeof(*mt));
    if (!mt)
        return LV_ENOMEM;
    mt->kind = kind;
    mt->labelled = label_names != NULL;
    mt->n_labels = label_names ? n_labels : 0;
    rc = LV_ENOMEM;
    if (!(mt->name = dup_str(name)))
        goto out;
    if (help && *help) {
        lv_buf_t hb;
        lv_buf_init(&hb, METRICS_HELP_MAX_BYTES);
        int hrc = append_escaped(&hb, help, 0);
        mt->help = hrc ? NULL : buf_take(&hb);
        lv_buf_free(&hb);
        if (hrc) {
            rc = hrc;
            goto out;
        }
        if (!mt->help)
            goto out;
    }
    for (size_t i = 0; i < n_const; i++) {
        int r = lv_buf_printf(&b, "%s%s=\"", i ? "," : "", const_labels[i].name);
        if (!r)
            r = append_escaped(&b, const_labels[i].value, 1);
        if (!r)
            r = lv_buf_append_str(&b, "\"");
        if (r) {
            rc = r;
            goto out;
        }
    }
    if (!(mt->const_labels = buf_take(&b)))
        goto out;
    if (mt->n_labels) {
        if (!(mt->label_names = calloc(mt->n_labels, sizeof(char *))))
            goto out;
        for (size_t i = 0; i < mt->n_labels; i++)
            if (!(mt->label_names[i] = dup_str(label_names[i])))
                goto out;
    }
    if (kind == KIND_HIST) {
        mt->n_bounds = n_bounds;
        if (n_bounds) {
            if (!(mt->bounds = malloc(n_bounds * sizeof(double))))
                goto out;
            memcpy(mt->bounds, bounds, n_bounds * sizeof(double));
            if (!(mt->le = calloc(n_bounds, sizeof(char *))))
                goto out;
            for (size_t i = 0; i < n_bounds; i++) {
                char num[METRICS_NUM_MAX];
                format_double(num, sizeof num, bounds[i]);
                if (!(mt->le[i] = dup_str(num)))
                    goto out;
            }
        }
    }
    if (!(mt->series = calloc(mt->labelled ? LV_METRICS_MAX_LABEL_SETS + 1 : 1, sizeof(series_t *))))
        goto out;
    if (!mt->labelled) {
        if (!(mt->series[0] = series_new(mt, NULL)))
            goto out;
        mt->n_series = 1;
    }
    rc = 0;
out:
    lv_buf_free(&b);
    if (rc) {
        if (mt)
            metric_free(mt);
        return rc;
    }
    if (m->tail)
        m->tail->next = mt;
    else
        m->head = mt;
    m->tail = mt;
    *out = mt;
    return 0;
}

static series_t *find_series(const metric_t *mt, const char *const *values)
{
    for (size_t i = 0; i < mt->n_series; i++) {
        const series_t *s = mt->series[i];
        size_t k = 0;
        while (k < mt->n_labels && strcmp(s->values[k], values[k]) == 0)
            k++;
        if (k == mt->n_labels)
            return mt->series[i];
    }
    return NULL;
}

static series_t *family_with(metric_t *mt, const char *const *values)
{
    if (!values)
        return NULL;
    for (size_t i = 0; i < mt->n_labels; i++)
        if (!values[i])
            return NULL;
    series_t *s = find_series(mt, values);
    if (s)
        return s;
    const char *other[LV_METRICS_MAX_LABELS];
    if (mt->n_series >= LV_METRICS_MAX_LABEL_SETS) {
        /* Fold every further label set into one series, so a peer that invents label values
         * (backend ids, model names) cannot grow the registry without bound. */
        for (size_t i = 0; i < mt->n_labels; i++)
            other[i] = LV_METRICS_OTHER;
        if ((s = find_series(mt, other)) != NULL)
            return s;
        values = other;
    }
    if (!(s = series_new(mt, values)))
        return NULL;
    mt->series[mt->n_series++] = s;
    return s;
}

/* ---- registry ---- */

int lv_metrics_new(lv_metrics_t **out)
{
    if (!out)
        return LV_EINVAL;
    *out = calloc(1, sizeof(**out));
    return *out ? 0 : LV_ENOMEM;
}

void lv_metrics_free(lv_metrics_t *m)
{
    if (!m)
        return;
    metric_t *mt = m->head;
    while (mt) {
        metric_t *next = mt->next;
        metric_free(mt);
        mt = next;
    }
    free(m);
}

/* ---- counters ---- */

int lv_counter_new(lv_metrics_t *m, const char *name, const char *help,
                   const lv_label_t *const_labels, size_t n_const, lv_counter_t **out)
{
    metric_t *mt;
    int rc = out ? metric_new(m, KIND_COUNTER, name, help, const_labels, n_const, NULL, 0, NULL, 0, &mt)
                 : LV_EINVAL;
    if (!rc)
        *out = &mt->series[0]->u.c;
    return rc;
}

void lv_counter_inc(lv_counter_t *c) { c->value += 1; }

void lv_counter_add(lv_counter_t *c, double v)
{
    if (v >= 0) /* false for NaN too */
        c->value += v;
}

double lv_counter_value(const lv_counter_t *c) { return c->value; }

/* ---- gauges ---- */

int lv_gauge_new(lv_metrics_t *m, const char *name, const char *help,
                 const lv_label_t *const_labels, size_t n_const, lv_gauge_t **out)
{
    metric_t *mt;
    int rc = out ? metric_new(m, KIND_GAUGE, name, help, const_labels, n_const, NULL, 0, NULL, 0, &mt)
                 : LV_EINVAL;
    if (!rc)
        *out = &mt->series[0]->u.g;
    return rc;
}

void lv_gauge_set(lv_gauge_t *g, double v)
{
    g->read = NULL;
    g->ud = NULL;
    g->value = v;
}

void lv_gauge_add(lv_gauge_t *g, double delta) { g->value += delta; }

void lv_gauge_set_fn(lv_gauge_t *g, double (*read)(void *ud), void *ud)
{
    g->read = read;
    g->ud = read ? ud : NULL;
}

double lv_gauge_value(const lv_gauge_t *g) { return g->read ? g->read(g->ud) : g->value; }

/* ---- histograms ---- */

int lv_hist_new(lv_metrics_t *m, const char *name, const char *help,
                const lv_label_t *const_labels, size_t n_const, const double *bounds,
                size_t n_bounds, lv_hist_t **out)
{
    metric_t *mt;
    int rc = out ? metric_new(m, KIND_HIST, name, help, const_labels, n_const, NULL, 0, bounds,
                              n_bounds, &mt)
                 : LV_EINVAL;
    if (!rc)
        *out = &mt->series[0]->u.h;
    return rc;
}

void lv_hist_observe(lv_hist_t *h, double v)
{
    if (isnan(v))
        return;
    /* First bound >= v: Prometheus buckets are "less than or equal" (le). */
    size_t lo = 0, hi = h->n_bounds;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v <= h->bounds[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    h->counts[lo]++;
    h->count++;
    h->sum += v;
}

void lv_hist_observe_us(lv_hist_t *h, uint64_t us) { lv_hist_observe(h, (double)us / 1e6); }

uint64_t lv_hist_count(const lv_hist_t *h) { return h->count; }

double lv_hist_sum(const lv_hist_t *h) { return h->sum; }

double lv_hist_quantile(const lv_hist_t *h, double q)
{
    if (!h->count || !(q >= 0 && q <= 1))
        return NAN;
    double rank = q * (double)h->count;
    uint64_t below = 0; /* observations in the buckets before i */
    size_t i = 0;
    /* The first bucket reaching the rank that holds anything; q = 0 thus lands in the first
     * non-empty bucket rather than in an empty one below it. */
    for (; i <= h->n_bounds; i++) {
        uint64_t cum = below + h->counts[i];
        if (cum > 0 && (double)cum >= rank)
            break;
        below = cum;
    }
    if (i >= h->n_bounds) /* the +Inf bucket: no upper bound to interpolate towards */
        return h->n_bounds ? h->bounds[h->n_bounds - 1] : NAN;
    double upper = h->bounds[i];
    if (i == 0 && upper <= 0)
        return upper;
    double lower = i == 0 ? 0 : h->bounds[i - 1];
    double in_bucket = (double)h->counts[i];
    return lower + (upper - lower) * ((rank - (double)below) / in_bucket);
}

/* ---- labelled families ---- */

int lv_counter_vec_new(lv_metrics_t *m, const char *name, const char *help,
                       const lv_label_t *const_labels, size_t n_const,
                       const char *const *label_names, size_t n_labels, lv_counter_vec_t **out)
{
    metric_t *mt;
    if (!out || !label_names)
        return LV_EINVAL;
    int rc = metric_new(m, KIND_COUNTER, name, help, const_labels, n_const, label_names,
                        n_labels, NULL, 0, &mt);
    if (!rc)
        *out = (lv_counter_vec_t *)(void *)mt;
    return rc;
}

lv_counter_t *lv_counter_vec_with(lv_counter_vec_t *v, const char *const *values)
{
    series_t *s = family_with(&v->m, values);
    return s ? &s->u.c : NULL;
}

int lv_gauge_vec_new(lv_metrics_t *m, const char *name, const char *help,
                     const lv_label_t *const_labels, size_t n_const,
                     const char *const *label_names, size_t n_labels, lv_gauge_vec_t **out)
{
    metric_t *mt;
    if (!out || !label_names)
        return LV_EINVAL;
    int rc = metric_new(m, KIND_GAUGE, name, help, const_labels, n_const, label_names, n_labels,
                        NULL, 0, &mt);
    if (!rc)
        *out = (lv_gauge_vec_t *)(void *)mt;
    return rc;
}

lv_gauge_t *lv_gauge_vec_with(lv_gauge_vec_t *v, const char *const *values)
{
    series_t *s = family_with(&v->m, values);
    return s ? &s->u.g : NULL;
}

int lv_hist_vec_new(lv_metrics_t *m, const char *name, const char *help,
                    const lv_label_t *const_labels, size_t n_const,
                    const char *const *label_names, size_t n_labels, const double *bounds,
                    size_t n_bounds, lv_hist_vec_t **out)
{
    metric_t *mt;
    if (!out || !label_names)
        return LV_EINVAL;
    int rc = metric_new(m, KIND_HIST, name, help, const_labels, n_const, label_names, n_labels,
                        bounds, n_bounds, &mt);
    if (!rc)
        *out = (lv_hist_vec_t *)(void *)mt;
    return rc;
}

lv_hist_t *lv_hist_vec_with(lv_hist_vec_t *v, const char *const *values)
{
    series_t *s = family_with(&v->m, values);
    return s ? &s->u.h : NULL;
}

/* ---- rendering ---- */

/* name + suffix + {labels[,extra]} */
static int render_head(lv_buf_t *out, const char *name, const char *suffix, const char *labels,
                       const char *le)
{
    int rc = lv_buf_printf(out, "%s%s", name, suffix);
    if (rc)
        return rc;
    if (!*labels && !le)
        return 0;
    if ((rc = lv_buf_printf(out, "{%s", labels)) != 0)
        return rc;
    if (le && (rc = lv_buf_printf(out, "%sle=\"%s\"", *labels ? "," : "", le)) != 0)
        return rc;
    return lv_buf_append_str(out, "}");
}

static int render_sample(lv_buf_t *out, const char *name, const char *suffix, const char *labels,
                         const char *le, double v)
{
    char num[METRICS_NUM_MAX];
    format_double(num, sizeof num, v);
    int rc = render_head(out, name, suffix, labels, le);
    return rc ? rc : lv_buf_printf(out, " %s\n", num);
}

static int render_series(lv_buf_t *out, const metric_t *mt, const series_t *s)
{
    int rc;
    if (mt->kind == KIND_COUNTER)
        return render_sample(out, mt->name, "", s->labels, NULL, s->u.c.value);
    if (mt->kind == KIND_GAUGE)
        return render_sample(out, mt->name, "", s->labels, NULL, lv_gauge_value(&s->u.g));
    const lv_hist_t *h = &s->u.h;
    uint64_t cum = 0;
    for (size_t i = 0; i < h->n_bounds; i++) {
        cum += h->counts[i];
        if ((rc = render_head(out, mt->name, "_bucket", s->labels, mt->le[i])) != 0)
            return rc;
        if ((rc = lv_buf_printf(out, " %llu\n", (unsigned long long)cum)) != 0)
            return rc;
    }
    if ((rc = render_head(out, mt->name, "_bucket", s->labels, "+Inf")) != 0)
        return rc;
    if ((rc = lv_buf_printf(out, " %llu\n", (unsigned long long)h->count)) != 0)
        return rc;
    if ((rc = render_sample(out, mt->name, "_sum", s->labels, NULL, h->sum)) != 0)
        return rc;
    if ((rc = render_head(out, mt->name, "_count", s->labels, NULL)) != 0)
        return rc;
    return lv_buf_printf(out, " %llu\n", (unsigned long long)h->count);
}

int lv_metrics_render(lv_metrics_t *m, lv_buf_t *out)
{
    static const char *const type_names[] = {"counter", "gauge", "histogram"};
    if (!m || !out)
        return LV_EINVAL;
    size_t start = out->len;
    int rc = 0;
    for (const metric_t *mt = m->head; mt && !rc; mt = mt->next) {
        if (!mt->n_series)
            continue;
        if (mt->help)
            rc = lv_buf_printf(out, "# HELP %s %s\n", mt->name, mt->help);
        if (!rc)
            rc = lv_buf_printf(out, "# TYPE %s %s\n", mt->name, type_names[mt->kind]);
        for (size_t i = 0; !rc && i < mt->n_series; i++)
            rc = render_series(out, mt, mt->series[i]);
    }
    if (rc) {
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
    }
    return rc;
}

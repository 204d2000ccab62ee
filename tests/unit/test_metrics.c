/* test_metrics.c - Prometheus registry: exact rendering per type, escaping, bucket edges, the
 * label-set cap, quantile estimates, and a line checker run over everything rendered. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lv_buf.h"
#include "lv_common.h"
#include "lv_metrics.h"

/* ---- a tiny checker for the text exposition format 0.0.4 ---- */

typedef struct {
    char family[256]; /* the last # TYPE'd name */
    char type[16];
    char seen[64][256]; /* names already given a # TYPE line */
    size_t n_seen;
    int in_buckets;        /* inside a run of _bucket lines */
    double last_bucket;    /* the previous cumulative bucket count in the run */
    double inf_bucket;     /* the le="+Inf" count, checked against _count */
    int have_inf;
} checker_t;

static size_t scan_name(const char *s, int is_label)
{
    size_t i = 0;
    for (;; i++) {
        char c = s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                 (!is_label && c == ':') || (i > 0 && c >= '0' && c <= '9');
        if (!ok)
            return i;
    }
}

/* A float as Go's ParseFloat takes it in this format, or +Inf/-Inf/NaN; returns its length. */
static size_t scan_value(const char *s, double *v)
{
    static const char *const special[] = {"+Inf", "-Inf", "Inf", "NaN"};
    for (size_t k = 0; k < LV_ARRAY_LEN(special); k++) {
        size_t n = strlen(special[k]);
        if (strncmp(s, special[k], n) == 0) {
            *v = strtod(special[k][0] == 'N' ? "nan" : special[k][0] == '-' ? "-inf" : "inf", NULL);
            return n;
        }
    }
    size_t i = 0, digits = 0;
    if (s[i] == '+' || s[i] == '-')
        i++;
    while (s[i] >= '0' && s[i] <= '9')
        i++, digits++;
    if (s[i] == '.') {
        i++;
        while (s[i] >= '0' && s[i] <= '9')
            i++, digits++;
    }
    if (!digits)
        return 0;
    if (s[i] == 'e' || s[i] == 'E') {
        size_t j = i + 1, ed = 0;
        if (s[j] == '+' || s[j] == '-')
            j++;
        while (s[j] >= '0' && s[j] <= '9')
            j++, ed++;
        if (!ed)
            return 0;
        i = j;
    }
    char tmp[64];
    if (i >= sizeof tmp)
        return 0;
    memcpy(tmp, s, i);
    tmp[i] = '\0';
    *v = strtod(tmp, NULL);
    return i;
}

static int is_suffixed(const char *name, const char *family, const char *suffix)
{
    size_t n = strlen(family);
    return strncmp(name, family, n) == 0 && strcmp(name + n, suffix) == 0;
}

/* Check one line (without its '\n'); 0 when valid, else a static reason. */
static const char *check_line(checker_t *c, const char *line)
{
    if (strncmp(line, "# HELP ", 7) == 0) {
        const char *p = line + 7;
        size_t n = scan_name(p, 0);
        if (!n)
            return "HELP without a name";
        p += n;
        if (*p && *p != ' ')
            return "HELP name not followed by a space";
        for (; *p; p++)
            if (*p == '\\' && p[1] != '\\' && p[1] != 'n')
                return "bad escape in HELP";
            else if (*p == '\\')
                p++;
        return NULL;
    }
    if (strncmp(line, "# TYPE ", 7) == 0) {
        const char *p = line + 7;
        size_t n = scan_name(p, 0);
        if (!n || n >= sizeof c->family || p[n] != ' ')
            return "TYPE without a name";
        static const char *const types[] = {"counter", "gauge", "histogram", "summary", "untyped"};
        int ok = 0;
        for (size_t k = 0; k < LV_ARRAY_LEN(types); k++)
            ok |= strcmp(p + n + 1, types[k]) == 0;
        if (!ok)
            return "unknown TYPE";
        memcpy(c->family, p, n);
        c->family[n] = '\0';
        snprintf(c->type, sizeof c->type, "%s", p + n + 1);
        for (size_t k = 0; k < c->n_seen; k++)
            if (strcmp(c->seen[k], c->family) == 0)
                return "TYPE twice for one name";
        if (c->n_seen < LV_ARRAY_LEN(c->seen))
            memcpy(c->seen[c->n_seen++], c->family, n + 1);
        c->in_buckets = 0;
        return NULL;
    }
    if (line[0] == '#')
        return NULL; /* a plain comment */

    /* A sample: name [{labels}] value [timestamp] */
    const char *p = line;
    size_t n = scan_name(p, 0);
    if (!n || n >= 256)
        return "sample without a metric name";
    char name[256];
    memcpy(name, p, n);
    name[n] = '\0';
    p += n;
    char le[64] = "";
    if (*p == '{') {
        p++;
        char names[16][64];
        size_t n_names = 0;
        while (*p != '}') {
            size_t ln = scan_name(p, 1);
            if (!ln || ln >= 64)
                return "bad label name";
            if (n_names == 16)
                return "too many labels";
            memcpy(names[n_names], p, ln);
            names[n_names][ln] = '\0';
            for (size_t k = 0; k < n_names; k++)
                if (strcmp(names[k], names[n_names]) == 0)
                    return "label name twice";
            int is_le = strcmp(names[n_names], "le") == 0;
            n_names++;
            p += ln;
            if (p[0] != '=' || p[1] != '"')
                return "label without =\"";
            p += 2;
            size_t vlen = 0;
            while (*p != '"') {
                if (!*p)
                    return "unterminated label value";
                if (*p == '\\') {
                    if (p[1] != '\\' && p[1] != '"' && p[1] != 'n')
                        return "bad escape in label value";
                    p++;
                }
                if (is_le && vlen + 1 < sizeof le)
                    le[vlen++] = *p;
                p++;
            }
            p++;
            if (*p == ',')
                p++;
            else if (*p != '}')
                return "labels not separated by a comma";
        }
        p++;
    }
    if (*p != ' ')
        return "no space before the value";
    p++;
    double v;
    size_t vn = scan_value(p, &v);
    if (!vn)
        return "bad value";
    p += vn;
    if (*p == ' ') {
        p++;
        if (*p == '-')
            p++;
        if (!(*p >= '0' && *p <= '9'))
            return "bad timestamp";
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (*p)
        return "junk after the value";

    /* The sample belongs to the last TYPE'd family, and histograms are consistent. */
    if (!c->family[0])
        return "sample before any TYPE";
    if (strcmp(c->type, "histogram") == 0) {
        if (is_suffixed(name, c->family, "_bucket")) {
            if (!le[0])
                return "bucket without le";
            if (c->in_buckets && v < c->last_bucket)
                return "bucket counts not cumulative";
            c->in_buckets = 1;
            c->last_bucket = v;
            if (strcmp(le, "+Inf") == 0) {
                c->inf_bucket = v;
                c->have_inf = 1;
                c->in_buckets = 0;
            }
        } else if (is_suffixed(name, c->family, "_count")) {
            if (!c->have_inf || c->inf_bucket != v)
                return "_count differs from the +Inf bucket";
            c->have_inf = 0;
        } else if (!is_suffixed(name, c->family, "_sum")) {
            return "histogram sample with a foreign name";
        }
    } else if (strcmp(name, c->family) != 0) {
        return "sample name differs from its family";
    }
    return NULL;
}

/* Check a whole exposition; fails the test with the offending line. */
static void check_exposition(const char *text, size_t len)
{
    checker_t c;
    memset(&c, 0, sizeof c);
    assert_true(len > 0);
    assert_int_equal(text[len - 1], '\n');
    size_t start = 0;
    while (start < len) {
        const char *nl = memchr(text + start, '\n', len - start);
        assert_non_null(nl);
        size_t n = (size_t)(nl - (text + start));
        char *line = malloc(n + 1);
        assert_non_null(line);
        memcpy(line, text + start, n);
        line[n] = '\0';
        const char *why = check_line(&c, line);
        if (why)
            fail_msg("invalid exposition line: %s: \"%s\"", why, line);
        free(line);
        start += n + 1;
    }
}

/* ---- fixture ---- */

typedef struct {
    lv_metrics_t *m;
    lv_buf_t out;
} fx_t;

static int fx_setup(void **state)
{
    fx_t *f = calloc(1, sizeof(*f));
    if (!f || lv_metrics_new(&f->m) != 0)
        return -1;
    lv_buf_init(&f->out, 1 << 20);
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    fx_t *f = *state;
    lv_metrics_free(f->m);
    lv_buf_free(&f->out);
    free(f);
    return 0;
}

/* Render and compare byte for byte, then run the line checker over it. */
static void expect_render(fx_t *f, const char *expected)
{
    lv_buf_reset(&f->out);
    assert_int_equal(lv_metrics_render(f->m, &f->out), 0);
    assert_string_equal(f->out.data ? f->out.data : "", expected);
    assert_int_equal(f->out.len, strlen(expected));
    if (f->out.len)
        check_exposition(f->out.data, f->out.len);
}

/* ---- rendering per type ---- */

static void test_counter_render(void **state)
{
    fx_t *f = *state;
    lv_counter_t *c, *cl;
    assert_int_equal(lv_counter_new(f->m, "lv_frames_total", "Frames received.", NULL, 0, &c), 0);
    const lv_label_t role[] = {{"role", "serve"}, {"node", "a1"}};
    assert_int_equal(lv_counter_new(f->m, "lv_bytes_total", NULL, role, 2, &cl), 0);
    lv_counter_inc(c);
    lv_counter_inc(c);
    lv_counter_add(c, 1.5);
    lv_counter_add(c, -4);  /* ignored: counters never go down */
    lv_counter_add(c, NAN); /* ignored */
    assert_true(lv_counter_value(c) == 3.5);
    lv_counter_add(cl, 123456789);
    expect_render(f, "# HELP lv_frames_total Frames received.\n"
                     "# TYPE lv_frames_total counter\n"
                     "lv_frames_total 3.5\n"
                     "# TYPE lv_bytes_total counter\n"
                     "lv_bytes_total{role=\"serve\",node=\"a1\"} 123456789\n");
}

static double read_sessions(void *ud) { return (double)*(int *)ud; }

static void test_gauge_render(void **state)
{
    fx_t *f = *state;
    lv_gauge_t *g, *gf;
    assert_int_equal(lv_gauge_new(f->m, "lv_queue_depth", "Jobs waiting.", NULL, 0, &g), 0);
    assert_int_equal(lv_gauge_new(f->m, "lv_sessions", "Open sessions.", NULL, 0, &gf), 0);
    lv_gauge_set(g, 10);
    lv_gauge_add(g, -12.25);
    int sessions = 7;
    lv_gauge_set_fn(gf, read_sessions, &sessions);
    sessions = 42; /* read at scrape time, not when set */
    assert_true(lv_gauge_value(gf) == 42);
    expect_render(f, "# HELP lv_queue_depth Jobs waiting.\n"
                     "# TYPE lv_queue_depth gauge\n"
                     "lv_queue_depth -2.25\n"
                     "# HELP lv_sessions Open sessions.\n"
                     "# TYPE lv_sessions gauge\n"
                     "lv_sessions 42\n");
    lv_gauge_set(gf, 0.001); /* a stored value replaces the callback */
    sessions = 1;
    assert_true(lv_gauge_value(gf) == 0.001);
    lv_gauge_set(g, INFINITY);
    expect_render(f, "# HELP lv_queue_depth Jobs waiting.\n"
                     "# TYPE lv_queue_depth gauge\n"
                     "lv_queue_depth +Inf\n"
                     "# HELP lv_sessions Open sessions.\n"
                     "# TYPE lv_sessions gauge\n"
                     "lv_sessions 0.001\n");
}

static void test_hist_render(void **state)
{
    fx_t *f = *state;
    lv_hist_t *h;
    const double bounds[] = {0.125, 0.5, 1};
    assert_int_equal(lv_hist_new(f->m, "lv_wait_seconds", "Queue wait.", NULL, 0, bounds, 3, &h), 0);
    lv_hist_observe(h, 0.0625);
    lv_hist_observe(h, 0.125); /* equal to a bound: that bound's bucket */
    lv_hist_observe(h, 0.25);
    lv_hist_observe(h, 1);
    lv_hist_observe(h, 4);
    assert_int_equal(lv_hist_count(h), 5);
    assert_true(lv_hist_sum(h) == 5.4375);
    expect_render(f, "# HELP lv_wait_seconds Queue wait.\n"
                     "# TYPE lv_wait_seconds histogram\n"
                     "lv_wait_seconds_bucket{le=\"0.125\"} 2\n"
                     "lv_wait_seconds_bucket{le=\"0.5\"} 3\n"
                     "lv_wait_seconds_bucket{le=\"1\"} 4\n"
                     "lv_wait_seconds_bucket{le=\"+Inf\"} 5\n"
                     "lv_wait_seconds_sum 5.4375\n"
                     "lv_wait_seconds_count 5\n");
}

static void test_hist_default_bounds(void **state)
{
    fx_t *f = *state;
    lv_hist_t *h;
    const lv_label_t stage[] = {{"stage", "shape"}};
    assert_int_equal(lv_hist_new(f->m, "lv_stage_seconds", "Stage time.", stage, 1, NULL, 0, &h), 0);
    assert_int_equal(lv_metrics_latency_bounds_n, 21);
    assert_true(lv_metrics_latency_bounds_s[0] == 50e-6);
    assert_true(lv_metrics_latency_bounds_s[20] == 120);
    lv_hist_observe_us(h, 300);     /* 0.0003 s */
    lv_hist_observe_us(h, 2000000); /* 2 s, on a bound */
    const char *les[] = {"5e-05", "0.0001", "0.0002", "0.0005", "0.001", "0.002", "0.005",
                         "0.01",  "0.02",   "0.05",   "0.1",    "0.2",   "0.5",   "1",
                         "2",     "5",      "10",     "20",     "30",    "60",    "120"};
    const int cum[] = {0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2};
    lv_buf_t want;
    lv_buf_init(&want, 1 << 16);
    assert_int_equal(lv_buf_append_str(&want, "# HELP lv_stage_seconds Stage time.\n"
                                              "# TYPE lv_stage_seconds histogram\n"),
                     0);
    for (size_t i = 0; i < LV_ARRAY_LEN(les); i++)
        assert_int_equal(lv_buf_printf(&want, "lv_stage_seconds_bucket{stage=\"shape\",le=\"%s\"} %d\n",
                                       les[i], cum[i]),
                         0);
    assert_int_equal(lv_buf_append_str(&want, "lv_stage_seconds_bucket{stage=\"shape\",le=\"+Inf\"} 2\n"
                                              "lv_stage_seconds_sum{stage=\"shape\"} 2.0003\n"
                                              "lv_stage_seconds_count{stage=\"shape\"} 2\n"),
                     0);
    expect_render(f, want.data);
    lv_buf_free(&want);
}

static void test_vec_render(void **state)
{
    fx_t *f = *state;
    lv_counter_vec_t *drops;
    lv_hist_vec_t *lat;
    lv_gauge_vec_t *inflight;
    const char *const drop_labels[] = {"backend", "reason"};
    const char *const be_label[] = {"backend"};
    const lv_label_t inst[] = {{"instance", "fe1"}};
    const double bounds[] = {0.5, 2};
    assert_int_equal(lv_counter_vec_new(f->m, "lv_drops_total", "Frames dropped.", NULL, 0,
                                        drop_labels, 2, &drops),
                     0);
    assert_int_equal(lv_gauge_vec_new(f->m, "lv_inflight", "Requests in flight.", NULL, 0,
                                      be_label, 1, &inflight),
                     0);
    assert_int_equal(lv_hist_vec_new(f->m, "lv_ttft_seconds", "Time to first token.", inst, 1,
                                     be_label, 1, bounds, 2, &lat),
                     0);
    /* No series yet: families render nothing at all. */
    expect_render(f, "");

    lv_counter_t *a = lv_counter_vec_with(drops, (const char *const[]){"ollama", "replaced"});
    lv_counter_t *b = lv_counter_vec_with(drops, (const char *const[]){"vllm", "stale"});
    assert_non_null(a);
    assert_non_null(b);
    assert_ptr_equal(lv_counter_vec_with(drops, (const char *const[]){"ollama", "replaced"}), a);
    assert_ptr_not_equal(a, b);
    lv_counter_inc(a);
    lv_counter_add(b, 2);
    lv_gauge_set(lv_gauge_vec_with(inflight, be_label /* value "backend" */), 3);
    lv_hist_t *h = lv_hist_vec_with(lat, (const char *const[]){"vllm"});
    assert_non_null(h);
    lv_hist_observe(h, 1);
    assert_null(lv_counter_vec_with(drops, NULL));
    assert_null(lv_counter_vec_with(drops, (const char *const[]){"x", NULL}));
    expect_render(f, "# HELP lv_drops_total Frames dropped.\n"
                     "# TYPE lv_drops_total counter\n"
                     "lv_drops_total{backend=\"ollama\",reason=\"replaced\"} 1\n"
                     "lv_drops_total{backend=\"vllm\",reason=\"stale\"} 2\n"
                     "# HELP lv_inflight Requests in flight.\n"
                     "# TYPE lv_inflight gauge\n"
                     "lv_inflight{backend=\"backend\"} 3\n"
                     "# HELP lv_ttft_seconds Time to first token.\n"
                     "# TYPE lv_ttft_seconds histogram\n"
                     "lv_ttft_seconds_bucket{instance=\"fe1\",backend=\"vllm\",le=\"0.5\"} 0\n"
                     "lv_ttft_seconds_bucket{instance=\"fe1\",backend=\"vllm\",le=\"2\"} 1\n"
                     "lv_ttft_seconds_bucket{instance=\"fe1\",backend=\"vllm\",le=\"+Inf\"} 1\n"
                     "lv_ttft_seconds_sum{instance=\"fe1\",backend=\"vllm\"} 1\n"
                     "lv_ttft_seconds_count{instance=\"fe1\",backend=\"vllm\"} 1\n");
}

static void test_escaping(void **state)
{
    fx_t *f = *state;
    lv_counter_t *c;
    lv_counter_vec_t *v;
    const lv_label_t lab[] = {{"path", "C:\\dir\\\"x\"\nend"}};
    const char *const names[] = {"model"};
    assert_int_equal(lv_counter_new(f->m, "esc_total", "Back\\slash, \"quotes\" stay,\nnew line.",
                                    lab, 1, &c),
                     0);
    assert_int_equal(lv_counter_vec_new(f->m, "esc2_total", "", NULL, 0, names, 1, &v), 0);
    lv_counter_inc(lv_counter_vec_with(v, (const char *const[]){"llava:7b \"q\" {a=b}, \\n"}));
    lv_counter_inc(lv_counter_vec_with(v, (const char *const[]){""}));
    lv_counter_inc(lv_counter_vec_with(v, (const char *const[]){"caf\xc3\xa9 \xe2\x9c\x93"}));
    expect_render(f, "# HELP esc_total Back\\\\slash, \"quotes\" stay,\\nnew line.\n"
                     "# TYPE esc_total counter\n"
                     "esc_total{path=\"C:\\\\dir\\\\\\\"x\\\"\\nend\"} 0\n"
                     "# TYPE esc2_total counter\n"
                     "esc2_total{model=\"llava:7b \\\"q\\\" {a=b}, \\\\n\"} 1\n"
                     "esc2_total{model=\"\"} 1\n"
                     "esc2_total{model=\"caf\xc3\xa9 \xe2\x9c\x93\"} 1\n");
}

/* ---- histogram edges and quantiles ---- */

static void test_bucket_boundaries(void **state)
{
    fx_t *f = *state;
    lv_hist_t *h;
    const double bounds[] = {-1, 1, 2, 3, INFINITY}; /* a trailing +Inf is dropped */
    assert_int_equal(lv_hist_new(f->m, "edge", NULL, NULL, 0, bounds, 5, &h), 0);
    lv_hist_observe(h, -1);                   /* le=-1 */
    lv_hist_observe(h, -INFINITY);            /* le=-1 */
    lv_hist_observe(h, nextafter(-1, 0));     /* le=1 */
    lv_hist_observe(h, 1);                    /* le=1 */
    lv_hist_observe(h, nextafter(1, 2));      /* le=2 */
    lv_hist_observe(h, 2);                    /* le=2 */
    lv_hist_observe(h, 3);                    /* le=3 */
    lv_hist_observe(h, nextafter(3, 4));      /* +Inf */
    lv_hist_observe(h, INFINITY);             /* +Inf */
    lv_hist_observe(h, NAN);                  /* ignored */
    assert_int_equal(lv_hist_count(h), 9);
    lv_buf_reset(&f->out);
    assert_int_equal(lv_metrics_render(f->m, &f->out), 0);
    /* The sum holds both -Inf and +Inf, so it is NaN. */
    assert_string_equal(f->out.data, "# TYPE edge histogram\n"
                                     "edge_bucket{le=\"-1\"} 2\n"
                                     "edge_bucket{le=\"1\"} 4\n"
                                     "edge_bucket{le=\"2\"} 6\n"
                                     "edge_bucket{le=\"3\"} 7\n"
                                     "edge_bucket{le=\"+Inf\"} 9\n"
                                     "edge_sum NaN\n"
                                     "edge_count 9\n");
    check_exposition(f->out.data, f->out.len);
}

static void test_quantile(void **state)
{
    fx_t *f = *state;
    lv_hist_t *u, *one, *e, *empty, *neg, *infonly;
    double tenth[10];
    for (int i = 0; i < 10; i++)
        tenth[i] = (i + 1) / 10.0;
    assert_int_equal(lv_hist_new(f->m, "q_uniform", NULL, NULL, 0, tenth, 10, &u), 0);
    assert_int_equal(lv_hist_new(f->m, "q_one", NULL, NULL, 0, (const double[]){1, 2, 4}, 3, &one), 0);
    assert_int_equal(lv_hist_new(f->m, "q_exp", NULL, NULL, 0, NULL, 0, &e), 0);
    assert_int_equal(lv_hist_new(f->m, "q_empty", NULL, NULL, 0, tenth, 10, &empty), 0);
    assert_int_equal(lv_hist_new(f->m, "q_neg", NULL, NULL, 0, (const double[]){-2, 5}, 2, &neg), 0);
    assert_int_equal(lv_hist_new(f->m, "q_inf", NULL, NULL, 0, NULL, 0, &infonly), 0);

    /* Uniform on (0, 1): each bucket holds 100, so interpolation is exact. */
    for (int i = 0; i < 1000; i++)
        lv_hist_observe(u, (i + 0.5) / 1000.0);
    assert_float_equal(lv_hist_quantile(u, 0.5), 0.5, 1e-9);
    assert_float_equal(lv_hist_quantile(u, 0.9), 0.9, 1e-9);
    assert_float_equal(lv_hist_quantile(u, 0.99), 0.99, 1e-9);
    assert_float_equal(lv_hist_quantile(u, 0.25), 0.25, 1e-9);
    assert_float_equal(lv_hist_quantile(u, 1), 1.0, 1e-9);
    assert_float_equal(lv_hist_quantile(u, 0), 0.0, 1e-9);

    /* Everything in (1, 2]: linear inside that bucket. */
    for (int i = 0; i < 10; i++)
        lv_hist_observe(one, 1.5);
    assert_float_equal(lv_hist_quantile(one, 0.5), 1.5, 1e-9);
    assert_float_equal(lv_hist_quantile(one, 0.1), 1.1, 1e-9);
    assert_float_equal(lv_hist_quantile(one, 0), 1.0, 1e-9); /* lower edge of the first non-empty */
    lv_hist_observe(one, 100);                                /* lands in +Inf */
    assert_float_equal(lv_hist_quantile(one, 1), 4.0, 1e-9);  /* highest finite bound */

    /* Exponential latencies, mean 10 ms, on the default buckets (true quantile -ln(1-q) * mean).
     * A bucketed estimate can only promise the right bucket; inside it, linear interpolation
     * must match the value computed from the exact CDF at the bucket's edges. */
    const int n = 20000;
    const double mean = 0.010;
    for (int i = 0; i < n; i++)
        lv_hist_observe(e, -log(1.0 - (i + 0.5) / n) * mean);
    const double qs[] = {0.5, 0.9, 0.99, 0.999};
    for (size_t k = 0; k < LV_ARRAY_LEN(qs); k++) {
        double truth = -log(1.0 - qs[k]) * mean;
        size_t b = 0;
        while (lv_metrics_latency_bounds_s[b] < truth)
            b++;
        double lo = b ? lv_metrics_latency_bounds_s[b - 1] : 0, hi = lv_metrics_latency_bounds_s[b];
        double f_lo = 1 - exp(-lo / mean), f_hi = 1 - exp(-hi / mean);
        double want = lo + (hi - lo) * (qs[k] - f_lo) / (f_hi - f_lo);
        double est = lv_hist_quantile(e, qs[k]);
        assert_true(est > lo && est <= hi);
        assert_float_equal(est, want, want * 0.01);
        print_message("exp(10ms) q%.3f: true %.3f ms, estimate %.3f ms\n", qs[k], truth * 1e3,
                      est * 1e3);
    }
    assert_float_equal(lv_hist_sum(e) / (double)lv_hist_count(e), 0.010, 0.0005);

    /* Edge cases. */
    assert_true(isnan(lv_hist_quantile(empty, 0.5)));
    assert_true(isnan(lv_hist_quantile(u, -0.1)));
    assert_true(isnan(lv_hist_quantile(u, 1.1)));
    assert_true(isnan(lv_hist_quantile(u, NAN)));
    lv_hist_observe(neg, -3); /* first bucket with a non-positive bound: the bound itself */
    assert_float_equal(lv_hist_quantile(neg, 0.5), -2.0, 1e-9);
    lv_hist_observe(neg, 0);
    lv_hist_observe(neg, 0);
    lv_hist_observe(neg, 0);
    /* rank 3 of 4 in (-2, 5] holding 3: -2 + 7 * (2/3) */
    assert_float_equal(lv_hist_quantile(neg, 0.75), -2.0 + 7.0 * 2.0 / 3.0, 1e-9);
    lv_hist_observe(infonly, 1000); /* beyond 120 s: the highest bound */
    assert_float_equal(lv_hist_quantile(infonly, 0.5), 120.0, 1e-9);
}

/* ---- the label-set cap ---- */

static void test_label_cap(void **state)
{
    fx_t *f = *state;
    lv_counter_vec_t *v, *v2;
    const char *const one[] = {"id"};
    const char *const two[] = {"backend", "reason"};
    assert_int_equal(lv_counter_vec_new(f->m, "cap_total", "Capped.", NULL, 0, one, 1, &v), 0);
    assert_int_equal(lv_counter_vec_new(f->m, "cap2_total", "Capped.", NULL, 0, two, 2, &v2), 0);

    lv_counter_t *seen[LV_METRICS_MAX_LABEL_SETS];
    char val[32];
    for (int i = 0; i < LV_METRICS_MAX_LABEL_SETS; i++) {
        snprintf(val, sizeof val, "b%02d", i);
        seen[i] = lv_counter_vec_with(v, (const char *const[]){val});
        assert_non_null(seen[i]);
        for (int k = 0; k < i; k++)
            assert_ptr_not_equal(seen[k], seen[i]);
        lv_counter_inc(seen[i]);
    }
    /* The 65th, 66th, ... distinct sets all fold into one "other" series. */
    lv_counter_t *o1 = lv_counter_vec_with(v, (const char *const[]){"b64"});
    lv_counter_t *o2 = lv_counter_vec_with(v, (const char *const[]){"zzz"});
    lv_counter_t *o3 = lv_counter_vec_with(v, (const char *const[]){LV_METRICS_OTHER});
    assert_non_null(o1);
    assert_ptr_equal(o1, o2);
    assert_ptr_equal(o1, o3);
    for (int k = 0; k < LV_METRICS_MAX_LABEL_SETS; k++)
        assert_ptr_not_equal(o1, seen[k]);
    lv_counter_inc(o1);
    lv_counter_add(o2, 2);
    /* Known sets still map to their own series. */
    assert_ptr_equal(lv_counter_vec_with(v, (const char *const[]){"b07"}), seen[7]);

    /* An explicit "other" before the cap is just a label set; the overflow then reuses it. */
    lv_counter_t *early = lv_counter_vec_with(v2, (const char *const[]){"other", "other"});
    for (int i = 0; i < 100; i++) {
        snprintf(val, sizeof val, "r%d", i);
        lv_counter_t *c = lv_counter_vec_with(v2, (const char *const[]){"x", val});
        assert_non_null(c);
        if (i >= LV_METRICS_MAX_LABEL_SETS - 1)
            assert_ptr_equal(c, early);
        lv_counter_inc(c);
    }

    lv_buf_reset(&f->out);
    assert_int_equal(lv_metrics_render(f->m, &f->out), 0);
    check_exposition(f->out.data, f->out.len);
    size_t cap_lines = 0, cap2_lines = 0;
    for (const char *p = f->out.data; (p = strstr(p, "\ncap_total{")) != NULL; p++)
        cap_lines++;
    for (const char *p = f->out.data; (p = strstr(p, "\ncap2_total{")) != NULL; p++)
        cap2_lines++;
    assert_int_equal(cap_lines, LV_METRICS_MAX_LABEL_SETS + 1);
    assert_int_equal(cap2_lines, LV_METRICS_MAX_LABEL_SETS);
    assert_non_null(strstr(f->out.data, "\ncap_total{id=\"other\"} 3\n"));
    assert_non_null(strstr(f->out.data, "\ncap_total{id=\"b63\"} 1\n"));
    /* 100 sets, 63 kept as themselves + "other": 100 - 63 = 37 increments folded + 0 early. */
    assert_non_null(strstr(f->out.data, "\ncap2_total{backend=\"other\",reason=\"other\"} 37\n"));
}

/* ---- validation ---- */

static void test_names_and_errors(void **state)
{
    fx_t *f = *state;
    lv_counter_t *c;
    lv_gauge_t *g;
    lv_hist_t *h;
    lv_counter_vec_t *cv;
    const lv_label_t bad_label[] = {{"__reserved", "x"}};
    const lv_label_t le_label[] = {{"le", "x"}};
    const lv_label_t dup[] = {{"a", "1"}, {"a", "2"}};
    const char *const a_name[] = {"a"};
    const char *const dash[] = {"a-b"};
    const char *const nine[] = {"l1", "l2", "l3", "l4", "l5", "l6", "l7", "l8", "l9"};

    assert_int_equal(lv_counter_new(f->m, "ok:name_1", NULL, NULL, 0, &c), 0);
    assert_int_equal(lv_counter_new(f->m, "_under", NULL, NULL, 0, &c), 0);
    assert_int_equal(lv_counter_new(f->m, "1abc", NULL, NULL, 0, &c), LV_EINVAL);
    assert_int_equal(lv_counter_new(f->m, "a-b", NULL, NULL, 0, &c), LV_EINVAL);
    assert_int_equal(lv_counter_new(f->m, "", NULL, NULL, 0, &c), LV_EINVAL);
    assert_int_equal(lv_counter_new(f->m, NULL, NULL, NULL, 0, &c), LV_EINVAL);
    assert_int_equal(lv_counter_new(f->m, "x y", NULL, NULL, 0, &c), LV_EINVAL);
    assert_int_equal(lv_counter_new(f->m, "lbl", NULL, bad_label, 1, &c), LV_EINVAL);
    assert_int_equal(lv_counter_new(f->m, "lbl", NULL, dup, 2, &c), LV_EINVAL);
    assert_int_equal(lv_counter_new(f->m, "lbl", NULL, NULL, 1, &c), LV_EINVAL);
    assert_int_equal(lv_counter_new(f->m, "lbl", NULL, (const lv_label_t[]){{"a:b", "x"}}, 1, &c),
                     LV_EINVAL);
    assert_int_equal(lv_counter_new(f->m, "lbl", NULL, le_label, 1, &c), 0); /* le is fine here */
    assert_int_equal(lv_hist_new(f->m, "lblh", NULL, le_label, 1, NULL, 0, &h), LV_EINVAL);
    assert_int_equal(lv_counter_vec_new(f->m, "v1", NULL, dup, 1, a_name, 1, &cv), LV_EINVAL);
    assert_int_equal(lv_counter_vec_new(f->m, "v1", NULL, NULL, 0, dash, 1, &cv), LV_EINVAL);
    assert_int_equal(lv_counter_vec_new(f->m, "v1", NULL, NULL, 0, nine, 9, &cv), LV_EINVAL);
    assert_int_equal(lv_counter_vec_new(f->m, "v1", NULL, NULL, 0, a_name, 0, &cv), LV_EINVAL);
    assert_int_equal(lv_counter_vec_new(f->m, "v1", NULL, NULL, 0, NULL, 1, &cv), LV_EINVAL);
    assert_int_equal(lv_counter_vec_new(f->m, "v1", NULL, NULL, 0, nine, 8, &cv), 0);

    /* Taken names, including a histogram's derived ones. */
    assert_int_equal(lv_gauge_new(f->m, "ok:name_1", NULL, NULL, 0, &g), LV_EEXIST);
    assert_int_equal(lv_hist_new(f->m, "h", NULL, NULL, 0, NULL, 0, &h), 0);
    assert_int_equal(lv_counter_new(f->m, "h_count", NULL, NULL, 0, &c), LV_EEXIST);
    assert_int_equal(lv_counter_new(f->m, "h_bucket", NULL, NULL, 0, &c), LV_EEXIST);
    assert_int_equal(lv_counter_new(f->m, "h_total", NULL, NULL, 0, &c), 0);
    assert_int_equal(lv_gauge_new(f->m, "g_sum", NULL, NULL, 0, &g), 0);
    assert_int_equal(lv_hist_new(f->m, "g", NULL, NULL, 0, NULL, 0, &h), LV_EEXIST);

    /* Bounds must be finite and strictly increasing. */
    assert_int_equal(lv_hist_new(f->m, "b1", NULL, NULL, 0, (const double[]){1, 1}, 2, &h), LV_EINVAL);
    assert_int_equal(lv_hist_new(f->m, "b1", NULL, NULL, 0, (const double[]){2, 1}, 2, &h), LV_EINVAL);
    assert_int_equal(lv_hist_new(f->m, "b1", NULL, NULL, 0, (const double[]){NAN}, 1, &h), LV_EINVAL);
    assert_int_equal(lv_hist_new(f->m, "b1", NULL, NULL, 0, (const double[]){-INFINITY, 1}, 2, &h),
                     LV_EINVAL);
    double many[LV_METRICS_MAX_BUCKETS + 1];
    for (size_t i = 0; i < LV_ARRAY_LEN(many); i++)
        many[i] = (double)i;
    assert_int_equal(lv_hist_new(f->m, "b1", NULL, NULL, 0, many, LV_ARRAY_LEN(many), &h), LV_EINVAL);
    assert_int_equal(lv_hist_new(f->m, "b1", NULL, NULL, 0, many, LV_METRICS_MAX_BUCKETS, &h), 0);
    assert_int_equal(lv_hist_new(f->m, "b0", NULL, NULL, 0, (const double[]){INFINITY}, 1, &h), 0);
    lv_hist_observe(h, 3);
    assert_true(isnan(lv_hist_quantile(h, 0.5))); /* only +Inf: no estimate */

    /* Everything above still renders as valid text. */
    lv_buf_reset(&f->out);
    assert_int_equal(lv_metrics_render(f->m, &f->out), 0);
    check_exposition(f->out.data, f->out.len);
    assert_non_null(strstr(f->out.data, "\nb0_bucket{le=\"+Inf\"} 1\n"));
}

static void test_render_cap_all_or_nothing(void **state)
{
    fx_t *f = *state;
    lv_counter_t *c;
    assert_int_equal(lv_counter_new(f->m, "a_total", "A.", NULL, 0, &c), 0);
    assert_int_equal(lv_counter_new(f->m, "b_total", "B.", NULL, 0, &c), 0);
    lv_buf_t small;
    lv_buf_init(&small, 60);
    assert_int_equal(lv_buf_append_str(&small, "prefix\n"), 0);
    assert_int_equal(lv_metrics_render(f->m, &small), LV_ELIMIT);
    assert_int_equal(small.len, 7);
    assert_string_equal(small.data, "prefix\n");
    lv_buf_free(&small);
    /* Appends after what is there. */
    lv_buf_init(&small, 4096);
    assert_int_equal(lv_buf_append_str(&small, "x 1\n"), 0);
    assert_int_equal(lv_metrics_render(f->m, &small), 0);
    assert_string_equal(small.data, "x 1\n# HELP a_total A.\n# TYPE a_total counter\na_total 0\n"
                                    "# HELP b_total B.\n# TYPE b_total counter\nb_total 0\n");
    lv_buf_free(&small);
    assert_int_equal(lv_metrics_render(NULL, &f->out), LV_EINVAL);
}

static void test_number_format(void **state)
{
    fx_t *f = *state;
    lv_gauge_t *g;
    assert_int_equal(lv_gauge_new(f->m, "n", NULL, NULL, 0, &g), 0);
    const struct {
        double v;
        const char *text;
    } cases[] = {
        {0, "0"},
        {-0.0, "0"},
        {1, "1"},
        {-7, "-7"},
        {0.1, "0.1"},
        {1.0 / 3, "0.3333333333333333"},
        {0.0001, "0.0001"},
        {0.00001, "1e-05"},
        {1.5e-7, "1.5e-07"},
        {123456.789, "123456.789"},
        {9007199254740991.0, "9007199254740991"},
        {9007199254740992.0, "9.007199254740992e+15"},
        {2.5e20, "2.5e+20"},
        {1e300, "1e+300"},
        {5e-324, "5e-324"},
        {NAN, "NaN"},
        {-INFINITY, "-Inf"},
    };
    char want[128];
    for (size_t i = 0; i < LV_ARRAY_LEN(cases); i++) {
        lv_gauge_set(g, cases[i].v);
        snprintf(want, sizeof want, "# TYPE n gauge\nn %s\n", cases[i].text);
        expect_render(f, want);
    }
}

/* Many series, hostile values and every type at once: every line must parse. */
static void test_exposition_syntax(void **state)
{
    fx_t *f = *state;
    lv_counter_vec_t *cv;
    lv_gauge_vec_t *gv;
    lv_hist_vec_t *hv;
    lv_gauge_t *g;
    const char *const labels[] = {"user", "model"};
    const lv_label_t konst[] = {{"version", "0.1 \"dev\"\n\\"}};
    assert_int_equal(lv_counter_vec_new(f->m, "s_total", "a\\b\nc \"d\"", konst, 1, labels, 2, &cv), 0);
    assert_int_equal(lv_gauge_vec_new(f->m, "s_gauge", "G", NULL, 0, labels, 2, &gv), 0);
    assert_int_equal(lv_hist_vec_new(f->m, "s_seconds", "H", konst, 1, labels, 2, NULL, 0, &hv), 0);
    assert_int_equal(lv_gauge_new(f->m, "s_plain", NULL, NULL, 0, &g), 0);
    lv_gauge_set(g, NAN);
    char user[64], model[64];
    unsigned seed = 12345;
    for (int i = 0; i < 300; i++) {
        seed = seed * 1103515245u + 12345u;
        snprintf(user, sizeof user, "u%u\"\\\n%c", seed % 97, (char)(' ' + seed % 90));
        snprintf(model, sizeof model, "m,%u}{=", seed % 13);
        const char *const vals[] = {user, model};
        lv_counter_add(lv_counter_vec_with(cv, vals), (double)(seed % 1000) / 7.0);
        lv_gauge_set(lv_gauge_vec_with(gv, vals), -(double)(seed % 1000) * 1e-9);
        lv_hist_observe(lv_hist_vec_with(hv, vals), (double)(seed % 100000) * 1e-6);
    }
    lv_buf_reset(&f->out);
    assert_int_equal(lv_metrics_render(f->m, &f->out), 0);
    check_exposition(f->out.data, f->out.len);

    /* And the checker does reject broken lines. */
    checker_t c;
    memset(&c, 0, sizeof c);
    assert_null(check_line(&c, "# TYPE x counter"));
    assert_null(check_line(&c, "x{a=\"1\"} 2"));
    assert_non_null(check_line(&c, "x{a=\"1} 2"));
    assert_non_null(check_line(&c, "x{a=\"\\q\"} 2"));
    assert_non_null(check_line(&c, "x{a=\"1\",a=\"2\"} 2"));
    assert_non_null(check_line(&c, "x 2x"));
    assert_non_null(check_line(&c, "y 2"));
    assert_non_null(check_line(&c, "# TYPE x gauge"));
    assert_non_null(check_line(&c, "# HELP y bad \\x escape"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_counter_render, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_gauge_render, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_hist_render, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_hist_default_bounds, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_vec_render, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_escaping, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_bucket_boundaries, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_quantile, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_label_cap, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_names_and_errors, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_render_cap_all_or_nothing, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_number_format, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_exposition_syntax, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

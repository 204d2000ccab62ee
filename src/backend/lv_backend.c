/* lv_backend.c - backend pool: configuration checks, /models discovery, local detection, health
 * timer, the latency-weighted least-loaded pick, and the per-backend window, breaker and latency
 * fed by lv_chat (lv_backend_report). */
#include "lv_backend.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lv_allowlist.h"
#include "lv_buf.h"
#include "lv_common.h"
#include "lv_log.h"
#include "lv_h1c.h"
#include "lv_lane.h"
#include "lv_shape.h"

#define MODELS_BODY_MAX (1024 * 1024)
#define REFRESH_TIMEOUT_MS 2000
#define DETECT_TIMEOUT_MS 1000
#define HEALTH_DEFAULT_MS 10000
#define PROBE_PICK_STALE_MS 1000 /* a half-open pick no chat claimed within this is given back */

struct lv_pool {
    uv_loop_t *loop;
    lv_http_t *http;
    lv_lane_t *lane;      /* where chats run (lv_lane.h): this loop, or a thread of its own */
    lv_backend_t **v;
    size_t n;
    lv_queue_t probes;    /* probe_t in flight */
    lv_queue_t links;     /* lv_pool_link_t: running chats */
    uv_timer_t health;    /* its close callback frees the pool */
    uint64_t health_period_ms; /* checks of backends in good standing */
    uint64_t health_tick_ms;   /* the timer's period: min(period, LV_BACKEND_SUSPECT_CHECK_MS) */
    uint64_t pick_seq;
    bool native_http;     /* --backend-client: chats to http:// backends may use lv_h1c */
    bool proxy_env;       /* a proxy variable curl would read was set at creation */
};

/* One refresh or detection call: done fires when its last probe has finished. */
typedef struct {
    int pending;
    int found;
    void (*refresh_done)(void *ud);
    void (*detect_done)(void *ud, int found);
    void *ud;
} round_t;

/* One GET /models in flight. */
typedef struct {
    lv_queue_t link;
    lv_pool_t *pool;
    round_t *round;
    lv_backend_t *b;                 /* refresh: the backend checked; detect: NULL */
    int health;                      /* started by the health timer: clears b->checking */
    char id[LV_BACKEND_ID_MAX_LEN + 1];
    char base_url[LV_BACKEND_URL_MAX_LEN + 1];
    CURL *easy;
    struct curl_slist *headers;
    lv_buf_t body;
    int too_large;
    char errbuf[CURL_ERROR_SIZE];
} probe_t;

static const struct {
    const char *id;
    int port;
} local_candidates[] = {
    {"ollama", 11434}, {"vllm", 8000}, {"sglang", 30000}, {"llamacpp", 8080}, {"lmstudio", 1234},
};

/* ---------- models lists ---------- */

static void models_free(char **m, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(m[i]);
    free(m);
}

static int models_equal(char **a, size_t an, char **b, size_t bn)
{
    if (an != bn)
        return 0;
    for (size_t i = 0; i < an; i++)
        if (strcmp(a[i], b[i]) != 0)
            return 0;
    return 1;
}

static int model_name_ok(const char *s, size_t n)
{
    if (n == 0 || n > LV_BACKEND_MODEL_MAX_LEN)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
}

static int models_push(char ***m, size_t *n, const char *s, size_t len)
{
    if (*n >= LV_BACKEND_MAX_MODELS)
        return LV_ELIMIT;
    for (size_t i = 0; i < *n; i++)
        if (strlen((*m)[i]) == len && memcmp((*m)[i], s, len) == 0)
            return 0; /* duplicates add nothing */
    char **nm = realloc(*m, (*n + 1) * sizeof *nm);
    if (!nm)
        return LV_ENOMEM;
    *m = nm;
    nm[*n] = strndup(s, len);
    if (!nm[*n])
        return LV_ENOMEM;
    (*n)++;
    return 0;
}

/* OpenAI list: {"object":"list","data":[{"id":"..."},...]}; "data": null is an empty list.
 * Entries that are not objects with a usable string id are skipped; past the cap the rest is
 * ignored. */
static int parse_models(const char *p, size_t n, char ***out, size_t *n_out)
{
    json_error_t jerr;
    char **m = NULL;
    size_t mn = 0;
    int rc = LV_EPARSE;
    json_t *root = json_loadb(p, n, 0, &jerr);
    if (!json_is_object(root))
        goto out;
    json_t *data = json_object_get(root, "data");
    if (json_is_null(data)) {
        rc = 0;
        goto out;
    }
    if (!json_is_array(data))
        goto out;
    size_t i;
    json_t *e;
    rc = 0;
    json_array_foreach(data, i, e) {
        json_t *id = json_object_get(e, "id");
        if (!json_is_string(id) || !model_name_ok(json_string_value(id), json_string_length(id)))
            continue;
        rc = models_push(&m, &mn, json_string_value(id), json_string_length(id));
        if (rc == LV_ELIMIT) {
            rc = 0;
            break;
        }
        if (rc)
            goto out;
    }
out:
    json_decref(root);
    if (rc) {
        models_free(m, mn);
        return rc;
    }
    *out = m;
    *n_out = mn;
    return 0;
}

static int parse_models_csv(const char *csv, char ***out, size_t *n_out)
{
    char **m = NULL;
    size_t mn = 0;
    int rc = 0;
    const char *p = csv;
    while (*p) {
        const char *end = strchr(p, ',');
        if (!end)
            end = p + strlen(p);
        const char *a = p, *b = end;
        while (a < b && (*a == ' ' || *a == '\t'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
            b--;
        if (b > a) {
            if (!model_name_ok(a, (size_t)(b - a))) {
                rc = LV_EINVAL;
                goto out;
            }
            if ((rc = models_push(&m, &mn, a, (size_t)(b - a))) != 0)
                goto out;
        }
        p = *end ? end + 1 : end;
    }
out:
    if (rc) {
        models_free(m, mn);
        return rc;
    }
    *out = m;
    *n_out = mn;
    return 0;
}

/* ---------- configuration checks ---------- */

static int id_ok(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > LV_BACKEND_ID_MAX_LEN)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
              c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* Validate and normalise into out (LV_BACKEND_URL_MAX_LEN + 1 bytes). */
static int normalise_url(const char *url, char *out)
{
    size_t n = url ? strlen(url) : 0, skip;
    if (n >= 7 && strncasecmp(url, "http://", 7) == 0)
        skip = 7;
    else if (n >= 8 && strncasecmp(url, "https://", 8) == 0)
        skip = 8;
    else
        return LV_EINVAL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)url[i];
        if (c <= 0x20 || c >= 0x7f || c == '?' || c == '#' || c == '\\')
            return LV_EINVAL;
    }
    const char *auth = url + skip;
    size_t auth_len = strcspn(auth, "/");
    if (auth_len == 0 || memchr(auth, '@', auth_len))
        return LV_EINVAL; /* no host, or credentials in the URL */
    while (n > skip + auth_len && url[n - 1] == '/')
        n--;
    int has_path = n > skip + auth_len;
    if (n + (has_path ? 0 : 3) > LV_BACKEND_URL_MAX_LEN)
        return LV_EINVAL;
    /* the scheme is written in lower case */
    memcpy(out, skip == 7 ? "http://" : "https://", skip);
    memcpy(out + skip, url + skip, n - skip);
    if (!has_path) {
        memcpy(out + n, "/v1", 3);
        n += 3;
    }
    out[n] = '\0';
    return 0;
}

static int key_ok(const char *key)
{
    size_t n = strlen(key);
    if (n > LV_BACKEND_KEY_MAX_LEN)
        return 0;
    for (size_t i = 0; i < n; i++) /* a CR/LF would inject headers */
        if ((unsigned char)key[i] < 0x20 || key[i] == 0x7f)
            return 0;
    return 1;
}

static int host_is_loopback(const char *base_url)
{
    const char *h = strstr(base_url, "://");
    if (!h)
        return 0;
    h += 3;
    size_t n = strcspn(h, "/");
    static const char *names[] = {"127.0.0.1", "localhost", "[::1]"};
    for (size_t i = 0; i < LV_ARRAY_LEN(names); i++) {
        size_t l = strlen(names[i]);
        if (n >= l && strncasecmp(h, names[i], l) == 0 && (n == l || h[l] == ':'))
            return 1;
    }
    return 0;
}

/* ---------- pool ---------- */

int lv_pool_create(uv_loop_t *loop, lv_http_t *http, lv_pool_t **out)
{
    int rc = LV_ENOMEM;
    lv_pool_t *p = calloc(1, sizeof *p);
    if (!p)
        goto out;
    p->loop = loop;
    p->http = http;
    p->native_http = true;
    /* the variables curl 7.88 reads for http:// URLs (it ignores HTTP_PROXY, for CGI's sake) */
    p->proxy_env = getenv("http_proxy") || getenv("all_proxy") || getenv("ALL_PROXY");
    lv_queue_init(&p->probes);
    lv_queue_init(&p->links);
    if ((rc = lv_lane_create(loop, http, false, &p->lane)) != 0)
        goto out;
    if (uv_timer_init(loop, &p->health) != 0) {
        lv_lane_destroy(p->lane);
        rc = LV_EIO;
        goto out;
    }
    p->health.data = p;
    *out = p;
    p = NULL;
    rc = 0;
out:
    free(p);
    return rc;
}

static void backend_free(lv_backend_t *b)
{
    if (!b)
        return;
    models_free(b->models, b->n_models);
    memset(b->api_key, 0, sizeof b->api_key);
    free(b);
}

static void probe_free(probe_t *pr)
{
    lv_queue_remove(&pr->link);
    if (pr->easy)
        curl_easy_cleanup(pr->easy);
    curl_slist_free_all(pr->headers);
    lv_buf_free(&pr->body);
    free(pr);
}

/* Abort a probe without callbacks; frees its round when it was the last one. */
static void probe_cancel(probe_t *pr)
{
    round_t *r = pr->round;
    if (pr->health)
        pr->b->checking = 0;
    if (pr->easy)
        lv_http_remove(pr->pool->http, pr->easy);
    probe_free(pr);
    if (--r->pending == 0)
        free(r);
}

static void on_pool_closed(uv_handle_t *hd) { free(hd->data); }

void lv_pool_destroy(lv_pool_t *pool)
{
    if (!pool)
        return;
    uv_timer_stop(&pool->health);
    while (!lv_queue_empty(&pool->links)) {
        lv_pool_link_t *l = LV_CONTAINER_OF(lv_queue_head(&pool->links), lv_pool_link_t, node);
        lv_queue_remove(&l->node);
        l->cancel(l);
    }
    while (!lv_queue_empty(&pool->probes))
        probe_cancel(LV_CONTAINER_OF(lv_queue_head(&pool->probes), probe_t, link));
    lv_lane_destroy(pool->lane); /* after the cancels: the I/O side drops their transfers first */
    pool->lane = NULL;
    for (size_t i = 0; i < pool->n; i++)
        backend_free(pool->v[i]);
    free(pool->v);
    pool->v = NULL;
    pool->n = 0;
    uv_close((uv_handle_t *)&pool->health, on_pool_closed);
}

/* lv_backend_t.h1c_url for a normalised base URL (once per backend, not per chat). */
static bool h1c_url_ok(const lv_pool_t *pool, const char *base_url)
{
    lv_h1c_url_t url; /* ~2.5 KB */
    if (lv_h1c_url_parse(base_url, &url) != 0) /* http:// only */
        return false;
    return !pool->proxy_env || host_is_loopback(base_url);
}

int lv_pool_add(lv_pool_t *pool, const char *id, const char *base_url, const char *api_key,
                int max_concurrency, const char *models_csv)
{
    int rc = LV_EINVAL;
    lv_backend_t *b = NULL;
    if (!pool || !id_ok(id))
        goto out;
    if (!api_key)
        api_key = "";
    if (!key_ok(api_key) || max_concurrency < 0 || max_concurrency > LV_BACKEND_MAX_CONCURRENCY)
        goto out;
    rc = LV_EEXIST;
    if (lv_pool_find(pool, id))
        goto out;
    rc = LV_ELIMIT;
    if (pool->n >= LV_POOL_MAX_BACKENDS)
        goto out;
    rc = LV_ENOMEM;
    b = calloc(1, sizeof *b);
    if (!b)
        goto out;
    if ((rc = normalise_url(base_url, b->base_url)) != 0)
        goto out;
    b->h1c_url = h1c_url_ok(pool, b->base_url);
    memcpy(b->id, id, strlen(id) + 1);
    memcpy(b->api_key, api_key, strlen(api_key) + 1);
    b->max_concurrency = max_concurrency ? max_concurrency : LV_BACKEND_DEFAULT_CONCURRENCY;
    if (models_csv && models_csv[0]) {
        if ((rc = parse_models_csv(models_csv, &b->models, &b->n_models)) != 0)
            goto out;
        b->models_configured = b->n_models > 0;
    }
    /* discovered models: out of rotation until a check has found them */
    b->check_failed = !b->models_configured;
    b->healthy = b->models_configured;
    if (!b->healthy)
        snprintf(b->last_error, sizeof b->last_error, "not checked yet");
    lv_breaker_init(&b->breaker, NULL, lv_now_ms());
    b->adaptive = 1;
    b->min_concurrency = 1;
    if ((rc = lv_window_init(&b->window, 1, b->max_concurrency, LV_MAX(1, b->max_concurrency / 4))) != 0)
        goto out;
    rc = LV_ENOMEM;
    lv_backend_t **nv = realloc(pool->v, (pool->n + 1) * sizeof *nv);
    if (!nv)
        goto out;
    pool->v = nv;
    nv[pool->n++] = b;
    b = NULL;
    rc = 0;
out:
    backend_free(b);
    return rc;
}

size_t lv_pool_count(const lv_pool_t *pool) { return pool ? pool->n : 0; }

lv_backend_t *lv_pool_at(lv_pool_t *pool, size_t i) { return pool && i < pool->n ? pool->v[i] : NULL; }

lv_backend_t *lv_pool_find(lv_pool_t *pool, const char *id)
{
    if (!pool || !id)
        return NULL;
    for (size_t i = 0; i < pool->n; i++)
        if (strcmp(pool->v[i]->id, id) == 0)
            return pool->v[i];
    return NULL;
}

uv_loop_t *lv_pool_loop(lv_pool_t *pool) { return pool->loop; }
lv_http_t *lv_pool_http(lv_pool_t *pool) { return pool->http; }
lv_lane_t *lv_pool_lane(lv_pool_t *pool) { return pool->lane; }

void lv_pool_set_native_http(lv_pool_t *pool, bool on) { pool->native_http = on; }

bool lv_pool_native_for(const lv_pool_t *pool, const lv_backend_t *b) { return pool->native_http && b->h1c_url; }

int lv_pool_use_thread(lv_pool_t *pool, bool on)
{
    if (!pool || !lv_queue_empty(&pool->links))
        return LV_EINVAL;
    if (lv_lane_threaded(pool->lane) == on)
        return 0;
    lv_lane_t *lane;
    int rc = lv_lane_create(pool->loop, pool->http, on, &lane);
    if (rc)
        return rc;
    lv_lane_destroy(pool->lane);
    pool->lane = lane;
    return 0;
}

void lv_pool_link_add(lv_pool_t *pool, lv_pool_link_t *link, void (*cancel)(lv_pool_link_t *link))
{
    link->cancel = cancel;
    lv_queue_insert_tail(&pool->links, &link->node);
}

void lv_pool_link_remove(lv_pool_link_t *link)
{
    if (lv_queue_linked(&link->node))
        lv_queue_remove(&link->node);
}

/* ---------- health state ---------- */

/* Recompute healthy from the check result and the breaker (whose open state ends with time). */
static int backend_sync(lv_backend_t *b, uint64_t now_ms)
{
    int up = !b->check_failed && lv_breaker_state(&b->breaker, now_ms) != LV_BREAKER_OPEN;
    if (up && !b->healthy)
        LV_INFO("backend %s is back in rotation (%s, %zu models)", b->id,
                lv_breaker_state_name(lv_breaker_state(&b->breaker, now_ms)), b->n_models);
    else if (!up && b->healthy)
        LV_WARN("backend %s is out of rotation: %s", b->id, b->last_error[0] ? b->last_error : "circuit open");
    b->healthy = up;
    return up;
}

/* Give back half-open probes that resolve handed out and no chat claimed (the caller failed
 * between resolve and lv_chat_start), so the breaker does not wait for them forever. */
static void backend_sweep_picks(lv_backend_t *b, uint64_t now_ms)
{
    if (b->probe_picks > 0 && now_ms - b->probe_pick_ms >= PROBE_PICK_STALE_MS) {
        for (; b->probe_picks > 0; b->probe_picks--)
            lv_breaker_on_cancel(&b->breaker, now_ms);
    }
}

/* Open the breaker now, whatever its state: an OPEN breaker whose cool-down is over (it reads
 * half-open) ignores failures, so take a probe first and fail it. */
static void breaker_force_open(lv_breaker_t *br, uint64_t now_ms)
{
    if (lv_breaker_state(br, now_ms) == LV_BREAKER_HALF_OPEN && lv_breaker_would_allow(br, now_ms))
        (void)lv_breaker_allow(br, now_ms);
    lv_breaker_on_failure(br, now_ms, LV_BREAKER_FAIL_CONNECT);
}

void lv_backend_mark_down(lv_backend_t *b, const char *why)
{
    uint64_t now = lv_now_ms();
    snprintf(b->last_error, sizeof b->last_error, "%s", why);
    breaker_force_open(&b->breaker, now);
    b->down_connect = 1;
    backend_sync(b, now);
}

int lv_backend_configure(lv_backend_t *b, int adaptive, int min_concurrency, int max_concurrency, int max_side,
                         int jpeg_quality)
{
    if (!b)
        return LV_EINVAL;
    int max = max_concurrency ? max_concurrency : b->max_concurrency;
    int min = min_concurrency ? min_concurrency : 1;
    if (max < 1 || max > LV_BACKEND_MAX_CONCURRENCY || min < 1 || min > max || max_side < 0 ||
        max_side > LV_SHAPE_MAX_SIDE || jpeg_quality < 0 || jpeg_quality > 100)
        return LV_EINVAL;
    lv_window_t w;
    if (lv_window_init(&w, min, max, LV_MAX(min, max / 4)) != 0)
        return LV_EINVAL;
    if (!adaptive)
        lv_window_set_adaptive(&w, false, lv_now_us());
    b->window = w;
    b->adaptive = adaptive != 0;
    b->min_concurrency = min;
    b->max_concurrency = max;
    b->max_side = max_side;
    b->jpeg_quality = jpeg_quality;
    return 0;
}

int lv_backend_limit(const lv_backend_t *b)
{
    return b->adaptive ? lv_window_limit(&b->window) : b->max_concurrency;
}

const char *lv_backend_state_name(const lv_backend_t *b)
{
    return lv_breaker_state_name(lv_breaker_state(&b->breaker, lv_now_ms()));
}

uint64_t lv_backend_retry_after_ms(const lv_backend_t *b) { return lv_breaker_held_ms(&b->breaker, lv_now_ms()); }

int lv_pool_retry_after_ended(lv_pool_t *pool)
{
    int ended = 0;
    uint64_t now = lv_now_ms();
    for (size_t i = 0; pool && i < pool->n; i++) {
        lv_backend_t *b = pool->v[i];
        if (b->retry_after_waiting && lv_breaker_held_ms(&b->breaker, now) == 0) {
            b->retry_after_waiting = 0;
            ended++;
        }
    }
    return ended;
}

/* The backend asked for no requests for wait_ms (Retry-After): the breaker holds them back. */
static void backend_pause(lv_backend_t *b, uint64_t wait_ms, uint64_t now_ms)
{
    uint64_t holds = b->breaker.holds_total;
    wait_ms = LV_MIN(wait_ms, (uint64_t)LV_BACKEND_RETRY_AFTER_MAX_MS);
    lv_breaker_hold_until(&b->breaker, now_ms + wait_ms);
    if (b->breaker.holds_total == holds)
        return; /* a pause at least as long is already in force */
    b->retry_after_waiting = 1;
    LV_INFO("backend %s asked for a pause (Retry-After): no new requests for %llu ms", b->id,
            (unsigned long long)wait_ms);
}

int lv_backend_grow_on_demand(lv_backend_t *b)
{
    if (!b->adaptive || !b->healthy || b->inflight < lv_backend_limit(b) ||
        lv_breaker_held_ms(&b->breaker, lv_now_ms()) > 0)
        return 0;
    return lv_window_on_demand(&b->window, b->inflight, b->awaiting_first, lv_now_us());
}

int lv_pool_grow_on_demand(lv_pool_t *pool)
{
    int grew = 0;
    for (size_t i = 0; pool && i < pool->n; i++)
        grew += lv_backend_grow_on_demand(pool->v[i]);
    return grew;
}

size_t lv_pool_capacity(lv_pool_t *pool)
{
    size_t slots = 0;
    for (size_t i = 0; pool && i < pool->n; i++)
        if (pool->v[i]->healthy && !pool->v[i]->draining)
            slots += (size_t)lv_backend_limit(pool->v[i]);
    return slots;
}

size_t lv_pool_free_slots(lv_pool_t *pool)
{
    size_t slots = 0;
    for (size_t i = 0; pool && i < pool->n; i++) {
        const lv_backend_t *b = pool->v[i];
        int limit = lv_backend_limit(b);
        if (b->healthy && !b->draining && b->inflight < limit && lv_backend_retry_after_ms(b) == 0)
            slots += (size_t)(limit - b->inflight);
    }
    return slots;
}

void lv_backend_first_token(lv_backend_t *b, uint64_t ttft_us)
{
    if (b->awaiting_first > 0)
        b->awaiting_first--;
    lv_window_first_token(&b->window, ttft_us, lv_now_us());
}

int lv_backend_take_probe(lv_backend_t *b)
{
    if (b->probe_picks <= 0)
        return 0;
    b->probe_picks--;
    return 1;
}

static void lat_sample(lv_backend_t *b, uint64_t us)
{
    double ms = (double)us / 1000.0;
    if (b->lat_ewma_ms <= 0)
        b->lat_ewma_ms = ms;
    else
        b->lat_ewma_ms += LV_BACKEND_LAT_ALPHA * (ms - b->lat_ewma_ms);
}

void lv_backend_report(lv_backend_t *b, const lv_backend_report_t *r)
{
    uint64_t now_ms = lv_now_ms(), now_us = lv_now_us();
    lv_breaker_state_t before = lv_breaker_state(&b->breaker, now_ms);
    if (r->end == LV_BACKEND_END_CANCEL) {
        if (r->probe)
            lv_breaker_on_cancel(&b->breaker, now_ms);
        return;
    }
    b->requests_total++;
    if (r->end != LV_BACKEND_END_OK)
        b->errors_total++;
    switch (r->end) {
    case LV_BACKEND_END_OK:
        lv_breaker_on_success(&b->breaker, now_ms);
        if (r->ttft_us)
            lat_sample(b, r->ttft_us);
        /* the window's signal is TTFT for streams and time per token otherwise; a stream with no
         * content has neither and would make the window measure its base again */
        if (!r->streamed || r->ttft_us)
            lv_window_sample(&b->window, r->streamed ? r->ttft_us : 0, r->total_us, r->tokens,
                             r->inflight_at_start, now_us);
        break;
    case LV_BACKEND_END_CLIENT:
        lv_breaker_on_success(&b->breaker, now_ms);
        break;
    case LV_BACKEND_END_ERROR:
        lv_window_on_error(&b->window, now_us);
        lv_breaker_on_failure(&b->breaker, now_ms, LV_BREAKER_FAIL_ERROR);
        break;
    case LV_BACKEND_END_TIMEOUT:
        b->timeouts_total++;
        /* TTFT is at least what we waited: a hung backend must stop looking fast */
        lat_sample(b, r->ttft_us ? r->ttft_us : r->total_us);
        lv_window_on_timeout(&b->window, now_us);
        lv_breaker_on_failure(&b->breaker, now_ms, LV_BREAKER_FAIL_TIMEOUT);
        break;
    case LV_BACKEND_END_CONNECT:
        if (r->timed_out_connect)
            b->timeouts_total++;
        lv_window_on_error(&b->window, now_us);
        lv_backend_mark_down(b, r->why ? r->why : "cannot connect"); /* opens the breaker */
        break;
    case LV_BACKEND_END_LOCAL:
        if (r->probe)
            lv_breaker_on_cancel(&b->breaker, now_ms);
        break;
    case LV_BACKEND_END_CANCEL:
        break;
    }
    if (r->retry_after_ms)
        backend_pause(b, r->retry_after_ms, now_ms);
    lv_breaker_state_t after = lv_breaker_state(&b->breaker, now_ms);
    if (after == LV_BREAKER_OPEN && before != LV_BREAKER_OPEN && r->end != LV_BACKEND_END_CONNECT) {
        snprintf(b->last_error, sizeof b->last_error, "circuit open: %s", r->why ? r->why : "failures");
        b->down_connect = 0;
    } else if (after == LV_BREAKER_CLOSED && before != LV_BREAKER_CLOSED) {
        b->down_connect = 0;
        if (!b->check_failed)
            b->last_error[0] = '\0';
    }
    backend_sync(b, now_ms);
}

CURL *lv_backend_easy_new(const char *base_url, const char *api_key, const char *path,
                          struct curl_slist **headers, char *errbuf)
{
    char url[LV_BACKEND_URL_MAX_LEN + 64];
    CURL *e = NULL;
    int n = snprintf(url, sizeof url, "%s%s", base_url, path);
    if (n < 0 || (size_t)n >= sizeof url)
        goto fail;
    e = curl_easy_init();
    if (!e)
        goto fail;
    errbuf[0] = '\0';
    if (curl_easy_setopt(e, CURLOPT_URL, url) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK)
        goto fail;
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "livevlm");
    /* PIPEWAIT makes a transfer wait for a connection to the host that is still being set up or
     * used, hoping to multiplex on it. Only TLS can bring HTTP/2 here (ALPN; no h2c), and on an
     * HTTP/1.1 backend the wait serialises every request behind the one before it (measured:
     * 8 concurrent requests to a 40 ms server took 40, 84, ..., 328 ms; 45 ms each without). */
    if (strncmp(url, "https://", 8) == 0)
        curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    if (host_is_loopback(base_url))
        curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
    if (api_key && api_key[0]) {
        char auth[LV_BACKEND_KEY_MAX_LEN + 32];
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", api_key);
        struct curl_slist *nl = curl_slist_append(*headers, auth); /* copies */
        explicit_bzero(auth, sizeof auth);
        if (!nl)
            goto fail;
        *headers = nl;
    }
    return e;
fail:
    if (e)
        curl_easy_cleanup(e);
    return NULL;
}

/* ---------- refresh and detection ---------- */

static size_t probe_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
    probe_t *pr = ud;
    size_t n = size * nmemb;
    if (lv_buf_append(&pr->body, ptr, n) != 0) {
        pr->too_large = 1;
        return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
    }
    return n;
}

static void round_finish(round_t *r)
{
    /* copy out and free first: the callback may start a new round or destroy the pool */
    void (*rd)(void *) = r->refresh_done;
    void (*dd)(void *, int) = r->detect_done;
    void *ud = r->ud;
    int found = r->found;
    free(r);
    if (dd)
        dd(ud, found);
    else if (rd)
        rd(ud);
}

/* A failed check: out of rotation until a check passes. */
static void check_did_fail(lv_backend_t *b, const char *why)
{
    b->check_failed = 1;
    lv_backend_mark_down(b, why);
}

static void apply_refresh(probe_t *pr, CURLcode rc, long status)
{
    lv_backend_t *b = pr->b;
    char why[200];
    char **m = NULL;
    size_t mn = 0;
    uint64_t now = lv_now_ms();
    b->last_check_ms = now;
    if (rc != CURLE_OK) {
        check_did_fail(b, pr->too_large ? "/models answer too large"
                                      : lv_http_describe(pr->easy, rc, pr->errbuf, why, sizeof why));
        return;
    }
    if (b->models_configured) {
        if (status >= 500 || status == 401 || status == 403 || status < 100) {
            snprintf(why, sizeof why, "HTTP %ld", status);
            check_did_fail(b, why);
            return;
        }
    } else {
        if (status < 200 || status > 299) {
            snprintf(why, sizeof why, "HTTP %ld", status);
            check_did_fail(b, why);
            return;
        }
        if (parse_models(pr->body.data ? pr->body.data : "", pr->body.len, &m, &mn) != 0) {
            check_did_fail(b, "not an OpenAI model list at /models");
            return;
        }
        if (models_equal(b->models, b->n_models, m, mn)) {
            models_free(m, mn); /* keep the old strings: pointers handed out stay valid */
        } else {
            models_free(b->models, b->n_models);
            b->models = m;
            b->n_models = mn;
        }
    }
    /* Back after a failed check or a connect failure: probe now rather than after a cool-down
     * that may have grown to 30 s. A breaker opened by answers (5xx, timeouts) keeps its
     * cool-down: /models working says nothing new about those. */
    if (b->check_failed || b->down_connect)
        lv_breaker_health_ok(&b->breaker, now);
    b->check_failed = 0;
    if (lv_breaker_state(&b->breaker, now) != LV_BREAKER_OPEN)
        b->last_error[0] = '\0';
    backend_sync(b, now);
}

static void apply_detect(probe_t *pr, CURLcode rc, long status)
{
    lv_pool_t *pool = pr->pool;
    char **m = NULL;
    size_t mn = 0;
    if (rc != CURLE_OK || status != 200)
        return;
    if (parse_models(pr->body.data ? pr->body.data : "", pr->body.len, &m, &mn) != 0)
        return;
    for (size_t i = 0; i < pool->n; i++) {
        if (strcmp(pool->v[i]->id, pr->id) == 0 || strcmp(pool->v[i]->base_url, pr->base_url) == 0) {
            models_free(m, mn);
            return;
        }
    }
    if (lv_pool_add(pool, pr->id, pr->base_url, "", LV_BACKEND_DEFAULT_CONCURRENCY, NULL) != 0) {
        models_free(m, mn);
        return;
    }
    lv_backend_t *b = pool->v[pool->n - 1];
    b->models = m;
    b->n_models = mn;
    b->check_failed = 0;
    b->healthy = 1;
    b->last_error[0] = '\0';
    b->last_check_ms = lv_now_ms();
    pr->round->found++;
    LV_INFO("found a local backend %s at %s (%zu models)", b->id, b->base_url, mn);
}

static void probe_done(void *ud, CURL *easy, CURLcode rc)
{
    probe_t *pr = ud;
    round_t *r = pr->round;
    long status = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    if (pr->health)
        pr->b->checking = 0;
    if (pr->b)
        apply_refresh(pr, rc, status);
    else
        apply_detect(pr, rc, status);
    probe_free(pr);
    if (--r->pending == 0)
        round_finish(r);
}

/* Start one GET {base}/models belonging to round r. */
static int probe_start(lv_pool_t *pool, round_t *r, lv_backend_t *b, const char *id, const char *base_url,
                       const char *key, long timeout_ms, int health)
{
    int rc = LV_ENOMEM;
    probe_t *pr = calloc(1, sizeof *pr);
    if (!pr)
        return rc;
    lv_queue_init(&pr->link);
    pr->pool = pool;
    pr->round = r;
    pr->b = b;
    snprintf(pr->id, sizeof pr->id, "%s", id);
    snprintf(pr->base_url, sizeof pr->base_url, "%s", base_url);
    lv_buf_init(&pr->body, MODELS_BODY_MAX);
    pr->easy = lv_backend_easy_new(base_url, key, "/models", &pr->headers, pr->errbuf);
    if (!pr->easy)
        goto out;
    struct curl_slist *nl = curl_slist_append(pr->headers, "Accept: application/json");
    if (!nl)
        goto out;
    pr->headers = nl;
    curl_easy_setopt(pr->easy, CURLOPT_HTTPHEADER, pr->headers);
    curl_easy_setopt(pr->easy, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(pr->easy, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(pr->easy, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    curl_easy_setopt(pr->easy, CURLOPT_WRITEFUNCTION, probe_write);
    curl_easy_setopt(pr->easy, CURLOPT_WRITEDATA, pr);
    if ((rc = lv_http_add(pool->http, pr->easy, probe_done, pr)) != 0)
        goto out;
    lv_queue_insert_tail(&pool->probes, &pr->link);
    r->pending++;
    if (health) {
        pr->health = 1;
        b->checking = 1;
        b->check_start_ms = lv_now_ms();
    }
    pr = NULL;
    rc = 0;
out:
    if (pr)
        probe_free(pr);
    return rc;
}

/* Abort the probes of a round that could not be started completely (r->pending > 0). */
static void round_abort(lv_pool_t *pool, round_t *r)
{
    /* probe_cancel() frees r together with its last probe: count first, never read r after. */
    int left = r->pending;
    lv_queue_t *q = lv_queue_head(&pool->probes);
    while (left > 0 && q != &pool->probes) {
        lv_queue_t *next = q->next;
        probe_t *pr = LV_CONTAINER_OF(q, probe_t, link);
        if (pr->round == r) {
            left--;
            probe_cancel(pr);
        }
        q = next;
    }
}

int lv_pool_refresh(lv_pool_t *pool, void (*done)(void *ud), void *ud)
{
    int rc = LV_ENOTFOUND;
    if (!pool || pool->n == 0)
        return rc;
    round_t *r = calloc(1, sizeof *r);
    if (!r)
        return LV_ENOMEM;
    r->refresh_done = done;
    r->ud = ud;
    for (size_t i = 0; i < pool->n; i++) {
        lv_backend_t *b = pool->v[i];
        if ((rc = probe_start(pool, r, b, b->id, b->base_url, b->api_key, REFRESH_TIMEOUT_MS, 0)) != 0)
            goto fail;
    }
    return 0;
fail:
    if (r->pending)
        round_abort(pool, r);
    else
        free(r);
    return rc;
}

int lv_pool_detect_local(lv_pool_t *pool, void (*done)(void *ud, int found), void *ud)
{
    int rc = LV_EINVAL;
    if (!pool || !done)
        return rc;
    round_t *r = calloc(1, sizeof *r);
    if (!r)
        return LV_ENOMEM;
    r->detect_done = done;
    r->ud = ud;
    for (size_t i = 0; i < LV_ARRAY_LEN(local_candidates); i++) {
        char url[64];
        snprintf(url, sizeof url, "http://127.0.0.1:%d/v1", local_candidates[i].port);
        if ((rc = probe_start(pool, r, NULL, local_candidates[i].id, url, "", DETECT_TIMEOUT_MS, 0)) != 0)
            goto fail;
    }
    return 0;
fail:
    if (r->pending)
        round_abort(pool, r);
    else
        free(r);
    return rc;
}

/* ---------- picking ---------- */

/* The backend's own string for model, or NULL. "" picks the first model. */
static const char *serves(const lv_backend_t *b, const char *model)
{
    if (!model[0])
        return b->n_models ? b->models[0] : NULL;
    size_t ml = strlen(model);
    int untagged = strchr(model, ':') == NULL;
    for (size_t i = 0; i < b->n_models; i++) {
        const char *m = b->models[i];
        if (strcmp(m, model) == 0)
            return m;
    }
    if (untagged)
        for (size_t i = 0; i < b->n_models; i++) {
            const char *m = b->models[i];
            if (strncmp(m, model, ml) == 0 && strcmp(m + ml, ":latest") == 0)
                return m;
        }
    return NULL;
}

int lv_pool_resolve_excluding(lv_pool_t *pool, const char *backend_id, const char *model,
                              const lv_backend_t *exclude, lv_backend_t **out, const char **model_out)
{
    return lv_pool_resolve_among(pool, backend_id, NULL, model, exclude, out, model_out);
}

int lv_pool_resolve_among(lv_pool_t *pool, const char *backend_id, const char *allow, const char *model,
                          const lv_backend_t *exclude, lv_backend_t **out, const char **model_out)
{
    lv_backend_t *best = NULL;
    const char *best_model = NULL;
    double best_score = 0;
    int candidates = 0;
    if (!pool || !out || !model_out)
        return LV_EINVAL;
    if (!backend_id)
        backend_id = "";
    if (!model)
        model = "";
    uint64_t now = lv_now_ms();
    for (size_t i = 0; i < pool->n; i++) {
        lv_backend_t *b = pool->v[i];
        if (b == exclude)
            continue;
        if (backend_id[0] && strcmp(b->id, backend_id) != 0)
            continue;
        if (!lv_allowlist_has(allow, b->id))
            continue; /* not the tenant's: it is no candidate, not even a full one */
        if (b->draining || !backend_sync(b, now))
            continue; /* a drained backend is no candidate: its model may go elsewhere */
        const char *m = serves(b, model);
        if (!m)
            continue;
        candidates++;
        if (!lv_breaker_would_allow(&b->breaker, now))
            continue; /* half-open with its probe out, or paused by a Retry-After: wait */
        int limit = lv_backend_limit(b);
        if (b->inflight >= limit)
            continue;
        /* the expected wait of one more request: faster and wider backends take more. A
         * half-open backend's probe goes first: otherwise a recovered backend that scores worse
         * than a warm one would never be tried at light load and would stay out forever */
        double score = (double)(b->inflight + 1) * LV_MAX(b->lat_ewma_ms, 1.0) / (double)limit;
        if (lv_breaker_state(&b->breaker, now) == LV_BREAKER_HALF_OPEN && now - b->probe_pick_ms > 1000)
            score = 0;
        if (!best || score < best_score * (1 - 1e-9) ||
            (score <= best_score * (1 + 1e-9) && b->last_pick < best->last_pick)) {
            best = b;
            best_model = m;
            best_score = score;
        }
    }
    if (!best)
        return candidates ? LV_EAGAIN : LV_ENOTFOUND;
    int probe = lv_breaker_state(&best->breaker, now) != LV_BREAKER_CLOSED;
    if (!lv_breaker_allow(&best->breaker, now))
        return LV_EAGAIN; /* cannot happen: would_allow said yes at the same time */
    if (probe) {
        best->probe_picks++;
        best->probe_pick_ms = now;
    }
    best->last_pick = ++pool->pick_seq;
    *out = best;
    *model_out = best_model;
    return 0;
}

int lv_pool_serves(lv_pool_t *pool, const char *backend_id, const char *model)
{
    return lv_pool_serves_among(pool, backend_id, NULL, model);
}

int lv_pool_serves_among(lv_pool_t *pool, const char *backend_id, const char *allow, const char *model)
{
    uint64_t now = lv_now_ms();
    for (size_t i = 0; i < pool->n; i++) {
        lv_backend_t *b = pool->v[i];
        if ((backend_id[0] && strcmp(b->id, backend_id) != 0) || !lv_allowlist_has(allow, b->id))
            continue;
        /* one not checked yet (the server just started) may well serve it: let the frame try */
        if (!b->draining && backend_sync(b, now) && (serves(b, model) || b->last_check_ms == 0))
            return 1;
    }
    return 0;
}

int lv_pool_resolve(lv_pool_t *pool, const char *backend_id, const char *model, lv_backend_t **out,
                    const char **model_out)
{
    return lv_pool_resolve_excluding(pool, backend_id, model, NULL, out, model_out);
}

int lv_pool_model_known(lv_pool_t *pool, const char *backend_id, const char *model)
{
    int unknown = 0, candidates = 0;
    if (!model || !model[0])
        return 1;
    for (size_t i = 0; pool && i < pool->n; i++) {
        const lv_backend_t *b = pool->v[i];
        if (backend_id && backend_id[0] && strcmp(b->id, backend_id) != 0)
            continue;
        candidates++;
        if (serves(b, model))
            return 1;
        if (b->n_models == 0)
            unknown = 1;
    }
    return unknown || !candidates ? -1 : 0;
}

static int contains_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (strncasecmp(hay, needle, n) == 0)
            return 1;
    return 0;
}

const char *lv_pool_default_model(lv_pool_t *pool)
{
    /* Names that say "this model sees", then names of families where most sizes do. */
    static const char *strong[] = {"vl", "vision", "llava", "gemma3", "gemma-3", "moondream",
                                   "minicpm-v", "minicpm-o", "pixtral", "gpt-4o", "gpt-4.1", "gpt-5",
                                   "llama4", "llama-4", "paligemma", "idefics", "molmo", "florence",
                                   "multimodal", "mistral-small3.1"};
    /* OpenAI-style lists also hold models that take no images in chat */
    static const char *not_chat[] = {"embed", "tts", "whisper", "transcribe", "audio", "realtime",
                                     "moderation", "dall-e", "search", "rerank", "guard"};
    static const char *weak[] = {"qwen", "minicpm", "gemma", "mistral-small", "phi-4", "claude",
                                 "gemini"};
    const char **tiers[] = {strong, weak};
    size_t tier_len[] = {LV_ARRAY_LEN(strong), LV_ARRAY_LEN(weak)};
    if (!pool)
        return NULL;
    uint64_t now = lv_now_ms();
    for (size_t i = 0; i < pool->n; i++)
        backend_sync(pool->v[i], now);
    for (size_t t = 0; t < 2; t++)
        for (size_t i = 0; i < pool->n; i++) {
            lv_backend_t *b = pool->v[i];
            if (!b->healthy)
                continue;
            for (size_t k = 0; k < b->n_models; k++) {
                int skip = 0;
                for (size_t x = 0; x < LV_ARRAY_LEN(not_chat) && !skip; x++)
                    skip = contains_ci(b->models[k], not_chat[x]);
                for (size_t h = 0; h < tier_len[t] && !skip; h++)
                    if (contains_ci(b->models[k], tiers[t][h]))
                        return b->models[k];
            }
        }
    for (size_t i = 0; i < pool->n; i++)
        if (pool->v[i]->healthy && pool->v[i]->n_models)
            return pool->v[i]->models[0];
    return NULL;
}

/* ---------- health ---------- */

/* A backend that is out or probing is checked often, so it rejoins soon after it is back. */
static uint64_t check_interval(const lv_pool_t *pool, const lv_backend_t *b, uint64_t now)
{
    if (b->check_failed || lv_breaker_state(&b->breaker, now) != LV_BREAKER_CLOSED)
        return LV_MIN(pool->health_period_ms, (uint64_t)LV_BACKEND_SUSPECT_CHECK_MS);
    return pool->health_period_ms;
}

static void on_health_tick(uv_timer_t *t)
{
    lv_pool_t *pool = t->data;
    uint64_t now = lv_now_ms();
    round_t *r = NULL;
    for (size_t i = 0; i < pool->n; i++) {
        lv_backend_t *b = pool->v[i];
        backend_sweep_picks(b, now);
        backend_sync(b, now);
        if (b->checking)
            continue;
        /* due when the last check (started by this timer or finished by any refresh) is one
         * interval old, give or take half a tick */
        uint64_t last = LV_MAX(b->check_start_ms, b->last_check_ms);
        if (last && last + check_interval(pool, b, now) > now + pool->health_tick_ms / 2)
            continue;
        if (!r && !(r = calloc(1, sizeof *r)))
            return;
        if (probe_start(pool, r, b, b->id, b->base_url, b->api_key, REFRESH_TIMEOUT_MS, 1) != 0)
            break; /* try again next tick */
    }
    if (r && r->pending == 0)
        free(r); /* otherwise the round (no callback) goes with its last probe */
}

int lv_pool_start_health(lv_pool_t *pool, int period_ms)
{
    pool->health_period_ms = period_ms > 0 ? (uint64_t)period_ms : HEALTH_DEFAULT_MS;
    pool->health_tick_ms = LV_MIN(pool->health_period_ms, (uint64_t)LV_BACKEND_SUSPECT_CHECK_MS);
    return uv_timer_start(&pool->health, on_health_tick, pool->health_tick_ms, pool->health_tick_ms) == 0 ? 0
                                                                                                      : LV_EIO;
}

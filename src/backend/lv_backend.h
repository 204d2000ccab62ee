/* lv_backend.h - the pool of OpenAI-compatible model backends: configuration, model discovery
 * (GET {base}/models), local auto-detection, health, and picking a backend for a request.
 * Everything runs on the loop thread. API keys are kept here and only ever sent in the
 * Authorization header of backend calls: never logged, never in URLs. */
#ifndef LV_BACKEND_H
#define LV_BACKEND_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "lv_breaker.h"
#include "lv_http.h"
#include "lv_queue.h"
#include "lv_window.h"

#define LV_BACKEND_ID_MAX_LEN 64
#define LV_BACKEND_URL_MAX_LEN 511
#define LV_BACKEND_KEY_MAX_LEN 511
#define LV_BACKEND_MODEL_MAX_LEN 256   /* longer discovered ids are skipped */
#define LV_BACKEND_MAX_MODELS 256      /* per backend; the rest of a list is ignored */
#define LV_POOL_MAX_BACKENDS 64
#define LV_BACKEND_DEFAULT_CONCURRENCY 4
#define LV_BACKEND_MAX_CONCURRENCY 4096
#define LV_BACKEND_SUSPECT_CHECK_MS 500  /* health-check period of a backend out of rotation */
#define LV_BACKEND_LAT_ALPHA 0.2         /* EWMA weight of a new time-to-first-token sample */
/* The longest pause a backend's Retry-After (429/503) imposes. A pause stops every session's
 * requests to the backend and nothing but time lifts it (a passing health check says nothing
 * about rate limits), so the backend alone would decide how long it is out: a proxy's or a
 * buggy server's "Retry-After: 86400" must not take it away for a day. Rate-limit windows are
 * per minute at most (OpenAI's RPM/TPM), and a backend still limited after 60 s answers the next
 * request with another 429 and another wait: one request a minute is cheap. */
#define LV_BACKEND_RETRY_AFTER_MAX_MS 60000

typedef struct lv_pool lv_pool_t;

/** One backend. Owned by the pool (freed by lv_pool_destroy); pointers stay valid until then.
 * Callers read the fields; only the scheduler's lv_chat (inflight) and the pool write them. */
typedef struct lv_backend {
    char id[LV_BACKEND_ID_MAX_LEN + 1];       /* [A-Za-z0-9._-]{1,64} */
    char base_url[LV_BACKEND_URL_MAX_LEN + 1];/* normalised: no trailing '/', e.g. http://h:8000/v1 */
    char api_key[LV_BACKEND_KEY_MAX_LEN + 1]; /* "" = none. Secret: never log or show it */
    bool h1c_url;                             /* base_url fits lv_h1c and no proxy applies to it
                                               * (lv_pool_add; lv_pool_native_for) */
    int max_concurrency;                      /* ceiling of the window (>= 1) */
    int inflight;                             /* lv_chat requests in flight now */
    int awaiting_first;                       /* of which not past their first token yet */
    char **models;                            /* model ids, owned by the pool. Replaced when a
                                               * refresh discovers a different list: do not keep
                                               * these pointers across loop turns, copy them */
    size_t n_models;
    int healthy;                              /* 1 = in rotation */
    int draining;                             /* 1 = an admin drained it (POST /api/v1/admin/
                                               * backends/ID/drain): resolve and serves skip it,
                                               * so it takes no new request and finishes what it
                                               * has; the loop's admin routes alone write it */
    char last_error[256];                     /* "" or why it is down: "connection refused",
                                               * "HTTP 401", "timed out", ... */
    uint64_t last_check_ms;                   /* lv_now_ms() of the last finished check; 0 = never */
    /* read-only for callers: load control (see docs/internals/backend.md) */
    lv_window_t window;                       /* adaptive concurrency window */
    lv_breaker_t breaker;                     /* circuit breaker */
    int adaptive;                             /* 1: the window adapts; 0: limit = max_concurrency */
    int min_concurrency;                      /* window floor */
    int max_side;                             /* scale frames to this longest side; 0 = as sent */
    int jpeg_quality;                         /* quality of scaled frames; 0 = default */
    double lat_ewma_ms;                       /* smoothed time to first token; 0 = no sample yet */
    uint64_t requests_total, errors_total, timeouts_total;
    /* private to the pool */
    int models_configured;                    /* models came from configuration: keep them */
    uint64_t last_pick;                       /* round-robin among equally loaded backends */
    int check_failed;                         /* the last health check failed */
    int checking;                             /* a health check is running */
    uint64_t check_start_ms;
    int down_connect;                         /* out because a connection failed */
    int probe_picks;                          /* half-open probes handed out by resolve */
    uint64_t probe_pick_ms;
    int retry_after_waiting;                  /* a Retry-After pause began and
                                               * lv_pool_retry_after_ended has not seen it end */
} lv_backend_t;

/** Create an empty pool using http for its calls. Both loop and http must outlive the pool.
 * *out is set on success only. LV_ENOMEM, LV_EIO. */
int lv_pool_create(uv_loop_t *loop, lv_http_t *http, lv_pool_t **out);

/** Destroy the pool: stops the health timer, aborts running checks and detections (their done
 * callbacks never fire), cancels every lv_chat still running on it (no callbacks), frees the
 * backends. Memory goes when the loop has run the close callbacks. Call it before
 * lv_http_destroy(), never from inside a pool, chat or http callback. NULL is ignored. */
void lv_pool_destroy(lv_pool_t *pool);

/** Add a backend.
 * id: [A-Za-z0-9._-], 1..64 characters, unique in the pool (LV_EEXIST otherwise).
 * base_url: the OpenAI base, e.g. "http://127.0.0.1:8000/v1"; http:// or https:// only, no
 *   user:password@, no query or fragment, no spaces or control characters. Trailing '/' are
 *   removed; a URL with no path at all gets "/v1" (a common slip for Ollama and vLLM).
 * api_key: NULL or "" for none; at most 511 bytes, no control characters.
 * max_concurrency: 1..1024, or 0 for the default (4).
 * models_csv: comma-separated model ids (blanks around names trimmed); NULL or "" = discover them
 *   with lv_pool_refresh(). Configured models are kept across refreshes.
 * The backend starts healthy when its models are configured, otherwise unhealthy with
 * last_error "not checked yet" until a refresh. LV_EINVAL, LV_EEXIST, LV_ELIMIT (64 backends,
 * too many models), LV_ENOMEM. */
int lv_pool_add(lv_pool_t *pool, const char *id, const char *base_url, const char *api_key,
                int max_concurrency, const char *models_csv);

/** Number of backends, and the i-th (NULL when i >= count), in the order they were added. */
size_t lv_pool_count(const lv_pool_t *pool);
lv_backend_t *lv_pool_at(lv_pool_t *pool, size_t i);

/** The backend with this id, or NULL. */
lv_backend_t *lv_pool_find(lv_pool_t *pool, const char *id);

/** Check every backend concurrently: GET {base}/models (Bearer key when set), 2 s timeout.
 * A backend is healthy after a 2xx whose body is an OpenAI model list ({"data":[{"id":...}]});
 * its models are replaced by the discovered ones unless they were configured. With configured
 * models any answer below 500 except 401/403 counts as healthy (some servers have no /models).
 * Otherwise healthy = 0 and last_error says why. done(ud) fires exactly once when every check has
 * finished, later, from the loop (never from inside this call), unless the pool is destroyed
 * first. Overlapping refreshes are allowed; the last answer per backend wins.
 * Returns 0; LV_ENOTFOUND when the pool is empty (done is not called); LV_ENOMEM / LV_EIO
 * (nothing started, done is not called). */
int lv_pool_refresh(lv_pool_t *pool, void (*done)(void *ud), void *ud);

/** Look for local servers: GET http://127.0.0.1:PORT/v1/models, 1 s timeout, on 11434 ("ollama"),
 * 8000 ("vllm"), 30000 ("sglang"), 8080 ("llamacpp"), 1234 ("lmstudio"). Each that answers 200
 * with a model list is added (max_concurrency 4, no key, discovered models, healthy) unless its
 * id or base URL is already in the pool. done(ud, found) fires exactly once, later, with the
 * number added, unless the pool is destroyed first. LV_ENOMEM / LV_EIO: nothing started, no
 * callback. */
int lv_pool_detect_local(lv_pool_t *pool, void (*done)(void *ud, int found), void *ud);

/** Pick a backend for one request.
 * backend_id: "" = any backend; otherwise only that one (LV_ENOTFOUND if unknown).
 * model: "" = the backend's first model; otherwise a backend must list it (exactly, or as
 *   "model:latest" when model has no tag, Ollama's naming).
 * Candidates are healthy backends serving the model. Returns 0 with *out set to the candidate
 * with inflight < max_concurrency and the fewest requests in flight (ties: the least recently
 * picked), and *model_out to the backend's own model string (see lv_backend_t.models for its
 * lifetime); LV_EAGAIN when there are candidates but none may take a request now: all at their
 * window, half-open with the probe out, or paused by a Retry-After (lv_backend_retry_after_ms);
 * LV_ENOTFOUND when there is none. Does not change inflight (lv_chat_start does). */
int lv_pool_resolve(lv_pool_t *pool, const char *backend_id, const char *model, lv_backend_t **out,
                    const char **model_out);

/** The model to use when a session names none: the first model (healthy backends in order,
 * their models in order) that looks like a vision model ("vl", "vision", "llava", "gemma3",
 * "moondream", "minicpm-v", "pixtral", "gpt-4o", ...), then one of the weaker hints ("qwen",
 * "minicpm", "gemma", ...), skipping ids that name non-chat models (embed, tts, whisper,
 * audio, realtime, moderation, ...); else the first model of the first healthy backend; NULL
 * if none.
 * Same lifetime as lv_backend_t.models. */
const char *lv_pool_default_model(lv_pool_t *pool);

/** lv_pool_resolve() that never returns `exclude` (the backend a request just failed on): the
 * engine's retry before the first token. Same return codes; LV_ENOTFOUND when only the excluded
 * backend serves the model. */
int lv_pool_resolve_excluding(lv_pool_t *pool, const char *backend_id, const char *model,
                              const lv_backend_t *exclude, lv_backend_t **out, const char **model_out);

/** lv_pool_resolve_excluding() among the backends whose id the comma list allow names (NULL or
 * "" = all; lv_allowlist.h): a tenant's allowed backends. Same return codes; LV_ENOTFOUND when no
 * allowed backend serves the model. */
int lv_pool_resolve_among(lv_pool_t *pool, const char *backend_id, const char *allow, const char *model,
                          const lv_backend_t *exclude, lv_backend_t **out, const char **model_out);

/** Whether a session may pick this backend ("" = any) and model: 1 when a backend it could go to
 * lists the model in its last known list (healthy or not), and always for model ""; 0 when every
 * such backend has listed its models and none lists it; -1 when one of them has listed none yet
 * (down since start, not checked yet) or there is no such backend: nobody can tell yet. The
 * engine answers 0 with `invalid_setting`. */
int lv_pool_model_known(lv_pool_t *pool, const char *backend_id, const char *model);
/** 1 when a backend in rotation ("" = any; healthy, its breaker not open) lists model (as
 * lv_pool_resolve matches it), full or not, or has not been checked yet (just started); else 0:
 * lv_pool_resolve would answer LV_ENOTFOUND. */
int lv_pool_serves(lv_pool_t *pool, const char *backend_id, const char *model);
/** lv_pool_serves() among the backends allow names (NULL or "" = all). */
int lv_pool_serves_among(lv_pool_t *pool, const char *backend_id, const char *allow, const char *model);

/** Set a backend's load-control options (after lv_pool_add): adaptive window on/off, window bounds
 * [min_concurrency, max_concurrency] (0 = keep), max_side (0 = send frames as they are) and the JPEG
 * quality of scaled frames (0 = default). Restarts the window at max(min, max / 4). LV_EINVAL on a
 * bad value (nothing changed). */
int lv_backend_configure(lv_backend_t *b, int adaptive, int min_concurrency, int max_concurrency, int max_side,
                         int jpeg_quality);
/** Requests this backend may have in flight now: the adaptive window, or max_concurrency. */
int lv_backend_limit(const lv_backend_t *b);
/** "closed", "half_open" or "open" (the circuit breaker), for metrics and the UI. */
const char *lv_backend_state_name(const lv_backend_t *b);
/** Milliseconds until the backend takes new requests again because it answered 429 or 503 with a
 * Retry-After (at most LV_BACKEND_RETRY_AFTER_MAX_MS); 0 when no such pause is in force. The
 * backend stays healthy meanwhile: resolve says LV_EAGAIN for it (the frame waits or goes to
 * another backend), not LV_ENOTFOUND. For listings and metrics. */
uint64_t lv_backend_retry_after_ms(const lv_backend_t *b);
/** The number of Retry-After pauses that have ended since the last call (each is counted once):
 * nothing else happens when one ends, so a scheduler with frames waiting (resolve said
 * LV_EAGAIN) asks this on its periodic tick and dispatches again when it is > 0. */
int lv_pool_retry_after_ended(lv_pool_t *pool);
/** Requests wait and may want this backend: when it is full, let its window grow if the backend
 * shows free room (lv_window_on_demand: every request in flight past its first token, the latest
 * first token at the floor). 1 when the window grew. Adaptive backends only, never during a
 * Retry-After pause (the backend asked for less, not more). */
int lv_backend_grow_on_demand(lv_backend_t *b);
/** lv_backend_grow_on_demand() on every healthy backend; the number whose window grew. */
int lv_pool_grow_on_demand(lv_pool_t *pool);
/** Requests the healthy backends may have in flight now: the sum of their limits. */
size_t lv_pool_capacity(lv_pool_t *pool);
/** Requests that could start now: the healthy backends' room under their limits, paused ones
 * (Retry-After) left out. */
size_t lv_pool_free_slots(lv_pool_t *pool);

/* ---- for src/backend only (lv_chat reports how each request ended) ---- */

typedef enum {
    LV_BACKEND_END_OK,      /* answered */
    LV_BACKEND_END_CLIENT,  /* 4xx other than 429, or our own caps: the request's fault */
    LV_BACKEND_END_ERROR,   /* 5xx, 429, malformed or broken stream */
    LV_BACKEND_END_TIMEOUT, /* a deadline passed */
    LV_BACKEND_END_CONNECT, /* the backend could not be reached */
    LV_BACKEND_END_LOCAL,   /* our failure (out of memory) */
    LV_BACKEND_END_CANCEL,  /* cancelled by the caller */
} lv_backend_end_t;

typedef struct {
    lv_backend_end_t end;
    int probe;              /* this request held the half-open probe */
    int streamed;
    uint64_t ttft_us, total_us;
    int tokens;
    int inflight_at_start;
    int timed_out_connect;
    const char *why;
    uint64_t retry_after_ms; /* > 0: the answer was 429/503 with this Retry-After: no new request
                              * to b for that long (capped at LV_BACKEND_RETRY_AFTER_MAX_MS) */
} lv_backend_report_t;

/** A request on b got its first token ttft_us after it was sent (b->awaiting_first goes down). */
void lv_backend_first_token(lv_backend_t *b, uint64_t ttft_us);

/** Take the half-open probe resolve handed out (1) or 0 when none is pending. */
int lv_backend_take_probe(lv_backend_t *b);
/** Feed the window, the breaker, the latency average and the counters with one request's end. */
void lv_backend_report(lv_backend_t *b, const lv_backend_report_t *r);

/** Re-check all backends every period_ms (<= 0: 10000) with lv_pool_refresh(), so a backend
 * marked down rejoins when it answers again. A new round starts only when the previous one has
 * finished. Calling it again changes the period. LV_EIO if the timer cannot start. */
int lv_pool_start_health(lv_pool_t *pool, int period_ms);

/** Passive health: take b out of rotation with why as last_error (lv_chat calls it when a
 * backend cannot be reached). The next successful refresh puts it back. */
void lv_backend_mark_down(lv_backend_t *b, const char *why);

/* ---- for the other files of src/backend (lv_chat) ---- */

/** The loop and http the pool was created with. */
uv_loop_t *lv_pool_loop(lv_pool_t *pool);
lv_http_t *lv_pool_http(lv_pool_t *pool);

/** Where the pool's chats run (lv_lane.h). A new pool runs them on its own loop. */
struct lv_lane *lv_pool_lane(lv_pool_t *pool);

/** on: run chats' transfers on a thread of their own (its own uv loop and lv_http: libcurl, the
 * backend sockets and SSE parsing leave the pool's loop); off: on the pool's loop. Probes stay on
 * the pool's loop and http either way. Only while no chat runs on the pool: LV_EINVAL otherwise.
 * LV_ENOMEM, LV_EIO (no thread). */
int lv_pool_use_thread(lv_pool_t *pool, bool on);

/** --backend-client: on (the default) lets chats to plain http:// backends use the built-in
 * HTTP/1.1 client (lv_h1c.h) instead of curl; off sends every request through curl. */
void lv_pool_set_native_http(lv_pool_t *pool, bool on);

/** Whether a chat to b goes through lv_h1c: the pool allows it and b->h1c_url, decided once when
 * b was added: the URL is http:// (no userinfo) and no proxy would apply to it (none of
 * http_proxy, all_proxy, ALL_PROXY was set at pool creation, or the host is a loopback one, which
 * curl is told never to proxy either). */
bool lv_pool_native_for(const lv_pool_t *pool, const lv_backend_t *b);

/** A request running on the pool; lv_pool_destroy() unlinks it and calls cancel(link). */
typedef struct lv_pool_link {
    lv_queue_t node;
    void (*cancel)(struct lv_pool_link *link);
} lv_pool_link_t;

/** Register / unregister a running request (unregistering an unlinked link does nothing). */
void lv_pool_link_add(lv_pool_t *pool, lv_pool_link_t *link, void (*cancel)(lv_pool_link_t *link));
void lv_pool_link_remove(lv_pool_link_t *link);

/** New easy handle for {base_url}{path} with what every backend call shares: http/https only, no
 * redirects, no proxy for loopback hosts, NOSIGNAL, CURLOPT_ERRORBUFFER = errbuf (at least
 * CURL_ERROR_SIZE bytes), and "Authorization: Bearer <api_key>" appended to *headers when
 * api_key is non-empty (the caller sets CURLOPT_HTTPHEADER after adding its own, and frees the
 * list after the transfer). NULL on failure, with *headers unchanged. */
CURL *lv_backend_easy_new(const char *base_url, const char *api_key, const char *path,
                          struct curl_slist **headers, char *errbuf);

#endif

/* test_chat_live.c - lv_http, lv_backend and lv_chat against a tiny scripted HTTP server that runs
 * on the same libuv loop (127.0.0.1, port 0; tests/unit/scripted_server.h). Every test ends with all handles closed and
 * uv_loop_close() == 0, so ASan/LSan see a clean teardown. The pool tests at the end drive the
 * pool the way the engine does (resolve, start, retry elsewhere before the first token) against
 * one or two servers whose "m-pace" model has a first-token delay and a number of slots (a FIFO
 * queue behind them), and whose listener can be closed and opened again. */
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>
#include <jansson.h>
#include <uv.h>

#include "lv_b64.h"
#include "lv_backend.h"
#include "lv_buf.h"
#include "lv_chat.h"
#include "lv_common.h"
#include "lv_http.h"
#include "lv_lane.h"
#include "lv_queue.h"
#include "lv_session.h"

#include "scripted_server.h"

/* ====================== the scripted server ====================== */

/* The server of scripted_server.h, plus the "m-pace" model: each answer takes pace_ttft_ms in one
 * of pace_slots slots (0 = as many as come); requests that find every slot busy wait in FIFO
 * order, as in vLLM's scheduler queue. */
typedef struct {
    ss_srv_t ss;
    unsigned pace_ttft_ms;
    int pace_slots;
    int pace_active;
    lv_queue_t pace_wait; /* conn_t.wait_link */
    int pace_served;
} srv_t;

typedef struct {
    ss_conn_t ss;
    int pace_slot; /* "m-pace": holds one of the server's slots */
    int pace_waiting;
    lv_queue_t wait_link;
} conn_t;

static srv_t *conn_srv(conn_t *c) { return LV_CONTAINER_OF(c->ss.srv, srv_t, ss); }

/* Send head now, then body in pieces of `piece` bytes every delay_ms, then close. */
static void conn_script(conn_t *c, const char *head, const char *body, size_t piece, unsigned delay_ms, int chunked)
{
    ss_plan_pieces(&c->ss, body, strlen(body), piece, chunked);
    c->ss.end_chunked = chunked;
    ss_play(&c->ss, head, delay_ms);
}

static char *sse_body(const char *eol, int with_done, int with_usage);

/* Prefill in a slot: the whole answer goes out after pace_ttft_ms. */
static void pace_start(conn_t *c)
{
    static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n";
    srv_t *s = conn_srv(c);
    c->pace_slot = 1;
    s->pace_active++;
    char *body = sse_body("\n", 1, 1);
    conn_script(c, head, body, 1 << 20, s->pace_ttft_ms ? s->pace_ttft_ms : 1, 0);
    free(body);
}

static void pace_admit(srv_t *s)
{
    while (!s->ss.stopping && !lv_queue_empty(&s->pace_wait) &&
           (s->pace_slots <= 0 || s->pace_active < s->pace_slots)) {
        conn_t *c = LV_CONTAINER_OF(lv_queue_head(&s->pace_wait), conn_t, wait_link);
        lv_queue_remove(&c->wait_link);
        c->pace_waiting = 0;
        pace_start(c);
    }
}

static void pace_release(conn_t *c)
{
    if (!c->pace_slot)
        return;
    srv_t *s = conn_srv(c);
    c->pace_slot = 0;
    s->pace_active--;
    s->pace_served++;
    pace_admit(s);
}

/* the answer is out: the slot is free */
static void on_played(ss_conn_t *sc) { pace_release(LV_CONTAINER_OF(sc, conn_t, ss)); }

static void on_conn_closing(ss_conn_t *sc)
{
    conn_t *c = LV_CONTAINER_OF(sc, conn_t, ss);
    if (c->pace_waiting) {
        lv_queue_remove(&c->wait_link);
        c->pace_waiting = 0;
    }
    pace_release(c);
}

/* ---- canned answers ---- */

static const char *const tokens[] = {"The", " quick", " brown", " fox", " jumps", " over", " the",
                                     " lazy", " dog", " \xC3\xA9\xF0\x9F\x98\x80", "."};
#define STREAM_TEXT "The quick brown fox jumps over the lazy dog \xC3\xA9\xF0\x9F\x98\x80."

static char *sse_body(const char *eol, int with_done, int with_usage)
{
    lv_buf_t b;
    lv_buf_init(&b, 1 << 20);
    const char *pre = "{\"id\":\"chatcmpl-t1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"fake-vl-1\",";
    assert_int_equal(lv_buf_printf(&b, "data: %s\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
                                       "\"finish_reason\":null}]}%s%s",
                                   pre, eol, eol), 0);
    assert_int_equal(lv_buf_printf(&b, ": keep-alive%s%s", eol, eol), 0);
    for (size_t i = 0; i < LV_ARRAY_LEN(tokens); i++) {
        json_t *s = json_string(tokens[i]);
        char *enc = json_dumps(s, JSON_ENCODE_ANY);
        assert_int_equal(lv_buf_printf(&b, "data: %s\"choices\":[{\"index\":0,\"delta\":{\"content\":%s},"
                                           "\"finish_reason\":null}]}%s%s",
                                       pre, enc, eol, eol), 0);
        free(enc);
        json_decref(s);
    }
    assert_int_equal(lv_buf_printf(&b, "data: %s\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"},"
                                       "\"finish_reason\":\"stop\"}]}%s%s",
                                   pre, eol, eol), 0);
    if (with_usage)
        assert_int_equal(lv_buf_printf(&b, "data: %s\"choices\":[],\"usage\":{\"prompt_tokens\":100,"
                                           "\"completion_tokens\":11,\"total_tokens\":111}}%s%s",
                                       pre, eol, eol), 0);
    if (with_done)
        assert_int_equal(lv_buf_printf(&b, "data: [DONE]%s%s", eol, eol), 0);
    char *s = strdup(b.data);
    lv_buf_free(&b);
    return s;
}

static const char models_json[] =
    "{\"object\":\"list\",\"data\":[{\"id\":\"text-model\",\"object\":\"model\"},"
    "{\"id\":\"fake-vl-1\",\"object\":\"model\",\"owned_by\":\"t\"},{\"id\":\"llava:latest\"},{\"id\":7},{\"nope\":1}]}";

/* extra: more header lines, each ending in CRLF ("" for none) */
static void respond_with(conn_t *c, int status, const char *ctype, const char *extra, const char *body)
{
    char head[512];
    snprintf(head, sizeof head,
             "HTTP/1.1 %d X\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%sConnection: close\r\n\r\n", status,
             ctype, strlen(body), extra);
    ss_write(&c->ss, head, strlen(head), 0);
    ss_write(&c->ss, body, strlen(body), 1);
}

static void respond_simple(conn_t *c, int status, const char *ctype, const char *body)
{
    respond_with(c, status, ctype, "", body);
}

/* "m-ra-*": answers that ask for a pause (Retry-After), and some that do not count as asking */
static const struct {
    const char *model;
    int status;
    const char *headers;
    uint64_t wait_ms; /* what lv_chat should make of it */
} retry_after_answers[] = {
    {"m-ra-429", 429, "Retry-After: 2\r\n", 2000},
    /* a date, read against the answer's Date (7 s later), not against our clock */
    {"m-ra-503-date", 503, "Date: Mon, 06 Oct 2025 10:03:40 GMT\r\nretry-after: Mon, 06 Oct 2025 10:03:47 GMT\r\n",
     7000},
    {"m-ra-429-huge", 429, "Retry-After: 86400\r\n", LV_BACKEND_RETRY_AFTER_MAX_MS},
    {"m-ra-429-zero", 429, "Retry-After: 0\r\n", 0},
    {"m-ra-429-junk", 429, "Retry-After: in a bit\r\n", 0},
    {"m-ra-429-two", 429, "Retry-After: 5\r\nRetry-After: 9\r\n", 0},
    {"m-ra-500", 500, "Retry-After: 5\r\n", 0}, /* only 429 and 503 ask for a pause */
    {"m-ra-429-none", 429, "", 0},
};

static void route(ss_conn_t *sc, const char *method, const char *path, const char *body)
{
    conn_t *c = LV_CONTAINER_OF(sc, conn_t, ss);
    static const char sse_head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
                                   "Cache-Control: no-cache\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n";
    static const char sse_head_close[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n";
    if (strcmp(method, "GET") == 0 && strcmp(path, "/v1/models") == 0) {
        respond_simple(c, 200, "application/json", models_json);
        return;
    }
    if (strcmp(method, "POST") != 0 || strcmp(path, "/v1/chat/completions") != 0) {
        respond_simple(c, 404, "text/plain", "not found");
        return;
    }
    char model[64] = "";
    const char *m = strstr(body, "\"model\":\"");
    if (m)
        snprintf(model, sizeof model, "%.*s", (int)strcspn(m + 9, "\""), m + 9);
    if (strcmp(model, "m-pace") == 0) {
        c->pace_waiting = 1;
        lv_queue_insert_tail(&conn_srv(c)->pace_wait, &c->wait_link);
        pace_admit(conn_srv(c));
    } else if (strcmp(model, "m-stream") == 0 || strcmp(model, "fake-vl-1") == 0) {
        char *s = sse_body("\n", 1, 1);
        conn_script(c, sse_head, s, 37, 1, 1); /* events split across many chunked writes */
        free(s);
    } else if (strcmp(model, "m-slow") == 0) {
        char *s = sse_body("\r\n", 1, 0);
        conn_script(c, sse_head_close, s, 60, 30, 0);
        free(s);
    } else if (strcmp(model, "m-nodone") == 0) {
        char *s = sse_body("\n", 0, 0);
        conn_script(c, sse_head_close, s, 4096, 1, 0);
        free(s);
    } else if (strcmp(model, "m-keepopen") == 0) {
        char *s = sse_body("\n", 1, 1);
        c->ss.keep_open = 1;
        conn_script(c, sse_head, s, 4096, 1, 1);
        free(s);
    } else if (strcmp(model, "m-echo-key") == 0) {
        respond_simple(c, 401, "application/json",
                       "{\"error\":{\"message\":\"Incorrect API key provided: sk-test-secret. See docs.\","
                       "\"type\":\"invalid_request_error\",\"code\":\"invalid_api_key\"}}");
    } else if (strcmp(model, "m-bad") == 0) {
        conn_script(c, sse_head_close,
                    "data: {\"choices\":[{\"delta\":{\"content\":\"ok\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\n\n",
                    4096, 1, 0);
    } else if (strcmp(model, "m-json") == 0) {
        respond_simple(c, 200, "application/json",
                       "{\"id\":\"chatcmpl-j\",\"object\":\"chat.completion\",\"model\":\"m-json\",\"choices\":[{\"index\":0,"
                       "\"message\":{\"role\":\"assistant\",\"content\":\"A red mug on a desk.\"},\"finish_reason\":\"stop\"}],"
                       "\"usage\":{\"prompt_tokens\":50,\"completion_tokens\":7,\"total_tokens\":57}}");
    } else if (strcmp(model, "m-500") == 0) {
        respond_simple(c, 500, "application/json",
                       "{\"error\":{\"message\":\"CUDA out of memory.\\nTried to allocate 2 GiB\",\"type\":\"server_error\","
                       "\"code\":500}}");
    } else if (strcmp(model, "m-stall1") == 0) {
        /* the head and the first token, then silence with the connection open (a stalled stream) */
        c->ss.keep_open = 1;
        conn_script(c, sse_head,
                    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"The\"},\"finish_reason\":null}]}\n\n",
                    4096, 1, 1);
    } else if (strcmp(model, "m-trickle") == 0) {
        /* a slow but live stream: one piece every 200 ms */
        char *s = sse_body("\n", 1, 1);
        conn_script(c, sse_head, s, 150, 200, 1);
        free(s);
    } else if (strcmp(model, "m-stall") == 0) {
        /* never answer */
    } else if (strncmp(model, "m-ra-", 5) == 0) {
        for (size_t i = 0; i < LV_ARRAY_LEN(retry_after_answers); i++)
            if (strcmp(model, retry_after_answers[i].model) == 0)
                respond_with(c, retry_after_answers[i].status, "application/json", retry_after_answers[i].headers,
                             "{\"error\":{\"message\":\"slow down\",\"type\":\"rate_limit\"}}");
    } else {
        respond_simple(c, 404, "application/json", "{\"error\":{\"message\":\"model not found\"}}");
    }
}

static const ss_ops_t srv_ops = {.route = route, .closing = on_conn_closing, .played = on_played,
                                 .conn_size = sizeof(conn_t)};

static void srv_start(srv_t *s, uv_loop_t *loop)
{
    memset(s, 0, sizeof *s);
    lv_queue_init(&s->pace_wait);
    ss_start(&s->ss, loop, &srv_ops);
}

/* A port on which nothing listens (bound once, then closed). */
static int dead_port(void)
{
    uv_loop_t l;
    uv_tcp_t t;
    struct sockaddr_in a, got;
    int len = sizeof got;
    uv_loop_init(&l);
    uv_ip4_addr("127.0.0.1", 0, &a);
    uv_tcp_init(&l, &t);
    uv_tcp_bind(&t, (const struct sockaddr *)&a, 0);
    uv_tcp_getsockname(&t, (struct sockaddr *)&got, &len);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&l, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&l), 0);
    return ntohs(got.sin_port);
}

/* ====================== fixture ====================== */

typedef struct {
    uv_loop_t loop;
    uv_timer_t tick; /* keeps UV_RUN_ONCE from sleeping forever */
    srv_t srv;
    srv_t srv2;      /* a second backend server, for the tests that start it */
    int srv2_on;
    void *drv;       /* the pool driver of the test, if any: teardown stops it */
    void (*drv_stop_now)(void *drv);
    lv_http_t *http;
    lv_pool_t *pool;
    char url[128];
    uint64_t t0;
} fx_t;

static void on_tick(uv_timer_t *t) { (void)t; }

/* Every test runs four times: chats on the pool's loop, then on a backend I/O thread
 * (lv_lane.h); each through the built-in HTTP/1.1 client (lv_h1c.h, what http:// backends get)
 * and through libcurl (--backend-client curl; what https:// backends get). */
static bool g_threaded, g_curl;

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    uv_timer_init(&f->loop, &f->tick);
    uv_timer_start(&f->tick, on_tick, 20, 20);
    srv_start(&f->srv, &f->loop);
    assert_int_equal(lv_http_create(&f->loop, &f->http), 0);
    assert_int_equal(lv_pool_create(&f->loop, f->http, &f->pool), 0);
    assert_int_equal(lv_pool_use_thread(f->pool, g_threaded), 0);
    lv_pool_set_native_http(f->pool, !g_curl);
    snprintf(f->url, sizeof f->url, "http://127.0.0.1:%d/v1/", f->srv.ss.port);
    f->t0 = lv_now_ms();
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    if (f->drv)
        f->drv_stop_now(f->drv); /* before the pool goes: its timer uses the pool */
    lv_pool_destroy(f->pool);
    lv_http_destroy(f->http);
    ss_stop(&f->srv.ss);
    if (f->srv2_on)
        ss_stop(&f->srv2.ss);
    uv_close((uv_handle_t *)&f->tick, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&f->loop);
    assert_int_equal(rc, 0);
    free(f);
    return 0;
}

/* Run the loop until *flag is set (or fail after timeout_ms). */
static void run_until(fx_t *f, const int *flag, unsigned timeout_ms)
{
    uint64_t end = lv_now_ms() + timeout_ms;
    while (!*flag) {
        if (lv_now_ms() > end)
            fail_msg("timed out after %u ms", timeout_ms);
        uv_run(&f->loop, UV_RUN_ONCE);
    }
}

static void run_for(fx_t *f, unsigned ms)
{
    uint64_t end = lv_now_ms() + ms;
    while (lv_now_ms() < end)
        uv_run(&f->loop, UV_RUN_ONCE);
}

/* ====================== chat helpers ====================== */

typedef struct {
    fx_t *f;
    lv_backend_t *b;
    int done;
    int delta_calls;
    int delta_after_done;
    int max_inflight_seen;
    lv_buf_t deltas;
    lv_chat_result_t res;   /* copied; strings below */
    char text[LV_CHAT_TEXT_MAX + 1];
    char err[512];
    char code[32];
    char finish[32];
    char *req_debug, *resp_debug;
    uint64_t done_ms;
    /* cancel support */
    lv_chat_t *chat;
    uv_timer_t cancel_timer;
    int cancel_after_deltas;
    int cancelled;
} rec_t;

static void rec_init(rec_t *r, fx_t *f, lv_backend_t *b)
{
    memset(r, 0, sizeof *r);
    r->f = f;
    r->b = b;
    lv_buf_init(&r->deltas, 1 << 20);
}

static void rec_free(rec_t *r)
{
    lv_buf_free(&r->deltas);
    free(r->req_debug);
    free(r->resp_debug);
}

static void on_cancel_timer(uv_timer_t *t)
{
    rec_t *r = t->data;
    lv_chat_cancel(r->chat);
    r->chat = NULL;
    r->cancelled = 1;
    uv_close((uv_handle_t *)t, NULL);
}

static void on_delta(void *ud, const char *text, size_t len)
{
    rec_t *r = ud;
    if (r->done)
        r->delta_after_done++;
    r->delta_calls++;
    if (r->b->inflight > r->max_inflight_seen)
        r->max_inflight_seen = r->b->inflight;
    assert_true(len > 0);
    assert_int_equal(lv_buf_append(&r->deltas, text, len), 0);
    if (r->cancel_after_deltas && r->delta_calls == r->cancel_after_deltas) {
        /* cancel from outside the chat's callbacks: a timer on the next loop turn */
        uv_timer_init(&r->f->loop, &r->cancel_timer);
        r->cancel_timer.data = r;
        uv_timer_start(&r->cancel_timer, on_cancel_timer, 0, 0);
    }
}

static void on_done(void *ud, const lv_chat_result_t *res)
{
    rec_t *r = ud;
    assert_false(r->done);
    r->done = 1;
    r->done_ms = lv_now_ms();
    r->res = *res;
    r->chat = NULL;
    assert_non_null(res->text);
    snprintf(r->text, sizeof r->text, "%.*s", (int)res->text_len, res->text);
    snprintf(r->err, sizeof r->err, "%s", res->error_message ? res->error_message : "");
    snprintf(r->code, sizeof r->code, "%s", res->error_code ? res->error_code : "");
    snprintf(r->finish, sizeof r->finish, "%s", res->finish_reason ? res->finish_reason : "");
    r->req_debug = res->request_debug_json ? strdup(res->request_debug_json) : NULL;
    r->resp_debug = res->response_debug_json ? strdup(res->response_debug_json) : NULL;
    /* the slot is free before on_done */
    assert_true(r->b->inflight >= 0);
}

static const lv_chat_cb_t rec_cb = {on_delta, on_done};

static const unsigned char fake_jpeg[] = {0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0xFF, 0xD9};

static lv_backend_t *add_server_backend(fx_t *f, const char *id, const char *models)
{
    assert_int_equal(lv_pool_add(f->pool, id, f->url, "sk-test-secret", 4, models), 0);
    lv_backend_t *b = lv_pool_find(f->pool, id);
    assert_non_null(b);
    return b;
}

static void start_chat(fx_t *f, rec_t *r, lv_backend_t *b, const char *model, int first_ms, int debug)
{
    unsigned char big[4000];
    memset(big, 0xAB, sizeof big);
    memcpy(big, fake_jpeg, sizeof fake_jpeg);
    lv_chat_req_t req = {.model = model, .prompt = "Describe \"this\"\nbriefly.", .max_tokens = 64,
                         .temperature = 0.2, .jpeg = big, .jpeg_len = sizeof big, .connect_timeout_ms = 1000,
                         .first_token_timeout_ms = first_ms, .total_timeout_ms = 3000, .want_debug = debug};
    rec_init(r, f, b);
    assert_int_equal(lv_chat_start(f->pool, b, &req, &rec_cb, r, &r->chat), 0);
    memset(big, 0, sizeof big); /* the chat must not need it any more */
}

/* ====================== tests ====================== */

static void test_stream(void **state)
{
    fx_t *f = *state;
    lv_backend_t *b = add_server_backend(f, "fake", "m-stream");
    rec_t r;
    start_chat(f, &r, b, "m-stream", 2000, 1);
    assert_int_equal(b->inflight, 1);
    assert_int_equal(r.delta_calls, 0); /* nothing fires from inside lv_chat_start */
    run_until(f, &r.done, 3000);

    assert_int_equal(r.res.rc, 0);
    assert_null(r.res.error_code);
    assert_int_equal(r.res.http_status, 200);
    assert_string_equal(r.text, STREAM_TEXT);
    assert_int_equal(r.deltas.len, strlen(STREAM_TEXT));
    assert_memory_equal(r.deltas.data, STREAM_TEXT, r.deltas.len);
    assert_true(r.delta_calls >= 2);
    assert_int_equal(r.delta_after_done, 0);
    assert_int_equal(r.res.n_deltas, (int)LV_ARRAY_LEN(tokens));
    assert_int_equal(r.res.streamed, 1);
    assert_string_equal(r.finish, "stop");
    assert_int_equal(r.res.prompt_tokens, 100);
    assert_int_equal(r.res.completion_tokens, 11);
    assert_true(r.res.ttft_us > 0 && r.res.ttft_us <= r.res.total_us);
    assert_int_equal(r.max_inflight_seen, 1);
    /* the pool learned from it */
    assert_int_equal(b->requests_total, 1);
    assert_int_equal(b->errors_total, 0);
    assert_true(b->lat_ewma_ms > 0 && b->lat_ewma_ms <= r.res.ttft_us / 1000.0 + 1);
    lv_window_stats_t ws;
    lv_window_stats(&b->window, &ws);
    assert_int_equal(ws.samples, 1);
    assert_int_equal(ws.signal, LV_WINDOW_SIGNAL_TTFT);
    assert_int_equal(b->inflight, 0);

    /* what the server saw */
    assert_string_equal(f->srv.ss.last_path, "/v1/chat/completions");
    assert_string_equal(f->srv.ss.last_auth, "Bearer sk-test-secret");
    assert_string_equal(f->srv.ss.last_accept, "text/event-stream");
    json_error_t e;
    json_t *body = json_loadb(f->srv.ss.last_body.data, f->srv.ss.last_body.len, 0, &e);
    assert_non_null(body);
    const char *prompt = NULL, *url = NULL;
    int stream = 0;
    assert_int_equal(json_unpack(body, "{s:b,s:[{s:[{s:s},{s:{s:s}}]}]}", "stream", &stream, "messages", "content",
                                 "text", &prompt, "image_url", "url", &url), 0);
    assert_true(stream);
    assert_string_equal(prompt, "Describe \"this\"\nbriefly.");
    assert_int_equal(strncmp(url, "data:image/jpeg;base64,/9j/4A", 29), 0);
    assert_int_equal(strlen(url), strlen("data:image/jpeg;base64,") + 4 * ((4000 + 2) / 3));
    json_decref(body);

    /* debug payloads */
    assert_non_null(r.req_debug);
    assert_non_null(strstr(r.req_debug, "...<5336 chars total>"));
    assert_null(strstr(r.req_debug, "sk-test"));
    assert_non_null(r.resp_debug);
    json_t *d = json_loads(r.resp_debug, 0, &e);
    assert_non_null(d);
    const char *content = NULL, *fr = NULL, *model = NULL;
    int pt = 0;
    assert_int_equal(json_unpack(d, "{s:s,s:[{s:{s:s},s:s}],s:{s:i}}", "model", &model, "choices", "message", "content",
                                 &content, "finish_reason", &fr, "usage", "prompt_tokens", &pt), 0);
    assert_string_equal(content, STREAM_TEXT);
    assert_string_equal(fr, "stop");
    assert_string_equal(model, "fake-vl-1");
    assert_int_equal(pt, 100);
    json_decref(d);
    rec_free(&r);
}

static void test_nonstream_json(void **state)
{
    fx_t *f = *state;
    lv_backend_t *b = add_server_backend(f, "fake", "m-json");
    rec_t r;
    start_chat(f, &r, b, "m-json", 2000, 1);
    run_until(f, &r.done, 3000);
    assert_int_equal(r.res.rc, 0);
    assert_int_equal(r.res.streamed, 0);
    assert_string_equal(r.text, "A red mug on a desk.");
    assert_int_equal(r.delta_calls, 1);
    assert_int_equal(r.delta_after_done, 0);
    assert_memory_equal(r.deltas.data, "A red mug on a desk.", r.deltas.len);
    assert_int_equal(r.res.n_deltas, 1);
    assert_int_equal(r.res.completion_tokens, 7);
    assert_string_equal(r.finish, "stop");
    assert_non_null(r.resp_debug);
    assert_non_null(strstr(r.resp_debug, "\"chat.completion\""));
    assert_int_equal(b->inflight, 0);
    rec_free(&r);
}

static void test_http_500(void **state)
{
    fx_t *f = *state;
    lv_backend_t *b = add_server_backend(f, "fake", "m-500");
    rec_t r;
    start_chat(f, &r, b, "m-500", 2000, 1);
    run_until(f, &r.done, 3000);
    assert_int_equal(r.res.rc, LV_EBACKEND);
    assert_string_equal(r.code, "backend_error");
    assert_int_equal(r.res.http_status, 500);
    assert_string_equal(r.err, "backend returned HTTP 500: CUDA out of memory. Tried to allocate 2 GiB");
    assert_int_equal(r.delta_calls, 0);
    assert_true(b->healthy); /* an HTTP error is not a connection failure */
    assert_string_equal(lv_backend_state_name(b), "closed"); /* one 5xx does not trip the breaker */
    assert_int_equal(b->requests_total, 1);
    assert_int_equal(b->errors_total, 1);
    lv_window_stats_t ws;
    lv_window_stats(&b->window, &ws);
    assert_int_equal(ws.errors, 1);
    assert_int_equal(b->inflight, 0);
    assert_non_null(strstr(r.resp_debug, "CUDA out of memory"));
    rec_free(&r);
}

static void test_first_token_timeout(void **state)
{
    fx_t *f = *state;
    lv_backend_t *b = add_server_backend(f, "fake", "m-stall");
    rec_t r;
    uint64_t t0 = lv_now_ms();
    start_chat(f, &r, b, "m-stall", 300, 0);
    run_until(f, &r.done, 3000);
    uint64_t took = r.done_ms - t0;
    assert_int_equal(r.res.rc, LV_ETIMEDOUT);
    assert_string_equal(r.code, "backend_timeout");
    assert_string_equal(r.err, "no first token within 300 ms");
    assert_true(took >= 280 && took < 1500);
    assert_int_equal(b->timeouts_total, 1);
    assert_int_equal(b->errors_total, 1);
    assert_true(b->lat_ewma_ms >= 280); /* it waited at least that long for a first token */
    lv_window_stats_t ws;
    lv_window_stats(&b->window, &ws);
    assert_int_equal(ws.timeouts, 1);
    assert_int_equal(b->inflight, 0);
    assert_null(r.req_debug);
    /* the aborted connection is seen closed by the server */
    run_for(f, 50);
    assert_int_equal(f->srv.ss.closed_by_client, 1);
    rec_free(&r);
}

static void test_cancel_mid_stream(void **state)
{
    fx_t *f = *state;
    lv_backend_t *b = add_server_backend(f, "fake", "m-slow");
    rec_t r;
    start_chat(f, &r, b, "m-slow", 2000, 0);
    r.cancel_after_deltas = 2;
    run_until(f, &r.cancelled, 3000);
    assert_int_equal(b->inflight, 0);
    int calls = r.delta_calls;
    run_for(f, 150); /* the server keeps writing into a closed socket: no more callbacks */
    assert_int_equal(r.delta_calls, calls);
    assert_false(r.done);
    assert_true(r.deltas.len < strlen(STREAM_TEXT));
    assert_int_equal(f->srv.ss.closed_by_client, 1);
    rec_free(&r);
}

static void test_malformed_stream(void **state)
{
    fx_t *f = *state;
    lv_backend_t *b = add_server_backend(f, "fake", "m-bad");
    rec_t r;
    start_chat(f, &r, b, "m-bad", 2000, 0);
    run_until(f, &r.done, 3000);
    assert_int_equal(r.res.rc, LV_EBACKEND);
    assert_string_equal(r.err, "malformed stream");
    assert_int_equal(b->inflight, 0);
    rec_free(&r);
}

static void test_finish_reason_without_done(void **state)
{
    fx_t *f = *state;
    lv_backend_t *b = add_server_backend(f, "fake", "m-nodone");
    rec_t r;
    start_chat(f, &r, b, "m-nodone", 2000, 1);
    run_until(f, &r.done, 3000);
    assert_int_equal(r.res.rc, 0);
    assert_string_equal(r.text, STREAM_TEXT);
    assert_string_equal(r.finish, "stop");
    assert_int_equal(r.res.prompt_tokens, 0); /* no usage chunk in this script */
    rec_free(&r);
}

static void test_done_but_server_hangs_on(void **state)
{
    fx_t *f = *state;
    lv_backend_t *b = add_server_backend(f, "fake", "m-keepopen");
    rec_t r;
    uint64_t t0 = lv_now_ms();
    start_chat(f, &r, b, "m-keepopen", 2000, 0);
    run_until(f, &r.done, 3000);
    /* complete after [DONE] plus the grace period, well before the 3 s total deadline */
    assert_int_equal(r.res.rc, 0);
    assert_string_equal(r.text, STREAM_TEXT);
    assert_true(r.done_ms - t0 < 2000);
    assert_int_equal(b->inflight, 0);
    rec_free(&r);
}

static void test_error_never_repeats_key(void **state)
{
    fx_t *f = *state;
    lv_backend_t *b = add_server_backend(f, "fake", "m-echo-key");
    rec_t r;
    start_chat(f, &r, b, "m-echo-key", 2000, 1);
    run_until(f, &r.done, 3000);
    assert_int_equal(r.res.rc, LV_EBACKEND);
    assert_int_equal(r.res.http_status, 401);
    assert_string_equal(r.err, "backend returned HTTP 401: Incorrect API key provided: **************. See docs.");
    assert_non_null(r.resp_debug);
    assert_null(strstr(r.resp_debug, "sk-test-secret"));
    /* a 401 is the request's fault: an error for it, a success for the breaker and the window */
    assert_int_equal(b->errors_total, 1);
    assert_string_equal(lv_backend_state_name(b), "closed");
    lv_window_stats_t ws;
    lv_window_stats(&b->window, &ws);
    assert_int_equal(ws.errors, 0);
    json_error_t e;
    json_t *j = json_loads(r.resp_debug, 0, &e);
    assert_non_null(j);
    json_decref(j);
    rec_free(&r);
}

static void test_connection_refused(void **state)
{
    fx_t *f = *state;
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1", dead_port());
    assert_int_equal(lv_pool_add(f->pool, "dead", url, "", 2, "m"), 0);
    lv_backend_t *b = lv_pool_find(f->pool, "dead");
    assert_true(b->healthy);
    rec_t r;
    start_chat(f, &r, b, "m", 2000, 0);
    run_until(f, &r.done, 3000);
    assert_int_equal(r.res.rc, LV_EBACKEND);
    assert_string_equal(r.err, "cannot reach backend: connection refused");
    assert_int_equal(r.res.http_status, 0);
    assert_false(b->healthy);
    assert_string_equal(b->last_error, "connection refused");
    assert_string_equal(lv_backend_state_name(b), "open"); /* out after one connect failure */
    assert_int_equal(b->inflight, 0);
    rec_free(&r);
}

/* Three concurrent streams; chat 0's first delta cancels chat 2 (allowed: another chat). */
typedef struct {
    rec_t r[3];
} trio_t;

static void on_delta_cancel_other(void *ud, const char *text, size_t len)
{
    trio_t *t = LV_CONTAINER_OF(ud, trio_t, r[0]);
    on_delta(ud, text, len);
    if (t->r[2].chat) {
        lv_chat_cancel(t->r[2].chat);
        t->r[2].chat = NULL;
        t->r[2].cancelled = 1;
    }
}

static void test_concurrent_and_cancel_other(void **state)
{
    fx_t *f = *state;
    lv_backend_t *b = add_server_backend(f, "fake", "m-stream,m-slow");
    trio_t t;
    unsigned char img[100] = {0xFF, 0xD8};
    static const lv_chat_cb_t cb0 = {on_delta_cancel_other, on_done};
    for (int i = 0; i < 3; i++) {
        lv_chat_req_t req = {.model = i == 2 ? "m-slow" : "m-stream", .prompt = "p", .max_tokens = 8,
                             .temperature = 0, .jpeg = img, .jpeg_len = sizeof img, .first_token_timeout_ms = 2000,
                             .total_timeout_ms = 3000};
        rec_init(&t.r[i], f, b);
        assert_int_equal(lv_chat_start(f->pool, b, &req, i == 0 ? &cb0 : &rec_cb, &t.r[i], &t.r[i].chat), 0);
    }
    assert_int_equal(b->inflight, 3);
    run_until(f, &t.r[0].done, 3000);
    run_until(f, &t.r[1].done, 3000);
    assert_true(t.r[2].cancelled);
    assert_false(t.r[2].done);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(t.r[i].res.rc, 0);
        assert_string_equal(t.r[i].text, STREAM_TEXT);
        rec_free(&t.r[i]);
    }
    rec_free(&t.r[2]);
    assert_int_equal(b->inflight, 0);
}

/* on_done starts the next chat (what the scheduler does). */
typedef struct {
    fx_t *f;
    lv_backend_t *b;
    int remaining;
    int finished;
    int all_done;
} chain_t;

static void chain_done(void *ud, const lv_chat_result_t *res);
static void chain_next(chain_t *c)
{
    static const lv_chat_cb_t cb = {NULL, chain_done};
    lv_chat_req_t req = {.model = "m-json", .prompt = "p", .temperature = 1};
    assert_int_equal(lv_chat_start(c->f->pool, c->b, &req, &cb, c, NULL), 0);
}

static void chain_done(void *ud, const lv_chat_result_t *res)
{
    chain_t *c = ud;
    assert_int_equal(res->rc, 0);
    assert_int_equal(c->b->inflight, 0);
    c->finished++;
    if (--c->remaining > 0)
        chain_next(c);
    else
        c->all_done = 1;
}

static void test_start_from_on_done(void **state)
{
    fx_t *f = *state;
    chain_t c = {.f = f, .b = add_server_backend(f, "fake", "m-json"), .remaining = 3};
    chain_next(&c);
    run_until(f, &c.all_done, 3000);
    assert_int_equal(c.finished, 3);
    assert_int_equal(f->srv.ss.requests, 3);
}

static void on_refreshed(void *ud) { *(int *)ud += 1; }

static void test_pool_refresh_and_resolve(void **state)
{
    fx_t *f = *state;
    char dead[64];
    snprintf(dead, sizeof dead, "http://127.0.0.1:%d/v1", dead_port());
    assert_int_equal(lv_pool_add(f->pool, "good", f->url, "sk-test-secret", 1, NULL), 0);
    assert_int_equal(lv_pool_add(f->pool, "dead", dead, "", 4, NULL), 0);
    assert_int_equal(lv_pool_add(f->pool, "cfg", f->url, NULL, 2, " fake-vl-1 , only-here,"), 0);
    lv_backend_t *good = lv_pool_find(f->pool, "good"), *bad = lv_pool_find(f->pool, "dead"),
                 *cfg = lv_pool_find(f->pool, "cfg");
    assert_false(good->healthy);
    assert_string_equal(good->last_error, "not checked yet");
    assert_true(cfg->healthy);
    assert_int_equal(cfg->n_models, 2);

    lv_backend_t *o = NULL;
    const char *m = NULL;
    assert_int_equal(lv_pool_resolve(f->pool, "good", "", &o, &m), LV_ENOTFOUND);

    int refreshed = 0;
    assert_int_equal(lv_pool_refresh(f->pool, on_refreshed, &refreshed), 0);
    assert_int_equal(refreshed, 0);
    run_until(f, &refreshed, 3000);
    assert_int_equal(refreshed, 1);
    assert_string_equal(f->srv.ss.last_path, "/v1/models");

    assert_true(good->healthy);
    assert_string_equal(good->last_error, "");
    assert_true(good->last_check_ms > 0);
    assert_int_equal(good->n_models, 3);
    assert_string_equal(good->models[0], "text-model");
    assert_string_equal(good->models[1], "fake-vl-1");
    assert_string_equal(good->models[2], "llava:latest");
    assert_false(bad->healthy);
    assert_string_equal(bad->last_error, "connection refused");
    assert_true(cfg->healthy);
    assert_int_equal(cfg->n_models, 2); /* configured models are kept */
    assert_string_equal(cfg->models[1], "only-here");

    /* resolve */
    assert_int_equal(lv_pool_resolve(f->pool, "good", "", &o, &m), 0);
    assert_ptr_equal(o, good);
    assert_string_equal(m, "text-model");
    assert_int_equal(lv_pool_resolve(f->pool, "", "llava", &o, &m), 0);
    assert_ptr_equal(o, good);
    assert_string_equal(m, "llava:latest");
    assert_int_equal(lv_pool_resolve(f->pool, "", "only-here", &o, &m), 0);
    assert_ptr_equal(o, cfg);
    assert_int_equal(lv_pool_resolve(f->pool, "dead", "", &o, &m), LV_ENOTFOUND);
    assert_int_equal(lv_pool_resolve(f->pool, "nosuch", "", &o, &m), LV_ENOTFOUND);
    assert_int_equal(lv_pool_resolve(f->pool, "", "absent-model", &o, &m), LV_ENOTFOUND);

    /* fake-vl-1 is on good and cfg: equal load alternates, then the less loaded wins */
    lv_backend_t *first = NULL, *second = NULL;
    assert_int_equal(lv_pool_resolve(f->pool, "", "fake-vl-1", &first, &m), 0);
    assert_string_equal(m, "fake-vl-1");
    assert_int_equal(lv_pool_resolve(f->pool, "", "fake-vl-1", &second, &m), 0);
    assert_ptr_not_equal(first, second);
    good->inflight = 1; /* at its window of 1 */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(lv_pool_resolve(f->pool, "", "fake-vl-1", &o, &m), 0);
        assert_ptr_equal(o, cfg);
    }
    cfg->inflight = 2;
    assert_int_equal(lv_pool_resolve(f->pool, "", "fake-vl-1", &o, &m), LV_EAGAIN);
    assert_int_equal(lv_pool_resolve(f->pool, "good", "text-model", &o, &m), LV_EAGAIN);
    good->inflight = cfg->inflight = 0;

    assert_string_equal(lv_pool_default_model(f->pool), "fake-vl-1");

    /* passive health: marked down, back after the periodic check */
    lv_backend_mark_down(good, "connection refused");
    assert_int_equal(lv_pool_resolve(f->pool, "good", "", &o, &m), LV_ENOTFOUND);
    assert_int_equal(lv_pool_start_health(f->pool, 50), 0);
    uint64_t end = lv_now_ms() + 2000;
    while (!good->healthy && lv_now_ms() < end)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_true(good->healthy);
    assert_false(bad->healthy);
}

static void test_pool_add_validation(void **state)
{
    fx_t *f = *state;
    lv_pool_t *p = f->pool;
    assert_int_equal(lv_pool_add(p, "a", "http://h:1/v1/", "", 0, NULL), 0);
    assert_string_equal(lv_pool_find(p, "a")->base_url, "http://h:1/v1");
    assert_int_equal(lv_pool_find(p, "a")->max_concurrency, LV_BACKEND_DEFAULT_CONCURRENCY);
    assert_int_equal(lv_pool_add(p, "b", "HTTPS://api.example.com", "k", 8, NULL), 0);
    assert_string_equal(lv_pool_find(p, "b")->base_url, "https://api.example.com/v1");
    assert_int_equal(lv_pool_add(p, "c.d_e-F9", "http://[::1]:8000/openai/v1//", "", 1, NULL), 0);
    assert_string_equal(lv_pool_find(p, "c.d_e-F9")->base_url, "http://[::1]:8000/openai/v1");

    assert_int_equal(lv_pool_add(p, "a", "http://h:1/v1", "", 1, NULL), LV_EEXIST);
    assert_int_equal(lv_pool_add(p, "", "http://h/v1", "", 1, NULL), LV_EINVAL);
    assert_int_equal(lv_pool_add(p, NULL, "http://h/v1", "", 1, NULL), LV_EINVAL);
    assert_int_equal(lv_pool_add(p, "bad id", "http://h/v1", "", 1, NULL), LV_EINVAL);
    assert_int_equal(lv_pool_add(p, "bad/id", "http://h/v1", "", 1, NULL), LV_EINVAL);
    char longid[70];
    memset(longid, 'x', 65);
    longid[65] = '\0';
    assert_int_equal(lv_pool_add(p, longid, "http://h/v1", "", 1, NULL), LV_EINVAL);
    longid[64] = '\0';
    assert_int_equal(lv_pool_add(p, longid, "http://h/v1", "", 1, NULL), 0);
    static const char *bad_urls[] = {"ftp://h/v1", "file:///etc/passwd", "h:8000/v1", "http://", "http:///v1",
                                     "http://u:p@h/v1", "http://h/v1?x=1", "http://h/v 1", "http://h/v1#f",
                                     "http://h/\r\nX: y", "", NULL};
    for (size_t i = 0; i < LV_ARRAY_LEN(bad_urls); i++)
        assert_int_equal(lv_pool_add(p, "z", bad_urls[i], "", 1, NULL), LV_EINVAL);
    assert_int_equal(lv_pool_add(p, "z", "http://h/v1", "key\r\nX-Evil: 1", 1, NULL), LV_EINVAL);
    assert_int_equal(lv_pool_add(p, "z", "http://h/v1", "", -1, NULL), LV_EINVAL);
    assert_int_equal(lv_pool_add(p, "z", "http://h/v1", "", 4097, NULL), LV_EINVAL);
    assert_int_equal(lv_pool_add(p, "z", "http://h/v1", "", 1, "ok,bad\x01name"), LV_EINVAL);
    assert_null(lv_pool_find(p, "z"));
    assert_int_equal(lv_pool_count(p), 4);
    assert_null(lv_pool_at(p, 4));
    assert_string_equal(lv_pool_at(p, 1)->id, "b");
    /* nothing healthy with models: no default model, no candidates */
    assert_null(lv_pool_default_model(p));
}

static void test_default_model(void **state)
{
    fx_t *f = *state;
    lv_pool_t *p = f->pool;
    assert_null(lv_pool_default_model(p));
    assert_int_equal(lv_pool_add(p, "a", "http://h:1/v1", "", 1, "mistral"), 0);
    assert_string_equal(lv_pool_default_model(p), "mistral"); /* no hint: the first model */
    assert_int_equal(lv_pool_add(p, "b", "http://h:2/v1", "", 1, "llama3.1:8b,qwen2.5:7b"), 0);
    assert_string_equal(lv_pool_default_model(p), "qwen2.5:7b"); /* weak hint */
    assert_int_equal(lv_pool_add(p, "c", "http://h:3/v1", "", 1,
                                 "text-embedding-3-small,gpt-4o-audio-preview,Qwen/Qwen2.5-VL-7B-Instruct"), 0);
    assert_string_equal(lv_pool_default_model(p), "Qwen/Qwen2.5-VL-7B-Instruct");
    lv_backend_mark_down(lv_pool_find(p, "c"), "test");
    assert_string_equal(lv_pool_default_model(p), "qwen2.5:7b"); /* only healthy backends count */
}

static void on_detected(void *ud, int found)
{
    int *out = ud;
    out[0] = 1;
    out[1] = found;
}

static void test_detect_local(void **state)
{
    fx_t *f = *state;
    int res[2] = {0, -1};
    assert_int_equal(lv_pool_detect_local(f->pool, on_detected, res), 0);
    assert_int_equal(res[0], 0);
    run_until(f, &res[0], 3000);
    assert_true(res[1] >= 0);
    assert_int_equal((int)lv_pool_count(f->pool), res[1]);
    for (size_t i = 0; i < lv_pool_count(f->pool); i++)
        assert_true(lv_pool_at(f->pool, i)->healthy);
}

/* Teardown with work in flight: a stalled chat, a refresh and a detection are all dropped by
 * lv_pool_destroy without callbacks, and the loop still closes cleanly (checked in teardown). */
static void never_called(void *ud, const lv_chat_result_t *res)
{
    (void)ud;
    (void)res;
    fail_msg("on_done after destroy");
}

static void test_destroy_with_work_in_flight(void **state)
{
    fx_t *f = *state;
    lv_backend_t *b = add_server_backend(f, "fake", "m-stall");
    static const lv_chat_cb_t cb = {NULL, never_called};
    lv_chat_req_t req = {.model = "m-stall", .prompt = "p", .temperature = 1, .first_token_timeout_ms = 2000};
    lv_chat_t *chat = NULL;
    assert_int_equal(lv_chat_start(f->pool, b, &req, &cb, NULL, &chat), 0);
    int refreshed = 0;
    assert_int_equal(lv_pool_refresh(f->pool, on_refreshed, &refreshed), 0);
    run_for(f, 30);
    assert_int_equal(b->inflight, 1);
}


/* ====================== a frame sent by reference ====================== */

/* A frame of len bytes: a JPEG start, then a pattern that base64 does not flatten. */
static lv_frame_t *make_frame(size_t len)
{
    static unsigned char *pattern;
    static size_t pattern_len;
    if (pattern_len < len) { /* made once, kept for the run (a test binary) */
        free(pattern);
        pattern = malloc(len);
        assert_non_null(pattern);
        pattern_len = len;
        for (size_t i = 0; i < len; i++)
            pattern[i] = (unsigned char)(i * 131u + (i >> 9));
        memcpy(pattern, fake_jpeg, 4);
    }
    lv_frame_t *fr = lv_frame_new(pattern, len);
    assert_non_null(fr);
    return fr;
}

/* The image the server was sent is data[0..len): the data URL's base64, compared as text. */
static void assert_sent_image(fx_t *f, const unsigned char *data, size_t len)
{
    json_error_t e;
    json_t *body = json_loadb(f->srv.ss.last_body.data, f->srv.ss.last_body.len, 0, &e);
    assert_non_null(body);
    const char *url = NULL;
    assert_int_equal(json_unpack(body, "{s:[{s:[{},{s:{s:s}}]}]}", "messages", "content", "image_url", "url", &url), 0);
    lv_buf_t want;
    lv_buf_init(&want, lv_b64_encoded_len(len) + 64);
    assert_int_equal(lv_buf_append(&want, "data:image/jpeg;base64,", 23), 0);
    assert_int_equal(lv_b64_encode(&want, data, len), 0);
    assert_int_equal(strlen(url), want.len);
    assert_memory_equal(url, want.data, want.len);
    lv_buf_free(&want);
    json_decref(body);
}

/* lv_chat_req_t.frame: the chat holds a reference from lv_chat_start until on_done, and the body
 * is built from the frame's own bytes, not from a copy. Inline, nothing reads the frame before
 * the loop runs, so bytes changed after lv_chat_start (only a test may do that) must be the ones
 * sent; a copy would send the old ones. On a thread the I/O side may already be reading, so
 * there the frame stays as it was. */
static void test_frame_sent_without_copy(void **state)
{
    fx_t *f = *state;
    lv_backend_t *b = add_server_backend(f, "fake", "m-stream");
    lv_frame_t *fr = make_frame(4000);
    lv_chat_req_t req = {.model = "m-stream", .prompt = "What is this?", .temperature = 0.2, .frame = fr,
                         .connect_timeout_ms = 1000, .first_token_timeout_ms = 2000, .total_timeout_ms = 3000,
                         .want_debug = 1};
    rec_t r;
    rec_init(&r, f, b);
    assert_int_equal(lv_chat_start(f->pool, b, &req, &rec_cb, &r, &r.chat), 0);
    assert_int_equal(fr->refs, 2); /* the chat's own reference */
    if (!g_threaded)
        memset(fr->data + 100, 0x5A, 200);
    run_until(f, &r.done, 3000);
    assert_int_equal(r.res.rc, 0);
    assert_string_equal(r.text, STREAM_TEXT);
    assert_int_equal(fr->refs, 1); /* given back by on_done */
    assert_sent_image(f, fr->data, fr->len);
    assert_non_null(r.req_debug); /* the debug view was made from the frame's bytes too */
    assert_non_null(strstr(r.req_debug, "...<5336 chars total>"));
    rec_free(&r);

    /* jpeg and frame together are refused, and the frame is not held */
    unsigned char other[] = {0xFF, 0xD8, 0xFF, 0xD9};
    req.jpeg = other;
    req.jpeg_len = sizeof other;
    rec_init(&r, f, b);
    assert_int_equal(lv_chat_start(f->pool, b, &req, &rec_cb, &r, &r.chat), LV_EINVAL);
    assert_int_equal(fr->refs, 1);
    assert_int_equal(b->inflight, 0);
    rec_free(&r);
    lv_frame_unref(fr);
}

/* A gate on the lane's I/O side: its turn holds the I/O thread until the test opens it. With two
 * the test knows when the I/O side takes up a chat: while the thread is held at the first, the
 * second and then the chat are posted, so once the thread is at the second (after its pacing
 * pause, lv_lane.h) the chat is next in the same batch, and starts the moment the gate opens. */
typedef struct {
    lv_lane_item_t item;
    uv_sem_t entered, go;
} io_gate_t;

static void gate_io_turn(lv_lane_item_t *it)
{
    io_gate_t *g = LV_CONTAINER_OF(it, io_gate_t, item);
    uv_sem_post(&g->entered);
    uv_sem_wait(&g->go);
}

static void gate_main_turn(lv_lane_item_t *it) { (void)it; }

static void gate_free(lv_lane_item_t *it)
{
    io_gate_t *g = LV_CONTAINER_OF(it, io_gate_t, item);
    uv_sem_destroy(&g->entered);
    uv_sem_destroy(&g->go);
    free(g);
}

/* Post a closed gate to the I/O side. */
static io_gate_t *gate_post(lv_lane_t *lane)
{
    io_gate_t *g = calloc(1, sizeof *g);
    assert_non_null(g);
    assert_int_equal(uv_sem_init(&g->entered, 0), 0);
    assert_int_equal(uv_sem_init(&g->go, 0), 0);
    lv_lane_item_init(lane, &g->item, 1, gate_io_turn, gate_main_turn, gate_free);
    lv_lane_post_io(lane, &g->item);
    return g;
}

/* Wait until the I/O thread is held at g. */
static void gate_reached(io_gate_t *g) { uv_sem_wait(&g->entered); }

/* Let the I/O thread go on. */
static void gate_open(lv_lane_t *lane, io_gate_t *g)
{
    uv_sem_post(&g->go);
    lv_lane_unref(lane, &g->item);
}

/* A round's chat may end on its own before the cancel (through libcurl on the pool's loop, some
 * of these connects fail, with or without a frame): then there is nothing to cancel. */
static void round_done(void *ud, const lv_chat_result_t *res)
{
    (void)res;
    *(int *)ud = 1;
}

/* The caller lets go of its frame right after a cancel: the chat's reference must keep the bytes
 * alive while the I/O side still reads them, and go once it is done. On a thread, each round
 * lets the I/O thread take up the chat through two gates and cancels 0..1 ms later, so rounds
 * cancel while the I/O side reads the frame or while the body is being sent (the server on this
 * loop does not read meanwhile). The frame is 16 MiB, more than a camera
 * sends (lv_chat does not cap it): its body takes about a millisecond to build, longer than the
 * main thread may be kept off the CPU by the wake-up of the I/O thread on a machine with two.
 * Inline the cancel cannot interrupt the build: odd rounds run the loop first, so the body is
 * built and the transfer started. A frame dropped too early is a use-after-free under ASan; one
 * never dropped is a leak (LSan), and shows here too: a chat still holding the frame after the
 * cancel must let go of it when the loop runs. The last chat is left to lv_pool_destroy in
 * teardown. */
static void test_frame_outlives_cancel(void **state)
{
    fx_t *f = *state;
    lv_backend_t *b = add_server_backend(f, "fake", "m-stall");
    lv_lane_t *lane = lv_pool_lane(f->pool);
    enum { ROUNDS = 12, FRAME_LEN = 16 << 20 };
    static const lv_chat_cb_t cb = {NULL, round_done};
    int deferred = 0;
    for (int i = 0; i <= ROUNDS; i++) {
        lv_frame_t *fr = make_frame(FRAME_LEN);
        lv_chat_req_t req = {.model = "m-stall", .prompt = "p", .temperature = 1, .frame = fr,
                             .connect_timeout_ms = 1000, .first_token_timeout_ms = 2000};
        lv_chat_t *chat = NULL;
        int done = 0;
        io_gate_t *g1 = NULL, *g2 = NULL;
        if (g_threaded) {
            g1 = gate_post(lane);
            gate_reached(g1);
            g2 = gate_post(lane);
        }
        assert_int_equal(lv_chat_start(f->pool, b, &req, &cb, &done, &chat), 0);
        assert_int_equal(fr->refs, 2);
        if (i == ROUNDS) /* the last: lv_pool_destroy cancels it in teardown, while it is built */
            lv_frame_unref(fr);
        if (g_threaded) {
            gate_open(lane, g1);
            gate_reached(g2);
            gate_open(lane, g2); /* the chat's turn follows at once: it builds the body */
        }
        if (i == ROUNDS)
            break;
        uint64_t until = lv_now_us() + (uint64_t)(i % 6) * 200;
        while (lv_now_us() < until)
            ;
        if (!g_threaded && i % 2)
            for (int k = 0; k < 1 + i % 3; k++)
                uv_run(&f->loop, UV_RUN_NOWAIT);
        if (!done) /* else it ended on its own: the handle is gone */
            lv_chat_cancel(chat);
        assert_int_equal(b->inflight, 0);
        assert_true(fr->refs == 1 || fr->refs == 2);
        if (fr->refs == 2) { /* the I/O side is reading it: the chat lets go on a later turn */
            deferred++;
            uint64_t end = lv_now_ms() + 2000;
            while (fr->refs != 1 && lv_now_ms() < end)
                uv_run(&f->loop, UV_RUN_ONCE);
            assert_int_equal(fr->refs, 1);
        }
        lv_frame_unref(fr); /* the last reference: the chat must be done with the bytes */
    }
    /* how many landed in the build depends on the scheduler (two threads, maybe one CPU free):
     * usually some; that count is not asserted, the lifetimes above are */
    print_message("%d of %d cancels came while the I/O side read the frame\n", deferred, ROUNDS);
    if (!g_threaded)
        assert_int_equal(deferred, 0); /* inline, a cancel never interrupts the build */
}

/* ====================== the pool, driven the way the engine drives it ====================== */

typedef struct driver driver_t;

typedef struct {
    lv_queue_t link;    /* on driver.running */
    driver_t *d;
    lv_backend_t *b;
    int retry;          /* this is the retry of a request that failed before its first token */
} job_t;

struct driver {
    fx_t *f;
    const char *model;
    int max_jobs;       /* requests kept in flight at most */
    int closed_loop;    /* refill from on_done as well as from the timer */
    int stop;
    int jobs;           /* in flight */
    lv_queue_t running; /* job_t */
    uv_timer_t timer;
    lv_backend_t *bs[2];
    int picks[2], ok[2], fail[2];
    int busy;           /* resolve said LV_EAGAIN */
    int retries, retries_ok, retries_busy;
    /* the backend that dies and comes back */
    lv_backend_t *watch;
    uint64_t dead_ms, first_fail_ms, back_ms, rejoin_ms;
    int sent_dead;      /* requests sent to it after its first failure and before it came back */
    uint64_t first_sent_dead_ms;
};

static int drv_index(const driver_t *d, const lv_backend_t *b)
{
    for (int i = 0; i < 2; i++)
        if (d->bs[i] == b)
            return i;
    fail_msg("resolve returned an unknown backend %s", b->id);
    return 0;
}

static void drv_done(void *ud, const lv_chat_result_t *res);
static const lv_chat_cb_t drv_cb = {NULL, drv_done};

/* One frame: resolve (never returning exclude), start. 0, or resolve's error. */
static int drv_send(driver_t *d, const lv_backend_t *exclude, int retry)
{
    lv_backend_t *b = NULL;
    const char *m = NULL;
    int rc = lv_pool_resolve_excluding(d->f->pool, "", d->model, exclude, &b, &m);
    if (rc == LV_EAGAIN)
        d->busy++;
    if (rc)
        return rc;
    assert_ptr_not_equal(b, exclude);
    job_t *j = calloc(1, sizeof *j);
    assert_non_null(j);
    j->d = d;
    j->b = b;
    j->retry = retry;
    lv_queue_insert_tail(&d->running, &j->link);
    d->picks[drv_index(d, b)]++;
    if (b == d->watch && d->first_fail_ms && !d->back_ms) {
        if (!d->sent_dead++)
            d->first_sent_dead_ms = lv_now_ms();
    }
    lv_chat_req_t req = {.model = m, .prompt = "p", .max_tokens = 16, .connect_timeout_ms = 1000,
                         .first_token_timeout_ms = 2000, .total_timeout_ms = 3000};
    assert_int_equal(lv_chat_start(d->f->pool, b, &req, &drv_cb, j, NULL), 0);
    d->jobs++;
    return 0;
}

static void drv_fill(driver_t *d)
{
    while (!d->stop && d->jobs < d->max_jobs && drv_send(d, NULL, 0) == 0)
        ;
}

static void drv_done(void *ud, const lv_chat_result_t *res)
{
    job_t *j = ud;
    driver_t *d = j->d;
    lv_backend_t *b = j->b;
    int i = drv_index(d, b);
    d->jobs--;
    lv_queue_remove(&j->link);
    if (res->rc == 0) {
        d->ok[i]++;
        d->retries_ok += j->retry;
        if (b == d->watch && d->back_ms && !d->rejoin_ms)
            d->rejoin_ms = lv_now_ms();
    } else {
        d->fail[i]++;
        /* passive health: out of rotation as soon as its first request failed to connect (one
         * that was in flight when the server died fails as "backend connection failed": no
         * verdict on reachability) */
        if (b == d->watch && !d->first_fail_ms && strncmp(res->error_message, "cannot reach backend: ", 22) == 0) {
            d->first_fail_ms = lv_now_ms();
            assert_false(b->healthy);
            assert_string_equal(lv_backend_state_name(b), "open");
            lv_backend_t *o = NULL;
            const char *m = NULL;
            assert_int_equal(lv_pool_resolve(d->f->pool, b->id, d->model, &o, &m), LV_ENOTFOUND);
        }
        /* the engine's retry: another backend, only when nothing reached the user yet */
        if (res->n_deltas == 0 && !j->retry && !d->stop) {
            d->retries++;
            if (drv_send(d, b, 1) == LV_EAGAIN)
                d->retries_busy++;
        }
    }
    free(j);
    if (d->closed_loop)
        drv_fill(d);
}

static void drv_tick(uv_timer_t *t)
{
    driver_t *d = t->data;
    if (d->closed_loop)
        drv_fill(d);
    else if (!d->stop && d->jobs < d->max_jobs)
        (void)drv_send(d, NULL, 0);
}

static void drv_free(uv_handle_t *h) { free(h->data); }

/* Teardown, also after a failed assertion: no more ticks; the pool is destroyed next (cancelling
 * the chats without callbacks), so their jobs are freed here. */
static void drv_stop_now(void *p)
{
    driver_t *d = p;
    d->stop = 1;
    while (!lv_queue_empty(&d->running)) {
        job_t *j = LV_CONTAINER_OF(lv_queue_head(&d->running), job_t, link);
        lv_queue_remove(&j->link);
        free(j);
    }
    d->f->drv = NULL;
    uv_timer_stop(&d->timer);
    uv_close((uv_handle_t *)&d->timer, drv_free);
}

/* The driver: a request every tick_ms while fewer than max_jobs run (closed_loop: as many as
 * resolve lets through, refilled as they end). Freed by teardown. */
static driver_t *drv_start(fx_t *f, lv_backend_t *b0, lv_backend_t *b1, const char *model, int max_jobs,
                           int closed_loop, unsigned tick_ms)
{
    driver_t *d = calloc(1, sizeof *d);
    assert_non_null(d);
    f->drv = d;
    f->drv_stop_now = drv_stop_now;
    lv_queue_init(&d->running);
    d->f = f;
    d->bs[0] = b0;
    d->bs[1] = b1;
    d->model = model;
    d->max_jobs = max_jobs;
    d->closed_loop = closed_loop;
    uv_timer_init(&f->loop, &d->timer);
    d->timer.data = d;
    uv_timer_start(&d->timer, drv_tick, tick_ms, tick_ms);
    if (closed_loop)
        drv_fill(d);
    return d;
}

/* Stop sending and let the running requests end. */
static void drv_stop(driver_t *d)
{
    d->stop = 1;
    uv_timer_stop(&d->timer);
    uint64_t end = lv_now_ms() + 3000;
    while (d->jobs > 0) {
        if (lv_now_ms() > end)
            fail_msg("%d requests still running", d->jobs);
        uv_run(&d->f->loop, UV_RUN_ONCE);
    }
}

static void start_srv2(fx_t *f, char *url, size_t url_size)
{
    srv_start(&f->srv2, &f->loop);
    f->srv2_on = 1;
    snprintf(url, url_size, "http://127.0.0.1:%d/v1", f->srv2.ss.port);
}

/* Two backends serve one model; the one with the lower time to first token takes the load. */
static void test_pool_prefers_faster_backend(void **state)
{
    fx_t *f = *state;
    char url2[64];
    start_srv2(f, url2, sizeof url2);
    f->srv.pace_ttft_ms = 5;
    f->srv2.pace_ttft_ms = 40;
    assert_int_equal(lv_pool_add(f->pool, "fast", f->url, "", 8, "m-pace"), 0);
    assert_int_equal(lv_pool_add(f->pool, "slow", url2, "", 8, "m-pace"), 0);
    lv_backend_t *fast = lv_pool_find(f->pool, "fast"), *slow = lv_pool_find(f->pool, "slow");
    /* fixed windows: the choice depends on latency and load only */
    assert_int_equal(lv_backend_configure(fast, 0, 0, 0, 0, 0), 0);
    assert_int_equal(lv_backend_configure(slow, 0, 0, 0, 0, 0), 0);
    assert_int_equal(lv_backend_limit(fast), 8);

    driver_t *dp = drv_start(f, fast, slow, "m-pace", 6, 1, 5);
    run_for(f, 600);
    drv_stop(dp);
    print_message("fast/slow: %d/%d picks, TTFT EWMA %.1f/%.1f ms\n", dp->picks[0], dp->picks[1], fast->lat_ewma_ms,
                  slow->lat_ewma_ms);
    assert_int_equal(dp->fail[0] + dp->fail[1], 0);
    assert_true(fast->lat_ewma_ms > 0 && slow->lat_ewma_ms > 0);
    assert_true(fast->lat_ewma_ms * 2 < slow->lat_ewma_ms);
    /* while both were idle at the start they alternated; after that the fast one took the load */
    assert_true(slow->requests_total >= 1);
    assert_true(dp->picks[0] > 4 * dp->picks[1]);
    assert_int_equal(fast->requests_total + slow->requests_total, (uint64_t)(dp->picks[0] + dp->picks[1]));
    assert_int_equal(fast->errors_total + slow->errors_total, 0);

    /* equal inflight (none): the faster one every time */
    for (int i = 0; i < 10; i++) {
        lv_backend_t *o = NULL;
        const char *m = NULL;
        assert_int_equal(lv_pool_resolve(f->pool, "", "m-pace", &o, &m), 0);
        assert_ptr_equal(o, fast);
    }
    /* until its load outweighs its speed: score (inflight + 1) * latency / limit */
    int k = (int)(slow->lat_ewma_ms / fast->lat_ewma_ms) + 1;
    fast->inflight = LV_MIN(k, 7);
    if (k <= 7) {
        lv_backend_t *o = NULL;
        const char *m = NULL;
        assert_int_equal(lv_pool_resolve(f->pool, "", "m-pace", &o, &m), 0);
        assert_ptr_equal(o, slow);
    }
    fast->inflight = 0;
}

/* A backend that refuses connections is out after its first failure (the request is retried on
 * the other one), gets at most a few probes while dead, and is back soon after it listens again. */
static void test_pool_dead_backend_leaves_and_rejoins(void **state)
{
    fx_t *f = *state;
    char url2[64];
    start_srv2(f, url2, sizeof url2);
    f->srv.pace_ttft_ms = f->srv2.pace_ttft_ms = 5;
    int port2 = f->srv2.ss.port;
    assert_int_equal(lv_pool_add(f->pool, "a", f->url, "", 8, "m-pace"), 0);
    assert_int_equal(lv_pool_add(f->pool, "b", url2, "", 8, "m-pace"), 0);
    lv_backend_t *a = lv_pool_find(f->pool, "a"), *b = lv_pool_find(f->pool, "b");
    assert_int_equal(lv_pool_start_health(f->pool, 10000), 0); /* open backends: every 500 ms */

    driver_t *dp = drv_start(f, a, b, "m-pace", 4, 0, 10); /* a frame every 10 ms */
    dp->watch = b;
    run_for(f, 150);
    assert_true(dp->ok[1] > 0);
    ss_die(&f->srv2.ss); /* kept-alive connections too: curl keeps them across requests */
    dp->dead_ms = lv_now_ms();
    uint64_t end = dp->dead_ms + 2000;
    /* out at its first failed request, or at the health check when that comes first */
    while (!dp->first_fail_ms && b->healthy && lv_now_ms() < end)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_false(b->healthy);
    bool by_chat = dp->first_fail_ms != 0;
    if (!by_chat)
        dp->first_fail_ms = lv_now_ms(); /* the health check noticed: requests sent from here count */
    assert_true(dp->first_fail_ms > 0);
    run_for(f, 850);
    assert_false(b->healthy);
    assert_true(a->healthy);
    ss_listen(&f->srv2.ss, port2);
    dp->back_ms = lv_now_ms();
    end = dp->back_ms + 2000;
    while (!b->healthy && lv_now_ms() < end)
        uv_run(&f->loop, UV_RUN_ONCE);
    uint64_t healthy_ms = lv_now_ms();
    assert_true(b->healthy);
    /* in rotation again: picked when the other one is excluded (or busy), and its probe closes
     * the breaker */
    int rc;
    /* its half-open probe may already be out with one of the driver's own requests (LV_EAGAIN):
     * then that one's answer is the rejoin */
    while ((rc = drv_send(dp, a, 0)) == LV_EAGAIN && !dp->rejoin_ms && lv_now_ms() < end)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_true(rc == 0 || dp->rejoin_ms);
    while (!dp->rejoin_ms && lv_now_ms() < end)
        uv_run(&f->loop, UV_RUN_ONCE);
    drv_stop(dp);

    print_message("dead backend: first failure %llu ms after it died, %d requests to it while dead (first %lld ms "
                  "after the failure), in rotation %llu ms and answering %llu ms after it listened again; "
                  "%d retries (%d ok, %d busy)\n",
                  (unsigned long long)(dp->first_fail_ms - dp->dead_ms), dp->sent_dead,
                  dp->sent_dead ? (long long)(dp->first_sent_dead_ms - dp->first_fail_ms) : -1LL,
                  (unsigned long long)(healthy_ms - dp->back_ms),
                  (unsigned long long)(dp->rejoin_ms ? dp->rejoin_ms - dp->back_ms : 0), dp->retries, dp->retries_ok,
                  dp->retries_busy);
    assert_true(dp->first_fail_ms - dp->dead_ms < 1000);
    /* no request in its first cool-down (500 ms); after that a probe now and then */
    if (dp->sent_dead)
        assert_true(dp->first_sent_dead_ms - dp->first_fail_ms >= 400);
    assert_true(dp->sent_dead <= 4);
    assert_true(healthy_ms - dp->back_ms <= 1000);
    assert_true(dp->rejoin_ms > 0);
    assert_true(dp->rejoin_ms - dp->back_ms <= 1100);
    assert_true(b->healthy);
    assert_string_equal(lv_backend_state_name(b), "closed");
    assert_string_equal(b->last_error, "");
    assert_int_equal(a->errors_total, 0);
    if (by_chat) { /* a failed request counts, and was retried on the other backend */
        assert_true(b->errors_total >= 1);
        assert_true(dp->retries >= 1);
    }
    assert_int_equal(dp->retries, dp->retries_ok + dp->retries_busy);
}

/* The adaptive window grows while latency stays flat and shrinks when the backend starts
 * queueing (4 slots behind a FIFO). */
static void test_pool_window_follows_latency(void **state)
{
    fx_t *f = *state;
    f->srv.pace_ttft_ms = 40;
    assert_int_equal(lv_pool_add(f->pool, "w", f->url, "", 32, "m-pace"), 0);
    lv_backend_t *b = lv_pool_find(f->pool, "w");
    assert_int_equal(b->adaptive, 1);
    int initial = lv_backend_limit(b);
    assert_int_equal(initial, 8); /* max / 4 */

    driver_t *dp = drv_start(f, b, b, "m-pace", 64, 1, 5); /* as many as the window lets through */
    int peak = initial;
    uint64_t t0 = lv_now_ms(), end = t0 + 4000;
    while (lv_now_ms() < end && peak < 16) {
        uv_run(&f->loop, UV_RUN_ONCE);
        peak = LV_MAX(peak, lv_backend_limit(b));
        assert_true(b->inflight <= peak); /* never more in flight than the window allowed */
    }
    uint64_t grew_ms = lv_now_ms() - t0;
    assert_true(peak > initial);

    /* now the server has 4 slots: a queue builds up inside it, and TTFT with it */
    f->srv.pace_slots = 4;
    uint64_t t1 = lv_now_ms();
    end = t1 + 4000;
    int low = lv_backend_limit(b);
    while (lv_now_ms() < end && !(low <= peak / 2 && low <= 8)) {
        uv_run(&f->loop, UV_RUN_ONCE);
        low = LV_MIN(low, lv_backend_limit(b));
    }
    uint64_t shrank_ms = lv_now_ms() - t1;
    /* and it stays near the 4 slots: every slot busy, a request or two waiting */
    int lo = lv_backend_limit(b), hi = lo;
    end = lv_now_ms() + 500;
    while (lv_now_ms() < end) {
        uv_run(&f->loop, UV_RUN_ONCE);
        lo = LV_MIN(lo, lv_backend_limit(b));
        hi = LV_MAX(hi, lv_backend_limit(b));
    }
    lv_window_stats_t st;
    lv_window_stats(&b->window, &st);
    drv_stop(dp);
    print_message("window: %d -> %d in %llu ms (flat latency), then -> %d in %llu ms (4 slots), then %d..%d for "
                  "500 ms; base %.1f ms, %llu samples\n",
                  initial, peak, (unsigned long long)grew_ms, low, (unsigned long long)shrank_ms, lo, hi,
                  st.base_us / 1000.0, (unsigned long long)st.samples);
    assert_true(low <= peak / 2);
    assert_true(low <= 8);
    assert_int_equal(dp->fail[0], 0);
    assert_true(b->lat_ewma_ms >= 40);
}

/* resolve_excluding never hands out the excluded backend; configure and the half-open probe. */
static void test_pool_exclude_configure_probe(void **state)
{
    fx_t *f = *state;
    lv_pool_t *p = f->pool;
    lv_backend_t *o = NULL;
    const char *m = NULL;
    assert_int_equal(lv_pool_add(p, "x", "http://127.0.0.1:1/v1", "", 4, "mm"), 0);
    assert_int_equal(lv_pool_add(p, "y", "http://127.0.0.1:2/v1", "", 4, "mm,other"), 0);
    assert_int_equal(lv_pool_add(p, "z", "http://127.0.0.1:3/v1", "", 4, "mm"), 0);
    lv_backend_t *x = lv_pool_find(p, "x"), *y = lv_pool_find(p, "y"), *z = lv_pool_find(p, "z");
    lv_backend_t *all[] = {x, y, z};
    for (int e = 0; e < 3; e++) {
        int seen[3] = {0, 0, 0};
        for (int i = 0; i < 30; i++) {
            assert_int_equal(lv_pool_resolve_excluding(p, "", "mm", all[e], &o, &m), 0);
            assert_ptr_not_equal(o, all[e]);
            assert_string_equal(m, "mm");
            seen[o == x ? 0 : o == y ? 1 : 2]++;
        }
        assert_int_equal(seen[e], 0);
        assert_true(seen[(e + 1) % 3] > 0 && seen[(e + 2) % 3] > 0); /* the others still alternate */
    }
    /* the excluded one is no candidate at all */
    assert_int_equal(lv_pool_resolve_excluding(p, "", "other", y, &o, &m), LV_ENOTFOUND);
    assert_int_equal(lv_pool_resolve_excluding(p, "y", "", y, &o, &m), LV_ENOTFOUND);
    assert_int_equal(lv_pool_resolve_excluding(p, "", "other", x, &o, &m), 0);
    assert_ptr_equal(o, y);
    assert_int_equal(lv_pool_resolve_excluding(p, "", "other", NULL, &o, &m), 0);
    x->inflight = z->inflight = 1; /* at their windows (1 = max(1, 4 / 4)) */
    assert_int_equal(lv_pool_resolve_excluding(p, "", "mm", y, &o, &m), LV_EAGAIN);
    x->inflight = z->inflight = 0;

    /* configure: bounds, the fixed limit, the initial window */
    assert_int_equal(lv_backend_configure(NULL, 1, 1, 4, 0, 0), LV_EINVAL);
    assert_int_equal(lv_backend_configure(x, 1, 5, 4, 0, 0), LV_EINVAL);   /* min > max */
    assert_int_equal(lv_backend_configure(x, 1, -1, 4, 0, 0), LV_EINVAL);
    assert_int_equal(lv_backend_configure(x, 1, 1, 4097, 0, 0), LV_EINVAL);
    assert_int_equal(lv_backend_configure(x, 1, 1, -2, 0, 0), LV_EINVAL);
    assert_int_equal(lv_backend_configure(x, 1, 1, 4, -1, 0), LV_EINVAL);
    assert_int_equal(lv_backend_configure(x, 1, 1, 4, 16385, 0), LV_EINVAL);
    assert_int_equal(lv_backend_configure(x, 1, 1, 4, 0, 101), LV_EINVAL);
    assert_int_equal(lv_backend_configure(x, 1, 1, 4, 0, -1), LV_EINVAL);
    assert_int_equal(x->max_concurrency, 4); /* unchanged */
    assert_int_equal(lv_backend_configure(x, 1, 0, 64, 768, 80), 0);
    assert_int_equal(x->max_concurrency, 64);
    assert_int_equal(x->min_concurrency, 1);
    assert_int_equal(x->max_side, 768);
    assert_int_equal(x->jpeg_quality, 80);
    assert_int_equal(lv_backend_limit(x), 16); /* max / 4 */
    assert_int_equal(lv_backend_configure(x, 1, 20, 64, 0, 0), 0);
    assert_int_equal(lv_backend_limit(x), 20); /* not below min */
    assert_int_equal(lv_backend_configure(x, 0, 2, 0, 0, 0), 0); /* 0: keep max */
    assert_int_equal(x->adaptive, 0);
    assert_int_equal(lv_backend_limit(x), 64);
    assert_int_equal(lv_backend_configure(x, 1, 0, 4, 0, 0), 0);

    /* the breaker: mark_down opens it; a passing health check would let it probe at once */
    assert_string_equal(lv_backend_state_name(x), "closed");
    lv_backend_mark_down(x, "connection refused");
    assert_string_equal(lv_backend_state_name(x), "open");
    assert_false(x->healthy);
    assert_string_equal(x->last_error, "connection refused");
    for (int i = 0; i < 10; i++) {
        assert_int_equal(lv_pool_resolve(p, "", "mm", &o, &m), 0);
        assert_ptr_not_equal(o, x);
    }
    assert_int_equal(lv_pool_resolve(p, "x", "", &o, &m), LV_ENOTFOUND);
    lv_breaker_health_ok(&x->breaker, lv_now_ms());
    assert_string_equal(lv_backend_state_name(x), "half_open");
    /* one probe at a time: the pick is the probe, the next resolve finds it busy */
    assert_int_equal(lv_pool_resolve(p, "x", "", &o, &m), 0);
    assert_ptr_equal(o, x);
    assert_int_equal(lv_pool_resolve(p, "x", "", &o, &m), LV_EAGAIN);
    assert_true(x->healthy);
    /* a chat that cannot start gives the probe back */
    static const lv_chat_cb_t cb = {NULL, never_called};
    lv_chat_req_t bad = {.model = "", .prompt = "p"};
    assert_int_equal(lv_chat_start(p, x, &bad, &cb, NULL, NULL), LV_EINVAL);
    assert_int_equal(lv_pool_resolve(p, "x", "", &o, &m), 0);
    assert_ptr_equal(o, x);
    assert_int_equal(x->requests_total, 0);
    /* the probe goes to a port where nothing listens: open again, with a longer cool-down */
    rec_t r;
    start_chat(f, &r, x, "mm", 2000, 0);
    run_until(f, &r.done, 3000);
    assert_int_equal(r.res.rc, LV_EBACKEND);
    assert_string_equal(lv_backend_state_name(x), "open");
    assert_false(x->healthy);
    assert_int_equal(x->requests_total, 1);
    assert_int_equal(x->errors_total, 1);
    assert_true(lv_breaker_retry_in_ms(&x->breaker, lv_now_ms()) > 500); /* 1 s: the second trip */
    assert_int_equal(lv_pool_resolve(p, "x", "", &o, &m), LV_ENOTFOUND);
    rec_free(&r);
}

/* ---- the stream-idle deadline, and requests waiting for their first token ---- */

static void start_chat_idle(fx_t *f, rec_t *r, lv_backend_t *b, const char *model, int idle_ms, int total_ms)
{
    lv_chat_req_t req = {.model = model, .prompt = "Describe.", .max_tokens = 64, .jpeg = fake_jpeg,
                         .jpeg_len = sizeof fake_jpeg, .connect_timeout_ms = 1000, .first_token_timeout_ms = 2000,
                         .total_timeout_ms = total_ms, .stream_idle_timeout_ms = idle_ms};
    rec_init(r, f, b);
    assert_int_equal(lv_chat_start(f->pool, b, &req, &rec_cb, r, &r->chat), 0);
}

/* The first token, then nothing: backend_timeout after the idle time, long before the total
 * deadline; the connection is dropped (so a real server frees the slot) and the text so far kept. */
static void test_stream_idle_timeout(void **state)
{
    fx_t *f = *state;
    lv_backend_t *b = add_server_backend(f, "fake", "m-stall1");
    rec_t r;
    start_chat_idle(f, &r, b, "m-stall1", 300, 5000);
    assert_int_equal(b->awaiting_first, 1);
    run_until(f, &r.delta_calls, 2000);
    uint64_t t_first = lv_now_ms();
    assert_int_equal(b->awaiting_first, 0); /* past its first token, still in flight */
    assert_int_equal(b->inflight, 1);
    run_until(f, &r.done, 3000);
    uint64_t took = r.done_ms - t_first;
    print_message("stalled stream: backend_timeout %llu ms after the first token\n", (unsigned long long)took);
    assert_int_equal(r.res.rc, LV_ETIMEDOUT);
    assert_string_equal(r.code, "backend_timeout");
    assert_string_equal(r.err, "the stream stalled: no data for 300 ms after the first token");
    assert_true(took >= 250 && took < 1000);
    assert_string_equal(r.text, "The");
    assert_int_equal(r.res.n_deltas, 1);
    assert_int_equal(b->inflight, 0);
    assert_int_equal(b->awaiting_first, 0);
    assert_int_equal(b->timeouts_total, 1);
    run_for(f, 50);
    assert_int_equal(f->srv.ss.closed_by_client, 1);
    rec_free(&r);
}

/* Bytes every 200 ms keep a stream alive under a 500 ms idle limit (the deadline follows them). */
static void test_stream_idle_alive(void **state)
{
    fx_t *f = *state;
    lv_backend_t *b = add_server_backend(f, "fake", "m-trickle");
    rec_t r;
    uint64_t t0 = lv_now_ms();
    start_chat_idle(f, &r, b, "m-trickle", 500, 10000);
    run_until(f, &r.done, 8000);
    print_message("trickling stream: complete after %llu ms under a 500 ms idle limit\n",
                  (unsigned long long)(r.done_ms - t0));
    assert_int_equal(r.res.rc, 0);
    assert_string_equal(r.text, STREAM_TEXT);
    assert_true(r.done_ms - t0 >= 1000); /* it really was slow: longer than the idle limit, many times */
    assert_int_equal(b->timeouts_total, 0);
    rec_free(&r);
}

/* Growth on demand through the pool: four requests past their first token fill a window of 4;
 * it grows to 5; a fifth that gets no first token stops further growth; a cancel or a timeout
 * before the first token gives its count back. */
static void test_pool_grow_on_demand(void **state)
{
    fx_t *f = *state;
    assert_int_equal(lv_pool_add(f->pool, "fake", f->url, "", 16, "m-stall1,m-stall"), 0);
    lv_backend_t *b = lv_pool_find(f->pool, "fake");
    assert_int_equal(lv_backend_limit(b), 4);
    rec_t r[6];
    for (int i = 0; i < 4; i++)
        start_chat_idle(f, &r[i], b, "m-stall1", -1, 5000); /* no idle limit: they stay */
    assert_int_equal(lv_backend_grow_on_demand(b), 0); /* all four still wait for a first token */
    for (int i = 0; i < 4; i++)
        run_until(f, &r[i].delta_calls, 2000);
    assert_int_equal(b->awaiting_first, 0);
    assert_int_equal(b->inflight, 4);
    assert_int_equal(lv_backend_grow_on_demand(b), 1);
    assert_int_equal(lv_backend_limit(b), 5);
    assert_int_equal(lv_pool_capacity(f->pool), 5);
    assert_int_equal(lv_backend_grow_on_demand(b), 0); /* not full any more */
    start_chat_idle(f, &r[4], b, "m-stall", -1, 5000); /* never a first token */
    assert_int_equal(b->awaiting_first, 1);
    run_for(f, 100);
    assert_int_equal(lv_backend_grow_on_demand(b), 0); /* it may be waiting inside the backend */
    assert_int_equal(lv_backend_limit(b), 5);
    lv_chat_cancel(r[4].chat);
    assert_int_equal(b->awaiting_first, 0);
    assert_int_equal(b->inflight, 4);
    /* a first-token timeout gives its count back too */
    lv_chat_req_t req = {.model = "m-stall", .prompt = "x", .first_token_timeout_ms = 200, .total_timeout_ms = 5000};
    rec_init(&r[5], f, b);
    assert_int_equal(lv_chat_start(f->pool, b, &req, &rec_cb, &r[5], &r[5].chat), 0);
    assert_int_equal(b->awaiting_first, 1);
    run_until(f, &r[5].done, 2000);
    assert_int_equal(b->awaiting_first, 0);
    for (int i = 0; i < 4; i++)
        lv_chat_cancel(r[i].chat);
    assert_int_equal(b->inflight, 0);
    for (int i = 0; i < 6; i++)
        rec_free(&r[i]);
}

/* ---- Retry-After: a 429/503 that asks for a pause ---- */

/* What each answer's Retry-After comes to (delta-seconds, an HTTP-date against the answer's Date,
 * the cap; none for 0, garbage, two headers, a 500), carried in the result and in the backend. */
static void test_retry_after_answers(void **state)
{
    fx_t *f = *state;
    for (size_t i = 0; i < LV_ARRAY_LEN(retry_after_answers); i++) {
        const char *model = retry_after_answers[i].model;
        uint64_t want = retry_after_answers[i].wait_ms;
        lv_backend_t *b = add_server_backend(f, model + 2, model); /* one backend each: "ra-429", ... */
        rec_t r;
        start_chat(f, &r, b, model, 2000, 0);
        run_until(f, &r.done, 3000);
        print_message("%-16s HTTP %d, retry_after_ms %llu, paused %llu ms\n", model, r.res.http_status,
                      (unsigned long long)r.res.retry_after_ms, (unsigned long long)lv_backend_retry_after_ms(b));
        assert_int_equal(r.res.rc, LV_EBACKEND);
        assert_int_equal(r.res.http_status, retry_after_answers[i].status);
        char want_err[64];
        snprintf(want_err, sizeof want_err, "backend returned HTTP %d: slow down", retry_after_answers[i].status);
        assert_string_equal(r.err, want_err);
        assert_int_equal(r.res.retry_after_ms, want);
        uint64_t paused = lv_backend_retry_after_ms(b);
        lv_backend_t *o = NULL;
        const char *m = NULL;
        if (want) {
            assert_true(paused > want - 1000 && paused <= want);
            assert_int_equal(lv_pool_resolve(f->pool, b->id, model, &o, &m), LV_EAGAIN); /* wait, not "none" */
        } else {
            assert_int_equal(paused, 0);
            assert_int_equal(lv_pool_resolve(f->pool, b->id, model, &o, &m), 0);
        }
        /* paused or not, one 429 leaves the backend healthy and its breaker closed (a run of them
         * opens it, as before) */
        assert_true(b->healthy);
        assert_string_equal(lv_backend_state_name(b), "closed");
        assert_int_equal(b->errors_total, 1);
        rec_free(&r);
    }
}

/* Two backends serve the model; one answers 429 "Retry-After: 2": the other takes every request,
 * and the paused one gets nothing, even asked for by name (the frame waits: LV_EAGAIN). */
static void test_retry_after_goes_elsewhere(void **state)
{
    fx_t *f = *state;
    lv_backend_t *a = add_server_backend(f, "a", "m-ra-429");
    lv_backend_t *b = add_server_backend(f, "b", "m-ra-429");
    rec_t r;
    start_chat(f, &r, a, "m-ra-429", 2000, 0);
    run_until(f, &r.done, 3000);
    assert_int_equal(r.res.retry_after_ms, 2000);
    for (int i = 0; i < 10; i++) {
        lv_backend_t *o = NULL;
        const char *m = NULL;
        assert_int_equal(lv_pool_resolve(f->pool, "", "m-ra-429", &o, &m), 0);
        assert_ptr_equal(o, b);
        assert_int_equal(lv_pool_resolve_excluding(f->pool, "", "m-ra-429", b, &o, &m), LV_EAGAIN);
        assert_int_equal(lv_pool_resolve(f->pool, "a", "", &o, &m), LV_EAGAIN);
    }
    assert_int_equal(lv_pool_retry_after_ended(f->pool), 0);
    rec_free(&r);
}

/* The pool skips a paused backend until the pause has passed, then picks it again; the end of
 * each pause is reported once; pauses are capped; a paused window does not grow on demand. */
static void test_pool_skips_paused_backend(void **state)
{
    fx_t *f = *state;
    lv_pool_t *p = f->pool;
    assert_int_equal(lv_pool_add(p, "x", "http://127.0.0.1:1/v1", "", 4, "mm"), 0);
    assert_int_equal(lv_pool_add(p, "y", "http://127.0.0.1:2/v1", "", 4, "mm"), 0);
    lv_backend_t *x = lv_pool_find(p, "x"), *y = lv_pool_find(p, "y"), *o = NULL;
    const char *m = NULL;
    lv_backend_report_t rep = {.end = LV_BACKEND_END_ERROR, .why = "HTTP 429", .retry_after_ms = 300};
    uint64_t t0 = lv_now_ms();
    lv_backend_report(x, &rep);
    assert_true(lv_backend_retry_after_ms(x) > 200);
    assert_true(x->healthy);
    int picks = 0;
    while (lv_now_ms() < t0 + 250) {
        assert_int_equal(lv_pool_resolve(p, "", "mm", &o, &m), 0);
        assert_ptr_equal(o, y);
        assert_int_equal(lv_pool_resolve(p, "x", "mm", &o, &m), LV_EAGAIN);
        assert_int_equal(lv_pool_retry_after_ended(p), 0);
        picks++;
        uv_sleep(10);
    }
    assert_true(picks > 5);
    /* a full paused backend does not grow its window: it asked for less */
    x->inflight = lv_backend_limit(x);
    assert_int_equal(lv_backend_grow_on_demand(x), 0);
    x->inflight = 0;
    /* both paused: resolve says wait */
    lv_backend_report(y, &rep);
    assert_int_equal(lv_pool_resolve(p, "", "mm", &o, &m), LV_EAGAIN);
    while (lv_backend_retry_after_ms(x) > 0 || lv_backend_retry_after_ms(y) > 0) {
        assert_true(lv_now_ms() < t0 + 2000);
        uv_sleep(5);
    }
    assert_true(lv_now_ms() >= t0 + 300);
    assert_int_equal(lv_pool_retry_after_ended(p), 2);
    assert_int_equal(lv_pool_retry_after_ended(p), 0); /* once each */
    int seen_x = 0;
    for (int i = 0; i < 4; i++) {
        assert_int_equal(lv_pool_resolve(p, "", "mm", &o, &m), 0);
        seen_x += o == x;
    }
    assert_true(seen_x > 0);
    assert_int_equal(lv_pool_resolve(p, "x", "mm", &o, &m), 0);
    assert_string_equal(lv_backend_state_name(x), "closed");
    /* capped: a backend cannot take itself away for longer than LV_BACKEND_RETRY_AFTER_MAX_MS */
    rep.retry_after_ms = 3600 * 1000;
    lv_backend_report(x, &rep);
    assert_true(lv_backend_retry_after_ms(x) > LV_BACKEND_RETRY_AFTER_MAX_MS - 1000);
    assert_true(lv_backend_retry_after_ms(x) <= LV_BACKEND_RETRY_AFTER_MAX_MS);
    /* a shorter pause asked later does not shorten it */
    rep.retry_after_ms = 1000;
    lv_backend_report(x, &rep);
    assert_true(lv_backend_retry_after_ms(x) > 1000);
}

int main(void)
{
    /* the scripted server may write to a client that already hung up: an error, not a signal */
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nonstream_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_500, setup, teardown),
        cmocka_unit_test_setup_teardown(test_first_token_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_mid_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_finish_reason_without_done, setup, teardown),
        cmocka_unit_test_setup_teardown(test_done_but_server_hangs_on, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_never_repeats_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_default_model, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_and_cancel_other, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_from_on_done, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool_refresh_and_resolve, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool_add_validation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_detect_local, setup, teardown),
        cmocka_unit_test_setup_teardown(test_destroy_with_work_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_frame_sent_without_copy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_frame_outlives_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool_exclude_configure_probe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool_prefers_faster_backend, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool_dead_backend_leaves_and_rejoins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool_window_follows_latency, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_idle_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_idle_alive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool_grow_on_demand, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_after_answers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_after_goes_elsewhere, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool_skips_paused_backend, setup, teardown),
    };
    int failed = cmocka_run_group_tests_name("chats on the pool's loop", tests, NULL, NULL);
    g_threaded = true;
    failed += cmocka_run_group_tests_name("chats on a backend I/O thread", tests, NULL, NULL);
    g_curl = true;
    failed += cmocka_run_group_tests_name("chats on a backend I/O thread, through libcurl", tests, NULL, NULL);
    g_threaded = false;
    failed += cmocka_run_group_tests_name("chats on the pool's loop, through libcurl", tests, NULL, NULL);
    return failed;
}

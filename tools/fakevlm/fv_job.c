/* fv_job.c - fakevlm's latency and capacity model and its answers: K slots and a FIFO queue, a
 * timer per running job that releases tokens on schedule (first at ttft, then one per token_ms),
 * the SSE and JSON answer formats, and where each fault strikes. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fv_conn.h"
#include "lv_common.h"
#include "lv_log.h"

#define OUT_PAUSE_BYTES (1u * 1024u * 1024u) /* unsent bytes above which a stream waits for its reader */
#define EVENTS_PER_STEP 256                  /* bound the work per wake-up (tokens due at once) */
#define RETRY_MS 5

static void job_start(fv_conn_t *c);
static void on_job_timer(uv_timer_t *t);

/* ---------- randomness: a pure function of (seed, seq), so a run is reproducible ---------- */

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* Uniform in [0,1) for request seq; purpose separates independent draws (fault, jitter). */
static double unit_random(uint64_t seed, uint64_t seq, uint64_t purpose)
{
    uint64_t x = splitmix64(seed ^ splitmix64(seq * 4 + purpose));
    return (double)(x >> 11) * (1.0 / 9007199254740992.0);
}

/* ---------- the slot model ---------- */

void fv_job_account(fv_server_t *srv)
{
    uint64_t now = uv_now(srv->loop);
    if (now > srv->busy_mark_ms)
        srv->st.busy_slot_ms += (uint64_t)srv->busy * (now - srv->busy_mark_ms);
    srv->busy_mark_ms = now;
}

void fv_job_dispatch(fv_server_t *srv)
{
    while (!srv->stopping && srv->busy < srv->cfg->slots && !lv_queue_empty(&srv->waiting)) {
        fv_conn_t *c = LV_CONTAINER_OF(lv_queue_head(&srv->waiting), fv_conn_t, wait_link);
        lv_queue_remove(&c->wait_link);
        srv->n_waiting--;
        job_start(c);
    }
}

static void job_log(fv_conn_t *c, int status, const char *outcome)
{
    fv_job_t *j = &c->job;
    uint64_t now = uv_now(c->srv->loop);
    uint64_t queue_ms = (j->started_ms ? j->started_ms : now) - j->arrived_ms;
    uint64_t service_ms = j->started_ms ? now - j->started_ms : 0;
    const char *tp = j->traceparent;
    LV_INFO("%s POST /v1/chat/completions %d seq=%llu model=%s stream=%d words=%zu/%zu image=%zu jpeg=%ux%u "
            "queue_ms=%llu service_ms=%llu fault=%s outcome=%s%s%s",
            c->peer, status, (unsigned long long)j->seq, j->model, j->stream, j->words_sent, j->words_total,
            j->image_bytes, j->width, j->height, (unsigned long long)queue_ms, (unsigned long long)service_ms,
            fv_fault_name(j->fault), outcome, tp[0] ? " traceparent=" : "", tp);
}

/* The job leaves its slot (done, dropped or abandoned); the slot goes to the next waiter. */
static void job_release(fv_conn_t *c)
{
    fv_server_t *srv = c->srv;
    uv_timer_stop(&c->timer);
    lv_buf_free(&c->job.text);
    fv_job_account(srv);
    srv->busy--;
}

static void job_done(fv_conn_t *c)
{
    fv_server_t *srv = c->srv;
    srv->st.completed++;
    job_log(c, 200, c->job.cut ? "length" : "stop");
    job_release(c);
    c->state = FV_CONN_READING;
    if (!c->keep_alive)
        fv_conn_linger(c);
    fv_job_dispatch(srv);
    fv_conn_process(c); /* a pipelined request may already be buffered */
}

/* The drop fault: the answer was cut on purpose; FIN the connection. */
static void job_drop(fv_conn_t *c)
{
    fv_server_t *srv = c->srv;
    job_log(c, 200, "dropped");
    job_release(c);
    c->keep_alive = false;
    c->state = FV_CONN_READING; /* conn_linger moves it on */
    fv_conn_linger(c);
    fv_job_dispatch(srv);
}

static void job_start(fv_conn_t *c)
{
    fv_server_t *srv = c->srv;
    const fv_config_t *cfg = srv->cfg;
    fv_job_t *j = &c->job;
    uint64_t now = uv_now(srv->loop);
    c->state = FV_CONN_RUNNING;
    fv_job_account(srv);
    srv->busy++;
    srv->st.started++;
    if (srv->busy > srv->st.max_concurrent)
        srv->st.max_concurrent = srv->busy;
    j->started_ms = now;
    uint64_t waited = now - j->arrived_ms;
    srv->st.queue_wait_ms_total += waited;
    if (waited > srv->st.queue_wait_ms_max)
        srv->st.queue_wait_ms_max = waited;
    uint64_t ttft = cfg->ttft_ms;
    if (cfg->jitter_ms) {
        uint64_t extra = (uint64_t)(unit_random(cfg->seed, j->seq, 1) * ((double)cfg->jitter_ms + 1.0));
        ttft += LV_MIN(extra, (uint64_t)cfg->jitter_ms);
    }
    j->first_due_ms = now + ttft;
    if (j->fault == FV_FAULT_STALL)
        return; /* holds the slot until the client gives up */
    uv_timer_start(&c->timer, on_job_timer, ttft, 0);
}

/* When word i is due (i == words_total: the end of the answer). */
static uint64_t due_ms(const fv_job_t *j, size_t i) { return j->first_due_ms + (uint64_t)i * j->token_ms; }

static void job_retry(fv_conn_t *c, uint64_t delay_ms) { uv_timer_start(&c->timer, on_job_timer, delay_ms, 0); }

/* ---------- the answer, streamed ---------- */

/* Append one SSE event made of parts to out, framed as an HTTP chunk when the stream is chunked. */
static int emit_parts(fv_conn_t *c, lv_buf_t *out, const lv_view_t *parts, size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += parts[i].len;
    int rc = c->job.chunked ? lv_buf_printf(out, "%zx\r\n", total) : 0;
    for (size_t i = 0; !rc && i < n; i++)
        rc = lv_buf_append(out, parts[i].ptr, parts[i].len);
    if (!rc && c->job.chunked)
        rc = lv_buf_append(out, "\r\n", 2);
    return rc;
}

/* The rarer events: the job's chunk head (when with_head) then a formatted tail, via srv->scratch. */
static int emit_fmt(fv_conn_t *c, lv_buf_t *out, bool with_head, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int emit_fmt(fv_conn_t *c, lv_buf_t *out, bool with_head, const char *fmt, ...)
{
    lv_buf_t *ev = &c->srv->scratch;
    lv_buf_reset(ev);
    int rc = with_head ? lv_buf_append(ev, c->job.chunk_head, c->job.chunk_head_len) : 0;
    va_list ap;
    va_start(ap, fmt);
    if (!rc)
        rc = lv_buf_vprintf(ev, fmt, ap);
    va_end(ap);
    if (rc)
        return rc;
    lv_view_t v = {ev->data, ev->len};
    return emit_parts(c, out, &v, 1);
}

#define VIEW(lit) {lit, sizeof(lit) - 1}

static int emit_malformed(fv_conn_t *c, lv_buf_t *out)
{
    c->job.malformed_sent = true;
    /* A JSON object cut short: what a proxy truncating lines or a buggy server produces. */
    return emit_fmt(c, out, false, "data: {\"id\":\"chatcmpl-fakevlm-%llu\",\"object\":\"chat.completion.chu\n\n",
                    (unsigned long long)c->job.seq);
}

/* The hot path (one event per token): no printf, only copies of prepared pieces. */
static int emit_word(fv_conn_t *c, lv_buf_t *out)
{
    fv_job_t *j = &c->job;
    size_t n = fv_word_len(j->text.data + j->text_pos, j->text.len - j->text_pos);
    static const lv_view_t first = VIEW("\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"");
    static const lv_view_t next = VIEW("\"choices\":[{\"index\":0,\"delta\":{\"content\":\"");
    static const lv_view_t tail = VIEW("\"},\"logprobs\":null,\"finish_reason\":null}]");
    static const lv_view_t usage_null = VIEW(",\"usage\":null");
    static const lv_view_t end = VIEW("}\n\n");
    lv_view_t parts[] = {
        {j->chunk_head, j->chunk_head_len},
        j->words_sent == 0 ? first : next,
        {j->text.data + j->text_pos, n},
        tail,
        j->include_usage ? usage_null : (lv_view_t){"", 0},
        end,
    };
    j->text_pos += n;
    j->words_sent++;
    return emit_parts(c, out, parts, LV_ARRAY_LEN(parts));
}

static int emit_end(fv_conn_t *c, lv_buf_t *out)
{
    fv_job_t *j = &c->job;
    int rc = emit_fmt(c, out, true,
                      "\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"%s\"}]%s}\n\n",
                      j->cut ? "length" : "stop", j->include_usage ? ",\"usage\":null" : "");
    if (!rc && j->include_usage)
        rc = emit_fmt(c, out, true,
                      "\"choices\":[],\"usage\":{\"prompt_tokens\":%zu,\"completion_tokens\":%zu,"
                      "\"total_tokens\":%zu}}\n\n",
                      j->prompt_tokens, j->words_sent, j->prompt_tokens + j->words_sent);
    if (!rc)
        rc = emit_fmt(c, out, false, "data: [DONE]\n\n");
    if (!rc && j->chunked)
        rc = lv_buf_append(out, "0\r\n\r\n", 5);
    return rc;
}

/* Extra response headers naming the request, so a test can match answers to requests. */
static void job_headers(char *out, size_t size, const fv_job_t *j)
{
    snprintf(out, size, "%sX-Fake-Seq: %llu\r\nX-Fake-Queue-Ms: %llu\r\n",
             j->stream ? "Cache-Control: no-cache\r\n" : "", (unsigned long long)j->seq,
             (unsigned long long)(j->started_ms - j->arrived_ms));
}

static void job_step_streamed(fv_conn_t *c, uint64_t now)
{
    fv_job_t *j = &c->job;
    lv_buf_t out;
    lv_buf_init(&out, FV_OUT_MAX);
    int rc = 0;
    if (!j->headers_sent) {
        char extra[192];
        job_headers(extra, sizeof(extra), j);
        /* chunked for HTTP/1.1; for HTTP/1.0 the end of the connection ends the stream */
        rc = fv_conn_append_head(&out, c, 200, "text/event-stream; charset=utf-8", j->chunked ? -1 : -2, extra);
        j->headers_sent = true;
    }
    size_t events = 0;
    size_t drop_at = LV_MAX((size_t)1, j->words_total / 2);
    while (!rc && j->words_sent < j->words_total && due_ms(j, j->words_sent) <= now && events < EVENTS_PER_STEP) {
        if (j->fault == FV_FAULT_MALFORMED && j->words_sent == 1 && !j->malformed_sent)
            rc = emit_malformed(c, &out);
        if (!rc)
            rc = emit_word(c, &out);
        events++;
        if (!rc && j->fault == FV_FAULT_STALL_AFTER_FIRST) {
            fv_conn_send(c, &out); /* then nothing more: the slot stays held until the client leaves */
            return;
        }
        if (!rc && j->fault == FV_FAULT_DROP && j->words_sent == drop_at) {
            if (fv_conn_send(c, &out) == 0)
                job_drop(c);
            return;
        }
    }
    bool finished = false;
    if (!rc && j->words_sent == j->words_total && due_ms(j, j->words_total) <= now) {
        if (j->fault == FV_FAULT_MALFORMED && !j->malformed_sent)
            rc = emit_malformed(c, &out);
        if (!rc)
            rc = emit_end(c, &out);
        finished = true;
    }
    if (rc) {
        lv_buf_free(&out);
        fv_conn_close(c);
        return;
    }
    if (fv_conn_send(c, &out))
        return;
    if (finished) {
        job_done(c);
        return;
    }
    uint64_t next = due_ms(j, j->words_sent);
    job_retry(c, next > now ? next - now : 0);
}

/* ---------- the answer, in one piece ---------- */

static int build_completion(const fv_conn_t *c, lv_buf_t *body)
{
    const fv_job_t *j = &c->job;
    size_t len = 0;
    for (size_t i = 0; i < j->words_total; i++)
        len += fv_word_len(j->text.data + len, j->text.len - len);
    return lv_buf_printf(body,
                         "{\"id\":\"chatcmpl-fakevlm-%llu\",\"object\":\"chat.completion\",\"created\":%llu,"
                         "\"model\":\"%s\",\"system_fingerprint\":\"fakevlm-" FV_VERSION "\",\"choices\":[{\"index\":0,"
                         "\"message\":{\"role\":\"assistant\",\"content\":\"%.*s\"},\"logprobs\":null,"
                         "\"finish_reason\":\"%s\"}],\"usage\":{\"prompt_tokens\":%zu,\"completion_tokens\":%zu,"
                         "\"total_tokens\":%zu}}\n",
                         (unsigned long long)j->seq, (unsigned long long)j->created_s, j->model, (int)len,
                         j->text.data, j->cut ? "length" : "stop", j->prompt_tokens, j->words_total,
                         j->prompt_tokens + j->words_total);
}

static void job_step_unstreamed(fv_conn_t *c, uint64_t now)
{
    fv_job_t *j = &c->job;
    uint64_t end = due_ms(j, j->words_total);
    if (now < end && j->fault != FV_FAULT_STALL_AFTER_FIRST) {
        job_retry(c, end - now);
        return;
    }
    lv_buf_t body, out;
    lv_buf_init(&body, FV_OUT_MAX);
    lv_buf_init(&out, FV_OUT_MAX);
    char extra[192];
    int rc = build_completion(c, &body);
    size_t send_len = body.len;
    if (j->fault == FV_FAULT_MALFORMED)
        body.len = send_len = body.len / 2; /* a complete HTTP message whose JSON is cut */
    else if (j->fault == FV_FAULT_DROP)
        send_len = body.len / 2;            /* promise all of it, send half, hang up */
    else if (j->fault == FV_FAULT_STALL_AFTER_FIRST)
        send_len = 0;                       /* the headers only */
    job_headers(extra, sizeof(extra), j);
    if (!rc)
        rc = fv_conn_append_head(&out, c, 200, "application/json", (long long)body.len, extra);
    if (!rc)
        rc = lv_buf_append(&out, body.data, send_len);
    lv_buf_free(&body);
    j->headers_sent = true;
    j->words_sent = j->words_total;
    if (rc) {
        lv_buf_free(&out);
        fv_conn_close(c);
        return;
    }
    if (fv_conn_send(c, &out))
        return;
    if (j->fault == FV_FAULT_STALL_AFTER_FIRST)
        return;
    if (j->fault == FV_FAULT_DROP)
        job_drop(c);
    else
        job_done(c);
}

static void on_job_timer(uv_timer_t *t)
{
    fv_conn_t *c = t->data;
    if (c->closing || c->state != FV_CONN_RUNNING)
        return;
    /* Pull-based: a reader that does not keep up delays its own tokens instead of growing our memory. */
    if (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > OUT_PAUSE_BYTES) {
        job_retry(c, RETRY_MS);
        return;
    }
    uint64_t now = uv_now(c->srv->loop);
    if (c->job.stream)
        job_step_streamed(c, now);
    else
        job_step_unstreamed(c, now);
}

/* ---------- the request ---------- */

/* Keep the traceparent a chat request carried (or "" for none) in the ring /stats shows, so a
 * test can check what its gateway sent (docs/fakevlm.md, "/stats"). */
static void record_traceparent(fv_server_t *srv, const char *tp)
{
    if (tp[0])
        srv->st.traced++;
    size_t at = (srv->tp_head + srv->tp_count) % FV_TRACEPARENTS_KEPT;
    if (srv->tp_count == FV_TRACEPARENTS_KEPT)
        srv->tp_head = (srv->tp_head + 1) % FV_TRACEPARENTS_KEPT;
    else
        srv->tp_count++;
    snprintf(srv->traceparents[at], sizeof(srv->traceparents[at]), "%s", tp);
}

void fv_job_handle_chat(fv_conn_t *c, const char *body, size_t body_len)
{
    fv_server_t *srv = c->srv;
    const fv_config_t *cfg = srv->cfg;
    const fv_http_request_t *r = &c->parser.req;
    uint64_t seq = ++srv->seq;
    char extra[64];
    snprintf(extra, sizeof(extra), "X-Fake-Seq: %llu\r\n", (unsigned long long)seq);
    srv->st.requests++;
    record_traceparent(srv, r->traceparent);

    fv_chat_request_t req;
    fv_error_t err;
    if (fv_chat_parse(body, body_len, srv->model_ptrs, cfg->n_models, &req, &err)) {
        srv->st.bad_requests++;
        LV_INFO("%s POST /v1/chat/completions %d seq=%llu error=%s", c->peer, err.status, (unsigned long long)seq,
                err.code ? err.code : "");
        fv_conn_send_error(c, &err, extra);
        return;
    }
    fv_fault_t fault = FV_FAULT_NONE;
    if (r->has_fault) {
        if (fv_fault_parse(r->fault, strlen(r->fault), &fault)) {
            srv->st.bad_requests++;
            fv_error_t e = {.status = 400, .type = "invalid_request_error", .code = "unknown_fault"};
            snprintf(e.message, sizeof(e.message), "unknown X-Fake-Fault value; kinds: none %s", fv_fault_list());
            fv_conn_send_error(c, &e, extra);
            return;
        }
    } else if (req.has_prompt_fault) {
        fault = req.prompt_fault;
    } else if (cfg->fault != FV_FAULT_NONE && unit_random(cfg->seed, seq, 0) < cfg->fault_rate) {
        fault = cfg->fault;
    }
    if (fault != FV_FAULT_NONE) {
        srv->st.errors_injected++;
        srv->st.faults[fault]++;
    }
    if (fault == FV_FAULT_ERROR500 || fault == FV_FAULT_ERROR429) {
        bool is500 = fault == FV_FAULT_ERROR500;
        fv_error_t e = {.status = is500 ? 500 : 429,
                        .type = is500 ? "server_error" : "rate_limit_error",
                        .code = is500 ? "internal_error" : "rate_limit_exceeded"};
        snprintf(e.message, sizeof(e.message), "fakevlm injected fault %s", fv_fault_name(fault));
        if (!is500)
            snprintf(extra, sizeof(extra), "X-Fake-Seq: %llu\r\nRetry-After: 1\r\n", (unsigned long long)seq);
        LV_INFO("%s POST /v1/chat/completions %d seq=%llu fault=%s", c->peer, e.status, (unsigned long long)seq,
                fv_fault_name(fault));
        fv_conn_send_error(c, &e, extra);
        return;
    }
    if (srv->busy >= cfg->slots && srv->n_waiting >= cfg->queue_max) {
        srv->st.rejected_queue_full++;
        fv_error_t e = {.status = 429, .type = "rate_limit_error", .code = "queue_full"};
        snprintf(e.message, sizeof(e.message), "fakevlm is at capacity: %u slots busy and %zu requests waiting",
                 cfg->slots, srv->n_waiting);
        snprintf(extra, sizeof(extra), "X-Fake-Seq: %llu\r\nRetry-After: 1\r\n", (unsigned long long)seq);
        LV_INFO("%s POST /v1/chat/completions 429 seq=%llu queue_full", c->peer, (unsigned long long)seq);
        fv_conn_send_error(c, &e, extra);
        return;
    }

    fv_job_t *j = &c->job;
    memset(j, 0, sizeof(*j));
    lv_buf_init(&j->text, FV_TEXT_MAX);
    j->seq = seq;
    snprintf(j->traceparent, sizeof(j->traceparent), "%s", r->traceparent);
    j->model = cfg->models[req.model_index];
    j->fault = fault;
    j->stream = req.stream && fault != FV_FAULT_NOSTREAM;
    j->chunked = j->stream && r->minor_version == 1;
    if (j->stream && !j->chunked)
        c->keep_alive = false; /* HTTP/1.0: the end of the stream is the end of the connection */
    j->include_usage = req.include_usage;
    j->image_bytes = req.image_bytes;
    j->width = req.width;
    j->height = req.height;
    j->prompt_tokens = req.prompt_words + (req.image_bytes + 1023) / 1024;
    j->token_ms = cfg->token_ms * (fault == FV_FAULT_SLOW ? 10u : 1u);
    j->arrived_ms = uv_now(srv->loop);
    j->created_s = lv_wall_ms() / 1000;
    int head = snprintf(j->chunk_head, sizeof(j->chunk_head),
                        "data: {\"id\":\"chatcmpl-fakevlm-%llu\",\"object\":\"chat.completion.chunk\",\"created\":%llu,"
                        "\"model\":\"%s\",\"system_fingerprint\":\"fakevlm-" FV_VERSION "\",",
                        (unsigned long long)seq, (unsigned long long)j->created_s, j->model);
    j->chunk_head_len = head > 0 ? LV_MIN((size_t)head, sizeof(j->chunk_head) - 1) : 0;
    if (fv_answer_text(&j->text, j->model, &req, seq, cfg->tokens)) {
        lv_buf_free(&j->text);
        fv_conn_send_simple_error(c, 500, "server_error", "internal_error", "answer too long");
        return;
    }
    j->words_total = LV_MAX((size_t)cfg->tokens, (size_t)FV_HEADER_WORDS);
    if (req.max_tokens > 0 && (size_t)req.max_tokens < j->words_total) {
        j->words_total = (size_t)req.max_tokens;
        j->cut = true;
    }
    if (srv->busy < cfg->slots) {
        job_start(c);
        return;
    }
    c->state = FV_CONN_WAITING;
    lv_queue_insert_tail(&srv->waiting, &c->wait_link);
    srv->n_waiting++;
    if (srv->n_waiting > srv->st.max_queued)
        srv->st.max_queued = srv->n_waiting;
}

void fv_job_abandon(fv_conn_t *c)
{
    fv_server_t *srv = c->srv;
    srv->st.client_aborts++;
    if (c->state == FV_CONN_WAITING) {
        lv_queue_remove(&c->wait_link);
        srv->n_waiting--;
        job_log(c, 499, srv->stopping ? "server_stopping" : "client_gone_waiting");
        lv_buf_free(&c->job.text);
    } else {
        job_log(c, 499, srv->stopping ? "server_stopping" : "client_gone");
        job_release(c);
    }
}

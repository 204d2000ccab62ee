/* lv_chat.c - one streamed chat/completions call, in two halves that meet in the pool's lane
 * (lv_lane.h): the main side (the pool's loop) does the backend's bookkeeping and calls the user;
 * the I/O side (the lane's loop: a thread of its own, or the same loop) runs the transfer, its
 * deadlines and the SSE parsing. The sides share only the answer text not yet taken and the
 * outcome, under the lane's lock; docs/internals/threads.md has the hand-over rules. */
#include "lv_chat.h"

#include <assert.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "lv_b64.h"
#include "lv_buf.h"
#include "lv_chatreq.h"
#include "lv_chatresp.h"
#include "lv_h1c.h"
#include "lv_common.h"
#include "lv_httpdate.h"
#include "lv_lane.h"
#include "lv_session.h"
#include "lv_sse.h"
#include "lv_utf8.h"

#define REQ_DEBUG_MAX (256 * 1024)
#define DONE_GRACE_MS 1000 /* after "[DONE]", how long the server may take to end the response */
#define ERR_DETAIL_MAX 200 /* characters of a backend's error message we repeat */

typedef enum { MODE_UNKNOWN = 0, MODE_SSE, MODE_JSON, MODE_ERROR } chat_mode_t;

struct lv_chat {
    lv_lane_item_t item;        /* crossings between the sides; refs: main side, I/O side, queues */
    lv_lane_t *lane;

    /* ---- main side: the pool's loop ---- */
    lv_pool_link_t link;        /* on the pool, so lv_pool_destroy() can cancel us */
    lv_pool_t *pool;
    lv_backend_t *b;
    lv_chat_cb_t cb;
    void *ud;
    lv_buf_t text;              /* the answer, as taken from the I/O side */
    lv_buf_t taken;             /* the last pend taken, emptied: swapped back in next time, so the
                                 * two buffers go back and forth without an allocation per turn */
    lv_buf_t req_debug;         /* built at start, read at the end */
    int inflight_at_start;      /* b->inflight right after this chat was counted (window samples) */
    int probe;                  /* holds the backend's half-open probe (lv_backend_take_probe) */
    lv_frame_t *frame;          /* the caller's frame, whose bytes the I/O side reads in place: a
                                 * reference, dropped here only (frame_let_go), since the refcount
                                 * is not atomic; NULL once dropped, or when the JPEG was copied */
    uv_thread_t main_thread;    /* the pool's loop's: chat_free drops a frame still held only there */
    unsigned awaiting_first : 1;/* counted in b->awaiting_first */
    unsigned main_done : 1;     /* finished or cancelled: the main side has let go */
    unsigned text_short : 1;    /* text taken from the I/O side could not be kept (out of memory) */

    /* ---- shared, under the lane's lock ---- */
    lv_buf_t pend;              /* answer text the main side has not taken yet */
    size_t pend_delta_len;      /* how much of pend goes out as deltas (the rest came with an
                                 * error: it completes the partial answer without a delta) */
    uint64_t pend_first_us;     /* a streamed first token's time, until taken; 0 = none */
    unsigned io_done : 1;       /* the outcome (the I/O side's fields below) is final */
    unsigned cancel_req : 1;    /* the main side asks the I/O side to drop the transfer */
    unsigned jpeg_reading : 1;  /* the I/O side is reading the frame's bytes (building the body):
                                 * the main side must not drop the frame yet */

    /* ---- I/O side: set up by the main side before the first post; after io_done the main side
     * reads the outcome fields, and the I/O side only releases curl's handles and buffers ---- */
    uv_loop_t *io_loop;
    lv_http_t *http;
    char *base_url;             /* the backend's, copied at start (the I/O side makes the handle) */
    char trace_lines[2][LV_TRACESTATE_MAX + 32]; /* traceparent / tracestate header lines, or "" */
    bool native;                /* through lv_h1c (decided at start: lv_pool_native_for) */
    lv_h1c_req_t *h1req;        /* native, while in flight */
    CURL *easy;
    struct curl_slist *headers;
    char errbuf[CURL_ERROR_SIZE];
    lv_buf_t body;              /* the request body; curl reads it in place (POSTFIELDS) */
    lv_chatreq_t req;           /* what the body is built from, on the I/O side (the base64 of a
                                 * frame is the biggest single piece of work per request): the
                                 * prompt is a copy, the JPEG a copy or a view into the frame
                                 * (jpeg_in_frame); both are let go of once the body exists */
    bool jpeg_in_frame;         /* req.jpeg points into frame->data (set before the first post) */
    char *redact_key;           /* the backend's key, to keep it out of error texts (a copy: the
                                 * I/O side never reads the backend, which the main side owns) */
    uv_timer_t timer;           /* deadlines; its close callback drops the I/O side's reference */
    lv_buf_t fresh;             /* text parsed during this curl callback, handed over at its end */
    uint64_t fresh_first_us;

    chat_mode_t mode;
    long http_status;
    lv_sse_t sse;
    lv_chatresp_t resp;
    size_t text_len;            /* answer bytes parsed so far (the cap) */
    lv_buf_t raw;               /* non-streamed or error body */
    int n_deltas;
    int has_usage, prompt_tokens, completion_tokens;
    int saw_done;
    char finish_reason[32];
    char resp_id[128];
    char resp_model[LV_BACKEND_MODEL_MAX_LEN + 1];
    char model[LV_BACKEND_MODEL_MAX_LEN + 1];
    int want_debug;

    int connect_timeout_ms, first_token_timeout_ms, total_timeout_ms;
    int stream_idle_timeout_ms; /* 0: none */
    uint64_t start_loop_ms;     /* uv_now() at start: deadlines are on the I/O loop's clock */
    uint64_t last_rx_loop_ms;   /* uv_now() when bytes last arrived (the idle deadline follows it) */
    uint64_t t_sent_us;         /* the transfer was added: TTFT and total run from here */
    uint64_t t_first_us;
    uint64_t total_us;

    int err_rc;                 /* first error wins */
    lv_backend_end_t err_end;   /* what it says about the backend */
    char err_msg[512];
    char down_why[200];         /* connect failures: the reason, for the backend's last_error */
    uint64_t retry_after_ms;    /* a 429/503 with a usable Retry-After: the pause it asked for */

    unsigned io_started : 1;    /* the timer is initialised and the transfer was added */
    unsigned in_http : 1;       /* the transfer is in lv_http */
    unsigned io_finished : 1;   /* the outcome is decided */
    unsigned io_released : 1;   /* the I/O side let go */
};

/* ---------- small helpers ---------- */

/* end: what the failure says about the backend (lv_backend_report). */
static void set_error(lv_chat_t *c, lv_backend_end_t end, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void set_error(lv_chat_t *c, lv_backend_end_t end, int rc, const char *fmt, ...)
{
    if (c->err_rc)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err_msg, sizeof c->err_msg, fmt, ap);
    va_end(ap);
    c->err_rc = rc;
    c->err_end = end;
}

/* Backends sometimes quote the key they were given in error texts: never pass it on. */
static void redact(char *s, size_t n, const char *secret)
{
    size_t sl = strlen(secret);
    char *p = s;
    if (!s || sl < 4)
        return;
    while ((size_t)(s + n - p) >= sl && (p = memmem(p, (size_t)(s + n - p), secret, sl)) != NULL) {
        memset(p, '*', sl);
        p += sl;
    }
}

/* At most ERR_DETAIL_MAX bytes of s[0..n) for a human message: the key redacted, whole UTF-8
 * characters only, control characters as spaces (messages end up in logs and the UI). */
static void excerpt(const lv_chat_t *c, char out[ERR_DETAIL_MAX + 1], const char *s, size_t n)
{
    char *tmp = malloc(n + 1);
    if (!tmp) {
        out[0] = '\0';
        return;
    }
    memcpy(tmp, s, n);
    redact(tmp, n, c->redact_key); /* before cutting, so no prefix of the key survives */
    size_t cut = lv_utf8_cut(tmp, n, ERR_DETAIL_MAX);
    for (size_t i = 0; i < cut; i++) {
        unsigned char ch = (unsigned char)tmp[i];
        out[i] = ch < 0x20 || ch == 0x7f ? ' ' : (char)ch;
    }
    out[cut] = '\0';
    free(tmp);
}

static void copy_str(char *dst, size_t size, const char *src)
{
    if (src)
        snprintf(dst, size, "%s", src);
}

static void req_copies_free(lv_chat_t *c)
{
    free((void *)c->req.prompt);
    if (!c->jpeg_in_frame)
        free((void *)c->req.jpeg);
    c->req.prompt = NULL;
    c->req.jpeg = NULL;
}

/* What the body is, from the status and the Content-Type (ct: ct_len bytes, may be NULL). */
static void decide_mode_of(lv_chat_t *c, long status, const char *ct, size_t ct_len)
{
    c->http_status = status;
    if (c->http_status < 200 || c->http_status > 299) {
        c->mode = MODE_ERROR;
        lv_buf_init(&c->raw, LV_CHAT_ERROR_BODY_MAX);
        return;
    }
    while (ct && ct_len && (*ct == ' ' || *ct == '\t')) {
        ct++;
        ct_len--;
    }
    if (ct && ct_len >= 17 && strncasecmp(ct, "text/event-stream", 17) == 0) {
        c->mode = MODE_SSE;
    } else {
        c->mode = MODE_JSON;
        lv_buf_init(&c->raw, LV_CHAT_BODY_MAX);
    }
}

static void decide_mode(lv_chat_t *c)
{
    char *ct = NULL;
    long status = 0;
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(c->easy, CURLINFO_CONTENT_TYPE, &ct);
    decide_mode_of(c, status, ct, ct ? strlen(ct) : 0);
}

/* When a silent stream counts as stalled (I/O loop clock); 0 when no idle deadline applies. The
 * deadline follows the last bytes lazily: on_write only notes the time, and the timer, when it
 * fires early, re-arms for the rest (one timer update per deadline, not per chunk). */
static uint64_t idle_deadline(const lv_chat_t *c)
{
    if (!c->t_first_us || c->saw_done || !c->stream_idle_timeout_ms)
        return 0;
    return c->last_rx_loop_ms + (uint64_t)c->stream_idle_timeout_ms;
}

/* Re-arm the deadline timer for whichever deadline comes next. */
static void on_timer(uv_timer_t *t);
static void arm_timer(lv_chat_t *c)
{
    uint64_t now = uv_now(c->io_loop);
    uint64_t deadline = c->start_loop_ms + (uint64_t)c->total_timeout_ms;
    if (!c->t_first_us) {
        uint64_t first = c->start_loop_ms + (uint64_t)c->first_token_timeout_ms;
        if (first < deadline)
            deadline = first;
    }
    uint64_t idle = idle_deadline(c);
    if (idle && idle < deadline)
        deadline = idle;
    if (c->saw_done && now + DONE_GRACE_MS < deadline)
        deadline = now + DONE_GRACE_MS;
    uv_timer_start(&c->timer, on_timer, deadline > now ? deadline - now : 0, 0);
}

/* ---------- I/O side, inside curl: parse only ---------- */

static int on_sse_data(void *ud, const char *data, size_t len)
{
    lv_chat_t *c = ud;
    lv_chatresp_t *r = &c->resp;
    int rc;
    if (c->saw_done)
        return 0; /* nothing counts after the sentinel */
    if (c->sse.event_is_error)
        rc = lv_chatresp_parse_error(r, data, len, LV_CHAT_SSE_LINE_MAX);
    else
        rc = lv_chatresp_parse_chunk(r, data, len, LV_CHAT_SSE_LINE_MAX);
    if (rc == LV_EBACKEND) {
        char ex[ERR_DETAIL_MAX + 1];
        excerpt(c, ex, r->error_message, strlen(r->error_message));
        set_error(c, LV_BACKEND_END_ERROR, LV_EBACKEND, "backend error: %s", ex);
        goto out;
    }
    if (rc) {
        set_error(c, LV_BACKEND_END_ERROR, LV_EBACKEND, "malformed stream");
        goto out;
    }
    if (r->is_done) {
        c->saw_done = 1;
        arm_timer(c); /* the server should now end the response; don't wait for it for long */
        goto out;
    }
    if (r->id && !c->resp_id[0])
        copy_str(c->resp_id, sizeof c->resp_id, r->id);
    if (r->model && !c->resp_model[0])
        copy_str(c->resp_model, sizeof c->resp_model, r->model);
    if (r->finish_reason)
        copy_str(c->finish_reason, sizeof c->finish_reason, r->finish_reason);
    if (r->has_usage) {
        c->has_usage = 1;
        c->prompt_tokens = r->prompt_tokens;
        c->completion_tokens = r->completion_tokens;
    }
    if (r->content_len) {
        if (c->text_len + r->content_len > LV_CHAT_TEXT_MAX ||
            lv_buf_append(&c->fresh, r->content, r->content_len) != 0) {
            set_error(c, LV_BACKEND_END_CLIENT, LV_EBACKEND, "answer longer than %d bytes", LV_CHAT_TEXT_MAX);
            rc = LV_ELIMIT;
            goto out;
        }
        c->text_len += r->content_len;
        c->n_deltas++;
        if (!c->t_first_us) {
            c->t_first_us = lv_now_us();
            c->fresh_first_us = c->t_first_us; /* the window hears of it as it comes */
            arm_timer(c); /* from now on the total and the stream-idle deadlines apply */
        }
    }
out:
    lv_chatresp_clear(r);
    return rc;
}

/* Give what this callback parsed to the main side: one lock and one wake-up per read, not per
 * token. final: the outcome is decided too (io_done). */
static void hand_over(lv_chat_t *c, int final)
{
    if (!final && !c->fresh.len && !c->fresh_first_us)
        return;
    lv_lane_lock(c->lane);
    size_t ok_len = c->pend.len; /* text handed over before an error goes out as deltas */
    int rc = c->fresh.len ? lv_buf_append(&c->pend, c->fresh.data, c->fresh.len) : 0;
    if (rc) /* pend holds at most the answer's cap, which text_len enforces: not expected */
        set_error(c, LV_BACKEND_END_LOCAL, LV_ENOMEM, "out of memory");
    c->pend_delta_len = c->err_rc ? ok_len : c->pend.len; /* no delta once an error is known */
    if (c->fresh_first_us)
        c->pend_first_us = c->fresh_first_us;
    if (final)
        c->io_done = 1; /* last: the outcome fields above are final before the main side looks */
    lv_lane_unlock(c->lane);
    /* the first token at once (the window and the page's time to first token); later words in
     * the lane's next batch, with every other chat's: one wake-up of the main loop per batch */
    if (final || c->fresh_first_us)
        lv_lane_post_main(c->lane, &c->item);
    else
        lv_lane_post_main_soon(c->lane, &c->item);
    lv_buf_reset(&c->fresh);
    c->fresh_first_us = 0;
}

/* Response body bytes, from either client once the mode is known: n when taken, 0 to abort the
 * transfer (curl: CURLE_WRITE_ERROR; lv_h1c: LV_H1C_EABORTED). */
static size_t body_bytes(lv_chat_t *c, const char *ptr, size_t n)
{
    if (c->io_finished || c->err_rc)
        return 0;
    c->last_rx_loop_ms = uv_now(c->io_loop);
    switch (c->mode) {
    case MODE_SSE: {
        int rc = lv_sse_feed(&c->sse, ptr, n, on_sse_data, c);
        if (rc == LV_ELIMIT && !c->err_rc)
            set_error(c, LV_BACKEND_END_ERROR, LV_EBACKEND, "stream line longer than %d bytes", LV_CHAT_SSE_LINE_MAX);
        else if (rc == LV_ENOMEM)
            set_error(c, LV_BACKEND_END_LOCAL, LV_ENOMEM, "out of memory");
        if (rc || c->err_rc)
            return 0; /* what was parsed goes with the outcome, as text but not as a delta */
        hand_over(c, 0);
        return n;
    }
    case MODE_JSON:
        if (lv_buf_append(&c->raw, ptr, n) != 0) {
            set_error(c, LV_BACKEND_END_CLIENT, LV_EBACKEND, "backend answer larger than %d bytes", LV_CHAT_BODY_MAX);
            return 0;
        }
        return n;
    case MODE_ERROR:
    default:
        /* keep the start of an error body; the rest is not needed */
        if (lv_buf_append(&c->raw, ptr, LV_MIN(n, c->raw.max - c->raw.len)) != 0)
            return 0;
        return c->raw.len < c->raw.max ? n : 0;
    }
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
    lv_chat_t *c = ud;
    if (c->io_finished || c->err_rc)
        return 0; /* aborts the transfer (CURLE_WRITE_ERROR) */
    if (c->mode == MODE_UNKNOWN)
        decide_mode(c);
    return body_bytes(c, ptr, size * nmemb);
}

/* ---------- I/O side, outside curl ---------- */

static void on_timer_closed(uv_handle_t *h)
{
    lv_chat_t *c = h->data;
    lv_lane_unref(c->lane, &c->item); /* the I/O side's reference */
}

/* The transfer leaves its client (outside that client's callbacks); its done will not come. */
static void xfer_drop(lv_chat_t *c)
{
    if (c->in_http && c->native)
        lv_h1c_cancel(c->h1req);
    else if (c->in_http)
        lv_http_remove(c->http, c->easy);
    c->in_http = 0;
    c->h1req = NULL;
}

/* The I/O side lets go: the transfer leaves lv_http, curl's handles go. The outcome fields stay
 * for the main side; the memory goes with the last reference (chat_free). */
static void io_release(lv_chat_t *c)
{
    if (c->io_released)
        return;
    c->io_released = 1;
    xfer_drop(c);
    curl_easy_cleanup(c->easy);
    c->easy = NULL;
    curl_slist_free_all(c->headers);
    c->headers = NULL;
    lv_buf_free(&c->body);
    lv_buf_free(&c->fresh);
    lv_sse_free(&c->sse);
    lv_chatresp_clear(&c->resp);
    if (c->io_started) {
        uv_timer_stop(&c->timer);
        uv_close((uv_handle_t *)&c->timer, on_timer_closed);
    } else {
        lv_lane_unref(c->lane, &c->item);
    }
}

/* The outcome is known: hand it (and the last text) to the main side once, then let go. */
static void io_finish(lv_chat_t *c)
{
    if (c->io_finished || c->io_released)
        return;
    c->io_finished = 1;
    if (c->io_started)
        uv_timer_stop(&c->timer);
    if (c->err_rc) { /* no delta after an error is known; the text is still the partial answer */
        c->fresh_first_us = 0;
    }
    c->total_us = c->t_sent_us ? lv_now_us() - c->t_sent_us : 0;
    hand_over(c, 1);
    io_release(c);
}

/* Non-streamed 2xx body: one chat.completion. */
static void finish_json(lv_chat_t *c)
{
    int rc = lv_chatresp_parse_completion(&c->resp, c->raw.data ? c->raw.data : "", c->raw.len, LV_CHAT_BODY_MAX);
    if (rc == LV_EBACKEND) {
        char ex[ERR_DETAIL_MAX + 1];
        excerpt(c, ex, c->resp.error_message, strlen(c->resp.error_message));
        set_error(c, LV_BACKEND_END_ERROR, LV_EBACKEND, "backend error: %s", ex);
        return;
    }
    if (rc) {
        set_error(c, LV_BACKEND_END_ERROR, LV_EBACKEND, "malformed response");
        return;
    }
    copy_str(c->finish_reason, sizeof c->finish_reason, c->resp.finish_reason);
    copy_str(c->resp_id, sizeof c->resp_id, c->resp.id);
    copy_str(c->resp_model, sizeof c->resp_model, c->resp.model);
    if (c->resp.has_usage) {
        c->has_usage = 1;
        c->prompt_tokens = c->resp.prompt_tokens;
        c->completion_tokens = c->resp.completion_tokens;
    }
    if (c->resp.content_len > LV_CHAT_TEXT_MAX || lv_buf_append(&c->fresh, c->resp.content, c->resp.content_len) != 0) {
        set_error(c, LV_BACKEND_END_CLIENT, LV_EBACKEND, "answer longer than %d bytes", LV_CHAT_TEXT_MAX);
        return;
    }
    c->text_len = c->resp.content_len;
    if (c->resp.content_len) {
        c->n_deltas = 1;
        c->t_first_us = lv_now_us();
    }
}

/* How long a 429 (RFC 6585 section 4) or 503 (RFC 9110 section 15.6.4) asks us to stay away:
 * its Retry-After, capped; 0 when it has none, more than one, or one that does not parse (then
 * the answer counts as any other error, as before Retry-After was read). From the head's Date
 * and Retry-After values (NULL: absent) and how many of each it had. A date is read against the
 * answer's own Date when it has one: the wait the server meant, even when its clock and ours
 * disagree. */
static uint64_t retry_after_from(const char *date, size_t date_len, int dates, const char *ra, size_t ra_len, int ras)
{
    int64_t now_s = (int64_t)time(NULL), date_s;
    uint64_t wait_ms = 0;
    if (date && dates == 1 && lv_http_date_parse(date, date_len, &date_s) == 0)
        now_s = date_s;
    if (!ra || ras != 1 || lv_retry_after_parse(ra, ra_len, now_s, LV_BACKEND_RETRY_AFTER_MAX_MS, &wait_ms) != 0)
        return 0;
    return wait_ms;
}

/* The same from curl's copy of the head. */
static uint64_t retry_after_of(lv_chat_t *c)
{
    struct curl_header *h = NULL;
    char date[64] = ""; /* an IMF date is 29 characters; a longer value does not parse anyway */
    int dates = 0;
    /* Asked first, and copied: each curl_easy_header call ends the previous answer's validity. */
    if (curl_easy_header(c->easy, "Date", 0, CURLH_HEADER, -1, &h) == CURLHE_OK) {
        dates = (int)h->amount;
        snprintf(date, sizeof date, "%s", h->value);
    }
    if (curl_easy_header(c->easy, "Retry-After", 0, CURLH_HEADER, -1, &h) != CURLHE_OK)
        return 0;
    return retry_after_from(dates ? date : NULL, strlen(date), dates, h->value, strlen(h->value), (int)h->amount);
}

/* Non-2xx: "backend returned HTTP 500: <its error message>". */
static void finish_http_error(lv_chat_t *c)
{
    char ex[ERR_DETAIL_MAX + 1] = "";
    const char *p = c->raw.data ? c->raw.data : "";
    if (lv_chatresp_parse_completion(&c->resp, p, c->raw.len, LV_CHAT_ERROR_BODY_MAX) == LV_EBACKEND)
        excerpt(c, ex, c->resp.error_message, strlen(c->resp.error_message));
    else
        excerpt(c, ex, p, c->raw.len);
    /* 4xx other than 429 are the request's fault (bad model name, key, size), not the backend's */
    long st = c->http_status;
    lv_backend_end_t end = st >= 400 && st < 500 && st != 429 ? LV_BACKEND_END_CLIENT : LV_BACKEND_END_ERROR;
    if ((st == 429 || st == 503) && !c->native) /* lv_h1c's comes with the head (on_h1_head) */
        c->retry_after_ms = retry_after_of(c);
    if (ex[0])
        set_error(c, end, LV_EBACKEND, "backend returned HTTP %ld: %s", st, ex);
    else
        set_error(c, end, LV_EBACKEND, "backend returned HTTP %ld", st);
}

/* How a transfer ended, from either client: ok, or why not (connect_failure: the backend could
 * not be reached at all; connect_timeout: within connect_timeout_ms). */
typedef struct {
    bool ok, connect_failure, connect_timeout;
    char why[200];
} xfer_end_t;

static void finish_transfer(lv_chat_t *c, const xfer_end_t *e)
{
    if (c->err_rc) {
        /* our own verdict from inside the stream (it aborted the transfer) */
    } else if (c->mode == MODE_ERROR && c->http_status > 0) {
        finish_http_error(c);
    } else if (!e->ok) {
        const char *why = e->why;
        if (c->mode == MODE_SSE && (c->saw_done || c->finish_reason[0])) {
            /* the answer was complete; only the end of the response went wrong */
        } else if (c->http_status == 0 && e->connect_failure) {
            /* the backend is marked down (breaker opened) by lv_backend_report in main_finish() */
            snprintf(c->down_why, sizeof c->down_why, "%s", why);
            if (e->connect_timeout)
                set_error(c, LV_BACKEND_END_CONNECT, LV_ETIMEDOUT, "cannot reach backend: no connection within %d ms",
                          c->connect_timeout_ms);
            else
                set_error(c, LV_BACKEND_END_CONNECT, LV_EBACKEND, "cannot reach backend: %s", why);
        } else {
            set_error(c, LV_BACKEND_END_ERROR, LV_EBACKEND, "backend connection failed: %s", why);
        }
    } else if (c->mode == MODE_SSE) {
        int rc = lv_sse_finish(&c->sse, on_sse_data, c);
        if (rc && !c->err_rc)
            set_error(c, LV_BACKEND_END_ERROR, LV_EBACKEND, "malformed stream");
        if (!c->err_rc && !c->saw_done && !c->finish_reason[0])
            set_error(c, LV_BACKEND_END_ERROR, LV_EBACKEND, "stream ended before the answer was complete");
    } else if (c->mode == MODE_JSON) {
        finish_json(c);
    } else {
        set_error(c, LV_BACKEND_END_ERROR, LV_EBACKEND, "empty answer from backend");
    }
    io_finish(c);
}

static void on_http_done(void *ud, CURL *easy, CURLcode crc)
{
    lv_chat_t *c = ud;
    c->in_http = 0;
    if (c->mode == MODE_UNKNOWN)
        decide_mode(c); /* no body arrived */
    xfer_end_t e = {.ok = crc == CURLE_OK,
                    .connect_failure = lv_http_is_connect_failure(crc) != 0,
                    .connect_timeout = crc == CURLE_OPERATION_TIMEDOUT};
    if (!e.ok)
        lv_http_describe(easy, crc, c->errbuf, e.why, sizeof e.why);
    finish_transfer(c, &e);
}

/* ---------- I/O side, the built-in client (lv_h1c) ---------- */

static int on_h1_head(void *ud, const lv_h1resp_t *head)
{
    lv_chat_t *c = ud;
    size_t ct_len = 0;
    const char *ct = lv_h1resp_header(head, "Content-Type", &ct_len, NULL);
    decide_mode_of(c, head->status, ct, ct_len);
    if (head->status == 429 || head->status == 503) {
        size_t dl = 0, rl = 0;
        int dn = 0, rn = 0;
        const char *d = lv_h1resp_header(head, "Date", &dl, &dn);
        const char *r = lv_h1resp_header(head, "Retry-After", &rl, &rn);
        c->retry_after_ms = retry_after_from(d, dl, dn, r, rl, rn);
    }
    return 0;
}

static int on_h1_body(void *ud, const char *data, size_t len)
{
    lv_chat_t *c = ud;
    return body_bytes(c, data, len) == len ? 0 : 1;
}

static void on_h1_done(void *ud, const lv_h1c_result_t *res, const lv_h1resp_t *head)
{
    lv_chat_t *c = ud;
    c->in_http = 0;
    c->h1req = NULL; /* freed by lv_h1c after this returns */
    if (c->mode == MODE_UNKNOWN) {
        if (head && head->head_done)
            on_h1_head(c, head); /* a head without a body */
        else
            c->http_status = 0;
    }
    xfer_end_t e = {.ok = res->end == LV_H1C_OK,
                    .connect_failure = res->connect_failure,
                    .connect_timeout = res->end == LV_H1C_ECONNECT_TIMEOUT};
    if (!e.ok)
        snprintf(e.why, sizeof e.why, "%s", res->why);
    finish_transfer(c, &e);
}

/* Start the request on lv_h1c. 0, LV_EINVAL (the URL does not fit it), LV_ENOMEM. */
static int start_native(lv_chat_t *c)
{
    static const char *const fixed[] = {"Content-Type: application/json", "Accept: text/event-stream"};
    static const lv_h1c_cb_t cb = {.on_head = on_h1_head, .on_body = on_h1_body, .on_done = on_h1_done};
    char full[LV_BACKEND_URL_MAX_LEN + 32];
    char auth[LV_BACKEND_KEY_MAX_LEN + 32];
    const char *lines[LV_ARRAY_LEN(fixed) + 1 + LV_ARRAY_LEN(c->trace_lines)];
    size_t n = 0;
    lv_h1c_url_t url;
    int rc = LV_EINVAL;
    if (snprintf(full, sizeof full, "%s/chat/completions", c->base_url) >= (int)sizeof full ||
        lv_h1c_url_parse(full, &url) != 0)
        return rc;
    for (size_t i = 0; i < LV_ARRAY_LEN(fixed); i++)
        lines[n++] = fixed[i];
    auth[0] = '\0';
    if (c->redact_key && c->redact_key[0]) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", c->redact_key);
        lines[n++] = auth;
    }
    for (size_t i = 0; i < LV_ARRAY_LEN(c->trace_lines); i++)
        if (c->trace_lines[i][0])
            lines[n++] = c->trace_lines[i];
    lv_h1c_post_t post = {.url = &url, .headers = lines, .n_headers = n, .body = c->body.data,
                          .body_len = c->body.len, .connect_timeout_ms = c->connect_timeout_ms};
    lv_h1c_t *h1c = lv_lane_io_h1c(c->lane);
    rc = h1c ? lv_h1c_post(h1c, &post, &cb, c, &c->h1req) : LV_EINVAL;
    explicit_bzero(auth, sizeof auth); /* lv_h1c copied the lines */
    return rc;
}

static void on_timer(uv_timer_t *t)
{
    lv_chat_t *c = t->data;
    if (c->io_finished || c->io_released)
        return;
    uint64_t now = uv_now(c->io_loop);
    uint64_t total_due = c->start_loop_ms + (uint64_t)c->total_timeout_ms;
    uint64_t idle_due = c->err_rc ? 0 : idle_deadline(c);
    if (idle_due > now && total_due > now) {
        arm_timer(c); /* bytes came since the timer was set: the stream is alive */
        return;
    }
    xfer_drop(c); /* the timer runs outside either client's callbacks */
    if (c->err_rc) {
        /* keep it */
    } else if (c->saw_done) {
        /* complete answer; the server just did not end the response */
    } else if (!c->t_first_us && now < total_due) {
        set_error(c, LV_BACKEND_END_TIMEOUT, LV_ETIMEDOUT, "no first token within %d ms", c->first_token_timeout_ms);
    } else if (idle_due && now < total_due) {
        set_error(c, LV_BACKEND_END_TIMEOUT, LV_ETIMEDOUT,
                  "the stream stalled: no data for %d ms after the first token", c->stream_idle_timeout_ms);
    } else {
        set_error(c, LV_BACKEND_END_TIMEOUT, LV_ETIMEDOUT, "answer not complete within %d ms", c->total_timeout_ms);
    }
    io_finish(c);
}

static int make_easy(lv_chat_t *c);

/* The I/O side's turn: start the transfer, or drop it when the main side cancelled. */
static void io_turn(lv_lane_item_t *it)
{
    lv_chat_t *c = LV_CONTAINER_OF(it, lv_chat_t, item);
    lv_lane_lock(c->lane);
    int cancel = c->cancel_req;
    bool build = !cancel && !c->io_released && !c->io_started;
    if (build && c->jpeg_in_frame)
        c->jpeg_reading = 1; /* with the cancel check, so a cancel either sees it or stops us */
    lv_lane_unlock(c->lane);
    if (c->io_released)
        return;
    if (cancel) {
        io_release(c);
        return;
    }
    if (c->io_started)
        return;
    /* an exact upper bound, so the cap only guards against arithmetic slips */
    lv_buf_init(&c->body, lv_b64_encoded_len(c->req.jpeg_len) + 6 * (strlen(c->model) + strlen(c->req.prompt)) + 1024);
    int rc = lv_chatreq_build(&c->body, &c->req);
    req_copies_free(c);
    if (c->jpeg_in_frame) {
        /* the last read of the frame's bytes: retries and rewinds resend the body. A cancel that
         * came meanwhile left the frame to the main side's next turn */
        lv_lane_lock(c->lane);
        c->jpeg_reading = 0;
        bool tell_main = c->cancel_req;
        lv_lane_unlock(c->lane);
        if (tell_main)
            lv_lane_post_main(c->lane, &c->item);
    }
    if (rc) {
        set_error(c, LV_BACKEND_END_LOCAL, rc, "could not build the request (%s)", lv_strerror(rc));
        io_finish(c);
        return;
    }
    if (!c->native && make_easy(c) != 0) {
        set_error(c, LV_BACKEND_END_LOCAL, LV_ENOMEM, "could not start the request (out of memory)");
        io_finish(c);
        return;
    }
    if (uv_timer_init(c->io_loop, &c->timer) != 0) {
        set_error(c, LV_BACKEND_END_LOCAL, LV_EIO, "could not start the request");
        io_finish(c);
        return;
    }
    c->timer.data = c;
    c->io_started = 1;
    if (c->native) {
        if ((rc = start_native(c)) != 0) {
            set_error(c, LV_BACKEND_END_LOCAL, rc, "could not start the request (%s)", lv_strerror(rc));
            io_finish(c);
            return;
        }
    } else if (lv_http_add(c->http, c->easy, on_http_done, c) != 0) {
        set_error(c, LV_BACKEND_END_LOCAL, LV_EIO, "could not start the request");
        io_finish(c);
        return;
    }
    c->in_http = 1;
    /* times run from here, when the request went out: the lane's queue and the body's base64
     * are the gateway's time, not the backend's (the window must not read them as a queue
     * inside the backend) */
    uv_update_time(c->io_loop);
    c->t_sent_us = lv_now_us();
    c->start_loop_ms = uv_now(c->io_loop);
    c->last_rx_loop_ms = c->start_loop_ms;
    arm_timer(c);
}

/* ---------- main side ---------- */

/* The request is no longer waiting for its first token: out of b->awaiting_first. The window
 * hears of the token (its TTFT, from when the request went out) only when it really came; not
 * for an error or a cancel. */
static void first_token_seen(lv_chat_t *c, bool came, uint64_t ttft_us)
{
    if (!c->awaiting_first)
        return;
    c->awaiting_first = 0;
    if (came)
        lv_backend_first_token(c->b, ttft_us);
    else if (c->b->awaiting_first > 0)
        c->b->awaiting_first--;
}

/* Main side: drop the frame's reference. Only once the I/O side is not reading its bytes (it has
 * built the body, or will never start): the caller may already have dropped its own. */
static void frame_let_go(lv_chat_t *c)
{
    lv_frame_unref(c->frame);
    c->frame = NULL;
}

static void chat_free(lv_lane_item_t *it)
{
    lv_chat_t *c = LV_CONTAINER_OF(it, lv_chat_t, item);
    if (c->frame) {
        /* still held only when the start failed, or when the lane was destroyed before the main
         * side's turn after a cancel ran (lv_lane_destroy drops that post on the pool's loop,
         * after the I/O thread has ended): either way on the pool's loop, as the refcount needs */
        uv_thread_t self = uv_thread_self();
        assert(uv_thread_equal(&self, &c->main_thread));
        frame_let_go(c);
    }
    if (c->easy) /* made, and the I/O side did not get to release it (start failed after) */
        curl_easy_cleanup(c->easy);
    curl_slist_free_all(c->headers);
    lv_buf_free(&c->body);
    req_copies_free(c);
    lv_buf_free(&c->fresh);
    lv_sse_free(&c->sse);
    lv_chatresp_clear(&c->resp);
    lv_buf_free(&c->text);
    lv_buf_free(&c->pend);
    lv_buf_free(&c->taken);
    lv_buf_free(&c->raw);
    lv_buf_free(&c->req_debug);
    free(c->base_url);
    if (c->redact_key) {
        explicit_bzero(c->redact_key, strlen(c->redact_key));
        free(c->redact_key);
    }
    free(c);
}

/* Valid JSON text for the debug view from an arbitrary body: the body itself when it parses,
 * otherwise {"http_status":N,"body":"<start of the body, as text>"}. Caller frees. */
static char *debug_from_raw(const lv_chat_t *c)
{
    json_error_t jerr;
    const char *p = c->raw.data ? c->raw.data : "";
    json_t *j = json_loadb(p, c->raw.len, 0, &jerr);
    if (j) {
        json_decref(j);
        return strndup(p, c->raw.len);
    }
    char ex[2048];
    size_t n = LV_MIN(c->raw.len, sizeof ex - 1);
    for (size_t i = 0; i < n; i++) { /* ASCII only: the body may not even be UTF-8 */
        unsigned char ch = (unsigned char)p[i];
        ex[i] = ch >= 0x20 && ch < 0x7f ? (char)ch : ch == '\n' ? '\n' : '?';
    }
    ex[n] = '\0';
    j = json_pack("{s:i,s:s}", "http_status", (int)c->http_status, "body", ex);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return s;
}

/* A chat.completion-like object rebuilt from a stream. Caller frees. */
static char *debug_from_stream(const lv_chat_t *c)
{
    json_t *msg = json_pack("{s:s,s:s%}", "role", "assistant", "content", c->text.data ? c->text.data : "",
                            c->text.len);
    json_t *choice = json_pack("{s:i,s:o,s:s*}", "index", 0, "message", msg, "finish_reason",
                               c->finish_reason[0] ? c->finish_reason : NULL);
    json_t *root = json_pack("{s:s,s:s,s:s,s:[o]}", "id", c->resp_id, "object", "chat.completion", "model",
                             c->resp_model[0] ? c->resp_model : c->model, "choices", choice);
    char *s = NULL;
    if (!root)
        goto out;
    if (c->has_usage) {
        json_t *u = json_pack("{s:i,s:i,s:i}", "prompt_tokens", c->prompt_tokens, "completion_tokens",
                              c->completion_tokens, "total_tokens", c->prompt_tokens + c->completion_tokens);
        if (u)
            json_object_set_new(root, "usage", u);
    }
    s = json_dumps(root, JSON_COMPACT);
out:
    json_decref(root);
    return s;
}

/* The outcome came: the pool learns it, then the user; the main side lets go. */
static void main_finish(lv_chat_t *c)
{
    char *resp_debug = NULL;
    c->main_done = 1;
    frame_let_go(c); /* io_done: the body was built (or never will be) before the outcome */
    first_token_seen(c, false, 0);
    if (c->b->inflight > 0)
        c->b->inflight--;
    lv_pool_link_remove(&c->link); /* a pool destroyed from on_done must not cancel us */
    uint64_t ttft_us = c->t_first_us ? c->t_first_us - c->t_sent_us : 0;
    /* the pool learns the outcome first, so a retry from on_done sees the backend's new state */
    lv_backend_report_t rep = {
        .end = c->err_rc ? c->err_end : LV_BACKEND_END_OK,
        .probe = c->probe,
        .streamed = c->mode == MODE_SSE,
        .ttft_us = ttft_us,
        .total_us = c->total_us,
        .tokens = c->completion_tokens,
        .inflight_at_start = c->inflight_at_start,
        .timed_out_connect = c->err_end == LV_BACKEND_END_CONNECT && c->err_rc == LV_ETIMEDOUT,
        .why = c->err_end == LV_BACKEND_END_CONNECT ? c->down_why : c->err_msg,
        .retry_after_ms = c->retry_after_ms,
    };
    lv_backend_report(c->b, &rep);

    lv_chat_result_t res;
    memset(&res, 0, sizeof res);
    res.rc = c->err_rc ? c->err_rc : c->text_short ? LV_ENOMEM : 0;
    if (res.rc) {
        res.error_code = res.rc == LV_ETIMEDOUT ? "backend_timeout" : "backend_error";
        res.error_message = c->err_rc ? c->err_msg : "out of memory";
    }
    res.http_status = (int)c->http_status;
    res.text = c->text.data ? c->text.data : "";
    res.text_len = c->text.len;
    res.prompt_tokens = c->prompt_tokens;
    res.completion_tokens = c->completion_tokens;
    res.n_deltas = c->n_deltas;
    res.ttft_us = ttft_us;
    res.total_us = c->total_us;
    res.streamed = c->mode == MODE_SSE;
    res.finish_reason = c->finish_reason[0] ? c->finish_reason : NULL;
    res.retry_after_ms = c->retry_after_ms;
    if (c->want_debug) {
        res.request_debug_json = c->req_debug.data;
        if (c->mode == MODE_SSE && !c->err_rc)
            resp_debug = debug_from_stream(c);
        else if (c->raw.len)
            resp_debug = debug_from_raw(c);
        else if (c->mode == MODE_SSE)
            resp_debug = debug_from_stream(c);
        if (resp_debug)
            redact(resp_debug, strlen(resp_debug), c->redact_key);
        res.response_debug_json = resp_debug;
    }
    c->cb.on_done(c->ud, &res);
    free(resp_debug);
    lv_lane_unref(c->lane, &c->item); /* the main side's reference */
}

/* The main side's turn: take the text and the first token the I/O side handed over, then the
 * outcome when it is final. */
static void main_turn(lv_lane_item_t *it)
{
    lv_chat_t *c = LV_CONTAINER_OF(it, lv_chat_t, item);
    if (c->main_done) { /* cancelled: nothing more reaches the user */
        if (c->frame) { /* the cancel came while the I/O side read it; it posted us when done */
            lv_lane_lock(c->lane);
            bool reading = c->jpeg_reading;
            lv_lane_unlock(c->lane);
            if (!reading)
                frame_let_go(c);
        }
        return;
    }
    lv_lane_lock(c->lane);
    lv_buf_t got = c->pend;
    c->pend = c->taken;
    size_t delta_len = c->pend_delta_len;
    c->pend_delta_len = 0;
    uint64_t first_us = c->pend_first_us;
    c->pend_first_us = 0;
    int done = c->io_done;
    uint64_t sent_us = c->t_sent_us;
    lv_lane_unlock(c->lane);
    if (first_us)
        first_token_seen(c, true, first_us - sent_us);
    if (got.len) {
        size_t from = c->text.len;
        /* within the cap the I/O side keeps; after an error the rest of the text still completes
         * the partial answer, without a delta */
        if (lv_buf_append(&c->text, got.data, got.len) != 0)
            c->text_short = 1; /* the outcome says so: the answer is not whole */
        else if (c->cb.on_delta && delta_len)
            c->cb.on_delta(c->ud, c->text.data + from, delta_len);
    }
    lv_buf_reset(&got);
    c->taken = got; /* the I/O side no longer sees it until the next swap */
    if (done && !c->main_done)
        main_finish(c);
}

static void on_pool_cancel(lv_pool_link_t *l)
{
    lv_chat_cancel(LV_CONTAINER_OF(l, lv_chat_t, link));
}

void lv_chat_cancel(lv_chat_t *c)
{
    if (!c || c->main_done)
        return;
    c->main_done = 1;
    lv_pool_link_remove(&c->link);
    first_token_seen(c, false, 0);
    if (c->b->inflight > 0)
        c->b->inflight--;
    lv_backend_report_t rep = {.end = LV_BACKEND_END_CANCEL, .probe = c->probe};
    lv_backend_report(c->b, &rep); /* gives back a half-open probe */
    lv_lane_lock(c->lane);
    c->cancel_req = 1;
    bool reading = c->jpeg_reading;
    lv_lane_unlock(c->lane);
    if (!reading) /* not started (it will see cancel_req and not read) or done with the bytes */
        frame_let_go(c);
    lv_lane_post_io(c->lane, &c->item); /* the transfer is dropped on the I/O side's next turn */
    lv_lane_unref(c->lane, &c->item);   /* the main side's reference */
}

static int timeout_or(int v, int dflt) { return v > 0 ? v : dflt; }

/* W3C Trace Context: this request is a new span (a child of the session's trace, whose parent the
 * backend cannot know); the caller's tracestate goes along unchanged. Written on the main side
 * (the span id comes from its random source), added to the request by the I/O side. */
static int trace_lines(lv_chat_t *c, const lv_trace_t *t)
{
    char span[LV_SPAN_ID_HEX + 1];
    if (!t || !lv_trace_id_valid(t->trace_id, strnlen(t->trace_id, sizeof(t->trace_id)), LV_TRACE_ID_HEX))
        return 0;
    int rc = lv_trace_new_id(span, sizeof(span), LV_SPAN_ID_HEX);
    if (rc)
        return rc;
    memcpy(c->trace_lines[0], "traceparent: ", 13);
    char *tp = c->trace_lines[0] + 13;
    if ((rc = lv_traceparent_format(t->trace_id, span, 0x01, tp, sizeof(c->trace_lines[0]) - 13)) != 0)
        return rc;
    size_t n = strnlen(t->state, sizeof(t->state));
    if (lv_tracestate_ok(t->state, n)) /* else none, or not one to put in a header line */
        snprintf(c->trace_lines[1], sizeof(c->trace_lines[1]), "tracestate: %s", t->state);
    return 0;
}

/* The I/O side makes the curl handle: its allocations (curl's, the header list's) and the option
 * calls were a quarter of the main loop's heap calls per frame. 0 or LV_ENOMEM. */
static int make_easy(lv_chat_t *c)
{
    static const char *const hdrs[] = {"Content-Type: application/json", "Accept: text/event-stream",
                                       "Expect:" /* no 100-continue round trip for big bodies */};
    c->easy = lv_backend_easy_new(c->base_url, c->redact_key, "/chat/completions", &c->headers, c->errbuf);
    if (!c->easy)
        return LV_ENOMEM;
    for (size_t i = 0; i < LV_ARRAY_LEN(hdrs) + LV_ARRAY_LEN(c->trace_lines); i++) {
        const char *h = i < LV_ARRAY_LEN(hdrs) ? hdrs[i] : c->trace_lines[i - LV_ARRAY_LEN(hdrs)];
        if (!h[0])
            continue;
        struct curl_slist *nl = curl_slist_append(c->headers, h);
        if (!nl)
            return LV_ENOMEM;
        c->headers = nl;
    }
    curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, c->headers);
    curl_easy_setopt(c->easy, CURLOPT_POST, 1L);
    curl_easy_setopt(c->easy, CURLOPT_POSTFIELDS, c->body.data);
    curl_easy_setopt(c->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)c->body.len);
    curl_easy_setopt(c->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)c->connect_timeout_ms);
    curl_easy_setopt(c->easy, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(c->easy, CURLOPT_WRITEDATA, c);
    return 0;
}

int lv_chat_start(lv_pool_t *pool, lv_backend_t *b, const lv_chat_req_t *req, const lv_chat_cb_t *cb,
                  void *ud, lv_chat_t **out)
{
    int rc = LV_EINVAL;
    lv_chat_t *c = NULL;
    if (!pool || !b || !req || !cb || !cb->on_done || !req->model || !req->prompt ||
        (req->frame && (req->jpeg || req->jpeg_len)))
        goto out;
    size_t model_len = strlen(req->model);
    if (model_len == 0 || model_len > LV_BACKEND_MODEL_MAX_LEN)
        goto out;
    rc = LV_ENOMEM;
    c = calloc(1, sizeof *c);
    if (!c)
        goto out;
    c->lane = lv_pool_lane(pool);
    lv_lane_item_init(c->lane, &c->item, 2, io_turn, main_turn, chat_free); /* the main and the I/O side */
    c->pool = pool;
    c->io_loop = lv_lane_io_loop(c->lane);
    c->http = lv_lane_io_http(c->lane);
    c->b = b;
    c->cb = *cb;
    c->ud = ud;
    c->main_thread = uv_thread_self();
    c->want_debug = req->want_debug != 0;
    memcpy(c->model, req->model, model_len + 1);
    lv_queue_init(&c->link.node);
    lv_sse_init(&c->sse, LV_CHAT_SSE_LINE_MAX);
    lv_chatresp_init(&c->resp);
    lv_buf_init(&c->text, LV_CHAT_TEXT_MAX);
    lv_buf_init(&c->pend, LV_CHAT_TEXT_MAX);
    lv_buf_init(&c->taken, LV_CHAT_TEXT_MAX);
    lv_buf_init(&c->fresh, LV_CHAT_TEXT_MAX);
    lv_buf_init(&c->raw, LV_CHAT_BODY_MAX);
    c->connect_timeout_ms = timeout_or(req->connect_timeout_ms, LV_CHAT_DEFAULT_CONNECT_MS);
    c->first_token_timeout_ms = timeout_or(req->first_token_timeout_ms, LV_CHAT_DEFAULT_FIRST_TOKEN_MS);
    c->total_timeout_ms = timeout_or(req->total_timeout_ms, LV_CHAT_DEFAULT_TOTAL_MS);
    c->stream_idle_timeout_ms = req->stream_idle_timeout_ms < 0    ? 0
                                : req->stream_idle_timeout_ms == 0 ? LV_CHAT_DEFAULT_STREAM_IDLE_MS
                                                                   : req->stream_idle_timeout_ms;
    if (!(c->redact_key = strdup(b->api_key)))
        goto out;

    /* the body is built on the I/O side (io_turn); what lv_chatreq_build would refuse is
     * refused here, so a bad request still fails at once */
    rc = LV_EINVAL;
    if (!lv_utf8_valid(req->model, model_len) || !lv_utf8_valid(req->prompt, strlen(req->prompt)) ||
        !isfinite(req->temperature) || req->temperature < 0 || req->temperature > 100)
        goto out;
    rc = LV_ENOMEM;
    /* a frame is read in place by the I/O side (lv_chat.h says how long it is held); plain bytes
     * are copied, since the caller may free them on return */
    const void *jpeg = req->frame ? req->frame->data : req->jpeg;
    size_t jpeg_len = req->frame ? req->frame->len : req->jpeg ? req->jpeg_len : 0;
    if (req->frame && jpeg_len) {
        c->frame = lv_frame_ref(req->frame);
        c->jpeg_in_frame = true;
    }
    lv_chatreq_t cr = {.model = c->model, .prompt = strdup(req->prompt), .max_tokens = req->max_tokens,
                       .temperature = req->temperature,
                       .jpeg = c->jpeg_in_frame ? jpeg : jpeg_len ? malloc(jpeg_len) : NULL,
                       .jpeg_len = jpeg_len, .stream = 1, .include_usage = 1};
    c->req = cr;
    if (!cr.prompt || (jpeg_len && !cr.jpeg))
        goto out;
    if (jpeg_len && !c->jpeg_in_frame)
        memcpy((void *)cr.jpeg, jpeg, jpeg_len);
    cr.jpeg = jpeg; /* the debug view reads the caller's, now */
    if (c->want_debug) {
        lv_buf_init(&c->req_debug, REQ_DEBUG_MAX);
        if ((rc = lv_chatreq_build_debug(&c->req_debug, &cr)) != 0)
            goto out;
    }

    rc = LV_ENOMEM;
    if (!(c->base_url = strdup(b->base_url)))
        goto out;
    c->native = lv_pool_native_for(pool, b);
    if ((rc = trace_lines(c, req->trace)) != 0)
        goto out;

    lv_pool_link_add(pool, &c->link, on_pool_cancel);
    b->inflight++;
    b->awaiting_first++;
    c->awaiting_first = 1;
    c->inflight_at_start = b->inflight;
    c->probe = lv_backend_take_probe(b);
    /* from here the I/O side owns the transfer's fields: it adds the transfer on its next turn
     * (a start it cannot make comes back as an error outcome) */
    lv_lane_post_io(c->lane, &c->item);
    if (out)
        *out = c;
    return 0;
out:
    if (b && lv_backend_take_probe(b)) { /* the probe resolve handed out is not used: give it back */
        lv_backend_report_t rep = {.end = LV_BACKEND_END_CANCEL, .probe = 1};
        lv_backend_report(b, &rep);
    }
    if (c)
        lv_lane_item_drop(c->lane, &c->item); /* never posted: it goes at once */
    return rc;
}

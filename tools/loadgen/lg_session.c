/* lg_session.c - one simulated camera page: upgrade, hello, start, a frame per credit, and the
 * bookkeeping that turns the server's messages into latencies (docs/protocol.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "lg.h"
#include "lv_common.h"
#include "lv_frame.h"
#include "lv_rand.h"

static void on_open(lg_conn_t *c);
static void on_data(lg_conn_t *c, const char *p, size_t n);
static void on_closed(lg_conn_t *c);
static const lg_conn_cb_t CONN_CB = {on_open, on_data, on_closed};

static void random_key(lg_run_t *r, unsigned char key[4])
{
    uint64_t x = lg_rng_next(&r->rng);
    memcpy(key, &x, 4);
}

/* A small control or text message (hello, start, close, pong): rare, so a malloc is fine. */
static int send_small(lg_sess_t *s, int opcode, const void *p, size_t n)
{
    lv_buf_t b;
    unsigned char key[4];
    lv_buf_init(&b, n + LG_WS_MAX_HDR);
    random_key(s->run, key);
    int rc = lg_ws_append_frame(&b, opcode, p, n, key);
    if (!rc)
        rc = lg_conn_send(&s->conn, b.data, b.len);
    lv_buf_free(&b);
    return rc;
}

static int send_close(lg_sess_t *s, unsigned code)
{
    unsigned char p[2] = {(unsigned char)(code >> 8), (unsigned char)code};
    return send_small(s, LG_WS_CLOSE, p, sizeof(p));
}

static double elapsed_ms(uint64_t from_us, uint64_t to_us)
{
    return to_us > from_us ? (double)(to_us - from_us) / 1000.0 : 0.0;
}

void lg_session_fail(lg_sess_t *s, const char *reason)
{
    lg_run_t *r = s->run;
    if (!s->failed) {
        s->failed = true;
        if (!s->connected) {
            r->n_failed++;
            lg_counters_add(&r->fail_reasons, reason, strlen(reason));
        } else if (!r->stopping) {
            r->lost_after_ready++;
            lg_counters_add(&r->lost_reasons, reason, strlen(reason));
        }
    }
    if (s->state == LG_S_READY)
        r->ready_now--;
    if (s->state < LG_S_CLOSING)
        s->state = LG_S_CLOSING;
    /* reason may live on the caller's stack: it is counted above, the connection only keeps a
     * static marker */
    lg_conn_close(&s->conn, "session failed");
}

void lg_session_launch(lg_sess_t *s)
{
    lg_run_t *r = s->run;
    s->state = LG_S_CONNECTING;
    s->launch_us = lv_now_us();
    r->launched++;
    lv_buf_init(&s->http, LG_WS_HTTP_MAX);
    lg_ws_rx_init(&s->rx, LG_MAX_MSG);
    const struct sockaddr *src = r->o->bind_src ? (const struct sockaddr *)&s->src : NULL;
    if (lg_conn_start(&s->conn, r->loop, (const struct sockaddr *)&r->dst, src, r->tls, r->sni, &CONN_CB, s)) {
        s->failed = true;
        r->n_failed++;
        lg_counters_add(&r->fail_reasons, s->conn.fail, strlen(s->conn.fail));
        s->state = LG_S_DONE;
        lv_buf_free(&s->http);
        lg_ws_rx_free(&s->rx);
        return;
    }
    r->open_conns++;
}

void lg_session_shutdown(lg_sess_t *s)
{
    switch (s->state) {
    case LG_S_CONNECTING:
    case LG_S_UPGRADE:
        s->state = LG_S_CLOSING;
        lg_conn_close(&s->conn, NULL);
        break;
    case LG_S_HELLO:
    case LG_S_READY:
        if (s->state == LG_S_READY)
            s->run->ready_now--;
        s->state = LG_S_CLOSING;
        /* RFC 6455 7.1.2: send close, then wait for the server's close (or the grace timer) */
        send_close(s, 1000);
        break;
    default:
        break;
    }
}

static void on_open(lg_conn_t *c)
{
    lg_sess_t *s = c->data;
    lg_run_t *r = s->run;
    unsigned char rnd[16];
    lv_buf_t req;
    if (lv_rand_bytes(rnd, sizeof(rnd))) {
        lg_session_fail(s, "no randomness");
        return;
    }
    lg_ws_make_key(rnd, s->ws_key);
    lv_buf_init(&req, 4096);
    if (lg_ws_upgrade_request(&req, r->o->host_hdr, r->o->path, r->o->have_token ? r->o->token : NULL,
                              s->ws_key)) {
        lv_buf_free(&req);
        lg_session_fail(s, "upgrade request too long");
        return;
    }
    s->state = LG_S_UPGRADE;
    lg_conn_send(c, req.data, req.len);
    lv_buf_free(&req);
}

static void send_hello(lg_sess_t *s)
{
    lg_run_t *r = s->run;
    const lg_opts_t *o = r->o;
    char prompt[4096];
    if (o->same_prompt)
        snprintf(prompt, sizeof(prompt), "%s", o->prompt);
    else
        snprintf(prompt, sizeof(prompt), "%s [lg u%u s%u]", o->prompt, s->user, s->idx);

    /* fakevlm answers "... prompt=<first 8 hex digits of SHA-256(prompt)> ..." */
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    s->prompt_sha8[0] = '\0';
    if (EVP_Digest(prompt, strlen(prompt), md, &md_len, EVP_sha256(), NULL) && md_len >= 4) {
        static const char hex[] = "0123456789abcdef";
        for (int i = 0; i < 4; i++) {
            s->prompt_sha8[2 * i] = hex[md[i] >> 4];
            s->prompt_sha8[2 * i + 1] = hex[md[i] & 15];
        }
        s->prompt_sha8[8] = '\0';
    }

    json_t *set = json_object();
    json_object_set_new(set, "prompt", json_string(prompt));
    json_object_set_new(set, "interval_ms", json_integer(o->interval_ms));
    json_object_set_new(set, "stats_interval_ms", json_integer(o->stats_interval_ms));
    if (o->max_tokens > 0)
        json_object_set_new(set, "max_tokens", json_integer(o->max_tokens));
    if (o->model)
        json_object_set_new(set, "model", json_string(o->model));
    if (o->backend)
        json_object_set_new(set, "backend", json_string(o->backend));
    if (o->source)
        json_object_set_new(set, "source", json_string(o->source));
    json_t *hello = json_pack("{s:s, s:o}", "type", "hello", "settings", set);
    char *text = hello ? json_dumps(hello, JSON_COMPACT) : NULL;
    json_decref(hello);
    if (!text) {
        lg_session_fail(s, "hello encoding failed");
        return;
    }
    s->state = LG_S_HELLO;
    send_small(s, LG_WS_TEXT, text, strlen(text));
    free(text);
}

/* ---------- frames ---------- */

static void send_frame(lg_sess_t *s, uint32_t credit_id)
{
    lg_run_t *r = s->run;
    const lg_jpeg_t *j = &r->jpegs[s->jpeg_next++ % r->o->n_jpegs];
    size_t plen = LV_FRAME_HDR_LEN + j->len;
    if (r->o->push_fps > 0 && lg_conn_backlog(&s->conn) > 2 * plen) {
        r->frames_skipped++; /* the socket is not keeping up: drop like a page would */
        return;
    }
    unsigned char key[4];
    unsigned char hdr[LV_FRAME_HDR_LEN];
    random_key(r, key);
    /* RFC 6455 5.3: every client frame is masked with a fresh key, so the bytes on the wire differ
     * per frame; masking straight from the shared JPEG into the scratch buffer is the only copy. */
    size_t h = lg_ws_frame_header(r->scratch, LG_WS_BINARY, plen, key);
    lv_frame_encode_header(hdr, credit_id, 0);
    lg_ws_mask(r->scratch + h, hdr, LV_FRAME_HDR_LEN, key, 0);
    lg_ws_mask(r->scratch + h + LV_FRAME_HDR_LEN, j->data, j->len, key, LV_FRAME_HDR_LEN);
    uint64_t now = lv_now_us();
    if (lg_conn_send(&s->conn, r->scratch, h + plen))
        return; /* the connection is closing; on_closed accounts for it */
    if (s->sent_n == LG_SENT_RING) {
        s->sent_head = (uint8_t)((s->sent_head + 1) % LG_SENT_RING);
        s->sent_n--;
    }
    s->sent_us[(s->sent_head + s->sent_n) % LG_SENT_RING] = now;
    s->sent_n++;
    r->frames_total++;
    if (r->measuring) {
        r->w_frames++;
        r->w_bytes_out += h + plen;
        s->w_frames++;
        r->users[s->user].w_frames++;
    }
}

void lg_session_push(lg_sess_t *s, uint64_t now_us)
{
    uint64_t period = (uint64_t)(1e6 / s->run->o->push_fps);
    send_frame(s, 0);
    s->next_push_us += period;
    if (s->next_push_us < now_us)
        s->next_push_us = now_us + period; /* late: do not burst to catch up */
}

void lg_session_ping(lg_sess_t *s, uint64_t now_us)
{
    char msg[64];
    int n = snprintf(msg, sizeof(msg), "{\"type\":\"ping\",\"t\":%llu}", (unsigned long long)now_us);
    s->next_ping_us = now_us + (uint64_t)s->run->o->ping_ms * 1000u;
    if (n > 0 && (size_t)n < sizeof(msg))
        send_small(s, LG_WS_TEXT, msg, (size_t)n);
}

static uint64_t sent_pop_oldest(lg_sess_t *s)
{
    if (!s->sent_n)
        return 0;
    uint64_t t = s->sent_us[s->sent_head];
    s->sent_head = (uint8_t)((s->sent_head + 1) % LG_SENT_RING);
    s->sent_n--;
    return t;
}

/* The frame an answer_start belongs to. The server received it queue_wait_ms before the
 * dispatch, so it was sent before (now - queue_wait): the newest such frame is the one the server
 * dispatched, because a newer frame arriving while it waited would have replaced it (and the
 * server asks for no frame while one waits). Older ones still listed were replaced or dropped.
 * This needs no clock shared with the server, only its duration, and it holds when the server
 * re-sends a credit for a frame still on the wire (two frames in flight, one replaced). */
static uint64_t sent_take_for_dispatch(lg_sess_t *s, uint64_t now_us, double queue_wait_ms)
{
    if (!s->sent_n)
        return 0;
    uint64_t qw_us = queue_wait_ms > 0 ? (uint64_t)(queue_wait_ms * 1000.0) : 0;
    uint64_t cutoff = now_us > qw_us ? now_us - qw_us : 0;
    int pick = -1;
    for (int i = 0; i < s->sent_n; i++) {
        if (s->sent_us[(s->sent_head + i) % LG_SENT_RING] <= cutoff)
            pick = i;
    }
    if (pick < 0) {
        s->run->attrib_fallbacks++; /* clocks disagree by more than the transit time: take the oldest */
        pick = 0;
    }
    uint64_t t = s->sent_us[(s->sent_head + pick) % LG_SENT_RING];
    s->run->frames_unanswered += (uint64_t)pick;
    s->sent_head = (uint8_t)((s->sent_head + pick + 1) % LG_SENT_RING);
    s->sent_n = (uint8_t)(s->sent_n - pick - 1);
    return t;
}

/* ---------- server messages ---------- */

static void on_session_msg(lg_sess_t *s)
{
    lg_run_t *r = s->run;
    if (s->state != LG_S_HELLO)
        return;
    uint64_t now = lv_now_us();
    s->state = LG_S_READY;
    s->connected = true;
    r->n_connected++;
    r->ready_now++;
    lg_samples_add(&r->connect_ms, elapsed_ms(s->launch_us, now), &r->rng);
    static const char start[] = "{\"type\":\"start\"}";
    if (send_small(s, LG_WS_TEXT, start, sizeof(start) - 1))
        return;
    if (r->o->ping_ms > 0)
        s->next_ping_us = now + lg_rng_next(&r->rng) % ((uint64_t)r->o->ping_ms * 1000u);
    if (r->o->push_fps > 0) /* a random phase, so pushed frames do not arrive in bursts */
        s->next_push_us = now + lg_rng_next(&r->rng) % (uint64_t)(1e6 / r->o->push_fps + 1);
    if (r->stopping)
        lg_session_shutdown(s);
}

static void on_credit(lg_sess_t *s, uint32_t id)
{
    lg_run_t *r = s->run;
    if (r->o->push_fps > 0 || r->stopping || s->state != LG_S_READY) {
        r->credits_ignored++;
        return;
    }
    send_frame(s, id);
}

static void on_answer_start(lg_sess_t *s, json_t *root)
{
    lg_run_t *r = s->run;
    s->ans_active = true;
    s->ans_first_delta = false;
    s->ans_id = (long long)json_integer_value(json_object_get(root, "answer_id"));
    json_t *q = json_object_get(root, "queue_wait_ms");
    json_t *a = json_object_get(root, "frame_age_ms");
    s->ans_frame_us = sent_take_for_dispatch(s, lv_now_us(), json_is_number(q) ? json_number_value(q) : 0);
    if (!r->measuring)
        return;
    if (json_is_number(q))
        lg_samples_add(&r->srv_queue, json_number_value(q), &r->rng);
    if (json_is_number(a))
        lg_samples_add(&r->srv_age, json_number_value(a), &r->rng);
}

static void on_delta(lg_sess_t *s)
{
    lg_run_t *r = s->run;
    r->deltas_total++;
    if (r->measuring)
        r->w_deltas++;
    if (s->ans_active && !s->ans_first_delta) {
        s->ans_first_delta = true;
        if (r->measuring && s->ans_frame_us)
            lg_samples_add(&r->lat_ttft, elapsed_ms(s->ans_frame_us, lv_now_us()), &r->rng);
    }
}

static void on_vlm_response(lg_sess_t *s, json_t *root)
{
    lg_run_t *r = s->run;
    uint64_t now = lv_now_us();
    r->answers_total++;
    json_t *m = json_object_get(root, "metrics");
    json_t *rep = json_object_get(m, "frames_replaced");
    if (json_is_integer(rep) && json_integer_value(rep) > 0 && (uint64_t)json_integer_value(rep) > s->srv_replaced) {
        r->srv_replaced += (uint64_t)json_integer_value(rep) - s->srv_replaced;
        s->srv_replaced = (uint64_t)json_integer_value(rep);
    }
    const char *text = json_string_value(json_object_get(root, "text"));
    if (text && strncmp(text, "fakevlm ", 8) == 0 && s->prompt_sha8[0]) {
        /* fakevlm names the prompt it was given: another session's prompt here would mean the
         * server mixed up sessions */
        char want[24];
        snprintf(want, sizeof(want), "prompt=%s ", s->prompt_sha8);
        r->answers_checked++;
        if (!strstr(text, want))
            r->answers_mismatched++;
    }
    if (r->measuring) {
        r->w_answers++;
        s->w_answers++;
        r->users[s->user].w_answers++;
        if (s->ans_active && s->ans_frame_us)
            lg_samples_add(&r->lat_total, elapsed_ms(s->ans_frame_us, now), &r->rng);
        json_t *t = json_object_get(m, "ttft_ms");
        json_t *l = json_object_get(m, "last_latency_ms");
        if (json_is_number(t))
            lg_samples_add(&r->srv_ttft, json_number_value(t), &r->rng);
        if (json_is_number(l))
            lg_samples_add(&r->srv_latency, json_number_value(l), &r->rng);
    }
    s->ans_active = false;
}

static void on_error_msg(lg_sess_t *s, json_t *root)
{
    lg_run_t *r = s->run;
    const char *code = json_string_value(json_object_get(root, "code"));
    if (!code)
        code = "(no code)";
    lg_counters_add(&r->errors, code, strlen(code));
    snprintf(s->last_error, sizeof(s->last_error), "%s", code);
    if (r->measuring) {
        r->w_errors++;
        r->users[s->user].w_errors++;
    }
    json_t *aid = json_object_get(root, "answer_id");
    if (s->ans_active && json_is_integer(aid) && json_integer_value(aid) == s->ans_id) {
        s->ans_active = false; /* that answer ended in this error */
        r->answer_errors++;
    }
    /* codes that drop a frame before it is dispatched (docs/protocol.md, error codes) */
    static const char *const dropped[] = {"bad_frame", "frame_too_large", "not_started", "no_backend",
                                          "message_too_large"};
    for (size_t i = 0; i < LV_ARRAY_LEN(dropped); i++) {
        if (strcmp(code, dropped[i]) == 0) {
            sent_pop_oldest(s);
            break;
        }
    }
}

/* The fast paths cover the messages that come many times per answer and are cheap to recognise
 * in the compact form the server writes; anything else (or any other spelling) goes to jansson. */
static void on_text(lg_sess_t *s, const char *p, size_t n)
{
    lg_run_t *r = s->run;
    static const char DELTA[] = "{\"type\":\"delta\"";
    static const char CREDIT[] = "{\"type\":\"credit\",\"credit_id\":";
    static const char STATS[] = "{\"type\":\"gpu_stats\"";
    if (n > sizeof(DELTA) - 1 && memcmp(p, DELTA, sizeof(DELTA) - 1) == 0) {
        on_delta(s);
        return;
    }
    if (n > sizeof(CREDIT) - 1 && memcmp(p, CREDIT, sizeof(CREDIT) - 1) == 0) {
        size_t i = sizeof(CREDIT) - 1;
        uint64_t id = 0;
        size_t digits = 0;
        while (i < n && p[i] >= '0' && p[i] <= '9' && digits < 11) {
            id = id * 10 + (uint64_t)(p[i] - '0');
            i++;
            digits++;
        }
        if (digits && i + 1 == n && p[i] == '}' && id <= UINT32_MAX) {
            on_credit(s, (uint32_t)id);
            return;
        }
    }
    if (n > sizeof(STATS) - 1 && memcmp(p, STATS, sizeof(STATS) - 1) == 0) {
        r->stats_msgs++;
        return;
    }
    json_error_t err;
    json_t *root = json_loadb(p, n, 0, &err);
    const char *type = json_string_value(json_object_get(root, "type"));
    if (!type) {
        r->msgs_unknown++;
    } else if (strcmp(type, "delta") == 0) {
        on_delta(s);
    } else if (strcmp(type, "credit") == 0) {
        json_t *id = json_object_get(root, "credit_id");
        json_int_t v = json_integer_value(id);
        if (json_is_integer(id) && v >= 0 && v <= (json_int_t)UINT32_MAX)
            on_credit(s, (uint32_t)v);
        else
            r->msgs_unknown++;
    } else if (strcmp(type, "answer_start") == 0) {
        on_answer_start(s, root);
    } else if (strcmp(type, "vlm_response") == 0) {
        on_vlm_response(s, root);
    } else if (strcmp(type, "session") == 0) {
        on_session_msg(s);
    } else if (strcmp(type, "error") == 0) {
        on_error_msg(s, root);
    } else if (strcmp(type, "gpu_stats") == 0) {
        r->stats_msgs++;
    } else if (strcmp(type, "started") == 0) {
        s->started = true;
    } else if (strcmp(type, "pong") == 0) {
        json_t *t = json_object_get(root, "t");
        uint64_t now = lv_now_us();
        if (r->measuring && json_is_integer(t) && json_integer_value(t) > 0 && (uint64_t)json_integer_value(t) <= now)
            lg_samples_add(&r->ping_rtt, elapsed_ms((uint64_t)json_integer_value(t), now), &r->rng);
    } else if (strcmp(type, "stopped") != 0 &&
               strcmp(type, "settings_updated") != 0) {
        r->msgs_unknown++; /* clients ignore types they do not know (docs/protocol.md) */
    }
    json_decref(root);
}

static int on_msg(void *ud, int opcode, const char *p, size_t n)
{
    lg_sess_t *s = ud;
    lg_run_t *r = s->run;
    if (r->measuring)
        r->w_msgs_in++;
    switch (opcode) {
    case LG_WS_TEXT:
        on_text(s, p, n);
        break;
    case LG_WS_BINARY:
        r->binary_msgs++;
        break;
    case LG_WS_PING:
        send_small(s, LG_WS_PONG, p, n);
        break;
    case LG_WS_PONG:
        break;
    case LG_WS_CLOSE: {
        unsigned code = n >= 2 ? ((unsigned)(unsigned char)p[0] << 8) | (unsigned char)p[1] : 1005;
        char name[16];
        snprintf(name, sizeof(name), "%u", code);
        lg_counters_add(&r->close_codes, name, strlen(name));
        s->got_close = true;
        if (s->state == LG_S_CLOSING) {
            lg_conn_close(&s->conn, NULL); /* the answer to our close: done */
            return 1;
        }
        /* the server closes: answer (RFC 6455 5.5.1), then count why */
        unsigned char echo[2] = {(unsigned char)(code >> 8), (unsigned char)code};
        send_small(s, LG_WS_CLOSE, echo, code == 1005 ? 0 : 2);
        char why[96];
        if (s->last_error[0])
            snprintf(why, sizeof(why), "closed %u after error %s", code, s->last_error);
        else
            snprintf(why, sizeof(why), "closed %u by server", code);
        lg_session_fail(s, why);
        return 1;
    }
    default:
        break;
    }
    return s->conn.closing ? 1 : 0;
}

static void on_data(lg_conn_t *c, const char *p, size_t n)
{
    lg_sess_t *s = c->data;
    s->run->reads++;
    if (s->state == LG_S_UPGRADE) {
        size_t old = s->http.len;
        size_t take = LV_MIN(n, (size_t)LG_WS_HTTP_MAX - old);
        if (lv_buf_append(&s->http, p, take)) {
            lg_session_fail(s, "out of memory");
            return;
        }
        size_t end = lg_ws_http_header_end(s->http.data, s->http.len);
        if (!end) {
            if (s->http.len >= LG_WS_HTTP_MAX)
                lg_session_fail(s, "upgrade answer too long");
            return;
        }
        int status = 0;
        int rc = lg_ws_check_upgrade(s->http.data, end, s->ws_key, &status);
        if (rc) {
            char why[48];
            if (status && status != 101)
                snprintf(why, sizeof(why), "http %d", status);
            else
                snprintf(why, sizeof(why), "bad upgrade answer");
            lg_session_fail(s, why);
            return;
        }
        p += end - old;
        n -= end - old;
        lv_buf_free(&s->http);
        send_hello(s);
        if (n == 0 || s->conn.closing)
            return;
    }
    if (s->state < LG_S_HELLO)
        return;
    int rc = lg_ws_rx_feed(&s->rx, p, n, on_msg, s);
    if (rc < 0 && !s->conn.closing) {
        send_close(s, rc == LV_ELIMIT ? 1009 : 1002);
        lg_session_fail(s, rc == LV_ELIMIT ? "message over 1 MiB" : "websocket protocol error");
    }
}

static void on_closed(lg_conn_t *c)
{
    lg_sess_t *s = c->data;
    lg_run_t *r = s->run;
    if (!s->failed) {
        char buf[96];
        const char *why = c->fail ? c->fail : c->eof ? "closed by server (eof)" : "closed";
        if (!c->fail && c->eof && s->last_error[0]) {
            /* the server explained itself with an error message before closing */
            snprintf(buf, sizeof(buf), "eof after error %s", s->last_error);
            why = buf;
        }
        if (!s->connected) {
            if (r->stopping && !c->fail && !c->eof)
                why = "not ready when the run ended";
            s->failed = true;
            r->n_failed++;
            lg_counters_add(&r->fail_reasons, why, strlen(why));
        } else if (!r->stopping) {
            s->failed = true;
            r->lost_after_ready++;
            lg_counters_add(&r->lost_reasons, why, strlen(why));
        }
    }
    if (s->state == LG_S_READY)
        r->ready_now--;
    s->state = LG_S_DONE;
    s->ans_active = false;
    lv_buf_free(&s->http);
    lg_ws_rx_free(&s->rx);
    r->open_conns--;
    lg_run_conn_gone(r);
}

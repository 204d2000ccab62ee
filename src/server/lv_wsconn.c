/* lv_wsconn.c - WebSocket connections after the upgrade (lv_wsconn.h): client frames through
 * lv_ws_reader (masking, caps, UTF-8, control frames), whole messages to the engine, pings
 * answered, idle sockets pinged and hung up on, our close frames after whatever was queued before
 * them. The engine (lv_engine.c) sees an lv_conn_t and sends and closes through lv_conn_send /
 * lv_conn_close, defined here with the per-socket output caps that close a slow reader. */
#include "lv_wsconn.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lv_app.h"
#include "lv_common.h"
#include "lv_engine.h"
#include "lv_iptable.h"
#include "lv_log.h"
#include "lv_net.h"
#include "lv_principal.h"
#include "lv_queue.h"
#include "lv_session.h"
#include "lv_trace.h"
#include "lv_wsframe.h"
#include "lv_wsmsg.h"

#define MAX_TEXT_BYTES 65536                 /* docs/protocol.md "Caps" */
#define READ_SOFT_BYTES (512u << 10)         /* stop reading while this much output waits */

static void ws_pong_or_ping(lv_conn_t *c, int op, const void *p, size_t len)
{
    lv_msg_t *m = lv_msg_ws_control(op, p, len);
    if (m)
        lv_sock_send(c->sock, m); /* control frames have room beyond the message cap */
    lv_msg_unref(m);
}

/* Queue our close frame (c->kill_status, c->kill_reason) after what is queued, then end the
 * connection once it is out (once). */
static void ws_close(lv_conn_t *c)
{
    if (c->close_sent || !c->sock)
        return;
    c->close_sent = true;
    uint8_t frame[127];
    size_t n = lv_ws_close_frame(frame, c->kill_status, c->kill_reason);
    lv_msg_t *m = lv_msg_raw(frame, n);
    if (m)
        lv_sock_send(c->sock, m);
    lv_msg_unref(m);
    lv_sock_close_after_flush(c->sock);
}

int lv_conn_send(lv_conn_t *c, lv_msg_t *m)
{
    if (c->kill)
        return LV_ECLOSED;
    /* a socket that does not drain is closed rather than allowed to grow without bound */
    size_t queued = lv_sock_queued_msgs(c->sock);
    if (queued >= LV_CONN_TXQ_MAX || lv_sock_queued_bytes(c->sock) + m->len > LV_CONN_TX_BYTES_MAX) {
        LV_WARN("closing a WebSocket from %s that stopped reading (%zu messages queued)", c->ip, queued);
        lv_conn_close(c, LV_WS_CLOSE_POLICY, "slow reader");
        return LV_ELIMIT;
    }
    return lv_sock_send(c->sock, m); /* written on a later loop turn, with whatever joins it */
}

void lv_conn_send_error(lv_conn_t *c, const char *code, const char *message, const char *field)
{
    char *text = lv_wsmsg_error(code, message, field);
    if (!text)
        return;
    lv_msg_t *m = lv_msg_new(text, strlen(text), false);
    free(text);
    if (m) {
        lv_conn_send(c, m);
        lv_msg_unref(m);
    }
}

void lv_conn_close(lv_conn_t *c, int status, const char *reason)
{
    if (c->kill)
        return;
    c->kill = true;
    c->kill_status = status;
    c->kill_reason = reason;
    ws_close(c); /* behind what is queued: the error that explains the close goes first */
}

/* Fail the connection (RFC 6455 section 7.1.7): close frame, stop reading. */
static void ws_fail(lv_conn_t *c, int code, const char *why)
{
    LV_DEBUG("closing a WebSocket from %s: %d %s", c->ip, code, why ? why : "");
    lv_conn_close(c, code, why);
}

static void on_too_big(lv_conn_t *c, const lv_ws_event_t *ev)
{
    lv_app_t *app = c->app;
    size_t cap = ev->binary ? app->cfg.max_frame_bytes : MAX_TEXT_BYTES;
    /* far over the cap is not a camera frame that came out large: stop listening to it */
    if (ev->binary && ev->len > 2 * (app->cfg.max_frame_bytes + 16)) {
        lv_conn_send_error(c, "message_too_large", "frame far over the size cap", NULL);
        ws_fail(c, LV_WS_CLOSE_TOO_BIG, "too large");
        return;
    }
    char msg[160];
    snprintf(msg, sizeof(msg), "%s message of %zu bytes is over the cap of %zu bytes", ev->binary ? "binary" : "text",
             ev->len, cap);
    lv_conn_send_error(c, ev->binary ? "frame_too_large" : "message_too_large", msg, NULL);
    if (ev->binary && c->session)
        c->session->frames_rejected++;
}

static size_t ws_on_data(lv_sock_t *s, char *data, size_t len)
{
    lv_conn_t *c = s->data;
    size_t off = 0;
    /* any byte is a sign of life: the idle box starts again */
    lv_sock_arm(s, LV_TMO_WS_IDLE);
    while (off < len && !s->closing) {
        size_t used = 0;
        lv_ws_event_t ev;
        lv_ws_reader_feed(&c->rd, (uint8_t *)data + off, len - off, &used, &ev);
        off += used;
        switch (ev.kind) {
        case LV_WS_EV_NONE:
        case LV_WS_EV_PONG:
            break;
        case LV_WS_EV_MESSAGE:
            if (!c->kill)
                lv_engine_on_message(c, (const char *)ev.data, ev.len, ev.binary);
            break;
        case LV_WS_EV_PING:
            ws_pong_or_ping(c, LV_WS_OP_PONG, ev.data, ev.len);
            break;
        case LV_WS_EV_TOO_BIG:
            if (!c->kill)
                on_too_big(c, &ev);
            break;
        case LV_WS_EV_CLOSE:
            /* section 5.5.1: answer the peer's close with ours (its code echoed), then end the
             * TCP connection once it is out */
            if (!c->kill) {
                c->kill = true;
                c->kill_status = ev.close_code == 1005 ? 0 : ev.close_code;
                c->kill_reason = NULL;
            }
            ws_close(c);
            return len;
        case LV_WS_EV_ERROR:
            ws_fail(c, ev.close_code, ev.why);
            return len;
        }
    }
    if (!s->closing && lv_sock_queued_bytes(s) > READ_SOFT_BYTES) {
        c->paused_for_output = true; /* pull-based: read again once the client reads its output */
        lv_sock_pause_read(s);
    }
    return len;
}

static void ws_on_drain(lv_sock_t *s)
{
    lv_conn_t *c = s->data;
    if (c->paused_for_output) {
        c->paused_for_output = false;
        lv_sock_resume_read(s);
    }
}

static void ws_on_timeout(lv_sock_t *s, lv_tmo_kind_t kind)
{
    lv_conn_t *c = s->data;
    if (kind == LV_TMO_WS_IDLE) {
        ws_pong_or_ping(c, LV_WS_OP_PING, "", 0);
        lv_sock_arm(s, LV_TMO_WS_PONG);
        return;
    }
    LV_DEBUG("WebSocket from %s silent after a ping: hanging up", c->ip);
    lv_sock_close(s); /* a dead peer reads no close frame */
}

static void ws_on_shutdown(lv_sock_t *s)
{
    lv_conn_t *c = s->data;
    lv_conn_close(c, LV_WS_CLOSE_GOING_AWAY, "server restarting");
    ws_close(c); /* even when it was already closing for another reason without a frame yet */
}

static void ws_on_close(lv_sock_t *s)
{
    lv_conn_t *c = s->data;
    lv_app_t *app = c->app;
    lv_engine_on_close(c);
    lv_queue_remove(&c->app_link);
    app->n_conns--;
    lv_iptable_sockets(app->ips, c->ip, -1);
    lv_ws_reader_free(&c->rd);
    free(c);
}

static const lv_sock_ops_t ws_ops = {
    .on_data = ws_on_data,
    .on_drain = ws_on_drain,
    .on_timeout = ws_on_timeout,
    .on_shutdown = ws_on_shutdown,
    .on_close = ws_on_close,
};

int lv_ws_attach(lv_app_t *app, lv_sock_t *s, const lv_principal_t *who, const lv_http1_req_t *head)
{
    lv_conn_t *c = calloc(1, sizeof(*c));
    if (!c)
        return LV_ENOMEM;
    c->sock = s;
    c->app = app;
    /* the client of the upgrade request (behind a trusted proxy, the one it forwarded): its
     * per-address socket count and logs are the client's, not the proxy's */
    snprintf(c->ip, sizeof(c->ip), "%s", s->client_ip);
    c->principal = *who;
    lv_trace_from_head(app, head, c->ip, &c->trace);
    lv_queue_init(&c->viewer.link);
    lv_queue_init(&c->source.link);
    /* binary: the frame cap plus the LVF1 envelope; text: 64 KiB */
    lv_ws_reader_init(&c->rd, app->cfg.max_frame_bytes + 16, MAX_TEXT_BYTES);
    c->opened_ms = c->rl_last_ms = lv_now_ms();
    c->rl_tokens = 50.0;
    lv_queue_insert_tail(&app->conns, &c->app_link);
    app->n_conns++;
    lv_iptable_sockets(app->ips, c->ip, +1);
    s->ops = &ws_ops;
    s->data = c;
    lv_sock_set_input_cap(s, 65536);
    lv_sock_arm(s, LV_TMO_WS_IDLE);
    lv_sock_resume_read(s); /* frames sent right behind the upgrade request are waiting */
    return 0;
}

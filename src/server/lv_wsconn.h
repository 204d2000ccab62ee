/* lv_wsconn.h - one WebSocket after the upgrade (lv_wsconn.c): the connection the engine
 * (lv_engine.h) sees, and how anything is sent on it or it is closed. Loop thread only.
 * Lifetime: lv_ws_attach makes it when lv_httpd hands over an upgraded socket; the server owns it
 * and frees it after its socket closed, right after lv_engine_on_close(). */
#ifndef LV_WSCONN_H
#define LV_WSCONN_H

#include <stdbool.h>
#include <stdint.h>

#include "lv_http1.h"
#include "lv_net.h"
#include "lv_port_source.h"
#include "lv_port_viewer.h"
#include "lv_principal.h"
#include "lv_queue.h"
#include "lv_traceparent.h"
#include "lv_wsframe.h"

struct lv_app;
struct lv_session;

/* lv_msg_t (a refcounted message queued to one or more sockets: lv_msg_new, lv_msg_from_json,
 * lv_msg_unref) is declared in lv_net.h. */

#define LV_CONN_TXQ_MAX 256           /* messages queued per socket before it counts as stuck */
#define LV_CONN_TX_BYTES_MAX (4u << 20)

/* One WebSocket. Owned by the server (lv_wsconn.c); freed after its socket closed, right after
 * lv_engine_on_close(). */
typedef struct lv_conn {
    lv_sock_t *sock;             /* its socket (lv_net.h): the write queue lives there */
    struct lv_app *app;
    struct lv_session *session;  /* NULL until hello succeeds */
    lv_viewer_t viewer;          /* in session->viewers: the page watches its session ... */
    lv_source_t source;          /* ... and is its camera (session->sources) */
    lv_queue_t app_link;         /* in app->conns */
    lv_principal_t principal;    /* who acts on this socket (set at the upgrade, lv_auth_principal) */
    lv_trace_t trace;            /* the upgrade request's traceparent (lv_trace.h); "" = none: its
                                  * session's trace becomes this one at hello */
    char ip[64];                 /* the client (lv_sock_t.client_ip: behind a trusted proxy, the
                                  * forwarded address): per-address limits and logs, never fairness */
    lv_ws_reader_t rd;           /* client frames in, messages assembled (capped) */
    bool paused_for_output;      /* reading stopped until the client reads what is queued */
    uint64_t opened_ms;
    uint64_t last_stats_ms;
    double rl_tokens;            /* text-message token bucket */
    uint64_t rl_last_ms;
    uint64_t rl_dropped;         /* over-rate messages dropped since the last rate_limited notice */
    uint64_t rl_notice_ms;       /* when that notice went out (at most one a second) */
    uint64_t flood_win_ms;       /* flood check: start of the current one-second window */
    uint32_t flood_win_n;        /* text messages received in it */
    uint32_t flood_strikes;      /* consecutive earlier windows over the flood rate */
    bool kill;                   /* closing: nothing more is queued but the close frame */
    bool close_sent;             /* our close frame is queued behind everything before it */
    int kill_status;
    const char *kill_reason;
} lv_conn_t;

/** Make the upgraded socket s a WebSocket of the app acting for who (copied), whose upgrade
 * request's head (NULL = none) may carry a traceparent. LV_ENOMEM. */
int lv_ws_attach(struct lv_app *app, lv_sock_t *s, const lv_principal_t *who, const lv_http1_req_t *head);
/** Queue a message on one socket (takes a new reference). Returns LV_ELIMIT when the socket is
 * stuck (it is then closed), LV_ECLOSED when it is already closing. */
int lv_conn_send(lv_conn_t *c, lv_msg_t *m);
/** Send {"type":"error",...} on one socket. */
void lv_conn_send_error(lv_conn_t *c, const char *code, const char *message, const char *field);
/** Close the socket with a close frame (status, reason: a static string) after flushing what is
 * queued; nothing more can be queued on it. */
void lv_conn_close(lv_conn_t *c, int status, const char *reason);

#endif

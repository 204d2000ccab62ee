/* lv_app.h - the serving process: the loop and everything attached to it. One instance, owned by
 * main; every callback reaches it through its user pointer. All fields are touched only on the
 * loop thread. */
#ifndef LV_APP_H
#define LV_APP_H

#include <stdbool.h>
#include <uv.h>

#include "lv_buf.h"
#include "lv_config.h"
#include "lv_http1.h"
#include "lv_net.h"
#include "lv_queue.h"
#include "lv_drr.h"
#include "lv_pipeline.h"
#include "lv_port_source.h"
#include "lv_port_viewer.h"
#include "lv_principal.h"
#include "lv_session.h"
#include "lv_store.h"
#include "lv_wsframe.h"

struct lv_http;
struct lv_pool;
struct lv_sysmon;
struct lv_iptable;
struct lv_persist;

/* lv_msg_t (a refcounted message queued to one or more sockets: lv_msg_new, lv_msg_from_json,
 * lv_msg_unref) is declared in lv_net.h. */

#define LV_CONN_TXQ_MAX 256           /* messages queued per socket before it counts as stuck */
#define LV_CONN_TX_BYTES_MAX (4u << 20)

/* One WebSocket. Owned by the server (lv_wsconn.c); freed after its socket closed, right after
 * lv_engine_on_close(). */
typedef struct lv_conn {
    lv_sock_t *sock;             /* its socket (lv_net.h): the write queue lives there */
    struct lv_app *app;
    lv_session_t *session;       /* NULL until hello succeeds */
    lv_viewer_t viewer;          /* in session->viewers: the page watches its session ... */
    lv_source_t source;          /* ... and is its camera (session->sources) */
    lv_queue_t app_link;         /* in app->conns */
    lv_principal_t principal;    /* who acts on this socket (set at the upgrade, lv_auth_principal) */
    char ip[64];                 /* the peer: per-address limits only, never fairness */
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

typedef struct lv_app {
    lv_config_t cfg;
    uv_loop_t *loop;
    lv_net_t *net;               /* the listener and every client socket (lv_net.h) */
    int bound_port;
    struct lv_http *http;
    struct lv_pool *pool;
    struct lv_sysmon *sysmon;
    lv_store_t *store;
    lv_registry_t *reg;
    struct lv_persist *persist;  /* the state file (lv_state.h); NULL when sessions are not kept */
    lv_drr_t drr;                /* sessions with a waiting frame, in fair order */
    lv_pipeline_t pipe;          /* the frame path (lv_pipeline.h) */
    lv_dispatch_t *dispatch;     /* the pipeline's dispatcher: the local pool (lv_dispatch_local.h) */
    struct lv_stat *stat;        /* metrics (lv_stat.h) */
    struct lv_iptable *ips;
    char token[65];              /* access token; empty with --auth none */
    lv_queue_t conns;            /* every WebSocket (lv_conn_t.app_link) */
    size_t n_conns;
    lv_queue_t pending_models;   /* HTTP requests waiting for a model refresh */
    bool refreshing;
    uv_timer_t tick;             /* the pipeline's tick, stats, hello deadlines */
    uv_timer_t sweep;            /* idle sessions */
    uv_timer_t kick;             /* lv_pipeline_run on the next loop turn */
    bool kick_pending;
    uint64_t last_slow_tick_ms;  /* stats and hello deadlines run every 100 ms */
    uv_signal_t sigint, sigterm;
    bool stopping;
    char no_backend_help[512];
    /* counters shown in /api/v1/config and the closing log line */
    uint64_t frames_total, answers_total, errors_total;
} lv_app_t;

/* engine: the frame path (mailbox -> scheduler -> backend -> sockets) */
int lv_engine_start(lv_app_t *app);
void lv_engine_stop(lv_app_t *app);
/** Run the scheduler on the next loop turn (coalesced). */
void lv_engine_kick(lv_app_t *app);
/** A complete WebSocket message arrived on conn. */
void lv_engine_on_message(lv_conn_t *c, const char *p, size_t len, bool binary);
/** conn is going away: detach it from its session. */
void lv_engine_on_close(lv_conn_t *c);
/** Queue a message on one socket (takes a new reference). Returns LV_ELIMIT when the socket is
 * stuck (it is then closed). */
int lv_conn_send(lv_conn_t *c, lv_msg_t *m);
/** Queue a message on every socket of a session. */
void lv_session_send(lv_session_t *s, lv_msg_t *m);
/** Send {"type":"error",...} on one socket. */
void lv_conn_send_error(lv_conn_t *c, const char *code, const char *message, const char *field);
/** Close the socket with a close frame (status, reason: a static string) after flushing what is
 * queued; nothing more can be queued on it. */
void lv_conn_close(lv_conn_t *c, int status, const char *reason);

/* server: the listener, HTTP routes, WebSocket plumbing (lv_server.c, lv_httpd.c, lv_wsconn.c) */
/** Listen on cfg.host/cfg.port (TLS unless --no-tls). Logs why and returns non-zero when it cannot
 * (bad address, port in use, unusable certificate); bound_port is set on success. */
int lv_server_start(lv_app_t *app);
/** Graceful stop: no new connections, every WebSocket gets close 1001 "server restarting", HTTP
 * connections finish their current request; done(ud) runs once all are gone or after deadline_ms. */
void lv_server_drain(lv_app_t *app, unsigned deadline_ms, void (*done)(void *ud), void *ud);
/** Close whatever is left and the listener (the loop must run on to free the handles). */
void lv_server_stop(lv_app_t *app);
struct lv_req;
/** Route one complete request (lv_httpd.c calls it; it answers now or later, exactly once). */
void lv_server_handle(lv_app_t *app, struct lv_req *r);
/** Make the upgraded socket s a WebSocket of the app acting for who (copied; lv_wsconn.c). */
int lv_ws_attach(lv_app_t *app, lv_sock_t *s, const lv_principal_t *who);
/** Queue c's close frame (c->kill_status, c->kill_reason) behind its output, then close (once). */
void lv_ws_close(lv_conn_t *c);

/* auth: access token and per-address counters */
/** Create the config directory (and parents) with mode 0700 if missing. */
int lv_auth_ensure_dir(const char *dir);
int lv_auth_load_token(const char *config_dir, char out[65], bool *created);
int lv_auth_rotate_token(const char *config_dir, char out[65]);
typedef enum { LV_CRED_NONE = 0, LV_CRED_OK = 1, LV_CRED_BAD = -1 } lv_cred_t;
/** What credential req carries (Bearer header or the login cookie): the right one, a wrong one,
 * or none. Counts nothing. */
lv_cred_t lv_auth_request_ok(lv_app_t *app, const lv_http1_req_t *req);
/** Who the holder of req's (already checked) credential is: the principal its sessions and fair
 * share are charged to (lv_principal.h). Today the access token is shared, so the holder at this
 * client address; with accounts, the account. */
void lv_auth_principal(lv_app_t *app, const lv_http1_req_t *req, const char *ip, lv_principal_t *out);
/** 0 when req carries the right credential; else the status to answer: 401, or 429 when it
 * carries a wrong one and ip is over its failed credentials for the minute (wrong ones count). */
int lv_auth_check(lv_app_t *app, const lv_http1_req_t *req, const char *ip);
/** Count a failed credential from ip (any kind: header, cookie, login form, ?token= link);
 * returns 429 when ip was already over LOGIN_FAILS_PER_MIN this minute, else 401. */
int lv_auth_failed(lv_app_t *app, const char *ip);

struct lv_iptable *lv_iptable_create(void);
void lv_iptable_destroy(struct lv_iptable *t);
/** Adjust the socket count of ip; returns the new count. */
size_t lv_iptable_sockets(struct lv_iptable *t, const char *ip, int delta);
/** Adjust the count of ip's sockets still in their TLS handshake or request head; returns it. */
size_t lv_iptable_pending(struct lv_iptable *t, const char *ip, int delta);
/** Record a failed login; returns 1 when ip is over its failures for the current minute. */
int lv_iptable_login_failed(struct lv_iptable *t, const char *ip, uint64_t now_ms);
int lv_iptable_login_blocked(struct lv_iptable *t, const char *ip, uint64_t now_ms);
/** Count a frame against ip's per-minute budget; 0 when over fpm (the frame is not counted). */
int lv_iptable_frame_allowed(struct lv_iptable *t, const char *ip, int fpm, uint64_t now_ms);
/** 1 when a frame from ip would be allowed now (nothing is counted). */
int lv_iptable_frame_would_allow(struct lv_iptable *t, const char *ip, int fpm, uint64_t now_ms);
/** Milliseconds until ip's frame budget renews. */
uint64_t lv_iptable_frame_retry_ms(struct lv_iptable *t, const char *ip, uint64_t now_ms);

/* tls: self-signed certificate on first start */
int lv_tls_ensure_cert(const char *config_dir, char *cert_path, size_t cert_size, char *key_path, size_t key_size,
                       bool *generated);

#endif

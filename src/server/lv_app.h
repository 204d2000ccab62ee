/* lv_app.h - the serving process: the loop and everything attached to it. One instance, owned by
 * main; every callback reaches it through its user pointer. All fields are touched only on the
 * loop thread. */
#ifndef LV_APP_H
#define LV_APP_H

#include <libwebsockets.h>
#include <stdbool.h>
#include <uv.h>

#include "lv_buf.h"
#include "lv_config.h"
#include "lv_queue.h"
#include "lv_drr.h"
#include "lv_session.h"
#include "lv_store.h"

struct lv_http;
struct lv_pool;
struct lv_sysmon;
struct lv_iptable;

/* A message queued to one or more sockets: JSON text or a binary blob, with LWS_PRE headroom.
 * Refcounted because one delta fans out to every socket of a session. */
typedef struct lv_msg {
    int refs;
    bool binary;
    size_t len;
    unsigned char buf[]; /* LWS_PRE bytes of headroom, then len payload bytes */
} lv_msg_t;

lv_msg_t *lv_msg_new(const void *p, size_t len, bool binary);
/** New text message from a JSON value; the value is not consumed. */
lv_msg_t *lv_msg_from_json(const void *json_value);
void lv_msg_unref(lv_msg_t *m);

#define LV_CONN_TXQ_MAX 256           /* messages queued per socket before it counts as stuck */
#define LV_CONN_TX_BYTES_MAX (4u << 20)

/* One WebSocket. Owned by the server; freed when lws reports it closed. */
typedef struct lv_conn {
    struct lws *wsi;
    struct lv_app *app;
    lv_session_t *session;       /* NULL until hello succeeds */
    lv_queue_t session_link;     /* in session->conns */
    lv_queue_t app_link;         /* in app->conns */
    char ip[64];
    lv_buf_t rx;                 /* message being assembled from fragments (capped) */
    bool rx_binary;
    size_t rx_dropped;           /* bytes of an over-cap message skipped */
    lv_msg_t *txq[LV_CONN_TXQ_MAX];
    size_t tx_head, tx_len, tx_bytes;
    uint64_t opened_ms;
    uint64_t last_stats_ms;
    double rl_tokens;            /* text-message token bucket */
    uint64_t rl_last_ms;
    bool kill;                   /* close at the next writable callback */
    bool close_sent;             /* our close frame went out; waiting for the peer's */
    int kill_status;
    const char *kill_reason;
} lv_conn_t;

typedef struct lv_app {
    lv_config_t cfg;
    uv_loop_t *loop;
    struct lws_context *lws;
    struct lws_vhost *vhost;
    int bound_port;
    struct lv_http *http;
    struct lv_pool *pool;
    struct lv_sysmon *sysmon;
    lv_store_t *store;
    lv_registry_t *reg;
    lv_drr_t drr;                /* sessions with a waiting frame, in fair order */
    size_t credits_outstanding;  /* credits sent and not yet answered by a frame */
    struct lv_stat *stat;        /* metrics (lv_stat.h) */
    lv_queue_t jobs;             /* backend calls in flight (lv_job_t) */
    struct lv_iptable *ips;
    char token[65];              /* access token; empty with --auth none */
    lv_queue_t conns;            /* every WebSocket (lv_conn_t.app_link) */
    size_t n_conns;
    lv_queue_t pending_models;   /* HTTP requests waiting for a model refresh */
    bool refreshing;
    uv_timer_t tick;             /* credits, stats, hello deadlines */
    uv_timer_t sweep;            /* idle sessions */
    uv_timer_t kick;             /* run the scheduler on the next loop turn */
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
/** Ask lws to close the socket after flushing what is queued. */
void lv_conn_close(lv_conn_t *c, int status, const char *reason);

/* server: lws context, HTTP routes, WebSocket plumbing */
int lv_server_start(lv_app_t *app);
void lv_server_stop(lv_app_t *app);

/* auth: access token and per-address counters */
/** Create the config directory (and parents) with mode 0700 if missing. */
int lv_auth_ensure_dir(const char *dir);
int lv_auth_load_token(const char *config_dir, char out[65], bool *created);
int lv_auth_rotate_token(const char *config_dir, char out[65]);
/** 1 when the request on wsi carries the token (Bearer header or cookie). */
int lv_auth_request_ok(lv_app_t *app, struct lws *wsi);

struct lv_iptable *lv_iptable_create(void);
void lv_iptable_destroy(struct lv_iptable *t);
/** Adjust the socket count of ip; returns the new count. */
size_t lv_iptable_sockets(struct lv_iptable *t, const char *ip, int delta);
/** Record a failed login; returns 1 when ip is over its failures for the current minute. */
int lv_iptable_login_failed(struct lv_iptable *t, const char *ip, uint64_t now_ms);
int lv_iptable_login_blocked(struct lv_iptable *t, const char *ip, uint64_t now_ms);
/** Adjust the count of frames queued plus credits outstanding for ip (a user); returns the new count. */
size_t lv_iptable_queued(struct lv_iptable *t, const char *ip, int delta);
/** Count a frame against ip's per-minute budget; 0 when over fpm (the frame is not counted). */
int lv_iptable_frame_allowed(struct lv_iptable *t, const char *ip, int fpm, uint64_t now_ms);
/** 1 when a frame from ip would be allowed now (nothing is counted). */
int lv_iptable_frame_would_allow(struct lv_iptable *t, const char *ip, int fpm, uint64_t now_ms);
/** Milliseconds until ip's frame budget renews. */
uint64_t lv_iptable_frame_retry_ms(struct lv_iptable *t, const char *ip, uint64_t now_ms);

/* tls: self-signed certificate on first start */
int lv_tls_ensure_cert(const char *config_dir, char *cert_path, size_t cert_size, char *key_path, size_t key_size,
                       bool *generated);
/** Print the SHA-256 fingerprint of a PEM certificate file into out ("AB:CD:..."). */
int lv_tls_fingerprint(const char *cert_path, char *out, size_t out_size);

#endif

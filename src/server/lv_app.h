/* lv_app.h - the serving process: the loop and everything attached to it. One instance, owned by
 * main; every callback reaches it through its user pointer. All fields are touched only on the
 * loop thread. What works on it has its own header: lv_server.h (the front door), lv_wsconn.h
 * (its WebSockets), lv_engine.h (the frame path), lv_auth.h, lv_iptable.h, lv_stat.h, lv_state.h. */
#ifndef LV_APP_H
#define LV_APP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "lv_config.h"
#include "lv_drr.h"
#include "lv_pipeline.h"
#include "lv_queue.h"

struct lv_dispatch;
struct lv_http;
struct lv_iptable;
struct lv_net;
struct lv_persist;
struct lv_analyze_host;
struct lv_offer_host;
struct lv_cameras;
struct lv_cluster;
struct lv_csess;
struct lv_db;
struct lv_accounts;
struct lv_oidc;
struct lv_usage;
struct lv_quota;
struct lv_pool;
struct lv_registry;
struct lv_stat;
struct lv_store;
struct lv_sysmon;

typedef struct lv_app {
    lv_config_t cfg;
    uv_loop_t *loop;
    struct lv_net *net;          /* the listener and every client socket (lv_net.h) */
    int bound_port;
    struct lv_http *http;
    struct lv_pool *pool;
    struct lv_sysmon *sysmon;
    struct lv_store *store;      /* lv_store.h */
    struct lv_registry *reg;     /* the sessions (lv_session.h) */
    struct lv_persist *persist;  /* the state file (lv_state.h); NULL when sessions are not kept */
    struct lv_analyze_host *analyze; /* POST /api/v1/analyze requests in progress (lv_analyze.h) */
    struct lv_offer_host *offer; /* POST /offer: WebRTC streams (lv_offer.h); NULL before the first */
    struct lv_cameras *cameras;  /* the admin's RTSP cameras (lv_camera.h); NULL when none is defined */
    lv_drr_t drr;                /* sessions with a waiting frame, in fair order */
    lv_pipeline_t pipe;          /* the frame path (lv_pipeline.h) */
    struct lv_dispatch *dispatch; /* the pipeline's dispatcher: the local pool (lv_dispatch_local.h),
                                  * or in cluster mode lv_cluster_dispatch(cluster) */
    struct lv_cluster *cluster;  /* `serve --redis`: this frontend's cluster side (lv_cluster.h);
                                  * NULL in single-node mode */
    struct lv_csess *csess;      /* its sessions in Redis (lv_cluster_sessions.c's own) */
    struct lv_db *db;            /* the accounts/usage database (lv_db.h); open in every mode */
    struct lv_accounts *accts;   /* users, keys, sign-ins, tenants (lv_accounts.h); NULL with
                                  * --auth token or none */
    struct lv_oidc *oidc;        /* OpenID Connect sign-in and bearer JWTs (lv_oidc.h); NULL when
                                  * no issuer is configured */
    struct lv_usage *usage;      /* the usage journal and its writer (lv_usage.h) */
    struct lv_quota *quota;      /* quota counters (lv_quota.h) */
    struct lv_stat *stat;        /* metrics (lv_stat.h) */
    struct lv_iptable *ips;      /* per-address counters (lv_iptable.h) */
    char token[65];              /* access token; empty with --auth none */
    lv_queue_t conns;            /* every WebSocket (lv_conn_t.app_link, lv_wsconn.h) */
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

#endif

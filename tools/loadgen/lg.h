/* lg.h - the load generator's shared types: options, the run, and one simulated camera page
 * (a session). See docs/loadgen.md. */
#ifndef LG_H
#define LG_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <openssl/ssl.h>
#include <uv.h>

#include "lg_conn.h"
#include "lg_stats.h"
#include "lg_ws.h"

#define LG_MAX_MSG (1024u * 1024u)    /* one server message, reassembled */
#define LG_SAMPLES_MAX 1000000u       /* values kept per measurement (reservoir past that) */
#define LG_MAX_JPEGS 64
#define LG_JPEG_MAX (16u * 1024u * 1024u)
#define LG_SENT_RING 32               /* frames sent and not yet dispatched, per session */
#define LG_CONNECT_TIMEOUT_MS 10000   /* launch -> "session" message */

/* Exit codes (documented in --help) */
enum { LG_EXIT_OK = 0, LG_EXIT_NO_CONNECT = 1, LG_EXIT_USAGE = 2 };

typedef struct {
    char url[1024];
    bool tls;
    char host[256];      /* as written in the URL (no brackets) */
    char host_hdr[300];  /* Host header value */
    char path[512];
    int port;
    char token[256];
    bool have_token;
    uint32_t sessions;
    uint32_t users;
    uint32_t heavy_users;   /* --heavy-user K:M: the first K users ... */
    uint32_t heavy_factor;  /* ... open M times as many sessions as the others */
    uint32_t per_ip;
    const char *jpeg_paths[LG_MAX_JPEGS];
    size_t n_jpegs;
    int interval_ms;        /* 0: server default */
    const char *prompt;
    int max_tokens;         /* 0: server default */
    const char *model;
    const char *backend;
    const char *source;     /* --source: the session's `source` setting; NULL: not sent (page) */
    bool same_prompt;       /* --same-prompt: no per-session suffix (watchers of one camera asking
                             * one question share an inference) */
    int stats_interval_ms;  /* sent in hello; 0 turns gpu_stats off */
    double ramp_s, warmup_s, duration_s;
    double push_fps;        /* 0: credit mode */
    int ping_ms;            /* 0: no application pings */
    int coalesce_us;        /* least time between two loop passes; 0: wake per event */
    const char *out_path;
    bool quiet;
    uint64_t seed;
    bool bind_src;          /* spread over source addresses */
    bool src_auto;          /* no --src-base: bind when the target is a 127.x address */
    struct in_addr src_base;
} lg_opts_t;

/** Parse argv into o. Returns 0, or LG_EXIT_USAGE after printing why (or after --help, with
 * *help_shown set). */
int lg_opts_parse(lg_opts_t *o, int argc, char **argv, bool *help_shown);

typedef enum {
    LG_S_IDLE = 0,   /* not launched yet */
    LG_S_CONNECTING, /* TCP / TLS */
    LG_S_UPGRADE,    /* upgrade request sent, waiting for 101 */
    LG_S_HELLO,      /* hello sent, waiting for "session" */
    LG_S_READY,      /* session received, start sent */
    LG_S_CLOSING,    /* close frame sent */
    LG_S_DONE,       /* socket closed */
} lg_state_t;

typedef struct lg_run lg_run_t;

typedef struct {
    lg_conn_t conn;
    lg_run_t *run;
    uint32_t idx;
    uint32_t user;
    struct sockaddr_in src;
    lg_state_t state;
    bool failed;       /* never reached READY, or lost after it; counted once */
    bool connected;    /* reached READY once */
    bool started;      /* "started" received */
    bool got_close;    /* the server's close frame arrived */
    char ws_key[LG_WS_KEY_LEN + 1];
    char last_error[40]; /* the last error code the server sent */
    lv_buf_t http;     /* the upgrade answer while it is incomplete */
    lg_ws_rx_t rx;
    char prompt_sha8[9]; /* what fakevlm prints as prompt=... for this session's prompt */
    uint64_t launch_us;
    uint64_t next_push_us;
    uint64_t next_ping_us;
    uint32_t jpeg_next;
    /* frames sent but not yet answered by answer_start, oldest first */
    uint64_t sent_us[LG_SENT_RING];
    uint8_t sent_head, sent_n;
    /* the answer in progress */
    bool ans_active;
    bool ans_first_delta;
    uint64_t ans_frame_us; /* send time of its frame; 0 when unknown */
    long long ans_id;
    /* per-session counts in the measured window */
    uint64_t w_frames, w_answers;
    uint64_t srv_replaced; /* frames_replaced from the last vlm_response metrics */
} lg_sess_t;

typedef struct {
    unsigned char *data;
    size_t len;
} lg_jpeg_t;

typedef struct {
    uint32_t sessions;
    uint64_t w_frames, w_answers, w_errors;
} lg_user_t;

struct lg_run {
    lg_opts_t *o;
    uv_loop_t *loop;
    SSL_CTX *tls;
    const char *sni;             /* host name for SNI; NULL for an address literal */
    struct sockaddr_storage dst;
    lg_sess_t *sess;
    lg_user_t *users;
    lg_jpeg_t jpegs[LG_MAX_JPEGS];
    unsigned char *scratch;      /* one masked binary frame */
    size_t scratch_len;
    lg_rng_t rng;                /* mask keys, reservoir */

    uint64_t t0_us;
    uint64_t measure_start_us, measure_end_us;
    bool measuring;
    bool stopping;
    bool finished;
    uint32_t launched;
    uint32_t open_conns;         /* started lg_conns whose on_closed has not fired */
    uint32_t ready_now;          /* sessions in READY */

    uv_timer_t ramp_timer;
    uv_timer_t phase_timer;
    uv_timer_t tick_timer;       /* 1 s: progress, connect timeouts */
    uv_timer_t push_timer;
    uv_timer_t ping_timer;
    uv_timer_t lag_timer;
    uv_timer_t deadline_timer;
    uv_check_t coalesce;
    uint64_t last_pass_us;
    uint64_t reads, reads_at_lag, reads_per_s; /* socket deliveries, for coalescing */
    uint64_t lag_expected_us;

    /* whole run */
    uint32_t n_connected, n_failed;
    lg_counters_t fail_reasons;
    lg_counters_t errors;        /* server "error" messages by code, whole run */
    lg_counters_t close_codes;   /* close frames from the server, by code */
    lg_counters_t lost_reasons;  /* why sessions ended early after READY */
    uint64_t frames_total, answers_total, deltas_total;
    uint64_t lost_after_ready;   /* sockets that ended without our asking, after READY */
    uint64_t answers_checked, answers_mismatched;
    uint64_t msgs_unknown, binary_msgs, stats_msgs, credits_ignored, frames_skipped;
    uint64_t answer_errors;      /* an answer that started and ended in an error */
    uint64_t frames_unanswered;  /* sent frames skipped over by a later dispatch (replaced) */
    uint64_t attrib_fallbacks;   /* answer_start matched to a frame by the fallback rule */
    uint64_t srv_replaced;       /* sum of the sessions' frames_replaced (server metrics) */

    /* measured window */
    uint64_t w_frames, w_answers, w_deltas, w_errors;
    uint64_t w_cpu_us_start, w_cpu_us;   /* user + system */
    uint64_t w_sys_us_start, w_sys_us;   /* system only */
    uint64_t w_msgs_in;                  /* WebSocket messages received */
    uint64_t w_bytes_out;                /* bytes handed to lg_conn_send for frames */
    lg_samples_t lat_total, lat_ttft, srv_queue, srv_age, srv_ttft, srv_latency, connect_ms, loop_lag, ping_rtt;
};

/* lg_session.c */
/** Open session s's socket (ramp). */
void lg_session_launch(lg_sess_t *s);
/** Begin a clean close: WebSocket close 1000, then the socket. */
void lg_session_shutdown(lg_sess_t *s);
/** Send a frame now (push mode). */
void lg_session_push(lg_sess_t *s, uint64_t now_us);
/** Send an application ping ({"type":"ping","t":now}); the pong gives the round trip. */
void lg_session_ping(lg_sess_t *s, uint64_t now_us);
/** Count s as failed with reason (once) and close it. */
void lg_session_fail(lg_sess_t *s, const char *reason);

/* lg_main.c */
/** A session's socket is gone; ends the run when it was the last one during shutdown. */
void lg_run_conn_gone(lg_run_t *r);

/* lg_report.c */
/** Print the human summary to stdout and, with --out, write the JSON report. Returns 0 or
 * LV_EIO when the JSON file could not be written. */
int lg_report(lg_run_t *r);

/** CPU time used by this process so far (user + system), microseconds; *sys_us (may be NULL)
 * gets the system part. */
uint64_t lg_cpu_us(uint64_t *sys_us);

#endif

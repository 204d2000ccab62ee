/* lv_config.h - everything `livevlm serve` is configured with: flags, environment, config file.
 * Read once at start; the only other global besides the loop. */
#ifndef LV_CONFIG_H
#define LV_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "lv_httputil.h"
#include "lv_redisurl.h"
#include "lv_rtspurl.h"

#define LV_MAX_BACKENDS 16
#define LV_CONFIG_MAX_CAMERAS 64 /* the camera set's own cap too (LV_MAX_CAMERAS, lv_camera.h) */
#define LV_CONFIG_MAX_TRUSTED_PROXIES 32

typedef struct {
    char id[65];
    char url[512];
    char key_env[128];   /* name of the environment variable holding the key ("" = none) */
    char key[512];       /* the key itself when it came from the config file or LIVEVLM_API_KEY */
    int max_concurrency; /* 0 = default */
    int min_concurrency; /* adaptive window floor; 0 = 1 */
    int adaptive;        /* -1 = default (on), 0 off, 1 on */
    int max_side;        /* scale frames down to this longest side for this backend; 0 = as sent */
    int jpeg_quality;    /* quality of scaled frames; 0 = 85 */
    char models[1024];   /* comma-separated; "" = discover from /v1/models */
} lv_backend_spec_t;

#define LV_MAX_USER_WEIGHTS 256

typedef struct {
    char user[64];
    int weight;
} lv_user_weight_t;

/* --auth: who may use the server (docs/operations.md "Accounts"). */
typedef enum {
    LV_AUTH_ACCOUNTS = 0, /* the default: users, API keys, sign-in, OIDC/JWT when configured */
    LV_AUTH_TOKEN = 1,    /* one shared access token (a one-person setup) */
    LV_AUTH_NONE = 2,     /* nobody is asked (loopback binds only) */
    LV_AUTH_PROXY = 3,    /* accounts, and a --trusted-proxy's user header signs people in */
} lv_auth_mode_t;

typedef struct {
    char host[256];
    int port;
    char port_file[512];
    bool tls;
    char tls_cert[512];
    char tls_key[512];
    char config_dir[512];
    bool auth_none;              /* auth_mode == LV_AUTH_NONE (kept for the many places that ask) */
    lv_auth_mode_t auth_mode;
    /* accounts (lv_accounts.h): the database, single sign-on, bearer JWTs, the proxy header */
    char db_url[512];            /* --db: "" = SQLite <config_dir>/livevlm.db; postgres://... */
    char auth_proxy_header[64];  /* --auth proxy: the header naming the user (X-Forwarded-User) */
    char oidc_issuer[256];       /* --oidc-issuer URL: OpenID Connect sign-in; "" = off */
    char oidc_client_id[128];
    char oidc_client_secret[256]; /* --oidc-client-secret or LIVEVLM_OIDC_CLIENT_SECRET; never logged */
    char oidc_redirect_url[512]; /* "" = https://<Host of the request>/auth/oidc/callback */
    char oidc_scopes[128];       /* default "openid email profile" */
    char oidc_tenant_claim[64];  /* claim naming the user's tenant ("" = default tenant) */
    char oidc_role_claim[64];    /* claim whose value(s) name the role ("" = user) */
    char oidc_default_role[16];  /* role when the claim says nothing (default "user") */
    char jwt_issuer[256];        /* --jwt-issuer: bearer JWTs from this issuer ("" = oidc_issuer) */
    char jwt_audience[128];      /* --jwt-audience ("" = oidc_client_id) */
    bool log_json;               /* --log-format json */
    int backend_thread;          /* --backend-thread: -1 auto (on with more than one CPU), 0, 1 */
    bool backend_client_curl;    /* --backend-client curl: every backend request through libcurl */
    /* --trusted-proxy ADDR[/BITS]: peers whose X-Forwarded-For names the client (lv_httpd.c,
     * docs/security.md "Behind a reverse proxy"); none by default, and then the header is never
     * read. The list of the highest source that gives any (flags, environment, file) is used. */
    lv_ipnet_t trusted_proxies[LV_CONFIG_MAX_TRUSTED_PROXIES];
    size_t n_trusted_proxies;
    lv_backend_spec_t backends[LV_MAX_BACKENDS];
    size_t n_backends;
    bool detect;
    bool allow_client_urls;
    size_t max_sessions;
    size_t max_sessions_per_ip;
    size_t max_sockets_per_ip;
    int header_timeout_s;        /* time box of a request head; 0 = the default (lv_net.h) */
    size_t max_pending_per_ip;   /* sockets per address in TLS handshake or head; 0 = default */
    size_t max_frame_bytes;
    int max_frame_side;
    unsigned long max_frame_pixels;
    int session_idle_s;
    int connect_timeout_ms;
    int first_token_timeout_ms;
    int total_timeout_ms;
    int stream_idle_timeout_ms;  /* after the first token, the longest silence of a stream; 0 = none */
    int detached_cancel_ms;      /* cancel a session's backend work this long after its last socket left */
    int default_backend_max;
    int stats_period_ms;
    int delta_rate;              /* delta messages a second aimed at in all (lv_pipeline_t.delta_rate) */
    int max_frame_age_ms;        /* 0 = two session intervals, at least 2 s */
    int user_fpm;                /* frames per minute per user; 0 = unlimited */
    lv_user_weight_t user_weights[LV_MAX_USER_WEIGHTS];
    size_t n_user_weights;
    bool metrics_public;
    int max_webrtc;              /* WebRTC streams (POST /offer) at once, server-wide (lv_webrtc.h) */
    char stun_server[256];       /* stun://host:port for WebRTC ICE; "" = none (loopback, LAN) */
    char web_root[512];
    char log_level[16];
    char state_file[512];        /* sessions across restarts: "" = <config_dir>/sessions.db, "none" = off */
    char config_file[512];       /* --config FILE ("" = none); loaded under env and flags */
    bool print_token_url;        /* print the URL with the token on stdout even when not a terminal */
    /* --camera ID=URL / "camera" in the file: admin-defined RTSP cameras (lv_rtspurl.h); the
     * definitions hold passwords: never log or show them, only their url_clean */
    lv_camera_def_t cameras[LV_CONFIG_MAX_CAMERAS];
    size_t n_cameras;
    /* cluster mode (docs/internals/cluster.md): --redis URL makes `serve` one frontend of a
     * cluster and is what `worker` takes its jobs from; "" = single node (no Redis at all). The URL
     * may hold a password: log only lv_redisurl_clean of it */
    char redis_url[LV_REDISURL_MAX + 1];
    bool workers_inline;         /* serve --redis --workers-inline: a worker in the same process */
    char node_id[33];            /* --node-id: this frontend's or worker's id in the cluster ("" = random) */
} lv_config_t;

/** Built-in defaults (config_dir from $XDG_CONFIG_HOME or ~/.config, + "/livevlm"). */
void lv_config_defaults(lv_config_t *c);
/** Everything `serve` is configured with, in this order of precedence (the later wins):
 * built-in defaults (the caller sets them first), the --config file, LIVEVLM_* environment
 * variables, flags. Flags win wherever --config stands among them. On error writes a message to
 * err and returns LV_EINVAL; returns 1 when --help was asked for (caller prints it, exits 0). */
int lv_config_load(lv_config_t *c, int argc, char **argv, char *err, size_t err_size);
/** Apply `serve` flags only (argv after the subcommand), in order; `--config FILE` just records
 * FILE in c->config_file (lv_config_load reads it). LV_EINVAL with a message in err; 1 on --help. */
int lv_config_parse_args(lv_config_t *c, int argc, char **argv, char *err, size_t err_size);
/** Apply LIVEVLM_* environment variables. */
int lv_config_apply_env(lv_config_t *c, char *err, size_t err_size);
/** Check a bind address and write its bindable form to out (IPv6 brackets removed): an IPv4
 * dotted quad, an IPv6 literal (with or without brackets) or "localhost". A host with a port or
 * anything else is LV_EINVAL with a message naming `what` (the flag or variable) in err. */
int lv_config_check_host(const char *what, const char *host, char *out, size_t out_size, char *err,
                         size_t err_size);
/** Load a JSON config file (keys are the long flag names without "--"; "backends" is an array of
 * {id,url,api_key,api_key_env,max_concurrency,models}). */
int lv_config_load_file(lv_config_t *c, const char *path, char *err, size_t err_size);
/** Check cross-field rules (auth none only on loopback, tls files in pairs...). */
int lv_config_validate(const lv_config_t *c, char *err, size_t err_size);
/** "accounts", "token", "proxy" or "none" to a mode; LV_EINVAL for anything else. */
int lv_config_parse_auth(const char *v, lv_auth_mode_t *out);
/** The mode's name as --auth takes it. */
const char *lv_config_auth_name(lv_auth_mode_t m);
/** Print `serve --help`. */
void lv_config_print_help(const char *prog);
/** 1 if host is a loopback address (127.0.0.0/8, ::1, localhost). */
int lv_host_is_loopback(const char *host);

#endif

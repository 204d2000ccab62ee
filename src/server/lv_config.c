/* lv_config.c - flags, environment and config file for `livevlm serve`. */
#include "lv_config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lv_common.h"

void lv_config_defaults(lv_config_t *c)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->host, sizeof(c->host), "0.0.0.0");
    c->port = 8090;
    c->tls = true;
    c->detect = true;
    c->max_sessions = 10000;
    /* a classroom or an office behind one NAT address; only sessions with a socket count */
    c->max_sessions_per_ip = 100;
    c->max_webrtc = 64;
    c->max_sockets_per_ip = 200;
    c->max_frame_bytes = 4u << 20;
    c->max_frame_side = 8192;
    c->max_frame_pixels = 16777216ul;
    c->session_idle_s = 300;
    c->backend_thread = -1;
    c->connect_timeout_ms = 5000;
    c->first_token_timeout_ms = 60000;
    c->total_timeout_ms = 180000;
    c->stream_idle_timeout_ms = 5000;
    c->detached_cancel_ms = 2000;
    c->default_backend_max = 16;
    c->stats_period_ms = 1000;
    c->delta_rate = 2500;
    snprintf(c->log_level, sizeof(c->log_level), "info");
    snprintf(c->auth_proxy_header, sizeof(c->auth_proxy_header), "X-Forwarded-User");
    snprintf(c->oidc_scopes, sizeof(c->oidc_scopes), "openid email profile");
    snprintf(c->oidc_default_role, sizeof(c->oidc_default_role), "user");
    const char *xdg = getenv("XDG_CONFIG_HOME");
    const char *home = getenv("HOME");
    if (xdg && *xdg)
        snprintf(c->config_dir, sizeof(c->config_dir), "%s/livevlm", xdg);
    else
        snprintf(c->config_dir, sizeof(c->config_dir), "%s/.config/livevlm", home && *home ? home : ".");
}

void lv_config_print_help(const char *prog)
{
    printf(
        "Usage: %s serve [OPTIONS]\n"
        "\n"
        "Serve the livevlm web UI, its WebSocket API and the model scheduler on one port.\n"
        "Open the https URL it prints on standard output and press Start.\n"
        "\n"
        "Network and security:\n"
        "  --host ADDR              address to bind: IPv4 (0.0.0.0, 127.0.0.1), IPv6 (::, ::1) or\n"
        "                           localhost; no port here (default 0.0.0.0; 127.0.0.1 for local only)\n"
        "  --port N                 port (default 8090; 0 picks a free one)\n"
        "  --port-file PATH         write the bound port to PATH once listening\n"
        "  --no-tls                 plain HTTP (behind a TLS-terminating proxy; browsers allow the\n"
        "                           camera on http only for localhost)\n"
        "  --tls-cert FILE --tls-key FILE\n"
        "                           your certificate; default: a self-signed one generated on first\n"
        "                           start in the config dir (SANs: localhost, host name, local addresses)\n"
        "  --config-dir DIR         token, cert.pem, key.pem, sessions.db (default\n"
        "                           $XDG_CONFIG_HOME/livevlm or ~/.config/livevlm)\n"
        "  --config FILE            JSON file with any of these options (keys = long names without\n"
        "                           --, - or _ between words, plus \"backends\": [{\"id\",\"url\",\n"
        "                           \"api_key\",\"api_key_env\",\"max_concurrency\",\"models\":[...]}]);\n"
        "                           the environment and flags override it, wherever --config\n"
        "                           stands among the flags\n"
        "  --print-token-url        print the URL with the access token on standard output even when\n"
        "                           that is not a terminal (default: only on a terminal; the log never\n"
        "                           carries the token)\n"
        "  --auth MODE              accounts (default): users sign in (password, OpenID Connect) or\n"
        "                           send an API key; the first start creates an admin and prints its\n"
        "                           password once. token: one shared access token (a one-person\n"
        "                           setup). proxy: accounts, and a --trusted-proxy's user header\n"
        "                           (--auth-proxy-header) signs people in. none: no credential,\n"
        "                           allowed only on loopback binds\n"
        "  --trusted-proxy ADDR[/BITS]\n"
        "                           a reverse proxy in front (haproxy, nginx; IPv4 or IPv6, /BITS for a\n"
        "                           network; repeatable): a request from it counts as coming from the\n"
        "                           client it names in X-Forwarded-For (the rightmost address there that\n"
        "                           is not a trusted proxy itself), so per-address limits, fair shares and\n"
        "                           logs see each client. Connections still in TLS handshake or head\n"
        "                           stay counted per peer (--max-pending-per-ip). Default none: the\n"
        "                           header is ignored (anyone could write it). Config file: a string or\n"
        "                           a list; LIVEVLM_TRUSTED_PROXY: comma-separated\n"
        "\n"
        "Accounts (--auth accounts or proxy; docs/operations.md \"Accounts\"):\n"
        "  --db URL                 the accounts database: a SQLite file (default\n"
        "                           <config-dir>/livevlm.db) or postgres://user:pw@host/db (needed in\n"
        "                           a cluster: every frontend shares it); LIVEVLM_DB\n"
        "  --auth-proxy-header NAME with --auth proxy: the header a --trusted-proxy names the signed-in\n"
        "                           user in (default X-Forwarded-User); from any other peer it is ignored\n"
        "  --oidc-issuer URL        OpenID Connect sign-in (authorization code + PKCE) with this issuer\n"
        "  --oidc-client-id ID --oidc-client-secret S (or LIVEVLM_OIDC_CLIENT_SECRET)\n"
        "  --oidc-redirect-url URL  default https://<host the browser used>/auth/oidc/callback\n"
        "  --oidc-scopes LIST       default \"openid email profile\"\n"
        "  --oidc-tenant-claim C    the claim naming the user's tenant (default: tenant \"default\")\n"
        "  --oidc-role-claim C      the claim whose value (or list) holds admin, user or viewer\n"
        "  --oidc-default-role R    the role when that claim names none (default user)\n"
        "  --jwt-issuer URL         accept Authorization: Bearer JWTs (RS256/ES256) from this issuer,\n"
        "                           keys from its JWKS (default: --oidc-issuer)\n"
        "  --jwt-audience AUD       the aud a bearer JWT must carry (default: --oidc-client-id)\n"
        "  --log-format text|json   json: one JSON object per line with tenant, user, session and\n"
        "                           answer ids (default text)\n"
        "\n"
        "Model backends (OpenAI-compatible: Ollama, vLLM, SGLang, llama.cpp, NIM, OpenAI...):\n"
        "  --backend ID=URL         add a backend; URL is its OpenAI base, e.g.\n"
        "                           ollama=http://127.0.0.1:11434/v1 (repeatable)\n"
        "  --backend-key ID=ENVVAR  read that backend's API key from environment variable ENVVAR\n"
        "                           (keys never go on the command line or to browsers)\n"
        "  --backend-max ID=N       at most N concurrent requests to that backend (default 16; the\n"
        "                           adaptive window starts at a quarter of it)\n"
        "  --backend-models ID=a,b  serve only these models from it (default: its /v1/models)\n"
        "  --no-detect              do not look for local backends when none is configured\n"
        "                           (default: probe 127.0.0.1 ports 11434 Ollama, 8000 vLLM,\n"
        "                           30000 SGLang, 8080 llama.cpp, 1234 LM Studio)\n"
        "  --backend-min ID=N       the adaptive window never goes below N (default 4, or the max\n"
        "                           when that is smaller)\n"
        "  --backend-adaptive ID=on|off  adapt the concurrency window to measured latency (default on;\n"
        "                           off = always --backend-max)\n"
        "  --backend-thread auto|on|off  run backend requests (HTTP, streams, parsing) on a thread of\n"
        "                           their own, so they use a second core (default auto: on when\n"
        "                           this machine has more than one CPU, except on a cluster\n"
        "                           frontend without --workers-inline, which sends none)\n"
        "  --backend-client auto|curl  how chat requests reach backends: auto (default) sends those\n"
        "                           to plain http:// backends through livevlm's own HTTP/1.1 client\n"
        "                           (a read per streamed chunk, kept-alive connections) and the rest\n"
        "                           (https://, or a proxy set in http_proxy/all_proxy/ALL_PROXY, for a\n"
        "                           backend host that is not loopback) through libcurl; curl sends every\n"
        "                           one through libcurl\n"
        "  --backend-max-side ID=N  scale frames down to a longest side of N for that backend, off the\n"
        "                           loop thread (default 0: send frames as the page encoded them)\n"
        "  --backend-jpeg-quality ID=Q  JPEG quality of scaled frames (default 85)\n"
        "  --connect-timeout-ms N   backend connect timeout (default 5000)\n"
        "  --first-token-timeout-ms N  time allowed until the first token (default 60000)\n"
        "  --total-timeout-ms N     time allowed for a whole answer (default 180000)\n"
        "  --stream-idle-timeout-ms N  after the first token, a stream silent for N ms has stalled:\n"
        "                           the request is dropped and the page gets backend_timeout\n"
        "                           (default 5000; 0 = only the total timeout applies)\n"
        "  --detached-cancel-ms N   cancel a session's backend request and waiting frame N ms after its\n"
        "                           last socket closed (default 2000: a reload keeps its answer)\n"
        "\n"
        "Limits:\n"
        "  --max-sessions N         sessions in total (default 10000)\n"
        "  --max-sessions-per-ip N  sessions per client address (default 100: a classroom behind one NAT\n"
        "                           address); only sessions with a socket count against it: a new one\n"
        "                           replaces that address's longest-idle session without a socket\n"
        "  --max-sockets-per-ip N   WebSockets open per client address (default 200)\n"
        "  --max-pending-per-ip N   connections per client address still in their TLS handshake or\n"
        "                           request head (default 64); a newer one is closed at once\n"
        "  --header-timeout-s S     a request head must arrive within S seconds (default 10); fixed\n"
        "                           time boxes: TLS handshake 10 s, request body 30 s, keep-alive idle\n"
        "                           5 s, output stalled 30 s, WebSocket pinged after 30 s silent and\n"
        "                           closed at 40 s; connections in total: the descriptor limit - 256\n"
        "  --max-frame-bytes N      largest camera frame accepted (default 4194304)\n"
        "  --session-idle S         forget a session S seconds after its last socket left (default 300)\n"
        "  --state-file PATH|none   keep sessions (settings, answer history, resume secret hashes) in\n"
        "                           PATH across restarts (default CONFIG_DIR/sessions.db); none: forget\n"
        "                           them on restart. Saved every second; a crash loses about 2 s\n"
        "  --user-fpm N             frames per minute per user (client address); 0 = no limit (default)\n"
        "  --user-weight USER=W     fair-share weight of a user (client address), 1..1000 (default 1)\n"
        "  --max-frame-age-ms N     drop a waiting frame older than N ms instead of sending it\n"
        "                           (default 0: two of its session's intervals, at least 2000)\n"
        "\n"
        "Cameras (RTSP; docs/operations.md \"Cameras\"):\n"
        "  --camera ID=URL          an RTSP camera sessions may watch (repeatable; config file:\n"
        "                           \"camera\": \"ID=URL\" or a list of them). ID: 1..32 of a-z 0-9 _ -;\n"
        "                           URL: rtsp:// or rtsps://[user:pass@]host[:port]/path, nothing else\n"
        "                           (no file://, http://). H.264 or H.265 over TCP. Credentials go to\n"
        "                           the camera only: logs, metrics, pages and the API show the URL\n"
        "                           without them. The stream is opened when the first session\n"
        "                           watches, closed 30 s after the last one left, reconnected with\n"
        "                           1..30 s backoff, and restarted when no picture came for 10 s\n"
        "\n"
        "Cluster (docs/operations.md \"Cluster\"; single node needs none of this):\n"
        "  --redis URL              be one frontend of a cluster: sessions, the job queue and the\n"
        "                           limits live in Redis at URL (redis://[user:pass@]host[:port][/db] or\n"
        "                           unix:///path.sock; LIVEVLM_REDIS_PASSWORD for a socket's password);\n"
        "                           answers come from `livevlm worker` processes (`livevlm worker\n"
        "                           --help`). Every frontend needs the same access token (--config-dir\n"
        "                           or a copy of its token file) and the same --backend flags as the\n"
        "                           workers: a frontend keeps its backend pool as the model catalogue\n"
        "                           the page picks from and settings are checked against (its health\n"
        "                           shows in the page) but never sends a request through it. No\n"
        "                           state file: sessions live in Redis. /readyz is 503 while Redis is\n"
        "                           unreachable. Without --redis nothing here applies\n"
        "  --workers-inline         with --redis: also run a worker in this process (it takes jobs for\n"
        "                           the whole cluster with this process's --backend flags)\n"
        "  --node-id ID             this process's id in the cluster, 1..32 of a-z A-Z 0-9 _ - (default:\n"
        "                           random at each start); shown in /metrics and logs. One per\n"
        "                           process: two live frontends with one id answer /readyz 503\n"
        "\n"
        "WebRTC ingest (POST /offer; docs/protocol.md):\n"
        "  --max-webrtc N           WebRTC video streams at once, server-wide (default 64; 4 per user)\n"
        "  --stun URL               stun://host:port for ICE (default none: loopback and LAN need none)\n"
        "\n"
        "Other:\n"
        "  --stats-period-ms N      system stats sampling period (default 1000)\n"
        "  --delta-rate N           delta messages a second the server aims at, all answers together\n"
        "                           (default 2500). An answer's first piece goes at once, later text\n"
        "                           every 40 ms, or every answers-streaming x 1000 / N ms (up to 250)\n"
        "                           while more than N / 25 answers stream at once. 0: always 40 ms\n"
        "  --metrics-public         serve /metrics without a credential (for a Prometheus scraper on a\n"
        "                           trusted network; default: the token is needed)\n"
        "  --web-root DIR           serve the UI from DIR instead of the embedded copy (development)\n"
        "  --log-level L            debug, info, warn or error (default info)\n"
        "  -h, --help               this text\n"
        "\n"
        "Environment: LIVEVLM_BACKEND=URL and LIVEVLM_API_KEY=KEY add a backend \"default\";\n"
        "LIVEVLM_HOST, LIVEVLM_PORT, LIVEVLM_CONFIG_DIR, LIVEVLM_LOG_LEVEL, LIVEVLM_REDIS,\n"
        "LIVEVLM_TRUSTED_PROXY.\n"
        "Precedence: flags > environment > --config file > defaults.\n"
        "\n"
        "Examples:\n"
        "  %s serve                                   # detect local backends, https on :8090\n"
        "  %s serve --backend vllm=http://gpu1:8000/v1 --backend-max vllm=16\n"
        "  OPENAI_API_KEY=sk-... %s serve --backend openai=https://api.openai.com/v1 \\\n"
        "      --backend-key openai=OPENAI_API_KEY --backend-models openai=gpt-4o-mini\n"
        "  %s fakevlm --port 9100 &  %s serve --backend fake=http://127.0.0.1:9100/v1  # no GPU\n",
        prog, prog, prog, prog, prog, prog);
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return LV_EINVAL;
    *out = v;
    return 0;
}

static int copy_str(char *dst, size_t size, const char *src)
{
    size_t n = strlen(src);
    if (n >= size)
        return LV_ELIMIT;
    memcpy(dst, src, n + 1);
    return 0;
}

static lv_backend_spec_t *find_backend(lv_config_t *c, const char *id, size_t id_len)
{
    for (size_t i = 0; i < c->n_backends; i++)
        if (strlen(c->backends[i].id) == id_len && memcmp(c->backends[i].id, id, id_len) == 0)
            return &c->backends[i];
    return NULL;
}

static lv_backend_spec_t *add_backend(lv_config_t *c, const char *id, const char *url)
{
    lv_backend_spec_t *b = find_backend(c, id, strlen(id));
    if (!b) {
        if (c->n_backends >= LV_MAX_BACKENDS)
            return NULL;
        b = &c->backends[c->n_backends++];
        memset(b, 0, sizeof(*b));
        b->adaptive = -1;
        if (copy_str(b->id, sizeof(b->id), id)) {
            c->n_backends--;
            return NULL;
        }
    }
    if (url && copy_str(b->url, sizeof(b->url), url))
        return NULL;
    return b;
}

/* --camera ID=URL. A later definition of the same ID replaces the earlier one (flags over the
 * file). The error never quotes the value: it may hold a password. */
static int add_camera(lv_config_t *c, const char *def, char *err, size_t err_size)
{
    lv_camera_def_t parsed;
    const char *why = NULL;
    if (lv_camera_def_parse(def, &parsed, &why) != 0) {
        snprintf(err, err_size, "--camera: %s (expected ID=rtsp://[user:pass@]host[:port]/path, ID of 1..32 "
                 "characters a-z 0-9 _ -; only rtsp:// and rtsps://)", why ? why : "invalid definition");
        return LV_EINVAL;
    }
    size_t i;
    for (i = 0; i < c->n_cameras; i++)
        if (strcmp(c->cameras[i].id, parsed.id) == 0)
            break;
    if (i == c->n_cameras) {
        if (c->n_cameras >= LV_CONFIG_MAX_CAMERAS) {
            lv_camera_def_wipe(&parsed);
            snprintf(err, err_size, "--camera: at most %d cameras", LV_CONFIG_MAX_CAMERAS);
            return LV_EINVAL;
        }
        c->n_cameras++;
    }
    c->cameras[i] = parsed;
    lv_camera_def_wipe(&parsed);
    return 0;
}

/* One --trusted-proxy value (what is one address or network: "10.0.0.0/8"); `what` names where it
 * came from in the error. */
static int add_trusted_proxy(lv_config_t *c, const char *what, const char *v, size_t len, char *err, size_t err_size)
{
    char text[64];
    lv_ipnet_t n;
    int rc = LV_EINVAL;
    if (len < sizeof(text) && !memchr(v, '\0', len)) {
        memcpy(text, v, len);
        text[len] = '\0';
        rc = lv_ipnet_parse(text, &n);
    }
    if (rc) {
        snprintf(err, err_size,
                 "%s '%.*s': expected an IPv4 or IPv6 address with an optional /BITS prefix, e.g. 127.0.0.1, "
                 "10.0.0.0/8 or fd00::/8 (no brackets, no port)",
                 what, (int)LV_MIN(len, (size_t)80), v);
        return LV_EINVAL;
    }
    if (c->n_trusted_proxies >= LV_CONFIG_MAX_TRUSTED_PROXIES) {
        snprintf(err, err_size, "%s: at most %d trusted proxies (give a network with /BITS)", what,
                 LV_CONFIG_MAX_TRUSTED_PROXIES);
        return LV_EINVAL;
    }
    c->trusted_proxies[c->n_trusted_proxies++] = n;
    return 0;
}

/* "ID=VALUE" flags; the backend must exist for everything but --backend itself */
static int split_pair(const char *arg, char *id, size_t id_size, const char **value)
{
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg || (size_t)(eq - arg) >= id_size)
        return LV_EINVAL;
    memcpy(id, arg, (size_t)(eq - arg));
    id[eq - arg] = '\0';
    *value = eq + 1;
    return 0;
}

typedef enum { OPT_STR, OPT_INT, OPT_FLAG, OPT_SPECIAL } opt_kind_t;

int lv_config_check_host(const char *what, const char *host, char *out, size_t out_size, char *err,
                         size_t err_size)
{
    unsigned char addr[16];
    char inner[256];
    const char *colon = strrchr(host, ':');
    size_t len = strlen(host);
    if (strcmp(host, "localhost") == 0 || inet_pton(AF_INET, host, addr) == 1 ||
        inet_pton(AF_INET6, host, addr) == 1) {
        if (copy_str(out, out_size, host))
            goto bad;
        return 0;
    }
    if (host[0] == '[') {
        const char *close = strchr(host, ']');
        if (close && close[1] == ':') {
            snprintf(err, err_size, "%s '%s' carries a port: give the address alone and the port with --port", what,
                     host);
            return LV_EINVAL;
        }
        /* "[::1]": the brackets belong to URLs, not to the address that is bound */
        if (close && close[1] == '\0' && (size_t)(close - host - 1) < sizeof(inner)) {
            memcpy(inner, host + 1, (size_t)(close - host - 1));
            inner[close - host - 1] = '\0';
            if (inet_pton(AF_INET6, inner, addr) == 1) {
                if (copy_str(out, out_size, inner))
                    goto bad;
                return 0;
            }
        }
        goto bad;
    }
    /* "127.0.0.1:80", "localhost:8090": one colon with digits after it is a port, not IPv6 */
    if (colon && colon != host && strchr(host, ':') == colon && colon[1] &&
        strspn(colon + 1, "0123456789") == strlen(colon + 1)) {
        snprintf(err, err_size, "%s '%s' carries a port: give the address alone (%.*s) and the port with --port",
                 what, host, (int)(colon - host), host);
        return LV_EINVAL;
    }
    if (len && strspn(host, "0123456789.") == len) {
        /* inet_aton would take "127.1"; a bind address is written in full so nobody has to guess */
        snprintf(err, err_size, "%s '%s': an IPv4 address is written as four numbers 0-255, e.g. 127.0.0.1",
                 what, host);
        return LV_EINVAL;
    }
bad:
    snprintf(err, err_size,
             "%s '%s': expected an IPv4 address (127.0.0.1, 0.0.0.0), an IPv6 address (::1, [::1], ::) or localhost",
             what, host);
    return LV_EINVAL;
}

/* scan: the first pass of lv_config_load, which only looks for --config and --help and checks
 * what it can: a backend that the config file may still define is not an error yet. */
static int parse_flags(lv_config_t *c, int argc, char **argv, char *err, size_t err_size, bool scan)
{
    bool trusted_proxy_seen = false; /* the flags' list replaces one from the environment or file */
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = (i + 1 < argc) ? argv[i + 1] : NULL;
        long n;
#define NEED_VALUE()                                                                                \
    do {                                                                                            \
        if (!v) {                                                                                   \
            snprintf(err, err_size, "%s needs a value (see --help)", a);                            \
            return LV_EINVAL;                                                                       \
        }                                                                                           \
        i++;                                                                                        \
    } while (0)
#define STR_OPT(name, field)                                                                        \
    if (strcmp(a, name) == 0) {                                                                     \
        NEED_VALUE();                                                                               \
        if (copy_str(c->field, sizeof(c->field), v)) {                                              \
            snprintf(err, err_size, "%s: value too long", a);                                       \
            return LV_EINVAL;                                                                       \
        }                                                                                           \
        continue;                                                                                   \
    }
#define INT_OPT(name, field, lo, hi)                                                                \
    if (strcmp(a, name) == 0) {                                                                     \
        NEED_VALUE();                                                                               \
        if (parse_long(v, lo, hi, &n)) {                                                            \
            snprintf(err, err_size, "%s: expected a whole number from %ld to %ld, got '%s'", a,     \
                     (long)(lo), (long)(hi), v);                                                    \
            return LV_EINVAL;                                                                       \
        }                                                                                           \
        c->field = n;                                                                               \
        continue;                                                                                   \
    }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
            return 1;
        if (strcmp(a, "--host") == 0) {
            NEED_VALUE();
            if (lv_config_check_host("--host", v, c->host, sizeof(c->host), err, err_size))
                return LV_EINVAL;
            continue;
        }
        if (strcmp(a, "--print-token-url") == 0) {
            c->print_token_url = true;
            continue;
        }
        INT_OPT("--port", port, 0, 65535)
        STR_OPT("--port-file", port_file)
        STR_OPT("--tls-cert", tls_cert)
        STR_OPT("--tls-key", tls_key)
        STR_OPT("--config-dir", config_dir)
        STR_OPT("--state-file", state_file)
        STR_OPT("--redis", redis_url)
        STR_OPT("--node-id", node_id)
        if (strcmp(a, "--workers-inline") == 0) {
            c->workers_inline = true;
            continue;
        }
        STR_OPT("--web-root", web_root)
        STR_OPT("--log-level", log_level)
        INT_OPT("--max-sessions", max_sessions, 1, 1000000)
        INT_OPT("--max-sessions-per-ip", max_sessions_per_ip, 1, 1000000)
        INT_OPT("--max-webrtc", max_webrtc, 0, 4096)
        STR_OPT("--stun", stun_server)
        INT_OPT("--max-sockets-per-ip", max_sockets_per_ip, 1, 1000000)
        INT_OPT("--max-frame-bytes", max_frame_bytes, 1024, 64l << 20)
        INT_OPT("--session-idle", session_idle_s, 1, 7 * 86400)
        INT_OPT("--connect-timeout-ms", connect_timeout_ms, 50, 600000)
        INT_OPT("--first-token-timeout-ms", first_token_timeout_ms, 50, 3600000)
        INT_OPT("--total-timeout-ms", total_timeout_ms, 50, 3600000)
        INT_OPT("--stream-idle-timeout-ms", stream_idle_timeout_ms, 0, 3600000)
        INT_OPT("--detached-cancel-ms", detached_cancel_ms, 0, 3600000)
        INT_OPT("--stats-period-ms", stats_period_ms, 250, 60000)
        INT_OPT("--delta-rate", delta_rate, 0, 10000000)
        INT_OPT("--max-frame-age-ms", max_frame_age_ms, 0, 3600000)
        INT_OPT("--user-fpm", user_fpm, 0, 1000000)
        INT_OPT("--header-timeout-s", header_timeout_s, 1, 3600)
        INT_OPT("--max-pending-per-ip", max_pending_per_ip, 1, 1000000)
        if (strcmp(a, "--metrics-public") == 0) {
            c->metrics_public = true;
            continue;
        }
        if (strcmp(a, "--user-weight") == 0) {
            NEED_VALUE();
            char user[64];
            const char *val;
            if (split_pair(v, user, sizeof(user), &val) || parse_long(val, 1, 1000, &n)) {
                snprintf(err, err_size, "--user-weight: expected USER=W with W in 1..1000, got '%s'", v);
                return LV_EINVAL;
            }
            if (c->n_user_weights >= LV_MAX_USER_WEIGHTS) {
                snprintf(err, err_size, "--user-weight: at most %d users", LV_MAX_USER_WEIGHTS);
                return LV_EINVAL;
            }
            snprintf(c->user_weights[c->n_user_weights].user, sizeof(c->user_weights[0].user), "%s", user);
            c->user_weights[c->n_user_weights++].weight = (int)n;
            continue;
        }
        if (strcmp(a, "--no-tls") == 0) {
            c->tls = false;
            continue;
        }
        if (strcmp(a, "--no-detect") == 0) {
            c->detect = false;
            continue;
        }
        if (strcmp(a, "--allow-client-urls") == 0) {
            c->allow_client_urls = true;
            continue;
        }
        if (strcmp(a, "--auth") == 0) {
            NEED_VALUE();
            if (lv_config_parse_auth(v, &c->auth_mode) != 0) {
                snprintf(err, err_size, "--auth: expected accounts, token, proxy or none, got '%s'", v);
                return LV_EINVAL;
            }
            c->auth_none = c->auth_mode == LV_AUTH_NONE;
            continue;
        }
        if (strcmp(a, "--backend-thread") == 0) {
            NEED_VALUE();
            if (strcmp(v, "auto") != 0 && strcmp(v, "on") != 0 && strcmp(v, "off") != 0) {
                snprintf(err, err_size, "--backend-thread: expected auto, on or off, got '%s'", v);
                return LV_EINVAL;
            }
            c->backend_thread = strcmp(v, "on") == 0 ? 1 : strcmp(v, "off") == 0 ? 0 : -1;
            continue;
        }
        if (strcmp(a, "--backend-client") == 0) {
            NEED_VALUE();
            if (strcmp(v, "auto") != 0 && strcmp(v, "curl") != 0) {
                snprintf(err, err_size, "--backend-client: expected auto or curl, got '%s'", v);
                return LV_EINVAL;
            }
            c->backend_client_curl = strcmp(v, "curl") == 0;
            continue;
        }
        if (strcmp(a, "--log-format") == 0) {
            NEED_VALUE();
            if (strcmp(v, "json") != 0 && strcmp(v, "text") != 0) {
                snprintf(err, err_size, "--log-format: expected text or json, got '%s'", v);
                return LV_EINVAL;
            }
            c->log_json = strcmp(v, "json") == 0;
            continue;
        }
        STR_OPT("--db", db_url)
        STR_OPT("--auth-proxy-header", auth_proxy_header)
        STR_OPT("--oidc-issuer", oidc_issuer)
        STR_OPT("--oidc-client-id", oidc_client_id)
        STR_OPT("--oidc-client-secret", oidc_client_secret)
        STR_OPT("--oidc-redirect-url", oidc_redirect_url)
        STR_OPT("--oidc-scopes", oidc_scopes)
        STR_OPT("--oidc-tenant-claim", oidc_tenant_claim)
        STR_OPT("--oidc-role-claim", oidc_role_claim)
        STR_OPT("--oidc-default-role", oidc_default_role)
        STR_OPT("--jwt-issuer", jwt_issuer)
        STR_OPT("--jwt-audience", jwt_audience)
        STR_OPT("--config", config_file)
        if (strcmp(a, "--trusted-proxy") == 0) {
            NEED_VALUE();
            if (!trusted_proxy_seen)
                c->n_trusted_proxies = 0;
            trusted_proxy_seen = true;
            if (add_trusted_proxy(c, a, v, strlen(v), err, err_size))
                return LV_EINVAL;
            continue;
        }
        if (strcmp(a, "--camera") == 0) {
            NEED_VALUE();
            if (add_camera(c, v, err, err_size))
                return LV_EINVAL;
            continue;
        }
        if (strcmp(a, "--backend") == 0 || strcmp(a, "--backend-key") == 0 || strcmp(a, "--backend-max") == 0 ||
            strcmp(a, "--backend-models") == 0 || strcmp(a, "--backend-min") == 0 ||
            strcmp(a, "--backend-adaptive") == 0 || strcmp(a, "--backend-max-side") == 0 ||
            strcmp(a, "--backend-jpeg-quality") == 0) {
            NEED_VALUE();
            char id[65];
            const char *val;
            if (split_pair(v, id, sizeof(id), &val)) {
                snprintf(err, err_size, "%s: expected ID=VALUE, got '%s'", a, v);
                return LV_EINVAL;
            }
            lv_backend_spec_t *b;
            if (strcmp(a, "--backend") == 0) {
                b = add_backend(c, id, val);
                if (!b) {
                    snprintf(err, err_size, "--backend: too many backends or value too long");
                    return LV_EINVAL;
                }
                continue;
            }
            b = find_backend(c, id, strlen(id));
            if (!b && scan)
                continue; /* the config file may define it: the second pass decides */
            if (!b) {
                snprintf(err, err_size, "%s %s: no backend '%s' (give --backend %s=URL first)", a, v, id, id);
                return LV_EINVAL;
            }
            if (strcmp(a, "--backend-key") == 0) {
                if (copy_str(b->key_env, sizeof(b->key_env), val) || !getenv(val)) {
                    snprintf(err, err_size, "--backend-key %s: environment variable '%s' is not set", v, val);
                    return LV_EINVAL;
                }
            } else if (strcmp(a, "--backend-min") == 0) {
                if (parse_long(val, 1, 4096, &n)) {
                    snprintf(err, err_size, "--backend-min %s: expected 1..4096", v);
                    return LV_EINVAL;
                }
                b->min_concurrency = (int)n;
            } else if (strcmp(a, "--backend-adaptive") == 0) {
                if (strcmp(val, "on") != 0 && strcmp(val, "off") != 0) {
                    snprintf(err, err_size, "--backend-adaptive %s: expected on or off", v);
                    return LV_EINVAL;
                }
                b->adaptive = strcmp(val, "on") == 0;
            } else if (strcmp(a, "--backend-max-side") == 0) {
                if (parse_long(val, 0, 8192, &n) || (n > 0 && n < 64)) {
                    snprintf(err, err_size, "--backend-max-side %s: expected 0 (off) or 64..8192", v);
                    return LV_EINVAL;
                }
                b->max_side = (int)n;
            } else if (strcmp(a, "--backend-jpeg-quality") == 0) {
                if (parse_long(val, 10, 100, &n)) {
                    snprintf(err, err_size, "--backend-jpeg-quality %s: expected 10..100", v);
                    return LV_EINVAL;
                }
                b->jpeg_quality = (int)n;
            } else if (strcmp(a, "--backend-max") == 0) {
                if (parse_long(val, 1, 4096, &n)) {
                    snprintf(err, err_size, "--backend-max %s: expected 1..4096", v);
                    return LV_EINVAL;
                }
                b->max_concurrency = (int)n;
            } else if (copy_str(b->models, sizeof(b->models), val)) {
                snprintf(err, err_size, "--backend-models: list too long");
                return LV_EINVAL;
            }
            continue;
        }
        snprintf(err, err_size, "unknown option '%s' (see %s)", a, "--help");
        return LV_EINVAL;
#undef NEED_VALUE
#undef STR_OPT
#undef INT_OPT
    }
    return 0;
}

int lv_config_parse_args(lv_config_t *c, int argc, char **argv, char *err, size_t err_size)
{
    return parse_flags(c, argc, argv, err, err_size, false);
}

int lv_config_load(lv_config_t *c, int argc, char **argv, char *err, size_t err_size)
{
    /* flags win wherever --config stands, so the file is found first (on a scratch copy: the
     * flags themselves are applied last, over the file and the environment) */
    lv_config_t *scratch = malloc(sizeof(*scratch));
    char path[sizeof(c->config_file)];
    int rc;
    if (!scratch) {
        snprintf(err, err_size, "out of memory");
        return LV_ENOMEM;
    }
    *scratch = *c;
    rc = parse_flags(scratch, argc, argv, err, err_size, true);
    memcpy(path, scratch->config_file, sizeof(path));
    free(scratch);
    if (rc)
        return rc;
    if (path[0] && (rc = lv_config_load_file(c, path, err, err_size)) != 0)
        return rc;
    if ((rc = lv_config_apply_env(c, err, err_size)) != 0)
        return rc;
    return parse_flags(c, argc, argv, err, err_size, false);
}

int lv_config_parse_auth(const char *v, lv_auth_mode_t *out)
{
    static const struct {
        const char *name;
        lv_auth_mode_t mode;
    } modes[] = {{"accounts", LV_AUTH_ACCOUNTS}, {"token", LV_AUTH_TOKEN}, {"none", LV_AUTH_NONE}, {"proxy", LV_AUTH_PROXY}};
    for (size_t i = 0; i < LV_ARRAY_LEN(modes); i++)
        if (strcmp(v, modes[i].name) == 0) {
            *out = modes[i].mode;
            return 0;
        }
    return LV_EINVAL;
}

const char *lv_config_auth_name(lv_auth_mode_t m)
{
    switch (m) {
    case LV_AUTH_TOKEN:
        return "token";
    case LV_AUTH_NONE:
        return "none";
    case LV_AUTH_PROXY:
        return "proxy";
    default:
        return "accounts";
    }
}

int lv_config_apply_env(lv_config_t *c, char *err, size_t err_size)
{
    const char *v;
    long n;
    if ((v = getenv("LIVEVLM_HOST")) && *v &&
        lv_config_check_host("LIVEVLM_HOST", v, c->host, sizeof(c->host), err, err_size))
        return LV_EINVAL;
    if ((v = getenv("LIVEVLM_PORT")) && *v) {
        if (parse_long(v, 0, 65535, &n)) {
            snprintf(err, err_size, "LIVEVLM_PORT: expected 0..65535, got '%s'", v);
            return LV_EINVAL;
        }
        c->port = (int)n;
    }
    if ((v = getenv("LIVEVLM_CONFIG_DIR")) && *v && copy_str(c->config_dir, sizeof(c->config_dir), v))
        goto toolong;
    if ((v = getenv("LIVEVLM_REDIS")) && *v && copy_str(c->redis_url, sizeof(c->redis_url), v))
        goto toolong;
    if ((v = getenv("LIVEVLM_DB")) && *v && copy_str(c->db_url, sizeof(c->db_url), v))
        goto toolong;
    if ((v = getenv("LIVEVLM_OIDC_CLIENT_SECRET")) && *v &&
        copy_str(c->oidc_client_secret, sizeof(c->oidc_client_secret), v))
        goto toolong;
    if ((v = getenv("LIVEVLM_LOG_LEVEL")) && *v && copy_str(c->log_level, sizeof(c->log_level), v))
        goto toolong;
    if ((v = getenv("LIVEVLM_TRUSTED_PROXY")) && *v) {
        /* "10.0.0.5, 10.0.1.0/24": replaces the config file's list */
        c->n_trusted_proxies = 0;
        for (const char *p = v; *p;) {
            const char *e = p + strcspn(p, ",");
            const char *a = p, *b = e;
            while (a < b && (*a == ' ' || *a == '\t'))
                a++;
            while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
                b--;
            if (a < b && add_trusted_proxy(c, "LIVEVLM_TRUSTED_PROXY", a, (size_t)(b - a), err, err_size))
                return LV_EINVAL;
            p = *e ? e + 1 : e;
        }
    }
    if ((v = getenv("LIVEVLM_BACKEND")) && *v) {
        lv_backend_spec_t *b = add_backend(c, "default", v);
        if (!b)
            goto toolong;
        const char *key = getenv("LIVEVLM_API_KEY");
        if (key && copy_str(b->key, sizeof(b->key), key))
            goto toolong;
    }
    return 0;
toolong:
    snprintf(err, err_size, "an LIVEVLM_* environment value is too long");
    return LV_EINVAL;
}

int lv_config_load_file(lv_config_t *c, const char *path, char *err, size_t err_size)
{
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    int rc = LV_EINVAL;
    if (!root) {
        snprintf(err, err_size, "%s:%d: %s", path, jerr.line, jerr.text);
        return LV_EINVAL;
    }
    if (!json_is_object(root)) {
        snprintf(err, err_size, "%s: expected a JSON object", path);
        goto out;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val)
    {
        if (strcmp(key, "backends") == 0) {
            size_t i;
            json_t *b;
            if (!json_is_array(val)) {
                snprintf(err, err_size, "%s: \"backends\" must be an array", path);
                goto out;
            }
            json_array_foreach(val, i, b)
            {
                const char *id = json_string_value(json_object_get(b, "id"));
                const char *url = json_string_value(json_object_get(b, "url"));
                if (!id || !url) {
                    snprintf(err, err_size, "%s: backends[%zu] needs \"id\" and \"url\" strings", path, i);
                    goto out;
                }
                lv_backend_spec_t *spec = add_backend(c, id, url);
                if (!spec) {
                    snprintf(err, err_size, "%s: backends[%zu]: too many or too long", path, i);
                    goto out;
                }
                const char *k = json_string_value(json_object_get(b, "api_key"));
                const char *ke = json_string_value(json_object_get(b, "api_key_env"));
                if (k)
                    copy_str(spec->key, sizeof(spec->key), k);
                if (ke)
                    copy_str(spec->key_env, sizeof(spec->key_env), ke);
                json_t *mc = json_object_get(b, "max_concurrency");
                if (mc) {
                    if (!json_is_integer(mc) || json_integer_value(mc) < 1 || json_integer_value(mc) > 4096) {
                        snprintf(err, err_size, "%s: backends[%zu].max_concurrency must be 1..4096", path, i);
                        goto out;
                    }
                    spec->max_concurrency = (int)json_integer_value(mc);
                }
                json_t *x;
                if ((x = json_object_get(b, "min_concurrency")) && json_is_integer(x))
                    spec->min_concurrency = (int)json_integer_value(x);
                if ((x = json_object_get(b, "adaptive")) && json_is_boolean(x))
                    spec->adaptive = json_is_true(x);
                if ((x = json_object_get(b, "max_side")) && json_is_integer(x))
                    spec->max_side = (int)json_integer_value(x);
                if ((x = json_object_get(b, "jpeg_quality")) && json_is_integer(x))
                    spec->jpeg_quality = (int)json_integer_value(x);
                json_t *models = json_object_get(b, "models");
                if (json_is_array(models)) {
                    size_t j;
                    json_t *m;
                    spec->models[0] = '\0';
                    json_array_foreach(models, j, m)
                    {
                        const char *s = json_string_value(m);
                        size_t used = strlen(spec->models);
                        if (s)
                            snprintf(spec->models + used, sizeof(spec->models) - used, "%s%s", used ? "," : "", s);
                    }
                }
            }
            continue;
        }
        if (strcmp(key, "trusted-proxy") == 0 || strcmp(key, "trusted_proxy") == 0) {
            /* "trusted-proxy": "10.0.0.5" or ["10.0.0.5", "fd00::/8"] */
            size_t i, n = json_is_array(val) ? json_array_size(val) : 1;
            c->n_trusted_proxies = 0;
            for (i = 0; i < n; i++) {
                json_t *d = json_is_array(val) ? json_array_get(val, i) : val;
                char why[300];
                if (!json_is_string(d)) {
                    snprintf(err, err_size, "%s: \"%s\" must be a string \"ADDR[/BITS]\" or a list of them", path, key);
                    goto out;
                }
                if (add_trusted_proxy(c, "trusted-proxy", json_string_value(d), json_string_length(d), why,
                                      sizeof(why))) {
                    snprintf(err, err_size, "%s: %s", path, why);
                    goto out;
                }
            }
            continue;
        }
        if (strcmp(key, "camera") == 0 && json_is_array(val)) {
            /* "camera": ["ID=URL", ...] as well as one "camera": "ID=URL" (a flag, below) */
            size_t i;
            json_t *d;
            json_array_foreach(val, i, d)
            {
                if (!json_is_string(d)) {
                    snprintf(err, err_size, "%s: camera[%zu] must be a string \"ID=URL\"", path, i);
                    goto out;
                }
                char why[400];
                if (add_camera(c, json_string_value(d), why, sizeof(why))) {
                    snprintf(err, err_size, "%s: camera[%zu]: %s", path, i, why);
                    goto out;
                }
            }
            continue;
        }
        /* every other key is a flag: turn it into argv and reuse the flag parser. "node_id" reads
         * as "node-id": the backends' keys are written with underscores, so people write these so */
        char flag[80], num[32];
        snprintf(flag, sizeof(flag), "--%s", key);
        for (char *p = flag + 2; *p; p++)
            if (*p == '_')
                *p = '-';
        char *argv2[2] = {flag, NULL};
        int argc2 = 1;
        if (json_is_string(val)) {
            argv2[1] = (char *)json_string_value(val);
            argc2 = 2;
        } else if (json_is_integer(val)) {
            snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(val));
            argv2[1] = num;
            argc2 = 2;
        } else if (json_is_true(val)) {
            argc2 = 1;
        } else if (json_is_false(val)) {
            continue;
        } else {
            snprintf(err, err_size, "%s: \"%s\" has an unsupported type", path, key);
            goto out;
        }
        if (strcmp(key, "config") == 0) {
            snprintf(err, err_size, "%s: \"config\" cannot be nested", path);
            goto out;
        }
        int prc = parse_flags(c, argc2, argv2, err, err_size, false);
        if (prc) {
            /* say which file: the message names the option as a flag */
            char why[512];
            snprintf(why, sizeof(why), "%s", err);
            snprintf(err, err_size, "%s: \"%s\": %s", path, key, why);
            rc = LV_EINVAL;
            goto out;
        }
    }
    rc = 0;
out:
    json_decref(root);
    return rc;
}

int lv_host_is_loopback(const char *host)
{
    return strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0 || strcmp(host, "localhost") == 0 ||
           strcmp(host, "[::1]") == 0;
}

int lv_config_validate(const lv_config_t *c, char *err, size_t err_size)
{
    if (c->auth_none && !lv_host_is_loopback(c->host)) {
        snprintf(err, err_size,
                 "--auth none is refused on a non-loopback bind (--host %s): anyone who can reach the port "
                 "could use your backends. Use --host 127.0.0.1, or keep token auth.",
                 c->host);
        return LV_EINVAL;
    }
    for (size_t i = 0; i < c->n_trusted_proxies; i++) {
        /* trusting every address is trusting every client to name itself: no limit would hold */
        unsigned char lo[16], hi[16];
        const lv_ipnet_t *n = &c->trusted_proxies[i];
        bool all_v4 = lv_ip_parse("0.0.0.0", 7, lo) == 0 && lv_ip_parse("255.255.255.255", 15, hi) == 0 &&
                      lv_ipnet_contains(n, 1, lo) && lv_ipnet_contains(n, 1, hi);
        if (n->bits == 0 || all_v4) {
            snprintf(err, err_size,
                     "--trusted-proxy: a network that holds every address (0.0.0.0/0, ::/0) trusts every "
                     "client to name its own address in X-Forwarded-For; give your proxies' addresses or "
                     "their private network");
            return LV_EINVAL;
        }
    }
    if (!!c->tls_cert[0] != !!c->tls_key[0]) {
        snprintf(err, err_size, "--tls-cert and --tls-key go together");
        return LV_EINVAL;
    }
    if (!c->tls && c->tls_cert[0]) {
        snprintf(err, err_size, "--no-tls contradicts --tls-cert/--tls-key");
        return LV_EINVAL;
    }
    for (size_t i = 0; i < c->n_backends; i++) {
        const lv_backend_spec_t *b = &c->backends[i];
        if (strncmp(b->url, "http://", 7) != 0 && strncmp(b->url, "https://", 8) != 0) {
            snprintf(err, err_size, "backend '%s': URL must start with http:// or https:// (got '%s')", b->id, b->url);
            return LV_EINVAL;
        }
    }
    if (c->redis_url[0]) {
        lv_redisurl_t u;
        const char *why = NULL;
        if (lv_redisurl_parse(c->redis_url, &u, &why) != 0) {
            snprintf(err, err_size, "--redis: %s", why ? why : "not a Redis URL");
            return LV_EINVAL;
        }
    }
    if (c->workers_inline && !c->redis_url[0]) {
        snprintf(err, err_size, "--workers-inline needs --redis URL (a single node answers in-process already)");
        return LV_EINVAL;
    }
    for (const char *p = c->node_id; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_' ||
              *p == '-')) {
            snprintf(err, err_size, "--node-id: use 1..32 of a-z A-Z 0-9 _ - (got '%s')", c->node_id);
            return LV_EINVAL;
        }
    }
    return 0;
}

/* lv_server.c - libwebsockets on the app's libuv loop: one protocol handles both HTTP (UI, JSON API,
 * login) and the WebSocket, because lws binds clients that name no subprotocol to the first one. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lv_app.h"
#include "lv_assets.h"
#include "lv_backend.h"
#include "lv_common.h"
#include "lv_httputil.h"
#include "lv_log.h"
#include "lv_rand.h"
#include "lv_stat.h"
#include "lv_sysmon.h"

#define MAX_BODY_BYTES 65536
#define MAX_URL_BYTES 2048
#define HTTP_CHUNK 16384
#define WEB_ROOT_MAX_FILE (8u << 20)
#define PROTOCOL_VERSION 1
#define LIVEVLM_VERSION "0.1.0"

/* A response being written: headers first, then the body in chunks of HTTP_CHUNK. */
typedef struct {
    int status;
    const char *content_type;
    char extra_headers[1024];   /* "name: value\r\n" lines */
    const unsigned char *body;  /* static (asset) or owned */
    unsigned char *owned;
    size_t len, off;
    bool headers_sent;
} http_tx_t;

/* Per-connection state lws allocates for us (zeroed). HTTP fields are used before an upgrade,
 * conn after it. */
typedef struct {
    struct lws *wsi;
    lv_conn_t *conn;
    http_tx_t *tx;
    lv_buf_t *body;
    char path[256];
    char ip[64];
    lv_queue_t wait_link;       /* in app->pending_models while waiting for a refresh */
    bool waiting_models;
} pss_t;

static lv_app_t *app_of(struct lws *wsi) { return lws_context_user(lws_get_context(wsi)); }

/* ---------- HTTP responses ---------- */

static void http_state_free(pss_t *p)
{
    if (p->tx) {
        free(p->tx->owned);
        free(p->tx);
        p->tx = NULL;
    }
    if (p->body) {
        lv_buf_free(p->body);
        free(p->body);
        p->body = NULL;
    }
    if (p->waiting_models) {
        lv_queue_remove(&p->wait_link);
        p->waiting_models = false;
    }
}

static int respond(pss_t *p, int status, const char *ctype, const void *body, size_t len, bool copy,
                   const char *extra)
{
    http_tx_t *tx = calloc(1, sizeof(*tx));
    if (!tx)
        return -1;
    tx->status = status;
    tx->content_type = ctype;
    if (extra)
        snprintf(tx->extra_headers, sizeof(tx->extra_headers), "%s", extra);
    if (copy && len) {
        tx->owned = malloc(len);
        if (!tx->owned) {
            free(tx);
            return -1;
        }
        memcpy(tx->owned, body, len);
        tx->body = tx->owned;
    } else {
        tx->body = body;
    }
    tx->len = len;
    if (p->tx) {
        free(p->tx->owned);
        free(p->tx);
    }
    p->tx = tx;
    lws_callback_on_writable(p->wsi);
    return 0;
}

static int respond_json(pss_t *p, int status, json_t *obj, const char *extra)
{
    char *text = json_dumps(obj, JSON_COMPACT | JSON_REAL_PRECISION(10));
    json_decref(obj);
    if (!text)
        return -1;
    int rc = respond(p, status, "application/json", text, strlen(text), true, extra);
    free(text);
    return rc;
}

static int respond_error(pss_t *p, int status, const char *code, const char *message)
{
    return respond_json(p, status, json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", message), NULL);
}

/* Add "name: value\r\n" lines from a block to the header being built. */
static int add_extra_headers(struct lws *wsi, const char *block, unsigned char **pp, unsigned char *end)
{
    const char *line = block;
    while (*line) {
        const char *eol = strstr(line, "\r\n");
        const char *colon = strchr(line, ':');
        if (!eol || !colon || colon > eol)
            break;
        char name[64];
        size_t nlen = (size_t)(colon - line) + 1;
        if (nlen >= sizeof(name))
            return -1;
        memcpy(name, line, nlen);
        name[nlen] = '\0';
        const char *val = colon + 1;
        while (*val == ' ')
            val++;
        if (lws_add_http_header_by_name(wsi, (const unsigned char *)name, (const unsigned char *)val,
                                        (int)(eol - val), pp, end))
            return -1;
        line = eol + 2;
    }
    return 0;
}

static int http_write(pss_t *p)
{
    http_tx_t *tx = p->tx;
    struct lws *wsi = p->wsi;
    if (!tx)
        return 0;
    if (!tx->headers_sent) {
        unsigned char buf[LWS_PRE + 4096], *start = buf + LWS_PRE, *ptr = start, *end = buf + sizeof(buf) - 1;
        static const char common[] = "x-content-type-options: nosniff\r\n"
                                     "referrer-policy: no-referrer\r\n"
                                     "x-frame-options: DENY\r\n";
        static const char csp[] = "content-security-policy: default-src 'self'; img-src 'self' data: blob:; "
                                  "media-src 'self' blob: mediastream:; connect-src 'self' ws: wss:; "
                                  "style-src 'self' 'unsafe-inline'; script-src 'self'; object-src 'none'; "
                                  "base-uri 'none'; frame-ancestors 'none'\r\n";
        bool html = tx->content_type && strncmp(tx->content_type, "text/html", 9) == 0;
        bool api = tx->content_type && strcmp(tx->content_type, "application/json") == 0;
        if (lws_add_http_common_headers(wsi, (unsigned)tx->status, tx->content_type, tx->len, &ptr, end) ||
            add_extra_headers(wsi, common, &ptr, end) || (html && add_extra_headers(wsi, csp, &ptr, end)) ||
            add_extra_headers(wsi, api ? "cache-control: no-store\r\n" : "cache-control: no-cache\r\n", &ptr, end) ||
            add_extra_headers(wsi, tx->extra_headers, &ptr, end) || lws_finalize_write_http_header(wsi, start, &ptr, end))
            return -1;
        tx->headers_sent = true;
        if (tx->len) {
            lws_callback_on_writable(wsi);
            return 0;
        }
    }
    if (tx->off < tx->len) {
        unsigned char buf[LWS_PRE + HTTP_CHUNK];
        size_t n = LV_MIN((size_t)HTTP_CHUNK, tx->len - tx->off);
        memcpy(buf + LWS_PRE, tx->body + tx->off, n);
        tx->off += n;
        bool last = tx->off == tx->len;
        if (lws_write(wsi, buf + LWS_PRE, n, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) != (int)n)
            return -1;
        if (!last) {
            lws_callback_on_writable(wsi);
            return 0;
        }
    }
    free(tx->owned);
    free(tx);
    p->tx = NULL;
    if (lws_http_transaction_completed(wsi))
        return -1;
    return 0;
}

/* ---------- static files ---------- */

static const char *mime_of(const char *path)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"}, {".js", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"}, {".svg", "image/svg+xml"}, {".png", "image/png"},
        {".ico", "image/x-icon"}, {".json", "application/json"}, {".webmanifest", "application/manifest+json"},
        {".txt", "text/plain; charset=utf-8"}, {".jpg", "image/jpeg"}, {".woff2", "font/woff2"},
    };
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < LV_ARRAY_LEN(types); i++)
        if (strcmp(dot, types[i].ext) == 0)
            return types[i].type;
    return NULL;
}

static int serve_static(lv_app_t *app, pss_t *p, const char *path)
{
    if (strcmp(path, "/") == 0)
        path = "/index.html";
    const char *type = mime_of(path);
    if (!type || strstr(path, "..") || strstr(path, "//"))
        return respond_error(p, 404, "not_found", "no such page");
    if (app->cfg.web_root[0]) {
        /* development: read the file on every request so edits show up on reload */
        char full[1024];
        struct stat st;
        snprintf(full, sizeof(full), "%s%s", app->cfg.web_root, path);
        FILE *f = fopen(full, "rb");
        if (!f || fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > WEB_ROOT_MAX_FILE) {
            if (f)
                fclose(f);
            return respond_error(p, 404, "not_found", "no such page");
        }
        unsigned char *data = malloc((size_t)st.st_size + 1);
        size_t got = data ? fread(data, 1, (size_t)st.st_size, f) : 0;
        fclose(f);
        int rc = data ? respond(p, 200, type, data, got, true, NULL) : -1;
        free(data);
        return rc;
    }
    for (const lv_asset_t *a = lv_assets; a->path; a++)
        if (strcmp(a->path, path) == 0)
            return respond(p, 200, type, a->data, a->len, false, NULL);
    return respond_error(p, 404, "not_found", "no such page");
}

/* ---------- API ---------- */

static void cookie_header(lv_app_t *app, char *out, size_t size, const char *token, int max_age)
{
    snprintf(out, size, "set-cookie: livevlm_auth=%s; Path=/; HttpOnly; SameSite=Strict; Max-Age=%d%s\r\n", token,
             max_age, app->cfg.tls ? "; Secure" : "");
}

static json_t *backends_json(lv_app_t *app)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < lv_pool_count(app->pool); i++) {
        lv_backend_t *b = lv_pool_at(app->pool, i);
        json_t *models = json_array();
        for (size_t j = 0; j < b->n_models; j++)
            json_array_append_new(models, json_string(b->models[j]));
        /* the URL's host only: a path can carry account ids, and keys never leave the server */
        char host[256] = "";
        const char *h = strstr(b->base_url, "://");
        if (h) {
            h += 3;
            size_t n = strcspn(h, "/?#");
            snprintf(host, sizeof(host), "%.*s", (int)LV_MIN(n, sizeof(host) - 1), h);
        }
        json_array_append_new(arr, json_pack("{s:s, s:s, s:b, s:i, s:i, s:o, s:s?}", "id", b->id, "url_host", host,
                                             "healthy", b->healthy, "max_concurrency", b->max_concurrency, "inflight",
                                             b->inflight, "models", models, "error",
                                             b->last_error[0] ? b->last_error : NULL));
    }
    return arr;
}

static int api_config(lv_app_t *app, pss_t *p)
{
    lv_settings_t defaults;
    lv_settings_defaults(&defaults);
    const char *m = lv_pool_default_model(app->pool);
    if (m)
        snprintf(defaults.model, sizeof(defaults.model), "%s", m);
    size_t npre = 0;
    const lv_preset_t *pre = lv_presets(&npre);
    json_t *presets = json_array();
    for (size_t i = 0; i < npre; i++)
        json_array_append_new(presets,
                              json_pack("{s:s, s:s, s:s}", "id", pre[i].id, "label", pre[i].label, "prompt", pre[i].prompt));
    json_t *limits = json_pack("{s:I, s:I, s:i, s:i, s:i, s:I, s:I, s:I}", "max_frame_bytes",
                               (json_int_t)app->cfg.max_frame_bytes, "max_frame_pixels",
                               (json_int_t)app->cfg.max_frame_pixels, "max_frame_side", app->cfg.max_frame_side,
                               "max_text_message_bytes", 65536, "max_prompt_bytes", LV_PROMPT_MAX,
                               "max_sessions_per_ip", (json_int_t)app->cfg.max_sessions_per_ip,
                               "max_sockets_per_ip", (json_int_t)app->cfg.max_sockets_per_ip, "session_idle_s",
                               (json_int_t)app->cfg.session_idle_s);
    json_t *o = json_pack("{s:i, s:s, s:s, s:o, s:s?, s:o, s:o, s:o}", "protocol", PROTOCOL_VERSION, "version",
                          LIVEVLM_VERSION, "auth", app->cfg.auth_none ? "none" : "token", "backends",
                          backends_json(app), "no_backend_help",
                          lv_pool_count(app->pool) ? NULL : app->no_backend_help, "defaults",
                          lv_settings_to_json(&defaults), "limits", limits, "presets", presets);
    return respond_json(p, 200, o, NULL);
}

static int api_models(lv_app_t *app, pss_t *p)
{
    json_t *models = json_array();
    const char *def = lv_pool_default_model(app->pool);
    for (size_t i = 0; i < lv_pool_count(app->pool); i++) {
        lv_backend_t *b = lv_pool_at(app->pool, i);
        for (size_t j = 0; j < b->n_models; j++)
            json_array_append_new(models, json_pack("{s:s, s:s, s:s, s:b}", "id", b->models[j], "name", b->models[j],
                                                    "backend", b->id, "current",
                                                    def && strcmp(def, b->models[j]) == 0));
    }
    return respond_json(p, 200, json_pack("{s:o, s:o}", "models", models, "backends", backends_json(app)), NULL);
}

static void on_models_refreshed(void *ud)
{
    lv_app_t *app = ud;
    app->refreshing = false;
    while (!lv_queue_empty(&app->pending_models)) {
        pss_t *p = LV_CONTAINER_OF(lv_queue_head(&app->pending_models), pss_t, wait_link);
        lv_queue_remove(&p->wait_link);
        p->waiting_models = false;
        if (api_models(app, p) != 0)
            respond_error(p, 500, "internal", "out of memory");
    }
}

static int api_login(lv_app_t *app, pss_t *p)
{
    uint64_t now = lv_now_ms();
    if (lv_iptable_login_blocked(app->ips, p->ip, now))
        return respond_error(p, 429, "rate_limited", "too many failed logins; wait a minute");
    json_t *root = p->body && p->body->len ? json_loadb(p->body->data, p->body->len, 0, NULL) : NULL;
    const char *tok = json_string_value(json_object_get(root, "token"));
    int rc;
    if (app->cfg.auth_none || (tok && lv_secure_equal(tok, strlen(tok), app->token, 64))) {
        char hdr[256];
        cookie_header(app, hdr, sizeof(hdr), app->cfg.auth_none ? "none" : app->token, 30 * 86400);
        rc = respond(p, 204, "text/plain", "", 0, false, hdr);
    } else {
        lv_iptable_login_failed(app->ips, p->ip, now);
        LV_WARN("failed login from %s", p->ip);
        rc = respond_error(p, 401, "bad_token", "wrong access token");
    }
    json_decref(root);
    return rc;
}

static int handle_get(lv_app_t *app, pss_t *p, const char *path, struct lws *wsi)
{
    char argbuf[160];
    const char *arg;
    if (strcmp(path, "/healthz") == 0)
        return respond(p, 200, "text/plain; charset=utf-8", "ok\n", 3, false, NULL);
    /* lws returns a pointer just past "name=" inside the buffer */
    if (strcmp(path, "/") == 0 && (arg = lws_get_urlarg_by_name(wsi, "token=", argbuf, sizeof(argbuf)))) {
        /* the URL printed at start: trade the token for a cookie and take it out of the address bar */
        if (lv_iptable_login_blocked(app->ips, p->ip, lv_now_ms()))
            return respond_error(p, 429, "rate_limited", "too many failed logins; wait a minute");
        if (!app->cfg.auth_none && !lv_secure_equal(arg, strlen(arg), app->token, 64)) {
            static const char page[] = "<!doctype html><meta charset=utf-8><title>livevlm: wrong token</title>"
                                       "<p>This link's access token is wrong or was rotated. "
                                       "<a href=\"/\">Log in with the current token</a>.";
            lv_iptable_login_failed(app->ips, p->ip, lv_now_ms());
            return respond(p, 401, "text/html; charset=utf-8", page, sizeof(page) - 1, false, NULL);
        }
        char hdr[512];
        cookie_header(app, hdr, sizeof(hdr) - 32, app->cfg.auth_none ? "none" : app->token, 30 * 86400);
        size_t used = strlen(hdr);
        snprintf(hdr + used, sizeof(hdr) - used, "location: /\r\n");
        return respond(p, 303, "text/plain", "", 0, false, hdr);
    }
    if (strcmp(path, "/readyz") == 0) {
        /* ready = at least one backend in rotation with a model to serve */
        for (size_t i = 0; i < lv_pool_count(app->pool); i++) {
            lv_backend_t *b = lv_pool_at(app->pool, i);
            if (b->healthy && b->n_models)
                return respond(p, 200, "text/plain; charset=utf-8", "ready\n", 6, false, NULL);
        }
        return respond(p, 503, "text/plain; charset=utf-8", "no healthy backend\n", 19, false, NULL);
    }
    if (strcmp(path, "/metrics") == 0) {
        if (!app->cfg.metrics_public && !lv_auth_request_ok(app, wsi))
            return respond_error(p, 401, "unauthorized", "send the access token (or start with --metrics-public)");
        lv_buf_t b;
        lv_buf_init(&b, 8u << 20);
        int rc = lv_stat_render(app, &b) == 0
                     ? respond(p, 200, "text/plain; version=0.0.4; charset=utf-8", b.data ? b.data : "", b.len, true, NULL)
                     : respond_error(p, 500, "internal", "could not render metrics");
        lv_buf_free(&b);
        return rc;
    }
    if (strncmp(path, "/api/", 5) != 0 && strcmp(path, "/models") != 0)
        return serve_static(app, p, path);
    if (!lv_auth_request_ok(app, wsi))
        return respond_error(p, 401, "unauthorized", "log in with the access token printed by the server");
    if (strcmp(path, "/api/v1/config") == 0)
        return api_config(app, p);
    if (strcmp(path, "/api/v1/models") == 0 || strcmp(path, "/models") == 0) {
        arg = lws_get_urlarg_by_name(wsi, "refresh=", argbuf, sizeof(argbuf));
        if (arg && strcmp(arg, "0") != 0) {
            lv_queue_insert_tail(&app->pending_models, &p->wait_link);
            p->waiting_models = true;
            if (!app->refreshing) {
                app->refreshing = true;
                if (lv_pool_refresh(app->pool, on_models_refreshed, app) != 0)
                    on_models_refreshed(app);
            }
            return 0;
        }
        return api_models(app, p);
    }
    if (strcmp(path, "/api/v1/stats") == 0) {
        size_t len = 0;
        const char *s = app->sysmon ? lv_sysmon_json(app->sysmon, &len) : "{}";
        if (!app->sysmon)
            len = 2;
        return respond(p, 200, "application/json", s, len, true, NULL);
    }
    return respond_error(p, 404, "not_found", "no such API route");
}

static int handle_post(lv_app_t *app, pss_t *p, struct lws *wsi)
{
    if (strcmp(p->path, "/api/v1/login") == 0)
        return api_login(app, p);
    if (strcmp(p->path, "/api/v1/logout") == 0) {
        char hdr[256];
        cookie_header(app, hdr, sizeof(hdr), "", 0);
        return respond(p, 204, "text/plain", "", 0, false, hdr);
    }
    if (!lv_auth_request_ok(app, wsi))
        return respond_error(p, 401, "unauthorized", "log in with the access token printed by the server");
    return respond_error(p, 404, "not_found", "no such API route");
}

/* ---------- WebSocket ---------- */

static int ws_filter(lv_app_t *app, struct lws *wsi)
{
    char path[64] = "", origin[512], host[300], ip[64];
    lws_hdr_copy(wsi, path, sizeof(path), WSI_TOKEN_GET_URI);
    lws_get_peer_simple(wsi, ip, sizeof(ip));
    int status = 0;
    if (strcmp(path, "/ws") != 0)
        status = 404;
    else if (!lv_auth_request_ok(app, wsi))
        status = 401;
    else if (lws_hdr_copy(wsi, origin, sizeof(origin), WSI_TOKEN_ORIGIN) > 0 &&
             (lws_hdr_copy(wsi, host, sizeof(host), WSI_TOKEN_HOST) <= 0 || !lv_origin_matches(origin, host)))
        status = 403; /* a page on another site must not ride on this browser's cookie */
    else if (lv_iptable_sockets(app->ips, ip, 0) >= app->cfg.max_sockets_per_ip)
        status = 429;
    if (!status)
        return 0;
    LV_INFO("refused WebSocket upgrade from %s: %d", ip, status);
    lws_return_http_status(wsi, (unsigned)status, NULL);
    return -1;
}

static int ws_established(lv_app_t *app, pss_t *p, struct lws *wsi)
{
    http_state_free(p);
    lv_conn_t *c = calloc(1, sizeof(*c));
    if (!c)
        return -1;
    c->wsi = wsi;
    c->app = app;
    lws_get_peer_simple(wsi, c->ip, sizeof(c->ip));
    lv_queue_init(&c->session_link);
    lv_buf_init(&c->rx, 0);
    c->opened_ms = c->rl_last_ms = lv_now_ms();
    c->rl_tokens = 50.0;
    lv_queue_insert_tail(&app->conns, &c->app_link);
    app->n_conns++;
    lv_iptable_sockets(app->ips, c->ip, +1);
    p->conn = c;
    return 0;
}

static void ws_closed(lv_app_t *app, pss_t *p)
{
    lv_conn_t *c = p->conn;
    if (!c)
        return;
    p->conn = NULL;
    lv_engine_on_close(c);
    lv_queue_remove(&c->app_link);
    app->n_conns--;
    lv_iptable_sockets(app->ips, c->ip, -1);
    for (size_t i = 0; i < c->tx_len; i++)
        lv_msg_unref(c->txq[(c->tx_head + i) % LV_CONN_TXQ_MAX]);
    lv_buf_free(&c->rx);
    free(c);
}

static int ws_receive(lv_app_t *app, lv_conn_t *c, const void *in, size_t len)
{
    struct lws *wsi = c->wsi;
    bool binary = lws_frame_is_binary(wsi);
    if (lws_is_first_fragment(wsi)) {
        lv_buf_reset(&c->rx);
        c->rx_dropped = 0;
        c->rx_binary = binary;
        /* binary: the frame cap plus the LVF1 envelope; text: 64 KiB */
        c->rx.max = binary ? app->cfg.max_frame_bytes + 16 : 65536;
    }
    if (!c->rx_dropped && lv_buf_append(&c->rx, in, len) != 0) {
        c->rx_dropped = c->rx.len;
        lv_buf_free(&c->rx);
    }
    if (c->rx_dropped)
        c->rx_dropped += len;
    if (c->rx_binary && c->rx_dropped > 2 * (app->cfg.max_frame_bytes + 16)) {
        lv_conn_send_error(c, "message_too_large", "frame far over the size cap", NULL);
        lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, (unsigned char *)"too large", 9);
        return -1;
    }
    if (!lws_is_final_fragment(wsi))
        return 0;
    if (c->rx_dropped) {
        char msg[160];
        snprintf(msg, sizeof(msg), "%s message of %zu bytes is over the cap of %zu bytes",
                 c->rx_binary ? "binary" : "text", c->rx_dropped, c->rx_binary ? app->cfg.max_frame_bytes : 65536u);
        lv_conn_send_error(c, c->rx_binary ? "frame_too_large" : "message_too_large", msg, NULL);
        if (c->rx_binary && c->session)
            c->session->frames_rejected++;
    } else {
        lv_engine_on_message(c, c->rx.data ? c->rx.data : "", c->rx.len, c->rx_binary);
    }
    lv_buf_reset(&c->rx);
    /* do not let one large frame pin memory on an idle socket */
    if (c->rx.cap > 16384)
        lv_buf_free(&c->rx);
    return 0;
}

static int ws_writable(lv_conn_t *c)
{
    if (c->kill && c->tx_len == 0) {
        /* flush what is queued first (the error that explains the close), then send the close frame
         * ourselves: lws 4.1 drops the lws_close_reason() payload when a callback returns -1, so
         * peers would only see 1006 */
        if (c->close_sent)
            return -1;
        unsigned char buf[LWS_PRE + 125];
        const char *r = c->kill_reason ? c->kill_reason : "";
        size_t rlen = LV_MIN(strlen(r), (size_t)120);
        buf[LWS_PRE] = (unsigned char)(c->kill_status >> 8);
        buf[LWS_PRE + 1] = (unsigned char)(c->kill_status & 0xff);
        memcpy(buf + LWS_PRE + 2, r, rlen);
        c->close_sent = true;
        /* 4 is lws's private LWS_WRITE_CLOSE (the public header leaves it to lws_close_reason) */
        if (lws_write(c->wsi, buf + LWS_PRE, rlen + 2, (enum lws_write_protocol)4) < 0)
            return -1;
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_ACK, 2);
        return 0;
    }
    if (c->tx_len == 0)
        return 0;
    lv_msg_t *m = c->txq[c->tx_head];
    c->tx_head = (c->tx_head + 1) % LV_CONN_TXQ_MAX;
    c->tx_len--;
    c->tx_bytes -= m->len;
    int n = lws_write(c->wsi, m->buf + LWS_PRE, m->len, m->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT);
    bool ok = n >= (int)m->len;
    lv_msg_unref(m);
    if (!ok)
        return -1;
    if (c->tx_len || c->kill)
        lws_callback_on_writable(c->wsi);
    return 0;
}

/* ---------- the protocol callback ---------- */

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    lv_app_t *app = app_of(wsi);
    pss_t *p = user;
    switch (reason) {
    case LWS_CALLBACK_HTTP: {
        char clen[32];
        p->wsi = wsi;
        lws_get_peer_simple(wsi, p->ip, sizeof(p->ip));
        snprintf(p->path, sizeof(p->path), "%s", (const char *)in);
        if (strlen((const char *)in) + (size_t)lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_URI_ARGS) > MAX_URL_BYTES)
            return respond_error(p, 414, "uri_too_long", "URL over 2 KiB");
        if (lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0) {
            if (lws_hdr_copy(wsi, clen, sizeof(clen), WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0 &&
                strtoul(clen, NULL, 10) > MAX_BODY_BYTES)
                return respond_error(p, 413, "too_large", "request body over 64 KiB");
            p->body = calloc(1, sizeof(*p->body));
            if (!p->body)
                return -1;
            lv_buf_init(p->body, MAX_BODY_BYTES);
            return 0; /* the body follows */
        }
        if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) <= 0)
            return respond_error(p, 405, "method_not_allowed", "only GET and POST are served");
        return handle_get(app, p, p->path, wsi);
    }
    case LWS_CALLBACK_HTTP_BODY:
        if (p->body && lv_buf_append(p->body, in, len) != 0) {
            lv_buf_free(p->body);
            free(p->body);
            p->body = NULL;
            return respond_error(p, 413, "too_large", "request body over 64 KiB");
        }
        return 0;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        if (!p->body)
            return p->tx ? 0 : -1;
        return handle_post(app, p, wsi);
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return http_write(p);
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
    case LWS_CALLBACK_CLOSED_HTTP:
        if (p)
            http_state_free(p);
        break;
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        return ws_filter(app, wsi);
    case LWS_CALLBACK_ESTABLISHED:
        return ws_established(app, p, wsi);
    case LWS_CALLBACK_RECEIVE:
        return p->conn ? ws_receive(app, p->conn, in, len) : -1;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return p->conn ? ws_writable(p->conn) : 0;
    case LWS_CALLBACK_CLOSED:
        ws_closed(app, p);
        break;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols protocols[] = {
    {"livevlm.v1", callback, sizeof(pss_t), 65536, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* idle WebSockets are pinged so dead peers are found; 5 s grace for the pong */
static const lws_retry_bo_t retry_policy = {
    .secs_since_valid_ping = 30,
    .secs_since_valid_hangup = 40,
};

int lv_server_start(lv_app_t *app)
{
    struct lws_context_creation_info info;
    void *loops[1] = {app->loop};
    char iface[256];
    memset(&info, 0, sizeof(info));
    snprintf(iface, sizeof(iface), "%s", strcmp(app->cfg.host, "localhost") == 0 ? "127.0.0.1" : app->cfg.host);
    info.port = app->cfg.port ? app->cfg.port : 0;
    info.iface = iface;
    info.protocols = protocols;
    info.user = app;
    info.foreign_loops = loops;
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_VALIDATE_UTF8;
    /* lws listens dual-stack on an IPv4 bind unless told not to */
    if (!strchr(iface, ':'))
        info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
    info.pt_serv_buf_size = 16384; /* above 16384 breaks h2 file serving; 4096 doubles WS CPU */
    info.max_http_header_data = 8192;
    info.max_http_header_pool = 256;
    info.timeout_secs = 20;
    info.retry_and_idle_policy = &retry_policy;
    info.alpn = "http/1.1";
    if (app->cfg.tls) {
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.ssl_cert_filepath = app->cfg.tls_cert;
        info.ssl_private_key_filepath = app->cfg.tls_key;
    }
    lv_queue_init(&app->conns);
    lv_queue_init(&app->pending_models);
    app->lws = lws_create_context(&info);
    if (!app->lws) {
        LV_ERROR("could not listen on %s:%d (in use, or not an address of this machine?)", app->cfg.host,
                 app->cfg.port);
        return LV_EIO;
    }
    /* lws creates the context even when the listen socket could not be bound */
    app->vhost = lws_get_vhost_by_name(app->lws, "default");
    app->bound_port = app->vhost ? lws_get_vhost_listen_port(app->vhost) : -1;
    if (app->bound_port <= 0) {
        LV_ERROR("could not listen on %s:%d (in use, or not an address of this machine?)", app->cfg.host,
                 app->cfg.port);
        return LV_EIO;
    }
    return 0;
}

void lv_server_stop(lv_app_t *app)
{
    if (app->lws) {
        lws_context_destroy(app->lws);
        app->lws = NULL;
    }
}

/* lv_server.c - the front door: the listener (lv_net.h) with HTTP/1.1 on it (lv_httpd.h), and
 * the routes: the UI, the JSON API, login, and the checks in front of a WebSocket upgrade. */
#include "lv_server.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lv_allow.h"
#include "lv_analyze.h"
#include "lv_app.h"
#include "lv_assets.h"
#include "lv_account_api.h"
#include "lv_admin_api.h"
#include "lv_auth.h"
#include "lv_oidc.h"
#include "lv_usage.h"
#include "lv_usage_api.h"
#include "lv_camera_api.h"
#include "lv_backend.h"
#include "lv_cluster.h"
#include "lv_buf.h"
#include "lv_common.h"
#include "lv_http1.h"
#include "lv_httpd.h"
#include "lv_httputil.h"
#include "lv_iptable.h"
#include "lv_log.h"
#include "lv_net.h"
#include "lv_offer.h"
#include "lv_principal.h"
#include "lv_queue.h"
#include "lv_rand.h"
#include "lv_settings.h"
#include "lv_stat.h"
#include "lv_sysmon.h"
#include "lv_tlsio.h"

#define WEB_ROOT_MAX_FILE (8u << 20)
#define PROTOCOL_VERSION 1
#define LIVEVLM_VERSION "0.1.0"

static int respond_json(lv_req_t *r, int status, json_t *obj, const char *extra)
{
    char *text = json_dumps(obj, JSON_COMPACT | JSON_REAL_PRECISION(10));
    json_decref(obj);
    if (!text)
        return lv_req_respond_error(r, 500, "internal", "out of memory");
    int rc = lv_req_respond(r, status, "application/json", text, strlen(text), true, extra);
    free(text);
    return rc;
}

/* lv_auth_check's refusal: 401 with its reason, 403 for a cookie POST without its CSRF token, 429
 * for an address over its failed credentials, 503 while a credential cannot be checked yet. */
static int refuse_auth(lv_req_t *r, int status, const char *why, const char *fallback)
{
    const char *message = why ? why : fallback;
    switch (status) {
    case 429:
        return lv_req_respond_error(r, 429, "rate_limited", "too many failed credentials; wait a minute");
    case 403:
        return lv_req_respond_error(r, 403, "csrf", message);
    case 503:
        return lv_req_respond_error(r, 503, "unavailable", message);
    default:
        return lv_req_respond_error(r, 401, "unauthorized", message);
    }
}

/* With accounts a viewer watches but sends nothing to a model (docs/internals/accounts.md
 * "Roles"). */
static int refuse_viewer(lv_req_t *r)
{
    return lv_req_respond_error(r, 403, "forbidden_role",
                                "this account is a viewer: it may watch, not send pictures to a model");
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

/* Answer with an embedded asset (tools/embed.c): its gzip copy when the client takes gzip
 * (Accept-Encoding, q=0 meaning no) and one was kept, else the plain bytes; 304 and no body when
 * If-None-Match already names what would be sent. Each representation has its own strong ETag,
 * and Vary tells caches the answer depends on Accept-Encoding. Cache-Control stays "no-cache"
 * (lv_httpd.c) for every asset, not "immutable": index.html and the JS modules load each other
 * by fixed names ('./util.js'), so hashed names would mean rewriting every import at build
 * time; a revalidation costs one round trip and a ~250-byte 304 per file instead. HEAD gets the
 * same headers (lv_req_respond drops the body). Only the first Accept-Encoding and
 * If-None-Match lines are read (browsers send one). */
static int serve_asset(lv_req_t *r, const lv_asset_t *a, const char *type)
{
    const lv_view_t *accept = lv_http1_header(r->head, "accept-encoding");
    const lv_view_t *inm = lv_http1_header(r->head, "if-none-match");
    bool gz = a->gz && accept && lv_accept_encoding_q(accept->ptr, accept->len, "gzip") > 0;
    const char *etag = gz ? a->gz_etag : a->etag;
    const char *vary = a->gz ? "vary: accept-encoding\r\n" : "";
    char headers[160];
    /* RFC 9110 section 15.4.5: a 304 carries the ETag and Vary a 200 would have; the body's
     * type and coding stay those of the copy the client holds. */
    if (inm && lv_etag_match(inm->ptr, inm->len, etag)) {
        snprintf(headers, sizeof(headers), "etag: %s\r\n%s", etag, vary);
        return lv_req_respond(r, 304, NULL, "", 0, false, headers);
    }
    snprintf(headers, sizeof(headers), "etag: %s\r\n%s%s", etag, vary, gz ? "content-encoding: gzip\r\n" : "");
    return gz ? lv_req_respond(r, 200, type, a->gz, a->gz_len, false, headers)
              : lv_req_respond(r, 200, type, a->data, a->len, false, headers);
}

static int serve_static(lv_app_t *app, lv_req_t *r, const char *path)
{
    if (strcmp(path, "/") == 0)
        path = "/index.html";
    else if (strcmp(path, "/wall") == 0)
        path = "/wall.html"; /* the camera wall (web/wall.js) */
    else if (strcmp(path, "/login") == 0)
        path = "/login.html"; /* the sign-in page (accounts) */
    else if (strcmp(path, "/admin") == 0)
        path = "/admin.html"; /* the admin page (accounts; its API checks the role) */
    const char *type = mime_of(path);
    if (!type || strstr(path, "..") || strstr(path, "//"))
        return lv_req_respond_error(r, 404, "not_found", "no such page");
    if (app->cfg.web_root[0]) {
        /* development: read the file on every request so edits show up on reload */
        char full[1024];
        struct stat st;
        snprintf(full, sizeof(full), "%s%s", app->cfg.web_root, path);
        FILE *f = fopen(full, "rb");
        if (!f || fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > WEB_ROOT_MAX_FILE) {
            if (f)
                fclose(f);
            return lv_req_respond_error(r, 404, "not_found", "no such page");
        }
        unsigned char *data = malloc((size_t)st.st_size + 1);
        size_t got = data ? fread(data, 1, (size_t)st.st_size, f) : 0;
        fclose(f);
        int rc = data ? lv_req_respond(r, 200, type, data, got, true, NULL)
                      : lv_req_respond_error(r, 500, "internal", "out of memory");
        free(data);
        return rc;
    }
    for (const lv_asset_t *a = lv_assets; a->path; a++)
        if (strcmp(a->path, path) == 0)
            return serve_asset(r, a, type);
    return lv_req_respond_error(r, 404, "not_found", "no such page");
}

/* ---------- API ---------- */


static json_t *backends_json(lv_app_t *app, const lv_allow_t *a)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < lv_pool_count(app->pool); i++) {
        lv_backend_t *b = lv_pool_at(app->pool, i);
        if (!lv_allow_backend(a, b->id))
            continue;
        json_t *models = json_array();
        for (size_t j = 0; j < b->n_models; j++)
            if (lv_allow_model(a, b->models[j]))
                json_array_append_new(models, json_string(b->models[j]));
        /* the URL's host only: a path can carry account ids, and keys never leave the server */
        char host[256] = "";
        const char *h = strstr(b->base_url, "://");
        if (h) {
            h += 3;
            size_t n = strcspn(h, "/?#");
            snprintf(host, sizeof(host), "%.*s", (int)LV_MIN(n, sizeof(host) - 1), h);
        }
        json_array_append_new(arr, json_pack("{s:s, s:s, s:b, s:i, s:i, s:I, s:o, s:s?}", "id", b->id, "url_host",
                                             host, "healthy", b->healthy, "max_concurrency", b->max_concurrency,
                                             "inflight", b->inflight, "retry_after_ms",
                                             (json_int_t)lv_backend_retry_after_ms(b), "models", models, "error",
                                             b->last_error[0] ? b->last_error : NULL));
    }
    return arr;
}

/* who: the requester, already authenticated; its tenant's backends and models (lv_allow.h) are
 * all the pickers offer */
static int api_config(lv_app_t *app, lv_req_t *r, const lv_principal_t *who)
{
    lv_settings_t defaults;
    lv_allow_t allow;
    lv_allow_of(app, who->tenant, &allow);
    lv_settings_defaults(&defaults);
    lv_allow_default_model(app, &allow, defaults.model, sizeof(defaults.model));
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
                          LIVEVLM_VERSION, "auth", lv_config_auth_name(app->cfg.auth_mode), "backends",
                          backends_json(app, &allow), "no_backend_help",
                          lv_pool_count(app->pool) ? NULL : app->no_backend_help, "defaults",
                          lv_settings_to_json(&defaults), "limits", limits, "presets", presets);
    if (o && app->cluster)
        json_object_set_new(o, "cluster", json_pack("{s:s, s:b}", "node", lv_cluster_node_id(app->cluster), "up",
                                                    lv_cluster_up(app->cluster)));
    return respond_json(r, 200, o, NULL);
}

static int api_models(lv_app_t *app, lv_req_t *r, const lv_principal_t *who)
{
    json_t *models = json_array();
    lv_allow_t allow;
    char def[LV_MODEL_MAX + 1];
    lv_allow_of(app, who->tenant, &allow);
    lv_allow_default_model(app, &allow, def, sizeof(def));
    for (size_t i = 0; i < lv_pool_count(app->pool); i++) {
        lv_backend_t *b = lv_pool_at(app->pool, i);
        if (!lv_allow_backend(&allow, b->id))
            continue;
        for (size_t j = 0; j < b->n_models; j++)
            if (lv_allow_model(&allow, b->models[j]))
                json_array_append_new(models, json_pack("{s:s, s:s, s:s, s:b}", "id", b->models[j], "name",
                                                        b->models[j], "backend", b->id, "current",
                                                        strcmp(def, b->models[j]) == 0));
    }
    return respond_json(r, 200, json_pack("{s:o, s:o}", "models", models, "backends", backends_json(app, &allow)),
                        NULL);
}

static void on_models_refreshed(void *ud)
{
    lv_app_t *app = ud;
    app->refreshing = false;
    while (!lv_queue_empty(&app->pending_models)) {
        lv_req_t *r = LV_CONTAINER_OF(lv_queue_head(&app->pending_models), lv_req_t, wait_link);
        lv_queue_remove(&r->wait_link);
        r->waiting = false;
        lv_principal_t who; /* authenticated when it came: asked again for its tenant only */
        lv_auth_principal(app, r, &who);
        api_models(app, r, &who);
    }
}

/* The URL printed at start: trade the token for a cookie and take it out of the address bar. */
static int token_link(lv_app_t *app, lv_req_t *r, const char *arg)
{
    if (!app->cfg.auth_none && !lv_secure_equal(arg, strlen(arg), app->token, 64)) {
        static const char page[] = "<!doctype html><meta charset=utf-8><title>livevlm: wrong token</title>"
                                   "<p>This link's access token is wrong or was rotated. "
                                   "<a href=\"/\">Log in with the current token</a>.";
        if (lv_auth_failed(app, r->ip) == 429)
            return lv_req_respond_error(r, 429, "rate_limited", "too many failed logins; wait a minute");
        return lv_req_respond(r, 401, "text/html; charset=utf-8", page, sizeof(page) - 1, false, NULL);
    }
    char hdr[512];
    lv_auth_token_cookie(app, hdr, sizeof(hdr) - 32, app->cfg.auth_none ? "none" : app->token, 30 * 86400);
    size_t used = strlen(hdr);
    snprintf(hdr + used, sizeof(hdr) - used, "location: /\r\n");
    return lv_req_respond(r, 303, "text/plain", "", 0, false, hdr);
}

/* The replaced tool's /api/rtsp/start|stop|status opened any URL a client sent (the server would
 * fetch rtsp://, http:// or file:// for anyone). Here only the admin defines cameras: say so and
 * where to look instead of a bare 404. */
static int refuse_rtsp_api(lv_req_t *r)
{
    return lv_req_respond_error(r, 410, "rtsp_url_not_accepted",
                                "livevlm takes no camera URLs from clients: the admin defines cameras with --camera "
                                "ID=URL, GET /api/v1/cameras lists them, and the session setting source camera:ID "
                                "watches one");
}

/* The front door's count of unusable X-Forwarded-For (lv_httpd.c request_client); shown only with
 * --trusted-proxy, the only case where it can move. */
static int proxy_metrics(lv_app_t *app, lv_buf_t *out)
{
    if (!app->cfg.n_trusted_proxies || !app->net)
        return 0;
    return lv_buf_printf(out,
                         "# HELP livevlm_forwarded_for_invalid_total Requests from a --trusted-proxy whose "
                         "X-Forwarded-For was empty, not a list of addresses or over its cap (2 KiB, 32 "
                         "addresses); the proxy's own address stood for the client.\n"
                         "# TYPE livevlm_forwarded_for_invalid_total counter\n"
                         "livevlm_forwarded_for_invalid_total %llu\n",
                         (unsigned long long)lv_net_forwarded_invalid(app->net));
}

static int handle_get(lv_app_t *app, lv_req_t *r)
{
    const char *path = r->path;
    char arg[160];
    const char *why = NULL;
    int st;
    if (strcmp(path, "/healthz") == 0)
        return lv_req_respond(r, 200, "text/plain; charset=utf-8", "ok\n", 3, false, NULL);
    if (strcmp(path, "/") == 0 && app->cfg.auth_mode == LV_AUTH_TOKEN &&
        lv_query_get(r->query, "token", arg, sizeof(arg)) != LV_ENOTFOUND)
        return token_link(app, r, arg);
    if (strcmp(path, "/readyz") == 0) {
        /* a cluster frontend never calls a backend (workers do): ready = it reaches Redis, where
         * its jobs, sessions and limits are; haproxy takes it out of rotation otherwise */
        if (app->cluster) {
            const char *unready;
            char body[96];
            if (lv_cluster_ready(app->cluster, &unready))
                return lv_req_respond(r, 200, "text/plain; charset=utf-8", "ready\n", 6, false, NULL);
            int n = snprintf(body, sizeof(body), "%s\n", unready);
            return lv_req_respond(r, 503, "text/plain; charset=utf-8", body, (size_t)n, true, NULL);
        }
        /* ready = at least one backend in rotation with a model to serve */
        for (size_t i = 0; i < lv_pool_count(app->pool); i++) {
            lv_backend_t *b = lv_pool_at(app->pool, i);
            if (b->healthy && b->n_models)
                return lv_req_respond(r, 200, "text/plain; charset=utf-8", "ready\n", 6, false, NULL);
        }
        return lv_req_respond(r, 503, "text/plain; charset=utf-8", "no healthy backend\n", 19, false, NULL);
    }
    if (strcmp(path, "/metrics") == 0) {
        if (!app->cfg.metrics_public && (st = lv_auth_check(app, r, NULL, &why)) != 0)
            return refuse_auth(r, st, why, "send a credential (or start with --metrics-public)");
        lv_buf_t b;
        lv_buf_init(&b, 8u << 20);
        bool ok = lv_stat_render(app, &b) == 0 && lv_camera_api_metrics(app, &b) == 0 &&
                  lv_offer_metrics(app, &b) == 0 && proxy_metrics(app, &b) == 0 &&
                  lv_usage_metrics(app, &b) == 0;
        int rc = ok ? lv_req_respond(r, 200, "text/plain; version=0.0.4; charset=utf-8", b.data ? b.data : "", b.len,
                                     true, NULL)
                    : lv_req_respond_error(r, 500, "internal", "could not render metrics");
        lv_buf_free(&b);
        return rc;
    }
    if (lv_oidc_route(path))
        return lv_oidc_handle(app, r);
    if (strncmp(path, "/api/", 5) != 0 && strcmp(path, "/models") != 0)
        return serve_static(app, r, path);
    lv_principal_t who;
    if (lv_account_api_route(path)) /* some need no credential (sign-in); it checks itself */
        return lv_account_api_handle(app, r);
    if ((st = lv_auth_check(app, r, &who, &why)) != 0)
        return refuse_auth(r, st, why, "log in with the access token printed by the server");
    if (lv_admin_api_route(path))
        return lv_admin_api_handle(app, r, &who);
    if (lv_usage_api_route(path))
        return lv_usage_api_handle(app, r, &who);
    if (strncmp(path, "/api/rtsp/", 10) == 0)
        return refuse_rtsp_api(r);
    if (strcmp(path, "/api/v1/config") == 0)
        return api_config(app, r, &who);
    if (strcmp(path, "/api/v1/models") == 0 || strcmp(path, "/models") == 0) {
        if (lv_query_get(r->query, "refresh", arg, sizeof(arg)) == 0 && strcmp(arg, "0") != 0) {
            lv_queue_insert_tail(&app->pending_models, &r->wait_link);
            r->waiting = true;
            if (!app->refreshing) {
                app->refreshing = true;
                if (lv_pool_refresh(app->pool, on_models_refreshed, app) != 0)
                    on_models_refreshed(app);
            }
            return 0;
        }
        return api_models(app, r, &who);
    }
    if (strncmp(path, "/api/v1/cameras", 15) == 0 && (path[15] == '\0' || path[15] == '/'))
        return lv_camera_api_get(app, r);
    if (strcmp(path, "/api/v1/stats") == 0) {
        size_t len = 0;
        const char *s = app->sysmon ? lv_sysmon_json(app->sysmon, &len) : "{}";
        if (!app->sysmon)
            len = 2;
        return lv_req_respond(r, 200, "application/json", s, len, true, NULL);
    }
    return lv_req_respond_error(r, 404, "not_found", "no such API route");
}

/* A state-changing request from a page of another site rides on this browser's cookie (CSRF):
 * refuse a POST whose Origin names another origin, and one the browser marks cross-site. */
static bool foreign_post(const lv_req_t *r)
{
    char origin[512], host[300], site[32];
    if (lv_http1_header_copy(r->head, "sec-fetch-site", site, sizeof(site)) == 0 && strcmp(site, "cross-site") == 0)
        return true;
    int rc = lv_http1_header_copy(r->head, "origin", origin, sizeof(origin));
    if (rc == LV_ENOTFOUND)
        return false; /* scripts and old clients send none; they carry no ambient cookie */
    return rc != 0 || lv_http1_header_copy(r->head, "host", host, sizeof(host)) != 0 || !lv_origin_matches(origin, host);
}

static int handle_post(lv_app_t *app, lv_req_t *r)
{
    if (foreign_post(r)) {
        LV_INFO("refused a POST %s from %s with a foreign Origin", r->path, r->ip);
        return lv_req_respond_error(r, 403, "forbidden_origin", "request from a page of another site");
    }
    lv_principal_t who;
    const char *why = NULL;
    if (lv_account_api_route(r->path)) /* sign-in (password or, with --auth token, the token): */
        return lv_account_api_handle(app, r); /* lv_account_api.c, which checks credentials itself */
    int st = lv_auth_check(app, r, &who, &why);
    if (st)
        return refuse_auth(r, st, why, "log in with the access token printed by the server");
    if (lv_admin_api_route(r->path))
        return lv_admin_api_handle(app, r, &who);
    if (lv_usage_api_route(r->path))
        return lv_usage_api_handle(app, r, &who);
    if ((strcmp(r->path, "/api/v1/analyze") == 0 || lv_offer_route(r->path)) && who.role == LV_PRINCIPAL_VIEWER)
        return refuse_viewer(r);
    if (strcmp(r->path, "/api/v1/analyze") == 0)
        return lv_analyze_handle(app, r, &who);
    if (lv_offer_route(r->path))
        return lv_offer_handle(app, r, &who);
    if (strncmp(r->path, "/api/rtsp/", 10) == 0)
        return refuse_rtsp_api(r);
    return lv_req_respond_error(r, 404, "not_found", "no such API route");
}

int lv_server_body_cap(lv_app_t *app, const lv_req_t *r, size_t *cap)
{
    bool offer = lv_offer_route(r->path);
    if (strcmp(r->path, "/api/v1/analyze") != 0 && !offer)
        return 0;
    int st = lv_auth_check(app, r, NULL, NULL);
    if (st == 401 || st == 429)
        return st; /* nobody unauthenticated makes the server hold a frame */
    if (st)
        return 0; /* a valid credential refused for another reason (CSRF 403, a proxy user being
                   * made 503): the usual cap, and handle_post answers with the reason */
    *cap = offer ? lv_offer_body_cap(app) : lv_analyze_body_cap(app);
    return 0;
}

/* ---------- WebSocket upgrade ---------- */

static bool lists_token(const char *list, const char *token)
{
    size_t n = strlen(token);
    for (const char *p = list; (p = strstr(p, token)) != NULL; p += n) {
        bool start = p == list || p[-1] == ',' || p[-1] == ' ' || p[-1] == '\t';
        bool end = p[n] == '\0' || p[n] == ',' || p[n] == ' ' || p[n] == '\t';
        if (start && end)
            return true;
    }
    return false;
}

static int ws_upgrade(lv_app_t *app, lv_req_t *r)
{
    char origin[512], host[300], version[16], protos[256];
    const char *why = NULL;
    lv_principal_t who;
    int status = 0, st;
    if (strcmp(r->path, "/ws") != 0 || r->is_post || r->is_head)
        status = 404;
    else if ((st = lv_auth_check(app, r, &who, &why)) != 0)
        status = st;
    else if ((st = lv_http1_header_copy(r->head, "origin", origin, sizeof(origin))) != LV_ENOTFOUND &&
             (st != 0 || lv_http1_header_copy(r->head, "host", host, sizeof(host)) != 0 ||
              !lv_origin_matches(origin, host)))
        status = 403; /* a page on another site must not ride on this browser's cookie */
    else if (lv_iptable_sockets(app->ips, r->ip, 0) >= app->cfg.max_sockets_per_ip)
        status = 429;
    if (status) {
        lv_log_ctx_t lctx = {.ip = r->ip};
        LV_INFO_CTX(&lctx, "refused WebSocket upgrade from %s: %d", r->ip, status);
        if (why && (status == 401 || status == 503))
            return refuse_auth(r, status, why, NULL);
        static const struct {
            int status;
            const char *code, *message;
        } reasons[] = {
            {401, "unauthorized", "log in with the access token printed by the server"},
            {403, "forbidden_origin", "WebSocket from a page of another site"},
            {404, "not_found", "WebSockets are served on /ws"},
            {429, "rate_limited", "too many WebSockets or failed credentials from this address"},
        };
        for (size_t i = 0; i < LV_ARRAY_LEN(reasons); i++)
            if (reasons[i].status == status)
                return lv_req_respond_error(r, status, reasons[i].code, reasons[i].message);
        return lv_req_respond_error(r, status, "refused", "WebSocket refused");
    }
    /* RFC 6455 section 4.4: a version we do not speak gets 426 and the one we do */
    if (lv_http1_header_copy(r->head, "sec-websocket-version", version, sizeof(version)) != 0 ||
        strcmp(version, "13") != 0)
    {
        static const char body[] = "{\"error\":{\"code\":\"bad_request\",\"message\":\"WebSocket version 13 only\"}}";
        return lv_req_respond(r, 426, "application/json", body, sizeof(body) - 1, false, "sec-websocket-version: 13\r\n");
    }
    bool ours = lv_http1_header_copy(r->head, "sec-websocket-protocol", protos, sizeof(protos)) == 0 &&
                lists_token(protos, "livevlm.v1");
    return lv_req_upgrade(r, ours ? "livevlm.v1" : NULL, &who);
}

void lv_server_handle(lv_app_t *app, lv_req_t *r)
{
    /* --auth proxy: a user the proxy names for the first time is made first; then again */
    if (lv_auth_proxy_pending(app, r, lv_server_handle))
        return;
    if (r->head->upgrade_websocket)
        ws_upgrade(app, r);
    else if (r->is_post)
        handle_post(app, r);
    else
        handle_get(app, r); /* GET and HEAD */
}

/* ---------- start and stop ---------- */

static size_t count_pending(void *ud, const char *ip, int delta)
{
    lv_app_t *app = ud;
    return lv_iptable_pending(app->ips, ip, delta);
}

/* Say at start whose X-Forwarded-For is believed: an operator reading the log sees why users are
 * (or are not) told apart behind the proxy. */
static void log_trusted_proxies(const lv_config_t *cfg)
{
    char list[512] = "", one[LV_IP_TEXT_MAX];
    size_t used = 0;
    for (size_t i = 0; i < cfg->n_trusted_proxies && used < sizeof(list); i++) {
        const lv_ipnet_t *n = &cfg->trusted_proxies[i];
        lv_ip_text(n->addr, one, sizeof(one));
        /* written as IPv4 only when it is IPv4-mapped, which a prefix under 96 bits never is */
        bool v4 = strchr(one, ':') == NULL;
        unsigned bits = v4 ? n->bits - 96 : n->bits, max = v4 ? 32 : 128;
        int k = bits == max ? snprintf(list + used, sizeof(list) - used, "%s%s", i ? ", " : "", one)
                            : snprintf(list + used, sizeof(list) - used, "%s%s/%u", i ? ", " : "", one, bits);
        if (k < 0)
            break;
        used += (size_t)k;
    }
    if (cfg->n_trusted_proxies)
        LV_INFO("client addresses: X-Forwarded-For is read from requests whose peer is a trusted proxy (%s)%s; "
                "from any other peer it is ignored",
                list, used >= sizeof(list) ? "..." : "");
}

int lv_server_start(lv_app_t *app)
{
    char err[512] = "";
    lv_net_config_t nc;
    memset(&nc, 0, sizeof(nc));
    lv_queue_init(&app->conns);
    lv_queue_init(&app->pending_models);
    nc.host = app->cfg.host;
    nc.port = app->cfg.port;
    lv_net_limits_defaults(&nc.limits);
    if (app->cfg.header_timeout_s > 0)
        nc.limits.timeout_ms[LV_TMO_HEAD] = (unsigned)app->cfg.header_timeout_s * 1000u;
    if (app->cfg.max_pending_per_ip > 0)
        nc.limits.max_pending_per_ip = app->cfg.max_pending_per_ip;
    nc.on_accept = lv_httpd_accept;
    nc.count_pending = count_pending;
    nc.ud = app;
    if (app->cfg.tls && lv_tlsio_ctx_create(app->cfg.tls_cert, app->cfg.tls_key, &nc.ssl_ctx, err, sizeof(err)) != 0) {
        LV_ERROR("%s", err);
        return LV_EIO;
    }
    int rc = lv_net_create(app->loop, &nc, &app->net, err, sizeof(err));
    if (rc) {
        lv_tlsio_ctx_free(nc.ssl_ctx);
        LV_ERROR("%s", err);
        return rc;
    }
    app->bound_port = lv_net_port(app->net);
    log_trusted_proxies(&app->cfg);
    return 0;
}

void lv_server_drain(lv_app_t *app, unsigned deadline_ms, void (*done)(void *ud), void *ud)
{
    if (app->net)
        lv_net_shutdown(app->net, deadline_ms, done, ud);
}

void lv_server_stop(lv_app_t *app)
{
    lv_offer_stop(app); /* WebRTC streams: after the sockets, before the registry goes */
    lv_net_destroy(app->net);
    app->net = NULL;
}

/* lv_offer.c - POST /offer (lv_offer.h): parse and check the request, find the caller's session,
 * hand the offer to the WebRTC host (lv_webrtc.h) and answer when it has its answer. */
#include "lv_offer.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lv_app.h"
#include "lv_auth.h"
#include "lv_buf.h"
#include "lv_common.h"
#include "lv_engine.h"
#include "lv_httpd.h"
#include "lv_log.h"
#include "lv_net.h"
#include "lv_principal.h"
#include "lv_sdp.h"
#include "lv_session.h"
#include "lv_webrtc.h"

#define START_WAITERS_MAX 16 /* offers held while GStreamer starts; more get 503 + Retry-After */
#define RETRY_AFTER "retry-after: 2\r\n"

struct lv_offer_host {
    lv_webrtc_t *webrtc; /* created on the first offer; NULL again after its start failed */
    lv_queue_t waiting;  /* lv_req_t.wait_link of the requests waiting for their answer */
    lv_queue_t starting; /* pending_t.start_link: offers held until GStreamer has started */
    size_t n_starting;
};

/* One request waiting for its answer; freed when it is answered or its client goes. */
typedef struct {
    lv_app_t *app;
    lv_req_t *req;
    lv_webrtc_feed_t *feed; /* NULL while held in starting */
    char session_id[80];
    /* while held in starting: the checked offer and who sent it (the session is looked up again
     * when GStreamer is ready: it may have gone meanwhile) */
    lv_queue_t start_link;
    bool held;
    char principal[LV_PRINCIPAL_KEY_MAX];
    char *sdp;
    size_t sdp_len;
} pending_t;

bool lv_offer_route(const char *path)
{
    return strcmp(path, "/offer") == 0 || strcmp(path, "/api/v1/offer") == 0;
}

size_t lv_offer_body_cap(const lv_app_t *app)
{
    return 2 * LV_SDP_MAX_BYTES + 4096;
}

/* Our JSON error body, written by jansson: these messages quote the offer's codec names and
 * GStreamer's words, which lv_req_respond_error (constants only) must not be given. */
static int respond_error_h(lv_req_t *r, int status, const char *code, const char *message, const char *headers)
{
    json_t *o = json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", message);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    int rc = text ? lv_req_respond(r, status, "application/json", text, strlen(text), true, headers)
                  : lv_req_respond_error(r, 500, "internal", "out of memory");
    free(text);
    return rc;
}

static int respond_error(lv_req_t *r, int status, const char *code, const char *message)
{
    return respond_error_h(r, status, code, message, NULL);
}

/* The request stops waiting (before it is answered: answering may reuse it for the next one). */
static lv_req_t *pending_release(pending_t *p)
{
    lv_req_t *r = p->req;
    if (r) {
        r->on_gone = NULL;
        if (r->waiting) {
            lv_queue_remove(&r->wait_link);
            r->waiting = false;
        }
    }
    if (p->held) {
        lv_queue_remove(&p->start_link);
        p->app->offer->n_starting--;
    }
    free(p->sdp);
    free(p);
    return r;
}

static void on_answer(void *user, int status, const char *sdp, const char *code, const char *message)
{
    pending_t *p = user;
    lv_app_t *app = p->app;
    char sid[sizeof(p->session_id)];
    snprintf(sid, sizeof(sid), "%s", p->session_id);
    lv_req_t *r = pending_release(p);
    if (status != 200) {
        LV_INFO("POST /offer for session %.8s: %d %s (%s)", sid, status, code, message);
        respond_error(r, status, code, message);
        return;
    }
    /* the source switch update_settings makes (a camera it watched is let go, every socket of
     * the session hears settings_updated); s is watched by the feed, so still here */
    lv_session_t *s = lv_session_find(app->reg, sid);
    if (s)
        lv_engine_set_source(app, s, "webrtc");
    json_t *o = json_pack("{s:s, s:s}", "sdp", sdp, "type", "answer");
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (text)
        lv_req_respond(r, 200, "application/json", text, strlen(text), true, "cache-control: no-store\r\n");
    else
        respond_error(r, 500, "internal", "out of memory");
    free(text);
}

static void on_gone(lv_req_t *r)
{
    pending_t *p = r->user;
    p->req = NULL; /* the connection unlinked wait_link already */
    if (p->feed)
        lv_webrtc_offer_abandon(p->app->offer->webrtc, p->feed);
    pending_release(p);
}

static void not_found(lv_req_t *r)
{
    /* one answer for both, so another user's session ids cannot be probed */
    respond_error(r, 404, "session_not_found",
                  "no session with that id belongs to you (open the page first; its session message has the id)");
}

/* Hand p's offer to the host: p waits for its answer, or is answered (and freed) now. */
static void offer_start(lv_app_t *app, pending_t *p, const char *sdp, size_t sdp_len)
{
    struct lv_offer_host *h = app->offer;
    char why[300];
    lv_session_t *s = lv_session_find(app->reg, p->session_id);
    if (!s || strcmp(s->rec.principal, p->principal) != 0) {
        not_found(pending_release(p));
        return;
    }
    uint64_t t0 = uv_hrtime();
    int wr = lv_webrtc_offer(h->webrtc, s, sdp, sdp_len, on_answer, p, &p->feed, why, sizeof(why));
    if (wr != 0) {
        lv_req_t *r = pending_release(p);
        if (wr == LV_EEXIST)
            respond_error(r, 409, "offer_in_progress", why);
        else
            respond_error_h(r, 503, wr == LV_ELIMIT ? "too_many_streams" : "webrtc_failed", why, RETRY_AFTER);
        return;
    }
    /* the pipeline (webrtcbin, the grabber's sink) is built here on the loop: plugins are loaded
     * by then (lv_webrtc_create), so this is element creation only */
    LV_DEBUG("POST /offer for session %.8s: feed built on the loop in %llu us", p->session_id,
             (unsigned long long)((uv_hrtime() - t0) / 1000));
}

/* GStreamer has started (or could not): the offers held meanwhile go on, or hear why not. */
static void on_ready(void *user, int rc, const char *why)
{
    lv_app_t *app = user;
    struct lv_offer_host *h = app->offer;
    if (rc != 0) {
        LV_ERROR("WebRTC ingest unavailable: %s", why);
        while (!lv_queue_empty(&h->starting)) {
            pending_t *p = LV_CONTAINER_OF(lv_queue_head(&h->starting), pending_t, start_link);
            respond_error(pending_release(p), 503, "webrtc_unavailable", why);
        }
        /* the next offer tries again (a package installed meanwhile) */
        lv_webrtc_destroy(h->webrtc);
        h->webrtc = NULL;
        return;
    }
    LV_INFO("WebRTC ingest ready (GStreamer started); %zu offers were waiting", h->n_starting);
    while (!lv_queue_empty(&h->starting)) {
        pending_t *p = LV_CONTAINER_OF(lv_queue_head(&h->starting), pending_t, start_link);
        lv_queue_remove(&p->start_link);
        p->held = false;
        h->n_starting--;
        char *sdp = p->sdp;
        p->sdp = NULL;
        offer_start(app, p, sdp, p->sdp_len);
        free(sdp);
    }
}

static int host_get(lv_app_t *app, struct lv_offer_host **out)
{
    struct lv_offer_host *h = app->offer;
    if (!h) {
        if (!(h = calloc(1, sizeof(*h))))
            return LV_ENOMEM;
        lv_queue_init(&h->waiting);
        lv_queue_init(&h->starting);
        app->offer = h;
    }
    if (!h->webrtc) {
        lv_webrtc_opts_t o = {(size_t)app->cfg.max_webrtc, 0, app->cfg.stun_server};
        int rc = lv_webrtc_create(app->loop, &app->pipe, &o, on_ready, app, &h->webrtc);
        if (rc)
            return rc;
    }
    *out = h;
    return 0;
}

int lv_offer_handle(lv_app_t *app, lv_req_t *r, const lv_principal_t *requester)
{
    json_error_t jerr;
    json_t *root = r->body->len ? json_loadb(r->body->data, r->body->len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
    const char *sdp = json_string_value(json_object_get(root, "sdp"));
    const char *type = json_string_value(json_object_get(root, "type"));
    const char *sid = json_string_value(json_object_get(root, "session_id"));
    size_t sdp_len = sdp ? json_string_length(json_object_get(root, "sdp")) : 0;
    char why[300];
    int rc = 0;
    if (!json_is_object(root)) {
        rc = respond_error(r, 400, "bad_request",
                           "the body must be a JSON object {\"sdp\",\"type\":\"offer\","
                           "\"session_id\"}");
        goto out;
    }
    if (!sdp || !type || strcmp(type, "offer") != 0) {
        rc = respond_error(r, 400, "bad_request", "\"sdp\" (a string) and \"type\": \"offer\" are required");
        goto out;
    }
    if (!sid) {
        /* the replaced tool fell back to a global "default" session; here every stream belongs to
         * one session of its sender */
        rc = respond_error(r, 400, "bad_request",
                           "\"session_id\" is required: the id from the page's session "
                           "message");
        goto out;
    }
    lv_principal_t who = *requester; /* authenticated by the router (lv_server.c) */
    lv_session_t *s = lv_session_find(app->reg, sid);
    if (!s || strcmp(s->rec.principal, who.key) != 0) {
        not_found(r);
        goto out;
    }
    lv_sdp_info_t info;
    int sc = lv_sdp_check(sdp, sdp_len, NULL, &info, why, sizeof(why));
    if (sc != 0) {
        rc = respond_error(r, sc == LV_ELIMIT ? 413 : 400, info.code, why);
        goto out;
    }
    if (app->cfg.max_webrtc <= 0) {
        rc = respond_error(r, 503, "webrtc_off", "WebRTC ingest is turned off on this server (--max-webrtc 0)");
        goto out;
    }
    struct lv_offer_host *h = NULL;
    if (host_get(app, &h) != 0) {
        rc = respond_error(r, 500, "internal", "out of memory");
        goto out;
    }
    bool starting = lv_webrtc_ready(h->webrtc, NULL) == LV_EAGAIN;
    if (starting && h->n_starting >= START_WAITERS_MAX) {
        rc = respond_error_h(r, 503, "webrtc_starting",
                             "WebRTC ingest is still starting and has enough offers waiting: try again in a moment",
                             RETRY_AFTER);
        goto out;
    }
    pending_t *p = calloc(1, sizeof(*p));
    if (!p || (starting && !(p->sdp = malloc(sdp_len)))) {
        free(p);
        rc = respond_error(r, 500, "internal", "out of memory");
        goto out;
    }
    p->app = app;
    p->req = r;
    snprintf(p->session_id, sizeof(p->session_id), "%s", sid);
    snprintf(p->principal, sizeof(p->principal), "%s", who.key);
    r->user = p;
    r->on_gone = on_gone;
    r->waiting = true;
    lv_queue_insert_tail(&h->waiting, &r->wait_link);
    if (starting) {
        /* GStreamer starts on the pool (seconds on a cold machine): the offer waits for it */
        memcpy(p->sdp, sdp, sdp_len);
        p->sdp_len = sdp_len;
        p->held = true;
        lv_queue_insert_tail(&h->starting, &p->start_link);
        h->n_starting++;
    } else {
        offer_start(app, p, sdp, sdp_len);
    }
out:
    json_decref(root);
    return rc;
}

void lv_offer_session_close(lv_app_t *app, lv_session_t *s, const char *reason)
{
    if (app->offer)
        lv_webrtc_session_close(app->offer->webrtc, s, reason);
}

void lv_offer_stop(lv_app_t *app)
{
    struct lv_offer_host *h = app->offer;
    if (!h)
        return;
    while (!lv_queue_empty(&h->waiting)) {
        lv_req_t *r = LV_CONTAINER_OF(lv_queue_head(&h->waiting), lv_req_t, wait_link);
        pending_t *p = r->user;
        if (p->feed)
            lv_webrtc_offer_abandon(h->webrtc, p->feed);
        respond_error(pending_release(p), 503, "shutting_down", "the server is stopping");
    }
    lv_webrtc_destroy(h->webrtc);
    free(h);
    app->offer = NULL;
}

int lv_offer_metrics(lv_app_t *app, lv_buf_t *out)
{
    if (!app->offer || !app->offer->webrtc)
        return 0;
    lv_webrtc_stats_t st;
    lv_webrtc_stats(app->offer->webrtc, &st);
    return lv_buf_printf(out,
                         "# HELP livevlm_webrtc_streams WebRTC video streams: live (negotiating or streaming), "
                         "alive (live plus those still closing, which count against the caps).\n"
                         "# TYPE livevlm_webrtc_streams gauge\n"
                         "livevlm_webrtc_streams{state=\"live\"} %zu\n"
                         "livevlm_webrtc_streams{state=\"alive\"} %zu\n"
                         "# HELP livevlm_webrtc_streams_peak The most WebRTC streams alive at once.\n"
                         "# TYPE livevlm_webrtc_streams_peak gauge\n"
                         "livevlm_webrtc_streams_peak %zu\n"
                         "# HELP livevlm_webrtc_offers_total WebRTC offers by outcome: taken, answered, failed "
                         "(no answer), and streams ended.\n"
                         "# TYPE livevlm_webrtc_offers_total counter\n"
                         "livevlm_webrtc_offers_total{outcome=\"taken\"} %llu\n"
                         "livevlm_webrtc_offers_total{outcome=\"answered\"} %llu\n"
                         "livevlm_webrtc_offers_total{outcome=\"failed\"} %llu\n"
                         "livevlm_webrtc_offers_total{outcome=\"ended\"} %llu\n",
                         st.feeds, st.alive, st.peak_alive, (unsigned long long)st.offers,
                         (unsigned long long)st.answered, (unsigned long long)st.failed,
                         (unsigned long long)st.ended);
}

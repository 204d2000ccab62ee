/* lv_offer.c - POST /offer (lv_offer.h): parse and check the request, find the caller's session,
 * hand the offer to the WebRTC host (lv_webrtc.h) and answer when it has its answer. */
#include "lv_offer.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lv_app.h"
#include "lv_auth.h"
#include "lv_common.h"
#include "lv_engine.h"
#include "lv_httpd.h"
#include "lv_log.h"
#include "lv_net.h"
#include "lv_principal.h"
#include "lv_sdp.h"
#include "lv_session.h"
#include "lv_webrtc.h"

struct lv_offer_host {
    lv_webrtc_t *webrtc; /* created on the first offer */
    lv_queue_t waiting;  /* lv_req_t.wait_link of the requests waiting for their answer */
};

/* One request waiting for its answer; freed when it is answered or its client goes. */
typedef struct {
    lv_app_t *app;
    lv_req_t *req;
    lv_webrtc_feed_t *feed;
    char session_id[80];
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
static int respond_error(lv_req_t *r, int status, const char *code, const char *message)
{
    json_t *o = json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", message);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    int rc = text ? lv_req_respond(r, status, "application/json", text, strlen(text), true, NULL)
                  : lv_req_respond_error(r, 500, "internal", "out of memory");
    free(text);
    return rc;
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
    lv_webrtc_offer_abandon(p->app->offer->webrtc, p->feed);
    pending_release(p);
}

static int host_get(lv_app_t *app, struct lv_offer_host **out, const char **why)
{
    struct lv_offer_host *h = app->offer;
    if (!h) {
        if (!(h = calloc(1, sizeof(*h))))
            return LV_ENOMEM;
        lv_queue_init(&h->waiting);
        app->offer = h;
    }
    if (!h->webrtc) {
        lv_webrtc_opts_t o = {(size_t)app->cfg.max_webrtc, 0, app->cfg.stun_server};
        int rc = lv_webrtc_create(app->loop, &app->pipe, &o, &h->webrtc, why);
        if (rc)
            return rc;
    }
    *out = h;
    return 0;
}

int lv_offer_handle(lv_app_t *app, lv_req_t *r)
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
    lv_principal_t who;
    lv_auth_principal(app, r->head, r->ip, &who);
    lv_session_t *s = lv_session_find(app->reg, sid);
    if (!s || strcmp(s->rec.principal, who.key) != 0) {
        /* one answer for both, so another user's session ids cannot be probed */
        rc = respond_error(r, 404, "session_not_found",
                           "no session with that id belongs to you (open the page "
                           "first; its session message has the id)");
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
    const char *hwhy = NULL;
    if (host_get(app, &h, &hwhy) != 0) {
        LV_ERROR("WebRTC ingest unavailable: %s", hwhy ? hwhy : "out of memory");
        rc = respond_error(r, 503, "webrtc_unavailable", hwhy ? hwhy : "out of memory");
        goto out;
    }
    pending_t *p = calloc(1, sizeof(*p));
    if (!p) {
        rc = respond_error(r, 500, "internal", "out of memory");
        goto out;
    }
    p->app = app;
    p->req = r;
    snprintf(p->session_id, sizeof(p->session_id), "%s", sid);
    int wr = lv_webrtc_offer(h->webrtc, s, sdp, sdp_len, on_answer, p, &p->feed, why, sizeof(why));
    if (wr != 0) {
        free(p);
        rc = respond_error(r, 503, wr == LV_ELIMIT ? "too_many_streams" : "webrtc_failed", why);
        goto out;
    }
    r->user = p;
    r->on_gone = on_gone;
    r->waiting = true;
    lv_queue_insert_tail(&h->waiting, &r->wait_link);
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
        lv_webrtc_offer_abandon(h->webrtc, p->feed);
        respond_error(pending_release(p), 503, "shutting_down", "the server is stopping");
    }
    lv_webrtc_destroy(h->webrtc);
    free(h);
    app->offer = NULL;
}
